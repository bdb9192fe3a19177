/* Offload schedules sized from the plan (schedule.h). */
#include "runtime/pipeline/schedule.h"

#include <stdio.h>
#include <string.h>

#include "qd/progress.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda/hoist.h"
#include "runtime/cuda/weight_stream.h"
#include "runtime/plan_internal.h"

enum { QD_SCHED_CLIP = 0, QD_SCHED_T5, QD_SCHED_TRANSFORMER, QD_SCHED_VAE, QD_SCHED_COUNT };
static const char* const qd_sched_names_[QD_SCHED_COUNT] = {"text_encoder", "text_encoder_2", "transformer", "vae"};

typedef struct qd_sched_component {
  uint64_t resident;  /* weights as uploaded, their bf16 copies, code tables */
  uint64_t working;   /* arena, NF4 scratch, cuBLASLt workspace, inputs */
  uint64_t largest_block, unblocked, blocked; /* weight_stream.h's bounds */
  /* The transformer's weights in blocks that only its hoisted conditioning reads (runtime/cuda/hoist.h: the adaLN
   * modulation linears), read once per image: their bytes and the largest block of them. The conditioning's
   * weights outside blocks (the embedders) stay resident like every weight outside blocks. */
  uint64_t conditioning, largest_conditioning_block;
} qd_sched_component_t;

/* The resolution the generator runs a component at: the image's for the transformer and the VAE; for the text
 * encoders batch 1 when the plan has it (their rows are repeated), else the batch's. */
static qd_status_t qd_sched_resolution_(const qd_plan_t* p, int c, int32_t index, int64_t w, int64_t h, int64_t b,
                                        int32_t* out) {
  if (c == QD_SCHED_TRANSFORMER || c == QD_SCHED_VAE) return qd_plan_find_resolution(p, index, w, h, b, out);
  qd_size_binding_t one = {"batch", 1};
  qd_status_t s = qd_plan_find_resolution_by_bindings(p, index, &one, 1, out);
  if (!s || b == 1) return s;
  qd_status_free(s);
  one.value = b;
  return qd_plan_find_resolution_by_bindings(p, index, &one, 1, out);
}

/* Which weights only the hoisted conditioning reads: the generator hoists the transformer's (the same inputs). */
static qd_status_t qd_sched_conditioning_(const qd_plan_component_t* comp, const qd_graph_t* g,
                                          const qd_cuda_lowering_t* l, qd_sched_component_t* out) {
  qd_cuda_hoist_t* h = NULL;
  QD_TRY(qd_cuda_hoist_plan(g, l, "hidden_states", "timestep", qd_allocator_system(), &h));
  bool* only = NULL;
  qd_status_t s = qd_calloc(qd_allocator_system(), (size_t)(g->weight_count ? g->weight_count : 1) * 2,
                            sizeof *only, (void**)&only);
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
    qd_weight_stream_bounds(comp->weights, g->weight_count, only, &out->largest_conditioning_block, &unblocked,
                            &out->conditioning);
  }
  qd_free(qd_allocator_system(), only, (size_t)(g->weight_count ? g->weight_count : 1) * 2 * sizeof *only);
  qd_cuda_hoist_destroy(h);
  return s;
}

static qd_status_t qd_sched_component_(const qd_plan_t* p, int c, int64_t w, int64_t h, int64_t b,
                                       qd_sched_component_t* out) {
  memset(out, 0, sizeof *out);
  int32_t index = qd_plan_find_component(p, qd_sched_names_[c]);
  if (index < 0)
    return QD_ERR(BAD_INPUT, PLAN_NO_COMPONENT, "%s has no component '%s'; offload schedules are for pipeline plans",
                  qd_plan_path(p), qd_sched_names_[c]);
  const qd_plan_component_t* comp = qd_plan_component(p, index);
  int32_t r;
  QD_TRY(qd_sched_resolution_(p, c, index, w, h, b, &r));
  qd_cuda_executor_options_t eo;
  qd_cuda_executor_options_default(&eo);
  qd_graph_t* g = NULL;
  qd_cuda_lowering_t* l = NULL;
  qd_status_t s = qd_plan_instantiate(p, index, r, qd_allocator_system(), &g);
  if (!s) s = qd_cuda_lowering_create(g, eo.gelu_epilogue, qd_allocator_system(), &l);
  if (!s) {
    qd_cuda_memory_needs_t n;
    qd_cuda_memory_needs(comp, g, l, comp->resolutions[r].arena_bytes, &n);
    out->resident = n.weights + n.weight_copies + n.nested_map;
    out->working = n.arena + n.scratch + n.workspace + n.inputs;
    qd_weight_stream_bounds(comp->weights, g->weight_count, NULL, &out->largest_block, &out->unblocked,
                            &out->blocked);
  }
  if (!s && c == QD_SCHED_TRANSFORMER) s = qd_sched_conditioning_(comp, g, l, out);
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
  return s;
}

