/* The pipeline's parts (runtime/pipeline/): the FlowMatchEuler schedule and the seeded noise bit for bit against
 * diffusers and torch (tests/data/golden/pipeline_schedule.safetensors, pipeline_noise.safetensors), FLUX's latent
 * packing, diffusers' 8-bit postprocessing (exact on the golden image), PNG output with its text chunks, and each
 * rejection rule of the scheduler config, the noise and the PNG writer. */
#include <cjson/cJSON.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd/generator.h"
#include "qd/safetensors.h"
#include "qd_test.h"
#include "runtime/pipeline/latents.h"
#include "runtime/pipeline/png.h"
#include "runtime/pipeline/sampler.h"

static qd_safetensors_t* open_golden(const char* name) {
  char path[512];
  snprintf(path, sizeof path, "%s/golden/%s", qd_test_data_dir(), name);
  qd_safetensors_t* st = NULL;
  QD_ASSERT_OK(qd_safetensors_open(path, qd_allocator_system(), &st));
  return st;
}

static const float* f32_tensor(const qd_safetensors_t* st, const char* name, uint64_t numel) {
  const qd_tensor_info_t* t = qd_safetensors_find(st, name);
  ck_assert_msg(t != NULL, "no tensor '%s'", name);
  ck_assert_int_eq(t->dtype, QD_DTYPE_F32);
  ck_assert_uint_eq(t->numel, numel);
  return t->data; /* the fixtures are written 4-byte aligned (golden_common.write_safetensors) */
}

/* Bit-for-bit equality of two float arrays, naming the first difference. */
static void assert_bits_equal(const char* what, const float* got, const float* want, size_t n) {
  for (size_t i = 0; i < n; i++)
    ck_assert_msg(memcmp(&got[i], &want[i], sizeof(float)) == 0, "%s[%zu]: %.9g, diffusers %.9g", what, i,
                  (double)got[i], (double)want[i]);
}

/* --- schedule ----------------------------------------------------------------------------------------------------- */

START_TEST(schedule_matches_diffusers_bit_for_bit) {
  qd_safetensors_t* st = open_golden("pipeline_schedule.safetensors");
  cJSON* cases = cJSON_Parse(qd_safetensors_metadata_get(st, "cases"));
  ck_assert_ptr_nonnull(cases);
  int checked = 0;
  for (const cJSON* c = cases->child; c; c = c->next, checked++) {
    const char* name = cJSON_GetObjectItem(c, "name")->valuestring;
    int steps = cJSON_GetObjectItem(c, "steps")->valueint;
    int64_t seq = (int64_t)cJSON_GetObjectItem(c, "image_seq_len")->valuedouble;
    char* cfg = cJSON_PrintUnformatted(cJSON_GetObjectItem(c, "config"));
    qd_scheduler_config_t sc;
    QD_ASSERT_OK(qd_scheduler_config_parse(cfg, strlen(cfg), name, &sc));
    free(cfg);
    float sigmas[QD_SAMPLER_MAX_STEPS + 1], timesteps[QD_SAMPLER_MAX_STEPS], model_t[QD_SAMPLER_MAX_STEPS];
    QD_ASSERT_OK(qd_schedule_compute(&sc, steps, seq, sigmas, timesteps, model_t));
    char key[128], what[160];
    snprintf(key, sizeof key, "%s.sigmas", name);
    snprintf(what, sizeof what, "%s sigmas", name);
    assert_bits_equal(what, sigmas, f32_tensor(st, key, (uint64_t)steps + 1), (size_t)steps + 1);
    snprintf(key, sizeof key, "%s.timesteps", name);
    snprintf(what, sizeof what, "%s timesteps", name);
    assert_bits_equal(what, timesteps, f32_tensor(st, key, (uint64_t)steps), (size_t)steps);
    snprintf(key, sizeof key, "%s.model_t", name);
    snprintf(what, sizeof what, "%s transformer timesteps", name);
    assert_bits_equal(what, model_t, f32_tensor(st, key, (uint64_t)steps), (size_t)steps);
  }
  ck_assert_int_ge(checked, 10);
  cJSON_Delete(cases);
  qd_safetensors_close(st);
}
END_TEST

