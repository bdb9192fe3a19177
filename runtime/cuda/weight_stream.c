/* Streamed weights: planning (weight_stream.h). */
#include "runtime/cuda/weight_stream.h"

#include <stdlib.h>
#include <string.h>

static size_t qd_block_key_len_(const char* name) {
  const char* part = name;
  while (*part) {
    const char* end = part;
    bool digits = true;
    for (; *end && *end != '.'; end++)
      if (*end < '0' || *end > '9') digits = false;
    if (digits && end > part && part != name) return (size_t)(end - name);
    if (!*end) break;
    part = end + 1;
  }
  return 0;
}

/* The layer of a weight in a block: its name without the last component ("transformer_blocks.7.attn.to_q" for
 * its ".weight" and ".bias"); 0 for a weight in no block, which stays resident either way. */
static size_t qd_layer_key_len_(const char* name) {
  if (!qd_block_key_len_(name)) return 0;
  const char* dot = strrchr(name, '.');
  return dot ? (size_t)(dot - name) : strlen(name);
}

bool qd_weight_block_key(const char* name, char* out, size_t out_size) {
  size_t n = qd_block_key_len_(name);
  if (out_size) out[0] = '\0';
  if (!n || n + 1 > out_size) return false;
  memcpy(out, name, n);
  out[n] = '\0';
  return true;
}

qd_plan_range_t qd_weight_span(const qd_plan_weight_t* w) {
  uint64_t end = w->data.offset + w->data.bytes;
  if (w->absmax.bytes && w->absmax.offset + w->absmax.bytes > end) end = w->absmax.offset + w->absmax.bytes;
  if (w->nested.bytes && w->nested.offset + w->nested.bytes > end) end = w->nested.offset + w->nested.bytes;
  return (qd_plan_range_t){w->data.offset, end - w->data.offset};
}

static uint64_t qd_align_up_(uint64_t x) { return (x + QD_PLAN_WEIGHT_ALIGN - 1) & ~(uint64_t)(QD_PLAN_WEIGHT_ALIGN - 1); }

void qd_weight_stream_destroy(qd_weight_stream_t* s) {
  if (!s) return;
  size_t wc = (size_t)(s->weight_count ? s->weight_count : 1);
  qd_free(s->allocator, s->groups, (size_t)(s->group_count ? s->group_count : 1) * sizeof *s->groups);
  qd_free(s->allocator, s->runs, (size_t)(s->run_capacity ? s->run_capacity : 1) * sizeof *s->runs);
  qd_free(s->allocator, s->group_of, wc * sizeof *s->group_of);
  qd_free(s->allocator, s->shift, wc * sizeof *s->shift);
  qd_free(s->allocator, s, sizeof *s);
}

/* Sorting the streamed weights: by group, then by where they are in the section. */
typedef struct qd_ws_item {
  int32_t weight, group;
  uint64_t offset;
} qd_ws_item_t;

static int qd_ws_item_cmp_(const void* a, const void* b) {
  const qd_ws_item_t *x = a, *y = b;
  if (x->group != y->group) return (x->group > y->group) - (x->group < y->group);
  return (x->offset > y->offset) - (x->offset < y->offset);
}

typedef struct qd_ws_interval {
  int32_t key_weight; /* a weight whose name carries the block's key */
  size_t key_len;
  int32_t first, last;
  int32_t merged_into; /* after sorting and merging: the group index */
} qd_ws_interval_t;

static int qd_ws_interval_cmp_(const void* a, const void* b) {
  const qd_ws_interval_t *x = a, *y = b;
  return (x->first > y->first) - (x->first < y->first);
}

