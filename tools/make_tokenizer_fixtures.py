#!/usr/bin/env python3
"""Writes the tokenizer parity fixtures: the prompts, and the token ids Hugging Face gives for them, which
tests/test_tokenizer.c compares qd's C tokenizers against. Also writes the two small synthetic tokenizers.

Needs `tokenizers`, `transformers` and `sentencepiece` (e.g. the repository's .venv-golden) and the real FLUX
tokenizer files (tools/fetch_flux_tokenizers.py first):

  .venv-golden/bin/python tools/fetch_flux_tokenizers.py
  .venv-golden/bin/python tools/make_tokenizer_fixtures.py

Writes (all committed, all small):
  tests/data/tokenizers/parity.json         prompts + expected ids (see the "sets" comments below)
  tests/data/tokenizers/clip_synth/tokenizer.json   a BPE trained here with CLIP's pipeline (1,200 tokens;
                                            some final bytes lack a </w> token, so the unknown path is used)
  tests/data/tokenizers/t5_synth/spiece.model       a SentencePiece Unigram trained here with byte fallback and a
                                            small custom normalization table (so its charsmap is tiny)
  tests/data/tokenizers/t5_synth/tokenizer.json     the same model as tokenizer.json, with the legacy T5 pipeline
The synthetic files are trained on the prompts themselves (plus generated text), so they look like real ones.
"""
import io
import json
import os
import random
import sys
import tempfile
import unicodedata

import sentencepiece as spm
import tokenizers
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizers")
FULL = os.path.join(DATA, "flux_full")
CLIP_RE = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# --- prompts ----------------------------------------------------------------------------------------------------

BASE = [
    "a photo of a cat",
    "A cat holding a sign that says hello world",
    "A majestic lion jumping from a big stone at night, digital art, highly detailed, 8k",
    "portrait of an old fisherman, weathered face, dramatic lighting, Rembrandt style, oil on canvas",
    "cyberpunk city street at night, neon signs in Japanese, rain, reflections, cinematic, 35mm",
    "a bowl of ramen with chopsticks, steam rising, top-down view, food photography",
    "an astronaut riding a horse on mars, photorealistic",
    "isometric voxel art of a tiny island with a lighthouse",
    "watercolor painting of a fox in a snowy forest",
    "A poster that reads \"SUMMER SALE 50% OFF\" in bold red letters",
    "logo for a coffee shop called 'The Daily Grind', minimalist, vector",
    "macro shot of a dew drop on a spider web, bokeh background, f/2.8, ISO 100",
    "studio ghibli style landscape with rolling hills and a windmill",
    "a 3D render of a glass chess set, caustics, ray tracing, octane render",
    "black and white street photography, Paris 1950s, Henri Cartier-Bresson",
    "infographic about the water cycle with labeled arrows",
    "hyperrealistic painting of a tiger's eye reflecting a jungle",
    "the word 'FLUX' written in clouds over a desert",
    "children's book illustration: a bear and a rabbit having a picnic",
    "product photo of sneakers on a white background, soft shadows",
]

