/* GPU test: the whole text-to-image pipeline on CUDA against the CPU reference of the same plan.
 *
 * Builds a small FLUX pipeline (tools/make_small_pipeline.sh: every component at a size whose heads the GPU kernels
 * take, seeded random weights, NF4 transformer and T5 as qdc compiles them by default) into one plan, generates
 * the same prompt and seed on the CPU and on the GPU, and compares what passes between the phases (the generator's
 * trace): T5's token states, CLIP's pooled output, the latents after the first and the last step, and the VAE's
 * image. bf16 activations against the fp32 reference: rel L2 within 2e-2 for the encoders and the first step,
 * 5e-2 for the last step and the image (four steps of a random-weight transformer amplify differences). Then the
 * GPU's own promises: a second generation gives the same pixels, and model offload (each component on the GPU
 * only for its phase) gives the same pixels as keeping everything resident.
 *
 * Exits 77 without a GPU (or without the tools to build the plan), 0 when every check passes, 1 otherwise. Not a
 * Check suite: it must run on GPU machines without Check.
 * Usage: test_gpu_pipeline [--keep DIR]   (QD_QDC and QD_SOURCE_ROOT as the meson test environment sets them) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/generator.h"
#include "qd/plan.h"
#include "runtime/cuda_driver.h"
#include "runtime/pipeline/generator_internal.h"

enum { STEPS = 4 };

typedef struct trace_copy {
  float *embeds, *pooled, *first, *last, *image;
  size_t n_embeds, n_pooled, n_latents, n_image;
} trace_copy_t;

static float* dup_floats(const float* x, size_t n) {
  float* y = malloc((n ? n : 1) * sizeof *y);
  if (y) memcpy(y, x, n * sizeof *y);
  return y;
}

static void on_embeddings(void* user, const float* e, size_t ne, const float* p, size_t np) {
  trace_copy_t* t = user;
  t->embeds = dup_floats(e, ne);
  t->n_embeds = ne;
  t->pooled = dup_floats(p, np);
  t->n_pooled = np;
}

static void on_step(void* user, int32_t step, const float* latents, size_t n, float model_t, float sigma) {
  trace_copy_t* t = user;
  (void)model_t, (void)sigma;
  t->n_latents = n;
  if (step == 0) t->first = dup_floats(latents, n);
  if (step == STEPS - 1) t->last = dup_floats(latents, n);
}

static void on_image(void* user, const float* image, size_t n) {
  trace_copy_t* t = user;
  t->image = dup_floats(image, n);
  t->n_image = n;
}

static void trace_free(trace_copy_t* t) {
  free(t->embeds), free(t->pooled), free(t->first), free(t->last), free(t->image);
  memset(t, 0, sizeof *t);
}

static double rel_l2(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)got[i] - want[i];
    if (!isfinite(got[i])) return INFINITY;
    num += d * d;
    den += (double)want[i] * want[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static int failures;

static void check(const char* what, double err, double bound) {
  bool ok = err <= bound;
  printf("%-40s rel L2 %.3e  (bound %.0e)  %s\n", what, err, bound, ok ? "PASS" : "FAIL");
  failures += !ok;
}

/* One generation; the trace and the pixels land in *t and *r. */
static qd_status_t generate(const qd_plan_t* plan, qd_generator_device_t device, qd_offload_mode_t offload,
                            trace_copy_t* t, qd_generate_result_t* r) {
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.device = device;
  o.offload = offload;
  qd_generator_t* g = NULL;
  qd_status_t s = qd_generator_create(plan, &o, qd_allocator_system(), &g);
  if (s) return s;
  qd_generator_trace_t tr = {t, NULL, on_embeddings, NULL, on_step, on_image};
  qd_generator_set_trace(g, &tr);
  qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0.0};
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  p.prompt = "a lighthouse on a cliff at sunset, oil painting";
  p.seed = 42;
  p.steps = STEPS;
  p.progress = &quiet;
  s = qd_generator_generate(g, &p, r);
  qd_generator_destroy(g);
  return s;
}

