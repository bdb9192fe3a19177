/* Golden tests: the CPU executor running models/flux-transformer.json against diffusers' FluxTransformer2DModel
 * (fixtures from tools/golden/flux_transformer.py: tiny configurations, seeded weights, fp32). Each
 * configuration runs from the diffusers layout, the single-file BFL layout and a ComfyUI-style all-in-one file
 * made here from the BFL one; all must match the PyTorch output at relative L2 <= 1e-4. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd/safetensors_writer.h"
#include "qd_test.h"
#include "runtime/graph_runner.h"

static void golden_path(char* buf, size_t size, const char* name) {
  snprintf(buf, size, "%s/golden/%s", qd_test_data_dir(), name);
}

static void run_golden(const char* config, const char* weights, const char* io, const char* want_layout) {
  char graph[512];
  snprintf(graph, sizeof graph, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io, a, &in));
  qd_graph_runner_options_t o = {.graph_path = graph, .config = config, .weights_path = weights};
  qd_graph_runner_t* r;
  QD_ASSERT_OK(qd_graph_runner_create(&o, in, a, &r));
  ck_assert_str_eq(qd_graph_runner_layout(r), want_layout);
  qd_tensor_t out;
  QD_ASSERT_OK(qd_graph_runner_run(r, in, &out));
  const qd_tensor_info_t* ref = qd_safetensors_find(in, "output");
  ck_assert_ptr_nonnull(ref);
  ck_assert_uint_eq(ref->numel, (uint64_t)qd_shape_numel(&out.shape));
  float* expect = malloc(ref->numel * sizeof(float));
  QD_ASSERT_OK(qd_tensor_read_f32(ref, expect));
  double rel, max_abs;
  qd_compare_f32(out.data, expect, ref->numel, &rel, &max_abs);
  printf("  %-12s %-10s rel L2 %.3e  max |diff| %.3e\n", config, want_layout, rel, max_abs);
  ck_assert_msg(rel <= 1e-4, "%s (%s): relative L2 %.3e > 1e-4 (max |diff| %.3e)", config, want_layout, rel, max_abs);
  free(expect);
  qd_tensor_free(a, &out);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
}

/* A ComfyUI all-in-one checkpoint: the BFL transformer under model.diffusion_model., plus tensors of other
 * components that the transformer graph must ignore. */
static void make_comfyui(const char* bfl_path, const char* out_path) {
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* bfl;
  QD_ASSERT_OK(qd_safetensors_open(bfl_path, a, &bfl));
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(out_path, a, &w));
  static const float vae_w[4] = {1, 2, 3, 4};
  uint64_t four[1] = {4};
  QD_ASSERT_OK(qd_safetensors_writer_add(w, "first_stage_model.decoder.conv_in.bias", QD_DTYPE_F32, 1, four, vae_w));
  for (size_t i = 0; i < qd_safetensors_tensor_count(bfl); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(bfl, i);
    char name[512];
    snprintf(name, sizeof name, "model.diffusion_model.%s", t->name);
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, t->dtype, t->rank, t->shape, t->data));
  }
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  qd_safetensors_close(bfl);
}

static void golden_config(const char* fixture, const char* config) {
  char weights[512], bfl[512], io[512], comfy[512], name[128];
  snprintf(name, sizeof name, "flux_%s_weights.safetensors", fixture);
  golden_path(weights, sizeof weights, name);
  snprintf(name, sizeof name, "flux_%s_bfl.safetensors", fixture);
  golden_path(bfl, sizeof bfl, name);
  snprintf(name, sizeof name, "flux_%s_io.safetensors", fixture);
  golden_path(io, sizeof io, name);
  snprintf(comfy, sizeof comfy, "%s/flux_%s_comfyui.safetensors", qd_test_tmp_dir(), fixture);
  run_golden(config, weights, io, "diffusers");
  run_golden(config, bfl, io, "bfl");
  make_comfyui(bfl, comfy);
  run_golden(config, comfy, io, "comfyui");
}

START_TEST(flux_guided_matches_diffusers) { golden_config("guided", "tiny-guided"); }
END_TEST

START_TEST(flux_plain_matches_diffusers) { golden_config("plain", "tiny-plain"); }
END_TEST

/* The wrong configuration for a checkpoint is caught at binding, naming the weight. */
START_TEST(flux_wrong_config_is_rejected) {
  char graph[512], weights[512], io[512];
  snprintf(graph, sizeof graph, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  golden_path(weights, sizeof weights, "flux_plain_weights.safetensors");
  golden_path(io, sizeof io, "flux_plain_io.safetensors");
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io, qd_allocator_system(), &in));
  qd_graph_runner_options_t o = {.graph_path = graph, .config = "tiny-guided", .weights_path = weights};
  qd_graph_runner_t* r = NULL;
  /* tiny-guided has 32 channels and 16 inputs: the first weight tells (x_embedder is [24, 12] here). */
  QD_ASSERT_DETAIL(qd_graph_runner_create(&o, in, qd_allocator_system(), &r), QD_E_WEIGHT_SHAPE);
  qd_safetensors_close(in);
}
END_TEST

static Suite* golden_suite(void) {
  Suite* s = suite_create("golden_flux");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, flux_guided_matches_diffusers);
  tcase_add_test(tc, flux_plain_matches_diffusers);
  tcase_add_test(tc, flux_wrong_config_is_rejected);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(golden_suite)
