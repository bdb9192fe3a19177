/* qd kernel template: NF4 dequantization, bitsandbytes format -> bf16 weight, bit-exact with bitsandbytes'
 * dequantize_4bit (quant_type "nf4") and with qd_ref_nf4_dequantize + round-to-nearest-even.
 *
 * Math, for element e of n (the weight [N, K] row-major, read in memory order, e = row * K + col):
 *   byte   = q[e / 2];  nibble = e even ? byte >> 4 : byte & 15          (FIRST element in the HIGH nibble)
 *   blk    = e >> block_shift                                              (blocksize = 2^block_shift, 32..4096)
 *   absmax = absmax[blk]                                                   (NF4_DOUBLE_QUANT = 0), or
 *          = fl(fl(nested_code[absmax_q[blk]] * nested_absmax[blk / 256]) + offset)   (NF4_DOUBLE_QUANT = 1)
 *   y[e]   = bf16_rn(fl(NF4[nibble] * absmax))
 * fl() is one fp32 rounding: the products and the sum are written with __fmul_rn / __fadd_rn so that they are
 * never contracted into an FMA, which bitsandbytes (two separate torch/CUDA ops) does not do either.
 * NF4 is the 16-value NormalFloat code book below (bitsandbytes' dDequantizeNF4).
 *
 * Layouts: q packed codes, ceil(n / 2) bytes; absmax fp32 [ceil(n / blocksize)]; with double quantization
 * absmax_q uint8 [ceil(n / blocksize)], nested_absmax fp32 [ceil(blocks / 256)], nested_code fp32 [256] (the
 * signed dynamic map) and the scalar offset. y bf16 [n]. Pointers a variant does not read may be NULL.
 *
 * Kernel:
 *   qd_nf4_dequant(y, q, absmax, absmax_q, nested_absmax, nested_code, float offset, long long n, int block_shift)
 * Launch: NF4_THREADS threads, max(1, ceil(units / (NF4_THREADS * NF4_UNROLL))) blocks, units = n / (2 *
 * NF4_LOAD). A unit is NF4_LOAD bytes of codes (2 * NF4_LOAD elements, always inside one absmax block since
 * blocksize >= 32), read with one NF4_LOAD-byte load and written as NF4_LOAD / 4 16-byte stores; each thread
 * handles NF4_UNROLL units NF4_THREADS apart, all loads first. NF4_LOAD = 4 makes each warp-wide store one
 * contiguous 512-byte run; 16 makes the loads 16 bytes wide. The code book sits in shared memory: 16 floats in
 * 16 different banks, so any pattern of lookups is conflict-free. The n % (2 * NF4_LOAD) tail elements are done
 * one by one by block 0. Requirements (checked by the launcher): q aligned to NF4_LOAD bytes, y to 16 bytes,
 * absmax / nested arrays to 4; 5 <= block_shift <= 12.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param select  NF4_DOUBLE_QUANT = 0   {0 1}                   absmax stored as uint8 codes + nested absmax
 *   qd:param tunable NF4_THREADS      = 256 {64 128 256 512 1024}  threads per block
 *   qd:param tunable NF4_LOAD         = 4   {4 8 16}               bytes of codes per load (8 .. 32 elements)
 *   qd:param tunable NF4_UNROLL       = 4   {1 2 4 8}              units per thread
 * bf16 conversions are done on the bits (see layernorm_modulate.cu); no toolkit header is needed.
 */

#ifndef NF4_DOUBLE_QUANT
#define NF4_DOUBLE_QUANT 0
#endif
#ifndef NF4_THREADS
#define NF4_THREADS 256
#endif
#ifndef NF4_LOAD
#define NF4_LOAD 4
#endif
#ifndef NF4_UNROLL
#define NF4_UNROLL 4
#endif

static_assert(NF4_DOUBLE_QUANT == 0 || NF4_DOUBLE_QUANT == 1, "NF4_DOUBLE_QUANT is 0 or 1");
static_assert(NF4_THREADS >= 32 && NF4_THREADS <= 1024 && NF4_THREADS % 32 == 0, "NF4_THREADS: 32..1024, warps");
static_assert(NF4_LOAD == 4 || NF4_LOAD == 8 || NF4_LOAD == 16, "NF4_LOAD is 4, 8 or 16 bytes");
static_assert(NF4_UNROLL >= 1 && NF4_UNROLL <= 8, "NF4_UNROLL is 1 to 8");

#include "qd_bf16.cuh"

/* ---- the kernel --------------------------------------------------------------------------------------------- */

