/* Launchers for the text encoders' kernel templates: see runtime/cuda/kernels_text.h. Each mirrors its template's
 * header comment: the same parameters, the same grid formula, the same requirements. */
#include "runtime/cuda/kernels_text.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cpu/ref.h"
#include "runtime/cuda/launch_checks.h"

static const char* const qd_kt_templates_[QD_TEXT_KERNEL_OP_COUNT_] = {
    [QD_TEXT_KERNEL_EMBEDDING] = "text_ops.cu",
    [QD_TEXT_KERNEL_ARANGE] = "text_ops.cu",
    [QD_TEXT_KERNEL_EOS_POOL] = "text_ops.cu",
    [QD_TEXT_KERNEL_T5_RELATIVE_BIAS] = "text_ops.cu",
    [QD_TEXT_KERNEL_ATTENTION_MASKED] = "attention_masked.cu",
};

static const char* const qd_kt_functions_[QD_TEXT_KERNEL_OP_COUNT_] = {
    [QD_TEXT_KERNEL_EMBEDDING] = "qd_embedding",
    [QD_TEXT_KERNEL_ARANGE] = "qd_arange",
    [QD_TEXT_KERNEL_EOS_POOL] = "qd_eos_pool",
    [QD_TEXT_KERNEL_T5_RELATIVE_BIAS] = "qd_t5_relative_bias",
    [QD_TEXT_KERNEL_ATTENTION_MASKED] = "qd_attention_masked",
};

const char* qd_text_kernel_template_name(qd_text_kernel_op_t op) {
  return (unsigned)op < QD_TEXT_KERNEL_OP_COUNT_ ? qd_kt_templates_[op] : NULL;
}

const char* qd_text_kernel_function_name(qd_text_kernel_op_t op, const qd_kernel_config_t* config) {
  const char* tmpl = qd_text_kernel_template_name(op);
  if (!tmpl || !config || !config->template_name || strcmp(config->template_name, tmpl) != 0) return NULL;
  return qd_kt_functions_[op];
}

/* ---- checks (runtime/cuda/launch_checks.h) ---------------------------------------------------------------------- */

static qd_status_t qd_kt_begin_(qd_text_kernel_op_t op, const qd_kernel_function_t* fn,
                                const qd_kernel_config_t* cfg) {
  return qd_launch_check_begin(qd_text_kernel_template_name(op), qd_text_kernel_function_name(op, cfg), fn, cfg,
                               true);
}

static qd_status_t qd_kt_id_bytes_(const char* kernel, int64_t id_bytes, CUdeviceptr ids) {
  if (id_bytes != 4 && id_bytes != 8)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: id_bytes = %lld; ids are I32 (4) or I64 (8)", kernel,
                  (long long)id_bytes);
  return qd_launch_check_align(kernel, "ids", ids, (uint64_t)id_bytes, id_bytes == 8 ? "I64 ids" : "I32 ids");
}

/* Every element count is below 2^40: indices in the kernels are 64-bit, grids stay far below 2^31 blocks. */
#define QD_KT_MAX_ELEMS (INT64_C(1) << 40)

/* ---- text_ops.cu ------------------------------------------------------------------------------------------------ */

typedef struct qd_kt_text_ {
  int threads, vec;
  char why[32];
} qd_kt_text_t_;

static qd_status_t qd_kt_text_params_(const qd_kernel_config_t* cfg, qd_kt_text_t_* p) {
  QD_TRY(qd_launch_check_params(cfg, "TXT_THREADS", &p->threads, "TXT_VEC", &p->vec, NULL));
  snprintf(p->why, sizeof p->why, "TXT_VEC=%d", p->vec);
  return QD_OK;
}

