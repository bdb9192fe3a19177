/* The whole pipeline against diffusers: tests/data/golden/pipeline_tiny (a FluxPipeline directory with seeded
 * random weights, tools/golden/pipeline.py) compiled into plans and run through the public generator API on the
 * CPU, compared with FluxPipeline's own run from the same prompt and seed (pipeline_tiny_io.safetensors): token ids
 * (equal), prompt and pooled embeddings (relative L2 <= 1e-4), initial noise and the transformer's timesteps (bit
 * for bit), latents after every step and the decoded image (relative L2 <= 1e-4), 8-bit pixels (within one level).
 *
 * Two plans: an fp32 one, built with the compiler's own passes (qdc compile stores bf16 or NF4; fp32 weights are
 * what the comparison with PyTorch's fp32 needs), and the bf16 plan `qdc compile DIR` writes, which qdrun runs.
 * Then: determinism (runs, thread counts, processes), batches, qdrun's command line, and every rule a plan or a
 * request can break. */
#include <cjson/cJSON.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/compile.h"
#include "compiler/pipeline_sources.h"
#include "compiler/plan_writer.h"
#include "qd/generator.h"
#include "qd/progress.h"
#include "qd/safetensors.h"
#include "qd_test.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/graph_runner.h"
#include "runtime/pipeline/generator_internal.h"
#include "runtime/pipeline/schedule.h"
#include "runtime/plan_internal.h"

enum { W = 64, H = 48, STEPS = 4, LAT = 12 * 64, TXT = 16, JOINT = 32, POOLED = 32 };

static char dir_path[512], io_path[512], plan_f32[512], plan_bf16[512], tmp[512];
static qd_safetensors_t* io;
static const char* prompt;
static uint64_t seed;

/* --- building plans ----------------------------------------------------------------------------------------------- */

/* What `qdc compile DIR` does (compiler/cmd_compile.c), with every weight stored as fp32. */
static qd_status_t compile_f32_plan(const char* dir, const char* out, const qdc_resolution_t* res, int32_t nres) {
  qd_allocator_t a = qd_allocator_system();
  qdc_compile_options_t o;
  memset(&o, 0, sizeof o);
  o.input = dir;
  o.output = out;
  o.quant = QDC_QUANT_NONE;
  o.blocksize = 64;
  o.threads = 1;
  o.resolution_count = nres;
  for (int32_t i = 0; i < nres; i++) o.resolutions[i] = res[i];
  qdc_pipeline_request_t pr = {.input = dir, .quantize = ""};
  qdc_pipeline_sources_t ps;
  memset(&ps, 0, sizeof ps);
  qdc_component_t* comps[QDC_MAX_COMPONENTS] = {NULL};
  int32_t count = 0;
  qd_threadpool_t* pool = NULL;
  qd_status_t s = qd_threadpool_create(1, a, &pool);
  if (!s) s = qdc_pipeline_sources_find(&pr, a, &ps);
  for (int32_t i = 0; i < ps.spec_count && !s; i++) {
    if (i == 2) { /* T5's text length follows the transformer's */
      ps.specs[i].overrides[0] = (qd_size_binding_t){"txt_tokens", qdc_component_binding(comps[0], "txt_tokens")};
      ps.specs[i].override_count = 1;
    }
    s = qdc_component_create_spec(&o, &ps.specs[i], a, &comps[count]);
    if (!s) count++;
  }
  for (int32_t i = 0; i < count && !s; i++) {
    s = qdc_choose_formats(&o, comps[i]);
    for (int32_t k = 0; !s && k < comps[i]->results[0].graph->weight_count; k++)
      comps[i]->weights[k].format = QD_WEIGHT_FORMAT_F32;
  }
  if (!s) s = qdc_emit_plan_multi(&o, comps, count, &ps.extras, pool);
  for (int32_t i = 0; i < count; i++) qdc_component_destroy(comps[i]);
  qdc_pipeline_sources_deinit(&ps);
  qd_threadpool_destroy(pool);
  return s;
}

/* Copies a plan section by section: keep(kind, name) chooses, edit_meta may change META's JSON, extra adds one
 * plan's sections under another (for mixing components). */
typedef bool (*keep_fn)(uint32_t kind, const char* name);
typedef void (*meta_fn)(cJSON* meta);

static void rewrite_plan(const char* src, const char* dst, keep_fn keep, meta_fn edit_meta, const char* donor,
                         const char* donor_component) {
  qd_allocator_t a = qd_allocator_system();
  qd_plan_file_t *pf, *df = NULL;
  QD_ASSERT_OK(qd_plan_file_open(src, a, 0, &pf));
  if (donor) QD_ASSERT_OK(qd_plan_file_open(donor, a, 0, &df));
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(dst, a, &w));
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    bool from_donor = donor && sec->kind != QD_PLAN_KIND_META && sec->kind != QD_PLAN_KIND_TOKN &&
                      strcmp(sec->name, donor_component) == 0;
    if (keep && !keep(sec->kind, sec->name)) continue;
    if (from_donor) sec = qd_plan_file_find(df, sec->kind, donor_component);
    ck_assert_ptr_nonnull(sec);
    QD_ASSERT_OK(qd_plan_writer_begin_section(w, sec->kind, sec->name, 0, 0));
    if (sec->kind == QD_PLAN_KIND_META && edit_meta) {
      cJSON* meta = cJSON_ParseWithLength(sec->data, (size_t)sec->size);
      edit_meta(meta);
      char* text = cJSON_PrintUnformatted(meta);
      QD_ASSERT_OK(qd_plan_writer_write(w, text, strlen(text)));
      free(text);
      cJSON_Delete(meta);
    } else {
      QD_ASSERT_OK(qd_plan_writer_write(w, sec->data, (size_t)sec->size));
    }
    QD_ASSERT_OK(qd_plan_writer_end_section(w));
  }
  QD_ASSERT_OK(qd_plan_writer_finish(w));
  qd_plan_writer_destroy(w);
  qd_plan_file_close(pf);
  qd_plan_file_close(df);
}

static void setup(void) {
  qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  qd_progress_set_default_sink(&quiet);
  snprintf(dir_path, sizeof dir_path, "%s/golden/pipeline_tiny", qd_test_data_dir());
  snprintf(io_path, sizeof io_path, "%s/golden/pipeline_tiny_io.safetensors", qd_test_data_dir());
  snprintf(tmp, sizeof tmp, "%s/golden_pipeline", qd_test_tmp_dir());
  snprintf(plan_f32, sizeof plan_f32, "%s/tiny_f32.qplan", tmp);
  snprintf(plan_bf16, sizeof plan_bf16, "%s/tiny_bf16.qplan", tmp);
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", tmp, tmp);
  ck_assert_int_eq(system(cmd), 0);
  QD_ASSERT_OK(qd_safetensors_open(io_path, qd_allocator_system(), &io));
  prompt = qd_safetensors_metadata_get(io, "prompt");
  seed = strtoull(qd_safetensors_metadata_get(io, "seed"), NULL, 10);
  ck_assert_ptr_nonnull(prompt);
  const qdc_resolution_t res[3] = {{W, H, 1}, {W, H, 2}, {32, 32, 1}};
  QD_ASSERT_OK(compile_f32_plan(dir_path, plan_f32, res, 3));
  /* The command-line compiler, as a user runs it (no GPU kernels: this plan runs on the CPU). */
  snprintf(cmd, sizeof cmd, "'%s' compile '%s' -o '%s' --quant none --resolutions %dx%d --target none -q",
           getenv("QD_QDC"), dir_path, plan_bf16, W, H);
  ck_assert_int_eq(system(cmd), 0);
}

