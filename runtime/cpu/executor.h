/* The CPU executor: runs an instantiated graph once, op by op, with the reference implementations (ref.h).
 *
 * It is the oracle for everything else (GPU kernels, plans, quantized weights) and what `qdrun --device cpu`
 * uses for small models. Activations are fp32; each value is allocated when produced and freed after its last
 * reader, so peak memory follows the graph's liveness.
 *
 * Ownership: inputs and weights stay the caller's; output tensors are allocated with the given allocator and
 * belong to the caller (free each with qd_tensor_free).
 */
#ifndef QD_CPU_EXECUTOR_H
#define QD_CPU_EXECUTOR_H

#include "ir/graph.h"
#include "runtime/cpu/threadpool.h"

typedef struct qd_tensor {
  qd_dtype_t dtype;
  qd_shape_t shape;
  void* data;
  size_t bytes;
} qd_tensor_t;

void qd_tensor_free(qd_allocator_t allocator, qd_tensor_t* tensor);

/* Called after every node with its output (for tracing and debugging); return non-OK to stop. */
typedef qd_status_t (*qd_cpu_node_hook_fn)(void* user, const qd_graph_t* graph, int32_t node, const float* output);

typedef struct qd_cpu_run_options {
  qd_threadpool_t* pool;      /* NULL: single-threaded */
  qd_cpu_node_hook_fn hook;   /* optional */
  void* hook_user;
} qd_cpu_run_options_t;

/* weights[i]: fp32 data for graph->weights[i], in its declared shape.
 * inputs[i]: the tensor for graph->inputs[i]; dtype and shape must equal the graph's (INPUT_DTYPE/INPUT_SHAPE).
 * outputs[i]: receives graph->outputs[i]; on failure nothing is left allocated. */
qd_status_t qd_cpu_execute(const qd_graph_t* graph, const float* const* weights, const qd_tensor_t* inputs,
                           qd_tensor_t* outputs, const qd_cpu_run_options_t* options, qd_allocator_t allocator);

#endif
