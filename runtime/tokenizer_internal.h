/* qd internal: the tokenizer object shared by runtime/tokenizer*.c.
 *
 * A tokenizer is data plus a small pipeline, mirroring Hugging Face `tokenizers`:
 *   added tokens (matched on the raw text, then on the normalized text) -> normalizer ops -> pre-tokenizer ops
 *   -> model (BPE or Unigram) -> post-processor (a prefix and/or suffix id) -> truncation and padding.
 * Every loader (directory, tokenizer.json, spiece.model, blob) fills the raw fields below and then calls
 * qd_tok_finalize, which validates everything and builds the lookup structures; so a blob is checked by the same
 * rules as the files it came from.
 */
#ifndef QD_RUNTIME_TOKENIZER_INTERNAL_H
#define QD_RUNTIME_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/strict_json.h"
#include "ir/strmap.h"
#include "qd/tokenizer.h"

/* Limits on what files and blobs may hold (hostile sizes are rejected before anything is allocated for them). */
#define QD_TOK_MAX_TOKENS (1u << 22)
#define QD_TOK_MAX_TOKEN_BYTES 65536u
#define QD_TOK_MAX_SUFFIX_BYTES 64u
/* Unigram pieces: SentencePiece's own default is 16 characters; the cap bounds Viterbi's work per position. */
#define QD_TOK_MAX_PIECE_BYTES 256u
#define QD_TOK_MAX_POOL_BYTES (256u << 20)
#define QD_TOK_MAX_JSON_BYTES (512u << 20)
#define QD_TOK_MAX_FILE_BYTES (256u << 20)
#define QD_TOK_MAX_CONFIG_BYTES (16u << 20)
#define QD_TOK_MAX_OPS 8u
#define QD_TOK_NONE (-1)

/* --- growable buffers ----------------------------------------------------------------------------------- */

typedef struct qd_tok_buf {
  qd_allocator_t a;
  char* data;
  size_t len, cap;
} qd_tok_buf_t;

void qd_tok_buf_init(qd_tok_buf_t* b, qd_allocator_t a);
void qd_tok_buf_free(qd_tok_buf_t* b);
qd_status_t qd_tok_buf_reserve(qd_tok_buf_t* b, size_t extra);
qd_status_t qd_tok_buf_append(qd_tok_buf_t* b, const void* data, size_t len);
qd_status_t qd_tok_buf_append_cp(qd_tok_buf_t* b, uint32_t cp);

typedef struct qd_tok_ids {
  qd_allocator_t a;
  int32_t* v;
  size_t n, cap;
} qd_tok_ids_t;

void qd_tok_ids_init(qd_tok_ids_t* ids, qd_allocator_t a);
void qd_tok_ids_free(qd_tok_ids_t* ids);
qd_status_t qd_tok_ids_push(qd_tok_ids_t* ids, int32_t id);

/* A piece of text inside a buffer; id >= 0 marks an added token already resolved. */
typedef struct qd_tok_span {
  size_t off, len;
  int32_t id;
} qd_tok_span_t;

typedef struct qd_tok_spans {
  qd_allocator_t a;
  qd_tok_span_t* v;
  size_t n, cap;
} qd_tok_spans_t;

void qd_tok_spans_init(qd_tok_spans_t* s, qd_allocator_t a);
void qd_tok_spans_free(qd_tok_spans_t* s);
qd_status_t qd_tok_spans_push(qd_tok_spans_t* s, size_t off, size_t len, int32_t id);

/* --- pipeline ops -------------------------------------------------------------------------------------- */

typedef enum qd_tok_norm_kind {
  QD_TOK_NORM_NFC = 1,
  QD_TOK_NORM_LOWERCASE = 2,
  QD_TOK_NORM_REPLACE_WS_RUNS = 3,    /* Replace(Regex("\s+"), content) */
  QD_TOK_NORM_REPLACE_SPACE_RUNS = 4, /* Replace(Regex(" {2,}"), content) */
  QD_TOK_NORM_REPLACE_STRING = 5,     /* Replace(String(pattern), content) */
  QD_TOK_NORM_STRIP = 6,              /* Strip(strip_left = left, strip_right = right) */
  QD_TOK_NORM_PRECOMPILED = 7,        /* SentencePiece's charsmap (t->charsmap) */
  QD_TOK_NORM_KIND_END_
} qd_tok_norm_kind_t;

typedef struct qd_tok_norm {
  uint32_t kind;
  uint32_t left, right;
  char* pattern; /* owned, NUL-terminated; REPLACE_STRING only */
  uint32_t pattern_len;
  char* content; /* owned, NUL-terminated; REPLACE_* */
  uint32_t content_len;
} qd_tok_norm_t;

typedef enum qd_tok_pre_kind {
  QD_TOK_PRE_CLIP_SPLIT = 1,       /* Split(CLIP's regex, Removed, invert); flag = with the special alternatives */
  QD_TOK_PRE_BYTE_LEVEL = 2,       /* ByteLevel: flag = use_regex (GPT-2's split), prepend = add_prefix_space */
  QD_TOK_PRE_WHITESPACE_SPLIT = 3, /* WhitespaceSplit */
  QD_TOK_PRE_METASPACE = 4,        /* Metaspace(replacement, prepend: 1 always / 0 never, flag = split) */
  QD_TOK_PRE_KIND_END_
} qd_tok_pre_kind_t;

typedef struct qd_tok_pre {
  uint32_t kind;
  uint32_t replacement;
  uint32_t prepend;
  uint32_t flag;
} qd_tok_pre_t;

typedef struct qd_tok_added {
  int32_t id;
  uint8_t normalized; /* matched after normalization (its content normalized too), else on the raw text */
  uint8_t special;
  char* match;        /* the text matched: the content, normalized when `normalized` (owned, built by finalize) */
  size_t match_len;
} qd_tok_added_t;

