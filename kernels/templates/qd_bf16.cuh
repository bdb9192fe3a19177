/* qd kernel header: bf16 on the bits, for every template that moves bf16 activations (NVRTC hands it to each
 * compile by name: #include "qd_bf16.cuh"; runtime/cuda/kernel_compile.c). No toolkit header is needed: loads and
 * stores are 2-, 4-, 8- or 16-byte accesses of raw words, widening is a shift, and rounding to bf16 is PTX's
 * round-to-nearest-even cvt (sm_80 and newer). A template's variant key hashes this file too
 * (qd_kernel_source_digest), so a change here never lets a plan load images built from the old text. */
#pragma once

typedef unsigned short qd_bf16; /* raw bf16 bits */

__device__ __forceinline__ float qd_bf16_lo(unsigned int w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float qd_bf16_hi(unsigned int w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ unsigned int qd_pack_bf16x2(float lo, float hi) {
  unsigned int r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); /* first source -> upper half */
  return r;
}
__device__ __forceinline__ unsigned short qd_f32_to_bf16(float f) {
  unsigned short r;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
}

/* N bf16 held as loaded: N/2 32-bit words (one 2-, 4-, 8- or 16-byte access). */
template <int N>
struct qd_raw {
  unsigned int w[N / 2];
};
template <>
struct qd_raw<1> {
  unsigned short h;
};

template <int N>
__device__ __forceinline__ qd_raw<N> qd_load(const qd_bf16* p) {
  qd_raw<N> r;
  if constexpr (N == 8) {
    uint4 v = *reinterpret_cast<const uint4*>(p);
    r.w[0] = v.x, r.w[1] = v.y, r.w[2] = v.z, r.w[3] = v.w;
  } else if constexpr (N == 4) {
    uint2 v = *reinterpret_cast<const uint2*>(p);
    r.w[0] = v.x, r.w[1] = v.y;
  } else if constexpr (N == 2) {
    r.w[0] = *reinterpret_cast<const unsigned int*>(p);
  } else {
    r.h = *p;
  }
  return r;
}

template <int N>
__device__ __forceinline__ float qd_get(const qd_raw<N>& r, int i) {
  if constexpr (N == 1) {
    return __uint_as_float((unsigned int)r.h << 16);
  } else {
    return (i & 1) ? qd_bf16_hi(r.w[i >> 1]) : qd_bf16_lo(r.w[i >> 1]);
  }
}

template <int N>
__device__ __forceinline__ void qd_store(qd_bf16* p, const float* f) {
  if constexpr (N == 8) {
    *reinterpret_cast<uint4*>(p) = make_uint4(qd_pack_bf16x2(f[0], f[1]), qd_pack_bf16x2(f[2], f[3]),
                                              qd_pack_bf16x2(f[4], f[5]), qd_pack_bf16x2(f[6], f[7]));
  } else if constexpr (N == 4) {
    *reinterpret_cast<uint2*>(p) = make_uint2(qd_pack_bf16x2(f[0], f[1]), qd_pack_bf16x2(f[2], f[3]));
  } else if constexpr (N == 2) {
    *reinterpret_cast<unsigned int*>(p) = qd_pack_bf16x2(f[0], f[1]);
  } else {
    *p = qd_f32_to_bf16(f[0]);
  }
}
