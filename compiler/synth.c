/* Seeded random weights for tests and benchmarks (qdc synth). Values come from a counter-based generator keyed by
 * the seed, the weight's name and the element index, so they do not depend on the thread count or the order in
 * which weights are produced. */
#include <math.h>
#include <string.h>

#include "compiler/compile.h"
#include "runtime/cpu/threadpool.h"

/* SplitMix64: a good 64-bit mix, cheap enough for billions of values. */
static uint64_t qdc_mix_(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

typedef struct qdc_synth_job {
  float* x;
  uint64_t key;
  float scale, center;
} qdc_synth_job_t;

static void qdc_synth_range_(void* ctx, int64_t begin, int64_t end) {
  const qdc_synth_job_t* j = ctx;
  for (int64_t i = begin; i < end; i++) {
    uint64_t r = qdc_mix_(j->key ^ (uint64_t)i);
    /* Uniform in [-1, 1): std 1/sqrt(3), hence the scale's sqrt(3). */
    float u = (float)((double)(r >> 11) * 0x1p-52 - 1.0);
    j->x[i] = j->center + j->scale * u;
  }
}

void qdc_synth_fill(const qd_weight_t* w, uint64_t seed, float* x, void* pool) {
  uint64_t key = qdc_mix_(seed);
  for (const char* p = w->name; *p; p++) key = qdc_mix_(key ^ (uint8_t)*p);
  int64_t n = qd_shape_numel(&w->shape);
  qdc_synth_job_t j = {x, key, 0, 0};
  if (w->flags & QD_WEIGHT_LINEAR) {
    double fan_in = (double)w->shape.dims[w->shape.rank - 1];
    j.scale = (float)(sqrt(3.0) / sqrt(fan_in));
  } else if (w->flags & QD_WEIGHT_BIAS) {
    j.scale = 0.02f;
  } else if (w->flags & QD_WEIGHT_NORM) {
    j.center = 1.0f;
    j.scale = 0.1f;
  } else {
    j.scale = 0.05f;
  }
  qd_parallel_for(pool, n, 1 << 16, qdc_synth_range_, &j);
}
