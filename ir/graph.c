/* The graph IR: construction, topological ordering, shape inference and lifetimes. See graph.h. */
#include "ir/graph.h"

#include <stdio.h>
#include <string.h>

#include "ir/hash64.h"

/* Limits that keep hostile descriptions from exhausting memory or overflowing int32 indices. */
enum { QD_GRAPH_MAX_ITEMS = 1 << 22 };

/* Grows a graph-owned array to hold one more element. */
static qd_status_t qd_graph_reserve_(qd_graph_t* g, void** array, int32_t count, int32_t* capacity,
                                     size_t elem_size) {
  if (count < *capacity) return QD_OK;
  if (count >= QD_GRAPH_MAX_ITEMS)
    return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "graph '%s' has more than %d nodes, values or weights", g->name,
                  QD_GRAPH_MAX_ITEMS);
  int32_t cap = *capacity ? *capacity * 2 : 64;
  void* p;
  QD_TRY(qd_realloc(g->allocator, *array, (size_t)*capacity * elem_size, (size_t)cap * elem_size, &p));
  *array = p;
  *capacity = cap;
  return QD_OK;
}

#define QD_GRAPH_RESERVE(g, arr, count, cap) \
  qd_graph_reserve_((g), (void**)&(g)->arr, (g)->count, &(g)->cap, sizeof(*(g)->arr))

qd_status_t qd_graph_create(qd_allocator_t allocator, const char* name, qd_graph_t** out_graph) {
  *out_graph = NULL;
  qd_graph_t* g;
  QD_TRY(qd_calloc(allocator, 1, sizeof *g, (void**)&g));
  g->allocator = allocator;
  qd_arena_init(&g->arena, allocator, 64 * 1024);
  qd_strmap_init(&g->value_index, allocator);
  qd_strmap_init(&g->weight_index, allocator);
  qd_status_t s = qd_arena_strdup(&g->arena, name ? name : "graph", (char**)&g->name);
  if (!s) s = qd_arena_strdup(&g->arena, "", (char**)&g->config);
  if (s) {
    qd_graph_destroy(g);
    return s;
  }
  *out_graph = g;
  return QD_OK;
}

void qd_graph_destroy(qd_graph_t* g) {
  if (!g) return;
  qd_allocator_t a = g->allocator;
  qd_free(a, g->values, (size_t)g->value_capacity * sizeof *g->values);
  qd_free(a, g->nodes, (size_t)g->node_capacity * sizeof *g->nodes);
  qd_free(a, g->weights, (size_t)g->weight_capacity * sizeof *g->weights);
  qd_free(a, g->inputs, (size_t)g->input_capacity * sizeof *g->inputs);
  qd_free(a, g->outputs, (size_t)g->output_capacity * sizeof *g->outputs);
  qd_free(a, g->sizes, (size_t)g->size_capacity * sizeof *g->sizes);
  qd_strmap_deinit(&g->value_index);
  qd_strmap_deinit(&g->weight_index);
  qd_arena_deinit(&g->arena);
  qd_free(a, g, sizeof *g);
}

qd_status_t qd_graph_add_value(qd_graph_t* g, const char* name, int32_t* out_value) {
  if (qd_strmap_get(&g->value_index, name) >= 0)
    return QD_ERR(BAD_INPUT, GRAPH_VALUE_REDEFINED, "value '%s' is defined twice", name);
  QD_TRY(QD_GRAPH_RESERVE(g, values, value_count, value_capacity));
  qd_value_t* v = &g->values[g->value_count];
  memset(v, 0, sizeof *v);
  QD_TRY(qd_arena_strdup(&g->arena, name, (char**)&v->name));
  v->producer = -1;
  v->last_use = -1;
  QD_TRY(qd_strmap_put(&g->value_index, v->name, g->value_count, NULL));
  *out_value = g->value_count++;
  return QD_OK;
}

qd_status_t qd_graph_add_input(qd_graph_t* g, const char* name, qd_dtype_t dtype, const qd_shape_t* shape,
                               int32_t* out_value) {
  int32_t v;
  QD_TRY(qd_graph_add_value(g, name, &v));
  QD_TRY(QD_GRAPH_RESERVE(g, inputs, input_count, input_capacity));
  g->values[v].dtype = dtype;
  g->values[v].shape = *shape;
  g->inputs[g->input_count++] = v;
  *out_value = v;
  return QD_OK;
}

static bool qd_graph_is_input_(const qd_graph_t* g, int32_t v) {
  for (int32_t i = 0; i < g->input_count; i++)
    if (g->inputs[i] == v) return true;
  return false;
}

