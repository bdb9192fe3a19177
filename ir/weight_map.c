/* Weight layouts: matching graph weight names against mapping rules and checking the tensors they name.
 * See weight_map.h for the rule language. */
#include "ir/weight_map.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "qd/progress.h"

enum { QD_MAP_NAME_MAX = 1024, QD_MAP_MAX_CAPTURES = 8, QD_MAP_MAX_DEPTH = 8 };

typedef struct qd_capture {
  char name[32];
  const char* text;
  size_t len;
} qd_capture_t;

typedef struct qd_match {
  qd_capture_t caps[QD_MAP_MAX_CAPTURES];
  int count;
  const char* star;
  size_t star_len;
} qd_match_t;

/* Matches name against a pattern of literal text, {capture} (one or more digits) and a final * (the rest). */
static bool qd_pattern_match_(const char* pat, const char* name, qd_match_t* m) {
  while (*pat) {
    if (*pat == '*') {
      if (pat[1] != '\0' || *name == '\0') return false;
      m->star = name;
      m->star_len = strlen(name);
      return true;
    }
    if (*pat == '{') {
      const char* close = strchr(pat, '}');
      if (!close || m->count == QD_MAP_MAX_CAPTURES) return false;
      if (!isdigit((unsigned char)*name)) return false;
      qd_capture_t* c = &m->caps[m->count++];
      snprintf(c->name, sizeof c->name, "%.*s", (int)(close - pat - 1), pat + 1);
      c->text = name;
      while (isdigit((unsigned char)*name)) name++;
      c->len = (size_t)(name - c->text);
      pat = close + 1;
      continue;
    }
    if (*pat != *name) return false;
    pat++;
    name++;
  }
  return *name == '\0';
}

/* Builds a source name from a "from" pattern and the captures of the matched "to" pattern. */
static qd_status_t qd_pattern_expand_(const char* pat, const qd_match_t* m, const char* prefix, char* out,
                                      size_t size, const char* rule_path) {
  size_t o = (size_t)snprintf(out, size, "%s", prefix);
  for (const char* p = pat; *p && o < size; p++) {
    if (*p == '*') {
      if (!m->star) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"from\" has a * that \"to\" lacks", rule_path);
      o += (size_t)snprintf(out + o, size - o, "%.*s", (int)m->star_len, m->star);
    } else if (*p == '{') {
      const char* close = strchr(p, '}');
      if (!close) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: unclosed '{' in \"%s\"", rule_path, pat);
      const qd_capture_t* c = NULL;
      for (int i = 0; i < m->count; i++)
        if (strlen(m->caps[i].name) == (size_t)(close - p - 1) && strncmp(m->caps[i].name, p + 1, (size_t)(close - p - 1)) == 0)
          c = &m->caps[i];
      if (!c)
        return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"from\" uses {%.*s}, which \"to\" does not capture",
                      rule_path, (int)(close - p - 1), p + 1);
      o += (size_t)snprintf(out + o, size - o, "%.*s", (int)c->len, c->text);
      p = close;
    } else {
      out[o++] = *p;
    }
  }
  if (o >= size) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: the mapped name is too long", rule_path);
  out[o] = '\0';
  return QD_OK;
}

static const cJSON* qd_layout_get_(const qd_graph_desc_t* desc, const char* name) {
  const cJSON* layouts = qd_graph_desc_layouts(desc);
  return layouts ? cJSON_GetObjectItemCaseSensitive(layouts, name) : NULL;
}

qd_status_t qd_weight_layout_detect(const qd_graph_desc_t* desc, const qd_checkpoint_t* ckpt,
                                    const char** out_layout) {
  *out_layout = NULL;
  const cJSON* layouts = qd_graph_desc_layouts(desc);
  if (!layouts || !layouts->child) return QD_OK;
  char names[512];
  size_t used = 0;
  for (const cJSON* l = layouts->child; l; l = l->next) {
    const cJSON* detect = cJSON_GetObjectItemCaseSensitive(l, "detect");
    if (cJSON_IsString(detect) && qd_checkpoint_find(ckpt, detect->valuestring)) {
      *out_layout = l->string;
      return QD_OK;
    }
    if (used < sizeof names) {
      int n = snprintf(names + used, sizeof names - used, "%s%s ('%s')", used ? ", " : "", l->string,
                       cJSON_IsString(detect) ? detect->valuestring : "no detect tensor");
      if (n > 0) used += (size_t)n;
    }
  }
  return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_LAYOUT,
                "%s: the checkpoint matches none of graph '%s''s weight layouts: %s (pass a layout explicitly if the "
                "names are right)",
                qd_checkpoint_path(ckpt), qd_graph_desc_name(desc), names);
}

