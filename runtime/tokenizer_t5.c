/* T5: SentencePiece Unigram (runtime/tokenizer_t5.h). */
#include <math.h>
#include <string.h>

#include "runtime/tokenizer_t5.h"
#include "runtime/unicode.h"

/* --- the precompiled charsmap ------------------------------------------------------------------------------ */

/* darts-clone's double-array unit layout (SentencePiece's normalizer trie). */
static bool unit_has_leaf_(uint32_t u) { return ((u >> 8) & 1) == 1; }
static uint32_t unit_value_(uint32_t u) { return u & ((1u << 31) - 1); }
static uint32_t unit_label_(uint32_t u) { return u & ((1u << 31) | 0xFF); }
static uint32_t unit_offset_(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }

qd_status_t qd_tok_set_charsmap(qd_tokenizer_t* t, const unsigned char* data, size_t size, const char* what) {
  if (size < 4)
    return QD_ERR(BAD_INPUT, TOK_CHARSMAP, "%s: the precompiled charsmap has %zu bytes; it needs a 4-byte header",
                  what, size);
  uint32_t trie_bytes = (uint32_t)data[0] | (uint32_t)data[1] << 8 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 24;
  if (trie_bytes % 4 != 0 || trie_bytes == 0 || trie_bytes > size - 4)
    return QD_ERR(BAD_INPUT, TOK_CHARSMAP,
                  "%s: the precompiled charsmap's trie size %u is not a non-zero multiple of 4 within its %zu bytes",
                  what, trie_bytes, size);
  size_t units = trie_bytes / 4;
  const char* norm = (const char*)data + 4 + trie_bytes;
  size_t norm_len = size - 4 - trie_bytes;
  size_t bad = qd_utf8_first_invalid(norm, norm_len);
  if (bad < norm_len)
    return QD_ERR(BAD_INPUT, TOK_CHARSMAP, "%s: the charsmap's normalized strings are not UTF-8 (byte %zu of them)",
                  what, bad);
  uint32_t* trie;
  QD_TRY(qd_malloc(t->a, units * sizeof(uint32_t), (void**)&trie));
  for (size_t i = 0; i < units; i++) {
    const unsigned char* p = data + 4 + 4 * i;
    trie[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  }
  /* Walk every reachable node once, as lookups would, so that no lookup can return a string that does not start
   * on a character inside the normalized block. darts-clone shares identical subtrees (the trie is a DAG), so a
   * unit may be reached from several parents: it is expanded only the first time, which also ends any cycle a
   * hostile file could build. */
  unsigned char* seen = NULL;
  size_t* stack = NULL;
  qd_status_t s = qd_calloc(t->a, units, 1, (void**)&seen);
  if (!s) s = qd_malloc(t->a, (units + 1) * sizeof(size_t), (void**)&stack);
  size_t depth = 0;
  if (!s) stack[depth++] = unit_offset_(trie[0]);
  while (!s && depth) {
    size_t base = stack[--depth];
    for (unsigned c = 1; c < 256 && !s; c++) {
      size_t q = base ^ c;
      if (q >= units || unit_label_(trie[q]) != c || seen[q]) continue;
      seen[q] = 1;
      size_t child = q ^ unit_offset_(trie[q]);
      if (unit_has_leaf_(trie[q])) {
        if (child >= units) {
          s = QD_ERR(BAD_INPUT, TOK_CHARSMAP, "%s: charsmap trie unit %zu has its value outside the trie", what, q);
          break;
        }
        uint32_t v = unit_value_(trie[child]);
        if (v > norm_len || (v < norm_len && ((unsigned char)norm[v] & 0xC0) == 0x80)) {
          s = QD_ERR(BAD_INPUT, TOK_CHARSMAP,
                     "%s: a charsmap entry points at byte %u of %zu normalized bytes, not at a character", what, v,
                     norm_len);
          break;
        }
      }
      stack[depth++] = child; /* at most one push per unit (seen[]), so units + 1 slots suffice */
    }
  }
  qd_free(t->a, seen, units);
  qd_free(t->a, stack, (units + 1) * sizeof(size_t));
  if (!s) {
    unsigned char* copy;
    s = qd_malloc(t->a, size, (void**)&copy);
    if (!s) {
      memcpy(copy, data, size);
      qd_free(t->a, t->charsmap, t->charsmap_size);
      qd_free(t->a, t->trie, t->trie_units * sizeof(uint32_t));
      t->charsmap = copy;
      t->charsmap_size = size;
      t->trie = trie;
      t->trie_units = units;
      t->charsmap_norm = (const char*)copy + 4 + trie_bytes;
      t->charsmap_norm_len = norm_len;
      return QD_OK;
    }
  }
  qd_free(t->a, trie, units * sizeof(uint32_t));
  return s;
}

/* spm_precompiled's transform: the replacement of the SHORTEST prefix of s that has one (common_prefix_search's
 * first result), or false. A NUL byte ends the search, as there. */
static bool transform_(const qd_tokenizer_t* t, const char* s, size_t len, const char** out, size_t* out_len) {
  const uint32_t* a = t->trie;
  size_t pos = unit_offset_(a[0]);
  for (size_t i = 0; i < len; i++) {
    unsigned c = (unsigned char)s[i];
    if (c == 0) break;
    pos ^= c;
    if (pos >= t->trie_units) return false;
    uint32_t u = a[pos];
    if (unit_label_(u) != c) return false;
    pos ^= unit_offset_(u);
    if (unit_has_leaf_(u)) {
      if (pos >= t->trie_units) return false; /* excluded by the load-time walk */
      uint32_t v = unit_value_(a[pos]);
      if (v > t->charsmap_norm_len) return false;
      const char* r = t->charsmap_norm + v;
      const char* nul = memchr(r, '\0', t->charsmap_norm_len - v);
      *out = r;
      *out_len = nul ? (size_t)(nul - r) : t->charsmap_norm_len - v;
      return true;
    }
  }
  return false;
}

qd_status_t qd_tok_precompiled_normalize(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out) {
  /* Per extended grapheme cluster: a cluster shorter than 6 bytes is replaced whole when a prefix of it has an
   * entry (even if that prefix is only its first character: the rest of the cluster is dropped, as in
   * tokenizers); otherwise each character is looked up on its own. */
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t k = qd_utf8_decode((const unsigned char*)s + i, len - i, &cp);
    i += k ? k : 1;
    n++;
  }
  if (n == 0) return QD_OK;
  uint32_t* cps;
  size_t* offs;
  QD_TRY(qd_malloc(t->a, n * sizeof(uint32_t), (void**)&cps));
  qd_status_t st = qd_malloc(t->a, (n + 1) * sizeof(size_t), (void**)&offs);
  if (st) {
    qd_free(t->a, cps, n * sizeof(uint32_t));
    return st;
  }
  size_t m = 0;
  for (size_t i = 0; i < len;) {
    uint32_t cp;
    size_t k = qd_utf8_decode((const unsigned char*)s + i, len - i, &cp);
    offs[m] = i;
    cps[m++] = k ? cp : QD_UNICODE_REPLACEMENT;
    i += k ? k : 1;
  }
  offs[m] = len;
  for (size_t g = 0; g < m && !st;) {
    size_t ge = qd_unicode_grapheme_end(cps, m, g);
    size_t gb = offs[g], gl = offs[ge] - offs[g];
    const char* r;
    size_t rl;
    if (gl < 6 && transform_(t, s + gb, gl, &r, &rl)) {
      st = qd_tok_buf_append(out, r, rl);
    } else {
      for (size_t c = g; c < ge && !st; c++) {
        size_t cb = offs[c], cl = offs[c + 1] - offs[c];
        if (transform_(t, s + cb, cl, &r, &rl)) {
          st = qd_tok_buf_append(out, r, rl);
        } else {
          st = qd_tok_buf_append(out, s + cb, cl);
        }
      }
    }
    g = ge;
  }
  qd_free(t->a, cps, n * sizeof(uint32_t));
  qd_free(t->a, offs, (n + 1) * sizeof(size_t));
  return st;
}

