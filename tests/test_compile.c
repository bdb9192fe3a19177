/* qdc compile and plan loading: the tiny FLUX transformer compiled to NF4 and bf16 plans, run on the CPU from the
 * plan, compared with the graph run on dequantized weights (identical) and with the fp32 PyTorch golden (within
 * the documented tolerance); storage per parameter; failed and cancelled compiles leave no plan; plan contents
 * that disagree with themselves are rejected rule by rule. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "compiler/compile.h"
#include "compiler/pipeline_sources.h"
#include "compiler/plan_writer.h"
#include "ir/nf4.h"
#include "qd/progress.h"
#include "qd_test.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/graph_runner.h"
#include "runtime/plan_internal.h"
#include "vae_ldm_names.h"

static char weights_path[512], io_path[512], graph_path[512];

static void setup(void) {
  snprintf(weights_path, sizeof weights_path, "%s/golden/flux_guided_weights.safetensors", qd_test_data_dir());
  snprintf(io_path, sizeof io_path, "%s/golden/flux_guided_io.safetensors", qd_test_data_dir());
  snprintf(graph_path, sizeof graph_path, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  qd_progress_set_default_sink(&quiet);
}

static void default_options(qdc_compile_options_t* o, const char* out, qdc_quant_t quant) {
  memset(o, 0, sizeof *o);
  o->input = weights_path;
  o->output = out;
  o->graph = graph_path;
  o->quant = quant;
  o->quantize_component = true;
  o->blocksize = 64;
  o->resolution_count = 2;
  o->resolutions[0] = (qdc_resolution_t){96, 64, 2}; /* the golden inputs: 4 x 6 latent patches, batch 2 */
  o->resolutions[1] = (qdc_resolution_t){32, 32, 1};
  o->threads = 2;
}

static qd_status_t compile_plan(const qdc_compile_options_t* o, qdc_component_t** out_c) {
  qd_allocator_t a = qd_allocator_system();
  qd_threadpool_t* pool = NULL;
  qdc_component_t* c = NULL;
  qd_status_t s = qd_threadpool_create(o->threads, a, &pool);
  if (!s) s = qdc_component_create(o, a, &c);
  if (!s) s = qdc_choose_formats(o, c);
  if (!s) s = qdc_emit_plan(o, c, pool);
  qd_threadpool_destroy(pool);
  if (out_c && !s)
    *out_c = c;
  else
    qdc_component_destroy(c);
  return s;
}

/* Runs the golden inputs through a runner; returns the output (caller frees). */
static float* run_runner(qd_graph_runner_t* r, const qd_safetensors_t* in, size_t* out_n) {
  qd_tensor_t out;
  QD_ASSERT_OK(qd_graph_runner_run(r, in, &out));
  *out_n = (size_t)qd_shape_numel(&out.shape);
  float* y = malloc(*out_n * sizeof(float));
  memcpy(y, out.data, *out_n * sizeof(float));
  qd_tensor_free(qd_allocator_system(), &out);
  return y;
}

static double golden_error(const float* y, size_t n, const qd_safetensors_t* in, double* max_abs) {
  const qd_tensor_info_t* ref = qd_safetensors_find(in, "output");
  ck_assert_uint_eq(ref->numel, n);
  float* expect = malloc(n * sizeof(float));
  QD_ASSERT_OK(qd_tensor_read_f32(ref, expect));
  double rel;
  qd_compare_f32(y, expect, n, &rel, max_abs);
  free(expect);
  return rel;
}

