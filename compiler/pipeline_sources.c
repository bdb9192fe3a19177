/* Which checkpoints make up a FLUX pipeline, from what the user has: a diffusers directory (model_index.json and
 * one folder per component), the single-file BFL transformer with separate VAE, CLIP-L and T5 files and a
 * tokenizers directory, or a ComfyUI all-in-one checkpoint (transformer under model.diffusion_model., the text
 * encoders under text_encoders.clip_l.transformer. and text_encoders.t5xxl.transformer., the VAE under vae.; each
 * graph's "comfyui" weight layout reads its part) with a tokenizers directory. A missing piece is named with what
 * would supply it. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "compiler/pipeline_sources.h"
#include "ir/file_read.h"
#include "qd/safetensors.h"
#include "qd/tokenizer.h"

static bool qdc_exists_(const char* path, bool want_dir) {
  struct stat sb;
  return stat(path, &sb) == 0 && (want_dir ? S_ISDIR(sb.st_mode) : true);
}

/* Small text files of a pipeline directory: model_index.json and the scheduler's config (at most 16 MiB). */
static qd_status_t qdc_read_text_(const char* path, qd_allocator_t a, char** out, size_t* out_size) {
  return qd_file_read_all(a, path, 16 << 20, QD_E_IO_STAT, out, out_size);
}

bool qdc_is_pipeline_dir(const char* path) {
  char p[4096];
  snprintf(p, sizeof p, "%s/model_index.json", path);
  return qdc_exists_(p, false);
}

void qdc_pipeline_sources_deinit(qdc_pipeline_sources_t* ps) {
  for (int32_t t = 0; t < ps->extras.tokenizer_count; t++)
    qd_free(ps->allocator, (void*)ps->extras.tokenizers[t].data, ps->extras.tokenizers[t].size);
  if (ps->scheduler_text) qd_free(ps->allocator, ps->scheduler_text, ps->scheduler_size + 1);
  memset(ps, 0, sizeof *ps);
}

/* Which of the other pieces a single file holds itself (a ComfyUI all-in-one checkpoint): has[i] for CLIP, T5 and
 * the VAE (1..3) when a tensor name starts with that piece's prefix. A file that is not a readable safetensors file
 * holds none; the transformer's own reader reports what is wrong with it. */
static void qdc_all_in_one_parts_(const char* path, qd_allocator_t a, bool has[4]) {
  static const char* const prefixes[4] = {NULL, "text_encoders.clip_l.transformer.", "text_encoders.t5xxl.transformer.",
                                          "vae.decoder."};
  memset(has, 0, 4 * sizeof has[0]);
  qd_safetensors_t* st;
  qd_status_t s = qd_safetensors_open(path, a, &st);
  if (s) {
    qd_status_free(s);
    return;
  }
  for (size_t t = 0; t < qd_safetensors_tensor_count(st); t++) {
    const char* name = qd_safetensors_tensor(st, t)->name;
    for (int i = 1; i < 4; i++) has[i] |= strncmp(name, prefixes[i], strlen(prefixes[i])) == 0;
  }
  qd_safetensors_close(st);
}

static qd_status_t qdc_add_tokenizer_(qdc_pipeline_sources_t* ps, const char* name, const char* dir,
                                      qd_tokenizer_kind_t kind) {
  qd_tokenizer_t* t;
  QD_TRY_CTX(qd_tokenizer_open(dir, kind, ps->allocator, &t), "the %s tokenizer", kind == QD_TOKENIZER_CLIP ? "CLIP" : "T5");
  void* data = NULL;
  size_t size = 0;
  qd_status_t s = qd_tokenizer_save_blob(t, ps->allocator, &data, &size);
  qd_tokenizer_destroy(t);
  QD_TRY(s);
  qdc_tokenizer_blob_t* b = &ps->extras.tokenizers[ps->extras.tokenizer_count++];
  b->name = name;
  snprintf(ps->tokenizer_paths[ps->extras.tokenizer_count - 1], sizeof ps->tokenizer_paths[0], "%s", dir);
  b->source = ps->tokenizer_paths[ps->extras.tokenizer_count - 1];
  b->data = data;
  b->size = size;
  return QD_OK;
}

static void qdc_spec_(qdc_component_spec_t* s, const char* name, const char* input, const char* graph_file,
                      bool quantize, char* graph_buf, size_t graph_size) {
  memset(s, 0, sizeof *s);
  s->name = name;
  s->input = input;
  snprintf(graph_buf, graph_size, "%s/%s", qdc_models_dir(), graph_file);
  s->graph = graph_buf;
  s->quantize = quantize;
}