/* --- pre-tokenizers ---------------------------------------------------------------------------------------- */

qd_status_t qd_tok_pre_whitespace_split(const char* s, size_t len, qd_tok_buf_t* out_buf, qd_tok_spans_t* out) {
  size_t i = 0, start = 0;
  bool in_word = false;
  while (i < len) {
    uint32_t cp;
    size_t k = qd_utf8_decode((const unsigned char*)s + i, len - i, &cp);
    if (k == 0) k = 1, cp = QD_UNICODE_REPLACEMENT;
    bool ws = qd_unicode_is_white_space(cp);
    if (ws && in_word) {
      QD_TRY(qd_tok_spans_push(out, out_buf->len, i - start, QD_TOK_NONE));
      QD_TRY(qd_tok_buf_append(out_buf, s + start, i - start));
      in_word = false;
    } else if (!ws && !in_word) {
      start = i;
      in_word = true;
    }
    i += k;
  }
  if (in_word) {
    QD_TRY(qd_tok_spans_push(out, out_buf->len, len - start, QD_TOK_NONE));
    QD_TRY(qd_tok_buf_append(out_buf, s + start, len - start));
  }
  return QD_OK;
}

qd_status_t qd_tok_pre_metaspace(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                 qd_tok_spans_t* out) {
  char rep[4];
  size_t rl = qd_utf8_encode(op->replacement, rep);
  size_t start = out_buf->len;
  /* spaces become the replacement; then it is prepended unless the text already starts with it */
  bool starts = false;
  if (len && s[0] == ' ') starts = true;
  if (len >= rl && memcmp(s, rep, rl) == 0) starts = true;
  if (op->prepend && !starts) QD_TRY(qd_tok_buf_append(out_buf, rep, rl));
  for (size_t i = 0; i < len; i++) {
    if (s[i] == ' ') {
      QD_TRY(qd_tok_buf_append(out_buf, rep, rl));
    } else {
      QD_TRY(qd_tok_buf_append(out_buf, s + i, 1));
    }
  }
  size_t end = out_buf->len;
  if (!op->flag) return qd_tok_spans_push(out, start, end - start, QD_TOK_NONE);
  /* Split with MergedWithNext: a piece starts at each replacement that does not follow another one; runs of
   * replacements stay together with the text after them. */
  const char* b = out_buf->data;
  size_t piece = start;
  bool prev_match = false;
  for (size_t i = start; i < end;) {
    bool match = end - i >= rl && memcmp(b + i, rep, rl) == 0;
    if (match && !prev_match && i > piece) {
      QD_TRY(qd_tok_spans_push(out, piece, i - piece, QD_TOK_NONE));
      piece = i;
    }
    prev_match = match;
    i += match ? rl : 1;
  }
  if (end > piece) QD_TRY(qd_tok_spans_push(out, piece, end - piece, QD_TOK_NONE));
  return QD_OK;
}

