/* qd: the .qplan container format, as C structs. docs/plan-format.md is the prose version of this file.
 *
 * A plan is one file, memory-mapped by qdrun:
 *
 *   offset 0     qd_plan_header_t (128 bytes)
 *   ...          sections, in the order the writer wrote them; each starts at the next multiple of its own
 *                alignment after the previous one ends, and the bytes skipped to get there are zero
 *   ...          the section table: section_count entries of entry_size bytes, at the next multiple of 8
 *   file_size    (the end: nothing follows the last section or the table, whichever ends later)
 *
 * All integers are little-endian. The structs below describe the bytes exactly (the asserts pin every size and
 * offset), but readers should decode fields with explicit little-endian loads from the byte offsets given by
 * offsetof, not by casting the mapping: a mapped image need not be aligned and the host need not be little-endian.
 *
 * Checksums are XXH64 with seed 0 (ir/hash64.h):
 *   - header_checksum covers the 128 header bytes with header_checksum itself set to zero, followed by the whole
 *     section table; so every header and table byte is covered, and a header cannot be paired with another table;
 *   - each entry's checksum covers that section's `size` bytes.
 * The padding between regions is not checksummed: it must be zero, which the reader checks byte by byte.
 *
 * Versioning: major changes when an older reader would misread the file (it rejects it, saying which qd it
 * needs); minor changes for additions an older reader can skip: new optional section kinds, new optional header
 * flags, and (only in a newer minor) meaning for reserved bytes and larger table entries. A reader accepts any
 * minor of its major.
 */
#ifndef QD_PLAN_FORMAT_H
#define QD_PLAN_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* 0x89 is not ASCII (catches 7-bit channels), "\r\n" then "\x1a\n" catch line-ending conversion either way and the
 * DOS end-of-file byte, as PNG's signature does; "QDP" lets a hex dump say what the file is. */
#define QD_PLAN_MAGIC "\x89QDP\r\n\x1a\n"
#define QD_PLAN_MAGIC_SIZE 8

#define QD_PLAN_VERSION_MAJOR 1
#define QD_PLAN_VERSION_MINOR 0

#define QD_PLAN_HEADER_SIZE 128
#define QD_PLAN_ENTRY_SIZE 64       /* entry_size of every 1.0 file */
#define QD_PLAN_ENTRY_SIZE_MAX 256  /* a newer minor may grow entries up to this; the extra bytes are skipped */
#define QD_PLAN_WRITER_SIZE 16
#define QD_PLAN_NAME_SIZE 24
#define QD_PLAN_MAX_SECTIONS 65536u /* bounds what a hostile table can make the reader allocate */
#define QD_PLAN_TABLE_ALIGN 8

/* Section alignment is stored as log2: 8 bytes (so u64 fields can be read in place) to 64 KiB (the largest page
 * size qd runs on). */
#define QD_PLAN_ALIGN_LOG2_MIN 3
#define QD_PLAN_ALIGN_LOG2_MAX 16
/* WGHT sections start on a 4 KiB boundary so that they can be mapped, registered with cudaHostRegister and
 * copied to the GPU in place. */
#define QD_PLAN_WEIGHT_ALIGN_LOG2 12

/* Header flags. The low 16 bits are "required": a reader that finds a bit it does not know set there must reject
 * the file (the bit changes how the file must be read). The high 16 bits are advisory: unknown ones are ignored.
 * No flag is defined in 1.0. */
#define QD_PLAN_HEADER_FLAGS_REQUIRED_MASK 0x0000FFFFu
#define QD_PLAN_HEADER_FLAGS_KNOWN 0x00000000u

/* Section flags. REQUIRED: a reader that does not know the section's kind must reject the plan (it cannot run the
 * plan correctly without understanding it); without it, an unknown section is skipped. Other bits: zero. */
#define QD_PLAN_SECTION_REQUIRED 0x0001u
#define QD_PLAN_SECTION_FLAGS_KNOWN 0x0001u

/* A section kind is four ASCII letters or digits; the u32 is those bytes read little-endian, so the file shows
 * them in order ("META"). */
#define QD_PLAN_FOURCC(a, b, c, d)                                                                  \
  ((uint32_t)(uint8_t)(a) | ((uint32_t)(uint8_t)(b) << 8) | ((uint32_t)(uint8_t)(c) << 16) | \
   ((uint32_t)(uint8_t)(d) << 24))

