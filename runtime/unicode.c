/* Lookups over the generated tables, UTF-8, NFC and grapheme clusters (runtime/unicode.h). */
#include "runtime/unicode.h"

/* Hangul syllables are algorithmic (Unicode chapter 3.12), so the tables leave them out. */
enum {
  HANGUL_S_BASE = 0xAC00,
  HANGUL_L_BASE = 0x1100,
  HANGUL_V_BASE = 0x1161,
  HANGUL_T_BASE = 0x11A7,
  HANGUL_L_COUNT = 19,
  HANGUL_V_COUNT = 21,
  HANGUL_T_COUNT = 28,
  HANGUL_N_COUNT = HANGUL_V_COUNT * HANGUL_T_COUNT,
  HANGUL_S_COUNT = HANGUL_L_COUNT * HANGUL_N_COUNT,
};

static bool in_ranges_(const qd_unicode_range_t* r, size_t count, uint32_t cp) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cp < r[mid].start) {
      hi = mid;
    } else if (cp > r[mid].end) {
      lo = mid + 1;
    } else {
      return true;
    }
  }
  return false;
}

static uint32_t prop_lookup_(const qd_unicode_prop_range_t* r, size_t count, uint32_t cp) {
  size_t lo = 0, hi = count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cp < r[mid].start) {
      hi = mid;
    } else if (cp > r[mid].end) {
      lo = mid + 1;
    } else {
      return r[mid].value;
    }
  }
  return 0;
}

bool qd_unicode_is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges_(qd_unicode_letter, qd_unicode_letter_count, cp);
}

bool qd_unicode_is_number(uint32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges_(qd_unicode_number, qd_unicode_number_count, cp);
}

bool qd_unicode_is_white_space(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 9 && cp <= 13);
  return in_ranges_(qd_unicode_white_space, qd_unicode_white_space_count, cp);
}

bool qd_unicode_is_ext_pict(uint32_t cp) { return in_ranges_(qd_unicode_ext_pict, qd_unicode_ext_pict_count, cp); }

unsigned qd_unicode_combining_class(uint32_t cp) {
  if (cp < 0x300) return 0;
  return prop_lookup_(qd_unicode_ccc, qd_unicode_ccc_count, cp);
}

qd_gcb_t qd_unicode_grapheme_break(uint32_t cp) {
  if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT)
    return (cp - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 ? QD_GCB_LV : QD_GCB_LVT;
  return (qd_gcb_t)prop_lookup_(qd_unicode_gcb, qd_unicode_gcb_count, cp);
}

size_t qd_unicode_to_lower(uint32_t cp, uint32_t out[3]) {
  if (cp < 0x80) {
    out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return 1;
  }
  for (size_t i = 0; i < qd_unicode_lower_multi_count; i++) {
    if (qd_unicode_lower_multi[i].cp == cp) {
      size_t k = 0;
      while (k < 3 && qd_unicode_lower_multi[i].to[k]) {
        out[k] = qd_unicode_lower_multi[i].to[k];
        k++;
      }
      return k;
    }
  }
  size_t lo = 0, hi = qd_unicode_lower_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const qd_unicode_case_run_t* r = &qd_unicode_lower[mid];
    if (cp < r->start) {
      hi = mid;
    } else if (cp > r->end) {
      lo = mid + 1;
    } else {
      out[0] = ((cp - r->start) % (uint32_t)r->stride == 0) ? (uint32_t)((int64_t)cp + r->delta) : cp;
      return 1;
    }
  }
  out[0] = cp;
  return 1;
}

/* --- UTF-8 ------------------------------------------------------------------------------------------- */

