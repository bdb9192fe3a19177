/* The CUDA driver loaded at run time: see runtime/cuda_driver.h for the policy. */
#include "runtime/cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda_library.h"

#if defined(__SANITIZE_ADDRESS__)
#define QD_CU_ASAN_ 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define QD_CU_ASAN_ 1
#endif
#endif
#if defined(QD_CU_ASAN_)
#include <sanitizer/lsan_interface.h>
#endif

#define QD_CU_STR2_(x) #x
#define QD_CU_STR_(x) QD_CU_STR2_(x)

/* One row per entry point: the base name cuGetProcAddress wants, the (possibly versioned) name cuda.h maps it
 * to, for the dlsym fallback, and where the pointer goes. `#name` keeps the spelling as written; QD_CU_STR_
 * expands cuda.h's macro first. */
typedef struct qd_cu_symbol_ {
  const char* base_name;
  const char* header_name;
  size_t offset;
} qd_cu_symbol_t_;

static const qd_cu_symbol_t_ qd_cu_symbols_[] = {
#define QD_CU_ROW_(name) {#name, QD_CU_STR_(name), offsetof(qd_cuda_driver_t, name)},
    QD_CUDA_DRIVER_SYMBOLS(QD_CU_ROW_)
#undef QD_CU_ROW_
};

typedef CUresult (*qd_cu_get_proc_address_fn_)(const char* symbol, void** pfn, int cuda_version, cuuint64_t flags,
                                               CUdriverProcAddressQueryResult* symbol_status);

static pthread_once_t qd_cu_once_ = PTHREAD_ONCE_INIT;
static qd_cuda_driver_t qd_cu_driver_;
static qd_status_t qd_cu_load_status_;   /* the first load's error, kept for the process and copied per caller */
static int qd_cu_version_seen_;
static bool qd_cu_opened_;
static char qd_cu_library_[4096];
/* Set as soon as libcuda is open, so that errors can be named even when loading fails further on. */
static __typeof__(&cuGetErrorName) qd_cu_error_name_fn_;
static __typeof__(&cuGetErrorString) qd_cu_error_string_fn_;

/* dlsym returns an object pointer; POSIX guarantees it converts to a function pointer, and memcpy keeps
 * -Wpedantic quiet about the conversion. */
static void qd_cu_store_(void* field, void* fn) { memcpy(field, &fn, sizeof fn); }

static void qd_cu_version_text_(int version, char* buf, size_t size) {
  snprintf(buf, size, "%d.%d", version / 1000, (version % 1000) / 10);
}

/* The driver's description of a result; a few codes that matter before the driver can describe anything (a stub
 * library describes nothing) have a text of their own. */
static const char* qd_cu_result_text_(CUresult r) {
  const char* text = NULL;
  if (qd_cu_error_string_fn_ && qd_cu_error_string_fn_(r, &text) == CUDA_SUCCESS && text) return text;
  switch (r) {
    case CUDA_ERROR_STUB_LIBRARY:
      return "this is the toolkit's stub libcuda, which only satisfies linkers; the NVIDIA driver is not installed";
    case CUDA_ERROR_NO_DEVICE: return "no CUDA-capable device is detected";
    case CUDA_ERROR_OUT_OF_MEMORY: return "out of memory";
    default: return "no description";
  }
}

static qd_status_t qd_cu_open_(void** out_handle) {
  *out_handle = NULL;
  const char* env = getenv("QD_CUDA_DRIVER_LIBRARY");
  const char* name = env && *env ? env : "libcuda.so.1";
  snprintf(qd_cu_library_, sizeof qd_cu_library_, "%s", name);
  qd_cu_driver_.library = qd_cu_library_;
  dlerror();
  void* handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = dlerror();
    return QD_ERR(UNAVAILABLE, CUDA_NO_DRIVER, "no CUDA driver: %s%s could not be loaded (%s)", qd_cu_library_,
                  env && *env ? " (from QD_CUDA_DRIVER_LIBRARY)" : "", why ? why : "unknown reason");
  }
  *out_handle = handle;
  qd_cu_opened_ = true;
  return QD_OK;
}

