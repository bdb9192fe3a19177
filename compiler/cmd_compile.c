/* qdc compile: a checkpoint and a graph description in, one .qplan out. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/cli.h"
#include "compiler/compile.h"
#include "compiler/autotune.h"
#include "compiler/kernel_build.h"
#include "compiler/pipeline_sources.h"
#include "compiler/qdc_commands.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "runtime/cpu/threadpool.h"

static void qdc_compile_usage_(FILE* f) {
  fprintf(f,
          "usage: qdc compile INPUT -o OUT.qplan [options]\n"
          "\n"
          "Compiles a model into one plan: weights bound and checked, quantized to NF4 (bitsandbytes' format) or stored\n"
          "as bf16, shapes and activation memory planned for each resolution. INPUT is\n"
          "  - a diffusers FLUX directory (model_index.json, transformer/, text_encoder/, text_encoder_2/, vae/,\n"
          "    tokenizer/, tokenizer_2/, scheduler/): the whole text-to-image pipeline;\n"
          "  - the single-file BFL transformer (flux1-dev.safetensors) with --vae, --clip-l, --t5 and --tokenizers:\n"
          "    the whole pipeline too;\n"
          "  - a ComfyUI all-in-one checkpoint (transformer, text encoders and VAE in one file) with --tokenizers\n"
          "    (a piece the file lacks comes from its flag);\n"
          "  - any other checkpoint (file, sharded index, directory): one component, with --graph.\n"
          "The plan is written through a temporary file and renamed into place, so a failed or interrupted compile\n"
          "leaves no plan behind.\n"
          "\n"
          "options:\n"
          "  -o, --output PATH        the plan to write (required)\n"
          "      --graph G.json       the graph description (default: the FLUX transformer, %s/flux-transformer.json)\n"
          "      --config NAME        its configuration (default: the first one the checkpoint fits: dev, schnell, ...)\n"
          "      --layout NAME        the checkpoint's weight layout (default: detected: diffusers, bfl, comfyui)\n"
          "      --component NAME     the component's name in the plan (default: transformer)\n"
          "      --vae FILE           with a transformer file: the VAE (diffusers AutoencoderKL weights)\n"
          "      --clip-l FILE        with a transformer file: the CLIP-L text encoder\n"
          "      --t5 FILE            with a transformer file: the T5-XXL encoder\n"
          "      --tokenizers DIR     with a transformer file: a directory with tokenizer/ and tokenizer_2/\n"
          "      --quant nf4|none|f32 NF4 for linear weights of quantized components (default), a bf16 plan, or an\n"
          "                           fp32 plan (for accuracy work; twice bf16's size)\n"
          "      --quantize LIST      components to quantize (default: transformer,text_encoder_2, as the diffusers\n"
          "                           guide does)\n"
          "      --blocksize N        NF4 block size, a power of two from 32 to 4096 (default 64)\n"
          "      --double-quant       also quantize the NF4 block scales (bitsandbytes' compress_statistics)\n"
          "      --keep PATTERN       keep weights matching PATTERN ('*' wildcard) in bf16; repeatable\n"
          "      --resolutions LIST   WxH[,WxH...] the plan serves (default 1024x1024)\n"
          "      --batch N            images per step (default 1)\n"
          "      --vae-tile WxH|none  pipelines: also compile the VAE at this size, for decoding larger images in\n"
          "                           tiles under a GPU memory budget (default 512x512, when an image size is larger)\n"
          "      --threads N          CPU threads for quantization (default: all cores)\n"
          "      --target LIST        GPU architectures to build kernels for: sm_80,sm_86,sm_89,sm_90 (default: the\n"
          "                           GPUs present, else all four; PTX of the lowest runs on newer GPUs), or none\n"
          "      --autotune LEVEL     none (default), default or max: on the GPU present, time cuBLASLt's algorithms\n"
          "                           per GEMM (8 candidates, or all) and kernel variants per site, and keep the\n"
          "                           fastest in the plan (docs/user-guide.md, \"Autotuning\"); minutes per plan\n"
          "      --json               print the report as one JSON document\n"
          "  -q, --quiet              no progress, only errors\n"
          "  -v, --verbose            more messages\n"
          "  -h, --help               show this help\n",
          qdc_models_dir());
}

static int qdc_compile_usage_error_(const char* msg, const char* arg) {
  fprintf(stderr, "qdc: error: compile: %s%s%s%s (run 'qdc compile --help')\n", msg, arg ? " '" : "", arg ? arg : "",
          arg ? "'" : "");
  return 2;
}

static uint64_t qdc_nf4_bytes_(const qdc_component_t* c) {
  uint64_t q = 0;
  for (int32_t i = 0; i < c->results[0].graph->weight_count; i++)
    if (c->weights[i].format == QD_WEIGHT_FORMAT_NF4)
      q += c->weights[i].data.bytes + c->weights[i].absmax.bytes + c->weights[i].nested.bytes;
  return q;
}

static void qdc_print_report_(const qdc_compile_options_t* o, qdc_component_t* const* cs, int32_t count,
                              double seconds, bool json, const qdc_autotune_report_t* tuning) {
  char a[32], b[32];
  uint64_t plan_bytes = 0;
  FILE* f = fopen(o->output, "rb");
  if (f) {
    fseek(f, 0, SEEK_END);
    plan_bytes = (uint64_t)ftell(f);
    fclose(f);
  }
  if (json) {
    cJSON* root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "plan", o->output);
    cJSON_AddNumberToObject(root, "plan_bytes", (double)plan_bytes);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    cJSON* arr = cJSON_AddArrayToObject(root, "components");
    for (int32_t k = 0; k < count; k++) {
      const qdc_component_t* c = cs[k];
      double err = qdc_component_weight_error(c);
      cJSON* comp = cJSON_CreateObject();
      cJSON_AddItemToArray(arr, comp);
      cJSON_AddStringToObject(comp, "name", c->name);
      cJSON_AddStringToObject(comp, "graph", qd_graph_desc_name(c->desc));
      cJSON_AddStringToObject(comp, "config", c->config);
      cJSON_AddStringToObject(comp, "layout", c->layout);
      cJSON_AddNumberToObject(comp, "parameters", (double)c->params_total);
      cJSON_AddNumberToObject(comp, "quantized_parameters", (double)c->params_quantized);
      cJSON_AddNumberToObject(comp, "nf4_weights_copied", (double)c->weights_copied);
      cJSON_AddNumberToObject(comp, "source_bytes", (double)c->bytes_source);
      cJSON_AddNumberToObject(comp, "stored_bytes", (double)c->bytes_stored);
      cJSON_AddNumberToObject(comp, "bytes_per_quantized_parameter",
                              c->params_quantized ? (double)qdc_nf4_bytes_(c) / (double)c->params_quantized : 0);
      cJSON_AddNumberToObject(comp, "weight_relative_error", err);
      cJSON* mem = cJSON_AddArrayToObject(comp, "arena_bytes");
      for (int32_t r = 0; r < c->result_count; r++)
        cJSON_AddItemToArray(mem, cJSON_CreateNumber((double)c->results[r].memory->arena_bytes));
    }
    if (tuning) cJSON_AddItemToObject(root, "autotune", qdc_autotune_json(tuning));
    char* text = cJSON_Print(root);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
    return;
  }
  for (int32_t k = 0; k < count; k++) {
    const qdc_component_t* c = cs[k];
    double err = qdc_component_weight_error(c);
    char pt[32], pq[32];
    printf("component   %s: %s/%s, weights layout %s, from %s\n", c->name, qd_graph_desc_name(c->desc), c->config,
           c->layout, o->synthetic ? "seeded random values" : c->spec.input);
    printf("  weights   %s parameters, %s as NF4", qdc_format_count(c->params_total, pt, sizeof pt),
           qdc_format_count(c->params_quantized, pq, sizeof pq));
    if (c->params_quantized)
      printf(" (blocksize %d%s, %.4f bytes/param, relative error %.4f)", o->blocksize,
             o->double_quant ? ", double-quantized scales" : "",
             (double)qdc_nf4_bytes_(c) / (double)c->params_quantized, err);
    if (c->weights_copied)
      printf("\n            %llu weights were already NF4 in the checkpoint and were copied as they are",
             (unsigned long long)c->weights_copied);
    printf("\n            %s in the checkpoint -> %s stored\n", qd_format_bytes(c->bytes_source, a, sizeof a),
           qd_format_bytes(c->bytes_stored, b, sizeof b));
    for (int32_t r = 0; r < c->result_count; r++)
      printf("  memory    %lldx%lld, batch %lld: %s of activations (%d nodes)\n", (long long)c->results[r].res.width,
             (long long)c->results[r].res.height, (long long)c->results[r].res.batch,
             qd_format_bytes(c->results[r].memory->arena_bytes, a, sizeof a), c->results[r].graph->node_count);
  }
  if (tuning) qdc_autotune_print(tuning, false);
  printf("plan        %s, %s, in %.1f s\n", o->output, qd_format_bytes(plan_bytes, a, sizeof a), seconds);
}

/* The VAE of a pipeline is also compiled at the tile size (batch 1) when some image size is larger and holds a
 * whole tile: the generator decodes such images in tiles when a GPU memory budget calls for it
 * (runtime/pipeline/vae_tiles.h). */
