#!/usr/bin/env python3
"""Writes a small valid safetensors file for `make demo`: a few tensors of a tiny linear block in several dtypes,
with metadata. Deterministic; standard library only.

  tools/make_demo_safetensors.py OUT
"""
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_stdlib import Lcg, bf16_bytes, build  # noqa: E402


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        sys.stderr.write("usage: make_demo_safetensors.py OUT\n")
        return 0 if len(argv) == 2 else 2
    rng = Lcg(7)

    def rand(n, bound=0.25):
        return [rng.uniform(-bound, bound) for _ in range(n)]

    tensors = [
        ("blocks.0.attn.to_qkv.weight", "BF16", (48, 16), bf16_bytes(rand(48 * 16))),
        ("blocks.0.attn.to_qkv.bias", "BF16", (48,), bf16_bytes(rand(48))),
        ("blocks.0.norm.weight", "F32", (16,), b"".join(struct.pack("<f", 1.0) for _ in range(16))),
        ("blocks.0.mlp.fc1.weight", "F16", (64, 16), b"".join(struct.pack("<e", v) for v in rand(64 * 16))),
        ("blocks.0.mlp.fc2.weight", "BF16", (16, 64), bf16_bytes(rand(16 * 64))),
        ("pos_ids", "I64", (4,), b"".join(struct.pack("<q", i) for i in range(4))),
        ("empty.placeholder", "F32", (0, 16), b""),
    ]
    data = build(tensors, metadata={"format": "pt", "qd.demo": "tiny block for make demo"})
    out = argv[1]
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
