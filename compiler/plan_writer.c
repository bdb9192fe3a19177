/* Plan-file writer: see compiler/plan_writer.h for the contract, include/qd/plan_format.h for the bytes.
 *
 * The file is produced front to back in one pass, except for the 128-byte header, which is reserved as zeros at
 * the start and written with pwrite at the end (it records the table's place and a checksum over the table, which
 * are known only then). Small writes are gathered in a buffer so that a caller writing tensor by tensor does not
 * make a system call per tensor; large writes bypass it. */
#include "compiler/plan_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/hash64.h"
#include "qd/plan_file.h"
#include "qd/version.h"

#define QD_PW_BUFFER_SIZE ((size_t)1 << 20)
/* Positions stay below this so that aligning them up can never wrap (and no real plan comes near it). */
#define QD_PW_MAX_POSITION ((uint64_t)1 << 62)

typedef enum { QD_PW_OPEN = 0, QD_PW_FAILED, QD_PW_FINISHED } qd_pw_state_t;

typedef struct {
  uint32_t kind;
  uint16_t flags;
  uint8_t align_log2;
  uint64_t offset, size, checksum;
  char name[QD_PLAN_NAME_SIZE];
} qd_pw_entry_t;

struct qd_plan_writer {
  qd_allocator_t alloc;
  int fd;
  char* path;
  size_t path_size;
  char* tmp;
  size_t tmp_size;
  bool tmp_created;      /* the temporary file exists and is ours to remove */
  int slot;              /* cleanup slot, or -1 */
  qd_pw_state_t state;
  uint64_t pos;          /* logical file position, buffered bytes included */
  unsigned char* buf;
  size_t buf_len;
  qd_pw_entry_t* entries;
  size_t count, cap;
  bool in_section;
  qd_hash64_state_t hash; /* of the open section */
};

/* --- signal-time cleanup -------------------------------------------------------------------------------------------
 * A slot's path is written only while its state is BUSY; the handler reads only ACTIVE slots, so it never sees a
 * half-written path. atomic_int is lock-free on every platform qd builds for, which is what makes these loads
 * async-signal-safe. */
enum { QD_PW_SLOT_FREE = 0, QD_PW_SLOT_BUSY = 1, QD_PW_SLOT_ACTIVE = 2 };
#define QD_PW_SLOTS 8
static struct {
  atomic_int state;
  char path[PATH_MAX];
} qd_pw_slots_[QD_PW_SLOTS];

static int qd_pw_register_(const char* path) {
  size_t len = strlen(path);
  if (len >= PATH_MAX) return -1;
  for (int i = 0; i < QD_PW_SLOTS; i++) {
    int expected = QD_PW_SLOT_FREE;
    if (atomic_compare_exchange_strong(&qd_pw_slots_[i].state, &expected, QD_PW_SLOT_BUSY)) {
      memcpy(qd_pw_slots_[i].path, path, len + 1);
      atomic_store(&qd_pw_slots_[i].state, QD_PW_SLOT_ACTIVE);
      return i;
    }
  }
  return -1; /* more than 8 writers at once: the extra ones are not cleaned up on a signal, nothing worse */
}

static void qd_pw_unregister_(int slot) {
  if (slot >= 0) atomic_store(&qd_pw_slots_[slot].state, QD_PW_SLOT_FREE);
}

void qd_plan_writer_remove_temporaries(void) {
  for (int i = 0; i < QD_PW_SLOTS; i++)
    if (atomic_load(&qd_pw_slots_[i].state) == QD_PW_SLOT_ACTIVE) unlink(qd_pw_slots_[i].path);
}

/* --- low-level output ------------------------------------------------------------------------------------------- */

static qd_status_t qd_pw_fail_(qd_plan_writer_t* w, qd_status_t s) {
  if (s) w->state = QD_PW_FAILED;
  return s;
}

static qd_status_t qd_pw_write_all_(qd_plan_writer_t* w, const unsigned char* p, size_t n) {
  while (n > 0) {
    ssize_t k = write(w->fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      int e = k < 0 ? errno : EIO;
      return qd_pw_fail_(w, QD_ERR(IO, IO_WRITE, "%s: cannot write: %s", w->tmp, strerror(e)));
    }
    p += k;
    n -= (size_t)k;
  }
  return QD_OK;
}

