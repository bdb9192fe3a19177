/* The tokenizer object: vocabulary, pipeline, added tokens, encode/decode driver (include/qd/tokenizer.h). The
 * models live in tokenizer_clip.c (BPE) and tokenizer_t5.c (Unigram), the file loaders in tokenizer_files.c, the
 * blob in tokenizer_blob.c. */
#include <stdlib.h>
#include <string.h>

#include "runtime/tokenizer_clip.h"
#include "runtime/tokenizer_internal.h"
#include "runtime/tokenizer_t5.h"
#include "runtime/unicode.h"

/* --- buffers ------------------------------------------------------------------------------------------- */

void qd_tok_buf_init(qd_tok_buf_t* b, qd_allocator_t a) {
  memset(b, 0, sizeof *b);
  b->a = a;
}

void qd_tok_buf_free(qd_tok_buf_t* b) {
  qd_free(b->a, b->data, b->cap);
  b->data = NULL;
  b->len = b->cap = 0;
}

qd_status_t qd_tok_buf_reserve(qd_tok_buf_t* b, size_t extra) {
  if (extra > SIZE_MAX / 2 - b->len) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "tokenizer buffer: size overflow");
  size_t need = b->len + extra + 1; /* room for a NUL */
  if (need <= b->cap) return QD_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  void* p;
  QD_TRY(qd_realloc(b->a, b->data, b->cap, cap, &p));
  b->data = p;
  b->cap = cap;
  return QD_OK;
}

qd_status_t qd_tok_buf_append(qd_tok_buf_t* b, const void* data, size_t len) {
  QD_TRY(qd_tok_buf_reserve(b, len));
  if (len) memcpy(b->data + b->len, data, len);
  b->len += len;
  b->data[b->len] = '\0';
  return QD_OK;
}

qd_status_t qd_tok_buf_append_cp(qd_tok_buf_t* b, uint32_t cp) {
  char u[4];
  return qd_tok_buf_append(b, u, qd_utf8_encode(cp, u));
}

void qd_tok_ids_init(qd_tok_ids_t* ids, qd_allocator_t a) {
  memset(ids, 0, sizeof *ids);
  ids->a = a;
}

void qd_tok_ids_free(qd_tok_ids_t* ids) {
  qd_free(ids->a, ids->v, ids->cap * sizeof(int32_t));
  ids->v = NULL;
  ids->n = ids->cap = 0;
}

qd_status_t qd_tok_ids_push(qd_tok_ids_t* ids, int32_t id) {
  if (ids->n == ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 32;
    void* p;
    QD_TRY(qd_realloc(ids->a, ids->v, ids->cap * sizeof(int32_t), cap * sizeof(int32_t), &p));
    ids->v = p;
    ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return QD_OK;
}

void qd_tok_spans_init(qd_tok_spans_t* s, qd_allocator_t a) {
  memset(s, 0, sizeof *s);
  s->a = a;
}

void qd_tok_spans_free(qd_tok_spans_t* s) {
  qd_free(s->a, s->v, s->cap * sizeof(qd_tok_span_t));
  s->v = NULL;
  s->n = s->cap = 0;
}

qd_status_t qd_tok_spans_push(qd_tok_spans_t* s, size_t off, size_t len, int32_t id) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    void* p;
    QD_TRY(qd_realloc(s->a, s->v, s->cap * sizeof(qd_tok_span_t), cap * sizeof(qd_tok_span_t), &p));
    s->v = p;
    s->cap = cap;
  }
  s->v[s->n++] = (qd_tok_span_t){off, len, id};
  return QD_OK;
}

/* --- lifecycle and vocabulary -------------------------------------------------------------------------- */

qd_status_t qd_tok_create(qd_allocator_t a, qd_tok_model_t model, qd_tokenizer_t** out) {
  void* p;
  QD_TRY(qd_calloc(a, 1, sizeof(qd_tokenizer_t), &p));
  qd_tokenizer_t* t = p;
  t->a = a;
  t->model = model;
  t->kind = model == QD_TOK_MODEL_BPE ? QD_TOKENIZER_CLIP : QD_TOKENIZER_T5;
  qd_tok_buf_init(&t->pool, a);
  qd_strmap_init(&t->token_map, a);
  t->bos_id = t->eos_id = t->pad_id = t->unk_id = QD_TOK_NONE;
  t->prefix_id = t->suffix_id = QD_TOK_NONE;
  t->model_max_length = model == QD_TOK_MODEL_BPE ? 77 : 512;
  *out = t;
  return QD_OK;
}

static void cache_clear_(qd_tokenizer_t* t) {
  if (!t->cache) return;
  for (size_t i = 0; i < QD_TOK_CACHE_SLOTS; i++) {
    qd_tok_cache_entry_t* e = &t->cache[i];
    qd_free(t->a, e->key, e->key_len + 1);
    qd_free(t->a, e->ids, e->count * sizeof(int32_t));
  }
  qd_free(t->a, t->cache, QD_TOK_CACHE_SLOTS * sizeof(qd_tok_cache_entry_t));
  t->cache = NULL;
}

