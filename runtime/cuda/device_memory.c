/* Device memory an executor needs; see device_memory.h. */
#include "runtime/cuda/device_memory.h"

#include <string.h>

#include "runtime/cuda/kernels_image.h"

static uint64_t qd_dm_align_(uint64_t v) { return (v + QD_CUDA_ALLOC_ALIGN - 1) & ~(uint64_t)(QD_CUDA_ALLOC_ALIGN - 1); }

uint64_t qd_cuda_input_bytes(const qd_graph_t* g, const qd_cuda_lowering_t* l, int32_t index) {
  int32_t v = g->inputs[index];
  return qd_dm_align_((uint64_t)qd_shape_numel(&g->values[v].shape) * qd_dtype_size(l->storage[v]));
}

void qd_cuda_memory_needs(const qd_plan_component_t* c, const qd_graph_t* g, const qd_cuda_lowering_t* l,
                          uint64_t arena_bytes, qd_cuda_memory_needs_t* out) {
  memset(out, 0, sizeof *out);
  out->weights = c->weight_bytes;
  out->nested_map = 256 * sizeof(float);
  uint64_t slot = 0;
  for (int32_t w = 0; w < g->weight_count && w < c->weight_count; w++) {
    uint64_t n = (uint64_t)qd_shape_numel(&c->weights[w].shape);
    if (c->weights[w].format == QD_WEIGHT_FORMAT_F32) out->weight_copies += n * 2;
    if (c->weights[w].format == QD_WEIGHT_FORMAT_NF4 && n * 2 > slot) slot = n * 2;
  }
  /* A batch of NF4 linears dequantizes all its weights into one slot, one after another (lowering.h). */
  for (int32_t i = 0; i < g->node_count; i++) {
    int32_t members[QD_CUDA_MAX_BATCH];
    int32_t count = qd_cuda_batch_members(l, i, members);
    uint64_t batch = 0;
    for (int32_t k = 0; k < count; k++) {
      int32_t w = g->nodes[members[k]].weights[QD_WEIGHT_SLOT_MAIN];
      if (w < 0 || w >= c->weight_count || c->weights[w].format != QD_WEIGHT_FORMAT_NF4) {
        batch = 0;
        break;
      }
      batch += qd_dm_align_((uint64_t)qd_shape_numel(&c->weights[w].shape) * 2);
    }
    if (batch > slot) slot = batch;
  }
  /* Convolutions read their weight repacked (kernels_image.h), one copy per weight however often it is read. */
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* n = &g->nodes[i];
    int32_t w = n->weights[QD_WEIGHT_SLOT_MAIN];
    if (n->op != QD_OP_CONV2D || w < 0) continue;
    bool first = true;
    for (int32_t j = 0; j < i && first; j++)
      first = !(g->nodes[j].op == QD_OP_CONV2D && g->nodes[j].weights[QD_WEIGHT_SLOT_MAIN] == w);
    if (first)
      out->weight_copies += qd_dm_align_((uint64_t)qd_conv2d_packed_weight_elems(
                                             n->attrs[QD_CONV_FEATURES].i, g->values[n->inputs[0]].shape.dims[1],
                                             n->attrs[QD_CONV_KERNEL].i) * 2);
  }
  out->scratch_slot = qd_dm_align_(slot);
  out->scratch = 2 * out->scratch_slot;
  out->arena = arena_bytes;
  out->workspace = QD_CUDA_WORKSPACE_BYTES;
  for (int32_t i = 0; i < g->input_count; i++) out->inputs += qd_cuda_input_bytes(g, l, i);
  out->total = out->weights + out->weight_copies + out->nested_map + out->arena + out->scratch + out->workspace +
               out->inputs;
}
