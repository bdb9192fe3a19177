/* qdrun --check: see runtime/qdrun_check.h. */
#include "runtime/qdrun_check.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/device.h"
#include "qd/log.h"
#include "qd/plan.h"
#include "qd/plan_file.h"
#include "runtime/cuda/device_memory.h"
#include "runtime/cuda/executor.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda/tuning.h"
#include "runtime/cuda_nvrtc.h"
#include "runtime/pipeline/schedule.h"
#include "runtime/plan_internal.h"

/* The CUDA context, cuBLASLt's handle and the loaded modules take memory the executor does not allocate itself;
 * about 300-500 MiB on current drivers. */
#define QDRUN_CONTEXT_RESERVE QD_SCHEDULE_CONTEXT_RESERVE

/* A pipeline plan's offload schedules at each of its sizes (runtime/pipeline/schedule.h). */
enum { QDRUN_MAX_SCHEDULE_SIZES = 16 };
typedef struct qdrun_schedules {
  int count;
  int64_t width[QDRUN_MAX_SCHEDULE_SIZES], height[QDRUN_MAX_SCHEDULE_SIZES], batch[QDRUN_MAX_SCHEDULE_SIZES];
  qd_schedule_estimate_t est[QDRUN_MAX_SCHEDULE_SIZES][QD_OFFLOAD_SEQUENTIAL + 1]; /* per size, per mode */
  qd_schedule_estimate_t tiled[QDRUN_MAX_SCHEDULE_SIZES]; /* sequential with the VAE in tiles (peak 0: no tiles) */
  uint64_t least; /* the smallest peak any schedule needs at the largest size */
  int recorded;   /* sizes read from the plan's SCHD section (the others computed) */
  char problem[512];
} qdrun_schedules_t;

/* Nothing for a plan that is not a whole pipeline (no schedules then). */
static void qdrun_schedules_(const qd_plan_t* p, qdrun_schedules_t* out) {
  memset(out, 0, sizeof *out);
  int32_t tr = qd_plan_find_component(p, "transformer");
  if (tr < 0 || qd_plan_find_component(p, "vae") < 0) return;
  for (int32_t r = 0; r < qd_plan_resolution_count(p, tr) && out->count < QDRUN_MAX_SCHEDULE_SIZES; r++) {
    int k = out->count;
    qd_plan_resolution(p, tr, r, &out->width[k], &out->height[k], &out->batch[k]);
    qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS];
    bool recorded = false;
    qd_status_t s = qd_schedule_plan_sizes(p, out->width[k], out->height[k], out->batch[k], sizes, &recorded);
    if (s) { /* a component without that size (the generator would refuse it too), or a damaged record */
      char why[512];
      qd_status_format(s, why, sizeof why);
      snprintf(out->problem, sizeof out->problem, "%s", why);
      qd_status_free(s);
      continue;
    }
    out->recorded += recorded;
    for (int m = QD_OFFLOAD_NONE; m <= QD_OFFLOAD_SEQUENTIAL; m++)
      qd_schedule_combine(sizes, (qd_offload_mode_t)m, 0, &out->est[k][m]);
    uint64_t smallest = out->est[k][QD_OFFLOAD_SEQUENTIAL].peak;
    bool tiles = false;
    s = qd_schedule_vae_tile_sizes(p, out->width[k], out->height[k], &sizes[QD_SCHEDULE_VAE], &tiles);
    if (s) { /* a tile program that does not instantiate: the decode would say so; no tiles here */
      qd_status_free(s);
      tiles = false;
    }
    if (tiles) {
      qd_schedule_combine(sizes, QD_OFFLOAD_SEQUENTIAL, 0, &out->tiled[k]);
      out->tiled[k].vae_tiled = true;
      if (out->tiled[k].peak < smallest) smallest = out->tiled[k].peak;
    }
    if (smallest > out->least) out->least = smallest;
    out->count++;
  }
}

