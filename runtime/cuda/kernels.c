/* Launchers for the kernel templates: see runtime/cuda/kernels.h. Each one mirrors its template's header comment:
 * the same parameters, the same grid formula, the same requirements. */
#include "runtime/cuda/kernels.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cuda/launch_checks.h"

static const char* const qd_k_templates_[QD_KERNEL_OP_COUNT_] = {
    [QD_KERNEL_LAYERNORM] = "layernorm_modulate.cu",
    [QD_KERNEL_QK_NORM_ROPE] = "qk_norm_rope.cu",
    [QD_KERNEL_GATED_RESIDUAL] = "gated_residual.cu",
    [QD_KERNEL_EW_UNARY] = "elementwise.cu",
    [QD_KERNEL_EW_BINARY] = "elementwise.cu",
    [QD_KERNEL_EW_BIAS_ACT] = "elementwise.cu",
    [QD_KERNEL_EW_F32_TO_BF16] = "elementwise.cu",
    [QD_KERNEL_EW_BF16_TO_F32] = "elementwise.cu",
    [QD_KERNEL_NF4_DEQUANT] = "nf4_dequant.cu",
    [QD_KERNEL_TIMESTEP_EMBEDDING] = "small_ops.cu",
    [QD_KERNEL_ROPE_FREQS] = "small_ops.cu",
    [QD_KERNEL_SILU_VEC] = "small_ops.cu",
    [QD_KERNEL_COPY_ROWS] = "small_ops.cu",
};

static const char* const qd_k_functions_[QD_KERNEL_OP_COUNT_] = {
    [QD_KERNEL_LAYERNORM] = "qd_layernorm_modulate", /* or qd_layer_norm: see qd_kernel_function_name */
    [QD_KERNEL_QK_NORM_ROPE] = "qd_qk_norm_rope",
    [QD_KERNEL_GATED_RESIDUAL] = "qd_gated_residual",
    [QD_KERNEL_EW_UNARY] = "qd_ew_unary",
    [QD_KERNEL_EW_BINARY] = "qd_ew_binary",
    [QD_KERNEL_EW_BIAS_ACT] = "qd_ew_bias_act",
    [QD_KERNEL_EW_F32_TO_BF16] = "qd_ew_f32_to_bf16",
    [QD_KERNEL_EW_BF16_TO_F32] = "qd_ew_bf16_to_f32",
    [QD_KERNEL_NF4_DEQUANT] = "qd_nf4_dequant",
    [QD_KERNEL_TIMESTEP_EMBEDDING] = "qd_timestep_embedding",
    [QD_KERNEL_ROPE_FREQS] = "qd_rope_freqs",
    [QD_KERNEL_SILU_VEC] = "qd_silu_vec",
    [QD_KERNEL_COPY_ROWS] = "qd_copy_rows",
};

const char* qd_kernel_template_name(qd_kernel_op_t op) {
  return (unsigned)op < QD_KERNEL_OP_COUNT_ ? qd_k_templates_[op] : NULL;
}

const char* qd_kernel_function_name(qd_kernel_op_t op, const qd_kernel_config_t* config) {
  const char* tmpl = qd_kernel_template_name(op);
  if (!tmpl || !config || !config->template_name || strcmp(config->template_name, tmpl) != 0) return NULL;
  if (op == QD_KERNEL_LAYERNORM) {
    int modulate = 1;
    qd_status_t s = qd_kernel_config_get(config, "LN_MODULATE", &modulate);
    if (s) { /* a configuration not made by qd_kernel_config_init */
      qd_status_free(s);
      return NULL;
    }
    return modulate ? "qd_layernorm_modulate" : "qd_layer_norm";
  }
  return qd_k_functions_[op];
}

/* ---- checks -------------------------------------------------------------------------------------------------- */

/* The function and configuration belong to `op`. */
static qd_status_t qd_k_begin_(qd_kernel_op_t op, const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg) {
  return qd_launch_check_begin(qd_kernel_template_name(op), qd_kernel_function_name(op, cfg), fn, cfg, true);
}

/* ---- layernorm_modulate.cu ----------------------------------------------------------------------------------- */

