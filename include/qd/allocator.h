/* qd: injected host allocators.
 *
 * Every create/open function takes a qd_allocator_t and uses it for all host memory the object owns, so an
 * application can route qd's memory through its own allocator and tests can fail any chosen allocation.
 * An allocator is a small value (two pointers) passed by value; `self` is its state.
 *
 * Contract of the callbacks:
 *   - alloc(self, size) returns memory aligned to at least 16 bytes, or NULL. size is never 0.
 *   - realloc(self, ptr, old_size, new_size) behaves like C realloc (ptr may be NULL); NULL on failure leaves
 *     ptr valid. old_size is passed so that allocators need not track sizes themselves.
 *   - free(self, ptr, size) releases; ptr may be NULL.
 */
#ifndef QD_ALLOCATOR_H
#define QD_ALLOCATOR_H

#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_allocator_vtable {
  void* (*alloc)(void* self, size_t size);
  void* (*realloc)(void* self, void* ptr, size_t old_size, size_t new_size);
  void (*free)(void* self, void* ptr, size_t size);
} qd_allocator_vtable_t;

typedef struct qd_allocator {
  const qd_allocator_vtable_t* vtable;
  void* self;
} qd_allocator_t;

/* The C library's malloc/realloc/free. */
qd_allocator_t qd_allocator_system(void);

/* Helpers that turn a NULL into a status naming what was being allocated. */
qd_status_t qd_malloc(qd_allocator_t a, size_t size, void** out_ptr);
qd_status_t qd_calloc(qd_allocator_t a, size_t count, size_t size, void** out_ptr); /* overflow-checked, zeroed */
qd_status_t qd_realloc(qd_allocator_t a, void* ptr, size_t old_size, size_t new_size, void** out_ptr);
void qd_free(qd_allocator_t a, void* ptr, size_t size);
/* A NUL-terminated copy of the first n bytes of s (free with size n + 1). */
qd_status_t qd_strndup(qd_allocator_t a, const char* s, size_t n, char** out_str);

/* A test allocator: wraps another allocator, counts allocations, and fails the fail_at-th one (1-based; 0 never
 * fails). It records the live allocation count and bytes, so a test can assert that everything was freed. */
typedef struct qd_test_allocator {
  qd_allocator_t parent;
  uint64_t fail_at;
  uint64_t calls;     /* alloc and growing realloc calls seen so far */
  uint64_t failures;  /* how many were failed on purpose */
  int64_t live_count;
  int64_t live_bytes;
} qd_test_allocator_t;

void qd_test_allocator_init(qd_test_allocator_t* t, qd_allocator_t parent, uint64_t fail_at);
qd_allocator_t qd_test_allocator_as_allocator(qd_test_allocator_t* t);

#ifdef __cplusplus
}
#endif
#endif /* QD_ALLOCATOR_H */
