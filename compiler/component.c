/* Compiling one component: description, configuration, weight binding, per-resolution graphs and memory plans. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler/compile.h"
#include "compiler/models_dir.h"
#include "qd/log.h"

const char* qdc_models_dir(void) {
  const char* env = getenv("QD_MODELS_DIR");
  if (env && *env) return env;
  struct stat sb;
  if (stat(QDC_INSTALLED_MODELS_DIR, &sb) == 0 && S_ISDIR(sb.st_mode)) return QDC_INSTALLED_MODELS_DIR;
  return QDC_SOURCE_MODELS_DIR;
}

void qdc_component_destroy(qdc_component_t* c) {
  if (!c) return;
  qd_weight_binding_destroy(c->binding);
  if (c->weights && c->result_count)
    qd_free(c->allocator, c->weights, (size_t)c->results[0].graph->weight_count * sizeof *c->weights);
  for (int32_t i = 0; i < c->result_count; i++) {
    qd_memory_plan_destroy(c->results[i].memory);
    qd_graph_destroy(c->results[i].graph);
  }
  qd_checkpoint_close(c->ckpt);
  qd_graph_desc_destroy(c->desc);
  qd_free(c->allocator, c->desc_text, c->desc_size + 1);
  qd_free(c->allocator, c, sizeof *c);
}

/* Instantiates one resolution and plans its memory. */
static qd_status_t qdc_instantiate_(qdc_component_t* c, const char* config, const qdc_resolution_t* r,
                                    qdc_resolution_result_t* out) {
  memset(out, 0, sizeof *out);
  out->res = *r;
  QD_TRY(qd_graph_desc_resolution_bindings(c->desc, config, r->width, r->height, r->batch, out->bindings,
                                           QD_PLAN_MAX_BINDINGS, &out->binding_count));
  for (int32_t k = 0; k < c->spec.override_count; k++)
    for (int32_t b = 0; b < out->binding_count; b++)
      if (strcmp(out->bindings[b].name, c->spec.overrides[k].name) == 0) out->bindings[b].value = c->spec.overrides[k].value;
  QD_TRY(qd_graph_desc_instantiate(c->desc, config, out->bindings, out->binding_count, c->allocator, &out->graph));
  QD_TRY(qd_memory_plan_create_cuda(out->graph, c->allocator, &out->memory));
  out->digest = qd_graph_digest(out->graph);
  return QD_OK;
}

static void qdc_release_result_(qdc_resolution_result_t* r) {
  qd_memory_plan_destroy(r->memory);
  qd_graph_destroy(r->graph);
  memset(r, 0, sizeof *r);
}

/* Tries one configuration: instantiates the first resolution and binds the checkpoint to it. */
static qd_status_t qdc_try_config_(qdc_component_t* c, const qdc_compile_options_t* o, const char* config) {
  qd_status_t s = qdc_instantiate_(c, config, &o->resolutions[0], &c->results[0]);
  if (!s && !o->synthetic)
    s = qd_weight_binding_create(c->desc, config, c->results[0].graph, c->ckpt, c->spec.layout, c->allocator,
                                 &c->binding);
  if (s) qdc_release_result_(&c->results[0]);
  return s;
}

double qdc_component_weight_error(const qdc_component_t* c) {
  return c->weight_error_den > 0 ? sqrt(c->weight_error_num / c->weight_error_den) : 0.0;
}

int64_t qdc_component_binding(const qdc_component_t* c, const char* name) {
  for (int32_t b = 0; c->result_count && b < c->results[0].binding_count; b++)
    if (strcmp(c->results[0].bindings[b].name, name) == 0) return c->results[0].bindings[b].value;
  return -1;
}

qd_status_t qdc_component_create(const qdc_compile_options_t* o, qd_allocator_t a, qdc_component_t** out) {
  qdc_component_spec_t spec = {o->component ? o->component : "transformer", o->input, o->graph, o->config,
                               o->layout, o->quantize_component, {{0}}, 0};
  return qdc_component_create_spec(o, &spec, a, out);
}

