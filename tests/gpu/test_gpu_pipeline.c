/* GPU test: the whole text-to-image pipeline on CUDA against the CPU reference of the same plan.
 *
 * Builds a small FLUX pipeline (tools/make_small_pipeline.sh: every component at a size whose heads the GPU kernels
 * take, seeded random weights, NF4 transformer and T5 as qdc compiles them by default) into one plan, generates
 * the same prompt and seed on the CPU and on the GPU, and compares what passes between the phases (the generator's
 * trace): T5's token states, CLIP's pooled output, the latents after the first and the last step, and the VAE's
 * image. bf16 activations against the fp32 reference: rel L2 within 2e-2 for the encoders and the first step,
 * 5e-2 for the last step and the image (four steps of a random-weight transformer amplify differences). Then the
 * GPU's own promises: a second generation gives the same pixels, and model offload (each component on the GPU
 * only for its phase), group offload (the transformer's and T5's blocks streamed from pinned host memory while
 * they run, with no block kept and with the first blocks kept) and sequential offload (streamed layer by layer)
 * give the same pixels as keeping everything resident: the same kernels read the same bytes, only from other
 * addresses. The VAE decoding in 128x128 tiles (the plan compiled with --vae-tile 128x128): the GPU's blend against
 * the CPU's (5e-2), and a budget that only a tiled decode fits gives the tiled pixels.
 *
 * Last, out of GPU memory on the device path: the driver table's cuMemAlloc is swapped for one that fails its n-th
 * call, for every n a generation makes (and the pinning calls, cuMemHostRegister and cuMemHostAlloc, for ones that
 * fail). Each generation either succeeds with the same pixels
 * (an executor that could not be created made the generator fall back to a smaller schedule, with a warning; a VAE
 * out of memory with group offload decodes in tiles: the tiled pixels) or stops with DEVICE_OUT_OF_MEMORY
 * (sequential, the smallest, has nothing to fall back to; an allocation after creation, such as the conditioning's,
 * stops the generation); a failed pinning of host memory makes model offload upload from pageable memory and group
 * stop with OUT_OF_MEMORY (host memory: no fallback). Destroying the generator returns the device to the memory it
 * had before.
 *
 * Exits 77 without a GPU (or without the tools to build the plan), 0 when every check passes, 1 otherwise. Not a
 * Check suite: it must run on GPU machines without Check.
 * Usage: test_gpu_pipeline [--keep DIR]   (QD_QDC and QD_SOURCE_ROOT as the meson test environment sets them;
 * QD_TEST_AUTOTUNE=default or max compiles the plan with --autotune) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/generator.h"
#include "qd/log.h"
#include "qd/plan.h"
#include "runtime/cuda_driver.h"
#include "runtime/pipeline/generator_internal.h"
#include "runtime/pipeline/schedule.h"

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

/* --- injected allocation failures ------------------------------------------------------------------------------ */

static CUresult (*real_mem_alloc)(CUdeviceptr*, size_t);
static CUresult (*real_host_alloc)(void**, size_t, unsigned int);
static CUresult (*real_host_register)(void*, size_t, unsigned int);
static int alloc_fail_at = -1, alloc_calls, host_fail_at = -1, host_calls;

static CUresult CUDAAPI failing_mem_alloc(CUdeviceptr* p, size_t n) {
  if (alloc_calls++ == alloc_fail_at) return CUDA_ERROR_OUT_OF_MEMORY;
  return real_mem_alloc(p, n);
}

/* Pinning fails from call host_fail_at on, both ways host_weights.c pins (registering, then allocating). */
static CUresult CUDAAPI failing_host_alloc(void** p, size_t n, unsigned int flags) {
  if (host_fail_at >= 0 && host_calls++ >= host_fail_at) return CUDA_ERROR_OUT_OF_MEMORY;
  return real_host_alloc(p, n, flags);
}

static CUresult CUDAAPI failing_host_register(void* p, size_t n, unsigned int flags) {
  if (host_fail_at >= 0 && host_calls++ >= host_fail_at) return CUDA_ERROR_OUT_OF_MEMORY;
  return real_host_register(p, n, flags);
}

static uint64_t device_used(const qd_cuda_driver_t* cu) {
  size_t free_b = 0, total_b = 0;
  cu->cuMemGetInfo(&free_b, &total_b);
  return (uint64_t)(total_b - free_b);
}

static void check(const char* what, double err, double bound) {
  bool ok = err <= bound;
  printf("%-40s rel L2 %.3e  (bound %.0e)  %s\n", what, err, bound, ok ? "PASS" : "FAIL");
  failures += !ok;
}

