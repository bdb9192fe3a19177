/* The attention launcher: see runtime/cuda/attention.h. The kernels' parameter blocks are mirrored here field
 * for field (the templates static_assert the same sizes). */
#include "runtime/cuda/attention.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* attention.cu's qd_attention_params. */
typedef struct qd_attention_params_ {
  CUdeviceptr q, k, v, o, bias;
  int64_t q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  int64_t bias_batch_stride, bias_head_stride;
  int32_t q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int32_t sq, sk, heads, batch;
  float scale_log2;
  int32_t bias_row_stride;
} qd_attention_params_t_;
_Static_assert(sizeof(qd_attention_params_t_) == 128, "must match qd_attention_params in attention.cu");

/* attention_sm90.cu's qd_attention_sm90_params. */
typedef struct qd_attention_sm90_params_ {
  CUtensorMap tq, tk, tv;
  CUdeviceptr o;
  int64_t o_batch_stride;
  int32_t o_row_stride;
  int32_t sq, sk, heads, batch;
  float scale_log2;
} qd_attention_sm90_params_t_;
_Static_assert(sizeof(qd_attention_sm90_params_t_) == 512, "must match qd_attention_sm90_params");
_Static_assert(offsetof(qd_attention_sm90_params_t_, o) == 384, "must match qd_attention_sm90_params");

#define QD_LOG2E 1.4426950408889634

qd_attention_variant_t qd_attention_variant_default(qd_attention_kernel_t kernel, int cc, int head_dim, bool causal,
                                                    bool has_bias) {
  qd_attention_variant_t v = {.kernel = kernel, .head_dim = head_dim, .causal = causal, .has_bias = has_bias,
                              .min_blocks = 1};
  if (kernel == QD_ATTENTION_WGMMA) {
    /* H200, 2026-11-29: BLOCK_N 192 with both overlaps beat 128 and 176 at S = 4608 and 1280 (docs/attention.md).
     * The causal mask's registers make 192 (and 176) spill, so causal stays at 128; head dim 64 keeps the tile
     * it was tested with. */
    v.block_m = 128;
    v.num_warps = 12;
    v.stages = 2;
    v.overlap = 1;
    v.pv_n = head_dim;
    v.block_n = head_dim == 128 && !causal ? 192 : 128;
    v.pingpong = head_dim == 128 ? 1 : 0;
    return v;
  }
  v.q_in_regs = 1;
  v.block_n = 64;
  v.stages = 2;
  if (head_dim == 128) {
    /* 64 queries and 4 warps per CTA, 2 CTAs per SM; Hopper has the shared memory for a third K/V stage. */
    v.block_m = 64;
    v.num_warps = 4;
    v.min_blocks = 2;
    v.stages = cc >= 90 ? 3 : 2;
  } else if (head_dim <= 64) {
    v.block_m = 128;
    v.num_warps = 8;
  } else {
    /* 192 and 256: the O accumulators alone take 96-128 registers; Q is re-read from shared memory. */
    v.block_m = 64;
    v.num_warps = 4;
    v.block_n = 32;
    v.q_in_regs = 0;
  }
  return v;
}

#define QD_ATTN_BAD_(field, ...) \
  QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention variant: " field " " __VA_ARGS__)