typedef struct qd_tok_merge_slot {
  uint64_t key; /* (left << 32) | right, UINT64_MAX = empty */
  uint32_t rank;
  int32_t new_id;
} qd_tok_merge_slot_t;

typedef struct qd_tok_piece_slot {
  uint64_t hash;
  int32_t id; /* -1: empty */
} qd_tok_piece_slot_t;

typedef struct qd_tok_cache_entry {
  char* key;
  size_t key_len;
  int32_t* ids;
  size_t count;
} qd_tok_cache_entry_t;

#define QD_TOK_CACHE_SLOTS 4096u
#define QD_TOK_CACHE_MAX_KEY 256u

typedef enum qd_tok_model {
  QD_TOK_MODEL_BPE = 1,
  QD_TOK_MODEL_UNIGRAM = 2,
} qd_tok_model_t;

struct qd_tokenizer {
  qd_allocator_t a;
  qd_tokenizer_kind_t kind;
  qd_tok_model_t model;

  /* Vocabulary: ids 0..vocab_count-1; token i is pool.data[tok_off[i] .. + tok_len[i]], NUL-terminated. */
  qd_tok_buf_t pool;
  uint32_t* tok_off;
  uint32_t* tok_len;
  size_t vocab_count;
  qd_strmap_t token_map; /* keys point into pool */

  /* BPE: merges in rank order as id pairs; end-of-word suffix ("</w>" for CLIP, may be empty). */
  uint32_t* merges; /* 2 * merge_count used of 2 * merges_cap */
  size_t merge_count, merges_cap;
  char* eow_suffix;
  size_t eow_suffix_len;
  bool fuse_unk;
  qd_tok_merge_slot_t* merge_map;
  size_t merge_map_cap;

  /* Unigram: scores of ids 0..vocab_count-1 (added-only tokens score 0 and are in the trie like HF's). */
  double* scores; /* scores_count entries; equal to vocab_count once finalized */
  size_t scores_count;
  double min_score;
  bool byte_fallback;
  size_t max_piece_len;
  int32_t byte_fallback_ids[256];
  /* pieces by FNV-1a 64 of their bytes, so Viterbi hashes each candidate prefix incrementally */
  struct qd_tok_piece_slot* piece_map;
  size_t piece_map_cap;
  /* Precompiled charsmap as given: u32 trie byte size, the double-array units, then the normalized strings. */
  unsigned char* charsmap;
  size_t charsmap_size;
  uint32_t* trie; /* aligned copy of the units */
  size_t trie_units;
  const char* charsmap_norm; /* inside charsmap */
  size_t charsmap_norm_len;

  qd_tok_norm_t norm[QD_TOK_MAX_OPS];
  size_t norm_count;
  qd_tok_pre_t pre[QD_TOK_MAX_OPS];
  size_t pre_count;

  qd_tok_added_t* added;
  size_t added_count;
  uint8_t added_first[256]; /* bit 0: a raw added token starts with this byte; bit 1: a normalized one does */

  int32_t bos_id, eos_id, pad_id, unk_id;
  int32_t prefix_id, suffix_id; /* post-processor: added before / after the text's ids */
  uint32_t model_max_length;

  qd_tok_cache_entry_t* cache; /* QD_TOK_CACHE_SLOTS entries, allocated on first use */
};

/* A (string, id) pair a loader collects before the vocabulary is built; s need not be NUL-terminated. */
typedef struct qd_tok_entry {
  const char* s;
  size_t len;
  uint64_t id;
  size_t source_offset; /* for messages */
} qd_tok_entry_t;

/* tokenizer.c */
qd_status_t qd_tok_create(qd_allocator_t a, qd_tok_model_t model, qd_tokenizer_t** out);
/* Copies entries (ids must be exactly 0..n-1 in any order) into the vocabulary. `what` names the source. */
qd_status_t qd_tok_set_vocab(qd_tokenizer_t* t, qd_tok_entry_t* entries, size_t n, const char* what);
/* Appends tokens at the next ids (T5's extra ids); before finalize only. */
qd_status_t qd_tok_append_tokens(qd_tokenizer_t* t, const qd_tok_entry_t* entries, size_t n, const char* what);
int32_t qd_tok_lookup(const qd_tokenizer_t* t, const char* s, size_t len); /* before or after finalize */
qd_status_t qd_tok_add_norm(qd_tokenizer_t* t, uint32_t kind, uint32_t left, uint32_t right, const char* pattern,
                            size_t pattern_len, const char* content, size_t content_len);
qd_status_t qd_tok_add_pre(qd_tokenizer_t* t, uint32_t kind, uint32_t replacement, uint32_t prepend, uint32_t flag);
/* Adds (or updates the flags of) an added token by id. */
qd_status_t qd_tok_add_added(qd_tokenizer_t* t, int32_t id, bool normalized, bool special);
qd_status_t qd_tok_finalize(qd_tokenizer_t* t, const char* what);
/* Applies the normalizer ops to text into out (cleared first). */
qd_status_t qd_tok_normalize(const qd_tokenizer_t* t, const char* text, size_t len, qd_tok_buf_t* out);

/* tokenizer_clip.c / tokenizer_clip.h and tokenizer_t5.c / tokenizer_t5.h declare the model halves. */

/* tokenizer_files.c (files are read with ir/file_read.h) */
/* Parses JSON with the tokenizer details (TOK_JSON, TOK_JSON_UTF8, TOK_JSON_DUPLICATE_KEY). */
qd_status_t qd_tok_parse_json(const char* text, size_t len, const char* source, qd_allocator_t a,
                              qd_json_doc_t** out_doc);

#endif /* QD_RUNTIME_TOKENIZER_INTERNAL_H */
