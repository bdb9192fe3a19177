/* The text-to-image pipeline: FluxPipeline.__call__ over a plan's four programs (include/qd/generator.h), on the
 * CPU (qd_cpu_execute on the plan's weights, dequantized to fp32 once, at create) or on a CUDA GPU (one executor
 * per component, runtime/cuda/executor.h, created at the first generation that needs it).
 *
 * Phases:
 *   tokenize  the prompt through CLIP's and T5's tokenizers (TOKN "tokenizer", "tokenizer_2"), padded to each
 *             encoder's length;
 *   encode    "text_encoder" (CLIP) gives the pooled embedding, "text_encoder_2" (T5) the token embeddings; both
 *             run once per prompt when the plan has them at batch 1, and their rows are repeated for the batch
 *             (num_images_per_prompt), as FluxPipeline repeats them;
 *   denoise   seeded noise, then per step "transformer" (velocity) and an Euler step (sampler.c); on CUDA the
 *             text states, pooled embedding, guidance and position ids are set once, the conditioning of every
 *             step is computed once (runtime/cuda/hoist.h), and each step uploads only the latents;
 *   decode    "vae" (which unpacks and de-normalizes the latents itself), then 8-bit postprocessing (png.c).
 * Each component's program (and on CUDA its executor) is instantiated for the resolution a generation needs and
 * kept until another is asked for; with QD_OFFLOAD_MODEL a CUDA executor is destroyed after its phase, so only one
 * component's weights are on the GPU at a time (each generation uploads them again, from a copy of the weights in
 * pinned host memory made at the first: runtime/cuda/host_weights.h). QD_OFFLOAD_GROUP does the same, and the
 * transformer's and T5's executors also stream their blocks' weights from that copy while they run
 * (runtime/cuda/weight_stream.h), keeping on the GPU only what options.keep_bytes allows; QD_OFFLOAD_SEQUENTIAL
 * streams them layer by layer. Out of GPU memory creating an executor, the schedule steps down (none, model, group,
 * sequential) with a warning. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "qd/generator.h"
#include "qd/log.h"
#include "qd/tokenizer.h"
#include "qd/version.h"
#include "runtime/cpu/executor.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda/host_weights.h"
#include "runtime/cuda/module_cache.h"
#include "runtime/cuda/packed_weights.h"
#include "runtime/cuda_driver.h"
#include "runtime/pipeline/generator_internal.h"
#include "runtime/pipeline/latents.h"
#include "runtime/pipeline/png.h"
#include "runtime/pipeline/sampler.h"
#include "runtime/pipeline/schedule.h"
#include "runtime/pipeline/vae_tiles.h"
#include "runtime/plan_internal.h"

/* In phase order, as runtime/pipeline/schedule.h numbers them. */
enum {
  QD_GEN_CLIP = QD_SCHEDULE_CLIP,
  QD_GEN_T5 = QD_SCHEDULE_T5,
  QD_GEN_TRANSFORMER = QD_SCHEDULE_TRANSFORMER,
  QD_GEN_VAE = QD_SCHEDULE_VAE,
  QD_GEN_COUNT = QD_SCHEDULE_COMPONENTS
};

#define qd_gen_names_ qd_schedule_component_names /* the plan's component names, one table */

static const char* const qd_gen_roles_[QD_GEN_COUNT] = {"the CLIP text encoder", "the T5 text encoder",
                                                        "the FLUX transformer", "the VAE decoder"};
static const char* const qd_gen_tok_sections_[2] = {"tokenizer", "tokenizer_2"};

typedef struct qd_gen_component {
  int32_t index;           /* in the plan */
  float** weights;         /* CPU: fp32, indexed like the program's weights */
  qd_graph_t* graph;       /* instantiated for `resolution` */
  int32_t resolution;      /* -1: none yet */
  qd_cuda_executor_t* exec; /* CUDA: for `resolution`; NULL until a generation needs it */
  qd_cuda_host_weights_t* host; /* CUDA with offload: the weights in pinned host memory, from the first use */
  bool host_failed;             /* pinning failed once: uploads read the mapped plan (model offload only) */
} qd_gen_component_t;

/* The shapes of what flows between the four programs, checked once per set of resolutions. */
typedef struct qd_gen_shapes {
  int64_t clip_batch, clip_tokens, pooled_dim;
  int64_t t5_batch, txt_tokens, joint_dim;
  int64_t batch, img_tokens, packed_channels;
  int64_t width, height;
} qd_gen_shapes_t;

struct qd_generator {
  qd_allocator_t allocator;
  const qd_plan_t* plan;
  qd_generator_options_t options;
  qd_threadpool_t* pool;
  qd_tokenizer_t* tokenizers[2]; /* CLIP, T5 */
  qd_scheduler_config_t scheduler;
  qd_gen_component_t comps[QD_GEN_COUNT];
  bool guidance; /* the transformer takes a guidance input (FLUX.1-dev) */
  bool vae_tiles_after_oom; /* the whole decode ran out of GPU memory once: AUTO tiles from then on */
  /* CUDA: the kernel modules every executor launches, loaded on first use and kept while the generator lives, so
   * that the executors an offloaded pipeline makes for every image do not load them again. */
  qd_kernel_module_cache_t* modules;
  /* CUDA: the VAE's convolution filters repacked for conv2d.cu, kept likewise (runtime/cuda/packed_weights.h). */
  qd_packed_weights_t* packed;
  qd_generator_trace_t trace;
  /* The last image size whose four programs were checked together (batch 0: none yet), and what the check found:
   * the next image of that size need not instantiate the whole-size VAE again (its decode may be tiled). */
  int64_t checked_width, checked_height, checked_batch;
  qd_gen_shapes_t checked;
  /* Under a VRAM budget: its schedule for images of budget_size {width, height, batch} (batch 0: none asked yet),
   * which sizes the transformer's kept blocks and decides whether the VAE tiles (qd_gen_budget_estimate_). */
  int64_t budget_size[3];
  qd_schedule_estimate_t budget_estimate;
};

/* --- options and parameters --------------------------------------------------------------------------------------- */

void qd_generator_options_init(qd_generator_options_t* o) {
  memset(o, 0, sizeof *o);
  o->device = QD_GENERATOR_DEVICE_CPU;
  o->offload = QD_OFFLOAD_NONE;
}

static const char* const qd_offload_names_[] = {"none", "model", "group", "sequential"};

const char* qd_offload_mode_name(qd_offload_mode_t mode) {
  return (int)mode >= QD_OFFLOAD_NONE && (int)mode <= QD_OFFLOAD_SEQUENTIAL ? qd_offload_names_[mode] : "?";
}

bool qd_offload_mode_parse(const char* name, qd_offload_mode_t* out) {
  for (int m = QD_OFFLOAD_NONE; m <= QD_OFFLOAD_SEQUENTIAL; m++)
    if (strcmp(name, qd_offload_names_[m]) == 0) {
      *out = (qd_offload_mode_t)m;
      return true;
    }
  return false;
}

void qd_generate_params_init(qd_generate_params_t* p) {
  memset(p, 0, sizeof *p);
  p->guidance = NAN;
}

void qd_generator_set_trace(qd_generator_t* g, const qd_generator_trace_t* trace) {
  if (trace)
    g->trace = *trace;
  else
    memset(&g->trace, 0, sizeof g->trace);
}

const char* qd_generator_model(const qd_generator_t* g) { return qd_plan_model(g->plan); }
int32_t qd_generator_default_steps(const qd_generator_t* g) { return g->guidance ? 28 : 4; }
float qd_generator_default_guidance(const qd_generator_t* g) { return g->guidance ? 3.5f : NAN; }

int32_t qd_generator_resolution_count(const qd_generator_t* g) {
  return qd_plan_resolution_count(g->plan, g->comps[QD_GEN_TRANSFORMER].index);
}