void qd_tokenizer_destroy(qd_tokenizer_t* t) {
  if (!t) return;
  qd_allocator_t a = t->a;
  cache_clear_(t);
  qd_tok_buf_free(&t->pool);
  qd_free(a, t->tok_off, t->vocab_count * sizeof(uint32_t));
  qd_free(a, t->tok_len, t->vocab_count * sizeof(uint32_t));
  qd_strmap_deinit(&t->token_map);
  qd_free(a, t->merges, t->merges_cap * 2 * sizeof(uint32_t));
  qd_free(a, t->eow_suffix, t->eow_suffix_len + 1);
  qd_free(a, t->merge_map, t->merge_map_cap * sizeof(qd_tok_merge_slot_t));
  qd_free(a, t->scores, t->scores_count * sizeof(double));
  qd_free(a, t->charsmap, t->charsmap_size);
  qd_free(a, t->trie, t->trie_units * sizeof(uint32_t));
  qd_free(a, t->piece_map, t->piece_map_cap * sizeof(qd_tok_piece_slot_t));
  for (size_t i = 0; i < t->norm_count; i++) {
    qd_free(a, t->norm[i].pattern, t->norm[i].pattern_len + 1);
    qd_free(a, t->norm[i].content, t->norm[i].content_len + 1);
  }
  for (size_t i = 0; i < t->added_count; i++) qd_free(a, t->added[i].match, t->added[i].match_len + 1);
  qd_free(a, t->added, t->added_count * sizeof(qd_tok_added_t));
  qd_free(a, t, sizeof *t);
}

static qd_status_t check_token_(const char* s, size_t len, const char* what, size_t where) {
  if (len == 0) return QD_ERR(BAD_INPUT, TOK_TOKEN_EMPTY, "%s: token at %zu is the empty string", what, where);
  char shown[96];
  if (len > QD_TOK_MAX_TOKEN_BYTES)
    return QD_ERR(BAD_INPUT, TOK_TOKEN_TOO_LONG, "%s: token at %zu ('%s') has %zu bytes; at most %u are allowed",
                  what, where, qd_json_display(s, len, shown, sizeof shown), len, QD_TOK_MAX_TOKEN_BYTES);
  if (memchr(s, '\0', len))
    return QD_ERR(BAD_INPUT, TOK_TOKEN_NUL, "%s: token at %zu ('%s') contains a NUL character", what, where,
                  qd_json_display(s, len, shown, sizeof shown));
  size_t bad = qd_utf8_first_invalid(s, len);
  if (bad < len)
    return QD_ERR(BAD_INPUT, TOK_TOKEN_UTF8, "%s: token at %zu is not valid UTF-8 (byte %zu of it)", what, where, bad);
  return QD_OK;
}

static qd_status_t rebuild_map_(qd_tokenizer_t* t, const char* what) {
  qd_strmap_deinit(&t->token_map);
  qd_strmap_init(&t->token_map, t->a);
  for (size_t i = 0; i < t->vocab_count; i++) {
    int32_t existing;
    QD_TRY(qd_strmap_put(&t->token_map, t->pool.data + t->tok_off[i], (int32_t)i, &existing));
    if (existing >= 0) {
      char shown[96];
      return QD_ERR(BAD_INPUT, TOK_VOCAB_DUPLICATE_TOKEN, "%s: token '%s' has ids %d and %zu", what,
                    qd_json_display(t->pool.data + t->tok_off[i], t->tok_len[i], shown, sizeof shown), existing, i);
    }
  }
  return QD_OK;
}

/* Grows tok_off/tok_len to hold `count` tokens in total (all or nothing, so destroy always frees the right size). */
static qd_status_t grow_vocab_arrays_(qd_tokenizer_t* t, size_t count) {
  uint32_t *off, *len;
  QD_TRY(qd_malloc(t->a, count * sizeof(uint32_t), (void**)&off));
  qd_status_t s = qd_malloc(t->a, count * sizeof(uint32_t), (void**)&len);
  if (s) {
    qd_free(t->a, off, count * sizeof(uint32_t));
    return s;
  }
  if (t->vocab_count) {
    memcpy(off, t->tok_off, t->vocab_count * sizeof(uint32_t));
    memcpy(len, t->tok_len, t->vocab_count * sizeof(uint32_t));
  }
  qd_free(t->a, t->tok_off, t->vocab_count * sizeof(uint32_t));
  qd_free(t->a, t->tok_len, t->vocab_count * sizeof(uint32_t));
  t->tok_off = off;
  t->tok_len = len;
  return QD_OK;
}

static int entry_by_id_(const void* x, const void* y) {
  uint64_t a = ((const qd_tok_entry_t*)x)->id, b = ((const qd_tok_entry_t*)y)->id;
  return a < b ? -1 : a > b;
}

static qd_status_t append_entries_(qd_tokenizer_t* t, const qd_tok_entry_t* e, size_t n, const char* what) {
  if (n > QD_TOK_MAX_TOKENS - t->vocab_count)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu tokens; at most %u are allowed", what,
                  t->vocab_count + n, QD_TOK_MAX_TOKENS);
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    QD_TRY(check_token_(e[i].s, e[i].len, what, e[i].source_offset));
    bytes += e[i].len + 1; /* bounded: n <= 2^22 tokens of <= 1 KiB */
  }
  if (bytes > QD_TOK_MAX_POOL_BYTES - t->pool.len)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: the tokens take %zu bytes; at most %u are allowed", what,
                  t->pool.len + bytes, QD_TOK_MAX_POOL_BYTES);
  QD_TRY(qd_tok_buf_reserve(&t->pool, bytes));
  QD_TRY(grow_vocab_arrays_(t, t->vocab_count + n));
  for (size_t i = 0; i < n; i++) {
    t->tok_off[t->vocab_count + i] = (uint32_t)t->pool.len;
    t->tok_len[t->vocab_count + i] = (uint32_t)e[i].len;
    memcpy(t->pool.data + t->pool.len, e[i].s, e[i].len);
    t->pool.len += e[i].len;
    t->pool.data[t->pool.len++] = '\0';
  }
  t->vocab_count += n;
  return rebuild_map_(t, what);
}

