/* Reference normalizations. Statistics accumulate in double: the reference should be the most accurate party
 * in any comparison, and the cost is irrelevant at test sizes. */
#include <math.h>

#include "runtime/cpu/ref.h"

typedef struct qd_norm_job {
  const float *x, *w, *b;
  float* y;
  int64_t cols;
  float eps;
} qd_norm_job_t;

static void qd_layer_norm_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_norm_job_t* j = ctx;
  for (int64_t r = begin; r < end; r++) {
    const float* x = j->x + r * j->cols;
    float* y = j->y + r * j->cols;
    double sum = 0;
    for (int64_t c = 0; c < j->cols; c++) sum += x[c];
    double mean = sum / (double)j->cols;
    double var = 0;
    for (int64_t c = 0; c < j->cols; c++) var += ((double)x[c] - mean) * ((double)x[c] - mean);
    var /= (double)j->cols;
    double inv = 1.0 / sqrt(var + (double)j->eps);
    for (int64_t c = 0; c < j->cols; c++) {
      float v = (float)(((double)x[c] - mean) * inv);
      if (j->w) v = v * j->w[c] + (j->b ? j->b[c] : 0.0f);
      y[c] = v;
    }
  }
}

void qd_ref_layer_norm(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                       int64_t rows, int64_t cols, float eps) {
  qd_norm_job_t j = {x, w, b, y, cols, eps};
  qd_parallel_for(pool, rows, 64, qd_layer_norm_rows_, &j);
}

static void qd_rms_norm_groups_(void* ctx, int64_t begin, int64_t end) {
  const qd_norm_job_t* j = ctx;
  for (int64_t g = begin; g < end; g++) {
    const float* x = j->x + g * j->cols;
    float* y = j->y + g * j->cols;
    double ss = 0;
    for (int64_t c = 0; c < j->cols; c++) ss += (double)x[c] * (double)x[c];
    float inv = (float)(1.0 / sqrt(ss / (double)j->cols + (double)j->eps));
    for (int64_t c = 0; c < j->cols; c++) y[c] = x[c] * inv * (j->w ? j->w[c] : 1.0f);
  }
}

void qd_ref_rms_norm(qd_threadpool_t* pool, const float* x, const float* w, float* y, int64_t groups, int64_t dim,
                     float eps) {
  qd_norm_job_t j = {x, w, NULL, y, dim, eps};
  qd_parallel_for(pool, groups, 256, qd_rms_norm_groups_, &j);
}
