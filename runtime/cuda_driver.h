/* qd runtime: the CUDA driver API, loaded at run time through a table of entry points.
 *
 * Loading policy. Nothing in qd links against libcuda: the first call to qd_cuda_driver_load() dlopens
 * "libcuda.so.1" (or the exact path in the environment variable QD_CUDA_DRIVER_LIBRARY, meant for tests and
 * unusual installs; no other name is tried then), asks the driver for its version and resolves every entry
 * point in QD_CUDA_DRIVER_SYMBOLS through cuGetProcAddress. cuda.h maps many names to versioned symbols
 * (cuMemAlloc -> cuMemAlloc_v2); cuGetProcAddress is asked for the base name at the ABI version of the
 * headers qd was compiled against (CUDA_VERSION), capped at the driver's own version because the driver
 * refuses versions newer than itself, so each pointer matches the prototype the table declares. Only when
 * cuGetProcAddress cannot answer does the loader fall back to dlsym, first on the versioned name cuda.h uses,
 * then on the base name. Then cuInit(0) runs and the devices are counted.
 *
 * Loading happens once per process (pthread_once); later calls return the same table or a copy of the same
 * error. The library is never unloaded: the driver owns threads and contexts that outlive any one caller.
 * Without a GPU nothing crashes and nothing is printed: every outcome is a status
 *   - libcuda cannot be opened               -> QD_CODE_UNAVAILABLE / QD_E_CUDA_NO_DRIVER
 *   - the driver is older than CUDA 12.0     -> QD_CODE_UNSUPPORTED / QD_E_CUDA_DRIVER_TOO_OLD
 *   - an entry point is missing              -> QD_CODE_UNAVAILABLE / QD_E_CUDA_SYMBOL_MISSING (names it)
 *   - cuInit fails or there are no devices   -> QD_CODE_UNAVAILABLE / QD_E_CUDA_NO_DEVICE
 * and a failing driver call, checked with QD_CU_TRY / QD_CU_STATUS, becomes QD_E_CUDA_DRIVER_ERROR naming the
 * function and the driver's error name and text (QD_CODE_DEVICE_OUT_OF_MEMORY / QD_E_CUDA_OUT_OF_MEMORY for
 * CUDA_ERROR_OUT_OF_MEMORY).
 *
 * Ownership: the table is process-wide, read-only and valid for the life of the process once loaded.
 *
 * Calling convention: `const qd_cuda_driver_t* cu; QD_TRY(qd_cuda_driver_load(&cu));` then
 * `QD_CU_TRY(cu->cuMemAlloc(&ptr, bytes));`. Write the names as cuda.h spells them (cuMemAlloc, not
 * cuMemAlloc_v2): cuda.h's macros rename the table's fields and the calls alike.
 */
#ifndef QD_RUNTIME_CUDA_DRIVER_H
#define QD_RUNTIME_CUDA_DRIVER_H

#include <cuda.h>

#include "qd/status.h"

#if defined(CUDA_API_PER_THREAD_DEFAULT_STREAM) || defined(__CUDA_API_PER_THREAD_DEFAULT_STREAM)
#error "qd resolves the legacy-default-stream entry points; do not build it with per-thread default streams"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The oldest driver qd accepts, and the ABI version qd asks cuGetProcAddress for: cuGetProcAddress with a status
 * argument and every entry point below exist from CUDA 12.0 on, and qd calls them with their 12.0 prototypes
 * (newer drivers still serve those when asked for 12.0; some names changed prototype since, e.g.
 * cuCtxSynchronize in 13.0). */
#define QD_CUDA_DRIVER_MIN_VERSION 12000

