/* Golden tests for the other FLUX components: models/clip-l.json against transformers' CLIPTextModel,
 * models/t5-xxl-encoder.json against T5EncoderModel and models/flux-vae-decoder.json against FluxPipeline's decode
 * step on diffusers' AutoencoderKL (fixtures from tools/golden/{clip,t5,vae}.py: tiny configurations, seeded
 * weights, fp32). Every output must match at relative L2 <= 1e-4. Also: the real configurations' parameter counts
 * (checked against the real classes by the generators), T5's bucket table, the quantization keep list, the weight
 * layouts, bad token ids, and the new CPU references against direct loops. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/graph_desc.h"
#include "qd/safetensors_writer.h"
#include "qd_test.h"
#include "vae_ldm_names.h"
#include "runtime/cpu/ref.h"
#include "runtime/graph_runner.h"

static void model_path(char* buf, size_t size, const char* name) {
  snprintf(buf, size, "%s/models/%s", getenv("QD_SOURCE_ROOT"), name);
}

static void golden_path(char* buf, size_t size, const char* name) {
  snprintf(buf, size, "%s/golden/%s", qd_test_data_dir(), name);
}

/* Runs a description on the CPU and compares every graph output with the io file's tensor of the same name. */
static void run_golden(const char* model, const char* config, const char* weights, const char* io, int64_t width,
                       int64_t height, const char* want_layout) {
  char graph[512];
  model_path(graph, sizeof graph, model);
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io, a, &in));
  qd_graph_runner_options_t o = {graph, config, weights, NULL, 0};
  qd_graph_runner_t* r;
  QD_ASSERT_OK(qd_graph_runner_create_for_image(&o, in, width, height, a, &r));
  ck_assert_str_eq(qd_graph_runner_layout(r), want_layout);
  const qd_graph_t* g = qd_graph_runner_graph(r);
  qd_tensor_t out[4];
  ck_assert_int_le(g->output_count, 4);
  QD_ASSERT_OK(qd_graph_runner_run(r, in, out));
  for (int32_t i = 0; i < g->output_count; i++) {
    const qd_tensor_info_t* ref = qd_safetensors_find(in, g->outputs[i].name);
    ck_assert_msg(ref != NULL, "%s has no '%s'", io, g->outputs[i].name);
    ck_assert_uint_eq(ref->numel, (uint64_t)qd_shape_numel(&out[i].shape));
    for (int d = 0; d < ref->rank; d++) ck_assert_int_eq((int64_t)ref->shape[d], out[i].shape.dims[d]);
    float* expect = malloc(ref->numel * sizeof(float));
    QD_ASSERT_OK(qd_tensor_read_f32(ref, expect));
    double rel, max_abs;
    qd_compare_f32(out[i].data, expect, ref->numel, &rel, &max_abs);
    printf("  %-22s %-5s %-14s %-18s rel L2 %.3e  max |diff| %.3e\n", model, config, want_layout, g->outputs[i].name,
           rel, max_abs);
    ck_assert_msg(rel <= 1e-4, "%s %s: relative L2 %.3e > 1e-4 (max |diff| %.3e)", model, g->outputs[i].name, rel,
                  max_abs);
    free(expect);
    qd_tensor_free(a, &out[i]);
  }
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
}

/* Copies a safetensors file, renaming tensors: rename(name) returns the new name (or NULL to drop it). */
typedef const char* (*rename_fn)(const char* name, char* buf, size_t size);

static void copy_renamed(const char* src_path, const char* dst_path, rename_fn rename) {
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* src;
  QD_ASSERT_OK(qd_safetensors_open(src_path, a, &src));
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(dst_path, a, &w));
  for (size_t i = 0; i < qd_safetensors_tensor_count(src); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(src, i);
    char buf[512];
    const char* name = rename(t->name, buf, sizeof buf);
    if (name) QD_ASSERT_OK(qd_safetensors_writer_add(w, name, t->dtype, t->rank, t->shape, t->data));
  }
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  qd_safetensors_close(src);
}

