/* Opening tokenizers from files: a diffusers directory, a tokenizer.json, a spiece.model
 * (qd_tokenizer_open in include/qd/tokenizer.h). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ir/file_read.h"
#include "runtime/tokenizer_clip.h"
#include "runtime/tokenizer_internal.h"
#include "runtime/tokenizer_t5.h"
#include "runtime/unicode.h"

#define META_CP 0x2581u /* '▁', SentencePiece's space */

/* --- reading -------------------------------------------------------------------------------------------------- */

/* A new status with `detail` and the old one's text (strict_json reports with the safetensors details). */
static qd_status_t retag_(qd_status_t s, qd_error_detail_t detail) {
  char msg[1024];
  qd_status_format(s, msg, sizeof msg);
  qd_status_code_t code = qd_status_code(s);
  qd_status_free(s);
  return qd_status_make(code, detail, __FILE__, __LINE__, "%s", msg);
}

qd_status_t qd_tok_parse_json(const char* text, size_t len, const char* source, qd_allocator_t a,
                              qd_json_doc_t** out_doc) {
  qd_json_options_t opt = {.source_name = source, .syntax_detail = QD_E_TOK_JSON, .utf8_detail = QD_E_TOK_JSON_UTF8};
  qd_status_t s = qd_json_parse(text, len, a, &opt, out_doc);
  if (s && qd_status_detail(s) == QD_E_ST_DUPLICATE_KEY) return retag_(s, QD_E_TOK_JSON_DUPLICATE_KEY);
  if (s && qd_status_detail(s) == QD_E_ST_JSON_TOO_DEEP) return retag_(s, QD_E_TOK_JSON);
  if (!s && qd_json_root(*out_doc)->type != QD_JSON_OBJECT) {
    qd_json_destroy(*out_doc);
    *out_doc = NULL;
    return QD_ERR(BAD_INPUT, TOK_JSON_NOT_OBJECT, "%s: the document is not a JSON object", source);
  }
  return s;
}

typedef struct doc_ {
  char* text;
  size_t size;
  qd_json_doc_t* doc;
  char path[1024];
} doc_t;

static void doc_free_(qd_allocator_t a, doc_t* d) {
  qd_json_destroy(d->doc);
  qd_free(a, d->text, d->size + 1);
  memset(d, 0, sizeof *d);
}

/* Reads and parses dir/name into d; a missing file leaves d empty and returns OK when optional. */
static qd_status_t load_json_(qd_allocator_t a, const char* dir, const char* name, bool optional, uint64_t limit,
                              doc_t* d) {
  memset(d, 0, sizeof *d);
  if (dir) {
    snprintf(d->path, sizeof d->path, "%s/%s", dir, name);
  } else {
    snprintf(d->path, sizeof d->path, "%s", name);
  }
  qd_status_t s = qd_file_read_all(a, d->path, limit, QD_E_TOK_FILE_TOO_LARGE, &d->text, &d->size);
  if (s && optional && qd_status_code(s) == QD_CODE_NOT_FOUND) {
    qd_status_free(s);
    return QD_OK;
  }
  QD_TRY(s);
  s = qd_tok_parse_json(d->text, d->size, d->path, a, &d->doc);
  if (s) doc_free_(a, d);
  return s;
}

