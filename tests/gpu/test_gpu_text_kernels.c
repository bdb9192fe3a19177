/* GPU test and benchmark of the text encoders' kernels (kernels/templates/text_ops.cu, attention_masked.cu) through
 * their launchers (runtime/cuda/kernels_text.h).
 *
 * text_ops.cu: the defaults, then every documented value of each tunable with the other at its default. Each runs
 * embedding (I32 and I64 ids, CLIP's and T5's widths, a width that is not a multiple of 8, out-of-range ids that
 * must zero their rows and report the first bad element), arange, eos_pool (a batch without the token, I32 and I64
 * ids) and t5_relative_bias (T5's 32 buckets over 512 tokens, unidirectional buckets, a configuration whose
 * logarithmic buckets jump by more than one per distance). Outputs are bit-exact against the CPU reference.
 *
 * attention_masked.cu: per use, a base configuration (CLIP: head dim 64, causal; T5: head dim 64, bf16 bias, and
 * fp32 bias; plain head dim 64; the VAE: head dim 512, the largest of the listed tilings whose shared memory fits
 * this device), then every documented value of each tunable with the others at the base's; combinations the
 * template does not take are skipped (qd_attention_masked_config_check), and those that need more shared memory
 * than the device allows are listed as "n/a". Shapes: CLIP (B=1, 12 heads, S=77, causal), T5 (B=1, 64 heads, S=512
 * and 256, bias [1, H, S, S], scale 1), the VAE's mid block (B=1, 1 head, D=512, S=4096, 16384 with the benchmark on,
 * and 1000), plus small odd shapes: q, k, v as column slices of one fused QKV activation, Sq != Sk, bias [B, 1, S, S].
 * A case passes when nothing is left unwritten (NaN), the guard bytes are intact and the relative L2 error against
 * qd_ref_attention on the same bf16 inputs is at most 1e-2 (P is rounded to bf16 for the P V product).
 *
 * Every output is poisoned first (0xFF bytes: NaN in bf16) with 256 poisoned guard bytes on each side; inputs are
 * random, never all zeros. Timing: CUDA events around each launch, median of 20 after 3 warm-ups; GB/s for the
 * token ops, TFLOP/s (4 B H D Sq Sk, half of it when causal) for attention. Shapes marked for the benchmark only run
 * without --no-bench (meson runs with it).
 * Exits 77 (skip) without a driver, a device or NVRTC; 0 when every check passes; 1 otherwise.
 * Usage: test_gpu_text_kernels [--no-bench] [--only SUBSTRING]   (matches the template, kernel or base name)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"
#include "runtime/cpu/ref.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"
#include "runtime/cuda/kernels_text.h"
#include "runtime/cuda_driver.h"

#include "gpu_harness.h"

#define PEAK_BYTES_PER_S 4.3e12
#define MAX_VARIANTS 16

/* ---- process state (the rest is in gpu_harness.h) ------------------------------------------------------------ */

static int smem_optin; /* bytes of shared memory a block may opt in to */
static int refusals, skipped;

/* ---- variants ----------------------------------------------------------------------------------------------- */

static const char* op_name_(int op, const qd_kernel_config_t* cfg) {
  return qd_text_kernel_function_name((qd_text_kernel_op_t)op, cfg);
}

static const qd_kernel_function_t* fn_of(const variant_t* v, qd_text_kernel_op_t op) {
  return variant_function(v, qd_text_kernel_function_name(op, &v->cfg), v->cfg.template_name);
}

/* Compiles and loads one configuration (every kernel of its template); attention variants are allowed the dynamic
 * shared memory they need, or marked unusable when the device has less. */
static void variant_load(variant_t* v) {
  const char* names[GH_MAX_FNS];
  size_t n = variant_function_names(v, op_name_, QD_TEXT_KERNEL_OP_COUNT_, names);
  const bool attention = strcmp(v->cfg.template_name, "attention_masked.cu") == 0;
  v->smem = attention ? qd_attention_masked_shared_bytes(&v->cfg) : 0;
  if (v->smem > (size_t)smem_optin) return; /* not loaded */
  variant_load_functions(v, names, n, NULL);
  if (v->smem > 48 * 1024) MUST(qd_kernel_function_set_max_dynamic_shared(&v->fns[0], (int)v->smem));
}

