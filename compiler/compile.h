/* qdc compile: from a checkpoint and a graph description to a .qplan.
 *
 * Passes, one file each:
 *   component.c   load the description, find the configuration and weight layout the checkpoint fits, bind every
 *                 weight, instantiate per resolution, plan activation memory;
 *   quantize.c    choose each weight's storage (NF4 for linear matrices of quantized components, bf16 otherwise)
 *                 and produce its bytes;
 *   plan_emit.c   write META, PROG, WIDX and WGHT sections through the plan writer (a temporary file renamed into
 *                 place, so a failed or interrupted compile leaves no plan).
 */
#ifndef QDC_COMPILE_H
#define QDC_COMPILE_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler/memory_plan.h"
#include "ir/graph_desc.h"
#include "ir/weight_map.h"
#include "qd/checkpoint.h"
#include "runtime/plan_content.h"

enum { QDC_MAX_RESOLUTIONS = 16, QDC_MAX_KEEP = 32 };

/* NF4 for the linear weights of quantized components and bf16 for the rest; bf16 everywhere; or fp32 everywhere
 * (for accuracy work: the CPU executor's exact reference from a plan). */
typedef enum qdc_quant { QDC_QUANT_NF4 = 0, QDC_QUANT_NONE, QDC_QUANT_F32 } qdc_quant_t;

typedef struct qdc_resolution {
  int64_t width, height, batch;
} qdc_resolution_t;

typedef struct qdc_compile_options {
  const char* input;         /* checkpoint: file, index or directory */
  const char* output;        /* .qplan path */
  const char* graph;         /* graph description; NULL: the FLUX transformer from the models directory */
  const char* config;        /* NULL: the first configuration whose weights the checkpoint holds */
  const char* layout;        /* NULL: detected */
  const char* component;     /* the component's name in the plan (default "transformer") */
  qdc_quant_t quant;
  bool quantize_component;   /* whether --quantize lists this component */
  int32_t blocksize;         /* NF4 block size (64) */
  bool double_quant;
  const char* keep[QDC_MAX_KEEP]; /* weight-name patterns ('*' wildcard) kept in bf16 besides the graph's own */
  int32_t keep_count;
  qdc_resolution_t resolutions[QDC_MAX_RESOLUTIONS];
  int32_t resolution_count;
  int threads;
  const char* command_line;  /* recorded in the plan's metadata */
  bool synthetic;            /* no checkpoint: seeded random weights with the graph's names and shapes (qdc synth) */
  uint64_t seed;
  int32_t targets[4];        /* GPU architectures to build kernels for, as compute capabilities (sm_90: 90), from
                              * --target (compiler/kernel_build.h); none: the plan carries no kernels */
  int32_t target_count;
  bool targets_given;        /* --target was given: a missing NVRTC is an error, not a warning */
} qdc_compile_options_t;

/* compile_options.c: the value-taking options qdc compile and qdc quantize share (-o, --graph, --config, --layout,
 * --blocksize, --keep, --threads). BAD sets *out_message to a phrase the caller completes with the value. */
typedef enum qdc_option_result { QDC_OPTION_UNKNOWN = 0, QDC_OPTION_TAKEN, QDC_OPTION_BAD } qdc_option_result_t;
qdc_option_result_t qdc_compile_option(const char* arg, const char* value, qdc_compile_options_t* o,
                                       const char** out_message);

/* One component of a plan: where its weights come from and how to compile them. */
typedef struct qdc_component_spec {
  const char* name;          /* "transformer", "text_encoder", "text_encoder_2", "vae" */
  const char* input;         /* checkpoint: file, index or directory (NULL when synthetic) */
  const char* graph;         /* graph description */
  const char* config;        /* NULL: the first configuration the checkpoint fits */
  const char* layout;        /* NULL: detected */
  bool quantize;             /* NF4 for its linear matrices (when the plan quantizes at all) */
  qd_size_binding_t overrides[4]; /* sizes set from another component (T5's text length from the transformer's) */
  int32_t override_count;
} qdc_component_spec_t;

typedef struct qdc_resolution_result {
  qdc_resolution_t res;
  qd_size_binding_t bindings[QD_PLAN_MAX_BINDINGS];
  int32_t binding_count;
  qd_graph_t* graph;
  qd_memory_plan_t* memory;
  uint64_t digest;
} qdc_resolution_result_t;