qd_status_t qd_launch_layernorm(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                const qd_layernorm_args_t* a) {
  QD_TRY(qd_k_begin_(QD_KERNEL_LAYERNORM, fn, cfg));
  const char* k = fn->name;
  int modulate, threads, rows_per_block, vec;
  QD_TRY(qd_launch_check_params(cfg, "LN_MODULATE", &modulate, "LN_THREADS", &threads, "LN_ROWS", &rows_per_block, "LN_VEC", &vec,
                      NULL));
  char why[32];
  snprintf(why, sizeof why, "LN_VEC=%d", vec);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  QD_TRY(qd_launch_check_range(k, "rows", a->rows, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cols", a->cols, 1, INT_MAX));
  QD_TRY(qd_launch_check_multiple(k, "cols", a->cols, vec, why));
  const uint64_t align = (uint64_t)vec * 2;
  QD_TRY(qd_launch_check_align(k, "y", a->y, align, why));
  QD_TRY(qd_launch_check_align(k, "x", a->x, align, why));
  CUdeviceptr p0, p1;
  if (modulate) {
    QD_TRY(qd_launch_check_need(k, "shift", a->shift));
    QD_TRY(qd_launch_check_need(k, "scale", a->scale));
    QD_TRY(qd_launch_check_range(k, "tokens", a->tokens, 1, a->rows));
    QD_TRY(qd_launch_check_multiple(k, "rows", a->rows, a->tokens, "splitting rows into batches of `tokens`"));
    QD_TRY(qd_launch_check_align(k, "shift", a->shift, align, why));
    QD_TRY(qd_launch_check_align(k, "scale", a->scale, align, why));
    QD_TRY(qd_launch_check_stride(k, "mod_stride", a->mod_stride, vec, why));
    p0 = a->shift;
    p1 = a->scale;
  } else {
    if (a->bias && !a->weight)
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: a bias without a weight (the affine needs both or w)", k);
    if (a->weight) QD_TRY(qd_launch_check_align(k, "weight", a->weight, align, why));
    if (a->bias) QD_TRY(qd_launch_check_align(k, "bias", a->bias, align, why));
    p0 = a->weight;
    p1 = a->bias;
  }
  long long mod_stride = a->mod_stride;
  int rows = (int)a->rows, tokens = modulate ? (int)a->tokens : 1, cols = (int)a->cols;
  float eps = a->eps;
  qd_kernel_dim3_t grid = qd_launch_dim(qd_launch_blocks(a->rows, rows_per_block));
  qd_kernel_dim3_t block = qd_launch_dim((unsigned)(threads * rows_per_block));
  if (modulate) {
    void* params[] = {(void*)&a->y, (void*)&a->x, &p0, &p1, &mod_stride, &rows, &tokens, &cols, &eps};
    return qd_kernel_launch(fn, grid, block, 0, stream, params);
  }
  void* params[] = {(void*)&a->y, (void*)&a->x, &p0, &p1, &rows, &cols, &eps};
  return qd_kernel_launch(fn, grid, block, 0, stream, params);
}

/* ---- qk_norm_rope.cu ----------------------------------------------------------------------------------------- */

qd_status_t qd_launch_qk_norm_rope(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                   const qd_qk_norm_rope_args_t* a) {
  QD_TRY(qd_k_begin_(QD_KERNEL_QK_NORM_ROPE, fn, cfg));
  const char* k = fn->name;
  int head_dim, vec, block;
  QD_TRY(qd_launch_check_params(cfg, "QKR_HEAD_DIM", &head_dim, "QKR_VEC", &vec, "QKR_BLOCK", &block, NULL));
  char why[32];
  snprintf(why, sizeof why, "QKR_VEC=%d", vec);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  if (a->head_dim != head_dim)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: head_dim = %lld, but this variant is compiled for QKR_HEAD_DIM=%d",
                  k, (long long)a->head_dim, head_dim);
  QD_TRY(qd_launch_check_range(k, "batch", a->batch, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "tokens", a->tokens, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "heads", a->heads, 1, INT_MAX));
  if (a->batch * a->tokens > INT_MAX || a->batch * a->tokens * a->heads > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: batch * tokens * heads = %lld * %lld * %lld reaches 2^31",
                  k, (long long)a->batch, (long long)a->tokens, (long long)a->heads);
  const int64_t width = a->heads * head_dim;
  const uint64_t align = (uint64_t)vec * 2;
  QD_TRY(qd_launch_check_align(k, "y", a->y, align, why));
  QD_TRY(qd_launch_check_align(k, "x", a->x, align, why));
  QD_TRY(qd_launch_check_stride(k, "x_row_stride", a->x_row_stride, vec, why));
  QD_TRY(qd_launch_check_stride(k, "x_batch_stride", a->x_batch_stride, vec, why));
  QD_TRY(qd_launch_check_stride(k, "y_row_stride", a->y_row_stride, vec, why));
  QD_TRY(qd_launch_check_stride(k, "y_batch_stride", a->y_batch_stride, vec, why));
  /* Rows of y must not overlap, or two heads would race on the same elements. */
  QD_TRY(qd_launch_check_range(k, "y_row_stride", a->y_row_stride, a->tokens > 1 ? width : 0, INT64_MAX / 4));
  QD_TRY(qd_launch_check_range(k, "y_batch_stride", a->y_batch_stride, a->batch > 1 ? a->tokens * a->y_row_stride : 0,
                     INT64_MAX / 4));
  QD_TRY(qd_launch_check_range(k, "x_row_stride", a->x_row_stride, 0, INT64_MAX / 4));
  QD_TRY(qd_launch_check_range(k, "x_batch_stride", a->x_batch_stride, 0, INT64_MAX / 4));
  if (a->weight) QD_TRY(qd_launch_check_align(k, "weight", a->weight, align, why));
  int rope_tokens = 0, rope_offset = 0;
  if (a->freqs) {
    QD_TRY(qd_launch_check_align(k, "freqs", a->freqs, vec >= 4 ? 16 : 8, why));
    QD_TRY(qd_launch_check_range(k, "rope_offset", a->rope_offset, 0, INT_MAX - a->tokens));
    QD_TRY(qd_launch_check_range(k, "rope_tokens", a->rope_tokens, a->rope_offset + a->tokens, INT_MAX));
    rope_tokens = (int)a->rope_tokens;
    rope_offset = (int)a->rope_offset;
  }
  /* As in the template: lanes per head = min(32, next power of two >= head_dim / vec). */
  const int nv = head_dim / vec;
  int lanes = 1;
  while (lanes < nv && lanes < 32) lanes *= 2;
  const int heads_per_block = block / lanes;
  long long xr = a->x_row_stride, xb = a->x_batch_stride, yr = a->y_row_stride, yb = a->y_batch_stride;
  int batch = (int)a->batch, tokens = (int)a->tokens, heads = (int)a->heads;
  float eps = a->eps;
  void* params[] = {(void*)&a->y, (void*)&a->x, (void*)&a->weight, (void*)&a->freqs, &xr, &xb, &yr, &yb,
                    &batch, &tokens, &heads, &rope_tokens, &rope_offset, &eps};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(a->batch * a->tokens * a->heads, heads_per_block)),
                          qd_launch_dim((unsigned)block), 0, stream, params);
}