static void qd_sched_peak_(qd_schedule_estimate_t* e, int c, uint64_t bytes) {
  if (bytes <= e->peak) return;
  e->peak = bytes;
  snprintf(e->peak_phase, sizeof e->peak_phase, "%s", qd_sched_names_[c]);
}

qd_status_t qd_schedule_estimate(const qd_plan_t* p, int64_t w, int64_t h, int64_t b, qd_offload_mode_t mode,
                                 uint64_t keep, qd_schedule_estimate_t* out) {
  memset(out, 0, sizeof *out);
  out->mode = mode;
  if (mode != QD_OFFLOAD_NONE && mode != QD_OFFLOAD_MODEL && mode != QD_OFFLOAD_GROUP)
    return QD_ERR(UNSUPPORTED, PIPELINE_OPTIONS, "offload mode %d has no estimate", (int)mode);
  qd_sched_component_t comps[QD_SCHED_COUNT];
  for (int c = 0; c < QD_SCHED_COUNT; c++) QD_TRY(qd_sched_component_(p, c, w, h, b, &comps[c]));
  const qd_sched_component_t* tr = &comps[QD_SCHED_TRANSFORMER];
  if (mode == QD_OFFLOAD_GROUP && keep > tr->blocked - tr->conditioning) keep = tr->blocked - tr->conditioning;
  out->keep = mode == QD_OFFLOAD_GROUP ? keep : 0;
  for (int c = 0; c < QD_SCHED_COUNT; c++) {
    const qd_sched_component_t* k = &comps[c];
    uint64_t held = k->resident + k->working, uploaded = k->resident;
    if (c == QD_SCHED_TRANSFORMER && mode == QD_OFFLOAD_MODEL) {
      /* The conditioning-only weights in blocks stream once per image through two slots instead of staying. */
      held = k->resident - k->conditioning + 2 * k->largest_conditioning_block + k->working;
    } else if (c == QD_SCHED_TRANSFORMER && mode == QD_OFFLOAD_GROUP) {
      uint64_t step_blocked = k->blocked - k->conditioning;
      held = k->resident - k->blocked + out->keep + 2 * k->largest_block + k->working;
      out->streamed_per_step = step_blocked > out->keep ? step_blocked - out->keep : 0;
      uploaded = k->resident - out->streamed_per_step;
    } else if (c == QD_SCHED_T5 && mode == QD_OFFLOAD_GROUP) {
      held = k->resident - k->blocked + 2 * k->largest_block + k->working;
    }
    if (mode == QD_OFFLOAD_NONE) {
      out->peak += held;
      snprintf(out->peak_phase, sizeof out->peak_phase, "all");
    } else {
      out->uploaded_per_image += uploaded;
      qd_sched_peak_(out, c, held);
    }
  }
  return QD_OK;
}

qd_status_t qd_schedule_for_budget(const qd_plan_t* p, int64_t w, int64_t h, int64_t b, uint64_t budget,
                                   qd_schedule_estimate_t* out) {
  uint64_t room = budget > QD_SCHEDULE_CONTEXT_RESERVE ? budget - QD_SCHEDULE_CONTEXT_RESERVE : 0;
  QD_TRY(qd_schedule_estimate(p, w, h, b, QD_OFFLOAD_NONE, 0, out));
  if (out->peak <= room) return QD_OK;
  QD_TRY(qd_schedule_estimate(p, w, h, b, QD_OFFLOAD_MODEL, 0, out));
  if (out->peak <= room) return QD_OK;
  qd_schedule_estimate_t least;
  QD_TRY(qd_schedule_estimate(p, w, h, b, QD_OFFLOAD_GROUP, 0, &least));
  if (least.peak > room) {
    char b1[32], b2[32], b3[32];
    return QD_ERR(BAD_INPUT, PIPELINE_VRAM_BUDGET, "%s: a GPU memory budget of %s does not fit any offload schedule "
                  "at %lldx%lld (batch %lld); the smallest, 'group', needs %s (%s's phase, with %s for the CUDA "
                  "context)", qd_plan_path(p), qd_format_bytes(budget, b1, sizeof b1), (long long)w, (long long)h,
                  (long long)b, qd_format_bytes(least.peak + QD_SCHEDULE_CONTEXT_RESERVE, b2, sizeof b2),
                  least.peak_phase, qd_format_bytes(QD_SCHEDULE_CONTEXT_RESERVE, b3, sizeof b3));
  }
  /* Keep as many of the transformer's blocks as its phase has room for (it grows by exactly the kept bytes). */
  qd_sched_component_t t;
  QD_TRY(qd_sched_component_(p, QD_SCHED_TRANSFORMER, w, h, b, &t));
  uint64_t phase = t.resident + t.working - t.blocked + 2 * t.largest_block;
  uint64_t keep = room > phase ? room - phase : 0;
  return qd_schedule_estimate(p, w, h, b, QD_OFFLOAD_GROUP, keep, out);
}
