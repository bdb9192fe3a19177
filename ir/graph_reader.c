/* Graph descriptions: structural checks, configurations, sizes, and block expansion into a flat graph.
 * The format is documented in docs/graph-format.md; every error names the JSON path of the problem. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/expr.h"
#include "ir/file_read.h"
#include "ir/graph_desc.h"

enum {
  QD_DESC_MAX_FILE = 64 << 20,
  QD_DESC_MAX_CALL_DEPTH = 16,
  QD_DESC_MAX_REPEAT = 4096,
  QD_DESC_MAX_NAME = 512,
  QD_DESC_MAX_PARAMS = 8, /* size parameters of one block */
};

struct qd_graph_desc {
  qd_allocator_t allocator;
  cJSON* root;
  char* source;
  const char* name;
  const char* default_config;
  cJSON* configs;
  cJSON* sizes;
  cJSON* inputs;
  cJSON* outputs;
  cJSON* blocks;
  cJSON* nodes;
  cJSON* bind;
  cJSON* resolution;
  cJSON* layouts;
  cJSON* quantization;
};

/* --- small JSON helpers --------------------------------------------------------------------------------- */

static const char* qd_json_type_name_(const cJSON* j) {
  if (!j) return "missing";
  if (cJSON_IsObject(j)) return "an object";
  if (cJSON_IsArray(j)) return "an array";
  if (cJSON_IsString(j)) return "a string";
  if (cJSON_IsNumber(j)) return "a number";
  if (cJSON_IsBool(j)) return "a boolean";
  if (cJSON_IsNull(j)) return "null";
  return "invalid";
}

static qd_status_t qd_desc_type_error_(const qd_graph_desc_t* d, const char* path, const cJSON* j,
                                       const char* expected) {
  return QD_ERR(BAD_INPUT, GRAPH_FIELD_TYPE, "%s: %s must be %s, not %s", d->source, path, expected,
                qd_json_type_name_(j));
}

/* Rejects duplicate keys everywhere and fields outside `allowed` (NULL-terminated) in this object. */
static qd_status_t qd_desc_check_object_(const qd_graph_desc_t* d, const char* path, const cJSON* obj,
                                         const char* const* allowed) {
  if (!cJSON_IsObject(obj)) return qd_desc_type_error_(d, path, obj, "an object");
  for (const cJSON* a = obj->child; a; a = a->next) {
    for (const cJSON* b = a->next; b; b = b->next)
      if (strcmp(a->string, b->string) == 0)
        return QD_ERR(BAD_INPUT, GRAPH_DUPLICATE_KEY, "%s: %s has the key \"%s\" twice", d->source, path, a->string);
    if (!allowed) continue;
    bool ok = false;
    for (const char* const* f = allowed; *f; f++)
      if (strcmp(*f, a->string) == 0) ok = true;
    if (!ok) return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_FIELD, "%s: %s has an unknown field \"%s\"", d->source, path,
                           a->string);
  }
  return QD_OK;
}

/* --- loading ---------------------------------------------------------------------------------------- */

void qd_graph_desc_destroy(qd_graph_desc_t* d) {
  if (!d) return;
  cJSON_Delete(d->root);
  qd_free(d->allocator, d->source, strlen(d->source) + 1);
  qd_free(d->allocator, d, sizeof *d);
}

static qd_status_t qd_desc_check_structure_(qd_graph_desc_t* d) {
  static const char* const top_fields[] = {"qd_graph", "name", "doc", "default_config", "configs", "bind",
                                           "resolution", "sizes", "inputs", "outputs", "blocks", "nodes",
                                           "weight_layouts", "quantization", NULL};
  QD_TRY(qd_desc_check_object_(d, "the document", d->root, top_fields));
  const cJSON* version = cJSON_GetObjectItemCaseSensitive(d->root, "qd_graph");
  if (!version)
    return QD_ERR(BAD_INPUT, GRAPH_FORMAT, "%s: not a qd graph description (no \"qd_graph\" version field)",
                  d->source);
  if (!cJSON_IsNumber(version) || version->valuedouble != 1.0)
    return QD_ERR(BAD_INPUT, GRAPH_FORMAT, "%s: \"qd_graph\" is %s; this qd reads version 1", d->source,
                  cJSON_IsNumber(version) ? "a different version" : qd_json_type_name_(version));
  const cJSON* name = cJSON_GetObjectItemCaseSensitive(d->root, "name");
  if (name && !cJSON_IsString(name)) return qd_desc_type_error_(d, "\"name\"", name, "a string");
  d->name = name ? name->valuestring : "graph";

  d->configs = cJSON_GetObjectItemCaseSensitive(d->root, "configs");
  if (!d->configs)
    return QD_ERR(BAD_INPUT, GRAPH_FIELD_MISSING, "%s: \"configs\" is missing (at least one configuration)",
                  d->source);
  QD_TRY(qd_desc_check_object_(d, "\"configs\"", d->configs, NULL));
  if (!d->configs->child) return QD_ERR(BAD_INPUT, GRAPH_FIELD_MISSING, "%s: \"configs\" is empty", d->source);
  for (cJSON* c = d->configs->child; c; c = c->next) {
    char path[QD_DESC_MAX_NAME];
    snprintf(path, sizeof path, "configs.%s", c->string);
    QD_TRY(qd_desc_check_object_(d, path, c, NULL));
  }
  const cJSON* def = cJSON_GetObjectItemCaseSensitive(d->root, "default_config");
  if (def && !cJSON_IsString(def)) return qd_desc_type_error_(d, "\"default_config\"", def, "a string");
  d->default_config = def ? def->valuestring : d->configs->child->string;
  if (!cJSON_GetObjectItemCaseSensitive(d->configs, d->default_config))
    return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_CONFIG, "%s: default_config \"%s\" is not one of the configs", d->source,
                  d->default_config);

  d->bind = cJSON_GetObjectItemCaseSensitive(d->root, "bind");
  if (d->bind) {
    if (!cJSON_IsArray(d->bind)) return qd_desc_type_error_(d, "\"bind\"", d->bind, "an array of names");
    for (cJSON* b = d->bind->child; b; b = b->next)
      if (!cJSON_IsString(b) || !qd_expr_is_name(b->valuestring))
        return qd_desc_type_error_(d, "an entry of \"bind\"", b, "a size name");
  }
  d->resolution = cJSON_GetObjectItemCaseSensitive(d->root, "resolution");
  if (d->resolution) {
    QD_TRY(qd_desc_check_object_(d, "\"resolution\"", d->resolution, NULL));
    for (cJSON* r = d->resolution->child; r; r = r->next) {
      bool bound = false;
      for (cJSON* b = d->bind ? d->bind->child : NULL; b; b = b->next) bound |= strcmp(b->valuestring, r->string) == 0;
      if (!bound)
        return QD_ERR(BAD_INPUT, GRAPH_FIELD_TYPE, "%s: resolution.%s: only names listed in \"bind\" derive from the "
                      "resolution", d->source, r->string);
      if (!cJSON_IsString(r) && !cJSON_IsNumber(r)) return qd_desc_type_error_(d, "a resolution entry", r, "an expression");
    }
  }
  d->sizes = cJSON_GetObjectItemCaseSensitive(d->root, "sizes");
  if (d->sizes) QD_TRY(qd_desc_check_object_(d, "\"sizes\"", d->sizes, NULL));
  d->inputs = cJSON_GetObjectItemCaseSensitive(d->root, "inputs");
  if (!d->inputs) return QD_ERR(BAD_INPUT, GRAPH_FIELD_MISSING, "%s: \"inputs\" is missing", d->source);
  QD_TRY(qd_desc_check_object_(d, "\"inputs\"", d->inputs, NULL));
  static const char* const input_fields[] = {"dtype", "shape", "when", "doc", NULL};
  for (cJSON* in = d->inputs->child; in; in = in->next) {
    char path[QD_DESC_MAX_NAME];
    snprintf(path, sizeof path, "inputs.%s", in->string);
    QD_TRY(qd_desc_check_object_(d, path, in, input_fields));
  }
  d->outputs = cJSON_GetObjectItemCaseSensitive(d->root, "outputs");
  if (!d->outputs) return QD_ERR(BAD_INPUT, GRAPH_FIELD_MISSING, "%s: \"outputs\" is missing", d->source);
  QD_TRY(qd_desc_check_object_(d, "\"outputs\"", d->outputs, NULL));
  for (cJSON* o = d->outputs->child; o; o = o->next)
    if (!cJSON_IsString(o)) {
      char path[QD_DESC_MAX_NAME];
      snprintf(path, sizeof path, "outputs.%s", o->string);
      return qd_desc_type_error_(d, path, o, "a value name");
    }
  d->blocks = cJSON_GetObjectItemCaseSensitive(d->root, "blocks");
  if (d->blocks) {
    QD_TRY(qd_desc_check_object_(d, "\"blocks\"", d->blocks, NULL));
    static const char* const block_fields[] = {"inputs", "outputs", "params", "nodes", "doc", NULL};
    for (cJSON* b = d->blocks->child; b; b = b->next) {
      char path[QD_DESC_MAX_NAME];
      snprintf(path, sizeof path, "blocks.%s", b->string);
      QD_TRY(qd_desc_check_object_(d, path, b, block_fields));
      const cJSON* bi = cJSON_GetObjectItemCaseSensitive(b, "inputs");
      const cJSON* bo = cJSON_GetObjectItemCaseSensitive(b, "outputs");
      const cJSON* bn = cJSON_GetObjectItemCaseSensitive(b, "nodes");
      if (!cJSON_IsArray(bi)) return qd_desc_type_error_(d, "a block's \"inputs\"", bi, "an array of names");
      for (cJSON* x = bi->child; x; x = x->next)
        if (!cJSON_IsString(x)) return qd_desc_type_error_(d, "a block input", x, "a name");
      QD_TRY(qd_desc_check_object_(d, "a block's \"outputs\"", bo, NULL));
      for (cJSON* x = bo->child; x; x = x->next)
        if (!cJSON_IsString(x)) return qd_desc_type_error_(d, "a block output", x, "a value name");
      if (!cJSON_IsArray(bn)) return qd_desc_type_error_(d, "a block's \"nodes\"", bn, "an array");
      const cJSON* bp = cJSON_GetObjectItemCaseSensitive(b, "params");
      if (bp && !cJSON_IsArray(bp)) return qd_desc_type_error_(d, "a block's \"params\"", bp, "an array of names");
      if (bp && cJSON_GetArraySize(bp) > QD_DESC_MAX_PARAMS)
        return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "%s: %s has %d params; the limit is %d", d->source, path,
                      cJSON_GetArraySize(bp), QD_DESC_MAX_PARAMS);
      for (const cJSON* x = bp ? bp->child : NULL; x; x = x->next) {
        if (!cJSON_IsString(x) || !qd_expr_is_name(x->valuestring))
          return qd_desc_type_error_(d, "a block param", x, "a size name");
        for (const cJSON* y = x->next; y; y = y->next)
          if (cJSON_IsString(y) && strcmp(x->valuestring, y->valuestring) == 0)
            return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.params lists \"%s\" twice", d->source, path,
                          x->valuestring);
      }
    }
  }
  d->nodes = cJSON_GetObjectItemCaseSensitive(d->root, "nodes");
  if (!cJSON_IsArray(d->nodes)) return qd_desc_type_error_(d, "\"nodes\"", d->nodes, "an array");
  d->layouts = cJSON_GetObjectItemCaseSensitive(d->root, "weight_layouts");
  if (d->layouts) QD_TRY(qd_desc_check_object_(d, "\"weight_layouts\"", d->layouts, NULL));
  d->quantization = cJSON_GetObjectItemCaseSensitive(d->root, "quantization");
  if (d->quantization) {
    static const char* const quant_fields[] = {"keep", "doc", NULL};
    QD_TRY(qd_desc_check_object_(d, "\"quantization\"", d->quantization, quant_fields));
    const cJSON* keep = cJSON_GetObjectItemCaseSensitive(d->quantization, "keep");
    if (keep && !cJSON_IsArray(keep))
      return qd_desc_type_error_(d, "quantization.keep", keep, "an array of weight-name patterns");
    for (const cJSON* k = keep ? keep->child : NULL; k; k = k->next)
      if (!cJSON_IsString(k) || !*k->valuestring)
        return qd_desc_type_error_(d, "an entry of quantization.keep", k, "a weight-name pattern");
  }
  return QD_OK;
}

