/* Benchmarks: the GPU's SM clock and board power sampled in a background thread while something runs, through
 * NVML loaded at run time (libnvidia-ml.so.1 ships with the driver; no header or link-time dependency). An H200 at
 * its 700 W limit lowers its clock, and every kernel with it, so a time means little without the clock it ran at
 * (docs/performance.md, "the power cap").
 *
 * Usage: create once per device (CUDA ordinal; matched to NVML's device through the PCI bus id), start before the
 * timed work, stop after it and read the report. Without NVML or the device, create still succeeds and reports
 * carry available = false (a benchmark should run on without the figures). */
#ifndef QD_BENCH_GPU_SAMPLER_H
#define QD_BENCH_GPU_SAMPLER_H

#include <stdbool.h>

#include "runtime/cuda_driver.h"

typedef struct qd_gpu_sampler qd_gpu_sampler_t;

typedef struct qd_gpu_sample_report {
  bool available;
  int samples;
  double sm_mhz_median, sm_mhz_min, sm_mhz_max;
  double watts_median, watts_max;
  double power_capped; /* fraction of samples with the software power cap among the clock's limiting reasons */
} qd_gpu_sample_report_t;

/* Samples every interval_ms (at least 1). Errors: OUT_OF_MEMORY. */
qd_status_t qd_gpu_sampler_create(const qd_cuda_driver_t* cu, int device, int interval_ms, qd_gpu_sampler_t** out);
void qd_gpu_sampler_destroy(qd_gpu_sampler_t* sampler); /* NULL-safe; stops a running sampling */
void qd_gpu_sampler_start(qd_gpu_sampler_t* sampler);
/* Stops the sampling started last and reports on its samples. */
void qd_gpu_sampler_stop(qd_gpu_sampler_t* sampler, qd_gpu_sample_report_t* out_report);
/* " at 1620 MHz (1245-1980), 689 W" or "" when nothing was sampled; into buf. */
const char* qd_gpu_sample_text(const qd_gpu_sample_report_t* report, char* buf, int size);

#endif
