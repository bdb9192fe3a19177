/* Reference image ops in NCHW: 2-D convolution, group normalization and nearest-neighbour upsampling (the VAE
 * decoder's building blocks).
 *
 * Convolution is im2col + the blocked GEMM of ref_linear.c: for a chunk of P output pixels, col [P, Cin*k*k] holds
 * each pixel's receptive field (zeros where it reaches into the padding) in the weight's [Cin, k, k] order, and
 * y_chunk [Cout, P] = W [Cout, Cin*k*k] x col^T is exactly qd_ref_linear(x = W, w = col). The chunk is bounded so
 * the scratch stays small at any image size; accumulation order per output is fixed (thread-count independent). */
#include <math.h>
#include <string.h>

#include "runtime/cpu/ref.h"

enum { QD_CONV_CHUNK_FLOATS = 1 << 22, QD_CONV_MIN_PIXELS = 64 };

static int64_t qd_conv_chunk_pixels_(const qd_ref_conv2d_shape_t* s) {
  int64_t per_pixel = s->cin * s->k * s->k + s->cout;
  int64_t p = QD_CONV_CHUNK_FLOATS / per_pixel;
  if (p < QD_CONV_MIN_PIXELS) p = QD_CONV_MIN_PIXELS;
  int64_t total = s->hout * s->wout;
  return p < total ? p : total;
}

int64_t qd_ref_conv2d_workspace(const qd_ref_conv2d_shape_t* s) {
  return qd_conv_chunk_pixels_(s) * (s->cin * s->k * s->k + s->cout);
}

typedef struct qd_im2col_job {
  const qd_ref_conv2d_shape_t* s;
  const float* x; /* one image [cin, h, w] */
  float* col;     /* [pixels, cin * k * k] */
  int64_t first_pixel;
} qd_im2col_job_t;

static void qd_im2col_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_im2col_job_t* j = ctx;
  const qd_ref_conv2d_shape_t* s = j->s;
  int64_t kk = s->k * s->k, kdim = s->cin * kk;
  for (int64_t p = begin; p < end; p++) {
    int64_t pix = j->first_pixel + p, oy = pix / s->wout, ox = pix % s->wout;
    int64_t y0 = oy * s->stride - s->pad, x0 = ox * s->stride - s->pad;
    float* row = j->col + p * kdim;
    for (int64_t ci = 0; ci < s->cin; ci++) {
      const float* plane = j->x + ci * s->h * s->w;
      for (int64_t ky = 0; ky < s->k; ky++) {
        int64_t iy = y0 + ky;
        float* dst = row + ci * kk + ky * s->k;
        if (iy < 0 || iy >= s->h) {
          for (int64_t kx = 0; kx < s->k; kx++) dst[kx] = 0.0f;
          continue;
        }
        for (int64_t kx = 0; kx < s->k; kx++) {
          int64_t ix = x0 + kx;
          dst[kx] = ix < 0 || ix >= s->w ? 0.0f : plane[iy * s->w + ix];
        }
      }
    }
  }
}

void qd_ref_conv2d(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                   const qd_ref_conv2d_shape_t* s, float* workspace) {
  int64_t kdim = s->cin * s->k * s->k, pixels = s->hout * s->wout, chunk = qd_conv_chunk_pixels_(s);
  float* col = workspace;
  float* out = workspace + chunk * kdim;
  for (int64_t n = 0; n < s->batch; n++) {
    const float* xn = x + n * s->cin * s->h * s->w;
    float* yn = y + n * s->cout * pixels;
    for (int64_t p0 = 0; p0 < pixels; p0 += chunk) {
      int64_t np = pixels - p0 < chunk ? pixels - p0 : chunk;
      qd_im2col_job_t j = {s, xn, col, p0};
      qd_parallel_for(pool, np, 64, qd_im2col_rows_, &j);
      qd_ref_linear(pool, w, col, NULL, out, s->cout, np, kdim);
      for (int64_t co = 0; co < s->cout; co++) {
        float bias = b ? b[co] : 0.0f;
        const float* src = out + co * np;
        float* dst = yn + co * pixels + p0;
        for (int64_t p = 0; p < np; p++) dst[p] = src[p] + bias;
      }
    }
  }
}

typedef struct qd_group_norm_job {
  const float *x, *w, *b;
  float* y;
  int64_t ch, spatial, groups;
  float eps;
} qd_group_norm_job_t;

/* A group's channels are adjacent in NCHW, so each (batch, group) is one contiguous run. Statistics in double. */
static void qd_group_norm_groups_(void* ctx, int64_t begin, int64_t end) {
  const qd_group_norm_job_t* j = ctx;
  int64_t cpg = j->ch / j->groups, n = cpg * j->spatial;
  for (int64_t bg = begin; bg < end; bg++) {
    const float* x = j->x + bg * n;
    float* y = j->y + bg * n;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += x[i];
    double mean = sum / (double)n, var = 0;
    for (int64_t i = 0; i < n; i++) var += ((double)x[i] - mean) * ((double)x[i] - mean);
    double inv = 1.0 / sqrt(var / (double)n + (double)j->eps);
    int64_t c0 = (bg % j->groups) * cpg;
    for (int64_t c = 0; c < cpg; c++) {
      float wc = j->w ? j->w[c0 + c] : 1.0f, bc = j->b ? j->b[c0 + c] : 0.0f;
      for (int64_t i = c * j->spatial; i < (c + 1) * j->spatial; i++)
        y[i] = (float)(((double)x[i] - mean) * inv) * wc + bc;
    }
  }
}

void qd_ref_group_norm(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                       int64_t batch, int64_t ch, int64_t spatial, int64_t groups, float eps) {
  qd_group_norm_job_t j = {x, w, b, y, ch, spatial, groups, eps};
  qd_parallel_for(pool, batch * groups, 1, qd_group_norm_groups_, &j);
}

typedef struct qd_upsample_job {
  const float* x;
  float* y;
  int64_t h, w, f;
} qd_upsample_job_t;

static void qd_upsample_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_upsample_job_t* j = ctx;
  int64_t ho = j->h * j->f, wo = j->w * j->f;
  /* Rows are (plane, output row). */
  for (int64_t row = begin; row < end; row++) {
    int64_t p = row / ho, oy = row % ho;
    const float* src = j->x + (p * j->h + oy / j->f) * j->w;
    float* dst = j->y + row * wo;
    for (int64_t ox = 0; ox < wo; ox++) dst[ox] = src[ox / j->f];
  }
}

void qd_ref_upsample_nearest(qd_threadpool_t* pool, const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                             int64_t factor) {
  qd_upsample_job_t j = {x, y, h, w, factor};
  qd_parallel_for(pool, planes * h * factor, 64, qd_upsample_rows_, &j);
}
