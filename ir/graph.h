/* The graph IR: a flat, instantiated dataflow graph with concrete shapes.
 *
 * A graph description (JSON, see docs/graph-format.md) has configurations, symbolic sizes and reusable blocks;
 * instantiating it for one configuration and one set of bound sizes (batch, token counts) gives a qd_graph_t:
 *   - values: graph inputs and node outputs, each with a unique name, a dtype and a concrete shape;
 *   - nodes: one op each, in an order where every input is produced before it is read (topological);
 *   - weights: every checkpoint tensor the nodes read, by canonical name with the shape the graph needs;
 *   - outputs: named values the caller gets back.
 * Passes and executors walk nodes in order and switch on node->op (ir/ops.def).
 *
 * Ownership: the graph owns every string and array in it; all of it is freed by qd_graph_destroy.
 */
#ifndef QD_IR_GRAPH_H
#define QD_IR_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "ir/arena.h"
#include "ir/ops.h"
#include "ir/strmap.h"
#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"

enum { QD_GRAPH_MAX_RANK = 8 };

typedef struct qd_shape {
  int32_t rank;
  int64_t dims[QD_GRAPH_MAX_RANK];
} qd_shape_t;

typedef struct qd_value {
  const char* name;    /* unique; inside block instances "<instance>:<name>", e.g. "transformer_blocks.3:q" */
  qd_dtype_t dtype;    /* logical type: F32 for activations (executors choose their storage), I32/I64 for ids */
  qd_shape_t shape;
  int32_t producer;    /* node index, or -1 for a graph input */
  int32_t last_use;    /* index of the last node that reads it; graph outputs read at node_count */
} qd_value_t;

typedef struct qd_weight {
  const char* name;    /* canonical checkpoint name, e.g. "transformer_blocks.3.attn.to_q.weight" */
  qd_shape_t shape;
  int32_t first_node;  /* first node that reads it */
  uint32_t flags;
} qd_weight_t;

/* qd_weight_t.flags */
enum {
  QD_WEIGHT_LINEAR = 1u << 0, /* the [out, in] matrix of a linear: what NF4 quantization applies to */
  QD_WEIGHT_BIAS = 1u << 1,
  QD_WEIGHT_NORM = 1u << 2,
};

struct qd_node {
  qd_op_t op;
  int32_t input_count;
  int32_t inputs[QD_NODE_MAX_INPUTS]; /* value indices */
  int32_t output;                     /* value index */
  int32_t weights[QD_NODE_MAX_WEIGHTS]; /* weight indices, -1 when absent */
  qd_attr_value_t attrs[QD_MAX_ATTRS];
  const char* weight_base;            /* qualified base name ("transformer_blocks.3.attn.to_q"), or NULL */
  const char* origin;                 /* where it came from, for errors: "blocks.double.nodes[4] in transformer_blocks.3" */
};

typedef struct qd_graph_output {
  const char* name;
  int32_t value;
} qd_graph_output_t;

typedef struct qd_size_binding {
  const char* name;
  int64_t value;
} qd_size_binding_t;

struct qd_graph {
  qd_allocator_t allocator;
  qd_arena_t arena;      /* every string and the node/value/weight arrays */
  const char* name;      /* e.g. "flux-transformer" */
  const char* config;    /* the configuration it was instantiated with */

  qd_value_t* values;
  int32_t value_count, value_capacity;
  qd_node_t* nodes;
  int32_t node_count, node_capacity;
  qd_weight_t* weights;
  int32_t weight_count, weight_capacity;
  int32_t* inputs;       /* value indices of graph inputs, in declaration order */
  int32_t input_count, input_capacity;
  qd_graph_output_t* outputs;
  int32_t output_count, output_capacity;
  qd_size_binding_t* sizes; /* every named size that was evaluated (config values and derived sizes) */
  int32_t size_count, size_capacity;

