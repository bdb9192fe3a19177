/* qdc quantize: a checkpoint in, the same checkpoint with its linear weights in bitsandbytes NF4 out.
 *
 * The output is what diffusers' and transformers' save_pretrained write for a model loaded with
 * BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"): every quantized weight W becomes W (packed
 * codes), W.absmax, W.quant_map, W.nested_absmax and W.nested_quant_map (double quantization) and
 * W.quant_state.bitsandbytes__nf4 (ir/bnb_nf4.h); every other tensor is copied byte for byte. Which tensors are
 * linear weights comes from the graph description, exactly as for `qdc compile`: a tensor is quantized when every
 * graph weight that reads it is a linear matrix the graph does not keep (so BFL's fused qkv, read in three row
 * ranges, is quantized whole, as bitsandbytes quantizes that file's nn.Linear). Tensors already in bitsandbytes
 * form are copied as they are. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/cli.h"
#include "compiler/compile.h"
#include "compiler/qdc_commands.h"
#include "ir/bnb_nf4.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "qd/safetensors_writer.h"
#include "runtime/cpu/threadpool.h"

static void qdc_quantize_usage_(FILE* f) {
  fprintf(f,
          "usage: qdc quantize INPUT -o OUT.safetensors [--nf4] [options]\n"
          "\n"
          "Writes INPUT (a safetensors file, sharded index or directory) with the linear weights of its graph in\n"
          "bitsandbytes NF4, as diffusers' save_pretrained writes a model loaded with BitsAndBytesConfig(load_in_4bit=True,\n"
          "bnb_4bit_quant_type=\"nf4\"); every other tensor is copied unchanged. `qdc compile` reads such a file and takes\n"
          "its NF4 weights as they are. The file is written through a temporary name and renamed into place.\n"
          "\n"
          "options:\n"
          "  -o, --output PATH     the safetensors file to write (required)\n"
          "      --graph G.json    the graph description naming the weights (default: the FLUX transformer,\n"
          "                        %s/flux-transformer.json)\n"
          "      --config NAME     its configuration (default: the first one the checkpoint fits)\n"
          "      --layout NAME     the checkpoint's weight layout (default: detected)\n"
          "      --nf4             NF4 (bitsandbytes' quant_type \"nf4\"), the format written; may be omitted\n"
          "      --blocksize N     NF4 block size, a power of two from 32 to 4096 (default 64)\n"
          "      --double-quant    also quantize the block scales (bnb_4bit_use_double_quant)\n"
          "      --keep PATTERN    keep weights matching PATTERN ('*' wildcard) unquantized; repeatable\n"
          "      --threads N       CPU threads (default: all cores)\n"
          "      --json            print the report as one JSON document\n"
          "  -q, --quiet           no progress, only errors\n"
          "  -h, --help            show this help\n",
          qdc_models_dir());
}

static int qdc_quantize_usage_error_(const char* msg, const char* arg) {
  fprintf(stderr, "qdc: error: quantize: %s%s%s%s (run 'qdc quantize --help')\n", msg, arg ? " '" : "",
          arg ? arg : "", arg ? "'" : "");
  return 2;
}

/* What happens to one checkpoint tensor. */
typedef struct qdc_quantize_entry {
  const qd_tensor_info_t* tensor;
  bool quantize;
  qd_nf4_layout_t layout;
  float offset;    /* double quantization: mean of the block scales, known before the header is written */
  char state[512]; /* the quant_state JSON */
  size_t state_len;
} qdc_quantize_entry_t;

typedef struct qdc_quantize_report {
  size_t tensors, quantized;
  uint64_t params_quantized, bytes_in, bytes_out;
  double error_num, error_den;
} qdc_quantize_report_t;

/* Whether every graph weight reading `t` is stored as NF4 (and at least one does), and t is a floating-point
 * matrix. A bitsandbytes tensor (U8) never qualifies: it is copied with its statistics. */
static bool qdc_quantizes_(const qdc_component_t* c, const qd_tensor_info_t* t) {
  if (t->rank != 2 || (t->dtype != QD_DTYPE_BF16 && t->dtype != QD_DTYPE_F16 && t->dtype != QD_DTYPE_F32)) return false;
  const qd_graph_t* g = c->results[0].graph;
  bool read = false;
  for (int32_t i = 0; i < g->weight_count; i++)
    for (int32_t p = 0; p < c->binding->sources[i].part_count; p++)
      if (c->binding->sources[i].parts[p].tensor == t) {
        if (c->weights[i].format != QD_WEIGHT_FORMAT_NF4) return false;
        read = true;
      }
  return read;
}

typedef struct qdc_absmax_job {
  const qd_nf4_layout_t* layout;
  const float* x;
  float* absmax;
} qdc_absmax_job_t;

