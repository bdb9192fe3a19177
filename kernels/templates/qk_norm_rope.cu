/* qd kernel template: per-head RMS norm of q or k, then the rotary embedding (RoPE), bf16 in and out, fp32 math.
 *
 * Math, per batch b, token s, head h (D = QKR_HEAD_DIM, x_h = x[b, s, h*D : (h+1)*D]):
 *   inv  = rsqrt(sum_d x_h[d]^2 / D + eps)
 *   n[d] = x_h[d] * inv * w[d]                      (w may be NULL: weight 1)          = qd_ref_rms_norm
 *   for each interleaved pair (2i, 2i+1), with c = cos[t], sn = sin[t], t = rope_offset + s:
 *     y[2i]   = n[2i]   * c[2i]   - n[2i+1] * sn[2i]
 *     y[2i+1] = n[2i+1] * c[2i+1] + n[2i]   * sn[2i+1]                                 = qd_ref_rope
 *   (freqs may be NULL: no rotation, y = n.) fp32 throughout; y rounded to bf16 once.
 *
 * Layouts (elements): x and y are [B, S, H*D] token-major with heads interleaved in the channels, each with its
 * own row (token) stride and batch stride: x can be a column slice of a fused QKV projection (row stride 3*H*D),
 * and y can be rows of a longer sequence, e.g. the image part of FLUX's joint [txt; img] q, written in place of
 * a concat. y may be x (in place). w is [D] bf16. freqs is the fp32 table qd_ref_rope_freqs writes: [2, T, D],
 * cos rows first, then sin rows at freqs + T*D (T = rope_tokens); token s of x uses row rope_offset + s.
 *
 * Kernel:
 *   qd_qk_norm_rope(y, x, w, freqs, long long x_row_stride, long long x_batch_stride, long long y_row_stride,
 *                   long long y_batch_stride, int batch, int tokens, int heads, int rope_tokens, int rope_offset,
 *                   float eps)
 * Launch: QKR_BLOCK threads, ceil(batch * tokens * heads / heads_per_block) blocks, where
 *   vectors per head   NV    = D / QKR_VEC
 *   lanes per head     LANES = min(32, next power of two >= NV)   (consecutive threads; each holds ceil(NV/LANES)
 *                                                                  vectors, lanes past NV idle)
 *   heads per block          = QKR_BLOCK / LANES
 * The sum of squares is a shuffle reduction over the head's lanes. Requirements (checked by the launcher):
 * x, y, w aligned to QKR_VEC * 2 bytes, strides multiples of QKR_VEC, freqs aligned to 4 * min(QKR_VEC, 4)
 * bytes; batch * tokens * heads < 2^31; rope_offset + tokens <= rope_tokens.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param shape   QKR_HEAD_DIM = 128 {8 16 64 96 128 256}  head size D: even, a multiple of QKR_VEC
 *   qd:param tunable QKR_VEC      = 8   {2 4 8}               bf16 per load (pairs never straddle two loads)
 *   qd:param tunable QKR_BLOCK    = 128 {64 128 256 512}      threads per block
 * bf16 conversions are done on the bits (see layernorm_modulate.cu); no toolkit header is needed.
 */

#ifndef QKR_HEAD_DIM
#define QKR_HEAD_DIM 128
#endif
#ifndef QKR_VEC
#define QKR_VEC 8
#endif
#ifndef QKR_BLOCK
#define QKR_BLOCK 128
#endif

static_assert(QKR_VEC == 2 || QKR_VEC == 4 || QKR_VEC == 8, "QKR_VEC is 2, 4 or 8");
static_assert(QKR_HEAD_DIM >= 2 && QKR_HEAD_DIM <= 1024 && QKR_HEAD_DIM % QKR_VEC == 0,
              "QKR_HEAD_DIM must be a multiple of QKR_VEC (and so even), at most 1024");
static_assert(QKR_BLOCK >= 32 && QKR_BLOCK <= 1024 && QKR_BLOCK % 32 == 0, "QKR_BLOCK is a multiple of 32");

#include "qd_bf16.cuh"

/* ---- the kernel --------------------------------------------------------------------------------------------- */

#define QKR_NV (QKR_HEAD_DIM / QKR_VEC)
#define QKR_LANES (QKR_NV >= 32 ? 32 : QKR_NV > 8 ? 16 : QKR_NV > 4 ? 8 : QKR_NV > 2 ? 4 : QKR_NV > 1 ? 2 : 1)
#define QKR_ITEMS ((QKR_NV + QKR_LANES - 1) / QKR_LANES)
#define QKR_HEADS_PER_BLOCK (QKR_BLOCK / QKR_LANES)