qd_status_t qd_launch_embedding(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                                const qd_embedding_args_t* a) {
  QD_TRY(qd_kt_begin_(QD_TEXT_KERNEL_EMBEDDING, fn, cfg));
  const char* k = fn->name;
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  qd_kt_text_t_ p;
  QD_TRY(qd_kt_text_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "n", a->n, 1, INT64_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "features", a->features, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "vocab", a->vocab, 1, INT64_MAX / 2));
  if (a->n > QD_KT_MAX_ELEMS / a->features || a->vocab > QD_KT_MAX_ELEMS / a->features)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld ids or %lld table rows of %lld features are too many",
                  k, (long long)a->n, (long long)a->vocab, (long long)a->features);
  QD_TRY(qd_launch_check_multiple(k, "features", a->features, p.vec, p.why));
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "ids", a->ids));
  QD_TRY(qd_launch_check_need(k, "weight", a->weight));
  QD_TRY(qd_launch_check_need(k, "error", a->error));
  QD_TRY(qd_kt_id_bytes_(k, a->id_bytes, a->ids));
  QD_TRY(qd_launch_check_align(k, "y", a->y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "weight", a->weight, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "error", a->error, 8, "the 64-bit atomicMin"));
  int ids64 = a->id_bytes == 8 ? 1 : 0, features = (int)a->features;
  long long n = a->n, vocab = a->vocab;
  void* params[] = {(void*)&a->y, (void*)&a->ids, &ids64, (void*)&a->weight, &n, &features, &vocab, (void*)&a->error};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(a->n * (a->features / p.vec), p.threads)),
                          qd_launch_dim((unsigned)p.threads), 0, stream, params);
}

qd_status_t qd_launch_arange(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                             CUdeviceptr y, int64_t n) {
  QD_TRY(qd_kt_begin_(QD_TEXT_KERNEL_ARANGE, fn, cfg));
  const char* k = fn->name;
  qd_kt_text_t_ p;
  QD_TRY(qd_kt_text_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "n", n, 0, INT_MAX)); /* I32 values */
  if (n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_align(k, "y", y, 4, "I32"));
  long long count = n;
  void* params[] = {&y, &count};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(n, p.threads)), qd_launch_dim((unsigned)p.threads), 0, stream,
                          params);
}

qd_status_t qd_launch_eos_pool(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                               const qd_eos_pool_args_t* a) {
  QD_TRY(qd_kt_begin_(QD_TEXT_KERNEL_EOS_POOL, fn, cfg));
  const char* k = fn->name;
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  qd_kt_text_t_ p;
  QD_TRY(qd_kt_text_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "batch", a->batch, 1, 65535)); /* grid y */
  QD_TRY(qd_launch_check_range(k, "tokens", a->tokens, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "ch", a->ch, 1, INT_MAX));
  if (a->tokens > QD_KT_MAX_ELEMS / a->ch / a->batch)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: x of %lld x %lld x %lld elements is too large", k,
                  (long long)a->batch, (long long)a->tokens, (long long)a->ch);
  QD_TRY(qd_launch_check_multiple(k, "ch", a->ch, p.vec, p.why));
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  QD_TRY(qd_launch_check_need(k, "ids", a->ids));
  QD_TRY(qd_kt_id_bytes_(k, a->id_bytes, a->ids));
  QD_TRY(qd_launch_check_align(k, "y", a->y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "x", a->x, (uint64_t)p.vec * 2, p.why));
  int ids64 = a->id_bytes == 8 ? 1 : 0, tokens = (int)a->tokens, ch = (int)a->ch;
  long long token = a->token;
  void* params[] = {(void*)&a->y, (void*)&a->x, (void*)&a->ids, &ids64, &tokens, &ch, &token};
  return qd_kernel_launch(fn, (qd_kernel_dim3_t){1, (unsigned)a->batch, 1}, qd_launch_dim((unsigned)p.threads), 0,
                          stream, params);
}

/* text_ops.cu's qd_t5_buckets. */
enum { QD_KT_T5_MAX_STEPS = 255 };
typedef struct qd_kt_t5_buckets_ {
  int32_t nb, max_exact, bidirectional, count;
  int32_t steps[QD_KT_T5_MAX_STEPS + 1];
} qd_kt_t5_buckets_t_;
_Static_assert(sizeof(qd_kt_t5_buckets_t_) == 1040, "must match qd_t5_buckets in text_ops.cu");

