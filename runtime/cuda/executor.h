/* The CUDA executor: runs one component of a plan, for one of its compiled resolutions, on a GPU.
 *
 * Creating an executor does all the work that should not happen per step: it instantiates and lowers the
 * program (runtime/cuda/lowering.h), plans and allocates one activation arena, uploads every weight in its stored
 * format (NF4 stays NF4 on the device), prepares one cuBLASLt descriptor per GEMM shape, loads or compiles the
 * kernels, and turns the program into a fixed list of launches with every pointer resolved. A step is then that
 * list, captured once as a CUDA graph and replayed: no allocation and no host work per step.
 *
 * With options.hoist_*, the conditioning (FLUX: the embedders and the adaLN modulation linears) is not part of the
 * step: qd_cuda_executor_prepare_steps computes it once for every step of an image, and each run copies the selected
 * step's share into place before replaying the step (runtime/cuda/hoist.h).
 *
 * NF4 linear layers dequantize their weight into one of two scratch buffers just before the GEMM; with
 * `overlap`, dequantization runs on a second stream, one layer ahead, so it hides under the previous GEMM. The
 * whole model is never dequantized at once.
 *
 * Ownership: the executor borrows the plan (which must outlive it) and owns every device allocation, module and
 * handle it makes; destroy releases them. One executor is driven by one thread.
 */
#ifndef QD_RUNTIME_CUDA_EXECUTOR_H
#define QD_RUNTIME_CUDA_EXECUTOR_H

#include "ir/graph.h"
#include "qd/plan.h"
#include "qd/progress.h"
#include "runtime/cpu/executor.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda/tuning.h"

typedef struct qd_cuda_executor qd_cuda_executor_t;
typedef struct qd_cuda_host_weights qd_cuda_host_weights_t; /* runtime/cuda/host_weights.h */
typedef struct qd_kernel_module_cache qd_kernel_module_cache_t; /* runtime/cuda/module_cache.h */
typedef struct qd_packed_weights qd_packed_weights_t;           /* runtime/cuda/packed_weights.h */

typedef struct qd_cuda_executor_options {
  int device;          /* ordinal */
  bool use_graph;      /* capture the step as a CUDA graph and replay it (default on) */
  bool overlap;        /* dequantize NF4 weights on a second stream, one layer ahead */
  bool gelu_epilogue;  /* fuse linear + gelu_tanh into cuBLASLt's GELU_BIAS epilogue */
  bool batch_linears;  /* run consecutive linears of one input (q, k, v) as one batched GEMM (default off) */
  bool concat_parts;   /* a linear over a concatenation runs one GEMM per part, without the copy (default on) */
  bool concat_in_place; /* concatenations written in place by their parts' producers (default on) */
  bool autotune;       /* time cuBLASLt's candidate algorithms per GEMM shape at creation */
  bool ignore_tuning;  /* leave the plan's autotuning records (TUNE) unused: the heuristic's GEMM algorithms and
                          the default kernel variants, as qdc measures the untuned step */
  int autotune_candidates;
  /* Hoisting (runtime/cuda/hoist.h): the graph inputs that are the step's state (FLUX: "hidden_states") and its
   * per-step input known ahead ("timestep"). Both set: what depends on neither the state nor anything but the step
   * input's values is computed once for all steps (qd_cuda_executor_prepare_steps). NULL: every run computes the
   * whole program. */
  const char* hoist_state_input;
  const char* hoist_step_input;
  /* The component's weight section in pinned host memory (borrowed; must outlive the executor): uploads run at
   * the bus's speed. NULL: uploads read the mapped plan. */
  const qd_cuda_host_weights_t* host_weights;
  /* Streamed weights (runtime/cuda/weight_stream.h): the weights of numbered blocks stay in host memory and each
   * run copies them in, block by block, through stream_slots device buffers (2..8), on a copy stream that runs
   * ahead of the computation. The first blocks that fit stream_keep_bytes stay on the device. Without
   * host_weights the executor pins its own copy of the section. */
  bool stream_weights;
  int stream_slots;
  uint64_t stream_keep_bytes;
  bool stream_layers; /* stream layer by layer (slots a layer large: the sequential schedule) instead of by block */
  /* Kernel modules shared with other executors (borrowed; must outlive the executor; runtime/cuda/module_cache.h):
   * the modules this executor launches are loaded there once and not unloaded with it. NULL: its own. */
  qd_kernel_module_cache_t* module_cache;
  /* Repacked weights kept on the host for the executors of the same plan that follow (borrowed; must outlive the
   * executor; runtime/cuda/packed_weights.h): convolution filters are packed once, not by every executor. NULL:
   * this executor packs its own. */
  qd_packed_weights_t* packed_weights;
} qd_cuda_executor_options_t;

