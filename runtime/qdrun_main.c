/* qdrun: runs compiled plans; also lists devices and runs graph descriptions directly for debugging. */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd/log.h"
#include "qd/version.h"
#include "runtime/qdrun_check.h"
#include "runtime/qdrun_devices.h"
#include "runtime/qdrun_generate.h"
#include "runtime/qdrun_graph.h"

static void qdrun_usage(FILE* f) {
  fprintf(f,
          "qdrun %s: run a compiled qd plan\n"
          "\n"
          "usage: qdrun --devices [--json]\n"
          "       qdrun PLAN --prompt TEXT [-o OUT.png] [--seed S] [--steps N] [--guidance G] [--width W --height H]\n"
          "             [--batch N] [--device cpu|cuda] [--json]   (qdrun PLAN --prompt x --help for details)\n"
          "       qdrun --check PLAN [--json]\n"
          "       qdrun PLAN --inputs IN.safetensors [--outputs OUT.safetensors] [--component NAME] [options]\n"
          "       qdrun --graph G.json --weights W --inputs IN.safetensors [--outputs OUT.safetensors] [options]\n"
          "\n"
          "options:\n"
          "  -h, --help             show this help\n"
          "      --version          print the version\n"
          "      --devices          list the CUDA devices and the CUDA driver, NVRTC and cuBLASLt versions\n"
          "      --check            say whether PLAN can run here and why not (device, kernels, driver, memory),\n"
          "                         without running it; exit 0 when it can, 1 when it cannot\n"
          "      --json             print one JSON document instead of text\n"
          "  -v, --verbose          more log messages\n"
          "  -q, --quiet            only errors\n"
          "\n"
          "debugging: run one component of a plan, or a graph description, on the CPU reference executor\n"
          "      --component NAME   with a plan: the component (default: the first)\n"
          "      --graph G.json     the graph description (models/*.json)\n"
          "      --config NAME      its configuration (default: the graph's default)\n"
          "      --weights PATH     a .safetensors file, an index, or a directory\n"
          "      --layout NAME      the weights' layout (default: detected: diffusers, bfl, comfyui, ...)\n"
          "      --inputs FILE      graph inputs by name; sizes such as batch and token counts follow their shapes\n"
          "      --outputs FILE     write the graph outputs here\n"
          "      --compare FILE     compare the outputs with reference tensors of the same names\n"
          "      --device cpu       the executor (only cpu for graphs)\n"
          "      --threads N        CPU threads (default: all cores)\n",
          QD_VERSION_STRING);
}

int main(int argc, char** argv) {
  enum { OPT_VERSION = 256, OPT_DEVICES, OPT_CHECK, OPT_JSON, OPT_GRAPH, OPT_CONFIG, OPT_WEIGHTS, OPT_LAYOUT,
         OPT_INPUTS, OPT_OUTPUTS, OPT_COMPARE, OPT_DEVICE, OPT_THREADS, OPT_COMPONENT };
  static const struct option opts[] = {
      {"help", no_argument, NULL, 'h'},
      {"version", no_argument, NULL, OPT_VERSION},
      {"devices", no_argument, NULL, OPT_DEVICES},
      {"check", no_argument, NULL, OPT_CHECK},
      {"json", no_argument, NULL, OPT_JSON},
      {"verbose", no_argument, NULL, 'v'},
      {"quiet", no_argument, NULL, 'q'},
      {"graph", required_argument, NULL, OPT_GRAPH},
      {"config", required_argument, NULL, OPT_CONFIG},
      {"weights", required_argument, NULL, OPT_WEIGHTS},
      {"layout", required_argument, NULL, OPT_LAYOUT},
      {"inputs", required_argument, NULL, OPT_INPUTS},
      {"outputs", required_argument, NULL, OPT_OUTPUTS},
      {"compare", required_argument, NULL, OPT_COMPARE},
      {"device", required_argument, NULL, OPT_DEVICE},
      {"threads", required_argument, NULL, OPT_THREADS},
      {"component", required_argument, NULL, OPT_COMPONENT},
      {NULL, 0, NULL, 0},
  };
  bool devices = false, check = false, json = false;
  qdrun_graph_options_t g = {0};
  int c;
  /* Generation has its own options (runtime/qdrun_generate.c); a --prompt anywhere selects it. */
  if (qdrun_wants_generate(argc, argv)) return qdrun_generate_main(argc, argv);
  while ((c = getopt_long(argc, argv, "hvq", opts, NULL)) != -1) {
    switch (c) {
      case 'h': qdrun_usage(stdout); return 0;
      case OPT_VERSION: printf("qdrun %s\n", QD_VERSION_STRING); return 0;
      case OPT_DEVICES: devices = true; break;
      case OPT_CHECK: check = true; break;
      case OPT_JSON: json = true; break;
      case 'v': qd_log_set_level(QD_LOG_DEBUG); break;
      case 'q': qd_log_set_level(QD_LOG_ERROR); break;
      case OPT_GRAPH: g.graph = optarg; break;
      case OPT_CONFIG: g.config = optarg; break;
      case OPT_WEIGHTS: g.weights = optarg; break;
      case OPT_LAYOUT: g.layout = optarg; break;
      case OPT_INPUTS: g.inputs = optarg; break;
      case OPT_OUTPUTS: g.outputs = optarg; break;
      case OPT_COMPARE: g.compare = optarg; break;
      case OPT_DEVICE: g.device = optarg; break;
      case OPT_COMPONENT: g.component = optarg; break;
      case OPT_THREADS: {
        char* end;
        long t = strtol(optarg, &end, 10);
        if (*end || t < 1 || t > 1024) {
          fprintf(stderr, "qdrun: error: --threads '%s': expected a number from 1 to 1024\n", optarg);
          return 2;
        }
        g.threads = (int)t;
        break;
      }
      default: fprintf(stderr, "qdrun: run 'qdrun --help' for the options\n"); return 2;
    }
  }
  if (optind < argc) g.plan = argv[optind++];
  if (optind < argc) {
    fprintf(stderr, "qdrun: error: unexpected argument '%s' (run 'qdrun --help')\n", argv[optind]);
    return 2;
  }
  if (devices) return qdrun_devices(json);
  if (check) {
    if (!g.plan) {
      fprintf(stderr, "qdrun: error: --check needs a PLAN (run 'qdrun --help')\n");
      return 2;
    }
    return qdrun_check(g.plan, json);
  }
  if (g.plan && g.graph) {
    fprintf(stderr, "qdrun: error: give a plan or --graph, not both\n");
    return 2;
  }
  if (g.plan && !g.inputs) {
    fprintf(stderr, "qdrun: error: %s: give --prompt TEXT to generate an image, or --inputs to run one component "
            "(run 'qdrun --help')\n", g.plan);
    return 2;
  }
  if (g.graph || g.plan) {
    g.json = json;
    return qdrun_graph(&g);
  }
  qdrun_usage(stderr);
  return 2;
}