START_TEST(flux_scheduler_defaults) {
  qd_scheduler_config_t dev, schnell;
  qd_scheduler_config_flux(&dev, true);
  qd_scheduler_config_flux(&schnell, false);
  ck_assert(dev.use_dynamic_shifting);
  ck_assert(!schnell.use_dynamic_shifting);
  ck_assert(schnell.shift == 1.0);
  /* mu runs from base_shift at 256 image tokens to max_shift at 4096 (1024x1024). */
  ck_assert(fabs(qd_flux_calculate_shift(256, 256, 4096, 0.5, 1.15) - 0.5) < 1e-15);
  ck_assert(fabs(qd_flux_calculate_shift(4096, 256, 4096, 0.5, 1.15) - 1.15) < 1e-15);
  /* schnell's schedule is linspace(1, 1/n, n) itself, then 0. */
  float sig[5], ts[4];
  QD_ASSERT_OK(qd_schedule_compute(&schnell, 4, 4096, sig, ts, NULL));
  const float want[5] = {1.0f, 0.75f, 0.5f, 0.25f, 0.0f};
  assert_bits_equal("schnell sigmas", sig, want, 5);
  ck_assert(ts[1] == 750.0f);
}
END_TEST

START_TEST(scheduler_config_rules) {
  static const struct {
    const char* json;
    qd_error_detail_t detail;
  } bad[] = {
      {"[1]", QD_E_PIPELINE_SCHEDULER},
      {"{\"_class_name\": \"EulerDiscreteScheduler\"}", QD_E_PIPELINE_SCHEDULER},
      {"{\"use_karras_sigmas\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"use_exponential_sigmas\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"use_beta_sigmas\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"invert_sigmas\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"stochastic_sampling\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"use_flow_sigmas\": true}", QD_E_PIPELINE_SCHEDULER},
      {"{\"base_shift\": null}", QD_E_PIPELINE_SCHEDULER},
      {"{\"shift\": -1}", QD_E_PIPELINE_SCHEDULER},
      {"{\"num_train_timesteps\": 2.5}", QD_E_PIPELINE_SCHEDULER},
      {"{\"time_shift_type\": \"cubic\"}", QD_E_PIPELINE_SCHEDULER},
      {"{\"shift_terminal\": 1.5}", QD_E_PIPELINE_SCHEDULER},
      {"{\"base_image_seq_len\": 4096}", QD_E_PIPELINE_SCHEDULER},
      {"{\"use_dynamic_shifting\": \"yes\"}", QD_E_PIPELINE_SCHEDULER},
      {"not json", QD_E_PIPELINE_SCHEDULER},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    qd_scheduler_config_t c;
    QD_ASSERT_DETAIL(qd_scheduler_config_parse(bad[i].json, strlen(bad[i].json), "case", &c), bad[i].detail);
  }
  /* Keys diffusers adds or ignores are fine; shift_terminal 0 and null mean off. */
  const char* ok = "{\"_class_name\": \"FlowMatchEulerDiscreteScheduler\", \"_diffusers_version\": \"0.30.0\", "
                   "\"shift_terminal\": null, \"use_karras_sigmas\": false, \"something_new\": 1}";
  qd_scheduler_config_t c;
  QD_ASSERT_OK(qd_scheduler_config_parse(ok, strlen(ok), "ok", &c));
  ck_assert(!c.has_shift_terminal);
  float sig[2], ts[1];
  QD_ASSERT_DETAIL(qd_schedule_compute(&c, 0, 16, sig, ts, NULL), QD_E_PIPELINE_STEPS);
  QD_ASSERT_DETAIL(qd_schedule_compute(&c, QD_SAMPLER_MAX_STEPS + 1, 16, sig, ts, NULL), QD_E_PIPELINE_STEPS);
}
END_TEST

START_TEST(euler_step_rounds_like_torch) {
  /* x + (sigma_next - sigma) * v; the golden run checks the rounding on real latents. */
  float x[2] = {1.0f, -3.0f}, v[2] = {1.0f, 0.5f};
  qd_euler_step(x, v, 2, 0.75f, 0.5f);
  ck_assert(x[0] == 0.75f && x[1] == -3.125f);
}
END_TEST

/* --- noise -------------------------------------------------------------------------------------------------------- */

