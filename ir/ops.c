/* The op table: attribute schemas, shape inference, weight declarations and FLOP counts for ir/ops.def. */
#include "ir/ops.h"

#include <string.h>

#include "ir/graph.h"

#define A_INT(n, d) {n, QD_ATTR_INT, d}
#define A_FLOAT(n, d) {n, QD_ATTR_FLOAT, d}
#define A_INTS(n, d) {n, QD_ATTR_INTS, d}

/* Name, arity and doc come from ops.def; attributes and weights are filled in per op below by overriding those
 * members of the same elements (designated initializers may override subobjects; GCC warns, on purpose here). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const qd_op_info_t qd_op_infos_[QD_OP_COUNT_] = {
#define QD_OP(name, json, min_in, max_in, doc) [QD_OP_##name] = {json, min_in, max_in, doc, {{0}}, false},
#include "ir/ops.def"
#undef QD_OP
    [QD_OP_LINEAR].has_weights = true,
    [QD_OP_LINEAR].attrs = {[QD_LINEAR_FEATURES] = A_INT("features", NULL), [QD_LINEAR_BIAS] = A_INT("bias", "1")},
    [QD_OP_LAYER_NORM].has_weights = true,
    [QD_OP_LAYER_NORM].attrs = {[QD_NORM_EPS] = A_FLOAT("eps", "1e-5"), [QD_NORM_AFFINE] = A_INT("affine", "1")},
    [QD_OP_RMS_NORM].has_weights = true,
    [QD_OP_RMS_NORM].attrs = {[QD_NORM_EPS] = A_FLOAT("eps", "1e-6"), [QD_NORM_AFFINE] = A_INT("affine", "1"),
                              [QD_NORM_DIM] = A_INT("dim", "0")},
    [QD_OP_SCALE].attrs = {[QD_SCALE_FACTOR] = A_FLOAT("factor", NULL)},
    [QD_OP_SLICE].attrs = {[QD_SLICE_AXIS] = A_INT("axis", NULL), [QD_SLICE_START] = A_INT("start", NULL),
                           [QD_SLICE_SIZE] = A_INT("size", NULL)},
    [QD_OP_CONCAT].attrs = {[QD_CONCAT_AXIS] = A_INT("axis", NULL)},
    [QD_OP_TIMESTEP_EMBEDDING].attrs = {[QD_TEMB_DIM] = A_INT("dim", NULL),
                                        [QD_TEMB_FLIP] = A_INT("flip_sin_to_cos", "1"),
                                        [QD_TEMB_SHIFT] = A_FLOAT("downscale_freq_shift", "0"),
                                        [QD_TEMB_INPUT_SCALE] = A_FLOAT("input_scale", "1"),
                                        [QD_TEMB_MAX_PERIOD] = A_FLOAT("max_period", "10000")},
    [QD_OP_ROPE_FREQS].attrs = {[QD_ROPE_FREQS_AXES] = A_INTS("axes", NULL),
                                [QD_ROPE_FREQS_THETA] = A_FLOAT("theta", "10000")},
    [QD_OP_ROPE].attrs = {[QD_ROPE_HEAD_DIM] = A_INT("head_dim", NULL)},
    [QD_OP_ATTENTION].attrs = {[QD_ATTN_HEADS] = A_INT("heads", NULL), [QD_ATTN_CAUSAL] = A_INT("causal", "0"),
                               [QD_ATTN_SCALE] = A_FLOAT("scale", "0")},
    [QD_OP_AFFINE].attrs = {[QD_AFFINE_SCALE] = A_FLOAT("scale", "1"), [QD_AFFINE_DIVISOR] = A_FLOAT("divisor", "1"),
                            [QD_AFFINE_SHIFT] = A_FLOAT("shift", "0")},
    [QD_OP_EMBEDDING].has_weights = true,
    [QD_OP_EMBEDDING].attrs = {[QD_EMBED_VOCAB] = A_INT("vocab", NULL), [QD_EMBED_FEATURES] = A_INT("features", NULL)},
    [QD_OP_ARANGE].attrs = {[QD_ARANGE_AXIS] = A_INT("axis", NULL)},
    [QD_OP_EOS_POOL].attrs = {[QD_EOS_TOKEN] = A_INT("token", NULL)},
    [QD_OP_CONV2D].has_weights = true,
    [QD_OP_CONV2D].attrs = {[QD_CONV_FEATURES] = A_INT("features", NULL), [QD_CONV_KERNEL] = A_INT("kernel", NULL),
                            [QD_CONV_STRIDE] = A_INT("stride", "1"), [QD_CONV_PADDING] = A_INT("padding", "0"),
                            [QD_CONV_BIAS] = A_INT("bias", "1")},
    [QD_OP_GROUP_NORM].has_weights = true,
    [QD_OP_GROUP_NORM].attrs = {[QD_GROUP_NORM_GROUPS] = A_INT("groups", NULL),
                                [QD_GROUP_NORM_EPS] = A_FLOAT("eps", "1e-5"),
                                [QD_GROUP_NORM_AFFINE] = A_INT("affine", "1")},
    [QD_OP_UPSAMPLE_NEAREST].attrs = {[QD_UPSAMPLE_FACTOR] = A_INT("factor", "2")},
    [QD_OP_RESHAPE].attrs = {[QD_RESHAPE_SHAPE] = A_INTS("shape", NULL)},
    [QD_OP_PERMUTE].attrs = {[QD_PERMUTE_PERM] = A_INTS("perm", NULL)},
    [QD_OP_T5_RELATIVE_BIAS].has_weights = true,
    [QD_OP_T5_RELATIVE_BIAS].attrs = {[QD_T5_BIAS_BUCKETS] = A_INT("buckets", NULL),
                                      [QD_T5_BIAS_MAX_DISTANCE] = A_INT("max_distance", NULL),
                                      [QD_T5_BIAS_HEADS] = A_INT("heads", NULL),
                                      [QD_T5_BIAS_BIDIRECTIONAL] = A_INT("bidirectional", "1")},
};
#pragma GCC diagnostic pop

const qd_op_info_t* qd_op_info(qd_op_t op) {
  if (op <= QD_OP_INVALID || op >= QD_OP_COUNT_) return NULL;
  return &qd_op_infos_[op];
}

qd_op_t qd_op_from_name(const char* name) {
  for (int op = 1; op < QD_OP_COUNT_; op++)
    if (strcmp(qd_op_infos_[op].name, name) == 0) return (qd_op_t)op;
  return QD_OP_INVALID;
}

const char* qd_op_name(qd_op_t op) {
  if (op <= QD_OP_INVALID || op >= QD_OP_COUNT_) return "invalid";
  return qd_op_infos_[op].name;
}

/* --- shape inference --------------------------------------------------------------------------------- */

