/* qd kernel template: LayerNorm over the channel axis, fused with adaLN modulation (or a plain, optionally affine
 * LayerNorm), bf16 in and out, fp32 math.
 *
 * Math, per row r of x [R, C] (R = B * S rows, C channels; row r belongs to batch b = r / S):
 *   mean = sum_c x[r, c] / C                           (0 with LN_RMS = 1: T5's RMS norm, qd_ref_rms_norm)
 *   var  = sum_c (x[r, c] - mean)^2 / C                  (two passes: no cancellation for large means)
 *   n    = (x[r, c] - mean) * rsqrt(var + eps)
 *   LN_MODULATE = 1: y[r, c] = n * (1 + scale[b, c]) + shift[b, c]      (qd_ref_layer_norm, then qd_ref_modulate)
 *   LN_MODULATE = 0: y[r, c] = n * w[c] + bias[c], or n when w is NULL   (qd_ref_layer_norm; bias may be NULL)
 * All arithmetic in fp32; y is rounded to bf16 once (round to nearest even).
 *
 * Layouts (elements): x and y are row-major [R, C] (y may be x: each thread rewrites only what it read).
 * shift and scale are rows of a [B, *] matrix with batch stride `mod_stride`: shift[b, c] = shift[b * mod_stride
 * + c], so they can point straight into the adaLN linear's output ([B, 6 * C] in FLUX) without a slice copy.
 * w and bias are [C].
 *
 * Kernels (the define LN_MODULATE picks which one the template defines):
 *   qd_layernorm_modulate(y, x, shift, scale, long long mod_stride, int rows, int tokens, int cols, float eps)
 *   qd_layer_norm(y, x, w, bias, int rows, int cols, float eps)
 * Launch: LN_THREADS * LN_ROWS threads per block, ceil(rows / LN_ROWS) blocks, no dynamic shared memory.
 *
 * Scheme: a group of LN_THREADS consecutive threads owns one row; a block holds LN_ROWS groups. Each thread
 * reads vectors of LN_VEC bf16 (LN_VEC * 2 bytes, 16 at LN_VEC = 8) at vector indices t, t + LN_THREADS, ...;
 * the first LN_CACHE of them stay in registers between the passes, the rest are read again (from L1/L2).
 * Group sums use warp shuffles, and shared memory across the warps of a group when LN_THREADS > 32.
 * Requirements (checked by the launcher): C % LN_VEC == 0; x, y, w, bias, shift, scale aligned to LN_VEC * 2
 * bytes and mod_stride % LN_VEC == 0; rows < 2^31 and C < 2^31.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param select  LN_MODULATE = 1    {0 1}                       1: qd_layernorm_modulate, 0: qd_layer_norm
 *   qd:param select  LN_RMS      = 0    {0 1}                       1: no mean subtracted (RMS norm)
 *   qd:param tunable LN_THREADS  = 128  {8 16 32 64 128 256 512 1024} threads per row
 *   qd:param tunable LN_ROWS     = 1    {1 2 4 8}                   rows per block (LN_THREADS * LN_ROWS <= 1024)
 *   qd:param tunable LN_VEC      = 8    {1 2 4 8}                   bf16 per load and store
 *   qd:param tunable LN_CACHE    = 4    {0 1 2 4 8}                 vectors per thread kept in registers
 * bf16 conversions are done on the bits here (widening is a shift; narrowing is PTX cvt.rn.bf16x2.f32, sm_80+),
 * so the template needs no toolkit header and compiles in a few tens of milliseconds.
 */

#ifndef LN_MODULATE
#define LN_MODULATE 1
#endif
#ifndef LN_RMS
#define LN_RMS 0
#endif
#ifndef LN_THREADS
#define LN_THREADS 128
#endif
#ifndef LN_ROWS
#define LN_ROWS 1
#endif
#ifndef LN_VEC
#define LN_VEC 8
#endif
#ifndef LN_CACHE
#define LN_CACHE 4
#endif

