/* qd runtime: launchers for the text encoders' kernel templates (CLIP-L, T5-XXL) and their attention, which the
 * VAE's mid-block attention (one head of 512 channels) uses too.
 *
 * Same conventions as runtime/cuda/kernels.h: one function per kernel, taking the loaded function, the
 * configuration it was compiled from (block sizes and tiles are read from there, so grid and kernel agree), the
 * stream and an args struct whose fields are the op's shape and attributes (ir/ops.def). Everything is checked
 * before the driver is touched; nothing is synchronized.
 *
 *   template             kernel                  launcher                       op
 *   text_ops.cu          qd_embedding            qd_launch_embedding            embedding
 *                        qd_arange               qd_launch_arange               arange
 *                        qd_eos_pool             qd_launch_eos_pool             eos_pool
 *                        qd_t5_relative_bias     qd_launch_t5_relative_bias     t5_relative_bias
 *   attention_masked.cu  qd_attention_masked     qd_launch_attention_masked     attention (causal, bias, any scale)
 * Each template's header comment documents its math, layouts and parameters.
 *
 * Storage: bf16 activations and weights; ids I32 or I64; arange writes I32. t5_relative_bias writes its
 * [1, heads, S, S] output in bf16 (exact: the values are copies of the bf16 weight), and attention reads a bf16
 * bias (ATT_BIAS = 1; 2 reads fp32 for callers that keep a bias in fp32).
 *
 * Ownership: nothing here allocates or keeps a pointer past the call; device buffers are the caller's and must stay
 * valid until the stream has run the kernel.
 * Errors (all before any driver call): INVALID_ARGUMENT when the function or configuration belongs to another
 * kernel, or the configuration is not a valid combination; KERNEL_ARG_NULL, KERNEL_ARG_ALIGNMENT, KERNEL_ARG_SHAPE
 * for the arguments; UNSUPPORTED for a T5 bucket configuration the step table cannot express; then
 * qd_kernel_launch's (KERNEL_LAUNCH_CONFIG when the function was not allowed the shared memory it needs).
 */
#ifndef QD_RUNTIME_CUDA_KERNELS_TEXT_H
#define QD_RUNTIME_CUDA_KERNELS_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_text_kernel_op {
  QD_TEXT_KERNEL_EMBEDDING,
  QD_TEXT_KERNEL_ARANGE,
  QD_TEXT_KERNEL_EOS_POOL,
  QD_TEXT_KERNEL_T5_RELATIVE_BIAS,
  QD_TEXT_KERNEL_ATTENTION_MASKED,
  QD_TEXT_KERNEL_OP_COUNT_
} qd_text_kernel_op_t;

/* The template file of an op ("text_ops.cu"), and the kernel a configuration of that template defines for it; NULL
 * for an unknown op or a configuration of another template. */
const char* qd_text_kernel_template_name(qd_text_kernel_op_t op);
const char* qd_text_kernel_function_name(qd_text_kernel_op_t op, const qd_kernel_config_t* config);

/* ---- text_ops.cu --------------------------------------------------------------------------------------------- */

/* The value *error holds after an embedding launch in which every id was in range. */
#define QD_EMBEDDING_NO_ERROR UINT64_MAX

/* y[i, :] = weight[ids[i], :] for i < n (the ids' element count). An id outside [0, vocab) is not read: its row of
 * y becomes zeros and atomicMin records i in *error. The caller sets *error to QD_EMBEDDING_NO_ERROR (cuMemsetD8
 * with 0xFF) before the launch and reads it after the stream has run: any other value is the index of the first bad
 * id, to report as the CPU executor does (INPUT_VALUE). */
typedef struct qd_embedding_args {
  CUdeviceptr y;      /* bf16 [n, features] */
  CUdeviceptr ids;    /* I32 or I64 [n] */
  int64_t id_bytes;   /* 4 (I32) or 8 (I64) */
  CUdeviceptr weight; /* bf16 [vocab, features] */
  CUdeviceptr error;  /* uint64, 8-byte aligned; required */
  int64_t n, vocab, features;
} qd_embedding_args_t;
qd_status_t qd_launch_embedding(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                                const qd_embedding_args_t* args);