/* `base` first, then each documented tunable value that differs from the base's; combinations the template does
 * not take (attention) are left out. */
static size_t variants_build(const qd_kernel_config_t* base, const char* base_label, variant_t* out) {
  const bool attention = strcmp(base->template_name, "attention_masked.cu") == 0;
  size_t n = 0;
  variant_init(&out[n], base);
  snprintf(out[n].label, sizeof out[n].label, "%s", base_label);
  n++;
  for (size_t p = 0; p < base->params.count; p++) {
    const qd_kernel_param_t* param = &base->params.items[p];
    if (param->kind != QD_KERNEL_PARAM_TUNABLE) continue;
    for (size_t i = 0; i < param->value_count && n < MAX_VARIANTS; i++) {
      if (param->values[i] == base->values[p]) continue;
      variant_init(&out[n], base);
      MUST(qd_kernel_config_set(&out[n].cfg, param->name, param->values[i]));
      if (attention) {
        qd_status_t s = qd_attention_masked_config_check(&out[n].cfg);
        if (s) {
          qd_status_free(s);
          continue;
        }
      }
      snprintf(out[n].label, sizeof out[n].label, "%s %s=%d", base_label, param->name, param->values[i]);
      n++;
    }
  }
  for (size_t i = 0; i < n; i++) variant_load(&out[i]);
  return n;
}

/* ---- checking and timing ------------------------------------------------------------------------------------ */

static void count(bool pass) {
  if (pass)
    passes++;
  else
    failures++;
}

/* A token-op line: bit-exact or not; timing as GB/s when us > 0. */
static void report_exact(const char* kernel, const variant_t* v, const char* shape, bool same, bool guards, double us,
                         double bytes, const char* extra) {
  const bool pass = same && guards;
  char t[64] = "          -";
  if (us > 0)
    snprintf(t, sizeof t, "%8.2f us %7.1f GB/s %5.1f%%", us, bytes / us * 1e-3,
             bytes / (us * 1e-6) / PEAK_BYTES_PER_S * 100);
  printf("%-20s %-42s %-34s %-24s %s  %s%s%s\n", kernel, v->label, shape, same ? "exact" : "MISMATCH", t,
         pass ? "PASS" : "FAIL", guards ? "" : " (guard bytes overwritten)", extra ? extra : "");
  count(pass);
}

/* The outcome of a launch: a shape the variant cannot take must be refused with KERNEL_ARG_SHAPE. */
static bool launched(qd_status_t s, bool expect_refusal, const char* kernel, const variant_t* v, const char* shape) {
  if (!s && !expect_refusal) return true;
  if (s && expect_refusal && qd_status_detail(s) == QD_E_KERNEL_ARG_SHAPE) {
    qd_status_free(s);
    printf("%-20s %-42s %-34s refused (the launcher rejects this shape for this variant)\n", kernel, v->label, shape);
    refusals++;
    return false;
  }
  char msg[4096] = "the launcher accepted a shape this variant cannot take";
  if (s) qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  printf("%-20s %-42s %-34s FAIL: %s\n", kernel, v->label, shape, msg);
  failures++;
  return false;
}

static bool selected(const char* a, const char* b) { return !only || strstr(a, only) || (b && strstr(b, only)); }

static bool bf16_same(const uint16_t* got, const float* want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (got[i] != qd_f32_to_bf16(want[i])) return false;
  return true;
}

/* ---- text_ops.cu -------------------------------------------------------------------------------------------- */

typedef struct {
  qd_text_kernel_op_t op;
  qd_embedding_args_t emb;
  qd_eos_pool_args_t eos;
  qd_t5_relative_bias_args_t t5;
  CUdeviceptr y;
  int64_t n;
} text_ctx_t;

static qd_status_t text_launch(const variant_t* v, void* ctx) {
  text_ctx_t* c = ctx;
  const qd_kernel_function_t* f = fn_of(v, c->op);
  switch (c->op) {
    case QD_TEXT_KERNEL_EMBEDDING: return qd_launch_embedding(f, &v->cfg, stream, &c->emb);
    case QD_TEXT_KERNEL_ARANGE: return qd_launch_arange(f, &v->cfg, stream, c->y, c->n);
    case QD_TEXT_KERNEL_EOS_POOL: return qd_launch_eos_pool(f, &v->cfg, stream, &c->eos);
    default: return qd_launch_t5_relative_bias(f, &v->cfg, stream, &c->t5);
  }
}