qd_status_t qd_graph_desc_parse(const char* json, size_t length, const char* source_name, qd_allocator_t allocator,
                                qd_graph_desc_t** out_desc) {
  *out_desc = NULL;
  qd_graph_desc_t* d;
  QD_TRY(qd_calloc(allocator, 1, sizeof *d, (void**)&d));
  d->allocator = allocator;
  const char* src = source_name ? source_name : "graph";
  qd_status_t s = qd_strndup(allocator, src, strlen(src), &d->source);
  if (s) {
    qd_free(allocator, d, sizeof *d);
    return s;
  }
  const char* end = NULL;
  d->root = cJSON_ParseWithLengthOpts(json, length, &end, false);
  if (!d->root) {
    /* cJSON reports where it stopped; turn that into a line and column. */
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    int line = 1, col = 1;
    for (size_t i = 0; i < off && i < length; i++) {
      if (json[i] == '\n') {
        line++;
        col = 1;
      } else {
        col++;
      }
    }
    s = QD_ERR(BAD_INPUT, GRAPH_JSON, "%s: invalid JSON at line %d, column %d", d->source, line, col);
  } else {
    const char* p = end;
    while (p && p < json + length && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    if (p && p < json + length && *p != '\0')
      s = QD_ERR(BAD_INPUT, GRAPH_JSON, "%s: unexpected text after the JSON document", d->source);
  }
  if (!s) s = qd_desc_check_structure_(d);
  if (s) {
    qd_graph_desc_destroy(d);
    return s;
  }
  *out_desc = d;
  return QD_OK;
}

qd_status_t qd_graph_desc_read_file(const char* path, qd_allocator_t allocator, char** out_text, size_t* out_size) {
  return qd_file_read_all(allocator, path, QD_DESC_MAX_FILE, QD_E_GRAPH_TOO_LARGE, out_text, out_size);
}

qd_status_t qd_graph_desc_load_file(const char* path, qd_allocator_t allocator, qd_graph_desc_t** out_desc) {
  *out_desc = NULL;
  char* buf;
  size_t size;
  QD_TRY(qd_graph_desc_read_file(path, allocator, &buf, &size));
  qd_status_t s = qd_graph_desc_parse(buf, size, path, allocator, out_desc);
  qd_free(allocator, buf, size + 1);
  return s;
}

const char* qd_graph_desc_name(const qd_graph_desc_t* d) { return d->name; }
const char* qd_graph_desc_source(const qd_graph_desc_t* d) { return d->source; }
const char* qd_graph_desc_default_config(const qd_graph_desc_t* d) { return d->default_config; }
int32_t qd_graph_desc_config_count(const qd_graph_desc_t* d) { return cJSON_GetArraySize(d->configs); }
const char* qd_graph_desc_config_name(const qd_graph_desc_t* d, int32_t i) {
  const cJSON* c = cJSON_GetArrayItem(d->configs, i);
  return c ? c->string : NULL;
}
int32_t qd_graph_desc_binding_count(const qd_graph_desc_t* d) { return d->bind ? cJSON_GetArraySize(d->bind) : 0; }
const char* qd_graph_desc_binding_name(const qd_graph_desc_t* d, int32_t i) {
  const cJSON* b = d->bind ? cJSON_GetArrayItem(d->bind, i) : NULL;
  return b ? b->valuestring : NULL;
}
const struct cJSON* qd_graph_desc_layouts(const qd_graph_desc_t* d) { return d->layouts; }

/* Glob match where '*' matches any run of characters, dots included. Iterative: on a mismatch, the last '*'
 * absorbs one more character. */
static bool qd_desc_glob_(const char* pattern, const char* name) {
  const char *star = NULL, *resume = NULL;
  while (*name) {
    if (*pattern == '*') {
      star = pattern++;
      resume = name;
    } else if (*pattern == *name) {
      pattern++;
      name++;
    } else if (star) {
      pattern = star + 1;
      name = ++resume;
    } else {
      return false;
    }
  }
  while (*pattern == '*') pattern++;
  return *pattern == '\0';
}

bool qd_graph_desc_keep_unquantized(const qd_graph_desc_t* d, const char* weight_name) {
  const cJSON* keep = d->quantization ? cJSON_GetObjectItemCaseSensitive(d->quantization, "keep") : NULL;
  for (const cJSON* k = keep ? keep->child : NULL; k; k = k->next)
    if (qd_desc_glob_(k->valuestring, weight_name)) return true;
  return false;
}

/* --- symbols: configuration values, derived sizes, bindings, loop variables ------------------------------ */

/* Each call level binds its loop variable and its block's params. */
enum { QD_MAX_LOOP_VARS = QD_DESC_MAX_CALL_DEPTH * (1 + QD_DESC_MAX_PARAMS) };

typedef struct qd_loop_var {
  const char* name;
  int64_t value;
} qd_loop_var_t;

typedef struct qd_symbols {
  const qd_graph_desc_t* desc;
  const char* config_name;
  /* The configuration's chain, most derived first (configs may "extend" others). */
  const cJSON* chain[16];
  int chain_length;
  const qd_size_binding_t* bindings;
  int32_t binding_count;
  qd_loop_var_t loop[QD_MAX_LOOP_VARS];
  int loop_count;
  int in_size; /* > 0 while a derived size is evaluated: those are cached, so they must not see loop variables or
                  block params */
  /* Derived sizes are evaluated on first use; the state marks cycles. */
  uint8_t* size_state; /* 0 unvisited, 1 evaluating, 2 done */
  int64_t* size_value;
  int32_t size_count;
  qd_graph_t* record; /* when set, every evaluated size is recorded in the graph */
} qd_symbols_t;

static qd_status_t qd_symbols_init_(qd_symbols_t* sy, const qd_graph_desc_t* d, const char* config,
                                    const qd_size_binding_t* bindings, int32_t binding_count) {
  memset(sy, 0, sizeof *sy);
  sy->desc = d;
  sy->config_name = config ? config : d->default_config;
  sy->bindings = bindings;
  sy->binding_count = binding_count;
  const cJSON* c = cJSON_GetObjectItemCaseSensitive(d->configs, sy->config_name);
  if (!c) {
    char names[512];
    size_t used = 0;
    for (const cJSON* x = d->configs->child; x && used < sizeof names; x = x->next) {
      int n = snprintf(names + used, sizeof names - used, "%s%s", used ? ", " : "", x->string);
      if (n > 0) used += (size_t)n;
    }
    return QD_ERR(INVALID_ARGUMENT, GRAPH_UNKNOWN_CONFIG, "%s: no configuration \"%s\" (it has: %s)", d->source,
                  sy->config_name, names);
  }
  while (c) {
    for (int i = 0; i < sy->chain_length; i++)
      if (sy->chain[i] == c)
        return QD_ERR(BAD_INPUT, GRAPH_CONFIG_CYCLE, "%s: configs.%s extends itself through \"extends\"",
                      d->source, sy->config_name);
    if (sy->chain_length == (int)(sizeof sy->chain / sizeof sy->chain[0]))
      return QD_ERR(BAD_INPUT, GRAPH_CONFIG_CYCLE, "%s: configs.%s: \"extends\" chains deeper than 16", d->source,
                    sy->config_name);
    sy->chain[sy->chain_length++] = c;
    const cJSON* ext = cJSON_GetObjectItemCaseSensitive(c, "extends");
    if (!ext) break;
    if (!cJSON_IsString(ext)) return qd_desc_type_error_(d, "a config's \"extends\"", ext, "a config name");
    const cJSON* parent = cJSON_GetObjectItemCaseSensitive(d->configs, ext->valuestring);
    if (!parent)
      return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_CONFIG, "%s: configs.%s.extends: no configuration \"%s\"", d->source,
                    c->string, ext->valuestring);
    c = parent;
  }
  sy->size_count = d->sizes ? cJSON_GetArraySize(d->sizes) : 0;
  if (sy->size_count) {
    QD_TRY(qd_calloc(d->allocator, (size_t)sy->size_count, 1, (void**)&sy->size_state));
    qd_status_t s = qd_calloc(d->allocator, (size_t)sy->size_count, sizeof(int64_t), (void**)&sy->size_value);
    if (s) {
      qd_free(d->allocator, sy->size_state, (size_t)sy->size_count);
      return s;
    }
  }
  return QD_OK;
}

