/* Strict safetensors reader: see include/qd/safetensors.h for the contract.
 *
 * Order of checks (the first failure wins, so each malformed file has one predictable detail):
 *   1. the file is at least 8 bytes; the header length is at most 100 MB, then within the file;
 *   2. the header is UTF-8, then strict JSON (only spaces may follow the object), then an object;
 *   3. members in document order: __metadata__ (an object of strings), or a tensor entry checked field by field
 *      (name, entry type, unknown fields, dtype, shape, data_offsets, then sizes);
 *   4. the layout, walking the tensors sorted by offset.
 * Data pointers are formed only after step 4, when every offset is known to lie inside the mapping. */
#include "qd/safetensors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ir/file_read.h"
#include "ir/strict_json.h"

struct qd_safetensors {
  qd_allocator_t alloc;
  char* path;
  size_t path_size;
  const unsigned char* base; /* the whole file */
  uint64_t size;
  bool mapped;               /* base is our mapping (else borrowed memory) */
  uint64_t header_len;
  qd_json_doc_t* doc;        /* tensor names and metadata strings point into it */
  qd_tensor_info_t* tensors; /* data-offset order */
  size_t count;
  const qd_tensor_info_t** by_name;
  const qd_json_member_t* metadata;
  size_t metadata_count;
};

/* Display helpers: names come from hostile input, so messages show them escaped and bounded. */
typedef struct {
  char s[160];
} qd_st_name_t;

static qd_st_name_t qd_st_name_(const char* s, size_t len) {
  qd_st_name_t n;
  qd_json_display(s, len, n.s, sizeof n.s);
  return n;
}

typedef struct {
  char s[96];
} qd_st_desc_t;

static qd_st_desc_t qd_st_desc_(const qd_json_value_t* v) {
  qd_st_desc_t d;
  qd_json_describe(v, d.s, sizeof d.s);
  return d;
}

#define QD_ST_BAD_(detail, ...) QD_ERR(BAD_INPUT, detail, __VA_ARGS__)

/* Reads a non-negative integer no larger than 2^53; false otherwise. */
static bool qd_st_small_uint_(const qd_json_value_t* v, uint64_t* out) {
  if (!v || v->type != QD_JSON_NUMBER || !v->u.number.is_integer || v->u.number.negative) return false;
  if (!v->u.number.fits_u64 || v->u.number.u64 > QD_SAFETENSORS_MAX_INT) return false;
  *out = v->u.number.u64;
  return true;
}

static qd_status_t qd_st_parse_shape_(const qd_safetensors_t* st, const char* tname, const qd_json_value_t* shape,
                                      qd_tensor_info_t* t) {
  if (!shape)
    return QD_ST_BAD_(ST_SHAPE_MISSING, "%s: tensor '%s': no shape field; every tensor needs one", st->path, tname);
  if (shape->type != QD_JSON_ARRAY)
    return QD_ST_BAD_(ST_SHAPE_NOT_ARRAY, "%s: tensor '%s': shape is %s; it must be an array of dimensions",
                      st->path, tname, qd_st_desc_(shape).s);
  if (shape->u.array.count > QD_MAX_RANK)
    return QD_ST_BAD_(ST_SHAPE_RANK, "%s: tensor '%s': shape has %zu dimensions; qd supports at most %d", st->path,
                      tname, shape->u.array.count, QD_MAX_RANK);
  t->rank = (int)shape->u.array.count;
  for (size_t i = 0; i < shape->u.array.count; i++) {
    const qd_json_value_t* d = shape->u.array.items[i];
    if (d->type != QD_JSON_NUMBER || !d->u.number.is_integer)
      return QD_ST_BAD_(ST_SHAPE_NOT_INTEGER, "%s: tensor '%s': shape[%zu] is %s; dimensions must be non-negative "
                        "integers", st->path, tname, i, qd_st_desc_(d).s);
    if (d->u.number.negative)
      return QD_ST_BAD_(ST_SHAPE_NEGATIVE, "%s: tensor '%s': shape[%zu] is %s; dimensions must be non-negative "
                        "integers", st->path, tname, i, qd_st_desc_(d).s);
    if (!d->u.number.fits_u64 || d->u.number.u64 > QD_SAFETENSORS_MAX_INT)
      return QD_ST_BAD_(ST_SHAPE_TOO_LARGE, "%s: tensor '%s': shape[%zu] is %s; dimensions must be at most 2^53 "
                        "(9007199254740992)", st->path, tname, i, qd_st_desc_(d).s);
    t->shape[i] = d->u.number.u64;
  }
  return QD_OK;
}