typedef struct qd_bind_ctx {
  const qd_graph_desc_t* desc;
  const char* config;
  const qd_checkpoint_t* ckpt;
  const char* weight; /* graph weight name being resolved */
} qd_bind_ctx_t;

/* A part's logical shape: the tensor's, or for a bitsandbytes weight the one its quant state records (the packed
 * tensor itself is [n/2, 1]). */
static int qd_part_rank_(const qd_weight_part_t* p) { return p->bnb ? p->nf4.shape.rank : p->tensor->rank; }
static uint64_t qd_part_dim_(const qd_weight_part_t* p, int d) {
  return p->bnb ? (uint64_t)p->nf4.shape.dims[d] : p->tensor->shape[d];
}

/* Sets the part's row range: all rows, or the "rows": [begin, end] of a rule. */
static qd_status_t qd_bind_rows_(qd_bind_ctx_t* c, const cJSON* rows, const char* path, qd_weight_part_t* part) {
  const qd_tensor_info_t* t = part->tensor;
  int rank = qd_part_rank_(part);
  uint64_t total = rank > 0 ? qd_part_dim_(part, 0) : 1;
  part->row_begin = 0;
  part->row_end = total;
  if (!rows) return QD_OK;
  if (!cJSON_IsArray(rows) || cJSON_GetArraySize(rows) != 2)
    return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"rows\" must be [begin, end]", path);
  int64_t v[2];
  int i = 0;
  for (const cJSON* r = rows->child; r; r = r->next, i++) {
    if (cJSON_IsNumber(r)) {
      v[i] = (int64_t)r->valuedouble;
    } else if (cJSON_IsString(r)) {
      QD_TRY_CTX(qd_graph_desc_eval(c->desc, c->config, NULL, 0, r->valuestring, &v[i]), "%s.rows", path);
    } else {
      return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"rows\" entries must be integers or size expressions", path);
    }
  }
  if (rank < 1 || v[0] < 0 || v[1] <= v[0] || (uint64_t)v[1] > total)
    return QD_ERR(BAD_INPUT, WEIGHT_SLICE, "%s: weight '%s' takes rows [%lld, %lld) of '%s' in '%s', which has %llu",
                  path, c->weight, (long long)v[0], (long long)v[1], t->name, t->file,
                  (unsigned long long)(rank ? total : 0));
  part->row_begin = (uint64_t)v[0];
  part->row_end = (uint64_t)v[1];
  return QD_OK;
}

static qd_status_t qd_bind_find_(qd_bind_ctx_t* c, const char* source, const char* layout,
                                 const qd_tensor_info_t** out) {
  *out = qd_checkpoint_find(c->ckpt, source);
  if (*out) return QD_OK;
  if (strcmp(source, c->weight) == 0)
    return QD_ERR(BAD_INPUT, WEIGHT_MISSING, "%s: no tensor '%s' (layout %s)", qd_checkpoint_path(c->ckpt), source,
                  layout);
  return QD_ERR(BAD_INPUT, WEIGHT_MISSING, "%s: no tensor '%s', which layout %s maps to weight '%s'",
                qd_checkpoint_path(c->ckpt), source, layout, c->weight);
}

/* Binds one source tensor (and its rows) to a part: a plain tensor, or a bitsandbytes NF4 weight, recognized by its
 * quant state and read through it. */
static qd_status_t qd_bind_part_(qd_bind_ctx_t* c, const char* source, const char* layout, const cJSON* rows,
                                 const char* path, qd_weight_part_t* part) {
  memset(part, 0, sizeof *part);
  if (qd_bnb_nf4_present(c->ckpt, source)) {
    QD_TRY(qd_bnb_nf4_open(c->ckpt, source, &part->nf4));
    part->bnb = true;
    part->tensor = part->nf4.packed;
  } else {
    QD_TRY(qd_bind_find_(c, source, layout, &part->tensor));
  }
  return qd_bind_rows_(c, rows, path, part);
}

