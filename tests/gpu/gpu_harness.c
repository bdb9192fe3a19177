/* The GPU kernel tests' shared harness: see tests/gpu/gpu_harness.h. */
#include "gpu_harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/allocator.h"
#include "qd/dtype.h"

const char* gh_program = "test_gpu";
const qd_cuda_driver_t* cu;
const qd_nvrtc_t* nvrtc;
CUstream stream;
CUdevice device;
char arch[16];
qd_threadpool_t* pool;
bool bench = true;
const char* only;
int failures, passes;

void gh_die(qd_status_t s, const char* what) {
  if (!s) return;
  char msg[8192];
  qd_status_format(s, msg, sizeof msg);
  fprintf(stderr, "%s: %s: %s\n", gh_program, what, msg);
  qd_status_free(s);
  exit(1);
}

void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "%s: out of host memory (%zu bytes)\n", gh_program, n);
    exit(1);
  }
  return p;
}

/* ---- start and finish ----------------------------------------------------------------------------------------- */

/* Prints why the tests cannot run; returns 77 (skipped). */
static int gh_skip_(qd_status_t s, const char* why) {
  char msg[2048];
  qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  printf("%s: skipped%s: %s\n", gh_program, why, msg);
  return 77;
}

int gh_start(const char* program, int argc, char** argv, bool bench_flag, gh_device_t* out_device) {
  gh_program = program;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--no-bench") == 0) {
      bench = false;
    } else if (bench_flag && strcmp(argv[i], "--bench") == 0) {
      bench = true;
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else {
      fprintf(stderr, "usage: %s %s [--only SUBSTRING]\n", program, bench_flag ? "[--no-bench | --bench]" : "[--no-bench]");
      return 2;
    }
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  qd_status_t s = qd_cuda_driver_load(&cu);
  if (s) return gh_skip_(s, "");
  s = qd_nvrtc_load(&nvrtc);
  if (s) return gh_skip_(s, " (NVRTC is needed to build the kernels)");
  gh_device_t* d = out_device;
  MUST(QD_CU_STATUS(cu->cuDeviceGet(&device, 0)));
  MUST(QD_CU_STATUS(cu->cuDeviceGetAttribute(&d->major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)));
  MUST(QD_CU_STATUS(cu->cuDeviceGetAttribute(&d->minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)));
  MUST(QD_CU_STATUS(cu->cuDeviceGetAttribute(&d->sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device)));
  MUST(QD_CU_STATUS(cu->cuDeviceGetName(d->name, sizeof d->name, device)));
  if (d->major < 8) {
    printf("%s: skipped: %s is sm_%d%d; the templates need sm_80 or newer\n", program, d->name, d->major, d->minor);
    return 77;
  }
  snprintf(arch, sizeof arch, "sm_%d%d", d->major, d->minor);
  CUcontext ctx;
  MUST(QD_CU_STATUS(cu->cuDevicePrimaryCtxRetain(&ctx, device)));
  MUST(QD_CU_STATUS(cu->cuCtxSetCurrent(ctx)));
  MUST(QD_CU_STATUS(cu->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING)));
  MUST(qd_threadpool_create(0, qd_allocator_system(), &pool));
  return -1;
}

void gh_finish(void) {
  qd_threadpool_destroy(pool);
  pool = NULL;
  cu->cuStreamDestroy(stream);
  stream = NULL;
  cu->cuDevicePrimaryCtxRelease(device);
}

/* ---- random data ------------------------------------------------------------------------------------------------ */

uint64_t rng = 0x243F6A8885A308D3ull;

