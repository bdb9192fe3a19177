/* The attention templates without a GPU: every variant the GPU test runs (tests/gpu/attention_variants.h)
 * (as embedded in the library) compiles with NVRTC for each architecture it targets (the mma kernel for sm_80, sm_86, sm_89 and sm_90, the
 * wgmma kernel for sm_90a), and ptxas's resource report (--ptxas-options=-v, in the NVRTC log) shows no local
 * memory: no stack frame, no spill stores or loads. For the wgmma kernel ptxas must also not have serialized the
 * wgmmas or ignored setmaxnreg, which it reports as warnings. Plus the launcher's pure functions: validation,
 * the defines, targets and launch shapes. */
#include <check.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/allocator.h"
#include "qd_test.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/kernel_sources.h"
#include "runtime/cuda_nvrtc.h"
#include "tests/gpu/attention_variants.h"

/* The template as embedded in the library; it must also be the file in the source tree (the embedding is
 * regenerated at build time, so a stale copy means a stale build). */
static const char* template_(const char* file) {
  const char* text = qd_kernel_source_find(file);
  ck_assert_msg(text != NULL, "%s is not embedded in the library (kernels/templates/meson.build)", file);
  const char* root = getenv("QD_SOURCE_ROOT");
  if (root && *root) {
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels/templates/%s", root, file);
    FILE* f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = strlen(text), got = 0;
    char* s = malloc(n + 2);
    ck_assert_ptr_nonnull(s);
    got = fread(s, 1, n + 1, f);
    fclose(f);
    ck_assert_msg(got == n && memcmp(s, text, n) == 0, "%s differs from the embedded copy: rebuild", path);
    free(s);
  }
  return text;
}

/* ptxas -v lines look like "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads". */
static void assert_no_local_memory_(const char* variant, const char* arch, const char* log) {
  ck_assert_msg(log && strstr(log, "bytes stack frame"), "%s (%s): no ptxas resource report in the log:\n%s",
                variant, arch, log ? log : "(empty)");
  for (const char* p = log; (p = strstr(p, "bytes stack frame")) != NULL; p++) {
    /* NVRTC prefixes the line ("ptxas         .     0 bytes ..."): step back over the number only. */
    const char* num = p;
    while (num > log && num[-1] == ' ') num--;
    while (num > log && isdigit((unsigned char)num[-1])) num--;
    unsigned long frame = 1, stores = 1, loads = 1;
    int n = sscanf(num, "%lu bytes stack frame, %lu bytes spill stores, %lu bytes spill loads", &frame, &stores,
                   &loads);
    ck_assert_msg(n == 3 && frame == 0 && stores == 0 && loads == 0, "%s (%s): local memory in use:\n%s", variant,
                  arch, log);
  }
}

START_TEST(every_variant_compiles_without_local_memory) {
  static const char* const mma_archs[] = {"sm_80", "sm_86", "sm_89", "sm_90"};
  static const char* const wgmma_archs[] = {"sm_90a"};
  const char* sources[2] = {template_(qd_attention_template_file(QD_ATTENTION_MMA)),
                            template_(qd_attention_template_file(QD_ATTENTION_WGMMA))};
  for (size_t i = 0; i < QD_ATTENTION_TEST_VARIANT_COUNT; i++) {
    const qd_attention_test_variant_t* tv = &qd_attention_test_variants[i];
    const bool wg = tv->v.kernel == QD_ATTENTION_WGMMA;
    const char* const* archs = wg ? wgmma_archs : mma_archs;
    size_t narchs = wg ? 1 : 4;
    qd_attention_defines_t defs;
    QD_ASSERT_OK(qd_attention_variant_defines(&tv->v, &defs));
    const char* options[QD_ATTENTION_MAX_DEFINES + 1];
    for (size_t k = 0; k < defs.count; k++) options[k] = defs.options[k];
    options[defs.count] = "--ptxas-options=-v";
    qd_kernel_headers_t headers; /* qd_mma.cuh and the other shared headers, as the runtime passes them */
    qd_kernel_headers_get(&headers);
    for (size_t a = 0; a < narchs; a++) {
      qd_nvrtc_compile_options_t opt = {.source = sources[wg ? 1 : 0],
                                        .name = qd_attention_template_file(tv->v.kernel),
                                        .arch = archs[a],
                                        .outputs = QD_NVRTC_OUTPUT_CUBIN,
                                        .options = options,
                                        .option_count = defs.count + 1,
                                        .header_names = headers.names,
                                        .headers = headers.texts,
                                        .header_count = headers.count};
      qd_nvrtc_output_t out;
      QD_ASSERT_OK(qd_nvrtc_compile(qd_allocator_system(), &opt, &out));
      ck_assert_uint_gt(out.cubin_size, 64);
      assert_no_local_memory_(tv->name, archs[a], out.log);
      if (wg) {
        /* C7510: wgmma serialized; C7508: setmaxnreg ignored. Either costs most of the kernel's speed. */
        ck_assert_msg(!strstr(out.log, "C7510") && !strstr(out.log, "C7508") && !strstr(out.log, "serialized"),
                      "%s: ptxas degraded the wgmma pipeline:\n%s", tv->name, out.log);
      }
      ck_assert_msg(!strstr(out.log, "warning"), "%s (%s): warnings:\n%s", tv->name, archs[a], out.log);
      qd_nvrtc_output_deinit(&out);
    }
  }
}
END_TEST

