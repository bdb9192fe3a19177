/* qd runtime: launchers for the non-GEMM, non-attention kernel templates of the FLUX transformer.
 *
 * One function per kernel: it takes the loaded function (runtime/cuda/kernel_module.h), the configuration the
 * function was compiled from (runtime/cuda/kernel_compile.h: the launcher reads its block size, vector width,
 * rows per block ... from there, so grid and kernel agree), the stream, device pointers and sizes. It checks
 * everything it can before touching the driver, computes the grid and launches; it does not synchronize.
 *
 *   template                kernel(s)                                 launcher
 *   layernorm_modulate.cu   qd_layernorm_modulate | qd_layer_norm     qd_launch_layernorm
 *   qk_norm_rope.cu         qd_qk_norm_rope                           qd_launch_qk_norm_rope
 *   gated_residual.cu       qd_gated_residual                         qd_launch_gated_residual
 *   elementwise.cu          qd_ew_unary                               qd_launch_ew_unary
 *                           qd_ew_binary                              qd_launch_ew_binary
 *                           qd_ew_bias_act                            qd_launch_ew_bias_act
 *                           qd_ew_f32_to_bf16 | qd_ew_bf16_to_f32     qd_launch_ew_convert
 *   nf4_dequant.cu          qd_nf4_dequant                            qd_launch_nf4_dequant
 *   small_ops.cu            qd_timestep_embedding                     qd_launch_timestep_embedding
 *                           qd_rope_freqs                             qd_launch_rope_freqs
 *                           qd_silu_vec                               qd_launch_silu_vec
 *                           qd_copy_rows                              qd_launch_slice, qd_launch_concat
 * qd_kernel_function_name() gives the kernel a configuration compiles for a launcher, and each template's header
 * comment documents its math, layouts and parameters.
 *
 * Conventions: activations are bf16 in device memory, row-major with the channel axis last; sizes are elements
 * unless a name says bytes; a pointer may be 0 only where a field says so. In-place use (y equal to an input)
 * is allowed where a field says so.
 * Ownership: nothing here allocates or keeps a pointer past the call; device buffers are the caller's and must
 * stay valid until the stream has run the kernel.
 * Errors (all before any driver call): INVALID_ARGUMENT when the function or configuration belongs to another
 * kernel; KERNEL_ARG_NULL, KERNEL_ARG_ALIGNMENT, KERNEL_ARG_SHAPE for the arguments; then qd_kernel_launch's.
 */
#ifndef QD_RUNTIME_CUDA_KERNELS_H
#define QD_RUNTIME_CUDA_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_kernel_op {
  QD_KERNEL_LAYERNORM,        /* layernorm_modulate.cu, either kernel (LN_MODULATE picks) */
  QD_KERNEL_QK_NORM_ROPE,
  QD_KERNEL_GATED_RESIDUAL,
  QD_KERNEL_EW_UNARY,
  QD_KERNEL_EW_BINARY,
  QD_KERNEL_EW_BIAS_ACT,
  QD_KERNEL_EW_F32_TO_BF16,
  QD_KERNEL_EW_BF16_TO_F32,
  QD_KERNEL_NF4_DEQUANT,
  QD_KERNEL_TIMESTEP_EMBEDDING,
  QD_KERNEL_ROPE_FREQS,
  QD_KERNEL_SILU_VEC,
  QD_KERNEL_COPY_ROWS,
  QD_KERNEL_OP_COUNT_
} qd_kernel_op_t;

/* The template file of an op ("elementwise.cu"), and the kernel function a configuration of that template
 * defines for the op ("qd_layer_norm" when LN_MODULATE is 0). NULL for an unknown op or a configuration of
 * another template. */
const char* qd_kernel_template_name(qd_kernel_op_t op);
const char* qd_kernel_function_name(qd_kernel_op_t op, const qd_kernel_config_t* config);

/* ---- layernorm_modulate.cu ---------------------------------------------------------------------------------- */
typedef struct qd_layernorm_args {
  CUdeviceptr y, x;          /* [rows, cols]; y may be x */
  CUdeviceptr shift, scale;  /* LN_MODULATE = 1: rows of [batch, *] with batch stride mod_stride */
  int64_t mod_stride;
  CUdeviceptr weight, bias;  /* LN_MODULATE = 0: [cols] each; weight 0 = no affine; bias 0 = none */
  int64_t rows;              /* batch * tokens */
  int64_t tokens;            /* rows per batch (LN_MODULATE = 1) */
  int64_t cols;
  float eps;
} qd_layernorm_args_t;
qd_status_t qd_launch_layernorm(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                const qd_layernorm_args_t* args);

/* ---- qk_norm_rope.cu ---------------------------------------------------------------------------------------- */
typedef struct qd_qk_norm_rope_args {
  CUdeviceptr y, x;          /* [batch, tokens, heads * head_dim] with the strides below; y may be x */
  CUdeviceptr weight;        /* [head_dim]; 0 = weight 1 */
  CUdeviceptr freqs;         /* fp32 [2, rope_tokens, head_dim]; 0 = no rotation */
  int64_t x_row_stride, x_batch_stride, y_row_stride, y_batch_stride;
  int64_t batch, tokens, heads, head_dim; /* head_dim must equal the configuration's QKR_HEAD_DIM */
  int64_t rope_tokens, rope_offset;       /* token s of x uses rope row rope_offset + s */
  float eps;
} qd_qk_norm_rope_args_t;
qd_status_t qd_launch_qk_norm_rope(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                   CUstream stream, const qd_qk_norm_rope_args_t* args);

