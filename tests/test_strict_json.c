/* The strict JSON parser (ir/strict_json.c): grammar, encoding, duplicates, depth, numbers, offsets, and an
 * allocation-failure sweep. */
#include <stdlib.h>
#include <string.h>

#include "ir/strict_json.h"
#include "qd/allocator.h"
#include "qd_test.h"

static qd_json_doc_t* parse_ok(const char* text) {
  qd_json_doc_t* doc;
  QD_ASSERT_OK(qd_json_parse(text, strlen(text), qd_allocator_system(), NULL, &doc));
  ck_assert_ptr_nonnull(doc);
  return doc;
}

/* Parses and expects the given detail; returns the message (static buffer) for further checks. */
static const char* parse_fail(const char* text, size_t len, const qd_json_options_t* opt, qd_error_detail_t want) {
  static char msg[1024];
  qd_json_doc_t* doc = (qd_json_doc_t*)1;
  qd_status_t s = qd_json_parse(text, len, qd_allocator_system(), opt, &doc);
  ck_assert_msg(s != QD_OK, "'%s' parsed; expected %s", text, qd_error_detail_name(want));
  ck_assert_ptr_null(doc);
  qd_status_format(s, msg, sizeof msg);
  ck_assert_msg(qd_status_detail(s) == want, "'%s': expected %s, got %s: %s", text, qd_error_detail_name(want),
                qd_error_detail_name(qd_status_detail(s)), msg);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_BAD_INPUT);
  qd_status_free(s);
  return msg;
}

#define FAIL_STR(text, detail) parse_fail((text), strlen(text), NULL, (detail))

START_TEST(parses_all_types_in_document_order) {
  qd_json_doc_t* doc = parse_ok(" {\"z\": null, \"a\": [true, false, 1, \"s\"], \"m\": {}, \"e\": []} ");
  const qd_json_value_t* r = qd_json_root(doc);
  ck_assert_int_eq(r->type, QD_JSON_OBJECT);
  ck_assert_uint_eq(r->u.object.count, 4);
  ck_assert_str_eq(r->u.object.members[0].key, "z");
  ck_assert_str_eq(r->u.object.members[1].key, "a");
  ck_assert_str_eq(r->u.object.members[2].key, "m");
  ck_assert_str_eq(r->u.object.members[3].key, "e");
  ck_assert_uint_eq(r->u.object.members[1].key_offset, 13);
  ck_assert_int_eq(qd_json_object_get(r, "z")->type, QD_JSON_NULL);
  const qd_json_value_t* a = qd_json_object_get(r, "a");
  ck_assert_int_eq(a->type, QD_JSON_ARRAY);
  ck_assert_uint_eq(a->offset, 18);
  ck_assert_uint_eq(a->u.array.count, 4);
  ck_assert_int_eq(a->u.array.items[0]->type, QD_JSON_TRUE);
  ck_assert_int_eq(a->u.array.items[1]->type, QD_JSON_FALSE);
  ck_assert_int_eq(a->u.array.items[2]->type, QD_JSON_NUMBER);
  ck_assert_str_eq(a->u.array.items[3]->u.string.str, "s");
  ck_assert_uint_eq(qd_json_object_get(r, "m")->u.object.count, 0);
  ck_assert_uint_eq(qd_json_object_get(r, "e")->u.array.count, 0);
  ck_assert_ptr_null(qd_json_object_get(r, "missing"));
  ck_assert_ptr_null(qd_json_object_get(a, "z"));
  qd_json_destroy(doc);
  qd_json_destroy(NULL);

  /* Scalars are valid roots. */
  doc = parse_ok("\"only\"");
  ck_assert_str_eq(qd_json_root(doc)->u.string.str, "only");
  qd_json_destroy(doc);
}
END_TEST

