/* Benchmark: the whole text-to-image pipeline of a plan on the GPU (qd_generator_generate with the CUDA device).
 *
 * usage: flux_pipeline PLAN [--runs N] [--steps N] [--size WxH] [--offload none|model|group|sequential]
 *                      [--keep SIZE] [--vram-budget SIZE] [--vae-tiling auto|on|off] [--compare-whole]
 *                      [--prompt TEXT] [--jsonl FILE] [--verbose]
 *
 * Creates one CUDA generator and generates N + 1 images from the same prompt and seed: the first (cold) one
 * prepares the executors (weights uploaded, kernels loaded, CUDA graphs captured); the others are what an
 * application that keeps the generator sees per image. A thread samples the device's used memory every 2 ms
 * (cuMemGetInfo); peak is the most it saw above what was in use before the generator existed (the CUDA context is
 * not counted, as torch's max_memory_allocated, the peer's figure, does not count it). Prints one row per image
 * (seconds per phase, per step, total, peak memory) and the median of the warm ones; with --jsonl, appends one JSON
 * line for docs/performance.md. With --compare-whole, when the VAE decoded in tiles, the last image is made again
 * by a generator that decodes whole (offload model) and the two are compared (PSNR of the 8-bit pixels).
 * --verbose logs at debug level: among others, where each executor's preparation time went (runtime/cuda/executor.h,
 * qd_cuda_executor_times_t) and each CUDA graph capture. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/generator.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "runtime/cuda_driver.h"
#include "runtime/pipeline/schedule.h"

typedef struct sampler {
  const qd_cuda_driver_t* cu;
  CUcontext ctx;
  atomic_bool stop;
  atomic_ullong peak_used;
} sampler_t;

static void* sample_memory(void* arg) {
  sampler_t* s = arg;
  s->cu->cuCtxSetCurrent(s->ctx);
  while (!atomic_load(&s->stop)) {
    size_t free_b = 0, total_b = 0;
    if (s->cu->cuMemGetInfo(&free_b, &total_b) == CUDA_SUCCESS) {
      unsigned long long used = total_b - free_b, prev = atomic_load(&s->peak_used);
      while (used > prev && !atomic_compare_exchange_weak(&s->peak_used, &prev, used)) {
      }
    }
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  const char *plan_path = NULL, *jsonl = NULL, *offload_name = "none";
  const char* prompt = "a lighthouse on a cliff at sunset, oil painting";
  int runs = 3, steps = 0, width = 0, height = 0;
  uint64_t keep = 0, budget = 0;
  qd_vae_tiling_t tiling = QD_VAE_TILING_AUTO;
  bool compare_whole = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
      steps = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc) {
      if (sscanf(argv[++i], "%dx%d", &width, &height) != 2) {
        fprintf(stderr, "flux_pipeline: --size takes WxH, not '%s'\n", argv[i]);
        return 2;
      }
    } else if (strcmp(argv[i], "--offload") == 0 && i + 1 < argc) {
      offload_name = argv[++i];
    } else if ((strcmp(argv[i], "--keep") == 0 || strcmp(argv[i], "--vram-budget") == 0) && i + 1 < argc) {
      uint64_t* dst = argv[i][2] == 'k' ? &keep : &budget;
      if (!qd_parse_bytes(argv[i + 1], dst)) {
        fprintf(stderr, "flux_pipeline: %s takes a size like 2G, not '%s'\n", argv[i], argv[i + 1]);
        return 2;
      }
      i++;
    } else if (strcmp(argv[i], "--vae-tiling") == 0 && i + 1 < argc) {
      const char* v = argv[++i];
      tiling = strcmp(v, "on") == 0 ? QD_VAE_TILING_ON : strcmp(v, "off") == 0 ? QD_VAE_TILING_OFF : QD_VAE_TILING_AUTO;
      if (tiling == QD_VAE_TILING_AUTO && strcmp(v, "auto") != 0) {
        fprintf(stderr, "flux_pipeline: --vae-tiling takes auto, on or off, not '%s'\n", v);
        return 2;
      }
    } else if (strcmp(argv[i], "--compare-whole") == 0) {
      compare_whole = true;
    } else if (strcmp(argv[i], "--prompt") == 0 && i + 1 < argc) {
      prompt = argv[++i];
    } else if (strcmp(argv[i], "--jsonl") == 0 && i + 1 < argc) {
      jsonl = argv[++i];
    } else if (strcmp(argv[i], "--verbose") == 0) {
      qd_log_set_level(QD_LOG_DEBUG);
    } else if (argv[i][0] != '-' && !plan_path) {
      plan_path = argv[i];
    } else {
      fprintf(stderr, "flux_pipeline: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!plan_path || runs < 1 || runs > 100) {
    fprintf(stderr, "usage: flux_pipeline PLAN [--runs 1..100] [--steps N] [--size WxH] [--offload "
                    "none|model|group|sequential] [--keep SIZE] [--vram-budget SIZE] [--vae-tiling auto|on|off] "
                    "[--compare-whole] [--prompt TEXT] [--jsonl FILE] [--verbose]\n");
    return 2;
  }
  qd_offload_mode_t offload;
  if (!qd_offload_mode_parse(offload_name, &offload)) {
    fprintf(stderr, "flux_pipeline: --offload takes none, model, group or sequential, not '%s'\n", offload_name);
    return 2;
  }
  sampler_t smp = {0};
  qd_status_t s = qd_cuda_driver_load(&smp.cu);
  CUdevice dev;
  if (!s) s = QD_CU_STATUS(smp.cu->cuDeviceGet(&dev, 0));
  if (!s) s = QD_CU_STATUS(smp.cu->cuDevicePrimaryCtxRetain(&smp.ctx, dev));
  if (s) {
    qd_status_fprint(stderr, "flux_pipeline", s, false);
    qd_status_free(s);
    return 77;
  }
  smp.cu->cuCtxSetCurrent(smp.ctx);
  size_t free_b = 0, total_b = 0;
  smp.cu->cuMemGetInfo(&free_b, &total_b);
  const unsigned long long base = total_b - free_b;
  atomic_store(&smp.peak_used, base);
  pthread_t thread;
  pthread_create(&thread, NULL, sample_memory, &smp);

  qd_allocator_t a = qd_allocator_system();
  qd_plan_t* plan = NULL;
  qd_generator_t* gen = NULL;
  qd_generator_options_t go;
  qd_generator_options_init(&go);
  go.device = QD_GENERATOR_DEVICE_CUDA;
  go.offload = offload;
  go.keep_bytes = keep;
  go.vram_budget = budget;
  go.vae_tiling = tiling;
  double t0 = qd_now_seconds();
  s = qd_plan_open(plan_path, a, 0, &plan);
  if (!s) s = qd_generator_create(plan, &go, a, &gen);
  double open_s = qd_now_seconds() - t0;
  /* The schedule in use (a budget picks one) and what the plan says it needs, beside what is measured. */
  qd_schedule_estimate_t est = {0};
  if (!s) {
    offload = qd_generator_offload(gen, &keep);
    offload_name = qd_offload_mode_name(offload);
    int32_t w0 = width, h0 = height, b0 = 1;
    if (!w0) qd_generator_resolution(gen, 0, &w0, &h0, &b0);
    /* A budget's estimate is the one it picked (with the VAE in tiles, when it needs them). */
    qd_status_t es = budget ? qd_schedule_for_budget(plan, w0, h0, 1, budget, &est)
                            : qd_schedule_estimate(plan, w0, h0, 1, offload, keep, &est);
    if (es) qd_status_free(es);
    char k1[32], k2[32], k3[32];
    printf("offload %s%s%s: the plan's estimate %s at the peak (%s%s), %s streamed per step\n", offload_name,
           keep ? ", keeping " : "", keep ? qd_format_bytes(keep, k1, sizeof k1) : "",
           qd_format_bytes(est.peak, k2, sizeof k2), est.peak_phase, est.vae_tiled ? ", the VAE in tiles" : "",
           qd_format_bytes(est.streamed_per_step, k3, sizeof k3));
  }
  printf("%-5s %8s %9s %9s %9s %10s %8s %9s %10s\n", "image", "load", "tokenize", "encode", "denoise", "per step",
         "decode", "total", "peak GiB");
  double totals[101], per_step[101];
  int warm = 0;
  qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0.0};
  qd_generate_result_t r;
  memset(&r, 0, sizeof r);
  uint8_t* last = NULL; /* the last image's pixels, when it was decoded in tiles */
  size_t last_bytes = 0;
  qd_generate_params_t p;
  for (int i = 0; i <= runs && !s; i++) {
    qd_generate_params_init(&p);
    p.prompt = prompt;
    p.seed = 0;
    p.steps = steps;
    p.width = width;
    p.height = height;
    p.progress = &quiet;
    atomic_store(&smp.peak_used, base);
    double t1 = qd_now_seconds();
    s = qd_generator_generate(gen, &p, &r);
    double total = qd_now_seconds() - t1;
    if (s) break;
    double peak = (double)(atomic_load(&smp.peak_used) - base) / 1073741824.0;
    double step_s = r.seconds_denoise / (r.steps ? r.steps : 1);
    printf("%-5s %7.2fs %8.3fs %8.3fs %8.3fs %8.1fms %7.3fs %8.3fs %10.2f%s\n", i == 0 ? "cold" : "warm",
           r.seconds_load, r.seconds_tokenize, r.seconds_encode, r.seconds_denoise, step_s * 1e3, r.seconds_decode,
           total, peak, r.vae_tiles ? "  (VAE in tiles)" : "");
    if (i == runs && r.vae_tiles && compare_whole) {
      last_bytes = r.image_bytes * (size_t)r.batch;
      last = malloc(last_bytes);
      if (last) memcpy(last, r.pixels, last_bytes);
    }
    if (i > 0) {
      totals[warm] = total;
      per_step[warm++] = step_s;
    }
    if (jsonl) {
      FILE* f = fopen(jsonl, "a");
      if (f) {
        fprintf(f,
                "{\"bench\": \"flux_pipeline\", \"plan\": \"%s\", \"image\": \"%s\", \"width\": %d, \"height\": %d, "
                "\"steps\": %d, \"offload\": \"%s\", \"load_s\": %.3f, \"tokenize_s\": %.4f, \"encode_s\": %.4f, "
                "\"denoise_s\": %.4f, \"step_ms\": %.2f, \"decode_s\": %.4f, \"total_s\": %.4f, \"peak_gib\": %.3f, "
                "\"open_s\": %.3f, \"keep_gib\": %.3f, \"estimate_peak_gib\": %.3f, \"streamed_step_gib\": %.3f, "
                "\"vae_tiles\": %d}\n",
                plan_path, i == 0 ? "cold" : "warm", r.width, r.height, r.steps, offload_name, r.seconds_load,
                r.seconds_tokenize, r.seconds_encode, r.seconds_denoise, step_s * 1e3, r.seconds_decode, total, peak,
                open_s, keep / 1073741824.0, est.peak / 1073741824.0, est.streamed_per_step / 1073741824.0,
                r.vae_tiles);
        fclose(f);
      }
    }
    qd_generate_result_deinit(&r);
  }
  atomic_store(&smp.stop, true);
  pthread_join(thread, NULL);
  int rc = 0;
  if (s) {
    qd_status_fprint(stderr, "flux_pipeline", s, true);
    qd_status_free(s);
    rc = 1;
  } else if (warm) {
    qsort(totals, (size_t)warm, sizeof *totals, cmp_double);
    qsort(per_step, (size_t)warm, sizeof *per_step, cmp_double);
    printf("warm median: %.3f s per image, %.1f ms per step (plan opened in %.2f s, offload %s)\n", totals[warm / 2],
           per_step[warm / 2] * 1e3, open_s, offload_name);
  }
  qd_generator_destroy(gen);
  if (!rc && last) {
    /* The same image decoded whole, by a generator that may (model offload: one component at a time). */
    go.offload = QD_OFFLOAD_MODEL;
    go.keep_bytes = go.vram_budget = 0;
    go.vae_tiling = QD_VAE_TILING_OFF;
    s = qd_generator_create(plan, &go, a, &gen);
    if (!s) s = qd_generator_generate(gen, &p, &r);
    if (s) {
      qd_status_fprint(stderr, "flux_pipeline: the whole decode to compare with", s, true);
      qd_status_free(s);
      rc = 1;
    } else {
      double se = 0;
      int worst = 0;
      for (size_t k = 0; k < last_bytes; k++) {
        int d = abs((int)last[k] - (int)r.pixels[k]);
        se += (double)d * d;
        if (d > worst) worst = d;
      }
      double mse = se / (double)last_bytes;
      printf("VAE in tiles against the whole decode: PSNR %.1f dB, mean squared error %.2f, largest difference %d "
             "of 255\n", mse > 0 ? 10 * log10(255.0 * 255.0 / mse) : INFINITY, mse, worst);
      qd_generate_result_deinit(&r);
    }
    qd_generator_destroy(gen);
  }
  free(last);
  qd_plan_close(plan);
  smp.cu->cuDevicePrimaryCtxRelease(dev);
  return rc;
}
