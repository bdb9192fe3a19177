/* The CUDA executor; see executor.h. Creation lowers the program to a flat list of launches with resolved
 * pointers; a run replays that list (as a CUDA graph when asked). */
#include "runtime/cuda/executor.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/memory_plan.h"
#include "ir/nf4.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/gemm.h"
#include "runtime/cuda/hoist.h"
#include "runtime/cuda/host_weights.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda/kernels.h"
#include "runtime/cuda/kernels_image.h"
#include "runtime/cuda/kernels_text.h"
#include "runtime/cuda/lowering.h"
#include "runtime/cuda/module_cache.h"
#include "runtime/cuda/packed_weights.h"
#include "runtime/cuda/tuning.h"
#include "runtime/cuda/weight_stream.h"
#include "runtime/cuda_cublaslt.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_nvrtc.h"
#include "runtime/plan_internal.h"

enum {
  QD_EXEC_WORKSPACE = QD_CUDA_WORKSPACE_BYTES, /* cuBLASLt's recommended workspace on Hopper */
  QD_EXEC_MAX_KERNELS = 64,
  QD_EXEC_MAX_GEMMS = 64,
  QD_EXEC_MAX_SLOTS = 8, /* streamed weights: device buffers in the ring */
};

enum { QD_CLASS_LINEAR = 0, QD_CLASS_DEQUANT, QD_CLASS_ATTENTION, QD_CLASS_NORM, QD_CLASS_ELEMENTWISE, QD_CLASS_OTHER };

const char* qd_cuda_op_class_name(int c) {
  static const char* const names[] = {"linear", "dequantize", "attention", "norm", "elementwise", "other"};
  return c >= 0 && c < 6 ? names[c] : "?";
}

typedef enum qd_step_kind {
  QD_STEP_GEMM,
  QD_STEP_DEQUANT,
  QD_STEP_LN,
  QD_STEP_QKNR,
  QD_STEP_GATED,
  QD_STEP_UNARY,
  QD_STEP_BINARY,
  QD_STEP_ATTENTION,
  QD_STEP_TEMB,
  QD_STEP_ROPE_FREQS,
  QD_STEP_SLICE,
  QD_STEP_CONCAT,
  QD_STEP_COPY,
  QD_STEP_PACK,
  QD_STEP_MEMSET,     /* bytes of 0xFF: the embeddings' bad-id flag, before the first embedding */
  QD_STEP_EMBEDDING,
  QD_STEP_ARANGE,
  QD_STEP_EOS_POOL,
  QD_STEP_T5_BIAS,
  QD_STEP_ATTENTION_MASKED,
  QD_STEP_GROUP_NORM,
  QD_STEP_UPSAMPLE,
  QD_STEP_AFFINE,
  QD_STEP_PERMUTE,
  QD_STEP_CONV2D,
} qd_step_kind_t;

typedef struct qd_exec_kernel {
  char key[256];
  qd_kernel_config_t config;
  qd_kernel_module_t* module;
  bool module_borrowed;     /* from options.module_cache: the cache unloads it */
  qd_kernel_function_t fn;
  qd_kernel_function_t fn2; /* the kernel's function2 (kernel_variants.h): group norm's apply, beside its stats */
  /* attention only */
  bool is_attention;
  qd_attention_variant_t attention;
} qd_exec_kernel_t;

typedef struct qd_step {
  qd_step_kind_t kind;
  int32_t node;
  int op_class;
  int32_t kernel; /* index into kernels, or -1 */
  int32_t gemm;   /* GEMM steps */
  int slot;       /* NF4 scratch slot of a GEMM or dequant; -1 when the weight is not NF4 */
  int32_t wgroup; /* the streamed weight group the launch reads (weight_stream.h); -1: none */
  union {
    struct {
      CUdeviceptr y, x, w, bias;
    } gemm;
    qd_nf4_dequant_args_t dq;
    qd_layernorm_args_t ln;
    qd_qk_norm_rope_args_t qknr;
    qd_gated_residual_args_t gated;
    struct {
      CUdeviceptr y, x;
      int64_t n;
      float factor;
    } unary;
    struct {
      CUdeviceptr y, a, b;
      int64_t b_stride, rows, tokens, cols;
    } binary;
    qd_attention_args_t attn;
    struct {
      CUdeviceptr y, t;
      int64_t batch, dim;
      bool flip;
      float shift, input_scale, max_period;
    } temb;
    struct {
      CUdeviceptr y, ids;
      int64_t tokens;
      int64_t axes[QD_MAX_ATTR_LIST];
      int32_t n_axes;
      double theta;
    } ropef;
    struct {
      CUdeviceptr y, x;
      int64_t outer, axis_dim, inner, start, size, elem;
    } slice;
    struct {
      CUdeviceptr y;
      CUdeviceptr in[QD_NODE_MAX_INPUTS];
      int64_t sizes[QD_NODE_MAX_INPUTS];
      int32_t count;
      int64_t outer, inner, elem;
    } concat;
    struct {
      CUdeviceptr y, x;
      size_t bytes;
    } copy;
    struct {
      CUdeviceptr y;
      int64_t y_row_bytes, rows;
      CUdeviceptr in[8];
      int64_t row_bytes[8], cols[8];
      int32_t count;
    } pack;
    struct {
      CUdeviceptr y;
      size_t bytes;
    } memset;
    qd_embedding_args_t embed;
    struct {
      CUdeviceptr y;
      int64_t n;
    } arange;
    qd_eos_pool_args_t eos;
    qd_t5_relative_bias_args_t t5bias;
    qd_attention_masked_args_t attn_masked;
    qd_group_norm_args_t gnorm;
    struct {
      CUdeviceptr y, x;
      int64_t planes, h, w, factor;
    } upsample;
    struct {
      CUdeviceptr y, x;
      int64_t n;
      float scale, divisor, shift;
    } affine;
    struct {
      CUdeviceptr y, x;
      int64_t dims[QD_GRAPH_MAX_RANK], perm[QD_GRAPH_MAX_RANK];
      int32_t rank;
      int64_t elem;
    } permute;
    qd_conv2d_args_t conv;
  } u;
} qd_step_t;

/* A program and its launch list: the step, and when the step is hoisted (runtime/cuda/hoist.h) the conditioning
 * program at batch steps * batch. */
typedef struct qd_exec_program {
  qd_graph_t* graph;
  qd_cuda_lowering_t* lowering;
  qd_memory_plan_t* memory;
  CUdeviceptr arena, inputs_base;
  uint64_t arena_bytes, inputs_bytes;
  CUdeviceptr* input_ptr; /* per graph input; 0 for one the program does not read */
  qd_step_t* steps;
  int32_t step_count, step_capacity;
  CUgraphExec graph_exec;
  bool embed_reset;            /* the launch that resets the embeddings' bad-id flag is in the list */
  /* Streamed weights: the program's groups (NULL when it streams none) and the ring of slots they pass through,
   * the executor's (shared by both programs) unless own_slots. */
  qd_weight_stream_t* stream;
  CUdeviceptr slots;
  uint64_t slot_bytes;
  bool own_slots;
} qd_exec_program_t;

struct qd_cuda_executor {
  qd_allocator_t allocator;
  qd_cuda_executor_options_t options;
  const qd_plan_t* plan;
  const qd_plan_component_t* comp;
  const qd_cuda_driver_t* cu;
  const qd_cublaslt_t* lt;
  CUdevice device;
  CUcontext context;
  char arch[16]; /* "sm_90" */
  int cc;        /* 90 */
  CUstream stream, side;
  CUevent dq_done[2], gemm_done[2], fork, join;
  unsigned class_filter; /* qd_cuda_executor_set_class_filter: 0, or the op classes the step launches */
  /* The plan's autotuning records for this component (TUNE, runtime/cuda/tuning.h), NULL without them or with
   * options.ignore_tuning; tuned_gemms when its GEMM records are for the loaded cuBLASLt. */
  qd_tuning_t* records;
  bool tuned_gemms, tuning_warned;
  cublasLtHandle_t lt_handle;

  qd_exec_program_t prog;  /* the step */
  qd_exec_program_t cond;  /* the hoisted conditioning; graph NULL until qd_cuda_executor_prepare_steps */
  qd_exec_program_t* cur;  /* the program whose launch list is being built */
  qd_cuda_hoist_t* hoist;  /* NULL when the step is not hoisted */
  int32_t cond_steps;      /* the steps the conditioning program was built for */
  int32_t cond_gemm_first; /* gemms[cond_gemm_first ..] are the conditioning program's */
  int32_t pack_kernel;     /* qd_copy_rows, to pack the conditioning per step */
  int32_t selected_step;   /* -1 until qd_cuda_executor_select_step */
  int32_t component, resolution;
  char why_not_hoisted[192];
  CUdeviceptr cond_all, cond_current; /* cond_steps blocks of hoist->block_bytes; the block the step reads */

  CUdeviceptr weights, scratch[2], workspace, nested_map;
  uint64_t weight_bytes, scratch_bytes;
  /* Where the weights come from: the pinned copy (options.host_weights, or own_host when this executor pinned
   * its own for streaming), else the mapped plan. */
  const uint8_t* weight_source;
  bool source_pinned;
  qd_cuda_host_weights_t* own_host;
  /* Streamed weights (options.stream_weights): per weight, kept on the device, and where (device address of
   * section offset o = weights + o + resident_shift[w]); the copy stream and the ring's events per slot. */
  bool* resident;
  int64_t* resident_shift;
  int slot_count;
  CUstream copy;
  CUevent loaded[QD_EXEC_MAX_SLOTS], freed_main[QD_EXEC_MAX_SLOTS], freed_side[QD_EXEC_MAX_SLOTS];
  /* A trace run of a launch-list build records per weight the first and last launch that reads it. */
  int32_t *trace_first, *trace_last;
  CUdeviceptr* weight_bf16;  /* per graph weight: the bf16 copy for f32-format weights, else 0 */
  CUdeviceptr* weight_packed; /* per graph weight: a convolution's weight in the conv2d kernel's layout, else 0 */
  CUdeviceptr embed_error;   /* the embeddings' bad-id flag (runtime/cuda/kernels_text.h), 0 without embeddings */
  CUdeviceptr gn_workspace;  /* group norms' statistics, as large as the largest needs */
  uint64_t gn_workspace_bytes;
  int32_t weight_count;
  uint64_t mem_before, mem_after;

  qd_exec_kernel_t kernels[QD_EXEC_MAX_KERNELS];
  int32_t kernel_count;
  qd_cuda_kernel_choice_t kernels_from; /* the plan's cubins or PTX, or NVRTC (qd_exec_kernel_source_) */
  qd_gemm_t gemms[QD_EXEC_MAX_GEMMS];
  int32_t gemm_count;
  qd_cuda_tuning_t tuning;
  qd_cuda_executor_times_t create_times;

  int next_slot; /* alternates the NF4 scratch slot between consecutive NF4 linears */
};

void qd_cuda_executor_options_default(qd_cuda_executor_options_t* o) {
  memset(o, 0, sizeof *o);
  o->use_graph = true;
  o->overlap = true;
  o->gelu_epilogue = true;
  o->batch_linears = false; /* measured: no faster on the H200 (docs/performance.md, 2026-11-29) */
  o->concat_parts = true;
  o->concat_in_place = true;
  o->autotune_candidates = 8;
  o->stream_slots = 2;
}

unsigned qd_cuda_executor_lowering_flags(const qd_cuda_executor_options_t* o) {
  return (o->gelu_epilogue ? QD_LOWER_GELU_EPILOGUE : 0u) | (o->batch_linears ? QD_LOWER_BATCH_LINEARS : 0u) |
         (o->concat_parts ? QD_LOWER_CONCAT_PARTS : 0u) | (o->concat_in_place ? QD_LOWER_CONCAT_IN_PLACE : 0u);
}

/* --- kernels -------------------------------------------------------------------------------------------- */

/* Images compiled here with NVRTC, per (architecture, variant), for the life of the process: executors for several
 * resolutions or plans of one process compile each kernel once. Images from the plan are loaded straight from its
 * mapping and are not copied. */
enum { QD_IMAGE_CACHE_MAX = 128 };
typedef struct qd_image_entry {
  char key[288];
  uint8_t* image;
  size_t size;
} qd_image_entry_t;
static qd_image_entry_t qd_image_cache_[QD_IMAGE_CACHE_MAX];
static int qd_image_cache_count_;
static pthread_mutex_t qd_image_cache_lock_ = PTHREAD_MUTEX_INITIALIZER;

static const uint8_t* qd_image_cache_get_(const char* key) {
  const uint8_t* found = NULL;
  pthread_mutex_lock(&qd_image_cache_lock_);
  for (int i = 0; i < qd_image_cache_count_ && !found; i++)
    if (strcmp(qd_image_cache_[i].key, key) == 0) found = qd_image_cache_[i].image;
  pthread_mutex_unlock(&qd_image_cache_lock_);
  return found;
}

/* Keeps a copy of the image (plain malloc: the cache outlives any executor's allocator). */
static void qd_image_cache_put_(const char* key, const uint8_t* image, size_t size) {
  pthread_mutex_lock(&qd_image_cache_lock_);
  if (qd_image_cache_count_ < QD_IMAGE_CACHE_MAX) {
    uint8_t* copy = malloc(size);
    if (copy) {
      memcpy(copy, image, size);
      qd_image_entry_t* e = &qd_image_cache_[qd_image_cache_count_++];
      snprintf(e->key, sizeof e->key, "%s", key);
      e->image = copy;
      e->size = size;
    }
  }
  pthread_mutex_unlock(&qd_image_cache_lock_);
}

/* Decides once where this executor's kernels come from (qd_cuda_kernel_choose; qdrun --check asks the same
 * question). NVRTC is loaded only when the plan's images do not fit this GPU: a plan built for it needs no
 * toolkit on the machine. */
const char* qd_cuda_executor_kernel_source(const qd_cuda_executor_t* e) {
  return qd_cuda_kernel_source_name(e->kernels_from.source);
}

static qd_status_t qd_exec_kernel_source_(qd_cuda_executor_t* e) {
  const qd_plan_kernel_targets_t* t = qd_plan_kernel_targets(e->plan);
  const char* path = qd_plan_path(e->plan);
  qd_cuda_kernel_choose(t, e->cc, e->cu->driver_version, "not loaded", &e->kernels_from);
  if (e->kernels_from.source == QD_CUDA_KERNELS_NONE) {
    const qd_nvrtc_t* nv;
    qd_status_t s = qd_nvrtc_load(&nv);
    char why[512] = "";
    if (s) qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    qd_cuda_kernel_choose(t, e->cc, e->cu->driver_version, s ? why : NULL, &e->kernels_from);
  }
  switch (e->kernels_from.source) {
    case QD_CUDA_KERNELS_CUBIN: QD_LOG_DEBUG("%s: kernels: %s", path, e->kernels_from.why); return QD_OK;
    case QD_CUDA_KERNELS_PTX: QD_LOG_INFO("%s: %s", path, e->kernels_from.why); return QD_OK;
    case QD_CUDA_KERNELS_NVRTC: QD_LOG_WARN("%s: %s", path, e->kernels_from.why); return QD_OK;
    default: return QD_ERR(UNSUPPORTED, PLAN_KERNEL_TARGET, "%s: %s", path, e->kernels_from.why);
  }
}

/* The image of one kernel: the plan's (for the chosen source), else one compiled here with NVRTC and cached.
 * *built receives what NVRTC made, for the caller to free once the module is loaded. */
static qd_status_t qd_exec_kernel_image_(qd_cuda_executor_t* e, const qd_cuda_kernel_t* kv, const uint8_t** out,
                                         qd_nvrtc_output_t* built) {
  memset(built, 0, sizeof *built);
  if (e->kernels_from.source != QD_CUDA_KERNELS_NVRTC) {
    const qd_plan_kernel_image_t* im = qd_plan_kernels_find(e->comp->kernels, e->comp->kernel_count, kv->key, kv->arch);
    if (im) {
      *out = im->data;
      return QD_OK;
    }
    /* A plan whose KERN lacks a variant this qd launches (made by a qd with other kernel sources, whose keys
     * differ): build it here. */
    QD_LOG_WARN("%s: KERN/%s has no %s image of %s (recompile the plan with this qd); compiling it with NVRTC",
                qd_plan_path(e->plan), e->comp->name, kv->arch, kv->key);
  }
  /* A kernel listed for the plan's PTX target runs on any newer GPU: compile it for this one. */
  const char* arch = strncmp(kv->arch, "compute_", 8) == 0 ? e->arch : kv->arch;
  char cache_key[288];
  snprintf(cache_key, sizeof cache_key, "%s %s", arch, kv->key);
  const uint8_t* cached = qd_image_cache_get_(cache_key);
  if (cached) {
    *out = cached;
    return QD_OK;
  }
  QD_TRY(qd_cuda_kernel_compile(e->allocator, kv, arch, QD_NVRTC_OUTPUT_CUBIN, built));
  qd_image_cache_put_(cache_key, built->cubin, built->cubin_size);
  *out = built->cubin;
  return QD_OK;
}

/* Loads the kernel node `node` launches (qd_cuda_node_kernel decides which, for qdc compile as well), once per
 * distinct variant. */
