/* qd kernel template: elementwise activations, broadcasting add/mul, bias + activation, and fp32 <-> bf16
 * conversion. bf16 activations in global memory, fp32 math, one rounding to bf16 per output.
 *
 * Math (op(v) is chosen by EW_OP and matches qd_ref_unary term by term):
 *   EW_OP 0 identity   v
 *         1 silu       v / (1 + exp(-v))
 *         2 gelu       0.5 v (1 + erf(v / sqrt(2)))
 *         3 gelu_tanh  0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))
 *         4 quick_gelu v / (1 + exp(-1.702 v))
 *         5 scale      v * factor
 *   qd_ew_unary:    y[i] = op(x[i])                                        i < n
 *   qd_ew_binary:   y[r, c] = a[r, c] (+ or *, EW_BINOP) b[(r / tokens) * b_stride + c]      [R, C]
 *                   (b_stride = C, tokens = 1: same shape; tokens = S, b_stride = C: [B, C] over [B, S, C];
 *                   b_stride = 0: one [C] row for every row)                = qd_ref_binary for these shapes
 *   qd_ew_bias_act: y[r, c] = op(x[r, c] + bias[c])   (bias + gelu_tanh when cuBLASLt's epilogue is not used)
 *   qd_ew_f32_to_bf16: y[i] = bf16(x[i]) (round to nearest even);  qd_ew_bf16_to_f32: y[i] = float(x[i])
 *
 * Kernels:
 *   qd_ew_unary(y, x, long long n, float factor)
 *   qd_ew_binary(y, a, b, long long b_stride, int rows, int tokens, int cols)
 *   qd_ew_bias_act(y, x, bias, int rows, int cols, float factor)
 *   qd_ew_f32_to_bf16(y, x, long long n)          qd_ew_bf16_to_f32(y, x, long long n)
 * Launch: EW_THREADS threads, ceil(vectors / (EW_THREADS * EW_ITEMS)) blocks, at least 1, where vectors = n /
 * EW_VEC (flat kernels) or rows * cols / EW_VEC (row kernels). Each thread handles EW_ITEMS vectors of EW_VEC
 * elements, EW_THREADS apart, loads first. The flat kernels take any n: the n % EW_VEC tail elements are done
 * one by one by block 0. Requirements (checked by the launcher): pointers aligned to EW_VEC elements (2 bytes per
 * bf16, 4 per fp32); for the row kernels cols % EW_VEC == 0, b_stride % EW_VEC == 0, rows and cols < 2^31
 * (indices are 64-bit). y may be x or a (in place).
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param select  EW_OP      = 1   {0 1 2 3 4 5}        activation of qd_ew_unary and qd_ew_bias_act
 *   qd:param select  EW_BINOP   = 0   {0 1}                0: add, 1: mul (qd_ew_binary)
 *   qd:param tunable EW_VEC     = 8   {1 2 4 8}            elements per load and store
 *   qd:param tunable EW_THREADS = 256 {128 256 512 1024}   threads per block
 *   qd:param tunable EW_ITEMS   = 2   {1 2 4}              vectors per thread
 * Every kernel is in every variant (they are small); the select defines only change what op() and the binary
 * operator are. Accurate expf/erff/tanhf (no fast-math intrinsics): activations feed further layers.
 */

#ifndef EW_OP
#define EW_OP 1
#endif
#ifndef EW_BINOP
#define EW_BINOP 0
#endif
#ifndef EW_VEC
#define EW_VEC 8
#endif
#ifndef EW_THREADS
#define EW_THREADS 256
#endif
#ifndef EW_ITEMS
#define EW_ITEMS 2
#endif

static_assert(EW_OP >= 0 && EW_OP <= 5, "EW_OP is 0 to 5");
static_assert(EW_BINOP == 0 || EW_BINOP == 1, "EW_BINOP is 0 (add) or 1 (mul)");
static_assert(EW_VEC == 1 || EW_VEC == 2 || EW_VEC == 4 || EW_VEC == 8, "EW_VEC is 1, 2, 4 or 8");
static_assert(EW_THREADS >= 32 && EW_THREADS <= 1024 && EW_THREADS % 32 == 0, "EW_THREADS: 32 to 1024, warps");
static_assert(EW_ITEMS >= 1 && EW_ITEMS <= 8, "EW_ITEMS is 1 to 8");

#include "qd_bf16.cuh"

/* ---- the kernels -------------------------------------------------------------------------------------------- */

__device__ __forceinline__ float ew_op(float v, float factor) {
#if EW_OP == 0
  return v;
#elif EW_OP == 1
  return v / (1.0f + expf(-v));
#elif EW_OP == 2
  return 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
#elif EW_OP == 3
  return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
#elif EW_OP == 4
  return v / (1.0f + expf(-1.702f * v));
#else
  return v * factor;
#endif
}

/* EW_VEC fp32 through the widest access that alignment allows: 16-byte loads for 4 or 8 elements. */
__device__ __forceinline__ void ew_load_f32(const float* p, float* f) {
  if constexpr (EW_VEC >= 4) {
#pragma unroll
    for (int i = 0; i < EW_VEC; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      f[i] = v.x, f[i + 1] = v.y, f[i + 2] = v.z, f[i + 3] = v.w;
    }
  } else if constexpr (EW_VEC == 2) {
    const float2 v = *reinterpret_cast<const float2*>(p);
    f[0] = v.x, f[1] = v.y;
  } else {
    f[0] = *p;
  }
}