static void teardown(void) { qd_safetensors_close(io); }

/* --- running ------------------------------------------------------------------------------------------------------ */

typedef struct trace {
  int32_t clip_ids[TXT], t5_ids[TXT];
  float prompt_embeds[TXT * JOINT], pooled[POOLED];
  float noise[2 * LAT];
  float latents[STEPS][2 * LAT];
  float model_t[STEPS];
  float image[2 * 3 * H * W];
  size_t counts[5];
} trace_t;

static void on_tokens(void* u, const int32_t* c, size_t nc, const int32_t* t, size_t nt) {
  trace_t* tr = u;
  ck_assert_uint_eq(nc, TXT);
  ck_assert_uint_eq(nt, TXT);
  memcpy(tr->clip_ids, c, sizeof tr->clip_ids);
  memcpy(tr->t5_ids, t, sizeof tr->t5_ids);
  tr->counts[0]++;
}

static void on_embeddings(void* u, const float* pe, size_t npe, const float* pooled, size_t np) {
  trace_t* tr = u;
  ck_assert_uint_eq(npe, TXT * JOINT);
  ck_assert_uint_eq(np, POOLED);
  memcpy(tr->prompt_embeds, pe, sizeof tr->prompt_embeds);
  memcpy(tr->pooled, pooled, sizeof tr->pooled);
  tr->counts[1]++;
}

static void on_noise(void* u, const float* x, size_t n) {
  trace_t* tr = u;
  ck_assert_uint_le(n, 2 * LAT);
  memcpy(tr->noise, x, n * sizeof(float));
  tr->counts[2]++;
}

static void on_step(void* u, int32_t step, const float* x, size_t n, float model_t, float sigma) {
  trace_t* tr = u;
  ck_assert_int_lt(step, STEPS);
  ck_assert_uint_le(n, 2 * LAT);
  memcpy(tr->latents[step], x, n * sizeof(float));
  tr->model_t[step] = model_t;
  tr->counts[3]++;
}

static void on_image(void* u, const float* x, size_t n) {
  trace_t* tr = u;
  ck_assert_uint_le(n, 2 * 3 * H * W);
  memcpy(tr->image, x, n * sizeof(float));
  tr->counts[4]++;
}

static qd_generator_t* open_generator(const char* plan_path, int threads, qd_plan_t** out_plan) {
  QD_ASSERT_OK(qd_plan_open(plan_path, qd_allocator_system(), 0, out_plan));
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.threads = threads;
  qd_generator_t* g = NULL;
  QD_ASSERT_OK(qd_generator_create(*out_plan, &o, qd_allocator_system(), &g));
  return g;
}

static void generate(qd_generator_t* g, int32_t batch, trace_t* tr, qd_generate_result_t* r) {
  memset(tr, 0, sizeof *tr);
  qd_generator_trace_t t = {tr, on_tokens, on_embeddings, on_noise, on_step, on_image};
  qd_generator_set_trace(g, &t);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = prompt;
  p.seed = seed;
  p.steps = STEPS;
  p.guidance = 3.5f;
  p.width = W;
  p.height = H;
  p.batch = batch;
  QD_ASSERT_OK(qd_generator_generate(g, &p, r));
  qd_generator_set_trace(g, NULL);
}

static const void* io_tensor(const char* name, qd_dtype_t dtype, uint64_t numel) {
  const qd_tensor_info_t* t = qd_safetensors_find(io, name);
  ck_assert_msg(t != NULL, "no golden tensor '%s'", name);
  ck_assert_int_eq(t->dtype, dtype);
  ck_assert_uint_eq(t->numel, numel);
  return t->data;
}

static double check_close(const char* what, const float* got, const char* name, size_t n, double tol) {
  double rel, max_abs;
  qd_compare_f32(got, io_tensor(name, QD_DTYPE_F32, n), n, &rel, &max_abs);
  printf("  %-28s relative L2 %.3e, max |diff| %.3e\n", what, rel, max_abs);
  ck_assert_msg(rel <= tol, "%s: relative L2 %.3e > %.1e (max |diff| %.3e)", what, rel, tol, max_abs);
  return rel;
}

/* Pixels that differ, and by at most how much. */
static int pixel_diff(const uint8_t* a, const uint8_t* b, size_t n, int* out_max) {
  int count = 0, mx = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    if (d) count++;
    if (d > mx) mx = d;
  }
  *out_max = mx;
  return count;
}

/* --- the comparison with diffusers -------------------------------------------------------------------------------- */

START_TEST(fp32_plan_matches_flux_pipeline) {
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_f32, 2, &plan);
  ck_assert_int_eq(qd_generator_default_steps(g), 28);
  ck_assert(qd_generator_default_guidance(g) == 3.5f);
  static trace_t tr;
  qd_generate_result_t r;
  generate(g, 1, &tr, &r);
  ck_assert_uint_eq(tr.counts[0], 1);
  ck_assert_uint_eq(tr.counts[3], STEPS);
  printf("fp32 plan vs FluxPipeline (%s, seed %llu, %d steps):\n", prompt, (unsigned long long)seed, STEPS);
  ck_assert_int_eq(memcmp(tr.clip_ids, io_tensor("clip_ids", QD_DTYPE_I32, TXT), sizeof tr.clip_ids), 0);
  ck_assert_int_eq(memcmp(tr.t5_ids, io_tensor("t5_ids", QD_DTYPE_I32, TXT), sizeof tr.t5_ids), 0);
  check_close("prompt_embeds (T5)", tr.prompt_embeds, "prompt_embeds", TXT * JOINT, 1e-4);
  check_close("pooled_prompt_embeds (CLIP)", tr.pooled, "pooled_prompt_embeds", POOLED, 1e-4);
  ck_assert_int_eq(memcmp(tr.noise, io_tensor("noise", QD_DTYPE_F32, LAT), LAT * sizeof(float)), 0);
  ck_assert_int_eq(memcmp(tr.model_t, io_tensor("timestep", QD_DTYPE_F32, STEPS), sizeof tr.model_t), 0);
  printf("  noise, timesteps             bit for bit\n");
  for (int i = 0; i < STEPS; i++) {
    char name[32], what[48];
    snprintf(name, sizeof name, "latents_%d", i);
    snprintf(what, sizeof what, "latents after step %d", i + 1);
    check_close(what, tr.latents[i], name, LAT, 1e-4);
  }
  check_close("image (VAE output)", tr.image, "image", 3 * H * W, 1e-4);
  int mx;
  int differ = pixel_diff(r.pixels, io_tensor("image_u8", QD_DTYPE_U8, H * W * 3), H * W * 3, &mx);
  printf("  8-bit pixels                 %d of %d values differ, by at most %d\n", differ, H * W * 3, mx);
  ck_assert_int_le(mx, 1);
  ck_assert_int_eq(r.width, W);
  ck_assert_int_eq(r.height, H);
  ck_assert_int_eq(r.steps, STEPS);
  ck_assert_str_eq(r.prompt, prompt);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

