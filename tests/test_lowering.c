/* The CUDA executor's lowering and hoisting decisions, checked without a GPU on the real FLUX.1-dev program:
 *   views: which slices and aliases read their input's bytes in place, and that no view outlives its bytes in the
 *          memory plan (every read of a view falls inside its root's lifetime);
 *   batches: which linears run as one batched GEMM (attention's q, k, v), their outputs in the head's bytes;
 *   hoisting: what runs once per image for all steps (runtime/cuda/hoist.h): the embedders and every adaLN
 *          modulation linear, 27.6% of the parameters (design brief 3.6), the 344 chunks the step reads, the text
 *          stream left in the step although block 0's first half does not depend on the latents (per-token tensors
 *          are not batched over steps), and the programs that cannot be hoisted with the reason. */
#include <stdlib.h>
#include <string.h>

#include "compiler/memory_plan.h"
#include "ir/graph_desc.h"
#include "qd_test.h"
#include "runtime/cuda/hoist.h"
#include "runtime/cuda/lowering.h"

static qd_graph_t* flux_graph(const char* config, int64_t batch, int64_t img, int64_t txt) {
  char path[512];
  snprintf(path, sizeof path, "%s/models/flux-transformer.json", getenv("QD_SOURCE_ROOT"));
  qd_graph_desc_t* d;
  QD_ASSERT_OK(qd_graph_desc_load_file(path, qd_allocator_system(), &d));
  qd_size_binding_t b[3] = {{"batch", batch}, {"img_tokens", img}, {"txt_tokens", txt}};
  qd_graph_t* g;
  QD_ASSERT_OK(qd_graph_desc_instantiate(d, config, b, 3, qd_allocator_system(), &g));
  qd_graph_desc_destroy(d);
  return g;
}

static int32_t value(const qd_graph_t* g, const char* name) {
  int32_t v = qd_graph_find_value(g, name);
  ck_assert_msg(v >= 0, "no value '%s'", name);
  return v;
}

/* Every node's reads of a value through views land inside the lifetime of the bytes they read. */
static void check_view_lifetimes(const qd_graph_t* g, const qd_cuda_lowering_t* l) {
  for (int32_t i = 0; i < g->node_count; i++)
    for (int32_t k = 0; k < g->nodes[i].input_count; k++) {
      int32_t root = qd_cuda_view_root(l, g->nodes[i].inputs[k], NULL);
      ck_assert_msg(l->last_use[root] >= i, "%s reads '%s' after its bytes ('%s') are dead", g->nodes[i].origin,
                    g->values[g->nodes[i].inputs[k]].name, g->values[root].name);
    }
  for (int32_t o = 0; o < g->output_count; o++)
    ck_assert_int_eq(l->last_use[qd_cuda_view_root(l, g->outputs[o].value, NULL)], g->node_count);
}

START_TEST(slices_with_contiguous_bytes_are_views) {
  qd_graph_t* g = flux_graph("dev", 1, 1024, 512);
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &l));
  /* adaLN chunks of a batch-1 step: bytes [dim * k, dim * (k + 1)) of the modulation row */
  int32_t gate = value(g, "transformer_blocks.3:gate_msa"), mod = value(g, "transformer_blocks.3:mod");
  uint64_t offset, mod_offset;
  /* (the modulation row itself is in a batch with the text stream's: its bytes may be in the batch head's) */
  int32_t mod_root = qd_cuda_view_root(l, mod, &mod_offset);
  ck_assert_int_eq(qd_cuda_view_root(l, gate, &offset), mod_root);
  ck_assert_uint_eq(offset, mod_offset + 2 * 3072 * 2);
  ck_assert_uint_eq(qd_cuda_value_bytes(l, g, gate), 0);
  ck_assert_uint_gt(qd_cuda_value_bytes(l, g, mod_root), 0);
  /* the image half of the joint attention's output */
  int32_t img_att = value(g, "transformer_blocks.0:img_att");
  ck_assert_int_eq(qd_cuda_view_root(l, img_att, &offset), value(g, "transformer_blocks.0:att"));
  ck_assert_uint_eq(offset, 512 * 3072 * 2);
  /* without guidance the alias of the timestep embedding is a view too */
  qd_graph_t* s = flux_graph("schnell", 1, 1024, 256);
  qd_cuda_lowering_t* sl;
  QD_ASSERT_OK(qd_cuda_lowering_create(s, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &sl));
  ck_assert_int_eq(qd_cuda_view_root(sl, value(s, "tg_emb"), NULL), value(s, "t_emb"));
  check_view_lifetimes(g, l);
  check_view_lifetimes(s, sl);
  qd_memory_plan_t* p;
  qd_memory_lifetimes_t lt = {l->last_use, l->first_def};
  QD_ASSERT_OK(qd_memory_plan_create_lowered(g, l, qd_allocator_system(), &p));
  QD_ASSERT_OK(qd_memory_plan_check(p, g, &lt));
  ck_assert_uint_eq(p->offsets[gate], UINT64_MAX);
  qd_memory_plan_destroy(p);
  qd_cuda_lowering_destroy(sl);
  qd_graph_destroy(s);
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
}
END_TEST