static bool same_variant_(const qd_attention_variant_t* a, const qd_attention_variant_t* b) {
  return a->kernel == b->kernel && a->head_dim == b->head_dim && a->block_m == b->block_m &&
         a->block_n == b->block_n && a->num_warps == b->num_warps && a->stages == b->stages &&
         a->q_in_regs == b->q_in_regs && a->min_blocks == b->min_blocks && a->overlap == b->overlap &&
         a->pv_n == b->pv_n && a->pingpong == b->pingpong && a->causal == b->causal && a->has_bias == b->has_bias;
}

START_TEST(variants_validate) {
  for (size_t i = 0; i < QD_ATTENTION_TEST_VARIANT_COUNT; i++)
    QD_ASSERT_OK(qd_attention_variant_validate(&qd_attention_test_variants[i].v));
  for (int k = 0; k < 2; k++)
    for (int d = 64; d <= 256; d += 64) {
      if (k == QD_ATTENTION_WGMMA && d > 128) continue;
      for (int cc = 80; cc <= 90; cc += 10) {
        if (k == QD_ATTENTION_WGMMA && cc != 90) continue;
        qd_attention_variant_t v = qd_attention_variant_default((qd_attention_kernel_t)k, cc, d, false, false);
        QD_ASSERT_OK(qd_attention_variant_validate(&v));
        /* every default is one of the variants the GPU test runs (causal and bias aside) */
        bool listed = false;
        for (size_t i = 0; i < QD_ATTENTION_TEST_VARIANT_COUNT; i++)
          listed |= same_variant_(&qd_attention_test_variants[i].v, &v);
        ck_assert_msg(listed, "default for kernel %d, cc %d, head dim %d is not in attention_variants.h", k, cc, d);
        /* 99 KiB per block: what sm_86 and sm_89 allow */
        if (cc < 90) ck_assert_uint_le(qd_attention_shared_bytes(&v), 101376);
      }
    }
  qd_attention_variant_t v = qd_attention_variant_default(QD_ATTENTION_MMA, 90, 128, false, false);
  v.block_m = 96;
  QD_ASSERT_DETAIL(qd_attention_variant_validate(&v), QD_E_INVALID_ARGUMENT);
  v = qd_attention_variant_default(QD_ATTENTION_MMA, 90, 96, false, false);
  QD_ASSERT_DETAIL(qd_attention_variant_validate(&v), QD_E_INVALID_ARGUMENT);
  v = qd_attention_variant_default(QD_ATTENTION_MMA, 90, 128, false, false);
  v.stages = 1;
  QD_ASSERT_DETAIL(qd_attention_variant_validate(&v), QD_E_INVALID_ARGUMENT);
  v = qd_attention_variant_default(QD_ATTENTION_WGMMA, 90, 128, false, true);
  qd_status_t s = qd_attention_variant_validate(&v);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNSUPPORTED);
  qd_status_free(s);
  v = qd_attention_variant_default(QD_ATTENTION_WGMMA, 90, 128, false, false);
  v.block_n = 96;
  QD_ASSERT_DETAIL(qd_attention_variant_validate(&v), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_attention_variant_validate(NULL), QD_E_INVALID_ARGUMENT);
}
END_TEST

