/* CUDA lowering: fusion groups, storage types, lifetimes; see lowering.h. */
#include "runtime/cuda/lowering.h"

#include <string.h>

/* How many nodes read a value (graph outputs count as a reader that is not a node). */
static int32_t qd_readers_(const qd_graph_t* g, int32_t v, int32_t* only_reader) {
  int32_t count = 0;
  *only_reader = -1;
  for (int32_t i = 0; i < g->node_count; i++)
    for (int32_t k = 0; k < g->nodes[i].input_count; k++)
      if (g->nodes[i].inputs[k] == v) {
        count++;
        *only_reader = i;
      }
  for (int32_t o = 0; o < g->output_count; o++)
    if (g->outputs[o].value == v) count += 2; /* never fuse away an output */
  return count;
}

/* The node that alone reads `v`, as its input `slot`; -1 otherwise. */
static int32_t qd_sole_reader_(const qd_graph_t* g, int32_t v, int32_t slot) {
  int32_t r;
  if (qd_readers_(g, v, &r) != 1) return -1;
  const qd_node_t* n = &g->nodes[r];
  if (slot >= 0 && (slot >= n->input_count || n->inputs[slot] != v)) return -1;
  return r;
}

void qd_cuda_lowering_destroy(qd_cuda_lowering_t* l) {
  if (!l) return;
  size_t nn = (size_t)(l->node_count ? l->node_count : 1), nv = (size_t)(l->value_count ? l->value_count : 1);
  qd_free(l->allocator, l->role, nn);
  qd_free(l->allocator, l->pattern, nn);
  qd_free(l->allocator, l->storage, nv * sizeof *l->storage);
  qd_free(l->allocator, l->virtual_value, nv * sizeof *l->virtual_value);
  qd_free(l->allocator, l->last_use, nv * sizeof *l->last_use);
  qd_free(l->allocator, l->view_of, nv * sizeof *l->view_of);
  qd_free(l->allocator, l->view_offset, nv * sizeof *l->view_offset);
  qd_free(l->allocator, l->batch_head, nn * sizeof *l->batch_head);
  qd_free(l->allocator, l->batch_size, nn);
  qd_free(l->allocator, l->in_place, nv * sizeof *l->in_place);
  qd_free(l->allocator, l->row_stride, nv * sizeof *l->row_stride);
  qd_free(l->allocator, l->first_def, nv * sizeof *l->first_def);
  qd_free(l->allocator, l, sizeof *l);
}

static void qd_group_(qd_cuda_lowering_t* l, const qd_graph_t* g, const int32_t* members, int32_t count,
                      int32_t end, qd_cuda_pattern_t pattern) {
  for (int32_t i = 0; i < count; i++) {
    l->role[members[i]] = QD_CUDA_MEMBER;
    l->virtual_value[g->nodes[members[i]].output] = true;
  }
  l->role[end] = QD_CUDA_GROUP_END;
  l->pattern[end] = (uint8_t)pattern;
  /* Inputs from outside the group are read when the group runs, at its end. */
  for (int32_t i = 0; i <= count; i++) {
    const qd_node_t* n = &g->nodes[i < count ? members[i] : end];
    for (int32_t k = 0; k < n->input_count; k++) {
      int32_t v = n->inputs[k];
      if (!l->virtual_value[v] && l->last_use[v] < end) l->last_use[v] = end;
    }
  }
}

/* Batched linears (see lowering.h): runs after the fusion groups (a linear fused with its GELU stays there) and
 * before the views, whose lifetime pass then keeps the head's output alive while any member's is read. */
