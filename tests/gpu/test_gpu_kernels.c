/* GPU test and benchmark of the non-GEMM, non-attention kernels (kernels/templates/{layernorm_modulate,
 * qk_norm_rope, gated_residual, elementwise, nf4_dequant, small_ops}.cu) through their launchers
 * (runtime/cuda/kernels.h).
 *
 * For each template, every variant the tests compile: the defaults, then every documented value of each select
 * and tunable parameter with the others at their defaults (runtime/cuda/kernel_compile.h), compiled with NVRTC for
 * the device's architecture from the embedded sources and loaded. Each variant runs on several shapes, including
 * sizes that are not multiples of the vector width or tile (C = 3072, 3000, 96, 17; S = 4608, 17, 5), on random
 * inputs (never all zeros), with the output poisoned first (0xFF bytes: NaN in bf16 and fp32) and 256 poisoned
 * guard bytes on each side. A case passes when every output element was written (no NaN left), the guards are
 * intact, and the output matches the CPU reference (runtime/cpu/ref.h) computed from the same bf16-rounded inputs:
 *   bf16 outputs:   rel L2 <= 1e-2 and |got - want| <= 2^-8 |want| + 1e-3 rms(want) for every element (one bf16
 *                   rounding is 2^-9 relative; the slack covers fp32 vs double statistics and 1-ulp differences
 *                   of expf/tanhf/erff/sinf between the device and the C library)
 *   nf4_dequant, fp32 <-> bf16, slice, concat: bit-exact
 *   rope_freqs (fp32 out, float64 math on both sides): |got - want| <= 1e-6
 * Shapes a variant cannot take (cols not a multiple of its vector width) must be refused by the launcher with
 * KERNEL_ARG_SHAPE; the table says "refused".
 *
 * Timing (bench shapes, the FLUX.1 sizes at 1024x1024: B = 2, S = 4608, C = 3072, MLP 12288): CUDA events around
 * each launch, median of 20 after 3 warm-ups; achieved GB/s = bytes read + written / time, and the share of
 * 4.3 TB/s (H200 HBM3e as measured in docs/performance.md's peer runs).
 *
 * Output: one line per (kernel, variant, shape): kernel, variant (parameters that differ from the defaults),
 * shape, rel L2 and max abs error (or "exact"), time in us, GB/s and % of 4.3 TB/s, PASS/FAIL. Then a summary.
 * Exits 77 (skip) without a driver, a device or NVRTC; 0 when every check passes; 1 otherwise. Not a Check suite on
 * purpose: it must run on GPU machines without Check.
 * Usage: test_gpu_kernels [--no-bench] [--only SUBSTRING]   (SUBSTRING matches the template or kernel name)
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/nf4.h"
#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"
#include "runtime/cpu/ref.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda_driver.h"

#include "gpu_harness.h"

#define PEAK_BYTES_PER_S 4.3e12
#define MAX_VARIANTS 48
#define MAX_FNS GH_MAX_FNS

/* ---- process state (the rest is in gpu_harness.h) ------------------------------------------------------------ */

static int refusals;

/* ---- random data ------------------------------------------------------------------------------------------- */

static float* rand_f32(size_t n, float a, float b) {
  float* f = malloc(n * sizeof *f + 1);
  if (!f) exit(1);
  for (size_t i = 0; i < n; i++) f[i] = a * uniform() + b;
  return f;
}

/* ---- variants ----------------------------------------------------------------------------------------------- */

static const char* op_name_(int op, const qd_kernel_config_t* cfg) {
  return qd_kernel_function_name((qd_kernel_op_t)op, cfg);
}

static const qd_kernel_function_t* fn_of(const variant_t* v, qd_kernel_op_t op) {
  return variant_function(v, qd_kernel_function_name(op, &v->cfg), qd_kernel_template_name(op));
}

/* Compiles and loads one configuration: every kernel of its template that a launcher uses. */
static void variant_load(variant_t* v) {
  const char* names[MAX_FNS];
  variant_load_functions(v, names, variant_function_names(v, op_name_, QD_KERNEL_OP_COUNT_, names), NULL);
}

/* The defaults, then each documented select/tunable value with the others at defaults; `fixed` (may be NULL)
 * is set first in every variant (QKR_HEAD_DIM). */
static size_t variants_build(const char* tmpl, const char* fixed, int fixed_value, variant_t* out) {
  qd_kernel_config_t base;
  MUST(qd_kernel_config_init(tmpl, &base));
  if (fixed) MUST(qd_kernel_config_set(&base, fixed, fixed_value));
  size_t n = 0;
  variant_init(&out[n], &base);
  snprintf(out[n].label, sizeof out[n].label, fixed ? "%s=%d" : "defaults", fixed, fixed_value);
  n++;
  for (size_t p = 0; p < base.params.count; p++) {
    const qd_kernel_param_t* param = &base.params.items[p];
    if (param->kind == QD_KERNEL_PARAM_SHAPE) continue;
    for (size_t i = 0; i < param->value_count && n < MAX_VARIANTS; i++) {
      if (param->values[i] == base.values[p]) continue;
      variant_init(&out[n], &base);
      MUST(qd_kernel_config_set(&out[n].cfg, param->name, param->values[i]));
      if (fixed)
        snprintf(out[n].label, sizeof out[n].label, "%s=%d %s=%d", fixed, fixed_value, param->name, param->values[i]);
      else
        snprintf(out[n].label, sizeof out[n].label, "%s=%d", param->name, param->values[i]);
      n++;
    }
  }
  for (size_t i = 0; i < n; i++) variant_load(&out[i]);
  return n;
}

/* ---- checking and timing ------------------------------------------------------------------------------------ */

/* Prints a result line and counts it. exact: err is ignored and `ok` says whether the bits matched. */
static void report(const char* kernel, const variant_t* v, const char* shape, bool exact, bool ok, error_t_ err,
                   bool guards, double us, double bytes) {
  bool pass = ok && guards;
  if (!exact) pass = pass && err.unwritten == 0 && err.over_bound == 0 && err.rel_l2 <= 1e-2;
  char e[64], t[64] = "          -";
  if (exact)
    snprintf(e, sizeof e, "%s", ok ? "exact" : "MISMATCH");
  else
    snprintf(e, sizeof e, "relL2 %.2e max %.2e", err.rel_l2, err.max_abs);
  if (us > 0)
    snprintf(t, sizeof t, "%8.2f us %7.1f GB/s %5.1f%%", us, bytes / us * 1e-3, bytes / (us * 1e-6) / PEAK_BYTES_PER_S * 100);
  printf("%-22s %-38s %-30s %-28s %s  %s", kernel, v->label, shape, e, t, pass ? "PASS" : "FAIL");
  if (!exact && err.unwritten) printf(" (%zu unwritten)", err.unwritten);
  if (!exact && err.over_bound) printf(" (%zu over bound)", err.over_bound);
  if (!guards) printf(" (guard bytes overwritten)");
  printf("\n");
  if (pass)
    passes++;
  else
    failures++;
}

