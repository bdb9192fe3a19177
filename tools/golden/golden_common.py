"""Helpers shared by the golden-fixture generators in tools/golden/.

The generators must write the same bytes on every run, so fixtures go through write_safetensors() below instead of
safetensors.torch.save_file(): the library serialises `__metadata__` from a hash map whose key order changes from one
process to the next, so two runs of the same script would differ in the header. The layout written here is the
library's own (8-byte little-endian header length, compact JSON header padded with spaces to a multiple of 8, then
the tensor data back to back), with the tensors ordered like the library orders them (larger element size first, then
by name) so every tensor's data starts at a multiple of its element size. Files written here are checked to read
back through safetensors itself.
"""

import hashlib
import json
import logging
import os
import struct

# Quiet the libraries' import-time chatter (transformers: optional torchvision; bitsandbytes: an optional CPU kernel
# package), so the generators' own report stays readable. Set before diffusers/bitsandbytes are imported.
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

import torch  # noqa: E402

OUT_DIR_REL = os.path.join("tests", "data", "golden")

_DTYPES = {
    torch.float64: ("F64", 8),
    torch.float32: ("F32", 4),
    torch.bfloat16: ("BF16", 2),
    torch.float16: ("F16", 2),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.uint8: ("U8", 1),
}


def repo_root():
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def out_dir():
    path = os.path.join(repo_root(), OUT_DIR_REL)
    os.makedirs(path, exist_ok=True)
    return path


def deterministic_torch():
    """Same results on every run and on machines with other core counts."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def _tensor_bytes(t):
    t = t.detach().to("cpu").contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Writes `tensors` (name -> torch.Tensor) and string `metadata` to `path` deterministically."""
    entries = []
    for name, t in tensors.items():
        if t.dtype not in _DTYPES:
            raise ValueError(f"{path}: tensor '{name}': dtype {t.dtype} is not supported")
        code, size = _DTYPES[t.dtype]
        entries.append((name, code, size, list(t.shape), _tensor_bytes(t)))
    entries.sort(key=lambda e: (-e[2], e[0]))

    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise ValueError(f"{path}: metadata '{k}' must be a string")
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    for name, code, _, shape, data in entries:
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    head += b" " * (-len(head) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for e in entries:
            f.write(e[4])
    os.replace(tmp, path)
    _check_readback(path, tensors, metadata)


def _check_readback(path, tensors, metadata):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        if sorted(f.keys()) != sorted(tensors):
            raise RuntimeError(f"{path}: tensor names do not read back")
        if (f.metadata() or {}) != (metadata or {}):
            raise RuntimeError(f"{path}: metadata does not read back")
        for name, t in tensors.items():
            back = f.get_tensor(name)
            if back.dtype != t.dtype or back.shape != t.shape or not torch.equal(back, t.detach().cpu()):
                raise RuntimeError(f"{path}: tensor '{name}' does not read back")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def rel_l2(a, b):
    """||a - b|| / ||b||, computed in float64."""
    a = a.detach().double()
    b = b.detach().double()
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def print_table(title, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(title)
    line = "  ".join(str(h).ljust(w) for h, w in zip(header, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))


FIXTURE_PREFIXES = ("flux_", "nf4_", "clip_", "t5_", "vae_", "pipeline_")
FIXTURE_DIRS = ("pipeline_tiny",)  # whole directories a generator owns (pipeline.py's diffusers directory)
SIZE_LIMIT = 5 * 1000 * 1000


def summary():
    """Prints every fixture these generators own with its size and hash; fails if together they pass SIZE_LIMIT."""
    d = out_dir()
    names = sorted(n for n in os.listdir(d) if n.endswith(".safetensors") and n.startswith(FIXTURE_PREFIXES))
    for sub in FIXTURE_DIRS:
        for root, _, files in sorted(os.walk(os.path.join(d, sub))):
            names += sorted(os.path.relpath(os.path.join(root, f), d) for f in files)
    rows, total = [], 0
    for n in names:
        p = os.path.join(d, n)
        size = os.path.getsize(p)
        total += size
        rows.append((os.path.join(OUT_DIR_REL, n), size, sha256_file(p)[:16]))
    rows.append(("total", total, ""))
    print_table("\ngolden fixtures", ["file", "bytes", "sha256[:16]"], rows)
    if total > SIZE_LIMIT:
        print(f"error: the fixtures take {total} bytes, over the {SIZE_LIMIT}-byte budget")
        return 1
    print(f"{total} bytes of {SIZE_LIMIT} allowed")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(summary())
