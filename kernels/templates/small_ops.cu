/* qd kernel template: the small ops of the FLUX transformer: the sinusoidal timestep embedding, the rotary
 * frequency tables, SiLU of [B, C] vectors, and row-wise copies that implement slice and concat along any axis.
 *
 * Math:
 *   qd_timestep_embedding  t [B] fp32 -> y [B, dim] bf16, diffusers' get_timestep_embedding in its float32 order
 *                          of operations (qd_ref_timestep_embedding), half = dim / 2, i < half:
 *                            e = (neg_log_max_period * i) / (half - shift);  arg = (t[b] * input_scale) * exp(e)
 *                            y[b, i] = sin(arg), y[b, half + i] = cos(arg)   (swapped when flip_sin_to_cos)
 *                          neg_log_max_period = -logf(max_period) is computed by the host, as the reference
 *                          does, so both start from the same bits; an odd dim gets a zero last column (diffusers
 *                          pads). Accurate sinf/cosf/expf, IEEE division: results differ from the CPU by an ulp
 *                          or two of fp32 at most, far below bf16's resolution.
 *   qd_rope_freqs          ids [T, n_axes] fp32 -> y [2, T, D] fp32, D = sum(axes): for each axis a and pair p <
 *                          axes[a] / 2: angle = ids[t, a] * (1 / theta^(2p / axes[a])), in float64 as diffusers
 *                          (FluxPosEmbed) computes it; cos into y[0, t, col..col+1], sin into y[1, t, col..col+1]
 *                          (qd_ref_rope_freqs). The fp32 results can differ from the CPU's in the last bit where
 *                          the device's float64 pow/sin/cos (2 ulp) and the C library's round differently.
 *   qd_silu_vec            y[i] = x[i] / (1 + exp(-x[i])), bf16 [n] (the adaLN input, silu(temb), [B, C])
 *   qd_copy_rows           for each part p (blockIdx.y) and row r < rows:
 *                            dst[r * dst_row_bytes + dst_col[p] .. + row_bytes[p]) = src[p][r * src_row_bytes[p] ..]
 *                          slice along an axis: one part (rows = product of the dims before the axis);
 *                          concat of up to 8 inputs along an axis: one part per input, dst_col the running sum.
 *                          Bytes, any dtype. Each part is copied in units of 2^vec_shift[p] bytes (16 when every
 *                          address, stride and length of the part is a multiple of 16), chosen by the launcher.
 *
 * Kernels and launch (SMALL_THREADS threads per block everywhere):
 *   qd_timestep_embedding(y, t, int batch, int dim, int flip_sin_to_cos, float shift, float input_scale,
 *                         float neg_log_max_period)            blocks: ceil(batch * max(half, 1) / SMALL_THREADS)
 *   qd_rope_freqs(y, ids, int tokens, qd_rope_axes axes, double theta)
 *                                                              blocks: ceil(tokens * D / 2 / SMALL_THREADS)
 *   qd_silu_vec(y, x, long long n)                             blocks: ceil(n / SMALL_THREADS)
 *   qd_copy_rows(dst, long long dst_row_bytes, long long rows, qd_copy_parts parts)
 *                 grid (x, parts.count): a grid-stride loop over each part's rows * row_bytes / unit units,
 *                 SMALL_UNROLL units per thread per step, loads first.
 * qd_rope_axes and qd_copy_parts are passed by value; runtime/cuda/kernels.c declares the same structs.
 * Requirements (checked by the launcher): rope axes even, at most 8 of them; y of rope_freqs 8-byte aligned;
 * copy parts at most 8, addresses and sizes as their vec_shift says.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param tunable SMALL_THREADS = 256 {64 128 256 512 1024}  threads per block
 *   qd:param tunable SMALL_UNROLL  = 2   {1 2 4}                copy units per thread per step
 * bf16 conversions are done on the bits (see layernorm_modulate.cu); no toolkit header is needed.
 */

#ifndef SMALL_THREADS
#define SMALL_THREADS 256
#endif
#ifndef SMALL_UNROLL
#define SMALL_UNROLL 2
#endif

static_assert(SMALL_THREADS >= 32 && SMALL_THREADS <= 1024 && SMALL_THREADS % 32 == 0, "SMALL_THREADS: warps");
static_assert(SMALL_UNROLL >= 1 && SMALL_UNROLL <= 8, "SMALL_UNROLL is 1 to 8");

#include "qd_bf16.cuh"

/* ---- the kernels -------------------------------------------------------------------------------------------- */

