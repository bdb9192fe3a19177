/* qd kernel template: attention forward for the text encoders and the VAE: causal mask, additive bias, any scale,
 * head dim 64 to 512. FlashAttention-2 style on mma.sync m16n8k16 bf16 tensor cores with fp32 accumulation (sm_80+).
 * (The FLUX transformer's kernels are attention.cu and attention_sm90.cu; this one adds a bf16 bias, which is how
 * the CUDA executor stores T5's position bias, and head dims above 256, by splitting each row group's work over
 * ATT_WARPS_D warps.)
 *
 * Math, per batch b, head h and query row i (qd_ref_attention, runtime/cpu/ref_attention.c):
 *   s[j] = scale * <q[b, i, h, :], k[b, j, h, :]> (+ bias[b|0, h|0, i, j])       for keys j in [0, Sk)
 *   s[j] = -inf where ATT_CAUSAL and j > i   (top-left aligned: query i sees keys 0..i; the launcher requires
 *                                             Sq == Sk, as the graph does)
 *   o[b, i, h, :] = sum_j softmax(s)[j] * v[b, j, h, :]
 * bf16 q, k, v, bias and o; fp32 scores, softmax statistics and accumulators; P is rounded to bf16 for the P V
 * product, as in every FlashAttention kernel. A row whose scores are all -inf (a bias of -inf everywhere) gives 0
 * (the CPU reference gives NaN there).
 *
 * Layouts (elements). Token-major with heads interleaved in the channels, as the linear layers produce them:
 * q [B, Sq, H*D], k and v [B, Sk, H*D], o [B, Sq, H*D], each with its own row stride and batch stride (so they may
 * be column slices of one fused QKV activation); head h is channels [h*D, (h+1)*D). bias is [Bb, Hb, Sq, Sk],
 * dense in its last two axes (row stride Sk), with a batch stride and a head stride that are 0 to broadcast
 * (T5's [1, H, S, S]: batch stride 0). ATT_BIAS = 1 reads bf16 (what t5_relative_bias writes, text_ops.cu), 2 reads
 * fp32. Requirements (checked by the launcher, runtime/cuda/kernels_text.c): q, k, v, o 16-byte aligned, their
 * strides multiples of 8; bias aligned to its element. When Sk is even and the bias aligned to two elements, each
 * thread loads its two adjacent bias columns as one word (params.bias_pairs, set by the launcher).
 *
 * Tiling. One CTA computes BLOCK_M = 16 * ATT_WARPS_M query rows of one (batch, head): grid (ceil(Sq / BLOCK_M), H,
 * B), ATT_WARPS_M * ATT_WARPS_D warps. Row group wm (16 rows) belongs to ATT_WARPS_D warps; warp wx of the group
 *   S = Q K^T        computes the scores of its 16 rows against keys [wx * KN, (wx + 1) * KN) of each key tile,
 *                    KN = ATT_BLOCK_N / ATT_WARPS_D, over the whole head dim (no redundant products);
 *   softmax          takes the row maximum over the group's warps (through shared memory when ATT_WARPS_D > 1),
 *                    so that every warp of the group holds the same running maximum and rescale factor; each warp
 *                    keeps a partial row sum of its own keys, added up across the group at the end;
 *   O += P V         accumulates output columns [wx * DV, (wx + 1) * DV), DV = HEAD_DIM / ATT_WARPS_D, against all
 *                    ATT_BLOCK_N keys: P goes through shared memory (bf16, rows padded by 16 bytes so that
 *                    ldmatrix is conflict-free) when ATT_WARPS_D > 1, and stays in registers (the m16n8k16 C layout
 *                    of two n8 tiles is the A layout of one k16 step) when it is 1.
 * That keeps the fp32 O accumulators at DV / 2 registers per thread: head dim 512 with ATT_WARPS_D = 2 holds 128.
 * Q fragments stay in registers when ATT_Q_IN_REGS and HEAD_DIM <= 128 (HEAD_DIM / 4 registers), else are
 * re-read from shared memory by ldmatrix for each key tile.
 * K and V tiles of ATT_BLOCK_N keys are copied with cp.async into a ring of ATT_STAGES stages (tile j + STAGES - 1
 * is in flight while tile j is used; with one stage the copy of tile j + 1 starts after tile j is consumed).
 * Shared rows are HEAD_DIM * 2 bytes, 16-byte chunk c of row r stored at chunk c ^ (r & 7): the eight rows of each
 * ldmatrix 8x8 matrix hit eight bank groups. Keys past Sk are zero-filled (cp.async src-size 0) and masked to -inf;
 * query rows past Sq are computed on zeros and not stored. The output is staged in the Q tile so that global stores
 * are whole 16-byte chunks. Causal CTAs stop at the last key tile any of their rows can see.
 * Dynamic shared memory, bytes: BLOCK_M * HEAD_DIM * 2 + 2 * ATT_STAGES * ATT_BLOCK_N * HEAD_DIM * 2, plus
 * BLOCK_M * (ATT_BLOCK_N * 2 + 16) + 2 * ATT_WARPS_M * ATT_WARPS_D * 64 when ATT_WARPS_D > 1
 * (qd_attention_masked_shared_bytes). Examples: head dim 64, 4x1 warps, BLOCK_N 64, 2 stages: 40 KiB; head dim 512,
 * 4x2 warps, BLOCK_N 32, 2 stages: 198 KiB (sm_90), 1 stage: 134 KiB (sm_80); 2x2 warps, 1 stage: 99 KiB (sm_86/89).
 *
 * Kernel: qd_attention_masked(qd_attn_masked_params) with grid (ceil(Sq / BLOCK_M), H, B),
 * 32 * ATT_WARPS_M * ATT_WARPS_D threads; qd_attn_masked_params is passed by value and mirrored in
 * runtime/cuda/kernels_text.c.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests). Valid
 * combinations: ATT_BLOCK_N / ATT_WARPS_D and HEAD_DIM / ATT_WARPS_D multiples of 16, at most 1024 threads.
 *   qd:param shape   HEAD_DIM       = 64 {64 512}     head dim of q, k and v (any multiple of 64 up to 1024 compiles)
 *   qd:param select  ATT_CAUSAL     = 0  {0 1}        1: query i sees keys 0..i
 *   qd:param select  ATT_BIAS       = 0  {0 1 2}      additive bias: 0 none, 1 bf16, 2 fp32
 *   qd:param tunable ATT_WARPS_M    = 4  {1 2 4 8}    row groups of 16 queries per CTA
 *   qd:param tunable ATT_WARPS_D    = 1  {1 2 4}      warps per row group (split keys of S, columns of O)
 *   qd:param tunable ATT_BLOCK_N    = 64 {32 64 128}  keys per K/V tile
 *   qd:param tunable ATT_STAGES     = 2  {1 2 3}      K/V tiles in shared memory
 *   qd:param tunable ATT_Q_IN_REGS  = 1  {0 1}        keep Q fragments in registers (head dim <= 128 only)
 *   qd:param tunable ATT_MIN_BLOCKS = 1  {1 2 3 4}    __launch_bounds__' CTAs per SM: registers are capped at
 *                                                     65536 / (ATT_MIN_BLOCKS x threads); 1 leaves ptxas 255
 */

