/* Building a plan's kernels with NVRTC; see kernel_build.h. */
#include "compiler/kernel_build.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/device.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/cuda/kernel_variants.h"

_Static_assert(sizeof(((qdc_compile_options_t*)0)->targets) / sizeof(int32_t) == QD_KERN_MAX_TARGETS,
               "compile options hold one entry per known target");

/* --- targets ------------------------------------------------------------------------------------------------ */

static void qdc_target_insert_(int32_t* ccs, int32_t* count, int cc) {
  for (int32_t i = 0; i < *count; i++)
    if (ccs[i] == cc) return;
  int32_t i = *count;
  while (i > 0 && ccs[i - 1] > cc) {
    ccs[i] = ccs[i - 1];
    i--;
  }
  ccs[i] = cc;
  (*count)++;
}

qd_status_t qdc_targets_parse(const char* text, int32_t* ccs, int32_t* count) {
  *count = 0;
  if (strcmp(text, "none") == 0) return QD_OK;
  char buf[256];
  if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "--target '%s' is too long", text);
  char* save = NULL;
  for (char* tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int cc = qd_kernel_target_parse(tok);
    if (!cc)
      return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "--target: '%s' is not an architecture qd builds kernels for; "
                    "give a list of sm_80, sm_86, sm_89 and sm_90, or none", tok);
    qdc_target_insert_(ccs, count, cc);
  }
  if (*count == 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "--target '%s' names no architecture (use none for no kernels)",
                  text);
  return QD_OK;
}

void qdc_targets_default(int32_t* ccs, int32_t* count, char* note, size_t note_size) {
  *count = 0;
  qd_device_list_t* list = NULL;
  qd_status_t s = qd_devices_query(qd_allocator_system(), &list);
  char seen[128] = "";
  size_t used = 0;
  for (size_t i = 0; !s && i < qd_device_list_count(list); i++) {
    const qd_device_info_t* d = qd_device_list_get(list, i);
    int cc = d->cc_major * 10 + d->cc_minor;
    if (used < sizeof seen) used += (size_t)snprintf(seen + used, sizeof seen - used, "%ssm_%d", used ? ", " : "", cc);
    char text[16];
    snprintf(text, sizeof text, "sm_%d", cc);
    if (qd_kernel_target_parse(text)) qdc_target_insert_(ccs, count, cc);
  }
  if (*count) {
    if (note) snprintf(note, note_size, "kernels for the GPUs present (%s)", seen);
  } else {
    for (int i = 0; i < QD_KERN_MAX_TARGETS; i++) ccs[(*count)++] = qd_kernel_known_targets[i];
    if (note && s) {
      char why[256];
      qd_status_format(s, why, sizeof why);
      snprintf(note, note_size, "kernels for sm_80, sm_86, sm_89 and sm_90 (no GPU here: %s)", why);
    } else if (note) {
      snprintf(note, note_size, "kernels for sm_80, sm_86, sm_89 and sm_90 (the GPUs here, %s, are none of them; "
               "newer ones JIT the PTX)", seen);
    }
  }
  qd_status_free(s);
  qd_device_list_destroy(list);
}

bool qdc_targets_resolve(const char* text, qdc_compile_options_t* o, char* error, size_t error_size) {
  if (!text) {
    char note[512];
    qdc_targets_default(o->targets, &o->target_count, note, sizeof note);
    o->targets_given = false;
    QD_LOG_INFO("%s", note);
    return true;
  }
  qd_status_t s = qdc_targets_parse(text, o->targets, &o->target_count);
  if (s) {
    snprintf(error, error_size, "%s", qd_status_message(s));
    qd_status_free(s);
    return false;
  }
  o->targets_given = true;
  return true;
}

/* --- compile jobs ------------------------------------------------------------------------------------------- */

/* One NVRTC compile: a kernel for a real architecture, producing a cubin, PTX or both (the lowest target's
 * cubin and the plan's PTX come from one compile). Shared by every component that lists the kernel. */
typedef struct qdc_job {
  qd_cuda_kernel_t kernel;
  char nvrtc_arch[16]; /* "sm_80", "sm_90a" */
  unsigned outputs;
  qd_nvrtc_output_t out;
  qd_status_t status;
} qdc_job_t;