static qd_status_t qd_st_parse_offsets_(const qd_safetensors_t* st, const char* tname, const qd_json_value_t* off,
                                        uint64_t* begin, uint64_t* end) {
  if (!off)
    return QD_ST_BAD_(ST_OFFSETS_MISSING, "%s: tensor '%s': no data_offsets field; every tensor needs one", st->path,
                      tname);
  if (off->type != QD_JSON_ARRAY || off->u.array.count != 2) {
    if (off->type == QD_JSON_ARRAY)
      return QD_ST_BAD_(ST_OFFSETS_NOT_PAIR, "%s: tensor '%s': data_offsets has %zu value%s; it must be [begin, end]",
                        st->path, tname, off->u.array.count, off->u.array.count == 1 ? "" : "s");
    return QD_ST_BAD_(ST_OFFSETS_NOT_PAIR, "%s: tensor '%s': data_offsets is %s; it must be [begin, end]", st->path,
                      tname, qd_st_desc_(off).s);
  }
  uint64_t v[2];
  for (size_t i = 0; i < 2; i++) {
    const qd_json_value_t* x = off->u.array.items[i];
    if (!qd_st_small_uint_(x, &v[i]))
      return QD_ST_BAD_(ST_OFFSETS_NOT_INTEGER, "%s: tensor '%s': data_offsets[%zu] is %s; offsets must be "
                        "non-negative integers of at most 2^53", st->path, tname, i, qd_st_desc_(x).s);
  }
  if (v[0] > v[1])
    return QD_ST_BAD_(ST_OFFSETS_REVERSED, "%s: tensor '%s': data_offsets [%llu, %llu] ends before it begins",
                      st->path, tname, (unsigned long long)v[0], (unsigned long long)v[1]);
  *begin = v[0];
  *end = v[1];
  return QD_OK;
}

/* "[2, 3, 4]" for messages. */
static void qd_st_shape_text_(const qd_tensor_info_t* t, char* buf, size_t size) {
  size_t o = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->rank && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
  if (o < size) snprintf(buf + o, size - o, "]");
}

