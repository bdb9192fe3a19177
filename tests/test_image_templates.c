/* The VAE decoder's image kernel templates without a GPU (kernels/templates/image_ops.cu and conv2d.cu): every
 * variant compiles with NVRTC for sm_90 at its defaults and at every value of each parameter it documents (the others
 * at their defaults), and at its defaults for sm_80, sm_86, sm_89 and sm_90a (tests/template_compile.h says why),
 * with no compiler warning and, for
 * the convolution, no local memory; the launchers (runtime/cuda/kernels_image.h) refuse bad arguments before
 * touching the driver; the host-side helpers (weight repacking, shared memory and workspace sizes) agree with the
 * templates. Needs NVRTC like tests/test_kernel_templates.c; the GPU side is tests/gpu/test_gpu_image_kernels.c. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/allocator.h"
#include "qd_test.h"
#include "template_compile.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"
#include "runtime/cuda/kernels_image.h"

static const char* const k_templates[] = {"image_ops.cu", "conv2d.cu"};
enum { N_TEMPLATES = sizeof k_templates / sizeof k_templates[0] };

/* ---- compiling every documented variant ----------------------------------------------------------------------- */

static size_t functions_of(const qd_kernel_config_t* cfg, const char** out) {
  size_t n = 0;
  for (int op = 0; op < QD_IMAGE_OP_COUNT_; op++) {
    const char* f = qd_image_kernel_function_name((qd_image_kernel_op_t)op, cfg);
    if (!f) continue;
    bool seen = false;
    for (size_t i = 0; i < n; i++) seen |= strcmp(out[i], f) == 0;
    if (!seen) out[n++] = f;
  }
  return n;
}

/* The convolution's accumulators fill the register file: a spill there is a performance bug. */
static const tc_options_t k_compile = {"test_image_templates", functions_of, "conv2d.cu", 14};

START_TEST(template_compiles_every_documented_value) { tc_compile_template(&k_compile, k_templates[_i]); }
END_TEST

START_TEST(templates_document_their_parameters) {
  for (size_t t = 0; t < N_TEMPLATES; t++) {
    qd_kernel_params_t p;
    QD_ASSERT_OK(qd_kernel_template_params(k_templates[t], &p));
    bool tunable = false;
    for (size_t i = 0; i < p.count; i++) tunable |= p.items[i].kind == QD_KERNEL_PARAM_TUNABLE;
    ck_assert_msg(tunable, "%s documents no tunable", k_templates[t]);
  }
  qd_kernel_params_t p;
  QD_ASSERT_OK(qd_kernel_template_params("conv2d.cu", &p));
  ck_assert_int_eq(qd_kernel_params_find(&p, "CONV_K")->kind, QD_KERNEL_PARAM_SHAPE);
  ck_assert_int_eq(qd_kernel_params_find(&p, "CONV_RESIDUAL")->kind, QD_KERNEL_PARAM_SELECT);
  ck_assert_int_eq(qd_kernel_params_find(&p, "CONV_BK")->default_value, 32);
  QD_ASSERT_OK(qd_kernel_template_params("image_ops.cu", &p));
  ck_assert_int_eq(qd_kernel_params_find(&p, "GN_SILU")->kind, QD_KERNEL_PARAM_SELECT);
  /* Function names belong to their template only. */
  qd_kernel_config_t img, conv;
  QD_ASSERT_OK(qd_kernel_config_init("image_ops.cu", &img));
  QD_ASSERT_OK(qd_kernel_config_init("conv2d.cu", &conv));
  ck_assert_str_eq(qd_image_kernel_function_name(QD_IMAGE_GROUP_NORM_APPLY, &img), "qd_group_norm_apply");
  ck_assert_ptr_null(qd_image_kernel_function_name(QD_IMAGE_CONV2D, &img));
  ck_assert_str_eq(qd_image_kernel_function_name(QD_IMAGE_CONV2D, &conv), "qd_conv2d");
  ck_assert_ptr_null(qd_image_kernel_function_name(QD_IMAGE_OP_COUNT_, &conv));
  ck_assert_ptr_null(qd_image_kernel_template_name((qd_image_kernel_op_t)-1));
}
END_TEST

/* ---- host helpers ------------------------------------------------------------------------------------------- */

