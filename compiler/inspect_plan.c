/* qdc inspect PLAN: the container (header, section table) of a .qplan, a summary of its metadata, and with
 * --verify every section's checksum recomputed.
 *
 * Opening the plan validates the whole container (runtime/plan_file.c), so everything printed here has passed those
 * rules; only the META contents are read afresh, with the strict JSON parser, since the container does not look
 * inside sections. What the contents mean is described by qdc_plan_contents_text_ / qdc_plan_contents_json_: the
 * place to extend with components, quantization, resolutions and memory plans.
 *
 * Output contract (as for every input kind): text on stdout; with --json one JSON document on stdout and nothing
 * else there; progress of --verify on stderr. Exit 0 when the plan is valid (and every checksum matches with
 * --verify), 1 otherwise with one "qdc: error:" line on stderr. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/inspect.h"
#include "ir/strict_json.h"
#include "qd/device.h"
#include "qd/plan_file.h"
#include "qd/progress.h"
#include "runtime/cuda/tuning.h"
#include "runtime/plan_kernels.h"

typedef enum { QDC_VERIFY_NOT_RUN = 0, QDC_VERIFY_OK, QDC_VERIFY_MISMATCH } qdc_verify_result_t;

typedef struct {
  const qd_plan_file_t* pf;
  qdc_verify_result_t* verify; /* per section; NULL without --verify */
  uint64_t* computed;          /* per section, with --verify */
  size_t mismatches;
  const qd_plan_section_t* meta; /* the META section described, or NULL */
  qd_json_doc_t* meta_doc;       /* its JSON, or NULL when it is not valid JSON */
  cJSON* meta_json;              /* the same through cJSON, as the runtime reads it (kernels, contents); or NULL */
  char meta_error[512];          /* why meta_doc is NULL */
  /* Kernels: META "kernels" (targets) and one summary per KERN section. */
  qd_plan_kernel_targets_t targets;
  char targets_error[512];       /* why META "kernels" could not be read; empty when it was (or is absent) */
  struct qdc_kern_summary {
    const qd_plan_section_t* section;
    int32_t variants, images;
    uint64_t bytes[8];           /* per architecture, in the order of arch[] */
    int32_t count[8];
    char arch[8][QD_KERN_ARCH_SIZE];
    int32_t arch_count;
    char error[512];             /* why the index is invalid; empty when it is valid */
  }* kern;
  size_t kern_count;
} qdc_plan_view_t;

static int qdc_plan_fail_(qd_status_t s) {
  qd_status_fprint(stderr, "qdc", s, false);
  qd_status_free(s);
  return 1;
}

static const char* qdc_hex64_(uint64_t v, char* buf, size_t size) {
  snprintf(buf, size, "0x%016llx", (unsigned long long)v);
  return buf;
}

/* --- metadata: the part to extend --------------------------------------------------------------------------------- */

/* The META section to describe: the unnamed one (what qdc compile writes), else the first in the table. */
static const qd_plan_section_t* qdc_plan_meta_section_(const qd_plan_file_t* pf) {
  const qd_plan_section_t* s = qd_plan_file_find(pf, QD_PLAN_KIND_META, "");
  for (size_t i = 0; !s && i < qd_plan_file_section_count(pf); i++)
    if (qd_plan_file_section(pf, i)->kind == QD_PLAN_KIND_META) s = qd_plan_file_section(pf, i);
  return s;
}

/* Parses the META section (hostile bytes: the container checks only that they match their checksum). A parse
 * failure is not an inspect failure: the container is valid, and the message is shown in place of the summary. */
static qd_status_t qdc_plan_read_meta_(qdc_plan_view_t* v) {
  v->meta = qdc_plan_meta_section_(v->pf);
  if (!v->meta) return QD_OK;
  char source[64];
  snprintf(source, sizeof source, "META \"%s\"", v->meta->name);
  qd_json_options_t opt = {.source_name = source, .base_offset = 0};
  if (v->meta->size > SIZE_MAX) return QD_OK;
  v->meta_json = cJSON_ParseWithLength(v->meta->data, (size_t)v->meta->size);
  qd_status_t s = qd_json_parse(v->meta->data, (size_t)v->meta->size, qd_allocator_system(), &opt, &v->meta_doc);
  if (s && qd_status_code(s) == QD_CODE_OUT_OF_MEMORY) return s;
  if (s) {
    qd_status_format(s, v->meta_error, sizeof v->meta_error);
    qd_status_free(s);
  }
  return QD_OK;
}

