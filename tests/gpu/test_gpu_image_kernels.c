/* GPU test and benchmark of the VAE decoder's image kernels (kernels/templates/image_ops.cu and conv2d.cu) through
 * their launchers (runtime/cuda/kernels_image.h), in the manner of tests/gpu/test_gpu_kernels.c.
 *
 * For each template, every variant the tests compile: the defaults, then every documented value of each select
 * and tunable parameter with the others at their defaults, compiled with NVRTC for the device's architecture from
 * the embedded sources and loaded (conv2d.cu once per kernel size: CONV_K = 3 and 1 with every variant, stride 2
 * with the defaults). Each variant runs on several shapes, including sizes that are not multiples of any vector
 * or tile (C = 37, 130, 3; H x W = 13 x 21, 9 x 17, 7 x 5; S = 221), on random inputs (never all zeros; norms on
 * data with a large mean), with the output poisoned first (0xFF bytes: NaN in bf16) and 256 poisoned guard bytes
 * on each side. A case passes when every output element was written (no NaN left), the guards are intact, and the
 * output matches the CPU reference (runtime/cpu/ref.h) computed from the same bf16-rounded inputs:
 *   bf16 outputs (group norm, conv2d): rel L2 <= 1e-2 and |got - want| <= 2^-8 |want| + 1e-3 rms(want) for every
 *       element (one bf16 rounding is 2^-9 relative; the slack covers fp32 vs double statistics and the order of
 *       the fp32 sums)
 *   upsample, permute, conv2d weight repacking: bit-exact; affine: bit-exact (the reference's fp32 order)
 * The benchmark shapes are too large for the CPU convolution: there 4096 output elements picked at random are
 * checked against a double-precision dot product instead.
 *
 * Timing (bench shapes: the FLUX VAE decoder at 1024 x 1024 output, batch 1): CUDA events around each launch,
 * median of 20 after 3 warm-ups. conv2d: TFLOP/s = 2 * outputs * Cin * k^2 / time, and the share of 989 TFLOP/s
 * (H200 dense bf16); the others: GB/s = bytes read + written / time, and the share of 4.3 TB/s.
 * The VAE's 3x3 convolutions: 512 -> 512 at 128^2, 256^2 and 512^2; 512 -> 256, 256 -> 256 at 512^2; 256 -> 256,
 * 256 -> 128, 128 -> 128 and 128 -> 3 at 1024^2; 16 -> 512 at 128^2; its 1x1 shortcuts 512 -> 256 at 512^2 and
 * 256 -> 128 at 1024^2.
 *
 * Output: one line per (kernel, variant, shape): kernel, variant (parameters that differ from the defaults),
 * shape, rel L2 and max abs error (or "exact"), time in us and the achieved rate, PASS/FAIL. Then a summary.
 * Exits 77 (skip) without a driver, a device or NVRTC; 0 when every check passes; 1 otherwise.
 * Usage: test_gpu_image_kernels [--no-bench | --bench] [--only SUBSTRING]   (SUBSTRING matches the template or
 *        kernel name: image_ops, conv2d, group_norm, upsample, affine, permute)
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
#include "runtime/cuda/kernels_image.h"
#include "runtime/cuda_driver.h"

#include "gpu_harness.h"

#define PEAK_BYTES_PER_S 4.3e12
#define PEAK_FLOPS 989e12
#define MAX_VARIANTS 40
#define MAX_FNS GH_MAX_FNS

/* ---- process state (the rest is in gpu_harness.h) ------------------------------------------------------------ */

static int skips;

/* ---- variants ----------------------------------------------------------------------------------------------- */

static const char* op_name_(int op, const qd_kernel_config_t* cfg) {
  return qd_image_kernel_function_name((qd_image_kernel_op_t)op, cfg);
}

static const qd_kernel_function_t* fn_of(const variant_t* v, qd_image_kernel_op_t op) {
  return variant_function(v, qd_image_kernel_function_name(op, &v->cfg), v->cfg.template_name);
}

/* Compiles and loads one configuration: every kernel of its template that a launcher uses. conv2d's shared memory
 * limit is raised once here, as an executor would after loading. */
