/* qd runtime: loading compiled kernels into a CUDA context and launching them.
 *
 * A module is one cubin or PTX image (from qd_kernel_compile or from a plan) loaded with cuModuleLoadData into
 * the context current on the calling thread; the module belongs to that context, and every call below must run
 * with it current. Functions are looked up by their extern "C" name and come back as small values that carry
 * what a launch checks (the driver's thread limit and the dynamic shared memory the function was opened up to),
 * so launching costs no driver query.
 *
 * Ownership: qd_kernel_module_load() allocates the module from the given allocator; qd_kernel_module_unload()
 * unloads and frees it (NULL is a no-op). A qd_kernel_function_t is a plain value, valid until its module is
 * unloaded.
 * Errors: the driver's (QD_E_CUDA_NO_DRIVER, QD_E_CUDA_DRIVER_ERROR naming the call, ...), and
 * KERNEL_FUNCTION_MISSING, KERNEL_LAUNCH_CONFIG, INVALID_ARGUMENT as documented per function.
 */
#ifndef QD_RUNTIME_CUDA_KERNEL_MODULE_H
#define QD_RUNTIME_CUDA_KERNEL_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda_driver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_kernel_module qd_kernel_module_t;

typedef struct qd_kernel_function {
  const qd_cuda_driver_t* cu;        /* NULL in a zeroed (never loaded) value: launching it is refused */
  CUfunction handle;
  char name[QD_KERNEL_NAME_MAX];
  int max_threads_per_block;         /* CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK (launch bounds, registers) */
  int max_dynamic_shared_bytes;      /* what a launch may ask for: 48 KiB less the static shared memory unless
                                        raised with qd_kernel_function_set_max_dynamic_shared */
  qd_kernel_resources_t resources;   /* the driver's view: registers, static shared, local (stack) bytes */
} qd_kernel_function_t;

typedef struct qd_kernel_dim3 {
  unsigned x, y, z;
} qd_kernel_dim3_t;

/* Loads `image` (a cubin ELF, or NUL-terminated PTX that the driver JIT-compiles) into the current context.
 * *out_module is NULL first and set only on success. */
qd_status_t qd_kernel_module_load(qd_allocator_t allocator, const void* image, qd_kernel_module_t** out_module);
/* Unloads the module (its functions become invalid) and frees it; NULL is a no-op. Must run in the module's
 * context. */
void qd_kernel_module_unload(qd_kernel_module_t* module);

/* The function called `name`. Errors: KERNEL_FUNCTION_MISSING when the image has none. */
qd_status_t qd_kernel_module_get_function(qd_kernel_module_t* module, const char* name,
                                          qd_kernel_function_t* out_function);

/* Lets launches of `function` use up to `bytes` of dynamic shared memory (cuFuncSetAttribute
 * MAX_DYNAMIC_SHARED_SIZE_BYTES, needed above 48 KiB). Errors: the driver's, when the device cannot. */
qd_status_t qd_kernel_function_set_max_dynamic_shared(qd_kernel_function_t* function, int bytes);

/* Launches on `stream` (NULL: the legacy default stream) with cuLaunchKernel. params holds one pointer per
 * kernel parameter, in order, each to a value of exactly the parameter's type. Checks first: the function was
 * loaded (INVALID_ARGUMENT), every grid and block dimension is at least 1 and within CUDA's limits, block
 * threads <= max_threads_per_block and shared_bytes <= max_dynamic_shared_bytes (KERNEL_LAUNCH_CONFIG).
 * A fault inside the kernel shows up later, at the next synchronizing call. */
qd_status_t qd_kernel_launch(const qd_kernel_function_t* function, qd_kernel_dim3_t grid, qd_kernel_dim3_t block,
                             unsigned shared_bytes, CUstream stream, void** params);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNEL_MODULE_H */
