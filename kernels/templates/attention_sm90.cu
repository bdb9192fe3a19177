/* qd kernel template: attention forward for Hopper (sm_90a), FlashAttention-3 style: wgmma tensor cores, TMA
 * bulk tensor copies completing on mbarriers, and warp specialization.
 *
 * Math (same as attention.cu): o[b, i, h, :] = sum_j softmax_j(scale * <q[b, i, h, :], k[b, j, h, :]>) v[b, j, h, :]
 * with keys j in [0, Sk), or j <= i when CAUSAL (top-left aligned, as qd_ref_attention). bf16 in and out, fp32
 * scores, statistics and accumulators. No bias here: the launcher sends biased attention to attention.cu.
 *
 * Layouts: q [B, Sq, H*D], k and v [B, Sk, H*D], o [B, Sq, H*D] (elements), token-major with heads interleaved
 * in the channels, each with its own row (token) and batch stride. q, k and v are read through TMA tensor maps
 * that the launcher encodes (runtime/cuda/attention.c): 3-D {H*D, S, B} with byte strides {row, batch}, a box of
 * {64 channels, rows, 1} and 128-byte swizzle. Rows past S are zero-filled by the copy engine, so tail tiles
 * need only the -inf mask on keys >= Sk; query rows >= Sq are computed and not stored.
 *
 * CTA: BLOCK_M = 128 queries of one (batch, head), grid (ceil(Sq / 128), H, B), 384 threads in 3 warpgroups.
 *   warpgroup 0, producer: gives its registers back (setmaxnreg.dec to 24); one thread issues the TMA copies:
 *     the Q tile once, then K and V tiles of BLOCK_N keys into a ring of STAGES stages. Each stage has a "full"
 *     mbarrier (armed with the expected byte count, completed by the copy engine) and an "empty" one (one
 *     arrival per consumer warp once its wgmmas have read the stage).
 *   warpgroups 1 and 2, consumers (setmaxnreg.inc to 240): 64 query rows each.
 *     S = Q K^T   wgmma m64nBLOCK_Nk16, both operands in shared memory (K-major, 128B-swizzled descriptors;
 *                 the k16 steps inside a 64-channel swizzle atom advance the start address by 32 bytes)
 *     softmax     in registers on the wgmma accumulator layout (rows g and g+8 of each warp's 16, reduced over
 *                 the 4-thread quad), exp2 with the scale folded into one FFMA
 *     O += P V    wgmma m64nPV_Nk16 with A = P from registers (the accumulator layout of S re-packed to bf16 is
 *                 the register A-fragment layout) and B = V from shared memory read transposed (MN-major,
 *                 128B swizzle: LBO = the distance between 64-channel halves, SBO = 8 keys = 1024 bytes)
 *     OVERLAP=1 software-pipelines each consumer as FlashAttention-3 does: S_{j} = Q K_j^T and O += P_{j-1} V_{j-1}
 *     are issued back to back, and the softmax of S_j runs while the tensor cores work on P_{j-1} V_{j-1}.
 *     PINGPONG=1 also orders the two consumers' wgmma batches with two named barriers (each issues on its turn
 *     and passes the turn right after), so that one warpgroup's softmax overlaps the other's matrix products
 *     rather than both waiting on the tensor cores at once.
 *   The output is normalized, staged through the consumer's own rows of the Q tile (128B-swizzled) and stored
 *   as whole 16-byte chunks.
 * Shared memory: Q 128*D*2 + STAGES * 2 * BLOCK_N*D*2 bytes + mbarriers + 1 KiB for aligning to 1024 (the
 * 128-byte swizzle pattern is anchored at 1024-byte boundaries): 225 KiB with D = 128, BLOCK_N = 192, STAGES = 2
 * (Hopper allows 227 KiB), 161 KiB with BLOCK_N = 128.
 *
 * Parameters (preprocessor defines; the launcher passes them, runtime/cuda/attention.h). The defaults are the
 * fastest measured on an H200 (2026-11-29, docs/attention.md): 635 TFLOP/s at B=1, H=24, S=4608, D=128 and 475
 * at S=1280.
 *   HEAD_DIM   64 or 128                                                           default 128
 *   BLOCK_N    keys per tile: 64, 128, 176 or 192 (176 and 192 spill with CAUSAL)  default 192
 *   STAGES     K/V ring depth: 2; 3 where shared memory allows (BLOCK_N <= 128)    default 2
 *   OVERLAP    0: plain loop; 1: softmax overlapped with the P V wgmma             default 1
 *   PV_N       N of the P V wgmma: 64 (one per 64-channel half) or HEAD_DIM        default HEAD_DIM
 *   PINGPONG   0 or 1 (needs OVERLAP): the consumers take turns issuing wgmmas     default 1
 *   CAUSAL     0 or 1                                                              default 0
 * Kernel: qd_attention_fwd_sm90(qd_attention_sm90_params) (__grid_constant__), 384 threads; compile for sm_90a.
 */