void qd_generator_resolution(const qd_generator_t* g, int32_t i, int32_t* w, int32_t* h, int32_t* b) {
  int64_t w64 = 0, h64 = 0, b64 = 0;
  if (i >= 0 && i < qd_generator_resolution_count(g))
    qd_plan_resolution(g->plan, g->comps[QD_GEN_TRANSFORMER].index, i, &w64, &h64, &b64);
  *w = (int32_t)w64;
  *h = (int32_t)h64;
  *b = (int32_t)b64;
}

/* --- programs ----------------------------------------------------------------------------------------------------- */

static qd_status_t qd_gen_use_resolution_(qd_generator_t* g, int c, int32_t res) {
  qd_gen_component_t* comp = &g->comps[c];
  if (comp->resolution == res) return QD_OK;
  qd_cuda_executor_destroy(comp->exec);
  comp->exec = NULL;
  qd_graph_destroy(comp->graph);
  comp->graph = NULL;
  comp->resolution = -1;
  QD_TRY(qd_plan_instantiate(g->plan, comp->index, res, g->allocator, &comp->graph));
  comp->resolution = res;
  return QD_OK;
}

static const qd_value_t* qd_gen_input_(const qd_graph_t* gr, const char* name) {
  int32_t i = qd_graph_find_input(gr, name);
  return i < 0 ? NULL : &gr->values[gr->inputs[i]];
}

static const qd_value_t* qd_gen_output_(const qd_graph_t* gr, const char* name, int32_t* out_index) {
  int32_t o = qd_graph_find_output(gr, name);
  if (out_index) *out_index = o;
  return o < 0 ? NULL : &gr->values[gr->outputs[o].value];
}

/* A program lacks an input or output the pipeline feeds or reads: the plan's description is not the FLUX one. */
static qd_status_t qd_gen_missing_(const qd_generator_t* g, int c, const char* kind, const char* name) {
  return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: component '%s' (%s) has no %s '%s'; its program is "
                "not the one FluxPipeline's %s has", qd_plan_path(g->plan), qd_gen_names_[c], qd_gen_roles_[c], kind,
                name, qd_gen_names_[c]);
}

static qd_status_t qd_gen_disagree_(const qd_generator_t* g, const char* what, const char* a, const qd_shape_t* sa,
                                    const char* b, const qd_shape_t* sb) {
  char x[128], y[128];
  return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: %s: %s is %s but %s is %s; the components were not "
                "compiled from one pipeline", qd_plan_path(g->plan), what, a, qd_shape_format(sa, x, sizeof x), b,
                qd_shape_format(sb, y, sizeof y));
}

static qd_status_t qd_gen_check_(const qd_generator_t* g, qd_gen_shapes_t* s) {
  const qd_graph_t* clip = g->comps[QD_GEN_CLIP].graph;
  const qd_graph_t* t5 = g->comps[QD_GEN_T5].graph;
  const qd_graph_t* tr = g->comps[QD_GEN_TRANSFORMER].graph;
  const qd_graph_t* vae = g->comps[QD_GEN_VAE].graph;
  const qd_value_t *clip_ids = qd_gen_input_(clip, "input_ids"), *pooled = qd_gen_output_(clip, "pooled", NULL);
  const qd_value_t *t5_ids = qd_gen_input_(t5, "input_ids"), *t5_out = qd_gen_output_(t5, "last_hidden_state", NULL);
  if (!clip_ids) return qd_gen_missing_(g, QD_GEN_CLIP, "input", "input_ids");
  if (!pooled) return qd_gen_missing_(g, QD_GEN_CLIP, "output", "pooled");
  if (!t5_ids) return qd_gen_missing_(g, QD_GEN_T5, "input", "input_ids");
  if (!t5_out) return qd_gen_missing_(g, QD_GEN_T5, "output", "last_hidden_state");
  static const char* const tr_inputs[] = {"hidden_states", "encoder_hidden_states", "pooled_projections", "timestep",
                                          "img_ids", "txt_ids"};
  const qd_value_t* tv[6];
  for (int i = 0; i < 6; i++)
    if (!(tv[i] = qd_gen_input_(tr, tr_inputs[i]))) return qd_gen_missing_(g, QD_GEN_TRANSFORMER, "input", tr_inputs[i]);
  const qd_value_t* velocity = qd_gen_output_(tr, "output", NULL);
  if (!velocity) return qd_gen_missing_(g, QD_GEN_TRANSFORMER, "output", "output");
  const qd_value_t *latents = qd_gen_input_(vae, "latents"), *image = qd_gen_output_(vae, "image", NULL);
  if (!latents) return qd_gen_missing_(g, QD_GEN_VAE, "input", "latents");
  if (!image) return qd_gen_missing_(g, QD_GEN_VAE, "output", "image");
  bool ranks = clip_ids->shape.rank == 2 && pooled->shape.rank == 2 && t5_ids->shape.rank == 2 &&
               t5_out->shape.rank == 3 && tv[0]->shape.rank == 3 && tv[1]->shape.rank == 3 &&
               tv[2]->shape.rank == 2 && velocity->shape.rank == 3 && latents->shape.rank == 3 &&
               image->shape.rank == 4 && qd_dtype_size(clip_ids->dtype) != 0 && qd_dtype_size(t5_ids->dtype) != 0 &&
               (clip_ids->dtype == QD_DTYPE_I32 || clip_ids->dtype == QD_DTYPE_I64) &&
               (t5_ids->dtype == QD_DTYPE_I32 || t5_ids->dtype == QD_DTYPE_I64);
  if (!ranks)
    return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: the programs' inputs and outputs do not have "
                  "FluxPipeline's ranks and types", qd_plan_path(g->plan));
  s->clip_batch = clip_ids->shape.dims[0];
  s->clip_tokens = clip_ids->shape.dims[1];
  s->pooled_dim = pooled->shape.dims[1];
  s->t5_batch = t5_ids->shape.dims[0];
  s->txt_tokens = t5_ids->shape.dims[1];
  s->joint_dim = t5_out->shape.dims[2];
  s->batch = tv[0]->shape.dims[0];
  s->img_tokens = tv[0]->shape.dims[1];
  s->packed_channels = tv[0]->shape.dims[2];
  s->height = image->shape.dims[2];
  s->width = image->shape.dims[3];
  if (tv[2]->shape.dims[1] != s->pooled_dim)
    return qd_gen_disagree_(g, "pooled text embedding", "CLIP's pooled output", &pooled->shape,
                            "the transformer's pooled_projections", &tv[2]->shape);
  if (tv[1]->shape.dims[1] != s->txt_tokens || tv[1]->shape.dims[2] != s->joint_dim)
    return qd_gen_disagree_(g, "text tokens", "T5's last_hidden_state", &t5_out->shape,
                            "the transformer's encoder_hidden_states", &tv[1]->shape);
  if (!qd_shape_equal(&velocity->shape, &tv[0]->shape) || !qd_shape_equal(&latents->shape, &tv[0]->shape))
    return qd_gen_disagree_(g, "latents", "the transformer's hidden_states", &tv[0]->shape, "the VAE's latents",
                            &latents->shape);
  if (s->packed_channels % 4 != 0 || image->shape.dims[0] != s->batch || image->shape.dims[1] != 3)
    return qd_gen_disagree_(g, "image", "the transformer's hidden_states", &tv[0]->shape, "the VAE's image",
                            &image->shape);
  if ((s->clip_batch != 1 && s->clip_batch != s->batch) || (s->t5_batch != 1 && s->t5_batch != s->batch))
    return QD_ERR(INTERNAL, INTERNAL, "text encoder batches %lld/%lld for %lld images", (long long)s->clip_batch,
                  (long long)s->t5_batch, (long long)s->batch);
  /* FluxPipeline pads CLIP's ids to its tokenizer's model_max_length; the encoder must take exactly that many. */
  size_t mml = qd_tokenizer_model_max_length(g->tokenizers[0]);
  if ((int64_t)mml != s->clip_tokens)
    return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: the CLIP tokenizer pads to %zu tokens "
                  "(model_max_length) but the CLIP text encoder takes %lld", qd_plan_path(g->plan), mml,
                  (long long)s->clip_tokens);
  return QD_OK;
}

