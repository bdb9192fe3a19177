#!/usr/bin/env python3
"""Writes the tokenizer corpus: malformed tokenizer files, one per rejection rule (several for some rules), a few
valid ones, and manifest.txt ("path kind expected_detail" per line; kind AUTO, CLIP or T5; OK for valid cases).
A path is a directory (vocab.json + merges.txt + configs, or spiece.model) or a single tokenizer.json /
spiece.model file, as qd_tokenizer_open takes them.

  tools/make_tokenizer_corpus.py [DIR]          write into DIR (default tests/data/tokenizers/corpus)
  tools/make_tokenizer_corpus.py --check DIR    exit 1 unless DIR holds exactly what this script writes

The files are committed; the test suite runs --check so the script and the corpus cannot drift apart.
Rules that need huge files (TOK_FILE_TOO_LARGE, TOK_VOCAB_TOO_LARGE), prompts, max_length, decode and blobs are
covered by tests/test_tokenizer.c directly. Standard library only.
"""
import base64
import json
import os
import struct
import sys

DEFAULT_DIR = os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "tokenizers", "corpus"))

# A small real charsmap (SentencePiece-trained, from tests/data/tokenizers/t5_synth): 256 trie units + strings.
CHARSMAP = base64.b64decode(
    "AAQAAAAgAAAJCQAACgUAAAEAAIDMCAIADRkAAIAFAAAaAACAzAACAIENAAAdAACAzDwCAIgFAAAgAACAoDUAAAcAAICLBQAAAAAA"
    "gKYFAAAjAACAFwAAgAUAAICgDQAAoWEAAIAEAgCAaQAAEQAAgBQAAICyTQAAgR0AAIIVAACrLQAAgOwCAAMAAICs+AIACQAAgIRA"
    "AgALAACADQAAgA8AAICBOQAAKAAAACsAAACCMQAALQAAACwAAAAvAAAALgAAADEAAACRHAIAvMwDAL1oAgA1AAAANAAAADcAAAA2"
    "AAAAOQAAADgAAAA7AAAAOgAAAD0AAAA8AAAAPwAAAD4AAACBhQEAQAAAAEMAAABCAAAARQAAAEQAAABHAAAARgAAAEkAAABIAAAA"
    "SwAAAEoAAABNAAAATAAAAE8AAABOAAAAUQAAAFAAAABTAAAAUgAAAFUAAABUAAAAVwAAAFYAAABZAAAAWAAAAFsAAABaAAAAXQAA"
    "AFwAAABfAAAAXgAAAKENAQBgAAAAYwAAAKIZAQBlAAAAZAAAAGcAAABvgAIAaQAAAGGEAgBrAAAAagAAAG0AAABlpAIAbwAAAG4A"
    "AABxAAAAcAAAAHMAAAByAAAAdQAAAHQAAAB3AAAAdgAAAHkAAAB4AAAAewAAAHoAAAB9AAAAfAAAAH8AAAB+AAAAgQAAAIAAAACD"
    "AAAAggAAAIUAAACEAAAAhwAAAIYAAACJAAAAiAAAAIsAAACKAAAAjQAAAIwAAACPAAAAjgAAAJEAAACQAAAAkwAAAJIAAACVAAAA"
    "lAAAAJcAAACWAAAAmQAAAJgAAACbAAAAmgAAAJ0AAACcAAAAnwAAAJ4AAAChAAAAoAAAAKMAAACiAAAApQAAAKQAAACnAAAApgAA"
    "AKkAAACoAAAAqwAAAKoAAACtAAAArAAAAK8AAACuAAAAsQAAALAAAACzAAAAsgAAALUAAAC0AAAAtwAAALYAAAC5AAAAuAAAALsA"
    "AAC6AAAAvQAAALwAAAC/AAAAvgAAAMEAAADAAAAAwwAAAMIAAADFAAAAxAAAAMcAAADGAAAAyQAAAMgAAADCkAEAygAAAM0AAADM"
    "AAAAzwAAAM4AAADRAAAA0AAAANMAAADSAAAA1QAAANQAAADXAAAA1gAAANkAAADYAAAA2wAAANoAAADdAAAA3AAAAN8AAADeAAAA"
    "4QAAAOAAAADjAAAA4gAAAOUAAADkAAAA5wAAAO+kAQDpAAAA6AAAAOIoAQDjzAEA7QAAAOwAAADvAAAA7gAAAPEAAADwAAAA8wAA"
    "APIAAAD1AAAA9AAAAPcAAAD2AAAA+QAAAPgAAAD7AAAA+gAAAP0AAAD8AAAA/wAAAP4AAAAAIAAhADEAMgBBAEIAYQBiAGZpAGZs"
    "AMOFAMOgAMOpAMO2AM6pAA==")

