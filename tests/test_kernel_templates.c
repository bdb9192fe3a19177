/* Kernel templates without a GPU: the embedded table matches kernels/templates/, every template documents its
 * parameters, every one of ours compiles with NVRTC for sm_90 at its defaults and at every value of each parameter
 * it documents (the others at their defaults) and, at its defaults only, for sm_80, sm_86, sm_89 and sm_90a
 * (tests/template_compile.h says why), variant checking rejects what it should,
 * the launchers refuse bad arguments before touching the driver, and the NF4 reference matches hand-computed values
 * and the quantizer's own dequantization (ir/nf4.h).
 *
 * Needs NVRTC (libnvrtc.so.12/13) like the rest of the suite; CI has it. The GPU side is tests/gpu/. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/nf4.h"
#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd_test.h"
#include "template_compile.h"
#include "runtime/cpu/ref.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"
#include "runtime/cuda/kernel_sources.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/kernels_text.h"

/* The templates this suite owns (attention.cu and attention_sm90.cu have their own suite,
 * tests/test_attention_templates.c). */
static const char* const k_templates[] = {
    "layernorm_modulate.cu", "qk_norm_rope.cu", "gated_residual.cu", "elementwise.cu", "nf4_dequant.cu", "small_ops.cu",
    "text_ops.cu",           "attention_masked.cu",
};
enum { N_TEMPLATES = sizeof k_templates / sizeof k_templates[0] };
static const char* const k_archs[] = {"sm_80", "sm_86", "sm_89", "sm_90"};

static char* read_whole(const char* path, size_t* out_size) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* buf = malloc((size_t)n + 1);
  ck_assert_ptr_nonnull(buf);
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  buf[got] = '\0';
  *out_size = got;
  return buf;
}

static const char* source_root(void) {
  const char* r = getenv("QD_SOURCE_ROOT");
  return r && *r ? r : ".";
}

/* ---- the embedded table ----------------------------------------------------------------------------------- */

START_TEST(embedded_sources_match_files) {
  ck_assert_uint_ge(qd_kernel_source_count(), N_TEMPLATES);
  for (size_t i = 0; i < qd_kernel_source_count(); i++) {
    const qd_kernel_source_t* s = qd_kernel_source_at(i);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_eq(qd_kernel_source_find(s->name), s->text);
    ck_assert_uint_eq(strlen(s->text), s->size);
    char path[1024];
    snprintf(path, sizeof path, "%s/kernels/templates/%s", source_root(), s->name);
    size_t size;
    char* disk = read_whole(path, &size);
    ck_assert_msg(disk != NULL, "cannot read %s", path);
    ck_assert_msg(size == s->size && memcmp(disk, s->text, size) == 0,
                  "%s: the embedded copy differs from the file (%zu vs %zu bytes); rebuild", s->name, s->size, size);
    free(disk);
    if (i > 0) ck_assert_int_lt(strcmp(qd_kernel_source_at(i - 1)->name, s->name), 0); /* sorted, unique */
  }
  ck_assert_ptr_null(qd_kernel_source_at(qd_kernel_source_count()));
  ck_assert_ptr_null(qd_kernel_source_find("no_such_template.cu"));
  ck_assert_ptr_null(qd_kernel_source_find(NULL));
  for (size_t i = 0; i < N_TEMPLATES; i++) ck_assert_ptr_nonnull(qd_kernel_source_find(k_templates[i]));

  /* Every .cu and .cuh file beside the templates is embedded: a template missing from kernels/templates/meson.build
   * would otherwise be invisible to qdc, and a header missing from it would fail every compile that includes it. */
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/kernels/templates", source_root());
  DIR* d = opendir(dir);
  ck_assert_msg(d != NULL, "cannot list %s", dir);
  for (struct dirent* e; (e = readdir(d)) != NULL;) {
    size_t n = strlen(e->d_name);
    if ((n > 3 && strcmp(e->d_name + n - 3, ".cu") == 0) || (n > 4 && strcmp(e->d_name + n - 4, ".cuh") == 0))
      ck_assert_msg(qd_kernel_source_find(e->d_name) != NULL, "%s is not listed in kernels/templates/meson.build",
                    e->d_name);
  }
  closedir(d);
}
END_TEST

START_TEST(every_template_documents_parameters) {
  for (size_t i = 0; i < qd_kernel_source_count(); i++) {
    qd_kernel_params_t p;
    QD_ASSERT_OK(qd_kernel_template_params(qd_kernel_source_at(i)->name, &p));
  }
  for (size_t t = 0; t < N_TEMPLATES; t++) {
    qd_kernel_params_t p;
    QD_ASSERT_OK(qd_kernel_template_params(k_templates[t], &p));
    ck_assert_msg(p.count >= 1, "%s documents no qd:param line", k_templates[t]);
    bool tunable = false;
    for (size_t i = 0; i < p.count; i++) tunable |= p.items[i].kind == QD_KERNEL_PARAM_TUNABLE;
    ck_assert_msg(tunable, "%s documents no tunable", k_templates[t]);
  }
  qd_kernel_params_t p;
  QD_ASSERT_OK(qd_kernel_template_params("layernorm_modulate.cu", &p));
  const qd_kernel_param_t* threads = qd_kernel_params_find(&p, "LN_THREADS");
  ck_assert_ptr_nonnull(threads);
  ck_assert_int_eq(threads->kind, QD_KERNEL_PARAM_TUNABLE);
  ck_assert_int_eq(threads->default_value, 128);
  ck_assert_uint_eq(threads->value_count, 8);
  ck_assert_int_eq(threads->values[0], 8);
  ck_assert_int_eq(threads->values[7], 1024);
  ck_assert_int_eq(qd_kernel_params_find(&p, "LN_MODULATE")->kind, QD_KERNEL_PARAM_SELECT);
  ck_assert_ptr_null(qd_kernel_params_find(&p, "LN_NOPE"));
  QD_ASSERT_DETAIL(qd_kernel_template_params("nope.cu", &p), QD_E_KERNEL_TEMPLATE_UNKNOWN);
}
END_TEST

/* ---- compiling every documented variant ----------------------------------------------------------------------- */

enum { MAX_FNS = QD_KERNEL_OP_COUNT_ + QD_TEXT_KERNEL_OP_COUNT_ };

/* Every kernel a configuration of `tmpl` defines, as the launchers name them (runtime/cuda/kernels.h and
 * kernels_text.h). */