static void qd_symbols_deinit_(qd_symbols_t* sy) {
  qd_free(sy->desc->allocator, sy->size_state, (size_t)sy->size_count);
  qd_free(sy->desc->allocator, sy->size_value, (size_t)sy->size_count * sizeof(int64_t));
}

/* The configuration entry for a name (most derived config first), or NULL. */
static const cJSON* qd_symbols_config_item_(const qd_symbols_t* sy, const char* name, size_t len) {
  for (int i = 0; i < sy->chain_length; i++)
    for (const cJSON* it = sy->chain[i]->child; it; it = it->next)
      if (strncmp(it->string, name, len) == 0 && it->string[len] == '\0' && strcmp(it->string, "extends") != 0)
        return it;
  return NULL;
}

static qd_status_t qd_symbols_lookup_(void* user, const char* name, size_t len, int64_t* out);

static qd_status_t qd_json_to_int_(const qd_symbols_t* sy, const cJSON* j, const char* what, int64_t* out) {
  if (cJSON_IsBool(j)) {
    *out = cJSON_IsTrue(j) ? 1 : 0;
    return QD_OK;
  }
  if (cJSON_IsNumber(j)) {
    double v = j->valuedouble;
    if (!(v == floor(v)) || fabs(v) > 9007199254740992.0)
      return QD_ERR(BAD_INPUT, GRAPH_EXPR_NOT_INTEGER, "%s: %s is %g; a size must be an integer", sy->desc->source,
                    what, v);
    *out = (int64_t)v;
    return QD_OK;
  }
  if (cJSON_IsString(j)) {
    qd_status_t s = qd_expr_eval(j->valuestring, qd_symbols_lookup_, (void*)sy, out);
    if (s) return qd_status_annotate(s, "%s: %s", sy->desc->source, what);
    return QD_OK;
  }
  return QD_ERR(BAD_INPUT, GRAPH_EXPR_NOT_INTEGER, "%s: %s is %s; a size must be an integer or an expression",
                sy->desc->source, what, qd_json_type_name_(j));
}

static qd_status_t qd_symbols_lookup_(void* user, const char* name, size_t len, int64_t* out) {
  qd_symbols_t* sy = user;
  for (int i = sy->in_size ? -1 : sy->loop_count - 1; i >= 0; i--)
    if (strncmp(sy->loop[i].name, name, len) == 0 && sy->loop[i].name[len] == '\0') {
      *out = sy->loop[i].value;
      return QD_OK;
    }
  for (int32_t i = 0; i < sy->binding_count; i++)
    if (strncmp(sy->bindings[i].name, name, len) == 0 && sy->bindings[i].name[len] == '\0') {
      *out = sy->bindings[i].value;
      return QD_OK;
    }
  const cJSON* item = qd_symbols_config_item_(sy, name, len);
  if (item) {
    if (cJSON_IsArray(item))
      return QD_ERR(BAD_INPUT, GRAPH_EXPR_NOT_INTEGER, "%s: configs.%s.%.*s is a list, used where a size is needed",
                    sy->desc->source, sy->config_name, (int)len, name);
    if (!cJSON_IsNumber(item) && !cJSON_IsBool(item))
      return QD_ERR(BAD_INPUT, GRAPH_BAD_CONFIG_VALUE, "%s: configs.%s.%.*s is %s; config values are numbers, "
                    "booleans or lists of integers", sy->desc->source, sy->config_name, (int)len, name,
                    qd_json_type_name_(item));
    char what[QD_DESC_MAX_NAME];
    snprintf(what, sizeof what, "configs.%s.%.*s", sy->config_name, (int)len, name);
    QD_TRY(qd_json_to_int_(sy, item, what, out));
    if (sy->record) {
      char key[QD_DESC_MAX_NAME];
      snprintf(key, sizeof key, "%.*s", (int)len, name);
      QD_TRY(qd_graph_record_size(sy->record, key, *out));
    }
    return QD_OK;
  }
  int32_t idx = 0;
  for (cJSON* it = sy->desc->sizes ? sy->desc->sizes->child : NULL; it; it = it->next, idx++) {
    if (strncmp(it->string, name, len) != 0 || it->string[len] != '\0') continue;
    if (sy->size_state[idx] == 2) {
      *out = sy->size_value[idx];
      return QD_OK;
    }
    if (sy->size_state[idx] == 1)
      return QD_ERR(BAD_INPUT, GRAPH_SIZE_CYCLE, "%s: sizes.%s is defined in terms of itself", sy->desc->source,
                    it->string);
    sy->size_state[idx] = 1;
    char what[QD_DESC_MAX_NAME];
    snprintf(what, sizeof what, "sizes.%s", it->string);
    sy->in_size++;
    qd_status_t s = qd_json_to_int_(sy, it, what, out);
    sy->in_size--;
    if (s) return s;
    sy->size_state[idx] = 2;
    sy->size_value[idx] = *out;
    if (sy->record) QD_TRY(qd_graph_record_size(sy->record, it->string, *out));
    return QD_OK;
  }
  for (int32_t i = 0; i < qd_graph_desc_binding_count(sy->desc); i++) {
    const char* b = qd_graph_desc_binding_name(sy->desc, i);
    if (strncmp(b, name, len) == 0 && b[len] == '\0')
      return QD_ERR(INVALID_ARGUMENT, GRAPH_BINDING_MISSING,
                    "%s: size '%s' must be bound by the caller (from the inputs or the resolution)", sy->desc->source,
                    b);
  }
  for (int i = 0; i < sy->loop_count && sy->in_size; i++)
    if (strncmp(sy->loop[i].name, name, len) == 0 && sy->loop[i].name[len] == '\0')
      return QD_ERR(BAD_INPUT, GRAPH_EXPR_UNKNOWN_NAME, "%s: '%.*s' is a loop variable or block param; \"sizes\" are "
                    "evaluated once and cannot use those (write the expression where it is needed)", sy->desc->source,
                    (int)len, name);
  return QD_ERR(BAD_INPUT, GRAPH_EXPR_UNKNOWN_NAME, "%s: '%.*s' is not a config value, a size or a bound name",
                sy->desc->source, (int)len, name);
}