/* --- Unigram ----------------------------------------------------------------------------------------------- */

#define FNV64_BASIS 0xcbf29ce484222325ULL
#define FNV64_PRIME 0x100000001b3ULL

static int32_t piece_find_(const qd_tokenizer_t* t, uint64_t h, const char* s, size_t len) {
  size_t mask = t->piece_map_cap - 1;
  for (size_t i = (size_t)(h ^ (h >> 29)) & mask;; i = (i + 1) & mask) {
    const qd_tok_piece_slot_t* e = &t->piece_map[i];
    if (e->id < 0) return QD_TOK_NONE;
    if (e->hash == h && t->tok_len[e->id] == len && memcmp(t->pool.data + t->tok_off[e->id], s, len) == 0)
      return e->id;
  }
}

typedef struct node_ {
  double score;
  int64_t start; /* -1: no path ends here yet */
  int32_t id;
} node_t;

static qd_status_t push_piece_(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out) {
  int32_t id = qd_tok_lookup(t, s, len);
  if (id >= 0) return qd_tok_ids_push(out, id);
  if (t->byte_fallback) {
    bool all = true;
    for (size_t i = 0; i < len && all; i++) all = t->byte_fallback_ids[(unsigned char)s[i]] >= 0;
    if (all) {
      for (size_t i = 0; i < len; i++) QD_TRY(qd_tok_ids_push(out, t->byte_fallback_ids[(unsigned char)s[i]]));
      return QD_OK;
    }
  }
  return qd_tok_ids_push(out, t->unk_id);
}

