/* qd runtime: NVRTC, the CUDA runtime compiler, loaded at run time, and a helper that compiles one kernel source
 * into a cubin and/or PTX.
 *
 * Loading policy. The first call to qd_nvrtc_load() dlopens, in order, "libnvrtc.so.13", "libnvrtc.so.12",
 * "libnvrtc.so" (the first found wins; the dynamic loader's path and cache decide where), or only the exact
 * path in the environment variable QD_NVRTC_LIBRARY when that is set. Entry points are resolved with dlsym
 * (NVRTC does not version its symbol names). This happens once per process (pthread_once); the library stays
 * loaded. NVRTC needs no GPU and no driver: it compiles for any architecture it supports on any machine, which
 * is how qdc builds plans and how CI checks every kernel template.
 *   - NVRTC cannot be opened       -> QD_CODE_UNAVAILABLE / QD_E_NVRTC_NOT_FOUND, listing what was tried
 *   - an entry point is missing    -> QD_CODE_UNAVAILABLE / QD_E_CUDA_SYMBOL_MISSING
 *   - a failing NVRTC call         -> QD_CODE_DEVICE / QD_E_NVRTC_ERROR (QD_NVRTC_TRY)
 *   - a kernel that does not build -> QD_CODE_DEVICE / QD_E_NVRTC_COMPILE, the compiler's log in the message
 *
 * Headers: NVRTC 13.0 does NOT carry cuda_fp16.h / cuda_bf16.h built in (an #include of them fails with "could
 * not open source file ... (no directories in search list)"), so the loader looks for a toolkit include
 * directory holding cuda_bf16.h and qd_nvrtc_compile() passes it as -I<dir>: the directory in the environment
 * variable QD_CUDA_INCLUDE_DIR when set (taken as given), else ../include next to the NVRTC library that was
 * loaded (headers matching that NVRTC), else the toolkit qd was built with (meson's toolkit_dir). The choice is
 * recorded in qd_nvrtc_t.include_dir (NULL when none was found: kernels then build only if they need no
 * toolkit header). Kernel templates should prefer NVRTC's own builtins and include nothing else.
 *
 * Ownership: the table is process-wide and read-only. qd_nvrtc_compile() fills a caller-owned
 * qd_nvrtc_output_t whose buffers belong to the allocator passed in; release them with
 * qd_nvrtc_output_deinit().
 */
#ifndef QD_RUNTIME_CUDA_NVRTC_H
#define QD_RUNTIME_CUDA_NVRTC_H

#include <nvrtc.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QD_NVRTC_SYMBOLS(X)     \
  X(nvrtcGetErrorString)        \
  X(nvrtcVersion)               \
  X(nvrtcGetNumSupportedArchs)  \
  X(nvrtcGetSupportedArchs)     \
  X(nvrtcCreateProgram)         \
  X(nvrtcDestroyProgram)        \
  X(nvrtcCompileProgram)        \
  X(nvrtcGetPTXSize)            \
  X(nvrtcGetPTX)                \
  X(nvrtcGetCUBINSize)          \
  X(nvrtcGetCUBIN)              \
  X(nvrtcGetProgramLogSize)     \
  X(nvrtcGetProgramLog)         \
  X(nvrtcAddNameExpression)     \
  X(nvrtcGetLoweredName)

typedef struct qd_nvrtc {
  const char* library;  /* the name or path that was opened */
  int version_major;    /* nvrtcVersion */
  int version_minor;
  const char* include_dir; /* passed as -I to every compile; NULL when no toolkit headers were found */
#define QD_NVRTC_FIELD_(name) __typeof__(&name) name;
  QD_NVRTC_SYMBOLS(QD_NVRTC_FIELD_)
#undef QD_NVRTC_FIELD_
} qd_nvrtc_t;

/* Loads NVRTC once per process; *out_nvrtc is NULL first and set only on success. Later calls return the
 * same table or a copy of the same error (the caller owns it). */
qd_status_t qd_nvrtc_load(const qd_nvrtc_t** out_nvrtc);

