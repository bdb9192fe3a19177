/* Host allocators: the system allocator, checked helpers and the failing test allocator. */
#include "qd/allocator.h"

#include <stdlib.h>
#include <string.h>

static void* qd_system_alloc_(void* self, size_t size) {
  (void)self;
  return malloc(size);
}
static void* qd_system_realloc_(void* self, void* ptr, size_t old_size, size_t new_size) {
  (void)self;
  (void)old_size;
  return realloc(ptr, new_size);
}
static void qd_system_free_(void* self, void* ptr, size_t size) {
  (void)self;
  (void)size;
  free(ptr);
}
static const qd_allocator_vtable_t qd_system_vtable_ = {qd_system_alloc_, qd_system_realloc_, qd_system_free_};

qd_allocator_t qd_allocator_system(void) { return (qd_allocator_t){&qd_system_vtable_, NULL}; }

qd_status_t qd_malloc(qd_allocator_t a, size_t size, void** out_ptr) {
  *out_ptr = NULL;
  if (size == 0) size = 1;
  void* p = a.vtable->alloc(a.self, size);
  if (!p) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory allocating %zu bytes", size);
  *out_ptr = p;
  return QD_OK;
}

qd_status_t qd_calloc(qd_allocator_t a, size_t count, size_t size, void** out_ptr) {
  *out_ptr = NULL;
  if (size != 0 && count > SIZE_MAX / size)
    return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "allocation of %zu x %zu bytes overflows", count, size);
  QD_TRY(qd_malloc(a, count * size, out_ptr));
  memset(*out_ptr, 0, count * size);
  return QD_OK;
}

qd_status_t qd_realloc(qd_allocator_t a, void* ptr, size_t old_size, size_t new_size, void** out_ptr) {
  if (new_size == 0) new_size = 1;
  void* p = a.vtable->realloc(a.self, ptr, old_size, new_size);
  if (!p) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory growing a buffer to %zu bytes", new_size);
  *out_ptr = p;
  return QD_OK;
}

void qd_free(qd_allocator_t a, void* ptr, size_t size) {
  if (ptr) a.vtable->free(a.self, ptr, size);
}

qd_status_t qd_strndup(qd_allocator_t a, const char* s, size_t n, char** out_str) {
  void* p;
  QD_TRY(qd_malloc(a, n + 1, &p));
  memcpy(p, s, n);
  ((char*)p)[n] = '\0';
  *out_str = p;
  return QD_OK;
}

/* --- test allocator ------------------------------------------------------------------------------------- */

static bool qd_test_should_fail_(qd_test_allocator_t* t) {
  t->calls++;
  if (t->fail_at != 0 && t->calls == t->fail_at) {
    t->failures++;
    return true;
  }
  return false;
}

static void* qd_test_alloc_(void* self, size_t size) {
  qd_test_allocator_t* t = self;
  if (qd_test_should_fail_(t)) return NULL;
  void* p = t->parent.vtable->alloc(t->parent.self, size);
  if (p) {
    t->live_count++;
    t->live_bytes += (int64_t)size;
  }
  return p;
}

static void* qd_test_realloc_(void* self, void* ptr, size_t old_size, size_t new_size) {
  qd_test_allocator_t* t = self;
  /* Shrinking never fails in practice; growing is an allocation and may be chosen to fail. */
  if ((ptr == NULL || new_size > old_size) && qd_test_should_fail_(t)) return NULL;
  void* p = t->parent.vtable->realloc(t->parent.self, ptr, old_size, new_size);
  if (p) {
    if (!ptr) t->live_count++;
    t->live_bytes += (int64_t)new_size - (int64_t)(ptr ? old_size : 0);
  }
  return p;
}

static void qd_test_free_(void* self, void* ptr, size_t size) {
  qd_test_allocator_t* t = self;
  if (!ptr) return;
  t->live_count--;
  t->live_bytes -= (int64_t)size;
  t->parent.vtable->free(t->parent.self, ptr, size);
}

static const qd_allocator_vtable_t qd_test_vtable_ = {qd_test_alloc_, qd_test_realloc_, qd_test_free_};

void qd_test_allocator_init(qd_test_allocator_t* t, qd_allocator_t parent, uint64_t fail_at) {
  memset(t, 0, sizeof *t);
  t->parent = parent;
  t->fail_at = fail_at;
}

qd_allocator_t qd_test_allocator_as_allocator(qd_test_allocator_t* t) {
  return (qd_allocator_t){&qd_test_vtable_, t};
}
