/* qd kernel template: the VAE decoder's memory-bound image ops in NCHW: group normalization (optionally fused with
 * the SiLU that follows it in every resnet), nearest-neighbour upsampling, the latent affine, and axis
 * permutations (a tiled batched transpose, or a general gather). bf16 activations, fp32 math, one rounding to bf16
 * per output. The convolutions are conv2d.cu.
 *
 * Math:
 *   group norm   x [B, C, S] (S = H * W), G groups of cpg = C / G channels. Group (b, g) is one contiguous run of
 *                n = cpg * S elements. mean and the biased variance are taken over the run, then
 *                  y = (x - mean) * (rstd * w[c]) + b[c],  rstd = 1 / sqrt(var + eps)       (qd_ref_group_norm)
 *                w and b are bf16 [C], either may be absent (1 and 0); GN_SILU = 1 then applies
 *                  y = y / (1 + exp(-y))                                         (group_norm -> silu, fused)
 *                Statistics are numerically sound at any size: the run is cut into chunks of
 *                GN_CHUNK = GN_THREADS * GN_ITEMS * GN_VEC elements; qd_group_norm_stats takes each chunk's
 *                mean and sum of squared deviations from that mean in two passes over registers (no
 *                cancellation for large means), and qd_group_norm_apply merges a group's chunks with Chan's
 *                parallel formula (mean_ab = mean_a + d n_b / n, M2_ab = M2_a + M2_b + d^2 n_a n_b / n) in fp32.
 *                A 128 x 1024 x 1024 plane with 32 groups is 512 chunks per group: both kernels fill the GPU.
 *   upsample     x [P, H, W] -> y [P, H f, W f],  y[p, i, j] = x[p, i / f, j / f]     (qd_ref_upsample_nearest)
 *   affine       y[i] = x[i] * scale / divisor + shift, in that fp32 order (qd_ref_affine), IEEE division
 *   permute      y = x with axes reordered (qd_ref_permute), elements of 1, 2, 4 or 8 bytes, bit-exact. The
 *                launcher drops size-1 axes and merges axes that stay adjacent; what is left is either a batched
 *                transpose [A, R, C] -> [A, C, R] (mode 0: the VAE attention's [B, C, HW] <-> [B, HW, C]),
 *                done through a shared-memory tile of TR_TILE x TR_TILE elements so that both the reads and
 *                the writes are coalesced, or anything else (mode 1): one thread per output element, its source
 *                found by dividing the output index by the output dims (the small rank-6 latent unpack).
 *
 * Kernels and launch (runtime/cuda/kernels_image.c computes the same grids):
 *   qd_group_norm_stats(float2* partial, x, long long n, int chunks, int vec)
 *       GN_THREADS threads, B * G * chunks blocks (chunks = ceil(n / GN_CHUNK)); block (bg, k) writes
 *       partial[bg * chunks + k] = (chunk mean, chunk M2).
 *   qd_group_norm_apply(y, x, w, b, const float2* partial, long long n, int chunks, int groups, int cpg,
 *                       int spatial, float eps, int vec)
 *       the same grid; every block merges its group's partials, then normalizes its chunk. Blocks run the chunks
 *       in reverse order of the stats pass, so the first ones find the tail of x still in L2. y may be x.
 *   qd_upsample_nearest(y, x, long long rows, int h, int w, int f, int vec)
 *       rows = P * H * f output rows; IMG_THREADS threads, one unit of IMG_VEC outputs (vec = 1) or 1 output
 *       (vec = 0) each: ceil(rows * units per row / IMG_THREADS) blocks.
 *   qd_affine(y, x, long long n, float scale, float divisor, float shift, int vec)
 *       IMG_THREADS threads, one vector of IMG_VEC (vec = 1; the n % IMG_VEC tail elements one per thread after
 *       the vectors) or one element (vec = 0) each. y may be x.
 *   qd_permute(y, x, qd_permute_desc d)
 *       mode 0: TR_TILE * TR_ROWS threads, d.batch * d.tiles_r * d.tiles_c blocks, one tile each;
 *       mode 1: IMG_THREADS threads, a grid-stride loop over the output elements (at most 2^20 blocks).
 * `vec` says whether the vector path may be used: the launcher sets it when the sizes and the pointers allow
 * GN_VEC / IMG_VEC-wide accesses (every run, row or pointer a multiple of the vector), and otherwise the same
 * kernel runs element by element, so every variant takes every shape.
 * Requirements (checked by the launcher): group runs n < 2^31 and S < 2^31; upsample units < 2^31; partial
 * 8-byte aligned; permute rank <= 8.
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param select  GN_SILU     = 0   {0 1}              1: y = silu(group_norm(x)) (the resnets' norm -> silu)
 *   qd:param tunable GN_THREADS  = 256 {128 256 512}      group norm threads per block
 *   qd:param tunable GN_ITEMS    = 4   {1 2 4 8}          group norm vectors per thread (chunk size)
 *   qd:param tunable GN_VEC      = 8   {1 2 4 8}          group norm bf16 per load and store
 *   qd:param tunable IMG_THREADS = 256 {128 256 512}      upsample, affine and general permute threads
 *   qd:param tunable IMG_VEC     = 8   {1 2 4 8}          upsample and affine outputs per thread
 *   qd:param tunable TR_TILE     = 32  {32 64}            transpose tile edge in elements
 *   qd:param tunable TR_ROWS     = 8   {4 8 16}           transpose threads = TR_TILE * TR_ROWS
 * Accurate expf and IEEE division (no fast-math): outputs feed further layers.
 */

