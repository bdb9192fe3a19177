/* qd kernel template: the token ops of the text encoders (CLIP-L, T5-XXL): embedding lookups, position ids, CLIP's
 * end-of-text pooling and T5's relative position bias. bf16 activations and weights, integer ids.
 *
 * Math (each matches its CPU reference in runtime/cpu/ref_text.c element for element):
 *   qd_embedding        ids [n] (I32 or I64) -> y [n, features] bf16:  y[i, :] = weight[ids[i], :], weight bf16
 *                       [vocab, features] (qd_ref_embedding). An id outside [0, vocab) reads nothing: its row of y
 *                       is written as zeros and the index of the element is recorded with atomicMin in *error (a
 *                       uint64 the caller sets to all ones before the launch). After the stream has run, *error
 *                       is UINT64_MAX when every id was valid, else the lowest index i whose id was bad, which the
 *                       caller turns into the CPU executor's error ("... holds id X at element i"). Bad ids never
 *                       silently become another token's row.
 *   qd_arange           y[i] = i, I32 [n] (qd_ref_arange; position ids).
 *   qd_eos_pool         x [batch, tokens, ch] bf16, ids [batch, tokens] (I32 or I64) -> y [batch, ch] bf16:
 *                       y[b, :] = x[b, s, :] at the first s with ids[b, s] == token, or at s = 0 when no id
 *                       equals it (qd_ref_eos_pool: transformers' argmax over (ids == eos) gives 0 then).
 *   qd_t5_relative_bias weight [buckets, heads] bf16 -> y [heads, tokens, tokens] bf16 (the op's [1, H, S, S]):
 *                       y[h, i, j] = weight[bucket(j - i), h] with T5's _relative_position_bucket
 *                       (qd_ref_t5_bucket). bf16 out, because the values are copies of bf16 weights (exact) and the
 *                       attention kernel (attention_masked.cu, ATT_BIAS=1) reads a bf16 bias: half the bytes of
 *                       fp32 for a [64, 512, 512] tensor that every T5 layer reads.
 *                       The bucket of a distance d >= max_exact is max_exact + floor(log(d / max_exact) /
 *                       log(max_distance / max_exact) * (nb - max_exact)) in float32 steps. Powers of two times
 *                       max_exact land exactly on bucket boundaries (T5: d = 16 gives 2.0 before the floor), so a
 *                       one-ulp difference between the device's logf and the C library's would move whole
 *                       diagonals to the neighbouring bucket. The kernel therefore computes no logarithm: the
 *                       launcher (runtime/cuda/kernels_text.c) evaluates qd_ref_t5_bucket itself for every distance
 *                       below `tokens` and passes the distances at which the logarithmic bucket steps up
 *                       (qd_t5_buckets.steps, ascending, at most 255). On the device, with nb = buckets / 2 and base
 *                       = nb for j > i when bidirectional (nb = buckets, base = 0, d = max(i - j, 0) otherwise):
 *                         bucket = base + (d < max_exact ? d : max_exact + #{t : steps[t] <= d})
 *                       which equals the reference for every d < tokens by construction.
 *
 * Kernels and launch (TXT_THREADS threads per block everywhere; grids are 1-D unless said):
 *   qd_embedding(y, ids, int ids64, weight, long long n, int features, long long vocab, unsigned long long* error)
 *                       one thread per TXT_VEC elements of a row: blocks = ceil(n * features / TXT_VEC / TXT_THREADS)
 *   qd_arange(int* y, long long n)                                  blocks = ceil(n / TXT_THREADS)
 *   qd_eos_pool(y, x, ids, int ids64, int tokens, int ch, long long token)
 *                       grid (1, batch): the block finds the first match (shared atomicMin), then copies the row
 *                       TXT_VEC elements per thread
 *   qd_t5_relative_bias(y, weight, int tokens, int heads, qd_t5_buckets buckets)
 *                       one thread per TXT_VEC consecutive keys j of one (h, i) row, ceil(tokens / TXT_VEC) per row:
 *                       blocks = ceil(heads * tokens * ceil(tokens / TXT_VEC) / TXT_THREADS); a row's tail (tokens
 *                       not a multiple of TXT_VEC) is stored element by element
 * qd_t5_buckets is passed by value; runtime/cuda/kernels_text.c declares the same struct.
 * Requirements (checked by the launcher): embedding features % TXT_VEC == 0, y and weight aligned to TXT_VEC
 * elements, error 8-byte aligned; eos_pool ch % TXT_VEC == 0, x and y aligned to TXT_VEC elements; t5 y aligned
 * to TXT_VEC elements; ids 4- or 8-byte aligned by their type; n * features, batch * tokens * ch and heads *
 * tokens * tokens below 2^40 (indices are 64-bit).
 *
 * Parameters (-D defines; the qd:param lines are read by runtime/cuda/kernel_compile.c and the tests):
 *   qd:param tunable TXT_THREADS = 256 {64 128 256 512 1024}  threads per block
 *   qd:param tunable TXT_VEC     = 8   {1 2 4 8}              bf16 elements per load and store
 * bf16 is moved on the bits (qd_bf16.cuh); no toolkit header is needed.
 */