/* Resolves one entry point: cuGetProcAddress by base name first, then dlsym on cuda.h's name and the base. */
static void* qd_cu_resolve_(void* handle, qd_cu_get_proc_address_fn_ get_proc, int abi_version,
                            const qd_cu_symbol_t_* sym) {
  if (get_proc) {
    void* fn = NULL;
    CUdriverProcAddressQueryResult found = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    CUresult r = get_proc(sym->base_name, &fn, abi_version, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &found);
    if (r == CUDA_SUCCESS && found == CU_GET_PROC_ADDRESS_SUCCESS && fn) return fn;
    /* The driver answered, and the symbol is not there for this ABI: a dlsym hit would have the wrong
     * prototype, so only a driver that could not answer at all falls through. */
    if (r == CUDA_SUCCESS) return NULL;
  }
  void* fn = dlsym(handle, sym->header_name);
  if (!fn) fn = dlsym(handle, sym->base_name);
  return fn;
}

static qd_status_t qd_cu_load_(void) {
  void* handle;
  QD_TRY(qd_cu_open_(&handle));
  qd_cuda_driver_t* d = &qd_cu_driver_;
  char version[32];

  /* These four have kept their names and prototypes since CUDA 2; everything else waits for the version. */
  void* init_fn = dlsym(handle, "cuInit");
  void* version_fn = dlsym(handle, "cuDriverGetVersion");
  qd_cu_store_(&qd_cu_error_name_fn_, dlsym(handle, "cuGetErrorName"));
  qd_cu_store_(&qd_cu_error_string_fn_, dlsym(handle, "cuGetErrorString"));
  if (!init_fn || !version_fn) {
    qd_cu_error_name_fn_ = NULL;
    qd_cu_error_string_fn_ = NULL;
    qd_cu_opened_ = false;
    dlclose(handle);
    return QD_ERR(UNAVAILABLE, CUDA_SYMBOL_MISSING, "%s: entry point '%s' is missing; this is not a CUDA driver",
                  qd_cu_library_, init_fn ? "cuDriverGetVersion" : "cuInit");
  }
  qd_cu_store_(&d->cuInit, init_fn);
  qd_cu_store_(&d->cuDriverGetVersion, version_fn);

  int driver_version = 0;
  if (d->cuDriverGetVersion(&driver_version) != CUDA_SUCCESS) driver_version = 0;
  qd_cu_version_seen_ = driver_version;
  d->driver_version = driver_version;

  /* cuInit goes before the version check so that a stub or a driver without a usable GPU says "no device",
   * which is what it means to a user, rather than something about versions. */
#if defined(QD_CU_ASAN_)
  /* A cuInit that fails leaks inside libcuda (seen with driver 580 under ASan). No qd code runs inside cuInit,
   * so ignoring its allocations cannot hide a leak of qd's own. */
  __lsan_disable();
#endif
  CUresult r = d->cuInit(0);
#if defined(QD_CU_ASAN_)
  __lsan_enable();
#endif
  if (r != CUDA_SUCCESS) {
    const char* text = qd_cu_result_text_(r);
    qd_cu_version_text_(driver_version, version, sizeof version);
    /* The driver maps memory where ASan keeps its shadow gap unless told not to protect it. */
    const char* hint = "";
#if defined(QD_CU_ASAN_)
    if (r == CUDA_ERROR_OUT_OF_MEMORY)
      hint = "; this is an AddressSanitizer build: run it with ASAN_OPTIONS=protect_shadow_gap=0";
#endif
    /* Left open: cuInit may have started driver threads or registered handlers that must not lose their code. */
    return QD_ERR(UNAVAILABLE, CUDA_NO_DEVICE, "no CUDA device found: cuInit failed with %s (%s); driver %s (%s)%s",
                  qd_cuda_result_name(r), text, driver_version ? version : "of unknown version", qd_cu_library_,
                  hint);
  }
  if (driver_version < QD_CUDA_DRIVER_MIN_VERSION) {
    char need[32];
    qd_cu_version_text_(driver_version, version, sizeof version);
    qd_cu_version_text_(QD_CUDA_DRIVER_MIN_VERSION, need, sizeof need);
    return QD_ERR(UNSUPPORTED, CUDA_DRIVER_TOO_OLD,
                  "%s: the driver supports CUDA %s; qd needs a driver for CUDA %s or newer (update the NVIDIA "
                  "driver)",
                  qd_cu_library_, version, need);
  }

  qd_cu_get_proc_address_fn_ get_proc = NULL;
  qd_cu_store_(&get_proc, dlsym(handle, "cuGetProcAddress_v2"));
  /* The ABI of the prototypes qd calls, not the newest the headers know: a driver answers each name with the
   * flavor of the version asked for, and newer flavors change prototypes under the same name (CUDA 13.0's
   * cuCtxSynchronize takes a context; called as the void one, it fails with CONTEXT_IS_DESTROYED). */
  d->abi_version = QD_CUDA_DRIVER_MIN_VERSION;
  for (size_t i = 0; i < sizeof qd_cu_symbols_ / sizeof qd_cu_symbols_[0]; i++) {
    const qd_cu_symbol_t_* sym = &qd_cu_symbols_[i];
    void* fn = qd_cu_resolve_(handle, get_proc, d->abi_version, sym);
    if (!fn) {
      qd_cu_version_text_(driver_version, version, sizeof version);
      return QD_ERR(UNAVAILABLE, CUDA_SYMBOL_MISSING,
                    "%s: entry point '%s' is missing (driver for CUDA %s); update the NVIDIA driver", qd_cu_library_,
                    sym->base_name, version);
    }
    qd_cu_store_((char*)d + sym->offset, fn);
  }
  /* From here on errors are named through the resolved table, which is what cuGetProcAddress vouches for. */
  qd_cu_error_name_fn_ = d->cuGetErrorName;
  qd_cu_error_string_fn_ = d->cuGetErrorString;

  int count = 0;
  QD_TRY_CTX(QD_CU_STATUS(d->cuDeviceGetCount(&count)), "while counting CUDA devices");
  if (count <= 0) {
    qd_cu_version_text_(driver_version, version, sizeof version);
    return QD_ERR(UNAVAILABLE, CUDA_NO_DEVICE, "no CUDA device found: the driver (CUDA %s, %s) reports 0 devices",
                  version, qd_cu_library_);
  }
  d->device_count = count;
  return QD_OK;
}