START_TEST(nf4_plan_runs_like_dequantized_graph) {
  char plan[512];
  snprintf(plan, sizeof plan, "%s/tiny_nf4.qplan", qd_test_tmp_dir());
  qdc_compile_options_t o;
  default_options(&o, plan, QDC_QUANT_NF4);
  qdc_component_t* c;
  QD_ASSERT_OK(compile_plan(&o, &c));
  ck_assert_str_eq(c->config, "tiny-guided");
  /* Every linear matrix is NF4 at exactly 0.5625 bytes per parameter (the tiny sizes are whole blocks). */
  uint64_t q_bytes = 0, q_params = 0;
  for (int32_t i = 0; i < c->results[0].graph->weight_count; i++) {
    const qd_plan_weight_t* w = &c->weights[i];
    bool linear = (c->results[0].graph->weights[i].flags & QD_WEIGHT_LINEAR) != 0;
    ck_assert_int_eq(w->format, linear ? QD_WEIGHT_FORMAT_NF4 : QD_WEIGHT_FORMAT_BF16);
    if (!linear) continue;
    q_bytes += w->data.bytes + w->absmax.bytes;
    q_params += (uint64_t)qd_shape_numel(&w->shape);
  }
  ck_assert_uint_eq(q_params, c->params_quantized);
  ck_assert(fabs((double)q_bytes / (double)q_params - 0.5625) < 1e-9);

  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io_path, a, &in));
  qd_graph_runner_t* from_plan;
  QD_ASSERT_OK(qd_graph_runner_create_from_plan(plan, NULL, 2, in, a, &from_plan));
  size_t n;
  float* y_plan = run_runner(from_plan, in, &n);

  /* The same graph with the checkpoint's fp32 weights (plan_weights_equal_direct_quantization checks that the
   * plan's weights are exactly the checkpoint's put through NF4, so the plan run is the dequantized-graph run). */
  qd_graph_runner_options_t ro = {.graph_path = graph_path, .config = "tiny-guided", .weights_path = weights_path, .threads = 2};
  qd_graph_runner_t* direct;
  QD_ASSERT_OK(qd_graph_runner_create(&ro, in, a, &direct));
  size_t n2;
  float* y_fp32 = run_runner(direct, in, &n2);
  ck_assert_uint_eq(n, n2);

  double max_abs;
  double rel_golden = golden_error(y_plan, n, in, &max_abs);
  double rel_fp32, max_fp32;
  qd_compare_f32(y_plan, y_fp32, n, &rel_fp32, &max_fp32);
  printf("  NF4 plan vs fp32 golden: rel L2 %.4f, max |diff| %.4f (weight error %.4f)\n", rel_golden, max_abs,
         sqrt(c->weight_error_num / c->weight_error_den));
  /* Documented in docs/performance.md: tiny random weights quantize with ~9% relative weight error; the output
   * moves about as much. The bound catches a broken quantizer or dequantizer (errors of order 1). */
  ck_assert_msg(rel_golden < 0.25, "NF4 plan output is %.3f from the fp32 golden", rel_golden);
  ck_assert(rel_golden > 1e-4); /* and it is really quantized */
  free(y_plan);
  free(y_fp32);
  qd_graph_runner_destroy(direct);
  qd_graph_runner_destroy(from_plan);
  qd_safetensors_close(in);
  qdc_component_destroy(c);
}
END_TEST

/* Dequantizing the plan's weights gives exactly what NF4 quantization of the checkpoint gives. */
START_TEST(plan_weights_equal_direct_quantization) {
  char plan[512];
  snprintf(plan, sizeof plan, "%s/tiny_nf4_dq.qplan", qd_test_tmp_dir());
  qdc_compile_options_t o;
  default_options(&o, plan, QDC_QUANT_NF4);
  o.double_quant = true;
  o.blocksize = 128;
  QD_ASSERT_OK(compile_plan(&o, NULL));
  qd_allocator_t a = qd_allocator_system();
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan, a, QD_PLAN_OPEN_VERIFY_ALL, &p));
  ck_assert_int_eq(qd_plan_component_count(p), 1);
  ck_assert_str_eq(qd_plan_component_name(p, 0), "transformer");
  ck_assert_int_eq(qd_plan_resolution_count(p, 0), 2);
  float** w;
  QD_ASSERT_OK(qd_plan_weights_f32(p, 0, a, &w));
  const qd_plan_component_t* c = qd_plan_component(p, 0);
  qd_checkpoint_t* ck;
  QD_ASSERT_OK(qd_checkpoint_open(weights_path, a, &ck));
  int checked = 0;
  for (int32_t i = 0; i < c->weight_count; i++) {
    const qd_plan_weight_t* e = &c->weights[i];
    const qd_tensor_info_t* t = qd_checkpoint_find(ck, e->name);
    uint64_t n = t->numel;
    float* x = malloc(n * 4);
    float* y = malloc(n * 4);
    QD_ASSERT_OK(qd_tensor_read_f32(t, x));
    if (e->format == QD_WEIGHT_FORMAT_NF4) {
      qd_nf4_layout_t l;
      QD_ASSERT_OK(qd_nf4_layout(n, 128, true, &l));
      uint8_t* packed = malloc(l.packed_bytes);
      uint8_t* codes = malloc(l.blocks);
      float* nested = malloc(l.nested_blocks * 4);
      float* scratch = malloc(l.blocks * 4);
      qd_nf4_tensor_t q = {packed, NULL, codes, nested, 0};
      qd_nf4_quantize(&l, x, &q, scratch);
      qd_nf4_dequantize(&l, &q, y);
      free(packed);
      free(codes);
      free(nested);
      free(scratch);
      checked++;
    } else {
      for (uint64_t k = 0; k < n; k++) y[k] = qd_bf16_to_f32(qd_f32_to_bf16(x[k]));
    }
    ck_assert_msg(memcmp(y, w[i], n * 4) == 0, "weight '%s' differs from direct quantization", e->name);
    free(x);
    free(y);
  }
  ck_assert_int_gt(checked, 40);
  qd_checkpoint_close(ck);
  qd_plan_weights_f32_free(p, 0, a, w);
  qd_plan_close(p);
}
END_TEST

