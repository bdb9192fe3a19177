"""Minimal safetensors writing with the Python standard library only (CI has no numpy or torch).

Used by the fixture generators in tools/ (make_safetensors_corpus.py, make_flux_sharded_fixture.py,
make_demo_safetensors.py). Output is deterministic: the same arguments give the same bytes.
"""
import json
import struct

DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "I32": 4, "I64": 8,
    "F8_E4M3": 1, "F8_E5M2": 1, "F16": 2, "BF16": 2, "F32": 4, "F64": 8,
}


def header_bytes(obj):
    """Compact JSON for a header object, as the reference writer emits it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def assemble(header, data=b"", pad_to=8, length=None):
    """Length prefix + header + data. `header` is bytes (written as is) or an object (serialized).
    The header is padded with spaces to a multiple of pad_to (None: no padding); `length` overrides the
    length field, for malformed files."""
    h = header if isinstance(header, bytes) else header_bytes(header)
    if pad_to:
        h += b" " * ((-(8 + len(h))) % pad_to)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def build(tensors, metadata=None, pad_to=8):
    """tensors: list of (name, dtype, shape, raw_bytes) in data order. Returns the file's bytes."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    data = bytearray()
    for name, dtype, shape, raw in tensors:
        count = 1
        for d in shape:
            count *= d
        if len(raw) != count * DTYPE_SIZES[dtype]:
            raise ValueError(f"{name}: {len(raw)} bytes for shape {shape} of {dtype}")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        data += raw
        offset += len(raw)
    return assemble(header, bytes(data), pad_to)


def f32_to_bf16_bits(x):
    """Round-to-nearest-even float32 -> bfloat16 bit pattern (finite inputs)."""
    (bits,) = struct.unpack("<I", struct.pack("<f", x))
    bits += 0x7FFF + ((bits >> 16) & 1)
    return (bits >> 16) & 0xFFFF


def bf16_bytes(values):
    return b"".join(struct.pack("<H", f32_to_bf16_bits(v)) for v in values)


class Lcg:
    """A tiny deterministic generator (64-bit LCG), so fixtures do not depend on Python's random module."""

    def __init__(self, seed):
        self.state = seed & 0xFFFFFFFFFFFFFFFF

    def next_u32(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        return self.state >> 32

    def uniform(self, lo, hi):
        return lo + (hi - lo) * (self.next_u32() / 4294967296.0)
