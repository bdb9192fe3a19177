/* Graph IR: size expressions, the malformed-graph corpus, block expansion, weight layouts, the FLUX description,
 * the CPU executor on a small graph against a direct computation, and an allocation-failure sweep. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/expr.h"
#include "ir/graph_desc.h"
#include "ir/weight_map.h"
#include "qd/safetensors_writer.h"
#include "qd_test.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/ref.h"

/* --- expressions ----------------------------------------------------------------------------------- */

static qd_status_t lookup_fixed(void* user, const char* name, size_t len, int64_t* out) {
  (void)user;
  if (len == 3 && strncmp(name, "dim", 3) == 0) {
    *out = 3072;
    return QD_OK;
  }
  if (len == 5 && strncmp(name, "heads", 5) == 0) {
    *out = 24;
    return QD_OK;
  }
  return QD_ERR(BAD_INPUT, GRAPH_EXPR_UNKNOWN_NAME, "unknown '%.*s'", (int)len, name);
}

static int64_t eval_ok(const char* text) {
  int64_t v = -999;
  QD_ASSERT_OK(qd_expr_eval(text, lookup_fixed, NULL, &v));
  return v;
}

START_TEST(expressions_evaluate) {
  ck_assert_int_eq(eval_ok("dim / heads"), 128);
  ck_assert_int_eq(eval_ok("3 * dim + 4 * dim"), 7 * 3072);
  ck_assert_int_eq(eval_ok("(1024 / 16) * (1024 / 16)"), 4096);
  ck_assert_int_eq(eval_ok("-7 // 2"), -4);
  ck_assert_int_eq(eval_ok("7 % 4"), 3);
  ck_assert_int_eq(eval_ok("!0"), 1);
  ck_assert_int_eq(eval_ok("dim == 3072"), 1);
  ck_assert_int_eq(eval_ok("heads < 2"), 0);
  int64_t v;
  QD_ASSERT_DETAIL(qd_expr_eval("1000 / 16", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_DIVISION);
  QD_ASSERT_DETAIL(qd_expr_eval("dim / 0", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_DIVISION);
  QD_ASSERT_DETAIL(qd_expr_eval("dim +", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_SYNTAX);
  QD_ASSERT_DETAIL(qd_expr_eval("(dim", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_SYNTAX);
  QD_ASSERT_DETAIL(qd_expr_eval("2dim", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_SYNTAX);
  QD_ASSERT_DETAIL(qd_expr_eval("4.5", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_SYNTAX);
  QD_ASSERT_DETAIL(qd_expr_eval("dims", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_UNKNOWN_NAME);
  QD_ASSERT_DETAIL(qd_expr_eval("9223372036854775807 + 1", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_OVERFLOW);
  QD_ASSERT_DETAIL(qd_expr_eval("99999999999999999999", lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_OVERFLOW);
  /* Deep nesting is refused, not a stack overflow. */
  char deep[400];
  memset(deep, '-', sizeof deep - 2);
  deep[sizeof deep - 2] = '1';
  deep[sizeof deep - 1] = '\0';
  QD_ASSERT_DETAIL(qd_expr_eval(deep, lookup_fixed, NULL, &v), QD_E_GRAPH_EXPR_SYNTAX);
}
END_TEST

/* --- the small test checkpoint -------------------------------------------------------------------------- */

static void fill_random(float* x, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 1.5f;
  }
}

static float mini_fc1_w[2][8 * 4], mini_fc1_b[2][8], mini_fc2_w[2][4 * 8], mini_fc2_b[2][4];

/* layers.{0,1}.fc1 [8,4], fc2 [4,8] in F32; fc1_int.weight in I32 for the dtype case. */
static void write_mini_checkpoint(const char* path) {
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(path, qd_allocator_system(), &w));
  static int32_t ints[8 * 4];
  for (int l = 0; l < 2; l++) {
    fill_random(mini_fc1_w[l], 32, 10 + l);
    fill_random(mini_fc1_b[l], 8, 20 + l);
    fill_random(mini_fc2_w[l], 32, 30 + l);
    fill_random(mini_fc2_b[l], 4, 40 + l);
    char name[64];
    uint64_t s84[2] = {8, 4}, s48[2] = {4, 8}, s8[1] = {8}, s4[1] = {4};
    snprintf(name, sizeof name, "layers.%d.fc1.weight", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_F32, 2, s84, mini_fc1_w[l]));
    snprintf(name, sizeof name, "layers.%d.fc1.bias", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_F32, 1, s8, mini_fc1_b[l]));
    snprintf(name, sizeof name, "layers.%d.fc2.weight", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_F32, 2, s48, mini_fc2_w[l]));
    snprintf(name, sizeof name, "layers.%d.fc2.bias", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_F32, 1, s4, mini_fc2_b[l]));
    snprintf(name, sizeof name, "layers.%d.fc1_int.weight", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_I32, 2, s84, ints));
    snprintf(name, sizeof name, "layers.%d.fc1_int.bias", l);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, QD_DTYPE_F32, 1, s8, mini_fc1_b[l]));
  }
  QD_ASSERT_OK(qd_safetensors_writer_set_metadata(w, "what", "tests/test_graph.c mini checkpoint"));
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
}

