#!/usr/bin/env python3
"""Writes runtime/unicode_tables.c: the Unicode data the tokenizers need (runtime/unicode.h), from Python's
unicodedata (standard library), so the runtime needs no ICU and no Python.

  tools/gen_unicode_tables.py [FILE]          write FILE (default runtime/unicode_tables.c)
  tools/gen_unicode_tables.py --check FILE    exit 1 unless FILE is exactly what this script writes; exit 77
                                              (skipped) when this Python's Unicode version is not the file's
  tools/gen_unicode_tables.py --verify-perl   compare the derived grapheme-break data with perl's \\p{GCB=..}

What is derived, and from what:
  - letters \\p{L}, numbers \\p{N}: general categories L*, N*;
  - white space (Oniguruma's Unicode \\s, Rust's char::is_whitespace: the White_Space property): U+0009-U+000D,
    U+0085 and the categories Zs, Zl, Zp;
  - lowercase (Rust's char::to_lowercase, per character, no context): chr(c).lower();
  - canonical decompositions, combining classes and the primary composites for NFC: decomposition(),
    combining(); a pair composes when normalize('NFC', composite) gives the composite back (that excludes
    composition exclusions, singletons and non-starter decompositions in one test);
  - Grapheme_Cluster_Break and Extended_Pictographic (UAX #29, used by SentencePiece's precompiled normalizer):
    unicodedata has no such properties, so they are built from general categories by the rules of UAX #29
    table 2, plus the short lists below (Other_Grapheme_Extend, Prepend, SpacingMark exceptions,
    Extended_Pictographic) copied from the UCD files of the same version. --verify-perl checks the result against
    perl's own tables when perl's Unicode version matches.
Hangul syllables are algorithmic (runtime/unicode.c) and not in the tables.
"""
import os
import subprocess
import sys
import unicodedata

DEFAULT_OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "runtime",
                                            "unicode_tables.c"))
MAX_CP = 0x110000
SURROGATES = range(0xD800, 0xE000)

# --- UCD lists unicodedata does not expose (Unicode 14.0.0; check them when the version changes) -------------
# PropList.txt Other_Grapheme_Extend.
OTHER_GRAPHEME_EXTEND = [
    (0x9BE, 0x9BE), (0x9D7, 0x9D7), (0xB3E, 0xB3E), (0xB57, 0xB57), (0xBBE, 0xBBE), (0xBD7, 0xBD7),
    (0xCC2, 0xCC2), (0xCD5, 0xCD6), (0xD3E, 0xD3E), (0xD57, 0xD57), (0xDCF, 0xDCF), (0xDDF, 0xDDF),
    (0x1B35, 0x1B35), (0x200C, 0x200C), (0x302E, 0x302F), (0xFF9E, 0xFF9F), (0x1133E, 0x1133E),
    (0x11357, 0x11357), (0x114B0, 0x114B0), (0x114BD, 0x114BD), (0x115AF, 0x115AF), (0x11930, 0x11930),
    (0x1D165, 0x1D165), (0x1D16E, 0x1D172), (0xE0020, 0xE007F)]
EMOJI_MODIFIER = [(0x1F3FB, 0x1F3FF)]
# Prepended_Concatenation_Mark (PropList.txt) and Indic_Syllabic_Category Consonant_Preceding_Repha /
# Consonant_Prefixed: together GCB=Prepend.
PREPENDED_CONCATENATION_MARK = [(0x600, 0x605), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891), (0x8E2, 0x8E2),
                                (0x110BD, 0x110BD), (0x110CD, 0x110CD)]
PREPEND_INDIC = [(0xD4E, 0xD4E), (0x111C2, 0x111C3), (0x1193F, 0x1193F), (0x11941, 0x11941), (0x11A3A, 0x11A3A),
                 (0x11A84, 0x11A89), (0x11D46, 0x11D46)]