/* Compiles the tiny transformer with `quant` and runs the golden inputs from the plan; returns the relative L2
 * error against the fp32 PyTorch golden. */
static double plan_golden_error(qdc_quant_t quant, const char* name) {
  char plan[512];
  snprintf(plan, sizeof plan, "%s/%s", qd_test_tmp_dir(), name);
  qdc_compile_options_t o;
  default_options(&o, plan, quant);
  QD_ASSERT_OK(compile_plan(&o, NULL));
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io_path, a, &in));
  qd_graph_runner_t* r;
  QD_ASSERT_OK(qd_graph_runner_create_from_plan(plan, "transformer", 2, in, a, &r));
  size_t n;
  float* y = run_runner(r, in, &n);
  double max_abs, rel = golden_error(y, n, in, &max_abs);
  printf("  %s vs fp32 golden: rel L2 %.2e, max |diff| %.2e\n", name, rel, max_abs);
  free(y);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
  return rel;
}

START_TEST(bf16_plan_matches_golden) {
  double rel = plan_golden_error(QDC_QUANT_NONE, "tiny_bf16.qplan");
  ck_assert_msg(rel < 1e-2, "bf16 weights moved the output by %.3e", rel);
}
END_TEST

/* An fp32 plan runs like the fp32 PyTorch golden up to summation order. */
START_TEST(f32_plan_matches_golden) {
  double rel = plan_golden_error(QDC_QUANT_F32, "tiny_f32.qplan");
  ck_assert_msg(rel < 1e-5, "fp32 plan vs fp32 golden: rel L2 %.3e", rel);
}
END_TEST

/* qdc inspect shows what a compiled plan holds: model, quantization, resolutions, and per component and resolution
 * the program and its activation arena, in text and in JSON (where the arena agrees with the memory plan). */
