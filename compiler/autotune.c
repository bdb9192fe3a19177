/* qdc: autotuning a plan on the GPU present; see autotune.h. */
#include "compiler/autotune.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "compiler/kernel_build.h"
#include "compiler/plan_writer.h"
#include "qd/log.h"
#include "qd/plan.h"
#include "qd/plan_file.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda/tuning.h"
#include "runtime/cuda_cublaslt.h"
#include "runtime/cuda_driver.h"
#include "runtime/pipeline/latents.h"
#include "runtime/plan_internal.h"

/* --- inputs ------------------------------------------------------------------------------------------------------ */

/* Seeded inputs: floating ones normal with deviation 0.5 (torch's generator, runtime/pipeline/latents.h), integer
 * ones (token ids) zero, a valid id everywhere. */
static qd_status_t qdc_tune_inputs_(qd_cuda_executor_t* e, qd_allocator_t a) {
  const qd_graph_t* g = qd_cuda_executor_graph(e);
  qd_torch_generator_t gen;
  qd_torch_generator_seed(&gen, 0);
  for (int32_t i = 0; i < g->input_count; i++) {
    const qd_value_t* v = &g->values[g->inputs[i]];
    uint64_t n = (uint64_t)qd_shape_numel(&v->shape), bytes = 0;
    bool fl = qd_dtype_is_float(v->dtype);
    if (fl) {
      bytes = n * 4;
    } else if (!qd_dtype_bytes_for(v->dtype, n, &bytes)) {
      return QD_ERR(UNSUPPORTED, INTERNAL, "graph input '%s' has a type autotuning cannot fill", v->name);
    }
    /* qd_torch_randn draws at least 16 values */
    uint64_t held = fl && n < 16 ? 16 * 4 : bytes ? bytes : 1;
    void* data;
    QD_TRY(qd_calloc(a, 1, held, &data));
    qd_status_t s = fl ? qd_torch_randn(&gen, data, n < 16 ? 16 : (size_t)n) : QD_OK;
    for (uint64_t k = 0; fl && k < n; k++) ((float*)data)[k] *= 0.5f;
    qd_tensor_t t = {fl ? QD_DTYPE_F32 : v->dtype, v->shape, data, (size_t)bytes};
    if (!s) s = qd_cuda_executor_set_input(e, i, &t);
    qd_free(a, data, held);
    QD_TRY_CTX(s, "input '%s'", v->name);
  }
  return QD_OK;
}

/* Keeps the GPU busy with the program for about half a second (at least three runs), so that what is timed next runs
 * at the clock a long generation would see rather than at an idle GPU's. */
static qd_status_t qdc_tune_warm_(qd_cuda_executor_t* e) {
  double t0 = qd_now_seconds();
  for (int i = 0; i < 3 || qd_now_seconds() - t0 < 0.5; i++) QD_TRY(qd_cuda_executor_run(e));
  return QD_OK;
}

/* One measurement: after warming, the graph replay's median over about half a second (at least 10 runs) and one eager
 * pass per op class. */
static qd_status_t qdc_tune_measure_(qd_cuda_executor_t* e, double* step_ms, double class_ms[6]) {
  QD_TRY(qdc_tune_warm_(e));
  qd_cuda_timing_t t;
  QD_TRY(qd_cuda_executor_time(e, 3, false, &t));
  int n = t.median_ms > 0 ? (int)(500.0 / t.median_ms) : 10;
  QD_TRY(qd_cuda_executor_time(e, n < 10 ? 10 : n > 200 ? 200 : n, false, &t));
  *step_ms = t.median_ms;
  qd_cuda_timing_t c;
  QD_TRY(qd_cuda_executor_time(e, 0, true, &c));
  memcpy(class_ms, c.class_ms, sizeof c.class_ms);
  return QD_OK;
}

