/* qd runtime: launchers for the image kernel templates of the VAE decoder (kernels/templates/image_ops.cu and
 * conv2d.cu), in the style of runtime/cuda/kernels.h.
 *
 * One function per kernel (group norm's two kernels share one launcher): it takes the loaded function(s)
 * (runtime/cuda/kernel_module.h), the configuration they were compiled from (the launcher reads block sizes, vector
 * widths and tiles from it, so grid and kernel agree), the stream and the op's shapes and attributes as the graph
 * has them. It checks everything it can before touching the driver, computes the grid and launches; it does not
 * synchronize.
 *
 *   template        kernel(s)                                   launcher                       graph op
 *   image_ops.cu    qd_group_norm_stats + qd_group_norm_apply   qd_launch_group_norm           group_norm (+ silu)
 *                   qd_upsample_nearest                         qd_launch_upsample_nearest     upsample_nearest
 *                   qd_affine                                   qd_launch_affine               affine
 *                   qd_permute                                  qd_launch_permute              permute
 *   conv2d.cu       qd_conv2d                                   qd_launch_conv2d               conv2d (+ add)
 *                   qd_conv2d_pack_weight                       qd_launch_conv2d_pack_weight   (weight load)
 * reshape needs no kernel: it is a view. qd_image_kernel_function_name() gives the kernel a configuration compiles
 * for an op; each template's header comment has the math, layouts and parameters.
 *
 * Conventions: activations are bf16 NCHW in device memory; sizes are elements unless a name says bytes; a pointer
 * may be 0 only where a field says so.
 * Wiring notes for the executor:
 *   - group_norm needs a scratch buffer of qd_group_norm_workspace_bytes() (fp32 partial statistics); GN_SILU=1
 *     fuses a following silu (the VAE's resnets and conv_norm_out).
 *   - conv2d reads its weight repacked as [Cout, k*k, round_up(Cin, 8)] (qd_conv2d_packed_weight_elems()):
 *     repack once when the weights are loaded, on the GPU (qd_launch_conv2d_pack_weight) or on the host
 *     (qd_conv2d_pack_weight_host, e.g. while converting F32 weights to bf16). CONV_K and CONV_STRIDE are
 *     compile-time (shape parameters: compile one variant per kernel size and stride in use); CONV_RESIDUAL=1
 *     fuses the resnet's closing add (y = conv2(h) + bias + shortcut). Shared memory above 48 KiB is raised by
 *     the launcher itself (a driver call per launch) unless the caller raised it once with
 *     qd_kernel_function_set_max_dynamic_shared(fn, qd_conv2d_shared_bytes(cfg)).
 * Ownership: nothing here allocates or keeps a pointer past the call; device buffers are the caller's and must
 * stay valid until the stream has run the kernels.
 * Errors (all before any driver call): INVALID_ARGUMENT when a function or configuration belongs to another
 * kernel; KERNEL_ARG_NULL, KERNEL_ARG_ALIGNMENT, KERNEL_ARG_SHAPE for the arguments; then qd_kernel_launch's.
 */
#ifndef QD_RUNTIME_CUDA_KERNELS_IMAGE_H
#define QD_RUNTIME_CUDA_KERNELS_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/status.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_module.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_image_kernel_op {
  QD_IMAGE_GROUP_NORM_STATS,
  QD_IMAGE_GROUP_NORM_APPLY,
  QD_IMAGE_UPSAMPLE_NEAREST,
  QD_IMAGE_AFFINE,
  QD_IMAGE_PERMUTE,
  QD_IMAGE_CONV2D,
  QD_IMAGE_CONV2D_PACK_WEIGHT,
  QD_IMAGE_OP_COUNT_
} qd_image_kernel_op_t;

/* The template file of an op ("image_ops.cu"), and the kernel function a configuration of that template defines
 * for it. NULL for an unknown op or a configuration of another template. */
const char* qd_image_kernel_template_name(qd_image_kernel_op_t op);
const char* qd_image_kernel_function_name(qd_image_kernel_op_t op, const qd_kernel_config_t* config);

