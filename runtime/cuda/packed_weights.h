/* qd runtime: weights repacked on the host into the layout a kernel reads, made once and kept for the executors that
 * come and go around them.
 *
 * An offloaded pipeline makes each component's executor anew for every image. The VAE's convolution filters are
 * stored in the plan as the model has them and repacked for conv2d.cu (runtime/cuda/kernels_image.h) when an
 * executor first needs them: about 60 ms of host work per VAE executor on the H200 machine (docs/performance.md,
 * 2026-11-29), every image. With a store, the first executor packs and the later ones upload what it kept.
 *
 * A packed weight is found by the address of its source bytes (the plan's weight data, mapped and unchanged while
 * the plan is open) and its packed size. The store keeps its own copies.
 *
 * Ownership: the store owns its copies until destroyed; what qd_packed_weights_find returns stays valid until then.
 * Not thread-safe: one owner (a generator) at a time. */
#ifndef QD_RUNTIME_CUDA_PACKED_WEIGHTS_H
#define QD_RUNTIME_CUDA_PACKED_WEIGHTS_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

typedef struct qd_packed_weights qd_packed_weights_t;

/* An empty store. Errors: OUT_OF_MEMORY. */
qd_status_t qd_packed_weights_create(qd_allocator_t allocator, qd_packed_weights_t** out);
/* Frees every copy; NULL is a no-op. */
void qd_packed_weights_destroy(qd_packed_weights_t* store);

/* The packed bytes kept for `source` at `bytes` bytes, or NULL. */
const void* qd_packed_weights_find(const qd_packed_weights_t* store, const void* source, uint64_t bytes);
/* Keeps a copy of `bytes` bytes of `packed` for `source` (replacing none: a second put for the same key keeps the
 * first) and returns the kept copy in *out. Errors: OUT_OF_MEMORY (nothing kept). */
qd_status_t qd_packed_weights_put(qd_packed_weights_t* store, const void* source, const void* packed, uint64_t bytes,
                                  const void** out);
/* Weights kept and their bytes. */
void qd_packed_weights_counts(const qd_packed_weights_t* store, int32_t* out_count, uint64_t* out_bytes);

#endif
