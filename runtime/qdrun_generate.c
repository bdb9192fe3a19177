/* qdrun PLAN --prompt TEXT: opens the plan, generates through qd/generator.h (the same API applications embed),
 * writes PNGs and reports the time of each phase. Only this file and qdrun_main.c choose exit codes. */
#include "runtime/qdrun_generate.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/generator.h"
#include "qd/log.h"
#include "qd/version.h"

static void qdrun_generate_usage_(FILE* f) {
  fprintf(f,
          "usage: qdrun PLAN --prompt TEXT [-o OUT.png] [options]\n"
          "\n"
          "Generates images from a pipeline plan (qdc compile of a diffusers FLUX directory), as diffusers'\n"
          "FluxPipeline does: the same plan, prompt, seed, size and device give the same pixels on every run.\n"
          "\n"
          "options:\n"
          "      --prompt TEXT      what to draw (UTF-8)\n"
          "  -o, --output PATH      the PNG to write (default out.png; with --batch N: PATH-1.png .. PATH-N.png)\n"
          "      --seed S           noise seed, as torch.Generator(\"cpu\").manual_seed(S) (default 0)\n"
          "      --steps N          denoising steps (default: 28 for a guidance-distilled model like FLUX.1-dev,\n"
          "                         4 for one without guidance like FLUX.1-schnell)\n"
          "      --guidance G       distilled guidance scale (default 3.5; ignored without guidance)\n"
          "      --width W          image width; with --height, a size the plan was compiled for\n"
          "      --height H         (default: the plan's first resolution)\n"
          "      --batch N          images from the one prompt (default 1; the plan must have that batch)\n"
          "      --device cpu|cuda  where to run (default cpu)\n"
          "      --offload MODE     CUDA: none (every component stays on the GPU), model (each component on\n"
          "                         the GPU only for its phase, uploaded from pinned host memory every image)\n"
          "                         group (as model, and the transformer's and T5's blocks streamed while they\n"
          "                         run) or sequential (streamed layer by layer: the least GPU memory)\n"
          "      --keep SIZE        with group or sequential: the transformer's first blocks kept on the GPU (2G)\n"
          "      --vram-budget SIZE CUDA: the fastest offload schedule whose GPU memory fits SIZE (e.g. 8G)\n"
          "      --vae-tiling MODE  auto (default: decode in overlapping tiles when the budget needs it or the GPU\n"
          "                         runs out of memory), on (whenever the plan has a smaller tile size) or off\n"
          "      --threads N        CPU threads (default: one per core)\n"
          "      --json             print one JSON document on stdout (files, parameters, seconds per phase)\n"
          "  -q, --quiet            no progress bar, only errors\n"
          "  -v, --verbose          more messages\n"
          "  -h, --help             show this help\n");
}

static int qdrun_generate_usage_error_(const char* msg, const char* arg) {
  fprintf(stderr, "qdrun: error: %s%s%s%s (run 'qdrun PLAN --prompt TEXT --help')\n", msg, arg ? " '" : "",
          arg ? arg : "", arg ? "'" : "");
  return 2;
}

bool qdrun_wants_generate(int argc, char** argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) return false;
    if (strcmp(argv[i], "--prompt") == 0 || strncmp(argv[i], "--prompt=", 9) == 0) return true;
  }
  return false;
}

static bool qdrun_parse_long_(const char* text, long lo, long hi, long* out) {
  char* end;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (end == text || *end || errno || v < lo || v > hi) return false;
  *out = v;
  return true;
}

/* "out.png" with index 2 -> "out-2.png"; a name without ".png" gets "-2" appended. */
static void qdrun_image_path_(const char* base, int32_t index, int32_t batch, char* out, size_t size) {
  if (batch <= 1) {
    snprintf(out, size, "%s", base);
    return;
  }
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".png") == 0)
    snprintf(out, size, "%.*s-%d.png", (int)(n - 4), base, index + 1);
  else
    snprintf(out, size, "%s-%d", base, index + 1);
}