/* ---- gated_residual.cu -------------------------------------------------------------------------------------- */
typedef struct qd_gated_residual_args {
  CUdeviceptr y, residual, x; /* [rows, cols]; y may be residual or x */
  CUdeviceptr gate;           /* rows of [batch, *] with batch stride gate_stride */
  int64_t gate_stride;
  int64_t rows, tokens, cols;
} qd_gated_residual_args_t;
qd_status_t qd_launch_gated_residual(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                     CUstream stream, const qd_gated_residual_args_t* args);

/* ---- elementwise.cu ----------------------------------------------------------------------------------------- */
/* y[i] = op(x[i]), n elements (any n); factor is used by EW_OP = 5 (scale). y may be x. */
qd_status_t qd_launch_ew_unary(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                               CUdeviceptr y, CUdeviceptr x, int64_t n, float factor);
/* y[r, c] = a[r, c] (+|*) b[(r / tokens) * b_stride + c]; [rows, cols]; y may be a. */
qd_status_t qd_launch_ew_binary(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                CUdeviceptr y, CUdeviceptr a, CUdeviceptr b, int64_t b_stride, int64_t rows,
                                int64_t tokens, int64_t cols);
/* y[r, c] = op(x[r, c] + bias[c]); y may be x. */
qd_status_t qd_launch_ew_bias_act(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                  CUdeviceptr y, CUdeviceptr x, CUdeviceptr bias, int64_t rows, int64_t cols,
                                  float factor);
/* fp32 -> bf16 or bf16 -> fp32 (whichever kernel fn is), n elements. */
qd_status_t qd_launch_ew_convert(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                 CUdeviceptr y, CUdeviceptr x, int64_t n);

/* ---- nf4_dequant.cu ----------------------------------------------------------------------------------------- */
typedef struct qd_nf4_dequant_args {
  CUdeviceptr y;             /* bf16 [n] */
  CUdeviceptr packed;        /* ceil(n / 2) bytes */
  CUdeviceptr absmax;        /* fp32 [blocks]            (NF4_DOUBLE_QUANT = 0) */
  CUdeviceptr absmax_codes;  /* uint8 [blocks]           (NF4_DOUBLE_QUANT = 1) */
  CUdeviceptr nested_absmax; /* fp32 [ceil(blocks/256)]  (NF4_DOUBLE_QUANT = 1) */
  CUdeviceptr nested_code;   /* fp32 [256]               (NF4_DOUBLE_QUANT = 1) */
  float offset;              /*                          (NF4_DOUBLE_QUANT = 1) */
  int64_t n;
  int64_t blocksize;         /* a power of two, 32..4096 */
} qd_nf4_dequant_args_t;
qd_status_t qd_launch_nf4_dequant(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                  const qd_nf4_dequant_args_t* args);

/* ---- small_ops.cu ------------------------------------------------------------------------------------------- */
/* t fp32 [batch] -> y bf16 [batch, dim]; the attributes of the timestep_embedding op. */
qd_status_t qd_launch_timestep_embedding(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                         CUstream stream, CUdeviceptr y, CUdeviceptr t, int64_t batch, int64_t dim,
                                         bool flip_sin_to_cos, float downscale_freq_shift, float input_scale,
                                         float max_period);
/* ids fp32 [tokens, n_axes] -> y fp32 [2, tokens, sum(axes)]; 1..8 axes, each even and positive. */
qd_status_t qd_launch_rope_freqs(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                 CUdeviceptr y, CUdeviceptr ids, int64_t tokens, const int64_t* axes, int32_t n_axes,
                                 double theta);
/* y = silu(x), bf16 [n]; y may be x. */
qd_status_t qd_launch_silu_vec(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                               CUdeviceptr y, CUdeviceptr x, int64_t n);
/* y = x[..., start:start+size, ...] along an axis, as qd_ref_slice (outer = product of the dims before the axis,
 * inner = after); any element size in bytes. */
qd_status_t qd_launch_slice(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                            CUdeviceptr y, CUdeviceptr x, int64_t outer, int64_t axis_dim, int64_t inner,
                            int64_t start, int64_t size, int64_t elem_size);
/* y = the inputs joined along an axis, as qd_ref_concat; 1..8 inputs, sizes[i] = input i's extent on the axis. */
qd_status_t qd_launch_concat(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                             CUdeviceptr y, const CUdeviceptr* inputs, const int64_t* sizes, int32_t count,
                             int64_t outer, int64_t inner, int64_t elem_size);
/* y's rows get 1..8 contiguous [rows, row_bytes[i]] inputs side by side, input i at byte dst_cols[i] of each row of
 * y_row_bytes (a concat into rows wider than its inputs: the executor packs a step's conditioning with it). */
qd_status_t qd_launch_pack_rows(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                CUdeviceptr y, int64_t y_row_bytes, int64_t rows, const CUdeviceptr* inputs,
                                const int64_t* row_bytes, const int64_t* dst_cols, int32_t count);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNELS_H */