/* ---- gated_residual.cu --------------------------------------------------------------------------------------- */

qd_status_t qd_launch_gated_residual(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                     const qd_gated_residual_args_t* a) {
  QD_TRY(qd_k_begin_(QD_KERNEL_GATED_RESIDUAL, fn, cfg));
  const char* k = fn->name;
  int vec, threads, items;
  QD_TRY(qd_launch_check_params(cfg, "GR_VEC", &vec, "GR_THREADS", &threads, "GR_ITEMS", &items, NULL));
  char why[32];
  snprintf(why, sizeof why, "GR_VEC=%d", vec);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "residual", a->residual));
  QD_TRY(qd_launch_check_need(k, "gate", a->gate));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  QD_TRY(qd_launch_check_range(k, "rows", a->rows, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cols", a->cols, 1, INT_MAX / a->rows));
  QD_TRY(qd_launch_check_range(k, "tokens", a->tokens, 1, a->rows));
  QD_TRY(qd_launch_check_multiple(k, "rows", a->rows, a->tokens, "splitting rows into batches of `tokens`"));
  QD_TRY(qd_launch_check_multiple(k, "cols", a->cols, vec, why));
  const uint64_t align = (uint64_t)vec * 2;
  QD_TRY(qd_launch_check_align(k, "y", a->y, align, why));
  QD_TRY(qd_launch_check_align(k, "residual", a->residual, align, why));
  QD_TRY(qd_launch_check_align(k, "gate", a->gate, align, why));
  QD_TRY(qd_launch_check_align(k, "x", a->x, align, why));
  QD_TRY(qd_launch_check_stride(k, "gate_stride", a->gate_stride, vec, why));
  long long gate_stride = a->gate_stride;
  int rows = (int)a->rows, tokens = (int)a->tokens, cols = (int)a->cols;
  void* params[] = {(void*)&a->y, (void*)&a->residual, (void*)&a->gate, (void*)&a->x, &gate_stride,
                    &rows, &tokens, &cols};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(a->rows * a->cols / vec, (int64_t)threads * items)),
                          qd_launch_dim((unsigned)threads), 0, stream, params);
}