qd_status_t qd_graph_add_node(qd_graph_t* g, qd_op_t op, const int32_t* inputs, int32_t input_count,
                              int32_t output, const char* weight_base, const char* origin, int32_t* out_node) {
  if (output < 0 || output >= g->value_count)
    return QD_ERR(INTERNAL, INTERNAL, "node output %d is not a value of graph '%s'", output, g->name);
  qd_value_t* out = &g->values[output];
  if (out->producer >= 0 || qd_graph_is_input_(g, output))
    return QD_ERR(BAD_INPUT, GRAPH_VALUE_REDEFINED, "%s: value '%s' is defined twice", origin ? origin : "node",
                  out->name);
  const qd_op_info_t* info = qd_op_info(op);
  if (!info) return QD_ERR(INTERNAL, INTERNAL, "op %d is not in the op table", (int)op);
  if (input_count < info->min_inputs || input_count > info->max_inputs) {
    if (info->min_inputs == info->max_inputs)
      return QD_ERR(BAD_INPUT, GRAPH_ARITY, "%s: op '%s' takes %d input%s, got %d", origin ? origin : "node",
                    info->name, info->min_inputs, info->min_inputs == 1 ? "" : "s", input_count);
    return QD_ERR(BAD_INPUT, GRAPH_ARITY, "%s: op '%s' takes %d to %d inputs, got %d", origin ? origin : "node",
                  info->name, info->min_inputs, info->max_inputs, input_count);
  }
  QD_TRY(QD_GRAPH_RESERVE(g, nodes, node_count, node_capacity));
  qd_node_t* n = &g->nodes[g->node_count];
  memset(n, 0, sizeof *n);
  n->op = op;
  n->input_count = input_count;
  for (int32_t i = 0; i < input_count; i++) {
    if (inputs[i] < 0 || inputs[i] >= g->value_count)
      return QD_ERR(INTERNAL, INTERNAL, "node input %d is not a value of graph '%s'", inputs[i], g->name);
    n->inputs[i] = inputs[i];
  }
  n->output = output;
  for (int i = 0; i < QD_NODE_MAX_WEIGHTS; i++) n->weights[i] = -1;
  if (weight_base) QD_TRY(qd_arena_strdup(&g->arena, weight_base, (char**)&n->weight_base));
  QD_TRY(qd_arena_strdup(&g->arena, origin ? origin : out->name, (char**)&n->origin));
  out->producer = g->node_count;
  if (out_node) *out_node = g->node_count;
  g->node_count++;
  return QD_OK;
}

qd_status_t qd_graph_add_output(qd_graph_t* g, const char* name, int32_t value) {
  if (qd_graph_find_output(g, name) >= 0)
    return QD_ERR(BAD_INPUT, GRAPH_VALUE_REDEFINED, "graph output '%s' is declared twice", name);
  QD_TRY(QD_GRAPH_RESERVE(g, outputs, output_count, output_capacity));
  qd_graph_output_t* o = &g->outputs[g->output_count];
  QD_TRY(qd_arena_strdup(&g->arena, name, (char**)&o->name));
  o->value = value;
  g->output_count++;
  return QD_OK;
}

qd_status_t qd_graph_record_size(qd_graph_t* g, const char* name, int64_t value) {
  for (int32_t i = 0; i < g->size_count; i++)
    if (strcmp(g->sizes[i].name, name) == 0) {
      g->sizes[i].value = value;
      return QD_OK;
    }
  QD_TRY(QD_GRAPH_RESERVE(g, sizes, size_count, size_capacity));
  qd_size_binding_t* b = &g->sizes[g->size_count];
  QD_TRY(qd_arena_strdup(&g->arena, name, (char**)&b->name));
  b->value = value;
  g->size_count++;
  return QD_OK;
}

qd_status_t qd_graph_declare_weight(qd_graph_t* g, const char* name, const qd_shape_t* shape, uint32_t flags,
                                    int32_t node, int32_t* out_weight) {
  int32_t existing = qd_strmap_get(&g->weight_index, name);
  if (existing >= 0) {
    qd_weight_t* w = &g->weights[existing];
    if (!qd_shape_equal(&w->shape, shape)) {
      char a[128], b[128];
      return QD_ERR(BAD_INPUT, GRAPH_SHAPE_MISMATCH,
                    "weight '%s' is used with shape %s by %s and with shape %s by %s", name,
                    qd_shape_format(&w->shape, a, sizeof a), g->nodes[w->first_node].origin,
                    qd_shape_format(shape, b, sizeof b), g->nodes[node].origin);
    }
    w->flags |= flags;
    *out_weight = existing;
    return QD_OK;
  }
  QD_TRY(QD_GRAPH_RESERVE(g, weights, weight_count, weight_capacity));
  qd_weight_t* w = &g->weights[g->weight_count];
  memset(w, 0, sizeof *w);
  QD_TRY(qd_arena_strdup(&g->arena, name, (char**)&w->name));
  w->shape = *shape;
  w->first_node = node;
  w->flags = flags;
  QD_TRY(qd_strmap_put(&g->weight_index, w->name, g->weight_count, NULL));
  *out_weight = g->weight_count++;
  return QD_OK;
}

