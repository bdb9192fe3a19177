/* Bump arena; see arena.h. */
#include "ir/arena.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct qd_arena_chunk {
  qd_arena_chunk_t* next;
  size_t size; /* bytes of data[] */
  _Alignas(16) unsigned char data[];
};

void qd_arena_init(qd_arena_t* arena, qd_allocator_t allocator, size_t chunk_size) {
  arena->allocator = allocator;
  arena->chunk_size = chunk_size ? chunk_size : 16384;
  arena->head = NULL;
  arena->used = arena->capacity = 0;
}

void qd_arena_deinit(qd_arena_t* arena) {
  qd_arena_chunk_t* c = arena->head;
  while (c) {
    qd_arena_chunk_t* next = c->next;
    qd_free(arena->allocator, c, sizeof(*c) + c->size);
    c = next;
  }
  arena->head = NULL;
  arena->used = arena->capacity = 0;
}

qd_status_t qd_arena_alloc(qd_arena_t* arena, size_t size, void** out_ptr) {
  *out_ptr = NULL;
  if (size == 0) size = 1;
  size_t rounded = (size + 15) & ~(size_t)15;
  if (rounded < size) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "arena request of %zu bytes overflows", size);
  if (!arena->head || arena->capacity - arena->used < rounded) {
    size_t chunk = rounded > arena->chunk_size ? rounded : arena->chunk_size;
    void* mem;
    QD_TRY(qd_malloc(arena->allocator, sizeof(qd_arena_chunk_t) + chunk, &mem));
    qd_arena_chunk_t* c = mem;
    c->size = chunk;
    if (arena->head && rounded > arena->chunk_size) {
      /* A large one-off request: slot it in behind the current chunk so the head's free space stays usable. */
      c->next = arena->head->next;
      arena->head->next = c;
      *out_ptr = c->data;
      return QD_OK;
    }
    c->next = arena->head;
    arena->head = c;
    arena->used = 0;
    arena->capacity = chunk;
  }
  *out_ptr = arena->head->data + arena->used;
  arena->used += rounded;
  return QD_OK;
}

qd_status_t qd_arena_strndup(qd_arena_t* arena, const char* s, size_t n, char** out_str) {
  void* p;
  QD_TRY(qd_arena_alloc(arena, n + 1, &p));
  memcpy(p, s, n);
  ((char*)p)[n] = '\0';
  *out_str = p;
  return QD_OK;
}

qd_status_t qd_arena_strdup(qd_arena_t* arena, const char* s, char** out_str) {
  return qd_arena_strndup(arena, s, strlen(s), out_str);
}

qd_status_t qd_arena_printf(qd_arena_t* arena, char** out_str, const char* fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) {
    va_end(ap);
    return QD_ERR(INTERNAL, INTERNAL, "bad format string '%s'", fmt);
  }
  void* p;
  qd_status_t s = qd_arena_alloc(arena, (size_t)n + 1, &p);
  if (!s) {
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    *out_str = p;
  }
  va_end(ap);
  return s;
}
