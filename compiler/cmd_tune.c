/* qdc tune: autotunes an existing plan on the GPU present and rewrites it in place (compiler/autotune.h); what
 * `qdc compile --autotune` does after writing a plan, for plans already made (qdc synth --plan, another machine's
 * compile). */
#include <stdio.h>
#include <string.h>

#include "compiler/autotune.h"
#include "compiler/qdc_commands.h"
#include "qd/log.h"

static void qdc_tune_usage_(FILE* f) {
  fprintf(f,
          "usage: qdc tune PLAN [--level default|max] [--json] [-q] [-v]\n"
          "\n"
          "Times, on the GPU present, cuBLASLt's candidate algorithms for every GEMM of every component and size the\n"
          "plan holds (the heuristic's first 8, or all with max) and the variants of every kernel site (each tunable\n"
          "define's other values; with max, repeated from the best until nothing improves), keeps the fastest in the\n"
          "plan's TUNE sections (with the tuned kernels' cubins in KERN) and prints the time per op class before and\n"
          "after. The plan is replaced only once the tuned one has run every component and agreed with the untuned\n"
          "output. GEMM algorithms apply to the cuBLASLt version they were timed with, kernel variants to the GPU\n"
          "architecture: elsewhere qdrun uses the defaults (with a warning for GEMMs).\n"
          "\n"
          "options:\n"
          "      --level LEVEL   default (default) or max\n"
          "      --json          print the report as one JSON document\n"
          "  -q, --quiet         no report\n"
          "  -v, --verbose       more messages (every site's winner)\n"
          "  -h, --help          show this help\n");
}

int qdc_cmd_tune(int argc, char** argv) {
  const char* path = NULL;
  bool max = false, json = false, quiet = false;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      qdc_tune_usage_(stdout);
      return 0;
    } else if (strcmp(a, "--level") == 0 && i + 1 < argc) {
      const char* v = argv[++i];
      if (strcmp(v, "default") != 0 && strcmp(v, "max") != 0) {
        fprintf(stderr, "qdc: error: tune: --level takes default or max, not '%s' (run 'qdc tune --help')\n", v);
        return 2;
      }
      max = strcmp(v, "max") == 0;
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
      qd_log_set_level(QD_LOG_DEBUG);
    } else if (a[0] == '-' || path) {
      fprintf(stderr, "qdc: error: tune: %s '%s' (run 'qdc tune --help')\n",
              a[0] == '-' ? "unknown option" : "one PLAN expected; extra argument", a);
      return 2;
    } else {
      path = a;
    }
  }
  if (!path) {
    fprintf(stderr, "qdc: error: tune: missing PLAN (run 'qdc tune --help')\n");
    return 2;
  }
  qdc_autotune_report_t r;
  qd_status_t s = qdc_autotune_plan(path, max, qd_allocator_system(), &r);
  if (s) {
    qd_status_fprint(stderr, "qdc", s, false);
    qd_status_free(s);
    return 1;
  }
  if (!r.tuned) { /* asked to tune and cannot: an error, unlike compile --autotune, whose plan is still made */
    fprintf(stderr, "qdc: error: tune: %s: %s\n", path, r.why_not);
    return 1;
  }
  if (!quiet || json) qdc_autotune_print(&r, json);
  return 0;
}