#ifndef HEAD_DIM
#define HEAD_DIM 64
#endif
#ifndef ATT_CAUSAL
#define ATT_CAUSAL 0
#endif
#ifndef ATT_BIAS
#define ATT_BIAS 0
#endif
#ifndef ATT_WARPS_M
#define ATT_WARPS_M 4
#endif
#ifndef ATT_WARPS_D
#define ATT_WARPS_D 1
#endif
#ifndef ATT_BLOCK_N
#define ATT_BLOCK_N 64
#endif
#ifndef ATT_STAGES
#define ATT_STAGES 2
#endif
#ifndef ATT_Q_IN_REGS
#define ATT_Q_IN_REGS 1
#endif
#ifndef ATT_MIN_BLOCKS
#define ATT_MIN_BLOCKS 1
#endif

#define QD_NT (ATT_WARPS_M * ATT_WARPS_D * 32)
#define QD_BLOCK_M (ATT_WARPS_M * 16)
#define QD_KN (ATT_BLOCK_N / ATT_WARPS_D) /* keys per warp in S = Q K^T */
#define QD_DV (HEAD_DIM / ATT_WARPS_D)    /* output columns per warp */
#define QD_DCH (HEAD_DIM / 8)             /* 16-byte chunks per row */
#define QD_QREGS (ATT_Q_IN_REGS && HEAD_DIM <= 128)
#define QD_P_STRIDE (ATT_BLOCK_N * 2 + 16) /* bytes per row of the P tile: an odd number of 16-byte chunks */