/* ---- elementwise.cu ------------------------------------------------------------------------------------------ */

typedef struct qd_k_ew_ {
  int vec, threads, items;
  char why[32];
} qd_k_ew_t_;

static qd_status_t qd_k_ew_params_(const qd_kernel_config_t* cfg, qd_k_ew_t_* p) {
  QD_TRY(qd_launch_check_params(cfg, "EW_VEC", &p->vec, "EW_THREADS", &p->threads, "EW_ITEMS", &p->items, NULL));
  snprintf(p->why, sizeof p->why, "EW_VEC=%d", p->vec);
  return QD_OK;
}

static unsigned qd_k_ew_blocks_(const qd_k_ew_t_* p, int64_t vectors) {
  return qd_launch_blocks(vectors, (int64_t)p->threads * p->items);
}

qd_status_t qd_launch_ew_unary(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                               CUdeviceptr y, CUdeviceptr x, int64_t n, float factor) {
  QD_TRY(qd_k_begin_(QD_KERNEL_EW_UNARY, fn, cfg));
  const char* k = fn->name;
  qd_k_ew_t_ p;
  QD_TRY(qd_k_ew_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "n", n, 0, INT64_MAX / 16));
  if (n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "x", x, (uint64_t)p.vec * 2, p.why));
  long long count = n;
  void* params[] = {&y, &x, &count, &factor};
  return qd_kernel_launch(fn, qd_launch_dim(qd_k_ew_blocks_(&p, n / p.vec)), qd_launch_dim((unsigned)p.threads), 0, stream,
                          params);
}

