/* Kernels per node, lists of them, and where an executor gets them; see kernel_variants.h. */
#include "runtime/cuda/kernel_variants.h"

#include <stdio.h>
#include <string.h>

#include "qd/device.h"
#include "runtime/cuda/kernel_sources.h"
#include "runtime/cuda/kernels_text.h"
#include "runtime/cuda/tuning.h"

/* --- one node ------------------------------------------------------------------------------------------------- */

static void qd_ck_arch_(qd_cuda_kernel_target_t t, qd_cuda_kernel_t* k) {
  snprintf(k->arch, sizeof k->arch, "%s_%d", t.ptx ? "compute" : "sm", t.cc);
}

/* Ends a key with the digest of the template's text and the shared headers': a plan made by a qd whose kernel
 * source differs (another argument list, a fix) then has no image under this key, and the executor compiles the
 * current source instead of launching stale code. */
static qd_status_t qd_ck_seal_key_(qd_cuda_kernel_t* k, const char* template_name) {
  const qd_kernel_source_t* src = qd_kernel_source_lookup(template_name);
  if (!src) return QD_ERR(INTERNAL, INTERNAL, "kernel template %s is not embedded", template_name);
  size_t used = strlen(k->key);
  int n = snprintf(k->key + used, sizeof k->key - used, " src=%016llx",
                   (unsigned long long)qd_kernel_source_digest(src->text, src->size));
  if (n < 0 || (size_t)n >= sizeof k->key - used)
    return QD_ERR(INTERNAL, INTERNAL, "kernel key of %s is longer than %d bytes", template_name,
                  QD_CUDA_KERNEL_KEY_MAX - 1);
  return QD_OK;
}

/* A template kernel with `count` defines set (the others at their documented defaults). */
static qd_status_t qd_ck_template_defs_(qd_cuda_kernel_target_t t, const char* template_name, const char* function,
                                        const qd_kernel_define_t* defs, size_t count, qd_cuda_kernel_t* k) {
  memset(k, 0, sizeof *k);
  QD_TRY(qd_kernel_config_init(template_name, &k->config));
  for (size_t i = 0; i < count; i++) QD_TRY(qd_kernel_config_set(&k->config, defs[i].name, defs[i].value));
  k->function = function;
  qd_ck_arch_(t, k);
  return qd_cuda_kernel_rekey(k);
}

/* A template kernel with at most one define set. */
static qd_status_t qd_ck_template_(qd_cuda_kernel_target_t t, const char* template_name, const char* function,
                                   const char* name, int value, qd_cuda_kernel_t* k) {
  qd_kernel_define_t d = {name, value};
  return qd_ck_template_defs_(t, template_name, function, &d, name ? 1 : 0, k);
}

/* The attention kernel: wgmma (sm_90a) on Hopper cubins where its constraints hold, the mma kernel elsewhere and
 * always for PTX (sm_90a code does not run on later GPUs). */
static qd_status_t qd_ck_attention_(qd_cuda_kernel_target_t t, int head_dim, bool causal, bool has_bias,
                                    qd_cuda_kernel_t* k) {
  memset(k, 0, sizeof *k);
  qd_attention_kernel_t kind = !t.ptx && t.cc == 90 && !has_bias && head_dim % 64 == 0 && head_dim <= 128
                                   ? QD_ATTENTION_WGMMA
                                   : QD_ATTENTION_MMA;
  k->attention = true;
  k->attn = qd_attention_variant_default(kind, t.cc, head_dim, causal, has_bias);
  qd_attention_defines_t d;
  QD_TRY(qd_attention_variant_defines(&k->attn, &d));
  k->function = qd_attention_kernel_name(kind);
  size_t used = (size_t)snprintf(k->key, sizeof k->key, "%s:%s", qd_attention_template_file(kind), k->function);
  for (size_t i = 0; i < d.count && used < sizeof k->key; i++)
    used += (size_t)snprintf(k->key + used, sizeof k->key - used, " %s", d.options[i] + 2); /* "-DX=1" -> "X=1" */
  if (used >= sizeof k->key)
    return QD_ERR(INTERNAL, INTERNAL, "attention kernel key is longer than %d bytes", QD_CUDA_KERNEL_KEY_MAX - 1);
  if (t.ptx) {
    qd_ck_arch_(t, k);
  } else {
    QD_TRY(qd_attention_target_arch(kind, t.cc / 10, t.cc % 10, k->arch, sizeof k->arch));
  }
  return qd_ck_seal_key_(k, qd_attention_template_file(kind));
}