START_TEST(batch_of_two_matches_flux_pipeline) {
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_f32, 2, &plan);
  static trace_t tr;
  qd_generate_result_t r;
  generate(g, 2, &tr, &r);
  printf("fp32 plan, num_images_per_prompt=2:\n");
  ck_assert_int_eq(memcmp(tr.noise, io_tensor("noise_b2", QD_DTYPE_F32, 2 * LAT), 2 * LAT * sizeof(float)), 0);
  check_close("latents after the last step", tr.latents[STEPS - 1], "latents_3_b2", 2 * LAT, 1e-4);
  int mx;
  int differ = pixel_diff(r.pixels, io_tensor("image_u8_b2", QD_DTYPE_U8, 2 * H * W * 3), 2 * H * W * 3, &mx);
  printf("  8-bit pixels                 %d of %d values differ, by at most %d\n", differ, 2 * H * W * 3, mx);
  ck_assert_int_le(mx, 1);
  ck_assert_int_eq(r.batch, 2);
  /* Two draws from one generator: the images differ. */
  ck_assert(memcmp(r.pixels, r.pixels + r.image_bytes, r.image_bytes) != 0);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

START_TEST(bf16_plan_is_close) {
  /* qdc compile's plan stores bf16 weights (relative error ~2^-9 each): the same pipeline within a few levels. */
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_bf16, 0, &plan);
  static trace_t tr;
  qd_generate_result_t r;
  generate(g, 1, &tr, &r);
  printf("bf16 plan (qdc compile) vs FluxPipeline:\n");
  ck_assert_int_eq(memcmp(tr.noise, io_tensor("noise", QD_DTYPE_F32, LAT), LAT * sizeof(float)), 0);
  check_close("pooled_prompt_embeds (CLIP)", tr.pooled, "pooled_prompt_embeds", POOLED, 2e-2);
  check_close("latents after the last step", tr.latents[STEPS - 1], "latents_3", LAT, 2e-2);
  int mx;
  int differ = pixel_diff(r.pixels, io_tensor("image_u8", QD_DTYPE_U8, H * W * 3), H * W * 3, &mx);
  printf("  8-bit pixels                 %d of %d values differ, by at most %d\n", differ, H * W * 3, mx);
  ck_assert_int_le(mx, 8);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

/* --- determinism, resolutions, progress ---------------------------------------------------------------------------- */

static uint64_t steps_seen;
static bool count_steps(void* user, const char* label, uint64_t done, uint64_t total, double elapsed) {
  (void)user;
  (void)elapsed;
  ck_assert_str_eq(label, "denoise");
  ck_assert_uint_eq(done, steps_seen + 1);
  ck_assert_uint_eq(total, 3);
  steps_seen = done;
  return true;
}

static bool cancel_at_two(void* user, const char* label, uint64_t done, uint64_t total, double elapsed) {
  (void)user;
  (void)label;
  (void)total;
  (void)elapsed;
  return done < 2;
}

START_TEST(same_inputs_same_pixels) {
  qd_plan_t *p1, *p2;
  qd_generator_t* g1 = open_generator(plan_f32, 1, &p1);
  qd_generator_t* g2 = open_generator(plan_f32, 2, &p2);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a lighthouse on a cliff";
  p.seed = 99;
  p.steps = 3;
  qd_progress_sink_t sink = {QD_PROGRESS_QUIET, NULL, count_steps, NULL, 0};
  p.progress = &sink;
  qd_generate_result_t a, b, c;
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g1, &p, &a));
  ck_assert_uint_eq(steps_seen, 3);
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g2, &p, &b));
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g1, &p, &c));
  ck_assert_int_eq(a.width, W); /* 0 x 0: the plan's first resolution */
  ck_assert_int_eq(memcmp(a.pixels, b.pixels, a.image_bytes), 0); /* 1 thread vs 2 */
  ck_assert_int_eq(memcmp(a.pixels, c.pixels, a.image_bytes), 0); /* run after run */
  qd_generate_result_deinit(&c);
  /* Another seed, another image; another resolution of the same plan, then back. */
  p.seed = 100;
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g1, &p, &c));
  ck_assert(memcmp(a.pixels, c.pixels, a.image_bytes) != 0);
  qd_generate_result_deinit(&c);
  p.width = p.height = 32;
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g1, &p, &c));
  ck_assert_int_eq(c.width, 32);
  ck_assert_uint_eq(c.image_bytes, 32 * 32 * 3);
  qd_generate_result_deinit(&c);
  p.width = p.height = 0;
  p.seed = 99;
  steps_seen = 0;
  QD_ASSERT_OK(qd_generator_generate(g1, &p, &c));
  ck_assert_int_eq(memcmp(a.pixels, c.pixels, a.image_bytes), 0);
  qd_generate_result_deinit(&c);
  /* Cancelling from the progress callback stops after that step. */
  qd_progress_sink_t cancel = {QD_PROGRESS_QUIET, NULL, cancel_at_two, NULL, 0};
  p.progress = &cancel;
  QD_ASSERT_DETAIL(qd_generator_generate(g1, &p, &c), QD_E_CANCELLED);
  ck_assert_ptr_null(c.pixels);
  qd_generate_result_deinit(&a);
  qd_generate_result_deinit(&b);
  qd_generator_destroy(g1);
  qd_generator_destroy(g2);
  qd_plan_close(p1);
  qd_plan_close(p2);
}
END_TEST

START_TEST(result_png_carries_parameters) {
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_f32, 1, &plan);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "ünïcode ☃ prompt";
  p.seed = 12345678901234ull;
  p.steps = 2;
  p.batch = 2;
  qd_generate_result_t r;
  QD_ASSERT_OK(qd_generator_generate(g, &p, &r));
  char path[600];
  snprintf(path, sizeof path, "%s/result.png", tmp);
  QD_ASSERT_OK(qd_generate_result_write_png(&r, 1, path));
  QD_ASSERT_DETAIL(qd_generate_result_write_png(&r, 2, path), QD_E_INVALID_ARGUMENT);
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  ck_assert(png_image_begin_read_from_file(&img, path));
  img.format = PNG_FORMAT_RGB;
  uint8_t* px = malloc(PNG_IMAGE_SIZE(img));
  ck_assert(png_image_finish_read(&img, NULL, px, 0, NULL));
  ck_assert_int_eq(memcmp(px, r.pixels + r.image_bytes, r.image_bytes), 0);
  free(px);
  /* The text chunks, read as bytes: keys and values are stored verbatim. */
  FILE* f = fopen(path, "rb");
  static char bytes[1 << 16];
  size_t n = fread(bytes, 1, sizeof bytes, f);
  fclose(f);
  const char* want[] = {"seed", "12345678901234", "steps", "guidance", "3.5", "model", "FluxPipeline/tiny-pipeline",
                        "qd_version", "batch", "2/2", "ünïcode ☃ prompt", "iTXt"};
  for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
    ck_assert_msg(memmem(bytes, n, want[k], strlen(want[k])) != NULL, "'%s' is not in the PNG", want[k]);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

/* A schnell-type pipeline: the transformer without a guidance embedder (seeded random weights from qdc synth, the
 * other components from the golden directory) and FLUX.1-schnell's scheduler config: 4 steps by default, no
 * guidance, sigmas 1, 0.75, 0.5, 0.25. */
static float schnell_t[STEPS];
static void on_schnell_step(void* u, int32_t step, const float* x, size_t n, float model_t, float sigma) {
  (void)u;
  (void)x;
  (void)n;
  (void)sigma;
  ck_assert_int_lt(step, STEPS);
  schnell_t[step] = model_t;
}