static qd_status_t qd_pw_flush_(qd_plan_writer_t* w) {
  size_t n = w->buf_len;
  w->buf_len = 0;
  return n ? qd_pw_write_all_(w, w->buf, n) : QD_OK;
}

/* Appends bytes to the file (through the buffer); NULL data means zeros. */
static qd_status_t qd_pw_emit_(qd_plan_writer_t* w, const void* data, size_t n) {
  if (n > QD_PW_MAX_POSITION - w->pos)
    return qd_pw_fail_(w, QD_ERR(IO, IO_WRITE, "%s: the plan would exceed 2^62 bytes", w->tmp));
  const unsigned char* p = data;
  w->pos += n;
  if (p && n >= QD_PW_BUFFER_SIZE) { /* large: straight to the file */
    QD_TRY(qd_pw_flush_(w));
    return qd_pw_write_all_(w, p, n);
  }
  while (n > 0) {
    size_t take = QD_PW_BUFFER_SIZE - w->buf_len;
    if (take > n) take = n;
    if (p) {
      memcpy(w->buf + w->buf_len, p, take);
      p += take;
    } else {
      memset(w->buf + w->buf_len, 0, take);
    }
    w->buf_len += take;
    n -= take;
    if (w->buf_len == QD_PW_BUFFER_SIZE) QD_TRY(qd_pw_flush_(w));
  }
  return QD_OK;
}

static qd_status_t qd_pw_pad_to_(qd_plan_writer_t* w, unsigned align_log2) {
  uint64_t a = (uint64_t)1 << align_log2;
  uint64_t target = (w->pos + a - 1) & ~(a - 1);
  return qd_pw_emit_(w, NULL, (size_t)(target - w->pos));
}

static void qd_pw_le16_(unsigned char* p, uint16_t v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void qd_pw_le32_(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void qd_pw_le64_(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* --- create ------------------------------------------------------------------------------------------------------ */

static qd_status_t qd_pw_usable_(const qd_plan_writer_t* w, const char* what) {
  if (!w) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_plan_writer_%s: NULL writer", what);
  if (w->state == QD_PW_FAILED)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: qd_plan_writer_%s after an earlier failure", w->path, what);
  if (w->state == QD_PW_FINISHED)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: qd_plan_writer_%s after finish", w->path, what);
  return QD_OK;
}

/* ".NAME.tmp.PID.N" in the directory of path. */
static qd_status_t qd_pw_open_temp_(qd_plan_writer_t* w) {
  static atomic_uint counter;
  const char* slash = strrchr(w->path, '/');
  size_t dir_len = slash ? (size_t)(slash - w->path) + 1 : 0;
  const char* base = w->path + dir_len;
  size_t size = dir_len + strlen(base) + 64;
  QD_TRY(qd_malloc(w->alloc, size, (void**)&w->tmp));
  w->tmp_size = size;
  for (int attempt = 0;; attempt++) {
    snprintf(w->tmp, size, "%.*s.%s.tmp.%ld.%u", (int)dir_len, w->path, base, (long)getpid(),
             atomic_fetch_add(&counter, 1u));
    /* 0666 and the umask, as for any file the user creates; O_EXCL never reuses someone else's file. */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (w->fd >= 0) {
      w->tmp_created = true;
      return QD_OK;
    }
    int e = errno;
    if (e != EEXIST || attempt >= 100)
      return qd_status_make(e == ENOENT ? QD_CODE_NOT_FOUND : QD_CODE_IO, QD_E_IO_OPEN, __FILE__, __LINE__,
                            "%s: cannot create the temporary file %s: %s", w->path, w->tmp, strerror(e));
  }
}

qd_status_t qd_plan_writer_create(const char* path, qd_allocator_t allocator, qd_plan_writer_t** out_w) {
  *out_w = NULL;
  if (!path || !*path) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_plan_writer_create: empty path");
  if (path[strlen(path) - 1] == '/')
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: a plan path must name a file, not a directory", path);
  qd_plan_writer_t* w;
  QD_TRY(qd_calloc(allocator, 1, sizeof *w, (void**)&w));
  w->alloc = allocator;
  w->fd = -1;
  w->slot = -1;
  size_t len = strlen(path);
  qd_status_t s = qd_strndup(allocator, path, len, &w->path);
  if (!s) w->path_size = len + 1;
  if (!s) s = qd_malloc(allocator, QD_PW_BUFFER_SIZE, (void**)&w->buf);
  if (!s) s = qd_pw_open_temp_(w);
  if (!s) {
    w->slot = qd_pw_register_(w->tmp);
    s = qd_pw_emit_(w, NULL, QD_PLAN_HEADER_SIZE); /* the header's place; written at finish */
  }
  if (s) {
    qd_plan_writer_destroy(w);
    return s;
  }
  *out_w = w;
  return QD_OK;
}

/* --- sections ---------------------------------------------------------------------------------------------------- */

static qd_status_t qd_pw_check_name_(const qd_plan_writer_t* w, const char* name, uint32_t kind) {
  size_t len = strlen(name);
  char kt[20];
  if (len >= QD_PLAN_NAME_SIZE)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s \"%.40s\": the name has %zu characters; at most "
                  "%d fit", w->path, qd_plan_kind_text(kind, kt, sizeof kt), name, len, QD_PLAN_NAME_SIZE - 1);
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] >= 0x7F)
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s: name byte %zu is 0x%02x; names are printable "
                    "ASCII", w->path, qd_plan_kind_text(kind, kt, sizeof kt), i, (unsigned char)name[i]);
  for (size_t i = 0; i < w->count; i++)
    if (w->entries[i].kind == kind && strcmp(w->entries[i].name, name) == 0)
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s \"%s\" was already written; (kind, name) "
                    "must be unique", w->path, qd_plan_kind_text(kind, kt, sizeof kt), name);
  return QD_OK;
}

