/* Streamed weights' planning (runtime/cuda/weight_stream.c): block keys, groups in launch order, merging of
 * groups whose launches overlap, the copies (runs) and the address of every byte of every streamed weight, and
 * what the keep budget leaves on the device. No GPU: the planner only decides. */
#include <stdio.h>
#include <string.h>

#include "qd_test.h"
#include "runtime/cuda/weight_stream.h"

START_TEST(block_keys) {
  static const struct {
    const char *name, *key;
  } cases[] = {
      {"transformer_blocks.12.attn.to_q.weight", "transformer_blocks.12"},
      {"single_transformer_blocks.0.proj_out.bias", "single_transformer_blocks.0"},
      {"encoder.block.3.layer.0.SelfAttention.q.weight", "encoder.block.3"},
      {"text_model.encoder.layers.11.mlp.fc1.weight", "text_model.encoder.layers.11"},
      {"x_embedder.ff.net.0.proj.weight", "x_embedder.ff.net.0"},
      {"shared.weight", ""},
      {"0.weight", ""},         /* a leading number names no block */
      {"a.12b.weight", ""},     /* not all digits */
      {"proj_out.weight", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char key[64];
    bool has = qd_weight_block_key(cases[i].name, key, sizeof key);
    ck_assert_msg(has == (cases[i].key[0] != 0), "%s", cases[i].name);
    ck_assert_str_eq(key, cases[i].key);
  }
  char small[4];
  ck_assert(!qd_weight_block_key("blocks.1.w", small, sizeof small)); /* does not fit: no key, empty */
  ck_assert_str_eq(small, "");
}
END_TEST

/* A weight table laid out as the compiler writes it: in order, each piece 256-byte aligned. */
typedef struct table {
  qd_plan_weight_t w[16];
  int32_t n;
  uint64_t end;
} table_t;

static void add(table_t* t, const char* name, uint64_t data, uint64_t absmax) {
  qd_plan_weight_t* w = &t->w[t->n++];
  memset(w, 0, sizeof *w);
  w->name = name;
  w->format = absmax ? QD_WEIGHT_FORMAT_NF4 : QD_WEIGHT_FORMAT_BF16;
  w->data = (qd_plan_range_t){t->end, data};
  t->end = (t->end + data + 255) / 256 * 256;
  if (absmax) {
    w->absmax = (qd_plan_range_t){t->end, absmax};
    t->end = (t->end + absmax + 255) / 256 * 256;
  }
}

static table_t flux_like(void) {
  table_t t = {.n = 0};
  add(&t, "x_embedder.weight", 1000, 0);     /* 0: no block */
  add(&t, "blocks.0.mod.weight", 4096, 64);  /* 1: read by no launch (the conditioning's) */
  add(&t, "blocks.0.qkv.weight", 8192, 128); /* 2 */
  add(&t, "blocks.0.qkv.bias", 300, 0);      /* 3 */
  add(&t, "blocks.0.out.weight", 2048, 0);   /* 4 */
  add(&t, "blocks.1.qkv.weight", 8192, 128); /* 5 */
  add(&t, "blocks.1.out.weight", 2048, 0);   /* 6 */
  add(&t, "blocks.2.qkv.weight", 4096, 0);   /* 7: its launches overlap block 1's */
  add(&t, "blocks.3.qkv.weight", 512, 0);    /* 8 */
  add(&t, "blocks.4.qkv.weight", 512, 0);    /* 9: never read */
  add(&t, "proj_out.weight", 700, 0);        /* 10: no block */
  return t;
}

static const int32_t first_use[] = {0, -1, 2, 3, 5, 6, 8, 7, 12, -1, 13};
static const int32_t last_use[] = {0, -1, 2, 3, 5, 6, 10, 9, 12, -1, 13};

/* Every byte of every streamed weight lands inside a run of its group, at the run's offset, inside the slot. */
static void check_addresses(const table_t* t, const qd_weight_stream_t* s) {
  for (int32_t w = 0; w < t->n; w++) {
    if (s->group_of[w] < 0) continue;
    const qd_weight_group_t* g = &s->groups[s->group_of[w]];
    qd_plan_range_t span = qd_weight_span(&t->w[w]);
    int64_t dst = (int64_t)span.offset + s->shift[w];
    ck_assert_int_eq(dst % 256, 0);
    ck_assert_uint_le((uint64_t)dst + span.bytes, g->bytes);
    ck_assert_uint_le(g->bytes, s->slot_bytes);
    bool inside = false;
    for (int32_t r = g->run_first; r < g->run_first + g->run_count; r++) {
      const qd_weight_run_t* run = &s->runs[r];
      if (span.offset >= run->src && span.offset + span.bytes <= run->src + run->bytes) {
        inside = true;
        ck_assert_int_eq(dst, (int64_t)(run->dst + (span.offset - run->src)));
      }
    }
    ck_assert_msg(inside, "weight %s is in no run of its group", t->w[w].name);
  }
}

START_TEST(groups_in_launch_order_merged_where_they_overlap) {
  table_t t = flux_like();
  qd_weight_stream_t* s;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, false, qd_allocator_system(), &s));
  /* blocks.0; blocks.1 + blocks.2 (their launches overlap); blocks.3. Unread weights and weights of no block are
   * not streamed. */
  ck_assert_int_eq(s->group_count, 3);
  int32_t want[] = {-1, -1, 0, 0, 0, 1, 1, 1, 2, -1, -1};
  for (int32_t w = 0; w < t.n; w++) ck_assert_msg(s->group_of[w] == want[w], "%s: group %d", t.w[w].name, s->group_of[w]);
  ck_assert_int_eq(s->groups[0].first_launch, 2);
  ck_assert_int_eq(s->groups[0].last_launch, 5);
  ck_assert_int_eq(s->groups[1].first_launch, 6);
  ck_assert_int_eq(s->groups[1].last_launch, 10);
  ck_assert_int_eq(s->groups[2].first_launch, 12);
  for (int32_t g = 0; g + 1 < s->group_count; g++)
    ck_assert_int_lt(s->groups[g].last_launch, s->groups[g + 1].first_launch);
  /* Block 0's three weights are neighbours in the section: one copy, starting after the unread one. */
  ck_assert_int_eq(s->groups[0].run_count, 1);
  ck_assert_uint_eq(s->runs[s->groups[0].run_first].src, t.w[2].data.offset);
  uint64_t end4 = t.w[4].data.offset + t.w[4].data.bytes;
  ck_assert_uint_eq(s->runs[s->groups[0].run_first].bytes, end4 - t.w[2].data.offset);
  /* Blocks 1 and 2 are neighbours too. */
  ck_assert_int_eq(s->groups[1].run_count, 1);
  check_addresses(&t, s);
  uint64_t largest = 0, sum = 0;
  for (int32_t g = 0; g < s->group_count; g++) {
    if (s->groups[g].bytes > largest) largest = s->groups[g].bytes;
    sum += s->groups[g].bytes;
  }
  ck_assert_uint_eq(s->slot_bytes, largest);
  ck_assert_uint_eq(s->streamed_bytes, sum);
  qd_weight_stream_destroy(s);
}
END_TEST

