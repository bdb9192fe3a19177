/* Decoding the VAE in tiles: what a small GPU memory budget needs at large sizes (the VAE's activations at
 * 1024x1024 take 1.25 GiB, more than the streamed transformer holds).
 *
 * The plan carries the VAE compiled at a tile size besides the image sizes (qdc compile --vae-tile, 512x512 by
 * default). The image's packed latents [grid_h * grid_w, 4C] (one cell a 16x16 pixel patch) are cut into tiles of
 * the tile program's grid that overlap by at least a quarter of a tile, spread evenly so the first and the last
 * touch the image's edges; each tile is decoded on its own and the results are blended:
 *
 *   image(p) = sum_t w_t(p) tile_t(p) / sum_t w_t(p),   w_t(y, x) = wy_t(y) * wx_t(x)
 *
 * Along an axis a tile's weight is 1 except where it overlaps a neighbour. There, over the overlap [a, b) of
 * length L, the pixels within L/8 of the tile's cut edge get 0 (a tile's edge sees zero padding its neighbour's
 * content would have filled, and its own GroupNorm statistics) and the middle 3L/4 fade linearly, so the two
 * tiles' weights sum to 1 everywhere: a cross-fade over at least 96 pixels at the default tile, where a hard cut
 * would show as a seam. The result is not the untiled decode: GroupNorm normalizes each tile with its own
 * statistics and the mid-block attention sees one tile; docs/pipeline.md gives the measured difference. Edges of
 * the image are never cut, so a tile as large as the image on one axis is that axis' only tile. */
#ifndef QD_PIPELINE_VAE_TILES_H
#define QD_PIPELINE_VAE_TILES_H

#include <stdint.h>

#include "qd/status.h"

enum { QD_VAE_TILE_CELL = 16 }; /* pixels per packed latent cell along each axis */

typedef struct qd_vae_tile_grid {
  int64_t grid_h, grid_w; /* the image, in cells */
  int64_t tile_h, tile_w; /* a tile, in cells */
  int32_t rows, cols;     /* tiles along each axis */
} qd_vae_tile_grid_t;

/* The tiling of a grid_h x grid_w image by tiles of tile_h x tile_w cells (each no larger than the image).
 * Errors: INVALID_ARGUMENT for a tile larger than the image or empty sizes. */
qd_status_t qd_vae_tile_grid_plan(int64_t grid_h, int64_t grid_w, int64_t tile_h, int64_t tile_w,
                               qd_vae_tile_grid_t* out_grid);

/* The first cell of tile (row, col) along each axis. */
int64_t qd_vae_tile_row_start(const qd_vae_tile_grid_t* t, int32_t row);
int64_t qd_vae_tile_col_start(const qd_vae_tile_grid_t* t, int32_t col);

/* Tile (row, col)'s packed latents [tile_h * tile_w, channels] from the image's [grid_h * grid_w, channels]. */
void qd_vae_tile_latents(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* latents, int64_t channels,
                         float* out_tile);

/* Adds tile (row, col)'s decoded image [3, tile_h*16, tile_w*16] into `sum` [3, grid_h*16, grid_w*16] with its
 * weights, and the weights into `weight` [grid_h*16, grid_w*16]; both start zeroed. */
void qd_vae_tile_accumulate(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* tile_image, float* sum,
                            float* weight);

/* image [3, H, W] = sum / weight, after every tile was accumulated. */
void qd_vae_tiles_finish(const qd_vae_tile_grid_t* t, const float* sum, const float* weight, float* image);

#endif
