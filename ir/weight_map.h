/* Binding a graph's weights to a checkpoint's tensors through the description's weight layouts.
 *
 * A graph names weights canonically (diffusers' names for FLUX). A checkpoint in another layout (the single-file
 * BFL release, a ComfyUI all-in-one file) is mapped by rules of the form
 *   { "to": "transformer_blocks.{i}.attn.to_q.*", "from": "double_blocks.{i}.img_attn.qkv.*", "rows": [0, "dim"] }
 * where {name} captures digits, * captures the rest of the name, and rows (optional) take a range of the source's
 * first dimension. A rule may instead list "parts" ({from, rows} each) that are concatenated along rows. A layout
 * may "extend" another and add a "prefix" to every source name; "detect" names a tensor whose presence selects
 * the layout. Weights no rule matches are looked up by their own name.
 *
 * Ownership: a binding borrows the graph, the description and the checkpoint, which must outlive it.
 */
#ifndef QD_IR_WEIGHT_MAP_H
#define QD_IR_WEIGHT_MAP_H

#include "ir/graph.h"
#include "ir/bnb_nf4.h"
#include "ir/graph_desc.h"
#include "qd/checkpoint.h"

enum { QD_WEIGHT_MAX_PARTS = 4 };

typedef struct qd_weight_part {
  const qd_tensor_info_t* tensor;
  uint64_t row_begin, row_end; /* rows of the source's first dimension; the whole tensor when it is not sliced */
  bool bnb;                    /* a bitsandbytes NF4 weight (tensor is its packed codes; rows are of nf4.shape) */
  qd_bnb_nf4_t nf4;
} qd_weight_part_t;

typedef struct qd_weight_source {
  int32_t part_count;
  qd_weight_part_t parts[QD_WEIGHT_MAX_PARTS];
} qd_weight_source_t;

typedef struct qd_weight_binding {
  qd_allocator_t allocator;
  const qd_graph_t* graph;
  const char* layout;          /* the layout used (points into the description), or "identity" */
  qd_weight_source_t* sources; /* one per graph weight */
  uint64_t source_bytes;       /* bytes of checkpoint data the graph reads */
  size_t unused_tensors;       /* checkpoint tensors no weight reads (other components of an all-in-one file) */
} qd_weight_binding_t;

/* The layout whose "detect" tensor the checkpoint has (first in document order); NULL (and OK) when the
 * description defines no layouts. */
qd_status_t qd_weight_layout_detect(const qd_graph_desc_t* desc, const qd_checkpoint_t* ckpt,
                                    const char** out_layout);

/* Resolves and checks every graph weight: present (WEIGHT_MISSING), rows in range (WEIGHT_SLICE), the shape the
 * graph needs (WEIGHT_SHAPE), a floating-point dtype (WEIGHT_DTYPE). layout NULL = detect. */
qd_status_t qd_weight_binding_create(const qd_graph_desc_t* desc, const char* config, const qd_graph_t* graph,
                                     const qd_checkpoint_t* ckpt, const char* layout, qd_allocator_t allocator,
                                     qd_weight_binding_t** out_binding);
void qd_weight_binding_destroy(qd_weight_binding_t* binding);

/* Writes weight `index` widened to fp32 (numel of the graph's shape floats). */
qd_status_t qd_weight_binding_read_f32(const qd_weight_binding_t* binding, int32_t index, float* dst);

/* fp32 copies of every weight, for the CPU executor: out_weights[i] for graph weight i; free with
 * qd_weights_f32_free. Reports progress (label "weights"). */
qd_status_t qd_weights_f32_load(const qd_weight_binding_t* binding, float*** out_weights);
void qd_weights_f32_free(const qd_weight_binding_t* binding, float** weights);

#endif