#ifndef TXT_THREADS
#define TXT_THREADS 256
#endif
#ifndef TXT_VEC
#define TXT_VEC 8
#endif

static_assert(TXT_THREADS >= 32 && TXT_THREADS <= 1024 && TXT_THREADS % 32 == 0, "TXT_THREADS: 32 to 1024, warps");
static_assert(TXT_VEC == 1 || TXT_VEC == 2 || TXT_VEC == 4 || TXT_VEC == 8, "TXT_VEC is 1, 2, 4 or 8");

#include "qd_bf16.cuh"

#define QD_T5_MAX_STEPS 255

/* Must match runtime/cuda/kernels_text.c's qd_kt_t5_buckets_t_ field for field (passed by value). */
struct qd_t5_buckets {
  int nb;            /* buckets per direction: buckets / 2 when bidirectional, else buckets */
  int max_exact;     /* nb / 2: distances below it have a bucket each */
  int bidirectional; /* 1: keys after the query use buckets nb .. 2 nb - 1 */
  int count;         /* steps in use, 0..QD_T5_MAX_STEPS */
  int steps[QD_T5_MAX_STEPS + 1]; /* ascending distances where the logarithmic bucket goes up by one */
};
static_assert(sizeof(qd_t5_buckets) == 1040, "qd_t5_buckets layout changed");

__device__ __forceinline__ long long qd_id_at(const void* ids, int ids64, long long i) {
  return ids64 ? reinterpret_cast<const long long*>(ids)[i] : (long long)reinterpret_cast<const int*>(ids)[i];
}

__device__ __forceinline__ void qd_copy_vec(qd_bf16* dst, const qd_bf16* src) {
  if constexpr (TXT_VEC == 8) {
    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
  } else if constexpr (TXT_VEC == 4) {
    *reinterpret_cast<uint2*>(dst) = *reinterpret_cast<const uint2*>(src);
  } else if constexpr (TXT_VEC == 2) {
    *reinterpret_cast<unsigned int*>(dst) = *reinterpret_cast<const unsigned int*>(src);
  } else {
    *dst = *src;
  }
}

__device__ __forceinline__ void qd_zero_vec(qd_bf16* dst) {
  if constexpr (TXT_VEC == 8) {
    *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
  } else if constexpr (TXT_VEC == 4) {
    *reinterpret_cast<uint2*>(dst) = make_uint2(0u, 0u);
  } else if constexpr (TXT_VEC == 2) {
    *reinterpret_cast<unsigned int*>(dst) = 0u;
  } else {
    *dst = 0;
  }
}

/* ---- the kernels -------------------------------------------------------------------------------------------- */

