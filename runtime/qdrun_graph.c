/* qdrun --graph: loads a graph description, weights and inputs, runs the CPU executor, writes the outputs and
 * optionally compares them with reference outputs. Prints a short report (or one JSON document). */
#include "runtime/qdrun_graph.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/progress.h"
#include "qd/safetensors_writer.h"
#include "runtime/graph_runner.h"

static int qdrun_graph_fail_(qd_status_t s) {
  qd_status_fprint(stderr, "qdrun", s, false);
  qd_status_free(s);
  return 1;
}

static qd_status_t qdrun_write_outputs_(const char* path, const qd_graph_t* g, const qd_tensor_t* out) {
  qd_safetensors_writer_t* w;
  QD_TRY(qd_safetensors_writer_create(path, qd_allocator_system(), &w));
  qd_status_t s = qd_safetensors_writer_set_metadata(w, "producer", "qdrun --graph (qd CPU reference executor)");
  for (int32_t i = 0; i < g->output_count && !s; i++) {
    uint64_t shape[QD_GRAPH_MAX_RANK];
    for (int32_t d = 0; d < out[i].shape.rank; d++) shape[d] = (uint64_t)out[i].shape.dims[d];
    s = qd_safetensors_writer_add(w, g->outputs[i].name, out[i].dtype, out[i].shape.rank, shape, out[i].data);
  }
  if (!s) s = qd_safetensors_writer_finish(w);
  qd_safetensors_writer_destroy(w);
  return s;
}

int qdrun_graph(const qdrun_graph_options_t* o) {
  if ((!o->plan && !o->weights) || !o->inputs) {
    fprintf(stderr, "qdrun: error: %s (run 'qdrun --help')\n",
            o->plan ? "running a plan's component needs --inputs" : "--graph needs --weights and --inputs");
    return 2;
  }
  if (o->device && strcmp(o->device, "cpu") != 0) {
    fprintf(stderr, "qdrun: error: --inputs runs on the CPU reference executor only (got --device %s)\n", o->device);
    return 2;
  }
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in = NULL;
  qd_safetensors_t* ref = NULL;
  qd_graph_runner_t* r = NULL;
  qd_tensor_t* out = NULL;
  int rc = 1;
  qd_status_t s = qd_safetensors_open(o->inputs, a, &in);
  qd_graph_runner_options_t ro = {.graph_path = o->graph, .config = o->config, .weights_path = o->weights, .layout = o->layout, .threads = o->threads};
  if (!s && o->plan)
    s = qd_graph_runner_create_from_plan(o->plan, o->component, o->threads, in, a, &r);
  else if (!s)
    s = qd_graph_runner_create(&ro, in, a, &r);
  const qd_graph_t* g = r ? qd_graph_runner_graph(r) : NULL;
  if (!s) s = qd_calloc(a, (size_t)g->output_count, sizeof *out, (void**)&out);
  double t0 = qd_now_seconds(), elapsed = 0;
  if (!s) s = qd_graph_runner_run(r, in, out);
  elapsed = qd_now_seconds() - t0;
  if (!s && o->outputs) s = qdrun_write_outputs_(o->outputs, g, out);
  if (!s && o->compare) s = qd_safetensors_open(o->compare, a, &ref);
  if (s) {
    rc = qdrun_graph_fail_(s);
    goto done;
  }
  rc = 0;
  cJSON* doc = o->json ? cJSON_CreateObject() : NULL;
  if (doc) {
    cJSON_AddStringToObject(doc, "graph", g->name);
    cJSON_AddStringToObject(doc, "config", g->config);
    cJSON_AddStringToObject(doc, "layout", qd_graph_runner_layout(r));
    cJSON_AddNumberToObject(doc, "nodes", g->node_count);
    cJSON_AddNumberToObject(doc, "seconds", elapsed);
  } else {
    if (o->plan) printf("plan       %s\n", o->plan);
    printf("graph      %s, config %s, weights layout %s\n", g->name, g->config, qd_graph_runner_layout(r));
    printf("ran        %d nodes on the CPU in %.3f s\n", g->node_count, elapsed);
  }
  cJSON* outs = doc ? cJSON_AddArrayToObject(doc, "outputs") : NULL;
  for (int32_t i = 0; i < g->output_count; i++) {
    char shape[128];
    qd_shape_format(&out[i].shape, shape, sizeof shape);
    cJSON* item = outs ? cJSON_CreateObject() : NULL;
    if (item) {
      cJSON_AddItemToArray(outs, item);
      cJSON_AddStringToObject(item, "name", g->outputs[i].name);
      cJSON_AddStringToObject(item, "shape", shape);
    }
    const qd_tensor_info_t* t = ref ? qd_safetensors_find(ref, g->outputs[i].name) : NULL;
    if (ref && (!t || t->numel != (uint64_t)qd_shape_numel(&out[i].shape) || out[i].dtype != QD_DTYPE_F32)) {
      fprintf(stderr, "qdrun: error: %s: no reference '%s' of %lld elements to compare with\n", o->compare,
              g->outputs[i].name, (long long)qd_shape_numel(&out[i].shape));
      rc = 1;
      continue;
    }
    double rel = 0, mx = 0;
    if (t) {
      float* expect = NULL;
      s = qd_malloc(a, (size_t)t->numel * sizeof(float), (void**)&expect);
      if (!s) s = qd_tensor_read_f32(t, expect);
      if (s) {
        qd_free(a, expect, (size_t)t->numel * sizeof(float));
        rc = qdrun_graph_fail_(s);
        continue;
      }
      qd_compare_f32(out[i].data, expect, (size_t)t->numel, &rel, &mx);
      qd_free(a, expect, (size_t)t->numel * sizeof(float));
    }
    if (item && t) {
      cJSON_AddNumberToObject(item, "rel_l2", rel);
      cJSON_AddNumberToObject(item, "max_abs", mx);
    } else if (!doc) {
      if (t)
        printf("output     %-12s %-16s rel L2 %.3e, max |diff| %.3e vs %s\n", g->outputs[i].name, shape, rel, mx,
               o->compare);
      else
        printf("output     %-12s %s\n", g->outputs[i].name, shape);
    }
  }
  if (doc) {
    char* text = cJSON_Print(doc);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(doc);
  } else if (o->outputs) {
    printf("wrote      %s\n", o->outputs);
  }
done:
  for (int32_t i = 0; out && g && i < g->output_count; i++) qd_tensor_free(a, &out[i]);
  if (out) qd_free(a, out, (size_t)g->output_count * sizeof *out);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
  qd_safetensors_close(ref);
  return rc;
}
