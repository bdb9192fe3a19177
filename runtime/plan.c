/* Opening plans: the container is validated by plan_file.c; this validates what is inside (plan_content.h) before
 * anything uses it. Messages name the plan, the section ("PROG/transformer"), the field and the value. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/log.h"
#include "runtime/plan_internal.h"

enum { QD_PLAN_MAX_COMPONENTS = 16, QD_PLAN_MAX_RESOLUTIONS = 64 };

struct qd_plan {
  qd_allocator_t allocator;
  qd_plan_file_t* file;
  char* meta_text;
  cJSON* meta;
  const char* model;
  qd_plan_component_t components[QD_PLAN_MAX_COMPONENTS];
  cJSON* progs[QD_PLAN_MAX_COMPONENTS];
  cJSON* widxs[QD_PLAN_MAX_COMPONENTS];
  int32_t component_count;
  qd_plan_kernel_targets_t kernel_targets;
};

/* --- JSON access with errors that name the place ----------------------------------------------------- */

typedef struct qd_jctx {
  const char* plan;    /* path */
  const char* section; /* "PROG/transformer" */
} qd_jctx_t;

static qd_status_t qd_jfield_(const qd_jctx_t* c, const cJSON* obj, const char* key, const char* what) {
  return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: %s: field \"%s\" %s", c->plan, c->section, key, what);
}

static qd_status_t qd_jstring_(const qd_jctx_t* c, const cJSON* obj, const char* key, const char** out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(obj, key);
  if (!cJSON_IsString(v)) return qd_jfield_(c, obj, key, v ? "is not a string" : "is missing");
  *out = v->valuestring;
  return QD_OK;
}

/* An integer in [lo, hi], given as a JSON number with no fractional part. */
static qd_status_t qd_jint_(const qd_jctx_t* c, const cJSON* v, const char* key, double lo, double hi, int64_t* out) {
  if (!cJSON_IsNumber(v)) return qd_jfield_(c, NULL, key, v ? "is not a number" : "is missing");
  double d = v->valuedouble;
  if (!(d == floor(d)) || d < lo || d > hi) {
    return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: %s: field \"%s\" is %.17g; expected an integer from %.0f to %.0f",
                  c->plan, c->section, key, d, lo, hi);
  }
  *out = (int64_t)d;
  return QD_OK;
}

static qd_status_t qd_jint_field_(const qd_jctx_t* c, const cJSON* obj, const char* key, double lo, double hi,
                                  int64_t* out) {
  return qd_jint_(c, cJSON_GetObjectItemCaseSensitive(obj, key), key, lo, hi, out);
}

static qd_status_t qd_jparse_(const qd_jctx_t* c, const qd_plan_section_t* sec, cJSON** out) {
  *out = cJSON_ParseWithLength(sec->data, (size_t)sec->size);
  if (!*out || !cJSON_IsObject(*out)) {
    cJSON_Delete(*out);
    *out = NULL;
    return QD_ERR(BAD_INPUT, PLAN_CONTENT_JSON, "%s: %s is not a JSON object", c->plan, c->section);
  }
  return QD_OK;
}

/* --- weight index ------------------------------------------------------------------------------------ */

static qd_status_t qd_plan_range_(const qd_jctx_t* c, const cJSON* e, const char* key, uint64_t section_size,
                                  qd_plan_range_t* out) {
  const cJSON* r = cJSON_GetObjectItemCaseSensitive(e, key);
  if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 2) return qd_jfield_(c, e, key, "is not [offset, bytes]");
  int64_t off, bytes;
  QD_TRY(qd_jint_(c, cJSON_GetArrayItem(r, 0), key, 0, 9007199254740992.0, &off));
  QD_TRY(qd_jint_(c, cJSON_GetArrayItem(r, 1), key, 0, 9007199254740992.0, &bytes));
  if ((uint64_t)off > section_size || (uint64_t)bytes > section_size - (uint64_t)off)
    return QD_ERR(BAD_INPUT, PLAN_WEIGHT_RANGE, "%s: %s: \"%s\" [%lld, +%lld) lies outside the %llu-byte weight section",
                  c->plan, c->section, key, (long long)off, (long long)bytes, (unsigned long long)section_size);
  if (off % QD_PLAN_WEIGHT_ALIGN)
    return QD_ERR(BAD_INPUT, PLAN_WEIGHT_RANGE, "%s: %s: \"%s\" offset %lld is not %d-byte aligned", c->plan,
                  c->section, key, (long long)off, QD_PLAN_WEIGHT_ALIGN);
  out->offset = (uint64_t)off;
  out->bytes = (uint64_t)bytes;
  return QD_OK;
}

