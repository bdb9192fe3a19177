/* NF4 quantization; see nf4.h. The rules below mirror bitsandbytes' CPU implementation step by step (fp32
 * arithmetic, reciprocal-then-multiply scaling, first-index argmin), which is what makes the output byte-exact;
 * tests/test_nf4.c holds it to fixtures produced by bitsandbytes itself. */
#include "ir/nf4.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const float qd_nf4_code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

/* torch.linspace(start, end, steps) in float32: step = (end - start) / (steps - 1) in float; the first half counts
 * up from start, the second half down from end, each a fused multiply-add (one rounding), as torch's vectorized
 * CPU kernel computes it. */
static void qd_linspace_f32_(float start, float end, int steps, float* out) {
  float step = (end - start) / (float)(steps - 1);
  int half = steps / 2;
  for (int i = 0; i < steps; i++)
    out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - 1 - i), end);
}

static float qd_dynamic_map_[256];
static int qd_dynamic_map_ready_;

static int qd_float_cmp_(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return (x > y) - (x < y);
}

/* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for each exponent i in 0..6, the midpoints
 * of linspace(0.1, 1, 2^i + 1), scaled by 10^(i - 6), positive and negative; then 0 and 1; sorted. Scaling a
 * float32 tensor by a Python float happens in float32. */
const float* qd_dynamic_map_signed(void) {
  if (qd_dynamic_map_ready_) return qd_dynamic_map_;
  float data[256];
  int n = 0;
  for (int i = 0; i < 7; i++) {
    int items = (1 << i) + 1;
    float bounds[65];
    qd_linspace_f32_(0.1f, 1.0f, items, bounds);
    float scale = (float)pow(10.0, (double)(i - 6));
    for (int k = 0; k + 1 < items; k++) {
      float mean = (bounds[k] + bounds[k + 1]) / 2.0f;
      data[n++] = scale * mean;
    }
    for (int k = 0; k + 1 < items; k++) {
      float mean = (bounds[k] + bounds[k + 1]) / 2.0f;
      data[n++] = -scale * mean;
    }
  }
  data[n++] = 0.0f;
  data[n++] = 1.0f;
  while (n < 256) data[n++] = 0.0f;
  qsort(data, 256, sizeof(float), qd_float_cmp_);
  memcpy(qd_dynamic_map_, data, sizeof data);
  qd_dynamic_map_ready_ = 1;
  return qd_dynamic_map_;
}

qd_status_t qd_nf4_layout(uint64_t count, int32_t blocksize, bool double_quant, qd_nf4_layout_t* out) {
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT,
                  "NF4 block size %d: bitsandbytes allows powers of two from 32 to 4096", blocksize);
  memset(out, 0, sizeof *out);
  out->blocksize = blocksize;
  out->double_quant = double_quant;
  out->count = count;
  out->blocks = (count + (uint64_t)blocksize - 1) / (uint64_t)blocksize;
  out->nested_blocks = double_quant ? (out->blocks + QD_NF4_NESTED_BLOCKSIZE - 1) / QD_NF4_NESTED_BLOCKSIZE : 0;
  out->packed_bytes = (count + 1) / 2;
  return QD_OK;
}

uint64_t qd_nf4_storage_bytes(const qd_nf4_layout_t* l) {
  if (l->double_quant) return l->packed_bytes + l->blocks + l->nested_blocks * 4;
  return l->packed_bytes + l->blocks * 4;
}

/* The number of table midpoints strictly below v: bitsandbytes' torch.bucketize(v, midpoints) on the CPU. A value
 * exactly on a midpoint takes the lower code. Midpoints are (c[i] + c[i+1]) / 2 in float32. */
