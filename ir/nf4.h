/* NF4 quantization exactly as bitsandbytes does it (quantize_4bit / dequantize_4bit, quant_type "nf4").
 *
 * A tensor of n elements, read in memory order, is split into blocks of `blocksize` elements (64 by default; a
 * power of two from 32 to 4096); the last block may be partial. Per block: absmax = max |x| (fp32); each element
 * x * (1 / absmax), clamped to [-1, 1], takes the index of the nearest of the 16 NormalFloat code values (the
 * first one on ties; NaN, from an all-zero block, takes index 0). Two indices share a byte, the FIRST element in
 * the HIGH nibble; an odd count pads the last low nibble with 0. Storage: n/2 bytes + 4 bytes per block, i.e.
 * 0.5625 bytes per element at blocksize 64.
 *
 * Double quantization (bitsandbytes' compress_statistics) stores the absmax vector itself in 8 bits: offset =
 * mean(absmax); (absmax - offset) is quantized blockwise (blocks of 256) with bitsandbytes' signed dynamic
 * 8-bit map (through the CPU library's 65536-point lookup, as it does), giving one code byte per NF4 block plus one fp32 nested absmax per 256 blocks; dequantization adds
 * the offset back. That is 0.5 + 1/64 + 4/16384 bytes per element at blocksize 64.
 */
#ifndef QD_IR_NF4_H
#define QD_IR_NF4_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/status.h"

enum { QD_NF4_NESTED_BLOCKSIZE = 256 };

/* The 16 NormalFloat values, ascending (index 7 is 0). */
extern const float qd_nf4_code[16];
/* bitsandbytes' create_dynamic_map(signed=True): 256 ascending values in [-1, 1]. */
const float* qd_dynamic_map_signed(void);

typedef struct qd_nf4_layout {
  int32_t blocksize;
  bool double_quant;
  uint64_t count;         /* elements */
  uint64_t blocks;        /* ceil(count / blocksize) */
  uint64_t nested_blocks; /* ceil(blocks / 256) when double_quant, else 0 */
  uint64_t packed_bytes;  /* ceil(count / 2) */
} qd_nf4_layout_t;

/* Fills a layout; INVALID_ARGUMENT for a blocksize bitsandbytes does not allow. */
qd_status_t qd_nf4_layout(uint64_t count, int32_t blocksize, bool double_quant, qd_nf4_layout_t* out_layout);
/* Bytes the quantized form occupies (packed codes + statistics). */
uint64_t qd_nf4_storage_bytes(const qd_nf4_layout_t* layout);

/* The quantized form. Without double quantization `absmax` holds `blocks` floats; with it, `absmax_codes` holds
 * `blocks` bytes, `nested_absmax` `nested_blocks` floats and `offset` the mean. Buffers are the caller's. */
typedef struct qd_nf4_tensor {
  uint8_t* packed;
  float* absmax;
  uint8_t* absmax_codes;
  float* nested_absmax;
  float offset;
} qd_nf4_tensor_t;

/* Quantizes x (count elements of `layout`). Double quantization needs a scratch of `blocks` floats (NULL is
 * fine without it). */
void qd_nf4_quantize(const qd_nf4_layout_t* layout, const float* x, qd_nf4_tensor_t* out, float* scratch);
/* The two halves of qd_nf4_quantize, so callers can spread blocks over threads: blocks [begin, end) of x into
 * packed codes and fp32 absmax (blocks start on byte boundaries: block sizes are even); then, over the whole
 * absmax vector (which it overwrites), the double quantization into out. */
void qd_nf4_quantize_blocks(const qd_nf4_layout_t* layout, const float* x, uint64_t block_begin, uint64_t block_end,
                            uint8_t* packed, float* absmax);
/* Only the fp32 absmax qd_nf4_quantize_blocks stores for blocks [begin, end) (into absmax[begin .. end-1]),
 * without quantizing: what double quantization's offset (their mean) is computed from. */
void qd_nf4_block_absmax(const qd_nf4_layout_t* layout, const float* x, uint64_t block_begin, uint64_t block_end,
                         float* absmax);
void qd_nf4_compress_absmax(const qd_nf4_layout_t* layout, float* absmax, qd_nf4_tensor_t* out);
/* The per-block scale, undoing double quantization when present: dst[blocks]. */
void qd_nf4_absmax(const qd_nf4_layout_t* layout, const qd_nf4_tensor_t* t, float* dst);
/* y[i] = code[nibble i] * absmax[block of i], in fp32 (bitsandbytes computes in fp32, then casts). */
void qd_nf4_dequantize(const qd_nf4_layout_t* layout, const qd_nf4_tensor_t* t, float* y);

#endif
