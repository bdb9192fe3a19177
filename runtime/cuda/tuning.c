/* Autotuning records: JSON in and out, lookups; see tuning.h. */
#include "runtime/cuda/tuning.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

qd_status_t qd_tuning_create(qd_allocator_t allocator, qd_tuning_t** out) {
  *out = NULL;
  qd_tuning_t* t;
  QD_TRY(qd_calloc(allocator, 1, sizeof *t, (void**)&t));
  t->allocator = allocator;
  *out = t;
  return QD_OK;
}

void qd_tuning_destroy(qd_tuning_t* t) {
  if (!t) return;
  qd_free(t->allocator, t->gemms, (size_t)t->gemm_capacity * sizeof *t->gemms);
  qd_free(t->allocator, t->kernels, (size_t)t->kernel_capacity * sizeof *t->kernels);
  qd_free(t->allocator, t->reports, (size_t)t->report_capacity * sizeof *t->reports);
  qd_free(t->allocator, t, sizeof *t);
}

/* Grows an array of `size`-byte items to hold one more. */
static qd_status_t qd_tune_grow_(qd_allocator_t a, void** items, int32_t count, int32_t* capacity, size_t size) {
  if (count < *capacity) return QD_OK;
  int32_t cap = *capacity ? 2 * *capacity : 16;
  void* grown;
  QD_TRY(qd_calloc(a, (size_t)cap, size, &grown));
  if (*items) memcpy(grown, *items, (size_t)count * size);
  qd_free(a, *items, (size_t)*capacity * size);
  *items = grown;
  *capacity = cap;
  return QD_OK;
}

static bool qd_tune_same_gemm_(const qd_tuning_gemm_t* a, const qd_tuning_gemm_t* b) {
  return a->m == b->m && a->n == b->n && a->k == b->k && a->epilogue == b->epilogue && a->batch == b->batch &&
         a->w_stride == b->w_stride && a->y_stride == b->y_stride && a->bias_stride == b->bias_stride &&
         a->w_ld == b->w_ld && a->y_ld == b->y_ld && a->accumulate == b->accumulate;
}

const qd_tuning_gemm_t* qd_tuning_find_gemm(const qd_tuning_t* t, const qd_tuning_gemm_t* key) {
  for (int32_t i = 0; t && i < t->gemm_count; i++)
    if (qd_tune_same_gemm_(&t->gemms[i], key)) return &t->gemms[i];
  return NULL;
}

const qd_tuning_kernel_t* qd_tuning_find_kernel(const qd_tuning_t* t, const char* site, const char* shape) {
  for (int32_t i = 0; t && i < t->kernel_count; i++)
    if (strcmp(t->kernels[i].site, site) == 0 && strcmp(t->kernels[i].shape, shape) == 0) return &t->kernels[i];
  return NULL;
}

qd_status_t qd_tuning_add_gemm(qd_tuning_t* t, const qd_tuning_gemm_t* g) {
  qd_tuning_gemm_t* same = (qd_tuning_gemm_t*)qd_tuning_find_gemm(t, g);
  if (same) {
    *same = *g;
    return QD_OK;
  }
  QD_TRY(qd_tune_grow_(t->allocator, (void**)&t->gemms, t->gemm_count, &t->gemm_capacity, sizeof *t->gemms));
  t->gemms[t->gemm_count++] = *g;
  return QD_OK;
}

qd_status_t qd_tuning_add_kernel(qd_tuning_t* t, const qd_tuning_kernel_t* k) {
  if (k->define_count < 0 || k->define_count > QD_TUNING_MAX_DEFINES || !memchr(k->site, 0, sizeof k->site) ||
      !memchr(k->shape, 0, sizeof k->shape))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "a kernel tuning record with %d defines or unterminated "
                  "strings", (int)k->define_count);
  qd_tuning_kernel_t* same = (qd_tuning_kernel_t*)qd_tuning_find_kernel(t, k->site, k->shape);
  if (same) {
    *same = *k;
    return QD_OK;
  }
  QD_TRY(qd_tune_grow_(t->allocator, (void**)&t->kernels, t->kernel_count, &t->kernel_capacity, sizeof *t->kernels));
  t->kernels[t->kernel_count++] = *k;
  return QD_OK;
}