/* --- CLIP ------------------------------------------------------------------------------------------------- */

START_TEST(clip_matches_transformers) {
  char weights[512], io[512];
  golden_path(weights, sizeof weights, "clip_tiny_weights.safetensors");
  golden_path(io, sizeof io, "clip_tiny_io.safetensors");
  run_golden("clip-l.json", "tiny", weights, io, 0, 0, "transformers");
}
END_TEST

static const char* strip_text_model(const char* name, char* buf, size_t size) {
  const char* prefix = "text_model.";
  snprintf(buf, size, "%s", strncmp(name, prefix, strlen(prefix)) == 0 ? name + strlen(prefix) : name);
  return buf;
}

/* transformers 5 saves CLIPTextModel without the text_model. prefix. */
START_TEST(clip_reads_transformers5_names) {
  char weights[512], io[512], v5[512];
  golden_path(weights, sizeof weights, "clip_tiny_weights.safetensors");
  golden_path(io, sizeof io, "clip_tiny_io.safetensors");
  snprintf(v5, sizeof v5, "%s/clip_tiny_v5.safetensors", qd_test_tmp_dir());
  copy_renamed(weights, v5, strip_text_model);
  run_golden("clip-l.json", "tiny", v5, io, 0, 0, "transformers-5");
}
END_TEST

static const char* clip_comfyui_name(const char* name, char* buf, size_t size) {
  snprintf(buf, size, "text_encoders.clip_l.transformer.%s", name);
  return buf;
}

static const char* t5_comfyui_name(const char* name, char* buf, size_t size) {
  snprintf(buf, size, "text_encoders.t5xxl.transformer.%s", name);
  return buf;
}

/* ComfyUI all-in-one checkpoints keep the text encoders' transformers names under a prefix. */
START_TEST(text_encoders_read_comfyui_names) {
  char weights[512], io[512], comfy[512];
  golden_path(weights, sizeof weights, "clip_tiny_weights.safetensors");
  golden_path(io, sizeof io, "clip_tiny_io.safetensors");
  snprintf(comfy, sizeof comfy, "%s/clip_tiny_comfyui.safetensors", qd_test_tmp_dir());
  copy_renamed(weights, comfy, clip_comfyui_name);
  run_golden("clip-l.json", "tiny", comfy, io, 0, 0, "comfyui");
  golden_path(weights, sizeof weights, "t5_tiny_weights.safetensors");
  golden_path(io, sizeof io, "t5_tiny_io.safetensors");
  snprintf(comfy, sizeof comfy, "%s/t5_tiny_comfyui.safetensors", qd_test_tmp_dir());
  copy_renamed(weights, comfy, t5_comfyui_name);
  run_golden("t5-xxl-encoder.json", "tiny", comfy, io, 0, 0, "comfyui");
}
END_TEST

/* A token id outside the vocabulary is the caller's error, reported with the id, not a read past the table. */
START_TEST(clip_rejects_id_outside_vocabulary) {
  char graph[512], weights[512], io[512], bad[512];
  model_path(graph, sizeof graph, "clip-l.json");
  golden_path(weights, sizeof weights, "clip_tiny_weights.safetensors");
  golden_path(io, sizeof io, "clip_tiny_io.safetensors");
  snprintf(bad, sizeof bad, "%s/clip_bad_ids.safetensors", qd_test_tmp_dir());
  qd_allocator_t a = qd_allocator_system();
  int32_t ids[2 * 16];
  for (int i = 0; i < 32; i++) ids[i] = i % 7;
  ids[20] = 300; /* the tiny vocabulary has ids 0..299 */
  uint64_t shape[2] = {2, 16};
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(bad, a, &w));
  QD_ASSERT_OK(qd_safetensors_writer_add(w, "input_ids", QD_DTYPE_I32, 2, shape, ids));
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(bad, a, &in));
  qd_graph_runner_options_t o = {graph, "tiny", weights, NULL, 0};
  qd_graph_runner_t* r;
  QD_ASSERT_OK(qd_graph_runner_create(&o, in, a, &r));
  qd_tensor_t out[2];
  qd_status_t s = qd_graph_runner_run(r, in, out);
  char msg[512];
  qd_status_format(s, msg, sizeof msg);
  ck_assert_msg(strstr(msg, "300") != NULL, "message does not name the id: %s", msg);
  QD_ASSERT_DETAIL(s, QD_E_INPUT_VALUE);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
}
END_TEST