/* Mirrors the executor's node dispatch (executor.c, qd_exec_node_): the same patterns and ops, the same kernel. */
qd_status_t qd_cuda_node_kernel(const qd_graph_t* g, const qd_cuda_lowering_t* l, const qd_plan_weight_t* weights,
                                qd_cuda_kernel_target_t t, int32_t i, qd_cuda_kernel_t* k, bool* out_has) {
  *out_has = false;
  /* A batched linear's member needs its own dequantization (its weight's format may differ from the head's). */
  if ((l->role[i] == QD_CUDA_MEMBER && l->batch_head[i] < 0) || l->role[i] == QD_CUDA_ELIDED) return QD_OK;
  const qd_node_t* n = &g->nodes[i];
  uint8_t pattern = l->role[i] == QD_CUDA_GROUP_END ? l->pattern[i] : QD_CUDA_PATTERN_NONE;
  const qd_node_t* lin = NULL;
  switch (pattern) {
    case QD_CUDA_PATTERN_LN_MODULATE:
      *out_has = true;
      return qd_ck_template_(t, "layernorm_modulate.cu", "qd_layernorm_modulate", "LN_MODULATE", 1, k);
    case QD_CUDA_PATTERN_NORM_ROPE:
    case QD_CUDA_PATTERN_NORM_CONCAT_ROPE:
      *out_has = true;
      return qd_ck_template_(t, "qk_norm_rope.cu", "qd_qk_norm_rope", "QKR_HEAD_DIM",
                             (int)n->attrs[QD_ROPE_HEAD_DIM].i, k);
    case QD_CUDA_PATTERN_LINEAR_GELU: lin = &g->nodes[g->values[n->inputs[0]].producer]; break;
    case QD_CUDA_PATTERN_GROUP_NORM_SILU:
      *out_has = true;
      QD_TRY(qd_ck_template_(t, "image_ops.cu", "qd_group_norm_stats", "GN_SILU", 1, k));
      k->function2 = "qd_group_norm_apply";
      return QD_OK;
    default: if (n->op == QD_OP_LINEAR) lin = n; break;
  }
  if (lin) {
    /* The GEMM is cuBLASLt's; an NF4 weight is dequantized into scratch by a kernel first. */
    int32_t w = lin->weights[QD_WEIGHT_SLOT_MAIN];
    if (w < 0 || weights[w].format != QD_WEIGHT_FORMAT_NF4) return QD_OK;
    *out_has = true;
    return qd_ck_template_(t, "nf4_dequant.cu", "qd_nf4_dequant", "NF4_DOUBLE_QUANT", weights[w].double_quant ? 1 : 0,
                           k);
  }
  switch (n->op) {
    case QD_OP_GATED_ADD:
      *out_has = true;
      return qd_ck_template_(t, "gated_residual.cu", "qd_gated_residual", NULL, 0, k);
    case QD_OP_SILU:
    case QD_OP_GELU:
    case QD_OP_GELU_TANH:
    case QD_OP_QUICK_GELU:
    case QD_OP_SCALE: {
      int op = n->op == QD_OP_SILU ? 1 : n->op == QD_OP_GELU ? 2 : n->op == QD_OP_GELU_TANH ? 3
               : n->op == QD_OP_QUICK_GELU ? 4 : 5;
      *out_has = true;
      return qd_ck_template_(t, "elementwise.cu", "qd_ew_unary", "EW_OP", op, k);
    }
    case QD_OP_ADD:
    case QD_OP_MUL:
      *out_has = true;
      return qd_ck_template_(t, "elementwise.cu", "qd_ew_binary", "EW_BINOP", n->op == QD_OP_ADD ? 0 : 1, k);
    case QD_OP_ATTENTION: {
      int64_t h = n->attrs[QD_ATTN_HEADS].i, d = g->values[n->inputs[0]].shape.dims[2] / h;
      bool causal = n->attrs[QD_ATTN_CAUSAL].i != 0, bias = n->input_count > 3;
      *out_has = true;
      /* An additive bias (T5's, bf16) or a head wider than 256 (the VAE's 512): the masked kernel. */
      if (bias || d > 256) {
        /* The masked kernel's own limits (attention_masked.cu's static assertions): said here, as the other
         * kernel's are, so that qdc lists the node as unsupported instead of failing to compile it. */
        if (d % 64 != 0 || d < 64 || d > 1024)
          return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "attention variant: head_dim is %lld; the masked kernel "
                        "takes multiples of 64 up to 1024", (long long)d);
        qd_kernel_define_t defs[7] = {{"HEAD_DIM", (int)d}, {"ATT_BIAS", bias ? 1 : 0}, {"ATT_CAUSAL", causal}};
        size_t count = 3;
        if (d > 256) {
          /* Wide heads split each row group over two warps and take 32-key tiles; the stages and row groups fit
           * the target's shared memory per block (the template's examples: 198 KiB on sm_90, 134 KiB on sm_80,
           * 99 KiB on sm_86/89 and for PTX, which may run on any of them). */
          bool sm90 = !t.ptx && t.cc >= 90, sm80 = !t.ptx && t.cc == 80;
          defs[count++] = (qd_kernel_define_t){"ATT_WARPS_D", 2};
          defs[count++] = (qd_kernel_define_t){"ATT_BLOCK_N", 32};
          defs[count++] = (qd_kernel_define_t){"ATT_WARPS_M", sm90 || sm80 ? 4 : 2};
          defs[count++] = (qd_kernel_define_t){"ATT_STAGES", sm90 ? 2 : 1};
        }
        QD_TRY(qd_ck_template_defs_(t, "attention_masked.cu", "qd_attention_masked", defs, count, k));
        size_t smem = qd_attention_masked_shared_bytes(&k->config);
        k->shared_bytes = smem > 48 * 1024 ? smem : 0;
        return QD_OK;
      }
      return qd_ck_attention_(t, (int)d, causal, false, k);
    }
    case QD_OP_EMBEDDING:
      *out_has = true;
      return qd_ck_template_(t, "text_ops.cu", "qd_embedding", NULL, 0, k);
    case QD_OP_ARANGE:
      *out_has = true;
      return qd_ck_template_(t, "text_ops.cu", "qd_arange", NULL, 0, k);
    case QD_OP_EOS_POOL:
      *out_has = true;
      return qd_ck_template_(t, "text_ops.cu", "qd_eos_pool", NULL, 0, k);
    case QD_OP_T5_RELATIVE_BIAS:
      *out_has = true;
      return qd_ck_template_(t, "text_ops.cu", "qd_t5_relative_bias", NULL, 0, k);
    case QD_OP_GROUP_NORM:
      /* qd_group_norm_stats, with qd_group_norm_apply from the same image; GN_SILU when a silu is fused. */
      *out_has = true;
      QD_TRY(qd_ck_template_(t, "image_ops.cu", "qd_group_norm_stats", "GN_SILU", 0, k));
      k->function2 = "qd_group_norm_apply";
      return QD_OK;
    case QD_OP_UPSAMPLE_NEAREST:
      *out_has = true;
      return qd_ck_template_(t, "image_ops.cu", "qd_upsample_nearest", NULL, 0, k);
    case QD_OP_AFFINE:
      *out_has = true;
      return qd_ck_template_(t, "image_ops.cu", "qd_affine", NULL, 0, k);
    case QD_OP_PERMUTE:
      *out_has = true;
      return qd_ck_template_(t, "image_ops.cu", "qd_permute", NULL, 0, k);
    case QD_OP_CONV2D: {
      /* Tiles from the H200 sweep of test_gpu_image_kernels (docs/performance.md): 32 pixels a warp instead of 64
       * ran every VAE convolution of 128 channels or more 20-25% faster; 16 output channels a warp ran the 3-channel
       * conv_out 2.7x faster. */
      int64_t cout = g->values[n->output].shape.dims[1];
      qd_kernel_define_t defs[4] = {{"CONV_K", (int)n->attrs[QD_CONV_KERNEL].i},
                                    {"CONV_STRIDE", (int)n->attrs[QD_CONV_STRIDE].i}};
      size_t count = 2;
      if (cout <= 16)
        defs[count++] = (qd_kernel_define_t){"CONV_WARP_M", 16};
      else
        defs[count++] = (qd_kernel_define_t){"CONV_WARP_N", 32};
      *out_has = true;
      return qd_ck_template_defs_(t, "conv2d.cu", "qd_conv2d", defs, count, k);
    }
    case QD_OP_TIMESTEP_EMBEDDING:
      *out_has = true;
      return qd_ck_template_(t, "small_ops.cu", "qd_timestep_embedding", NULL, 0, k);
    case QD_OP_ROPE_FREQS:
      *out_has = true;
      return qd_ck_template_(t, "small_ops.cu", "qd_rope_freqs", NULL, 0, k);
    case QD_OP_SLICE:
    case QD_OP_CONCAT:
      *out_has = true;
      return qd_ck_template_(t, "small_ops.cu", "qd_copy_rows", NULL, 0, k);
    case QD_OP_LAYER_NORM:
    case QD_OP_RMS_NORM:
      *out_has = true;
      return qd_ck_template_defs_(t, "layernorm_modulate.cu", "qd_layer_norm",
                                  (qd_kernel_define_t[]){{"LN_MODULATE", 0}, {"LN_RMS", n->op == QD_OP_RMS_NORM}}, 2, k);
    case QD_OP_ALIAS:
    case QD_OP_RESHAPE: return QD_OK; /* a view, or a device copy */
    default:
      /* The executor rejects the op too ("is not lowered"); saying so here lets qdc and qdrun --check know. */
      return QD_ERR(UNSUPPORTED, INTERNAL, "op '%s' is not lowered on the CUDA executor", qd_op_name(n->op));
  }
}

