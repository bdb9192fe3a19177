/* CUDA loading: the driver, NVRTC and cuBLASLt tables, device queries and qdrun --devices.
 *
 * Each library loads once per process, so every test that points a loader somewhere else (QD_*_LIBRARY) relies
 * on Check running each test in its own forked process (the default; do not run this suite with CK_FORK=no).
 * Machines without a GPU exercise the driver paths through tests/fake_cuda_driver.c (QD_FAKE_CUDA_DRIVER); on a
 * machine with a driver and a GPU the real_driver_* tests also check real devices, compile a kernel with NVRTC,
 * run it and create a cuBLASLt handle. */
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "qd/allocator.h"
#include "qd/device.h"
#include "qd_test.h"
#include "runtime/cuda/module_cache.h"
#include "runtime/cuda_cublaslt.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_nvrtc.h"

/* --- helpers ------------------------------------------------------------------------------------------------ */

/* Everything written to stdout and stderr between begin and end, so a test can assert that loading is silent. */
typedef struct {
  int saved_out, saved_err, fd;
  char path[512];
} capture_t;

static void capture_begin(capture_t* c) {
  fflush(stdout);
  fflush(stderr);
  snprintf(c->path, sizeof c->path, "%s/cuda_loading_capture_XXXXXX", qd_test_tmp_dir());
  c->fd = mkstemp(c->path);
  ck_assert_int_ge(c->fd, 0);
  c->saved_out = dup(STDOUT_FILENO);
  c->saved_err = dup(STDERR_FILENO);
  dup2(c->fd, STDOUT_FILENO);
  dup2(c->fd, STDERR_FILENO);
}

static size_t capture_end(capture_t* c, char* buf, size_t size) {
  fflush(stdout);
  fflush(stderr);
  dup2(c->saved_out, STDOUT_FILENO);
  dup2(c->saved_err, STDERR_FILENO);
  close(c->saved_out);
  close(c->saved_err);
  lseek(c->fd, 0, SEEK_SET);
  ssize_t n = read(c->fd, buf, size - 1);
  buf[n > 0 ? n : 0] = '\0';
  close(c->fd);
  unlink(c->path);
  return n > 0 ? (size_t)n : 0;
}

static char* read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* text = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(text);
  size_t got = fread(text, 1, (size_t)n, f);
  text[got] = '\0';
  fclose(f);
  return text;
}

/* Runs qdrun with the given arguments (NULL-terminated), stdout and stderr captured; returns the exit code. */
static int run_qdrun(const char* const* args, char** out_stdout, char** out_stderr) {
  const char* qdrun = getenv("QD_QDRUN");
  ck_assert_msg(qdrun && *qdrun, "QD_QDRUN is not set");
  char out_path[512], err_path[512];
  snprintf(out_path, sizeof out_path, "%s/qdrun_devices_%d.out", qd_test_tmp_dir(), (int)getpid());
  snprintf(err_path, sizeof err_path, "%s/qdrun_devices_%d.err", qd_test_tmp_dir(), (int)getpid());
  const char* argv[16] = {qdrun};
  size_t argc = 1;
  for (; args[argc - 1] && argc < 15; argc++) argv[argc] = args[argc - 1];
  argv[argc] = NULL;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  ck_assert_int_ge(pid, 0);
  if (pid == 0) {
    int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) _exit(126);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    execv(qdrun, (char* const*)argv);
    _exit(127);
  }
  int status = 0;
  ck_assert_int_eq(waitpid(pid, &status, 0), pid);
  *out_stdout = read_file(out_path);
  *out_stderr = read_file(err_path);
  unlink(out_path);
  unlink(err_path);
  ck_assert_msg(WIFEXITED(status), "qdrun did not exit normally (status %d)", status);
  return WEXITSTATUS(status);
}

static const char* fake_driver(void) {
  const char* p = getenv("QD_FAKE_CUDA_DRIVER");
  return p && *p ? p : NULL;
}

/* Points the driver loader at the fake in the given mode; false (and the test returns) when it was not built. */
static bool use_fake_driver(const char* mode) {
  if (!fake_driver()) return false;
  setenv("QD_CUDA_DRIVER_LIBRARY", fake_driver(), 1);
  setenv("QD_FAKE_CUDA_MODE", mode, 1);
  return true;
}

static void use_missing_driver(void) {
  char path[600];
  snprintf(path, sizeof path, "%s/no-such-dir/libcuda.so.1", qd_test_tmp_dir());
  setenv("QD_CUDA_DRIVER_LIBRARY", path, 1);
}

/* Formats a status (then frees it) into buf and returns its detail. */
static qd_error_detail_t status_text(qd_status_t s, char* buf, size_t size) {
  qd_error_detail_t d = qd_status_detail(s);
  qd_status_format(s, buf, size);
  qd_status_free(s);
  return d;
}

#define ASSERT_CONTAINS(haystack, needle) \
  ck_assert_msg(strstr((haystack), (needle)) != NULL, "expected '%s' in: %s", (needle), (haystack))

/* --- the driver ----------------------------------------------------------------------------------------------- */

START_TEST(driver_missing_is_a_quiet_status) {
  use_missing_driver();
  capture_t cap;
  capture_begin(&cap);
  const qd_cuda_driver_t* cu = (const qd_cuda_driver_t*)1;
  qd_status_t s = qd_cuda_driver_load(&cu);
  qd_status_t again = qd_cuda_driver_load(&cu);
  qd_device_list_t* list = (qd_device_list_t*)1;
  qd_status_t query = qd_devices_query(qd_allocator_system(), &list);
  char printed[4096];
  size_t n = capture_end(&cap, printed, sizeof printed);
  ck_assert_msg(n == 0, "loading printed: %s", printed);

  ck_assert_ptr_null(cu);
  ck_assert_ptr_null(list);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNAVAILABLE);
  char msg[2048];
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_NO_DRIVER);
  ASSERT_CONTAINS(msg, "no CUDA driver: ");
  ASSERT_CONTAINS(msg, "no-such-dir/libcuda.so.1");
  ASSERT_CONTAINS(msg, "could not be loaded (");
  ck_assert_int_eq(status_text(again, msg, sizeof msg), QD_E_CUDA_NO_DRIVER);
  ck_assert_int_eq(status_text(query, msg, sizeof msg), QD_E_CUDA_NO_DRIVER);

  const char* lib = "x";
  ck_assert_int_eq(qd_cuda_driver_version_seen(&lib), 0);
  ck_assert_ptr_null(lib);
  qd_cuda_versions_t v;
  qd_cuda_versions_query(&v);
  ck_assert_int_eq(v.toolkit, CUDA_VERSION);
  ck_assert_int_eq(v.driver, 0);
  ck_assert_ptr_null(v.driver_library);
}
END_TEST