qd_status_t qd_plan_writer_begin_section(qd_plan_writer_t* w, uint32_t kind, const char* name, uint32_t flags,
                                         size_t alignment) {
  QD_TRY(qd_pw_usable_(w, "begin_section"));
  char kt[20], open_kt[20];
  qd_plan_kind_text(kind, kt, sizeof kt);
  if (w->in_section)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: begin_section %s while section %s \"%s\" is open", w->path,
                  kt, qd_plan_kind_text(w->entries[w->count - 1].kind, open_kt, sizeof open_kt),
                  w->entries[w->count - 1].name);
  if (qd_plan_kind_from_text(kt) != kind)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section kind \"%s\" (0x%08x) is not four ASCII letters or "
                  "digits", w->path, kt, kind);
  if (!name) name = "";
  QD_TRY(qd_pw_check_name_(w, name, kind));
  bool known = qd_plan_kind_is_known(kind);
  if (flags & ~(uint32_t)QD_PLAN_SECTION_FLAGS_KNOWN)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s \"%s\": flags 0x%x; only "
                  "QD_PLAN_SECTION_REQUIRED is defined", w->path, kt, name, flags);
  if (known && (flags & QD_PLAN_SECTION_REQUIRED) && !qd_plan_kind_is_required(kind))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s \"%s\": %s sections are optional; do not mark "
                  "them required", w->path, kt, name, kt);
  if (known && qd_plan_kind_is_required(kind)) flags |= QD_PLAN_SECTION_REQUIRED;
  unsigned min_log2 = qd_plan_kind_min_align_log2(kind);
  unsigned log2 = min_log2;
  if (alignment) {
    for (log2 = 0; log2 < 63 && ((size_t)1 << log2) < alignment; log2++) {
    }
    if (((size_t)1 << log2) != alignment || log2 < min_log2 || log2 > QD_PLAN_ALIGN_LOG2_MAX)
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: section %s \"%s\": alignment %zu; it must be a power of "
                    "two from %llu to %llu", w->path, kt, name, alignment, (unsigned long long)((uint64_t)1 << min_log2),
                    (unsigned long long)((uint64_t)1 << QD_PLAN_ALIGN_LOG2_MAX));
  }
  if (w->count >= QD_PLAN_MAX_SECTIONS)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: more than %u sections", w->path, QD_PLAN_MAX_SECTIONS);
  if (w->count == w->cap) {
    size_t cap = w->cap ? w->cap * 2 : 16;
    void* p;
    QD_TRY(qd_pw_fail_(w, qd_realloc(w->alloc, w->entries, w->cap * sizeof *w->entries, cap * sizeof *w->entries, &p)));
    w->entries = p;
    w->cap = cap;
  }
  QD_TRY(qd_pw_pad_to_(w, log2));
  qd_pw_entry_t* e = &w->entries[w->count++];
  memset(e, 0, sizeof *e);
  e->kind = kind;
  e->flags = (uint16_t)flags;
  e->align_log2 = (uint8_t)log2;
  e->offset = w->pos;
  memcpy(e->name, name, strlen(name) + 1);
  qd_hash64_init(&w->hash, 0);
  w->in_section = true;
  return QD_OK;
}