/* Reads META "kernels" (with cJSON, as the runtime does) and validates and sums up every KERN section the way
 * qd_plan_open would. An invalid index is reported in the summary, not as an inspect failure: the container is
 * valid. */
static qd_status_t qdc_plan_read_kernels_(qdc_plan_view_t* v) {
  size_t n = qd_plan_file_section_count(v->pf);
  v->kern = calloc(n ? n : 1, sizeof *v->kern);
  if (!v->kern) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory for %zu sections", n);
  const qd_plan_kernel_targets_t* targets = NULL;
  if (v->meta_json) {
    qd_status_t s = qd_plan_kernels_parse_meta(qd_plan_file_path(v->pf), v->meta_json, &v->targets);
    if (s) {
      qd_status_format(s, v->targets_error, sizeof v->targets_error);
      qd_status_free(s);
    } else if (v->targets.present) {
      targets = &v->targets;
    }
  }
  for (size_t i = 0; i < n; i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(v->pf, i);
    if (sec->kind != QD_PLAN_KIND_KERN) continue;
    struct qdc_kern_summary* k = &v->kern[v->kern_count++];
    k->section = sec;
    qd_plan_kernel_image_t* images;
    int32_t count;
    qd_status_t s = qd_plan_kernels_parse(qd_plan_file_path(v->pf), sec->name, sec->data, sec->size, targets,
                                          qd_allocator_system(), &images, &count);
    if (s && qd_status_code(s) == QD_CODE_OUT_OF_MEMORY) return s;
    if (s) {
      qd_status_format(s, k->error, sizeof k->error);
      qd_status_free(s);
      continue;
    }
    k->images = count;
    for (int32_t j = 0; j < count; j++) {
      k->variants += j == 0 || strcmp(images[j - 1].key, images[j].key) != 0;
      int32_t a = 0;
      while (a < k->arch_count && strcmp(k->arch[a], images[j].arch) != 0) a++;
      if (a == k->arch_count && a < 8) memcpy(k->arch[k->arch_count++], images[j].arch, QD_KERN_ARCH_SIZE);
      if (a < 8) {
        k->bytes[a] += images[j].size;
        k->count[a]++;
      }
    }
    qd_plan_kernels_free(qd_allocator_system(), images, count);
  }
  return QD_OK;
}

static void qdc_plan_kernels_text_(const qdc_plan_view_t* v) {
  char b[64], c[32], d[32];
  if (v->targets_error[0]) {
    printf("kernels: META \"kernels\" is invalid: %s\n", v->targets_error);
  } else if (v->targets.present) {
    printf("kernels: cubins for %s", qd_plan_kernel_targets_format(&v->targets, b, sizeof b));
    if (v->targets.ptx_cc) printf(", PTX for compute_%d (newer GPUs JIT it)", v->targets.ptx_cc);
    printf("; built with NVRTC %d.%d; drivers for CUDA %s (cubins) and %s (PTX) or newer\n", v->targets.nvrtc_major,
           v->targets.nvrtc_minor, qd_cuda_version_format(v->targets.cubin_min_driver, c, sizeof c),
           qd_cuda_version_format(v->targets.ptx_min_driver, d, sizeof d));
  } else if (v->kern_count == 0) {
    printf("kernels: none (qdrun compiles them with NVRTC, if it has it)\n");
  }
  for (size_t i = 0; i < v->kern_count; i++) {
    const struct qdc_kern_summary* k = &v->kern[i];
    if (k->error[0]) {
      printf("  KERN \"%s\": invalid: %s\n", k->section->name, k->error);
      continue;
    }
    printf("  KERN \"%s\": %d variant%s, %d image%s", k->section->name, k->variants, k->variants == 1 ? "" : "s",
           k->images, k->images == 1 ? "" : "s");
    for (int32_t a = 0; a < k->arch_count; a++)
      printf("%s %s %s (%d)", a ? "," : ":", k->arch[a], qd_format_bytes(k->bytes[a], b, sizeof b), k->count[a]);
    putchar('\n');
  }
}

