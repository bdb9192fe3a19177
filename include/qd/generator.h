/* qd: text-to-image generation from a compiled pipeline plan (what `qdrun PLAN --prompt ...` does).
 *
 *   qd_plan_t* plan;          qd_plan_open("flux.qplan", qd_allocator_system(), 0, &plan);
 *   qd_generator_t* gen;      qd_generator_options_t o; qd_generator_options_init(&o);
 *                             qd_generator_create(plan, &o, qd_allocator_system(), &gen);
 *   qd_generate_params_t p;   qd_generate_params_init(&p); p.prompt = "a cat"; p.seed = 7;
 *   qd_generate_result_t r;   qd_generator_generate(gen, &p, &r);
 *                             qd_generate_result_write_png(&r, 0, "cat.png");  (or read r.pixels)
 *                             qd_generate_result_deinit(&r); qd_generator_destroy(gen); qd_plan_close(plan);
 * (docs/example.c is this, complete.)
 *
 * The plan must hold FluxPipeline's pieces, as `qdc compile` writes them from a diffusers FLUX directory: the
 * components "text_encoder" (CLIP), "text_encoder_2" (T5), "transformer" and "vae", the tokenizers (TOKN sections
 * "tokenizer" and "tokenizer_2") and, in its metadata, the scheduler config (FLUX.1-dev's or -schnell's values are
 * assumed when it has none). Generation is FluxPipeline.__call__: the prompt through both tokenizers and encoders,
 * seeded noise as torch.Generator("cpu").manual_seed(seed) draws it, FlowMatchEulerDiscreteScheduler's Euler steps,
 * the VAE decode and diffusers' 8-bit postprocessing. The same plan, parameters and device give the same pixels on
 * every run; docs/pipeline.md says what matches diffusers bit for bit and what within which tolerance.
 *
 * Ownership:
 *   - The generator borrows the plan: the plan must stay open until qd_generator_destroy. It owns everything else it
 *     makes (weights, tokenizers, threads), all from the allocator given to qd_generator_create.
 *   - Parameters are read during the call only (the prompt is copied into the result).
 *   - A result is a caller-owned struct that qd_generator_generate fills; the pixels and strings in it were
 *     allocated with the generator's allocator and are released by qd_generate_result_deinit (which may be called
 *     after the generator is destroyed, but not after the allocator is gone). On failure nothing is left to release
 *     and the struct is zeroed.
 *   - Errors are statuses (qd/status.h): the caller owns and frees them.
 *
 * Threads: a generator runs one generation at a time (its tokenizers keep caches); use one generator per thread.
 * It uses `threads` CPU threads of its own inside each call.
 */
#ifndef QD_GENERATOR_H
#define QD_GENERATOR_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/plan.h"
#include "qd/progress.h"
#include "qd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qd_generator qd_generator_t;

typedef enum qd_generator_device {
  QD_GENERATOR_DEVICE_CPU = 0,  /* the reference executor: exact, slow; for small plans and checking */
  QD_GENERATOR_DEVICE_CUDA = 1, /* runtime/cuda/executor.h: bf16 activations, NF4 weights dequantized per layer */
} qd_generator_device_t;

/* Where weights live while a CUDA generation runs (docs/architecture.md, "Offload"). The CPU keeps every weight in
 * host memory and takes NONE only. MODEL, GROUP and SEQUENTIAL copy each component's weights into pinned host
 * memory at its first use (host memory as large as the plan's weights), from where uploads run at the bus's
 * speed. */
typedef enum qd_offload_mode {
  QD_OFFLOAD_NONE = 0,       /* everything resident */
  QD_OFFLOAD_MODEL = 1,      /* each component on the device only while it runs */
  QD_OFFLOAD_GROUP = 2,      /* as MODEL, and the transformer's and T5's blocks streamed while they run */
  QD_OFFLOAD_SEQUENTIAL = 3, /* as GROUP, streamed layer by layer (slots a layer large): the least memory */
} qd_offload_mode_t;