/* Evaluates a JSON size (integer, boolean or expression string). */
static qd_status_t qd_symbols_int_(qd_symbols_t* sy, const cJSON* j, const char* path, int64_t* out) {
  return qd_json_to_int_(sy, j, path, out);
}

/* Evaluates a "when" condition; absent means true. */
static qd_status_t qd_symbols_when_(qd_symbols_t* sy, const cJSON* obj, const char* path, bool* out) {
  const cJSON* w = cJSON_GetObjectItemCaseSensitive(obj, "when");
  if (!w) {
    *out = true;
    return QD_OK;
  }
  char what[QD_DESC_MAX_NAME];
  snprintf(what, sizeof what, "%s.when", path);
  int64_t v;
  QD_TRY(qd_symbols_int_(sy, w, what, &v));
  *out = v != 0;
  return QD_OK;
}

/* Expands "{expr}" placeholders in a name ("transformer_blocks.{i}." -> "transformer_blocks.3."). */
static qd_status_t qd_symbols_subst_(qd_symbols_t* sy, const char* text, const char* path, char* out,
                                     size_t size) {
  size_t o = 0;
  for (const char* p = text; *p;) {
    if (*p == '{') {
      const char* close = strchr(p, '}');
      if (!close)
        return QD_ERR(BAD_INPUT, GRAPH_EXPR_SYNTAX, "%s: %s: unclosed '{' in \"%s\"", sy->desc->source, path, text);
      char expr[128];
      size_t n = (size_t)(close - p - 1);
      if (n >= sizeof expr)
        return QD_ERR(BAD_INPUT, GRAPH_EXPR_SYNTAX, "%s: %s: placeholder too long in \"%s\"", sy->desc->source,
                      path, text);
      memcpy(expr, p + 1, n);
      expr[n] = '\0';
      int64_t v;
      qd_status_t s = qd_expr_eval(expr, qd_symbols_lookup_, sy, &v);
      if (s) return qd_status_annotate(s, "%s: %s", sy->desc->source, path);
      int w = snprintf(out + o, o < size ? size - o : 0, "%lld", (long long)v);
      if (w > 0) o += (size_t)w;
      p = close + 1;
    } else {
      if (o + 1 < size) out[o] = *p;
      o++;
      p++;
    }
  }
  if (o >= size)
    return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "%s: %s: the name \"%s\" is too long once expanded", sy->desc->source,
                  path, text);
  out[o] = '\0';
  return QD_OK;
}

qd_status_t qd_graph_desc_eval(const qd_graph_desc_t* d, const char* config, const qd_size_binding_t* bindings,
                               int32_t binding_count, const char* expression, int64_t* out_value) {
  qd_symbols_t sy;
  QD_TRY(qd_symbols_init_(&sy, d, config, bindings, binding_count));
  qd_status_t s = qd_expr_eval(expression, qd_symbols_lookup_, &sy, out_value);
  qd_symbols_deinit_(&sy);
  return s;
}

qd_status_t qd_graph_desc_resolution_bindings(const qd_graph_desc_t* d, const char* config, int64_t width,
                                              int64_t height, int64_t batch, qd_size_binding_t* bindings,
                                              int32_t capacity, int32_t* out_count) {
  if (!d->resolution)
    return QD_ERR(INVALID_ARGUMENT, GRAPH_BINDING_MISSING, "%s: graph '%s' does not derive its sizes from an image "
                  "resolution (it has no \"resolution\" section)", d->source, d->name);
  qd_size_binding_t base[3] = {{"width", width}, {"height", height}, {"batch", batch}};
  qd_symbols_t sy;
  QD_TRY(qd_symbols_init_(&sy, d, config, base, 3));
  qd_status_t s = QD_OK;
  int32_t n = 0;
  /* batch is always bound; the section adds the rest. */
  for (cJSON* b = d->bind ? d->bind->child : NULL; b && !s; b = b->next) {
    if (strcmp(b->valuestring, "batch") != 0) continue;
    if (n == capacity) break;
    bindings[n].name = b->valuestring;
    bindings[n++].value = batch;
  }
  for (cJSON* r = d->resolution->child; r && !s; r = r->next) {
    if (n == capacity) {
      s = QD_ERR(INVALID_ARGUMENT, GRAPH_TOO_LARGE, "more than %d bound sizes", capacity);
      break;
    }
    char what[QD_DESC_MAX_NAME];
    snprintf(what, sizeof what, "resolution.%s", r->string);
    s = qd_symbols_int_(&sy, r, what, &bindings[n].value);
    if (s) {
      s = qd_status_annotate(s, "resolution %lldx%lld", (long long)width, (long long)height);
      break;
    }
    if (bindings[n].value <= 0) {
      s = QD_ERR(INVALID_ARGUMENT, GRAPH_BAD_SIZE, "%s: resolution %lldx%lld gives %s = %lld", d->source,
                 (long long)width, (long long)height, r->string, (long long)bindings[n].value);
      break;
    }
    bindings[n++].name = r->string;
  }
  qd_symbols_deinit_(&sy);
  if (!s) *out_count = n;
  return s;
}

/* --- inputs ------------------------------------------------------------------------------------------ */

static qd_status_t qd_desc_input_dtype_(const qd_graph_desc_t* d, const cJSON* in, const char* path,
                                        qd_dtype_t* out) {
  const cJSON* dt = cJSON_GetObjectItemCaseSensitive(in, "dtype");
  if (!dt) {
    *out = QD_DTYPE_F32;
    return QD_OK;
  }
  if (!cJSON_IsString(dt)) return qd_desc_type_error_(d, path, dt, "a dtype name such as \"F32\"");
  qd_dtype_t t = qd_dtype_from_name(dt->valuestring, strlen(dt->valuestring));
  if (t != QD_DTYPE_F32 && t != QD_DTYPE_I32 && t != QD_DTYPE_I64)
    return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_DTYPE, "%s: %s.dtype is \"%s\"; graph inputs are F32, I32 or I64",
                  d->source, path, dt->valuestring);
  *out = t;
  return QD_OK;
}