# UAX #29: SpacingMark is Mc plus these two, minus these exceptions.
SPACING_MARK_EXTRA = [(0xE33, 0xE33), (0xEB3, 0xEB3)]
SPACING_MARK_EXCEPT = [(0x102B, 0x102C), (0x1038, 0x1038), (0x1062, 0x1064), (0x1067, 0x106D), (0x1083, 0x1083),
                       (0x1087, 0x108C), (0x108F, 0x108F), (0x109A, 0x109C), (0x1A61, 0x1A61), (0x1A63, 0x1A64),
                       (0xAA7B, 0xAA7B), (0xAA7D, 0xAA7D), (0x11720, 0x11721)]
# Default_Ignorable_Code_Point blocks whose unassigned code points are GCB=Control.
DEFAULT_IGNORABLE_BLOCKS = [(0x2060, 0x206F), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF)]
HANGUL_L = [(0x1100, 0x115F), (0xA960, 0xA97C)]
HANGUL_V = [(0x1160, 0x11A7), (0xD7B0, 0xD7C6)]
HANGUL_T = [(0x11A8, 0x11FF), (0xD7CB, 0xD7FB)]
# emoji-data.txt Extended_Pictographic.
EXTENDED_PICTOGRAPHIC = [
    (0xA9, 0xA9), (0xAE, 0xAE), (0x203C, 0x203C), (0x2049, 0x2049), (0x2122, 0x2122), (0x2139, 0x2139),
    (0x2194, 0x2199), (0x21A9, 0x21AA), (0x231A, 0x231B), (0x2328, 0x2328), (0x2388, 0x2388), (0x23CF, 0x23CF),
    (0x23E9, 0x23F3), (0x23F8, 0x23FA), (0x24C2, 0x24C2), (0x25AA, 0x25AB), (0x25B6, 0x25B6), (0x25C0, 0x25C0),
    (0x25FB, 0x25FE), (0x2600, 0x2605), (0x2607, 0x2612), (0x2614, 0x2685), (0x2690, 0x2705), (0x2708, 0x2712),
    (0x2714, 0x2714), (0x2716, 0x2716), (0x271D, 0x271D), (0x2721, 0x2721), (0x2728, 0x2728), (0x2733, 0x2734),
    (0x2744, 0x2744), (0x2747, 0x2747), (0x274C, 0x274C), (0x274E, 0x274E), (0x2753, 0x2755), (0x2757, 0x2757),
    (0x2763, 0x2767), (0x2795, 0x2797), (0x27A1, 0x27A1), (0x27B0, 0x27B0), (0x27BF, 0x27BF), (0x2934, 0x2935),
    (0x2B05, 0x2B07), (0x2B1B, 0x2B1C), (0x2B50, 0x2B50), (0x2B55, 0x2B55), (0x3030, 0x3030), (0x303D, 0x303D),
    (0x3297, 0x3297), (0x3299, 0x3299), (0x1F000, 0x1F0FF), (0x1F10D, 0x1F10F), (0x1F12F, 0x1F12F),
    (0x1F16C, 0x1F171), (0x1F17E, 0x1F17F), (0x1F18E, 0x1F18E), (0x1F191, 0x1F19A), (0x1F1AD, 0x1F1E5),
    (0x1F201, 0x1F20F), (0x1F21A, 0x1F21A), (0x1F22F, 0x1F22F), (0x1F232, 0x1F23A), (0x1F23C, 0x1F23F),
    (0x1F249, 0x1F3FA), (0x1F400, 0x1F53D), (0x1F546, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F774, 0x1F77F),
    (0x1F7D5, 0x1F7FF), (0x1F80C, 0x1F80F), (0x1F848, 0x1F84F), (0x1F85A, 0x1F85F), (0x1F888, 0x1F88F),
    (0x1F8AE, 0x1F8FF), (0x1F90C, 0x1F93A), (0x1F93C, 0x1F945), (0x1F947, 0x1FAFF), (0x1FC00, 0x1FFFD)]
LIST_VERSION = "14.0.0"

