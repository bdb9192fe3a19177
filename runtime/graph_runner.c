/* Graph runner; see graph_runner.h. */
#include "runtime/graph_runner.h"

#include <math.h>
#include <string.h>

#include "ir/graph_desc.h"
#include "ir/weight_map.h"
#include "runtime/plan_internal.h"

enum { QD_RUNNER_MAX_BINDINGS = 32 };

struct qd_graph_runner {
  qd_allocator_t allocator;
  qd_graph_desc_t* desc;
  qd_graph_t* graph;
  qd_checkpoint_t* ckpt;
  qd_weight_binding_t* binding;
  float** weights;
  qd_threadpool_t* pool;
  qd_plan_t* plan; /* plan mode: weights come from here */
  int32_t component;
};

static bool qd_runner_shape_of_(void* user, const char* name, qd_shape_t* out) {
  const qd_tensor_info_t* t = qd_safetensors_find(user, name);
  if (!t) return false;
  memset(out, 0, sizeof *out);
  out->rank = t->rank;
  for (int i = 0; i < t->rank; i++) out->dims[i] = (int64_t)t->shape[i];
  return true;
}

void qd_graph_runner_destroy(qd_graph_runner_t* r) {
  if (!r) return;
  if (r->plan) qd_plan_weights_f32_free(r->plan, r->component, r->allocator, r->weights);
  qd_plan_close(r->plan);
  if (r->binding) qd_weights_f32_free(r->binding, r->weights);
  qd_weight_binding_destroy(r->binding);
  qd_checkpoint_close(r->ckpt);
  qd_graph_destroy(r->graph);
  qd_graph_desc_destroy(r->desc);
  qd_threadpool_destroy(r->pool);
  qd_free(r->allocator, r, sizeof *r);
}

/* Adds the resolution's bindings to those the inputs gave (batch from the inputs, else 1). */
static qd_status_t qd_runner_bind_resolution_(const qd_graph_desc_t* d, const char* config, int64_t width,
                                              int64_t height, qd_size_binding_t* bindings, int32_t* count) {
  int64_t batch = 1;
  for (int32_t i = 0; i < *count; i++)
    if (strcmp(bindings[i].name, "batch") == 0) batch = bindings[i].value;
  qd_size_binding_t res[QD_RUNNER_MAX_BINDINGS];
  int32_t nr = 0;
  QD_TRY(qd_graph_desc_resolution_bindings(d, config, width, height, batch, res, QD_RUNNER_MAX_BINDINGS, &nr));
  for (int32_t k = 0; k < nr; k++) {
    int32_t existing = -1;
    for (int32_t i = 0; i < *count; i++)
      if (strcmp(bindings[i].name, res[k].name) == 0) existing = i;
    if (existing >= 0) {
      if (bindings[existing].value != res[k].value)
        return QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE, "the inputs give '%s' = %lld, but a %lldx%lld image gives %lld",
                      res[k].name, (long long)bindings[existing].value, (long long)width, (long long)height,
                      (long long)res[k].value);
      continue;
    }
    if (*count == QD_RUNNER_MAX_BINDINGS)
      return QD_ERR(INVALID_ARGUMENT, GRAPH_TOO_LARGE, "more than %d bound sizes", QD_RUNNER_MAX_BINDINGS);
    bindings[(*count)++] = res[k];
  }
  return QD_OK;
}

qd_status_t qd_graph_runner_create(const qd_graph_runner_options_t* o, const qd_safetensors_t* inputs,
                                   qd_allocator_t allocator, qd_graph_runner_t** out_runner) {
  return qd_graph_runner_create_for_image(o, inputs, 0, 0, allocator, out_runner);
}

qd_status_t qd_graph_runner_create_for_image(const qd_graph_runner_options_t* o, const qd_safetensors_t* inputs,
                                             int64_t width, int64_t height, qd_allocator_t allocator,
                                             qd_graph_runner_t** out_runner) {
  *out_runner = NULL;
  qd_graph_runner_t* r;
  QD_TRY(qd_calloc(allocator, 1, sizeof *r, (void**)&r));
  r->allocator = allocator;
  qd_size_binding_t bindings[QD_RUNNER_MAX_BINDINGS];
  int32_t n = 0;
  qd_status_t s = qd_graph_desc_load_file(o->graph_path, allocator, &r->desc);
  if (!s)
    s = qd_graph_desc_infer_bindings(r->desc, o->config, qd_runner_shape_of_, (void*)inputs, bindings,
                                     QD_RUNNER_MAX_BINDINGS, &n);
  if (!s && width > 0 && height > 0) s = qd_runner_bind_resolution_(r->desc, o->config, width, height, bindings, &n);
  if (!s) s = qd_graph_desc_instantiate(r->desc, o->config, bindings, n, allocator, &r->graph);
  if (!s) s = qd_checkpoint_open(o->weights_path, allocator, &r->ckpt);
  if (!s) s = qd_weight_binding_create(r->desc, o->config, r->graph, r->ckpt, o->layout, allocator, &r->binding);
  if (!s) s = qd_weights_f32_load(r->binding, &r->weights);
  if (!s) s = qd_threadpool_create(o->threads, allocator, &r->pool);
  if (s) {
    qd_graph_runner_destroy(r);
    return s;
  }
  *out_runner = r;
  return QD_OK;
}

