/* safetensors writer; see qd/safetensors_writer.h. */
#include "qd/safetensors_writer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ir/arena.h"

enum { QD_WRITER_MAX_RANK = 8 };

typedef struct qd_writer_entry {
  const char* name;
  qd_dtype_t dtype;
  int32_t rank;
  uint64_t shape[QD_WRITER_MAX_RANK];
  uint64_t bytes;
  const void* data;
} qd_writer_entry_t;

typedef struct qd_writer_meta {
  const char* key;
  const char* value;
} qd_writer_meta_t;

struct qd_safetensors_writer {
  qd_allocator_t allocator;
  qd_arena_t arena;
  char* path;
  char* tmp_path;
  FILE* file;
  qd_writer_entry_t* entries;
  size_t count, capacity;
  qd_writer_meta_t* meta;
  size_t meta_count, meta_capacity;
  bool header_written;
  uint64_t data_total;
  uint64_t data_written;
  bool finished;
};

qd_status_t qd_safetensors_writer_create(const char* path, qd_allocator_t allocator,
                                         qd_safetensors_writer_t** out_writer) {
  *out_writer = NULL;
  qd_safetensors_writer_t* w;
  QD_TRY(qd_calloc(allocator, 1, sizeof *w, (void**)&w));
  w->allocator = allocator;
  qd_arena_init(&w->arena, allocator, 16384);
  qd_status_t s = qd_arena_strdup(&w->arena, path, &w->path);
  if (!s) s = qd_arena_printf(&w->arena, &w->tmp_path, "%s.tmp-%ld", path, (long)getpid());
  if (!s) {
    w->file = fopen(w->tmp_path, "wb");
    if (!w->file) s = QD_ERR(IO, IO_OPEN, "%s: cannot create: %s", w->tmp_path, strerror(errno));
  }
  if (s) {
    qd_safetensors_writer_destroy(w);
    return s;
  }
  *out_writer = w;
  return QD_OK;
}

void qd_safetensors_writer_destroy(qd_safetensors_writer_t* w) {
  if (!w) return;
  if (w->file) fclose(w->file);
  if (!w->finished && w->tmp_path) remove(w->tmp_path);
  qd_free(w->allocator, w->entries, w->capacity * sizeof *w->entries);
  qd_free(w->allocator, w->meta, w->meta_capacity * sizeof *w->meta);
  qd_arena_deinit(&w->arena);
  qd_free(w->allocator, w, sizeof *w);
}

qd_status_t qd_safetensors_writer_set_metadata(qd_safetensors_writer_t* w, const char* key, const char* value) {
  if (w->header_written)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: metadata after the header was written", w->path);
  if (w->meta_count == w->meta_capacity) {
    size_t cap = w->meta_capacity ? w->meta_capacity * 2 : 8;
    QD_TRY(qd_realloc(w->allocator, w->meta, w->meta_capacity * sizeof *w->meta, cap * sizeof *w->meta,
                      (void**)&w->meta));
    w->meta_capacity = cap;
  }
  qd_writer_meta_t* m = &w->meta[w->meta_count];
  QD_TRY(qd_arena_strdup(&w->arena, key, (char**)&m->key));
  QD_TRY(qd_arena_strdup(&w->arena, value, (char**)&m->value));
  w->meta_count++;
  return QD_OK;
}

qd_status_t qd_safetensors_writer_add(qd_safetensors_writer_t* w, const char* name, qd_dtype_t dtype, int32_t rank,
                                      const uint64_t* shape, const void* data) {
  if (w->header_written)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: tensor '%s' added after the header was written", w->path,
                  name);
  if (rank < 0 || rank > QD_WRITER_MAX_RANK || qd_dtype_size(dtype) == 0 || !*name)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: tensor '%s': unsupported dtype %s or rank %d", w->path,
                  name, qd_dtype_name(dtype), rank);
  if (w->count == w->capacity) {
    size_t cap = w->capacity ? w->capacity * 2 : 64;
    QD_TRY(qd_realloc(w->allocator, w->entries, w->capacity * sizeof *w->entries, cap * sizeof *w->entries,
                      (void**)&w->entries));
    w->capacity = cap;
  }
  qd_writer_entry_t* e = &w->entries[w->count];
  memset(e, 0, sizeof *e);
  QD_TRY(qd_arena_strdup(&w->arena, name, (char**)&e->name));
  e->dtype = dtype;
  e->rank = rank;
  uint64_t numel = 1;
  for (int32_t i = 0; i < rank; i++) {
    e->shape[i] = shape[i];
    if (shape[i] && numel > UINT64_MAX / shape[i])
      return QD_ERR(INVALID_ARGUMENT, ST_SIZE_OVERFLOW, "%s: tensor '%s' is too large", w->path, name);
    numel *= shape[i];
  }
  if (!qd_dtype_bytes_for(dtype, numel, &e->bytes) || w->data_total > UINT64_MAX - e->bytes)
    return QD_ERR(INVALID_ARGUMENT, ST_SIZE_OVERFLOW, "%s: tensor '%s' is too large", w->path, name);
  e->data = data;
  w->data_total += e->bytes;
  w->count++;
  return QD_OK;
}