/* Whether the VAE decodes an image in overlapping tiles blended into one (docs/pipeline.md, "Tiled decoding"), for
 * sizes where the plan carries the VAE compiled at a smaller tile size (qdc compile --vae-tile, 512x512 by
 * default). The blend shows no seams but is not the whole decode's pixels: each tile normalizes with its own
 * statistics. */
typedef enum qd_vae_tiling {
  QD_VAE_TILING_AUTO = 0, /* CUDA: when the VRAM budget's schedule needs it, or when the whole decode runs out of GPU
                             memory with an offload schedule (then for the generator's life, with a warning) */
  QD_VAE_TILING_ON = 1,   /* every image the plan has a smaller tile program for; others decode whole */
  QD_VAE_TILING_OFF = 2,  /* never */
} qd_vae_tiling_t;

typedef struct qd_generator_options {
  qd_generator_device_t device;
  int32_t device_index;      /* CUDA device ordinal */
  qd_offload_mode_t offload;
  uint64_t keep_bytes;       /* GROUP, SEQUENTIAL: bytes of the transformer's first blocks (layers) that stay on
                                the GPU (0: none) */
  uint64_t vram_budget;      /* CUDA, with offload NONE: pick the fastest schedule whose estimated peak (with the
                                CUDA context's share) fits this many bytes at every size the plan has
                                (runtime/pipeline/schedule.h); with group, the transformer keeps as many blocks as
                                fit at each size (more at 512x512 than at 1024x1024); 0: no budget */
  qd_vae_tiling_t vae_tiling;
  int32_t threads;           /* CPU threads, 1 to 1024; 0: one per core */
} qd_generator_options_t;

/* CPU, device 0, no offload, VAE tiles when needed, one thread per core. */
void qd_generator_options_init(qd_generator_options_t* options);

/* "none", "model", "group", "sequential" ("?" for another value), and back (false for another name). */
const char* qd_offload_mode_name(qd_offload_mode_t mode);
bool qd_offload_mode_parse(const char* name, qd_offload_mode_t* out_mode);

/* The offload schedule in use (options.offload, or what options.vram_budget chose) and the transformer's block
 * bytes it keeps on the GPU. */
qd_offload_mode_t qd_generator_offload(const qd_generator_t* generator, uint64_t* out_keep_bytes);

/* Checks the plan has every pipeline piece and that they fit together (for its first resolution), loads the
 * tokenizers and each component's weights (dequantized to float32 for the CPU), and starts the threads.
 * options NULL: the defaults.
 * Errors: PLAN_NO_COMPONENT (naming the missing component and the ones the plan has), PIPELINE_NO_TOKENIZER,
 * PIPELINE_SCHEDULER, PIPELINE_COMPONENTS_DISAGREE, PIPELINE_DEVICE (unknown device or CUDA device index) and
 * the CUDA driver's errors (no driver, no GPU),
 * PIPELINE_OPTIONS, PIPELINE_VRAM_BUDGET (no schedule fits; the message states the least), TOK_BLOB_* (a damaged tokenizer), PLAN_* from instantiating the programs, OUT_OF_MEMORY. */
qd_status_t qd_generator_create(const qd_plan_t* plan, const qd_generator_options_t* options,
                                qd_allocator_t allocator, qd_generator_t** out_generator);
void qd_generator_destroy(qd_generator_t* generator); /* NULL-safe */

/* What the plan implies. The model name is the plan's ("FluxPipeline/dev"). A guidance-distilled transformer
 * (FLUX.1-dev) defaults to 28 steps and guidance 3.5; one without guidance (schnell) to 4 steps, and its default
 * guidance is NAN (the value is ignored). */
const char* qd_generator_model(const qd_generator_t* generator);
int32_t qd_generator_default_steps(const qd_generator_t* generator);
float qd_generator_default_guidance(const qd_generator_t* generator);
/* The image sizes and batches the plan was compiled for (its transformer's resolutions). */
int32_t qd_generator_resolution_count(const qd_generator_t* generator);
void qd_generator_resolution(const qd_generator_t* generator, int32_t index, int32_t* out_width, int32_t* out_height,
                             int32_t* out_batch);

