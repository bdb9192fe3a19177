/* bitsandbytes NF4 checkpoints; see bnb_nf4.h. */
#include "ir/bnb_nf4.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/strict_json.h"
#include "qd/allocator.h"

static const char* qd_torch_dtype_(qd_dtype_t d) {
  switch (d) {
    case QD_DTYPE_BF16: return "bfloat16";
    case QD_DTYPE_F16: return "float16";
    case QD_DTYPE_F32: return "float32";
    default: return NULL;
  }
}

bool qd_bnb_nf4_present(const qd_checkpoint_t* ckpt, const char* name) {
  char key[1024];
  snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__nf4", name);
  return qd_checkpoint_find(ckpt, key) != NULL;
}

static const qd_tensor_info_t* qd_bnb_tensor_(const qd_checkpoint_t* ckpt, const char* name, const char* suffix) {
  char key[1024];
  snprintf(key, sizeof key, "%s%s", name, suffix);
  return qd_checkpoint_find(ckpt, key);
}

static qd_status_t qd_bnb_need_(const qd_checkpoint_t* ckpt, const char* name, const char* suffix, qd_dtype_t dtype,
                                uint64_t numel, const qd_tensor_info_t** out) {
  const qd_tensor_info_t* t = qd_bnb_tensor_(ckpt, name, suffix);
  if (!t)
    return QD_ERR(BAD_INPUT, BNB_MISSING_TENSOR, "%s: bitsandbytes weight '%s' has no '%s%s'", qd_checkpoint_path(ckpt),
                  name, name, suffix);
  if (t->dtype != dtype || t->numel != numel)
    return QD_ERR(BAD_INPUT, BNB_SIZE, "%s: '%s' is %s with %llu elements; its quant_state needs %s with %llu", t->file,
                  t->name, qd_dtype_name(t->dtype), (unsigned long long)t->numel, qd_dtype_name(dtype),
                  (unsigned long long)numel);
  *out = t;
  return QD_OK;
}

static qd_status_t qd_bnb_state_error_(const qd_tensor_info_t* t, const char* what) {
  return QD_ERR(BAD_INPUT, BNB_QUANT_STATE, "%s: '%s': %s", t->file, t->name, what);
}