START_TEST(fake_driver_lists_devices) {
  if (!use_fake_driver("ok")) return;
  const qd_cuda_driver_t* cu;
  QD_ASSERT_OK(qd_cuda_driver_load(&cu));
  ck_assert_int_eq(cu->driver_version, 12080);
  /* The 12.0 ABI, whose prototypes qd calls, whatever the driver and headers. */
  ck_assert_int_eq(cu->abi_version, QD_CUDA_DRIVER_MIN_VERSION);
  ck_assert_int_eq(cu->device_count, 2);
  ck_assert_str_eq(cu->library, fake_driver());

  qd_device_list_t* list;
  QD_ASSERT_OK(qd_devices_query(qd_allocator_system(), &list));
  ck_assert_uint_eq(qd_device_list_count(list), 2);
  for (size_t i = 0; i < 2; i++) {
    const qd_device_info_t* d = qd_device_list_get(list, i);
    char name[64];
    snprintf(name, sizeof name, "qd fake GPU %zu", i);
    ck_assert_int_eq(d->ordinal, (int)i);
    ck_assert_str_eq(d->name, name);
    ck_assert_int_eq(d->cc_major, 9);
    ck_assert_int_eq(d->cc_minor, 0);
    ck_assert_int_eq(d->multiprocessor_count, 132);
    ck_assert_int_eq(d->max_shared_memory_per_block, 232448);
    ck_assert_uint_eq(d->total_memory, (80ull << 30) + i * (1ull << 30));
    ck_assert_int_eq(d->uuid[15], (int)(i * 0x10 + 15));
  }
  ck_assert_str_eq(qd_device_list_get(list, 0)->uuid_string, "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f");
  ck_assert_str_eq(qd_device_list_get(list, 1)->uuid_string, "GPU-10111213-1415-1617-1819-1a1b1c1d1e1f");
  ck_assert_ptr_null(qd_device_list_get(list, 2));
  const qd_cuda_versions_t* v = qd_device_list_versions(list);
  ck_assert_int_eq(v->toolkit, CUDA_VERSION);
  ck_assert_int_eq(v->driver, 12080);
  ck_assert_str_eq(v->driver_library, fake_driver());
  qd_device_list_destroy(list);
  qd_device_list_destroy(NULL);
}
END_TEST

START_TEST(fake_driver_query_survives_allocation_failures) {
  if (!use_fake_driver("ok")) return;
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_device_list_t* list;
    qd_status_t s = qd_devices_query(qd_test_allocator_as_allocator(&t), &list);
    if (!s) {
      ck_assert_uint_eq(t.failures, 0);
      qd_device_list_destroy(list);
      ck_assert_int_eq(t.live_count, 0);
      break;
    }
    ck_assert_ptr_null(list);
    ck_assert_int_eq(qd_status_detail(s), QD_E_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_int_eq(t.live_count, 0);
    ck_assert_uint_lt(n, 100);
  }
}
END_TEST

/* --- the kernel module cache (runtime/cuda/module_cache.h) on the fake driver -------------------------------- */

typedef struct {
  int retains, releases, loads, unloads;
} fake_counts_t;

static fake_counts_t fake_counts(void) {
  fake_counts_t c = {0};
  void* h = dlopen(fake_driver(), RTLD_NOW | RTLD_NOLOAD);
  ck_assert_msg(h != NULL, "the fake driver is not loaded");
  void (*fn)(int*, int*, int*, int*);
  void* sym = dlsym(h, "fake_cuda_counts");
  ck_assert_ptr_nonnull(sym);
  memcpy(&fn, &sym, sizeof fn);
  fn(&c.retains, &c.releases, &c.loads, &c.unloads);
  dlclose(h);
  return c;
}

START_TEST(module_cache_loads_each_kernel_once) {
  if (!use_fake_driver("ok")) return;
  qd_kernel_module_cache_t* c;
  QD_ASSERT_OK(qd_kernel_module_cache_create(qd_allocator_system(), 1, &c));
  static const char one[] = "image one", two[] = "image two";
  qd_kernel_module_t *a, *b, *a_again, *a_other_arch;
  QD_ASSERT_OK(qd_kernel_module_cache_load(c, "k.cu:f A=1 src=1", "sm_90", one, &a));
  QD_ASSERT_OK(qd_kernel_module_cache_load(c, "k.cu:f A=2 src=1", "sm_90", two, &b));
  QD_ASSERT_OK(qd_kernel_module_cache_load(c, "k.cu:f A=1 src=1", "sm_90", one, &a_again));
  QD_ASSERT_OK(qd_kernel_module_cache_load(c, "k.cu:f A=1 src=1", "sm_90a", one, &a_other_arch));
  ck_assert_ptr_eq(a, a_again);
  ck_assert_ptr_ne(a, b);
  ck_assert_ptr_ne(a, a_other_arch);
  /* past the first growth of the table */
  for (int i = 0; i < 40; i++) {
    char key[32];
    snprintf(key, sizeof key, "k.cu:g N=%d", i);
    qd_kernel_module_t* m;
    QD_ASSERT_OK(qd_kernel_module_cache_load(c, key, "sm_90", one, &m));
  }
  qd_kernel_module_t* b_again;
  QD_ASSERT_OK(qd_kernel_module_cache_load(c, "k.cu:f A=2 src=1", "sm_90", two, &b_again));
  ck_assert_ptr_eq(b, b_again);
  int32_t loaded;
  int64_t reused;
  qd_kernel_module_cache_counts(c, &loaded, &reused);
  ck_assert_int_eq(loaded, 43);
  ck_assert_int_eq(reused, 2);
  fake_counts_t f = fake_counts();
  ck_assert_int_eq(f.loads, 43);
  ck_assert_int_eq(f.retains, 1);
  ck_assert_int_eq(f.unloads, 0);
  qd_kernel_module_cache_destroy(c);
  f = fake_counts();
  ck_assert_int_eq(f.unloads, 43);
  ck_assert_int_eq(f.releases, 1);
  qd_kernel_module_cache_destroy(NULL);
  qd_kernel_module_cache_counts(NULL, &loaded, &reused);
  ck_assert_int_eq(loaded, 0);
}
END_TEST