# Grapheme_Cluster_Break values, in the order of runtime/unicode.h's qd_gcb_t.
GCB_NAMES = ["Other", "CR", "LF", "Control", "Extend", "ZWJ", "RI", "Prepend", "SpacingMark", "L", "V", "T", "LV",
             "LVT"]


def code_points():
    return (c for c in range(MAX_CP) if c not in SURROGATES)


def in_ranges(c, ranges):
    return any(a <= c <= b for a, b in ranges)


def to_ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def expand(ranges):
    s = set()
    for a, b in ranges:
        s.update(range(a, b + 1))
    return s


def grapheme_break():
    """{code point: GCB name} for every code point that is not Other (Hangul LV/LVT computed too)."""
    gcb = {}
    cat = {c: unicodedata.category(chr(c)) for c in code_points()}
    for c, k in cat.items():
        if k in ("Cc", "Zl", "Zp", "Cf") or (k == "Cn" and in_ranges(c, DEFAULT_IGNORABLE_BLOCKS)):
            gcb[c] = "Control"
    for c in expand(PREPENDED_CONCATENATION_MARK) | expand(PREPEND_INDIC):
        gcb[c] = "Prepend"
    for c, k in cat.items():
        if k == "Mc" and not in_ranges(c, SPACING_MARK_EXCEPT):
            gcb[c] = "SpacingMark"
    for c in expand(SPACING_MARK_EXTRA):
        gcb[c] = "SpacingMark"
    extend = {c for c, k in cat.items() if k in ("Mn", "Me")} | expand(OTHER_GRAPHEME_EXTEND) | expand(EMOJI_MODIFIER)
    for c in extend:
        gcb[c] = "Extend"
    for name, ranges in (("L", HANGUL_L), ("V", HANGUL_V), ("T", HANGUL_T)):
        for c in expand(ranges):
            gcb[c] = name
    for c in range(0xAC00, 0xD7A4):
        gcb[c] = "LV" if (c - 0xAC00) % 28 == 0 else "LVT"
    for c in range(0x1F1E6, 0x1F200):
        gcb[c] = "RI"
    gcb[0x200D] = "ZWJ"
    gcb[0x0D] = "CR"
    gcb[0x0A] = "LF"
    return gcb


def prop_ranges(mapping):
    """[(start, end, value)] for runs of equal values (value != 0/None)."""
    out = []
    for c in sorted(mapping):
        v = mapping[c]
        if out and out[-1][1] == c - 1 and out[-1][2] == v:
            out[-1][1] = c
        else:
            out.append([c, c, v])
    return out


def lowercase_runs():
    """Single-code-point mappings as runs (start, end, stride, delta): every stride-th code point from start to end
    maps to itself + delta. Multi-code-point mappings separately."""
    single, multi = [], []
    for c in code_points():
        low = chr(c).lower()
        if low == chr(c):
            continue
        if len(low) == 1:
            single.append((c, ord(low) - c))
        else:
            multi.append((c, [ord(x) for x in low]))
    runs = []
    for c, d in single:
        if runs:
            s, e, stride, delta = runs[-1]
            if delta == d and ((stride == 0 and c - e in (1, 2)) or (stride and c - e == stride)):
                runs[-1] = [s, c, c - e if stride == 0 else stride, delta]
                continue
        runs.append([c, c, 0, d])
    return [(s, e, stride or 1, d) for s, e, stride, d in runs], multi


def decompositions():
    """Canonical single-step decompositions (cp, first, second or 0) and primary composites (first, second, cp)."""
    dec, comp = [], []
    for c in code_points():
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        assert 1 <= len(parts) <= 2, hex(c)
        dec.append((c, parts[0], parts[1] if len(parts) == 2 else 0))
        if len(parts) == 2 and unicodedata.normalize("NFC", chr(c)) == chr(c):
            comp.append((parts[0], parts[1], c))
    comp.sort()
    return dec, comp


def rows(items, per_line, fmt):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + " ".join(fmt(x) for x in items[i:i + per_line]))
    return "\n".join(lines)


