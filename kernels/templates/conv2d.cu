/* qd kernel template: 2-D convolution in NCHW as an implicit GEMM on mma.sync m16n8k16 bf16 tensor cores (sm_80+),
 * fp32 accumulation, with the bias and optionally a residual added in the epilogue. Plus the one-time weight
 * repacking it needs.
 *
 * Math (qd_ref_conv2d; CONV_RESIDUAL = 1 adds the resnet's shortcut: conv2 + x):
 *   y[n, co, oy, ox] = sum_{ci, ky, kx} w[co, ci, ky, kx] * x[n, ci, oy*s - pad + ky, ox*s - pad + kx]
 *                      + bias[co] (+ residual[n, co, oy, ox])
 *   x outside the image is 0. hout = (h + 2 pad - k) / s + 1, likewise wout. bf16 x, w, bias, residual and y;
 *   the products are exact in fp32 and summed in fp32; bias and residual are added in fp32 and y is rounded to
 *   bf16 once (a separate add kernel would round twice).
 *
 * Layouts (elements): x [B, Cin, H, W], y and residual [B, Cout, hout, wout], bias [Cout], all row-major. The
 * weight is used REPACKED: wp [Cout, k*k, CinP] with CinP = Cin rounded up to a multiple of 8 and zeros in the
 * padding, i.e. the checkpoint's w [Cout, Cin, k, k] with Cin moved last. qd_conv2d_pack_weight builds it on the
 * GPU (once per weight, at load time); runtime/cuda/kernels_image.h has the same on the host. Repacking makes
 * every weight tile a run of whole 16-byte chunks, copied with cp.async.
 *
 * GEMM view: M = Cout (the weight rows), N = output pixels, K = k*k taps x Cin. A CTA computes BM = CONV_WARPS_M
 * x CONV_WARP_M output channels of a tile of BN = CONV_WARPS_N x CONV_WARP_N output pixels, TH = BN / CONV_TW
 * rows by CONV_TW columns of one image. The input channels are taken CONV_BK at a time (a "chunk"):
 *   - the chunk's input patch under the pixel tile (the halo: HALO_H = (TH - 1) s + k rows by HALO_W =
 *     (CONV_TW - 1) s + k columns) sits in shared memory pixel-major, [halo pixel][CONV_BK channels], so that
 *     the B operand of every tap is the same patch read at a shifted pixel: ldmatrix (non-transposed) takes a
 *     row address per pixel, and a shift costs nothing. The patch is loaded once per chunk for all k*k taps
 *     (2-byte loads, coalesced along the image rows, packed into channel pairs, one 32-bit store each); the
 *     patch of chunk c + 1 goes to a second buffer while chunk c computes, a few slots per tap (at most 8),
 *     each slot's loads issued before the tap's mma work and stored after it; slots the taps cannot carry
 *     (k = 1: one tap per chunk) are loaded at the chunk's last tap, eight at a time.
 *   - the weight tile of each (chunk, tap) step, [BM][CONV_BK], comes from wp through a ring of CONV_STAGES
 *     shared-memory stages filled by cp.async (zero-filled past Cout and past CinP).
 *   Per step and warp: ldmatrix A fragments (CONV_WARP_M rows), ldmatrix B fragments (CONV_WARP_N pixels, each at
 *   its halo pixel + the tap's offset), CONV_WARP_M/16 x CONV_WARP_N/8 mma per 16 channels.
 * Shared rows are CONV_BK * 2 bytes; 16-byte chunk q of row r is stored at chunk q ^ ((r / (8 / CPR)) % CPR)
 * (CPR = CONV_BK / 8 chunks per row), so the eight row addresses of an ldmatrix fall in eight bank groups.
 * Channels past Cin and pixels outside the image are zeros in the halo, so edges, odd sizes and Cin that is not a
 * multiple of CONV_BK need nothing else; output pixels and channels outside y are computed and not stored.
 * Grid order: the CTA index runs over output-channel tiles fastest, so the CTAs that share an input patch run
 * together and x is read from DRAM about once.
 *
 * Kernels and launch (runtime/cuda/kernels_image.c):
 *   qd_conv2d(qd_conv2d_params p)   32 * CONV_WARPS_M * CONV_WARPS_N threads,
 *       B * ceil(hout / TH) * ceil(wout / CONV_TW) * ceil(Cout / BM) blocks, dynamic shared memory
 *       (CONV_STAGES * BM + 2 * HALO_H * HALO_W) * CONV_BK * 2 bytes (above 48 KiB the launcher raises the
 *       function's limit).
 *   qd_conv2d_pack_weight(wp, w, int cout, int cin, int cinp, int kk)   256 threads, ceil(cout*kk*cinp / 256).
 * Requirements (checked by the launcher): k == CONV_K and stride == CONV_STRIDE (compile-time: the halo and the
 * tap loop are sized by them), 0 <= pad < k; wp 16-byte aligned; y and residual 4-byte aligned; x must not
 * overlap y (residual may be y); every size and the number of CTAs below 2^31 (offsets are 64-bit).
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param select  CONV_RESIDUAL = 0  {0 1}        1: add residual (the resnet's shortcut) in the epilogue
 *   qd:param shape   CONV_K        = 3  {1 3}        kernel size k (any k from 1 compiles)
 *   qd:param shape   CONV_STRIDE   = 1  {1 2}        stride s (any s from 1 compiles)
 *   qd:param tunable CONV_WARP_M   = 64 {16 32 64}   output channels per warp (16: for Cout <= 16, conv_out)
 *   qd:param tunable CONV_WARP_N   = 64 {32 64}      output pixels per warp
 *   qd:param tunable CONV_WARPS_M  = 2  {1 2 4}      warps along the output channels
 *   qd:param tunable CONV_WARPS_N  = 2  {1 2 4}      warps along the pixels
 *   qd:param tunable CONV_TW       = 16 {8 16 32}    pixel tile width (TH = BN / CONV_TW rows)
 *   qd:param tunable CONV_BK       = 32 {16 32 64}   input channels per chunk
 *   qd:param tunable CONV_STAGES   = 3  {2 3 4}      weight tiles in flight
 */