START_TEST(schnell_defaults) {
  char d[600], plan_path[600], cmd[4096];
  snprintf(d, sizeof d, "%s/schnell", tmp);
  snprintf(plan_path, sizeof plan_path, "%s/schnell.qplan", tmp);
  snprintf(cmd, sizeof cmd,
           "set -e; rm -rf '%s'; mkdir -p '%s/transformer' '%s/scheduler'; "
           "cp -R '%s/text_encoder' '%s/text_encoder_2' '%s/vae' '%s/tokenizer' '%s/tokenizer_2' '%s/model_index.json' '%s/'; "
           "'%s' synth '%s/models/flux-transformer.json' --config tiny-pipeline-schnell --seed 5 --dtype f32 -q "
           "-o '%s/transformer/diffusion_pytorch_model.safetensors'; "
           "echo '{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"num_train_timesteps\": 1000, \"shift\": 1.0, "
           "\"use_dynamic_shifting\": false}' > '%s/scheduler/scheduler_config.json'; "
           "'%s' compile '%s' -o '%s' --quant none --resolutions %dx%d --target none -q",
           d, d, d, dir_path, dir_path, dir_path, dir_path, dir_path, dir_path, d, getenv("QD_QDC"),
           getenv("QD_SOURCE_ROOT"), d, d, getenv("QD_QDC"), d, plan_path, W, H);
  ck_assert_int_eq(system(cmd), 0);
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_path, 1, &plan);
  ck_assert_int_eq(qd_generator_default_steps(g), 4);
  ck_assert(isnan(qd_generator_default_guidance(g)));
  qd_generator_trace_t t = {NULL, NULL, NULL, NULL, on_schnell_step, NULL};
  qd_generator_set_trace(g, &t);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a fast fox";
  qd_generate_result_t r, r2;
  QD_ASSERT_OK(qd_generator_generate(g, &p, &r));
  ck_assert_int_eq(r.steps, 4);
  ck_assert(isnan(r.guidance));
  const float want[STEPS] = {1.0f, 0.75f, 0.5f, 0.25f};
  ck_assert_int_eq(memcmp(schnell_t, want, sizeof want), 0);
  /* A guidance scale is ignored (with a warning), as FluxPipeline ignores it for schnell. */
  p.guidance = 7.0f;
  QD_ASSERT_OK(qd_generator_generate(g, &p, &r2));
  ck_assert_int_eq(memcmp(r.pixels, r2.pixels, r.image_bytes), 0);
  char png_path[600];
  snprintf(png_path, sizeof png_path, "%s/schnell.png", tmp);
  QD_ASSERT_OK(qd_generate_result_write_png(&r, 0, png_path));
  qd_generate_result_deinit(&r);
  qd_generate_result_deinit(&r2);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

/* --- rules -------------------------------------------------------------------------------------------------------- */

START_TEST(bad_requests_are_named) {
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_f32, 1, &plan);
  qd_generate_params_t p;
  qd_generate_result_t r;
  qd_generate_params_init(&p);
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_PROMPT);
  p.prompt = "x";
  p.steps = 1001;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_STEPS);
  p.steps = -2;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_STEPS);
  p.steps = 1;
  p.guidance = 101;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_GUIDANCE);
  p.guidance = -INFINITY;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_GUIDANCE);
  p.guidance = NAN;
  p.width = 50;
  p.height = 48;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_SIZE);
  p.width = 64;
  p.batch = 65;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PIPELINE_BATCH);
  /* Sizes and batches the plan lacks: the message lists what it has. */
  p.batch = 3;
  qd_status_t s = qd_generator_generate(g, &p, &r);
  ck_assert(qd_status_is(s, QD_E_PLAN_NO_RESOLUTION));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "64x48 (batch 1), 64x48 (batch 2), 32x32 (batch 1)"));
  qd_status_free(s);
  p.batch = 1;
  p.width = 1024;
  p.height = 1024;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_PLAN_NO_RESOLUTION);
  ck_assert_ptr_null(r.pixels);
  /* A prompt far too long for the tokenizers (past their 1 MiB limit). */
  size_t big = (1u << 20) + 10;
  char* huge = malloc(big + 1);
  memset(huge, 'a', big);
  huge[big] = '\0';
  p.prompt = huge;
  p.width = p.height = 0;
  QD_ASSERT_DETAIL(qd_generator_generate(g, &p, &r), QD_E_TOK_PROMPT_TOO_LONG);
  free(huge);
  /* Unknown characters and invalid UTF-8 are the tokenizers' business: they generate. */
  p.prompt = "\xff\xfe \xf0\x9f\xa6\x8a \xe2\x98\x83";
  QD_ASSERT_OK(qd_generator_generate(g, &p, &r));
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  /* Options. */
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.device = QD_GENERATOR_DEVICE_CUDA;
  /* Without a GPU the driver's error comes at create, not at the first generation; with one, a device index the
   * machine lacks is named. (tests/gpu/test_gpu_pipeline.c runs the CUDA pipeline.) */
  qd_status_t cs = qd_generator_create(plan, &o, qd_allocator_system(), &g);
  if (cs) {
    ck_assert_msg(qd_status_detail(cs) == QD_E_CUDA_NO_DRIVER || qd_status_detail(cs) == QD_E_CUDA_NO_DEVICE,
                  "CUDA generator without a GPU: %s", qd_status_message(cs));
    qd_status_free(cs);
  } else {
    qd_generator_destroy(g);
    o.device_index = 4096;
    QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_DEVICE);
    o.device_index = 0;
  }
  /* Blocks kept on the GPU are a choice of the streamed schedules only. */
  o.offload = QD_OFFLOAD_MODEL;
  o.keep_bytes = 1 << 20;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  o.keep_bytes = 0;
  o.offload = QD_OFFLOAD_NONE;
  o.device = (qd_generator_device_t)7;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_DEVICE);
  qd_generator_options_init(&o);
  o.threads = -1;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  o.threads = 0;
  o.offload = (qd_offload_mode_t)9;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  o.offload = QD_OFFLOAD_MODEL; /* the CPU keeps every weight in host memory: asking for offload is an error */
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  qd_plan_close(plan);
}
END_TEST

static bool drop_t5_tokenizer(uint32_t kind, const char* name) {
  return !(kind == QD_PLAN_KIND_TOKN && strcmp(name, "tokenizer_2") == 0);
}

static bool only_transformer(uint32_t kind, const char* name) {
  return kind == QD_PLAN_KIND_META || strcmp(name, "transformer") == 0;
}

static void meta_only_transformer(cJSON* meta) {
  cJSON* comps = cJSON_GetObjectItem(meta, "components");
  while (cJSON_GetArraySize(comps) > 1) cJSON_DeleteItemFromArray(comps, 1);
}

static void meta_karras(cJSON* meta) {
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(meta, "scheduler"), "use_karras_sigmas", cJSON_CreateTrue());
}

static void meta_no_scheduler(cJSON* meta) { cJSON_DeleteItemFromObject(meta, "scheduler"); }

