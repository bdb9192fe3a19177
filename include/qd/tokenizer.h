/* qd: the two text tokenizers of FLUX.1, in C: CLIP's byte-level BPE (the `tokenizer/` directory of a diffusers
 * FLUX checkpoint) and T5's SentencePiece Unigram (`tokenizer_2/`). Token ids are those Hugging Face
 * `tokenizers` gives (docs/tokenizers.md has the parity results and the exact behaviour).
 *
 * Sources:
 *   - a directory as diffusers lays it out. CLIP: tokenizer.json, or vocab.json + merges.txt; T5: tokenizer.json,
 *     or spiece.model. Both: tokenizer_config.json and special_tokens_map.json when present. The pipeline is the
 *     one diffusers' FluxPipeline gets (transformers' CLIPTokenizer / T5Tokenizer build it in code, whatever the
 *     files say), so ids match what FluxPipeline feeds the text encoders.
 *   - one tokenizer.json file: its normalizer, pre-tokenizer and post-processor exactly as written (what
 *     tokenizers.Tokenizer.from_file does); components qd does not implement are rejected.
 *   - one spiece.model file (SentencePiece protobuf), treated like a directory holding only it.
 *   - a blob from qd_tokenizer_save_blob (packed into plans): versioned, checksummed, every count and offset
 *     checked on load.
 *
 * Ownership: open/load return a tokenizer that owns all its memory (from the given allocator) and refers to no
 * input after returning; free it with qd_tokenizer_destroy (NULL is a no-op). Strings returned by accessors live
 * as long as the tokenizer. Buffers returned through out-parameters belong to the caller (free with qd_free on
 * the same allocator and the stated size).
 *
 * Threads: encoding keeps a cache of recent words inside the tokenizer, so one tokenizer must not be used by two
 * threads at once (open one per thread, or serialize calls). Everything else is read-only after open.
 *
 * Invalid UTF-8 in a prompt: with QD_TOKENIZER_UTF8_REPLACE (the default, and what Hugging Face does after
 * Python's bytes.decode(errors="replace")) each maximal ill-formed subsequence becomes U+FFFD; with
 * QD_TOKENIZER_UTF8_REJECT it is an error (TOK_PROMPT_UTF8) naming the byte offset of the first bad byte.
 */
#ifndef QD_TOKENIZER_H
#define QD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_tokenizer qd_tokenizer_t;

typedef enum qd_tokenizer_kind {
  QD_TOKENIZER_AUTO = 0, /* open: whatever the files describe */
  QD_TOKENIZER_CLIP = 1, /* byte-level BPE with an end-of-word suffix */
  QD_TOKENIZER_T5 = 2,   /* SentencePiece Unigram */
} qd_tokenizer_kind_t;

typedef enum qd_tokenizer_utf8 {
  QD_TOKENIZER_UTF8_REPLACE = 0,
  QD_TOKENIZER_UTF8_REJECT = 1,
} qd_tokenizer_utf8_t;

/* Limits: prompts up to 1 MiB, max_length up to 65536, files as in docs/tokenizers.md. */
#define QD_TOKENIZER_MAX_PROMPT_BYTES (1u << 20)
#define QD_TOKENIZER_MAX_LENGTH 65536u

/* Opens a directory or a tokenizer.json / spiece.model file (see above). kind AUTO accepts either kind; another
 * value fails with TOK_KIND_MISMATCH when the files are of the other kind.
 * Errors: NOT_FOUND (TOK_NO_FILES, IO_OPEN), IO_*, the TOK_* details of malformed files, OUT_OF_MEMORY. */
qd_status_t qd_tokenizer_open(const char* path, qd_tokenizer_kind_t kind, qd_allocator_t allocator,
                              qd_tokenizer_t** out_tokenizer);

/* Serializes the tokenizer; *out_data (free with qd_free(allocator, *out_data, *out_size)) is independent of it. */
qd_status_t qd_tokenizer_save_blob(const qd_tokenizer_t* tokenizer, qd_allocator_t allocator, void** out_data,
                                   size_t* out_size);
