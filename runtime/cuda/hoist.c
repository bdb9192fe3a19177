/* Hoisting the conditioning out of the step; see hoist.h. */
#include "runtime/cuda/hoist.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void qd_cuda_hoist_destroy(qd_cuda_hoist_t* h) {
  if (!h) return;
  qd_free(h->allocator, h->hoisted, (size_t)(h->node_count ? h->node_count : 1));
  qd_free(h->allocator, h->block_offset, (size_t)(h->value_count ? h->value_count : 1) * sizeof *h->block_offset);
  qd_free(h->allocator, h->input_read, (size_t)(h->input_count ? h->input_count : 1));
  qd_free(h->allocator, h, sizeof *h);
}

/* Leaves the plan with nothing hoisted, saying why. */
static void qd_hoist_refuse_(qd_cuda_hoist_t* h, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->why_not, sizeof h->why_not, fmt, ap);
  va_end(ap);
  memset(h->hoisted, 0, (size_t)h->node_count);
  memset(h->input_read, 0, (size_t)h->input_count);
  for (int32_t v = 0; v < h->value_count; v++) h->block_offset[v] = -1;
  h->hoisted_count = h->boundary_count = 0;
  h->block_bytes = 0;
}

/* Ops whose output row b (of the leading batch axis) depends only on row b of their batched inputs: running them
 * once at batch steps * batch computes every step's rows. */
static bool qd_hoist_row_wise_(const qd_node_t* n) {
  switch (n->op) {
    case QD_OP_ALIAS: case QD_OP_LINEAR: case QD_OP_LAYER_NORM: case QD_OP_RMS_NORM: case QD_OP_MODULATE:
    case QD_OP_GATED_ADD: case QD_OP_ADD: case QD_OP_MUL: case QD_OP_SCALE: case QD_OP_SILU: case QD_OP_GELU:
    case QD_OP_GELU_TANH: case QD_OP_QUICK_GELU: case QD_OP_TIMESTEP_EMBEDDING: case QD_OP_AFFINE: return true;
    case QD_OP_SLICE: return n->attrs[QD_SLICE_AXIS].i >= 1;
    case QD_OP_CONCAT: return n->attrs[QD_CONCAT_AXIS].i >= 1;
    default: return false;
  }
}

/* [batch] or [batch, features]: one vector per sample, the kind of value worth computing for all steps at once
 * (per-token tensors would multiply their memory by the step count). */
static bool qd_hoist_vector_(const qd_shape_t* s, int64_t batch) {
  return (s->rank == 1 || s->rank == 2) && s->dims[0] == batch;
}