static void expect_create_fails(const char* plan_path, qd_error_detail_t detail, const char* fragment) {
  qd_plan_t* plan;
  QD_ASSERT_OK(qd_plan_open(plan_path, qd_allocator_system(), 0, &plan));
  qd_generator_t* g = NULL;
  qd_status_t s = qd_generator_create(plan, NULL, qd_allocator_system(), &g);
  char msg[2048];
  qd_status_format(s, msg, sizeof msg);
  printf("  %-30s %s\n", qd_error_detail_name(qd_status_detail(s)), msg);
  ck_assert_msg(qd_status_detail(s) == detail, "expected %s: %s", qd_error_detail_name(detail), msg);
  ck_assert_msg(strstr(msg, fragment) != NULL, "'%s' is not in: %s", fragment, msg);
  ck_assert_ptr_null(g);
  qd_status_free(s);
  qd_plan_close(plan);
}

START_TEST(plans_missing_pieces_are_named) {
  char bad[600];
  snprintf(bad, sizeof bad, "%s/bad.qplan", tmp);
  rewrite_plan(plan_f32, bad, drop_t5_tokenizer, NULL, NULL, NULL);
  expect_create_fails(bad, QD_E_PIPELINE_NO_TOKENIZER, "tokenizer_2");
  rewrite_plan(plan_f32, bad, only_transformer, meta_only_transformer, NULL, NULL);
  expect_create_fails(bad, QD_E_PLAN_NO_COMPONENT, "no component 'text_encoder' (the CLIP text encoder); the plan "
                      "has 'transformer'");
  rewrite_plan(plan_f32, bad, NULL, meta_karras, NULL, NULL);
  expect_create_fails(bad, QD_E_PIPELINE_SCHEDULER, "use_karras_sigmas");
  /* T5 from another model (the tiny T5 golden: 24 tokens) where the transformer reads 16. */
  char t5_plan[600], weights[512], graph[512], cmd[2048];
  snprintf(t5_plan, sizeof t5_plan, "%s/t5_tiny.qplan", tmp);
  snprintf(weights, sizeof weights, "%s/golden/t5_tiny_weights.safetensors", qd_test_data_dir());
  snprintf(graph, sizeof graph, "%s/models/t5-xxl-encoder.json", getenv("QD_SOURCE_ROOT"));
  snprintf(cmd, sizeof cmd, "'%s' compile '%s' --graph '%s' --config tiny --component text_encoder_2 -o '%s' "
           "--quant none --resolutions %dx%d --target none -q", getenv("QD_QDC"), weights, graph, t5_plan, W, H);
  ck_assert_int_eq(system(cmd), 0);
  rewrite_plan(plan_f32, bad, NULL, NULL, t5_plan, "text_encoder_2");
  expect_create_fails(bad, QD_E_PIPELINE_COMPONENTS_DISAGREE, "T5's last_hidden_state is [1, 24, 32]");
  /* Without a scheduler config the plan gets FLUX.1-dev's (guidance-distilled transformer): the same run. */
  rewrite_plan(plan_f32, bad, NULL, meta_no_scheduler, NULL, NULL);
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(bad, 1, &plan);
  static trace_t tr;
  qd_generate_result_t r;
  generate(g, 1, &tr, &r);
  check_close("latents, default scheduler", tr.latents[STEPS - 1], "latents_3", LAT, 1e-4);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

/* Fails the N-th allocation for every N through create and a one-step generation: each N gives a clean
 * OUT_OF_MEMORY (or success once N is past the last allocation) and frees everything. */
START_TEST(allocation_failure_sweep) {
  qd_plan_t* plan;
  QD_ASSERT_OK(qd_plan_open(plan_f32, qd_allocator_system(), 0, &plan));
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.threads = 1;
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a fox";
  p.steps = 1;
  p.width = p.height = 32;
  uint64_t n = 1;
  for (;; n++) {
    qd_test_allocator_t ta;
    qd_test_allocator_init(&ta, qd_allocator_system(), n);
    qd_allocator_t a = qd_test_allocator_as_allocator(&ta);
    qd_generator_t* g = NULL;
    qd_generate_result_t r;
    memset(&r, 0, sizeof r);
    qd_status_t s = qd_generator_create(plan, &o, a, &g);
    if (s)
      ck_assert_ptr_null(g);
    else
      s = qd_generator_generate(g, &p, &r);
    bool done = !s && ta.failures == 0;
    if (s) {
      ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "failing allocation %llu: %s",
                    (unsigned long long)n, qd_status_message(s));
      ck_assert_ptr_null(r.pixels);
      qd_status_free(s);
    }
    qd_generate_result_deinit(&r);
    qd_generator_destroy(g);
    ck_assert_msg(ta.live_count == 0 && ta.live_bytes == 0, "failing allocation %llu: %lld allocations leaked",
                  (unsigned long long)n, (long long)ta.live_count);
    if (done) break;
    ck_assert_msg(n < 100000, "the sweep does not end");
  }
  printf("allocation-failure sweep: %llu allocations, each failed once\n", (unsigned long long)n - 1);
  qd_plan_close(plan);
}
END_TEST

/* --- qdrun -------------------------------------------------------------------------------------------------------- */

/* Runs qdrun with stdout to out_file and stderr to out_file.err. */
static int run(const char* args, const char* out_file) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "'%s' %s > '%s' 2> '%s.err'", getenv("QD_QDRUN"), args, out_file, out_file);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char* slurp(const char* path, size_t* out_n) {
  FILE* f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (out_n) *out_n = n;
  char* copy = malloc(n + 1);
  memcpy(copy, buf, n + 1);
  return copy;
}

START_TEST(qdrun_generates_pngs) {
  char args[3000], log[600], out1[600], out2[600];
  snprintf(log, sizeof log, "%s/qdrun.log", tmp);
  snprintf(out1, sizeof out1, "%s/q1.png", tmp);
  snprintf(out2, sizeof out2, "%s/q2.png", tmp);
  snprintf(args, sizeof args, "'%s' --prompt 'a red fox' --seed 7 --steps 3 -o '%s' --json --threads 1", plan_bf16, out1);
  ck_assert_int_eq(run(args, log), 0);
  char* text = slurp(log, NULL);
  cJSON* doc = cJSON_Parse(text);
  ck_assert_msg(doc != NULL, "not one JSON document: %s", text);
  ck_assert_str_eq(cJSON_GetObjectItem(doc, "seed")->valuestring, "7");
  ck_assert_int_eq(cJSON_GetObjectItem(doc, "steps")->valueint, 3);
  ck_assert_str_eq(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "images"), 0)->valuestring, out1);
  ck_assert(cJSON_IsNumber(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "seconds"), "denoise")));
  cJSON_Delete(doc);
  free(text);
  /* Another process, another thread count: the same file. */
  snprintf(args, sizeof args, "'%s' --prompt 'a red fox' --seed 7 --steps 3 -o '%s' --threads 2", plan_bf16, out2);
  ck_assert_int_eq(run(args, log), 0);
  text = slurp(log, NULL);
  ck_assert_ptr_nonnull(strstr(text, "denoise"));
  ck_assert_ptr_nonnull(strstr(text, "decode"));
  free(text);
  size_t n1, n2;
  char* a = slurp(out1, &n1);
  char* b = slurp(out2, &n2);
  ck_assert_uint_eq(n1, n2);
  ck_assert_int_eq(memcmp(a, b, n1), 0);
  free(a);
  free(b);
  /* What the API gives for the same request, pixel for pixel. */
  qd_plan_t* plan;
  qd_generator_t* g = open_generator(plan_bf16, 1, &plan);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a red fox";
  p.seed = 7;
  p.steps = 3;
  qd_generate_result_t r;
  QD_ASSERT_OK(qd_generator_generate(g, &p, &r));
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  ck_assert(png_image_begin_read_from_file(&img, out1));
  img.format = PNG_FORMAT_RGB;
  uint8_t* px = malloc(PNG_IMAGE_SIZE(img));
  ck_assert(png_image_finish_read(&img, NULL, px, 0, NULL));
  ck_assert_int_eq(memcmp(px, r.pixels, r.image_bytes), 0);
  free(px);
  qd_generate_result_deinit(&r);
  qd_generator_destroy(g);
  qd_plan_close(plan);
}
END_TEST

