/* Weight entries of plans; see plan_content.h. */
#include "runtime/plan_content.h"

#include <string.h>

const char* qd_weight_format_name(qd_weight_format_t f) {
  switch (f) {
    case QD_WEIGHT_FORMAT_F32: return "f32";
    case QD_WEIGHT_FORMAT_BF16: return "bf16";
    case QD_WEIGHT_FORMAT_NF4: return "nf4";
  }
  return "unknown";
}

qd_status_t qd_plan_weight_nf4_layout(const qd_plan_weight_t* w, qd_nf4_layout_t* out) {
  return qd_nf4_layout((uint64_t)qd_shape_numel(&w->shape), w->blocksize, w->double_quant, out);
}

qd_status_t qd_plan_weight_expected_sizes(const qd_plan_weight_t* w, uint64_t* data, uint64_t* absmax,
                                          uint64_t* nested) {
  uint64_t n = (uint64_t)qd_shape_numel(&w->shape);
  *absmax = *nested = 0;
  switch (w->format) {
    case QD_WEIGHT_FORMAT_F32: *data = n * 4; return QD_OK;
    case QD_WEIGHT_FORMAT_BF16: *data = n * 2; return QD_OK;
    case QD_WEIGHT_FORMAT_NF4: {
      qd_nf4_layout_t l;
      QD_TRY(qd_plan_weight_nf4_layout(w, &l));
      *data = l.packed_bytes;
      *absmax = l.double_quant ? l.blocks : l.blocks * 4;
      *nested = l.nested_blocks * 4;
      return QD_OK;
    }
  }
  return QD_ERR(BAD_INPUT, INTERNAL, "weight '%s': unknown format %d", w->name, (int)w->format);
}

qd_status_t qd_plan_weight_read_f32(const qd_plan_weight_t* w, const uint8_t* section, float* dst) {
  uint64_t n = (uint64_t)qd_shape_numel(&w->shape);
  const uint8_t* data = section + w->data.offset;
  switch (w->format) {
    case QD_WEIGHT_FORMAT_F32: memcpy(dst, data, n * 4); return QD_OK;
    case QD_WEIGHT_FORMAT_BF16: return qd_convert_to_f32(QD_DTYPE_BF16, data, n, dst);
    case QD_WEIGHT_FORMAT_NF4: {
      qd_nf4_layout_t l;
      QD_TRY(qd_plan_weight_nf4_layout(w, &l));
      /* The statistics are aligned in the section (256 bytes), so they can be read in place. */
      qd_nf4_tensor_t t = {(uint8_t*)data, NULL, NULL, NULL, w->offset};
      if (w->double_quant) {
        t.absmax_codes = (uint8_t*)(section + w->absmax.offset);
        t.nested_absmax = (float*)(void*)(section + w->nested.offset);
      } else {
        t.absmax = (float*)(void*)(section + w->absmax.offset);
      }
      qd_nf4_dequantize(&l, &t, dst);
      return QD_OK;
    }
  }
  return QD_ERR(BAD_INPUT, INTERNAL, "weight '%s': unknown format %d", w->name, (int)w->format);
}
