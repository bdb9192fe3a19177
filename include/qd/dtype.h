/* qd: element types of tensors, as safetensors names them, plus the packed NF4 type qd produces.
 *
 * Sizes are in bytes per element; NF4 packs two elements per byte and reports 0 here: callers that handle NF4
 * compute its byte size from the element count (qd_dtype_bytes_for). */
#ifndef QD_DTYPE_H
#define QD_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro: name (as safetensors spells it), enum suffix, bytes per element. */
#define QD_DTYPE_LIST(X) \
  X("BOOL", BOOL, 1)     \
  X("U8", U8, 1)         \
  X("I8", I8, 1)         \
  X("I16", I16, 2)       \
  X("I32", I32, 4)       \
  X("I64", I64, 8)       \
  X("F8_E4M3", F8_E4M3, 1) \
  X("F8_E5M2", F8_E5M2, 1) \
  X("F16", F16, 2)       \
  X("BF16", BF16, 2)     \
  X("F32", F32, 4)       \
  X("F64", F64, 8)       \
  X("NF4", NF4, 0)

typedef enum qd_dtype {
  QD_DTYPE_INVALID = 0,
#define QD_DTYPE_ENUM_(str, name, size) QD_DTYPE_##name,
  QD_DTYPE_LIST(QD_DTYPE_ENUM_)
#undef QD_DTYPE_ENUM_
  QD_DTYPE_COUNT_
} qd_dtype_t;

const char* qd_dtype_name(qd_dtype_t dtype);          /* "BF16"; "INVALID" for unknown values */
/* Parses a safetensors dtype string of `len` bytes; QD_DTYPE_INVALID when unknown. NF4 is not a safetensors
 * dtype and is never returned. */
qd_dtype_t qd_dtype_from_name(const char* name, size_t len);
size_t qd_dtype_size(qd_dtype_t dtype);               /* bytes per element; 0 for NF4 and INVALID */
bool qd_dtype_is_float(qd_dtype_t dtype);             /* F8*, F16, BF16, F32, F64 */
/* Bytes that `count` elements occupy; false on overflow. */
bool qd_dtype_bytes_for(qd_dtype_t dtype, uint64_t count, uint64_t* out_bytes);

/* Scalar conversions (exact for widening; round-to-nearest-even for narrowing; NaN stays NaN). */
float qd_bf16_to_f32(uint16_t v);
uint16_t qd_f32_to_bf16(float v);
float qd_f16_to_f32(uint16_t v);
uint16_t qd_f32_to_f16(float v);
float qd_f8e4m3_to_f32(uint8_t v);   /* OCP E4M3FN: no infinities, 0x7f/0xff are NaN */
float qd_f8e5m2_to_f32(uint8_t v);

/* Widens `count` elements of any float dtype (and integer dtypes, exactly where representable) to float32.
 * src may be unaligned. Fails with ST_DTYPE_CONVERSION for BOOL and NF4. */
qd_status_t qd_convert_to_f32(qd_dtype_t src_dtype, const void* src, size_t count, float* dst);

#ifdef __cplusplus
}
#endif
#endif /* QD_DTYPE_H */