static uint64_t fnv1a64(const void* data, size_t n) {
  const unsigned char* p = data;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

START_TEST(randn_matches_torch_bit_for_bit) {
  qd_safetensors_t* st = open_golden("pipeline_noise.safetensors");
  cJSON* cases = cJSON_Parse(qd_safetensors_metadata_get(st, "cases"));
  ck_assert_ptr_nonnull(cases);
  for (const cJSON* c = cases->child; c; c = c->next) {
    uint64_t seed = strtoull(cJSON_GetObjectItem(c, "seed")->valuestring, NULL, 10);
    uint64_t n = 1;
    for (const cJSON* d = cJSON_GetObjectItem(c, "shape")->child; d; d = d->next) n *= (uint64_t)d->valuedouble;
    const char* name = cJSON_GetObjectItem(c, "name")->valuestring;
    const float* want = f32_tensor(st, name, n);
    float* got = malloc(n * sizeof(float));
    qd_torch_generator_t g;
    qd_torch_generator_seed(&g, seed);
    QD_ASSERT_OK(qd_torch_randn(&g, got, (size_t)n));
    char what[96];
    snprintf(what, sizeof what, "randn(seed %llu, %llu values)", (unsigned long long)seed, (unsigned long long)n);
    assert_bits_equal(what, got, want, (size_t)n);
    free(got);
  }
  cJSON_Delete(cases);
  /* FLUX-sized draws, up to 1024x1024's [1, 16, 128, 128]: torch's bytes by hash. */
  cJSON* hashes = cJSON_Parse(qd_safetensors_metadata_get(st, "hashes"));
  ck_assert_ptr_nonnull(hashes);
  for (const cJSON* c = hashes->child; c; c = c->next) {
    uint64_t seed = strtoull(cJSON_GetObjectItem(c, "seed")->valuestring, NULL, 10);
    uint64_t n = 1;
    for (const cJSON* d = cJSON_GetObjectItem(c, "shape")->child; d; d = d->next) n *= (uint64_t)d->valuedouble;
    float* got = malloc(n * sizeof(float));
    qd_torch_generator_t g;
    qd_torch_generator_seed(&g, seed);
    QD_ASSERT_OK(qd_torch_randn(&g, got, (size_t)n));
    char hex[32];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a64(got, n * sizeof(float)));
    ck_assert_msg(strcmp(hex, cJSON_GetObjectItem(c, "fnv1a64")->valuestring) == 0,
                  "randn(seed %llu, %llu values): hash %s, torch's %s", (unsigned long long)seed,
                  (unsigned long long)n, hex, cJSON_GetObjectItem(c, "fnv1a64")->valuestring);
    free(got);
  }
  cJSON_Delete(hashes);
  qd_safetensors_close(st);
}
END_TEST

START_TEST(mt19937_reference_values) {
  /* The 10000th output of the standard mt19937 seeded with 5489 is 4123659995 (C++ [rand.predef]). */
  qd_torch_generator_t g;
  qd_torch_generator_seed(&g, 5489);
  uint32_t v = 0;
  for (int i = 0; i < 10000; i++) v = qd_torch_generator_u32(&g);
  ck_assert_uint_eq(v, 4123659995u);
  /* torch keeps only the low 32 bits of the seed for the engine. */
  qd_torch_generator_t a, b;
  qd_torch_generator_seed(&a, 7);
  qd_torch_generator_seed(&b, (UINT64_C(1) << 32) + 7);
  ck_assert_uint_eq(qd_torch_generator_u32(&a), qd_torch_generator_u32(&b));
  float few[15];
  QD_ASSERT_DETAIL(qd_torch_randn(&a, few, 15), QD_E_PIPELINE_NOISE_SIZE);
}
END_TEST

