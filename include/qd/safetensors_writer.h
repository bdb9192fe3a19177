/* qd: writing safetensors files.
 *
 * Tensors are declared first (name, dtype, shape, and optionally their data); the header is written once all
 * are declared; then data is written either from the pointers given at declaration or streamed in declaration
 * order with qd_safetensors_writer_write (for files larger than memory, such as a full-size random checkpoint).
 * The file is written to "<path>.tmp-<pid>" and renamed onto path by finish, so a failed or interrupted write never
 * leaves a truncated file under the final name; destroy without finish removes the temporary file.
 *
 * Ownership: data pointers given to add must stay valid until finish. */
#ifndef QD_SAFETENSORS_WRITER_H
#define QD_SAFETENSORS_WRITER_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_safetensors_writer qd_safetensors_writer_t;

qd_status_t qd_safetensors_writer_create(const char* path, qd_allocator_t allocator,
                                         qd_safetensors_writer_t** out_writer);
void qd_safetensors_writer_destroy(qd_safetensors_writer_t* writer);

qd_status_t qd_safetensors_writer_set_metadata(qd_safetensors_writer_t* writer, const char* key, const char* value);
/* data may be NULL: then the tensor's bytes come from qd_safetensors_writer_write, in declaration order. */
qd_status_t qd_safetensors_writer_add(qd_safetensors_writer_t* writer, const char* name, qd_dtype_t dtype,
                                      int32_t rank, const uint64_t* shape, const void* data);
/* Streams the next bytes of tensor data (after all adds; the header is written on the first call). */
qd_status_t qd_safetensors_writer_write(qd_safetensors_writer_t* writer, const void* data, uint64_t bytes);
/* Writes what remains (the header, declared data), checks that every byte arrived, and renames into place. */
qd_status_t qd_safetensors_writer_finish(qd_safetensors_writer_t* writer);

#ifdef __cplusplus
}
#endif
#endif