START_TEST(inspect_shows_plan_contents) {
  char plan[512], out[600], cmd[2048];
  snprintf(plan, sizeof plan, "%s/tiny_inspect.qplan", qd_test_tmp_dir());
  snprintf(out, sizeof out, "%s/tiny_inspect.out", qd_test_tmp_dir());
  qdc_compile_options_t o;
  default_options(&o, plan, QDC_QUANT_NF4);
  qdc_component_t* c;
  QD_ASSERT_OK(compile_plan(&o, &c));
  snprintf(cmd, sizeof cmd, "'%s' inspect '%s' >'%s'", getenv("QD_QDC"), plan, out);
  ck_assert_int_eq(system(cmd), 0);
  char* text = qd_test_read_file(out);
  const char* expect[] = {"model        flux-transformer/tiny-guided", "quantization NF4, blocksize 64",
                          "resolutions  96x64 32x32", "transformer      flux-transformer/tiny-guided",
                          "as NF4 (relative weight error", "batch 2:", "img_tokens 24"};
  for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
    ck_assert_msg(strstr(text, expect[i]) != NULL, "'%s' not in:\n%s", expect[i], text);
  free(text);
  snprintf(cmd, sizeof cmd, "'%s' inspect --json '%s' >'%s'", getenv("QD_QDC"), plan, out);
  ck_assert_int_eq(system(cmd), 0);
  text = qd_test_read_file(out);
  cJSON* doc = cJSON_Parse(text);
  ck_assert_ptr_nonnull(doc);
  const cJSON* contents = cJSON_GetObjectItemCaseSensitive(doc, "contents");
  const cJSON* res = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(contents, "programs"), "transformer"),
      "resolutions");
  ck_assert_int_eq(cJSON_GetArraySize(res), 2);
  for (int r = 0; r < 2; r++) {
    const cJSON* e = cJSON_GetArrayItem(res, r);
    ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(e, "arena_bytes")->valuedouble,
                        (double)c->results[r].memory->arena_bytes);
    ck_assert_ptr_null(cJSON_GetObjectItemCaseSensitive(e, "offsets")); /* the bulky parts are left out */
  }
  const cJSON* comp = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(contents, "components"), 0);
  ck_assert_double_eq(cJSON_GetObjectItemCaseSensitive(comp, "parameters")->valuedouble, (double)c->params_total);
  cJSON_Delete(doc);
  free(text);
  qdc_component_destroy(c);
}
END_TEST

/* No temporary or final file may survive a compile that fails or is cancelled. */
static int count_entries_with(const char* dir, const char* fragment) {
  DIR* d = opendir(dir);
  int n = 0;
  for (struct dirent* e; d && (e = readdir(d));)
    if (strstr(e->d_name, fragment)) n++;
  if (d) closedir(d);
  return n;
}

static bool cancel_after_some(void* user, const char* label, uint64_t done, uint64_t total, double elapsed) {
  (void)user;
  (void)label;
  (void)elapsed;
  return done < total / 3;
}

START_TEST(failed_or_cancelled_compile_leaves_no_plan) {
  char dir[512], plan[600];
  snprintf(dir, sizeof dir, "%s/compile_fail", qd_test_tmp_dir());
  char cmd[700];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  snprintf(plan, sizeof plan, "%s/out.qplan", dir);
  /* Cancelled half-way through the weights. */
  qd_progress_sink_t cancel = {QD_PROGRESS_QUIET, NULL, cancel_after_some, NULL, 0};
  qd_progress_set_default_sink(&cancel);
  qdc_compile_options_t o;
  default_options(&o, plan, QDC_QUANT_NF4);
  QD_ASSERT_DETAIL(compile_plan(&o, NULL), QD_E_CANCELLED);
  setup();
  ck_assert_int_eq(access(plan, F_OK), -1);
  ck_assert_int_eq(count_entries_with(dir, "out.qplan"), 0);
  /* A configuration the checkpoint does not fit fails before any file is created. */
  o.config = "dev";
  QD_ASSERT_DETAIL(compile_plan(&o, NULL), QD_E_WEIGHT_SHAPE);
  ck_assert_int_eq(count_entries_with(dir, "out"), 0);
}
END_TEST

START_TEST(unknown_resolution_is_named) {
  char plan[512];
  snprintf(plan, sizeof plan, "%s/tiny_res.qplan", qd_test_tmp_dir());
  qdc_compile_options_t o;
  default_options(&o, plan, QDC_QUANT_NF4);
  o.resolution_count = 1;
  o.resolutions[0] = (qdc_resolution_t){32, 32, 1};
  QD_ASSERT_OK(compile_plan(&o, NULL));
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io_path, qd_allocator_system(), &in));
  qd_graph_runner_t* r = NULL;
  QD_ASSERT_DETAIL(qd_graph_runner_create_from_plan(plan, NULL, 1, in, qd_allocator_system(), &r),
                   QD_E_PLAN_NO_RESOLUTION);
  QD_ASSERT_DETAIL(qd_graph_runner_create_from_plan(plan, "vae", 1, in, qd_allocator_system(), &r),
                   QD_E_PLAN_NO_COMPONENT);
  qd_safetensors_close(in);
}
END_TEST

/* Plans whose sections are individually valid but disagree: each content rule with its own detail. Sections are
 * copied from a good plan with one JSON field changed. */
typedef void (*mutate_fn)(cJSON* meta, cJSON* prog, cJSON* widx);