/* Instantiates all four programs for one image size and batch and checks they fit together. */
static qd_status_t qd_gen_prepare_(qd_generator_t* g, int64_t width, int64_t height, int64_t batch,
                                   qd_gen_shapes_t* shapes) {
  /* Text encoders do not depend on the image size: batch 1 when the plan has it (encode once, repeat the rows).
   * T5's text length is checked against the transformer's afterwards (a plan built from mismatched pieces says so
   * rather than "no resolution"). For the size checked last the programs are known to fit: the VAE keeps whatever
   * program it has (its tile program after a tiled decode; qd_gen_decode_ picks the one it needs), so that a tiled
   * decode does not cost a new VAE executor every image. */
  const bool same = g->checked_batch && width == g->checked_width && height == g->checked_height &&
                    batch == g->checked_batch;
  static const int order[] = {QD_GEN_TRANSFORMER, QD_GEN_VAE, QD_GEN_CLIP, QD_GEN_T5};
  for (int k = 0; k < 4; k++) {
    if (same && order[k] == QD_GEN_VAE) continue;
    int32_t res;
    QD_TRY(qd_schedule_component_resolution(g->plan, order[k], g->comps[order[k]].index, width, height, batch, &res));
    QD_TRY(qd_gen_use_resolution_(g, order[k], res));
  }
  if (same) {
    *shapes = g->checked;
    return QD_OK;
  }
  g->checked_batch = 0;
  QD_TRY(qd_gen_check_(g, shapes));
  if (shapes->width != width || shapes->height != height || shapes->batch != batch)
    return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: the programs compiled for %lldx%lld (batch %lld) make "
                  "%lldx%lld images for %lld", qd_plan_path(g->plan), (long long)width, (long long)height,
                  (long long)batch, (long long)shapes->width, (long long)shapes->height, (long long)shapes->batch);
  g->checked = *shapes;
  g->checked_width = width, g->checked_height = height, g->checked_batch = batch;
  return QD_OK;
}

/* Runs one component: inputs by name (each buffer holds exactly the graph's shape and type). */
typedef struct qd_gen_input {
  const char* name;
  const void* data;
} qd_gen_input_t;

/* The VRAM budget's schedule for images of w x h at batch b, worked out once per size: the budget is the
 * generator's, so the answer for a size never changes, and offloaded executors, made again every image, ask for it
 * each time. */
static qd_status_t qd_gen_budget_estimate_(qd_generator_t* g, int64_t w, int64_t h, int64_t b,
                                           qd_schedule_estimate_t* out) {
  int64_t* k = g->budget_size;
  if (!(k[0] == w && k[1] == h && k[2] == b)) {
    k[2] = 0; /* nothing cached while it is worked out */
    QD_TRY(qd_schedule_for_budget(g->plan, w, h, b, g->options.vram_budget, &g->budget_estimate));
    k[0] = w, k[1] = h, k[2] = b;
  }
  *out = g->budget_estimate;
  return QD_OK;
}

/* Creates component c's CUDA executor under the current offload mode. */
static qd_status_t qd_gen_executor_create_(qd_generator_t* g, int c) {
  qd_gen_component_t* comp = &g->comps[c];
  qd_offload_mode_t mode = g->options.offload;
  qd_cuda_executor_options_t o;
  qd_cuda_executor_options_default(&o);
  o.device = g->options.device_index;
  if (c == QD_GEN_TRANSFORMER) {
    o.hoist_state_input = "hidden_states";
    o.hoist_step_input = "timestep";
  }
  if (mode != QD_OFFLOAD_NONE && !comp->host && !comp->host_failed) {
    const qd_plan_component_t* pc = qd_plan_component(g->plan, comp->index);
    qd_status_t hs = qd_cuda_host_weights_create(o.device, pc->weight_data, pc->weight_bytes, qd_gen_names_[c],
                                                 g->allocator, &comp->host);
    if (hs && mode >= QD_OFFLOAD_GROUP)
      return qd_status_annotate(hs, "streaming the weights of '%s' (%s) needs them in pinned host memory; "
                                "--offload model uploads from pageable memory", qd_gen_names_[c], qd_gen_roles_[c]);
    if (hs) {
      char why[256];
      qd_status_format(hs, why, sizeof why);
      QD_LOG_WARN("%s: %s; its uploads read the plan's pages (slower)", qd_plan_path(g->plan), why);
      qd_status_free(hs);
      comp->host_failed = true;
    }
  }
  o.host_weights = comp->host;
  if (!g->modules) QD_TRY(qd_kernel_module_cache_create(g->allocator, o.device, &g->modules));
  if (!g->packed) QD_TRY(qd_packed_weights_create(g->allocator, &g->packed));
  o.module_cache = g->modules;
  o.packed_weights = g->packed;
  /* Offloaded, the transformer streams the weights only its hoisted conditioning reads (once per image) and keeps
   * the step's: all of them with MODEL, those options.keep_bytes holds with GROUP and SEQUENTIAL, which stream
   * T5's too (by block, or layer by layer). */
  if (comp->host && ((mode >= QD_OFFLOAD_GROUP && (c == QD_GEN_TRANSFORMER || c == QD_GEN_T5)) ||
                     (mode == QD_OFFLOAD_MODEL && c == QD_GEN_TRANSFORMER))) {
    o.stream_weights = true;
    o.stream_layers = mode == QD_OFFLOAD_SEQUENTIAL;
    o.stream_keep_bytes = c != QD_GEN_TRANSFORMER ? 0 : mode == QD_OFFLOAD_MODEL ? UINT64_MAX : g->options.keep_bytes;
    /* Under a budget the kept blocks are sized for this resolution: a smaller image leaves room for more. */
    if (c == QD_GEN_TRANSFORMER && mode >= QD_OFFLOAD_GROUP && g->options.vram_budget) {
      int64_t w, h, b;
      qd_plan_resolution(g->plan, comp->index, comp->resolution, &w, &h, &b);
      qd_schedule_estimate_t est;
      qd_status_t bs = qd_gen_budget_estimate_(g, w, h, b, &est);
      uint64_t keep = 0; /* the schedule's keep only for the mode it chose (not one fallen back to) */
      if (!bs && est.mode == mode) keep = est.keep;
      if (!bs && est.mode < QD_OFFLOAD_GROUP) keep = UINT64_MAX; /* everything fits here */
      qd_status_free(bs);
      if (keep > o.stream_keep_bytes) o.stream_keep_bytes = keep;
    }
  }
  return qd_cuda_executor_create(g->plan, comp->index, comp->resolution, &o, g->allocator, &comp->exec);
}

/* The component's CUDA executor for its current resolution, created on first use (weights uploaded, kernels loaded;
 * the time goes to *load_seconds). The transformer's hoists its conditioning out of the step. Out of GPU memory,
 * the generator falls back to the next smaller schedule (none -> model -> group -> sequential) with a warning,
 * releasing every other executor first; out of memory with sequential is an error, and so is any other failure
 * (a failed pinning of host memory is OUT_OF_MEMORY, not the GPU's). The VAE steps down from none to model only
 * (the decode then tiles if it may: qd_gen_decode_). */
static qd_status_t qd_gen_executor_(qd_generator_t* g, int c, double* load_seconds, qd_cuda_executor_t** out) {
  qd_gen_component_t* comp = &g->comps[c];
  double t0 = qd_now_seconds();
  while (!comp->exec) {
    qd_status_t s = qd_gen_executor_create_(g, c);
    if (!s) break;
    qd_offload_mode_t mode = g->options.offload;
    /* Offloaded, the VAE is alone on the GPU in its phase whatever the schedule: a smaller one would not help it
     * (the decode tiles instead, when it may). */
    if (qd_status_code(s) != QD_CODE_DEVICE_OUT_OF_MEMORY || mode >= QD_OFFLOAD_SEQUENTIAL ||
        (c == QD_GEN_VAE && mode >= QD_OFFLOAD_MODEL))
      return qd_status_annotate(s, "preparing '%s' (%s) on the GPU with offload '%s'", qd_gen_names_[c],
                                qd_gen_roles_[c], qd_offload_mode_name(mode));
    char why[512];
    qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    QD_LOG_WARN("%s: out of GPU memory preparing '%s' with offload '%s' (%s); falling back to '%s'",
                qd_plan_path(g->plan), qd_gen_names_[c], qd_offload_mode_name(mode), why,
                qd_offload_mode_name(mode + 1));
    for (int k = 0; k < QD_GEN_COUNT; k++) {
      qd_cuda_executor_destroy(g->comps[k].exec);
      g->comps[k].exec = NULL;
    }
    g->options.offload = mode + 1;
    g->options.keep_bytes = 0;
  }
  *load_seconds += qd_now_seconds() - t0;
  *out = comp->exec;
  return QD_OK;
}