  qd_strmap_t value_index;  /* name -> value */
  qd_strmap_t weight_index; /* name -> weight */
  bool finalized;
};

qd_status_t qd_graph_create(qd_allocator_t allocator, const char* name, qd_graph_t** out_graph);
void qd_graph_destroy(qd_graph_t* graph);

/* Builders (used by the reader and by tests that build graphs in C). Strings are copied into the graph.
 * Values may be created before the node that produces them, so nodes can be added in any order;
 * qd_graph_finalize sorts them. */
qd_status_t qd_graph_add_value(qd_graph_t* g, const char* name, int32_t* out_value); /* GRAPH_VALUE_REDEFINED */
qd_status_t qd_graph_add_input(qd_graph_t* g, const char* name, qd_dtype_t dtype, const qd_shape_t* shape,
                               int32_t* out_value);
/* Adds a node producing the existing value `output`; its attributes start zeroed and are set by the caller.
 * The returned index stays valid until qd_graph_finalize reorders nodes. */
qd_status_t qd_graph_add_node(qd_graph_t* g, qd_op_t op, const int32_t* inputs, int32_t input_count,
                              int32_t output, const char* weight_base, const char* origin, int32_t* out_node);
qd_status_t qd_graph_add_output(qd_graph_t* g, const char* name, int32_t value);
qd_status_t qd_graph_record_size(qd_graph_t* g, const char* name, int64_t value);
/* Declares (or finds, if already declared with the same shape) a weight; a second declaration with another
 * shape is an error naming both users. */
qd_status_t qd_graph_declare_weight(qd_graph_t* g, const char* name, const qd_shape_t* shape, uint32_t flags,
                                    int32_t node, int32_t* out_weight);

/* Orders nodes topologically (GRAPH_CYCLE if impossible), infers every shape, declares weights and computes
 * value lifetimes. Call once after all nodes are added. */
qd_status_t qd_graph_finalize(qd_graph_t* g);

/* Lookups; -1 when absent. */
int32_t qd_graph_find_value(const qd_graph_t* g, const char* name);
int32_t qd_graph_find_weight(const qd_graph_t* g, const char* name);
int32_t qd_graph_find_output(const qd_graph_t* g, const char* name);
int32_t qd_graph_find_input(const qd_graph_t* g, const char* name); /* index into inputs, by value name */
bool qd_graph_find_size(const qd_graph_t* g, const char* name, int64_t* out_value);

/* Shapes */
int64_t qd_shape_numel(const qd_shape_t* shape);
/* The product of dims[from .. to): with from 0 and to an axis, the rows before it ("outer"); from axis + 1 to the
 * rank, the elements after it ("inner"), as slices and concatenations along the axis see the tensor. */
int64_t qd_shape_prod(const qd_shape_t* shape, int32_t from, int32_t to);
bool qd_shape_equal(const qd_shape_t* a, const qd_shape_t* b);
/* "[2, 24, 32]" into buf; returns buf. */
char* qd_shape_format(const qd_shape_t* shape, char* buf, size_t size);
qd_shape_t qd_shape_make(int32_t rank, const int64_t* dims);

/* Totals, for qdc inspect and the benchmarks. */
typedef struct qd_graph_stats {
  uint64_t parameters;        /* elements of all weights */
  uint64_t linear_parameters; /* elements of linear weight matrices */
  double linear_flops;        /* per run of the graph */
  double attention_flops;
  double other_flops;
  int32_t node_count_by_op[QD_OP_COUNT_];
} qd_graph_stats_t;

void qd_graph_stats(const qd_graph_t* g, qd_graph_stats_t* out_stats);

/* A digest of the program: every node's op, attributes, input and output values (by index) with their types and
 * shapes, and every weight's name and shape. Plans record it, and the runtime compares it with the graph it
 * instantiates from the plan's description, so a plan can never run a program other than the one it was
 * compiled (and memory-planned) for. */
uint64_t qd_graph_digest(const qd_graph_t* g);

#endif