/* ---- image_ops.cu: group norm ------------------------------------------------------------------------------- */
typedef struct qd_group_norm_args {
  CUdeviceptr y, x;           /* [batch, channels, spatial]; y may be x */
  CUdeviceptr weight, bias;   /* [channels] bf16 each; 0 = none (1 and 0) */
  CUdeviceptr workspace;      /* qd_group_norm_workspace_bytes() of scratch, 8-byte aligned */
  uint64_t workspace_bytes;
  int64_t batch, channels, spatial, groups; /* spatial = H * W (any trailing dims flattened) */
  float eps;
} qd_group_norm_args_t;
/* Scratch bytes the two kernels exchange the partial statistics through; 0 for a bad configuration or shape. */
uint64_t qd_group_norm_workspace_bytes(const qd_kernel_config_t* config, int64_t batch, int64_t channels,
                                       int64_t spatial, int64_t groups);
/* Launches qd_group_norm_stats then qd_group_norm_apply (GN_SILU=1: silu of the result) on the stream. */
qd_status_t qd_launch_group_norm(const qd_kernel_function_t* stats, const qd_kernel_function_t* apply,
                                 const qd_kernel_config_t* config, CUstream stream, const qd_group_norm_args_t* args);

/* ---- image_ops.cu: upsample, affine, permute ---------------------------------------------------------------- */
/* x [planes, h, w] -> y [planes, h * factor, w * factor] (planes = batch * channels); factor 1..64. */
qd_status_t qd_launch_upsample_nearest(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                       CUstream stream, CUdeviceptr y, CUdeviceptr x, int64_t planes, int64_t h,
                                       int64_t w, int64_t factor);
/* y = x * scale / divisor + shift, n elements; y may be x; divisor != 0. */
qd_status_t qd_launch_affine(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                             CUdeviceptr y, CUdeviceptr x, int64_t n, float scale, float divisor, float shift);
/* y = x with axes reordered, y.dims[i] = dims[perm[i]]: `dims` are x's (rank 1..8), perm a permutation of
 * 0..rank-1, elements of elem_bytes (1, 2, 4 or 8). y must not overlap x. */
qd_status_t qd_launch_permute(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                              CUdeviceptr y, CUdeviceptr x, const int64_t* dims, const int64_t* perm, int32_t rank,
                              int64_t elem_bytes);

/* ---- conv2d.cu ---------------------------------------------------------------------------------------------- */
typedef struct qd_conv2d_args {
  CUdeviceptr y;        /* [batch, cout, hout, wout], 4-byte aligned; must not overlap x */
  CUdeviceptr x;        /* [batch, cin, h, w] */
  CUdeviceptr weight;   /* repacked [cout, k*k, round_up(cin, 8)], 16-byte aligned */
  CUdeviceptr bias;     /* [cout], or 0 */
  CUdeviceptr residual; /* CONV_RESIDUAL=1: [batch, cout, hout, wout], 4-byte aligned, may be y; else 0 */
  int64_t batch, cin, h, w, cout;
  int64_t kernel, stride, pad; /* the op's attributes; kernel and stride must be the variant's CONV_K, CONV_STRIDE */
} qd_conv2d_args_t;
/* Dynamic shared memory a configuration's qd_conv2d uses (0 for a configuration of another template). */
uint32_t qd_conv2d_shared_bytes(const qd_kernel_config_t* config);
/* Elements of the repacked weight: cout * k * k * round_up(cin, 8); -1 when a size is not positive or it
 * overflows. */
int64_t qd_conv2d_packed_weight_elems(int64_t cout, int64_t cin, int64_t kernel);
/* The repacking on the host: w [cout, cin, k, k] -> packed [cout, k*k, round_up(cin, 8)], zeros in the padding.
 * Raw bf16 (or any 16-bit) values. */
void qd_conv2d_pack_weight_host(const uint16_t* w, uint16_t* packed, int64_t cout, int64_t cin, int64_t kernel);
qd_status_t qd_launch_conv2d_pack_weight(const qd_kernel_function_t* fn, const qd_kernel_config_t* config,
                                         CUstream stream, CUdeviceptr packed, CUdeviceptr weight, int64_t cout,
                                         int64_t cin, int64_t kernel);
qd_status_t qd_launch_conv2d(const qd_kernel_function_t* fn, const qd_kernel_config_t* config, CUstream stream,
                             const qd_conv2d_args_t* args);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNELS_IMAGE_H */