qd_status_t qd_launch_ew_binary(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                CUdeviceptr y, CUdeviceptr a, CUdeviceptr b, int64_t b_stride, int64_t rows,
                                int64_t tokens, int64_t cols) {
  QD_TRY(qd_k_begin_(QD_KERNEL_EW_BINARY, fn, cfg));
  const char* k = fn->name;
  qd_k_ew_t_ p;
  QD_TRY(qd_k_ew_params_(cfg, &p));
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "a", a));
  QD_TRY(qd_launch_check_need(k, "b", b));
  QD_TRY(qd_launch_check_range(k, "rows", rows, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cols", cols, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "tokens", tokens, 1, rows));
  QD_TRY(qd_launch_check_multiple(k, "rows", rows, tokens, "splitting rows into batches of `tokens`"));
  QD_TRY(qd_launch_check_multiple(k, "cols", cols, p.vec, p.why));
  QD_TRY(qd_launch_check_stride(k, "b_stride", b_stride, p.vec, p.why));
  QD_TRY(qd_launch_check_align(k, "y", y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "a", a, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "b", b, (uint64_t)p.vec * 2, p.why));
  long long bs = b_stride;
  int r = (int)rows, t = (int)tokens, c = (int)cols;
  void* params[] = {&y, &a, &b, &bs, &r, &t, &c};
  return qd_kernel_launch(fn, qd_launch_dim(qd_k_ew_blocks_(&p, rows * cols / p.vec)), qd_launch_dim((unsigned)p.threads), 0,
                          stream, params);
}

qd_status_t qd_launch_ew_bias_act(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                  CUdeviceptr y, CUdeviceptr x, CUdeviceptr bias, int64_t rows, int64_t cols,
                                  float factor) {
  QD_TRY(qd_k_begin_(QD_KERNEL_EW_BIAS_ACT, fn, cfg));
  const char* k = fn->name;
  qd_k_ew_t_ p;
  QD_TRY(qd_k_ew_params_(cfg, &p));
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_need(k, "bias", bias));
  QD_TRY(qd_launch_check_range(k, "rows", rows, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cols", cols, 1, INT_MAX));
  QD_TRY(qd_launch_check_multiple(k, "cols", cols, p.vec, p.why));
  QD_TRY(qd_launch_check_align(k, "y", y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "x", x, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "bias", bias, (uint64_t)p.vec * 2, p.why));
  int r = (int)rows, c = (int)cols;
  void* params[] = {&y, &x, &bias, &r, &c, &factor};
  return qd_kernel_launch(fn, qd_launch_dim(qd_k_ew_blocks_(&p, rows * cols / p.vec)), qd_launch_dim((unsigned)p.threads), 0,
                          stream, params);
}

qd_status_t qd_launch_ew_convert(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                 CUdeviceptr y, CUdeviceptr x, int64_t n) {
  if (!fn || !cfg) return qd_k_begin_(QD_KERNEL_EW_F32_TO_BF16, fn, cfg);
  const bool to_bf16 = strcmp(fn->name, "qd_ew_bf16_to_f32") != 0;
  QD_TRY(qd_k_begin_(to_bf16 ? QD_KERNEL_EW_F32_TO_BF16 : QD_KERNEL_EW_BF16_TO_F32, fn, cfg));
  const char* k = fn->name;
  qd_k_ew_t_ p;
  QD_TRY(qd_k_ew_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "n", n, 0, INT64_MAX / 16));
  if (n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, (uint64_t)p.vec * (to_bf16 ? 2 : 4), p.why));
  QD_TRY(qd_launch_check_align(k, "x", x, (uint64_t)p.vec * (to_bf16 ? 4 : 2), p.why));
  long long count = n;
  void* params[] = {&y, &x, &count};
  return qd_kernel_launch(fn, qd_launch_dim(qd_k_ew_blocks_(&p, n / p.vec)), qd_launch_dim((unsigned)p.threads), 0, stream,
                          params);
}

/* ---- nf4_dequant.cu ------------------------------------------------------------------------------------------ */

qd_status_t qd_launch_nf4_dequant(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                  const qd_nf4_dequant_args_t* a) {
  QD_TRY(qd_k_begin_(QD_KERNEL_NF4_DEQUANT, fn, cfg));
  const char* k = fn->name;
  int dq, threads, load, unroll;
  QD_TRY(qd_launch_check_params(cfg, "NF4_DOUBLE_QUANT", &dq, "NF4_THREADS", &threads, "NF4_LOAD", &load, "NF4_UNROLL", &unroll,
                      NULL));
  char why[32];
  snprintf(why, sizeof why, "NF4_LOAD=%d", load);
  QD_TRY(qd_launch_check_range(k, "n", a->n, 0, INT64_MAX / 16));
  int shift = 0;
  while (shift < 13 && (INT64_C(1) << shift) != a->blocksize) shift++;
  if (shift < 5 || shift > 12)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: blocksize = %lld; bitsandbytes uses a power of two from 32 to 4096",
                  k, (long long)a->blocksize);
  if (a->n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "packed", a->packed));
  QD_TRY(qd_launch_check_align(k, "y", a->y, 16, "the 16-byte stores"));
  QD_TRY(qd_launch_check_align(k, "packed", a->packed, (uint64_t)load, why));
  if (dq) {
    QD_TRY(qd_launch_check_need(k, "absmax_codes", a->absmax_codes));
    QD_TRY(qd_launch_check_need(k, "nested_absmax", a->nested_absmax));
    QD_TRY(qd_launch_check_need(k, "nested_code", a->nested_code));
    QD_TRY(qd_launch_check_align(k, "nested_absmax", a->nested_absmax, 4, "fp32"));
    QD_TRY(qd_launch_check_align(k, "nested_code", a->nested_code, 4, "fp32"));
  } else {
    QD_TRY(qd_launch_check_need(k, "absmax", a->absmax));
    QD_TRY(qd_launch_check_align(k, "absmax", a->absmax, 4, "fp32"));
  }
  float offset = a->offset;
  long long n = a->n;
  void* params[] = {(void*)&a->y, (void*)&a->packed, (void*)&a->absmax, (void*)&a->absmax_codes,
                    (void*)&a->nested_absmax, (void*)&a->nested_code, &offset, &n, &shift};
  const int64_t units = a->n / (2 * load);
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(units, (int64_t)threads * unroll)), qd_launch_dim((unsigned)threads),
                          0, stream, params);
}

