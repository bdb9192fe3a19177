/* NVRTC loaded at run time and the one-kernel compile helper: see runtime/cuda_nvrtc.h. */
#include "runtime/cuda_nvrtc.h"

#include <ctype.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/cuda_config.h"
#include "runtime/cuda_library.h"

static const char* const qd_nvrtc_names_[] = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};

static const qd_cuda_library_symbol_t qd_nvrtc_symbols_[] = {
#define QD_NVRTC_ROW_(name) {#name, offsetof(qd_nvrtc_t, name)},
    QD_NVRTC_SYMBOLS(QD_NVRTC_ROW_)
#undef QD_NVRTC_ROW_
};

static pthread_once_t qd_nvrtc_once_ = PTHREAD_ONCE_INIT;
static qd_nvrtc_t qd_nvrtc_;
static qd_status_t qd_nvrtc_load_status_; /* the first load's error, kept for the process */
static char qd_nvrtc_env_name_[4096];
static char qd_nvrtc_include_dir_[4096];
static char qd_nvrtc_include_option_[4100];

/* True when dir holds cuda_bf16.h, the header kernels are most likely to want. */
static bool qd_nvrtc_has_headers_(const char* dir) {
  char path[4200];
  int n = snprintf(path, sizeof path, "%s/cuda_bf16.h", dir);
  return n > 0 && (size_t)n < sizeof path && access(path, R_OK) == 0;
}

/* See "Headers" in cuda_nvrtc.h for the order. */
static const char* qd_nvrtc_find_include_dir_(void* nvrtc_symbol) {
  const char* env = getenv("QD_CUDA_INCLUDE_DIR");
  if (env && *env) {
    snprintf(qd_nvrtc_include_dir_, sizeof qd_nvrtc_include_dir_, "%s", env);
    return qd_nvrtc_include_dir_;
  }
  Dl_info info;
  char lib[PATH_MAX];
  if (dladdr(nvrtc_symbol, &info) && info.dli_fname && realpath(info.dli_fname, lib)) {
    char* slash = strrchr(lib, '/');
    if (slash) {
      char candidate[PATH_MAX + 16];
      *slash = '\0';
      snprintf(candidate, sizeof candidate, "%s/../include", lib);
      char resolved[PATH_MAX];
      if (realpath(candidate, resolved) && qd_nvrtc_has_headers_(resolved)) {
        snprintf(qd_nvrtc_include_dir_, sizeof qd_nvrtc_include_dir_, "%s", resolved);
        return qd_nvrtc_include_dir_;
      }
    }
  }
  if (qd_nvrtc_has_headers_(QD_CUDA_TOOLKIT_INCLUDE_DIR)) {
    snprintf(qd_nvrtc_include_dir_, sizeof qd_nvrtc_include_dir_, "%s", QD_CUDA_TOOLKIT_INCLUDE_DIR);
    return qd_nvrtc_include_dir_;
  }
  return NULL;
}

static qd_status_t qd_nvrtc_load_(void) {
  void* handle;
  const char* name;
  QD_TRY(qd_cuda_library_open("NVRTC", "QD_NVRTC_LIBRARY", qd_nvrtc_names_,
                              sizeof qd_nvrtc_names_ / sizeof qd_nvrtc_names_[0], QD_CODE_UNAVAILABLE,
                              QD_E_NVRTC_NOT_FOUND, qd_nvrtc_env_name_, sizeof qd_nvrtc_env_name_, &handle, &name));
  qd_nvrtc_t t = {.library = name};
  /* A library that loads but lacks entry points is left mapped: unloading a half-used NVRTC buys nothing. */
  QD_TRY(qd_cuda_library_resolve(handle, name, qd_nvrtc_symbols_,
                                 sizeof qd_nvrtc_symbols_ / sizeof qd_nvrtc_symbols_[0], &t));
  if (t.nvrtcVersion(&t.version_major, &t.version_minor) != NVRTC_SUCCESS) {
    t.version_major = 0;
    t.version_minor = 0;
  }
  void* any_symbol;
  memcpy(&any_symbol, &t.nvrtcVersion, sizeof any_symbol);
  t.include_dir = qd_nvrtc_find_include_dir_(any_symbol);
  if (t.include_dir)
    snprintf(qd_nvrtc_include_option_, sizeof qd_nvrtc_include_option_, "-I%s", t.include_dir);
  qd_nvrtc_ = t;
  return QD_OK;
}