typedef struct qd_range_owner {
  uint64_t begin, end;
  int32_t weight;
} qd_range_owner_t;

static int qd_range_cmp_(const void* a, const void* b) {
  const qd_range_owner_t *x = a, *y = b;
  return (x->begin > y->begin) - (x->begin < y->begin);
}

static qd_status_t qd_plan_parse_widx_(qd_plan_t* p, qd_plan_component_t* comp, const cJSON* widx, qd_jctx_t* c) {
  const cJSON* arr = cJSON_GetObjectItemCaseSensitive(widx, "weights");
  if (!cJSON_IsArray(arr)) return qd_jfield_(c, widx, "weights", "is not an array");
  int n = cJSON_GetArraySize(arr);
  if (n > (1 << 20)) return qd_jfield_(c, widx, "weights", "has too many entries");
  comp->weight_count = n;
  QD_TRY(qd_calloc(p->allocator, (size_t)(n ? n : 1), sizeof *comp->weights, (void**)&comp->weights));
  int i = 0;
  char where[96];
  for (const cJSON* e = arr->child; e; e = e->next, i++) {
    snprintf(where, sizeof where, "%s: weights[%d]", c->section, i);
    qd_jctx_t ec = {c->plan, where};
    qd_plan_weight_t* w = &comp->weights[i];
    const char* fmt;
    QD_TRY(qd_jstring_(&ec, e, "name", &w->name));
    QD_TRY(qd_jstring_(&ec, e, "format", &fmt));
    if (strcmp(fmt, "f32") == 0)
      w->format = QD_WEIGHT_FORMAT_F32;
    else if (strcmp(fmt, "bf16") == 0)
      w->format = QD_WEIGHT_FORMAT_BF16;
    else if (strcmp(fmt, "nf4") == 0)
      w->format = QD_WEIGHT_FORMAT_NF4;
    else
      return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: %s: format \"%s\" is not f32, bf16 or nf4", c->plan, where, fmt);
    const cJSON* shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > QD_GRAPH_MAX_RANK)
      return qd_jfield_(&ec, e, "shape", "is not an array of at most 8 sizes");
    w->shape.rank = cJSON_GetArraySize(shape);
    int d = 0;
    double numel = 1;
    for (const cJSON* dim = shape->child; dim; dim = dim->next, d++) {
      QD_TRY(qd_jint_(&ec, dim, "shape", 1, 1e12, &w->shape.dims[d]));
      numel *= (double)w->shape.dims[d];
    }
    if (numel > 1e12) return qd_jfield_(&ec, e, "shape", "describes more than 10^12 elements");
    QD_TRY(qd_plan_range_(&ec, e, "data", comp->weight_bytes, &w->data));
    if (w->format == QD_WEIGHT_FORMAT_NF4) {
      int64_t bs;
      QD_TRY(qd_jint_field_(&ec, e, "blocksize", 32, 4096, &bs));
      w->blocksize = (int32_t)bs;
      const cJSON* dq = cJSON_GetObjectItemCaseSensitive(e, "double_quant");
      if (!cJSON_IsBool(dq)) return qd_jfield_(&ec, e, "double_quant", "is not a boolean");
      w->double_quant = cJSON_IsTrue(dq);
      QD_TRY(qd_plan_range_(&ec, e, "absmax", comp->weight_bytes, &w->absmax));
      if (w->double_quant) {
        int64_t bits;
        QD_TRY(qd_plan_range_(&ec, e, "nested", comp->weight_bytes, &w->nested));
        QD_TRY(qd_jint_field_(&ec, e, "offset_bits", 0, 4294967295.0, &bits));
        uint32_t b32 = (uint32_t)bits;
        memcpy(&w->offset, &b32, 4);
        if (!isfinite(w->offset)) return qd_jfield_(&ec, e, "offset_bits", "is not a finite float");
      }
    }
    uint64_t want_d, want_a, want_n;
    qd_status_t s = qd_plan_weight_expected_sizes(w, &want_d, &want_a, &want_n);
    if (s) return qd_status_annotate(s, "%s: %s", c->plan, where);
    if (w->data.bytes != want_d || w->absmax.bytes != want_a || w->nested.bytes != want_n)
      return QD_ERR(BAD_INPUT, PLAN_WEIGHT_RANGE, "%s: %s ('%s'): %llu+%llu+%llu bytes stored, %llu+%llu+%llu expected for "
                    "its format and shape", c->plan, where, w->name, (unsigned long long)w->data.bytes,
                    (unsigned long long)w->absmax.bytes, (unsigned long long)w->nested.bytes,
                    (unsigned long long)want_d, (unsigned long long)want_a, (unsigned long long)want_n);
  }
  /* No two pieces of weight data may share bytes. */
  qd_range_owner_t* ranges;
  size_t cap = (size_t)(n ? n : 1) * 3;
  QD_TRY(qd_malloc(p->allocator, cap * sizeof *ranges, (void**)&ranges));
  size_t count = 0;
  for (int32_t k = 0; k < n; k++) {
    const qd_plan_weight_t* w = &comp->weights[k];
    const qd_plan_range_t* rs[3] = {&w->data, &w->absmax, &w->nested};
    for (int r = 0; r < 3; r++)
      if (rs[r]->bytes) ranges[count++] = (qd_range_owner_t){rs[r]->offset, rs[r]->offset + rs[r]->bytes, k};
  }
  qsort(ranges, count, sizeof *ranges, qd_range_cmp_);
  qd_status_t s = QD_OK;
  for (size_t k = 1; k < count && !s; k++)
    if (ranges[k].begin < ranges[k - 1].end)
      s = QD_ERR(BAD_INPUT, PLAN_WEIGHT_RANGE, "%s: %s: weights '%s' and '%s' share bytes at offset %llu", c->plan,
                 c->section, comp->weights[ranges[k - 1].weight].name, comp->weights[ranges[k].weight].name,
                 (unsigned long long)ranges[k].begin);
  qd_free(p->allocator, ranges, cap * sizeof *ranges);
  return s;
}