qd_status_t qd_attention_variant_validate(const qd_attention_variant_t* v) {
  if (!v) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention variant: NULL");
  if (v->stages < 2 || v->stages > 4) return QD_ATTN_BAD_("stages", "is %d; must be 2, 3 or 4", v->stages);
  if (v->kernel == QD_ATTENTION_MMA) {
    if (v->head_dim <= 0 || v->head_dim % 64 != 0 || v->head_dim > 256)
      return QD_ATTN_BAD_("head_dim", "is %d; the mma kernel takes 64, 128, 192 or 256", v->head_dim);
    if (v->num_warps != 4 && v->num_warps != 8)
      return QD_ATTN_BAD_("num_warps", "is %d; the mma kernel takes 4 or 8", v->num_warps);
    if (v->block_m != v->num_warps * 16 && v->block_m != v->num_warps * 32)
      return QD_ATTN_BAD_("block_m", "is %d; must be num_warps (%d) * 16 or * 32", v->block_m, v->num_warps);
    if (v->block_n != 32 && v->block_n != 64 && v->block_n != 128)
      return QD_ATTN_BAD_("block_n", "is %d; the mma kernel takes 32, 64 or 128", v->block_n);
    if (v->q_in_regs != 0 && v->q_in_regs != 1) return QD_ATTN_BAD_("q_in_regs", "is %d; must be 0 or 1", v->q_in_regs);
    if (v->min_blocks < 1 || v->min_blocks > 4)
      return QD_ATTN_BAD_("min_blocks", "is %d; must be 1 to 4", v->min_blocks);
    if (v->overlap != 0 || v->pv_n != 0 || v->pingpong != 0)
      return QD_ATTN_BAD_("overlap/pv_n/pingpong", "are %d/%d/%d; the mma kernel takes 0/0/0", v->overlap, v->pv_n,
                          v->pingpong);
    return QD_OK;
  }
  if (v->kernel != QD_ATTENTION_WGMMA) return QD_ATTN_BAD_("kernel", "is %d; unknown", (int)v->kernel);
  if (v->head_dim != 64 && v->head_dim != 128)
    return QD_ATTN_BAD_("head_dim", "is %d; the wgmma kernel takes 64 or 128", v->head_dim);
  if (v->block_m != 128) return QD_ATTN_BAD_("block_m", "is %d; the wgmma kernel takes 128", v->block_m);
  if (v->num_warps != 12) return QD_ATTN_BAD_("num_warps", "is %d; the wgmma kernel takes 12", v->num_warps);
  if (v->block_n != 64 && v->block_n != 128 && v->block_n != 176 && v->block_n != 192)
    return QD_ATTN_BAD_("block_n", "is %d; the wgmma kernel takes 64, 128, 176 or 192", v->block_n);
  if (v->overlap != 0 && v->overlap != 1) return QD_ATTN_BAD_("overlap", "is %d; must be 0 or 1", v->overlap);
  if (v->pingpong != 0 && (v->pingpong != 1 || !v->overlap))
    return QD_ATTN_BAD_("pingpong", "is %d (overlap %d); must be 0, or 1 with overlap", v->pingpong, v->overlap);
  if (v->pv_n != 64 && v->pv_n != v->head_dim)
    return QD_ATTN_BAD_("pv_n", "is %d; must be 64 or head_dim (%d)", v->pv_n, v->head_dim);
  if (v->q_in_regs != 0 || v->min_blocks != 1)
    return QD_ATTN_BAD_("q_in_regs/min_blocks", "are %d/%d; the wgmma kernel takes 0/1", v->q_in_regs,
                        v->min_blocks);
  if (v->has_bias)
    return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT,
                  "attention variant: the wgmma kernel has no bias; use the mma kernel for biased attention");
  return QD_OK;
}

const char* qd_attention_template_file(qd_attention_kernel_t kernel) {
  switch (kernel) {
    case QD_ATTENTION_MMA: return "attention.cu";
    case QD_ATTENTION_WGMMA: return "attention_sm90.cu";
  }
  return NULL;
}

const char* qd_attention_kernel_name(qd_attention_kernel_t kernel) {
  switch (kernel) {
    case QD_ATTENTION_MMA: return "qd_attention_fwd";
    case QD_ATTENTION_WGMMA: return "qd_attention_fwd_sm90";
  }
  return NULL;
}

qd_status_t qd_attention_target_arch(qd_attention_kernel_t kernel, int cc_major, int cc_minor, char* buf,
                                     size_t size) {
  int n;
  if (kernel == QD_ATTENTION_WGMMA) {
    if (cc_major != 9 || cc_minor != 0)
      return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT,
                    "the wgmma attention kernel needs compute capability 9.0 (sm_90a); this device is %d.%d",
                    cc_major, cc_minor);
    n = snprintf(buf, size, "sm_90a");
  } else {
    if (cc_major < 8)
      return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT,
                    "the mma attention kernel needs compute capability 8.0 or newer; this device is %d.%d",
                    cc_major, cc_minor);
    n = snprintf(buf, size, "sm_%d%d", cc_major, cc_minor);
  }
  if (n < 0 || (size_t)n >= size)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention target: buffer of %zu bytes too small", size);
  return QD_OK;
}

static void qd_attention_define_(qd_attention_defines_t* d, const char* name, int value) {
  snprintf(d->text[d->count], sizeof d->text[0], "-D%s=%d", name, value);
  d->options[d->count] = d->text[d->count];
  d->count++;
}

qd_status_t qd_attention_variant_defines(const qd_attention_variant_t* v, qd_attention_defines_t* out) {
  memset(out, 0, sizeof *out);
  QD_TRY(qd_attention_variant_validate(v));
  qd_attention_define_(out, "HEAD_DIM", v->head_dim);
  qd_attention_define_(out, "BLOCK_N", v->block_n);
  qd_attention_define_(out, "STAGES", v->stages);
  qd_attention_define_(out, "CAUSAL", v->causal ? 1 : 0);
  if (v->kernel == QD_ATTENTION_MMA) {
    qd_attention_define_(out, "BLOCK_M", v->block_m);
    qd_attention_define_(out, "NUM_WARPS", v->num_warps);
    qd_attention_define_(out, "Q_IN_REGS", v->q_in_regs);
    qd_attention_define_(out, "MIN_BLOCKS", v->min_blocks);
    qd_attention_define_(out, "HAS_BIAS", v->has_bias ? 1 : 0);
  } else {
    qd_attention_define_(out, "OVERLAP", v->overlap);
    qd_attention_define_(out, "PV_N", v->pv_n);
    qd_attention_define_(out, "PINGPONG", v->pingpong);
  }
  return QD_OK;
}