int main(int argc, char** argv) {
  const char* keep = NULL;
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--keep") == 0 && i + 1 < argc) keep = argv[++i];
  const qd_cuda_driver_t* cu;
  qd_status_t s = qd_cuda_driver_load(&cu);
  if (s) {
    qd_status_fprint(stderr, "test_gpu_pipeline: skipped", s, false);
    qd_status_free(s);
    return 77;
  }
  const char* qdc = getenv("QD_QDC");
  const char* root = getenv("QD_SOURCE_ROOT");
  if (!qdc || !root) {
    fprintf(stderr, "test_gpu_pipeline: skipped: QD_QDC and QD_SOURCE_ROOT must name qdc and the source tree\n");
    return 77;
  }
  char dir[512], plan_path[600], cmd[2048];
  snprintf(dir, sizeof dir, "%s", keep ? keep : "/tmp/qd_gpu_pipeline");
  snprintf(plan_path, sizeof plan_path, "%s.qplan", dir);
  snprintf(cmd, sizeof cmd, "'%s/tools/make_small_pipeline.sh' '%s' '%s' >/dev/null && '%s' compile '%s' -o '%s' "
           "--resolutions 256x256 -q", root, qdc, dir, qdc, dir, plan_path);
  if (system(cmd) != 0) {
    fprintf(stderr, "test_gpu_pipeline: building the small pipeline plan failed: %s\n", cmd);
    return 1;
  }
  qd_plan_t* plan = NULL;
  s = qd_plan_open(plan_path, qd_allocator_system(), 0, &plan);
  trace_copy_t cpu = {0}, gpu = {0}, again = {0}, model = {0};
  qd_generate_result_t rc = {0}, rg = {0}, ra = {0}, rm = {0};
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CPU, QD_OFFLOAD_NONE, &cpu, &rc);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_NONE, &gpu, &rg);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_NONE, &again, &ra);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_MODEL, &model, &rm);
  if (s) {
    qd_status_fprint(stderr, "test_gpu_pipeline", s, true);
    qd_status_free(s);
    return 1;
  }
  printf("small FLUX pipeline, 256x256, %d steps: CUDA (load %.2f s, encode %.3f s, denoise %.3f s, decode %.3f s) "
         "against the CPU (encode %.2f s, denoise %.2f s, decode %.2f s)\n", STEPS, rg.seconds_load,
         rg.seconds_encode, rg.seconds_denoise, rg.seconds_decode, rc.seconds_encode, rc.seconds_denoise,
         rc.seconds_decode);
  check("T5 token states", rel_l2(gpu.embeds, cpu.embeds, cpu.n_embeds), 2e-2);
  check("CLIP pooled output", rel_l2(gpu.pooled, cpu.pooled, cpu.n_pooled), 2e-2);
  check("latents after step 1", rel_l2(gpu.first, cpu.first, cpu.n_latents), 2e-2);
  check("latents after the last step", rel_l2(gpu.last, cpu.last, cpu.n_latents), 5e-2);
  check("VAE image", rel_l2(gpu.image, cpu.image, cpu.n_image), 5e-2);
  size_t bytes = rg.image_bytes * (size_t)rg.batch;
  bool same_again = ra.pixels && memcmp(rg.pixels, ra.pixels, bytes) == 0;
  bool same_model = rm.pixels && memcmp(rg.pixels, rm.pixels, bytes) == 0;
  size_t differ = 0;
  for (size_t i = 0; i < bytes; i++) differ += rg.pixels[i] != rc.pixels[i];
  printf("%-40s %zu of %zu bytes differ from the CPU's (8-bit)\n", "pixels", differ, bytes);
  printf("%-40s %s\n", "second generation, same pixels", same_again ? "PASS" : "FAIL");
  printf("%-40s %s (load %.2f s in that generation)\n", "model offload, same pixels", same_model ? "PASS" : "FAIL",
         rm.seconds_load);
  failures += !same_again + !same_model;
  trace_free(&cpu), trace_free(&gpu), trace_free(&again), trace_free(&model);
  qd_generate_result_deinit(&rc), qd_generate_result_deinit(&rg), qd_generate_result_deinit(&ra);
  qd_generate_result_deinit(&rm);
  qd_plan_close(plan);
  printf("test_gpu_pipeline: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}