/* --- program ----------------------------------------------------------------------------------------- */

static qd_status_t qd_plan_parse_prog_(qd_plan_t* p, qd_plan_component_t* comp, const cJSON* prog, qd_jctx_t* c) {
  int64_t version;
  QD_TRY(qd_jint_field_(c, prog, "qd_program", 0, 1e9, &version));
  if (version != QD_PLAN_CONTENT_VERSION)
    return QD_ERR(UNSUPPORTED, PLAN_CONTENT_VERSION, "%s: %s: program version %lld; this qd reads version %d", c->plan,
                  c->section, (long long)version, QD_PLAN_CONTENT_VERSION);
  QD_TRY(qd_jstring_(c, prog, "config", &comp->config));
  QD_TRY(qd_jstring_(c, prog, "layout", &comp->layout));
  const cJSON* desc = cJSON_GetObjectItemCaseSensitive(prog, "description");
  if (!cJSON_IsObject(desc)) return qd_jfield_(c, prog, "description", "is not an object");
  char* text = cJSON_PrintUnformatted(desc);
  if (!text) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory reading %s", c->section);
  char source[256];
  snprintf(source, sizeof source, "%s: %s.description", c->plan, c->section);
  qd_status_t s = qd_graph_desc_parse(text, strlen(text), source, p->allocator, &comp->desc);
  free(text);
  QD_TRY(s);
  const cJSON* res = cJSON_GetObjectItemCaseSensitive(prog, "resolutions");
  if (!cJSON_IsArray(res) || cJSON_GetArraySize(res) < 1 || cJSON_GetArraySize(res) > QD_PLAN_MAX_RESOLUTIONS)
    return qd_jfield_(c, prog, "resolutions", "is not an array of 1 to 64 entries");
  comp->resolution_count = cJSON_GetArraySize(res);
  QD_TRY(qd_calloc(p->allocator, (size_t)comp->resolution_count, sizeof *comp->resolutions,
                   (void**)&comp->resolutions));
  int i = 0;
  char where[96];
  for (const cJSON* e = res->child; e; e = e->next, i++) {
    snprintf(where, sizeof where, "%s: resolutions[%d]", c->section, i);
    qd_jctx_t ec = {c->plan, where};
    qd_plan_resolution_t* r = &comp->resolutions[i];
    int64_t values;
    QD_TRY(qd_jint_field_(&ec, e, "width", 1, 65536, &r->width));
    QD_TRY(qd_jint_field_(&ec, e, "height", 1, 65536, &r->height));
    QD_TRY(qd_jint_field_(&ec, e, "batch", 1, 64, &r->batch));
    QD_TRY(qd_jint_field_(&ec, e, "values", 0, 1 << 24, &values));
    r->value_count = (int32_t)values;
    int64_t arena;
    QD_TRY(qd_jint_field_(&ec, e, "arena_bytes", 0, 9007199254740992.0, &arena));
    r->arena_bytes = (uint64_t)arena;
    const char* digest;
    QD_TRY(qd_jstring_(&ec, e, "digest", &digest));
    char* end;
    r->digest = strtoull(digest, &end, 16);
    if (strlen(digest) != 16 || *end) return qd_jfield_(&ec, e, "digest", "is not 16 hex digits");
    const cJSON* b = cJSON_GetObjectItemCaseSensitive(e, "bindings");
    if (!cJSON_IsObject(b) || cJSON_GetArraySize(b) > QD_PLAN_MAX_BINDINGS)
      return qd_jfield_(&ec, e, "bindings", "is not an object of at most 16 sizes");
    for (const cJSON* kv = b->child; kv; kv = kv->next) {
      qd_size_binding_t* sb = &r->bindings[r->binding_count++];
      sb->name = kv->string;
      QD_TRY(qd_jint_(&ec, kv, kv->string, 1, 1e12, &sb->value));
    }
    const cJSON* offs = cJSON_GetObjectItemCaseSensitive(e, "offsets");
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != r->value_count)
      return qd_jfield_(&ec, e, "offsets", "is not an array with one entry per value");
    QD_TRY(qd_calloc(p->allocator, (size_t)(r->value_count ? r->value_count : 1), sizeof(uint64_t),
                     (void**)&r->offsets));
    int v = 0;
    for (const cJSON* o = offs->child; o; o = o->next, v++) {
      int64_t off;
      QD_TRY(qd_jint_(&ec, o, "offsets", -1, (double)r->arena_bytes, &off));
      r->offsets[v] = off < 0 ? UINT64_MAX : (uint64_t)off;
    }
  }
  return QD_OK;
}