def generate():
    version = unicodedata.unidata_version
    letters = to_ranges(c for c in code_points() if unicodedata.category(chr(c)).startswith("L"))
    numbers = to_ranges(c for c in code_points() if unicodedata.category(chr(c)).startswith("N"))
    space = to_ranges([c for c in code_points() if unicodedata.category(chr(c)) in ("Zs", "Zl", "Zp")]
                      + list(range(9, 14)) + [0x85])
    ccc = prop_ranges({c: unicodedata.combining(chr(c)) for c in code_points() if unicodedata.combining(chr(c))})
    low_runs, low_multi = lowercase_runs()
    dec, comp = decompositions()
    gcb = grapheme_break()
    gcb_ranges = prop_ranges({c: GCB_NAMES.index(v) for c, v in gcb.items() if not 0xAC00 <= c <= 0xD7A3})
    ext_pict = EXTENDED_PICTOGRAPHIC

    hx = lambda v: "0x%X" % v  # noqa: E731
    out = []
    out.append("/* Generated by tools/gen_unicode_tables.py from Python's unicodedata (Unicode %s). Do not edit: change"
               % version)
    out.append(" * the script and regenerate; the test suite checks that regenerating gives this file byte for byte. */")
    out.append('#include "runtime/unicode.h"')
    out.append("")
    out.append('const char qd_unicode_version[] = "%s";' % version)
    out.append("")

    def ranges_table(name, rs, comment):
        out.append("/* %s */" % comment)
        out.append("const qd_unicode_range_t %s[] = {" % name)
        out.append(rows(rs, 6, lambda r: "{%s, %s}," % (hx(r[0]), hx(r[1]))))
        out.append("};")
        out.append("const size_t %s_count = %d;" % (name, len(rs)))
        out.append("")

    ranges_table("qd_unicode_letter", letters, "\\p{L}: general categories Lu Ll Lt Lm Lo.")
    ranges_table("qd_unicode_number", numbers, "\\p{N}: general categories Nd Nl No.")
    ranges_table("qd_unicode_white_space", space, "White_Space: U+0009-U+000D, U+0085, Zs, Zl, Zp.")
    ranges_table("qd_unicode_ext_pict", ext_pict, "Extended_Pictographic (emoji-data.txt %s)." % LIST_VERSION)

    out.append("/* Canonical combining classes (non-zero only): start, end, class. */")
    out.append("const qd_unicode_prop_range_t qd_unicode_ccc[] = {")
    out.append(rows(ccc, 5, lambda r: "{%s, %s, %d}," % (hx(r[0]), hx(r[1]), r[2])))
    out.append("};")
    out.append("const size_t qd_unicode_ccc_count = %d;" % len(ccc))
    out.append("")
    out.append("/* Grapheme_Cluster_Break (values of qd_gcb_t; Other omitted; Hangul syllables LV/LVT are computed). */")
    out.append("const qd_unicode_prop_range_t qd_unicode_gcb[] = {")
    out.append(rows(gcb_ranges, 5, lambda r: "{%s, %s, %d}," % (hx(r[0]), hx(r[1]), r[2])))
    out.append("};")
    out.append("const size_t qd_unicode_gcb_count = %d;" % len(gcb_ranges))
    out.append("")
    out.append("/* Lowercase, single code point: every `stride`-th code point in [start, end] maps to itself + delta. */")
    out.append("const qd_unicode_case_run_t qd_unicode_lower[] = {")
    out.append(rows(low_runs, 4, lambda r: "{%s, %s, %d, %d}," % (hx(r[0]), hx(r[1]), r[2], r[3])))
    out.append("};")
    out.append("const size_t qd_unicode_lower_count = %d;" % len(low_runs))
    out.append("")
    out.append("/* Lowercase mappings to more than one code point. */")
    out.append("const qd_unicode_multi_t qd_unicode_lower_multi[] = {")
    out.append(rows(low_multi, 2, lambda r: "{%s, {%s}}," % (hx(r[0]), ", ".join(hx(x) for x in r[1]))))
    out.append("};")
    out.append("const size_t qd_unicode_lower_multi_count = %d;" % len(low_multi))
    out.append("")
    out.append("/* Canonical decompositions, one step (second = 0 for singletons), sorted by code point. */")
    out.append("const qd_unicode_decomp_t qd_unicode_decomp[] = {")
    out.append(rows(dec, 4, lambda r: "{%s, %s, %s}," % (hx(r[0]), hx(r[1]), hx(r[2]))))
    out.append("};")
    out.append("const size_t qd_unicode_decomp_count = %d;" % len(dec))
    out.append("")
    out.append("/* Primary composites: first, second -> composite, sorted by (first, second). */")
    out.append("const qd_unicode_comp_t qd_unicode_comp[] = {")
    out.append(rows(comp, 4, lambda r: "{%s, %s, %s}," % (hx(r[0]), hx(r[1]), hx(r[2]))))
    out.append("};")
    out.append("const size_t qd_unicode_comp_count = %d;" % len(comp))
    return "\n".join(out) + "\n"