qd_status_t qd_tuning_add_report(qd_tuning_t* t, const qd_tuning_report_t* r) {
  for (int32_t i = 0; i < t->report_count; i++)
    if (t->reports[i].width == r->width && t->reports[i].height == r->height && t->reports[i].batch == r->batch) {
      t->reports[i] = *r;
      return QD_OK;
    }
  QD_TRY(qd_tune_grow_(t->allocator, (void**)&t->reports, t->report_count, &t->report_capacity, sizeof *t->reports));
  t->reports[t->report_count++] = *r;
  return QD_OK;
}

/* --- JSON out ---------------------------------------------------------------------------------------------------- */

static void qd_tune_hex_(const uint8_t* bytes, size_t n, char* out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) out[2 * i] = digits[bytes[i] >> 4], out[2 * i + 1] = digits[bytes[i] & 15];
  out[2 * n] = 0;
}

/* Every cJSON_Add* below goes through these, which clear *ok on failure (and free what was not attached), so that
 * running out of memory anywhere gives no document rather than one missing records. */
static void qd_tune_num_(cJSON* o, const char* k, double v, bool* ok) {
  if (!cJSON_AddNumberToObject(o, k, v)) *ok = false;
}
static void qd_tune_str_(cJSON* o, const char* k, const char* v, bool* ok) {
  if (!cJSON_AddStringToObject(o, k, v)) *ok = false;
}
static void qd_tune_attach_(cJSON* o, const char* k, cJSON* item, bool* ok) {
  if (!item || !cJSON_AddItemToObject(o, k, item)) {
    cJSON_Delete(item);
    *ok = false;
  }
}
static cJSON* qd_tune_entry_(cJSON* list, bool* ok) {
  cJSON* e = cJSON_CreateObject();
  if (!e || !cJSON_AddItemToArray(list, e)) {
    cJSON_Delete(e);
    *ok = false;
    return NULL;
  }
  return e;
}

static cJSON* qd_tune_numbers_(const double* v, int n) {
  cJSON* a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) {
    cJSON* x = cJSON_CreateNumber(v[i]);
    if (!x || !cJSON_AddItemToArray(a, x)) {
      cJSON_Delete(x);
      cJSON_Delete(a);
      return NULL;
    }
  }
  return a;
}