START_TEST(conv_weight_packing_and_sizes) {
  /* w [cout 2, cin 3, 3, 3] with w[co, ci, t] = 100 co + 10 ci + t -> [2, 9, 8], zeros past ci = 2. */
  uint16_t w[2 * 3 * 9], packed[2 * 9 * 8];
  for (int co = 0; co < 2; co++)
    for (int ci = 0; ci < 3; ci++)
      for (int t = 0; t < 9; t++) w[(co * 3 + ci) * 9 + t] = (uint16_t)(100 * co + 10 * ci + t);
  ck_assert_int_eq(qd_conv2d_packed_weight_elems(2, 3, 3), 2 * 9 * 8);
  memset(packed, 0xAB, sizeof packed);
  qd_conv2d_pack_weight_host(w, packed, 2, 3, 3);
  for (int co = 0; co < 2; co++)
    for (int t = 0; t < 9; t++)
      for (int ci = 0; ci < 8; ci++)
        ck_assert_int_eq(packed[(co * 9 + t) * 8 + ci], ci < 3 ? 100 * co + 10 * ci + t : 0);
  ck_assert_int_eq(qd_conv2d_packed_weight_elems(512, 512, 3), 512 * 9 * 512);
  ck_assert_int_eq(qd_conv2d_packed_weight_elems(3, 128, 3), 3 * 9 * 128);
  ck_assert_int_eq(qd_conv2d_packed_weight_elems(0, 8, 3), -1);
  ck_assert_int_eq(qd_conv2d_packed_weight_elems(INT64_MAX / 2, 8, 3), -1);

  /* Defaults: 3 stages of 128 x 32 weights and two 10 x 18 halos of 32 channels, bf16 = 47616 bytes (< 48 KiB). */
  qd_kernel_config_t c;
  QD_ASSERT_OK(qd_kernel_config_init("conv2d.cu", &c));
  ck_assert_uint_eq(qd_conv2d_shared_bytes(&c), (3 * 128 + 2 * 10 * 18) * 32 * 2);
  QD_ASSERT_OK(qd_kernel_config_set(&c, "CONV_K", 1));
  ck_assert_uint_eq(qd_conv2d_shared_bytes(&c), (3 * 128 + 2 * 8 * 16) * 32 * 2);
  qd_kernel_config_t img;
  QD_ASSERT_OK(qd_kernel_config_init("image_ops.cu", &img));
  ck_assert_uint_eq(qd_conv2d_shared_bytes(&img), 0);
  ck_assert_uint_eq(qd_conv2d_shared_bytes(NULL), 0);

  /* Group norm: one fp32 pair per chunk of 256 * 4 * 8 elements per group: a 128 x 1024^2 plane in 32 groups is
   * 512 chunks per group. */
  ck_assert_uint_eq(qd_group_norm_workspace_bytes(&img, 1, 128, 1024 * 1024, 32), 32 * 512 * 8);
  ck_assert_uint_eq(qd_group_norm_workspace_bytes(&img, 2, 12, 15, 4), 2 * 4 * 1 * 8);
  ck_assert_uint_eq(qd_group_norm_workspace_bytes(&img, 1, 12, 15, 5), 0); /* groups do not divide */
  ck_assert_uint_eq(qd_group_norm_workspace_bytes(&c, 1, 12, 15, 4), 0);  /* another template */
}
END_TEST

/* ---- launchers ---------------------------------------------------------------------------------------------- */

START_TEST(group_norm_launcher_checks) {
  qd_kernel_config_t c = config_of("image_ops.cu");
  qd_kernel_function_t st = fake_fn("qd_group_norm_stats"), ap = fake_fn("qd_group_norm_apply");
  const CUdeviceptr base = 0x100000;
  const uint64_t ws = qd_group_norm_workspace_bytes(&c, 1, 128, 1024 * 1024, 32);
  qd_group_norm_args_t a = {.y = base, .x = base + 0x10000000, .weight = base + 0x20000000, .bias = base + 0x20001000,
                            .workspace = base + 0x30000000, .workspace_bytes = ws, .batch = 1, .channels = 128,
                            .spatial = 1024 * 1024, .groups = 32, .eps = 1e-6f};
  ASSERT_REACHES_LAUNCH(qd_launch_group_norm(&st, &ap, &c, NULL, &a));
  qd_group_norm_args_t b = a;
  b.weight = b.bias = 0; /* no affine */
  ASSERT_REACHES_LAUNCH(qd_launch_group_norm(&st, &ap, &c, NULL, &b));
  b = a;
  b.x += 2, b.y += 6; /* unaligned for the vectors: the element path runs instead */
  ASSERT_REACHES_LAUNCH(qd_launch_group_norm(&st, &ap, &c, NULL, &b));
  b = a;
  b.spatial = 221; /* n = 4 * 221, not a multiple of 8: likewise */
  ASSERT_REACHES_LAUNCH(qd_launch_group_norm(&st, &ap, &c, NULL, &b));
  b = a;
  b.workspace = 0;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_NULL);
  b = a;
  b.x = 0;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_NULL);
  b = a;
  b.x += 1;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.workspace += 4;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.workspace_bytes = ws - 8;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.groups = 3;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.eps = 0.0f;
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.groups = 1, b.spatial = INT_MAX / 64; /* a group of 2^31 elements or more */
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  /* The two functions must be the two kernels, in order, of this configuration's template. */
  QD_ASSERT_DETAIL(qd_launch_group_norm(&ap, &st, &c, NULL, &a), QD_E_INVALID_ARGUMENT);
  qd_kernel_config_t other = config_of("conv2d.cu");
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &other, NULL, &a), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_launch_group_norm(&st, &ap, &c, NULL, NULL), QD_E_KERNEL_ARG_NULL);
}
END_TEST