qd_status_t qd_tok_unigram_piece(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out) {
  node_t* best;
  QD_TRY(qd_malloc(t->a, (len + 1) * sizeof(node_t), (void**)&best));
  for (size_t i = 0; i <= len; i++) best[i] = (node_t){0.0, -1, QD_TOK_NONE};
  double unk_score = t->min_score - 10.0;
  for (size_t at = 0; at < len;) {
    uint32_t cp;
    size_t mblen = qd_utf8_decode((const unsigned char*)s + at, len - at, &cp);
    if (mblen == 0) mblen = 1;
    double here = best[at].score;
    bool single = false;
    size_t maxl = len - at < t->max_piece_len ? len - at : t->max_piece_len;
    /* the trie's common-prefix search, shortest first; pieces are UTF-8, so only character ends can match */
    uint64_t h = FNV64_BASIS;
    for (size_t l = 1; l <= maxl; l++) {
      h = (h ^ (unsigned char)s[at + l - 1]) * FNV64_PRIME;
      if (at + l < len && ((unsigned char)s[at + l] & 0xC0) == 0x80) continue;
      int32_t id = piece_find_(t, h, s + at, l);
      if (id < 0) continue;
      double cand = t->scores[id] + here;
      node_t* target = &best[at + l];
      if (target->start < 0 || cand > target->score) *target = (node_t){cand, (int64_t)at, id};
      if (l == mblen) single = true;
    }
    if (!single) {
      double cand = unk_score + here;
      node_t* target = &best[at + mblen];
      if (target->start < 0 || cand > target->score) *target = (node_t){cand, (int64_t)at, t->unk_id};
    }
    at += mblen;
  }
  /* Backtrack, fusing adjacent unknown pieces into one string (tokenizers' fuse_unk, always on for Unigram),
   * then look each string up again as tokenizers does (a fused string may be a piece; else byte fallback, else
   * the unknown id). */
  typedef struct {
    size_t b, e;
  } piece_t;
  piece_t* pieces;
  size_t np = 0;
  qd_status_t st = qd_malloc(t->a, (len + 1) * sizeof(piece_t), (void**)&pieces);
  if (st) {
    qd_free(t->a, best, (len + 1) * sizeof(node_t));
    return st;
  }
  bool last_unk = false;
  for (size_t end = len; end > 0;) {
    const node_t* nd = &best[end];
    size_t start = nd->start < 0 ? end - 1 : (size_t)nd->start; /* every character end is reached */
    bool unk = nd->id == t->unk_id;
    if (unk && last_unk) {
      pieces[np - 1].b = start;
    } else {
      pieces[np++] = (piece_t){start, end};
    }
    last_unk = unk;
    end = start;
  }
  for (size_t k = np; k-- > 0 && !st;) st = push_piece_(t, s + pieces[k].b, pieces[k].e - pieces[k].b, out);
  qd_free(t->a, pieces, (len + 1) * sizeof(piece_t));
  qd_free(t->a, best, (len + 1) * sizeof(node_t));
  return st;
}

qd_status_t qd_tok_unigram_decode(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out) {
  static const char meta[] = "\xE2\x96\x81"; /* U+2581 */
  size_t i = 0;
  if (len >= 3 && memcmp(s, meta, 3) == 0) i = 3; /* the prepended one */
  for (; i < len;) {
    if (len - i >= 3 && memcmp(s + i, meta, 3) == 0) {
      QD_TRY(qd_tok_buf_append(out, " ", 1));
      i += 3;
    } else {
      QD_TRY(qd_tok_buf_append(out, s + i, 1));
      i++;
    }
  }
  (void)t;
  return QD_OK;
}

/* --- loading --------------------------------------------------------------------------------------------- */

