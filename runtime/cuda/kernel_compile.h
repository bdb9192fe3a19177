/* qd runtime: kernel variants (template + function + defines), their documented parameters, and compiling them
 * with NVRTC into a cubin and/or PTX for one target architecture.
 *
 * A kernel template (kernels/templates/<name>.cu, embedded: runtime/cuda/kernel_sources.h) is CUDA C with
 * extern "C" __global__ kernels, parameterized by preprocessor defines that each have a default. Its header
 * comment documents them in lines that this module reads:
 *
 *     qd:param <kind> <NAME> = <default> {<value> <value> ...}  free text
 *
 * kind is `select` (chooses what the kernel computes: an autotuner must not vary it), `tunable` (changes only
 * speed: an autotuner may try every listed value) or `shape` (a compile-time size such as the head dimension;
 * the list holds the tested values, others may compile). Only a line that starts with the tag (after the
 * comment's " * ") counts, so prose may mention it. A variant that sets a define its template does not
 * document, or a select/tunable value outside its list, is rejected before NVRTC runs (so a typo cannot compile
 * the default silently). Templates that document no qd:param line accept any define.
 *
 * A configuration (qd_kernel_config_t) is the complete set of a template's parameters with values: defaults
 * first, then what the caller sets. It turns into a variant with every define explicit, and the launchers
 * (runtime/cuda/kernels.h) read the same values to size their grids, so compile and launch cannot disagree.
 *
 * Ownership: qd_kernel_params_t and qd_kernel_config_t are caller-owned values with no heap memory; a variant
 * made from a configuration points into it and is valid while it is. qd_kernel_compile() fills a caller-owned
 * qd_kernel_binary_t whose buffers belong to the allocator passed in; release with qd_kernel_binary_deinit().
 * Compiling needs NVRTC (runtime/cuda_nvrtc.h) but no GPU and no driver.
 */
#ifndef QD_RUNTIME_CUDA_KERNEL_COMPILE_H
#define QD_RUNTIME_CUDA_KERNEL_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"
#include "runtime/cuda_nvrtc.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
  QD_KERNEL_MAX_DEFINES = 32,  /* defines in one variant */
  QD_KERNEL_MAX_PARAMS = 16,   /* qd:param lines in one template */
  QD_KERNEL_MAX_VALUES = 16,   /* values listed for one parameter */
  QD_KERNEL_NAME_MAX = 64,     /* bytes of a define or function name, NUL included */
};

/* One -D define: NAME=value. */
typedef struct qd_kernel_define {
  const char* name;
  int value;
} qd_kernel_define_t;

/* What to compile: a template, the kernel function to look for in the result, and the defines. */
typedef struct qd_kernel_variant {
  const char* template_name; /* embedded file name, "layernorm_modulate.cu" */
  const char* function;      /* extern "C" kernel name, "qd_layernorm_modulate" */
  const qd_kernel_define_t* defines;
  size_t define_count;       /* at most QD_KERNEL_MAX_DEFINES */
} qd_kernel_variant_t;

typedef enum qd_kernel_param_kind {
  QD_KERNEL_PARAM_SELECT,
  QD_KERNEL_PARAM_TUNABLE,
  QD_KERNEL_PARAM_SHAPE,
} qd_kernel_param_kind_t;

typedef struct qd_kernel_param {
  char name[QD_KERNEL_NAME_MAX];
  qd_kernel_param_kind_t kind;
  int default_value;
  int values[QD_KERNEL_MAX_VALUES];
  size_t value_count;
} qd_kernel_param_t;

typedef struct qd_kernel_params {
  size_t count;
  qd_kernel_param_t items[QD_KERNEL_MAX_PARAMS];
} qd_kernel_params_t;

/* Reads the qd:param lines of the embedded template's leading comment into *out_params (zeroed first).
 * Errors: KERNEL_TEMPLATE_UNKNOWN; INTERNAL for a malformed qd:param line (a bug in the template, caught by
 * tests/test_kernel_templates.c). */
qd_status_t qd_kernel_template_params(const char* template_name, qd_kernel_params_t* out_params);
/* The parameter called `name`, or NULL. */
const qd_kernel_param_t* qd_kernel_params_find(const qd_kernel_params_t* params, const char* name);

/* Every parameter of one template with its value. */
typedef struct qd_kernel_config {
  const char* template_name; /* the embedded table's name (static) */
  qd_kernel_params_t params;
  int values[QD_KERNEL_MAX_PARAMS];  /* values[i] belongs to params.items[i] */
  qd_kernel_define_t defines_[QD_KERNEL_MAX_PARAMS]; /* storage for qd_kernel_config_variant */
} qd_kernel_config_t;

