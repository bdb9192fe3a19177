/* What the CUDA executor allocates on the device for one component at one resolution, computed without a device:
 * the executor sizes its allocations with it and qdrun --check compares it with a GPU's memory, so the two cannot
 * drift apart.
 *
 *   weights        the component's WGHT section, uploaded as stored (NF4 codes and scales, bf16 values)
 *   weight_copies  bf16 copies of f32-format weights (the kernels read bf16) and convolutions' weights repacked
 *                  for the conv2d kernel
 *   nested_map     NF4 double quantization's 256-entry code table
 *   arena          activations: the memory plan's peak
 *   scratch        two NF4 dequantization slots, each the largest NF4 weight in bf16 (256-byte aligned), or the
 *                  largest batch of NF4 linears' weights together (lowering.h), so one layer's dequantization
 *                  overlaps the previous layer's GEMM
 *   workspace      cuBLASLt's (32 MiB, its recommendation on Hopper)
 *   inputs         graph inputs in their storage types, each 256-byte aligned
 * The CUDA context, cuBLASLt's own state and loaded modules come on top (a few hundred MiB; not counted). */
#ifndef QD_RUNTIME_CUDA_DEVICE_MEMORY_H
#define QD_RUNTIME_CUDA_DEVICE_MEMORY_H

#include <stdint.h>

#include "ir/graph.h"
#include "runtime/cuda/lowering.h"
#include "runtime/plan_internal.h"

enum { QD_CUDA_WORKSPACE_BYTES = 32 << 20, QD_CUDA_ALLOC_ALIGN = 256 };

typedef struct qd_cuda_memory_needs {
  uint64_t weights, weight_copies, nested_map;
  uint64_t arena;
  uint64_t scratch_slot, scratch; /* scratch = 2 * scratch_slot */
  uint64_t workspace;
  uint64_t inputs;
  uint64_t total;                 /* the sum of the above but scratch_slot */
} qd_cuda_memory_needs_t;

/* Device bytes of graph input `index` in its storage type, rounded up to QD_CUDA_ALLOC_ALIGN (consecutive inputs
 * share one allocation at these offsets). */
uint64_t qd_cuda_input_bytes(const qd_graph_t* graph, const qd_cuda_lowering_t* lowering, int32_t index);

/* The needs of `component`'s program `graph` (instantiated from the plan, lowered with `lowering`) with an
 * activation arena of arena_bytes (the executor's memory plan; the plan's PROG records the default lowering's). */
void qd_cuda_memory_needs(const qd_plan_component_t* component, const qd_graph_t* graph,
                          const qd_cuda_lowering_t* lowering, uint64_t arena_bytes, qd_cuda_memory_needs_t* out);

#endif