START_TEST(numbers_keep_integer_ness_and_exact_values) {
  qd_json_doc_t* doc = parse_ok("[0, -0, 12, -12, 1.5, 1e3, 2E-2, 16.0, 9007199254740993, 18446744073709551615, "
                                "18446744073709551616, -9223372036854775809, 0.0]");
  const qd_json_value_t* const* n = qd_json_root(doc)->u.array.items;
  /* 0 */
  ck_assert(n[0]->u.number.is_integer && !n[0]->u.number.negative && n[0]->u.number.fits_u64);
  ck_assert_uint_eq(n[0]->u.number.u64, 0);
  /* -0 is an integer, and negative */
  ck_assert(n[1]->u.number.is_integer && n[1]->u.number.negative && !n[1]->u.number.fits_u64);
  ck_assert_uint_eq(n[2]->u.number.u64, 12);
  ck_assert(n[3]->u.number.negative && !n[3]->u.number.fits_u64);
  ck_assert(n[3]->u.number.f64 == -12.0);
  ck_assert(!n[4]->u.number.is_integer && n[4]->u.number.f64 == 1.5);
  ck_assert(!n[5]->u.number.is_integer && n[5]->u.number.f64 == 1000.0);
  ck_assert(!n[6]->u.number.is_integer);
  ck_assert_str_eq(n[6]->u.number.raw, "2E-2");
  ck_assert(!n[7]->u.number.is_integer && !n[7]->u.number.fits_u64);
  ck_assert_str_eq(n[7]->u.number.raw, "16.0");
  /* Exact beyond 2^53, where a double would round. */
  ck_assert(n[8]->u.number.fits_u64);
  ck_assert_uint_eq(n[8]->u.number.u64, 9007199254740993ull);
  ck_assert(n[9]->u.number.fits_u64);
  ck_assert_uint_eq(n[9]->u.number.u64, UINT64_MAX);
  ck_assert(n[10]->u.number.is_integer && !n[10]->u.number.fits_u64);
  ck_assert_str_eq(n[10]->u.number.raw, "18446744073709551616");
  ck_assert(n[11]->u.number.negative && !n[11]->u.number.fits_u64);
  ck_assert(!n[12]->u.number.is_integer);
  ck_assert_uint_eq(n[12]->u.number.raw_len, 3);
  qd_json_destroy(doc);

  FAIL_STR("[01]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[1.]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[.5]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[1e]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[-]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[+1]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[0x10]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[NaN]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[Infinity]", QD_E_ST_HEADER_JSON);
}
END_TEST

START_TEST(strings_decode_escapes_and_surrogate_pairs) {
  qd_json_doc_t* doc =
      parse_ok("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"caf\\u00e9\", \"\\ud83d\\ude00\", \"a\\u0000b\", "
               "\"\xc3\xa9\xe2\x82\xac\"]");
  const qd_json_value_t* const* s = qd_json_root(doc)->u.array.items;
  ck_assert_str_eq(s[0]->u.string.str, "\"\\/\b\f\n\r\t");
  ck_assert_str_eq(s[1]->u.string.str, "caf\xc3\xa9");
  ck_assert_str_eq(s[2]->u.string.str, "\xf0\x9f\x98\x80");
  ck_assert_uint_eq(s[3]->u.string.len, 3);
  ck_assert_int_eq(memcmp(s[3]->u.string.str, "a\0b", 4), 0);
  ck_assert_str_eq(s[4]->u.string.str, "\xc3\xa9\xe2\x82\xac");
  qd_json_destroy(doc);

  FAIL_STR("[\"\\ud800\"]", QD_E_ST_HEADER_UTF8);
  FAIL_STR("[\"\\ud800\\u0041\"]", QD_E_ST_HEADER_UTF8);
  FAIL_STR("[\"\\udc00\"]", QD_E_ST_HEADER_UTF8);
  FAIL_STR("[\"\\u12\"]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[\"\\u12g4\"]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[\"\\x41\"]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[\"tab\there\"]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[\"open", QD_E_ST_HEADER_JSON);
  FAIL_STR("[\"ends in backslash\\", QD_E_ST_HEADER_JSON);
}
END_TEST

