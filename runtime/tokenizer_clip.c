/* CLIP: byte-level BPE (runtime/tokenizer_clip.h). */
#include <string.h>

#include "runtime/tokenizer_clip.h"
#include "runtime/unicode.h"

/* --- GPT-2's bytes-to-unicode map ------------------------------------------------------------------------ */

/* Printable Latin-1 bytes map to themselves; the other 68 bytes map to U+0100.. in byte order, so every byte has
 * a visible character and BPE can work on text. */
static uint32_t byte_to_cp_(unsigned b) {
  if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
  unsigned n = 0;
  for (unsigned k = 0; k < b; k++)
    if (!((k >= 0x21 && k <= 0x7E) || (k >= 0xA1 && k <= 0xAC) || (k >= 0xAE && k <= 0xFF))) n++;
  return 256 + n;
}

static int cp_to_byte_(uint32_t cp) {
  if (cp < 256) return ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE)) ? (int)cp : -1;
  for (unsigned b = 0; b < 256; b++)
    if (byte_to_cp_(b) == cp) return (int)b;
  return -1;
}

/* --- loading --------------------------------------------------------------------------------------------- */

qd_status_t qd_tok_clip_vocab_from_json(qd_tokenizer_t* t, const qd_json_value_t* vocab, const char* what) {
  if (!vocab || vocab->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_NOT_OBJECT, "%s: the vocabulary is %s, not an object of token to id", what,
                  vocab ? qd_json_type_name(vocab->type) : "missing");
  size_t n = vocab->u.object.count;
  if (n == 0) return QD_ERR(BAD_INPUT, TOK_VOCAB_EMPTY, "%s: the vocabulary is empty", what);
  if (n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu tokens; at most %u are allowed", what, n,
                  QD_TOK_MAX_TOKENS);
  qd_tok_entry_t* e;
  QD_TRY(qd_malloc(t->a, n * sizeof *e, (void**)&e));
  qd_status_t s = QD_OK;
  for (size_t i = 0; i < n; i++) {
    const qd_json_member_t* m = &vocab->u.object.members[i];
    const qd_json_value_t* v = m->value;
    if (v->type != QD_JSON_NUMBER || !v->u.number.is_integer || !v->u.number.fits_u64) {
      char shown[96], val[64];
      s = QD_ERR(BAD_INPUT, TOK_VOCAB_ID, "%s: token '%s' (offset %zu) has id %s; ids are non-negative integers", what,
                 qd_json_display(m->key, m->key_len, shown, sizeof shown), m->key_offset,
                 qd_json_describe(v, val, sizeof val));
      break;
    }
    e[i] = (qd_tok_entry_t){m->key, m->key_len, v->u.number.u64, m->key_offset};
  }
  if (!s) s = qd_tok_set_vocab(t, e, n, what);
  qd_free(t->a, e, n * sizeof *e);
  return s;
}

static qd_status_t reserve_merges_(qd_tokenizer_t* t, size_t n) {
  if (n <= t->merges_cap) return QD_OK;
  void* p;
  QD_TRY(qd_realloc(t->a, t->merges, t->merges_cap * 2 * sizeof(uint32_t), n * 2 * sizeof(uint32_t), &p));
  t->merges = p;
  t->merges_cap = n;
  return QD_OK;
}

static qd_status_t add_merge_(qd_tokenizer_t* t, const char* a, size_t alen, const char* b, size_t blen,
                              const char* what, size_t line) {
  char shown[96];
  if (alen == 0 || blen == 0)
    return QD_ERR(BAD_INPUT, TOK_MERGES_LINE, "%s: merge %zu has an empty token", what, line);
  int32_t ia = qd_tok_lookup(t, a, alen), ib = qd_tok_lookup(t, b, blen);
  if (ia < 0 || ib < 0)
    return QD_ERR(BAD_INPUT, TOK_MERGES_UNKNOWN_TOKEN, "%s: merge %zu: token '%s' is not in the vocabulary", what,
                  line, ia < 0 ? qd_json_display(a, alen, shown, sizeof shown) : qd_json_display(b, blen, shown,
                                                                                                   sizeof shown));
  QD_TRY(reserve_merges_(t, t->merge_count + 1));
  t->merges[2 * t->merge_count] = (uint32_t)ia;
  t->merges[2 * t->merge_count + 1] = (uint32_t)ib;
  t->merge_count++;
  return QD_OK;
}