qd_status_t qd_bnb_nf4_open(const qd_checkpoint_t* ckpt, const char* name, qd_bnb_nf4_t* out) {
  memset(out, 0, sizeof *out);
  const qd_tensor_info_t* st = qd_bnb_tensor_(ckpt, name, ".quant_state.bitsandbytes__nf4");
  if (!st) return QD_ERR(BAD_INPUT, BNB_MISSING_TENSOR, "%s: '%s' has no quant_state", qd_checkpoint_path(ckpt), name);
  if (st->dtype != QD_DTYPE_U8) return qd_bnb_state_error_(st, "the quant_state tensor is not U8 bytes");
  qd_json_options_t jo = {0};
  jo.source_name = st->name;
  jo.syntax_detail = QD_E_BNB_QUANT_STATE;
  jo.utf8_detail = QD_E_BNB_QUANT_STATE;
  qd_json_doc_t* doc;
  QD_TRY(qd_json_parse(st->data, (size_t)st->nbytes, qd_allocator_system(), &jo, &doc));
  const qd_json_value_t* root = qd_json_root(doc);
  qd_status_t s = QD_OK;
  const qd_json_value_t* qt = qd_json_object_get(root, "quant_type");
  const qd_json_value_t* bs = qd_json_object_get(root, "blocksize");
  const qd_json_value_t* dt = qd_json_object_get(root, "dtype");
  const qd_json_value_t* sh = qd_json_object_get(root, "shape");
  const qd_json_value_t* off = qd_json_object_get(root, "nested_offset");
  if (!qt || qt->type != QD_JSON_STRING) s = qd_bnb_state_error_(st, "\"quant_type\" is missing or not a string");
  else if (strcmp(qt->u.string.str, "nf4") != 0)
    s = QD_ERR(UNSUPPORTED, BNB_QUANT_TYPE, "%s: '%s' is quantized as \"%s\"; qd reads nf4", st->file, name,
               qt->u.string.str);
  else if (!bs || bs->type != QD_JSON_NUMBER || !bs->u.number.fits_u64 || bs->u.number.u64 > 4096)
    s = qd_bnb_state_error_(st, "\"blocksize\" is missing or not a block size");
  else if (!sh || sh->type != QD_JSON_ARRAY || sh->u.array.count < 1 || sh->u.array.count > QD_GRAPH_MAX_RANK)
    s = qd_bnb_state_error_(st, "\"shape\" is missing or not a list of sizes");
  if (!s) {
    out->shape.rank = (int32_t)sh->u.array.count;
    uint64_t n = 1;
    for (size_t i = 0; i < sh->u.array.count && !s; i++) {
      const qd_json_value_t* d = sh->u.array.items[i];
      if (d->type != QD_JSON_NUMBER || !d->u.number.fits_u64 || d->u.number.u64 == 0 || d->u.number.u64 > (1ull << 40))
        s = qd_bnb_state_error_(st, "a \"shape\" entry is not a positive size");
      else {
        out->shape.dims[i] = (int64_t)d->u.number.u64;
        n *= d->u.number.u64;
      }
    }
    if (!s && n > (1ull << 40)) s = qd_bnb_state_error_(st, "\"shape\" is too large");
    out->dtype = QD_DTYPE_BF16;
    if (!s && dt && dt->type == QD_JSON_STRING) {
      if (strcmp(dt->u.string.str, "float16") == 0) out->dtype = QD_DTYPE_F16;
      else if (strcmp(dt->u.string.str, "float32") == 0) out->dtype = QD_DTYPE_F32;
    }
    bool dq = off != NULL;
    if (dq && (off->type != QD_JSON_NUMBER || !isfinite(off->u.number.f64)))
      s = qd_bnb_state_error_(st, "\"nested_offset\" is not a number");
    if (!s) s = qd_nf4_layout(n, (int32_t)bs->u.number.u64, dq, &out->layout);
    if (!s && dq) out->offset = (float)off->u.number.f64;
  }
  qd_json_destroy(doc);
  if (s) return qd_status_annotate(s, "while reading bitsandbytes weight '%s'", name);
  const qd_nf4_layout_t* l = &out->layout;
  QD_TRY(qd_bnb_need_(ckpt, name, "", QD_DTYPE_U8, l->packed_bytes, &out->packed));
  const qd_tensor_info_t* qm;
  QD_TRY(qd_bnb_need_(ckpt, name, ".quant_map", QD_DTYPE_F32, 16, &qm));
  if (memcmp(qm->data, qd_nf4_code, 64) != 0)
    return QD_ERR(UNSUPPORTED, BNB_CODE_BOOK, "%s: '%s' is not the NF4 code book", qm->file, qm->name);
  if (l->double_quant) {
    QD_TRY(qd_bnb_need_(ckpt, name, ".absmax", QD_DTYPE_U8, l->blocks, &out->absmax));
    QD_TRY(qd_bnb_need_(ckpt, name, ".nested_absmax", QD_DTYPE_F32, l->nested_blocks, &out->nested_absmax));
    const qd_tensor_info_t* nm;
    QD_TRY(qd_bnb_need_(ckpt, name, ".nested_quant_map", QD_DTYPE_F32, 256, &nm));
    if (memcmp(nm->data, qd_dynamic_map_signed(), 1024) != 0)
      return QD_ERR(UNSUPPORTED, BNB_CODE_BOOK, "%s: '%s' is not bitsandbytes' signed dynamic map", nm->file, nm->name);
  } else {
    QD_TRY(qd_bnb_need_(ckpt, name, ".absmax", QD_DTYPE_F32, l->blocks, &out->absmax));
  }
  return QD_OK;
}

