/* Kernel variants, template parameters and NVRTC compiles: see runtime/cuda/kernel_compile.h. */
#include "runtime/cuda/kernel_compile.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ir/hash64.h"
#include "runtime/cuda/kernel_sources.h"

/* ---- names and template parameters ----------------------------------------------------------------------- */

static bool qd_kc_is_identifier_(const char* s) {
  if (!s || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
  size_t n = 1;
  for (; s[n]; n++)
    if (!(isalnum((unsigned char)s[n]) || s[n] == '_')) return false;
  return n < QD_KERNEL_NAME_MAX;
}

static const char* qd_kc_skip_blank_(const char* p, const char* end) {
  while (p < end && (*p == ' ' || *p == '\t')) p++;
  return p;
}

/* Reads a decimal int (optional sign) at *pp; false when there is none or it overflows. */
static bool qd_kc_read_int_(const char** pp, const char* end, int* out) {
  const char* p = *pp;
  bool neg = false;
  if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
  if (p >= end || !isdigit((unsigned char)*p)) return false;
  long long v = 0;
  while (p < end && isdigit((unsigned char)*p)) {
    v = v * 10 + (*p++ - '0');
    if (v > INT_MAX) return false;
  }
  *out = (int)(neg ? -v : v);
  *pp = p;
  return true;
}

/* One "qd:param <kind> <NAME> = <default> {<values>}" line; p points just past "qd:param". */
static qd_status_t qd_kc_parse_param_(const char* tmpl, const char* p, const char* end, qd_kernel_param_t* out) {
  memset(out, 0, sizeof *out);
  const char* line = p;
  p = qd_kc_skip_blank_(p, end);
  const char* kind = p;
  while (p < end && isalpha((unsigned char)*p)) p++;
  size_t kind_len = (size_t)(p - kind);
  if (kind_len == 6 && strncmp(kind, "select", 6) == 0) {
    out->kind = QD_KERNEL_PARAM_SELECT;
  } else if (kind_len == 7 && strncmp(kind, "tunable", 7) == 0) {
    out->kind = QD_KERNEL_PARAM_TUNABLE;
  } else if (kind_len == 5 && strncmp(kind, "shape", 5) == 0) {
    out->kind = QD_KERNEL_PARAM_SHAPE;
  } else {
    goto malformed;
  }
  p = qd_kc_skip_blank_(p, end);
  const char* name = p;
  while (p < end && (isalnum((unsigned char)*p) || *p == '_')) p++;
  size_t name_len = (size_t)(p - name);
  if (name_len == 0 || name_len >= sizeof out->name || isdigit((unsigned char)name[0])) goto malformed;
  memcpy(out->name, name, name_len);
  p = qd_kc_skip_blank_(p, end);
  if (p >= end || *p++ != '=') goto malformed;
  p = qd_kc_skip_blank_(p, end);
  if (!qd_kc_read_int_(&p, end, &out->default_value)) goto malformed;
  p = qd_kc_skip_blank_(p, end);
  if (p >= end || *p++ != '{') goto malformed;
  bool has_default = false;
  for (;;) {
    p = qd_kc_skip_blank_(p, end);
    if (p < end && *p == '}') break;
    if (out->value_count == QD_KERNEL_MAX_VALUES) goto malformed;
    int v;
    if (!qd_kc_read_int_(&p, end, &v)) goto malformed;
    has_default |= v == out->default_value;
    out->values[out->value_count++] = v;
  }
  if (out->value_count == 0 || !has_default) goto malformed;
  return QD_OK;
malformed:
  return QD_ERR(INTERNAL, INTERNAL,
                "kernel template '%s': malformed qd:param line '%.*s'; the form is "
                "'qd:param select|tunable|shape NAME = DEFAULT {VALUES, the default among them}'",
                tmpl, (int)(end - line), line);
}

qd_status_t qd_kernel_template_params(const char* template_name, qd_kernel_params_t* out) {
  memset(out, 0, sizeof *out);
  const qd_kernel_source_t* src = qd_kernel_source_lookup(template_name);
  if (!src)
    return QD_ERR(NOT_FOUND, KERNEL_TEMPLATE_UNKNOWN, "no kernel template '%s' is embedded in this build",
                  template_name ? template_name : "(null)");
  const char* text = src->text;
  const char* p = text;
  while (*p && isspace((unsigned char)*p)) p++;
  if (strncmp(p, "/*", 2) != 0) return QD_OK; /* no leading comment, no documented parameters */
  const char* comment_end = strstr(p + 2, "*/");
  if (!comment_end) comment_end = text + src->size;
  static const char tag[] = "qd:param";
  for (const char* hit = strstr(p, tag); hit && hit < comment_end; hit = strstr(hit + 1, tag)) {
    /* Only a line that starts with the tag (after the comment's " * ") declares a parameter; prose may mention it. */
    const char* line_start = hit;
    while (line_start > text && line_start[-1] != '\n') line_start--;
    bool leading = true;
    for (const char* c = line_start; c < hit; c++) leading &= *c == ' ' || *c == '\t' || *c == '*';
    if (!leading) continue;
    const char* line_end = hit;
    while (line_end < comment_end && *line_end != '\n') line_end++;
    if (out->count == QD_KERNEL_MAX_PARAMS)
      return QD_ERR(INTERNAL, INTERNAL, "kernel template '%s' documents more than %d parameters", src->name,
                    (int)QD_KERNEL_MAX_PARAMS);
    qd_kernel_param_t* param = &out->items[out->count];
    QD_TRY(qd_kc_parse_param_(src->name, hit + sizeof tag - 1, line_end, param));
    if (qd_kernel_params_find(out, param->name))
      return QD_ERR(INTERNAL, INTERNAL, "kernel template '%s' documents parameter %s twice", src->name,
                    param->name);
    out->count++;
  }
  return QD_OK;
}

const qd_kernel_param_t* qd_kernel_params_find(const qd_kernel_params_t* params, const char* name) {
  if (!name) return NULL;
  for (size_t i = 0; i < params->count; i++)
    if (strcmp(params->items[i].name, name) == 0) return &params->items[i];
  return NULL;
}

static void qd_kc_list_values_(const qd_kernel_param_t* p, char* buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < p->value_count && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%s%d", i ? " " : "", p->values[i]);
    if (n < 0) break;
    used += (size_t)n;
  }
}