static char mini_ckpt_path[512];

static void setup_checkpoint(void) {
  snprintf(mini_ckpt_path, sizeof mini_ckpt_path, "%s/graph_mini.safetensors", qd_test_tmp_dir());
  write_mini_checkpoint(mini_ckpt_path);
}

static qd_status_t load_instantiate_bind(const char* path, qd_allocator_t a, int stage_limit) {
  qd_graph_desc_t* d = NULL;
  qd_graph_t* g = NULL;
  qd_checkpoint_t* c = NULL;
  qd_weight_binding_t* b = NULL;
  qd_size_binding_t bind[1] = {{"batch", 2}};
  qd_status_t s = qd_graph_desc_load_file(path, a, &d);
  if (!s && stage_limit > 0) s = qd_graph_desc_instantiate(d, NULL, bind, 1, a, &g);
  if (!s && stage_limit > 1) s = qd_checkpoint_open(mini_ckpt_path, a, &c);
  if (!s && stage_limit > 1) s = qd_weight_binding_create(d, NULL, g, c, NULL, a, &b);
  qd_weight_binding_destroy(b);
  qd_checkpoint_close(c);
  qd_graph_destroy(g);
  qd_graph_desc_destroy(d);
  return s;
}

START_TEST(malformed_graph_corpus) {
  char manifest[512];
  snprintf(manifest, sizeof manifest, "%s/graph_corpus/manifest.txt", qd_test_data_dir());
  FILE* f = fopen(manifest, "r");
  ck_assert_msg(f != NULL, "cannot open %s", manifest);
  char line[512];
  int cases = 0;
  bool seen[QD_E_COUNT_] = {false};
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    char file[128], detail[64], stage[32];
    ck_assert_int_eq(sscanf(line, "%127s %63s %31s", file, detail, stage), 3);
    qd_error_detail_t want = QD_E_COUNT_;
    for (int i = 0; i < QD_E_COUNT_; i++)
      if (strcmp(qd_error_detail_name((qd_error_detail_t)i), detail) == 0) want = (qd_error_detail_t)i;
    ck_assert_msg(want != QD_E_COUNT_, "manifest names unknown detail %s", detail);
    int limit = strcmp(stage, "load") == 0 ? 0 : strcmp(stage, "instantiate") == 0 ? 1 : 2;
    char path[768];
    snprintf(path, sizeof path, "%s/graph_corpus/%s", qd_test_data_dir(), file);
    /* The stage before the expected one must pass, so each case fails for its own reason. */
    if (limit > 0) QD_ASSERT_OK(load_instantiate_bind(path, qd_allocator_system(), limit - 1));
    qd_status_t s = load_instantiate_bind(path, qd_allocator_system(), limit);
    char msg[1024];
    qd_status_format(s, msg, sizeof msg);
    printf("  %-28s %-24s %s\n", file, qd_error_detail_name(qd_status_detail(s)), s ? msg : "(accepted)");
    ck_assert_msg(qd_status_detail(s) == want, "%s: expected %s, got %s: %s", file, detail,
                  qd_error_detail_name(qd_status_detail(s)), msg);
    ck_assert_msg(strstr(msg, file) != NULL || limit == 2 || strstr(msg, "mini") != NULL,
                  "%s: message does not name the file: %s", file, msg);
    seen[want] = true;
    qd_status_free(s);
    cases++;
  }
  fclose(f);
  ck_assert_int_ge(cases, 15);
  int distinct = 0;
  for (int i = 0; i < QD_E_COUNT_; i++) distinct += seen[i];
  ck_assert_int_ge(distinct, 15);
}
END_TEST

START_TEST(corpus_matches_its_generator) {
  char cmd[1024], dir[512];
  snprintf(dir, sizeof dir, "%s/graph_corpus_regen", qd_test_tmp_dir());
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && python3 '%s/tools/make_graph_corpus.py' '%s' >/dev/null && "
           "diff -r '%s' '%s/graph_corpus'", dir, getenv("QD_SOURCE_ROOT"), dir, dir, qd_test_data_dir());
  ck_assert_msg(system(cmd) == 0, "tests/data/graph_corpus is stale: run tools/make_graph_corpus.py");
}
END_TEST