static void variant_load(variant_t* v) {
  const char* names[MAX_FNS];
  const size_t n = variant_function_names(v, op_name_, QD_IMAGE_OP_COUNT_, names);
  variant_load_functions(v, names, n, NULL);
  const uint32_t smem = qd_conv2d_shared_bytes(&v->cfg);
  if (smem > 0) {
    int optin = 0;
    MUST(QD_CU_STATUS(cu->cuDeviceGetAttribute(&optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device)));
    if ((int)smem > optin) {
      printf("%-22s %-38s needs %u bytes of shared memory; this GPU allows %d: skipped\n", "conv2d", v->label, smem,
             optin);
      v->loaded = false;
      skips++;
      return;
    }
    for (size_t i = 0; i < n; i++)
      if (strcmp(v->fns[i].name, "qd_conv2d") == 0 && (int)smem > v->fns[i].max_dynamic_shared_bytes)
        MUST(qd_kernel_function_set_max_dynamic_shared(&v->fns[i], (int)smem));
  }
}

/* The defaults, then each documented select/tunable value with the others at defaults (only the defaults when
 * defaults_only); fixed[0..nfixed) are set first in every variant (CONV_K, CONV_STRIDE). */
static size_t variants_build(const char* tmpl, const char* const* fixed, const int* fixed_values, int nfixed,
                             bool defaults_only, variant_t* out) {
  qd_kernel_config_t base;
  MUST(qd_kernel_config_init(tmpl, &base));
  char prefix[100] = "";
  for (int i = 0; i < nfixed; i++) {
    MUST(qd_kernel_config_set(&base, fixed[i], fixed_values[i]));
    size_t used = strlen(prefix);
    snprintf(prefix + used, sizeof prefix - used, "%s%s=%d", used ? " " : "", fixed[i], fixed_values[i]);
  }
  size_t n = 0;
  variant_init(&out[n], &base);
  snprintf(out[n].label, sizeof out[n].label, "%s", nfixed ? prefix : "defaults");
  n++;
  for (size_t p = 0; p < base.params.count && !defaults_only; p++) {
    const qd_kernel_param_t* param = &base.params.items[p];
    if (param->kind == QD_KERNEL_PARAM_SHAPE) continue;
    for (size_t i = 0; i < param->value_count && n < MAX_VARIANTS; i++) {
      if (param->values[i] == base.values[p]) continue;
      variant_init(&out[n], &base);
      MUST(qd_kernel_config_set(&out[n].cfg, param->name, param->values[i]));
      snprintf(out[n].label, sizeof out[n].label, "%s%s%s=%d", prefix, nfixed ? " " : "", param->name,
               param->values[i]);
      n++;
    }
  }
  for (size_t i = 0; i < n; i++) variant_load(&out[i]);
  return n;
}

/* ---- checking and timing ------------------------------------------------------------------------------------ */

/* Prints a result line and counts it. exact: err is ignored and `ok` says whether the bits matched. work > 0 is
 * bytes moved, work < 0 is -FLOPs (the rate column then reads TFLOP/s). */
static void report(const char* kernel, const variant_t* v, const char* shape, bool exact, bool ok, error_t_ err,
                   bool guards, double us, double work) {
  bool pass = ok && guards;
  if (!exact) pass = pass && err.unwritten == 0 && err.over_bound == 0 && err.rel_l2 <= 1e-2;
  char e[64], t[64] = "          -";
  if (exact)
    snprintf(e, sizeof e, "%s", ok ? "exact" : "MISMATCH");
  else
    snprintf(e, sizeof e, "relL2 %.2e max %.2e", err.rel_l2, err.max_abs);
  if (us > 0 && work > 0)
    snprintf(t, sizeof t, "%9.1f us %7.1f GB/s %5.1f%%", us, work / us * 1e-3, work / (us * 1e-6) / PEAK_BYTES_PER_S * 100);
  else if (us > 0 && work < 0)
    snprintf(t, sizeof t, "%9.1f us %6.1f TFLOP/s %5.1f%%", us, -work / us * 1e-6, -work / (us * 1e-6) / PEAK_FLOPS * 100);
  printf("%-22s %-38s %-34s %-28s %s  %s", kernel, v->label, shape, e, t, pass ? "PASS" : "FAIL");
  if (!exact && err.unwritten) printf(" (%zu unwritten)", err.unwritten);
  if (!exact && err.over_bound) printf(" (%zu over bound)", err.over_bound);
  if (!guards) printf(" (guard bytes overwritten)");
  printf("\n");
  if (pass)
    passes++;
  else
    failures++;
}

/* True when the launch went through; a refusal is a failure here: every variant takes every shape. */
static bool launched(qd_status_t s, const char* kernel, const variant_t* v, const char* shape) {
  if (!s) return true;
  char msg[4096];
  qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  printf("%-22s %-38s %-34s FAIL: %s\n", kernel, v->label, shape, msg);
  failures++;
  return false;
}