static void qd_nvrtc_load_once_(void) { qd_nvrtc_load_status_ = qd_nvrtc_load_(); }

qd_status_t qd_nvrtc_load(const qd_nvrtc_t** out_nvrtc) {
  *out_nvrtc = NULL;
  pthread_once(&qd_nvrtc_once_, qd_nvrtc_load_once_);
  qd_status_t s = qd_nvrtc_load_status_;
  if (s)
    return qd_status_make(qd_status_code(s), qd_status_detail(s), qd_status_file(s), qd_status_line(s), "%s",
                          qd_status_message(s));
  *out_nvrtc = &qd_nvrtc_;
  return QD_OK;
}

qd_status_t qd_nvrtc_result_status(nvrtcResult result, const char* call, const char* file, int line) {
  if (result == NVRTC_SUCCESS) return QD_OK;
  char fn[128];
  qd_cuda_call_name(call, fn, sizeof fn);
  /* nvrtcGetErrorString is usable only once loaded; a caller that has a result has loaded NVRTC. */
  const char* name = qd_nvrtc_.nvrtcGetErrorString ? qd_nvrtc_.nvrtcGetErrorString(result) : NULL;
  if (result == NVRTC_ERROR_OUT_OF_MEMORY)
    return qd_status_make(QD_CODE_OUT_OF_MEMORY, QD_E_OUT_OF_MEMORY, file, line, "%s failed: %s", fn,
                          name ? name : "NVRTC_ERROR_OUT_OF_MEMORY");
  if (name) return qd_status_make(QD_CODE_DEVICE, QD_E_NVRTC_ERROR, file, line, "%s failed: %s", fn, name);
  return qd_status_make(QD_CODE_DEVICE, QD_E_NVRTC_ERROR, file, line, "%s failed: nvrtcResult %d", fn, (int)result);
}

qd_status_t qd_nvrtc_arch_parse(const char* arch, char* buf, size_t size, int* out_number) {
  *out_number = 0;
  const char* p = arch ? arch : "";
  if (strncmp(p, "sm_", 3) == 0) p += 3;
  int number = 0;
  size_t digits = 0;
  while (isdigit((unsigned char)p[digits]) && digits < 4) number = number * 10 + (p[digits++] - '0');
  const char* suffix = p + digits;
  bool suffix_ok = suffix[0] == '\0' || ((suffix[0] == 'a' || suffix[0] == 'f') && suffix[1] == '\0');
  if (digits < 2 || digits > 3 || !suffix_ok || p[0] == '0')
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "target architecture '%s' is not understood; write it as 90, sm_90, sm_90a or sm_100f",
                  arch ? arch : "(null)");
  int n = snprintf(buf, size, "sm_%d%s", number, suffix);
  if (n < 0 || (size_t)n >= size)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "target architecture '%s': buffer of %zu bytes too small",
                  arch, size);
  *out_number = number;
  return QD_OK;
}

/* NVRTC rejects an unknown --gpu-architecture with a bare "invalid option"; checking its list first lets the
 * message say which targets this NVRTC does support. */