static void qdc_add_vae_tile_(qdc_compile_options_t* o, int64_t w, int64_t h) {
  bool useful = false;
  for (int32_t r = 0; r < o->resolution_count; r++) {
    const qdc_resolution_t* x = &o->resolutions[r];
    if (x->width == w && x->height == h && x->batch == 1) return; /* compiled anyway */
    useful = useful || (x->width >= w && x->height >= h && (x->width > w || x->height > h));
  }
  if (w > 0 && useful && o->resolution_count < QDC_MAX_RESOLUTIONS)
    o->resolutions[o->resolution_count++] = (qdc_resolution_t){w, h, 1};
}

int qdc_cmd_compile(int argc, char** argv) {
  qdc_compile_options_t o;
  memset(&o, 0, sizeof o);
  o.blocksize = 64;
  o.quant = QDC_QUANT_NF4;
  const char* quantize = "transformer,text_encoder_2";
  qdc_pipeline_request_t pr = {0};
  const char* resolutions = "1024x1024";
  long batch = 1;
  int64_t vae_tile_w = 512, vae_tile_h = 512; /* --vae-tile; 0: none */
  bool json = false, quiet = false;
  const char* target = NULL; /* --target */
  int autotune = 0;          /* --autotune: none, default, max */
  char command[2048];
  size_t used = (size_t)snprintf(command, sizeof command, "qdc compile");
  for (int i = 1; i < argc && used < sizeof command; i++)
    used += (size_t)snprintf(command + used, sizeof command - used, " %s", argv[i]);
  o.command_line = command;

  for (int i = 1; i < argc; i++) {
    const char* arg = argv[i];
    bool has_value = i + 1 < argc;
#define QDC_VALUE() (has_value ? argv[++i] : NULL)
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      qdc_compile_usage_(stdout);
      return 0;
    } else if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
      quiet = true;
    } else if (strcmp(arg, "-v") == 0 || strcmp(arg, "--verbose") == 0) {
      qd_log_set_level(QD_LOG_DEBUG);
    } else if (strcmp(arg, "--json") == 0) {
      json = true;
    } else if (strcmp(arg, "--double-quant") == 0) {
      o.double_quant = true;
    } else if (arg[0] == '-' && arg[1] != '\0') {
      const char* v = QDC_VALUE();
      if (!v) return qdc_compile_usage_error_("missing value for", arg);
      const char* message;
      qdc_option_result_t taken = qdc_compile_option(arg, v, &o, &message);
      if (taken == QDC_OPTION_BAD) return qdc_compile_usage_error_(message, v);
      if (taken == QDC_OPTION_TAKEN) {
        /* one of the options qdc quantize shares */
      } else if (strcmp(arg, "--component") == 0) {
        o.component = v;
      } else if (strcmp(arg, "--vae") == 0) {
        pr.vae = v;
      } else if (strcmp(arg, "--clip-l") == 0) {
        pr.clip_l = v;
      } else if (strcmp(arg, "--t5") == 0) {
        pr.t5 = v;
      } else if (strcmp(arg, "--tokenizers") == 0) {
        pr.tokenizers = v;
      } else if (strcmp(arg, "--quant") == 0) {
        if (strcmp(v, "nf4") == 0)
          o.quant = QDC_QUANT_NF4;
        else if (strcmp(v, "none") == 0 || strcmp(v, "bf16") == 0)
          o.quant = QDC_QUANT_NONE;
        else if (strcmp(v, "f32") == 0)
          o.quant = QDC_QUANT_F32;
        else
          return qdc_compile_usage_error_("--quant takes nf4, none (bf16) or f32, not", v);
      } else if (strcmp(arg, "--quantize") == 0) {
        quantize = v;
      } else if (strcmp(arg, "--resolutions") == 0 || strcmp(arg, "--resolution") == 0) {
        resolutions = v;
      } else if (strcmp(arg, "--vae-tile") == 0) {
        if (strcmp(v, "none") == 0)
          vae_tile_w = vae_tile_h = 0;
        else if (!qdc_parse_resolution(v, &vae_tile_w, &vae_tile_h) || vae_tile_w % 16 || vae_tile_h % 16)
          return qdc_compile_usage_error_("--vae-tile takes WxH (multiples of 16) or none, not", v);
      } else if (strcmp(arg, "--batch") == 0) {
        if (!qdc_parse_long(v, 1, 64, &batch)) return qdc_compile_usage_error_("--batch takes 1 to 64, not", v);
      } else if (strcmp(arg, "--synthetic-seed") == 0) {
        /* qdc synth --plan: no checkpoint; seeded values instead (not shown in --help: synth is the interface). */
        o.synthetic = true;
        o.seed = strtoull(v, NULL, 10);
      } else if (strcmp(arg, "--target") == 0) {
        target = v;
      } else if (strcmp(arg, "--autotune") == 0) {
        if (strcmp(v, "none") != 0 && strcmp(v, "default") != 0 && strcmp(v, "max") != 0)
          return qdc_compile_usage_error_("--autotune takes none, default or max, not", v);
        autotune = strcmp(v, "none") == 0 ? 0 : strcmp(v, "default") == 0 ? 1 : 2;
      } else {
        return qdc_compile_usage_error_("unknown option", arg);
      }
    } else if (!o.input) {
      o.input = arg;
    } else {
      return qdc_compile_usage_error_("one INPUT expected; extra argument", arg);
    }