static bool selected(const char* tmpl, const char* kernel) { return !only || strstr(tmpl, only) || strstr(kernel, only); }

static bool run_case(launch_fn_t launch, const variant_t* v, void* ctx, dbuf_t* out, const char* kernel,
                     const char* shape) {
  dpoison(out);
  return launched(launch(v, ctx), kernel, v, shape);
}

/* ---- group norm --------------------------------------------------------------------------------------------- */

typedef struct {
  qd_group_norm_args_t a;
} gn_ctx_t;

static qd_status_t gn_launch(const variant_t* v, void* ctx) {
  gn_ctx_t* c = ctx;
  return qd_launch_group_norm(fn_of(v, QD_IMAGE_GROUP_NORM_STATS), fn_of(v, QD_IMAGE_GROUP_NORM_APPLY), &v->cfg,
                              stream, &c->a);
}

static void test_group_norm(const variant_t* vs, size_t nv) {
  if (!selected("image_ops.cu", "qd_group_norm_stats qd_group_norm_apply")) return;
  /* (B, C, S, G, inplace, bench): the VAE's planes at 1024 x 1024, then odd ones: S = 221 (17 x 13), C / G = 3. */
  const struct {
    int64_t b, c, s, g;
    bool inplace, bench;
  } shapes[] = {{1, 128, 1024 * 1024, 32, false, true}, {1, 256, 512 * 512, 32, false, true},
                {1, 512, 128 * 128, 32, false, true},   {2, 64, 221, 32, false, false},
                {1, 12, 15, 4, false, false},           {2, 32, 64, 8, true, false},
                {1, 16, 3000, 2, false, false},         {3, 8, 1, 4, false, false}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    if (shapes[si].bench && !bench) continue;
    const int64_t B = shapes[si].b, C = shapes[si].c, S = shapes[si].s, G = shapes[si].g;
    const size_t n = (size_t)(B * C * S);
    float *xf, *wf, *bf;
    uint16_t* xh = rand_bf16(n, 4.0f, 3.0f, &xf); /* a mean of 3: a one-pass variance would show */
    uint16_t* wh = rand_bf16((size_t)C, 0.5f, 1.0f, &wf);
    uint16_t* bh = rand_bf16((size_t)C, 0.5f, 0.0f, &bf);
    const bool affine = si % 2 == 0;
    float* want = xmalloc(sizeof(float) * n);
    float* want_silu = xmalloc(sizeof(float) * n);
    qd_ref_group_norm(pool, xf, affine ? wf : NULL, affine ? bf : NULL, want, B, C, S, G, 1e-6f);
    qd_ref_unary(pool, QD_REF_SILU, want, want_silu, (int64_t)n, 0.0f);
    dbuf_t x = dnew(xh, n * 2), w = dnew(wh, (size_t)C * 2), bb = dnew(bh, (size_t)C * 2);
    dbuf_t y = shapes[si].inplace ? x : dalloc(n * 2);
    uint16_t* got_h = xmalloc(n * 2);
    float* got = xmalloc(sizeof(float) * n);
    char shape[64];
    snprintf(shape, sizeof shape, "B=%lld C=%lld S=%lld G=%lld%s%s", (long long)B, (long long)C, (long long)S,
             (long long)G, affine ? " affine" : "", shapes[si].inplace ? " inpl" : "");
    for (size_t vi = 0; vi < nv; vi++) {
      const bool silu = cfg_value(&vs[vi].cfg, "GN_SILU") == 1;
      const char* kname = silu ? "group_norm+silu" : "group_norm";
      const uint64_t wsb = qd_group_norm_workspace_bytes(&vs[vi].cfg, B, C, S, G);
      dbuf_t ws = dalloc(wsb);
      gn_ctx_t c = {{.y = y.ptr, .x = x.ptr, .weight = affine ? w.ptr : 0, .bias = affine ? bb.ptr : 0,
                     .workspace = ws.ptr, .workspace_bytes = wsb, .batch = B, .channels = C, .spatial = S, .groups = G,
                     .eps = 1e-6f}};
      bool ok;
      if (shapes[si].inplace) {
        dupload(&x, xh, n * 2); /* the previous variant rewrote it */
        ok = launched(gn_launch(&vs[vi], &c), kname, &vs[vi], shape);
      } else {
        ok = run_case(gn_launch, &vs[vi], &c, &y, kname, shape);
      }
      if (ok) {
        ddownload(&y, got_h, n * 2);
        bf16_to_f32_array(got_h, got, n);
        error_t_ e = compare(got, silu ? want_silu : want, n);
        const bool guards = dguards_ok(&y) && dguards_ok(&ws);
        double us = shapes[si].bench ? time_us(gn_launch, &vs[vi], &c) : 0;
        report(kname, &vs[vi], shape, false, true, e, guards, us, 6.0 * (double)n); /* x read twice, y written */
      }
      dfree(&ws);
    }
    dfree(&x), dfree(&w), dfree(&bb);
    if (!shapes[si].inplace) dfree(&y);
    free(xh), free(xf), free(wh), free(wf), free(bh), free(bf), free(want), free(want_silu), free(got_h), free(got);
  }
}

