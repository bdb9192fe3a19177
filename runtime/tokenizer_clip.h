/* qd internal: CLIP's half of the tokenizer: byte-level BPE with an end-of-word suffix (runtime/tokenizer_clip.c).
 * Loading reads vocab.json + merges.txt or a tokenizer.json BPE model; encoding reproduces Hugging Face
 * `tokenizers`: the CLIP split regex, the ByteLevel pre-tokenizer (GPT-2's bytes-to-unicode map and, with
 * use_regex, GPT-2's split), and BPE::merge_word / Word::merge_all (a min-heap on (rank, position)). */
#ifndef QD_RUNTIME_TOKENIZER_CLIP_H
#define QD_RUNTIME_TOKENIZER_CLIP_H

#include "runtime/tokenizer_internal.h"

/* Loading. `what` names the file for messages. */
qd_status_t qd_tok_clip_vocab_from_json(qd_tokenizer_t* t, const qd_json_value_t* vocab, const char* what);
qd_status_t qd_tok_clip_merges_from_text(qd_tokenizer_t* t, const char* text, size_t len, const char* what);
qd_status_t qd_tok_clip_merges_from_json(qd_tokenizer_t* t, const qd_json_value_t* merges, const char* what);
/* A tokenizer.json "model" object of type BPE: vocab, merges and options. */
qd_status_t qd_tok_bpe_model_from_json(qd_tokenizer_t* t, const qd_json_value_t* model, const char* what);
/* Builds the merge map; checks every merge's ids and result (TOK_MERGES_*). */
qd_status_t qd_tok_bpe_finalize(qd_tokenizer_t* t, const char* what);

/* Encoding. */
/* op->flag: the regex starts with the <|startoftext|>|<|endoftext|> alternatives (transformers >= 5 writes them;
 * older tokenizer.json files do not). */
qd_status_t qd_tok_pre_clip_split(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                  qd_tok_spans_t* out);
qd_status_t qd_tok_pre_byte_level(const qd_tok_pre_t* op, const char* s, size_t len, qd_tok_buf_t* out_buf,
                                  qd_tok_spans_t* out);
qd_status_t qd_tok_bpe_word(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_ids_t* out);
/* Concatenated token texts -> text: byte-level characters back to bytes, the suffix to a space, trimmed. */
qd_status_t qd_tok_bpe_decode(const qd_tokenizer_t* t, const char* s, size_t len, qd_tok_buf_t* out);

#endif /* QD_RUNTIME_TOKENIZER_CLIP_H */
