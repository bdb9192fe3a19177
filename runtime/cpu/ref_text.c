/* Reference token ops for the text encoders: embedding lookups, position ids, CLIP's end-of-text pooling and
 * T5's relative position bias. */
#include <math.h>
#include <string.h>

#include "runtime/cpu/ref.h"

typedef struct qd_embed_job {
  const void* ids;
  int64_t id_bytes;
  const float* table;
  float* y;
  int64_t features;
} qd_embed_job_t;

static void qd_embed_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_embed_job_t* j = ctx;
  for (int64_t i = begin; i < end; i++)
    memcpy(j->y + i * j->features, j->table + qd_ref_id(j->ids, j->id_bytes, i) * j->features,
           (size_t)j->features * sizeof(float));
}

void qd_ref_embedding(qd_threadpool_t* pool, const void* ids, int64_t id_bytes, const float* table, float* y,
                      int64_t n, int64_t features) {
  qd_embed_job_t j = {ids, id_bytes, table, y, features};
  qd_parallel_for(pool, n, 64, qd_embed_rows_, &j);
}

void qd_ref_arange(int32_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] = (int32_t)i;
}

void qd_ref_eos_pool(const float* x, const void* ids, int64_t id_bytes, float* y, int64_t batch, int64_t tokens,
                     int64_t ch, int64_t token) {
  for (int64_t b = 0; b < batch; b++) {
    int64_t at = 0;
    for (int64_t s = 0; s < tokens; s++)
      if (qd_ref_id(ids, id_bytes, b * tokens + s) == token) {
        at = s;
        break;
      }
    memcpy(y + b * ch, x + (b * tokens + at) * ch, (size_t)ch * sizeof(float));
  }
}

int64_t qd_ref_t5_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance, bool bidirectional) {
  int64_t rel = relative_position, base = 0, nb = buckets;
  if (bidirectional) {
    nb /= 2;
    if (rel > 0) base = nb;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;
  }
  int64_t max_exact = nb / 2;
  if (rel < max_exact) return base + rel;
  /* transformers: max_exact + (log(rel.float() / max_exact) / math.log(max_distance / max_exact)
   * * (num_buckets - max_exact)).to(long), every step in float32 (the Python double divisor is rounded to float
   * by torch). Distances that are powers of two times max_exact land exactly on bucket boundaries, so the rounding
   * matters; this order reproduces torch's table (tools/golden/t5.py checks it for the real configuration). */
  float v = logf((float)rel / (float)max_exact);
  v = v / (float)log((double)max_distance / (double)max_exact);
  v = v * (float)(nb - max_exact);
  int64_t large = max_exact + (int64_t)v;
  if (large > nb - 1) large = nb - 1;
  return base + large;
}

typedef struct qd_t5_bias_job {
  const float* table;
  float* y;
  const int32_t* bucket_of; /* per relative position + tokens - 1 */
  int64_t tokens, heads;
} qd_t5_bias_job_t;

static void qd_t5_bias_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_t5_bias_job_t* j = ctx;
  /* Rows are (head, query). */
  for (int64_t row = begin; row < end; row++) {
    int64_t h = row / j->tokens, i = row % j->tokens;
    float* y = j->y + row * j->tokens;
    for (int64_t k = 0; k < j->tokens; k++) y[k] = j->table[j->bucket_of[k - i + j->tokens - 1] * j->heads + h];
  }
}

void qd_ref_t5_relative_bias(qd_threadpool_t* pool, const float* table, float* y, int64_t tokens, int64_t heads,
                             int64_t buckets, int64_t max_distance, bool bidirectional) {
  /* Buckets depend only on j - i: compute the 2 * tokens - 1 of them once, on the stack (references do not
   * allocate), for sequences up to 4096 tokens; longer ones compute the bucket per element. */
  enum { QD_T5_STACK = 8192 };
  int32_t stack[QD_T5_STACK];
  if (2 * tokens - 1 <= QD_T5_STACK) {
    for (int64_t r = 0; r < 2 * tokens - 1; r++)
      stack[r] = (int32_t)qd_ref_t5_bucket(r - (tokens - 1), buckets, max_distance, bidirectional);
    qd_t5_bias_job_t j = {table, y, stack, tokens, heads};
    qd_parallel_for(pool, heads * tokens, 16, qd_t5_bias_rows_, &j);
    return;
  }
  for (int64_t h = 0; h < heads; h++)
    for (int64_t i = 0; i < tokens; i++)
      for (int64_t k = 0; k < tokens; k++)
        y[(h * tokens + i) * tokens + k] =
            table[qd_ref_t5_bucket(k - i, buckets, max_distance, bidirectional) * heads + h];
}