static void qd_kc_list_names_(const qd_kernel_params_t* params, char* buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < params->count && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", params->items[i].name);
    if (n < 0) break;
    used += (size_t)n;
  }
}

/* A define must be a documented parameter (when the template documents any) with an allowed value. */
static qd_status_t qd_kc_check_define_(const char* tmpl, const qd_kernel_params_t* params, const char* name,
                                       int value) {
  if (params->count == 0) return QD_OK;
  const qd_kernel_param_t* p = qd_kernel_params_find(params, name);
  if (!p) {
    char names[512];
    qd_kc_list_names_(params, names, sizeof names);
    return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID,
                  "kernel template '%s' has no parameter %s; it documents %s", tmpl, name, names);
  }
  if (p->kind == QD_KERNEL_PARAM_SHAPE) return QD_OK; /* the template's static_asserts judge sizes */
  for (size_t i = 0; i < p->value_count; i++)
    if (p->values[i] == value) return QD_OK;
  char values[256];
  qd_kc_list_values_(p, values, sizeof values);
  return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID,
                "kernel template '%s': %s=%d is not allowed; %s takes one of %s", tmpl, name, value, name, values);
}

/* ---- configurations ---------------------------------------------------------------------------------------- */

qd_status_t qd_kernel_config_init(const char* template_name, qd_kernel_config_t* out) {
  memset(out, 0, sizeof *out);
  qd_kernel_params_t params;
  QD_TRY(qd_kernel_template_params(template_name, &params));
  out->template_name = qd_kernel_source_lookup(template_name)->name;
  out->params = params;
  for (size_t i = 0; i < params.count; i++) out->values[i] = params.items[i].default_value;
  return QD_OK;
}

qd_status_t qd_kernel_config_set(qd_kernel_config_t* c, const char* name, int value) {
  const qd_kernel_param_t* p = qd_kernel_params_find(&c->params, name);
  if (!p || c->params.count == 0) {
    char names[512];
    qd_kc_list_names_(&c->params, names, sizeof names);
    return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID, "kernel template '%s' has no parameter %s; it documents %s",
                  c->template_name ? c->template_name : "(none)", name ? name : "(null)", names);
  }
  QD_TRY(qd_kc_check_define_(c->template_name, &c->params, name, value));
  c->values[p - c->params.items] = value;
  return QD_OK;
}

qd_status_t qd_kernel_config_get(const qd_kernel_config_t* c, const char* name, int* out_value) {
  const qd_kernel_param_t* p = qd_kernel_params_find(&c->params, name);
  if (!p)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID, "kernel template '%s' has no parameter %s",
                  c->template_name ? c->template_name : "(none)", name ? name : "(null)");
  *out_value = c->values[p - c->params.items];
  return QD_OK;
}