static void test_embedding(const variant_t* vs, size_t nv) {
  const struct {
    int64_t n, vocab, features, id_bytes;
    int bad; /* 1: ids -1 and vocab at elements 9 and 60 */
    bool bench;
  } cases[] = {{77, 49408, 768, 4, 0, false}, {77, 1000, 768, 8, 1, false}, {512, 4096, 4096, 8, 0, true},
               {512, 4096, 4096, 4, 1, false}, {5, 17, 100, 4, 0, false}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int64_t n = cases[ci].n, V = cases[ci].vocab, F = cases[ci].features, ib = cases[ci].id_bytes;
    float* wf;
    uint16_t* wh = rand_bf16((size_t)(V * F), 1.0f, 0.0f, &wf);
    int64_t* id64 = xmalloc(sizeof(int64_t) * (size_t)n);
    int32_t* id32 = xmalloc(sizeof(int32_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) id64[i] = (int64_t)(next_u64() % (uint64_t)V);
    id64[n - 1] = V - 1;
    if (cases[ci].bad) id64[9] = -1, id64[60 % n] = V;
    for (int64_t i = 0; i < n; i++) id32[i] = (int32_t)id64[i];
    float* want = xmalloc(sizeof(float) * (size_t)(n * F));
    for (int64_t i = 0; i < n; i++)
      for (int64_t c = 0; c < F; c++)
        want[i * F + c] = id64[i] < 0 || id64[i] >= V ? 0.0f : wf[id64[i] * F + c];
    if (!cases[ci].bad) { /* the oracle itself, where it may run */
      float* ref = xmalloc(sizeof(float) * (size_t)(n * F));
      qd_ref_embedding(pool, ib == 8 ? (const void*)id64 : (const void*)id32, ib, wf, ref, n, F);
      if (memcmp(ref, want, sizeof(float) * (size_t)(n * F)) != 0) {
        printf("embedding: the test's expectation differs from qd_ref_embedding\n");
        failures++;
      }
      free(ref);
    }
    const uint64_t want_err = cases[ci].bad ? 9 : QD_EMBEDDING_NO_ERROR;
    dbuf_t w = dnew(wh, (size_t)(V * F) * 2), ids = dnew(ib == 8 ? (const void*)id64 : (const void*)id32,
                                                           (size_t)(n * ib));
    dbuf_t y = dalloc((size_t)(n * F) * 2), err = dalloc(8);
    uint16_t* got = xmalloc((size_t)(n * F) * 2);
    char shape[80];
    snprintf(shape, sizeof shape, "n=%lld V=%lld F=%lld I%d%s", (long long)n, (long long)V, (long long)F,
             (int)(ib * 8), cases[ci].bad ? " bad ids" : "");
    for (size_t vi = 0; vi < nv; vi++) {
      const int vec = cfg_value(&vs[vi].cfg, "TXT_VEC");
      text_ctx_t c = {.op = QD_TEXT_KERNEL_EMBEDDING,
                      .emb = {.y = y.ptr, .ids = ids.ptr, .id_bytes = ib, .weight = w.ptr, .error = err.ptr, .n = n,
                              .vocab = V, .features = F}};
      dpoison(&err); /* all ones: QD_EMBEDDING_NO_ERROR */
      dpoison(&y);
      if (!launched(text_launch(&vs[vi], &c), F % vec != 0, "embedding", &vs[vi], shape)) continue;
      ddownload(&y, got, (size_t)(n * F) * 2);
      uint64_t e = 0;
      ddownload(&err, &e, 8);
      const bool same = bf16_same(got, want, (size_t)(n * F)) && e == want_err;
      const bool guards = dguards_ok(&y) && dguards_ok(&err);
      double us = cases[ci].bench && bench ? time_us(text_launch, &vs[vi], &c) : 0;
      char extra[64] = "";
      if (e != want_err) snprintf(extra, sizeof extra, " (error %llu, want %llu)", (unsigned long long)e,
                                  (unsigned long long)want_err);
      report_exact("embedding", &vs[vi], shape, same, guards, us, 4.0 * (double)(n * F) + (double)(n * ib), extra);
    }
    dfree(&w), dfree(&ids), dfree(&y), dfree(&err);
    free(wh), free(wf), free(id64), free(id32), free(want), free(got);
  }
}

static void test_arange(const variant_t* vs, size_t nv) {
  const int64_t sizes[] = {77, 512, 1000, 1};
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    const int64_t n = sizes[si];
    int32_t* want = xmalloc(sizeof(int32_t) * (size_t)n);
    int32_t* got = xmalloc(sizeof(int32_t) * (size_t)n);
    qd_ref_arange(want, n);
    dbuf_t y = dalloc(sizeof(int32_t) * (size_t)n);
    char shape[32];
    snprintf(shape, sizeof shape, "n=%lld", (long long)n);
    for (size_t vi = 0; vi < nv; vi++) {
      text_ctx_t c = {.op = QD_TEXT_KERNEL_ARANGE, .y = y.ptr, .n = n};
      dpoison(&y);
      if (!launched(text_launch(&vs[vi], &c), false, "arange", &vs[vi], shape)) continue;
      ddownload(&y, got, sizeof(int32_t) * (size_t)n);
      report_exact("arange", &vs[vi], shape, memcmp(got, want, sizeof(int32_t) * (size_t)n) == 0, dguards_ok(&y), 0,
                   0, NULL);
    }
    dfree(&y);
    free(want), free(got);
  }
}

