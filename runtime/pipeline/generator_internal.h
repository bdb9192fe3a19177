/* What a generation passes between its phases, for tests and debugging (the golden test compares each with
 * diffusers'). Not part of the public API: the shapes follow the plan's programs and may change with them. */
#ifndef QD_PIPELINE_GENERATOR_INTERNAL_H
#define QD_PIPELINE_GENERATOR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "qd/generator.h"

/* Every pointer is valid during the call only. Arrays are row-major; counts are elements. */
typedef struct qd_generator_trace {
  void* user;
  /* The ids each tokenizer gave (padded to its encoder's length), for one prompt. */
  void (*tokens)(void* user, const int32_t* clip_ids, size_t clip_count, const int32_t* t5_ids, size_t t5_count);
  /* T5's last_hidden_state [1, N, J] and CLIP's pooled output [1, D], for one prompt. */
  void (*embeddings)(void* user, const float* prompt_embeds, size_t prompt_count, const float* pooled,
                     size_t pooled_count);
  /* The packed initial latents [B, tokens, 4C]. */
  void (*noise)(void* user, const float* latents, size_t count);
  /* After Euler step `step` (0-based): the latents, and the timestep the transformer was given. */
  void (*step)(void* user, int32_t step, const float* latents, size_t count, float model_timestep, float sigma);
  /* The VAE's output [B, 3, H, W] before postprocessing. */
  void (*image)(void* user, const float* image, size_t count);
} qd_generator_trace_t;

/* trace NULL: none. The generator copies the struct. */
void qd_generator_set_trace(qd_generator_t* generator, const qd_generator_trace_t* trace);

#endif