/* --- open / close ------------------------------------------------------------------------------------ */

void qd_plan_close(qd_plan_t* p) {
  if (!p) return;
  for (int32_t i = 0; i < p->component_count; i++) {
    qd_plan_component_t* comp = &p->components[i];
    for (int32_t r = 0; comp->resolutions && r < comp->resolution_count; r++)
      qd_free(p->allocator, comp->resolutions[r].offsets,
              (size_t)(comp->resolutions[r].value_count ? comp->resolutions[r].value_count : 1) * sizeof(uint64_t));
    qd_free(p->allocator, comp->resolutions, (size_t)comp->resolution_count * sizeof *comp->resolutions);
    qd_free(p->allocator, comp->weights, (size_t)(comp->weight_count ? comp->weight_count : 1) * sizeof *comp->weights);
    qd_graph_desc_destroy(comp->desc);
    qd_plan_kernels_free(p->allocator, comp->kernels, comp->kernel_count);
    cJSON_Delete(p->progs[i]);
    cJSON_Delete(p->widxs[i]);
  }
  cJSON_Delete(p->meta);
  if (p->meta_text) qd_free(p->allocator, p->meta_text, strlen(p->meta_text) + 1);
  qd_plan_file_close(p->file);
  qd_free(p->allocator, p, sizeof *p);
}