/* After a component's phase, offloaded, its executor goes (weights and activations leave the GPU). */
static void qd_gen_phase_done_(qd_generator_t* g, int c) {
  if (g->options.offload == QD_OFFLOAD_NONE) return;
  qd_cuda_executor_destroy(g->comps[c].exec);
  g->comps[c].exec = NULL;
}

/* The tensor of graph input `v` over caller data (host, the graph's type: F32 for floating inputs). */
static qd_tensor_t qd_gen_tensor_(const qd_value_t* v, const void* data) {
  uint64_t bytes = 0;
  qd_dtype_bytes_for(v->dtype, (uint64_t)qd_shape_numel(&v->shape), &bytes);
  return (qd_tensor_t){v->dtype, v->shape, (void*)data, (size_t)bytes};
}

/* Sets the executor's input `name` when the program has it (a program may lack guidance). */
static qd_status_t qd_gen_cuda_input_(qd_cuda_executor_t* e, const char* name, const void* data) {
  const qd_graph_t* gr = qd_cuda_executor_graph(e);
  int32_t i = qd_graph_find_input(gr, name);
  if (i < 0) return QD_OK;
  qd_tensor_t t = qd_gen_tensor_(&gr->values[gr->inputs[i]], data);
  return qd_cuda_executor_set_input(e, i, &t);
}

static qd_status_t qd_gen_run_(qd_generator_t* g, int c, const qd_gen_input_t* in, int32_t n, qd_tensor_t* outputs,
                               int32_t output_capacity, double* load_seconds) {
  const qd_graph_t* gr = g->comps[c].graph;
  qd_tensor_t tensors[16];
  if (gr->input_count > 16 || gr->output_count > output_capacity)
    return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: component '%s' has %d inputs and %d outputs; "
                  "FluxPipeline's has fewer", qd_plan_path(g->plan), qd_gen_names_[c], gr->input_count,
                  gr->output_count);
  for (int32_t i = 0; i < gr->input_count; i++) {
    const qd_value_t* v = &gr->values[gr->inputs[i]];
    const void* data = NULL;
    for (int32_t k = 0; k < n && !data; k++)
      if (strcmp(in[k].name, v->name) == 0) data = in[k].data;
    if (!data)
      return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: component '%s' (%s) takes an input '%s' that "
                    "FluxPipeline does not give it", qd_plan_path(g->plan), qd_gen_names_[c], qd_gen_roles_[c],
                    v->name);
    tensors[i] = qd_gen_tensor_(v, data);
  }
  if (g->options.device == QD_GENERATOR_DEVICE_CUDA) {
    qd_cuda_executor_t* e;
    QD_TRY(qd_gen_executor_(g, c, load_seconds, &e));
    for (int32_t i = 0; i < gr->input_count; i++) QD_TRY(qd_cuda_executor_set_input(e, i, &tensors[i]));
    QD_TRY_CTX(qd_cuda_executor_run(e), "running '%s' (%s) on the GPU", qd_gen_names_[c], qd_gen_roles_[c]);
    for (int32_t o = 0; o < gr->output_count; o++) QD_TRY(qd_cuda_executor_get_output(e, o, &outputs[o]));
    return QD_OK;
  }
  qd_cpu_run_options_t opts = {g->pool, NULL, NULL};
  QD_TRY_CTX(qd_cpu_execute(gr, (const float* const*)g->comps[c].weights, tensors, outputs, &opts, g->allocator),
             "running '%s' (%s)", qd_gen_names_[c], qd_gen_roles_[c]);
  return QD_OK;
}

/* --- create / destroy --------------------------------------------------------------------------------------------- */

void qd_generator_destroy(qd_generator_t* g) {
  if (!g) return;
  for (int c = 0; c < QD_GEN_COUNT; c++) {
    qd_cuda_executor_destroy(g->comps[c].exec);
    qd_cuda_host_weights_destroy(g->comps[c].host);
    qd_graph_destroy(g->comps[c].graph);
    if (g->comps[c].weights) qd_plan_weights_f32_free(g->plan, g->comps[c].index, g->allocator, g->comps[c].weights);
  }
  qd_kernel_module_cache_destroy(g->modules); /* after the executors, which borrowed from these */
  qd_packed_weights_destroy(g->packed);
  for (int t = 0; t < 2; t++) qd_tokenizer_destroy(g->tokenizers[t]);
  qd_threadpool_destroy(g->pool);
  qd_free(g->allocator, g, sizeof *g);
}

static qd_status_t qd_gen_components_(qd_generator_t* g) {
  for (int c = 0; c < QD_GEN_COUNT; c++) {
    g->comps[c].resolution = -1;
    g->comps[c].index = qd_plan_find_component(g->plan, qd_gen_names_[c]);
    if (g->comps[c].index >= 0) continue;
    char have[256];
    size_t used = 0;
    for (int32_t i = 0; i < qd_plan_component_count(g->plan) && used < sizeof have; i++) {
      int k = snprintf(have + used, sizeof have - used, "%s'%s'", i ? ", " : "", qd_plan_component_name(g->plan, i));
      if (k > 0) used += (size_t)k;
    }
    return QD_ERR(INVALID_ARGUMENT, PLAN_NO_COMPONENT, "%s: no component '%s' (%s); the plan has %s. Generating "
                  "images needs a pipeline plan: compile a diffusers FLUX directory with 'qdc compile DIR', or the "
                  "transformer file with --vae, --clip-l, --t5 and --tokenizers", qd_plan_path(g->plan),
                  qd_gen_names_[c], qd_gen_roles_[c], have);
  }
  return QD_OK;
}

static qd_status_t qd_gen_tokenizers_(qd_generator_t* g) {
  qd_plan_file_t* pf = qd_plan_container(g->plan);
  for (int t = 0; t < 2; t++) {
    const qd_plan_section_t* sec = qd_plan_file_find(pf, QD_PLAN_KIND_TOKN, qd_gen_tok_sections_[t]);
    if (!sec)
      return QD_ERR(INVALID_ARGUMENT, PIPELINE_NO_TOKENIZER, "%s: no TOKN section '%s' (the %s tokenizer); compile "
                    "the plan from a directory with %s/", qd_plan_path(g->plan), qd_gen_tok_sections_[t],
                    t ? "T5" : "CLIP", qd_gen_tok_sections_[t]);
    QD_TRY_CTX(qd_tokenizer_load_blob(sec->data, (size_t)sec->size, g->allocator, &g->tokenizers[t]), "%s: TOKN/%s",
               qd_plan_path(g->plan), qd_gen_tok_sections_[t]);
    qd_tokenizer_kind_t want = t ? QD_TOKENIZER_T5 : QD_TOKENIZER_CLIP;
    if (qd_tokenizer_kind(g->tokenizers[t]) != want)
      return QD_ERR(BAD_INPUT, PIPELINE_NO_TOKENIZER, "%s: TOKN/%s holds a %s tokenizer; FluxPipeline's %s is %s",
                    qd_plan_path(g->plan), qd_gen_tok_sections_[t], t ? "CLIP" : "T5", qd_gen_tok_sections_[t],
                    t ? "T5's" : "CLIP's");
  }
  return QD_OK;
}

