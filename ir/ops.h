/* The op table (ops.def) in C: the op enum, attribute schemas, shape inference, weights, FLOP counts. */
#ifndef QD_IR_OPS_H
#define QD_IR_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/status.h"

typedef enum qd_op {
  QD_OP_INVALID = 0,
#define QD_OP(name, json, min_in, max_in, doc) QD_OP_##name,
#include "ir/ops.def"
#undef QD_OP
  QD_OP_COUNT_
} qd_op_t;

enum {
  QD_MAX_ATTRS = 6,
  QD_MAX_ATTR_LIST = 8,
  QD_NODE_MAX_INPUTS = 8,
  QD_NODE_MAX_WEIGHTS = 2,
};

typedef enum qd_attr_type {
  QD_ATTR_NONE = 0,
  QD_ATTR_INT,    /* an integer or a size expression */
  QD_ATTR_FLOAT,  /* a JSON number */
  QD_ATTR_INTS,   /* a list of integers or size expressions (or a config name holding a list) */
} qd_attr_type_t;

typedef struct qd_attr_spec {
  const char* name;
  qd_attr_type_t type;
  const char* default_value; /* as it would be written in JSON; NULL = required */
} qd_attr_spec_t;

typedef struct qd_attr_value {
  int64_t i;
  double f;
  int32_t count; /* for lists */
  int64_t list[QD_MAX_ATTR_LIST];
} qd_attr_value_t;

/* Attribute slots, in the order of each op's schema in ops.c. */
enum { QD_LINEAR_FEATURES = 0, QD_LINEAR_BIAS = 1 };
enum { QD_NORM_EPS = 0, QD_NORM_AFFINE = 1, QD_NORM_DIM = 2 };
enum { QD_SCALE_FACTOR = 0 };
enum { QD_SLICE_AXIS = 0, QD_SLICE_START = 1, QD_SLICE_SIZE = 2 };
enum { QD_CONCAT_AXIS = 0 };
enum { QD_TEMB_DIM = 0, QD_TEMB_FLIP = 1, QD_TEMB_SHIFT = 2, QD_TEMB_INPUT_SCALE = 3, QD_TEMB_MAX_PERIOD = 4 };
enum { QD_ROPE_FREQS_AXES = 0, QD_ROPE_FREQS_THETA = 1 };
enum { QD_ROPE_HEAD_DIM = 0 };
enum { QD_ATTN_HEADS = 0, QD_ATTN_CAUSAL = 1, QD_ATTN_SCALE = 2 };
enum { QD_AFFINE_SCALE = 0, QD_AFFINE_DIVISOR = 1, QD_AFFINE_SHIFT = 2 };
enum { QD_EMBED_VOCAB = 0, QD_EMBED_FEATURES = 1 };
enum { QD_ARANGE_AXIS = 0 };
enum { QD_EOS_TOKEN = 0 };
enum { QD_CONV_FEATURES = 0, QD_CONV_KERNEL = 1, QD_CONV_STRIDE = 2, QD_CONV_PADDING = 3, QD_CONV_BIAS = 4 };
enum { QD_GROUP_NORM_GROUPS = 0, QD_GROUP_NORM_EPS = 1, QD_GROUP_NORM_AFFINE = 2 };
enum { QD_UPSAMPLE_FACTOR = 0 };
enum { QD_RESHAPE_SHAPE = 0 };
enum { QD_PERMUTE_PERM = 0 };
enum { QD_T5_BIAS_BUCKETS = 0, QD_T5_BIAS_MAX_DISTANCE = 1, QD_T5_BIAS_HEADS = 2, QD_T5_BIAS_BIDIRECTIONAL = 3 };

/* Weight slots. */
enum { QD_WEIGHT_SLOT_MAIN = 0, QD_WEIGHT_SLOT_BIAS = 1 };

typedef struct qd_graph qd_graph_t;
typedef struct qd_node qd_node_t;

typedef struct qd_op_info {
  const char* name;
  int min_inputs, max_inputs;
  const char* doc;
  qd_attr_spec_t attrs[QD_MAX_ATTRS];
  bool has_weights; /* accepts a "weight" base name */
} qd_op_info_t;

const qd_op_info_t* qd_op_info(qd_op_t op);
qd_op_t qd_op_from_name(const char* name);
const char* qd_op_name(qd_op_t op);

/* Declares the weights a node needs (names from its weight base name, shapes from its inputs and attributes)
 * and infers its output's dtype and shape. Errors name the node. */
qd_status_t qd_op_infer(qd_graph_t* graph, qd_node_t* node);

/* Floating-point operations the node performs (multiply-adds count 2); elementwise work counts 0 here
 * because it is memory-bound and reported separately. */
double qd_op_flops(const qd_graph_t* graph, const qd_node_t* node);

#endif
