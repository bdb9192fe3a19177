/* Running a graph description directly on the CPU from safetensors files: the debugging entry point
 * (`qdrun --graph G.json --weights W --inputs in.safetensors --outputs out.safetensors --device cpu`) and the way
 * golden tests drive the reference executor.
 *
 * Sizes the description leaves to the caller (batch, token counts) are read off the input tensors' shapes, and
 * optionally from an image resolution.
 * Ownership: the runner owns everything it opens; output tensors belong to the caller (qd_tensor_free). */
#ifndef QD_RUNTIME_GRAPH_RUNNER_H
#define QD_RUNTIME_GRAPH_RUNNER_H

#include "ir/graph.h"
#include "qd/safetensors.h"
#include "runtime/cpu/executor.h"

typedef struct qd_graph_runner qd_graph_runner_t;

typedef struct qd_graph_runner_options {
  const char* graph_path;   /* graph description (JSON) */
  const char* config;       /* NULL: the description's default */
  const char* weights_path; /* .safetensors file, index or directory */
  const char* layout;       /* NULL: detect */
  int threads;              /* <= 0: all cores */
} qd_graph_runner_options_t;

/* Instantiates the graph for the shapes of `inputs` and loads its weights as fp32. */
qd_status_t qd_graph_runner_create(const qd_graph_runner_options_t* options, const qd_safetensors_t* inputs,
                                   qd_allocator_t allocator, qd_graph_runner_t** out_runner);
/* The same from a compiled plan: the component's program for the compiled resolution that matches the inputs'
 * shapes (PLAN_NO_RESOLUTION otherwise), with its stored weights (NF4 dequantized to fp32). component NULL: the
 * plan's first component. */
qd_status_t qd_graph_runner_create_from_plan(const char* plan_path, const char* component, int threads,
                                             const qd_safetensors_t* inputs, qd_allocator_t allocator,
                                             qd_graph_runner_t** out_runner);
/* The same, also binding the sizes of the description's "resolution" section for a width x height image: for
 * graphs whose inputs alone do not determine every size (the VAE decoder's packed latents do not tell the image's
 * aspect ratio). Sizes the inputs bind as well must agree (INPUT_SHAPE). */
qd_status_t qd_graph_runner_create_for_image(const qd_graph_runner_options_t* options, const qd_safetensors_t* inputs,
                                             int64_t width, int64_t height, qd_allocator_t allocator,
                                             qd_graph_runner_t** out_runner);
void qd_graph_runner_destroy(qd_graph_runner_t* runner);

const qd_graph_t* qd_graph_runner_graph(const qd_graph_runner_t* runner);
const char* qd_graph_runner_layout(const qd_graph_runner_t* runner);

/* Runs once; outputs[i] receives graph output i (graph->output_count entries). */
qd_status_t qd_graph_runner_run(qd_graph_runner_t* runner, const qd_safetensors_t* inputs, qd_tensor_t* outputs);

/* Relative L2 error ||a - b|| / ||b|| and max |a - b| of two fp32 arrays. */
void qd_compare_f32(const float* a, const float* b, size_t n, double* out_rel_l2, double* out_max_abs);

#endif