static size_t functions_of(const qd_kernel_config_t* cfg, const char** out) {
  size_t n = 0;
  for (int op = 0; op < MAX_FNS; op++) {
    const char* f = op < QD_KERNEL_OP_COUNT_
                        ? qd_kernel_function_name((qd_kernel_op_t)op, cfg)
                        : qd_text_kernel_function_name((qd_text_kernel_op_t)(op - QD_KERNEL_OP_COUNT_), cfg);
    if (!f) continue;
    bool seen = false;
    for (size_t i = 0; i < n; i++) seen |= strcmp(out[i], f) == 0;
    if (!seen) out[n++] = f;
  }
  return n;
}

static const tc_options_t k_compile = {"test_kernel_templates", functions_of, NULL, 22};

START_TEST(template_compiles_every_documented_value) { tc_compile_template(&k_compile, k_templates[_i]); }
END_TEST

START_TEST(ptx_output_holds_the_kernel) {
  qd_kernel_config_t cfg;
  QD_ASSERT_OK(qd_kernel_config_init("gated_residual.cu", &cfg));
  qd_kernel_variant_t v;
  qd_kernel_config_variant(&cfg, "qd_gated_residual", &v);
  qd_kernel_binary_t bin;
  QD_ASSERT_OK(qd_kernel_compile(qd_allocator_system(), &v, "90", QD_NVRTC_OUTPUT_CUBIN | QD_NVRTC_OUTPUT_PTX, &bin));
  ck_assert_ptr_nonnull(bin.image.cubin);
  ck_assert_ptr_nonnull(bin.image.ptx);
  ck_assert_ptr_nonnull(strstr(bin.image.ptx, ".entry qd_gated_residual("));
  ck_assert(bin.compile_ms > 0.0);
  qd_kernel_binary_deinit(&bin);
  /* PTX alone: no cubin, no ptxas, so no resources. */
  QD_ASSERT_OK(qd_kernel_compile(qd_allocator_system(), &v, "sm_80", QD_NVRTC_OUTPUT_PTX, &bin));
  ck_assert_ptr_null(bin.image.cubin);
  ck_assert_ptr_nonnull(bin.image.ptx);
  ck_assert(!bin.resources.known);
  qd_kernel_binary_deinit(&bin);
  qd_kernel_binary_deinit(&bin); /* twice is harmless */
  qd_kernel_binary_deinit(NULL);
}
END_TEST

/* ---- variants that must be refused ------------------------------------------------------------------------- */

static qd_status_t compile_with(const char* tmpl, const char* fn, const qd_kernel_define_t* d, size_t n) {
  qd_kernel_variant_t v = {tmpl, fn, d, n};
  qd_kernel_binary_t bin;
  qd_status_t s = qd_kernel_compile(qd_allocator_system(), &v, "sm_80", 0, &bin);
  if (!s) qd_kernel_binary_deinit(&bin);
  ck_assert_ptr_null(bin.image.cubin); /* zeroed on failure, freed on success */
  return s;
}

START_TEST(bad_variants_are_refused) {
  const qd_kernel_define_t ok[] = {{"GR_VEC", 4}};
  QD_ASSERT_OK(compile_with("gated_residual.cu", "qd_gated_residual", ok, 1));
  QD_ASSERT_DETAIL(compile_with("nope.cu", "qd_gated_residual", NULL, 0), QD_E_KERNEL_TEMPLATE_UNKNOWN);
  QD_ASSERT_DETAIL(compile_with(NULL, "qd_gated_residual", NULL, 0), QD_E_KERNEL_TEMPLATE_UNKNOWN);
  const qd_kernel_define_t typo[] = {{"GR_VECS", 4}};
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd_gated_residual", typo, 1), QD_E_KERNEL_DEFINE_INVALID);
  const qd_kernel_define_t value[] = {{"GR_VEC", 3}};
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd_gated_residual", value, 1), QD_E_KERNEL_DEFINE_INVALID);
  const qd_kernel_define_t twice[] = {{"GR_VEC", 4}, {"GR_VEC", 8}};
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd_gated_residual", twice, 2), QD_E_KERNEL_DEFINE_INVALID);
  const qd_kernel_define_t inject[] = {{"GR_VEC=4 -I/etc", 4}};
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd_gated_residual", inject, 1), QD_E_KERNEL_DEFINE_INVALID);
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd gated", NULL, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", NULL, NULL, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(compile_with("gated_residual.cu", "qd_gated_residua", NULL, 0), QD_E_KERNEL_FUNCTION_MISSING);
  /* LN_MODULATE=0 defines qd_layer_norm, not qd_layernorm_modulate. */
  const qd_kernel_define_t plain[] = {{"LN_MODULATE", 0}};
  QD_ASSERT_DETAIL(compile_with("layernorm_modulate.cu", "qd_layernorm_modulate", plain, 1),
                   QD_E_KERNEL_FUNCTION_MISSING);
  QD_ASSERT_OK(compile_with("layernorm_modulate.cu", "qd_layer_norm", plain, 1));
  /* A shape value the template's static_asserts reject reaches NVRTC and comes back with its log. */
  const qd_kernel_define_t odd[] = {{"QKR_HEAD_DIM", 7}};
  qd_status_t s = compile_with("qk_norm_rope.cu", "qd_qk_norm_rope", odd, 1);
  ck_assert_int_eq(qd_status_detail(s), QD_E_NVRTC_COMPILE);
  char msg[8192];
  qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  ck_assert_msg(strstr(msg, "QKR_HEAD_DIM must be a multiple of QKR_VEC") != NULL, "%s", msg);
  ck_assert_msg(strstr(msg, "qk_norm_rope.cu:qd_qk_norm_rope QKR_HEAD_DIM=7") != NULL, "%s", msg);
}
END_TEST