START_TEST(module_cache_refuses_bad_arguments) {
  if (!use_fake_driver("ok")) return;
  qd_kernel_module_cache_t* c;
  qd_status_t s = qd_kernel_module_cache_create(qd_allocator_system(), 7, &c);
  ck_assert_ptr_nonnull(s);
  char msg[512];
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_DRIVER_ERROR);
  ASSERT_CONTAINS(msg, "cuDeviceGet");
  ck_assert_ptr_null(c);
  QD_ASSERT_OK(qd_kernel_module_cache_create(qd_allocator_system(), 0, &c));
  qd_kernel_module_t* m;
  status_text(qd_kernel_module_cache_load(c, NULL, "sm_90", "x", &m), msg, sizeof msg);
  ASSERT_CONTAINS(msg, "no cache, key or architecture");
  ck_assert_ptr_null(m);
  char long_key[400];
  memset(long_key, 'k', sizeof long_key - 1);
  long_key[sizeof long_key - 1] = 0;
  status_text(qd_kernel_module_cache_load(c, long_key, "sm_90", "x", &m), msg, sizeof msg);
  ASSERT_CONTAINS(msg, "too long for the module cache");
  status_text(qd_kernel_module_cache_load(c, "k.cu:f", "sm_90", NULL, &m), msg, sizeof msg);
  ASSERT_CONTAINS(msg, "no image");
  qd_kernel_module_cache_destroy(c);
  ck_assert_int_eq(fake_counts().loads, 0);
}
END_TEST

START_TEST(module_cache_survives_allocation_failures) {
  if (!use_fake_driver("ok")) return;
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_allocator_t a = qd_test_allocator_as_allocator(&t);
    qd_kernel_module_cache_t* c;
    qd_status_t s = qd_kernel_module_cache_create(a, 0, &c);
    for (int i = 0; !s && i < 3; i++) {
      char key[32];
      snprintf(key, sizeof key, "k.cu:f N=%d", i);
      qd_kernel_module_t* m;
      s = qd_kernel_module_cache_load(c, key, "sm_90", "image", &m);
    }
    qd_kernel_module_cache_destroy(c);
    ck_assert_int_eq(t.live_count, 0);
    if (!s) break;
    ck_assert_int_eq(qd_status_detail(s), QD_E_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_uint_lt(n, 100);
  }
  fake_counts_t f = fake_counts();
  ck_assert_int_eq(f.loads, f.unloads);
  ck_assert_int_eq(f.retains, f.releases);
}
END_TEST

static void* load_all(void* arg) {
  const void** seen = arg;
  const qd_cuda_driver_t* cu = NULL;
  const qd_nvrtc_t* nv = NULL;
  const qd_cublaslt_t* lt = NULL;
  qd_status_free(qd_cuda_driver_load(&cu));
  qd_status_free(qd_nvrtc_load(&nv));
  qd_status_free(qd_cublaslt_load(&lt));
  seen[0] = cu;
  seen[1] = nv;
  seen[2] = lt;
  return NULL;
}

START_TEST(loading_races_to_one_table) {
  if (!use_fake_driver("ok")) return;
  enum { N = 8 };
  pthread_t threads[N];
  const void* seen[N][3];
  for (int i = 0; i < N; i++) ck_assert_int_eq(pthread_create(&threads[i], NULL, load_all, seen[i]), 0);
  for (int i = 0; i < N; i++) ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
  for (int i = 0; i < N; i++)
    for (int k = 0; k < 3; k++) {
      ck_assert_ptr_nonnull(seen[i][k]);
      ck_assert_ptr_eq(seen[i][k], seen[0][k]);
    }
}
END_TEST

START_TEST(fake_driver_newer_than_headers_gets_the_12_0_abi) {
  if (!use_fake_driver("new")) return;
  const qd_cuda_driver_t* cu;
  QD_ASSERT_OK(qd_cuda_driver_load(&cu));
  ck_assert_int_eq(cu->driver_version, 13020);
  ck_assert_int_eq(cu->abi_version, QD_CUDA_DRIVER_MIN_VERSION);
  /* The prototype qd calls: a 13.x driver asked for the 13.0 ABI hands out cuCtxSynchronize(CUcontext). */
  ck_assert_int_eq(cu->cuCtxSynchronize(), CUDA_SUCCESS);
}
END_TEST

START_TEST(fake_driver_missing_entry_point) {
  if (!use_fake_driver("missing")) return;
  const qd_cuda_driver_t* cu;
  char msg[2048];
  qd_status_t s = qd_cuda_driver_load(&cu);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNAVAILABLE);
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_SYMBOL_MISSING);
  ASSERT_CONTAINS(msg, "'cuLaunchKernelEx'");
  ASSERT_CONTAINS(msg, "12.8");
  ck_assert_ptr_null(cu);
}
END_TEST

START_TEST(fake_driver_init_failure_means_no_device) {
  if (!use_fake_driver("init_fails")) return;
  const qd_cuda_driver_t* cu;
  char msg[2048];
  ck_assert_int_eq(status_text(qd_cuda_driver_load(&cu), msg, sizeof msg), QD_E_CUDA_NO_DEVICE);
  ASSERT_CONTAINS(msg, "no CUDA device found");
  ASSERT_CONTAINS(msg, "CUDA_ERROR_NO_DEVICE");
  /* The version read before cuInit is still reported. */
  const char* lib;
  ck_assert_int_eq(qd_cuda_driver_version_seen(&lib), 12080);
  ck_assert_str_eq(lib, fake_driver());
}
END_TEST

