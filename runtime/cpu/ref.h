/* Plain C reference implementations of every op in ir/ops.def, in fp32 with fp32 or wider accumulation.
 *
 * These are the oracle: the CPU executor runs them, and every GPU kernel test compares against them. They take
 * plain row-major float arrays (shapes as in ir/ops.def) and an optional thread pool; they never allocate
 * except where noted (linear packs a weight panel per task on the stack), never fail, and write every element of
 * their output. Callers check shapes (the graph's shape inference did).
 */
#ifndef QD_CPU_REF_H
#define QD_CPU_REF_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/cpu/threadpool.h"

/* y[m, n] = sum_k x[m, k] * w[n, k] + b[n]; b may be NULL. */
void qd_ref_linear(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y, int64_t m,
                   int64_t n, int64_t k);

/* Per row of `cols`: (x - mean) / sqrt(var + eps), then * w + b when w (and b) are given. */
void qd_ref_layer_norm(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                       int64_t rows, int64_t cols, float eps);
/* Per group of `dim` consecutive elements: x / sqrt(mean(x^2) + eps) * w[d] (w may be NULL). */
void qd_ref_rms_norm(qd_threadpool_t* pool, const float* x, const float* w, float* y, int64_t groups, int64_t dim,
                     float eps);

/* x [batch, tokens, ch]; shift, scale, gate [batch, ch]. */
void qd_ref_modulate(qd_threadpool_t* pool, const float* x, const float* shift, const float* scale, float* y,
                     int64_t batch, int64_t tokens, int64_t ch);
void qd_ref_gated_add(qd_threadpool_t* pool, const float* residual, const float* gate, const float* x, float* y,
                      int64_t batch, int64_t tokens, int64_t ch);

typedef enum qd_ref_binary_op { QD_REF_ADD, QD_REF_MUL } qd_ref_binary_op_t;
/* y = a (op) b, b broadcast numpy-style to a's shape (b's rank <= a's; b dims equal a's or 1). */
void qd_ref_binary(qd_threadpool_t* pool, qd_ref_binary_op_t op, const float* a, const int64_t* a_dims,
                   int32_t a_rank, const float* b, const int64_t* b_dims, int32_t b_rank, float* y);

typedef enum qd_ref_unary_op {
  QD_REF_SILU,
  QD_REF_GELU,
  QD_REF_GELU_TANH,
  QD_REF_QUICK_GELU,
  QD_REF_SCALE,
} qd_ref_unary_op_t;
void qd_ref_unary(qd_threadpool_t* pool, qd_ref_unary_op_t op, const float* x, float* y, int64_t n, float factor);
float qd_ref_gelu_tanh(float x);

/* Copies x[..., start:start+size, ...] along axis: outer = product of dims before axis, inner = after. */
void qd_ref_slice(const float* x, float* y, int64_t outer, int64_t axis_dim, int64_t inner, int64_t start,
                  int64_t size);
/* Joins inputs along an axis; sizes[i] is each input's extent on that axis. Element size in bytes lets ids
 * (I32/I64) be joined too. */
void qd_ref_concat(const void* const* inputs, const int64_t* sizes, int32_t count, void* y, int64_t outer,
                   int64_t inner, int64_t elem_size);

/* diffusers' get_timestep_embedding, in the same float32 order of operations: t [batch] -> [batch, dim]. */
void qd_ref_timestep_embedding(const float* t, float* y, int64_t batch, int64_t dim, bool flip_sin_to_cos,
                               float downscale_freq_shift, float input_scale, float max_period);
/* FluxPosEmbed: ids [tokens, n_axes] -> y [2, tokens, sum(axes)] holding cos then sin, each angle repeated for the
 * two elements of its pair. Computed in float64 as diffusers does. */
void qd_ref_rope_freqs(const float* ids, float* y, int64_t tokens, const int64_t* axes, int32_t n_axes,
                       double theta);
/* Rotates interleaved pairs: y0 = x0 cos - x1 sin, y1 = x1 cos + x0 sin, per head of x [batch, tokens, H*D]. */
void qd_ref_rope(qd_threadpool_t* pool, const float* x, const float* freqs, float* y, int64_t batch, int64_t tokens,
                 int64_t heads, int64_t head_dim);

/* Scaled dot-product attention per head. q [batch, sq, heads*d], k [batch, sk, heads*d], v [batch, sk, heads*dv],
 * y [batch, sq, heads*dv]. bias (may be NULL) is [bias_batch, bias_heads, sq, sk] with bias_batch in {1, batch}
 * and bias_heads in {1, heads}, added to the scaled scores. causal masks keys after the query. */
void qd_ref_attention(qd_threadpool_t* pool, const float* q, const float* k, const float* v, const float* bias,
                      int64_t bias_batch, int64_t bias_heads, float* y, int64_t batch, int64_t sq, int64_t sk,
                      int64_t heads, int64_t d, int64_t dv, float scale, bool causal);

/* NF4 weights as bitsandbytes stores them (quant_type "nf4"): n elements in memory order, two 4-bit codes per byte
 * with the FIRST element in the HIGH nibble, one scale per block of `blocksize` elements (a power of two, 32..4096).
 * The scale is absmax[block], or, double-quantized (absmax_codes non-NULL; absmax unused):
 *   nested_code[absmax_codes[block]] * nested_absmax[block / 256] + offset   (each step rounded to fp32). */
