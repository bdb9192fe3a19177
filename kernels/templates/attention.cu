/* qd kernel template: attention forward, FlashAttention-2 style, on mma.sync m16n8k16 bf16 tensor cores (sm_80+).
 *
 * Math, per batch b, head h and query row i:
 *   s[j] = scale * <q[b, i, h, :], k[b, j, h, :]> (+ bias[b|0, h|0, i, j])      for keys j in [0, Sk)
 *   s[j] = -inf where CAUSAL and j > i  (top-left aligned: query i sees keys 0..i, as qd_ref_attention does)
 *   o[b, i, h, :] = sum_j softmax(s)[j] * v[b, j, h, :]
 * bf16 inputs and output, fp32 scores, softmax statistics and accumulators.
 *
 * Layouts (elements, not bytes). Tensors are token-major with heads interleaved in the channels, exactly as the
 * linear layers produce them: q [B, Sq, H*D], k [B, Sk, H*D], v [B, Sk, H*D], o [B, Sq, H*D]. Each tensor has
 * its own batch stride and row (token) stride, so q, k and v may be column slices of one fused QKV activation
 * ([B, S, 3*H*D] with row stride 3*H*D). Head h lives in channels [h*D, (h+1)*D). Requirements (checked by the
 * launcher, runtime/cuda/attention.c): base pointers 16-byte aligned, row and batch strides multiples of 8.
 * bias is fp32 [Bb, Hb, Sq, Sk] addressed through (batch stride, head stride, row stride); a stride of 0
 * broadcasts (Bb = 1 or Hb = 1).
 *
 * Tiling. One CTA computes BLOCK_M query rows of one (batch, head): grid = (ceil(Sq / BLOCK_M), H, B); the
 * m-block index runs fastest so that the CTAs resident at one time share the same head's K and V in L2. Each of
 * the NUM_WARPS warps owns WARP_M = BLOCK_M / NUM_WARPS consecutive rows (16 or 32: one or two m16 fragments).
 * K and V are streamed through shared memory in tiles of BLOCK_N keys with cp.async, STAGES tiles deep (a ring:
 * while tile j is consumed, tiles j+1 .. j+STAGES-1 are in flight). Per tile and warp:
 *   S = Q K^T          mma m16n8k16; Q fragments by ldmatrix (kept in registers when Q_IN_REGS), K by ldmatrix
 *   online softmax     row max over the quad (shfl), p = exp2(s * scale*log2(e) - m): the scale is folded into
 *                      one FFMA and ex2.approx does the exponential; O and the running sum are rescaled by
 *                      exp2(m_old - m_new) only when a tile raises the maximum
 *   O += P V           P is re-packed from the S accumulators into A fragments in registers (the m16n8k16 C
 *                      layout of two adjacent n8 tiles is the A layout of one k16 step), V by ldmatrix.trans
 * Shared memory rows are D*2 bytes; the 16-byte chunk c of row r is stored at chunk c ^ (r & 7), so the eight
 * row addresses of each ldmatrix 8x8 matrix (same logical chunk, eight consecutive rows) fall in eight different
 * bank groups, and the 16-byte cp.async writes stay whole. Keys past Sk are zero-filled by cp.async (src-size
 * 0) and masked to -inf, so a tail tile needs no other care; query rows past Sq are computed and not stored.
 * The output goes through shared memory (each warp reuses its own rows of the Q tile) so that global stores
 * are whole 16-byte chunks of a row.
 *
 * Parameters (preprocessor defines; the launcher passes them, runtime/cuda/attention.h). The defaults are the
 * fastest head-dim-128 variant measured on an H200 (2026-11-29, docs/attention.md: 283 TFLOP/s at B=1, H=24,
 * S=4608; 248 at S=1280); GPUs with 99 KiB of shared memory per block (sm_86, sm_89) need STAGES=2.
 *   HEAD_DIM    64, 128, 192 or 256 (all four tested)                                       default 128
 *   BLOCK_M     queries per CTA: NUM_WARPS * 16 or NUM_WARPS * 32                           default 64
 *   NUM_WARPS   4 or 8                                                                      default 4
 *   BLOCK_N     keys per tile: 32, 64 or 128                                                default 64
 *   STAGES      K/V tiles in shared memory: 2, 3 or 4                                       default 3
 *   Q_IN_REGS   1: Q fragments loaded once into registers; 0: re-read from shared memory    default 1
 *   MIN_BLOCKS  the second __launch_bounds__ argument (CTAs per SM the register cap aims at) default 2
 *   CAUSAL      0 or 1                                                                      default 0
 *   HAS_BIAS    0 or 1: add the fp32 bias to the scaled scores                              default 0
 * Not every combination fits the 255-register limit without spilling: tests/test_attention_templates.c
 * compiles the listed variants (tests/gpu/attention_variants.h) and rejects any that use local memory.
 * Dynamic shared memory: (BLOCK_M + 2 * STAGES * BLOCK_N) * HEAD_DIM * 2 bytes.
 * Kernel: qd_attention_fwd(qd_attention_params_t) with grid (ceil(Sq/BLOCK_M), H, B), NUM_WARPS*32 threads.
 */

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_M
#define BLOCK_M 64
#endif
#ifndef NUM_WARPS
#define NUM_WARPS 4
#endif
#ifndef BLOCK_N
#define BLOCK_N 64
#endif
#ifndef STAGES
#define STAGES 3
#endif
#ifndef Q_IN_REGS
#define Q_IN_REGS 1
#endif
#ifndef MIN_BLOCKS
#define MIN_BLOCKS 2
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif
#ifndef HAS_BIAS
#define HAS_BIAS 0
#endif