static void qdrun_print_json_(const char* plan, const char* device, const qd_generator_t* gen,
                              const qd_generate_result_t* r, char paths[][4096], double load_s, double total_s) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return;
  cJSON_AddStringToObject(root, "plan", plan);
  cJSON_AddStringToObject(root, "model", r->model);
  cJSON_AddStringToObject(root, "prompt", r->prompt);
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->seed);
  cJSON_AddStringToObject(root, "seed", seed); /* a string: seeds go past 2^53 */
  cJSON_AddNumberToObject(root, "steps", r->steps);
  if (isnan(r->guidance))
    cJSON_AddNullToObject(root, "guidance");
  else
    cJSON_AddNumberToObject(root, "guidance", r->guidance);
  cJSON_AddNumberToObject(root, "width", r->width);
  cJSON_AddNumberToObject(root, "height", r->height);
  cJSON_AddNumberToObject(root, "batch", r->batch);
  cJSON_AddStringToObject(root, "device", device);
  uint64_t keep = 0;
  cJSON_AddStringToObject(root, "offload", qd_offload_mode_name(qd_generator_offload(gen, &keep)));
  cJSON_AddNumberToObject(root, "keep_bytes", (double)keep);
  cJSON* tiles = cJSON_AddObjectToObject(root, "vae_tiles");
  if (tiles) {
    cJSON_AddNumberToObject(tiles, "count", r->vae_tiles);
    cJSON_AddNumberToObject(tiles, "width", r->vae_tile_width);
    cJSON_AddNumberToObject(tiles, "height", r->vae_tile_height);
  }
  cJSON* images = cJSON_AddArrayToObject(root, "images");
  for (int32_t i = 0; images && i < r->batch; i++) cJSON_AddItemToArray(images, cJSON_CreateString(paths[i]));
  cJSON* sec = cJSON_AddObjectToObject(root, "seconds");
  if (sec) {
    cJSON_AddNumberToObject(sec, "load", load_s + r->seconds_load);
    cJSON_AddNumberToObject(sec, "tokenize", r->seconds_tokenize);
    cJSON_AddNumberToObject(sec, "encode", r->seconds_encode);
    cJSON_AddNumberToObject(sec, "denoise", r->seconds_denoise);
    cJSON_AddNumberToObject(sec, "decode", r->seconds_decode);
    cJSON_AddNumberToObject(sec, "total", total_s);
  }
  cJSON_AddStringToObject(root, "qd_version", qd_version_string());
  char* text = cJSON_Print(root);
  if (text) printf("%s\n", text);
  free(text);
  cJSON_Delete(root);
}

static void qdrun_print_text_(const qd_generator_t* gen, bool cuda, const qd_generate_result_t* r, char paths[][4096],
                              double load_s, double total_s) {
  char guidance[32];
  if (isnan(r->guidance))
    snprintf(guidance, sizeof guidance, "none");
  else
    snprintf(guidance, sizeof guidance, "%g", (double)r->guidance);
  printf("model       %s\n", r->model);
  uint64_t keep = 0;
  qd_offload_mode_t mode = qd_generator_offload(gen, &keep);
  char kb[32];
  if (cuda)
    printf("offload     %s%s%s\n", qd_offload_mode_name(mode), keep ? ", keeping the transformer's first blocks: " : "",
           keep ? qd_format_bytes(keep, kb, sizeof kb) : "");
  printf("image       %dx%d, %d image%s, seed %llu, %d steps, guidance %s\n", r->width, r->height, r->batch,
         r->batch == 1 ? "" : "s", (unsigned long long)r->seed, r->steps, guidance);
  printf("time        load %.2f s, tokenize %.3f s, encode %.2f s, denoise %.2f s (%.3f s/step), decode %.2f s; "
         "total %.2f s\n", load_s + r->seconds_load, r->seconds_tokenize, r->seconds_encode, r->seconds_denoise,
         r->seconds_denoise / (r->steps ? r->steps : 1), r->seconds_decode, total_s);
  if (r->vae_tiles)
    printf("decode      in %d tiles of %dx%d, blended\n", r->vae_tiles, r->vae_tile_width, r->vae_tile_height);
  for (int32_t i = 0; i < r->batch; i++) printf("wrote       %s\n", paths[i]);
}