static bool file_exists_(const char* dir, const char* name) {
  char p[1100];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* --- special tokens and added tokens from the configs ----------------------------------------------------- */

/* A token named by a config: "text", {"content": "text", ...} or null/absent (*out NULL). */
static qd_status_t config_token_(const qd_json_value_t* v, const char* field, const char* what, const char** out,
                                 size_t* out_len) {
  *out = NULL;
  *out_len = 0;
  if (!v || v->type == QD_JSON_NULL) return QD_OK;
  if (v->type == QD_JSON_OBJECT) v = qd_json_object_get(v, "content");
  if (!v || v->type != QD_JSON_STRING)
    return QD_ERR(BAD_INPUT, TOK_CONFIG, "%s: %s is neither a string nor an object with a string content", what,
                  field);
  *out = v->u.string.str;
  *out_len = v->u.string.len;
  return QD_OK;
}

/* Resolves a special token named by the configs (or the kind's default, which may be absent from the vocabulary:
 * then there is none). `add` makes it an added token too, as transformers does; a tokenizer.json opened as a file
 * keeps its own added tokens. */
static qd_status_t resolve_special_(qd_tokenizer_t* t, const qd_json_value_t* cfg, const qd_json_value_t* map,
                                    const char* field, const char* fallback, bool add, const char* what,
                                    int32_t* out_id) {
  const char* s;
  size_t len;
  /* tokenizer_config.json wins over special_tokens_map.json, as transformers merges them */
  QD_TRY(config_token_(qd_json_object_get(cfg, field), field, what, &s, &len));
  if (!s) QD_TRY(config_token_(qd_json_object_get(map, field), field, what, &s, &len));
  if (!s && fallback) {
    if (qd_tok_lookup(t, fallback, strlen(fallback)) < 0) return QD_OK;
    s = fallback;
    len = strlen(fallback);
  }
  if (!s) return QD_OK;
  int32_t id = qd_tok_lookup(t, s, len);
  if (id < 0) {
    char shown[96];
    return QD_ERR(BAD_INPUT, TOK_SPECIAL_TOKEN, "%s: %s '%s' is not in the vocabulary", what, field,
                  qd_json_display(s, len, shown, sizeof shown));
  }
  *out_id = id;
  if (!add) return QD_OK;
  /* a token already listed (added_tokens_decoder, tokenizer.json) keeps its flags */
  for (size_t k = 0; k < t->added_count; k++)
    if (t->added[k].id == id) return QD_OK;
  return qd_tok_add_added(t, id, false, true);
}

/* Checks one added-token object ({id?, content, lstrip, rstrip, single_word, normalized, special}) and adds it.
 * id_hint >= 0 when the id comes from the key (added_tokens_decoder). */
static qd_status_t added_entry_(qd_tokenizer_t* t, const qd_json_value_t* e, int64_t id_hint, const char* what,
                                size_t index) {
  if (!e || e->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added token %zu is not an object", what, index);
  const qd_json_value_t* idv = qd_json_object_get(e, "id");
  const qd_json_value_t* content = qd_json_object_get(e, "content");
  int64_t id = id_hint;
  if (id_hint < 0) {
    if (!idv || idv->type != QD_JSON_NUMBER || !idv->u.number.is_integer || !idv->u.number.fits_u64 ||
        idv->u.number.u64 > INT32_MAX)
      return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added token %zu has no integer id", what, index);
    id = (int64_t)idv->u.number.u64;
  }
  if (!content || content->type != QD_JSON_STRING)
    return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added token %zu has no string content", what, index);
  static const char* const flags[] = {"lstrip", "rstrip", "single_word", "normalized", "special"};
  bool val[5] = {false, false, false, false, false};
  for (int k = 0; k < 5; k++) {
    const qd_json_value_t* f = qd_json_object_get(e, flags[k]);
    if (!f) continue;
    if (f->type != QD_JSON_TRUE && f->type != QD_JSON_FALSE)
      return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added token %zu: %s is not a boolean", what, index, flags[k]);
    val[k] = f->type == QD_JSON_TRUE;
  }
  if (!qd_json_object_get(e, "normalized")) val[3] = !val[4]; /* tokenizers' default: normalized = !special */
  char shown[96];
  if (val[0] || val[1] || val[2])
    return QD_ERR(UNSUPPORTED, TOK_ADDED_TOKEN_FLAGS, "%s: added token '%s' asks for lstrip/rstrip/single_word", what,
                  qd_json_display(content->u.string.str, content->u.string.len, shown, sizeof shown));
  int32_t have = qd_tok_lookup(t, content->u.string.str, content->u.string.len);
  if (have != id)
    return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN_ID, "%s: added token '%s' has id %lld, but the vocabulary gives it %d",
                  what, qd_json_display(content->u.string.str, content->u.string.len, shown, sizeof shown),
                  (long long)id, have);
  return qd_tok_add_added(t, (int32_t)id, val[3], val[4]);
}

static qd_status_t added_tokens_json_(qd_tokenizer_t* t, const qd_json_value_t* list, const char* what) {
  if (!list || list->type == QD_JSON_NULL) return QD_OK;
  if (list->type != QD_JSON_ARRAY) return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added_tokens is not an array", what);
  for (size_t i = 0; i < list->u.array.count; i++) QD_TRY(added_entry_(t, list->u.array.items[i], -1, what, i));
  return QD_OK;
}

/* tokenizer_config.json's added_tokens_decoder: {"id": {content, flags}}. */
static qd_status_t added_decoder_(qd_tokenizer_t* t, const qd_json_value_t* dec, const char* what) {
  if (!dec || dec->type == QD_JSON_NULL) return QD_OK;
  if (dec->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, TOK_CONFIG, "%s: added_tokens_decoder is not an object", what);
  for (size_t i = 0; i < dec->u.object.count; i++) {
    const qd_json_member_t* m = &dec->u.object.members[i];
    uint64_t id = 0;
    bool ok = m->key_len > 0 && m->key_len <= 9;
    for (size_t k = 0; k < m->key_len && ok; k++) {
      ok = m->key[k] >= '0' && m->key[k] <= '9';
      id = id * 10 + (uint64_t)(m->key[k] - '0');
    }
    if (!ok) return QD_ERR(BAD_INPUT, TOK_ADDED_TOKEN, "%s: added_tokens_decoder key %zu is not an id", what, i);
    QD_TRY(added_entry_(t, m->value, (int64_t)id, what, i));
  }
  return QD_OK;
}

static qd_status_t model_max_length_(qd_tokenizer_t* t, const qd_json_value_t* cfg, const char* what) {
  const qd_json_value_t* v = qd_json_object_get(cfg, "model_max_length");
  if (!v || v->type == QD_JSON_NULL) return QD_OK;
  if (v->type != QD_JSON_NUMBER)
    return QD_ERR(BAD_INPUT, TOK_CONFIG, "%s: model_max_length is not a number", what);
  /* transformers writes a huge sentinel (1e30) for "no limit": keep the default then */
  if (v->u.number.is_integer && v->u.number.fits_u64 && v->u.number.u64 >= 1 &&
      v->u.number.u64 <= QD_TOKENIZER_MAX_LENGTH)
    t->model_max_length = (uint32_t)v->u.number.u64;
  return QD_OK;
}

/* The special tokens and added tokens that transformers derives from the config files (either may be NULL). */
static qd_status_t apply_configs_(qd_tokenizer_t* t, const qd_json_value_t* cfg, const qd_json_value_t* map,
                                  bool add, const char* what) {
  if (add) QD_TRY(added_decoder_(t, qd_json_object_get(cfg, "added_tokens_decoder"), what));
  QD_TRY(model_max_length_(t, cfg, what));
  if (t->model == QD_TOK_MODEL_BPE) {
    QD_TRY(resolve_special_(t, cfg, map, "bos_token", "<|startoftext|>", add, what, &t->bos_id));
    QD_TRY(resolve_special_(t, cfg, map, "eos_token", "<|endoftext|>", add, what, &t->eos_id));
    QD_TRY(resolve_special_(t, cfg, map, "pad_token", "<|endoftext|>", add, what, &t->pad_id));
    int32_t unk = t->unk_id;
    QD_TRY(resolve_special_(t, cfg, map, "unk_token", "<|endoftext|>", add, what, &unk));
    if (t->unk_id < 0) t->unk_id = unk;
  } else {
    QD_TRY(resolve_special_(t, cfg, map, "eos_token", "</s>", add, what, &t->eos_id));
    QD_TRY(resolve_special_(t, cfg, map, "pad_token", "<pad>", add, what, &t->pad_id));
    int32_t unk = QD_TOK_NONE;
    QD_TRY(resolve_special_(t, cfg, map, "unk_token", NULL, add, what, &unk));
    QD_TRY(resolve_special_(t, cfg, map, "bos_token", NULL, add, what, &t->bos_id));
  }
  if (!add) return QD_OK;
  /* additional special tokens (T5's sentinels): matched in prompts like the others */
  for (int pass = 0; pass < 2; pass++) {
    const qd_json_value_t* list = qd_json_object_get(pass ? map : cfg, "additional_special_tokens");
    if (!list || list->type == QD_JSON_NULL) continue;
    if (list->type != QD_JSON_ARRAY)
      return QD_ERR(BAD_INPUT, TOK_CONFIG, "%s: additional_special_tokens is not an array", what);
    for (size_t i = 0; i < list->u.array.count; i++) {
      const char* s;
      size_t len;
      QD_TRY(config_token_(list->u.array.items[i], "additional_special_tokens[]", what, &s, &len));
      if (!s) continue;
      int32_t id = qd_tok_lookup(t, s, len);
      if (id < 0) {
        char shown[96];
        return QD_ERR(BAD_INPUT, TOK_SPECIAL_TOKEN, "%s: additional special token '%s' is not in the vocabulary",
                      what, qd_json_display(s, len, shown, sizeof shown));
      }
      bool listed = false;
      for (size_t k = 0; k < t->added_count; k++) listed |= t->added[k].id == id;
      if (!listed) QD_TRY(qd_tok_add_added(t, id, false, true));
    }
  }
  return QD_OK;
}

/* --- the pipelines transformers builds in code (directories) ------------------------------------------------ */

static qd_status_t clip_pipeline_(qd_tokenizer_t* t) {
  QD_TRY(qd_tok_add_norm(t, QD_TOK_NORM_NFC, 0, 0, NULL, 0, NULL, 0));
  QD_TRY(qd_tok_add_norm(t, QD_TOK_NORM_REPLACE_WS_RUNS, 0, 0, NULL, 0, " ", 1));
  QD_TRY(qd_tok_add_norm(t, QD_TOK_NORM_LOWERCASE, 0, 0, NULL, 0, NULL, 0));
  QD_TRY(qd_tok_add_pre(t, QD_TOK_PRE_CLIP_SPLIT, 0, 0, 1));
  QD_TRY(qd_tok_add_pre(t, QD_TOK_PRE_BYTE_LEVEL, 0, 0, 1));
  if (!t->eow_suffix) {
    QD_TRY(qd_strndup(t->a, "</w>", 4, &t->eow_suffix));
    t->eow_suffix_len = 4;
  }
  return QD_OK;
}

static qd_status_t t5_pipeline_(qd_tokenizer_t* t) {
  if (t->charsmap) QD_TRY(qd_tok_add_norm(t, QD_TOK_NORM_PRECOMPILED, 0, 0, NULL, 0, NULL, 0));
  QD_TRY(qd_tok_add_pre(t, QD_TOK_PRE_WHITESPACE_SPLIT, 0, 0, 0));
  return qd_tok_add_pre(t, QD_TOK_PRE_METASPACE, META_CP, 1, 1);
}

/* T5Tokenizer appends <extra_id_99> .. <extra_id_0> when the vocabulary lacks them (a bare spiece.model). */
static qd_status_t t5_extra_ids_(qd_tokenizer_t* t, const qd_json_value_t* cfg, const char* what) {
  uint64_t extra = 100;
  const qd_json_value_t* v = qd_json_object_get(cfg, "extra_ids");
  if (v && v->type != QD_JSON_NULL) {
    if (v->type != QD_JSON_NUMBER || !v->u.number.is_integer || !v->u.number.fits_u64 || v->u.number.u64 > 100000)
      return QD_ERR(BAD_INPUT, TOK_CONFIG, "%s: extra_ids is not an integer of at most 100000", what);
    extra = v->u.number.u64;
  }
  if (extra == 0 || qd_tok_lookup(t, "<extra_id_0>", 12) >= 0) return QD_OK;
  char* names;
  qd_tok_entry_t* e;
  QD_TRY(qd_malloc(t->a, (size_t)extra * 24, (void**)&names));
  qd_status_t s = qd_malloc(t->a, (size_t)extra * sizeof *e, (void**)&e);
  if (s) {
    qd_free(t->a, names, (size_t)extra * 24);
    return s;
  }
  for (uint64_t i = 0; i < extra; i++) {
    char* p = names + i * 24;
    int n = snprintf(p, 24, "<extra_id_%llu>", (unsigned long long)(extra - 1 - i));
    e[i] = (qd_tok_entry_t){p, (size_t)n, 0, 0};
  }
  size_t old = t->vocab_count;
  s = qd_tok_append_tokens(t, e, (size_t)extra, what);
  if (!s) s = qd_tok_unigram_extend_scores(t, old);
  for (uint64_t i = 0; i < extra && !s; i++) s = qd_tok_add_added(t, (int32_t)(old + i), false, true);
  qd_free(t->a, names, (size_t)extra * 24);
  qd_free(t->a, e, (size_t)extra * sizeof *e);
  return s;
}

/* --- tokenizer.json components -------------------------------------------------------------------------------- */

static const char* type_of_(const qd_json_value_t* v) {
  const qd_json_value_t* ty = qd_json_object_get(v, "type");
  return ty && ty->type == QD_JSON_STRING ? ty->u.string.str : NULL;
}

static qd_status_t bool_field_(const qd_json_value_t* obj, const char* key, bool def, const char* what, bool* out) {
  const qd_json_value_t* v = qd_json_object_get(obj, key);
  *out = def;
  if (!v || v->type == QD_JSON_NULL) return QD_OK;
  if (v->type != QD_JSON_TRUE && v->type != QD_JSON_FALSE)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: %s.%s is not a boolean", what, type_of_(obj), key);
  *out = v->type == QD_JSON_TRUE;
  return QD_OK;
}

static qd_status_t normalizer_(qd_tokenizer_t* t, const qd_json_value_t* n, const char* what, int depth) {
  if (!n || n->type == QD_JSON_NULL) return QD_OK;
  const char* ty = type_of_(n);
  if (n->type != QD_JSON_OBJECT || !ty)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a normalizer is not an object with a type", what);
  if (strcmp(ty, "Sequence") == 0) {
    const qd_json_value_t* list = qd_json_object_get(n, "normalizers");
    if (!list || list->type != QD_JSON_ARRAY || depth > 2)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Sequence normalizer has no normalizers array", what);
    for (size_t i = 0; i < list->u.array.count; i++) QD_TRY(normalizer_(t, list->u.array.items[i], what, depth + 1));
    return QD_OK;
  }
  if (strcmp(ty, "NFC") == 0) return qd_tok_add_norm(t, QD_TOK_NORM_NFC, 0, 0, NULL, 0, NULL, 0);
  if (strcmp(ty, "Lowercase") == 0) return qd_tok_add_norm(t, QD_TOK_NORM_LOWERCASE, 0, 0, NULL, 0, NULL, 0);
  if (strcmp(ty, "Strip") == 0) {
    bool l, r;
    QD_TRY(bool_field_(n, "strip_left", true, what, &l));
    QD_TRY(bool_field_(n, "strip_right", true, what, &r));
    return qd_tok_add_norm(t, QD_TOK_NORM_STRIP, l, r, NULL, 0, NULL, 0);
  }
  if (strcmp(ty, "Replace") == 0) {
    const qd_json_value_t* pat = qd_json_object_get(n, "pattern");
    const qd_json_value_t* content = qd_json_object_get(n, "content");
    if (!content || content->type != QD_JSON_STRING || !pat || pat->type != QD_JSON_OBJECT)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Replace normalizer needs a pattern and a string content",
                    what);
    const qd_json_value_t* re = qd_json_object_get(pat, "Regex");
    const qd_json_value_t* str = qd_json_object_get(pat, "String");
    const char* c = content->u.string.str;
    size_t cl = content->u.string.len;
    if (str && str->type == QD_JSON_STRING)
      return qd_tok_add_norm(t, QD_TOK_NORM_REPLACE_STRING, 0, 0, str->u.string.str, str->u.string.len, c, cl);
    if (re && re->type == QD_JSON_STRING && strcmp(re->u.string.str, "\\s+") == 0)
      return qd_tok_add_norm(t, QD_TOK_NORM_REPLACE_WS_RUNS, 0, 0, NULL, 0, c, cl);
    if (re && re->type == QD_JSON_STRING && strcmp(re->u.string.str, " {2,}") == 0)
      return qd_tok_add_norm(t, QD_TOK_NORM_REPLACE_SPACE_RUNS, 0, 0, NULL, 0, c, cl);
    char shown[96];
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "%s: Replace with pattern %s is not implemented", what,
                  qd_json_describe(re ? re : pat, shown, sizeof shown));
  }
  if (strcmp(ty, "Precompiled") == 0) {
    const qd_json_value_t* cm = qd_json_object_get(n, "precompiled_charsmap");
    if (cm && cm->type == QD_JSON_NULL) return QD_OK; /* an empty charsmap changes nothing */
    if (!cm || cm->type != QD_JSON_STRING)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: Precompiled.precompiled_charsmap is not a string", what);
    if (cm->u.string.len == 0) return QD_OK;
    unsigned char* data;
    size_t size;
    QD_TRY(qd_tok_base64_decode(t->a, cm->u.string.str, cm->u.string.len, what, &data, &size));
    qd_status_t s = qd_tok_set_charsmap(t, data, size, what);
    qd_free(t->a, data, size ? size : 1);
    QD_TRY(s);
    return qd_tok_add_norm(t, QD_TOK_NORM_PRECOMPILED, 0, 0, NULL, 0, NULL, 0);
  }
  return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "%s: normalizer %s is not implemented", what, ty);
}

