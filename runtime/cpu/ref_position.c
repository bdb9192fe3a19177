/* Reference positional encodings: diffusers' sinusoidal timestep embedding and FLUX's rotary embedding. */
#include <math.h>

#include "runtime/cpu/ref.h"

void qd_ref_timestep_embedding(const float* t, float* y, int64_t batch, int64_t dim, bool flip_sin_to_cos,
                               float downscale_freq_shift, float input_scale, float max_period) {
  /* Mirrors get_timestep_embedding in float32, step by step: exponent = -ln(max_period) * i / (half - shift),
   * freq = exp(exponent), arg = (t * input_scale) * freq; the sin half comes first unless flipped. */
  int64_t half = dim / 2;
  float neg_log = -logf(max_period);
  for (int64_t b = 0; b < batch; b++) {
    float tb = t[b] * input_scale;
    for (int64_t i = 0; i < half; i++) {
      float exponent = neg_log * (float)i;
      exponent = exponent / ((float)half - downscale_freq_shift);
      float arg = tb * expf(exponent);
      float s = sinf(arg), c = cosf(arg);
      y[b * dim + i] = flip_sin_to_cos ? c : s;
      y[b * dim + half + i] = flip_sin_to_cos ? s : c;
    }
  }
}

void qd_ref_rope_freqs(const float* ids, float* y, int64_t tokens, const int64_t* axes, int32_t n_axes,
                       double theta) {
  int64_t total = 0;
  for (int32_t a = 0; a < n_axes; a++) total += axes[a];
  float* cos_out = y;
  float* sin_out = y + tokens * total;
  for (int64_t s = 0; s < tokens; s++) {
    int64_t col = 0;
    for (int32_t a = 0; a < n_axes; a++) {
      double pos = (double)ids[s * n_axes + a];
      for (int64_t p = 0; p < axes[a] / 2; p++) {
        double freq = 1.0 / pow(theta, (double)(2 * p) / (double)axes[a]);
        double ang = pos * freq;
        float c = (float)cos(ang), sn = (float)sin(ang);
        cos_out[s * total + col] = cos_out[s * total + col + 1] = c;
        sin_out[s * total + col] = sin_out[s * total + col + 1] = sn;
        col += 2;
      }
    }
  }
}

typedef struct qd_rope_job {
  const float *x, *freqs;
  float* y;
  int64_t tokens, heads, d;
} qd_rope_job_t;

static void qd_rope_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_rope_job_t* j = ctx;
  const float* cos_t = j->freqs;
  const float* sin_t = j->freqs + j->tokens * j->d;
  for (int64_t row = begin; row < end; row++) {
    int64_t s = row % j->tokens;
    const float* c = cos_t + s * j->d;
    const float* sn = sin_t + s * j->d;
    for (int64_t h = 0; h < j->heads; h++) {
      const float* x = j->x + (row * j->heads + h) * j->d;
      float* y = j->y + (row * j->heads + h) * j->d;
      for (int64_t i = 0; i < j->d; i += 2) {
        float x0 = x[i], x1 = x[i + 1];
        y[i] = x0 * c[i] - x1 * sn[i];
        y[i + 1] = x1 * c[i + 1] + x0 * sn[i + 1];
      }
    }
  }
}

void qd_ref_rope(qd_threadpool_t* pool, const float* x, const float* freqs, float* y, int64_t batch, int64_t tokens,
                 int64_t heads, int64_t head_dim) {
  qd_rope_job_t j = {x, freqs, y, tokens, heads, head_dim};
  qd_parallel_for(pool, batch * tokens, 64, qd_rope_rows_, &j);
}