qd_status_t qd_tok_unigram_extend_scores(qd_tokenizer_t* t, size_t old_count) {
  if (t->scores_count != old_count || t->vocab_count < old_count)
    return QD_ERR(INTERNAL, INTERNAL, "unigram scores: %zu scores for %zu tokens", t->scores_count, old_count);
  if (t->vocab_count == old_count) return QD_OK;
  void* p;
  QD_TRY(qd_realloc(t->a, t->scores, old_count * sizeof(double), t->vocab_count * sizeof(double), &p));
  t->scores = p;
  for (size_t i = old_count; i < t->vocab_count; i++) t->scores[i] = 0.0;
  t->scores_count = t->vocab_count;
  return QD_OK;
}

qd_status_t qd_tok_unigram_finalize(qd_tokenizer_t* t, const char* what) {
  if (!t->scores || t->scores_count != t->vocab_count)
    return QD_ERR(BAD_INPUT, TOK_UNIGRAM_SCORE, "%s: %zu scores for %zu pieces", what, t->scores_count,
                  t->vocab_count);
  if (t->unk_id < 0 || (size_t)t->unk_id >= t->vocab_count)
    return QD_ERR(BAD_INPUT, TOK_UNK_ID, "%s: the unknown-piece id %d is not in the vocabulary of %zu", what,
                  t->unk_id, t->vocab_count);
  t->min_score = INFINITY;
  t->max_piece_len = 0;
  for (size_t i = 0; i < t->vocab_count; i++) {
    if (!isfinite(t->scores[i]))
      return QD_ERR(BAD_INPUT, TOK_UNIGRAM_SCORE, "%s: piece %zu has score %g", what, i, t->scores[i]);
    if (t->tok_len[i] > QD_TOK_MAX_PIECE_BYTES) {
      char shown[96];
      return QD_ERR(BAD_INPUT, TOK_TOKEN_TOO_LONG, "%s: Unigram piece %zu ('%s') has %u bytes; at most %u are allowed",
                    what, i, qd_json_display(t->pool.data + t->tok_off[i], t->tok_len[i], shown, sizeof shown),
                    t->tok_len[i], QD_TOK_MAX_PIECE_BYTES);
    }
    if (t->scores[i] < t->min_score) t->min_score = t->scores[i];
    if (t->tok_len[i] > t->max_piece_len) t->max_piece_len = t->tok_len[i];
  }
  size_t cap = 16;
  while (cap < 2 * t->vocab_count) cap *= 2;
  QD_TRY(qd_malloc(t->a, cap * sizeof(qd_tok_piece_slot_t), (void**)&t->piece_map));
  t->piece_map_cap = cap;
  for (size_t i = 0; i < cap; i++) t->piece_map[i].id = QD_TOK_NONE;
  for (size_t i = 0; i < t->vocab_count; i++) {
    const unsigned char* p = (const unsigned char*)t->pool.data + t->tok_off[i];
    uint64_t h = FNV64_BASIS;
    for (size_t k = 0; k < t->tok_len[i]; k++) h = (h ^ p[k]) * FNV64_PRIME;
    size_t j = (size_t)(h ^ (h >> 29)) & (cap - 1);
    while (t->piece_map[j].id >= 0) j = (j + 1) & (cap - 1); /* pieces are unique (checked with the vocabulary) */
    t->piece_map[j] = (qd_tok_piece_slot_t){h, (int32_t)i};
  }
  for (unsigned b = 0; b < 256; b++) {
    char hex[7];
    static const char digits[] = "0123456789ABCDEF";
    memcpy(hex, "<0x", 3);
    hex[3] = digits[b >> 4];
    hex[4] = digits[b & 15];
    hex[5] = '>';
    hex[6] = '\0';
    t->byte_fallback_ids[b] = qd_tok_lookup(t, hex, 6);
  }
  return QD_OK;
}

