/* Which kernels a lowered program launches on the CUDA executor, shared by the executor (which loads them) and
 * qdc compile (which builds them into the plan's KERN sections), so that the two can never disagree: the template,
 * function and defines of every node's kernel are decided here and nowhere else. A node that gains a kernel, or a
 * kernel that gains a define, changes qd_cuda_node_kernel only.
 *
 * A kernel is identified by its key: the template, the function, every define explicit, and the XXH64 of the
 * template's text ("layernorm_modulate.cu:qd_layernorm_modulate LN_MODULATE=1 LN_THREADS=128 LN_VEC=8
 * src=0123456789abcdef"; for attention its template, function and -D list), so an image built from other source
 * never matches. Keys do not name an architecture: (key, arch) is one image.
 *
 * Which images an executor uses is decided once per device (qd_cuda_kernel_choose): the plan's cubins for the
 * device's exact architecture; else the plan's PTX (the lowest target's, JIT-compiled by the driver) on a newer
 * GPU; else NVRTC at startup; else nothing, with a message naming the plan's targets and the device's.
 *
 * Ownership: everything here is caller-owned values; a list owns its array (from its allocator) until deinit. */
#ifndef QD_RUNTIME_CUDA_KERNEL_VARIANTS_H
#define QD_RUNTIME_CUDA_KERNEL_VARIANTS_H

#include <stdbool.h>

#include "ir/graph.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/lowering.h"
#include "runtime/cuda/tuning.h"
#include "runtime/plan_content.h"
#include "runtime/plan_kernels.h"

enum { QD_CUDA_KERNEL_KEY_MAX = 256 };

/* What kernels are built for: a compute capability, and whether as a cubin for exactly it (architecture-specific
 * code allowed: the wgmma attention kernel on sm_90a) or as PTX that newer GPUs JIT (no such code). */
typedef struct qd_cuda_kernel_target {
  int cc;   /* 80, 86, 89, 90, ... */
  bool ptx;
} qd_cuda_kernel_target_t;

typedef struct qd_cuda_kernel {
  char key[QD_CUDA_KERNEL_KEY_MAX];
  char arch[16];               /* the image's architecture: "sm_86", "sm_90a", "compute_80" */
  const char* function;        /* extern "C" name (a static string) */
  const char* function2;       /* a second kernel its launcher needs from the same image (group norm's apply), or
                                  NULL */
  size_t shared_bytes;         /* dynamic shared memory per launch when above the default 48 KiB (raised once
                                  at load), else 0 */
  bool attention;
  qd_kernel_config_t config;   /* templates: every parameter's value (the launchers read it) */
  qd_attention_variant_t attn; /* attention: the variant (its launcher reads it) */
} qd_cuda_kernel_t;

/* The kernel node `node` of a lowered graph launches for `target`, if any: *out_has is false for nodes that run
 * as cuBLASLt GEMMs with bf16 weights, device copies and members of a fused group (their group's last node
 * launches). `weights` are the component's (formats decide NF4 dequantization), indexed like the graph's.
 * Errors: UNSUPPORTED for an op the executor does not lower; the attention variant's (INVALID_ARGUMENT naming the
 * head dim the kernels lack, ...); a template's (KERNEL_DEFINE_INVALID: a bug here); INTERNAL for a key longer
 * than QD_CUDA_KERNEL_KEY_MAX. */
qd_status_t qd_cuda_node_kernel(const qd_graph_t* graph, const qd_cuda_lowering_t* lowering,
                                const qd_plan_weight_t* weights, qd_cuda_kernel_target_t target, int32_t node,
                                qd_cuda_kernel_t* out_kernel, bool* out_has);
/* The same with autotuning records (runtime/cuda/tuning.h; NULL: none): when they hold the node's site (the
 * default variant's key and qd_cuda_kernel_site_shape) and were tuned for the target's architecture, the tuned
 * defines replace the defaults. Attention kernels are never tuned this way. A record whose defines the template
 * rejects is an error (KERNEL_DEFINE_INVALID, naming the record). */
qd_status_t qd_cuda_node_kernel_tuned(const qd_graph_t* graph, const qd_cuda_lowering_t* lowering,
                                      const qd_plan_weight_t* weights, qd_cuda_kernel_target_t target,
                                      const qd_tuning_t* tuning, int32_t node, qd_cuda_kernel_t* out_kernel,
                                      bool* out_has);
/* A node's shape signature for tuning: its output's dims, then '<' and each input's dims ("1x4608x3072<1x4608x3072,
 * 1x3072"), into buf (always terminated; cut short past `size`). */