#ifndef CONV_RESIDUAL
#define CONV_RESIDUAL 0
#endif
#ifndef CONV_K
#define CONV_K 3
#endif
#ifndef CONV_STRIDE
#define CONV_STRIDE 1
#endif
#ifndef CONV_WARP_M
#define CONV_WARP_M 64
#endif
#ifndef CONV_WARP_N
#define CONV_WARP_N 64
#endif
#ifndef CONV_WARPS_M
#define CONV_WARPS_M 2
#endif
#ifndef CONV_WARPS_N
#define CONV_WARPS_N 2
#endif
#ifndef CONV_TW
#define CONV_TW 16
#endif
#ifndef CONV_BK
#define CONV_BK 32
#endif
#ifndef CONV_STAGES
#define CONV_STAGES 3
#endif

#define CV_BM (CONV_WARPS_M * CONV_WARP_M)
#define CV_BN (CONV_WARPS_N * CONV_WARP_N)
#define CV_TH (CV_BN / CONV_TW)
#define CV_THREADS (32 * CONV_WARPS_M * CONV_WARPS_N)
#define CV_KK (CONV_K * CONV_K)
#define CV_HALO_H ((CV_TH - 1) * CONV_STRIDE + CONV_K)
#define CV_HALO_W ((CONV_TW - 1) * CONV_STRIDE + CONV_K)
#define CV_HP (CV_HALO_H * CV_HALO_W)
#define CV_CPR (CONV_BK / 8)
#define CV_PAIRS (CV_HP * (CONV_BK / 2))
#define CV_SLOTS ((CV_PAIRS + CV_THREADS - 1) / CV_THREADS)
#define CV_PER_TAP_ ((CV_SLOTS + CV_KK - 1) / CV_KK)
#define CV_PER_TAP (CV_PER_TAP_ < 8 ? CV_PER_TAP_ : 8) /* registers: what a tap carries from its loads to its stores */
#define CV_REST (CV_SLOTS - CV_KK * CV_PER_TAP)        /* slots left for the chunk's last tap (small k) */
#define CV_MI (CONV_WARP_M / 16)
#define CV_NI (CONV_WARP_N / 8)
#define CV_A_STAGE_BYTES (CV_BM * CONV_BK * 2)
#define CV_H_BYTES (CV_HP * CONV_BK * 2)
#define CV_A_CHUNKS (CV_BM * CV_CPR)