static qd_status_t qd_desc_input_shape_(qd_symbols_t* sy, const cJSON* in, const char* path, qd_shape_t* out) {
  const qd_graph_desc_t* d = sy->desc;
  const cJSON* sh = cJSON_GetObjectItemCaseSensitive(in, "shape");
  if (!cJSON_IsArray(sh)) return qd_desc_type_error_(d, path, sh, "an object with a \"shape\" array");
  int n = cJSON_GetArraySize(sh);
  if (n > QD_GRAPH_MAX_RANK)
    return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "%s: %s.shape has %d dimensions; the limit is %d", d->source, path, n,
                  QD_GRAPH_MAX_RANK);
  memset(out, 0, sizeof *out);
  out->rank = n;
  int i = 0;
  for (const cJSON* dim = sh->child; dim; dim = dim->next, i++) {
    char what[QD_DESC_MAX_NAME];
    snprintf(what, sizeof what, "%s.shape[%d]", path, i);
    QD_TRY(qd_symbols_int_(sy, dim, what, &out->dims[i]));
    if (out->dims[i] <= 0)
      return QD_ERR(BAD_INPUT, GRAPH_BAD_SIZE, "%s: %s is %lld; dimensions must be positive", d->source, what,
                    (long long)out->dims[i]);
  }
  return QD_OK;
}

qd_status_t qd_graph_desc_infer_bindings(const qd_graph_desc_t* d, const char* config,
                                         qd_graph_input_shape_fn shape_of, void* user, qd_size_binding_t* bindings,
                                         int32_t capacity, int32_t* out_count) {
  int32_t count = 0;
  qd_symbols_t sy;
  QD_TRY(qd_symbols_init_(&sy, d, config, NULL, 0));
  qd_status_t s = QD_OK;
  for (const cJSON* in = d->inputs->child; in && !s; in = in->next) {
    const cJSON* sh = cJSON_GetObjectItemCaseSensitive(in, "shape");
    qd_shape_t actual;
    if (!cJSON_IsArray(sh) || !shape_of(user, in->string, &actual)) continue;
    int i = 0;
    for (const cJSON* dim = sh->child; dim && !s; dim = dim->next, i++) {
      if (!cJSON_IsString(dim) || !qd_expr_is_name(dim->valuestring)) continue;
      bool bound = false;
      for (int32_t b = 0; b < qd_graph_desc_binding_count(d); b++)
        if (strcmp(qd_graph_desc_binding_name(d, b), dim->valuestring) == 0) bound = true;
      if (!bound || i >= actual.rank) continue;
      int32_t existing = -1;
      for (int32_t k = 0; k < count; k++)
        if (strcmp(bindings[k].name, dim->valuestring) == 0) existing = k;
      if (existing >= 0) {
        if (bindings[existing].value != actual.dims[i])
          s = QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE,
                     "input '%s': dimension %d is %lld, but another input gives '%s' = %lld", in->string, i,
                     (long long)actual.dims[i], dim->valuestring, (long long)bindings[existing].value);
        continue;
      }
      if (count == capacity) {
        s = QD_ERR(INVALID_ARGUMENT, GRAPH_TOO_LARGE, "more than %d bound sizes", capacity);
        break;
      }
      bindings[count].name = dim->valuestring;
      bindings[count].value = actual.dims[i];
      count++;
    }
  }
  qd_symbols_deinit_(&sy);
  if (!s) *out_count = count;
  return s;
}

/* --- expansion --------------------------------------------------------------------------------------- */

/* A node collected during expansion, before values exist: inputs and output by qualified name. */
typedef struct qd_pending_node {
  qd_op_t op;
  const char* output;
  const char* inputs[QD_NODE_MAX_INPUTS];
  int32_t input_count;
  const char* weight_base;
  const char* origin;
  qd_attr_value_t attrs[QD_MAX_ATTRS];
} qd_pending_node_t;

/* Names visible in one block instance (or the top level): local name -> qualified name. */
typedef struct qd_scope {
  qd_strmap_t map;
  const char** targets;
  int32_t count, capacity;
} qd_scope_t;

typedef struct qd_expand {
  const qd_graph_desc_t* desc;
  qd_symbols_t* sy;
  qd_graph_t* g;          /* owns the arena used for every name */
  qd_allocator_t allocator;
  qd_pending_node_t* nodes;
  int32_t node_count, node_capacity;
  /* Qualified aliases made by call outputs: name -> target qualified name. */
  qd_scope_t aliases;
  const char* call_stack[QD_DESC_MAX_CALL_DEPTH];
  int call_depth;
  qd_strmap_t instance_paths;
} qd_expand_t;

static void qd_scope_init_(qd_scope_t* sc, qd_allocator_t a) {
  memset(sc, 0, sizeof *sc);
  qd_strmap_init(&sc->map, a);
}

static void qd_scope_deinit_(qd_scope_t* sc) {
  qd_free(sc->map.allocator, sc->targets, (size_t)sc->capacity * sizeof *sc->targets);
  qd_strmap_deinit(&sc->map);
}

/* Binds a local name; returns GRAPH_VALUE_REDEFINED if it is already bound. */
static qd_status_t qd_scope_bind_(qd_expand_t* x, qd_scope_t* sc, const char* name, const char* target,
                                  const char* path) {
  if (qd_strmap_get(&sc->map, name) >= 0)
    return QD_ERR(BAD_INPUT, GRAPH_VALUE_REDEFINED, "%s: %s: value '%s' is defined twice", x->desc->source, path,
                  name);
  if (sc->count == sc->capacity) {
    int32_t cap = sc->capacity ? sc->capacity * 2 : 32;
    void* p;
    QD_TRY(qd_realloc(x->allocator, sc->targets, (size_t)sc->capacity * sizeof *sc->targets,
                      (size_t)cap * sizeof *sc->targets, &p));
    sc->targets = p;
    sc->capacity = cap;
  }
  char* key;
  QD_TRY(qd_arena_strdup(&x->g->arena, name, &key));
  sc->targets[sc->count] = target;
  QD_TRY(qd_strmap_put(&sc->map, key, sc->count, NULL));
  sc->count++;
  return QD_OK;
}

static const char* qd_scope_get_(const qd_scope_t* sc, const char* name) {
  int32_t i = qd_strmap_get(&sc->map, name);
  return i >= 0 ? sc->targets[i] : NULL;
}

static qd_status_t qd_expand_qualify_(qd_expand_t* x, const char* instance, const char* name, const char** out) {
  if (!instance || !*instance) return qd_arena_strdup(&x->g->arena, name, (char**)out);
  return qd_arena_printf(&x->g->arena, (char**)out, "%s:%s", instance, name);
}

static qd_status_t qd_expand_resolve_(qd_expand_t* x, const qd_scope_t* sc, const cJSON* ref, const char* path,
                                      const char* block, const char** out) {
  if (!cJSON_IsString(ref)) return qd_desc_type_error_(x->desc, path, ref, "a value name");
  const char* q = qd_scope_get_(sc, ref->valuestring);
  if (!q) {
    if (block)
      return QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE,
                    "%s: %s: '%s' is not defined in block '%s' (blocks see only their inputs and their own values)",
                    x->desc->source, path, ref->valuestring, block);
    return QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE, "%s: %s: '%s' is not an input or the output of any node",
                  x->desc->source, path, ref->valuestring);
  }
  *out = q;
  return QD_OK;
}

static qd_status_t qd_expand_push_node_(qd_expand_t* x, qd_pending_node_t** out) {
  if (x->node_count == x->node_capacity) {
    if (x->node_capacity >= (1 << 22))
      return QD_ERR(BAD_INPUT, GRAPH_TOO_LARGE, "%s: the graph expands to more than %d nodes", x->desc->source,
                    1 << 22);
    int32_t cap = x->node_capacity ? x->node_capacity * 2 : 256;
    void* p;
    QD_TRY(qd_realloc(x->allocator, x->nodes, (size_t)x->node_capacity * sizeof *x->nodes,
                      (size_t)cap * sizeof *x->nodes, &p));
    x->nodes = p;
    x->node_capacity = cap;
  }
  *out = &x->nodes[x->node_count++];
  memset(*out, 0, sizeof **out);
  return QD_OK;
}