static const char clip_regex_special_[] =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";
static const char clip_regex_plain_[] = "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

static qd_status_t pre_tokenizer_(qd_tokenizer_t* t, const qd_json_value_t* p, const char* what, int depth) {
  if (!p || p->type == QD_JSON_NULL) return QD_OK;
  const char* ty = type_of_(p);
  if (p->type != QD_JSON_OBJECT || !ty)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a pre-tokenizer is not an object with a type", what);
  if (strcmp(ty, "Sequence") == 0) {
    const qd_json_value_t* list = qd_json_object_get(p, "pretokenizers");
    if (!list || list->type != QD_JSON_ARRAY || depth > 2)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a Sequence pre-tokenizer has no pretokenizers array", what);
    for (size_t i = 0; i < list->u.array.count; i++) QD_TRY(pre_tokenizer_(t, list->u.array.items[i], what, depth + 1));
    return QD_OK;
  }
  if (strcmp(ty, "WhitespaceSplit") == 0) return qd_tok_add_pre(t, QD_TOK_PRE_WHITESPACE_SPLIT, 0, 0, 0);
  if (strcmp(ty, "ByteLevel") == 0) {
    bool prefix, use_regex;
    QD_TRY(bool_field_(p, "add_prefix_space", true, what, &prefix));
    QD_TRY(bool_field_(p, "use_regex", true, what, &use_regex));
    return qd_tok_add_pre(t, QD_TOK_PRE_BYTE_LEVEL, 0, prefix, use_regex);
  }
  if (strcmp(ty, "Split") == 0) {
    const qd_json_value_t* pat = qd_json_object_get(p, "pattern");
    const qd_json_value_t* re = qd_json_object_get(pat, "Regex");
    const qd_json_value_t* behavior = qd_json_object_get(p, "behavior");
    bool invert;
    QD_TRY(bool_field_(p, "invert", false, what, &invert));
    bool removed = behavior && behavior->type == QD_JSON_STRING && strcmp(behavior->u.string.str, "Removed") == 0;
    if (re && re->type == QD_JSON_STRING && removed && invert) {
      if (strcmp(re->u.string.str, clip_regex_special_) == 0) return qd_tok_add_pre(t, QD_TOK_PRE_CLIP_SPLIT, 0, 0, 1);
      if (strcmp(re->u.string.str, clip_regex_plain_) == 0) return qd_tok_add_pre(t, QD_TOK_PRE_CLIP_SPLIT, 0, 0, 0);
    }
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT,
                  "%s: only CLIP's Split (its regex, behavior Removed, invert true) is implemented", what);
  }
  if (strcmp(ty, "Metaspace") == 0) {
    const qd_json_value_t* rep = qd_json_object_get(p, "replacement");
    const qd_json_value_t* scheme = qd_json_object_get(p, "prepend_scheme");
    bool split, prefix;
    QD_TRY(bool_field_(p, "split", true, what, &split));
    QD_TRY(bool_field_(p, "add_prefix_space", true, what, &prefix)); /* the pre-0.19 spelling */
    uint32_t cp = 0;
    if (!rep || rep->type != QD_JSON_STRING || rep->u.string.len == 0 || rep->u.string.len > 4 ||
        qd_utf8_decode((const unsigned char*)rep->u.string.str, rep->u.string.len, &cp) != (size_t)rep->u.string.len)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: Metaspace.replacement is not one character", what);
    if (scheme && scheme->type == QD_JSON_STRING) {
      if (strcmp(scheme->u.string.str, "always") == 0) {
        prefix = true;
      } else if (strcmp(scheme->u.string.str, "never") == 0) {
        prefix = false;
      } else {
        return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "%s: Metaspace prepend_scheme '%s' is not implemented",
                      what, scheme->u.string.str);
      }
    } else if (scheme && scheme->type != QD_JSON_NULL) {
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: Metaspace.prepend_scheme is not a string", what);
    }
    return qd_tok_add_pre(t, QD_TOK_PRE_METASPACE, cp, prefix, split);
  }
  return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "%s: pre-tokenizer %s is not implemented", what, ty);
}

