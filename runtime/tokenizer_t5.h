/* qd internal: T5's half of the tokenizer: SentencePiece Unigram (runtime/tokenizer_t5.c).
 * Loading reads a tokenizer.json Unigram model or a SentencePiece model file (spiece.model, protobuf parsed by
 * hand); encoding reproduces Hugging Face `tokenizers`: the Precompiled normalizer (SentencePiece's double-array
 * trie + normalized strings, applied per grapheme cluster as spm_precompiled does), WhitespaceSplit, Metaspace,
 * and Unigram::encode_optimized (Viterbi over the pieces' scores, unknown characters at min score - 10, adjacent
 * unknowns fused, optional byte fallback). */
#ifndef QD_RUNTIME_TOKENIZER_T5_H
#define QD_RUNTIME_TOKENIZER_T5_H

#include "runtime/tokenizer_internal.h"

/* What a SentencePiece model says beyond its pieces. */
typedef struct qd_tok_spm_info {
  bool add_dummy_prefix;
  bool remove_extra_whitespaces;
} qd_tok_spm_info_t;

/* Loads pieces, scores, unk id, byte fallback and the charsmap of a SentencePiece model (vocabulary not yet
 * finalized: the caller may append T5's extra ids). Errors: TOK_SPM_*, TOK_VOCAB_*, TOK_TOKEN_*, TOK_CHARSMAP. */
qd_status_t qd_tok_spm_load(qd_tokenizer_t* t, const unsigned char* data, size_t size, const char* what,
                            qd_tok_spm_info_t* out_info);
/* A tokenizer.json "model" object of type Unigram. */
qd_status_t qd_tok_unigram_model_from_json(qd_tokenizer_t* t, const qd_json_value_t* model, const char* what);
/* Sets scores for ids appended after the model's (T5's extra ids score 0). */
qd_status_t qd_tok_unigram_extend_scores(qd_tokenizer_t* t, size_t old_count);
/* Copies and checks a precompiled charsmap (size, trie bounds, every leaf's string). */
qd_status_t qd_tok_set_charsmap(qd_tokenizer_t* t, const unsigned char* data, size_t size, const char* what);
/* Decodes base64 (standard alphabet, padding required) into a new buffer from t's allocator. */
qd_status_t qd_tok_base64_decode(qd_allocator_t a, const char* s, size_t len, const char* what,
                                 unsigned char** out_data, size_t* out_size);
qd_status_t qd_tok_unigram_finalize(qd_tokenizer_t* t, const char* what);

/* Encoding. */
qd_status_t qd_tok_precompiled_normalize(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out);
qd_status_t qd_tok_pre_whitespace_split(const char* s, size_t len, qd_tok_buf_t* out_buf, qd_tok_spans_t* out);
qd_status_t qd_tok_pre_metaspace(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                 qd_tok_spans_t* out);
qd_status_t qd_tok_unigram_piece(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out);
/* Concatenated pieces -> text: '▁' back to spaces, the first one dropped. */
qd_status_t qd_tok_unigram_decode(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out);

#endif /* QD_RUNTIME_TOKENIZER_T5_H */