static void test_eos_pool(const variant_t* vs, size_t nv) {
  const struct {
    int64_t b, s, c, id_bytes;
  } cases[] = {{1, 77, 768, 4}, {3, 77, 768, 8}, {2, 5, 100, 4}};
  const int64_t token = 49407;
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int64_t B = cases[ci].b, S = cases[ci].s, C = cases[ci].c, ib = cases[ci].id_bytes;
    float* xf;
    uint16_t* xh = rand_bf16((size_t)(B * S * C), 2.0f, 0.0f, &xf);
    int64_t* id64 = xmalloc(sizeof(int64_t) * (size_t)(B * S));
    int32_t* id32 = xmalloc(sizeof(int32_t) * (size_t)(B * S));
    for (int64_t i = 0; i < B * S; i++) id64[i] = (int64_t)(next_u64() % 40000);
    id64[S - 1] = token, id64[S / 2] = token; /* batch 0: the first of two */
    if (B > 2) id64[2 * S + S - 1] = token;   /* batch 1 has none: row 0 */
    for (int64_t i = 0; i < B * S; i++) id32[i] = (int32_t)id64[i];
    float* want = xmalloc(sizeof(float) * (size_t)(B * C));
    qd_ref_eos_pool(xf, ib == 8 ? (const void*)id64 : (const void*)id32, ib, want, B, S, C, token);
    dbuf_t x = dnew(xh, (size_t)(B * S * C) * 2);
    dbuf_t ids = dnew(ib == 8 ? (const void*)id64 : (const void*)id32, (size_t)(B * S * ib));
    dbuf_t y = dalloc((size_t)(B * C) * 2);
    uint16_t* got = xmalloc((size_t)(B * C) * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%lld S=%lld C=%lld I%d", (long long)B, (long long)S, (long long)C,
             (int)(ib * 8));
    for (size_t vi = 0; vi < nv; vi++) {
      const int vec = cfg_value(&vs[vi].cfg, "TXT_VEC");
      text_ctx_t c = {.op = QD_TEXT_KERNEL_EOS_POOL,
                      .eos = {.y = y.ptr, .x = x.ptr, .ids = ids.ptr, .id_bytes = ib, .batch = B, .tokens = S,
                              .ch = C, .token = token}};
      dpoison(&y);
      if (!launched(text_launch(&vs[vi], &c), C % vec != 0, "eos_pool", &vs[vi], shape)) continue;
      ddownload(&y, got, (size_t)(B * C) * 2);
      report_exact("eos_pool", &vs[vi], shape, bf16_same(got, want, (size_t)(B * C)), dguards_ok(&y), 0, 0, NULL);
    }
    dfree(&x), dfree(&ids), dfree(&y);
    free(xh), free(xf), free(id64), free(id32), free(want), free(got);
  }
}

