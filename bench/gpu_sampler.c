/* NVML sampling for benchmarks (gpu_sampler.h). The NVML declarations below are the few this file calls, as the
 * library exports them (C ABI: an opaque device handle, unsigned results, 0 for success). */
#include "bench/gpu_sampler.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef void* nvml_device_t;
enum { NVML_OK = 0, NVML_CLOCK_SM = 1 };
#define NVML_REASON_SW_POWER_CAP 0x4ull

typedef struct nvml_api {
  int (*init)(void);
  int (*shutdown)(void);
  int (*by_bus_id)(const char* bus_id, nvml_device_t* device);
  int (*by_index)(unsigned index, nvml_device_t* device);
  int (*clock)(nvml_device_t device, int type, unsigned* mhz);
  int (*power)(nvml_device_t device, unsigned* milliwatts);
  int (*reasons)(nvml_device_t device, unsigned long long* reasons); /* may be missing: then not reported */
} nvml_api_t;

typedef struct sample {
  float mhz, watts;
  unsigned char capped;
} sample_t;

struct qd_gpu_sampler {
  void* lib;
  nvml_api_t api;
  nvml_device_t device;
  bool ready;
  int interval_ms;
  pthread_t thread;
  bool running;
  pthread_mutex_t lock;
  bool stop; /* under lock */
  sample_t* samples;
  int count, capacity;
};

static void* sym_(void* lib, const char* a, const char* b) {
  void* p = dlsym(lib, a);
  return p || !b ? p : dlsym(lib, b);
}

qd_status_t qd_gpu_sampler_create(const qd_cuda_driver_t* cu, int device, int interval_ms, qd_gpu_sampler_t** out) {
  *out = NULL;
  qd_gpu_sampler_t* s = calloc(1, sizeof *s);
  if (!s) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "the GPU sampler");
  s->interval_ms = interval_ms < 1 ? 1 : interval_ms;
  pthread_mutex_init(&s->lock, NULL);
  *out = s;
  s->lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!s->lib) return QD_OK;
  nvml_api_t* a = &s->api;
  *(void**)&a->init = sym_(s->lib, "nvmlInit_v2", "nvmlInit");
  *(void**)&a->shutdown = sym_(s->lib, "nvmlShutdown", NULL);
  *(void**)&a->by_bus_id = sym_(s->lib, "nvmlDeviceGetHandleByPciBusId_v2", "nvmlDeviceGetHandleByPciBusId");
  *(void**)&a->by_index = sym_(s->lib, "nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex");
  *(void**)&a->clock = sym_(s->lib, "nvmlDeviceGetClockInfo", NULL);
  *(void**)&a->power = sym_(s->lib, "nvmlDeviceGetPowerUsage", NULL);
  *(void**)&a->reasons = sym_(s->lib, "nvmlDeviceGetCurrentClocksEventReasons",
                              "nvmlDeviceGetCurrentClocksThrottleReasons");
  if (!a->init || !a->shutdown || !a->clock || !a->power || (!a->by_bus_id && !a->by_index) || a->init() != NVML_OK)
    return QD_OK;
  /* CUDA's ordinals follow CUDA_VISIBLE_DEVICES and NVML's indices do not: match on the PCI bus id. */
  CUdevice dev;
  char bus[32] = "";
  bool found = false;
  if (a->by_bus_id && cu->cuDeviceGet(&dev, device) == CUDA_SUCCESS &&
      cu->cuDeviceGetPCIBusId(bus, (int)sizeof bus, dev) == CUDA_SUCCESS)
    found = a->by_bus_id(bus, &s->device) == NVML_OK;
  if (!found && a->by_index) found = a->by_index((unsigned)device, &s->device) == NVML_OK;
  s->ready = found;
  return QD_OK;
}

static void* sampler_main_(void* arg) {
  qd_gpu_sampler_t* s = arg;
  for (;;) {
    pthread_mutex_lock(&s->lock);
    bool stop = s->stop;
    pthread_mutex_unlock(&s->lock);
    if (stop) break;
    unsigned mhz = 0, mw = 0;
    unsigned long long why = 0;
    if (s->api.clock(s->device, NVML_CLOCK_SM, &mhz) == NVML_OK && s->api.power(s->device, &mw) == NVML_OK) {
      bool capped = s->api.reasons && s->api.reasons(s->device, &why) == NVML_OK && (why & NVML_REASON_SW_POWER_CAP);
      if (s->count == s->capacity) {
        int cap = s->capacity ? 2 * s->capacity : 1024;
        sample_t* grown = realloc(s->samples, (size_t)cap * sizeof *grown);
        if (!grown) break; /* keep what there is */
        s->samples = grown;
        s->capacity = cap;
      }
      s->samples[s->count++] = (sample_t){(float)mhz, (float)mw / 1000.0f, (unsigned char)capped};
    }
    struct timespec ts = {s->interval_ms / 1000, (long)(s->interval_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

void qd_gpu_sampler_start(qd_gpu_sampler_t* s) {
  if (!s || !s->ready || s->running) return;
  s->count = 0;
  s->stop = false;
  s->running = pthread_create(&s->thread, NULL, sampler_main_, s) == 0;
}

static int float_cmp_(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return (x > y) - (x < y);
}

void qd_gpu_sampler_stop(qd_gpu_sampler_t* s, qd_gpu_sample_report_t* r) {
  memset(r, 0, sizeof *r);
  if (!s || !s->running) return;
  pthread_mutex_lock(&s->lock);
  s->stop = true;
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  s->running = false;
  if (!s->count) return;
  float* v = malloc((size_t)s->count * sizeof *v);
  if (!v) return;
  r->available = true;
  r->samples = s->count;
  int capped = 0;
  for (int i = 0; i < s->count; i++) v[i] = s->samples[i].mhz, capped += s->samples[i].capped;
  qsort(v, (size_t)s->count, sizeof *v, float_cmp_);
  r->sm_mhz_median = v[s->count / 2], r->sm_mhz_min = v[0], r->sm_mhz_max = v[s->count - 1];
  for (int i = 0; i < s->count; i++) v[i] = s->samples[i].watts;
  qsort(v, (size_t)s->count, sizeof *v, float_cmp_);
  r->watts_median = v[s->count / 2], r->watts_max = v[s->count - 1];
  r->power_capped = (double)capped / s->count;
  free(v);
}

const char* qd_gpu_sample_text(const qd_gpu_sample_report_t* r, char* buf, int size) {
  if (!r->available) {
    snprintf(buf, (size_t)size, "%s", "");
    return buf;
  }
  snprintf(buf, (size_t)size, " at %.0f MHz (%.0f-%.0f), %.0f W (max %.0f), power-capped %.0f%%", r->sm_mhz_median,
           r->sm_mhz_min, r->sm_mhz_max, r->watts_median, r->watts_max, 100.0 * r->power_capped);
  return buf;
}

void qd_gpu_sampler_destroy(qd_gpu_sampler_t* s) {
  if (!s) return;
  if (s->running) {
    qd_gpu_sample_report_t r;
    qd_gpu_sampler_stop(s, &r);
  }
  if (s->ready) s->api.shutdown();
  if (s->lib) dlclose(s->lib);
  free(s->samples);
  pthread_mutex_destroy(&s->lock);
  free(s);
}