/* Resolves one weight in one layout (following "extends"); identity when no rule matches. */
static qd_status_t qd_bind_weight_(qd_bind_ctx_t* c, const char* layout_name, qd_weight_source_t* out) {
  memset(out, 0, sizeof *out);
  const cJSON* layout = layout_name ? qd_layout_get_(c->desc, layout_name) : NULL;
  const char* prefix = "";
  /* The prefix comes from the most derived layout that sets one; rules from every layout in the chain. */
  for (const cJSON* l = layout; l;) {
    const cJSON* p = cJSON_GetObjectItemCaseSensitive(l, "prefix");
    if (cJSON_IsString(p) && !*prefix) prefix = p->valuestring;
    const cJSON* ext = cJSON_GetObjectItemCaseSensitive(l, "extends");
    l = cJSON_IsString(ext) ? qd_layout_get_(c->desc, ext->valuestring) : NULL;
  }
  int depth = 0;
  for (const cJSON* l = layout; l && depth < QD_MAP_MAX_DEPTH; depth++) {
    const cJSON* rules = cJSON_GetObjectItemCaseSensitive(l, "rules");
    int ri = 0;
    for (const cJSON* r = cJSON_IsArray(rules) ? rules->child : NULL; r; r = r->next, ri++) {
      char path[256];
      snprintf(path, sizeof path, "weight_layouts.%s.rules[%d]", l->string, ri);
      const cJSON* to = cJSON_GetObjectItemCaseSensitive(r, "to");
      if (!cJSON_IsString(to)) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"to\" must be a name pattern", path);
      qd_match_t m;
      memset(&m, 0, sizeof m);
      if (!qd_pattern_match_(to->valuestring, c->weight, &m)) continue;
      const cJSON* parts = cJSON_GetObjectItemCaseSensitive(r, "parts");
      const cJSON* from = cJSON_GetObjectItemCaseSensitive(r, "from");
      if (parts) {
        if (!cJSON_IsArray(parts) || cJSON_GetArraySize(parts) < 1 ||
            cJSON_GetArraySize(parts) > QD_WEIGHT_MAX_PARTS)
          return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: \"parts\" must list 1 to %d sources", path,
                        QD_WEIGHT_MAX_PARTS);
        for (const cJSON* part = parts->child; part; part = part->next) {
          const cJSON* pf = cJSON_GetObjectItemCaseSensitive(part, "from");
          if (!cJSON_IsString(pf)) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: a part lacks \"from\"", path);
          char source[QD_MAP_NAME_MAX];
          QD_TRY(qd_pattern_expand_(pf->valuestring, &m, prefix, source, sizeof source, path));
          QD_TRY(qd_bind_part_(c, source, layout_name, cJSON_GetObjectItemCaseSensitive(part, "rows"), path,
                               &out->parts[out->part_count++]));
        }
        return QD_OK;
      }
      if (!cJSON_IsString(from)) return QD_ERR(BAD_INPUT, GRAPH_BAD_MAPPING, "%s: needs \"from\" or \"parts\"", path);
      char source[QD_MAP_NAME_MAX];
      QD_TRY(qd_pattern_expand_(from->valuestring, &m, prefix, source, sizeof source, path));
      out->part_count = 1;
      return qd_bind_part_(c, source, layout_name, cJSON_GetObjectItemCaseSensitive(r, "rows"), path, &out->parts[0]);
    }
    const cJSON* ext = cJSON_GetObjectItemCaseSensitive(l, "extends");
    l = cJSON_IsString(ext) ? qd_layout_get_(c->desc, ext->valuestring) : NULL;
    if (cJSON_IsString(ext) && !l)
      return QD_ERR(BAD_INPUT, GRAPH_UNKNOWN_LAYOUT, "weight_layouts.%s extends unknown layout '%s'", layout_name,
                    ext->valuestring);
  }
  char source[QD_MAP_NAME_MAX];
  snprintf(source, sizeof source, "%s%s", prefix, c->weight);
  out->part_count = 1;
  return qd_bind_part_(c, source, layout_name ? layout_name : "identity", NULL, "", &out->parts[0]);
}