static_assert(LN_MODULATE == 0 || LN_MODULATE == 1, "LN_MODULATE is 0 or 1");
static_assert(LN_RMS == 0 || LN_RMS == 1, "LN_RMS is 0 or 1");
static_assert(LN_THREADS >= 8 && LN_THREADS <= 1024 && (LN_THREADS & (LN_THREADS - 1)) == 0,
              "LN_THREADS is a power of two from 8 to 1024");
static_assert(LN_ROWS >= 1 && LN_ROWS <= 8 && (LN_ROWS & (LN_ROWS - 1)) == 0, "LN_ROWS is 1, 2, 4 or 8");
static_assert(LN_THREADS * LN_ROWS <= 1024, "LN_THREADS * LN_ROWS must not exceed 1024 threads");
static_assert(LN_VEC == 1 || LN_VEC == 2 || LN_VEC == 4 || LN_VEC == 8, "LN_VEC is 1, 2, 4 or 8");
static_assert(LN_CACHE >= 0 && LN_CACHE <= 8, "LN_CACHE is 0 to 8");

#include "qd_bf16.cuh"

/* ---- the kernel --------------------------------------------------------------------------------------------- */

#define LN_BLOCK (LN_THREADS * LN_ROWS)
#define LN_WARPS_PER_GROUP (LN_THREADS > 32 ? LN_THREADS / 32 : 1)
/* Lanes a shuffle may name: a block smaller than a warp has no lanes past its size. */
#define LN_SHFL_MASK (LN_BLOCK >= 32 ? 0xffffffffu : ((1u << LN_BLOCK) - 1u))

/* Sum over the LN_THREADS threads of one group; every thread of the block must call it (it may hold a barrier).
 * Groups of fewer than 32 threads are aligned within a warp, so xor offsets below LN_THREADS stay inside. */
__device__ __forceinline__ float ln_group_sum(float v, float* red, int group, int t) {
#pragma unroll
  for (int o = (LN_THREADS < 32 ? LN_THREADS : 32) / 2; o > 0; o >>= 1) v += __shfl_xor_sync(LN_SHFL_MASK, v, o);
#if LN_THREADS > 32
  if ((t & 31) == 0) red[group * LN_WARPS_PER_GROUP + t / 32] = v;
  __syncthreads();
  v = 0.0f;
#pragma unroll
  for (int i = 0; i < LN_WARPS_PER_GROUP; i++) v += red[group * LN_WARPS_PER_GROUP + i];
  __syncthreads(); /* red is written again by the next sum */
#endif
  return v;
}

/* Normalizes one vector r (at element offset off of the row) and stores it. p0/p1 as in ln_row, already moved to
 * this row's batch for modulation. */
__device__ __forceinline__ void ln_emit(qd_bf16* yr, const qd_raw<LN_VEC>& r, long long off, float mean, float rstd,
                                        const qd_bf16* p0, const qd_bf16* p1) {
  float o[LN_VEC];
#if LN_MODULATE
  const qd_raw<LN_VEC> sh = qd_load<LN_VEC>(p0 + off);
  const qd_raw<LN_VEC> sc = qd_load<LN_VEC>(p1 + off);
#pragma unroll
  for (int i = 0; i < LN_VEC; i++) {
    const float n = (qd_get<LN_VEC>(r, i) - mean) * rstd;
    o[i] = n * (1.0f + qd_get<LN_VEC>(sc, i)) + qd_get<LN_VEC>(sh, i);
  }
#else
#pragma unroll
  for (int i = 0; i < LN_VEC; i++) o[i] = (qd_get<LN_VEC>(r, i) - mean) * rstd;
  if (p0) { /* w, then bias when given */
    const qd_raw<LN_VEC> wv = qd_load<LN_VEC>(p0 + off);
    if (p1) {
      const qd_raw<LN_VEC> bv = qd_load<LN_VEC>(p1 + off);
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) o[i] = o[i] * qd_get<LN_VEC>(wv, i) + qd_get<LN_VEC>(bv, i);
    } else {
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) o[i] = o[i] * qd_get<LN_VEC>(wv, i);
    }
  }
#endif
  qd_store<LN_VEC>(yr + off, o);
}

