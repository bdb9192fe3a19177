/* qdc inspect GRAPH.json: what a graph description instantiates to for one configuration and resolution:
 * parameters, nodes by op, inputs and outputs, and the FLOPs of one forward pass. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/inspect.h"
#include "ir/graph_desc.h"

enum { QDC_MAX_BINDINGS = 16 };

/* 11901408320 -> "11,901,408,320". */
static const char* qdc_thousands_(uint64_t v, char* buf, size_t size) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < size; i++) {
    if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = '\0';
  return buf;
}

static int qdc_graph_fail_(qd_status_t s) {
  qd_status_fprint(stderr, "qdc", s, false);
  qd_status_free(s);
  return 1;
}

static void qdc_print_value_(const qd_graph_t* g, int32_t v, const char* label) {
  char shape[128];
  printf("  %-24s %-4s %s%s\n", g->values[v].name, qd_dtype_name(g->values[v].dtype),
         qd_shape_format(&g->values[v].shape, shape, sizeof shape), label);
}

static int qdc_graph_text_(const qd_graph_desc_t* d, const qd_graph_t* g, const qdc_inspect_options_t* opt,
                           const qd_size_binding_t* b, int32_t nb, int64_t w, int64_t h, int64_t batch) {
  qd_graph_stats_t st;
  qd_graph_stats(g, &st);
  char num[64], num2[64];
  printf("graph        %s (%s)\n", g->name, qd_graph_desc_source(d));
  printf("config       %s   (configs:", g->config);
  for (int32_t i = 0; i < qd_graph_desc_config_count(d); i++) printf(" %s", qd_graph_desc_config_name(d, i));
  printf(")\n");
  printf("resolution   %lldx%lld, batch %lld:", (long long)w, (long long)h, (long long)batch);
  for (int32_t i = 0; i < nb; i++) printf(" %s=%lld", b[i].name, (long long)b[i].value);
  printf("\n");
  printf("parameters   %s in %d weights (%s in linear weight matrices)\n", qdc_thousands_(st.parameters, num, sizeof num),
         g->weight_count, qdc_thousands_(st.linear_parameters, num2, sizeof num2));
  printf("nodes        %d:", g->node_count);
  for (int op = 1; op < QD_OP_COUNT_; op++)
    if (st.node_count_by_op[op]) printf(" %s %d", qd_op_name((qd_op_t)op), st.node_count_by_op[op]);
  printf("\n");
  double total = st.linear_flops + st.attention_flops + st.other_flops;
  printf("FLOPs        %.2f TFLOP per forward pass: linear %.2f, attention %.2f", total / 1e12,
         st.linear_flops / 1e12, st.attention_flops / 1e12);
  if (st.other_flops > 0) printf(", other %.2f (convolutions)", st.other_flops / 1e12);
  printf("\n");
  if (!opt->summary) {
    printf("sizes       ");
    for (int32_t i = 0; i < g->size_count; i++) printf(" %s=%lld", g->sizes[i].name, (long long)g->sizes[i].value);
    printf("\ninputs\n");
    for (int32_t i = 0; i < g->input_count; i++) qdc_print_value_(g, g->inputs[i], "");
    printf("outputs\n");
    for (int32_t i = 0; i < g->output_count; i++) {
      char label[96];
      snprintf(label, sizeof label, "  (as '%s')", g->outputs[i].name);
      qdc_print_value_(g, g->outputs[i].value, strcmp(g->outputs[i].name, g->values[g->outputs[i].value].name) ? label : "");
    }
  }
  return 0;
}

static int qdc_graph_json_(const qd_graph_desc_t* d, const qd_graph_t* g, const qd_size_binding_t* b, int32_t nb,
                           int64_t w, int64_t h, int64_t batch) {
  qd_graph_stats_t st;
  qd_graph_stats(g, &st);
  cJSON* root = cJSON_CreateObject();
  bool ok = root != NULL;
  ok = ok && cJSON_AddStringToObject(root, "graph", g->name);
  ok = ok && cJSON_AddStringToObject(root, "source", qd_graph_desc_source(d));
  ok = ok && cJSON_AddStringToObject(root, "config", g->config);
  cJSON* configs = ok ? cJSON_AddArrayToObject(root, "configs") : NULL;
  for (int32_t i = 0; ok && i < qd_graph_desc_config_count(d); i++)
    ok = cJSON_AddItemToArray(configs, cJSON_CreateString(qd_graph_desc_config_name(d, i)));
  ok = ok && cJSON_AddNumberToObject(root, "width", (double)w) && cJSON_AddNumberToObject(root, "height", (double)h);
  ok = ok && cJSON_AddNumberToObject(root, "batch", (double)batch);
  cJSON* bound = ok ? cJSON_AddObjectToObject(root, "bindings") : NULL;
  for (int32_t i = 0; ok && i < nb; i++) ok = cJSON_AddNumberToObject(bound, b[i].name, (double)b[i].value);
  ok = ok && cJSON_AddNumberToObject(root, "parameters", (double)st.parameters);
  ok = ok && cJSON_AddNumberToObject(root, "linear_parameters", (double)st.linear_parameters);
  ok = ok && cJSON_AddNumberToObject(root, "weights", g->weight_count);
  ok = ok && cJSON_AddNumberToObject(root, "nodes", g->node_count);
  cJSON* by_op = ok ? cJSON_AddObjectToObject(root, "nodes_by_op") : NULL;
  for (int op = 1; ok && op < QD_OP_COUNT_; op++)
    if (st.node_count_by_op[op]) ok = cJSON_AddNumberToObject(by_op, qd_op_name((qd_op_t)op), st.node_count_by_op[op]);
  cJSON* flops = ok ? cJSON_AddObjectToObject(root, "flops") : NULL;
  ok = ok && cJSON_AddNumberToObject(flops, "linear", st.linear_flops);
  ok = ok && cJSON_AddNumberToObject(flops, "attention", st.attention_flops);
  ok = ok && cJSON_AddNumberToObject(flops, "total", st.linear_flops + st.attention_flops + st.other_flops);
  cJSON* sizes = ok ? cJSON_AddObjectToObject(root, "sizes") : NULL;
  for (int32_t i = 0; ok && i < g->size_count; i++)
    ok = cJSON_AddNumberToObject(sizes, g->sizes[i].name, (double)g->sizes[i].value);
  char* text = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!text) return qdc_graph_fail_(QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory building JSON"));
  printf("%s\n", text);
  free(text);
  return 0;
}

int qdc_inspect_graph(const qdc_inspect_options_t* opt) {
  qd_allocator_t a = qd_allocator_system();
  qd_graph_desc_t* d;
  qd_status_t s = qd_graph_desc_load_file(opt->path, a, &d);
  if (s) return qdc_graph_fail_(s);
  int64_t w = opt->width ? opt->width : 1024, h = opt->height ? opt->height : 1024, batch = opt->batch ? opt->batch : 1;
  qd_size_binding_t b[QDC_MAX_BINDINGS];
  int32_t nb = 0;
  qd_graph_t* g = NULL;
  s = qd_graph_desc_resolution_bindings(d, opt->config, w, h, batch, b, QDC_MAX_BINDINGS, &nb);
  if (!s) s = qd_graph_desc_instantiate(d, opt->config, b, nb, a, &g);
  int rc;
  if (s)
    rc = qdc_graph_fail_(s);
  else
    rc = opt->json ? qdc_graph_json_(d, g, b, nb, w, h, batch) : qdc_graph_text_(d, g, opt, b, nb, w, h, batch);
  qd_graph_destroy(g);
  qd_graph_desc_destroy(d);
  return rc;
}