/* Loads a blob (copies what it keeps). Errors: TOK_BLOB_* for a damaged blob, the file details (TOK_VOCAB_*,
 * TOK_MERGES_*, TOK_CHARSMAP, ...) for contents that break a rule, OUT_OF_MEMORY. */
qd_status_t qd_tokenizer_load_blob(const void* data, size_t size, qd_allocator_t allocator,
                                   qd_tokenizer_t** out_tokenizer);

void qd_tokenizer_destroy(qd_tokenizer_t* tokenizer);

/* Encodes a prompt as FluxPipeline does: the text's tokens truncated to max_length minus the special tokens the
 * post-processor adds (CLIP: <|startoftext|> first and <|endoftext|> last; T5: </s> last), then padded with the
 * pad token to exactly max_length ids, written to out_ids (max_length entries). *out_used (may be NULL) gets the
 * count before padding (the attention mask's ones). text need not be NUL-terminated.
 * Errors: INVALID_ARGUMENT (TOK_MAX_LENGTH, NULL pointers), BAD_INPUT (TOK_PROMPT_UTF8 with REJECT,
 * TOK_PROMPT_TOO_LONG), OUT_OF_MEMORY. */
qd_status_t qd_tokenizer_encode(qd_tokenizer_t* tokenizer, const char* text, size_t len, size_t max_length,
                                qd_tokenizer_utf8_t utf8, int32_t* out_ids, size_t* out_used);

/* The text's tokens alone: no special tokens added, no truncation, no padding. *out_ids is allocated from
 * `allocator` (free with qd_free(allocator, *out_ids, *out_count * sizeof(int32_t)); NULL when the count is 0). */
qd_status_t qd_tokenizer_tokenize(qd_tokenizer_t* tokenizer, const char* text, size_t len, qd_tokenizer_utf8_t utf8,
                                  qd_allocator_t allocator, int32_t** out_ids, size_t* out_count);

/* Turns ids back into text, for debugging and logs (not guaranteed to round-trip). skip_special drops special
 * tokens (bos, eos, pad and other special added tokens). *out_text is NUL-terminated; free it with
 * qd_free(allocator, *out_text, *out_len + 1). Errors: TOK_ID_RANGE, OUT_OF_MEMORY. */
qd_status_t qd_tokenizer_decode(const qd_tokenizer_t* tokenizer, const int32_t* ids, size_t count, bool skip_special,
                                qd_allocator_t allocator, char** out_text, size_t* out_len);

qd_tokenizer_kind_t qd_tokenizer_kind(const qd_tokenizer_t* tokenizer);
size_t qd_tokenizer_vocab_size(const qd_tokenizer_t* tokenizer); /* ids are 0 .. size-1 */
/* The token's text as the vocabulary stores it (byte-level characters for CLIP, '▁' for T5), or NULL. */
const char* qd_tokenizer_id_to_token(const qd_tokenizer_t* tokenizer, int32_t id);
int32_t qd_tokenizer_token_to_id(const qd_tokenizer_t* tokenizer, const char* token); /* -1 when absent */
/* Special token ids, -1 when the tokenizer has none. */
int32_t qd_tokenizer_bos_id(const qd_tokenizer_t* tokenizer);
int32_t qd_tokenizer_eos_id(const qd_tokenizer_t* tokenizer);
int32_t qd_tokenizer_pad_id(const qd_tokenizer_t* tokenizer);
int32_t qd_tokenizer_unk_id(const qd_tokenizer_t* tokenizer);
/* tokenizer_config.json's model_max_length (77 for CLIP, 512 for T5 when absent). */
size_t qd_tokenizer_model_max_length(const qd_tokenizer_t* tokenizer);

#ifdef __cplusplus
}
#endif
#endif /* QD_TOKENIZER_H */