/* META "scheduler" (scheduler/scheduler_config.json, verbatim), or FLUX.1's when the plan carries none. */
static qd_status_t qd_gen_scheduler_(qd_generator_t* g) {
  const char* meta = qd_plan_metadata_json(g->plan);
  cJSON* root = cJSON_Parse(meta);
  const cJSON* sched = root ? cJSON_GetObjectItemCaseSensitive(root, "scheduler") : NULL;
  qd_status_t s = QD_OK;
  if (sched) {
    char source[512];
    snprintf(source, sizeof source, "%s: META scheduler", qd_plan_path(g->plan));
    s = qd_scheduler_config_from_json(sched, source, &g->scheduler);
  } else {
    qd_scheduler_config_flux(&g->scheduler, g->guidance);
    QD_LOG_INFO("%s: no scheduler config in the plan; using FLUX.1-%s's", qd_plan_path(g->plan),
                g->guidance ? "dev" : "schnell");
  }
  cJSON_Delete(root);
  return s;
}

/* A VRAM budget: the fastest schedule that fits at every size the plan has (the largest size decides). */
static qd_status_t qd_gen_apply_budget_(qd_generator_t* g) {
  qd_offload_mode_t mode = QD_OFFLOAD_NONE;
  uint64_t keep = UINT64_MAX;
  bool tiles = false; /* the decode is tiled at some size (decided again per image: qd_gen_tiles_wanted_) */
  for (int32_t i = 0; i < qd_generator_resolution_count(g); i++) {
    int32_t w, h, b;
    qd_generator_resolution(g, i, &w, &h, &b);
    qd_schedule_estimate_t e;
    QD_TRY(qd_schedule_for_budget(g->plan, w, h, b, g->options.vram_budget, &e));
    if (e.mode > mode) mode = e.mode;
    if (e.mode >= QD_OFFLOAD_GROUP && e.keep < keep) keep = e.keep;
    tiles = tiles || e.vae_tiled;
  }
  g->options.offload = mode;
  g->options.keep_bytes = mode >= QD_OFFLOAD_GROUP ? keep : 0;
  char b1[32], b2[32];
  QD_LOG_INFO("%s: a GPU memory budget of %s: offload '%s'%s%s%s", qd_plan_path(g->plan),
              qd_format_bytes(g->options.vram_budget, b1, sizeof b1), qd_offload_mode_name(mode),
              mode >= QD_OFFLOAD_GROUP ? ", keeping the transformer's first blocks up to " : "",
              mode >= QD_OFFLOAD_GROUP ? qd_format_bytes(keep, b2, sizeof b2) : "",
              tiles ? ", the VAE decoding in tiles at the largest sizes" : "");
  return QD_OK;
}

qd_offload_mode_t qd_generator_offload(const qd_generator_t* g, uint64_t* keep) {
  if (keep) *keep = g->options.keep_bytes;
  return g->options.offload;
}

qd_status_t qd_generator_create(const qd_plan_t* plan, const qd_generator_options_t* options, qd_allocator_t a,
                                qd_generator_t** out) {
  *out = NULL;
  qd_generator_options_t o;
  if (options)
    o = *options;
  else
    qd_generator_options_init(&o);
  if (o.device != QD_GENERATOR_DEVICE_CPU && o.device != QD_GENERATOR_DEVICE_CUDA)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_DEVICE, "device %d is neither CPU (0) nor CUDA (1)", (int)o.device);
  if ((int)o.offload < QD_OFFLOAD_NONE || (int)o.offload > QD_OFFLOAD_SEQUENTIAL)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "offload mode %d is not one of none (0), model (1), group (2), "
                  "sequential (3)", (int)o.offload);
  if (o.device == QD_GENERATOR_DEVICE_CPU && o.offload != QD_OFFLOAD_NONE)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "offload '%s' applies to CUDA generation; the CPU keeps every "
                  "weight in host memory", qd_offload_mode_name(o.offload));
  if (o.vram_budget && (o.device != QD_GENERATOR_DEVICE_CUDA || o.offload != QD_OFFLOAD_NONE || o.keep_bytes))
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "a GPU memory budget picks the offload schedule itself: give it "
                  "for CUDA generation, without an offload mode or kept bytes");
  if (o.keep_bytes && o.offload != QD_OFFLOAD_GROUP && o.offload != QD_OFFLOAD_SEQUENTIAL)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "keep_bytes applies to offload 'group' and 'sequential' "
                  "(streamed weights), not '%s'", qd_offload_mode_name(o.offload));
  if (o.device == QD_GENERATOR_DEVICE_CUDA) {
    /* Fail here, not at the first generation, on a machine without a usable GPU. */
    const qd_cuda_driver_t* cu;
    qd_status_t ds = qd_cuda_driver_load(&cu);
    int count = 0;
    if (!ds) ds = QD_CU_STATUS(cu->cuDeviceGetCount(&count));
    if (!ds && (o.device_index < 0 || o.device_index >= count))
      ds = QD_ERR(INVALID_ARGUMENT, PIPELINE_DEVICE, "CUDA device %d does not exist; this machine has %d",
                  o.device_index, count);
    if (ds) return qd_status_annotate(ds, "%s: generating on CUDA", qd_plan_path(plan));
  }
  if ((int)o.vae_tiling < QD_VAE_TILING_AUTO || (int)o.vae_tiling > QD_VAE_TILING_OFF)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "VAE tiling %d is not one of auto (0), on (1), off (2)",
                  (int)o.vae_tiling);
  if (o.threads < 0 || o.threads > 1024)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_OPTIONS, "%d CPU threads; expected 1 to 1024, or 0 for one per core",
                  o.threads);
  qd_generator_t* g;
  QD_TRY(qd_calloc(a, 1, sizeof *g, (void**)&g));
  g->allocator = a;
  g->plan = plan;
  g->options = o;
  for (int c = 0; c < QD_GEN_COUNT; c++) g->comps[c].resolution = -1;
  qd_status_t s = qd_gen_components_(g);
  if (!s) s = qd_gen_tokenizers_(g);
  /* The first resolution's programs: what the defaults depend on (guidance), and a check that the pieces fit. */
  qd_gen_shapes_t shapes;
  int64_t w = 0, h = 0, b = 0;
  if (!s) {
    qd_plan_resolution(plan, g->comps[QD_GEN_TRANSFORMER].index, 0, &w, &h, &b);
    s = qd_gen_prepare_(g, w, h, b, &shapes);
  }
  if (!s) g->guidance = qd_gen_input_(g->comps[QD_GEN_TRANSFORMER].graph, "guidance") != NULL;
  if (!s) s = qd_gen_scheduler_(g);
  if (!s && o.vram_budget) s = qd_gen_apply_budget_(g);
  for (int c = 0; c < QD_GEN_COUNT && !s && o.device == QD_GENERATOR_DEVICE_CPU; c++) {
    s = qd_plan_weights_f32(plan, g->comps[c].index, a, &g->comps[c].weights);
    if (s) s = qd_status_annotate(s, "reading the weights of '%s'", qd_gen_names_[c]);
  }
  if (!s) s = qd_threadpool_create(o.threads, a, &g->pool);
  if (s) {
    qd_generator_destroy(g);
    return s;
  }
  *out = g;
  return QD_OK;
}

/* --- generate ----------------------------------------------------------------------------------------------------- */

void qd_generate_result_deinit(qd_generate_result_t* r) {
  if (!r) return;
  if (r->pixels) qd_free(r->allocator, r->pixels, r->image_bytes * (size_t)r->batch);
  if (r->prompt) qd_free(r->allocator, r->prompt, strlen(r->prompt) + 1);
  if (r->model) qd_free(r->allocator, r->model, strlen(r->model) + 1);
  memset(r, 0, sizeof *r);
}

