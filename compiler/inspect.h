/* qdc inspect: the options every input kind's handler receives, and the handlers that live in their own files. */
#ifndef QDC_INSPECT_H
#define QDC_INSPECT_H

#include <stdbool.h>
#include <stdint.h>

#include "compiler/cli.h"

typedef struct qdc_inspect_options {
  const char* path;
  bool json;
  bool summary;           /* no per-tensor table / array */
  bool verify;            /* plans: recompute every checksum */
  const char* config;     /* graphs: configuration (NULL = default) */
  int64_t width, height;  /* graphs: resolution (0 = 1024x1024) */
  int64_t batch;          /* graphs: batch (0 = 1) */
} qdc_inspect_options_t;

int qdc_inspect_graph(const qdc_inspect_options_t* opt);
int qdc_inspect_plan(const qdc_inspect_options_t* opt); /* compiler/inspect_plan.c */

/* compiler/inspect_plan_contents.c: what a plan holds, from its META and PROG sections. */
struct cJSON;
struct qd_plan_file;
/* meta: the META document inspect_plan.c parsed (NULL when absent or not JSON: nothing is printed or added). */
void qdc_plan_contents_print(const struct qd_plan_file* pf, const struct cJSON* meta);
/* Adds "contents" (a copy of META, plus "programs": each component's PROG without description and offsets) to
 * root; false when cJSON runs out of memory. */
bool qdc_plan_contents_add_json(const struct qd_plan_file* pf, const struct cJSON* meta, struct cJSON* root);

#endif
