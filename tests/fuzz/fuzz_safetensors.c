/* libFuzzer target for the safetensors reader (ir/safetensors.c): any input must give a status or a file, never a
 * crash, a leak or undefined behaviour. Built and run by tools/run_fuzz.sh (`make fuzz`, part of `make test`);
 * seeds are the committed malformed-file corpus, tests/data/safetensors_corpus.
 *
 * Every accepted file is walked: tensors looked up by name, metadata read, and small tensors widened to float32,
 * which reads every data byte through the pointers the reader formed. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "qd/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qd_safetensors_t* st = NULL;
  qd_status_t s = qd_safetensors_open_memory(data, size, "fuzz.safetensors", qd_allocator_system(), &st);
  if (s) {
    char buf[512];
    qd_status_format(s, buf, sizeof buf);
    qd_status_free(s);
    return 0;
  }
  for (size_t i = 0; i < qd_safetensors_tensor_count(st); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(st, i);
    if (qd_safetensors_find(st, t->name) != t) __builtin_trap();
    if (t->numel > 0 && t->numel <= 4096) {
      float* out = malloc((size_t)t->numel * sizeof *out);
      if (out) {
        qd_status_free(qd_tensor_read_f32(t, out));
        free(out);
      }
    }
  }
  const char *key, *value;
  for (size_t m = 0; qd_safetensors_metadata_at(st, m, &key, &value); m++)
    if (qd_safetensors_metadata_get(st, key) == NULL) __builtin_trap();
  qd_safetensors_close(st);
  return 0;
}