qd_status_t qd_tok_clip_merges_from_text(qd_tokenizer_t* t, const char* text, size_t len, const char* what) {
  size_t lines = 0;
  for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
  if (lines >= QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu lines; at most %u merges are allowed", what, lines,
                  QD_TOK_MAX_TOKENS);
  QD_TRY(reserve_merges_(t, lines + 1));
  size_t pos = 0, line = 0;
  /* Like Rust's BufRead::lines (what tokenizers reads merges with): "\n" or "\r\n" ends a line, and a last line
   * without a newline still counts. */
  while (pos < len) {
    const char* nl = memchr(text + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - text) : len;
    size_t next = nl ? end + 1 : len;
    if (end > pos && text[end - 1] == '\r') end--;
    line++;
    const char* l = text + pos;
    size_t ll = end - pos;
    pos = next;
    if (ll >= 8 && memcmp(l, "#version", 8) == 0) continue;
    const char* sp = memchr(l, ' ', ll);
    if (!sp || memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - l))) {
      char shown[96];
      return QD_ERR(BAD_INPUT, TOK_MERGES_LINE, "%s: line %zu ('%s') is not two tokens separated by one space", what,
                    line, qd_json_display(l, ll, shown, sizeof shown));
    }
    QD_TRY(add_merge_(t, l, (size_t)(sp - l), sp + 1, ll - (size_t)(sp + 1 - l), what, line));
  }
  return QD_OK;
}