START_TEST(upsample_affine_permute_launcher_checks) {
  qd_kernel_config_t c = config_of("image_ops.cu");
  qd_kernel_function_t up = fake_fn("qd_upsample_nearest"), af = fake_fn("qd_affine"), pm = fake_fn("qd_permute");
  const CUdeviceptr base = 0x100000;
  ASSERT_REACHES_LAUNCH(qd_launch_upsample_nearest(&up, &c, NULL, base, base + 0x40000000, 512, 256, 256, 2));
  ASSERT_REACHES_LAUNCH(qd_launch_upsample_nearest(&up, &c, NULL, base + 2, base + 0x40000000, 3, 5, 7, 3));
  QD_ASSERT_OK(qd_launch_upsample_nearest(&up, &c, NULL, 0, 0, 0, 5, 7, 2)); /* empty */
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&up, &c, NULL, base, base + 0x40000000, 3, 5, 7, 0),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&up, &c, NULL, base, base + 0x40000000, 3, 5, 7, 65),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&up, &c, NULL, base + 1, base, 3, 5, 7, 2), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&up, &c, NULL, 0, base, 3, 5, 7, 2), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&up, &c, NULL, base, base, INT_MAX, 4096, 4096, 2),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_upsample_nearest(&af, &c, NULL, base, base, 3, 5, 7, 2), QD_E_INVALID_ARGUMENT);

  ASSERT_REACHES_LAUNCH(qd_launch_affine(&af, &c, NULL, base, base, 16 * 128 * 128, 1.0f, 0.3611f, 0.1159f));
  ASSERT_REACHES_LAUNCH(qd_launch_affine(&af, &c, NULL, base + 2, base + 2, 1001, 1.0f, 0.3611f, 0.1159f));
  QD_ASSERT_OK(qd_launch_affine(&af, &c, NULL, 0, 0, 0, 1.0f, 2.0f, 0.0f)); /* empty */
  QD_ASSERT_DETAIL(qd_launch_affine(&af, &c, NULL, base, base, 17, 1.0f, 0.0f, 0.0f), QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_affine(&af, &c, NULL, base, base + 1, 17, 1.0f, 2.0f, 0.0f), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_affine(&af, &c, NULL, base, 0, 17, 1.0f, 2.0f, 0.0f), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_DETAIL(qd_launch_affine(&af, &c, NULL, base, base, -1, 1.0f, 2.0f, 0.0f), QD_E_KERNEL_ARG_SHAPE);

  const int64_t vae[] = {1, 512, 16384}, tr[] = {0, 2, 1};
  ASSERT_REACHES_LAUNCH(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, vae, tr, 3, 2));
  const int64_t lat[] = {1, 64, 64, 16, 2, 2}, unpack[] = {0, 3, 1, 4, 2, 5};
  ASSERT_REACHES_LAUNCH(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, lat, unpack, 6, 2));
  ASSERT_REACHES_LAUNCH(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, lat, unpack, 6, 8));
  const int64_t empty[] = {3, 0, 5};
  QD_ASSERT_OK(qd_launch_permute(&pm, &c, NULL, 0, 0, empty, tr, 3, 2));
  const int64_t twice[] = {0, 1, 1};
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, vae, twice, 3, 2), QD_E_KERNEL_ARG_SHAPE);
  const int64_t past[] = {0, 3, 1};
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, vae, past, 3, 2), QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, vae, tr, 3, 3), QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, vae, tr, 9, 2), QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000001, vae, tr, 3, 2),
                   QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, NULL, tr, 3, 2), QD_E_KERNEL_ARG_NULL);
  const int64_t huge[] = {INT64_MAX / 2, 4, 1};
  QD_ASSERT_DETAIL(qd_launch_permute(&pm, &c, NULL, base, base + 0x10000000, huge, tr, 3, 2), QD_E_KERNEL_ARG_SHAPE);
}
END_TEST