extern "C" __global__ void __launch_bounds__(SMALL_THREADS)
    qd_timestep_embedding(qd_bf16* y, const float* t, int batch, int dim, int flip_sin_to_cos, float shift,
                          float input_scale, float neg_log_max_period) {
  const int half = dim / 2;
  const int per_batch = half > 0 ? half : 1;
  const long long idx = (long long)blockIdx.x * SMALL_THREADS + threadIdx.x;
  if (idx >= (long long)batch * per_batch) return;
  const int b = (int)(idx / per_batch);
  const int i = (int)(idx % per_batch);
  qd_bf16* yb = y + (long long)b * dim;
  if ((dim & 1) && i == 0) yb[dim - 1] = 0; /* bf16 +0 */
  if (i >= half) return;
  /* Each step as diffusers orders it; IEEE division and accurate expf/sinf/cosf (no fast-math). */
  float exponent = neg_log_max_period * (float)i;
  exponent = exponent / ((float)half - shift);
  const float tb = t[b] * input_scale;
  const float arg = tb * expf(exponent);
  const float s = sinf(arg), c = cosf(arg);
  yb[i] = qd_f32_to_bf16(flip_sin_to_cos ? c : s);
  yb[half + i] = qd_f32_to_bf16(flip_sin_to_cos ? s : c);
}

struct qd_rope_axes {
  int count;   /* 1..8 */
  int dims[8]; /* each even */
};

extern "C" __global__ void __launch_bounds__(SMALL_THREADS)
    qd_rope_freqs(float* y, const float* ids, int tokens, qd_rope_axes axes, double theta) {
  int total = 0;
  for (int a = 0; a < axes.count; a++) total += axes.dims[a];
  const int pairs = total / 2;
  const long long idx = (long long)blockIdx.x * SMALL_THREADS + threadIdx.x;
  if (idx >= (long long)tokens * pairs) return;
  const int s = (int)(idx / pairs);
  int p = (int)(idx % pairs);
  int a = 0, col = 0;
  while (p >= axes.dims[a] / 2) { /* find the axis of pair p; total pairs bound the walk */
    p -= axes.dims[a] / 2;
    col += axes.dims[a];
    a++;
  }
  col += 2 * p;
  const double pos = (double)ids[(long long)s * axes.count + a];
  const double freq = 1.0 / pow(theta, (double)(2 * p) / (double)axes.dims[a]);
  const double ang = pos * freq;
  const float c = (float)cos(ang), sn = (float)sin(ang);
  float* row = y + (long long)s * total + col;
  *reinterpret_cast<float2*>(row) = make_float2(c, c);
  *reinterpret_cast<float2*>(row + (long long)tokens * total) = make_float2(sn, sn);
}

extern "C" __global__ void __launch_bounds__(SMALL_THREADS) qd_silu_vec(qd_bf16* y, const qd_bf16* x, long long n) {
  const long long i = (long long)blockIdx.x * SMALL_THREADS + threadIdx.x;
  if (i >= n) return;
  const float v = __uint_as_float((unsigned int)x[i] << 16);
  y[i] = qd_f32_to_bf16(v / (1.0f + expf(-v)));
}

struct qd_copy_part {
  const unsigned char* src;
  long long src_row_bytes; /* distance between rows of src */
  long long dst_col;       /* byte offset of this part inside a dst row */
  long long row_bytes;     /* bytes copied per row */
  int vec_shift;           /* unit = 1 << vec_shift bytes, 0..4 */
  int pad_;
};

struct qd_copy_parts {
  int count; /* 1..8 = gridDim.y */
  int pad_;
  qd_copy_part part[8];
};

template <typename T>
__device__ __forceinline__ void copy_part(unsigned char* dst, long long dst_row_bytes, long long rows,
                                          const qd_copy_part& p) {
  const long long per_row = p.row_bytes / (long long)sizeof(T);
  const long long total = rows * per_row;
  const long long step = (long long)gridDim.x * SMALL_THREADS * SMALL_UNROLL;
  for (long long first = (long long)blockIdx.x * SMALL_THREADS * SMALL_UNROLL + threadIdx.x; first < total;
       first += step) {
    T v[SMALL_UNROLL];
#pragma unroll
    for (int k = 0; k < SMALL_UNROLL; k++) {
      const long long i = first + (long long)k * SMALL_THREADS;
      if (i < total) {
        const long long r = i / per_row, c = i - r * per_row;
        v[k] = *reinterpret_cast<const T*>(p.src + r * p.src_row_bytes + c * (long long)sizeof(T));
      }
    }
#pragma unroll
    for (int k = 0; k < SMALL_UNROLL; k++) {
      const long long i = first + (long long)k * SMALL_THREADS;
      if (i < total) {
        const long long r = i / per_row, c = i - r * per_row;
        *reinterpret_cast<T*>(dst + r * dst_row_bytes + p.dst_col + c * (long long)sizeof(T)) = v[k];
      }
    }
  }
}

extern "C" __global__ void __launch_bounds__(SMALL_THREADS)
    qd_copy_rows(unsigned char* dst, long long dst_row_bytes, long long rows, qd_copy_parts parts) {
  if ((int)blockIdx.y >= parts.count) return;
  const qd_copy_part& p = parts.part[blockIdx.y];
  switch (p.vec_shift) {
    case 4: copy_part<uint4>(dst, dst_row_bytes, rows, p); break;
    case 3: copy_part<uint2>(dst, dst_row_bytes, rows, p); break;
    case 2: copy_part<unsigned int>(dst, dst_row_bytes, rows, p); break;
    case 1: copy_part<unsigned short>(dst, dst_row_bytes, rows, p); break;
    default: copy_part<unsigned char>(dst, dst_row_bytes, rows, p); break;
  }
}
