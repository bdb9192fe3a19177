/* The attention variants the tests build: the tuned defaults, the tuning candidates the benchmark compares, and
 * the causal / bias / head-dim-64 variants the text encoders use. Shared by tests/test_attention_templates.c
 * (compiles each for every target, no GPU) and tests/gpu/test_attention.c (runs and times them). */
#ifndef QD_TESTS_ATTENTION_VARIANTS_H
#define QD_TESTS_ATTENTION_VARIANTS_H

#include "runtime/cuda/attention.h"

typedef struct qd_attention_test_variant {
  const char* name;
  qd_attention_variant_t v;
  bool bench; /* timed on the FLUX shapes (head dim 128, no mask, no bias) */
} qd_attention_test_variant_t;

#define QD_MMA_(d, bm, w, bn, st, qr, mb, is_causal, is_biased)                                                       \
  {.kernel = QD_ATTENTION_MMA, .head_dim = d, .block_m = bm, .num_warps = w, .block_n = bn, .stages = st,             \
   .q_in_regs = qr, .min_blocks = mb, .causal = is_causal, .has_bias = is_biased}
#define QD_WG_(d, bn, st, ov, pvn, pp, is_causal)                                                                     \
  {.kernel = QD_ATTENTION_WGMMA, .head_dim = d, .block_m = 128, .num_warps = 12, .block_n = bn, .stages = st,         \
   .min_blocks = 1, .overlap = ov, .pv_n = pvn, .pingpong = pp, .causal = is_causal}

static const qd_attention_test_variant_t qd_attention_test_variants[] = {
    /* mma.sync, head dim 128: the defaults (cc 9.0, then cc 8.x), then tuning candidates. Dropped after the
     * 2026-11-29 H200 runs (docs/attention.md): m128w8-n64-s2 (Q re-read), m128w4-n32-s2, m64w4-n64-s2-b3,
     * m64w4-n32-s3-qr-b3: 245-264 TFLOP/s at S = 4608. */
    {"mma-d128-m64w4-n64-s3-qr-b2", QD_MMA_(128, 64, 4, 64, 3, 1, 2, false, false), true},
    {"mma-d128-m64w4-n64-s2-qr-b2", QD_MMA_(128, 64, 4, 64, 2, 1, 2, false, false), true},
    {"mma-d128-m128w8-n64-s2-qr", QD_MMA_(128, 128, 8, 64, 2, 1, 1, false, false), true},
    {"mma-d128-m128w8-n64-s3-qr", QD_MMA_(128, 128, 8, 64, 3, 1, 1, false, false), false},
    {"mma-d128-m128w8-n128-s2", QD_MMA_(128, 128, 8, 128, 2, 0, 1, false, false), true},
    /* mma.sync: masks and bias, other head dims (the text encoders use 64) */
    {"mma-d128-causal", QD_MMA_(128, 64, 4, 64, 3, 1, 2, true, false), false},
    {"mma-d128-bias", QD_MMA_(128, 64, 4, 64, 2, 1, 2, false, true), false},
    {"mma-d64", QD_MMA_(64, 128, 8, 64, 2, 1, 1, false, false), false},
    {"mma-d64-causal", QD_MMA_(64, 128, 8, 64, 2, 1, 1, true, false), false},
    {"mma-d64-bias", QD_MMA_(64, 128, 8, 64, 2, 1, 1, false, true), false},
    {"mma-d64-causal-bias", QD_MMA_(64, 64, 4, 64, 2, 1, 1, true, true), false},
    {"mma-d256", QD_MMA_(256, 64, 4, 32, 2, 0, 1, false, false), false},
    {"mma-d192", QD_MMA_(192, 64, 4, 32, 2, 0, 1, false, false), false},
    /* wgmma (sm_90a), head dim 128: the default first, then tuning candidates. Dropped after the first runs:
     * n128-s2-ov-pp (560 TFLOP/s at 4608, below n128-s2-ov's 580), n176-s2-ov (597 / 419 at 1280). */
    {"wgmma-d128-n192-s2-ov-pp", QD_WG_(128, 192, 2, 1, 128, 1, false), true},
    {"wgmma-d128-n192-s2-ov", QD_WG_(128, 192, 2, 1, 128, 0, false), true},
    {"wgmma-d128-n176-s2-ov-pp", QD_WG_(128, 176, 2, 1, 128, 1, false), true},
    {"wgmma-d128-n128-s3-ov-pp", QD_WG_(128, 128, 3, 1, 128, 1, false), true},
    {"wgmma-d128-n128-s2-ov", QD_WG_(128, 128, 2, 1, 128, 0, false), true},
    {"wgmma-d128-n128-s2", QD_WG_(128, 128, 2, 0, 128, 0, false), false},
    {"wgmma-d128-n128-s2-ov-pv64", QD_WG_(128, 128, 2, 1, 64, 0, false), false},
    {"wgmma-d128-n64-s3-ov", QD_WG_(128, 64, 3, 1, 128, 0, false), false},
    {"wgmma-d128-causal", QD_WG_(128, 128, 2, 1, 128, 1, true), false}, /* 192 and 176 spill with the mask */
    {"wgmma-d128-causal-n128", QD_WG_(128, 128, 2, 1, 128, 0, true), false},
    {"wgmma-d64", QD_WG_(64, 128, 2, 1, 64, 0, false), false},
    {"wgmma-d64-n192-pp", QD_WG_(64, 192, 2, 1, 64, 1, false), false},
};

#define QD_ATTENTION_TEST_VARIANT_COUNT (sizeof qd_attention_test_variants / sizeof qd_attention_test_variants[0])

#undef QD_MMA_
#undef QD_WG_
#endif
