/* Tiled VAE decoding's geometry and blending (runtime/pipeline/vae_tiles.c), without a VAE: tiles that are crops of
 * one image must blend back into exactly that image, the weights of two neighbours must sum to one, and tiles that
 * disagree must fade into each other instead of meeting at a seam. The decode itself is tested in
 * test_golden_pipeline (CPU) and tests/gpu/test_gpu_pipeline. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "runtime/pipeline/vae_tiles.h"

enum { CELL = QD_VAE_TILE_CELL };

/* Every cell covered, the first tile at 0 and the last at the far edge, starts increasing, neighbours overlapping
 * by at least a quarter tile (one cell for small tiles), and no more tiles than that overlap needs. */
START_TEST(tiles_cover_every_cell_and_overlap) {
  for (int64_t grid = 1; grid <= 160; grid++)
    for (int64_t tile = 1; tile <= grid; tile++) {
      qd_vae_tile_grid_t t;
      QD_ASSERT_OK(qd_vae_tile_grid_plan(grid, 3, tile, 3, &t));
      ck_assert_int_eq(t.cols, 1);
      ck_assert_int_eq(qd_vae_tile_row_start(&t, 0), 0);
      ck_assert_int_eq(qd_vae_tile_row_start(&t, t.rows - 1), grid - tile);
      int64_t need = tile / 4 > 0 ? tile / 4 : (tile > 1 ? 1 : 0);
      for (int32_t r = 1; r < t.rows; r++) {
        int64_t prev = qd_vae_tile_row_start(&t, r - 1), cur = qd_vae_tile_row_start(&t, r);
        ck_assert_msg(cur > prev && prev + tile - cur >= need, "grid %lld tile %lld: tile %d at %lld after %lld",
                      (long long)grid, (long long)tile, r, (long long)cur, (long long)prev);
      }
      if (t.rows > 1) /* one tile fewer would not cover the grid with that overlap */
        ck_assert_int_lt((int64_t)(t.rows - 1) * (tile - need) + need, grid);
    }
  qd_vae_tile_grid_t t;
  QD_ASSERT_OK(qd_vae_tile_grid_plan(64, 64, 32, 32, &t)); /* 1024x1024 in 512x512 tiles */
  ck_assert_int_eq(t.rows, 3);
  ck_assert_int_eq(qd_vae_tile_row_start(&t, 1), 16);
}
END_TEST

START_TEST(tiles_larger_than_the_image_are_refused) {
  qd_vae_tile_grid_t t;
  QD_ASSERT_DETAIL(qd_vae_tile_grid_plan(8, 8, 9, 4, &t), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_vae_tile_grid_plan(8, 8, 4, 0, &t), QD_E_INVALID_ARGUMENT);
}
END_TEST

START_TEST(tile_latents_are_the_cells_under_the_tile) {
  enum { GH = 5, GW = 7, C = 3 };
  float lat[GH * GW * C], tile[3 * 4 * C];
  for (int i = 0; i < GH * GW * C; i++) lat[i] = (float)i;
  qd_vae_tile_grid_t t;
  QD_ASSERT_OK(qd_vae_tile_grid_plan(GH, GW, 3, 4, &t));
  for (int32_t r = 0; r < t.rows; r++)
    for (int32_t c = 0; c < t.cols; c++) {
      qd_vae_tile_latents(&t, r, c, lat, C, tile);
      int64_t r0 = qd_vae_tile_row_start(&t, r), c0 = qd_vae_tile_col_start(&t, c);
      for (int64_t y = 0; y < 3; y++)
        for (int64_t x = 0; x < 4; x++)
          for (int64_t k = 0; k < C; k++)
            ck_assert_float_eq(tile[(y * 4 + x) * C + k], lat[((r0 + y) * GW + c0 + x) * C + k]);
    }
}
END_TEST

/* Decodes every tile as `decode` says, blends, returns the image [3, H, W] (caller frees). */
typedef void (*decode_fn)(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* ref, float* tile_image);

static float* blend(const qd_vae_tile_grid_t* t, decode_fn decode, const float* ref, float** out_weight) {
  int64_t H = t->grid_h * CELL, W = t->grid_w * CELL, th = t->tile_h * CELL, tw = t->tile_w * CELL;
  float* sum = calloc((size_t)(3 * H * W), sizeof(float));
  float* weight = calloc((size_t)(H * W), sizeof(float));
  float* tile = malloc((size_t)(3 * th * tw) * sizeof(float));
  float* image = malloc((size_t)(3 * H * W) * sizeof(float));
  for (int32_t r = 0; r < t->rows; r++)
    for (int32_t c = 0; c < t->cols; c++) {
      decode(t, r, c, ref, tile);
      qd_vae_tile_accumulate(t, r, c, tile, sum, weight);
    }
  qd_vae_tiles_finish(t, sum, weight, image);
  free(sum);
  free(tile);
  if (out_weight)
    *out_weight = weight;
  else
    free(weight);
  return image;
}