START_TEST(qdrun_errors) {
  char args[3000], log[600];
  snprintf(log, sizeof log, "%s/qdrun_err.log", tmp);
  snprintf(args, sizeof args, "'%s' --prompt x --batch 3 -o '%s/never.png'", plan_bf16, tmp);
  char err[640];
  snprintf(err, sizeof err, "%s.err", log);
  ck_assert_int_eq(run(args, log), 1);
  char* text = slurp(err, NULL);
  ck_assert_ptr_nonnull(strstr(text, "was not compiled for 64x48 (batch 3); it has 64x48 (batch 1)"));
  free(text);
  snprintf(args, sizeof args, "'%s/never.png'", tmp);
  ck_assert_int_eq(access(args + 1, F_OK), -1);
  snprintf(args, sizeof args, "'%s' --prompt x --offload model -o '%s/never.png'", plan_bf16, tmp);
  ck_assert_int_eq(run(args, log), 1);
  text = slurp(err, NULL);
  ck_assert_ptr_nonnull(strstr(text, "applies to CUDA generation"));
  free(text);
  /* This machine's GPU, or its lack of one: either way the tiny plan (head size 8, which the GPU kernels do not
   * take) cannot generate on CUDA, and says so with exit status 1. */
  snprintf(args, sizeof args, "'%s' --prompt x --device cuda -o '%s/never.png'", plan_bf16, tmp);
  ck_assert_int_eq(run(args, log), 1);
  text = slurp(err, NULL);
  ck_assert_ptr_nonnull(strstr(text, "qdrun: error: "));
  free(text);
  snprintf(args, sizeof args, "'%s' --prompt x --offload sideways", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --width 64", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --steps 0", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "--prompt x");
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --device tpu", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --device cuda --vram-budget lots", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --device cuda --offload group --keep -1G", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  snprintf(args, sizeof args, "'%s' --prompt x --vae-tiling sometimes", plan_bf16);
  ck_assert_int_eq(run(args, log), 2);
  text = slurp(err, NULL);
  ck_assert_ptr_nonnull(strstr(text, "--vae-tiling takes auto, on or off, not 'sometimes'"));
  free(text);
  /* A budget picks the schedule itself: with --offload too it is refused before anything loads. */
  snprintf(args, sizeof args, "'%s' --prompt x --device cuda --offload model --vram-budget 8G -o '%s/never.png'",
           plan_bf16, tmp);
  ck_assert_int_eq(run(args, log), 1);
  text = slurp(err, NULL);
  ck_assert_ptr_nonnull(strstr(text, "picks the offload schedule itself"));
  free(text);
}
END_TEST

/* A copy of plan `src` at `dst` whose SCHD section holds `text` instead. */
static void rewrite_schedules(const char* src, const char* dst, const char* text) {
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(src, qd_allocator_system(), 0, &pf));
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(dst, qd_allocator_system(), &w));
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    bool schd = sec->kind == QD_PLAN_KIND_SCHD;
    QD_ASSERT_OK(qd_plan_writer_begin_section(w, sec->kind, sec->name, 0, (size_t)1 << sec->align_log2));
    QD_ASSERT_OK(qd_plan_writer_write(w, schd ? text : sec->data, schd ? strlen(text) : (size_t)sec->size));
    QD_ASSERT_OK(qd_plan_writer_end_section(w));
  }
  QD_ASSERT_OK(qd_plan_writer_finish(w));
  qd_plan_writer_destroy(w);
  qd_plan_file_close(pf);
}

/* A damaged schedule record is refused by name, never read as sizes. */
START_TEST(damaged_schedule_records_are_named) {
  char path[600];
  snprintf(path, sizeof path, "%s/schd.qplan", tmp);
  static const struct {
    const char* text;
    qd_error_detail_t detail;
    const char* says;
  } cases[] = {
      {"{\"schedules_version\": 1, \"sizes\": [", QD_E_PLAN_CONTENT_JSON, "not valid JSON"},
      {"{\"schedules_version\": 2, \"sizes\": []}", QD_E_PLAN_CONTENT_FIELD, "schedules_version"},
      {"{\"schedules_version\": 1, \"sizes\": [{\"width\": 64, \"height\": 48, \"batch\": 1, \"components\": {}}]}",
       QD_E_PLAN_CONTENT_FIELD, "'text_encoder' has no byte count 'resident'"},
      {"{\"schedules_version\": 1, \"sizes\": [{\"width\": 64, \"height\": 48, \"batch\": 1, \"components\": "
       "{\"text_encoder\": {\"resident\": 1, \"working\": 1, \"largest_block\": 0, \"largest_layer\": 0, "
       "\"unblocked\": 0, \"blocked\": 5, \"conditioning\": 0, \"largest_conditioning_block\": 0}}}]}",
       QD_E_PLAN_CONTENT_FIELD, "more bytes in blocks than it holds"},
      {"{\"schedules_version\": 1, \"sizes\": [{\"width\": 64, \"height\": 48, \"batch\": 1, \"components\": "
       "{\"text_encoder\": {\"resident\": -1}}}]}",
       QD_E_PLAN_CONTENT_FIELD, "byte count 'resident'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    rewrite_schedules(plan_bf16, path, cases[i].text);
    qd_plan_t* plan;
    QD_ASSERT_OK(qd_plan_open(path, qd_allocator_system(), 0, &plan));
    qd_schedule_estimate_t e;
    qd_status_t s = qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_GROUP, 0, &e);
    ck_assert_msg(s != NULL, "case %zu read", i);
    ck_assert_int_eq(qd_status_detail(s), cases[i].detail);
    ck_assert_msg(strstr(qd_status_message(s), cases[i].says) && strstr(qd_status_message(s), "schd.qplan"),
                  "case %zu: %s", i, qd_status_message(s));
    qd_status_free(s);
    qd_plan_close(plan);
  }
  /* A record for other sizes only: this size is computed. */
  rewrite_schedules(plan_bf16, path, "{\"schedules_version\": 1, \"sizes\": []}");
  qd_plan_t* plan;
  QD_ASSERT_OK(qd_plan_open(path, qd_allocator_system(), 0, &plan));
  qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS];
  bool recorded = true;
  QD_ASSERT_OK(qd_schedule_plan_sizes(plan, W, H, 1, sizes, &recorded));
  ck_assert(!recorded);
  qd_plan_close(plan);
}
END_TEST