qd_status_t qd_tok_set_vocab(qd_tokenizer_t* t, qd_tok_entry_t* entries, size_t n, const char* what) {
  if (n == 0) return QD_ERR(BAD_INPUT, TOK_VOCAB_EMPTY, "%s: the vocabulary is empty", what);
  if (n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "%s: %zu tokens; at most %u are allowed", what, n,
                  QD_TOK_MAX_TOKENS);
  char shown[96];
  for (size_t i = 0; i < n; i++)
    if (entries[i].id >= n)
      return QD_ERR(BAD_INPUT, TOK_VOCAB_ID, "%s: token '%s' has id %llu; ids must be below the vocabulary size %zu",
                    what, qd_json_display(entries[i].s, entries[i].len, shown, sizeof shown),
                    (unsigned long long)entries[i].id, n);
  qsort(entries, n, sizeof *entries, entry_by_id_);
  for (size_t i = 0; i < n; i++) {
    if (entries[i].id != i) /* all below n and sorted: missing an id means another one repeats */
      return QD_ERR(BAD_INPUT, TOK_VOCAB_DUPLICATE_ID, "%s: id %llu is given to two tokens ('%s' is one)", what,
                    (unsigned long long)entries[i].id,
                    qd_json_display(entries[i].s, entries[i].len, shown, sizeof shown));
  }
  return append_entries_(t, entries, n, what);
}

qd_status_t qd_tok_append_tokens(qd_tokenizer_t* t, const qd_tok_entry_t* entries, size_t n, const char* what) {
  if (n == 0) return QD_OK;
  return append_entries_(t, entries, n, what);
}

int32_t qd_tok_lookup(const qd_tokenizer_t* t, const char* s, size_t len) {
  if (len == 0 || memchr(s, '\0', len)) return QD_TOK_NONE;
  return qd_strmap_getn(&t->token_map, s, len);
}

qd_status_t qd_tok_add_norm(qd_tokenizer_t* t, uint32_t kind, uint32_t left, uint32_t right, const char* pattern,
                            size_t pattern_len, const char* content, size_t content_len) {
  if (t->norm_count == QD_TOK_MAX_OPS)
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "more than %u normalizers", QD_TOK_MAX_OPS);
  if (pattern_len > QD_TOK_MAX_TOKEN_BYTES || content_len > QD_TOK_MAX_TOKEN_BYTES)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "a Replace normalizer's pattern or content is over %u bytes",
                  QD_TOK_MAX_TOKEN_BYTES);
  qd_tok_norm_t n = {.kind = kind, .left = left, .right = right};
  if (pattern) QD_TRY(qd_strndup(t->a, pattern, pattern_len, &n.pattern));
  n.pattern_len = (uint32_t)pattern_len;
  if (content) {
    qd_status_t s = qd_strndup(t->a, content, content_len, &n.content);
    if (s) {
      qd_free(t->a, n.pattern, pattern_len + 1);
      return s;
    }
  }
  n.content_len = (uint32_t)content_len;
  t->norm[t->norm_count++] = n;
  return QD_OK;
}

qd_status_t qd_tok_add_pre(qd_tokenizer_t* t, uint32_t kind, uint32_t replacement, uint32_t prepend, uint32_t flag) {
  if (t->pre_count == QD_TOK_MAX_OPS)
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "more than %u pre-tokenizers", QD_TOK_MAX_OPS);
  t->pre[t->pre_count++] = (qd_tok_pre_t){kind, replacement, prepend, flag};
  return QD_OK;
}

qd_status_t qd_tok_add_added(qd_tokenizer_t* t, int32_t id, bool normalized, bool special) {
  for (size_t i = 0; i < t->added_count; i++) {
    if (t->added[i].id == id) {
      t->added[i].normalized = normalized;
      t->added[i].special = special;
      return QD_OK;
    }
  }
  if (t->added_count >= QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_VOCAB_TOO_LARGE, "more than %u added tokens", QD_TOK_MAX_TOKENS);
  void* p;
  QD_TRY(qd_realloc(t->a, t->added, t->added_count * sizeof(qd_tok_added_t),
                    (t->added_count + 1) * sizeof(qd_tok_added_t), &p));
  t->added = p;
  t->added[t->added_count++] = (qd_tok_added_t){.id = id, .normalized = normalized, .special = special};
  return QD_OK;
}

/* --- finalize: every rule that files and blobs share -------------------------------------------------------- */

static qd_status_t check_special_(const qd_tokenizer_t* t, int32_t id, const char* name, const char* what) {
  if (id != QD_TOK_NONE && (id < 0 || (size_t)id >= t->vocab_count))
    return QD_ERR(BAD_INPUT, TOK_SPECIAL_TOKEN, "%s: the %s token id %d is outside the vocabulary of %zu", what, name,
                  id, t->vocab_count);
  return QD_OK;
}