qd_status_t qd_tok_clip_merges_from_json(qd_tokenizer_t* t, const qd_json_value_t* merges, const char* what) {
  if (!merges || merges->type != QD_JSON_ARRAY)
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: model.merges is not an array", what);
  size_t n = merges->u.array.count;
  if (n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu merges; at most %u are allowed", what, n, QD_TOK_MAX_TOKENS);
  QD_TRY(reserve_merges_(t, n));
  for (size_t i = 0; i < n; i++) {
    const qd_json_value_t* m = merges->u.array.items[i];
    /* two spellings: "a b" (tokenizers < 0.20) and ["a", "b"] (later) */
    if (m->type == QD_JSON_STRING) {
      const char* sp = memchr(m->u.string.str, ' ', m->u.string.len);
      const char* l = m->u.string.str;
      size_t ll = m->u.string.len;
      if (!sp || memchr(sp + 1, ' ', ll - (size_t)(sp + 1 - l)))
        return QD_ERR(BAD_INPUT, TOK_MERGES_LINE, "%s: model.merges[%zu] is not two tokens separated by one space",
                      what, i);
      QD_TRY(add_merge_(t, l, (size_t)(sp - l), sp + 1, ll - (size_t)(sp + 1 - l), what, i));
    } else if (m->type == QD_JSON_ARRAY && m->u.array.count == 2 && m->u.array.items[0]->type == QD_JSON_STRING &&
               m->u.array.items[1]->type == QD_JSON_STRING) {
      const qd_json_value_t *a = m->u.array.items[0], *b = m->u.array.items[1];
      QD_TRY(add_merge_(t, a->u.string.str, a->u.string.len, b->u.string.str, b->u.string.len, what, i));
    } else {
      return QD_ERR(BAD_INPUT, TOK_MERGES_LINE, "%s: model.merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", what, i);
    }
  }
  return QD_OK;
}

static bool json_is_null_or_(const qd_json_value_t* v, qd_json_type_t type) {
  return !v || v->type == QD_JSON_NULL || v->type == type;
}

qd_status_t qd_tok_bpe_model_from_json(qd_tokenizer_t* t, const qd_json_value_t* model, const char* what) {
  const qd_json_value_t* eow = qd_json_object_get(model, "end_of_word_suffix");
  const qd_json_value_t* csp = qd_json_object_get(model, "continuing_subword_prefix");
  const qd_json_value_t* dropout = qd_json_object_get(model, "dropout");
  const qd_json_value_t* fuse = qd_json_object_get(model, "fuse_unk");
  const qd_json_value_t* bf = qd_json_object_get(model, "byte_fallback");
  const qd_json_value_t* ign = qd_json_object_get(model, "ignore_merges");
  const qd_json_value_t* unk = qd_json_object_get(model, "unk_token");
  if (!json_is_null_or_(eow, QD_JSON_STRING) || !json_is_null_or_(csp, QD_JSON_STRING) ||
      !json_is_null_or_(dropout, QD_JSON_NUMBER) || !json_is_null_or_(unk, QD_JSON_STRING) ||
      (fuse && fuse->type != QD_JSON_TRUE && fuse->type != QD_JSON_FALSE) ||
      (bf && bf->type != QD_JSON_TRUE && bf->type != QD_JSON_FALSE) ||
      (ign && ign->type != QD_JSON_TRUE && ign->type != QD_JSON_FALSE))
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: a BPE model option has the wrong type", what);
  /* Dropout is random and the other two change the algorithm; FLUX's CLIP uses none of them. */
  if ((csp && csp->type == QD_JSON_STRING && csp->u.string.len) ||
      (dropout && dropout->type == QD_JSON_NUMBER && dropout->u.number.f64 != 0.0) ||
      (ign && ign->type == QD_JSON_TRUE))
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT,
                  "%s: BPE with continuing_subword_prefix, dropout or ignore_merges is not implemented", what);
  QD_TRY(qd_tok_clip_vocab_from_json(t, qd_json_object_get(model, "vocab"), what));
  QD_TRY(qd_tok_clip_merges_from_json(t, qd_json_object_get(model, "merges"), what));
  if (eow && eow->type == QD_JSON_STRING && eow->u.string.len) {
    if (eow->u.string.len > QD_TOK_MAX_SUFFIX_BYTES || memchr(eow->u.string.str, '\0', eow->u.string.len))
      return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: model.end_of_word_suffix is too long or holds a NUL", what);
    QD_TRY(qd_strndup(t->a, eow->u.string.str, eow->u.string.len, &t->eow_suffix));
    t->eow_suffix_len = eow->u.string.len;
  }
  t->fuse_unk = fuse && fuse->type == QD_JSON_TRUE;
  t->byte_fallback = bf && bf->type == QD_JSON_TRUE;
  if (unk && unk->type == QD_JSON_STRING) {
    t->unk_id = qd_tok_lookup(t, unk->u.string.str, unk->u.string.len);
    if (t->unk_id < 0) {
      char shown[96];
      return QD_ERR(BAD_INPUT, TOK_UNK_ID, "%s: model.unk_token '%s' is not in the vocabulary", what,
                    qd_json_display(unk->u.string.str, unk->u.string.len, shown, sizeof shown));
    }
  }
  return QD_OK;
}

/* --- merge map ------------------------------------------------------------------------------------------- */