/* ---- upsample ----------------------------------------------------------------------------------------------- */

typedef struct {
  CUdeviceptr y, x;
  int64_t planes, h, w, f;
} up_ctx_t;

static qd_status_t up_launch(const variant_t* v, void* ctx) {
  up_ctx_t* c = ctx;
  return qd_launch_upsample_nearest(fn_of(v, QD_IMAGE_UPSAMPLE_NEAREST), &v->cfg, stream, c->y, c->x, c->planes, c->h,
                                    c->w, c->f);
}

static void test_upsample(const variant_t* vs, size_t nv) {
  if (!selected("image_ops.cu", "qd_upsample_nearest")) return;
  const struct {
    int64_t p, h, w, f;
    bool bench;
  } shapes[] = {{512, 128, 128, 2, true}, {512, 256, 256, 2, true}, {256, 512, 512, 2, true},
                {6, 5, 7, 2, false},      {4, 16, 16, 2, false},    {3, 3, 5, 3, false},
                {2, 9, 4, 1, false}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    if (shapes[si].bench && !bench) continue;
    const int64_t P = shapes[si].p, H = shapes[si].h, W = shapes[si].w, F = shapes[si].f;
    const size_t nin = (size_t)(P * H * W), nout = nin * (size_t)(F * F);
    float* xf;
    uint16_t* xh = rand_bf16(nin, 4.0f, 0.0f, &xf);
    float* want = xmalloc(sizeof(float) * nout);
    qd_ref_upsample_nearest(pool, xf, want, P, H, W, F);
    dbuf_t x = dnew(xh, nin * 2), y = dalloc(nout * 2);
    uint16_t* got_h = xmalloc(nout * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "P=%lld %lldx%lld f=%lld", (long long)P, (long long)H, (long long)W, (long long)F);
    for (size_t vi = 0; vi < nv; vi++) {
      up_ctx_t c = {y.ptr, x.ptr, P, H, W, F};
      if (!run_case(up_launch, &vs[vi], &c, &y, "upsample_nearest", shape)) continue;
      ddownload(&y, got_h, nout * 2);
      bool same = true;
      for (size_t i = 0; i < nout; i++) same &= got_h[i] == qd_f32_to_bf16(want[i]);
      const bool guards = dguards_ok(&y);
      double us = shapes[si].bench ? time_us(up_launch, &vs[vi], &c) : 0;
      error_t_ none = {0};
      report("upsample_nearest", &vs[vi], shape, true, same, none, guards, us, 2.0 * (double)(nin + nout));
    }
    dfree(&x), dfree(&y);
    free(xh), free(xf), free(want), free(got_h);
  }
}

/* ---- affine ------------------------------------------------------------------------------------------------- */

typedef struct {
  CUdeviceptr y, x;
  int64_t n;
} aff_ctx_t;

/* FLUX's latent de-normalization: latents / 0.3611 + 0.1159 (scale 1). */
static qd_status_t aff_launch(const variant_t* v, void* ctx) {
  aff_ctx_t* c = ctx;
  return qd_launch_affine(fn_of(v, QD_IMAGE_AFFINE), &v->cfg, stream, c->y, c->x, c->n, 1.0f, 0.3611f, 0.1159f);
}