static void qd_find_batches_(qd_cuda_lowering_t* l, const qd_graph_t* g) {
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* h = &g->nodes[i];
    if (h->op != QD_OP_LINEAR || l->role[i] != QD_CUDA_SINGLE || l->batch_head[i] >= 0 || l->in_place[h->output])
      continue;
    /* A graph output must stay where it is; outputs read several times are fine (they are stored). */
    bool is_output = false;
    for (int32_t o = 0; o < g->output_count; o++) is_output = is_output || g->outputs[o].value == h->output;
    if (is_output) continue;
    int32_t members[QD_CUDA_MAX_BATCH] = {i};
    int32_t count = 1;
    /* Consecutive nodes only: the projections of one attention, whose weights are stored together; linears of
     * one input further apart (every block's adaLN reads the same embedding) would make batches across blocks. */
    for (int32_t j = i + 1; j < g->node_count && count < QD_CUDA_MAX_BATCH; j++) {
      const qd_node_t* m = &g->nodes[j];
      bool out = false;
      for (int32_t o = 0; o < g->output_count; o++) out = out || g->outputs[o].value == m->output;
      if (m->op != QD_OP_LINEAR || l->role[j] != QD_CUDA_SINGLE || l->batch_head[j] >= 0 || out ||
          l->in_place[m->output] ||
          m->inputs[0] != h->inputs[0] || m->attrs[QD_LINEAR_FEATURES].i != h->attrs[QD_LINEAR_FEATURES].i ||
          (m->weights[QD_WEIGHT_SLOT_BIAS] >= 0) != (h->weights[QD_WEIGHT_SLOT_BIAS] >= 0) ||
          l->storage[m->output] != l->storage[h->output])
        break;
      members[count++] = j;
    }
    if (count < 2) continue;
    uint64_t bytes = (uint64_t)qd_shape_numel(&g->values[h->output].shape) * qd_dtype_size(l->storage[h->output]);
    l->batch_size[i] = (uint8_t)count;
    for (int32_t k = 0; k < count; k++) {
      l->batch_head[members[k]] = i;
      if (k == 0) continue;
      l->role[members[k]] = QD_CUDA_MEMBER;
      l->view_of[g->nodes[members[k]].output] = h->output;
      l->view_offset[g->nodes[members[k]].output] = (uint64_t)k * bytes;
    }
  }
}

int32_t qd_cuda_batch_members(const qd_cuda_lowering_t* l, int32_t head, int32_t out[QD_CUDA_MAX_BATCH]) {
  if (head < 0 || head >= l->node_count || l->batch_size[head] < 2) return 0;
  int32_t count = 0;
  for (int32_t j = head; j < l->node_count && count < l->batch_size[head]; j++)
    if (l->batch_head[j] == head) out[count++] = j;
  return count;
}

/* Slices with contiguous bytes and aliases become views (see lowering.h). Runs after the fusion groups, whose
 * inner values are never viewed (they have one reader, the group's next node). Nodes come in topological order,
 * so a view's input is decided before the view; the roots' lifetimes are extended last. */
static void qd_find_views_(qd_cuda_lowering_t* l, const qd_graph_t* g) {
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* n = &g->nodes[i];
    if (l->role[i] != QD_CUDA_SINGLE || (n->op != QD_OP_SLICE && n->op != QD_OP_ALIAS && n->op != QD_OP_RESHAPE))
      continue;
    int32_t x = n->inputs[0], y = n->output;
    if (l->virtual_value[x] || l->virtual_value[y] || l->storage[x] != l->storage[y]) continue;
    uint64_t offset = 0;
    if (n->op == QD_OP_SLICE) {
      const qd_shape_t* xs = &g->values[x].shape;
      int32_t axis = (int32_t)n->attrs[QD_SLICE_AXIS].i;
      if (qd_shape_prod(xs, 0, axis) != 1) continue;
      offset = (uint64_t)(n->attrs[QD_SLICE_START].i * qd_shape_prod(xs, axis + 1, xs->rank)) *
               qd_dtype_size(l->storage[x]);
    }
    l->view_of[y] = x;
    l->view_offset[y] = offset;
  }
  /* Backwards in node order: a view's own lifetime is final before it extends its input's (views of views pass
   * their reads down the chain). */
  for (int32_t i = g->node_count - 1; i >= 0; i--) {
    int32_t y = g->nodes[i].output, x = l->view_of[y];
    if (x >= 0 && l->last_use[x] < l->last_use[y]) l->last_use[x] = l->last_use[y];
  }
}