START_TEST(configs_start_at_defaults) {
  qd_kernel_config_t c;
  QD_ASSERT_OK(qd_kernel_config_init("nf4_dequant.cu", &c));
  ck_assert_str_eq(c.template_name, "nf4_dequant.cu");
  int v = -1;
  QD_ASSERT_OK(qd_kernel_config_get(&c, "NF4_THREADS", &v));
  ck_assert_int_eq(v, 256);
  QD_ASSERT_OK(qd_kernel_config_set(&c, "NF4_THREADS", 512));
  QD_ASSERT_OK(qd_kernel_config_get(&c, "NF4_THREADS", &v));
  ck_assert_int_eq(v, 512);
  QD_ASSERT_DETAIL(qd_kernel_config_set(&c, "NF4_THREADS", 500), QD_E_KERNEL_DEFINE_INVALID);
  QD_ASSERT_DETAIL(qd_kernel_config_set(&c, "NF4_NOPE", 1), QD_E_KERNEL_DEFINE_INVALID);
  QD_ASSERT_DETAIL(qd_kernel_config_get(&c, "NF4_NOPE", &v), QD_E_KERNEL_DEFINE_INVALID);
  qd_kernel_variant_t var;
  qd_kernel_config_variant(&c, "qd_nf4_dequant", &var);
  ck_assert_uint_eq(var.define_count, c.params.count);
  char text[256];
  qd_kernel_variant_format(&var, text, sizeof text);
  ck_assert_str_eq(text, "nf4_dequant.cu:qd_nf4_dequant NF4_DOUBLE_QUANT=0 NF4_THREADS=512 NF4_LOAD=4 NF4_UNROLL=4");
  char tiny[8];
  ck_assert_uint_eq(qd_kernel_variant_format(&var, tiny, sizeof tiny), strlen(text));
  ck_assert_str_eq(tiny, "nf4_deq");
  QD_ASSERT_DETAIL(qd_kernel_config_init("nope.cu", &c), QD_E_KERNEL_TEMPLATE_UNKNOWN);
}
END_TEST

START_TEST(resources_are_read_from_the_ptxas_report) {
  const char* log =
      "ptxas info    : 296 bytes gmem\n"
      "ptxas info    : Compiling entry function 'qd_a' for 'sm_90'\n"
      "ptxas info    : Function properties for qd_a\n"
      "ptxas         .     80 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 1 barriers, 1088 bytes smem, 408 bytes cmem[0]\n"
      "ptxas info    : Function properties for __internal_helper\n"
      "ptxas         .     16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Compiling entry function 'qd_ab' for 'sm_90'\n"
      "ptxas info    : Function properties for qd_ab\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 16 registers, used 0 barriers\n";
  qd_kernel_resources_t r;
  ck_assert(qd_kernel_resources_from_log(log, "qd_a", &r));
  ck_assert(r.known);
  ck_assert_int_eq(r.registers, 40);
  ck_assert_int_eq(r.shared_bytes, 1088);
  ck_assert_int_eq(r.stack_bytes, 80);
  ck_assert_int_eq(r.spill_bytes, 12);
  ck_assert(qd_kernel_resources_from_log(log, "qd_ab", &r));
  ck_assert_int_eq(r.registers, 16);
  ck_assert_int_eq(r.shared_bytes, 0);
  ck_assert_int_eq(r.stack_bytes, 0);
  ck_assert(!qd_kernel_resources_from_log(log, "qd_b", &r));
  ck_assert(!r.known);
  ck_assert(!qd_kernel_resources_from_log(NULL, "qd_a", &r));
}
END_TEST

START_TEST(malformed_cubins_hold_no_function) {
  qd_kernel_config_t cfg;
  QD_ASSERT_OK(qd_kernel_config_init("small_ops.cu", &cfg));
  qd_kernel_variant_t v;
  qd_kernel_config_variant(&cfg, "qd_silu_vec", &v);
  qd_kernel_binary_t bin;
  QD_ASSERT_OK(qd_kernel_compile(qd_allocator_system(), &v, "sm_80", 0, &bin));
  const uint8_t* c = bin.image.cubin;
  size_t n = bin.image.cubin_size;
  ck_assert(qd_cubin_has_function(c, n, "qd_silu_vec"));
  ck_assert(qd_cubin_has_function(c, n, "qd_copy_rows"));
  ck_assert(!qd_cubin_has_function(c, n, "qd_silu"));
  ck_assert(!qd_cubin_has_function(c, n, NULL));
  ck_assert(!qd_cubin_has_function(NULL, n, "qd_silu_vec"));
  /* Every truncation, read from an exact-size heap copy so that ASan sees any read past the end. */
  for (size_t cut = 0; cut < n; cut += (cut < 128 ? 1 : 97)) {
    uint8_t* t = malloc(cut ? cut : 1);
    memcpy(t, c, cut);
    (void)qd_cubin_has_function(t, cut, "qd_silu_vec");
    free(t);
  }
  /* Section header table pointed past the end, and a huge count. */
  uint8_t* t = malloc(n);
  memcpy(t, c, n);
  memset(t + 0x28, 0xff, 8);
  ck_assert(!qd_cubin_has_function(t, n, "qd_silu_vec"));
  memcpy(t, c, n);
  memset(t + 0x3c, 0xff, 2);
  ck_assert(!qd_cubin_has_function(t, n, "qd_silu_vec"));
  free(t);
  qd_kernel_binary_deinit(&bin);
}
END_TEST

/* ---- launchers refuse bad arguments before the driver ------------------------------------------------------- */

START_TEST(layernorm_launcher_checks) {
  qd_kernel_config_t c = config_of("layernorm_modulate.cu");
  qd_kernel_function_t f = fake_fn("qd_layernorm_modulate");
  const CUdeviceptr base = 0x10000;
  qd_layernorm_args_t a = {.y = base, .x = base + 0x1000, .shift = base + 0x2000, .scale = base + 0x2000 + 6144,
                           .mod_stride = 6 * 3072, .rows = 2 * 4608, .tokens = 4608, .cols = 3072, .eps = 1e-6f};
  ASSERT_REACHES_LAUNCH(qd_launch_layernorm(&f, &c, NULL, &a));
  qd_layernorm_args_t b = a;
  b.scale = 0;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_NULL);
  b = a;
  b.x += 2;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.mod_stride = 3001;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_ALIGNMENT);
  b = a;
  b.cols = 3004; /* not a multiple of LN_VEC=8 */
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.tokens = 4607;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  b = a;
  b.rows = 0;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &c, NULL, &b), QD_E_KERNEL_ARG_SHAPE);
  /* The function must be the one the configuration defines, and the configuration must be this template's. */
  qd_kernel_function_t plain = fake_fn("qd_layer_norm");
  QD_ASSERT_DETAIL(qd_launch_layernorm(&plain, &c, NULL, &a), QD_E_INVALID_ARGUMENT);
  qd_kernel_config_t other = config_of("gated_residual.cu");
  QD_ASSERT_DETAIL(qd_launch_layernorm(&f, &other, NULL, &a), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_launch_layernorm(NULL, &c, NULL, &a), QD_E_INVALID_ARGUMENT);
  /* Plain layer norm: weight optional, but not a bias alone. */
  QD_ASSERT_OK(qd_kernel_config_set(&c, "LN_MODULATE", 0));
  qd_layernorm_args_t p = {.y = base, .x = base + 0x1000, .rows = 77, .cols = 768, .eps = 1e-5f};
  ASSERT_REACHES_LAUNCH(qd_launch_layernorm(&plain, &c, NULL, &p));
  p.bias = base + 0x4000;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&plain, &c, NULL, &p), QD_E_KERNEL_ARG_NULL);
  p.weight = base + 0x3000;
  ASSERT_REACHES_LAUNCH(qd_launch_layernorm(&plain, &c, NULL, &p));
  /* A launch that asks for more than the function allows stops before the driver, too. */
  qd_kernel_function_t small = fake_fn("qd_layer_norm");
  small.cu = (const qd_cuda_driver_t*)&small; /* never dereferenced: the check comes first */
  small.handle = (CUfunction)&small;
  small.max_threads_per_block = 64;
  QD_ASSERT_DETAIL(qd_launch_layernorm(&small, &c, NULL, &p), QD_E_KERNEL_LAUNCH_CONFIG);
  QD_ASSERT_DETAIL(qd_kernel_launch(&small, (qd_kernel_dim3_t){1, 1, 1}, (qd_kernel_dim3_t){32, 1, 1}, 64 * 1024, NULL,
                                    NULL),
                   QD_E_KERNEL_LAUNCH_CONFIG);
  QD_ASSERT_DETAIL(qd_kernel_launch(&small, (qd_kernel_dim3_t){0, 1, 1}, (qd_kernel_dim3_t){32, 1, 1}, 0, NULL, NULL),
                   QD_E_KERNEL_LAUNCH_CONFIG);
}
END_TEST

