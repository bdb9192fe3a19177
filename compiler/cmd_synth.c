/* qdc synth: seeded random weights with a graph's real names and shapes, as a safetensors checkpoint (streamed:
 * full FLUX.1-dev is 24 GB in bf16) or directly as a compiled plan (for benchmarks that need no checkpoint). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/cli.h"
#include "compiler/compile.h"
#include "compiler/qdc_commands.h"
#include "qd/progress.h"
#include "qd/safetensors_writer.h"
#include "runtime/cpu/threadpool.h"

static void qdc_synth_usage_(FILE* f) {
  fprintf(f,
          "usage: qdc synth GRAPH.json -o OUT.safetensors [--config NAME] [--seed N] [--dtype bf16|f32]\n"
          "       qdc synth GRAPH.json --plan OUT.qplan [--config NAME] [--seed N] [qdc compile options]\n"
          "\n"
          "Writes seeded random weights for every weight GRAPH.json reads, with its canonical names and shapes:\n"
          "matrices uniform with std 1/sqrt(fan-in), norm scales near 1, small biases. The same seed gives the same\n"
          "bytes on any machine. With --plan, the weights go straight into a compiled plan (no checkpoint on disk);\n"
          "the compile options --quant, --blocksize, --double-quant, --resolutions and --batch apply.\n"
          "\n"
          "options:\n"
          "  -o, --output PATH     the safetensors file to write\n"
          "      --plan PATH       write a compiled plan instead\n"
          "      --config NAME     the graph's configuration (default: its default)\n"
          "      --seed N          (default 0)\n"
          "      --dtype bf16|f32  element type of the checkpoint (default bf16)\n"
          "  -q, --quiet           no progress\n");
}

static int qdc_synth_fail_(qd_status_t s) {
  qd_status_fprint(stderr, "qdc", s, false);
  qd_status_free(s);
  return 1;
}

static qd_status_t qdc_synth_checkpoint_(const char* graph_path, const char* config, uint64_t seed, qd_dtype_t dtype,
                                         const char* out, int* rc) {
  qd_allocator_t a = qd_allocator_system();
  qd_graph_desc_t* d = NULL;
  qd_graph_t* g = NULL;
  qd_threadpool_t* pool = NULL;
  qd_safetensors_writer_t* w = NULL;
  float* x = NULL;
  uint16_t* h = NULL;
  uint64_t max_n = 0, total = 0;
  qd_size_binding_t b[16];
  int32_t nb = 0;
  qd_status_t s = qd_graph_desc_load_file(graph_path, a, &d);
  /* Weights do not depend on the resolution; any valid one instantiates the graph. */
  if (!s) s = qd_graph_desc_resolution_bindings(d, config, 1024, 1024, 1, b, 16, &nb);
  if (s && qd_status_detail(s) == QD_E_GRAPH_BINDING_MISSING) {
    qd_status_free(s);
    s = QD_OK;
    nb = 0;
    for (int32_t i = 0; i < qd_graph_desc_binding_count(d) && i < 16; i++)
      b[nb++] = (qd_size_binding_t){qd_graph_desc_binding_name(d, i), 1};
  }
  if (!s) s = qd_graph_desc_instantiate(d, config, b, nb, a, &g);
  if (!s) s = qd_threadpool_create(0, a, &pool);
  if (!s) s = qd_safetensors_writer_create(out, a, &w);
  char seed_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
  if (!s) s = qd_safetensors_writer_set_metadata(w, "qd.synthetic_seed", seed_text);
  if (!s) s = qd_safetensors_writer_set_metadata(w, "qd.graph", g->name);
  if (!s) s = qd_safetensors_writer_set_metadata(w, "qd.config", g->config);
  for (int32_t i = 0; i < (g ? g->weight_count : 0) && !s; i++) {
    uint64_t shape[QD_GRAPH_MAX_RANK], n = (uint64_t)qd_shape_numel(&g->weights[i].shape);
    for (int32_t k = 0; k < g->weights[i].shape.rank; k++) shape[k] = (uint64_t)g->weights[i].shape.dims[k];
    s = qd_safetensors_writer_add(w, g->weights[i].name, dtype, g->weights[i].shape.rank, shape, NULL);
    if (n > max_n) max_n = n;
    total += n * qd_dtype_size(dtype);
  }
  if (!s) s = qd_malloc(a, max_n * 4, (void**)&x);
  if (!s && dtype == QD_DTYPE_BF16) s = qd_malloc(a, max_n * 2, (void**)&h);
  qd_progress_t p;
  qd_progress_begin(&p, NULL, "synth", total, "B");
  for (int32_t i = 0; i < (g ? g->weight_count : 0) && !s; i++) {
    uint64_t n = (uint64_t)qd_shape_numel(&g->weights[i].shape);
    qdc_synth_fill(&g->weights[i], seed, x, pool);
    if (dtype == QD_DTYPE_BF16) {
      for (uint64_t k = 0; k < n; k++) h[k] = qd_f32_to_bf16(x[k]);
      s = qd_safetensors_writer_write(w, h, n * 2);
    } else {
      s = qd_safetensors_writer_write(w, x, n * 4);
    }
    qd_progress_advance(&p, n * qd_dtype_size(dtype));
  }
  qd_progress_end(&p);
  if (!s) s = qd_safetensors_writer_finish(w);
  if (!s) {
    char bytes[32];
    printf("wrote %s: %d tensors of %s/%s, %s, seed %llu\n", out, g->weight_count, g->name, g->config,
           qd_format_bytes(total, bytes, sizeof bytes), (unsigned long long)seed);
    *rc = 0;
  }
  qd_free(a, x, max_n * 4);
  qd_free(a, h, max_n * 2);
  qd_safetensors_writer_destroy(w);
  qd_threadpool_destroy(pool);
  qd_graph_destroy(g);
  qd_graph_desc_destroy(d);
  return s;
}