extern "C" __global__ void __launch_bounds__(TXT_THREADS)
    qd_embedding(qd_bf16* y, const void* ids, int ids64, const qd_bf16* weight, long long n, int features,
                 long long vocab, unsigned long long* error) {
  const long long per_row = features / TXT_VEC;
  const long long idx = (long long)blockIdx.x * TXT_THREADS + threadIdx.x;
  if (idx >= n * per_row) return;
  const long long row = idx / per_row;
  const long long col = (idx - row * per_row) * TXT_VEC;
  const long long id = qd_id_at(ids, ids64, row);
  qd_bf16* dst = y + row * features + col;
  if (id < 0 || id >= vocab) {
    qd_zero_vec(dst);
    if (col == 0) atomicMin(error, (unsigned long long)row);
    return;
  }
  qd_copy_vec(dst, weight + id * features + col);
}

extern "C" __global__ void __launch_bounds__(TXT_THREADS) qd_arange(int* y, long long n) {
  const long long i = (long long)blockIdx.x * TXT_THREADS + threadIdx.x;
  if (i < n) y[i] = (int)i;
}

extern "C" __global__ void __launch_bounds__(TXT_THREADS)
    qd_eos_pool(qd_bf16* y, const qd_bf16* x, const void* ids, int ids64, int tokens, int ch, long long token) {
  __shared__ int first;
  const int b = blockIdx.y;
  if (threadIdx.x == 0) first = tokens;
  __syncthreads();
  const long long id_base = (long long)b * tokens;
  for (int s = threadIdx.x; s < tokens; s += TXT_THREADS)
    if (qd_id_at(ids, ids64, id_base + s) == token) {
      atomicMin(&first, s);
      break; /* later s of this thread cannot be the first */
    }
  __syncthreads();
  const int at = first < tokens ? first : 0;
  const qd_bf16* src = x + (id_base + at) * ch;
  qd_bf16* dst = y + (long long)b * ch;
  for (int c = threadIdx.x * TXT_VEC; c < ch; c += TXT_THREADS * TXT_VEC) qd_copy_vec(dst + c, src + c);
}

/* T5's bucket of relative position rel = j - i from the launcher's step table (in shared memory). */
__device__ __forceinline__ int qd_t5_bucket(int rel, const qd_t5_buckets& p, const int* steps) {
  int base = 0, d;
  if (p.bidirectional) {
    base = rel > 0 ? p.nb : 0;
    d = rel < 0 ? -rel : rel;
  } else {
    d = rel < 0 ? -rel : 0;
  }
  if (d < p.max_exact) return base + d;
  int lo = 0, hi = p.count; /* upper bound: the number of steps <= d */
  while (lo < hi) {
    const int mid = (lo + hi) >> 1;
    if (steps[mid] <= d)
      lo = mid + 1;
    else
      hi = mid;
  }
  return base + p.max_exact + lo;
}

extern "C" __global__ void __launch_bounds__(TXT_THREADS)
    qd_t5_relative_bias(qd_bf16* y, const qd_bf16* weight, int tokens, int heads, const qd_t5_buckets p) {
  __shared__ int steps[QD_T5_MAX_STEPS + 1];
  for (int t = threadIdx.x; t < p.count; t += TXT_THREADS) steps[t] = p.steps[t];
  __syncthreads();
  const long long per_row = (tokens + TXT_VEC - 1) / TXT_VEC;
  const long long idx = (long long)blockIdx.x * TXT_THREADS + threadIdx.x;
  if (idx >= (long long)heads * tokens * per_row) return;
  const long long row = idx / per_row; /* h * tokens + i */
  const int j0 = (int)(idx - row * per_row) * TXT_VEC;
  const int h = (int)(row / tokens), i = (int)(row - (long long)h * tokens);
  qd_bf16* dst = y + row * tokens + j0;
  __align__(16) qd_bf16 v[TXT_VEC];
#pragma unroll
  for (int e = 0; e < TXT_VEC; e++) {
    const int j = j0 + e < tokens ? j0 + e : tokens - 1;
    v[e] = weight[(long long)qd_t5_bucket(j - i, p, steps) * heads + h];
  }
  if (tokens % TXT_VEC == 0) { /* every row starts aligned and holds whole vectors */
    qd_copy_vec(dst, v);
  } else {
    for (int e = 0; e < TXT_VEC && j0 + e < tokens; e++) dst[e] = v[e];
  }
}