static uint64_t mix_(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

static const qd_tok_merge_slot_t* merge_find_(const qd_tokenizer_t* t, uint32_t a, uint32_t b) {
  if (!t->merge_map_cap) return NULL;
  uint64_t key = ((uint64_t)a << 32) | b;
  size_t mask = t->merge_map_cap - 1;
  for (size_t i = mix_(key) & mask;; i = (i + 1) & mask) {
    const qd_tok_merge_slot_t* s = &t->merge_map[i];
    if (s->key == UINT64_MAX) return NULL;
    if (s->key == key) return s;
  }
}

qd_status_t qd_tok_bpe_finalize(qd_tokenizer_t* t, const char* what) {
  if (t->eow_suffix && (t->eow_suffix_len > QD_TOK_MAX_SUFFIX_BYTES ||
                       qd_utf8_first_invalid(t->eow_suffix, t->eow_suffix_len) < t->eow_suffix_len))
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: the end-of-word suffix is longer than %u bytes or not UTF-8", what,
                  QD_TOK_MAX_SUFFIX_BYTES);
  size_t cap = 16;
  while (cap < t->merge_count * 2 + 2) cap *= 2;
  QD_TRY(qd_malloc(t->a, cap * sizeof(qd_tok_merge_slot_t), (void**)&t->merge_map));
  t->merge_map_cap = cap;
  for (size_t i = 0; i < cap; i++) t->merge_map[i].key = UINT64_MAX;
  qd_tok_buf_t joined;
  qd_tok_buf_init(&joined, t->a);
  qd_status_t s = QD_OK;
  for (size_t r = 0; r < t->merge_count && !s; r++) {
    uint32_t a = t->merges[2 * r], b = t->merges[2 * r + 1];
    if (a >= t->vocab_count || b >= t->vocab_count) {
      s = QD_ERR(BAD_INPUT, TOK_MERGES_UNKNOWN_TOKEN, "%s: merge %zu names id %u; the vocabulary has %zu", what, r,
                 a >= t->vocab_count ? a : b, t->vocab_count);
      break;
    }
    joined.len = 0;
    s = qd_tok_buf_append(&joined, t->pool.data + t->tok_off[a], t->tok_len[a]);
    if (!s) s = qd_tok_buf_append(&joined, t->pool.data + t->tok_off[b], t->tok_len[b]);
    if (s) break;
    int32_t merged = qd_tok_lookup(t, joined.data, joined.len);
    if (merged < 0) {
      char shown[96];
      s = QD_ERR(BAD_INPUT, TOK_MERGES_RESULT_UNKNOWN, "%s: merge %zu makes '%s', which is not in the vocabulary", what,
                 r, qd_json_display(joined.data, joined.len, shown, sizeof shown));
      break;
    }
    /* A repeated pair takes its last rank, as tokenizers' HashMap collect does. */
    uint64_t key = ((uint64_t)a << 32) | b;
    size_t mask = cap - 1, i = mix_(key) & mask;
    while (t->merge_map[i].key != UINT64_MAX && t->merge_map[i].key != key) i = (i + 1) & mask;
    t->merge_map[i] = (qd_tok_merge_slot_t){key, (uint32_t)r, merged};
  }
  qd_tok_buf_free(&joined);
  return s;
}

/* --- pre-tokenizers ---------------------------------------------------------------------------------------- */

static uint32_t cp_at_(const char* s, size_t len, size_t i, size_t* out_len) {
  uint32_t cp;
  size_t k = qd_utf8_decode((const unsigned char*)s + i, len - i, &cp);
  if (k == 0) { /* the pipeline only holds valid UTF-8; step one byte regardless */
    *out_len = 1;
    return QD_UNICODE_REPLACEMENT;
  }
  *out_len = k;
  return cp;
}

static bool is_other_(uint32_t cp) {
  return !qd_unicode_is_white_space(cp) && !qd_unicode_is_letter(cp) && !qd_unicode_is_number(cp);
}

/* Length of a contraction ('s 't 're 've 'm 'll 'd) at s[i], or 0. */
static size_t contraction_(const char* s, size_t len, size_t i) {
  if (s[i] != '\'' || i + 1 >= len) return 0;
  char c = s[i + 1];
  if (c == 's' || c == 't' || c == 'm' || c == 'd') return 2;
  if (i + 2 < len) {
    char d = s[i + 2];
    if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) return 3;
  }
  return 0;
}

/* The end of the run starting at i of characters for which pred holds. */
static size_t run_end_(const char* s, size_t len, size_t i, bool (*pred)(uint32_t)) {
  while (i < len) {
    size_t k;
    if (!pred(cp_at_(s, len, i, &k))) break;
    i += k;
  }
  return i;
}

