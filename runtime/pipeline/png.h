/* Images out: diffusers' postprocessing to 8-bit RGB, and PNG files with their generation parameters.
 *
 * Postprocessing is VaeImageProcessor.postprocess(output_type="pil") on the VAE's float32 output x in [-1, 1]:
 * (x * 0.5 + 0.5).clamp(0, 1) in PyTorch, then numpy_to_pil's (v * 255).round().astype(uint8) (round half to even),
 * from [B, 3, H, W] planes to [B, H, W, 3] pixels. A NaN (a broken model) becomes 0.
 *
 * PNGs are 8-bit RGB, written with libpng through a temporary file renamed into place (a failed write leaves no
 * partial image). Text chunks: tEXt when the value is ASCII, iTXt (UTF-8) otherwise, since tEXt is Latin-1 and
 * prompts are UTF-8.
 */
#ifndef QD_PIPELINE_PNG_H
#define QD_PIPELINE_PNG_H

#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"

/* chw: [3, height, width] floats of one image; rgb: height * width * 3 bytes. */
void qd_image_to_rgb8(const float* chw, int64_t height, int64_t width, uint8_t* rgb);

/* Writes rgb (height rows of width * 3 bytes, top row first) with `count` key/value text chunks (keys: 1 to 79
 * Latin-1 characters, as PNG requires). Errors: PIPELINE_PNG (bad sizes or keys, libpng errors), IO_* for the file. */
qd_status_t qd_png_write_rgb(const char* path, const uint8_t* rgb, int32_t width, int32_t height,
                             const char* const* keys, const char* const* values, int32_t count);

#endif
