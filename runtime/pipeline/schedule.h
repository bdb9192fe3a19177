/* Offload schedules of a pipeline plan, sized from the plan alone (no GPU): what each one holds on the GPU at its
 * busiest and what it copies, for one image size. The generator picks the fastest schedule under a VRAM budget
 * with it (qd_generator_options_t.vram_budget), and `qdrun --check` prints the table.
 *
 * Sizes come from runtime/cuda/device_memory.h (what the CUDA executor allocates per component) and, for the
 * streamed schedule, from runtime/cuda/weight_stream.h's bounds (the largest block, the bytes in no block). They are
 * what the executors allocate; the CUDA context, cuBLASLt's state and the loaded modules come on top
 * (QD_SCHEDULE_CONTEXT_RESERVE is what a budget sets aside for them), and the hoisted conditioning's few tens of
 * MiB are not counted.
 *
 *   none   every component's executor stays: the sum of all weights and activation arenas
 *   model  one component at a time: the largest component's weights and arena; all weights uploaded per image
 *   group  as model, and the transformer and T5 keep only their weights outside blocks (plus `keep` bytes of the
 *          transformer's first blocks) and two block-sized slots the other blocks stream through */
#ifndef QD_RUNTIME_PIPELINE_SCHEDULE_H
#define QD_RUNTIME_PIPELINE_SCHEDULE_H

#include <stdint.h>

#include "qd/generator.h"
#include "qd/plan.h"

#define QD_SCHEDULE_CONTEXT_RESERVE (512ull << 20)

typedef struct qd_schedule_estimate {
  qd_offload_mode_t mode;
  uint64_t peak;               /* device bytes the executors hold at the busiest phase */
  char peak_phase[32];         /* that phase's component */
  uint64_t uploaded_per_image; /* weights copied to the GPU per image outside the streamed blocks */
  uint64_t streamed_per_step;  /* GROUP: the transformer's blocks copied per step (an upper bound: its
                                  conditioning-only weights stream once per image) */
  uint64_t keep;               /* GROUP: the transformer's block bytes kept on the GPU */
} qd_schedule_estimate_t;

/* The estimate of `mode` (NONE, MODEL or GROUP with `keep` bytes of blocks kept) for images of width x height at
 * batch. Errors: PLAN_NO_COMPONENT, PLAN_NO_RESOLUTION, what instantiating the programs returns. */
qd_status_t qd_schedule_estimate(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                 qd_offload_mode_t mode, uint64_t keep, qd_schedule_estimate_t* out_estimate);

/* The fastest schedule whose peak plus QD_SCHEDULE_CONTEXT_RESERVE fits `budget` bytes: none, else model, else
 * group keeping as many of the transformer's blocks as fit. Errors: PIPELINE_VRAM_BUDGET, stating the smallest
 * budget any schedule fits, when none does. */
qd_status_t qd_schedule_for_budget(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                   uint64_t budget, qd_schedule_estimate_t* out_estimate);

#endif