START_TEST(fake_driver_without_devices) {
  if (!use_fake_driver("zero")) return;
  const qd_cuda_driver_t* cu;
  char msg[2048];
  ck_assert_int_eq(status_text(qd_cuda_driver_load(&cu), msg, sizeof msg), QD_E_CUDA_NO_DEVICE);
  ASSERT_CONTAINS(msg, "reports 0 devices");
  qd_device_list_t* list;
  QD_ASSERT_DETAIL(qd_devices_query(qd_allocator_system(), &list), QD_E_CUDA_NO_DEVICE);
}
END_TEST

START_TEST(fake_driver_too_old) {
  if (!use_fake_driver("old")) return;
  const qd_cuda_driver_t* cu;
  char msg[2048];
  qd_status_t s = qd_cuda_driver_load(&cu);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNSUPPORTED);
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_DRIVER_TOO_OLD);
  ASSERT_CONTAINS(msg, "CUDA 11.8");
  ASSERT_CONTAINS(msg, "CUDA 12.0 or newer");
}
END_TEST

static qd_status_t alloc_through_try(const qd_cuda_driver_t* cu) {
  CUdeviceptr p;
  QD_CU_TRY(cu->cuMemAlloc(&p, 1 << 20));
  return QD_OK;
}

START_TEST(driver_call_failures_become_statuses) {
  if (!use_fake_driver("ok")) return;
  const qd_cuda_driver_t* cu;
  QD_ASSERT_OK(qd_cuda_driver_load(&cu));
  char msg[2048];
  qd_status_t s = alloc_through_try(cu);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_DEVICE_OUT_OF_MEMORY);
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_OUT_OF_MEMORY);
  ck_assert_str_eq(msg, "cuMemAlloc failed: CUDA_ERROR_OUT_OF_MEMORY (out of memory)");

  s = QD_CU_STATUS(cu->cuMemFree(0));
  ck_assert_int_eq(qd_status_code(s), QD_CODE_DEVICE);
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_DRIVER_ERROR);
  ck_assert_str_eq(msg, "cuMemFree failed: CUDA_ERROR_INVALID_VALUE (invalid argument)");

  ck_assert_ptr_null(QD_CU_STATUS(cu->cuDeviceGetCount(&(int){0})));
  ck_assert_str_eq(qd_cuda_result_name(CUDA_ERROR_NO_DEVICE), "CUDA_ERROR_NO_DEVICE");
  ck_assert_str_eq(qd_cuda_result_name((CUresult)12345), "CUresult 12345");
}
END_TEST

START_TEST(stub_driver_means_no_device) {
  const char* root = getenv("QD_CUDA_TOOLKIT");
  char path[600];
  snprintf(path, sizeof path, "%s/lib64/stubs/libcuda.so", root && *root ? root : "/usr/local/cuda");
  if (access(path, R_OK) != 0) return;
  setenv("QD_CUDA_DRIVER_LIBRARY", path, 1);
  capture_t cap;
  capture_begin(&cap);
  const qd_cuda_driver_t* cu;
  qd_status_t s = qd_cuda_driver_load(&cu);
  char printed[4096];
  size_t n = capture_end(&cap, printed, sizeof printed);
  ck_assert_msg(n == 0, "loading the stub printed: %s", printed);
  char msg[2048];
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUDA_NO_DEVICE);
  ASSERT_CONTAINS(msg, "CUDA_ERROR_STUB_LIBRARY");
}
END_TEST

/* --- NVRTC ---------------------------------------------------------------------------------------------------- */

static const char k_saxpy[] =
    "extern \"C\" __global__ void saxpy(float a, const float* x, float* y, int n) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) y[i] = a * x[i] + y[i] * SCALE;\n"
    "}\n";

static const char k_bf16_add[] =
    "#include <cuda_bf16.h>\n"
    "extern \"C\" __global__ void add_bf16(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* c, int n) {\n"
    "  int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
    "  if (i < n) c[i] = __float2bfloat16(__bfloat162float(a[i]) + __bfloat162float(b[i]));\n"
    "}\n";

static const char* const k_saxpy_options[] = {"-DSCALE=1.0f"};

START_TEST(nvrtc_loads_without_a_gpu) {
  use_missing_driver(); /* NVRTC must not care */
  const qd_nvrtc_t* nv;
  QD_ASSERT_OK(qd_nvrtc_load(&nv));
  ck_assert_int_ge(nv->version_major, 12);
  ck_assert_ptr_nonnull(nv->library);
  /* NVRTC 13.0 has no built-in cuda_bf16.h; the toolkit qd was built with has one. */
  ck_assert_ptr_nonnull(nv->include_dir);
  const qd_nvrtc_t* again;
  QD_ASSERT_OK(qd_nvrtc_load(&again));
  ck_assert_ptr_eq(nv, again);
}
END_TEST

START_TEST(nvrtc_compiles_cubin_and_ptx) {
  use_missing_driver();
  qd_nvrtc_compile_options_t opt = {.source = k_saxpy,
                                    .name = "saxpy.cu",
                                    .arch = "90",
                                    .outputs = QD_NVRTC_OUTPUT_CUBIN | QD_NVRTC_OUTPUT_PTX,
                                    .options = k_saxpy_options,
                                    .option_count = 1};
  qd_nvrtc_output_t out;
  QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &out));
  ck_assert_str_eq(out.arch, "sm_90");
  ck_assert_uint_gt(out.cubin_size, 64);
  ck_assert_mem_eq(out.cubin, "\x7f" "ELF", 4);
  ck_assert_ptr_nonnull(out.ptx);
  ck_assert_uint_eq(strlen(out.ptx), out.ptx_size);
  ASSERT_CONTAINS(out.ptx, ".target sm_90");
  ASSERT_CONTAINS(out.ptx, ".entry saxpy");
  qd_nvrtc_output_deinit(&out);
  ck_assert_ptr_null(out.cubin);
  qd_nvrtc_output_deinit(&out); /* a zeroed output is a no-op */

  /* PTX alone for the architecture-specific Hopper target (wgmma lives there). */
  opt.arch = "sm_90a";
  opt.outputs = QD_NVRTC_OUTPUT_PTX;
  QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &out));
  ck_assert_ptr_null(out.cubin);
  ASSERT_CONTAINS(out.ptx, ".target sm_90a");
  qd_nvrtc_output_deinit(&out);

  opt.outputs = 0; /* cubin only */
  QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &out));
  ck_assert_ptr_null(out.ptx);
  ck_assert_mem_eq(out.cubin, "\x7f" "ELF", 4);
  qd_nvrtc_output_deinit(&out);
}
END_TEST