/* The entry points qd uses, one X(name) each, spelled as in cuda.h. */
#define QD_CUDA_DRIVER_SYMBOLS(X)                                                                      \
  /* errors, version, initialization */                                                                \
  X(cuGetErrorName)                                                                                    \
  X(cuGetErrorString)                                                                                  \
  X(cuInit)                                                                                            \
  X(cuDriverGetVersion)                                                                                \
  /* devices */                                                                                        \
  X(cuDeviceGetCount)                                                                                  \
  X(cuDeviceGet)                                                                                       \
  X(cuDeviceGetName)                                                                                   \
  X(cuDeviceGetAttribute)                                                                              \
  X(cuDeviceTotalMem)                                                                                  \
  X(cuDeviceGetUuid)                                                                                   \
  X(cuDeviceGetPCIBusId)                                                                               \
  /* contexts: qd uses each device's primary context */                                                \
  X(cuDevicePrimaryCtxRetain)                                                                          \
  X(cuDevicePrimaryCtxRelease)                                                                         \
  X(cuCtxSetCurrent)                                                                                   \
  X(cuCtxGetCurrent)                                                                                   \
  X(cuCtxSynchronize)                                                                                  \
  /* device memory */                                                                                  \
  X(cuMemGetInfo)                                                                                      \
  X(cuMemAlloc)                                                                                        \
  X(cuMemFree)                                                                                         \
  X(cuMemAllocAsync)                                                                                   \
  X(cuMemFreeAsync)                                                                                    \
  X(cuMemcpy)                                                                                          \
  X(cuMemcpyAsync)                                                                                     \
  X(cuMemcpyHtoD)                                                                                      \
  X(cuMemcpyDtoH)                                                                                      \
  X(cuMemcpyDtoD)                                                                                      \
  X(cuMemcpyHtoDAsync)                                                                                 \
  X(cuMemcpyDtoHAsync)                                                                                 \
  X(cuMemcpyDtoDAsync)                                                                                 \
  X(cuMemsetD8)                                                                                        \
  X(cuMemsetD32)                                                                                       \
  X(cuMemsetD8Async)                                                                                   \
  X(cuMemsetD32Async)                                                                                  \
  /* pinned host memory (offload streams weights from it) */                                          \
  X(cuMemHostAlloc)                                                                                    \
  X(cuMemFreeHost)                                                                                     \
  X(cuMemHostRegister)                                                                                 \
  X(cuMemHostUnregister)                                                                               \
  X(cuMemHostGetDevicePointer)                                                                         \
  /* streams and events */                                                                             \
  X(cuStreamCreate)                                                                                    \
  X(cuStreamCreateWithPriority)                                                                        \
  X(cuStreamDestroy)                                                                                   \
  X(cuStreamSynchronize)                                                                               \
  X(cuStreamQuery)                                                                                     \
  X(cuStreamWaitEvent)                                                                                 \
  X(cuEventCreate)                                                                                     \
  X(cuEventDestroy)                                                                                    \
  X(cuEventRecord)                                                                                     \
  X(cuEventSynchronize)                                                                                \
  X(cuEventQuery)                                                                                      \
  X(cuEventElapsedTime)                                                                                \
  /* modules and kernels */                                                                            \
  X(cuModuleLoadData)                                                                                  \
  X(cuModuleLoadDataEx)                                                                                \
  X(cuModuleLoadFatBinary)                                                                             \
  X(cuModuleGetFunction)                                                                               \
  X(cuModuleUnload)                                                                                    \
  X(cuFuncGetAttribute)                                                                                \
  X(cuFuncSetAttribute)                                                                                \
  X(cuOccupancyMaxActiveBlocksPerMultiprocessor)                                                       \
  X(cuLaunchKernel)                                                                                    \
  X(cuLaunchKernelEx)                                                                                  \
  /* TMA tensor maps for the Hopper kernels' bulk tensor copies (attention_sm90.cu) */                 \
  X(cuTensorMapEncodeTiled)                                                                            \
  /* CUDA graphs: the denoising step is captured once and replayed */                                  \
  X(cuStreamBeginCapture)                                                                              \
  X(cuStreamEndCapture)                                                                                \
  X(cuStreamIsCapturing)                                                                               \
  X(cuGraphInstantiateWithFlags)                                                                       \
  X(cuGraphUpload)                                                                                     \
  X(cuGraphLaunch)                                                                                     \
  X(cuGraphDestroy)                                                                                    \
  X(cuGraphExecDestroy)

/* The loaded driver. The function-pointer fields carry cuda.h's names, so `cu->cuMemAlloc(...)` calls the
 * entry point with cuMemAlloc's current prototype. */
typedef struct qd_cuda_driver {
  const char* library;   /* the name or path that was opened */
  int driver_version;    /* cuDriverGetVersion: 12080 is CUDA 12.8 */
  int abi_version;       /* the version cuGetProcAddress is asked for: QD_CUDA_DRIVER_MIN_VERSION, whose prototypes
                          * qd calls (later flavors may change a prototype under the same name) */
  int device_count;      /* at least 1 once loaded */
#define QD_CUDA_DRIVER_FIELD_(name) __typeof__(&name) name;
  QD_CUDA_DRIVER_SYMBOLS(QD_CUDA_DRIVER_FIELD_)
#undef QD_CUDA_DRIVER_FIELD_
} qd_cuda_driver_t;

/* Loads the driver once per process and returns the table in *out_driver (NULL first, set only on success).
 * Errors: CUDA_NO_DRIVER, CUDA_DRIVER_TOO_OLD, CUDA_SYMBOL_MISSING, CUDA_NO_DEVICE (see the top of this file).
 * Every call after the first returns the same outcome; the status returned is the caller's to free. */
qd_status_t qd_cuda_driver_load(const qd_cuda_driver_t** out_driver);

/* The version libcuda reported during the first load, even when loading failed later (cuInit failing, no
 * device); 0 when libcuda could not be opened or qd_cuda_driver_load() has not run yet. *out_library (may be
 * NULL) receives the library's name when it was opened, else NULL. */
int qd_cuda_driver_version_seen(const char** out_library);

/* Turns a CUresult into a status: QD_OK for CUDA_SUCCESS; otherwise "cuFoo failed: CUDA_ERROR_X (text)"
 * with QD_E_CUDA_OUT_OF_MEMORY for CUDA_ERROR_OUT_OF_MEMORY and QD_E_CUDA_DRIVER_ERROR for the rest. `call` is
 * the text of the call; the function name is taken from it. */
qd_status_t qd_cuda_result_status(CUresult result, const char* call, const char* file, int line);

/* The driver's name for a result ("CUDA_ERROR_NO_DEVICE"), or "CUresult <n>" when the driver is not loaded or
 * does not know it. The returned string is static or the driver's own. */
const char* qd_cuda_result_name(CUresult result);

/* Keeps the success path to a comparison: the status is built only on failure. */
static inline qd_status_t qd_cuda_result_check_(CUresult result, const char* call, const char* file, int line) {
  return result == CUDA_SUCCESS ? QD_OK : qd_cuda_result_status(result, call, file, line);
}

/* A driver call as a status expression (usable with QD_CHECK_GOTO / QD_TRY_CTX). */
#define QD_CU_STATUS(call) qd_cuda_result_check_((call), #call, __FILE__, __LINE__)
/* Returns a status naming the function and the driver's error when the call does not return CUDA_SUCCESS. The
 * call is stringized here, before cuda.h's renaming macros reach it, so messages say cuMemAlloc, not _v2. */
#define QD_CU_TRY(call) QD_TRY(qd_cuda_result_check_((call), #call, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_DRIVER_H */
