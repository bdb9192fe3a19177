/* The sampler: diffusers' FlowMatchEulerDiscreteScheduler as FluxPipeline drives it, reproduced to the bit.
 *
 * FluxPipeline asks for sigmas = np.linspace(1, 1/n, n) (float64, then float32), computes the dynamic shift
 *   mu = calculate_shift(image_seq_len, base_image_seq_len, max_image_seq_len, base_shift, max_shift)
 *      = image_seq_len * m + (base_shift - m * base_image_seq_len),  m = (max_shift - base_shift) / (max - base len)
 * in float64, and the scheduler shifts the float32 sigmas:
 *   use_dynamic_shifting:  sigma = e^mu / (e^mu + (1 / sigma - 1))      ("exponential"; "linear": mu / (mu + ...))
 *   otherwise:             sigma = shift * sigma / (1 + (shift - 1) * sigma)
 * then optionally stretches them so the last one is shift_terminal, appends a final 0, and sets
 * timesteps = sigmas * num_train_timesteps. The transformer gets timesteps[i] / 1000 (it multiplies by 1000
 * itself). Each step is Euler: x += (sigma[i + 1] - sigma[i]) * v, in float32.
 *
 * Every float32 operation here is the one NumPy (NEP 50: a Python float meets a float32 array as float32) or
 * PyTorch performs, in the same order and without fused multiply-adds (the project builds with -ffp-contract=off);
 * tests/test_pipeline.c compares the results with diffusers' bit for bit.
 *
 * FLUX.1-dev's scheduler_config.json: use_dynamic_shifting true, base_shift 0.5, max_shift 1.15,
 * base_image_seq_len 256, max_image_seq_len 4096 (shift 3.0, unused with dynamic shifting). FLUX.1-schnell's:
 * use_dynamic_shifting false, shift 1.0 (the sigmas stay linear).
 */
#ifndef QD_PIPELINE_SAMPLER_H
#define QD_PIPELINE_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"

struct cJSON;

enum { QD_SAMPLER_MAX_STEPS = 1000 };

typedef struct qd_scheduler_config {
  int64_t num_train_timesteps; /* 1000 */
  double shift;                /* used without dynamic shifting */
  bool use_dynamic_shifting;
  double base_shift, max_shift;                  /* mu's line: 0.5 at base_image_seq_len ... */
  int64_t base_image_seq_len, max_image_seq_len; /* ... 1.15 at max_image_seq_len */
  bool time_shift_linear;      /* time_shift_type "linear" rather than "exponential" */
  bool has_shift_terminal;
  double shift_terminal;
} qd_scheduler_config_t;

/* FLUX.1-dev's scheduler config (guidance-distilled models) or FLUX.1-schnell's. */
void qd_scheduler_config_flux(qd_scheduler_config_t* out_config, bool dev);

/* Reads a scheduler_config.json object (as the plan's META "scheduler" carries it). Missing keys take diffusers'
 * defaults. Errors (PIPELINE_SCHEDULER, naming `source` and the key): another _class_name, a key of the wrong type,
 * values out of range, and options qd does not implement (Karras, exponential, beta sigmas; invert_sigmas;
 * stochastic_sampling; use_flow_sigmas). */
qd_status_t qd_scheduler_config_from_json(const struct cJSON* object, const char* source,
                                          qd_scheduler_config_t* out_config);
/* The same from JSON text. */
qd_status_t qd_scheduler_config_parse(const char* json, size_t length, const char* source,
                                      qd_scheduler_config_t* out_config);

/* diffusers' calculate_shift, in float64. */
double qd_flux_calculate_shift(int64_t image_seq_len, int64_t base_seq_len, int64_t max_seq_len, double base_shift,
                               double max_shift);

/* The schedule for `steps` (1..QD_SAMPLER_MAX_STEPS) denoising steps over `image_seq_len` image tokens:
 * out_sigmas gets steps + 1 values (the last 0), out_timesteps `steps` values (sigmas * num_train_timesteps),
 * out_model_t (may be NULL) `steps` values: timesteps / 1000, what FluxPipeline passes to the transformer.
 * Errors: PIPELINE_STEPS. */
qd_status_t qd_schedule_compute(const qd_scheduler_config_t* config, int32_t steps, int64_t image_seq_len,
                                float* out_sigmas, float* out_timesteps, float* out_model_t);

/* One Euler step in place: x[i] = x[i] + (sigma_next - sigma) * v[i], rounded as PyTorch rounds it. */
void qd_euler_step(float* x, const float* v, size_t count, float sigma, float sigma_next);

#endif