typedef struct qdc_jobs {
  qd_allocator_t allocator;
  qdc_job_t* items;
  int32_t count, capacity;
  /* while compiling */
  pthread_mutex_t lock;
  qd_progress_t progress;
  bool cancelled;
} qdc_jobs_t;

static qdc_job_t* qdc_job_find_(qdc_jobs_t* j, const char* key, const char* nvrtc_arch) {
  for (int32_t i = 0; i < j->count; i++)
    if (strcmp(j->items[i].kernel.key, key) == 0 && strcmp(j->items[i].nvrtc_arch, nvrtc_arch) == 0)
      return &j->items[i];
  return NULL;
}

static qd_status_t qdc_job_add_(qdc_jobs_t* j, const qd_cuda_kernel_t* k, const char* nvrtc_arch, unsigned outputs) {
  qdc_job_t* job = qdc_job_find_(j, k->key, nvrtc_arch);
  if (job) {
    job->outputs |= outputs;
    return QD_OK;
  }
  if (j->count == j->capacity) {
    int32_t cap = j->capacity ? j->capacity * 2 : 32;
    QD_TRY(qd_realloc(j->allocator, j->items, (size_t)j->capacity * sizeof *j->items, (size_t)cap * sizeof *j->items,
                      (void**)&j->items));
    j->capacity = cap;
  }
  job = &j->items[j->count++];
  memset(job, 0, sizeof *job);
  job->kernel = *k;
  snprintf(job->nvrtc_arch, sizeof job->nvrtc_arch, "%s", nvrtc_arch);
  job->outputs = outputs;
  return QD_OK;
}

static void qdc_jobs_run_(void* ctx, int64_t begin, int64_t end) {
  qdc_jobs_t* j = ctx;
  for (int64_t i = begin; i < end; i++) {
    qdc_job_t* job = &j->items[i];
    pthread_mutex_lock(&j->lock);
    bool skip = j->cancelled;
    pthread_mutex_unlock(&j->lock);
    if (skip) continue;
    job->status = qd_cuda_kernel_compile(j->allocator, &job->kernel, job->nvrtc_arch, job->outputs, &job->out);
    pthread_mutex_lock(&j->lock);
    if (!qd_progress_advance(&j->progress, 1)) j->cancelled = true;
    pthread_mutex_unlock(&j->lock);
  }
}

static void qdc_jobs_free_(qdc_jobs_t* j) {
  if (!j) return;
  for (int32_t i = 0; i < j->count; i++) {
    qd_nvrtc_output_deinit(&j->items[i].out);
    qd_status_free(j->items[i].status);
  }
  qd_free(j->allocator, j->items, (size_t)j->capacity * sizeof *j->items);
  qd_free(j->allocator, j, sizeof *j);
}

/* --- per component ------------------------------------------------------------------------------------------ */

int qdc_kernel_image_cmp(const void* a, const void* b) {
  const qdc_kernel_image_t *x = a, *y = b;
  int k = strcmp(x->key, y->key);
  return k ? k : strcmp(x->arch, y->arch);
}

/* The kernels of every resolution of one component for one target (both lowerings). */
static qd_status_t qdc_list_component_(const qdc_component_t* c, qd_cuda_kernel_target_t t, bool warn,
                                       qd_allocator_t a, qd_cuda_kernel_list_t* list) {
  qd_cuda_kernel_list_init(list, t, a);
  for (int32_t r = 0; r < c->result_count; r++) {
    int32_t before = list->unsupported;
    QD_TRY(qd_cuda_kernel_list_add_program(list, c->results[r].graph, c->weights));
    if (warn && list->unsupported > before && before == 0)
      QD_LOG_WARN("component '%s' at %lldx%lld: %d node%s no GPU kernel (%s); this component will run on the CPU "
                  "only", c->name, (long long)c->results[r].res.width, (long long)c->results[r].res.height,
                  list->unsupported - before, list->unsupported - before == 1 ? " has" : "s have",
                  list->first_unsupported);
  }
  return QD_OK;
}