typedef struct qd_ref_nf4 {
  const uint8_t* packed;        /* ceil(n / 2) bytes */
  const float* absmax;          /* [blocks], or NULL when double-quantized */
  const uint8_t* absmax_codes;  /* [blocks] 8-bit codes of the scales, or NULL */
  const float* nested_absmax;   /* [ceil(blocks / 256)] */
  const float* nested_code;     /* [256], bitsandbytes' signed dynamic map */
  float offset;                 /* added back to every scale */
  int64_t blocksize;
} qd_ref_nf4_t;
/* bitsandbytes' NormalFloat-4 code book: value of each 4-bit code. */
extern const float qd_ref_nf4_code[16];
/* The fp32 scale of one block. */
float qd_ref_nf4_block_absmax(const qd_ref_nf4_t* q, int64_t block);
/* y[e] = code[nibble e] * scale[e / blocksize] in fp32, as bitsandbytes' dequantize_4bit computes it before the
 * cast to the output dtype; a bf16 weight is y rounded to nearest even (qd_f32_to_bf16). */
void qd_ref_nf4_dequantize(qd_threadpool_t* pool, const qd_ref_nf4_t* q, float* y, int64_t n);

/* y = x * scale / divisor + shift, in that float32 order (diffusers' latents / scaling_factor + shift_factor is
 * scale 1 and matches bit for bit). */
void qd_ref_affine(qd_threadpool_t* pool, const float* x, float* y, int64_t n, float scale, float divisor,
                   float shift);

/* Permutes the axes of a row-major tensor of `rank` <= 8 dims: y.dims[i] = dims[perm[i]]. elem_size is 4 or 8
 * (fp32 activations, I32/I64 ids). */
void qd_ref_permute(qd_threadpool_t* pool, const void* x, void* y, const int64_t* dims, const int64_t* perm,
                    int32_t rank, int64_t elem_size);

/* --- token ops (ref_text.c). Ids are I32 or I64 (id_bytes 4 or 8); callers have checked their range. ------- */

static inline int64_t qd_ref_id(const void* ids, int64_t id_bytes, int64_t i) {
  return id_bytes == 8 ? ((const int64_t*)ids)[i] : (int64_t)((const int32_t*)ids)[i];
}
/* y[i, :] = table[ids[i], :] for n ids; table [vocab, features]. */
void qd_ref_embedding(qd_threadpool_t* pool, const void* ids, int64_t id_bytes, const float* table, float* y,
                      int64_t n, int64_t features);
/* y[i] = i for i < n. */
void qd_ref_arange(int32_t* y, int64_t n);
/* x [batch, tokens, ch], ids [batch, tokens] -> y [batch, ch]: the row at the first id equal to `token`, or row 0
 * when there is none (transformers' argmax over (ids == eos) gives 0 then). */
void qd_ref_eos_pool(const float* x, const void* ids, int64_t id_bytes, float* y, int64_t batch, int64_t tokens,
                     int64_t ch, int64_t token);
/* T5's _relative_position_bucket for relative position (key - query), in the same float32 steps as
 * transformers (log, divide by the double log(max_distance / max_exact) rounded to float, scale, truncate). */
int64_t qd_ref_t5_bucket(int64_t relative_position, int64_t buckets, int64_t max_distance, bool bidirectional);
/* y [heads, tokens, tokens] (the [1, heads, S, S] attention bias): y[h, i, j] = table[bucket(j - i), h];
 * table [buckets, heads]. */
void qd_ref_t5_relative_bias(qd_threadpool_t* pool, const float* table, float* y, int64_t tokens, int64_t heads,
                             int64_t buckets, int64_t max_distance, bool bidirectional);

/* --- image ops, NCHW (ref_image.c) ---------------------------------------------------------------------- */

typedef struct qd_ref_conv2d_shape {
  int64_t batch, cin, h, w;   /* input [batch, cin, h, w] */
  int64_t cout, k;            /* weight [cout, cin, k, k] */
  int64_t stride, pad;        /* zero padding on all four sides */
  int64_t hout, wout;         /* (h + 2 pad - k) / stride + 1, likewise for w */
} qd_ref_conv2d_shape_t;
/* Floats of scratch qd_ref_conv2d needs (bounded: it works through the output in chunks of pixels). */
int64_t qd_ref_conv2d_workspace(const qd_ref_conv2d_shape_t* s);
/* y [batch, cout, hout, wout] = conv(x, w) + b (b may be NULL), by im2col and qd_ref_linear. */
void qd_ref_conv2d(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                   const qd_ref_conv2d_shape_t* s, float* workspace);
/* x [batch, ch, spatial]: per (batch, group of ch / groups channels), (x - mean) / sqrt(var + eps) over the
 * group's channels and positions (biased variance), then * w[c] + b[c] when w is given. */
void qd_ref_group_norm(qd_threadpool_t* pool, const float* x, const float* w, const float* b, float* y,
                       int64_t batch, int64_t ch, int64_t spatial, int64_t groups, float eps);
/* x [planes, h, w] -> y [planes, h * f, w * f], y[p, i, j] = x[p, i / f, j / f]. */
void qd_ref_upsample_nearest(qd_threadpool_t* pool, const float* x, float* y, int64_t planes, int64_t h, int64_t w,
                             int64_t factor);

#endif
