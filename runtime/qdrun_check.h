/* qdrun --check PLAN: whether the plan can run on this machine, and why not, without running anything (no CUDA
 * context is created and nothing is allocated on a GPU).
 *
 * For every device: the kernels (the plan's cubins for its architecture, else the plan's PTX, else NVRTC; the same
 * decision the executor makes, runtime/cuda/kernel_variants.h, and every kernel the plan's programs launch must be
 * there or compilable), the driver against what the images need, and the device's memory against what the
 * executors allocate (runtime/cuda/device_memory.h: every component's weights, plus the largest of the
 * components' activation arena, NF4 scratch, cuBLASLt workspace and inputs, plus 512 MiB for the CUDA context and
 * libraries). cuBLASLt must be there too.
 *
 * Output: a report on stdout (or with --json one JSON document). Exit 0 when at least one device can run the plan,
 * 1 otherwise (no driver, no device, no fitting kernels, too little memory, an invalid plan). */
#ifndef QD_RUNTIME_QDRUN_CHECK_H
#define QD_RUNTIME_QDRUN_CHECK_H

#include <stdbool.h>

int qdrun_check(const char* plan_path, bool json);

#endif