#ifndef GN_SILU
#define GN_SILU 0
#endif
#ifndef GN_THREADS
#define GN_THREADS 256
#endif
#ifndef GN_ITEMS
#define GN_ITEMS 4
#endif
#ifndef GN_VEC
#define GN_VEC 8
#endif
#ifndef IMG_THREADS
#define IMG_THREADS 256
#endif
#ifndef IMG_VEC
#define IMG_VEC 8
#endif
#ifndef TR_TILE
#define TR_TILE 32
#endif
#ifndef TR_ROWS
#define TR_ROWS 8
#endif

static_assert(GN_SILU == 0 || GN_SILU == 1, "GN_SILU is 0 or 1");
static_assert(GN_THREADS >= 64 && GN_THREADS <= 1024 && GN_THREADS % 32 == 0, "GN_THREADS: 64 to 1024, warps");
static_assert(GN_ITEMS >= 1 && GN_ITEMS <= 8, "GN_ITEMS is 1 to 8");
static_assert(GN_VEC == 1 || GN_VEC == 2 || GN_VEC == 4 || GN_VEC == 8, "GN_VEC is 1, 2, 4 or 8");
static_assert(IMG_THREADS >= 32 && IMG_THREADS <= 1024 && IMG_THREADS % 32 == 0, "IMG_THREADS: 32 to 1024, warps");
static_assert(IMG_VEC == 1 || IMG_VEC == 2 || IMG_VEC == 4 || IMG_VEC == 8, "IMG_VEC is 1, 2, 4 or 8");
static_assert(TR_TILE == 32 || TR_TILE == 64, "TR_TILE is 32 or 64");
static_assert(TR_ROWS >= 1 && TR_TILE % TR_ROWS == 0 && TR_TILE * TR_ROWS <= 1024, "TR_ROWS divides TR_TILE");

#include "qd_bf16.cuh"

#define GN_CHUNK (GN_THREADS * GN_ITEMS * GN_VEC)
#define GN_WARPS (GN_THREADS / 32)
#define TR_THREADS (TR_TILE * TR_ROWS)
#define PERM_BLOCK (IMG_THREADS > TR_THREADS ? IMG_THREADS : TR_THREADS)

__device__ __forceinline__ float img_silu(float v) { return v / (1.0f + expf(-v)); }

/* ---- group norm --------------------------------------------------------------------------------------------- */

/* Sum over the block; every thread gets the result. red holds GN_WARPS floats. */
__device__ __forceinline__ float gn_block_sum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < GN_WARPS; i++) s += red[i];
  __syncthreads(); /* red is written again by the next sum */
  return s;
}

/* Chan's merge of (nb, mb, m2b) into (na, ma, m2a). */
__device__ __forceinline__ void gn_merge(float& na, float& ma, float& m2a, float nb, float mb, float m2b) {
  if (nb == 0.0f) return;
  const float nn = na + nb;
  const float d = mb - ma;
  const float f = nb / nn;
  ma = ma + d * f;
  m2a = m2a + m2b + d * d * na * f;
  na = nn;
}

/* Loads the chunk's elements of this thread: v[i][j] is element (i * GN_THREADS + tid) * GN_VEC + j of the chunk,
 * 0 past `count`. */
