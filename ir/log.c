/* The process-wide log sink. */
#include "qd/log.h"

#include <stdio.h>

static void qd_log_default_sink_(void* user, qd_log_level_t level, const char* message) {
  (void)user;
  fprintf(stderr, "qd: %s: %s\n", qd_log_level_name(level), message);
}

static qd_log_fn qd_log_fn_ = qd_log_default_sink_;
static void* qd_log_user_ = NULL;
static qd_log_level_t qd_log_level_ = QD_LOG_WARN;

void qd_log_set_callback(qd_log_fn fn, void* user) {
  qd_log_fn_ = fn ? fn : qd_log_default_sink_;
  qd_log_user_ = fn ? user : NULL;
}

void qd_log_set_level(qd_log_level_t level) { qd_log_level_ = level; }
qd_log_level_t qd_log_get_level(void) { return qd_log_level_; }

const char* qd_log_level_name(qd_log_level_t level) {
  switch (level) {
    case QD_LOG_ERROR: return "error";
    case QD_LOG_WARN: return "warning";
    case QD_LOG_INFO: return "info";
    case QD_LOG_DEBUG: return "debug";
  }
  return "log";
}

void qd_logv(qd_log_level_t level, const char* fmt, va_list ap) {
  if (level > qd_log_level_) return;
  char buf[2048];
  vsnprintf(buf, sizeof buf, fmt, ap);
  qd_log_fn_(qd_log_user_, level, buf);
}

void qd_log(qd_log_level_t level, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qd_logv(level, fmt, ap);
  va_end(ap);
}