/* ---- small_ops.cu -------------------------------------------------------------------------------------------- */

/* The by-value parameter structs of small_ops.cu, laid out the same way. */
typedef struct qd_k_rope_axes_ {
  int count;
  int dims[8];
} qd_k_rope_axes_t_;

typedef struct qd_k_copy_part_ {
  uint64_t src;
  long long src_row_bytes, dst_col, row_bytes;
  int vec_shift, pad_;
} qd_k_copy_part_t_;

typedef struct qd_k_copy_parts_ {
  int count, pad_;
  qd_k_copy_part_t_ part[8];
} qd_k_copy_parts_t_;

_Static_assert(sizeof(qd_k_rope_axes_t_) == 36, "qd_rope_axes is 36 bytes in small_ops.cu");
_Static_assert(sizeof(qd_k_copy_part_t_) == 40 && sizeof(qd_k_copy_parts_t_) == 328,
               "qd_copy_parts is 328 bytes in small_ops.cu");

qd_status_t qd_launch_timestep_embedding(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg,
                                         CUstream stream, CUdeviceptr y, CUdeviceptr t, int64_t batch, int64_t dim,
                                         bool flip_sin_to_cos, float downscale_freq_shift, float input_scale,
                                         float max_period) {
  QD_TRY(qd_k_begin_(QD_KERNEL_TIMESTEP_EMBEDDING, fn, cfg));
  const char* k = fn->name;
  int threads;
  QD_TRY(qd_launch_check_params(cfg, "SMALL_THREADS", &threads, NULL));
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "t", t));
  QD_TRY(qd_launch_check_range(k, "batch", batch, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "dim", dim, 1, INT_MAX / batch));
  QD_TRY(qd_launch_check_align(k, "y", y, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "t", t, 4, "fp32"));
  if (!(max_period > 0.0f))
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: max_period = %g must be positive", k, (double)max_period);
  int b = (int)batch, d = (int)dim, flip = flip_sin_to_cos ? 1 : 0;
  float neg_log = -logf(max_period); /* the host's logf, as qd_ref_timestep_embedding computes it */
  void* params[] = {&y, &t, &b, &d, &flip, &downscale_freq_shift, &input_scale, &neg_log};
  const int64_t half = dim / 2 > 0 ? dim / 2 : 1;
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(batch * half, threads)), qd_launch_dim((unsigned)threads), 0, stream,
                          params);
}

qd_status_t qd_launch_rope_freqs(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                 CUdeviceptr y, CUdeviceptr ids, int64_t tokens, const int64_t* axes, int32_t n_axes,
                                 double theta) {
  QD_TRY(qd_k_begin_(QD_KERNEL_ROPE_FREQS, fn, cfg));
  const char* k = fn->name;
  int threads;
  QD_TRY(qd_launch_check_params(cfg, "SMALL_THREADS", &threads, NULL));
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "ids", ids));
  QD_TRY(qd_launch_check_range(k, "tokens", tokens, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "n_axes", n_axes, 1, 8));
  if (!axes) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no axes given", k);
  qd_k_rope_axes_t_ ax = {.count = n_axes};
  int64_t total = 0;
  for (int32_t i = 0; i < n_axes; i++) {
    QD_TRY(qd_launch_check_range(k, "an axis size", axes[i], 2, 1 << 16));
    QD_TRY(qd_launch_check_multiple(k, "an axis size", axes[i], 2, "pairs of rotated channels"));
    ax.dims[i] = (int)axes[i];
    total += axes[i];
  }
  if (tokens * total / 2 > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: tokens * pairs = %lld reaches 2^31", k,
                  (long long)(tokens * total / 2));
  QD_TRY(qd_launch_check_align(k, "y", y, 8, "the paired fp32 stores"));
  QD_TRY(qd_launch_check_align(k, "ids", ids, 4, "fp32"));
  if (!(theta > 0.0))
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: theta = %g must be positive", k, theta);
  int tok = (int)tokens;
  void* params[] = {&y, &ids, &tok, &ax, &theta};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(tokens * total / 2, threads)), qd_launch_dim((unsigned)threads), 0,
                          stream, params);
}