def file_version(text):
    marker = "qd_unicode_version[] = \""
    i = text.find(marker)
    return text[i + len(marker):text.index('"', i + len(marker))] if i >= 0 else None


def verify_perl():
    """Compares GCB and Extended_Pictographic with perl's tables (same Unicode version only)."""
    perl_version = subprocess.run(["perl", "-MUnicode::UCD", "-e", "print Unicode::UCD::UnicodeVersion()"],
                                  capture_output=True, text=True, check=True).stdout.strip()
    if perl_version != unicodedata.unidata_version:
        print("perl has Unicode %s, Python %s: not comparable" % (perl_version, unicodedata.unidata_version))
        return 77
    gcb = grapheme_break()
    script = r'''
for my $c (0..0x10FFFF) { next if $c >= 0xD800 && $c <= 0xDFFF; my $s = chr($c);
  my $g = "Other"; for my $n (qw(CR LF Control Extend ZWJ RI Prepend SpacingMark L V T LV LVT)) {
    if ($s =~ /\p{GCB=$n}/) { $g = $n; last } }
  my $e = ($s =~ /\p{Extended_Pictographic}/) ? 1 : 0; print "$c $g $e\n"; }'''
    res = subprocess.run(["perl", "-e", script], capture_output=True, text=True, check=True).stdout.split("\n")
    ext = expand(EXTENDED_PICTOGRAPHIC)
    bad = 0
    for line in res:
        if not line:
            continue
        c, g, e = line.split()
        c = int(c)
        if gcb.get(c, "Other") != g or (c in ext) != (e == "1"):
            bad += 1
            if bad < 20:
                print("U+%04X: derived %s/%s, perl %s/%s" % (c, gcb.get(c, "Other"), c in ext, g, e))
    print("%d differences" % bad)
    return 1 if bad else 0


def main(argv):
    if argv[1:2] == ["--verify-perl"]:
        return verify_perl()
    if argv[1:2] == ["--check"]:
        path = argv[2] if len(argv) > 2 else DEFAULT_OUT
        with open(path, encoding="utf-8") as f:
            have = f.read()
        if file_version(have) != unicodedata.unidata_version:
            print("%s was made from Unicode %s; this Python has %s: cannot compare (skipped)"
                  % (path, file_version(have), unicodedata.unidata_version))
            return 77
        if have != generate():
            print("%s differs from what tools/gen_unicode_tables.py writes; regenerate it" % path)
            return 1
        return 0
    path = argv[1] if len(argv) > 1 else DEFAULT_OUT
    if unicodedata.unidata_version != LIST_VERSION:
        print("warning: the hand-copied UCD lists are from Unicode %s, unicodedata is %s: check them"
              % (LIST_VERSION, unicodedata.unidata_version), file=sys.stderr)
    with open(path, "w", encoding="utf-8") as f:
        f.write(generate())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
