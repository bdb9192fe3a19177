/* Recursive-descent evaluator for size expressions; see expr.h for the grammar. */
#include "ir/expr.h"

#include <ctype.h>
#include <string.h>

typedef struct qd_expr_parser {
  const char* text;
  const char* p;
  qd_expr_lookup_fn lookup;
  void* user;
  int depth;
} qd_expr_parser_t;

enum { QD_EXPR_MAX_DEPTH = 64 };

static qd_status_t qd_expr_parse_compare_(qd_expr_parser_t* ps, int64_t* out);

static void qd_expr_skip_ws_(qd_expr_parser_t* ps) {
  while (*ps->p && isspace((unsigned char)*ps->p)) ps->p++;
}

static qd_status_t qd_expr_syntax_(qd_expr_parser_t* ps, const char* what) {
  return QD_ERR(BAD_INPUT, GRAPH_EXPR_SYNTAX, "expression '%s': %s at column %d", ps->text, what,
                (int)(ps->p - ps->text) + 1);
}

static qd_status_t qd_expr_overflow_(qd_expr_parser_t* ps) {
  return QD_ERR(BAD_INPUT, GRAPH_EXPR_OVERFLOW, "expression '%s': the value overflows a 64-bit integer", ps->text);
}

static qd_status_t qd_expr_parse_primary_(qd_expr_parser_t* ps, int64_t* out) {
  qd_expr_skip_ws_(ps);
  const char* start = ps->p;
  if (isdigit((unsigned char)*ps->p)) {
    int64_t v = 0;
    while (isdigit((unsigned char)*ps->p)) {
      if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *ps->p - '0', &v))
        return qd_expr_overflow_(ps);
      ps->p++;
    }
    if (isalpha((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '.')
      return qd_expr_syntax_(ps, "a number runs into other characters");
    *out = v;
    return QD_OK;
  }
  if (isalpha((unsigned char)*ps->p) || *ps->p == '_') {
    while (isalnum((unsigned char)*ps->p) || *ps->p == '_') ps->p++;
    qd_status_t s = ps->lookup(ps->user, start, (size_t)(ps->p - start), out);
    if (s) return qd_status_annotate(s, "in expression '%s'", ps->text);
    return QD_OK;
  }
  if (*ps->p == '(') {
    ps->p++;
    QD_TRY(qd_expr_parse_compare_(ps, out));
    qd_expr_skip_ws_(ps);
    if (*ps->p != ')') return qd_expr_syntax_(ps, "expected ')'");
    ps->p++;
    return QD_OK;
  }
  if (*ps->p == '\0') return qd_expr_syntax_(ps, "unexpected end");
  return qd_expr_syntax_(ps, "unexpected character");
}

static qd_status_t qd_expr_parse_unary_(qd_expr_parser_t* ps, int64_t* out) {
  if (++ps->depth > QD_EXPR_MAX_DEPTH) return qd_expr_syntax_(ps, "nesting is too deep");
  qd_expr_skip_ws_(ps);
  qd_status_t s;
  if (*ps->p == '-' || *ps->p == '!') {
    char op = *ps->p++;
    int64_t v;
    s = qd_expr_parse_unary_(ps, &v);
    if (!s) {
      if (op == '-') {
        if (v == INT64_MIN) s = qd_expr_overflow_(ps);
        else *out = -v;
      } else {
        *out = !v;
      }
    }
  } else {
    s = qd_expr_parse_primary_(ps, out);
  }
  ps->depth--;
  return s;
}

static qd_status_t qd_expr_parse_product_(qd_expr_parser_t* ps, int64_t* out) {
  int64_t v;
  QD_TRY(qd_expr_parse_unary_(ps, &v));
  for (;;) {
    qd_expr_skip_ws_(ps);
    char op = *ps->p;
    if (op != '*' && op != '/' && op != '%') break;
    bool floor_div = op == '/' && ps->p[1] == '/';
    ps->p += floor_div ? 2 : 1;
    int64_t r;
    QD_TRY(qd_expr_parse_unary_(ps, &r));
    if (op == '*') {
      if (__builtin_mul_overflow(v, r, &v)) return qd_expr_overflow_(ps);
      continue;
    }
    if (r == 0) return QD_ERR(BAD_INPUT, GRAPH_EXPR_DIVISION, "expression '%s': division by zero", ps->text);
    if (v == INT64_MIN && r == -1) return qd_expr_overflow_(ps);
    if (op == '%') {
      v = v % r;
    } else if (floor_div) {
      int64_t q = v / r;
      if ((v % r != 0) && ((v < 0) != (r < 0))) q--;
      v = q;
    } else {
      if (v % r != 0)
        return QD_ERR(BAD_INPUT, GRAPH_EXPR_DIVISION,
                      "expression '%s': %lld is not a multiple of %lld ('/' divides exactly; use '//' to round down)",
                      ps->text, (long long)v, (long long)r);
      v /= r;
    }
  }
  *out = v;
  return QD_OK;
}

static qd_status_t qd_expr_parse_sum_(qd_expr_parser_t* ps, int64_t* out) {
  int64_t v;
  QD_TRY(qd_expr_parse_product_(ps, &v));
  for (;;) {
    qd_expr_skip_ws_(ps);
    char op = *ps->p;
    if (op != '+' && op != '-') break;
    ps->p++;
    int64_t r;
    QD_TRY(qd_expr_parse_product_(ps, &r));
    bool overflow = op == '+' ? __builtin_add_overflow(v, r, &v) : __builtin_sub_overflow(v, r, &v);
    if (overflow) return qd_expr_overflow_(ps);
  }
  *out = v;
  return QD_OK;
}

static qd_status_t qd_expr_parse_compare_(qd_expr_parser_t* ps, int64_t* out) {
  int64_t v;
  QD_TRY(qd_expr_parse_sum_(ps, &v));
  qd_expr_skip_ws_(ps);
  static const char* const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
  for (int i = 0; i < 6; i++) {
    size_t n = strlen(ops[i]);
    if (strncmp(ps->p, ops[i], n) != 0) continue;
    ps->p += n;
    int64_t r;
    QD_TRY(qd_expr_parse_sum_(ps, &r));
    switch (i) {
      case 0: v = v == r; break;
      case 1: v = v != r; break;
      case 2: v = v <= r; break;
      case 3: v = v >= r; break;
      case 4: v = v < r; break;
      default: v = v > r; break;
    }
    break;
  }
  *out = v;
  return QD_OK;
}

qd_status_t qd_expr_eval(const char* text, qd_expr_lookup_fn lookup, void* user, int64_t* out_value) {
  qd_expr_parser_t ps = {text, text, lookup, user, 0};
  int64_t v;
  QD_TRY(qd_expr_parse_compare_(&ps, &v));
  qd_expr_skip_ws_(&ps);
  if (*ps.p != '\0') return qd_expr_syntax_(&ps, "unexpected trailing characters");
  *out_value = v;
  return QD_OK;
}

int qd_expr_is_name(const char* text) {
  if (!(isalpha((unsigned char)*text) || *text == '_')) return 0;
  for (const char* p = text; *p; p++)
    if (!(isalnum((unsigned char)*p) || *p == '_')) return 0;
  return 1;
}