/* --- T5 --------------------------------------------------------------------------------------------------- */

START_TEST(t5_matches_transformers) {
  char weights[512], io[512];
  golden_path(weights, sizeof weights, "t5_tiny_weights.safetensors");
  golden_path(io, sizeof io, "t5_tiny_io.safetensors");
  run_golden("t5-xxl-encoder.json", "tiny", weights, io, 0, 0, "transformers");
}
END_TEST

static const char* shared_to_embed_tokens(const char* name, char* buf, size_t size) {
  snprintf(buf, size, "%s", strcmp(name, "shared.weight") == 0 ? "encoder.embed_tokens.weight" : name);
  return buf;
}

START_TEST(t5_reads_embed_tokens_name) {
  char weights[512], io[512], alt[512];
  golden_path(weights, sizeof weights, "t5_tiny_weights.safetensors");
  golden_path(io, sizeof io, "t5_tiny_io.safetensors");
  snprintf(alt, sizeof alt, "%s/t5_tiny_embed_tokens.safetensors", qd_test_tmp_dir());
  copy_renamed(weights, alt, shared_to_embed_tokens);
  run_golden("t5-xxl-encoder.json", "tiny", alt, io, 0, 0, "embed-tokens");
}
END_TEST

static void check_buckets(const qd_safetensors_t* io, const char* name, int64_t buckets, int64_t max_distance) {
  const qd_tensor_info_t* t = qd_safetensors_find(io, name);
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->dtype, QD_DTYPE_I64);
  int64_t n = (int64_t)t->numel, half = n / 2;
  const unsigned char* data = t->data;
  int mismatches = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t want;
    memcpy(&want, data + i * 8, 8);
    int64_t got = qd_ref_t5_bucket(i - half, buckets, max_distance, true);
    if (got != want && mismatches++ < 5) printf("  %s: relative position %lld: bucket %lld, transformers %lld\n",
                                                name, (long long)(i - half), (long long)got, (long long)want);
  }
  ck_assert_msg(mismatches == 0, "%s: %d buckets differ from transformers'", name, mismatches);
}

/* T5's bucketing puts distances 16, 32, 64 exactly on bucket boundaries for t5-v1_1-xxl: float32 rounding decides. */
START_TEST(t5_buckets_match_transformers) {
  char io[512];
  golden_path(io, sizeof io, "t5_tiny_io.safetensors");
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io, qd_allocator_system(), &in));
  check_buckets(in, "buckets_tiny", 16, 16);
  check_buckets(in, "buckets_xxl", 32, 128);
  qd_safetensors_close(in);
}
END_TEST

/* --- VAE -------------------------------------------------------------------------------------------------- */

START_TEST(vae_matches_diffusers) {
  char weights[512], io[512];
  golden_path(weights, sizeof weights, "vae_tiny_weights.safetensors");
  golden_path(io, sizeof io, "vae_tiny_io.safetensors");
  run_golden("flux-vae-decoder.json", "tiny", weights, io, 64, 48, "diffusers");
}
END_TEST