static bool qdc_plan_kernels_json_(const qdc_plan_view_t* v, cJSON* root) {
  if (!v->targets.present && !v->targets_error[0] && v->kern_count == 0)
    return cJSON_AddNullToObject(root, "kernels") != NULL;
  cJSON* kj = cJSON_AddObjectToObject(root, "kernels");
  if (!kj) return false;
  char b[32];
  if (v->targets_error[0]) {
    if (!cJSON_AddStringToObject(kj, "error", v->targets_error)) return false;
  } else if (v->targets.present) {
    cJSON* t = cJSON_AddArrayToObject(kj, "targets");
    for (int32_t i = 0; t && i < v->targets.count; i++) {
      snprintf(b, sizeof b, "sm_%d", v->targets.cc[i]);
      if (!cJSON_AddItemToArray(t, cJSON_CreateString(b))) return false;
    }
    snprintf(b, sizeof b, "compute_%d", v->targets.ptx_cc);
    bool ok = t && (v->targets.ptx_cc ? cJSON_AddStringToObject(kj, "ptx", b) : cJSON_AddNullToObject(kj, "ptx"));
    snprintf(b, sizeof b, "%d.%d", v->targets.nvrtc_major, v->targets.nvrtc_minor);
    ok = ok && cJSON_AddStringToObject(kj, "nvrtc", b) &&
         cJSON_AddNumberToObject(kj, "cubin_min_driver", v->targets.cubin_min_driver) &&
         cJSON_AddNumberToObject(kj, "ptx_min_driver", v->targets.ptx_min_driver);
    if (!ok) return false;
  }
  cJSON* sections = cJSON_AddArrayToObject(kj, "sections");
  if (!sections) return false;
  for (size_t i = 0; i < v->kern_count; i++) {
    const struct qdc_kern_summary* k = &v->kern[i];
    cJSON* o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(sections, o) || !cJSON_AddStringToObject(o, "name", k->section->name)) return false;
    if (k->error[0]) {
      if (!cJSON_AddStringToObject(o, "error", k->error)) return false;
      continue;
    }
    cJSON* per = NULL;
    if (!cJSON_AddNumberToObject(o, "variants", k->variants) || !cJSON_AddNumberToObject(o, "images", k->images) ||
        !(per = cJSON_AddObjectToObject(o, "bytes")))
      return false;
    for (int32_t a = 0; a < k->arch_count; a++)
      if (!cJSON_AddNumberToObject(per, k->arch[a], (double)k->bytes[a])) return false;
  }
  return true;
}

/* --- tuning records (TUNE sections, runtime/cuda/tuning.h) --------------------------------------------------- */

/* One TUNE section parsed: its records, or why they are invalid (into why). */
static qd_tuning_t* qdc_plan_tuning_(const qd_plan_section_t* sec, char* why, size_t why_size) {
  char where[96];
  snprintf(where, sizeof where, "TUNE \"%s\"", sec->name);
  qd_tuning_t* t = NULL;
  qd_status_t s = qd_tuning_parse((const char*)sec->data, sec->size, where, qd_allocator_system(), &t);
  if (s) {
    qd_status_format(s, why, why_size);
    qd_status_free(s);
  }
  return t;
}