START_TEST(qk_gated_elementwise_launcher_checks) {
  const CUdeviceptr base = 0x100000;
  qd_kernel_config_t q = config_of("qk_norm_rope.cu");
  qd_kernel_function_t qf = fake_fn("qd_qk_norm_rope");
  /* FLUX's joint attention: image q written after 512 text tokens of a 4608-token sequence. */
  qd_qk_norm_rope_args_t qa = {.y = base, .x = base + 0x100000, .weight = base + 0x200000, .freqs = base + 0x300000,
                               .x_row_stride = 3072, .x_batch_stride = 4096 * 3072, .y_row_stride = 3072,
                               .y_batch_stride = 4608 * 3072, .batch = 2, .tokens = 4096, .heads = 24,
                               .head_dim = 128, .rope_tokens = 4608, .rope_offset = 512, .eps = 1e-6f};
  ASSERT_REACHES_LAUNCH(qd_launch_qk_norm_rope(&qf, &q, NULL, &qa));
  qd_qk_norm_rope_args_t qb = qa;
  qb.head_dim = 64;
  QD_ASSERT_DETAIL(qd_launch_qk_norm_rope(&qf, &q, NULL, &qb), QD_E_KERNEL_ARG_SHAPE);
  qb = qa;
  qb.rope_offset = 513; /* runs past the table */
  QD_ASSERT_DETAIL(qd_launch_qk_norm_rope(&qf, &q, NULL, &qb), QD_E_KERNEL_ARG_SHAPE);
  qb = qa;
  qb.freqs += 8;
  QD_ASSERT_DETAIL(qd_launch_qk_norm_rope(&qf, &q, NULL, &qb), QD_E_KERNEL_ARG_ALIGNMENT);
  qb = qa;
  qb.y_row_stride = 3000 - 8; /* rows of y would overlap */
  QD_ASSERT_DETAIL(qd_launch_qk_norm_rope(&qf, &q, NULL, &qb), QD_E_KERNEL_ARG_SHAPE);
  qb = qa;
  qb.x = 0;
  QD_ASSERT_DETAIL(qd_launch_qk_norm_rope(&qf, &q, NULL, &qb), QD_E_KERNEL_ARG_NULL);

  qd_kernel_config_t g = config_of("gated_residual.cu");
  qd_kernel_function_t gf = fake_fn("qd_gated_residual");
  qd_gated_residual_args_t ga = {.y = base, .residual = base, .x = base + 0x100000, .gate = base + 0x200000,
                                 .gate_stride = 6 * 3072, .rows = 2 * 17, .tokens = 17, .cols = 3000};
  ASSERT_REACHES_LAUNCH(qd_launch_gated_residual(&gf, &g, NULL, &ga));
  qd_gated_residual_args_t gb = ga;
  gb.cols = 3001;
  QD_ASSERT_DETAIL(qd_launch_gated_residual(&gf, &g, NULL, &gb), QD_E_KERNEL_ARG_SHAPE);
  gb = ga;
  gb.gate += 4;
  QD_ASSERT_DETAIL(qd_launch_gated_residual(&gf, &g, NULL, &gb), QD_E_KERNEL_ARG_ALIGNMENT);
  /* A configuration not made by qd_kernel_config_init has no parameters to size the grid with. */
  qd_kernel_config_t hand;
  memset(&hand, 0, sizeof hand);
  hand.template_name = "gated_residual.cu";
  QD_ASSERT_DETAIL(qd_launch_gated_residual(&gf, &hand, NULL, &ga), QD_E_INVALID_ARGUMENT);
  gb = ga;
  gb.rows = 1 << 20;
  gb.tokens = 1;
  gb.cols = 4096; /* 2^32 elements */
  QD_ASSERT_DETAIL(qd_launch_gated_residual(&gf, &g, NULL, &gb), QD_E_KERNEL_ARG_SHAPE);

  qd_kernel_config_t e = config_of("elementwise.cu");
  qd_kernel_function_t un = fake_fn("qd_ew_unary"), bi = fake_fn("qd_ew_binary"), ba = fake_fn("qd_ew_bias_act");
  qd_kernel_function_t to16 = fake_fn("qd_ew_f32_to_bf16"), to32 = fake_fn("qd_ew_bf16_to_f32");
  ASSERT_REACHES_LAUNCH(qd_launch_ew_unary(&un, &e, NULL, base, base, 17, 1.0f));
  QD_ASSERT_OK(qd_launch_ew_unary(&un, &e, NULL, 0, 0, 0, 1.0f)); /* nothing to do */
  QD_ASSERT_DETAIL(qd_launch_ew_unary(&un, &e, NULL, base + 2, base, 17, 1.0f), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_ew_unary(&bi, &e, NULL, base, base, 17, 1.0f), QD_E_INVALID_ARGUMENT);
  ASSERT_REACHES_LAUNCH(qd_launch_ew_binary(&bi, &e, NULL, base, base, base + 0x1000, 3072, 2 * 4608, 4608, 3072));
  QD_ASSERT_DETAIL(qd_launch_ew_binary(&bi, &e, NULL, base, base, base + 0x1000, 3072, 9215, 4608, 3072),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_ew_binary(&bi, &e, NULL, base, base, 0, 3072, 2, 1, 3072), QD_E_KERNEL_ARG_NULL);
  ASSERT_REACHES_LAUNCH(qd_launch_ew_bias_act(&ba, &e, NULL, base, base, base + 0x1000, 4608, 12288, 1.0f));
  QD_ASSERT_DETAIL(qd_launch_ew_bias_act(&ba, &e, NULL, base, base, base + 0x1002, 4608, 12288, 1.0f),
                   QD_E_KERNEL_ARG_ALIGNMENT);
  ASSERT_REACHES_LAUNCH(qd_launch_ew_convert(&to16, &e, NULL, base, base + 0x1000, 3001));
  ASSERT_REACHES_LAUNCH(qd_launch_ew_convert(&to32, &e, NULL, base, base + 0x1000, 3001));
  QD_ASSERT_DETAIL(qd_launch_ew_convert(&to32, &e, NULL, base + 16, base + 0x1000, 3001), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_ew_convert(&to16, &e, NULL, base, base + 16, 3001), QD_E_KERNEL_ARG_ALIGNMENT);
}
END_TEST

