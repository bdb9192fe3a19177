/* The parsed contents of an open plan, for the executors (runtime/plan.c fills and validates them). */
#ifndef QD_RUNTIME_PLAN_INTERNAL_H
#define QD_RUNTIME_PLAN_INTERNAL_H

#include "ir/graph.h"
#include "ir/graph_desc.h"
#include "qd/plan.h"
#include "qd/plan_file.h"
#include "runtime/plan_content.h"
#include "runtime/plan_kernels.h"

typedef struct qd_plan_resolution {
  int64_t width, height, batch;
  qd_size_binding_t bindings[QD_PLAN_MAX_BINDINGS];
  int32_t binding_count;
  uint64_t digest;
  int32_t value_count, node_count;
  uint64_t arena_bytes;
  uint64_t* offsets; /* per value; UINT64_MAX: not in the arena */
} qd_plan_resolution_t;

typedef struct qd_plan_component {
  const char* name;
  const char* config;
  const char* layout;
  qd_graph_desc_t* desc;
  qd_plan_weight_t* weights;
  int32_t weight_count;
  const uint8_t* weight_data; /* the component's WGHT section, 4 KiB aligned */
  uint64_t weight_bytes;
  qd_plan_resolution_t* resolutions;
  int32_t resolution_count;
  qd_plan_kernel_image_t* kernels; /* its KERN section's images, sorted by (key, arch); NULL without one */
  int32_t kernel_count;
} qd_plan_component_t;

const qd_plan_component_t* qd_plan_component(const qd_plan_t* plan, int32_t component);
qd_plan_file_t* qd_plan_container(const qd_plan_t* plan);
/* What the plan's kernels were built for (META "kernels"); present is false for a plan without kernels. */
const qd_plan_kernel_targets_t* qd_plan_kernel_targets(const qd_plan_t* plan);

/* The index of the compiled resolution, or PLAN_NO_RESOLUTION listing the ones the plan has. */
qd_status_t qd_plan_find_resolution(const qd_plan_t* plan, int32_t component, int64_t width, int64_t height,
                                    int64_t batch, int32_t* out_index);
/* The same, matched by bound sizes (for callers that know token counts rather than a resolution). */
qd_status_t qd_plan_find_resolution_by_bindings(const qd_plan_t* plan, int32_t component,
                                                const qd_size_binding_t* bindings, int32_t count,
                                                int32_t* out_index);

/* Instantiates a component's program for one of its resolutions and checks it against what was compiled: the
 * digest, the weights (names, shapes, order) and the memory plan's value count. */
qd_status_t qd_plan_instantiate(const qd_plan_t* plan, int32_t component, int32_t resolution,
                                qd_allocator_t allocator, qd_graph_t** out_graph);

/* The same program with the binding "batch" set to `batch` (the resolution must bind it): the conditioning program
 * of a hoisted step (runtime/cuda/hoist.h) is the step's program at batch steps * batch. Checked against the
 * resolution's own program by weights only: its digest is another program's. */
qd_status_t qd_plan_instantiate_batch(const qd_plan_t* plan, int32_t component, int32_t resolution, int64_t batch,
                                      qd_allocator_t allocator, qd_graph_t** out_graph);

/* fp32 copies of a component's weights (NF4 dequantized), indexed like the graph's weights. */
qd_status_t qd_plan_weights_f32(const qd_plan_t* plan, int32_t component, qd_allocator_t allocator,
                                float*** out_weights);
void qd_plan_weights_f32_free(const qd_plan_t* plan, int32_t component, qd_allocator_t allocator, float** weights);

#endif