#define QD_NT (NUM_WARPS * 32)
#define QD_WARP_M (BLOCK_M / NUM_WARPS)
#define QD_MF (QD_WARP_M / 16)
#define QD_DCH (HEAD_DIM / 8) /* 16-byte chunks per row */

static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM <= 256, "HEAD_DIM must be 64, 128, 192 or 256");
static_assert(NUM_WARPS == 4 || NUM_WARPS == 8, "NUM_WARPS must be 4 or 8");
static_assert(QD_WARP_M == 16 || QD_WARP_M == 32, "BLOCK_M must be NUM_WARPS * 16 or NUM_WARPS * 32");
static_assert(BLOCK_N == 32 || BLOCK_N == 64 || BLOCK_N == 128, "BLOCK_N must be 32, 64 or 128");
static_assert(STAGES >= 2 && STAGES <= 4, "STAGES must be 2, 3 or 4");

#define QD_NEG_INF __int_as_float(0xff800000)

#include "qd_mma.cuh" /* qd_u32, cp.async, ldmatrix, mma, bf16 pack, exp2 */

typedef unsigned short qd_bf16_t;
typedef unsigned long long qd_u64;

/* Must match runtime/cuda/attention.h field for field (the launcher passes it by value). */
struct qd_attention_params {
  const qd_bf16_t* q;
  const qd_bf16_t* k;
  const qd_bf16_t* v;
  qd_bf16_t* o;
  const float* bias;
  long long q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  long long bias_batch_stride, bias_head_stride;
  int q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int sq, sk, heads, batch;
  float scale_log2; /* softmax scale * log2(e) */
  int bias_row_stride;
};
static_assert(sizeof(qd_attention_params) == 128, "qd_attention_params layout changed");

/* Byte offset of 16-byte chunk `ch` of row `row` in a swizzled tile of QD_DCH chunks per row. */
static __device__ __forceinline__ qd_u32 qd_swz(int row, int ch) {
  return (qd_u32)(row * (HEAD_DIM * 2) + ((ch ^ (row & 7)) << 4));
}

/* Copies ROWS rows of HEAD_DIM bf16 (row stride `stride` elements) into a swizzled tile; rows at or past
 * `valid` are zero-filled without reading global memory. */
