/* Tiled VAE decoding: where the tiles go and how they are blended (vae_tiles.h). */
#include "runtime/pipeline/vae_tiles.h"

#include <string.h>

/* Tiles along an axis of `grid` cells: overlapping by at least a quarter tile (one cell for tiles under four). */
static int32_t qd_vt_count_(int64_t grid, int64_t tile) {
  if (tile >= grid) return 1;
  int64_t overlap = tile / 4 > 0 ? tile / 4 : (tile > 1 ? 1 : 0);
  return (int32_t)((grid - overlap + (tile - overlap) - 1) / (tile - overlap));
}

/* Tile i of n along an axis starts here: evenly spread, the first at 0 and the last at grid - tile. */
static int64_t qd_vt_start_(int64_t grid, int64_t tile, int32_t n, int32_t i) {
  if (n <= 1) return 0;
  return ((int64_t)i * (grid - tile) + (n - 1) / 2) / (n - 1);
}

qd_status_t qd_vae_tile_grid_plan(int64_t grid_h, int64_t grid_w, int64_t tile_h, int64_t tile_w, qd_vae_tile_grid_t* t) {
  memset(t, 0, sizeof *t);
  if (grid_h < 1 || grid_w < 1 || tile_h < 1 || tile_w < 1 || tile_h > grid_h || tile_w > grid_w)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "VAE tiles of %lldx%lld cells do not fit an image of %lldx%lld",
                  (long long)tile_w, (long long)tile_h, (long long)grid_w, (long long)grid_h);
  *t = (qd_vae_tile_grid_t){grid_h, grid_w, tile_h, tile_w, qd_vt_count_(grid_h, tile_h), qd_vt_count_(grid_w, tile_w)};
  return QD_OK;
}

int64_t qd_vae_tile_row_start(const qd_vae_tile_grid_t* t, int32_t row) {
  return qd_vt_start_(t->grid_h, t->tile_h, t->rows, row);
}

int64_t qd_vae_tile_col_start(const qd_vae_tile_grid_t* t, int32_t col) {
  return qd_vt_start_(t->grid_w, t->tile_w, t->cols, col);
}

void qd_vae_tile_latents(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* latents, int64_t channels,
                         float* out) {
  int64_t r0 = qd_vae_tile_row_start(t, row), c0 = qd_vae_tile_col_start(t, col);
  for (int64_t r = 0; r < t->tile_h; r++)
    memcpy(out + r * t->tile_w * channels, latents + ((r0 + r) * t->grid_w + c0) * channels,
           (size_t)(t->tile_w * channels) * sizeof(float));
}

/* One fade over the overlap [a, b) of two neighbours: the later tile's weight at pixel p (the earlier one's is one
 * minus it). Zero within L/8 of a, one within L/8 of b, linear between. */
static float qd_vt_fade_in_(int64_t a, int64_t b, int64_t p) {
  int64_t len = b - a, margin = len / 8;
  double x = ((double)(p - a - margin) + 0.5) / (double)(len - 2 * margin);
  return x <= 0 ? 0.0f : x >= 1 ? 1.0f : (float)x;
}

/* Tile i's weight at pixel p along an axis of n tiles. */
static float qd_vt_weight_(int64_t grid, int64_t tile, int32_t n, int32_t i, int64_t p) {
  const int64_t cell = QD_VAE_TILE_CELL;
  float w = 1.0f;
  int64_t start = qd_vt_start_(grid, tile, n, i);
  if (i > 0) { /* the overlap with the previous tile: [start, its end) */
    int64_t end_prev = (qd_vt_start_(grid, tile, n, i - 1) + tile) * cell;
    if (end_prev > start * cell && p < end_prev) w = qd_vt_fade_in_(start * cell, end_prev, p);
  }
  if (i < n - 1) { /* the overlap with the next tile: [its start, end) */
    int64_t next = qd_vt_start_(grid, tile, n, i + 1) * cell, end = (start + tile) * cell;
    if (end > next && p >= next) {
      float out = 1.0f - qd_vt_fade_in_(next, end, p);
      if (out < w) w = out;
    }
  }
  return w;
}

void qd_vae_tile_accumulate(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* tile_image, float* sum,
                            float* weight) {
  const int64_t cell = QD_VAE_TILE_CELL;
  int64_t th = t->tile_h * cell, tw = t->tile_w * cell, H = t->grid_h * cell, W = t->grid_w * cell;
  int64_t y0 = qd_vae_tile_row_start(t, row) * cell, x0 = qd_vae_tile_col_start(t, col) * cell;
  /* Column weights once per block of columns (not once per pixel), then every row of the block. */
  enum { BLOCK = 512 };
  float wx[BLOCK];
  for (int64_t xb = 0; xb < tw; xb += BLOCK) {
    int64_t xn = tw - xb < BLOCK ? tw - xb : BLOCK;
    for (int64_t x = 0; x < xn; x++) wx[x] = qd_vt_weight_(t->grid_w, t->tile_w, t->cols, col, x0 + xb + x);
    for (int64_t y = 0; y < th; y++) {
      float wy = qd_vt_weight_(t->grid_h, t->tile_h, t->rows, row, y0 + y);
      if (wy == 0.0f) continue;
      for (int64_t x = 0; x < xn; x++) {
        float w = wy * wx[x];
        if (w == 0.0f) continue;
        int64_t at = (y0 + y) * W + x0 + xb + x;
        weight[at] += w;
        for (int64_t ch = 0; ch < 3; ch++) sum[ch * H * W + at] += w * tile_image[(ch * th + y) * tw + xb + x];
      }
    }
  }
}

void qd_vae_tiles_finish(const qd_vae_tile_grid_t* t, const float* sum, const float* weight, float* image) {
  int64_t plane = t->grid_h * QD_VAE_TILE_CELL * t->grid_w * QD_VAE_TILE_CELL;
  for (int64_t ch = 0; ch < 3; ch++)
    for (int64_t i = 0; i < plane; i++)
      image[ch * plane + i] = weight[i] > 0.0f ? sum[ch * plane + i] / weight[i] : 0.0f;
}