static void test_affine(const variant_t* vs, size_t nv) {
  if (!selected("image_ops.cu", "qd_affine")) return;
  /* (n, element offset of x and y: 1 makes the pointers 2-byte aligned only) */
  const struct {
    int64_t n, off;
    bool bench;
  } shapes[] = {{16 * 128 * 128, 0, true}, {17, 0, false}, {1001, 1, false}, {4096, 0, false}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    if (shapes[si].bench && !bench) continue;
    const int64_t n = shapes[si].n, off = shapes[si].off;
    float* xf;
    uint16_t* xh = rand_bf16((size_t)(n + off), 4.0f, 0.0f, &xf);
    float* want = xmalloc(sizeof(float) * (size_t)n);
    qd_ref_affine(pool, xf + off, want, n, 1.0f, 0.3611f, 0.1159f);
    dbuf_t x = dnew(xh, (size_t)(n + off) * 2), y = dalloc((size_t)(n + off) * 2);
    uint16_t* got_h = xmalloc((size_t)(n + off) * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "n=%lld%s", (long long)n, off ? " unaligned" : "");
    for (size_t vi = 0; vi < nv; vi++) {
      aff_ctx_t c = {y.ptr + (CUdeviceptr)(off * 2), x.ptr + (CUdeviceptr)(off * 2), n};
      if (!run_case(aff_launch, &vs[vi], &c, &y, "affine", shape)) continue;
      ddownload(&y, got_h, (size_t)(n + off) * 2);
      bool same = true;
      for (int64_t i = 0; i < n; i++) same &= got_h[off + i] == qd_f32_to_bf16(want[i]);
      for (int64_t i = 0; i < off; i++) same &= got_h[i] == 0xFFFF;
      const bool guards = dguards_ok(&y);
      double us = shapes[si].bench ? time_us(aff_launch, &vs[vi], &c) : 0;
      error_t_ none = {0};
      report("affine", &vs[vi], shape, true, same, none, guards, us, 4.0 * (double)n);
    }
    dfree(&x), dfree(&y);
    free(xh), free(xf), free(want), free(got_h);
  }
}

/* ---- permute ------------------------------------------------------------------------------------------------ */

typedef struct {
  CUdeviceptr y, x;
  const int64_t* dims;
  const int64_t* perm;
  int32_t rank;
  int64_t elem;
} perm_ctx_t;

static qd_status_t perm_launch(const variant_t* v, void* ctx) {
  perm_ctx_t* c = ctx;
  return qd_launch_permute(fn_of(v, QD_IMAGE_PERMUTE), &v->cfg, stream, c->y, c->x, c->dims, c->perm, c->rank,
                           c->elem);
}

static void test_permute(const variant_t* vs, size_t nv) {
  if (!selected("image_ops.cu", "qd_permute")) return;
  const struct {
    int32_t rank;
    int64_t dims[6], perm[6], elem;
    bool bench;
  } cases[] = {
      {3, {1, 512, 16384}, {0, 2, 1}, 2, true},            /* the VAE attention's [B, C, HW] -> [B, HW, C] */
      {3, {1, 16384, 512}, {0, 2, 1}, 2, true},            /* and back */
      {6, {1, 64, 64, 16, 2, 2}, {0, 3, 1, 4, 2, 5}, 2, true}, /* FluxPipeline._unpack_latents at 1024 x 1024 */
      {3, {2, 37, 53}, {0, 2, 1}, 2, false},
      {3, {1, 64, 100}, {0, 2, 1}, 4, false},
      {2, {70, 33}, {1, 0}, 2, false},
      {6, {2, 3, 5, 4, 2, 2}, {0, 3, 1, 4, 2, 5}, 2, false},
      {4, {3, 1, 5, 7}, {0, 1, 3, 2}, 2, false},             /* a size-1 axis dropped: still a transpose */
      {4, {2, 3, 4, 5}, {2, 0, 3, 1}, 4, false},
      {4, {2, 3, 4, 5}, {0, 1, 2, 3}, 2, false},             /* identity: a copy */
      {3, {5, 6, 7}, {1, 0, 2}, 8, false},
      {3, {5, 6, 7}, {2, 1, 0}, 1, false},
  };
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
    if (cases[ci].bench && !bench) continue;
    const int32_t R = cases[ci].rank;
    const int64_t es = cases[ci].elem;
    int64_t total = 1;
    for (int32_t i = 0; i < R; i++) total *= cases[ci].dims[i];
    const size_t bytes = (size_t)(total * es);
    uint8_t* src = xmalloc(bytes);
    for (size_t i = 0; i < bytes; i++) src[i] = (uint8_t)next_u64();
    /* The reference permutes 8-byte words; each holds one element. */
    uint64_t* wx = xmalloc(sizeof(uint64_t) * (size_t)total);
    uint64_t* wy = xmalloc(sizeof(uint64_t) * (size_t)total);
    for (int64_t i = 0; i < total; i++) {
      wx[i] = 0;
      memcpy(&wx[i], src + i * es, (size_t)es);
    }
    qd_ref_permute(pool, wx, wy, cases[ci].dims, cases[ci].perm, R, 8);
    uint8_t* want = xmalloc(bytes);
    for (int64_t i = 0; i < total; i++) memcpy(want + i * es, &wy[i], (size_t)es);
    dbuf_t x = dnew(src, bytes), y = dalloc(bytes);
    uint8_t* got = xmalloc(bytes);
    char shape[64] = "[";
    for (int32_t i = 0; i < R; i++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%lld%s", (long long)cases[ci].dims[i],
               i + 1 < R ? "," : "] (");
    for (int32_t i = 0; i < R; i++)
      snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%lld%s", (long long)cases[ci].perm[i],
               i + 1 < R ? "," : ")");
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " e%lld", (long long)es);
    for (size_t vi = 0; vi < nv; vi++) {
      perm_ctx_t c = {y.ptr, x.ptr, cases[ci].dims, cases[ci].perm, R, es};
      if (!run_case(perm_launch, &vs[vi], &c, &y, "permute", shape)) continue;
      ddownload(&y, got, bytes);
      const bool same = memcmp(got, want, bytes) == 0;
      const bool guards = dguards_ok(&y);
      double us = cases[ci].bench ? time_us(perm_launch, &vs[vi], &c) : 0;
      error_t_ none = {0};
      report("permute", &vs[vi], shape, true, same, none, guards, us, 2.0 * (double)bytes);
    }
    dfree(&x), dfree(&y);
    free(src), free(wx), free(wy), free(want), free(got);
  }
}