#ifndef HEAD_DIM
#define HEAD_DIM 128
#endif
#ifndef BLOCK_N
#define BLOCK_N 192
#endif
#ifndef STAGES
#define STAGES 2
#endif
#ifndef OVERLAP
#define OVERLAP 1
#endif
#ifndef PV_N
#define PV_N HEAD_DIM
#endif
#ifndef PINGPONG
#define PINGPONG 1
#endif
#ifndef CAUSAL
#define CAUSAL 0
#endif

#define QD_BLOCK_M 128
#define QD_THREADS 384
#define QD_HALVES (HEAD_DIM / 64)
#define QD_NEG_INF __int_as_float(0xff800000)

static_assert(HEAD_DIM == 64 || HEAD_DIM == 128, "HEAD_DIM must be 64 or 128");
static_assert(BLOCK_N == 64 || BLOCK_N == 128 || BLOCK_N == 176 || BLOCK_N == 192,
              "BLOCK_N must be 64, 128, 176 or 192");
static_assert(STAGES >= 2 && STAGES <= 4, "STAGES must be 2, 3 or 4");
static_assert(PV_N == 64 || PV_N == HEAD_DIM, "PV_N must be 64 or HEAD_DIM");
static_assert(PINGPONG == 0 || OVERLAP == 1, "PINGPONG needs OVERLAP");

typedef unsigned short qd_bf16_t;
typedef unsigned int qd_u32;
typedef unsigned long long qd_u64;

/* A CUtensorMap: 128 opaque bytes; 128-byte aligned as cuda.h declares it (the copy engine needs 64). */
struct alignas(128) qd_tmap {
  qd_u64 opaque[16];
};

/* Must match runtime/cuda/attention.h field for field. */
struct qd_attention_sm90_params {
  qd_tmap tq, tk, tv;
  qd_bf16_t* o;
  long long o_batch_stride;
  int o_row_stride;
  int sq, sk, heads, batch;
  float scale_log2; /* softmax scale * log2(e) */
};
static_assert(sizeof(qd_attention_sm90_params) == 512, "qd_attention_sm90_params layout changed");

#define QD_Q_BYTES (QD_BLOCK_M * HEAD_DIM * 2)
#define QD_KV_BYTES (BLOCK_N * HEAD_DIM * 2)

static __device__ __forceinline__ qd_u32 qd_smem_addr(const void* p) {
  return (qd_u32)__cvta_generic_to_shared(p);
}

