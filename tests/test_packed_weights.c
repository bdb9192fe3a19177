/* The host-side store of repacked weights (runtime/cuda/packed_weights.c) that the executors of one generator share:
 * what it finds and what it does not, that it keeps its own copies, and allocation failures. No GPU. */
#include <stdint.h>
#include <string.h>

#include "qd_test.h"
#include "runtime/cuda/packed_weights.h"

START_TEST(finds_what_was_put_by_source_and_size) {
  qd_packed_weights_t* s;
  QD_ASSERT_OK(qd_packed_weights_create(qd_allocator_system(), &s));
  static const uint8_t plan_bytes[64] = {1, 2, 3};
  uint16_t packed[8] = {10, 20, 30, 40, 50, 60, 70, 80};
  ck_assert_ptr_null(qd_packed_weights_find(s, plan_bytes, sizeof packed));
  const void* kept;
  QD_ASSERT_OK(qd_packed_weights_put(s, plan_bytes, packed, sizeof packed, &kept));
  ck_assert_ptr_ne(kept, packed); /* a copy: the caller frees its own */
  packed[0] = 999;
  ck_assert_ptr_eq(qd_packed_weights_find(s, plan_bytes, sizeof packed), kept);
  ck_assert_uint_eq(((const uint16_t*)kept)[0], 10);
  ck_assert_uint_eq(((const uint16_t*)kept)[7], 80);
  /* another size of the same source, another source of the same size: not the same weight */
  ck_assert_ptr_null(qd_packed_weights_find(s, plan_bytes, 8));
  ck_assert_ptr_null(qd_packed_weights_find(s, plan_bytes + 16, sizeof packed));
  /* a second put for the key keeps the first */
  const void* again;
  QD_ASSERT_OK(qd_packed_weights_put(s, plan_bytes, packed, sizeof packed, &again));
  ck_assert_ptr_eq(again, kept);
  ck_assert_uint_eq(((const uint16_t*)again)[0], 10);
  /* many weights: the table grows past its first size */
  static const uint8_t many[256];
  for (int i = 0; i < 300; i++) {
    uint32_t v = (uint32_t)i;
    QD_ASSERT_OK(qd_packed_weights_put(s, many + (i % 150), &v, 4, &again)); /* 150 new, then repeats */
    ck_assert_uint_eq(*(const uint32_t*)again, (uint32_t)(i % 150));
  }
  int32_t count;
  uint64_t bytes;
  qd_packed_weights_counts(s, &count, &bytes);
  ck_assert_int_eq(count, 151);
  ck_assert_uint_eq(bytes, sizeof packed + 150 * 4);
  ck_assert_uint_eq(*(const uint32_t*)qd_packed_weights_find(s, many + 149, 4), 149);
  ck_assert_ptr_eq(qd_packed_weights_find(s, plan_bytes, sizeof packed), kept); /* still there after growing */
  qd_packed_weights_destroy(s);
  qd_packed_weights_destroy(NULL);
  ck_assert_ptr_null(qd_packed_weights_find(NULL, plan_bytes, 4));
  qd_packed_weights_counts(NULL, &count, &bytes);
  ck_assert_int_eq(count, 0);
}
END_TEST

START_TEST(refuses_what_it_cannot_keep) {
  qd_packed_weights_t* s;
  QD_ASSERT_OK(qd_packed_weights_create(qd_allocator_system(), &s));
  static const uint8_t src[4];
  const void* kept = src;
  qd_status_t st = qd_packed_weights_put(s, src, NULL, 4, &kept);
  ck_assert_int_eq(qd_status_detail(st), QD_E_INVALID_ARGUMENT);
  qd_status_free(st);
  ck_assert_ptr_null(kept);
  st = qd_packed_weights_put(s, src, src, 0, &kept);
  ck_assert_int_eq(qd_status_detail(st), QD_E_INVALID_ARGUMENT);
  qd_status_free(st);
  st = qd_packed_weights_put(NULL, src, src, 4, &kept);
  ck_assert_int_eq(qd_status_detail(st), QD_E_INVALID_ARGUMENT);
  qd_status_free(st);
  qd_packed_weights_destroy(s);
}
END_TEST

START_TEST(allocation_failures_keep_nothing_and_leak_nothing) {
  static const uint8_t src[3][16];
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_packed_weights_t* s;
    qd_status_t st = qd_packed_weights_create(qd_test_allocator_as_allocator(&t), &s);
    int kept = 0;
    for (int i = 0; !st && i < 3; i++) {
      const void* k;
      st = qd_packed_weights_put(s, src[i], src[i], sizeof src[i], &k);
      if (!st) kept++;
    }
    int32_t count = 0;
    uint64_t bytes = 0;
    qd_packed_weights_counts(s, &count, &bytes);
    ck_assert_int_eq(count, kept); /* a failed put kept nothing */
    qd_packed_weights_destroy(s);
    ck_assert_int_eq(t.live_count, 0);
    if (!st) break;
    ck_assert_int_eq(qd_status_detail(st), QD_E_OUT_OF_MEMORY);
    qd_status_free(st);
    ck_assert_uint_lt(n, 50);
  }
}
END_TEST

static Suite* packed_weights_suite(void) {
  Suite* s = suite_create("packed_weights");
  TCase* tc = tcase_create("store");
  tcase_add_test(tc, finds_what_was_put_by_source_and_size);
  tcase_add_test(tc, refuses_what_it_cannot_keep);
  tcase_add_test(tc, allocation_failures_keep_nothing_and_leak_nothing);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(packed_weights_suite)