START_TEST(rejects_invalid_utf8_with_offsets) {
  static const struct {
    const char* text;
    size_t at;
  } cases[] = {
      {"[\"\xc0\xaf\"]", 2},          /* overlong '/' */
      {"[\"\xc1\xbf\"]", 2},          /* overlong */
      {"[\"\xe0\x80\xaf\"]", 2},      /* overlong, 3 bytes */
      {"[\"\xf0\x80\x80\xaf\"]", 2},  /* overlong, 4 bytes */
      {"[\"\xed\xa0\x80\"]", 2},      /* U+D800 encoded */
      {"[\"\xed\xbf\xbf\"]", 2},      /* U+DFFF encoded */
      {"[\"\xf4\x90\x80\x80\"]", 2},  /* U+110000 */
      {"[\"\xf5\x80\x80\x80\"]", 2},  /* lead byte past U+10FFFF */
      {"[\"ab\x80\"]", 4},            /* stray continuation */
      {"[\"\xe2\x82\"]", 2},          /* truncated */
      {"[\"\xff\"]", 2},
      {"[1,\xc3", 3},                 /* cut by the end */
      {"\xc3\xa9", SIZE_MAX},         /* valid UTF-8 outside a string: a grammar error, not an encoding one */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (cases[i].at == SIZE_MAX) {
      FAIL_STR(cases[i].text, QD_E_ST_HEADER_JSON);
      continue;
    }
    const char* msg = FAIL_STR(cases[i].text, QD_E_ST_HEADER_UTF8);
    char want[32];
    snprintf(want, sizeof want, "at byte %zu", cases[i].at);
    ck_assert_msg(strstr(msg, want), "case %zu: '%s' lacks '%s'", i, msg, want);
  }
  /* The largest code points of each length are fine. */
  qd_json_doc_t* doc = parse_ok("[\"\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf\xee\x80\x80\"]");
  qd_json_destroy(doc);
}
END_TEST

START_TEST(duplicate_keys_name_key_and_path) {
  const char* msg = FAIL_STR("{\"a\": 1, \"b\": 2, \"a\": 3}", QD_E_ST_DUPLICATE_KEY);
  ck_assert_ptr_nonnull(strstr(msg, "duplicate key \"a\" in the object at $ at byte 17"));
  msg = FAIL_STR("{\"outer\": {\"x.y\": {\"k\": 1, \"k\": 2}}}", QD_E_ST_DUPLICATE_KEY);
  ck_assert_ptr_nonnull(strstr(msg, "\"k\" in the object at $.outer[\"x.y\"]"));
  msg = FAIL_STR("{\"list\": [1, {\"q\": 1, \"q\": 1}]}", QD_E_ST_DUPLICATE_KEY);
  ck_assert_ptr_nonnull(strstr(msg, "$.list[1]"));
  /* Keys equal after decoding are duplicates. */
  FAIL_STR("{\"\\u0061\": 1, \"a\": 2}", QD_E_ST_DUPLICATE_KEY);
  /* Of several repeats, the first repeat in the document is reported. */
  msg = FAIL_STR("{\"b\": 1, \"a\": 1, \"a\": 2, \"b\": 2}", QD_E_ST_DUPLICATE_KEY);
  ck_assert_ptr_nonnull(strstr(msg, "\"a\""));
  /* Prefixes are distinct keys. */
  qd_json_doc_t* doc = parse_ok("{\"a\": 1, \"ab\": 2, \"\": 3, \"a\\u0000\": 4}");
  qd_json_destroy(doc);
}
END_TEST

START_TEST(duplicate_detection_scales) {
  /* 50,000 distinct keys, then a repeat of one near the start: found, with the sort (not n^2). */
  size_t n = 50000;
  size_t cap = n * 16 + 64;
  char* buf = malloc(cap);
  ck_assert_ptr_nonnull(buf);
  size_t o = 0;
  buf[o++] = '{';
  for (size_t i = 0; i < n; i++) o += (size_t)snprintf(buf + o, cap - o, "\"k%zu\":%zu,", i, i);
  o += (size_t)snprintf(buf + o, cap - o, "\"k7\":0}");
  const char* msg = parse_fail(buf, o, NULL, QD_E_ST_DUPLICATE_KEY);
  ck_assert_ptr_nonnull(strstr(msg, "\"k7\""));
  buf[o - 8] = '}'; /* drop the repeat: now valid */
  qd_json_doc_t* doc;
  QD_ASSERT_OK(qd_json_parse(buf, o - 7, qd_allocator_system(), NULL, &doc));
  ck_assert_uint_eq(qd_json_root(doc)->u.object.count, n);
  ck_assert_str_eq(qd_json_root(doc)->u.object.members[n - 1].key, "k49999");
  qd_json_destroy(doc);
  free(buf);
}
END_TEST

