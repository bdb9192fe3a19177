/* Streamed weights: which of a program's weights stay on the device and which are copied in, block by block,
 * from pinned host memory while the program runs (issue #7's streamed schedule; docs/architecture.md, "Offload").
 *
 * A weight belongs to a block when its name has a numbered component ("transformer_blocks.7.attn.to_q.weight" is
 * in block "transformer_blocks.7"): FLUX's double and single blocks, T5's and CLIP's layers. Weights of no block
 * (embedders, final norms and projections, T5's shared table) and weights the caller keeps resident stay on the
 * device. The blocks a program reads are its groups, in the order the launch list first reads them; groups whose
 * launches overlap are merged, so every launch reads at most one group and group g's last launch comes before
 * group g+1's first. A ring of `slots` device buffers, each as large as the largest group, holds the groups in
 * flight: group g lives in slot g % slots, and its copy may start once group g - slots is done with.
 *
 * This file decides; runtime/cuda/executor.c enqueues the copies and the waits. Nothing here touches a GPU, so
 * tests/test_weight_stream.c checks the planning on any machine. */
#ifndef QD_RUNTIME_CUDA_WEIGHT_STREAM_H
#define QD_RUNTIME_CUDA_WEIGHT_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"
#include "runtime/plan_content.h"

/* The block of a weight name: the prefix up to and including its first all-digit component ("a.b.12"), copied
 * into out; false, with out empty, for a name in no block. */
bool qd_weight_block_key(const char* name, char* out, size_t out_size);

/* The bytes of weight w in its section: data, absmax and nested codes are stored one after the other. */
qd_plan_range_t qd_weight_span(const qd_plan_weight_t* w);

/* One contiguous piece of the section copied into a slot: section bytes [src, src + bytes) go to slot offset dst. */
typedef struct qd_weight_run {
  uint64_t src, bytes, dst;
} qd_weight_run_t;

typedef struct qd_weight_group {
  int32_t first_launch, last_launch; /* the first and last launch that read the group */
  int32_t run_first, run_count;      /* its runs in qd_weight_stream_t.runs */
  uint64_t bytes;                    /* its image in a slot */
} qd_weight_group_t;

typedef struct qd_weight_stream {
  qd_allocator_t allocator;
  int32_t weight_count, group_count, run_count, run_capacity;
  qd_weight_group_t* groups;
  qd_weight_run_t* runs;
  /* Per weight: its group (-1: not streamed by this program) and where its bytes are: device address of section
   * offset o = slot base of its group + o + shift. */
  int32_t* group_of;
  int64_t* shift;
  uint64_t slot_bytes;     /* the largest group */
  uint64_t streamed_bytes; /* copied per run of the program */
} qd_weight_stream_t;

/* Plans the streaming of one program's weights. weights/count: the component's weight table. first_use/last_use:
 * per weight, the first and last launch that reads it (-1: never read). resident: per weight, true to keep it on
 * the device (NULL: only weights of no block stay). layers: group by layer ("transformer_blocks.7.attn.to_q")
 * instead of by block, consecutive layers sharing a copy up to the largest layer's size (the sequential schedule:
 * slots a layer large). A program that reads no streamable weight gets a plan with no groups. */
qd_status_t qd_weight_stream_plan(const qd_plan_weight_t* weights, int32_t count, const int32_t* first_use,
                                  const int32_t* last_use, const bool* resident, bool layers,
                                  qd_allocator_t allocator, qd_weight_stream_t** out_stream);
void qd_weight_stream_destroy(qd_weight_stream_t* stream);

/* Marks resident the weights of the program's first groups, in launch order, while their bytes fit `keep_bytes`
 * (the groups whose copies nothing could hide, at the program's start, go first); returns the bytes kept.
 * `resident` has one entry per weight and keeps the entries already set. */
uint64_t qd_weight_stream_keep_first(const qd_weight_stream_t* stream, uint64_t keep_bytes, bool* resident);

/* Upper bound of one group's bytes in any program of a component: the largest block's total (qdrun --check and
 * --vram-budget size the streamed schedule with it before any launch list exists), and with layers the largest
 * layer's; also the bytes in no block and in blocks. only: NULL, or per weight whether to count it;
 * out_largest_layer may be NULL. */
void qd_weight_stream_bounds(const qd_plan_weight_t* weights, int32_t count, const bool* only,
                             uint64_t* out_largest_block, uint64_t* out_largest_layer, uint64_t* out_unblocked_bytes,
                             uint64_t* out_blocked_bytes);

#endif
