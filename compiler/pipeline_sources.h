/* The checkpoints of a FLUX pipeline: a diffusers directory, or the BFL single file plus --vae, --clip-l, --t5 and
 * --tokenizers. Produces one component spec per model and the tokenizer blobs for the plan. */
#ifndef QDC_PIPELINE_SOURCES_H
#define QDC_PIPELINE_SOURCES_H

#include "compiler/compile.h"

typedef struct qdc_pipeline_request {
  const char* input;      /* a diffusers directory, or the transformer file */
  const char* vae;        /* with a transformer file */
  const char* clip_l;
  const char* t5;
  const char* tokenizers; /* a directory with tokenizer/ and tokenizer_2/ */
  const char* quantize;   /* comma-separated component names */
} qdc_pipeline_request_t;

typedef struct qdc_pipeline_sources {
  qd_allocator_t allocator;
  char pipeline[64];
  qdc_component_spec_t specs[4]; /* transformer, text_encoder, text_encoder_2, vae */
  int32_t spec_count;
  char input_paths[4][4096];
  char graph_paths[4][4096];
  char tokenizer_paths[QDC_MAX_TOKENIZERS][4096];
  char* scheduler_text;
  size_t scheduler_size;
  qdc_plan_extras_t extras;
} qdc_pipeline_sources_t;

/* Whether path is a directory with a model_index.json. */
bool qdc_is_pipeline_dir(const char* path);
qd_status_t qdc_pipeline_sources_find(const qdc_pipeline_request_t* request, qd_allocator_t allocator,
                                      qdc_pipeline_sources_t* out_sources);
void qdc_pipeline_sources_deinit(qdc_pipeline_sources_t* sources);

#endif