START_TEST(latents_match_flux_pipeline) {
  /* prepare_latents: randn([1, 16, 6, 8]) from manual_seed(1234), packed: the golden run's first transformer input. */
  qd_safetensors_t* io = open_golden("pipeline_tiny_io.safetensors");
  const float* want = f32_tensor(io, "noise", 12 * 64);
  float scratch[768], packed[768], back[768], again[768];
  QD_ASSERT_OK(qd_latents_noise(1234, 1, 16, 3, 4, scratch, packed));
  assert_bits_equal("packed noise", packed, want, 768);
  qd_latents_unpack(packed, 1, 16, 6, 8, back);
  ck_assert_int_eq(memcmp(back, scratch, sizeof back), 0);
  qd_latents_pack(back, 1, 16, 6, 8, again);
  ck_assert_int_eq(memcmp(again, packed, sizeof again), 0);
  /* Token (i, j) feature c*4 + dy*2 + dx is pixel (2i + dy, 2j + dx) of channel c. */
  ck_assert(packed[(1 * 4 + 2) * 64 + 5 * 4 + 1 * 2 + 0] == scratch[(5 * 6 + 2 * 1 + 1) * 8 + 2 * 2 + 0]);
  float ids[12 * 3];
  qd_latent_image_ids(3, 4, ids);
  assert_bits_equal("img_ids", ids, f32_tensor(io, "img_ids", 36), 36);
  /* The batch of two is one draw of [2, 16, 6, 8]: its first image's noise is the single image's. */
  float scratch2[1536], packed2[1536];
  QD_ASSERT_OK(qd_latents_noise(1234, 2, 16, 3, 4, scratch2, packed2));
  assert_bits_equal("batch-2 noise", packed2, f32_tensor(io, "noise_b2", 1536), 1536);
  qd_safetensors_close(io);
}
END_TEST

/* --- images ------------------------------------------------------------------------------------------------------- */

START_TEST(postprocess_matches_diffusers_exactly) {
  qd_safetensors_t* io = open_golden("pipeline_tiny_io.safetensors");
  const float* image = f32_tensor(io, "image", 3 * 48 * 64);
  const qd_tensor_info_t* u8 = qd_safetensors_find(io, "image_u8");
  ck_assert_ptr_nonnull(u8);
  ck_assert_int_eq(u8->dtype, QD_DTYPE_U8);
  uint8_t rgb[48 * 64 * 3];
  qd_image_to_rgb8(image, 48, 64, rgb);
  ck_assert_int_eq(memcmp(rgb, u8->data, sizeof rgb), 0);
  /* Clamping, rounding 127.5 to 128, NaN. */
  float planes[3 * 4] = {-2.0f, 3.0f, NAN, 0.0f, /* G */ 0.0f, 0.0f, 0.0f, 0.0f, /* B */ 0.0f, 0.0f, 0.0f, 0.0f};
  uint8_t px[12];
  qd_image_to_rgb8(planes, 2, 2, px);
  ck_assert_int_eq(px[0], 0);
  ck_assert_int_eq(px[3], 255);
  ck_assert_int_eq(px[6], 0);
  ck_assert_int_eq(px[1], 128); /* 0 -> 0.5 -> 127.5 -> 128 (even) */
  qd_safetensors_close(io);
}
END_TEST

/* Reads a PNG back with libpng: its size, pixels and text chunks. */
static void read_png(const char* path, int* w, int* h, uint8_t* rgb, size_t cap, char* text, size_t text_cap) {
  FILE* f = fopen(path, "rb");
  ck_assert_ptr_nonnull(f);
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  ck_assert_int_eq(setjmp(png_jmpbuf(png)), 0);
  png_init_io(png, f);
  png_read_info(png, info);
  *w = (int)png_get_image_width(png, info);
  *h = (int)png_get_image_height(png, info);
  ck_assert_int_eq(png_get_color_type(png, info), PNG_COLOR_TYPE_RGB);
  ck_assert_int_eq(png_get_bit_depth(png, info), 8);
  ck_assert_uint_le((size_t)*w * (size_t)*h * 3, cap);
  for (int y = 0; y < *h; y++) png_read_row(png, rgb + (size_t)y * (size_t)*w * 3, NULL);
  png_read_end(png, info);
  png_textp t;
  int n = 0;
  png_get_text(png, info, &t, &n);
  size_t used = 0;
  text[0] = '\0';
  for (int i = 0; i < n && used < text_cap; i++)
    used += (size_t)snprintf(text + used, text_cap - used, "%s=%s|%s\n", t[i].key, t[i].text,
                             t[i].compression == PNG_ITXT_COMPRESSION_NONE ? "iTXt" : "tEXt");
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
}