qd_status_t qd_tok_pre_clip_split(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                  qd_tok_spans_t* out) {
  /* Oniguruma semantics of <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
   * [^\s\p{L}\p{N}]+ with behavior Removed and invert: the first alternative that matches at the leftmost
   * position wins; what no alternative matches (white space) is dropped. */
  static const char sot[] = "<|startoftext|>", eot[] = "<|endoftext|>";
  size_t i = 0;
  while (i < len) {
    size_t end = 0, k;
    if (op->flag && len - i >= sizeof sot - 1 && memcmp(s + i, sot, sizeof sot - 1) == 0) {
      end = i + sizeof sot - 1;
    } else if (op->flag && len - i >= sizeof eot - 1 && memcmp(s + i, eot, sizeof eot - 1) == 0) {
      end = i + sizeof eot - 1;
    } else if ((k = contraction_(s, len, i)) != 0) {
      end = i + k;
    } else {
      uint32_t cp = cp_at_(s, len, i, &k);
      if (qd_unicode_is_letter(cp)) {
        end = run_end_(s, len, i, qd_unicode_is_letter);
      } else if (qd_unicode_is_number(cp)) {
        end = i + k;
      } else if (!qd_unicode_is_white_space(cp)) {
        end = run_end_(s, len, i, is_other_);
      } else {
        i += k;
        continue;
      }
    }
    QD_TRY(qd_tok_spans_push(out, out_buf->len, end - i, QD_TOK_NONE));
    QD_TRY(qd_tok_buf_append(out_buf, s + i, end - i));
    i = end;
  }
  return QD_OK;
}

static bool is_space_char_(uint32_t cp) { return qd_unicode_is_white_space(cp); }

/* The end of GPT-2's regex match at s[i]:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t gpt2_match_(const char* s, size_t len, size_t i) {
  size_t k = contraction_(s, len, i);
  if (k) return i + k;
  size_t j = i;
  if (s[i] == ' ' && i + 1 < len) j = i + 1;
  uint32_t cp = cp_at_(s, len, j, &k);
  if (qd_unicode_is_letter(cp)) return run_end_(s, len, j, qd_unicode_is_letter);
  if (qd_unicode_is_number(cp)) return run_end_(s, len, j, qd_unicode_is_number);
  if (!qd_unicode_is_white_space(cp)) return run_end_(s, len, j, is_other_);
  /* white space at i: the whole run at the end of the text; before other text, all but its last character
   * (which then prefixes the next word), unless the run is one character long */
  size_t end = run_end_(s, len, i, is_space_char_);
  if (end == len) return end;
  size_t last = end - 1;
  while (last > i && ((unsigned char)s[last] & 0xC0) == 0x80) last--;
  return last > i ? last : end;
}

qd_status_t qd_tok_pre_byte_level(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                  qd_tok_spans_t* out) {
  bool prefix = op->prepend && (len == 0 || s[0] != ' ');
  size_t total = len + prefix;
  size_t i = 0;
  while (i < total) {
    /* positions count the virtual leading space when add_prefix_space applies */
    size_t end;
    if (op->flag) {
      if (prefix) {
        /* rare (FLUX never sets it): materialize the prefixed text once */
        qd_tok_buf_t tmp;
        qd_tok_buf_init(&tmp, out_buf->a);
        qd_status_t st = qd_tok_buf_append(&tmp, " ", 1);
        if (!st) st = qd_tok_buf_append(&tmp, s, len);
        qd_tok_pre_t plain = *op;
        plain.prepend = 0;
        if (!st) st = qd_tok_pre_byte_level(&plain, tmp.data, tmp.len, out_buf, out);
        qd_tok_buf_free(&tmp);
        return st;
      }
      end = gpt2_match_(s, len, i);
    } else {
      end = total;
    }
    size_t start_len = out_buf->len;
    for (size_t b = i; b < end; b++) {
      unsigned byte = (prefix && b == 0) ? ' ' : (unsigned char)s[b - prefix];
      QD_TRY(qd_tok_buf_append_cp(out_buf, byte_to_cp_(byte)));
    }
    QD_TRY(qd_tok_spans_push(out, start_len, out_buf->len - start_len, QD_TOK_NONE));
    i = end;
  }
  return QD_OK;
}

