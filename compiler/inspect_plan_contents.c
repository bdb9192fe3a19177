/* qdc inspect PLAN: what the plan holds (docs/plan-format.md, "Contents"): model, quantization, resolutions, and per
 * component its graph, parameters, storage, NF4 error and, per resolution, the program's size and activation arena.
 *
 * The container has been validated when this runs, but not the contents: every field is read defensively and
 * one that is missing or of the wrong type prints as "?" (qdrun and qd_plan_open reject such a plan; inspect is
 * for looking at it). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "compiler/cli.h"
#include "compiler/inspect.h"
#include "qd/plan_file.h"
#include "qd/plan_format.h"

static const char* qdc_str_(const cJSON* o, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsString(v) ? v->valuestring : "?";
}

static double qdc_num_(const cJSON* o, const char* key) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
  return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static cJSON* qdc_parse_section_(const qd_plan_file_t* pf, uint32_t kind, const char* name) {
  const qd_plan_section_t* s = qd_plan_file_find(pf, kind, name);
  return s ? cJSON_ParseWithLength(s->data, (size_t)s->size) : NULL;
}

static const char* qdc_bytes_(double v, char* buf, size_t size) {
  if (v < 0) return "?";
  return qd_format_bytes((uint64_t)v, buf, size);
}

static const char* qdc_count_(double v, char* buf, size_t size) {
  if (v < 0) return "?";
  return qdc_format_count((uint64_t)v, buf, size);
}

/* One line per compiled resolution of a component's program: size of the graph and of its activation arena. */
static void qdc_print_program_(const qd_plan_file_t* pf, const char* component) {
  cJSON* prog = qdc_parse_section_(pf, QD_PLAN_KIND_PROG, component);
  const cJSON* res = cJSON_GetObjectItemCaseSensitive(prog, "resolutions");
  const cJSON* r;
  cJSON_ArrayForEach(r, res) {
    char arena[32], bind[256] = "";
    size_t used = 0;
    const cJSON* b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(r, "bindings")) {
      if (used < sizeof bind && cJSON_IsNumber(b))
        used += (size_t)snprintf(bind + used, sizeof bind - used, "%s%s %.0f", used ? ", " : "", b->string,
                                 b->valuedouble);
    }
    printf("    %5.0fx%-5.0f batch %.0f: %6.0f nodes, %6.0f values, arena %10s  (%s)\n", qdc_num_(r, "width"),
           qdc_num_(r, "height"), qdc_num_(r, "batch"), qdc_num_(r, "nodes"), qdc_num_(r, "values"),
           qdc_bytes_(qdc_num_(r, "arena_bytes"), arena, sizeof arena), bind);
  }
  if (!prog) printf("    (no readable PROG \"%s\" section)\n", component);
  cJSON_Delete(prog);
}

void qdc_plan_contents_print(const qd_plan_file_t* pf, const cJSON* meta) {
  if (!cJSON_IsObject(meta)) return;
  printf("\nmodel        %s, compiled by qd %s at %s\n", qdc_str_(meta, "model"), qdc_str_(meta, "qd_version"),
         qdc_str_(meta, "created"));
  const cJSON* compile = cJSON_GetObjectItemCaseSensitive(meta, "compile");
  if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(compile, "command")))
    printf("command      %s\n", qdc_str_(compile, "command"));
  const cJSON* q = cJSON_GetObjectItemCaseSensitive(meta, "quantization");
  if (strcmp(qdc_str_(q, "method"), "nf4") == 0) {
    printf("quantization NF4, blocksize %.0f%s, components:", qdc_num_(q, "blocksize"),
           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(q, "double_quant")) ? ", double-quantized scales" : "");
    const cJSON* e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(q, "components")) {
      if (cJSON_IsString(e)) printf(" %s", e->valuestring);
    }
    const cJSON* keep = cJSON_GetObjectItemCaseSensitive(q, "keep");
    if (cJSON_GetArraySize(keep) > 0) {
      printf("; kept in bf16:");
      cJSON_ArrayForEach(e, keep) {
        if (cJSON_IsString(e)) printf(" %s", e->valuestring);
      }
    }
    printf("\n");
  } else {
    printf("quantization none (%s weights)\n", strcmp(qdc_str_(q, "method"), "f32") == 0 ? "fp32" : "bf16");
  }
  printf("resolutions ");
  const cJSON* r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(meta, "resolutions")) {
    if (cJSON_GetArraySize(r) == 2)
      printf(" %.0fx%.0f", cJSON_GetArrayItem(r, 0)->valuedouble, cJSON_GetArrayItem(r, 1)->valuedouble);
  }
  printf("\n");
  const cJSON* tok;
  cJSON_ArrayForEach(tok, cJSON_GetObjectItemCaseSensitive(meta, "tokenizers")) {
    char b[32];
    printf("tokenizer    %s: %s, from %s\n", qdc_str_(tok, "name"), qdc_bytes_(qdc_num_(tok, "bytes"), b, sizeof b),
           qdc_str_(tok, "source"));
  }
  if (cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(meta, "scheduler")))
    printf("scheduler    %s\n", qdc_str_(cJSON_GetObjectItemCaseSensitive(meta, "scheduler"), "_class_name"));
  printf("\ncomponents\n");
  const cJSON* c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(meta, "components")) {
    char p[32], pq[32], wb[32], sb[32];
    double params = qdc_num_(c, "parameters"), quant = qdc_num_(c, "quantized_parameters");
    printf("  %-16s %s/%s, weights layout %s\n", qdc_str_(c, "name"), qdc_str_(c, "graph"), qdc_str_(c, "config"),
           qdc_str_(c, "layout"));
    printf("    %s parameters, %s as NF4", qdc_count_(params, p, sizeof p), qdc_count_(quant, pq, sizeof pq));
    if (quant > 0) printf(" (relative weight error %.4f)", qdc_num_(c, "weight_relative_error"));
    if (qdc_num_(c, "nf4_weights_copied") > 0)
      printf(", %.0f NF4 weights copied from the checkpoint", qdc_num_(c, "nf4_weights_copied"));
    printf("; %s stored, %s in the source\n", qdc_bytes_(qdc_num_(c, "weight_bytes"), wb, sizeof wb),
           qdc_bytes_(qdc_num_(c, "source_bytes"), sb, sizeof sb));
    if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(c, "name")))
      qdc_print_program_(pf, qdc_str_(c, "name"));
  }
}

bool qdc_plan_contents_add_json(const qd_plan_file_t* pf, const cJSON* meta_in, cJSON* root) {
  /* The META document as the compiler wrote it, and per component its programs without the bulky parts (the
   * description and the per-value offsets). */
  if (!cJSON_IsObject(meta_in)) return cJSON_AddNullToObject(root, "contents") != NULL;
  cJSON* meta = cJSON_Duplicate(meta_in, true);
  if (!meta) return false;
  cJSON* programs = cJSON_AddObjectToObject(meta, "programs");
  const cJSON* c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(meta, "components")) {
    const cJSON* name = cJSON_GetObjectItemCaseSensitive(c, "name");
    if (!programs || !cJSON_IsString(name)) continue;
    cJSON* prog = qdc_parse_section_(pf, QD_PLAN_KIND_PROG, name->valuestring);
    if (!prog) continue;
    cJSON_DeleteItemFromObjectCaseSensitive(prog, "description");
    cJSON* r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(prog, "resolutions")) {
      cJSON_DeleteItemFromObjectCaseSensitive(r, "offsets");
    }
    cJSON_AddItemToObject(programs, name->valuestring, prog);
  }
  cJSON_AddItemToObject(root, "contents", meta);
  return programs != NULL;
}