static_assert(HEAD_DIM % 64 == 0 && HEAD_DIM >= 64 && HEAD_DIM <= 1024, "HEAD_DIM: a multiple of 64 up to 1024");
static_assert(ATT_CAUSAL == 0 || ATT_CAUSAL == 1, "ATT_CAUSAL is 0 or 1");
static_assert(ATT_BIAS >= 0 && ATT_BIAS <= 2, "ATT_BIAS is 0 (none), 1 (bf16) or 2 (fp32)");
static_assert(ATT_WARPS_M >= 1 && ATT_WARPS_M <= 8, "ATT_WARPS_M is 1 to 8");
static_assert(ATT_WARPS_D >= 1 && ATT_WARPS_D <= 8, "ATT_WARPS_D is 1 to 8");
static_assert(ATT_BLOCK_N % 16 == 0 && ATT_BLOCK_N >= 16 && ATT_BLOCK_N <= 256, "ATT_BLOCK_N: 16 to 256 by 16");
static_assert(QD_KN % 16 == 0, "ATT_BLOCK_N / ATT_WARPS_D must be a multiple of 16");
static_assert(QD_DV % 16 == 0, "HEAD_DIM / ATT_WARPS_D must be a multiple of 16");
static_assert(QD_NT <= 1024, "ATT_WARPS_M * ATT_WARPS_D is at most 32");
static_assert(ATT_STAGES >= 1 && ATT_STAGES <= 4, "ATT_STAGES is 1 to 4");
static_assert(ATT_Q_IN_REGS == 0 || ATT_Q_IN_REGS == 1, "ATT_Q_IN_REGS is 0 or 1");
static_assert(ATT_MIN_BLOCKS >= 1 && ATT_MIN_BLOCKS <= 4, "ATT_MIN_BLOCKS is 1 to 4");

#define QD_NEG_INF __int_as_float(0xff800000)
#define QD_LOG2E 1.4426950408889634f

#include "qd_mma.cuh" /* qd_u32, cp.async, ldmatrix, mma, bf16 pack, exp2 */

typedef unsigned short qd_bf16_t;

/* Must match runtime/cuda/kernels_text.c's qd_kt_attn_params_t_ field for field (passed by value). */
struct qd_attn_masked_params {
  const qd_bf16_t* q;
  const qd_bf16_t* k;
  const qd_bf16_t* v;
  qd_bf16_t* o;
  const void* bias;
  long long q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  long long bias_batch_stride, bias_head_stride; /* elements; 0 broadcasts */
  int q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int sq, sk, heads, bias_row_stride;
  float scale_log2; /* softmax scale * log2(e) */
  int bias_pairs;   /* 1: Sk even and bias aligned to two elements, so that pairs of columns load as one word */
};
static_assert(sizeof(qd_attn_masked_params) == 128, "qd_attn_masked_params layout changed");

/* ---- PTX helpers (beside qd_mma.cuh's) ------------------------------------------------------------------------ */

static __device__ __forceinline__ void qd_st_shared_b32(qd_u32 addr, qd_u32 v) {
  asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v) : "memory");
}

/* A 16-byte chunk from shared memory to global memory. */
static __device__ __forceinline__ void qd_copy_chunk_out(qd_bf16_t* dst, qd_u32 src) {
  qd_u32 x0, x1, x2, x3;
  asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3)
               : "r"(src)
               : "memory");
  asm volatile("st.global.v4.b32 [%0], {%1,%2,%3,%4};\n" ::"l"(dst), "r"(x0), "r"(x1), "r"(x2), "r"(x3) : "memory");
}