void qd_cuda_executor_options_default(qd_cuda_executor_options_t* options);
/* The lowering (runtime/cuda/lowering.h) the options ask for. */
unsigned qd_cuda_executor_lowering_flags(const qd_cuda_executor_options_t* options);

qd_status_t qd_cuda_executor_create(const qd_plan_t* plan, int32_t component, int32_t resolution,
                                    const qd_cuda_executor_options_t* options, qd_allocator_t allocator,
                                    qd_cuda_executor_t** out_executor);
void qd_cuda_executor_destroy(qd_cuda_executor_t* executor);

const qd_graph_t* qd_cuda_executor_graph(const qd_cuda_executor_t* executor);
/* Where its kernels came from: "cubin" or "ptx" (the plan's KERN section), or "nvrtc" (compiled at creation). */
const char* qd_cuda_executor_kernel_source(const qd_cuda_executor_t* executor);

/* Copies a host tensor (F32 for floating inputs, converted to the stored type) to graph input `index`. */
qd_status_t qd_cuda_executor_set_input(qd_cuda_executor_t* executor, int32_t index, const qd_tensor_t* host);
/* Enqueues one run of the program (graph replay after the first run) and waits for it. A hoisted step runs the
 * selected step (below). */
qd_status_t qd_cuda_executor_run(qd_cuda_executor_t* executor);

/* Hoisted conditioning. prepare_steps computes it for `steps` steps at once (1..QD_CUDA_MAX_STEPS): the step input
 * takes step_values[s * batch + b] (fp32) in step s, and every other input it reads (FLUX: pooled text, guidance)
 * must be set before and is the same in every step. The first call, and one with another step count, builds the
 * conditioning program and allocates its memory (never during a step). select_step picks the prepared step the
 * following runs compute; the state input is set per run as usual. Errors: INVALID_ARGUMENT when the step is not
 * hoisted (qd_cuda_executor_hoisting says why) or for a step out of range; the driver's. */
enum { QD_CUDA_MAX_STEPS = 1000 };
qd_status_t qd_cuda_executor_prepare_steps(qd_cuda_executor_t* executor, int32_t steps, const float* step_values);
qd_status_t qd_cuda_executor_select_step(qd_cuda_executor_t* executor, int32_t step);

typedef struct qd_cuda_hoisting {
  int32_t nodes;           /* hoisted nodes; 0 when nothing is hoisted */
  int32_t boundary_values; /* values the step reads from the conditioning */
  uint64_t block_bytes;    /* the conditioning of one step */
  int32_t steps;           /* prepared for; 0 before qd_cuda_executor_prepare_steps */
  uint64_t device_bytes;   /* the conditioning's device memory: program, inputs, every step's block */
  const char* why_not;     /* why nothing is hoisted ("" when hoisted or not asked for); owned by the executor */
} qd_cuda_hoisting_t;
void qd_cuda_executor_hoisting(const qd_cuda_executor_t* executor, qd_cuda_hoisting_t* out_hoisting);
/* Copies graph output `index` to a new host tensor (F32), allocated with the executor's allocator. */
qd_status_t qd_cuda_executor_get_output(qd_cuda_executor_t* executor, int32_t index, qd_tensor_t* out_host);

/* Timing: `iterations` runs after warm-up, each timed with CUDA events; the median in milliseconds. With
 * per_class, also runs the launch list eagerly once more with an event around every launch and reports the sum
 * per op class (linear, dequantize, attention, norm, elementwise, other) and per GEMM shape. */