START_TEST(nvrtc_compiles_bf16_without_toolkit_headers) {
  qd_nvrtc_compile_options_t opt = {.source = k_bf16_add, .name = "add_bf16.cu", .arch = "sm_90",
                                    .outputs = QD_NVRTC_OUTPUT_CUBIN | QD_NVRTC_OUTPUT_PTX};
  qd_nvrtc_output_t out;
  QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &out));
  ck_assert_mem_eq(out.cubin, "\x7f" "ELF", 4);
  ASSERT_CONTAINS(out.ptx, ".entry add_bf16");
  qd_nvrtc_output_deinit(&out);
}
END_TEST

START_TEST(nvrtc_syntax_error_carries_the_log) {
  static const char bad[] =
      "extern \"C\" __global__ void broken(float* y) {\n"
      "  y[threadIdx.x] = undeclared_thing_42 +;\n"
      "}\n";
  qd_nvrtc_compile_options_t opt = {.source = bad, .name = "broken.cu", .arch = "90"};
  qd_nvrtc_output_t out;
  capture_t cap;
  capture_begin(&cap);
  qd_status_t s = qd_nvrtc_compile(qd_allocator_system(), &opt, &out);
  char printed[4096];
  size_t n = capture_end(&cap, printed, sizeof printed);
  ck_assert_msg(n == 0, "compiling printed: %s", printed);
  ck_assert_ptr_null(out.cubin);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_DEVICE);
  char msg[8192];
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_NVRTC_COMPILE);
  ASSERT_CONTAINS(msg, "'broken.cu'");
  ASSERT_CONTAINS(msg, "sm_90");
  ASSERT_CONTAINS(msg, "undeclared_thing_42"); /* from the compiler's log */
  ASSERT_CONTAINS(msg, "error");
}
END_TEST

START_TEST(nvrtc_rejects_bad_targets_and_options) {
  qd_nvrtc_output_t out;
  qd_nvrtc_compile_options_t opt = {.source = k_saxpy, .options = k_saxpy_options, .option_count = 1};
  const char* bad[] = {NULL, "", "9", "sm_", "sm_90b", "banana", "compute_90", "sm_9000", "090"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    opt.arch = bad[i];
    QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), QD_E_INVALID_ARGUMENT);
  }
  /* Understood, but CUDA 13's NVRTC no longer targets Kepler. */
  opt.arch = "sm_35";
  char msg[4096];
  ck_assert_int_eq(status_text(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), msg, sizeof msg),
                   QD_E_NVRTC_ARCH_UNSUPPORTED);
  ASSERT_CONTAINS(msg, "sm_90");

  opt.arch = "sm_90";
  const char* const unknown_option[] = {"--no-such-nvrtc-option"};
  opt.options = unknown_option;
  QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), QD_E_NVRTC_COMPILE);
  opt.options = NULL;
  QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), NULL, &out), QD_E_INVALID_ARGUMENT);
  opt.option_count = 0;
  opt.header_count = 1; /* headers announced, none given */
  QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), QD_E_INVALID_ARGUMENT);
  opt.header_count = 0;

  char arch[16];
  int number;
  QD_ASSERT_OK(qd_nvrtc_arch_parse("100f", arch, sizeof arch, &number));
  ck_assert_str_eq(arch, "sm_100f");
  ck_assert_int_eq(number, 100);
  QD_ASSERT_OK(qd_nvrtc_arch_parse("sm_90a", arch, sizeof arch, &number));
  ck_assert_str_eq(arch, "sm_90a");
  ck_assert_int_eq(number, 90);
}
END_TEST

START_TEST(nvrtc_compile_survives_allocation_failures) {
  qd_nvrtc_compile_options_t opt = {.source = k_saxpy, .arch = "sm_90",
                                    .outputs = QD_NVRTC_OUTPUT_CUBIN | QD_NVRTC_OUTPUT_PTX,
                                    .options = k_saxpy_options, .option_count = 1};
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_nvrtc_output_t out;
    qd_status_t s = qd_nvrtc_compile(qd_test_allocator_as_allocator(&t), &opt, &out);
    if (!s) {
      ck_assert_uint_eq(t.failures, 0);
      qd_nvrtc_output_deinit(&out);
      ck_assert_int_eq(t.live_count, 0);
      break;
    }
    ck_assert_ptr_null(out.cubin);
    ck_assert_ptr_null(out.ptx);
    ck_assert_int_eq(qd_status_detail(s), QD_E_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_int_eq(t.live_count, 0);
    ck_assert_uint_lt(n, 100);
  }
}
END_TEST

START_TEST(nvrtc_missing_library) {
  setenv("QD_NVRTC_LIBRARY", "/no-such-dir/libnvrtc.so.13", 1);
  capture_t cap;
  capture_begin(&cap);
  const qd_nvrtc_t* nv;
  qd_status_t s = qd_nvrtc_load(&nv);
  char printed[1024];
  ck_assert_uint_eq(capture_end(&cap, printed, sizeof printed), 0);
  char msg[2048];
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNAVAILABLE);
  ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_NVRTC_NOT_FOUND);
  ASSERT_CONTAINS(msg, "/no-such-dir/libnvrtc.so.13");
  ASSERT_CONTAINS(msg, "QD_NVRTC_LIBRARY");
  qd_nvrtc_output_t out;
  qd_nvrtc_compile_options_t opt = {.source = k_saxpy, .arch = "90"};
  QD_ASSERT_DETAIL(qd_nvrtc_compile(qd_allocator_system(), &opt, &out), QD_E_NVRTC_NOT_FOUND);
  qd_cuda_versions_t v;
  qd_cuda_versions_query(&v);
  ck_assert_ptr_null(v.nvrtc_library);
  ck_assert_int_eq(v.nvrtc_major, 0);
}
END_TEST