void qd_kernel_config_variant(qd_kernel_config_t* c, const char* function, qd_kernel_variant_t* out) {
  for (size_t i = 0; i < c->params.count; i++) {
    c->defines_[i].name = c->params.items[i].name;
    c->defines_[i].value = c->values[i];
  }
  out->template_name = c->template_name;
  out->function = function;
  out->defines = c->defines_;
  out->define_count = c->params.count;
}

size_t qd_kernel_variant_format(const qd_kernel_variant_t* v, char* buf, size_t size) {
  size_t want = 0;
  int n = snprintf(buf, size, "%s:%s", v->template_name ? v->template_name : "(null)",
                   v->function ? v->function : "(null)");
  if (n > 0) want = (size_t)n;
  for (size_t i = 0; i < v->define_count && v->defines; i++) {
    n = snprintf(want < size ? buf + want : NULL, want < size ? size - want : 0, " %s=%d",
                 v->defines[i].name ? v->defines[i].name : "(null)", v->defines[i].value);
    if (n > 0) want += (size_t)n;
  }
  if (size > 0 && want >= size) buf[size - 1] = '\0';
  return want;
}

/* ---- compiled images ---------------------------------------------------------------------------------------- */

static uint64_t qd_kc_le_(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

bool qd_cubin_has_function(const uint8_t* cubin, size_t size, const char* function) {
  if (!cubin || !function || size < 64) return false;
  if (memcmp(cubin, "\x7f" "ELF", 4) != 0 || cubin[4] != 2 /* 64-bit */ || cubin[5] != 1 /* little-endian */)
    return false;
  uint64_t shoff = qd_kc_le_(cubin + 0x28, 8);
  uint64_t shentsize = qd_kc_le_(cubin + 0x3a, 2);
  uint64_t shnum = qd_kc_le_(cubin + 0x3c, 2);
  uint64_t shstrndx = qd_kc_le_(cubin + 0x3e, 2);
  if (shentsize < 64 || shnum == 0 || shstrndx >= shnum || shoff > size || shnum > (size - shoff) / shentsize)
    return false;
  const uint8_t* strhdr = cubin + shoff + shstrndx * shentsize;
  uint64_t str_off = qd_kc_le_(strhdr + 0x18, 8), str_size = qd_kc_le_(strhdr + 0x20, 8);
  if (str_off > size || str_size > size - str_off) return false;
  const char* strtab = (const char*)cubin + str_off;
  char want[QD_KERNEL_NAME_MAX + 8];
  int wn = snprintf(want, sizeof want, ".text.%s", function);
  if (wn < 0 || (size_t)wn >= sizeof want) return false;
  for (uint64_t i = 0; i < shnum; i++) {
    uint64_t name = qd_kc_le_(cubin + shoff + i * shentsize, 4);
    if (name >= str_size || str_size - name < (uint64_t)wn + 1) continue;
    if (memcmp(strtab + name, want, (size_t)wn + 1) == 0) return true;
  }
  return false;
}

/* PTX declares each kernel as ".entry <name>(". */
static bool qd_kc_ptx_has_entry_(const char* ptx, const char* function) {
  size_t n = strlen(function);
  for (const char* p = strstr(ptx, ".entry "); p; p = strstr(p + 1, ".entry ")) {
    const char* name = p + 7;
    while (*name == ' ' || *name == '\t') name++;
    if (strncmp(name, function, n) == 0 && (name[n] == '(' || isspace((unsigned char)name[n]))) return true;
  }
  return false;
}

bool qd_ptx_has_function(const char* ptx, size_t size, const char* function) {
  return ptx && function && memchr(ptx, 0, size) != NULL && qd_kc_ptx_has_entry_(ptx, function);
}

/* The integer just before `pos` in [line, pos), skipping blanks: "... 64 bytes smem" -> 64. */
static bool qd_kc_number_before_(const char* line, const char* pos, int* out) {
  const char* p = pos;
  while (p > line && p[-1] == ' ') p--;
  const char* digits_end = p;
  while (p > line && isdigit((unsigned char)p[-1])) p--;
  if (p == digits_end) return false;
  long v = strtol(p, NULL, 10);
  if (v < 0 || v > INT_MAX) return false;
  *out = (int)v;
  return true;
}

bool qd_kernel_resources_from_log(const char* log, const char* function, qd_kernel_resources_t* out) {
  memset(out, 0, sizeof *out);
  if (!log || !function) return false;
  char head[QD_KERNEL_NAME_MAX + 40];
  snprintf(head, sizeof head, "Compiling entry function '%s'", function);
  const char* block = strstr(log, head);
  if (!block) return false;
  const char* block_end = strstr(block + 1, "Compiling entry function '");
  if (!block_end) block_end = block + strlen(block);
  bool have_regs = false, have_frame = false;
  char props[QD_KERNEL_NAME_MAX + 40];
  snprintf(props, sizeof props, "Function properties for %s\n", function);
  const char* after_props = strstr(block, props);
  for (const char* line = block; line < block_end;) {
    const char* eol = memchr(line, '\n', (size_t)(block_end - line));
    if (!eol) eol = block_end;
    size_t len = (size_t)(eol - line);
    char buf[512];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    const char* used = strstr(buf, "Used ");
    if (used && !have_regs && sscanf(used, "Used %d registers", &out->registers) == 1) {
      have_regs = true;
      const char* smem = strstr(buf, " bytes smem");
      if (smem && !qd_kc_number_before_(buf, smem, &out->shared_bytes)) out->shared_bytes = 0;
    }
    /* The first frame line after this function's own "Function properties" line (internal helpers follow). */
    int frame, st, ld;
    if (!have_frame && after_props && line >= after_props && strstr(buf, "bytes stack frame") &&
        sscanf(buf, "ptxas . %d bytes stack frame, %d bytes spill stores, %d bytes spill loads", &frame, &st,
               &ld) == 3) {
      out->stack_bytes = frame;
      out->spill_bytes = st + ld;
      have_frame = true;
    }
    line = eol < block_end ? eol + 1 : block_end;
  }
  out->known = have_regs;
  if (!have_regs) memset(out, 0, sizeof *out);
  return have_regs;
}

/* Drops ptxas' informational lines ("ptxas info ...", "ptxas     . N bytes stack frame ..."), keeping warnings;
 * frees the log when nothing is left. */
static void qd_kc_filter_log_(qd_nvrtc_output_t* o) {
  if (!o->log) return;
  char* w = o->log;
  for (const char* r = o->log; *r;) {
    const char* eol = strchr(r, '\n');
    size_t len = eol ? (size_t)(eol - r) + 1 : strlen(r);
    bool info = strncmp(r, "ptxas info", 10) == 0;
    if (!info && strncmp(r, "ptxas ", 6) == 0) {
      const char* q = r + 5;
      while (*q == ' ') q++;
      info = *q == '.';
    }
    if (!info) {
      memmove(w, r, len);
      w += len;
    }
    r += len;
  }
  *w = '\0';
  while (w > o->log && isspace((unsigned char)w[-1])) *--w = '\0';
  if (w == o->log) {
    qd_free(o->allocator, o->log, o->log_size);
    o->log = NULL;
    o->log_size = 0;
  }
}

static double qd_kc_now_ms_(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static qd_status_t qd_kc_check_variant_(const qd_kernel_variant_t* v, const qd_kernel_params_t* params) {
  if (!qd_kc_is_identifier_(v->function))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "kernel template '%s': function name '%s' is not a C identifier of fewer than %d bytes",
                  v->template_name, v->function ? v->function : "(null)", (int)QD_KERNEL_NAME_MAX);
  if (v->define_count > QD_KERNEL_MAX_DEFINES || (v->define_count > 0 && !v->defines))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "kernel template '%s': %zu defines (at most %d, not NULL)",
                  v->template_name, v->define_count, (int)QD_KERNEL_MAX_DEFINES);
  for (size_t i = 0; i < v->define_count; i++) {
    const char* name = v->defines[i].name;
    if (!qd_kc_is_identifier_(name))
      return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID,
                    "kernel template '%s': define name '%s' is not a C identifier of fewer than %d bytes",
                    v->template_name, name ? name : "(null)", (int)QD_KERNEL_NAME_MAX);
    for (size_t j = 0; j < i; j++)
      if (strcmp(v->defines[j].name, name) == 0)
        return QD_ERR(INVALID_ARGUMENT, KERNEL_DEFINE_INVALID, "kernel template '%s': %s is defined twice",
                      v->template_name, name);
    QD_TRY(qd_kc_check_define_(v->template_name, params, name, v->defines[i].value));
  }
  return QD_OK;
}