typedef struct qd_generate_params {
  const char* prompt;  /* UTF-8, NUL-terminated; ill-formed bytes become U+FFFD and characters the vocabularies lack
                          become their unknown tokens, as the Hugging Face tokenizers do; too long is truncated */
  uint64_t seed;       /* torch.Generator("cpu").manual_seed(seed); torch keeps the low 32 bits for its engine */
  int32_t steps;       /* denoising steps, 1 to 1000; 0: the model's default */
  float guidance;      /* distilled guidance scale, 0 to 100; NAN: the default. Ignored without a guidance input */
  int32_t width;       /* pixels, multiples of 16 the plan was compiled for; 0 and 0: its first resolution */
  int32_t height;
  int32_t batch;       /* images from the one prompt (num_images_per_prompt), 1 to 64; 0: 1 */
  const qd_progress_sink_t* progress; /* one update per denoising step ("denoise", steps); NULL: the process
                                         default (qd/progress.h). A callback returning false cancels: CANCELLED */
} qd_generate_params_t;

/* No prompt, seed 0, the model's steps and guidance, the plan's first resolution, one image, default progress. */
void qd_generate_params_init(qd_generate_params_t* params);

typedef struct qd_generate_result {
  int32_t width, height, batch;
  int32_t steps;
  float guidance;          /* NAN when the model takes none */
  uint64_t seed;
  uint8_t* pixels;         /* batch images one after another, each height rows of width RGB triplets, top first */
  size_t image_bytes;      /* width * height * 3: the stride between images */
  char* prompt;            /* copies, for the PNG metadata */
  char* model;
  double seconds_tokenize, seconds_encode, seconds_denoise, seconds_decode;
  double seconds_load;     /* CUDA: preparing executors in this call (weights uploaded, kernels loaded); not in the
                              phases above. The first generation at a size has it; with model offload every one */
  int32_t vae_tiles;       /* tiles each image was decoded in (0: whole); vae_tile_width x vae_tile_height each */
  int32_t vae_tile_width, vae_tile_height;
  qd_allocator_t allocator; /* what the buffers came from (for qd_generate_result_deinit) */
} qd_generate_result_t;

/* Generates params->batch images into *out_result (overwritten; deinit an earlier result first).
 * Errors: PIPELINE_PROMPT, PIPELINE_STEPS, PIPELINE_GUIDANCE, PIPELINE_SIZE, PIPELINE_BATCH; PLAN_NO_RESOLUTION
 * when the plan was not compiled for that size and batch (the message lists what it has); TOK_PROMPT_TOO_LONG;
 * CANCELLED; OUT_OF_MEMORY; INPUT_* or other executor errors (a bug or a damaged plan). */
qd_status_t qd_generator_generate(qd_generator_t* generator, const qd_generate_params_t* params,
                                  qd_generate_result_t* out_result);
/* Releases what the result holds and zeroes it; NULL and zeroed results are no-ops. */
void qd_generate_result_deinit(qd_generate_result_t* result);

/* Image `index` of the result as an 8-bit RGB PNG, with text chunks prompt, seed, steps, guidance, width, height,
 * batch (index/count when more than one), model and qd_version (tEXt, or iTXt for a non-ASCII prompt). The file
 * appears complete or not at all. Errors: INVALID_ARGUMENT (index), PIPELINE_PNG, IO_*. */
qd_status_t qd_generate_result_write_png(const qd_generate_result_t* result, int32_t index, const char* path);

/* Any 8-bit RGB image (height rows of width * 3 bytes) as a PNG with `count` text chunks (ASCII keys of 1 to 79
 * characters; UTF-8 values). Errors: PIPELINE_PNG, IO_*. */
qd_status_t qd_image_write_png(const char* path, const uint8_t* rgb, int32_t width, int32_t height,
                               const char* const* keys, const char* const* values, int32_t count);

#ifdef __cplusplus
}
#endif
#endif /* QD_GENERATOR_H */
