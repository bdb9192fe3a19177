/* qd runtime: kernel modules loaded once and shared by the executors that come and go around them.
 *
 * An offloaded pipeline makes each component's executor anew for every image (its weights and activations leave
 * the GPU between phases), and an executor loads one module per kernel variant it launches: dozens of
 * cuModuleLoadData calls per image for modules that never change. A cache keeps them loaded in the device's primary
 * context for as long as it lives (it holds a reference on that context), so that only the first image loads them.
 *
 * Keys are the kernel's key and its image's architecture (runtime/cuda/kernel_variants.h: the key names the
 * template's hash and every define, so one key is one image); the first image given for a key is the one loaded.
 *
 * Ownership: the cache owns its modules; qd_kernel_module_cache_load lends one until the cache is destroyed, which
 * must happen after every executor that borrowed from it. Not thread-safe: one owner (a generator) at a time. */
#ifndef QD_RUNTIME_CUDA_MODULE_CACHE_H
#define QD_RUNTIME_CUDA_MODULE_CACHE_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"
#include "runtime/cuda/kernel_module.h"

typedef struct qd_kernel_module_cache qd_kernel_module_cache_t;

/* An empty cache for device ordinal `device`; retains its primary context. Errors: the driver's, OUT_OF_MEMORY. */
qd_status_t qd_kernel_module_cache_create(qd_allocator_t allocator, int device, qd_kernel_module_cache_t** out);

/* Unloads every module and releases the context; NULL is a no-op. */
void qd_kernel_module_cache_destroy(qd_kernel_module_cache_t* cache);

/* The module of `key` for `arch`, loading `image` into the cache's context the first time. The context must be
 * current. Errors: qd_kernel_module_load's, OUT_OF_MEMORY. */
qd_status_t qd_kernel_module_cache_load(qd_kernel_module_cache_t* cache, const char* key, const char* arch,
                                        const void* image, qd_kernel_module_t** out_module);

/* How many modules the cache has loaded, and how many loads it answered from them. */
void qd_kernel_module_cache_counts(const qd_kernel_module_cache_t* cache, int32_t* out_loaded, int64_t* out_reused);

#endif
