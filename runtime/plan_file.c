/* Plan-file reader: see include/qd/plan_file.h for the contract and include/qd/plan_format.h for the bytes.
 *
 * Order of checks (the first failure wins; it is the order of qd/errors/plan.def):
 *   1. the magic (or what the file looks like instead), the header's size, the major version: before anything
 *      else, because a newer major may change everything after it, checksums included;
 *   2. the recorded file size, the table's entry size, count and placement, all against the real length with
 *      overflow-safe arithmetic: nothing is read from the table before it is known to lie inside the image;
 *   3. the checksum over header and table: from here on, a random corruption of header or table has been caught,
 *      so the rules below fire only for files written wrongly (each has a hand-made test);
 *   4. header flags, reserved bytes, the writer string; then each table entry in table order;
 *   5. unique (kind, name); the layout, walking header, table and sections sorted by offset;
 *   6. section checksums (WGHT only when asked).
 * Data pointers are formed only after step 5. All multi-byte fields are decoded with explicit little-endian loads
 * at their offsetof positions, so unaligned images and big-endian hosts read the same bytes. */
#include "qd/plan_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ir/file_read.h"
#include "ir/hash64.h"
#include "qd/log.h"
#include "qd/version.h"

struct qd_plan_file {
  qd_allocator_t alloc;
  char* path;
  size_t path_size;
  const unsigned char* base;
  uint64_t size;
  bool mapped;
  uint16_t major, minor;
  uint32_t flags;
  uint32_t entry_size;
  uint64_t table_offset;
  uint64_t header_checksum;
  char writer[QD_PLAN_WRITER_SIZE + 1];
  qd_plan_section_t* sections; /* table order */
  size_t count;
  const qd_plan_section_t** by_key; /* sorted by (kind, name), for find and the duplicate check */
};

#define QD_PLAN_BAD_(detail, ...) QD_ERR(BAD_INPUT, detail, __VA_ARGS__)
#define QD_PLAN_UNSUPPORTED_(detail, ...) QD_ERR(UNSUPPORTED, detail, __VA_ARGS__)

/* Bytes hashed between progress updates while verifying: large enough to keep the hash at full speed, small enough
 * that a bar moves several times a second. */
#define QD_PLAN_VERIFY_CHUNK ((size_t)32 << 20)

/* Fuzzing builds (tools/run_fuzz.sh defines the conventional macro) compute checksums but accept mismatches, as
 * libpng and zlib do under fuzzers: otherwise almost no mutated input would get past the header checksum, and every
 * rule after it would go unfuzzed. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define QD_PLAN_ENFORCE_CHECKSUMS_ 0
#else
#define QD_PLAN_ENFORCE_CHECKSUMS_ 1
#endif

/* --- kinds ------------------------------------------------------------------------------------------------- */

static const struct {
  uint32_t kind;
  bool required;
  unsigned min_align_log2;
  const char* description;
} qd_plan_kinds_[] = {
    {QD_PLAN_KIND_META, true, QD_PLAN_ALIGN_LOG2_MIN, "metadata (JSON)"},
    {QD_PLAN_KIND_PROG, true, QD_PLAN_ALIGN_LOG2_MIN, "step program of a component"},
    {QD_PLAN_KIND_WGHT, true, QD_PLAN_WEIGHT_ALIGN_LOG2, "weight data"},
    {QD_PLAN_KIND_WIDX, true, QD_PLAN_ALIGN_LOG2_MIN, "weight index"},
    {QD_PLAN_KIND_KERN, false, QD_PLAN_ALIGN_LOG2_MIN, "GPU code (cubin, PTX)"},
    {QD_PLAN_KIND_TUNE, false, QD_PLAN_ALIGN_LOG2_MIN, "tuning records"},
    {QD_PLAN_KIND_TOKN, false, QD_PLAN_ALIGN_LOG2_MIN, "tokenizer data"},
    {QD_PLAN_KIND_SCHD, false, QD_PLAN_ALIGN_LOG2_MIN, "offload schedules"},
};
#define QD_PLAN_KIND_COUNT_ (sizeof qd_plan_kinds_ / sizeof qd_plan_kinds_[0])

static int qd_plan_kind_row_(uint32_t kind) {
  for (size_t i = 0; i < QD_PLAN_KIND_COUNT_; i++)
    if (qd_plan_kinds_[i].kind == kind) return (int)i;
  return -1;
}

bool qd_plan_kind_is_known(uint32_t kind) { return qd_plan_kind_row_(kind) >= 0; }

bool qd_plan_kind_is_required(uint32_t kind) {
  int r = qd_plan_kind_row_(kind);
  return r >= 0 && qd_plan_kinds_[r].required;
}

unsigned qd_plan_kind_min_align_log2(uint32_t kind) {
  int r = qd_plan_kind_row_(kind);
  return r >= 0 ? qd_plan_kinds_[r].min_align_log2 : QD_PLAN_ALIGN_LOG2_MIN;
}

const char* qd_plan_kind_description(uint32_t kind) {
  int r = qd_plan_kind_row_(kind);
  return r >= 0 ? qd_plan_kinds_[r].description : "unknown";
}