/* A perfect decoder: the tile is the reference image's pixels under it. */
static void crop(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* ref, float* out) {
  int64_t W = t->grid_w * CELL, H = t->grid_h * CELL, th = t->tile_h * CELL, tw = t->tile_w * CELL;
  int64_t y0 = qd_vae_tile_row_start(t, row) * CELL, x0 = qd_vae_tile_col_start(t, col) * CELL;
  for (int64_t ch = 0; ch < 3; ch++)
    for (int64_t y = 0; y < th; y++)
      for (int64_t x = 0; x < tw; x++) out[(ch * th + y) * tw + x] = ref[(ch * H + y0 + y) * W + x0 + x];
}

/* Each tile a flat colour of its own (row * 10 + col): as far apart as tiles can be. */
static void flat(const qd_vae_tile_grid_t* t, int32_t row, int32_t col, const float* ref, float* out) {
  (void)ref;
  int64_t n = 3 * t->tile_h * CELL * t->tile_w * CELL;
  for (int64_t i = 0; i < n; i++) out[i] = (float)(row * 10 + col);
}

START_TEST(crops_blend_back_into_the_image) {
  static const int64_t shapes[][4] = {{8, 8, 4, 4}, {8, 6, 4, 2}, {3, 9, 3, 4}, {10, 7, 6, 7}, {9, 9, 5, 3},
                                      {4, 4, 4, 4}, {5, 11, 2, 2}, {6, 6, 1, 2}};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    qd_vae_tile_grid_t t;
    QD_ASSERT_OK(qd_vae_tile_grid_plan(shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3], &t));
    int64_t n = 3 * t.grid_h * CELL * t.grid_w * CELL;
    float* ref = malloc((size_t)n * sizeof(float));
    srand(7);
    for (int64_t i = 0; i < n; i++) ref[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    float* image = blend(&t, crop, ref, NULL);
    for (int64_t i = 0; i < n; i++)
      ck_assert_msg(fabsf(image[i] - ref[i]) <= 1e-6f, "shape %zu element %lld: %g vs %g", k, (long long)i,
                    (double)image[i], (double)ref[i]);
    free(ref);
    free(image);
  }
}
END_TEST

/* 1024x1024 in 512x512 tiles (three a side): at most two tiles meet along each axis, so their weights sum to one
 * exactly where the fades run; and flat tiles of different colours change by at most their difference over the
 * fade's length per pixel, where a hard cut would jump by all of it. */
START_TEST(neighbours_fade_into_each_other) {
  qd_vae_tile_grid_t t;
  QD_ASSERT_OK(qd_vae_tile_grid_plan(64, 64, 32, 32, &t));
  float* weight = NULL;
  float* image = blend(&t, flat, NULL, &weight);
  int64_t W = 64 * CELL, H = 64 * CELL;
  for (int64_t i = 0; i < H * W; i++)
    ck_assert_msg(fabsf(weight[i] - 1.0f) < 1e-5f, "weight %g at %lld", (double)weight[i], (long long)i);
  /* The overlaps are 16 cells (256 px); the fade runs over 3/4 of them. */
  float fade = 0.75f * 16 * CELL, worst_x = 0, worst_y = 0;
  for (int64_t y = 0; y < H; y++)
    for (int64_t x = 0; x + 1 < W; x++) {
      float d = fabsf(image[y * W + x + 1] - image[y * W + x]);
      if (d > worst_x) worst_x = d;
    }
  for (int64_t y = 0; y + 1 < H; y++)
    for (int64_t x = 0; x < W; x++) {
      float d = fabsf(image[(y + 1) * W + x] - image[y * W + x]);
      if (d > worst_y) worst_y = d;
    }
  ck_assert_msg(worst_x <= 1.0f / fade * 1.01f, "largest step across columns %g (tiles differ by 1)", worst_x);
  ck_assert_msg(worst_y <= 10.0f / fade * 1.01f, "largest step across rows %g (tiles differ by 10)", worst_y);
  ck_assert_float_eq(image[0], 0.0f);                   /* corners are one tile's own */
  ck_assert_float_eq(image[H * W - 1], 22.0f);
  free(weight);
  free(image);
}
END_TEST

static Suite* vae_tiles_suite(void) {
  Suite* s = suite_create("vae_tiles");
  TCase* tc = tcase_create("tiling");
  tcase_add_test(tc, tiles_cover_every_cell_and_overlap);
  tcase_add_test(tc, tiles_larger_than_the_image_are_refused);
  tcase_add_test(tc, tile_latents_are_the_cells_under_the_tile);
  tcase_add_test(tc, crops_blend_back_into_the_image);
  tcase_add_test(tc, neighbours_fade_into_each_other);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(vae_tiles_suite)