static qd_status_t qd_weight_stream_plan_(qd_weight_stream_t* s, const qd_plan_weight_t* weights, int32_t count,
                                          const int32_t* first_use, const int32_t* last_use, const bool* resident,
                                          bool layers,
                                          qd_ws_interval_t** blocks_out, int32_t* block_cap, qd_ws_item_t** items_out,
                                          int32_t* item_cap) {
  /* The blocks the program reads, each with the launches that read it. */
  int32_t nb = 0, ni = 0;
  QD_TRY(qd_calloc(s->allocator, (size_t)(count ? count : 1), sizeof **blocks_out, (void**)blocks_out));
  *block_cap = count ? count : 1;
  QD_TRY(qd_calloc(s->allocator, (size_t)(count ? count : 1), sizeof **items_out, (void**)items_out));
  *item_cap = count ? count : 1;
  qd_ws_interval_t* blocks = *blocks_out;
  qd_ws_item_t* items = *items_out;
  for (int32_t w = 0; w < count; w++) {
    s->group_of[w] = -1;
    if (first_use[w] < 0 || (resident && resident[w])) continue;
    size_t len = layers ? qd_layer_key_len_(weights[w].name) : qd_block_key_len_(weights[w].name);
    if (!len) continue;
    int32_t b = 0;
    while (b < nb && !(blocks[b].key_len == len && memcmp(weights[blocks[b].key_weight].name, weights[w].name, len) == 0))
      b++;
    if (b == nb) blocks[nb++] = (qd_ws_interval_t){w, len, first_use[w], last_use[w], -1};
    if (first_use[w] < blocks[b].first) blocks[b].first = first_use[w];
    if (last_use[w] > blocks[b].last) blocks[b].last = last_use[w];
    items[ni++] = (qd_ws_item_t){w, b, qd_weight_span(&weights[w]).offset};
  }
  /* Launch order; blocks whose launches overlap become one group. */
  int32_t* order_of_block;
  QD_TRY(qd_calloc(s->allocator, (size_t)(nb ? nb : 1), sizeof *order_of_block, (void**)&order_of_block));
  for (int32_t b = 0; b < nb; b++) blocks[b].merged_into = b; /* remember the original index through the sort */
  qsort(blocks, (size_t)nb, sizeof *blocks, qd_ws_interval_cmp_);
  int32_t groups = 0, last = -1;
  for (int32_t b = 0; b < nb; b++) {
    int32_t original = blocks[b].merged_into;
    if (groups == 0 || blocks[b].first > last) groups++;
    if (blocks[b].last > last) last = blocks[b].last;
    order_of_block[original] = groups - 1;
  }
  if (layers && groups > 1) {
    /* Layers are small and many: consecutive ones share a copy up to the largest layer's size, so the slots stay
     * one layer large and the ring moves fewer, bigger pieces. Merging neighbours keeps the groups in order. */
    uint64_t* bytes = NULL;
    qd_status_t st = qd_calloc(s->allocator, (size_t)groups, sizeof *bytes, (void**)&bytes);
    if (st) {
      qd_free(s->allocator, order_of_block, (size_t)(nb ? nb : 1) * sizeof *order_of_block);
      return st;
    }
    uint64_t largest = 0;
    for (int32_t i = 0; i < ni; i++)
      bytes[order_of_block[items[i].group]] += qd_align_up_(qd_weight_span(&weights[items[i].weight]).bytes);
    for (int32_t g = 0; g < groups; g++) largest = bytes[g] > largest ? bytes[g] : largest;
    int32_t bin = 0;
    uint64_t fill = 0;
    for (int32_t g = 0; g < groups; g++) {
      if (fill > 0 && fill + bytes[g] > largest) bin++, fill = 0;
      fill += bytes[g];
      bytes[g] = (uint64_t)bin; /* now the group's bin */
    }
    for (int32_t b = 0; b < nb; b++) order_of_block[b] = (int32_t)bytes[order_of_block[b]];
    qd_free(s->allocator, bytes, (size_t)groups * sizeof *bytes);
    groups = bin + 1;
  }
  if (groups) {
    qd_status_t st = qd_calloc(s->allocator, (size_t)groups, sizeof *s->groups, (void**)&s->groups);
    if (st) {
      qd_free(s->allocator, order_of_block, (size_t)(nb ? nb : 1) * sizeof *order_of_block);
      return st;
    }
  }
  s->group_count = groups;
  for (int32_t g = 0; g < groups; g++) s->groups[g].first_launch = -1;
  for (int32_t b = 0; b < nb; b++) {
    qd_weight_group_t* g = &s->groups[order_of_block[blocks[b].merged_into]];
    if (g->first_launch < 0 || blocks[b].first < g->first_launch) g->first_launch = blocks[b].first;
    if (blocks[b].last > g->last_launch) g->last_launch = blocks[b].last;
  }
  for (int32_t i = 0; i < ni; i++) items[i].group = order_of_block[items[i].group];
  qd_free(s->allocator, order_of_block, (size_t)(nb ? nb : 1) * sizeof *order_of_block);
  /* Runs: a group's weights in section order, neighbours (up to the section's alignment padding) in one copy;
   * each run starts aligned in its slot. */
  qsort(items, (size_t)ni, sizeof *items, qd_ws_item_cmp_);
  if (ni) {
    QD_TRY(qd_calloc(s->allocator, (size_t)ni, sizeof *s->runs, (void**)&s->runs));
    s->run_capacity = ni;
  }
  for (int32_t i = 0; i < ni; i++) {
    qd_plan_range_t span = qd_weight_span(&weights[items[i].weight]);
    qd_weight_group_t* g = &s->groups[items[i].group];
    qd_weight_run_t* r = s->run_count ? &s->runs[s->run_count - 1] : NULL;
    bool extend = g->run_count > 0 && qd_align_up_(r->src + r->bytes) == span.offset;
    if (extend) {
      r->bytes = span.offset + span.bytes - r->src;
    } else {
      if (g->run_count == 0) g->run_first = s->run_count;
      r = &s->runs[s->run_count++];
      *r = (qd_weight_run_t){span.offset, span.bytes, qd_align_up_(g->bytes)};
      g->run_count++;
    }
    g->bytes = r->dst + r->bytes;
    s->group_of[items[i].weight] = items[i].group;
    s->shift[items[i].weight] = (int64_t)r->dst - (int64_t)r->src;
  }
  for (int32_t g = 0; g < groups; g++) {
    s->groups[g].bytes = qd_align_up_(s->groups[g].bytes);
    if (s->groups[g].bytes > s->slot_bytes) s->slot_bytes = s->groups[g].bytes;
    s->streamed_bytes += s->groups[g].bytes;
  }
  return QD_OK;
}