START_TEST(batched_slices_still_copy) {
  /* At batch 2 a chunk of [2, 6 * dim] is two runs of bytes: a copy, as is the image half of [2, S, C]. */
  qd_graph_t* g = flux_graph("dev", 2, 1024, 512);
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &l));
  ck_assert_int_eq(l->view_of[value(g, "transformer_blocks.3:gate_msa")], -1);
  ck_assert_int_eq(l->view_of[value(g, "transformer_blocks.0:img_att")], -1);
  check_view_lifetimes(g, l);
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
}
END_TEST

/* Each in-place part's producer writes inside its concatenation's lifetime, and the memory plan keeps the
 * concatenation's bytes from everything alive at the same time. */
static void check_in_place(const qd_graph_t* g, const qd_cuda_lowering_t* l) {
  for (int32_t v = 0; v < g->value_count; v++) {
    if (!l->in_place[v]) continue;
    int32_t root = l->view_of[v];
    ck_assert_int_le(l->first_def[root], g->values[v].producer);
    ck_assert_int_ge(l->last_use[root], l->last_use[v]);
    ck_assert_int_eq(l->role[g->values[root].producer], QD_CUDA_ELIDED);
  }
  qd_memory_plan_t* p;
  qd_memory_lifetimes_t lt = {l->last_use, l->first_def};
  QD_ASSERT_OK(qd_memory_plan_create_lowered(g, l, qd_allocator_system(), &p));
  QD_ASSERT_OK(qd_memory_plan_check(p, g, &lt));
  qd_memory_plan_destroy(p);
}

/* Concatenations: made in place by their parts' producers where those can write into them (the single blocks'
 * [attention | MLP] on the last axis, rows 15360 apart; the joint attention's values and the single blocks' input
 * as consecutive runs at batch 1), else a linear over the parts when a linear reads them, else a copy. */
START_TEST(concatenations_in_place_or_in_parts) {
  for (int64_t batch = 1; batch <= 2; batch++) {
    qd_graph_t* g = flux_graph("dev", batch, 1024, 512);
    int32_t cat = value(g, "single_transformer_blocks.7:cat"), o = value(g, "single_transformer_blocks.7:o");
    int32_t att = value(g, "single_transformer_blocks.7:att"), mlp = value(g, "single_transformer_blocks.7:mlp_a");
    int32_t jv = value(g, "transformer_blocks.0:jv"), v = value(g, "transformer_blocks.0:v");
    int32_t lin = g->values[o].producer, concat = g->values[cat].producer, vcat = g->values[jv].producer;
    static const unsigned flags[3] = {QD_LOWER_DEFAULT, QD_LOWER_DEFAULT & ~QD_LOWER_CONCAT_IN_PLACE,
                                      QD_LOWER_GELU_EPILOGUE};
    for (int f = 0; f < 3; f++) {
      qd_cuda_lowering_t* l;
      QD_ASSERT_OK(qd_cuda_lowering_create(g, flags[f], qd_allocator_system(), &l));
      if (f == 0) {
        ck_assert_int_eq(l->role[concat], QD_CUDA_ELIDED);
        ck_assert(l->in_place[att] && l->in_place[mlp]);
        ck_assert_int_eq(l->view_of[att], cat);
        ck_assert_int_eq(l->row_stride[att], 15360);
        ck_assert_uint_eq(l->view_offset[mlp], 3072 * 2);
        ck_assert_int_eq(l->first_def[cat], g->values[mlp].producer); /* the MLP comes before the attention */
        ck_assert_uint_gt(qd_cuda_value_bytes(l, g, cat), 0);
        ck_assert_uint_eq(qd_cuda_value_bytes(l, g, att), 0);
        ck_assert_int_eq(l->role[lin], QD_CUDA_SINGLE);
        /* [text; image] values: consecutive runs at batch 1; at batch 2 rows of two runs each, so a copy. */
        ck_assert_int_eq(l->role[vcat], batch == 1 ? QD_CUDA_ELIDED : QD_CUDA_SINGLE);
        ck_assert_int_eq(l->in_place[v], batch == 1);
        if (batch == 1) ck_assert_int_eq(l->row_stride[v], 0);
        if (batch == 1) ck_assert_uint_eq(l->view_offset[v], 512 * 3072 * 2);
      } else {
        ck_assert_int_eq(l->role[lin], f == 1 ? QD_CUDA_GROUP_END : QD_CUDA_SINGLE);
        ck_assert_int_eq(l->role[concat], f == 1 ? QD_CUDA_MEMBER : QD_CUDA_SINGLE);
        ck_assert_int_eq(qd_cuda_value_bytes(l, g, cat) == 0, f == 1);
        if (f == 1) ck_assert_int_eq(l->pattern[lin], QD_CUDA_PATTERN_CONCAT_LINEAR);
        for (int32_t k = 0; k < 2; k++)
          ck_assert_int_ge(l->last_use[g->nodes[concat].inputs[k]], f == 1 ? lin : concat);
        ck_assert(!l->in_place[att]);
      }
      check_view_lifetimes(g, l);
      check_in_place(g, l);
      /* The conditioning is hoisted as before: no in-place concatenation is split. */
      qd_cuda_hoist_t* h;
      QD_ASSERT_OK(qd_cuda_hoist_plan(g, l, "hidden_states", "timestep", qd_allocator_system(), &h));
      ck_assert_msg(h->hoisted_count > 0, "not hoisted: %s", h->why_not);
      qd_cuda_hoist_destroy(h);
      qd_cuda_lowering_destroy(l);
    }
    qd_graph_destroy(g);
  }
}
END_TEST

