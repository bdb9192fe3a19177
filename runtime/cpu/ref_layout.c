/* Reference data movement: slices and concatenations along one axis. */
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