static qd_status_t qd_nvrtc_check_arch_(qd_allocator_t a, const qd_nvrtc_t* nv, const char* arch, int number) {
  int count = 0;
  QD_NVRTC_TRY(nv->nvrtcGetNumSupportedArchs(&count));
  if (count <= 0) return QD_OK; /* nothing to check against: let the compile speak */
  int* archs;
  QD_TRY(qd_calloc(a, (size_t)count, sizeof *archs, (void**)&archs));
  qd_status_t s = QD_NVRTC_STATUS(nv->nvrtcGetSupportedArchs(archs));
  bool found = false;
  char list[512] = "";
  size_t used = 0;
  for (int i = 0; !s && i < count; i++) {
    if (archs[i] == number) found = true;
    if (used < sizeof list) {
      int n = snprintf(list + used, sizeof list - used, "%ssm_%d", i ? " " : "", archs[i]);
      if (n > 0) used += (size_t)n;
    }
  }
  qd_free(a, archs, (size_t)count * sizeof *archs);
  if (s) return s;
  if (!found)
    return QD_ERR(UNSUPPORTED, NVRTC_ARCH_UNSUPPORTED, "NVRTC %d.%d (%s) cannot compile for %s; it supports %s",
                  nv->version_major, nv->version_minor, nv->library, arch, list);
  return QD_OK;
}

/* The program log, NUL-terminated and without trailing blank lines; *out_log is NULL when the log is empty. */
static qd_status_t qd_nvrtc_get_log_(qd_allocator_t a, const qd_nvrtc_t* nv, nvrtcProgram prog, char** out_log,
                                     size_t* out_size) {
  *out_log = NULL;
  *out_size = 0;
  size_t size = 0;
  QD_NVRTC_TRY(nv->nvrtcGetProgramLogSize(prog, &size));
  if (size <= 1) return QD_OK; /* the size counts the NUL */
  char* log;
  QD_TRY(qd_malloc(a, size, (void**)&log));
  qd_status_t s = QD_NVRTC_STATUS(nv->nvrtcGetProgramLog(prog, log));
  if (s) {
    qd_free(a, log, size);
    return s;
  }
  log[size - 1] = '\0';
  size_t len = strlen(log);
  while (len > 0 && isspace((unsigned char)log[len - 1])) log[--len] = '\0';
  if (len == 0) {
    qd_free(a, log, size);
    return QD_OK;
  }
  *out_log = log;
  *out_size = size; /* the allocation's size, which qd_free needs back */
  return QD_OK;
}

void qd_nvrtc_output_deinit(qd_nvrtc_output_t* o) {
  if (!o || !o->allocator.vtable) {
    if (o) memset(o, 0, sizeof *o);
    return;
  }
  qd_free(o->allocator, o->cubin, o->cubin_size);
  qd_free(o->allocator, o->ptx, o->ptx ? o->ptx_size + 1 : 0);
  qd_free(o->allocator, o->log, o->log_size);
  memset(o, 0, sizeof *o);
}