/* The shape the parts give together: rows concatenated, other dimensions equal. */
static qd_status_t qd_bind_check_shape_(const qd_weight_source_t* src, const qd_weight_t* w) {
  const qd_weight_part_t* p0 = &src->parts[0];
  int rank = qd_part_rank_(p0);
  uint64_t rows = 0;
  for (int32_t i = 0; i < src->part_count; i++) {
    const qd_weight_part_t* p = &src->parts[i];
    if (!p->bnb && !qd_dtype_is_float(p->tensor->dtype))
      return QD_ERR(BAD_INPUT, WEIGHT_DTYPE, "%s: tensor '%s' (for weight '%s') is %s; weights must be floating point",
                    p->tensor->file, p->tensor->name, w->name, qd_dtype_name(p->tensor->dtype));
    if (qd_part_rank_(p) != rank) goto mismatch;
    for (int d = 1; d < rank; d++)
      if (qd_part_dim_(p, d) != qd_part_dim_(p0, d)) goto mismatch;
    rows += p->row_end - p->row_begin;
  }
  {
    /* Trailing dimensions of extent 1 beyond the graph's rank change no byte: LDM's 1x1-convolution attention
     * weights [C, C, 1, 1] are the graph's linear weights [C, C]. */
    int used_rank = rank;
    while (used_rank > w->shape.rank && used_rank > 1 && qd_part_dim_(p0, used_rank - 1) == 1) used_rank--;
    bool ok = w->shape.rank == used_rank && (used_rank == 0 || (uint64_t)w->shape.dims[0] == rows);
    for (int d = 1; ok && d < used_rank; d++) ok = (uint64_t)w->shape.dims[d] == qd_part_dim_(p0, d);
    if (ok) return QD_OK;
  }
mismatch : {
  char want[128], got[160];
  size_t used = (size_t)snprintf(got, sizeof got, "[");
  for (int d = 0; d < rank && used < sizeof got; d++)
    used += (size_t)snprintf(got + used, sizeof got - used, "%s%llu", d ? ", " : "",
                             (unsigned long long)(d == 0 ? rows : qd_part_dim_(p0, d)));
  if (used < sizeof got) snprintf(got + used, sizeof got - used, "]");
  return QD_ERR(BAD_INPUT, WEIGHT_SHAPE, "%s: %stensor '%s' gives weight '%s' the shape %s; the graph needs %s",
                p0->tensor->file, p0->bnb ? "bitsandbytes " : "", p0->tensor->name, w->name, got,
                qd_shape_format(&w->shape, want, sizeof want));
}
}

qd_status_t qd_weight_binding_create(const qd_graph_desc_t* desc, const char* config, const qd_graph_t* graph,
                                     const qd_checkpoint_t* ckpt, const char* layout, qd_allocator_t allocator,
                                     qd_weight_binding_t** out_binding) {
  *out_binding = NULL;
  if (!layout) {
    QD_TRY(qd_weight_layout_detect(desc, ckpt, &layout));
  } else if (!qd_layout_get_(desc, layout)) {
    return QD_ERR(INVALID_ARGUMENT, GRAPH_UNKNOWN_LAYOUT, "graph '%s' has no weight layout '%s'",
                  qd_graph_desc_name(desc), layout);
  }
  qd_weight_binding_t* b;
  QD_TRY(qd_calloc(allocator, 1, sizeof *b, (void**)&b));
  b->allocator = allocator;
  b->graph = graph;
  b->layout = layout ? layout : "identity";
  qd_status_t s = qd_calloc(allocator, (size_t)(graph->weight_count ? graph->weight_count : 1), sizeof *b->sources,
                            (void**)&b->sources);
  qd_bind_ctx_t c = {desc, config, ckpt, NULL};
  for (int32_t i = 0; i < graph->weight_count && !s; i++) {
    c.weight = graph->weights[i].name;
    s = qd_bind_weight_(&c, layout, &b->sources[i]);
    if (!s) s = qd_bind_check_shape_(&b->sources[i], &graph->weights[i]);
    for (int32_t p = 0; !s && p < b->sources[i].part_count; p++) {
      const qd_weight_part_t* part = &b->sources[i].parts[p];
      if (part->bnb) {
        uint64_t total = (uint64_t)part->nf4.shape.dims[0];
        b->source_bytes += qd_nf4_storage_bytes(&part->nf4.layout) * (part->row_end - part->row_begin) / total;
        continue;
      }
      uint64_t row_bytes = part->tensor->shape[0] ? part->tensor->nbytes / part->tensor->shape[0] : 0;
      b->source_bytes += part->tensor->rank ? row_bytes * (part->row_end - part->row_begin) : part->tensor->nbytes;
    }
  }
  if (!s) {
    /* Count checkpoint tensors that nothing reads: expected for all-in-one files, worth reporting. */
    size_t used = 0;
    for (size_t t = 0; t < qd_checkpoint_tensor_count(ckpt); t++) {
      const qd_tensor_info_t* info = qd_checkpoint_tensor(ckpt, t);
      bool read = false;
      for (int32_t i = 0; i < graph->weight_count && !read; i++)
        for (int32_t p = 0; p < b->sources[i].part_count && !read; p++) {
          const qd_weight_part_t* part = &b->sources[i].parts[p];
          read = part->tensor == info;
          /* A bitsandbytes weight's statistics and quant state count as read with it. */
          if (!read && part->bnb) {
            size_t n = strlen(part->tensor->name);
            read = strncmp(info->name, part->tensor->name, n) == 0 && info->name[n] == '.';
          }
        }
      if (read) used++;
    }
    b->unused_tensors = qd_checkpoint_tensor_count(ckpt) - used;
  }
  if (s) {
    qd_weight_binding_destroy(b);
    return s;
  }
  *out_binding = b;
  return QD_OK;
}