CLIP_VOCAB = {"a": 0, "b": 1, "c": 2, "ab": 3, "a</w>": 4, "b</w>": 5, "c</w>": 6, "ab</w>": 7,
              "<|startoftext|>": 8, "<|endoftext|>": 9}
CLIP_MERGES = "#version: 0.2\na b\na b</w>\n"
UNI_VOCAB = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0], ["a", -3.0], ["b", -3.0],
             ["\u2581a", -2.5], ["ab", -4.0]]
CLIP_RE = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def clip_json(model=None, normalizer="default", pre="default", post="default", added="default", drop=()):
    """A CLIP-like tokenizer.json; pass a value to replace a section (None writes null)."""
    doc = {
        "version": "1.0",
        "added_tokens": [
            {"id": 8, "content": "<|startoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": True, "special": True},
            {"id": 9, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "NFC"}, {"type": "Replace", "pattern": {"Regex": "\\s+"}, "content": " "},
            {"type": "Lowercase"}]},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": CLIP_RE}, "behavior": "Removed", "invert": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 9], "cls": ["<|startoftext|>", 8],
                           "trim_offsets": False, "add_prefix_space": False},
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<|endoftext|>", "continuing_subword_prefix": "",
                  "end_of_word_suffix": "</w>", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": dict(CLIP_VOCAB), "merges": ["a b", "a b</w>"]},
    }
    if model is not None:
        doc["model"].update(model)
    for key, value in (("normalizer", normalizer), ("pre_tokenizer", pre), ("post_processor", post),
                       ("added_tokens", added)):
        if value != "default":
            doc[key] = value
    for key in drop:
        doc.pop(key, None)
    return dumps(doc)


def t5_json(model=None, normalizer="default", pre="default", post="default", added="default", charsmap=None):
    cm = CHARSMAP if charsmap is None else charsmap
    doc = {
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True} for i, c in ((0, "<pad>"), (1, "</s>"), (2, "<unk>"))],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Precompiled", "precompiled_charsmap": cm if isinstance(cm, str)
             else base64.b64encode(cm).decode()},
            {"type": "Strip", "strip_left": False, "strip_right": True},
            {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "\u2581"}]},
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "</s>", "type_id": 0}}],
                           "special_tokens": {"</s>": {"id": "</s>", "ids": [1], "tokens": ["</s>"]}}},
        "model": {"type": "Unigram", "unk_id": 2, "vocab": [list(v) for v in UNI_VOCAB], "byte_fallback": False},
    }
    if model is not None:
        doc["model"].update(model)
    for key, value in (("normalizer", normalizer), ("pre_tokenizer", pre), ("post_processor", post),
                       ("added_tokens", added)):
        if value != "default":
            doc[key] = value
    return dumps(doc)


# --- a hand-written protobuf encoder for SentencePiece models ------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def piece(text, score, kind=1):
    body = b""
    if text is not None:
        body += field(1, 2, text if isinstance(text, bytes) else text.encode("utf-8"))
    body += field(2, 5, struct.pack("<f", score)) + field(3, 0, varint(kind))
    return field(1, 2, body)


def spm(pieces=None, model_type=1, unk_id=2, charsmap=CHARSMAP, extra=b""):
    pieces = UNI_VOCAB if pieces is None else pieces
    out = b"".join(piece(p, s, 2 if i == unk_id else 1) for i, (p, s) in enumerate(pieces))
    out += field(2, 2, field(3, 0, varint(model_type)) + field(40, 0, varint(unk_id)))
    if charsmap is not None:
        out += field(3, 2, field(1, 2, b"nmt_nfkc") + field(2, 2, charsmap))
    return out + extra


