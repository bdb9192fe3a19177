/* Command-line options that qdc compile and qdc quantize share; see compile.h. */
#include <string.h>

#include "compiler/cli.h"
#include "compiler/compile.h"

qdc_option_result_t qdc_compile_option(const char* arg, const char* v, qdc_compile_options_t* o,
                                       const char** out_message) {
  long n;
  *out_message = NULL;
  if (strcmp(arg, "-o") == 0 || strcmp(arg, "--output") == 0) {
    o->output = v;
  } else if (strcmp(arg, "--graph") == 0) {
    o->graph = v;
  } else if (strcmp(arg, "--config") == 0) {
    o->config = v;
  } else if (strcmp(arg, "--layout") == 0) {
    o->layout = v;
  } else if (strcmp(arg, "--blocksize") == 0) {
    if (!qdc_parse_long(v, 32, 4096, &n) || (n & (n - 1))) {
      *out_message = "--blocksize takes a power of two from 32 to 4096, not";
      return QDC_OPTION_BAD;
    }
    o->blocksize = (int32_t)n;
  } else if (strcmp(arg, "--keep") == 0) {
    if (o->keep_count == QDC_MAX_KEEP) {
      *out_message = "too many --keep patterns; the last is";
      return QDC_OPTION_BAD;
    }
    o->keep[o->keep_count++] = v;
  } else if (strcmp(arg, "--threads") == 0) {
    if (!qdc_parse_long(v, 1, 1024, &n)) {
      *out_message = "--threads takes 1 to 1024, not";
      return QDC_OPTION_BAD;
    }
    o->threads = (int)n;
  } else {
    return QDC_OPTION_UNKNOWN;
  }
  return QDC_OPTION_TAKEN;
}