/* Whether node p can write its output's rows into a concatenation: a linear (alone, or with its GELU fused), an
 * attention; for a part that is one contiguous run (strided false) also a gated residual. */
static bool qd_writes_in_place_(const qd_cuda_lowering_t* l, const qd_graph_t* g, int32_t p, bool strided) {
  const qd_node_t* n = &g->nodes[p];
  if (l->role[p] == QD_CUDA_GROUP_END) return l->pattern[p] == QD_CUDA_PATTERN_LINEAR_GELU;
  if (l->role[p] != QD_CUDA_SINGLE) return false;
  return n->op == QD_OP_LINEAR || n->op == QD_OP_ATTENTION || (!strided && n->op == QD_OP_GATED_ADD);
}

/* Concatenation node c made in place by its parts' producers when they all can (lowering.h). */
static void qd_concat_in_place_(qd_cuda_lowering_t* l, const qd_graph_t* g, int32_t c) {
  const qd_node_t* n = &g->nodes[c];
  const qd_shape_t* os = &g->values[n->output].shape;
  int32_t axis = (int32_t)n->attrs[QD_CONCAT_AXIS].i;
  bool last = axis == os->rank - 1, contiguous = qd_shape_prod(os, 0, axis) == 1;
  if (l->role[c] != QD_CUDA_SINGLE || (!last && !contiguous) || n->input_count < 2 ||
      l->storage[n->output] != QD_DTYPE_BF16 || l->virtual_value[n->output])
    return;
  bool strided = !contiguous;
  for (int32_t k = 0; k < n->input_count; k++) {
    int32_t v = n->inputs[k], p = g->values[v].producer;
    if (p < 0 || l->storage[v] != QD_DTYPE_BF16 || l->virtual_value[v] || l->view_of[v] >= 0 ||
        qd_sole_reader_(g, v, k) != c || !qd_writes_in_place_(l, g, p, strided))
      return;
    for (int32_t j = 0; j < k; j++)
      if (n->inputs[j] == v) return; /* one value twice cannot be in two places */
  }
  /* Parts' offsets: columns of each row (last axis), or consecutive runs (contiguous). */
  uint64_t offset = 0;
  for (int32_t k = 0; k < n->input_count; k++) {
    int32_t v = n->inputs[k];
    const qd_shape_t* vs = &g->values[v].shape;
    l->in_place[v] = true;
    l->view_of[v] = n->output;
    l->view_offset[v] = offset;
    l->row_stride[v] = strided ? os->dims[os->rank - 1] : 0;
    offset += (uint64_t)(strided ? vs->dims[vs->rank - 1] : qd_shape_numel(vs)) * 2;
    if (g->values[v].producer < l->first_def[n->output]) l->first_def[n->output] = g->values[v].producer;
  }
  l->role[c] = QD_CUDA_ELIDED;
}

/* Whether linear node i reads a concatenation on the last axis that it alone reads, of 2 to
 * QD_CUDA_MAX_CONCAT_PARTS bf16 parts not in another group: then its GEMM runs over the parts (lowering.h). */
static bool qd_concat_linear_(const qd_cuda_lowering_t* l, const qd_graph_t* g, int32_t i, int32_t* out_concat) {
  int32_t p = g->values[g->nodes[i].inputs[0]].producer;
  if (p < 0 || l->role[i] != QD_CUDA_SINGLE || l->role[p] != QD_CUDA_SINGLE) return false;
  const qd_node_t* c = &g->nodes[p];
  const qd_shape_t* cs = &g->values[c->output].shape;
  int64_t axis = c->attrs[QD_CONCAT_AXIS].i;
  if (c->op != QD_OP_CONCAT || axis != cs->rank - 1 || c->input_count < 2 ||
      c->input_count > QD_CUDA_MAX_CONCAT_PARTS || qd_sole_reader_(g, c->output, 0) != i ||
      l->storage[c->output] != QD_DTYPE_BF16)
    return false;
  for (int32_t k = 0; k < c->input_count; k++)
    if (l->storage[c->inputs[k]] != QD_DTYPE_BF16 || l->virtual_value[c->inputs[k]]) return false;
  *out_concat = p;
  return true;
}