/* The distances below `tokens` where qd_ref_t5_bucket's logarithmic part steps up, one entry per step (a jump of
 * two buckets at one distance gives two equal entries). Buckets for keys after the query (bidirectional) are the
 * same function of the distance plus nb, so the side of rel <= 0 describes both. */
static qd_status_t qd_kt_t5_steps_(const char* k, int64_t tokens, int64_t buckets, int64_t max_distance,
                                   bool bidirectional, qd_kt_t5_buckets_t_* out) {
  memset(out, 0, sizeof *out);
  const int64_t nb = bidirectional ? buckets / 2 : buckets, max_exact = nb / 2;
  out->nb = (int32_t)nb;
  out->max_exact = (int32_t)max_exact;
  out->bidirectional = bidirectional ? 1 : 0;
  int64_t prev = 0;
  for (int64_t d = max_exact; d < tokens; d++) {
    const int64_t large = qd_ref_t5_bucket(-d, buckets, max_distance, bidirectional) - max_exact;
    if (large < prev || large > nb - 1 - max_exact)
      return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT,
                    "%s: T5 bucket %lld at distance %lld (buckets %lld, max_distance %lld) does not ascend; the "
                    "kernel's step table cannot express it",
                    k, (long long)(large + max_exact), (long long)d, (long long)buckets, (long long)max_distance);
    for (; prev < large; prev++) {
      if (out->count == QD_KT_T5_MAX_STEPS)
        return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT,
                      "%s: T5 buckets %lld with max_distance %lld over %lld tokens take more than %d logarithmic "
                      "steps",
                      k, (long long)buckets, (long long)max_distance, (long long)tokens, (int)QD_KT_T5_MAX_STEPS);
      out->steps[out->count++] = (int32_t)d;
    }
  }
  return QD_OK;
}

qd_status_t qd_launch_t5_relative_bias(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg,
                                       CUstream stream, const qd_t5_relative_bias_args_t* a) {
  QD_TRY(qd_kt_begin_(QD_TEXT_KERNEL_T5_RELATIVE_BIAS, fn, cfg));
  const char* k = fn->name;
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  qd_kt_text_t_ p;
  QD_TRY(qd_kt_text_params_(cfg, &p));
  QD_TRY(qd_launch_check_range(k, "tokens", a->tokens, 1, 1 << 20));
  QD_TRY(qd_launch_check_range(k, "heads", a->heads, 1, INT_MAX));
  if (a->heads > QD_KT_MAX_ELEMS / a->tokens / a->tokens)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a bias of %lld x %lld x %lld elements is too large", k,
                  (long long)a->heads, (long long)a->tokens, (long long)a->tokens);
  /* As the op's shape inference (ir/ops.c) requires. */
  const int64_t exact = (a->bidirectional ? a->buckets / 2 : a->buckets) / 2;
  if (a->buckets < 2 || a->buckets > 4096 || exact < 1)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE,
                  "%s: buckets = %lld; it must be from 2 (4 when bidirectional) to 4096", k, (long long)a->buckets);
  if (a->max_distance <= exact)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: max_distance = %lld must exceed the %lld exact buckets", k,
                  (long long)a->max_distance, (long long)exact);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "weight", a->weight));
  QD_TRY(qd_launch_check_align(k, "y", a->y, (uint64_t)p.vec * 2, p.why));
  QD_TRY(qd_launch_check_align(k, "weight", a->weight, 2, "bf16"));
  qd_kt_t5_buckets_t_ bk;
  QD_TRY(qd_kt_t5_steps_(k, a->tokens, a->buckets, a->max_distance, a->bidirectional, &bk));
  int tokens = (int)a->tokens, heads = (int)a->heads;
  void* params[] = {(void*)&a->y, (void*)&a->weight, &tokens, &heads, &bk};
  const int64_t per_row = (a->tokens + p.vec - 1) / p.vec;
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(a->heads * a->tokens * per_row, p.threads)),
                          qd_launch_dim((unsigned)p.threads), 0, stream, params);
}