/* --- cuBLASLt ------------------------------------------------------------------------------------------------- */

START_TEST(cublaslt_loads_and_reports_a_version) {
  use_missing_driver();
  const qd_cublaslt_t* lt;
  QD_ASSERT_OK(qd_cublaslt_load(&lt));
  ck_assert_uint_ge(lt->version, 120000);
  ck_assert_ptr_nonnull(lt->library);
  char msg[1024];
  ck_assert_int_eq(status_text(QD_CUBLASLT_STATUS((cublasStatus_t)CUBLAS_STATUS_NOT_SUPPORTED), msg, sizeof msg),
                   QD_E_CUBLASLT_ERROR);
  ASSERT_CONTAINS(msg, "CUBLAS_STATUS_NOT_SUPPORTED");
  ck_assert_ptr_null(QD_CUBLASLT_STATUS(CUBLAS_STATUS_SUCCESS));
  qd_cuda_versions_t v;
  qd_cuda_versions_query(&v);
  ck_assert_int_eq(v.cublaslt, (int)lt->version);
  ck_assert_int_eq(v.nvrtc_major >= 12, 1);
}
END_TEST

START_TEST(cublaslt_handle_without_a_device_is_a_status) {
  const qd_cuda_driver_t* cu;
  qd_status_t ds = qd_cuda_driver_load(&cu);
  bool have_device = ds == QD_OK;
  qd_status_free(ds);
  if (have_device) return; /* covered by real_driver_runs_a_kernel */
  const qd_cublaslt_t* lt;
  QD_ASSERT_OK(qd_cublaslt_load(&lt));
  cublasLtHandle_t h = NULL;
  /* cuBLASLt 13.1 leaks 192 bytes inside a cublasLtCreate that fails for want of a driver. LeakSanitizer is
   * paused for exactly this call rather than silenced for the whole library with a suppression file, which
   * would also hide handles and descriptors that qd forgets to destroy. */
#if defined(__SANITIZE_ADDRESS__)
  __lsan_disable();
#endif
  qd_status_t s = QD_CUBLASLT_STATUS(lt->cublasLtCreate(&h));
#if defined(__SANITIZE_ADDRESS__)
  __lsan_enable();
#endif
  if (s) {
    char msg[1024];
    ck_assert_int_eq(status_text(s, msg, sizeof msg), QD_E_CUBLASLT_ERROR);
    ASSERT_CONTAINS(msg, "cublasLtCreate failed: CUBLAS_STATUS_");
  } else {
    /* Some cuBLASLt versions create handles lazily; then destroying must work too. */
    QD_ASSERT_OK(QD_CUBLASLT_STATUS(lt->cublasLtDestroy(h)));
  }
}
END_TEST

START_TEST(cublaslt_missing_library) {
  setenv("QD_CUBLASLT_LIBRARY", "/no-such-dir/libcublasLt.so.13", 1);
  const qd_cublaslt_t* lt;
  QD_ASSERT_DETAIL(qd_cublaslt_load(&lt), QD_E_CUBLASLT_NOT_FOUND);
  ck_assert_ptr_null(lt);
}
END_TEST

/* --- a real driver, when there is one ------------------------------------------------------------------------- */

/* True when this machine has a driver and a device; prints why not otherwise (visible in the test log). */
static bool real_driver(const qd_cuda_driver_t** out_cu) {
  unsetenv("QD_CUDA_DRIVER_LIBRARY");
  qd_status_t s = qd_cuda_driver_load(out_cu);
  if (!s) return true;
  char msg[2048];
  qd_error_detail_t d = status_text(s, msg, sizeof msg);
  ck_assert_msg(d == QD_E_CUDA_NO_DRIVER || d == QD_E_CUDA_NO_DEVICE, "driver present but unusable: %s", msg);
  printf("test_cuda_loading: real-driver checks skipped: %s\n", msg);
  return false;
}

START_TEST(real_driver_devices_are_sane) {
  const qd_cuda_driver_t* cu;
  if (!real_driver(&cu)) return;
  ck_assert_int_ge(cu->driver_version, QD_CUDA_DRIVER_MIN_VERSION);
  qd_device_list_t* list;
  QD_ASSERT_OK(qd_devices_query(qd_allocator_system(), &list));
  ck_assert_uint_ge(qd_device_list_count(list), 1);
  for (size_t i = 0; i < qd_device_list_count(list); i++) {
    const qd_device_info_t* d = qd_device_list_get(list, i);
    printf("test_cuda_loading: device %d: %s sm_%d%d, %.1f GiB, %d SMs, %s\n", d->ordinal, d->name, d->cc_major,
           d->cc_minor, (double)d->total_memory / (1 << 30), d->multiprocessor_count, d->uuid_string);
    ck_assert_int_gt((int)strlen(d->name), 0);
    ck_assert_int_ge(d->cc_major, 5);
    ck_assert_int_ge(d->cc_minor, 0);
    ck_assert_uint_gt(d->total_memory, 512ull << 20);
    ck_assert_int_gt(d->multiprocessor_count, 0);
    ck_assert_int_ge(d->max_shared_memory_per_block, 48 * 1024);
    bool nonzero = false;
    for (int b = 0; b < 16; b++) nonzero |= d->uuid[b] != 0;
    ck_assert(nonzero);
  }
  ck_assert_int_eq(qd_device_list_versions(list)->driver, cu->driver_version);
  qd_device_list_destroy(list);
}
END_TEST

