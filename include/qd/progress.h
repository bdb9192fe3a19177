/* qd: progress reporting for long work (quantizing, autotuning, reading weights, denoising steps).
 *
 * A qd_progress_t lives on the caller's stack between begin and end. Where it goes is decided by a sink:
 *   - QD_PROGRESS_AUTO: a bar with rate and ETA when the stream is a terminal, plain lines otherwise;
 *   - QD_PROGRESS_BAR / QD_PROGRESS_LINES: forced;
 *   - QD_PROGRESS_QUIET: nothing (--quiet).
 * A sink may also carry a callback, which receives every update (the public API's progress callback).
 * Passing NULL as the sink uses the process default (qd_progress_set_default_sink), which starts as AUTO on
 * stderr with a half-second delay, so that work which finishes quickly prints nothing.
 */
#ifndef QD_PROGRESS_H
#define QD_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qd_progress_style {
  QD_PROGRESS_AUTO = 0,
  QD_PROGRESS_BAR,
  QD_PROGRESS_LINES,
  QD_PROGRESS_QUIET,
} qd_progress_style_t;

/* Called on every update; return false to ask the work to stop (it then ends with QD_CODE_CANCELLED where the
 * work supports cancelling). */
typedef bool (*qd_progress_fn)(void* user, const char* label, uint64_t done, uint64_t total, double elapsed_s);

typedef struct qd_progress_sink {
  qd_progress_style_t style;
  FILE* stream;        /* NULL = stderr */
  qd_progress_fn fn;   /* optional */
  void* user;
  double delay_s;      /* print nothing until the work has run this long: quick work stays quiet */
} qd_progress_sink_t;

typedef struct qd_progress {
  qd_progress_sink_t sink;
  bool draw_bar;       /* resolved from the style and the stream */
  bool bytes;          /* unit is bytes: print 1.2 GB, 3.4 GB/s */
  bool cancelled;
  bool printed;        /* anything was drawn: the end line is owed */
  char label[48];
  char unit[16];
  uint64_t total;
  uint64_t done;
  double t_start;
  double t_last_draw;
  int last_decile;
} qd_progress_t;

void qd_progress_set_default_sink(const qd_progress_sink_t* sink);
const qd_progress_sink_t* qd_progress_default_sink(void);

/* unit: "B" for bytes (printed human-readable), or a noun such as "tensors", "steps". total may be 0 (unknown). */
void qd_progress_begin(qd_progress_t* p, const qd_progress_sink_t* sink, const char* label, uint64_t total,
                       const char* unit);
/* Both return false once the sink's callback asked to cancel. */
bool qd_progress_advance(qd_progress_t* p, uint64_t amount);
bool qd_progress_set(qd_progress_t* p, uint64_t done);
/* Prints the closing line ("label: 12 tensors in 1.3 s") and clears the bar. */
void qd_progress_end(qd_progress_t* p);

/* Monotonic seconds, for timing phases. */
double qd_now_seconds(void);
/* Formats a byte count as "512 B", "1.5 KiB", "6.7 GiB" into buf; returns buf. */
char* qd_format_bytes(uint64_t bytes, char* buf, size_t size);
/* Parses a size as people write them: "8G", "7.5GiB", "512M", "300MB", "1048576" (bytes). Units are binary
 * (K, M, G, T = 1024^1..4) with an optional "iB" or "B". False for anything else, a negative value or one past
 * 2^64. */
bool qd_parse_bytes(const char* text, uint64_t* out_bytes);

#ifdef __cplusplus
}
#endif
#endif /* QD_PROGRESS_H */
