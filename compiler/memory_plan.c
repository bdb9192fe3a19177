/* Liveness-based arena planning; see memory_plan.h.
 *
 * Greedy by decreasing size: each value takes the lowest aligned offset that does not collide with an already
 * placed value whose lifetime overlaps its own. Largest-first keeps the big activations (MLP hidden states,
 * attention inputs) packed at the bottom; the small ones fill holes. n is a few thousand, so the quadratic scan
 * costs milliseconds. */
#include "compiler/memory_plan.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/lowering.h"

static uint64_t qd_cuda_size_(void* user, const qd_graph_t* g, int32_t v) {
  return qd_cuda_value_bytes((const qd_cuda_lowering_t*)user, g, v);
}

qd_status_t qd_memory_plan_create_lowered(const qd_graph_t* g, const qd_cuda_lowering_t* l, qd_allocator_t allocator,
                                          qd_memory_plan_t** out_plan) {
  qd_memory_lifetimes_t lt = {l->last_use, l->first_def};
  return qd_memory_plan_create(g, qd_cuda_size_, (void*)l, &lt, allocator, out_plan);
}

qd_status_t qd_memory_plan_create_cuda(const qd_graph_t* g, qd_allocator_t allocator, qd_memory_plan_t** out_plan) {
  qd_cuda_lowering_t* l;
  QD_TRY(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT, allocator, &l));
  qd_status_t s = qd_memory_plan_create_lowered(g, l, allocator, out_plan);
  qd_cuda_lowering_destroy(l);
  return s;
}

typedef struct qd_plan_item {
  int32_t value;
  int32_t begin, end; /* lifetime in node indices, inclusive */
  uint64_t size;
} qd_plan_item_t;

static int qd_plan_item_cmp_(const void* a, const void* b) {
  const qd_plan_item_t *x = a, *y = b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return x->value - y->value; /* deterministic */
}

static uint64_t qd_align_up_(uint64_t v) { return (v + QD_MEMORY_ALIGNMENT - 1) & ~(uint64_t)(QD_MEMORY_ALIGNMENT - 1); }

static void qd_plan_lifetime_(const qd_graph_t* g, const qd_memory_lifetimes_t* lt, int32_t v, int32_t* begin,
                              int32_t* end) {
  const qd_value_t* val = &g->values[v];
  int32_t last = lt && lt->last_use ? lt->last_use[v] : val->last_use;
  *begin = lt && lt->first_def && lt->first_def[v] < val->producer ? lt->first_def[v] : val->producer;
  /* A value nobody reads still needs its bytes while its producer writes it. */
  *end = last >= val->producer ? last : val->producer;
}

qd_status_t qd_memory_plan_create(const qd_graph_t* g, qd_storage_size_fn size_of, void* user,
                                  const qd_memory_lifetimes_t* lifetimes, qd_allocator_t allocator,
                                  qd_memory_plan_t** out_plan) {
  *out_plan = NULL;
  qd_memory_plan_t* p;
  QD_TRY(qd_calloc(allocator, 1, sizeof *p, (void**)&p));
  p->allocator = allocator;
  p->value_count = g->value_count;
  size_t n = (size_t)(g->value_count ? g->value_count : 1);
  qd_plan_item_t* items = NULL;
  qd_status_t s = qd_calloc(allocator, n, sizeof *p->offsets, (void**)&p->offsets);
  if (!s) s = qd_calloc(allocator, n, sizeof *p->sizes, (void**)&p->sizes);
  if (!s) s = qd_calloc(allocator, n, sizeof *items, (void**)&items);
  if (s) {
    qd_free(allocator, items, n * sizeof *items);
    qd_memory_plan_destroy(p);
    return s;
  }
  int32_t count = 0;
  for (int32_t v = 0; v < g->value_count; v++) {
    p->offsets[v] = UINT64_MAX;
    p->sizes[v] = size_of(user, g, v);
    if (p->sizes[v] == 0) continue;
    qd_plan_item_t* it = &items[count++];
    it->value = v;
    it->size = qd_align_up_(p->sizes[v]);
    qd_plan_lifetime_(g, lifetimes, v, &it->begin, &it->end);
    p->naive_bytes += it->size;
  }
  qsort(items, (size_t)count, sizeof *items, qd_plan_item_cmp_);
  /* Place each item: collect the intervals of placed, overlapping items sorted by offset, then take the first
   * gap that fits. */
  for (int32_t i = 0; i < count; i++) {
    qd_plan_item_t* it = &items[i];
    uint64_t offset = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (int32_t j = 0; j < i; j++) {
        const qd_plan_item_t* o = &items[j];
        if (o->end < it->begin || it->end < o->begin) continue;
        uint64_t o_off = p->offsets[o->value];
        if (offset < o_off + o->size && o_off < offset + it->size) {
          offset = o_off + o->size;
          moved = true;
        }
      }
    }
    p->offsets[it->value] = offset;
    if (offset + it->size > p->arena_bytes) p->arena_bytes = offset + it->size;
  }
  qd_free(allocator, items, n * sizeof *items);
  *out_plan = p;
  return QD_OK;
}

void qd_memory_plan_destroy(qd_memory_plan_t* p) {
  if (!p) return;
  size_t n = (size_t)(p->value_count ? p->value_count : 1);
  qd_free(p->allocator, p->offsets, n * sizeof *p->offsets);
  qd_free(p->allocator, p->sizes, n * sizeof *p->sizes);
  qd_free(p->allocator, p, sizeof *p);
}

qd_status_t qd_memory_plan_check(const qd_memory_plan_t* p, const qd_graph_t* g, const qd_memory_lifetimes_t* lt) {
  if (p->value_count != g->value_count)
    return QD_ERR(BAD_INPUT, INTERNAL, "memory plan for %d values, graph has %d", p->value_count, g->value_count);
  for (int32_t a = 0; a < g->value_count; a++) {
    if (p->offsets[a] == UINT64_MAX) continue;
    if (p->offsets[a] % QD_MEMORY_ALIGNMENT || p->offsets[a] + p->sizes[a] > p->arena_bytes)
      return QD_ERR(BAD_INPUT, INTERNAL, "value '%s' is misplaced in the arena", g->values[a].name);
    int32_t ab, ae;
    qd_plan_lifetime_(g, lt, a, &ab, &ae);
    for (int32_t b = a + 1; b < g->value_count; b++) {
      if (p->offsets[b] == UINT64_MAX) continue;
      int32_t bb, be;
      qd_plan_lifetime_(g, lt, b, &bb, &be);
      if (ae < bb || be < ab) continue;
      if (p->offsets[a] < p->offsets[b] + p->sizes[b] && p->offsets[b] < p->offsets[a] + p->sizes[a])
        return QD_ERR(BAD_INPUT, INTERNAL, "values '%s' and '%s' are alive together but share arena bytes",
                      g->values[a].name, g->values[b].name);
    }
  }
  return QD_OK;
}