/* The template's parameters at their defaults. Errors: as qd_kernel_template_params. */
qd_status_t qd_kernel_config_init(const char* template_name, qd_kernel_config_t* out_config);
/* Sets one parameter. Errors: KERNEL_DEFINE_INVALID when the template has no such parameter or (select and
 * tunable) does not list the value. */
qd_status_t qd_kernel_config_set(qd_kernel_config_t* config, const char* name, int value);
/* The value of one parameter; KERNEL_DEFINE_INVALID when there is no such parameter. */
qd_status_t qd_kernel_config_get(const qd_kernel_config_t* config, const char* name, int* out_value);
/* A variant that compiles `function` with every parameter of the configuration as an explicit define. The
 * variant points into *config. */
void qd_kernel_config_variant(qd_kernel_config_t* config, const char* function, qd_kernel_variant_t* out_variant);

/* "layernorm_modulate.cu:qd_layernorm_modulate LN_THREADS=128 LN_VEC=8" into buf (always NUL-terminated);
 * returns the length it wanted. */
size_t qd_kernel_variant_format(const qd_kernel_variant_t* variant, char* buf, size_t size);

/* Per-thread and per-block resources of the compiled function, as ptxas reports them (NVRTC's log with
 * --ptxas-options=-v). Known only for cubin builds; with a GPU, qd_kernel_module_get_function asks the driver. */
typedef struct qd_kernel_resources {
  bool known;
  int registers;    /* per thread */
  int shared_bytes; /* static __shared__ per block */
  int stack_bytes;  /* stack frame (local memory) per thread */
  int spill_bytes;  /* spill stores + spill loads per thread; non-zero is a warning sign */
} qd_kernel_resources_t;

typedef struct qd_kernel_binary {
  qd_nvrtc_output_t image;         /* arch, cubin and/or ptx; log = the compiler's warnings (ptxas' report removed) */
  double compile_ms;               /* wall time of the NVRTC compile */
  qd_kernel_resources_t resources; /* of variant->function */
} qd_kernel_binary_t;

/* Compiles a variant for `arch` ("sm_90", "90a", ... as qd_nvrtc_arch_parse takes it); outputs is a mask of
 * QD_NVRTC_OUTPUT_* (0: cubin only). Checks the variant first (template known, function and define names are C
 * identifiers, no define twice, defines documented by the template), then that the result holds the function.
 * On failure *out_binary is zeroed and nothing is allocated.
 * Errors: KERNEL_TEMPLATE_UNKNOWN; KERNEL_DEFINE_INVALID (a define name that is not an identifier, a define
 * given twice, undocumented, or with a value its list lacks); INVALID_ARGUMENT (no variant, a function name that
 * is not an identifier, too many defines); KERNEL_FUNCTION_MISSING; and qd_nvrtc_compile's (NVRTC_NOT_FOUND,
 * NVRTC_ARCH_UNSUPPORTED, NVRTC_COMPILE with the compiler's log, ...), annotated with the variant. */
qd_status_t qd_kernel_compile(qd_allocator_t allocator, const qd_kernel_variant_t* variant, const char* arch,
                              unsigned outputs, qd_kernel_binary_t* out_binary);

/* Frees the buffers and zeroes the struct; a zeroed or NULL binary is a no-op. */
void qd_kernel_binary_deinit(qd_kernel_binary_t* binary);

/* The shared headers templates #include by name (kernels/templates/qd_bf16.cuh): every embedded file whose name
 * ends in ".cuh". Every compile is handed all of them. */
enum { QD_KERNEL_MAX_HEADERS = 8 };
typedef struct qd_kernel_headers {
  size_t count;
  const char* names[QD_KERNEL_MAX_HEADERS];
  const char* texts[QD_KERNEL_MAX_HEADERS];
} qd_kernel_headers_t;
void qd_kernel_headers_get(qd_kernel_headers_t* out_headers);

/* XXH64 of a template's text followed by every shared header's: what an image compiled from it depends on (the
 * "src=" of a variant key, runtime/cuda/kernel_variants.c). */
uint64_t qd_kernel_source_digest(const char* template_text, size_t size);

/* Reads the report ptxas -v left in an NVRTC log for `function`; false when the log has none for it. */
bool qd_kernel_resources_from_log(const char* log, const char* function, qd_kernel_resources_t* out_resources);

/* True when a cubin (an ELF image) defines a kernel named `function` (a ".text.<function>" section). The image
 * is read with every offset bounds-checked; a malformed one gives false. */
bool qd_cubin_has_function(const uint8_t* cubin, size_t size, const char* function);

/* True when PTX text (size bytes, NUL-terminated within them) declares an entry `function` (".entry <name>(").
 * Text without a NUL in its size gives false. */
bool qd_ptx_has_function(const char* ptx, size_t size, const char* function);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_KERNEL_COMPILE_H */
