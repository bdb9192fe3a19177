/* Writing a compiled component as a plan: META, PROG, WIDX and WGHT sections (contents: runtime/plan_content.h).
 * Weights are produced one at a time and streamed into the file, so memory stays at a few times the largest
 * weight however large the model is. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compiler/compile.h"
#include "compiler/kernel_build.h"
#include "compiler/plan_writer.h"
#include "qd/progress.h"
#include "qd/version.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/pipeline/schedule.h"

static uint64_t qdc_align_(uint64_t v) { return (v + QD_PLAN_WEIGHT_ALIGN - 1) & ~(uint64_t)(QD_PLAN_WEIGHT_ALIGN - 1); }

/* Offsets of every weight's pieces in the WGHT section; returns the section size. */
static qd_status_t qdc_layout_weights_(qdc_component_t* c, uint64_t* out_size, uint64_t* out_max_numel) {
  const qd_graph_t* g = c->results[0].graph;
  uint64_t off = 0, max_numel = 0;
  for (int32_t i = 0; i < g->weight_count; i++) {
    qd_plan_weight_t* w = &c->weights[i];
    uint64_t d, a, n;
    QD_TRY(qd_plan_weight_expected_sizes(w, &d, &a, &n));
    w->data = (qd_plan_range_t){off, d};
    off = qdc_align_(off + d);
    w->absmax = (qd_plan_range_t){a ? off : 0, a};
    off = qdc_align_(off + a);
    w->nested = (qd_plan_range_t){n ? off : 0, n};
    off = qdc_align_(off + n);
    uint64_t numel = (uint64_t)qd_shape_numel(&w->shape);
    if (numel > max_numel) max_numel = numel;
    c->bytes_stored += d + a + n;
  }
  *out_size = off;
  *out_max_numel = max_numel;
  return QD_OK;
}

static cJSON* qdc_range_json_(qd_plan_range_t r) {
  cJSON* a = cJSON_CreateArray();
  if (a) {
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)r.offset));
    cJSON_AddItemToArray(a, cJSON_CreateNumber((double)r.bytes));
  }
  return a;
}

static cJSON* qdc_widx_json_(const qdc_component_t* c) {
  const qd_graph_t* g = c->results[0].graph;
  cJSON* root = cJSON_CreateObject();
  cJSON* arr = root ? cJSON_AddArrayToObject(root, "weights") : NULL;
  if (!arr) {
    cJSON_Delete(root);
    return NULL;
  }
  for (int32_t i = 0; i < g->weight_count; i++) {
    const qd_plan_weight_t* w = &c->weights[i];
    cJSON* e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddItemToArray(arr, e);
    cJSON_AddStringToObject(e, "name", w->name);
    cJSON_AddStringToObject(e, "format", qd_weight_format_name(w->format));
    cJSON* shape = cJSON_AddArrayToObject(e, "shape");
    for (int32_t d = 0; shape && d < w->shape.rank; d++)
      cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)w->shape.dims[d]));
    cJSON_AddItemToObject(e, "data", qdc_range_json_(w->data));
    if (w->format == QD_WEIGHT_FORMAT_NF4) {
      cJSON_AddNumberToObject(e, "blocksize", w->blocksize);
      cJSON_AddItemToObject(e, "absmax", qdc_range_json_(w->absmax));
      cJSON_AddBoolToObject(e, "double_quant", w->double_quant);
      if (w->double_quant) {
        cJSON_AddItemToObject(e, "nested", qdc_range_json_(w->nested));
        uint32_t bits;
        memcpy(&bits, &w->offset, 4);
        cJSON_AddNumberToObject(e, "offset_bits", bits);
      }
    }
  }
  return root;
}

static void qdc_hex64_(uint64_t v, char* buf) { snprintf(buf, 17, "%016llx", (unsigned long long)v); }