UNICODE = [
    "café au lait at a Parisian bistro", "naïve art of a coöperative farm", "Zürich skyline at dusk",
    "São Paulo street festival", "crème brûlée on a porcelain plate", "piñata at a fiesta in México",
    "cafe\u0301 with a decomposed accent", "A\u030a and e\u0301 and o\u0308 and n\u0303",
    "\u1e9b\u0323 long s with dot", "ΣΊΣΥΦΟΣ pushing a boulder", "ΟΔΥΣΣΕΥΣ and Σ alone and σς",
    "Москва зимой, красная площадь", "Україна, соняшникове поле", "İstanbul ve Iğdır, ışık",
    "Straße in Köln, STRASSE, ß ẞ", "ﬁne ﬂowers and ﬀ ligatures", "ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３",
    "ｶﾞｷﾞｸﾞ halfwidth katakana ﾊﾟﾋﾟ", "東京の桜、富士山の風景", "一只可爱的小猫在草地上玩耍",
    "한국의 전통 한옥 마을", "ᄒ\u1161\u11ab jamo sequence 한", "กรุงเทพมหานคร ตลาดน้ำ",
    "مدينة عربية قديمة في الصحراء", "עיר עתיקה בירושלים", "भारत का ताजमहल सूर्योदय में",
    "क्षत्रिय योद्धा", "தமிழ் கோவில் சிற்பம்", "ελληνικός ναός στην Ακρόπολη", "Ελλάδα ΆΈΉΊΌΎΏ",
    "emoji party 🎉🎈🎂", "a dog 🐶 and a cat 🐱", "family 👨‍👩‍👧‍👦 at the beach 🏖️",
    "thumbs up 👍🏽 and wave 👋🏿", "flags 🇫🇷🇯🇵🇺🇸", "keycaps 1️⃣ 2️⃣ #️⃣", "hearts ❤️ ♥ ❤",
    "☺️ smiling ☺", "🏳️‍🌈 rainbow flag", "math: ∑ ∫ √ ∞ ≈ ≠ ≤ ≥ ∂ ∇", "x² + y³ = z⁴, H₂O, CO₂",
    "½ cup of sugar, ¼ tsp salt, ¾ cup milk", "Ⅻ o'clock on a roman numeral clock Ⅳ Ⅸ", "① ② ③ circled",
    "٣ ٤ ٥ arabic-indic digits", "१२३ devanagari digits", "€100 £50 ¥1000 ₹500 ₿0.5",
    "©2024 ®™ trademark", "a\u00a0non-breaking\u00a0space", "ideographic\u3000space", "zero\u200bwidth\u200bspace",
    "soft\u00adhyphen", "left\u200eto\u200fright marks", "control\x01char\x7f and \x1b escape",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cform", "next line \u0085 and line sep \u2028 para \u2029",
    "em\u2003space and thin\u2009space", "ogham\u1680space", "combining on space \u0301 alone",
    "\u0301 leading combining mark", "ＡＢＣ\u0301", "q\u0307\u0323 two marks", "e\u0301\u0301\u0301 stacked",
    "Å vs A\u030a vs \u212b angstrom", "ﬃ ﬄ ﬅ ﬆ", "ǅ ǈ ǋ titlecase digraphs", "Ⓐ Ⓑ ⓐ circled letters",
    "𝐁𝐨𝐥𝐝 𝑰𝒕𝒂𝒍𝒊𝒄 math letters", "𝟙𝟚𝟛 double-struck digits", "ʰʲʷ modifier letters", "ªº ordinals",
    "Ⅰ roman one and ⅰ small", "ＡＢＣ！？（）", "「引用」と『二重』", "…ellipsis… and ‥", "—em dash– en dash",
    "“smart quotes” and ‘single’", "«guillemets» ‹single›", "¿Qué? ¡Sí!", "‰ ‱ per mille", "° degrees",
    "\u2126 ohm sign and \u03a9 omega", "K kelvin sign vs K", "\ufb2a hebrew presentation form",
    "\u0958 devanagari qa", "\u0e33 thai sara am", "\u0eb3 lao", "가\u11a8 LV plus T", "\u1100\u1161\u11a8 L V T",
    "\U0001f1e6\U0001f1e8\U0001f1e6 three regional indicators", "\u00a9\u200d\u00a9 copyright zwj",
    "a\u200db zwj between letters", "a\u200cb zwnj", "x\ufe0f vs16 on letter", "\u0600\u0661 prepend mark",
    "\ufeffbyte order mark", "\U000e0041 tag character", "private use \ue000\uf8ff", "noncharacter \ufdd0",
    "replacement \ufffd char", "ᚠᚢᚦ runes", "ꙮ multiocular o", "𓀀 egyptian hieroglyph", "ℌℑℜ blackletter",
]

