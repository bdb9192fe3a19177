/* The tokenizer blob: everything a tokenizer needs, in one byte string that a plan file can carry.
 *
 * Layout (little-endian; docs/tokenizers.md has the field list):
 *   0   "QDTOKBLB"   magic
 *   8   u32          version (1)
 *   12  u32          model (1 BPE, 2 Unigram)
 *   16  u64          total size in bytes (must equal the size given to load)
 *   24  u64          FNV-1a 64 of bytes [32, size)
 *   32  payload: vocabulary, special ids, pipeline ops, added tokens, then the model's own data.
 * Loading checks the header, then reads every count and length against the bytes that remain before allocating
 * anything for it, then rebuilds the tokenizer through qd_tok_finalize, the same validation as files get. The
 * checksum catches accidental damage; the checks catch everything else.
 */
#include <math.h>
#include <string.h>

#include "runtime/tokenizer_internal.h"
#include "runtime/tokenizer_t5.h"

#define BLOB_MAGIC "QDTOKBLB"
#define BLOB_VERSION 1u
#define BLOB_HEADER 32u

static uint64_t fnv1a64_(const unsigned char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* --- writing ------------------------------------------------------------------------------------------------- */

static qd_status_t w_bytes_(qd_tok_buf_t* b, const void* p, size_t n) { return qd_tok_buf_append(b, p, n); }

static qd_status_t w_u32_(qd_tok_buf_t* b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  return w_bytes_(b, x, 4);
}

static qd_status_t w_u64_(qd_tok_buf_t* b, uint64_t v) {
  QD_TRY(w_u32_(b, (uint32_t)v));
  return w_u32_(b, (uint32_t)(v >> 32));
}

static qd_status_t w_str_(qd_tok_buf_t* b, const char* s, size_t n) {
  QD_TRY(w_u32_(b, s != NULL));
  QD_TRY(w_u64_(b, s ? n : 0));
  return s ? w_bytes_(b, s, n) : QD_OK;
}

static qd_status_t write_payload_(const qd_tokenizer_t* t, qd_tok_buf_t* b) {
  QD_TRY(w_u32_(b, (uint32_t)t->kind));
  QD_TRY(w_u32_(b, (uint32_t)t->vocab_count));
  uint64_t pool = 0;
  for (size_t i = 0; i < t->vocab_count; i++) {
    QD_TRY(w_u32_(b, t->tok_len[i]));
    pool += t->tok_len[i];
  }
  QD_TRY(w_u64_(b, pool));
  for (size_t i = 0; i < t->vocab_count; i++) QD_TRY(w_bytes_(b, t->pool.data + t->tok_off[i], t->tok_len[i]));
  const int32_t ids[6] = {t->bos_id, t->eos_id, t->pad_id, t->unk_id, t->prefix_id, t->suffix_id};
  for (int i = 0; i < 6; i++) QD_TRY(w_u32_(b, (uint32_t)ids[i]));
  QD_TRY(w_u32_(b, t->model_max_length));
  QD_TRY(w_u32_(b, (uint32_t)t->norm_count));
  for (size_t i = 0; i < t->norm_count; i++) {
    const qd_tok_norm_t* n = &t->norm[i];
    QD_TRY(w_u32_(b, n->kind));
    QD_TRY(w_u32_(b, n->left));
    QD_TRY(w_u32_(b, n->right));
    QD_TRY(w_str_(b, n->pattern, n->pattern_len));
    QD_TRY(w_str_(b, n->content, n->content_len));
  }
  QD_TRY(w_u32_(b, (uint32_t)t->pre_count));
  for (size_t i = 0; i < t->pre_count; i++) {
    QD_TRY(w_u32_(b, t->pre[i].kind));
    QD_TRY(w_u32_(b, t->pre[i].replacement));
    QD_TRY(w_u32_(b, t->pre[i].prepend));
    QD_TRY(w_u32_(b, t->pre[i].flag));
  }
  QD_TRY(w_u32_(b, (uint32_t)t->added_count));
  for (size_t i = 0; i < t->added_count; i++) {
    QD_TRY(w_u32_(b, (uint32_t)t->added[i].id));
    QD_TRY(w_u32_(b, (uint32_t)(t->added[i].normalized | (t->added[i].special << 1))));
  }
  if (t->model == QD_TOK_MODEL_BPE) {
    QD_TRY(w_u32_(b, (uint32_t)t->merge_count));
    for (size_t i = 0; i < 2 * t->merge_count; i++) QD_TRY(w_u32_(b, t->merges[i]));
    QD_TRY(w_str_(b, t->eow_suffix, t->eow_suffix_len));
    QD_TRY(w_u32_(b, (uint32_t)(t->fuse_unk | (t->byte_fallback << 1))));
  } else {
    for (size_t i = 0; i < t->vocab_count; i++) {
      uint64_t bits;
      memcpy(&bits, &t->scores[i], sizeof bits);
      QD_TRY(w_u64_(b, bits));
    }
    QD_TRY(w_u32_(b, (uint32_t)t->byte_fallback));
    QD_TRY(w_str_(b, (const char*)t->charsmap, t->charsmap_size));
  }
  return QD_OK;
}

qd_status_t qd_tokenizer_save_blob(const qd_tokenizer_t* t, qd_allocator_t allocator, void** out_data,
                                   size_t* out_size) {
  if (out_data) *out_data = NULL;
  if (!t || !out_data || !out_size) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "save_blob: NULL argument");
  qd_tok_buf_t b;
  qd_tok_buf_init(&b, t->a);
  qd_status_t s = w_bytes_(&b, BLOB_MAGIC, 8);
  if (!s) s = w_u32_(&b, BLOB_VERSION);
  if (!s) s = w_u32_(&b, (uint32_t)t->model);
  if (!s) s = w_u64_(&b, 0);
  if (!s) s = w_u64_(&b, 0);
  if (!s) s = write_payload_(t, &b);
  void* out = NULL;
  if (!s) s = qd_malloc(allocator, b.len, &out);
  if (!s) {
    uint64_t size = b.len, sum = fnv1a64_((const unsigned char*)b.data + BLOB_HEADER, b.len - BLOB_HEADER);
    for (int i = 0; i < 8; i++) {
      b.data[16 + i] = (char)(size >> (8 * i));
      b.data[24 + i] = (char)(sum >> (8 * i));
    }
    memcpy(out, b.data, b.len);
    *out_data = out;
    *out_size = b.len;
  }
  qd_tok_buf_free(&b);
  return s;
}