/* The outcome of a launch. A shape the variant cannot take (cols not a multiple of its vector width) must be
 * refused with KERNEL_ARG_SHAPE; anything else must launch. True when the output is there to be checked. */
static bool launched(qd_status_t s, bool expect_refusal, const char* kernel, const variant_t* v, const char* shape) {
  if (!s && !expect_refusal) return true;
  if (s && expect_refusal && qd_status_detail(s) == QD_E_KERNEL_ARG_SHAPE) {
    qd_status_free(s);
    printf("%-22s %-38s %-30s refused (the launcher rejects this shape for this variant)\n", kernel, v->label, shape);
    refusals++;
    return false;
  }
  char msg[4096] = "the launcher accepted a shape this variant cannot take";
  if (s) qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  printf("%-22s %-38s %-30s FAIL: %s\n", kernel, v->label, shape, msg);
  failures++;
  return false;
}

static bool selected(const char* tmpl, const char* kernel) {
  return !only || strstr(tmpl, only) || strstr(kernel, only);
}

/* Poisons the output and launches once; true when the output is there to be checked. */
static bool run_case(launch_fn_t launch, const variant_t* v, void* ctx, dbuf_t* out, bool expect_refusal,
                     const char* kernel, const char* shape) {
  dpoison(out);
  return launched(launch(v, ctx), expect_refusal, kernel, v, shape);
}

/* ---- layernorm_modulate.cu ---------------------------------------------------------------------------------- */

typedef struct {
  qd_layernorm_args_t a;
} ln_ctx_t;

static qd_status_t ln_launch(const variant_t* v, void* ctx) {
  ln_ctx_t* c = ctx;
  return qd_launch_layernorm(fn_of(v, QD_KERNEL_LAYERNORM), &v->cfg, stream, &c->a);
}

static void test_layernorm(void) {
  if (!selected("layernorm_modulate.cu", "qd_layernorm_modulate qd_layer_norm")) return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("layernorm_modulate.cu", NULL, 0, vs);
  /* The plain RMS norm T5 runs (LN_MODULATE=0 with LN_RMS=1) changes two parameters at once. */
  if (nv < MAX_VARIANTS) {
    vs[nv].cfg = vs[0].cfg;
    MUST(qd_kernel_config_set(&vs[nv].cfg, "LN_MODULATE", 0));
    MUST(qd_kernel_config_set(&vs[nv].cfg, "LN_RMS", 1));
    snprintf(vs[nv].label, sizeof vs[nv].label, "LN_MODULATE=0 LN_RMS=1");
    variant_load(&vs[nv++]);
  }
  const struct {
    int64_t b, s, c;
    bool bench;
  } shapes[] = {{2, 4608, 3072, true}, {2, 17, 3000, false}, {3, 17, 96, false}, {1, 5, 24, false},
                {2, 17, 3001, false}, {1, 3, 17, false}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    if (shapes[si].bench && !bench) continue;
    const int64_t B = shapes[si].b, S = shapes[si].s, C = shapes[si].c, R = B * S;
    const size_t n = (size_t)(R * C);
    float *xf, *modf, *wf, *bf;
    /* A large mean (+3) makes a one-pass variance visibly wrong. */
    uint16_t* xh = rand_bf16(n, 4.0f, 3.0f, &xf);
    uint16_t* modh = rand_bf16((size_t)(B * 6 * C), 0.5f, 0.0f, &modf);
    uint16_t* wh = rand_bf16((size_t)C, 0.5f, 1.0f, &wf);
    uint16_t* bh = rand_bf16((size_t)C, 0.5f, 0.0f, &bf);
    float* shift = malloc(sizeof(float) * (size_t)(B * C));
    float* scale = malloc(sizeof(float) * (size_t)(B * C));
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++) {
        shift[b * C + c] = modf[b * 6 * C + 3 * C + c];
        scale[b * C + c] = modf[b * 6 * C + 4 * C + c];
      }
    float* norm = malloc(sizeof(float) * n);
    float* want_mod = malloc(sizeof(float) * n);
    float* want_affine = malloc(sizeof(float) * n);
    float* want_plain = malloc(sizeof(float) * n);
    float* rms_norm = malloc(sizeof(float) * n);
    float* want_rms_mod = malloc(sizeof(float) * n);
    float* want_rms_affine = malloc(sizeof(float) * n);
    qd_ref_layer_norm(pool, xf, NULL, NULL, norm, R, C, 1e-6f);
    qd_ref_modulate(pool, norm, shift, scale, want_mod, B, S, C);
    qd_ref_layer_norm(pool, xf, wf, bf, want_affine, R, C, 1e-5f);
    memcpy(want_plain, norm, sizeof(float) * n);
    /* LN_RMS: RMS norm (T5 has a weight and no bias); its affine variants run with the weight only. */
    qd_ref_rms_norm(pool, xf, NULL, rms_norm, R, C, 1e-6f);
    qd_ref_modulate(pool, rms_norm, shift, scale, want_rms_mod, B, S, C);
    qd_ref_rms_norm(pool, xf, wf, want_rms_affine, R, C, 1e-5f);
    dbuf_t x = dnew(xh, n * 2), mod = dnew(modh, (size_t)(B * 6 * C) * 2), w = dnew(wh, (size_t)C * 2),
           bb = dnew(bh, (size_t)C * 2), y = dalloc(n * 2);
    uint16_t* got_h = malloc(n * 2);
    float* got = malloc(sizeof(float) * n);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%lld S=%lld C=%lld", (long long)B, (long long)S, (long long)C);
    for (size_t vi = 0; vi < nv; vi++) {
      const bool modulate = cfg_value(&vs[vi].cfg, "LN_MODULATE") == 1, rms = cfg_value(&vs[vi].cfg, "LN_RMS") == 1;
      const char* kname = rms ? (modulate ? "rmsnorm_modulate" : "rms_norm") : modulate ? "layernorm_modulate"
                                                                                        : "layer_norm";
      /* Plain variants run affine (w, b) on even shapes and without affine on odd ones. */
      const bool affine = !modulate && si % 2 == 0;
      ln_ctx_t c = {{.y = y.ptr, .x = x.ptr, .rows = R, .tokens = S, .cols = C, .eps = modulate ? 1e-6f : 1e-5f}};
      if (modulate) {
        c.a.shift = mod.ptr + (CUdeviceptr)(3 * C * 2);
        c.a.scale = mod.ptr + (CUdeviceptr)(4 * C * 2);
        c.a.mod_stride = 6 * C;
      } else if (affine) {
        c.a.weight = w.ptr;
        c.a.bias = rms ? 0 : bb.ptr;
      } else {
        c.a.eps = 1e-6f;
      }
      if (!run_case(ln_launch, &vs[vi], &c, &y, C % cfg_value(&vs[vi].cfg, "LN_VEC") != 0, kname, shape)) continue;
      ddownload(&y, got_h, n * 2);
      bf16_to_f32_array(got_h, got, n);
      const float* want = rms ? (modulate ? want_rms_mod : affine ? want_rms_affine : rms_norm)
                              : modulate ? want_mod : affine ? want_affine : want_plain;
      error_t_ e = compare(got, want, n);
      double us = shapes[si].bench ? time_us(ln_launch, &vs[vi], &c) : 0;
      report(kname, &vs[vi], shape, false, true, e, dguards_ok(&y), us, 4.0 * (double)n);
    }
    dfree(&x), dfree(&mod), dfree(&w), dfree(&bb), dfree(&y);
    free(xh), free(xf), free(modh), free(modf), free(wh), free(wf), free(bh), free(bf), free(shift), free(scale);
    free(norm), free(want_mod), free(want_affine), free(want_plain), free(got_h), free(got);
    free(rms_norm), free(want_rms_mod), free(want_rms_affine);
  }
  variants_free(vs, nv);
}