static int qd_count_below_(float v, const float* mids, int count) {
  int lo = 0, hi = count; /* first index with mids[i] >= v */
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (mids[mid] < v)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static float qd_nf4_mids_[15];
static int qd_nf4_mids_ready_;

static const float* qd_nf4_mids_get_(void) {
  if (!qd_nf4_mids_ready_) {
    for (int i = 0; i < 15; i++) qd_nf4_mids_[i] = (qd_nf4_code[i] + qd_nf4_code[i + 1]) / 2.0f;
    qd_nf4_mids_ready_ = 1;
  }
  return qd_nf4_mids_;
}

static float qd_clamp1_(float v) { return v < -1.0f ? -1.0f : (v > 1.0f ? 1.0f : v); }

/* bitsandbytes' CPU quantize_4bit (its pure-torch "default" backend), block by block: full blocks scale by the
 * float32 reciprocal of max(absmax, 1e-38) and store absmax itself; the last partial block divides by
 * max(absmax, 1e-38) and stores that clamped value. An all-zero block thus codes every element 7 (0.0). */
/* max |x| over [begin, end); NaN never wins, as in bitsandbytes' comparison. */
static float qd_nf4_block_max_(const float* x, uint64_t begin, uint64_t end) {
  float m = 0.0f;
  for (uint64_t i = begin; i < end; i++) {
    float a = fabsf(x[i]);
    if (a > m) m = a;
  }
  return m;
}

void qd_nf4_block_absmax(const qd_nf4_layout_t* l, const float* x, uint64_t block_begin, uint64_t block_end,
                         float* absmax) {
  uint64_t bs = (uint64_t)l->blocksize;
  for (uint64_t b = block_begin; b < block_end; b++) {
    uint64_t begin = b * bs;
    bool partial = begin + bs > l->count;
    float m = qd_nf4_block_max_(x, begin, partial ? l->count : begin + bs);
    /* The quantizer stores a partial block's scale clamped away from zero (see qd_nf4_quantize_blocks). */
    absmax[b] = partial && !(m > 1e-38f) ? 1e-38f : m;
  }
}

void qd_nf4_quantize_blocks(const qd_nf4_layout_t* l, const float* x, uint64_t block_begin, uint64_t block_end,
                            uint8_t* packed, float* absmax) {
  const float* mids = qd_nf4_mids_get_();
  uint64_t bs = (uint64_t)l->blocksize;
  for (uint64_t b = block_begin; b < block_end; b++) {
    uint64_t begin = b * bs;
    bool partial = begin + bs > l->count;
    uint64_t end = partial ? l->count : begin + bs;
    float m = qd_nf4_block_max_(x, begin, end);
    float clamped = m > 1e-38f ? m : 1e-38f;
    float inv = 1.0f / clamped;
    absmax[b] = partial ? clamped : m;
    for (uint64_t i = begin; i < end; i++) {
      float v = qd_clamp1_(partial ? x[i] / clamped : x[i] * inv);
      int code = qd_count_below_(v, mids, 15);
      if ((i & 1) == 0)
        packed[i / 2] = (uint8_t)(code << 4 | (i + 1 == l->count ? 7 : 0)); /* odd count: pad with 7 */
      else
        packed[i / 2] |= (uint8_t)code;
    }
  }
}

/* bitsandbytes' CPU 8-bit blockwise quantizer (csrc/cpu_ops.cpp) is not an exact nearest-code search: v, scaled to
 * [-1, 1], picks one of 65536 evenly spaced points, (v + 1) * 0.5 * 65535 + 0.5 truncated, each step rounded to
 * float32; a table maps each point to the number of code midpoints below it. */
static uint8_t qd_lut8_[65536];
static int qd_lut8_ready_;

static const uint8_t* qd_lut8_get_(void) {
  if (qd_lut8_ready_) return qd_lut8_;
  const float* code = qd_dynamic_map_signed();
  float mids[255];
  for (int k = 0; k < 255; k++) mids[k] = 0.5f * (code[k] + code[k + 1]);
  for (int i = 0; i < 65536; i++) {
    float val = -1.0f + (2.0f * (float)i) / 65535.0f;
    qd_lut8_[i] = (uint8_t)qd_count_below_(val, mids, 255);
  }
  qd_lut8_ready_ = 1;
  return qd_lut8_;
}

static void qd_quantize_8bit_cpu_(const float* x, uint64_t n, float* absmax, uint8_t* codes) {
  const uint8_t* lut = qd_lut8_get_();
  for (uint64_t b = 0; b * QD_NF4_NESTED_BLOCKSIZE < n; b++) {
    uint64_t begin = b * QD_NF4_NESTED_BLOCKSIZE;
    uint64_t end = begin + QD_NF4_NESTED_BLOCKSIZE < n ? begin + QD_NF4_NESTED_BLOCKSIZE : n;
    float m = 0.0f;
    for (uint64_t i = begin; i < end; i++) {
      float a = fabsf(x[i]);
      if (a > m) m = a;
    }
    absmax[b] = m;
    if (m == 0.0f) {
      for (uint64_t i = begin; i < end; i++) codes[i] = 0;
      continue;
    }
    float inv = 1.0f / m;
    for (uint64_t i = begin; i < end; i++) {
      float v = qd_clamp1_(x[i] * inv);
      float a = (v + 1.0f) * 0.5f;
      float t = a * 65535.0f;
      t = t + 0.5f;
      codes[i] = lut[(int32_t)t];
    }
  }
}

/* torch.mean of a float32 vector on the CPU, bit for bit: ATen's cascade sum over 8-float vectors (four
 * interleaved vector accumulators, each summed in up to four levels of chunks so that only numbers of similar size
 * are added), the tail added in order, the eight lanes added in order, then a float division by n. bitsandbytes
 * takes the double-quantization offset from it, so matching it makes the nested codes byte-exact. */
enum { QD_TORCH_LANES = 8, QD_TORCH_ILP = 4, QD_TORCH_LEVELS = 4 };

typedef struct qd_vec8 {
  float v[QD_TORCH_LANES];
} qd_vec8_t;

static void qd_vec8_add_(qd_vec8_t* a, const qd_vec8_t* b) {
  for (int l = 0; l < QD_TORCH_LANES; l++) a->v[l] += b->v[l];
}

static int64_t qd_ceil_log2_(int64_t x) {
  int64_t r = 0;
  while (((int64_t)1 << r) < x) r++;
  return r;
}

static float qd_torch_mean_f32_(const float* x, uint64_t n) {
  int64_t vec_size = (int64_t)(n / QD_TORCH_LANES);
  int64_t size = vec_size / QD_TORCH_ILP; /* rows of ILP vectors */
  int64_t level_power = qd_ceil_log2_(size) / QD_TORCH_LEVELS;
  if (level_power < 4) level_power = 4;
  int64_t level_step = (int64_t)1 << level_power, level_mask = level_step - 1;
  qd_vec8_t acc[QD_TORCH_LEVELS][QD_TORCH_ILP];
  memset(acc, 0, sizeof acc);
  int64_t i = 0;
  while (i + level_step <= size) {
    for (int64_t j = 0; j < level_step; j++, i++)
      for (int k = 0; k < QD_TORCH_ILP; k++)
        qd_vec8_add_(&acc[0][k], (const qd_vec8_t*)(const void*)(x + (i * QD_TORCH_ILP + k) * QD_TORCH_LANES));
    for (int j = 1; j < QD_TORCH_LEVELS; j++) {
      for (int k = 0; k < QD_TORCH_ILP; k++) {
        qd_vec8_add_(&acc[j][k], &acc[j - 1][k]);
        memset(&acc[j - 1][k], 0, sizeof acc[j - 1][k]);
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; i++)
    for (int k = 0; k < QD_TORCH_ILP; k++)
      qd_vec8_add_(&acc[0][k], (const qd_vec8_t*)(const void*)(x + (i * QD_TORCH_ILP + k) * QD_TORCH_LANES));
  for (int j = 1; j < QD_TORCH_LEVELS; j++)
    for (int k = 0; k < QD_TORCH_ILP; k++) qd_vec8_add_(&acc[0][k], &acc[j][k]);
  /* row_sum: vectors left over after the ILP rows go into accumulator 0; then the four are added in order. */
  for (int64_t v = size * QD_TORCH_ILP; v < vec_size; v++)
    qd_vec8_add_(&acc[0][0], (const qd_vec8_t*)(const void*)(x + v * QD_TORCH_LANES));
  for (int k = 1; k < QD_TORCH_ILP; k++) qd_vec8_add_(&acc[0][0], &acc[0][k]);
  float total = 0.0f;
  for (uint64_t k = (uint64_t)vec_size * QD_TORCH_LANES; k < n; k++) total += x[k];
  for (int l = 0; l < QD_TORCH_LANES; l++) total += acc[0][0].v[l];
  return total / (float)n;
}

void qd_nf4_compress_absmax(const qd_nf4_layout_t* l, float* absmax, qd_nf4_tensor_t* out) {
  float offset = qd_torch_mean_f32_(absmax, l->blocks);
  for (uint64_t b = 0; b < l->blocks; b++) absmax[b] = absmax[b] - offset;
  qd_quantize_8bit_cpu_(absmax, l->blocks, out->nested_absmax, out->absmax_codes);
  out->offset = offset;
}

void qd_nf4_quantize(const qd_nf4_layout_t* l, const float* x, qd_nf4_tensor_t* out, float* scratch) {
  float* absmax = l->double_quant ? scratch : out->absmax;
  qd_nf4_quantize_blocks(l, x, 0, l->blocks, out->packed, absmax);
  if (l->double_quant) qd_nf4_compress_absmax(l, absmax, out);
}

/* (map[q] * nested) rounded to float, then + offset rounded: two roundings, as bitsandbytes computes it (the
 * project builds with -ffp-contract=off so no fused multiply-add changes this). */
static float qd_nested_scale_(const float* map, const qd_nf4_tensor_t* t, uint64_t b) {
  float product = map[t->absmax_codes[b]] * t->nested_absmax[b / QD_NF4_NESTED_BLOCKSIZE];
  return product + t->offset;
}

void qd_nf4_absmax(const qd_nf4_layout_t* l, const qd_nf4_tensor_t* t, float* dst) {
  if (!l->double_quant) {
    memcpy(dst, t->absmax, l->blocks * sizeof(float));
    return;
  }
  const float* map = qd_dynamic_map_signed();
  for (uint64_t b = 0; b < l->blocks; b++)
    dst[b] = qd_nested_scale_(map, t, b);
}

void qd_nf4_dequantize(const qd_nf4_layout_t* l, const qd_nf4_tensor_t* t, float* y) {
  const float* map = l->double_quant ? qd_dynamic_map_signed() : NULL;
  for (uint64_t b = 0; b < l->blocks; b++) {
    float scale = map ? qd_nested_scale_(map, t, b) : t->absmax[b];
    uint64_t begin = b * (uint64_t)l->blocksize;
    uint64_t end = begin + (uint64_t)l->blocksize < l->count ? begin + (uint64_t)l->blocksize : l->count;
    for (uint64_t i = begin; i < end; i++) {
      uint8_t byte = t->packed[i / 2];
      int nib = (i & 1) ? (byte & 0x0f) : (byte >> 4);
      y[i] = qd_nf4_code[nib] * scale;
    }
  }
}