/* One generation; the trace and the pixels land in *t and *r. */
static qd_status_t generate_with(const qd_plan_t* plan, const qd_generator_options_t* options, trace_copy_t* t,
                                 qd_generate_result_t* r) {
  qd_generator_options_t o = *options;
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

static qd_status_t generate(const qd_plan_t* plan, qd_generator_device_t device, qd_offload_mode_t offload,
                            uint64_t keep, trace_copy_t* t, qd_generate_result_t* r) {
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  o.device = device;
  o.offload = offload;
  o.keep_bytes = keep;
  return generate_with(plan, &o, t, r);
}

/* The sweep described at the top. `want` holds the resident generation's pixels, `want_tiled` those of a decode in
 * tiles (what a VAE out of memory with an offload schedule falls back to). */
static int allocation_failures(const qd_plan_t* plan, const qd_cuda_driver_t* cu_const, const qd_generate_result_t* want,
                               const qd_generate_result_t* want_tiled) {
  /* The table is one process-wide object, writable underneath; the test swaps two entries and restores them. */
  qd_cuda_driver_t* cu = (qd_cuda_driver_t*)cu_const;
  real_mem_alloc = cu->cuMemAlloc;
  real_host_alloc = cu->cuMemHostAlloc;
  real_host_register = cu->cuMemHostRegister;
  cu->cuMemAlloc = failing_mem_alloc;
  cu->cuMemHostAlloc = failing_host_alloc;
  cu->cuMemHostRegister = failing_host_register;
  qd_log_level_t level = qd_log_get_level();
  qd_log_set_level(QD_LOG_ERROR); /* the fallbacks' warnings, once per case */
  CUcontext ctx;
  CUdevice dev;
  cu->cuDeviceGet(&dev, 0);
  cu->cuDevicePrimaryCtxRetain(&ctx, dev);
  cu->cuCtxSetCurrent(ctx);
  int bad = 0;
  size_t bytes = want->image_bytes * (size_t)want->batch;
  /* How many device allocations a resident and a streamed generation make; the first also warms caches. */
  int counts[2] = {0, 0};
  uint64_t base = 0;
  for (int m = 0; m < 2; m++) {
    trace_copy_t t = {0};
    qd_generate_result_t r = {0};
    alloc_calls = 0;
    qd_status_t s = generate(plan, QD_GENERATOR_DEVICE_CUDA, m ? QD_OFFLOAD_GROUP : QD_OFFLOAD_NONE, 0, &t, &r);
    counts[m] = alloc_calls;
    if (s) qd_status_fprint(stderr, "allocation sweep, reference run", s, true), qd_status_free(s), bad++;
    trace_free(&t);
    qd_generate_result_deinit(&r);
  }
  base = device_used(cu);
  uint64_t worst_growth = 0;
  int fell_back = 0, stopped = 0, tiled_after = 0;
  for (int m = 0; m < 2 && !bad; m++) {
    qd_offload_mode_t mode = m ? QD_OFFLOAD_GROUP : QD_OFFLOAD_NONE;
    for (int k = 0; k < counts[m]; k++) {
      trace_copy_t t = {0};
      qd_generate_result_t r = {0};
      alloc_calls = 0;
      alloc_fail_at = k;
      qd_status_t s = generate(plan, QD_GENERATOR_DEVICE_CUDA, mode, 0, &t, &r);
      alloc_fail_at = -1;
      if (!s) {
        fell_back++;
        tiled_after += r.vae_tiles > 0;
        if (memcmp(r.pixels, (r.vae_tiles ? want_tiled : want)->pixels, bytes) != 0) {
          printf("allocation %d of %d failed (offload %s): the generation succeeded with other pixels\n", k,
                 counts[m], m ? "group" : "none");
          bad++;
        }
      } else {
        stopped++;
        bool oom = qd_status_code(s) == QD_CODE_DEVICE_OUT_OF_MEMORY;
        if (!oom) {
          printf("allocation %d of %d failed (offload %s): ", k, counts[m], m ? "group" : "none");
          fflush(stdout);
          qd_status_fprint(stdout, "unexpected", s, true);
          bad++;
        }
        qd_status_free(s);
      }
      uint64_t used = device_used(cu);
      if (used > base && used - base > worst_growth) worst_growth = used - base;
      trace_free(&t);
      qd_generate_result_deinit(&r);
    }
  }
  /* Pinning fails: model offload still runs (pageable uploads), group stops. */
  for (int m = 0; m < 2 && !bad; m++) {
    trace_copy_t t = {0};
    qd_generate_result_t r = {0};
    host_calls = 0;
    host_fail_at = 0;
    qd_status_t s = generate(plan, QD_GENERATOR_DEVICE_CUDA, m ? QD_OFFLOAD_GROUP : QD_OFFLOAD_MODEL, 0, &t, &r);
    host_fail_at = -1;
    bool ok = m ? s && qd_status_code(s) == QD_CODE_OUT_OF_MEMORY
                : !s && memcmp(r.pixels, want->pixels, bytes) == 0;
    if (!ok) {
      printf("pinning failed (offload %s): %s\n", m ? "group" : "model",
             s ? qd_status_message(s) : m ? "the generation went on" : "other pixels");
      bad++;
    }
    qd_status_free(s);
    trace_free(&t);
    qd_generate_result_deinit(&r);
  }
  uint64_t used = device_used(cu);
  if (used > base && used - base > worst_growth) worst_growth = used - base;
  /* Allocation granularity and the driver's own pools move by a few MiB at most; a leaked executor is far more. */
  bool leak = worst_growth > (8u << 20);
  printf("%-40s %s (%d + %d allocations failed in turn: %d fell back, %d of them to a tiled decode, %d stopped; "
         "device memory grew by at most %.1f MiB)\n", "out of GPU memory, every allocation",
         !bad && !leak ? "PASS" : "FAIL", counts[0], counts[1], fell_back, tiled_after, stopped,
         worst_growth / 1048576.0);
  cu->cuMemAlloc = real_mem_alloc;
  cu->cuMemHostAlloc = real_host_alloc;
  cu->cuMemHostRegister = real_host_register;
  cu->cuDevicePrimaryCtxRelease(dev);
  qd_log_set_level(level);
  return bad || leak;
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
  /* QD_TEST_AUTOTUNE=default|max: the plan autotuned on this GPU (compiler/autotune.h), so that everything below
   * runs the tuned GEMM algorithms and kernel variants. */
  const char* tune = getenv("QD_TEST_AUTOTUNE");
  snprintf(cmd, sizeof cmd, "'%s/tools/make_small_pipeline.sh' '%s' '%s' >/dev/null && '%s' compile '%s' -o '%s' "
           "--resolutions 256x256 --vae-tile 128x128 -q%s%s", root, qdc, dir, qdc, dir, plan_path,
           tune ? " --autotune " : "", tune ? tune : "");
  if (system(cmd) != 0) {
    fprintf(stderr, "test_gpu_pipeline: building the small pipeline plan failed: %s\n", cmd);
    return 1;
  }
  qd_plan_t* plan = NULL;
  s = qd_plan_open(plan_path, qd_allocator_system(), 0, &plan);
  trace_copy_t cpu = {0}, gpu = {0}, again = {0}, model = {0}, group = {0}, group_keep = {0}, seq = {0};
  qd_generate_result_t rc = {0}, rg = {0}, ra = {0}, rm = {0}, rs = {0}, rk = {0}, rq = {0};
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CPU, QD_OFFLOAD_NONE, 0, &cpu, &rc);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_NONE, 0, &gpu, &rg);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_NONE, 0, &again, &ra);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_MODEL, 0, &model, &rm);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_GROUP, 0, &group, &rs);
  /* Keep about half of the transformer's blocks (the first ones). */
  qd_schedule_estimate_t est = {0};
  if (!s) s = qd_schedule_estimate(plan, 256, 256, 1, QD_OFFLOAD_GROUP, 0, &est);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_GROUP, est.streamed_per_step / 2, &group_keep, &rk);
  if (!s) s = generate(plan, QD_GENERATOR_DEVICE_CUDA, QD_OFFLOAD_SEQUENTIAL, 0, &seq, &rq);
  /* The VAE in 128x128 tiles: on the CPU, resident on the GPU, and under a budget only a tiled decode fits. */
  trace_copy_t cpu_tiles = {0}, gpu_tiles = {0}, budget_tiles = {0};
  qd_generate_result_t rct = {0}, rt = {0}, rb = {0};
  qd_generator_options_t to;
  qd_generator_options_init(&to);
  to.vae_tiling = QD_VAE_TILING_ON;
  if (!s) s = generate_with(plan, &to, &cpu_tiles, &rct);
  to.device = QD_GENERATOR_DEVICE_CUDA;
  if (!s) s = generate_with(plan, &to, &gpu_tiles, &rt);
  qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS];
  qd_schedule_estimate_t whole_least = {0}, tiled_least = {0};
  bool recorded = false, tiles_found = false;
  if (!s) s = qd_schedule_plan_sizes(plan, 256, 256, 1, sizes, &recorded);
  if (!s) qd_schedule_combine(sizes, QD_OFFLOAD_SEQUENTIAL, 0, &whole_least);
  if (!s) s = qd_schedule_vae_tile_sizes(plan, 256, 256, &sizes[QD_SCHEDULE_VAE], &tiles_found);
  if (!s) qd_schedule_combine(sizes, QD_OFFLOAD_SEQUENTIAL, 0, &tiled_least);
  to.vae_tiling = QD_VAE_TILING_AUTO;
  to.vram_budget = tiled_least.peak + QD_SCHEDULE_CONTEXT_RESERVE;
  bool budget_needs_tiles = tiles_found && tiled_least.peak < whole_least.peak;
  if (!s && budget_needs_tiles) s = generate_with(plan, &to, &budget_tiles, &rb);
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
  bool same_group = rs.pixels && memcmp(rg.pixels, rs.pixels, bytes) == 0;
  bool same_keep = rk.pixels && memcmp(rg.pixels, rk.pixels, bytes) == 0;
  bool same_seq = rq.pixels && memcmp(rg.pixels, rq.pixels, bytes) == 0;
  size_t differ = 0;
  for (size_t i = 0; i < bytes; i++) differ += rg.pixels[i] != rc.pixels[i];
  printf("%-40s %zu of %zu bytes differ from the CPU's (8-bit)\n", "pixels", differ, bytes);
  printf("%-40s %s\n", "second generation, same pixels", same_again ? "PASS" : "FAIL");
  printf("%-40s %s (load %.2f s in that generation)\n", "model offload, same pixels", same_model ? "PASS" : "FAIL",
         rm.seconds_load);
  printf("%-40s %s (load %.2f s, denoise %.3f s against %.3f s resident)\n", "group offload (streamed), same pixels",
         same_group ? "PASS" : "FAIL", rs.seconds_load, rs.seconds_denoise, rg.seconds_denoise);
  printf("%-40s %s\n", "group offload, first blocks kept", same_keep ? "PASS" : "FAIL");
  printf("%-40s %s\n", "sequential offload (layer by layer)", same_seq ? "PASS" : "FAIL");
  failures += !same_again + !same_model + !same_group + !same_keep + !same_seq;
  check("VAE in tiles against the CPU's", rel_l2(gpu_tiles.image, cpu_tiles.image, cpu_tiles.n_image), 5e-2);
  printf("%-40s rel L2 %.3e from the whole decode (GPU), in %d tiles of %dx%d\n", "VAE in tiles",
         rel_l2(gpu_tiles.image, gpu.image, gpu.n_image), rt.vae_tiles, rt.vae_tile_width, rt.vae_tile_height);
  bool tiles_ok = rt.vae_tiles == 9 && rct.vae_tiles == 9 && rt.vae_tile_width == 128 && budget_needs_tiles &&
                  rb.vae_tiles == 9 && rb.pixels && memcmp(rb.pixels, rt.pixels, bytes) == 0;
  printf("%-40s %s (a budget of %.1f MiB: the whole decode needs %.1f MiB more)\n", "budget decodes in tiles",
         tiles_ok ? "PASS" : "FAIL", to.vram_budget / 1048576.0,
         (whole_least.peak - tiled_least.peak) / 1048576.0);
  failures += !tiles_ok;
  /* Still holding the plan and the resident pixels the sweep compares with. */
  if (!failures) failures += allocation_failures(plan, cu, &rg, &rt);
  trace_free(&cpu_tiles), trace_free(&gpu_tiles), trace_free(&budget_tiles);
  qd_generate_result_deinit(&rct), qd_generate_result_deinit(&rt), qd_generate_result_deinit(&rb);
  trace_free(&cpu), trace_free(&gpu), trace_free(&again), trace_free(&model), trace_free(&group);
  trace_free(&group_keep), trace_free(&seq);
  qd_generate_result_deinit(&rc), qd_generate_result_deinit(&rg), qd_generate_result_deinit(&ra);
  qd_generate_result_deinit(&rm), qd_generate_result_deinit(&rs), qd_generate_result_deinit(&rk);
  qd_generate_result_deinit(&rq);
  qd_plan_close(plan);
  printf("test_gpu_pipeline: %s\n", failures ? "FAILED" : "passed");
  return failures ? 1 : 0;
}