template <int ROWS>
static __device__ __forceinline__ void qd_load_tile(qd_u32 s_base, const qd_bf16_t* g, int stride, int valid,
                                                    int tid) {
  constexpr int TOTAL = ROWS * QD_DCH;
#pragma unroll
  for (int it = 0; it < (TOTAL + QD_NT - 1) / QD_NT; ++it) {
    int c = it * QD_NT + tid;
    if (TOTAL % QD_NT == 0 || c < TOTAL) {
      int row = c / QD_DCH, ch = c % QD_DCH;
      bool ok = row < valid;
      const qd_bf16_t* src = ok ? g + (long long)row * stride + ch * 8 : g;
      qd_cp_async16(s_base + qd_swz(row, ch), src, ok ? 16 : 0);
    }
  }
}

/* A fragments (16 rows x 16 columns starting at chunk 2*kk) of a swizzled tile for mma's row-major A. */
static __device__ __forceinline__ void qd_load_a(qd_u32 s_base, int row0, int kk, int lane, qd_u32* a) {
  int row = row0 + (lane & 15);
  int ch = 2 * kk + (lane >> 4);
  qd_ldsm_x4(s_base + qd_swz(row, ch), a[0], a[1], a[2], a[3]);
}

extern "C" __global__ void __launch_bounds__(QD_NT, MIN_BLOCKS) qd_attention_fwd(const qd_attention_params p) {
  extern __shared__ __align__(128) unsigned char qd_smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, c4 = lane & 3; /* mma fragment row group and column pair */
  const int m0 = blockIdx.x * BLOCK_M;
  const int h = blockIdx.y, b = blockIdx.z;

  const qd_u32 sQ = qd_smem_addr(qd_smem);
  const qd_u32 sK = sQ + BLOCK_M * HEAD_DIM * 2;
  const qd_u32 sV = sK + STAGES * BLOCK_N * HEAD_DIM * 2;
  constexpr qd_u32 KV_TILE = BLOCK_N * HEAD_DIM * 2;

  const qd_bf16_t* qg = p.q + b * p.q_batch_stride + (long long)m0 * p.q_row_stride + h * HEAD_DIM;
  const qd_bf16_t* kg = p.k + b * p.k_batch_stride + h * HEAD_DIM;
  const qd_bf16_t* vg = p.v + b * p.v_batch_stride + h * HEAD_DIM;

  int kv_len = p.sk;
#if CAUSAL
  kv_len = min(kv_len, m0 + BLOCK_M);
#endif
  const int n_blocks = (kv_len + BLOCK_N - 1) / BLOCK_N;

  qd_load_tile<BLOCK_M>(sQ, qg, p.q_row_stride, p.sq - m0, tid);
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < n_blocks) {
      int n0 = s * BLOCK_N;
      qd_load_tile<BLOCK_N>(sK + s * KV_TILE, kg + (long long)n0 * p.k_row_stride, p.k_row_stride, p.sk - n0, tid);
      qd_load_tile<BLOCK_N>(sV + s * KV_TILE, vg + (long long)n0 * p.v_row_stride, p.v_row_stride, p.sk - n0, tid);
    }
    qd_cp_async_commit();
  }

  const int wrow0 = warp * QD_WARP_M; /* the warp's first row inside the block */
  float o[QD_MF][HEAD_DIM / 8][4];
  float m_run[QD_MF][2], l_run[QD_MF][2];
#pragma unroll
  for (int mf = 0; mf < QD_MF; ++mf) {
#pragma unroll
    for (int d = 0; d < HEAD_DIM / 8; ++d) o[mf][d][0] = o[mf][d][1] = o[mf][d][2] = o[mf][d][3] = 0.f;
    m_run[mf][0] = m_run[mf][1] = QD_NEG_INF;
    l_run[mf][0] = l_run[mf][1] = 0.f;
  }
#if Q_IN_REGS
  qd_u32 qf[QD_MF][HEAD_DIM / 16][4];
