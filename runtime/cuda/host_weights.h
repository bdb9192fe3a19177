/* A component's weight section in pinned (page-locked) host memory.
 *
 * The GPU copies pinned memory at the bus's full speed and asynchronously; pageable memory (the mapped plan) goes
 * through the driver's staging buffers at about a third of that and blocks the host. Model offload uploads each
 * component's weights once per image from here, and streamed weights (runtime/cuda/weight_stream.h) are copied
 * from here while the step runs, which pageable memory cannot do inside a CUDA graph.
 *
 * The copy is made once, by several threads reading the mapped section, into anonymous memory with transparent
 * huge pages asked for (madvise), which is then registered with the driver (cuMemHostRegister): on the H200
 * machine 6 GiB pin so in 0.46 s where one cuMemHostAlloc takes 3.96 s (bench/pin_probe.c; the driver pins 4 KiB
 * pages one by one, and a huge page is one). When registering fails, or the kernel reports less memory available
 * than the copy needs (filling anonymous memory the host lacks would meet the out-of-memory killer), cuMemHostAlloc
 * is the way, which fails with an error instead.
 * Registering the mapped file's pages in place would save the host memory, but on the H200 machine registering
 * 9.4 GB of file-backed pages did not finish within 120 s (docs/performance.md, 2026-11-29).
 *
 * Ownership: the object owns its pinned buffer and holds a reference on the device's primary context until
 * destroyed; the section it copied from need not outlive it. Executors borrow it (qd_cuda_executor_options_t). */
#ifndef QD_RUNTIME_CUDA_HOST_WEIGHTS_H
#define QD_RUNTIME_CUDA_HOST_WEIGHTS_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

typedef struct qd_cuda_host_weights qd_cuda_host_weights_t;

/* Pins `bytes` of host memory for device `device` and copies `section` into it. `what` names the component in
 * errors and progress. Errors: QD_CODE_OUT_OF_MEMORY (host memory) naming the size when the driver cannot pin
 * that much;
 * the driver's. */
qd_status_t qd_cuda_host_weights_create(int device, const uint8_t* section, uint64_t bytes, const char* what,
                                        qd_allocator_t allocator, qd_cuda_host_weights_t** out_weights);
void qd_cuda_host_weights_destroy(qd_cuda_host_weights_t* weights);

const uint8_t* qd_cuda_host_weights_data(const qd_cuda_host_weights_t* weights);
uint64_t qd_cuda_host_weights_bytes(const qd_cuda_host_weights_t* weights);
/* Seconds the pinning and the copy took. */
double qd_cuda_host_weights_seconds(const qd_cuda_host_weights_t* weights);

#endif