/* ---- qk_norm_rope.cu ---------------------------------------------------------------------------------------- */

typedef struct {
  qd_qk_norm_rope_args_t a;
} qk_ctx_t;

static qd_status_t qk_launch(const variant_t* v, void* ctx) {
  qk_ctx_t* c = ctx;
  return qd_launch_qk_norm_rope(fn_of(v, QD_KERNEL_QK_NORM_ROPE), &v->cfg, stream, &c->a);
}

static void test_qk_norm_rope(void) {
  if (!selected("qk_norm_rope.cu", "qd_qk_norm_rope")) return;
  /* x_mul/x_col: q as a column slice of a fused [B, S, x_mul * H*D] projection; y_tok/y_off: y written at token
   * y_off of a y_tok-token sequence (rope row = y_off + s); inplace: y = x; plain: no weight and no rotation. */
  const struct {
    int64_t b, s, h, d;
    int x_mul, x_col, y_tok, y_off;
    bool inplace, plain, bench;
  } cases[] = {
      {2, 4608, 24, 128, 1, 0, 4608, 0, false, false, true},
      {2, 4096, 24, 128, 1, 0, 4608, 512, false, false, true}, /* the image half of FLUX's joint q */
      {1, 17, 3, 128, 3, 1, 22, 5, false, false, false},
      {2, 17, 3, 128, 1, 0, 17, 0, true, false, false},
      {1, 17, 2, 128, 1, 0, 17, 0, false, true, false},
      {2, 17, 2, 64, 1, 0, 19, 2, false, false, false},
      {2, 7, 2, 16, 3, 2, 7, 0, false, false, false},
      {1, 5, 3, 8, 1, 0, 5, 0, false, false, false},
  };
  const int dims[] = {128, 64, 16, 8};
  for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
    static variant_t vs[MAX_VARIANTS];
    size_t nv = variants_build("qk_norm_rope.cu", "QKR_HEAD_DIM", dims[di], vs);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
      if (cases[ci].d != dims[di] || (cases[ci].bench && !bench)) continue;
      const int64_t B = cases[ci].b, S = cases[ci].s, H = cases[ci].h, D = cases[ci].d, HD = H * D;
      const int64_t xrow = cases[ci].x_mul * HD, ytok = cases[ci].inplace ? S : cases[ci].y_tok;
      const int64_t yoff = cases[ci].inplace ? 0 : cases[ci].y_off;
      const size_t xn = (size_t)(B * S * xrow), yn = (size_t)(B * ytok * HD), qn = (size_t)(B * S * HD);
      float *xf, *wf;
      uint16_t* xh = rand_bf16(xn, 3.0f, 0.0f, &xf);
      uint16_t* wh = rand_bf16((size_t)D, 0.5f, 1.0f, &wf);
      float* freqs = rand_f32((size_t)(2 * ytok * D), 1.0f, 0.0f);
      /* The reference on the gathered q, with the rope rows this q uses. */
      float* q = malloc(sizeof(float) * qn);
      for (int64_t r = 0; r < B * S; r++) memcpy(q + r * HD, xf + r * xrow + cases[ci].x_col * HD, sizeof(float) * HD);
      float* sub = malloc(sizeof(float) * (size_t)(2 * S * D));
      for (int half = 0; half < 2; half++)
        memcpy(sub + half * S * D, freqs + half * ytok * D + yoff * D, sizeof(float) * (size_t)(S * D));
      float* norm = malloc(sizeof(float) * qn);
      float* want = malloc(sizeof(float) * qn);
      qd_ref_rms_norm(pool, q, cases[ci].plain ? NULL : wf, norm, B * S * H, D, 1e-6f);
      if (cases[ci].plain)
        memcpy(want, norm, sizeof(float) * qn);
      else
        qd_ref_rope(pool, norm, sub, want, B, S, H, D);
      dbuf_t x = dnew(xh, xn * 2), w = dnew(wh, (size_t)D * 2), fr = dnew(freqs, sizeof(float) * (size_t)(2 * ytok * D));
      dbuf_t y = cases[ci].inplace ? x : dalloc(yn * 2);
      uint16_t* got_h = malloc((cases[ci].inplace ? xn : yn) * 2);
      float* got = malloc(sizeof(float) * qn);
      char shape[64];
      snprintf(shape, sizeof shape, "B=%lld S=%lld H=%lld D=%lld%s%s%s", (long long)B, (long long)S, (long long)H,
               (long long)D, cases[ci].x_mul > 1 ? " qkv" : "", yoff ? " off" : "",
               cases[ci].inplace ? " inpl" : cases[ci].plain ? " norm" : "");
      for (size_t vi = 0; vi < nv; vi++) {
        qk_ctx_t c = {{.x = x.ptr + (CUdeviceptr)(cases[ci].x_col * HD * 2), .weight = cases[ci].plain ? 0 : w.ptr,
                       .freqs = cases[ci].plain ? 0 : fr.ptr, .x_row_stride = xrow, .x_batch_stride = S * xrow,
                       .batch = B, .tokens = S, .heads = H, .head_dim = D, .rope_tokens = ytok, .rope_offset = yoff,
                       .eps = 1e-6f}};
        if (cases[ci].inplace) {
          dupload(&x, xh, xn * 2); /* the previous variant rewrote it */
          c.a.y = c.a.x, c.a.y_row_stride = xrow, c.a.y_batch_stride = S * xrow;
        } else {
          c.a.y = y.ptr + (CUdeviceptr)(yoff * HD * 2), c.a.y_row_stride = HD, c.a.y_batch_stride = ytok * HD;
          dpoison(&y);
        }
        if (!launched(qk_launch(&vs[vi], &c), false, "qk_norm_rope", &vs[vi], shape)) continue;
        /* Gather what the kernel wrote; everything else of a separate y must still be poison. */
        bool untouched = true;
        if (cases[ci].inplace) {
          ddownload(&x, got_h, xn * 2);
          for (int64_t r = 0; r < B * S; r++)
            for (int64_t i = 0; i < HD; i++) got[r * HD + i] = qd_bf16_to_f32(got_h[r * xrow + cases[ci].x_col * HD + i]);
        } else {
          ddownload(&y, got_h, yn * 2);
          for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < ytok; t++)
              for (int64_t i = 0; i < HD; i++) {
                uint16_t v = got_h[(b * ytok + t) * HD + i];
                if (t >= yoff && t < yoff + S)
                  got[((b * S) + t - yoff) * HD + i] = qd_bf16_to_f32(v);
                else
                  untouched &= v == 0xFFFF;
              }
        }
        error_t_ e = compare(got, want, qn);
        double us = cases[ci].bench ? time_us(qk_launch, &vs[vi], &c) : 0;
        report("qk_norm_rope", &vs[vi], shape, false, true, e, untouched && dguards_ok(&y), us,
               4.0 * (double)qn + 8.0 * (double)(S * D));
      }
      dfree(&x), dfree(&w), dfree(&fr);
      if (!cases[ci].inplace) dfree(&y);
      free(xh), free(xf), free(wh), free(wf), free(freqs), free(q), free(sub), free(norm), free(want), free(got_h),
          free(got);
    }
    variants_free(vs, nv);
  }
}