#endif
#if HAS_BIAS
  const float sl = 1.f; /* scores are scaled and biased into the log2 domain before the max */
  const float* bias_bh = p.bias + b * p.bias_batch_stride + h * p.bias_head_stride;
#else
  const float sl = p.scale_log2;
#endif

  for (int j = 0; j < n_blocks; ++j) {
    qd_cp_async_wait<STAGES - 2>();
    __syncthreads(); /* tile j is visible to all; every warp is done with the stage refilled below */
    {
      int jn = j + STAGES - 1;
      if (jn < n_blocks) {
        int st = jn % STAGES, n0 = jn * BLOCK_N;
        qd_load_tile<BLOCK_N>(sK + st * KV_TILE, kg + (long long)n0 * p.k_row_stride, p.k_row_stride, p.sk - n0,
                              tid);
        qd_load_tile<BLOCK_N>(sV + st * KV_TILE, vg + (long long)n0 * p.v_row_stride, p.v_row_stride, p.sk - n0,
                              tid);
      }
      qd_cp_async_commit();
    }
#if Q_IN_REGS
    if (j == 0) {
#pragma unroll
      for (int mf = 0; mf < QD_MF; ++mf)
#pragma unroll
        for (int kk = 0; kk < HEAD_DIM / 16; ++kk) qd_load_a(sQ, wrow0 + mf * 16, kk, lane, qf[mf][kk]);
    }
#endif
    const int st = j % STAGES;
    const qd_u32 sKt = sK + st * KV_TILE, sVt = sV + st * KV_TILE;
    const int n0 = j * BLOCK_N;

    /* S = Q K^T */
    float s[QD_MF][BLOCK_N / 8][4];
#pragma unroll
    for (int mf = 0; mf < QD_MF; ++mf)
#pragma unroll
      for (int nb = 0; nb < BLOCK_N / 8; ++nb) s[mf][nb][0] = s[mf][nb][1] = s[mf][nb][2] = s[mf][nb][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
#if Q_IN_REGS
#define QD_QA(mf) qf[mf][kk]
#else
      qd_u32 qa[QD_MF][4];
#pragma unroll
      for (int mf = 0; mf < QD_MF; ++mf) qd_load_a(sQ, wrow0 + mf * 16, kk, lane, qa[mf]);
#define QD_QA(mf) qa[mf]
#endif
#pragma unroll
      for (int np = 0; np < BLOCK_N / 16; ++np) {
        qd_u32 b0, b1, b2, b3;
        int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
        int ch = 2 * kk + ((lane >> 3) & 1);
        qd_ldsm_x4(sKt + qd_swz(key, ch), b0, b1, b2, b3);
#pragma unroll
        for (int mf = 0; mf < QD_MF; ++mf) {
          qd_mma(s[mf][2 * np], QD_QA(mf), b0, b1);
          qd_mma(s[mf][2 * np + 1], QD_QA(mf), b2, b3);
        }
      }
#undef QD_QA
    }

    /* Bias, masks, online softmax. */
    const bool need_mask = CAUSAL || (n0 + BLOCK_N > p.sk);
#pragma unroll
    for (int mf = 0; mf < QD_MF; ++mf) {
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int row = m0 + wrow0 + mf * 16 + g + 8 * hr; /* query index */
        (void)row;
#if HAS_BIAS
        const float* brow = bias_bh + (long long)min(row, p.sq - 1) * p.bias_row_stride;
#endif
        float mx = QD_NEG_INF;
#pragma unroll
        for (int nb = 0; nb < BLOCK_N / 8; ++nb) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int col = n0 + nb * 8 + 2 * c4 + e;
            float x = s[mf][nb][2 * hr + e];
#if HAS_BIAS
            x = x * p.scale_log2 + (col < p.sk ? brow[col] * 1.4426950408889634f : 0.f);
#endif
            if (need_mask) {
              bool masked = col >= p.sk;
#if CAUSAL
              masked = masked || col > row;
#endif
              if (masked) x = QD_NEG_INF;
            }
            s[mf][nb][2 * hr + e] = x;
            mx = fmaxf(mx, x);
          }
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_run[mf][hr], mx * sl);
        /* A row with every score -inf so far keeps exp2 arguments finite. */
        const float m_use = m_new == QD_NEG_INF ? 0.f : m_new;
        const float alpha = qd_exp2(m_run[mf][hr] - m_use);
        m_run[mf][hr] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nb = 0; nb < BLOCK_N / 8; ++nb) {
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            float pv = qd_exp2(fmaf(s[mf][nb][2 * hr + e], sl, -m_use));
            s[mf][nb][2 * hr + e] = pv;
            sum += pv;
          }
        }
        l_run[mf][hr] = l_run[mf][hr] * alpha + sum;
