#!/usr/bin/env python3
"""Fetches the real FLUX.1 tokenizer files (CLIP's tokenizer/ and T5's tokenizer_2/, as black-forest-labs ships
them) from a package on PyPI, for the tokenizer parity tests.

Source: the wheel of `diffsynth` 1.1.7 (DiffSynth-Studio, Apache-2.0), which ships them under
diffsynth/tokenizer_configs/flux/. Licences of the files themselves: CLIP's vocabulary and merges are OpenAI's
(MIT); T5's SentencePiece model is Google's (Apache-2.0).

  tools/fetch_flux_tokenizers.py [--pip PIP] [DEST]

writes DEST/tokenizer/ and DEST/tokenizer_2/ (default tests/data/tokenizers/flux_full, ignored by git: about 5 MB),
checking every file's SHA-256, and then refreshes the small committed subset in tests/data/tokenizers/flux/:
merges.txt and the config files of tokenizer/ (vocab.json is derived from merges.txt by the test, exactly as
CLIP defines it, which this script checks), and spiece.model plus configs of tokenizer_2/ (tokenizer.json, 2.4 MB,
stays out).
Standard library only; needs pip (the one of the running Python by default).
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DEFAULT_DEST = os.path.join(ROOT, "tests", "data", "tokenizers", "flux_full")
COMMITTED = os.path.join(ROOT, "tests", "data", "tokenizers", "flux")
PACKAGE = "diffsynth==1.1.7"
PREFIX = "diffsynth/tokenizer_configs/flux/"
FILES = {
    "tokenizer_1/merges.txt": "tokenizer/merges.txt",
    "tokenizer_1/vocab.json": "tokenizer/vocab.json",
    "tokenizer_1/special_tokens_map.json": "tokenizer/special_tokens_map.json",
    "tokenizer_1/tokenizer_config.json": "tokenizer/tokenizer_config.json",
    "tokenizer_2/spiece.model": "tokenizer_2/spiece.model",
    "tokenizer_2/tokenizer.json": "tokenizer_2/tokenizer.json",
    "tokenizer_2/special_tokens_map.json": "tokenizer_2/special_tokens_map.json",
    "tokenizer_2/tokenizer_config.json": "tokenizer_2/tokenizer_config.json",
}
SHA256 = {
    "tokenizer/merges.txt": "9fd691f7c8039210e0fced15865466c65820d09b63988b0174bfe25de299051a",
    "tokenizer/vocab.json": "e089ad92ba36837a0d31433e555c8f45fe601ab5c221d4f607ded32d9f7a4349",
    "tokenizer_2/spiece.model": "d60acb128cf7b7f2536e8f38a5b18a05535c9e14c7a355904270e15b0945ea86",
    "tokenizer_2/tokenizer.json": "f5dfec163765e18e270537fe896c49f5fad74db1525641d9b255a3008b999596",
}
COMMIT = ["tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json",
          "tokenizer_2/spiece.model", "tokenizer_2/special_tokens_map.json", "tokenizer_2/tokenizer_config.json"]


def bytes_to_unicode():
    """GPT-2's byte -> character map, as CLIP uses it."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def clip_vocab_from_merges(merges_text):
    """CLIP's vocabulary as its SimpleTokenizer defines it: the byte characters, the same with </w>, each merge's
    result in merge order, then <|startoftext|> and <|endoftext|>."""
    merges = [tuple(line.split()) for line in merges_text.split("\n")[1:] if line]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}


def main(argv):
    pip = [sys.executable, "-m", "pip"]
    args = argv[1:]
    if args[:1] == ["--pip"]:
        pip = [args[1]]
        args = args[2:]
    dest = args[0] if args else DEFAULT_DEST
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(pip + ["download", "--no-deps", "--quiet", PACKAGE, "-d", tmp], check=True)
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            sys.exit("expected one wheel, got %s" % wheels)
        with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
            for src, dst in FILES.items():
                data = z.read(PREFIX + src)
                path = os.path.join(dest, dst)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
    for name, want in SHA256.items():
        with open(os.path.join(dest, name), "rb") as f:
            have = hashlib.sha256(f.read()).hexdigest()
        if have != want:
            sys.exit("%s: SHA-256 %s, expected %s" % (name, have, want))
    with open(os.path.join(dest, "tokenizer/merges.txt"), encoding="utf-8") as f:
        derived = clip_vocab_from_merges(f.read())
    with open(os.path.join(dest, "tokenizer/vocab.json"), encoding="utf-8") as f:
        real = json.load(f)
    if derived != real:
        sys.exit("vocab.json is not what merges.txt defines; the test's derivation would be wrong")
    for name in COMMIT:
        path = os.path.join(COMMITTED, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(os.path.join(dest, name), path)
    print("fetched %s into %s; refreshed %s" % (PACKAGE, dest, COMMITTED))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
