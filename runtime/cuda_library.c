/* Opening NVRTC / cuBLASLt by candidate names and resolving their tables: see runtime/cuda_library.h. */
#include "runtime/cuda_library.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qd_status_t qd_cuda_library_open(const char* what, const char* env_var, const char* const* names, size_t name_count,
                                 qd_status_code_t code, qd_error_detail_t detail, char* name_buf,
                                 size_t name_buf_size, void** out_handle, const char** out_name) {
  *out_handle = NULL;
  *out_name = NULL;
  const char* env = env_var ? getenv(env_var) : NULL;
  const char* env_only[1];
  if (env && *env) {
    snprintf(name_buf, name_buf_size, "%s", env);
    env_only[0] = name_buf;
    names = env_only;
    name_count = 1;
  }
  /* Why each candidate failed, gathered for the message; dlerror texts are short, and a clipped list still
   * says what was tried first. */
  char tried[2048];
  size_t used = 0;
  tried[0] = '\0';
  for (size_t i = 0; i < name_count; i++) {
    dlerror();
    void* handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (handle) {
      *out_handle = handle;
      *out_name = names[i];
      return QD_OK;
    }
    const char* why = dlerror();
    if (used < sizeof tried) {
      int n = snprintf(tried + used, sizeof tried - used, "%s%s (%s)", i ? ", " : "", names[i],
                       why ? why : "unknown reason");
      if (n > 0) used += (size_t)n;
    }
  }
  return qd_status_make(code, detail, __FILE__, __LINE__, "%s could not be loaded: tried %s%s%s", what, tried,
                        env && *env ? "; path from " : "", env && *env ? env_var : "");
}

qd_status_t qd_cuda_library_resolve(void* handle, const char* library, const qd_cuda_library_symbol_t* symbols,
                                    size_t symbol_count, void* table) {
  for (size_t i = 0; i < symbol_count; i++) {
    dlerror();
    void* fn = dlsym(handle, symbols[i].name);
    if (!fn)
      return QD_ERR(UNAVAILABLE, CUDA_SYMBOL_MISSING, "%s: entry point '%s' is missing (an older or damaged library?)",
                    library, symbols[i].name);
    /* POSIX lets a dlsym result become a function pointer; memcpy stores it without a cast warning. */
    memcpy((char*)table + symbols[i].offset, &fn, sizeof fn);
  }
  return QD_OK;
}

void qd_cuda_call_name(const char* call, char* buf, size_t size) {
  const char* paren = call ? strchr(call, '(') : NULL;
  if (!paren) {
    snprintf(buf, size, "%s", call ? call : "a CUDA library call");
    return;
  }
  const char* end = paren;
  while (end > call && isspace((unsigned char)end[-1])) end--;
  const char* start = end;
  while (start > call && (isalnum((unsigned char)start[-1]) || start[-1] == '_')) start--;
  if (start == end) {
    snprintf(buf, size, "%s", call);
    return;
  }
  /* A call that went through another macro before being stringized shows cuda.h's versioned name
   * (cuMemAlloc_v2); messages use the name people write. */
  const char* v = end;
  while (v > start && isdigit((unsigned char)v[-1])) v--;
  if (v < end && v - start > 2 && v[-1] == 'v' && v[-2] == '_') end = v - 2;
  snprintf(buf, size, "%.*s", (int)(end - start), start);
}