static cJSON* qdc_prog_json_(const qdc_compile_options_t* o, const qdc_component_t* c) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddNumberToObject(root, "qd_program", QD_PLAN_CONTENT_VERSION);
  cJSON_AddStringToObject(root, "component", c->name);
  cJSON_AddStringToObject(root, "config", c->config);
  cJSON_AddStringToObject(root, "layout", c->layout);
  cJSON* desc = cJSON_ParseWithLength(c->desc_text, c->desc_size);
  if (!desc) {
    cJSON_Delete(root);
    return NULL;
  }
  cJSON_AddItemToObject(root, "description", desc);
  cJSON* res = cJSON_AddArrayToObject(root, "resolutions");
  for (int32_t r = 0; res && r < c->result_count; r++) {
    const qdc_resolution_result_t* rr = &c->results[r];
    cJSON* e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddItemToArray(res, e);
    cJSON_AddNumberToObject(e, "width", (double)rr->res.width);
    cJSON_AddNumberToObject(e, "height", (double)rr->res.height);
    cJSON_AddNumberToObject(e, "batch", (double)rr->res.batch);
    cJSON* b = cJSON_AddObjectToObject(e, "bindings");
    for (int32_t k = 0; b && k < rr->binding_count; k++)
      cJSON_AddNumberToObject(b, rr->bindings[k].name, (double)rr->bindings[k].value);
    char hex[17];
    qdc_hex64_(rr->digest, hex);
    cJSON_AddStringToObject(e, "digest", hex);
    cJSON_AddNumberToObject(e, "values", rr->graph->value_count);
    cJSON_AddNumberToObject(e, "nodes", rr->graph->node_count);
    cJSON_AddNumberToObject(e, "arena_bytes", (double)rr->memory->arena_bytes);
    cJSON* offs = cJSON_AddArrayToObject(e, "offsets");
    for (int32_t v = 0; offs && v < rr->graph->value_count; v++)
      cJSON_AddItemToArray(offs, cJSON_CreateNumber(rr->memory->offsets[v] == UINT64_MAX
                                                         ? -1.0
                                                         : (double)rr->memory->offsets[v]));
  }
  (void)o;
  return root;
}

static void qdc_meta_component_(cJSON* comps, const qdc_component_t* c, uint64_t weight_bytes) {
  cJSON* comp = cJSON_CreateObject();
  if (!comp) return;
  cJSON_AddItemToArray(comps, comp);
  cJSON_AddStringToObject(comp, "name", c->name);
  cJSON_AddStringToObject(comp, "graph", qd_graph_desc_name(c->desc));
  cJSON_AddStringToObject(comp, "config", c->config);
  cJSON_AddStringToObject(comp, "layout", c->layout);
  cJSON_AddNumberToObject(comp, "parameters", (double)c->params_total);
  cJSON_AddNumberToObject(comp, "quantized_parameters", (double)c->params_quantized);
  cJSON_AddNumberToObject(comp, "nf4_weights_copied", (double)c->weights_copied);
  cJSON_AddNumberToObject(comp, "weight_bytes", (double)weight_bytes);
  cJSON_AddNumberToObject(comp, "source_bytes", (double)c->bytes_source);
  cJSON_AddNumberToObject(comp, "weight_relative_error", qdc_component_weight_error(c));
  cJSON* mem = cJSON_AddArrayToObject(comp, "memory");
  for (int32_t r = 0; mem && r < c->result_count; r++) {
    cJSON* m = cJSON_CreateObject();
    if (!m) break;
    cJSON_AddItemToArray(mem, m);
    char res[64];
    snprintf(res, sizeof res, "%lldx%lld", (long long)c->results[r].res.width, (long long)c->results[r].res.height);
    cJSON_AddStringToObject(m, "resolution", res);
    cJSON_AddNumberToObject(m, "batch", (double)c->results[r].res.batch);
    cJSON_AddNumberToObject(m, "arena_bytes", (double)c->results[r].memory->arena_bytes);
  }
  cJSON* src = cJSON_AddObjectToObject(comp, "source");
  if (!src) return;
  if (c->ckpt) {
    cJSON_AddStringToObject(src, "path", c->spec.input);
    cJSON_AddNumberToObject(src, "files", (double)qd_checkpoint_file_count(c->ckpt));
    cJSON_AddNumberToObject(src, "bytes", (double)qd_checkpoint_total(c->ckpt).bytes);
    cJSON_AddNumberToObject(src, "tensors", (double)qd_checkpoint_tensor_count(c->ckpt));
  } else {
    cJSON_AddBoolToObject(src, "synthetic", true);
    cJSON_AddNumberToObject(src, "seed", (double)c->seed);
  }
  cJSON_AddStringToObject(src, "graph", qd_graph_desc_source(c->desc));
}

