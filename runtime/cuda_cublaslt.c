/* cuBLASLt loaded at run time: see runtime/cuda_cublaslt.h. */
#include "runtime/cuda_cublaslt.h"

#include <pthread.h>
#include <stddef.h>

#include "runtime/cuda_library.h"

static const char* const qd_cublaslt_names_[] = {"libcublasLt.so.13", "libcublasLt.so.12"};

static const qd_cuda_library_symbol_t qd_cublaslt_symbols_[] = {
#define QD_CUBLASLT_ROW_(name) {#name, offsetof(qd_cublaslt_t, name)},
    QD_CUBLASLT_SYMBOLS(QD_CUBLASLT_ROW_)
#undef QD_CUBLASLT_ROW_
};

static pthread_once_t qd_cublaslt_once_ = PTHREAD_ONCE_INIT;
static qd_cublaslt_t qd_cublaslt_;
static qd_status_t qd_cublaslt_load_status_; /* the first load's error, kept for the process */
static char qd_cublaslt_env_name_[4096];

static qd_status_t qd_cublaslt_load_(void) {
  void* handle;
  const char* name;
  QD_TRY(qd_cuda_library_open("cuBLASLt", "QD_CUBLASLT_LIBRARY", qd_cublaslt_names_,
                              sizeof qd_cublaslt_names_ / sizeof qd_cublaslt_names_[0], QD_CODE_UNAVAILABLE,
                              QD_E_CUBLASLT_NOT_FOUND, qd_cublaslt_env_name_, sizeof qd_cublaslt_env_name_, &handle,
                              &name));
  qd_cublaslt_t t = {.library = name};
  QD_TRY(qd_cuda_library_resolve(handle, name, qd_cublaslt_symbols_,
                                 sizeof qd_cublaslt_symbols_ / sizeof qd_cublaslt_symbols_[0], &t));
  t.version = t.cublasLtGetVersion();
  qd_cublaslt_ = t;
  return QD_OK;
}

static void qd_cublaslt_load_once_(void) { qd_cublaslt_load_status_ = qd_cublaslt_load_(); }

qd_status_t qd_cublaslt_load(const qd_cublaslt_t** out_lt) {
  *out_lt = NULL;
  pthread_once(&qd_cublaslt_once_, qd_cublaslt_load_once_);
  qd_status_t s = qd_cublaslt_load_status_;
  if (s)
    return qd_status_make(qd_status_code(s), qd_status_detail(s), qd_status_file(s), qd_status_line(s), "%s",
                          qd_status_message(s));
  *out_lt = &qd_cublaslt_;
  return QD_OK;
}

qd_status_t qd_cublaslt_result_status(cublasStatus_t result, const char* call, const char* file, int line) {
  if (result == CUBLAS_STATUS_SUCCESS) return QD_OK;
  char fn[128];
  qd_cuda_call_name(call, fn, sizeof fn);
  const qd_cublaslt_t* lt = &qd_cublaslt_;
  const char* name = lt->cublasLtGetStatusName ? lt->cublasLtGetStatusName(result) : NULL;
  const char* text = lt->cublasLtGetStatusString ? lt->cublasLtGetStatusString(result) : NULL;
  if (name)
    return qd_status_make(QD_CODE_DEVICE, QD_E_CUBLASLT_ERROR, file, line, "%s failed: %s (%s)", fn, name,
                          text ? text : "no text");
  return qd_status_make(QD_CODE_DEVICE, QD_E_CUBLASLT_ERROR, file, line, "%s failed: cublasStatus_t %d", fn,
                        (int)result);
}
