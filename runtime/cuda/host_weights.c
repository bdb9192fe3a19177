/* A component's weight section in pinned host memory (host_weights.h). */
#include "runtime/cuda/host_weights.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qd/progress.h"
#include "runtime/cuda_driver.h"

struct qd_cuda_host_weights {
  qd_allocator_t allocator;
  const qd_cuda_driver_t* cu;
  CUdevice device;
  CUcontext context; /* retained: cuMemFreeHost needs a context */
  uint8_t* data;
  uint64_t bytes;
  uint64_t mapped; /* data is an anonymous mapping of this many bytes, registered; 0: cuMemHostAlloc's */
  double seconds;
};

enum { QD_PIN_HUGE_PAGE = 2 << 20 };

/* The copy is split into pieces that threads take in turn; the progress line advances as pieces finish. */
enum { QD_PIN_PIECE = 64 << 20, QD_PIN_MAX_THREADS = 8 };

typedef struct qd_pin_copy {
  pthread_mutex_t lock;
  uint8_t* dst;
  const uint8_t* src;
  uint64_t bytes, next;
  qd_progress_t* progress;
} qd_pin_copy_t;

static void* qd_pin_copy_worker_(void* arg) {
  qd_pin_copy_t* c = arg;
  for (;;) {
    pthread_mutex_lock(&c->lock);
    uint64_t off = c->next;
    c->next = off + QD_PIN_PIECE < c->bytes ? off + QD_PIN_PIECE : c->bytes;
    uint64_t end = c->next;
    pthread_mutex_unlock(&c->lock);
    if (off >= end) return NULL;
    memcpy(c->dst + off, c->src + off, (size_t)(end - off));
    pthread_mutex_lock(&c->lock);
    qd_progress_advance(c->progress, end - off);
    pthread_mutex_unlock(&c->lock);
  }
}

static void qd_pin_copy_(uint8_t* dst, const uint8_t* src, uint64_t bytes, const char* what) {
  qd_progress_t p;
  char label[96];
  snprintf(label, sizeof label, "pin %s", what);
  qd_progress_begin(&p, NULL, label, bytes, "B");
  qd_pin_copy_t c = {.dst = dst, .src = src, .bytes = bytes, .progress = &p};
  pthread_mutex_init(&c.lock, NULL);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = cpus < 1 ? 1 : cpus > QD_PIN_MAX_THREADS ? QD_PIN_MAX_THREADS : (int)cpus;
  if (bytes < 4 * (uint64_t)QD_PIN_PIECE) threads = 1;
  pthread_t tid[QD_PIN_MAX_THREADS];
  int started = 0;
  for (int t = 1; t < threads; t++)
    if (pthread_create(&tid[started], NULL, qd_pin_copy_worker_, &c) == 0) started++;
  qd_pin_copy_worker_(&c); /* this thread works too, and alone when no thread could be started */
  for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
  pthread_mutex_destroy(&c.lock);
  qd_progress_end(&p);
}

/* Whether the kernel reports at least `bytes` of memory available (/proc/meminfo): filling anonymous memory the
 * host lacks would meet the out-of-memory killer, where cuMemHostAlloc fails with an error. */
static bool qd_pin_fits_(uint64_t bytes) {
  FILE* f = fopen("/proc/meminfo", "r");
  if (!f) return false;
  char line[256];
  unsigned long long kib = 0;
  bool found = false;
  while (!found && fgets(line, sizeof line, f)) found = sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
  fclose(f);
  return found && bytes / 1024 + (256u << 10) < kib; /* and 256 MiB to spare */
}

qd_status_t qd_cuda_host_weights_create(int device, const uint8_t* section, uint64_t bytes, const char* what,
                                        qd_allocator_t allocator, qd_cuda_host_weights_t** out) {
  *out = NULL;
  double t0 = qd_now_seconds();
  qd_cuda_host_weights_t* h;
  QD_TRY(qd_calloc(allocator, 1, sizeof *h, (void**)&h));
  h->allocator = allocator;
  h->bytes = bytes;
  qd_status_t s = qd_cuda_driver_load(&h->cu);
  if (!s) s = QD_CU_STATUS(h->cu->cuDeviceGet(&h->device, device));
  if (!s) s = QD_CU_STATUS(h->cu->cuDevicePrimaryCtxRetain(&h->context, h->device));
  if (!s) s = QD_CU_STATUS(h->cu->cuCtxSetCurrent(h->context));
  /* Anonymous memory in huge pages, filled, then registered: the fast way (host_weights.h). */
  uint64_t mapped = (bytes + QD_PIN_HUGE_PAGE - 1) / QD_PIN_HUGE_PAGE * QD_PIN_HUGE_PAGE;
  void* anon = s || !mapped || !qd_pin_fits_(mapped) ? MAP_FAILED
                            : mmap(NULL, (size_t)mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (anon != MAP_FAILED) {
    (void)madvise(anon, (size_t)mapped, MADV_HUGEPAGE); /* advice: ordinary pages work too, only slower */
    qd_pin_copy_(anon, section, bytes, what);
    if (h->cu->cuMemHostRegister(anon, (size_t)mapped, CU_MEMHOSTREGISTER_PORTABLE) == CUDA_SUCCESS) {
      h->data = anon;
      h->mapped = mapped;
      h->seconds = qd_now_seconds() - t0;
      *out = h;
      return QD_OK;
    }
    munmap(anon, (size_t)mapped);
  }
  if (!s) {
    void* p = NULL;
    CUresult r = h->cu->cuMemHostAlloc(&p, (size_t)(bytes ? bytes : 1), CU_MEMHOSTALLOC_PORTABLE);
    if (r != CUDA_SUCCESS) {
      char b[32];
      const char* name = qd_cuda_result_name(r);
      /* Host memory, not the GPU's: the generator's fallback to a smaller schedule (which would pin as much)
       * does not apply. */
      s = QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "pinning %s of host memory for %s's weights failed (%s)",
                 qd_format_bytes(bytes, b, sizeof b), what, name);
    }
    h->data = p;
  }
  if (s) {
    qd_cuda_host_weights_destroy(h);
    return s;
  }
  qd_pin_copy_(h->data, section, bytes, what);
  h->seconds = qd_now_seconds() - t0;
  *out = h;
  return QD_OK;
}

void qd_cuda_host_weights_destroy(qd_cuda_host_weights_t* h) {
  if (!h) return;
  if (h->context) {
    h->cu->cuCtxSetCurrent(h->context);
    if (h->data && h->mapped) {
      h->cu->cuMemHostUnregister(h->data);
      munmap(h->data, (size_t)h->mapped);
    } else if (h->data) {
      h->cu->cuMemFreeHost(h->data);
    }
    h->cu->cuDevicePrimaryCtxRelease(h->device);
  }
  qd_free(h->allocator, h, sizeof *h);
}

const uint8_t* qd_cuda_host_weights_data(const qd_cuda_host_weights_t* h) { return h->data; }
uint64_t qd_cuda_host_weights_bytes(const qd_cuda_host_weights_t* h) { return h->bytes; }
double qd_cuda_host_weights_seconds(const qd_cuda_host_weights_t* h) { return h->seconds; }