static cJSON* qdc_meta_json_(const qdc_compile_options_t* o, qdc_component_t* const* cs, int32_t count,
                             const uint64_t* weight_bytes, const qdc_plan_extras_t* extras) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  const qdc_component_t* first = cs[0];
  cJSON_AddNumberToObject(root, "qd_plan", QD_PLAN_CONTENT_VERSION);
  char model[256];
  snprintf(model, sizeof model, "%s/%s", extras && extras->pipeline ? extras->pipeline : qd_graph_desc_name(first->desc),
           first->config);
  cJSON_AddStringToObject(root, "model", model);
  if (extras && extras->pipeline) cJSON_AddStringToObject(root, "pipeline", extras->pipeline);
  cJSON_AddStringToObject(root, "qd_version", QD_VERSION_STRING);
  /* SOURCE_DATE_EPOCH makes plans reproducible byte for byte (reproducible-builds.org). */
  const char* sde = getenv("SOURCE_DATE_EPOCH");
  time_t now = sde && *sde ? (time_t)strtoll(sde, NULL, 10) : time(NULL);
  char when[32];
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  cJSON_AddStringToObject(root, "created", when);
  cJSON* comps = cJSON_AddArrayToObject(root, "components");
  for (int32_t i = 0; comps && i < count; i++) qdc_meta_component_(comps, cs[i], weight_bytes[i]);
  cJSON* res = cJSON_AddArrayToObject(root, "resolutions");
  for (int32_t r = 0; res && r < first->result_count; r++) {
    cJSON* pair = cJSON_CreateArray();
    if (!pair) break;
    cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)first->results[r].res.width));
    cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)first->results[r].res.height));
    cJSON_AddItemToArray(res, pair);
  }
  cJSON* q = cJSON_AddObjectToObject(root, "quantization");
  if (q) {
    cJSON_AddStringToObject(q, "method", o->quant == QDC_QUANT_NF4 ? "nf4" : o->quant == QDC_QUANT_F32 ? "f32" : "none");
    if (o->quant == QDC_QUANT_NF4) {
      cJSON_AddNumberToObject(q, "blocksize", o->blocksize);
      cJSON_AddBoolToObject(q, "double_quant", o->double_quant);
      cJSON* qc = cJSON_AddArrayToObject(q, "components");
      for (int32_t i = 0; qc && i < count; i++)
        if (cs[i]->spec.quantize) cJSON_AddItemToArray(qc, cJSON_CreateString(cs[i]->name));
      cJSON* keep = cJSON_AddArrayToObject(q, "keep");
      for (int32_t k = 0; keep && k < o->keep_count; k++) cJSON_AddItemToArray(keep, cJSON_CreateString(o->keep[k]));
    }
  }
  if (extras && extras->scheduler_json) {
    cJSON* sched = cJSON_Parse(extras->scheduler_json);
    if (sched) cJSON_AddItemToObject(root, "scheduler", sched);
  }
  if (extras && extras->tokenizer_count) {
    cJSON* toks = cJSON_AddArrayToObject(root, "tokenizers");
    for (int32_t t = 0; toks && t < extras->tokenizer_count; t++) {
      cJSON* e = cJSON_CreateObject();
      if (!e) break;
      cJSON_AddItemToArray(toks, e);
      cJSON_AddStringToObject(e, "name", extras->tokenizers[t].name);
      cJSON_AddStringToObject(e, "source", extras->tokenizers[t].source);
      cJSON_AddNumberToObject(e, "bytes", (double)extras->tokenizers[t].size);
    }
  }
  cJSON* compile = cJSON_AddObjectToObject(root, "compile");
  if (compile && o->command_line) cJSON_AddStringToObject(compile, "command", o->command_line);
  return root;
}

/* Serializes a JSON document into its own section. */
static qd_status_t qdc_write_json_section_(qd_plan_writer_t* w, uint32_t kind, const char* name, cJSON* doc) {
  if (!doc) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory building the plan's %s section", name);
  char* text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  if (!text) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory serializing the plan's %s section", name);
  qd_status_t s = qd_plan_writer_begin_section(w, kind, name, 0, 0);
  if (!s) s = qd_plan_writer_write(w, text, strlen(text));
  if (!s) s = qd_plan_writer_end_section(w);
  free(text);
  return s;
}

static qd_status_t qdc_write_padding_(qd_plan_writer_t* w, uint64_t from, uint64_t to) {
  static const unsigned char zeros[QD_PLAN_WEIGHT_ALIGN];
  while (from < to) {
    uint64_t n = to - from < sizeof zeros ? to - from : sizeof zeros;
    QD_TRY(qd_plan_writer_write(w, zeros, (size_t)n));
    from += n;
  }
  return QD_OK;
}

