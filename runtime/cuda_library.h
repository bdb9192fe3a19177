/* qd runtime (internal): opening a shared library from a list of candidate names and filling a table of entry
 * points with dlsym. Shared by the NVRTC and cuBLASLt loaders (the driver has its own resolution through
 * cuGetProcAddress, see cuda_driver.c).
 *
 * Policy: when the environment variable `env_var` is set and non-empty, exactly that path is tried; otherwise
 * each name in `names` in order (bare sonames, so the dynamic loader's search path and cache decide where they
 * come from). Libraries are opened RTLD_NOW | RTLD_LOCAL and never closed once their table is complete.
 */
#ifndef QD_RUNTIME_CUDA_LIBRARY_H
#define QD_RUNTIME_CUDA_LIBRARY_H

#include <stddef.h>

#include "qd/status.h"

/* One entry point: its name and where the pointer goes inside the table. */
typedef struct qd_cuda_library_symbol {
  const char* name;
  size_t offset;
} qd_cuda_library_symbol_t;

/* Opens the first library that loads. On failure returns `code`/`detail` with the message
 * "<what> could not be loaded: tried NAME (dlerror), ...". *out_name receives the name that was opened; it
 * points into `names` or at the environment's string copied into name_buf (name_buf_size bytes). */
qd_status_t qd_cuda_library_open(const char* what, const char* env_var, const char* const* names, size_t name_count,
                                 qd_status_code_t code, qd_error_detail_t detail, char* name_buf,
                                 size_t name_buf_size, void** out_handle, const char** out_name);

/* Fills `table` from `handle`. A missing entry point gives QD_E_CUDA_SYMBOL_MISSING naming it and `library`. */
qd_status_t qd_cuda_library_resolve(void* handle, const char* library, const qd_cuda_library_symbol_t* symbols,
                                    size_t symbol_count, void* table);

/* The function a checked call names: "cu->cuMemAlloc(&p, n)" -> "cuMemAlloc" (the identifier before the first
 * '('); the whole text when there is none. Used to word "<function> failed: ..." messages. */
void qd_cuda_call_name(const char* call, char* buf, size_t size);

#endif /* QD_RUNTIME_CUDA_LIBRARY_H */