int qdrun_generate_main(int argc, char** argv) {
  enum { OPT_PROMPT = 256, OPT_SEED, OPT_STEPS, OPT_GUIDANCE, OPT_WIDTH, OPT_HEIGHT, OPT_BATCH, OPT_DEVICE,
         OPT_THREADS, OPT_JSON, OPT_OFFLOAD, OPT_KEEP, OPT_VRAM_BUDGET, OPT_VAE_TILING };
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},         {"quiet", no_argument, NULL, 'q'},
      {"verbose", no_argument, NULL, 'v'},      {"output", required_argument, NULL, 'o'},
      {"prompt", required_argument, NULL, OPT_PROMPT}, {"seed", required_argument, NULL, OPT_SEED},
      {"steps", required_argument, NULL, OPT_STEPS},   {"guidance", required_argument, NULL, OPT_GUIDANCE},
      {"width", required_argument, NULL, OPT_WIDTH},   {"height", required_argument, NULL, OPT_HEIGHT},
      {"batch", required_argument, NULL, OPT_BATCH},   {"device", required_argument, NULL, OPT_DEVICE},
      {"threads", required_argument, NULL, OPT_THREADS}, {"json", no_argument, NULL, OPT_JSON},
      {"offload", required_argument, NULL, OPT_OFFLOAD}, {"keep", required_argument, NULL, OPT_KEEP},
      {"vram-budget", required_argument, NULL, OPT_VRAM_BUDGET},
      {"vae-tiling", required_argument, NULL, OPT_VAE_TILING}, {NULL, 0, NULL, 0},
  };
  qd_generate_params_t p;
  qd_generate_params_init(&p);
  qd_generator_options_t go;
  qd_generator_options_init(&go);
  const char* output = "out.png";
  const char* device = "cpu";
  bool json = false, quiet = false;
  long v;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "hqvo:", opts, NULL)) != -1) {
    switch (c) {
      case 'h': qdrun_generate_usage_(stdout); return 0;
      case 'q': quiet = true; break;
      case 'v': qd_log_set_level(QD_LOG_DEBUG); break;
      case 'o': output = optarg; break;
      case OPT_PROMPT: p.prompt = optarg; break;
      case OPT_SEED: {
        char* end;
        errno = 0;
        unsigned long long s = strtoull(optarg, &end, 10);
        if (end == optarg || *end || errno || optarg[0] == '-')
          return qdrun_generate_usage_error_("--seed takes a whole number from 0 to 2^64 - 1, not", optarg);
        p.seed = s;
        break;
      }
      case OPT_STEPS:
        if (!qdrun_parse_long_(optarg, 1, 1000, &v)) return qdrun_generate_usage_error_("--steps takes 1 to 1000, not", optarg);
        p.steps = (int32_t)v;
        break;
      case OPT_GUIDANCE: {
        char* end;
        double g = strtod(optarg, &end);
        if (end == optarg || *end || !(g >= 0 && g <= 100))
          return qdrun_generate_usage_error_("--guidance takes a number from 0 to 100, not", optarg);
        p.guidance = (float)g;
        break;
      }
      case OPT_WIDTH:
        if (!qdrun_parse_long_(optarg, 16, 65536, &v)) return qdrun_generate_usage_error_("--width takes 16 to 65536, not", optarg);
        p.width = (int32_t)v;
        break;
      case OPT_HEIGHT:
        if (!qdrun_parse_long_(optarg, 16, 65536, &v)) return qdrun_generate_usage_error_("--height takes 16 to 65536, not", optarg);
        p.height = (int32_t)v;
        break;
      case OPT_BATCH:
        if (!qdrun_parse_long_(optarg, 1, 64, &v)) return qdrun_generate_usage_error_("--batch takes 1 to 64, not", optarg);
        p.batch = (int32_t)v;
        break;
      case OPT_DEVICE:
        if (strcmp(optarg, "cpu") == 0)
          go.device = QD_GENERATOR_DEVICE_CPU;
        else if (strcmp(optarg, "cuda") == 0)
          go.device = QD_GENERATOR_DEVICE_CUDA;
        else
          return qdrun_generate_usage_error_("--device takes cpu or cuda, not", optarg);
        device = optarg;
        break;
      case OPT_THREADS:
        if (!qdrun_parse_long_(optarg, 1, 1024, &v)) return qdrun_generate_usage_error_("--threads takes 1 to 1024, not", optarg);
        go.threads = (int32_t)v;
        break;
      case OPT_JSON: json = true; break;
      case OPT_OFFLOAD: {
        if (!qd_offload_mode_parse(optarg, &go.offload))
          return qdrun_generate_usage_error_("--offload takes none, model, group or sequential, not", optarg);
        break;
      }
      case OPT_KEEP:
        if (!qd_parse_bytes(optarg, &go.keep_bytes)) return qdrun_generate_usage_error_("--keep takes a size like 2G, not", optarg);
        break;
      case OPT_VRAM_BUDGET:
        if (!qd_parse_bytes(optarg, &go.vram_budget) || go.vram_budget == 0)
          return qdrun_generate_usage_error_("--vram-budget takes a size like 8G, not", optarg);
        break;
      case OPT_VAE_TILING:
        if (strcmp(optarg, "auto") == 0)
          go.vae_tiling = QD_VAE_TILING_AUTO;
        else if (strcmp(optarg, "on") == 0)
          go.vae_tiling = QD_VAE_TILING_ON;
        else if (strcmp(optarg, "off") == 0)
          go.vae_tiling = QD_VAE_TILING_OFF;
        else
          return qdrun_generate_usage_error_("--vae-tiling takes auto, on or off, not", optarg);
        break;
      default: return qdrun_generate_usage_error_("unknown option", NULL);
    }
  }
  if (optind >= argc) return qdrun_generate_usage_error_("missing PLAN (a .qplan compiled from a pipeline)", NULL);
  const char* plan_path = argv[optind++];
  if (optind < argc) return qdrun_generate_usage_error_("unexpected argument", argv[optind]);
  if (!p.prompt) return qdrun_generate_usage_error_("missing --prompt", NULL);
  if ((p.width == 0) != (p.height == 0)) return qdrun_generate_usage_error_("give --width and --height together", NULL);
  if (quiet) qd_log_set_level(QD_LOG_ERROR);
  /* The bar is drawn from the first step (no delay): each step of a big model is long enough to want it. */
  qd_progress_sink_t sink = {quiet ? QD_PROGRESS_QUIET : QD_PROGRESS_AUTO, stderr, NULL, NULL, 0.0};
  p.progress = &sink;

  qd_allocator_t a = qd_allocator_system();
  double t0 = qd_now_seconds();
  qd_plan_t* plan = NULL;
  qd_generator_t* gen = NULL;
  qd_generate_result_t r;
  memset(&r, 0, sizeof r);
  static char paths[64][4096];
  qd_status_t s = qd_plan_open(plan_path, a, 0, &plan);
  if (!s) s = qd_generator_create(plan, &go, a, &gen);
  double load_s = qd_now_seconds() - t0;
  if (!s) s = qd_generator_generate(gen, &p, &r);
  for (int32_t i = 0; !s && i < r.batch; i++) {
    qdrun_image_path_(output, i, r.batch, paths[i], sizeof paths[i]);
    s = qd_generate_result_write_png(&r, i, paths[i]);
  }
  int rc = 0;
  if (s) {
    qd_status_fprint(stderr, "qdrun", s, false);
    qd_status_free(s);
    rc = 1;
  } else if (json) {
    qdrun_print_json_(plan_path, device, gen, &r, paths, load_s, qd_now_seconds() - t0);
  } else if (!quiet) {
    qdrun_print_text_(gen, go.device == QD_GENERATOR_DEVICE_CUDA, &r, paths, load_s, qd_now_seconds() - t0);
  }
  qd_generate_result_deinit(&r);
  qd_generator_destroy(gen);
  qd_plan_close(plan);
  return rc;
}