/* ---- attention_masked.cu ---------------------------------------------------------------------------------------- */

/* attention_masked.cu's qd_attn_masked_params. */
typedef struct qd_kt_attn_params_ {
  CUdeviceptr q, k, v, o, bias;
  int64_t q_batch_stride, k_batch_stride, v_batch_stride, o_batch_stride;
  int64_t bias_batch_stride, bias_head_stride;
  int32_t q_row_stride, k_row_stride, v_row_stride, o_row_stride;
  int32_t sq, sk, heads, bias_row_stride;
  float scale_log2;
  int32_t bias_pairs;
} qd_kt_attn_params_t_;
_Static_assert(sizeof(qd_kt_attn_params_t_) == 128, "must match qd_attn_masked_params in attention_masked.cu");

typedef struct qd_kt_attn_ {
  int head_dim, causal, bias, warps_m, warps_d, block_n, stages;
} qd_kt_attn_t_;

static qd_status_t qd_kt_attn_params_(const qd_kernel_config_t* cfg, qd_kt_attn_t_* c) {
  if (!cfg) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention_masked.cu: no configuration");
  if (!cfg->template_name || strcmp(cfg->template_name, "attention_masked.cu") != 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "a configuration of '%s' is not one of attention_masked.cu",
                  cfg->template_name ? cfg->template_name : "(none)");
  QD_TRY(qd_launch_check_params(cfg, "HEAD_DIM", &c->head_dim, "ATT_CAUSAL", &c->causal, "ATT_BIAS", &c->bias, "ATT_WARPS_M",
                       &c->warps_m, "ATT_WARPS_D", &c->warps_d, "ATT_BLOCK_N", &c->block_n, "ATT_STAGES", &c->stages,
                       NULL));
  /* The template's static_asserts, so that a bad combination is refused here rather than by NVRTC. */
  if (c->head_dim % 64 != 0 || c->head_dim > 1024)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention_masked.cu: HEAD_DIM=%d is not a multiple of 64 up to "
                  "1024", c->head_dim);
  if (c->block_n % (16 * c->warps_d) != 0 || c->head_dim % (16 * c->warps_d) != 0 || c->warps_m * c->warps_d > 32)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "attention_masked.cu: ATT_BLOCK_N=%d and HEAD_DIM=%d must be multiples of 16 * ATT_WARPS_D (%d), "
                  "and ATT_WARPS_M (%d) * ATT_WARPS_D at most 32",
                  c->block_n, c->head_dim, c->warps_d, c->warps_m);
  return QD_OK;
}

qd_status_t qd_attention_masked_config_check(const qd_kernel_config_t* cfg) {
  qd_kt_attn_t_ c;
  return qd_kt_attn_params_(cfg, &c);
}

static size_t qd_kt_attn_smem_(const qd_kt_attn_t_* c) {
  const size_t bm = 16 * (size_t)c->warps_m, d = (size_t)c->head_dim, bn = (size_t)c->block_n;
  size_t bytes = bm * d * 2 + 2 * (size_t)c->stages * bn * d * 2;
  if (c->warps_d > 1) bytes += bm * (bn * 2 + 16) + 128 * (size_t)c->warps_m * (size_t)c->warps_d;
  return bytes;
}

size_t qd_attention_masked_shared_bytes(const qd_kernel_config_t* cfg) {
  qd_kt_attn_t_ c;
  qd_status_t s = qd_kt_attn_params_(cfg, &c);
  if (s) {
    qd_status_free(s);
    return 0;
  }
  return qd_kt_attn_smem_(&c);
}

unsigned qd_attention_masked_threads(const qd_kernel_config_t* cfg) {
  qd_kt_attn_t_ c;
  qd_status_t s = qd_kt_attn_params_(cfg, &c);
  if (s) {
    qd_status_free(s);
    return 0;
  }
  return 32u * (unsigned)(c.warps_m * c.warps_d);
}

