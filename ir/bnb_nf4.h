/* bitsandbytes NF4 checkpoints, as diffusers and transformers save a quantized model: for a weight W,
 *   W                                       U8 [ceil(n/2), 1]  packed codes (ir/nf4.h's layout)
 *   W.absmax                                F32 [blocks], or U8 [blocks] with double quantization
 *   W.quant_map                             F32 [16]           the NF4 code book
 *   W.nested_absmax, W.nested_quant_map     F32 [ceil(blocks/256)], F32 [256]   (double quantization)
 *   W.quant_state.bitsandbytes__nf4         U8: the JSON {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16",
 *                                           "shape": [out, in], and with double quantization "nested_blocksize": 256,
 *                                           "nested_dtype": "float32", "nested_offset": <float>}
 * Reading validates every tensor against the quant state; writing produces the same bytes bitsandbytes does. */
#ifndef QD_IR_BNB_NF4_H
#define QD_IR_BNB_NF4_H

#include <stdbool.h>

#include "ir/graph.h"
#include "ir/nf4.h"
#include "qd/checkpoint.h"

typedef struct qd_bnb_nf4 {
  const qd_tensor_info_t *packed, *absmax, *nested_absmax;
  qd_nf4_layout_t layout;
  qd_shape_t shape;       /* the weight's own shape */
  qd_dtype_t dtype;       /* what it was quantized from (BF16, F16, F32) */
  float offset;           /* double quantization */
} qd_bnb_nf4_t;

/* Whether the checkpoint stores `name` as a bitsandbytes NF4 weight (it has the quant_state tensor). */
bool qd_bnb_nf4_present(const qd_checkpoint_t* ckpt, const char* name);
/* Reads and checks the quant state and the tensors that go with it. */
qd_status_t qd_bnb_nf4_open(const qd_checkpoint_t* ckpt, const char* name, qd_bnb_nf4_t* out);
/* The stored values, code * block scale in fp32: dst[numel]. bitsandbytes' dequantize_4bit computes exactly these
 * and then casts them to the quant state's dtype (bf16) for its matmul; qd keeps fp32, as its own NF4 plans do, so
 * a bnb file and a plan compiled from it read the same. OUT_OF_MEMORY. */
qd_status_t qd_bnb_nf4_dequantize(const qd_bnb_nf4_t* w, qd_allocator_t allocator, float* dst);

/* The quant_state JSON bitsandbytes writes for a weight, byte for byte (Python's json.dumps separators and the
 * shortest repr of the offset). Returns the length; buf is always NUL-terminated. */
size_t qd_bnb_nf4_quant_state(const qd_nf4_layout_t* layout, const qd_shape_t* shape, qd_dtype_t dtype, float offset,
                              char* buf, size_t size);

#endif
