/* Static memory planning: every value of an instantiated graph gets an offset in one arena, so a step runs with
 * no allocation. Two values may share bytes when their lifetimes ([producer, last reader]) do not overlap.
 *
 * Sizes come from a storage policy (how an executor stores each value: bf16 activations on the GPU, fp32 rope
 * tables, ...), so one graph can be planned for different executors. */
#ifndef QDC_MEMORY_PLAN_H
#define QDC_MEMORY_PLAN_H

#include "ir/graph.h"

enum { QD_MEMORY_ALIGNMENT = 256 }; /* enough for 16-byte vector access and cuBLASLt's preferred alignment */

typedef struct qd_memory_plan {
  qd_allocator_t allocator;
  int32_t value_count;
  uint64_t* offsets;     /* per value; UINT64_MAX for values that take no arena space (graph inputs) */
  uint64_t* sizes;       /* per value, in bytes, before alignment */
  uint64_t arena_bytes;  /* the peak: every offset + size fits below it */
  uint64_t naive_bytes;  /* sum of all sizes: what allocating each value separately would hold at once */
} qd_memory_plan_t;

/* Returns the storage bytes of a value (0 for values the executor keeps elsewhere). */
typedef uint64_t (*qd_storage_size_fn)(void* user, const qd_graph_t* graph, int32_t value);

/* The last node that reads each value (NULL: the graph's own lifetimes); executors that fuse nodes read some
 * inputs later than the graph says (runtime/cuda/lowering.h). And the first node that writes each value's bytes
 * (NULL: its producer): a concatenation whose parts' producers write it in place is written before its own node. */
typedef struct qd_memory_lifetimes {
  const int32_t* last_use;
  const int32_t* first_def;
} qd_memory_lifetimes_t;

/* The plan the CUDA executor uses: sizes, virtual values and lifetimes from its lowering (runtime/cuda/lowering.h,
 * with the GELU epilogue fused). */
qd_status_t qd_memory_plan_create_cuda(const qd_graph_t* graph, qd_allocator_t allocator, qd_memory_plan_t** out_plan);
struct qd_cuda_lowering;
/* The same for a lowering the caller made (the executor, which may lower without the GELU epilogue). */
qd_status_t qd_memory_plan_create_lowered(const qd_graph_t* graph, const struct qd_cuda_lowering* lowering,
                                          qd_allocator_t allocator, qd_memory_plan_t** out_plan);

qd_status_t qd_memory_plan_create(const qd_graph_t* graph, qd_storage_size_fn size_of, void* user,
                                  const qd_memory_lifetimes_t* lifetimes, qd_allocator_t allocator,
                                  qd_memory_plan_t** out_plan);
void qd_memory_plan_destroy(qd_memory_plan_t* plan);

/* Checks the invariant: values alive at the same time never share bytes (used by tests and after reading a plan). */
qd_status_t qd_memory_plan_check(const qd_memory_plan_t* plan, const qd_graph_t* graph,
                                 const qd_memory_lifetimes_t* lifetimes);

#endif