/* p0/p1: shift/scale (modulate) or w/bias (plain). */
__device__ __forceinline__ void ln_row(qd_bf16* y, const qd_bf16* x, const qd_bf16* p0, const qd_bf16* p1,
                                       long long mod_stride, int rows, int tokens, int cols, float eps) {
  __shared__ float red[LN_ROWS * LN_WARPS_PER_GROUP];
  const int group = threadIdx.x / LN_THREADS;
  const int t = threadIdx.x % LN_THREADS;
  const int row = blockIdx.x * LN_ROWS + group;
  /* Rows past the end still take part in the group sums (barriers), they just read and write nothing. */
  const bool active = row < rows;
  const int nvec = cols / LN_VEC;
  const long long base = (long long)(active ? row : 0) * cols;
  const qd_bf16* xr = x + base;

  qd_raw<LN_VEC> cache[LN_CACHE > 0 ? LN_CACHE : 1];
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < LN_CACHE; k++) {
    const int v = k * LN_THREADS + t;
    if (active && v < nvec) {
      cache[k] = qd_load<LN_VEC>(xr + (long long)v * LN_VEC);
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) sum += qd_get<LN_VEC>(cache[k], i);
    }
  }
  if (active)
    for (int v = LN_CACHE * LN_THREADS + t; v < nvec; v += LN_THREADS) {
      qd_raw<LN_VEC> r = qd_load<LN_VEC>(xr + (long long)v * LN_VEC);
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) sum += qd_get<LN_VEC>(r, i);
    }
#if LN_RMS
  (void)sum;
  const float mean = 0.0f;
#else
  const float mean = ln_group_sum(sum, red, group, t) / (float)cols;
#endif

  float sq = 0.0f;
#pragma unroll
  for (int k = 0; k < LN_CACHE; k++) {
    const int v = k * LN_THREADS + t;
    if (active && v < nvec) {
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) {
        const float d = qd_get<LN_VEC>(cache[k], i) - mean;
        sq += d * d;
      }
    }
  }
  if (active)
    for (int v = LN_CACHE * LN_THREADS + t; v < nvec; v += LN_THREADS) {
      qd_raw<LN_VEC> r = qd_load<LN_VEC>(xr + (long long)v * LN_VEC);
#pragma unroll
      for (int i = 0; i < LN_VEC; i++) {
        const float d = qd_get<LN_VEC>(r, i) - mean;
        sq += d * d;
      }
    }
  const float rstd = rsqrtf(ln_group_sum(sq, red, group, t) / (float)cols + eps);
  if (!active) return; /* no barrier follows */

#if LN_MODULATE
  const long long mod_base = (long long)(row / tokens) * mod_stride;
  p0 += mod_base;
  p1 += mod_base;
#endif
  qd_bf16* yr = y + base;
#pragma unroll
  for (int k = 0; k < LN_CACHE; k++) {
    const int v = k * LN_THREADS + t;
    if (v < nvec) ln_emit(yr, cache[k], (long long)v * LN_VEC, mean, rstd, p0, p1);
  }
  for (int v = LN_CACHE * LN_THREADS + t; v < nvec; v += LN_THREADS)
    ln_emit(yr, qd_load<LN_VEC>(xr + (long long)v * LN_VEC), (long long)v * LN_VEC, mean, rstd, p0, p1);
}

#if LN_MODULATE
extern "C" __global__ void __launch_bounds__(LN_BLOCK)
    qd_layernorm_modulate(qd_bf16* y, const qd_bf16* x, const qd_bf16* shift, const qd_bf16* scale,
                          long long mod_stride, int rows, int tokens, int cols, float eps) {
  ln_row(y, x, shift, scale, mod_stride, rows, tokens, cols, eps);
}
#else
extern "C" __global__ void __launch_bounds__(LN_BLOCK)
    qd_layer_norm(qd_bf16* y, const qd_bf16* x, const qd_bf16* w, const qd_bf16* bias, int rows, int cols,
                  float eps) {
  ln_row(y, x, w, bias, 0, rows, 1, cols, eps);
}
#endif
