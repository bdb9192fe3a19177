/* qd: which CUDA devices this machine has, and which CUDA libraries qd found.
 *
 * qd loads the CUDA driver (libcuda.so.1), NVRTC and cuBLASLt at run time (dlopen), so a machine without a GPU
 * or driver runs every CPU path; asking for devices there returns a status that says why, never a crash:
 *   - no driver library  -> QD_CODE_UNAVAILABLE / QD_E_CUDA_NO_DRIVER  ("no CUDA driver: libcuda.so.1 could not
 *                            be loaded (...)")
 *   - driver, no device  -> QD_CODE_UNAVAILABLE / QD_E_CUDA_NO_DEVICE  ("no CUDA device found: ...")
 *   - driver too old     -> QD_CODE_UNSUPPORTED / QD_E_CUDA_DRIVER_TOO_OLD
 * Environment overrides (exact paths; for tests and unusual installs): QD_CUDA_DRIVER_LIBRARY, QD_NVRTC_LIBRARY,
 * QD_CUBLASLT_LIBRARY. Each library is loaded once per process; later queries report the same outcome.
 *
 * Ownership: qd_devices_query() returns a list owned by the caller, allocated from the allocator it was given;
 * release it with qd_device_list_destroy(). Pointers returned by the accessors live as long as the list.
 * qd_cuda_versions_query() fills a caller-owned struct whose strings are static.
 */
#ifndef QD_DEVICE_H
#define QD_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One GPU as the driver describes it. */
typedef struct qd_device_info {
  int ordinal;                     /* CUdevice ordinal, 0-based, as CUDA_VISIBLE_DEVICES presents them */
  char name[256];                  /* "NVIDIA H200" */
  int cc_major;                    /* compute capability 9.0 -> 9, 0; the cubin target is sm_<major><minor> */
  int cc_minor;
  uint64_t total_memory;           /* bytes */
  int multiprocessor_count;
  int max_shared_memory_per_block; /* bytes a block may opt in to (cuFuncSetAttribute), for kernel selection */
  uint8_t uuid[16];
  char uuid_string[48];            /* "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", as nvidia-smi prints it */
} qd_device_info_t;

/* Versions of the CUDA pieces; 0 (and NULL library names) for whatever could not be loaded. */
typedef struct qd_cuda_versions {
  int toolkit;               /* CUDA_VERSION of the headers qd was compiled against: 13000 is 13.0 */
  int driver;                /* cuDriverGetVersion: the newest CUDA the driver supports, 12080 is 12.8 */
  const char* driver_library;
  int nvrtc_major;           /* nvrtcVersion */
  int nvrtc_minor;
  const char* nvrtc_library;
  const char* nvrtc_include_dir; /* toolkit headers passed to NVRTC as -I (cuda_bf16.h); NULL when none found */
  int cublaslt;              /* cublasLtGetVersion: 130100 is 13.1.0 */
  const char* cublaslt_library;
} qd_cuda_versions_t;

typedef struct qd_device_list qd_device_list_t;

/* Loads the driver (once per process) and describes every device it reports, plus qd_cuda_versions_query().
 * *out_list is NULL first and set only on success; a successful list has at least one device.
 * Errors: CUDA_NO_DRIVER, CUDA_NO_DEVICE, CUDA_DRIVER_TOO_OLD, CUDA_SYMBOL_MISSING, CUDA_DRIVER_ERROR,
 * OUT_OF_MEMORY. */
qd_status_t qd_devices_query(qd_allocator_t allocator, qd_device_list_t** out_list);
void qd_device_list_destroy(qd_device_list_t* list); /* NULL is a no-op */

size_t qd_device_list_count(const qd_device_list_t* list);
const qd_device_info_t* qd_device_list_get(const qd_device_list_t* list, size_t index); /* NULL past the end */
const qd_cuda_versions_t* qd_device_list_versions(const qd_device_list_t* list);

/* Fills *out_versions with what can be found, loading NVRTC and cuBLASLt (and reading the driver's version if a
 * driver load was already attempted, or attempting one). Never fails: a piece that is missing reads 0 / NULL. */
void qd_cuda_versions_query(qd_cuda_versions_t* out_versions);

/* "13.0" for 13000, "12.8" for 12080; buf is always terminated. Returns buf. */
const char* qd_cuda_version_format(int version, char* buf, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* QD_DEVICE_H */