/* ---- gated_residual.cu -------------------------------------------------------------------------------------- */

typedef struct {
  qd_gated_residual_args_t a;
} gr_ctx_t;

static qd_status_t gr_launch(const variant_t* v, void* ctx) {
  gr_ctx_t* c = ctx;
  return qd_launch_gated_residual(fn_of(v, QD_KERNEL_GATED_RESIDUAL), &v->cfg, stream, &c->a);
}

static void test_gated_residual(void) {
  if (!selected("gated_residual.cu", "qd_gated_residual")) return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("gated_residual.cu", NULL, 0, vs);
  const struct {
    int64_t b, s, c;
    bool inplace, bench;
  } shapes[] = {{2, 4608, 3072, false, true}, {2, 17, 3000, false, false}, {1, 17, 96, true, false},
                {3, 5, 3001, false, false}, {2, 3, 17, false, false}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    if (shapes[si].bench && !bench) continue;
    const int64_t B = shapes[si].b, S = shapes[si].s, C = shapes[si].c;
    const size_t n = (size_t)(B * S * C);
    float *rf, *xf, *modf;
    uint16_t* rh = rand_bf16(n, 8.0f, 0.0f, &rf);
    uint16_t* xh = rand_bf16(n, 2.0f, 0.0f, &xf);
    uint16_t* modh = rand_bf16((size_t)(B * 6 * C), 1.0f, 0.0f, &modf);
    float* gate = malloc(sizeof(float) * (size_t)(B * C));
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++) gate[b * C + c] = modf[b * 6 * C + 2 * C + c];
    float* want = malloc(sizeof(float) * n);
    qd_ref_gated_add(pool, rf, gate, xf, want, B, S, C);
    dbuf_t r = dnew(rh, n * 2), x = dnew(xh, n * 2), mod = dnew(modh, (size_t)(B * 6 * C) * 2);
    dbuf_t y = shapes[si].inplace ? r : dalloc(n * 2);
    uint16_t* got_h = malloc(n * 2);
    float* got = malloc(sizeof(float) * n);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%lld S=%lld C=%lld%s", (long long)B, (long long)S, (long long)C,
             shapes[si].inplace ? " inpl" : "");
    for (size_t vi = 0; vi < nv; vi++) {
      gr_ctx_t c = {{.y = y.ptr, .residual = r.ptr, .x = x.ptr, .gate = mod.ptr + (CUdeviceptr)(2 * C * 2),
                     .gate_stride = 6 * C, .rows = B * S, .tokens = S, .cols = C}};
      if (shapes[si].inplace)
        dupload(&r, rh, n * 2);
      else
        dpoison(&y);
      if (!launched(gr_launch(&vs[vi], &c), C % cfg_value(&vs[vi].cfg, "GR_VEC") != 0, "gated_residual", &vs[vi],
                    shape))
        continue;
      ddownload(&y, got_h, n * 2);
      bf16_to_f32_array(got_h, got, n);
      error_t_ e = compare(got, want, n);
      double us = shapes[si].bench ? time_us(gr_launch, &vs[vi], &c) : 0;
      report("gated_residual", &vs[vi], shape, false, true, e, dguards_ok(&y), us, 6.0 * (double)n);
    }
    dfree(&r), dfree(&x), dfree(&mod);
    if (!shapes[si].inplace) dfree(&y);
    free(rh), free(rf), free(xh), free(xf), free(modh), free(modf), free(gate), free(want), free(got_h), free(got);
  }
  variants_free(vs, nv);
}

/* ---- elementwise.cu ----------------------------------------------------------------------------------------- */

typedef struct {
  qd_kernel_op_t op;
  CUdeviceptr y, x, b;
  int64_t n, b_stride, rows, tokens, cols;
  float factor;
} ew_ctx_t;

static qd_status_t ew_launch(const variant_t* v, void* ctx) {
  ew_ctx_t* c = ctx;
  const qd_kernel_function_t* f = fn_of(v, c->op);
  switch (c->op) {
    case QD_KERNEL_EW_UNARY: return qd_launch_ew_unary(f, &v->cfg, stream, c->y, c->x, c->n, c->factor);
    case QD_KERNEL_EW_BINARY:
      return qd_launch_ew_binary(f, &v->cfg, stream, c->y, c->x, c->b, c->b_stride, c->rows, c->tokens, c->cols);
    case QD_KERNEL_EW_BIAS_ACT:
      return qd_launch_ew_bias_act(f, &v->cfg, stream, c->y, c->x, c->b, c->rows, c->cols, c->factor);
    default: return qd_launch_ew_convert(f, &v->cfg, stream, c->y, c->x, c->n);
  }
}

/* The reference of EW_OP: qd_ref_unary's op, or a copy for 0 (identity). */
static void ew_ref_unary(int ew_op, const float* x, float* y, int64_t n, float factor) {
  static const qd_ref_unary_op_t ops[] = {QD_REF_SCALE, QD_REF_SILU, QD_REF_GELU, QD_REF_GELU_TANH, QD_REF_QUICK_GELU,
                                          QD_REF_SCALE};
  if (ew_op == 0)
    memcpy(y, x, sizeof(float) * (size_t)n);
  else
    qd_ref_unary(pool, ops[ew_op], x, y, n, factor);
}

static const char* const ew_op_names[] = {"identity", "silu", "gelu", "gelu_tanh", "quick_gelu", "scale"};