/* --- BPE ------------------------------------------------------------------------------------------------- */

typedef struct sym_ {
  int32_t id;
  int32_t prev, next;
  size_t len; /* bytes; 0 = merged away */
} sym_t;

typedef struct heap_item_ {
  uint32_t rank;
  uint32_t pos;
  int32_t new_id;
} heap_item_t;

static bool heap_less_(const heap_item_t* a, const heap_item_t* b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push_(heap_item_t* h, size_t* n, heap_item_t x) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!heap_less_(&x, &h[p])) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = x;
}

static heap_item_t heap_pop_(heap_item_t* h, size_t* n) {
  heap_item_t top = h[0], x = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && heap_less_(&h[c + 1], &h[c])) c++;
    if (!heap_less_(&h[c], &x)) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = x;
  return top;
}

static void push_pair_(const qd_tokenizer_t* t, const sym_t* sy, size_t pos, heap_item_t* h, size_t* hn) {
  const qd_tok_merge_slot_t* m = merge_find_(t, (uint32_t)sy[pos].id, (uint32_t)sy[sy[pos].next].id);
  if (m) heap_push_(h, hn, (heap_item_t){m->rank, (uint32_t)pos, m->new_id});
}

qd_status_t qd_tok_bpe_word(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out) {
  /* Initial symbols: one per character, the last one with the end-of-word suffix (BPE::merge_word). */
  sym_t* sy;
  heap_item_t* h;
  size_t cap = len + 1, hcap = 3 * len + 4, n = 0, hn = 0;
  QD_TRY(qd_malloc(t->a, cap * sizeof(sym_t), (void**)&sy));
  qd_status_t st = qd_malloc(t->a, hcap * sizeof(heap_item_t), (void**)&h);
  if (st) {
    qd_free(t->a, sy, cap * sizeof(sym_t));
    return st;
  }
  char key[4 + QD_TOK_MAX_SUFFIX_BYTES];
  int32_t unk_pending = QD_TOK_NONE;
  size_t unk_len = 0;
  for (size_t i = 0; i < len;) {
    size_t k;
    cp_at_(s, len, i, &k);
    bool last = i + k >= len;
    size_t kl = k;
    memcpy(key, s + i, k);
    if (last && t->eow_suffix_len) {
      memcpy(key + k, t->eow_suffix, t->eow_suffix_len);
      kl += t->eow_suffix_len;
    }
    int32_t id = qd_tok_lookup(t, key, kl);
    if (id >= 0) {
      if (unk_pending >= 0) {
        sy[n] = (sym_t){unk_pending, (int32_t)n - 1, (int32_t)n + 1, unk_len};
        n++;
        unk_pending = QD_TOK_NONE;
      }
      sy[n] = (sym_t){id, (int32_t)n - 1, (int32_t)n + 1, k};
      n++;
    } else if (t->byte_fallback) {
      /* every byte as <0xNN> when all exist (tokenizers' BPE byte_fallback), else the unknown token */
      int32_t bids[4];
      bool all = true;
      for (size_t b = 0; b < k && all; b++) {
        char hex[8];
        static const char digits[] = "0123456789ABCDEF";
        unsigned v = (unsigned char)s[i + b];
        memcpy(hex, "<0x", 3);
        hex[3] = digits[v >> 4];
        hex[4] = digits[v & 15];
        hex[5] = '>';
        bids[b] = qd_tok_lookup(t, hex, 6);
        all = bids[b] >= 0;
      }
      if (all) {
        for (size_t b = 0; b < k; b++) {
          sy[n] = (sym_t){bids[b], (int32_t)n - 1, (int32_t)n + 1, 1};
          n++;
        }
      } else if (t->unk_id >= 0) {
        sy[n] = (sym_t){t->unk_id, (int32_t)n - 1, (int32_t)n + 1, k};
        n++;
      }
    } else if (t->unk_id >= 0) {
      if (unk_pending >= 0 && t->fuse_unk) {
        unk_len += k;
      } else {
        if (unk_pending >= 0) {
          sy[n] = (sym_t){unk_pending, (int32_t)n - 1, (int32_t)n + 1, unk_len};
          n++;
        }
        unk_pending = t->unk_id;
        unk_len = k;
      }
    }
    i += k;
  }
  if (unk_pending >= 0) {
    sy[n] = (sym_t){unk_pending, (int32_t)n - 1, (int32_t)n + 1, unk_len};
    n++;
  }
  if (n) sy[n - 1].next = -1;
  /* Word::merge_all: pop the lowest (rank, position); skip entries made stale by earlier merges. */
  for (size_t i = 0; i + 1 < n; i++) push_pair_(t, sy, i, h, &hn);
  while (hn) {
    heap_item_t top = heap_pop_(h, &hn);
    sym_t* cur = &sy[top.pos];
    if (cur->len == 0 || cur->next < 0) continue;
    sym_t right = sy[cur->next];
    const qd_tok_merge_slot_t* m = merge_find_(t, (uint32_t)cur->id, (uint32_t)right.id);
    if (!m || m->new_id != top.new_id) continue;
    sy[cur->next].len = 0;
    cur->id = top.new_id;
    cur->len += right.len;
    cur->next = right.next;
    if (right.next >= 0) sy[right.next].prev = (int32_t)top.pos;
    /* each merge adds at most two entries, and there are at most n - 1 merges: hcap = 3n suffices */
    if (cur->prev >= 0) push_pair_(t, sy, (size_t)cur->prev, h, &hn);
    if (cur->next >= 0) push_pair_(t, sy, top.pos, h, &hn);
  }
  for (size_t i = 0; i < n && !st; i++)
    if (sy[i].len) st = qd_tok_ids_push(out, sy[i].id);
  qd_free(t->a, sy, cap * sizeof(sym_t));
  qd_free(t->a, h, hcap * sizeof(heap_item_t));
  return st;
}