# --- charsmap surgery -------------------------------------------------------------------------------------------

def units_of(cm):
    size = struct.unpack("<I", cm[:4])[0]
    return list(struct.unpack("<%dI" % (size // 4), cm[4:4 + size])), cm[4 + size:]


def pack(units, norm):
    return struct.pack("<I", 4 * len(units)) + struct.pack("<%dI" % len(units), *units) + norm


def first_leaf(units):
    """(unit index of a leaf edge, index of its value unit), walking like the loader."""
    off = lambda u: (u >> 10) << ((u & (1 << 9)) >> 6)  # noqa: E731
    stack = [off(units[0])]
    while stack:
        base = stack.pop()
        for c in range(1, 256):
            q = base ^ c
            if q < len(units) and (units[q] & ((1 << 31) | 0xFF)) == c:
                child = q ^ off(units[q])
                if (units[q] >> 8) & 1:
                    return q, child
                stack.append(child)
    raise AssertionError("no leaf")


def charsmap_value_mid_char():
    units, norm = units_of(CHARSMAP)
    _, child = first_leaf(units)
    mid = norm.index(b"\xc3") + 1  # the continuation byte of a two-byte character
    units[child] = (units[child] & (1 << 31)) | mid
    return pack(units, norm)


def charsmap_value_past_end():
    units, norm = units_of(CHARSMAP)
    _, child = first_leaf(units)
    units[child] = (units[child] & (1 << 31)) | (len(norm) + 5)
    return pack(units, norm)


def charsmap_leaf_outside():
    units, norm = units_of(CHARSMAP)
    q, _ = first_leaf(units)
    # keep label and leaf bit; an offset that sends the value far past the array
    units[q] = (units[q] & 0x3FF) | (((q ^ 0xFFFF) & 0x3FFFFF) << 10)
    return pack(units, norm)


def corpus():
    """[(path, kind, detail, {relative file: bytes})] in a fixed order; path is the directory or the file."""
    c = []

    def clip_dir(name, detail, vocab=None, merges=None, config=None, special=None, kind="CLIP", extra=None):
        files = {"vocab.json": vocab if vocab is not None else dumps(CLIP_VOCAB),
                 "merges.txt": merges if merges is not None else CLIP_MERGES.encode()}
        if config is not None:
            files["tokenizer_config.json"] = config
        if special is not None:
            files["special_tokens_map.json"] = special
        files.update(extra or {})
        c.append((name, kind, detail, files))

    def single(name, kind, detail, data):
        c.append((name, kind, detail, {"": data}))

    # --- valid
    clip_dir("valid_clip_dir", "OK")
    single("valid_clip.json", "CLIP", "OK", clip_json())
    single("valid_t5.json", "T5", "OK", t5_json())
    single("valid_t5.model", "T5", "OK", spm())
    c.append(("valid_t5_dir", "T5", "OK", {"spiece.model": spm(),
                                           "tokenizer_config.json": dumps({"extra_ids": 2})}))

    # --- directories and kinds
    c.append(("no_files", "AUTO", "TOK_NO_FILES", {"README": b"nothing here\n"}))
    clip_dir("clip_dir_opened_as_t5", "TOK_KIND_MISMATCH", kind="T5")
    single("t5_json_opened_as_clip.json", "CLIP", "TOK_KIND_MISMATCH", t5_json())
    single("t5_model_opened_as_clip.model", "CLIP", "TOK_KIND_MISMATCH", spm())

    # --- JSON itself
    clip_dir("vocab_syntax", "TOK_JSON", vocab=b'{"a": 0,')
    clip_dir("vocab_trailing_comma", "TOK_JSON", vocab=b'{"a": 0,}')
    clip_dir("vocab_utf8", "TOK_JSON_UTF8", vocab=b'{"a\xff": 0}')
    clip_dir("vocab_lone_surrogate", "TOK_JSON_UTF8", vocab=b'{"\\ud800": 0}')
    clip_dir("vocab_duplicate_key", "TOK_JSON_DUPLICATE_KEY", vocab=b'{"a": 0, "a": 1}')
    clip_dir("vocab_too_deep", "TOK_JSON", vocab=b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}")
    clip_dir("vocab_array", "TOK_JSON_NOT_OBJECT", vocab=b'["a", "b"]')
    single("tokenizer_json_string.json", "AUTO", "TOK_JSON_NOT_OBJECT", b'"BPE"')

    # --- BPE vocabulary
    clip_dir("vocab_empty", "TOK_VOCAB_EMPTY", vocab=b"{}", merges=b"#version: 0.2\n")
    clip_dir("vocab_id_negative", "TOK_VOCAB_ID", vocab=dumps(dict(CLIP_VOCAB, c=-2)))
    clip_dir("vocab_id_float", "TOK_VOCAB_ID", vocab=dumps(dict(CLIP_VOCAB, c=2.0)))
    clip_dir("vocab_id_string", "TOK_VOCAB_ID", vocab=dumps(dict(CLIP_VOCAB, c="2")))
    clip_dir("vocab_id_too_big", "TOK_VOCAB_ID", vocab=dumps(dict(CLIP_VOCAB, c=10)))
    clip_dir("vocab_id_huge", "TOK_VOCAB_ID", vocab=dumps(dict(CLIP_VOCAB, c=2 ** 70)))
    clip_dir("vocab_duplicate_id", "TOK_VOCAB_DUPLICATE_ID", vocab=dumps(dict(CLIP_VOCAB, c=1)))
    clip_dir("token_empty", "TOK_TOKEN_EMPTY", vocab=dumps(dict({"": 10}, **CLIP_VOCAB)))
    clip_dir("token_nul", "TOK_TOKEN_NUL", vocab=dumps(dict({"x\u0000y": 10}, **CLIP_VOCAB)))
    clip_dir("token_too_long", "TOK_TOKEN_TOO_LONG", vocab=dumps(dict({"x" * 70000: 10}, **CLIP_VOCAB)))

    # --- merges.txt
    clip_dir("merges_three_tokens", "TOK_MERGES_LINE", merges=b"#version: 0.2\na b c\n")
    clip_dir("merges_one_token", "TOK_MERGES_LINE", merges=b"#version: 0.2\nab\n")
    clip_dir("merges_empty_line", "TOK_MERGES_LINE", merges=b"#version: 0.2\na b\n\na b</w>\n")
    clip_dir("merges_double_space", "TOK_MERGES_LINE", merges=b"#version: 0.2\na  b\n")
    clip_dir("merges_empty_token", "TOK_MERGES_LINE", merges=b"#version: 0.2\na \n")
    clip_dir("merges_unknown_token", "TOK_MERGES_UNKNOWN_TOKEN", merges=b"#version: 0.2\na z\n")
    clip_dir("merges_result_unknown", "TOK_MERGES_RESULT_UNKNOWN", merges=b"#version: 0.2\nb c\n")

    # --- configs
    clip_dir("config_syntax", "TOK_JSON", config=b"{")
    clip_dir("config_bos_number", "TOK_CONFIG", config=dumps({"bos_token": 5}))
    clip_dir("config_bos_object_without_content", "TOK_CONFIG", special=dumps({"bos_token": {"lstrip": False}}))
    clip_dir("config_bos_unknown", "TOK_SPECIAL_TOKEN", config=dumps({"bos_token": "<s>"}))
    clip_dir("config_pad_unknown", "TOK_SPECIAL_TOKEN", special=dumps({"pad_token": "[PAD]"}))
    clip_dir("config_max_length_string", "TOK_CONFIG", config=dumps({"model_max_length": "77"}))
    clip_dir("config_decoder_not_object", "TOK_CONFIG", config=dumps({"added_tokens_decoder": []}))
    clip_dir("config_decoder_bad_key", "TOK_ADDED_TOKEN", config=dumps(
        {"added_tokens_decoder": {"x9": {"content": "<|endoftext|>"}}}))
    clip_dir("config_decoder_no_content", "TOK_ADDED_TOKEN", config=dumps(
        {"added_tokens_decoder": {"9": {"special": True}}}))
    clip_dir("config_decoder_flag_string", "TOK_ADDED_TOKEN", config=dumps(
        {"added_tokens_decoder": {"9": {"content": "<|endoftext|>", "special": "yes"}}}))
    clip_dir("config_decoder_wrong_id", "TOK_ADDED_TOKEN_ID", config=dumps(
        {"added_tokens_decoder": {"8": {"content": "<|endoftext|>"}}}))
    clip_dir("config_decoder_lstrip", "TOK_ADDED_TOKEN_FLAGS", config=dumps(
        {"added_tokens_decoder": {"9": {"content": "<|endoftext|>", "lstrip": True}}}))
    clip_dir("config_additional_not_array", "TOK_CONFIG", config=dumps({"additional_special_tokens": "<x>"}))
    clip_dir("config_additional_unknown", "TOK_SPECIAL_TOKEN", config=dumps({"additional_special_tokens": ["<x>"]}))

    # --- tokenizer.json: model
    single("model_missing.json", "AUTO", "TOK_MODEL", clip_json(drop=("model",)))
    single("model_wordpiece.json", "AUTO", "TOK_UNSUPPORTED_MODEL", clip_json(model={"type": "WordPiece"}))
    single("bpe_vocab_array.json", "AUTO", "TOK_VOCAB_NOT_OBJECT", clip_json(model={"vocab": [["a", 0]]}))
    single("bpe_merges_object.json", "AUTO", "TOK_MODEL", clip_json(model={"merges": {"a": "b"}}))
    single("bpe_merge_numbers.json", "AUTO", "TOK_MERGES_LINE", clip_json(model={"merges": [[1, 2]]}))
    single("bpe_merge_pair_unknown.json", "AUTO", "TOK_MERGES_UNKNOWN_TOKEN", clip_json(model={"merges": [["a", "q"]]}))
    single("bpe_dropout.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(model={"dropout": 0.1}))
    single("bpe_subword_prefix.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT",
           clip_json(model={"continuing_subword_prefix": "##"}))
    single("bpe_fuse_unk_string.json", "AUTO", "TOK_MODEL", clip_json(model={"fuse_unk": "yes"}))
    single("bpe_suffix_too_long.json", "AUTO", "TOK_MODEL", clip_json(model={"end_of_word_suffix": "x" * 100}))
    single("bpe_unk_unknown.json", "AUTO", "TOK_UNK_ID", clip_json(model={"unk_token": "<unk>"}))

    # --- tokenizer.json: components
    single("normalizer_nfkc.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(normalizer={"type": "NFKC"}))
    single("normalizer_no_type.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(normalizer={"kind": "NFC"}))
    single("normalizer_sequence_no_list.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(normalizer={"type": "Sequence"}))
    single("replace_other_regex.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(
        normalizer={"type": "Replace", "pattern": {"Regex": "[a-z]+"}, "content": ""}))
    single("replace_empty_string.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(
        normalizer={"type": "Replace", "pattern": {"String": ""}, "content": "x"}))
    single("replace_no_content.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(
        normalizer={"type": "Replace", "pattern": {"String": "a"}}))
    single("strip_flag_string.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(
        normalizer={"type": "Strip", "strip_left": "no", "strip_right": True}))
    single("normalizers_too_many.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(
        normalizer={"type": "Sequence", "normalizers": [{"type": "NFC"}] * 9}))
    single("pre_split_other_regex.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(
        pre={"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Removed", "invert": True}))
    single("pre_bert.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(pre={"type": "BertPreTokenizer"}))
    single("pre_bytelevel_flag_number.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(
        pre={"type": "ByteLevel", "add_prefix_space": 0}))
    single("post_template_two_prefixes.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(post={
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "s", "type_id": 0}}, {"SpecialToken": {"id": "s", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"s": {"id": "s", "ids": [8], "tokens": ["<|startoftext|>"]}}}))
    single("post_template_no_sequence.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(post={
        "type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "s", "type_id": 0}}],
        "special_tokens": {"s": {"id": "s", "ids": [8], "tokens": ["<|startoftext|>"]}}}))
    single("post_template_unknown_special.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(post={
        "type": "TemplateProcessing", "single": [{"Sequence": {"id": "A", "type_id": 0}},
                                                 {"SpecialToken": {"id": "z", "type_id": 0}}],
        "special_tokens": {}}))
    single("post_roberta_wrong_id.json", "AUTO", "TOK_COMPONENT_FIELD", clip_json(post={
        "type": "RobertaProcessing", "sep": ["<|endoftext|>", 3], "cls": ["<|startoftext|>", 8]}))
    single("post_bytelevel.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", clip_json(post={"type": "ByteLevel"}))
    single("added_not_array.json", "AUTO", "TOK_ADDED_TOKEN", clip_json(added={"id": 9}))
    single("added_no_id.json", "AUTO", "TOK_ADDED_TOKEN", clip_json(added=[{"content": "<|endoftext|>"}]))
    single("added_id_mismatch.json", "AUTO", "TOK_ADDED_TOKEN_ID", clip_json(added=[{"id": 3, "content": "a"}]))
    single("added_beyond_vocab.json", "AUTO", "TOK_ADDED_TOKEN_ID", clip_json(added=[{"id": 12, "content": "<new>"}]))
    single("added_rstrip.json", "AUTO", "TOK_ADDED_TOKEN_FLAGS", clip_json(
        added=[{"id": 9, "content": "<|endoftext|>", "rstrip": True}]))
    single("added_single_word.json", "AUTO", "TOK_ADDED_TOKEN_FLAGS", clip_json(
        added=[{"id": 9, "content": "<|endoftext|>", "single_word": True}]))

    # --- Unigram tokenizer.json
    single("uni_vocab_object.json", "AUTO", "TOK_MODEL", t5_json(model={"vocab": {"a": 0}}))
    single("uni_entry_short.json", "AUTO", "TOK_UNIGRAM_ENTRY", t5_json(model={"vocab": UNI_VOCAB + [["c"]]}))
    single("uni_entry_swapped.json", "AUTO", "TOK_UNIGRAM_ENTRY", t5_json(model={"vocab": UNI_VOCAB + [[-1.0, "c"]]}))
    single("uni_score_infinite.json", "AUTO", "TOK_UNIGRAM_SCORE",
           t5_json(model={"vocab": UNI_VOCAB}).replace(b"-4.0", b"-1e999"))
    single("uni_vocab_empty.json", "AUTO", "TOK_VOCAB_EMPTY", t5_json(model={"vocab": [], "unk_id": 0}))
    single("uni_duplicate_piece.json", "AUTO", "TOK_VOCAB_DUPLICATE_TOKEN",
           t5_json(model={"vocab": UNI_VOCAB + [["a", -5.0]]}))
    single("uni_unk_missing.json", "AUTO", "TOK_UNK_ID", t5_json(model={"unk_id": None}))
    single("uni_unk_out_of_range.json", "AUTO", "TOK_UNK_ID", t5_json(model={"unk_id": 8}))
    single("uni_piece_too_long.json", "AUTO", "TOK_TOKEN_TOO_LONG", t5_json(model={"vocab": UNI_VOCAB + [["x" * 300, -9.0]]}))
    single("uni_byte_fallback_string.json", "AUTO", "TOK_MODEL", t5_json(model={"byte_fallback": "no"}))
    single("metaspace_two_chars.json", "AUTO", "TOK_COMPONENT_FIELD", t5_json(
        pre={"type": "Metaspace", "replacement": "__", "prepend_scheme": "always", "split": True}))
    single("metaspace_first.json", "AUTO", "TOK_UNSUPPORTED_COMPONENT", t5_json(
        pre={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True}))
    single("metaspace_scheme_number.json", "AUTO", "TOK_COMPONENT_FIELD", t5_json(
        pre={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": 1, "split": True}))
    single("precompiled_not_string.json", "AUTO", "TOK_COMPONENT_FIELD",
           t5_json(normalizer={"type": "Precompiled", "precompiled_charsmap": 5}))

    # --- precompiled charsmaps
    single("charsmap_base64_bad_char.json", "AUTO", "TOK_CHARSMAP_BASE64", t5_json(charsmap="AAAA*AAA"))
    single("charsmap_base64_length.json", "AUTO", "TOK_CHARSMAP_BASE64", t5_json(charsmap="AAAAA"))
    single("charsmap_short.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=b"\x04\x00"))
    single("charsmap_trie_size_odd.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=b"\x06\x00\x00\x00" + CHARSMAP[4:]))
    single("charsmap_trie_past_end.json", "AUTO", "TOK_CHARSMAP",
           t5_json(charsmap=b"\x00\x10\x00\x00" + CHARSMAP[4:]))
    single("charsmap_strings_utf8.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=CHARSMAP + b"\xff"))
    single("charsmap_value_mid_char.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=charsmap_value_mid_char()))
    single("charsmap_value_past_end.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=charsmap_value_past_end()))
    single("charsmap_leaf_outside.json", "AUTO", "TOK_CHARSMAP", t5_json(charsmap=charsmap_leaf_outside()))

    # --- spiece.model
    single("spm_truncated_varint.model", "AUTO", "TOK_SPM_PROTO", spm() + b"\x20\x80")
    single("spm_length_past_end.model", "AUTO", "TOK_SPM_PROTO", spm() + b"\x0a\x7f")
    single("spm_wire_type_group.model", "AUTO", "TOK_SPM_PROTO", spm(extra=b"\x0b"))
    single("spm_varint_overflow.model", "AUTO", "TOK_SPM_PROTO", spm(extra=b"\x20" + b"\xff" * 10 + b"\x01"))
    single("spm_field_zero.model", "AUTO", "TOK_SPM_PROTO", spm(extra=b"\x00\x00"))
    single("spm_piece_wire.model", "AUTO", "TOK_SPM_PROTO", spm(extra=field(1, 2, field(2, 0, varint(3)))))
    single("spm_piece_no_text.model", "AUTO", "TOK_SPM_PIECE", spm(pieces=UNI_VOCAB + [(None, -1.0)]))
    single("spm_piece_nan.model", "AUTO", "TOK_SPM_PIECE", spm(pieces=UNI_VOCAB + [("c", float("nan"))]))
    single("spm_piece_utf8.model", "AUTO", "TOK_TOKEN_UTF8", spm(pieces=UNI_VOCAB + [(b"c\xff", -1.0)]))
    single("spm_piece_duplicate.model", "AUTO", "TOK_VOCAB_DUPLICATE_TOKEN", spm(pieces=UNI_VOCAB + [("a", -1.0)]))
    single("spm_piece_empty.model", "AUTO", "TOK_TOKEN_EMPTY", spm(pieces=UNI_VOCAB + [("", -1.0)]))
    single("spm_no_pieces.model", "AUTO", "TOK_VOCAB_EMPTY", spm(pieces=[], unk_id=0))
    single("spm_model_type_bpe.model", "AUTO", "TOK_SPM_MODEL_TYPE", spm(model_type=2))
    single("spm_unk_out_of_range.model", "AUTO", "TOK_UNK_ID", spm(unk_id=40))
    single("spm_charsmap_bad.model", "AUTO", "TOK_CHARSMAP", spm(charsmap=b"\x08\x00\x00\x00\x01\x02"))
    return c


def expected(out_dir):
    """{relative path: bytes} of everything the corpus directory should hold."""
    files = {}
    lines = []
    for name, kind, detail, content in corpus():
        lines.append("%s %s %s" % (name, kind, detail))
        for rel, data in content.items():
            files[os.path.join(name, rel) if rel else name] = data
    files["manifest.txt"] = ("\n".join(lines) + "\n").encode()
    return files


def main(argv):
    if argv[1:2] == ["--check"]:
        out_dir = argv[2] if len(argv) > 2 else DEFAULT_DIR
        want = expected(out_dir)
        have = {}
        for root, _, names in os.walk(out_dir):
            for n in names:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    have[os.path.relpath(p, out_dir)] = f.read()
        bad = sorted(set(want) ^ set(have)) + sorted(k for k in want if k in have and want[k] != have[k])
        if bad:
            print("tokenizer corpus out of date (%d files differ, e.g. %s); run tools/make_tokenizer_corpus.py"
                  % (len(bad), bad[:5]))
            return 1
        return 0
    out_dir = argv[1] if len(argv) > 1 else DEFAULT_DIR
    if os.path.isdir(out_dir):
        for root, dirs, names in os.walk(out_dir, topdown=False):
            for n in names:
                os.unlink(os.path.join(root, n))
            for d in dirs:
                os.rmdir(os.path.join(root, d))
    for rel, data in expected(out_dir).items():
        p = os.path.join(out_dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