static bool made_by_hoisted(const qd_cuda_hoist_t* h, const qd_graph_t* g, const char* name) {
  return qd_cuda_hoist_made(h, g, value(g, name)) != 0;
}

START_TEST(flux_conditioning_is_hoisted) {
  for (int64_t batch = 1; batch <= 2; batch++) {
    qd_graph_t* g = flux_graph("dev", batch, 4096, 512);
    qd_cuda_lowering_t* l;
    QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &l));
    qd_cuda_hoist_t* h;
    QD_ASSERT_OK(qd_cuda_hoist_plan(g, l, "hidden_states", "timestep", qd_allocator_system(), &h));
    ck_assert_msg(h->hoisted_count > 0, "not hoisted: %s", h->why_not);
    ck_assert_int_eq(h->batch, batch);
    /* the embedders and every modulation, including what feeds the timestep's (pooled text, guidance) */
    static const char* const hoisted[] = {"t_emb", "g_emb", "p_emb", "temb_act", "transformer_blocks.0:mod",
                                          "transformer_blocks.18:cmod", "single_transformer_blocks.37:mod",
                                          "out_mod", "transformer_blocks.5:c_gate_mlp"};
    for (size_t i = 0; i < sizeof hoisted / sizeof hoisted[0]; i++)
      ck_assert_msg(made_by_hoisted(h, g, hoisted[i]), "'%s' is not hoisted", hoisted[i]);
    /* per image but not per step, or the state: stays in the step */
    static const char* const kept[] = {"txt0", "rope", "img0", "transformer_blocks.0:img_m", "transformer_blocks.0:cq",
                                       "img_s"};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
      ck_assert_msg(!made_by_hoisted(h, g, kept[i]), "'%s' is hoisted", kept[i]);
    /* The weights read once per image: 27.6% of the parameters. */
    uint64_t all = 0, once = 0;
    for (int32_t w = 0; w < g->weight_count; w++) all += (uint64_t)qd_shape_numel(&g->weights[w].shape);
    for (int32_t i = 0; i < g->node_count; i++)
      for (int32_t k = 0; h->hoisted[i] && k < QD_NODE_MAX_WEIGHTS; k++)
        if (g->nodes[i].weights[k] >= 0) once += (uint64_t)qd_shape_numel(&g->weights[g->nodes[i].weights[k]].shape);
    ck_assert_msg(once > all * 0.274 && once < all * 0.278, "%.4f of the parameters hoisted", (double)once / all);
    /* The step reads 12 chunks per double block, 3 per single block and 2 of the output norm, dim wide each. */
    ck_assert_int_eq(h->boundary_count, 19 * 12 + 38 * 3 + 2);
    ck_assert_uint_eq(h->block_bytes, (uint64_t)(19 * 12 + 38 * 3 + 2) * batch * 3072 * 2);
    /* What the conditioning program reads: the step input and what feeds the timestep embedding's neighbours. */
    for (int32_t i = 0; i < g->input_count; i++) {
      const char* name = g->values[g->inputs[i]].name;
      bool want = strcmp(name, "timestep") == 0 || strcmp(name, "guidance") == 0 ||
                  strcmp(name, "pooled_projections") == 0;
      ck_assert_msg(h->input_read[i] == want, "input '%s' read by hoisted nodes: %d", name, h->input_read[i]);
    }
    int32_t v = value(g, "single_transformer_blocks.0:gate");
    ck_assert_int_ge(h->block_offset[v], 0);
    ck_assert_int_eq(h->block_offset[v] % 256, 0);
    ck_assert_int_eq(h->block_offset[value(g, "single_transformer_blocks.0:mod")], -1);
    qd_cuda_hoist_destroy(h);
    qd_cuda_lowering_destroy(l);
    qd_graph_destroy(g);
  }
}
END_TEST

