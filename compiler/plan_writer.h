/* qdc: writing .qplan plan files (the container; qd/plan_format.h has the bytes).
 *
 * Use:
 *   qd_plan_writer_create(path, allocator, &w);
 *   for each section: qd_plan_writer_begin_section(w, kind, name, flags, alignment);
 *                     qd_plan_writer_write(w, data, n) any number of times;
 *                     qd_plan_writer_end_section(w);
 *   qd_plan_writer_finish(w);   then   qd_plan_writer_destroy(w);
 *
 * Sections are streamed: a weight section of many gigabytes is written piece by piece and checksummed on the fly,
 * never held in memory. Each section starts at the next multiple of its alignment (the gap is zero-filled); the
 * section table goes after the last section and the header, which needs the table's checksum, is written last.
 *
 * Atomicity: everything is written to a temporary file in the same directory as `path` (".NAME.tmp.PID.N": hidden,
 * never ending in .qplan, so nothing mistakes it for a plan), and finish fsyncs it and renames it over `path`. So
 * `path` either keeps what it had or holds a complete plan; a crash leaves at most a temporary file. destroy
 * without a successful finish (after an error, or when the caller gives up) removes the temporary file. For signals,
 * qd_plan_writer_remove_temporaries() removes the temporary files of all writers in progress and is safe to call
 * from a signal handler (qdc's SIGINT/SIGTERM handler calls it).
 *
 * Errors: arguments the format would reject (a bad kind or name, a duplicate (kind, name), a bad alignment or flag,
 * calls out of order) are INVALID_ARGUMENT and leave the writer usable; an I/O failure (IO_OPEN, IO_WRITE,
 * IO_RENAME) or OUT_OF_MEMORY puts the writer in a failed state where every later call but destroy fails.
 *
 * Ownership: the writer owns its file descriptor, buffer and table; `path` is copied. Not thread-safe: one thread
 * drives one writer (several writers may run in parallel).
 */
#ifndef QDC_PLAN_WRITER_H
#define QDC_PLAN_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/plan_format.h"
#include "qd/status.h"

typedef struct qd_plan_writer qd_plan_writer_t;

/* Creates the temporary file next to `path` (the directory must exist and be writable). Errors: IO_OPEN,
 * OUT_OF_MEMORY, INVALID_ARGUMENT (empty path). */
qd_status_t qd_plan_writer_create(const char* path, qd_allocator_t allocator, qd_plan_writer_t** out_w);

/* Starts a section. kind: QD_PLAN_KIND_* or another fourcc of four ASCII letters or digits. name: printable ASCII,
 * at most 23 characters; NULL means "". flags: for a known kind 0 (the format's REQUIRED flag is set for you) or
 * exactly the format's value; for an unknown kind QD_PLAN_SECTION_REQUIRED or 0. alignment: in bytes, a power of two
 * from 8 to 65536, at least 4096 for WGHT; 0 picks the kind's smallest (4096 for WGHT, 8 otherwise). */
qd_status_t qd_plan_writer_begin_section(qd_plan_writer_t* w, uint32_t kind, const char* name, uint32_t flags,
                                         size_t alignment);
/* Appends n bytes to the open section (data may be NULL when n is 0). */
qd_status_t qd_plan_writer_write(qd_plan_writer_t* w, const void* data, size_t n);
qd_status_t qd_plan_writer_end_section(qd_plan_writer_t* w);

/* Writes the table and the header, fsyncs, renames the temporary file to `path` and fsyncs the directory. No
 * section may be open. On failure the temporary file stays until destroy removes it. */
qd_status_t qd_plan_writer_finish(qd_plan_writer_t* w);

/* Frees the writer; removes the temporary file unless finish succeeded. NULL-safe. */
void qd_plan_writer_destroy(qd_plan_writer_t* w);

/* The temporary file's path (for messages and tests); valid until destroy. */
const char* qd_plan_writer_temp_path(const qd_plan_writer_t* w);
/* Bytes written so far (the file offset the next byte goes to). */
uint64_t qd_plan_writer_position(const qd_plan_writer_t* w);
/* Bytes written to the open section so far (0 when none is open). */
uint64_t qd_plan_writer_section_size(const qd_plan_writer_t* w);

/* Removes the temporary file of every writer in progress in this process. Async-signal-safe (it only reads static
 * buffers and calls unlink), for a SIGINT/SIGTERM handler that then ends the process; the writers themselves are
 * left alone (their later calls fail or write to the unlinked file). At most 8 writers at a time are tracked. */
void qd_plan_writer_remove_temporaries(void);

#endif /* QDC_PLAN_WRITER_H */
