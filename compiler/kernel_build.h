/* qdc compile: the GPU kernels a plan carries, built ahead of time so that qdrun needs no NVRTC.
 *
 * For every component, every resolution and both lowerings an executor may make, runtime/cuda/kernel_variants.h
 * lists the kernels the CUDA executor would launch (the same function the executor loads them with). Each is
 * compiled with NVRTC into a cubin per target architecture (sm_90a for the Hopper attention kernel on sm_90) and
 * into PTX for the lowest target, which newer GPUs JIT. Compiles run in parallel on the compile's thread pool and
 * are held in memory until the plan is written: a KERN section per component (format: runtime/plan_kernels.h) and
 * META "kernels" (targets, PTX architecture, NVRTC version, the drivers the images need).
 *
 * NVRTC needs no GPU. Without --target, the targets are the GPUs present, or all four when there are none; a
 * machine without NVRTC then gets a plan without kernels and a warning (qdrun compiles them if it has NVRTC).
 * With --target, a missing NVRTC is an error. "--target none" builds no kernels.
 *
 * Ownership: qdc_kernels_t owns every image (from its allocator) until qdc_kernels_deinit. */
#ifndef QDC_KERNEL_BUILD_H
#define QDC_KERNEL_BUILD_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compiler/compile.h"
#include "compiler/plan_writer.h"
#include "runtime/plan_kernels.h"

/* Parses --target: "sm_80,sm_90" (or "80,90"; any order, repeats ignored) or "none". Fills ascending compute
 * capabilities. Errors: INVALID_ARGUMENT naming the architecture this qd does not build for. */
qd_status_t qdc_targets_parse(const char* text, int32_t* out_ccs, int32_t* out_count);
/* The default: the architectures of the GPUs present that qd builds for (qd_devices_query), else all four. `note`
 * (may be NULL) receives one line saying which and why. */
void qdc_targets_default(int32_t* out_ccs, int32_t* out_count, char* note, size_t note_size);

/* Sets o->targets from --target `text` (NULL: the default, said in an info log line). False with *error filled
 * when the text names an architecture qd does not build for. */
bool qdc_targets_resolve(const char* text, qdc_compile_options_t* o, char* error, size_t error_size);

typedef struct qdc_kernel_image {
  const char* key;      /* owned by the build */
  const char* function; /* static */
  char arch[QD_KERN_ARCH_SIZE];
  const uint8_t* data;  /* owned by the build; PTX ends with its NUL */
  uint64_t size;
} qdc_kernel_image_t;

typedef struct qdc_component_kernels {
  qdc_kernel_image_t* images; /* sorted by (key, arch) */
  int32_t count;
  int32_t variants;           /* distinct keys */
  int32_t unsupported;        /* nodes with no GPU kernel (the component then runs on the CPU only) */
} qdc_component_kernels_t;

typedef struct qdc_kernels {
  qd_allocator_t allocator;
  bool enabled;                        /* false: no KERN sections, no META "kernels" */
  qd_plan_kernel_targets_t targets;
  qdc_component_kernels_t components[QDC_MAX_COMPONENTS];
  int32_t component_count;
  void* jobs_;                         /* the compiled images, shared between components */
  int32_t job_count_;
  double seconds;
} qdc_kernels_t;

/* Lists and compiles every component's kernels for o->targets (none: *out disabled). Errors: NVRTC_NOT_FOUND (with
 * --target), NVRTC_COMPILE and the others of qd_cuda_kernel_compile (annotated with the variant), CANCELLED,
 * OUT_OF_MEMORY. On failure *out holds nothing. */
qd_status_t qdc_kernels_build(const qdc_compile_options_t* o, qdc_component_t* const* components, int32_t count,
                              void* pool, qd_allocator_t allocator, qdc_kernels_t* out);
/* Writes component `index`'s KERN section (named `name`); nothing when the build is disabled. */
qd_status_t qdc_kernels_write(const qdc_kernels_t* k, int32_t index, const char* name, qd_plan_writer_t* w);
/* Writes a KERN section named `name` holding c's images (sorted by (key, arch), as qdc_kernel_image_cmp orders
 * them). */
qd_status_t qdc_kern_section_write(qd_allocator_t allocator, const qdc_component_kernels_t* c, const char* name,
                                   qd_plan_writer_t* w);
/* qsort order of kernel images: by key, then architecture. */
int qdc_kernel_image_cmp(const void* a, const void* b);
/* Adds "kernels" to META when the build is enabled; false when cJSON runs out of memory. */
bool qdc_kernels_add_meta(const qdc_kernels_t* k, cJSON* meta);
void qdc_kernels_deinit(qdc_kernels_t* k);

#endif
