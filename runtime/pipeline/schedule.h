/* Offload schedules of a pipeline plan: what each one holds on the GPU at its busiest and what it copies, for one
 * image size, from the plan alone (no GPU). The generator picks the fastest schedule under a VRAM budget with it
 * (qd_generator_options_t.vram_budget), and `qdrun --check` prints the table.
 *
 * Each component contributes its sizes (qd_schedule_sizes_t): what the CUDA executor allocates for it
 * (runtime/cuda/device_memory.h), its weights in and out of numbered blocks (runtime/cuda/weight_stream.h) and, for
 * the transformer, the block weights only its hoisted conditioning reads (runtime/cuda/hoist.h). qdc records them
 * in the plan's SCHD section for every size it compiled (docs/plan-format.md); a plan without one (from an older
 * qdc) has them computed at load. The sizes are what the executors allocate; the CUDA context, cuBLASLt's state
 * and the loaded modules come on top (QD_SCHEDULE_CONTEXT_RESERVE is what a budget sets aside for them), and the
 * hoisted conditioning's few tens of MiB are not counted.
 *
 *   none   every component's executor stays: the sum of all weights and activation arenas
 *   model  one component at a time, all its weights uploaded per image; the transformer streams the block weights
 *          only its conditioning reads (once per image, two slots) instead of keeping them
 *   group  as model, and the transformer and T5 keep only their weights outside blocks (plus `keep` bytes of the
 *          transformer's first blocks) and two block-sized slots the other blocks stream through
 *   sequential  as group, streaming layer by layer: two slots a layer large */
#ifndef QD_RUNTIME_PIPELINE_SCHEDULE_H
#define QD_RUNTIME_PIPELINE_SCHEDULE_H

#include <stdint.h>

#include "ir/graph.h"
#include "qd/generator.h"
#include "qd/plan.h"
#include "runtime/plan_content.h"

#define QD_SCHEDULE_CONTEXT_RESERVE (512ull << 20)

/* The pipeline's components, in phase order, as plans name them. */
enum { QD_SCHEDULE_CLIP = 0, QD_SCHEDULE_T5, QD_SCHEDULE_TRANSFORMER, QD_SCHEDULE_VAE, QD_SCHEDULE_COMPONENTS };
extern const char* const qd_schedule_component_names[QD_SCHEDULE_COMPONENTS];

typedef struct qd_schedule_sizes {
  uint64_t resident;  /* weights as uploaded, their bf16 copies, code tables */
  uint64_t working;   /* activation arena, NF4 scratch, cuBLASLt workspace, inputs */
  uint64_t largest_block, largest_layer, unblocked, blocked; /* weight_stream.h's bounds */
  uint64_t conditioning, largest_conditioning_block; /* the transformer's conditioning-only block weights */
} qd_schedule_sizes_t;

typedef struct qd_schedule_estimate {
  qd_offload_mode_t mode;
  uint64_t peak;               /* device bytes the executors hold at the busiest phase */
  char peak_phase[32];         /* that phase's component ("all" for none) */
  uint64_t uploaded_per_image; /* weights copied to the GPU per image outside the per-step streaming */
  uint64_t streamed_per_step;  /* GROUP: the transformer's block weights copied per step */
  uint64_t keep;               /* GROUP: the transformer's block bytes kept on the GPU */
  bool vae_tiled;              /* the VAE decodes in tiles (runtime/pipeline/vae_tiles.h): its tile program's sizes */
} qd_schedule_estimate_t;

/* The resolution a pipeline runs component `which` (QD_SCHEDULE_*) at, plan component `index`, for images of
 * width x height at batch: the image's for the transformer and the VAE; for the text encoders batch 1 when the plan
 * has it (their rows are repeated), else the batch's. The generator and the schedules pick it with this. Errors:
 * PLAN_NO_RESOLUTION listing what the plan has. */
qd_status_t qd_schedule_component_resolution(const qd_plan_t* plan, int which, int32_t index, int64_t width,
                                             int64_t height, int64_t batch, int32_t* out_resolution);

/* The VAE program a pipeline decodes width x height images with in tiles (runtime/pipeline/vae_tiles.h): of the
 * VAE's (plan component `vae_index`) resolutions at batch 1 no larger than the image on either side, and smaller
 * in all, the one of least area (qdc compile --vae-tile adds one). false when there is none. */
bool qd_schedule_vae_tile(const qd_plan_t* plan, int32_t vae_index, int64_t width, int64_t height,
                          int32_t* out_resolution);
/* The VAE's sizes at that tile program; *out_found false (and nothing else set) when the plan has none. */
qd_status_t qd_schedule_vae_tile_sizes(const qd_plan_t* plan, int64_t width, int64_t height,
                                       qd_schedule_sizes_t* out_sizes, bool* out_found);

/* One component's sizes: its weight table (offsets laid out), its program at one resolution with that
 * resolution's arena bytes; `transformer` adds the conditioning-only weights. */
qd_status_t qd_schedule_component_sizes(const qd_plan_weight_t* weights, int32_t weight_count, uint64_t weight_bytes,
                                        const qd_graph_t* graph, uint64_t arena_bytes, bool transformer,
                                        qd_schedule_sizes_t* out_sizes);
/* The estimate of `mode` (NONE, MODEL, GROUP or SEQUENTIAL with `keep` bytes of blocks kept, capped at what there
 * is). */
void qd_schedule_combine(const qd_schedule_sizes_t sizes[QD_SCHEDULE_COMPONENTS], qd_offload_mode_t mode,
                         uint64_t keep, qd_schedule_estimate_t* out_estimate);

/* The four components' sizes for images of width x height at batch: the plan's SCHD record when it has one for
 * that size, else computed. *out_recorded says which. Errors: PLAN_NO_COMPONENT, PLAN_NO_RESOLUTION, PLAN_* from
 * instantiating the programs; PLAN_CONTENT_JSON / PLAN_CONTENT_FIELD for a SCHD section that is not what qdc
 * writes. */
qd_status_t qd_schedule_plan_sizes(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                   qd_schedule_sizes_t out_sizes[QD_SCHEDULE_COMPONENTS], bool* out_recorded);
/* The same computed from the programs, ignoring any record. */
qd_status_t qd_schedule_plan_sizes_computed(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                            qd_schedule_sizes_t out_sizes[QD_SCHEDULE_COMPONENTS]);

/* qd_schedule_plan_sizes, then qd_schedule_combine. */
qd_status_t qd_schedule_estimate(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                 qd_offload_mode_t mode, uint64_t keep, qd_schedule_estimate_t* out_estimate);

/* The fastest schedule whose peak plus QD_SCHEDULE_CONTEXT_RESERVE fits `budget` bytes: none, else model, else
 * group keeping as many of the transformer's blocks as fit, else sequential (likewise); each first with the VAE
 * decoding whole, then in tiles when the plan has a tile program for the size (a tiled decode costs less time than
 * the next schedule down). Errors: PIPELINE_VRAM_BUDGET, stating the smallest budget any schedule fits, when none
 * does. */
qd_status_t qd_schedule_for_budget(const qd_plan_t* plan, int64_t width, int64_t height, int64_t batch,
                                   uint64_t budget, qd_schedule_estimate_t* out_estimate);

/* The SCHD section's JSON for the sizes of `count` image sizes (qdc writes it; NULL when out of memory). sizes is
 * count rows of QD_SCHEDULE_COMPONENTS. */
struct cJSON* qd_schedule_record_json(const int64_t* widths, const int64_t* heights, const int64_t* batches,
                                      const qd_schedule_sizes_t* sizes, int32_t count);

#endif