/* Device memory and the module are released on every path; the context is the device's primary one. */
static qd_status_t run_saxpy(const qd_cuda_driver_t* cu, const qd_nvrtc_output_t* bin, float* y_host, int n,
                             float* out_ms) {
  float x_host[256];
  for (int i = 0; i < n; i++) x_host[i] = (float)i;
  CUmodule mod = NULL;
  CUdeviceptr x = 0, y = 0;
  CUstream stream = NULL;
  CUevent start = NULL, stop = NULL;
  qd_status_t s = QD_OK;
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuModuleLoadData(&mod, bin->cubin)), done);
  CUfunction fn;
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuModuleGetFunction(&fn, mod, "saxpy")), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuEventCreate(&start, CU_EVENT_DEFAULT)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuEventCreate(&stop, CU_EVENT_DEFAULT)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuMemAlloc(&x, sizeof x_host)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuMemAllocAsync(&y, sizeof x_host, stream)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuMemcpyHtoD(x, x_host, (size_t)n * sizeof(float))), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuMemsetD32Async(y, 0x3f800000u /* 1.0f */, (size_t)n, stream)), done);
  float a = 2.0f;
  void* params[] = {&a, &x, &y, &n};
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuEventRecord(start, stream)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuLaunchKernel(fn, 1, 1, 1, 256, 1, 1, 0, stream, params, NULL)), done);
  /* The same kernel again through cuLaunchKernelEx: y = 2x + (2x + 1). */
  CUlaunchConfig config = {.gridDimX = 1, .gridDimY = 1, .gridDimZ = 1, .blockDimX = 256, .blockDimY = 1,
                           .blockDimZ = 1, .hStream = stream};
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuLaunchKernelEx(&config, fn, params, NULL)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuEventRecord(stop, stream)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuMemcpyDtoHAsync(y_host, y, (size_t)n * sizeof(float), stream)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuStreamSynchronize(stream)), done);
  QD_CHECK_GOTO(s, QD_CU_STATUS(cu->cuEventElapsedTime(out_ms, start, stop)), done);
done:
  if (y) qd_status_free(QD_CU_STATUS(cu->cuMemFreeAsync(y, stream)));
  if (stream) qd_status_free(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  if (x) qd_status_free(QD_CU_STATUS(cu->cuMemFree(x)));
  if (start) cu->cuEventDestroy(start);
  if (stop) cu->cuEventDestroy(stop);
  if (stream) cu->cuStreamDestroy(stream);
  if (mod) cu->cuModuleUnload(mod);
  return s;
}

START_TEST(real_driver_runs_a_kernel) {
  const qd_cuda_driver_t* cu;
  if (!real_driver(&cu)) return;
  CUdevice dev;
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuDeviceGet(&dev, 0)));
  int major = 0, minor = 0;
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)));
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)));
  char arch[16];
  snprintf(arch, sizeof arch, "sm_%d%d", major, minor);
  qd_nvrtc_compile_options_t opt = {.source = k_saxpy, .name = "saxpy.cu", .arch = arch,
                                    .options = k_saxpy_options, .option_count = 1};
  qd_nvrtc_output_t bin;
  QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &bin));

  CUcontext ctx;
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuDevicePrimaryCtxRetain(&ctx, dev)));
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuCtxSetCurrent(ctx)));
  size_t free_bytes = 0, total_bytes = 0;
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuMemGetInfo(&free_bytes, &total_bytes)));
  ck_assert_uint_gt(total_bytes, 0);
  ck_assert_uint_le(free_bytes, total_bytes);

  float y[256];
  int n = 200;
  float ms = -1.0f;
  QD_ASSERT_OK(run_saxpy(cu, &bin, y, n, &ms));
  ck_assert(ms >= 0.0f);
  for (int i = 0; i < n; i++) ck_assert_float_eq_tol(y[i], 4.0f * (float)i + 1.0f, 1e-5f);

  /* A driver error through the real table: an absurd allocation is out of memory, not a crash. */
  CUdeviceptr huge;
  QD_ASSERT_DETAIL(QD_CU_STATUS(cu->cuMemAlloc(&huge, (size_t)1 << 60)), QD_E_CUDA_OUT_OF_MEMORY);

  const qd_cublaslt_t* lt;
  QD_ASSERT_OK(qd_cublaslt_load(&lt));
  cublasLtHandle_t h;
  QD_ASSERT_OK(QD_CUBLASLT_STATUS(lt->cublasLtCreate(&h)));
  QD_ASSERT_OK(QD_CUBLASLT_STATUS(lt->cublasLtDestroy(h)));

  qd_nvrtc_output_deinit(&bin);
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuCtxSetCurrent(NULL)));
  QD_ASSERT_OK(QD_CU_STATUS(cu->cuDevicePrimaryCtxRelease(dev)));
}
END_TEST

/* --- qdrun --devices ------------------------------------------------------------------------------------------ */

START_TEST(qdrun_devices_without_driver) {
  use_missing_driver();
  char *out, *err;
  int rc = run_qdrun((const char*[]){"--devices", NULL}, &out, &err);
  ck_assert_msg(rc == 0, "exit %d; stdout: %s; stderr: %s", rc, out, err);
  ASSERT_CONTAINS(out, "qdrun: no CUDA driver: ");
  ASSERT_CONTAINS(out, "CPU execution is still available");
  ASSERT_CONTAINS(out, "CUDA toolkit");
  ASSERT_CONTAINS(out, "NVRTC");
  ASSERT_CONTAINS(out, "cuBLASLt");
  ck_assert_str_eq(err, "");
  free(out);
  free(err);
}
END_TEST

START_TEST(qdrun_devices_json_without_driver) {
  use_missing_driver();
  char *out, *err;
  int rc = run_qdrun((const char*[]){"--devices", "--json", NULL}, &out, &err);
  ck_assert_msg(rc == 0, "exit %d; stderr: %s", rc, err);
  ck_assert_str_eq(err, "");
  cJSON* root = cJSON_Parse(out);
  ck_assert_msg(root != NULL, "not JSON: %s", out);
  ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(root, "cuda_available")));
  cJSON* status = cJSON_GetObjectItem(root, "status");
  ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(status, "detail")), "CUDA_NO_DRIVER");
  ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "devices")), 0);
  cJSON* v = cJSON_GetObjectItem(root, "versions");
  char toolkit[16];
  snprintf(toolkit, sizeof toolkit, "%d.%d", CUDA_VERSION / 1000, CUDA_VERSION % 1000 / 10);
  ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(v, "toolkit")), toolkit);
  ck_assert(cJSON_IsNull(cJSON_GetObjectItem(v, "driver")));
  ck_assert(cJSON_IsString(cJSON_GetObjectItem(v, "nvrtc")));
  ck_assert(cJSON_IsString(cJSON_GetObjectItem(v, "cublaslt")));
  cJSON_Delete(root);
  free(out);
  free(err);
}
END_TEST