/* --- reading ------------------------------------------------------------------------------------------------- */

typedef struct rd_ {
  const unsigned char* p;
  size_t size, pos;
} rd_t;

static qd_status_t need_(const rd_t* r, uint64_t n, const char* field) {
  if (n > r->size - r->pos)
    return QD_ERR(BAD_INPUT, TOK_BLOB_TRUNCATED, "tokenizer blob: %s needs %llu bytes at offset %zu; %zu remain", field,
                  (unsigned long long)n, r->pos, r->size - r->pos);
  return QD_OK;
}

static qd_status_t r_u32_(rd_t* r, const char* field, uint32_t* out) {
  QD_TRY(need_(r, 4, field));
  const unsigned char* p = r->p + r->pos;
  *out = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  r->pos += 4;
  return QD_OK;
}

static qd_status_t r_u64_(rd_t* r, const char* field, uint64_t* out) {
  uint32_t lo, hi;
  QD_TRY(r_u32_(r, field, &lo));
  QD_TRY(r_u32_(r, field, &hi));
  *out = (uint64_t)hi << 32 | lo;
  return QD_OK;
}

/* An optional string: u32 present, u64 length, bytes. *out points into the blob. */
static qd_status_t r_str_(rd_t* r, const char* field, const char** out, size_t* out_len) {
  uint32_t present;
  uint64_t n;
  QD_TRY(r_u32_(r, field, &present));
  QD_TRY(r_u64_(r, field, &n));
  if (present > 1 || (!present && n))
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: %s has presence flag %u and length %llu", field, present,
                  (unsigned long long)n);
  QD_TRY(need_(r, n, field));
  *out = present ? (const char*)r->p + r->pos : NULL;
  *out_len = (size_t)n;
  r->pos += (size_t)n;
  return QD_OK;
}

static qd_status_t r_id_(rd_t* r, const char* field, int32_t* out) {
  uint32_t v;
  QD_TRY(r_u32_(r, field, &v));
  if (v != UINT32_MAX && v > INT32_MAX)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: %s is %u", field, v);
  *out = v == UINT32_MAX ? QD_TOK_NONE : (int32_t)v;
  return QD_OK;
}