/* ["text", id] (RobertaProcessing's cls/sep). */
static qd_status_t pair_id_(qd_tokenizer_t* t, const qd_json_value_t* v, const char* what, int32_t* out) {
  if (!v || v->type != QD_JSON_ARRAY || v->u.array.count != 2 || v->u.array.items[0]->type != QD_JSON_STRING ||
      v->u.array.items[1]->type != QD_JSON_NUMBER || !v->u.array.items[1]->u.number.fits_u64)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: a post-processor token is not [text, id]", what);
  uint64_t id = v->u.array.items[1]->u.number.u64;
  int32_t have = qd_tok_lookup(t, v->u.array.items[0]->u.string.str, v->u.array.items[0]->u.string.len);
  if (have < 0 || (uint64_t)have != id)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: post-processor token '%s' is not id %llu in the vocabulary",
                  what, v->u.array.items[0]->u.string.str, (unsigned long long)id);
  *out = have;
  return QD_OK;
}

static qd_status_t post_processor_(qd_tokenizer_t* t, const qd_json_value_t* p, const char* what) {
  if (!p || p->type == QD_JSON_NULL) return QD_OK;
  const char* ty = type_of_(p);
  if (p->type != QD_JSON_OBJECT || !ty)
    return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: the post-processor is not an object with a type", what);
  if (strcmp(ty, "RobertaProcessing") == 0 || strcmp(ty, "BertProcessing") == 0) {
    QD_TRY(pair_id_(t, qd_json_object_get(p, "cls"), what, &t->prefix_id));
    return pair_id_(t, qd_json_object_get(p, "sep"), what, &t->suffix_id);
  }
  if (strcmp(ty, "TemplateProcessing") == 0) {
    const qd_json_value_t* single = qd_json_object_get(p, "single");
    const qd_json_value_t* specials = qd_json_object_get(p, "special_tokens");
    if (!single || single->type != QD_JSON_ARRAY)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: TemplateProcessing.single is not an array", what);
    bool seen_a = false;
    for (size_t i = 0; i < single->u.array.count; i++) {
      const qd_json_value_t* it = single->u.array.items[i];
      const qd_json_value_t* seq = qd_json_object_get(it, "Sequence");
      const qd_json_value_t* sp = qd_json_object_get(it, "SpecialToken");
      if (seq) {
        if (seen_a) break;
        seen_a = true;
        continue;
      }
      const qd_json_value_t* name = qd_json_object_get(sp, "id");
      const qd_json_value_t* entry = name && name->type == QD_JSON_STRING
                                         ? qd_json_object_get(specials, name->u.string.str)
                                         : NULL;
      const qd_json_value_t* ids = qd_json_object_get(entry, "ids");
      if (!ids || ids->type != QD_JSON_ARRAY || ids->u.array.count != 1 ||
          ids->u.array.items[0]->type != QD_JSON_NUMBER || !ids->u.array.items[0]->u.number.fits_u64 ||
          ids->u.array.items[0]->u.number.u64 >= t->vocab_count)
        return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD,
                      "%s: TemplateProcessing item %zu is not a special token with one id in the vocabulary", what, i);
      int32_t id = (int32_t)ids->u.array.items[0]->u.number.u64;
      int32_t* slot = seen_a ? &t->suffix_id : &t->prefix_id;
      if (*slot != QD_TOK_NONE)
        return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT,
                      "%s: TemplateProcessing with more than one special token on a side is not implemented", what);
      *slot = id;
    }
    if (!seen_a)
      return QD_ERR(BAD_INPUT, TOK_COMPONENT_FIELD, "%s: TemplateProcessing.single has no $A sequence", what);
    return QD_OK;
  }
  return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_COMPONENT, "%s: post-processor %s is not implemented", what, ty);
}

