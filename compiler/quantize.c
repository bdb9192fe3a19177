/* Weight storage: which weights become NF4, and producing each weight's bytes.
 *
 * NF4 applies to the [out, in] matrices of linear layers (what bitsandbytes' Linear4bit replaces in diffusers and
 * transformers) in components chosen for quantization, minus weights the graph description keeps (transformers'
 * _keep_in_fp32_modules, e.g. T5's wo) and those matching --keep. Everything else (norms, biases, embeddings,
 * convolutions) is stored as bf16, the dtype diffusers runs FLUX in. */
#include <math.h>
#include <string.h>

#include "compiler/compile.h"
#include "runtime/cpu/threadpool.h"

bool qdc_pattern_match(const char* p, const char* s) {
  /* Iterative glob with backtracking to the last '*'. */
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == *s) {
      p++;
      s++;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return false;
    }
  }
  while (*p == '*') p++;
  return *p == '\0';
}

qd_status_t qdc_choose_formats(const qdc_compile_options_t* o, qdc_component_t* c) {
  const qd_graph_t* g = c->results[0].graph;
  QD_TRY(qd_calloc(c->allocator, (size_t)(g->weight_count ? g->weight_count : 1), sizeof *c->weights,
                   (void**)&c->weights));
  for (int32_t i = 0; i < g->weight_count; i++) {
    const qd_weight_t* gw = &g->weights[i];
    qd_plan_weight_t* w = &c->weights[i];
    w->name = gw->name;
    w->shape = gw->shape;
    uint64_t n = (uint64_t)qd_shape_numel(&gw->shape);
    c->params_total += n;
    bool nf4 = o->quant == QDC_QUANT_NF4 && c->spec.quantize && (gw->flags & QD_WEIGHT_LINEAR) &&
               !qd_graph_desc_keep_unquantized(c->desc, gw->name);
    for (int32_t k = 0; nf4 && k < o->keep_count; k++)
      if (qdc_pattern_match(o->keep[k], gw->name)) nf4 = false;
    if (nf4) {
      w->format = QD_WEIGHT_FORMAT_NF4;
      w->blocksize = o->blocksize;
      w->double_quant = o->double_quant;
      c->params_quantized += n;
    } else {
      w->format = o->quant == QDC_QUANT_F32 ? QD_WEIGHT_FORMAT_F32 : QD_WEIGHT_FORMAT_BF16;
    }
    /* Source bytes: what the checkpoint holds for this weight. */
    for (int32_t p = 0; c->binding && p < c->binding->sources[i].part_count; p++) {
      const qd_weight_part_t* part = &c->binding->sources[i].parts[p];
      if (part->bnb) {
        c->bytes_source += qd_nf4_storage_bytes(&part->nf4.layout) * (part->row_end - part->row_begin) /
                           (uint64_t)part->nf4.shape.dims[0];
        continue;
      }
      uint64_t rows = part->tensor->rank ? part->tensor->shape[0] : 1;
      c->bytes_source += rows ? part->tensor->nbytes / rows * (part->row_end - part->row_begin) : 0;
    }
  }
  return QD_OK;
}

typedef struct qdc_quant_job {
  const qd_nf4_layout_t* layout;
  const float* x;
  uint8_t* packed;
  float* absmax;
} qdc_quant_job_t;

static void qdc_quant_range_(void* ctx, int64_t begin, int64_t end) {
  const qdc_quant_job_t* j = ctx;
  qd_nf4_quantize_blocks(j->layout, j->x, (uint64_t)begin, (uint64_t)end, j->packed, j->absmax);
}

typedef struct qdc_error_job {
  const qd_nf4_layout_t* layout;
  const float* x;
  const uint8_t* packed;
  const float* absmax; /* final, after double quantization */
  double* num;         /* per task slot */
  double* den;
} qdc_error_job_t;

/* Squared error of blocks [begin, end); tasks write disjoint partial sums indexed by their first block. */
static void qdc_error_range_(void* ctx, int64_t begin, int64_t end) {
  const qdc_error_job_t* j = ctx;
  double num = 0, den = 0;
  const qd_nf4_layout_t* l = j->layout;
  for (int64_t b = begin; b < end; b++) {
    uint64_t i0 = (uint64_t)b * (uint64_t)l->blocksize;
    uint64_t i1 = i0 + (uint64_t)l->blocksize < l->count ? i0 + (uint64_t)l->blocksize : l->count;
    for (uint64_t i = i0; i < i1; i++) {
      uint8_t byte = j->packed[i / 2];
      float q = qd_nf4_code[(i & 1) ? (byte & 15) : (byte >> 4)] * j->absmax[b];
      double d = (double)j->x[i] - (double)q;
      num += d * d;
      den += (double)j->x[i] * (double)j->x[i];
    }
  }
  j->num[begin] = num;
  j->den[begin] = den;
}