/* Orders nodes so that every producer precedes its readers, keeping the written order wherever the data allows
 * (so the plan reads like the description). Iterative depth-first search: hostile graphs may be deep. */
static qd_status_t qd_graph_toposort_(qd_graph_t* g) {
  int32_t n = g->node_count;
  if (n == 0) return QD_OK;
  qd_status_t s = QD_OK;
  uint8_t* state = NULL; /* 0 new, 1 on the stack, 2 placed */
  int32_t* stack = NULL; /* node indices */
  int32_t* next_input = NULL;
  int32_t* order = NULL;
  qd_node_t* sorted = NULL;
  QD_CHECK_GOTO(s, qd_calloc(g->allocator, (size_t)n, 1, (void**)&state), done);
  QD_CHECK_GOTO(s, qd_calloc(g->allocator, (size_t)n, sizeof *stack, (void**)&stack), done);
  QD_CHECK_GOTO(s, qd_calloc(g->allocator, (size_t)n, sizeof *next_input, (void**)&next_input), done);
  QD_CHECK_GOTO(s, qd_calloc(g->allocator, (size_t)n, sizeof *order, (void**)&order), done);
  int32_t placed = 0;
  for (int32_t root = 0; root < n; root++) {
    if (state[root]) continue;
    int32_t top = 0;
    stack[top++] = root;
    state[root] = 1;
    next_input[root] = 0;
    while (top > 0) {
      int32_t cur = stack[top - 1];
      qd_node_t* node = &g->nodes[cur];
      if (next_input[cur] < node->input_count) {
        int32_t producer = g->values[node->inputs[next_input[cur]++]].producer;
        if (producer < 0 || state[producer] == 2) continue;
        if (state[producer] == 1) {
          s = QD_ERR(BAD_INPUT, GRAPH_CYCLE, "%s: value '%s' depends on itself through a cycle of nodes",
                     g->nodes[producer].origin, g->values[g->nodes[producer].output].name);
          goto done;
        }
        state[producer] = 1;
        next_input[producer] = 0;
        stack[top++] = producer;
      } else {
        state[cur] = 2;
        order[placed++] = cur;
        top--;
      }
    }
  }
  QD_CHECK_GOTO(s, qd_calloc(g->allocator, (size_t)g->node_capacity, sizeof *sorted, (void**)&sorted), done);
  for (int32_t i = 0; i < n; i++) {
    sorted[i] = g->nodes[order[i]];
    g->values[sorted[i].output].producer = i;
  }
  for (int32_t w = 0; w < g->weight_count; w++) g->weights[w].first_node = -1;
  qd_free(g->allocator, g->nodes, (size_t)g->node_capacity * sizeof *g->nodes);
  g->nodes = sorted;
  sorted = NULL;
done:
  qd_free(g->allocator, state, (size_t)n);
  qd_free(g->allocator, stack, (size_t)n * sizeof *stack);
  qd_free(g->allocator, next_input, (size_t)n * sizeof *next_input);
  qd_free(g->allocator, order, (size_t)n * sizeof *order);
  qd_free(g->allocator, sorted, (size_t)g->node_capacity * sizeof *sorted);
  return s;
}

qd_status_t qd_graph_finalize(qd_graph_t* g) {
  if (g->finalized) return QD_ERR(INTERNAL, INTERNAL, "graph '%s' finalized twice", g->name);
  for (int32_t v = 0; v < g->value_count; v++)
    if (g->values[v].producer < 0 && !qd_graph_is_input_(g, v))
      return QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE, "value '%s' is read but never defined", g->values[v].name);
  QD_TRY(qd_graph_toposort_(g));
  for (int32_t i = 0; i < g->node_count; i++) QD_TRY(qd_op_infer(g, &g->nodes[i]));
  for (int32_t i = 0; i < g->node_count; i++) {
    qd_node_t* node = &g->nodes[i];
    for (int32_t k = 0; k < node->input_count; k++) g->values[node->inputs[k]].last_use = i;
    for (int k = 0; k < QD_NODE_MAX_WEIGHTS; k++)
      if (node->weights[k] >= 0 && g->weights[node->weights[k]].first_node < 0)
        g->weights[node->weights[k]].first_node = i;
  }
  for (int32_t o = 0; o < g->output_count; o++) g->values[g->outputs[o].value].last_use = g->node_count;
  g->finalized = true;
  return QD_OK;
}