static qd_status_t read_vocab_(qd_tokenizer_t* t, rd_t* r) {
  uint32_t n;
  QD_TRY(r_u32_(r, "vocabulary size", &n));
  if (n == 0 || n > QD_TOK_MAX_TOKENS)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: vocabulary size %u is not in 1..%u", n,
                  QD_TOK_MAX_TOKENS);
  QD_TRY(need_(r, (uint64_t)n * 4, "token lengths"));
  const unsigned char* lens = r->p + r->pos;
  r->pos += (size_t)n * 4;
  uint64_t pool;
  QD_TRY(r_u64_(r, "token bytes", &pool));
  QD_TRY(need_(r, pool, "token bytes"));
  qd_tok_entry_t* e;
  QD_TRY(qd_malloc(t->a, (size_t)n * sizeof *e, (void**)&e));
  uint64_t off = 0;
  qd_status_t s = QD_OK;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t len = (uint32_t)lens[4 * i] | (uint32_t)lens[4 * i + 1] << 8 | (uint32_t)lens[4 * i + 2] << 16 |
                   (uint32_t)lens[4 * i + 3] << 24;
    if (len > pool - off) {
      s = QD_ERR(BAD_INPUT, TOK_BLOB_TRUNCATED, "tokenizer blob: token %u (length %u) runs past the token bytes", i,
                 len);
      break;
    }
    e[i] = (qd_tok_entry_t){(const char*)r->p + r->pos + off, len, i, i};
    off += len;
  }
  if (!s && off != pool)
    s = QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: the token lengths add up to %llu, not %llu",
               (unsigned long long)off, (unsigned long long)pool);
  if (!s) s = qd_tok_set_vocab(t, e, n, "tokenizer blob");
  qd_free(t->a, e, (size_t)n * sizeof *e);
  r->pos += (size_t)pool;
  return s;
}

static qd_status_t read_payload_(qd_tokenizer_t* t, rd_t* r) {
  uint32_t kind;
  QD_TRY(r_u32_(r, "kind", &kind));
  qd_tokenizer_kind_t want = t->model == QD_TOK_MODEL_BPE ? QD_TOKENIZER_CLIP : QD_TOKENIZER_T5;
  if (kind != (uint32_t)want)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: kind %u does not go with model %d", kind, t->model);
  QD_TRY(read_vocab_(t, r));
  QD_TRY(r_id_(r, "bos id", &t->bos_id));
  QD_TRY(r_id_(r, "eos id", &t->eos_id));
  QD_TRY(r_id_(r, "pad id", &t->pad_id));
  QD_TRY(r_id_(r, "unk id", &t->unk_id));
  QD_TRY(r_id_(r, "prefix id", &t->prefix_id));
  QD_TRY(r_id_(r, "suffix id", &t->suffix_id));
  uint32_t mml, count;
  QD_TRY(r_u32_(r, "model_max_length", &mml));
  if (mml == 0 || mml > QD_TOKENIZER_MAX_LENGTH)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: model_max_length %u is not in 1..%u", mml,
                  QD_TOKENIZER_MAX_LENGTH);
  t->model_max_length = mml;
  QD_TRY(r_u32_(r, "normalizer count", &count));
  if (count > QD_TOK_MAX_OPS)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: %u normalizers; at most %u", count, QD_TOK_MAX_OPS);
  for (uint32_t i = 0; i < count; i++) {
    uint32_t k, l, rt;
    const char *pat, *con;
    size_t pl, cl;
    QD_TRY(r_u32_(r, "normalizer", &k));
    QD_TRY(r_u32_(r, "normalizer", &l));
    QD_TRY(r_u32_(r, "normalizer", &rt));
    QD_TRY(r_str_(r, "normalizer pattern", &pat, &pl));
    QD_TRY(r_str_(r, "normalizer content", &con, &cl));
    if (l > 1 || rt > 1)
      return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: normalizer %u has flags %u, %u", i, l, rt);
    QD_TRY(qd_tok_add_norm(t, k, l, rt, pat, pl, con, cl));
  }
  QD_TRY(r_u32_(r, "pre-tokenizer count", &count));
  if (count > QD_TOK_MAX_OPS)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: %u pre-tokenizers; at most %u", count, QD_TOK_MAX_OPS);
  for (uint32_t i = 0; i < count; i++) {
    uint32_t v[4];
    for (int k = 0; k < 4; k++) QD_TRY(r_u32_(r, "pre-tokenizer", &v[k]));
    if (v[2] > 1 || v[3] > 1)
      return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: pre-tokenizer %u has flags %u, %u", i, v[2], v[3]);
    QD_TRY(qd_tok_add_pre(t, v[0], v[1], v[2], v[3]));
  }
  QD_TRY(r_u32_(r, "added token count", &count));
  QD_TRY(need_(r, (uint64_t)count * 8, "added tokens"));
  for (uint32_t i = 0; i < count; i++) {
    int32_t id;
    uint32_t flags;
    QD_TRY(r_id_(r, "added token id", &id));
    QD_TRY(r_u32_(r, "added token flags", &flags));
    if (id < 0 || flags > 3)
      return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: added token %u has id %d, flags %u", i, id, flags);
    for (size_t k = 0; k < t->added_count; k++)
      if (t->added[k].id == id)
        return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN_ID, "tokenizer blob: added token id %d is listed twice", id);
    QD_TRY(qd_tok_add_added(t, id, flags & 1, (flags >> 1) & 1));
  }
  if (t->model == QD_TOK_MODEL_BPE) {
    uint32_t m;
    QD_TRY(r_u32_(r, "merge count", &m));
    QD_TRY(need_(r, (uint64_t)m * 8, "merges"));
    if (m) {
      QD_TRY(qd_malloc(t->a, (size_t)m * 2 * sizeof(uint32_t), (void**)&t->merges));
      t->merges_cap = m;
      for (size_t i = 0; i < 2 * (size_t)m; i++) QD_TRY(r_u32_(r, "merges", &t->merges[i]));
      t->merge_count = m;
    }
    const char* eow;
    size_t el;
    uint32_t flags;
    QD_TRY(r_str_(r, "end-of-word suffix", &eow, &el));
    if (eow && el > QD_TOK_MAX_SUFFIX_BYTES)
      return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: end-of-word suffix of %zu bytes", el);
    if (eow && memchr(eow, '\0', el))
      return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: the end-of-word suffix holds a NUL");
    if (eow && el) {
      QD_TRY(qd_strndup(t->a, eow, el, &t->eow_suffix));
      t->eow_suffix_len = el;
    }
    QD_TRY(r_u32_(r, "BPE flags", &flags));
    if (flags > 3) return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: BPE flags %u", flags);
    t->fuse_unk = flags & 1;
    t->byte_fallback = (flags >> 1) & 1;
  } else {
    QD_TRY(need_(r, (uint64_t)t->vocab_count * 8, "scores"));
    QD_TRY(qd_malloc(t->a, t->vocab_count * sizeof(double), (void**)&t->scores));
    t->scores_count = t->vocab_count;
    for (size_t i = 0; i < t->vocab_count; i++) {
      uint64_t bits;
      QD_TRY(r_u64_(r, "scores", &bits));
      memcpy(&t->scores[i], &bits, sizeof bits);
    }
    uint32_t flags;
    QD_TRY(r_u32_(r, "Unigram flags", &flags));
    if (flags > 1) return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: Unigram flags %u", flags);
    t->byte_fallback = flags & 1;
    const char* cm;
    size_t cl;
    QD_TRY(r_str_(r, "charsmap", &cm, &cl));
    if (cm) QD_TRY(qd_tok_set_charsmap(t, (const unsigned char*)cm, cl, "tokenizer blob"));
  }
  if (r->pos != r->size)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: %zu bytes follow the last field", r->size - r->pos);
  return QD_OK;
}