size_t qd_utf8_decode(const unsigned char* s, size_t n, uint32_t* out_cp) {
  unsigned b0 = s[0];
  if (b0 < 0x80) {
    *out_cp = b0;
    return 1;
  }
  size_t len;
  uint32_t cp;
  unsigned lo = 0x80, hi = 0xBF; /* the allowed range of the second byte (tighter for E0, ED, F0, F4) */
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
    cp = b0 & 0x1F;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    cp = b0 & 0x0F;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    cp = b0 & 0x07;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *out_cp = 1;
    return 0;
  }
  for (size_t i = 1; i < len; i++) {
    unsigned b = i < n ? s[i] : 0x100;
    unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      *out_cp = (uint32_t)i; /* the maximal subpart: the lead byte and the valid continuation bytes so far */
      return 0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  *out_cp = cp;
  return len;
}

size_t qd_utf8_encode(uint32_t cp, char out[4]) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

size_t qd_utf8_first_invalid(const char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k = qd_utf8_decode((const unsigned char*)s + i, n - i, &cp);
    if (k == 0) return i;
    i += k;
  }
  return n;
}

/* --- NFC --------------------------------------------------------------------------------------------- */

static const qd_unicode_decomp_t* find_decomp_(uint32_t cp) {
  size_t lo = 0, hi = qd_unicode_decomp_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (cp < qd_unicode_decomp[mid].cp) {
      hi = mid;
    } else if (cp > qd_unicode_decomp[mid].cp) {
      lo = mid + 1;
    } else {
      return &qd_unicode_decomp[mid];
    }
  }
  return NULL;
}

/* Full canonical decomposition of cp appended at out; returns the count. Depth is bounded by the data (at most
 * QD_UNICODE_MAX_DECOMPOSITION code points result). */
static size_t decompose_(uint32_t cp, uint32_t* out) {
  if (cp >= HANGUL_S_BASE && cp < HANGUL_S_BASE + HANGUL_S_COUNT) {
    uint32_t s = cp - HANGUL_S_BASE;
    out[0] = HANGUL_L_BASE + s / HANGUL_N_COUNT;
    out[1] = HANGUL_V_BASE + (s % HANGUL_N_COUNT) / HANGUL_T_COUNT;
    if (s % HANGUL_T_COUNT == 0) return 2;
    out[2] = HANGUL_T_BASE + s % HANGUL_T_COUNT;
    return 3;
  }
  const qd_unicode_decomp_t* d = cp < 0xC0 ? NULL : find_decomp_(cp);
  if (!d) {
    out[0] = cp;
    return 1;
  }
  size_t k = decompose_(d->first, out);
  if (d->second) k += decompose_(d->second, out + k);
  return k;
}

static uint32_t compose_pair_(uint32_t a, uint32_t b) {
  if (a >= HANGUL_L_BASE && a < HANGUL_L_BASE + HANGUL_L_COUNT && b >= HANGUL_V_BASE &&
      b < HANGUL_V_BASE + HANGUL_V_COUNT)
    return HANGUL_S_BASE + ((a - HANGUL_L_BASE) * HANGUL_V_COUNT + (b - HANGUL_V_BASE)) * HANGUL_T_COUNT;
  if (a >= HANGUL_S_BASE && a < HANGUL_S_BASE + HANGUL_S_COUNT && (a - HANGUL_S_BASE) % HANGUL_T_COUNT == 0 &&
      b > HANGUL_T_BASE && b < HANGUL_T_BASE + HANGUL_T_COUNT)
    return a + (b - HANGUL_T_BASE);
  size_t lo = 0, hi = qd_unicode_comp_count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const qd_unicode_comp_t* c = &qd_unicode_comp[mid];
    if (a < c->first || (a == c->first && b < c->second)) {
      hi = mid;
    } else if (a > c->first || b > c->second) {
      lo = mid + 1;
    } else {
      return c->composite;
    }
  }
  return 0;
}