/* The valid mini graph on the CPU executor against the same math written out directly. */
START_TEST(mini_graph_runs) {
  char path[512];
  snprintf(path, sizeof path, "%s/graph_corpus/valid.json", qd_test_data_dir());
  qd_allocator_t a = qd_allocator_system();
  qd_graph_desc_t* d;
  QD_ASSERT_OK(qd_graph_desc_load_file(path, a, &d));
  qd_size_binding_t bind[1] = {{"batch", 3}};
  qd_graph_t* g;
  QD_ASSERT_OK(qd_graph_desc_instantiate(d, NULL, bind, 1, a, &g));
  ck_assert_int_eq(g->weight_count, 8);
  ck_assert_int_ge(qd_graph_find_weight(g, "layers.1.fc2.bias"), 0);
  ck_assert_int_ge(qd_graph_find_value(g, "layers.1:h2"), 0);
  qd_checkpoint_t* c;
  QD_ASSERT_OK(qd_checkpoint_open(mini_ckpt_path, a, &c));
  qd_weight_binding_t* b;
  QD_ASSERT_OK(qd_weight_binding_create(d, NULL, g, c, NULL, a, &b));
  ck_assert_str_eq(b->layout, "identity");
  ck_assert_uint_eq(b->unused_tensors, 4); /* the fc1_int tensors */
  float** w;
  QD_ASSERT_OK(qd_weights_f32_load(b, &w));
  float x[3 * 4];
  fill_random(x, 12, 99);
  qd_tensor_t in = {QD_DTYPE_F32, g->values[g->inputs[0]].shape, x, sizeof x};
  qd_tensor_t out;
  float poison[3 * 4];
  QD_ASSERT_OK(qd_cpu_execute(g, (const float* const*)w, &in, &out, NULL, a));
  /* Direct: h += fc2(gelu(fc1(h))) twice. */
  float h[12];
  memcpy(h, x, sizeof h);
  for (int l = 0; l < 2; l++)
    for (int r = 0; r < 3; r++) {
      float hid[8];
      for (int j = 0; j < 8; j++) {
        float acc = mini_fc1_b[l][j];
        for (int k = 0; k < 4; k++) acc += h[r * 4 + k] * mini_fc1_w[l][j * 4 + k];
        hid[j] = 0.5f * acc * (1.0f + erff(acc / sqrtf(2.0f)));
      }
      for (int j = 0; j < 4; j++) {
        float acc = mini_fc2_b[l][j];
        for (int k = 0; k < 8; k++) acc += hid[k] * mini_fc2_w[l][j * 8 + k];
        poison[r * 4 + j] = acc;
      }
      for (int j = 0; j < 4; j++) h[r * 4 + j] += poison[r * 4 + j];
    }
  const float* y = out.data;
  for (int i = 0; i < 12; i++) ck_assert_msg(fabsf(y[i] - h[i]) < 1e-5f, "y[%d] = %g, want %g", i, y[i], h[i]);
  qd_tensor_free(a, &out);
  qd_weights_f32_free(b, w);
  qd_weight_binding_destroy(b);
  qd_checkpoint_close(c);
  qd_graph_destroy(g);
  qd_graph_desc_destroy(d);
}
END_TEST

/* Every allocation of instantiation, binding and execution may fail: each failure is a clean status, no leak. */
START_TEST(allocation_failure_sweep) {
  char path[512];
  snprintf(path, sizeof path, "%s/graph_corpus/valid.json", qd_test_data_dir());
  int failures = 0;
  for (uint64_t n = 1; n < 100000; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_allocator_t a = qd_test_allocator_as_allocator(&t);
    qd_graph_desc_t* d = NULL;
    qd_graph_t* g = NULL;
    qd_checkpoint_t* c = NULL;
    qd_weight_binding_t* b = NULL;
    float** w = NULL;
    qd_tensor_t out = {0};
    float x[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8};
    qd_size_binding_t bind[1] = {{"batch", 2}};
    qd_status_t s = qd_graph_desc_load_file(path, a, &d);
    if (!s) s = qd_graph_desc_instantiate(d, NULL, bind, 1, a, &g);
    if (!s) s = qd_checkpoint_open(mini_ckpt_path, a, &c);
    if (!s) s = qd_weight_binding_create(d, NULL, g, c, NULL, a, &b);
    if (!s) s = qd_weights_f32_load(b, &w);
    if (!s) {
      qd_tensor_t in = {QD_DTYPE_F32, g->values[g->inputs[0]].shape, x, sizeof x};
      s = qd_cpu_execute(g, (const float* const*)w, &in, &out, NULL, a);
    }
    if (!s) qd_tensor_free(a, &out);
    if (b) qd_weights_f32_free(b, w);
    qd_weight_binding_destroy(b);
    qd_checkpoint_close(c);
    qd_graph_destroy(g);
    qd_graph_desc_destroy(d);
    ck_assert_msg(t.live_count == 0 && t.live_bytes == 0, "fail at %llu: %lld allocations leaked",
                  (unsigned long long)n, (long long)t.live_count);
    if (!s) {
      ck_assert_uint_eq(t.failures, 0);
      break;
    }
    ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "fail at %llu gave %s", (unsigned long long)n,
                  qd_status_message(s));
    qd_status_free(s);
    failures++;
  }
  ck_assert_int_gt(failures, 20);
}
END_TEST

