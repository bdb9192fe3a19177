/* Base library: status values, allocators, logging and progress. */
#include <string.h>

#include "qd/allocator.h"
#include "qd/log.h"
#include "qd/progress.h"
#include "qd_test.h"

static qd_status_t fails_deep(int depth) {
  if (depth == 0) return QD_ERR(BAD_INPUT, ST_DTYPE_UNKNOWN, "model.safetensors: tensor 'x': dtype 'Q7' unknown");
  QD_TRY_CTX(fails_deep(depth - 1), "level %d", depth);
  return QD_OK;
}

START_TEST(status_ok_is_null) {
  ck_assert_ptr_null(QD_OK);
  ck_assert_int_eq(qd_status_code(QD_OK), QD_CODE_OK);
  ck_assert_str_eq(qd_status_message(QD_OK), "ok");
  qd_status_free(QD_OK);
}
END_TEST

START_TEST(status_carries_code_detail_context) {
  qd_status_t s = fails_deep(3);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_BAD_INPUT);
  ck_assert(qd_status_is(s, QD_E_ST_DTYPE_UNKNOWN));
  ck_assert_str_eq(qd_error_detail_name(qd_status_detail(s)), "ST_DTYPE_UNKNOWN");
  ck_assert_uint_eq(qd_status_context_count(s), 3);
  ck_assert_str_eq(qd_status_context(s, 0), "level 1");
  ck_assert_str_eq(qd_status_context(s, 2), "level 3");
  ck_assert_ptr_null(qd_status_context(s, 3));
  char buf[256];
  qd_status_format(s, buf, sizeof buf);
  ck_assert_str_eq(buf, "model.safetensors: tensor 'x': dtype 'Q7' unknown (level 1; level 2; level 3)");
  ck_assert_ptr_nonnull(strstr(qd_status_file(s), "test_base.c"));
  ck_assert_int_gt(qd_status_line(s), 0);
  /* Truncation keeps the buffer terminated and reports the full length. */
  char tiny[8];
  size_t want = qd_status_format(s, tiny, sizeof tiny);
  ck_assert_uint_eq(want, strlen(buf));
  ck_assert_uint_eq(strlen(tiny), 7);
  qd_status_free(s);
}
END_TEST

START_TEST(error_details_have_distinct_names) {
  for (int i = 0; i < QD_E_COUNT_; i++) {
    ck_assert(strlen(qd_error_detail_text((qd_error_detail_t)i)) > 0);
    for (int j = i + 1; j < QD_E_COUNT_; j++)
      ck_assert_str_ne(qd_error_detail_name((qd_error_detail_t)i), qd_error_detail_name((qd_error_detail_t)j));
  }
}
END_TEST

START_TEST(test_allocator_fails_nth_and_counts) {
  qd_test_allocator_t t;
  qd_test_allocator_init(&t, qd_allocator_system(), 2);
  qd_allocator_t a = qd_test_allocator_as_allocator(&t);
  void *p1, *p2;
  QD_ASSERT_OK(qd_malloc(a, 100, &p1));
  QD_ASSERT_DETAIL(qd_malloc(a, 100, &p2), QD_E_OUT_OF_MEMORY);
  ck_assert_ptr_null(p2);
  ck_assert_int_eq(t.live_count, 1);
  ck_assert_int_eq(t.live_bytes, 100);
  QD_ASSERT_OK(qd_realloc(a, p1, 100, 300, &p1));
  ck_assert_int_eq(t.live_bytes, 300);
  qd_free(a, p1, 300);
  ck_assert_int_eq(t.live_count, 0);
  ck_assert_int_eq(t.live_bytes, 0);
  ck_assert_uint_eq(t.failures, 1);
}
END_TEST

START_TEST(calloc_checks_overflow) {
  void* p;
  QD_ASSERT_DETAIL(qd_calloc(qd_allocator_system(), SIZE_MAX / 2, 4, &p), QD_E_OUT_OF_MEMORY);
  QD_ASSERT_OK(qd_calloc(qd_allocator_system(), 4, 4, &p));
  for (int i = 0; i < 16; i++) ck_assert_int_eq(((unsigned char*)p)[i], 0);
  free(p);
}
END_TEST

static int log_calls;
static char log_last[256];
static void log_capture(void* user, qd_log_level_t level, const char* message) {
  (void)user;
  (void)level;
  log_calls++;
  snprintf(log_last, sizeof log_last, "%s", message);
}

