/* Latents: seeded noise exactly as PyTorch draws it on the CPU, FLUX's 2x2 packing, and the position ids.
 *
 * Noise. FluxPipeline with generator=torch.Generator("cpu").manual_seed(seed) draws
 * torch.randn([B, C, H/8, W/8], dtype=float32) in one call (one generator for the whole batch) and packs it. That is:
 *   - torch's CPUGeneratorImpl: a 32-bit Mersenne Twister (mt19937) seeded with the low 32 bits of the seed;
 *   - uniforms u = (next_u32 & 0xFFFFFF) / 2^24, one per element, all drawn first;
 *   - Box-Muller over blocks of 16: for j < 8, with u1 = 1 - u[j], u2 = u[j + 8]:
 *       r = sqrt(-2 log u1), theta = 2 pi u2, x[j] = r cos theta, x[j + 8] = r sin theta;
 *     a count that is not a multiple of 16 draws 16 fresh uniforms for the last 16 elements and transforms them
 *     again (overwriting part of the previous block).
 * On x86-64 PyTorch takes its AVX2 kernel for float32 tensors of 16 or more elements (also on AVX-512 machines, which
 * have no separate kernel for it): log, sin and cos are avx_mathfun.h's Cephes polynomials, compiled by GCC with the
 * multiply-adds it fuses into FMAs. qd_torch_randn evaluates those same polynomials with the same fusions (fmaf)
 * and matches torch bit for bit (docs/pipeline.md; tests/data/golden/pipeline_noise.safetensors). Builds of torch
 * without AVX2 (other architectures) use libm instead and differ in the last bits; fewer than 16 elements take a
 * float64 path qd does not implement (PIPELINE_NOISE_SIZE; FLUX latents always have 16 channels).
 *
 * Packing. FluxPipeline._pack_latents turns [B, C, h, w] into [B, (h/2)(w/2), 4C]: token (i, j) holds the 2x2
 * patch at rows 2i..2i+1, columns 2j..2j+1, channel-major: feature c*4 + dy*2 + dx. Unpacking is the inverse.
 * Image ids are [(h/2)(w/2), 3] rows (0, i, j); text ids are zeros [tokens, 3].
 */
#ifndef QD_PIPELINE_LATENTS_H
#define QD_PIPELINE_LATENTS_H

#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

enum { QD_MT19937_N = 624 };

/* torch.Generator("cpu") after manual_seed: the Mersenne Twister state. A plain struct; no resources. */
typedef struct qd_torch_generator {
  uint32_t state[QD_MT19937_N];
  int32_t left, next;
} qd_torch_generator_t;

void qd_torch_generator_seed(qd_torch_generator_t* generator, uint64_t seed);
uint32_t qd_torch_generator_u32(qd_torch_generator_t* generator);

/* torch.randn(count) from the generator's current state, into out[count]. Errors: PIPELINE_NOISE_SIZE (count < 16). */
qd_status_t qd_torch_randn(qd_torch_generator_t* generator, float* out, size_t count);

/* [B, C, h, w] -> [B, (h/2)(w/2), 4C] and back; h and w even. */
void qd_latents_pack(const float* x, int64_t batch, int64_t channels, int64_t height, int64_t width, float* out);
void qd_latents_unpack(const float* packed, int64_t batch, int64_t channels, int64_t height, int64_t width, float* out);

/* out[grid_h * grid_w * 3]: (0, row, col) per token, row-major. */
void qd_latent_image_ids(int64_t grid_h, int64_t grid_w, float* out);

/* FluxPipeline.prepare_latents: randn([batch, channels, 2 grid_h, 2 grid_w]) from manual_seed(seed), packed into
 * out[batch * grid_h * grid_w * 4 channels]; `scratch` holds as many floats (the unpacked draw). */
qd_status_t qd_latents_noise(uint64_t seed, int64_t batch, int64_t channels, int64_t grid_h, int64_t grid_w,
                             float* scratch, float* out);

#endif