qd_status_t qd_launch_silu_vec(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                               CUdeviceptr y, CUdeviceptr x, int64_t n) {
  QD_TRY(qd_k_begin_(QD_KERNEL_SILU_VEC, fn, cfg));
  const char* k = fn->name;
  int threads;
  QD_TRY(qd_launch_check_params(cfg, "SMALL_THREADS", &threads, NULL));
  QD_TRY(qd_launch_check_range(k, "n", n, 0, INT64_MAX / 16));
  if (n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "x", x, 2, "bf16"));
  long long count = n;
  void* params[] = {&y, &x, &count};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(n, threads)), qd_launch_dim((unsigned)threads), 0, stream, params);
}

/* The widest unit (16, 8, 4, 2 or 1 bytes) dividing every address, stride and length of a part. */
static int qd_k_vec_shift_(uint64_t src, uint64_t dst, uint64_t src_row, uint64_t dst_row, uint64_t len) {
  uint64_t all = src | dst | src_row | dst_row | len;
  int s = 0;
  while (s < 4 && (all & (((uint64_t)2 << s) - 1)) == 0) s++;
  return s;
}

/* Launches qd_copy_rows over parts[0..count); rows == 0 or all-empty parts launch nothing. */
static qd_status_t qd_k_copy_rows_(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                   CUdeviceptr dst, int64_t dst_row_bytes, int64_t rows, qd_k_copy_parts_t_* parts) {
  int threads, unroll;
  QD_TRY(qd_launch_check_params(cfg, "SMALL_THREADS", &threads, "SMALL_UNROLL", &unroll, NULL));
  int64_t most = 0;
  for (int i = 0; i < parts->count; i++) {
    qd_k_copy_part_t_* p = &parts->part[i];
    p->vec_shift = qd_k_vec_shift_(p->src, dst + (uint64_t)p->dst_col, (uint64_t)p->src_row_bytes,
                                   (uint64_t)dst_row_bytes, (uint64_t)p->row_bytes);
    int64_t units = rows * (p->row_bytes >> p->vec_shift);
    if (units > most) most = units;
  }
  if (most == 0) return QD_OK;
  /* A grid-stride loop covers the rest; 2^20 blocks keep every SM busy. */
  int64_t blocks = (most + (int64_t)threads * unroll - 1) / ((int64_t)threads * unroll);
  if (blocks > (1 << 20)) blocks = 1 << 20;
  long long drb = dst_row_bytes, r = rows;
  void* params[] = {&dst, &drb, &r, parts};
  return qd_kernel_launch(fn, (qd_kernel_dim3_t){(unsigned)blocks, (unsigned)parts->count, 1},
                          qd_launch_dim((unsigned)threads), 0, stream, params);
}

