/* Integer size expressions of graph descriptions: "heads * head_dim", "(height / 16) * (width / 16)".
 *
 * Grammar (whitespace ignored):
 *   expr    := compare
 *   compare := sum (("==" | "!=" | "<=" | ">=" | "<" | ">") sum)?
 *   sum     := product (("+" | "-") product)*
 *   product := unary (("*" | "/" | "//" | "%") unary)*
 *   unary   := ("-" | "!") unary | primary
 *   primary := integer | name | "(" expr ")"
 * "/" is exact division (an uneven division is an error, which is how "1000 is not a multiple of 16" is caught);
 * "//" floors. Comparisons and "!" give 0 or 1 (used by "when" conditions). Every operation is checked for
 * 64-bit overflow. Names are resolved through a callback, so the caller decides scoping.
 */
#ifndef QD_IR_EXPR_H
#define QD_IR_EXPR_H

#include <stddef.h>
#include <stdint.h>

#include "qd/status.h"

/* Returns QD_OK and the value, or an error (GRAPH_EXPR_UNKNOWN_NAME when the name is not defined). */
typedef qd_status_t (*qd_expr_lookup_fn)(void* user, const char* name, size_t len, int64_t* out_value);

qd_status_t qd_expr_eval(const char* text, qd_expr_lookup_fn lookup, void* user, int64_t* out_value);

/* True when text is a bare name (then the caller may bind it instead of evaluating it). */
int qd_expr_is_name(const char* text);

#endif