static int b64_value_(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

qd_status_t qd_tok_base64_decode(qd_allocator_t a, const char* s, size_t len, const char* what,
                                 unsigned char** out_data, size_t* out_size) {
  if (len % 4 != 0)
    return QD_ERR(BAD_INPUT, TOK_CHARSMAP_BASE64, "%s: base64 text of %zu characters is not a multiple of 4", what,
                  len);
  size_t pad = 0;
  if (len && s[len - 1] == '=') pad++;
  if (len > 1 && s[len - 2] == '=') pad++;
  size_t size = len / 4 * 3 - pad;
  unsigned char* d;
  QD_TRY(qd_malloc(a, size ? size : 1, (void**)&d));
  size_t w = 0;
  for (size_t i = 0; i < len; i += 4) {
    int v[4];
    for (int k = 0; k < 4; k++) {
      bool is_pad = s[i + k] == '=' && i + 4 == len && k >= 4 - (int)pad;
      v[k] = is_pad ? 0 : b64_value_((unsigned char)s[i + k]);
      if (v[k] < 0) {
        qd_free(a, d, size ? size : 1);
        return QD_ERR(BAD_INPUT, TOK_CHARSMAP_BASE64, "%s: character %zu of the base64 text is not base64", what,
                      i + (size_t)k);
      }
    }
    uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
    unsigned char b[3] = {(unsigned char)(x >> 16), (unsigned char)(x >> 8), (unsigned char)x};
    for (int k = 0; k < 3 && w < size; k++) d[w++] = b[k];
  }
  *out_data = d;
  *out_size = size;
  return QD_OK;
}

qd_status_t qd_tok_unigram_model_from_json(qd_tokenizer_t* t, const qd_json_value_t* model, const char* what) {
  const qd_json_value_t* vocab = qd_json_object_get(model, "vocab");
  const qd_json_value_t* unk = qd_json_object_get(model, "unk_id");
  const qd_json_value_t* bf = qd_json_object_get(model, "byte_fallback");
  if (!vocab || vocab->type != QD_JSON_ARRAY)
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: model.vocab of a Unigram model is not an array", what);
  if (bf && bf->type != QD_JSON_TRUE && bf->type != QD_JSON_FALSE)
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: model.byte_fallback is not a boolean", what);
  size_t n = vocab->u.array.count;
  if (n == 0) return QD_ERR(BAD_INPUT, TOK_VOCAB_EMPTY, "%s: the vocabulary is empty", what);
  if (n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu pieces; at most %u are allowed", what, n,
                  QD_TOK_MAX_TOKENS);
  if (!unk || unk->type == QD_JSON_NULL || unk->type != QD_JSON_NUMBER || !unk->u.number.is_integer ||
      !unk->u.number.fits_u64 || unk->u.number.u64 >= n)
    return QD_ERR(BAD_INPUT, TOK_UNK_ID, "%s: model.unk_id must be an id below %zu", what, n);
  qd_tok_entry_t* e;
  double* scores;
  QD_TRY(qd_malloc(t->a, n * sizeof *e, (void**)&e));
  qd_status_t s = qd_malloc(t->a, n * sizeof(double), (void**)&scores);
  if (s) {
    qd_free(t->a, e, n * sizeof *e);
    return s;
  }
  for (size_t i = 0; i < n && !s; i++) {
    const qd_json_value_t* it = vocab->u.array.items[i];
    if (it->type != QD_JSON_ARRAY || it->u.array.count != 2 || it->u.array.items[0]->type != QD_JSON_STRING ||
        it->u.array.items[1]->type != QD_JSON_NUMBER) {
      s = QD_ERR(BAD_INPUT, TOK_UNIGRAM_ENTRY, "%s: model.vocab[%zu] (offset %zu) is not [piece, score]", what, i,
                 it->offset);
      break;
    }
    const qd_json_value_t* str = it->u.array.items[0];
    scores[i] = it->u.array.items[1]->u.number.f64;
    if (!isfinite(scores[i]))
      s = QD_ERR(BAD_INPUT, TOK_UNIGRAM_SCORE, "%s: model.vocab[%zu] has score %s", what, i,
                 it->u.array.items[1]->u.number.raw);
    e[i] = (qd_tok_entry_t){str->u.string.str, str->u.string.len, i, str->offset};
  }
  if (!s) s = qd_tok_set_vocab(t, e, n, what);
  qd_free(t->a, e, n * sizeof *e);
  if (s) {
    qd_free(t->a, scores, n * sizeof(double));
    return s;
  }
  qd_free(t->a, t->scores, t->scores_count * sizeof(double));
  t->scores = scores;
  t->scores_count = n;
  t->unk_id = (int32_t)unk->u.number.u64;
  t->byte_fallback = bf && bf->type == QD_JSON_TRUE;
  return QD_OK;
}

/* --- SentencePiece model protobuf -------------------------------------------------------------------------- */

typedef struct pb_ {
  const unsigned char* p;
  size_t len, pos;
  size_t base; /* offset of p in the file, for messages */
  const char* what;
} pb_t;

static qd_status_t pb_varint_(pb_t* r, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (r->pos >= r->len)
      return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: a varint is cut off at byte %zu", r->what, r->base + r->pos);
    unsigned char b = r->p[r->pos++];
    if (shift == 63 && (b & 0x7E))
      return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: a varint at byte %zu overflows 64 bits", r->what,
                    r->base + r->pos - 1);
    v |= (uint64_t)(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return QD_OK;
    }
  }
  return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: a varint at byte %zu is longer than 10 bytes", r->what,
                r->base + r->pos);
}