static int qdc_dcmp_(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static double qdc_rel_l2_(const qd_tensor_t* x, const qd_tensor_t* ref) {
  int64_t n = qd_shape_numel(&ref->shape);
  if (qd_shape_numel(&x->shape) != n) return INFINITY;
  double num = 0, den = 0;
  for (int64_t k = 0; k < n; k++) {
    double d = (double)((const float*)x->data)[k] - ((const float*)ref->data)[k];
    num += d * d;
    den += (double)((const float*)ref->data)[k] * ((const float*)ref->data)[k];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* --- the new plan ------------------------------------------------------------------------------------------------ */

/* Component c's KERN images: the plan's, plus a cubin of every tuned kernel for the architecture tuned on that the
 * plan lacks. */
static qd_status_t qdc_tune_kern_(const qd_plan_t* plan, int32_t c, const qd_cuda_kernel_list_t* tuned,
                                  qd_allocator_t a, qdc_component_kernels_t* out, qd_nvrtc_output_t* built,
                                  int32_t* built_count) {
  const qd_plan_component_t* pc = qd_plan_component(plan, c);
  int32_t cap = pc->kernel_count + tuned->count;
  memset(out, 0, sizeof *out);
  if (cap == 0) return QD_OK;
  QD_TRY(qd_calloc(a, (size_t)cap, sizeof *out->images, (void**)&out->images));
  for (int32_t i = 0; i < pc->kernel_count; i++) {
    qdc_kernel_image_t* im = &out->images[out->count++];
    im->key = pc->kernels[i].key;
    im->function = pc->kernels[i].function;
    snprintf(im->arch, sizeof im->arch, "%s", pc->kernels[i].arch);
    im->data = pc->kernels[i].data;
    im->size = pc->kernels[i].size;
  }
  for (int32_t k = 0; k < tuned->count; k++) {
    const qd_cuda_kernel_t* kv = &tuned->items[k];
    if (qd_plan_kernels_find(pc->kernels, pc->kernel_count, kv->key, kv->arch)) continue;
    qd_nvrtc_output_t* o = &built[(*built_count)];
    QD_TRY(qd_cuda_kernel_compile(a, kv, NULL, QD_NVRTC_OUTPUT_CUBIN, o));
    (*built_count)++;
    qdc_kernel_image_t* im = &out->images[out->count++];
    im->key = kv->key;
    im->function = kv->function;
    snprintf(im->arch, sizeof im->arch, "%s", kv->arch);
    im->data = o->cubin;
    im->size = o->cubin_size;
  }
  qsort(out->images, (size_t)out->count, sizeof *out->images, qdc_kernel_image_cmp);
  return QD_OK;
}

/* Writes `to`: every section of the plan as it is (an old TUNE section left out), component KERN sections with the
 * tuned kernels added, and at the end a TUNE section per component. */
qd_status_t qdc_autotune_write_plan(const qd_plan_t* plan, const char* to, qd_tuning_t* const* records,
                                   const qd_cuda_kernel_list_t* tuned, qd_allocator_t a) {
  qd_plan_file_t* pf = qd_plan_container(plan);
  const qd_plan_kernel_targets_t* targets = qd_plan_kernel_targets(plan);
  int32_t comps = qd_plan_component_count(plan);
  qd_plan_writer_t* w;
  QD_TRY(qd_plan_writer_create(to, a, &w));
  qd_status_t s = QD_OK;
  int32_t cap = 0;
  for (int32_t c = 0; c < comps; c++) cap += tuned[c].count;
  qd_nvrtc_output_t* built = NULL;
  int32_t built_count = 0;
  s = qd_calloc(a, (size_t)cap + 1, sizeof *built, (void**)&built);
  for (size_t i = 0; i < qd_plan_file_section_count(pf) && !s; i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    if (sec->kind == QD_PLAN_KIND_TUNE) continue; /* replaced below */
    int32_t c = sec->kind == QD_PLAN_KIND_KERN ? qd_plan_find_component(plan, sec->name) : -1;
    /* A tuned kernel joins KERN only for an architecture the plan's kernels cover (else qdrun compiles it). */
    int cc = c >= 0 && records[c] ? qd_kernel_target_parse(records[c]->arch) : 0;
    bool covered = false;
    for (int32_t t = 0; cc && targets->present && t < targets->count; t++) covered = covered || cc == targets->cc[t];
    if (c >= 0 && covered && tuned[c].count) {
      qdc_component_kernels_t k;
      s = qdc_tune_kern_(plan, c, &tuned[c], a, &k, built, &built_count);
      if (!s) s = qdc_kern_section_write(a, &k, sec->name, w);
      if (k.images) qd_free(a, k.images, (size_t)(qd_plan_component(plan, c)->kernel_count + tuned[c].count) *
                                             sizeof *k.images);
      continue;
    }
    s = qd_plan_writer_begin_section(w, sec->kind, sec->name, sec->flags, (size_t)1 << sec->align_log2);
    /* Weight sections run to gigabytes: written in pieces so progress and memory stay even. */
    for (uint64_t at = 0; at < sec->size && !s; at += 64u << 20) {
      uint64_t n = sec->size - at < (64u << 20) ? sec->size - at : (64u << 20);
      s = qd_plan_writer_write(w, (const uint8_t*)sec->data + at, (size_t)n);
    }
    if (!s) s = qd_plan_writer_end_section(w);
  }
  for (int32_t c = 0; c < comps && !s; c++) {
    if (!records[c]) continue;
    cJSON* doc = qd_tuning_to_json(records[c]);
    char* text = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
      s = QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "the tuning records of '%s'", qd_plan_component_name(plan, c));
      break;
    }
    s = qd_plan_writer_begin_section(w, QD_PLAN_KIND_TUNE, qd_plan_component_name(plan, c), 0, 0);
    if (!s) s = qd_plan_writer_write(w, text, strlen(text));
    if (!s) s = qd_plan_writer_end_section(w);
    cJSON_free(text);
  }
  if (!s) s = qd_plan_writer_finish(w);
  qd_plan_writer_destroy(w);
  for (int32_t i = 0; i < built_count; i++) qd_nvrtc_output_deinit(&built[i]);
  if (built) qd_free(a, built, ((size_t)cap + 1) * sizeof *built);
  return s;
}

/* --- tuning ------------------------------------------------------------------------------------------------------ */

typedef struct qdc_tune_state {
  qd_allocator_t a;
  qd_plan_t* plan;
  qd_tuning_t* records[16];
  qd_cuda_kernel_list_t tuned[16];
} qdc_tune_state_t;

static qd_status_t qdc_tune_components_(qdc_tune_state_t* st, bool max, qdc_autotune_report_t* r) {
  int32_t comps = qd_plan_component_count(st->plan);
  if (comps > 16) return QD_ERR(UNSUPPORTED, INTERNAL, "autotuning handles at most 16 components, not %d", comps);
  for (int32_t c = 0; c < comps; c++) {
    const char* name = qd_plan_component_name(st->plan, c);
    for (int32_t res = 0; res < qd_plan_resolution_count(st->plan, c); res++) {
      if (r->row_count == QDC_AUTOTUNE_MAX_ROWS)
        return QD_ERR(UNSUPPORTED, INTERNAL, "autotuning handles at most %d component sizes", QDC_AUTOTUNE_MAX_ROWS);
      qdc_autotune_row_t* row = &r->rows[r->row_count++];
      memset(row, 0, sizeof *row);
      snprintf(row->component, sizeof row->component, "%s", name);
      qd_plan_resolution(st->plan, c, res, &row->width, &row->height, &row->batch);
      qd_cuda_executor_options_t o;
      qd_cuda_executor_options_default(&o);
      o.ignore_tuning = true;
      qd_cuda_executor_t* e = NULL;
      qd_status_t s = qd_cuda_executor_create(st->plan, c, res, &o, st->a, &e);
      if (s) {
        /* A component the GPU cannot run at all (a head size without kernels, ...) stays as it is; the generator
         * reports the same when it is used. Out of memory is not that. */
        if (qd_status_code(s) == QD_CODE_OUT_OF_MEMORY) return s;
        char why[160];
        qd_status_format(s, why, sizeof why);
        qd_status_free(s);
        snprintf(row->note, sizeof row->note, "not tuned: %s", why);
        continue;
      }
      if (!st->records[c]) s = qd_tuning_create(st->a, &st->records[c]);
      int32_t gemms_before = st->records[c] ? st->records[c]->gemm_count : 0;
      int32_t kernels_before = st->records[c] ? st->records[c]->kernel_count : 0;
      if (!s) s = qdc_tune_inputs_(e, st->a);
      if (!s) s = qd_cuda_executor_run(e);
      if (!s) s = qd_cuda_executor_autotune(e, max, NULL, st->records[c], &st->tuned[c]);
      qd_cuda_executor_destroy(e);
      QD_TRY_CTX(s, "autotuning '%s' at %lldx%lld", name, (long long)row->width, (long long)row->height);
      const qd_tuning_t* t = st->records[c];
      row->tuned_here = true;
      row->component_index = c;
      row->resolution_index = res;
      row->gemms = t->gemm_count - gemms_before;
      row->kernels_tuned = t->kernel_count - kernels_before;
      snprintf(r->device, sizeof r->device, "%s", t->device);
      snprintf(r->arch, sizeof r->arch, "%s", t->arch);
      r->cublaslt = t->cublaslt, r->driver = t->driver;
    }
  }
  return QD_OK;
}

/* An executor for a row's component and size, with or without the plan's records, run once on the seeded inputs;
 * its first output. On failure *out_e is the executor when it was made (the caller destroys it). */
static qd_status_t qdc_tune_open_(const qd_plan_t* plan, const qdc_autotune_row_t* row, bool untuned, qd_allocator_t a,
                                  qd_cuda_executor_t** out_e, qd_tensor_t* out) {
  qd_cuda_executor_options_t o;
  qd_cuda_executor_options_default(&o);
  o.ignore_tuning = untuned;
  QD_TRY(qd_cuda_executor_create(plan, row->component_index, row->resolution_index, &o, a, out_e));
  QD_TRY(qdc_tune_inputs_(*out_e, a));
  QD_TRY(qd_cuda_executor_run(*out_e));
  return qd_cuda_executor_get_output(*out_e, 0, out);
}

/* Every tuned row of the plan at `path`: the same inputs through an executor with the records and one without
 * (both from that plan), the outputs compared, then each timed three times, alternating, the median kept. Both
 * executors at once when the GPU holds them, else one after the other. */
static qd_status_t qdc_tune_check_(const char* path, qdc_tune_state_t* st, qdc_autotune_report_t* r) {
  qd_plan_t* plan;
  QD_TRY(qd_plan_open(path, st->a, 0, &plan));
  qd_status_t s = QD_OK;
  for (int32_t i = 0; i < r->row_count && !s; i++) {
    qdc_autotune_row_t* row = &r->rows[i];
    if (!row->tuned_here) continue;
    qd_cuda_executor_t* e[2] = {NULL, NULL}; /* untuned, tuned */
    qd_tensor_t out[2] = {{0}, {0}};
    double step[2][3], cls[2][3][6];
    for (int k = 0; k < 2 && !s; k++) {
      s = qdc_tune_open_(plan, row, k == 0, st->a, &e[k], &out[k]);
      if (s && k == 1 && qd_status_code(s) == QD_CODE_DEVICE_OUT_OF_MEMORY) {
        /* Not both at once: measure the untuned one now, the tuned one after it. */
        qd_status_free(s);
        s = QD_OK;
        for (int rep = 0; rep < 3 && !s; rep++) s = qdc_tune_measure_(e[0], &step[0][rep], cls[0][rep]);
        qd_cuda_executor_destroy(e[0]);
        e[0] = NULL;
        if (!s) s = qdc_tune_open_(plan, row, false, st->a, &e[1], &out[1]);
      }
    }
    for (int rep = 0; rep < 3 && !s; rep++)
      for (int k = 0; k < 2 && !s; k++)
        if (e[k]) s = qdc_tune_measure_(e[k], &step[k][rep], cls[k][rep]);
    for (int k = 0; k < 2; k++) qd_cuda_executor_destroy(e[k]);
    if (!s) {
      for (int k = 0; k < 2; k++) {
        qsort(step[k], 3, sizeof step[k][0], qdc_dcmp_);
        double* ms = k ? row->tuned_ms : row->untuned_ms;
        for (int c = 0; c < 6; c++) {
          double v[3] = {cls[k][0][c], cls[k][1][c], cls[k][2][c]};
          qsort(v, 3, sizeof v[0], qdc_dcmp_);
          ms[c] = v[1];
        }
      }
      row->untuned_step_ms = step[0][1];
      row->tuned_step_ms = step[1][1];
      row->rel_l2 = qdc_rel_l2_(&out[1], &out[0]);
      /* Variants sum in another order; bf16 activations round the difference into every layer, and a deep
       * program (the VAE's 30 convolutions and group norms) grows it to a few 1e-2 (1.3e-2 and 2.0e-2 on an H200,
       * where the GPU's own distance from the CPU reference is 1.5e-2). A wrong kernel is off by far more. */
      if (!(row->rel_l2 <= 5e-2))
        s = QD_ERR(INTERNAL, INTERNAL, "'%s' at %lldx%lld: the tuned plan's output differs from the untuned one by "
                   "%.3e (relative L2; at most 5e-2 expected): a tuned variant computes something else; the plan "
                   "stays untuned", row->component, (long long)row->width, (long long)row->height, row->rel_l2);
    }
    for (int k = 0; k < 2; k++) qd_tensor_free(st->a, &out[k]);
  }
  qd_plan_close(plan);
  return s;
}

/* A component keeps its records only when its tuned steps, summed over its sizes, beat the untuned ones by at least
 * 0.5%: a variant that won alone can lose inside the program (an H200 at its power limit runs a FLUX step at a lower
 * clock than a single GEMM sees). Returns how many components kept theirs. */
static int32_t qdc_tune_decide_(qdc_tune_state_t* st, qdc_autotune_report_t* r) {
  int32_t kept = 0;
  for (int32_t c = 0; c < 16; c++) {
    if (!st->records[c]) continue;
    double u = 0, t = 0;
    for (int32_t i = 0; i < r->row_count; i++)
      if (r->rows[i].tuned_here && r->rows[i].component_index == c)
        u += r->rows[i].untuned_step_ms, t += r->rows[i].tuned_step_ms;
    bool any = st->records[c]->gemm_count || st->records[c]->kernel_count;
    bool keep = any && t <= 0.995 * u;
    for (int32_t i = 0; i < r->row_count; i++)
      if (r->rows[i].tuned_here && r->rows[i].component_index == c) {
        r->rows[i].kept = keep;
        if (!keep)
          snprintf(r->rows[i].note, sizeof r->rows[i].note, "%s",
                   any ? "no faster in the whole program: records dropped" : "nothing beat the defaults");
      }
    if (keep) {
      kept++;
    } else {
      qd_tuning_destroy(st->records[c]);
      st->records[c] = NULL;
      st->tuned[c].count = 0;
    }
  }
  return kept;
}

qd_status_t qdc_autotune_plan(const char* path, bool max, qd_allocator_t a, qdc_autotune_report_t* r) {
  memset(r, 0, sizeof *r);
  r->max = max;
  double t0 = qd_now_seconds();
  const qd_cuda_driver_t* cu;
  qd_status_t s = qd_cuda_driver_load(&cu);
  int devices = 0;
  if (!s) s = QD_CU_STATUS(cu->cuDeviceGetCount(&devices));
  if (s || devices == 0) {
    char why[200] = "no CUDA device";
    if (s) qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    snprintf(r->why_not, sizeof r->why_not, "no GPU to tune on (%s); the plan stays untuned", why);
    return QD_OK;
  }
  qdc_tune_state_t* st;
  QD_TRY(qd_calloc(a, 1, sizeof *st, (void**)&st));
  st->a = a;
  s = qd_plan_open(path, a, 0, &st->plan);
  for (int32_t c = 0; c < 16; c++) qd_cuda_kernel_list_init(&st->tuned[c], (qd_cuda_kernel_target_t){0, false}, a);
  if (!s) s = qdc_tune_components_(st, max, r);
  /* The new plan beside the old one, checked, then (with what proved faster) in its place. */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tuned.%d", path, (int)getpid());
  bool written = false;
  if (!s) {
    s = qdc_autotune_write_plan(st->plan, tmp, st->records, st->tuned, a);
    written = !s;
  }
  if (!s) s = qdc_tune_check_(tmp, st, r);
  int32_t kept = 0, had = 0;
  for (int32_t c = 0; c < 16; c++) had += st->records[c] != NULL;
  if (!s) kept = qdc_tune_decide_(st, r);
  if (!s && kept && kept < had) s = qdc_autotune_write_plan(st->plan, tmp, st->records, st->tuned, a);
  if (!s && kept && rename(tmp, path) != 0)
    s = QD_ERR(IO, IO_RENAME, "renaming the tuned plan %s to %s failed", tmp, path);
  if ((s || !kept) && written) unlink(tmp);
  r->tuned = !s;
  r->changed = !s && kept > 0;
  r->seconds = qd_now_seconds() - t0;
  for (int32_t c = 0; c < 16; c++) {
    qd_tuning_destroy(st->records[c]);
    qd_cuda_kernel_list_deinit(&st->tuned[c]);
  }
  qd_plan_close(st->plan);
  qd_free(a, st, sizeof *st);
  return s;
}

/* --- the report -------------------------------------------------------------------------------------------------- */


static const char* const qdc_tune_classes_[6] = {"linear", "dequantize", "attention", "norm", "elementwise",
                                                 "other"};

cJSON* qdc_autotune_json(const qdc_autotune_report_t* r) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddBoolToObject(root, "tuned", r->tuned);
  cJSON_AddBoolToObject(root, "changed", r->changed);
  if (!r->tuned) cJSON_AddStringToObject(root, "why_not", r->why_not);
  cJSON_AddStringToObject(root, "mode", r->max ? "max" : "default");
  cJSON_AddStringToObject(root, "device", r->device);
  cJSON_AddStringToObject(root, "arch", r->arch);
  cJSON_AddNumberToObject(root, "cublaslt", r->cublaslt);
  cJSON_AddNumberToObject(root, "driver", r->driver);
  cJSON_AddNumberToObject(root, "seconds", r->seconds);
  cJSON* rows = cJSON_AddArrayToObject(root, "components");
  for (int32_t i = 0; rows && i < r->row_count; i++) {
    const qdc_autotune_row_t* x = &r->rows[i];
    cJSON* e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddItemToArray(rows, e);
    cJSON_AddStringToObject(e, "component", x->component);
    cJSON_AddNumberToObject(e, "width", (double)x->width);
    cJSON_AddNumberToObject(e, "height", (double)x->height);
    cJSON_AddNumberToObject(e, "batch", (double)x->batch);
    cJSON_AddBoolToObject(e, "tuned", x->tuned_here);
    cJSON_AddBoolToObject(e, "kept", x->kept);
    if (x->note[0]) cJSON_AddStringToObject(e, "note", x->note);
    if (!x->tuned_here) continue;
    cJSON_AddNumberToObject(e, "gemms_changed", x->gemms);
    cJSON_AddNumberToObject(e, "kernels_tuned", x->kernels_tuned);
    cJSON_AddNumberToObject(e, "untuned_step_ms", x->untuned_step_ms);
    cJSON_AddNumberToObject(e, "tuned_step_ms", x->tuned_step_ms);
    cJSON_AddNumberToObject(e, "rel_l2", x->rel_l2);
    cJSON* u = cJSON_AddObjectToObject(e, "untuned_class_ms");
    cJSON* t = cJSON_AddObjectToObject(e, "tuned_class_ms");
    for (int k = 0; k < 6 && u && t; k++) {
      cJSON_AddNumberToObject(u, qdc_tune_classes_[k], x->untuned_ms[k]);
      cJSON_AddNumberToObject(t, qdc_tune_classes_[k], x->tuned_ms[k]);
    }
  }
  return root;
}