static void test_t5_bias(const variant_t* vs, size_t nv) {
  const struct {
    int64_t tokens, heads, buckets, max_distance;
    bool bidirectional, bench;
  } cases[] = {{512, 64, 32, 128, true, true}, {77, 3, 32, 128, true, false}, {100, 2, 32, 128, false, false},
               {61, 2, 64, 20, true, false},   {300, 1, 256, 300, false, false}, {5, 2, 32, 128, true, false}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    const int64_t S = cases[ci].tokens, H = cases[ci].heads, NB = cases[ci].buckets;
    const size_t n = (size_t)(H * S * S);
    float* wf;
    uint16_t* wh = rand_bf16((size_t)(NB * H), 1.0f, 0.0f, &wf);
    float* want = xmalloc(sizeof(float) * n);
    qd_ref_t5_relative_bias(pool, wf, want, S, H, NB, cases[ci].max_distance, cases[ci].bidirectional);
    dbuf_t w = dnew(wh, (size_t)(NB * H) * 2), y = dalloc(n * 2);
    uint16_t* got = xmalloc(n * 2);
    char shape[80];
    snprintf(shape, sizeof shape, "S=%lld H=%lld nb=%lld md=%lld %s", (long long)S, (long long)H, (long long)NB,
             (long long)cases[ci].max_distance, cases[ci].bidirectional ? "bidir" : "causal");
    for (size_t vi = 0; vi < nv; vi++) {
      text_ctx_t c = {.op = QD_TEXT_KERNEL_T5_RELATIVE_BIAS,
                      .t5 = {.y = y.ptr, .weight = w.ptr, .tokens = S, .heads = H, .buckets = NB,
                             .max_distance = cases[ci].max_distance, .bidirectional = cases[ci].bidirectional}};
      dpoison(&y);
      if (!launched(text_launch(&vs[vi], &c), false, "t5_relative_bias", &vs[vi], shape)) continue;
      ddownload(&y, got, n * 2);
      const bool same = bf16_same(got, want, n), guards = dguards_ok(&y);
      double us = cases[ci].bench && bench ? time_us(text_launch, &vs[vi], &c) : 0;
      report_exact("t5_relative_bias", &vs[vi], shape, same, guards, us, 2.0 * (double)n, NULL);
    }
    dfree(&w), dfree(&y);
    free(wh), free(wf), free(want), free(got);
  }
}

static void test_text_ops(void) {
  if (!selected("text_ops.cu", "qd_embedding qd_arange qd_eos_pool qd_t5_relative_bias")) return;
  static variant_t vs[MAX_VARIANTS];
  qd_kernel_config_t base;
  MUST(qd_kernel_config_init("text_ops.cu", &base));
  size_t nv = variants_build(&base, "defaults", vs);
  test_embedding(vs, nv);
  test_arange(vs, nv);
  test_eos_pool(vs, nv);
  test_t5_bias(vs, nv);
  variants_free(vs, nv);
}

/* ---- attention_masked.cu ------------------------------------------------------------------------------------ */

typedef struct {
  const char* name;
  int64_t batch, heads, sq, sk;
  int bias; /* 0: none; 1: [1, H, Sq, Sk]; 2: [B, 1, Sq, Sk] */
  float scale;
  bool fused;      /* q, k, v as column slices of one [B, S, 3 H D] activation (needs sq == sk) */
  bool bench_only; /* skipped with --no-bench */
  bool timed;
} attn_case_t;

typedef struct {
  qd_attention_masked_args_t a;
} attn_ctx_t;

static qd_status_t attn_launch(const variant_t* v, void* ctx) {
  attn_ctx_t* c = ctx;
  return qd_launch_attention_masked(&v->fns[0], &v->cfg, stream, &c->a);
}

/* One base configuration: name, defines, and the cases it runs. The first of `tiles` that fits the device's shared
 * memory is the base (warps_m, warps_d, block_n, stages, q_in_regs). */
typedef struct {
  const char* name;
  int head_dim, causal, bias;
  int tiles[3][5];
  int tile_count;
  const attn_case_t* cases;
  size_t case_count;
} attn_base_t;