static void qdc_absmax_range_(void* ctx, int64_t begin, int64_t end) {
  const qdc_absmax_job_t* j = ctx;
  qd_nf4_block_absmax(j->layout, j->x, (uint64_t)begin, (uint64_t)end, j->absmax);
}

/* The double-quantization offset of a tensor without quantizing it: its length in the quant state JSON decides
 * the header, which is written before any data. The block scales are the quantizer's own (qd_nf4_block_absmax),
 * so this is the offset the real quantization computes; the second pass checks that it is. */
static qd_status_t qdc_offset_(qd_allocator_t a, const qdc_quantize_entry_t* e, float* x, void* pool, float* out) {
  const qd_nf4_layout_t* l = &e->layout;
  QD_TRY(qd_tensor_read_f32(e->tensor, x));
  float* absmax = NULL;
  uint8_t* codes = NULL;
  float* nested = NULL;
  qd_status_t s = qd_malloc(a, l->blocks * sizeof(float), (void**)&absmax);
  if (!s) s = qd_malloc(a, l->blocks, (void**)&codes);
  if (!s) s = qd_malloc(a, l->nested_blocks * sizeof(float), (void**)&nested);
  if (!s) {
    qdc_absmax_job_t job = {l, x, absmax};
    qd_parallel_for(pool, (int64_t)l->blocks, 256, qdc_absmax_range_, &job);
    qd_nf4_tensor_t t = {NULL, NULL, codes, nested, 0};
    qd_nf4_compress_absmax(l, absmax, &t);
    *out = t.offset;
  }
  qd_free(a, absmax, l->blocks * sizeof(float));
  qd_free(a, codes, l->blocks);
  qd_free(a, nested, l->nested_blocks * sizeof(float));
  return s;
}

static qd_status_t qdc_add_(qd_safetensors_writer_t* w, const char* name, const char* suffix, qd_dtype_t dtype,
                            int32_t rank, uint64_t d0, uint64_t d1) {
  char key[1024];
  snprintf(key, sizeof key, "%s%s", name, suffix);
  uint64_t shape[2] = {d0, d1};
  return qd_safetensors_writer_add(w, key, dtype, rank, shape, NULL);
}

/* Declares an entry's tensors, in the order qdc_write_entry_ streams them. */
static qd_status_t qdc_declare_entry_(qd_safetensors_writer_t* w, const qdc_quantize_entry_t* e) {
  const qd_tensor_info_t* t = e->tensor;
  if (!e->quantize) return qd_safetensors_writer_add(w, t->name, t->dtype, (int32_t)t->rank, t->shape, NULL);
  const qd_nf4_layout_t* l = &e->layout;
  QD_TRY(qdc_add_(w, t->name, "", QD_DTYPE_U8, 2, l->packed_bytes, 1));
  QD_TRY(qdc_add_(w, t->name, ".absmax", l->double_quant ? QD_DTYPE_U8 : QD_DTYPE_F32, 1, l->blocks, 0));
  QD_TRY(qdc_add_(w, t->name, ".quant_map", QD_DTYPE_F32, 1, 16, 0));
  if (l->double_quant) {
    QD_TRY(qdc_add_(w, t->name, ".nested_absmax", QD_DTYPE_F32, 1, l->nested_blocks, 0));
    QD_TRY(qdc_add_(w, t->name, ".nested_quant_map", QD_DTYPE_F32, 1, 256, 0));
  }
  return qdc_add_(w, t->name, ".quant_state.bitsandbytes__nf4", QD_DTYPE_U8, 1, e->state_len, 0);
}

/* Quantizes one entry and streams its tensors. */
static qd_status_t qdc_write_quantized_(qd_safetensors_writer_t* w, const qdc_quantize_entry_t* e, float* x,
                                        void* pool, qdc_quantize_report_t* r) {
  const qd_nf4_layout_t* l = &e->layout;
  qd_allocator_t a = qd_allocator_system();
  uint8_t *packed = NULL, *absmax = NULL;
  float* nested = NULL;
  size_t absmax_bytes = l->double_quant ? l->blocks : l->blocks * sizeof(float);
  size_t nested_bytes = (l->nested_blocks ? l->nested_blocks : 1) * sizeof(float);
  float offset = 0;
  qd_status_t s = qd_tensor_read_f32(e->tensor, x);
  if (!s) s = qd_malloc(a, l->packed_bytes, (void**)&packed);
  if (!s) s = qd_malloc(a, absmax_bytes, (void**)&absmax);
  if (!s) s = qd_malloc(a, nested_bytes, (void**)&nested);
  if (!s) s = qdc_quantize_nf4(a, l, x, packed, absmax, nested, &offset, &r->error_num, &r->error_den, pool);
  if (!s && l->double_quant && memcmp(&offset, &e->offset, sizeof offset) != 0)
    s = QD_ERR(INTERNAL, INTERNAL, "%s: '%s': the double-quantization offset changed between passes (%.9g, %.9g)",
               e->tensor->file, e->tensor->name, (double)e->offset, (double)offset);
  if (!s) s = qd_safetensors_writer_write(w, packed, l->packed_bytes);
  if (!s) s = qd_safetensors_writer_write(w, absmax, absmax_bytes);
  if (!s) s = qd_safetensors_writer_write(w, qd_nf4_code, 16 * sizeof(float));
  if (!s && l->double_quant) s = qd_safetensors_writer_write(w, nested, l->nested_blocks * sizeof(float));
  if (!s && l->double_quant) s = qd_safetensors_writer_write(w, qd_dynamic_map_signed(), 256 * sizeof(float));
  if (!s) s = qd_safetensors_writer_write(w, e->state, e->state_len);
  if (!s) {
    r->quantized++;
    r->params_quantized += l->count;
    r->bytes_out += qd_nf4_storage_bytes(l) + 64 + (l->double_quant ? 1024 : 0) + e->state_len;
  }
  qd_free(a, packed, l->packed_bytes);
  qd_free(a, absmax, absmax_bytes);
  qd_free(a, nested, nested_bytes);
  return qd_status_annotate(s, "quantizing '%s'", e->tensor->name);
}

