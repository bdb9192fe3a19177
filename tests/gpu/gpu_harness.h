/* What the GPU kernel tests (test_gpu_kernels.c, test_gpu_text_kernels.c, test_gpu_image_kernels.c) share: the
 * process state (driver, device, stream, thread pool, counters), start-up with its skips, device buffers with
 * poisoned guard bands, random bf16 data, compiled variants, comparison with a bf16 tolerance and timing.
 *
 * Standalone programs without Check, so that they also run on GPU machines that lack it: a failed setup step exits
 * 1 (MUST), a missing driver, device or NVRTC exits 77 (a skip). The guard size can be changed at build time with
 * -DQD_GPU_TEST_GUARD=N (0 turns the guard check off). */
#ifndef QD_TESTS_GPU_HARNESS_H
#define QD_TESTS_GPU_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"
#include "runtime/cuda_driver.h"

#ifndef QD_GPU_TEST_GUARD
#define QD_GPU_TEST_GUARD 256
#endif
#define GUARD QD_GPU_TEST_GUARD
#define GH_MAX_FNS 6

/* ---- process state (set by gh_start) ---------------------------------------------------------------------------- */

extern const char* gh_program; /* prefix of messages */
extern const qd_cuda_driver_t* cu;
extern const qd_nvrtc_t* nvrtc;
extern CUstream stream;
extern CUdevice device;
extern char arch[16];
extern qd_threadpool_t* pool;
extern bool bench; /* false with --no-bench: shapes marked for the benchmark are left out, nothing is timed */
extern const char* only; /* --only SUBSTRING, or NULL */
extern int failures, passes;

typedef struct {
  char name[256];
  int major, minor, sms;
} gh_device_t;

/* Parses [--no-bench] (and --bench when `bench_flag`) [--only SUBSTRING], loads the driver and NVRTC, picks device
 * 0 and makes its primary context current, creates the stream and the thread pool. Returns -1 when the tests can
 * run, otherwise the exit code: 2 for a bad command line, 77 (skipped, with the reason printed) without a driver,
 * NVRTC, or a device of sm_80 or newer. */
int gh_start(const char* program, int argc, char** argv, bool bench_flag, gh_device_t* out_device);
/* Destroys what gh_start made; the caller synchronizes and prints its summary first. */
void gh_finish(void);

void gh_die(qd_status_t s, const char* what);
#define MUST(expr) gh_die((expr), #expr)
void* xmalloc(size_t n);

/* ---- random data ------------------------------------------------------------------------------------------------ */

extern uint64_t rng; /* the generator's state: a test may seed it before its first case */
uint64_t next_u64(void);
/* Uniform in [-1, 1), never exactly 0. */
float uniform(void);
/* n bf16 values a * uniform + b (never 0), and their exact float values in *out_f. */
uint16_t* rand_bf16(size_t n, float a, float b, float** out_f);
void bf16_to_f32_array(const uint16_t* h, float* f, size_t n);

/* ---- device buffers with guard bands ---------------------------------------------------------------------------- */

typedef struct {
  CUdeviceptr base, ptr;
  size_t bytes;
} dbuf_t;

/* Every buffer starts as poison, guards included, so that guards can be checked on inputs used in place. */
dbuf_t dalloc(size_t bytes);
void dfree(dbuf_t* b);
void dupload(dbuf_t* b, const void* host, size_t bytes);
dbuf_t dnew(const void* host, size_t bytes);
/* Poisons the whole buffer and both guards with 0xFF on the test stream. */
void dpoison(dbuf_t* b);
void ddownload(const dbuf_t* b, void* host, size_t bytes);
bool dguards_ok(const dbuf_t* b);

/* ---- variants --------------------------------------------------------------------------------------------------- */

typedef struct {
  qd_kernel_config_t cfg;
  char label[200];
  qd_kernel_module_t* module; /* NULL when not loaded */
  qd_kernel_function_t fns[GH_MAX_FNS];
  size_t fn_count;
  bool loaded; /* false: the device cannot run it (shared memory) */
  size_t smem; /* dynamic shared memory per launch, where a test needs it */
} variant_t;

/* Makes *v a variant of `cfg` with nothing loaded: arrays of variants are reused from one template or base to the
 * next, and a variant that is never loaded must not keep the previous one's (already unloaded) module. */
void variant_init(variant_t* v, const qd_kernel_config_t* cfg);
int cfg_value(const qd_kernel_config_t* c, const char* name);
/* The names a family's launchers use for v's configuration, each once: name_of(op, cfg) for op in [0, op_count)
 * (NULL where an op is not this template's). Returns how many went into names[0..GH_MAX_FNS). */
typedef const char* (*gh_name_of_fn)(int op, const qd_kernel_config_t* cfg);
size_t variant_function_names(const variant_t* v, gh_name_of_fn name_of, int op_count, const char** names);
/* Compiles v's configuration for `arch_name` (NULL: the device's), built around names[0], loads it and takes the
 * functions names[0..n) from the module; marks v loaded. Checks what ptxas reported: a spill is noted, and the
 * driver's register count must match ptxas' (a FAIL is counted otherwise). Exits on a compile or load failure. */
void variant_load_functions(variant_t* v, const char* const* names, size_t n, const char* arch_name);
/* v's function called `name`; exits (a bug in the test) when v has none, naming `what`. */
const qd_kernel_function_t* variant_function(const variant_t* v, const char* name, const char* what);
/* Unloads the modules of v[0..n) and forgets them, so that nothing can unload them twice. */
void variants_free(variant_t* v, size_t n);

/* ---- checking and timing ---------------------------------------------------------------------------------------- */

typedef struct {
  double rel_l2, max_abs;
  size_t unwritten, over_bound;
} error_t_;

/* got vs want over n values: NaN in got where want has none is unwritten; an element is over bound past
 * 2^-8 |want| + 1e-3 rms(want). */
error_t_ compare(const float* got, const float* want, size_t n);

/* One launch of the case under test. */
typedef qd_status_t (*launch_fn_t)(const variant_t* v, void* ctx);
/* Median of 20 timed launches after 3 warm-ups, in microseconds. */
double time_us(launch_fn_t launch, const variant_t* v, void* ctx);

#endif