qd_status_t qd_cuda_kernel_compile(qd_allocator_t a, const qd_cuda_kernel_t* k, const char* nvrtc_arch,
                                   unsigned outputs, qd_nvrtc_output_t* out) {
  memset(out, 0, sizeof *out);
  char arch[16];
  if (nvrtc_arch) {
    snprintf(arch, sizeof arch, "%s", nvrtc_arch);
  } else if (strncmp(k->arch, "compute_", 8) == 0) {
    /* NVRTC takes the real architecture and emits PTX for its virtual one. */
    snprintf(arch, sizeof arch, "sm_%s", k->arch + 8);
    outputs = QD_NVRTC_OUTPUT_PTX;
  } else {
    snprintf(arch, sizeof arch, "%s", k->arch);
  }
  if (!k->attention) {
    qd_kernel_config_t config = k->config; /* the variant points into its configuration */
    qd_kernel_variant_t v;
    qd_kernel_config_variant(&config, k->function, &v);
    qd_kernel_binary_t bin;
    QD_TRY(qd_kernel_compile(a, &v, arch, outputs, &bin));
    *out = bin.image; /* the binary's other fields own nothing */
    return QD_OK;
  }
  qd_attention_defines_t d;
  QD_TRY(qd_attention_variant_defines(&k->attn, &d));
  const char* file = qd_attention_template_file(k->attn.kernel);
  const char* source = qd_kernel_source_find(file);
  if (!source) return QD_ERR(INTERNAL, INTERNAL, "attention template %s is not embedded", file);
  qd_kernel_headers_t headers;
  qd_kernel_headers_get(&headers);
  qd_nvrtc_compile_options_t co = {.source = source, .name = file, .arch = arch, .outputs = outputs,
                                   .options = d.options, .option_count = d.count, .header_names = headers.names,
                                   .headers = headers.texts, .header_count = headers.count};
  QD_TRY_CTX(qd_nvrtc_compile(a, &co, out), "compiling %s for %s", k->key, arch);
  bool found = (!out->cubin || qd_cubin_has_function(out->cubin, out->cubin_size, k->function)) &&
               (!out->ptx || qd_ptx_has_function(out->ptx, out->ptx_size + 1, k->function));
  if (!found) {
    qd_nvrtc_output_deinit(out);
    return QD_ERR(NOT_FOUND, KERNEL_FUNCTION_MISSING, "%s compiled for %s defines no kernel '%s'", k->key, arch,
                  k->function);
  }
  return QD_OK;
}

