/* Seeded noise as torch draws it, and FLUX's latent packing; see latents.h. */
#include "runtime/pipeline/latents.h"

#include <math.h>
#include <string.h>

/* --- mt19937 as at::mt19937 (aten/src/ATen/core/MT19937RNGEngine.h) ------------------------------------------------ */

enum { QD_MT_M = 397 };
#define QD_MT_MATRIX_A 0x9908b0dfu
#define QD_MT_UPPER 0x80000000u
#define QD_MT_LOWER 0x7fffffffu

void qd_torch_generator_seed(qd_torch_generator_t* g, uint64_t seed) {
  /* init_with_uint32: torch keeps 64 bits of seed but the engine takes the low 32. */
  g->state[0] = (uint32_t)(seed & 0xffffffffu);
  for (int32_t j = 1; j < QD_MT19937_N; j++)
    g->state[j] = 1812433253u * (g->state[j - 1] ^ (g->state[j - 1] >> 30)) + (uint32_t)j;
  g->left = 1;
  g->next = 0;
}

static uint32_t qd_mt_twist_(uint32_t u, uint32_t v) {
  return (((u & QD_MT_UPPER) | (v & QD_MT_LOWER)) >> 1) ^ ((v & 1u) ? QD_MT_MATRIX_A : 0u);
}

static void qd_mt_next_state_(qd_torch_generator_t* g) {
  uint32_t* s = g->state;
  g->left = QD_MT19937_N;
  g->next = 0;
  int32_t k = 0;
  for (; k < QD_MT19937_N - QD_MT_M; k++) s[k] = s[k + QD_MT_M] ^ qd_mt_twist_(s[k], s[k + 1]);
  for (; k < QD_MT19937_N - 1; k++) s[k] = s[k + QD_MT_M - QD_MT19937_N] ^ qd_mt_twist_(s[k], s[k + 1]);
  s[k] = s[k + QD_MT_M - QD_MT19937_N] ^ qd_mt_twist_(s[k], s[0]);
}