/* y[i] = i, I32 [n] (the op's n is its input's extent on `axis`). */
qd_status_t qd_launch_arange(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                             CUdeviceptr y, int64_t n);

/* y[b, :] = x[b, s, :] at the first s with ids[b, s] == token, or s = 0 when there is none. */
typedef struct qd_eos_pool_args {
  CUdeviceptr y;    /* bf16 [batch, ch] */
  CUdeviceptr x;    /* bf16 [batch, tokens, ch] */
  CUdeviceptr ids;  /* I32 or I64 [batch, tokens] */
  int64_t id_bytes; /* 4 or 8 */
  int64_t batch, tokens, ch;
  int64_t token;    /* the op's `token` attribute */
} qd_eos_pool_args_t;
qd_status_t qd_launch_eos_pool(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                               const qd_eos_pool_args_t* args);

/* y[h, i, j] = weight[bucket(j - i), h], bf16 [heads, tokens, tokens]; the op's attributes. The launcher evaluates
 * qd_ref_t5_bucket (runtime/cpu/ref.h) for every distance below `tokens` (O(tokens) host work per launch) and
 * hands the kernel the distances where the logarithmic bucket steps up, so device and CPU agree bit for bit;
 * UNSUPPORTED when they are more than 255 or not ascending (neither happens for T5's configurations). */
typedef struct qd_t5_relative_bias_args {
  CUdeviceptr y;      /* bf16 [heads, tokens, tokens] */
  CUdeviceptr weight; /* bf16 [buckets, heads] */
  int64_t tokens, heads, buckets, max_distance;
  bool bidirectional;
} qd_t5_relative_bias_args_t;
qd_status_t qd_launch_t5_relative_bias(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                       CUstream stream, const qd_t5_relative_bias_args_t* args);

/* ---- attention_masked.cu ------------------------------------------------------------------------------------- */

/* QD_OK when the configuration is a combination the template compiles (ATT_BLOCK_N / ATT_WARPS_D and HEAD_DIM /
 * ATT_WARPS_D multiples of 16); INVALID_ARGUMENT naming the parameters otherwise. */
qd_status_t qd_attention_masked_config_check(const qd_kernel_config_t* config);
/* Dynamic shared memory a launch of the configuration takes, in bytes (0 for an invalid configuration). Above 48
 * KiB the caller allows it once after loading: qd_kernel_function_set_max_dynamic_shared(fn, bytes). */
size_t qd_attention_masked_shared_bytes(const qd_kernel_config_t* config);
/* Threads per block and query rows per block of a (valid) configuration. */
unsigned qd_attention_masked_threads(const qd_kernel_config_t* config);
unsigned qd_attention_masked_block_m(const qd_kernel_config_t* config);

/* o = softmax(q k^T * scale [+ bias] [causal]) v per batch and head, for the attention op: q [batch, sq, heads *
 * head_dim] (head_dim = q's channels / the heads attribute), k and v [batch, sk, heads * head_dim]. Strides are
 * elements; 0 selects the dense default (row stride heads * head_dim, batch stride rows * row stride). bias (the
 * op's 4th input) is [bias_batch, bias_heads, sq, sk], dense, bias_batch in {1, batch}, bias_heads in {1, heads};
 * given exactly when the configuration has ATT_BIAS != 0. causal must equal the configuration's ATT_CAUSAL (and
 * needs sq == sk). scale is the op's attribute: 0 selects head_dim^-0.5, T5 passes 1.
 * Requirements: head_dim == HEAD_DIM; q, k, v, o 16-byte aligned, strides multiples of 8, row strides at least
 * heads * head_dim; bias aligned to its element (2 or 4 bytes). */
typedef struct qd_attention_masked_args {
  CUdeviceptr q, k, v, o; /* bf16 */
  CUdeviceptr bias;       /* bf16 (ATT_BIAS = 1) or fp32 (ATT_BIAS = 2), or 0 */
  int64_t batch, sq, sk, heads, head_dim;
  int64_t q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int64_t q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  int64_t bias_batch, bias_heads;
  float scale;
  bool causal;
} qd_attention_masked_args_t;
qd_status_t qd_launch_attention_masked(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                       CUstream stream, const qd_attention_masked_args_t* args);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNELS_TEXT_H */
