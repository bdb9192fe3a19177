/* Reference attention: softmax(q k^T * scale + bias) v for each batch, head and query row.
 *
 * Keys are processed in blocks of QD_ATTN_BLOCK with an online softmax (running maximum, running sum, and the
 * accumulated output rescaled when the maximum grows), so any key length works with a fixed stack buffer and no
 * allocation. Sums are kept in double. */
#include <math.h>

#include "runtime/cpu/ref.h"

enum { QD_ATTN_BLOCK = 512, QD_ATTN_MAX_DV = 1024 };

typedef struct qd_attn_job {
  const float *q, *k, *v, *bias;
  int64_t bias_batch, bias_heads;
  float* y;
  int64_t sq, sk, heads, d, dv;
  float scale;
  bool causal;
} qd_attn_job_t;

static void qd_attn_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_attn_job_t* j = ctx;
  float scores[QD_ATTN_BLOCK];
  double acc[QD_ATTN_MAX_DV];
  /* Rows are (batch, head, query) flattened. */
  for (int64_t row = begin; row < end; row++) {
    int64_t i = row % j->sq;
    int64_t h = (row / j->sq) % j->heads;
    int64_t b = row / (j->sq * j->heads);
    const float* q = j->q + ((b * j->sq + i) * j->heads + h) * j->d;
    int64_t kmax = j->causal ? i + 1 : j->sk;
    const float* bias_row = NULL;
    if (j->bias) {
      int64_t bb = j->bias_batch == 1 ? 0 : b, bh = j->bias_heads == 1 ? 0 : h;
      bias_row = j->bias + ((bb * j->bias_heads + bh) * j->sq + i) * j->sk;
    }
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < j->dv; c++) acc[c] = 0;
    for (int64_t t0 = 0; t0 < kmax; t0 += QD_ATTN_BLOCK) {
      int64_t tn = kmax - t0 < QD_ATTN_BLOCK ? kmax - t0 : QD_ATTN_BLOCK;
      double block_max = -INFINITY;
      for (int64_t t = 0; t < tn; t++) {
        const float* k = j->k + ((b * j->sk + t0 + t) * j->heads + h) * j->d;
        float dot = 0;
        for (int64_t c = 0; c < j->d; c++) dot += q[c] * k[c];
        scores[t] = dot * j->scale + (bias_row ? bias_row[t0 + t] : 0.0f);
        if (scores[t] > block_max) block_max = scores[t];
      }
      if (block_max > mx) {
        double rescale = mx == -INFINITY ? 0.0 : exp(mx - block_max);
        sum *= rescale;
        for (int64_t c = 0; c < j->dv; c++) acc[c] *= rescale;
        mx = block_max;
      }
      for (int64_t t = 0; t < tn; t++) {
        double p = exp((double)scores[t] - mx);
        sum += p;
        const float* v = j->v + ((b * j->sk + t0 + t) * j->heads + h) * j->dv;
        for (int64_t c = 0; c < j->dv; c++) acc[c] += p * v[c];
      }
    }
    float* y = j->y + ((b * j->sq + i) * j->heads + h) * j->dv;
    for (int64_t c = 0; c < j->dv; c++) y[c] = (float)(acc[c] / sum);
  }
}

void qd_ref_attention(qd_threadpool_t* pool, const float* q, const float* k, const float* v, const float* bias,
                      int64_t bias_batch, int64_t bias_heads, float* y, int64_t batch, int64_t sq, int64_t sk,
                      int64_t heads, int64_t d, int64_t dv, float scale, bool causal) {
  qd_attn_job_t j = {q, k, v, bias, bias_batch, bias_heads, y, sq, sk, heads, d, dv, scale, causal};
  qd_parallel_for(pool, batch * heads * sq, 16, qd_attn_rows_, &j);
}