START_TEST(nf4_and_small_launcher_checks) {
  const CUdeviceptr base = 0x100000;
  qd_kernel_config_t n = config_of("nf4_dequant.cu");
  qd_kernel_function_t nf = fake_fn("qd_nf4_dequant");
  qd_nf4_dequant_args_t na = {.y = base, .packed = base + 0x100000, .absmax = base + 0x200000, .n = 3072 * 12288,
                              .blocksize = 64};
  ASSERT_REACHES_LAUNCH(qd_launch_nf4_dequant(&nf, &n, NULL, &na));
  qd_nf4_dequant_args_t nb = na;
  nb.blocksize = 48;
  QD_ASSERT_DETAIL(qd_launch_nf4_dequant(&nf, &n, NULL, &nb), QD_E_KERNEL_ARG_SHAPE);
  nb.blocksize = 8192;
  QD_ASSERT_DETAIL(qd_launch_nf4_dequant(&nf, &n, NULL, &nb), QD_E_KERNEL_ARG_SHAPE);
  nb = na;
  nb.y += 8;
  QD_ASSERT_DETAIL(qd_launch_nf4_dequant(&nf, &n, NULL, &nb), QD_E_KERNEL_ARG_ALIGNMENT);
  nb = na;
  nb.absmax = 0;
  QD_ASSERT_DETAIL(qd_launch_nf4_dequant(&nf, &n, NULL, &nb), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_OK(qd_kernel_config_set(&n, "NF4_DOUBLE_QUANT", 1));
  QD_ASSERT_DETAIL(qd_launch_nf4_dequant(&nf, &n, NULL, &na), QD_E_KERNEL_ARG_NULL); /* no codes */
  na.absmax_codes = base + 0x300000;
  na.nested_absmax = base + 0x400000;
  na.nested_code = base + 0x500000;
  ASSERT_REACHES_LAUNCH(qd_launch_nf4_dequant(&nf, &n, NULL, &na));

  qd_kernel_config_t s = config_of("small_ops.cu");
  qd_kernel_function_t te = fake_fn("qd_timestep_embedding"), rf = fake_fn("qd_rope_freqs");
  qd_kernel_function_t sv = fake_fn("qd_silu_vec"), cp = fake_fn("qd_copy_rows");
  ASSERT_REACHES_LAUNCH(qd_launch_timestep_embedding(&te, &s, NULL, base, base + 0x1000, 2, 256, true, 0.0f, 1000.0f,
                                                     10000.0f));
  QD_ASSERT_DETAIL(qd_launch_timestep_embedding(&te, &s, NULL, base, base + 0x1002, 2, 256, true, 0.0f, 1000.0f,
                                                10000.0f),
                   QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_timestep_embedding(&te, &s, NULL, base, base + 0x1000, 2, 256, true, 0.0f, 1000.0f, 0.0f),
                   QD_E_KERNEL_ARG_SHAPE);
  const int64_t axes[] = {16, 56, 56}, odd[] = {16, 55, 57};
  ASSERT_REACHES_LAUNCH(qd_launch_rope_freqs(&rf, &s, NULL, base, base + 0x100000, 4608, axes, 3, 10000.0));
  QD_ASSERT_DETAIL(qd_launch_rope_freqs(&rf, &s, NULL, base, base + 0x100000, 4608, odd, 3, 10000.0),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_rope_freqs(&rf, &s, NULL, base, base + 0x100000, 4608, axes, 9, 10000.0),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_DETAIL(qd_launch_rope_freqs(&rf, &s, NULL, base + 4, base + 0x100000, 4608, axes, 3, 10000.0),
                   QD_E_KERNEL_ARG_ALIGNMENT);
  ASSERT_REACHES_LAUNCH(qd_launch_silu_vec(&sv, &s, NULL, base, base, 6144));
  QD_ASSERT_DETAIL(qd_launch_silu_vec(&te, &s, NULL, base, base, 6144), QD_E_INVALID_ARGUMENT);
  ASSERT_REACHES_LAUNCH(qd_launch_slice(&cp, &s, NULL, base, base + 0x1000, 2, 6 * 3072, 1, 3072, 3072, 2));
  QD_ASSERT_DETAIL(qd_launch_slice(&cp, &s, NULL, base, base + 0x1000, 2, 6 * 3072, 1, 5 * 3072 + 1, 3072, 2),
                   QD_E_KERNEL_ARG_SHAPE);
  QD_ASSERT_OK(qd_launch_slice(&cp, &s, NULL, 0, 0, 0, 10, 4, 0, 5, 4)); /* empty */
  const CUdeviceptr ins[] = {base + 0x10000, base + 0x20000, 0};
  const int64_t sizes[] = {512, 4096, 0};
  ASSERT_REACHES_LAUNCH(qd_launch_concat(&cp, &s, NULL, base, ins, sizes, 3, 2, 3072, 2));
  const int64_t sizes2[] = {512, 4096, 1};
  QD_ASSERT_DETAIL(qd_launch_concat(&cp, &s, NULL, base, ins, sizes2, 3, 2, 3072, 2), QD_E_KERNEL_ARG_NULL);
  QD_ASSERT_DETAIL(qd_launch_concat(&cp, &s, NULL, base, ins, sizes, 9, 2, 3072, 2), QD_E_KERNEL_ARG_SHAPE);
  const int64_t huge[] = {INT64_MAX / 4, INT64_MAX / 4, 0};
  QD_ASSERT_DETAIL(qd_launch_concat(&cp, &s, NULL, base, ins, huge, 3, 2, 3072, 2), QD_E_KERNEL_ARG_SHAPE);
}
END_TEST

START_TEST(text_launcher_checks) {
  const CUdeviceptr base = 0x100000;
  qd_kernel_config_t t = config_of("text_ops.cu");
  qd_kernel_function_t emb = fake_fn("qd_embedding"), ar = fake_fn("qd_arange"), eos = fake_fn("qd_eos_pool");
  qd_kernel_function_t t5 = fake_fn("qd_t5_relative_bias");
  /* CLIP's token embedding: 77 I32 ids into a [49408, 768] table. */
  qd_embedding_args_t ea = {.y = base, .ids = base + 0x100000, .id_bytes = 4, .weight = base + 0x200000,
                            .error = base + 0x300000, .n = 77, .vocab = 49408, .features = 768};
  ASSERT_REACHES_LAUNCH(qd_launch_embedding(&emb, &t, NULL, &ea));
  qd_embedding_args_t eb = ea;
  eb.error = 0; /* a bad id must have somewhere to be reported */
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_NULL);
  eb = ea;
  eb.error += 4;
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_ALIGNMENT);
  eb = ea;
  eb.id_bytes = 8;
  eb.ids += 4;
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_ALIGNMENT);
  eb = ea;
  eb.id_bytes = 2;
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_SHAPE);
  eb = ea;
  eb.features = 100; /* not a multiple of TXT_VEC=8 */
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_SHAPE);
  eb = ea;
  eb.weight += 2;
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &t, NULL, &eb), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_embedding(&ar, &t, NULL, &ea), QD_E_INVALID_ARGUMENT);
  qd_kernel_config_t other = config_of("small_ops.cu");
  QD_ASSERT_DETAIL(qd_launch_embedding(&emb, &other, NULL, &ea), QD_E_INVALID_ARGUMENT);

  ASSERT_REACHES_LAUNCH(qd_launch_arange(&ar, &t, NULL, base, 77));
  QD_ASSERT_OK(qd_launch_arange(&ar, &t, NULL, 0, 0)); /* nothing to do */
  QD_ASSERT_DETAIL(qd_launch_arange(&ar, &t, NULL, base + 2, 77), QD_E_KERNEL_ARG_ALIGNMENT);
  QD_ASSERT_DETAIL(qd_launch_arange(&ar, &t, NULL, base, (int64_t)1 << 32), QD_E_KERNEL_ARG_SHAPE);

  qd_eos_pool_args_t pa = {.y = base, .x = base + 0x100000, .ids = base + 0x200000, .id_bytes = 8, .batch = 2,
                           .tokens = 77, .ch = 768, .token = 49407};
  ASSERT_REACHES_LAUNCH(qd_launch_eos_pool(&eos, &t, NULL, &pa));
  qd_eos_pool_args_t pb = pa;
  pb.ch = 770;
  QD_ASSERT_DETAIL(qd_launch_eos_pool(&eos, &t, NULL, &pb), QD_E_KERNEL_ARG_SHAPE);
  pb = pa;
  pb.x = 0;
  QD_ASSERT_DETAIL(qd_launch_eos_pool(&eos, &t, NULL, &pb), QD_E_KERNEL_ARG_NULL);

  /* T5-XXL's position bias: 64 heads, 32 bidirectional buckets up to distance 128, 512 tokens. */
  qd_t5_relative_bias_args_t ta = {.y = base, .weight = base + 0x100000, .tokens = 512, .heads = 64, .buckets = 32,
                                   .max_distance = 128, .bidirectional = true};
  ASSERT_REACHES_LAUNCH(qd_launch_t5_relative_bias(&t5, &t, NULL, &ta));
  qd_t5_relative_bias_args_t tb = ta;
  tb.max_distance = 8; /* not beyond the 8 exact buckets */
  QD_ASSERT_DETAIL(qd_launch_t5_relative_bias(&t5, &t, NULL, &tb), QD_E_KERNEL_ARG_SHAPE);
  tb = ta;
  tb.buckets = 2; /* bidirectional: no exact bucket left */
  QD_ASSERT_DETAIL(qd_launch_t5_relative_bias(&t5, &t, NULL, &tb), QD_E_KERNEL_ARG_SHAPE);
  tb = ta;
  tb.y += 2;
  QD_ASSERT_DETAIL(qd_launch_t5_relative_bias(&t5, &t, NULL, &tb), QD_E_KERNEL_ARG_ALIGNMENT);
  tb = ta; /* 4096 buckets, one log step per distance: more steps than the kernel's table holds */
  tb.buckets = 4096;
  tb.max_distance = 4096;
  tb.bidirectional = false;
  tb.tokens = 4096;
  tb.heads = 1;
  QD_ASSERT_DETAIL(qd_launch_t5_relative_bias(&t5, &t, NULL, &tb), QD_E_INVALID_ARGUMENT);

  /* Attention: T5's (bias [1, H, S, S], scale 1), CLIP's (causal), a bad combination of tiles. */
  qd_kernel_config_t a = config_of("attention_masked.cu");
  QD_ASSERT_OK(qd_kernel_config_set(&a, "ATT_BIAS", 1));
  qd_kernel_function_t af = fake_fn("qd_attention_masked");
  qd_attention_masked_args_t aa = {.q = base, .k = base + 0x100000, .v = base + 0x200000, .o = base + 0x300000,
                                   .bias = base + 0x400000, .batch = 1, .sq = 512, .sk = 512, .heads = 64,
                                   .head_dim = 64, .bias_batch = 1, .bias_heads = 64, .scale = 1.0f};
  ASSERT_REACHES_LAUNCH(qd_launch_attention_masked(&af, &a, NULL, &aa));
  qd_attention_masked_args_t ab = aa;
  ab.bias = 0;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_NULL);
  ab = aa;
  ab.bias += 1;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_ALIGNMENT);
  ab = aa;
  ab.bias_heads = 2;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_SHAPE);
  ab = aa;
  ab.head_dim = 128;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_SHAPE);
  ab = aa;
  ab.causal = true; /* the variant was compiled without the mask */
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_SHAPE);
  ab = aa;
  ab.q += 8;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_ALIGNMENT);
  ab = aa;
  ab.k_row_stride = 3 * 4096 + 4; /* a fused QKV slice, but not a whole number of 16-byte chunks */
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_ALIGNMENT);
  ab = aa;
  ab.k_row_stride = 3 * 4096;
  ab.v_row_stride = 3 * 4096;
  ASSERT_REACHES_LAUNCH(qd_launch_attention_masked(&af, &a, NULL, &ab));
  ab.o_row_stride = 4000; /* rows of o would overlap */
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_SHAPE);
  ab = aa;
  ab.scale = -1.0f;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &a, NULL, &ab), QD_E_KERNEL_ARG_SHAPE);
  qd_kernel_config_t c = config_of("attention_masked.cu");
  QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_CAUSAL", 1));
  qd_attention_masked_args_t ca = {.q = base, .k = base + 0x100000, .v = base + 0x200000, .o = base + 0x300000,
                                   .batch = 1, .sq = 77, .sk = 77, .heads = 12, .head_dim = 64, .causal = true};
  ASSERT_REACHES_LAUNCH(qd_launch_attention_masked(&af, &c, NULL, &ca));
  ca.bias = base + 0x400000; /* a bias for a variant without one */
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &c, NULL, &ca), QD_E_KERNEL_ARG_SHAPE);
  ca.bias = 0;
  ca.sk = 76;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &c, NULL, &ca), QD_E_KERNEL_ARG_SHAPE);
  /* The VAE's tiles: 198 KiB of shared memory, more than an unraised function allows. */
  qd_kernel_config_t v = config_of("attention_masked.cu");
  QD_ASSERT_OK(qd_kernel_config_set(&v, "HEAD_DIM", 512));
  QD_ASSERT_OK(qd_kernel_config_set(&v, "ATT_WARPS_D", 2));
  QD_ASSERT_OK(qd_kernel_config_set(&v, "ATT_BLOCK_N", 32));
  QD_ASSERT_OK(qd_kernel_config_set(&v, "ATT_Q_IN_REGS", 0));
  QD_ASSERT_OK(qd_attention_masked_config_check(&v));
  ck_assert_uint_eq(qd_attention_masked_shared_bytes(&v), 202752);
  ck_assert_uint_eq(qd_attention_masked_threads(&v), 256);
  ck_assert_uint_eq(qd_attention_masked_block_m(&v), 64);
  qd_attention_masked_args_t va = {.q = base, .k = base + 0x100000, .v = base + 0x200000, .o = base + 0x300000,
                                   .batch = 1, .sq = 4096, .sk = 4096, .heads = 1, .head_dim = 512};
  qd_kernel_function_t loaded = fake_fn("qd_attention_masked");
  loaded.cu = (const qd_cuda_driver_t*)&loaded; /* never dereferenced: the check comes first */
  loaded.handle = (CUfunction)&loaded;
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&loaded, &v, NULL, &va), QD_E_KERNEL_LAUNCH_CONFIG);
  QD_ASSERT_OK(qd_kernel_config_set(&v, "ATT_WARPS_D", 4)); /* 32 keys over 4 warps: 8, not a multiple of 16 */
  QD_ASSERT_DETAIL(qd_attention_masked_config_check(&v), QD_E_INVALID_ARGUMENT);
  ck_assert_uint_eq(qd_attention_masked_shared_bytes(&v), 0);
  QD_ASSERT_DETAIL(qd_launch_attention_masked(&af, &v, NULL, &va), QD_E_INVALID_ARGUMENT);
}
END_TEST