qd_status_t qd_weight_stream_plan(const qd_plan_weight_t* weights, int32_t count, const int32_t* first_use,
                                  const int32_t* last_use, const bool* resident, bool layers,
                                  qd_allocator_t allocator, qd_weight_stream_t** out) {
  *out = NULL;
  qd_weight_stream_t* s;
  QD_TRY(qd_calloc(allocator, 1, sizeof *s, (void**)&s));
  s->allocator = allocator;
  s->weight_count = count;
  size_t wc = (size_t)(count ? count : 1);
  qd_status_t st = qd_calloc(allocator, wc, sizeof *s->group_of, (void**)&s->group_of);
  if (!st) st = qd_calloc(allocator, wc, sizeof *s->shift, (void**)&s->shift);
  qd_ws_interval_t* blocks = NULL;
  qd_ws_item_t* items = NULL;
  int32_t block_cap = 0, item_cap = 0;
  if (!st) st = qd_weight_stream_plan_(s, weights, count, first_use, last_use, resident, layers, &blocks,
                                       &block_cap, &items, &item_cap);
  qd_free(allocator, blocks, (size_t)block_cap * sizeof *blocks);
  qd_free(allocator, items, (size_t)item_cap * sizeof *items);
  /* One run per streamed weight was allocated; keep only those used. */
  if (!st && s->runs && s->run_count < s->run_capacity) {
    qd_weight_run_t* runs;
    st = qd_malloc(allocator, (size_t)s->run_count * sizeof *runs, (void**)&runs);
    if (!st) {
      memcpy(runs, s->runs, (size_t)s->run_count * sizeof *runs);
      qd_free(allocator, s->runs, (size_t)s->run_capacity * sizeof *s->runs);
      s->runs = runs;
      s->run_capacity = s->run_count;
    }
  }
  if (st) {
    qd_weight_stream_destroy(s);
    return st;
  }
  *out = s;
  return QD_OK;
}

uint64_t qd_weight_stream_keep_first(const qd_weight_stream_t* s, uint64_t keep_bytes, bool* resident) {
  uint64_t kept = 0;
  int32_t g = 0;
  while (g < s->group_count && kept + s->groups[g].bytes <= keep_bytes) kept += s->groups[g++].bytes;
  for (int32_t w = 0; w < s->weight_count; w++)
    if (s->group_of[w] >= 0 && s->group_of[w] < g) resident[w] = true;
  return kept;
}

void qd_weight_stream_bounds(const qd_plan_weight_t* weights, int32_t count, const bool* only, uint64_t* largest,
                             uint64_t* largest_layer, uint64_t* unblocked, uint64_t* blocked) {
  *largest = *unblocked = *blocked = 0;
  if (largest_layer) {
    /* A layer's weights (".weight", ".bias") are stored side by side too. */
    *largest_layer = 0;
    uint64_t run = 0;
    for (int32_t w = 0; w < count; w++) {
      size_t len = qd_layer_key_len_(weights[w].name);
      bool same = len && w > 0 && qd_layer_key_len_(weights[w - 1].name) == len &&
                  memcmp(weights[w].name, weights[w - 1].name, len) == 0;
      if (!same) run = 0;
      if (!len || (only && !only[w])) continue;
      run += qd_align_up_(qd_weight_span(&weights[w]).bytes);
      if (run > *largest_layer) *largest_layer = run;
    }
  }
  /* Weights of one block are stored together (graph order), so a block is a run of equal keys. */
  size_t run_len = 0;
  int32_t run_start = -1;
  uint64_t run_bytes = 0;
  for (int32_t w = 0; w <= count; w++) {
    size_t len = w < count ? qd_block_key_len_(weights[w].name) : 0;
    bool same = w < count && run_start >= 0 && len == run_len && len &&
                memcmp(weights[w].name, weights[run_start].name, len) == 0;
    if (!same && run_start >= 0) {
      if (run_bytes > *largest) *largest = run_bytes;
      run_start = -1;
    }
    if (w == count) break;
    uint64_t bytes = only && !only[w] ? 0 : qd_align_up_(qd_weight_span(&weights[w]).bytes);
    if (!len) {
      *unblocked += bytes;
      continue;
    }
    *blocked += bytes;
    if (!same) run_start = w, run_len = len, run_bytes = 0;
    run_bytes += bytes;
  }
}