/* Reads one attribute according to its spec (or its default). */
static qd_status_t qd_expand_attr_(qd_expand_t* x, const qd_attr_spec_t* spec, const cJSON* node, const char* path,
                                   const char* op_name, qd_attr_value_t* out) {
  const cJSON* j = cJSON_GetObjectItemCaseSensitive(node, spec->name);
  char what[QD_DESC_MAX_NAME];
  snprintf(what, sizeof what, "%s.%s", path, spec->name);
  cJSON* parsed_default = NULL;
  if (!j) {
    if (!spec->default_value)
      return QD_ERR(BAD_INPUT, GRAPH_BAD_ATTR, "%s: %s: op '%s' needs the attribute \"%s\"", x->desc->source, path,
                    op_name, spec->name);
    parsed_default = cJSON_Parse(spec->default_value);
    if (!parsed_default) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "cannot parse a default attribute value");
    j = parsed_default;
  }
  qd_status_t s = QD_OK;
  switch (spec->type) {
    case QD_ATTR_INT: s = qd_symbols_int_(x->sy, j, what, &out->i); break;
    case QD_ATTR_FLOAT:
      if (cJSON_IsNumber(j)) {
        out->f = j->valuedouble;
      } else if (cJSON_IsString(j)) {
        const cJSON* item = qd_symbols_config_item_(x->sy, j->valuestring, strlen(j->valuestring));
        if (item && cJSON_IsNumber(item)) {
          out->f = item->valuedouble;
        } else {
          int64_t v;
          s = qd_symbols_int_(x->sy, j, what, &v);
          out->f = (double)v;
        }
      } else {
        s = qd_desc_type_error_(x->desc, what, j, "a number");
      }
      break;
    case QD_ATTR_INTS: {
      const cJSON* list = j;
      if (cJSON_IsString(j)) {
        list = qd_symbols_config_item_(x->sy, j->valuestring, strlen(j->valuestring));
        if (!list) {
          s = QD_ERR(BAD_INPUT, GRAPH_EXPR_UNKNOWN_NAME, "%s: %s: no config list \"%s\"", x->desc->source, what,
                     j->valuestring);
          break;
        }
      }
      if (!cJSON_IsArray(list)) {
        s = qd_desc_type_error_(x->desc, what, list, "a list of integers");
        break;
      }
      int n = cJSON_GetArraySize(list);
      if (n > QD_MAX_ATTR_LIST) {
        s = QD_ERR(BAD_INPUT, GRAPH_BAD_ATTR, "%s: %s has %d entries; the limit is %d", x->desc->source, what, n,
                   QD_MAX_ATTR_LIST);
        break;
      }
      out->count = n;
      int i = 0;
      for (const cJSON* e = list->child; e && !s; e = e->next, i++) s = qd_symbols_int_(x->sy, e, what, &out->list[i]);
      break;
    }
    case QD_ATTR_NONE: break;
  }
  cJSON_Delete(parsed_default);
  return s;
}

static qd_status_t qd_expand_nodes_(qd_expand_t* x, const cJSON* nodes, qd_scope_t* scope, const char* json_path,
                                    const char* instance, const char* weight_prefix, const char* block_name);

static qd_status_t qd_expand_op_(qd_expand_t* x, const cJSON* node, const char* path, qd_scope_t* scope,
                                 const char* instance, const char* weight_prefix, const char* block_name) {
  const cJSON* op = cJSON_GetObjectItemCaseSensitive(node, "op");
  if (!cJSON_IsString(op)) return qd_desc_type_error_(x->desc, path, op, "an object with an \"op\" name");
  qd_op_t kind = qd_op_from_name(op->valuestring);
  if (kind == QD_OP_INVALID)
    return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_OP, "%s: %s: unknown op \"%s\" (see ir/ops.def for the list)",
                  x->desc->source, path, op->valuestring);
  const qd_op_info_t* info = qd_op_info(kind);
  /* Fields: the fixed ones plus this op's attributes. */
  const char* allowed[8 + QD_MAX_ATTRS] = {"op", "in", "out", "weight", "when", "doc", NULL};
  int n_allowed = 6;
  for (int i = 0; i < QD_MAX_ATTRS; i++)
    if (info->attrs[i].name) allowed[n_allowed++] = info->attrs[i].name;
  allowed[n_allowed] = NULL;
  QD_TRY(qd_desc_check_object_(x->desc, path, node, allowed));

  qd_pending_node_t* pn = NULL;
  QD_TRY(qd_expand_push_node_(x, &pn));
  pn->op = kind;
  const cJSON* in = cJSON_GetObjectItemCaseSensitive(node, "in");
  char what[QD_DESC_MAX_NAME];
  if (cJSON_IsString(in)) {
    snprintf(what, sizeof what, "%s.in", path);
    QD_TRY(qd_expand_resolve_(x, scope, in, what, block_name, &pn->inputs[0]));
    pn->input_count = 1;
  } else if (cJSON_IsArray(in)) {
    int n = cJSON_GetArraySize(in);
    if (n > QD_NODE_MAX_INPUTS)
      return QD_ERR(BAD_INPUT, GRAPH_ARITY, "%s: %s: %d inputs; at most %d", x->desc->source, path, n,
                    QD_NODE_MAX_INPUTS);
    int i = 0;
    for (const cJSON* r = in->child; r; r = r->next, i++) {
      snprintf(what, sizeof what, "%s.in[%d]", path, i);
      QD_TRY(qd_expand_resolve_(x, scope, r, what, block_name, &pn->inputs[i]));
    }
    pn->input_count = n;
  } else {
    snprintf(what, sizeof what, "%s.in", path);
    return qd_desc_type_error_(x->desc, what, in, "a value name or an array of them");
  }
  const cJSON* out = cJSON_GetObjectItemCaseSensitive(node, "out");
  pn->output = qd_scope_get_(scope, out->valuestring); /* registered by the first pass */
  const cJSON* w = cJSON_GetObjectItemCaseSensitive(node, "weight");
  if (w) {
    if (!cJSON_IsString(w)) return qd_desc_type_error_(x->desc, path, w, "a weight name");
    char expanded[QD_DESC_MAX_NAME];
    snprintf(what, sizeof what, "%s.weight", path);
    QD_TRY(qd_symbols_subst_(x->sy, w->valuestring, what, expanded, sizeof expanded));
    QD_TRY(qd_arena_printf(&x->g->arena, (char**)&pn->weight_base, "%s%s", weight_prefix, expanded));
  }
  for (int i = 0; i < QD_MAX_ATTRS; i++)
    if (info->attrs[i].name) QD_TRY(qd_expand_attr_(x, &info->attrs[i], node, path, info->name, &pn->attrs[i]));
  if (instance && *instance)
    return qd_arena_printf(&x->g->arena, (char**)&pn->origin, "%s: %s (in %s)", x->desc->source, path, instance);
  return qd_arena_printf(&x->g->arena, (char**)&pn->origin, "%s: %s", x->desc->source, path);
}

