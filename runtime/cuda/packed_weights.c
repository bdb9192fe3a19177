/* Host-side store of repacked weights: see runtime/cuda/packed_weights.h. */
#include "runtime/cuda/packed_weights.h"

#include <string.h>

typedef struct qd_pw_entry_ {
  const void* source;
  uint64_t bytes;
  void* data;
} qd_pw_entry_t_;

struct qd_packed_weights {
  qd_allocator_t allocator;
  qd_pw_entry_t_* entries;
  int32_t count, capacity;
  uint64_t total;
};

qd_status_t qd_packed_weights_create(qd_allocator_t a, qd_packed_weights_t** out) {
  *out = NULL;
  qd_packed_weights_t* s;
  QD_TRY(qd_calloc(a, 1, sizeof *s, (void**)&s));
  s->allocator = a;
  *out = s;
  return QD_OK;
}

void qd_packed_weights_destroy(qd_packed_weights_t* s) {
  if (!s) return;
  for (int32_t i = 0; i < s->count; i++) qd_free(s->allocator, s->entries[i].data, (size_t)s->entries[i].bytes);
  qd_free(s->allocator, s->entries, (size_t)s->capacity * sizeof *s->entries);
  qd_free(s->allocator, s, sizeof *s);
}

static qd_pw_entry_t_* qd_pw_lookup_(const qd_packed_weights_t* s, const void* source, uint64_t bytes) {
  for (int32_t i = 0; s && i < s->count; i++)
    if (s->entries[i].source == source && s->entries[i].bytes == bytes) return &s->entries[i];
  return NULL;
}

const void* qd_packed_weights_find(const qd_packed_weights_t* s, const void* source, uint64_t bytes) {
  const qd_pw_entry_t_* e = qd_pw_lookup_(s, source, bytes);
  return e ? e->data : NULL;
}

qd_status_t qd_packed_weights_put(qd_packed_weights_t* s, const void* source, const void* packed, uint64_t bytes,
                                  const void** out) {
  *out = NULL;
  if (!s || !source || !packed || bytes == 0 || bytes > SIZE_MAX)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_packed_weights_put: no store, source or data, or a size "
                  "of %llu bytes", (unsigned long long)bytes);
  const qd_pw_entry_t_* have = qd_pw_lookup_(s, source, bytes);
  if (have) {
    *out = have->data;
    return QD_OK;
  }
  if (s->count == s->capacity) {
    int32_t cap = s->capacity ? 2 * s->capacity : 64;
    QD_TRY(qd_realloc(s->allocator, s->entries, (size_t)s->capacity * sizeof *s->entries,
                      (size_t)cap * sizeof *s->entries, (void**)&s->entries));
    s->capacity = cap;
  }
  void* copy;
  QD_TRY(qd_malloc(s->allocator, (size_t)bytes, &copy));
  memcpy(copy, packed, (size_t)bytes);
  s->entries[s->count++] = (qd_pw_entry_t_){source, bytes, copy};
  s->total += bytes;
  *out = copy;
  return QD_OK;
}

void qd_packed_weights_counts(const qd_packed_weights_t* s, int32_t* out_count, uint64_t* out_bytes) {
  *out_count = s ? s->count : 0;
  *out_bytes = s ? s->total : 0;
}