/* JSON string with the escapes JSON requires. */
static void qd_writer_json_string_(FILE* f, const char* s) {
  fputc('"', f);
  for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

static qd_status_t qd_writer_header_(qd_safetensors_writer_t* w) {
  /* Build the header in memory first: its length precedes it in the file. */
  char* text = NULL;
  size_t len = 0;
  FILE* m = open_memstream(&text, &len);
  if (!m) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "%s: cannot build the header", w->path);
  fputc('{', m);
  bool first = true;
  if (w->meta_count) {
    fputs("\"__metadata__\":{", m);
    for (size_t i = 0; i < w->meta_count; i++) {
      if (i) fputc(',', m);
      qd_writer_json_string_(m, w->meta[i].key);
      fputc(':', m);
      qd_writer_json_string_(m, w->meta[i].value);
    }
    fputc('}', m);
    first = false;
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < w->count; i++) {
    const qd_writer_entry_t* e = &w->entries[i];
    if (!first) fputc(',', m);
    first = false;
    qd_writer_json_string_(m, e->name);
    fprintf(m, ":{\"dtype\":\"%s\",\"shape\":[", qd_dtype_name(e->dtype));
    for (int32_t d = 0; d < e->rank; d++) fprintf(m, "%s%llu", d ? "," : "", (unsigned long long)e->shape[d]);
    fprintf(m, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset, (unsigned long long)(offset + e->bytes));
    offset += e->bytes;
  }
  fputc('}', m);
  /* Pad with spaces so tensor data (at 8 + header length) starts 8-byte aligned, as the format recommends. */
  while (ftell(m) % 8 != 0) fputc(' ', m);
  fclose(m);
  if (!text) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "%s: cannot build the header", w->path);
  unsigned char le[8];
  uint64_t n = len;
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(n >> (8 * i));
  bool ok = fwrite(le, 1, 8, w->file) == 8 && fwrite(text, 1, len, w->file) == len;
  free(text);
  if (!ok) return QD_ERR(IO, IO_WRITE, "%s: write failed: %s", w->tmp_path, strerror(errno));
  w->header_written = true;
  return QD_OK;
}

qd_status_t qd_safetensors_writer_write(qd_safetensors_writer_t* w, const void* data, uint64_t bytes) {
  if (!w->header_written) QD_TRY(qd_writer_header_(w));
  if (bytes > w->data_total - w->data_written)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: %llu bytes more than the declared tensors hold", w->path,
                  (unsigned long long)(bytes - (w->data_total - w->data_written)));
  if (bytes && fwrite(data, 1, (size_t)bytes, w->file) != bytes)
    return QD_ERR(IO, IO_WRITE, "%s: write failed: %s", w->tmp_path, strerror(errno));
  w->data_written += bytes;
  return QD_OK;
}

qd_status_t qd_safetensors_writer_finish(qd_safetensors_writer_t* w) {
  if (!w->header_written) QD_TRY(qd_writer_header_(w));
  if (w->data_written == 0)
    for (size_t i = 0; i < w->count; i++)
      if (w->entries[i].data) QD_TRY(qd_safetensors_writer_write(w, w->entries[i].data, w->entries[i].bytes));
  if (w->data_written != w->data_total)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: %llu of %llu data bytes were written", w->path,
                  (unsigned long long)w->data_written, (unsigned long long)w->data_total);
  int rc = fflush(w->file);
  if (rc == 0) rc = fsync(fileno(w->file));
  int close_rc = fclose(w->file);
  w->file = NULL;
  if (rc != 0 || close_rc != 0) return QD_ERR(IO, IO_WRITE, "%s: write failed: %s", w->tmp_path, strerror(errno));
  if (rename(w->tmp_path, w->path) != 0)
    return QD_ERR(IO, IO_RENAME, "%s: cannot move into place: %s", w->path, strerror(errno));
  w->finished = true;
  return QD_OK;
}