cJSON* qd_tuning_to_json(const qd_tuning_t* t) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  bool ok = true;
  qd_tune_num_(root, "tuning_version", QD_TUNING_VERSION, &ok);
  qd_tune_str_(root, "mode", t->mode, &ok);
  qd_tune_str_(root, "device", t->device, &ok);
  qd_tune_str_(root, "arch", t->arch, &ok);
  qd_tune_num_(root, "driver", t->driver, &ok);
  qd_tune_num_(root, "cublaslt", t->cublaslt, &ok);
  cJSON* gemms = cJSON_AddArrayToObject(root, "gemms");
  ok = ok && gemms;
  for (int32_t i = 0; ok && i < t->gemm_count; i++) {
    const qd_tuning_gemm_t* g = &t->gemms[i];
    cJSON* e = qd_tune_entry_(gemms, &ok);
    if (!e) break;
    const int64_t ints[] = {g->m, g->n, g->k, g->epilogue, g->batch, g->w_stride, g->y_stride, g->bias_stride,
                            g->w_ld, g->y_ld};
    static const char* const names[] = {"m", "n", "k", "epilogue", "batch", "w_stride", "y_stride", "bias_stride",
                                        "w_ld", "y_ld"};
    for (int f = 0; f < 10; f++) qd_tune_num_(e, names[f], (double)ints[f], &ok);
    if (!cJSON_AddBoolToObject(e, "accumulate", g->accumulate)) ok = false;
    char hex[2 * QD_TUNING_ALGO_BYTES + 1];
    qd_tune_hex_(g->algo, sizeof g->algo, hex);
    qd_tune_str_(e, "algo", hex, &ok);
    qd_tune_num_(e, "workspace", (double)g->workspace, &ok);
    qd_tune_num_(e, "candidates", g->candidates, &ok);
    qd_tune_num_(e, "heuristic_us", g->heuristic_us, &ok);
    qd_tune_num_(e, "tuned_us", g->tuned_us, &ok);
  }
  cJSON* kernels = ok ? cJSON_AddArrayToObject(root, "kernels") : NULL;
  ok = ok && kernels;
  for (int32_t i = 0; ok && i < t->kernel_count; i++) {
    const qd_tuning_kernel_t* k = &t->kernels[i];
    cJSON* e = qd_tune_entry_(kernels, &ok);
    if (!e) break;
    qd_tune_str_(e, "site", k->site, &ok);
    qd_tune_str_(e, "shape", k->shape, &ok);
    cJSON* defs = cJSON_AddObjectToObject(e, "defines");
    if (!defs) ok = false;
    for (int32_t d = 0; ok && d < k->define_count; d++) qd_tune_num_(defs, k->defines[d].name, k->defines[d].value, &ok);
    qd_tune_num_(e, "candidates", k->candidates, &ok);
    qd_tune_num_(e, "default_us", k->default_us, &ok);
    qd_tune_num_(e, "tuned_us", k->tuned_us, &ok);
  }
  cJSON* reports = ok ? cJSON_AddArrayToObject(root, "report") : NULL;
  ok = ok && reports;
  for (int32_t i = 0; ok && i < t->report_count; i++) {
    const qd_tuning_report_t* r = &t->reports[i];
    cJSON* e = qd_tune_entry_(reports, &ok);
    if (!e) break;
    qd_tune_num_(e, "width", (double)r->width, &ok);
    qd_tune_num_(e, "height", (double)r->height, &ok);
    qd_tune_num_(e, "batch", (double)r->batch, &ok);
    qd_tune_attach_(e, "untuned_ms", qd_tune_numbers_(r->untuned_ms, QD_TUNING_CLASSES), &ok);
    qd_tune_attach_(e, "tuned_ms", qd_tune_numbers_(r->tuned_ms, QD_TUNING_CLASSES), &ok);
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* --- JSON in ---------------------------------------------------------------------------------------------------- */

typedef struct qd_tune_reader {
  const char* where;
  char context[64]; /* "gemms[3]" */
} qd_tune_reader_t;

static qd_status_t qd_tune_bad_(const qd_tune_reader_t* r, const char* field, const cJSON* v, const char* want) {
  char* text = v ? cJSON_PrintUnformatted(v) : NULL;
  char shown[48];
  snprintf(shown, sizeof shown, "%s", text ? text : "missing");
  if (text && strlen(text) > 40) snprintf(shown + 36, sizeof shown - 36, "...");
  cJSON_free(text);
  return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: %s%s'%s' is %s; expected %s", r->where, r->context,
                r->context[0] ? " " : "", field, shown, want);
}

/* An integral number in [lo, hi]. */
static qd_status_t qd_tune_int_(const qd_tune_reader_t* r, const cJSON* obj, const char* field, double lo, double hi,
                                int64_t* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, field);
  char want[96];
  snprintf(want, sizeof want, "an integer from %.0f to %.0f", lo, hi);
  /* The range first: casting a double beyond int64_t's range is undefined. */
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
      v->valuedouble != (double)(int64_t)v->valuedouble)
    return qd_tune_bad_(r, field, v, want);
  *out = (int64_t)v->valuedouble;
  return QD_OK;
}

static qd_status_t qd_tune_time_(const qd_tune_reader_t* r, const cJSON* obj, const char* field, double* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, field);
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e9)
    return qd_tune_bad_(r, field, v, "a time from 0 to 1e9");
  *out = v->valuedouble;
  return QD_OK;
}

/* A string of printable ASCII shorter than `size`. */
static qd_status_t qd_tune_string_(const qd_tune_reader_t* r, const cJSON* obj, const char* field, char* out,
                                   size_t size) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, field);
  char want[64];
  snprintf(want, sizeof want, "printable text shorter than %zu bytes", size);
  if (!cJSON_IsString(v) || strlen(v->valuestring) >= size) return qd_tune_bad_(r, field, v, want);
  for (const char* c = v->valuestring; *c; c++)
    if (*c < 0x20 || *c > 0x7e) return qd_tune_bad_(r, field, v, want);
  memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
  return QD_OK;
}