qd_status_t qd_bnb_nf4_dequantize(const qd_bnb_nf4_t* w, qd_allocator_t a, float* dst) {
  /* The mapped statistics may be unaligned: copy them out (from `a`) before dequantizing. */
  const qd_nf4_layout_t* l = &w->layout;
  uint64_t stats = l->double_quant ? (l->nested_blocks ? l->nested_blocks : 1) : l->blocks;
  float* copy;
  QD_TRY(qd_malloc(a, stats * sizeof(float), (void**)&copy));
  qd_nf4_tensor_t t = {(uint8_t*)w->packed->data, NULL, NULL, NULL, w->offset};
  if (l->double_quant) {
    memcpy(copy, w->nested_absmax->data, l->nested_blocks * sizeof(float));
    t.absmax_codes = (uint8_t*)w->absmax->data;
    t.nested_absmax = copy;
  } else {
    memcpy(copy, w->absmax->data, l->blocks * sizeof(float));
    t.absmax = copy;
  }
  qd_nf4_dequantize(l, &t, dst);
  qd_free(a, copy, stats * sizeof(float));
  return QD_OK;
}

/* Python's repr of a float: the shortest digits that read back to the same double, written positionally when
 * the decimal exponent is in [-4, 16) and as d.ddde-XX otherwise (always with a '.0' or digits after it). */
static void qd_python_repr_(double v, char* buf, size_t size) {
  char e[40];
  for (int prec = 0; prec <= 16; prec++) {
    snprintf(e, sizeof e, "%.*e", prec, v);
    if (strtod(e, NULL) == v) break;
  }
  /* e = [-]d[.ddd]e[+-]XX */
  const char* p = e;
  bool neg = *p == '-';
  if (neg) p++;
  char digits[24];
  size_t nd = 0;
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[nd++] = *p;
  int exp = atoi(p + 1);
  while (nd > 1 && digits[nd - 1] == '0') nd--;
  size_t o = 0;
  char out[64];
  if (neg) out[o++] = '-';
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out[o++] = '0';
      out[o++] = '.';
      for (int k = -1; k > exp; k--) out[o++] = '0';
      for (size_t k = 0; k < nd; k++) out[o++] = digits[k];
    } else {
      for (int k = 0; k <= exp; k++) out[o++] = (size_t)k < nd ? digits[k] : '0';
      out[o++] = '.';
      if ((size_t)exp + 1 < nd)
        for (size_t k = (size_t)exp + 1; k < nd; k++) out[o++] = digits[k];
      else
        out[o++] = '0';
    }
    out[o] = '\0';
  } else {
    out[o++] = digits[0];
    if (nd > 1) {
      out[o++] = '.';
      for (size_t k = 1; k < nd; k++) out[o++] = digits[k];
    }
    snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  }
  snprintf(buf, size, "%s", out);
}

size_t qd_bnb_nf4_quant_state(const qd_nf4_layout_t* l, const qd_shape_t* shape, qd_dtype_t dtype, float offset,
                              char* buf, size_t size) {
  char dims[256];
  size_t used = 0;
  for (int32_t i = 0; i < shape->rank && used < sizeof dims; i++)
    used += (size_t)snprintf(dims + used, sizeof dims - used, "%s%lld", i ? ", " : "", (long long)shape->dims[i]);
  const char* dt = qd_torch_dtype_(dtype) ? qd_torch_dtype_(dtype) : "bfloat16";
  if (!l->double_quant)
    return (size_t)snprintf(buf, size, "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%s]}",
                            l->blocksize, dt, dims);
  char off[64];
  qd_python_repr_((double)offset, off, sizeof off);
  return (size_t)snprintf(buf, size,
                          "{\"quant_type\": \"nf4\", \"blocksize\": %d, \"dtype\": \"%s\", \"shape\": [%s], "
                          "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %s}",
                          l->blocksize, dt, dims, off);
}