static qd_status_t qd_st_parse_tensor_(const qd_safetensors_t* st, const qd_json_member_t* m, qd_tensor_info_t* t,
                                       uint64_t* begin, uint64_t* end) {
  if (m->key_len == 0)
    return QD_ST_BAD_(ST_TENSOR_EMPTY_NAME, "%s: the tensor at byte %zu has an empty name", st->path, m->key_offset);
  qd_st_name_t tname_buf = qd_st_name_(m->key, m->key_len);
  const char* tname = tname_buf.s;
  if (memchr(m->key, '\0', m->key_len))
    return QD_ST_BAD_(ST_STRING_NUL, "%s: tensor '%s': the name contains a NUL character (\\u0000)", st->path, tname);
  const qd_json_value_t* e = m->value;
  if (e->type != QD_JSON_OBJECT)
    return QD_ST_BAD_(ST_TENSOR_NOT_OBJECT, "%s: tensor '%s': the entry is %s; it must be an object with dtype, "
                      "shape and data_offsets", st->path, tname, qd_st_desc_(e).s);
  for (size_t i = 0; i < e->u.object.count; i++) {
    const qd_json_member_t* f = &e->u.object.members[i];
    if (strcmp(f->key, "dtype") != 0 && strcmp(f->key, "shape") != 0 && strcmp(f->key, "data_offsets") != 0)
      return QD_ST_BAD_(ST_TENSOR_UNKNOWN_FIELD, "%s: tensor '%s': unknown field \"%s\"; only dtype, shape and "
                        "data_offsets are allowed", st->path, tname, qd_st_name_(f->key, f->key_len).s);
  }

  const qd_json_value_t* dtype = qd_json_object_get(e, "dtype");
  if (!dtype)
    return QD_ST_BAD_(ST_DTYPE_MISSING, "%s: tensor '%s': no dtype field; every tensor needs one", st->path, tname);
  if (dtype->type != QD_JSON_STRING)
    return QD_ST_BAD_(ST_DTYPE_NOT_STRING, "%s: tensor '%s': dtype is %s; it must be a string such as \"BF16\"",
                      st->path, tname, qd_st_desc_(dtype).s);
  t->dtype = qd_dtype_from_name(dtype->u.string.str, dtype->u.string.len);
  if (t->dtype == QD_DTYPE_INVALID)
    return QD_ST_BAD_(ST_DTYPE_UNKNOWN, "%s: tensor '%s': dtype is %s; known dtypes are BOOL, U8, I8, I16, I32, I64, "
                      "F8_E4M3, F8_E5M2, F16, BF16, F32, F64", st->path, tname, qd_st_desc_(dtype).s);

  QD_TRY(qd_st_parse_shape_(st, tname, qd_json_object_get(e, "shape"), t));
  QD_TRY(qd_st_parse_offsets_(st, tname, qd_json_object_get(e, "data_offsets"), begin, end));

  char shape_text[200];
  qd_st_shape_text_(t, shape_text, sizeof shape_text);
  uint64_t numel = 1;
  bool zero = false;
  for (int i = 0; i < t->rank; i++) zero = zero || t->shape[i] == 0;
  if (zero) {
    numel = 0; /* a zero dimension makes the product 0 whatever the others are */
  } else {
    for (int i = 0; i < t->rank; i++) {
      if (numel > UINT64_MAX / t->shape[i])
        return QD_ST_BAD_(ST_SIZE_OVERFLOW, "%s: tensor '%s': shape %s has more than 2^64 elements", st->path, tname,
                          shape_text);
      numel *= t->shape[i];
    }
  }
  uint64_t nbytes;
  if (!qd_dtype_bytes_for(t->dtype, numel, &nbytes))
    return QD_ST_BAD_(ST_SIZE_OVERFLOW, "%s: tensor '%s': shape %s of %s is more than 2^64 bytes", st->path, tname,
                      shape_text, qd_dtype_name(t->dtype));
  if (*end - *begin != nbytes)
    return QD_ST_BAD_(ST_SIZE_MISMATCH, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s of "
                      "%s needs %llu", st->path, tname, (unsigned long long)*begin, (unsigned long long)*end,
                      (unsigned long long)(*end - *begin), shape_text, qd_dtype_name(t->dtype),
                      (unsigned long long)nbytes);
  t->name = m->key;
  t->numel = numel;
  t->nbytes = nbytes;
  t->file = st->path;
  return QD_OK;
}

static qd_status_t qd_st_parse_metadata_(qd_safetensors_t* st, const qd_json_value_t* md) {
  if (md->type != QD_JSON_OBJECT)
    return QD_ST_BAD_(ST_METADATA_NOT_OBJECT, "%s: __metadata__ is %s; it must be an object of strings", st->path,
                      qd_st_desc_(md).s);
  for (size_t i = 0; i < md->u.object.count; i++) {
    const qd_json_member_t* m = &md->u.object.members[i];
    qd_st_name_t key = qd_st_name_(m->key, m->key_len);
    if (m->value->type != QD_JSON_STRING)
      return QD_ST_BAD_(ST_METADATA_NOT_STRING, "%s: __metadata__ \"%s\" is %s; metadata values must be strings",
                        st->path, key.s, qd_st_desc_(m->value).s);
    if (memchr(m->key, '\0', m->key_len) || memchr(m->value->u.string.str, '\0', m->value->u.string.len))
      return QD_ST_BAD_(ST_STRING_NUL, "%s: __metadata__ \"%s\": the key or value contains a NUL character (\\u0000)",
                        st->path, key.s);
  }
  st->metadata = md->u.object.members;
  st->metadata_count = md->u.object.count;
  return QD_OK;
}