void qd_cuda_kernel_site_shape(const qd_graph_t* graph, int32_t node, char* buf, size_t size);
/* Re-derives the key (and nothing else) of a template kernel after its configuration changed. Errors: INTERNAL
 * (a key too long). */
qd_status_t qd_cuda_kernel_rekey(qd_cuda_kernel_t* kernel);

/* Compiles a kernel with NVRTC for `nvrtc_arch` ("sm_86", "sm_90a"; NULL: the kernel's own architecture, with
 * "compute_80" meaning PTX of sm_80); outputs: QD_NVRTC_OUTPUT_* (0: a cubin). On success *out is filled (its
 * buffers from the allocator; release with qd_nvrtc_output_deinit) and holds the function. Errors: qd_kernel_compile
 * and qd_nvrtc_compile's, annotated with the key. */
qd_status_t qd_cuda_kernel_compile(qd_allocator_t allocator, const qd_cuda_kernel_t* kernel, const char* nvrtc_arch,
                                   unsigned outputs, qd_nvrtc_output_t* out);

/* Distinct kernels (by key) for one target. */
typedef struct qd_cuda_kernel_list {
  qd_allocator_t allocator;
  qd_cuda_kernel_target_t target;
  const qd_tuning_t* tuning; /* borrowed, NULL by default: qd_cuda_node_kernel_tuned's records */
  qd_cuda_kernel_t* items;
  int32_t count, capacity;
  int32_t unsupported;       /* nodes whose kernel cannot be built (their executor would fail) */
  char first_unsupported[512]; /* the first one's node and reason */
} qd_cuda_kernel_list_t;

void qd_cuda_kernel_list_init(qd_cuda_kernel_list_t* list, qd_cuda_kernel_target_t target, qd_allocator_t allocator);
void qd_cuda_kernel_list_deinit(qd_cuda_kernel_list_t* list);
/* Appends one kernel (no check for its key being listed). Errors: OUT_OF_MEMORY. */
qd_status_t qd_cuda_kernel_list_push(qd_cuda_kernel_list_t* list, const qd_cuda_kernel_t* kernel);
/* Adds every node's kernel (qd_cuda_node_kernel) not listed yet. A node whose kernel cannot be built is counted in
 * `unsupported`, not an error: a plan can be compiled for the CPU too. Errors: OUT_OF_MEMORY. */
qd_status_t qd_cuda_kernel_list_add(qd_cuda_kernel_list_t* list, const qd_graph_t* graph,
                                    const qd_cuda_lowering_t* lowering, const qd_plan_weight_t* weights);
/* The same for both lowerings an executor may make (with and without the GELU epilogue): every kernel any
 * executor of this program could launch. Errors: OUT_OF_MEMORY, the lowering's. */
qd_status_t qd_cuda_kernel_list_add_program(qd_cuda_kernel_list_t* list, const qd_graph_t* graph,
                                            const qd_plan_weight_t* weights);
/* The listed kernel with this key, or NULL. */
const qd_cuda_kernel_t* qd_cuda_kernel_list_find(const qd_cuda_kernel_list_t* list, const char* key);

/* Where an executor's kernels come from on one device. */
typedef enum qd_cuda_kernel_source {
  QD_CUDA_KERNELS_NONE = 0, /* nowhere: `why` says why and what to do */
  QD_CUDA_KERNELS_CUBIN,    /* the plan's cubins for the device's architecture */
  QD_CUDA_KERNELS_PTX,      /* the plan's PTX, JIT-compiled by the driver */
  QD_CUDA_KERNELS_NVRTC,    /* compiled with NVRTC when the executor is created */
} qd_cuda_kernel_source_t;

typedef struct qd_cuda_kernel_choice {
  qd_cuda_kernel_source_t source;
  qd_cuda_kernel_target_t target; /* what to list (and find in the plan) for this source */
  char why[768];                  /* one sentence for logs and qdrun --check */
} qd_cuda_kernel_choice_t;

/* Decides, in this order: cubins for exactly device_cc when the plan has them and the driver (cuDriverGetVersion)
 * is new enough for them; the plan's PTX when it is for device_cc or older and the driver can JIT it; NVRTC when
 * `nvrtc_missing` is NULL (otherwise it says why NVRTC is not there); else NONE. Devices older than sm_80 get NONE. */
void qd_cuda_kernel_choose(const qd_plan_kernel_targets_t* targets, int device_cc, int driver_version,
                           const char* nvrtc_missing, qd_cuda_kernel_choice_t* out_choice);
const char* qd_cuda_kernel_source_name(qd_cuda_kernel_source_t source); /* "cubin", "ptx", "nvrtc", "none" */

#endif