NUMBERS = [
    "1234567890", "3.14159265358979", "1,000,000 dollars", "2nd place, 3rd, 21st", "version v1.2.3-rc4",
    "2024-05-17T12:34:56Z", "+1 (555) 123-4567", "0x1F600 and 0b1010", "1e-10 and 6.02e23", "-42 degrees",
    "100%", "24/7", "50/50 chance", "4K UHD 3840x2160", "f/1.4 1/8000s ISO6400", "1girl, solo, 2boys",
    "00000000000000000000", "9" * 80, "3 cats and 12 dogs and 123 birds",
]

PUNCT = [
    "!!!???...", "---", "***bold***", "((masterpiece)), [[best quality]], {{detailed}}", "\"quoted\" text",
    "'single quoted'", "<html><body>text</body></html>", "C++ and C# and F#", "a/b\\c|d", "@#$%^&*()_+=",
    "~`~`~", ":) :( :D ;-)", "...", "?!", "a,b;c:d", "email@example.com", "https://example.com/path?q=1&r=2",
    "#hashtag @mention", "snake_case and kebab-case and camelCase", "__init__.py", "!!!!!!!!!!!!!!!!!!!!!!!!",
    "¡¿", "''''", "'", "\"", "<>", "<<<>>>", "$$$", "(", ")))", "_", "%", "...---...",
]

CONTRACTIONS = [
    "don't stop", "It's a dog's life", "IT'S LOUD", "we'll see", "they've gone", "I'M HERE", "you'd think",
    "rock'n'roll", "''s", "'s", "'S", "O'Neil's pub", "can't won't shouldn't", "y'all'd've", "'tis the season",
    "ma'am", "'re 've 'm 'll 'd", "'RE 'VE 'M 'LL 'D", "it`s backtick", "it’s curly apostrophe", "'x 'y 'z",
    "the '90s", "cats' toys", "James's book",
]

SPECIALS = [
    "<|startoftext|>", "<|endoftext|>", "<|ENDOFTEXT|>", "<|StartOfText|> hello", "a<|endoftext|>b",
    "<|endoftext|><|endoftext|>", "x <|startoftext|> y", "!<|endoftext|>", "<|endoftext", "|endoftext|>",
    "</s>", "<pad>", "<unk>", "hello</s>world", "<extra_id_0>", "<extra_id_99>", "<extra_id_100>",
    "fill <extra_id_0> the <extra_id_1> blanks", "<s>", "▁hello", "▁▁", "▁", "a ▁ b", "▁▁▁x", "<0x41>",
    "<EXTRA_ID_0>", "< pad >", "<|startoftext|><|endoftext|>", "<unk><unk>", "</s></s>",
]

SPACES = [
    "", " ", "   ", "\t\n", "  leading spaces", "trailing spaces   ", "a  b", "a   b    c", "a\u3000b",
    "a\u00a0b", "a\r\nb", "\n\n\nnewlines\n\n", " \t mixed \t ", "a \u2003 b", "x\u200by",
]

LONG = [
    "A breathtaking panoramic view of a vast mountain range at sunrise, with golden light spilling over snow-capped "
    "peaks, mist rolling through the valleys below, a crystal clear alpine lake reflecting the sky, pine forests "
    "along the shore, a small wooden cabin with smoke rising from its chimney, a lone hiker with a red backpack "
    "standing on a rocky outcrop, eagles soaring overhead, ultra detailed, 8k resolution, professional landscape "
    "photography, shot on a medium format camera, dramatic clouds, vibrant colors, HDR",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 40),
    " ".join(["Très jolie maison à la campagne, où l'on mange des crêpes."] * 30),
    "a" * 1000,
    "ab" * 300,
    "東京" * 400,
    "🎉" * 200,
    "word " * 700,
    ", ".join("tag%d" % i for i in range(300)),
    "e\u0301" * 100,
    "supercalifragilisticexpialidocious " * 20,
    "Pneumonoultramicroscopicsilicovolcanoconiosis",
    "x" * 300 + " " + "y" * 300,
]

