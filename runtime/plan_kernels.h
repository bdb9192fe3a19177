/* The GPU kernels a plan carries (docs/plan-format.md, "Contents": KERN): written by compiler/kernels.c, read and
 * validated here for runtime/plan.c, qdc inspect and qdrun --check.
 *
 * META "kernels" says what the plan was built for:
 *   {"targets": ["sm_80", "sm_90"], "ptx": "compute_80", "nvrtc": "13.0", "cubin_min_driver": 13000,
 *    "ptx_min_driver": 13000}
 * and each component has one KERN section of its name: a fixed binary index, a string pool and the images.
 * All integers little-endian; offsets from the start of the section.
 *
 *   header, 32 bytes   u32 version (1), u32 entry_count, u32 entry_size (48), u32 strings_size, u64 reserved[2] (0)
 *   entries            entry_count x 48 bytes, from byte 32:
 *                        u32 key        offset in the string pool of the variant key (NUL-terminated)
 *                        u32 function   offset in the string pool of the kernel's extern "C" name
 *                        char arch[16]  "sm_80" .. "sm_90", "sm_90a" (a cubin), "compute_80" .. (PTX); NUL-padded
 *                        u64 offset     of the image; a multiple of 64, at or after the string pool's end
 *                        u64 size       of the image, > 0; PTX includes its terminating NUL
 *                        u64 reserved   0
 *   string pool        strings_size bytes of NUL-terminated printable ASCII strings
 *   images             each at a multiple of 64; the bytes between them are zero; the section ends with the last
 *
 * A variant key names the code completely: the template, the function, every define and the digest of the
 * template's text ("elementwise.cu:qd_ew_unary EW_OP=1 EW_VEC=8 ... src=<hex>"; runtime/cuda/kernel_variants.h makes
 * them), so (key, arch) identifies one image. Entries are written sorted by (key, arch) so plans are reproducible; the reader does not
 * rely on the order.
 *
 * Ownership: parsed images point into the section (the plan's mapping) and live as long as the plan; the array of
 * them belongs to the allocator given to qd_plan_kernels_parse and is released with qd_plan_kernels_free. */
#ifndef QD_RUNTIME_PLAN_KERNELS_H
#define QD_RUNTIME_PLAN_KERNELS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

enum {
  QD_KERN_VERSION = 1,
  QD_KERN_HEADER_SIZE = 32,
  QD_KERN_ENTRY_SIZE = 48,
  QD_KERN_ARCH_SIZE = 16,
  QD_KERN_IMAGE_ALIGN = 64,        /* cubins are ELF images with 8-byte fields; 64 keeps every image cache-aligned */
  QD_KERN_MAX_ENTRIES = 65536,     /* bounds what a hostile index can make the reader allocate */
  QD_KERN_MAX_STRINGS = 1 << 20,
  QD_KERN_MAX_TARGETS = 4,
};

/* The architectures qd builds kernels for, as compute capabilities (sm_80, sm_86, sm_89, sm_90), ascending. */
extern const int qd_kernel_known_targets[QD_KERN_MAX_TARGETS];

/* The compute capability of a --target text ("sm_86" or "86") this qd builds for; 0 for anything else. */
int qd_kernel_target_parse(const char* text);

/* Whether `arch` is an image architecture this qd knows: "sm_<cc>" for a known target, "sm_90a" (the Hopper
 * attention kernel) or "compute_<cc>" (PTX). *out_cc receives the compute capability and *out_ptx whether it is
 * PTX (either may be NULL). */
bool qd_kernel_arch_parse(const char* arch, int* out_cc, bool* out_ptx);

typedef struct qd_plan_kernel_targets {
  bool present;                          /* META has "kernels" */
  int32_t count;
  int cc[QD_KERN_MAX_TARGETS];           /* cubin targets, ascending */
  int ptx_cc;                            /* PTX for compute_<ptx_cc>; 0: none */
  int nvrtc_major, nvrtc_minor;          /* the NVRTC that built the images */
  int cubin_min_driver, ptx_min_driver;  /* the oldest cuDriverGetVersion that loads them (13000 is CUDA 13.0) */
} qd_plan_kernel_targets_t;

/* "sm_80, sm_90" (or "none") into buf; returns buf. */
const char* qd_plan_kernel_targets_format(const qd_plan_kernel_targets_t* targets, char* buf, size_t size);
/* Whether the targets include a cubin for compute capability cc. */
bool qd_plan_kernel_targets_has(const qd_plan_kernel_targets_t* targets, int cc);

typedef struct qd_plan_kernel_image {
  const char* key;                 /* the variant key, in the section's string pool */
  const char* function;            /* the kernel's name, in the pool */
  char arch[QD_KERN_ARCH_SIZE];    /* "sm_90", "sm_90a", "compute_80" */
  int cc;
  bool ptx;
  const uint8_t* data;             /* size bytes in the section; PTX ends with its NUL */
  uint64_t size;
} qd_plan_kernel_image_t;

/* Reads META's "kernels" object; *out zeroed (present = false) when META has none. `plan` names the file in
 * messages. Errors: PLAN_CONTENT_FIELD (a field missing or malformed), PLAN_KERNEL_ARCH (a target qd does not
 * know). */
qd_status_t qd_plan_kernels_parse_meta(const char* plan, const cJSON* meta, qd_plan_kernel_targets_t* out);

/* Validates one KERN section (`component` names it in messages) and lists its images sorted by (key, arch).
 * With `targets` (may be NULL), every image's architecture must be one they cover. Errors, in the order checked:
 * PLAN_CONTENT_VERSION (a newer index, code UNSUPPORTED); then per entry PLAN_KERNEL_INDEX (header, entry table,
 * string pool, an entry's strings), PLAN_KERNEL_ARCH (an unknown architecture, or one the targets do not cover),
 * PLAN_KERNEL_RANGE (an image outside the section, misaligned or inside the index); PLAN_KERNEL_DUPLICATE (two
 * entries for one (key, arch)); PLAN_KERNEL_RANGE (images overlapping, non-zero bytes between them or after the
 * last); PLAN_KERNEL_IMAGE (a cubin that is not an ELF holding its function, PTX that is not NUL-terminated text
 * declaring it); OUT_OF_MEMORY. */
qd_status_t qd_plan_kernels_parse(const char* plan, const char* component, const void* data, uint64_t size,
                                  const qd_plan_kernel_targets_t* targets, qd_allocator_t allocator,
                                  qd_plan_kernel_image_t** out_images, int32_t* out_count);
void qd_plan_kernels_free(qd_allocator_t allocator, qd_plan_kernel_image_t* images, int32_t count);

/* The image of (key, arch) in a sorted list, or NULL. O(log n). */
const qd_plan_kernel_image_t* qd_plan_kernels_find(const qd_plan_kernel_image_t* images, int32_t count,
                                                   const char* key, const char* arch);

#endif