qd_status_t qd_plan_writer_write(qd_plan_writer_t* w, const void* data, size_t n) {
  QD_TRY(qd_pw_usable_(w, "write"));
  if (!w->in_section) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: write outside a section", w->path);
  if (n == 0) return QD_OK;
  if (!data) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: write of %zu bytes from NULL", w->path, n);
  qd_hash64_update(&w->hash, data, n);
  return qd_pw_emit_(w, data, n);
}

qd_status_t qd_plan_writer_end_section(qd_plan_writer_t* w) {
  QD_TRY(qd_pw_usable_(w, "end_section"));
  if (!w->in_section) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: end_section without a section", w->path);
  qd_pw_entry_t* e = &w->entries[w->count - 1];
  e->size = w->pos - e->offset;
  e->checksum = qd_hash64_digest(&w->hash);
  w->in_section = false;
  return QD_OK;
}

/* --- finish --------------------------------------------------------------------------------------------------------- */

/* Makes the rename itself durable. Filesystems that cannot sync a directory say EINVAL: nothing to do there. */
static qd_status_t qd_pw_sync_dir_(const qd_plan_writer_t* w) {
  const char* slash = strrchr(w->path, '/');
  char dir[PATH_MAX];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == w->path)
    snprintf(dir, sizeof dir, "/");
  else
    snprintf(dir, sizeof dir, "%.*s", (int)(slash - w->path), w->path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return QD_OK; /* the plan is in place; only its durability across a power cut is unconfirmed */
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0 && e != EINVAL && e != EROFS)
    return QD_ERR(IO, IO_WRITE, "%s: cannot sync directory %s: %s", w->path, dir, strerror(e));
  return QD_OK;
}