/* Sort keys for the layout walk: tensors with their offsets, which qd_tensor_info_t does not keep relative. */
typedef struct {
  uint64_t begin, end;
  qd_tensor_info_t info;
} qd_st_entry_t;

static int qd_st_entry_cmp_(const void* a, const void* b) {
  const qd_st_entry_t* x = a;
  const qd_st_entry_t* y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end) return x->end < y->end ? -1 : 1;
  return strcmp(x->info.name, y->info.name);
}

static int qd_st_name_cmp_(const void* a, const void* b) {
  const qd_tensor_info_t* x = *(const qd_tensor_info_t* const*)a;
  const qd_tensor_info_t* y = *(const qd_tensor_info_t* const*)b;
  return strcmp(x->name, y->name);
}

static qd_status_t qd_st_check_layout_(const qd_safetensors_t* st, const qd_st_entry_t* e, size_t n,
                                       uint64_t data_len) {
  uint64_t expected = 0;
  for (size_t i = 0; i < n; i++) {
    if (e[i].begin > expected) {
      if (i == 0)
        return QD_ST_BAD_(ST_DATA_START, "%s: tensor '%s': data begins at offset %llu; the first tensor must begin "
                          "at offset 0 of the data", st->path, qd_st_name_(e[i].info.name, strlen(e[i].info.name)).s,
                          (unsigned long long)e[i].begin);
      return QD_ST_BAD_(ST_DATA_GAP, "%s: tensor '%s': data begins at offset %llu, but the previous tensor '%s' ends "
                        "at %llu (%llu unused bytes)", st->path, qd_st_name_(e[i].info.name, strlen(e[i].info.name)).s,
                        (unsigned long long)e[i].begin, qd_st_name_(e[i - 1].info.name, strlen(e[i - 1].info.name)).s,
                        (unsigned long long)expected, (unsigned long long)(e[i].begin - expected));
    }
    if (e[i].begin < expected)
      return QD_ST_BAD_(ST_DATA_OVERLAP, "%s: tensor '%s': data [%llu, %llu] overlaps tensor '%s', which ends at %llu",
                        st->path, qd_st_name_(e[i].info.name, strlen(e[i].info.name)).s,
                        (unsigned long long)e[i].begin, (unsigned long long)e[i].end,
                        qd_st_name_(e[i - 1].info.name, strlen(e[i - 1].info.name)).s, (unsigned long long)expected);
    expected = e[i].end;
  }
  if (expected == data_len) return QD_OK;
  if (n == 0)
    return QD_ST_BAD_(ST_DATA_END, "%s: the header lists no tensors, but %llu bytes of data follow it", st->path,
                      (unsigned long long)data_len);
  qd_st_name_t last = qd_st_name_(e[n - 1].info.name, strlen(e[n - 1].info.name));
  if (expected > data_len)
    return QD_ST_BAD_(ST_DATA_END, "%s: tensor '%s': data ends at offset %llu, past the end of the file (the data "
                      "region is %llu bytes)", st->path, last.s, (unsigned long long)expected,
                      (unsigned long long)data_len);
  return QD_ST_BAD_(ST_DATA_END, "%s: %llu byte%s follow%s the last tensor '%s' (which ends at data offset %llu of "
                    "%llu)", st->path, (unsigned long long)(data_len - expected), data_len - expected == 1 ? "" : "s",
                    data_len - expected == 1 ? "s" : "", last.s, (unsigned long long)expected,
                    (unsigned long long)data_len);
}

static bool qd_st_is_metadata_key_(const qd_json_member_t* m) {
  return m->key_len == 12 && memcmp(m->key, "__metadata__", 12) == 0;
}

