/* The CPU executor; see executor.h. One switch over the op table maps each node to its reference. */
#include "runtime/cpu/executor.h"

#include <math.h>
#include <string.h>

#include "runtime/cpu/ref.h"

void qd_tensor_free(qd_allocator_t allocator, qd_tensor_t* t) {
  if (!t) return;
  qd_free(allocator, t->data, t->bytes);
  t->data = NULL;
  t->bytes = 0;
}

typedef struct qd_cpu_state {
  const qd_graph_t* g;
  const float* const* weights;
  qd_threadpool_t* pool;
  qd_allocator_t allocator;
  void** buffers;   /* per value */
  size_t* sizes;    /* bytes allocated per value; 0 for caller-owned inputs */
} qd_cpu_state_t;

static qd_status_t qd_cpu_run_node_(qd_cpu_state_t* st, const qd_node_t* node) {
  const qd_graph_t* g = st->g;
  const qd_value_t* out = &g->values[node->output];
  const qd_shape_t* xs = &g->values[node->inputs[0]].shape;
  const qd_attr_value_t* a = node->attrs;
  uint64_t bytes;
  if (!qd_dtype_bytes_for(out->dtype, (uint64_t)qd_shape_numel(&out->shape), &bytes))
    return QD_ERR(INTERNAL, INTERNAL, "%s: output size overflows", node->origin);
  void* ybuf;
  QD_TRY_CTX(qd_malloc(st->allocator, (size_t)bytes, &ybuf), "%s: output '%s'", node->origin, out->name);
  st->buffers[node->output] = ybuf;
  st->sizes[node->output] = (size_t)bytes;
  float* y = ybuf;
  const float* x = st->buffers[node->inputs[0]];
  const float* in1 = node->input_count > 1 ? st->buffers[node->inputs[1]] : NULL;
  const float* in2 = node->input_count > 2 ? st->buffers[node->inputs[2]] : NULL;
  const float* w0 = node->weights[0] >= 0 ? st->weights[node->weights[0]] : NULL;
  const float* w1 = node->weights[1] >= 0 ? st->weights[node->weights[1]] : NULL;
  int64_t last = xs->rank ? xs->dims[xs->rank - 1] : 1;
  int64_t rows = qd_shape_numel(xs) / (last ? last : 1);

  switch (node->op) {
    case QD_OP_ALIAS: memcpy(y, x, (size_t)bytes); break;
    case QD_OP_LINEAR: qd_ref_linear(st->pool, x, w0, w1, y, rows, a[QD_LINEAR_FEATURES].i, last); break;
    case QD_OP_LAYER_NORM: qd_ref_layer_norm(st->pool, x, w0, w1, y, rows, last, (float)a[QD_NORM_EPS].f); break;
    case QD_OP_RMS_NORM: {
      int64_t d = a[QD_NORM_DIM].i;
      qd_ref_rms_norm(st->pool, x, w0, y, qd_shape_numel(xs) / d, d, (float)a[QD_NORM_EPS].f);
      break;
    }
    case QD_OP_MODULATE: qd_ref_modulate(st->pool, x, in1, in2, y, xs->dims[0], xs->dims[1], xs->dims[2]); break;
    case QD_OP_GATED_ADD: qd_ref_gated_add(st->pool, x, in1, in2, y, xs->dims[0], xs->dims[1], xs->dims[2]); break;
    case QD_OP_ADD:
    case QD_OP_MUL: {
      const qd_shape_t* bs = &g->values[node->inputs[1]].shape;
      qd_ref_binary(st->pool, node->op == QD_OP_ADD ? QD_REF_ADD : QD_REF_MUL, x, xs->dims, xs->rank, in1, bs->dims,
                    bs->rank, y);
      break;
    }
    case QD_OP_SCALE:
      qd_ref_unary(st->pool, QD_REF_SCALE, x, y, qd_shape_numel(xs), (float)a[QD_SCALE_FACTOR].f);
      break;
    case QD_OP_SILU: qd_ref_unary(st->pool, QD_REF_SILU, x, y, qd_shape_numel(xs), 0); break;
    case QD_OP_GELU: qd_ref_unary(st->pool, QD_REF_GELU, x, y, qd_shape_numel(xs), 0); break;
    case QD_OP_GELU_TANH: qd_ref_unary(st->pool, QD_REF_GELU_TANH, x, y, qd_shape_numel(xs), 0); break;
    case QD_OP_QUICK_GELU: qd_ref_unary(st->pool, QD_REF_QUICK_GELU, x, y, qd_shape_numel(xs), 0); break;
    case QD_OP_SLICE: {
      int32_t axis = (int32_t)a[QD_SLICE_AXIS].i;
      int64_t esz = (int64_t)qd_dtype_size(out->dtype);
      /* Slicing is a byte copy: scale the inner extent so ids of any width move too. */
      int64_t inner = qd_shape_prod(xs, axis + 1, xs->rank) * esz / (int64_t)sizeof(float);
      if (esz % (int64_t)sizeof(float) == 0) {
        qd_ref_slice(x, y, qd_shape_prod(xs, 0, axis), xs->dims[axis], inner, a[QD_SLICE_START].i, a[QD_SLICE_SIZE].i);
      } else {
        return QD_ERR(UNSUPPORTED, INTERNAL, "%s: slicing %s values is not supported", node->origin,
                      qd_dtype_name(out->dtype));
      }
      break;
    }
    case QD_OP_CONCAT: {
      int32_t axis = (int32_t)a[QD_CONCAT_AXIS].i;
      const void* ins[QD_NODE_MAX_INPUTS];
      int64_t sizes[QD_NODE_MAX_INPUTS];
      for (int32_t i = 0; i < node->input_count; i++) {
        ins[i] = st->buffers[node->inputs[i]];
        sizes[i] = g->values[node->inputs[i]].shape.dims[axis];
      }
      qd_ref_concat(ins, sizes, node->input_count, y, qd_shape_prod(xs, 0, axis), qd_shape_prod(xs, axis + 1, xs->rank),
                    (int64_t)qd_dtype_size(out->dtype));
      break;
    }
    case QD_OP_TIMESTEP_EMBEDDING:
      qd_ref_timestep_embedding(x, y, xs->dims[0], a[QD_TEMB_DIM].i, a[QD_TEMB_FLIP].i != 0,
                                (float)a[QD_TEMB_SHIFT].f, (float)a[QD_TEMB_INPUT_SCALE].f,
                                (float)a[QD_TEMB_MAX_PERIOD].f);
      break;
    case QD_OP_ROPE_FREQS:
      qd_ref_rope_freqs(x, y, xs->dims[0], a[QD_ROPE_FREQS_AXES].list, a[QD_ROPE_FREQS_AXES].count,
                        a[QD_ROPE_FREQS_THETA].f);
      break;
    case QD_OP_ROPE: {
      int64_t d = a[QD_ROPE_HEAD_DIM].i;
      qd_ref_rope(st->pool, x, in1, y, xs->dims[0], xs->dims[1], xs->dims[2] / d, d);
      break;
    }
    case QD_OP_ATTENTION: {
      const qd_shape_t* ks = &g->values[node->inputs[1]].shape;
      const qd_shape_t* vs = &g->values[node->inputs[2]].shape;
      int64_t h = a[QD_ATTN_HEADS].i, d = xs->dims[2] / h, dv = vs->dims[2] / h;
      float scale = a[QD_ATTN_SCALE].f > 0 ? (float)a[QD_ATTN_SCALE].f : 1.0f / sqrtf((float)d);
      const float* bias = node->input_count > 3 ? st->buffers[node->inputs[3]] : NULL;
      const qd_shape_t* bsh = node->input_count > 3 ? &g->values[node->inputs[3]].shape : NULL;
      qd_ref_attention(st->pool, x, in1, in2, bias, bsh ? bsh->dims[0] : 1, bsh ? bsh->dims[1] : 1, y, xs->dims[0],
                       xs->dims[1], ks->dims[1], h, d, dv, scale, a[QD_ATTN_CAUSAL].i != 0);
      break;
    }
    case QD_OP_AFFINE:
      qd_ref_affine(st->pool, x, y, qd_shape_numel(xs), (float)a[QD_AFFINE_SCALE].f, (float)a[QD_AFFINE_DIVISOR].f,
                    (float)a[QD_AFFINE_SHIFT].f);
      break;
    case QD_OP_EMBEDDING: {
      const qd_value_t* ids = &g->values[node->inputs[0]];
      int64_t n = qd_shape_numel(xs), idb = (int64_t)qd_dtype_size(ids->dtype), vocab = a[QD_EMBED_VOCAB].i;
      /* Ids come from the caller (a tokenizer): a bad one must be an error, not a read past the table. */
      for (int64_t i = 0; i < n; i++) {
        int64_t id = qd_ref_id(x, idb, i);
        if (id < 0 || id >= vocab)
          return QD_ERR(INVALID_ARGUMENT, INPUT_VALUE,
                        "%s: '%s' holds id %lld at element %lld; weight '%s' has rows 0 to %lld", node->origin,
                        ids->name, (long long)id, (long long)i, g->weights[node->weights[0]].name,
                        (long long)(vocab - 1));
      }
      qd_ref_embedding(st->pool, x, idb, w0, y, n, a[QD_EMBED_FEATURES].i);
      break;
    }
    case QD_OP_ARANGE: qd_ref_arange(ybuf, qd_shape_numel(&out->shape)); break;
    case QD_OP_EOS_POOL:
      qd_ref_eos_pool(x, in1, (int64_t)qd_dtype_size(g->values[node->inputs[1]].dtype), y, xs->dims[0], xs->dims[1],
                      xs->dims[2], a[QD_EOS_TOKEN].i);
      break;
    case QD_OP_CONV2D: {
      qd_ref_conv2d_shape_t cs = {xs->dims[0], xs->dims[1], xs->dims[2], xs->dims[3], a[QD_CONV_FEATURES].i,
                                  a[QD_CONV_KERNEL].i, a[QD_CONV_STRIDE].i, a[QD_CONV_PADDING].i,
                                  out->shape.dims[2], out->shape.dims[3]};
      size_t ws_bytes = (size_t)qd_ref_conv2d_workspace(&cs) * sizeof(float);
      void* ws;
      QD_TRY_CTX(qd_malloc(st->allocator, ws_bytes, &ws), "%s: convolution scratch", node->origin);
      qd_ref_conv2d(st->pool, x, w0, w1, y, &cs, ws);
      qd_free(st->allocator, ws, ws_bytes);
      break;
    }
    case QD_OP_GROUP_NORM: {
      int64_t b = xs->dims[0], c = xs->dims[1];
      qd_ref_group_norm(st->pool, x, w0, w1, y, b, c, qd_shape_numel(xs) / (b * c), a[QD_GROUP_NORM_GROUPS].i,
                        (float)a[QD_GROUP_NORM_EPS].f);
      break;
    }
    case QD_OP_UPSAMPLE_NEAREST:
      qd_ref_upsample_nearest(st->pool, x, y, xs->dims[0] * xs->dims[1], xs->dims[2], xs->dims[3],
                              a[QD_UPSAMPLE_FACTOR].i);
      break;
    case QD_OP_RESHAPE: memcpy(y, x, (size_t)bytes); break;
    case QD_OP_PERMUTE: {
      int64_t esz = (int64_t)qd_dtype_size(out->dtype);
      if (esz != 4 && esz != 8)
        return QD_ERR(UNSUPPORTED, INTERNAL, "%s: permuting %s values is not supported", node->origin,
                      qd_dtype_name(out->dtype));
      qd_ref_permute(st->pool, x, y, xs->dims, a[QD_PERMUTE_PERM].list, xs->rank, esz);
      break;
    }
    case QD_OP_T5_RELATIVE_BIAS:
      qd_ref_t5_relative_bias(st->pool, w0, y, xs->dims[1], a[QD_T5_BIAS_HEADS].i, a[QD_T5_BIAS_BUCKETS].i,
                              a[QD_T5_BIAS_MAX_DISTANCE].i, a[QD_T5_BIAS_BIDIRECTIONAL].i != 0);
      break;
    case QD_OP_INVALID:
    case QD_OP_COUNT_: return QD_ERR(INTERNAL, INTERNAL, "%s: invalid op", node->origin);
  }
  return QD_OK;
}