/* One component being compiled. */
typedef struct qdc_component {
  qd_allocator_t allocator;
  const char* name;
  qdc_component_spec_t spec;
  qd_graph_desc_t* desc;
  char* desc_text;           /* the description file, verbatim, for the PROG section */
  size_t desc_size;
  const char* config;        /* points into desc */
  const char* layout;        /* the checkpoint's weight layout, or "synthetic" */
  uint64_t seed;             /* synthetic weights */
  qd_checkpoint_t* ckpt;
  qd_weight_binding_t* binding; /* against results[0].graph (weights do not depend on the resolution) */
  qdc_resolution_result_t results[QDC_MAX_RESOLUTIONS];
  int32_t result_count;
  qd_plan_weight_t* weights;   /* storage decided by quantize.c, offsets by plan_emit.c */
  /* Report */
  uint64_t params_total, params_quantized;
  uint64_t weights_copied; /* NF4 weights taken as they are from a bitsandbytes checkpoint */
  uint64_t bytes_source, bytes_stored;
  double weight_error_num, weight_error_den; /* sum ||w - q(w)||^2 and sum ||w||^2 over quantized weights */
} qdc_component_t;

/* component.c: the single component the options describe (input, graph, config, layout, component). */
qd_status_t qdc_component_create(const qdc_compile_options_t* o, qd_allocator_t allocator, qdc_component_t** out);
/* One component of a pipeline. */
qd_status_t qdc_component_create_spec(const qdc_compile_options_t* o, const qdc_component_spec_t* spec,
                                      qd_allocator_t allocator, qdc_component_t** out);
/* ||w - q(w)|| / ||w|| over the weights quantized so far (0 when none were). */
double qdc_component_weight_error(const qdc_component_t* c);
/* The value of a bound size in the component's first resolution (e.g. the transformer's txt_tokens); -1 if none. */
int64_t qdc_component_binding(const qdc_component_t* c, const char* name);
void qdc_component_destroy(qdc_component_t* c);

/* quantize.c: decides every weight's format (fills c->weights except offsets): NF4 for linear matrices of a
 * quantized component, except what the graph keeps (its "quantization.keep") and --keep patterns. */
qd_status_t qdc_choose_formats(const qdc_compile_options_t* o, qdc_component_t* c);
/* Produces weight i's bytes into the three buffers (sized by qd_plan_weight_expected_sizes); `scratch` holds
 * numel floats. Accumulates error statistics into the component. */
qd_status_t qdc_pack_weight(qdc_component_t* c, int32_t i, float* scratch, uint8_t* data, uint8_t* absmax,
                            uint8_t* nested, void* pool);
/* NF4 of x (layout->count floats) into bitsandbytes' tensors: packed codes, absmax (fp32 blocks, or with double
 * quantization one code byte a block plus `nested` fp32 scales and *out_offset), spread over the pool's threads.
 * Adds sum (x - q(x))^2 and sum x^2 to the error accumulators. */
qd_status_t qdc_quantize_nf4(qd_allocator_t allocator, const qd_nf4_layout_t* layout, const float* x, uint8_t* packed,
                             uint8_t* absmax, float* nested, float* out_offset, double* error_num, double* error_den,
                             void* pool);
/* synth.c: seeded random values for a weight (uniform, std 1/sqrt(fan-in) for matrices, about 1 for norm scales,
 * small for biases); the same seed gives the same values on any machine and thread count. */
void qdc_synth_fill(const qd_weight_t* weight, uint64_t seed, float* x, void* pool);

/* Whether name matches a pattern where '*' matches any run of characters. */
bool qdc_pattern_match(const char* pattern, const char* name);

/* Things a pipeline plan carries besides components. */
enum { QDC_MAX_COMPONENTS = 8, QDC_MAX_TOKENIZERS = 4 };
typedef struct qdc_tokenizer_blob {
  const char* name;   /* the TOKN section's name: "tokenizer" (CLIP), "tokenizer_2" (T5) */
  const char* source; /* where it came from */
  const uint8_t* data;
  size_t size;
} qdc_tokenizer_blob_t;

typedef struct qdc_plan_extras {
  const char* pipeline;        /* "FluxPipeline", or NULL for a single component */
  const char* scheduler_json;  /* scheduler/scheduler_config.json, verbatim (NULL: none) */
  qdc_tokenizer_blob_t tokenizers[QDC_MAX_TOKENIZERS];
  int32_t tokenizer_count;
} qdc_plan_extras_t;

/* plan_emit.c */
qd_status_t qdc_emit_plan(const qdc_compile_options_t* o, qdc_component_t* c, void* pool);
qd_status_t qdc_emit_plan_multi(const qdc_compile_options_t* o, qdc_component_t* const* components, int32_t count,
                                const qdc_plan_extras_t* extras, void* pool);

/* The default models directory: $QD_MODELS_DIR, the installed share/qd/models, or the source tree's models/. */
const char* qdc_models_dir(void);

#endif
