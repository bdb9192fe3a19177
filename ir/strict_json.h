/* qd internal: a strict JSON parser for untrusted input (safetensors headers, checkpoint indexes).
 *
 * Why not cJSON: it turns every number into a double (losing integer-ness and precision above 2^53), keeps the
 * last of two equal keys silently, and trusts its input's encoding. Here:
 *   - the whole document must be valid UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), and \u
 *     escapes must form valid code points (surrogate pairs are joined, lone surrogates rejected);
 *   - a key that appears twice in one object is an error naming the key and the object's path;
 *   - nesting is limited (default 64), so hostile input cannot exhaust the stack;
 *   - numbers keep their raw text, whether they are integers, their sign, and their exact u64 value when they are
 *     non-negative integers that fit;
 *   - object members keep their document order;
 *   - error messages carry the byte offset (plus a caller-chosen base, so a header inside a file reports file
 *     offsets).
 *
 * Ownership: qd_json_parse returns a document that owns every value, key and string in it (one arena from the
 * caller's allocator); it does not refer to the input buffer after returning. Free it with qd_json_destroy,
 * which accepts NULL. Values are read-only views valid until then.
 */
#ifndef QD_IR_STRICT_JSON_H
#define QD_IR_STRICT_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qd/allocator.h"
#include "qd/status.h"

typedef enum qd_json_type {
  QD_JSON_NULL = 0,
  QD_JSON_FALSE,
  QD_JSON_TRUE,
  QD_JSON_NUMBER,
  QD_JSON_STRING,
  QD_JSON_ARRAY,
  QD_JSON_OBJECT,
} qd_json_type_t;

typedef struct qd_json_value qd_json_value_t;

typedef struct qd_json_member {
  const char* key;   /* decoded, NUL-terminated; may contain NUL bytes (\u0000), so also check key_len */
  size_t key_len;
  size_t key_offset; /* byte offset of the key's opening quote, including the base offset */
  const qd_json_value_t* value;
} qd_json_member_t;

struct qd_json_value {
  qd_json_type_t type;
  size_t offset; /* byte offset of the value's first character, including the base offset */
  union {
    struct {
      const char* str;   /* decoded, NUL-terminated; may contain NUL bytes */
      size_t len;
    } string;
    struct {
      const char* raw;   /* the number exactly as written, NUL-terminated */
      size_t raw_len;
      bool is_integer;   /* no '.', 'e' or 'E' in the text */
      bool negative;     /* starts with '-' (so "-0" is negative) */
      bool fits_u64;     /* a non-negative integer whose value fits in u64: then u64 holds it exactly */
      uint64_t u64;
      double f64;        /* nearest double (strtod of raw, C locale decimal point assumed) */
    } number;
    struct {
      const qd_json_value_t* const* items;
      size_t count;
    } array;
    struct {
      const qd_json_member_t* members; /* document order */
      size_t count;
    } object;
  } u;
};

typedef enum qd_json_trailing {
  QD_JSON_TRAILING_WHITESPACE = 0, /* any JSON whitespace may follow the root value (RFC 8259) */
  QD_JSON_TRAILING_SPACES,         /* only 0x20 may follow it: safetensors pads its header with spaces */
} qd_json_trailing_t;

typedef struct qd_json_options {
  const char* source_name;        /* prefixes every message ("model.safetensors: ..."); NULL for none */
  size_t base_offset;             /* added to every reported offset */
  size_t max_depth;               /* 0 = QD_JSON_DEFAULT_MAX_DEPTH */
  qd_json_trailing_t trailing;
  qd_error_detail_t syntax_detail; /* detail for grammar errors; QD_E_NONE picks ST_HEADER_JSON */
  qd_error_detail_t utf8_detail;   /* detail for encoding errors; QD_E_NONE picks ST_HEADER_UTF8 */
} qd_json_options_t;

#define QD_JSON_DEFAULT_MAX_DEPTH 64

typedef struct qd_json_doc qd_json_doc_t;

/* Parses `len` bytes of `text` (need not be NUL-terminated). options may be NULL (all defaults).
 * Errors (code BAD_INPUT unless noted): options->utf8_detail for bad encoding, options->syntax_detail for bad
 * grammar or trailing content, ST_DUPLICATE_KEY, ST_JSON_TOO_DEEP; OUT_OF_MEMORY. */
qd_status_t qd_json_parse(const char* text, size_t len, qd_allocator_t allocator, const qd_json_options_t* options,
                          qd_json_doc_t** out_doc);
void qd_json_destroy(qd_json_doc_t* doc);
const qd_json_value_t* qd_json_root(const qd_json_doc_t* doc);

/* The value of member `key` (NUL-terminated, compared as bytes) of an object, or NULL (also for non-objects).
 * Linear in the member count. */
const qd_json_value_t* qd_json_object_get(const qd_json_value_t* object, const char* key);
const char* qd_json_type_name(qd_json_type_t type); /* "object", "number", ... */

/* Writes s[0..len) into buf for an error message or a table: control bytes, DEL and backslash become \xNN / \\
 * escapes, valid UTF-8 is kept, and text longer than about `size` is cut at a character boundary with "...".
 * Always NUL-terminates (size > 0); returns buf. */
char* qd_json_display(const char* s, size_t len, char* buf, size_t size);

/* Writes a short description of a value for messages: the raw number text, a quoted (displayed) string, or the
 * type name ("an object"). Returns buf. */
char* qd_json_describe(const qd_json_value_t* value, char* buf, size_t size);

#endif /* QD_IR_STRICT_JSON_H */