static qd_status_t qd_exec_node_kernel_(qd_cuda_executor_t* e, int32_t node, int32_t* out_index) {
  qd_cuda_kernel_t kv;
  bool has;
  QD_TRY_CTX(qd_cuda_node_kernel_tuned(e->cur->graph, e->cur->lowering, e->comp->weights, e->kernels_from.target,
                                       e->records, node, &kv, &has),
             "%s", e->cur->graph->nodes[node].origin);
  if (!has)
    return QD_ERR(INTERNAL, INTERNAL, "%s: the executor launches a kernel for op '%s' but qd_cuda_node_kernel lists "
                  "none", e->cur->graph->nodes[node].origin, qd_op_name(e->cur->graph->nodes[node].op));
  for (int32_t k = 0; k < e->kernel_count; k++)
    if (strcmp(e->kernels[k].key, kv.key) == 0) {
      *out_index = k;
      return QD_OK;
    }
  if (e->kernel_count == QD_EXEC_MAX_KERNELS)
    return QD_ERR(INTERNAL, INTERNAL, "more than %d kernel variants in one program", QD_EXEC_MAX_KERNELS);
  qd_exec_kernel_t* k = &e->kernels[e->kernel_count];
  memset(k, 0, sizeof *k);
  snprintf(k->key, sizeof k->key, "%s", kv.key);
  k->config = kv.config;
  k->is_attention = kv.attention;
  k->attention = kv.attn;
  const uint8_t* image;
  qd_nvrtc_output_t built;
  QD_TRY_CTX(qd_exec_kernel_image_(e, &kv, &image, &built), "%s", e->cur->graph->nodes[node].origin);
  double t0 = qd_now_seconds();
  qd_status_t s;
  if (e->options.module_cache) {
    s = qd_kernel_module_cache_load(e->options.module_cache, kv.key, kv.arch, image, &k->module);
    k->module_borrowed = true;
  } else {
    s = qd_kernel_module_load(e->allocator, image, &k->module);
  }
  e->create_times.modules += qd_now_seconds() - t0;
  qd_nvrtc_output_deinit(&built);
  if (!s) s = qd_kernel_module_get_function(k->module, kv.function, &k->fn);
  if (!s && kv.function2) s = qd_kernel_module_get_function(k->module, kv.function2, &k->fn2);
  if (!s && kv.shared_bytes) s = qd_kernel_function_set_max_dynamic_shared(&k->fn, (int)kv.shared_bytes);
  if (s) {
    if (!k->module_borrowed) qd_kernel_module_unload(k->module);
    return qd_status_annotate(s, "loading %s for %s", kv.key, kv.arch);
  }
  *out_index = e->kernel_count++;
  return QD_OK;
}

/* --- building the launch list ---------------------------------------------------------------------------- */

static qd_status_t qd_exec_push_(qd_cuda_executor_t* e, qd_step_kind_t kind, int32_t node, int op_class,
                                 qd_step_t** out) {
  if (e->cur->step_count == e->cur->step_capacity) {
    int32_t cap = e->cur->step_capacity ? e->cur->step_capacity * 2 : 1024;
    QD_TRY(qd_realloc(e->allocator, e->cur->steps, (size_t)e->cur->step_capacity * sizeof *e->cur->steps,
                      (size_t)cap * sizeof *e->cur->steps, (void**)&e->cur->steps));
    e->cur->step_capacity = cap;
  }
  qd_step_t* s = &e->cur->steps[e->cur->step_count++];
  memset(s, 0, sizeof *s);
  s->kind = kind;
  s->node = node;
  s->op_class = op_class;
  s->kernel = -1;
  s->gemm = -1;
  s->slot = -1;
  s->wgroup = -1;
  *out = s;
  return QD_OK;
}

/* Where value v of the program being built lives: views resolve to bytes of the value they read; in a hoisted
 * step, the conditioning's boundary values are in the block the step reads (cond_current); graph inputs in their
 * own buffers; everything else in the program's arena. */
static CUdeviceptr qd_exec_ptr_(const qd_cuda_executor_t* e, int32_t v) {
  const qd_exec_program_t* p = e->cur;
  bool step = p == &e->prog && e->hoist;
  uint64_t offset = 0;
  for (;;) {
    if (step && e->hoist->block_offset[v] >= 0) return e->cond_current + (uint64_t)e->hoist->block_offset[v] + offset;
    if (p->lowering->view_of[v] < 0) break;
    offset += p->lowering->view_offset[v];
    v = p->lowering->view_of[v];
  }
  if (p->graph->values[v].producer < 0) {
    for (int32_t i = 0; i < p->graph->input_count; i++)
      if (p->graph->inputs[i] == v) return p->input_ptr[i] ? p->input_ptr[i] + offset : 0;
    return 0;
  }
  return p->arena + p->memory->offsets[v] + offset;
}

/* The device address of byte `offset` of the weight section, inside weight w, as the launch just pushed reads
 * it: in the slot of its group when the program streams it (the launch is marked as reading that group), else in
 * the resident weights. A trace run records the use instead (addresses are not final then). */
static CUdeviceptr qd_exec_weight_at_(qd_cuda_executor_t* e, int32_t w, uint64_t offset) {
  qd_exec_program_t* p = e->cur;
  int32_t launch = p->step_count - 1; /* every weight is read by a launch pushed before its address is asked */
  if (launch < 0) return 0;
  if (e->trace_first) {
    if (e->trace_first[w] < 0) e->trace_first[w] = launch;
    if (launch > e->trace_last[w]) e->trace_last[w] = launch;
  }
  if (p->stream && p->stream->group_of[w] >= 0) {
    int32_t g = p->stream->group_of[w];
    p->steps[launch].wgroup = g; /* groups are merged so that no launch reads two */
    CUdeviceptr slot = p->slots + (uint64_t)(g % e->slot_count) * p->slot_bytes;
    return slot + (uint64_t)((int64_t)offset + p->stream->shift[w]);
  }
  return e->weights + (uint64_t)((int64_t)offset + (e->resident_shift ? e->resident_shift[w] : 0));
}

static CUdeviceptr qd_exec_weight_(qd_cuda_executor_t* e, int32_t w) {
  if (w < 0) return 0;
  if (e->weight_bf16[w]) return e->weight_bf16[w];
  return qd_exec_weight_at_(e, w, e->comp->weights[w].data.offset);
}

static int64_t qd_rows_(const qd_shape_t* s) { return qd_shape_numel(s) / s->dims[s->rank - 1]; }

static qd_status_t qd_exec_unsupported_(const qd_cuda_executor_t* e, const qd_node_t* n, const char* why) {
  return QD_ERR(UNSUPPORTED, INTERNAL, "%s: op '%s' %s on the CUDA executor", n->origin, qd_op_name(n->op), why);
}

/* The tuning record's key for a GEMM. */
static qd_tuning_gemm_t qd_exec_gemm_key_(const qd_gemm_t* g) {
  qd_tuning_gemm_t key;
  memset(&key, 0, sizeof key);
  key.m = g->m, key.n = g->n, key.k = g->k, key.epilogue = (int32_t)g->epilogue, key.batch = g->batch.count;
  if (g->batch.count > 1)
    key.w_stride = g->batch.w_stride, key.y_stride = g->batch.y_stride, key.bias_stride = g->batch.bias_stride;
  key.w_ld = g->part.w_ld, key.y_ld = g->part.y_ld, key.accumulate = g->part.accumulate;
  return key;
}

/* A freshly made GEMM takes the plan's tuned algorithm when there is one for its descriptor and cuBLASLt accepts it
 * here (cublasLtMatmulAlgoCheck, within the workspace); otherwise it keeps the heuristic's, with one warning per
 * executor. */
static void qd_exec_gemm_tuned_(qd_cuda_executor_t* e, qd_gemm_t* g) {
  qd_tuning_gemm_t key = qd_exec_gemm_key_(g);
  const qd_tuning_gemm_t* rec = qd_tuning_find_gemm(e->records, &key);
  if (!rec) return;
  cublasLtMatmulAlgo_t algo;
  _Static_assert(sizeof algo == QD_TUNING_ALGO_BYTES, "cublasLtMatmulAlgo_t is the size the TUNE records keep");
  memcpy(&algo, rec->algo, sizeof algo);
  cublasLtMatmulHeuristicResult_t check;
  memset(&check, 0, sizeof check);
  cublasStatus_t st = e->lt->cublasLtMatmulAlgoCheck(e->lt_handle, g->desc, g->a, g->b, g->d, g->d, &algo, &check);
  if (st == CUBLAS_STATUS_SUCCESS && check.state == CUBLAS_STATUS_SUCCESS && check.workspaceSize <= QD_EXEC_WORKSPACE) {
    g->algo = algo;
    g->workspace_needed = check.workspaceSize;
    return;
  }
  if (!e->tuning_warned)
    QD_LOG_WARN("%s: '%s': cuBLASLt rejects the tuned algorithm of the %lldx%lldx%lld GEMM (%s); using its "
                "heuristic's choice", qd_plan_path(e->plan), e->comp->name, (long long)g->m, (long long)g->n,
                (long long)g->k, e->lt->cublasLtGetStatusName(st != CUBLAS_STATUS_SUCCESS ? st : check.state));
  e->tuning_warned = true;
}

static qd_status_t qd_exec_gemm_index_(qd_cuda_executor_t* e, int64_t m, int64_t n, int64_t k, qd_gemm_epilogue_t ep,
                                       const qd_gemm_batch_t* batch, const qd_gemm_part_t* part, int32_t* out) {
  qd_gemm_batch_t one = {1, 0, 0, 0}, b = batch && batch->count > 1 ? *batch : one;
  qd_gemm_part_t whole = {k, n, false}, pt = part ? *part : whole;
  if (pt.w_ld <= 0) pt.w_ld = k;
  if (pt.y_ld <= 0) pt.y_ld = n;
  for (int32_t i = 0; i < e->gemm_count; i++) {
    const qd_gemm_t* x = &e->gemms[i];
    if (x->m == m && x->n == n && x->k == k && x->epilogue == ep && x->batch.count == b.count &&
        x->part.w_ld == pt.w_ld && x->part.y_ld == pt.y_ld && x->part.accumulate == pt.accumulate &&
        (b.count == 1 || (x->batch.w_stride == b.w_stride && x->batch.y_stride == b.y_stride &&
                          x->batch.bias_stride == b.bias_stride))) {
      *out = i;
      return QD_OK;
    }
  }
  if (e->gemm_count == QD_EXEC_MAX_GEMMS)
    return QD_ERR(INTERNAL, INTERNAL, "more than %d GEMM shapes in one program", QD_EXEC_MAX_GEMMS);
  double t0 = qd_now_seconds();
  qd_gemm_t* gm = &e->gemms[e->gemm_count];
  qd_status_t s = qd_gemm_init(gm, e->lt_handle, m, n, k, ep, &b, &pt, QD_EXEC_WORKSPACE);
  if (!s && e->tuned_gemms) qd_exec_gemm_tuned_(e, gm);
  e->create_times.gemms += qd_now_seconds() - t0;
  if (s) {
    qd_gemm_deinit(gm);
    return s;
  }
  *out = e->gemm_count++;
  return QD_OK;
}

/* A dequantize step for NF4 weight wi into dst. */
static qd_status_t qd_exec_dequant_(qd_cuda_executor_t* e, int32_t node, int32_t wi, int slot, CUdeviceptr dst) {
  const qd_plan_weight_t* w = &e->comp->weights[wi];
  qd_step_t* d;
  QD_TRY(qd_exec_push_(e, QD_STEP_DEQUANT, node, QD_CLASS_DEQUANT, &d));
  QD_TRY(qd_exec_node_kernel_(e, node, &d->kernel));
  d->slot = slot;
  d->u.dq.y = dst;
  d->u.dq.packed = qd_exec_weight_at_(e, wi, w->data.offset);
  if (w->double_quant) {
    d->u.dq.absmax_codes = qd_exec_weight_at_(e, wi, w->absmax.offset);
    d->u.dq.nested_absmax = qd_exec_weight_at_(e, wi, w->nested.offset);
    d->u.dq.nested_code = e->nested_map;
    d->u.dq.offset = w->offset;
  } else {
    d->u.dq.absmax = qd_exec_weight_at_(e, wi, w->absmax.offset);
  }
  d->u.dq.n = qd_shape_numel(&w->shape);
  d->u.dq.blocksize = w->blocksize;
  return QD_OK;
}

/* Whether a batch of linears (lowering.h) can run as one strided-batched GEMM: every weight NF4 of one blocksize
 * and kind (dequantized one after another into one scratch slot, which must hold them), or every weight bf16 and
 * evenly spaced in the weight section; biases bf16 and evenly spaced. Decided from the plan alone, so a trace
 * build and the real one make the same launch list; qd_exec_linear_ checks that the device addresses keep the
 * spacing. */
static bool qd_exec_batchable_(const qd_cuda_executor_t* e, const int32_t* members, int32_t count, int64_t n,
                               int64_t k) {
  const qd_graph_t* g = e->cur->graph;
  const qd_plan_weight_t* W = e->comp->weights;
  int32_t w[QD_CUDA_MAX_BATCH], b[QD_CUDA_MAX_BATCH];
  for (int32_t j = 0; j < count; j++) {
    w[j] = g->nodes[members[j]].weights[QD_WEIGHT_SLOT_MAIN];
    b[j] = g->nodes[members[j]].weights[QD_WEIGHT_SLOT_BIAS];
  }
  bool nf4 = W[w[0]].format == QD_WEIGHT_FORMAT_NF4;
  uint64_t piece = ((uint64_t)n * (uint64_t)k * 2 + QD_CUDA_ALLOC_ALIGN - 1) & ~(uint64_t)(QD_CUDA_ALLOC_ALIGN - 1);
  if (nf4 && piece * (uint64_t)count > e->scratch_bytes / 2) return false;
  if (!nf4 && W[w[0]].format != QD_WEIGHT_FORMAT_BF16) return false;
  for (int32_t j = 0; j < count; j++) {
    /* in section order (the strides below are positive) */
    if (j > 0 && (W[w[j]].data.offset <= W[w[j - 1]].data.offset ||
                  (b[0] >= 0 && W[b[j]].data.offset <= W[b[j - 1]].data.offset)))
      return false;
    if (W[w[j]].format != W[w[0]].format) return false;
    if (nf4 && (W[w[j]].blocksize != W[w[0]].blocksize || W[w[j]].double_quant != W[w[0]].double_quant)) return false;
    if (!nf4 && j > 1 && W[w[j]].data.offset - W[w[j - 1]].data.offset != W[w[1]].data.offset - W[w[0]].data.offset)
      return false;
    if (b[0] < 0) continue;
    if (W[b[j]].format != QD_WEIGHT_FORMAT_BF16) return false;
    if (j > 1 && W[b[j]].data.offset - W[b[j - 1]].data.offset != W[b[1]].data.offset - W[b[0]].data.offset)
      return false;
  }
  return true;
}

/* One linear node (optionally with gelu fused) writing y, its rows y_ld elements apart (0: n): a dequantize step
 * when its weight is NF4, then the GEMM. */
static qd_status_t qd_exec_linear_one_(qd_cuda_executor_t* e, int32_t node, const qd_node_t* lin, CUdeviceptr y,
                                       int64_t y_ld, int64_t m, int64_t n, int64_t k, qd_gemm_epilogue_t ep) {
  int32_t wi = lin->weights[QD_WEIGHT_SLOT_MAIN], bi = lin->weights[QD_WEIGHT_SLOT_BIAS];
  if (bi < 0 && ep == QD_GEMM_BIAS) ep = QD_GEMM_PLAIN;
  CUdeviceptr x = qd_exec_ptr_(e, lin->inputs[0]);
  int slot = -1;
  if (e->comp->weights[wi].format == QD_WEIGHT_FORMAT_NF4) {
    slot = e->next_slot++ & 1;
    QD_TRY(qd_exec_dequant_(e, node, wi, slot, e->scratch[slot]));
  }
  qd_step_t* s;
  QD_TRY(qd_exec_push_(e, QD_STEP_GEMM, node, QD_CLASS_LINEAR, &s));
  qd_gemm_part_t part = {k, y_ld, false};
  QD_TRY(qd_exec_gemm_index_(e, m, n, k, ep, NULL, &part, &s->gemm));
  s->slot = slot;
  s->u.gemm.y = y;
  s->u.gemm.x = x;
  s->u.gemm.w = slot >= 0 ? e->scratch[slot] : qd_exec_weight_(e, wi);
  s->u.gemm.bias = qd_exec_weight_(e, bi);
  return QD_OK;
}

/* A linear over a concatenation on the last axis (lowering.h's CONCAT_LINEAR): one GEMM per part over its columns
 * of the weight, the first with the bias, the others adding to the output; the concatenation is never made. */
static qd_status_t qd_exec_linear_parts_(qd_cuda_executor_t* e, int32_t node, const qd_node_t* lin,
                                         const qd_node_t* cat) {
  const qd_graph_t* g = e->cur->graph;
  const qd_shape_t* xs = &g->values[lin->inputs[0]].shape;
  int64_t k_total = xs->dims[xs->rank - 1], n = lin->attrs[QD_LINEAR_FEATURES].i, m = qd_shape_numel(xs) / k_total;
  int32_t wi = lin->weights[QD_WEIGHT_SLOT_MAIN], bi = lin->weights[QD_WEIGHT_SLOT_BIAS];
  int slot = -1;
  if (e->comp->weights[wi].format == QD_WEIGHT_FORMAT_NF4) {
    slot = e->next_slot++ & 1;
    QD_TRY(qd_exec_dequant_(e, node, wi, slot, e->scratch[slot]));
  }
  CUdeviceptr y = qd_exec_ptr_(e, lin->output);
  int64_t k0 = 0;
  for (int32_t j = 0; j < cat->input_count; j++) {
    const qd_shape_t* ps = &g->values[cat->inputs[j]].shape;
    int64_t k = ps->dims[ps->rank - 1];
    /* The output may itself be an in-place part of a concatenation (rows further apart). */
    qd_gemm_part_t part = {k_total, e->cur->lowering->row_stride[lin->output], j > 0};
    qd_gemm_epilogue_t ep = j == 0 && bi >= 0 ? QD_GEMM_BIAS : QD_GEMM_PLAIN;
    qd_step_t* s;
    QD_TRY(qd_exec_push_(e, QD_STEP_GEMM, node, QD_CLASS_LINEAR, &s));
    QD_TRY(qd_exec_gemm_index_(e, m, n, k, ep, NULL, &part, &s->gemm));
    s->slot = slot;
    s->u.gemm.y = y;
    s->u.gemm.x = qd_exec_ptr_(e, cat->inputs[j]);
    /* Asked after the push: a streamed weight's slot address marks this launch as reading it. */
    s->u.gemm.w = (slot >= 0 ? e->scratch[slot] : qd_exec_weight_(e, wi)) + (CUdeviceptr)(k0 * 2);
    s->u.gemm.bias = j == 0 ? qd_exec_weight_(e, bi) : 0;
    k0 += k;
  }
  return QD_OK;
}