static const attn_case_t clip_cases[] = {
    {"CLIP-L", 1, 12, 77, 77, 0, 0.0f, false, false, true},
    {"fused qkv", 2, 3, 33, 33, 0, 0.0f, true, false, false},
    {"odd", 1, 2, 130, 130, 0, 0.0f, false, false, false},
};
static const attn_case_t t5_cases[] = {
    {"T5-XXL S=512", 1, 64, 512, 512, 1, 1.0f, false, false, true},
    {"T5-XXL S=256", 1, 64, 256, 256, 1, 1.0f, false, false, true},
    {"bias [B,1]", 2, 3, 77, 77, 2, 1.0f, false, false, false},
    {"Sq != Sk", 1, 2, 50, 77, 1, 0.0f, false, false, false},
};
static const attn_case_t t5f32_cases[] = {
    {"T5 S=256 fp32 bias", 1, 64, 256, 256, 1, 1.0f, false, false, true},
    {"bias [B,1]", 2, 2, 77, 77, 2, 0.0f, true, false, false},
};
static const attn_case_t d64_cases[] = {
    {"Sq != Sk", 1, 12, 50, 77, 0, 0.0f, false, false, false},
    {"fused qkv", 2, 3, 100, 100, 0, 0.0f, true, false, false},
};
static const attn_case_t vae_cases[] = {
    {"VAE 512x512", 1, 1, 4096, 4096, 0, 0.0f, false, false, true},
    {"VAE 1024x1024", 1, 1, 16384, 16384, 0, 0.0f, false, true, true},
    {"odd", 1, 1, 1000, 1000, 0, 0.0f, false, false, false},
    {"small batch 2", 2, 1, 77, 77, 0, 0.0f, false, false, false},
};

#define CASES_(c) c, sizeof c / sizeof c[0]
static const attn_base_t attn_bases[] = {
    {"clip", 64, 1, 0, {{4, 1, 64, 2, 1}}, 1, CASES_(clip_cases)},
    {"t5", 64, 0, 1, {{4, 1, 64, 2, 1}}, 1, CASES_(t5_cases)},
    {"t5-f32", 64, 0, 2, {{4, 1, 64, 2, 1}}, 1, CASES_(t5f32_cases)},
    {"d64", 64, 0, 0, {{4, 1, 64, 2, 1}}, 1, CASES_(d64_cases)},
    /* 198 KiB (sm_90), 134 KiB (sm_80), 99 KiB (sm_86, sm_89) */
    {"vae", 512, 0, 0, {{4, 2, 32, 2, 0}, {4, 2, 32, 1, 0}, {2, 2, 32, 1, 0}}, 3, CASES_(vae_cases)},
};

static void attn_base_config(const attn_base_t* b, const int* t, qd_kernel_config_t* cfg) {
  MUST(qd_kernel_config_init("attention_masked.cu", cfg));
  MUST(qd_kernel_config_set(cfg, "HEAD_DIM", b->head_dim));
  MUST(qd_kernel_config_set(cfg, "ATT_CAUSAL", b->causal));
  MUST(qd_kernel_config_set(cfg, "ATT_BIAS", b->bias));
  MUST(qd_kernel_config_set(cfg, "ATT_WARPS_M", t[0]));
  MUST(qd_kernel_config_set(cfg, "ATT_WARPS_D", t[1]));
  MUST(qd_kernel_config_set(cfg, "ATT_BLOCK_N", t[2]));
  MUST(qd_kernel_config_set(cfg, "ATT_STAGES", t[3]));
  MUST(qd_kernel_config_set(cfg, "ATT_Q_IN_REGS", t[4]));
}