qd_status_t qd_tok_finalize(qd_tokenizer_t* t, const char* what) {
  if (t->vocab_count == 0) return QD_ERR(BAD_INPUT, TOK_VOCAB_EMPTY, "%s: the vocabulary is empty", what);
  for (size_t i = 0; i < t->norm_count; i++) {
    const qd_tok_norm_t* n = &t->norm[i];
    if (n->kind == 0 || n->kind >= QD_TOK_NORM_KIND_END_)
      return QD_ERR(BAD_INPUT, TOK_UNSUPPORTED_COMPONENT, "%s: normalizer kind %u is unknown", what, n->kind);
    bool replace = n->kind == QD_TOK_NORM_REPLACE_WS_RUNS || n->kind == QD_TOK_NORM_REPLACE_SPACE_RUNS ||
                   n->kind == QD_TOK_NORM_REPLACE_STRING;
    if (replace && !n->content)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Replace normalizer has no content", what);
    if (n->kind == QD_TOK_NORM_REPLACE_STRING && (!n->pattern || n->pattern_len == 0))
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Replace normalizer has an empty pattern", what);
    if ((n->content && qd_utf8_first_invalid(n->content, n->content_len) < n->content_len) ||
        (n->pattern && qd_utf8_first_invalid(n->pattern, n->pattern_len) < n->pattern_len))
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Replace normalizer's text is not valid UTF-8", what);
    if (n->kind == QD_TOK_NORM_PRECOMPILED && !t->charsmap)
      return QD_ERR(BAD_INPUT, TOK_CHARSMAP, "%s: a Precompiled normalizer has no charsmap", what);
  }
  for (size_t i = 0; i < t->pre_count; i++) {
    const qd_tok_pre_t* p = &t->pre[i];
    if (p->kind == 0 || p->kind >= QD_TOK_PRE_KIND_END_)
      return QD_ERR(BAD_INPUT, TOK_UNSUPPORTED_COMPONENT, "%s: pre-tokenizer kind %u is unknown", what, p->kind);
    if (p->kind == QD_TOK_PRE_METASPACE &&
        (p->replacement == 0 || p->replacement > 0x10FFFF || (p->replacement >= 0xD800 && p->replacement < 0xE000) ||
         p->prepend > 1))
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Metaspace pre-tokenizer has replacement U+%04X, prepend %u",
                    what, p->replacement, p->prepend);
  }
  if (t->model == QD_TOK_MODEL_BPE) {
    QD_TRY(qd_tok_bpe_finalize(t, what));
  } else {
    QD_TRY(qd_tok_unigram_finalize(t, what));
  }
  QD_TRY(check_special_(t, t->bos_id, "bos", what));
  QD_TRY(check_special_(t, t->eos_id, "eos", what));
  QD_TRY(check_special_(t, t->pad_id, "pad", what));
  QD_TRY(check_special_(t, t->unk_id, "unk", what));
  QD_TRY(check_special_(t, t->prefix_id, "post-processor prefix", what));
  QD_TRY(check_special_(t, t->suffix_id, "post-processor suffix", what));
  /* Added tokens: normalized ones match their normalized text, as tokenizers' AddedVocabulary does. */
  qd_tok_buf_t nb;
  qd_tok_buf_init(&nb, t->a);
  for (size_t i = 0; i < t->added_count; i++) {
    qd_tok_added_t* ad = &t->added[i];
    if (ad->id < 0 || (size_t)ad->id >= t->vocab_count) {
      qd_tok_buf_free(&nb);
      return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN_ID, "%s: added token id %d is outside the vocabulary of %zu", what,
                    ad->id, t->vocab_count);
    }
    for (size_t j = 0; j < i; j++) {
      if (t->added[j].id == ad->id) {
        qd_tok_buf_free(&nb);
        return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN_ID, "%s: added token id %d is listed twice", what, ad->id);
      }
    }
    const char* content = t->pool.data + t->tok_off[ad->id];
    size_t clen = t->tok_len[ad->id];
    if (ad->normalized && t->norm_count) {
      qd_status_t s = qd_tok_normalize(t, content, clen, &nb);
      if (!s) s = qd_strndup(t->a, nb.data ? nb.data : "", nb.len, &ad->match);
      if (s) {
        qd_tok_buf_free(&nb);
        return s;
      }
      ad->match_len = nb.len;
    } else {
      qd_status_t s = qd_strndup(t->a, content, clen, &ad->match);
      if (s) {
        qd_tok_buf_free(&nb);
        return s;
      }
      ad->match_len = clen;
    }
    if (ad->match_len) t->added_first[(unsigned char)ad->match[0]] |= ad->normalized ? 2 : 1;
  }
  qd_tok_buf_free(&nb);
  return QD_OK;
}

/* --- normalizers ----------------------------------------------------------------------------------------- */

/* Decodes valid UTF-8 (the pipeline only ever holds valid UTF-8). */
static uint32_t next_cp_(const char* s, size_t len, size_t* i) {
  uint32_t cp;
  size_t k = qd_utf8_decode((const unsigned char*)s + *i, len - *i, &cp);
  if (k == 0) { /* unreachable for validated text; make progress regardless */
    *i += 1;
    return QD_UNICODE_REPLACEMENT;
  }
  *i += k;
  return cp;
}