static_assert(CONV_RESIDUAL == 0 || CONV_RESIDUAL == 1, "CONV_RESIDUAL is 0 or 1");
static_assert(CONV_K >= 1 && CONV_K <= 64, "CONV_K is 1 to 64");
static_assert(CONV_STRIDE >= 1 && CONV_STRIDE <= 64, "CONV_STRIDE is 1 to 64");
static_assert(CONV_WARP_M % 16 == 0 && CONV_WARP_M >= 16 && CONV_WARP_M <= 128, "CONV_WARP_M: 16 to 128, by 16");
static_assert(CONV_WARP_N % 16 == 0 && CONV_WARP_N >= 16 && CONV_WARP_N <= 128, "CONV_WARP_N: 16 to 128, by 16");
static_assert(CV_THREADS >= 32 && CV_THREADS <= 512, "CONV_WARPS_M * CONV_WARPS_N: 1 to 16 warps");
static_assert(CONV_TW % 2 == 0 && CV_BN % CONV_TW == 0, "CONV_TW is even and divides the pixel tile");
static_assert(CONV_BK == 16 || CONV_BK == 32 || CONV_BK == 64, "CONV_BK is 16, 32 or 64");
static_assert(CONV_STAGES >= 2 && CONV_STAGES <= 6, "CONV_STAGES is 2 to 6");
static_assert(CV_MI * CV_NI * 4 <= 128, "a warp tile of more than 64 x 64 does not fit the registers");

#include "qd_bf16.cuh"
#include "qd_mma.cuh"

struct qd_conv2d_params {
  qd_bf16* y;
  const qd_bf16* x;
  const qd_bf16* w; /* repacked: [cout, k*k, cinp] */
  const qd_bf16* bias;     /* or null */
  const qd_bf16* residual; /* CONV_RESIDUAL = 1 */
  int batch, cin, cinp, h, w_in, cout, hout, wout, pad;
  int tiles_x, tiles_y, co_tiles, chunks, pad_;
};
static_assert(sizeof(qd_conv2d_params) == 96, "qd_conv2d_params layout changed (runtime/cuda/kernels_image.c)");

/* Byte offset of 16-byte chunk q of row r in a swizzled tile of CONV_BK-element rows. */
static __device__ __forceinline__ qd_u32 cv_swz(int r, int q) {
  return (qd_u32)(r * (CONV_BK * 2) + ((q ^ ((r / (8 / CV_CPR)) % CV_CPR)) << 4));
}

/* v, hidden from the optimizer: the halo slot addresses computed from it inside the main loop are then not hoisted
 * out of the loop into registers that the accumulators need (with k = 1 every step uses the same slots). */
static __device__ __forceinline__ int cv_opaque(int v) {
  int r;
  asm volatile("mov.b32 %0, %1;\n" : "=r"(r) : "r"(v));
  return r;
}
static __device__ __forceinline__ float cv_bf(unsigned short v) { return __uint_as_float((unsigned int)v << 16); }