/* QD_OK for NVRTC_SUCCESS, else QD_E_NVRTC_ERROR "nvrtcFoo failed: NVRTC_ERROR_X" (`call` is the call's text; the
 * function name is taken from it). */
qd_status_t qd_nvrtc_result_status(nvrtcResult result, const char* call, const char* file, int line);

static inline qd_status_t qd_nvrtc_result_check_(nvrtcResult result, const char* call, const char* file, int line) {
  return result == NVRTC_SUCCESS ? QD_OK : qd_nvrtc_result_status(result, call, file, line);
}
#define QD_NVRTC_STATUS(call) qd_nvrtc_result_check_((call), #call, __FILE__, __LINE__)
#define QD_NVRTC_TRY(call) QD_TRY(qd_nvrtc_result_check_((call), #call, __FILE__, __LINE__))

/* What qd_nvrtc_compile() produces. */
enum {
  QD_NVRTC_OUTPUT_CUBIN = 1u << 0, /* machine code (ELF) for exactly the target architecture */
  QD_NVRTC_OUTPUT_PTX = 1u << 1,   /* PTX for the target's virtual architecture, for JIT on newer GPUs */
};

typedef struct qd_nvrtc_compile_options {
  const char* source;          /* NUL-terminated CUDA C++ */
  const char* name;            /* the program's name in diagnostics ("rmsnorm.cu"); NULL gives "kernel.cu" */
  const char* arch;            /* target: "90", "sm_90", "sm_90a", "100f", ... (see qd_nvrtc_arch_parse) */
  unsigned outputs;            /* QD_NVRTC_OUTPUT_* bits; 0 means cubin only */
  const char* const* options;  /* further NVRTC options ("-DTILE=128", "--use_fast_math"); may be NULL */
  size_t option_count;
  /* Headers the source may #include "by name", with their text (nvrtcCreateProgram's headers); may be NULL. */
  const char* const* header_names;
  const char* const* headers;
  size_t header_count;
} qd_nvrtc_compile_options_t;

typedef struct qd_nvrtc_output {
  qd_allocator_t allocator;  /* owns the three buffers */
  char arch[16];             /* the normalized target, "sm_90a" */
  uint8_t* cubin;            /* NULL unless asked for */
  size_t cubin_size;
  char* ptx;                 /* NUL-terminated; NULL unless asked for */
  size_t ptx_size;           /* bytes before the NUL */
  char* log;                 /* NUL-terminated warnings of a successful build; NULL when the log was empty */
  size_t log_size;
} qd_nvrtc_output_t;

/* Normalizes a target architecture: "90" / "sm_90" -> "sm_90", "90a" / "sm_90a" -> "sm_90a"; the suffix may be
 * 'a' (architecture-specific features, e.g. wgmma on sm_90a) or 'f' (family). *out_number receives 90.
 * Errors: QD_E_INVALID_ARGUMENT for anything else. */
qd_status_t qd_nvrtc_arch_parse(const char* arch, char* buf, size_t size, int* out_number);

/* Compiles options->source for options->arch. Options qd always passes: --gpu-architecture (sm_XX for a cubin,
 * compute_XX when only PTX is wanted), -std=c++17 and -I<include_dir> when one was found; the caller's options
 * follow. On success *out_output is
 * filled (its buffers from `allocator`); on failure it is zeroed and nothing is allocated.
 * Errors: NVRTC_NOT_FOUND / CUDA_SYMBOL_MISSING (loading), INVALID_ARGUMENT (arch or options struct),
 * NVRTC_ARCH_UNSUPPORTED (this NVRTC cannot target the architecture; the message lists what it can),
 * NVRTC_COMPILE (the message holds the program name, the target and the compiler's log), NVRTC_ERROR,
 * OUT_OF_MEMORY. */
qd_status_t qd_nvrtc_compile(qd_allocator_t allocator, const qd_nvrtc_compile_options_t* options,
                             qd_nvrtc_output_t* out_output);

/* Frees the buffers and zeroes the struct; a zeroed or NULL output is a no-op. */
void qd_nvrtc_output_deinit(qd_nvrtc_output_t* output);

#ifdef __cplusplus
}
#endif
#endif /* QD_RUNTIME_CUDA_NVRTC_H */