static qd_status_t qd_tune_read_gemm_(const qd_tune_reader_t* r, const cJSON* e, qd_tuning_gemm_t* g) {
  memset(g, 0, sizeof *g);
  const double big = 4611686018427387904.0; /* 2^62 */
  int64_t v[13];
  static const char* const names[] = {"m", "n", "k", "epilogue", "batch", "w_stride", "y_stride", "bias_stride",
                                      "w_ld", "y_ld", "workspace", "candidates"};
  const double lo[] = {1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 0}, hi[] = {big, big, big, 2, 4096, big, big, big, big, big,
                                                                    big, 4096};
  for (int f = 0; f < 12; f++) QD_TRY(qd_tune_int_(r, e, names[f], lo[f], hi[f], &v[f]));
  g->m = v[0], g->n = v[1], g->k = v[2], g->epilogue = (int32_t)v[3], g->batch = (int32_t)v[4];
  g->w_stride = v[5], g->y_stride = v[6], g->bias_stride = v[7], g->w_ld = v[8], g->y_ld = v[9];
  g->workspace = (uint64_t)v[10], g->candidates = (int32_t)v[11];
  const cJSON* acc = cJSON_GetObjectItemCaseSensitive(e, "accumulate");
  if (!cJSON_IsBool(acc)) return qd_tune_bad_(r, "accumulate", acc, "true or false");
  g->accumulate = cJSON_IsTrue(acc);
  const cJSON* algo = cJSON_GetObjectItemCaseSensitive(e, "algo");
  bool hex = cJSON_IsString(algo) && strlen(algo->valuestring) == 2 * QD_TUNING_ALGO_BYTES;
  for (int i = 0; hex && i < 2 * QD_TUNING_ALGO_BYTES; i++) {
    char c = algo->valuestring[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) {
      hex = false;
      break;
    }
    g->algo[i / 2] = (uint8_t)(i % 2 ? g->algo[i / 2] | d : d << 4);
  }
  if (!hex) return qd_tune_bad_(r, "algo", algo, "128 lower-case hex digits");
  QD_TRY(qd_tune_time_(r, e, "heuristic_us", &g->heuristic_us));
  return qd_tune_time_(r, e, "tuned_us", &g->tuned_us);
}

static qd_status_t qd_tune_read_kernel_(const qd_tune_reader_t* r, const cJSON* e, qd_tuning_kernel_t* k) {
  memset(k, 0, sizeof *k);
  QD_TRY(qd_tune_string_(r, e, "site", k->site, sizeof k->site));
  QD_TRY(qd_tune_string_(r, e, "shape", k->shape, sizeof k->shape));
  const cJSON* defs = cJSON_GetObjectItemCaseSensitive(e, "defines");
  if (!cJSON_IsObject(defs) || cJSON_GetArraySize(defs) > QD_TUNING_MAX_DEFINES)
    return qd_tune_bad_(r, "defines", defs, "an object of at most 8 names and integers");
  const cJSON* d;
  cJSON_ArrayForEach(d, defs) {
    qd_tuning_define_t* x = &k->defines[k->define_count];
    /* A define is a C identifier (it becomes -DNAME=VALUE for NVRTC). */
    bool ident = d->string && d->string[0] && strlen(d->string) < sizeof x->name && !isdigit((unsigned char)d->string[0]);
    for (const char* c = d->string; ident && *c; c++) ident = isalnum((unsigned char)*c) || *c == '_';
    bool integer = cJSON_IsNumber(d) && d->valuedouble >= -2147483648.0 && d->valuedouble <= 2147483647.0 &&
                   d->valuedouble == (double)(int32_t)d->valuedouble;
    if (!ident || !integer) {
      char field[64];
      snprintf(field, sizeof field, "defines.%.40s", d->string ? d->string : "");
      return qd_tune_bad_(r, field, d, "a define: an identifier and an integer");
    }
    snprintf(x->name, sizeof x->name, "%s", d->string);
    x->value = (int32_t)d->valuedouble;
    k->define_count++;
  }
  int64_t c;
  QD_TRY(qd_tune_int_(r, e, "candidates", 0, 1e6, &c));
  k->candidates = (int32_t)c;
  QD_TRY(qd_tune_time_(r, e, "default_us", &k->default_us));
  return qd_tune_time_(r, e, "tuned_us", &k->tuned_us);
}