uint64_t next_u64(void) {
  uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float uniform(void) {
  float v = (float)((double)(next_u64() >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
  return v == 0.0f ? 0.5f : v;
}

uint16_t* rand_bf16(size_t n, float a, float b, float** out_f) {
  uint16_t* h = xmalloc(n * sizeof *h);
  float* f = xmalloc(n * sizeof *f);
  for (size_t i = 0; i < n; i++) {
    h[i] = qd_f32_to_bf16(a * uniform() + b);
    if (h[i] == 0 || h[i] == 0x8000) h[i] = 0x3f00; /* 0.5: no zeros */
    f[i] = qd_bf16_to_f32(h[i]);
  }
  *out_f = f;
  return h;
}

void bf16_to_f32_array(const uint16_t* h, float* f, size_t n) {
  for (size_t i = 0; i < n; i++) f[i] = qd_bf16_to_f32(h[i]);
}

/* ---- device buffers with guard bands ---------------------------------------------------------------------------- */

dbuf_t dalloc(size_t bytes) {
  dbuf_t b = {0, 0, bytes};
  MUST(QD_CU_STATUS(cu->cuMemAlloc(&b.base, bytes + 2 * GUARD)));
  b.ptr = b.base + GUARD;
  MUST(QD_CU_STATUS(cu->cuMemsetD8(b.base, 0xFF, bytes + 2 * GUARD)));
  MUST(QD_CU_STATUS(cu->cuCtxSynchronize()));
  return b;
}

void dfree(dbuf_t* b) {
  if (b->base) MUST(QD_CU_STATUS(cu->cuMemFree(b->base)));
  memset(b, 0, sizeof *b);
}

void dupload(dbuf_t* b, const void* host, size_t bytes) {
  MUST(QD_CU_STATUS(cu->cuMemcpyHtoD(b->ptr, host, bytes)));
  MUST(QD_CU_STATUS(cu->cuCtxSynchronize())); /* pageable copies may still be in flight otherwise */
}

dbuf_t dnew(const void* host, size_t bytes) {
  dbuf_t b = dalloc(bytes);
  dupload(&b, host, bytes);
  return b;
}

void dpoison(dbuf_t* b) { MUST(QD_CU_STATUS(cu->cuMemsetD8Async(b->base, 0xFF, b->bytes + 2 * GUARD, stream))); }

void ddownload(const dbuf_t* b, void* host, size_t bytes) {
  MUST(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  MUST(QD_CU_STATUS(cu->cuMemcpyDtoH(host, b->ptr, bytes)));
}

bool dguards_ok(const dbuf_t* b) {
  if (GUARD == 0) return true;
  uint8_t g[2][GUARD > 0 ? GUARD : 1];
  MUST(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  MUST(QD_CU_STATUS(cu->cuMemcpyDtoH(g[0], b->base, GUARD)));
  MUST(QD_CU_STATUS(cu->cuMemcpyDtoH(g[1], b->ptr + b->bytes, GUARD)));
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < GUARD; i++)
      if (g[s][i] != 0xFF) return false;
  return true;
}

/* ---- variants --------------------------------------------------------------------------------------------------- */

void variant_init(variant_t* v, const qd_kernel_config_t* cfg) {
  memset(v, 0, sizeof *v);
  v->cfg = *cfg;
}

int cfg_value(const qd_kernel_config_t* c, const char* name) {
  int v = 0;
  MUST(qd_kernel_config_get(c, name, &v));
  return v;
}

size_t variant_function_names(const variant_t* v, gh_name_of_fn name_of, int op_count, const char** names) {
  size_t n = 0;
  for (int op = 0; op < op_count; op++) {
    const char* f = name_of(op, &v->cfg);
    bool seen = false;
    for (size_t i = 0; f && i < n; i++) seen |= strcmp(names[i], f) == 0;
    if (f && !seen && n < GH_MAX_FNS) names[n++] = f;
  }
  return n;
}

void variant_load_functions(variant_t* v, const char* const* names, size_t n, const char* arch_name) {
  if (n == 0 || n > GH_MAX_FNS) {
    fprintf(stderr, "%s: variant %s: %zu functions to load\n", gh_program, v->label, n);
    exit(1);
  }
  qd_kernel_variant_t var;
  qd_kernel_config_variant(&v->cfg, names[0], &var);
  qd_kernel_binary_t bin;
  MUST(qd_kernel_compile(qd_allocator_system(), &var, arch_name ? arch_name : arch, 0, &bin));
  MUST(qd_kernel_module_load(qd_allocator_system(), bin.image.cubin, &v->module));
  for (size_t i = 0; i < n; i++) MUST(qd_kernel_module_get_function(v->module, names[i], &v->fns[i]));
  v->fn_count = n;
  v->loaded = true;
  if (bin.resources.known && bin.resources.spill_bytes > 0)
    printf("  note: %s spills %d bytes per thread\n", v->label, bin.resources.spill_bytes);
  /* The driver and ptxas must agree on what the kernel uses. */
  if (bin.resources.known && v->fns[0].resources.registers != bin.resources.registers) {
    printf("  FAIL %s: ptxas reported %d registers, the driver %d\n", v->label, bin.resources.registers,
           v->fns[0].resources.registers);
    failures++;
  }
  qd_kernel_binary_deinit(&bin);
}

const qd_kernel_function_t* variant_function(const variant_t* v, const char* name, const char* what) {
  for (size_t i = 0; name && i < v->fn_count; i++)
    if (strcmp(v->fns[i].name, name) == 0) return &v->fns[i];
  fprintf(stderr, "%s: variant %s has no kernel for %s\n", gh_program, v->label, what);
  exit(1);
}

void variants_free(variant_t* v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    qd_kernel_module_unload(v[i].module);
    v[i].module = NULL;
    v[i].fn_count = 0;
    v[i].loaded = false;
  }
}

/* ---- checking and timing ---------------------------------------------------------------------------------------- */

error_t_ compare(const float* got, const float* want, size_t n) {
  error_t_ e = {0};
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) den += (double)want[i] * want[i];
  const double rms = sqrt(den / (double)(n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    if (isnan(got[i]) && !isnan(want[i])) {
      e.unwritten++;
      continue;
    }
    const double d = fabs((double)got[i] - (double)want[i]);
    num += d * d;
    if (d > e.max_abs) e.max_abs = d;
    if (d > ldexp(fabs((double)want[i]), -8) + 1e-3 * rms) e.over_bound++;
  }
  e.rel_l2 = den > 0 ? sqrt(num / den) : sqrt(num);
  return e;
}

double time_us(launch_fn_t launch, const variant_t* v, void* ctx) {
  enum { WARM = 3, RUNS = 20 };
  CUevent ev[RUNS + 1];
  for (int i = 0; i <= RUNS; i++) MUST(QD_CU_STATUS(cu->cuEventCreate(&ev[i], CU_EVENT_DEFAULT)));
  for (int i = 0; i < WARM; i++) MUST(launch(v, ctx));
  double t[RUNS];
  for (int i = 0; i < RUNS; i++) {
    MUST(QD_CU_STATUS(cu->cuEventRecord(ev[0], stream)));
    MUST(launch(v, ctx));
    MUST(QD_CU_STATUS(cu->cuEventRecord(ev[1 + i], stream)));
    MUST(QD_CU_STATUS(cu->cuEventSynchronize(ev[1 + i])));
    float ms = 0;
    MUST(QD_CU_STATUS(cu->cuEventElapsedTime(&ms, ev[0], ev[1 + i])));
    t[i] = ms * 1e3;
  }
  for (int i = 0; i <= RUNS; i++) cu->cuEventDestroy(ev[i]);
  for (int i = 1; i < RUNS; i++)
    for (int j = i; j > 0 && t[j - 1] > t[j]; j--) {
      double x = t[j];
      t[j] = t[j - 1];
      t[j - 1] = x;
    }
  return (t[RUNS / 2 - 1] + t[RUNS / 2]) / 2;
}