static bool qdc_listed_(const char* list, const char* name) {
  char buf[512];
  snprintf(buf, sizeof buf, "%s", list);
  for (char* tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
    if (strcmp(tok, name) == 0) return true;
  return false;
}

qd_status_t qdc_pipeline_sources_find(const qdc_pipeline_request_t* r, qd_allocator_t a, qdc_pipeline_sources_t* ps) {
  memset(ps, 0, sizeof *ps);
  ps->allocator = a;
  static const char* const graph_files[4] = {"flux-transformer.json", "clip-l.json", "t5-xxl-encoder.json",
                                             "flux-vae-decoder.json"};
  static const char* const names[4] = {"transformer", "text_encoder", "text_encoder_2", "vae"};
  static const char* const what[4] = {"the FLUX transformer", "the CLIP-L text encoder", "the T5-XXL encoder",
                                      "the VAE"};
  const char* inputs[4] = {NULL, NULL, NULL, NULL};
  char tok_clip[4096], tok_t5[4096];
  qd_status_t s = QD_OK;
  if (qdc_is_pipeline_dir(r->input)) {
    /* A diffusers directory: model_index.json says the pipeline class; each component has its folder. */
    char p[4096];
    snprintf(p, sizeof p, "%s/model_index.json", r->input);
    char* text;
    size_t size;
    QD_TRY(qdc_read_text_(p, a, &text, &size));
    cJSON* mi = cJSON_ParseWithLength(text, size);
    qd_free(a, text, size + 1);
    const cJSON* cls = mi ? cJSON_GetObjectItemCaseSensitive(mi, "_class_name") : NULL;
    if (!cJSON_IsString(cls)) {
      cJSON_Delete(mi);
      return QD_ERR(BAD_INPUT, NOT_A_FILE, "%s: not a JSON object with a \"_class_name\"", p);
    }
    snprintf(ps->pipeline, sizeof ps->pipeline, "%s", cls->valuestring);
    cJSON_Delete(mi);
    if (strcmp(ps->pipeline, "FluxPipeline") != 0)
      return QD_ERR(UNSUPPORTED, NOT_A_FILE, "%s: a %s; qdc compiles FluxPipeline directories", r->input, ps->pipeline);
    for (int i = 0; i < 4; i++) {
      snprintf(ps->input_paths[i], sizeof ps->input_paths[i], "%s/%s", r->input, names[i]);
      if (!qdc_exists_(ps->input_paths[i], true))
        return QD_ERR(NOT_FOUND, NOT_FOUND, "%s: no %s/ (%s); a FLUX diffusers directory has transformer/, "
                      "text_encoder/, text_encoder_2/, vae/, tokenizer/, tokenizer_2/ and scheduler/", r->input,
                      names[i], what[i]);
      inputs[i] = ps->input_paths[i];
    }
    snprintf(tok_clip, sizeof tok_clip, "%s/tokenizer", r->input);
    snprintf(tok_t5, sizeof tok_t5, "%s/tokenizer_2", r->input);
    snprintf(p, sizeof p, "%s/scheduler/scheduler_config.json", r->input);
    if (qdc_exists_(p, false)) QD_TRY(qdc_read_text_(p, a, &ps->scheduler_text, &ps->scheduler_size));
  } else {
    /* A single file: the BFL transformer, whose other pieces come from flags, or a ComfyUI all-in-one checkpoint
     * that holds some or all of them (a flag still wins). */
    snprintf(ps->pipeline, sizeof ps->pipeline, "FluxPipeline");
    const char* flags[4] = {NULL, "--clip-l", "--t5", "--vae"};
    const char* inside[4] = {NULL, "text_encoders.clip_l.*", "text_encoders.t5xxl.*", "vae.*"};
    bool has[4];
    qdc_all_in_one_parts_(r->input, a, has);
    inputs[0] = r->input;
    inputs[1] = r->clip_l;
    inputs[2] = r->t5;
    inputs[3] = r->vae;
    for (int i = 1; i < 4; i++) {
      if (!inputs[i] && has[i]) inputs[i] = r->input;
      if (!inputs[i])
        return QD_ERR(INVALID_ARGUMENT, NOT_FOUND, "%s holds no %s (no %s tensors, as a ComfyUI all-in-one checkpoint "
                      "has): pass %s FILE too, or a diffusers directory", r->input, what[i], inside[i], flags[i]);
    }
    if (!r->tokenizers)
      return QD_ERR(INVALID_ARGUMENT, NOT_FOUND, "%s is a single file: pass --tokenizers DIR (a directory with "
                    "tokenizer/ for CLIP and tokenizer_2/ for T5, as in a diffusers FLUX repository)", r->input);
    snprintf(tok_clip, sizeof tok_clip, "%s/tokenizer", r->tokenizers);
    snprintf(tok_t5, sizeof tok_t5, "%s/tokenizer_2", r->tokenizers);
  }
  for (int i = 0; i < 4; i++)
    qdc_spec_(&ps->specs[i], names[i], inputs[i], graph_files[i], qdc_listed_(r->quantize, names[i]),
              ps->graph_paths[i], sizeof ps->graph_paths[i]);
  ps->spec_count = 4;
  if (!s) s = qdc_add_tokenizer_(ps, "tokenizer", tok_clip, QD_TOKENIZER_CLIP);
  if (!s) s = qdc_add_tokenizer_(ps, "tokenizer_2", tok_t5, QD_TOKENIZER_T5);
  ps->extras.pipeline = ps->pipeline;
  ps->extras.scheduler_json = ps->scheduler_text;
  if (s) qdc_pipeline_sources_deinit(ps);
  return s;
}
