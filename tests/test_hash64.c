/* XXH64 (ir/hash64.c): the published reference values, and the streaming interface agreeing with the one-shot one
 * for every way of splitting the input. Expected values were produced with `xxhsum -H64` (xxHash 0.8.1). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ir/hash64.h"
#include "qd_test.h"

/* The bytes behind the long vectors: a 32-bit LCG, top byte of each state. */
static unsigned char* lcg_bytes(size_t n) {
  unsigned char* b = malloc(n ? n : 1);
  uint32_t x = 2654435761u;
  for (size_t i = 0; i < n; i++) {
    x = x * 1103515245u + 12345u;
    b[i] = (unsigned char)(x >> 24);
  }
  return b;
}

START_TEST(reference_vectors) {
  ck_assert_uint_eq(qd_hash64(NULL, 0, 0), UINT64_C(0xef46db3751d8e999));
  ck_assert_uint_eq(qd_hash64("", 0, 0), UINT64_C(0xef46db3751d8e999));
  ck_assert_uint_eq(qd_hash64("a", 1, 0), UINT64_C(0xd24ec4f1a98c6e5b));
  ck_assert_uint_eq(qd_hash64("abc", 3, 0), UINT64_C(0x44bc2cf5ad770999));
  const char* s = "Nobody inspects the spammish repetition";
  ck_assert_uint_eq(qd_hash64(s, strlen(s), 0), UINT64_C(0xfbcea83c8a378bf1));
  /* lengths around the 32-byte stripe and the 8/4/1-byte tails, and one long input */
  static const struct {
    size_t n;
    uint64_t h;
  } v[] = {
      {31, UINT64_C(0xe39ade89e0b3fed6)},  {32, UINT64_C(0x1f64ac68d39a8eaa)},
      {33, UINT64_C(0xe1312dddc6ab1d87)},  {64, UINT64_C(0x2533e6dbbeba75b3)},
      {100, UINT64_C(0x88f6cb7cff151221)}, {1000003, UINT64_C(0x40685d97fdc38686)},
  };
  unsigned char* b = lcg_bytes(1000003);
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
    ck_assert_msg(qd_hash64(b, v[i].n, 0) == v[i].h, "length %zu: got %016llx", v[i].n,
                  (unsigned long long)qd_hash64(b, v[i].n, 0));
  free(b);
}
END_TEST

START_TEST(streaming_matches_one_shot) {
  size_t n = 4099;
  unsigned char* b = lcg_bytes(n);
  for (size_t len = 0; len <= 300; len += (len < 70 ? 1 : 23)) {
    uint64_t want = qd_hash64(b, len, 0);
    /* every fixed chunk size from 1 to 40 */
    for (size_t chunk = 1; chunk <= 40; chunk++) {
      qd_hash64_state_t st;
      qd_hash64_init(&st, 0);
      for (size_t o = 0; o < len; o += chunk) qd_hash64_update(&st, b + o, len - o < chunk ? len - o : chunk);
      ck_assert_msg(qd_hash64_digest(&st) == want, "len %zu chunk %zu", len, chunk);
    }
  }
  /* irregular splits of the whole buffer, digest in the middle leaves the state usable */
  qd_hash64_state_t st;
  qd_hash64_init(&st, 0);
  size_t o = 0, step = 1;
  while (o < n) {
    size_t t = n - o < step ? n - o : step;
    qd_hash64_update(&st, b + o, t);
    o += t;
    ck_assert_uint_eq(qd_hash64_digest(&st), qd_hash64(b, o, 0));
    step = step * 7 % 131 + 1;
  }
  qd_hash64_update(&st, NULL, 0);
  ck_assert_uint_eq(qd_hash64_digest(&st), qd_hash64(b, n, 0));
  free(b);
}
END_TEST

START_TEST(seed_changes_result) {
  /* The seed enters every lane and the short-input path; both must react to it. */
  unsigned char* b = lcg_bytes(100);
  ck_assert_uint_ne(qd_hash64(b, 10, 0), qd_hash64(b, 10, 1));
  ck_assert_uint_ne(qd_hash64(b, 100, 0), qd_hash64(b, 100, 1));
  qd_hash64_state_t st;
  qd_hash64_init(&st, 12345);
  qd_hash64_update(&st, b, 100);
  ck_assert_uint_eq(qd_hash64_digest(&st), qd_hash64(b, 100, 12345));
  free(b);
}
END_TEST

static Suite* hash64_suite(void) {
  Suite* s = suite_create("hash64");
  TCase* tc = tcase_create("xxh64");
  tcase_add_test(tc, reference_vectors);
  tcase_add_test(tc, streaming_matches_one_shot);
  tcase_add_test(tc, seed_changes_result);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(hash64_suite)