/* bitsandbytes' NormalFloat-4 code book, index = 4-bit code. */
__constant__ float qd_nf4_code_book[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

#define NF4_WORDS (NF4_LOAD / 4)     /* 32-bit words per unit; each becomes one 16-byte store */
#define NF4_UNIT_ELEMS (NF4_LOAD * 2)

struct nf4_unit {
  unsigned int w[NF4_WORDS];
};

__device__ __forceinline__ nf4_unit nf4_load(const unsigned char* q, long long unit) {
  nf4_unit u;
  if constexpr (NF4_LOAD == 16) {
    const uint4 v = reinterpret_cast<const uint4*>(q)[unit];
    u.w[0] = v.x, u.w[1] = v.y, u.w[2] = v.z, u.w[3] = v.w;
  } else if constexpr (NF4_LOAD == 8) {
    const uint2 v = reinterpret_cast<const uint2*>(q)[unit];
    u.w[0] = v.x, u.w[1] = v.y;
  } else {
    u.w[0] = reinterpret_cast<const unsigned int*>(q)[unit];
  }
  return u;
}

/* The scale of absmax block blk (see the math above). */
__device__ __forceinline__ float nf4_absmax(long long blk, const float* absmax, const unsigned char* absmax_q,
                                            const float* nested_absmax, const float* s_code2, float offset) {
#if NF4_DOUBLE_QUANT
  return __fadd_rn(__fmul_rn(s_code2[absmax_q[blk]], nested_absmax[blk >> 8]), offset);
#else
  return absmax[blk];
#endif
}

extern "C" __global__ void __launch_bounds__(NF4_THREADS)
    qd_nf4_dequant(qd_bf16* y, const unsigned char* q, const float* absmax, const unsigned char* absmax_q,
                   const float* nested_absmax, const float* nested_code, float offset, long long n,
                   int block_shift) {
  __shared__ float s_code[16];
#if NF4_DOUBLE_QUANT
  __shared__ float s_code2[256];
  for (int i = threadIdx.x; i < 256; i += NF4_THREADS) s_code2[i] = nested_code[i];
#else
  const float* s_code2 = nullptr;
#endif
  if (threadIdx.x < 16) s_code[threadIdx.x] = qd_nf4_code_book[threadIdx.x];
  __syncthreads();

  const long long units = n / NF4_UNIT_ELEMS;
  const long long first = (long long)blockIdx.x * (NF4_THREADS * NF4_UNROLL) + threadIdx.x;
  nf4_unit raw[NF4_UNROLL];
  float scale[NF4_UNROLL];
#pragma unroll
  for (int k = 0; k < NF4_UNROLL; k++) {
    const long long u = first + (long long)k * NF4_THREADS;
    if (u < units) raw[k] = nf4_load(q, u);
  }
#pragma unroll
  for (int k = 0; k < NF4_UNROLL; k++) {
    const long long u = first + (long long)k * NF4_THREADS;
    if (u < units)
      scale[k] = nf4_absmax((u * NF4_UNIT_ELEMS) >> block_shift, absmax, absmax_q, nested_absmax, s_code2, offset);
  }
#pragma unroll
  for (int k = 0; k < NF4_UNROLL; k++) {
    const long long u = first + (long long)k * NF4_THREADS;
    if (u < units) {
      uint4* out = reinterpret_cast<uint4*>(y + u * NF4_UNIT_ELEMS);
#pragma unroll
      for (int wi = 0; wi < NF4_WORDS; wi++) {
        const unsigned int word = raw[k].w[wi]; /* byte j of the word is the j-th byte in memory */
        unsigned int o[4];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          const unsigned int byte = (word >> (8 * j)) & 0xffu;
          /* element 2j (high nibble) goes to the low half of the output word: it is first in memory. */
          o[j] = qd_pack_bf16x2(__fmul_rn(s_code[byte >> 4], scale[k]), __fmul_rn(s_code[byte & 15u], scale[k]));
        }
        out[wi] = make_uint4(o[0], o[1], o[2], o[3]);
      }
    }
  }
  if (blockIdx.x == 0) { /* the tail: fewer than NF4_UNIT_ELEMS elements */
    for (long long e = units * NF4_UNIT_ELEMS + threadIdx.x; e < n; e += NF4_THREADS) {
      const unsigned int byte = q[e >> 1];
      const unsigned int nib = (e & 1) ? (byte & 15u) : (byte >> 4);
      const float a = nf4_absmax(e >> block_shift, absmax, absmax_q, nested_absmax, s_code2, offset);
      y[e] = qd_f32_to_bf16(__fmul_rn(s_code[nib], a));
    }
  }
}
