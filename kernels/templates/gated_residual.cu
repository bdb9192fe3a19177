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

typedef unsigned short qd_bf16; /* raw bf16 bits */

/* ---- bf16 on the bits (shared by every qd template; each template is compiled alone) ---------------------- */

__device__ __forceinline__ float qd_bf16_lo(unsigned int w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float qd_bf16_hi(unsigned int w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned int qd_pack_bf16x2(float lo, float hi) {
  unsigned int r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); /* first source -> upper half */
  return r;
}
__device__ __forceinline__ unsigned short qd_f32_to_bf16(float f) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}

/* N bf16 held as loaded: N/2 32-bit words (one 2-, 4-, 8- or 16-byte access). */
template <int N>
struct qd_raw {
  unsigned int w[N / 2];
};
template <>
struct qd_raw<1> {
  unsigned short h;
};

template <int N>
__device__ __forceinline__ qd_raw<N> qd_load(const qd_bf16* p) {
  qd_raw<N> r;
  if constexpr (N == 8) {
    uint4 v = *reinterpret_cast<const uint4*>(p);
    r.w[0] = v.x, r.w[1] = v.y, r.w[2] = v.z, r.w[3] = v.w;
  } else if constexpr (N == 4) {
    uint2 v = *reinterpret_cast<const uint2*>(p);
    r.w[0] = v.x, r.w[1] = v.y;
  } else if constexpr (N == 2) {
    r.w[0] = *reinterpret_cast<const unsigned int*>(p);
  } else {
    r.h = *p;
  }
  return r;
}

template <int N>
__device__ __forceinline__ float qd_get(const qd_raw<N>& r, int i) {
  if constexpr (N == 1) {
    return __uint_as_float((unsigned int)r.h << 16);
  } else {
    return (i & 1) ? qd_bf16_hi(r.w[i >> 1]) : qd_bf16_lo(r.w[i >> 1]);
  }
}

template <int N>
__device__ __forceinline__ void qd_store(qd_bf16* p, const float* f) {
  if constexpr (N == 8) {
    *reinterpret_cast<uint4*>(p) = make_uint4(qd_pack_bf16x2(f[0], f[1]), qd_pack_bf16x2(f[2], f[3]),
                                              qd_pack_bf16x2(f[4], f[5]), qd_pack_bf16x2(f[6], f[7]));
  } else if constexpr (N == 4) {
    *reinterpret_cast<uint2*>(p) = make_uint2(qd_pack_bf16x2(f[0], f[1]), qd_pack_bf16x2(f[2], f[3]));
  } else if constexpr (N == 2) {
    *reinterpret_cast<unsigned int*>(p) = qd_pack_bf16x2(f[0], f[1]);
  } else {
    *p = qd_f32_to_bf16(f[0]);
  }
}

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