unsigned qd_attention_masked_block_m(const qd_kernel_config_t* cfg) {
  qd_kt_attn_t_ c;
  qd_status_t s = qd_kt_attn_params_(cfg, &c);
  if (s) {
    qd_status_free(s);
    return 0;
  }
  return 16u * (unsigned)c.warps_m;
}

/* A row stride (0: dense) of q, k, v or o. */
static qd_status_t qd_kt_row_stride_(const char* k, const char* name, int64_t given, int64_t width, int64_t* out) {
  const int64_t s = given ? given : width;
  if (s < width || s > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE,
                  "%s: %s row stride is %lld elements; it must be at least heads * head_dim (%lld) and below 2^31", k,
                  name, (long long)s, (long long)width);
  if (s % 8 != 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_ALIGNMENT,
                  "%s: %s row stride is %lld elements; the 16-byte copies need a multiple of 8", k, name, (long long)s);
  *out = s;
  return QD_OK;
}

/* A batch stride (0: dense); `least` is what keeps batches apart (outputs only; inputs may overlap). */
static qd_status_t qd_kt_batch_stride_(const char* k, const char* name, int64_t given, int64_t dense, int64_t least,
                                       int64_t* out) {
  const int64_t s = given ? given : dense;
  if (s < least || s > QD_KT_MAX_ELEMS)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE,
                  "%s: %s batch stride is %lld elements; it must be from %lld to 2^40", k, name, (long long)s,
                  (long long)least);
  if (s % 8 != 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_ALIGNMENT,
                  "%s: %s batch stride is %lld elements; the 16-byte copies need a multiple of 8", k, name,
                  (long long)s);
  *out = s;
  return QD_OK;
}