static void test_elementwise(void) {
  if (!selected("elementwise.cu", "qd_ew_unary qd_ew_binary qd_ew_bias_act qd_ew_f32_to_bf16 qd_ew_bf16_to_f32")) return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("elementwise.cu", NULL, 0, vs);
  const float factor = 0.731f;
  /* Flat kernels: n elements. */
  const struct {
    int64_t n;
    bool bench;
  } flat[] = {{4608 * 12288, true}, {2 * 17 * 3000 + 1, false}, {3001, false}, {17, false}, {5, false}};
  for (size_t fi = 0; fi < sizeof flat / sizeof flat[0]; fi++) {
    if (flat[fi].bench && !bench) continue;
    const int64_t n = flat[fi].n;
    float* xf;
    uint16_t* xh = rand_bf16((size_t)n, 6.0f, 0.0f, &xf);
    float* x32 = rand_f32((size_t)n, 100.0f, 0.0f);
    float* want = malloc(sizeof(float) * (size_t)n);
    dbuf_t x = dnew(xh, (size_t)n * 2), xs = dnew(x32, (size_t)n * 4), y = dalloc((size_t)n * 4);
    uint16_t* got_h = malloc((size_t)n * 2);
    float* got = malloc(sizeof(float) * (size_t)n);
    char shape[64];
    snprintf(shape, sizeof shape, "n=%lld", (long long)n);
    for (size_t vi = 0; vi < nv; vi++) {
      const int op = cfg_value(&vs[vi].cfg, "EW_OP");
      if (cfg_value(&vs[vi].cfg, "EW_BINOP") != 0) continue; /* binary-only variant */
      char kname[40];
      snprintf(kname, sizeof kname, "ew_unary %s", ew_op_names[op]);
      ew_ctx_t c = {.op = QD_KERNEL_EW_UNARY, .y = y.ptr, .x = x.ptr, .n = n, .factor = factor};
      if (!run_case(ew_launch, &vs[vi], &c, &y, false, kname, shape)) continue;
      ew_ref_unary(op, xf, want, n, factor);
      ddownload(&y, got_h, (size_t)n * 2);
      bf16_to_f32_array(got_h, got, (size_t)n);
      error_t_ e = compare(got, want, (size_t)n);
      bool guards = dguards_ok(&y);
      double us = flat[fi].bench ? time_us(ew_launch, &vs[vi], &c) : 0;
      report(kname, &vs[vi], shape, false, true, e, guards, us, 4.0 * (double)n);
      if (op != 1) continue; /* conversions do not depend on EW_OP: run them with the default op only */
      /* fp32 -> bf16, exact RNE */
      c = (ew_ctx_t){.op = QD_KERNEL_EW_F32_TO_BF16, .y = y.ptr, .x = xs.ptr, .n = n};
      if (run_case(ew_launch, &vs[vi], &c, &y, false, "ew_f32_to_bf16", shape)) {
        ddownload(&y, got_h, (size_t)n * 2);
        bool same = true;
        for (int64_t i = 0; i < n; i++) same &= got_h[i] == qd_f32_to_bf16(x32[i]);
        guards = dguards_ok(&y);
        us = flat[fi].bench ? time_us(ew_launch, &vs[vi], &c) : 0;
        report("ew_f32_to_bf16", &vs[vi], shape, true, same, e, guards, us, 6.0 * (double)n);
      }
      /* bf16 -> fp32, exact */
      c = (ew_ctx_t){.op = QD_KERNEL_EW_BF16_TO_F32, .y = y.ptr, .x = x.ptr, .n = n};
      if (run_case(ew_launch, &vs[vi], &c, &y, false, "ew_bf16_to_f32", shape)) {
        ddownload(&y, got, (size_t)n * 4);
        bool same = memcmp(got, xf, (size_t)n * 4) == 0;
        guards = dguards_ok(&y);
        us = flat[fi].bench ? time_us(ew_launch, &vs[vi], &c) : 0;
        report("ew_bf16_to_f32", &vs[vi], shape, true, same, e, guards, us, 6.0 * (double)n);
      }
    }
    dfree(&x), dfree(&xs), dfree(&y);
    free(xh), free(xf), free(x32), free(want), free(got_h), free(got);
  }
  /* Row kernels: [B, S, C] with b [B, C] (mode 0), b [C] (mode 1), or same shape (S = 1, mode 0). */
  const struct {
    int64_t b, s, c;
    int mode;
    bool bench;
  } rows[] = {{2, 4608, 3072, 0, true}, {1, 4608, 12288, 1, true}, {2, 17, 3000, 0, false}, {3, 17, 96, 1, false},
              {2, 1, 3072, 0, false}, {2, 5, 17, 0, false}};
  for (size_t ri = 0; ri < sizeof rows / sizeof rows[0]; ri++) {
    if (rows[ri].bench && !bench) continue;
    const int64_t B = rows[ri].b, S = rows[ri].s, C = rows[ri].c, R = B * S;
    const size_t n = (size_t)(R * C), bn = (size_t)(rows[ri].mode == 0 ? B * C : C);
    float *af, *bf;
    uint16_t* ah = rand_bf16(n, 4.0f, 0.0f, &af);
    uint16_t* bh = rand_bf16(bn, 2.0f, 0.0f, &bf);
    float* want = malloc(sizeof(float) * n);
    float* sum = malloc(sizeof(float) * n);
    dbuf_t a = dnew(ah, n * 2), b = dnew(bh, bn * 2), y = dalloc(n * 2);
    uint16_t* got_h = malloc(n * 2);
    float* got = malloc(sizeof(float) * n);
    const int64_t a_dims[3] = {B, S, C}, b_dims3[3] = {B, 1, C}, b_dims1[1] = {C};
    char shape[64];
    snprintf(shape, sizeof shape, "B=%lld S=%lld C=%lld b=%s", (long long)B, (long long)S, (long long)C,
             rows[ri].mode == 0 ? "[B,C]" : "[C]");
    for (size_t vi = 0; vi < nv; vi++) {
      const int op = cfg_value(&vs[vi].cfg, "EW_OP"), binop = cfg_value(&vs[vi].cfg, "EW_BINOP");
      if (op == 1) { /* binary kernels depend on EW_BINOP only: run them with the default op */
        char kname[40];
        snprintf(kname, sizeof kname, "ew_binary %s", binop ? "mul" : "add");
        ew_ctx_t c = {.op = QD_KERNEL_EW_BINARY, .y = y.ptr, .x = a.ptr, .b = b.ptr,
                      .b_stride = rows[ri].mode == 0 ? C : 0, .rows = R, .tokens = S, .cols = C};
        if (run_case(ew_launch, &vs[vi], &c, &y, C % cfg_value(&vs[vi].cfg, "EW_VEC") != 0, kname, shape)) {
          if (rows[ri].mode == 0)
            qd_ref_binary(pool, binop ? QD_REF_MUL : QD_REF_ADD, af, a_dims, 3, bf, b_dims3, 3, want);
          else
            qd_ref_binary(pool, binop ? QD_REF_MUL : QD_REF_ADD, af, a_dims, 3, bf, b_dims1, 1, want);
          ddownload(&y, got_h, n * 2);
          bf16_to_f32_array(got_h, got, n);
          error_t_ e = compare(got, want, n);
          bool guards = dguards_ok(&y);
          double us = rows[ri].bench ? time_us(ew_launch, &vs[vi], &c) : 0;
          report(kname, &vs[vi], shape, false, true, e, guards, us, 6.0 * (double)n);
        }
      }
      if (binop != 0 || rows[ri].mode != 1) continue; /* bias_act takes a [C] bias */
      char kname[40];
      snprintf(kname, sizeof kname, "ew_bias_act %s", ew_op_names[op]);
      ew_ctx_t c = {.op = QD_KERNEL_EW_BIAS_ACT, .y = y.ptr, .x = a.ptr, .b = b.ptr, .rows = R, .cols = C,
                    .factor = factor};
      if (!run_case(ew_launch, &vs[vi], &c, &y, C % cfg_value(&vs[vi].cfg, "EW_VEC") != 0, kname, shape)) continue;
      qd_ref_binary(pool, QD_REF_ADD, af, a_dims, 3, bf, b_dims1, 1, sum);
      ew_ref_unary(op, sum, want, (int64_t)n, factor);
      ddownload(&y, got_h, n * 2);
      bf16_to_f32_array(got_h, got, n);
      error_t_ e = compare(got, want, n);
      bool guards = dguards_ok(&y);
      double us = rows[ri].bench ? time_us(ew_launch, &vs[vi], &c) : 0;
      report(kname, &vs[vi], shape, false, true, e, guards, us, 4.0 * (double)n);
    }
    dfree(&a), dfree(&b), dfree(&y);
    free(ah), free(af), free(bh), free(bf), free(want), free(sum), free(got_h), free(got);
  }
  variants_free(vs, nv);
}