static qd_status_t qd_st_validate_(qd_safetensors_t* st) {
  if (st->size < 8)
    return QD_ST_BAD_(ST_FILE_TOO_SMALL, "%s: the file is %llu bytes; a safetensors file starts with an 8-byte header "
                      "length", st->path, (unsigned long long)st->size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--) n = (n << 8) | st->base[i];
  if (n > QD_SAFETENSORS_MAX_HEADER)
    return QD_ST_BAD_(ST_HEADER_TOO_LARGE, "%s: header length is %llu bytes; at most %llu are allowed", st->path,
                      (unsigned long long)n, (unsigned long long)QD_SAFETENSORS_MAX_HEADER);
  if (n > st->size - 8)
    return QD_ST_BAD_(ST_HEADER_LENGTH, "%s: header length is %llu bytes, but only %llu bytes follow the length field",
                      st->path, (unsigned long long)n, (unsigned long long)(st->size - 8));
  st->header_len = n;
  uint64_t data_len = st->size - 8 - n;

  qd_json_options_t opt = {
      .source_name = st->path,
      .base_offset = 8,
      .trailing = QD_JSON_TRAILING_SPACES,
      .syntax_detail = QD_E_ST_HEADER_JSON,
      .utf8_detail = QD_E_ST_HEADER_UTF8,
  };
  QD_TRY(qd_json_parse((const char*)st->base + 8, (size_t)n, st->alloc, &opt, &st->doc));
  const qd_json_value_t* root = qd_json_root(st->doc);
  if (root->type != QD_JSON_OBJECT)
    return QD_ST_BAD_(ST_HEADER_NOT_OBJECT, "%s: the header is %s; it must be a JSON object", st->path,
                      qd_st_desc_(root).s);

  size_t count = 0;
  for (size_t i = 0; i < root->u.object.count; i++)
    if (!qd_st_is_metadata_key_(&root->u.object.members[i])) count++;

  qd_st_entry_t* entries = NULL;
  qd_status_t status = QD_OK;
  if (count) QD_TRY(qd_calloc(st->alloc, count, sizeof *entries, (void**)&entries));
  size_t k = 0;
  for (size_t i = 0; i < root->u.object.count; i++) {
    const qd_json_member_t* m = &root->u.object.members[i];
    if (qd_st_is_metadata_key_(m)) {
      QD_CHECK_GOTO(status, qd_st_parse_metadata_(st, m->value), done);
      continue;
    }
    QD_CHECK_GOTO(status, qd_st_parse_tensor_(st, m, &entries[k].info, &entries[k].begin, &entries[k].end), done);
    k++;
  }
  if (count) qsort(entries, count, sizeof *entries, qd_st_entry_cmp_);
  QD_CHECK_GOTO(status, qd_st_check_layout_(st, entries, count, data_len), done);

  st->count = count; /* before allocating: close frees both arrays with this count */
  if (count) {
    QD_CHECK_GOTO(status, qd_calloc(st->alloc, count, sizeof *st->tensors, (void**)&st->tensors), done);
    QD_CHECK_GOTO(status, qd_calloc(st->alloc, count, sizeof *st->by_name, (void**)&st->by_name), done);
  }
  const unsigned char* data = st->base + 8 + n;
  for (size_t i = 0; i < count; i++) {
    st->tensors[i] = entries[i].info;
    st->tensors[i].data = data + entries[i].begin;
    st->tensors[i].file_offset = 8 + n + entries[i].begin;
    st->by_name[i] = &st->tensors[i];
  }
  if (count) qsort(st->by_name, count, sizeof *st->by_name, qd_st_name_cmp_);

done:
  qd_free(st->alloc, entries, count * sizeof *entries);
  return status;
}

static qd_status_t qd_st_create_(const char* name, qd_allocator_t a, qd_safetensors_t** out) {
  qd_safetensors_t* st;
  QD_TRY(qd_calloc(a, 1, sizeof *st, (void**)&st));
  st->alloc = a;
  size_t len = strlen(name);
  qd_status_t s = qd_strndup(a, name, len, &st->path);
  if (s) {
    qd_free(a, st, sizeof *st);
    return s;
  }
  st->path_size = len + 1;
  *out = st;
  return QD_OK;
}

qd_status_t qd_safetensors_open_memory(const void* data, size_t size, const char* name, qd_allocator_t allocator,
                                       qd_safetensors_t** out_st) {
  *out_st = NULL;
  if (!data && size)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "safetensors image: NULL data of %zu bytes", size);
  qd_safetensors_t* st;
  QD_TRY(qd_st_create_(name ? name : "<memory>", allocator, &st));
  st->base = data;
  st->size = size;
  qd_status_t s = qd_st_validate_(st);
  if (s) {
    qd_safetensors_close(st);
    return s;
  }
  *out_st = st;
  return QD_OK;
}