qd_status_t qd_plan_writer_finish(qd_plan_writer_t* w) {
  QD_TRY(qd_pw_usable_(w, "finish"));
  if (w->in_section)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: finish while section \"%s\" is open; end it first", w->path,
                  w->entries[w->count - 1].name);
  QD_TRY(qd_pw_pad_to_(w, 3));
  uint64_t table_offset = w->pos;
  uint64_t file_size = table_offset + (uint64_t)w->count * QD_PLAN_ENTRY_SIZE;

  unsigned char header[QD_PLAN_HEADER_SIZE] = {0};
  memcpy(header, QD_PLAN_MAGIC, QD_PLAN_MAGIC_SIZE);
  qd_pw_le16_(header + offsetof(qd_plan_header_t, version_major), QD_PLAN_VERSION_MAJOR);
  qd_pw_le16_(header + offsetof(qd_plan_header_t, version_minor), QD_PLAN_VERSION_MINOR);
  qd_pw_le32_(header + offsetof(qd_plan_header_t, flags), 0);
  qd_pw_le64_(header + offsetof(qd_plan_header_t, file_size), file_size);
  qd_pw_le64_(header + offsetof(qd_plan_header_t, table_offset), table_offset);
  qd_pw_le32_(header + offsetof(qd_plan_header_t, section_count), (uint32_t)w->count);
  qd_pw_le32_(header + offsetof(qd_plan_header_t, entry_size), QD_PLAN_ENTRY_SIZE);
  static const char writer[] = "qd " QD_VERSION_STRING;
  _Static_assert(sizeof writer <= QD_PLAN_WRITER_SIZE, "the writer string fits with its NUL");
  memcpy(header + offsetof(qd_plan_header_t, writer), writer, sizeof writer);

  qd_hash64_state_t hs; /* header with a zero checksum field, then the table */
  qd_hash64_init(&hs, 0);
  qd_hash64_update(&hs, header, sizeof header);
  for (size_t i = 0; i < w->count; i++) {
    const qd_pw_entry_t* e = &w->entries[i];
    unsigned char b[QD_PLAN_ENTRY_SIZE] = {0};
    qd_pw_le32_(b + offsetof(qd_plan_section_entry_t, kind), e->kind);
    qd_pw_le16_(b + offsetof(qd_plan_section_entry_t, flags), e->flags);
    b[offsetof(qd_plan_section_entry_t, align_log2)] = e->align_log2;
    qd_pw_le64_(b + offsetof(qd_plan_section_entry_t, offset), e->offset);
    qd_pw_le64_(b + offsetof(qd_plan_section_entry_t, size), e->size);
    qd_pw_le64_(b + offsetof(qd_plan_section_entry_t, checksum), e->checksum);
    memcpy(b + offsetof(qd_plan_section_entry_t, name), e->name, QD_PLAN_NAME_SIZE);
    qd_hash64_update(&hs, b, sizeof b);
    QD_TRY(qd_pw_emit_(w, b, sizeof b));
  }
  QD_TRY(qd_pw_flush_(w));
  qd_pw_le64_(header + offsetof(qd_plan_header_t, header_checksum), qd_hash64_digest(&hs));
  for (;;) {
    ssize_t k = pwrite(w->fd, header, sizeof header, 0);
    if (k == (ssize_t)sizeof header) break;
    if (k < 0 && errno == EINTR) continue;
    int e = k < 0 ? errno : EIO;
    return qd_pw_fail_(w, QD_ERR(IO, IO_WRITE, "%s: cannot write the header: %s", w->tmp, strerror(e)));
  }
  /* The data must be on disk before the rename makes it visible under the final name. */
  if (fsync(w->fd) != 0) {
    int e = errno;
    return qd_pw_fail_(w, QD_ERR(IO, IO_WRITE, "%s: cannot sync: %s", w->tmp, strerror(e)));
  }
  int rc = close(w->fd);
  w->fd = -1;
  if (rc != 0) {
    int e = errno;
    return qd_pw_fail_(w, QD_ERR(IO, IO_WRITE, "%s: cannot close: %s", w->tmp, strerror(e)));
  }
  if (rename(w->tmp, w->path) != 0) {
    int e = errno;
    return qd_pw_fail_(w, QD_ERR(IO, IO_RENAME, "%s: cannot rename %s to it: %s", w->path, w->tmp, strerror(e)));
  }
  w->state = QD_PW_FINISHED;
  qd_pw_unregister_(w->slot);
  w->slot = -1;
  return qd_pw_sync_dir_(w);
}

void qd_plan_writer_destroy(qd_plan_writer_t* w) {
  if (!w) return;
  qd_allocator_t a = w->alloc;
  /* Unregister first: once the file is gone, a signal must not unlink a name some other process may reuse. */
  qd_pw_unregister_(w->slot);
  if (w->fd >= 0) close(w->fd);
  if (w->tmp_created && w->state != QD_PW_FINISHED) unlink(w->tmp);
  qd_free(a, w->entries, w->cap * sizeof *w->entries);
  qd_free(a, w->buf, QD_PW_BUFFER_SIZE);
  qd_free(a, w->tmp, w->tmp_size);
  qd_free(a, w->path, w->path_size);
  qd_free(a, w, sizeof *w);
}

const char* qd_plan_writer_temp_path(const qd_plan_writer_t* w) { return w ? w->tmp : NULL; }
uint64_t qd_plan_writer_position(const qd_plan_writer_t* w) { return w ? w->pos : 0; }

uint64_t qd_plan_writer_section_size(const qd_plan_writer_t* w) {
  return w && w->in_section ? w->pos - w->entries[w->count - 1].offset : 0;
}