/* ---- nf4_dequant.cu ----------------------------------------------------------------------------------------- */

typedef struct {
  qd_nf4_dequant_args_t a;
} nf4_ctx_t;

static qd_status_t nf4_launch(const variant_t* v, void* ctx) {
  nf4_ctx_t* c = ctx;
  return qd_launch_nf4_dequant(fn_of(v, QD_KERNEL_NF4_DEQUANT), &v->cfg, stream, &c->a);
}

static void test_nf4(void) {
  if (!selected("nf4_dequant.cu", "qd_nf4_dequant")) return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("nf4_dequant.cu", NULL, 0, vs);
  const struct {
    int64_t rows, cols, blocksize;
    bool bench;
  } cases[] = {{12288, 3072, 64, true}, {3072, 12288, 64, true}, {3072, 3072, 64, false}, {17, 3000, 32, false},
               {96, 96, 4096, false}, {1, 33, 32, false}, {3, 4099, 128, false}, {257, 64, 32, false}};
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    if (cases[ci].bench && !bench) continue;
    const int64_t n = cases[ci].rows * cases[ci].cols, bs = cases[ci].blocksize;
    const int64_t blocks = (n + bs - 1) / bs, nested_blocks = (blocks + 255) / 256, packed_n = (n + 1) / 2;
    uint8_t* packed = malloc((size_t)packed_n);
    for (int64_t i = 0; i < packed_n; i++) packed[i] = (uint8_t)next_u64();
    float* absmax = rand_f32((size_t)blocks, 0.99f, 1.0f); /* (0.01, 1.99) */
    uint8_t* codes = malloc((size_t)blocks);
    for (int64_t i = 0; i < blocks; i++) codes[i] = (uint8_t)next_u64();
    float* nested = rand_f32((size_t)nested_blocks, 0.4f, 0.5f);
    const float* code2 = qd_dynamic_map_signed();
    const float offset = 0.0137f;
    uint16_t* want[2];
    float* ref = malloc(sizeof(float) * (size_t)n);
    for (int dq = 0; dq < 2; dq++) {
      qd_ref_nf4_t q = {.packed = packed, .blocksize = bs};
      if (dq)
        q.absmax_codes = codes, q.nested_absmax = nested, q.nested_code = code2, q.offset = offset;
      else
        q.absmax = absmax;
      qd_ref_nf4_dequantize(pool, &q, ref, n);
      want[dq] = malloc((size_t)n * 2);
      for (int64_t i = 0; i < n; i++) want[dq][i] = qd_f32_to_bf16(ref[i]);
    }
    dbuf_t p = dnew(packed, (size_t)packed_n), am = dnew(absmax, sizeof(float) * (size_t)blocks);
    dbuf_t cd = dnew(codes, (size_t)blocks), ne = dnew(nested, sizeof(float) * (size_t)nested_blocks);
    dbuf_t c2 = dnew(code2, sizeof(float) * 256), y = dalloc((size_t)n * 2);
    uint16_t* got = malloc((size_t)n * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "[%lld, %lld] bs=%lld", (long long)cases[ci].rows, (long long)cases[ci].cols,
             (long long)bs);
    for (size_t vi = 0; vi < nv; vi++) {
      const int dq = cfg_value(&vs[vi].cfg, "NF4_DOUBLE_QUANT");
      nf4_ctx_t c = {{.y = y.ptr, .packed = p.ptr, .absmax = dq ? 0 : am.ptr, .absmax_codes = dq ? cd.ptr : 0,
                      .nested_absmax = dq ? ne.ptr : 0, .nested_code = dq ? c2.ptr : 0, .offset = dq ? offset : 0.0f,
                      .n = n, .blocksize = bs}};
      const char* kname = dq ? "nf4_dequant dq" : "nf4_dequant";
      if (!run_case(nf4_launch, &vs[vi], &c, &y, false, kname, shape)) continue;
      ddownload(&y, got, (size_t)n * 2);
      const bool same = memcmp(got, want[dq], (size_t)n * 2) == 0;
      const bool guards = dguards_ok(&y);
      double us = cases[ci].bench ? time_us(nf4_launch, &vs[vi], &c) : 0;
      const double bytes = (double)packed_n + 2.0 * (double)n + (dq ? (double)blocks : 4.0 * (double)blocks);
      error_t_ none = {0};
      report(kname, &vs[vi], shape, true, same, none, guards, us, bytes);
    }
    dfree(&p), dfree(&am), dfree(&cd), dfree(&ne), dfree(&c2), dfree(&y);
    free(packed), free(absmax), free(codes), free(nested), free(ref), free(want[0]), free(want[1]), free(got);
  }
  variants_free(vs, nv);
}

/* ---- small_ops.cu ------------------------------------------------------------------------------------------- */

