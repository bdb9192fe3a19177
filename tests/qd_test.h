/* Shared helpers for the Check suites: status assertions, test data paths, and the main() every suite uses. */
#ifndef QD_TEST_H
#define QD_TEST_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "qd/status.h"

/* Fails the test with the status's formatted message when it is not OK; frees it. */
#define QD_ASSERT_OK(expr)                                                             \
  do {                                                                                 \
    qd_status_t qd_t_s_ = (expr);                                                      \
    if (qd_t_s_) {                                                                     \
      char qd_t_buf_[2048];                                                            \
      qd_status_format(qd_t_s_, qd_t_buf_, sizeof qd_t_buf_);                          \
      const char* qd_t_name_ = qd_error_detail_name(qd_status_detail(qd_t_s_));       \
      qd_status_free(qd_t_s_);                                                         \
      ck_abort_msg("%s failed: [%s] %s", #expr, qd_t_name_, qd_t_buf_);               \
    }                                                                                  \
  } while (0)

/* Asserts that expr fails with the given detail (QD_E_...), prints the message, frees the status. */
#define QD_ASSERT_DETAIL(expr, detail)                                                              \
  do {                                                                                              \
    qd_status_t qd_t_s_ = (expr);                                                                   \
    ck_assert_msg(qd_t_s_ != QD_OK, "%s succeeded; expected %s", #expr, qd_error_detail_name(detail)); \
    qd_error_detail_t qd_t_d_ = qd_status_detail(qd_t_s_);                                          \
    char qd_t_buf_[2048];                                                                           \
    qd_status_format(qd_t_s_, qd_t_buf_, sizeof qd_t_buf_);                                         \
    qd_status_free(qd_t_s_);                                                                        \
    ck_assert_msg(qd_t_d_ == (detail), "%s: expected %s, got %s: %s", #expr,                        \
                  qd_error_detail_name(detail), qd_error_detail_name(qd_t_d_), qd_t_buf_);          \
  } while (0)

/* Directory of committed test data (tests/data), passed by meson as QD_TEST_DATA. */
static inline const char* qd_test_data_dir(void) {
  const char* d = getenv("QD_TEST_DATA");
  return d && *d ? d : "tests/data";
}

/* A per-test scratch directory under the build tree, passed by meson as QD_TEST_TMP. */
static inline const char* qd_test_tmp_dir(void) {
  const char* d = getenv("QD_TEST_TMP");
  return d && *d ? d : "/tmp";
}

/* A whole file as a NUL-terminated string (caller frees); fails the test when it cannot be read. */
static inline char* qd_test_read_file(const char* path) {
  FILE* f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* b = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  fclose(f);
  return b;
}

#define QD_TEST_MAIN(make_suite)                             \
  int main(void) {                                           \
    SRunner* sr = srunner_create(make_suite());              \
    srunner_run_all(sr, CK_NORMAL);                          \
    int failed = srunner_ntests_failed(sr);                  \
    srunner_free(sr);                                        \
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;        \
  }

#endif /* QD_TEST_H */