typedef struct qd_infer_ctx {
  qd_graph_t* g;
  qd_node_t* node;
  int32_t node_index;
  const qd_shape_t* in[QD_NODE_MAX_INPUTS];
  qd_value_t* out;
} qd_infer_ctx_t;

static qd_status_t qd_infer_fail_(qd_infer_ctx_t* c, const char* what) {
  char shapes[512];
  size_t used = 0;
  for (int32_t i = 0; i < c->node->input_count && used < sizeof shapes; i++) {
    char b[128];
    int n = snprintf(shapes + used, sizeof shapes - used, "%s'%s' %s", i ? ", " : "",
                     c->g->values[c->node->inputs[i]].name, qd_shape_format(c->in[i], b, sizeof b));
    if (n > 0) used += (size_t)n;
  }
  return QD_ERR(BAD_INPUT, GRAPH_SHAPE_MISMATCH, "%s: op '%s' producing '%s': %s (inputs: %s)", c->node->origin,
                qd_op_name(c->node->op), c->out->name, what, shapes);
}

static qd_status_t qd_infer_bad_attr_(qd_infer_ctx_t* c, const char* attr, long long value, const char* why) {
  return QD_ERR(BAD_INPUT, GRAPH_BAD_ATTR, "%s: op '%s': attribute '%s' is %lld; %s", c->node->origin,
                qd_op_name(c->node->op), attr, value, why);
}