typedef struct {
  qd_kernel_op_t op;
  CUdeviceptr y, x;
  int64_t batch, dim;
  const int64_t* axes;
  int32_t n_axes;
  /* copies */
  bool concat;
  const CUdeviceptr* inputs;
  const int64_t* sizes;
  int32_t count;
  int64_t outer, axis_dim, inner, start, size, elem;
} sm_ctx_t;

static qd_status_t sm_launch(const variant_t* v, void* ctx) {
  sm_ctx_t* c = ctx;
  const qd_kernel_function_t* f = fn_of(v, c->op);
  switch (c->op) {
    case QD_KERNEL_TIMESTEP_EMBEDDING:
      return qd_launch_timestep_embedding(f, &v->cfg, stream, c->y, c->x, c->batch, c->dim, true, 0.0f, 1000.0f,
                                          10000.0f);
    case QD_KERNEL_ROPE_FREQS:
      return qd_launch_rope_freqs(f, &v->cfg, stream, c->y, c->x, c->batch, c->axes, c->n_axes, 10000.0);
    case QD_KERNEL_SILU_VEC: return qd_launch_silu_vec(f, &v->cfg, stream, c->y, c->x, c->batch);
    default:
      if (c->concat)
        return qd_launch_concat(f, &v->cfg, stream, c->y, c->inputs, c->sizes, c->count, c->outer, c->inner, c->elem);
      return qd_launch_slice(f, &v->cfg, stream, c->y, c->x, c->outer, c->axis_dim, c->inner, c->start, c->size,
                             c->elem);
  }
}

