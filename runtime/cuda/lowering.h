/* Lowering a graph for the CUDA executor: which nodes run as one fused kernel, how each value is stored, and
 * how long each value must live. Shared by the memory planner (compiler/memory_plan.c) and the executor, so the
 * arena layout always fits what the kernels read and write.
 *
 * Fusion groups (each emitted as one kernel at the group's last node):
 *   layer_norm (no affine) -> modulate                       layernorm_modulate kernel
 *   linear (with bias) -> gelu_tanh                         cuBLASLt GELU_BIAS epilogue
 *   rms_norm -> rope                                        qk_norm_rope kernel
 *   group_norm -> silu                                      group norm kernel with GN_SILU (the VAE's resnets)
 *   rms_norm, rms_norm, ... -> concat (axis 1) -> rope       one qk_norm_rope per part, writing its rows of the
 *                                                           rope's output (FLUX's joint attention: no concat copy)
 *   concat (last axis, 2 to 4 parts) -> linear              one GEMM per part over its columns of the weight, the
 *                                                           later ones adding into the output (gemm.h's parts),
 *                                                           for a concatenation not made in place (below)
 * A group applies only when every intermediate value is read by the next node of the group alone and is not a
 * graph output. Values inside a group are never materialized (no arena bytes); the group's inputs must stay alive
 * until the group's last node, where the fused kernel reads them.
 *
 * Batched linears: consecutive linears that read the same input with the same output width and bias presence
 * (attention's q, k and v projections: FLUX's image, text and single-block ones, T5's, CLIP's) run as one
 * strided-batched GEMM at the first of them, the batch's head; the others become members (emitted by the head).
 * Their outputs lie one after another in the head's output allocation (the members' outputs are views of it), so
 * the batch writes them all: one GEMM of 3x the tiles, to fill the GPU's last wave where three do not. Up to
 * QD_CUDA_MAX_BATCH. Measured on the H200 for FLUX.1-dev it is no faster (cuBLASLt's batched kernels ran the image
 * q/k/v at the same rate, the text and single-block ones faster, the step within noise), so the executor leaves
 * it off unless asked (qd_cuda_executor_options_t.batch_linears).
 *
 * Concatenations in place: when every part of a concatenation is made by a kernel that can write into it (a linear
 * or linear + GELU outside a batch, an attention; for a concatenation whose parts are contiguous runs of its bytes,
 * also a gated residual) and read by the concatenation alone, the parts' producers write their rows straight into
 * the concatenation's bytes and the concatenation launches nothing (role ELIDED). Each part is then an in_place view
 * of the concatenation: at view_offset, rows row_stride elements apart when the concatenation is on the last axis
 * (0 when the part is one contiguous run: a middle axis with extent 1 before it). The concatenation's bytes are
 * written from its first part's producer on (first_def). FLUX: the single blocks' [attention | MLP] (15360 features,
 * 283 MB to copy at 1024x1024), the joint attention's values [text; image] and the single blocks' input.
 *
 * Views: a slice whose bytes are contiguous in its input (every axis before the sliced one has extent 1, as the
 * adaLN chunks and the text/image halves of a batch-1 step), an alias and a reshape are views: they name bytes of their input
 * at an offset, take no arena bytes and launch nothing, and their input lives as long as the view is read. A view
 * has its input's storage type; a slice that would change it (fp32 position ids read as bf16) stays a copy.
 *
 * Storage: activations are bf16; position ids, timesteps and rope tables fp32 (what feeds rope_freqs and
 * timestep_embedding, through concatenations and slices, and rope_freqs' output); integer values keep their type. */
#ifndef QD_RUNTIME_CUDA_LOWERING_H
#define QD_RUNTIME_CUDA_LOWERING_H

#include <stdbool.h>

#include "ir/graph.h"

typedef enum qd_cuda_role {
  QD_CUDA_SINGLE = 0,   /* its own kernel */
  QD_CUDA_MEMBER,       /* part of a group emitted later */
  QD_CUDA_GROUP_END,    /* emits its group */
  QD_CUDA_ELIDED,       /* a concatenation its parts' producers wrote in place: nothing to launch */
} qd_cuda_role_t;