static qd_status_t qd_expand_call_(qd_expand_t* x, const cJSON* node, const char* path, qd_scope_t* scope,
                                   const char* instance, const char* weight_prefix) {
  static const char* const call_fields[] = {"call", "repeat", "var", "prefix", "in", "out", "with", "when", "doc",
                                           NULL};
  QD_TRY(qd_desc_check_object_(x->desc, path, node, call_fields));
  const cJSON* call = cJSON_GetObjectItemCaseSensitive(node, "call");
  const cJSON* block = x->desc->blocks ? cJSON_GetObjectItemCaseSensitive(x->desc->blocks, call->valuestring) : NULL;
  if (!block)
    return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_BLOCK, "%s: %s: no block named \"%s\"", x->desc->source, path,
                  call->valuestring);
  for (int i = 0; i < x->call_depth; i++)
    if (strcmp(x->call_stack[i], call->valuestring) == 0)
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_RECURSION, "%s: %s: block \"%s\" calls itself (through %s)",
                    x->desc->source, path, call->valuestring, x->call_stack[x->call_depth - 1]);
  if (x->call_depth == QD_DESC_MAX_CALL_DEPTH)
    return QD_ERR(BAD_INPUT, GRAPH_BLOCK_RECURSION, "%s: %s: blocks nest deeper than %d", x->desc->source, path,
                  QD_DESC_MAX_CALL_DEPTH);
  const cJSON* b_inputs = cJSON_GetObjectItemCaseSensitive(block, "inputs");
  const cJSON* b_outputs = cJSON_GetObjectItemCaseSensitive(block, "outputs");
  const cJSON* b_nodes = cJSON_GetObjectItemCaseSensitive(block, "nodes");
  const cJSON* c_in = cJSON_GetObjectItemCaseSensitive(node, "in");
  const cJSON* c_out = cJSON_GetObjectItemCaseSensitive(node, "out");
  char what[QD_DESC_MAX_NAME];
  snprintf(what, sizeof what, "%s.in", path);
  QD_TRY(qd_desc_check_object_(x->desc, what, c_in, NULL));
  /* The call must bind exactly the block's inputs. */
  for (const cJSON* bi = b_inputs->child; bi; bi = bi->next)
    if (!cJSON_GetObjectItemCaseSensitive(c_in, bi->valuestring))
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.in does not bind block \"%s\"'s input \"%s\"",
                    x->desc->source, path, call->valuestring, bi->valuestring);
  for (const cJSON* ci = c_in->child; ci; ci = ci->next) {
    bool known = false;
    for (const cJSON* bi = b_inputs->child; bi; bi = bi->next)
      if (strcmp(bi->valuestring, ci->string) == 0) known = true;
    if (!known)
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.in binds \"%s\", which is not an input of block \"%s\"",
                    x->desc->source, path, ci->string, call->valuestring);
  }
  for (const cJSON* co = c_out ? c_out->child : NULL; co; co = co->next)
    if (!cJSON_GetObjectItemCaseSensitive(b_outputs, co->string))
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.out takes \"%s\", which is not an output of block \"%s\"",
                    x->desc->source, path, co->string, call->valuestring);
  /* Size parameters: "with" must bind exactly the block's "params". */
  const cJSON* b_params = cJSON_GetObjectItemCaseSensitive(block, "params");
  const cJSON* c_with = cJSON_GetObjectItemCaseSensitive(node, "with");
  if (c_with) {
    snprintf(what, sizeof what, "%s.with", path);
    QD_TRY(qd_desc_check_object_(x->desc, what, c_with, NULL));
  }
  for (const cJSON* bp = b_params ? b_params->child : NULL; bp; bp = bp->next)
    if (!c_with || !cJSON_GetObjectItemCaseSensitive(c_with, bp->valuestring))
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.with does not bind block \"%s\"'s param \"%s\"",
                    x->desc->source, path, call->valuestring, bp->valuestring);
  for (const cJSON* cw = c_with ? c_with->child : NULL; cw; cw = cw->next) {
    bool known = false;
    for (const cJSON* bp = b_params ? b_params->child : NULL; bp; bp = bp->next)
      if (strcmp(bp->valuestring, cw->string) == 0) known = true;
    if (!known)
      return QD_ERR(BAD_INPUT, GRAPH_BLOCK_ARGS, "%s: %s.with binds \"%s\", which is not a param of block \"%s\"",
                    x->desc->source, path, cw->string, call->valuestring);
  }

  int64_t repeat = 1;
  const cJSON* rep = cJSON_GetObjectItemCaseSensitive(node, "repeat");
  if (rep) {
    snprintf(what, sizeof what, "%s.repeat", path);
    QD_TRY(qd_symbols_int_(x->sy, rep, what, &repeat));
    if (repeat < 1 || repeat > QD_DESC_MAX_REPEAT)
      return QD_ERR(BAD_INPUT, GRAPH_BAD_SIZE, "%s: %s is %lld; it must be from 1 to %d", x->desc->source, what,
                    (long long)repeat, QD_DESC_MAX_REPEAT);
  }
  const cJSON* var = cJSON_GetObjectItemCaseSensitive(node, "var");
  if (var && (!cJSON_IsString(var) || !qd_expr_is_name(var->valuestring)))
    return qd_desc_type_error_(x->desc, "a call's \"var\"", var, "a name");
  const cJSON* prefix = cJSON_GetObjectItemCaseSensitive(node, "prefix");
  if (prefix && !cJSON_IsString(prefix)) return qd_desc_type_error_(x->desc, "a call's \"prefix\"", prefix, "a string");

  char block_path[QD_DESC_MAX_NAME];
  snprintf(block_path, sizeof block_path, "blocks.%s.nodes", call->valuestring);
  x->call_stack[x->call_depth++] = call->valuestring;
  int loop_base = x->sy->loop_count;
  x->sy->loop[x->sy->loop_count].name = var ? var->valuestring : "i";
  x->sy->loop_count++;
  qd_status_t s = QD_OK;
  qd_scope_t scopes[2];
  qd_scope_init_(&scopes[0], x->allocator);
  qd_scope_init_(&scopes[1], x->allocator);
  qd_scope_t* prev = NULL;
  for (int64_t k = 0; k < repeat && !s; k++) {
    x->sy->loop[loop_base].value = k;
    /* Params are evaluated in the caller's scope (with this call's loop variable), all before any is bound. */
    x->sy->loop_count = loop_base + 1;
    int64_t param_values[QD_DESC_MAX_PARAMS];
    int pi = 0;
    for (const cJSON* cw = c_with ? c_with->child : NULL; cw && !s; cw = cw->next, pi++) {
      snprintf(what, sizeof what, "%s.with.%s", path, cw->string);
      s = qd_symbols_int_(x->sy, cw, what, &param_values[pi]);
    }
    if (s) break;
    pi = 0;
    for (const cJSON* cw = c_with ? c_with->child : NULL; cw; cw = cw->next, pi++) {
      x->sy->loop[x->sy->loop_count].name = cw->string;
      x->sy->loop[x->sy->loop_count++].value = param_values[pi];
    }
    qd_scope_t* inner = &scopes[k & 1];
    qd_scope_deinit_(inner);
    qd_scope_init_(inner, x->allocator);
    char expanded[QD_DESC_MAX_NAME], wprefix[QD_DESC_MAX_NAME * 2], inst[QD_DESC_MAX_NAME * 2];
    snprintf(what, sizeof what, "%s.prefix", path);
    s = qd_symbols_subst_(x->sy, prefix ? prefix->valuestring : "", what, expanded, sizeof expanded);
    if (s) break;
    snprintf(wprefix, sizeof wprefix, "%s%s", weight_prefix, expanded);
    /* The instance path names the values inside: the weight prefix without its final dot, else the block name. */
    size_t len = strlen(wprefix);
    if (len && wprefix[len - 1] == '.') len--;
    if (len)
      snprintf(inst, sizeof inst, "%.*s", (int)len, wprefix);
    else
      snprintf(inst, sizeof inst, "%s%s%s[%lld]", instance ? instance : "", instance && *instance ? "/" : "",
               call->valuestring, (long long)k);
    char* inst_copy;
    s = qd_arena_strdup(&x->g->arena, inst, &inst_copy);
    int32_t clash = -1;
    if (!s) s = qd_strmap_put(&x->instance_paths, inst_copy, 0, &clash);
    if (!s && clash >= 0)
      s = QD_ERR(BAD_INPUT, GRAPH_VALUE_REDEFINED,
                 "%s: %s: a second instance named '%s'; give the call a distinct \"prefix\"", x->desc->source, path,
                 inst_copy);
    /* Inputs: the first iteration takes them from the call; later ones carry the previous iteration's outputs
     * of the same name. */
    for (const cJSON* bi = b_inputs->child; bi && !s; bi = bi->next) {
      const char* target = NULL;
      const cJSON* carried = prev ? cJSON_GetObjectItemCaseSensitive(b_outputs, bi->valuestring) : NULL;
      if (carried) {
        target = qd_scope_get_(prev, carried->valuestring);
        if (!target)
          s = QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE, "%s: blocks.%s.outputs.%s: '%s' is not defined in the block",
                     x->desc->source, call->valuestring, bi->valuestring, carried->valuestring);
      } else {
        snprintf(what, sizeof what, "%s.in.%s", path, bi->valuestring);
        s = qd_expand_resolve_(x, scope, cJSON_GetObjectItemCaseSensitive(c_in, bi->valuestring), what,
                               x->call_depth > 1 ? x->call_stack[x->call_depth - 2] : NULL, &target);
      }
      if (!s) s = qd_scope_bind_(x, inner, bi->valuestring, target, path);
    }
    if (!s) s = qd_expand_nodes_(x, b_nodes, inner, block_path, inst_copy, wprefix, call->valuestring);
    prev = inner;
  }
  /* The call's outputs: outer names become aliases of the last iteration's values. */
  for (const cJSON* co = c_out ? c_out->child : NULL; co && !s; co = co->next) {
    const cJSON* inner_name = cJSON_GetObjectItemCaseSensitive(b_outputs, co->string);
    const char* target = qd_scope_get_(prev, inner_name->valuestring);
    if (!target) {
      s = QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE, "%s: blocks.%s.outputs.%s: '%s' is not defined in the block",
                 x->desc->source, call->valuestring, co->string, inner_name->valuestring);
      break;
    }
    const char* outer = qd_scope_get_(scope, co->valuestring);
    s = qd_scope_bind_(x, &x->aliases, outer, target, path);
  }
  qd_scope_deinit_(&scopes[0]);
  qd_scope_deinit_(&scopes[1]);
  x->sy->loop_count = loop_base;
  x->call_depth--;
  return s;
}