/* The components' KERN sections (plan_kernels.h), checked against what META says they were built for; a KERN
 * section that no component owns, or one without META "kernels", is a plan that disagrees with itself. */
static qd_status_t qd_plan_load_kernels_(qd_plan_t* p, const char* path) {
  for (size_t i = 0; i < qd_plan_file_section_count(p->file); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(p->file, i);
    if (sec->kind != QD_PLAN_KIND_KERN) continue;
    qd_plan_component_t* comp = NULL;
    for (int32_t k = 0; k < p->component_count && !comp; k++)
      if (strcmp(p->components[k].name, sec->name) == 0) comp = &p->components[k];
    if (!comp)
      return QD_ERR(BAD_INPUT, PLAN_COMPONENT_MISSING, "%s: KERN/%s belongs to no component META lists", path,
                    sec->name);
    if (!p->kernel_targets.present)
      return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: KERN/%s is there but META has no \"kernels\" saying what it "
                    "was built for", path, sec->name);
    QD_TRY(qd_plan_kernels_parse(path, sec->name, sec->data, sec->size, &p->kernel_targets, p->allocator,
                                 &comp->kernels, &comp->kernel_count));
  }
  return QD_OK;
}

static qd_status_t qd_plan_load_(qd_plan_t* p, const char* path) {
  const qd_plan_section_t* meta = qd_plan_file_find(p->file, QD_PLAN_KIND_META, "");
  if (!meta) return QD_ERR(BAD_INPUT, PLAN_COMPONENT_MISSING, "%s: no META section", path);
  qd_jctx_t c = {path, "META"};
  QD_TRY(qd_jparse_(&c, meta, &p->meta));
  QD_TRY(qd_strndup(p->allocator, meta->data, (size_t)meta->size, &p->meta_text));
  int64_t version;
  QD_TRY(qd_jint_field_(&c, p->meta, "qd_plan", 0, 1e9, &version));
  if (version != QD_PLAN_CONTENT_VERSION)
    return QD_ERR(UNSUPPORTED, PLAN_CONTENT_VERSION, "%s: META: contents version %lld; this qd reads version %d", path,
                  (long long)version, QD_PLAN_CONTENT_VERSION);
  QD_TRY(qd_jstring_(&c, p->meta, "model", &p->model));
  QD_TRY(qd_plan_kernels_parse_meta(path, p->meta, &p->kernel_targets));
  const cJSON* comps = cJSON_GetObjectItemCaseSensitive(p->meta, "components");
  if (!cJSON_IsArray(comps) || cJSON_GetArraySize(comps) < 1 || cJSON_GetArraySize(comps) > QD_PLAN_MAX_COMPONENTS)
    return qd_jfield_(&c, p->meta, "components", "is not an array of 1 to 16 components");
  for (const cJSON* e = comps->child; e; e = e->next) {
    qd_plan_component_t* comp = &p->components[p->component_count];
    p->component_count++;
    QD_TRY(qd_jstring_(&c, e, "name", &comp->name));
    for (int32_t k = 0; k + 1 < p->component_count; k++)
      if (strcmp(p->components[k].name, comp->name) == 0)
        return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: META lists component '%s' twice", path, comp->name);
    const qd_plan_section_t* prog = qd_plan_file_find(p->file, QD_PLAN_KIND_PROG, comp->name);
    const qd_plan_section_t* widx = qd_plan_file_find(p->file, QD_PLAN_KIND_WIDX, comp->name);
    const qd_plan_section_t* wght = qd_plan_file_find(p->file, QD_PLAN_KIND_WGHT, comp->name);
    if (!prog || !widx || !wght)
      return QD_ERR(BAD_INPUT, PLAN_COMPONENT_MISSING, "%s: component '%s' has no %s section", path, comp->name,
                    !prog ? "PROG" : !widx ? "WIDX" : "WGHT");
    comp->weight_data = wght->data;
    comp->weight_bytes = wght->size;
    char where[64];
    snprintf(where, sizeof where, "PROG/%s", comp->name);
    qd_jctx_t pc = {path, where};
    QD_TRY(qd_jparse_(&pc, prog, &p->progs[p->component_count - 1]));
    QD_TRY(qd_plan_parse_prog_(p, comp, p->progs[p->component_count - 1], &pc));
    snprintf(where, sizeof where, "WIDX/%s", comp->name);
    qd_jctx_t wc = {path, where};
    QD_TRY(qd_jparse_(&wc, widx, &p->widxs[p->component_count - 1]));
    QD_TRY(qd_plan_parse_widx_(p, comp, p->widxs[p->component_count - 1], &wc));
  }
  return qd_plan_load_kernels_(p, path);
}