static bool qd_plan_kind_char_ok_(unsigned c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool qd_plan_kind_valid_(uint32_t kind) {
  for (int i = 0; i < 4; i++)
    if (!qd_plan_kind_char_ok_((kind >> (8 * i)) & 0xFF)) return false;
  return true;
}

char* qd_plan_kind_text(uint32_t kind, char* buf, size_t size) {
  if (!buf || size == 0) return buf;
  size_t o = 0;
  buf[0] = '\0';
  for (int i = 0; i < 4; i++) {
    unsigned c = (kind >> (8 * i)) & 0xFF;
    int n = (c >= 0x20 && c < 0x7F && c != '\\') ? snprintf(buf + o, size - o, "%c", (int)c)
                                                 : snprintf(buf + o, size - o, "\\x%02x", c);
    if (n < 0 || (size_t)n >= size - o) break;
    o += (size_t)n;
  }
  return buf;
}

uint32_t qd_plan_kind_from_text(const char* text) {
  if (!text || strlen(text) != 4) return 0;
  uint32_t k = QD_PLAN_FOURCC(text[0], text[1], text[2], text[3]);
  return qd_plan_kind_valid_(k) ? k : 0;
}

/* --- little helpers ---------------------------------------------------------------------------------------- */

static uint16_t qd_plan_le16_(const unsigned char* p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t qd_plan_le32_(const unsigned char* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t qd_plan_le64_(const unsigned char* p) {
  return (uint64_t)qd_plan_le32_(p) | ((uint64_t)qd_plan_le32_(p + 4) << 32);
}

#define QD_PLAN_H_(field) offsetof(qd_plan_header_t, field)
#define QD_PLAN_E_(field) offsetof(qd_plan_section_entry_t, field)

/* Index of the first non-zero byte of p[0..n), or n. */
static size_t qd_plan_first_nonzero_(const unsigned char* p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return i;
  return n;
}

/* A fixed text field: printable ASCII (0x20..0x7E), then NUL bytes to the end, at least one NUL. On failure *bad is
 * the offending byte's position. */
static bool qd_plan_text_field_ok_(const unsigned char* p, size_t n, size_t* bad) {
  size_t i = 0;
  while (i < n && p[i] >= 0x20 && p[i] < 0x7F) i++;
  if (i == n || p[i] != 0) {
    *bad = i == n ? n - 1 : i;
    return false;
  }
  for (; i < n; i++)
    if (p[i]) {
      *bad = i;
      return false;
    }
  return true;
}

static uint64_t qd_plan_align_up_(uint64_t v, unsigned log2) {
  uint64_t a = (uint64_t)1 << log2;
  return (v + a - 1) & ~(a - 1); /* callers keep v below 2^63, so this cannot wrap */
}

/* "section 3 (WGHT \"transformer\")" once kind and name are validated; "section 3" before. */
typedef struct {
  char s[80];
} qd_plan_label_t;

static qd_plan_label_t qd_plan_label_(const qd_plan_section_t* s, bool named) {
  qd_plan_label_t l;
  if (named)
    snprintf(l.s, sizeof l.s, "section %u (%s \"%s\")", s->index, s->kind_text, s->name);
  else
    snprintf(l.s, sizeof l.s, "section %u", s->index);
  return l;
}

/* --- what a non-plan looks like ------------------------------------------------------------------------------ */

static bool qd_plan_has_(const unsigned char* p, uint64_t size, const char* magic, size_t n) {
  return size >= n && memcmp(p, magic, n) == 0;
}

/* A phrase for the message, or NULL when nothing obvious. Only recognition: no rule depends on it. */
static const char* qd_plan_sniff_(const unsigned char* p, uint64_t size) {
  if (size >= 9 && p[8] == '{') {
    uint64_t n = qd_plan_le64_(p);
    if (n >= 2 && n <= size - 8) return "it looks like a safetensors checkpoint (a plan is what qdc compiles from one)";
  }
  if (qd_plan_has_(p, size, "\x89PNG", 4)) return "it looks like a PNG image";
  if (qd_plan_has_(p, size, "GGUF", 4)) return "it looks like a GGUF model file";
  if (qd_plan_has_(p, size, "PK\x03\x04", 4)) return "it looks like a zip archive (such as a PyTorch .pt/.bin file)";
  if (qd_plan_has_(p, size, "\x7f" "ELF", 4)) return "it looks like an executable (ELF)";
  if (qd_plan_has_(p, size, "\x1f\x8b", 2)) return "it looks like gzip-compressed data";
  if (size >= 2 && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) return "it looks like a Python pickle (a PyTorch .bin?)";
  uint64_t i = 0;
  if (qd_plan_has_(p, size, "\xEF\xBB\xBF", 3)) i = 3; /* UTF-8 byte-order mark */
  while (i < size && i < 4096 && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  if (i < size && (p[i] == '{' || p[i] == '[')) {
    size_t window = size < 65536 ? (size_t)size : 65536;
    if (memmem(p, window, "\"qd_graph\"", 10)) return "it looks like a qd graph description (JSON)";
    return "it looks like JSON text";
  }
  return NULL;
}

/* The magic's first four bytes survived but the rest did not (or the high bit was stripped): say how it got
 * damaged, since the fix is to copy the file again in binary mode. */
static qd_status_t qd_plan_check_magic_(const qd_plan_file_t* pf) {
  const unsigned char* p = pf->base;
  uint64_t n = pf->size;
  if (n == 0) return QD_PLAN_BAD_(PLAN_NOT_A_PLAN, "%s: the file is empty; it is not a compiled plan", pf->path);
  if (n < QD_PLAN_MAGIC_SIZE && memcmp(p, QD_PLAN_MAGIC, (size_t)n) == 0)
    return QD_PLAN_BAD_(PLAN_FILE_TOO_SMALL, "%s: the file is %llu bytes; a plan starts with a %d-byte header (the "
                        "file is truncated)", pf->path, (unsigned long long)n, QD_PLAN_HEADER_SIZE);
  if (n >= QD_PLAN_MAGIC_SIZE && memcmp(p, QD_PLAN_MAGIC, QD_PLAN_MAGIC_SIZE) == 0) return QD_OK;
  if (n >= 4 && (p[0] == 0x89 || p[0] == 0x09) && memcmp(p + 1, "QDP", 3) == 0) {
    char got[64];
    size_t o = 0;
    for (size_t i = 0; i < QD_PLAN_MAGIC_SIZE && i < n; i++)
      o += (size_t)snprintf(got + o, sizeof got - o, "%s%02x", i ? " " : "", p[i]);
    const char* why = p[0] == 0x09 ? "the high bit of the first byte was stripped (a 7-bit transfer)"
                      : (n >= 5 && p[4] == '\n') ? "CR LF became LF (a text-mode transfer or a line-ending conversion)"
                      : (n >= 6 && p[4] == '\r' && p[5] == '\r') ? "LF became CR LF (a text-mode transfer)"
                                                                   : "its line-ending bytes were changed";
    return QD_PLAN_BAD_(PLAN_MAGIC_MANGLED, "%s: the file starts like a plan, but its magic bytes are %s instead of "
                        "89 51 44 50 0d 0a 1a 0a: %s; copy the plan again in binary mode", pf->path, got, why);
  }
  const char* looks = qd_plan_sniff_(p, n);
  return QD_PLAN_BAD_(PLAN_NOT_A_PLAN, "%s: not a compiled plan (it does not start with the .qplan magic)%s%s",
                      pf->path, looks ? "; " : "", looks ? looks : "");
}

/* --- header ---------------------------------------------------------------------------------------------------- */

static qd_status_t qd_plan_check_header_(qd_plan_file_t* pf) {
  const unsigned char* h = pf->base;
  QD_TRY(qd_plan_check_magic_(pf));
  if (pf->size < QD_PLAN_HEADER_SIZE)
    return QD_PLAN_BAD_(PLAN_FILE_TOO_SMALL, "%s: the file is %llu bytes; a plan starts with a %d-byte header (the "
                        "file is truncated)", pf->path, (unsigned long long)pf->size, QD_PLAN_HEADER_SIZE);
  pf->major = qd_plan_le16_(h + QD_PLAN_H_(version_major));
  pf->minor = qd_plan_le16_(h + QD_PLAN_H_(version_minor));
  if (pf->major == 0)
    return QD_PLAN_BAD_(PLAN_VERSION_INVALID, "%s: version_major is 0; no qd writes plan format 0.x (this one reads "
                        "%d.x)", pf->path, QD_PLAN_VERSION_MAJOR);
  if (pf->major > QD_PLAN_VERSION_MAJOR) {
    /* The writer field is shown only when it is clean text; nothing past the version is trusted yet. */
    size_t bad;
    bool clean = qd_plan_text_field_ok_(h + QD_PLAN_H_(writer), QD_PLAN_WRITER_SIZE, &bad);
    return QD_PLAN_UNSUPPORTED_(PLAN_VERSION_NEWER, "%s: plan format %u.%u needs a newer qd (this one, %s, reads "
                                "%d.x)%s%s%s", pf->path, pf->major, pf->minor, "qd " QD_VERSION_STRING,
                                QD_PLAN_VERSION_MAJOR, clean ? "; it was written by \"" : "",
                                clean ? (const char*)h + QD_PLAN_H_(writer) : "", clean ? "\"" : "");
  }
  bool newer_minor = pf->minor > QD_PLAN_VERSION_MINOR;

  uint64_t recorded = qd_plan_le64_(h + QD_PLAN_H_(file_size));
  if (recorded != pf->size)
    return QD_PLAN_BAD_(PLAN_FILE_SIZE, "%s: file_size in the header is %llu bytes, but the file is %llu bytes (%s)",
                        pf->path, (unsigned long long)recorded, (unsigned long long)pf->size,
                        recorded > pf->size ? "truncated: it was not copied or written completely"
                                            : "bytes were appended to it");

  uint32_t es = qd_plan_le32_(h + QD_PLAN_H_(entry_size));
  bool es_ok = es == QD_PLAN_ENTRY_SIZE ||
               (newer_minor && es > QD_PLAN_ENTRY_SIZE && es <= QD_PLAN_ENTRY_SIZE_MAX && es % 8 == 0);
  if (!es_ok)
    return QD_PLAN_BAD_(PLAN_ENTRY_SIZE, "%s: entry_size is %u; format %u.%u has %d-byte section table entries%s",
                        pf->path, es, pf->major, pf->minor, QD_PLAN_ENTRY_SIZE,
                        newer_minor ? " (a newer minor may use 64..256 in steps of 8)" : "");
  pf->entry_size = es;

  uint32_t count = qd_plan_le32_(h + QD_PLAN_H_(section_count));
  if (count > QD_PLAN_MAX_SECTIONS)
    return QD_PLAN_BAD_(PLAN_TOO_MANY_SECTIONS, "%s: section_count is %u; at most %u are allowed", pf->path, count,
                        QD_PLAN_MAX_SECTIONS);

  uint64_t to = qd_plan_le64_(h + QD_PLAN_H_(table_offset));
  if (to < QD_PLAN_HEADER_SIZE || to % QD_PLAN_TABLE_ALIGN != 0)
    return QD_PLAN_BAD_(PLAN_TABLE_OFFSET, "%s: table_offset is %llu; the section table must start at or after the "
                        "%d-byte header, on a multiple of %d", pf->path, (unsigned long long)to, QD_PLAN_HEADER_SIZE,
                        QD_PLAN_TABLE_ALIGN);
  uint64_t table_bytes = (uint64_t)count * es; /* at most 2^16 * 256: no overflow */
  if (to > pf->size || table_bytes > pf->size - to)
    return QD_PLAN_BAD_(PLAN_TABLE_RANGE, "%s: the section table (%u entries of %u bytes at offset %llu) ends at %llu, "
                        "past the end of the file (%llu bytes)", pf->path, count, es, (unsigned long long)to,
                        (unsigned long long)(to + table_bytes), (unsigned long long)pf->size);
  pf->table_offset = to;
  pf->count = count;

  /* The checksum covers the header with its own field zeroed, then the table. */
  static const unsigned char zero8[8];
  qd_hash64_state_t hs;
  qd_hash64_init(&hs, 0);
  qd_hash64_update(&hs, h, QD_PLAN_H_(header_checksum));
  qd_hash64_update(&hs, zero8, 8);
  qd_hash64_update(&hs, h + QD_PLAN_H_(header_checksum) + 8, QD_PLAN_HEADER_SIZE - QD_PLAN_H_(header_checksum) - 8);
  qd_hash64_update(&hs, h + to, (size_t)table_bytes);
  uint64_t want = qd_plan_le64_(h + QD_PLAN_H_(header_checksum));
  uint64_t got = qd_hash64_digest(&hs);
  if (want != got && QD_PLAN_ENFORCE_CHECKSUMS_)
    return QD_PLAN_BAD_(PLAN_HEADER_CHECKSUM, "%s: header_checksum is 0x%016llx, but the header and section table hash "
                        "to 0x%016llx; the file is corrupt", pf->path, (unsigned long long)want,
                        (unsigned long long)got);
  pf->header_checksum = want;

  pf->flags = qd_plan_le32_(h + QD_PLAN_H_(flags));
  uint32_t unknown = pf->flags & QD_PLAN_HEADER_FLAGS_REQUIRED_MASK & ~QD_PLAN_HEADER_FLAGS_KNOWN;
  if (unknown)
    return QD_PLAN_UNSUPPORTED_(PLAN_HEADER_FLAGS, "%s: header flags 0x%08x set required flag bits 0x%08x that this "
                                "qd does not know; the plan needs a newer qd", pf->path, pf->flags, unknown);
  if (!newer_minor) {
    size_t nz = qd_plan_first_nonzero_(h + QD_PLAN_H_(reserved), sizeof ((qd_plan_header_t*)0)->reserved);
    if (nz < sizeof ((qd_plan_header_t*)0)->reserved)
      return QD_PLAN_BAD_(PLAN_HEADER_RESERVED, "%s: reserved header byte at offset %zu is 0x%02x; reserved bytes "
                          "must be zero in format %u.%u", pf->path, QD_PLAN_H_(reserved) + nz,
                          h[QD_PLAN_H_(reserved) + nz], pf->major, pf->minor);
  }
  size_t bad;
  if (!qd_plan_text_field_ok_(h + QD_PLAN_H_(writer), QD_PLAN_WRITER_SIZE, &bad))
    return QD_PLAN_BAD_(PLAN_WRITER_STRING, "%s: writer byte %zu (file offset %zu) is 0x%02x; the writer field must "
                        "be printable ASCII followed by NUL padding, with at least one NUL", pf->path, bad,
                        QD_PLAN_H_(writer) + bad, h[QD_PLAN_H_(writer) + bad]);
  memcpy(pf->writer, h + QD_PLAN_H_(writer), QD_PLAN_WRITER_SIZE);
  pf->writer[QD_PLAN_WRITER_SIZE] = '\0';
  return QD_OK;
}

/* --- entries ------------------------------------------------------------------------------------------------------ */

static qd_status_t qd_plan_parse_entry_(const qd_plan_file_t* pf, uint32_t index, qd_plan_section_t* s) {
  const unsigned char* e = pf->base + pf->table_offset + (uint64_t)index * pf->entry_size;
  uint64_t eoff = pf->table_offset + (uint64_t)index * pf->entry_size; /* for messages */
  memset(s, 0, sizeof *s);
  s->index = index;
  s->kind = qd_plan_le32_(e + QD_PLAN_E_(kind));
  qd_plan_kind_text(s->kind, s->kind_text, sizeof s->kind_text);
  if (!qd_plan_kind_valid_(s->kind)) {
    char shown[20];
    return QD_PLAN_BAD_(PLAN_SECTION_KIND, "%s: section %u (table entry at offset %llu): kind is \"%s\" (0x%08x); "
                        "a kind is four ASCII letters or digits", pf->path, index, (unsigned long long)eoff,
                        qd_plan_kind_text(s->kind, shown, sizeof shown), s->kind);
  }
  if (pf->minor <= QD_PLAN_VERSION_MINOR) {
    size_t nz1 = qd_plan_first_nonzero_(e + QD_PLAN_E_(reserved1), sizeof ((qd_plan_section_entry_t*)0)->reserved1);
    size_t at = e[QD_PLAN_E_(reserved0)] ? QD_PLAN_E_(reserved0)
                : nz1 < sizeof ((qd_plan_section_entry_t*)0)->reserved1 ? QD_PLAN_E_(reserved1) + nz1 : 0;
    if (at)
      return QD_PLAN_BAD_(PLAN_SECTION_RESERVED, "%s: section %u (%s): reserved byte %zu of its table entry (file "
                          "offset %llu) is 0x%02x; reserved bytes must be zero in format %u.%u", pf->path, index,
                          s->kind_text, at, (unsigned long long)(eoff + at), e[at], pf->major, pf->minor);
  }
  s->flags = qd_plan_le16_(e + QD_PLAN_E_(flags));
  if (s->flags & ~QD_PLAN_SECTION_FLAGS_KNOWN)
    return QD_PLAN_BAD_(PLAN_SECTION_FLAGS, "%s: section %u (%s): flags are 0x%04x; only 0x%04x (REQUIRED) is "
                        "defined", pf->path, index, s->kind_text, s->flags, QD_PLAN_SECTION_FLAGS_KNOWN);
  s->required = (s->flags & QD_PLAN_SECTION_REQUIRED) != 0;
  s->known = qd_plan_kind_is_known(s->kind);
  size_t bad;
  if (!qd_plan_text_field_ok_(e + QD_PLAN_E_(name), QD_PLAN_NAME_SIZE, &bad))
    return QD_PLAN_BAD_(PLAN_SECTION_NAME, "%s: section %u (%s): name byte %zu is 0x%02x; a name is printable ASCII "
                        "followed by NUL padding, at most %d characters", pf->path, index, s->kind_text, bad,
                        e[QD_PLAN_E_(name) + bad], QD_PLAN_NAME_SIZE - 1);
  memcpy(s->name, e + QD_PLAN_E_(name), QD_PLAN_NAME_SIZE);
  qd_plan_label_t label = qd_plan_label_(s, true);

  s->align_log2 = e[QD_PLAN_E_(align_log2)];
  if (s->align_log2 < QD_PLAN_ALIGN_LOG2_MIN || s->align_log2 > QD_PLAN_ALIGN_LOG2_MAX)
    return QD_PLAN_BAD_(PLAN_SECTION_ALIGNMENT, "%s: %s: align_log2 is %u; it must be %d..%d (8 bytes to 64 KiB)",
                        pf->path, label.s, s->align_log2, QD_PLAN_ALIGN_LOG2_MIN, QD_PLAN_ALIGN_LOG2_MAX);
  s->offset = qd_plan_le64_(e + QD_PLAN_E_(offset));
  s->size = qd_plan_le64_(e + QD_PLAN_E_(size));
  s->checksum = qd_plan_le64_(e + QD_PLAN_E_(checksum));
  if (s->offset > pf->size || s->size > pf->size - s->offset)
    return QD_PLAN_BAD_(PLAN_SECTION_RANGE, "%s: %s: offset %llu + size %llu %s the end of the file (%llu bytes)",
                        pf->path, label.s, (unsigned long long)s->offset, (unsigned long long)s->size,
                        s->size > UINT64_MAX - s->offset ? "overflows 64 bits, far past" : "is past",
                        (unsigned long long)pf->size);
  if (s->offset & (((uint64_t)1 << s->align_log2) - 1))
    return QD_PLAN_BAD_(PLAN_SECTION_MISALIGNED, "%s: %s: offset %llu is not a multiple of its alignment %llu "
                        "(align_log2 %u)", pf->path, label.s, (unsigned long long)s->offset,
                        (unsigned long long)((uint64_t)1 << s->align_log2), s->align_log2);
  if (s->known && s->required != qd_plan_kind_is_required(s->kind))
    return QD_PLAN_BAD_(PLAN_SECTION_REQUIRED_FLAG, "%s: %s: the REQUIRED flag is %s, but the format defines %s "
                        "sections as %s", pf->path, label.s, s->required ? "set" : "clear", s->kind_text,
                        qd_plan_kind_is_required(s->kind) ? "required" : "optional");
  if (s->align_log2 < qd_plan_kind_min_align_log2(s->kind))
    return QD_PLAN_BAD_(PLAN_SECTION_KIND_ALIGNMENT, "%s: %s: aligned to %llu bytes; %s sections must be aligned to at "
                        "least %llu bytes so that they can be mapped and pinned in place", pf->path, label.s,
                        (unsigned long long)((uint64_t)1 << s->align_log2), s->kind_text,
                        (unsigned long long)((uint64_t)1 << qd_plan_kind_min_align_log2(s->kind)));
  if (!s->known && s->required)
    return QD_PLAN_UNSUPPORTED_(PLAN_SECTION_UNKNOWN_REQUIRED, "%s: %s is of kind %s, which this qd (plan format %d.%d) "
                                "does not know, and it is marked required; the plan needs a newer qd", pf->path,
                                label.s, s->kind_text, QD_PLAN_VERSION_MAJOR, QD_PLAN_VERSION_MINOR);
  if (!s->known)
    QD_LOG_DEBUG("%s: skipping %s: kind %s is unknown to this qd and optional", pf->path, label.s, s->kind_text);
  return QD_OK;
}

static int qd_plan_key_cmp_(const void* a, const void* b) {
  const qd_plan_section_t* x = *(const qd_plan_section_t* const*)a;
  const qd_plan_section_t* y = *(const qd_plan_section_t* const*)b;
  if (x->kind != y->kind) return x->kind < y->kind ? -1 : 1;
  int c = strcmp(x->name, y->name);
  if (c) return c;
  return x->index < y->index ? -1 : x->index > y->index; /* stable: the first in the table is reported first */
}

/* --- layout ---------------------------------------------------------------------------------------------------- */

/* A region of the file: the header, the table, or a section. */
typedef struct {
  uint64_t begin, end;
  unsigned align_log2;
  int what; /* -2 header, -1 table, else a section index */
} qd_plan_region_t;

static int qd_plan_region_cmp_(const void* a, const void* b) {
  const qd_plan_region_t* x = a;
  const qd_plan_region_t* y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if ((x->what == -2) != (y->what == -2)) return x->what == -2 ? -1 : 1; /* the header comes first at offset 0 */
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return x->what < y->what ? -1 : x->what > y->what;
}

static qd_plan_label_t qd_plan_region_name_(const qd_plan_file_t* pf, const qd_plan_region_t* r) {
  qd_plan_label_t l;
  if (r->what == -2)
    snprintf(l.s, sizeof l.s, "the header");
  else if (r->what == -1)
    snprintf(l.s, sizeof l.s, "the section table");
  else
    l = qd_plan_label_(&pf->sections[r->what], true);
  return l;
}

static qd_status_t qd_plan_check_layout_(const qd_plan_file_t* pf) {
  size_t n = pf->count + 2;
  qd_plan_region_t* r;
  QD_TRY(qd_calloc(pf->alloc, n, sizeof *r, (void**)&r));
  r[0] = (qd_plan_region_t){0, QD_PLAN_HEADER_SIZE, 0, -2};
  r[1] = (qd_plan_region_t){pf->table_offset, pf->table_offset + (uint64_t)pf->count * pf->entry_size, 3, -1};
  for (size_t i = 0; i < pf->count; i++) {
    const qd_plan_section_t* s = &pf->sections[i];
    r[i + 2] = (qd_plan_region_t){s->offset, s->offset + s->size, s->align_log2, (int)i};
  }
  qsort(r, n, sizeof *r, qd_plan_region_cmp_);

  qd_status_t status = QD_OK;
  uint64_t cursor = r[0].end; /* the header: always first, at 0 */
  size_t prev = 0;            /* the region that ends at cursor */
  for (size_t i = 1; i < n && !status; i++) {
    qd_plan_label_t cur = qd_plan_region_name_(pf, &r[i]);
    qd_plan_label_t before = qd_plan_region_name_(pf, &r[prev]);
    if (r[i].begin < cursor) {
      status = QD_PLAN_BAD_(PLAN_SECTION_OVERLAP, "%s: %s [%llu, %llu) overlaps %s [%llu, %llu)", pf->path, cur.s,
                            (unsigned long long)r[i].begin, (unsigned long long)r[i].end, before.s,
                            (unsigned long long)r[prev].begin, (unsigned long long)r[prev].end);
      break;
    }
    uint64_t expected = qd_plan_align_up_(cursor, r[i].align_log2);
    if (r[i].begin > expected) {
      status = QD_PLAN_BAD_(PLAN_GAP, "%s: bytes [%llu, %llu) between %s (ends at %llu) and %s (starts at %llu) are "
                            "unused; alignment to %llu needs only %llu byte%s of padding, so %s should start at %llu",
                            pf->path, (unsigned long long)cursor, (unsigned long long)r[i].begin, before.s,
                            (unsigned long long)cursor, cur.s, (unsigned long long)r[i].begin,
                            (unsigned long long)((uint64_t)1 << r[i].align_log2),
                            (unsigned long long)(expected - cursor), expected - cursor == 1 ? "" : "s", cur.s,
                            (unsigned long long)expected);
      break;
    }
    /* begin == expected here: it is aligned (checked per entry) and the first aligned offset not before cursor */
    size_t pad = (size_t)(r[i].begin - cursor);
    size_t nz = qd_plan_first_nonzero_(pf->base + cursor, pad);
    if (nz < pad) {
      status = QD_PLAN_BAD_(PLAN_PADDING, "%s: byte %llu, in the padding between %s and %s, is 0x%02x; alignment "
                            "padding must be zero", pf->path, (unsigned long long)(cursor + nz), before.s, cur.s,
                            pf->base[cursor + nz]);
      break;
    }
    cursor = r[i].end; /* >= cursor, since begin is */
    prev = i;
  }
  if (!status && cursor != pf->size) {
    qd_plan_label_t last = qd_plan_region_name_(pf, &r[prev]);
    status = QD_PLAN_BAD_(PLAN_TRAILING_DATA, "%s: %llu byte%s [%llu, %llu) follow the end of %s, the last region of "
                          "the file; a plan ends where its last section or its table ends", pf->path,
                          (unsigned long long)(pf->size - cursor), pf->size - cursor == 1 ? "" : "s",
                          (unsigned long long)cursor, (unsigned long long)pf->size, last.s);
  }
  qd_free(pf->alloc, r, n * sizeof *r);
  return status;
}

/* --- checksums ----------------------------------------------------------------------------------------------- */

static qd_status_t qd_plan_hash_section_(const qd_plan_file_t* pf, const qd_plan_section_t* s, qd_progress_t* p,
                                         uint64_t* out) {
  qd_hash64_state_t hs;
  qd_hash64_init(&hs, 0);
  const unsigned char* d = s->data;
  uint64_t left = s->size;
  while (left > 0) {
    size_t n = left > QD_PLAN_VERIFY_CHUNK ? QD_PLAN_VERIFY_CHUNK : (size_t)left;
    qd_hash64_update(&hs, d, n);
    d += n;
    left -= n;
    if (p && !qd_progress_advance(p, n))
      return QD_ERR(CANCELLED, CANCELLED, "%s: verifying %s was cancelled", pf->path, qd_plan_label_(s, true).s);
  }
  *out = qd_hash64_digest(&hs);
  return QD_OK;
}

static qd_status_t qd_plan_mismatch_(const qd_plan_file_t* pf, const qd_plan_section_t* s, uint64_t got) {
  return QD_PLAN_BAD_(PLAN_SECTION_CHECKSUM, "%s: %s [%llu, %llu): checksum is 0x%016llx, but its bytes hash to "
                      "0x%016llx; the file is corrupt", pf->path, qd_plan_label_(s, true).s,
                      (unsigned long long)s->offset, (unsigned long long)(s->offset + s->size),
                      (unsigned long long)s->checksum, (unsigned long long)got);
}

qd_status_t qd_plan_file_verify_section(const qd_plan_file_t* pf, size_t index, qd_progress_t* progress,
                                        uint64_t* out_actual) {
  if (!pf || index >= pf->count)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_plan_file_verify_section: section %zu of %zu", index,
                  pf ? pf->count : 0);
  const qd_plan_section_t* s = &pf->sections[index];
  uint64_t got = 0;
  QD_TRY(qd_plan_hash_section_(pf, s, progress, &got));
  if (out_actual) *out_actual = got;
  return got == s->checksum || !QD_PLAN_ENFORCE_CHECKSUMS_ ? QD_OK : qd_plan_mismatch_(pf, s, got);
}

/* Verifies the sections `all` selects (every one, or all but WGHT), with a progress bar over their bytes. */
static qd_status_t qd_plan_verify_(const qd_plan_file_t* pf, const qd_progress_sink_t* sink, bool all) {
  uint64_t total = 0;
  for (size_t i = 0; i < pf->count; i++)
    if (all || pf->sections[i].kind != QD_PLAN_KIND_WGHT) total += pf->sections[i].size;
  qd_progress_t p;
  qd_progress_begin(&p, sink, "verifying plan", total, "B");
  qd_status_t status = QD_OK;
  for (size_t i = 0; i < pf->count && !status; i++)
    if (all || pf->sections[i].kind != QD_PLAN_KIND_WGHT) status = qd_plan_file_verify_section(pf, i, &p, NULL);
  qd_progress_end(&p);
  return status;
}

qd_status_t qd_plan_file_verify(const qd_plan_file_t* pf, const qd_progress_sink_t* sink) {
  if (!pf) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_plan_file_verify: NULL plan");
  return qd_plan_verify_(pf, sink, true);
}

/* --- open / close ------------------------------------------------------------------------------------------------ */

static qd_status_t qd_plan_validate_(qd_plan_file_t* pf, uint32_t flags) {
  QD_TRY(qd_plan_check_header_(pf));
  if (pf->count) {
    QD_TRY(qd_calloc(pf->alloc, pf->count, sizeof *pf->sections, (void**)&pf->sections));
    QD_TRY(qd_calloc(pf->alloc, pf->count, sizeof *pf->by_key, (void**)&pf->by_key));
  }
  for (size_t i = 0; i < pf->count; i++) {
    QD_TRY(qd_plan_parse_entry_(pf, (uint32_t)i, &pf->sections[i]));
    pf->by_key[i] = &pf->sections[i];
  }
  if (pf->count) qsort(pf->by_key, pf->count, sizeof *pf->by_key, qd_plan_key_cmp_);
  for (size_t i = 1; i < pf->count; i++) {
    const qd_plan_section_t* a = pf->by_key[i - 1];
    const qd_plan_section_t* b = pf->by_key[i];
    if (a->kind == b->kind && strcmp(a->name, b->name) == 0)
      return QD_PLAN_BAD_(PLAN_SECTION_DUPLICATE, "%s: sections %u and %u are both %s \"%s\"; a plan has at most one "
                          "section of each kind and name", pf->path, a->index, b->index, a->kind_text, a->name);
  }
  QD_TRY(qd_plan_check_layout_(pf));
  for (size_t i = 0; i < pf->count; i++) pf->sections[i].data = pf->base + pf->sections[i].offset;
  /* Without VERIFY_ALL only the small sections are hashed: too quick for a progress bar. */
  static const qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  bool all = (flags & QD_PLAN_OPEN_VERIFY_ALL) != 0;
  return qd_plan_verify_(pf, all ? NULL : &quiet, all);
}

static qd_status_t qd_plan_create_(const char* name, qd_allocator_t a, qd_plan_file_t** out) {
  qd_plan_file_t* pf;
  QD_TRY(qd_calloc(a, 1, sizeof *pf, (void**)&pf));
  pf->alloc = a;
  size_t len = strlen(name);
  qd_status_t s = qd_strndup(a, name, len, &pf->path);
  if (s) {
    qd_free(a, pf, sizeof *pf);
    return s;
  }
  pf->path_size = len + 1;
  *out = pf;
  return QD_OK;
}

static qd_status_t qd_plan_check_flags_(uint32_t flags) {
  if (flags & ~QD_PLAN_OPEN_VERIFY_ALL)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_plan_file_open: unknown open flags 0x%x",
                  flags & ~QD_PLAN_OPEN_VERIFY_ALL);
  return QD_OK;
}

qd_status_t qd_plan_file_open_memory(const void* data, size_t size, const char* name, qd_allocator_t allocator,
                                     uint32_t flags, qd_plan_file_t** out_pf) {
  *out_pf = NULL;
  QD_TRY(qd_plan_check_flags_(flags));
  if (!data && size)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "plan image: NULL data of %zu bytes", size);
  static const unsigned char empty[1];
  qd_plan_file_t* pf;
  QD_TRY(qd_plan_create_(name ? name : "<memory>", allocator, &pf));
  pf->base = data ? data : empty;
  pf->size = size;
  qd_status_t s = qd_plan_validate_(pf, flags);
  if (s) {
    qd_plan_file_close(pf);
    return s;
  }
  *out_pf = pf;
  return QD_OK;
}

qd_status_t qd_plan_file_open(const char* path, qd_allocator_t allocator, uint32_t flags, qd_plan_file_t** out_pf) {
  *out_pf = NULL;
  QD_TRY(qd_plan_check_flags_(flags));
  int fd;
  uint64_t size;
  QD_TRY(qd_file_open_regular(path, &fd, &size));
  if (size > SIZE_MAX) {
    close(fd);
    return QD_ERR(IO, IO_MAP, "%s: %llu bytes do not fit in this process's address space", path,
                  (unsigned long long)size);
  }
  qd_plan_file_t* pf;
  qd_status_t s = qd_plan_create_(path, allocator, &pf);
  if (s) {
    close(fd);
    return s;
  }
  static const unsigned char empty[1];
  pf->base = empty; /* mmap rejects length 0; an empty file is reported by validation */
  if (size > 0) {
    void* map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      qd_plan_file_close(pf);
      return QD_ERR(IO, IO_MAP, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size, strerror(e));
    }
    pf->base = map;
    pf->mapped = true;
  }
  close(fd);
  pf->size = size;
  s = qd_plan_validate_(pf, flags);
  if (s) {
    qd_plan_file_close(pf);
    return s;
  }
  *out_pf = pf;
  return QD_OK;
}