START_TEST(depth_limit) {
  char buf[300];
  /* 64 levels are allowed, 65 are not. */
  for (int levels = 63; levels <= 66; levels++) {
    size_t o = 0;
    for (int i = 0; i < levels; i++) buf[o++] = '[';
    for (int i = 0; i < levels; i++) buf[o++] = ']';
    qd_json_doc_t* doc;
    qd_status_t s = qd_json_parse(buf, o, qd_allocator_system(), NULL, &doc);
    if (levels <= QD_JSON_DEFAULT_MAX_DEPTH) {
      QD_ASSERT_OK(s);
      qd_json_destroy(doc);
    } else {
      ck_assert(qd_status_is(s, QD_E_ST_JSON_TOO_DEEP));
      qd_status_free(s);
    }
  }
  qd_json_options_t opt = {.max_depth = 2};
  parse_fail("{\"a\": {\"b\": {}}}", 16, &opt, QD_E_ST_JSON_TOO_DEEP);
  const char* msg = parse_fail("{\"a\": [[]]}", 11, &opt, QD_E_ST_JSON_TOO_DEEP);
  ck_assert_ptr_nonnull(strstr(msg, "$.a[0]"));
  /* A very deep hostile document fails cleanly (no stack exhaustion). */
  size_t n = 1 << 20;
  char* deep = malloc(n);
  memset(deep, '[', n);
  parse_fail(deep, n, NULL, QD_E_ST_JSON_TOO_DEEP);
  free(deep);
}
END_TEST

START_TEST(grammar_errors_carry_offsets_and_options) {
  const char* msg = FAIL_STR("{\"a\" 1}", QD_E_ST_HEADER_JSON);
  ck_assert_ptr_nonnull(strstr(msg, "expected ':' after an object key at byte 5"));
  qd_json_options_t opt = {.source_name = "x.safetensors", .base_offset = 8, .syntax_detail = QD_E_ST_INDEX_JSON};
  msg = parse_fail("{\"a\" 1}", 7, &opt, QD_E_ST_INDEX_JSON);
  ck_assert_str_eq(msg, "x.safetensors: unexpected '1'; expected ':' after an object key at byte 13");
  FAIL_STR("", QD_E_ST_HEADER_JSON);
  FAIL_STR("   ", QD_E_ST_HEADER_JSON);
  FAIL_STR("{", QD_E_ST_HEADER_JSON);
  FAIL_STR("{\"a\":1,}", QD_E_ST_HEADER_JSON);
  FAIL_STR("[1,]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[1 2]", QD_E_ST_HEADER_JSON);
  FAIL_STR("{1:2}", QD_E_ST_HEADER_JSON);
  FAIL_STR("{'a':2}", QD_E_ST_HEADER_JSON);
  FAIL_STR("[tru]", QD_E_ST_HEADER_JSON);
  FAIL_STR("[nul", QD_E_ST_HEADER_JSON);
  FAIL_STR("{} {}", QD_E_ST_HEADER_JSON);
  FAIL_STR("\xef\xbb\xbf{}", QD_E_ST_HEADER_JSON); /* a byte order mark is not JSON */
  /* Embedded NUL in the buffer (outside strings) is an error, not an end. */
  parse_fail("{}\0", 3, NULL, QD_E_ST_HEADER_JSON);
  qd_json_options_t utf = {.utf8_detail = QD_E_ST_INDEX_JSON};
  parse_fail("[\"\xff\"]", 5, &utf, QD_E_ST_INDEX_JSON);
}
END_TEST

START_TEST(trailing_content_policies) {
  qd_json_doc_t* doc = parse_ok("{} \t\r\n ");
  qd_json_destroy(doc);
  qd_json_options_t spaces = {.trailing = QD_JSON_TRAILING_SPACES};
  QD_ASSERT_OK(qd_json_parse("{}      ", 8, qd_allocator_system(), &spaces, &doc));
  qd_json_destroy(doc);
  const char* msg = parse_fail("{}  \n", 5, &spaces, QD_E_ST_HEADER_JSON);
  ck_assert_ptr_nonnull(strstr(msg, "only spaces may follow it"));
  ck_assert_ptr_nonnull(strstr(msg, "at byte 4"));
}
END_TEST

