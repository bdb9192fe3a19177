/* Reading files whole, and opening the ones qd maps, with the same checks and errors everywhere: checkpoints'
 * indexes, tokenizer files, graph descriptions and pipeline metadata are read with qd_file_read_all;
 * safetensors files and plans are opened with qd_file_open_regular and then mapped. */
#ifndef QD_IR_FILE_READ_H
#define QD_IR_FILE_READ_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

/* Opens `path` read-only (close-on-exec; non-blocking, so a FIFO cannot hang the open) and checks that it is a
 * regular file; *out_fd is the caller's to close. Errors: IO_OPEN (code NOT_FOUND when the path does not exist),
 * IO_STAT, NOT_A_FILE (saying so when it is a directory). */
qd_status_t qd_file_open_regular(const char* path, int* out_fd, uint64_t* out_size);

/* The whole of a regular file, NUL-terminated: *out_buf holds *out_size + 1 bytes from `allocator` (free that
 * many). A file above `limit` bytes fails with code BAD_INPUT and detail `too_large` before anything is read.
 * Errors: qd_file_open_regular's, the limit, OUT_OF_MEMORY, IO_READ (a failed read, or a file that shrank). */
qd_status_t qd_file_read_all(qd_allocator_t allocator, const char* path, uint64_t limit,
                             qd_error_detail_t too_large, char** out_buf, size_t* out_size);

#endif