static qd_status_t qdc_quantize_run_(const qdc_compile_options_t* o, qdc_component_t* c, void* pool,
                                     qdc_quantize_report_t* r) {
  qd_allocator_t a = c->allocator;
  size_t n = qd_checkpoint_tensor_count(c->ckpt);
  qdc_quantize_entry_t* entries = NULL;
  float* x = NULL;
  uint64_t max_numel = 0, total = 0;
  qd_safetensors_writer_t* w = NULL;
  qd_status_t s = qd_calloc(a, n ? n : 1, sizeof *entries, (void**)&entries);
  for (size_t i = 0; i < n && !s; i++) {
    qdc_quantize_entry_t* e = &entries[i];
    e->tensor = qd_checkpoint_tensor(c->ckpt, i);
    e->quantize = qdc_quantizes_(c, e->tensor);
    total += e->tensor->nbytes;
    r->bytes_in += e->tensor->nbytes;
    if (!e->quantize) continue;
    s = qd_nf4_layout(e->tensor->numel, o->blocksize, o->double_quant, &e->layout);
    if (e->tensor->numel > max_numel) max_numel = e->tensor->numel;
  }
  r->tensors = n;
  if (!s && max_numel) s = qd_malloc(a, max_numel * sizeof(float), (void**)&x);
  /* Pass 1: quant states (their offsets, for double quantization), so the header can be written first. */
  qd_progress_t p;
  if (o->double_quant) qd_progress_begin(&p, NULL, "scales", total, "B");
  for (size_t i = 0; i < n && !s; i++) {
    qdc_quantize_entry_t* e = &entries[i];
    if (!e->quantize) continue;
    if (o->double_quant) {
      s = qdc_offset_(a, e, x, pool, &e->offset);
      qd_progress_advance(&p, e->tensor->nbytes);
    }
    qd_shape_t shape = {.rank = 2, .dims = {(int64_t)e->tensor->shape[0], (int64_t)e->tensor->shape[1]}};
    if (!s) e->state_len = qd_bnb_nf4_quant_state(&e->layout, &shape, e->tensor->dtype, e->offset, e->state,
                                                  sizeof e->state);
  }
  if (o->double_quant) qd_progress_end(&p);
  if (!s) s = qd_safetensors_writer_create(o->output, a, &w);
  if (!s) s = qd_safetensors_writer_set_metadata(w, "format", "pt");
  for (size_t i = 0; i < n && !s; i++) s = qdc_declare_entry_(w, &entries[i]);
  /* Pass 2: the data, in declaration order. */
  qd_progress_begin(&p, NULL, "quantize", total, "B");
  for (size_t i = 0; i < n && !s; i++) {
    const qdc_quantize_entry_t* e = &entries[i];
    if (e->quantize) {
      s = qdc_write_quantized_(w, e, x, pool, r);
    } else {
      s = qd_safetensors_writer_write(w, e->tensor->data, e->tensor->nbytes);
      r->bytes_out += e->tensor->nbytes;
    }
    if (!qd_progress_advance(&p, e->tensor->nbytes) && !s)
      s = QD_ERR(CANCELLED, CANCELLED, "quantization cancelled");
  }
  qd_progress_end(&p);
  if (!s) s = qd_safetensors_writer_finish(w);
  qd_safetensors_writer_destroy(w);
  if (x) qd_free(a, x, max_numel * sizeof(float));
  qd_free(a, entries, (n ? n : 1) * sizeof *entries);
  return s;
}