START_TEST(conv2d_launcher_checks) {
  qd_kernel_config_t c = config_of("conv2d.cu");
  qd_kernel_function_t cv = fake_fn("qd_conv2d"), pk = fake_fn("qd_conv2d_pack_weight");
  const CUdeviceptr base = 0x100000;
  /* The VAE's 512 -> 512 3x3 convolution at 256 x 256. */
  qd_conv2d_args_t a = {.y = base, .x = base + 0x10000000, .weight = base + 0x20000000, .bias = base + 0x21000000,
                        .batch = 1, .cin = 512, .h = 256, .w = 256, .cout = 512, .kernel = 3, .stride = 1, .pad = 1};
  ASSERT_REACHES_LAUNCH(qd_launch_conv2d(&cv, &c, NULL, &a));
  qd_conv2d_args_t b = a;
  b.bias = 0, b.cin = 3, b.cout = 3, b.h = 5, b.w = 7; /* odd sizes take the same kernel */
  ASSERT_REACHES_LAUNCH(qd_launch_conv2d(&cv, &c, NULL, &b));
  b = a;
  b.x += 2; /* x needs only bf16 alignment */
  ASSERT_REACHES_LAUNCH(qd_launch_conv2d(&cv, &c, NULL, &b));
  b = a;
  b.weight = 0;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_NULL);
  b = a;
  b.weight += 8;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.y += 2;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.kernel = 1, b.pad = 0; /* the variant is CONV_K=3 */
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.stride = 2;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.pad = 3;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.h = 0;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.residual = base + 0x30000000; /* a residual for a variant without CONV_RESIDUAL */
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, &b), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &c, NULL, NULL), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_DETAIL(qd_launch_conv2d(&pk, &c, NULL, &a), QD_E_INVALID_ARGUMENT);

  qd_kernel_config_t r = c;
  QD_ASSERT_OK(qd_kernel_config_set(&r, "CONV_RESIDUAL", 1));
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &r, NULL, &a), QD_E_KERNEL_ARG_NULL); /* the residual is missing */
  b = a;
  b.residual = base + 0x30000000;
  ASSERT_REACHES_LAUNCH(qd_launch_conv2d(&cv, &r, NULL, &b));
  b.residual += 2;
  QD_ASSERT_DETAIL(qd_launch_conv2d(&cv, &r, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);

  /* A variant above 48 KiB of shared memory: the never-loaded function is refused before any driver call. */
  qd_kernel_config_t big = c;
  QD_ASSERT_OK(qd_kernel_config_set(&big, "CONV_BK", 64));
  ck_assert_uint_gt(qd_conv2d_shared_bytes(&big), 48 * 1024);
  qd_status_t s = qd_launch_conv2d(&cv, &big, NULL, &a);
  ck_assert_ptr_nonnull(s);
  qd_status_free(s);

  ASSERT_REACHES_LAUNCH(qd_launch_conv2d_pack_weight(&pk, &c, NULL, base, base + 0x1000000, 512, 512, 3));
  ASSERT_REACHES_LAUNCH(qd_launch_conv2d_pack_weight(&pk, &c, NULL, base, base + 0x1000002, 3, 5, 1));
  QD_ASSERT_DETAIL(qd_launch_conv2d_pack_weight(&pk, &c, NULL, base + 8, base, 512, 512, 3), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_conv2d_pack_weight(&pk, &c, NULL, 0, base, 512, 512, 3), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_DETAIL(qd_launch_conv2d_pack_weight(&pk, &c, NULL, base, base, 0, 512, 3), QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_conv2d_pack_weight(&pk, &c, NULL, base, base, 512, 512, 65), QD_E_KERNEL_ARG_SHAPE);
}
END_TEST

static Suite* image_templates_suite(void) {
  Suite* s = suite_create("image_templates");
  TCase* t = tcase_create("compile");
  tcase_set_timeout(t, 900);
  tcase_add_test(t, templates_document_their_parameters);
  tcase_add_loop_test(t, template_compiles_every_documented_value, 0, N_TEMPLATES);
  suite_add_tcase(s, t);
  t = tcase_create("host");
  tcase_add_test(t, conv_weight_packing_and_sizes);
  tcase_add_test(t, group_norm_launcher_checks);
  tcase_add_test(t, upsample_affine_permute_launcher_checks);
  tcase_add_test(t, conv2d_launcher_checks);
  suite_add_tcase(s, t);
  return s;
}

QD_TEST_MAIN(image_templates_suite)