/* Every (kernel, target) the component needs, as jobs; the lists stay for collecting the images afterwards. */
static qd_status_t qdc_plan_component_(const qd_plan_kernel_targets_t* t, const qdc_component_t* c,
                                       qd_allocator_t a, qd_cuda_kernel_list_t* lists, qdc_jobs_t* jobs) {
  for (int32_t i = 0; i <= t->count; i++) {
    bool ptx = i == t->count;
    qd_cuda_kernel_target_t target = {ptx ? t->ptx_cc : t->cc[i], ptx};
    QD_TRY(qdc_list_component_(c, target, i == 0, a, &lists[i]));
    for (int32_t k = 0; k < lists[i].count; k++) {
      const qd_cuda_kernel_t* kv = &lists[i].items[k];
      char arch[16];
      snprintf(arch, sizeof arch, "sm_%d", target.cc);
      QD_TRY(qdc_job_add_(jobs, kv, ptx ? arch : kv->arch, ptx ? QD_NVRTC_OUTPUT_PTX : QD_NVRTC_OUTPUT_CUBIN));
    }
  }
  return QD_OK;
}

/* The component's images, taken from the compiled jobs, sorted by (key, arch). */
static qd_status_t qdc_collect_component_(const qd_plan_kernel_targets_t* t, qd_cuda_kernel_list_t* lists,
                                          qdc_jobs_t* jobs, qd_allocator_t a, qdc_component_kernels_t* out) {
  int32_t total = 0;
  for (int32_t i = 0; i <= t->count; i++) total += lists[i].count;
  out->unsupported = lists[0].unsupported;
  if (total == 0) return QD_OK;
  QD_TRY(qd_calloc(a, (size_t)total, sizeof *out->images, (void**)&out->images));
  for (int32_t i = 0; i <= t->count; i++) {
    bool ptx = i == t->count;
    for (int32_t k = 0; k < lists[i].count; k++) {
      const qd_cuda_kernel_t* kv = &lists[i].items[k];
      char arch[16];
      snprintf(arch, sizeof arch, "sm_%d", t->ptx_cc);
      qdc_job_t* job = qdc_job_find_(jobs, kv->key, ptx ? arch : kv->arch);
      qdc_kernel_image_t* im = &out->images[out->count++];
      im->key = job->kernel.key;
      im->function = kv->function;
      snprintf(im->arch, sizeof im->arch, "%s", kv->arch);
      im->data = ptx ? (const uint8_t*)job->out.ptx : job->out.cubin;
      im->size = ptx ? job->out.ptx_size + 1 : job->out.cubin_size; /* PTX with its NUL: the driver reads it so */
    }
  }
  qsort(out->images, (size_t)out->count, sizeof *out->images, qdc_kernel_image_cmp);
  for (int32_t i = 0; i < out->count; i++)
    out->variants += i == 0 || strcmp(out->images[i - 1].key, out->images[i].key) != 0;
  return QD_OK;
}

