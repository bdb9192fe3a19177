/* Argument checks shared by the kernel launchers: see runtime/cuda/launch_checks.h. The messages are part of the
 * launchers' contract (tests match some of them), so they are written once, here. */
#include "runtime/cuda/launch_checks.h"

#include <stdarg.h>
#include <string.h>

qd_status_t qd_launch_check_begin(const char* tmpl, const char* want, const qd_kernel_function_t* fn,
                                  const qd_kernel_config_t* cfg, bool name_template) {
  if (!fn || !cfg)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "launching a %s kernel without a function or configuration",
                  tmpl);
  if (!want)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "a configuration of '%s' cannot launch a kernel of '%s'",
                  cfg->template_name ? cfg->template_name : "(none)", tmpl);
  if (strcmp(fn->name, want) != 0) {
    const char* got = fn->name[0] ? fn->name : "(unnamed)";
    if (name_template)
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                    "function '%s' is not %s, the kernel this %s configuration defines", got, want, tmpl);
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "function '%s' is not %s, the kernel this launch needs", got,
                  want);
  }
  return QD_OK;
}

qd_status_t qd_launch_check_params(const qd_kernel_config_t* cfg, ...) {
  va_list ap;
  va_start(ap, cfg);
  qd_status_t s = QD_OK;
  for (const char* name; !s && (name = va_arg(ap, const char*)) != NULL;) {
    int* out = va_arg(ap, int*);
    const qd_kernel_param_t* p = qd_kernel_params_find(&cfg->params, name);
    if (!p) {
      s = QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                 "the %s configuration has no %s; make configurations with qd_kernel_config_init",
                 cfg->template_name ? cfg->template_name : "(none)", name);
    } else {
      *out = cfg->values[p - cfg->params.items];
      if (p->kind != QD_KERNEL_PARAM_SELECT && *out < 1)
        s = QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "the %s configuration has %s=%d", cfg->template_name, name,
                   *out);
    }
  }
  va_end(ap);
  return s;
}

qd_status_t qd_launch_check_need(const char* kernel, const char* what, CUdeviceptr p) {
  if (p) return QD_OK;
  return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: %s is missing (a null device pointer)", kernel, what);
}

qd_status_t qd_launch_check_align(const char* kernel, const char* what, CUdeviceptr p, uint64_t bytes,
                                  const char* why) {
  if (p % bytes == 0) return QD_OK;
  return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_ALIGNMENT,
                "%s: %s (0x%llx) is not aligned to %llu bytes, which %s needs", kernel, what, (unsigned long long)p,
                (unsigned long long)bytes, why);
}

qd_status_t qd_launch_check_stride(const char* kernel, const char* what, int64_t stride, int64_t multiple,
                                   const char* why) {
  if (stride >= 0 && stride % multiple == 0) return QD_OK;
  return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_ALIGNMENT,
                "%s: %s = %lld is not a non-negative multiple of %lld, which %s needs", kernel, what,
                (long long)stride, (long long)multiple, why);
}

qd_status_t qd_launch_check_range(const char* kernel, const char* what, int64_t v, int64_t lo, int64_t hi) {
  if (v >= lo && v <= hi) return QD_OK;
  return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %s = %lld is outside [%lld, %lld]", kernel, what,
                (long long)v, (long long)lo, (long long)hi);
}

qd_status_t qd_launch_check_multiple(const char* kernel, const char* what, int64_t v, int64_t m, const char* why) {
  if (v % m == 0) return QD_OK;
  return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %s = %lld is not a multiple of %lld, which %s needs", kernel,
                what, (long long)v, (long long)m, why);
}