/* ---- conv2d ------------------------------------------------------------------------------------------------- */

typedef struct {
  qd_conv2d_args_t a;
} conv_ctx_t;

static qd_status_t conv_launch(const variant_t* v, void* ctx) {
  conv_ctx_t* c = ctx;
  return qd_launch_conv2d(fn_of(v, QD_IMAGE_CONV2D), &v->cfg, stream, &c->a);
}

typedef struct {
  int64_t b, cin, h, w, cout, pad;
  bool bias, bench;
} conv_shape_t;

/* want[i] for sampled output index idx[i], in double. */
static void conv_sampled_ref(const float* x, const float* w, const float* bias, const float* res, int64_t cin, int64_t h,
                             int64_t wd, int64_t cout, int64_t k, int64_t s, int64_t pad, int64_t ho, int64_t wo,
                             const int64_t* idx, size_t count, float* want) {
  for (size_t i = 0; i < count; i++) {
    int64_t r = idx[i];
    const int64_t ox = r % wo;
    r /= wo;
    const int64_t oy = r % ho;
    r /= ho;
    const int64_t co = r % cout, n = r / cout;
    double acc = bias ? bias[co] : 0.0;
    for (int64_t ci = 0; ci < cin; ci++)
      for (int64_t ky = 0; ky < k; ky++)
        for (int64_t kx = 0; kx < k; kx++) {
          const int64_t iy = oy * s - pad + ky, ix = ox * s - pad + kx;
          if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
          acc += (double)x[((n * cin + ci) * h + iy) * wd + ix] * (double)w[((co * cin + ci) * k + ky) * k + kx];
        }
    if (res) acc += res[idx[i]];
    want[i] = (float)acc;
  }
}

