/* Offload schedules sized from the plan (schedule.h). */
#include "runtime/pipeline/schedule.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "qd/plan_file.h"
#include "qd/progress.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda/hoist.h"
#include "runtime/cuda/weight_stream.h"
#include "runtime/plan_internal.h"

const char* const qd_schedule_component_names[QD_SCHEDULE_COMPONENTS] = {"text_encoder", "text_encoder_2",
                                                                          "transformer", "vae"};

/* The block weights only the hoisted conditioning reads: the generator hoists the transformer's (these inputs). */
static qd_status_t qd_sched_conditioning_(const qd_plan_weight_t* weights, const qd_graph_t* g,
                                          const qd_cuda_lowering_t* l, qd_schedule_sizes_t* out) {
  qd_cuda_hoist_t* h = NULL;
  QD_TRY(qd_cuda_hoist_plan(g, l, "hidden_states", "timestep", qd_allocator_system(), &h));
  bool* only = NULL;
  size_t n = (size_t)(g->weight_count ? g->weight_count : 1) * 2;
  qd_status_t s = qd_calloc(qd_allocator_system(), n, sizeof *only, (void**)&only);
  if (!s && h->hoisted_count) {
    bool* step_reads = only + g->weight_count;
    for (int32_t i = 0; i < g->node_count; i++)
      for (int k = 0; k < QD_NODE_MAX_WEIGHTS; k++) {
        int32_t w = g->nodes[i].weights[k];
        if (w < 0) continue;
        if (h->hoisted[i])
          only[w] = true;
        else
          step_reads[w] = true;
      }
    for (int32_t w = 0; w < g->weight_count; w++) only[w] = only[w] && !step_reads[w];
    uint64_t unblocked;
    qd_weight_stream_bounds(weights, g->weight_count, only, &out->largest_conditioning_block, NULL, &unblocked,
                            &out->conditioning);
  }
  qd_free(qd_allocator_system(), only, n * sizeof *only);
  qd_cuda_hoist_destroy(h);
  return s;
}

qd_status_t qd_schedule_component_sizes(const qd_plan_weight_t* weights, int32_t weight_count, uint64_t weight_bytes,
                                        const qd_graph_t* g, uint64_t arena_bytes, bool transformer,
                                        qd_schedule_sizes_t* out) {
  memset(out, 0, sizeof *out);
  qd_cuda_executor_options_t eo;
  qd_cuda_executor_options_default(&eo);
  qd_cuda_lowering_t* l = NULL;
  QD_TRY(qd_cuda_lowering_create(g, qd_cuda_executor_lowering_flags(&eo), qd_allocator_system(), &l));
  /* qd_cuda_memory_needs reads the component's weight table and section size only. */
  qd_plan_component_t comp;
  memset(&comp, 0, sizeof comp);
  comp.weights = (qd_plan_weight_t*)weights;
  comp.weight_count = weight_count;
  comp.weight_bytes = weight_bytes;
  qd_cuda_memory_needs_t n;
  qd_cuda_memory_needs(&comp, g, l, arena_bytes, &n);
  out->resident = n.weights + n.weight_copies + n.nested_map;
  out->working = n.arena + n.scratch + n.workspace + n.inputs;
  qd_weight_stream_bounds(weights, g->weight_count, NULL, &out->largest_block, &out->largest_layer, &out->unblocked,
                          &out->blocked);
  qd_status_t s = transformer ? qd_sched_conditioning_(weights, g, l, out) : QD_OK;
  qd_cuda_lowering_destroy(l);
  return s;
}

static void qd_sched_peak_(qd_schedule_estimate_t* e, int c, uint64_t bytes) {
  if (bytes <= e->peak) return;
  e->peak = bytes;
  snprintf(e->peak_phase, sizeof e->peak_phase, "%s", qd_schedule_component_names[c]);
}