qd_status_t qd_cuda_lowering_create(const qd_graph_t* g, unsigned flags, qd_allocator_t a, qd_cuda_lowering_t** out) {
  bool gelu_epilogue = flags & QD_LOWER_GELU_EPILOGUE, concat_parts = flags & QD_LOWER_CONCAT_PARTS;
  *out = NULL;
  qd_cuda_lowering_t* l;
  QD_TRY(qd_calloc(a, 1, sizeof *l, (void**)&l));
  l->allocator = a;
  l->node_count = g->node_count;
  l->value_count = g->value_count;
  size_t nn = (size_t)(g->node_count ? g->node_count : 1), nv = (size_t)(g->value_count ? g->value_count : 1);
  qd_status_t s = qd_calloc(a, nn, 1, (void**)&l->role);
  if (!s) s = qd_calloc(a, nn, 1, (void**)&l->pattern);
  if (!s) s = qd_calloc(a, nv, sizeof *l->storage, (void**)&l->storage);
  if (!s) s = qd_calloc(a, nv, sizeof *l->virtual_value, (void**)&l->virtual_value);
  if (!s) s = qd_calloc(a, nv, sizeof *l->last_use, (void**)&l->last_use);
  if (!s) s = qd_calloc(a, nv, sizeof *l->view_of, (void**)&l->view_of);
  if (!s) s = qd_calloc(a, nv, sizeof *l->view_offset, (void**)&l->view_offset);
  if (!s) s = qd_calloc(a, nn, sizeof *l->batch_head, (void**)&l->batch_head);
  if (!s) s = qd_calloc(a, nn, 1, (void**)&l->batch_size);
  if (!s) s = qd_calloc(a, nv, sizeof *l->in_place, (void**)&l->in_place);
  if (!s) s = qd_calloc(a, nv, sizeof *l->row_stride, (void**)&l->row_stride);
  if (!s) s = qd_calloc(a, nv, sizeof *l->first_def, (void**)&l->first_def);
  if (s) {
    qd_cuda_lowering_destroy(l);
    return s;
  }
  /* Storage: walk backwards so that what feeds rope_freqs / timestep_embedding stays fp32 through data moves. */
  for (int32_t i = 0; i < g->node_count; i++) l->batch_head[i] = -1;
  for (int32_t v = 0; v < g->value_count; v++) {
    l->view_of[v] = -1;
    l->storage[v] = g->values[v].dtype == QD_DTYPE_F32 ? QD_DTYPE_BF16 : g->values[v].dtype;
    l->last_use[v] = g->values[v].last_use;
    l->first_def[v] = g->values[v].producer;
  }
  for (int32_t i = g->node_count - 1; i >= 0; i--) {
    const qd_node_t* n = &g->nodes[i];
    if (n->op == QD_OP_ROPE_FREQS) l->storage[n->output] = QD_DTYPE_F32;
    bool keep = n->op == QD_OP_ROPE_FREQS || n->op == QD_OP_TIMESTEP_EMBEDDING ||
                ((n->op == QD_OP_CONCAT || n->op == QD_OP_SLICE || n->op == QD_OP_ALIAS) &&
                 l->storage[n->output] == QD_DTYPE_F32);
    for (int32_t k = 0; keep && k < n->input_count; k++)
      if (g->values[n->inputs[k]].dtype == QD_DTYPE_F32) l->storage[n->inputs[k]] = QD_DTYPE_F32;
  }
  /* Fusion groups, found from their last node. */
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* n = &g->nodes[i];
    if (n->op == QD_OP_MODULATE) {
      int32_t p = g->values[n->inputs[0]].producer;
      if (p >= 0 && g->nodes[p].op == QD_OP_LAYER_NORM && !g->nodes[p].attrs[QD_NORM_AFFINE].i &&
          qd_sole_reader_(g, n->inputs[0], 0) == i)
        qd_group_(l, g, &p, 1, i, QD_CUDA_PATTERN_LN_MODULATE);
    } else if (n->op == QD_OP_SILU) {
      int32_t p = g->values[n->inputs[0]].producer;
      if (p >= 0 && g->nodes[p].op == QD_OP_GROUP_NORM && qd_sole_reader_(g, n->inputs[0], 0) == i)
        qd_group_(l, g, &p, 1, i, QD_CUDA_PATTERN_GROUP_NORM_SILU);
    } else if (n->op == QD_OP_GELU_TANH && gelu_epilogue) {
      int32_t p = g->values[n->inputs[0]].producer;
      if (p >= 0 && g->nodes[p].op == QD_OP_LINEAR && g->nodes[p].weights[QD_WEIGHT_SLOT_BIAS] >= 0 &&
          qd_sole_reader_(g, n->inputs[0], 0) == i)
        qd_group_(l, g, &p, 1, i, QD_CUDA_PATTERN_LINEAR_GELU);
    } else if (n->op == QD_OP_ROPE) {
      int64_t head_dim = n->attrs[QD_ROPE_HEAD_DIM].i;
      int32_t p = g->values[n->inputs[0]].producer;
      if (p < 0 || qd_sole_reader_(g, n->inputs[0], 0) != i) continue;
      const qd_node_t* pn = &g->nodes[p];
      if (pn->op == QD_OP_RMS_NORM && pn->attrs[QD_NORM_DIM].i == head_dim) {
        qd_group_(l, g, &p, 1, i, QD_CUDA_PATTERN_NORM_ROPE);
      } else if (pn->op == QD_OP_CONCAT && pn->attrs[QD_CONCAT_AXIS].i == 1 && pn->input_count <= 7) {
        int32_t members[8];
        int32_t count = 0;
        bool ok = true;
        for (int32_t k = 0; k < pn->input_count && ok; k++) {
          int32_t r = g->values[pn->inputs[k]].producer;
          ok = r >= 0 && g->nodes[r].op == QD_OP_RMS_NORM && g->nodes[r].attrs[QD_NORM_DIM].i == head_dim &&
               qd_sole_reader_(g, pn->inputs[k], -1) == p;
          if (ok) members[count++] = r;
        }
        if (ok) {
          members[count++] = p;
          qd_group_(l, g, members, count, i, QD_CUDA_PATTERN_NORM_CONCAT_ROPE);
        }
      }
    }
  }
  /* After the other groups (a concatenation that feeds a fused kernel stays with it): concatenations made in place,
   * then linears over the others' parts. */
  for (int32_t i = 0; i < g->node_count && (flags & QD_LOWER_CONCAT_IN_PLACE); i++)
    if (g->nodes[i].op == QD_OP_CONCAT) qd_concat_in_place_(l, g, i);
  for (int32_t i = 0; i < g->node_count && concat_parts; i++) {
    int32_t p;
    if (g->nodes[i].op == QD_OP_LINEAR && qd_concat_linear_(l, g, i, &p))
      qd_group_(l, g, &p, 1, i, QD_CUDA_PATTERN_CONCAT_LINEAR);
  }
  if (flags & QD_LOWER_BATCH_LINEARS) qd_find_batches_(l, g);
  qd_find_views_(l, g);
  *out = l;
  return QD_OK;
}

uint64_t qd_cuda_value_bytes(const qd_cuda_lowering_t* l, const qd_graph_t* g, int32_t v) {
  const qd_value_t* val = &g->values[v];
  if (val->producer < 0 || l->virtual_value[v] || l->view_of[v] >= 0) return 0;
  uint64_t copies = l->batch_size[val->producer] > 1 ? l->batch_size[val->producer] : 1;
  return copies * (uint64_t)qd_shape_numel(&val->shape) * qd_dtype_size(l->storage[v]);
}

int32_t qd_cuda_view_root(const qd_cuda_lowering_t* l, int32_t v, uint64_t* offset) {
  uint64_t off = 0;
  while (l->view_of[v] >= 0) {
    off += l->view_offset[v];
    v = l->view_of[v];
  }
  if (offset) *offset = off;
  return v;
}