static void write_mutated(const char* good, const char* out, mutate_fn fn) {
  qd_allocator_t a = qd_allocator_system();
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(good, a, 0, &pf));
  const qd_plan_section_t* sec[4] = {qd_plan_file_find(pf, QD_PLAN_KIND_WGHT, "transformer"),
                                     qd_plan_file_find(pf, QD_PLAN_KIND_WIDX, "transformer"),
                                     qd_plan_file_find(pf, QD_PLAN_KIND_PROG, "transformer"),
                                     qd_plan_file_find(pf, QD_PLAN_KIND_META, "")};
  cJSON* docs[4] = {NULL};
  for (int i = 1; i < 4; i++) docs[i] = cJSON_ParseWithLength(sec[i]->data, (size_t)sec[i]->size);
  fn(docs[3], docs[2], docs[1]);
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(out, a, &w));
  for (int i = 0; i < 4; i++) {
    QD_ASSERT_OK(qd_plan_writer_begin_section(w, sec[i]->kind, sec[i]->name, 0, 0));
    if (i == 0) {
      QD_ASSERT_OK(qd_plan_writer_write(w, sec[i]->data, (size_t)sec[i]->size));
    } else {
      char* text = cJSON_PrintUnformatted(docs[i]);
      QD_ASSERT_OK(qd_plan_writer_write(w, text, strlen(text)));
      free(text);
      cJSON_Delete(docs[i]);
    }
    QD_ASSERT_OK(qd_plan_writer_end_section(w));
  }
  QD_ASSERT_OK(qd_plan_writer_finish(w));
  qd_plan_writer_destroy(w);
  qd_plan_file_close(pf);
}

static cJSON* first_weight(cJSON* widx) { return cJSON_GetArrayItem(cJSON_GetObjectItem(widx, "weights"), 0); }
static cJSON* first_res(cJSON* prog) { return cJSON_GetArrayItem(cJSON_GetObjectItem(prog, "resolutions"), 0); }

static void m_meta_version(cJSON* m, cJSON* p, cJSON* w) { cJSON_ReplaceItemInObject(m, "qd_plan", cJSON_CreateNumber(7)); }
static void m_no_model(cJSON* m, cJSON* p, cJSON* w) { cJSON_DeleteItemFromObject(m, "model"); }
static void m_component_missing(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "components"), 0), "name",
                            cJSON_CreateString("vae"));
}
static void m_digest(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(first_res(p), "digest", cJSON_CreateString("0123456789abcdef"));
}
static void m_bindings(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(first_res(p), "bindings"), "img_tokens", cJSON_CreateNumber(25));
}
static void m_offsets(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_DeleteItemFromArray(cJSON_GetObjectItem(first_res(p), "offsets"), 0);
}
static void m_range(cJSON* m, cJSON* p, cJSON* w) {
  cJSON* d = cJSON_GetObjectItem(first_weight(w), "data");
  cJSON_ReplaceItemInArray(d, 0, cJSON_CreateNumber(1ull << 40));
}
static void m_overlap(cJSON* m, cJSON* p, cJSON* w) {
  cJSON* w1 = cJSON_GetArrayItem(cJSON_GetObjectItem(w, "weights"), 1);
  cJSON* d0 = cJSON_GetObjectItem(first_weight(w), "data");
  cJSON_ReplaceItemInArray(cJSON_GetObjectItem(w1, "data"), 0, cJSON_CreateNumber(cJSON_GetArrayItem(d0, 0)->valuedouble));
}
static void m_size(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(first_weight(w), "shape", cJSON_Parse("[32, 32]"));
}
static void m_format(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(first_weight(w), "format", cJSON_CreateString("int3"));
}
static void m_name(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(first_weight(w), "name", cJSON_CreateString("x_embedder.weights"));
}
static void m_description(cJSON* m, cJSON* p, cJSON* w) {
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(p, "description"), "qd_graph", cJSON_CreateNumber(9));
}