void qd_schedule_combine(const qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS], qd_offload_mode_t mode,
                         uint64_t keep, qd_schedule_estimate_t* out) {
  memset(out, 0, sizeof *out);
  out->mode = mode;
  const qd_schedule_sizes_t* tr = &sizes[QD_SCHEDULE_TRANSFORMER];
  uint64_t step_blocked = tr->blocked > tr->conditioning ? tr->blocked - tr->conditioning : 0;
  bool streams = mode == QD_OFFLOAD_GROUP || mode == QD_OFFLOAD_SEQUENTIAL;
  out->keep = streams ? (keep < step_blocked ? keep : step_blocked) : 0;
  for (int c = 0; c < QD_SCHEDULE_COMPONENTS; c++) {
    const qd_schedule_sizes_t* k = &sizes[c];
    uint64_t held = k->resident + k->working, uploaded = k->resident;
    if (c == QD_SCHEDULE_TRANSFORMER && mode == QD_OFFLOAD_MODEL) {
      /* The conditioning-only block weights stream once per image through two slots instead of staying. */
      held = k->resident - k->conditioning + 2 * k->largest_conditioning_block + k->working;
    } else if (c == QD_SCHEDULE_TRANSFORMER && streams) {
      uint64_t slot = mode == QD_OFFLOAD_GROUP ? k->largest_block : k->largest_layer;
      held = k->resident - k->blocked + out->keep + 2 * slot + k->working;
      out->streamed_per_step = step_blocked - out->keep;
      uploaded = k->resident - out->streamed_per_step;
    } else if (c == QD_SCHEDULE_T5 && streams) {
      held = k->resident - k->blocked + 2 * (mode == QD_OFFLOAD_GROUP ? k->largest_block : k->largest_layer) +
             k->working;
    }
    if (mode == QD_OFFLOAD_NONE) {
      out->peak += held;
      snprintf(out->peak_phase, sizeof out->peak_phase, "all");
    } else {
      out->uploaded_per_image += uploaded;
      qd_sched_peak_(out, c, held);
    }
  }
}

qd_status_t qd_schedule_component_resolution(const qd_plan_t* p, int c, int32_t index, int64_t w, int64_t h,
                                             int64_t b, int32_t* out) {
  if (c == QD_SCHEDULE_TRANSFORMER || c == QD_SCHEDULE_VAE) return qd_plan_find_resolution(p, index, w, h, b, out);
  qd_size_binding_t one = {"batch", 1};
  qd_status_t s = qd_plan_find_resolution_by_bindings(p, index, &one, 1, out);
  if (!s || b == 1) return s;
  qd_status_free(s);
  one.value = b;
  return qd_plan_find_resolution_by_bindings(p, index, &one, 1, out);
}

bool qd_schedule_vae_tile(const qd_plan_t* p, int32_t vae, int64_t w, int64_t h, int32_t* out) {
  *out = -1;
  int64_t best = 0;
  for (int32_t r = 0; vae >= 0 && r < qd_plan_resolution_count(p, vae); r++) {
    int64_t tw, th, tb;
    qd_plan_resolution(p, vae, r, &tw, &th, &tb);
    if (tb != 1 || tw > w || th > h || (tw == w && th == h) || (*out >= 0 && tw * th >= best)) continue;
    *out = r;
    best = tw * th;
  }
  return *out >= 0;
}

/* One component's program at resolution r, instantiated, sized. */
static qd_status_t qd_sched_component_at_(const qd_plan_t* p, int c, int32_t index, int32_t r,
                                          qd_schedule_sizes_t* out) {
  const qd_plan_component_t* comp = qd_plan_component(p, index);
  qd_graph_t* g = NULL;
  QD_TRY(qd_plan_instantiate(p, index, r, qd_allocator_system(), &g));
  qd_status_t s = qd_schedule_component_sizes(comp->weights, comp->weight_count, comp->weight_bytes, g,
                                              comp->resolutions[r].arena_bytes, c == QD_SCHEDULE_TRANSFORMER, out);
  qd_graph_destroy(g);
  return s;
}