static void test_conv2d_shapes(const variant_t* vs, size_t nv, int64_t k, int64_t s, const conv_shape_t* shapes,
                               size_t nshapes) {
  for (size_t si = 0; si < nshapes; si++) {
    const conv_shape_t* sh = &shapes[si];
    if (sh->bench && !bench) continue;
    const int64_t B = sh->b, Ci = sh->cin, H = sh->h, W = sh->w, Co = sh->cout, P = sh->pad;
    const int64_t Ho = (H + 2 * P - k) / s + 1, Wo = (W + 2 * P - k) / s + 1;
    const size_t xn = (size_t)(B * Ci * H * W), wn = (size_t)(Co * Ci * k * k), yn = (size_t)(B * Co * Ho * Wo);
    float *xf, *wf, *bf, *rf;
    uint16_t* xh = rand_bf16(xn, 2.0f, 0.5f, &xf);
    uint16_t* wh = rand_bf16(wn, 1.0f / sqrtf((float)(Ci * k * k)), 0.0f, &wf);
    uint16_t* bh = rand_bf16((size_t)Co, 1.0f, 0.0f, &bf);
    uint16_t* rh = rand_bf16(yn, 3.0f, 0.0f, &rf);
    /* The reference: all of y for small shapes, 4096 random outputs for the benchmark ones. */
    const size_t count = sh->bench ? 4096 : yn;
    int64_t* idx = xmalloc(sizeof(int64_t) * count);
    float* want = xmalloc(sizeof(float) * count);
    float* want_res = xmalloc(sizeof(float) * count);
    if (sh->bench) {
      for (size_t i = 0; i < count; i++) idx[i] = (int64_t)(next_u64() % yn);
      conv_sampled_ref(xf, wf, sh->bias ? bf : NULL, NULL, Ci, H, W, Co, k, s, P, Ho, Wo, idx, count, want);
    } else {
      qd_ref_conv2d_shape_t rs = {B, Ci, H, W, Co, k, s, P, Ho, Wo};
      float* work = xmalloc(sizeof(float) * (size_t)qd_ref_conv2d_workspace(&rs));
      qd_ref_conv2d(pool, xf, wf, sh->bias ? bf : NULL, want, &rs, work);
      free(work);
      for (size_t i = 0; i < count; i++) idx[i] = (int64_t)i;
    }
    for (size_t i = 0; i < count; i++) want_res[i] = want[i] + rf[idx[i]];

    const int64_t pe = qd_conv2d_packed_weight_elems(Co, Ci, k);
    uint16_t* packed_h = xmalloc((size_t)pe * 2);
    qd_conv2d_pack_weight_host(wh, packed_h, Co, Ci, k);
    dbuf_t x = dnew(xh, xn * 2), w = dnew(wh, wn * 2), b = dnew(bh, (size_t)Co * 2), r = dnew(rh, yn * 2);
    dbuf_t wp = dalloc((size_t)pe * 2), y = dalloc(yn * 2);
    uint16_t* got_h = xmalloc(yn * 2);
    uint16_t* packed_got = xmalloc((size_t)pe * 2);
    float* got = xmalloc(sizeof(float) * count);
    char shape[64];
    snprintf(shape, sizeof shape, "%lldx%lldx%lldx%lld->%lld k%lld%s%s", (long long)B, (long long)Ci, (long long)H,
             (long long)W, (long long)Co, (long long)k, s > 1 ? " s2" : "", P ? "" : " p0");
    const double flops = 2.0 * (double)yn * (double)(Ci * k * k);
    for (size_t vi = 0; vi < nv; vi++) {
      if (!vs[vi].loaded) continue;
      const bool res = cfg_value(&vs[vi].cfg, "CONV_RESIDUAL") == 1;
      const char* kname = res ? "conv2d+residual" : "conv2d";
      /* The repacking kernel first (bit-exact against the host's), then the convolution on its output. */
      dpoison(&wp);
      if (!launched(qd_launch_conv2d_pack_weight(fn_of(&vs[vi], QD_IMAGE_CONV2D_PACK_WEIGHT), &vs[vi].cfg, stream,
                                                 wp.ptr, w.ptr, Co, Ci, k),
                    "conv2d_pack_weight", &vs[vi], shape))
        continue;
      ddownload(&wp, packed_got, (size_t)pe * 2);
      if (memcmp(packed_got, packed_h, (size_t)pe * 2) != 0 || !dguards_ok(&wp)) {
        error_t_ none = {0};
        report("conv2d_pack_weight", &vs[vi], shape, true, false, none, dguards_ok(&wp), 0, 0);
        continue;
      }
      conv_ctx_t c = {{.y = y.ptr, .x = x.ptr, .weight = wp.ptr, .bias = sh->bias ? b.ptr : 0,
                       .residual = res ? r.ptr : 0, .batch = B, .cin = Ci, .h = H, .w = W, .cout = Co, .kernel = k,
                       .stride = s, .pad = P}};
      if (!run_case(conv_launch, &vs[vi], &c, &y, kname, shape)) continue;
      ddownload(&y, got_h, yn * 2);
      for (size_t i = 0; i < count; i++) got[i] = qd_bf16_to_f32(got_h[idx[i]]);
      error_t_ e = compare(got, res ? want_res : want, count);
      if (sh->bench) /* every output must still have been written */
        for (size_t i = 0; i < yn; i++) e.unwritten += got_h[i] == 0xFFFF;
      const bool guards = dguards_ok(&y);
      double us = sh->bench ? time_us(conv_launch, &vs[vi], &c) : 0;
      report(kname, &vs[vi], shape, false, true, e, guards, us, -flops);
    }
    dfree(&x), dfree(&w), dfree(&b), dfree(&r), dfree(&wp), dfree(&y);
    free(xh), free(xf), free(wh), free(wf), free(bh), free(bf), free(rh), free(rf), free(idx), free(want),
        free(want_res), free(packed_h), free(got_h), free(packed_got), free(got);
  }
}