/* The model section of tokenizer.json; returns the model kind through *out_model before the object exists. */
static qd_status_t json_model_kind_(const qd_json_value_t* root, const char* what, qd_tok_model_t* out_model) {
  const qd_json_value_t* model = qd_json_object_get(root, "model");
  if (!model || model->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, TOK_MODEL, "%s: there is no model object", what);
  const char* ty = type_of_(model);
  if (!ty) {
    /* old files leave the type out; tell BPE (merges) from Unigram (vocab as an array) */
    const qd_json_value_t* vocab = qd_json_object_get(model, "vocab");
    ty = qd_json_object_get(model, "merges") ? "BPE" : vocab && vocab->type == QD_JSON_ARRAY ? "Unigram" : "";
  }
  if (strcmp(ty, "BPE") == 0) {
    *out_model = QD_TOK_MODEL_BPE;
  } else if (strcmp(ty, "Unigram") == 0) {
    *out_model = QD_TOK_MODEL_UNIGRAM;
  } else {
    return QD_ERR(UNSUPPORTED, TOK_UNSUPPORTED_MODEL, "%s: model type '%s' is not BPE or Unigram", what, ty);
  }
  return QD_OK;
}

/* --- open ----------------------------------------------------------------------------------------------------- */

static qd_status_t check_kind_(qd_tok_model_t model, qd_tokenizer_kind_t want, const char* what) {
  qd_tokenizer_kind_t have = model == QD_TOK_MODEL_BPE ? QD_TOKENIZER_CLIP : QD_TOKENIZER_T5;
  if (want != QD_TOKENIZER_AUTO && want != have)
    return QD_ERR(BAD_INPUT, TOK_KIND_MISMATCH, "%s: holds a %s tokenizer, not a %s one", what,
                  have == QD_TOKENIZER_CLIP ? "CLIP (BPE)" : "T5 (Unigram)",
                  want == QD_TOKENIZER_CLIP ? "CLIP (BPE)" : "T5 (Unigram)");
  return QD_OK;
}

