/* qdc: autotuning a plan on the GPU present (qdc compile --autotune default|max, qdc tune PLAN), the analogue of
 * torch.compile's "max-autotune" done once, ahead of time.
 *
 * For every component and resolution of the plan: a CUDA executor with the defaults (no tuning records, no
 * hoisting) runs the program once on seeded random inputs and times it per op class (untuned); then
 * qd_cuda_executor_autotune times cuBLASLt's GEMM candidates and the kernel sites' variants (runtime/cuda/
 * executor.h) and collects the winners (runtime/cuda/tuning.h): GEMM algorithms that beat the heuristic's first by
 * 3% and kernel variants that beat the default by 2%, each timed alone. The plan is then written again, every
 * section copied as it was, with a TUNE section per tuned component and, in its KERN, cubins of the tuned kernel
 * variants for the architecture tuned on (when the plan carries kernels for it). The new plan is checked before it
 * replaces the old one: every component and size runs with its records and without them, on the same inputs; the
 * outputs must agree (relative L2 at most 5e-2: the variants compute the same thing in another order, which a deep
 * program in bf16 grows to a few 1e-2); both are
 * timed three times, alternating (the whole program as a CUDA graph, after half a second of warming, and per op
 * class). A component keeps its records only when its tuned program is at least 0.5% faster: what wins alone can
 * lose inside a program running at the GPU's power limit. Without a GPU, or when nothing proved faster, the plan
 * stays as it was and the report says why.
 *
 * Ownership: the report is the caller's (fixed arrays). */
#ifndef QDC_AUTOTUNE_H
#define QDC_AUTOTUNE_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/plan.h"
#include "qd/status.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda/tuning.h"

enum { QDC_AUTOTUNE_MAX_ROWS = 32 };

typedef struct qdc_autotune_row {
  char component[24];
  int64_t width, height, batch;
  int32_t component_index, resolution_index;
  bool tuned_here;                 /* false: not tuned (note says why) */
  bool kept;                       /* its component's records are in the plan */
  int32_t gemms, kernels_tuned;    /* records this size added: GEMM descriptors and kernel sites where another
                                      candidate won */
  double untuned_step_ms, tuned_step_ms; /* the program, CUDA graph replay, median (of three alternating runs) */
  double untuned_ms[6], tuned_ms[6]; /* per op class (qd_cuda_op_class_name), eager launches one after another */
  double rel_l2;                   /* the tuned output against the untuned one */
  char note[200];
} qdc_autotune_row_t;

typedef struct qdc_autotune_report {
  bool tuned;          /* false: no GPU (why_not says so); the plan was left as it was */
  bool changed;        /* some component kept records: the plan was rewritten */
  char why_not[256];
  char device[96], arch[16];
  int32_t cublaslt, driver;
  bool max;
  double seconds;
  int32_t row_count;
  qdc_autotune_row_t rows[QDC_AUTOTUNE_MAX_ROWS];
} qdc_autotune_report_t;

/* Tunes the plan at `path` and rewrites it in place (atomically). Errors: the plan's (PLAN_*), the executor's and
 * the driver's, AUTOTUNE_MISMATCH (INTERNAL) when the tuned plan's output disagrees with the untuned one (the old plan
 * then stays), CANCELLED, OUT_OF_MEMORY, IO_*. */
qd_status_t qdc_autotune_plan(const char* path, bool max, qd_allocator_t allocator, qdc_autotune_report_t* out);

/* Writes the plan to `to` (atomically): every section as it is (TUNE sections left out), then per component c with
 * records[c] (NULL: none) a TUNE section, and its KERN section with a cubin of each of tuned[c]'s kernels that it
 * lacks, when the plan's kernels cover the records' architecture. records and tuned have one entry per plan
 * component. Errors: the writer's (IO_*), NVRTC's, OUT_OF_MEMORY. */
qd_status_t qdc_autotune_write_plan(const qd_plan_t* plan, const char* to, qd_tuning_t* const* records,
                                   const qd_cuda_kernel_list_t* tuned, qd_allocator_t allocator);

/* The report as JSON (NULL when out of memory). */
struct cJSON* qdc_autotune_json(const qdc_autotune_report_t* report);
/* The report as qdc prints it (aligned table: component, size, GEMMs, kernels, then untuned -> tuned per op class
 * and in all), or as JSON with `json`. */
void qdc_autotune_print(const qdc_autotune_report_t* report, bool json);

#endif
