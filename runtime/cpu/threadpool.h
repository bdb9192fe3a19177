/* A fixed pool of worker threads for the CPU executor: parallel-for over an index range.
 *
 * The caller's thread works too, so a pool of N threads runs N - 1 workers. Work is split into chunks of at
 * least `grain` indices taken from a shared counter, so uneven chunks balance themselves. One parallel-for runs
 * at a time per pool (the executor is sequential between ops). A NULL pool runs everything on the caller. */
#ifndef QD_CPU_THREADPOOL_H
#define QD_CPU_THREADPOOL_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

typedef struct qd_threadpool qd_threadpool_t;
typedef void (*qd_parallel_fn)(void* ctx, int64_t begin, int64_t end);

/* threads <= 0: one per online CPU. */
qd_status_t qd_threadpool_create(int threads, qd_allocator_t allocator, qd_threadpool_t** out_pool);
void qd_threadpool_destroy(qd_threadpool_t* pool);
int qd_threadpool_size(const qd_threadpool_t* pool);

/* Calls fn(ctx, begin, end) over disjoint chunks covering [0, n); returns when all are done. */
void qd_parallel_for(qd_threadpool_t* pool, int64_t n, int64_t grain, qd_parallel_fn fn, void* ctx);

#endif