int32_t qd_graph_find_value(const qd_graph_t* g, const char* name) { return qd_strmap_get(&g->value_index, name); }
int32_t qd_graph_find_weight(const qd_graph_t* g, const char* name) {
  return qd_strmap_get(&g->weight_index, name);
}
int32_t qd_graph_find_input(const qd_graph_t* g, const char* name) {
  for (int32_t i = 0; i < g->input_count; i++)
    if (strcmp(g->values[g->inputs[i]].name, name) == 0) return i;
  return -1;
}

int32_t qd_graph_find_output(const qd_graph_t* g, const char* name) {
  for (int32_t i = 0; i < g->output_count; i++)
    if (strcmp(g->outputs[i].name, name) == 0) return i;
  return -1;
}
bool qd_graph_find_size(const qd_graph_t* g, const char* name, int64_t* out_value) {
  for (int32_t i = 0; i < g->size_count; i++)
    if (strcmp(g->sizes[i].name, name) == 0) {
      *out_value = g->sizes[i].value;
      return true;
    }
  return false;
}

int64_t qd_shape_numel(const qd_shape_t* s) {
  int64_t n = 1;
  for (int32_t i = 0; i < s->rank; i++) n *= s->dims[i];
  return n;
}

int64_t qd_shape_prod(const qd_shape_t* s, int32_t from, int32_t to) {
  int64_t p = 1;
  for (int32_t i = from; i < to; i++) p *= s->dims[i];
  return p;
}

bool qd_shape_equal(const qd_shape_t* a, const qd_shape_t* b) {
  if (a->rank != b->rank) return false;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

char* qd_shape_format(const qd_shape_t* s, char* buf, size_t size) {
  size_t used = 0;
  int n = snprintf(buf, size, "[");
  if (n > 0) used += (size_t)n;
  for (int32_t i = 0; i < s->rank && used < size; i++) {
    n = snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)s->dims[i]);
    if (n > 0) used += (size_t)n;
  }
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

qd_shape_t qd_shape_make(int32_t rank, const int64_t* dims) {
  qd_shape_t s;
  memset(&s, 0, sizeof s);
  s.rank = rank;
  for (int32_t i = 0; i < rank && i < QD_GRAPH_MAX_RANK; i++) s.dims[i] = dims[i];
  return s;
}

void qd_graph_stats(const qd_graph_t* g, qd_graph_stats_t* st) {
  memset(st, 0, sizeof *st);
  for (int32_t w = 0; w < g->weight_count; w++) {
    uint64_t n = (uint64_t)qd_shape_numel(&g->weights[w].shape);
    st->parameters += n;
    if (g->weights[w].flags & QD_WEIGHT_LINEAR) st->linear_parameters += n;
  }
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* node = &g->nodes[i];
    st->node_count_by_op[node->op]++;
    double f = qd_op_flops(g, node);
    if (node->op == QD_OP_LINEAR)
      st->linear_flops += f;
    else if (node->op == QD_OP_ATTENTION)
      st->attention_flops += f;
    else
      st->other_flops += f;
  }
}

uint64_t qd_graph_digest(const qd_graph_t* g) {
  qd_hash64_state_t h;
  qd_hash64_init(&h, 0x71647067u); /* "qdpg" */
  for (int32_t v = 0; v < g->value_count; v++) {
    const qd_value_t* val = &g->values[v];
    qd_hash64_update(&h, &val->dtype, sizeof val->dtype);
    qd_hash64_update(&h, &val->shape.rank, sizeof val->shape.rank);
    qd_hash64_update(&h, val->shape.dims, sizeof(int64_t) * (size_t)val->shape.rank);
  }
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t* n = &g->nodes[i];
    qd_hash64_update(&h, &n->op, sizeof n->op);
    qd_hash64_update(&h, &n->input_count, sizeof n->input_count);
    qd_hash64_update(&h, n->inputs, sizeof(int32_t) * (size_t)n->input_count);
    qd_hash64_update(&h, &n->output, sizeof n->output);
    qd_hash64_update(&h, n->weights, sizeof n->weights);
    for (int a = 0; a < QD_MAX_ATTRS; a++) {
      qd_hash64_update(&h, &n->attrs[a].i, sizeof n->attrs[a].i);
      qd_hash64_update(&h, &n->attrs[a].f, sizeof n->attrs[a].f);
      qd_hash64_update(&h, &n->attrs[a].count, sizeof n->attrs[a].count);
      qd_hash64_update(&h, n->attrs[a].list, sizeof(int64_t) * (size_t)n->attrs[a].count);
    }
  }
  for (int32_t w = 0; w < g->weight_count; w++) {
    qd_hash64_update(&h, g->weights[w].name, strlen(g->weights[w].name) + 1);
    qd_hash64_update(&h, g->weights[w].shape.dims, sizeof(int64_t) * (size_t)g->weights[w].shape.rank);
  }
  return qd_hash64_digest(&h);
}