START_TEST(qdrun_devices_with_fake_driver) {
  if (!use_fake_driver("ok")) return;
  char *out, *err;
  int rc = run_qdrun((const char*[]){"--devices", NULL}, &out, &err);
  ck_assert_msg(rc == 0, "exit %d; stderr: %s", rc, err);
  ASSERT_CONTAINS(out, "qd fake GPU 0");
  ASSERT_CONTAINS(out, "qd fake GPU 1");
  ASSERT_CONTAINS(out, "sm_90");
  ASSERT_CONTAINS(out, "80.0 GiB");
  ASSERT_CONTAINS(out, "81.0 GiB");
  ASSERT_CONTAINS(out, "132");
  ASSERT_CONTAINS(out, "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f");
  ASSERT_CONTAINS(out, "CUDA driver   12.8");
  free(out);
  free(err);

  rc = run_qdrun((const char*[]){"--devices", "--json", NULL}, &out, &err);
  ck_assert_int_eq(rc, 0);
  cJSON* root = cJSON_Parse(out);
  ck_assert_ptr_nonnull(root);
  ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(root, "cuda_available")));
  ck_assert(cJSON_IsNull(cJSON_GetObjectItem(root, "status")));
  cJSON* devs = cJSON_GetObjectItem(root, "devices");
  ck_assert_int_eq(cJSON_GetArraySize(devs), 2);
  cJSON* d1 = cJSON_GetArrayItem(devs, 1);
  ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d1, "arch")), "sm_90");
  ck_assert_double_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(d1, "total_memory_bytes")), (double)(81ull << 30));
  ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "versions"), "driver")),
                   "12.8");
  cJSON_Delete(root);
  free(out);
  free(err);

  /* A broken driver is an error, not "no GPU": exit 1 and the reason on stderr. */
  setenv("QD_FAKE_CUDA_MODE", "missing", 1);
  rc = run_qdrun((const char*[]){"--devices", NULL}, &out, &err);
  ck_assert_int_eq(rc, 1);
  ASSERT_CONTAINS(err, "qdrun: error: ");
  ASSERT_CONTAINS(err, "cuLaunchKernelEx");
  free(out);
  free(err);
}
END_TEST

START_TEST(qdrun_devices_on_this_machine) {
  unsetenv("QD_CUDA_DRIVER_LIBRARY");
  char *out, *err;
  int rc = run_qdrun((const char*[]){"--devices", NULL}, &out, &err);
  ck_assert_msg(rc == 0, "exit %d; stdout: %s; stderr: %s", rc, out, err);
  bool no_gpu = strstr(out, "no CUDA driver") || strstr(out, "no CUDA device found");
  bool table = strstr(out, "sm_") && strstr(out, "GiB");
  ck_assert_msg(no_gpu != table, "expected either the no-GPU message or a device table: %s", out);
  if (no_gpu) ASSERT_CONTAINS(out, "CPU execution is still available");
  free(out);
  free(err);
}
END_TEST

START_TEST(qdrun_help_lists_devices) {
  char *out, *err;
  ck_assert_int_eq(run_qdrun((const char*[]){"--help", NULL}, &out, &err), 0);
  ASSERT_CONTAINS(out, "--devices");
  ASSERT_CONTAINS(out, "--json");
  free(out);
  free(err);
}
END_TEST

static Suite* cuda_loading_suite(void) {
  Suite* s = suite_create("cuda_loading");
  TCase* driver = tcase_create("driver");
  tcase_add_test(driver, driver_missing_is_a_quiet_status);
  tcase_add_test(driver, fake_driver_lists_devices);
  tcase_add_test(driver, fake_driver_query_survives_allocation_failures);
  tcase_add_test(driver, fake_driver_newer_than_headers_gets_the_12_0_abi);
  tcase_add_test(driver, loading_races_to_one_table);
  tcase_add_test(driver, module_cache_loads_each_kernel_once);
  tcase_add_test(driver, module_cache_refuses_bad_arguments);
  tcase_add_test(driver, module_cache_survives_allocation_failures);
  tcase_add_test(driver, fake_driver_missing_entry_point);
  tcase_add_test(driver, fake_driver_init_failure_means_no_device);
  tcase_add_test(driver, fake_driver_without_devices);
  tcase_add_test(driver, fake_driver_too_old);
  tcase_add_test(driver, driver_call_failures_become_statuses);
  tcase_add_test(driver, stub_driver_means_no_device);
  suite_add_tcase(s, driver);

  TCase* nvrtc = tcase_create("nvrtc");
  tcase_add_test(nvrtc, nvrtc_loads_without_a_gpu);
  tcase_add_test(nvrtc, nvrtc_compiles_cubin_and_ptx);
  tcase_add_test(nvrtc, nvrtc_compiles_bf16_without_toolkit_headers);
  tcase_add_test(nvrtc, nvrtc_syntax_error_carries_the_log);
  tcase_add_test(nvrtc, nvrtc_rejects_bad_targets_and_options);
  tcase_add_test(nvrtc, nvrtc_compile_survives_allocation_failures);
  tcase_add_test(nvrtc, nvrtc_missing_library);
  suite_add_tcase(s, nvrtc);

  TCase* lt = tcase_create("cublaslt");
  tcase_add_test(lt, cublaslt_loads_and_reports_a_version);
  tcase_add_test(lt, cublaslt_handle_without_a_device_is_a_status);
  tcase_add_test(lt, cublaslt_missing_library);
  suite_add_tcase(s, lt);

  TCase* real = tcase_create("real_driver");
  tcase_add_test(real, real_driver_devices_are_sane);
  tcase_add_test(real, real_driver_runs_a_kernel);
  suite_add_tcase(s, real);

  TCase* qdrun = tcase_create("qdrun");
  tcase_add_test(qdrun, qdrun_devices_without_driver);
  tcase_add_test(qdrun, qdrun_devices_json_without_driver);
  tcase_add_test(qdrun, qdrun_devices_with_fake_driver);
  tcase_add_test(qdrun, qdrun_devices_on_this_machine);
  tcase_add_test(qdrun, qdrun_help_lists_devices);
  suite_add_tcase(s, qdrun);
  return s;
}

QD_TEST_MAIN(cuda_loading_suite)