static void qdc_quantize_print_(const qdc_compile_options_t* o, const qdc_component_t* c,
                                const qdc_quantize_report_t* r, double seconds, bool json) {
  double err = r->error_den > 0 ? sqrt(r->error_num / r->error_den) : 0;
  if (json) {
    cJSON* root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "input", o->input);
    cJSON_AddStringToObject(root, "output", o->output);
    cJSON_AddStringToObject(root, "graph", qd_graph_desc_name(c->desc));
    cJSON_AddStringToObject(root, "config", c->config);
    cJSON_AddStringToObject(root, "layout", c->layout);
    cJSON_AddNumberToObject(root, "blocksize", o->blocksize);
    cJSON_AddBoolToObject(root, "double_quant", o->double_quant);
    cJSON_AddNumberToObject(root, "tensors", (double)r->tensors);
    cJSON_AddNumberToObject(root, "quantized_tensors", (double)r->quantized);
    cJSON_AddNumberToObject(root, "quantized_parameters", (double)r->params_quantized);
    cJSON_AddNumberToObject(root, "input_bytes", (double)r->bytes_in);
    cJSON_AddNumberToObject(root, "output_bytes", (double)r->bytes_out);
    cJSON_AddNumberToObject(root, "weight_relative_error", err);
    cJSON_AddNumberToObject(root, "seconds", seconds);
    char* text = cJSON_Print(root);
    if (text) printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
    return;
  }
  char a[32], b[32], pq[32];
  printf("graph       %s/%s, weights layout %s\n", qd_graph_desc_name(c->desc), c->config, c->layout);
  printf("quantized   %zu of %zu tensors, %s parameters, NF4 blocksize %d%s, relative error %.4f\n", r->quantized,
         r->tensors, qdc_format_count(r->params_quantized, pq, sizeof pq), o->blocksize,
         o->double_quant ? " with double-quantized scales" : "", err);
  printf("written     %s, %s -> %s, in %.1f s\n", o->output, qd_format_bytes(r->bytes_in, a, sizeof a),
         qd_format_bytes(r->bytes_out, b, sizeof b), seconds);
}

int qdc_cmd_quantize(int argc, char** argv) {
  qdc_compile_options_t o;
  memset(&o, 0, sizeof o);
  o.blocksize = 64;
  o.quant = QDC_QUANT_NF4;
  o.quantize_component = true;
  o.resolutions[0] = (qdc_resolution_t){1024, 1024, 1};
  o.resolution_count = 1;
  bool json = false, quiet = false;
  for (int i = 1; i < argc; i++) {
    const char* arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      qdc_quantize_usage_(stdout);
      return 0;
    } else if (strcmp(arg, "-q") == 0 || strcmp(arg, "--quiet") == 0) {
      quiet = true;
    } else if (strcmp(arg, "--json") == 0) {
      json = true;
    } else if (strcmp(arg, "--double-quant") == 0) {
      o.double_quant = true;
    } else if (strcmp(arg, "--nf4") == 0) {
      /* The only format; accepted so that command lines can say what they write. */
    } else if (arg[0] == '-' && arg[1] != '\0') {
      const char* v = i + 1 < argc ? argv[++i] : NULL;
      if (!v) return qdc_quantize_usage_error_("missing value for", arg);
      const char* message;
      qdc_option_result_t r = qdc_compile_option(arg, v, &o, &message);
      if (r == QDC_OPTION_BAD) return qdc_quantize_usage_error_(message, v);
      if (r == QDC_OPTION_UNKNOWN) return qdc_quantize_usage_error_("unknown option", arg);
    } else if (!o.input) {
      o.input = arg;
    } else {
      return qdc_quantize_usage_error_("one INPUT expected; extra argument", arg);
    }
  }
  if (!o.input) return qdc_quantize_usage_error_("missing INPUT", NULL);
  if (!o.output) return qdc_quantize_usage_error_("missing -o OUT.safetensors", NULL);
  if (quiet) qdc_set_quiet();
  qd_allocator_t a = qd_allocator_system();
  double t0 = qd_now_seconds();
  qdc_component_t* c = NULL;
  qd_threadpool_t* pool = NULL;
  qdc_quantize_report_t report;
  memset(&report, 0, sizeof report);
  qd_status_t s = qd_threadpool_create(o.threads, a, &pool);
  if (!s) s = qdc_component_create(&o, a, &c);
  if (!s) s = qdc_choose_formats(&o, c);
  if (!s) s = qdc_quantize_run_(&o, c, pool, &report);
  int rc = 0;
  if (s) {
    qd_status_fprint(stderr, "qdc", s, false);
    qd_status_free(s);
    rc = 1;
  } else if (!quiet || json) {
    qdc_quantize_print_(&o, c, &report, qd_now_seconds() - t0, json);
  }
  qdc_component_destroy(c);
  qd_threadpool_destroy(pool);
  return rc;
}