/* ---- end of PTX helpers --------------------------------------------------------------------------------------- */

/* Byte offset of 16-byte chunk `ch` of row `row` in a swizzled tile of QD_DCH chunks per row. */
static __device__ __forceinline__ qd_u32 qd_swz(int row, int ch) {
  return (qd_u32)(row * (HEAD_DIM * 2) + ((ch ^ (row & 7)) << 4));
}

/* Copies ROWS rows of HEAD_DIM bf16 (row stride `stride` elements) into a swizzled tile; rows at or past `valid`
 * are zero-filled without reading global memory. */
template <int ROWS>
static __device__ __forceinline__ void qd_load_tile(qd_u32 s_base, const qd_bf16_t* g, int stride, int valid,
                                                    int tid) {
  constexpr int TOTAL = ROWS * QD_DCH;
#pragma unroll 4
  for (int it = 0; it < (TOTAL + QD_NT - 1) / QD_NT; ++it) {
    const int c = it * QD_NT + tid;
    if (TOTAL % QD_NT == 0 || c < TOTAL) {
      const int row = c / QD_DCH, ch = c % QD_DCH;
      const bool ok = row < valid;
      const qd_bf16_t* src = ok ? g + (long long)row * stride + ch * 8 : g;
      qd_cp_async16(s_base + qd_swz(row, ch), src, ok ? 16 : 0);
    }
  }
}

/* A fragments (16 rows from row0, columns 16 kk .. 16 kk + 15) of a swizzled tile, for mma's row-major A. */
static __device__ __forceinline__ void qd_load_a(qd_u32 s_base, int row0, int kk, int lane, qd_u32* a) {
  qd_ldsm_x4(s_base + qd_swz(row0 + (lane & 15), 2 * kk + (lane >> 4)), a[0], a[1], a[2], a[3]);
}

#if ATT_BIAS == 1
static __device__ __forceinline__ float qd_bias_at(const void* bias, long long i) {
  return __uint_as_float((qd_u32)reinterpret_cast<const qd_bf16_t*>(bias)[i] << 16);
}
/* Elements i and i + 1, i even, as one 4-byte load. */
static __device__ __forceinline__ void qd_bias_pair(const void* bias, long long i, float& lo, float& hi) {
  const qd_u32 w = *reinterpret_cast<const qd_u32*>(reinterpret_cast<const qd_bf16_t*>(bias) + i);
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
}
#elif ATT_BIAS == 2
static __device__ __forceinline__ float qd_bias_at(const void* bias, long long i) {
  return reinterpret_cast<const float*>(bias)[i];
}
static __device__ __forceinline__ void qd_bias_pair(const void* bias, long long i, float& lo, float& hi) {
  const float2 v = *reinterpret_cast<const float2*>(reinterpret_cast<const float*>(bias) + i);
  lo = v.x;
  hi = v.y;
}
#endif

