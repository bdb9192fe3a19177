/* Test helper: the FLUX VAE's weights under the original (LDM) names, as BFL's ae.safetensors and ComfyUI store
 * them, written from a diffusers-named file. Header-only (static functions) for the tests that need such a file:
 * tests/test_golden_encoders.c (the VAE's "ldm" and "comfyui" layouts) and tests/test_compile.c (a ComfyUI
 * all-in-one checkpoint). */
#ifndef QD_TESTS_VAE_LDM_NAMES_H
#define QD_TESTS_VAE_LDM_NAMES_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "qd/safetensors.h"
#include "qd/safetensors_writer.h"
#include "qd_test.h"

/* diffusers' AutoencoderKL name -> the original (LDM) name, as BFL's ae.safetensors and ComfyUI store the VAE: up
 * blocks counted from the bottom, the mid block's parts renamed. Written out here independently of the graph's
 * layout rules, which the test checks. */
static inline void ldm_name(const char* name, const char* prefix, char* out, size_t size) {
  static const char* const fixed[][2] = {
      {"decoder.conv_norm_out.", "decoder.norm_out."},
      {"decoder.mid_block.attentions.0.group_norm.", "decoder.mid.attn_1.norm."},
      {"decoder.mid_block.attentions.0.to_q.", "decoder.mid.attn_1.q."},
      {"decoder.mid_block.attentions.0.to_k.", "decoder.mid.attn_1.k."},
      {"decoder.mid_block.attentions.0.to_v.", "decoder.mid.attn_1.v."},
      {"decoder.mid_block.attentions.0.to_out.0.", "decoder.mid.attn_1.proj_out."},
      {"decoder.mid_block.resnets.0.", "decoder.mid.block_1."},
      {"decoder.mid_block.resnets.1.", "decoder.mid.block_2."},
  };
  for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
    if (strncmp(name, fixed[k][0], strlen(fixed[k][0])) == 0) {
      snprintf(out, size, "%s%s%s", prefix, fixed[k][1], name + strlen(fixed[k][0]));
      return;
    }
  int block, resnet, used = 0;
  if (sscanf(name, "decoder.up_blocks.%d.resnets.%d.%n", &block, &resnet, &used) == 2 && used > 0) {
    const char* rest = name + used;
    bool shortcut = strncmp(rest, "conv_shortcut.", 14) == 0;
    snprintf(out, size, "%sdecoder.up.%d.block.%d.%s%s", prefix, 3 - block, resnet, shortcut ? "nin_shortcut." : "",
             shortcut ? rest + 14 : rest);
    return;
  }
  if (sscanf(name, "decoder.up_blocks.%d.upsamplers.0.conv.%n", &block, &used) == 1 && used > 0) {
    snprintf(out, size, "%sdecoder.up.%d.upsample.conv.%s", prefix, 3 - block, name + used);
    return;
  }
  snprintf(out, size, "%s%s", prefix, name);
}

/* The tiny VAE's weights under LDM names (with `prefix` in front), its attention projections stored as the 1x1
 * convolutions LDM uses ([C, C] -> [C, C, 1, 1]). */
/* Adds the tensors of the diffusers-named VAE file `src` to writer `w` (the source must stay open until the writer
 * finishes). */
static inline void add_ldm_vae(qd_safetensors_writer_t* w, const qd_safetensors_t* src, const char* prefix) {
  for (size_t i = 0; i < qd_safetensors_tensor_count(src); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(src, i);
    char name[512];
    ldm_name(t->name, prefix, name, sizeof name);
    uint64_t shape[QD_MAX_RANK] = {0};
    memcpy(shape, t->shape, sizeof shape);
    int rank = t->rank;
    if (strstr(name, ".attn_1.") && !strstr(name, ".norm.") && strstr(name, ".weight") && rank == 2) {
      shape[2] = shape[3] = 1;
      rank = 4;
    }
    QD_ASSERT_OK(qd_safetensors_writer_add(w, name, t->dtype, rank, shape, t->data));
  }
}

static inline void write_ldm_vae(const char* src_path, const char* dst_path, const char* prefix) {
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* src;
  QD_ASSERT_OK(qd_safetensors_open(src_path, a, &src));
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(dst_path, a, &w));
  add_ldm_vae(w, src, prefix);
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  qd_safetensors_close(src);
}


#endif
