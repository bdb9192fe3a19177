/* Graph descriptions: the JSON format of docs/graph-format.md, parsed and instantiated into a qd_graph_t.
 *
 * A description holds several configurations (dev, schnell, tiny test sizes), symbolic sizes, reusable blocks
 * and weight layouts. Instantiating picks a configuration and binds the sizes that depend on the call (batch,
 * token counts); the result is a flat graph with concrete shapes.
 *
 * Ownership: the description owns the parsed document; instantiated graphs are independent of it and are
 * destroyed with qd_graph_destroy.
 */
#ifndef QD_IR_GRAPH_DESC_H
#define QD_IR_GRAPH_DESC_H

#include <stdint.h>

#include "ir/graph.h"
#include "qd/allocator.h"
#include "qd/status.h"

typedef struct qd_graph_desc qd_graph_desc_t;
struct cJSON;

/* Reads and checks the document's structure (not yet its sizes or shapes: those depend on the configuration). */
qd_status_t qd_graph_desc_load_file(const char* path, qd_allocator_t allocator, qd_graph_desc_t** out_desc);
/* The file's text as load_file reads it (at most 64 MiB, else GRAPH_TOO_LARGE), for callers that keep the text
 * too (a plan stores its description verbatim); NUL-terminated, *out_size + 1 bytes from allocator. */
qd_status_t qd_graph_desc_read_file(const char* path, qd_allocator_t allocator, char** out_text, size_t* out_size);
/* source_name is used in messages in place of a path. */
qd_status_t qd_graph_desc_parse(const char* json, size_t length, const char* source_name, qd_allocator_t allocator,
                                qd_graph_desc_t** out_desc);
void qd_graph_desc_destroy(qd_graph_desc_t* desc);

const char* qd_graph_desc_name(const qd_graph_desc_t* desc);
const char* qd_graph_desc_source(const qd_graph_desc_t* desc);
const char* qd_graph_desc_default_config(const qd_graph_desc_t* desc);
int32_t qd_graph_desc_config_count(const qd_graph_desc_t* desc);
const char* qd_graph_desc_config_name(const qd_graph_desc_t* desc, int32_t index);
/* Names the caller must bind at instantiation ("bind" in the document). */
int32_t qd_graph_desc_binding_count(const qd_graph_desc_t* desc);
const char* qd_graph_desc_binding_name(const qd_graph_desc_t* desc, int32_t index);

/* Evaluates a size expression ("dim", "heads * head_dim") in a configuration with the given bindings. */
qd_status_t qd_graph_desc_eval(const qd_graph_desc_t* desc, const char* config, const qd_size_binding_t* bindings,
                               int32_t binding_count, const char* expression, int64_t* out_value);

/* Derives bindings from the shapes of supplied inputs: every input dimension written as a bare bound name takes
 * the size of the supplied tensor. Writes at most `capacity` bindings; a name that two inputs bind differently is
 * INPUT_SHAPE. `shape_of(user, input_name, out_shape)` returns false for inputs that were not supplied. */
typedef bool (*qd_graph_input_shape_fn)(void* user, const char* input_name, qd_shape_t* out_shape);
qd_status_t qd_graph_desc_infer_bindings(const qd_graph_desc_t* desc, const char* config,
                                         qd_graph_input_shape_fn shape_of, void* user, qd_size_binding_t* bindings,
                                         int32_t capacity, int32_t* out_count);

/* The bound sizes for an image of width x height and a batch, from the description's "resolution" section
 * (expressions over width, height, batch and the configuration). GRAPH_EXPR_DIVISION names a resolution that is
 * not a multiple of what the model needs; GRAPH_BINDING_MISSING when the graph has no such section. */
qd_status_t qd_graph_desc_resolution_bindings(const qd_graph_desc_t* desc, const char* config, int64_t width,
                                              int64_t height, int64_t batch, qd_size_binding_t* bindings,
                                              int32_t capacity, int32_t* out_count);

/* Builds the flat graph for one configuration (NULL = the default) and bound sizes. */
qd_status_t qd_graph_desc_instantiate(const qd_graph_desc_t* desc, const char* config,
                                      const qd_size_binding_t* bindings, int32_t binding_count,
                                      qd_allocator_t allocator, qd_graph_t** out_graph);

/* True when the description's "quantization": {"keep": [...]} lists a pattern matching weight_name ('*' matches
 * any run of characters): the weight must stay in a floating-point type even when the rest is quantized
 * (transformers' _keep_in_fp32_modules, e.g. T5's feed-forward output projections). */
bool qd_graph_desc_keep_unquantized(const qd_graph_desc_t* desc, const char* weight_name);

/* The "weight_layouts" object (NULL when absent), for ir/weight_map.c. */
const struct cJSON* qd_graph_desc_layouts(const qd_graph_desc_t* desc);

#endif