START_TEST(gaps_split_runs) {
  /* A weight in the middle that the program does not read is not copied: its neighbours get a run each. */
  table_t t = flux_like();
  int32_t first[11], last[11];
  memcpy(first, first_use, sizeof first);
  memcpy(last, last_use, sizeof last);
  first[3] = last[3] = -1; /* blocks.0.qkv.bias unread */
  qd_weight_stream_t* s;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first, last, NULL, false, qd_allocator_system(), &s));
  ck_assert_int_eq(s->groups[0].run_count, 2);
  ck_assert_int_eq(s->group_of[3], -1);
  check_addresses(&t, s);
  qd_weight_stream_destroy(s);
}
END_TEST

START_TEST(keep_budget_keeps_the_first_groups) {
  table_t t = flux_like();
  qd_weight_stream_t* s;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, false, qd_allocator_system(), &s));
  bool resident[11] = {false};
  /* A budget below the first group keeps nothing; one that holds the first but not the second keeps the first. */
  ck_assert_uint_eq(qd_weight_stream_keep_first(s, s->groups[0].bytes - 1, resident), 0);
  for (int32_t w = 0; w < t.n; w++) ck_assert(!resident[w]);
  uint64_t budget = s->groups[0].bytes + s->groups[1].bytes - 1;
  ck_assert_uint_eq(qd_weight_stream_keep_first(s, budget, resident), s->groups[0].bytes);
  qd_weight_stream_t* kept;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, resident, false, qd_allocator_system(), &kept));
  ck_assert_int_eq(kept->group_count, 2);
  ck_assert(resident[2] && resident[3] && resident[4] && !resident[5]);
  ck_assert_int_eq(kept->group_of[2], -1);
  ck_assert_int_eq(kept->group_of[5], 0);
  check_addresses(&t, kept);
  /* Everything kept: nothing streamed. */
  qd_weight_stream_keep_first(s, UINT64_MAX, resident);
  qd_weight_stream_t* none;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, resident, false, qd_allocator_system(), &none));
  ck_assert_int_eq(none->group_count, 0);
  ck_assert_uint_eq(none->slot_bytes, 0);
  qd_weight_stream_destroy(none);
  qd_weight_stream_destroy(kept);
  qd_weight_stream_destroy(s);
}
END_TEST