/* ---- mbarriers and the copy engine ---- */
static __device__ __forceinline__ void qd_mbar_init(qd_u32 bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
static __device__ __forceinline__ void qd_mbar_expect_tx(qd_u32 bar, qd_u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void qd_mbar_arrive(qd_u32 bar) {
  asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared::cta.b64 st, [%0];\n}\n" ::"r"(bar) : "memory");
}
static __device__ __forceinline__ void qd_mbar_wait(qd_u32 bar, int parity) {
  qd_u32 done;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}
static __device__ __forceinline__ void qd_tma_load_3d(qd_u32 dst, const qd_tmap* map, int c0, int c1, int c2,
                                                      qd_u32 bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], "
      "[%5];\n" ::"r"(dst),
      "l"((qd_u64)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

/* ---- wgmma ---- */
/* Shared-memory matrix descriptor, 128-byte swizzle: start address, leading and stride byte offsets (>> 4). */
static __device__ __forceinline__ qd_u64 qd_desc(qd_u32 addr, qd_u32 lbo, qd_u32 sbo) {
  return (qd_u64)((addr & 0x3FFFF) >> 4) | ((qd_u64)(lbo >> 4) << 16) | ((qd_u64)(sbo >> 4) << 32) |
         (1ull << 62);
}
static __device__ __forceinline__ void qd_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
static __device__ __forceinline__ void qd_wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
static __device__ __forceinline__ void qd_wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from touching accumulators across the asynchronous wgmma (reads after the wait only). */
template <int N>
static __device__ __forceinline__ void qd_fence_regs(float* r) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

#if BLOCK_N == 64
static __device__ __forceinline__ void qd_wgmma_ss(float* d, qd_u64 da, qd_u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(scale_d));
}
#endif
#if BLOCK_N == 128
static __device__ __forceinline__ void qd_wgmma_ss(float* d, qd_u64 da, qd_u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(scale_d));
}
#endif
#if BLOCK_N == 176
static __device__ __forceinline__ void qd_wgmma_ss(float* d, qd_u64 da, qd_u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87"
      "}, %88, %89, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "l"(da), "l"(db), "r"(scale_d));
}
#endif
#if BLOCK_N == 192
static __device__ __forceinline__ void qd_wgmma_ss(float* d, qd_u64 da, qd_u64 db, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
      "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
      "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95"
      "}, %96, %97, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
        "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
        "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
        "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
        "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(da), "l"(db), "r"(scale_d));
}
#endif
#if PV_N == 64
static __device__ __forceinline__ void qd_wgmma_rs(float* d, const qd_u32* a, qd_u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}
#endif
#if PV_N == 128
static __device__ __forceinline__ void qd_wgmma_rs(float* d, const qd_u32* a, qd_u64 db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(1));
}
#endif

static __device__ __forceinline__ qd_u32 qd_pack_bf16(float lo, float hi) {
  qd_u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}
static __device__ __forceinline__ float qd_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* Consumer state: one warpgroup's 64 rows; each thread holds rows g and g+8 of its warp's 16. */
struct qd_consumer {
  float o[HEAD_DIM / 2];
  float s[BLOCK_N / 2];
  qd_u32 pa[BLOCK_N / 16][4];
  float m_run[2], l_run[2];
};

/* S = Q K^T for the stage at sK (descriptors: Q rows of this warpgroup, K tile). */
static __device__ __forceinline__ void qd_issue_qk(qd_consumer& c, qd_u32 sQw, qd_u32 sKt) {
#pragma unroll
  for (int kk = 0; kk < HEAD_DIM / 16; ++kk) {
    const qd_u32 koff = (kk % 4) * 32; /* k16 step inside the 128-byte swizzle atom */
    qd_u64 da = qd_desc(sQw + (kk / 4) * QD_Q_BYTES / QD_HALVES + koff, 16, 1024);
    qd_u64 db = qd_desc(sKt + (kk / 4) * QD_KV_BYTES / QD_HALVES + koff, 16, 1024);
    qd_wgmma_ss(c.s, da, db, kk > 0);
  }
}

/* O += P V for the stage at sV. */
static __device__ __forceinline__ void qd_issue_pv(qd_consumer& c, qd_u32 sVt) {
#pragma unroll
  for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
#if PV_N == 128
    qd_wgmma_rs(c.o, c.pa[kk], qd_desc(sVt + kk * 2048, QD_KV_BYTES / QD_HALVES, 1024));
#else
#pragma unroll
    for (int hf = 0; hf < QD_HALVES; ++hf)
      qd_wgmma_rs(c.o + hf * 32, c.pa[kk], qd_desc(sVt + hf * (QD_KV_BYTES / QD_HALVES) + kk * 2048, 64, 1024));
#endif
  }
}

/* Masks, the running maximum and the exponentials of the tile in c.s; returns nothing but leaves p in c.s, the
 * factor that rescales earlier rows in alpha[2] and adds this tile's row sums to l_run (already rescaled). */
