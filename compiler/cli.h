/* Small command-line parsing helpers shared by qdc's subcommands. */
#ifndef QDC_CLI_H
#define QDC_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* -q: no progress, and only errors logged. */
void qdc_set_quiet(void);

/* A whole decimal integer in [lo, hi]; false otherwise (trailing text, overflow, out of range). */
bool qdc_parse_long(const char* text, long lo, long hi, long* out);

/* Parses "1024x768" (also "1024X768", "1024*768"); false on anything else or sides outside 1..65536. */
bool qdc_parse_resolution(const char* text, int64_t* out_width, int64_t* out_height);

/* 131920 -> "131.9 K", 11901408320 -> "11.90 B" (decimal units, as model sizes are quoted). */
const char* qdc_format_count(uint64_t count, char* buf, size_t size);

#endif