static qd_status_t qd_cpu_check_input_(const qd_graph_t* g, int32_t i, const qd_tensor_t* t) {
  const qd_value_t* v = &g->values[g->inputs[i]];
  if (!t->data) return QD_ERR(INVALID_ARGUMENT, INPUT_MISSING, "graph input '%s' was not supplied", v->name);
  if (t->dtype != v->dtype)
    return QD_ERR(INVALID_ARGUMENT, INPUT_DTYPE, "graph input '%s' is %s; the graph needs %s", v->name,
                  qd_dtype_name(t->dtype), qd_dtype_name(v->dtype));
  if (!qd_shape_equal(&t->shape, &v->shape)) {
    char a[128], b[128];
    return QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE, "graph input '%s' has shape %s; the graph needs %s", v->name,
                  qd_shape_format(&t->shape, a, sizeof a), qd_shape_format(&v->shape, b, sizeof b));
  }
  return QD_OK;
}

qd_status_t qd_cpu_execute(const qd_graph_t* g, const float* const* weights, const qd_tensor_t* inputs,
                           qd_tensor_t* outputs, const qd_cpu_run_options_t* options, qd_allocator_t allocator) {
  if (!g->finalized) return QD_ERR(INTERNAL, INTERNAL, "graph '%s' is not finalized", g->name);
  for (int32_t i = 0; i < g->input_count; i++) QD_TRY(qd_cpu_check_input_(g, i, &inputs[i]));
  for (int32_t w = 0; w < g->weight_count; w++)
    if (!weights[w]) return QD_ERR(INVALID_ARGUMENT, WEIGHT_MISSING, "weight '%s' was not supplied", g->weights[w].name);
  for (int32_t o = 0; o < g->output_count; o++) memset(&outputs[o], 0, sizeof outputs[o]);

  qd_cpu_state_t st = {g, weights, options ? options->pool : NULL, allocator, NULL, NULL};
  qd_status_t s = qd_calloc(allocator, (size_t)g->value_count, sizeof(void*), (void**)&st.buffers);
  if (!s) s = qd_calloc(allocator, (size_t)g->value_count, sizeof(size_t), (void**)&st.sizes);
  for (int32_t i = 0; i < g->input_count && !s; i++) st.buffers[g->inputs[i]] = inputs[i].data;

  for (int32_t n = 0; n < g->node_count && !s; n++) {
    const qd_node_t* node = &g->nodes[n];
    s = qd_cpu_run_node_(&st, node);
    if (!s && options && options->hook) s = options->hook(options->hook_user, g, n, st.buffers[node->output]);
    /* Free what no later node reads. */
    for (int32_t k = 0; k < node->input_count && !s; k++) {
      int32_t v = node->inputs[k];
      if (g->values[v].last_use == n && st.sizes[v]) {
        qd_free(allocator, st.buffers[v], st.sizes[v]);
        st.buffers[v] = NULL;
        st.sizes[v] = 0;
      }
    }
    if (!s && g->values[node->output].last_use < 0 && st.sizes[node->output]) {
      /* Nobody reads it (a dead branch): drop it at once. */
      qd_free(allocator, st.buffers[node->output], st.sizes[node->output]);
      st.buffers[node->output] = NULL;
      st.sizes[node->output] = 0;
    }
  }
  /* Outputs are copied out: simpler than tracking which buffers were handed over, and outputs are small. */
  for (int32_t o = 0; o < g->output_count && !s; o++) {
    int32_t v = g->outputs[o].value;
    const qd_value_t* val = &g->values[v];
    uint64_t bytes = 0;
    qd_dtype_bytes_for(val->dtype, (uint64_t)qd_shape_numel(&val->shape), &bytes);
    s = qd_malloc(allocator, (size_t)bytes, &outputs[o].data);
    if (s) break;
    memcpy(outputs[o].data, st.buffers[v], (size_t)bytes);
    outputs[o].dtype = val->dtype;
    outputs[o].shape = val->shape;
    outputs[o].bytes = (size_t)bytes;
  }
  for (int32_t v = 0; st.sizes && v < g->value_count; v++)
    if (st.sizes[v]) qd_free(allocator, st.buffers[v], st.sizes[v]);
  qd_free(allocator, st.buffers, (size_t)g->value_count * sizeof(void*));
  qd_free(allocator, st.sizes, (size_t)g->value_count * sizeof(size_t));
  if (s)
    for (int32_t o = 0; o < g->output_count; o++) qd_tensor_free(allocator, &outputs[o]);
  return s;
}
