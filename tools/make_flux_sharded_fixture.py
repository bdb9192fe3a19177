#!/usr/bin/env python3
"""Writes a tiny sharded FLUX transformer checkpoint laid out the way diffusers saves FluxTransformer2DModel:

  tests/data/flux_sharded/
    config.json                                      the (tiny) model config
    diffusion_pytorch_model-00001-of-00002.safetensors
    diffusion_pytorch_model-00002-of-00002.safetensors
    diffusion_pytorch_model.safetensors.index.json   {"metadata": {"total_size": N}, "weight_map": {...}}

Tensor names and the roles of their shapes are the real ones (2 double-stream blocks, 2 single-stream blocks);
sizes are tiny and values are deterministic pseudo-random bf16, so nothing here is meant to produce images.

  tools/make_flux_sharded_fixture.py [DIR]          write into DIR (default tests/data/flux_sharded)
  tools/make_flux_sharded_fixture.py --check DIR    exit 1 unless DIR holds exactly what this script writes

Standard library only.
"""
import json
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_stdlib import Lcg, bf16_bytes, build  # noqa: E402

DEFAULT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "flux_sharded"))

CONFIG = {
    "_class_name": "FluxTransformer2DModel",
    "attention_head_dim": 8,
    "axes_dims_rope": [2, 2, 4],
    "guidance_embeds": True,
    "in_channels": 16,
    "joint_attention_dim": 24,
    "num_attention_heads": 2,
    "num_layers": 2,
    "num_single_layers": 2,
    "out_channels": None,
    "patch_size": 1,
    "pooled_projection_dim": 12,
}
TIMESTEP_CHANNELS = 256  # Timesteps(num_channels=256) in diffusers' CombinedTimestepGuidanceTextProjEmbeddings
MLP_RATIO = 4


def tensor_shapes():
    """[(name, shape)] in the order diffusers' module tree lists them."""
    c = CONFIG
    inner = c["num_attention_heads"] * c["attention_head_dim"]
    head = c["attention_head_dim"]
    out_ch = c["out_channels"] or c["in_channels"]
    mlp = inner * MLP_RATIO
    t = []

    def linear(name, out_f, in_f):
        t.append((name + ".weight", (out_f, in_f)))
        t.append((name + ".bias", (out_f,)))

    for emb, in_f in (("timestep_embedder", TIMESTEP_CHANNELS), ("guidance_embedder", TIMESTEP_CHANNELS),
                      ("text_embedder", c["pooled_projection_dim"])):
        linear(f"time_text_embed.{emb}.linear_1", inner, in_f)
        linear(f"time_text_embed.{emb}.linear_2", inner, inner)
    linear("context_embedder", inner, c["joint_attention_dim"])
    linear("x_embedder", inner, c["in_channels"])
    for i in range(c["num_layers"]):
        p = f"transformer_blocks.{i}"
        linear(f"{p}.norm1.linear", 6 * inner, inner)
        linear(f"{p}.norm1_context.linear", 6 * inner, inner)
        for proj in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out"):
            linear(f"{p}.attn.{proj}", inner, inner)
        for norm in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            t.append((f"{p}.attn.{norm}.weight", (head,)))
        for ff in ("ff", "ff_context"):
            linear(f"{p}.{ff}.net.0.proj", mlp, inner)
            linear(f"{p}.{ff}.net.2", inner, mlp)
    for i in range(c["num_single_layers"]):
        p = f"single_transformer_blocks.{i}"
        linear(f"{p}.norm.linear", 3 * inner, inner)
        linear(f"{p}.proj_mlp", mlp, inner)
        linear(f"{p}.proj_out", inner, inner + mlp)
        for proj in ("to_q", "to_k", "to_v"):
            linear(f"{p}.attn.{proj}", inner, inner)
        for norm in ("norm_q", "norm_k"):
            t.append((f"{p}.attn.{norm}.weight", (head,)))
    linear("norm_out.linear", 2 * inner, inner)
    linear("proj_out", c["patch_size"] ** 2 * out_ch, inner)
    return t


def values(name, shape, rng):
    n = 1
    for d in shape:
        n *= d
    if ".norm_" in name and name.endswith(".weight"):
        return [1.0 + rng.uniform(-0.05, 0.05) for _ in range(n)]  # RMSNorm scales sit near 1
    fan_in = shape[-1] if len(shape) > 1 else 16
    bound = 1.0 / fan_in ** 0.5
    return [rng.uniform(-bound, bound) for _ in range(n)]


def expected_files():
    rng = Lcg(20240801)
    shards = ([], [])
    for name, shape in tensor_shapes():
        second = name.startswith(("single_transformer_blocks.", "norm_out.", "proj_out."))
        shards[1 if second else 0].append((name, "BF16", shape, bf16_bytes(values(name, shape, rng))))
    files = {}
    weight_map = {}
    total = 0
    for i, tensors in enumerate(shards):
        shard = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        # diffusers (through safetensors.torch.save_file) orders the data by name within a shard.
        tensors = sorted(tensors, key=lambda x: x[0])
        files[shard] = build(tensors, metadata={"format": "pt"})
        for name, _, _, raw in tensors:
            weight_map[name] = shard
            total += len(raw)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    files["diffusion_pytorch_model.safetensors.index.json"] = (json.dumps(index, indent=2) + "\n").encode()
    config = dict(CONFIG, _diffusers_version="0.30.0")
    files["config.json"] = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
    return files


def main(argv):
    args = argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    check = bool(args) and args[0] == "--check"
    if check:
        args = args[1:]
    out = args[0] if args else DEFAULT_DIR
    files = expected_files()
    if check:
        present = set(os.listdir(out)) if os.path.isdir(out) else set()
        problems = [f"missing {n}" for n in sorted(set(files) - present)]
        problems += [f"differs {n}" for n in sorted(set(files) & present)
                     if open(os.path.join(out, n), "rb").read() != files[n]]
        problems += [f"not written by the script: {n}" for n in sorted(present - set(files))]
        if problems:
            sys.stderr.write(f"{out}: the fixture and tools/make_flux_sharded_fixture.py disagree:\n  "
                             + "\n  ".join(problems) + "\nrun tools/make_flux_sharded_fixture.py to regenerate\n")
            return 1
        print(f"{out}: {len(files)} files match")
        return 0
    os.makedirs(out, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