typedef struct qdrun_need {
  uint64_t resident;        /* every component's weights, their bf16 copies and code tables */
  qd_cuda_memory_needs_t working; /* the component and resolution with the largest working set (its weights too) */
  char working_where[96];   /* "transformer at 1024x1024" */
  uint64_t total;
} qdrun_need_t;

typedef struct qdrun_device_check {
  const qd_device_info_t* info;
  qd_cuda_kernel_choice_t choice;
  int32_t variants;         /* distinct kernels the plan's programs launch on it */
  int32_t missing;          /* of those, not in the plan for the chosen source */
  bool can_run;
  char problems[4][768];
  int problem_count;
} qdrun_device_check_t;

static void qdrun_problem_(qdrun_device_check_t* d, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static void qdrun_problem_(qdrun_device_check_t* d, const char* fmt, ...) {
  if (d->problem_count == 4) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(d->problems[d->problem_count++], sizeof d->problems[0], fmt, ap);
  va_end(ap);
}

/* Instantiates every component at every resolution, as an executor with default options would, for the memory
 * it needs. */
static qd_status_t qdrun_plan_needs_(const qd_plan_t* p, qdrun_need_t* out) {
  memset(out, 0, sizeof *out);
  qd_cuda_executor_options_t eo;
  qd_cuda_executor_options_default(&eo);
  uint64_t best_working = 0;
  for (int32_t c = 0; c < qd_plan_component_count(p); c++) {
    const qd_plan_component_t* comp = qd_plan_component(p, c);
    uint64_t resident = 0;
    for (int32_t r = 0; r < comp->resolution_count; r++) {
      qd_graph_t* g;
      qd_cuda_lowering_t* l;
      QD_TRY(qd_plan_instantiate(p, c, r, qd_allocator_system(), &g));
      qd_status_t s = qd_cuda_lowering_create(g, qd_cuda_executor_lowering_flags(&eo), qd_allocator_system(), &l);
      if (s) {
        qd_graph_destroy(g);
        return s;
      }
      qd_cuda_memory_needs_t n;
      qd_cuda_memory_needs(comp, g, l, comp->resolutions[r].arena_bytes, &n);
      qd_cuda_lowering_destroy(l);
      qd_graph_destroy(g);
      resident = n.weights + n.weight_copies + n.nested_map;
      uint64_t working = n.arena + n.scratch + n.workspace + n.inputs;
      if (working >= best_working) {
        best_working = working;
        out->working = n;
        snprintf(out->working_where, sizeof out->working_where, "%s at %lldx%lld", comp->name,
                 (long long)comp->resolutions[r].width, (long long)comp->resolutions[r].height);
      }
    }
    out->resident += resident;
  }
  out->total = out->resident + best_working;
  return QD_OK;
}

/* The kernels every program of the plan launches on this device, from where the choice says, with
 * qd_cuda_node_kernel (what the executor loads) and the default lowering. */
static qd_status_t qdrun_check_kernels_(const qd_plan_t* p, bool nvrtc, qdrun_device_check_t* d) {
  qd_cuda_executor_options_t eo;
  qd_cuda_executor_options_default(&eo);
  for (int32_t c = 0; c < qd_plan_component_count(p); c++) {
    const qd_plan_component_t* comp = qd_plan_component(p, c);
    qd_cuda_kernel_list_t list;
    qd_cuda_kernel_list_init(&list, d->choice.target, qd_allocator_system());
    qd_status_t s = QD_OK;
    for (int32_t r = 0; r < comp->resolution_count && !s; r++) {
      qd_graph_t* g = NULL;
      qd_cuda_lowering_t* l = NULL;
      s = qd_plan_instantiate(p, c, r, qd_allocator_system(), &g);
      if (!s) s = qd_cuda_lowering_create(g, qd_cuda_executor_lowering_flags(&eo), qd_allocator_system(), &l);
      if (!s) s = qd_cuda_kernel_list_add(&list, g, l, comp->weights);
      qd_cuda_lowering_destroy(l);
      qd_graph_destroy(g);
    }
    if (s) {
      qd_cuda_kernel_list_deinit(&list);
      return s;
    }
    if (list.unsupported)
      qdrun_problem_(d, "component '%s': %d node%s no GPU kernel (%s)", comp->name, list.unsupported,
                     list.unsupported == 1 ? " has" : "s have", list.first_unsupported);
    int32_t missing = 0;
    for (int32_t k = 0; k < list.count && d->choice.source != QD_CUDA_KERNELS_NVRTC; k++)
      missing += !qd_plan_kernels_find(comp->kernels, comp->kernel_count, list.items[k].key, list.items[k].arch);
    if (missing && !nvrtc)
      qdrun_problem_(d, "component '%s': %d of its %d kernels are not in the plan for %s (a plan made by a qd with "
                     "other kernel sources: recompile it) and NVRTC is not there to compile them", comp->name, missing,
                     list.count, list.items[0].arch);
    d->variants += list.count;
    d->missing += missing;
    qd_cuda_kernel_list_deinit(&list);
  }
  return QD_OK;
}

static const char* qdrun_bytes_(uint64_t b, char* buf, size_t size) { return qd_format_bytes(b, buf, size); }

/* The plan's autotuning records (TUNE, runtime/cuda/tuning.h) and whether they apply here: GEMM algorithms with the
 * cuBLASLt they were timed with (`cublaslt`, 0 when none is loaded), kernel variants on GPUs of their architecture.
 * One line each, or one JSON object each into `list` when it is not NULL. */
static void qdrun_tuning_(const qd_plan_t* p, int cublaslt, cJSON* list) {
  const qd_plan_file_t* pf = qd_plan_container(p);
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    if (sec->kind != QD_PLAN_KIND_TUNE) continue;
    char where[96], why[400] = "";
    snprintf(where, sizeof where, "TUNE '%s'", sec->name);
    qd_tuning_t* t = NULL;
    qd_status_t s = qd_tuning_parse((const char*)sec->data, sec->size, where, qd_allocator_system(), &t);
    if (s) qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    bool gemms_apply = t && t->gemm_count && t->cublaslt == cublaslt;
    if (list) {
      cJSON* o = cJSON_CreateObject();
      cJSON_AddItemToArray(list, o);
      cJSON_AddStringToObject(o, "component", sec->name);
      if (!t) {
        cJSON_AddStringToObject(o, "error", why);
        continue;
      }
      cJSON_AddStringToObject(o, "arch", t->arch);
      cJSON_AddNumberToObject(o, "cublaslt", t->cublaslt);
      cJSON_AddNumberToObject(o, "gemms", t->gemm_count);
      cJSON_AddNumberToObject(o, "kernels", t->kernel_count);
      cJSON_AddBoolToObject(o, "gemms_apply", gemms_apply);
    } else if (!t) {
      printf("tuning    '%s': invalid: %s\n", sec->name, why);
    } else {
      printf("tuning    '%s': %d GEMM algorithm%s for cuBLASLt %d (%s), %d kernel variant%s for %s GPUs\n", sec->name,
             (int)t->gemm_count, t->gemm_count == 1 ? "" : "s", (int)t->cublaslt,
             !t->gemm_count ? "none to use" : gemms_apply ? "used here" : "not this one: the heuristic's instead",
             (int)t->kernel_count, t->kernel_count == 1 ? "" : "s", t->arch);
    }
    qd_tuning_destroy(t);
  }
}