void qd_plan_file_close(qd_plan_file_t* pf) {
  if (!pf) return;
  qd_allocator_t a = pf->alloc;
  if (pf->mapped) munmap((void*)pf->base, (size_t)pf->size);
  qd_free(a, pf->sections, pf->count * sizeof *pf->sections);
  qd_free(a, pf->by_key, pf->count * sizeof *pf->by_key);
  qd_free(a, pf->path, pf->path_size);
  qd_free(a, pf, sizeof *pf);
}

/* --- accessors ------------------------------------------------------------------------------------------------- */

const char* qd_plan_file_path(const qd_plan_file_t* pf) { return pf ? pf->path : NULL; }
uint64_t qd_plan_file_size(const qd_plan_file_t* pf) { return pf ? pf->size : 0; }
const void* qd_plan_file_image(const qd_plan_file_t* pf) { return pf ? pf->base : NULL; }
uint16_t qd_plan_file_version_major(const qd_plan_file_t* pf) { return pf ? pf->major : 0; }
uint16_t qd_plan_file_version_minor(const qd_plan_file_t* pf) { return pf ? pf->minor : 0; }
uint32_t qd_plan_file_flags(const qd_plan_file_t* pf) { return pf ? pf->flags : 0; }
const char* qd_plan_file_writer(const qd_plan_file_t* pf) { return pf ? pf->writer : NULL; }
uint64_t qd_plan_file_header_checksum(const qd_plan_file_t* pf) { return pf ? pf->header_checksum : 0; }
uint64_t qd_plan_file_table_offset(const qd_plan_file_t* pf) { return pf ? pf->table_offset : 0; }
size_t qd_plan_file_section_count(const qd_plan_file_t* pf) { return pf ? pf->count : 0; }

const qd_plan_section_t* qd_plan_file_section(const qd_plan_file_t* pf, size_t index) {
  return pf && index < pf->count ? &pf->sections[index] : NULL;
}

const qd_plan_section_t* qd_plan_file_find(const qd_plan_file_t* pf, uint32_t kind, const char* name) {
  if (!pf || !name) return NULL;
  size_t lo = 0, hi = pf->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    const qd_plan_section_t* s = pf->by_key[mid];
    int c = s->kind != kind ? (s->kind < kind ? -1 : 1) : strcmp(s->name, name);
    if (c == 0) return s;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}