__device__ __forceinline__ void ew_store_f32(float* p, const float* f) {
  if constexpr (EW_VEC >= 4) {
#pragma unroll
    for (int i = 0; i < EW_VEC; i += 4) *reinterpret_cast<float4*>(p + i) = make_float4(f[i], f[i + 1], f[i + 2], f[i + 3]);
  } else if constexpr (EW_VEC == 2) {
    *reinterpret_cast<float2*>(p) = make_float2(f[0], f[1]);
  } else {
    *p = f[0];
  }
}

/* The first vector index of this thread; vector k of the thread is first + k * EW_THREADS. */
__device__ __forceinline__ long long ew_first(void) {
  return (long long)blockIdx.x * (EW_THREADS * EW_ITEMS) + threadIdx.x;
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    qd_ew_unary(qd_bf16* y, const qd_bf16* x, long long n, float factor) {
  const long long nvec = n / EW_VEC;
  const long long first = ew_first();
  qd_raw<EW_VEC> r[EW_ITEMS];
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) r[k] = qd_load<EW_VEC>(x + i * EW_VEC);
  }
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      float o[EW_VEC];
#pragma unroll
      for (int e = 0; e < EW_VEC; e++) o[e] = ew_op(qd_get<EW_VEC>(r[k], e), factor);
      qd_store<EW_VEC>(y + i * EW_VEC, o);
    }
  }
  if (EW_VEC > 1 && blockIdx.x == 0) {
    const long long e = nvec * EW_VEC + threadIdx.x;
    if (e < n) y[e] = qd_f32_to_bf16(ew_op(__uint_as_float((unsigned int)x[e] << 16), factor));
  }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    qd_ew_binary(qd_bf16* y, const qd_bf16* a, const qd_bf16* b, long long b_stride, int rows, int tokens,
                 int cols) {
  const long long per_row = cols / EW_VEC;
  const long long nvec = (long long)rows * per_row;
  const long long first = ew_first();
  qd_raw<EW_VEC> ra[EW_ITEMS], rb[EW_ITEMS];
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      const long long row = i / per_row;
      const long long c = (i - row * per_row) * EW_VEC;
      ra[k] = qd_load<EW_VEC>(a + i * EW_VEC);
      rb[k] = qd_load<EW_VEC>(b + (row / tokens) * b_stride + c);
    }
  }
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      float o[EW_VEC];
#pragma unroll
      for (int e = 0; e < EW_VEC; e++) {
#if EW_BINOP == 0
        o[e] = qd_get<EW_VEC>(ra[k], e) + qd_get<EW_VEC>(rb[k], e);
#else
        o[e] = qd_get<EW_VEC>(ra[k], e) * qd_get<EW_VEC>(rb[k], e);
#endif
      }
      qd_store<EW_VEC>(y + i * EW_VEC, o);
    }
  }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS)
    qd_ew_bias_act(qd_bf16* y, const qd_bf16* x, const qd_bf16* bias, int rows, int cols, float factor) {
  const long long per_row = cols / EW_VEC;
  const long long nvec = (long long)rows * per_row;
  const long long first = ew_first();
  qd_raw<EW_VEC> rx[EW_ITEMS], rb[EW_ITEMS];
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      rx[k] = qd_load<EW_VEC>(x + i * EW_VEC);
      rb[k] = qd_load<EW_VEC>(bias + (i % per_row) * EW_VEC);
    }
  }
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      float o[EW_VEC];
#pragma unroll
      for (int e = 0; e < EW_VEC; e++) o[e] = ew_op(qd_get<EW_VEC>(rx[k], e) + qd_get<EW_VEC>(rb[k], e), factor);
      qd_store<EW_VEC>(y + i * EW_VEC, o);
    }
  }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) qd_ew_f32_to_bf16(qd_bf16* y, const float* x, long long n) {
  const long long nvec = n / EW_VEC;
  const long long first = ew_first();
  float f[EW_ITEMS][EW_VEC];
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) ew_load_f32(x + i * EW_VEC, f[k]);
  }
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) qd_store<EW_VEC>(y + i * EW_VEC, f[k]);
  }
  if (EW_VEC > 1 && blockIdx.x == 0) {
    const long long e = nvec * EW_VEC + threadIdx.x;
    if (e < n) y[e] = qd_f32_to_bf16(x[e]);
  }
}

extern "C" __global__ void __launch_bounds__(EW_THREADS) qd_ew_bf16_to_f32(float* y, const qd_bf16* x, long long n) {
  const long long nvec = n / EW_VEC;
  const long long first = ew_first();
  qd_raw<EW_VEC> r[EW_ITEMS];
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) r[k] = qd_load<EW_VEC>(x + i * EW_VEC);
  }
#pragma unroll
  for (int k = 0; k < EW_ITEMS; k++) {
    const long long i = first + k * EW_THREADS;
    if (i < nvec) {
      float f[EW_VEC];
#pragma unroll
      for (int e = 0; e < EW_VEC; e++) f[e] = qd_get<EW_VEC>(r[k], e);
      ew_store_f32(y + i * EW_VEC, f);
    }
  }
  if (EW_VEC > 1 && blockIdx.x == 0) {
    const long long e = nvec * EW_VEC + threadIdx.x;
    if (e < n) y[e] = __uint_as_float((unsigned int)x[e] << 16);
  }
}