qd_status_t qd_nvrtc_compile(qd_allocator_t a, const qd_nvrtc_compile_options_t* opt, qd_nvrtc_output_t* out) {
  memset(out, 0, sizeof *out);
  if (!opt || !opt->source)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_nvrtc_compile: no source to compile");
  if (opt->option_count > 0 && !opt->options)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_nvrtc_compile: %zu options given as NULL",
                  opt->option_count);
  if (opt->header_count > 0 && (!opt->headers || !opt->header_names))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_nvrtc_compile: %zu headers given as NULL",
                  opt->header_count);
  if (opt->header_count > 64)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_nvrtc_compile: %zu headers is more than 64",
                  opt->header_count);
  if (opt->option_count > 1024)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_nvrtc_compile: %zu options is more than 1024",
                  opt->option_count);
  const char* name = opt->name ? opt->name : "kernel.cu";
  unsigned outputs = opt->outputs ? opt->outputs : QD_NVRTC_OUTPUT_CUBIN;
  qd_nvrtc_output_t o = {.allocator = a};
  int number;
  QD_TRY(qd_nvrtc_arch_parse(opt->arch, o.arch, sizeof o.arch, &number));

  const qd_nvrtc_t* nv;
  QD_TRY(qd_nvrtc_load(&nv));
  QD_TRY(qd_nvrtc_check_arch_(a, nv, o.arch, number));

  /* A cubin needs the real architecture; PTX alone compiles for the virtual one and skips code generation. */
  char arch_option[96];
  snprintf(arch_option, sizeof arch_option, "--gpu-architecture=%s%s",
           (outputs & QD_NVRTC_OUTPUT_CUBIN) ? "sm_" : "compute_", o.arch + 3);
  size_t fixed = nv->include_dir ? 3 : 2;
  size_t n_opts = opt->option_count + fixed;
  const char** opts;
  QD_TRY(qd_calloc(a, n_opts, sizeof *opts, (void**)&opts));
  opts[0] = arch_option;
  opts[1] = "-std=c++17";
  if (nv->include_dir) opts[2] = qd_nvrtc_include_option_;
  for (size_t i = 0; i < opt->option_count; i++) opts[fixed + i] = opt->options[i];

  qd_status_t s = QD_OK;
  nvrtcProgram prog = NULL;
  char* log = NULL;
  size_t log_size = 0;
  QD_CHECK_GOTO(s, QD_NVRTC_STATUS(nv->nvrtcCreateProgram(&prog, opt->source, name, (int)opt->header_count,
                                                                     opt->headers, opt->header_names)), done);
  nvrtcResult compiled = nv->nvrtcCompileProgram(prog, (int)n_opts, opts);
  QD_CHECK_GOTO(s, qd_nvrtc_get_log_(a, nv, prog, &log, &log_size), done);
  if (compiled == NVRTC_ERROR_COMPILATION || compiled == NVRTC_ERROR_INVALID_OPTION) {
    s = QD_ERR(DEVICE, NVRTC_COMPILE, "NVRTC %d.%d could not compile '%s' for %s (%s):\n%s", nv->version_major,
               nv->version_minor, name, o.arch, nv->nvrtcGetErrorString(compiled),
               log ? log : "(the compiler left no log)");
    goto done;
  }
  QD_CHECK_GOTO(s, qd_nvrtc_result_status(compiled, "nvrtcCompileProgram()", __FILE__, __LINE__), done);

  if (outputs & QD_NVRTC_OUTPUT_CUBIN) {
    QD_CHECK_GOTO(s, QD_NVRTC_STATUS(nv->nvrtcGetCUBINSize(prog, &o.cubin_size)), done);
    if (o.cubin_size == 0) {
      s = QD_ERR(DEVICE, NVRTC_ERROR, "NVRTC produced an empty cubin for '%s' (%s)", name, o.arch);
      goto done;
    }
    QD_CHECK_GOTO(s, qd_malloc(a, o.cubin_size, (void**)&o.cubin), done);
    QD_CHECK_GOTO(s, QD_NVRTC_STATUS(nv->nvrtcGetCUBIN(prog, (char*)o.cubin)), done);
  }
  if (outputs & QD_NVRTC_OUTPUT_PTX) {
    size_t ptx_size = 0; /* counts the NUL */
    QD_CHECK_GOTO(s, QD_NVRTC_STATUS(nv->nvrtcGetPTXSize(prog, &ptx_size)), done);
    if (ptx_size <= 1) {
      s = QD_ERR(DEVICE, NVRTC_ERROR, "NVRTC produced no PTX for '%s' (%s)", name, o.arch);
      goto done;
    }
    QD_CHECK_GOTO(s, qd_malloc(a, ptx_size, (void**)&o.ptx), done);
    o.ptx_size = ptx_size - 1;
    QD_CHECK_GOTO(s, QD_NVRTC_STATUS(nv->nvrtcGetPTX(prog, o.ptx)), done);
    o.ptx[o.ptx_size] = '\0';
  }
  o.log = log;
  o.log_size = log_size;
  log = NULL;

done:
  if (prog) nv->nvrtcDestroyProgram(&prog);
  qd_free(a, log, log_size);
  qd_free(a, opts, n_opts * sizeof *opts);
  if (s) {
    qd_nvrtc_output_deinit(&o);
    return s;
  }
  *out = o;
  return QD_OK;
}