BAD_BYTES = [
    b"\xff", b"abc\xc3", b"\xe2\x82", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80 above max", b"\xc0\xaf overlong",
    b"caf\xe9 latin-1", b"\x80\x81\x82 continuation bytes", b"ok \xf0\x9f\x98 truncated emoji", b"\xe0\x80\x80",
    b"mixed \xc3\xa9 and \xc3 and \xa9", b"\xfe\xfe\xff\xff",
]

WORDS = ("cat dog castle dragon robot forest ocean city mountain flower portrait landscape sunset galaxy "
         "knight wizard samurai astronaut garden river bridge train lantern library desert tundra volcano "
         "cathedral market harbor village meadow waterfall").split()
STYLES = ("oil painting|watercolor|pixel art|ukiyo-e|art nouveau|cinematic lighting|studio photo|anime|"
          "low poly|charcoal sketch|pop art|baroque|vaporwave|steampunk|film noir|impressionist").split("|")
ADJ = "ancient tiny giant glowing rusty frozen golden haunted floating neon misty crystal broken cozy".split()
EXTRA = ["é", "ß", "İ", "Σ", "東京", "🎨", "👍🏽", "½", "²", "ﬁ", "ＡＢ", "٣", "\u00a0", "  ", "!!", "'s", "’", "—",
         "<|endoftext|>", "</s>", "\t", "ﾊﾟ", "한", "ॐ", "🇯🇵", "n\u0303", "©", "1️⃣", "\u200d"]


def generated(n, seed=20240517):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 6)):
            r = rng.random()
            if r < 0.45:
                parts.append("%s %s" % (rng.choice(ADJ), rng.choice(WORDS)))
            elif r < 0.65:
                parts.append(rng.choice(STYLES))
            elif r < 0.8:
                parts.append(rng.choice(EXTRA) + rng.choice(WORDS))
            elif r < 0.9:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            else:
                w = rng.choice(WORDS)
                parts.append(w.upper() if rng.random() < 0.5 else w.title())
        sep = rng.choice([", ", " ", ". ", " | ", ",", "  ", "\n"])
        text = sep.join(parts)
        if rng.random() < 0.1:
            text = "  " + text + "  "
        out.append(text)
    return out


def prompts():
    texts = BASE + UNICODE + NUMBERS + PUNCT + CONTRACTIONS + SPECIALS + SPACES + LONG
    texts += generated(560 - len(texts) - len(BAD_BYTES))
    items = [{"text": t} for t in texts] + [{"hex": b.hex()} for b in BAD_BYTES]
    return items


def as_text(item):
    return item["text"] if "text" in item else bytes.fromhex(item["hex"]).decode("utf-8", "replace")


# --- synthetic tokenizers ---------------------------------------------------------------------------------------

def corpus(items):
    lines = [as_text(i) for i in items]
    rng = random.Random(7)
    for _ in range(3000):
        lines.append(" ".join(rng.choice(WORDS + ADJ + STYLES) for _ in range(rng.randint(3, 12))))
    return lines


def make_clip_synth(lines, path):
    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>", fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_RE), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  end_of_word_suffix="</w>", initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.RobertaProcessing(("<|endoftext|>", eos), ("<|startoftext|>", bos),
                                                      trim_offsets=False, add_prefix_space=False)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tok.save(path)


# A small normalization table in SentencePiece's TSV form (source code points, tab, target code points).
NORM_RULES = [("FF21", "41"), ("FF22", "42"), ("FF41", "61"), ("FF42", "62"), ("FB01", "66 69"), ("FB02", "66 6C"),
              ("65 301", "E9"), ("61 300", "E0"), ("6F 308", "F6"), ("9", "20"), ("3000", "20"), ("A0", "20"),
              ("D", "20"), ("A", "20"), ("2126", "3A9"), ("212B", "C5"), ("FF01", "21"), ("2460", "31"),
              ("2461", "32"), ("B2", "32"), ("200B", "")]