#pragma unroll
        for (int d = 0; d < HEAD_DIM / 8; ++d) {
          o[mf][d][2 * hr] *= alpha;
          o[mf][d][2 * hr + 1] *= alpha;
        }
      }
    }

    /* O += P V */
#pragma unroll
    for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
      qd_u32 pa[QD_MF][4];
#pragma unroll
      for (int mf = 0; mf < QD_MF; ++mf) {
        pa[mf][0] = qd_pack_bf16(s[mf][2 * kk][0], s[mf][2 * kk][1]);
        pa[mf][1] = qd_pack_bf16(s[mf][2 * kk][2], s[mf][2 * kk][3]);
        pa[mf][2] = qd_pack_bf16(s[mf][2 * kk + 1][0], s[mf][2 * kk + 1][1]);
        pa[mf][3] = qd_pack_bf16(s[mf][2 * kk + 1][2], s[mf][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dp = 0; dp < HEAD_DIM / 16; ++dp) {
        qd_u32 b0, b1, b2, b3;
        int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        int ch = 2 * dp + (lane >> 4);
        qd_ldsm_x4_t(sVt + qd_swz(key, ch), b0, b1, b2, b3);
#pragma unroll
        for (int mf = 0; mf < QD_MF; ++mf) {
          qd_mma(o[mf][2 * dp], pa[mf], b0, b1);
          qd_mma(o[mf][2 * dp + 1], pa[mf], b2, b3);
        }
      }
    }
  }
  qd_cp_async_wait<0>(); /* nothing may still be landing in shared memory when the kernel exits */

  /* Normalize, stage the warp's rows in its own part of the Q tile, then store whole 16-byte chunks. With
   * Q_IN_REGS=0 and no key tile at all (Sk = 0 cannot reach here: the launcher rejects it) the tile is idle. */
  __syncwarp();
#pragma unroll
  for (int mf = 0; mf < QD_MF; ++mf) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float l = l_run[mf][hr];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = l > 0.f ? 1.f / l : 0.f;
      const int row = wrow0 + mf * 16 + g + 8 * hr;
#pragma unroll
      for (int d = 0; d < HEAD_DIM / 8; ++d) {
        qd_u32 v2 = qd_pack_bf16(o[mf][d][2 * hr] * inv, o[mf][d][2 * hr + 1] * inv);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sQ + qd_swz(row, d) + c4 * 4), "r"(v2) : "memory");
      }
    }
  }
  __syncwarp();
  qd_bf16_t* og = p.o + b * p.o_batch_stride + h * HEAD_DIM;
#pragma unroll
  for (int it = 0; it < QD_WARP_M * QD_DCH / 32; ++it) {
    int c = it * 32 + lane;
    int r = wrow0 + c / QD_DCH, ch = c % QD_DCH;
    int row = m0 + r;
    if (row < p.sq) {
      qd_u32 x0, x1, x2, x3;
      asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3)
                   : "r"(sQ + qd_swz(r, ch))
                   : "memory");
      qd_bf16_t* dst = og + (long long)row * p.o_row_stride + ch * 8;
      asm volatile("st.global.v4.b32 [%0], {%1,%2,%3,%4};\n" ::"l"(dst), "r"(x0), "r"(x1), "r"(x2), "r"(x3)
                   : "memory");
    }
  }
}