void qd_weight_binding_destroy(qd_weight_binding_t* b) {
  if (!b) return;
  qd_free(b->allocator, b->sources,
          (size_t)(b->graph->weight_count ? b->graph->weight_count : 1) * sizeof *b->sources);
  qd_free(b->allocator, b, sizeof *b);
}

/* Rows [row_begin, row_end) of a bitsandbytes weight: the whole weight is dequantized (NF4 blocks run across rows),
 * then the rows are taken. */
static qd_status_t qd_weight_read_bnb_rows_(qd_allocator_t a, const qd_weight_part_t* part, float* dst) {
  uint64_t n = part->nf4.layout.count, total = (uint64_t)part->nf4.shape.dims[0];
  if (part->row_begin == 0 && part->row_end == total) return qd_bnb_nf4_dequantize(&part->nf4, a, dst);
  uint64_t row = n / total;
  float* all;
  QD_TRY(qd_malloc(a, n * sizeof(float), (void**)&all));
  qd_status_t s = qd_bnb_nf4_dequantize(&part->nf4, a, all);
  if (!s) memcpy(dst, all + part->row_begin * row, (part->row_end - part->row_begin) * row * sizeof(float));
  qd_free(a, all, n * sizeof(float));
  return s;
}

qd_status_t qd_weight_binding_read_f32(const qd_weight_binding_t* b, int32_t index, float* dst) {
  const qd_weight_source_t* src = &b->sources[index];
  for (int32_t p = 0; p < src->part_count; p++) {
    const qd_weight_part_t* part = &src->parts[p];
    if (part->bnb) {
      QD_TRY_CTX(qd_weight_read_bnb_rows_(b->allocator, part, dst), "reading weight '%s' from bitsandbytes '%s'",
                 b->graph->weights[index].name, part->tensor->name);
      dst += (uint64_t)qd_shape_numel(&part->nf4.shape) / (uint64_t)part->nf4.shape.dims[0] *
             (part->row_end - part->row_begin);
      continue;
    }
    const qd_tensor_info_t* t = part->tensor;
    uint64_t row_elems = t->rank && t->shape[0] ? t->numel / t->shape[0] : t->numel;
    uint64_t count = t->rank ? row_elems * (part->row_end - part->row_begin) : t->numel;
    const unsigned char* base = (const unsigned char*)t->data + part->row_begin * row_elems * qd_dtype_size(t->dtype);
    QD_TRY_CTX(qd_convert_to_f32(t->dtype, base, (size_t)count, dst), "reading weight '%s' from '%s'",
               b->graph->weights[index].name, t->name);
    dst += count;
  }
  return QD_OK;
}

qd_status_t qd_weights_f32_load(const qd_weight_binding_t* b, float*** out_weights) {
  *out_weights = NULL;
  const qd_graph_t* g = b->graph;
  float** w;
  QD_TRY(qd_calloc(b->allocator, (size_t)(g->weight_count ? g->weight_count : 1), sizeof *w, (void**)&w));
  qd_status_t s = QD_OK;
  qd_progress_t progress;
  uint64_t total = 0;
  for (int32_t i = 0; i < g->weight_count; i++) total += (uint64_t)qd_shape_numel(&g->weights[i].shape) * 4;
  qd_progress_begin(&progress, NULL, "weights", total, "B");
  for (int32_t i = 0; i < g->weight_count && !s; i++) {
    size_t bytes = (size_t)qd_shape_numel(&g->weights[i].shape) * sizeof(float);
    s = qd_malloc(b->allocator, bytes, (void**)&w[i]);
    if (!s) s = qd_weight_binding_read_f32(b, i, w[i]);
    qd_progress_advance(&progress, bytes);
  }
  qd_progress_end(&progress);
  if (s) {
    qd_weights_f32_free(b, w);
    return s;
  }
  *out_weights = w;
  return QD_OK;
}

void qd_weights_f32_free(const qd_weight_binding_t* b, float** w) {
  if (!w) return;
  const qd_graph_t* g = b->graph;
  for (int32_t i = 0; i < g->weight_count; i++)
    qd_free(b->allocator, w[i], (size_t)qd_shape_numel(&g->weights[i].shape) * sizeof(float));
  qd_free(b->allocator, w, (size_t)(g->weight_count ? g->weight_count : 1) * sizeof *w);
}