static qd_status_t norm_nfc_(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out) {
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    next_cp_(s, len, &i);
    n++;
  }
  if (n == 0) return QD_OK;
  uint32_t *in, *res;
  QD_TRY(qd_malloc(t->a, n * sizeof(uint32_t), (void**)&in));
  qd_status_t st = qd_malloc(t->a, n * QD_UNICODE_MAX_DECOMPOSITION * sizeof(uint32_t), (void**)&res);
  if (st) {
    qd_free(t->a, in, n * sizeof(uint32_t));
    return st;
  }
  size_t k = 0;
  for (size_t i = 0; i < len;) in[k++] = next_cp_(s, len, &i);
  size_t m = qd_unicode_nfc(in, n, res);
  for (size_t i = 0; i < m && !st; i++) st = qd_tok_buf_append_cp(out, res[i]);
  qd_free(t->a, in, n * sizeof(uint32_t));
  qd_free(t->a, res, n * QD_UNICODE_MAX_DECOMPOSITION * sizeof(uint32_t));
  return st;
}

static qd_status_t norm_lower_(const char* s, size_t len, qd_tok_buf_t* out) {
  for (size_t i = 0; i < len;) {
    uint32_t low[3];
    size_t k = qd_unicode_to_lower(next_cp_(s, len, &i), low);
    for (size_t j = 0; j < k; j++) QD_TRY(qd_tok_buf_append_cp(out, low[j]));
  }
  return QD_OK;
}

/* Replaces each run of characters selected by `in_run` (of at least min_run characters) with content. */
static qd_status_t norm_replace_runs_(const qd_tok_norm_t* n, const char* s, size_t len, bool white_space,
                                      size_t min_run, qd_tok_buf_t* out) {
  size_t i = 0;
  while (i < len) {
    size_t start = i, count = 0, end = i;
    for (;;) {
      size_t j = end;
      if (j >= len) break;
      uint32_t cp = next_cp_(s, len, &j);
      if (!(white_space ? qd_unicode_is_white_space(cp) : cp == ' ')) break;
      end = j;
      count++;
    }
    if (count >= min_run) {
      QD_TRY(qd_tok_buf_append(out, n->content, n->content_len));
      i = end;
    } else if (count > 0) {
      QD_TRY(qd_tok_buf_append(out, s + start, end - start));
      i = end;
    } else {
      size_t j = i;
      next_cp_(s, len, &j);
      QD_TRY(qd_tok_buf_append(out, s + i, j - i));
      i = j;
    }
  }
  return QD_OK;
}

static qd_status_t norm_replace_string_(const qd_tok_norm_t* n, const char* s, size_t len, qd_tok_buf_t* out) {
  size_t i = 0;
  while (i < len) {
    if (len - i >= n->pattern_len && memcmp(s + i, n->pattern, n->pattern_len) == 0) {
      QD_TRY(qd_tok_buf_append(out, n->content, n->content_len));
      i += n->pattern_len;
    } else {
      QD_TRY(qd_tok_buf_append(out, s + i, 1));
      i++;
    }
  }
  return QD_OK;
}

