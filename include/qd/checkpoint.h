/* qd: a checkpoint as a set of safetensors files with one tensor namespace.
 *
 * qd_checkpoint_open accepts
 *   - a single .safetensors file;
 *   - a checkpoint index (`*.safetensors.index.json`, as written by diffusers and transformers): a JSON object with
 *     a "weight_map" object (tensor name -> shard file name, relative to the index's directory) and an optional
 *     "metadata" object (string or number values, e.g. total_size); other top-level keys are ignored;
 *   - a directory: the index in it when there is exactly one *.safetensors.index.json, otherwise every
 *     *.safetensors file in it (sorted by name; symlinks followed, as in the Hugging Face cache).
 * Every file is opened with the strict reader (qd/safetensors.h). On top of its rules:
 *   - ST_INDEX_JSON / ST_INDEX_TOO_LARGE / ST_INDEX_NO_WEIGHT_MAP / ST_INDEX_METADATA: the index document;
 *   - ST_INDEX_BAD_ENTRY: a weight_map value is not a non-empty string;
 *   - ST_INDEX_BAD_SHARD_NAME: a shard name is absolute or has a ".." component;
 *   - ST_INDEX_SHARD_MISSING: a shard the index names does not exist;
 *   - ST_INDEX_TENSOR_UNLISTED / ST_INDEX_TENSOR_MISSING: a shard holds a tensor the index does not assign to it,
 *     or lacks one the index assigns to it;
 *   - ST_DUPLICATE_TENSOR: two files hold a tensor of the same name;
 *   - ST_EMPTY_DIRECTORY: a directory with no safetensors files.
 *
 * Ownership: the checkpoint owns its files (and so every mapping), its tensor table and every string it returns;
 * all are valid until qd_checkpoint_close, which accepts NULL. Tensor infos are copies whose `file_index` says
 * which of qd_checkpoint_file() holds them; their name and data point into that file's storage.
 */
#ifndef QD_CHECKPOINT_H
#define QD_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/safetensors.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Index files above this size are rejected before reading them. */
#define QD_CHECKPOINT_MAX_INDEX ((uint64_t)100 * 1000 * 1000)

typedef enum qd_checkpoint_kind {
  QD_CHECKPOINT_FILE = 0,  /* one .safetensors file */
  QD_CHECKPOINT_INDEX,     /* an index file was given */
  QD_CHECKPOINT_DIRECTORY, /* a directory was given (qd_checkpoint_index_path says whether it had an index) */
} qd_checkpoint_kind_t;

typedef struct qd_dtype_total {
  uint64_t tensors;
  uint64_t elements;
  uint64_t bytes;
} qd_dtype_total_t;

typedef struct qd_checkpoint qd_checkpoint_t;

/* Errors: everything qd_safetensors_open reports (with context naming the checkpoint), the rules above,
 * IO_OPEN / IO_STAT / IO_READ for the path itself, OUT_OF_MEMORY. */
qd_status_t qd_checkpoint_open(const char* path, qd_allocator_t allocator, qd_checkpoint_t** out_ckpt);
void qd_checkpoint_close(qd_checkpoint_t* ckpt);

qd_checkpoint_kind_t qd_checkpoint_kind(const qd_checkpoint_t* ckpt);
const char* qd_checkpoint_path(const qd_checkpoint_t* ckpt);       /* as given to open */
const char* qd_checkpoint_index_path(const qd_checkpoint_t* ckpt); /* the index used, or NULL */

/* Files: in shard-name order for an index, name order for a directory. */
size_t qd_checkpoint_file_count(const qd_checkpoint_t* ckpt);
const qd_safetensors_t* qd_checkpoint_file(const qd_checkpoint_t* ckpt, size_t index); /* NULL out of range */

/* Tensors of all files, sorted by name (byte order). */
size_t qd_checkpoint_tensor_count(const qd_checkpoint_t* ckpt);
const qd_tensor_info_t* qd_checkpoint_tensor(const qd_checkpoint_t* ckpt, size_t index); /* NULL out of range */
const qd_tensor_info_t* qd_checkpoint_find(const qd_checkpoint_t* ckpt, const char* name); /* NULL when absent */

/* Totals over all tensors of one dtype, and over all tensors. */
qd_dtype_total_t qd_checkpoint_dtype_total(const qd_checkpoint_t* ckpt, qd_dtype_t dtype);
qd_dtype_total_t qd_checkpoint_total(const qd_checkpoint_t* ckpt);

/* The index's "metadata" object in document order; numbers are given as written ("23782357120"). */
size_t qd_checkpoint_index_metadata_count(const qd_checkpoint_t* ckpt);
bool qd_checkpoint_index_metadata_at(const qd_checkpoint_t* ckpt, size_t index, const char** out_key,
                                     const char** out_value);
/* Whether that value was a JSON number (so a JSON writer can emit it as one); false out of range. */
bool qd_checkpoint_index_metadata_is_number(const qd_checkpoint_t* ckpt, size_t index);

#ifdef __cplusplus
}
#endif
#endif /* QD_CHECKPOINT_H */