enum {
  QD_PLAN_KIND_META = QD_PLAN_FOURCC('M', 'E', 'T', 'A'), /* required: JSON metadata (model, components, options) */
  QD_PLAN_KIND_PROG = QD_PLAN_FOURCC('P', 'R', 'O', 'G'), /* required: one component's step program */
  QD_PLAN_KIND_WGHT = QD_PLAN_FOURCC('W', 'G', 'H', 'T'), /* required: weight data, 4 KiB aligned */
  QD_PLAN_KIND_WIDX = QD_PLAN_FOURCC('W', 'I', 'D', 'X'), /* required: the weight index into WGHT */
  QD_PLAN_KIND_KERN = QD_PLAN_FOURCC('K', 'E', 'R', 'N'), /* optional: GPU code (cubins, PTX) */
  QD_PLAN_KIND_TUNE = QD_PLAN_FOURCC('T', 'U', 'N', 'E'), /* optional: autotuning records */
  QD_PLAN_KIND_TOKN = QD_PLAN_FOURCC('T', 'O', 'K', 'N'), /* optional: tokenizer data */
  QD_PLAN_KIND_SCHD = QD_PLAN_FOURCC('S', 'C', 'H', 'D'), /* optional: offload schedules */
};

typedef struct qd_plan_header {
  uint8_t magic[QD_PLAN_MAGIC_SIZE]; /* QD_PLAN_MAGIC */
  uint16_t version_major;            /* QD_PLAN_VERSION_MAJOR */
  uint16_t version_minor;            /* any; a reader of the same major accepts newer minors */
  uint32_t flags;                    /* QD_PLAN_HEADER_FLAGS_* */
  uint64_t file_size;                /* the whole file, in bytes: catches truncation and appended bytes */
  uint64_t table_offset;             /* multiple of 8, at or after the header */
  uint32_t section_count;            /* at most QD_PLAN_MAX_SECTIONS; 0 is a valid (empty) container */
  uint32_t entry_size;               /* QD_PLAN_ENTRY_SIZE */
  uint64_t header_checksum;          /* XXH64 of this header (this field zero) then the table */
  char writer[QD_PLAN_WRITER_SIZE];  /* e.g. "qd 0.1.0": printable ASCII, NUL-padded, at least one NUL */
  uint8_t reserved[64];              /* zero */
} qd_plan_header_t;

_Static_assert(sizeof(qd_plan_header_t) == QD_PLAN_HEADER_SIZE, "plan header is 128 bytes");
_Static_assert(offsetof(qd_plan_header_t, magic) == 0, "header layout");
_Static_assert(offsetof(qd_plan_header_t, version_major) == 8, "header layout");
_Static_assert(offsetof(qd_plan_header_t, version_minor) == 10, "header layout");
_Static_assert(offsetof(qd_plan_header_t, flags) == 12, "header layout");
_Static_assert(offsetof(qd_plan_header_t, file_size) == 16, "header layout");
_Static_assert(offsetof(qd_plan_header_t, table_offset) == 24, "header layout");
_Static_assert(offsetof(qd_plan_header_t, section_count) == 32, "header layout");
_Static_assert(offsetof(qd_plan_header_t, entry_size) == 36, "header layout");
_Static_assert(offsetof(qd_plan_header_t, header_checksum) == 40, "header layout");
_Static_assert(offsetof(qd_plan_header_t, writer) == 48, "header layout");
_Static_assert(offsetof(qd_plan_header_t, reserved) == 64, "header layout");

typedef struct qd_plan_section_entry {
  uint32_t kind;                   /* QD_PLAN_KIND_* or another fourcc */
  uint16_t flags;                  /* QD_PLAN_SECTION_REQUIRED; other bits zero */
  uint8_t align_log2;              /* QD_PLAN_ALIGN_LOG2_MIN..MAX; at least 12 for WGHT */
  uint8_t reserved0;               /* zero */
  uint64_t offset;                 /* from the start of the file; a multiple of 1 << align_log2 */
  uint64_t size;                   /* bytes; may be 0 */
  uint64_t checksum;               /* XXH64 of the section's bytes */
  char name[QD_PLAN_NAME_SIZE];    /* e.g. "transformer"; printable ASCII, NUL-padded, at least one NUL; may be
                                    * empty. (kind, name) is unique in a plan. */
  uint8_t reserved1[8];            /* zero */
} qd_plan_section_entry_t;

_Static_assert(sizeof(qd_plan_section_entry_t) == QD_PLAN_ENTRY_SIZE, "plan section entry is 64 bytes");
_Static_assert(offsetof(qd_plan_section_entry_t, kind) == 0, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, flags) == 4, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, align_log2) == 6, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, reserved0) == 7, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, offset) == 8, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, size) == 16, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, checksum) == 24, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, name) == 32, "entry layout");
_Static_assert(offsetof(qd_plan_section_entry_t, reserved1) == 56, "entry layout");

#endif /* QD_PLAN_FORMAT_H */