void qdc_autotune_print(const qdc_autotune_report_t* r, bool json) {
  if (json) {
    cJSON* root = qdc_autotune_json(r);
    char* text = root ? cJSON_Print(root) : NULL;
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
    return;
  }
  if (!r->tuned) {
    printf("autotune    %s\n", r->why_not);
    return;
  }
  bool any = false;
  for (int32_t i = 0; i < r->row_count; i++) any = any || r->rows[i].tuned_here;
  if (!any)
    printf("autotune    %s: no component could be tuned on the GPU; the plan is unchanged\n", r->max ? "max" : "default");
  else
    printf("autotune    %s on %s (%s), cuBLASLt %d, in %.1f s: %s\n", r->max ? "max" : "default", r->device, r->arch,
           r->cublaslt, r->seconds, r->changed ? "the plan keeps the records that proved faster" : "nothing proved "
           "faster; the plan is unchanged");
  printf("  %-14s %-12s %6s %7s  %-19s", "component", "size", "GEMMs", "kernels", "step ms (graph)");
  for (int k = 0; k < 6; k++) printf(" %-15s", qdc_tune_classes_[k]);
  printf(" %s\n", "output");
  for (int32_t i = 0; i < r->row_count; i++) {
    const qdc_autotune_row_t* x = &r->rows[i];
    char size[40], cell[48];
    snprintf(size, sizeof size, "%lldx%lld", (long long)x->width, (long long)x->height);
    if (x->batch > 1)
      snprintf(size, sizeof size, "%lldx%lldx%lld", (long long)x->width, (long long)x->height, (long long)x->batch);
    if (!x->tuned_here) {
      printf("  %-14s %-12s %s\n", x->component, size, x->note);
      continue;
    }
    snprintf(cell, sizeof cell, "%.2f -> %.2f", x->untuned_step_ms, x->tuned_step_ms);
    printf("  %-14s %-12s %6d %7d  %-19s", x->component, size, x->gemms, x->kernels_tuned, cell);
    for (int k = 0; k < 6; k++) {
      snprintf(cell, sizeof cell, "%.2f -> %.2f", x->untuned_ms[k], x->tuned_ms[k]);
      printf(" %-15s", cell);
    }
    printf(" %.1e%s%s\n", x->rel_l2, x->note[0] ? "  " : "", x->note);
  }
  printf("  (GEMMs, kernels: descriptors and sites given another algorithm or variant; per op class: eager launches,\n"
         "   one after another; untuned and tuned measured alternately, three times each, medians)\n");
}