qd_status_t qd_plan_open(const char* path, qd_allocator_t allocator, uint32_t flags, qd_plan_t** out) {
  *out = NULL;
  qd_plan_t* p;
  QD_TRY(qd_calloc(allocator, 1, sizeof *p, (void**)&p));
  p->allocator = allocator;
  qd_status_t s = qd_plan_file_open(path, allocator, flags, &p->file);
  if (!s) s = qd_plan_load_(p, path);
  /* Every program must instantiate to what was compiled: checked once here so later failures cannot happen. */
  for (int32_t i = 0; i < p->component_count && !s; i++)
    for (int32_t r = 0; r < p->components[i].resolution_count && !s; r++) {
      qd_graph_t* g = NULL;
      s = qd_plan_instantiate(p, i, r, allocator, &g);
      qd_graph_destroy(g);
    }
  if (s) {
    qd_plan_close(p);
    return s;
  }
  *out = p;
  return QD_OK;
}

/* --- queries ----------------------------------------------------------------------------------------- */

const char* qd_plan_path(const qd_plan_t* p) { return qd_plan_file_path(p->file); }
const char* qd_plan_model(const qd_plan_t* p) { return p->model; }
const char* qd_plan_metadata_json(const qd_plan_t* p) { return p->meta_text; }
int32_t qd_plan_component_count(const qd_plan_t* p) { return p->component_count; }
const char* qd_plan_component_name(const qd_plan_t* p, int32_t i) {
  return i >= 0 && i < p->component_count ? p->components[i].name : NULL;
}
int32_t qd_plan_find_component(const qd_plan_t* p, const char* name) {
  for (int32_t i = 0; i < p->component_count; i++)
    if (strcmp(p->components[i].name, name) == 0) return i;
  return -1;
}
int32_t qd_plan_resolution_count(const qd_plan_t* p, int32_t i) { return p->components[i].resolution_count; }
void qd_plan_resolution(const qd_plan_t* p, int32_t i, int32_t r, int64_t* w, int64_t* h, int64_t* b) {
  const qd_plan_resolution_t* res = &p->components[i].resolutions[r];
  *w = res->width;
  *h = res->height;
  *b = res->batch;
}
const qd_plan_component_t* qd_plan_component(const qd_plan_t* p, int32_t i) { return &p->components[i]; }
qd_plan_file_t* qd_plan_container(const qd_plan_t* p) { return p->file; }
const qd_plan_kernel_targets_t* qd_plan_kernel_targets(const qd_plan_t* p) { return &p->kernel_targets; }