extern "C" __global__ void __launch_bounds__(QD_NT, ATT_MIN_BLOCKS) qd_attention_masked(const qd_attn_masked_params p) {
  extern __shared__ __align__(128) unsigned char qd_smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp / ATT_WARPS_D, wx = warp % ATT_WARPS_D;
  const int g = lane >> 2, c4 = lane & 3; /* mma fragment row group and column pair */
  const int m0 = blockIdx.x * QD_BLOCK_M;
  const int h = blockIdx.y, b = blockIdx.z;
  const int row0 = wm * 16; /* the warp's first query row inside the CTA's tile */
  const int kb = wx * QD_KN; /* its keys inside a key tile, for S */
  const int db = wx * QD_DV; /* its output columns, for O */

  constexpr int Q_BYTES = QD_BLOCK_M * HEAD_DIM * 2;
  constexpr int KV_TILE = ATT_BLOCK_N * HEAD_DIM * 2;
  const qd_u32 sQ = qd_smem_addr(qd_smem);
  const qd_u32 sK = sQ + Q_BYTES;
  const qd_u32 sV = sK + ATT_STAGES * KV_TILE;
#if ATT_WARPS_D > 1
  const qd_u32 sP = sV + ATT_STAGES * KV_TILE;
  /* [2][ATT_WARPS_M][ATT_WARPS_D][16]: row maxima of the current tile, then the final row sums */
  float* red = reinterpret_cast<float*>(qd_smem + Q_BYTES + 2 * ATT_STAGES * KV_TILE + QD_BLOCK_M * QD_P_STRIDE);
  float* red_max = red + (wm * ATT_WARPS_D) * 16;
  float* red_sum = red + ATT_WARPS_M * ATT_WARPS_D * 16 + (wm * ATT_WARPS_D) * 16;
#endif

  const qd_bf16_t* qg = p.q + b * p.q_batch_stride + (long long)m0 * p.q_row_stride + h * HEAD_DIM;
  const qd_bf16_t* kg = p.k + b * p.k_batch_stride + h * HEAD_DIM;
  const qd_bf16_t* vg = p.v + b * p.v_batch_stride + h * HEAD_DIM;

  int kv_len = p.sk;
#if ATT_CAUSAL
  kv_len = min(kv_len, m0 + QD_BLOCK_M);
#endif
  const int n_blocks = (kv_len + ATT_BLOCK_N - 1) / ATT_BLOCK_N;

  qd_load_tile<QD_BLOCK_M>(sQ, qg, p.q_row_stride, p.sq - m0, tid);
#if ATT_STAGES > 1
#pragma unroll
  for (int s = 0; s < ATT_STAGES - 1; ++s) {
    if (s < n_blocks) {
      const int n0 = s * ATT_BLOCK_N;
      qd_load_tile<ATT_BLOCK_N>(sK + s * KV_TILE, kg + (long long)n0 * p.k_row_stride, p.k_row_stride, p.sk - n0, tid);
      qd_load_tile<ATT_BLOCK_N>(sV + s * KV_TILE, vg + (long long)n0 * p.v_row_stride, p.v_row_stride, p.sk - n0, tid);
    }
    qd_cp_async_commit();
  }
#endif

  float o[QD_DV / 8][4];
#pragma unroll
  for (int d = 0; d < QD_DV / 8; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.f;
  float m_run[2] = {QD_NEG_INF, QD_NEG_INF}, l_run[2] = {0.f, 0.f};
  int qrow[2]; /* the query index of the thread's two fragment rows */
  qrow[0] = m0 + row0 + g;
  qrow[1] = qrow[0] + 8;
#if QD_QREGS
  qd_u32 qf[HEAD_DIM / 16][4];
#endif
#if ATT_BIAS
  const long long bias_bh = b * p.bias_batch_stride + h * p.bias_head_stride;
#endif

  for (int j = 0; j < n_blocks; ++j) {
    const int n0 = j * ATT_BLOCK_N;
#if ATT_STAGES == 1
    __syncthreads(); /* every warp is done with the previous tile */
    qd_load_tile<ATT_BLOCK_N>(sK, kg + (long long)n0 * p.k_row_stride, p.k_row_stride, p.sk - n0, tid);
    qd_load_tile<ATT_BLOCK_N>(sV, vg + (long long)n0 * p.v_row_stride, p.v_row_stride, p.sk - n0, tid);
    qd_cp_async_commit();
    qd_cp_async_wait<0>();
    __syncthreads();
    const int st = 0;
#else
    qd_cp_async_wait<ATT_STAGES - 2>();
    __syncthreads(); /* tile j is visible to all; every warp is done with the stage refilled below */
    {
      const int jn = j + ATT_STAGES - 1;
      if (jn < n_blocks) {
        const int sn = jn % ATT_STAGES, nn = jn * ATT_BLOCK_N;
        qd_load_tile<ATT_BLOCK_N>(sK + sn * KV_TILE, kg + (long long)nn * p.k_row_stride, p.k_row_stride, p.sk - nn,
                                  tid);
        qd_load_tile<ATT_BLOCK_N>(sV + sn * KV_TILE, vg + (long long)nn * p.v_row_stride, p.v_row_stride, p.sk - nn,
                                  tid);
      }
      qd_cp_async_commit();
    }
    const int st = j % ATT_STAGES;
#endif
#if QD_QREGS
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < HEAD_DIM / 16; ++kk) qd_load_a(sQ, row0, kk, lane, qf[kk]);
    }
#endif
    const qd_u32 sKt = sK + st * KV_TILE, sVt = sV + st * KV_TILE;

#if ATT_BIAS
    /* The bias of this warp's scores, requested before the products so that its latency overlaps them. */
    float bv[QD_KN / 8][4];
#pragma unroll
    for (int nb = 0; nb < QD_KN / 8; ++nb)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int col = n0 + kb + nb * 8 + 2 * c4; /* even */
        const long long at = bias_bh + (long long)qrow[hr] * p.bias_row_stride + col;
        float lo = 0.f, hi = 0.f;
        if (qrow[hr] < p.sq) {
          if (p.bias_pairs) { /* Sk even: col < Sk implies col + 1 < Sk */
            if (col < p.sk) qd_bias_pair(p.bias, at, lo, hi);
          } else {
            if (col < p.sk) lo = qd_bias_at(p.bias, at);
            if (col + 1 < p.sk) hi = qd_bias_at(p.bias, at + 1);
          }
        }
        bv[nb][2 * hr] = lo;
        bv[nb][2 * hr + 1] = hi;
      }
