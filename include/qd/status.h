/* qd: status values.
 *
 * Every fallible function returns a qd_status_t. QD_OK (NULL) means success and costs nothing: no allocation,
 * no formatting. An error is an owned heap object carrying
 *   - a coarse code (what kind of failure: bad input, out of memory, no device, ...),
 *   - a detail (which exact rule was broken: one value per rejection rule, see qd/errors.def),
 *   - a message, the source location that raised it, and a chain of context added on the way up
 *     ("while reading tensor 'x' of 'model.safetensors'").
 *
 * Ownership: whoever receives a non-OK status owns it and must either return it (transferring ownership),
 * or free it with qd_status_free(). qd_status_free(QD_OK) is a no-op.
 *
 * Statuses are allocated with the C library's malloc, never with an injected allocator: an allocator that is
 * failing on purpose (tests) or for real must still be able to report that failure. If even that malloc fails
 * the status degrades to a static out-of-memory status that needs no memory.
 */
#ifndef QD_STATUS_H
#define QD_STATUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_status_code {
  QD_CODE_OK = 0,
  QD_CODE_INVALID_ARGUMENT,  /* the caller passed something unusable (a flag, an option, a size) */
  QD_CODE_BAD_INPUT,         /* a file or document is malformed: safetensors, graph JSON, plan, tokenizer */
  QD_CODE_NOT_FOUND,         /* a file, tensor, key or entry that should exist does not */
  QD_CODE_IO,                /* the operating system refused a read, write, map or rename */
  QD_CODE_OUT_OF_MEMORY,     /* host allocation failed */
  QD_CODE_DEVICE_OUT_OF_MEMORY, /* GPU allocation failed */
  QD_CODE_UNAVAILABLE,       /* a library, driver or device is not present on this machine */
  QD_CODE_UNSUPPORTED,       /* understood, but not supported (a dtype, an architecture, a plan version) */
  QD_CODE_DEVICE,            /* the CUDA driver, NVRTC or cuBLASLt reported an error */
  QD_CODE_CANCELLED,         /* the user asked to stop */
  QD_CODE_INTERNAL,          /* a bug in qd: an invariant did not hold */
  QD_CODE_COUNT_
} qd_status_code_t;

/* Detail codes: one per rejection rule, stable across versions, listed in qd/errors.def. */
typedef enum qd_error_detail {
#define QD_ERROR_DETAIL(name, text) QD_E_##name,
#include "qd/errors.def"
#undef QD_ERROR_DETAIL
  QD_E_COUNT_
} qd_error_detail_t;

typedef struct qd_status_s* qd_status_t;
#define QD_OK ((qd_status_t)NULL)

/* Creating statuses. Prefer the macros below, which record the source location. */
qd_status_t qd_status_make(qd_status_code_t code, qd_error_detail_t detail, const char* file, int line,
                           const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
qd_status_t qd_status_makev(qd_status_code_t code, qd_error_detail_t detail, const char* file, int line,
                            const char* fmt, va_list ap);

/* Adds one line of context to an error; returns the same status. QD_OK passes through untouched. */
qd_status_t qd_status_annotate(qd_status_t status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void qd_status_free(qd_status_t status);

/* Accessors. All accept QD_OK. */
qd_status_code_t qd_status_code(qd_status_t status);
qd_error_detail_t qd_status_detail(qd_status_t status);
const char* qd_status_message(qd_status_t status);  /* innermost message, without context */
const char* qd_status_file(qd_status_t status);
int qd_status_line(qd_status_t status);
size_t qd_status_context_count(qd_status_t status);
const char* qd_status_context(qd_status_t status, size_t index); /* 0 = innermost */

const char* qd_status_code_name(qd_status_code_t code);   /* "bad input" */
const char* qd_error_detail_name(qd_error_detail_t detail); /* "ST_HEADER_TOO_LARGE" */
const char* qd_error_detail_text(qd_error_detail_t detail); /* one-line description of the rule */

/* Formats "message (context 0; context 1; ...)" into buf, always NUL-terminated; returns the length it wanted. */
size_t qd_status_format(qd_status_t status, char* buf, size_t size);
/* Prints "<prefix>: error: <formatted>\n", with "[file:line]" appended when verbose. */
void qd_status_fprint(FILE* stream, const char* prefix, qd_status_t status, bool verbose);

/* Returns a status whose detail is `detail` and whose message includes the detail name: for tests. */
bool qd_status_is(qd_status_t status, qd_error_detail_t detail);

#define QD_ERR(code, detail, ...) qd_status_make(QD_CODE_##code, QD_E_##detail, __FILE__, __LINE__, __VA_ARGS__)

/* Propagates a non-OK status to the caller. */
#define QD_TRY(expr)                \
  do {                              \
    qd_status_t qd_try_s_ = (expr); \
    if (qd_try_s_) return qd_try_s_; \
  } while (0)

/* Propagates a non-OK status to the caller with one line of context. */
#define QD_TRY_CTX(expr, ...)                                        \
  do {                                                               \
    qd_status_t qd_try_s_ = (expr);                                  \
    if (qd_try_s_) return qd_status_annotate(qd_try_s_, __VA_ARGS__); \
  } while (0)

/* For functions with cleanup: assign to a local `status` and jump to a label on failure. */
#define QD_CHECK_GOTO(status_var, expr, label) \
  do {                                         \
    (status_var) = (expr);                     \
    if (status_var) goto label;                \
  } while (0)

#ifdef __cplusplus
}
#endif
#endif /* QD_STATUS_H */