static qd_status_t qdc_write_weights_(qd_plan_writer_t* w, qdc_component_t* c, uint64_t max_numel, void* pool) {
  const qd_graph_t* g = c->results[0].graph;
  float* scratch = NULL;
  uint8_t *data = NULL, *absmax = NULL, *nested = NULL;
  size_t data_cap = (size_t)max_numel * 4, stat_cap = (size_t)max_numel / 8 + 64;
  qd_status_t s = qd_malloc(c->allocator, (size_t)max_numel * sizeof(float), (void**)&scratch);
  if (!s) s = qd_malloc(c->allocator, data_cap, (void**)&data);
  if (!s) s = qd_malloc(c->allocator, stat_cap, (void**)&absmax);
  if (!s) s = qd_malloc(c->allocator, stat_cap, (void**)&nested);
  if (!s) s = qd_plan_writer_begin_section(w, QD_PLAN_KIND_WGHT, c->name, 0, 0);
  qd_progress_t progress;
  qd_progress_begin(&progress, NULL, c->params_quantized ? "quantize" : "weights", c->params_total, "params");
  uint64_t pos = 0;
  for (int32_t i = 0; i < g->weight_count && !s; i++) {
    const qd_plan_weight_t* e = &c->weights[i];
    s = qdc_pack_weight(c, i, scratch, data, absmax, nested, pool);
    if (!s) s = qdc_write_padding_(w, pos, e->data.offset);
    if (!s) s = qd_plan_writer_write(w, data, (size_t)e->data.bytes);
    pos = e->data.offset + e->data.bytes;
    if (!s && e->absmax.bytes) {
      s = qdc_write_padding_(w, pos, e->absmax.offset);
      if (!s) s = qd_plan_writer_write(w, absmax, (size_t)e->absmax.bytes);
      pos = e->absmax.offset + e->absmax.bytes;
    }
    if (!s && e->nested.bytes) {
      s = qdc_write_padding_(w, pos, e->nested.offset);
      if (!s) s = qd_plan_writer_write(w, nested, (size_t)e->nested.bytes);
      pos = e->nested.offset + e->nested.bytes;
    }
    if (s) s = qd_status_annotate(s, "while storing weight '%s'", e->name);
    if (!s && !qd_progress_advance(&progress, (uint64_t)qd_shape_numel(&e->shape)))
      s = QD_ERR(CANCELLED, CANCELLED, "compile cancelled");
  }
  qd_progress_end(&progress);
  if (!s) s = qdc_write_padding_(w, pos, qdc_align_(pos));
  if (!s) s = qd_plan_writer_end_section(w);
  qd_free(c->allocator, scratch, (size_t)max_numel * sizeof(float));
  qd_free(c->allocator, data, data_cap);
  qd_free(c->allocator, absmax, stat_cap);
  qd_free(c->allocator, nested, stat_cap);
  return s;
}

/* The result of component c a pipeline runs beside the transformer's size res: the same size for the VAE, batch 1
 * (else the same batch) for the text encoders, as the generator picks them (runtime/pipeline/schedule.c). */
static int32_t qdc_schedule_result_(const qdc_component_t* c, int which, qdc_resolution_t res) {
  if (which == QD_SCHEDULE_TRANSFORMER || which == QD_SCHEDULE_VAE) {
    for (int32_t k = 0; k < c->result_count; k++)
      if (c->results[k].res.width == res.width && c->results[k].res.height == res.height &&
          c->results[k].res.batch == res.batch)
        return k;
    return -1;
  }
  for (int pass = 0; pass < 2; pass++)
    for (int32_t k = 0; k < c->result_count; k++)
      for (int32_t j = 0; j < c->results[k].binding_count; j++)
        if (strcmp(c->results[k].bindings[j].name, "batch") == 0 &&
            c->results[k].bindings[j].value == (pass == 0 ? 1 : res.batch))
          return k;
  return -1;
}

/* A whole pipeline's offload-schedule sizes at each of the transformer's sizes (runtime/pipeline/schedule.h), as
 * the SCHD section: qdrun sizes its schedules from them without instantiating every program. Nothing for a plan
 * that is not a whole pipeline. */