qd_status_t qdc_kernels_build(const qdc_compile_options_t* o, qdc_component_t* const* cs, int32_t count, void* pool,
                              qd_allocator_t a, qdc_kernels_t* out) {
  memset(out, 0, sizeof *out);
  out->allocator = a;
  out->component_count = count;
  if (o->target_count == 0) return QD_OK;
  const qd_nvrtc_t* nv;
  qd_status_t s = qd_nvrtc_load(&nv);
  if (s && !o->targets_given) {
    char why[512];
    qd_status_format(s, why, sizeof why);
    qd_status_free(s);
    QD_LOG_WARN("the plan carries no GPU kernels: %s (qdrun will compile them if it has NVRTC; give --target none to "
                "skip this warning)", why);
    return QD_OK;
  }
  QD_TRY_CTX(s, "building the plan's kernels for --target");
  double t0 = qd_now_seconds();
  qd_plan_kernel_targets_t* t = &out->targets;
  t->present = true;
  for (int32_t i = 0; i < o->target_count; i++) t->cc[t->count++] = o->targets[i];
  t->ptx_cc = t->cc[0];
  t->nvrtc_major = nv->version_major;
  t->nvrtc_minor = nv->version_minor;
  /* Cubins load on drivers of their CUDA major version or newer; PTX needs a driver at least as new as the
   * compiler that wrote it (its ISA version). */
  t->cubin_min_driver = nv->version_major * 1000;
  t->ptx_min_driver = nv->version_major * 1000 + nv->version_minor * 10;

  qdc_jobs_t* jobs;
  QD_TRY(qd_calloc(a, 1, sizeof *jobs, (void**)&jobs));
  jobs->allocator = a;
  enum { LISTS = QD_KERN_MAX_TARGETS + 1 };
  qd_cuda_kernel_list_t* lists; /* [component][target..., ptx] */
  s = qd_calloc(a, (size_t)count * LISTS, sizeof *lists, (void**)&lists);
  for (int32_t c = 0; c < count && !s; c++)
    s = qdc_plan_component_(t, cs[c], a, &lists[c * LISTS], jobs);
  if (!s) {
    pthread_mutex_init(&jobs->lock, NULL);
    qd_progress_begin(&jobs->progress, NULL, "kernels", (uint64_t)jobs->count, "compiles");
    qd_parallel_for(pool, jobs->count, 1, qdc_jobs_run_, jobs);
    qd_progress_end(&jobs->progress);
    pthread_mutex_destroy(&jobs->lock);
    if (jobs->cancelled) s = QD_ERR(CANCELLED, CANCELLED, "compile cancelled");
    for (int32_t i = 0; i < jobs->count && !s; i++)
      if (jobs->items[i].status) {
        s = jobs->items[i].status;
        jobs->items[i].status = NULL;
      }
  }
  for (int32_t c = 0; c < count && !s; c++) {
    s = qdc_collect_component_(t, &lists[c * LISTS], jobs, a, &out->components[c]);
    if (s) s = qd_status_annotate(s, "component '%s'", cs[c]->name);
  }
  for (int32_t i = 0; lists && i < count * LISTS; i++) qd_cuda_kernel_list_deinit(&lists[i]);
  if (lists) qd_free(a, lists, (size_t)count * LISTS * sizeof *lists);
  out->jobs_ = jobs;
  out->job_count_ = jobs->count;
  out->enabled = true;
  out->seconds = qd_now_seconds() - t0;
  if (s) {
    qdc_kernels_deinit(out);
    return s;
  }
  return QD_OK;
}

void qdc_kernels_deinit(qdc_kernels_t* k) {
  if (!k) return;
  for (int32_t c = 0; c < k->component_count; c++)
    if (k->components[c].images)
      qd_free(k->allocator, k->components[c].images, (size_t)(k->components[c].count ? k->components[c].count : 1) *
                                                          sizeof *k->components[c].images);
  qdc_jobs_free_(k->jobs_);
  qd_allocator_t a = k->allocator;
  memset(k, 0, sizeof *k);
  k->allocator = a;
}

/* --- writing ------------------------------------------------------------------------------------------------ */

