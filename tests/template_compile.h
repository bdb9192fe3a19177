/* Compiling every documented variant of a kernel template with NVRTC, and checking launchers without a GPU, shared
 * by tests/test_kernel_templates.c and tests/test_image_templates.c (Check tests; include after qd_test.h).
 *
 * Every variant (the defaults, then each documented value of each parameter with the others at their defaults) is
 * compiled for sm_90, the architecture CI requires every variant to build for; sm_80, sm_86 and sm_89, and sm_90a,
 * compile the defaults only: the variants differ in tile sizes and vector widths, not in per-architecture code
 * paths, so compiling all of them again for every architecture multiplied the suite's time by four without finding
 * more. Each compile must succeed without a compiler warning, report its registers, and hold every kernel the
 * launchers name. */
#ifndef QD_TESTS_TEMPLATE_COMPILE_H
#define QD_TESTS_TEMPLATE_COMPILE_H

#include <stdio.h>
#include <string.h>

#include "qd/allocator.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"

enum { TC_MAX_FNS = 32 };

typedef struct {
  const char* program; /* prefix of the printed lines */
  /* The kernels a configuration defines, as the launchers name them (at most TC_MAX_FNS), the first one first. */
  size_t (*functions_of)(const qd_kernel_config_t* cfg, const char** out);
  const char* no_spill_template; /* a template whose variants must not spill or use a stack (or NULL) */
  int name_width;                /* width of the template's name in the summary line */
} tc_options_t;

typedef struct {
  int compiled;
  double ms;
  int max_regs;
  int spilling;
} tc_tally_t;

static void tc_compile_config(const tc_options_t* o, qd_kernel_config_t* cfg, const char* arch, tc_tally_t* tally) {
  const char* fns[TC_MAX_FNS];
  size_t nf = o->functions_of(cfg, fns);
  ck_assert_msg(nf >= 1, "%s: no launcher kernel", cfg->template_name);
  qd_kernel_variant_t v;
  qd_kernel_config_variant(cfg, fns[0], &v);
  char what[512];
  qd_kernel_variant_format(&v, what, sizeof what);
  qd_kernel_binary_t bin;
  qd_status_t s = qd_kernel_compile(qd_allocator_system(), &v, arch, 0, &bin);
  if (s) {
    char msg[8192];
    qd_status_format(s, msg, sizeof msg);
    qd_status_free(s);
    ck_abort_msg("%s for %s: %s", what, arch, msg);
  }
  ck_assert_ptr_nonnull(bin.image.cubin);
  ck_assert_str_eq(bin.image.arch, arch);
  for (size_t i = 0; i < nf; i++)
    ck_assert_msg(qd_cubin_has_function(bin.image.cubin, bin.image.cubin_size, fns[i]), "%s for %s lacks %s", what,
                  arch, fns[i]);
  ck_assert_msg(bin.resources.known && bin.resources.registers > 0, "%s for %s: no ptxas resource report", what, arch);
  ck_assert_msg(bin.image.log == NULL, "%s for %s: compiler warnings:\n%s", what, arch, bin.image.log);
  if (o->no_spill_template && strcmp(cfg->template_name, o->no_spill_template) == 0)
    ck_assert_msg(bin.resources.spill_bytes == 0 && bin.resources.stack_bytes == 0,
                  "%s for %s spills %d bytes per thread (stack %d)", what, arch, bin.resources.spill_bytes,
                  bin.resources.stack_bytes);
  tally->compiled++;
  tally->ms += bin.compile_ms;
  if (bin.resources.registers > tally->max_regs) tally->max_regs = bin.resources.registers;
  if (bin.resources.spill_bytes > 0) {
    tally->spilling++;
    printf("%s: note: %s for %s spills %d bytes per thread\n", o->program, what, arch, bin.resources.spill_bytes);
  }
  qd_kernel_binary_deinit(&bin);
}

/* Every documented variant of `tmpl` for sm_90; the defaults for sm_80, sm_86, sm_89 and sm_90a. */
static void tc_compile_template(const tc_options_t* o, const char* tmpl) {
  static const char* const defaults_only[] = {"sm_80", "sm_86", "sm_89", "sm_90a"};
  qd_kernel_config_t base;
  QD_ASSERT_OK(qd_kernel_config_init(tmpl, &base));
  tc_tally_t tally = {0};
  qd_kernel_config_t defaults = base;
  tc_compile_config(o, &defaults, "sm_90", &tally);
  for (size_t p = 0; p < base.params.count; p++) {
    const qd_kernel_param_t* param = &base.params.items[p];
    for (size_t v = 0; v < param->value_count; v++) {
      if (param->values[v] == param->default_value) continue;
      qd_kernel_config_t cfg = base;
      QD_ASSERT_OK(qd_kernel_config_set(&cfg, param->name, param->values[v]));
      tc_compile_config(o, &cfg, "sm_90", &tally);
    }
  }
  for (size_t a = 0; a < sizeof defaults_only / sizeof defaults_only[0]; a++) {
    qd_kernel_config_t cfg = base;
    tc_compile_config(o, &cfg, defaults_only[a], &tally);
  }
  printf("%s: %-*s %3d variants compiled, %.0f ms in NVRTC (%.0f ms each), up to %d registers, %d spilling\n",
         o->program, o->name_width, tmpl, tally.compiled, tally.ms, tally.ms / tally.compiled, tally.max_regs,
         tally.spilling);
}

/* ---- launchers refuse bad arguments before the driver ------------------------------------------------------- */

/* A function value as if loaded, without a driver: launching it stops at "never loaded". */
static qd_kernel_function_t fake_fn(const char* name) {
  qd_kernel_function_t f;
  memset(&f, 0, sizeof f);
  snprintf(f.name, sizeof f.name, "%s", name);
  f.max_threads_per_block = 1024;
  f.max_dynamic_shared_bytes = 48 * 1024;
  return f;
}

/* Valid arguments pass every check and reach qd_kernel_launch, which refuses the unloaded function. */
#define ASSERT_REACHES_LAUNCH(expr)                                                                    \
  do {                                                                                                 \
    qd_status_t s_ = (expr);                                                                           \
    char m_[1024];                                                                                     \
    qd_status_format(s_, m_, sizeof m_);                                                               \
    ck_assert_msg(s_ && qd_status_detail(s_) == QD_E_INVALID_ARGUMENT && strstr(m_, "never loaded"), \
                  "%s: %s", #expr, s_ ? m_ : "succeeded");                                             \
    qd_status_free(s_);                                                                                \
  } while (0)

static qd_kernel_config_t config_of(const char* tmpl) {
  qd_kernel_config_t c;
  QD_ASSERT_OK(qd_kernel_config_init(tmpl, &c));
  return c;
}

#endif