void qd_kernel_headers_get(qd_kernel_headers_t* out) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < qd_kernel_source_count() && out->count < QD_KERNEL_MAX_HEADERS; i++) {
    const qd_kernel_source_t* s = qd_kernel_source_at(i);
    size_t n = strlen(s->name);
    if (n > 4 && strcmp(s->name + n - 4, ".cuh") == 0) {
      out->names[out->count] = s->name;
      out->texts[out->count++] = s->text;
    }
  }
}

uint64_t qd_kernel_source_digest(const char* text, size_t size) {
  qd_hash64_state_t hs;
  qd_hash64_init(&hs, 0);
  qd_hash64_update(&hs, text, size);
  qd_kernel_headers_t h;
  qd_kernel_headers_get(&h);
  for (size_t i = 0; i < h.count; i++) qd_hash64_update(&hs, h.texts[i], strlen(h.texts[i]));
  return qd_hash64_digest(&hs);
}

qd_status_t qd_kernel_compile(qd_allocator_t a, const qd_kernel_variant_t* v, const char* arch, unsigned outputs,
                              qd_kernel_binary_t* out) {
  memset(out, 0, sizeof *out);
  if (!v) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_kernel_compile: no variant");
  const qd_kernel_source_t* src = qd_kernel_source_lookup(v->template_name);
  if (!src)
    return QD_ERR(NOT_FOUND, KERNEL_TEMPLATE_UNKNOWN, "no kernel template '%s' is embedded in this build",
                  v->template_name ? v->template_name : "(null)");
  qd_kernel_params_t params;
  QD_TRY(qd_kernel_template_params(src->name, &params));
  QD_TRY(qd_kc_check_variant_(v, &params));

  if (outputs == 0) outputs = QD_NVRTC_OUTPUT_CUBIN;
  char defines[QD_KERNEL_MAX_DEFINES][QD_KERNEL_NAME_MAX + 16];
  const char* options[QD_KERNEL_MAX_DEFINES + 1];
  size_t count = 0;
  for (size_t i = 0; i < v->define_count; i++) {
    snprintf(defines[i], sizeof defines[i], "-D%s=%d", v->defines[i].name, v->defines[i].value);
    options[count++] = defines[i];
  }
  /* ptxas' resource report for the cubin; an NVRTC that does not know the option gets a second try without. */
  bool verbose = (outputs & QD_NVRTC_OUTPUT_CUBIN) != 0;
  if (verbose) options[count++] = "--ptxas-options=-v";
  qd_kernel_headers_t headers;
  qd_kernel_headers_get(&headers);
  qd_nvrtc_compile_options_t opt = {.source = src->text, .name = src->name, .arch = arch, .outputs = outputs,
                                    .options = options, .option_count = count, .header_names = headers.names,
                                    .headers = headers.texts, .header_count = headers.count};
  double t0 = qd_kc_now_ms_();
  qd_status_t s = qd_nvrtc_compile(a, &opt, &out->image);
  if (s && verbose && qd_status_detail(s) == QD_E_NVRTC_COMPILE &&
      strstr(qd_status_message(s), "NVRTC_ERROR_INVALID_OPTION")) {
    qd_status_free(s);
    opt.option_count = count - 1;
    verbose = false;
    t0 = qd_kc_now_ms_();
    s = qd_nvrtc_compile(a, &opt, &out->image);
  }
  double t1 = qd_kc_now_ms_();
  if (s) {
    char what[512];
    qd_kernel_variant_format(v, what, sizeof what);
    return qd_status_annotate(s, "while compiling %s", what);
  }
  out->compile_ms = t1 - t0;

  bool found = out->image.cubin ? qd_cubin_has_function(out->image.cubin, out->image.cubin_size, v->function)
                                : qd_kc_ptx_has_entry_(out->image.ptx, v->function);
  if (found && out->image.cubin && out->image.ptx) found = qd_kc_ptx_has_entry_(out->image.ptx, v->function);
  if (!found) {
    char what[512];
    qd_kernel_variant_format(v, what, sizeof what);
    char arch_copy[16];
    snprintf(arch_copy, sizeof arch_copy, "%s", out->image.arch);
    qd_kernel_binary_deinit(out);
    return QD_ERR(NOT_FOUND, KERNEL_FUNCTION_MISSING, "%s compiled for %s defines no kernel '%s'", what, arch_copy,
                  v->function);
  }
  if (verbose) qd_kernel_resources_from_log(out->image.log, v->function, &out->resources);
  qd_kc_filter_log_(&out->image);
  return QD_OK;
}

void qd_kernel_binary_deinit(qd_kernel_binary_t* b) {
  if (!b) return;
  qd_nvrtc_output_deinit(&b->image);
  memset(b, 0, sizeof *b);
}
