/* Loading kernel images and launching their functions: see runtime/cuda/kernel_module.h. */
#include "runtime/cuda/kernel_module.h"

#include <stdio.h>
#include <string.h>

struct qd_kernel_module {
  qd_allocator_t allocator;
  const qd_cuda_driver_t* cu;
  CUmodule handle;
};

qd_status_t qd_kernel_module_load(qd_allocator_t a, const void* image, qd_kernel_module_t** out) {
  *out = NULL;
  if (!image) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_kernel_module_load: no image");
  const qd_cuda_driver_t* cu;
  QD_TRY(qd_cuda_driver_load(&cu));
  qd_kernel_module_t* m;
  QD_TRY(qd_calloc(a, 1, sizeof *m, (void**)&m));
  m->allocator = a;
  m->cu = cu;
  qd_status_t s = QD_CU_STATUS(cu->cuModuleLoadData(&m->handle, image));
  if (s) {
    qd_free(a, m, sizeof *m);
    return s;
  }
  *out = m;
  return QD_OK;
}

void qd_kernel_module_unload(qd_kernel_module_t* m) {
  if (!m) return;
  /* Nothing useful can be done about a failing unload (a dead context): the memory goes anyway. */
  if (m->handle) m->cu->cuModuleUnload(m->handle);
  qd_free(m->allocator, m, sizeof *m);
}

static qd_status_t qd_km_attribute_(const qd_cuda_driver_t* cu, CUfunction f, CUfunction_attribute attr, int* out) {
  return QD_CU_STATUS(cu->cuFuncGetAttribute(out, attr, f));
}

qd_status_t qd_kernel_module_get_function(qd_kernel_module_t* m, const char* name, qd_kernel_function_t* out) {
  memset(out, 0, sizeof *out);
  if (!m || !name) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_kernel_module_get_function: no module or name");
  if (strlen(name) >= sizeof out->name)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "kernel name '%.40s...' is too long", name);
  const qd_cuda_driver_t* cu = m->cu;
  CUfunction f = NULL;
  CUresult r = cu->cuModuleGetFunction(&f, m->handle, name);
  if (r == CUDA_ERROR_NOT_FOUND)
    return QD_ERR(NOT_FOUND, KERNEL_FUNCTION_MISSING, "the loaded kernel module has no function '%s'", name);
  QD_TRY(qd_cuda_result_status(r, "cuModuleGetFunction()", __FILE__, __LINE__));
  qd_kernel_function_t fn = {.cu = cu, .handle = f};
  snprintf(fn.name, sizeof fn.name, "%s", name);
  int static_shared = 0, local = 0, regs = 0;
  QD_TRY(qd_km_attribute_(cu, f, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, &fn.max_threads_per_block));
  QD_TRY(qd_km_attribute_(cu, f, CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, &static_shared));
  QD_TRY(qd_km_attribute_(cu, f, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, &local));
  QD_TRY(qd_km_attribute_(cu, f, CU_FUNC_ATTRIBUTE_NUM_REGS, &regs));
  QD_TRY(qd_km_attribute_(cu, f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, &fn.max_dynamic_shared_bytes));
  fn.resources = (qd_kernel_resources_t){
      .known = true, .registers = regs, .shared_bytes = static_shared, .stack_bytes = local, .spill_bytes = 0};
  *out = fn;
  return QD_OK;
}

qd_status_t qd_kernel_function_set_max_dynamic_shared(qd_kernel_function_t* fn, int bytes) {
  if (!fn || !fn->cu) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "kernel function was never loaded");
  if (bytes < 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_LAUNCH_CONFIG, "kernel %s: %d bytes of dynamic shared memory", fn->name,
                  bytes);
  QD_TRY_CTX(QD_CU_STATUS(fn->cu->cuFuncSetAttribute(fn->handle, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                                     bytes)),
             "while allowing kernel %s %d bytes of dynamic shared memory", fn->name, bytes);
  fn->max_dynamic_shared_bytes = bytes;
  return QD_OK;
}

qd_status_t qd_kernel_launch(const qd_kernel_function_t* fn, qd_kernel_dim3_t grid, qd_kernel_dim3_t block,
                             unsigned shared_bytes, CUstream stream, void** params) {
  if (!fn || !fn->cu || !fn->handle)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "kernel %s was never loaded; nothing to launch",
                  fn && fn->name[0] ? fn->name : "(unnamed)");
  /* CUDA's limits: grid x < 2^31, y and z < 2^16; a block has at most 1024 threads, z at most 64. */
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535u || grid.z > 65535u)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_LAUNCH_CONFIG, "kernel %s: grid %ux%ux%u is outside CUDA's limits",
                  fn->name, grid.x, grid.y, grid.z);
  unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.z > 64 || threads > (unsigned long long)fn->max_threads_per_block)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_LAUNCH_CONFIG,
                  "kernel %s: a block of %ux%ux%u threads; this function takes at most %d", fn->name, block.x, block.y,
                  block.z, fn->max_threads_per_block);
  if (shared_bytes > (unsigned)fn->max_dynamic_shared_bytes)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_LAUNCH_CONFIG,
                  "kernel %s: %u bytes of dynamic shared memory; it is allowed %d (raise it with "
                  "qd_kernel_function_set_max_dynamic_shared)",
                  fn->name, shared_bytes, fn->max_dynamic_shared_bytes);
  QD_CU_TRY(fn->cu->cuLaunchKernel(fn->handle, grid.x, grid.y, grid.z, block.x, block.y, block.z, shared_bytes, stream,
                                   params, NULL));
  return QD_OK;
}