size_t qd_unicode_nfc(const uint32_t* in, size_t n, uint32_t* out) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++) m += decompose_(in[i], out + m);
  /* Canonical ordering: a stable insertion sort of each run of non-starters by combining class. */
  for (size_t i = 1; i < m; i++) {
    unsigned c = qd_unicode_combining_class(out[i]);
    if (c == 0) continue;
    size_t j = i;
    uint32_t v = out[i];
    while (j > 0) {
      unsigned p = qd_unicode_combining_class(out[j - 1]);
      if (p == 0 || p <= c) break;
      out[j] = out[j - 1];
      j--;
    }
    out[j] = v;
  }
  if (m == 0) return 0;
  /* Canonical composition (the reference algorithm of UAX #15). */
  size_t starter = 0, w = 1;
  unsigned last_class = qd_unicode_combining_class(out[0]);
  if (last_class != 0) last_class = 256; /* a leading non-starter blocks everything after it */
  for (size_t i = 1; i < m; i++) {
    uint32_t ch = out[i];
    unsigned cls = qd_unicode_combining_class(ch);
    uint32_t composite = compose_pair_(out[starter], ch);
    if (composite && (last_class < cls || last_class == 0)) {
      out[starter] = composite;
      continue;
    }
    if (cls == 0) starter = w;
    last_class = cls;
    out[w++] = ch;
  }
  return w;
}

/* --- grapheme clusters ------------------------------------------------------------------------------- */

size_t qd_unicode_grapheme_end(const uint32_t* cps, size_t n, size_t start) {
  qd_gcb_t prev = qd_unicode_grapheme_break(cps[start]);
  size_t ri_run = prev == QD_GCB_RI ? 1 : 0;
  bool pict = qd_unicode_is_ext_pict(cps[start]); /* inside ExtPict Extend* */
  bool pict_zwj = false;                          /* just after ExtPict Extend* ZWJ */
  for (size_t i = start + 1; i < n; i++) {
    qd_gcb_t cur = qd_unicode_grapheme_break(cps[i]);
    bool cur_pict = qd_unicode_is_ext_pict(cps[i]);
    bool join;
    if (prev == QD_GCB_CR && cur == QD_GCB_LF) {
      join = true; /* GB3 */
    } else if (prev == QD_GCB_CONTROL || prev == QD_GCB_CR || prev == QD_GCB_LF) {
      join = false; /* GB4 */
    } else if (cur == QD_GCB_CONTROL || cur == QD_GCB_CR || cur == QD_GCB_LF) {
      join = false; /* GB5 */
    } else if (prev == QD_GCB_L &&
               (cur == QD_GCB_L || cur == QD_GCB_V || cur == QD_GCB_LV || cur == QD_GCB_LVT)) {
      join = true; /* GB6 */
    } else if ((prev == QD_GCB_LV || prev == QD_GCB_V) && (cur == QD_GCB_V || cur == QD_GCB_T)) {
      join = true; /* GB7 */
    } else if ((prev == QD_GCB_LVT || prev == QD_GCB_T) && cur == QD_GCB_T) {
      join = true; /* GB8 */
    } else if (cur == QD_GCB_EXTEND || cur == QD_GCB_ZWJ || cur == QD_GCB_SPACING_MARK) {
      join = true; /* GB9, GB9a */
    } else if (prev == QD_GCB_PREPEND) {
      join = true; /* GB9b */
    } else if (pict_zwj && cur_pict) {
      join = true; /* GB11 */
    } else if (prev == QD_GCB_RI && cur == QD_GCB_RI && ri_run % 2 == 1) {
      join = true; /* GB12, GB13 */
    } else {
      join = false; /* GB999 */
    }
    if (!join) return i;
    if (cur_pict) {
      pict = true;
      pict_zwj = false;
    } else if (cur == QD_GCB_EXTEND && pict) {
      pict_zwj = false;
    } else if (cur == QD_GCB_ZWJ && pict) {
      pict = false;
      pict_zwj = true;
    } else {
      pict = false;
      pict_zwj = false;
    }
    ri_run = cur == QD_GCB_RI ? ri_run + 1 : 0;
    prev = cur;
  }
  return n;
}