def charsmap_of(model_bytes):
    """NormalizerSpec.precompiled_charsmap (field 3, then 2) of a ModelProto, parsed by hand."""
    def fields(buf):
        i = 0
        while i < len(buf):
            key = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                key |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            field, wire = key >> 3, key & 7
            if wire == 0:
                while buf[i] & 0x80:
                    i += 1
                i += 1
                yield field, None
            elif wire == 2:
                n = 0
                shift = 0
                while True:
                    b = buf[i]
                    i += 1
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if not b & 0x80:
                        break
                yield field, buf[i:i + n]
                i += n
            elif wire == 5:
                i += 4
                yield field, None
            else:
                i += 8
                yield field, None
    for f, v in fields(model_bytes):
        if f == 3:
            for g, w in fields(v):
                if g == 2:
                    return bytes(w)
    return b""


def make_t5_synth(lines, directory):
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "rules.tsv")
        with open(rules, "w") as f:
            for src, dst in NORM_RULES:
                f.write("%s\t%s\n" % (src, dst))
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=700, model_type="unigram",
            byte_fallback=True, normalization_rule_tsv=rules, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            character_coverage=0.98, num_threads=1, seed_sentencepiece_size=20000, minloglevel=2)
    data = model.getvalue()
    with open(os.path.join(directory, "spiece.model"), "wb") as f:
        f.write(data)
    sp = spm.SentencePieceProcessor(model_proto=data)
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap_of(data)),
                                           normalizers.Strip(left=False, right=True),
                                           normalizers.Replace(Regex(" {2,}"), "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tok.save(os.path.join(directory, "tokenizer.json"))


# --- expected ids ----------------------------------------------------------------------------------------------

def hf_ids(tok, texts, max_length):
    """transformers' call as FluxPipeline makes it; returns the ids up to the attention mask's end."""
    out = []
    for t in texts:
        enc = tok(t, padding="max_length", max_length=max_length, truncation=True)
        n = sum(enc["attention_mask"])
        assert len(enc["input_ids"]) == max_length
        assert all(i == tok.pad_token_id for i in enc["input_ids"][n:]), t
        out.append(enc["input_ids"][:n])
    return out


def raw_ids(tok, texts, max_length, pad_id):
    """tokenizers.Tokenizer (a tokenizer.json as written) with the same truncation and padding."""
    tok.enable_truncation(max_length)
    tok.enable_padding(length=max_length, pad_id=pad_id)
    out = []
    for t in texts:
        enc = tok.encode(t)
        n = sum(enc.attention_mask)
        out.append(enc.ids[:n])
    return out


def main():
    if not os.path.isdir(FULL):
        sys.exit("run tools/fetch_flux_tokenizers.py first (%s is missing)" % FULL)
    items = prompts()
    texts = [as_text(i) for i in items]
    assert len(texts) >= 500
    lines = corpus(items)
    make_clip_synth(lines, os.path.join(DATA, "clip_synth", "tokenizer.json"))
    make_t5_synth(lines, os.path.join(DATA, "t5_synth"))

    clip = transformers.CLIPTokenizer.from_pretrained(os.path.join(FULL, "tokenizer"))
    t5 = transformers.T5Tokenizer.from_pretrained(os.path.join(FULL, "tokenizer_2"))
    with tempfile.TemporaryDirectory() as tmp:
        # T5Tokenizer from a bare spiece.model (no tokenizer.json) must agree: the C side reads that form
        import shutil
        for name in ("spiece.model", "special_tokens_map.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(FULL, "tokenizer_2", name), os.path.join(tmp, name))
        t5_spm = transformers.T5Tokenizer.from_pretrained(tmp)
        t5_spm_ids = hf_ids(t5_spm, texts, 512)
        synth_dir = os.path.join(tmp, "synth")
        os.makedirs(synth_dir)
        shutil.copyfile(os.path.join(DATA, "t5_synth", "spiece.model"), os.path.join(synth_dir, "spiece.model"))
        t5_synth_spm = transformers.T5Tokenizer.from_pretrained(synth_dir)
        t5_synth_spm_ids = hf_ids(t5_synth_spm, texts, 128)
    t5_512 = hf_ids(t5, texts, 512)
    assert t5_512 == t5_spm_ids, "T5Tokenizer from spiece.model and from tokenizer.json disagree"
    t5_256 = hf_ids(t5, texts, 256)
    t5_json = raw_ids(Tokenizer.from_file(os.path.join(FULL, "tokenizer_2", "tokenizer.json")), texts, 512, 0)

    synth_clip = Tokenizer.from_file(os.path.join(DATA, "clip_synth", "tokenizer.json"))
    synth_t5 = Tokenizer.from_file(os.path.join(DATA, "t5_synth", "tokenizer.json"))
    sets = {
        # FluxPipeline's CLIP call: CLIPTokenizer from tests/data/tokenizers/flux/tokenizer (vocab.json, merges.txt)
        "clip": {"source": "flux/tokenizer", "mode": "directory", "max_length": 77, "ids": hf_ids(clip, texts, 77)},
        # FluxPipeline's T5 call (dev: 512); the same ids come from spiece.model alone
        "t5": {"source": "flux/tokenizer_2", "mode": "directory", "max_length": 512, "ids": t5_512},
        # schnell: 256
        "t5_256": {"source": "flux/tokenizer_2", "mode": "directory", "max_length": 256, "ids": t5_256},
        # tokenizers.Tokenizer.from_file on the real tokenizer.json (its own legacy pipeline); needs flux_full
        "t5_json": {"source": "flux_full/tokenizer_2/tokenizer.json", "mode": "file", "max_length": 512,
                    "ids": t5_json},
        "clip_synth": {"source": "clip_synth/tokenizer.json", "mode": "file", "max_length": 77,
                       "ids": raw_ids(synth_clip, texts, 77, synth_clip.token_to_id("<|endoftext|>"))},
        "t5_synth": {"source": "t5_synth/tokenizer.json", "mode": "file", "max_length": 128,
                     "ids": raw_ids(synth_t5, texts, 128, 0)},
        # T5Tokenizer (FluxPipeline's class) on the synthetic spiece.model alone
        "t5_synth_spm": {"source": "t5_synth", "mode": "directory", "max_length": 128, "ids": t5_synth_spm_ids},
    }
    doc = {
        "generator": "tools/make_tokenizer_fixtures.py",
        "versions": {"tokenizers": tokenizers.__version__, "transformers": transformers.__version__,
                     "sentencepiece": spm.__version__, "python_unicode": unicodedata.unidata_version},
        "prompts": items,
        "sets": sets,
    }
    path = os.path.join(DATA, "parity.json")
    with open(path, "w", encoding="utf-8") as f:
        # one prompt / one id list per line keeps the file diffable
        f.write("{\n")
        f.write('"generator": %s,\n' % json.dumps(doc["generator"]))
        f.write('"versions": %s,\n' % json.dumps(doc["versions"]))
        f.write('"prompts": [\n%s\n],\n' % ",\n".join(json.dumps(p, ensure_ascii=False) for p in items))
        f.write('"sets": {\n')
        names = list(sets)
        for k, name in enumerate(names):
            s = sets[name]
            head = {key: v for key, v in s.items() if key != "ids"}
            f.write('%s: %s\n' % (json.dumps(name), json.dumps(head)[:-1] + ', "ids": ['))
            f.write(",\n".join(json.dumps(ids, separators=(",", ":")) for ids in s["ids"]))
            f.write("]}%s\n" % ("," if k + 1 < len(names) else ""))
        f.write("}\n}\n")
    json.load(open(path, encoding="utf-8"))  # the hand-written layout must still be JSON
    print("%d prompts; wrote %s" % (len(items), path))


if __name__ == "__main__":
    main()
