/* qd: logging through one process-wide callback.
 *
 * Library code never prints on its own except through here. The default sink writes "qd: warning: ..." lines
 * to stderr for messages at or above the current level (QD_LOG_WARN by default). Applications that embed qd
 * install their own callback; the two executables raise the level with --verbose and lower it with --quiet.
 * The callback and level are process-wide, set before work starts (not synchronized against running work).
 */
#ifndef QD_LOG_H
#define QD_LOG_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_log_level {
  QD_LOG_ERROR = 0,
  QD_LOG_WARN = 1,
  QD_LOG_INFO = 2,
  QD_LOG_DEBUG = 3,
} qd_log_level_t;

typedef void (*qd_log_fn)(void* user, qd_log_level_t level, const char* message);

/* Installs a sink; NULL restores the default stderr sink. */
void qd_log_set_callback(qd_log_fn fn, void* user);
/* Messages above this level are dropped before formatting. */
void qd_log_set_level(qd_log_level_t level);
qd_log_level_t qd_log_get_level(void);
const char* qd_log_level_name(qd_log_level_t level);

void qd_log(qd_log_level_t level, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void qd_logv(qd_log_level_t level, const char* fmt, va_list ap);

#define QD_LOG_ERROR(...) qd_log(QD_LOG_ERROR, __VA_ARGS__)
#define QD_LOG_WARN(...) qd_log(QD_LOG_WARN, __VA_ARGS__)
#define QD_LOG_INFO(...) qd_log(QD_LOG_INFO, __VA_ARGS__)
#define QD_LOG_DEBUG(...) qd_log(QD_LOG_DEBUG, __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#endif /* QD_LOG_H */
