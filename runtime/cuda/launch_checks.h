/* Argument checks shared by the kernel launchers (runtime/cuda/kernels.c, kernels_text.c, kernels_image.c): every
 * launcher refuses bad arguments with the same codes and messages before it touches the driver, so that a caller
 * (the executor, a test) learns which argument of which kernel is wrong instead of getting a fault on the GPU.
 *
 * Internal to runtime/cuda; no allocation, no state. Each check returns QD_OK or a status the caller owns; `kernel`
 * is the function's name, put at the front of the message. */
#ifndef QD_RUNTIME_CUDA_LAUNCH_CHECKS_H
#define QD_RUNTIME_CUDA_LAUNCH_CHECKS_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"

/* The function and configuration belong to the op whose template is `tmpl` and whose kernel is `want` (the op's
 * function name for `cfg`, NULL when `cfg` is not a configuration of `tmpl`). `name_template` picks the wording of
 * the wrong-function message: "the kernel this <tmpl> configuration defines" or "the kernel this launch needs". */
qd_status_t qd_launch_check_begin(const char* tmpl, const char* want, const qd_kernel_function_t* fn,
                                  const qd_kernel_config_t* cfg, bool name_template);

/* Reads parameters of the configuration: qd_launch_check_params(cfg, "A", &a, "B", &b, NULL). A configuration that
 * lacks one (not made by qd_kernel_config_init), or holds a size below 1, is refused: the grid math divides by
 * them. */
qd_status_t qd_launch_check_params(const qd_kernel_config_t* cfg, ...) __attribute__((sentinel));

/* KERNEL_ARG_NULL unless p is set. */
qd_status_t qd_launch_check_need(const char* kernel, const char* what, CUdeviceptr p);
/* KERNEL_ARG_ALIGNMENT unless p is a multiple of `bytes`; `why` names the parameter that needs it. */
qd_status_t qd_launch_check_align(const char* kernel, const char* what, CUdeviceptr p, uint64_t bytes,
                                  const char* why);
/* KERNEL_ARG_ALIGNMENT unless 0 <= stride and stride is a multiple of `multiple`. */
qd_status_t qd_launch_check_stride(const char* kernel, const char* what, int64_t stride, int64_t multiple,
                                   const char* why);
/* KERNEL_ARG_SHAPE unless lo <= v <= hi. */
qd_status_t qd_launch_check_range(const char* kernel, const char* what, int64_t v, int64_t lo, int64_t hi);
/* KERNEL_ARG_SHAPE unless v is a multiple of m. */
qd_status_t qd_launch_check_multiple(const char* kernel, const char* what, int64_t v, int64_t m, const char* why);

/* ceil(work / per_block) blocks, at least one (a grid of 0 blocks is a launch error). */
static inline unsigned qd_launch_blocks(int64_t work, int64_t per_block) {
  int64_t b = (work + per_block - 1) / per_block;
  return (unsigned)(b < 1 ? 1 : b);
}

static inline qd_kernel_dim3_t qd_launch_dim(unsigned x) { return (qd_kernel_dim3_t){x, 1, 1}; }

/* a * b, or -1 when it overflows int64 or a factor is negative; -1 propagates through nested calls. */
static inline int64_t qd_launch_mul(int64_t a, int64_t b) {
  int64_t r;
  if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, &r)) return -1;
  return r;
}

/* a * b * c, as qd_launch_mul. */
static inline int64_t qd_launch_mul3(int64_t a, int64_t b, int64_t c) {
  return qd_launch_mul(qd_launch_mul(a, b), c);
}

#endif
