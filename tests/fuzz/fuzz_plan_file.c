/* libFuzzer target for the plan-file reader (runtime/plan_file.c): any input must give a status or a plan, never a
 * crash, a leak or undefined behaviour. Built with clang -fsanitize=fuzzer,address,undefined by tools/run_fuzz.sh
 * (`make fuzz`, part of `make test`); seeds in tests/fuzz/seeds/plan (tests/fuzz/make_plan_seeds.c writes them).
 *
 * Every accepted plan is walked completely: each section's bytes are read (so a data pointer outside the image
 * would be caught), looked up by (kind, name), and verified, weights included. */
#include <stddef.h>
#include <stdint.h>

#include "qd/plan_file.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  /* The first byte of odd-sized inputs also asks for weight verification at open, so both paths get fuzzed
   * without a second target. */
  uint32_t flags = (size & 1) ? QD_PLAN_OPEN_VERIFY_ALL : 0;
  qd_plan_file_t* pf = NULL;
  qd_status_t s = qd_plan_file_open_memory(data, size, "fuzz.qplan", qd_allocator_system(), flags, &pf);
  if (s) {
    char buf[512];
    qd_status_format(s, buf, sizeof buf); /* messages are built from hostile bytes: format them too */
    qd_status_free(s);
    return 0;
  }
  volatile uint8_t sink = 0;
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    const uint8_t* p = sec->data;
    for (uint64_t k = 0; k < sec->size; k++) sink ^= p[k];
    if (qd_plan_file_find(pf, sec->kind, sec->name) != sec) __builtin_trap();
  }
  (void)sink;
  static const qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  s = qd_plan_file_verify(pf, &quiet);
  qd_status_free(s);
  qd_plan_file_close(pf);
  return 0;
}