void qd_cuda_kernel_site_shape(const qd_graph_t* g, int32_t node, char* buf, size_t size) {
  const qd_node_t* n = &g->nodes[node];
  size_t used = 0;
  buf[0] = 0;
  for (int32_t v = -1; v < n->input_count && used < size; v++) {
    const qd_shape_t* sh = &g->values[v < 0 ? n->output : n->inputs[v]].shape;
    if (v >= 0) used += (size_t)snprintf(buf + used, size - used, "%c", v == 0 ? '<' : ',');
    for (int32_t d = 0; d < sh->rank && used < size; d++)
      used += (size_t)snprintf(buf + used, size - used, d ? "x%lld" : "%lld", (long long)sh->dims[d]);
  }
}

qd_status_t qd_cuda_kernel_rekey(qd_cuda_kernel_t* k) {
  qd_kernel_config_t config = k->config; /* the variant points into its configuration */
  qd_kernel_variant_t v;
  qd_kernel_config_variant(&config, k->function, &v);
  if (qd_kernel_variant_format(&v, k->key, sizeof k->key) >= sizeof k->key)
    return QD_ERR(INTERNAL, INTERNAL, "kernel key of %s:%s is longer than %d bytes", config.template_name,
                  k->function, QD_CUDA_KERNEL_KEY_MAX - 1);
  return qd_ck_seal_key_(k, config.template_name);
}