static void test_conv2d(void) {
  if (!selected("conv2d.cu", "qd_conv2d qd_conv2d_pack_weight")) return;
  static variant_t vs[MAX_VARIANTS];
  const char* const fixed[] = {"CONV_K", "CONV_STRIDE"};
  /* 3x3, pad 1: the VAE's convolutions (bench), then odd sizes: channels 37, 130, 3, 5; 13 x 21, 9 x 17 images. */
  const conv_shape_t k3[] = {
      {1, 512, 128, 128, 512, 1, true, true},   {1, 512, 256, 256, 512, 1, true, true},
      {1, 512, 512, 512, 512, 1, true, true},   {1, 512, 512, 512, 256, 1, true, true},
      {1, 256, 512, 512, 256, 1, true, true},   {1, 256, 1024, 1024, 256, 1, true, true},
      {1, 256, 1024, 1024, 128, 1, true, true}, {1, 128, 1024, 1024, 128, 1, true, true},
      {1, 128, 1024, 1024, 3, 1, true, true},   {1, 16, 128, 128, 512, 1, true, true},
      {1, 16, 13, 21, 40, 1, true, false},      {2, 37, 9, 17, 130, 1, true, false},
      {1, 8, 16, 16, 3, 1, false, false},       {1, 64, 20, 33, 64, 1, true, false},
      {1, 5, 7, 5, 9, 0, true, false},          {2, 48, 40, 72, 96, 1, true, false},
  };
  const int v3[] = {3, 1};
  size_t nv = variants_build("conv2d.cu", fixed, v3, 2, false, vs);
  test_conv2d_shapes(vs, nv, 3, 1, k3, sizeof k3 / sizeof k3[0]);
  variants_free(vs, nv);

  /* 1x1: the resnets' shortcuts. */
  const conv_shape_t k1[] = {
      {1, 512, 512, 512, 256, 0, true, true}, {1, 256, 1024, 1024, 128, 0, true, true},
      {1, 16, 13, 21, 40, 0, true, false},    {2, 37, 9, 17, 130, 0, true, false},
      {1, 64, 20, 33, 3, 0, false, false},
  };
  const int v1[] = {1, 1};
  nv = variants_build("conv2d.cu", fixed, v1, 2, false, vs);
  test_conv2d_shapes(vs, nv, 1, 1, k1, sizeof k1 / sizeof k1[0]);
  variants_free(vs, nv);

  /* Stride 2 (an encoder's downsampling), defaults only. */
  const conv_shape_t s2[] = {
      {1, 16, 13, 21, 40, 1, true, false}, {2, 37, 18, 17, 70, 0, true, false}, {1, 64, 32, 32, 64, 1, true, false}};
  const int vs2[] = {3, 2};
  nv = variants_build("conv2d.cu", fixed, vs2, 2, true, vs);
  test_conv2d_shapes(vs, nv, 3, 2, s2, sizeof s2 / sizeof s2[0]);
  variants_free(vs, nv);
}

static void test_image_ops(void) {
  if (!selected("image_ops.cu",
                "qd_group_norm_stats qd_group_norm_apply qd_upsample_nearest qd_affine qd_permute"))
    return;
  static variant_t vs[MAX_VARIANTS];
  size_t nv = variants_build("image_ops.cu", NULL, NULL, 0, false, vs);
  test_group_norm(vs, nv);
  test_upsample(vs, nv);
  test_affine(vs, nv);
  test_permute(vs, nv);
  variants_free(vs, nv);
}

/* ---- main --------------------------------------------------------------------------------------------------- */

int main(int argc, char** argv) {
  gh_device_t d;
  const int early = gh_start("test_gpu_image_kernels", argc, argv, true, &d);
  if (early >= 0) return early;
  printf("test_gpu_image_kernels: %s (%s, %d SMs), driver %d, NVRTC %d.%d; rates relative to %.1f TB/s and %.0f "
         "TFLOP/s\n",
         d.name, arch, d.sms, cu->driver_version, nvrtc->version_major, nvrtc->version_minor, PEAK_BYTES_PER_S / 1e12,
         PEAK_FLOPS / 1e12);
  printf("%-22s %-38s %-34s %-28s %s\n", "kernel", "variant", "shape", "error", "    median time  achieved  of peak");

  test_image_ops();
  test_conv2d();

  MUST(QD_CU_STATUS(cu->cuStreamSynchronize(stream)));
  printf("test_gpu_image_kernels: %d passed, %d failed, %d variants skipped\n", passes, failures, skips);
  gh_finish();
  return failures == 0 && passes > 0 ? 0 : 1;
}