qd_status_t qdc_quantize_nf4(qd_allocator_t a, const qd_nf4_layout_t* l, const float* x, uint8_t* packed,
                             uint8_t* absmax, float* nested, float* out_offset, double* error_num, double* error_den,
                             void* pool_ptr) {
  qd_threadpool_t* pool = pool_ptr;
  /* fp32 absmax for every block first (in place when it is what we store), then double quantization. */
  float* absmax_f32 = NULL;
  double *num = NULL, *den = NULL;
  qd_status_t s = QD_OK;
  if (l->double_quant)
    s = qd_malloc(a, l->blocks * sizeof(float), (void**)&absmax_f32);
  else
    absmax_f32 = (float*)(void*)absmax;
  if (!s) s = qd_calloc(a, l->blocks, sizeof(double), (void**)&num);
  if (!s) s = qd_calloc(a, l->blocks, sizeof(double), (void**)&den);
  if (!s) {
    qdc_quant_job_t job = {l, x, packed, absmax_f32};
    qd_parallel_for(pool, (int64_t)l->blocks, 256, qdc_quant_range_, &job);
    *out_offset = 0;
    if (l->double_quant) {
      qd_nf4_tensor_t t = {packed, NULL, absmax, nested, 0};
      qd_nf4_compress_absmax(l, absmax_f32, &t);
      *out_offset = t.offset;
      qd_nf4_absmax(l, &t, absmax_f32); /* the scales a reader will see */
    }
    qdc_error_job_t ej = {l, x, packed, absmax_f32, num, den};
    qd_parallel_for(pool, (int64_t)l->blocks, 256, qdc_error_range_, &ej);
    for (uint64_t b = 0; b < l->blocks; b++) {
      *error_num += num[b];
      *error_den += den[b];
    }
  }
  if (l->double_quant) qd_free(a, absmax_f32, l->blocks * sizeof(float));
  qd_free(a, num, l->blocks * sizeof(double));
  qd_free(a, den, l->blocks * sizeof(double));
  return s;
}

/* A weight the checkpoint already holds in bitsandbytes NF4 with the block size and double quantization the plan
 * wants is copied as it is: requantizing dequantized NF4 would add a second rounding. Returns whether it was. */
static bool qdc_copy_bnb_(qdc_component_t* c, int32_t i, uint8_t* data, uint8_t* absmax, uint8_t* nested) {
  qd_plan_weight_t* w = &c->weights[i];
  if (!c->binding || w->format != QD_WEIGHT_FORMAT_NF4) return false;
  const qd_weight_part_t* part = &c->binding->sources[i].parts[0];
  if (c->binding->sources[i].part_count != 1 || !part->bnb || part->row_begin != 0 ||
      part->row_end != (uint64_t)part->nf4.shape.dims[0])
    return false;
  const qd_nf4_layout_t* l = &part->nf4.layout;
  if (l->blocksize != w->blocksize || l->double_quant != w->double_quant) return false;
  memcpy(data, part->nf4.packed->data, l->packed_bytes);
  if (l->double_quant) {
    memcpy(absmax, part->nf4.absmax->data, l->blocks);
    memcpy(nested, part->nf4.nested_absmax->data, l->nested_blocks * sizeof(float));
    w->offset = part->nf4.offset;
  } else {
    memcpy(absmax, part->nf4.absmax->data, l->blocks * sizeof(float));
  }
  c->weights_copied++;
  return true;
}

qd_status_t qdc_pack_weight(qdc_component_t* c, int32_t i, float* x, uint8_t* data, uint8_t* absmax,
                            uint8_t* nested, void* pool_ptr) {
  qd_threadpool_t* pool = pool_ptr;
  const qd_plan_weight_t* w = &c->weights[i];
  uint64_t n = (uint64_t)qd_shape_numel(&w->shape);
  if (qdc_copy_bnb_(c, i, data, absmax, nested)) return QD_OK;
  if (c->binding)
    QD_TRY(qd_weight_binding_read_f32(c->binding, i, x));
  else
    qdc_synth_fill(&c->results[0].graph->weights[i], c->seed, x, pool);
  if (w->format == QD_WEIGHT_FORMAT_F32) {
    memcpy(data, x, n * 4);
    return QD_OK;
  }
  if (w->format == QD_WEIGHT_FORMAT_BF16) {
    for (uint64_t k = 0; k < n; k++) {
      uint16_t v = qd_f32_to_bf16(x[k]);
      memcpy(data + 2 * k, &v, 2);
    }
    return QD_OK;
  }
  qd_nf4_layout_t l;
  QD_TRY(qd_plan_weight_nf4_layout(w, &l));
  float offset = 0;
  QD_TRY(qdc_quantize_nf4(c->allocator, &l, x, data, absmax, (float*)(void*)nested, &offset, &c->weight_error_num,
                          &c->weight_error_den, pool));
  c->weights[i].offset = offset;
  return QD_OK;
}