static qd_status_t qd_expand_nodes_(qd_expand_t* x, const cJSON* nodes, qd_scope_t* scope, const char* json_path,
                                    const char* instance, const char* weight_prefix, const char* block_name) {
  /* First pass: bind every name this list defines, so nodes may read values defined further down. */
  int idx = 0;
  char path[QD_DESC_MAX_NAME];
  for (const cJSON* n = nodes->child; n; n = n->next, idx++) {
    snprintf(path, sizeof path, "%s[%d]", json_path, idx);
    if (!cJSON_IsObject(n)) return qd_desc_type_error_(x->desc, path, n, "an object");
    bool when;
    QD_TRY(qd_symbols_when_(x->sy, n, path, &when));
    if (!when) continue;
    const cJSON* call = cJSON_GetObjectItemCaseSensitive(n, "call");
    if (call) {
      if (!cJSON_IsString(call)) return qd_desc_type_error_(x->desc, path, call, "a block name");
      if (cJSON_GetObjectItemCaseSensitive(n, "op"))
        return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_FIELD, "%s: %s has both \"op\" and \"call\"", x->desc->source, path);
      const cJSON* out = cJSON_GetObjectItemCaseSensitive(n, "out");
      if (!out) continue;
      char what[QD_DESC_MAX_NAME];
      snprintf(what, sizeof what, "%s.out", path);
      QD_TRY(qd_desc_check_object_(x->desc, what, out, NULL));
      for (const cJSON* o = out->child; o; o = o->next) {
        if (!cJSON_IsString(o)) return qd_desc_type_error_(x->desc, what, o, "an object of value names");
        const char* q;
        QD_TRY(qd_expand_qualify_(x, instance, o->valuestring, &q));
        QD_TRY(qd_scope_bind_(x, scope, o->valuestring, q, path));
      }
    } else {
      const cJSON* out = cJSON_GetObjectItemCaseSensitive(n, "out");
      if (!cJSON_IsString(out)) {
        char what[QD_DESC_MAX_NAME];
        snprintf(what, sizeof what, "%s.out", path);
        return qd_desc_type_error_(x->desc, what, out, "a value name");
      }
      const char* q;
      QD_TRY(qd_expand_qualify_(x, instance, out->valuestring, &q));
      QD_TRY(qd_scope_bind_(x, scope, out->valuestring, q, path));
    }
  }
  /* Second pass: expand. */
  idx = 0;
  for (const cJSON* n = nodes->child; n; n = n->next, idx++) {
    snprintf(path, sizeof path, "%s[%d]", json_path, idx);
    bool when;
    QD_TRY(qd_symbols_when_(x->sy, n, path, &when));
    if (!when) continue;
    if (cJSON_GetObjectItemCaseSensitive(n, "call"))
      QD_TRY(qd_expand_call_(x, n, path, scope, instance, weight_prefix));
    else
      QD_TRY(qd_expand_op_(x, n, path, scope, instance, weight_prefix, block_name));
  }
  return QD_OK;
}

/* Follows call-output aliases to the qualified name of the op that defines a value. */
static const char* qd_expand_final_name_(const qd_expand_t* x, const char* name) {
  for (int hops = 0; hops < 1 << 20; hops++) {
    const char* next = qd_scope_get_(&x->aliases, name);
    if (!next) return name;
    name = next;
  }
  return name;
}

qd_status_t qd_graph_desc_instantiate(const qd_graph_desc_t* d, const char* config,
                                      const qd_size_binding_t* bindings, int32_t binding_count,
                                      qd_allocator_t allocator, qd_graph_t** out_graph) {
  *out_graph = NULL;
  qd_symbols_t sy;
  QD_TRY(qd_symbols_init_(&sy, d, config, bindings, binding_count));
  qd_expand_t x;
  memset(&x, 0, sizeof x);
  x.desc = d;
  x.sy = &sy;
  x.allocator = allocator;
  qd_scope_t top;
  qd_scope_init_(&top, allocator);
  qd_scope_init_(&x.aliases, allocator);
  qd_strmap_init(&x.instance_paths, allocator);
  qd_status_t s = qd_graph_create(allocator, d->name, &x.g);
  if (!s) s = qd_arena_strdup(&x.g->arena, sy.config_name, (char**)&x.g->config);
  sy.record = x.g;
  for (int32_t i = 0; i < binding_count && !s; i++) s = qd_graph_record_size(x.g, bindings[i].name, bindings[i].value);

  /* Graph inputs. */
  for (const cJSON* in = d->inputs->child; in && !s; in = in->next) {
    char path[QD_DESC_MAX_NAME];
    snprintf(path, sizeof path, "inputs.%s", in->string);
    bool when;
    s = qd_symbols_when_(&sy, in, path, &when);
    if (s || !when) continue;
    qd_dtype_t dtype = QD_DTYPE_F32;
    qd_shape_t shape;
    int32_t v;
    s = qd_desc_input_dtype_(d, in, path, &dtype);
    if (!s) s = qd_desc_input_shape_(&sy, in, path, &shape);
    if (!s) s = qd_graph_add_input(x.g, in->string, dtype, &shape, &v);
    if (!s) s = qd_scope_bind_(&x, &top, in->string, x.g->values[v].name, path);
  }
  if (!s) s = qd_expand_nodes_(&x, d->nodes, &top, "nodes", "", "", NULL);

  /* Values for every node output, then nodes with resolved inputs. */
  for (int32_t i = 0; i < x.node_count && !s; i++) {
    int32_t v;
    s = qd_graph_add_value(x.g, x.nodes[i].output, &v);
  }
  for (int32_t i = 0; i < x.node_count && !s; i++) {
    qd_pending_node_t* pn = &x.nodes[i];
    int32_t ins[QD_NODE_MAX_INPUTS];
    for (int32_t k = 0; k < pn->input_count && !s; k++) {
      const char* name = qd_expand_final_name_(&x, pn->inputs[k]);
      ins[k] = qd_graph_find_value(x.g, name);
      if (ins[k] < 0)
        s = QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_VALUE, "%s: input %d ('%s') is never defined", pn->origin, k, name);
    }
    int32_t node_index;
    if (!s)
      s = qd_graph_add_node(x.g, pn->op, ins, pn->input_count, qd_graph_find_value(x.g, pn->output),
                            pn->weight_base, pn->origin, &node_index);
    if (!s) memcpy(x.g->nodes[node_index].attrs, pn->attrs, sizeof pn->attrs);
  }
  for (const cJSON* o = d->outputs->child; o && !s; o = o->next) {
    const char* q = qd_scope_get_(&top, o->valuestring);
    int32_t v = q ? qd_graph_find_value(x.g, qd_expand_final_name_(&x, q)) : -1;
    if (v < 0)
      s = QD_ERR(BAD_INPUT, GRAPH_UNDEFINED_OUTPUT, "%s: outputs.%s names '%s', which no node defines", d->source,
                 o->string, o->valuestring);
    else
      s = qd_graph_add_output(x.g, o->string, v);
  }
  if (!s && x.g->output_count == 0)
    s = QD_ERR(BAD_INPUT, GRAPH_FIELD_MISSING, "%s: \"outputs\" is empty", d->source);
  if (!s) s = qd_graph_finalize(x.g);

  qd_free(allocator, x.nodes, (size_t)x.node_capacity * sizeof *x.nodes);
  qd_scope_deinit_(&top);
  qd_scope_deinit_(&x.aliases);
  qd_strmap_deinit(&x.instance_paths);
  qd_symbols_deinit_(&sy);
  if (s) {
    qd_graph_destroy(x.g);
    return qd_status_annotate(s, "instantiating '%s' with config '%s'", d->name,
                              config ? config : d->default_config);
  }
  *out_graph = x.g;
  return QD_OK;
}
