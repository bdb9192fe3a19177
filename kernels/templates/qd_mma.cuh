/* qd kernel header: the PTX the mma.sync kernels share (attention.cu, attention_masked.cu, conv2d.cu): shared-memory
 * addresses, cp.async copies, ldmatrix fragment loads, the m16n8k16 bf16 mma with fp32 accumulators, and the bf16
 * pack and exp2 the attention kernels' softmax uses. sm_80 and newer. NVRTC hands it to each compile by name
 * (#include "qd_mma.cuh"; runtime/cuda/kernel_compile.c), and every template's variant key hashes it
 * (qd_kernel_source_digest), so a change here never lets a plan load images built from the old text. */
#pragma once

typedef unsigned int qd_u32;

static __device__ __forceinline__ qd_u32 qd_smem_addr(const void* p) { return (qd_u32)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, asynchronously; src_bytes < 16 zero-fills the rest (0: no global read at all). */
static __device__ __forceinline__ void qd_cp_async16(qd_u32 dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
static __device__ __forceinline__ void qd_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N committed groups are still in flight. */
template <int N>
static __device__ __forceinline__ void qd_cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Four 8x8 b16 matrices from shared memory, one row address per lane (lanes 8i..8i+7: matrix i). */
static __device__ __forceinline__ void qd_ldsm_x4(qd_u32 addr, qd_u32& r0, qd_u32& r1, qd_u32& r2, qd_u32& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr)
               : "memory");
}
/* The same, each matrix transposed. */
static __device__ __forceinline__ void qd_ldsm_x4_t(qd_u32 addr, qd_u32& r0, qd_u32& r1, qd_u32& r2, qd_u32& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr)
               : "memory");
}

/* c += a b: m16n8k16, bf16 inputs, fp32 accumulators. */
static __device__ __forceinline__ void qd_mma(float* c, const qd_u32* a, qd_u32 b0, qd_u32 b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* lo goes to the low half (the lower column), as the mma fragments expect. */
static __device__ __forceinline__ qd_u32 qd_pack_bf16(float lo, float hi) {
  qd_u32 r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  return r;
}

/* 2^x, the hardware approximation (denormal results flushed to zero). */
static __device__ __forceinline__ float qd_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
