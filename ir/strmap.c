/* String hash map; see strmap.h. */
#include "ir/strmap.h"

#include <string.h>

uint32_t qd_hash_bytes(const void* data, size_t len) {
  /* FNV-1a: names are short, so a simple byte hash is enough. */
  const unsigned char* p = data;
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

void qd_strmap_init(qd_strmap_t* map, qd_allocator_t allocator) {
  memset(map, 0, sizeof *map);
  map->allocator = allocator;
}

void qd_strmap_deinit(qd_strmap_t* map) {
  qd_free(map->allocator, map->slots, map->capacity * sizeof(qd_strmap_slot_t));
  map->slots = NULL;
  map->capacity = map->count = 0;
}

static size_t qd_strmap_find_slot_(const qd_strmap_slot_t* slots, size_t capacity, const char* key, size_t len,
                                   uint32_t hash) {
  size_t mask = capacity - 1;
  size_t i = hash & mask;
  while (slots[i].key) {
    if (slots[i].hash == hash && strncmp(slots[i].key, key, len) == 0 && slots[i].key[len] == '\0') return i;
    i = (i + 1) & mask;
  }
  return i;
}

static qd_status_t qd_strmap_grow_(qd_strmap_t* map) {
  size_t cap = map->capacity ? map->capacity * 2 : 64;
  void* mem;
  QD_TRY(qd_calloc(map->allocator, cap, sizeof(qd_strmap_slot_t), &mem));
  qd_strmap_slot_t* slots = mem;
  for (size_t i = 0; i < map->capacity; i++) {
    qd_strmap_slot_t* s = &map->slots[i];
    if (!s->key) continue;
    size_t j = qd_strmap_find_slot_(slots, cap, s->key, strlen(s->key), s->hash);
    slots[j] = *s;
  }
  qd_free(map->allocator, map->slots, map->capacity * sizeof(qd_strmap_slot_t));
  map->slots = slots;
  map->capacity = cap;
  return QD_OK;
}

qd_status_t qd_strmap_put(qd_strmap_t* map, const char* key, int32_t value, int32_t* out_existing) {
  if (out_existing) *out_existing = -1;
  if ((map->count + 1) * 4 > map->capacity * 3) QD_TRY(qd_strmap_grow_(map));
  size_t len = strlen(key);
  uint32_t h = qd_hash_bytes(key, len);
  size_t i = qd_strmap_find_slot_(map->slots, map->capacity, key, len, h);
  if (map->slots[i].key) {
    if (out_existing) *out_existing = map->slots[i].value;
    return QD_OK;
  }
  map->slots[i] = (qd_strmap_slot_t){key, h, value};
  map->count++;
  return QD_OK;
}

int32_t qd_strmap_getn(const qd_strmap_t* map, const char* key, size_t len) {
  if (!map->capacity) return -1;
  uint32_t h = qd_hash_bytes(key, len);
  size_t i = qd_strmap_find_slot_(map->slots, map->capacity, key, len, h);
  return map->slots[i].key ? map->slots[i].value : -1;
}

int32_t qd_strmap_get(const qd_strmap_t* map, const char* key) { return qd_strmap_getn(map, key, strlen(key)); }