/* A batch's linears one by one, each writing its output's place in the head's allocation. */
static qd_status_t qd_exec_linear_each_(qd_cuda_executor_t* e, const int32_t* members, int32_t count, int64_t m,
                                        int64_t n, int64_t k, qd_gemm_epilogue_t ep) {
  const qd_graph_t* g = e->cur->graph;
  for (int32_t j = 0; j < count; j++)
    QD_TRY(qd_exec_linear_one_(e, members[j], &g->nodes[members[j]], qd_exec_ptr_(e, g->nodes[members[j]].output), 0,
                               m, n, k, ep));
  return QD_OK;
}

/* A linear node, or a batch of them at its head (lowering.h): one strided-batched GEMM when qd_exec_batchable_ says
 * so, else one GEMM per linear, each writing its output's place in the head's allocation. */
static qd_status_t qd_exec_linear_(qd_cuda_executor_t* e, int32_t node, const qd_node_t* lin, int32_t out_value,
                                   qd_gemm_epilogue_t ep) {
  const qd_graph_t* g = e->cur->graph;
  const qd_shape_t* xs = &g->values[lin->inputs[0]].shape;
  int64_t k = xs->dims[xs->rank - 1], n = lin->attrs[QD_LINEAR_FEATURES].i, m = qd_shape_numel(xs) / k;
  int32_t members[QD_CUDA_MAX_BATCH];
  int32_t count = lin == &g->nodes[node] ? qd_cuda_batch_members(e->cur->lowering, node, members) : 0;
  if (count < 2)
    return qd_exec_linear_one_(e, node, lin, qd_exec_ptr_(e, out_value), e->cur->lowering->row_stride[out_value], m,
                               n, k, ep);
  if (!qd_exec_batchable_(e, members, count, n, k)) {
    return qd_exec_linear_each_(e, members, count, m, n, k, ep);
  }
  const qd_plan_weight_t* W = e->comp->weights;
  int32_t w0 = lin->weights[QD_WEIGHT_SLOT_MAIN], bias0 = lin->weights[QD_WEIGHT_SLOT_BIAS];
  int32_t w1 = g->nodes[members[1]].weights[QD_WEIGHT_SLOT_MAIN];
  int32_t bias1 = g->nodes[members[1]].weights[QD_WEIGHT_SLOT_BIAS];
  if (bias0 < 0 && ep == QD_GEMM_BIAS) ep = QD_GEMM_PLAIN;
  bool nf4 = W[w0].format == QD_WEIGHT_FORMAT_NF4;
  uint64_t piece = ((uint64_t)n * (uint64_t)k * 2 + QD_CUDA_ALLOC_ALIGN - 1) & ~(uint64_t)(QD_CUDA_ALLOC_ALIGN - 1);
  /* Strides in elements: dequantized weights one piece apart, others (and biases) as the section spaces them. */
  qd_gemm_batch_t batch = {count, nf4 ? (int64_t)(piece / 2) : (int64_t)(W[w1].data.offset - W[w0].data.offset) / 2,
                           m * n, bias0 >= 0 ? (int64_t)(W[bias1].data.offset - W[bias0].data.offset) / 2 : 0};
  int32_t gemm;
  qd_status_t gs = qd_exec_gemm_index_(e, m, n, k, ep, &batch, NULL, &gemm);
  if (gs && qd_status_code(gs) == QD_CODE_UNSUPPORTED) {
    /* cuBLASLt offers no algorithm for the batch (it did for every shape qd met): one GEMM per linear. */
    char why[256];
    qd_status_format(gs, why, sizeof why);
    QD_LOG_INFO("%s: %s; running the batch's linears one by one", lin->origin, why);
    qd_status_free(gs);
    return qd_exec_linear_each_(e, members, count, m, n, k, ep);
  }
  QD_TRY(gs);
  int slot = -1;
  if (nf4) {
    slot = e->next_slot++ & 1;
    for (int32_t j = 0; j < count; j++)
      QD_TRY(qd_exec_dequant_(e, members[j], g->nodes[members[j]].weights[QD_WEIGHT_SLOT_MAIN], slot,
                              e->scratch[slot] + (uint64_t)j * piece));
  }
  qd_step_t* s;
  QD_TRY(qd_exec_push_(e, QD_STEP_GEMM, node, QD_CLASS_LINEAR, &s));
  s->gemm = gemm;
  s->slot = slot;
  CUdeviceptr w[QD_CUDA_MAX_BATCH], b[QD_CUDA_MAX_BATCH];
  for (int32_t j = 0; j < count; j++) {
    const qd_node_t* lj = &g->nodes[members[j]];
    w[j] = nf4 ? e->scratch[slot] + (uint64_t)j * piece : qd_exec_weight_(e, lj->weights[QD_WEIGHT_SLOT_MAIN]);
    b[j] = qd_exec_weight_(e, lj->weights[QD_WEIGHT_SLOT_BIAS]);
  }
  /* Outside a trace build (whose addresses are not final) the operands must lie at the strides on the device. */
  for (int32_t j = 1; j < count && !e->trace_first; j++)
    if (w[j] - w[0] != (CUdeviceptr)(j * batch.w_stride * 2) ||
        (bias0 >= 0 && b[j] - b[0] != (CUdeviceptr)(j * batch.bias_stride * 2)))
      return QD_ERR(INTERNAL, INTERNAL, "%s: the weights of a batch of linears are not evenly spaced on the device",
                    g->nodes[members[j]].origin);
  s->u.gemm.y = qd_exec_ptr_(e, out_value);
  s->u.gemm.x = qd_exec_ptr_(e, lin->inputs[0]);
  s->u.gemm.w = w[0];
  s->u.gemm.bias = b[0];
  return QD_OK;
}

static qd_status_t qd_exec_qknr_(qd_cuda_executor_t* e, int32_t node, const qd_node_t* norm, const qd_node_t* rope,
                                 CUdeviceptr y, int64_t y_row_offset, int64_t y_tokens_total) {
  const qd_graph_t* g = e->cur->graph;
  const qd_shape_t* xs = &g->values[norm->inputs[0]].shape;
  int64_t d = rope->attrs[QD_ROPE_HEAD_DIM].i, ch = xs->dims[2];
  qd_step_t* s;
  QD_TRY(qd_exec_push_(e, QD_STEP_QKNR, node, QD_CLASS_NORM, &s));
  QD_TRY(qd_exec_node_kernel_(e, node, &s->kernel));
  qd_qk_norm_rope_args_t* a = &s->u.qknr;
  a->x = qd_exec_ptr_(e, norm->inputs[0]);
  a->y = y + (CUdeviceptr)(y_row_offset * ch * 2);
  a->weight = qd_exec_weight_(e, norm->weights[QD_WEIGHT_SLOT_MAIN]);
  a->freqs = qd_exec_ptr_(e, rope->inputs[1]);
  a->x_row_stride = ch;
  a->x_batch_stride = xs->dims[1] * ch;
  a->y_row_stride = ch;
  a->y_batch_stride = y_tokens_total * ch;
  a->batch = xs->dims[0];
  a->tokens = xs->dims[1];
  a->heads = ch / d;
  a->head_dim = d;
  a->rope_tokens = g->values[rope->inputs[1]].shape.dims[1];
  a->rope_offset = y_row_offset;
  a->eps = (float)norm->attrs[QD_NORM_EPS].f;
  return QD_OK;
}

static qd_status_t qd_exec_alloc_(qd_cuda_executor_t* e, CUdeviceptr* out, uint64_t bytes, const char* what);

/* A group norm, or one with the silu after it fused (the kernel's GN_SILU, chosen by kernel_variants.c): its
 * statistics go to the executor's group norm workspace, sized once the launch list is built (qd_exec_create_). */
static qd_status_t qd_exec_group_norm_(qd_cuda_executor_t* e, int32_t node, const qd_node_t* gn, int32_t out_value) {
  const qd_graph_t* g = e->cur->graph;
  const qd_shape_t* xs = &g->values[gn->inputs[0]].shape;
  qd_step_t* s;
  QD_TRY(qd_exec_push_(e, QD_STEP_GROUP_NORM, node, QD_CLASS_NORM, &s));
  QD_TRY(qd_exec_node_kernel_(e, node, &s->kernel));
  qd_group_norm_args_t* a = &s->u.gnorm;
  a->y = qd_exec_ptr_(e, out_value);
  a->x = qd_exec_ptr_(e, gn->inputs[0]);
  bool affine = gn->attrs[QD_GROUP_NORM_AFFINE].i != 0;
  a->weight = affine ? qd_exec_weight_(e, gn->weights[QD_WEIGHT_SLOT_MAIN]) : 0;
  a->bias = affine ? qd_exec_weight_(e, gn->weights[QD_WEIGHT_SLOT_BIAS]) : 0;
  a->batch = xs->dims[0];
  a->channels = xs->dims[1];
  a->spatial = qd_shape_numel(xs) / (a->batch * a->channels);
  a->groups = gn->attrs[QD_GROUP_NORM_GROUPS].i;
  a->eps = (float)gn->attrs[QD_GROUP_NORM_EPS].f;
  a->workspace_bytes = qd_group_norm_workspace_bytes(&e->kernels[s->kernel].config, a->batch, a->channels,
                                                     a->spatial, a->groups);
  if (a->workspace_bytes > e->gn_workspace_bytes) e->gn_workspace_bytes = a->workspace_bytes;
  return QD_OK;
}

/* A convolution's weight in the layout the conv2d kernel reads ([cout, k*k, cin rounded up to 8], bf16), packed
 * on the host from the plan's weight and uploaded once per weight. */
static qd_status_t qd_exec_conv_weight_(qd_cuda_executor_t* e, const qd_node_t* n, int64_t cout, int64_t cin,
                                        int64_t k, CUdeviceptr* out) {
  int32_t w = n->weights[QD_WEIGHT_SLOT_MAIN];
  if (!e->weight_packed[w]) {
    const qd_plan_weight_t* pw = &e->comp->weights[w];
    if (pw->format == QD_WEIGHT_FORMAT_NF4) return qd_exec_unsupported_(e, n, "with an NF4 weight");
    uint64_t count = (uint64_t)qd_shape_numel(&pw->shape), packed = (uint64_t)qd_conv2d_packed_weight_elems(cout, cin, k);
    const uint8_t* data = e->comp->weight_data + pw->data.offset;
    /* Packed by an earlier executor of this plan (options.packed_weights), else here. */
    const void* ready = qd_packed_weights_find(e->options.packed_weights, data, packed * 2);
    uint16_t *src = NULL, *dst = NULL;
    qd_status_t s = QD_OK;
    if (!ready) {
      s = qd_malloc(e->allocator, count * 2, (void**)&src);
      if (!s) s = qd_malloc(e->allocator, packed * 2, (void**)&dst);
      if (!s) {
        if (pw->format == QD_WEIGHT_FORMAT_F32)
          for (uint64_t i = 0; i < count; i++) src[i] = qd_f32_to_bf16(((const float*)(const void*)data)[i]);
        else
          memcpy(src, data, count * 2);
        qd_conv2d_pack_weight_host(src, dst, cout, cin, k);
        ready = dst;
        /* Keeping a copy is an optimization: without the memory for it, this executor still has its own. */
        qd_status_t kept = e->options.packed_weights
                               ? qd_packed_weights_put(e->options.packed_weights, data, dst, packed * 2, &ready)
                               : QD_OK;
        if (kept) ready = dst;
        qd_status_free(kept);
      }
    }
    if (!s) s = qd_exec_alloc_(e, &e->weight_packed[w], packed * 2, pw->name);
    if (!s) s = QD_CU_STATUS(e->cu->cuMemcpyHtoD(e->weight_packed[w], ready, packed * 2));
    if (src) qd_free(e->allocator, src, count * 2);
    if (dst) qd_free(e->allocator, dst, packed * 2);
    QD_TRY(s);
  }
  *out = e->weight_packed[w];
  return QD_OK;
}