static void qdc_plan_tuning_text_(const qdc_plan_view_t* v) {
  for (size_t i = 0; i < qd_plan_file_section_count(v->pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(v->pf, i);
    if (sec->kind != QD_PLAN_KIND_TUNE) continue;
    char why[400] = "";
    qd_tuning_t* t = qdc_plan_tuning_(sec, why, sizeof why);
    if (!t) {
      printf("tuning: TUNE \"%s\": invalid: %s\n", sec->name, why);
      continue;
    }
    printf("tuning: TUNE \"%s\": %s on %s (%s, cuBLASLt %d): %d GEMM algorithm%s, %d kernel variant%s\n", sec->name,
           t->mode, t->device, t->arch, (int)t->cublaslt, (int)t->gemm_count, t->gemm_count == 1 ? "" : "s",
           (int)t->kernel_count, t->kernel_count == 1 ? "" : "s");
    qd_tuning_destroy(t);
  }
}

static bool qdc_plan_tuning_json_(const qdc_plan_view_t* v, cJSON* root) {
  cJSON* list = cJSON_AddArrayToObject(root, "tuning");
  for (size_t i = 0; list && i < qd_plan_file_section_count(v->pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(v->pf, i);
    if (sec->kind != QD_PLAN_KIND_TUNE) continue;
    cJSON* o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(list, o) || !cJSON_AddStringToObject(o, "name", sec->name)) return false;
    char why[400] = "";
    qd_tuning_t* t = qdc_plan_tuning_(sec, why, sizeof why);
    bool ok = t ? cJSON_AddStringToObject(o, "mode", t->mode) && cJSON_AddStringToObject(o, "device", t->device) &&
                      cJSON_AddStringToObject(o, "arch", t->arch) && cJSON_AddNumberToObject(o, "cublaslt", t->cublaslt) &&
                      cJSON_AddNumberToObject(o, "gemms", t->gemm_count) &&
                      cJSON_AddNumberToObject(o, "kernels", t->kernel_count)
                : cJSON_AddStringToObject(o, "error", why) != NULL;
    qd_tuning_destroy(t);
    if (!ok) return false;
  }
  return list != NULL;
}

/* Text summary of the plan's contents, from META. Today: its top-level keys. */
static void qdc_plan_contents_text_(const qdc_plan_view_t* v) {
  if (!v->meta) {
    printf("metadata: none (the plan has no META section)\n");
    return;
  }
  printf("metadata (META \"%s\", %llu bytes): ", v->meta->name, (unsigned long long)v->meta->size);
  if (!v->meta_doc) {
    printf("not valid JSON: %s\n", v->meta_error);
    return;
  }
  const qd_json_value_t* root = qd_json_root(v->meta_doc);
  if (root->type != QD_JSON_OBJECT) {
    printf("a JSON %s, not an object\n", qd_json_type_name(root->type));
    return;
  }
  if (root->u.object.count == 0) {
    printf("an empty object\n");
    return;
  }
  printf("%zu key%s: ", root->u.object.count, root->u.object.count == 1 ? "" : "s");
  char key[96];
  for (size_t i = 0; i < root->u.object.count; i++) {
    const qd_json_member_t* m = &root->u.object.members[i];
    printf("%s%s", i ? ", " : "", qd_json_display(m->key, m->key_len, key, sizeof key));
  }
  putchar('\n');
}

/* JSON summary of the plan's contents under "metadata"; false when cJSON runs out of memory. */
static bool qdc_plan_contents_json_(const qdc_plan_view_t* v, cJSON* root) {
  if (!v->meta) return cJSON_AddNullToObject(root, "metadata") != NULL;
  cJSON* md = cJSON_AddObjectToObject(root, "metadata");
  if (!md || !cJSON_AddStringToObject(md, "section", v->meta->name) ||
      !cJSON_AddNumberToObject(md, "size", (double)v->meta->size))
    return false;
  if (!v->meta_doc) return cJSON_AddStringToObject(md, "error", v->meta_error) != NULL;
  const qd_json_value_t* j = qd_json_root(v->meta_doc);
  if (!cJSON_AddStringToObject(md, "type", qd_json_type_name(j->type))) return false;
  if (j->type != QD_JSON_OBJECT) return true;
  cJSON* keys = cJSON_AddArrayToObject(md, "keys");
  if (!keys) return false;
  for (size_t i = 0; i < j->u.object.count; i++) {
    /* keys may hold NUL or invalid text for cJSON; show them the way the text output does */
    char key[256];
    const qd_json_member_t* m = &j->u.object.members[i];
    cJSON* k = cJSON_CreateString(qd_json_display(m->key, m->key_len, key, sizeof key));
    if (!k || !cJSON_AddItemToArray(keys, k)) return false;
  }
  return true;
}

/* --- the container ---------------------------------------------------------------------------------------------- */

static void qdc_plan_print_text_(const qdc_plan_view_t* v) {
  const qd_plan_file_t* pf = v->pf;
  char b[32], h[24];
  size_t n = qd_plan_file_section_count(pf);
  printf("%s: compiled plan, format %u.%u, written by \"%s\", %s (%llu bytes), %zu section%s\n",
         qd_plan_file_path(pf), qd_plan_file_version_major(pf), qd_plan_file_version_minor(pf),
         qd_plan_file_writer(pf), qd_format_bytes(qd_plan_file_size(pf), b, sizeof b),
         (unsigned long long)qd_plan_file_size(pf), n, n == 1 ? "" : "s");
  printf("header flags 0x%08x, section table at offset %llu, header checksum %s\n\n", qd_plan_file_flags(pf),
         (unsigned long long)qd_plan_file_table_offset(pf), qdc_hex64_(qd_plan_file_header_checksum(pf), h, sizeof h));

  size_t wname = 4;
  for (size_t i = 0; i < n; i++) {
    size_t w = strlen(qd_plan_file_section(pf, i)->name) + 2;
    if (w > wname) wname = w;
  }
  printf("%3s  %-4s  %-*s  %12s  %10s  %5s  %-18s  %-8s%s\n", "#", "kind", (int)wname, "name", "offset", "size",
         "align", "checksum", "required", v->verify ? "  verify" : "");
  for (size_t i = 0; i < n; i++) {
    const qd_plan_section_t* s = qd_plan_file_section(pf, i);
    char quoted[QD_PLAN_NAME_SIZE + 2];
    snprintf(quoted, sizeof quoted, "\"%s\"", s->name);
    bool more = v->verify || !s->known; /* no trailing blanks after the last column */
    printf("%3zu  %-4s  %-*s  %12llu  %10s  %5llu  %-18s  %-*s", i, s->kind_text, (int)wname, quoted,
           (unsigned long long)s->offset, qd_format_bytes(s->size, b, sizeof b),
           (unsigned long long)((uint64_t)1 << s->align_log2), qdc_hex64_(s->checksum, h, sizeof h), more ? 8 : 0,
           s->required ? "yes" : "no");
    if (v->verify)
      printf("  %s", v->verify[i] == QDC_VERIFY_OK ? "ok" : v->verify[i] == QDC_VERIFY_MISMATCH ? "MISMATCH" : "-");
    if (v->verify && v->verify[i] == QDC_VERIFY_MISMATCH)
      printf(" (computed %s)", qdc_hex64_(v->computed[i], h, sizeof h));
    if (!s->known) printf("  (unknown kind, skipped)");
    putchar('\n');
  }
  if (n == 0) printf("(no sections)\n");
  putchar('\n');
  qdc_plan_contents_text_(v);
  qdc_plan_contents_print(pf, v->meta_json);
  putchar('\n');
  qdc_plan_kernels_text_(v);
  qdc_plan_tuning_text_(v);
  if (v->verify) {
    if (v->mismatches == 0)
      printf("verify: all %zu section checksums match\n", n);
    else
      printf("verify: checksum mismatch in %zu of %zu sections\n", v->mismatches, n);
  }
}

static cJSON* qdc_plan_build_json_(const qdc_plan_view_t* v) {
  const qd_plan_file_t* pf = v->pf;
  char h[24];
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  bool ok = cJSON_AddStringToObject(root, "path", qd_plan_file_path(pf)) &&
            cJSON_AddStringToObject(root, "kind", "plan");
  cJSON* fmt = ok ? cJSON_AddObjectToObject(root, "format") : NULL;
  ok = fmt && cJSON_AddNumberToObject(fmt, "major", qd_plan_file_version_major(pf)) &&
       cJSON_AddNumberToObject(fmt, "minor", qd_plan_file_version_minor(pf)) &&
       cJSON_AddStringToObject(root, "writer", qd_plan_file_writer(pf)) &&
       cJSON_AddNumberToObject(root, "size", (double)qd_plan_file_size(pf)) &&
       cJSON_AddNumberToObject(root, "flags", qd_plan_file_flags(pf)) &&
       cJSON_AddNumberToObject(root, "table_offset", (double)qd_plan_file_table_offset(pf)) &&
       cJSON_AddStringToObject(root, "header_checksum", qdc_hex64_(qd_plan_file_header_checksum(pf), h, sizeof h));
  cJSON* sections = ok ? cJSON_AddArrayToObject(root, "sections") : NULL;
  ok = ok && sections;
  for (size_t i = 0; ok && i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* s = qd_plan_file_section(pf, i);
    cJSON* o = cJSON_CreateObject();
    ok = o && cJSON_AddItemToArray(sections, o) && cJSON_AddNumberToObject(o, "index", (double)i) &&
         cJSON_AddStringToObject(o, "kind", s->kind_text) && cJSON_AddStringToObject(o, "name", s->name) &&
         cJSON_AddNumberToObject(o, "offset", (double)s->offset) &&
         cJSON_AddNumberToObject(o, "size", (double)s->size) &&
         cJSON_AddNumberToObject(o, "alignment", (double)((uint64_t)1 << s->align_log2)) &&
         cJSON_AddStringToObject(o, "checksum", qdc_hex64_(s->checksum, h, sizeof h)) &&
         cJSON_AddBoolToObject(o, "required", s->required) && cJSON_AddBoolToObject(o, "known", s->known);
    if (ok && v->verify) {
      ok = cJSON_AddStringToObject(o, "verify", v->verify[i] == QDC_VERIFY_OK ? "ok" : "mismatch") &&
           cJSON_AddStringToObject(o, "computed", qdc_hex64_(v->computed[i], h, sizeof h));
    }
  }
  ok = ok && qdc_plan_contents_json_(v, root) && qdc_plan_contents_add_json(pf, v->meta_json, root) && qdc_plan_kernels_json_(v, root) &&
       qdc_plan_tuning_json_(v, root);
  if (ok && v->verify) {
    cJSON* vo = cJSON_AddObjectToObject(root, "verify");
    ok = vo && cJSON_AddBoolToObject(vo, "ok", v->mismatches == 0) &&
         cJSON_AddNumberToObject(vo, "mismatches", (double)v->mismatches);
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

/* Recomputes every checksum, one progress bar over all bytes; mismatches are recorded, not fatal, so that the
 * report lists every bad section. */
static qd_status_t qdc_plan_verify_all_(qdc_plan_view_t* v) {
  size_t n = qd_plan_file_section_count(v->pf);
  v->verify = calloc(n ? n : 1, sizeof *v->verify);
  v->computed = calloc(n ? n : 1, sizeof *v->computed);
  if (!v->verify || !v->computed) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory for %zu sections", n);
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += qd_plan_file_section(v->pf, i)->size;
  qd_progress_t p;
  qd_progress_begin(&p, NULL, "verifying", total, "B");
  qd_status_t status = QD_OK;
  for (size_t i = 0; i < n && !status; i++) {
    qd_status_t s = qd_plan_file_verify_section(v->pf, i, &p, &v->computed[i]);
    if (s && qd_status_detail(s) == QD_E_PLAN_SECTION_CHECKSUM) {
      v->verify[i] = QDC_VERIFY_MISMATCH;
      v->mismatches++;
      qd_status_free(s);
    } else if (s) {
      status = s; /* cancelled */
    } else {
      v->verify[i] = QDC_VERIFY_OK;
    }
  }
  qd_progress_end(&p);
  return status;
}

int qdc_inspect_plan(const qdc_inspect_options_t* opt) {
  qd_plan_file_t* pf;
  qd_status_t s = qd_plan_file_open(opt->path, qd_allocator_system(), 0, &pf);
  if (s) return qdc_plan_fail_(s);
  qdc_plan_view_t v = {.pf = pf};
  int rc = 0;
  s = qdc_plan_read_meta_(&v);
  if (!s) s = qdc_plan_read_kernels_(&v);
  if (!s && opt->verify) s = qdc_plan_verify_all_(&v);
  if (s) {
    rc = qdc_plan_fail_(s);
  } else if (opt->json) {
    cJSON* doc = qdc_plan_build_json_(&v);
    char* text = doc ? cJSON_Print(doc) : NULL;
    cJSON_Delete(doc);
    if (!text) {
      rc = qdc_plan_fail_(QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory building the JSON output"));
    } else {
      fputs(text, stdout);
      fputc('\n', stdout);
      cJSON_free(text);
    }
  } else {
    qdc_plan_print_text_(&v);
  }
  if (rc == 0 && fflush(stdout) != 0) {
    int e = errno;
    rc = qdc_plan_fail_(QD_ERR(IO, IO_WRITE, "cannot write to stdout: %s", strerror(e)));
  }
  if (rc == 0 && v.mismatches) {
    /* The report above lists them; the error line names them for logs and scripts. */
    char list[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < qd_plan_file_section_count(pf) && o < sizeof list; i++) {
      if (v.verify[i] != QDC_VERIFY_MISMATCH) continue;
      const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
      o += (size_t)snprintf(list + o, sizeof list - o, "%s%s \"%s\"", o ? ", " : "", sec->kind_text, sec->name);
    }
    rc = qdc_plan_fail_(QD_ERR(BAD_INPUT, PLAN_SECTION_CHECKSUM, "%s: %zu section%s do%s not match %s checksum%s: "
                               "%s; the file is corrupt", opt->path, v.mismatches, v.mismatches == 1 ? "" : "s",
                               v.mismatches == 1 ? "es" : "", v.mismatches == 1 ? "its" : "their",
                               v.mismatches == 1 ? "" : "s", list));
  }
  free(v.verify);
  free(v.computed);
  qd_json_destroy(v.meta_doc);
  cJSON_Delete(v.meta_json);
  free(v.kern);
  qd_plan_file_close(pf);
  return rc;
}