static qd_status_t qdc_write_schedules_(qd_plan_writer_t* w, qdc_component_t* const* cs, int32_t count,
                                        const uint64_t* wght_bytes) {
  int32_t idx[QD_SCHEDULE_COMPONENTS];
  for (int c = 0; c < QD_SCHEDULE_COMPONENTS; c++) {
    idx[c] = -1;
    for (int32_t i = 0; i < count; i++)
      if (strcmp(cs[i]->name, qd_schedule_component_names[c]) == 0) idx[c] = i;
    if (idx[c] < 0) return QD_OK;
  }
  const qdc_component_t* tr = cs[idx[QD_SCHEDULE_TRANSFORMER]];
  qd_schedule_sizes_t sizes[QDC_MAX_RESOLUTIONS * QD_SCHEDULE_COMPONENTS];
  int64_t widths[QDC_MAX_RESOLUTIONS], heights[QDC_MAX_RESOLUTIONS], batches[QDC_MAX_RESOLUTIONS];
  int32_t rows = 0;
  for (int32_t r = 0; r < tr->result_count; r++) {
    qdc_resolution_t res = tr->results[r].res;
    bool all = true;
    for (int c = 0; c < QD_SCHEDULE_COMPONENTS && all; c++) {
      const qdc_component_t* comp = cs[idx[c]];
      int32_t k = qdc_schedule_result_(comp, c, res);
      if (k < 0) {
        all = false;
        break;
      }
      const qd_graph_t* g = comp->results[k].graph;
      QD_TRY(qd_schedule_component_sizes(comp->weights, g->weight_count, wght_bytes[idx[c]], g,
                                         comp->results[k].memory->arena_bytes, c == QD_SCHEDULE_TRANSFORMER,
                                         &sizes[rows * QD_SCHEDULE_COMPONENTS + c]));
    }
    if (!all) continue;
    widths[rows] = res.width, heights[rows] = res.height, batches[rows] = res.batch;
    rows++;
  }
  if (!rows) return QD_OK;
  cJSON* doc = qd_schedule_record_json(widths, heights, batches, sizes, rows);
  return qdc_write_json_section_(w, QD_PLAN_KIND_SCHD, "offload schedules", doc);
}

qd_status_t qdc_emit_plan_multi(const qdc_compile_options_t* o, qdc_component_t* const* cs, int32_t count,
                                const qdc_plan_extras_t* extras, void* pool) {
  if (count < 1 || count > QDC_MAX_COMPONENTS)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "a plan holds 1 to %d components, not %d", QDC_MAX_COMPONENTS,
                  count);
  uint64_t wght_bytes[QDC_MAX_COMPONENTS], max_numel[QDC_MAX_COMPONENTS];
  for (int32_t i = 0; i < count; i++) QD_TRY(qdc_layout_weights_(cs[i], &wght_bytes[i], &max_numel[i]));
  /* Kernels before any byte is written: a variant NVRTC rejects fails the compile before the long weight pass. */
  qdc_kernels_t kernels;
  QD_TRY(qdc_kernels_build(o, cs, count, pool, cs[0]->allocator, &kernels));
  qd_plan_writer_t* w;
  qd_status_t ws = qd_plan_writer_create(o->output, cs[0]->allocator, &w);
  if (ws) {
    qdc_kernels_deinit(&kernels);
    return ws;
  }
  /* Weights first: quantizing measures the error META reports. */
  qd_status_t s = QD_OK;
  for (int32_t i = 0; i < count && !s; i++) {
    s = qdc_write_weights_(w, cs[i], max_numel[i], pool);
    if (!s) s = qdc_write_json_section_(w, QD_PLAN_KIND_WIDX, cs[i]->name, qdc_widx_json_(cs[i]));
    if (!s) s = qdc_write_json_section_(w, QD_PLAN_KIND_PROG, cs[i]->name, qdc_prog_json_(o, cs[i]));
    if (!s) s = qdc_kernels_write(&kernels, i, cs[i]->name, w);
    if (s) s = qd_status_annotate(s, "component '%s'", cs[i]->name);
  }
  for (int32_t t = 0; extras && t < extras->tokenizer_count && !s; t++) {
    s = qd_plan_writer_begin_section(w, QD_PLAN_KIND_TOKN, extras->tokenizers[t].name, 0, 0);
    if (!s) s = qd_plan_writer_write(w, extras->tokenizers[t].data, extras->tokenizers[t].size);
    if (!s) s = qd_plan_writer_end_section(w);
  }
  if (!s) s = qdc_write_schedules_(w, cs, count, wght_bytes);
  if (!s) {
    cJSON* meta = qdc_meta_json_(o, cs, count, wght_bytes, extras);
    if (meta && !qdc_kernels_add_meta(&kernels, meta)) {
      cJSON_Delete(meta);
      meta = NULL;
    }
    s = qdc_write_json_section_(w, QD_PLAN_KIND_META, "", meta);
  }
  if (!s) s = qd_plan_writer_finish(w);
  qd_plan_writer_destroy(w);
  qdc_kernels_deinit(&kernels);
  return s;
}

qd_status_t qdc_emit_plan(const qdc_compile_options_t* o, qdc_component_t* c, void* pool) {
  return qdc_emit_plan_multi(o, &c, 1, NULL, pool);
}
