/* Status values: see include/qd/status.h for the contract.
 *
 * Layout: one malloc'd block for the status itself and its message; each context line is a separate node in a
 * singly linked list, newest first, so annotating never copies what is already there. */
#include "qd/status.h"

#include <stdlib.h>
#include <string.h>

typedef struct qd_status_context_s {
  struct qd_status_context_s* next; /* older (inner) context */
  char text[];
} qd_status_context_node_t;

struct qd_status_s {
  qd_status_code_t code;
  qd_error_detail_t detail;
  const char* file;
  int line;
  bool is_static;                       /* the out-of-memory fallback: never freed, never annotated */
  size_t context_count;
  qd_status_context_node_t* context;    /* newest first */
  char message[];
};

/* Returned when a status cannot be allocated: the program is out of memory and must still get an error. */
static struct qd_status_s qd_status_oom_fallback_ = {
    .code = QD_CODE_OUT_OF_MEMORY,
    .detail = QD_E_OUT_OF_MEMORY,
    .file = __FILE__,
    .line = __LINE__,
    .is_static = true,
};
static const char qd_status_oom_message_[] = "out of memory (while reporting an error)";

static const char* const qd_detail_names_[] = {
#define QD_ERROR_DETAIL(name, text) #name,
#include "qd/errors.def"
#undef QD_ERROR_DETAIL
};
static const char* const qd_detail_texts_[] = {
#define QD_ERROR_DETAIL(name, text) text,
#include "qd/errors.def"
#undef QD_ERROR_DETAIL
};

qd_status_t qd_status_makev(qd_status_code_t code, qd_error_detail_t detail, const char* file, int line,
                            const char* fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  struct qd_status_s* s = malloc(sizeof(*s) + (size_t)n + 1);
  if (!s) return &qd_status_oom_fallback_;
  s->code = code == QD_CODE_OK ? QD_CODE_INTERNAL : code;
  s->detail = (unsigned)detail < QD_E_COUNT_ ? detail : QD_E_NONE;
  s->file = file;
  s->line = line;
  s->is_static = false;
  s->context_count = 0;
  s->context = NULL;
  vsnprintf(s->message, (size_t)n + 1, fmt, ap);
  return s;
}

qd_status_t qd_status_make(qd_status_code_t code, qd_error_detail_t detail, const char* file, int line,
                           const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qd_status_t s = qd_status_makev(code, detail, file, line, fmt, ap);
  va_end(ap);
  return s;
}

qd_status_t qd_status_annotate(qd_status_t status, const char* fmt, ...) {
  if (!status || status->is_static) return status;
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  qd_status_context_node_t* node = malloc(sizeof(*node) + (size_t)n + 1);
  if (node) {
    vsnprintf(node->text, (size_t)n + 1, fmt, ap);
    node->next = status->context;
    status->context = node;
    status->context_count++;
  }
  /* A context line that cannot be allocated is dropped: the error itself still reaches the caller. */
  va_end(ap);
  return status;
}

void qd_status_free(qd_status_t status) {
  if (!status || status->is_static) return;
  qd_status_context_node_t* c = status->context;
  while (c) {
    qd_status_context_node_t* next = c->next;
    free(c);
    c = next;
  }
  free(status);
}

qd_status_code_t qd_status_code(qd_status_t s) { return s ? s->code : QD_CODE_OK; }
qd_error_detail_t qd_status_detail(qd_status_t s) { return s ? s->detail : QD_E_NONE; }
const char* qd_status_message(qd_status_t s) {
  if (!s) return "ok";
  return s->is_static ? qd_status_oom_message_ : s->message;
}
const char* qd_status_file(qd_status_t s) { return s ? s->file : ""; }
int qd_status_line(qd_status_t s) { return s ? s->line : 0; }
size_t qd_status_context_count(qd_status_t s) { return s ? s->context_count : 0; }

const char* qd_status_context(qd_status_t s, size_t index) {
  if (!s || index >= s->context_count) return NULL;
  /* The list is newest first; index 0 is the innermost (oldest) line. */
  size_t from_newest = s->context_count - 1 - index;
  qd_status_context_node_t* c = s->context;
  while (from_newest-- > 0) c = c->next;
  return c->text;
}

bool qd_status_is(qd_status_t s, qd_error_detail_t detail) { return s && s->detail == detail; }

const char* qd_status_code_name(qd_status_code_t code) {
  switch (code) {
    case QD_CODE_OK: return "ok";
    case QD_CODE_INVALID_ARGUMENT: return "invalid argument";
    case QD_CODE_BAD_INPUT: return "bad input";
    case QD_CODE_NOT_FOUND: return "not found";
    case QD_CODE_IO: return "i/o error";
    case QD_CODE_OUT_OF_MEMORY: return "out of memory";
    case QD_CODE_DEVICE_OUT_OF_MEMORY: return "out of GPU memory";
    case QD_CODE_UNAVAILABLE: return "unavailable";
    case QD_CODE_UNSUPPORTED: return "unsupported";
    case QD_CODE_DEVICE: return "device error";
    case QD_CODE_CANCELLED: return "cancelled";
    case QD_CODE_INTERNAL: return "internal error";
    case QD_CODE_COUNT_: break;
  }
  return "unknown";
}

const char* qd_error_detail_name(qd_error_detail_t d) {
  return (unsigned)d < QD_E_COUNT_ ? qd_detail_names_[d] : "UNKNOWN";
}
const char* qd_error_detail_text(qd_error_detail_t d) {
  return (unsigned)d < QD_E_COUNT_ ? qd_detail_texts_[d] : "unknown";
}

size_t qd_status_format(qd_status_t s, char* buf, size_t size) {
  size_t want = 0;
  int n = snprintf(buf, size, "%s", qd_status_message(s));
  if (n > 0) want += (size_t)n;
  /* Context reads innermost to outermost, the order in which it happened. */
  for (size_t i = 0; i < qd_status_context_count(s); i++) {
    const char* sep = i == 0 ? " (" : "; ";
    n = snprintf(want < size ? buf + want : NULL, want < size ? size - want : 0, "%s%s", sep,
                 qd_status_context(s, i));
    if (n > 0) want += (size_t)n;
  }
  if (qd_status_context_count(s) > 0) {
    n = snprintf(want < size ? buf + want : NULL, want < size ? size - want : 0, ")");
    if (n > 0) want += (size_t)n;
  }
  if (size > 0 && want >= size) buf[size - 1] = '\0';
  return want;
}

void qd_status_fprint(FILE* stream, const char* prefix, qd_status_t s, bool verbose) {
  if (!s) return;
  char small[1024];
  size_t want = qd_status_format(s, small, sizeof small);
  char* text = small;
  char* big = NULL;
  if (want >= sizeof small && (big = malloc(want + 1)) != NULL) {
    qd_status_format(s, big, want + 1);
    text = big;
  }
  if (prefix && *prefix)
    fprintf(stream, "%s: error: %s", prefix, text);
  else
    fprintf(stream, "error: %s", text);
  if (verbose)
    fprintf(stream, " [%s, %s, %s:%d]", qd_status_code_name(s->code), qd_error_detail_name(s->detail), s->file,
            s->line);
  fputc('\n', stream);
  free(big);
}