static qd_status_t norm_strip_(const qd_tok_norm_t* n, const char* s, size_t len, qd_tok_buf_t* out) {
  size_t b = 0, e = len;
  if (n->left) {
    while (b < e) {
      size_t j = b;
      if (!qd_unicode_is_white_space(next_cp_(s, e, &j))) break;
      b = j;
    }
  }
  if (n->right) {
    while (e > b) {
      size_t j = e - 1;
      while (j > b && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
      size_t k = j;
      if (!qd_unicode_is_white_space(next_cp_(s, e, &k))) break;
      e = j;
    }
  }
  return qd_tok_buf_append(out, s + b, e - b);
}

qd_status_t qd_tok_normalize(const qd_tokenizer_t* t, const char* text, size_t len, qd_tok_buf_t* out) {
  out->len = 0;
  if (t->norm_count == 0) return qd_tok_buf_append(out, text, len);
  qd_tok_buf_t tmp;
  qd_tok_buf_init(&tmp, out->a); /* the two buffers trade places, so they share an allocator */
  qd_status_t s = qd_tok_buf_append(&tmp, text, len);
  for (size_t i = 0; i < t->norm_count && !s; i++) {
    const qd_tok_norm_t* n = &t->norm[i];
    out->len = 0;
    s = qd_tok_buf_reserve(out, tmp.len);
    if (s) break;
    switch ((qd_tok_norm_kind_t)n->kind) {
      case QD_TOK_NORM_NFC: s = norm_nfc_(t, tmp.data, tmp.len, out); break;
      case QD_TOK_NORM_LOWERCASE: s = norm_lower_(tmp.data, tmp.len, out); break;
      case QD_TOK_NORM_REPLACE_WS_RUNS: s = norm_replace_runs_(n, tmp.data, tmp.len, true, 1, out); break;
      case QD_TOK_NORM_REPLACE_SPACE_RUNS: s = norm_replace_runs_(n, tmp.data, tmp.len, false, 2, out); break;
      case QD_TOK_NORM_REPLACE_STRING: s = norm_replace_string_(n, tmp.data, tmp.len, out); break;
      case QD_TOK_NORM_STRIP: s = norm_strip_(n, tmp.data, tmp.len, out); break;
      case QD_TOK_NORM_PRECOMPILED: s = qd_tok_precompiled_normalize(t, tmp.data, tmp.len, out); break;
      default: s = QD_ERR(INTERNAL, INTERNAL, "normalizer kind %u", n->kind); break;
    }
    if (s) break;
    qd_tok_buf_t swap = tmp;
    tmp = *out;
    *out = swap;
  }
  if (!s) {
    /* the last result is in tmp */
    qd_tok_buf_t swap = tmp;
    tmp = *out;
    *out = swap;
    s = qd_tok_buf_reserve(out, 0);
  }
  qd_tok_buf_free(&tmp);
  return s;
}

/* --- encoding ------------------------------------------------------------------------------------------- */

/* Splits s[0..len) at the added tokens of one kind (raw or normalized), leftmost-longest like tokenizers'
 * Aho-Corasick matcher; appends spans (offsets relative to s) with id >= 0 for tokens. */
static qd_status_t split_added_(const qd_tokenizer_t* t, const char* s, size_t len, bool normalized,
                                qd_tok_spans_t* out) {
  size_t start = 0, i = 0;
  uint8_t bit = normalized ? 2 : 1;
  while (i < len) {
    if (!(t->added_first[(unsigned char)s[i]] & bit)) { /* most bytes start no added token */
      i++;
      continue;
    }
    const qd_tok_added_t* best = NULL;
    for (size_t k = 0; k < t->added_count; k++) {
      const qd_tok_added_t* ad = &t->added[k];
      if ((bool)ad->normalized != normalized || ad->match_len == 0 || ad->match_len > len - i) continue;
      if (ad->match[0] != s[i] || memcmp(ad->match, s + i, ad->match_len) != 0) continue;
      if (!best || ad->match_len > best->match_len) best = ad;
    }
    if (!best) {
      i++;
      continue;
    }
    if (i > start) QD_TRY(qd_tok_spans_push(out, start, i - start, QD_TOK_NONE));
    QD_TRY(qd_tok_spans_push(out, i, best->match_len, best->id));
    i += best->match_len;
    start = i;
  }
  if (len > start) QD_TRY(qd_tok_spans_push(out, start, len - start, QD_TOK_NONE));
  return QD_OK;
}

static uint32_t cache_hash_(const char* s, size_t len) { return qd_hash_bytes(s, len) & (QD_TOK_CACHE_SLOTS - 1); }

/* Runs the model on one pre-token, through the cache. */
static qd_status_t model_piece_(qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out) {
  qd_tok_cache_entry_t* e = NULL;
  if (len <= QD_TOK_CACHE_MAX_KEY) {
    if (!t->cache) QD_TRY(qd_calloc(t->a, QD_TOK_CACHE_SLOTS, sizeof(qd_tok_cache_entry_t), (void**)&t->cache));
    e = &t->cache[cache_hash_(s, len)];
    if (e->key && e->key_len == len && memcmp(e->key, s, len) == 0) {
      for (size_t i = 0; i < e->count; i++) QD_TRY(qd_tok_ids_push(out, e->ids[i]));
      return QD_OK;
    }
  }
  size_t first = out->n;
  if (t->model == QD_TOK_MODEL_BPE) {
    QD_TRY(qd_tok_bpe_word(t, s, len, out));
  } else {
    QD_TRY(qd_tok_unigram_piece(t, s, len, out));
  }
  if (!e) return QD_OK;
  size_t count = out->n - first;
  char* key;
  int32_t* ids = NULL;
  QD_TRY(qd_strndup(t->a, s, len, &key));
  if (count) {
    qd_status_t st = qd_malloc(t->a, count * sizeof(int32_t), (void**)&ids);
    if (st) {
      qd_free(t->a, key, len + 1);
      return st;
    }
    memcpy(ids, out->v + first, count * sizeof(int32_t));
  }
  qd_free(t->a, e->key, e->key_len + 1);
  qd_free(t->a, e->ids, e->count * sizeof(int32_t));
  *e = (qd_tok_cache_entry_t){key, len, ids, count};
  return QD_OK;
}

static qd_status_t pre_op_(const qd_tokenizer_t* t, const qd_tok_pre_t* op, const char* in, const qd_tok_span_t* sp,
                           qd_tok_buf_t* out_buf, qd_tok_spans_t* out) {
  switch ((qd_tok_pre_kind_t)op->kind) {
    case QD_TOK_PRE_CLIP_SPLIT: return qd_tok_pre_clip_split(op, in + sp->off, sp->len, out_buf, out);
    case QD_TOK_PRE_BYTE_LEVEL: return qd_tok_pre_byte_level(op, in + sp->off, sp->len, out_buf, out);
    case QD_TOK_PRE_WHITESPACE_SPLIT: return qd_tok_pre_whitespace_split(in + sp->off, sp->len, out_buf, out);
    case QD_TOK_PRE_METASPACE: return qd_tok_pre_metaspace(op, in + sp->off, sp->len, out_buf, out);
    default: break;
  }
  (void)t;
  return QD_ERR(INTERNAL, INTERNAL, "pre-tokenizer kind %u", op->kind);
}

/* Pre-tokenizes one text segment and runs the model on each piece. */
static qd_status_t encode_segment_(qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out) {
  qd_tok_buf_t buf[2];
  qd_tok_spans_t sp[2];
  for (int k = 0; k < 2; k++) {
    qd_tok_buf_init(&buf[k], t->a);
    qd_tok_spans_init(&sp[k], t->a);
  }
  qd_status_t st = qd_tok_buf_append(&buf[0], s, len);
  if (!st) st = qd_tok_spans_push(&sp[0], 0, len, QD_TOK_NONE);
  int cur = 0;
  for (size_t i = 0; i < t->pre_count && !st; i++) {
    int nxt = 1 - cur;
    buf[nxt].len = 0;
    sp[nxt].n = 0;
    for (size_t j = 0; j < sp[cur].n && !st; j++)
      st = pre_op_(t, &t->pre[i], buf[cur].data, &sp[cur].v[j], &buf[nxt], &sp[nxt]);
    cur = nxt;
  }
  for (size_t j = 0; j < sp[cur].n && !st; j++) {
    if (sp[cur].v[j].len == 0) continue;
    st = model_piece_(t, buf[cur].data + sp[cur].v[j].off, sp[cur].v[j].len, out);
  }
  for (int k = 0; k < 2; k++) {
    qd_tok_buf_free(&buf[k]);
    qd_tok_spans_free(&sp[k]);
  }
  return st;
}

/* Makes the prompt valid UTF-8 (or rejects it), then runs added tokens, normalizer, pre-tokenizer and model. */
static qd_status_t tokenize_(qd_tokenizer_t* t, const char* text, size_t len, qd_tokenizer_utf8_t utf8,
                             qd_tok_ids_t* out) {
  if (!t || (!text && len))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer encode: NULL tokenizer or text");
  if (len > QD_TOKENIZER_MAX_PROMPT_BYTES)
    return QD_ERR(BAD_INPUT, TOK_PROMPT_TOO_LONG, "prompt of %zu bytes; at most %u are accepted", len,
                  QD_TOKENIZER_MAX_PROMPT_BYTES);
  qd_tok_buf_t clean, norm;
  qd_tok_spans_t raw, sub;
  qd_tok_buf_init(&clean, t->a);
  qd_tok_buf_init(&norm, t->a);
  qd_tok_spans_init(&raw, t->a);
  qd_tok_spans_init(&sub, t->a);
  qd_status_t st = QD_OK;
  size_t bad = qd_utf8_first_invalid(text, len);
  if (bad < len && utf8 == QD_TOKENIZER_UTF8_REJECT) {
    st = QD_ERR(BAD_INPUT, TOK_PROMPT_UTF8, "prompt: invalid UTF-8 at byte offset %zu (byte 0x%02X)", bad,
                (unsigned)(unsigned char)text[bad]);
    goto done;
  }
  if (bad < len) {
    /* Python's errors="replace": each maximal ill-formed subpart becomes one U+FFFD. */
    QD_CHECK_GOTO(st, qd_tok_buf_reserve(&clean, len + 16), done);
    for (size_t i = 0; i < len;) {
      uint32_t cp;
      size_t k = qd_utf8_decode((const unsigned char*)text + i, len - i, &cp);
      if (k == 0) {
        QD_CHECK_GOTO(st, qd_tok_buf_append_cp(&clean, QD_UNICODE_REPLACEMENT), done);
        i += cp;
      } else {
        QD_CHECK_GOTO(st, qd_tok_buf_append(&clean, text + i, k), done);
        i += k;
      }
    }
    text = clean.data;
    len = clean.len;
  }
  QD_CHECK_GOTO(st, split_added_(t, text, len, false, &raw), done);
  for (size_t i = 0; i < raw.n; i++) {
    if (raw.v[i].id >= 0) {
      QD_CHECK_GOTO(st, qd_tok_ids_push(out, raw.v[i].id), done);
      continue;
    }
    QD_CHECK_GOTO(st, qd_tok_normalize(t, text + raw.v[i].off, raw.v[i].len, &norm), done);
    sub.n = 0;
    QD_CHECK_GOTO(st, split_added_(t, norm.data ? norm.data : "", norm.len, true, &sub), done);
    for (size_t j = 0; j < sub.n; j++) {
      if (sub.v[j].id >= 0) {
        QD_CHECK_GOTO(st, qd_tok_ids_push(out, sub.v[j].id), done);
      } else if (sub.v[j].len) {
        QD_CHECK_GOTO(st, encode_segment_(t, norm.data + sub.v[j].off, sub.v[j].len, out), done);
      }
    }
  }
done:
  qd_tok_buf_free(&clean);
  qd_tok_buf_free(&norm);
  qd_tok_spans_free(&raw);
  qd_tok_spans_free(&sub);
  return st;
}

qd_status_t qd_tokenizer_tokenize(qd_tokenizer_t* t, const char* text, size_t len, qd_tokenizer_utf8_t utf8,
                                  qd_allocator_t allocator, int32_t** out_ids, size_t* out_count) {
  if (out_ids) *out_ids = NULL;
  if (!out_ids || !out_count)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer tokenize: NULL output pointer");
  qd_tok_ids_t ids;
  qd_tok_ids_init(&ids, t ? t->a : allocator);
  qd_status_t st = tokenize_(t, text, len, utf8, &ids);
  int32_t* res = NULL;
  if (!st && ids.n) {
    st = qd_malloc(allocator, ids.n * sizeof(int32_t), (void**)&res);
    if (!st) memcpy(res, ids.v, ids.n * sizeof(int32_t));
  }
  size_t n = ids.n;
  qd_tok_ids_free(&ids);
  if (st) return st;
  *out_ids = res;
  *out_count = n;
  return QD_OK;
}

qd_status_t qd_tokenizer_encode(qd_tokenizer_t* t, const char* text, size_t len, size_t max_length,
                                qd_tokenizer_utf8_t utf8, int32_t* out_ids, size_t* out_used) {
  if (!t || !out_ids) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer encode: NULL argument");
  size_t specials = (t->prefix_id >= 0) + (t->suffix_id >= 0);
  if (max_length < specials || max_length > QD_TOKENIZER_MAX_LENGTH)
    return QD_ERR(INVALID_ARGUMENT, TOK_MAX_LENGTH, "max_length %zu: must be between %zu and %u", max_length,
                  specials, QD_TOKENIZER_MAX_LENGTH);
  qd_tok_ids_t ids;
  qd_tok_ids_init(&ids, t->a);
  qd_status_t st = tokenize_(t, text, len, utf8, &ids);
  size_t keep = ids.n < max_length - specials ? ids.n : max_length - specials;
  if (!st && specials + keep < max_length && t->pad_id < 0)
    st = QD_ERR(INVALID_ARGUMENT, TOK_MAX_LENGTH, "max_length %zu needs padding, and the tokenizer has no pad token",
                max_length);
  if (st) {
    qd_tok_ids_free(&ids);
    return st;
  }
  size_t w = 0;
  if (t->prefix_id >= 0) out_ids[w++] = t->prefix_id;
  if (keep) memcpy(out_ids + w, ids.v, keep * sizeof(int32_t));
  w += keep;
  if (t->suffix_id >= 0) out_ids[w++] = t->suffix_id;
  qd_tok_ids_free(&ids);
  if (out_used) *out_used = w;
  for (; w < max_length; w++) out_ids[w] = t->pad_id;
  return QD_OK;
}

/* --- decoding and accessors ------------------------------------------------------------------------------ */

static bool is_special_(const qd_tokenizer_t* t, int32_t id) {
  if (id == t->bos_id || id == t->eos_id || id == t->pad_id) return true;
  for (size_t i = 0; i < t->added_count; i++)
    if (t->added[i].id == id) return t->added[i].special;
  return false;
}

qd_status_t qd_tokenizer_decode(const qd_tokenizer_t* t, const int32_t* ids, size_t count, bool skip_special,
                                qd_allocator_t allocator, char** out_text, size_t* out_len) {
  if (out_text) *out_text = NULL;
  if (!t || (!ids && count) || !out_text || !out_len)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer decode: NULL argument");
  qd_tok_buf_t joined, res;
  qd_tok_buf_init(&joined, t->a);
  qd_tok_buf_init(&res, allocator);
  qd_status_t st = qd_tok_buf_reserve(&joined, 0);
  for (size_t i = 0; i < count && !st; i++) {
    if (ids[i] < 0 || (size_t)ids[i] >= t->vocab_count) {
      st = QD_ERR(INVALID_ARGUMENT, TOK_ID_RANGE, "decode: id %d at %zu is outside the vocabulary of %zu", ids[i], i,
                  t->vocab_count);
      break;
    }
    if (skip_special && is_special_(t, ids[i])) continue;
    st = qd_tok_buf_append(&joined, t->pool.data + t->tok_off[ids[i]], t->tok_len[ids[i]]);
  }
  if (!st) st = qd_tok_buf_reserve(&res, joined.len);
  if (!st) {
    if (t->model == QD_TOK_MODEL_BPE) {
      st = qd_tok_bpe_decode(t, joined.data, joined.len, &res);
    } else {
      st = qd_tok_unigram_decode(t, joined.data, joined.len, &res);
    }
  }
  qd_tok_buf_free(&joined);
  if (st) {
    qd_tok_buf_free(&res);
    return st;
  }
  /* hand over exactly len + 1 bytes, as the contract says */
  char* text;
  st = qd_strndup(allocator, res.data, res.len, &text);
  size_t n = res.len;
  qd_tok_buf_free(&res);
  if (st) return st;
  *out_text = text;
  *out_len = n;
  return QD_OK;
}

qd_tokenizer_kind_t qd_tokenizer_kind(const qd_tokenizer_t* t) { return t ? t->kind : QD_TOKENIZER_AUTO; }
size_t qd_tokenizer_vocab_size(const qd_tokenizer_t* t) { return t ? t->vocab_count : 0; }

const char* qd_tokenizer_id_to_token(const qd_tokenizer_t* t, int32_t id) {
  if (!t || id < 0 || (size_t)id >= t->vocab_count) return NULL;
  return t->pool.data + t->tok_off[id];
}

int32_t qd_tokenizer_token_to_id(const qd_tokenizer_t* t, const char* token) {
  if (!t || !token) return QD_TOK_NONE;
  return qd_tok_lookup(t, token, strlen(token));
}

int32_t qd_tokenizer_bos_id(const qd_tokenizer_t* t) { return t ? t->bos_id : QD_TOK_NONE; }
int32_t qd_tokenizer_eos_id(const qd_tokenizer_t* t) { return t ? t->eos_id : QD_TOK_NONE; }
int32_t qd_tokenizer_pad_id(const qd_tokenizer_t* t) { return t ? t->pad_id : QD_TOK_NONE; }
int32_t qd_tokenizer_unk_id(const qd_tokenizer_t* t) { return t ? t->unk_id : QD_TOK_NONE; }
size_t qd_tokenizer_model_max_length(const qd_tokenizer_t* t) { return t ? t->model_max_length : 0; }