typedef enum qd_cuda_pattern {
  QD_CUDA_PATTERN_NONE = 0,
  QD_CUDA_PATTERN_LN_MODULATE,
  QD_CUDA_PATTERN_LINEAR_GELU,
  QD_CUDA_PATTERN_NORM_ROPE,
  QD_CUDA_PATTERN_NORM_CONCAT_ROPE,
  QD_CUDA_PATTERN_GROUP_NORM_SILU,
  QD_CUDA_PATTERN_CONCAT_LINEAR,
} qd_cuda_pattern_t;

typedef struct qd_cuda_lowering {
  qd_allocator_t allocator;
  int32_t node_count, value_count;
  uint8_t* role;       /* per node: qd_cuda_role_t */
  uint8_t* pattern;    /* per node: for group ends, the pattern */
  qd_dtype_t* storage; /* per value: BF16, F32 or an integer type */
  bool* virtual_value; /* per value: inside a group, never stored */
  int32_t* last_use;   /* per value: the graph's, extended to the end of groups that read it and to the last
                        * read of every view of it */
  int32_t* view_of;    /* per value: the value a view reads (its node's input), or -1 */
  uint64_t* view_offset; /* per value: a view's first byte in view_of's bytes */
  int32_t* batch_head;   /* per node: for a batched linear, its batch's head node (the head's is itself); else -1 */
  uint8_t* batch_size;   /* per node: for a batch's head, how many linears the batch has; else 0 */
  bool* in_place;        /* per value: a part its producer writes into a concatenation (view_of) in place */
  int64_t* row_stride;   /* per value: for an in_place part, elements from one row to the next there (0: dense) */
  int32_t* first_def;    /* per value: the first node that writes its bytes (its producer, or an in-place part's) */
} qd_cuda_lowering_t;

enum { QD_CUDA_MAX_BATCH = 4, QD_CUDA_MAX_CONCAT_PARTS = 4 };

/* What a lowering may do, or'ed together. */
enum {
  QD_LOWER_GELU_EPILOGUE = 1 << 0,   /* linear -> gelu_tanh fuses (cuBLASLt's GELU epilogue is the tanh form) */
  QD_LOWER_BATCH_LINEARS = 1 << 1,   /* consecutive linears of one input become batches */
  QD_LOWER_CONCAT_PARTS = 1 << 2,    /* concat -> linear runs as GEMMs over the parts */
  QD_LOWER_CONCAT_IN_PLACE = 1 << 3, /* concatenations made in place by their parts' producers */
  QD_LOWER_DEFAULT = QD_LOWER_GELU_EPILOGUE | QD_LOWER_CONCAT_PARTS | QD_LOWER_CONCAT_IN_PLACE,
};

qd_status_t qd_cuda_lowering_create(const qd_graph_t* graph, unsigned flags, qd_allocator_t allocator,
                                    qd_cuda_lowering_t** out_lowering);
void qd_cuda_lowering_destroy(qd_cuda_lowering_t* lowering);

/* Bytes a value takes in the arena (0 for graph inputs, which live outside it, virtual values and views; a batch
 * head's output holds the whole batch's outputs). */
uint64_t qd_cuda_value_bytes(const qd_cuda_lowering_t* lowering, const qd_graph_t* graph, int32_t value);

/* The value whose storage a value's bytes are in (itself unless it is a view), and the byte offset there. */
int32_t qd_cuda_view_root(const qd_cuda_lowering_t* lowering, int32_t value, uint64_t* out_offset);

/* The linear nodes of the batch headed by node `head`, in node order (the head first); returns how many (0 when
 * `head` heads no batch). */
int32_t qd_cuda_batch_members(const qd_cuda_lowering_t* lowering, int32_t head, int32_t out_nodes[QD_CUDA_MAX_BATCH]);

#endif
