/* qd runtime: the attention kernel family (kernels/templates/attention.cu and attention_sm90.cu): variants, the
 * NVRTC defines that build them, and the launcher.
 *
 * o = softmax(q k^T * scale [+ bias] [causal mask]) v per batch and head, bf16 in and out, fp32 inside.
 * q [B, Sq, H*D], k and v [B, Sk, H*D], o [B, Sq, H*D] (elements; token-major, heads interleaved in the channels,
 * as the linear layers produce them), each with its own row and batch stride so that q, k and v may be slices
 * of one fused QKV activation. bias (optional) is fp32 [Bb, Hb, Sq, Sk], dense, Bb in {1, B}, Hb in {1, H}.
 * causal: query i sees keys 0..i (top-left aligned), as qd_ref_attention (runtime/cpu/ref.h).
 *
 * Two kernels:
 *   QD_ATTENTION_MMA    attention.cu: FlashAttention-2 style on mma.sync; any sm_80+ GPU; causal and bias.
 *   QD_ATTENTION_WGMMA  attention_sm90.cu: FlashAttention-3 style (wgmma, TMA, warp specialization); sm_90a
 *                       only (compute capability 9.0); causal, no bias.
 * A variant is one set of compile-time parameters. Build one with NVRTC: source = the template named by
 * qd_attention_template_file(), target = qd_attention_target_arch(), options = qd_attention_variant_defines();
 * load the cubin and take the function named by qd_attention_kernel_name(); then qd_attention_launch() it.
 *
 * Ownership: nothing here allocates or keeps pointers. The launcher reads the variant and the arguments during
 * the call only; device buffers belong to the caller and must stay valid until the stream has run the kernel.
 */
#ifndef QD_RUNTIME_CUDA_ATTENTION_H
#define QD_RUNTIME_CUDA_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cuda_driver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_attention_kernel {
  QD_ATTENTION_MMA = 0,   /* attention.cu */
  QD_ATTENTION_WGMMA = 1, /* attention_sm90.cu */
} qd_attention_kernel_t;

/* Compile-time parameters; the valid values are listed per field (qd_attention_variant_validate checks them). */
typedef struct qd_attention_variant {
  qd_attention_kernel_t kernel;
  int head_dim;   /* MMA: 64, 128, 192, 256; WGMMA: 64, 128. The value head dim equals it */
  int block_m;    /* queries per CTA. MMA: num_warps * 16 or num_warps * 32; WGMMA: 128 */
  int block_n;    /* keys per tile. MMA: 32, 64, 128; WGMMA: 64, 128, 176, 192 */
  int num_warps;  /* MMA: 4 or 8; WGMMA: 12 (one producer and two consumer warpgroups) */
  int stages;     /* K/V tiles in shared memory: 2, 3, 4 (the launch fails when the device has too little) */
  int q_in_regs;  /* MMA: 1 keeps Q fragments in registers, 0 re-reads them from shared memory; WGMMA: 0 */
  int min_blocks; /* MMA: __launch_bounds__ minimum CTAs per SM, 1..4; WGMMA: 1 */
  int overlap;    /* WGMMA: 1 overlaps the softmax with the P V wgmma, 0 does not; MMA: 0 */
  int pv_n;       /* WGMMA: N of the P V wgmma, 64 or head_dim; MMA: 0 */
  int pingpong;   /* WGMMA: 1 alternates the two consumer warpgroups' wgmma issue (needs overlap); MMA: 0 */
  bool causal;
  bool has_bias;  /* MMA only */
} qd_attention_variant_t;

/* The default variant of a kernel for a device of compute capability cc (major * 10 + minor, 90 for Hopper) and
 * a head dim: the fastest measured on an H200 for cc 9.0 (docs/attention.md), and for other devices one whose
 * shared memory fits their 99 KiB per block (not measured there). Autotuning may pick another. */
qd_attention_variant_t qd_attention_variant_default(qd_attention_kernel_t kernel, int cc, int head_dim, bool causal,
                                                    bool has_bias);

/* QD_OK when every field holds a valid value for its kernel, else INVALID_ARGUMENT naming the field (bias on
 * WGMMA: UNSUPPORTED). */
qd_status_t qd_attention_variant_validate(const qd_attention_variant_t* variant);

/* "attention.cu" / "attention_sm90.cu" (files under kernels/templates/) and "qd_attention_fwd" /
 * "qd_attention_fwd_sm90"; NULL for an unknown kernel. */
const char* qd_attention_template_file(qd_attention_kernel_t kernel);
const char* qd_attention_kernel_name(qd_attention_kernel_t kernel);

/* The NVRTC target for a device of compute capability cc_major.cc_minor: "sm_<major><minor>" for MMA (cc >= 8.0),
 * "sm_90a" for WGMMA (cc 9.0 only). Errors: UNSUPPORTED when the kernel cannot run on that device. */
qd_status_t qd_attention_target_arch(qd_attention_kernel_t kernel, int cc_major, int cc_minor, char* buf,
                                     size_t size);

/* The -D options that build a variant, as NUL-terminated strings inside *out (valid as long as it is). */
enum { QD_ATTENTION_MAX_DEFINES = 12 };
typedef struct qd_attention_defines {
  char text[QD_ATTENTION_MAX_DEFINES][32];
  const char* options[QD_ATTENTION_MAX_DEFINES]; /* pointers into text, for qd_nvrtc_compile_options_t */
  size_t count;
} qd_attention_defines_t;
qd_status_t qd_attention_variant_defines(const qd_attention_variant_t* variant, qd_attention_defines_t* out);

/* Launch shape of a (valid) variant: threads per CTA and dynamic shared memory in bytes. */
unsigned qd_attention_threads(const qd_attention_variant_t* variant);
size_t qd_attention_shared_bytes(const qd_attention_variant_t* variant);

/* One call's tensors. Strides are in elements; 0 selects the dense default (row stride heads * head_dim, batch
 * stride seq * row stride). Requirements: q, k, v, o 16-byte aligned; every stride a multiple of 8 and a row
 * stride >= heads * head_dim; bias 4-byte aligned and given exactly when the variant has_bias. */
typedef struct qd_attention_args {
  CUdeviceptr q, k, v, o; /* bf16 */
  CUdeviceptr bias;       /* fp32 [bias_batch, bias_heads, sq, sk], or 0 */
  int64_t batch, sq, sk, heads;
  int64_t q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int64_t q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  int64_t bias_batch, bias_heads; /* 1 or batch, 1 or heads */
  float scale;                    /* > 0; 0 selects 1 / sqrt(head_dim) */
} qd_attention_args_t;

/* Launches `function` (the variant's kernel, loaded in the current context) on `stream`: validates the variant
 * and the arguments, raises the function's dynamic shared memory limit when the variant needs more than 48 KiB,
 * encodes the TMA tensor maps for WGMMA, and enqueues one kernel. Nothing is synchronized.
 * Errors: INVALID_ARGUMENT (a dimension, stride, pointer or scale; the message names it), UNSUPPORTED (bias on
 * WGMMA), CUDA_DRIVER_ERROR (the attribute, the tensor map encoding or the launch). */
qd_status_t qd_attention_launch(const qd_cuda_driver_t* cu, CUfunction function,
                                const qd_attention_variant_t* variant, const qd_attention_args_t* args,
                                CUstream stream);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_ATTENTION_H */