static qd_status_t qd_plan_no_resolution_(const qd_plan_t* p, int32_t comp, const char* asked) {
  char have[512];
  size_t used = 0;
  const qd_plan_component_t* c = &p->components[comp];
  for (int32_t r = 0; r < c->resolution_count && used < sizeof have; r++) {
    int n = snprintf(have + used, sizeof have - used, "%s%lldx%lld (batch %lld)", r ? ", " : "",
                     (long long)c->resolutions[r].width, (long long)c->resolutions[r].height,
                     (long long)c->resolutions[r].batch);
    if (n > 0) used += (size_t)n;
  }
  return QD_ERR(INVALID_ARGUMENT, PLAN_NO_RESOLUTION,
                "%s: component '%s' was not compiled for %s; it has %s (compile with --resolutions to add one)",
                qd_plan_path(p), c->name, asked, have);
}

qd_status_t qd_plan_find_resolution(const qd_plan_t* p, int32_t comp, int64_t w, int64_t h, int64_t b, int32_t* out) {
  const qd_plan_component_t* c = &p->components[comp];
  for (int32_t r = 0; r < c->resolution_count; r++)
    if (c->resolutions[r].width == w && c->resolutions[r].height == h && c->resolutions[r].batch == b) {
      *out = r;
      return QD_OK;
    }
  char asked[96];
  snprintf(asked, sizeof asked, "%lldx%lld (batch %lld)", (long long)w, (long long)h, (long long)b);
  return qd_plan_no_resolution_(p, comp, asked);
}

qd_status_t qd_plan_find_resolution_by_bindings(const qd_plan_t* p, int32_t comp, const qd_size_binding_t* b,
                                                int32_t count, int32_t* out) {
  const qd_plan_component_t* c = &p->components[comp];
  for (int32_t r = 0; r < c->resolution_count; r++) {
    bool all = true;
    for (int32_t k = 0; k < count && all; k++) {
      bool found = false;
      for (int32_t j = 0; j < c->resolutions[r].binding_count; j++)
        if (strcmp(c->resolutions[r].bindings[j].name, b[k].name) == 0)
          found = c->resolutions[r].bindings[j].value == b[k].value;
      all = found;
    }
    if (all) {
      *out = r;
      return QD_OK;
    }
  }
  char asked[256];
  size_t used = 0;
  for (int32_t k = 0; k < count && used < sizeof asked; k++) {
    int n = snprintf(asked + used, sizeof asked - used, "%s%s=%lld", k ? " " : "", b[k].name, (long long)b[k].value);
    if (n > 0) used += (size_t)n;
  }
  return qd_plan_no_resolution_(p, comp, asked);
}

/* The instantiated program reads the weights WIDX lists, in its order and shapes. */
static qd_status_t qd_plan_check_weights_(const qd_plan_t* p, const qd_plan_component_t* c, const qd_graph_t* g) {
  if (g->weight_count != c->weight_count)
    return QD_ERR(BAD_INPUT, PLAN_WEIGHT_MISMATCH, "%s: WIDX/%s lists %d weights, the program reads %d",
                  qd_plan_path(p), c->name, c->weight_count, g->weight_count);
  for (int32_t w = 0; w < g->weight_count; w++)
    if (strcmp(g->weights[w].name, c->weights[w].name) != 0 || !qd_shape_equal(&g->weights[w].shape, &c->weights[w].shape))
      return QD_ERR(BAD_INPUT, PLAN_WEIGHT_MISMATCH, "%s: WIDX/%s: weight %d is '%s'; the program reads '%s' there",
                    qd_plan_path(p), c->name, w, c->weights[w].name, g->weights[w].name);
  return QD_OK;
}