START_TEST(bounds_without_a_launch_list) {
  table_t t = flux_like();
  uint64_t largest, unblocked, blocked;
  qd_weight_stream_bounds(t.w, t.n, NULL, &largest, NULL, &unblocked, &blocked);
  uint64_t block0 = 0, all_blocked = 0, none = 0;
  for (int32_t w = 0; w < t.n; w++) {
    uint64_t b = (qd_weight_span(&t.w[w]).bytes + 255) / 256 * 256;
    if (w >= 1 && w <= 4) block0 += b;
    if (w >= 1 && w <= 9) all_blocked += b;
    else none += b;
  }
  ck_assert_uint_eq(largest, block0); /* block 0 with its conditioning weight is the largest */
  ck_assert_uint_eq(blocked, all_blocked);
  ck_assert_uint_eq(unblocked, none);
  /* Counting only some weights: block 0 without its conditioning weight; blocks 1 and 2 alone. */
  bool only[11] = {false, false, true, true, true, true, true, true, false, false, false};
  uint64_t l2, u2, b2;
  qd_weight_stream_bounds(t.w, t.n, only, &l2, NULL, &u2, &b2);
  uint64_t mod = (qd_weight_span(&t.w[1]).bytes + 255) / 256 * 256;
  ck_assert_uint_eq(l2, block0 - mod);
  ck_assert_uint_eq(u2, 0);
  /* The bound holds for any program's groups that are single blocks. */
  qd_weight_stream_t* s;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, false, qd_allocator_system(), &s));
  ck_assert_uint_le(s->groups[0].bytes, largest);
  qd_weight_stream_destroy(s);
}
END_TEST

START_TEST(nothing_to_stream) {
  table_t t = {.n = 0};
  add(&t, "shared.weight", 100, 0);
  int32_t first[] = {0}, last[] = {3};
  qd_weight_stream_t* s;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first, last, NULL, false, qd_allocator_system(), &s));
  ck_assert_int_eq(s->group_count, 0);
  ck_assert_int_eq(s->group_of[0], -1);
  qd_weight_stream_destroy(s);
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, 0, first, last, NULL, false, qd_allocator_system(), &s));
  ck_assert_int_eq(s->group_count, 0);
  qd_weight_stream_destroy(s);
}
END_TEST