#endif

    /* S = Q K^T for the warp's 16 rows and QD_KN keys */
    float s[QD_KN / 8][4];
#pragma unroll
    for (int nb = 0; nb < QD_KN / 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
#if QD_QREGS
      const qd_u32* qa = qf[kk];
#else
      qd_u32 qa[4];
      qd_load_a(sQ, row0, kk, lane, qa);
#endif
#pragma unroll
      for (int np = 0; np < QD_KN / 16; ++np) {
        qd_u32 b0, b1, b2, b3;
        const int key = kb + np * 16 + (lane & 7) + ((lane >> 4) << 3);
        const int ch = 2 * kk + ((lane >> 3) & 1);
        qd_ldsm_x4(sKt + qd_swz(key, ch), b0, b1, b2, b3);
        qd_mma(s[2 * np], qa, b0, b1);
        qd_mma(s[2 * np + 1], qa, b2, b3);
      }
    }

    /* Scale and bias into the log2 domain, masks, the row maxima of this tile. */
    const bool need_mask = ATT_CAUSAL || n0 + ATT_BLOCK_N > p.sk;
    float mx[2];
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float m = QD_NEG_INF;
#pragma unroll
      for (int nb = 0; nb < QD_KN / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int col = n0 + kb + nb * 8 + 2 * c4 + e;
          float x = s[nb][2 * hr + e] * p.scale_log2;
#if ATT_BIAS
          x = fmaf(bv[nb][2 * hr + e], QD_LOG2E, x);
#endif
          if (need_mask) {
            bool masked = col >= p.sk;
#if ATT_CAUSAL
            masked = masked || col > qrow[hr];
#endif
            if (masked) x = QD_NEG_INF;
          }
          s[nb][2 * hr + e] = x;
          m = fmaxf(m, x);
        }
      }
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 1));
      m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, 2));
      mx[hr] = m;
    }
#if ATT_WARPS_D > 1
    if (c4 == 0) {
      red_max[wx * 16 + g] = mx[0];
      red_max[wx * 16 + g + 8] = mx[1];
    }
    __syncthreads();
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      float m = red_max[g + 8 * hr];
#pragma unroll
      for (int w = 1; w < ATT_WARPS_D; ++w) m = fmaxf(m, red_max[w * 16 + g + 8 * hr]);
      mx[hr] = m;
    }
#endif

    /* Online softmax: every warp of the row group computes the same maximum and rescale factor. */
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const float m_new = fmaxf(m_run[hr], mx[hr]);
      const float m_use = m_new == QD_NEG_INF ? 0.f : m_new; /* keeps exp2's arguments finite or -inf */
      const float alpha = qd_exp2(m_run[hr] - m_use);
      m_run[hr] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nb = 0; nb < QD_KN / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = qd_exp2(s[nb][2 * hr + e] - m_use);
          s[nb][2 * hr + e] = pv;
          sum += pv;
        }
      }
      l_run[hr] = l_run[hr] * alpha + sum;