qd_status_t qdc_component_create_spec(const qdc_compile_options_t* o, const qdc_component_spec_t* spec,
                                      qd_allocator_t a, qdc_component_t** out) {
  *out = NULL;
  qdc_component_t* c;
  QD_TRY(qd_calloc(a, 1, sizeof *c, (void**)&c));
  c->allocator = a;
  c->spec = *spec;
  c->name = spec->name;
  char default_graph[1024];
  const char* graph = spec->graph;
  if (!graph) {
    snprintf(default_graph, sizeof default_graph, "%s/flux-transformer.json", qdc_models_dir());
    graph = default_graph;
  }
  /* Read once: the plan keeps the description's text verbatim (PROG), and the compiler works from its parse. */
  qd_status_t s = qd_graph_desc_read_file(graph, a, &c->desc_text, &c->desc_size);
  if (!s) s = qd_graph_desc_parse(c->desc_text, c->desc_size, graph, a, &c->desc);
  if (!s && !o->synthetic) s = qd_checkpoint_open(spec->input, a, &c->ckpt);
  if (s) {
    s = qd_status_annotate(s, "component '%s'", spec->name);
    goto fail;
  }
  c->seed = o->seed;

  if (spec->config || o->synthetic) {
    const char* want = spec->config ? spec->config : qd_graph_desc_default_config(c->desc);
    s = qdc_try_config_(c, o, want);
    c->config = want;
  } else {
    /* The first configuration whose weights the checkpoint holds, in the description's order (dev before
     * schnell before the tiny test sizes); the error of the default configuration if none fits. */
    qd_status_t first = QD_OK;
    for (int32_t i = 0; i < qd_graph_desc_config_count(c->desc); i++) {
      const char* name = qd_graph_desc_config_name(c->desc, i);
      qd_status_t attempt = qdc_try_config_(c, o, name);
      if (!attempt) {
        c->config = name;
        QD_LOG_INFO("%s: configuration '%s' fits %s", graph, name, spec->input);
        break;
      }
      if (strcmp(name, qd_graph_desc_default_config(c->desc)) == 0 && !first)
        first = attempt;
      else
        qd_status_free(attempt);
    }
    if (!c->config) {
      s = first ? first : QD_ERR(BAD_INPUT, WEIGHT_MISSING, "%s: no configuration of %s fits it", spec->input, graph);
      s = qd_status_annotate(s, "no configuration of '%s' fits '%s' (showing why the default, '%s', does not; "
                             "pass --config to choose one)", qd_graph_desc_name(c->desc), spec->input,
                             qd_graph_desc_default_config(c->desc));
    } else if (first) {
      qd_status_free(first);
    }
  }
  if (s) goto fail;
  c->layout = o->synthetic ? "synthetic" : c->binding->layout;
  /* Find the config name inside the description so it outlives the options. */
  for (int32_t i = 0; i < qd_graph_desc_config_count(c->desc); i++)
    if (strcmp(qd_graph_desc_config_name(c->desc, i), c->config) == 0) c->config = qd_graph_desc_config_name(c->desc, i);
  c->result_count = 1;
  for (int32_t r = 1; r < o->resolution_count && !s; r++) {
    s = qdc_instantiate_(c, c->config, &o->resolutions[r], &c->results[r]);
    if (!s) c->result_count++;
    /* Weights do not depend on the resolution; make sure the graph agrees. */
    const qd_graph_t *g0 = c->results[0].graph, *gr = c->results[r].graph;
    if (!s && g0->weight_count != gr->weight_count)
      s = QD_ERR(BAD_INPUT, INTERNAL, "%s: resolution %lldx%lld changes the graph's weights", graph,
                 (long long)o->resolutions[r].width, (long long)o->resolutions[r].height);
    for (int32_t w = 0; !s && w < g0->weight_count; w++)
      if (strcmp(g0->weights[w].name, gr->weights[w].name) != 0 || !qd_shape_equal(&g0->weights[w].shape, &gr->weights[w].shape))
        s = QD_ERR(BAD_INPUT, INTERNAL, "%s: resolution %lldx%lld changes weight '%s'", graph,
                   (long long)o->resolutions[r].width, (long long)o->resolutions[r].height, g0->weights[w].name);
  }
  if (s) goto fail;
  *out = c;
  return QD_OK;
fail:
  qdc_component_destroy(c);
  return s;
}
