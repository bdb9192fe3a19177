/* Reference elementwise ops: activations, broadcasting arithmetic, modulation and gated residuals. */
#include <math.h>

#include "runtime/cpu/ref.h"

enum { QD_EW_GRAIN = 16384 };

float qd_ref_gelu_tanh(float x) {
  const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

typedef struct qd_unary_job {
  qd_ref_unary_op_t op;
  const float* x;
  float* y;
  float factor;
} qd_unary_job_t;

static void qd_unary_range_(void* ctx, int64_t begin, int64_t end) {
  const qd_unary_job_t* j = ctx;
  for (int64_t i = begin; i < end; i++) {
    float v = j->x[i];
    switch (j->op) {
      case QD_REF_SILU: v = v / (1.0f + expf(-v)); break;
      case QD_REF_GELU: v = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); break;
      case QD_REF_GELU_TANH: v = qd_ref_gelu_tanh(v); break;
      case QD_REF_QUICK_GELU: v = v / (1.0f + expf(-1.702f * v)); break;
      case QD_REF_SCALE: v = v * j->factor; break;
    }
    j->y[i] = v;
  }
}

void qd_ref_unary(qd_threadpool_t* pool, qd_ref_unary_op_t op, const float* x, float* y, int64_t n, float factor) {
  qd_unary_job_t j = {op, x, y, factor};
  qd_parallel_for(pool, n, QD_EW_GRAIN, qd_unary_range_, &j);
}

typedef struct qd_affine_job {
  const float* x;
  float* y;
  float scale, divisor, shift;
} qd_affine_job_t;

static void qd_affine_range_(void* ctx, int64_t begin, int64_t end) {
  const qd_affine_job_t* j = ctx;
  for (int64_t i = begin; i < end; i++) j->y[i] = j->x[i] * j->scale / j->divisor + j->shift;
}

void qd_ref_affine(qd_threadpool_t* pool, const float* x, float* y, int64_t n, float scale, float divisor,
                   float shift) {
  qd_affine_job_t j = {x, y, scale, divisor, shift};
  qd_parallel_for(pool, n, QD_EW_GRAIN, qd_affine_range_, &j);
}

typedef struct qd_binary_job {
  qd_ref_binary_op_t op;
  const float *a, *b;
  float* y;
  int32_t rank;
  int64_t dims[8];
  int64_t b_strides[8]; /* 0 where b broadcasts */
} qd_binary_job_t;

static void qd_binary_range_(void* ctx, int64_t begin, int64_t end) {
  const qd_binary_job_t* j = ctx;
  for (int64_t i = begin; i < end; i++) {
    int64_t rem = i, bi = 0;
    for (int32_t d = j->rank - 1; d >= 0; d--) {
      int64_t idx = rem % j->dims[d];
      rem /= j->dims[d];
      bi += idx * j->b_strides[d];
    }
    j->y[i] = j->op == QD_REF_ADD ? j->a[i] + j->b[bi] : j->a[i] * j->b[bi];
  }
}

void qd_ref_binary(qd_threadpool_t* pool, qd_ref_binary_op_t op, const float* a, const int64_t* a_dims,
                   int32_t a_rank, const float* b, const int64_t* b_dims, int32_t b_rank, float* y) {
  qd_binary_job_t j = {op, a, b, y, a_rank, {0}, {0}};
  int64_t n = 1, stride = 1;
  for (int32_t d = a_rank - 1; d >= 0; d--) {
    j.dims[d] = a_dims[d];
    n *= a_dims[d];
    int32_t bd = d - (a_rank - b_rank);
    if (bd >= 0 && b_dims[bd] != 1) {
      j.b_strides[d] = stride;
    } else {
      j.b_strides[d] = 0;
    }
    if (bd >= 0) stride *= b_dims[bd];
  }
  qd_parallel_for(pool, n, QD_EW_GRAIN, qd_binary_range_, &j);
}

typedef struct qd_rowvec_job {
  const float *x, *u, *v, *r;
  float* y;
  int64_t tokens, ch;
} qd_rowvec_job_t;

static void qd_modulate_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_rowvec_job_t* j = ctx;
  for (int64_t row = begin; row < end; row++) {
    int64_t b = row / j->tokens;
    const float* shift = j->u + b * j->ch;
    const float* scale = j->v + b * j->ch;
    const float* x = j->x + row * j->ch;
    float* y = j->y + row * j->ch;
    for (int64_t c = 0; c < j->ch; c++) y[c] = x[c] * (1.0f + scale[c]) + shift[c];
  }
}

void qd_ref_modulate(qd_threadpool_t* pool, const float* x, const float* shift, const float* scale, float* y,
                     int64_t batch, int64_t tokens, int64_t ch) {
  qd_rowvec_job_t j = {x, shift, scale, NULL, y, tokens, ch};
  qd_parallel_for(pool, batch * tokens, 64, qd_modulate_rows_, &j);
}

static void qd_gated_add_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_rowvec_job_t* j = ctx;
  for (int64_t row = begin; row < end; row++) {
    int64_t b = row / j->tokens;
    const float* gate = j->u + b * j->ch;
    const float* x = j->x + row * j->ch;
    const float* r = j->r + row * j->ch;
    float* y = j->y + row * j->ch;
    for (int64_t c = 0; c < j->ch; c++) y[c] = r[c] + gate[c] * x[c];
  }
}

void qd_ref_gated_add(qd_threadpool_t* pool, const float* residual, const float* gate, const float* x, float* y,
                      int64_t batch, int64_t tokens, int64_t ch) {
  qd_rowvec_job_t j = {x, gate, NULL, residual, y, tokens, ch};
  qd_parallel_for(pool, batch * tokens, 64, qd_gated_add_rows_, &j);
}
