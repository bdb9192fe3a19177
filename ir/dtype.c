/* Element types and scalar conversions. */
#include "qd/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
  const char* name;
  size_t size;
} qd_dtype_info_[QD_DTYPE_COUNT_] = {
    [QD_DTYPE_INVALID] = {"INVALID", 0},
#define QD_DTYPE_INFO_(str, name, sz) [QD_DTYPE_##name] = {str, sz},
    QD_DTYPE_LIST(QD_DTYPE_INFO_)
#undef QD_DTYPE_INFO_
};

const char* qd_dtype_name(qd_dtype_t d) {
  return (unsigned)d < QD_DTYPE_COUNT_ ? qd_dtype_info_[d].name : "INVALID";
}

qd_dtype_t qd_dtype_from_name(const char* name, size_t len) {
  for (int d = 1; d < QD_DTYPE_COUNT_; d++) {
    if (d == QD_DTYPE_NF4) continue;
    const char* n = qd_dtype_info_[d].name;
    if (strlen(n) == len && memcmp(n, name, len) == 0) return (qd_dtype_t)d;
  }
  return QD_DTYPE_INVALID;
}

size_t qd_dtype_size(qd_dtype_t d) { return (unsigned)d < QD_DTYPE_COUNT_ ? qd_dtype_info_[d].size : 0; }

bool qd_dtype_is_float(qd_dtype_t d) {
  switch (d) {
    case QD_DTYPE_F8_E4M3:
    case QD_DTYPE_F8_E5M2:
    case QD_DTYPE_F16:
    case QD_DTYPE_BF16:
    case QD_DTYPE_F32:
    case QD_DTYPE_F64: return true;
    default: return false;
  }
}

bool qd_dtype_bytes_for(qd_dtype_t d, uint64_t count, uint64_t* out_bytes) {
  if (d == QD_DTYPE_NF4) {
    *out_bytes = count / 2 + (count & 1);
    return true;
  }
  uint64_t size = qd_dtype_size(d);
  if (size == 0) return false;
  if (count > UINT64_MAX / size) return false;
  *out_bytes = count * size;
  return true;
}

static float qd_bits_to_f32_(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
static uint32_t qd_f32_to_bits_(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

float qd_bf16_to_f32(uint16_t v) { return qd_bits_to_f32_((uint32_t)v << 16); }

uint16_t qd_f32_to_bf16(float v) {
  uint32_t b = qd_f32_to_bits_(v);
  if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); /* quiet NaN, keep sign */
  b += 0x7fffu + ((b >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(b >> 16);
}

float qd_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    /* zero or subnormal: mant * 2^-24 */
    float f = (float)mant * 0x1p-24f;
    return sign ? -f : f;
  }
  if (exp == 31) return qd_bits_to_f32_(sign | 0x7f800000u | (mant << 13));
  return qd_bits_to_f32_(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t qd_f32_to_f16(float f) {
  uint32_t b = qd_f32_to_bits_(f);
  uint16_t sign = (uint16_t)((b >> 16) & 0x8000u);
  uint32_t abs = b & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;
  if (abs >= 0x477ff000u) return sign | 0x7c00u; /* rounds to infinity at or above 65520 */
  if (abs < 0x38800000u) {
    /* subnormal half (or zero): value * 2^24 rounded to an integer, nearest even */
    float a = qd_bits_to_f32_(abs) * 0x1p24f;
    float r = nearbyintf(a);
    return sign | (uint16_t)r;
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return sign | (uint16_t)((rounded - 0x38000000u) >> 13);
}

float qd_f8e4m3_to_f32(uint8_t v) {
  uint32_t sign = v & 0x80u;
  uint32_t exp = (v >> 3) & 0xfu;
  uint32_t mant = v & 0x7u;
  float f;
  if (exp == 15 && mant == 7)
    f = NAN;
  else if (exp == 0)
    f = (float)mant * 0x1p-9f; /* subnormal: mant/8 * 2^-6 */
  else
    f = ldexpf(1.0f + (float)mant / 8.0f, (int)exp - 7);
  return sign ? -f : f;
}

float qd_f8e5m2_to_f32(uint8_t v) {
  /* E5M2 is the top byte of an IEEE half. */
  return qd_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

qd_status_t qd_convert_to_f32(qd_dtype_t t, const void* src, size_t n, float* dst) {
  const unsigned char* p = src;
  switch (t) {
    case QD_DTYPE_F32: memcpy(dst, src, n * 4); return QD_OK;
#define QD_CONVERT_LOOP_(ctype, expr)       \
  for (size_t i = 0; i < n; i++) {          \
    ctype v;                                \
    memcpy(&v, p + i * sizeof v, sizeof v); \
    dst[i] = (expr);                        \
  }                                         \
  return QD_OK;
    case QD_DTYPE_BF16: QD_CONVERT_LOOP_(uint16_t, qd_bf16_to_f32(v))
    case QD_DTYPE_F16: QD_CONVERT_LOOP_(uint16_t, qd_f16_to_f32(v))
    case QD_DTYPE_F64: QD_CONVERT_LOOP_(double, (float)v)
    case QD_DTYPE_F8_E4M3: QD_CONVERT_LOOP_(uint8_t, qd_f8e4m3_to_f32(v))
    case QD_DTYPE_F8_E5M2: QD_CONVERT_LOOP_(uint8_t, qd_f8e5m2_to_f32(v))
    case QD_DTYPE_U8: QD_CONVERT_LOOP_(uint8_t, (float)v)
    case QD_DTYPE_I8: QD_CONVERT_LOOP_(int8_t, (float)v)
    case QD_DTYPE_I16: QD_CONVERT_LOOP_(int16_t, (float)v)
    case QD_DTYPE_I32: QD_CONVERT_LOOP_(int32_t, (float)v)
    case QD_DTYPE_I64: QD_CONVERT_LOOP_(int64_t, (float)v)
#undef QD_CONVERT_LOOP_
    default: break;
  }
  return QD_ERR(UNSUPPORTED, ST_DTYPE_CONVERSION, "cannot convert %s to F32", qd_dtype_name(t));
}