qd_status_t qd_plan_instantiate(const qd_plan_t* p, int32_t comp, int32_t res, qd_allocator_t a, qd_graph_t** out) {
  *out = NULL;
  const qd_plan_component_t* c = &p->components[comp];
  const qd_plan_resolution_t* r = &c->resolutions[res];
  qd_graph_t* g;
  QD_TRY_CTX(qd_graph_desc_instantiate(c->desc, c->config, r->bindings, r->binding_count, a, &g),
             "%s: PROG/%s", qd_plan_path(p), c->name);
  qd_status_t s = QD_OK;
  if (qd_graph_digest(g) != r->digest)
    s = QD_ERR(BAD_INPUT, PLAN_PROGRAM_DIGEST,
               "%s: PROG/%s at %lldx%lld instantiates to a different program than the one compiled (digest %016llx, "
               "recorded %016llx); recompile the plan with this qd", qd_plan_path(p), c->name, (long long)r->width,
               (long long)r->height, (unsigned long long)qd_graph_digest(g), (unsigned long long)r->digest);
  if (!s && g->value_count != r->value_count)
    s = QD_ERR(BAD_INPUT, PLAN_MEMORY_PLAN, "%s: PROG/%s: the memory plan covers %d values, the program has %d",
               qd_plan_path(p), c->name, r->value_count, g->value_count);
  if (!s) s = qd_plan_check_weights_(p, c, g);
  if (s) {
    qd_graph_destroy(g);
    return s;
  }
  *out = g;
  return QD_OK;
}

qd_status_t qd_plan_instantiate_batch(const qd_plan_t* p, int32_t comp, int32_t res, int64_t batch, qd_allocator_t a,
                                      qd_graph_t** out) {
  *out = NULL;
  const qd_plan_component_t* c = &p->components[comp];
  const qd_plan_resolution_t* r = &c->resolutions[res];
  qd_size_binding_t b[QD_PLAN_MAX_BINDINGS];
  bool found = false;
  for (int32_t i = 0; i < r->binding_count; i++) {
    b[i] = r->bindings[i];
    if (strcmp(b[i].name, "batch") == 0) {
      b[i].value = batch;
      found = true;
    }
  }
  if (!found)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: PROG/%s binds no batch size", qd_plan_path(p), c->name);
  qd_graph_t* g;
  QD_TRY_CTX(qd_graph_desc_instantiate(c->desc, c->config, b, r->binding_count, a, &g), "%s: PROG/%s at batch %lld",
             qd_plan_path(p), c->name, (long long)batch);
  qd_status_t s = qd_plan_check_weights_(p, c, g);
  if (s) {
    qd_graph_destroy(g);
    return s;
  }
  *out = g;
  return QD_OK;
}

qd_status_t qd_plan_weights_f32(const qd_plan_t* p, int32_t comp, qd_allocator_t a, float*** out) {
  *out = NULL;
  const qd_plan_component_t* c = &p->components[comp];
  float** w;
  QD_TRY(qd_calloc(a, (size_t)(c->weight_count ? c->weight_count : 1), sizeof *w, (void**)&w));
  qd_status_t s = QD_OK;
  for (int32_t i = 0; i < c->weight_count && !s; i++) {
    size_t bytes = (size_t)qd_shape_numel(&c->weights[i].shape) * sizeof(float);
    s = qd_malloc(a, bytes, (void**)&w[i]);
    if (!s) s = qd_plan_weight_read_f32(&c->weights[i], c->weight_data, w[i]);
  }
  if (s) {
    qd_plan_weights_f32_free(p, comp, a, w);
    return s;
  }
  *out = w;
  return QD_OK;
}

void qd_plan_weights_f32_free(const qd_plan_t* p, int32_t comp, qd_allocator_t a, float** w) {
  if (!w) return;
  const qd_plan_component_t* c = &p->components[comp];
  for (int32_t i = 0; i < c->weight_count; i++)
    qd_free(a, w[i], (size_t)qd_shape_numel(&c->weights[i].shape) * sizeof(float));
  qd_free(a, w, (size_t)(c->weight_count ? c->weight_count : 1) * sizeof *w);
}