/* Reads one field header and its payload: varints in *v, fixed32/64 in *v, length-delimited as a sub-reader. */
static qd_status_t pb_field_(pb_t* r, uint32_t* field, uint32_t* wire, uint64_t* v, pb_t* sub) {
  uint64_t key;
  size_t at = r->pos;
  QD_TRY(pb_varint_(r, &key));
  *field = (uint32_t)(key >> 3);
  *wire = (uint32_t)(key & 7);
  if (key >> 3 == 0 || key >> 3 > 536870911u)
    return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: field number %llu at byte %zu is invalid", r->what,
                  (unsigned long long)(key >> 3), r->base + at);
  switch (*wire) {
    case 0: return pb_varint_(r, v);
    case 1:
    case 5: {
      size_t n = *wire == 1 ? 8 : 4;
      if (r->len - r->pos < n)
        return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: a fixed-size field at byte %zu is cut off", r->what, r->base + at);
      uint64_t x = 0;
      for (size_t i = 0; i < n; i++) x |= (uint64_t)r->p[r->pos + i] << (8 * i);
      r->pos += n;
      *v = x;
      return QD_OK;
    }
    case 2: {
      uint64_t n;
      QD_TRY(pb_varint_(r, &n));
      if (n > r->len - r->pos)
        return QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: field %u at byte %zu has length %llu past the end of its message",
                      r->what, *field, r->base + at, (unsigned long long)n);
      *sub = (pb_t){r->p + r->pos, (size_t)n, 0, r->base + r->pos, r->what};
      r->pos += (size_t)n;
      return QD_OK;
    }
    default:
      return QD_ERR(BAD_INPUT, TOK_SPM_PROTO,
                    "%s: field %u at byte %zu has wire type %u, which SentencePiece never writes", r->what, *field,
                    r->base + at, *wire);
  }
}