static void test_attention_base(const attn_base_t* b) {
  static variant_t vs[MAX_VARIANTS];
  qd_kernel_config_t base;
  const int* tile = b->tiles[0];
  for (int i = 0; i < b->tile_count; i++) {
    attn_base_config(b, b->tiles[i], &base);
    tile = b->tiles[i];
    if (qd_attention_masked_shared_bytes(&base) <= (size_t)smem_optin) break;
  }
  attn_base_config(b, tile, &base);
  char label[96];
  snprintf(label, sizeof label, "%s m%dx%d n%d s%d%s", b->name, tile[0], tile[1], tile[2], tile[3],
           tile[4] ? " qr" : "");
  size_t nv = variants_build(&base, label, vs);
  const int64_t D = b->head_dim;
  for (size_t ci = 0; ci < b->case_count; ci++) {
    const attn_case_t* tc = &b->cases[ci];
    if (tc->bench_only && !bench) continue;
    const int64_t B = tc->batch, H = tc->heads, Sq = tc->sq, Sk = tc->sk, W = H * D;
    /* Rows of q, k, v: dense, or slices of one fused [B, S, 3 W] activation. */
    const int64_t rs = tc->fused ? 3 * W : W;
    const size_t qn = (size_t)(B * Sq * rs), kn = tc->fused ? 0 : (size_t)(B * Sk * W);
    float *qf_all, *kf_all = NULL, *vf_all = NULL;
    uint16_t* qh = rand_bf16(qn, 2.0f, 0.0f, &qf_all);
    uint16_t* kh = tc->fused ? NULL : rand_bf16(kn, 2.0f, 0.0f, &kf_all);
    uint16_t* vh = tc->fused ? NULL : rand_bf16(kn, 1.0f, 0.0f, &vf_all);
    /* The reference's dense q, k, v. */
    float* qf = xmalloc(sizeof(float) * (size_t)(B * Sq * W));
    float* kf = xmalloc(sizeof(float) * (size_t)(B * Sk * W));
    float* vf = xmalloc(sizeof(float) * (size_t)(B * Sk * W));
    for (int64_t r = 0; r < B * Sq; r++) memcpy(qf + r * W, qf_all + r * rs, sizeof(float) * (size_t)W);
    for (int64_t r = 0; r < B * Sk; r++) {
      memcpy(kf + r * W, tc->fused ? qf_all + r * rs + W : kf_all + r * W, sizeof(float) * (size_t)W);
      memcpy(vf + r * W, tc->fused ? qf_all + r * rs + 2 * W : vf_all + r * W, sizeof(float) * (size_t)W);
    }
    const int64_t bb = tc->bias == 2 ? B : 1, bhh = tc->bias == 1 ? H : 1;
    const size_t bn = tc->bias ? (size_t)(bb * bhh * Sq * Sk) : 0;
    float* biasf = NULL;
    void* bias_dev_host = NULL;
    if (tc->bias) {
      uint16_t* b16 = rand_bf16(bn, 3.0f, 0.0f, &biasf);
      if (b->bias == 2) { /* fp32: values that bf16 cannot hold */
        for (size_t i = 0; i < bn; i++) biasf[i] = 3.0f * uniform();
        bias_dev_host = biasf;
        free(b16);
      } else {
        bias_dev_host = b16;
      }
    }
    const float scale = tc->scale == 0.0f ? 1.0f / sqrtf((float)D) : tc->scale;
    float* want = xmalloc(sizeof(float) * (size_t)(B * Sq * W));
    qd_ref_attention(pool, qf, kf, vf, biasf, bb, bhh, want, B, Sq, Sk, H, D, D, scale, b->causal != 0);
    dbuf_t q = dnew(qh, qn * 2), k = {0}, v = {0}, bias = {0};
    if (!tc->fused) k = dnew(kh, kn * 2), v = dnew(vh, kn * 2);
    if (tc->bias) bias = dnew(bias_dev_host, bn * (b->bias == 2 ? 4 : 2));
    dbuf_t o = dalloc((size_t)(B * Sq * W) * 2);
    uint16_t* got_h = xmalloc((size_t)(B * Sq * W) * 2);
    char shape[80];
    snprintf(shape, sizeof shape, "%s B%lld H%lld D%lld %lldx%lld", tc->name, (long long)B, (long long)H,
             (long long)D, (long long)Sq, (long long)Sk);
    const double flops = 4.0 * (double)(B * H * D) * (b->causal ? (double)Sq * (double)(Sq + 1) / 2.0
                                                                 : (double)Sq * (double)Sk);
    for (size_t vi = 0; vi < nv; vi++) {
      if (!vs[vi].loaded) {
        printf("%-20s %-42s %-34s n/a (needs %zu bytes of shared memory; the device allows %d)\n", "attention_masked",
               vs[vi].label, shape, vs[vi].smem, smem_optin);
        skipped++;
        continue;
      }
      attn_ctx_t c = {{.q = q.ptr, .k = tc->fused ? q.ptr + (CUdeviceptr)(W * 2) : k.ptr,
                       .v = tc->fused ? q.ptr + (CUdeviceptr)(2 * W * 2) : v.ptr, .o = o.ptr,
                       .bias = tc->bias ? bias.ptr : 0, .batch = B, .sq = Sq, .sk = Sk, .heads = H, .head_dim = D,
                       .q_row_stride = rs, .k_row_stride = rs, .v_row_stride = rs, .bias_batch = bb,
                       .bias_heads = bhh, .scale = tc->scale, .causal = b->causal != 0}};
      dpoison(&o);
      if (!launched(attn_launch(&vs[vi], &c), false, "attention_masked", &vs[vi], shape)) continue;
      ddownload(&o, got_h, (size_t)(B * Sq * W) * 2);
      double num = 0, den = 0, max_abs = 0;
      size_t unwritten = 0;
      for (size_t i = 0; i < (size_t)(B * Sq * W); i++) {
        const float g = qd_bf16_to_f32(got_h[i]);
        if (isnan(g)) {
          unwritten++;
          continue;
        }
        const double d = fabs((double)g - (double)want[i]);
        num += d * d;
        den += (double)want[i] * want[i];
        if (d > max_abs) max_abs = d;
      }
      const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
      const bool guards = dguards_ok(&o);
      const bool pass = unwritten == 0 && guards && rel <= 1e-2;
      double us = tc->timed && bench ? time_us(attn_launch, &vs[vi], &c) : 0;
      char t[64] = "          -";
      if (us > 0) snprintf(t, sizeof t, "%9.1f us %6.1f TFLOP/s", us, flops / (us * 1e-6) * 1e-12);
      printf("%-20s %-42s %-34s relL2 %.2e max %.2e %s  %s", "attention_masked", vs[vi].label, shape, rel, max_abs, t,
             pass ? "PASS" : "FAIL");
      if (unwritten) printf(" (%zu unwritten)", unwritten);
      if (!guards) printf(" (guard bytes overwritten)");
      printf("\n");
      count(pass);
    }
    dfree(&q), dfree(&k), dfree(&v), dfree(&bias), dfree(&o);
    free(qh), free(kh), free(vh), free(qf_all), free(kf_all), free(vf_all), free(qf), free(kf), free(vf);
    free(biasf), free(want), free(got_h);
    if (tc->bias && b->bias != 2) free(bias_dev_host);
  }
  variants_free(vs, nv);
}