#pragma unroll
      for (int d = 0; d < QD_DV / 8; ++d) {
        o[d][2 * hr] *= alpha;
        o[d][2 * hr + 1] *= alpha;
      }
    }

    /* O += P V over all ATT_BLOCK_N keys, for the warp's QD_DV columns */
#if ATT_WARPS_D > 1
#pragma unroll
    for (int nb = 0; nb < QD_KN / 8; ++nb)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr)
        qd_st_shared_b32(sP + (row0 + g + 8 * hr) * QD_P_STRIDE + (kb + nb * 8 + 2 * c4) * 2,
                         qd_pack_bf16(s[nb][2 * hr], s[nb][2 * hr + 1]));
    __syncthreads(); /* the row group's P is complete */
#endif
#pragma unroll
    for (int kk = 0; kk < ATT_BLOCK_N / 16; ++kk) {
      qd_u32 pa[4];
#if ATT_WARPS_D > 1
      qd_ldsm_x4(sP + (row0 + (lane & 15)) * QD_P_STRIDE + (2 * kk + (lane >> 4)) * 16, pa[0], pa[1], pa[2], pa[3]);
#else
      pa[0] = qd_pack_bf16(s[2 * kk][0], s[2 * kk][1]);
      pa[1] = qd_pack_bf16(s[2 * kk][2], s[2 * kk][3]);
      pa[2] = qd_pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[3] = qd_pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#endif
#pragma unroll
      for (int dp = 0; dp < QD_DV / 16; ++dp) {
        qd_u32 b0, b1, b2, b3;
        const int key = kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3);
        const int ch = db / 8 + 2 * dp + (lane >> 4);
        qd_ldsm_x4_t(sVt + qd_swz(key, ch), b0, b1, b2, b3);
        qd_mma(o[2 * dp], pa, b0, b1);
        qd_mma(o[2 * dp + 1], pa, b2, b3);
      }
    }
  }
  qd_cp_async_wait<0>(); /* nothing may still be landing in shared memory when the kernel exits */

  /* Row sums: over the quad, then over the row group's warps. */
  float inv[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float l = l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[hr] = l;
  }
#if ATT_WARPS_D > 1
  if (c4 == 0) {
    red_sum[wx * 16 + g] = inv[0];
    red_sum[wx * 16 + g + 8] = inv[1];
  }
#endif
  __syncthreads(); /* also: every warp is done reading the Q tile, which the output is staged in */
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
#if ATT_WARPS_D > 1
    float l = red_sum[g + 8 * hr];
#pragma unroll
    for (int w = 1; w < ATT_WARPS_D; ++w) l += red_sum[w * 16 + g + 8 * hr];
#else
    const float l = inv[hr];
#endif
    inv[hr] = l > 0.f ? 1.f / l : 0.f;
  }

  /* Normalize, stage the warp's 16 rows x QD_DV columns in the Q tile, store whole 16-byte chunks. */
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int r = row0 + g + 8 * hr;
#pragma unroll
    for (int d = 0; d < QD_DV / 8; ++d)
      qd_st_shared_b32(sQ + qd_swz(r, db / 8 + d) + c4 * 4,
                       qd_pack_bf16(o[d][2 * hr] * inv[hr], o[d][2 * hr + 1] * inv[hr]));
  }
  __syncwarp();
  qd_bf16_t* og = p.o + b * p.o_batch_stride + h * HEAD_DIM;
  constexpr int CH_W = QD_DV / 8; /* chunks per row of the warp's columns */
#pragma unroll
  for (int it = 0; it < 16 * CH_W / 32; ++it) {
    const int c = it * 32 + lane;
    const int r = row0 + c / CH_W, ch = db / 8 + c % CH_W;
    const int row = m0 + r;
    if (row < p.sq) qd_copy_chunk_out(og + (long long)row * p.o_row_stride + ch * 8, sQ + qd_swz(r, ch));
  }
}
