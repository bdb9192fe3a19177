/* Strict JSON parser for untrusted input: see ir/strict_json.h for the contract.
 *
 * Shape of the implementation:
 *   - the whole buffer is checked as UTF-8 first, so an encoding error is reported as one (with its offset)
 *     whatever token it sits in, and the grammar pass can copy multi-byte characters without re-checking;
 *   - recursive descent, depth-limited; the path to the current value lives in frames on the C stack, so error
 *     messages can name it without allocating;
 *   - every node, string and array lands in an arena owned by the document (one free walk at destroy, and an
 *     allocation failure anywhere just drops the arena); children are gathered on two scratch stacks shared by
 *     all levels and copied into the arena, exactly sized, when their container closes;
 *   - duplicate keys are found by sorting pointers to an object's members (n log n: a hostile header may have a
 *     million keys in one object). */
#include "ir/strict_json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- arena -------------------------------------------------------------------------------------------- */

typedef struct qd_json_chunk_s {
  struct qd_json_chunk_s* next;
  size_t size; /* bytes allocated for this chunk, header included */
  size_t used; /* bytes of data[] handed out */
  size_t cap;  /* bytes of data[] */
  _Alignas(16) unsigned char data[];
} qd_json_chunk_t;

struct qd_json_doc {
  qd_allocator_t alloc;
  qd_json_chunk_t* chunks; /* newest first */
  const qd_json_value_t* root;
};

#define QD_JSON_CHUNK_MIN_ ((size_t)16 * 1024)

static qd_status_t qd_json_arena_alloc_(qd_json_doc_t* doc, size_t size, void** out) {
  size = (size + 15) & ~(size_t)15;
  qd_json_chunk_t* c = doc->chunks;
  if (!c || c->cap - c->used < size) {
    size_t cap = size > QD_JSON_CHUNK_MIN_ ? size : QD_JSON_CHUNK_MIN_;
    if (cap > SIZE_MAX - sizeof(qd_json_chunk_t))
      return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "JSON arena request of %zu bytes overflows", size);
    void* p;
    QD_TRY(qd_malloc(doc->alloc, sizeof(qd_json_chunk_t) + cap, &p));
    qd_json_chunk_t* n = p;
    n->size = sizeof(qd_json_chunk_t) + cap;
    n->used = 0;
    n->cap = cap;
    /* A big one-off block goes behind the current chunk so the current chunk's free space stays usable. */
    if (c && cap == size && c->cap - c->used > 256) {
      n->next = c->next;
      c->next = n;
    } else {
      n->next = c;
      doc->chunks = n;
    }
    c = n;
  }
  *out = c->data + c->used;
  c->used += size;
  return QD_OK;
}

void qd_json_destroy(qd_json_doc_t* doc) {
  if (!doc) return;
  qd_allocator_t a = doc->alloc;
  qd_json_chunk_t* c = doc->chunks;
  while (c) {
    qd_json_chunk_t* next = c->next;
    qd_free(a, c, c->size);
    c = next;
  }
  qd_free(a, doc, sizeof *doc);
}

const qd_json_value_t* qd_json_root(const qd_json_doc_t* doc) { return doc ? doc->root : NULL; }

/* --- parser state ------------------------------------------------------------------------------------- */

/* One level of the path to the value being parsed, for messages: either an object key or an array index. */
typedef struct qd_json_path_s {
  const struct qd_json_path_s* parent;
  const char* key; /* NULL for an array element */
  size_t key_len;
  size_t index;
} qd_json_path_t;

typedef struct qd_json_parser {
  const unsigned char* s;
  size_t len;
  size_t pos;
  qd_json_options_t opt;
  qd_json_doc_t* doc;
  qd_allocator_t alloc;
  /* scratch stacks shared by all nesting levels */
  const qd_json_value_t** values;
  size_t values_len, values_cap;
  qd_json_member_t* members;
  size_t members_len, members_cap;
  const qd_json_member_t** sorted;
  size_t sorted_cap;
} qd_json_parser_t;