qd_status_t qd_schedule_vae_tile_sizes(const qd_plan_t* p, int64_t w, int64_t h, qd_schedule_sizes_t* out,
                                       bool* found) {
  int32_t vae = qd_plan_find_component(p, qd_schedule_component_names[QD_SCHEDULE_VAE]), r;
  *found = qd_schedule_vae_tile(p, vae, w, h, &r);
  return *found ? qd_sched_component_at_(p, QD_SCHEDULE_VAE, vae, r, out) : QD_OK;
}

qd_status_t qd_schedule_plan_sizes_computed(const qd_plan_t* p, int64_t w, int64_t h, int64_t b,
                                            qd_schedule_sizes_t out[QD_SCHEDULE_COMPONENTS]) {
  for (int c = 0; c < QD_SCHEDULE_COMPONENTS; c++) {
    int32_t index = qd_plan_find_component(p, qd_schedule_component_names[c]);
    if (index < 0)
      return QD_ERR(BAD_INPUT, PLAN_NO_COMPONENT, "%s has no component '%s'; offload schedules are for pipeline "
                    "plans", qd_plan_path(p), qd_schedule_component_names[c]);
    int32_t r;
    QD_TRY(qd_schedule_component_resolution(p, c, index, w, h, b, &r));
    QD_TRY(qd_sched_component_at_(p, c, index, r, &out[c]));
  }
  return QD_OK;
}

/* --- the SCHD record ----------------------------------------------------------------------------------------- */

static const char* const qd_sched_fields_[] = {"resident", "working", "largest_block", "largest_layer", "unblocked",
                                               "blocked", "conditioning", "largest_conditioning_block"};
enum { QD_SCHED_FIELDS = 8 };

static uint64_t* qd_sched_field_(qd_schedule_sizes_t* s, int f) {
  uint64_t* fields[QD_SCHED_FIELDS] = {&s->resident,      &s->working,     &s->largest_block, &s->largest_layer,
                                       &s->unblocked,     &s->blocked,     &s->conditioning,
                                       &s->largest_conditioning_block};
  return fields[f];
}

cJSON* qd_schedule_record_json(const int64_t* w, const int64_t* h, const int64_t* b, const qd_schedule_sizes_t* sizes,
                               int32_t count) {
  cJSON* root = cJSON_CreateObject();
  cJSON* list = root ? cJSON_AddArrayToObject(root, "sizes") : NULL;
  if (!list) {
    cJSON_Delete(root);
    return NULL;
  }
  cJSON_AddNumberToObject(root, "schedules_version", 1);
  for (int32_t r = 0; r < count; r++) {
    cJSON* e = cJSON_CreateObject();
    cJSON_AddItemToArray(list, e);
    cJSON_AddNumberToObject(e, "width", (double)w[r]);
    cJSON_AddNumberToObject(e, "height", (double)h[r]);
    cJSON_AddNumberToObject(e, "batch", (double)b[r]);
    cJSON* comps = cJSON_AddObjectToObject(e, "components");
    for (int c = 0; c < QD_SCHEDULE_COMPONENTS && comps; c++) {
      cJSON* x = cJSON_AddObjectToObject(comps, qd_schedule_component_names[c]);
      qd_schedule_sizes_t s = sizes[r * QD_SCHEDULE_COMPONENTS + c];
      for (int f = 0; f < QD_SCHED_FIELDS && x; f++)
        cJSON_AddNumberToObject(x, qd_sched_fields_[f], (double)*qd_sched_field_(&s, f));
    }
    /* For readers: what the schedules come to (qdrun recomputes them from the sizes). */
    for (int m = QD_OFFLOAD_NONE; m <= QD_OFFLOAD_SEQUENTIAL; m++) {
      qd_schedule_estimate_t est;
      qd_schedule_combine(&sizes[r * QD_SCHEDULE_COMPONENTS], (qd_offload_mode_t)m, 0, &est);
      cJSON* x = cJSON_AddObjectToObject(e, qd_offload_mode_name((qd_offload_mode_t)m));
      cJSON_AddNumberToObject(x, "peak", (double)est.peak);
      cJSON_AddNumberToObject(x, "uploaded_per_image", (double)est.uploaded_per_image);
      cJSON_AddNumberToObject(x, "streamed_per_step", (double)est.streamed_per_step);
    }
  }
  return root;
}