qd_status_t qd_safetensors_open(const char* path, qd_allocator_t allocator, qd_safetensors_t** out_st) {
  *out_st = NULL;
  int fd;
  uint64_t size;
  QD_TRY(qd_file_open_regular(path, &fd, &size));
  if (size > SIZE_MAX) {
    close(fd);
    return QD_ERR(IO, IO_MAP, "%s: %llu bytes do not fit in this process's address space", path,
                  (unsigned long long)size);
  }
  qd_safetensors_t* st;
  qd_status_t s = qd_st_create_(path, allocator, &st);
  if (s) {
    close(fd);
    return s;
  }
  /* A file too small to hold the length field is not mapped (mmap rejects length 0); validation reports it. */
  if (size >= 8) {
    void* map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      int e = errno;
      close(fd);
      qd_safetensors_close(st);
      return QD_ERR(IO, IO_MAP, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size, strerror(e));
    }
    st->base = map;
    st->mapped = true;
  }
  close(fd);
  st->size = size;
  s = qd_st_validate_(st);
  if (s) {
    qd_safetensors_close(st);
    return s;
  }
  *out_st = st;
  return QD_OK;
}

void qd_safetensors_close(qd_safetensors_t* st) {
  if (!st) return;
  qd_allocator_t a = st->alloc;
  if (st->mapped) munmap((void*)st->base, (size_t)st->size);
  qd_json_destroy(st->doc);
  qd_free(a, st->tensors, st->count * sizeof *st->tensors);
  qd_free(a, st->by_name, st->count * sizeof *st->by_name);
  qd_free(a, st->path, st->path_size);
  qd_free(a, st, sizeof *st);
}

const char* qd_safetensors_path(const qd_safetensors_t* st) { return st ? st->path : NULL; }
uint64_t qd_safetensors_file_size(const qd_safetensors_t* st) { return st ? st->size : 0; }
uint64_t qd_safetensors_header_size(const qd_safetensors_t* st) { return st ? st->header_len : 0; }
uint64_t qd_safetensors_data_size(const qd_safetensors_t* st) { return st ? st->size - 8 - st->header_len : 0; }
size_t qd_safetensors_tensor_count(const qd_safetensors_t* st) { return st ? st->count : 0; }

const qd_tensor_info_t* qd_safetensors_tensor(const qd_safetensors_t* st, size_t index) {
  return st && index < st->count ? &st->tensors[index] : NULL;
}

const qd_tensor_info_t* qd_safetensors_find(const qd_safetensors_t* st, const char* name) {
  if (!st || !name) return NULL;
  size_t lo = 0, hi = st->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(st->by_name[mid]->name, name);
    if (c == 0) return st->by_name[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

size_t qd_safetensors_metadata_count(const qd_safetensors_t* st) { return st ? st->metadata_count : 0; }

bool qd_safetensors_metadata_at(const qd_safetensors_t* st, size_t index, const char** out_key,
                                const char** out_value) {
  if (!st || index >= st->metadata_count) return false;
  if (out_key) *out_key = st->metadata[index].key;
  if (out_value) *out_value = st->metadata[index].value->u.string.str;
  return true;
}

const char* qd_safetensors_metadata_get(const qd_safetensors_t* st, const char* key) {
  if (!st || !key) return NULL;
  for (size_t i = 0; i < st->metadata_count; i++)
    if (strcmp(st->metadata[i].key, key) == 0) return st->metadata[i].value->u.string.str;
  return NULL;
}

qd_status_t qd_tensor_read_f32(const qd_tensor_info_t* t, float* dst) {
  if (!t) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_tensor_read_f32: NULL tensor");
  if (t->numel > SIZE_MAX / sizeof(float))
    return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "%s: tensor '%s': %llu elements do not fit in memory", t->file,
                  t->name, (unsigned long long)t->numel);
  if (t->numel == 0) return QD_OK;
  QD_TRY_CTX(qd_convert_to_f32(t->dtype, t->data, (size_t)t->numel, dst), "reading tensor '%s' of %s", t->name,
             t->file);
  return QD_OK;
}