qd_status_t qd_cuda_node_kernel_tuned(const qd_graph_t* g, const qd_cuda_lowering_t* l, const qd_plan_weight_t* weights,
                                      qd_cuda_kernel_target_t t, const qd_tuning_t* tuning, int32_t i,
                                      qd_cuda_kernel_t* k, bool* out_has) {
  QD_TRY(qd_cuda_node_kernel(g, l, weights, t, i, k, out_has));
  if (!*out_has || !tuning || !tuning->kernel_count || k->attention || k->shared_bytes ||
      strcmp(tuning->arch, k->arch) != 0)
    return QD_OK;
  char shape[QD_TUNING_SHAPE_MAX];
  qd_cuda_kernel_site_shape(g, i, shape, sizeof shape);
  const qd_tuning_kernel_t* rec = qd_tuning_find_kernel(tuning, k->key, shape);
  if (!rec) return QD_OK;
  for (int32_t d = 0; d < rec->define_count; d++) {
    /* Only tunables: the rest decide what the kernel computes. */
    const qd_kernel_param_t* p = qd_kernel_params_find(&k->config.params, rec->defines[d].name);
    if (!p || p->kind != QD_KERNEL_PARAM_TUNABLE)
      return QD_ERR(BAD_INPUT, KERNEL_DEFINE_INVALID, "the tuning record of %s at %s sets %s, which is not a tunable "
                    "of %s", k->key, shape, rec->defines[d].name, k->config.template_name);
    QD_TRY_CTX(qd_kernel_config_set(&k->config, rec->defines[d].name, rec->defines[d].value),
               "the tuning record of %s at %s", k->key, shape);
  }
  return qd_cuda_kernel_rekey(k);
}