typedef struct open_ctx_ {
  qd_allocator_t a;
  const char* dir;   /* where the config files are looked for */
  doc_t tj, cfg, map; /* tokenizer.json, tokenizer_config.json, special_tokens_map.json */
  char* raw;          /* vocab.json, merges.txt or spiece.model bytes */
  size_t raw_size;
  doc_t vocab;
  qd_tokenizer_t* t;
} open_ctx_t;

static qd_status_t load_configs_(open_ctx_t* c) {
  QD_TRY(load_json_(c->a, c->dir, "tokenizer_config.json", true, QD_TOK_MAX_CONFIG_BYTES, &c->cfg));
  return load_json_(c->a, c->dir, "special_tokens_map.json", true, QD_TOK_MAX_CONFIG_BYTES, &c->map);
}

static const qd_json_value_t* root_(const doc_t* d) { return d->doc ? qd_json_root(d->doc) : NULL; }

/* tokenizer.json: as written (as_written) or with the pipeline transformers builds (a directory). */
static qd_status_t open_tokenizer_json_(open_ctx_t* c, const char* path, bool as_written, qd_tokenizer_kind_t kind) {
  QD_TRY(load_json_(c->a, NULL, path, false, QD_TOK_MAX_JSON_BYTES, &c->tj));
  const qd_json_value_t* root = root_(&c->tj);
  qd_tok_model_t model = QD_TOK_MODEL_BPE;
  QD_TRY(json_model_kind_(root, path, &model));
  QD_TRY(check_kind_(model, kind, path));
  QD_TRY(qd_tok_create(c->a, model, &c->t));
  qd_tokenizer_t* t = c->t;
  const qd_json_value_t* m = qd_json_object_get(root, "model");
  if (model == QD_TOK_MODEL_BPE) {
    QD_TRY(qd_tok_bpe_model_from_json(t, m, path));
  } else {
    QD_TRY(qd_tok_unigram_model_from_json(t, m, path));
  }
  QD_TRY(added_tokens_json_(t, qd_json_object_get(root, "added_tokens"), path));
  QD_TRY(load_configs_(c));
  if (as_written) {
    QD_TRY(normalizer_(t, qd_json_object_get(root, "normalizer"), path, 0));
    QD_TRY(pre_tokenizer_(t, qd_json_object_get(root, "pre_tokenizer"), path, 0));
    QD_TRY(post_processor_(t, qd_json_object_get(root, "post_processor"), path));
    int32_t bos = t->prefix_id, eos = t->suffix_id;
    QD_TRY(apply_configs_(t, root_(&c->cfg), root_(&c->map), false, path));
    /* the file's post-processor decides what encode adds */
    if (bos >= 0) t->bos_id = bos;
    if (eos >= 0) t->eos_id = eos;
    return QD_OK;
  }
  if (model == QD_TOK_MODEL_BPE) {
    QD_TRY(clip_pipeline_(t));
  } else {
    /* the charsmap comes from the file's Precompiled normalizer; the rest of its pipeline is ignored, as
     * transformers' T5Tokenizer does */
    QD_TRY(normalizer_(t, qd_json_object_get(root, "normalizer"), path, 0));
    for (size_t i = 0; i < t->norm_count; i++) {
      qd_free(t->a, t->norm[i].pattern, t->norm[i].pattern_len + 1);
      qd_free(t->a, t->norm[i].content, t->norm[i].content_len + 1);
    }
    t->norm_count = 0;
    t->byte_fallback = false; /* T5Tokenizer builds its Unigram with byte_fallback=False, whatever the file says */
    QD_TRY(t5_pipeline_(t));
    QD_TRY(t5_extra_ids_(t, root_(&c->cfg), path));
  }
  QD_TRY(apply_configs_(t, root_(&c->cfg), root_(&c->map), true, path));
  t->prefix_id = model == QD_TOK_MODEL_BPE ? t->bos_id : QD_TOK_NONE;
  t->suffix_id = t->eos_id;
  return QD_OK;
}