static void qd_cu_load_once_(void) { qd_cu_load_status_ = qd_cu_load_(); }

qd_status_t qd_cuda_driver_load(const qd_cuda_driver_t** out_driver) {
  *out_driver = NULL;
  pthread_once(&qd_cu_once_, qd_cu_load_once_);
  qd_status_t s = qd_cu_load_status_;
  if (s) {
    /* Each caller owns the status it gets, so it gets a copy of the one kept here. */
    return qd_status_make(qd_status_code(s), qd_status_detail(s), qd_status_file(s), qd_status_line(s), "%s",
                          qd_status_message(s));
  }
  *out_driver = &qd_cu_driver_;
  return QD_OK;
}

int qd_cuda_driver_version_seen(const char** out_library) {
  if (out_library) *out_library = qd_cu_opened_ ? qd_cu_library_ : NULL;
  return qd_cu_version_seen_;
}

const char* qd_cuda_result_name(CUresult result) {
  const char* name = NULL;
  if (qd_cu_error_name_fn_ && qd_cu_error_name_fn_(result, &name) == CUDA_SUCCESS && name) return name;
  switch (result) {
    case CUDA_SUCCESS: return "CUDA_SUCCESS";
    case CUDA_ERROR_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case CUDA_ERROR_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case CUDA_ERROR_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case CUDA_ERROR_STUB_LIBRARY: return "CUDA_ERROR_STUB_LIBRARY";
    default: break;
  }
  /* Unknown codes get a numeric name; a small rotating set of buffers keeps the result valid for a while
   * without allocating (this only runs on error paths). */
  static _Thread_local char buf[4][32];
  static _Thread_local unsigned next;
  char* b = buf[next++ % 4];
  snprintf(b, sizeof buf[0], "CUresult %d", (int)result);
  return b;
}

qd_status_t qd_cuda_result_status(CUresult result, const char* call, const char* file, int line) {
  if (result == CUDA_SUCCESS) return QD_OK;
  char fn[128];
  qd_cuda_call_name(call, fn, sizeof fn);
  const char* text = qd_cu_result_text_(result);
  if (result == CUDA_ERROR_OUT_OF_MEMORY)
    return qd_status_make(QD_CODE_DEVICE_OUT_OF_MEMORY, QD_E_CUDA_OUT_OF_MEMORY, file, line, "%s failed: %s (%s)",
                          fn, qd_cuda_result_name(result), text);
  return qd_status_make(QD_CODE_DEVICE, QD_E_CUDA_DRIVER_ERROR, file, line, "%s failed: %s (%s)", fn,
                        qd_cuda_result_name(result), text);
}