unsigned qd_attention_threads(const qd_attention_variant_t* v) { return (unsigned)v->num_warps * 32u; }

size_t qd_attention_shared_bytes(const qd_attention_variant_t* v) {
  size_t d = (size_t)v->head_dim;
  if (v->kernel == QD_ATTENTION_WGMMA) /* + the mbarriers, + slack to align the tiles to 1024 bytes */
    return (size_t)v->block_m * d * 2 + (size_t)v->stages * 2 * v->block_n * d * 2 + 8 + 32 * (size_t)v->stages +
           1024;
  return ((size_t)v->block_m + 2 * (size_t)v->stages * v->block_n) * d * 2;
}

/* Resolves a row stride (0: dense) and checks it. */
static qd_status_t qd_attention_row_stride_(const char* name, int64_t given, int64_t width, int64_t* out) {
  int64_t s = given ? given : width;
  if (s < width || s % 8 != 0 || s > INT32_MAX)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "attention: %s row stride is %lld elements; it must be a multiple of 8, at least heads * head_dim "
                  "(%lld) and below 2^31",
                  name, (long long)s, (long long)width);
  *out = s;
  return QD_OK;
}

static qd_status_t qd_attention_batch_stride_(const char* name, int64_t given, int64_t rows, int64_t row_stride,
                                              int64_t* out) {
  int64_t s = given ? given : rows * row_stride;
  if (s < 0 || s % 8 != 0 || s > ((int64_t)1 << 38))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "attention: %s batch stride is %lld elements; it must be a non-negative multiple of 8 below 2^38",
                  name, (long long)s);
  *out = s;
  return QD_OK;
}

static qd_status_t qd_attention_pointer_(const char* name, CUdeviceptr p, unsigned align) {
  if (p == 0 || p % align != 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "attention: %s is 0x%llx; it must be non-null and %u-byte aligned", name, (unsigned long long)p, align);
  return QD_OK;
}

/* 3-D map {width, rows, batch} over bf16 with byte strides {row, batch}; boxes of 64 channels x box_rows rows,
 * 128-byte swizzle (the layout the wgmma descriptors in attention_sm90.cu assume). */