START_TEST(display_escapes_and_truncates) {
  char buf[32];
  ck_assert_str_eq(qd_json_display("a\nb\\c\x7f", 6, buf, sizeof buf), "a\\x0Ab\\\\c\\x7F");
  ck_assert_str_eq(qd_json_display("caf\xc3\xa9", 5, buf, sizeof buf), "caf\xc3\xa9");
  ck_assert_str_eq(qd_json_display("bad\xff", 4, buf, sizeof buf), "bad\\xFF");
  char small[8];
  ck_assert_str_eq(qd_json_display("abcdefghijkl", 12, small, sizeof small), "abcd...");
  ck_assert_str_eq(qd_json_display("abcdefg", 7, small, sizeof small), "abcdefg");
  /* A multi-byte character is never cut in half. */
  ck_assert_str_eq(qd_json_display("abc\xe2\x82\xac\xe2\x82\xac", 9, small, sizeof small), "abc...");
  qd_json_doc_t* doc = parse_ok("[\"s\", 1.50, {}, [], null]");
  const qd_json_value_t* const* v = qd_json_root(doc)->u.array.items;
  ck_assert_str_eq(qd_json_describe(v[0], buf, sizeof buf), "\"s\"");
  ck_assert_str_eq(qd_json_describe(v[1], buf, sizeof buf), "1.50");
  ck_assert_str_eq(qd_json_describe(v[2], buf, sizeof buf), "an object");
  ck_assert_str_eq(qd_json_describe(v[3], buf, sizeof buf), "an array");
  ck_assert_str_eq(qd_json_describe(v[4], buf, sizeof buf), "null");
  ck_assert_str_eq(qd_json_type_name(v[2]->type), "object");
  qd_json_destroy(doc);
}
END_TEST

/* A document that exercises every allocation path: strings longer than an arena chunk, scratch stacks that grow,
 * duplicate checks, nesting. */
static char* sweep_document(size_t* out_len) {
  size_t cap = 200000;
  char* b = malloc(cap);
  size_t o = 0;
  o += (size_t)snprintf(b + o, cap - o, "{\"long\": \"");
  for (int i = 0; i < 40000; i++) b[o++] = (char)('a' + i % 26);
  o += (size_t)snprintf(b + o, cap - o, "\", \"arr\": [");
  for (int i = 0; i < 300; i++)
    o += (size_t)snprintf(b + o, cap - o, "%s[%d, \"v%d\", {\"k\": -%d.5}]", i ? "," : "", i, i, i);
  o += (size_t)snprintf(b + o, cap - o, "], \"obj\": {");
  for (int i = 0; i < 300; i++) o += (size_t)snprintf(b + o, cap - o, "%s\"key%d\": {\"n\": %d}", i ? "," : "", i, i);
  o += (size_t)snprintf(b + o, cap - o, "}}");
  *out_len = o;
  return b;
}

START_TEST(allocation_failure_sweep) {
  size_t len;
  char* text = sweep_document(&len);
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_json_doc_t* doc = NULL;
    qd_status_t s = qd_json_parse(text, len, qd_test_allocator_as_allocator(&t), NULL, &doc);
    if (t.failures == 0) {
      QD_ASSERT_OK(s);
      ck_assert_uint_eq(qd_json_root(doc)->u.object.count, 3);
      qd_json_destroy(doc);
      ck_assert_int_eq(t.live_count, 0);
      ck_assert_int_eq(t.live_bytes, 0);
      ck_assert_uint_gt(n, 5);
      break;
    }
    ck_assert_msg(s != QD_OK, "allocation %llu failed but parse succeeded", (unsigned long long)n);
    ck_assert_int_eq(qd_status_code(s), QD_CODE_OUT_OF_MEMORY);
    ck_assert_ptr_null(doc);
    qd_status_free(s);
    ck_assert_msg(t.live_count == 0 && t.live_bytes == 0, "fail at %llu: %lld allocations (%lld bytes) leaked",
                  (unsigned long long)n, (long long)t.live_count, (long long)t.live_bytes);
  }
  free(text);
}
END_TEST

static Suite* strict_json_suite(void) {
  Suite* s = suite_create("strict_json");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, parses_all_types_in_document_order);
  tcase_add_test(tc, numbers_keep_integer_ness_and_exact_values);
  tcase_add_test(tc, strings_decode_escapes_and_surrogate_pairs);
  tcase_add_test(tc, rejects_invalid_utf8_with_offsets);
  tcase_add_test(tc, duplicate_keys_name_key_and_path);
  tcase_add_test(tc, duplicate_detection_scales);
  tcase_add_test(tc, depth_limit);
  tcase_add_test(tc, grammar_errors_carry_offsets_and_options);
  tcase_add_test(tc, trailing_content_policies);
  tcase_add_test(tc, display_escapes_and_truncates);
  tcase_add_test(tc, allocation_failure_sweep);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(strict_json_suite)