int qdc_cmd_synth(int argc, char** argv) {
  const char *graph = NULL, *out = NULL, *plan = NULL, *config = NULL;
  uint64_t seed = 0;
  qd_dtype_t dtype = QD_DTYPE_BF16;
  bool quiet = false;
  /* Options that belong to compile are passed through with --plan. */
  char* compile_argv[64];
  int compile_argc = 0;
  compile_argv[compile_argc++] = "compile";
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      qdc_synth_usage_(stdout);
      return 0;
    } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
      quiet = true;
    } else if ((strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) && v) {
      out = v;
      i++;
    } else if (strcmp(a, "--plan") == 0 && v) {
      plan = v;
      i++;
    } else if (strcmp(a, "--config") == 0 && v) {
      config = v;
      i++;
    } else if (strcmp(a, "--seed") == 0 && v) {
      char* end;
      seed = strtoull(v, &end, 10);
      if (*end) {
        fprintf(stderr, "qdc: error: synth: --seed '%s' is not a number\n", v);
        return 2;
      }
      i++;
    } else if (strcmp(a, "--dtype") == 0 && v) {
      if (strcmp(v, "bf16") == 0)
        dtype = QD_DTYPE_BF16;
      else if (strcmp(v, "f32") == 0)
        dtype = QD_DTYPE_F32;
      else {
        fprintf(stderr, "qdc: error: synth: --dtype takes bf16 or f32, not '%s'\n", v);
        return 2;
      }
      i++;
    } else if (a[0] == '-' && compile_argc + 2 < 64) {
      compile_argv[compile_argc++] = argv[i];
      if (strcmp(a, "--double-quant") != 0 && strcmp(a, "--json") != 0 && v) compile_argv[compile_argc++] = argv[++i];
    } else if (a[0] != '-' && !graph) {
      graph = a;
    } else {
      fprintf(stderr, "qdc: error: synth: unexpected argument '%s' (run 'qdc synth --help')\n", a);
      return 2;
    }
  }
  if (!graph || (!out && !plan) || (out && plan)) {
    fprintf(stderr, "qdc: error: synth: give GRAPH.json and either -o OUT.safetensors or --plan OUT.qplan\n");
    return 2;
  }
  if (quiet) {
    qd_progress_sink_t sink = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
    qd_progress_set_default_sink(&sink);
  }
  if (plan) {
    /* Compile from seeded values: the same passes as qdc compile, with no checkpoint. */
    char seed_text[32];
    snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
    compile_argv[compile_argc++] = "--synthetic-seed";
    compile_argv[compile_argc++] = seed_text;
    compile_argv[compile_argc++] = "--graph";
    compile_argv[compile_argc++] = (char*)graph;
    if (config) {
      compile_argv[compile_argc++] = "--config";
      compile_argv[compile_argc++] = (char*)config;
    }
    compile_argv[compile_argc++] = "-o";
    compile_argv[compile_argc++] = (char*)plan;
    if (quiet) compile_argv[compile_argc++] = "--quiet";
    compile_argv[compile_argc] = NULL;
    return qdc_cmd_compile(compile_argc, compile_argv);
  }
  int rc = 1;
  qd_status_t s = qdc_synth_checkpoint_(graph, config, seed, dtype, out, &rc);
  if (s) return qdc_synth_fail_(s);
  return rc;
}