/* The record's sizes for one image size; false when the plan has no record for it. */
static qd_status_t qd_sched_recorded_(const qd_plan_t* p, int64_t w, int64_t h, int64_t b,
                                      qd_schedule_sizes_t out[QD_SCHEDULE_COMPONENTS], bool* found) {
  *found = false;
  const qd_plan_section_t* sec = qd_plan_file_find(qd_plan_container(p), QD_PLAN_KIND_SCHD, "offload schedules");
  if (!sec) return QD_OK;
  cJSON* root = cJSON_ParseWithLength((const char*)sec->data, (size_t)sec->size);
  if (!root)
    return QD_ERR(BAD_INPUT, PLAN_CONTENT_JSON, "%s: the offload schedules (SCHD) are not valid JSON", qd_plan_path(p));
  qd_status_t s = QD_OK;
  const cJSON* version = cJSON_GetObjectItemCaseSensitive(root, "schedules_version");
  const cJSON* list = cJSON_GetObjectItemCaseSensitive(root, "sizes");
  if (!cJSON_IsNumber(version) || version->valuedouble != 1 || !cJSON_IsArray(list))
    s = QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: the offload schedules (SCHD) lack 'schedules_version': 1 or "
               "'sizes'", qd_plan_path(p));
  const cJSON* e;
  cJSON_ArrayForEach(e, list) {
    if (s || *found) break;
    const cJSON* ew = cJSON_GetObjectItemCaseSensitive(e, "width");
    const cJSON* eh = cJSON_GetObjectItemCaseSensitive(e, "height");
    const cJSON* eb = cJSON_GetObjectItemCaseSensitive(e, "batch");
    if (!cJSON_IsNumber(ew) || !cJSON_IsNumber(eh) || !cJSON_IsNumber(eb) || ew->valuedouble != (double)w ||
        eh->valuedouble != (double)h || eb->valuedouble != (double)b)
      continue;
    const cJSON* comps = cJSON_GetObjectItemCaseSensitive(e, "components");
    for (int c = 0; c < QD_SCHEDULE_COMPONENTS && !s; c++) {
      const cJSON* x = cJSON_GetObjectItemCaseSensitive(comps, qd_schedule_component_names[c]);
      memset(&out[c], 0, sizeof out[c]);
      for (int f = 0; f < QD_SCHED_FIELDS && !s; f++) {
        const cJSON* v = cJSON_GetObjectItemCaseSensitive(x, qd_sched_fields_[f]);
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > 9007199254740992.0)
          s = QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: the offload schedules (SCHD) at %lldx%lld: '%s' has no "
                     "byte count '%s'", qd_plan_path(p), (long long)w, (long long)h, qd_schedule_component_names[c],
                     qd_sched_fields_[f]);
        else
          *qd_sched_field_(&out[c], f) = (uint64_t)v->valuedouble;
      }
      /* Parts never exceed their wholes in what qdc writes; anything else would underflow the arithmetic. */
      if (!s && (out[c].blocked > out[c].resident || out[c].conditioning > out[c].blocked))
        s = QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: the offload schedules (SCHD) at %lldx%lld: '%s' has more bytes "
                   "in blocks than it holds", qd_plan_path(p), (long long)w, (long long)h,
                   qd_schedule_component_names[c]);
    }
    *found = !s;
  }
  cJSON_Delete(root);
  return s;
}