__device__ __forceinline__ void gn_load(float (&v)[GN_ITEMS][GN_VEC], const qd_bf16* xc, int count, int vec) {
#pragma unroll
  for (int i = 0; i < GN_ITEMS; i++) {
    const int off = (i * GN_THREADS + (int)threadIdx.x) * GN_VEC;
    if (vec) {
      if (off < count) { /* count is a multiple of GN_VEC on the vector path */
        const qd_raw<GN_VEC> r = qd_load<GN_VEC>(xc + off);
#pragma unroll
        for (int j = 0; j < GN_VEC; j++) v[i][j] = qd_get<GN_VEC>(r, j);
      } else {
#pragma unroll
        for (int j = 0; j < GN_VEC; j++) v[i][j] = 0.0f;
      }
    } else {
#pragma unroll
      for (int j = 0; j < GN_VEC; j++)
        v[i][j] = off + j < count ? __uint_as_float((unsigned int)xc[off + j] << 16) : 0.0f;
    }
  }
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    qd_group_norm_stats(float2* partial, const qd_bf16* x, long long n, int chunks, int vec) {
  __shared__ float red[GN_WARPS];
  const long long bid = blockIdx.x;
  const long long bg = bid / chunks;
  const int k = (int)(bid - bg * chunks);
  const long long start = (long long)k * GN_CHUNK;
  const int count = (int)(n - start < GN_CHUNK ? n - start : GN_CHUNK);
  float v[GN_ITEMS][GN_VEC];
  gn_load(v, x + bg * n + start, count, vec);
  float s = 0.0f;
#pragma unroll
  for (int i = 0; i < GN_ITEMS; i++)
#pragma unroll
    for (int j = 0; j < GN_VEC; j++) s += v[i][j]; /* zeros past count */
  const float mean = gn_block_sum(s, red) / (float)count;
  float q = 0.0f;
#pragma unroll
  for (int i = 0; i < GN_ITEMS; i++) {
    const int off = (i * GN_THREADS + (int)threadIdx.x) * GN_VEC;
#pragma unroll
    for (int j = 0; j < GN_VEC; j++) {
      const float d = v[i][j] - mean;
      if (off + j < count) q += d * d;
    }
  }
  const float m2 = gn_block_sum(q, red);
  if (threadIdx.x == 0) partial[bid] = make_float2(mean, m2);
}

/* Normalizes and stores the GN_VEC elements v that start at `off` in the group (of cpg channels of `spatial`
 * elements; wg and bgp point at the group's first channel). On the scalar path elements past the group's end are
 * not stored (v holds zeros there). */
__device__ __forceinline__ void gn_emit(qd_bf16* yg, const float* v, int off, float mean, float rstd,
                                        const qd_bf16* wg, const qd_bf16* bgp, int spatial, int cpg, int vec) {
  const int c = off / spatial;
  if (vec && spatial - (off - c * spatial) >= GN_VEC) { /* one channel: the common case */
    const float a = rstd * (wg ? __uint_as_float((unsigned int)wg[c] << 16) : 1.0f);
    const float b = bgp ? __uint_as_float((unsigned int)bgp[c] << 16) : 0.0f;
    float o[GN_VEC];
#pragma unroll
    for (int j = 0; j < GN_VEC; j++) {
      float r = (v[j] - mean) * a + b;
#if GN_SILU
      r = img_silu(r);
#endif
      o[j] = r;
    }
    qd_store<GN_VEC>(yg + off, o);
    return;
  }
  /* Element by element: the scalar path, or a vector that crosses into the next channel. */
  const int n = cpg * spatial;
#pragma unroll
  for (int j = 0; j < GN_VEC; j++) {
    const int e = off + j;
    if (e < n) {
      const int ce = e / spatial;
      const float a = rstd * (wg ? __uint_as_float((unsigned int)wg[ce] << 16) : 1.0f);
      const float b = bgp ? __uint_as_float((unsigned int)bgp[ce] << 16) : 0.0f;
      float r = (v[j] - mean) * a + b;
#if GN_SILU
      r = img_silu(r);
#endif
      yg[e] = qd_f32_to_bf16(r);
    }
  }
}

extern "C" __global__ void __launch_bounds__(GN_THREADS)
    qd_group_norm_apply(qd_bf16* y, const qd_bf16* x, const qd_bf16* w, const qd_bf16* b, const float2* partial,
                        long long n, int chunks, int groups, int cpg, int spatial, float eps, int vec) {
  __shared__ float red[3][GN_WARPS];
  const long long bid = (long long)gridDim.x - 1 - blockIdx.x;
  const long long bg = bid / chunks;
  const int k = (int)(bid - bg * chunks);
  const long long start = (long long)k * GN_CHUNK;
  const int count = (int)(n - start < GN_CHUNK ? n - start : GN_CHUNK);
  float v[GN_ITEMS][GN_VEC];
  gn_load(v, x + bg * n + start, count, vec); /* in flight while the partials are merged */

  /* The group's statistics from its chunks' partials. */
  float cn = 0.0f, cm = 0.0f, cq = 0.0f;
  for (int i = threadIdx.x; i < chunks; i += GN_THREADS) {
    const float2 pp = partial[bg * chunks + i];
    const long long rest = n - (long long)i * GN_CHUNK;
    gn_merge(cn, cm, cq, (float)(rest < GN_CHUNK ? rest : GN_CHUNK), pp.x, pp.y);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float on = __shfl_xor_sync(0xffffffffu, cn, o);
    const float om = __shfl_xor_sync(0xffffffffu, cm, o);
    const float oq = __shfl_xor_sync(0xffffffffu, cq, o);
    gn_merge(cn, cm, cq, on, om, oq);
  }
  if ((threadIdx.x & 31) == 0) {
    red[0][threadIdx.x >> 5] = cn;
    red[1][threadIdx.x >> 5] = cm;
    red[2][threadIdx.x >> 5] = cq;
  }
  __syncthreads();
  float gn = 0.0f, gm = 0.0f, gq = 0.0f;
#pragma unroll
  for (int i = 0; i < GN_WARPS; i++) gn_merge(gn, gm, gq, red[0][i], red[1][i], red[2][i]);
  const float mean = gm;
  const float rstd = rsqrtf(gq / (float)n + eps);

  const int c0 = (int)(bg % groups) * cpg;
  const qd_bf16* wg = w ? w + c0 : nullptr;
  const qd_bf16* bgp = b ? b + c0 : nullptr;
#pragma unroll
  for (int i = 0; i < GN_ITEMS; i++) {
    const int off = (i * GN_THREADS + (int)threadIdx.x) * GN_VEC;
    if (off < count)
      gn_emit(y + bg * n, v[i], (int)start + off, mean, rstd, wg, bgp, spatial, cpg, vec);
  }
}

/* ---- upsample ----------------------------------------------------------------------------------------------- */

template <int U>
__device__ __forceinline__ void up_unit(qd_bf16* y, const qd_bf16* x, unsigned int idx, unsigned int upr, int ho,
                                        int h, int w, int f) {
  const unsigned int row = idx / upr;
  const int ox0 = (int)(idx - row * upr) * U;
  const unsigned int p = row / (unsigned int)ho;
  const int oy = (int)(row - p * (unsigned int)ho);
  const qd_bf16* src = x + ((long long)p * h + oy / f) * w;
  int ix = ox0 / f, r = ox0 - ix * f;
  float o[U];
  float cur = __uint_as_float((unsigned int)src[ix] << 16);
#pragma unroll
  for (int j = 0; j < U; j++) {
    o[j] = cur;
    if (++r == f && j + 1 < U) {
      r = 0;
      ix++;
      cur = __uint_as_float((unsigned int)src[ix] << 16);
    }
  }
  qd_store<U>(y + (long long)row * (w * f) + ox0, o);
}

extern "C" __global__ void __launch_bounds__(IMG_THREADS)
    qd_upsample_nearest(qd_bf16* y, const qd_bf16* x, long long rows, int h, int w, int f, int vec) {
  const int wo = w * f, ho = h * f;
  const unsigned int upr = (unsigned int)(vec ? wo / IMG_VEC : wo);
  const long long idx = (long long)blockIdx.x * IMG_THREADS + threadIdx.x;
  if (idx >= rows * upr) return;
  if (vec)
    up_unit<IMG_VEC>(y, x, (unsigned int)idx, upr, ho, h, w, f);
  else
    up_unit<1>(y, x, (unsigned int)idx, upr, ho, h, w, f);
}

/* ---- affine ------------------------------------------------------------------------------------------------- */

__device__ __forceinline__ float aff_op(float v, float scale, float divisor, float shift) {
  return __fadd_rn(__fdiv_rn(__fmul_rn(v, scale), divisor), shift); /* no contraction: the reference's order */
}

extern "C" __global__ void __launch_bounds__(IMG_THREADS)
    qd_affine(qd_bf16* y, const qd_bf16* x, long long n, float scale, float divisor, float shift, int vec) {
  const long long idx = (long long)blockIdx.x * IMG_THREADS + threadIdx.x;
  const long long nvec = vec ? n / IMG_VEC : 0;
  if (idx < nvec) {
    const qd_raw<IMG_VEC> r = qd_load<IMG_VEC>(x + idx * IMG_VEC);
    float o[IMG_VEC];
#pragma unroll
    for (int j = 0; j < IMG_VEC; j++) o[j] = aff_op(qd_get<IMG_VEC>(r, j), scale, divisor, shift);
    qd_store<IMG_VEC>(y + idx * IMG_VEC, o);
    return;
  }
  const long long e = nvec * IMG_VEC + (idx - nvec);
  if (e < n) y[e] = qd_f32_to_bf16(aff_op(__uint_as_float((unsigned int)x[e] << 16), scale, divisor, shift));
}

/* ---- permute ------------------------------------------------------------------------------------------------ */

struct qd_permute_desc {
  long long total;       /* output elements */
  long long dims[8];     /* mode 1: output dims */
  long long strides[8];  /* mode 1: input element stride of each output axis */
  long long batch, rows, cols; /* mode 0: x [batch, rows, cols] -> y [batch, cols, rows] */
  long long tiles_r, tiles_c;  /* mode 0: ceil(rows / TR_TILE), ceil(cols / TR_TILE) */
  int rank;              /* mode 1: 1..8 */
  int elem_bytes;        /* 1, 2, 4 or 8 (mode 0: 2 or 4) */
  int mode;              /* 0: batched transpose, 1: general */
  int pad_;
};

template <typename T>
__device__ __forceinline__ void perm_transpose(unsigned char* yb, const unsigned char* xb, const qd_permute_desc& d,
                                               T (*tile)[TR_TILE + 1]) {
  const T* x = reinterpret_cast<const T*>(xb);
  T* y = reinterpret_cast<T*>(yb);
  long long bid = blockIdx.x;
  const long long tc = bid % d.tiles_c;
  bid /= d.tiles_c;
  const long long tr = bid % d.tiles_r;
  const long long b = bid / d.tiles_r;
  const long long r0 = tr * TR_TILE, c0 = tc * TR_TILE;
  const int tx = threadIdx.x % TR_TILE, ty = threadIdx.x / TR_TILE;
  const T* xs = x + b * d.rows * d.cols;
  T* ys = y + b * d.rows * d.cols;
#pragma unroll
  for (int i = ty; i < TR_TILE; i += TR_ROWS) {
    const long long r = r0 + i, c = c0 + tx;
    if (r < d.rows && c < d.cols) tile[i][tx] = xs[r * d.cols + c];
  }
  __syncthreads();
#pragma unroll
  for (int i = ty; i < TR_TILE; i += TR_ROWS) {
    const long long c = c0 + i, r = r0 + tx;
    if (r < d.rows && c < d.cols) ys[c * d.rows + r] = tile[tx][i];
  }
}

template <typename T>
__device__ __forceinline__ void perm_gather(unsigned char* yb, const unsigned char* xb, const qd_permute_desc& d) {
  const T* x = reinterpret_cast<const T*>(xb);
  T* y = reinterpret_cast<T*>(yb);
  const long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < d.total; i += step) {
    long long rem = i, src = 0;
    for (int a = d.rank - 1; a >= 0; a--) {
      const long long q = rem / d.dims[a];
      src += (rem - q * d.dims[a]) * d.strides[a];
      rem = q;
    }
    y[i] = x[src];
  }
}

/* Mode 0 runs TR_THREADS threads per block, mode 1 IMG_THREADS. */
extern "C" __global__ void __launch_bounds__(PERM_BLOCK)
    qd_permute(unsigned char* y, const unsigned char* x, const qd_permute_desc d) {
  __shared__ __align__(16) unsigned int tile_words[TR_TILE * (TR_TILE + 1)];
  if (d.mode == 0) {
    if (d.elem_bytes == 4)
      perm_transpose<unsigned int>(y, x, d, reinterpret_cast<unsigned int (*)[TR_TILE + 1]>(tile_words));
    else
      perm_transpose<unsigned short>(y, x, d, reinterpret_cast<unsigned short (*)[TR_TILE + 1]>(tile_words));
    return;
  }
  switch (d.elem_bytes) {
    case 8: perm_gather<unsigned long long>(y, x, d); break;
    case 4: perm_gather<unsigned int>(y, x, d); break;
    case 2: perm_gather<unsigned short>(y, x, d); break;
    default: perm_gather<unsigned char>(y, x, d); break;
  }
}