static void qdc_put32_(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void qdc_put64_(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Finds `text` among the pool's strings or appends it; returns its offset. */
static uint32_t qdc_pool_put_(uint8_t* pool, uint32_t* used, const char* text) {
  for (uint32_t at = 0; at < *used; at += (uint32_t)strlen((const char*)pool + at) + 1)
    if (strcmp((const char*)pool + at, text) == 0) return at;
  uint32_t at = *used;
  size_t n = strlen(text) + 1;
  memcpy(pool + at, text, n);
  *used += (uint32_t)n;
  return at;
}

static qd_status_t qdc_write_zeros_(qd_plan_writer_t* w, uint64_t n) {
  static const uint8_t zeros[QD_KERN_IMAGE_ALIGN];
  while (n) {
    size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
    QD_TRY(qd_plan_writer_write(w, zeros, k));
    n -= k;
  }
  return QD_OK;
}

static uint64_t qdc_align_image_(uint64_t v) {
  return (v + QD_KERN_IMAGE_ALIGN - 1) & ~(uint64_t)(QD_KERN_IMAGE_ALIGN - 1);
}

qd_status_t qdc_kernels_write(const qdc_kernels_t* k, int32_t index, const char* name, qd_plan_writer_t* w) {
  if (!k->enabled) return QD_OK;
  return qdc_kern_section_write(k->allocator, &k->components[index], name, w);
}

qd_status_t qdc_kern_section_write(qd_allocator_t allocator, const qdc_component_kernels_t* c, const char* name,
                                   qd_plan_writer_t* w) {
  size_t pool_cap = 0;
  for (int32_t i = 0; i < c->count; i++) pool_cap += strlen(c->images[i].key) + strlen(c->images[i].function) + 2;
  if (pool_cap > QD_KERN_MAX_STRINGS)
    return QD_ERR(INTERNAL, INTERNAL, "KERN/%s: %zu bytes of strings; the index holds at most %d", name, pool_cap,
                  QD_KERN_MAX_STRINGS);
  size_t table = QD_KERN_HEADER_SIZE + (size_t)c->count * QD_KERN_ENTRY_SIZE;
  uint8_t* idx;
  QD_TRY(qd_calloc(allocator, 1, table + pool_cap + 1, (void**)&idx));
  /* Strings first (each once: a key has an image per architecture), so that image offsets can follow the pool. */
  uint8_t* pool = idx + table;
  uint32_t pool_used = 0;
  for (int32_t i = 0; i < c->count; i++) {
    uint8_t* e = idx + QD_KERN_HEADER_SIZE + (size_t)i * QD_KERN_ENTRY_SIZE;
    qdc_put32_(e, qdc_pool_put_(pool, &pool_used, c->images[i].key));
    qdc_put32_(e + 4, qdc_pool_put_(pool, &pool_used, c->images[i].function));
  }
  uint64_t pos = qdc_align_image_(table + pool_used);
  for (int32_t i = 0; i < c->count; i++) {
    uint8_t* e = idx + QD_KERN_HEADER_SIZE + (size_t)i * QD_KERN_ENTRY_SIZE;
    memcpy(e + 8, c->images[i].arch, QD_KERN_ARCH_SIZE);
    qdc_put64_(e + 24, pos);
    qdc_put64_(e + 32, c->images[i].size);
    pos = qdc_align_image_(pos + c->images[i].size);
  }
  qdc_put32_(idx, QD_KERN_VERSION);
  qdc_put32_(idx + 4, (uint32_t)c->count);
  qdc_put32_(idx + 8, QD_KERN_ENTRY_SIZE);
  qdc_put32_(idx + 12, pool_used);
  qd_status_t s = qd_plan_writer_begin_section(w, QD_PLAN_KIND_KERN, name, 0, QD_KERN_IMAGE_ALIGN);
  if (!s) s = qd_plan_writer_write(w, idx, table + pool_used);
  uint64_t at = table + pool_used;
  for (int32_t i = 0; i < c->count && !s; i++) {
    uint64_t start = qdc_align_image_(at);
    s = qdc_write_zeros_(w, start - at);
    if (!s) s = qd_plan_writer_write(w, c->images[i].data, (size_t)c->images[i].size);
    at = start + c->images[i].size;
  }
  if (!s) s = qd_plan_writer_end_section(w);
  qd_free(allocator, idx, table + pool_cap + 1);
  return s;
}

bool qdc_kernels_add_meta(const qdc_kernels_t* k, cJSON* meta) {
  if (!k->enabled) return true;
  cJSON* j = cJSON_AddObjectToObject(meta, "kernels");
  cJSON* targets = j ? cJSON_AddArrayToObject(j, "targets") : NULL;
  if (!targets) return false;
  char b[32];
  for (int32_t i = 0; i < k->targets.count; i++) {
    snprintf(b, sizeof b, "sm_%d", k->targets.cc[i]);
    if (!cJSON_AddItemToArray(targets, cJSON_CreateString(b))) return false;
  }
  snprintf(b, sizeof b, "compute_%d", k->targets.ptx_cc);
  if (!cJSON_AddStringToObject(j, "ptx", b)) return false;
  snprintf(b, sizeof b, "%d.%d", k->targets.nvrtc_major, k->targets.nvrtc_minor);
  return cJSON_AddStringToObject(j, "nvrtc", b) &&
         cJSON_AddNumberToObject(j, "cubin_min_driver", k->targets.cubin_min_driver) &&
         cJSON_AddNumberToObject(j, "ptx_min_driver", k->targets.ptx_min_driver);
}