qd_status_t qd_tokenizer_load_blob(const void* data, size_t size, qd_allocator_t allocator,
                                   qd_tokenizer_t** out_tokenizer) {
  if (out_tokenizer) *out_tokenizer = NULL;
  if ((!data && size) || !out_tokenizer) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "load_blob: NULL argument");
  const unsigned char* p = data;
  if (size < BLOB_HEADER || memcmp(p, BLOB_MAGIC, 8) != 0)
    return QD_ERR(BAD_INPUT, TOK_BLOB_MAGIC, "tokenizer blob: %zu bytes that do not start with \"%s\"", size,
                  BLOB_MAGIC);
  rd_t r = {p, size, 8};
  uint32_t version, model;
  uint64_t recorded, sum;
  QD_TRY(r_u32_(&r, "version", &version));
  QD_TRY(r_u32_(&r, "model", &model));
  QD_TRY(r_u64_(&r, "size", &recorded));
  QD_TRY(r_u64_(&r, "checksum", &sum));
  if (version != BLOB_VERSION)
    return QD_ERR(UNSUPPORTED, TOK_BLOB_VERSION, "tokenizer blob: version %u; this qd reads version %u", version,
                  BLOB_VERSION);
  if (recorded != size)
    return QD_ERR(BAD_INPUT, TOK_BLOB_SIZE, "tokenizer blob: records %llu bytes but has %zu",
                  (unsigned long long)recorded, size);
  uint64_t have = fnv1a64_(p + BLOB_HEADER, size - BLOB_HEADER);
  if (have != sum)
    return QD_ERR(BAD_INPUT, TOK_BLOB_CHECKSUM, "tokenizer blob: checksum %016llx, contents give %016llx",
                  (unsigned long long)sum, (unsigned long long)have);
  if (model != QD_TOK_MODEL_BPE && model != QD_TOK_MODEL_UNIGRAM)
    return QD_ERR(BAD_INPUT, TOK_BLOB_FIELD, "tokenizer blob: model %u is not 1 (BPE) or 2 (Unigram)", model);
  qd_tokenizer_t* t;
  QD_TRY(qd_tok_create(allocator, (qd_tok_model_t)model, &t));
  qd_status_t s = read_payload_(t, &r);
  if (!s) s = qd_tok_finalize(t, "tokenizer blob");
  if (s) {
    qd_tokenizer_destroy(t);
    return s;
  }
  *out_tokenizer = t;
  return QD_OK;
}