static void test_attention(void) {
  for (size_t i = 0; i < sizeof attn_bases / sizeof attn_bases[0]; i++)
    if (selected("attention_masked.cu qd_attention_masked", NULL) || selected(attn_bases[i].name, NULL))
      test_attention_base(&attn_bases[i]);
}

/* ---- main --------------------------------------------------------------------------------------------------- */

int main(int argc, char** argv) {
  rng = 0x13198A2E03707344ull; /* this test's own sequence, as before the harness was shared */
  gh_device_t d;
  const int early = gh_start("test_gpu_text_kernels", argc, argv, false, &d);
  if (early >= 0) return early;
  MUST(QD_CU_STATUS(
      cu->cuDeviceGetAttribute(&smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device)));
  printf("test_gpu_text_kernels: %s (%s, %d SMs, %d KiB shared memory per block), driver %d, NVRTC %d.%d\n", d.name,
         arch, d.sms, smem_optin / 1024, cu->driver_version, nvrtc->version_major, nvrtc->version_minor);
  printf("%-20s %-42s %-34s %-24s %s\n", "kernel", "variant", "shape", "error", "   median time  achieved");

  test_text_ops();
  test_attention();

  MUST(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  printf("test_gpu_text_kernels: %d passed, %d failed, %d refused as expected, %d not run (shared memory)\n", passes,
         failures, refusals, skipped);
  gh_finish();
  return failures == 0 && passes > 0 ? 0 : 1;
}