START_TEST(unhoistable_programs_say_why) {
  qd_graph_t* g = flux_graph("dev", 1, 256, 512);
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &l));
  static const struct {
    const char *state, *step, *why;
  } cases[] = {
      {"latents", "timestep", "no input 'latents'"},
      {"hidden_states", NULL, "no input '(none)'"},
      /* position ids have no batch axis */
      {"hidden_states", "img_ids", "no leading batch axis"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    qd_cuda_hoist_t* h;
    QD_ASSERT_OK(qd_cuda_hoist_plan(g, l, cases[i].state, cases[i].step, qd_allocator_system(), &h));
    ck_assert_int_eq(h->hoisted_count, 0);
    ck_assert_int_eq(h->boundary_count, 0);
    ck_assert_msg(strstr(h->why_not, cases[i].why), "case %zu: '%s'", i, h->why_not);
    for (int32_t v = 0; v < g->value_count; v++) ck_assert_int_eq(h->block_offset[v], -1);
    for (int32_t k = 0; k < g->input_count; k++) ck_assert_int_eq(h->input_read[k], 0);
    qd_cuda_hoist_destroy(h);
  }
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
}
END_TEST

/* Linears reading one input with one output width run as one batched GEMM (lowering.h): attention's q, k and v in
 * every block (image and text streams of the double blocks, the single blocks), not the adaLN modulation linears
 * that all read one embedding from blocks apart; the outputs lie one after another in the head's bytes, and live
 * as long as any is read. */
START_TEST(linears_sharing_an_input_are_batched) {
  qd_graph_t* g = flux_graph("dev", 1, 1024, 512);
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT | QD_LOWER_BATCH_LINEARS, qd_allocator_system(), &l));
  int32_t threes = 0, twos = 0;
  for (int32_t i = 0; i < g->node_count; i++) {
    int32_t members[QD_CUDA_MAX_BATCH];
    int32_t count = qd_cuda_batch_members(l, i, members);
    if (count == 0) continue;
    threes += count == 3;
    twos += count == 2;
    ck_assert_int_eq(members[0], i);
    const qd_value_t* out = &g->values[g->nodes[i].output];
    uint64_t bytes = (uint64_t)qd_shape_numel(&out->shape) * 2;
    ck_assert_uint_eq(qd_cuda_value_bytes(l, g, g->nodes[i].output), bytes * (uint64_t)count);
    for (int32_t j = 1; j < count; j++) {
      const qd_node_t* m = &g->nodes[members[j]];
      ck_assert_int_eq(m->op, QD_OP_LINEAR);
      ck_assert_int_eq(m->inputs[0], g->nodes[i].inputs[0]);
      ck_assert_int_eq(l->role[members[j]], QD_CUDA_MEMBER);
      uint64_t offset;
      ck_assert_int_eq(qd_cuda_view_root(l, m->output, &offset), g->nodes[i].output);
      ck_assert_uint_eq(offset, bytes * (uint64_t)j);
    }
  }
  /* q, k, v: single blocks; in double blocks the values are written in place into the joint attention's [text;
   * image] values, so q and k are batched there (every block's adaLN reads the same embedding, but not side by
   * side: no batch) */
  ck_assert_int_eq(threes, 38);
  ck_assert_int_eq(twos, 19 * 2);
  check_view_lifetimes(g, l);
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
}
END_TEST

static Suite* lowering_suite(void) {
  Suite* s = suite_create("lowering");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, slices_with_contiguous_bytes_are_views);
  tcase_add_test(tc, linears_sharing_an_input_are_batched);
  tcase_add_test(tc, batched_slices_still_copy);
  tcase_add_test(tc, concatenations_in_place_or_in_parts);
  tcase_add_test(tc, flux_conditioning_is_hoisted);
  tcase_add_test(tc, unhoistable_programs_say_why);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(lowering_suite)
