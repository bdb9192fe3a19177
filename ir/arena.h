/* A bump arena over an injected allocator: many small, same-lifetime allocations (names, strings) freed at once.
 * Memory comes in chunks of at least chunk_size bytes; larger requests get a chunk of their own. */
#ifndef QD_IR_ARENA_H
#define QD_IR_ARENA_H

#include <stddef.h>

#include "qd/allocator.h"

typedef struct qd_arena_chunk qd_arena_chunk_t;

typedef struct qd_arena {
  qd_allocator_t allocator;
  size_t chunk_size;
  qd_arena_chunk_t* head;
  size_t used;      /* bytes used in head */
  size_t capacity;  /* bytes available in head */
} qd_arena_t;

void qd_arena_init(qd_arena_t* arena, qd_allocator_t allocator, size_t chunk_size);
void qd_arena_deinit(qd_arena_t* arena);
/* 16-byte aligned; never returns memory for size 0 (it allocates 1 byte). */
qd_status_t qd_arena_alloc(qd_arena_t* arena, size_t size, void** out_ptr);
qd_status_t qd_arena_strndup(qd_arena_t* arena, const char* s, size_t n, char** out_str);
qd_status_t qd_arena_strdup(qd_arena_t* arena, const char* s, char** out_str);
qd_status_t qd_arena_printf(qd_arena_t* arena, char** out_str, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

#endif
