/* Progress reporting: a redrawn bar on terminals, a line per tenth elsewhere, nothing when quiet. */
#include "qd/progress.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static qd_progress_sink_t qd_progress_default_ = {QD_PROGRESS_AUTO, NULL, NULL, NULL, 0.5};

void qd_progress_set_default_sink(const qd_progress_sink_t* sink) {
  if (sink)
    qd_progress_default_ = *sink;
  else
    qd_progress_default_ = (qd_progress_sink_t){QD_PROGRESS_AUTO, NULL, NULL, NULL, 0.5};
}

const qd_progress_sink_t* qd_progress_default_sink(void) { return &qd_progress_default_; }

double qd_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool qd_parse_bytes(const char* text, uint64_t* out) {
  char* end;
  if (!text || !*text || *text == '-' || *text == ' ') return false;
  double v = strtod(text, &end);
  if (end == text || !isfinite(v) || v < 0) return false;
  double unit = 1;
  const char* units = "KMGT";
  const char* u = *end ? strchr(units, toupper((unsigned char)*end)) : NULL;
  if (u && *end) {
    for (const char* k = units; k <= u; k++) unit *= 1024;
    end++;
    if (end[0] == 'i' && end[1] == 'B') end += 2;
    else if (end[0] == 'B') end++;
  } else if (*end == 'B') {
    end++;
  }
  if (*end) return false;
  double bytes = v * unit;
  if (bytes >= 18446744073709551616.0) return false;
  *out = (uint64_t)bytes;
  return true;
}

char* qd_format_bytes(uint64_t bytes, char* buf, size_t size) {
  static const char* const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%llu B", (unsigned long long)bytes);
  else
    snprintf(buf, size, "%.*f %s", v < 10 ? 2 : 1, v, units[u]);
  return buf;
}

static FILE* qd_progress_stream_(const qd_progress_t* p) { return p->sink.stream ? p->sink.stream : stderr; }

static void qd_progress_amount_(const qd_progress_t* p, uint64_t n, char* buf, size_t size) {
  if (p->bytes)
    qd_format_bytes(n, buf, size);
  else
    snprintf(buf, size, "%llu", (unsigned long long)n);
}

static void qd_progress_rate_eta_(const qd_progress_t* p, double elapsed, char* rate, size_t rate_size, char* eta,
                                  size_t eta_size) {
  rate[0] = eta[0] = '\0';
  if (elapsed <= 0.05 || p->done == 0) return;
  double per_s = (double)p->done / elapsed;
  if (p->bytes) {
    char b[32];
    snprintf(rate, rate_size, "%s/s", qd_format_bytes((uint64_t)per_s, b, sizeof b));
  } else {
    snprintf(rate, rate_size, "%.*f %s/s", per_s < 10 ? 2 : 1, per_s, p->unit);
  }
  if (p->total > p->done) {
    double left = (double)(p->total - p->done) / per_s;
    if (left < 100)
      snprintf(eta, eta_size, "ETA %.0fs", left);
    else
      snprintf(eta, eta_size, "ETA %dm%02ds", (int)(left / 60), (int)left % 60);
  }
}

static void qd_progress_draw_(qd_progress_t* p, double now, bool final) {
  FILE* f = qd_progress_stream_(p);
  double elapsed = now - p->t_start;
  char done_s[32], total_s[32], rate[48], eta[32];
  qd_progress_amount_(p, p->done, done_s, sizeof done_s);
  qd_progress_amount_(p, p->total, total_s, sizeof total_s);
  qd_progress_rate_eta_(p, elapsed, rate, sizeof rate, eta, sizeof eta);
  const char* unit = p->bytes ? "" : p->unit;
  if (p->draw_bar) {
    enum { width = 28 };
    int filled = p->total ? (int)((double)p->done / (double)p->total * width) : 0;
    if (filled > width) filled = width;
    char bar[width + 1];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : (i == filled ? '>' : ' ');
    if (filled == width) bar[width - 1] = '#';
    bar[width] = '\0';
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 0;
    fprintf(f, "\r%-12s [%s] %3d%%  %s/%s %s  %-14s %-10s", p->label, bar, pct, done_s, total_s, unit, rate, eta);
    if (final) fputc('\n', f);
    fflush(f);
  } else {
    if (p->total)
      fprintf(f, "%s: %d%% (%s of %s %s%s%s%s%s)\n", p->label, (int)(100.0 * (double)p->done / (double)p->total),
              done_s, total_s, unit, rate[0] ? ", " : "", rate, eta[0] ? ", " : "", eta);
    else
      fprintf(f, "%s: %s %s\n", p->label, done_s, unit);
    fflush(f);
  }
  p->t_last_draw = now;
  p->printed = true;
}

void qd_progress_begin(qd_progress_t* p, const qd_progress_sink_t* sink, const char* label, uint64_t total,
                       const char* unit) {
  memset(p, 0, sizeof *p);
  p->sink = sink ? *sink : qd_progress_default_;
  snprintf(p->label, sizeof p->label, "%s", label ? label : "");
  snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "");
  p->bytes = unit && strcmp(unit, "B") == 0;
  p->total = total;
  p->t_start = qd_now_seconds();
  p->t_last_draw = 0;
  p->last_decile = 0;
  switch (p->sink.style) {
    case QD_PROGRESS_BAR: p->draw_bar = true; break;
    case QD_PROGRESS_LINES:
    case QD_PROGRESS_QUIET: p->draw_bar = false; break;
    case QD_PROGRESS_AUTO: p->draw_bar = isatty(fileno(qd_progress_stream_(p))) != 0; break;
  }
}

bool qd_progress_set(qd_progress_t* p, uint64_t done) {
  p->done = done;
  double now = qd_now_seconds();
  if (p->sink.fn && !p->sink.fn(p->sink.user, p->label, p->done, p->total, now - p->t_start)) p->cancelled = true;
  if (p->sink.style == QD_PROGRESS_QUIET || now - p->t_start < p->sink.delay_s) return !p->cancelled;
  if (p->draw_bar) {
    if (now - p->t_last_draw >= 0.1) qd_progress_draw_(p, now, false);
  } else if (p->total) {
    /* Plain lines: one per tenth of the work, so logs stay short. */
    int decile = (int)(10.0 * (double)p->done / (double)p->total);
    if (decile > p->last_decile && decile < 10) {
      p->last_decile = decile;
      qd_progress_draw_(p, now, false);
    }
  }
  return !p->cancelled;
}

bool qd_progress_advance(qd_progress_t* p, uint64_t amount) { return qd_progress_set(p, p->done + amount); }

void qd_progress_end(qd_progress_t* p) {
  double now = qd_now_seconds();
  if (p->sink.style == QD_PROGRESS_QUIET) return;
  if (!p->printed && now - p->t_start < p->sink.delay_s) return;
  FILE* f = qd_progress_stream_(p);
  if (p->draw_bar) {
    qd_progress_draw_(p, now, true);
    return;
  }
  char done_s[32], rate[48], eta[32];
  qd_progress_amount_(p, p->done, done_s, sizeof done_s);
  qd_progress_rate_eta_(p, now - p->t_start, rate, sizeof rate, eta, sizeof eta);
  fprintf(f, "%s: %s %s in %.2f s%s%s\n", p->label, done_s, p->bytes ? "" : p->unit, now - p->t_start,
          rate[0] ? ", " : "", rate);
  fflush(f);
}