/* --- lists -------------------------------------------------------------------------------------------------- */

void qd_cuda_kernel_list_init(qd_cuda_kernel_list_t* list, qd_cuda_kernel_target_t target, qd_allocator_t a) {
  memset(list, 0, sizeof *list);
  list->allocator = a;
  list->target = target;
}

void qd_cuda_kernel_list_deinit(qd_cuda_kernel_list_t* list) {
  if (!list) return;
  qd_free(list->allocator, list->items, (size_t)list->capacity * sizeof *list->items);
  memset(list, 0, sizeof *list);
}

const qd_cuda_kernel_t* qd_cuda_kernel_list_find(const qd_cuda_kernel_list_t* list, const char* key) {
  for (int32_t i = 0; i < list->count; i++)
    if (strcmp(list->items[i].key, key) == 0) return &list->items[i];
  return NULL;
}

qd_status_t qd_cuda_kernel_list_add(qd_cuda_kernel_list_t* list, const qd_graph_t* g, const qd_cuda_lowering_t* l,
                                    const qd_plan_weight_t* weights) {
  qd_cuda_kernel_t k;
  for (int32_t i = 0; i < g->node_count; i++) {
    bool has;
    qd_status_t s = qd_cuda_node_kernel_tuned(g, l, weights, list->target, list->tuning, i, &k, &has);
    if (s && qd_status_code(s) == QD_CODE_OUT_OF_MEMORY) return s;
    if (s) {
      if (list->unsupported++ == 0) {
        char msg[400];
        qd_status_format(s, msg, sizeof msg);
        snprintf(list->first_unsupported, sizeof list->first_unsupported, "%s: %s", g->nodes[i].origin, msg);
      }
      qd_status_free(s);
      continue;
    }
    if (!has || qd_cuda_kernel_list_find(list, k.key)) continue;
    QD_TRY(qd_cuda_kernel_list_push(list, &k));
  }
  return QD_OK;
}

qd_status_t qd_cuda_kernel_list_push(qd_cuda_kernel_list_t* list, const qd_cuda_kernel_t* k) {
  if (list->count == list->capacity) {
    int32_t cap = list->capacity ? list->capacity * 2 : 16;
    QD_TRY(qd_realloc(list->allocator, list->items, (size_t)list->capacity * sizeof *list->items,
                      (size_t)cap * sizeof *list->items, (void**)&list->items));
    list->capacity = cap;
  }
  list->items[list->count++] = *k;
  return QD_OK;
}

qd_status_t qd_cuda_kernel_list_add_program(qd_cuda_kernel_list_t* list, const qd_graph_t* g,
                                            const qd_plan_weight_t* weights) {
  for (int gelu = 1; gelu >= 0; gelu--) {
    qd_cuda_lowering_t* l;
    QD_TRY(qd_cuda_lowering_create(g, gelu ? QD_LOWER_DEFAULT : QD_LOWER_DEFAULT & ~QD_LOWER_GELU_EPILOGUE,
                                   list->allocator, &l));
    /* The two lowerings share almost every node: count a node the kernels lack once, in the default lowering. */
    int32_t unsupported = list->unsupported;
    qd_status_t s = qd_cuda_kernel_list_add(list, g, l, weights);
    if (!gelu) list->unsupported = unsupported;
    qd_cuda_lowering_destroy(l);
    QD_TRY(s);
  }
  return QD_OK;
}

/* --- where the images come from ------------------------------------------------------------------------------ */

const char* qd_cuda_kernel_source_name(qd_cuda_kernel_source_t s) {
  switch (s) {
    case QD_CUDA_KERNELS_CUBIN: return "cubin";
    case QD_CUDA_KERNELS_PTX: return "ptx";
    case QD_CUDA_KERNELS_NVRTC: return "nvrtc";
    default: return "none";
  }
}