/* Offload schedules sized from the plan: their order, what they move, and the choice under a budget. */
START_TEST(offload_schedules_from_the_plan) {
  qd_plan_t* plan;
  QD_ASSERT_OK(qd_plan_open(plan_bf16, qd_allocator_system(), 0, &plan));
  /* The modes' names, both ways. */
  for (int m = QD_OFFLOAD_NONE; m <= QD_OFFLOAD_SEQUENTIAL; m++) {
    qd_offload_mode_t back = QD_OFFLOAD_NONE;
    ck_assert(qd_offload_mode_parse(qd_offload_mode_name((qd_offload_mode_t)m), &back));
    ck_assert_int_eq(back, m);
  }
  ck_assert_str_eq(qd_offload_mode_name(QD_OFFLOAD_SEQUENTIAL), "sequential");
  ck_assert_str_eq(qd_offload_mode_name((qd_offload_mode_t)9), "?");
  qd_offload_mode_t unused;
  ck_assert(!qd_offload_mode_parse("sideways", &unused));
  /* qdc recorded the sizes (SCHD); they are what the programs give. */
  qd_schedule_sizes_t recorded[QD_SCHEDULE_COMPONENTS], computed[QD_SCHEDULE_COMPONENTS];
  bool was_recorded = false;
  QD_ASSERT_OK(qd_schedule_plan_sizes(plan, W, H, 1, recorded, &was_recorded));
  ck_assert(was_recorded);
  QD_ASSERT_OK(qd_schedule_plan_sizes_computed(plan, W, H, 1, computed));
  ck_assert(memcmp(recorded, computed, sizeof recorded) == 0);
  ck_assert_uint_gt(computed[QD_SCHEDULE_TRANSFORMER].conditioning, 0);
  qd_schedule_estimate_t none, model, group, kept, sequential;
  QD_ASSERT_OK(qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_SEQUENTIAL, 0, &sequential));
  QD_ASSERT_OK(qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_NONE, 0, &none));
  QD_ASSERT_OK(qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_MODEL, 0, &model));
  QD_ASSERT_OK(qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_GROUP, 0, &group));
  QD_ASSERT_OK(qd_schedule_estimate(plan, W, H, 1, QD_OFFLOAD_GROUP, 1ull << 40, &kept));
  ck_assert_uint_gt(none.peak, model.peak);
  ck_assert_uint_ge(model.peak, group.peak);
  ck_assert_uint_ge(group.peak, sequential.peak);
  ck_assert_uint_eq(group.streamed_per_step, sequential.streamed_per_step);
  ck_assert_uint_le(computed[QD_SCHEDULE_TRANSFORMER].largest_layer, computed[QD_SCHEDULE_TRANSFORMER].largest_block);
  ck_assert_uint_gt(computed[QD_SCHEDULE_TRANSFORMER].largest_layer, 0);
  ck_assert_uint_eq(none.uploaded_per_image, 0);
  uint64_t weights = 0;
  for (int32_t c = 0; c < qd_plan_component_count(plan); c++) weights += qd_plan_component(plan, c)->weight_bytes;
  ck_assert_uint_le(model.uploaded_per_image, weights + (4u << 20)); /* plus bf16 copies of f32 weights, if any */
  ck_assert_uint_gt(group.streamed_per_step, 0);
  ck_assert_uint_eq(kept.streamed_per_step, 0); /* every block kept: the keep is capped at what there is */
  ck_assert_uint_eq(model.streamed_per_step, 0);
  /* A budget picks the fastest that fits, with room for the CUDA context. */
  qd_schedule_estimate_t e;
  QD_ASSERT_OK(qd_schedule_for_budget(plan, W, H, 1, 1ull << 40, &e));
  ck_assert_int_eq(e.mode, QD_OFFLOAD_NONE);
  QD_ASSERT_OK(qd_schedule_for_budget(plan, W, H, 1, model.peak + QD_SCHEDULE_CONTEXT_RESERVE, &e));
  ck_assert_int_eq(e.mode, QD_OFFLOAD_MODEL);
  if (group.peak < model.peak) {
    QD_ASSERT_OK(qd_schedule_for_budget(plan, W, H, 1, group.peak + QD_SCHEDULE_CONTEXT_RESERVE, &e));
    ck_assert_int_eq(e.mode, QD_OFFLOAD_GROUP);
    ck_assert_uint_le(e.peak, group.peak);
  }
  qd_status_t s = qd_schedule_for_budget(plan, W, H, 1, QD_SCHEDULE_CONTEXT_RESERVE + sequential.peak - 1, &e);
  ck_assert(s != NULL);
  ck_assert_int_eq(qd_status_detail(s), QD_E_PIPELINE_VRAM_BUDGET);
  char want[64];
  qd_format_bytes(sequential.peak + QD_SCHEDULE_CONTEXT_RESERVE, want, sizeof want);
  ck_assert_msg(strstr(qd_status_message(s), want), "%s lacks %s", qd_status_message(s), want);
  qd_status_free(s);
  /* A size the plan lacks is named as the generator names it. */
  QD_ASSERT_DETAIL(qd_schedule_estimate(plan, 4096, 4096, 1, QD_OFFLOAD_MODEL, 0, &e), QD_E_PLAN_NO_RESOLUTION);
  /* The generator takes a budget for CUDA without an offload mode only. */
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.vram_budget = 8ull << 30;
  qd_generator_t* g = NULL;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  o.device = QD_GENERATOR_DEVICE_CUDA;
  o.offload = QD_OFFLOAD_MODEL;
  QD_ASSERT_DETAIL(qd_generator_create(plan, &o, qd_allocator_system(), &g), QD_E_PIPELINE_OPTIONS);
  qd_plan_close(plan);
}
END_TEST

/* --- tiled decoding ----------------------------------------------------------------------------------------------- */

static void keep_image(void* user, const float* image, size_t count) {
  float** out = user;
  *out = malloc(count * sizeof(float));
  memcpy(*out, image, count * sizeof(float));
}

/* The whole decode of a 128x96 image and its decode in 64x64 tiles (the plan's VAE also compiled at that size):
 * the same image up to what tiling changes (each tile's own GroupNorm statistics, zero padding at the cuts, the
 * mid-block attention over one tile), in 2 x 3 tiles; ON without a tile program, and AUTO without a budget,
 * decode whole; a second image from each generator is the first's. And a budget picks tiles where the whole decode
 * does not fit. */
