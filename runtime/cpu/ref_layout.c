/* Reference data movement: slices and concatenations along one axis, general axis permutations. */
#include <string.h>

#include "runtime/cpu/ref.h"

void qd_ref_slice(const float* x, float* y, int64_t outer, int64_t axis_dim, int64_t inner, int64_t start,
                  int64_t size) {
  for (int64_t o = 0; o < outer; o++)
    memcpy(y + o * size * inner, x + (o * axis_dim + start) * inner, (size_t)(size * inner) * sizeof(float));
}

void qd_ref_concat(const void* const* inputs, const int64_t* sizes, int32_t count, void* y, int64_t outer,
                   int64_t inner, int64_t elem_size) {
  int64_t total = 0;
  for (int32_t i = 0; i < count; i++) total += sizes[i];
  unsigned char* out = y;
  for (int64_t o = 0; o < outer; o++) {
    int64_t offset = 0;
    for (int32_t i = 0; i < count; i++) {
      size_t bytes = (size_t)(sizes[i] * inner * elem_size);
      memcpy(out + (size_t)((o * total + offset) * inner * elem_size),
             (const unsigned char*)inputs[i] + (size_t)o * bytes, bytes);
      offset += sizes[i];
    }
  }
}

typedef struct qd_permute_job {
  const unsigned char* x;
  unsigned char* y;
  int32_t rank;
  int64_t out_dims[8];
  int64_t src_strides[8]; /* element stride in x of each output axis */
  int64_t elem_size;
} qd_permute_job_t;

/* Rows are the output's rows (all axes but the last); the innermost axis is a strided gather. */
static void qd_permute_rows_(void* ctx, int64_t begin, int64_t end) {
  const qd_permute_job_t* j = ctx;
  int64_t inner = j->out_dims[j->rank - 1], inner_stride = j->src_strides[j->rank - 1];
  for (int64_t row = begin; row < end; row++) {
    int64_t rem = row, src = 0;
    for (int32_t d = j->rank - 2; d >= 0; d--) {
      src += (rem % j->out_dims[d]) * j->src_strides[d];
      rem /= j->out_dims[d];
    }
    if (j->elem_size == 4) {
      const uint32_t* x = (const uint32_t*)j->x + src;
      uint32_t* y = (uint32_t*)j->y + row * inner;
      for (int64_t i = 0; i < inner; i++) y[i] = x[i * inner_stride];
    } else {
      const uint64_t* x = (const uint64_t*)j->x + src;
      uint64_t* y = (uint64_t*)j->y + row * inner;
      for (int64_t i = 0; i < inner; i++) y[i] = x[i * inner_stride];
    }
  }
}

void qd_ref_permute(qd_threadpool_t* pool, const void* x, void* y, const int64_t* dims, const int64_t* perm,
                    int32_t rank, int64_t elem_size) {
  qd_permute_job_t j = {x, y, rank, {0}, {0}, elem_size};
  int64_t in_strides[8], stride = 1, rows = 1;
  for (int32_t d = rank - 1; d >= 0; d--) {
    in_strides[d] = stride;
    stride *= dims[d];
  }
  for (int32_t d = 0; d < rank; d++) {
    j.out_dims[d] = dims[perm[d]];
    j.src_strides[d] = in_strides[perm[d]];
    if (d < rank - 1) rows *= j.out_dims[d];
  }
  qd_parallel_for(pool, rows, 64, qd_permute_rows_, &j);
}