START_TEST(inconsistent_plan_contents_are_rejected) {
  char good[512], bad[512];
  snprintf(good, sizeof good, "%s/tiny_good.qplan", qd_test_tmp_dir());
  snprintf(bad, sizeof bad, "%s/tiny_bad.qplan", qd_test_tmp_dir());
  qdc_compile_options_t o;
  default_options(&o, good, QDC_QUANT_NF4);
  QD_ASSERT_OK(compile_plan(&o, NULL));
  struct {
    mutate_fn fn;
    qd_error_detail_t want;
  } cases[] = {
      {m_meta_version, QD_E_PLAN_CONTENT_VERSION}, {m_no_model, QD_E_PLAN_CONTENT_FIELD},
      {m_component_missing, QD_E_PLAN_COMPONENT_MISSING}, {m_digest, QD_E_PLAN_PROGRAM_DIGEST},
      {m_bindings, QD_E_PLAN_PROGRAM_DIGEST}, {m_offsets, QD_E_PLAN_CONTENT_FIELD},
      {m_range, QD_E_PLAN_WEIGHT_RANGE}, {m_overlap, QD_E_PLAN_WEIGHT_RANGE}, {m_size, QD_E_PLAN_WEIGHT_RANGE},
      {m_format, QD_E_PLAN_CONTENT_FIELD}, {m_name, QD_E_PLAN_WEIGHT_MISMATCH}, {m_description, QD_E_GRAPH_FORMAT},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_mutated(good, bad, cases[i].fn);
    qd_plan_t* p = NULL;
    qd_status_t s = qd_plan_open(bad, qd_allocator_system(), 0, &p);
    char msg[1024];
    qd_status_format(s, msg, sizeof msg);
    printf("  case %zu: %-24s %s\n", i, qd_error_detail_name(qd_status_detail(s)), msg);
    ck_assert_msg(qd_status_detail(s) == cases[i].want, "case %zu: expected %s, got %s: %s", i,
                  qd_error_detail_name(cases[i].want), qd_error_detail_name(qd_status_detail(s)), msg);
    qd_status_free(s);
  }
}
END_TEST

/* A pipeline directory or a transformer file with a missing piece names the piece and what supplies it. */
START_TEST(missing_pipeline_pieces_are_named) {
  char dir[512], cmd[1200];
  snprintf(dir, sizeof dir, "%s/pipe_missing", qd_test_tmp_dir());
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/transformer' '%s/text_encoder' '%s/text_encoder_2' && "
           "echo '{\"_class_name\": \"FluxPipeline\"}' > '%s/model_index.json'", dir, dir, dir, dir, dir);
  ck_assert_int_eq(system(cmd), 0);
  qdc_pipeline_request_t r = {.input = dir, .quantize = "transformer"};
  qdc_pipeline_sources_t ps;
  qd_status_t s = qdc_pipeline_sources_find(&r, qd_allocator_system(), &ps);
  ck_assert(qd_status_is(s, QD_E_NOT_FOUND));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "no vae/"));
  qd_status_free(s);
  r = (qdc_pipeline_request_t){.input = weights_path, .vae = "vae.safetensors", .t5 = "t5.safetensors"};
  s = qdc_pipeline_sources_find(&r, qd_allocator_system(), &ps);
  ck_assert(qd_status_is(s, QD_E_NOT_FOUND));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "--clip-l"));
  qd_status_free(s);
  r.clip_l = "clip.safetensors";
  s = qdc_pipeline_sources_find(&r, qd_allocator_system(), &ps);
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "--tokenizers"));
  qd_status_free(s);
  ck_assert(qdc_is_pipeline_dir(dir));
  ck_assert(!qdc_is_pipeline_dir(qd_test_data_dir()));
}
END_TEST

/* Adds every tensor of `src` to the writer with `prefix` in front of its name. */
static void add_prefixed(qd_safetensors_writer_t* w, const qd_safetensors_t* src, const char* prefix) {
  for (size_t i = 0; i < qd_safetensors_tensor_count(src); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(src, i);
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, t->name);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, t->dtype, t->rank, t->shape, t->data));
  }
}

/* A ComfyUI all-in-one checkpoint, from the tiny goldens: the transformer in BFL names under
 * model.diffusion_model., CLIP and T5 under text_encoders.*.transformer., the VAE in LDM names under vae. (with_vae
 * false leaves it out). */
