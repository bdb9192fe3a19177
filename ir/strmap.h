/* A string -> int32 hash map (open addressing, linear probing). Keys are not copied: they must outlive the map
 * (graph names live in the graph's arena). Used for name lookups in graphs, checkpoints and plans. */
#ifndef QD_IR_STRMAP_H
#define QD_IR_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"

typedef struct qd_strmap_slot {
  const char* key; /* NULL = empty */
  uint32_t hash;
  int32_t value;
} qd_strmap_slot_t;

typedef struct qd_strmap {
  qd_allocator_t allocator;
  qd_strmap_slot_t* slots;
  size_t capacity; /* power of two, or 0 */
  size_t count;
} qd_strmap_t;

void qd_strmap_init(qd_strmap_t* map, qd_allocator_t allocator);
void qd_strmap_deinit(qd_strmap_t* map);
/* Inserts key; if it is already present, leaves the map unchanged and sets *out_existing to its value
 * (out_existing may be NULL, and is set to -1 when the key is new). */
qd_status_t qd_strmap_put(qd_strmap_t* map, const char* key, int32_t value, int32_t* out_existing);
/* -1 when absent. */
int32_t qd_strmap_get(const qd_strmap_t* map, const char* key);
int32_t qd_strmap_getn(const qd_strmap_t* map, const char* key, size_t len);

uint32_t qd_hash_bytes(const void* data, size_t len);

#endif