enum { QD_CUDA_TIMING_MAX_GEMMS = 64 };
typedef struct qd_cuda_gemm_timing {
  int64_t m, n, k;
  int batch; /* GEMMs per launch (batched linears) */
  int uses;
  double ms; /* all uses together */
} qd_cuda_gemm_timing_t;
typedef struct qd_cuda_timing {
  double median_ms, min_ms;
  double class_ms[6];
  int launches;
  /* per_class also times each GEMM shape (the step's), indexed by shape; uses 0 for the conditioning's */
  int gemm_count;
  qd_cuda_gemm_timing_t gemms[QD_CUDA_TIMING_MAX_GEMMS];
} qd_cuda_timing_t;
const char* qd_cuda_op_class_name(int op_class);
qd_status_t qd_cuda_executor_time(qd_cuda_executor_t* executor, int iterations, bool per_class,
                                  qd_cuda_timing_t* out_timing);
/* Autotuning (qdc compile --autotune): times, on this executor's buffers (run the step once first so that they hold
 * its values), cuBLASLt's candidate algorithms for every GEMM descriptor (the heuristic's first 8 with `max` false,
 * all it offers, up to 32, with `max`; recorded when one beats the first by 3%) and the variants of every kernel site (a template kernel's default key and
 * the launching node's shape; attention excluded): each tunable define's other values one at a time against the
 * defaults, and with `max` again from the best until nothing improves. A variant that does not compile, load or
 * launch (a launcher's requirement) is skipped. A kernel site is recorded only when a variant beats the default by
 * 2% or more; the records go into `into` (its mode, device, arch, driver and cublaslt are set here), and the tuned
 * kernels (key, configuration) into `tuned_kernels` (may be NULL) for the plan's KERN. Afterwards the executor runs
 * the tuned GEMM algorithms and the default kernels. The executor must have been made with options.ignore_tuning
 * and without hoisting or streamed weights (INVALID_ARGUMENT otherwise). Progress: one unit ("sites") per GEMM
 * descriptor and kernel site. */
qd_status_t qd_cuda_executor_autotune(qd_cuda_executor_t* executor, bool max, const qd_progress_sink_t* progress,
                                      qd_tuning_t* into, qd_cuda_kernel_list_t* tuned_kernels);

/* Benchmarks only: from the next run on, the step launches just its steps of these op classes (bit 1 << class, in
 * qd_cuda_op_class_name's numbering; 0: all, the default), in the step's own order, memory and streams (the CUDA
 * graph is captured again), so that one class can be timed under the step's conditions. Outputs are meaningless
 * while a filter is set. The hoisted conditioning is not filtered. Errors: INVALID_ARGUMENT with streamed weights
 * (a skipped launch could leave a copy waiting for its slot). */
qd_status_t qd_cuda_executor_set_class_filter(qd_cuda_executor_t* executor, unsigned class_mask);

typedef struct qd_cuda_memory {
  uint64_t weights, arena, scratch, workspace, inputs;
  uint64_t slots;           /* streamed weights: the ring's device buffers */
  uint64_t streamed;        /* streamed weights: bytes copied in per step */
  int32_t streamed_groups;  /* and in how many groups */
  uint64_t device_used_before, device_used_after; /* cuMemGetInfo around creation */
} qd_cuda_memory_t;
void qd_cuda_executor_memory(const qd_cuda_executor_t* executor, qd_cuda_memory_t* out_memory);

/* How GEMM tuning went: shapes, and the heuristic's and the best candidate's total time. */
typedef struct qd_cuda_tuning {
  int shapes;
  int changed; /* shapes where another candidate beat the heuristic's first */
  double default_ms, tuned_ms; /* per step, as the tuning timed them (single runs) */
} qd_cuda_tuning_t;
void qd_cuda_executor_tuning(const qd_cuda_executor_t* executor, qd_cuda_tuning_t* out_tuning);

/* Where the time of making an executor went, in seconds (logged at debug level too): what an offloaded pipeline
 * pays again for every component of every image. graph is the first step's CUDA graph capture and instantiation
 * (0 until then). modules and gemms are parts of launches. */
typedef struct qd_cuda_executor_times {
  double total;    /* qd_cuda_executor_create */
  double program;  /* instantiating, lowering, hoisting and planning the program's memory */
  double memory;   /* device allocations */
  double weights;  /* uploads and the copies made beside the section */
  double launches; /* the launch list: */
  double modules;  /*   loading kernel modules (0 for those a module cache already had) */
  double gemms;    /*   cuBLASLt descriptors and algorithm choice */
  int kernels;     /* modules the executor uses */
  double graph;
} qd_cuda_executor_times_t;
void qd_cuda_executor_times(const qd_cuda_executor_t* executor, qd_cuda_executor_times_t* out_times);

#endif