qd_status_t qd_tok_bpe_decode(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out) {
  bool byte_level = false;
  for (size_t i = 0; i < t->pre_count; i++) byte_level |= t->pre[i].kind == QD_TOK_PRE_BYTE_LEVEL;
  qd_tok_buf_t bytes;
  qd_tok_buf_init(&bytes, out->a);
  qd_status_t st = qd_tok_buf_reserve(&bytes, len);
  for (size_t i = 0; i < len && !st;) {
    if (t->eow_suffix_len && len - i >= t->eow_suffix_len && memcmp(s + i, t->eow_suffix, t->eow_suffix_len) == 0) {
      st = qd_tok_buf_append(&bytes, " ", 1);
      i += t->eow_suffix_len;
      continue;
    }
    size_t k;
    uint32_t cp = cp_at_(s, len, i, &k);
    int b = byte_level ? cp_to_byte_(cp) : -1;
    if (b >= 0) {
      char c = (char)b;
      st = qd_tok_buf_append(&bytes, &c, 1);
    } else {
      st = qd_tok_buf_append(&bytes, s + i, k);
    }
    i += k;
  }
  /* bytes may now be any byte string: replace what is not UTF-8, then trim spaces */
  size_t b0 = 0, e0 = bytes.len;
  while (b0 < e0 && bytes.data[b0] == ' ') b0++;
  while (e0 > b0 && bytes.data[e0 - 1] == ' ') e0--;
  for (size_t i = b0; i < e0 && !st;) {
    uint32_t cp;
    size_t k = qd_utf8_decode((const unsigned char*)bytes.data + i, e0 - i, &cp);
    if (k == 0) {
      st = qd_tok_buf_append_cp(out, QD_UNICODE_REPLACEMENT);
      i += cp;
    } else {
      st = qd_tok_buf_append(out, bytes.data + i, k);
      i += k;
    }
  }
  qd_tok_buf_free(&bytes);
  return st;
}
