/* qd runtime: cuBLASLt, loaded at run time through a table of entry points.
 *
 * Loading policy. The first call to qd_cublaslt_load() dlopens, in order, "libcublasLt.so.13" and
 * "libcublasLt.so.12" (the first found wins; the dynamic loader's path and cache decide where), or only the
 * exact path in the environment variable QD_CUBLASLT_LIBRARY when that is set. Entry points are resolved with
 * dlsym (cuBLASLt does not version its symbol names). This happens once per process (pthread_once); the
 * library stays loaded.
 *
 * cuBLASLt loads without a GPU or driver (it opens libcuda itself, lazily): qd_cublaslt_load() and
 * cublasLtGetVersion() work anywhere, which is how qdc records the library version in a plan built on a machine
 * without a GPU. Creating a handle needs the driver and a device; without them cublasLtCreate fails and
 * QD_CUBLASLT_TRY turns that into a status like any other failing call.
 *   - cuBLASLt cannot be opened  -> QD_CODE_UNAVAILABLE / QD_E_CUBLASLT_NOT_FOUND, listing what was tried
 *   - an entry point is missing  -> QD_CODE_UNAVAILABLE / QD_E_CUDA_SYMBOL_MISSING
 *   - a failing call             -> QD_CODE_DEVICE / QD_E_CUBLASLT_ERROR "cublasLtFoo failed: CUBLAS_STATUS_X (text)"
 *
 * Ownership: the table is process-wide, read-only and valid for the life of the process once loaded. Handles,
 * descriptors and layouts created through it belong to the caller, as in cuBLASLt itself.
 */
#ifndef QD_RUNTIME_CUDA_CUBLASLT_H
#define QD_RUNTIME_CUDA_CUBLASLT_H

/* cublasLt.h declares one function without a prototype; its warning is not ours to fix. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#endif
#include <cublasLt.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include <stddef.h>

#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_CUBLASLT_SYMBOLS(X)                  \
  X(cublasLtCreate)                             \
  X(cublasLtDestroy)                            \
  X(cublasLtGetVersion)                         \
  X(cublasLtGetCudartVersion)                   \
  X(cublasLtGetStatusName)                      \
  X(cublasLtGetStatusString)                    \
  X(cublasLtMatmulDescCreate)                   \
  X(cublasLtMatmulDescDestroy)                  \
  X(cublasLtMatmulDescSetAttribute)             \
  X(cublasLtMatmulDescGetAttribute)             \
  X(cublasLtMatrixLayoutCreate)                 \
  X(cublasLtMatrixLayoutDestroy)                \
  X(cublasLtMatrixLayoutSetAttribute)           \
  X(cublasLtMatrixLayoutGetAttribute)           \
  X(cublasLtMatmulPreferenceCreate)             \
  X(cublasLtMatmulPreferenceDestroy)            \
  X(cublasLtMatmulPreferenceSetAttribute)       \
  X(cublasLtMatmulAlgoGetHeuristic)             \
  X(cublasLtMatmulAlgoGetIds)                   \
  X(cublasLtMatmulAlgoInit)                     \
  X(cublasLtMatmulAlgoCapGetAttribute)          \
  X(cublasLtMatmulAlgoConfigSetAttribute)       \
  X(cublasLtMatmulAlgoConfigGetAttribute)       \
  X(cublasLtMatmulAlgoCheck)                    \
  X(cublasLtMatmul)

typedef struct qd_cublaslt {
  const char* library; /* the name or path that was opened */
  size_t version;      /* cublasLtGetVersion: 130100 is 13.1.0 (major * 10000 + minor * 100 + patch) */
#define QD_CUBLASLT_FIELD_(name) __typeof__(&name) name;
  QD_CUBLASLT_SYMBOLS(QD_CUBLASLT_FIELD_)
#undef QD_CUBLASLT_FIELD_
} qd_cublaslt_t;

/* Loads cuBLASLt once per process; *out_lt is NULL first and set only on success. Later calls return the
 * same table or a copy of the same error (the caller owns it). Needs no GPU. */
qd_status_t qd_cublaslt_load(const qd_cublaslt_t** out_lt);

/* QD_OK for CUBLAS_STATUS_SUCCESS, else QD_E_CUBLASLT_ERROR naming the function (taken from `call`, the call's
 * text) and cuBLASLt's status name and text. */
qd_status_t qd_cublaslt_result_status(cublasStatus_t result, const char* call, const char* file, int line);

static inline qd_status_t qd_cublaslt_result_check_(cublasStatus_t result, const char* call, const char* file,
                                                    int line) {
  return result == CUBLAS_STATUS_SUCCESS ? QD_OK : qd_cublaslt_result_status(result, call, file, line);
}
#define QD_CUBLASLT_STATUS(call) qd_cublaslt_result_check_((call), #call, __FILE__, __LINE__)
#define QD_CUBLASLT_TRY(call) QD_TRY(qd_cublaslt_result_check_((call), #call, __FILE__, __LINE__))

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_CUBLASLT_H */
