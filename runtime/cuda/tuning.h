/* Autotuning records of one component: what `qdc compile --autotune` measured on a GPU and the executor then uses
 * (the plan's TUNE section named after the component, JSON; docs/plan-format.md, "TUNE").
 *
 *   gemms    per cuBLASLt GEMM descriptor (shape, epilogue, batch strides, part strides): the fastest of the
 *            heuristic's candidates, as the library's cublasLtMatmulAlgo_t bytes, which cuBLASLt documents as
 *            serializable for the same library version. The executor uses one only when the plan's "cublaslt"
 *            version is the loaded library's and cublasLtMatmulAlgoCheck accepts it for the descriptor; otherwise
 *            it keeps the heuristic's choice and warns once.
 *   kernels  per kernel site, i.e. the default variant's key (runtime/cuda/kernel_variants.h) and the shape of
 *            the node launching it ("1x4608x3072<1x4608x3072,1x3072"): the tunable defines that beat the
 *            template's defaults there. They apply to cubins for the architecture tuned on ("arch") only: other
 *            targets keep the defaults (a faster tile on sm_90 may not fit an sm_86's shared memory).
 *   report   per resolution, the step's time per op class untuned and tuned (qdc prints it).
 *
 * Parsing checks every field's type and range and names the field and value in its errors (PLAN_CONTENT_JSON,
 * PLAN_CONTENT_FIELD); records are looked up by exact key.
 *
 * Ownership: a qd_tuning_t owns its arrays (from its allocator) until destroy. */
#ifndef QD_RUNTIME_CUDA_TUNING_H
#define QD_RUNTIME_CUDA_TUNING_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

struct cJSON;

enum {
  QD_TUNING_VERSION = 1,
  QD_TUNING_ALGO_BYTES = 64, /* sizeof(cublasLtMatmulAlgo_t) */
  QD_TUNING_KEY_MAX = 256,   /* QD_CUDA_KERNEL_KEY_MAX */
  QD_TUNING_SHAPE_MAX = 160,
  QD_TUNING_MAX_DEFINES = 8,
  QD_TUNING_CLASSES = 6,     /* qd_cuda_op_class_name's classes */
};

/* A GEMM descriptor (runtime/cuda/gemm.h's qd_gemm_t fields) and its tuned algorithm. */
typedef struct qd_tuning_gemm {
  int64_t m, n, k;
  int32_t epilogue;                      /* qd_gemm_epilogue_t */
  int32_t batch;                         /* GEMMs per launch */
  int64_t w_stride, y_stride, bias_stride; /* batched only; 0 otherwise */
  int64_t w_ld, y_ld;
  bool accumulate;
  uint8_t algo[QD_TUNING_ALGO_BYTES];
  uint64_t workspace;                    /* bytes the algorithm needs */
  int32_t candidates;                    /* algorithms timed */
  double heuristic_us, tuned_us;
} qd_tuning_gemm_t;

typedef struct qd_tuning_define {
  char name[32];
  int32_t value;
} qd_tuning_define_t;

/* A kernel site and the tunables that beat the defaults there. */
typedef struct qd_tuning_kernel {
  char site[QD_TUNING_KEY_MAX];   /* the default variant's key */
  char shape[QD_TUNING_SHAPE_MAX]; /* the launching node's output shape, then its inputs' */
  int32_t define_count;
  qd_tuning_define_t defines[QD_TUNING_MAX_DEFINES];
  int32_t candidates;             /* variants timed */
  double default_us, tuned_us;
} qd_tuning_kernel_t;

/* One resolution's step per op class, before and after tuning (milliseconds, eager launches one after another). */
typedef struct qd_tuning_report {
  int64_t width, height, batch;
  double untuned_ms[QD_TUNING_CLASSES], tuned_ms[QD_TUNING_CLASSES];
} qd_tuning_report_t;

typedef struct qd_tuning {
  qd_allocator_t allocator;
  char mode[16];    /* "default" or "max" */
  char device[96];  /* the GPU's name */
  char arch[16];    /* "sm_90": the cubins the kernel records apply to */
  int32_t driver;   /* cuDriverGetVersion */
  int32_t cublaslt; /* cublasLtGetVersion: the GEMM records apply to this library only */
  qd_tuning_gemm_t* gemms;
  int32_t gemm_count, gemm_capacity;
  qd_tuning_kernel_t* kernels;
  int32_t kernel_count, kernel_capacity;
  qd_tuning_report_t* reports;
  int32_t report_count, report_capacity;
} qd_tuning_t;

/* An empty record set. Errors: OUT_OF_MEMORY. */
qd_status_t qd_tuning_create(qd_allocator_t allocator, qd_tuning_t** out_tuning);
void qd_tuning_destroy(qd_tuning_t* tuning); /* NULL-safe */

/* Parses a TUNE section's JSON (`size` bytes, not necessarily NUL-terminated); `where` names it in errors ("x.qplan:
 * TUNE 'transformer'"). Errors: PLAN_CONTENT_JSON (not JSON), PLAN_CONTENT_FIELD (a missing or wrong field, named
 * with its value), OUT_OF_MEMORY. */
qd_status_t qd_tuning_parse(const char* json, uint64_t size, const char* where, qd_allocator_t allocator,
                            qd_tuning_t** out_tuning);
/* The JSON qdc writes (NULL when out of memory). */
struct cJSON* qd_tuning_to_json(const qd_tuning_t* tuning);

/* Adds a record, replacing one with the same key. Errors: OUT_OF_MEMORY, INVALID_ARGUMENT (a kernel record with
 * more than QD_TUNING_MAX_DEFINES defines or strings too long). */
qd_status_t qd_tuning_add_gemm(qd_tuning_t* tuning, const qd_tuning_gemm_t* gemm);
qd_status_t qd_tuning_add_kernel(qd_tuning_t* tuning, const qd_tuning_kernel_t* kernel);
qd_status_t qd_tuning_add_report(qd_tuning_t* tuning, const qd_tuning_report_t* report);

/* The record with key's descriptor (every field but the algorithm and the timings), or NULL. */
const qd_tuning_gemm_t* qd_tuning_find_gemm(const qd_tuning_t* tuning, const qd_tuning_gemm_t* key);
/* The record of (site, shape), or NULL. tuning may be NULL. */
const qd_tuning_kernel_t* qd_tuning_find_kernel(const qd_tuning_t* tuning, const char* site, const char* shape);

#endif