uint32_t qd_torch_generator_u32(qd_torch_generator_t* g) {
  if (--g->left == 0) qd_mt_next_state_(g);
  uint32_t y = g->state[g->next++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* at::uniform_real_distribution<float>(0, 1): 24 random bits times 2^-24, exact in float32. */
static float qd_uniform_(qd_torch_generator_t* g) {
  return (float)(qd_torch_generator_u32(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

/* --- avx_mathfun.h's log256_ps and sincos256_ps, one lane at a time ------------------------------------------------
 * Same constants, same operation order. Where GCC fused a multiply into the following add or subtract (it builds
 * torch's AVX2 kernels with -mfma and contracts across the intrinsics), fmaf does the same; where it could not (the
 * product has another use, or the add already consumes a fused result), the product is rounded on its own. */

static float qd_bits_to_float_(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t qd_float_to_bits_(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static float qd_cephes_logf_(float x) {
  /* u1 = 1 - u lies in (2^-24, 1]: never zero, negative, denormal or NaN, so the invalid and denormal masks of the
   * vector code are no-ops here. */
  uint32_t bits = qd_float_to_bits_(x);
  int32_t exponent = (int32_t)(bits >> 23) - 0x7f;
  x = qd_bits_to_float_((bits & ~0x7f800000u) | 0x3f000000u); /* mantissa in [0.5, 1) */
  float e = (float)exponent;
  e = e + 1.0f;
  bool below = x < 0.707106781186547524f;
  float tmp = below ? x : 0.0f;
  x = x - 1.0f;
  e = e - (below ? 1.0f : 0.0f);
  x = x + tmp;
  float z = x * x;
  float y = 7.0376836292E-2f;
  y = fmaf(y, x, -1.1514610310E-1f);
  y = fmaf(y, x, 1.1676998740E-1f);
  y = fmaf(y, x, -1.2420140846E-1f);
  y = fmaf(y, x, 1.4249322787E-1f);
  y = fmaf(y, x, -1.6668057665E-1f);
  y = fmaf(y, x, 2.0000714765E-1f);
  y = fmaf(y, x, -2.4999993993E-1f);
  y = fmaf(y, x, 3.3333331174E-1f);
  y = y * x;                                  /* its only use is another product: not fused */
  float eq1 = e * -2.12194440e-4f;            /* the add below already consumes the fused y * z */
  y = fmaf(y, z, eq1);
  y = fmaf(-z, 0.5f, y);                      /* y - z * 0.5 (the product is exact either way) */
  x = x + y;
  x = fmaf(e, 0.693359375f, x);
  return x;
}

static void qd_cephes_sincosf_(float xin, float* out_sin, float* out_cos) {
  /* theta = 2 pi u2 lies in [0, 2 pi): non-negative, so the sine's input sign bit is 0. */
  float x = fabsf(xin);
  uint32_t sign_sin = qd_float_to_bits_(xin) & 0x80000000u;
  float y = x * 1.27323954473516f;           /* 4 / pi */
  int32_t j = (int32_t)y;                    /* cvttps: truncation */
  j = (j + 1) & ~1;
  y = (float)j;
  uint32_t swap_sin = ((uint32_t)j & 4u) << 29;
  bool poly_sin = (j & 2) == 0;
  x = fmaf(y, -0.78515625f, x);
  x = fmaf(y, -2.4187564849853515625e-4f, x);
  x = fmaf(y, -3.77489497744594108e-8f, x);
  uint32_t sign_cos = ((uint32_t)(~(j - 2)) & 4u) << 29;
  sign_sin ^= swap_sin;
  float z = x * x;
  float c = 2.443315711809948E-005f;
  c = fmaf(c, z, -1.388731625493765E-003f);
  c = fmaf(c, z, 4.166664568298827E-002f);
  c = c * z;
  c = fmaf(c, z, -(z * 0.5f));               /* y * z - z * 0.5, the first product fused */
  c = c + 1.0f;
  float s = -1.9515295891E-4f;
  s = fmaf(s, z, 8.3321608736E-3f);
  s = fmaf(s, z, -1.6666654611E-1f);
  s = s * z;
  s = fmaf(s, x, x);
  /* The vector code selects with masks and adds a zero; + 0.0f reproduces its signed zeros. */
  float rs = (poly_sin ? s : c) + 0.0f;
  float rc = (poly_sin ? c : s) + 0.0f;
  *out_sin = qd_bits_to_float_(qd_float_to_bits_(rs) ^ sign_sin);
  *out_cos = qd_bits_to_float_(qd_float_to_bits_(rc) ^ sign_cos);
}

/* normal_fill_16_AVX2 with mean 0 and std 1 (its final fmadd(n, 1, 0) is exact). */
static void qd_normal_fill_16_(float* d) {
  const float two_pi = (float)(2.0f * 3.14159265358979323846); /* 2.0f * c10::pi<double>, then to float */
  for (int j = 0; j < 8; j++) {
    float u1 = 1.0f - d[j];
    float u2 = d[j + 8];
    float radius = sqrtf(-2.0f * qd_cephes_logf_(u1));
    float theta = two_pi * u2;
    float s, c;
    qd_cephes_sincosf_(theta, &s, &c);
    d[j] = radius * c;
    d[j + 8] = radius * s;
  }
}

qd_status_t qd_torch_randn(qd_torch_generator_t* g, float* out, size_t n) {
  if (n < 16)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_NOISE_SIZE, "%zu values of seeded noise; torch draws fewer than 16 with "
                  "a float64 path that qd does not reproduce", n);
  for (size_t i = 0; i < n; i++) out[i] = qd_uniform_(g);
  for (size_t i = 0; i + 16 <= n; i += 16) qd_normal_fill_16_(out + i);
  if (n % 16) {
    float* tail = out + n - 16;
    for (int i = 0; i < 16; i++) tail[i] = qd_uniform_(g);
    qd_normal_fill_16_(tail);
  }
  return QD_OK;
}

/* --- packing ------------------------------------------------------------------------------------------------------ */

void qd_latents_pack(const float* x, int64_t b_count, int64_t ch, int64_t h, int64_t w, float* out) {
  int64_t gh = h / 2, gw = w / 2;
  for (int64_t b = 0; b < b_count; b++)
    for (int64_t i = 0; i < gh; i++)
      for (int64_t j = 0; j < gw; j++) {
        float* tok = out + ((b * gh + i) * gw + j) * ch * 4;
        for (int64_t c = 0; c < ch; c++)
          for (int64_t dy = 0; dy < 2; dy++)
            for (int64_t dx = 0; dx < 2; dx++)
              tok[c * 4 + dy * 2 + dx] = x[((b * ch + c) * h + 2 * i + dy) * w + 2 * j + dx];
      }
}

void qd_latents_unpack(const float* packed, int64_t b_count, int64_t ch, int64_t h, int64_t w, float* out) {
  int64_t gh = h / 2, gw = w / 2;
  for (int64_t b = 0; b < b_count; b++)
    for (int64_t i = 0; i < gh; i++)
      for (int64_t j = 0; j < gw; j++) {
        const float* tok = packed + ((b * gh + i) * gw + j) * ch * 4;
        for (int64_t c = 0; c < ch; c++)
          for (int64_t dy = 0; dy < 2; dy++)
            for (int64_t dx = 0; dx < 2; dx++)
              out[((b * ch + c) * h + 2 * i + dy) * w + 2 * j + dx] = tok[c * 4 + dy * 2 + dx];
      }
}

void qd_latent_image_ids(int64_t grid_h, int64_t grid_w, float* out) {
  for (int64_t i = 0; i < grid_h; i++)
    for (int64_t j = 0; j < grid_w; j++) {
      float* row = out + (i * grid_w + j) * 3;
      row[0] = 0.0f;
      row[1] = (float)i;
      row[2] = (float)j;
    }
}

qd_status_t qd_latents_noise(uint64_t seed, int64_t batch, int64_t channels, int64_t grid_h, int64_t grid_w,
                             float* scratch, float* out) {
  qd_torch_generator_t g;
  qd_torch_generator_seed(&g, seed);
  int64_t h = 2 * grid_h, w = 2 * grid_w;
  QD_TRY(qd_torch_randn(&g, scratch, (size_t)(batch * channels * h * w)));
  qd_latents_pack(scratch, batch, channels, h, w, out);
  return QD_OK;
}