void qd_cuda_kernel_choose(const qd_plan_kernel_targets_t* t, int cc, int driver, const char* nvrtc_missing,
                           qd_cuda_kernel_choice_t* out) {
  memset(out, 0, sizeof *out);
  char list[64], have[32], need[32];
  qd_plan_kernel_targets_format(t, list, sizeof list);
  qd_cuda_version_format(driver, have, sizeof have);
  if (cc < 80) {
    snprintf(out->why, sizeof out->why, "this GPU is sm_%d; qd's kernels need sm_80 or newer (bf16 tensor cores)", cc);
    return;
  }
  /* Why each plan source does not fit, to say in the end what would have. */
  char no_cubin[256] = "", no_ptx[256] = "";
  if (!t->present) {
    snprintf(no_cubin, sizeof no_cubin, "this plan carries no compiled kernels (it was compiled with --target none "
             "or without NVRTC)");
  } else if (qd_plan_kernel_targets_has(t, cc)) {
    if (driver >= t->cubin_min_driver) {
      out->source = QD_CUDA_KERNELS_CUBIN;
      out->target = (qd_cuda_kernel_target_t){cc, false};
      snprintf(out->why, sizeof out->why, "sm_%d cubins from the plan", cc);
      return;
    }
    snprintf(no_cubin, sizeof no_cubin, "its sm_%d cubins were built with NVRTC %d.%d and need a driver for CUDA %s "
             "or newer; this driver supports CUDA %s", cc, t->nvrtc_major, t->nvrtc_minor,
             qd_cuda_version_format(t->cubin_min_driver, need, sizeof need), have);
  } else {
    snprintf(no_cubin, sizeof no_cubin, "this plan was built for %s; this GPU is sm_%d", list, cc);
  }
  if (t->present && t->ptx_cc && t->ptx_cc <= cc) {
    if (driver >= t->ptx_min_driver) {
      out->source = QD_CUDA_KERNELS_PTX;
      out->target = (qd_cuda_kernel_target_t){t->ptx_cc, true};
      snprintf(out->why, sizeof out->why, "%s: the driver JIT-compiles the plan's compute_%d PTX (slower to start%s; "
               "recompile with --target sm_%d for cubins)", no_cubin, t->ptx_cc,
               cc == 90 ? ", and without the Hopper attention kernel" : "", cc);
      return;
    }
    snprintf(no_ptx, sizeof no_ptx, "its compute_%d PTX needs a driver for CUDA %s or newer (this one: %s); ",
             t->ptx_cc, qd_cuda_version_format(t->ptx_min_driver, need, sizeof need), have);
  } else if (t->present && t->ptx_cc) {
    snprintf(no_ptx, sizeof no_ptx, "its compute_%d PTX needs sm_%d or newer; ", t->ptx_cc, t->ptx_cc);
  }
  if (!nvrtc_missing) {
    out->source = QD_CUDA_KERNELS_NVRTC;
    out->target = (qd_cuda_kernel_target_t){cc, false};
    snprintf(out->why, sizeof out->why, "%s: compiling the kernels with NVRTC at startup (%srecompile with --target "
             "sm_%d to skip this)", no_cubin, no_ptx, cc);
    return;
  }
  /* Cubins for this GPU that the driver is too old for: a newer driver is the fix, not a recompile. */
  char advice[96];
  if (t->present && qd_plan_kernel_targets_has(t, cc))
    snprintf(advice, sizeof advice, "update the driver to CUDA %s or newer",
             qd_cuda_version_format(t->cubin_min_driver, need, sizeof need));
  else
    snprintf(advice, sizeof advice, "recompile with --target sm_%d", cc);
  snprintf(out->why, sizeof out->why, "%s: %s (%sNVRTC, which could compile the kernels here, is not available: %s)",
           no_cubin, advice, no_ptx, nvrtc_missing);
}