START_TEST(log_filters_by_level) {
  qd_log_set_callback(log_capture, NULL);
  qd_log_set_level(QD_LOG_WARN);
  log_calls = 0;
  QD_LOG_INFO("hidden %d", 1);
  QD_LOG_WARN("shown %d", 2);
  ck_assert_int_eq(log_calls, 1);
  ck_assert_str_eq(log_last, "shown 2");
  qd_log_set_callback(NULL, NULL);
}
END_TEST

static uint64_t progress_seen;
static bool progress_cb(void* user, const char* label, uint64_t done, uint64_t total, double elapsed) {
  (void)user;
  (void)label;
  (void)total;
  (void)elapsed;
  progress_seen = done;
  return done < 7;
}

START_TEST(progress_lines_and_cancel) {
  char* text = NULL;
  size_t len = 0;
  FILE* mem = open_memstream(&text, &len);
  qd_progress_sink_t sink = {QD_PROGRESS_LINES, mem, progress_cb, NULL, 0};
  qd_progress_t p;
  qd_progress_begin(&p, &sink, "quantize", 10, "tensors");
  bool keep_going = true;
  for (int i = 0; i < 10 && keep_going; i++) keep_going = qd_progress_advance(&p, 1);
  qd_progress_end(&p);
  fclose(mem);
  ck_assert_uint_eq(progress_seen, 7);
  ck_assert(!keep_going);
  ck_assert_ptr_nonnull(strstr(text, "quantize: 10% (1 of 10 tensors"));
  ck_assert_ptr_nonnull(strstr(text, "quantize: 7 tensors in"));
  free(text);

  /* Quiet prints nothing at all. */
  text = NULL;
  mem = open_memstream(&text, &len);
  sink = (qd_progress_sink_t){QD_PROGRESS_QUIET, mem, NULL, NULL, 0};
  qd_progress_begin(&p, &sink, "x", 4, "B");
  qd_progress_advance(&p, 4);
  qd_progress_end(&p);
  fclose(mem);
  ck_assert_uint_eq(len, 0);
  free(text);
}
END_TEST

START_TEST(format_bytes_units) {
  char b[32];
  ck_assert_str_eq(qd_format_bytes(512, b, sizeof b), "512 B");
  ck_assert_str_eq(qd_format_bytes(1536, b, sizeof b), "1.50 KiB");
  ck_assert_str_eq(qd_format_bytes(7ull << 30, b, sizeof b), "7.00 GiB");
  ck_assert_str_eq(qd_format_bytes(24ull << 30, b, sizeof b), "24.0 GiB");
}
END_TEST

START_TEST(parse_bytes_units) {
  static const struct {
    const char* text;
    uint64_t bytes;
  } good[] = {{"1048576", 1048576}, {"8G", 8ull << 30}, {"8g", 8ull << 30}, {"7.5GiB", 15ull << 29},
              {"512M", 512ull << 20}, {"300MB", 300ull << 20}, {"2K", 2048}, {"1T", 1ull << 40}, {"0", 0},
              {"10B", 10}};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    uint64_t v = 1;
    ck_assert_msg(qd_parse_bytes(good[i].text, &v), "%s", good[i].text);
    ck_assert_uint_eq(v, good[i].bytes);
  }
  static const char* const bad[] = {"", "G", "-1G", " 8G", "8 G", "8X", "8GiBs", "8Gi", "nan", "inf", "1e30", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 7;
    ck_assert_msg(!qd_parse_bytes(bad[i], &v), "'%s' parsed", bad[i] ? bad[i] : "(null)");
    ck_assert_uint_eq(v, 7);
  }
}
END_TEST

static Suite* base_suite(void) {
  Suite* s = suite_create("base");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, status_ok_is_null);
  tcase_add_test(tc, status_carries_code_detail_context);
  tcase_add_test(tc, error_details_have_distinct_names);
  tcase_add_test(tc, test_allocator_fails_nth_and_counts);
  tcase_add_test(tc, calloc_checks_overflow);
  tcase_add_test(tc, log_filters_by_level);
  tcase_add_test(tc, progress_lines_and_cancel);
  tcase_add_test(tc, format_bytes_units);
  tcase_add_test(tc, parse_bytes_units);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(base_suite)