/* Layer by layer (the sequential schedule): a layer's weight and bias together, layers whose launches overlap
 * merged, then neighbours packed up to the largest layer: smaller slots than by block. */
START_TEST(layers_make_smaller_slots) {
  table_t t = flux_like();
  qd_weight_stream_t *blocks, *layers;
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, false, qd_allocator_system(), &blocks));
  QD_ASSERT_OK(qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, true, qd_allocator_system(), &layers));
  /* blocks.0.qkv (weight and bias); blocks.0.out; blocks.1.qkv; blocks.2.qkv with blocks.1.out (their launches
   * overlap) packed with blocks.3.qkv: four copies, none larger than blocks.0.qkv. */
  ck_assert_int_eq(layers->group_count, 4);
  ck_assert_int_eq(layers->group_of[2], layers->group_of[3]);
  ck_assert_int_ne(layers->group_of[3], layers->group_of[4]);
  ck_assert_int_eq(layers->group_of[6], layers->group_of[7]);
  ck_assert_int_eq(layers->group_of[7], layers->group_of[8]);
  uint64_t qkv0 = (qd_weight_span(&t.w[2]).bytes + 255) / 256 * 256 + (qd_weight_span(&t.w[3]).bytes + 255) / 256 * 256;
  ck_assert_uint_eq(layers->slot_bytes, qkv0);
  ck_assert_uint_lt(layers->slot_bytes, blocks->slot_bytes);
  ck_assert_uint_eq(layers->streamed_bytes, blocks->streamed_bytes);
  for (int32_t g = 0; g + 1 < layers->group_count; g++)
    ck_assert_int_lt(layers->groups[g].last_launch, layers->groups[g + 1].first_launch);
  check_addresses(&t, layers);
  uint64_t largest, largest_layer, unblocked, blocked;
  qd_weight_stream_bounds(t.w, t.n, NULL, &largest, &largest_layer, &unblocked, &blocked);
  ck_assert_uint_eq(largest_layer, qkv0);
  qd_weight_stream_destroy(layers);
  qd_weight_stream_destroy(blocks);
}
END_TEST

/* Every allocation the planner makes, failed in turn: OUT_OF_MEMORY and nothing left allocated (sizes match). */
START_TEST(allocation_failures_leave_nothing) {
  table_t t = flux_like();
  for (int layers = 0; layers < 2; layers++)
    for (int n = 1;; n++) {
      qd_test_allocator_t ta;
      qd_test_allocator_init(&ta, qd_allocator_system(), n);
      qd_weight_stream_t* s = NULL;
      qd_status_t st = qd_weight_stream_plan(t.w, t.n, first_use, last_use, NULL, layers != 0,
                                             qd_test_allocator_as_allocator(&ta), &s);
      if (!st) {
        ck_assert_uint_eq(ta.failures, 0);
        qd_weight_stream_destroy(s);
        ck_assert_int_eq(ta.live_count, 0);
        ck_assert_int_eq(ta.live_bytes, 0);
        ck_assert_int_gt(n, 3);
        break;
      }
      ck_assert_int_eq(qd_status_detail(st), QD_E_OUT_OF_MEMORY);
      ck_assert_ptr_null(s);
      qd_status_free(st);
      ck_assert_int_eq(ta.live_count, 0);
      ck_assert_int_eq(ta.live_bytes, 0);
    }
}
END_TEST

static Suite* weight_stream_suite(void) {
  Suite* s = suite_create("weight_stream");
  TCase* tc = tcase_create("planning");
  tcase_add_test(tc, block_keys);
  tcase_add_test(tc, groups_in_launch_order_merged_where_they_overlap);
  tcase_add_test(tc, gaps_split_runs);
  tcase_add_test(tc, keep_budget_keeps_the_first_groups);
  tcase_add_test(tc, bounds_without_a_launch_list);
  tcase_add_test(tc, nothing_to_stream);
  tcase_add_test(tc, allocation_failures_leave_nothing);
  tcase_add_test(tc, layers_make_smaller_slots);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(weight_stream_suite)