qd_status_t qd_launch_attention_masked(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg,
                                       CUstream stream, const qd_attention_masked_args_t* a) {
  QD_TRY(qd_kt_begin_(QD_TEXT_KERNEL_ATTENTION_MASKED, fn, cfg));
  const char* k = fn->name;
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  qd_kt_attn_t_ c;
  QD_TRY(qd_kt_attn_params_(cfg, &c));
  if (a->head_dim != c.head_dim)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: head_dim = %lld, but this variant is compiled for "
                  "HEAD_DIM=%d", k, (long long)a->head_dim, c.head_dim);
  QD_TRY(qd_launch_check_range(k, "batch", a->batch, 1, 65535));
  QD_TRY(qd_launch_check_range(k, "heads", a->heads, 1, 65535));
  QD_TRY(qd_launch_check_range(k, "sq", a->sq, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "sk", a->sk, 1, INT_MAX));
  if (a->causal != (c.causal != 0))
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a %s launch of a variant compiled with ATT_CAUSAL=%d", k,
                  a->causal ? "causal" : "non-causal", c.causal);
  if (a->causal && a->sq != a->sk)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: causal attention needs sq == sk (%lld vs %lld)", k,
                  (long long)a->sq, (long long)a->sk);
  const int64_t width = a->heads * a->head_dim;
  QD_TRY(qd_launch_check_range(k, "heads * head_dim", width, 1, INT_MAX));
  const float scale = a->scale == 0.0f ? (float)(1.0 / sqrt((double)a->head_dim)) : a->scale;
  if (!(scale > 0.0f) || !isfinite(scale))
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: scale %g must be positive and finite (0: head_dim^-0.5)",
                  k, (double)a->scale);
  QD_TRY(qd_launch_check_need(k, "q", a->q));
  QD_TRY(qd_launch_check_need(k, "k", a->k));
  QD_TRY(qd_launch_check_need(k, "v", a->v));
  QD_TRY(qd_launch_check_need(k, "o", a->o));
  QD_TRY(qd_launch_check_align(k, "q", a->q, 16, "the 16-byte copies"));
  QD_TRY(qd_launch_check_align(k, "k", a->k, 16, "the 16-byte copies"));
  QD_TRY(qd_launch_check_align(k, "v", a->v, 16, "the 16-byte copies"));
  QD_TRY(qd_launch_check_align(k, "o", a->o, 16, "the 16-byte copies"));
  int64_t qr, kr, vr, orow, qb, kb, vb, ob;
  QD_TRY(qd_kt_row_stride_(k, "q", a->q_row_stride, width, &qr));
  QD_TRY(qd_kt_row_stride_(k, "k", a->k_row_stride, width, &kr));
  QD_TRY(qd_kt_row_stride_(k, "v", a->v_row_stride, width, &vr));
  QD_TRY(qd_kt_row_stride_(k, "o", a->o_row_stride, width, &orow));
  QD_TRY(qd_kt_batch_stride_(k, "q", a->q_batch_stride, a->sq * qr, 0, &qb));
  QD_TRY(qd_kt_batch_stride_(k, "k", a->k_batch_stride, a->sk * kr, 0, &kb));
  QD_TRY(qd_kt_batch_stride_(k, "v", a->v_batch_stride, a->sk * vr, 0, &vb));
  QD_TRY(qd_kt_batch_stride_(k, "o", a->o_batch_stride, a->sq * orow, a->batch > 1 ? a->sq * orow : 0, &ob));
  qd_kt_attn_params_t_ p = {
      .q = a->q, .k = a->k, .v = a->v, .o = a->o,
      .q_batch_stride = qb, .k_batch_stride = kb, .v_batch_stride = vb, .o_batch_stride = ob,
      .q_row_stride = (int32_t)qr, .k_row_stride = (int32_t)kr, .v_row_stride = (int32_t)vr,
      .o_row_stride = (int32_t)orow,
      .sq = (int32_t)a->sq, .sk = (int32_t)a->sk, .heads = (int32_t)a->heads,
      .scale_log2 = (float)((double)scale * 1.4426950408889634)};
  if (c.bias) {
    QD_TRY(qd_launch_check_need(k, "bias", a->bias));
    QD_TRY(qd_launch_check_align(k, "bias", a->bias, c.bias == 1 ? 2 : 4, c.bias == 1 ? "bf16" : "fp32"));
    if ((a->bias_batch != 1 && a->bias_batch != a->batch) || (a->bias_heads != 1 && a->bias_heads != a->heads))
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE,
                    "%s: bias is [%lld, %lld, sq, sk]; its batch must be 1 or %lld and its heads 1 or %lld", k,
                    (long long)a->bias_batch, (long long)a->bias_heads, (long long)a->batch, (long long)a->heads);
    const int64_t plane = a->sq * a->sk;
    if (plane > QD_KT_MAX_ELEMS / a->bias_heads / a->bias_batch)
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a bias of %lld x %lld x %lld x %lld elements is too large",
                    k, (long long)a->bias_batch, (long long)a->bias_heads, (long long)a->sq, (long long)a->sk);
    p.bias = a->bias;
    p.bias_row_stride = (int32_t)a->sk;
    p.bias_head_stride = a->bias_heads == 1 ? 0 : plane;
    p.bias_batch_stride = a->bias_batch == 1 ? 0 : a->bias_heads * plane;
    /* Sk even keeps every row, head and batch of the bias at an even element: pairs of columns are one load. */
    p.bias_pairs = a->sk % 2 == 0 && a->bias % (c.bias == 1 ? 4u : 8u) == 0;
  } else if (a->bias) {
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a bias was given to a variant compiled with ATT_BIAS=0", k);
  }
  const unsigned block_m = 16u * (unsigned)c.warps_m;
  const int64_t grid_x = (a->sq + block_m - 1) / block_m;
  void* params[] = {&p};
  return qd_kernel_launch(fn, (qd_kernel_dim3_t){(unsigned)grid_x, (unsigned)a->heads, (unsigned)a->batch},
                          qd_launch_dim(32u * (unsigned)(c.warps_m * c.warps_d)), (unsigned)qd_kt_attn_smem_(&c), stream,
                          params);
}
