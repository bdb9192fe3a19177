#!/usr/bin/env python3
"""Writes the safetensors corpus: one malformed file per rejection rule (several for some rules), a few valid
edge cases, and manifest.txt ("file expected_detail" per line; OK for valid files).

  tools/make_safetensors_corpus.py [DIR]          write into DIR (default tests/data/safetensors_corpus)
  tools/make_safetensors_corpus.py --check DIR    exit 1 unless DIR holds exactly what this script writes

The files are committed; the test suite runs --check so the script and the corpus cannot drift apart.
Standard library only.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_stdlib import assemble, build  # noqa: E402

DEFAULT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "safetensors_corpus"))

OMIT = object()
# A well-formed zero-byte tensor entry, for headers written as raw text.
Z = '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'


def entry(dtype="F32", shape=(2,), offsets=(0, 8), **extra):
    """A tensor entry; pass OMIT to leave a field out, anything else (even wrong types) to write it as is."""
    e = {}
    for key, value in (("dtype", dtype), ("shape", shape), ("data_offsets", offsets)):
        if value is not OMIT:
            e[key] = list(value) if isinstance(value, tuple) else value
    e.update(extra)
    return e


def raw(text, data=b"", pad_to=8):
    """A header written exactly as given (str or bytes), padded with spaces, then data."""
    return assemble(text.encode("utf-8") if isinstance(text, str) else text, data, pad_to)


def obj(header, data=b""):
    """A header object serialized as is (it may break any rule), padded with spaces, then data."""
    return assemble(header, data)


def corpus():
    """Returns [(file name, expected detail, bytes)] in a fixed order."""
    c = []

    def add(name, detail, data):
        c.append((name + ".safetensors", detail, data))

    d8 = b"\0" * 8
    # --- the length prefix
    add("file_empty", "ST_FILE_TOO_SMALL", b"")
    add("file_too_small", "ST_FILE_TOO_SMALL", b"\x02\x00\x00\x00\x00\x00\x00")
    add("header_length_past_eof", "ST_HEADER_LENGTH", assemble(b"{}", pad_to=None, length=1000))
    add("header_length_one_past_eof", "ST_HEADER_LENGTH", assemble(b"{}", pad_to=None, length=3))
    add("header_too_large", "ST_HEADER_TOO_LARGE", assemble(b"{}", pad_to=None, length=100_000_001))
    add("header_length_u64_max", "ST_HEADER_TOO_LARGE", assemble(b"{}", pad_to=None, length=2**64 - 1))

    # --- encoding (checked before the grammar, wherever the bad bytes sit)
    z = Z.encode()
    add("utf8_invalid_byte", "ST_HEADER_UTF8", raw(b'{"w\xff":' + z + b"}"))
    add("utf8_overlong", "ST_HEADER_UTF8", raw(b'{"\xc0\xaf":' + z + b"}"))
    add("utf8_overlong_3byte", "ST_HEADER_UTF8", raw(b'{"\xe0\x80\xaf":' + z + b"}"))
    add("utf8_surrogate", "ST_HEADER_UTF8", raw(b'{"\xed\xa0\x80":' + z + b"}"))
    add("utf8_above_max", "ST_HEADER_UTF8", raw(b'{"\xf4\x90\x80\x80":' + z + b"}"))
    add("utf8_truncated", "ST_HEADER_UTF8", raw(b'{"\xe2\x82":' + z + b"}"))
    add("escape_lone_high_surrogate", "ST_HEADER_UTF8", raw('{"\\ud800x":' + Z + "}"))
    add("escape_lone_low_surrogate", "ST_HEADER_UTF8", raw('{"\\udc00":' + Z + "}"))

    # --- JSON grammar
    add("json_truncated", "ST_HEADER_JSON", raw('{"w":{"dtype":"F32","shape":[2],'))
    add("json_empty_header", "ST_HEADER_JSON", assemble(b"", pad_to=None))
    add("json_trailing_garbage", "ST_HEADER_JSON", raw("{}x", pad_to=None))
    add("json_trailing_nul_padding", "ST_HEADER_JSON", raw(b"{}" + b"\x00" * 6, pad_to=None))
    add("json_trailing_tab", "ST_HEADER_JSON", raw("{}\t", pad_to=None))
    add("json_two_objects", "ST_HEADER_JSON", raw("{}{}", pad_to=None))
    add("json_trailing_comma", "ST_HEADER_JSON", raw('{"w":' + Z + ",}"))
    add("json_single_quotes", "ST_HEADER_JSON", raw("{'w':1}"))
    add("json_raw_newline_in_string", "ST_HEADER_JSON", raw('{"a\nb":' + Z + "}"))
    add("json_bad_escape", "ST_HEADER_JSON", raw('{"a\\qb":' + Z + "}"))
    add("json_leading_zero", "ST_HEADER_JSON", raw('{"w":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}', d8))
    add("json_byte_order_mark", "ST_HEADER_JSON", raw(b"\xef\xbb\xbf{}"))
    add("json_too_deep", "ST_JSON_TOO_DEEP", raw('{"__metadata__":' + "[" * 100 + "]" * 100 + "}"))
    add("header_not_object", "ST_HEADER_NOT_OBJECT", raw("[]"))
    add("header_is_string", "ST_HEADER_NOT_OBJECT", raw('"w"'))
    add("duplicate_tensor_name", "ST_DUPLICATE_KEY", raw(
        '{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}',
        d8))
    add("duplicate_field", "ST_DUPLICATE_KEY",
        raw('{"w":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4))
    add("duplicate_metadata", "ST_DUPLICATE_KEY", raw('{"__metadata__":{},"__metadata__":{}}'))

    # --- tensor entries
    add("tensor_not_object", "ST_TENSOR_NOT_OBJECT", obj({"w": [0, 8]}, d8))
    add("tensor_unknown_field", "ST_TENSOR_UNKNOWN_FIELD", obj({"w": entry(offset=0)}, d8))
    add("tensor_empty_name", "ST_TENSOR_EMPTY_NAME", obj({"": entry()}, d8))
    add("tensor_name_nul", "ST_STRING_NUL", raw('{"a\\u0000b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', d8))
    add("dtype_missing", "ST_DTYPE_MISSING", obj({"w": entry(dtype=OMIT)}, d8))
    add("dtype_not_string", "ST_DTYPE_NOT_STRING", obj({"w": entry(dtype=4)}, d8))
    add("dtype_unknown", "ST_DTYPE_UNKNOWN", obj({"w": entry(dtype="Q7")}, d8))
    add("dtype_lowercase", "ST_DTYPE_UNKNOWN", obj({"w": entry(dtype="f32")}, d8))
    add("dtype_nf4", "ST_DTYPE_UNKNOWN", obj({"w": entry(dtype="NF4", offsets=(0, 1))}, b"\0"))
    add("shape_missing", "ST_SHAPE_MISSING", obj({"w": entry(shape=OMIT)}, d8))
    add("shape_not_array", "ST_SHAPE_NOT_ARRAY", obj({"w": entry(shape=2)}, d8))
    add("shape_float", "ST_SHAPE_NOT_INTEGER",
        raw('{"w":{"dtype":"F32","shape":[16.0],"data_offsets":[0,64]}}', b"\0" * 64))
    add("shape_exponent", "ST_SHAPE_NOT_INTEGER",
        raw('{"w":{"dtype":"F32","shape":[1e1],"data_offsets":[0,40]}}', b"\0" * 40))
    add("shape_string", "ST_SHAPE_NOT_INTEGER", obj({"w": entry(shape=["2"])}, d8))
    add("shape_negative", "ST_SHAPE_NEGATIVE", obj({"w": entry(shape=(2, -1))}, d8))
    add("shape_negative_zero", "ST_SHAPE_NEGATIVE", raw('{"w":{"dtype":"F32","shape":[-0],"data_offsets":[0,0]}}'))
    add("shape_above_2p53", "ST_SHAPE_TOO_LARGE", obj({"w": entry(dtype="U8", shape=(2**53 + 1,))}, d8))
    add("shape_above_u64", "ST_SHAPE_TOO_LARGE", obj({"w": entry(dtype="U8", shape=(2**70,))}, d8))
    add("shape_rank_9", "ST_SHAPE_RANK", obj({"w": entry(dtype="U8", shape=(1,) * 9, offsets=(0, 1))}, b"\0"))
    add("offsets_missing", "ST_OFFSETS_MISSING", obj({"w": entry(offsets=OMIT)}, d8))
    add("offsets_one_value", "ST_OFFSETS_NOT_PAIR", obj({"w": entry(offsets=(8,))}, d8))
    add("offsets_three_values", "ST_OFFSETS_NOT_PAIR", obj({"w": entry(offsets=(0, 4, 8))}, d8))
    add("offsets_not_array", "ST_OFFSETS_NOT_PAIR", obj({"w": entry(offsets="0,8")}, d8))
    add("offsets_float", "ST_OFFSETS_NOT_INTEGER", raw('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', d8))
    add("offsets_negative", "ST_OFFSETS_NOT_INTEGER", obj({"w": entry(offsets=(-8, 0))}, d8))
    big = 2**53 + 1
    add("offsets_above_2p53", "ST_OFFSETS_NOT_INTEGER", obj({"w": entry(dtype="U8", shape=(0,), offsets=(big, big))}))
    add("offsets_reversed", "ST_OFFSETS_REVERSED", obj({"w": entry(offsets=(8, 0))}, d8))

    # --- sizes
    add("size_mismatch", "ST_SIZE_MISMATCH", obj({"w": entry(shape=(3,))}, d8))
    add("size_mismatch_dtype", "ST_SIZE_MISMATCH", obj({"w": entry(dtype="BF16")}, d8))
    add("size_product_overflow", "ST_SIZE_OVERFLOW", obj({"w": entry(dtype="U8", shape=(2**32, 2**32))}, d8))
    add("size_bytes_overflow", "ST_SIZE_OVERFLOW", obj({"w": entry(dtype="F64", shape=(2**53, 2**8))}, d8))

    # --- layout
    add("data_not_starting_at_0", "ST_DATA_START", obj({"w": entry(offsets=(4, 12))}, b"\0" * 12))
    add("data_gap", "ST_DATA_GAP", obj({"a": entry(), "b": entry(offsets=(12, 20))}, b"\0" * 20))
    add("data_overlap", "ST_DATA_OVERLAP", obj({"a": entry(), "b": entry(offsets=(4, 12))}, b"\0" * 12))
    add("data_same_range", "ST_DATA_OVERLAP", obj({"a": entry(), "b": entry()}, d8))
    add("data_empty_inside_other", "ST_DATA_OVERLAP", obj({"a": entry(), "z": entry(shape=(0,), offsets=(4, 4))}, d8))
    add("data_trailing_bytes", "ST_DATA_END", obj({"w": entry()}, b"\0" * 9))
    add("data_past_eof", "ST_DATA_END", obj({"w": entry()}, b"\0" * 7))
    add("data_without_tensors", "ST_DATA_END", obj({}, b"\0" * 4))

    # --- metadata
    add("metadata_not_object", "ST_METADATA_NOT_OBJECT", obj({"__metadata__": ["pt"]}))
    add("metadata_value_number", "ST_METADATA_NOT_STRING", obj({"__metadata__": {"format": "pt", "step": 1}}))
    add("metadata_value_null", "ST_METADATA_NOT_STRING", obj({"__metadata__": {"format": None}}))
    add("metadata_nul", "ST_STRING_NUL", raw('{"__metadata__":{"format":"p\\u0000t"}}'))

    # --- valid edge cases
    one, two, three = b"\0\0\x80?", b"\0\0\0@", b"\0\0@@"  # 1.0f, 2.0f, 3.0f
    add("valid_empty", "OK", obj({}))
    add("valid_metadata_only", "OK", obj({"__metadata__": {"format": "pt"}}))
    add("valid_zero_element", "OK", build([("empty", "F32", (0, 4), b""), ("w", "F32", (2,), one + two)]))
    add("valid_zero_dim_huge_other", "OK", obj({"z": entry(dtype="F64", shape=(2**53, 0), offsets=(0, 0))}))
    add("valid_scalar", "OK", build([("s", "F32", (), one)]))
    add("valid_padded_header", "OK", build([("w", "BF16", (2,), b"\x80?\0@")], metadata={"format": "pt"}, pad_to=256))
    add("valid_unpadded_unaligned", "OK", build([("w", "F32", (1,), three)], pad_to=None))
    add("valid_unicode_names", "OK", raw(
        '{"caf\u00e9.w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        '"\\ud83d\\ude00.b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\x01\x02"))
    add("valid_offsets_out_of_order", "OK", obj({"b": entry(offsets=(8, 16)), "a": entry()}, b"\0" * 16))
    add("valid_all_dtypes", "OK", build([
        ("bool", "BOOL", (2,), b"\x00\x01"), ("u8", "U8", (2,), b"\x00\xff"), ("i8", "I8", (2,), b"\x80\x7f"),
        ("i16", "I16", (1,), b"\x00\x80"), ("i32", "I32", (1,), b"\xff\xff\xff\xff"),
        ("i64", "I64", (1,), b"\x02" + b"\0" * 7), ("f8_e4m3", "F8_E4M3", (2,), b"\x38\xb8"),
        ("f8_e5m2", "F8_E5M2", (2,), b"\x3c\xbc"), ("f16", "F16", (1,), b"\x00\x3c"),
        ("bf16", "BF16", (1,), b"\x80\x3f"), ("f32", "F32", (1,), one), ("f64", "F64", (1,), b"\0" * 6 + b"\xf0?")],
        metadata={"format": "pt"}))
    return c


def manifest(entries):
    lines = ["# file expected_detail (OK: must open). Written by tools/make_safetensors_corpus.py; do not edit."]
    lines += [f"{name} {detail}" for name, detail, _ in entries]
    return ("\n".join(lines) + "\n").encode("ascii")


def expected_files():
    entries = corpus()
    files = {name: data for name, _, data in entries}
    if len(files) != len(entries):
        raise SystemExit("make_safetensors_corpus.py: two cases share a file name")
    files["manifest.txt"] = manifest(entries)
    return files


def main(argv):
    check = False
    args = argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    if args and args[0] == "--check":
        check = True
        args = args[1:]
    out = args[0] if args else DEFAULT_DIR
    files = expected_files()
    if check:
        problems = []
        present = set(os.listdir(out)) if os.path.isdir(out) else set()
        for name, data in sorted(files.items()):
            path = os.path.join(out, name)
            if name not in present:
                problems.append(f"missing {name}")
            elif open(path, "rb").read() != data:
                problems.append(f"differs {name}")
        problems += [f"not written by the script: {n}" for n in sorted(present - set(files))]
        if problems:
            sys.stderr.write(f"{out}: the committed corpus and tools/make_safetensors_corpus.py disagree:\n  "
                             + "\n  ".join(problems) + "\nrun tools/make_safetensors_corpus.py to regenerate\n")
            return 1
        print(f"{out}: {len(files)} files match")
        return 0
    os.makedirs(out, exist_ok=True)
    for name in sorted(set(os.listdir(out)) - set(files)):
        if name.endswith(".safetensors"):
            os.remove(os.path.join(out, name))
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(files)} files to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