/* VEC fp32 of a rope table: 16-byte loads when VEC >= 4, else one 8-byte load. */
__device__ __forceinline__ void qkr_load_f32(const float* p, float* f) {
#pragma unroll
  for (int i = 0; i < QKR_VEC; i += (QKR_VEC >= 4 ? 4 : 2)) {
    if constexpr (QKR_VEC >= 4) {
      const float4 v = *reinterpret_cast<const float4*>(p + i);
      f[i] = v.x, f[i + 1] = v.y, f[i + 2] = v.z, f[i + 3] = v.w;
    } else {
      const float2 v = *reinterpret_cast<const float2*>(p + i);
      f[i] = v.x, f[i + 1] = v.y;
    }
  }
}

extern "C" __global__ void __launch_bounds__(QKR_BLOCK)
    qd_qk_norm_rope(qd_bf16* y, const qd_bf16* x, const qd_bf16* w, const float* freqs, long long x_row_stride,
                    long long x_batch_stride, long long y_row_stride, long long y_batch_stride, int batch,
                    int tokens, int heads, int rope_tokens, int rope_offset, float eps) {
  const int lane = threadIdx.x % QKR_LANES;
  const unsigned int head = blockIdx.x * QKR_HEADS_PER_BLOCK + threadIdx.x / QKR_LANES;
  const unsigned int total = (unsigned int)batch * (unsigned int)tokens * (unsigned int)heads;
  /* Threads past the last head still join the shuffles (full warps); they load and store nothing. */
  const bool active = head < total;
  const unsigned int hd = active ? head : 0;
  const unsigned int h = hd % (unsigned int)heads;
  const unsigned int bs = hd / (unsigned int)heads;
  const unsigned int s = bs % (unsigned int)tokens;
  const unsigned int b = bs / (unsigned int)tokens;
  const qd_bf16* xh = x + (long long)b * x_batch_stride + (long long)s * x_row_stride + (long long)h * QKR_HEAD_DIM;

  qd_raw<QKR_VEC> v[QKR_ITEMS];
  float ss = 0.0f;
#pragma unroll
  for (int j = 0; j < QKR_ITEMS; j++) {
    const int vi = lane + j * QKR_LANES;
    if (active && vi < QKR_NV) {
      v[j] = qd_load<QKR_VEC>(xh + vi * QKR_VEC);
#pragma unroll
      for (int i = 0; i < QKR_VEC; i++) {
        const float f = qd_get<QKR_VEC>(v[j], i);
        ss += f * f;
      }
    }
  }
  /* Head groups are aligned runs of QKR_LANES lanes inside a warp, and every lane of the (full) warp is here. */
#pragma unroll
  for (int o = QKR_LANES / 2; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
  if (!active) return;
  const float inv = rsqrtf(ss / (float)QKR_HEAD_DIM + eps);

  qd_bf16* yh = y + (long long)b * y_batch_stride + (long long)s * y_row_stride + (long long)h * QKR_HEAD_DIM;
  const float* cos_row = freqs ? freqs + (long long)(rope_offset + (int)s) * QKR_HEAD_DIM : nullptr;
  const float* sin_row = freqs ? cos_row + (long long)rope_tokens * QKR_HEAD_DIM : nullptr;
#pragma unroll
  for (int j = 0; j < QKR_ITEMS; j++) {
    const int vi = lane + j * QKR_LANES;
    if (vi >= QKR_NV) break;
    float n[QKR_VEC];
#pragma unroll
    for (int i = 0; i < QKR_VEC; i++) n[i] = qd_get<QKR_VEC>(v[j], i) * inv;
    if (w) {
      const qd_raw<QKR_VEC> wv = qd_load<QKR_VEC>(w + vi * QKR_VEC);
#pragma unroll
      for (int i = 0; i < QKR_VEC; i++) n[i] *= qd_get<QKR_VEC>(wv, i);
    }
    float o[QKR_VEC];
    if (freqs) {
      float c[QKR_VEC], sn[QKR_VEC];
      qkr_load_f32(cos_row + vi * QKR_VEC, c);
      qkr_load_f32(sin_row + vi * QKR_VEC, sn);
#pragma unroll
      for (int i = 0; i < QKR_VEC; i += 2) {
        o[i] = n[i] * c[i] - n[i + 1] * sn[i];
        o[i + 1] = n[i + 1] * c[i + 1] + n[i] * sn[i + 1];
      }
    } else {
#pragma unroll
      for (int i = 0; i < QKR_VEC; i++) o[i] = n[i];
    }
    qd_store<QKR_VEC>(yh + vi * QKR_VEC, o);
  }
}