qd_status_t qd_launch_slice(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                            CUdeviceptr y, CUdeviceptr x, int64_t outer, int64_t axis_dim, int64_t inner,
                            int64_t start, int64_t size, int64_t elem_size) {
  QD_TRY(qd_k_begin_(QD_KERNEL_COPY_ROWS, fn, cfg));
  const char* k = fn->name;
  QD_TRY(qd_launch_check_range(k, "elem_size", elem_size, 1, 64));
  QD_TRY(qd_launch_check_range(k, "outer", outer, 0, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "axis_dim", axis_dim, 0, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "inner", inner, 0, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "start", start, 0, axis_dim));
  QD_TRY(qd_launch_check_range(k, "size", size, 0, axis_dim - start));
  const int64_t src_row = qd_launch_mul3(axis_dim, inner, elem_size), row = qd_launch_mul3(size, inner, elem_size);
  const int64_t offset = qd_launch_mul3(start, inner, elem_size);
  if (src_row < 0 || row < 0 || offset < 0 || qd_launch_mul3(outer, src_row, 1) < 0 || qd_launch_mul3(outer, src_row, 16) < 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: slice of %lld x %lld x %lld elements overflows", k,
                  (long long)outer, (long long)axis_dim, (long long)inner);
  if (outer == 0 || row == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  qd_k_copy_parts_t_ parts = {.count = 1};
  parts.part[0] = (qd_k_copy_part_t_){.src = x + (uint64_t)offset, .src_row_bytes = src_row, .dst_col = 0,
                                      .row_bytes = row};
  return qd_k_copy_rows_(fn, cfg, stream, y, row, outer, &parts);
}

qd_status_t qd_launch_concat(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                             CUdeviceptr y, const CUdeviceptr* inputs, const int64_t* sizes, int32_t count,
                             int64_t outer, int64_t inner, int64_t elem_size) {
  QD_TRY(qd_k_begin_(QD_KERNEL_COPY_ROWS, fn, cfg));
  const char* k = fn->name;
  QD_TRY(qd_launch_check_range(k, "count", count, 1, 8));
  QD_TRY(qd_launch_check_range(k, "elem_size", elem_size, 1, 64));
  QD_TRY(qd_launch_check_range(k, "outer", outer, 0, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "inner", inner, 0, INT64_MAX / 2));
  if (!inputs || !sizes) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no inputs or sizes given", k);
  qd_k_copy_parts_t_ parts = {.count = count};
  int64_t col = 0;
  for (int32_t i = 0; i < count; i++) {
    QD_TRY(qd_launch_check_range(k, "an input's size", sizes[i], 0, INT64_MAX / 2));
    const int64_t row = qd_launch_mul3(sizes[i], inner, elem_size);
    if (row < 0 || __builtin_add_overflow(col, row, &col) || qd_launch_mul3(outer, col, 16) < 0)
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: concat sizes overflow", k);
    if (row > 0 && outer > 0) {
      char what[32];
      snprintf(what, sizeof what, "input %d", (int)i);
      QD_TRY(qd_launch_check_need(k, what, inputs[i]));
    }
    parts.part[i] = (qd_k_copy_part_t_){.src = inputs[i], .src_row_bytes = row, .dst_col = col - row, .row_bytes = row};
  }
  if (outer == 0 || col == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  return qd_k_copy_rows_(fn, cfg, stream, y, col, outer, &parts);
}

qd_status_t qd_launch_pack_rows(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                CUdeviceptr y, int64_t y_row_bytes, int64_t rows, const CUdeviceptr* inputs,
                                const int64_t* row_bytes, const int64_t* dst_cols, int32_t count) {
  QD_TRY(qd_k_begin_(QD_KERNEL_COPY_ROWS, fn, cfg));
  const char* k = fn->name;
  QD_TRY(qd_launch_check_range(k, "count", count, 1, 8));
  QD_TRY(qd_launch_check_range(k, "rows", rows, 0, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "y_row_bytes", y_row_bytes, 0, INT64_MAX / 2));
  if (!inputs || !row_bytes || !dst_cols)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no inputs, row sizes or columns given", k);
  if (qd_launch_mul3(rows, y_row_bytes, 16) < 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld rows of %lld bytes overflow", k, (long long)rows,
                  (long long)y_row_bytes);
  qd_k_copy_parts_t_ parts = {.count = count};
  for (int32_t i = 0; i < count; i++) {
    QD_TRY(qd_launch_check_range(k, "an input's row bytes", row_bytes[i], 0, y_row_bytes));
    QD_TRY(qd_launch_check_range(k, "an input's column", dst_cols[i], 0, y_row_bytes - row_bytes[i]));
    if (row_bytes[i] > 0 && rows > 0) {
      char what[32];
      snprintf(what, sizeof what, "input %d", (int)i);
      QD_TRY(qd_launch_check_need(k, what, inputs[i]));
    }
    parts.part[i] = (qd_k_copy_part_t_){.src = inputs[i], .src_row_bytes = row_bytes[i], .dst_col = dst_cols[i],
                                        .row_bytes = row_bytes[i]};
  }
  if (rows == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  return qd_k_copy_rows_(fn, cfg, stream, y, y_row_bytes, rows, &parts);
}