/* dep: per value, scratch of value_count bytes, zeroed. */
static void qd_hoist_classify_(qd_cuda_hoist_t* h, const qd_graph_t* g, const qd_cuda_lowering_t* l, uint8_t* dep) {
  enum { STATE = 1, STEP = 2, READ_HOISTED = 4, READ_STEP = 8, VECTOR = 16 };
  const int32_t state_v = g->inputs[h->state_input], step_v = g->inputs[h->step_input];
  const qd_shape_t* ts = &g->values[step_v].shape;
  if (ts->rank < 1) {
    qd_hoist_refuse_(h, "the step input '%s' has no batch axis", g->values[step_v].name);
    return;
  }
  h->batch = ts->dims[0];
  int64_t batch;
  if (qd_graph_find_size(g, "batch", &batch) && batch != h->batch) {
    qd_hoist_refuse_(h, "the step input '%s' has no leading batch axis", g->values[step_v].name);
    return;
  }
  /* Forward: what each value depends on, and whether it is a vector per sample computed from such vectors only. */
  dep[state_v] |= STATE;
  dep[step_v] |= STEP;
  for (int32_t i = 0; i < g->input_count; i++)
    if (qd_hoist_vector_(&g->values[g->inputs[i]].shape, h->batch)) dep[g->inputs[i]] |= VECTOR;
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* n = &g->nodes[i];
    uint8_t vector = qd_hoist_vector_(&g->values[n->output].shape, h->batch) ? VECTOR : 0;
    for (int32_t k = 0; k < n->input_count; k++) {
      dep[n->output] |= dep[n->inputs[k]] & (STATE | STEP);
      if (!(dep[n->inputs[k]] & VECTOR)) vector = 0;
    }
    dep[n->output] |= vector;
  }
  /* Backward (readers come after their producers): per-step vectors, and what hoisted nodes read outside the state. */
  for (int32_t i = g->node_count - 1; i >= 0; i--) {
    const qd_node_t* n = &g->nodes[i];
    uint8_t d = dep[n->output];
    bool wanted = (d & VECTOR) && !(d & STATE) && (d & (STEP | READ_HOISTED));
    h->hoisted[i] = wanted;
    h->hoisted_count += wanted;
    for (int32_t k = 0; k < n->input_count; k++) dep[n->inputs[k]] |= wanted ? READ_HOISTED : READ_STEP;
  }
  if (!h->hoisted_count) {
    qd_hoist_refuse_(h, "no node depends on '%s' without depending on '%s'", g->values[step_v].name,
                     g->values[state_v].name);
    return;
  }
  for (int32_t i = 0; i < g->node_count; i++)
    if (h->hoisted[i] && !qd_hoist_row_wise_(&g->nodes[i])) {
      qd_hoist_refuse_(h, "%s: op '%s' may mix batch rows", g->nodes[i].origin, qd_op_name(g->nodes[i].op));
      return;
    }
  for (int32_t o = 0; o < g->output_count; o++)
    if (qd_cuda_hoist_made(h, g, g->outputs[o].value)) {
      qd_hoist_refuse_(h, "graph output '%s' would be computed once per image", g->values[g->outputs[o].value].name);
      return;
    }
  /* A fusion group runs as one kernel: a member's output (read by the group's next node alone) must stay on its
   * member's side. */
  for (int32_t i = 0; i < g->node_count; i++) {
    if (l->batch_head[i] >= 0 && h->hoisted[i] != h->hoisted[l->batch_head[i]]) {
      qd_hoist_refuse_(h, "%s: a batch of linears would be split", g->nodes[i].origin);
      return;
    }
    int32_t out = g->nodes[i].output;
    if (l->in_place[out] && h->hoisted[i] != h->hoisted[g->values[l->view_of[out]].producer]) {
      qd_hoist_refuse_(h, "%s: a concatenation made in place would be split", g->nodes[i].origin);
      return;
    }
    if (l->role[i] != QD_CUDA_MEMBER || l->batch_head[i] >= 0) continue; /* a batch's outputs are stored */
    if (dep[g->nodes[i].output] & (h->hoisted[i] ? READ_STEP : READ_HOISTED)) {
      qd_hoist_refuse_(h, "%s: a fused group would be split", g->nodes[i].origin);
      return;
    }
  }
  /* The boundary, laid out in production order. */
  uint64_t offset = 0;
  for (int32_t i = 0; i < g->node_count; i++) {
    int32_t v = g->nodes[i].output;
    if (!h->hoisted[i] || !(dep[v] & READ_STEP)) continue;
    const qd_shape_t* s = &g->values[v].shape;
    if (s->rank < 1 || s->dims[0] != h->batch) {
      qd_hoist_refuse_(h, "%s: '%s' has no leading batch axis of %lld", g->nodes[i].origin, g->values[v].name,
                       (long long)h->batch);
      return;
    }
    h->block_offset[v] = (int64_t)offset;
    offset += ((uint64_t)qd_shape_numel(s) * qd_dtype_size(l->storage[v]) + 255) & ~(uint64_t)255;
    h->boundary_count++;
  }
  h->block_bytes = offset;
  for (int32_t i = 0; i < g->input_count; i++) h->input_read[i] = (dep[g->inputs[i]] & READ_HOISTED) != 0;
}

qd_status_t qd_cuda_hoist_plan(const qd_graph_t* g, const qd_cuda_lowering_t* l, const char* state_input,
                               const char* step_input, qd_allocator_t a, qd_cuda_hoist_t** out) {
  *out = NULL;
  qd_cuda_hoist_t* h;
  QD_TRY(qd_calloc(a, 1, sizeof *h, (void**)&h));
  h->allocator = a;
  h->node_count = g->node_count;
  h->value_count = g->value_count;
  h->input_count = g->input_count;
  uint8_t* dep = NULL;
  size_t nn = (size_t)(g->node_count ? g->node_count : 1), nv = (size_t)(g->value_count ? g->value_count : 1);
  qd_status_t s = qd_calloc(a, nn, 1, (void**)&h->hoisted);
  if (!s) s = qd_calloc(a, nv, sizeof *h->block_offset, (void**)&h->block_offset);
  if (!s) s = qd_calloc(a, (size_t)(g->input_count ? g->input_count : 1), 1, (void**)&h->input_read);
  if (!s) s = qd_calloc(a, nv, 1, (void**)&dep);
  if (s) {
    qd_cuda_hoist_destroy(h);
    return s;
  }
  for (int32_t v = 0; v < g->value_count; v++) h->block_offset[v] = -1;
  h->state_input = state_input ? qd_graph_find_input(g, state_input) : -1;
  h->step_input = step_input ? qd_graph_find_input(g, step_input) : -1;
  if (h->state_input < 0 || h->step_input < 0)
    qd_hoist_refuse_(h, "graph '%s' has no input '%s'", g->name,
                     h->state_input < 0 ? (state_input ? state_input : "(none)") : step_input ? step_input : "(none)");
  else
    qd_hoist_classify_(h, g, l, dep);
  qd_free(a, dep, nv);
  *out = h;
  return QD_OK;
}