static qd_status_t open_clip_files_(open_ctx_t* c) {
  char vpath[1100], mpath[1100];
  snprintf(vpath, sizeof vpath, "%s/vocab.json", c->dir);
  snprintf(mpath, sizeof mpath, "%s/merges.txt", c->dir);
  QD_TRY(load_json_(c->a, NULL, vpath, false, QD_TOK_MAX_JSON_BYTES, &c->vocab));
  QD_TRY(qd_file_read_all(c->a, mpath, QD_TOK_MAX_FILE_BYTES, QD_E_TOK_FILE_TOO_LARGE, &c->raw, &c->raw_size));
  QD_TRY(qd_tok_create(c->a, QD_TOK_MODEL_BPE, &c->t));
  QD_TRY(qd_tok_clip_vocab_from_json(c->t, root_(&c->vocab), vpath));
  QD_TRY(qd_tok_clip_merges_from_text(c->t, c->raw, c->raw_size, mpath));
  QD_TRY(load_configs_(c));
  QD_TRY(clip_pipeline_(c->t));
  QD_TRY(apply_configs_(c->t, root_(&c->cfg), root_(&c->map), true, c->dir));
  c->t->prefix_id = c->t->bos_id;
  c->t->suffix_id = c->t->eos_id;
  return QD_OK;
}

