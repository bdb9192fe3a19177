/* Command-line parsing helpers; see cli.h. */
#include "compiler/cli.h"

#include <stdio.h>
#include <stdlib.h>

#include "qd/log.h"
#include "qd/progress.h"

void qdc_set_quiet(void) {
  qd_progress_sink_t sink = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  qd_progress_set_default_sink(&sink);
  qd_log_set_level(QD_LOG_ERROR);
}

bool qdc_parse_long(const char* text, long lo, long hi, long* out) {
  char* end;
  long v = strtol(text, &end, 10);
  if (end == text || *end || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool qdc_parse_resolution(const char* text, int64_t* out_width, int64_t* out_height) {
  char* end;
  long long w = strtoll(text, &end, 10);
  if (end == text || (*end != 'x' && *end != 'X' && *end != '*')) return false;
  const char* h_text = end + 1;
  long long h = strtoll(h_text, &end, 10);
  if (end == h_text || *end != '\0' || w <= 0 || h <= 0 || w > 65536 || h > 65536) return false;
  *out_width = w;
  *out_height = h;
  return true;
}

const char* qdc_format_count(uint64_t n, char* buf, size_t size) {
  static const char* const units[] = {"", " K", " M", " B", " T"};
  double v = (double)n;
  int u = 0;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, size, "%llu", (unsigned long long)n);
  else
    snprintf(buf, size, "%.*f%s", v < 10 ? 2 : 1, v, units[u]);
  return buf;
}
