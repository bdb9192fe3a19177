/* Linear layers on cuBLASLt: y[M, N] = x[M, K] W[N, K]^T (+ bias[N]) (then GELU, tanh form), bf16 in and out,
 * fp32 accumulation.
 *
 * In cuBLASLt's column-major terms a row-major [M, N] output is an [N, M] matrix, so the call is
 * D[N, M] = op(A)[N, K] B[K, M] with A = W (row-major [N, K] read transposed) and B = x: no data is transposed.
 * The bias epilogue adds bias to every column of D, i.e. per output feature. One qd_gemm_t per shape holds the
 * descriptors and the chosen algorithm; choosing is either cuBLASLt's heuristic (its first answer) or timing its
 * candidates (autotuning, qd_gemm_tune).
 *
 * Batched (lowering.h's batched linears): `count` GEMMs of one shape in one call, all reading the same x, weight
 * and bias i at w + i * w_stride and bias + i * bias_stride, output i at y + i * y_stride (strides in elements).
 * cuBLASLt's strided batch: one launch whose tiles cover every GEMM of the batch.
 *
 * Parts (lowering.h): a GEMM over columns k0..k0+k of a weight whose rows are w_ld elements long (the caller passes
 * w + k0), and with `accumulate` adding into y instead of overwriting it (beta 1): a linear over a concatenation is
 * the sum of one GEMM per part, the first with the bias, the others accumulating. And an output whose rows are y_ld
 * elements apart: a part of a concatenation written in place (the caller passes y + its first column). */
#ifndef QD_RUNTIME_CUDA_GEMM_H
#define QD_RUNTIME_CUDA_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime/cuda_cublaslt.h"
#include "runtime/cuda_driver.h"

typedef enum qd_gemm_epilogue {
  QD_GEMM_PLAIN = 0,
  QD_GEMM_BIAS,
  QD_GEMM_BIAS_GELU,
} qd_gemm_epilogue_t;

typedef struct qd_gemm_batch {
  int32_t count;                         /* 1: a plain GEMM (strides unused) */
  int64_t w_stride, y_stride, bias_stride; /* elements */
} qd_gemm_batch_t;

/* How a GEMM reads its weight and writes its output: the weight's and the output's row lengths in elements (0: k
 * and n) and whether it adds to the output. */
typedef struct qd_gemm_part {
  int64_t w_ld, y_ld;
  bool accumulate;
} qd_gemm_part_t;

typedef struct qd_gemm {
  const qd_cublaslt_t* lt;
  int64_t m, n, k;
  qd_gemm_epilogue_t epilogue;
  qd_gemm_batch_t batch;
  qd_gemm_part_t part;  /* w_ld and y_ld resolved (never 0) */
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, d;
  cublasLtMatmulAlgo_t algo;
  size_t workspace_needed;
  int candidates; /* how many algorithms the heuristic offered */
} qd_gemm_t;

/* Creates descriptors and picks cuBLASLt's first heuristic algorithm fitting `workspace_bytes`. batch NULL: one
 * GEMM; part NULL: the whole weight (rows k long), output overwritten. */
qd_status_t qd_gemm_init(qd_gemm_t* g, cublasLtHandle_t handle, int64_t m, int64_t n, int64_t k,
                         qd_gemm_epilogue_t epilogue, const qd_gemm_batch_t* batch, const qd_gemm_part_t* part,
                         size_t workspace_bytes);
void qd_gemm_deinit(qd_gemm_t* g);

/* Enqueues y = x W^T (+ bias) (+ y with part.accumulate) on stream (every GEMM of a batch: the pointers are the first's). bias is read only
 * with a bias epilogue. */
qd_status_t qd_gemm_run(const qd_gemm_t* g, cublasLtHandle_t handle, CUdeviceptr y, CUdeviceptr x, CUdeviceptr w,
                        CUdeviceptr bias, CUdeviceptr workspace, size_t workspace_bytes, CUstream stream);

/* Times up to `max_candidates` of the heuristic's algorithms on the given buffers (median of `iters` runs each)
 * and keeps the fastest; reports the heuristic's time and the best. Needs real buffers of the right sizes. */
qd_status_t qd_gemm_tune(qd_gemm_t* g, const qd_cuda_driver_t* cu, cublasLtHandle_t handle, int max_candidates,
                         int iters, CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias,
                         CUdeviceptr workspace, size_t workspace_bytes, CUstream stream, float* out_default_ms,
                         float* out_best_ms);

#endif