static cJSON* qdrun_version_or_null_(int v) {
  char b[32];
  return v ? cJSON_CreateString(qd_cuda_version_format(v, b, sizeof b)) : cJSON_CreateNull();
}

int qdrun_check(const char* path, bool json) {
  qd_allocator_t a = qd_allocator_system();
  qd_plan_t* p = NULL;
  qd_status_t s = qd_plan_open(path, a, 0, &p);
  qdrun_need_t need;
  if (!s) s = qdrun_plan_needs_(p, &need);
  if (s) {
    char msg[2048];
    qd_status_format(s, msg, sizeof msg);
    if (json) {
      cJSON* root = cJSON_CreateObject();
      cJSON_AddStringToObject(root, "plan", path);
      cJSON_AddBoolToObject(root, "can_run", false);
      cJSON_AddStringToObject(root, "reason", msg);
      char* text = cJSON_Print(root);
      if (text) printf("%s\n", text);
      free(text);
      cJSON_Delete(root);
    } else {
      qd_status_fprint(stderr, "qdrun", s, false);
    }
    qd_status_free(s);
    qd_plan_close(p);
    return 1;
  }
  const qd_plan_kernel_targets_t* t = qd_plan_kernel_targets(p);
  qdrun_schedules_t sched;
  qdrun_schedules_(p, &sched);
  /* A pipeline runs on a GPU that holds its smallest schedule; another plan needs all of its memory. */
  uint64_t least = sched.count ? sched.least : need.total;

  /* The machine: devices and driver, NVRTC (only needed when the plan's images do not fit), cuBLASLt. */
  qd_device_list_t* list = NULL;
  qd_status_t ds = qd_devices_query(a, &list);
  qd_cuda_versions_t v;
  if (list)
    v = *qd_device_list_versions(list);
  else
    qd_cuda_versions_query(&v);
  char driver_error[1024] = "";
  if (ds) qd_status_format(ds, driver_error, sizeof driver_error);
  const qd_nvrtc_t* nv;
  qd_status_t ns = qd_nvrtc_load(&nv);
  char nvrtc_missing[512] = "";
  if (ns) qd_status_format(ns, nvrtc_missing, sizeof nvrtc_missing);
  qd_status_free(ns);

  size_t n_dev = list ? qd_device_list_count(list) : 0;
  qdrun_device_check_t* devs = calloc(n_dev ? n_dev : 1, sizeof *devs);
  int runnable = 0;
  for (size_t i = 0; devs && i < n_dev; i++) {
    qdrun_device_check_t* d = &devs[i];
    d->info = qd_device_list_get(list, i);
    int cc = d->info->cc_major * 10 + d->info->cc_minor;
    qd_cuda_kernel_choose(t, cc, v.driver, nvrtc_missing[0] ? nvrtc_missing : NULL, &d->choice);
    if (d->choice.source == QD_CUDA_KERNELS_NONE) {
      qdrun_problem_(d, "%s", d->choice.why);
    } else {
      qd_status_t ks = qdrun_check_kernels_(p, !nvrtc_missing[0], d);
      if (ks) {
        char msg[512];
        qd_status_format(ks, msg, sizeof msg);
        qdrun_problem_(d, "listing the kernels failed: %s", msg);
        qd_status_free(ks);
      }
    }
    if (!v.cublaslt_library)
      qdrun_problem_(d, "cuBLASLt (libcublasLt.so.13 or .12), which runs the GEMMs, could not be loaded");
    char b1[32], b2[32], b3[32];
    if (least + QDRUN_CONTEXT_RESERVE > d->info->total_memory)
      qdrun_problem_(d, "the plan needs %s of device memory%s (and about %s for the CUDA context); this GPU has %s",
                     qdrun_bytes_(least, b1, sizeof b1), sched.count ? " with its smallest offload schedule" : "",
                     qdrun_bytes_(QDRUN_CONTEXT_RESERVE, b2, sizeof b2),
                     qdrun_bytes_(d->info->total_memory, b3, sizeof b3));
    d->can_run = d->problem_count == 0;
    runnable += d->can_run;
  }
  const char* reason = NULL;
  if (ds)
    reason = driver_error;
  else if (!runnable && n_dev)
    reason = devs[0].problems[0];
  int rc = runnable ? 0 : 1;

  char b[64], c[32], e[32];
  if (json) {
    cJSON* root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "plan", path);
    cJSON_AddStringToObject(root, "model", qd_plan_model(p));
    cJSON_AddBoolToObject(root, "can_run", runnable > 0);
    if (reason)
      cJSON_AddStringToObject(root, "reason", reason);
    else
      cJSON_AddNullToObject(root, "reason");
    if (t->present) {
      cJSON* k = cJSON_AddObjectToObject(root, "kernels");
      cJSON* arr = cJSON_AddArrayToObject(k, "targets");
      for (int32_t i = 0; i < t->count; i++) {
        snprintf(b, sizeof b, "sm_%d", t->cc[i]);
        cJSON_AddItemToArray(arr, cJSON_CreateString(b));
      }
      snprintf(b, sizeof b, "compute_%d", t->ptx_cc);
      cJSON_AddItemToObject(k, "ptx", t->ptx_cc ? cJSON_CreateString(b) : cJSON_CreateNull());
      snprintf(b, sizeof b, "%d.%d", t->nvrtc_major, t->nvrtc_minor);
      cJSON_AddStringToObject(k, "nvrtc", b);
      cJSON_AddNumberToObject(k, "cubin_min_driver", t->cubin_min_driver);
      cJSON_AddNumberToObject(k, "ptx_min_driver", t->ptx_min_driver);
    } else {
      cJSON_AddNullToObject(root, "kernels");
    }
    cJSON* m = cJSON_AddObjectToObject(root, "memory");
    cJSON_AddNumberToObject(m, "total", (double)need.total);
    cJSON_AddNumberToObject(m, "weights", (double)need.resident);
    cJSON_AddNumberToObject(m, "arena", (double)need.working.arena);
    cJSON_AddNumberToObject(m, "nf4_scratch", (double)need.working.scratch);
    cJSON_AddNumberToObject(m, "workspace", (double)need.working.workspace);
    cJSON_AddNumberToObject(m, "inputs", (double)need.working.inputs);
    cJSON_AddStringToObject(m, "largest", need.working_where);
    cJSON_AddNumberToObject(m, "context_reserve", (double)QDRUN_CONTEXT_RESERVE);
    cJSON* sa = cJSON_AddArrayToObject(root, "schedules");
    for (int k = 0; sa && k < sched.count; k++) {
      cJSON* o = cJSON_CreateObject();
      cJSON_AddItemToArray(sa, o);
      cJSON_AddNumberToObject(o, "width", (double)sched.width[k]);
      cJSON_AddNumberToObject(o, "height", (double)sched.height[k]);
      cJSON_AddNumberToObject(o, "batch", (double)sched.batch[k]);
      for (int mode = QD_OFFLOAD_NONE; mode <= QD_OFFLOAD_SEQUENTIAL; mode++) {
        const qd_schedule_estimate_t* est = &sched.est[k][mode];
        cJSON* x = cJSON_AddObjectToObject(o, qd_offload_mode_name((qd_offload_mode_t)mode));
        cJSON_AddNumberToObject(x, "peak", (double)est->peak);
        cJSON_AddStringToObject(x, "peak_phase", est->peak_phase);
        cJSON_AddNumberToObject(x, "uploaded_per_image", (double)est->uploaded_per_image);
        cJSON_AddNumberToObject(x, "streamed_per_step", (double)est->streamed_per_step);
      }
      if (sched.tiled[k].vae_tiled) {
        cJSON* x = cJSON_AddObjectToObject(o, "sequential_vae_tiles");
        cJSON_AddNumberToObject(x, "peak", (double)sched.tiled[k].peak);
        cJSON_AddStringToObject(x, "peak_phase", sched.tiled[k].peak_phase);
      }
    }
    cJSON* drv = cJSON_AddObjectToObject(root, "driver");
    cJSON_AddItemToObject(drv, "version", qdrun_version_or_null_(v.driver));
    if (ds)
      cJSON_AddStringToObject(drv, "error", driver_error);
    else
      cJSON_AddNullToObject(drv, "error");
    snprintf(b, sizeof b, "%d.%d", v.nvrtc_major, v.nvrtc_minor);
    cJSON_AddItemToObject(root, "nvrtc", nvrtc_missing[0] ? cJSON_CreateNull() : cJSON_CreateString(b));
    snprintf(b, sizeof b, "%d.%d.%d", v.cublaslt / 10000, (v.cublaslt / 100) % 100, v.cublaslt % 100);
    cJSON_AddItemToObject(root, "cublaslt", v.cublaslt_library ? cJSON_CreateString(b) : cJSON_CreateNull());
    qdrun_tuning_(p, v.cublaslt_library ? v.cublaslt : 0, cJSON_AddArrayToObject(root, "tuning"));
    cJSON* da = cJSON_AddArrayToObject(root, "devices");
    for (size_t i = 0; devs && i < n_dev; i++) {
      const qdrun_device_check_t* d = &devs[i];
      cJSON* o = cJSON_CreateObject();
      cJSON_AddItemToArray(da, o);
      cJSON_AddNumberToObject(o, "ordinal", d->info->ordinal);
      cJSON_AddStringToObject(o, "name", d->info->name);
      snprintf(b, sizeof b, "sm_%d%d", d->info->cc_major, d->info->cc_minor);
      cJSON_AddStringToObject(o, "arch", b);
      cJSON_AddNumberToObject(o, "memory_bytes", (double)d->info->total_memory);
      cJSON_AddBoolToObject(o, "can_run", d->can_run);
      cJSON* kj = cJSON_AddObjectToObject(o, "kernels");
      cJSON_AddStringToObject(kj, "source", qd_cuda_kernel_source_name(d->choice.source));
      cJSON_AddStringToObject(kj, "why", d->choice.why);
      cJSON_AddNumberToObject(kj, "variants", d->variants);
      cJSON_AddNumberToObject(kj, "missing", d->missing);
      cJSON* pa = cJSON_AddArrayToObject(o, "problems");
      for (int k = 0; k < d->problem_count; k++) cJSON_AddItemToArray(pa, cJSON_CreateString(d->problems[k]));
    }
    char* text = cJSON_Print(root);
    if (text) {
      printf("%s\n", text);
      free(text);
    } else {
      fprintf(stderr, "qdrun: error: out of memory writing the check\n");
      rc = 1;
    }
    cJSON_Delete(root);
  } else {
    printf("plan      %s (%s, %d component%s)\n", path, qd_plan_model(p), qd_plan_component_count(p),
           qd_plan_component_count(p) == 1 ? "" : "s");
    if (t->present) {
      printf("kernels   cubins for %s", qd_plan_kernel_targets_format(t, b, sizeof b));
      if (t->ptx_cc) printf(", PTX for compute_%d", t->ptx_cc);
      printf("; built with NVRTC %d.%d, need a driver for CUDA %s (cubins) / %s (PTX) or newer\n", t->nvrtc_major,
             t->nvrtc_minor, qd_cuda_version_format(t->cubin_min_driver, c, sizeof c),
             qd_cuda_version_format(t->ptx_min_driver, e, sizeof e));
    } else {
      printf("kernels   none in the plan: NVRTC must compile them when it runs\n");
    }
    char m1[32], m2[32], m3[32], m4[32], m5[32], m6[32];
    /* A pipeline's need depends on its schedule (the offload lines); another plan's is one figure. */
    char total[96] = "";
    if (!sched.count) snprintf(total, sizeof total, "%s on the GPU: ", qdrun_bytes_(need.total, m1, sizeof m1));
    printf("memory    %sweights %s, and for %s: activations %s, NF4 scratch %s, cuBLASLt workspace %s, inputs %s; "
           "plus about %s for the CUDA context\n", total, qdrun_bytes_(need.resident, m2, sizeof m2),
           need.working_where, qdrun_bytes_(need.working.arena, m3, sizeof m3),
           qdrun_bytes_(need.working.scratch, m4, sizeof m4), qdrun_bytes_(need.working.workspace, m5, sizeof m5),
           qdrun_bytes_(need.working.inputs, m6, sizeof m6), qdrun_bytes_(QDRUN_CONTEXT_RESERVE, b, sizeof b));
    if (sched.problem[0]) printf("offload   %s\n", sched.problem);
    for (int k = 0; k < sched.count; k++) {
      const qd_schedule_estimate_t* est = sched.est[k];
      char p1[32], p2[32], p3[32], p4[32], u1[32], s1[32], t1[80] = "";
      if (sched.tiled[k].vae_tiled)
        snprintf(t1, sizeof t1, "; with the VAE in tiles %s", qdrun_bytes_(sched.tiled[k].peak, p1, sizeof p1));
      printf("offload   %lldx%lld: none %s; model %s (%s uploaded per image); group %s, sequential %s (%s streamed "
             "per step)%s%s\n", (long long)sched.width[k], (long long)sched.height[k],
             qdrun_bytes_(est[QD_OFFLOAD_NONE].peak, p1, sizeof p1),
             qdrun_bytes_(est[QD_OFFLOAD_MODEL].peak, p2, sizeof p2),
             qdrun_bytes_(est[QD_OFFLOAD_MODEL].uploaded_per_image, u1, sizeof u1),
             qdrun_bytes_(est[QD_OFFLOAD_GROUP].peak, p3, sizeof p3),
             qdrun_bytes_(est[QD_OFFLOAD_SEQUENTIAL].peak, p4, sizeof p4),
             qdrun_bytes_(est[QD_OFFLOAD_GROUP].streamed_per_step, s1, sizeof s1), t1,
             sched.recorded ? "" : " (computed: the plan records no schedules)");
    }
    if (ds)
      printf("driver    %s\n", driver_error);
    else
      printf("driver    CUDA %s (%s)\n", qd_cuda_version_format(v.driver, c, sizeof c), v.driver_library);
    if (nvrtc_missing[0])
      printf("NVRTC     none (%s)\n", nvrtc_missing);
    else
      printf("NVRTC     %d.%d (%s)\n", v.nvrtc_major, v.nvrtc_minor, v.nvrtc_library);
    if (v.cublaslt_library)
      printf("cuBLASLt  %d.%d.%d (%s)\n", v.cublaslt / 10000, (v.cublaslt / 100) % 100, v.cublaslt % 100,
             v.cublaslt_library);
    else
      printf("cuBLASLt  none\n");
    qdrun_tuning_(p, v.cublaslt_library ? v.cublaslt : 0, NULL);
    for (size_t i = 0; devs && i < n_dev; i++) {
      const qdrun_device_check_t* d = &devs[i];
      printf("device %d  %s, sm_%d%d, %s: %s\n", d->info->ordinal, d->info->name, d->info->cc_major, d->info->cc_minor,
             qdrun_bytes_(d->info->total_memory, m1, sizeof m1), d->can_run ? "can run the plan" : "cannot run it");
      printf("          kernels: %s", d->choice.why);
      if (d->choice.source != QD_CUDA_KERNELS_NONE)
        printf(" (%d variant%s%s)", d->variants, d->variants == 1 ? "" : "s",
               d->missing ? ", some compiled with NVRTC" : "");
      putchar('\n');
      for (int k = 0; k < d->problem_count; k++)
        if (strcmp(d->problems[k], d->choice.why) != 0) printf("          problem: %s\n", d->problems[k]);
    }
    if (runnable)
      printf("result    can run here\n");
    else
      printf("result    cannot run here: %s\n", reason ? reason : "no device");
  }
  free(devs);
  qd_status_free(ds);
  qd_device_list_destroy(list);
  qd_plan_close(p);
  return rc;
}
