/* What a .qplan holds inside its container (docs/plan-format.md, "Contents"): written by compiler/plan_emit.c,
 * read and validated by runtime/plan.c.
 *
 *   META ""          JSON: {"qd_plan": 1, "model", "created", "qd_version", "components": [names], "resolutions",
 *                    "quantization": {...}, "compile": {options}, "sources": [...]}
 *   PROG <component> JSON: {"component", "config", "layout", "description": <the graph description, verbatim>,
 *                    "resolutions": [{"width", "height", "batch", "bindings": {name: size}, "digest": "hex",
 *                    "values", "arena_bytes", "offsets": [per value, -1 = not in the arena]}]}
 *   WIDX <component> JSON: {"weights": [{"name", "format": "f32"|"bf16"|"nf4", "shape": [...],
 *                    "data": [offset, bytes], and for nf4: "blocksize", "absmax": [offset, bytes],
 *                    "double_quant": bool, "nested": [offset, bytes], "offset_bits": u32 (the float's bits)}]}
 *                    Offsets are relative to the component's WGHT section; weight i is graph weight i.
 *   WGHT <component> the bytes, each piece 256-byte aligned.
 *   KERN <component> (optional) the GPU kernels, cubins and PTX: runtime/plan_kernels.h.
 *
 * The program is the description itself plus the configuration and bindings: the runtime instantiates it with the
 * same code the compiler used and checks the digest, so the memory plan and kernel choices recorded per value and
 * node index apply to exactly the graph they were made for. */
#ifndef QD_RUNTIME_PLAN_CONTENT_H
#define QD_RUNTIME_PLAN_CONTENT_H

#include <stdint.h>

#include "ir/graph.h"
#include "ir/nf4.h"

enum { QD_PLAN_CONTENT_VERSION = 1, QD_PLAN_WEIGHT_ALIGN = 256, QD_PLAN_MAX_BINDINGS = 16 };

typedef enum qd_weight_format {
  QD_WEIGHT_FORMAT_F32 = 0,
  QD_WEIGHT_FORMAT_BF16,
  QD_WEIGHT_FORMAT_NF4,
} qd_weight_format_t;

const char* qd_weight_format_name(qd_weight_format_t format);

typedef struct qd_plan_range {
  uint64_t offset, bytes;
} qd_plan_range_t;

typedef struct qd_plan_weight {
  const char* name;
  qd_weight_format_t format;
  qd_shape_t shape;
  qd_plan_range_t data;     /* f32/bf16 values, or NF4 packed codes */
  /* NF4 only */
  int32_t blocksize;
  bool double_quant;
  qd_plan_range_t absmax;   /* fp32 per block, or uint8 codes with double quantization */
  qd_plan_range_t nested;   /* fp32 per 256 blocks (double quantization) */
  float offset;             /* added back to the dequantized absmax (double quantization) */
} qd_plan_weight_t;

/* The NF4 layout of a weight entry. */
qd_status_t qd_plan_weight_nf4_layout(const qd_plan_weight_t* w, qd_nf4_layout_t* out_layout);
/* Bytes of weight data the entry must have in each range, from its format and shape; used by both sides. */
qd_status_t qd_plan_weight_expected_sizes(const qd_plan_weight_t* w, uint64_t* out_data, uint64_t* out_absmax,
                                          uint64_t* out_nested);
/* Writes the entry's values as fp32 (dequantizing NF4) from the component's weight bytes. */
qd_status_t qd_plan_weight_read_f32(const qd_plan_weight_t* w, const uint8_t* section, float* dst);

#endif
