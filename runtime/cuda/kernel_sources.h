/* qd runtime: the CUDA C kernel templates, embedded in the library.
 *
 * Every file listed in kernels/templates/meson.build is compiled into the library as a NUL-terminated string by
 * tools/embed_templates.py (the table is generated at build time, see runtime/cuda/meson.build), so qdc compiles
 * kernels with NVRTC without reading anything beside itself. Templates are found by file name, without a
 * directory: "layernorm_modulate.cu". Files named *.cuh are shared headers that templates #include by name
 * (qd_kernel_headers_get in runtime/cuda/kernel_compile.h hands them to NVRTC).
 *
 * Ownership: every pointer returned here is static, read-only and valid for the life of the process.
 */
#ifndef QD_RUNTIME_CUDA_KERNEL_SOURCES_H
#define QD_RUNTIME_CUDA_KERNEL_SOURCES_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_kernel_source {
  const char* name; /* file name, "layernorm_modulate.cu" */
  const char* text; /* the whole file, NUL-terminated */
  size_t size;      /* bytes before the NUL */
} qd_kernel_source_t;

/* The text of the template called `name`, or NULL when no such template is embedded (or name is NULL). */
const char* qd_kernel_source_find(const char* name);
/* The same lookup, returning the table entry (name, text, size), or NULL. */
const qd_kernel_source_t* qd_kernel_source_lookup(const char* name);
/* The embedded templates in name order: index 0 .. count-1; qd_kernel_source_at returns NULL past the end. */
size_t qd_kernel_source_count(void);
const qd_kernel_source_t* qd_kernel_source_at(size_t index);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNEL_SOURCES_H */