/* The attention configurations the GPU test uses as its bases (tests/gpu/test_gpu_text_kernels.c), for every target
 * they are meant for: no local memory (no stack frame, no spills). */
START_TEST(attention_masked_bases_use_no_local_memory) {
  static const struct {
    int head_dim, causal, bias, warps_m, warps_d, block_n, stages, q_in_regs;
  } bases[] = {{64, 1, 0, 4, 1, 64, 2, 1}, {64, 0, 1, 4, 1, 64, 2, 1}, {64, 0, 2, 4, 1, 64, 2, 1},
               {64, 0, 0, 4, 1, 64, 2, 1}, {512, 0, 0, 4, 2, 32, 2, 0}, {512, 0, 0, 4, 2, 32, 1, 0},
               {512, 0, 0, 2, 2, 32, 1, 0}};
  for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
    qd_kernel_config_t c = config_of("attention_masked.cu");
    QD_ASSERT_OK(qd_kernel_config_set(&c, "HEAD_DIM", bases[i].head_dim));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_CAUSAL", bases[i].causal));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_BIAS", bases[i].bias));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_WARPS_M", bases[i].warps_m));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_WARPS_D", bases[i].warps_d));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_BLOCK_N", bases[i].block_n));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_STAGES", bases[i].stages));
    QD_ASSERT_OK(qd_kernel_config_set(&c, "ATT_Q_IN_REGS", bases[i].q_in_regs));
    QD_ASSERT_OK(qd_attention_masked_config_check(&c));
    qd_kernel_variant_t v;
    qd_kernel_config_variant(&c, "qd_attention_masked", &v);
    char what[512];
    qd_kernel_variant_format(&v, what, sizeof what);
    for (size_t a = 0; a < sizeof k_archs / sizeof k_archs[0]; a++) {
      qd_kernel_binary_t bin;
      QD_ASSERT_OK(qd_kernel_compile(qd_allocator_system(), &v, k_archs[a], 0, &bin));
      ck_assert_msg(bin.resources.known, "%s for %s: no ptxas report", what, k_archs[a]);
      ck_assert_msg(bin.resources.stack_bytes == 0 && bin.resources.spill_bytes == 0,
                    "%s for %s: %d bytes of stack, %d bytes of spills", what, k_archs[a], bin.resources.stack_bytes,
                    bin.resources.spill_bytes);
      qd_kernel_binary_deinit(&bin);
    }
  }
}
END_TEST