static qd_status_t qd_tune_read_report_(const qd_tune_reader_t* r, const cJSON* e, qd_tuning_report_t* p) {
  memset(p, 0, sizeof *p);
  QD_TRY(qd_tune_int_(r, e, "width", 1, 1 << 20, &p->width));
  QD_TRY(qd_tune_int_(r, e, "height", 1, 1 << 20, &p->height));
  QD_TRY(qd_tune_int_(r, e, "batch", 1, 4096, &p->batch));
  static const char* const names[2] = {"untuned_ms", "tuned_ms"};
  for (int w = 0; w < 2; w++) {
    const cJSON* a = cJSON_GetObjectItemCaseSensitive(e, names[w]);
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != QD_TUNING_CLASSES)
      return qd_tune_bad_(r, names[w], a, "6 times, one per op class");
    for (int c = 0; c < QD_TUNING_CLASSES; c++) {
      const cJSON* v = cJSON_GetArrayItem(a, c);
      if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 1e9)
        return qd_tune_bad_(r, names[w], a, "6 times, one per op class");
      (w ? p->tuned_ms : p->untuned_ms)[c] = v->valuedouble;
    }
  }
  return QD_OK;
}

static qd_status_t qd_tune_parse_root_(const cJSON* root, qd_tune_reader_t* r, qd_tuning_t* t) {
  if (!cJSON_IsObject(root)) return qd_tune_bad_(r, "(the section)", root, "a JSON object");
  int64_t v;
  QD_TRY(qd_tune_int_(r, root, "tuning_version", QD_TUNING_VERSION, QD_TUNING_VERSION, &v));
  QD_TRY(qd_tune_string_(r, root, "mode", t->mode, sizeof t->mode));
  if (strcmp(t->mode, "default") != 0 && strcmp(t->mode, "max") != 0)
    return qd_tune_bad_(r, "mode", cJSON_GetObjectItemCaseSensitive(root, "mode"), "\"default\" or \"max\"");
  QD_TRY(qd_tune_string_(r, root, "device", t->device, sizeof t->device));
  QD_TRY(qd_tune_string_(r, root, "arch", t->arch, sizeof t->arch));
  QD_TRY(qd_tune_int_(r, root, "driver", 0, 1e9, &v));
  t->driver = (int32_t)v;
  QD_TRY(qd_tune_int_(r, root, "cublaslt", 0, 1e9, &v));
  t->cublaslt = (int32_t)v;
  static const char* const lists[3] = {"gemms", "kernels", "report"};
  for (int l = 0; l < 3; l++) {
    const cJSON* a = cJSON_GetObjectItemCaseSensitive(root, lists[l]);
    if (!cJSON_IsArray(a)) return qd_tune_bad_(r, lists[l], a, "an array");
    int i = 0;
    const cJSON* e;
    cJSON_ArrayForEach(e, a) {
      snprintf(r->context, sizeof r->context, "%s[%d]", lists[l], i++);
      if (!cJSON_IsObject(e)) return qd_tune_bad_(r, "(the entry)", e, "an object");
      if (l == 0) {
        qd_tuning_gemm_t g;
        QD_TRY(qd_tune_read_gemm_(r, e, &g));
        QD_TRY(qd_tuning_add_gemm(t, &g));
      } else if (l == 1) {
        qd_tuning_kernel_t k;
        QD_TRY(qd_tune_read_kernel_(r, e, &k));
        QD_TRY(qd_tuning_add_kernel(t, &k));
      } else {
        qd_tuning_report_t p;
        QD_TRY(qd_tune_read_report_(r, e, &p));
        QD_TRY(qd_tuning_add_report(t, &p));
      }
    }
    r->context[0] = 0;
  }
  return QD_OK;
}

qd_status_t qd_tuning_parse(const char* json, uint64_t size, const char* where, qd_allocator_t a, qd_tuning_t** out) {
  *out = NULL;
  cJSON* root = cJSON_ParseWithLength(json, (size_t)size);
  if (!where) where = "tuning records";
  if (!root) return QD_ERR(BAD_INPUT, PLAN_CONTENT_JSON, "%s: the tuning records are not valid JSON", where);
  qd_tuning_t* t = NULL;
  qd_status_t s = qd_tuning_create(a, &t);
  qd_tune_reader_t r = {where, ""};
  if (!s) s = qd_tune_parse_root_(root, &r, t);
  cJSON_Delete(root);
  if (s) {
    qd_tuning_destroy(t);
    return s;
  }
  *out = t;
  return QD_OK;
}
