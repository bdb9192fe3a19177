/* Reference NF4 dequantization: bitsandbytes' dequantize_4bit for quant_type "nf4", element by element.
 *
 * Written independently of ir/nf4.c (the quantizer) on purpose: the GPU kernel test compares against this file,
 * and a second reading of the format is what catches a misreading in either. Every product and sum is its own
 * C statement in float: C17 (ISO mode) does not contract them into FMAs, and neither does bitsandbytes. */
#include "runtime/cpu/ref.h"

const float qd_ref_nf4_code[16] = {
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

float qd_ref_nf4_block_absmax(const qd_ref_nf4_t* q, int64_t block) {
  if (!q->absmax_codes) return q->absmax[block];
  /* dequantize_blockwise(absmax_codes, state2): code[byte] * nested_absmax[block / 256], then += offset. */
  float a = q->nested_code[q->absmax_codes[block]] * q->nested_absmax[block / 256];
  a = a + q->offset;
  return a;
}

typedef struct qd_nf4_job {
  const qd_ref_nf4_t* q;
  float* y;
} qd_nf4_job_t;

static void qd_nf4_range_(void* ctx, int64_t begin, int64_t end) {
  const qd_nf4_job_t* j = ctx;
  const qd_ref_nf4_t* q = j->q;
  for (int64_t e = begin; e < end; e++) {
    const uint8_t byte = q->packed[e / 2];
    const unsigned nibble = (e % 2 == 0) ? (unsigned)(byte >> 4) : (unsigned)(byte & 15u);
    const float absmax = qd_ref_nf4_block_absmax(q, e / q->blocksize);
    j->y[e] = qd_ref_nf4_code[nibble] * absmax;
  }
}

void qd_ref_nf4_dequantize(qd_threadpool_t* pool, const qd_ref_nf4_t* q, float* y, int64_t n) {
  qd_nf4_job_t j = {q, y};
  qd_parallel_for(pool, n, 1 << 16, qd_nf4_range_, &j);
}