static __device__ __forceinline__ void qd_softmax(qd_consumer& c, float* alpha, int n0, int row0, int sk,
                                                  float sl) {
  const int lane = threadIdx.x & 31, c4 = lane & 3;
  const bool need_mask = CAUSAL || (n0 + BLOCK_N > sk);
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    const int row = row0 + 8 * hr;
    (void)row;
    float mx = QD_NEG_INF;
#pragma unroll
    for (int nb = 0; nb < BLOCK_N / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float x = c.s[nb * 4 + hr * 2 + e];
        if (need_mask) {
          const int col = n0 + nb * 8 + 2 * c4 + e;
          bool masked = col >= sk;
#if CAUSAL
          masked = masked || col > row;
#endif
          if (masked) x = QD_NEG_INF;
          c.s[nb * 4 + hr * 2 + e] = x;
        }
        mx = fmaxf(mx, x);
      }
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(c.m_run[hr], mx * sl);
    const float m_use = m_new == QD_NEG_INF ? 0.f : m_new;
    alpha[hr] = qd_exp2(c.m_run[hr] - m_use);
    c.m_run[hr] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int nb = 0; nb < BLOCK_N / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        float pv = qd_exp2(fmaf(c.s[nb * 4 + hr * 2 + e], sl, -m_use));
        c.s[nb * 4 + hr * 2 + e] = pv;
        sum += pv;
      }
    }
    c.l_run[hr] = c.l_run[hr] * alpha[hr] + sum;
  }
}

static __device__ __forceinline__ void qd_rescale_o(qd_consumer& c, const float* alpha) {
#pragma unroll
  for (int nb = 0; nb < HEAD_DIM / 8; ++nb) {
    c.o[nb * 4 + 0] *= alpha[0];
    c.o[nb * 4 + 1] *= alpha[0];
    c.o[nb * 4 + 2] *= alpha[1];
    c.o[nb * 4 + 3] *= alpha[1];
  }
}

/* The S accumulator layout, two n8 blocks per k16 step, is the register A-fragment layout of the P V wgmma. */
static __device__ __forceinline__ void qd_pack_p(qd_consumer& c) {
#pragma unroll
  for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
    c.pa[kk][0] = qd_pack_bf16(c.s[8 * kk + 0], c.s[8 * kk + 1]);
    c.pa[kk][1] = qd_pack_bf16(c.s[8 * kk + 2], c.s[8 * kk + 3]);
    c.pa[kk][2] = qd_pack_bf16(c.s[8 * kk + 4], c.s[8 * kk + 5]);
    c.pa[kk][3] = qd_pack_bf16(c.s[8 * kk + 6], c.s[8 * kk + 7]);
  }
}

static __device__ __forceinline__ void qd_release(qd_u32 bar) {
  __syncwarp();
  if ((threadIdx.x & 31) == 0) qd_mbar_arrive(bar);
}