/* BFL's ae.safetensors names, and ComfyUI's all-in-one (the same under vae.), give the same image. */
START_TEST(vae_reads_ldm_and_comfyui_names) {
  char weights[512], io[512], ldm[512], comfy[512];
  golden_path(weights, sizeof weights, "vae_tiny_weights.safetensors");
  golden_path(io, sizeof io, "vae_tiny_io.safetensors");
  snprintf(ldm, sizeof ldm, "%s/vae_tiny_ldm.safetensors", qd_test_tmp_dir());
  snprintf(comfy, sizeof comfy, "%s/vae_tiny_comfyui.safetensors", qd_test_tmp_dir());
  write_ldm_vae(weights, ldm, "");
  write_ldm_vae(weights, comfy, "vae.");
  run_golden("flux-vae-decoder.json", "tiny", ldm, io, 64, 48, "ldm");
  run_golden("flux-vae-decoder.json", "tiny", comfy, io, 64, 48, "comfyui");
}
END_TEST

/* Packed latents do not tell the aspect ratio: without a resolution the grid is unbound; a resolution with another
 * number of patches than the latents have is caught when the input is read, one that is not a multiple of 16 at
 * binding. */
START_TEST(vae_needs_a_matching_resolution) {
  char graph[512], weights[512], io[512];
  model_path(graph, sizeof graph, "flux-vae-decoder.json");
  golden_path(weights, sizeof weights, "vae_tiny_weights.safetensors");
  golden_path(io, sizeof io, "vae_tiny_io.safetensors");
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* in;
  QD_ASSERT_OK(qd_safetensors_open(io, a, &in));
  qd_graph_runner_options_t o = {graph, "tiny", weights, NULL, 0};
  qd_graph_runner_t* r = NULL;
  QD_ASSERT_DETAIL(qd_graph_runner_create(&o, in, a, &r), QD_E_GRAPH_BINDING_MISSING);
  QD_ASSERT_DETAIL(qd_graph_runner_create_for_image(&o, in, 60, 48, a, &r), QD_E_GRAPH_EXPR_DIVISION);
  QD_ASSERT_OK(qd_graph_runner_create_for_image(&o, in, 64, 64, a, &r));
  qd_tensor_t out;
  QD_ASSERT_DETAIL(qd_graph_runner_run(r, in, &out), QD_E_INPUT_SHAPE);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
}
END_TEST

/* --- the real configurations ---------------------------------------------------------------------------- */

static qd_graph_t* real_graph(const char* model, const char* config, int64_t w, int64_t h, qd_graph_desc_t** out_desc) {
  char path[512];
  model_path(path, sizeof path, model);
  qd_graph_desc_t* d;
  QD_ASSERT_OK(qd_graph_desc_load_file(path, qd_allocator_system(), &d));
  qd_size_binding_t b[8];
  int32_t nb;
  QD_ASSERT_OK(qd_graph_desc_resolution_bindings(d, config, w, h, 1, b, 8, &nb));
  qd_graph_t* g;
  QD_ASSERT_OK(qd_graph_desc_instantiate(d, config, b, nb, qd_allocator_system(), &g));
  if (out_desc)
    *out_desc = d;
  else
    qd_graph_desc_destroy(d);
  return g;
}