/* ---- the NF4 reference ------------------------------------------------------------------------------------ */

START_TEST(ref_nf4_hand_computed) {
  /* Bytes 0x0F 0x7A 0x80: codes (high nibble first) 0 15 7 10 8 0; one block of 32 with absmax 2. */
  const uint8_t packed[3] = {0x0F, 0x7A, 0x80};
  const float absmax[1] = {2.0f};
  qd_ref_nf4_t q = {.packed = packed, .absmax = absmax, .blocksize = 32};
  float y[6];
  qd_ref_nf4_dequantize(NULL, &q, y, 6);
  ck_assert_float_eq(y[0], -2.0f);
  ck_assert_float_eq(y[1], 2.0f);
  ck_assert_float_eq(y[2], 0.0f);
  ck_assert_float_eq(y[3], 0.24611230194568634f * 2.0f);
  ck_assert_float_eq(y[4], 0.07958029955625534f * 2.0f);
  ck_assert_float_eq(y[5], -2.0f);
  ck_assert_float_eq(qd_ref_nf4_code[13], 0.5626170039176941f);
  /* An odd count reads only the high nibble of the last byte; the bf16 weight is the RNE rounding. */
  qd_ref_nf4_dequantize(NULL, &q, y, 5);
  ck_assert_uint_eq(qd_f32_to_bf16(y[3]), 0x3efc); /* 0.4922246 -> 0.4921875 */

  /* Block boundaries: element 32 starts block 1. */
  uint8_t p2[20];
  memset(p2, 0xFF, sizeof p2); /* code 15 = +1.0 everywhere */
  const float am2[2] = {0.5f, 3.0f};
  qd_ref_nf4_t q2 = {.packed = p2, .absmax = am2, .blocksize = 32};
  float y2[40];
  qd_ref_nf4_dequantize(NULL, &q2, y2, 40);
  ck_assert_float_eq(y2[31], 0.5f);
  ck_assert_float_eq(y2[32], 3.0f);
  ck_assert_float_eq(y2[39], 3.0f);

  /* Double quantization: scale = code2[c] * nested[block / 256] + offset. 257 blocks of 32 reach nested[1]. */
  enum { BLOCKS = 257, N = BLOCKS * 32 };
  uint8_t* p3 = malloc(N / 2);
  memset(p3, 0xEE, N / 2); /* code 14 = 0.7229568362236023 */
  uint8_t codes[BLOCKS];
  memset(codes, 3, sizeof codes);
  codes[1] = 200;
  float code2[256];
  for (int i = 0; i < 256; i++) code2[i] = (float)(i - 128) / 128.0f;
  const float nested[2] = {4.0f, 8.0f};
  qd_ref_nf4_t q3 = {.packed = p3, .absmax_codes = codes, .nested_absmax = nested, .nested_code = code2,
                     .offset = 0.25f, .blocksize = 32};
  float* y3 = malloc(N * sizeof *y3);
  qd_ref_nf4_dequantize(NULL, &q3, y3, N);
  const float s0 = (-125.0f / 128.0f) * 4.0f + 0.25f, s1 = (72.0f / 128.0f) * 4.0f + 0.25f;
  const float s256 = (-125.0f / 128.0f) * 8.0f + 0.25f;
  ck_assert_float_eq(qd_ref_nf4_block_absmax(&q3, 0), s0);
  ck_assert_float_eq(qd_ref_nf4_block_absmax(&q3, 256), s256);
  ck_assert_float_eq(y3[0], 0.7229568362236023f * s0);
  ck_assert_float_eq(y3[32], 0.7229568362236023f * s1);
  ck_assert_float_eq(y3[N - 1], 0.7229568362236023f * s256);
  free(y3);
  free(p3);
}
END_TEST