extern "C" __global__ void __launch_bounds__(QD_THREADS, 1)
    qd_attention_fwd_sm90(const __grid_constant__ qd_attention_sm90_params p) {
  extern __shared__ __align__(1024) unsigned char qd_smem[];
  const qd_u32 base = (qd_smem_addr(qd_smem) + 1023u) & ~1023u;
  const qd_u32 sQ = base;
  const qd_u32 sK = sQ + QD_Q_BYTES;
  const qd_u32 sV = sK + STAGES * QD_KV_BYTES;
  const qd_u32 bars = sV + STAGES * QD_KV_BYTES;
  /* bars: [0] Q full, then per stage K full, V full, K empty, V empty. */
#define QD_BAR_Q bars
#define QD_BAR_KF(s) (bars + 8 + 32 * (s))
#define QD_BAR_VF(s) (bars + 16 + 32 * (s))
#define QD_BAR_KE(s) (bars + 24 + 32 * (s))
#define QD_BAR_VE(s) (bars + 32 + 32 * (s))

  const int tid = threadIdx.x, wg = tid >> 7;
  const int m0 = blockIdx.x * QD_BLOCK_M;
  const int h = blockIdx.y, b = blockIdx.z;
  int kv_len = p.sk;
#if CAUSAL
  kv_len = min(kv_len, m0 + QD_BLOCK_M);
#endif
  const int n_blocks = (kv_len + BLOCK_N - 1) / BLOCK_N;

  if (tid == 0) {
    qd_mbar_init(QD_BAR_Q, 1);
#pragma unroll
    for (int s = 0; s < STAGES; ++s) {
      qd_mbar_init(QD_BAR_KF(s), 1);
      qd_mbar_init(QD_BAR_VF(s), 1);
      qd_mbar_init(QD_BAR_KE(s), 8); /* one arrival per consumer warp */
      qd_mbar_init(QD_BAR_VE(s), 8);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    /* Producer. */
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
    if (tid == 0) {
      const int ch0 = h * HEAD_DIM;
      qd_mbar_expect_tx(QD_BAR_Q, QD_Q_BYTES);
#pragma unroll
      for (int hf = 0; hf < QD_HALVES; ++hf)
        qd_tma_load_3d(sQ + hf * (QD_Q_BYTES / QD_HALVES), &p.tq, ch0 + hf * 64, m0, b, QD_BAR_Q);
      for (int j = 0; j < n_blocks; ++j) {
        const int st = j % STAGES, ph = (j / STAGES) & 1, n0 = j * BLOCK_N;
        qd_mbar_wait(QD_BAR_KE(st), ph ^ 1);
        qd_mbar_expect_tx(QD_BAR_KF(st), QD_KV_BYTES);
#pragma unroll
        for (int hf = 0; hf < QD_HALVES; ++hf)
          qd_tma_load_3d(sK + st * QD_KV_BYTES + hf * (QD_KV_BYTES / QD_HALVES), &p.tk, ch0 + hf * 64, n0, b,
                         QD_BAR_KF(st));
        qd_mbar_wait(QD_BAR_VE(st), ph ^ 1);
        qd_mbar_expect_tx(QD_BAR_VF(st), QD_KV_BYTES);
#pragma unroll
        for (int hf = 0; hf < QD_HALVES; ++hf)
          qd_tma_load_3d(sV + st * QD_KV_BYTES + hf * (QD_KV_BYTES / QD_HALVES), &p.tv, ch0 + hf * 64, n0, b,
                         QD_BAR_VF(st));
      }
    }
    return;
  }

  /* Consumers. */
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n" ::: "memory");
  const int cw = wg - 1, wtid = tid & 127, warp = wtid >> 5, lane = tid & 31;
  const int g = lane >> 2, c4 = lane & 3;
  const qd_u32 sQw = sQ + cw * 64 * 128; /* this warpgroup's 64 rows inside each 64-channel half */
  const int row0 = m0 + cw * 64 + warp * 16 + g; /* query index of the thread's first row */
  const float sl = p.scale_log2;

  qd_consumer c;
#pragma unroll
  for (int i = 0; i < HEAD_DIM / 2; ++i) c.o[i] = 0.f;
  c.m_run[0] = c.m_run[1] = QD_NEG_INF;
  c.l_run[0] = c.l_run[1] = 0.f;
  float alpha[2];

#if PINGPONG
  /* Named barriers 3 and 4 hand the tensor cores back and forth: a warpgroup issues its wgmmas only on its
   * turn (bar.sync on its own barrier, which the other warpgroup's bar.arrive completes) and passes the turn
   * right after issuing, so one warpgroup's softmax runs while the other's matrix products do. Warpgroup 1
   * gives warpgroup 0 the first turn and does not pass its last one, so every arrival is matched. */
#define QD_TURN_WAIT() asm volatile("bar.sync %0, 256;\n" ::"r"(3 + cw) : "memory")
#define QD_TURN_PASS() asm volatile("bar.arrive %0, 256;\n" ::"r"(4 - cw) : "memory")
  if (cw == 1) QD_TURN_PASS();
#else
#define QD_TURN_WAIT()
#define QD_TURN_PASS()
#endif

  qd_mbar_wait(QD_BAR_Q, 0);
#if OVERLAP
  /* Tile 0: scores only; its P V is issued with the next tile's scores. */
  qd_mbar_wait(QD_BAR_KF(0), 0);
  QD_TURN_WAIT();
  qd_wgmma_fence();
  qd_issue_qk(c, sQw, sK);
  qd_wgmma_commit();
  QD_TURN_PASS();
  qd_wgmma_wait<0>();
  qd_fence_regs<BLOCK_N / 2>(c.s);
  qd_release(QD_BAR_KE(0));
  qd_softmax(c, alpha, 0, row0, p.sk, sl);
  qd_pack_p(c);
  for (int j = 1; j < n_blocks; ++j) {
    const int st = j % STAGES, ph = (j / STAGES) & 1;
    const int sp = (j - 1) % STAGES, pp = ((j - 1) / STAGES) & 1;
    /* Both waits first: nothing between the two issues, so they run back to back on the tensor cores. */
    qd_mbar_wait(QD_BAR_KF(st), ph);
    qd_mbar_wait(QD_BAR_VF(sp), pp);
    QD_TURN_WAIT();
    qd_wgmma_fence();
    qd_issue_qk(c, sQw, sK + st * QD_KV_BYTES);
    qd_wgmma_commit();
    qd_issue_pv(c, sV + sp * QD_KV_BYTES);
    qd_wgmma_commit();
    QD_TURN_PASS();
    qd_wgmma_wait<1>();
    qd_fence_regs<BLOCK_N / 2>(c.s);
    qd_release(QD_BAR_KE(st));
    qd_softmax(c, alpha, j * BLOCK_N, row0, p.sk, sl);
    qd_wgmma_wait<0>();
    qd_fence_regs<HEAD_DIM / 2>(c.o);
    qd_release(QD_BAR_VE(sp));
    qd_rescale_o(c, alpha);
    qd_pack_p(c);
  }
  {
    const int sp = (n_blocks - 1) % STAGES, pp = ((n_blocks - 1) / STAGES) & 1;
    qd_mbar_wait(QD_BAR_VF(sp), pp);
    QD_TURN_WAIT();
    qd_wgmma_fence();
    qd_issue_pv(c, sV + sp * QD_KV_BYTES);
    qd_wgmma_commit();
    if (cw == 0) QD_TURN_PASS();
    qd_wgmma_wait<0>();
    qd_fence_regs<HEAD_DIM / 2>(c.o);
    qd_release(QD_BAR_VE(sp));
  }
#else
  for (int j = 0; j < n_blocks; ++j) {
    const int st = j % STAGES, ph = (j / STAGES) & 1;
    qd_mbar_wait(QD_BAR_KF(st), ph);
    qd_wgmma_fence();
    qd_issue_qk(c, sQw, sK + st * QD_KV_BYTES);
    qd_wgmma_commit();
    qd_wgmma_wait<0>();
    qd_fence_regs<BLOCK_N / 2>(c.s);
    qd_release(QD_BAR_KE(st));
    qd_softmax(c, alpha, j * BLOCK_N, row0, p.sk, sl);
    qd_rescale_o(c, alpha);
    qd_pack_p(c);
    qd_mbar_wait(QD_BAR_VF(st), ph);
    qd_wgmma_fence();
    qd_issue_pv(c, sV + st * QD_KV_BYTES);
    qd_wgmma_commit();
    qd_wgmma_wait<0>();
    qd_fence_regs<HEAD_DIM / 2>(c.o);
    qd_release(QD_BAR_VE(st));
  }
#endif

  /* Normalize and stage the rows in this warpgroup's part of the Q tile (every wgmma reading it has completed),
   * swizzled like the TMA tiles so the 4-byte writes of a quad's rows spread over the banks. */
  float inv[2];
#pragma unroll
  for (int hr = 0; hr < 2; ++hr) {
    float l = c.l_run[hr];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    inv[hr] = l > 0.f ? 1.f / l : 0.f;
  }
#pragma unroll
  for (int nb = 0; nb < HEAD_DIM / 8; ++nb) {
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int r = warp * 16 + g + 8 * hr; /* row within the warpgroup's 64 */
      const qd_u32 addr = sQw + (nb / 8) * (QD_Q_BYTES / QD_HALVES) + r * 128 + (((nb % 8) ^ (r & 7)) << 4) + c4 * 4;
      const qd_u32 v2 = qd_pack_bf16(c.o[nb * 4 + hr * 2] * inv[hr], c.o[nb * 4 + hr * 2 + 1] * inv[hr]);
      asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(addr), "r"(v2) : "memory");
    }
  }
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
  qd_bf16_t* og = p.o + b * p.o_batch_stride + h * HEAD_DIM;
  constexpr int CH = HEAD_DIM / 8; /* 16-byte chunks per row */
#pragma unroll
  for (int it = 0; it < 64 * CH / 128; ++it) {
    const int idx = it * 128 + wtid;
    const int r = idx / CH, ch = idx % CH;
    const int row = m0 + cw * 64 + r;
    if (row < p.sq) {
      const qd_u32 addr = sQw + (ch / 8) * (QD_Q_BYTES / QD_HALVES) + r * 128 + (((ch % 8) ^ (r & 7)) << 4);
      qd_u32 x0, x1, x2, x3;
      asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(x0), "=r"(x1), "=r"(x2), "=r"(x3)
                   : "r"(addr)
                   : "memory");
      qd_bf16_t* dst = og + (long long)row * p.o_row_stride + ch * 8;
      asm volatile("st.global.v4.b32 [%0], {%1,%2,%3,%4};\n" ::"l"(dst), "r"(x0), "r"(x1), "r"(x2), "r"(x3)
                   : "memory");
    }
  }
}
