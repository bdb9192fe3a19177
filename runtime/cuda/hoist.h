/* Conditioning hoisted out of the denoising loop (design brief 3.6).
 *
 * A transformer step reads two kinds of input that change from step to step: the state (FLUX's latents), which
 * only the previous step can produce, and the step input (the timestep), whose values for every step are known
 * before the loop starts. Nodes that do not depend on the state can therefore run once per image for all steps
 * together: in FLUX the timestep, guidance and pooled-text embedders and every adaLN modulation linear, 27.6% of
 * the transformer's weights. Batched over the steps, those weights are read (and, for NF4, dequantized) once per
 * image instead of once per step, and their GEMMs have M = steps * batch instead of M = batch.
 *
 * Classification, on the step's own program:
 *   state     the node depends on the state input
 *   per-step  it does not, but depends on the step input
 *   hoisted   not state, a vector per sample ([batch] or [batch, features]) computed from such vectors only, and
 *             per-step or read by a hoisted node (what a per-step node needs: pooled text and guidance embeddings
 *             feed the timestep's); everything else stays in the step: per-token tensors (the text states, even
 *             where they do not depend on the state: batched over steps they would take steps times the memory)
 *             and position tables (per image, cheap)
 * The hoisted nodes run in a second instance of the program whose batch is steps * batch (the conditioning
 * program; every hoisted op works row by row on the batch axis, which the executor checks against that instance's
 * shapes). The boundary values (made by hoisted nodes, read by the step) are packed per step into one block of
 * block_bytes, each value at its own 256-byte-aligned offset as a contiguous [batch, ...] tensor; before each
 * step the executor copies that step's block into place, so the step itself reads them like any other value.
 *
 * A program is not hoisted (hoisted_count 0 and a reason) when either input is missing, when the step input has no
 * leading batch axis, when a graph output or a fusion group would be split between the two programs, or when a
 * boundary value has no leading batch axis.
 *
 * Ownership: the plan is the caller's; destroy frees it. */
#ifndef QD_RUNTIME_CUDA_HOIST_H
#define QD_RUNTIME_CUDA_HOIST_H

#include <stddef.h>
#include <stdint.h>

#include "ir/graph.h"
#include "runtime/cuda/lowering.h"

typedef struct qd_cuda_hoist {
  qd_allocator_t allocator;
  int32_t node_count, value_count;
  uint8_t* hoisted;       /* per node: 1 when it runs in the conditioning program */
  int64_t* block_offset;  /* per value: byte offset in a step's block for boundary values, else -1 */
  uint8_t* input_read;    /* per graph input: 1 when a hoisted node reads it (the conditioning program's inputs) */
  int32_t input_count;
  int32_t hoisted_count;  /* 0: nothing is hoisted (why_not says why) */
  int32_t boundary_count;
  int64_t batch;          /* the step program's batch: the step input's leading extent */
  uint64_t block_bytes;   /* per step, a multiple of 256 */
  int32_t state_input, step_input; /* graph input indices */
  char why_not[192];
} qd_cuda_hoist_t;

/* Classifies `graph` (lowered with `lowering`) for the inputs named state_input and step_input. Never fails for a
 * program that cannot be hoisted: *out_hoist then has hoisted_count 0 and why_not set. Errors: OUT_OF_MEMORY. */
qd_status_t qd_cuda_hoist_plan(const qd_graph_t* graph, const qd_cuda_lowering_t* lowering, const char* state_input,
                               const char* step_input, qd_allocator_t allocator, qd_cuda_hoist_t** out_hoist);
void qd_cuda_hoist_destroy(qd_cuda_hoist_t* hoist);

/* Whether value `v` is made by a hoisted node. */
static inline int qd_cuda_hoist_made(const qd_cuda_hoist_t* h, const qd_graph_t* g, int32_t v) {
  return h && h->hoisted_count && g->values[v].producer >= 0 && h->hoisted[g->values[v].producer];
}

#endif