static qd_status_t qd_gen_check_params_(const qd_generator_t* g, const qd_generate_params_t* p, int32_t* steps,
                                        float* guidance, int32_t* width, int32_t* height, int32_t* batch) {
  if (!p || !p->prompt)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_PROMPT, "no prompt (params->prompt is NULL; an empty string is a prompt)");
  *steps = p->steps ? p->steps : qd_generator_default_steps(g);
  if (*steps < 1 || *steps > QD_SAMPLER_MAX_STEPS)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_STEPS, "%d denoising steps; expected 1 to %d (0 for the model's %d)",
                  p->steps, QD_SAMPLER_MAX_STEPS, qd_generator_default_steps(g));
  if (isnan(p->guidance)) {
    *guidance = 3.5f;
  } else if (!(p->guidance >= 0.0f && p->guidance <= 100.0f)) {
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_GUIDANCE, "guidance scale %g; expected a number from 0 to 100 (NAN for "
                  "the default, 3.5)", (double)p->guidance);
  } else {
    *guidance = p->guidance;
  }
  if (!g->guidance) {
    if (!isnan(p->guidance))
      QD_LOG_WARN("%s: the transformer takes no guidance (a schnell-type model); ignoring guidance %g",
                  qd_plan_path(g->plan), (double)p->guidance);
    *guidance = NAN;
  }
  *batch = p->batch ? p->batch : 1;
  if (*batch < 1 || *batch > 64)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_BATCH, "%d images; expected 1 to 64", p->batch);
  *width = p->width;
  *height = p->height;
  if (*width == 0 && *height == 0) {
    int32_t b;
    qd_generator_resolution(g, 0, width, height, &b);
  }
  /* FluxPipeline rounds other sizes down to a multiple of 16 (with a warning); a plan serves exact sizes only, so
   * say so instead. */
  if (*width < 16 || *height < 16 || *width % 16 || *height % 16 || *width > 65536 || *height > 65536)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_SIZE, "%dx%d: width and height must be positive multiples of 16 (the VAE "
                  "halves 3 times and the transformer packs 2x2 latents)", p->width, p->height);
  return QD_OK;
}

/* Buffers of one generation, freed together. */
typedef struct qd_gen_buffers {
  size_t sizes[16];
  void* ptrs[16];
  int count;
} qd_gen_buffers_t;

static qd_status_t qd_gen_alloc_(qd_generator_t* g, qd_gen_buffers_t* b, size_t bytes, void** out) {
  if (b->count == (int)(sizeof b->ptrs / sizeof b->ptrs[0]))
    return QD_ERR(INTERNAL, INTERNAL, "more buffers than a generation keeps track of");
  QD_TRY(qd_malloc(g->allocator, bytes ? bytes : 1, out));
  b->sizes[b->count] = bytes ? bytes : 1;
  b->ptrs[b->count++] = *out;
  return QD_OK;
}

static void qd_gen_free_all_(qd_generator_t* g, qd_gen_buffers_t* b) {
  for (int i = 0; i < b->count; i++) qd_free(g->allocator, b->ptrs[i], b->sizes[i]);
  b->count = 0;
}

/* Token ids in the element type the encoder's program declares, `copies` times. */
static void qd_gen_ids_(const int32_t* ids, int64_t n, int64_t copies, qd_dtype_t dtype, void* out) {
  for (int64_t r = 0; r < copies; r++)
    for (int64_t i = 0; i < n; i++) {
      if (dtype == QD_DTYPE_I64)
        ((int64_t*)out)[r * n + i] = ids[i];
      else
        ((int32_t*)out)[r * n + i] = ids[i];
    }
}

/* Rows of `rows` floats from an encoder run at batch `have`, as `want` rows (repeat_interleave of one prompt). */
static void qd_gen_repeat_(const float* src, int64_t have, int64_t want, int64_t row, float* dst) {
  for (int64_t b = 0; b < want; b++) memcpy(dst + b * row, src + (have == 1 ? 0 : b) * row, (size_t)row * sizeof(float));
}

/* --- decode ------------------------------------------------------------------------------------------------------- */

/* Whether images of width x height decode in tiles, and the VAE resolution of the tiles. */
static qd_status_t qd_gen_tiles_wanted_(qd_generator_t* g, int64_t w, int64_t h, int64_t b, int32_t* tile_res,
                                        bool* tiled) {
  *tiled = false;
  if (g->options.vae_tiling == QD_VAE_TILING_OFF ||
      !qd_schedule_vae_tile(g->plan, g->comps[QD_GEN_VAE].index, w, h, tile_res))
    return QD_OK;
  if (g->options.vae_tiling == QD_VAE_TILING_ON || g->vae_tiles_after_oom) {
    *tiled = true;
  } else if (g->options.vram_budget) {
    qd_schedule_estimate_t e;
    QD_TRY(qd_gen_budget_estimate_(g, w, h, b, &e));
    *tiled = e.vae_tiled;
  }
  return QD_OK;
}

/* The VAE at resolution tile_res over overlapping tiles of each image's latents, blended (vae_tiles.h) into
 * `image` [batch, 3, H, W]. */
static qd_status_t qd_gen_decode_tiles_(qd_generator_t* g, int32_t tile_res, const float* latents,
                                        const qd_gen_shapes_t* sh, float* image, qd_vae_tile_grid_t* tiling,
                                        double* load_seconds) {
  QD_TRY(qd_gen_use_resolution_(g, QD_GEN_VAE, tile_res));
  const qd_graph_t* gr = g->comps[QD_GEN_VAE].graph;
  const qd_value_t *in = qd_gen_input_(gr, "latents"), *out = qd_gen_output_(gr, "image", NULL);
  if (!in || !out || in->shape.rank != 3 || out->shape.rank != 4 || in->shape.dims[0] != 1 ||
      in->shape.dims[2] != sh->packed_channels || out->shape.dims[1] != 3 || out->shape.dims[2] % QD_VAE_TILE_CELL ||
      out->shape.dims[3] % QD_VAE_TILE_CELL ||
      in->shape.dims[1] != (out->shape.dims[2] / QD_VAE_TILE_CELL) * (out->shape.dims[3] / QD_VAE_TILE_CELL))
    return QD_ERR(BAD_INPUT, PIPELINE_COMPONENTS_DISAGREE, "%s: the VAE's tile program (resolution %d) does not "
                  "decode packed latents of the transformer's kind into an image", qd_plan_path(g->plan), tile_res);
  int64_t grid_h = sh->height / QD_VAE_TILE_CELL, grid_w = sh->width / QD_VAE_TILE_CELL;
  QD_TRY(qd_vae_tile_grid_plan(grid_h, grid_w, out->shape.dims[2] / QD_VAE_TILE_CELL,
                            out->shape.dims[3] / QD_VAE_TILE_CELL, tiling));
  size_t plane = (size_t)(sh->height * sh->width), tile_count = (size_t)(in->shape.dims[1] * sh->packed_channels);
  qd_gen_buffers_t buf = {{0}, {0}, 0};
  float *tile = NULL, *sum = NULL, *weight = NULL;
  qd_status_t s = qd_gen_alloc_(g, &buf, tile_count * sizeof(float), (void**)&tile);
  if (!s) s = qd_gen_alloc_(g, &buf, 3 * plane * sizeof(float), (void**)&sum);
  if (!s) s = qd_gen_alloc_(g, &buf, plane * sizeof(float), (void**)&weight);
  for (int64_t b = 0; b < sh->batch && !s; b++) {
    memset(sum, 0, 3 * plane * sizeof(float));
    memset(weight, 0, plane * sizeof(float));
    for (int32_t r = 0; r < tiling->rows && !s; r++)
      for (int32_t c = 0; c < tiling->cols && !s; c++) {
        qd_vae_tile_latents(tiling, r, c, latents + b * sh->img_tokens * sh->packed_channels, sh->packed_channels,
                            tile);
        qd_gen_input_t inputs[] = {{"latents", tile}};
        qd_tensor_t decoded[1];
        memset(decoded, 0, sizeof decoded);
        s = qd_gen_run_(g, QD_GEN_VAE, inputs, 1, decoded, 1, load_seconds);
        if (!s) qd_vae_tile_accumulate(tiling, r, c, decoded[0].data, sum, weight);
        qd_tensor_free(g->allocator, &decoded[0]);
      }
    if (!s) qd_vae_tiles_finish(tiling, sum, weight, image + (size_t)b * 3 * plane);
  }
  qd_gen_free_all_(g, &buf);
  return s;
}