static void test_small_ops(void) {
  if (!selected("small_ops.cu", "qd_timestep_embedding qd_rope_freqs qd_silu_vec qd_copy_rows")) return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("small_ops.cu", NULL, 0, vs);
  for (size_t vi = 0; vi < nv; vi++) {
    const variant_t* v = &vs[vi];
    /* timestep_embedding: FLUX's (dim 256, flip, x1000), an odd dim, a tiny one. */
    const int64_t te[][2] = {{2, 256}, {3, 17}, {1, 6}};
    for (size_t i = 0; i < 3; i++) {
      const int64_t B = te[i][0], D = te[i][1];
      float* t = rand_f32((size_t)B, 0.5f, 0.5f); /* sigmas in (0, 1) */
      float* want = calloc((size_t)(B * D), sizeof(float));
      qd_ref_timestep_embedding(t, want, B, D, true, 0.0f, 1000.0f, 10000.0f);
      dbuf_t td = dnew(t, sizeof(float) * (size_t)B), y = dalloc((size_t)(B * D) * 2);
      sm_ctx_t c = {.op = QD_KERNEL_TIMESTEP_EMBEDDING, .y = y.ptr, .x = td.ptr, .batch = B, .dim = D};
      char shape[64];
      snprintf(shape, sizeof shape, "B=%lld dim=%lld", (long long)B, (long long)D);
      if (run_case(sm_launch, v, &c, &y, false, "timestep_embedding", shape)) {
        uint16_t* gh = malloc((size_t)(B * D) * 2);
        float* got = malloc(sizeof(float) * (size_t)(B * D));
        ddownload(&y, gh, (size_t)(B * D) * 2);
        bf16_to_f32_array(gh, got, (size_t)(B * D));
        report("timestep_embedding", v, shape, false, true, compare(got, want, (size_t)(B * D)), dguards_ok(&y), 0, 0);
        free(gh), free(got);
      }
      dfree(&td), dfree(&y);
      free(t), free(want);
    }
    /* rope_freqs: FLUX's axes over 4608 tokens, the tiny test configurations' axes. */
    const struct {
      int64_t tokens;
      int64_t axes[3];
    } rf[] = {{4608, {16, 56, 56}}, {17, {4, 6, 6}}, {5, {2, 2, 4}}};
    for (size_t i = 0; i < 3; i++) {
      const int64_t T = rf[i].tokens, D = rf[i].axes[0] + rf[i].axes[1] + rf[i].axes[2];
      float* ids = malloc(sizeof(float) * (size_t)(T * 3));
      for (int64_t k = 0; k < T * 3; k++) ids[k] = (float)(1 + next_u64() % 127); /* positions, never 0 */
      float* want = malloc(sizeof(float) * (size_t)(2 * T * D));
      qd_ref_rope_freqs(ids, want, T, rf[i].axes, 3, 10000.0);
      dbuf_t idd = dnew(ids, sizeof(float) * (size_t)(T * 3)), y = dalloc(sizeof(float) * (size_t)(2 * T * D));
      sm_ctx_t c = {.op = QD_KERNEL_ROPE_FREQS, .y = y.ptr, .x = idd.ptr, .batch = T, .axes = rf[i].axes, .n_axes = 3};
      char shape[64];
      snprintf(shape, sizeof shape, "T=%lld axes=%lld,%lld,%lld", (long long)T, (long long)rf[i].axes[0],
               (long long)rf[i].axes[1], (long long)rf[i].axes[2]);
      if (run_case(sm_launch, v, &c, &y, false, "rope_freqs", shape)) {
        float* got = malloc(sizeof(float) * (size_t)(2 * T * D));
        ddownload(&y, got, sizeof(float) * (size_t)(2 * T * D));
        error_t_ e = {0};
        bool ok = true;
        for (int64_t k = 0; k < 2 * T * D; k++) {
          double d = fabs((double)got[k] - (double)want[k]);
          if (!(d <= 1e-6)) ok = false; /* NaN (unwritten) fails too */
          if (d > e.max_abs) e.max_abs = d;
        }
        char label[64];
        snprintf(label, sizeof label, "%s", ok ? "|d| <= 1e-6" : "|d| > 1e-6");
        printf("%-22s %-38s %-30s max %.2e %-18s %s\n", "rope_freqs", v->label, shape, e.max_abs, label,
               ok && dguards_ok(&y) ? "PASS" : "FAIL");
        if (ok && dguards_ok(&y))
          passes++;
        else
          failures++;
        free(got);
      }
      dfree(&idd), dfree(&y);
      free(ids), free(want);
    }
    /* silu on [B, C] vectors */
    const int64_t sv[] = {2 * 3072, 17};
    for (size_t i = 0; i < 2; i++) {
      const int64_t n = sv[i];
      float* xf;
      uint16_t* xh = rand_bf16((size_t)n, 6.0f, 0.0f, &xf);
      float* want = malloc(sizeof(float) * (size_t)n);
      qd_ref_unary(pool, QD_REF_SILU, xf, want, n, 0.0f);
      dbuf_t x = dnew(xh, (size_t)n * 2), y = dalloc((size_t)n * 2);
      sm_ctx_t c = {.op = QD_KERNEL_SILU_VEC, .y = y.ptr, .x = x.ptr, .batch = n};
      char shape[64];
      snprintf(shape, sizeof shape, "n=%lld", (long long)n);
      if (run_case(sm_launch, v, &c, &y, false, "silu_vec", shape)) {
        uint16_t* gh = malloc((size_t)n * 2);
        float* got = malloc(sizeof(float) * (size_t)n);
        ddownload(&y, gh, (size_t)n * 2);
        bf16_to_f32_array(gh, got, (size_t)n);
        report("silu_vec", v, shape, false, true, compare(got, want, (size_t)n), dguards_ok(&y), 0, 0);
        free(gh), free(got);
      }
      dfree(&x), dfree(&y);
      free(xh), free(xf), free(want);
    }
    /* slices: (outer, axis_dim, inner, start, size, elem) */
    const int64_t sl[][6] = {{2, 6 * 3072, 1, 3072, 3072, 2},        /* a modulation chunk: 16-byte units */
                             {2, 4608, 3072, 512, 4096, 2, },        /* the image tokens of the joint sequence */
                             {3, 17, 5, 3, 7, 2},                    /* 70-byte rows: 2-byte units */
                             {4, 9, 3, 1, 5, 1},                     /* bytes */
                             {2, 10, 3, 2, 6, 4}};                   /* 72-byte rows: 8-byte units */
    for (size_t i = 0; i < sizeof sl / sizeof sl[0]; i++) {
      const int64_t O = sl[i][0], A = sl[i][1], I = sl[i][2], st = sl[i][3], sz = sl[i][4], es = sl[i][5];
      if (i == 1 && !bench) continue;
      const size_t in_bytes = (size_t)(O * A * I * es), out_bytes = (size_t)(O * sz * I * es);
      uint8_t* src = malloc(in_bytes);
      for (size_t k = 0; k < in_bytes; k++) src[k] = (uint8_t)next_u64();
      uint8_t* want = malloc(out_bytes);
      for (int64_t o = 0; o < O; o++)
        memcpy(want + o * sz * I * es, src + (o * A + st) * I * es, (size_t)(sz * I * es));
      dbuf_t x = dnew(src, in_bytes), y = dalloc(out_bytes);
      sm_ctx_t c = {.op = QD_KERNEL_COPY_ROWS, .y = y.ptr, .x = x.ptr, .outer = O, .axis_dim = A, .inner = I,
                    .start = st, .size = sz, .elem = es};
      char shape[64];
      snprintf(shape, sizeof shape, "%lldx%lldx%lld [%lld:+%lld] e%lld", (long long)O, (long long)A, (long long)I,
               (long long)st, (long long)sz, (long long)es);
      if (run_case(sm_launch, v, &c, &y, false, "slice", shape)) {
        uint8_t* got = malloc(out_bytes);
        ddownload(&y, got, out_bytes);
        error_t_ none = {0};
        const bool guards = dguards_ok(&y);
        double us = i == 1 ? time_us(sm_launch, v, &c) : 0;
        report("slice", v, shape, true, memcmp(got, want, out_bytes) == 0, none, guards, us, 2.0 * (double)out_bytes);
        free(got);
      }
      dfree(&x), dfree(&y);
      free(src), free(want);
    }
    /* concats: the joint FLUX sequence, three inputs with an empty one, along the last axis */
    const struct {
      int32_t count;
      int64_t sizes[3], outer, inner, elem;
      bool bench;
    } cc[] = {{2, {512, 4096, 0}, 2, 3072, 2, true}, {3, {3, 0, 5}, 2, 7, 2, false},
              {2, {96, 384, 0}, 34, 1, 2, false}, {3, {1, 2, 3}, 5, 3, 1, false}};
    for (size_t i = 0; i < sizeof cc / sizeof cc[0]; i++) {
      if (cc[i].bench && !bench) continue;
      const int64_t O = cc[i].outer, I = cc[i].inner, es = cc[i].elem;
      int64_t total = 0;
      dbuf_t in[3];
      uint8_t* host[3];
      const void* hp[3];
      CUdeviceptr dp[3];
      for (int32_t k = 0; k < cc[i].count; k++) {
        const size_t bytes = (size_t)(O * cc[i].sizes[k] * I * es);
        host[k] = malloc(bytes + 1);
        for (size_t b = 0; b < bytes; b++) host[k][b] = (uint8_t)next_u64();
        in[k] = dnew(host[k], bytes);
        hp[k] = host[k];
        dp[k] = in[k].ptr;
        total += cc[i].sizes[k];
      }
      const size_t out_bytes = (size_t)(O * total * I * es);
      uint8_t* want = malloc(out_bytes);
      qd_ref_concat(hp, cc[i].sizes, cc[i].count, want, O, I, es);
      dbuf_t y = dalloc(out_bytes);
      sm_ctx_t c = {.op = QD_KERNEL_COPY_ROWS, .y = y.ptr, .concat = true, .inputs = dp, .sizes = cc[i].sizes,
                    .count = cc[i].count, .outer = O, .inner = I, .elem = es};
      char shape[64];
      snprintf(shape, sizeof shape, "%d in, outer %lld inner %lld e%lld", (int)cc[i].count, (long long)O,
               (long long)I, (long long)es);
      if (run_case(sm_launch, v, &c, &y, false, "concat", shape)) {
        uint8_t* got = malloc(out_bytes);
        ddownload(&y, got, out_bytes);
        error_t_ none = {0};
        const bool guards = dguards_ok(&y);
        double us = cc[i].bench ? time_us(sm_launch, v, &c) : 0;
        report("concat", v, shape, true, memcmp(got, want, out_bytes) == 0, none, guards, us, 2.0 * (double)out_bytes);
        free(got);
      }
      for (int32_t k = 0; k < cc[i].count; k++) dfree(&in[k]), free(host[k]);
      dfree(&y);
      free(want);
    }
  }
  variants_free(vs, nv);
}

/* ---- main --------------------------------------------------------------------------------------------------- */

int main(int argc, char** argv) {
  gh_device_t d;
  const int early = gh_start("test_gpu_kernels", argc, argv, false, &d);
  if (early >= 0) return early;
  printf("test_gpu_kernels: %s (%s, %d SMs), driver %d, NVRTC %d.%d; bandwidth relative to %.1f TB/s\n", d.name, arch,
         d.sms, cu->driver_version, nvrtc->version_major, nvrtc->version_minor, PEAK_BYTES_PER_S / 1e12);
  printf("%-22s %-38s %-30s %-28s %s\n", "kernel", "variant", "shape", "error", "   median time  achieved  of peak");

  test_layernorm();
  test_qk_norm_rope();
  test_gated_residual();
  test_elementwise();
  test_nf4();
  test_small_ops();

  MUST(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  printf("test_gpu_kernels: %d passed, %d failed, %d refused as expected\n", passes, failures, refusals);
  gh_finish();
  return failures == 0 && passes > 0 ? 0 : 1;
}