START_TEST(vae_tiles_blend_into_the_whole_decode) {
  enum { TW = 128, TH = 96 };
  char plan_path[600], cmd[2048];
  snprintf(plan_path, sizeof plan_path, "%s/tiles.qplan", tmp);
  snprintf(cmd, sizeof cmd, "'%s' compile '%s' -o '%s' --quant none --resolutions %dx%d --vae-tile 64x64 "
           "--target none -q", getenv("QD_QDC"), dir_path, plan_path, TW, TH);
  ck_assert_int_eq(system(cmd), 0);
  qd_plan_t* plan;
  QD_ASSERT_OK(qd_plan_open(plan_path, qd_allocator_system(), 0, &plan));
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a harbour at dawn";
  p.seed = 5;
  p.steps = 2;
  float* images[3] = {NULL, NULL, NULL};
  qd_generate_result_t r[3];
  const qd_vae_tiling_t modes[3] = {QD_VAE_TILING_OFF, QD_VAE_TILING_ON, QD_VAE_TILING_AUTO};
  for (int k = 0; k < 3; k++) {
    qd_generator_options_t o;
    qd_generator_options_init(&o);
    o.threads = 2;
    o.vae_tiling = modes[k];
    qd_generator_t* g = NULL;
    QD_ASSERT_OK(qd_generator_create(plan, &o, qd_allocator_system(), &g));
    qd_generator_trace_t t = {&images[k], NULL, NULL, NULL, NULL, keep_image};
    qd_generator_set_trace(g, &t);
    QD_ASSERT_OK(qd_generator_generate(g, &p, &r[k]));
    /* Again with the same generator: the size was checked already and the VAE keeps the program it decoded with
     * (the tile program after a tiled decode); the same pixels. */
    qd_generator_set_trace(g, NULL);
    qd_generate_result_t again;
    QD_ASSERT_OK(qd_generator_generate(g, &p, &again));
    ck_assert_int_eq(again.vae_tiles, r[k].vae_tiles);
    ck_assert_uint_eq(again.image_bytes, r[k].image_bytes);
    ck_assert_int_eq(memcmp(again.pixels, r[k].pixels, r[k].image_bytes), 0);
    qd_generate_result_deinit(&again);
    qd_generator_destroy(g);
  }
  ck_assert_int_eq(r[0].vae_tiles, 0);
  ck_assert_int_eq(r[1].vae_tiles, 6);
  ck_assert_int_eq(r[1].vae_tile_width, 64);
  ck_assert_int_eq(r[1].vae_tile_height, 64);
  ck_assert_int_eq(r[2].vae_tiles, 0);
  ck_assert_int_eq(memcmp(r[0].pixels, r[2].pixels, r[0].image_bytes), 0);
  size_t n = 3 * TW * TH;
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)images[1][i] - images[0][i]) * ((double)images[1][i] - images[0][i]);
    den += (double)images[0][i] * images[0][i];
  }
  /* 0.14 here, with tiles of 8x8 latents from a VAE of 4 to 8 channels; misplaced tiles give about 1.4. */
  ck_assert_msg(sqrt(num / den) < 0.25, "tiled decode differs from the whole one by %g (relative L2)", sqrt(num / den));
  for (int k = 0; k < 3; k++) {
    free(images[k]);
    qd_generate_result_deinit(&r[k]);
  }
  /* Budgets: tiles only where the whole decode does not fit, the least stated with them. */
  qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS], tiled[QD_SCHEDULE_COMPONENTS];
  bool recorded = false, found = false;
  QD_ASSERT_OK(qd_schedule_plan_sizes(plan, TW, TH, 1, sizes, &recorded));
  memcpy(tiled, sizes, sizeof sizes);
  QD_ASSERT_OK(qd_schedule_vae_tile_sizes(plan, TW, TH, &tiled[QD_SCHEDULE_VAE], &found));
  ck_assert(found);
  ck_assert_uint_lt(tiled[QD_SCHEDULE_VAE].working, sizes[QD_SCHEDULE_VAE].working);
  ck_assert_uint_eq(tiled[QD_SCHEDULE_VAE].resident, sizes[QD_SCHEDULE_VAE].resident);
  QD_ASSERT_OK(qd_schedule_vae_tile_sizes(plan, 64, 64, &tiled[QD_SCHEDULE_VAE], &found));
  ck_assert(!found); /* no smaller tile for an image the tile's size */
  QD_ASSERT_OK(qd_schedule_vae_tile_sizes(plan, TW, TH, &tiled[QD_SCHEDULE_VAE], &found));
  qd_schedule_estimate_t whole_none, tiled_none, tiled_least, e;
  qd_schedule_combine(sizes, QD_OFFLOAD_NONE, 0, &whole_none);
  qd_schedule_combine(tiled, QD_OFFLOAD_NONE, 0, &tiled_none);
  qd_schedule_combine(tiled, QD_OFFLOAD_SEQUENTIAL, 0, &tiled_least);
  ck_assert_uint_lt(tiled_none.peak, whole_none.peak);
  QD_ASSERT_OK(qd_schedule_for_budget(plan, TW, TH, 1, whole_none.peak + QD_SCHEDULE_CONTEXT_RESERVE, &e));
  ck_assert(e.mode == QD_OFFLOAD_NONE && !e.vae_tiled);
  QD_ASSERT_OK(qd_schedule_for_budget(plan, TW, TH, 1, tiled_none.peak + QD_SCHEDULE_CONTEXT_RESERVE, &e));
  ck_assert(e.mode == QD_OFFLOAD_NONE && e.vae_tiled);
  ck_assert_uint_eq(e.peak, tiled_none.peak);
  qd_status_t st = qd_schedule_for_budget(plan, TW, TH, 1, tiled_least.peak + QD_SCHEDULE_CONTEXT_RESERVE - 1, &e);
  ck_assert_int_eq(qd_status_detail(st), QD_E_PIPELINE_VRAM_BUDGET);
  char want[64];
  qd_format_bytes(tiled_least.peak + QD_SCHEDULE_CONTEXT_RESERVE, want, sizeof want);
  ck_assert_msg(strstr(qd_status_message(st), want) && strstr(qd_status_message(st), "in tiles"), "%s",
                qd_status_message(st));
  qd_status_free(st);
  qd_plan_close(plan);
  /* The command line: qdrun --check shows the tiled schedule, qdrun --vae-tiling on says it tiled, and qdc
   * refuses a tile size that is no multiple of 16. */
  char log[600], err[640], args[2400];
  snprintf(log, sizeof log, "%s/tiles.log", tmp);
  snprintf(err, sizeof err, "%s.err", log);
  snprintf(args, sizeof args, "--check '%s'", plan_path);
  run(args, log); /* exits 1 without a GPU that can run it; the schedules are printed either way */
  char* text = slurp(log, NULL);
  ck_assert_msg(strstr(text, "with the VAE in tiles"), "%s", text);
  free(text);
  snprintf(args, sizeof args, "'%s' --prompt x --steps 1 --vae-tiling on -o '%s/tiles.png'", plan_path, tmp);
  ck_assert_int_eq(run(args, log), 0);
  text = slurp(log, NULL);
  ck_assert_msg(strstr(text, "decode      in 6 tiles of 64x64, blended"), "%s", text);
  free(text);
  snprintf(cmd, sizeof cmd, "'%s' compile '%s' -o '%s/never.qplan' --vae-tile 100x64 -q 2> '%s'", getenv("QD_QDC"),
           dir_path, tmp, err);
  ck_assert_int_ne(system(cmd), 0);
  text = slurp(err, NULL);
  ck_assert_msg(strstr(text, "--vae-tile takes WxH (multiples of 16) or none, not '100x64'"), "%s", text);
  free(text);
}
END_TEST

static Suite* golden_pipeline_suite(void) {
  Suite* s = suite_create("golden_pipeline");
  TCase* tc = tcase_create("core");
  tcase_add_unchecked_fixture(tc, setup, teardown);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, fp32_plan_matches_flux_pipeline);
  tcase_add_test(tc, batch_of_two_matches_flux_pipeline);
  tcase_add_test(tc, bf16_plan_is_close);
  tcase_add_test(tc, same_inputs_same_pixels);
  tcase_add_test(tc, result_png_carries_parameters);
  tcase_add_test(tc, schnell_defaults);
  tcase_add_test(tc, bad_requests_are_named);
  tcase_add_test(tc, plans_missing_pieces_are_named);
  tcase_add_test(tc, allocation_failure_sweep);
  tcase_add_test(tc, qdrun_generates_pngs);
  tcase_add_test(tc, qdrun_errors);
  tcase_add_test(tc, offload_schedules_from_the_plan);
  tcase_add_test(tc, damaged_schedule_records_are_named);
  tcase_add_test(tc, vae_tiles_blend_into_the_whole_decode);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(golden_pipeline_suite)