qd_status_t qd_schedule_plan_sizes(const qd_plan_t* p, int64_t w, int64_t h, int64_t b,
                                   qd_schedule_sizes_t out[QD_SCHEDULE_COMPONENTS], bool* recorded) {
  QD_TRY(qd_sched_recorded_(p, w, h, b, out, recorded));
  if (*recorded) return QD_OK;
  return qd_schedule_plan_sizes_computed(p, w, h, b, out);
}

qd_status_t qd_schedule_estimate(const qd_plan_t* p, int64_t w, int64_t h, int64_t b, qd_offload_mode_t mode,
                                 uint64_t keep, qd_schedule_estimate_t* out) {
  memset(out, 0, sizeof *out);
  if ((int)mode < QD_OFFLOAD_NONE || (int)mode > QD_OFFLOAD_SEQUENTIAL)
    return QD_ERR(UNSUPPORTED, PIPELINE_OPTIONS, "offload mode %d has no estimate", (int)mode);
  qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS];
  bool recorded;
  QD_TRY(qd_schedule_plan_sizes(p, w, h, b, sizes, &recorded));
  qd_schedule_combine(sizes, mode, keep, out);
  return QD_OK;
}

qd_status_t qd_schedule_for_budget(const qd_plan_t* p, int64_t w, int64_t h, int64_t b, uint64_t budget,
                                   qd_schedule_estimate_t* out) {
  uint64_t room = budget > QD_SCHEDULE_CONTEXT_RESERVE ? budget - QD_SCHEDULE_CONTEXT_RESERVE : 0;
  /* Two sets of sizes: the VAE whole, and (when the plan has a tile program) in tiles. */
  qd_schedule_sizes_t sizes[2][QD_SCHEDULE_COMPONENTS];
  bool recorded, tiles;
  QD_TRY(qd_schedule_plan_sizes(p, w, h, b, sizes[0], &recorded));
  memcpy(sizes[1], sizes[0], sizeof sizes[0]);
  QD_TRY(qd_schedule_vae_tile_sizes(p, w, h, &sizes[1][QD_SCHEDULE_VAE], &tiles));
  const qd_schedule_sizes_t* t = &sizes[0][QD_SCHEDULE_TRANSFORMER];
  for (int m = QD_OFFLOAD_NONE; m <= QD_OFFLOAD_SEQUENTIAL; m++)
    for (int tiled = 0; tiled <= (int)tiles; tiled++) {
      qd_schedule_combine(sizes[tiled], (qd_offload_mode_t)m, 0, out);
      out->vae_tiled = tiled;
      if (out->peak > room) continue;
      if (m >= QD_OFFLOAD_GROUP) {
        /* Keep as many of the transformer's blocks as its phase has room for (it grows by exactly the kept
         * bytes). */
        uint64_t slot = m == QD_OFFLOAD_GROUP ? t->largest_block : t->largest_layer;
        uint64_t phase = t->resident + t->working - t->blocked + 2 * slot;
        qd_schedule_combine(sizes[tiled], (qd_offload_mode_t)m, room > phase ? room - phase : 0, out);
        out->vae_tiled = tiled;
      }
      return QD_OK;
    }
  qd_schedule_estimate_t least;
  qd_schedule_combine(sizes[tiles], QD_OFFLOAD_SEQUENTIAL, 0, &least);
  char b1[32], b2[32], b3[32];
  return QD_ERR(BAD_INPUT, PIPELINE_VRAM_BUDGET, "%s: a GPU memory budget of %s does not fit any offload schedule at "
                "%lldx%lld (batch %lld); the smallest, 'sequential'%s, needs %s (%s's phase, with %s for the CUDA "
                "context)", qd_plan_path(p), qd_format_bytes(budget, b1, sizeof b1), (long long)w, (long long)h,
                (long long)b, tiles ? " with the VAE decoding in tiles" : "",
                qd_format_bytes(least.peak + QD_SCHEDULE_CONTEXT_RESERVE, b2, sizeof b2), least.peak_phase,
                qd_format_bytes(QD_SCHEDULE_CONTEXT_RESERVE, b3, sizeof b3));
}