/* The VAE over the final latents into `image` [batch, 3, H, W]: whole, or in tiles when options.vae_tiling and
 * the budget say so, or (AUTO, offloaded) after the whole decode ran out of GPU memory. */
static qd_status_t qd_gen_decode_(qd_generator_t* g, const float* latents, const qd_gen_shapes_t* sh, float* image,
                                  qd_generate_result_t* r, double* load_seconds) {
  int32_t tile_res = -1;
  bool tiled;
  QD_TRY(qd_gen_tiles_wanted_(g, sh->width, sh->height, sh->batch, &tile_res, &tiled));
  if (!tiled) {
    /* The whole-size program (the VAE may still have the tile program of an earlier image). */
    int32_t whole;
    QD_TRY(qd_schedule_component_resolution(g->plan, QD_GEN_VAE, g->comps[QD_GEN_VAE].index, sh->width, sh->height,
                                            sh->batch, &whole));
    QD_TRY(qd_gen_use_resolution_(g, QD_GEN_VAE, whole));
    qd_gen_input_t inputs[] = {{"latents", latents}};
    qd_tensor_t decoded[1];
    memset(decoded, 0, sizeof decoded);
    qd_status_t s = qd_gen_run_(g, QD_GEN_VAE, inputs, 1, decoded, 1, load_seconds);
    if (!s) memcpy(image, decoded[0].data, (size_t)qd_shape_numel(&decoded[0].shape) * sizeof(float));
    qd_tensor_free(g->allocator, &decoded[0]);
    if (!s || qd_status_code(s) != QD_CODE_DEVICE_OUT_OF_MEMORY || tile_res < 0 ||
        g->options.vae_tiling != QD_VAE_TILING_AUTO)
      return s;
    char why[512];
    qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    int64_t tw, th, tb;
    qd_plan_resolution(g->plan, g->comps[QD_GEN_VAE].index, tile_res, &tw, &th, &tb);
    QD_LOG_WARN("%s: %s; decoding in %lldx%lld tiles from now on", qd_plan_path(g->plan), why, (long long)tw,
                (long long)th);
    g->vae_tiles_after_oom = true;
  }
  qd_vae_tile_grid_t t;
  QD_TRY(qd_gen_decode_tiles_(g, tile_res, latents, sh, image, &t, load_seconds));
  r->vae_tiles = t.rows * t.cols;
  r->vae_tile_width = (int32_t)(t.tile_w * QD_VAE_TILE_CELL);
  r->vae_tile_height = (int32_t)(t.tile_h * QD_VAE_TILE_CELL);
  return QD_OK;
}