static qd_status_t qd_attention_tensor_map_(const qd_cuda_driver_t* cu, CUtensorMap* map, CUdeviceptr base,
                                            int64_t width, int64_t rows, int64_t batch, int64_t row_stride,
                                            int64_t batch_stride, int box_rows) {
  cuuint64_t dims[3] = {(cuuint64_t)width, (cuuint64_t)rows, (cuuint64_t)batch};
  /* A batch of one never steps in dimension 2; any valid stride will do. */
  int64_t bs = batch > 1 ? batch_stride : rows * row_stride;
  cuuint64_t strides[2] = {(cuuint64_t)row_stride * 2, (cuuint64_t)bs * 2};
  cuuint32_t box[3] = {64, (cuuint32_t)box_rows, 1};
  cuuint32_t elem[3] = {1, 1, 1};
  QD_CU_TRY(cu->cuTensorMapEncodeTiled(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, (void*)(uintptr_t)base, dims,
                                       strides, box, elem, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                       CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                       CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  return QD_OK;
}

qd_status_t qd_attention_launch(const qd_cuda_driver_t* cu, CUfunction function, const qd_attention_variant_t* v,
                                const qd_attention_args_t* a, CUstream stream) {
  if (!cu || !function || !a)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention: driver, function and arguments are required");
  QD_TRY(qd_attention_variant_validate(v));
  const int64_t d = v->head_dim;
  if (a->batch < 1 || a->batch > 65535 || a->heads < 1 || a->heads > 65535 || a->sq < 1 || a->sq > INT32_MAX ||
      a->sk < 1 || a->sk > INT32_MAX)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "attention: batch %lld, heads %lld, sq %lld, sk %lld; batch and heads must be 1..65535, sq and sk "
                  "1..2^31-1",
                  (long long)a->batch, (long long)a->heads, (long long)a->sq, (long long)a->sk);
  const int64_t width = a->heads * d;
  if (width > INT32_MAX)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention: heads * head_dim = %lld is too large",
                  (long long)width);
  float scale = a->scale == 0.0f ? (float)(1.0 / sqrt((double)d)) : a->scale;
  if (!(scale > 0.0f) || !isfinite(scale))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention: scale %g must be positive and finite",
                  (double)scale);
  QD_TRY(qd_attention_pointer_("q", a->q, 16));
  QD_TRY(qd_attention_pointer_("k", a->k, 16));
  QD_TRY(qd_attention_pointer_("v", a->v, 16));
  QD_TRY(qd_attention_pointer_("o", a->o, 16));
  int64_t qr, kr, vr, orow, qb, kb, vb, ob;
  QD_TRY(qd_attention_row_stride_("q", a->q_row_stride, width, &qr));
  QD_TRY(qd_attention_row_stride_("k", a->k_row_stride, width, &kr));
  QD_TRY(qd_attention_row_stride_("v", a->v_row_stride, width, &vr));
  QD_TRY(qd_attention_row_stride_("o", a->o_row_stride, width, &orow));
  QD_TRY(qd_attention_batch_stride_("q", a->q_batch_stride, a->sq, qr, &qb));
  QD_TRY(qd_attention_batch_stride_("k", a->k_batch_stride, a->sk, kr, &kb));
  QD_TRY(qd_attention_batch_stride_("v", a->v_batch_stride, a->sk, vr, &vb));
  QD_TRY(qd_attention_batch_stride_("o", a->o_batch_stride, a->sq, orow, &ob));
  if (v->has_bias) {
    QD_TRY(qd_attention_pointer_("bias", a->bias, 4));
    if ((a->bias_batch != 1 && a->bias_batch != a->batch) || (a->bias_heads != 1 && a->bias_heads != a->heads))
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                    "attention: bias is [%lld, %lld, sq, sk]; its batch must be 1 or %lld and its heads 1 or %lld",
                    (long long)a->bias_batch, (long long)a->bias_heads, (long long)a->batch, (long long)a->heads);
  } else if (a->bias) {
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention: a bias was given to a variant built without one");
  }

  const unsigned block_m = (unsigned)v->block_m;
  const unsigned grid_x = (unsigned)((a->sq + block_m - 1) / block_m);
  const size_t smem = qd_attention_shared_bytes(v);
  if (smem > 48 * 1024)
    QD_CU_TRY(cu->cuFuncSetAttribute(function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)smem));
  const float scale_log2 = (float)(scale * QD_LOG2E);

  if (v->kernel == QD_ATTENTION_MMA) {
    qd_attention_params_t_ p = {
        .q = a->q, .k = a->k, .v = a->v, .o = a->o, .bias = v->has_bias ? a->bias : 0,
        .q_batch_stride = qb, .k_batch_stride = kb, .v_batch_stride = vb, .o_batch_stride = ob,
        .q_row_stride = (int32_t)qr, .k_row_stride = (int32_t)kr, .v_row_stride = (int32_t)vr,
        .o_row_stride = (int32_t)orow,
        .sq = (int32_t)a->sq, .sk = (int32_t)a->sk, .heads = (int32_t)a->heads, .batch = (int32_t)a->batch,
        .scale_log2 = scale_log2};
    if (v->has_bias) {
      p.bias_row_stride = (int32_t)a->sk;
      p.bias_head_stride = a->bias_heads == 1 ? 0 : a->sq * a->sk;
      p.bias_batch_stride = a->bias_batch == 1 ? 0 : a->bias_heads * a->sq * a->sk;
    }
    void* params[] = {&p};
    QD_CU_TRY(cu->cuLaunchKernel(function, grid_x, (unsigned)a->heads, (unsigned)a->batch, qd_attention_threads(v),
                                 1, 1, (unsigned)smem, stream, params, NULL));
    return QD_OK;
  }

  qd_attention_sm90_params_t_ p;
  memset(&p, 0, sizeof p);
  QD_TRY_CTX(qd_attention_tensor_map_(cu, &p.tq, a->q, width, a->sq, a->batch, qr, qb, v->block_m),
             "while encoding the tensor map of q");
  QD_TRY_CTX(qd_attention_tensor_map_(cu, &p.tk, a->k, width, a->sk, a->batch, kr, kb, v->block_n),
             "while encoding the tensor map of k");
  QD_TRY_CTX(qd_attention_tensor_map_(cu, &p.tv, a->v, width, a->sk, a->batch, vr, vb, v->block_n),
             "while encoding the tensor map of v");
  p.o = a->o;
  p.o_batch_stride = ob;
  p.o_row_stride = (int32_t)orow;
  p.sq = (int32_t)a->sq;
  p.sk = (int32_t)a->sk;
  p.heads = (int32_t)a->heads;
  p.batch = (int32_t)a->batch;
  p.scale_log2 = scale_log2;
  void* params[] = {&p};
  QD_CU_TRY(cu->cuLaunchKernel(function, grid_x, (unsigned)a->heads, (unsigned)a->batch, qd_attention_threads(v), 1,
                               1, (unsigned)smem, stream, params, NULL));
  return QD_OK;
}