START_TEST(png_round_trip_with_text) {
  uint8_t rgb[5 * 3 * 3];
  for (size_t i = 0; i < sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37 + 11);
  char path[512];
  snprintf(path, sizeof path, "%s/pipeline_png_test.png", qd_test_tmp_dir());
  const char* keys[] = {"prompt", "seed"};
  const char* values[] = {"a café ☃", "42"};
  QD_ASSERT_OK(qd_image_write_png(path, rgb, 5, 3, keys, values, 2));
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  /* Created like any user file (0666 and the umask), not 0600 as a temporary file would be. */
  mode_t mask = umask(0);
  umask(mask);
  ck_assert_int_eq(sb.st_mode & 0777, 0666 & ~mask);
  uint8_t back[64];
  char text[512];
  int w, h;
  read_png(path, &w, &h, back, sizeof back, text, sizeof text);
  ck_assert_int_eq(w, 5);
  ck_assert_int_eq(h, 3);
  ck_assert_int_eq(memcmp(back, rgb, sizeof rgb), 0);
  ck_assert_ptr_nonnull(strstr(text, "prompt=a café ☃|iTXt"));
  ck_assert_ptr_nonnull(strstr(text, "seed=42|tEXt"));
  unlink(path);
}
END_TEST

START_TEST(png_rules) {
  uint8_t rgb[12] = {0};
  char path[512], dir_path[512];
  snprintf(path, sizeof path, "%s/pipeline_png_rules.png", qd_test_tmp_dir());
  QD_ASSERT_DETAIL(qd_image_write_png(path, rgb, 0, 2, NULL, NULL, 0), QD_E_PIPELINE_PNG);
  QD_ASSERT_DETAIL(qd_image_write_png(path, NULL, 2, 2, NULL, NULL, 0), QD_E_PIPELINE_PNG);
  const char* long_key = "a key that is much longer than the seventy-nine characters PNG allows for a keyword, really";
  const char* keys[] = {long_key};
  const char* values[] = {"v"};
  QD_ASSERT_DETAIL(qd_image_write_png(path, rgb, 2, 2, keys, values, 1), QD_E_PIPELINE_PNG);
  const char* empty[] = {""};
  QD_ASSERT_DETAIL(qd_image_write_png(path, rgb, 2, 2, empty, values, 1), QD_E_PIPELINE_PNG);
  /* A directory that does not exist: nothing is created, the error names the path. */
  snprintf(dir_path, sizeof dir_path, "%s/no_such_dir/x.png", qd_test_tmp_dir());
  QD_ASSERT_DETAIL(qd_image_write_png(dir_path, rgb, 2, 2, NULL, NULL, 0), QD_E_IO_OPEN);
  ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(api_defaults) {
  qd_generator_options_t o;
  qd_generator_options_init(&o);
  ck_assert_int_eq(o.device, QD_GENERATOR_DEVICE_CPU);
  ck_assert_int_eq(o.offload, QD_OFFLOAD_NONE);
  ck_assert_int_eq(o.threads, 0);
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  ck_assert(isnan(p.guidance));
  ck_assert_int_eq(p.steps, 0);
  ck_assert_int_eq(p.batch, 0);
  qd_generate_result_t r;
  memset(&r, 0, sizeof r);
  qd_generate_result_deinit(&r);
  qd_generate_result_deinit(NULL);
  qd_generator_destroy(NULL);
  QD_ASSERT_DETAIL(qd_generate_result_write_png(&r, 0, "x.png"), QD_E_INVALID_ARGUMENT);
}
END_TEST

static Suite* pipeline_suite(void) {
  Suite* s = suite_create("pipeline");
  TCase* tc = tcase_create("core");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, schedule_matches_diffusers_bit_for_bit);
  tcase_add_test(tc, flux_scheduler_defaults);
  tcase_add_test(tc, scheduler_config_rules);
  tcase_add_test(tc, euler_step_rounds_like_torch);
  tcase_add_test(tc, randn_matches_torch_bit_for_bit);
  tcase_add_test(tc, mt19937_reference_values);
  tcase_add_test(tc, latents_match_flux_pipeline);
  tcase_add_test(tc, postprocess_matches_diffusers_exactly);
  tcase_add_test(tc, png_round_trip_with_text);
  tcase_add_test(tc, png_rules);
  tcase_add_test(tc, api_defaults);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(pipeline_suite)