static qd_status_t open_spm_(open_ctx_t* c, const char* path) {
  QD_TRY(qd_file_read_all(c->a, path, QD_TOK_MAX_FILE_BYTES, QD_E_TOK_FILE_TOO_LARGE, &c->raw, &c->raw_size));
  QD_TRY(qd_tok_create(c->a, QD_TOK_MODEL_UNIGRAM, &c->t));
  QD_TRY(qd_tok_spm_load(c->t, (const unsigned char*)c->raw, c->raw_size, path, NULL));
  c->t->byte_fallback = false; /* as T5Tokenizer, which ignores the model's trainer_spec.byte_fallback */
  QD_TRY(load_configs_(c));
  QD_TRY(t5_pipeline_(c->t));
  QD_TRY(t5_extra_ids_(c->t, root_(&c->cfg), path));
  /* SentencePiece's own control pieces are special tokens in transformers */
  static const char* const controls[] = {"<pad>", "</s>", "<unk>"};
  for (int i = 0; i < 3; i++) {
    int32_t id = qd_tok_lookup(c->t, controls[i], strlen(controls[i]));
    if (id >= 0) QD_TRY(qd_tok_add_added(c->t, id, false, true));
  }
  QD_TRY(apply_configs_(c->t, root_(&c->cfg), root_(&c->map), true, path));
  c->t->suffix_id = c->t->eos_id;
  return QD_OK;
}

static bool ends_with_(const char* s, const char* suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

qd_status_t qd_tokenizer_open(const char* path, qd_tokenizer_kind_t kind, qd_allocator_t allocator,
                              qd_tokenizer_t** out_tokenizer) {
  if (out_tokenizer) *out_tokenizer = NULL;
  if (!path || !out_tokenizer || (kind != QD_TOKENIZER_AUTO && kind != QD_TOKENIZER_CLIP && kind != QD_TOKENIZER_T5))
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer open: NULL path or output, or an unknown kind");
  if (strlen(path) > 900) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "tokenizer open: path too long");
  struct stat sb;
  if (stat(path, &sb) != 0) {
    int e = errno;
    return qd_status_make(e == ENOENT ? QD_CODE_NOT_FOUND : QD_CODE_IO, QD_E_IO_OPEN, __FILE__, __LINE__,
                          "%s: cannot open: %s", path, strerror(e));
  }
  open_ctx_t c;
  memset(&c, 0, sizeof c);
  c.a = allocator;
  char dir[1024];
  qd_status_t s;
  if (S_ISDIR(sb.st_mode)) {
    c.dir = path;
    char p[1100];
    if (file_exists_(path, "tokenizer.json")) {
      snprintf(p, sizeof p, "%s/tokenizer.json", path);
      s = open_tokenizer_json_(&c, p, false, kind);
    } else if (kind != QD_TOKENIZER_T5 && file_exists_(path, "vocab.json") && file_exists_(path, "merges.txt")) {
      s = open_clip_files_(&c);
    } else if (kind != QD_TOKENIZER_CLIP && file_exists_(path, "spiece.model")) {
      snprintf(p, sizeof p, "%s/spiece.model", path);
      s = open_spm_(&c, p);
    } else if (file_exists_(path, "vocab.json") || file_exists_(path, "spiece.model")) {
      s = QD_ERR(BAD_INPUT, TOK_KIND_MISMATCH, "%s: holds the files of the other kind of tokenizer", path);
    } else {
      s = QD_ERR(NOT_FOUND, TOK_NO_FILES,
                 "%s: no tokenizer.json, vocab.json + merges.txt or spiece.model in this directory", path);
    }
  } else {
    snprintf(dir, sizeof dir, "%s", path);
    char* slash = strrchr(dir, '/');
    if (slash) {
      *slash = '\0';
    } else {
      snprintf(dir, sizeof dir, ".");
    }
    c.dir = dir;
    if (ends_with_(path, ".model")) {
      s = kind == QD_TOKENIZER_CLIP ? QD_ERR(BAD_INPUT, TOK_KIND_MISMATCH, "%s: a SentencePiece model is T5's", path)
                                    : open_spm_(&c, path);
    } else {
      s = open_tokenizer_json_(&c, path, true, kind);
    }
  }
  if (!s) s = qd_tok_finalize(c.t, path);
  doc_free_(allocator, &c.tj);
  doc_free_(allocator, &c.cfg);
  doc_free_(allocator, &c.map);
  doc_free_(allocator, &c.vocab);
  qd_free(allocator, c.raw, c.raw_size + 1);
  if (s) {
    qd_tokenizer_destroy(c.t);
    return s;
  }
  *out_tokenizer = c.t;
  return QD_OK;
}
