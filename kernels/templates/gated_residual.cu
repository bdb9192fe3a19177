/* qd kernel template: gated residual, y = residual + gate[b] * x, bf16 in and out, fp32 math.
 *
 * Math, per row r of [R, C] (R = B * S rows; row r belongs to batch b = r / S):
 *   y[r, c] = residual[r, c] + gate[b, c] * x[r, c]              (qd_ref_gated_add), rounded to bf16 once
 *
 * Layouts (elements): residual, x and y are row-major [R, C]; y may be residual or x (in place: every element is
 * read and written by the same thread). gate is a row of a [B, *] matrix with batch stride gate_stride,
 * gate[b, c] = gate[b * gate_stride + c], so it can point into the adaLN linear's output without a slice copy.
 *
 * Kernel:
 *   qd_gated_residual(y, residual, gate, x, long long gate_stride, int rows, int tokens, int cols)
 * Launch: GR_THREADS threads, ceil(rows * cols / GR_VEC / (GR_THREADS * GR_ITEMS)) blocks. Each thread handles
 * GR_ITEMS vectors of GR_VEC bf16, GR_THREADS apart (a warp's accesses stay contiguous); all loads are issued
 * before any math so that each thread keeps 3 * GR_ITEMS loads in flight. Requirements (checked by the
 * launcher): cols % GR_VEC == 0; every pointer aligned to GR_VEC * 2 bytes and gate_stride % GR_VEC == 0;
 * rows * cols < 2^31.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param tunable GR_VEC     = 8   {1 2 4 8}              bf16 per load and store
 *   qd:param tunable GR_THREADS = 256 {64 128 256 512 1024}  threads per block
 *   qd:param tunable GR_ITEMS   = 2   {1 2 4}                vectors per thread
 * bf16 conversions are done on the bits (see layernorm_modulate.cu); no toolkit header is needed.
 */

#ifndef GR_VEC
#define GR_VEC 8
#endif
#ifndef GR_THREADS
#define GR_THREADS 256
#endif
#ifndef GR_ITEMS
#define GR_ITEMS 2
#endif

static_assert(GR_VEC == 1 || GR_VEC == 2 || GR_VEC == 4 || GR_VEC == 8, "GR_VEC is 1, 2, 4 or 8");
static_assert(GR_THREADS >= 32 && GR_THREADS <= 1024 && GR_THREADS % 32 == 0, "GR_THREADS: 32 to 1024, warps");
static_assert(GR_ITEMS >= 1 && GR_ITEMS <= 8, "GR_ITEMS is 1 to 8");

#include "qd_bf16.cuh"

/* ---- the kernel --------------------------------------------------------------------------------------------- */

extern "C" __global__ void __launch_bounds__(GR_THREADS)
    qd_gated_residual(qd_bf16* y, const qd_bf16* residual, const qd_bf16* gate, const qd_bf16* x,
                      long long gate_stride, int rows, int tokens, int cols) {
  const unsigned int per_row = (unsigned int)cols / GR_VEC;
  const unsigned int total = (unsigned int)rows * per_row;
  const unsigned int first = blockIdx.x * (GR_THREADS * GR_ITEMS) + threadIdx.x;
  qd_raw<GR_VEC> r[GR_ITEMS], g[GR_ITEMS], v[GR_ITEMS];
#pragma unroll
  for (int k = 0; k < GR_ITEMS; k++) {
    const unsigned int i = first + k * GR_THREADS;
    if (i < total) {
      const unsigned int row = i / per_row;
      const unsigned int c = (i - row * per_row) * GR_VEC;
      const long long off = (long long)i * GR_VEC;
      r[k] = qd_load<GR_VEC>(residual + off);
      v[k] = qd_load<GR_VEC>(x + off);
      g[k] = qd_load<GR_VEC>(gate + (long long)(row / (unsigned int)tokens) * gate_stride + c);
    }
  }
#pragma unroll
  for (int k = 0; k < GR_ITEMS; k++) {
    const unsigned int i = first + k * GR_THREADS;
    if (i < total) {
      float o[GR_VEC];
#pragma unroll
      for (int e = 0; e < GR_VEC; e++)
        o[e] = qd_get<GR_VEC>(r[k], e) + qd_get<GR_VEC>(g[k], e) * qd_get<GR_VEC>(v[k], e);
      qd_store<GR_VEC>(y + (long long)i * GR_VEC, o);
    }
  }
}