static qd_status_t qd_infer_require_rank_(qd_infer_ctx_t* c, int input, int rank) {
  if (c->in[input]->rank == rank) return QD_OK;
  char what[128];
  snprintf(what, sizeof what, "input %d must have rank %d", input, rank);
  return qd_infer_fail_(c, what);
}

static qd_status_t qd_infer_weight_(qd_infer_ctx_t* c, int slot, const char* suffix, int32_t rank,
                                    const int64_t* dims, uint32_t flags) {
  if (!c->node->weight_base)
    return QD_ERR(BAD_INPUT, GRAPH_BAD_ATTR, "%s: op '%s' needs a \"weight\" name", c->node->origin,
                  qd_op_name(c->node->op));
  char name[1024];
  int n = snprintf(name, sizeof name, "%s.%s", c->node->weight_base, suffix);
  if (n < 0 || (size_t)n >= sizeof name)
    return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "%s: weight name '%s.%s' is too long", c->node->origin,
                  c->node->weight_base, suffix);
  qd_shape_t shape = qd_shape_make(rank, dims);
  return qd_graph_declare_weight(c->g, name, &shape, flags, c->node_index, &c->node->weights[slot]);
}

static void qd_infer_set_out_(qd_infer_ctx_t* c, const qd_shape_t* shape) {
  c->out->shape = *shape;
  c->out->dtype = QD_DTYPE_F32;
}

static qd_status_t qd_infer_float_inputs_(qd_infer_ctx_t* c, int first, int last) {
  for (int i = first; i <= last && i < c->node->input_count; i++) {
    qd_value_t* v = &c->g->values[c->node->inputs[i]];
    if (v->dtype != QD_DTYPE_F32)
      return QD_ERR(BAD_INPUT, GRAPH_DTYPE_MISMATCH, "%s: op '%s': input '%s' is %s; it must be floating point",
                    c->node->origin, qd_op_name(c->node->op), v->name, qd_dtype_name(v->dtype));
  }
  return QD_OK;
}

/* Token ids: I32 or I64. */
static qd_status_t qd_infer_ids_input_(qd_infer_ctx_t* c, int i) {
  qd_value_t* v = &c->g->values[c->node->inputs[i]];
  if (v->dtype == QD_DTYPE_I32 || v->dtype == QD_DTYPE_I64) return QD_OK;
  return QD_ERR(BAD_INPUT, GRAPH_DTYPE_MISMATCH, "%s: op '%s': input '%s' is %s; it must be ids (I32 or I64)",
                c->node->origin, qd_op_name(c->node->op), v->name, qd_dtype_name(v->dtype));
}

/* Normalizes a possibly negative axis attribute in place. */
static qd_status_t qd_infer_axis_(qd_infer_ctx_t* c, int slot, const char* name, int32_t rank) {
  int64_t axis = c->node->attrs[slot].i;
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank)
    return qd_infer_bad_attr_(c, name, c->node->attrs[slot].i, "it is outside the input's dimensions");
  c->node->attrs[slot].i = axis;
  return QD_OK;
}

static int64_t qd_last_dim_(const qd_shape_t* s) { return s->rank > 0 ? s->dims[s->rank - 1] : 1; }

static qd_status_t qd_infer_broadcast_(qd_infer_ctx_t* c) {
  const qd_shape_t* a = c->in[0];
  const qd_shape_t* b = c->in[1];
  if (b->rank > a->rank) return qd_infer_fail_(c, "the second input has more dimensions than the first");
  for (int32_t i = 0; i < b->rank; i++) {
    int64_t bd = b->dims[b->rank - 1 - i], ad = a->dims[a->rank - 1 - i];
    if (bd != ad && bd != 1) return qd_infer_fail_(c, "the second input does not broadcast to the first");
  }
  qd_infer_set_out_(c, a);
  return QD_OK;
}

/* x [B, S, C] with per-sample vectors [B, C]. */
static qd_status_t qd_infer_per_sample_(qd_infer_ctx_t* c, int x, int vec) {
  QD_TRY(qd_infer_require_rank_(c, x, 3));
  QD_TRY(qd_infer_require_rank_(c, vec, 2));
  if (c->in[vec]->dims[0] != c->in[x]->dims[0] || c->in[vec]->dims[1] != c->in[x]->dims[2])
    return qd_infer_fail_(c, "per-sample vectors must be [batch, channels] of the activation");
  return QD_OK;
}

