/* Benchmark: ways to get a plan's weights into pinned host memory (runtime/cuda/host_weights.h), which the first
 * offloaded image pays for: cuMemHostAlloc in one call and in pieces from several threads, and anonymous memory
 * (transparent huge pages requested) touched by several threads then registered with cuMemHostRegister, whole and
 * in pieces. For each: seconds to pin, then host-to-device GiB/s from the buffer (a copy that spans two pieces
 * included, to see that registered pieces still copy at the pinned rate).
 *
 * usage: pin_probe [GIB] (default 6) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "qd/progress.h"
#include "runtime/cuda_driver.h"

enum { THREADS = 8 };

typedef struct job {
  const qd_cuda_driver_t* cu;
  CUcontext ctx;
  uint8_t* base;
  uint64_t bytes;
  int mode; /* 0: cuMemHostAlloc a piece, 1: touch, 2: register a piece */
  void* out;
  CUresult r;
} job_t;

static void* worker(void* arg) {
  job_t* j = arg;
  j->cu->cuCtxSetCurrent(j->ctx);
  if (j->mode == 0) j->r = j->cu->cuMemHostAlloc(&j->out, j->bytes, CU_MEMHOSTALLOC_PORTABLE);
  if (j->mode == 1) memset(j->base, 1, j->bytes);
  if (j->mode == 2) j->r = j->cu->cuMemHostRegister(j->base, j->bytes, CU_MEMHOSTREGISTER_PORTABLE);
  return NULL;
}

static void run_all(job_t* jobs, int n) {
  pthread_t t[THREADS];
  for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, &jobs[i]);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

static double h2d(const qd_cuda_driver_t* cu, CUdeviceptr d, const uint8_t* src, uint64_t bytes, CUstream s) {
  cu->cuMemcpyHtoDAsync(d, src, bytes, s); /* warm */
  cu->cuStreamSynchronize(s);
  double t0 = qd_now_seconds();
  CUresult r = cu->cuMemcpyHtoDAsync(d, src, bytes, s);
  cu->cuStreamSynchronize(s);
  double t = qd_now_seconds() - t0;
  return r == CUDA_SUCCESS ? (double)bytes / t / 1073741824.0 : -1;
}

int main(int argc, char** argv) {
  uint64_t gib = argc > 1 ? strtoull(argv[1], NULL, 10) : 6, bytes = gib << 30, piece = bytes / THREADS;
  const qd_cuda_driver_t* cu;
  CUdevice dev;
  CUcontext ctx;
  qd_status_t s = qd_cuda_driver_load(&cu);
  if (!s) s = QD_CU_STATUS(cu->cuDeviceGet(&dev, 0));
  if (!s) s = QD_CU_STATUS(cu->cuDevicePrimaryCtxRetain(&ctx, dev));
  if (s) {
    qd_status_fprint(stderr, "pin_probe", s, false);
    return 77;
  }
  cu->cuCtxSetCurrent(ctx);
  CUdeviceptr d;
  CUstream st;
  cu->cuMemAlloc(&d, 1ull << 30);
  cu->cuStreamCreate(&st, CU_STREAM_NON_BLOCKING);
  printf("%llu GiB, %d threads\n", (unsigned long long)gib, THREADS);

  /* 1. one cuMemHostAlloc */
  double t0 = qd_now_seconds();
  void* p = NULL;
  CUresult r = cu->cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_PORTABLE);
  double t = qd_now_seconds() - t0;
  printf("%-52s %7.2f s  %s  H2D %.1f GiB/s\n", "cuMemHostAlloc, one call", t, qd_cuda_result_name(r),
         r ? 0.0 : h2d(cu, d, p, 1ull << 30, st));
  if (!r) cu->cuMemFreeHost(p);

  /* 2. cuMemHostAlloc pieces from threads */
  job_t jobs[THREADS];
  for (int i = 0; i < THREADS; i++) jobs[i] = (job_t){cu, ctx, NULL, piece, 0, NULL, CUDA_SUCCESS};
  t0 = qd_now_seconds();
  run_all(jobs, THREADS);
  t = qd_now_seconds() - t0;
  printf("%-52s %7.2f s  %s\n", "cuMemHostAlloc, 8 pieces from 8 threads", t, qd_cuda_result_name(jobs[0].r));
  for (int i = 0; i < THREADS; i++)
    if (!jobs[i].r) cu->cuMemFreeHost(jobs[i].out);

  /* 3 and 4. anonymous memory with huge pages asked for, touched by threads, registered whole or in pieces */
  for (int pieces = 1; pieces <= THREADS; pieces += THREADS - 1) {
    t0 = qd_now_seconds();
    uint8_t* a = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED) return 1;
    int hp = madvise(a, bytes, MADV_HUGEPAGE);
    for (int i = 0; i < THREADS; i++) jobs[i] = (job_t){cu, ctx, a + i * piece, piece, 1, NULL, CUDA_SUCCESS};
    run_all(jobs, THREADS);
    double touched = qd_now_seconds() - t0;
    if (pieces == 1) {
      jobs[0] = (job_t){cu, ctx, a, bytes, 2, NULL, CUDA_SUCCESS};
      worker(&jobs[0]);
    } else {
      for (int i = 0; i < THREADS; i++) jobs[i].mode = 2;
      run_all(jobs, THREADS);
    }
    t = qd_now_seconds() - t0;
    char what[96];
    snprintf(what, sizeof what, "anonymous%s, touched, registered in %d piece%s", hp ? "" : " + THP", pieces,
             pieces > 1 ? "s" : "");
    printf("%-52s %7.2f s  %s  (touch %.2f s)  H2D %.1f GiB/s, across pieces %.1f GiB/s\n", what, t,
           qd_cuda_result_name(jobs[0].r), touched, h2d(cu, d, a, 1ull << 30, st),
           h2d(cu, d, a + piece - (512u << 20), 1ull << 30, st));
    for (int i = 0; i < (pieces == 1 ? 1 : THREADS); i++)
      if (!jobs[i].r) cu->cuMemHostUnregister(pieces == 1 ? a : a + i * piece);
    munmap(a, bytes);
  }
  FILE* f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char thp[128] = "?";
  if (f && fgets(thp, sizeof thp, f)) printf("transparent huge pages: %s", thp);
  if (f) fclose(f);
  cu->cuMemFree(d);
  cu->cuDevicePrimaryCtxRelease(dev);
  return 0;
}