/* The weight tile of step `it` (chunk it / KK, tap it % KK) into stage `stage`. */
static __device__ __forceinline__ void cv_load_a(const qd_conv2d_params& p, qd_u32 sA, int it, int stage, int co0,
                                                 int tid) {
  const int c = it / CV_KK, t = it - c * CV_KK;
  const qd_u32 base = sA + (qd_u32)(stage * CV_A_STAGE_BYTES);
#pragma unroll
  for (int i = 0; i < (CV_A_CHUNKS + CV_THREADS - 1) / CV_THREADS; i++) {
    const int idx = i * CV_THREADS + tid;
    if (CV_A_CHUNKS % CV_THREADS == 0 || idx < CV_A_CHUNKS) {
      const int row = idx / CV_CPR, q = idx % CV_CPR;
      const int co = co0 + row, k = c * CONV_BK + q * 8;
      const bool ok = co < p.cout && k < p.cinp;
      const qd_bf16* src = ok ? p.w + ((long long)co * CV_KK + t) * p.cinp + k : p.w;
      qd_cp_async16(base + cv_swz(row, q), src, ok ? 16 : 0);
    }
  }
}

/* Halo slot s of this thread: pair index e = tid + s * THREADS -> channel pair e / HP at halo pixel e % HP.
 * Returns the two channels' values packed (low half = even channel), zeros outside the image or past Cin. */
static __device__ __forceinline__ qd_u32 cv_halo_load(const qd_conv2d_params& p, const qd_bf16* xn, long long hw,
                                                      int iy0, int ix0, int c, int s, int tid) {
  const int e = tid + s * CV_THREADS;
  if (CV_PAIRS % CV_THREADS != 0 && e >= CV_PAIRS) return 0u;
  const int hp = e % CV_HP, cp = e / CV_HP;
  const int hy = hp / CV_HALO_W, hx = hp - hy * CV_HALO_W;
  const int iy = iy0 + hy, ix = ix0 + hx;
  const int ci = c * CONV_BK + 2 * cp;
  qd_u32 v = 0u;
  if ((unsigned)iy < (unsigned)p.h && (unsigned)ix < (unsigned)p.w_in && ci < p.cin) {
    const qd_bf16* src = xn + (long long)ci * hw + (long long)iy * p.w_in + ix;
    v = src[0];
    if (ci + 1 < p.cin) v |= (qd_u32)src[hw] << 16;
  }
  return v;
}

/* A plain store (not asm), so that the compiler may keep several slots' loads in flight before their stores. */
static __device__ __forceinline__ void cv_halo_store(unsigned char* buf, int s, int tid, qd_u32 v) {
  const int e = tid + s * CV_THREADS;
  if (CV_PAIRS % CV_THREADS != 0 && e >= CV_PAIRS) return;
  const int hp = e % CV_HP, cp = e / CV_HP;
  *reinterpret_cast<qd_u32*>(buf + cv_swz(hp, cp >> 2) + (cp & 3) * 4) = v;
}