qd_status_t qd_op_infer(qd_graph_t* g, qd_node_t* node) {
  qd_infer_ctx_t c = {g, node, (int32_t)(node - g->nodes), {0}, &g->values[node->output]};
  for (int32_t i = 0; i < node->input_count; i++) c.in[i] = &g->values[node->inputs[i]].shape;
  const qd_attr_value_t* a = node->attrs;
  if (node->weight_base && !qd_op_info(node->op)->has_weights)
    return QD_ERR(BAD_INPUT, GRAPH_BAD_ATTR, "%s: op '%s' takes no weights, but names \"%s\"", node->origin,
                  qd_op_name(node->op), node->weight_base);
  /* Data movement keeps any element type; arithmetic needs floating point. */
  bool moves_data = node->op == QD_OP_ALIAS || node->op == QD_OP_SLICE || node->op == QD_OP_CONCAT ||
                    node->op == QD_OP_RESHAPE || node->op == QD_OP_PERMUTE;
  /* Ops that read ids check their input types in their own cases. */
  bool reads_ids = node->op == QD_OP_EMBEDDING || node->op == QD_OP_ARANGE || node->op == QD_OP_EOS_POOL;
  if (!moves_data && !reads_ids) QD_TRY(qd_infer_float_inputs_(&c, 0, node->input_count - 1));
  qd_dtype_t out_dtype = moves_data                  ? g->values[node->inputs[0]].dtype
                         : node->op == QD_OP_ARANGE ? QD_DTYPE_I32
                                                    : QD_DTYPE_F32;
  for (int32_t i = 1; i < node->input_count && moves_data; i++)
    if (g->values[node->inputs[i]].dtype != out_dtype)
      return QD_ERR(BAD_INPUT, GRAPH_DTYPE_MISMATCH, "%s: op '%s': inputs '%s' (%s) and '%s' (%s) differ in type",
                    node->origin, qd_op_name(node->op), g->values[node->inputs[0]].name, qd_dtype_name(out_dtype),
                    g->values[node->inputs[i]].name, qd_dtype_name(g->values[node->inputs[i]].dtype));
  qd_shape_t out = *c.in[0];

  switch (node->op) {
    case QD_OP_ALIAS: break;

    case QD_OP_LINEAR: {
      if (out.rank < 1) return qd_infer_fail_(&c, "the input must have at least one dimension");
      int64_t k = qd_last_dim_(&out), n = a[QD_LINEAR_FEATURES].i;
      if (n <= 0) return qd_infer_bad_attr_(&c, "features", n, "it must be positive");
      int64_t wd[2] = {n, k};
      QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 2, wd, QD_WEIGHT_LINEAR));
      if (a[QD_LINEAR_BIAS].i) QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_BIAS, "bias", 1, &n, QD_WEIGHT_BIAS));
      out.dims[out.rank - 1] = n;
      break;
    }

    case QD_OP_LAYER_NORM: {
      if (out.rank < 1) return qd_infer_fail_(&c, "the input must have at least one dimension");
      if (!(a[QD_NORM_EPS].f > 0)) return qd_infer_bad_attr_(&c, "eps", 0, "it must be positive");
      int64_t ch = qd_last_dim_(&out);
      if (a[QD_NORM_AFFINE].i) {
        QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 1, &ch, QD_WEIGHT_NORM));
        QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_BIAS, "bias", 1, &ch, QD_WEIGHT_NORM | QD_WEIGHT_BIAS));
      }
      break;
    }

    case QD_OP_RMS_NORM: {
      if (out.rank < 1) return qd_infer_fail_(&c, "the input must have at least one dimension");
      if (!(a[QD_NORM_EPS].f > 0)) return qd_infer_bad_attr_(&c, "eps", 0, "it must be positive");
      int64_t ch = qd_last_dim_(&out), d = a[QD_NORM_DIM].i ? a[QD_NORM_DIM].i : ch;
      if (d <= 0 || ch % d != 0)
        return qd_infer_bad_attr_(&c, "dim", d, "it must divide the last dimension of the input");
      node->attrs[QD_NORM_DIM].i = d;
      if (a[QD_NORM_AFFINE].i) QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 1, &d, QD_WEIGHT_NORM));
      break;
    }

    case QD_OP_MODULATE:
      QD_TRY(qd_infer_per_sample_(&c, 0, 1));
      QD_TRY(qd_infer_per_sample_(&c, 0, 2));
      break;

    case QD_OP_GATED_ADD:
      QD_TRY(qd_infer_per_sample_(&c, 0, 1));
      if (!qd_shape_equal(c.in[0], c.in[2])) return qd_infer_fail_(&c, "residual and update must have one shape");
      break;

    case QD_OP_ADD:
    case QD_OP_MUL: return qd_infer_broadcast_(&c);

    case QD_OP_SCALE:
    case QD_OP_SILU:
    case QD_OP_GELU:
    case QD_OP_GELU_TANH:
    case QD_OP_QUICK_GELU: break;

    case QD_OP_SLICE: {
      int64_t axis = a[QD_SLICE_AXIS].i;
      if (axis < 0) axis += out.rank;
      if (axis < 0 || axis >= out.rank)
        return qd_infer_bad_attr_(&c, "axis", a[QD_SLICE_AXIS].i, "it is outside the input's dimensions");
      node->attrs[QD_SLICE_AXIS].i = axis;
      int64_t start = a[QD_SLICE_START].i, size = a[QD_SLICE_SIZE].i;
      if (start < 0) return qd_infer_bad_attr_(&c, "start", start, "it must not be negative");
      if (size <= 0) return qd_infer_bad_attr_(&c, "size", size, "it must be positive");
      if (start > out.dims[axis] - size) return qd_infer_fail_(&c, "the slice ends past the end of the axis");
      out.dims[axis] = size;
      break;
    }

    case QD_OP_CONCAT: {
      int64_t axis = a[QD_CONCAT_AXIS].i;
      if (axis < 0) axis += out.rank;
      if (axis < 0 || axis >= out.rank)
        return qd_infer_bad_attr_(&c, "axis", a[QD_CONCAT_AXIS].i, "it is outside the input's dimensions");
      node->attrs[QD_CONCAT_AXIS].i = axis;
      for (int32_t i = 1; i < node->input_count; i++) {
        if (c.in[i]->rank != out.rank) return qd_infer_fail_(&c, "all inputs must have the same rank");
        for (int32_t d = 0; d < out.rank; d++)
          if (d != axis && c.in[i]->dims[d] != out.dims[d])
            return qd_infer_fail_(&c, "inputs differ outside the concatenation axis");
        out.dims[axis] += c.in[i]->dims[axis];
      }
      break;
    }

    case QD_OP_TIMESTEP_EMBEDDING: {
      QD_TRY(qd_infer_require_rank_(&c, 0, 1));
      int64_t d = a[QD_TEMB_DIM].i;
      if (d <= 0 || d % 2) return qd_infer_bad_attr_(&c, "dim", d, "it must be a positive even number");
      out.rank = 2;
      out.dims[1] = d;
      break;
    }

    case QD_OP_ROPE_FREQS: {
      QD_TRY(qd_infer_require_rank_(&c, 0, 2));
      const qd_attr_value_t* axes = &a[QD_ROPE_FREQS_AXES];
      if (axes->count < 1 || axes->count != out.dims[1])
        return qd_infer_fail_(&c, "the ids need one column per entry of 'axes'");
      int64_t total = 0;
      for (int32_t i = 0; i < axes->count; i++) {
        if (axes->list[i] <= 0 || axes->list[i] % 2)
          return qd_infer_bad_attr_(&c, "axes", axes->list[i], "each axis size must be a positive even number");
        total += axes->list[i];
      }
      out.rank = 3;
      out.dims[0] = 2;
      out.dims[1] = c.in[0]->dims[0];
      out.dims[2] = total;
      break;
    }

    case QD_OP_ROPE: {
      QD_TRY(qd_infer_require_rank_(&c, 0, 3));
      QD_TRY(qd_infer_require_rank_(&c, 1, 3));
      int64_t d = a[QD_ROPE_HEAD_DIM].i;
      if (d <= 0 || d % 2) return qd_infer_bad_attr_(&c, "head_dim", d, "it must be a positive even number");
      if (out.dims[2] % d) return qd_infer_fail_(&c, "the channels are not a whole number of heads");
      if (c.in[1]->dims[0] != 2 || c.in[1]->dims[1] != out.dims[1] || c.in[1]->dims[2] != d)
        return qd_infer_fail_(&c, "freqs must be [2, tokens, head_dim]");
      break;
    }

    case QD_OP_ATTENTION: {
      for (int i = 0; i < 3; i++) QD_TRY(qd_infer_require_rank_(&c, i, 3));
      int64_t h = a[QD_ATTN_HEADS].i;
      if (h <= 0) return qd_infer_bad_attr_(&c, "heads", h, "it must be positive");
      const qd_shape_t *q = c.in[0], *k = c.in[1], *v = c.in[2];
      if (q->dims[2] % h || v->dims[2] % h) return qd_infer_fail_(&c, "channels are not a whole number of heads");
      if (k->dims[2] != q->dims[2]) return qd_infer_fail_(&c, "q and k must have the same channels");
      if (k->dims[0] != q->dims[0] || v->dims[0] != q->dims[0] || v->dims[1] != k->dims[1])
        return qd_infer_fail_(&c, "batch or key length differ between q, k and v");
      if (a[QD_ATTN_CAUSAL].i && q->dims[1] != k->dims[1])
        return qd_infer_fail_(&c, "causal attention needs as many queries as keys");
      if (node->input_count == 4) {
        const qd_shape_t* b = c.in[3];
        if (b->rank != 4 || (b->dims[0] != 1 && b->dims[0] != q->dims[0]) || (b->dims[1] != 1 && b->dims[1] != h) ||
            b->dims[2] != q->dims[1] || b->dims[3] != k->dims[1])
          return qd_infer_fail_(&c, "the bias must be [batch or 1, heads or 1, queries, keys]");
      }
      if (a[QD_ATTN_SCALE].f < 0) return qd_infer_bad_attr_(&c, "scale", -1, "it must not be negative");
      if (v->dims[2] / h > 1024 || q->dims[2] / h > 1024)
        return qd_infer_bad_attr_(&c, "heads", h, "heads of more than 1024 channels are not supported");
      out.dims[2] = v->dims[2];
      break;
    }

    case QD_OP_AFFINE:
      if (a[QD_AFFINE_DIVISOR].f == 0) return qd_infer_bad_attr_(&c, "divisor", 0, "it must not be zero");
      break;

    case QD_OP_EMBEDDING: {
      QD_TRY(qd_infer_ids_input_(&c, 0));
      int64_t vocab = a[QD_EMBED_VOCAB].i, f = a[QD_EMBED_FEATURES].i;
      if (vocab <= 0) return qd_infer_bad_attr_(&c, "vocab", vocab, "it must be positive");
      if (f <= 0) return qd_infer_bad_attr_(&c, "features", f, "it must be positive");
      if (out.rank >= QD_GRAPH_MAX_RANK) return qd_infer_fail_(&c, "the ids have too many dimensions");
      /* A table of rows, not a matrix product: NF4 quantization does not apply (no QD_WEIGHT_LINEAR). */
      int64_t wd[2] = {vocab, f};
      QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 2, wd, 0));
      out.dims[out.rank++] = f;
      break;
    }

    case QD_OP_ARANGE:
      QD_TRY(qd_infer_axis_(&c, QD_ARANGE_AXIS, "axis", out.rank));
      out.dims[0] = c.in[0]->dims[a[QD_ARANGE_AXIS].i];
      out.rank = 1;
      break;

    case QD_OP_EOS_POOL: {
      QD_TRY(qd_infer_float_inputs_(&c, 0, 0));
      QD_TRY(qd_infer_ids_input_(&c, 1));
      QD_TRY(qd_infer_require_rank_(&c, 0, 3));
      QD_TRY(qd_infer_require_rank_(&c, 1, 2));
      if (c.in[1]->dims[0] != out.dims[0] || c.in[1]->dims[1] != out.dims[1])
        return qd_infer_fail_(&c, "the ids must be [batch, tokens] of the hidden states");
      out.rank = 2;
      out.dims[1] = c.in[0]->dims[2];
      break;
    }

    case QD_OP_CONV2D: {
      QD_TRY(qd_infer_require_rank_(&c, 0, 4));
      int64_t f = a[QD_CONV_FEATURES].i, k = a[QD_CONV_KERNEL].i, st = a[QD_CONV_STRIDE].i, pad = a[QD_CONV_PADDING].i;
      if (f <= 0) return qd_infer_bad_attr_(&c, "features", f, "it must be positive");
      if (k <= 0 || k > 64) return qd_infer_bad_attr_(&c, "kernel", k, "it must be from 1 to 64");
      if (st <= 0 || st > 64) return qd_infer_bad_attr_(&c, "stride", st, "it must be from 1 to 64");
      if (pad < 0 || pad >= k) return qd_infer_bad_attr_(&c, "padding", pad, "it must be from 0 to kernel - 1");
      for (int d = 2; d < 4; d++) {
        if (out.dims[d] + 2 * pad < k) return qd_infer_fail_(&c, "the padded image is smaller than the kernel");
        out.dims[d] = (out.dims[d] + 2 * pad - k) / st + 1;
      }
      int64_t wd[4] = {f, c.in[0]->dims[1], k, k};
      QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 4, wd, 0));
      if (a[QD_CONV_BIAS].i) QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_BIAS, "bias", 1, &f, QD_WEIGHT_BIAS));
      out.dims[1] = f;
      break;
    }

    case QD_OP_GROUP_NORM: {
      if (out.rank < 2) return qd_infer_fail_(&c, "the input must be [batch, channels, ...]");
      int64_t groups = a[QD_GROUP_NORM_GROUPS].i, ch = out.dims[1];
      if (groups <= 0 || ch % groups)
        return qd_infer_bad_attr_(&c, "groups", groups, "it must be positive and divide the channels");
      if (!(a[QD_GROUP_NORM_EPS].f > 0)) return qd_infer_bad_attr_(&c, "eps", 0, "it must be positive");
      if (a[QD_GROUP_NORM_AFFINE].i) {
        QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 1, &ch, QD_WEIGHT_NORM));
        QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_BIAS, "bias", 1, &ch, QD_WEIGHT_NORM | QD_WEIGHT_BIAS));
      }
      break;
    }

    case QD_OP_UPSAMPLE_NEAREST: {
      QD_TRY(qd_infer_require_rank_(&c, 0, 4));
      int64_t f = a[QD_UPSAMPLE_FACTOR].i;
      if (f < 1 || f > 64) return qd_infer_bad_attr_(&c, "factor", f, "it must be from 1 to 64");
      for (int d = 2; d < 4; d++)
        if (__builtin_mul_overflow(out.dims[d], f, &out.dims[d])) return qd_infer_fail_(&c, "the output is too large");
      break;
    }

    case QD_OP_RESHAPE: {
      const qd_attr_value_t* sh = &a[QD_RESHAPE_SHAPE];
      if (sh->count < 1) return qd_infer_bad_attr_(&c, "shape", 0, "it must list at least one dimension");
      int64_t numel = qd_shape_numel(c.in[0]), known = 1;
      int32_t infer_at = -1;
      for (int32_t i = 0; i < sh->count; i++) {
        if (sh->list[i] == -1 && infer_at < 0) {
          infer_at = i;
        } else if (sh->list[i] <= 0) {
          return qd_infer_bad_attr_(&c, "shape", sh->list[i], "entries must be positive, or one of them -1");
        } else if (__builtin_mul_overflow(known, sh->list[i], &known)) {
          return qd_infer_fail_(&c, "the shape's product overflows");
        }
      }
      if (numel % known) return qd_infer_fail_(&c, "the new shape does not hold the same number of elements");
      out.rank = sh->count;
      for (int32_t i = 0; i < sh->count; i++) out.dims[i] = i == infer_at ? numel / known : sh->list[i];
      if (infer_at < 0 && known != numel)
        return qd_infer_fail_(&c, "the new shape does not hold the same number of elements");
      break;
    }

    case QD_OP_PERMUTE: {
      const qd_attr_value_t* perm = &a[QD_PERMUTE_PERM];
      if (perm->count != out.rank) return qd_infer_fail_(&c, "'perm' must list every axis of the input once");
      bool seen[QD_GRAPH_MAX_RANK] = {false};
      for (int32_t i = 0; i < perm->count; i++) {
        int64_t p = perm->list[i];
        if (p < 0 || p >= out.rank || seen[p])
          return qd_infer_bad_attr_(&c, "perm", p, "it must be a permutation of the input's axes");
        seen[p] = true;
        out.dims[i] = c.in[0]->dims[p];
      }
      break;
    }

    case QD_OP_T5_RELATIVE_BIAS: {
      if (out.rank < 2) return qd_infer_fail_(&c, "the input must be [batch, tokens, ...]");
      int64_t nb = a[QD_T5_BIAS_BUCKETS].i, md = a[QD_T5_BIAS_MAX_DISTANCE].i, h = a[QD_T5_BIAS_HEADS].i;
      /* Bidirectional halves the buckets; half of those count exact distances, which must leave at least one. */
      int64_t exact = (a[QD_T5_BIAS_BIDIRECTIONAL].i ? nb / 2 : nb) / 2;
      if (nb < 2 || nb > 4096 || exact < 1)
        return qd_infer_bad_attr_(&c, "buckets", nb, "it must be from 2 (4 when bidirectional) to 4096");
      if (md <= exact) return qd_infer_bad_attr_(&c, "max_distance", md, "it must exceed the exact-distance buckets");
      if (h <= 0) return qd_infer_bad_attr_(&c, "heads", h, "it must be positive");
      int64_t s = c.in[0]->dims[1], numel;
      if (__builtin_mul_overflow(s, s, &numel) || __builtin_mul_overflow(numel, h, &numel))
        return qd_infer_fail_(&c, "the bias would be too large");
      int64_t wd[2] = {nb, h};
      QD_TRY(qd_infer_weight_(&c, QD_WEIGHT_SLOT_MAIN, "weight", 2, wd, 0));
      out.rank = 4;
      out.dims[0] = 1;
      out.dims[1] = h;
      out.dims[2] = out.dims[3] = s;
      break;
    }

    case QD_OP_INVALID:
    case QD_OP_COUNT_: return QD_ERR(INTERNAL, INTERNAL, "%s: invalid op", node->origin);
  }
  for (int32_t d = 0; d < out.rank; d++)
    if (out.dims[d] <= 0) return qd_infer_fail_(&c, "the output would have an empty dimension");
  qd_infer_set_out_(&c, &out);
  c.out->dtype = out_dtype;
  return QD_OK;
}

double qd_op_flops(const qd_graph_t* g, const qd_node_t* node) {
  const qd_shape_t* x = &g->values[node->inputs[0]].shape;
  const qd_shape_t* y = &g->values[node->output].shape;
  switch (node->op) {
    case QD_OP_LINEAR: {
      double k = (double)x->dims[x->rank - 1];
      return 2.0 * (double)qd_shape_numel(y) * k;
    }
    case QD_OP_ATTENTION: {
      const qd_shape_t* k = &g->values[node->inputs[1]].shape;
      double b = (double)x->dims[0], sq = (double)x->dims[1], sk = (double)k->dims[1];
      double qk_ch = (double)x->dims[2], v_ch = (double)y->dims[2];
      return 2.0 * b * sq * sk * (qk_ch + v_ch);
    }
    case QD_OP_CONV2D: {
      /* Every output element is a dot product over Cin * k * k inputs. */
      double k = (double)node->attrs[QD_CONV_KERNEL].i;
      return 2.0 * (double)qd_shape_numel(y) * (double)x->dims[1] * k * k;
    }
    default: return 0.0;
  }
}
