/* qd: compiled plans (.qplan).
 *
 * qd_plan_open maps a plan, validates the container (qd/plan_file.h) and then its contents: the metadata, every
 * component's program and weight index, every weight's bytes lying inside its section, and every program
 * instantiating to the graph it was compiled for (a digest check). Nothing in the plan is trusted before that.
 *
 * Ownership: the plan owns the mapping and everything it returns; all of it stays valid until qd_plan_close.
 * A plan is immutable after open and may be shared by threads.
 */
#ifndef QD_PLAN_H
#define QD_PLAN_H

#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_plan qd_plan_t;

/* flags: QD_PLAN_OPEN_VERIFY_ALL (qd/plan_file.h) also verifies the weights' checksums. */
qd_status_t qd_plan_open(const char* path, qd_allocator_t allocator, uint32_t flags, qd_plan_t** out_plan);
void qd_plan_close(qd_plan_t* plan); /* NULL-safe */

const char* qd_plan_path(const qd_plan_t* plan);
const char* qd_plan_model(const qd_plan_t* plan);       /* "flux-transformer/dev" */
const char* qd_plan_metadata_json(const qd_plan_t* plan); /* the META section, NUL-terminated */

int32_t qd_plan_component_count(const qd_plan_t* plan);
const char* qd_plan_component_name(const qd_plan_t* plan, int32_t component);
int32_t qd_plan_find_component(const qd_plan_t* plan, const char* name); /* -1 when absent */
int32_t qd_plan_resolution_count(const qd_plan_t* plan, int32_t component);
void qd_plan_resolution(const qd_plan_t* plan, int32_t component, int32_t index, int64_t* out_width,
                        int64_t* out_height, int64_t* out_batch);

#ifdef __cplusplus
}
#endif
#endif