START_TEST(defines_targets_and_shapes) {
  qd_attention_variant_t v = qd_attention_variant_default(QD_ATTENTION_MMA, 86, 64, true, true);
  qd_attention_defines_t defs;
  QD_ASSERT_OK(qd_attention_variant_defines(&v, &defs));
  bool head = false, causal = false, bias = false;
  for (size_t i = 0; i < defs.count; i++) {
    head |= strcmp(defs.options[i], "-DHEAD_DIM=64") == 0;
    causal |= strcmp(defs.options[i], "-DCAUSAL=1") == 0;
    bias |= strcmp(defs.options[i], "-DHAS_BIAS=1") == 0;
  }
  ck_assert(head && causal && bias);
  ck_assert_uint_eq(qd_attention_threads(&v), 256);
  ck_assert_uint_eq(qd_attention_shared_bytes(&v), (128 + 2 * 2 * 64) * 64 * 2);

  char arch[16];
  QD_ASSERT_OK(qd_attention_target_arch(QD_ATTENTION_MMA, 8, 6, arch, sizeof arch));
  ck_assert_str_eq(arch, "sm_86");
  QD_ASSERT_OK(qd_attention_target_arch(QD_ATTENTION_WGMMA, 9, 0, arch, sizeof arch));
  ck_assert_str_eq(arch, "sm_90a");
  qd_status_t s = qd_attention_target_arch(QD_ATTENTION_WGMMA, 8, 9, arch, sizeof arch);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNSUPPORTED);
  qd_status_free(s);
  s = qd_attention_target_arch(QD_ATTENTION_MMA, 7, 5, arch, sizeof arch);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNSUPPORTED);
  qd_status_free(s);

  v = qd_attention_variant_default(QD_ATTENTION_WGMMA, 90, 128, false, false);
  ck_assert_uint_eq(qd_attention_threads(&v), 384);
  /* Hopper's opt-in limit is 227 KiB per block. */
  ck_assert_uint_le(qd_attention_shared_bytes(&v), 232448);
  ck_assert_str_eq(qd_attention_kernel_name(QD_ATTENTION_WGMMA), "qd_attention_fwd_sm90");
  ck_assert_str_eq(qd_attention_template_file(QD_ATTENTION_MMA), "attention.cu");
}
END_TEST

START_TEST(launch_rejects_bad_arguments_before_the_driver) {
  /* The checks run before any driver call, so a zeroed table is never touched. */
  static const qd_cuda_driver_t fake;
  qd_attention_variant_t v = qd_attention_variant_default(QD_ATTENTION_MMA, 90, 128, false, false);
  CUfunction fn = (CUfunction)(uintptr_t)0x1;
  qd_attention_args_t good = {.q = 0x10000, .k = 0x20000, .v = 0x30000, .o = 0x40000, .batch = 1, .sq = 64,
                              .sk = 64, .heads = 2, .bias_batch = 1, .bias_heads = 1};
  qd_attention_args_t a = good;
  a.sq = 0;
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  a = good;
  a.q = 0x10008; /* not 16-byte aligned */
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  a = good;
  a.k_row_stride = 200; /* below heads * head_dim */
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  a = good;
  a.v_row_stride = 260; /* not a multiple of 8 */
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  a = good;
  a.scale = -1.0f;
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  a = good;
  a.bias = 0x50000; /* a bias for a variant without one */
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  v.has_bias = true;
  a = good;
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT); /* bias missing */
  a.bias = 0x50000;
  a.bias_heads = 3;
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, fn, &v, &a, NULL), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_attention_launch(&fake, NULL, &v, &good, NULL), QD_E_INVALID_ARGUMENT);
}
END_TEST

static Suite* attention_templates_suite(void) {
  Suite* s = suite_create("attention_templates");
  TCase* tc = tcase_create("templates");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, every_variant_compiles_without_local_memory);
  tcase_add_test(tc, variants_validate);
  tcase_add_test(tc, defines_targets_and_shapes);
  tcase_add_test(tc, launch_rejects_bad_arguments_before_the_driver);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(attention_templates_suite)
