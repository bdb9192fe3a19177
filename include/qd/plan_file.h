/* qd: reading .qplan plan files (the container; qd/plan_format.h has the bytes, docs/plan-format.md the rules).
 *
 * qd_plan_file_open maps the file read-only and validates the whole container before returning, in a fixed order
 * so that each malformed file has one predictable detail (qd/errors/plan.def): the magic (a file that is not a plan
 * says what it looks like), the format version, the recorded file size, the table's placement, the checksum over
 * header and table, header flags and reserved bytes, every table entry (kind, flags, name, alignment, range), unique
 * (kind, name) pairs, the layout (no overlaps; between regions only the zero padding their alignment needs; nothing
 * after the last region), and the checksums of every section except weights (WGHT), which are gigabytes: those are
 * checked by qd_plan_file_verify, or at open with QD_PLAN_OPEN_VERIFY_ALL.
 *
 * Unknown section kinds: a REQUIRED one rejects the plan (code UNSUPPORTED: a newer qd wrote it); an optional one
 * is listed with known = false and otherwise ignored (a debug log says so).
 *
 * Ownership: the qd_plan_file_t owns the mapping (or borrows the caller's image, for open_memory) and every
 * qd_plan_section_t and string it returns; all stay valid until qd_plan_file_close. Section data pointers point
 * into the mapping and are read-only. Offsets are aligned relative to the start of the file, and the mapping starts
 * on a page boundary, so a section's data pointer is aligned to its alignment or the page size, whichever is
 * smaller (a WGHT section's to 4096 bytes); an open_memory image gives that only if the image itself is aligned. If another process truncates the file while it is mapped, touching section data raises
 * SIGBUS; qd never writes to it.
 *
 * A qd_plan_file_t is immutable after open: any number of threads may read it at once.
 */
#ifndef QD_PLAN_FILE_H
#define QD_PLAN_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/plan_format.h"
#include "qd/progress.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open flags. */
#define QD_PLAN_OPEN_VERIFY_ALL 0x1u /* also verify WGHT checksums at open (reads every byte of the file) */

typedef struct qd_plan_section {
  uint32_t kind;                       /* QD_PLAN_KIND_* or an unknown optional fourcc */
  char kind_text[5];                   /* "WGHT" */
  char name[QD_PLAN_NAME_SIZE];        /* NUL-terminated, printable ASCII, possibly empty */
  uint16_t flags;                      /* QD_PLAN_SECTION_* */
  bool required;                       /* flags & QD_PLAN_SECTION_REQUIRED */
  bool known;                          /* a kind this qd defines */
  uint8_t align_log2;
  uint64_t offset;                     /* from the start of the file */
  uint64_t size;
  uint64_t checksum;                   /* as recorded in the table */
  const void* data;                    /* offset bytes into the image; valid even when size is 0 */
  uint32_t index;                      /* position in the file's section table */
} qd_plan_section_t;

typedef struct qd_plan_file qd_plan_file_t;

/* Maps and validates `path`. flags: QD_PLAN_OPEN_* (unknown bits are INVALID_ARGUMENT). On success *out_pf owns
 * the mapping. Errors: IO_OPEN (code NOT_FOUND or IO), IO_STAT, NOT_A_FILE, IO_MAP, any QD_E_PLAN_* rule (code
 * BAD_INPUT, or UNSUPPORTED for PLAN_VERSION_NEWER, PLAN_HEADER_FLAGS and PLAN_SECTION_UNKNOWN_REQUIRED),
 * OUT_OF_MEMORY, CANCELLED (only with VERIFY_ALL, when the default progress sink's callback asks to stop). */
qd_status_t qd_plan_file_open(const char* path, qd_allocator_t allocator, uint32_t flags, qd_plan_file_t** out_pf);

/* Validates a plan image already in memory (fuzzing, tests). `data` is borrowed and must outlive the result; `name`
 * (copied; NULL = "<memory>") is used in messages. Same rules and errors as qd_plan_file_open. */
qd_status_t qd_plan_file_open_memory(const void* data, size_t size, const char* name, qd_allocator_t allocator,
                                     uint32_t flags, qd_plan_file_t** out_pf);

void qd_plan_file_close(qd_plan_file_t* pf); /* NULL-safe */

/* Recomputes the checksum of every section, weights included, reporting bytes through `sink` (NULL = the process
 * default). Returns the first PLAN_SECTION_CHECKSUM mismatch, or CANCELLED when the sink's callback asks to stop. */
qd_status_t qd_plan_file_verify(const qd_plan_file_t* pf, const qd_progress_sink_t* sink);

/* Recomputes one section's checksum (by table index), advancing `progress` (may be NULL) by its bytes; for callers
 * that report per section (qdc inspect --verify). *out_actual (may be NULL) receives the computed value unless
 * cancelled. Errors: PLAN_SECTION_CHECKSUM, CANCELLED, INVALID_ARGUMENT (index out of range). */
qd_status_t qd_plan_file_verify_section(const qd_plan_file_t* pf, size_t index, qd_progress_t* progress,
                                        uint64_t* out_actual);

const char* qd_plan_file_path(const qd_plan_file_t* pf);   /* as given to open (or the memory image's name) */
uint64_t qd_plan_file_size(const qd_plan_file_t* pf);
const void* qd_plan_file_image(const qd_plan_file_t* pf);  /* the whole file: byte 0 is the header */
uint16_t qd_plan_file_version_major(const qd_plan_file_t* pf);
uint16_t qd_plan_file_version_minor(const qd_plan_file_t* pf);
uint32_t qd_plan_file_flags(const qd_plan_file_t* pf);      /* the header's flags */
const char* qd_plan_file_writer(const qd_plan_file_t* pf);  /* "qd 0.1.0"; may be empty */
uint64_t qd_plan_file_header_checksum(const qd_plan_file_t* pf);
uint64_t qd_plan_file_table_offset(const qd_plan_file_t* pf);

size_t qd_plan_file_section_count(const qd_plan_file_t* pf);
/* The index-th entry of the section table (file order); NULL when out of range. */
const qd_plan_section_t* qd_plan_file_section(const qd_plan_file_t* pf, size_t index);
/* The section of this kind and exact name; NULL when absent. O(log n). */
const qd_plan_section_t* qd_plan_file_find(const qd_plan_file_t* pf, uint32_t kind, const char* name);

/* Format helpers, shared with the writer and qdc inspect. */
/* Writes the four characters of a kind, escaped as "\xNN" where not printable (at most 16 bytes + NUL). */
char* qd_plan_kind_text(uint32_t kind, char* buf, size_t size);
/* QD_PLAN_FOURCC of a 4-character string; 0 when the text is not exactly four ASCII letters or digits. */
uint32_t qd_plan_kind_from_text(const char* text);
bool qd_plan_kind_is_known(uint32_t kind);
/* Whether the format defines a known kind as REQUIRED (META, PROG, WGHT, WIDX); false for unknown kinds. */
bool qd_plan_kind_is_required(uint32_t kind);
/* The smallest alignment (log2) the format allows for a kind: 12 for WGHT, 3 otherwise. */
unsigned qd_plan_kind_min_align_log2(uint32_t kind);
/* One line on what a kind holds ("weight data"); "unknown" for unknown kinds. */
const char* qd_plan_kind_description(uint32_t kind);

#ifdef __cplusplus
}
#endif
#endif /* QD_PLAN_FILE_H */