/* --- the FLUX description ------------------------------------------------------------------------------ */

static qd_graph_t* flux_graph(const char* config, int64_t img, int64_t txt) {
  char path[512];
  snprintf(path, sizeof path, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  qd_graph_desc_t* d;
  QD_ASSERT_OK(qd_graph_desc_load_file(path, qd_allocator_system(), &d));
  qd_size_binding_t b[3] = {{"batch", 1}, {"img_tokens", img}, {"txt_tokens", txt}};
  qd_graph_t* g;
  QD_ASSERT_OK(qd_graph_desc_instantiate(d, config, b, 3, qd_allocator_system(), &g));
  qd_graph_desc_destroy(d);
  return g;
}

START_TEST(flux_parameter_counts_and_flops) {
  qd_graph_stats_t st;
  qd_graph_t* dev = flux_graph("dev", 4096, 512);
  qd_graph_stats(dev, &st);
  ck_assert_uint_eq(st.parameters, 11901408320ull);
  ck_assert_int_eq(dev->weight_count, 1160);
  /* 59.5 TFLOP of linears and 14.9 of attention per step at 1024x1024 (docs/graph-format.md explains). */
  ck_assert(fabs(st.linear_flops / 1e12 - 59.51) < 0.01);
  ck_assert(fabs(st.attention_flops / 1e12 - 14.87) < 0.01);
  ck_assert_int_eq(st.node_count_by_op[QD_OP_ATTENTION], 57);
  qd_graph_destroy(dev);
  qd_graph_t* schnell = flux_graph("schnell", 4096, 256);
  qd_graph_stats(schnell, &st);
  ck_assert_uint_eq(st.parameters, 11891178560ull);
  ck_assert_int_lt(qd_graph_find_weight(schnell, "time_text_embed.guidance_embedder.linear_1.weight"), 0);
  ck_assert_int_lt(qd_graph_find_value(schnell, "guidance"), 0);
  qd_graph_destroy(schnell);
}
END_TEST

START_TEST(flux_rejects_resolution_it_cannot_bind) {
  char path[512];
  snprintf(path, sizeof path, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  qd_graph_desc_t* d;
  QD_ASSERT_OK(qd_graph_desc_load_file(path, qd_allocator_system(), &d));
  qd_size_binding_t b[2] = {{"batch", 1}, {"img_tokens", 16}};
  qd_graph_t* g = NULL;
  QD_ASSERT_DETAIL(qd_graph_desc_instantiate(d, "tiny-plain", b, 2, qd_allocator_system(), &g),
                   QD_E_GRAPH_BINDING_MISSING);
  QD_ASSERT_DETAIL(qd_graph_desc_instantiate(d, "medium", b, 2, qd_allocator_system(), &g),
                   QD_E_GRAPH_UNKNOWN_CONFIG);
  qd_graph_desc_destroy(d);
}
END_TEST

static Suite* graph_suite(void) {
  Suite* s = suite_create("graph");
  TCase* tc = tcase_create("core");
  tcase_add_unchecked_fixture(tc, setup_checkpoint, NULL);
  tcase_add_test(tc, expressions_evaluate);
  tcase_add_test(tc, malformed_graph_corpus);
  tcase_add_test(tc, corpus_matches_its_generator);
  tcase_add_test(tc, mini_graph_runs);
  tcase_add_test(tc, allocation_failure_sweep);
  tcase_add_test(tc, flux_parameter_counts_and_flops);
  tcase_add_test(tc, flux_rejects_resolution_it_cannot_bind);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(graph_suite)
