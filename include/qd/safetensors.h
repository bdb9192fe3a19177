/* qd: strict reader for safetensors files.
 *
 * A safetensors file is an 8-byte little-endian header length n, n bytes of UTF-8 JSON (an object mapping tensor
 * names to {dtype, shape, data_offsets}, plus an optional "__metadata__" object of strings), then the tensor
 * data. Offsets are relative to the start of the data.
 *
 * qd_safetensors_open maps the file read-only and validates everything before returning: the header length, the
 * encoding, the JSON grammar (strictly: duplicate keys are errors), each tensor entry, and the data layout (the
 * tensors, sorted by offset, tile the data region exactly: from 0, no gaps, no overlaps, ending at the end of the
 * file). Each rule has its own QD_E_ST_* detail (qd/errors/safetensors.def); messages name the file, the tensor,
 * the field and the offending value.
 *
 * Ownership: the qd_safetensors_t owns the mapping and every string and qd_tensor_info_t it hands out; they are
 * valid until qd_safetensors_close. Tensor data pointers point into the mapping: read-only, and not necessarily
 * aligned (the data region starts at 8 + n, and n is arbitrary). If another process truncates the file while it
 * is mapped, touching the data raises SIGBUS; qd never writes to it.
 */
#ifndef QD_SAFETENSORS_H
#define QD_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_MAX_RANK 8
/* Headers above this many bytes are rejected before reading them (the limit the reference implementation uses). */
#define QD_SAFETENSORS_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* Shape dimensions and offsets must be at most this (2^53): what every JSON reader represents exactly. */
#define QD_SAFETENSORS_MAX_INT ((uint64_t)1 << 53)

typedef struct qd_tensor_info {
  const char* name;          /* never empty, never contains NUL */
  qd_dtype_t dtype;
  int rank;                  /* 0 for a scalar */
  uint64_t shape[QD_MAX_RANK];
  uint64_t numel;            /* product of shape (1 for a scalar, 0 when a dimension is 0) */
  uint64_t nbytes;           /* numel * dtype size */
  const void* data;          /* into the mapping; unaligned; not NULL even when nbytes is 0 */
  uint64_t file_offset;      /* of the first data byte, from the start of the file */
  const char* file;          /* path of the file that holds it, as given to open */
  uint32_t file_index;       /* 0 in a single file; the file's index in a checkpoint (qd/checkpoint.h) */
} qd_tensor_info_t;

typedef struct qd_safetensors qd_safetensors_t;

/* Maps and validates `path`. On success *out_st owns the mapping. Errors: IO_OPEN / IO_STAT / NOT_A_FILE /
 * IO_MAP (code IO or NOT_FOUND), any QD_E_ST_* header or layout rule (BAD_INPUT), OUT_OF_MEMORY. */
qd_status_t qd_safetensors_open(const char* path, qd_allocator_t allocator, qd_safetensors_t** out_st);

/* Validates a safetensors image already in memory (for fuzzing and tests). `data` is borrowed: it must outlive the
 * returned object. `name` is used in messages and as the tensors' `file`; it is copied. */
qd_status_t qd_safetensors_open_memory(const void* data, size_t size, const char* name, qd_allocator_t allocator,
                                       qd_safetensors_t** out_st);

void qd_safetensors_close(qd_safetensors_t* st); /* NULL-safe */

const char* qd_safetensors_path(const qd_safetensors_t* st);
uint64_t qd_safetensors_file_size(const qd_safetensors_t* st);
uint64_t qd_safetensors_header_size(const qd_safetensors_t* st); /* n: the JSON header's length in bytes */
uint64_t qd_safetensors_data_size(const qd_safetensors_t* st);   /* file size - 8 - n */

size_t qd_safetensors_tensor_count(const qd_safetensors_t* st);
/* The index-th tensor in data-offset order (ties, which only zero-byte tensors can have, by name); NULL when out
 * of range. */
const qd_tensor_info_t* qd_safetensors_tensor(const qd_safetensors_t* st, size_t index);
/* Binary search by exact name; NULL when absent. */
const qd_tensor_info_t* qd_safetensors_find(const qd_safetensors_t* st, const char* name);

/* __metadata__, in document order. */
size_t qd_safetensors_metadata_count(const qd_safetensors_t* st);
/* false when index is out of range (outputs untouched). */
bool qd_safetensors_metadata_at(const qd_safetensors_t* st, size_t index, const char** out_key,
                                const char** out_value);
const char* qd_safetensors_metadata_get(const qd_safetensors_t* st, const char* key); /* NULL when absent */

/* Widens a tensor's numel elements to float32 into dst (numel floats). Floats widen exactly; integers convert to
 * the nearest float. Errors: ST_DTYPE_CONVERSION for BOOL. */
qd_status_t qd_tensor_read_f32(const qd_tensor_info_t* tensor, float* dst);

#ifdef __cplusplus
}
#endif
#endif /* QD_SAFETENSORS_H */