#undef QDC_VALUE
  }
  if (!o.input && !o.synthetic) return qdc_compile_usage_error_("missing INPUT", NULL);
  if (!o.output) return qdc_compile_usage_error_("missing -o OUT.qplan", NULL);
  char target_error[256];
  if (!qdc_targets_resolve(target, &o, target_error, sizeof target_error))
    return qdc_compile_usage_error_(target_error, NULL);
  /* Resolutions: a comma-separated list. */
  char list[512];
  snprintf(list, sizeof list, "%s", resolutions);
  for (char* tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    if (o.resolution_count == QDC_MAX_RESOLUTIONS) return qdc_compile_usage_error_("too many resolutions", NULL);
    qdc_resolution_t* r = &o.resolutions[o.resolution_count++];
    if (!qdc_parse_resolution(tok, &r->width, &r->height))
      return qdc_compile_usage_error_("--resolutions takes WxH[,WxH...], not", tok);
    r->batch = batch;
  }
  const char* name = o.component ? o.component : "transformer";
  char qlist[256];
  snprintf(qlist, sizeof qlist, "%s", quantize);
  for (char* tok = strtok(qlist, ","); tok; tok = strtok(NULL, ","))
    if (strcmp(tok, name) == 0) o.quantize_component = true;
  if (quiet) qdc_set_quiet();

  qd_allocator_t a = qd_allocator_system();
  double t0 = qd_now_seconds();
  qdc_component_t* comps[QDC_MAX_COMPONENTS] = {NULL};
  int32_t count = 0;
  qd_threadpool_t* pool = NULL;
  qdc_pipeline_sources_t ps;
  memset(&ps, 0, sizeof ps);
  bool pipeline = !o.synthetic && (qdc_is_pipeline_dir(o.input) || pr.vae || pr.clip_l || pr.t5 || pr.tokenizers);
  qd_status_t s = qd_threadpool_create(o.threads, a, &pool);
  if (!s && pipeline) {
    pr.input = o.input;
    pr.quantize = quantize;
    s = qdc_pipeline_sources_find(&pr, a, &ps);
    /* The transformer first: T5's text length follows the transformer's (512 for dev, 256 for schnell). */
    for (int32_t i = 0; i < ps.spec_count && !s; i++) {
      if (i == 2) {
        int64_t txt = qdc_component_binding(comps[0], "txt_tokens");
        ps.specs[i].overrides[0] = (qd_size_binding_t){"txt_tokens", txt};
        ps.specs[i].override_count = txt > 0;
      }
      qdc_compile_options_t vae = o;
      bool is_vae = strcmp(ps.specs[i].name, "vae") == 0;
      if (is_vae) qdc_add_vae_tile_(&vae, vae_tile_w, vae_tile_h);
      s = qdc_component_create_spec(is_vae ? &vae : &o, &ps.specs[i], a, &comps[count]);
      if (!s) count++;
    }
  } else if (!s) {
    s = qdc_component_create(&o, a, &comps[0]);
    if (!s) count = 1;
  }
  for (int32_t i = 0; i < count && !s; i++) s = qdc_choose_formats(&o, comps[i]);
  if (!s) s = qdc_emit_plan_multi(&o, comps, count, pipeline ? &ps.extras : NULL, pool);
  qdc_autotune_report_t tuning;
  memset(&tuning, 0, sizeof tuning);
  if (!s && autotune) s = qdc_autotune_plan(o.output, autotune == 2, a, &tuning);
  int rc = 0;
  if (s) {
    qd_status_fprint(stderr, "qdc", s, false);
    qd_status_free(s);
    rc = 1;
  } else if (!quiet || json) {
    qdc_print_report_(&o, comps, count, qd_now_seconds() - t0, json, autotune ? &tuning : NULL);
  }
  for (int32_t i = 0; i < count; i++) qdc_component_destroy(comps[i]);
  qdc_pipeline_sources_deinit(&ps);
  qd_threadpool_destroy(pool);
  return rc;
}

