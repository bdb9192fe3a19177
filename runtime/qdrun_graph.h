/* qdrun --graph: run a graph description directly on the CPU from safetensors files (debugging entry point). */
#ifndef QDRUN_GRAPH_H
#define QDRUN_GRAPH_H

#include <stdbool.h>

typedef struct qdrun_graph_options {
  const char* plan;       /* run this plan's component instead of a description */
  const char* component;  /* with plan: the component (default: the first) */
  const char* graph;
  const char* config;
  const char* weights;
  const char* layout;
  const char* inputs;
  const char* outputs;  /* NULL: do not write */
  const char* compare;  /* NULL: no comparison; else a safetensors file with reference outputs of the same names */
  const char* device;   /* "cpu" (the default) */
  int threads;
  bool json;
} qdrun_graph_options_t;

int qdrun_graph(const qdrun_graph_options_t* options);

#endif