static qd_status_t qd_json_fail_(const qd_json_parser_t* p, qd_error_detail_t detail, size_t offset,
                                 const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static qd_status_t qd_json_fail_(const qd_json_parser_t* p, qd_error_detail_t detail, size_t offset,
                                 const char* fmt, ...) {
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  const char* src = p->opt.source_name;
  qd_status_code_t code = QD_CODE_BAD_INPUT;
  return qd_status_make(code, detail, __FILE__, __LINE__, "%s%s%s at byte %zu", src ? src : "", src ? ": " : "",
                        what, p->opt.base_offset + offset);
}

/* "'x'" for printable ASCII, "byte 0xNN" otherwise, for "unexpected ..." messages. */
static const char* qd_json_char_desc_(unsigned char c, char buf[16]) {
  if (c == '\'')
    snprintf(buf, 16, "\"'\"");
  else if (c >= 0x21 && c < 0x7f)
    snprintf(buf, 16, "'%c'", c);
  else
    snprintf(buf, 16, "byte 0x%02X", c);
  return buf;
}

/* Formats a path as $.key, $["odd key"], $[3]. */
static void qd_json_path_format_(const qd_json_path_t* path, char* buf, size_t size) {
  const qd_json_path_t* frames[QD_JSON_DEFAULT_MAX_DEPTH];
  size_t n = 0, skipped = 0;
  for (const qd_json_path_t* f = path; f; f = f->parent) {
    if (n < QD_JSON_DEFAULT_MAX_DEPTH)
      frames[n++] = f;
    else
      skipped++;
  }
  size_t used = (size_t)snprintf(buf, size, "$%s", skipped ? "..." : "");
  /* frames[] holds innermost first, and only the innermost levels when the path is very deep. */
  for (size_t i = n; i-- > 0 && used < size;) {
    const qd_json_path_t* f = frames[i];
    int w;
    if (!f->key) {
      w = snprintf(buf + used, size - used, "[%zu]", f->index);
    } else {
      bool ident = f->key_len > 0 && f->key_len <= 64;
      for (size_t k = 0; k < f->key_len && ident; k++) {
        char c = f->key[k];
        ident = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (k > 0 && c >= '0' && c <= '9');
      }
      char disp[96];
      qd_json_display(f->key, f->key_len, disp, sizeof disp);
      w = ident ? snprintf(buf + used, size - used, ".%s", disp) : snprintf(buf + used, size - used, "[\"%s\"]", disp);
    }
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* --- UTF-8 -------------------------------------------------------------------------------------------- */

/* Returns the length of the valid UTF-8 prefix; writes a reason when it stops early. */
static size_t qd_json_utf8_check_(const unsigned char* s, size_t len, const char** out_reason) {
  size_t i = 0;
  while (i < len) {
    unsigned char c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the first continuation byte */
    if (c < 0xC2) {
      *out_reason = c < 0xC0 ? "a continuation byte without a lead byte" : "an overlong encoding";
      return i;
    } else if (c < 0xE0) {
      need = 1;
    } else if (c < 0xF0) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;  /* below is overlong */
      if (c == 0xED) hi = 0x9F;  /* above is a UTF-16 surrogate */
    } else if (c < 0xF5) {
      need = 3;
      if (c == 0xF0) lo = 0x90;  /* below is overlong */
      if (c == 0xF4) hi = 0x8F;  /* above is past U+10FFFF */
    } else {
      *out_reason = c < 0xF8 ? "a code point above U+10FFFF" : "a byte that never appears in UTF-8";
      return i;
    }
    if (len - i <= need) {
      /* Might still be a bad continuation before the end; check what is there. */
      for (size_t k = 1; i + k < len; k++)
        if ((s[i + k] & 0xC0) != 0x80) {
          *out_reason = "a truncated multi-byte sequence";
          return i;
        }
      *out_reason = "a multi-byte sequence cut off by the end of the text";
      return i;
    }
    unsigned char c1 = s[i + 1];
    if (c1 < lo || c1 > hi) {
      if ((c1 & 0xC0) != 0x80)
        *out_reason = "a truncated multi-byte sequence";
      else if (c == 0xED)
        *out_reason = "an encoded UTF-16 surrogate";
      else if (c == 0xF4)
        *out_reason = "a code point above U+10FFFF";
      else
        *out_reason = "an overlong encoding";
      return i;
    }
    for (size_t k = 2; k <= need; k++)
      if ((s[i + k] & 0xC0) != 0x80) {
        *out_reason = "a truncated multi-byte sequence";
        return i;
      }
    i += need + 1;
  }
  return len;
}

static size_t qd_json_utf8_encode_(uint32_t cp, unsigned char* out) {
  if (cp < 0x80) {
    out[0] = (unsigned char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | (cp >> 6));
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | (cp >> 12));
    out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | (cp >> 18));
  out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* --- lexing helpers ----------------------------------------------------------------------------------- */

static void qd_json_skip_ws_(qd_json_parser_t* p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static qd_status_t qd_json_unexpected_(const qd_json_parser_t* p, const char* expected) {
  if (p->pos >= p->len)
    return qd_json_fail_(p, p->opt.syntax_detail, p->pos, "unexpected end of input; expected %s", expected);
  char cb[16];
  return qd_json_fail_(p, p->opt.syntax_detail, p->pos, "unexpected %s; expected %s",
                       qd_json_char_desc_(p->s[p->pos], cb), expected);
}

static int qd_json_hex_(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Reads 4 hex digits at p->pos + 2 (after "\u"); -1 when they are not hex. */
static long qd_json_read_u4_(const qd_json_parser_t* p, size_t at) {
  if (p->len - at < 6) return -1;
  long v = 0;
  for (size_t k = 0; k < 4; k++) {
    int h = qd_json_hex_(p->s[at + 2 + k]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

/* Parses a string starting at the opening quote; the decoded text goes into the arena. */
static qd_status_t qd_json_parse_string_(qd_json_parser_t* p, const char** out_str, size_t* out_len) {
  size_t start = p->pos; /* the opening quote */
  /* Pass 1: find the closing quote (decoded text is never longer than the raw text). */
  size_t i = start + 1;
  while (i < p->len && p->s[i] != '"') {
    if (p->s[i] == '\\') i++;
    i++;
  }
  if (i >= p->len) return qd_json_fail_(p, p->opt.syntax_detail, start, "unterminated string");
  size_t raw_len = i - start - 1;
  void* mem;
  QD_TRY(qd_json_arena_alloc_(p->doc, raw_len + 1, &mem));
  unsigned char* out = mem;
  size_t o = 0;
  /* Pass 2: decode and check. */
  size_t k = start + 1;
  while (k < i) {
    unsigned char c = p->s[k];
    if (c < 0x20)
      return qd_json_fail_(p, p->opt.syntax_detail, k, "control character 0x%02X inside a string (it must be escaped)",
                           c);
    if (c != '\\') {
      out[o++] = c;
      k++;
      continue;
    }
    unsigned char e = p->s[k + 1];
    switch (e) {
      case '"': out[o++] = '"'; k += 2; continue;
      case '\\': out[o++] = '\\'; k += 2; continue;
      case '/': out[o++] = '/'; k += 2; continue;
      case 'b': out[o++] = '\b'; k += 2; continue;
      case 'f': out[o++] = '\f'; k += 2; continue;
      case 'n': out[o++] = '\n'; k += 2; continue;
      case 'r': out[o++] = '\r'; k += 2; continue;
      case 't': out[o++] = '\t'; k += 2; continue;
      case 'u': break;
      default: {
        char cb[16];
        return qd_json_fail_(p, p->opt.syntax_detail, k, "invalid escape: backslash followed by %s",
                             qd_json_char_desc_(e, cb));
      }
    }
    long u = qd_json_read_u4_(p, k);
    if (u < 0 || k + 6 > i)
      return qd_json_fail_(p, p->opt.syntax_detail, k, "\\u must be followed by 4 hex digits");
    uint32_t cp = (uint32_t)u;
    size_t esc_at = k;
    k += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return qd_json_fail_(p, p->opt.utf8_detail, esc_at, "escape \\u%04X is a low surrogate without a high one",
                           (unsigned)cp);
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      long lo = (k + 6 <= i && p->s[k] == '\\' && p->s[k + 1] == 'u') ? qd_json_read_u4_(p, k) : -1;
      if (lo < 0xDC00 || lo > 0xDFFF)
        return qd_json_fail_(p, p->opt.utf8_detail, esc_at,
                             "escape \\u%04X is a high surrogate not followed by a low surrogate escape",
                             (unsigned)cp);
      cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
      k += 6;
    }
    o += qd_json_utf8_encode_(cp, out + o);
  }
  out[o] = '\0';
  p->pos = i + 1;
  *out_str = (const char*)out;
  *out_len = o;
  return QD_OK;
}

static qd_status_t qd_json_new_value_(qd_json_parser_t* p, qd_json_type_t type, size_t offset,
                                      qd_json_value_t** out) {
  void* mem;
  QD_TRY(qd_json_arena_alloc_(p->doc, sizeof(qd_json_value_t), &mem));
  qd_json_value_t* v = mem;
  memset(v, 0, sizeof *v);
  v->type = type;
  v->offset = p->opt.base_offset + offset;
  *out = v;
  return QD_OK;
}

static qd_status_t qd_json_parse_number_(qd_json_parser_t* p, const qd_json_value_t** out) {
  size_t start = p->pos, i = p->pos;
  const unsigned char* s = p->s;
  bool negative = false, integer = true;
  if (s[i] == '-') {
    negative = true;
    i++;
  }
  if (i >= p->len || s[i] < '0' || s[i] > '9')
    return qd_json_fail_(p, p->opt.syntax_detail, start, "invalid number: '-' must be followed by a digit");
  if (s[i] == '0') {
    i++;
    if (i < p->len && s[i] >= '0' && s[i] <= '9')
      return qd_json_fail_(p, p->opt.syntax_detail, start, "invalid number: leading zeros are not allowed");
  } else {
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < p->len && s[i] == '.') {
    integer = false;
    i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9')
      return qd_json_fail_(p, p->opt.syntax_detail, start, "invalid number: '.' must be followed by a digit");
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    integer = false;
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9')
      return qd_json_fail_(p, p->opt.syntax_detail, start, "invalid number: the exponent has no digits");
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  }
  size_t n = i - start;
  qd_json_value_t* v;
  QD_TRY(qd_json_new_value_(p, QD_JSON_NUMBER, start, &v));
  void* mem;
  QD_TRY(qd_json_arena_alloc_(p->doc, n + 1, &mem));
  memcpy(mem, s + start, n);
  ((char*)mem)[n] = '\0';
  v->u.number.raw = mem;
  v->u.number.raw_len = n;
  v->u.number.is_integer = integer;
  v->u.number.negative = negative;
  if (integer && !negative) {
    uint64_t acc = 0;
    bool fits = true;
    for (size_t k = start; k < i; k++) {
      uint64_t d = (uint64_t)(s[k] - '0');
      if (acc > (UINT64_MAX - d) / 10) {
        fits = false;
        break;
      }
      acc = acc * 10 + d;
    }
    v->u.number.fits_u64 = fits;
    v->u.number.u64 = fits ? acc : 0;
  }
  v->u.number.f64 = strtod(mem, NULL);
  p->pos = i;
  *out = v;
  return QD_OK;
}

static qd_status_t qd_json_grow_(qd_allocator_t a, void** buf, size_t* cap, size_t elem, size_t need) {
  if (need <= *cap) return QD_OK;
  size_t ncap = *cap ? *cap : 16;
  while (ncap < need) {
    if (ncap > SIZE_MAX / 2 / elem) return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "JSON scratch stack overflows");
    ncap *= 2;
  }
  void* nb;
  QD_TRY(qd_realloc(a, *buf, *cap * elem, ncap * elem, &nb));
  *buf = nb;
  *cap = ncap;
  return QD_OK;
}

static int qd_json_member_cmp_(const void* a, const void* b) {
  const qd_json_member_t* x = *(const qd_json_member_t* const*)a;
  const qd_json_member_t* y = *(const qd_json_member_t* const*)b;
  size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
  int c = memcmp(x->key, y->key, n);
  if (c) return c;
  if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
  /* Equal keys: document order (members sit in one array in that order). */
  return x < y ? -1 : (x > y ? 1 : 0);
}

static qd_status_t qd_json_check_duplicates_(qd_json_parser_t* p, const qd_json_member_t* members, size_t count,
                                             const qd_json_path_t* path) {
  if (count < 2) return QD_OK;
  void* buf = p->sorted;
  QD_TRY(qd_json_grow_(p->alloc, &buf, &p->sorted_cap, sizeof(*p->sorted), count));
  p->sorted = buf;
  for (size_t i = 0; i < count; i++) p->sorted[i] = &members[i];
  qsort(p->sorted, count, sizeof(*p->sorted), qd_json_member_cmp_);
  /* Of all repeated keys, report the repeat that comes first in the document: what a reader would hit. */
  const qd_json_member_t* first_repeat = NULL;
  for (size_t i = 1; i < count; i++) {
    const qd_json_member_t* x = p->sorted[i - 1];
    const qd_json_member_t* y = p->sorted[i];
    if (x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0 && (!first_repeat || y < first_repeat))
      first_repeat = y;
  }
  if (!first_repeat) return QD_OK;
  char where[256], disp[160];
  qd_json_path_format_(path, where, sizeof where);
  qd_json_display(first_repeat->key, first_repeat->key_len, disp, sizeof disp);
  return qd_json_fail_(p, QD_E_ST_DUPLICATE_KEY, first_repeat->key_offset - p->opt.base_offset,
                       "duplicate key \"%s\" in the object at %s", disp, where);
}

static qd_status_t qd_json_parse_value_(qd_json_parser_t* p, size_t depth, const qd_json_path_t* path,
                                        const qd_json_value_t** out);

static qd_status_t qd_json_enter_(qd_json_parser_t* p, size_t depth, const qd_json_path_t* path) {
  if (depth < p->opt.max_depth) return QD_OK;
  char where[256];
  qd_json_path_format_(path, where, sizeof where);
  return qd_json_fail_(p, QD_E_ST_JSON_TOO_DEEP, p->pos, "nesting deeper than %zu levels at %s", p->opt.max_depth,
                       where);
}

static qd_status_t qd_json_parse_array_(qd_json_parser_t* p, size_t depth, const qd_json_path_t* path,
                                        const qd_json_value_t** out) {
  QD_TRY(qd_json_enter_(p, depth, path));
  size_t start = p->pos;
  p->pos++; /* '[' */
  size_t base = p->values_len;
  qd_json_skip_ws_(p);
  if (p->pos < p->len && p->s[p->pos] == ']') {
    p->pos++;
  } else {
    for (size_t index = 0;; index++) {
      qd_json_path_t frame = {path, NULL, 0, index};
      const qd_json_value_t* item;
      QD_TRY(qd_json_parse_value_(p, depth + 1, &frame, &item));
      void* buf = p->values;
      QD_TRY(qd_json_grow_(p->alloc, &buf, &p->values_cap, sizeof(*p->values), p->values_len + 1));
      p->values = buf;
      p->values[p->values_len++] = item;
      qd_json_skip_ws_(p);
      if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        continue;
      }
      if (p->pos < p->len && p->s[p->pos] == ']') {
        p->pos++;
        break;
      }
      return qd_json_unexpected_(p, "',' or ']' in an array");
    }
  }
  size_t count = p->values_len - base;
  qd_json_value_t* v;
  QD_TRY(qd_json_new_value_(p, QD_JSON_ARRAY, start, &v));
  if (count) {
    void* mem;
    QD_TRY(qd_json_arena_alloc_(p->doc, count * sizeof(*p->values), &mem));
    memcpy(mem, p->values + base, count * sizeof(*p->values));
    v->u.array.items = mem;
  }
  v->u.array.count = count;
  p->values_len = base;
  *out = v;
  return QD_OK;
}

static qd_status_t qd_json_parse_object_(qd_json_parser_t* p, size_t depth, const qd_json_path_t* path,
                                         const qd_json_value_t** out) {
  QD_TRY(qd_json_enter_(p, depth, path));
  size_t start = p->pos;
  p->pos++; /* '{' */
  size_t base = p->members_len;
  qd_json_skip_ws_(p);
  if (p->pos < p->len && p->s[p->pos] == '}') {
    p->pos++;
  } else {
    for (;;) {
      qd_json_skip_ws_(p);
      if (p->pos >= p->len || p->s[p->pos] != '"') return qd_json_unexpected_(p, "a string key in an object");
      qd_json_member_t m;
      m.key_offset = p->opt.base_offset + p->pos;
      QD_TRY(qd_json_parse_string_(p, &m.key, &m.key_len));
      qd_json_skip_ws_(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') return qd_json_unexpected_(p, "':' after an object key");
      p->pos++;
      qd_json_path_t frame = {path, m.key, m.key_len, 0};
      QD_TRY(qd_json_parse_value_(p, depth + 1, &frame, &m.value));
      void* buf = p->members;
      QD_TRY(qd_json_grow_(p->alloc, &buf, &p->members_cap, sizeof(*p->members), p->members_len + 1));
      p->members = buf;
      p->members[p->members_len++] = m;
      qd_json_skip_ws_(p);
      if (p->pos < p->len && p->s[p->pos] == ',') {
        p->pos++;
        continue;
      }
      if (p->pos < p->len && p->s[p->pos] == '}') {
        p->pos++;
        break;
      }
      return qd_json_unexpected_(p, "',' or '}' in an object");
    }
  }
  size_t count = p->members_len - base;
  qd_json_value_t* v;
  QD_TRY(qd_json_new_value_(p, QD_JSON_OBJECT, start, &v));
  if (count) {
    void* mem;
    QD_TRY(qd_json_arena_alloc_(p->doc, count * sizeof(*p->members), &mem));
    memcpy(mem, p->members + base, count * sizeof(*p->members));
    v->u.object.members = mem;
    QD_TRY(qd_json_check_duplicates_(p, mem, count, path));
  }
  v->u.object.count = count;
  p->members_len = base;
  *out = v;
  return QD_OK;
}

static qd_status_t qd_json_parse_literal_(qd_json_parser_t* p, const char* word, qd_json_type_t type,
                                          const qd_json_value_t** out) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
    return qd_json_fail_(p, p->opt.syntax_detail, p->pos, "invalid literal (expected '%s')", word);
  qd_json_value_t* v;
  QD_TRY(qd_json_new_value_(p, type, p->pos, &v));
  p->pos += n;
  *out = v;
  return QD_OK;
}

static qd_status_t qd_json_parse_value_(qd_json_parser_t* p, size_t depth, const qd_json_path_t* path,
                                        const qd_json_value_t** out) {
  qd_json_skip_ws_(p);
  if (p->pos >= p->len) return qd_json_unexpected_(p, "a value");
  unsigned char c = p->s[p->pos];
  switch (c) {
    case '{': return qd_json_parse_object_(p, depth, path, out);
    case '[': return qd_json_parse_array_(p, depth, path, out);
    case 't': return qd_json_parse_literal_(p, "true", QD_JSON_TRUE, out);
    case 'f': return qd_json_parse_literal_(p, "false", QD_JSON_FALSE, out);
    case 'n': return qd_json_parse_literal_(p, "null", QD_JSON_NULL, out);
    case '"': {
      qd_json_value_t* v;
      QD_TRY(qd_json_new_value_(p, QD_JSON_STRING, p->pos, &v));
      QD_TRY(qd_json_parse_string_(p, &v->u.string.str, &v->u.string.len));
      *out = v;
      return QD_OK;
    }
    default:
      if (c == '-' || (c >= '0' && c <= '9')) return qd_json_parse_number_(p, out);
      return qd_json_unexpected_(p, "a value");
  }
}

qd_status_t qd_json_parse(const char* text, size_t len, qd_allocator_t allocator, const qd_json_options_t* options,
                          qd_json_doc_t** out_doc) {
  *out_doc = NULL;
  qd_json_parser_t p;
  memset(&p, 0, sizeof p);
  if (options) p.opt = *options;
  if (p.opt.max_depth == 0) p.opt.max_depth = QD_JSON_DEFAULT_MAX_DEPTH;
  if (p.opt.syntax_detail == QD_E_NONE) p.opt.syntax_detail = QD_E_ST_HEADER_JSON;
  if (p.opt.utf8_detail == QD_E_NONE) p.opt.utf8_detail = QD_E_ST_HEADER_UTF8;
  p.s = (const unsigned char*)text;
  p.len = text ? len : 0;
  p.alloc = allocator;

  const char* reason = NULL;
  size_t valid = qd_json_utf8_check_(p.s, p.len, &reason);
  if (valid < p.len)
    return qd_json_fail_(&p, p.opt.utf8_detail, valid, "invalid UTF-8 (%s, byte 0x%02X)", reason, p.s[valid]);

  void* mem;
  QD_TRY(qd_malloc(allocator, sizeof(qd_json_doc_t), &mem));
  p.doc = mem;
  memset(p.doc, 0, sizeof *p.doc);
  p.doc->alloc = allocator;

  qd_status_t status = QD_OK;
  const qd_json_value_t* root = NULL;
  qd_json_skip_ws_(&p);
  if (p.pos >= p.len) {
    status = qd_json_fail_(&p, p.opt.syntax_detail, p.pos, "empty document");
    goto done;
  }
  QD_CHECK_GOTO(status, qd_json_parse_value_(&p, 0, NULL, &root), done);
  if (p.opt.trailing == QD_JSON_TRAILING_SPACES) {
    while (p.pos < p.len && p.s[p.pos] == ' ') p.pos++;
  } else {
    qd_json_skip_ws_(&p);
  }
  if (p.pos < p.len) {
    char cb[16];
    status = qd_json_fail_(&p, p.opt.syntax_detail, p.pos, "unexpected %s after the end of the JSON value%s",
                           qd_json_char_desc_(p.s[p.pos], cb),
                           p.opt.trailing == QD_JSON_TRAILING_SPACES ? " (only spaces may follow it)" : "");
    goto done;
  }
  p.doc->root = root;

done:
  qd_free(allocator, p.values, p.values_cap * sizeof(*p.values));
  qd_free(allocator, p.members, p.members_cap * sizeof(*p.members));
  qd_free(allocator, p.sorted, p.sorted_cap * sizeof(*p.sorted));
  if (status) {
    qd_json_destroy(p.doc);
    return status;
  }
  *out_doc = p.doc;
  return QD_OK;
}

/* --- accessors and display ---------------------------------------------------------------------------- */

const qd_json_value_t* qd_json_object_get(const qd_json_value_t* object, const char* key) {
  if (!object || object->type != QD_JSON_OBJECT) return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < object->u.object.count; i++) {
    const qd_json_member_t* m = &object->u.object.members[i];
    if (m->key_len == n && memcmp(m->key, key, n) == 0) return m->value;
  }
  return NULL;
}

const char* qd_json_type_name(qd_json_type_t type) {
  switch (type) {
    case QD_JSON_NULL: return "null";
    case QD_JSON_FALSE:
    case QD_JSON_TRUE: return "boolean";
    case QD_JSON_NUMBER: return "number";
    case QD_JSON_STRING: return "string";
    case QD_JSON_ARRAY: return "array";
    case QD_JSON_OBJECT: return "object";
  }
  return "unknown";
}

char* qd_json_display(const char* s, size_t len, char* buf, size_t size) {
  if (size == 0) return buf;
  const unsigned char* u = (const unsigned char*)s;
  size_t o = 0;
  size_t limit = size > 4 ? size - 4 : 0; /* room for "..." and the NUL */
  size_t cut = 0;                         /* where "..." goes if the text turns out not to fit */
  for (size_t i = 0; i < len;) {
    unsigned char c = u[i];
    char piece[8];
    size_t plen, consumed = 1;
    if (c < 0x20 || c == 0x7f) {
      plen = (size_t)snprintf(piece, sizeof piece, "\\x%02X", c);
    } else if (c == '\\') {
      piece[0] = '\\';
      piece[1] = '\\';
      plen = 2;
    } else if (c < 0x80) {
      piece[0] = (char)c;
      plen = 1;
    } else {
      const char* why;
      size_t rest = len - i > 4 ? 4 : len - i;
      size_t ok = qd_json_utf8_check_(u + i, rest, &why);
      size_t seq = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (seq > 1 && ok >= seq) {
        memcpy(piece, u + i, seq);
        plen = seq;
        consumed = seq;
      } else {
        plen = (size_t)snprintf(piece, sizeof piece, "\\x%02X", c);
      }
    }
    if (o + plen > size - 1) {
      o = cut;
      size_t dots = size - 1 - o < 3 ? size - 1 - o : 3;
      memcpy(buf + o, "...", dots);
      o += dots;
      break;
    }
    memcpy(buf + o, piece, plen);
    o += plen;
    if (o <= limit) cut = o;
    i += consumed;
  }
  buf[o] = '\0';
  return buf;
}

char* qd_json_describe(const qd_json_value_t* v, char* buf, size_t size) {
  if (size == 0) return buf;
  if (!v) {
    snprintf(buf, size, "missing");
    return buf;
  }
  switch (v->type) {
    case QD_JSON_NULL: snprintf(buf, size, "null"); break;
    case QD_JSON_FALSE: snprintf(buf, size, "false"); break;
    case QD_JSON_TRUE: snprintf(buf, size, "true"); break;
    case QD_JSON_NUMBER: qd_json_display(v->u.number.raw, v->u.number.raw_len, buf, size); break;
    case QD_JSON_STRING:
      if (size > 2) {
        buf[0] = '"';
        qd_json_display(v->u.string.str, v->u.string.len, buf + 1, size - 2);
        size_t n = strlen(buf);
        buf[n] = '"';
        buf[n + 1] = '\0';
      } else {
        buf[0] = '\0';
      }
      break;
    case QD_JSON_ARRAY: snprintf(buf, size, "an array"); break;
    case QD_JSON_OBJECT: snprintf(buf, size, "an object"); break;
  }
  return buf;
}
