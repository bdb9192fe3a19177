/* Reference linear layer: y = x W^T + b.
 *
 * W is [n, k] row-major, the layout checkpoints store, so each output is a dot product of an x row and a W row.
 * A plain triple loop would be too slow even for tiny golden models (seconds matter in CI), so this is blocked:
 * the work is split into tiles of QD_GEMM_MR rows by QD_GEMM_NR columns; each tile transposes its W rows into a
 * k-major panel on the stack (in chunks of QD_GEMM_KC) so the inner loop is a contiguous multiply-add over NR
 * columns that the compiler vectorizes. Accumulation is fp32 in a fixed order per output, so results do not
 * depend on the thread count. */
#include <string.h>

#include "runtime/cpu/ref.h"

enum { QD_GEMM_MR = 4, QD_GEMM_NR = 16, QD_GEMM_KC = 256 };

typedef struct qd_gemm_job {
  const float *x, *w, *b;
  float* y;
  int64_t m, n, k;
  int64_t tiles_n;
} qd_gemm_job_t;

static void qd_gemm_tile_(const qd_gemm_job_t* j, int64_t i0, int64_t n0) {
  float panel[QD_GEMM_KC][QD_GEMM_NR];
  float acc[QD_GEMM_MR][QD_GEMM_NR];
  int64_t mr = j->m - i0 < QD_GEMM_MR ? j->m - i0 : QD_GEMM_MR;
  int64_t nr = j->n - n0 < QD_GEMM_NR ? j->n - n0 : QD_GEMM_NR;
  memset(acc, 0, sizeof acc);
  for (int64_t k0 = 0; k0 < j->k; k0 += QD_GEMM_KC) {
    int64_t kc = j->k - k0 < QD_GEMM_KC ? j->k - k0 : QD_GEMM_KC;
    /* Transpose the W rows of this tile into panel[kk][c]; columns past n stay zero. */
    for (int64_t c = 0; c < QD_GEMM_NR; c++) {
      if (c < nr) {
        const float* wr = j->w + (n0 + c) * j->k + k0;
        for (int64_t kk = 0; kk < kc; kk++) panel[kk][c] = wr[kk];
      } else {
        for (int64_t kk = 0; kk < kc; kk++) panel[kk][c] = 0.0f;
      }
    }
    for (int64_t r = 0; r < mr; r++) {
      const float* xr = j->x + (i0 + r) * j->k + k0;
      float* ar = acc[r];
      for (int64_t kk = 0; kk < kc; kk++) {
        float xv = xr[kk];
        const float* pr = panel[kk];
        for (int c = 0; c < QD_GEMM_NR; c++) ar[c] += xv * pr[c];
      }
    }
  }
  for (int64_t r = 0; r < mr; r++) {
    float* yr = j->y + (i0 + r) * j->n + n0;
    for (int64_t c = 0; c < nr; c++) yr[c] = acc[r][c] + (j->b ? j->b[n0 + c] : 0.0f);
  }
}

static void qd_gemm_range_(void* ctx, int64_t begin, int64_t end) {
  const qd_gemm_job_t* j = ctx;
  for (int64_t t = begin; t < end; t++) {
    int64_t ti = t / j->tiles_n, tn = t % j->tiles_n;
    qd_gemm_tile_(j, ti * QD_GEMM_MR, tn * QD_GEMM_NR);
  }
}

void qd_ref_linear(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y, int64_t m,
                   int64_t n, int64_t k) {
  qd_gemm_job_t j = {x, w, b, y, m, n, k, (n + QD_GEMM_NR - 1) / QD_GEMM_NR};
  int64_t tiles = ((m + QD_GEMM_MR - 1) / QD_GEMM_MR) * j.tiles_n;
  /* Small tiles are cheap; group enough of them per task that scheduling stays negligible. */
  int64_t grain = k >= 1024 ? 1 : 1024 / (k > 0 ? k : 1);
  qd_parallel_for(pool, tiles, grain, qd_gemm_range_, &j);
}
