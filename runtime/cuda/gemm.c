/* cuBLASLt linear layers; see gemm.h. */
#include "runtime/cuda/gemm.h"

#include <stdlib.h>
#include <string.h>

enum { QD_GEMM_MAX_CANDIDATES = 32 };

static qd_status_t qd_gemm_layout_(const qd_cublaslt_t* lt, cublasLtMatrixLayout_t* out, uint64_t rows,
                                   uint64_t cols, int64_t ld) {
  QD_CUBLASLT_TRY(lt->cublasLtMatrixLayoutCreate(out, CUDA_R_16BF, rows, cols, ld));
  return QD_OK;
}

/* A strided batch on a layout: count matrices, `stride` elements apart (0: the same matrix for all). */
static qd_status_t qd_gemm_layout_batch_(const qd_cublaslt_t* lt, cublasLtMatrixLayout_t layout, int32_t count,
                                         int64_t stride) {
  QD_CUBLASLT_TRY(lt->cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count,
                                                       sizeof count));
  QD_CUBLASLT_TRY(lt->cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                       sizeof stride));
  return QD_OK;
}

qd_status_t qd_gemm_init(qd_gemm_t* g, cublasLtHandle_t handle, int64_t m, int64_t n, int64_t k,
                         qd_gemm_epilogue_t epilogue, const qd_gemm_batch_t* batch, const qd_gemm_part_t* part,
                         size_t workspace_bytes) {
  memset(g, 0, sizeof *g);
  QD_TRY(qd_cublaslt_load(&g->lt));
  const qd_cublaslt_t* lt = g->lt;
  g->m = m;
  g->n = n;
  g->k = k;
  g->epilogue = epilogue;
  g->batch = batch && batch->count > 1 ? *batch : (qd_gemm_batch_t){1, 0, 0, 0};
  g->part = part ? *part : (qd_gemm_part_t){0, 0, false};
  if (g->part.w_ld <= 0) g->part.w_ld = k;
  if (g->part.y_ld <= 0) g->part.y_ld = n;
  QD_CUBLASLT_TRY(lt->cublasLtMatmulDescCreate(&g->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  QD_CUBLASLT_TRY(lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  QD_CUBLASLT_TRY(lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  cublasLtEpilogue_t ep = epilogue == QD_GEMM_BIAS        ? CUBLASLT_EPILOGUE_BIAS
                          : epilogue == QD_GEMM_BIAS_GELU ? CUBLASLT_EPILOGUE_GELU_BIAS
                                                          : CUBLASLT_EPILOGUE_DEFAULT;
  QD_CUBLASLT_TRY(lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep));
  if (epilogue != QD_GEMM_PLAIN) {
    cudaDataType_t bt = CUDA_R_16BF;
    QD_CUBLASLT_TRY(lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
  }
  /* Column-major views: A = W^T stored as [K, N] (ld: the weight's row length), B = x^T as [K, M] (ld K),
   * D = y^T as [N, M] (ld: the output's row length). */
  QD_TRY(qd_gemm_layout_(lt, &g->a, (uint64_t)k, (uint64_t)n, g->part.w_ld));
  QD_TRY(qd_gemm_layout_(lt, &g->b, (uint64_t)k, (uint64_t)m, k));
  QD_TRY(qd_gemm_layout_(lt, &g->d, (uint64_t)n, (uint64_t)m, g->part.y_ld));
  if (g->batch.count > 1) {
    QD_TRY(qd_gemm_layout_batch_(lt, g->a, g->batch.count, g->batch.w_stride));
    QD_TRY(qd_gemm_layout_batch_(lt, g->b, g->batch.count, 0)); /* every GEMM reads the same x */
    QD_TRY(qd_gemm_layout_batch_(lt, g->d, g->batch.count, g->batch.y_stride));
    if (epilogue != QD_GEMM_PLAIN)
      QD_CUBLASLT_TRY(lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE,
                                                         &g->batch.bias_stride, sizeof g->batch.bias_stride));
  }
  cublasLtMatmulPreference_t pref;
  QD_CUBLASLT_TRY(lt->cublasLtMatmulPreferenceCreate(&pref));
  qd_status_t s = QD_CUBLASLT_STATUS(lt->cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
  cublasLtMatmulHeuristicResult_t results[1];
  int found = 0;
  if (!s)
    s = QD_CUBLASLT_STATUS(lt->cublasLtMatmulAlgoGetHeuristic(handle, g->desc, g->a, g->b, g->d, g->d, pref, 1, results,
                                                              &found));
  lt->cublasLtMatmulPreferenceDestroy(pref);
  QD_TRY(s);
  if (found < 1)
    return QD_ERR(UNSUPPORTED, CUBLASLT_ERROR, "cuBLASLt has no algorithm for a %lldx%lldx%lld bf16 GEMM (batch %d)",
                  (long long)m, (long long)n, (long long)k, g->batch.count);
  g->algo = results[0].algo;
  g->workspace_needed = results[0].workspaceSize;
  g->candidates = found;
  return QD_OK;
}

void qd_gemm_deinit(qd_gemm_t* g) {
  if (!g->lt) return;
  if (g->desc) g->lt->cublasLtMatmulDescDestroy(g->desc);
  if (g->a) g->lt->cublasLtMatrixLayoutDestroy(g->a);
  if (g->b) g->lt->cublasLtMatrixLayoutDestroy(g->b);
  if (g->d) g->lt->cublasLtMatrixLayoutDestroy(g->d);
  memset(g, 0, sizeof *g);
}

static qd_status_t qd_gemm_call_(const qd_gemm_t* g, const cublasLtMatmulAlgo_t* algo, cublasLtHandle_t handle,
                                 CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias, CUdeviceptr ws,
                                 size_t ws_bytes, CUstream stream) {
  /* The bias pointer is part of the descriptor; setting it per call keeps one descriptor per shape. */
  if (g->epilogue != QD_GEMM_PLAIN) {
    void* b = (void*)(uintptr_t)bias;
    QD_CUBLASLT_TRY(g->lt->cublasLtMatmulDescSetAttribute(g->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b));
  }
  const float alpha = 1.0f, beta = g->part.accumulate ? 1.0f : 0.0f;
  QD_CUBLASLT_TRY(g->lt->cublasLtMatmul(handle, g->desc, &alpha, (const void*)(uintptr_t)w, g->a,
                                        (const void*)(uintptr_t)x, g->b, &beta, (void*)(uintptr_t)y, g->d,
                                        (void*)(uintptr_t)y, g->d, algo, (void*)(uintptr_t)ws, ws_bytes,
                                        (cudaStream_t)stream));
  return QD_OK;
}

qd_status_t qd_gemm_run(const qd_gemm_t* g, cublasLtHandle_t handle, CUdeviceptr y, CUdeviceptr x, CUdeviceptr w,
                        CUdeviceptr bias, CUdeviceptr workspace, size_t workspace_bytes, CUstream stream) {
  return qd_gemm_call_(g, &g->algo, handle, y, x, w, bias, workspace, workspace_bytes, stream);
}

static int qd_float_cmp_(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return (x > y) - (x < y);
}

static qd_status_t qd_gemm_time_(const qd_gemm_t* g, const qd_cuda_driver_t* cu, const cublasLtMatmulAlgo_t* algo,
                                 cublasLtHandle_t handle, int iters, CUdeviceptr y, CUdeviceptr x, CUdeviceptr w,
                                 CUdeviceptr bias, CUdeviceptr ws, size_t ws_bytes, CUstream stream, float* out_ms) {
  CUevent start, stop;
  QD_CU_TRY(cu->cuEventCreate(&start, CU_EVENT_DEFAULT));
  qd_status_t s = QD_CU_STATUS(cu->cuEventCreate(&stop, CU_EVENT_DEFAULT));
  float times[64];
  if (iters > 64) iters = 64;
  if (!s) s = qd_gemm_call_(g, algo, handle, y, x, w, bias, ws, ws_bytes, stream); /* warm-up */
  for (int i = 0; i < iters && !s; i++) {
    s = QD_CU_STATUS(cu->cuEventRecord(start, stream));
    if (!s) s = qd_gemm_call_(g, algo, handle, y, x, w, bias, ws, ws_bytes, stream);
    if (!s) s = QD_CU_STATUS(cu->cuEventRecord(stop, stream));
    if (!s) s = QD_CU_STATUS(cu->cuEventSynchronize(stop));
    if (!s) s = QD_CU_STATUS(cu->cuEventElapsedTime(&times[i], start, stop));
  }
  cu->cuEventDestroy(start);
  if (!s) cu->cuEventDestroy(stop);
  if (s) return s;
  qsort(times, (size_t)iters, sizeof(float), qd_float_cmp_);
  *out_ms = times[iters / 2];
  return QD_OK;
}

qd_status_t qd_gemm_tune(qd_gemm_t* g, const qd_cuda_driver_t* cu, cublasLtHandle_t handle, int max_candidates,
                         int iters, CUdeviceptr y, CUdeviceptr x, CUdeviceptr w, CUdeviceptr bias,
                         CUdeviceptr workspace, size_t workspace_bytes, CUstream stream, float* out_default_ms,
                         float* out_best_ms) {
  if (max_candidates > QD_GEMM_MAX_CANDIDATES) max_candidates = QD_GEMM_MAX_CANDIDATES;
  cublasLtMatmulPreference_t pref;
  QD_CUBLASLT_TRY(g->lt->cublasLtMatmulPreferenceCreate(&pref));
  qd_status_t s = QD_CUBLASLT_STATUS(g->lt->cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace_bytes, sizeof workspace_bytes));
  cublasLtMatmulHeuristicResult_t results[QD_GEMM_MAX_CANDIDATES];
  int found = 0;
  if (!s)
    s = QD_CUBLASLT_STATUS(g->lt->cublasLtMatmulAlgoGetHeuristic(handle, g->desc, g->a, g->b, g->d, g->d, pref,
                                                                 max_candidates, results, &found));
  g->lt->cublasLtMatmulPreferenceDestroy(pref);
  QD_TRY(s);
  float best = 0;
  int best_i = -1;
  for (int i = 0; i < found; i++) {
    float ms;
    qd_status_t t = qd_gemm_time_(g, cu, &results[i].algo, handle, iters, y, x, w, bias, workspace, workspace_bytes,
                                  stream, &ms);
    if (t) { /* an algorithm that fails to run is skipped, not fatal */
      qd_status_free(t);
      continue;
    }
    if (i == 0) *out_default_ms = ms;
    if (best_i < 0 || ms < best) {
      best = ms;
      best_i = i;
    }
  }
  if (best_i < 0) return QD_ERR(DEVICE, CUBLASLT_ERROR, "no cuBLASLt algorithm ran for a %lldx%lldx%lld GEMM",
                                (long long)g->m, (long long)g->n, (long long)g->k);
  g->algo = results[best_i].algo;
  g->workspace_needed = results[best_i].workspaceSize;
  g->candidates = found;
  *out_best_ms = best;
  return QD_OK;
}
