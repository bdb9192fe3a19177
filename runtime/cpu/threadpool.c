/* Thread pool; see threadpool.h. Workers sleep on a condition variable between jobs; a job is a range split
 * into chunks claimed with an atomic counter. */
#include "runtime/cpu/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

struct qd_threadpool {
  qd_allocator_t allocator;
  int size;
  pthread_t* threads;
  int thread_capacity;
  int started;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  pthread_cond_t done;
  /* The current job. */
  uint64_t generation;
  qd_parallel_fn fn;
  void* ctx;
  int64_t n, chunk;
  atomic_int_fast64_t next;
  int busy_workers;
  int stopping;
};

static void qd_pool_work_(qd_threadpool_t* p) {
  for (;;) {
    int64_t begin = atomic_fetch_add(&p->next, p->chunk);
    if (begin >= p->n) break;
    int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
    p->fn(p->ctx, begin, end);
  }
}

static void* qd_pool_main_(void* arg) {
  qd_threadpool_t* p = arg;
  uint64_t seen = 0;
  pthread_mutex_lock(&p->mutex);
  for (;;) {
    while (!p->stopping && p->generation == seen) pthread_cond_wait(&p->wake, &p->mutex);
    if (p->stopping) break;
    seen = p->generation;
    pthread_mutex_unlock(&p->mutex);
    qd_pool_work_(p);
    pthread_mutex_lock(&p->mutex);
    if (--p->busy_workers == 0) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mutex);
  return NULL;
}

qd_status_t qd_threadpool_create(int threads, qd_allocator_t allocator, qd_threadpool_t** out_pool) {
  *out_pool = NULL;
  if (threads <= 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    threads = n > 0 ? (int)n : 1;
  }
  if (threads > 256) threads = 256;
  qd_threadpool_t* p;
  QD_TRY(qd_calloc(allocator, 1, sizeof *p, (void**)&p));
  p->allocator = allocator;
  p->size = threads;
  pthread_mutex_init(&p->mutex, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  atomic_init(&p->next, 0);
  if (threads > 1) {
    qd_status_t s = qd_calloc(allocator, (size_t)threads - 1, sizeof(pthread_t), (void**)&p->threads);
    if (!s) p->thread_capacity = threads - 1;
    if (s) {
      qd_threadpool_destroy(p);
      return s;
    }
    for (int i = 0; i < threads - 1; i++) {
      if (pthread_create(&p->threads[i], NULL, qd_pool_main_, p) != 0) {
        /* Run with the threads we got rather than fail: fewer threads is only slower. */
        p->size = i + 1;
        break;
      }
      p->started++;
    }
  }
  *out_pool = p;
  return QD_OK;
}

void qd_threadpool_destroy(qd_threadpool_t* p) {
  if (!p) return;
  pthread_mutex_lock(&p->mutex);
  p->stopping = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mutex);
  for (int i = 0; i < p->started; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mutex);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  qd_free(p->allocator, p->threads, (size_t)p->thread_capacity * sizeof(pthread_t));
  qd_free(p->allocator, p, sizeof *p);
}

int qd_threadpool_size(const qd_threadpool_t* p) { return p ? p->size : 1; }

void qd_parallel_for(qd_threadpool_t* p, int64_t n, int64_t grain, qd_parallel_fn fn, void* ctx) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (!p || p->started == 0 || n <= grain) {
    fn(ctx, 0, n);
    return;
  }
  /* About four chunks per thread balances uneven work without much counter traffic. */
  int64_t chunk = n / ((int64_t)p->size * 4);
  if (chunk < grain) chunk = grain;
  pthread_mutex_lock(&p->mutex);
  p->fn = fn;
  p->ctx = ctx;
  p->n = n;
  p->chunk = chunk;
  atomic_store(&p->next, 0);
  p->busy_workers = p->started;
  p->generation++;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mutex);
  qd_pool_work_(p);
  pthread_mutex_lock(&p->mutex);
  while (p->busy_workers > 0) pthread_cond_wait(&p->done, &p->mutex);
  pthread_mutex_unlock(&p->mutex);
}
