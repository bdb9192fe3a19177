/* Kernel modules shared across executors: see runtime/cuda/module_cache.h. */
#include "runtime/cuda/module_cache.h"

#include <stdio.h>
#include <string.h>

#include "runtime/cuda/kernel_variants.h"

typedef struct qd_kmc_entry_ {
  char key[QD_CUDA_KERNEL_KEY_MAX + 24]; /* "<arch> <key>" */
  qd_kernel_module_t* module;
} qd_kmc_entry_t_;

struct qd_kernel_module_cache {
  qd_allocator_t allocator;
  const qd_cuda_driver_t* cu;
  CUdevice device;
  CUcontext context;
  qd_kmc_entry_t_* entries;
  int32_t count, capacity;
  int64_t reused;
};

qd_status_t qd_kernel_module_cache_create(qd_allocator_t a, int device, qd_kernel_module_cache_t** out) {
  *out = NULL;
  const qd_cuda_driver_t* cu;
  QD_TRY(qd_cuda_driver_load(&cu));
  qd_kernel_module_cache_t* c;
  QD_TRY(qd_calloc(a, 1, sizeof *c, (void**)&c));
  c->allocator = a;
  c->cu = cu;
  qd_status_t s = QD_CU_STATUS(cu->cuDeviceGet(&c->device, device));
  if (!s) s = QD_CU_STATUS(cu->cuDevicePrimaryCtxRetain(&c->context, c->device));
  if (s) {
    qd_free(a, c, sizeof *c);
    return s;
  }
  *out = c;
  return QD_OK;
}

void qd_kernel_module_cache_destroy(qd_kernel_module_cache_t* c) {
  if (!c) return;
  c->cu->cuCtxSetCurrent(c->context);
  for (int32_t i = 0; i < c->count; i++) qd_kernel_module_unload(c->entries[i].module);
  qd_free(c->allocator, c->entries, (size_t)c->capacity * sizeof *c->entries);
  c->cu->cuDevicePrimaryCtxRelease(c->device);
  qd_free(c->allocator, c, sizeof *c);
}

qd_status_t qd_kernel_module_cache_load(qd_kernel_module_cache_t* c, const char* key, const char* arch,
                                        const void* image, qd_kernel_module_t** out) {
  *out = NULL;
  if (!c || !key || !arch)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_kernel_module_cache_load: no cache, key or architecture");
  char full[sizeof c->entries[0].key];
  int n = snprintf(full, sizeof full, "%s %s", arch, key);
  if (n < 0 || (size_t)n >= sizeof full)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "kernel key '%.60s...' is too long for the module cache", key);
  for (int32_t i = 0; i < c->count; i++)
    if (strcmp(c->entries[i].key, full) == 0) {
      c->reused++;
      *out = c->entries[i].module;
      return QD_OK;
    }
  if (c->count == c->capacity) {
    int32_t cap = c->capacity ? 2 * c->capacity : 32;
    QD_TRY(qd_realloc(c->allocator, c->entries, (size_t)c->capacity * sizeof *c->entries,
                      (size_t)cap * sizeof *c->entries, (void**)&c->entries));
    c->capacity = cap;
  }
  qd_kernel_module_t* m;
  QD_TRY(qd_kernel_module_load(c->allocator, image, &m));
  memcpy(c->entries[c->count].key, full, (size_t)n + 1);
  c->entries[c->count].module = m;
  c->count++;
  *out = m;
  return QD_OK;
}

void qd_kernel_module_cache_counts(const qd_kernel_module_cache_t* c, int32_t* out_loaded, int64_t* out_reused) {
  *out_loaded = c ? c->count : 0;
  *out_reused = c ? c->reused : 0;
}