qd_status_t qd_tok_spm_load(qd_tokenizer_t* t, const unsigned char* data, size_t size, const char* what,
                            qd_tok_spm_info_t* out_info) {
  pb_t r = {data, size, 0, 0, what};
  uint32_t field, wire;
  uint64_t v;
  pb_t sub;
  size_t n = 0;
  /* first pass: count pieces, so the arrays are sized once */
  while (r.pos < r.len) {
    QD_TRY(pb_field_(&r, &field, &wire, &v, &sub));
    if (field == 1 && wire == 2) n++;
  }
  if (n == 0) return QD_ERR(BAD_INPUT, TOK_VOCAB_EMPTY, "%s: the model has no pieces", what);
  if (n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu pieces; at most %u are allowed", what, n,
                  QD_TOK_MAX_TOKENS);
  qd_tok_entry_t* e;
  double* scores;
  QD_TRY(qd_malloc(t->a, n * sizeof *e, (void**)&e));
  qd_status_t s = qd_malloc(t->a, n * sizeof(double), (void**)&scores);
  if (s) {
    qd_free(t->a, e, n * sizeof *e);
    return s;
  }
  uint64_t model_type = 1, unk_id = 0; /* proto defaults: UNIGRAM, unk_id 0 */
  bool byte_fallback = false;
  qd_tok_spm_info_t info = {true, true};
  const unsigned char* charsmap = NULL;
  size_t charsmap_len = 0;
  size_t k = 0;
  r.pos = 0;
  while (!s && r.pos < r.len) {
    s = pb_field_(&r, &field, &wire, &v, &sub);
    if (s) break;
    if (field == 1 && wire == 2) { /* SentencePiece { piece = 1; score = 2; type = 3; } */
      const char* piece = NULL;
      size_t plen = 0;
      bool have_piece = false;
      float score = 0.0f;
      size_t at = sub.base;
      pb_t pr = sub, ps;
      while (!s && pr.pos < pr.len) {
        s = pb_field_(&pr, &field, &wire, &v, &ps);
        if (s) break;
        if (field == 1 && wire == 2) {
          piece = (const char*)ps.p;
          plen = ps.len;
          have_piece = true;
        } else if (field == 2 && wire == 5) {
          uint32_t bits = (uint32_t)v;
          memcpy(&score, &bits, sizeof score);
        } else if ((field == 1 || field == 2) || (field == 3 && wire != 0)) {
          s = QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: piece %zu: field %u has wire type %u", what, k, field, wire);
        }
      }
      if (s) break;
      if (!have_piece) {
        s = QD_ERR(BAD_INPUT, TOK_SPM_PIECE, "%s: piece %zu (byte %zu) has no text", what, k, at);
        break;
      }
      if (!isfinite(score)) {
        s = QD_ERR(BAD_INPUT, TOK_SPM_PIECE, "%s: piece %zu (byte %zu) has score %g", what, k, at, (double)score);
        break;
      }
      e[k] = (qd_tok_entry_t){piece ? piece : "", plen, k, at};
      scores[k] = (double)score;
      k++;
    } else if (field == 2 && wire == 2) { /* TrainerSpec */
      pb_t pr = sub, ps;
      while (!s && pr.pos < pr.len) {
        s = pb_field_(&pr, &field, &wire, &v, &ps);
        if (s) break;
        if (field == 3 && wire == 0) model_type = v;
        if (field == 40 && wire == 0) unk_id = v;
        if (field == 35 && wire == 0) byte_fallback = v != 0;
      }
    } else if (field == 3 && wire == 2) { /* NormalizerSpec */
      pb_t pr = sub, ps;
      while (!s && pr.pos < pr.len) {
        s = pb_field_(&pr, &field, &wire, &v, &ps);
        if (s) break;
        if (field == 2 && wire == 2) {
          charsmap = ps.p;
          charsmap_len = ps.len;
        }
        if (field == 3 && wire == 0) info.add_dummy_prefix = v != 0;
        if (field == 4 && wire == 0) info.remove_extra_whitespaces = v != 0;
      }
    } else if (field <= 3) {
      s = QD_ERR(BAD_INPUT, TOK_SPM_PROTO, "%s: field %u has wire type %u", what, field, wire);
    }
  }
  if (!s && model_type != 1)
    s = QD_ERR(UNSUPPORTED, TOK_SPM_MODEL_TYPE, "%s: model_type %llu is not UNIGRAM (1)", what,
               (unsigned long long)model_type);
  if (!s && unk_id >= n)
    s = QD_ERR(BAD_INPUT, TOK_UNK_ID, "%s: trainer_spec.unk_id %llu is not a piece id (there are %zu)", what,
               (unsigned long long)unk_id, n);
  if (!s) s = qd_tok_set_vocab(t, e, n, what);
  qd_free(t->a, e, n * sizeof *e);
  if (!s && charsmap_len) s = qd_tok_set_charsmap(t, charsmap, charsmap_len, what);
  if (s) {
    qd_free(t->a, scores, n * sizeof(double));
    return s;
  }
  qd_free(t->a, t->scores, t->scores_count * sizeof(double));
  t->scores = scores;
  t->scores_count = n;
  t->unk_id = (int32_t)unk_id;
  t->byte_fallback = byte_fallback;
  if (out_info) *out_info = info;
  return QD_OK;
}