qd_status_t qd_graph_runner_create_from_plan(const char* plan_path, const char* component, int threads,
                                             const qd_safetensors_t* inputs, qd_allocator_t allocator,
                                             qd_graph_runner_t** out_runner) {
  *out_runner = NULL;
  qd_graph_runner_t* r;
  QD_TRY(qd_calloc(allocator, 1, sizeof *r, (void**)&r));
  r->allocator = allocator;
  qd_status_t s = qd_plan_open(plan_path, allocator, 0, &r->plan);
  if (!s) {
    r->component = component ? qd_plan_find_component(r->plan, component) : 0;
    if (r->component < 0)
      s = QD_ERR(INVALID_ARGUMENT, PLAN_NO_COMPONENT, "%s: no component '%s' (it has '%s')", plan_path, component,
                 qd_plan_component_name(r->plan, 0));
  }
  qd_size_binding_t bindings[QD_RUNNER_MAX_BINDINGS];
  int32_t n = 0, res = -1;
  const qd_plan_component_t* c = s ? NULL : qd_plan_component(r->plan, r->component);
  if (!s)
    s = qd_graph_desc_infer_bindings(c->desc, c->config, qd_runner_shape_of_, (void*)inputs, bindings,
                                     QD_RUNNER_MAX_BINDINGS, &n);
  if (!s) s = qd_plan_find_resolution_by_bindings(r->plan, r->component, bindings, n, &res);
  if (!s) s = qd_plan_instantiate(r->plan, r->component, res, allocator, &r->graph);
  if (!s) s = qd_plan_weights_f32(r->plan, r->component, allocator, &r->weights);
  if (!s) s = qd_threadpool_create(threads, allocator, &r->pool);
  if (s) {
    qd_graph_runner_destroy(r);
    return s;
  }
  *out_runner = r;
  return QD_OK;
}

const qd_graph_t* qd_graph_runner_graph(const qd_graph_runner_t* r) { return r->graph; }
const char* qd_graph_runner_layout(const qd_graph_runner_t* r) {
  return r->plan ? qd_plan_component(r->plan, r->component)->layout : r->binding->layout;
}

/* Reads one supplied tensor into the element type the graph declares. */
static qd_status_t qd_runner_read_input_(qd_graph_runner_t* r, const qd_value_t* v, const qd_tensor_info_t* t,
                                         qd_tensor_t* out) {
  qd_shape_t shape;
  memset(&shape, 0, sizeof shape);
  shape.rank = t->rank;
  for (int i = 0; i < t->rank; i++) shape.dims[i] = (int64_t)t->shape[i];
  if (!qd_shape_equal(&shape, &v->shape)) {
    char a[128], b[128];
    return QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE, "%s: input '%s' has shape %s; the graph needs %s", t->file, v->name,
                  qd_shape_format(&shape, a, sizeof a), qd_shape_format(&v->shape, b, sizeof b));
  }
  out->dtype = v->dtype;
  out->shape = v->shape;
  uint64_t bytes;
  if (!qd_dtype_bytes_for(v->dtype, t->numel, &bytes))
    return QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE, "%s: input '%s' is too large", t->file, v->name);
  QD_TRY(qd_malloc(r->allocator, (size_t)bytes, &out->data));
  out->bytes = (size_t)bytes;
  if (v->dtype == QD_DTYPE_F32 && qd_dtype_is_float(t->dtype)) return qd_tensor_read_f32(t, out->data);
  if (v->dtype == t->dtype) {
    memcpy(out->data, t->data, (size_t)bytes);
    return QD_OK;
  }
  return QD_ERR(INVALID_ARGUMENT, INPUT_DTYPE, "%s: input '%s' is %s; the graph needs %s", t->file, v->name,
                qd_dtype_name(t->dtype), qd_dtype_name(v->dtype));
}

qd_status_t qd_graph_runner_run(qd_graph_runner_t* r, const qd_safetensors_t* inputs, qd_tensor_t* outputs) {
  const qd_graph_t* g = r->graph;
  qd_tensor_t* in = NULL;
  qd_status_t s = qd_calloc(r->allocator, (size_t)(g->input_count ? g->input_count : 1), sizeof *in, (void**)&in);
  for (int32_t i = 0; i < g->input_count && !s; i++) {
    const qd_value_t* v = &g->values[g->inputs[i]];
    const qd_tensor_info_t* t = qd_safetensors_find(inputs, v->name);
    if (!t)
      s = QD_ERR(INVALID_ARGUMENT, INPUT_MISSING, "%s: no tensor '%s' (graph '%s' needs it as an input)",
                 qd_safetensors_path(inputs), v->name, g->name);
    else
      s = qd_runner_read_input_(r, v, t, &in[i]);
  }
  qd_cpu_run_options_t opts = {r->pool, NULL, NULL};
  if (!s) s = qd_cpu_execute(g, (const float* const*)r->weights, in, outputs, &opts, r->allocator);
  for (int32_t i = 0; in && i < g->input_count; i++) qd_tensor_free(r->allocator, &in[i]);
  qd_free(r->allocator, in, (size_t)(g->input_count ? g->input_count : 1) * sizeof *in);
  return s;
}

void qd_compare_f32(const float* a, const float* b, size_t n, double* out_rel_l2, double* out_max_abs) {
  double diff = 0, ref = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    diff += d * d;
    ref += (double)b[i] * (double)b[i];
    if (fabs(d) > mx || isnan(d)) mx = isnan(d) ? INFINITY : fabs(d);
  }
  *out_rel_l2 = ref > 0 ? sqrt(diff / ref) : sqrt(diff);
  if (isnan(*out_rel_l2)) *out_rel_l2 = INFINITY;
  *out_max_abs = mx;
}