/* The counts tools/golden/{clip,t5,vae}.py get from the transformers/diffusers classes built with the real configurations. */
START_TEST(real_parameter_counts) {
  qd_graph_stats_t st;
  qd_graph_t* clip = real_graph("clip-l.json", "l", 1024, 1024, NULL);
  qd_graph_stats(clip, &st);
  ck_assert_uint_eq(st.parameters, 123060480ull);
  qd_graph_destroy(clip);

  qd_graph_desc_t* t5d;
  qd_graph_t* t5 = real_graph("t5-xxl-encoder.json", "xxl", 1024, 1024, &t5d);
  qd_graph_stats(t5, &st);
  ck_assert_uint_eq(st.parameters, 4762310656ull);
  /* transformers keeps every wo in fp32, and nothing else. */
  int kept = 0;
  for (int32_t w = 0; w < t5->weight_count; w++)
    if (qd_graph_desc_keep_unquantized(t5d, t5->weights[w].name)) {
      ck_assert_ptr_nonnull(strstr(t5->weights[w].name, ".DenseReluDense.wo.weight"));
      kept++;
    }
  ck_assert_int_eq(kept, 24);
  ck_assert(!qd_graph_desc_keep_unquantized(t5d, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"));
  qd_graph_destroy(t5);
  qd_graph_desc_destroy(t5d);

  qd_graph_t* vae = real_graph("flux-vae-decoder.json", "flux", 1024, 1024, NULL);
  qd_graph_stats(vae, &st);
  ck_assert_uint_eq(st.parameters, 49545475ull);
  /* 1024x1024: 9.89 TFLOP of convolutions, 0.55 of mid-block attention over 128 x 128 latent pixels. */
  ck_assert(fabs(st.other_flops / 1e12 - 9.89) < 0.01);
  ck_assert(fabs(st.attention_flops / 1e12 - 0.55) < 0.01);
  int64_t out_shape[4] = {1, 3, 1024, 1024};
  const qd_shape_t* img = &vae->values[vae->outputs[0].value].shape;
  for (int d = 0; d < 4; d++) ck_assert_int_eq(img->dims[d], out_shape[d]);
  qd_graph_destroy(vae);
}
END_TEST

/* --- the new references against direct loops -------------------------------------------------------------- */

static void fill(float* x, size_t n, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 7;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
  }
}

static void conv_case(int64_t b, int64_t cin, int64_t h, int64_t w, int64_t cout, int64_t k, int64_t stride,
                      int64_t pad, qd_threadpool_t* pool) {
  qd_ref_conv2d_shape_t s = {b, cin, h, w, cout, k, stride, pad, (h + 2 * pad - k) / stride + 1,
                             (w + 2 * pad - k) / stride + 1};
  size_t nx = (size_t)(b * cin * h * w), nw = (size_t)(cout * cin * k * k), ny = (size_t)(b * cout * s.hout * s.wout);
  float *x = malloc(nx * 4), *wt = malloc(nw * 4), *bias = malloc((size_t)cout * 4), *y = malloc(ny * 4);
  float* ws = malloc((size_t)qd_ref_conv2d_workspace(&s) * 4);
  fill(x, nx, 1);
  fill(wt, nw, 2);
  fill(bias, (size_t)cout, 3);
  qd_ref_conv2d(pool, x, wt, bias, y, &s, ws);
  double worst = 0;
  for (int64_t n = 0; n < b; n++)
    for (int64_t co = 0; co < cout; co++)
      for (int64_t oy = 0; oy < s.hout; oy++)
        for (int64_t ox = 0; ox < s.wout; ox++) {
          double acc = bias[co];
          for (int64_t ci = 0; ci < cin; ci++)
            for (int64_t ky = 0; ky < k; ky++)
              for (int64_t kx = 0; kx < k; kx++) {
                int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                acc += (double)x[((n * cin + ci) * h + iy) * w + ix] * wt[((co * cin + ci) * k + ky) * k + kx];
              }
          double d = fabs(acc - y[((n * cout + co) * s.hout + oy) * s.wout + ox]);
          if (d > worst) worst = d;
        }
  ck_assert_msg(worst < 1e-4, "conv %lldx%lld k%lld s%lld p%lld: max |diff| %g", (long long)h, (long long)w,
                (long long)k, (long long)stride, (long long)pad, worst);
  free(x), free(wt), free(bias), free(y), free(ws);
}

START_TEST(conv2d_matches_direct_loops) {
  qd_threadpool_t* pool;
  QD_ASSERT_OK(qd_threadpool_create(4, qd_allocator_system(), &pool));
  conv_case(2, 3, 9, 7, 5, 3, 1, 1, pool);
  conv_case(1, 4, 10, 11, 6, 3, 2, 1, pool);
  conv_case(2, 5, 6, 6, 17, 1, 1, 0, pool);
  conv_case(1, 2, 8, 5, 3, 4, 3, 2, pool);
  /* More pixels than one chunk of the scratch: the chunked path. */
  conv_case(1, 64, 80, 80, 8, 3, 1, 1, pool);
  qd_threadpool_destroy(pool);
}
END_TEST

START_TEST(layout_and_norm_refs_match_direct_loops) {
  /* permute: a 6-D tensor through the unpack's permutation. */
  int64_t dims[6] = {2, 3, 4, 5, 2, 2}, perm[6] = {0, 3, 1, 4, 2, 5};
  size_t n = 2 * 3 * 4 * 5 * 2 * 2;
  float *x = malloc(n * 4), *y = malloc(n * 4);
  fill(x, n, 5);
  qd_ref_permute(NULL, x, y, dims, perm, 6, 4);
  int64_t od[6];
  for (int i = 0; i < 6; i++) od[i] = dims[perm[i]];
  size_t o = 0;
  int64_t i_[6];
  for (i_[0] = 0; i_[0] < od[0]; i_[0]++)
    for (i_[1] = 0; i_[1] < od[1]; i_[1]++)
      for (i_[2] = 0; i_[2] < od[2]; i_[2]++)
        for (i_[3] = 0; i_[3] < od[3]; i_[3]++)
          for (i_[4] = 0; i_[4] < od[4]; i_[4]++)
            for (i_[5] = 0; i_[5] < od[5]; i_[5]++, o++) {
              int64_t src[6], off = 0;
              for (int d = 0; d < 6; d++) src[perm[d]] = i_[d];
              for (int d = 0; d < 6; d++) off = off * dims[d] + src[d];
              ck_assert(y[o] == x[off]);
            }
  /* group norm: 2 images of 6 channels in 3 groups. */
  float gw[6], gb[6];
  fill(gw, 6, 6);
  fill(gb, 6, 7);
  int64_t b = 2, c = 6, sp = 10, groups = 3;
  qd_ref_group_norm(NULL, x, gw, gb, y, b, c, sp, groups, 1e-6f);
  for (int64_t bg = 0; bg < b * groups; bg++) {
    const float* g = x + bg * (c / groups) * sp;
    double mean = 0, var = 0;
    for (int64_t i = 0; i < (c / groups) * sp; i++) mean += g[i];
    mean /= (double)((c / groups) * sp);
    for (int64_t i = 0; i < (c / groups) * sp; i++) var += (g[i] - mean) * (g[i] - mean);
    var /= (double)((c / groups) * sp);
    for (int64_t i = 0; i < (c / groups) * sp; i++) {
      int64_t ch = (bg % groups) * (c / groups) + i / sp;
      double want = (g[i] - mean) / sqrt(var + 1e-6) * gw[ch] + gb[ch];
      ck_assert(fabs(want - y[bg * (c / groups) * sp + i]) < 1e-5);
    }
  }
  /* nearest upsampling by 3 */
  qd_ref_upsample_nearest(NULL, x, y, 2, 3, 4, 3);
  for (int64_t p = 0; p < 2; p++)
    for (int64_t i = 0; i < 9; i++)
      for (int64_t j = 0; j < 12; j++) ck_assert(y[(p * 9 + i) * 12 + j] == x[(p * 3 + i / 3) * 4 + j / 3]);
  free(x);
  free(y);
}
END_TEST

static Suite* golden_suite(void) {
  Suite* s = suite_create("golden_encoders");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, clip_matches_transformers);
  tcase_add_test(tc, clip_reads_transformers5_names);
  tcase_add_test(tc, clip_rejects_id_outside_vocabulary);
  tcase_add_test(tc, t5_matches_transformers);
  tcase_add_test(tc, t5_reads_embed_tokens_name);
  tcase_add_test(tc, t5_buckets_match_transformers);
  tcase_add_test(tc, vae_matches_diffusers);
  tcase_add_test(tc, vae_reads_ldm_and_comfyui_names);
  tcase_add_test(tc, text_encoders_read_comfyui_names);
  tcase_add_test(tc, vae_needs_a_matching_resolution);
  tcase_add_test(tc, real_parameter_counts);
  tcase_add_test(tc, conv2d_matches_direct_loops);
  tcase_add_test(tc, layout_and_norm_refs_match_direct_loops);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(golden_suite)