static void write_all_in_one(const char* path, bool with_vae) {
  static const char* const files[4] = {"flux_guided_bfl", "clip_tiny_weights", "t5_tiny_weights", "vae_tiny_weights"};
  static const char* const prefixes[4] = {"model.diffusion_model.", "text_encoders.clip_l.transformer.",
                                          "text_encoders.t5xxl.transformer.", "vae."};
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* src[4] = {NULL, NULL, NULL, NULL};
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(path, a, &w));
  for (int i = 0; i < (with_vae ? 4 : 3); i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/golden/%s.safetensors", qd_test_data_dir(), files[i]);
    QD_ASSERT_OK(qd_safetensors_open(p, a, &src[i]));
    if (i == 3)
      add_ldm_vae(w, src[i], prefixes[i]);
    else
      add_prefixed(w, src[i], prefixes[i]);
  }
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  for (int i = 0; i < 4; i++) qd_safetensors_close(src[i]);
}

/* One ComfyUI file and --tokenizers compile the whole pipeline, each component through its graph's "comfyui"
 * layout; a file without the VAE inside says what is missing and what supplies it. */
START_TEST(comfyui_all_in_one_compiles) {
  char path[512], novae[512], plan[512], tok[512], cmd[3000];
  snprintf(path, sizeof path, "%s/flux_all_in_one.safetensors", qd_test_tmp_dir());
  snprintf(novae, sizeof novae, "%s/flux_all_in_one_no_vae.safetensors", qd_test_tmp_dir());
  snprintf(plan, sizeof plan, "%s/flux_all_in_one.qplan", qd_test_tmp_dir());
  snprintf(tok, sizeof tok, "%s/golden/pipeline_tiny", qd_test_data_dir());
  write_all_in_one(path, true);
  write_all_in_one(novae, false);
  qdc_pipeline_request_t r = {.input = path, .tokenizers = tok, .quantize = ""};
  qdc_pipeline_sources_t ps;
  QD_ASSERT_OK(qdc_pipeline_sources_find(&r, qd_allocator_system(), &ps));
  for (int i = 0; i < 4; i++) ck_assert_str_eq(ps.specs[i].input, path);
  qdc_pipeline_sources_deinit(&ps);
  snprintf(cmd, sizeof cmd, "'%s' compile '%s' --tokenizers '%s' -o '%s' --quant none --target none -q", getenv("QD_QDC"),
           path, tok, plan);
  ck_assert_int_eq(system(cmd), 0);
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan, qd_allocator_system(), 0, &p));
  cJSON* meta = cJSON_Parse(qd_plan_metadata_json(p));
  const cJSON* comps = cJSON_GetObjectItemCaseSensitive(meta, "components");
  ck_assert_int_eq(cJSON_GetArraySize(comps), 4);
  const cJSON* c;
  cJSON_ArrayForEach(c, comps) {
    const cJSON* layout = cJSON_GetObjectItemCaseSensitive(c, "layout");
    ck_assert_msg(cJSON_IsString(layout) && strcmp(layout->valuestring, "comfyui") == 0, "component %s: layout %s",
                  cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring, cJSON_Print(layout));
  }
  cJSON_Delete(meta);
  qd_plan_close(p);
  r.input = novae;
  qd_status_t s = qdc_pipeline_sources_find(&r, qd_allocator_system(), &ps);
  ck_assert(qd_status_is(s, QD_E_NOT_FOUND));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "vae.*"));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "--vae"));
  qd_status_free(s);
}
END_TEST

static Suite* compile_suite(void) {
  Suite* s = suite_create("compile");
  TCase* tc = tcase_create("core");
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, nf4_plan_runs_like_dequantized_graph);
  tcase_add_test(tc, plan_weights_equal_direct_quantization);
  tcase_add_test(tc, bf16_plan_matches_golden);
  tcase_add_test(tc, inspect_shows_plan_contents);
  tcase_add_test(tc, f32_plan_matches_golden);
  tcase_add_test(tc, failed_or_cancelled_compile_leaves_no_plan);
  tcase_add_test(tc, unknown_resolution_is_named);
  tcase_add_test(tc, inconsistent_plan_contents_are_rejected);
  tcase_add_test(tc, missing_pipeline_pieces_are_named);
  tcase_add_test(tc, comfyui_all_in_one_compiles);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(compile_suite)