qd_status_t qd_generator_generate(qd_generator_t* g, const qd_generate_params_t* p, qd_generate_result_t* out) {
  memset(out, 0, sizeof *out);
  int32_t steps = 0, width = 0, height = 0, batch = 0;
  float guidance = NAN;
  QD_TRY(qd_gen_check_params_(g, p, &steps, &guidance, &width, &height, &batch));
  qd_gen_shapes_t sh;
  QD_TRY(qd_gen_prepare_(g, width, height, batch, &sh));

  qd_gen_buffers_t buf = {{0}, {0}, 0};
  qd_tensor_t outs[2][4];
  memset(outs, 0, sizeof outs);
  qd_generate_result_t r;
  memset(&r, 0, sizeof r);
  r.allocator = g->allocator;
  const qd_graph_t* clip = g->comps[QD_GEN_CLIP].graph;
  const qd_graph_t* t5 = g->comps[QD_GEN_T5].graph;
  qd_status_t s = QD_OK;
  double load_s = 0; /* creating CUDA executors in this call */

  /* tokenize */
  double t0 = qd_now_seconds();
  int32_t *clip_ids = NULL, *t5_ids = NULL;
  void *clip_in = NULL, *t5_in = NULL;
  const qd_value_t* clip_v = qd_gen_input_(clip, "input_ids");
  const qd_value_t* t5_v = qd_gen_input_(t5, "input_ids");
  size_t plen = strlen(p->prompt);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)sh.clip_tokens * sizeof(int32_t), (void**)&clip_ids), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)sh.txt_tokens * sizeof(int32_t), (void**)&t5_ids), done);
  QD_CHECK_GOTO(s, qd_tokenizer_encode(g->tokenizers[0], p->prompt, plen, (size_t)sh.clip_tokens,
                                       QD_TOKENIZER_UTF8_REPLACE, clip_ids, NULL), done);
  QD_CHECK_GOTO(s, qd_tokenizer_encode(g->tokenizers[1], p->prompt, plen, (size_t)sh.txt_tokens,
                                       QD_TOKENIZER_UTF8_REPLACE, t5_ids, NULL), done);
  if (g->trace.tokens) g->trace.tokens(g->trace.user, clip_ids, (size_t)sh.clip_tokens, t5_ids, (size_t)sh.txt_tokens);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(sh.clip_batch * sh.clip_tokens) * qd_dtype_size(clip_v->dtype),
                                 &clip_in), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(sh.t5_batch * sh.txt_tokens) * qd_dtype_size(t5_v->dtype), &t5_in),
                done);
  qd_gen_ids_(clip_ids, sh.clip_tokens, sh.clip_batch, clip_v->dtype, clip_in);
  qd_gen_ids_(t5_ids, sh.txt_tokens, sh.t5_batch, t5_v->dtype, t5_in);
  double t1 = qd_now_seconds();

  /* encode */
  int32_t pooled_out, hidden_out;
  qd_gen_output_(clip, "pooled", &pooled_out);
  qd_gen_output_(t5, "last_hidden_state", &hidden_out);
  qd_gen_input_t clip_inputs[] = {{"input_ids", clip_in}};
  qd_gen_input_t t5_inputs[] = {{"input_ids", t5_in}};
  QD_CHECK_GOTO(s, qd_gen_run_(g, QD_GEN_CLIP, clip_inputs, 1, outs[0], 4, &load_s), done);
  qd_gen_phase_done_(g, QD_GEN_CLIP);
  QD_CHECK_GOTO(s, qd_gen_run_(g, QD_GEN_T5, t5_inputs, 1, outs[1], 4, &load_s), done);
  qd_gen_phase_done_(g, QD_GEN_T5);
  const float* pooled1 = outs[0][pooled_out].data;
  const float* hidden1 = outs[1][hidden_out].data;
  if (g->trace.embeddings)
    g->trace.embeddings(g->trace.user, hidden1, (size_t)(sh.txt_tokens * sh.joint_dim), pooled1,
                        (size_t)sh.pooled_dim);
  float *pooled = NULL, *prompt_embeds = NULL;
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(sh.batch * sh.pooled_dim) * sizeof(float), (void**)&pooled), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(sh.batch * sh.txt_tokens * sh.joint_dim) * sizeof(float),
                                 (void**)&prompt_embeds), done);
  qd_gen_repeat_(pooled1, sh.clip_batch, sh.batch, sh.pooled_dim, pooled);
  qd_gen_repeat_(hidden1, sh.t5_batch, sh.batch, sh.txt_tokens * sh.joint_dim, prompt_embeds);
  for (int k = 0; k < 2; k++)
    for (int32_t o = 0; o < 4; o++) qd_tensor_free(g->allocator, &outs[k][o]);
  double t2 = qd_now_seconds(), load_encode = load_s;

  /* denoise */
  int64_t grid_w = width / 16, grid_h = height / 16;
  size_t nlat = (size_t)(sh.batch * sh.img_tokens * sh.packed_channels);
  float *latents = NULL, *scratch = NULL, *img_ids = NULL, *txt_ids = NULL, *tvec = NULL, *gvec = NULL;
  float *sigmas = NULL, *timesteps = NULL, *model_t = NULL;
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, nlat * sizeof(float), (void**)&latents), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, nlat * sizeof(float), (void**)&scratch), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)sh.img_tokens * 3 * sizeof(float), (void**)&img_ids), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)sh.txt_tokens * 3 * sizeof(float), (void**)&txt_ids), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)sh.batch * 2 * sizeof(float), (void**)&tvec), done);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(3 * steps + 1) * sizeof(float), (void**)&sigmas), done);
  gvec = tvec + sh.batch;
  timesteps = sigmas + steps + 1;
  model_t = timesteps + steps;
  QD_CHECK_GOTO(s, qd_latents_noise(p->seed, sh.batch, sh.packed_channels / 4, grid_h, grid_w, scratch, latents), done);
  if (g->trace.noise) g->trace.noise(g->trace.user, latents, nlat);
  qd_latent_image_ids(grid_h, grid_w, img_ids);
  memset(txt_ids, 0, (size_t)sh.txt_tokens * 3 * sizeof(float));
  for (int64_t b = 0; b < sh.batch; b++) gvec[b] = guidance;
  QD_CHECK_GOTO(s, qd_schedule_compute(&g->scheduler, steps, sh.img_tokens, sigmas, timesteps, model_t), done);
  qd_gen_input_t tr_inputs[] = {{"hidden_states", latents}, {"encoder_hidden_states", prompt_embeds},
                                {"pooled_projections", pooled}, {"timestep", tvec}, {"guidance", gvec},
                                {"img_ids", img_ids}, {"txt_ids", txt_ids}};
  qd_progress_t prog;
  qd_cuda_executor_t* tr = NULL;
  bool hoisted = false;
  if (g->options.device == QD_GENERATOR_DEVICE_CUDA) {
    /* What stays the same for every step is set once; the timestep of every step goes in with the conditioning. */
    QD_CHECK_GOTO(s, qd_gen_executor_(g, QD_GEN_TRANSFORMER, &load_s, &tr), done);
    for (size_t k = 0; k < sizeof tr_inputs / sizeof tr_inputs[0]; k++)
      if (tr_inputs[k].data != latents && tr_inputs[k].data != tvec) /* per step */
        QD_CHECK_GOTO(s, qd_gen_cuda_input_(tr, tr_inputs[k].name, tr_inputs[k].data), done);
    qd_cuda_hoisting_t ho;
    qd_cuda_executor_hoisting(tr, &ho);
    hoisted = ho.nodes > 0;
    if (hoisted) {
      float* all_t = NULL;
      QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, (size_t)(steps * sh.batch) * sizeof(float), (void**)&all_t), done);
      for (int32_t i = 0; i < steps; i++)
        for (int64_t b = 0; b < sh.batch; b++) all_t[i * sh.batch + b] = model_t[i];
      QD_CHECK_GOTO(s, qd_cuda_executor_prepare_steps(tr, steps, all_t), done);
    }
  }
  qd_progress_begin(&prog, p->progress, "denoise", (uint64_t)steps, "steps");
  for (int32_t i = 0; i < steps && !s; i++) {
    for (int64_t b = 0; b < sh.batch; b++) tvec[b] = model_t[i];
    qd_tensor_t v[1];
    memset(v, 0, sizeof v);
    if (tr) {
      s = qd_gen_cuda_input_(tr, "hidden_states", latents);
      if (!s) s = hoisted ? qd_cuda_executor_select_step(tr, i) : qd_gen_cuda_input_(tr, "timestep", tvec);
      if (!s) s = qd_cuda_executor_run(tr);
      if (!s) s = qd_cuda_executor_get_output(tr, 0, &v[0]);
    } else {
      s = qd_gen_run_(g, QD_GEN_TRANSFORMER, tr_inputs, 7, v, 1, &load_s);
    }
    if (s) break;
    qd_euler_step(latents, v[0].data, nlat, sigmas[i], sigmas[i + 1]);
    qd_tensor_free(g->allocator, &v[0]);
    if (g->trace.step) g->trace.step(g->trace.user, i, latents, nlat, model_t[i], sigmas[i]);
    if (!qd_progress_advance(&prog, 1))
      s = QD_ERR(CANCELLED, CANCELLED, "generation cancelled after %d of %d steps", i + 1, steps);
  }
  qd_progress_end(&prog);
  if (s) goto done;
  qd_gen_phase_done_(g, QD_GEN_TRANSFORMER);
  double t3 = qd_now_seconds(), load_denoise = load_s;

  /* decode */
  float* image = NULL;
  size_t image_count = (size_t)(sh.batch * 3 * sh.height * sh.width);
  QD_CHECK_GOTO(s, qd_gen_alloc_(g, &buf, image_count * sizeof(float), (void**)&image), done);
  QD_CHECK_GOTO(s, qd_gen_decode_(g, latents, &sh, image, &r, &load_s), done);
  qd_gen_phase_done_(g, QD_GEN_VAE);
  if (g->trace.image) g->trace.image(g->trace.user, image, image_count);
  r.width = width;
  r.height = height;
  r.batch = batch;
  r.steps = steps;
  r.guidance = guidance;
  r.seed = p->seed;
  r.image_bytes = (size_t)width * (size_t)height * 3;
  s = qd_malloc(g->allocator, r.image_bytes * (size_t)batch, (void**)&r.pixels);
  if (!s) s = qd_strndup(g->allocator, p->prompt, plen, &r.prompt);
  if (!s) s = qd_strndup(g->allocator, qd_plan_model(g->plan), strlen(qd_plan_model(g->plan)), &r.model);
  for (int32_t b = 0; b < batch && !s; b++)
    qd_image_to_rgb8(image + (size_t)b * 3 * (size_t)width * (size_t)height, height, width,
                     r.pixels + (size_t)b * r.image_bytes);
  if (s) goto done;
  double t4 = qd_now_seconds();
  /* Executor creation is its own phase, taken out of the phase it happened in. */
  r.seconds_tokenize = t1 - t0;
  r.seconds_encode = t2 - t1 - load_encode;
  r.seconds_denoise = t3 - t2 - (load_denoise - load_encode);
  r.seconds_decode = t4 - t3 - (load_s - load_denoise);
  r.seconds_load = load_s;

done:
  for (int k = 0; k < 2; k++)
    for (int32_t o = 0; o < 4; o++) qd_tensor_free(g->allocator, &outs[k][o]);
  qd_gen_free_all_(g, &buf);
  if (s) {
    qd_generate_result_deinit(&r);
    return s;
  }
  *out = r;
  return QD_OK;
}

/* --- PNG ---------------------------------------------------------------------------------------------------------- */

qd_status_t qd_image_write_png(const char* path, const uint8_t* rgb, int32_t width, int32_t height,
                               const char* const* keys, const char* const* values, int32_t count) {
  return qd_png_write_rgb(path, rgb, width, height, keys, values, count);
}

qd_status_t qd_generate_result_write_png(const qd_generate_result_t* r, int32_t index, const char* path) {
  if (!r || !r->pixels || index < 0 || index >= r->batch)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: image %d of a result with %d", path ? path : "(no path)",
                  index, r ? r->batch : 0);
  char seed[32], steps[16], guidance[32], width[16], height[16], batch[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
  snprintf(steps, sizeof steps, "%d", r->steps);
  if (isnan(r->guidance))
    snprintf(guidance, sizeof guidance, "none");
  else
    snprintf(guidance, sizeof guidance, "%g", (double)r->guidance);
  snprintf(width, sizeof width, "%d", r->width);
  snprintf(height, sizeof height, "%d", r->height);
  snprintf(batch, sizeof batch, "%d/%d", index + 1, r->batch);
  const char* keys[] = {"prompt", "seed", "steps", "guidance", "width", "height", "model", "qd_version", "batch"};
  const char* values[] = {r->prompt ? r->prompt : "", seed, steps, guidance, width, height,
                          r->model ? r->model : "", qd_version_string(), batch};
  /* The batch index matters only when there is more than one: the same seed draws other noise for another batch. */
  int32_t count = r->batch > 1 ? 9 : 8;
  return qd_png_write_rgb(path, r->pixels + (size_t)index * r->image_bytes, r->width, r->height, keys, values, count);
}