static qd_status_t qd_exec_node_(qd_cuda_executor_t* e, int32_t i) {
  const qd_graph_t* g = e->cur->graph;
  const qd_node_t* n = &g->nodes[i];
  const qd_value_t* out = &g->values[n->output];
  const qd_shape_t* xs = &g->values[n->inputs[0]].shape;
  qd_step_t* s;
  uint8_t pattern = e->cur->lowering->role[i] == QD_CUDA_GROUP_END ? e->cur->lowering->pattern[i] : QD_CUDA_PATTERN_NONE;

  if (pattern == QD_CUDA_PATTERN_LINEAR_GELU) {
    const qd_node_t* lin = &g->nodes[g->values[n->inputs[0]].producer];
    return qd_exec_linear_(e, i, lin, n->output, QD_GEMM_BIAS_GELU);
  }
  if (pattern == QD_CUDA_PATTERN_CONCAT_LINEAR)
    return qd_exec_linear_parts_(e, i, n, &g->nodes[g->values[n->inputs[0]].producer]);
  if (pattern == QD_CUDA_PATTERN_LN_MODULATE) {
    const qd_node_t* ln = &g->nodes[g->values[n->inputs[0]].producer];
    const qd_shape_t* ls = &g->values[ln->inputs[0]].shape;
    QD_TRY(qd_exec_push_(e, QD_STEP_LN, i, QD_CLASS_NORM, &s));
    QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
    qd_layernorm_args_t* a = &s->u.ln;
    a->y = qd_exec_ptr_(e, n->output);
    a->x = qd_exec_ptr_(e, ln->inputs[0]);
    a->shift = qd_exec_ptr_(e, n->inputs[1]);
    a->scale = qd_exec_ptr_(e, n->inputs[2]);
    a->mod_stride = ls->dims[2];
    a->rows = ls->dims[0] * ls->dims[1];
    a->tokens = ls->dims[1];
    a->cols = ls->dims[2];
    a->eps = (float)ln->attrs[QD_NORM_EPS].f;
    return QD_OK;
  }
  if (pattern == QD_CUDA_PATTERN_NORM_ROPE) {
    const qd_node_t* norm = &g->nodes[g->values[n->inputs[0]].producer];
    return qd_exec_qknr_(e, i, norm, n, qd_exec_ptr_(e, n->output), 0, out->shape.dims[1]);
  }
  if (pattern == QD_CUDA_PATTERN_NORM_CONCAT_ROPE) {
    const qd_node_t* cat = &g->nodes[g->values[n->inputs[0]].producer];
    int64_t row = 0;
    for (int32_t k = 0; k < cat->input_count; k++) {
      const qd_node_t* norm = &g->nodes[g->values[cat->inputs[k]].producer];
      QD_TRY(qd_exec_qknr_(e, i, norm, n, qd_exec_ptr_(e, n->output), row, out->shape.dims[1]));
      row += g->values[cat->inputs[k]].shape.dims[1];
    }
    return QD_OK;
  }

  if (pattern == QD_CUDA_PATTERN_GROUP_NORM_SILU)
    return qd_exec_group_norm_(e, i, &g->nodes[g->values[n->inputs[0]].producer], n->output);
  /* A view (slice or alias) launches nothing; an in-place part of a concatenation is written by its producer. */
  if (e->cur->lowering->view_of[n->output] >= 0 && !e->cur->lowering->in_place[n->output]) return QD_OK;
  switch (n->op) {
    case QD_OP_LINEAR: return qd_exec_linear_(e, i, n, n->output, QD_GEMM_BIAS);
    case QD_OP_GATED_ADD: {
      QD_TRY(qd_exec_push_(e, QD_STEP_GATED, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_gated_residual_args_t* a = &s->u.gated;
      a->y = qd_exec_ptr_(e, n->output);
      a->residual = qd_exec_ptr_(e, n->inputs[0]);
      a->gate = qd_exec_ptr_(e, n->inputs[1]);
      a->x = qd_exec_ptr_(e, n->inputs[2]);
      a->gate_stride = xs->dims[2];
      a->rows = xs->dims[0] * xs->dims[1];
      a->tokens = xs->dims[1];
      a->cols = xs->dims[2];
      return QD_OK;
    }
    case QD_OP_SILU:
    case QD_OP_GELU:
    case QD_OP_GELU_TANH:
    case QD_OP_QUICK_GELU:
    case QD_OP_SCALE: {
      QD_TRY(qd_exec_push_(e, QD_STEP_UNARY, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.unary.y = qd_exec_ptr_(e, n->output);
      s->u.unary.x = qd_exec_ptr_(e, n->inputs[0]);
      s->u.unary.n = qd_shape_numel(xs);
      s->u.unary.factor = n->op == QD_OP_SCALE ? (float)n->attrs[QD_SCALE_FACTOR].f : 0.0f;
      return QD_OK;
    }
    case QD_OP_ADD:
    case QD_OP_MUL: {
      const qd_shape_t* bs = &g->values[n->inputs[1]].shape;
      /* Supported broadcasts: equal shapes (or equal element counts: CLIP's position embeddings [S, C] over
       * tokens [1, S, C]), or b [B, C] over a [B, S, C]. */
      int64_t cols = xs->dims[xs->rank - 1], rows = qd_rows_(xs), tokens, b_stride;
      if (qd_shape_equal(xs, bs) || (qd_shape_numel(xs) == qd_shape_numel(bs) && bs->dims[bs->rank - 1] == cols)) {
        tokens = 1;
        b_stride = cols;
      } else if (xs->rank == 3 && bs->rank == 2 && bs->dims[0] == xs->dims[0] && bs->dims[1] == cols) {
        tokens = xs->dims[1];
        b_stride = cols;
      } else {
        return qd_exec_unsupported_(e, n, "with this broadcast is not supported");
      }
      QD_TRY(qd_exec_push_(e, QD_STEP_BINARY, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.binary.y = qd_exec_ptr_(e, n->output);
      s->u.binary.a = qd_exec_ptr_(e, n->inputs[0]);
      s->u.binary.b = qd_exec_ptr_(e, n->inputs[1]);
      s->u.binary.b_stride = b_stride;
      s->u.binary.rows = rows;
      s->u.binary.tokens = tokens;
      s->u.binary.cols = cols;
      return QD_OK;
    }
    case QD_OP_ATTENTION: {
      QD_TRY(qd_exec_push_(e, QD_STEP_ATTENTION, i, QD_CLASS_ATTENTION, &s));
      const qd_shape_t* ks = &g->values[n->inputs[1]].shape;
      int64_t h = n->attrs[QD_ATTN_HEADS].i;
      bool bias = n->input_count > 3;
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      CUdeviceptr q = qd_exec_ptr_(e, n->inputs[0]), k = qd_exec_ptr_(e, n->inputs[1]);
      CUdeviceptr v = qd_exec_ptr_(e, n->inputs[2]), o = qd_exec_ptr_(e, n->output);
      CUdeviceptr bias_ptr = bias ? qd_exec_ptr_(e, n->inputs[3]) : 0;
      const qd_shape_t* bsh = bias ? &g->values[n->inputs[3]].shape : NULL;
      int64_t bias_batch = bias ? bsh->dims[0] : 1, bias_heads = bias ? bsh->dims[1] : 1;
      float scale = (float)n->attrs[QD_ATTN_SCALE].f;
      if (!e->kernels[s->kernel].is_attention) {
        /* attention_masked.cu (kernel_variants.c: a bias, or a head wider than the flash kernels take) */
        s->kind = QD_STEP_ATTENTION_MASKED;
        s->u.attn_masked = (qd_attention_masked_args_t){
            .q = q, .k = k, .v = v, .o = o, .bias = bias_ptr, .batch = xs->dims[0], .sq = xs->dims[1],
            .sk = ks->dims[1], .heads = h, .head_dim = xs->dims[2] / h,
            .o_row_stride = e->cur->lowering->row_stride[n->output], .bias_batch = bias_batch,
            .bias_heads = bias_heads, .scale = scale, .causal = n->attrs[QD_ATTN_CAUSAL].i != 0};
        return QD_OK;
      }
      /* An in-place part of a concatenation (lowering.h) has rows further apart. */
      s->u.attn = (qd_attention_args_t){.q = q, .k = k, .v = v, .o = o, .bias = bias_ptr, .batch = xs->dims[0],
                                        .sq = xs->dims[1], .sk = ks->dims[1], .heads = h,
                                        .o_row_stride = e->cur->lowering->row_stride[n->output],
                                        .bias_batch = bias_batch, .bias_heads = bias_heads, .scale = scale};
      return QD_OK;
    }
    case QD_OP_TIMESTEP_EMBEDDING: {
      QD_TRY(qd_exec_push_(e, QD_STEP_TEMB, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.temb.y = qd_exec_ptr_(e, n->output);
      s->u.temb.t = qd_exec_ptr_(e, n->inputs[0]);
      s->u.temb.batch = xs->dims[0];
      s->u.temb.dim = n->attrs[QD_TEMB_DIM].i;
      s->u.temb.flip = n->attrs[QD_TEMB_FLIP].i != 0;
      s->u.temb.shift = (float)n->attrs[QD_TEMB_SHIFT].f;
      s->u.temb.input_scale = (float)n->attrs[QD_TEMB_INPUT_SCALE].f;
      s->u.temb.max_period = (float)n->attrs[QD_TEMB_MAX_PERIOD].f;
      return QD_OK;
    }
    case QD_OP_ROPE_FREQS: {
      QD_TRY(qd_exec_push_(e, QD_STEP_ROPE_FREQS, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.ropef.y = qd_exec_ptr_(e, n->output);
      s->u.ropef.ids = qd_exec_ptr_(e, n->inputs[0]);
      s->u.ropef.tokens = xs->dims[0];
      s->u.ropef.n_axes = n->attrs[QD_ROPE_FREQS_AXES].count;
      memcpy(s->u.ropef.axes, n->attrs[QD_ROPE_FREQS_AXES].list, sizeof s->u.ropef.axes);
      s->u.ropef.theta = n->attrs[QD_ROPE_FREQS_THETA].f;
      return QD_OK;
    }
    case QD_OP_LAYER_NORM:
    case QD_OP_RMS_NORM: {
      /* Plain norms (text encoders): rows of `dim` (RMS norm groups) or of the last axis. */
      int64_t cols = n->op == QD_OP_RMS_NORM ? n->attrs[QD_NORM_DIM].i : xs->dims[xs->rank - 1];
      bool affine = n->attrs[QD_NORM_AFFINE].i != 0;
      QD_TRY(qd_exec_push_(e, QD_STEP_LN, i, QD_CLASS_NORM, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_layernorm_args_t* a = &s->u.ln;
      a->y = qd_exec_ptr_(e, n->output);
      a->x = qd_exec_ptr_(e, n->inputs[0]);
      a->weight = affine ? qd_exec_weight_(e, n->weights[QD_WEIGHT_SLOT_MAIN]) : 0;
      a->bias = affine && n->op == QD_OP_LAYER_NORM ? qd_exec_weight_(e, n->weights[QD_WEIGHT_SLOT_BIAS]) : 0;
      a->rows = qd_shape_numel(xs) / cols;
      a->tokens = 1;
      a->cols = cols;
      a->eps = (float)n->attrs[QD_NORM_EPS].f;
      return QD_OK;
    }
    case QD_OP_EMBEDDING: {
      if (!e->embed_error) QD_TRY(qd_exec_alloc_(e, &e->embed_error, 8, "the embeddings' id check"));
      if (!e->cur->embed_reset) {
        /* One flag for all of the program's embeddings, set before the first (the kernel lowers it atomically). */
        QD_TRY(qd_exec_push_(e, QD_STEP_MEMSET, i, QD_CLASS_OTHER, &s));
        s->u.memset.y = e->embed_error;
        s->u.memset.bytes = 8;
        e->cur->embed_reset = true;
      }
      int32_t w = n->weights[QD_WEIGHT_SLOT_MAIN];
      if (e->comp->weights[w].format == QD_WEIGHT_FORMAT_NF4) return qd_exec_unsupported_(e, n, "with an NF4 table");
      QD_TRY(qd_exec_push_(e, QD_STEP_EMBEDDING, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_embedding_args_t* a = &s->u.embed;
      a->y = qd_exec_ptr_(e, n->output);
      a->ids = qd_exec_ptr_(e, n->inputs[0]);
      a->id_bytes = (int64_t)qd_dtype_size(g->values[n->inputs[0]].dtype);
      a->weight = qd_exec_weight_(e, w);
      a->error = e->embed_error;
      a->n = qd_shape_numel(xs);
      a->vocab = n->attrs[QD_EMBED_VOCAB].i;
      a->features = n->attrs[QD_EMBED_FEATURES].i;
      return QD_OK;
    }
    case QD_OP_ARANGE:
      QD_TRY(qd_exec_push_(e, QD_STEP_ARANGE, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.arange.y = qd_exec_ptr_(e, n->output);
      s->u.arange.n = qd_shape_numel(&out->shape);
      return QD_OK;
    case QD_OP_EOS_POOL: {
      QD_TRY(qd_exec_push_(e, QD_STEP_EOS_POOL, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_eos_pool_args_t* a = &s->u.eos;
      a->y = qd_exec_ptr_(e, n->output);
      a->x = qd_exec_ptr_(e, n->inputs[0]);
      a->ids = qd_exec_ptr_(e, n->inputs[1]);
      a->id_bytes = (int64_t)qd_dtype_size(g->values[n->inputs[1]].dtype);
      a->batch = xs->dims[0];
      a->tokens = xs->dims[1];
      a->ch = xs->dims[2];
      a->token = n->attrs[QD_EOS_TOKEN].i;
      return QD_OK;
    }
    case QD_OP_T5_RELATIVE_BIAS: {
      QD_TRY(qd_exec_push_(e, QD_STEP_T5_BIAS, i, QD_CLASS_OTHER, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_t5_relative_bias_args_t* a = &s->u.t5bias;
      a->y = qd_exec_ptr_(e, n->output);
      a->weight = qd_exec_weight_(e, n->weights[QD_WEIGHT_SLOT_MAIN]);
      a->tokens = xs->dims[1];
      a->heads = n->attrs[QD_T5_BIAS_HEADS].i;
      a->buckets = n->attrs[QD_T5_BIAS_BUCKETS].i;
      a->max_distance = n->attrs[QD_T5_BIAS_MAX_DISTANCE].i;
      a->bidirectional = n->attrs[QD_T5_BIAS_BIDIRECTIONAL].i != 0;
      return QD_OK;
    }
    case QD_OP_GROUP_NORM: return qd_exec_group_norm_(e, i, n, n->output);
    case QD_OP_UPSAMPLE_NEAREST:
      QD_TRY(qd_exec_push_(e, QD_STEP_UPSAMPLE, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.upsample.y = qd_exec_ptr_(e, n->output);
      s->u.upsample.x = qd_exec_ptr_(e, n->inputs[0]);
      s->u.upsample.planes = xs->dims[0] * xs->dims[1];
      s->u.upsample.h = xs->dims[2];
      s->u.upsample.w = xs->dims[3];
      s->u.upsample.factor = n->attrs[QD_UPSAMPLE_FACTOR].i;
      return QD_OK;
    case QD_OP_AFFINE:
      QD_TRY(qd_exec_push_(e, QD_STEP_AFFINE, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.affine.y = qd_exec_ptr_(e, n->output);
      s->u.affine.x = qd_exec_ptr_(e, n->inputs[0]);
      s->u.affine.n = qd_shape_numel(xs);
      s->u.affine.scale = (float)n->attrs[QD_AFFINE_SCALE].f;
      s->u.affine.divisor = (float)n->attrs[QD_AFFINE_DIVISOR].f;
      s->u.affine.shift = (float)n->attrs[QD_AFFINE_SHIFT].f;
      return QD_OK;
    case QD_OP_PERMUTE:
      QD_TRY(qd_exec_push_(e, QD_STEP_PERMUTE, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      s->u.permute.y = qd_exec_ptr_(e, n->output);
      s->u.permute.x = qd_exec_ptr_(e, n->inputs[0]);
      s->u.permute.rank = xs->rank;
      for (int32_t d = 0; d < xs->rank; d++) {
        s->u.permute.dims[d] = xs->dims[d];
        s->u.permute.perm[d] = n->attrs[QD_PERMUTE_PERM].list[d];
      }
      s->u.permute.elem = (int64_t)qd_dtype_size(e->cur->lowering->storage[n->output]);
      return QD_OK;
    case QD_OP_CONV2D: {
      QD_TRY(qd_exec_push_(e, QD_STEP_CONV2D, i, QD_CLASS_LINEAR, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      qd_conv2d_args_t* a = &s->u.conv;
      a->y = qd_exec_ptr_(e, n->output);
      a->x = qd_exec_ptr_(e, n->inputs[0]);
      a->batch = xs->dims[0];
      a->cin = xs->dims[1];
      a->h = xs->dims[2];
      a->w = xs->dims[3];
      a->cout = n->attrs[QD_CONV_FEATURES].i;
      a->kernel = n->attrs[QD_CONV_KERNEL].i;
      a->stride = n->attrs[QD_CONV_STRIDE].i;
      a->pad = n->attrs[QD_CONV_PADDING].i;
      QD_TRY(qd_exec_conv_weight_(e, n, a->cout, a->cin, a->kernel, &a->weight));
      a->bias = n->attrs[QD_CONV_BIAS].i ? qd_exec_weight_(e, n->weights[QD_WEIGHT_SLOT_BIAS]) : 0;
      return QD_OK;
    }
    case QD_OP_ALIAS:
    case QD_OP_RESHAPE:
      QD_TRY(qd_exec_push_(e, QD_STEP_COPY, i, QD_CLASS_ELEMENTWISE, &s));
      s->u.copy.y = qd_exec_ptr_(e, n->output);
      s->u.copy.x = qd_exec_ptr_(e, n->inputs[0]);
      s->u.copy.bytes = (size_t)qd_cuda_value_bytes(e->cur->lowering, g, n->output);
      return QD_OK;
    case QD_OP_SLICE:
    case QD_OP_CONCAT: {
      int32_t axis = (int32_t)n->attrs[n->op == QD_OP_SLICE ? QD_SLICE_AXIS : QD_CONCAT_AXIS].i;
      int64_t outer = qd_shape_prod(xs, 0, axis), inner = qd_shape_prod(xs, axis + 1, xs->rank);
      int64_t elem = (int64_t)qd_dtype_size(e->cur->lowering->storage[n->output]);
      QD_TRY(qd_exec_push_(e, n->op == QD_OP_SLICE ? QD_STEP_SLICE : QD_STEP_CONCAT, i, QD_CLASS_ELEMENTWISE, &s));
      QD_TRY(qd_exec_node_kernel_(e, i, &s->kernel));
      if (n->op == QD_OP_SLICE) {
        s->u.slice.y = qd_exec_ptr_(e, n->output);
        s->u.slice.x = qd_exec_ptr_(e, n->inputs[0]);
        s->u.slice.outer = outer;
        s->u.slice.axis_dim = xs->dims[axis];
        s->u.slice.inner = inner;
        s->u.slice.start = n->attrs[QD_SLICE_START].i;
        s->u.slice.size = n->attrs[QD_SLICE_SIZE].i;
        s->u.slice.elem = elem;
      } else {
        s->u.concat.y = qd_exec_ptr_(e, n->output);
        s->u.concat.count = n->input_count;
        for (int32_t k = 0; k < n->input_count; k++) {
          s->u.concat.in[k] = qd_exec_ptr_(e, n->inputs[k]);
          s->u.concat.sizes[k] = g->values[n->inputs[k]].shape.dims[axis];
        }
        s->u.concat.outer = outer;
        s->u.concat.inner = inner;
        s->u.concat.elem = elem;
      }
      return QD_OK;
    }
    default: return qd_exec_unsupported_(e, n, "is not lowered");
  }
}

/* --- running ----------------------------------------------------------------------------------------------- */

static qd_status_t qd_exec_launch_(qd_cuda_executor_t* e, const qd_step_t* s, CUstream stream) {
  const qd_exec_kernel_t* k = s->kernel >= 0 ? &e->kernels[s->kernel] : NULL;
  switch (s->kind) {
    case QD_STEP_GEMM:
      return qd_gemm_run(&e->gemms[s->gemm], e->lt_handle, s->u.gemm.y, s->u.gemm.x, s->u.gemm.w, s->u.gemm.bias,
                         e->workspace, QD_EXEC_WORKSPACE, stream);
    case QD_STEP_DEQUANT: return qd_launch_nf4_dequant(&k->fn, &k->config, stream, &s->u.dq);
    case QD_STEP_LN: return qd_launch_layernorm(&k->fn, &k->config, stream, &s->u.ln);
    case QD_STEP_QKNR: return qd_launch_qk_norm_rope(&k->fn, &k->config, stream, &s->u.qknr);
    case QD_STEP_GATED: return qd_launch_gated_residual(&k->fn, &k->config, stream, &s->u.gated);
    case QD_STEP_UNARY:
      return qd_launch_ew_unary(&k->fn, &k->config, stream, s->u.unary.y, s->u.unary.x, s->u.unary.n,
                                s->u.unary.factor);
    case QD_STEP_BINARY:
      return qd_launch_ew_binary(&k->fn, &k->config, stream, s->u.binary.y, s->u.binary.a, s->u.binary.b,
                                 s->u.binary.b_stride, s->u.binary.rows, s->u.binary.tokens, s->u.binary.cols);
    case QD_STEP_ATTENTION: return qd_attention_launch(e->cu, k->fn.handle, &k->attention, &s->u.attn, stream);
    case QD_STEP_TEMB:
      return qd_launch_timestep_embedding(&k->fn, &k->config, stream, s->u.temb.y, s->u.temb.t, s->u.temb.batch,
                                          s->u.temb.dim, s->u.temb.flip, s->u.temb.shift, s->u.temb.input_scale,
                                          s->u.temb.max_period);
    case QD_STEP_ROPE_FREQS:
      return qd_launch_rope_freqs(&k->fn, &k->config, stream, s->u.ropef.y, s->u.ropef.ids, s->u.ropef.tokens,
                                  s->u.ropef.axes, s->u.ropef.n_axes, s->u.ropef.theta);
    case QD_STEP_SLICE:
      return qd_launch_slice(&k->fn, &k->config, stream, s->u.slice.y, s->u.slice.x, s->u.slice.outer,
                             s->u.slice.axis_dim, s->u.slice.inner, s->u.slice.start, s->u.slice.size,
                             s->u.slice.elem);
    case QD_STEP_CONCAT:
      return qd_launch_concat(&k->fn, &k->config, stream, s->u.concat.y, s->u.concat.in, s->u.concat.sizes,
                              s->u.concat.count, s->u.concat.outer, s->u.concat.inner, s->u.concat.elem);
    case QD_STEP_COPY: QD_CU_TRY(e->cu->cuMemcpyDtoDAsync(s->u.copy.y, s->u.copy.x, s->u.copy.bytes, stream)); return QD_OK;
    case QD_STEP_MEMSET:
      QD_CU_TRY(e->cu->cuMemsetD8Async(s->u.memset.y, 0xFF, s->u.memset.bytes, stream));
      return QD_OK;
    case QD_STEP_EMBEDDING: return qd_launch_embedding(&k->fn, &k->config, stream, &s->u.embed);
    case QD_STEP_ARANGE: return qd_launch_arange(&k->fn, &k->config, stream, s->u.arange.y, s->u.arange.n);
    case QD_STEP_EOS_POOL: return qd_launch_eos_pool(&k->fn, &k->config, stream, &s->u.eos);
    case QD_STEP_T5_BIAS: return qd_launch_t5_relative_bias(&k->fn, &k->config, stream, &s->u.t5bias);
    case QD_STEP_ATTENTION_MASKED: return qd_launch_attention_masked(&k->fn, &k->config, stream, &s->u.attn_masked);
    case QD_STEP_GROUP_NORM: return qd_launch_group_norm(&k->fn, &k->fn2, &k->config, stream, &s->u.gnorm);
    case QD_STEP_UPSAMPLE:
      return qd_launch_upsample_nearest(&k->fn, &k->config, stream, s->u.upsample.y, s->u.upsample.x,
                                        s->u.upsample.planes, s->u.upsample.h, s->u.upsample.w, s->u.upsample.factor);
    case QD_STEP_AFFINE:
      return qd_launch_affine(&k->fn, &k->config, stream, s->u.affine.y, s->u.affine.x, s->u.affine.n,
                              s->u.affine.scale, s->u.affine.divisor, s->u.affine.shift);
    case QD_STEP_PERMUTE:
      return qd_launch_permute(&k->fn, &k->config, stream, s->u.permute.y, s->u.permute.x, s->u.permute.dims,
                               s->u.permute.perm, s->u.permute.rank, s->u.permute.elem);
    case QD_STEP_CONV2D: return qd_launch_conv2d(&k->fn, &k->config, stream, &s->u.conv);
    case QD_STEP_PACK:
      return qd_launch_pack_rows(&k->fn, &k->config, stream, s->u.pack.y, s->u.pack.y_row_bytes, s->u.pack.rows,
                                 s->u.pack.in, s->u.pack.row_bytes, s->u.pack.cols, s->u.pack.count);
  }
  return QD_ERR(INTERNAL, INTERNAL, "unknown step kind %d", (int)s->kind);
}

/* Streamed weights: enqueues the copy of group g into its slot on the copy stream, after the launches that read
 * the slot's previous group (freed_*), and marks it loaded. */
static qd_status_t qd_exec_copy_group_(qd_cuda_executor_t* e, const qd_exec_program_t* p, int32_t g, bool wait_freed) {
  const qd_cuda_driver_t* cu = e->cu;
  const qd_weight_stream_t* ws = p->stream;
  int k = g % e->slot_count;
  if (wait_freed) {
    QD_CU_TRY(cu->cuStreamWaitEvent(e->copy, e->freed_main[k], 0));
    QD_CU_TRY(cu->cuStreamWaitEvent(e->copy, e->freed_side[k], 0));
  }
  CUdeviceptr slot = p->slots + (uint64_t)k * p->slot_bytes;
  for (int32_t r = ws->groups[g].run_first; r < ws->groups[g].run_first + ws->groups[g].run_count; r++)
    QD_CU_TRY(cu->cuMemcpyHtoDAsync(slot + ws->runs[r].dst, e->weight_source + ws->runs[r].src,
                                    (size_t)ws->runs[r].bytes, e->copy));
  QD_CU_TRY(cu->cuEventRecord(e->loaded[k], e->copy));
  return QD_OK;
}

/* Enqueues the whole launch list. With overlap, NF4 dequantization runs on the side stream: a dequantize into
 * slot s waits until the GEMM that last read slot s is done; a GEMM waits for its dequantize.
 * With streamed weights, the copy stream loads the first `slot_count` groups up front; a launch that is the first
 * of its group on its stream waits until the group is loaded; after a group's last launch both compute streams
 * mark its slot free and the copy of the group `slot_count` ahead into that slot follows. Enqueue order is what
 * makes the reused events right: each wait refers to the latest record of its event. */
static qd_status_t qd_exec_enqueue_(qd_cuda_executor_t* e, const qd_exec_program_t* p, bool overlap) {
  const qd_cuda_driver_t* cu = e->cu;
  /* A benchmark's filter (qd_cuda_executor_set_class_filter) skips launches; the two streams only when both sides
   * of the overlap run (a capture cannot wait for an event it never recorded). */
  unsigned only = p == &e->prog ? e->class_filter : 0;
  const unsigned both = 1u << QD_CLASS_LINEAR | 1u << QD_CLASS_DEQUANT;
  if (only && (only & both) != both) overlap = false;
  const qd_weight_stream_t* ws = p->stream && p->stream->group_count ? p->stream : NULL;
  if (overlap || ws) QD_CU_TRY(cu->cuEventRecord(e->fork, e->stream));
  if (overlap) {
    QD_CU_TRY(cu->cuStreamWaitEvent(e->side, e->fork, 0));
    /* The slots start free: mark them so on the main stream. */
    for (int k = 0; k < 2; k++) QD_CU_TRY(cu->cuEventRecord(e->gemm_done[k], e->stream));
  }
  if (ws) {
    QD_CU_TRY(cu->cuStreamWaitEvent(e->copy, e->fork, 0));
    for (int32_t g = 0; g < ws->group_count && g < e->slot_count; g++) QD_TRY(qd_exec_copy_group_(e, p, g, false));
  }
  int32_t main_group = -1, side_group = -1; /* the group each compute stream last waited for */
  for (int32_t i = 0; i < p->step_count; i++) {
    const qd_step_t* s = &p->steps[i];
    if (only && !(only & (1u << s->op_class))) continue;
    bool on_side = overlap && s->kind == QD_STEP_DEQUANT;
    CUstream stream = on_side ? e->side : e->stream;
    int32_t* waited = on_side ? &side_group : &main_group;
    if (ws && s->wgroup >= 0 && *waited != s->wgroup) {
      QD_CU_TRY(cu->cuStreamWaitEvent(stream, e->loaded[s->wgroup % e->slot_count], 0));
      *waited = s->wgroup;
    }
    if (on_side) {
      QD_CU_TRY(cu->cuStreamWaitEvent(e->side, e->gemm_done[s->slot], 0));
      QD_TRY_CTX(qd_exec_launch_(e, s, e->side), "%s", p->graph->nodes[s->node].origin);
      QD_CU_TRY(cu->cuEventRecord(e->dq_done[s->slot], e->side));
    } else {
      if (overlap && s->kind == QD_STEP_GEMM && s->slot >= 0)
        QD_CU_TRY(cu->cuStreamWaitEvent(e->stream, e->dq_done[s->slot], 0));
      QD_TRY_CTX(qd_exec_launch_(e, s, e->stream), "%s", p->graph->nodes[s->node].origin);
      if (overlap && s->kind == QD_STEP_GEMM && s->slot >= 0)
        QD_CU_TRY(cu->cuEventRecord(e->gemm_done[s->slot], e->stream));
    }
    if (ws && s->wgroup >= 0 && i == ws->groups[s->wgroup].last_launch) {
      int32_t g = s->wgroup, k = g % e->slot_count;
      QD_CU_TRY(cu->cuEventRecord(e->freed_main[k], e->stream));
      QD_CU_TRY(cu->cuEventRecord(e->freed_side[k], overlap ? e->side : e->stream));
      if (g + e->slot_count < ws->group_count) QD_TRY(qd_exec_copy_group_(e, p, g + e->slot_count, true));
    }
  }
  if (overlap) {
    QD_CU_TRY(cu->cuEventRecord(e->join, e->side));
    QD_CU_TRY(cu->cuStreamWaitEvent(e->stream, e->join, 0));
  }
  if (ws) {
    QD_CU_TRY(cu->cuEventRecord(e->join, e->copy));
    QD_CU_TRY(cu->cuStreamWaitEvent(e->stream, e->join, 0));
  }
  return QD_OK;
}

/* Enqueues one step: the launch list (captured as a CUDA graph on first use), preceded in a hoisted step by the copy
 * of the selected step's conditioning block to where the step reads it. */
static qd_status_t qd_exec_enqueue_step_(qd_cuda_executor_t* e) {
  const qd_cuda_driver_t* cu = e->cu;
  if (e->hoist && e->selected_step < 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s': the step's conditioning is hoisted; prepare it "
                  "(qd_cuda_executor_prepare_steps) and select a step before running one", e->prog.graph->name);
  if (e->options.use_graph && !e->prog.graph_exec) {
    double t0 = qd_now_seconds();
    CUgraph graph;
    QD_CU_TRY(cu->cuStreamBeginCapture(e->stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL));
    qd_status_t s = qd_exec_enqueue_(e, &e->prog, e->options.overlap);
    CUresult end = cu->cuStreamEndCapture(e->stream, &graph);
    if (s) {
      if (end == CUDA_SUCCESS) cu->cuGraphDestroy(graph);
      return qd_status_annotate(s, "while capturing the step as a CUDA graph");
    }
    QD_CU_TRY(end);
    s = QD_CU_STATUS(cu->cuGraphInstantiate(&e->prog.graph_exec, graph, 0));
    cu->cuGraphDestroy(graph);
    QD_TRY(s);
    e->create_times.graph = qd_now_seconds() - t0;
    QD_LOG_DEBUG("%s: '%s': the step captured as a CUDA graph of %d launches in %.1f ms", qd_plan_path(e->plan),
                 e->comp->name, e->prog.step_count, e->create_times.graph * 1e3);
  }
  if (e->hoist)
    QD_CU_TRY(cu->cuMemcpyDtoDAsync(e->cond_current, e->cond_all + (uint64_t)e->selected_step * e->hoist->block_bytes,
                                    (size_t)e->hoist->block_bytes, e->stream));
  if (e->options.use_graph) {
    QD_CU_TRY(cu->cuGraphLaunch(e->prog.graph_exec, e->stream));
    return QD_OK;
  }
  return qd_exec_enqueue_(e, &e->prog, e->options.overlap);
}

qd_status_t qd_cuda_executor_run(qd_cuda_executor_t* e) {
  QD_CU_TRY(e->cu->cuCtxSetCurrent(e->context));
  QD_TRY(qd_exec_enqueue_step_(e));
  QD_CU_TRY(e->cu->cuStreamSynchronize(e->stream));
  if (e->embed_error) {
    /* An id outside an embedding's table was not read; its rows are zeros and the run is an error. */
    uint64_t first = 0;
    QD_CU_TRY(e->cu->cuMemcpyDtoH(&first, e->embed_error, sizeof first));
    if (first != QD_EMBEDDING_NO_ERROR)
      return QD_ERR(INVALID_ARGUMENT, INPUT_VALUE, "graph '%s': element %llu of an embedding's ids is outside its "
                    "table", e->prog.graph->name, (unsigned long long)first);
  }
  return QD_OK;
}

/* --- autotuning (qdc compile --autotune) ------------------------------------------------------------------------ */

/* Times `candidates` of cuBLASLt's algorithms for GEMM shape gi on the buffers of the first step that runs it and
 * keeps the fastest (qd_gemm_tune); *out_ran false (nothing timed) when no step runs it. */
static qd_status_t qd_exec_gemm_tune_(qd_cuda_executor_t* e, int32_t gi, int candidates, float* out_default_ms,
                                      float* out_best_ms, bool* out_ran) {
  *out_ran = false;
  const qd_step_t* first = NULL;
  for (int32_t i = 0; i < e->prog.step_count && !first; i++)
    if (e->prog.steps[i].kind == QD_STEP_GEMM && e->prog.steps[i].gemm == gi) first = &e->prog.steps[i];
  if (!first) return QD_OK;
  *out_ran = true;
  return qd_gemm_tune(&e->gemms[gi], e->cu, e->lt_handle, candidates, 10, first->u.gemm.y, first->u.gemm.x,
                      first->u.gemm.w, first->u.gemm.bias, e->workspace, QD_EXEC_WORKSPACE, e->stream, out_default_ms,
                      out_best_ms);
}

static int qd_double_cmp_(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Microseconds per launch of step s: five batches of back-to-back launches (enough for about 0.5 ms each), the
 * median batch. A launch that fails (a launcher's requirement) is the error. */
static qd_status_t qd_exec_time_step_(qd_cuda_executor_t* e, const qd_step_t* s, double* out_us) {
  const qd_cuda_driver_t* cu = e->cu;
  CUevent a, b;
  QD_CU_TRY(cu->cuEventCreate(&a, CU_EVENT_DEFAULT));
  qd_status_t st = QD_CU_STATUS(cu->cuEventCreate(&b, CU_EVENT_DEFAULT));
  if (st) {
    cu->cuEventDestroy(a);
    return st;
  }
  float ms = 0;
  st = qd_exec_launch_(e, s, e->stream); /* warm-up, and the launch's own checks */
  if (!st) st = QD_CU_STATUS(cu->cuEventRecord(a, e->stream));
  if (!st) st = qd_exec_launch_(e, s, e->stream);
  if (!st) st = QD_CU_STATUS(cu->cuEventRecord(b, e->stream));
  if (!st) st = QD_CU_STATUS(cu->cuEventSynchronize(b));
  if (!st) st = QD_CU_STATUS(cu->cuEventElapsedTime(&ms, a, b));
  int per = ms >= 0.25f ? 2 : (int)(0.5f / (ms > 0.002f ? ms : 0.002f)) + 1;
  double t[5];
  for (int r = 0; r < 5 && !st; r++) {
    st = QD_CU_STATUS(cu->cuEventRecord(a, e->stream));
    for (int i = 0; i < per && !st; i++) st = qd_exec_launch_(e, s, e->stream);
    if (!st) st = QD_CU_STATUS(cu->cuEventRecord(b, e->stream));
    if (!st) st = QD_CU_STATUS(cu->cuEventSynchronize(b));
    if (!st) st = QD_CU_STATUS(cu->cuEventElapsedTime(&ms, a, b));
    t[r] = (double)ms * 1e3 / per;
  }
  cu->cuEventDestroy(a);
  cu->cuEventDestroy(b);
  if (st) return st;
  qsort(t, 5, sizeof t[0], qd_double_cmp_);
  *out_us = t[2];
  return QD_OK;
}

/* Step s timed with kernel variant `kv` in place of its own (compiled with NVRTC, loaded, launched, unloaded). */
static qd_status_t qd_exec_time_variant_(qd_cuda_executor_t* e, const qd_step_t* s, const qd_cuda_kernel_t* kv,
                                         double* out_us) {
  qd_nvrtc_output_t built;
  QD_TRY(qd_cuda_kernel_compile(e->allocator, kv, e->arch, QD_NVRTC_OUTPUT_CUBIN, &built));
  qd_exec_kernel_t cand, *k = &e->kernels[s->kernel];
  memset(&cand, 0, sizeof cand);
  snprintf(cand.key, sizeof cand.key, "%s", kv->key);
  cand.config = kv->config;
  qd_status_t st = qd_kernel_module_load(e->allocator, built.cubin, &cand.module);
  qd_nvrtc_output_deinit(&built);
  if (!st) st = qd_kernel_module_get_function(cand.module, kv->function, &cand.fn);
  if (!st && kv->function2) st = qd_kernel_module_get_function(cand.module, kv->function2, &cand.fn2);
  if (!st && kv->shared_bytes) st = qd_kernel_function_set_max_dynamic_shared(&cand.fn, (int)kv->shared_bytes);
  if (!st) {
    qd_exec_kernel_t own = *k;
    *k = cand;
    st = qd_exec_time_step_(e, s, out_us);
    qd_status_t sync = QD_CU_STATUS(e->cu->cuStreamSynchronize(e->stream)); /* before the module goes */
    *k = own;
    if (!st) st = sync;
    else qd_status_free(sync);
  }
  if (cand.module) qd_kernel_module_unload(cand.module);
  return st;
}

/* One kernel site: the default variant against each tunable's other values (coordinate search; with `max`, rounds
 * from the best until none improves). */
static qd_status_t qd_exec_tune_site_(qd_cuda_executor_t* e, const qd_step_t* s, bool max, const char* shape,
                                      qd_tuning_t* into, qd_cuda_kernel_list_t* tuned) {
  qd_cuda_kernel_t base;
  bool has;
  QD_TRY(qd_cuda_node_kernel(e->prog.graph, e->prog.lowering, e->comp->weights, e->kernels_from.target, s->node,
                             &base, &has));
  if (!has || strcmp(base.key, e->kernels[s->kernel].key) != 0) return QD_OK; /* not this step's kernel */
  double t_default;
  QD_TRY(qd_exec_time_step_(e, s, &t_default));
  qd_kernel_config_t best = base.config;
  double t_best = t_default;
  int32_t candidates = 0;
  for (int round = 0; round < (max ? 4 : 1); round++) {
    bool improved = false;
    const qd_kernel_config_t from = best;
    for (size_t p = 0; p < from.params.count; p++) {
      const qd_kernel_param_t* param = &from.params.items[p];
      if (param->kind != QD_KERNEL_PARAM_TUNABLE) continue;
      for (size_t v = 0; v < param->value_count; v++) {
        if (param->values[v] == from.values[p]) continue;
        qd_cuda_kernel_t kv = base;
        kv.config = from;
        qd_status_t st = qd_kernel_config_set(&kv.config, param->name, param->values[v]);
        if (!st) st = qd_cuda_kernel_rekey(&kv);
        double t = 0;
        if (!st) st = qd_exec_time_variant_(e, s, &kv, &t);
        if (st) { /* does not compile, load or launch here: not a candidate */
          QD_LOG_DEBUG("autotune: %s at %s: %s=%d skipped: %s", base.key, shape, param->name, param->values[v],
                       qd_status_message(st));
          qd_status_free(st);
          continue;
        }
        candidates++;
        if (t < t_best) {
          t_best = t;
          best = kv.config;
          improved = true;
        }
      }
    }
    if (!improved) break;
  }
  if (!(t_best <= 0.98 * t_default)) return QD_OK;
  qd_tuning_kernel_t rec;
  memset(&rec, 0, sizeof rec);
  snprintf(rec.site, sizeof rec.site, "%s", base.key);
  snprintf(rec.shape, sizeof rec.shape, "%s", shape);
  for (size_t p = 0; p < best.params.count && rec.define_count < QD_TUNING_MAX_DEFINES; p++)
    if (best.values[p] != base.config.values[p]) {
      snprintf(rec.defines[rec.define_count].name, sizeof rec.defines[0].name, "%s", best.params.items[p].name);
      rec.defines[rec.define_count++].value = best.values[p];
    }
  rec.candidates = candidates;
  rec.default_us = t_default;
  rec.tuned_us = t_best;
  QD_TRY(qd_tuning_add_kernel(into, &rec));
  QD_LOG_DEBUG("autotune: %s at %s: %.2f -> %.2f us", base.key, shape, t_default, t_best);
  if (!tuned) return QD_OK;
  qd_cuda_kernel_t kv = base;
  kv.config = best;
  QD_TRY(qd_cuda_kernel_rekey(&kv));
  if (qd_cuda_kernel_list_find(tuned, kv.key)) return QD_OK;
  return qd_cuda_kernel_list_push(tuned, &kv);
}

qd_status_t qd_cuda_executor_autotune(qd_cuda_executor_t* e, bool max, const qd_progress_sink_t* progress,
                                      qd_tuning_t* into, qd_cuda_kernel_list_t* tuned) {
  if (!e->options.ignore_tuning || e->hoist || (e->prog.stream && e->prog.stream->group_count))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s': autotuning needs an executor made with "
                  "ignore_tuning, without hoisting or streamed weights", e->prog.graph->name);
  const qd_cuda_driver_t* cu = e->cu;
  QD_CU_TRY(cu->cuCtxSetCurrent(e->context));
  snprintf(into->mode, sizeof into->mode, "%s", max ? "max" : "default");
  QD_CU_TRY(cu->cuDeviceGetName(into->device, (int)sizeof into->device, e->device));
  /* Kernel records apply to cubins of the architecture the kernels were built for here. */
  bool kernels = !e->kernels_from.target.ptx;
  snprintf(into->arch, sizeof into->arch, "sm_%d", e->kernels_from.target.cc);
  into->driver = cu->driver_version;
  into->cublaslt = (int32_t)e->lt->version;
  /* The sites: the first step of each (kernel, shape). */
  const qd_graph_t* g = e->prog.graph;
  int32_t* first = NULL;
  char (*shapes)[QD_TUNING_SHAPE_MAX] = NULL;
  int32_t sites = 0;
  qd_status_t st = qd_calloc(e->allocator, (size_t)e->prog.step_count + 1, sizeof *first, (void**)&first);
  if (!st) st = qd_calloc(e->allocator, (size_t)e->prog.step_count + 1, sizeof *shapes, (void**)&shapes);
  for (int32_t i = 0; i < e->prog.step_count && !st && kernels; i++) {
    const qd_step_t* sp = &e->prog.steps[i];
    if (sp->kernel < 0 || e->kernels[sp->kernel].is_attention || sp->kind == QD_STEP_GEMM ||
        sp->kind == QD_STEP_ATTENTION || sp->kind == QD_STEP_ATTENTION_MASKED || sp->kind == QD_STEP_PACK ||
        sp->kind == QD_STEP_MEMSET || sp->kind == QD_STEP_COPY)
      continue;
    qd_cuda_kernel_site_shape(g, sp->node, shapes[sites], sizeof shapes[0]);
    bool seen = false;
    for (int32_t j = 0; j < sites && !seen; j++)
      seen = e->prog.steps[first[j]].kernel == sp->kernel && strcmp(shapes[j], shapes[sites]) == 0;
    if (!seen) first[sites++] = i;
  }
  qd_progress_t pr;
  char label[64];
  snprintf(label, sizeof label, "autotune %s", e->comp->name);
  qd_progress_begin(&pr, progress, label, (uint64_t)(e->gemm_count + sites), "sites");
  for (int32_t gi = 0; gi < e->gemm_count && !st; gi++) {
    qd_gemm_t* gm = &e->gemms[gi];
    float def = 0, best = 0;
    bool ran;
    st = qd_exec_gemm_tune_(e, gi, max ? 32 : 8, &def, &best, &ran);
    /* Only a clear win is recorded: single runs favour algorithms that lose at the power limit. */
    if (ran && !st && best <= 0.97f * def) {
      qd_tuning_gemm_t rec = qd_exec_gemm_key_(gm);
      memcpy(rec.algo, &gm->algo, sizeof rec.algo);
      rec.workspace = gm->workspace_needed;
      rec.candidates = gm->candidates;
      rec.heuristic_us = def * 1e3;
      rec.tuned_us = best * 1e3;
      st = qd_tuning_add_gemm(into, &rec);
    }
    if (!qd_progress_advance(&pr, 1) && !st) st = QD_ERR(CANCELLED, CANCELLED, "autotuning cancelled");
  }
  for (int32_t j = 0; j < sites && !st; j++) {
    st = qd_exec_tune_site_(e, &e->prog.steps[first[j]], max, shapes[j], into, tuned);
    if (st) st = qd_status_annotate(st, "autotuning %s", g->nodes[e->prog.steps[first[j]].node].origin);
    if (!qd_progress_advance(&pr, 1) && !st) st = QD_ERR(CANCELLED, CANCELLED, "autotuning cancelled");
  }
  qd_progress_end(&pr);
  qd_free(e->allocator, first, ((size_t)e->prog.step_count + 1) * sizeof *first);
  qd_free(e->allocator, shapes, ((size_t)e->prog.step_count + 1) * sizeof *shapes);
  return st;
}

qd_status_t qd_cuda_executor_set_class_filter(qd_cuda_executor_t* e, unsigned class_mask) {
  if (class_mask && e->prog.stream && e->prog.stream->group_count)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s': launches cannot be filtered by class while weights "
                  "are streamed", e->prog.graph->name);
  if (class_mask == e->class_filter) return QD_OK;
  e->class_filter = class_mask;
  if (e->prog.graph_exec) {
    QD_CU_TRY(e->cu->cuCtxSetCurrent(e->context));
    QD_CU_TRY(e->cu->cuStreamSynchronize(e->stream));
    e->cu->cuGraphExecDestroy(e->prog.graph_exec);
    e->prog.graph_exec = NULL;
  }
  return QD_OK;
}


qd_status_t qd_cuda_executor_time(qd_cuda_executor_t* e, int iterations, bool per_class, qd_cuda_timing_t* t) {
  const qd_cuda_driver_t* cu = e->cu;
  memset(t, 0, sizeof *t);
  t->launches = e->prog.step_count;
  for (int w = 0; w < 3; w++) QD_TRY(qd_cuda_executor_run(e));
  CUevent a, b;
  QD_CU_TRY(cu->cuEventCreate(&a, CU_EVENT_DEFAULT));
  QD_CU_TRY(cu->cuEventCreate(&b, CU_EVENT_DEFAULT));
  double* ms = NULL;
  qd_status_t s = qd_malloc(e->allocator, (size_t)(iterations > 0 ? iterations : 1) * sizeof *ms, (void**)&ms);
  for (int i = 0; i < iterations && !s; i++) {
    s = QD_CU_STATUS(cu->cuEventRecord(a, e->stream));
    if (!s) s = qd_exec_enqueue_step_(e);
    if (!s) s = QD_CU_STATUS(cu->cuEventRecord(b, e->stream));
    if (!s) s = QD_CU_STATUS(cu->cuEventSynchronize(b));
    float f = 0;
    if (!s) s = QD_CU_STATUS(cu->cuEventElapsedTime(&f, a, b));
    ms[i] = f;
  }
  if (!s && iterations > 0) {
    qsort(ms, (size_t)iterations, sizeof *ms, qd_double_cmp_);
    t->median_ms = ms[iterations / 2];
    t->min_ms = ms[0];
  }
  qd_free(e->allocator, ms, (size_t)(iterations > 0 ? iterations : 1) * sizeof *ms);
  /* Per class: every launch on the main stream between two events, one after another. */
  if (!s && per_class) {
    CUevent* ev = NULL;
    s = qd_calloc(e->allocator, (size_t)e->prog.step_count + 1, sizeof *ev, (void**)&ev);
    for (int32_t i = 0; i <= e->prog.step_count && !s; i++) s = QD_CU_STATUS(cu->cuEventCreate(&ev[i], CU_EVENT_DEFAULT));
    if (!s) s = QD_CU_STATUS(cu->cuEventRecord(ev[0], e->stream));
    for (int32_t i = 0; i < e->prog.step_count && !s; i++) {
      s = qd_exec_launch_(e, &e->prog.steps[i], e->stream);
      if (!s) s = QD_CU_STATUS(cu->cuEventRecord(ev[i + 1], e->stream));
    }
    if (!s) s = QD_CU_STATUS(cu->cuStreamSynchronize(e->stream));
    for (int32_t i = 0; i < e->prog.step_count && !s; i++) {
      float f = 0;
      s = QD_CU_STATUS(cu->cuEventElapsedTime(&f, ev[i], ev[i + 1]));
      const qd_step_t* st = &e->prog.steps[i];
      t->class_ms[st->op_class] += f;
      if (st->kind == QD_STEP_GEMM && st->gemm < QD_CUDA_TIMING_MAX_GEMMS) {
        const qd_gemm_t* gm = &e->gemms[st->gemm];
        qd_cuda_gemm_timing_t* gt = &t->gemms[st->gemm];
        gt->m = gm->m, gt->n = gm->n, gt->k = gm->k, gt->batch = gm->batch.count;
        gt->uses++;
        gt->ms += f;
        if (st->gemm >= t->gemm_count) t->gemm_count = st->gemm + 1;
      }
    }
    for (int32_t i = 0; ev && i <= e->prog.step_count; i++)
      if (ev[i]) cu->cuEventDestroy(ev[i]);
    qd_free(e->allocator, ev, ((size_t)e->prog.step_count + 1) * sizeof *ev);
  }
  cu->cuEventDestroy(a);
  cu->cuEventDestroy(b);
  return s;
}

/* --- inputs and outputs -------------------------------------------------------------------------------------- */

/* Copies a host tensor (F32 for floating storage) to the device in the storage type; waits for the copy. */
static qd_status_t qd_exec_upload_(qd_cuda_executor_t* e, CUdeviceptr dst, qd_dtype_t storage, const qd_tensor_t* host) {
  uint64_t n = (uint64_t)qd_shape_numel(&host->shape);
  if (storage == QD_DTYPE_BF16) {
    uint16_t* tmp;
    QD_TRY(qd_malloc(e->allocator, n * 2, (void**)&tmp));
    const float* src = host->data;
    for (uint64_t i = 0; i < n; i++) tmp[i] = qd_f32_to_bf16(src[i]);
    qd_status_t s = QD_CU_STATUS(e->cu->cuMemcpyHtoD(dst, tmp, n * 2));
    qd_free(e->allocator, tmp, n * 2);
    return s;
  }
  QD_CU_TRY(e->cu->cuMemcpyHtoD(dst, host->data, n * qd_dtype_size(storage)));
  return QD_OK;
}

qd_status_t qd_cuda_executor_set_input(qd_cuda_executor_t* e, int32_t index, const qd_tensor_t* host) {
  const qd_graph_t* g = e->prog.graph;
  if (index < 0 || index >= g->input_count)
    return QD_ERR(INVALID_ARGUMENT, INPUT_MISSING, "graph '%s' has no input %d", g->name, index);
  int32_t v = g->inputs[index];
  const qd_value_t* val = &g->values[v];
  if (!qd_shape_equal(&host->shape, &val->shape) || host->dtype != val->dtype) {
    char a[128], b[128];
    return QD_ERR(INVALID_ARGUMENT, INPUT_SHAPE, "input '%s' is %s %s; the program needs %s %s", val->name,
                  qd_dtype_name(host->dtype), qd_shape_format(&host->shape, a, sizeof a), qd_dtype_name(val->dtype),
                  qd_shape_format(&val->shape, b, sizeof b));
  }
  QD_CU_TRY(e->cu->cuCtxSetCurrent(e->context));
  return qd_exec_upload_(e, e->prog.input_ptr[index], e->prog.lowering->storage[v], host);
}

qd_status_t qd_cuda_executor_get_output(qd_cuda_executor_t* e, int32_t index, qd_tensor_t* out) {
  const qd_graph_t* g = e->prog.graph;
  memset(out, 0, sizeof *out);
  if (index < 0 || index >= g->output_count)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s' has no output %d", g->name, index);
  int32_t v = g->outputs[index].value;
  uint64_t n = (uint64_t)qd_shape_numel(&g->values[v].shape);
  qd_dtype_t st = e->prog.lowering->storage[v];
  size_t bytes = (size_t)(n * qd_dtype_size(st));
  void* tmp;
  QD_TRY(qd_malloc(e->allocator, bytes, &tmp));
  qd_status_t s = QD_CU_STATUS(e->cu->cuCtxSetCurrent(e->context));
  if (!s) s = QD_CU_STATUS(e->cu->cuMemcpyDtoH(tmp, qd_exec_ptr_(e, v), bytes));
  if (!s) s = qd_malloc(e->allocator, n * 4, &out->data);
  if (!s) s = qd_convert_to_f32(st, tmp, n, out->data);
  qd_free(e->allocator, tmp, bytes);
  if (s) {
    qd_free(e->allocator, out->data, n * 4);
    memset(out, 0, sizeof *out);
    return s;
  }
  out->dtype = QD_DTYPE_F32;
  out->shape = g->values[v].shape;
  out->bytes = n * 4;
  return QD_OK;
}

const qd_graph_t* qd_cuda_executor_graph(const qd_cuda_executor_t* e) { return e->prog.graph; }

void qd_cuda_executor_memory(const qd_cuda_executor_t* e, qd_cuda_memory_t* m) {
  m->weights = e->weight_bytes;
  m->slots = (uint64_t)e->slot_count * (e->prog.slot_bytes + (e->cond.own_slots ? e->cond.slot_bytes : 0));
  m->streamed = e->prog.stream ? e->prog.stream->streamed_bytes : 0;
  m->streamed_groups = e->prog.stream ? e->prog.stream->group_count : 0;
  m->arena = e->prog.arena_bytes;
  m->scratch = e->scratch_bytes;
  m->workspace = QD_EXEC_WORKSPACE;
  m->inputs = e->prog.inputs_bytes;
  m->device_used_before = e->mem_before;
  m->device_used_after = e->mem_after;
}

void qd_cuda_executor_tuning(const qd_cuda_executor_t* e, qd_cuda_tuning_t* out) { *out = e->tuning; }

void qd_cuda_executor_times(const qd_cuda_executor_t* e, qd_cuda_executor_times_t* out) { *out = e->create_times; }

/* --- creation ------------------------------------------------------------------------------------------------ */

/* Frees a program's device buffers (with a driver) and host state, leaving it zeroed. */
static void qd_exec_program_free_(qd_cuda_executor_t* e, qd_exec_program_t* p) {
  const qd_cuda_driver_t* cu = e->context ? e->cu : NULL;
  if (cu) {
    if (p->graph_exec) cu->cuGraphExecDestroy(p->graph_exec);
    if (p->arena) cu->cuMemFree(p->arena);
    if (p->inputs_base) cu->cuMemFree(p->inputs_base);
    if (p->own_slots && p->slots) cu->cuMemFree(p->slots);
  }
  qd_weight_stream_destroy(p->stream);
  if (p->graph)
    qd_free(e->allocator, p->input_ptr, (size_t)(p->graph->input_count ? p->graph->input_count : 1) * sizeof(CUdeviceptr));
  qd_free(e->allocator, p->steps, (size_t)p->step_capacity * sizeof *p->steps);
  qd_memory_plan_destroy(p->memory);
  qd_cuda_lowering_destroy(p->lowering);
  qd_graph_destroy(p->graph);
  memset(p, 0, sizeof *p);
}

/* Drops the conditioning program, its GEMM descriptors and its blocks (they are rebuilt for another step count). */
static void qd_exec_cond_free_(qd_cuda_executor_t* e) {
  qd_exec_program_free_(e, &e->cond);
  if (e->context && e->cond_all) e->cu->cuMemFree(e->cond_all);
  e->cond_all = 0;
  if (e->cond_steps) {
    for (int32_t i = e->cond_gemm_first; i < e->gemm_count; i++) qd_gemm_deinit(&e->gemms[i]);
    e->gemm_count = e->cond_gemm_first;
  }
  e->cond_steps = 0;
  e->selected_step = -1;
}

void qd_cuda_executor_destroy(qd_cuda_executor_t* e) {
  if (!e) return;
  const qd_cuda_driver_t* cu = e->cu;
  if (cu && e->context) {
    cu->cuCtxSetCurrent(e->context);
    if (e->stream) cu->cuStreamSynchronize(e->stream);
  }
  qd_exec_cond_free_(e);
  qd_exec_program_free_(e, &e->prog);
  qd_tuning_destroy(e->records);
  if (cu && e->context) {
    for (int32_t i = 0; i < e->gemm_count; i++) qd_gemm_deinit(&e->gemms[i]);
    for (int32_t i = 0; i < e->kernel_count; i++)
      if (!e->kernels[i].module_borrowed) qd_kernel_module_unload(e->kernels[i].module);
    if (e->lt_handle) e->lt->cublasLtDestroy(e->lt_handle);
    CUdeviceptr ptrs[] = {e->weights, e->scratch[0], e->workspace, e->nested_map, e->cond_current, e->embed_error,
                          e->gn_workspace};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
      if (ptrs[i]) cu->cuMemFree(ptrs[i]);
    for (int32_t w = 0; e->weight_bf16 && w < e->weight_count; w++)
      if (e->weight_bf16[w]) cu->cuMemFree(e->weight_bf16[w]);
    for (int32_t w = 0; e->weight_packed && w < e->weight_count; w++)
      if (e->weight_packed[w]) cu->cuMemFree(e->weight_packed[w]);
    CUevent evs[] = {e->dq_done[0], e->dq_done[1], e->gemm_done[0], e->gemm_done[1], e->fork, e->join};
    for (size_t i = 0; i < sizeof evs / sizeof evs[0]; i++)
      if (evs[i]) cu->cuEventDestroy(evs[i]);
    for (int k = 0; k < QD_EXEC_MAX_SLOTS; k++) {
      CUevent ring[] = {e->loaded[k], e->freed_main[k], e->freed_side[k]};
      for (size_t i = 0; i < sizeof ring / sizeof ring[0]; i++)
        if (ring[i]) cu->cuEventDestroy(ring[i]);
    }
    if (e->stream) cu->cuStreamDestroy(e->stream);
    if (e->side) cu->cuStreamDestroy(e->side);
    if (e->copy) cu->cuStreamDestroy(e->copy);
    cu->cuDevicePrimaryCtxRelease(e->device);
  }
  qd_free(e->allocator, e->weight_bf16, (size_t)(e->weight_count ? e->weight_count : 1) * sizeof(CUdeviceptr));
  qd_free(e->allocator, e->weight_packed, (size_t)(e->weight_count ? e->weight_count : 1) * sizeof(CUdeviceptr));
  size_t wc = (size_t)(e->weight_count ? e->weight_count : 1);
  qd_free(e->allocator, e->resident, wc * sizeof *e->resident);
  qd_free(e->allocator, e->resident_shift, wc * sizeof *e->resident_shift);
  qd_cuda_host_weights_destroy(e->own_host);
  qd_cuda_hoist_destroy(e->hoist);
  qd_free(e->allocator, e, sizeof *e);
}

static qd_status_t qd_exec_alloc_(qd_cuda_executor_t* e, CUdeviceptr* out, uint64_t bytes, const char* what) {
  if (bytes == 0) bytes = 256;
  CUresult r = e->cu->cuMemAlloc(out, (size_t)bytes);
  if (r == CUDA_SUCCESS) return QD_OK;
  *out = 0;
  char b[32];
  qd_status_t s = qd_cuda_result_status(r, "cuMemAlloc", __FILE__, __LINE__);
  return qd_status_annotate(s, "allocating %s of %s on the GPU", qd_format_bytes(bytes, b, sizeof b), what);
}

/* Copies section bytes [src, src + bytes) to the device, from the pinned copy asynchronously (waited for by the
 * caller) or from the mapped plan. */
static qd_status_t qd_exec_copy_in_(qd_cuda_executor_t* e, CUdeviceptr dst, uint64_t src, uint64_t bytes,
                                    qd_progress_t* progress) {
  const uint64_t chunk = 256ull << 20;
  for (uint64_t off = 0; off < bytes; off += chunk) {
    uint64_t n = bytes - off < chunk ? bytes - off : chunk;
    if (e->source_pinned)
      QD_CU_TRY(e->cu->cuMemcpyHtoDAsync(dst + off, e->weight_source + src + off, (size_t)n, e->stream));
    else
      QD_CU_TRY(e->cu->cuMemcpyHtoD(dst + off, e->weight_source + src + off, (size_t)n));
    qd_progress_advance(progress, n);
  }
  return QD_OK;
}

/* Uploads the weights the device keeps: the whole section as it is (NF4 codes and scales, bf16 values), or with
 * streamed weights only the resident ones, packed (resident_shift says where each went). */
static qd_status_t qd_exec_upload_weights_(qd_cuda_executor_t* e) {
  const qd_plan_component_t* c = e->comp;
  int32_t n = e->weight_count;
  uint64_t total = 0;
  if (!e->resident) {
    total = c->weight_bytes;
  } else {
    /* Resident weights packed in section order, each aligned as in the section. */
    for (int32_t w = 0; w < n; w++) {
      if (!e->resident[w]) continue;
      qd_plan_range_t span = qd_weight_span(&c->weights[w]);
      uint64_t dst = (total + QD_PLAN_WEIGHT_ALIGN - 1) & ~(uint64_t)(QD_PLAN_WEIGHT_ALIGN - 1);
      e->resident_shift[w] = (int64_t)dst - (int64_t)span.offset;
      total = dst + span.bytes;
    }
  }
  e->weight_bytes = total;
  QD_TRY(qd_exec_alloc_(e, &e->weights, total, "weights"));
  qd_progress_t p;
  qd_progress_begin(&p, NULL, "upload", total, "B");
  qd_status_t s = QD_OK;
  if (!e->resident) {
    s = qd_exec_copy_in_(e, e->weights, 0, total, &p);
  } else {
    for (int32_t w = 0; w < n && !s; w++) {
      if (!e->resident[w]) continue;
      qd_plan_range_t span = qd_weight_span(&c->weights[w]);
      s = qd_exec_copy_in_(e, e->weights + (uint64_t)((int64_t)span.offset + e->resident_shift[w]), span.offset,
                           span.bytes, &p);
    }
  }
  if (!s && e->source_pinned) s = QD_CU_STATUS(e->cu->cuStreamSynchronize(e->stream));
  qd_progress_end(&p);
  return s;
}

/* The weights kept beside the section: bf16 copies of f32-format weights (the kernels read bf16) and NF4 double
 * quantization's code table. */
static qd_status_t qd_exec_weight_copies_(qd_cuda_executor_t* e) {
  const qd_plan_component_t* c = e->comp;
  e->weight_count = e->prog.graph->weight_count;
  QD_TRY(qd_calloc(e->allocator, (size_t)(e->weight_count ? e->weight_count : 1), sizeof(CUdeviceptr),
                   (void**)&e->weight_bf16));
  QD_TRY(qd_calloc(e->allocator, (size_t)(e->weight_count ? e->weight_count : 1), sizeof(CUdeviceptr),
                   (void**)&e->weight_packed));
  for (int32_t w = 0; w < e->prog.graph->weight_count; w++) {
    const qd_plan_weight_t* pw = &c->weights[w];
    if (pw->format != QD_WEIGHT_FORMAT_F32) continue;
    uint64_t n = (uint64_t)qd_shape_numel(&pw->shape);
    uint16_t* tmp;
    QD_TRY(qd_malloc(e->allocator, n * 2, (void**)&tmp));
    const float* src = (const float*)(const void*)(c->weight_data + pw->data.offset);
    for (uint64_t i = 0; i < n; i++) tmp[i] = qd_f32_to_bf16(src[i]);
    qd_status_t s = qd_exec_alloc_(e, &e->weight_bf16[w], n * 2, pw->name);
    if (!s) s = QD_CU_STATUS(e->cu->cuMemcpyHtoD(e->weight_bf16[w], tmp, n * 2));
    qd_free(e->allocator, tmp, n * 2);
    QD_TRY(s);
  }
  QD_TRY(qd_exec_alloc_(e, &e->nested_map, 256 * sizeof(float), "the NF4 nested code map"));
  QD_CU_TRY(e->cu->cuMemcpyHtoD(e->nested_map, qd_dynamic_map_signed(), 256 * sizeof(float)));
  return QD_OK;
}

/* Builds program p's launch list: the step's nodes (neither pattern members nor hoisted), or the conditioning
 * program's (hoisted, not members). */
static qd_status_t qd_exec_build_launches_(qd_cuda_executor_t* e, qd_exec_program_t* p, bool conditioning) {
  const qd_graph_t* g = p->graph;
  e->cur = p;
  for (int32_t i = 0; i < g->node_count; i++) {
    bool hoisted = e->hoist && e->hoist->hoisted[i];
    if (p->lowering->role[i] == QD_CUDA_MEMBER || p->lowering->role[i] == QD_CUDA_ELIDED || hoisted != conditioning)
      continue;
    QD_TRY(qd_exec_node_(e, i));
  }
  return QD_OK;
}

/* Plans program p's streamed weights: a trace build of its launch list says which launches read which weight (the
 * list itself is thrown away), weight_stream.h groups them. */
static qd_status_t qd_exec_plan_stream_(qd_cuda_executor_t* e, qd_exec_program_t* p, bool conditioning) {
  int32_t n = e->weight_count;
  size_t bytes = (size_t)(n ? n : 1) * sizeof(int32_t);
  int32_t *first = NULL, *last = NULL;
  qd_status_t s = qd_malloc(e->allocator, bytes, (void**)&first);
  if (!s) s = qd_malloc(e->allocator, bytes, (void**)&last);
  if (!s) {
    for (int32_t w = 0; w < n; w++) first[w] = last[w] = -1;
    int next_slot = e->next_slot;
    e->trace_first = first;
    e->trace_last = last;
    s = qd_exec_build_launches_(e, p, conditioning);
    e->trace_first = e->trace_last = NULL;
    e->next_slot = next_slot;
    p->step_count = 0;
    p->embed_reset = false;
  }
  if (!s && !conditioning) {
    /* The step decides what stays: weights of no block, then the first blocks the keep budget holds (their copies
     * could hide under nothing at the step's start). The conditioning program streams what the step does not
     * keep. */
    char key[256];
    for (int32_t w = 0; w < n; w++) e->resident[w] = !qd_weight_block_key(e->comp->weights[w].name, key, sizeof key);
    qd_weight_stream_t* all = NULL;
    s = qd_weight_stream_plan(e->comp->weights, n, first, last, e->resident, e->options.stream_layers, e->allocator,
                              &all);
    if (!s) qd_weight_stream_keep_first(all, e->options.stream_keep_bytes, e->resident);
    qd_weight_stream_destroy(all);
  }
  if (!s)
    s = qd_weight_stream_plan(e->comp->weights, n, first, last, e->resident, e->options.stream_layers, e->allocator,
                              &p->stream);
  qd_free(e->allocator, first, bytes);
  qd_free(e->allocator, last, bytes);
  return s;
}

/* The ring of slots program p's groups pass through: the step's own; the conditioning program borrows the step's
 * when its groups fit. */
static qd_status_t qd_exec_slots_(qd_cuda_executor_t* e, qd_exec_program_t* p) {
  if (!p->stream || !p->stream->group_count) return QD_OK;
  if (p != &e->prog && p->stream->slot_bytes <= e->prog.slot_bytes) {
    p->slots = e->prog.slots;
    p->slot_bytes = e->prog.slot_bytes;
    return QD_OK;
  }
  p->slot_bytes = p->stream->slot_bytes;
  p->own_slots = true;
  return qd_exec_alloc_(e, &p->slots, (uint64_t)e->slot_count * p->slot_bytes, "the streamed weights' slots");
}

/* Arena bytes of a value in one of the two programs: the conditioning program holds what hoisted nodes make, the
 * step the rest (its hoisted values live in the conditioning blocks). Node and value indices are the same in both
 * programs, so the hoisting plan of the step applies to either graph. */
typedef struct qd_exec_sizes {
  const qd_cuda_lowering_t* lowering;
  const qd_cuda_hoist_t* hoist;
  bool conditioning;
} qd_exec_sizes_t;

static uint64_t qd_exec_value_bytes_(void* user, const qd_graph_t* g, int32_t v) {
  const qd_exec_sizes_t* z = user;
  if ((qd_cuda_hoist_made(z->hoist, g, v) != 0) != z->conditioning) return 0;
  return qd_cuda_value_bytes(z->lowering, g, v);
}

/* Decides what to hoist out of the step (options.hoist_*); a program that cannot be hoisted runs whole every step,
 * with the reason logged and kept for qd_cuda_executor_hoisting. */
static qd_status_t qd_exec_plan_hoist_(qd_cuda_executor_t* e) {
  const qd_graph_t* g = e->prog.graph;
  QD_TRY(qd_cuda_hoist_plan(g, e->prog.lowering, e->options.hoist_state_input, e->options.hoist_step_input,
                            e->allocator, &e->hoist));
  /* The conditioning is packed per step with qd_copy_rows, the kernel of slice and concat nodes. */
  for (int32_t i = 0; e->hoist->hoisted_count && i < g->node_count && e->pack_kernel < 0; i++)
    if (g->nodes[i].op == QD_OP_SLICE || g->nodes[i].op == QD_OP_CONCAT) QD_TRY(qd_exec_node_kernel_(e, i, &e->pack_kernel));
  if (e->hoist->hoisted_count && e->pack_kernel < 0)
    snprintf(e->hoist->why_not, sizeof e->hoist->why_not, "the program has no slice or concat, whose copy kernel "
             "packs the conditioning");
  else if (e->hoist->hoisted_count)
    return QD_OK;
  snprintf(e->why_not_hoisted, sizeof e->why_not_hoisted, "%s", e->hoist->why_not);
  QD_LOG_INFO("%s: the step's conditioning is not hoisted: %s", qd_plan_path(e->plan), e->why_not_hoisted);
  qd_cuda_hoist_destroy(e->hoist);
  e->hoist = NULL;
  return QD_OK;
}

/* Where uploads and streamed copies read from; a streaming executor without a pinned copy from its caller pins its
 * own, and makes the copy stream and the ring's events. */
static qd_status_t qd_exec_weight_source_(qd_cuda_executor_t* e) {
  const qd_cuda_driver_t* cu = e->cu;
  const qd_cuda_host_weights_t* host = e->options.host_weights;
  if (host && qd_cuda_host_weights_bytes(host) != e->comp->weight_bytes)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "the pinned weights given hold %llu bytes; component '%s' has "
                  "%llu", (unsigned long long)qd_cuda_host_weights_bytes(host), e->comp->name,
                  (unsigned long long)e->comp->weight_bytes);
  if (!host && e->options.stream_weights)
    QD_TRY(qd_cuda_host_weights_create(e->options.device, e->comp->weight_data, e->comp->weight_bytes, e->comp->name,
                                       e->allocator, &e->own_host));
  if (!host) host = e->own_host;
  e->weight_source = host ? qd_cuda_host_weights_data(host) : e->comp->weight_data;
  e->source_pinned = host != NULL;
  if (!e->options.stream_weights) return QD_OK;
  int k = e->options.stream_slots;
  e->slot_count = k < 2 ? 2 : k > QD_EXEC_MAX_SLOTS ? QD_EXEC_MAX_SLOTS : k;
  QD_CU_TRY(cu->cuStreamCreate(&e->copy, CU_STREAM_NON_BLOCKING));
  for (int i = 0; i < e->slot_count; i++) {
    QD_CU_TRY(cu->cuEventCreate(&e->loaded[i], CU_EVENT_DISABLE_TIMING));
    QD_CU_TRY(cu->cuEventCreate(&e->freed_main[i], CU_EVENT_DISABLE_TIMING));
    QD_CU_TRY(cu->cuEventCreate(&e->freed_side[i], CU_EVENT_DISABLE_TIMING));
  }
  return QD_OK;
}

/* The plan's TUNE section for this component, if any. Its GEMM records count only for the cuBLASLt they were
 * timed with (the library's algorithm structure is not portable across versions); its kernel records only for
 * their architecture's cubins (qd_cuda_node_kernel_tuned). */
static qd_status_t qd_exec_read_tuning_(qd_cuda_executor_t* e) {
  const qd_plan_section_t* sec = qd_plan_file_find(qd_plan_container(e->plan), QD_PLAN_KIND_TUNE, e->comp->name);
  if (!sec) return QD_OK;
  char where[192];
  snprintf(where, sizeof where, "%s: TUNE '%s'", qd_plan_path(e->plan), e->comp->name);
  QD_TRY(qd_tuning_parse((const char*)sec->data, sec->size, where, e->allocator, &e->records));
  const qd_tuning_t* t = e->records;
  e->tuned_gemms = t->gemm_count > 0 && (size_t)t->cublaslt == e->lt->version;
  if (t->gemm_count && !e->tuned_gemms) {
    QD_LOG_WARN("%s: its GEMM algorithms were tuned with cuBLASLt %d and this is %zu; using the heuristic's "
                "choices (re-tune with qdc compile --autotune to get them back)", where, (int)t->cublaslt,
                e->lt->version);
    e->tuning_warned = true;
  }
  if (t->kernel_count && strcmp(t->arch, e->arch) != 0)
    QD_LOG_INFO("%s: kernels tuned on %s; this GPU is %s and runs the default variants", where, t->arch,
                e->arch);
  return QD_OK;
}

static qd_status_t qd_exec_create_(qd_cuda_executor_t* e, int32_t component, int32_t resolution) {
  QD_TRY(qd_cuda_driver_load(&e->cu));
  QD_TRY(qd_cublaslt_load(&e->lt));
  const qd_cuda_driver_t* cu = e->cu;
  QD_CU_TRY(cu->cuDeviceGet(&e->device, e->options.device));
  int major, minor;
  QD_CU_TRY(cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, e->device));
  QD_CU_TRY(cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, e->device));
  e->cc = major * 10 + minor;
  if (e->cc < 80)
    return QD_ERR(UNSUPPORTED, INVALID_ARGUMENT, "the GPU is sm_%d; qd's kernels need sm_80 or newer (bf16 tensor cores)",
                  e->cc);
  snprintf(e->arch, sizeof e->arch, "sm_%d", e->cc);
  /* Before any allocation: a plan without kernels for this GPU fails here, not after uploading its weights. */
  QD_TRY(qd_exec_kernel_source_(e));
  if (!e->options.ignore_tuning) QD_TRY(qd_exec_read_tuning_(e));
  QD_CU_TRY(cu->cuDevicePrimaryCtxRetain(&e->context, e->device));
  QD_CU_TRY(cu->cuCtxSetCurrent(e->context));
  size_t free_b, total_b;
  QD_CU_TRY(cu->cuMemGetInfo(&free_b, &total_b));
  e->mem_before = total_b - free_b;
  QD_CU_TRY(cu->cuStreamCreate(&e->stream, CU_STREAM_NON_BLOCKING));
  QD_CU_TRY(cu->cuStreamCreate(&e->side, CU_STREAM_NON_BLOCKING));
  for (int k = 0; k < 2; k++) {
    QD_CU_TRY(cu->cuEventCreate(&e->dq_done[k], CU_EVENT_DISABLE_TIMING));
    QD_CU_TRY(cu->cuEventCreate(&e->gemm_done[k], CU_EVENT_DISABLE_TIMING));
  }
  QD_CU_TRY(cu->cuEventCreate(&e->fork, CU_EVENT_DISABLE_TIMING));
  QD_CU_TRY(cu->cuEventCreate(&e->join, CU_EVENT_DISABLE_TIMING));
  QD_TRY(qd_exec_weight_source_(e));
  QD_CUBLASLT_TRY(e->lt->cublasLtCreate(&e->lt_handle));

  /* The program, its lowering and its memory. The executor plans its own arena with the same lowering the
   * compiler used, so the layout is right even for a plan made by another qd. */
  double t_program = qd_now_seconds();
  QD_TRY(qd_plan_instantiate(e->plan, component, resolution, e->allocator, &e->prog.graph));
  const qd_graph_t* g = e->prog.graph;
  QD_TRY(qd_cuda_lowering_create(g, qd_cuda_executor_lowering_flags(&e->options), e->allocator, &e->prog.lowering));
  e->cur = &e->prog;
  e->selected_step = -1;
  e->pack_kernel = -1;
  if (e->options.hoist_state_input && e->options.hoist_step_input) QD_TRY(qd_exec_plan_hoist_(e));
  qd_exec_sizes_t sizes = {e->prog.lowering, e->hoist, false};
  qd_memory_lifetimes_t lifetimes = {e->prog.lowering->last_use, e->prog.lowering->first_def};
  QD_TRY(qd_memory_plan_create(g, qd_exec_value_bytes_, &sizes, &lifetimes, e->allocator, &e->prog.memory));
  e->prog.arena_bytes = e->prog.memory->arena_bytes;
  e->create_times.program = qd_now_seconds() - t_program;
  double t_memory = qd_now_seconds();
  if (e->hoist) QD_TRY(qd_exec_alloc_(e, &e->cond_current, e->hoist->block_bytes, "the step's conditioning"));
  QD_TRY(qd_exec_alloc_(e, &e->prog.arena, e->prog.arena_bytes, "activations"));
  QD_TRY(qd_exec_alloc_(e, &e->workspace, QD_EXEC_WORKSPACE, "the cuBLASLt workspace"));
  /* Sizes from device_memory.h, which qdrun --check uses too. */
  qd_cuda_memory_needs_t needs;
  qd_cuda_memory_needs(e->comp, g, e->prog.lowering, e->prog.arena_bytes, &needs);
  /* Inputs, each in its storage type, in one allocation. */
  QD_TRY(qd_calloc(e->allocator, (size_t)(g->input_count ? g->input_count : 1), sizeof(CUdeviceptr),
                   (void**)&e->prog.input_ptr));
  e->prog.inputs_bytes = needs.inputs;
  QD_TRY(qd_exec_alloc_(e, &e->prog.inputs_base, needs.inputs, "inputs"));
  uint64_t off = 0;
  for (int32_t i = 0; i < g->input_count; i++) {
    e->prog.input_ptr[i] = e->prog.inputs_base + off;
    off += qd_cuda_input_bytes(g, e->prog.lowering, i);
  }
  /* Two dequantization slots, each as large as the largest NF4 weight in bf16. */
  uint64_t slot = needs.scratch_slot;
  e->scratch_bytes = needs.scratch;
  if (slot) {
    QD_TRY(qd_exec_alloc_(e, &e->scratch[0], 2 * slot, "NF4 dequantization scratch"));
    e->scratch[1] = e->scratch[0] + slot;
  }
  e->create_times.memory = qd_now_seconds() - t_memory;
  double t_weights = qd_now_seconds();
  QD_TRY(qd_exec_weight_copies_(e));
  if (e->options.stream_weights) {
    QD_TRY(qd_calloc(e->allocator, (size_t)(e->weight_count ? e->weight_count : 1), sizeof *e->resident,
                     (void**)&e->resident));
    QD_TRY(qd_calloc(e->allocator, (size_t)(e->weight_count ? e->weight_count : 1), sizeof *e->resident_shift,
                     (void**)&e->resident_shift));
    QD_TRY(qd_exec_plan_stream_(e, &e->prog, false));
    QD_TRY(qd_exec_slots_(e, &e->prog));
  }
  QD_TRY(qd_exec_upload_weights_(e));
  e->create_times.weights = qd_now_seconds() - t_weights;
  /* The launch list. */
  double t_launches = qd_now_seconds();
  QD_TRY(qd_exec_build_launches_(e, &e->prog, false));
  e->create_times.launches = qd_now_seconds() - t_launches;
  e->create_times.kernels = e->kernel_count;
  if (e->gn_workspace_bytes) {
    QD_TRY(qd_exec_alloc_(e, &e->gn_workspace, e->gn_workspace_bytes, "group norm statistics"));
    for (int32_t i = 0; i < e->prog.step_count; i++)
      if (e->prog.steps[i].kind == QD_STEP_GROUP_NORM) e->prog.steps[i].u.gnorm.workspace = e->gn_workspace;
  }
  if (e->options.autotune) {
    /* Time cuBLASLt's candidates for each GEMM shape on the real buffers of its first use. */
    for (int32_t gi = 0; gi < e->gemm_count; gi++) {
      float def = 0, best = 0;
      bool ran;
      QD_TRY(qd_exec_gemm_tune_(e, gi, e->options.autotune_candidates, &def, &best, &ran));
      if (!ran) continue;
      /* Weight the shape by how often the step uses it. */
      int uses = 0;
      for (int32_t i = 0; i < e->prog.step_count; i++) uses += e->prog.steps[i].kind == QD_STEP_GEMM && e->prog.steps[i].gemm == gi;
      e->tuning.shapes++;
      e->tuning.changed += best < def;
      e->tuning.default_ms += def * uses;
      e->tuning.tuned_ms += best * uses;
    }
  }
  QD_CU_TRY(cu->cuMemGetInfo(&free_b, &total_b));
  e->mem_after = total_b - free_b;
  return QD_OK;
}

qd_status_t qd_cuda_executor_create(const qd_plan_t* plan, int32_t component, int32_t resolution,
                                    const qd_cuda_executor_options_t* options, qd_allocator_t allocator,
                                    qd_cuda_executor_t** out) {
  *out = NULL;
  qd_cuda_executor_t* e;
  QD_TRY(qd_calloc(allocator, 1, sizeof *e, (void**)&e));
  e->allocator = allocator;
  e->plan = plan;
  e->comp = qd_plan_component(plan, component);
  if (options)
    e->options = *options;
  else
    qd_cuda_executor_options_default(&e->options);
  e->component = component;
  e->resolution = resolution;
  double t0 = qd_now_seconds();
  qd_status_t s = qd_exec_create_(e, component, resolution);
  if (s) {
    qd_cuda_executor_destroy(e);
    return s;
  }
  qd_cuda_executor_times_t* t = &e->create_times;
  t->total = qd_now_seconds() - t0;
  QD_LOG_DEBUG("%s: '%s' prepared on the GPU in %.1f ms: launches %.1f (%d kernel modules %.1f, GEMMs %.1f), "
               "weights %.1f, memory %.1f, program %.1f", qd_plan_path(plan), e->comp->name, t->total * 1e3,
               t->launches * 1e3, t->kernels, t->modules * 1e3, t->gemms * 1e3, t->weights * 1e3, t->memory * 1e3,
               t->program * 1e3);
  *out = e;
  return QD_OK;
}

/* --- hoisted conditioning (runtime/cuda/hoist.h) ---------------------------------------------------------------- */

void qd_cuda_executor_hoisting(const qd_cuda_executor_t* e, qd_cuda_hoisting_t* out) {
  memset(out, 0, sizeof *out);
  out->why_not = e->why_not_hoisted;
  if (!e->hoist) return;
  out->nodes = e->hoist->hoisted_count;
  out->boundary_values = e->hoist->boundary_count;
  out->block_bytes = e->hoist->block_bytes;
  out->steps = e->cond_steps;
  out->device_bytes = e->hoist->block_bytes + e->cond.arena_bytes + e->cond.inputs_bytes +
                      (uint64_t)e->cond_steps * e->hoist->block_bytes;
}

/* The conditioning program is the step's program at batch steps * batch: the same nodes, inputs and values in the
 * same order. Every value a hoisted node makes and every input it reads must be the step's with the batch axis
 * scaled by `steps` (what makes running the nodes once for all steps the same as once per step), or, for an input,
 * unchanged. */
static qd_status_t qd_exec_check_conditioning_(const qd_cuda_executor_t* e, const qd_graph_t* c, int32_t steps) {
  const qd_graph_t* g = e->prog.graph;
  const qd_cuda_hoist_t* h = e->hoist;
  if (c->node_count != g->node_count || c->value_count != g->value_count || c->input_count != g->input_count)
    return QD_ERR(INTERNAL, INTERNAL, "graph '%s' at batch %lld has %d nodes and %d values; at batch %lld %d and %d",
                  g->name, (long long)h->batch, g->node_count, g->value_count, (long long)(steps * h->batch),
                  c->node_count, c->value_count);
  for (int32_t i = 0; i < g->node_count; i++) {
    const qd_node_t *a = &g->nodes[i], *b = &c->nodes[i];
    bool same = a->op == b->op && a->output == b->output && a->input_count == b->input_count;
    for (int32_t k = 0; same && k < a->input_count; k++) same = a->inputs[k] == b->inputs[k];
    if (!same) return QD_ERR(INTERNAL, INTERNAL, "%s: node %d differs between batch sizes", a->origin, i);
  }
  for (int32_t v = 0; v < g->value_count; v++) {
    bool made = qd_cuda_hoist_made(h, g, v), input = g->values[v].producer < 0;
    if (!made && !input) continue;
    const qd_shape_t *a = &g->values[v].shape, *b = &c->values[v].shape;
    bool scaled = a->rank >= 1 && a->rank == b->rank && a->dims[0] == h->batch && b->dims[0] == steps * h->batch;
    for (int32_t d = 1; scaled && d < a->rank; d++) scaled = a->dims[d] == b->dims[d];
    if (!scaled && !(input && qd_shape_equal(a, b))) {
      char sa[96], sb[96];
      return QD_ERR(UNSUPPORTED, INTERNAL, "graph '%s': '%s' is %s at batch %lld but %s at batch %lld; the hoisted "
                    "conditioning needs a leading batch axis", g->name, g->values[v].name,
                    qd_shape_format(a, sa, sizeof sa), (long long)h->batch, qd_shape_format(b, sb, sizeof sb),
                    (long long)(steps * h->batch));
    }
  }
  return QD_OK;
}

/* Builds the conditioning program for `steps` steps: its graph, lowering, arena, inputs, launch list and the
 * packing of each step's boundary values into its block of cond_all. */
static qd_status_t qd_exec_build_conditioning_(qd_cuda_executor_t* e, int32_t steps) {
  const qd_cuda_hoist_t* h = e->hoist;
  qd_exec_program_t* c = &e->cond;
  QD_TRY(qd_plan_instantiate_batch(e->plan, e->component, e->resolution, steps * h->batch, e->allocator, &c->graph));
  const qd_graph_t* g = c->graph;
  QD_TRY(qd_exec_check_conditioning_(e, g, steps));
  QD_TRY(qd_cuda_lowering_create(g, qd_cuda_executor_lowering_flags(&e->options), e->allocator, &c->lowering));
  /* Boundary values live until the packing at the end. */
  int32_t* last_use;
  QD_TRY(qd_malloc(e->allocator, (size_t)g->value_count * sizeof *last_use, (void**)&last_use));
  memcpy(last_use, c->lowering->last_use, (size_t)g->value_count * sizeof *last_use);
  for (int32_t v = 0; v < g->value_count; v++)
    if (h->block_offset[v] >= 0) last_use[v] = last_use[qd_cuda_view_root(c->lowering, v, NULL)] = g->node_count;
  qd_exec_sizes_t sizes = {c->lowering, h, true};
  qd_memory_lifetimes_t lifetimes = {last_use, c->lowering->first_def};
  qd_status_t s = qd_memory_plan_create(g, qd_exec_value_bytes_, &sizes, &lifetimes, e->allocator, &c->memory);
  qd_free(e->allocator, last_use, (size_t)g->value_count * sizeof *last_use);
  QD_TRY(s);
  c->arena_bytes = c->memory->arena_bytes;
  QD_TRY(qd_exec_alloc_(e, &c->arena, c->arena_bytes, "the conditioning's activations"));
  /* Inputs the hoisted nodes read, at the conditioning's sizes. */
  QD_TRY(qd_calloc(e->allocator, (size_t)(g->input_count ? g->input_count : 1), sizeof(CUdeviceptr),
                   (void**)&c->input_ptr));
  for (int32_t pass = 0; pass < 2; pass++) {
    uint64_t offset = 0;
    for (int32_t i = 0; i < g->input_count; i++) {
      if (!h->input_read[i]) continue;
      if (pass) c->input_ptr[i] = c->inputs_base + offset;
      offset += qd_cuda_input_bytes(g, c->lowering, i);
    }
    c->inputs_bytes = offset;
    if (!pass) QD_TRY(qd_exec_alloc_(e, &c->inputs_base, c->inputs_bytes, "the conditioning's inputs"));
  }
  QD_TRY(qd_exec_alloc_(e, &e->cond_all, (uint64_t)steps * h->block_bytes, "the conditioning of every step"));
  /* The launch list: the hoisted nodes, then the packing, eight boundary values per launch. */
  e->cond_gemm_first = e->gemm_count;
  e->cond_steps = steps;
  if (e->resident) {
    QD_TRY(qd_exec_plan_stream_(e, c, true));
    QD_TRY(qd_exec_slots_(e, c));
  }
  QD_TRY(qd_exec_build_launches_(e, c, true));
  qd_step_t* pack = NULL;
  for (int32_t i = 0; i < g->node_count; i++) {
    int32_t v = g->nodes[i].output;
    if (h->block_offset[v] < 0) continue;
    if (!pack || pack->u.pack.count == 8) {
      QD_TRY(qd_exec_push_(e, QD_STEP_PACK, i, QD_CLASS_OTHER, &pack));
      pack->kernel = e->pack_kernel;
      pack->u.pack.y = e->cond_all;
      pack->u.pack.y_row_bytes = (int64_t)h->block_bytes;
      pack->u.pack.rows = steps;
    }
    int32_t k = pack->u.pack.count++;
    pack->u.pack.in[k] = qd_exec_ptr_(e, v);
    pack->u.pack.row_bytes[k] = (int64_t)(qd_shape_numel(&e->prog.graph->values[v].shape) *
                                          (int64_t)qd_dtype_size(c->lowering->storage[v]));
    pack->u.pack.cols[k] = h->block_offset[v];
  }
  e->cur = &e->prog;
  return QD_OK;
}

qd_status_t qd_cuda_executor_prepare_steps(qd_cuda_executor_t* e, int32_t steps, const float* step_values) {
  const qd_cuda_driver_t* cu = e->cu;
  if (!e->hoist)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s': the step's conditioning is not hoisted (%s); set "
                  "the step input with qd_cuda_executor_set_input instead", e->prog.graph->name,
                  e->why_not_hoisted[0] ? e->why_not_hoisted : "not asked for");
  if (steps < 1 || steps > QD_CUDA_MAX_STEPS || !step_values)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%d steps; expected 1 to %d with their step input values", steps,
                  QD_CUDA_MAX_STEPS);
  QD_CU_TRY(cu->cuCtxSetCurrent(e->context));
  e->selected_step = -1;
  if (steps != e->cond_steps) {
    qd_exec_cond_free_(e);
    qd_status_t s = qd_exec_build_conditioning_(e, steps);
    e->cur = &e->prog;
    if (s) {
      qd_exec_cond_free_(e);
      return qd_status_annotate(s, "building the conditioning of %d steps", steps);
    }
  }
  const qd_exec_program_t* c = &e->cond;
  const qd_graph_t* g = c->graph;
  const qd_cuda_hoist_t* h = e->hoist;
  /* The step input, one value per step and image; the other inputs repeated for each step. */
  int64_t n = (int64_t)steps * h->batch;
  qd_tensor_t t = {.dtype = QD_DTYPE_F32, .shape = g->values[g->inputs[h->step_input]].shape,
                   .data = (void*)step_values, .bytes = (size_t)n * sizeof(float)};
  QD_TRY(qd_exec_upload_(e, c->input_ptr[h->step_input], c->lowering->storage[g->inputs[h->step_input]], &t));
  for (int32_t i = 0; i < g->input_count; i++) {
    if (!c->input_ptr[i] || i == h->step_input) continue;
    const qd_shape_t* base = &e->prog.graph->values[e->prog.graph->inputs[i]].shape;
    uint64_t bytes = (uint64_t)qd_shape_numel(base) * qd_dtype_size(c->lowering->storage[g->inputs[i]]);
    int32_t copies = qd_shape_equal(base, &g->values[g->inputs[i]].shape) ? 1 : steps;
    for (int32_t k = 0; k < copies; k++)
      QD_CU_TRY(cu->cuMemcpyDtoDAsync(c->input_ptr[i] + (uint64_t)k * bytes, e->prog.input_ptr[i], (size_t)bytes,
                                      e->stream));
  }
  QD_TRY(qd_exec_enqueue_(e, c, e->options.overlap));
  QD_CU_TRY(cu->cuStreamSynchronize(e->stream));
  return QD_OK;
}

qd_status_t qd_cuda_executor_select_step(qd_cuda_executor_t* e, int32_t step) {
  if (!e->hoist || !e->cond_steps)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "graph '%s': no prepared steps to select from%s",
                  e->prog.graph->name, e->hoist ? "" : " (the step's conditioning is not hoisted)");
  if (step < 0 || step >= e->cond_steps)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "step %d of %d prepared", step, e->cond_steps);
  e->selected_step = step;
  return QD_OK;
}