extern "C" __global__ void __launch_bounds__(CV_THREADS) qd_conv2d(const qd_conv2d_params p) {
  extern __shared__ __align__(128) unsigned char cv_smem[];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp % CONV_WARPS_M, wn = warp / CONV_WARPS_M;

  int bid = blockIdx.x;
  const int cot = bid % p.co_tiles;
  bid /= p.co_tiles;
  const int txi = bid % p.tiles_x;
  bid /= p.tiles_x;
  const int tyi = bid % p.tiles_y;
  const int n = bid / p.tiles_y;
  const int co0 = cot * CV_BM, oy0 = tyi * CV_TH, ox0 = txi * CONV_TW;
  const int iy0 = oy0 * CONV_STRIDE - p.pad, ix0 = ox0 * CONV_STRIDE - p.pad;
  const long long hw = (long long)p.h * p.w_in;
  const qd_bf16* xn = p.x + (long long)n * p.cin * hw;

  const qd_u32 sA = qd_smem_addr(cv_smem);
  const qd_u32 sH = sA + (qd_u32)(CONV_STAGES * CV_A_STAGE_BYTES);
  const int iters = p.chunks * CV_KK;

  /* Prologue: the first weight tiles in flight, then the first chunk's halo (synchronous). */
#pragma unroll
  for (int s = 0; s < CONV_STAGES - 1; s++) {
    if (s < iters) cv_load_a(p, sA, s, s, co0, tid);
    qd_cp_async_commit();
  }
  unsigned char* const hbuf = cv_smem + CONV_STAGES * CV_A_STAGE_BYTES; /* sH as a generic pointer */
#pragma unroll
  for (int s0 = 0; s0 < CV_SLOTS; s0 += 8) { /* eight slots' loads in flight, then their stores */
    qd_u32 v[8];
#pragma unroll
    for (int i = 0; i < 8; i++)
      if (s0 + i < CV_SLOTS) v[i] = cv_halo_load(p, xn, hw, iy0, ix0, 0, s0 + i, tid);
#pragma unroll
    for (int i = 0; i < 8; i++)
      if (s0 + i < CV_SLOTS) cv_halo_store(hbuf, s0 + i, tid, v[i]);
  }

  /* Per lane: ldmatrix row of the A fragments, and the halo pixel (tap 0) of each pair of B fragments. */
  const int a_row = wm * CONV_WARP_M + (lane & 15);
  const int a_q = lane >> 4;
  const int b_q = (lane >> 3) & 1;
  int hb[CV_NI / 2];
#pragma unroll
  for (int j = 0; j < CV_NI / 2; j++) {
    const int pix = wn * CONV_WARP_N + j * 16 + ((lane >> 4) << 3) + (lane & 7);
    const int py = pix / CONV_TW, px = pix - py * CONV_TW;
    hb[j] = py * CONV_STRIDE * CV_HALO_W + px * CONV_STRIDE;
  }

  float acc[CV_MI][CV_NI][4];
#pragma unroll
  for (int i = 0; i < CV_MI; i++)
#pragma unroll
    for (int j = 0; j < CV_NI; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

  int c = 0, t = 0;
#pragma unroll 1
  for (int it = 0; it < iters; it++) {
    qd_cp_async_wait<CONV_STAGES - 2>();
    __syncthreads(); /* stage it has landed; everyone is done with step it - 1 (its stage and, at a chunk start,
                        the halo buffer the next chunk's patch goes to) */
    {
      const int nx = it + CONV_STAGES - 1;
      if (nx < iters) cv_load_a(p, sA, nx, nx % CONV_STAGES, co0, tid);
      qd_cp_async_commit();
    }
    const bool prefetch = c + 1 < p.chunks;
    const int tid_l = cv_opaque(tid);
    qd_u32 pre[CV_PER_TAP];
    if (prefetch) {
#pragma unroll
      for (int i = 0; i < CV_PER_TAP; i++) {
        const int s = t * CV_PER_TAP + i;
        pre[i] = s < CV_SLOTS ? cv_halo_load(p, xn, hw, iy0, ix0, c + 1, s, tid_l) : 0u;
      }
    }

    const qd_u32 a_st = sA + (qd_u32)((it % CONV_STAGES) * CV_A_STAGE_BYTES);
    const qd_u32 h_cur = sH + (qd_u32)((c & 1) * CV_H_BYTES);
    const int ky = t / CONV_K, kx = t - ky * CONV_K;
    const int toff = ky * CV_HALO_W + kx;
#pragma unroll
    for (int ks = 0; ks < CONV_BK / 16; ks++) {
      qd_u32 af[CV_MI][4];
#pragma unroll
      for (int i = 0; i < CV_MI; i++)
        qd_ldsm_x4(a_st + cv_swz(a_row + i * 16, 2 * ks + a_q), af[i][0], af[i][1], af[i][2], af[i][3]);
#pragma unroll
      for (int j = 0; j < CV_NI / 2; j++) { /* two n8 tiles of B per ldmatrix, used at once: fewer live registers */
        qd_u32 b[4];
        qd_ldsm_x4(h_cur + cv_swz(hb[j] + toff, 2 * ks + b_q), b[0], b[1], b[2], b[3]);
#pragma unroll
        for (int i = 0; i < CV_MI; i++) {
          qd_mma(acc[i][2 * j], af[i], b[0], b[1]);
          qd_mma(acc[i][2 * j + 1], af[i], b[2], b[3]);
        }
      }
    }

    if (prefetch) {
      unsigned char* const h_next = hbuf + ((c + 1) & 1) * CV_H_BYTES;
#pragma unroll
      for (int i = 0; i < CV_PER_TAP; i++) {
        const int s = t * CV_PER_TAP + i;
        if (s < CV_SLOTS) cv_halo_store(h_next, s, tid_l, pre[i]);
      }
#if CV_REST > 0
      if (t == CV_KK - 1) { /* more slots than the taps carry (k = 1): the rest now, eight loads at a time */
#pragma unroll
        for (int s0 = CV_KK * CV_PER_TAP; s0 < CV_SLOTS; s0 += 8) {
          qd_u32 v[8];
#pragma unroll
          for (int i = 0; i < 8; i++)
            if (s0 + i < CV_SLOTS) v[i] = cv_halo_load(p, xn, hw, iy0, ix0, c + 1, s0 + i, tid_l);
#pragma unroll
          for (int i = 0; i < 8; i++)
            if (s0 + i < CV_SLOTS) cv_halo_store(h_next, s0 + i, tid_l, v[i]);
        }
      }
#endif
    }
    if (++t == CV_KK) {
      t = 0;
      c++;
    }
  }
  qd_cp_async_wait<0>();

  /* Epilogue: + bias (+ residual) in fp32, one rounding, pairs of adjacent pixels stored as one 32-bit word. */
  const int g = lane >> 2, t4 = lane & 3;
  const long long hwo = (long long)p.hout * p.wout;
#pragma unroll
  for (int i = 0; i < CV_MI; i++) {
#pragma unroll
    for (int half = 0; half < 2; half++) {
      const int co = co0 + wm * CONV_WARP_M + i * 16 + g + half * 8;
      if (co >= p.cout) continue;
      const float bias = p.bias ? cv_bf(p.bias[co]) : 0.0f;
      const long long ybase = ((long long)n * p.cout + co) * hwo;
#pragma unroll
      for (int j = 0; j < CV_NI; j++) {
        const int pix = wn * CONV_WARP_N + j * 8 + 2 * t4;
        const int py = pix / CONV_TW, px = pix - py * CONV_TW;
        const int oy = oy0 + py, ox = ox0 + px;
        if (oy >= p.hout || ox >= p.wout) continue;
        const long long off = ybase + (long long)oy * p.wout + ox;
        const bool two = ox + 1 < p.wout;
        const bool paired = two && (off & 1) == 0;
        float v0 = acc[i][j][2 * half] + bias, v1 = acc[i][j][2 * half + 1] + bias;
#if CONV_RESIDUAL
        if (paired) {
          const qd_u32 r = *reinterpret_cast<const qd_u32*>(p.residual + off);
          v0 += qd_bf16_lo(r);
          v1 += qd_bf16_hi(r);
        } else {
          v0 += cv_bf(p.residual[off]);
          if (two) v1 += cv_bf(p.residual[off + 1]);
        }
#endif
        if (paired) {
          *reinterpret_cast<qd_u32*>(p.y + off) = qd_pack_bf16x2(v0, v1);
        } else {
          p.y[off] = qd_f32_to_bf16(v0);
          if (two) p.y[off + 1] = qd_f32_to_bf16(v1);
        }
      }
    }
  }
}

/* wp[co, t, ci] = w[co, ci, t] for ci < cin, 0 for cin <= ci < cinp (t = ky * k + kx). */
extern "C" __global__ void __launch_bounds__(256)
    qd_conv2d_pack_weight(qd_bf16* wp, const qd_bf16* w, int cout, int cin, int cinp, int kk) {
  const long long idx = (long long)blockIdx.x * 256 + threadIdx.x;
  if (idx >= (long long)cout * kk * cinp) return;
  const int ci = (int)(idx % cinp);
  const long long r = idx / cinp;
  const int t = (int)(r % kk);
  const long long co = r / kk;
  wp[idx] = ci < cin ? w[(co * cin + ci) * kk + t] : (qd_bf16)0;
}