/* The quantizer (ir/nf4.c) and this reference read the format independently; they must agree bit for bit. */
START_TEST(ref_nf4_matches_the_quantizer) {
  const int32_t blocksizes[] = {32, 64, 256, 4096};
  for (int dq = 0; dq < 2; dq++) {
    for (size_t bi = 0; bi < sizeof blocksizes / sizeof blocksizes[0]; bi++) {
      const uint64_t n = 300 * 64 + 33; /* a partial last block and an odd count */
      qd_nf4_layout_t layout;
      QD_ASSERT_OK(qd_nf4_layout(n, blocksizes[bi], dq == 1, &layout));
      float* x = malloc(n * sizeof *x);
      uint64_t state = 0x1234567 + bi;
      for (uint64_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((int64_t)(state >> 33) % 20001 - 10000) / 1000.0f * (1.0f + (float)(i % 7));
      }
      qd_nf4_tensor_t t = {0};
      t.packed = calloc(layout.packed_bytes, 1);
      t.absmax = calloc(layout.blocks, sizeof(float));
      t.absmax_codes = calloc(layout.blocks, 1);
      t.nested_absmax = calloc(layout.nested_blocks + 1, sizeof(float));
      float* scratch = calloc(layout.blocks, sizeof(float));
      qd_nf4_quantize(&layout, x, &t, scratch);
      float* want = malloc(n * sizeof *want);
      float* got = malloc(n * sizeof *got);
      qd_nf4_dequantize(&layout, &t, want);
      qd_ref_nf4_t q = {.packed = t.packed, .blocksize = blocksizes[bi]};
      if (dq) {
        q.absmax_codes = t.absmax_codes;
        q.nested_absmax = t.nested_absmax;
        q.nested_code = qd_dynamic_map_signed();
        q.offset = t.offset;
      } else {
        q.absmax = t.absmax;
      }
      qd_ref_nf4_dequantize(NULL, &q, got, (int64_t)n);
      for (uint64_t i = 0; i < n; i++)
        ck_assert_msg(memcmp(&want[i], &got[i], sizeof(float)) == 0,
                      "blocksize %d dq %d element %llu: quantizer %.9g, reference %.9g", blocksizes[bi], dq,
                      (unsigned long long)i, (double)want[i], (double)got[i]);
      free(x);
      free(t.packed);
      free(t.absmax);
      free(t.absmax_codes);
      free(t.nested_absmax);
      free(scratch);
      free(want);
      free(got);
    }
  }
}
END_TEST

static Suite* kernel_templates_suite(void) {
  Suite* s = suite_create("kernel_templates");
  TCase* t = tcase_create("embedding");
  tcase_add_test(t, embedded_sources_match_files);
  tcase_add_test(t, every_template_documents_parameters);
  suite_add_tcase(s, t);
  t = tcase_create("compile");
  tcase_set_timeout(t, 900);
  tcase_add_loop_test(t, template_compiles_every_documented_value, 0, N_TEMPLATES);
  tcase_add_test(t, ptx_output_holds_the_kernel);
  tcase_add_test(t, bad_variants_are_refused);
  tcase_add_test(t, configs_start_at_defaults);
  tcase_add_test(t, resources_are_read_from_the_ptxas_report);
  tcase_add_test(t, malformed_cubins_hold_no_function);
  tcase_add_test(t, attention_masked_bases_use_no_local_memory);
  suite_add_tcase(s, t);
  t = tcase_create("launchers");
  tcase_add_test(t, layernorm_launcher_checks);
  tcase_add_test(t, qk_gated_elementwise_launcher_checks);
  tcase_add_test(t, nf4_and_small_launcher_checks);
  tcase_add_test(t, text_launcher_checks);
  suite_add_tcase(s, t);
  t = tcase_create("ref_nf4");
  tcase_add_test(t, ref_nf4_hand_computed);
  tcase_add_test(t, ref_nf4_matches_the_quantizer);
  suite_add_tcase(s, t);
  return s;
}

QD_TEST_MAIN(kernel_templates_suite)
