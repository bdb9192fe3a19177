/* Checkpoints: one tensor namespace over one or more safetensors files. See include/qd/checkpoint.h.
 *
 * All three inputs end in the same place: a list of opened files, then one table of every tensor sorted by
 * name (which finds duplicates as neighbours and gives lookups a binary search). An index adds a cross-check:
 * its weight_map, sorted by name the same way, is walked in step with that table, so every disagreement between
 * the index and the shards is found in one pass and reported for the first name where it occurs. */
#include "qd/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/file_read.h"
#include "ir/strict_json.h"

struct qd_checkpoint {
  qd_allocator_t alloc;
  qd_checkpoint_kind_t kind;
  char* path;
  size_t path_size;
  char* index_path;
  size_t index_path_size;
  qd_json_doc_t* index_doc;
  const qd_json_member_t* index_meta;
  size_t index_meta_count;
  qd_safetensors_t** files;
  size_t file_count;
  qd_tensor_info_t* tensors; /* sorted by name */
  size_t count;
  qd_dtype_total_t totals[QD_DTYPE_COUNT_];
  qd_dtype_total_t total;
};

typedef struct {
  char s[160];
} qd_ck_name_t;

static qd_ck_name_t qd_ck_name_(const char* s, size_t len) {
  qd_ck_name_t n;
  qd_json_display(s, len, n.s, sizeof n.s);
  return n;
}

static bool qd_ck_ends_with_(const char* s, const char* suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* An allocated string with the size to free it with. */
typedef struct {
  char* s;
  size_t size;
} qd_ck_str_t;

static void qd_ck_str_free_(qd_allocator_t a, qd_ck_str_t* str) {
  qd_free(a, str->s, str->size);
  str->s = NULL;
  str->size = 0;
}

static qd_status_t qd_ck_join_(qd_allocator_t a, const char* dir, const char* name, size_t name_len,
                               qd_ck_str_t* out) {
  size_t dl = strlen(dir);
  bool slash = dl > 0 && dir[dl - 1] != '/';
  size_t n = dl + (slash ? 1 : 0) + name_len;
  QD_TRY(qd_malloc(a, n + 1, (void**)&out->s));
  out->size = n + 1;
  memcpy(out->s, dir, dl);
  if (slash) out->s[dl] = '/';
  memcpy(out->s + dl + (slash ? 1 : 0), name, name_len);
  out->s[n] = '\0';
  return QD_OK;
}

static qd_status_t qd_ck_dirname_(qd_allocator_t a, const char* path, qd_ck_str_t* out) {
  const char* slash = strrchr(path, '/');
  if (!slash) {
    QD_TRY(qd_strndup(a, ".", 1, &out->s));
    out->size = 2;
    return QD_OK;
  }
  size_t n = slash == path ? 1 : (size_t)(slash - path);
  QD_TRY(qd_strndup(a, path, n, &out->s));
  out->size = n + 1;
  return QD_OK;
}

/* Bytes-then-length order, the same for NUL-free C strings as strcmp, and defined for keys with NULs. */
static int qd_ck_key_cmp_(const char* a, size_t an, const char* b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) return c;
  return an < bn ? -1 : (an > bn ? 1 : 0);
}

static int qd_ck_tensor_cmp_(const void* x, const void* y) {
  const qd_tensor_info_t* a = x;
  const qd_tensor_info_t* b = y;
  int c = strcmp(a->name, b->name);
  if (c) return c;
  return a->file_index < b->file_index ? -1 : (a->file_index > b->file_index ? 1 : 0);
}

/* Builds the merged, name-sorted tensor table from the opened files and rejects names held twice. */
static qd_status_t qd_ck_build_table_(qd_checkpoint_t* ck) {
  size_t total = 0;
  for (size_t f = 0; f < ck->file_count; f++) total += qd_safetensors_tensor_count(ck->files[f]);
  if (total) QD_TRY(qd_calloc(ck->alloc, total, sizeof *ck->tensors, (void**)&ck->tensors));
  ck->count = total;
  size_t k = 0;
  for (size_t f = 0; f < ck->file_count; f++) {
    size_t n = qd_safetensors_tensor_count(ck->files[f]);
    for (size_t i = 0; i < n; i++) {
      ck->tensors[k] = *qd_safetensors_tensor(ck->files[f], i);
      ck->tensors[k].file_index = (uint32_t)f;
      k++;
    }
  }
  if (total) qsort(ck->tensors, total, sizeof *ck->tensors, qd_ck_tensor_cmp_);
  for (size_t i = 1; i < total; i++) {
    const qd_tensor_info_t* a = &ck->tensors[i - 1];
    const qd_tensor_info_t* b = &ck->tensors[i];
    if (strcmp(a->name, b->name) == 0)
      return QD_ERR(BAD_INPUT, ST_DUPLICATE_TENSOR, "%s: tensor '%s' is in both %s and %s", ck->path,
                    qd_ck_name_(a->name, strlen(a->name)).s, a->file, b->file);
  }
  for (size_t i = 0; i < total; i++) {
    const qd_tensor_info_t* t = &ck->tensors[i];
    qd_dtype_total_t* d = &ck->totals[t->dtype];
    d->tensors++;
    d->elements += t->numel;
    d->bytes += t->nbytes;
    ck->total.tensors++;
    ck->total.elements += t->numel;
    ck->total.bytes += t->nbytes;
  }
  return QD_OK;
}

/* --- index --------------------------------------------------------------------------------------------- */

typedef struct {
  const qd_json_member_t* m; /* weight_map member: tensor name -> shard name */
  uint32_t file;             /* index of the shard in ck->files */
} qd_ck_entry_t;

static int qd_ck_entry_by_shard_(const void* x, const void* y) {
  const qd_json_value_t* a = ((const qd_ck_entry_t*)x)->m->value;
  const qd_json_value_t* b = ((const qd_ck_entry_t*)y)->m->value;
  return qd_ck_key_cmp_(a->u.string.str, a->u.string.len, b->u.string.str, b->u.string.len);
}

static int qd_ck_entry_by_name_(const void* x, const void* y) {
  const qd_json_member_t* a = ((const qd_ck_entry_t*)x)->m;
  const qd_json_member_t* b = ((const qd_ck_entry_t*)y)->m;
  return qd_ck_key_cmp_(a->key, a->key_len, b->key, b->key_len);
}

static qd_status_t qd_ck_check_shard_name_(const qd_checkpoint_t* ck, const qd_json_member_t* m) {
  const char* s = m->value->u.string.str;
  size_t n = m->value->u.string.len;
  qd_ck_name_t tensor = qd_ck_name_(m->key, m->key_len);
  if (n == 0 || memchr(s, '\0', n))
    return QD_ERR(BAD_INPUT, ST_INDEX_BAD_ENTRY, "%s: weight_map \"%s\" is %s; it must name a shard file",
                  ck->index_path, tensor.s, n == 0 ? "an empty string" : "a string with a NUL character");
  bool bad = s[0] == '/';
  /* Going up is only possible through a ".." component; everything else stays under the index's directory. */
  for (size_t i = 0; i < n && !bad;) {
    size_t j = i;
    while (j < n && s[j] != '/') j++;
    if (j - i == 2 && s[i] == '.' && s[i + 1] == '.') bad = true;
    i = j + 1;
  }
  if (bad)
    return QD_ERR(BAD_INPUT, ST_INDEX_BAD_SHARD_NAME, "%s: weight_map \"%s\" is \"%s\"; shard names must be relative "
                  "paths inside the index's directory", ck->index_path, tensor.s, qd_ck_name_(s, n).s);
  return QD_OK;
}

static qd_status_t qd_ck_parse_index_(qd_checkpoint_t* ck, const qd_json_value_t** out_map) {
  char* buf = NULL;
  size_t size = 0;
  QD_TRY(qd_file_read_all(ck->alloc, ck->index_path, QD_CHECKPOINT_MAX_INDEX, QD_E_ST_INDEX_TOO_LARGE, &buf, &size));
  qd_json_options_t opt = {
      .source_name = ck->index_path,
      .syntax_detail = QD_E_ST_INDEX_JSON,
      .utf8_detail = QD_E_ST_INDEX_JSON,
  };
  qd_status_t s = qd_json_parse(buf, size, ck->alloc, &opt, &ck->index_doc);
  qd_free(ck->alloc, buf, size + 1);
  QD_TRY(s);
  const qd_json_value_t* root = qd_json_root(ck->index_doc);
  const qd_json_value_t* map = qd_json_object_get(root, "weight_map");
  if (root->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, ST_INDEX_NO_WEIGHT_MAP, "%s: the index is %s; it must be an object with a weight_map",
                  ck->index_path, qd_json_type_name(root->type));
  if (!map || map->type != QD_JSON_OBJECT)
    return QD_ERR(BAD_INPUT, ST_INDEX_NO_WEIGHT_MAP, "%s: weight_map is %s; it must be an object mapping tensor names "
                  "to shard files", ck->index_path, map ? qd_json_type_name(map->type) : "missing");
  const qd_json_value_t* md = qd_json_object_get(root, "metadata");
  if (md) {
    if (md->type != QD_JSON_OBJECT)
      return QD_ERR(BAD_INPUT, ST_INDEX_METADATA, "%s: metadata is %s; it must be an object", ck->index_path,
                    qd_json_type_name(md->type));
    for (size_t i = 0; i < md->u.object.count; i++) {
      const qd_json_member_t* m = &md->u.object.members[i];
      if (m->value->type != QD_JSON_STRING && m->value->type != QD_JSON_NUMBER)
        return QD_ERR(BAD_INPUT, ST_INDEX_METADATA, "%s: metadata \"%s\" is %s; values must be strings or numbers",
                      ck->index_path, qd_ck_name_(m->key, m->key_len).s, qd_json_type_name(m->value->type));
    }
    ck->index_meta = md->u.object.members;
    ck->index_meta_count = md->u.object.count;
  }
  for (size_t i = 0; i < map->u.object.count; i++) {
    const qd_json_member_t* m = &map->u.object.members[i];
    if (m->value->type != QD_JSON_STRING) {
      char d[96];
      return QD_ERR(BAD_INPUT, ST_INDEX_BAD_ENTRY, "%s: weight_map \"%s\" is %s; it must be a string naming a shard "
                    "file", ck->index_path, qd_ck_name_(m->key, m->key_len).s, qd_json_describe(m->value, d, sizeof d));
    }
    QD_TRY(qd_ck_check_shard_name_(ck, m));
  }
  *out_map = map;
  return QD_OK;
}

/* Walks the name-sorted tensor table and the name-sorted weight_map together. */
static qd_status_t qd_ck_cross_check_(const qd_checkpoint_t* ck, const qd_ck_entry_t* e, size_t ne) {
  size_t i = 0, j = 0;
  while (i < ck->count || j < ne) {
    const qd_tensor_info_t* t = i < ck->count ? &ck->tensors[i] : NULL;
    const qd_json_member_t* m = j < ne ? e[j].m : NULL;
    int c = !t ? 1 : !m ? -1 : qd_ck_key_cmp_(t->name, strlen(t->name), m->key, m->key_len);
    if (c < 0)
      return QD_ERR(BAD_INPUT, ST_INDEX_TENSOR_UNLISTED, "%s: shard %s holds tensor '%s', which the index does not "
                    "list", ck->index_path, t->file, qd_ck_name_(t->name, strlen(t->name)).s);
    if (c > 0)
      return QD_ERR(BAD_INPUT, ST_INDEX_TENSOR_MISSING, "%s: the index places tensor '%s' in %s, which does not hold "
                    "it", ck->index_path, qd_ck_name_(m->key, m->key_len).s,
                    qd_safetensors_path(ck->files[e[j].file]));
    if (t->file_index != e[j].file)
      return QD_ERR(BAD_INPUT, ST_INDEX_TENSOR_UNLISTED, "%s: shard %s holds tensor '%s', which the index places in "
                    "%s", ck->index_path, t->file, qd_ck_name_(t->name, strlen(t->name)).s,
                    qd_safetensors_path(ck->files[e[j].file]));
    i++;
    j++;
  }
  return QD_OK;
}

static qd_status_t qd_ck_open_index_(qd_checkpoint_t* ck) {
  const qd_json_value_t* map = NULL;
  QD_TRY(qd_ck_parse_index_(ck, &map));
  size_t ne = map->u.object.count;
  qd_ck_entry_t* e = NULL;
  qd_ck_str_t dir = {0}, shard_path = {0};
  qd_status_t s = QD_OK;
  if (ne) QD_CHECK_GOTO(s, qd_calloc(ck->alloc, ne, sizeof *e, (void**)&e), done);
  for (size_t i = 0; i < ne; i++) e[i].m = &map->u.object.members[i];

  /* Number the distinct shards in name order. */
  size_t shards = 0;
  if (ne) qsort(e, ne, sizeof *e, qd_ck_entry_by_shard_);
  for (size_t i = 0; i < ne; i++) {
    if (i > 0 && qd_ck_entry_by_shard_(&e[i - 1], &e[i]) != 0) shards++;
    e[i].file = (uint32_t)shards;
  }
  if (ne) shards++;
  QD_CHECK_GOTO(s, qd_ck_dirname_(ck->alloc, ck->index_path, &dir), done);
  if (shards) QD_CHECK_GOTO(s, qd_calloc(ck->alloc, shards, sizeof *ck->files, (void**)&ck->files), done);
  ck->file_count = shards;
  for (size_t i = 0; i < ne; i++) {
    if (i > 0 && e[i].file == e[i - 1].file) continue;
    const qd_json_value_t* v = e[i].m->value;
    QD_CHECK_GOTO(s, qd_ck_join_(ck->alloc, dir.s, v->u.string.str, v->u.string.len, &shard_path), done);
    s = qd_safetensors_open(shard_path.s, ck->alloc, &ck->files[e[i].file]);
    if (s && qd_status_code(s) == QD_CODE_NOT_FOUND && qd_status_detail(s) == QD_E_IO_OPEN) {
      qd_status_free(s);
      s = QD_ERR(NOT_FOUND, ST_INDEX_SHARD_MISSING, "%s: shard %s (listed for tensor '%s') does not exist",
                 ck->index_path, shard_path.s, qd_ck_name_(e[i].m->key, e[i].m->key_len).s);
    } else if (s) {
      s = qd_status_annotate(s, "reading shard %s of %s", shard_path.s, ck->index_path);
    }
    qd_ck_str_free_(ck->alloc, &shard_path);
    if (s) goto done;
  }

  QD_CHECK_GOTO(s, qd_ck_build_table_(ck), done);
  if (ne) qsort(e, ne, sizeof *e, qd_ck_entry_by_name_);
  QD_CHECK_GOTO(s, qd_ck_cross_check_(ck, e, ne), done);

done:
  qd_ck_str_free_(ck->alloc, &dir);
  qd_free(ck->alloc, e, ne * sizeof *e);
  return s;
}

/* --- directory ----------------------------------------------------------------------------------------- */

typedef struct {
  qd_ck_str_t* items;
  size_t len, cap;
} qd_ck_list_t;

static qd_status_t qd_ck_list_push_(qd_allocator_t a, qd_ck_list_t* l, const char* s) {
  if (l->len == l->cap) {
    size_t ncap = l->cap ? l->cap * 2 : 8;
    void* p;
    QD_TRY(qd_realloc(a, l->items, l->cap * sizeof *l->items, ncap * sizeof *l->items, &p));
    l->items = p;
    l->cap = ncap;
  }
  size_t n = strlen(s);
  QD_TRY(qd_strndup(a, s, n, &l->items[l->len].s));
  l->items[l->len].size = n + 1;
  l->len++;
  return QD_OK;
}

static void qd_ck_list_free_(qd_allocator_t a, qd_ck_list_t* l) {
  for (size_t i = 0; i < l->len; i++) qd_ck_str_free_(a, &l->items[i]);
  qd_free(a, l->items, l->cap * sizeof *l->items);
  memset(l, 0, sizeof *l);
}

static int qd_ck_str_cmp_(const void* x, const void* y) {
  return strcmp(((const qd_ck_str_t*)x)->s, ((const qd_ck_str_t*)y)->s);
}

static qd_status_t qd_ck_scan_dir_(qd_checkpoint_t* ck, qd_ck_list_t* indexes, qd_ck_list_t* files) {
  DIR* d = opendir(ck->path);
  if (!d) {
    int e = errno;
    return QD_ERR(IO, IO_OPEN, "%s: cannot list the directory: %s", ck->path, strerror(e));
  }
  qd_status_t s = QD_OK;
  qd_ck_str_t full = {0};
  struct dirent* de;
  while ((de = readdir(d)) != NULL) {
    const char* name = de->d_name;
    bool is_index = qd_ck_ends_with_(name, ".safetensors.index.json");
    if (!is_index && !qd_ck_ends_with_(name, ".safetensors")) continue;
    QD_CHECK_GOTO(s, qd_ck_join_(ck->alloc, ck->path, name, strlen(name), &full), done);
    struct stat sb;
    /* stat follows symlinks (the Hugging Face cache links to blobs); a dangling link is kept so that opening it
     * reports the problem instead of silently skipping a shard. */
    bool keep = stat(full.s, &sb) != 0 || S_ISREG(sb.st_mode);
    qd_ck_str_free_(ck->alloc, &full);
    if (keep) QD_CHECK_GOTO(s, qd_ck_list_push_(ck->alloc, is_index ? indexes : files, name), done);
  }
done:
  closedir(d);
  if (!s) {
    if (indexes->len) qsort(indexes->items, indexes->len, sizeof *indexes->items, qd_ck_str_cmp_);
    if (files->len) qsort(files->items, files->len, sizeof *files->items, qd_ck_str_cmp_);
  }
  return s;
}

static qd_status_t qd_ck_open_files_(qd_checkpoint_t* ck, const qd_ck_list_t* files) {
  QD_TRY(qd_calloc(ck->alloc, files->len, sizeof *ck->files, (void**)&ck->files));
  ck->file_count = files->len;
  for (size_t i = 0; i < files->len; i++) {
    qd_ck_str_t p = {0};
    QD_TRY(qd_ck_join_(ck->alloc, ck->path, files->items[i].s, strlen(files->items[i].s), &p));
    qd_status_t s = qd_safetensors_open(p.s, ck->alloc, &ck->files[i]);
    qd_ck_str_free_(ck->alloc, &p);
    QD_TRY(s);
  }
  return qd_ck_build_table_(ck);
}

static qd_status_t qd_ck_open_dir_(qd_checkpoint_t* ck) {
  qd_ck_list_t indexes = {0}, files = {0};
  qd_status_t s;
  QD_CHECK_GOTO(s, qd_ck_scan_dir_(ck, &indexes, &files), done);
  if (indexes.len == 1) {
    qd_ck_str_t p = {0};
    QD_CHECK_GOTO(s, qd_ck_join_(ck->alloc, ck->path, indexes.items[0].s, strlen(indexes.items[0].s), &p), done);
    ck->index_path = p.s;
    ck->index_path_size = p.size;
    s = qd_ck_open_index_(ck);
    goto done;
  }
  if (files.len == 0) {
    s = QD_ERR(BAD_INPUT, ST_EMPTY_DIRECTORY, "%s: the directory holds no .safetensors files%s", ck->path,
               indexes.len > 1 ? " (and more than one index, so none was used)" : "");
    goto done;
  }
  s = qd_ck_open_files_(ck, &files);
done:
  qd_ck_list_free_(ck->alloc, &indexes);
  qd_ck_list_free_(ck->alloc, &files);
  return s;
}

/* --- public -------------------------------------------------------------------------------------------- */

qd_status_t qd_checkpoint_open(const char* path, qd_allocator_t allocator, qd_checkpoint_t** out_ckpt) {
  *out_ckpt = NULL;
  if (!path) return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "qd_checkpoint_open: NULL path");
  struct stat sb;
  if (stat(path, &sb) != 0) {
    int e = errno;
    return qd_status_make(e == ENOENT ? QD_CODE_NOT_FOUND : QD_CODE_IO, QD_E_IO_OPEN, __FILE__, __LINE__,
                          "%s: cannot open: %s", path, strerror(e));
  }
  qd_checkpoint_t* ck;
  QD_TRY(qd_calloc(allocator, 1, sizeof *ck, (void**)&ck));
  ck->alloc = allocator;
  qd_status_t s;
  size_t n = strlen(path);
  QD_CHECK_GOTO(s, qd_strndup(allocator, path, n, &ck->path), fail);
  ck->path_size = n + 1;
  if (S_ISDIR(sb.st_mode)) {
    ck->kind = QD_CHECKPOINT_DIRECTORY;
    QD_CHECK_GOTO(s, qd_ck_open_dir_(ck), fail);
  } else if (qd_ck_ends_with_(path, ".json")) {
    ck->kind = QD_CHECKPOINT_INDEX;
    QD_CHECK_GOTO(s, qd_strndup(allocator, path, n, &ck->index_path), fail);
    ck->index_path_size = n + 1;
    QD_CHECK_GOTO(s, qd_ck_open_index_(ck), fail);
  } else {
    ck->kind = QD_CHECKPOINT_FILE;
    QD_CHECK_GOTO(s, qd_calloc(allocator, 1, sizeof *ck->files, (void**)&ck->files), fail);
    ck->file_count = 1;
    QD_CHECK_GOTO(s, qd_safetensors_open(path, allocator, &ck->files[0]), fail);
    QD_CHECK_GOTO(s, qd_ck_build_table_(ck), fail);
  }
  *out_ckpt = ck;
  return QD_OK;
fail:
  qd_checkpoint_close(ck);
  return s;
}

void qd_checkpoint_close(qd_checkpoint_t* ck) {
  if (!ck) return;
  qd_allocator_t a = ck->alloc;
  for (size_t i = 0; i < ck->file_count; i++) qd_safetensors_close(ck->files[i]);
  qd_free(a, ck->files, ck->file_count * sizeof *ck->files);
  qd_free(a, ck->tensors, ck->count * sizeof *ck->tensors);
  qd_json_destroy(ck->index_doc);
  qd_free(a, ck->index_path, ck->index_path_size);
  qd_free(a, ck->path, ck->path_size);
  qd_free(a, ck, sizeof *ck);
}

qd_checkpoint_kind_t qd_checkpoint_kind(const qd_checkpoint_t* ck) { return ck ? ck->kind : QD_CHECKPOINT_FILE; }
const char* qd_checkpoint_path(const qd_checkpoint_t* ck) { return ck ? ck->path : NULL; }
const char* qd_checkpoint_index_path(const qd_checkpoint_t* ck) { return ck ? ck->index_path : NULL; }
size_t qd_checkpoint_file_count(const qd_checkpoint_t* ck) { return ck ? ck->file_count : 0; }

const qd_safetensors_t* qd_checkpoint_file(const qd_checkpoint_t* ck, size_t index) {
  return ck && index < ck->file_count ? ck->files[index] : NULL;
}

size_t qd_checkpoint_tensor_count(const qd_checkpoint_t* ck) { return ck ? ck->count : 0; }

const qd_tensor_info_t* qd_checkpoint_tensor(const qd_checkpoint_t* ck, size_t index) {
  return ck && index < ck->count ? &ck->tensors[index] : NULL;
}

const qd_tensor_info_t* qd_checkpoint_find(const qd_checkpoint_t* ck, const char* name) {
  if (!ck || !name) return NULL;
  size_t lo = 0, hi = ck->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(ck->tensors[mid].name, name);
    if (c == 0) return &ck->tensors[mid];
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

qd_dtype_total_t qd_checkpoint_dtype_total(const qd_checkpoint_t* ck, qd_dtype_t dtype) {
  qd_dtype_total_t zero = {0, 0, 0};
  if (!ck || (unsigned)dtype >= QD_DTYPE_COUNT_) return zero;
  return ck->totals[dtype];
}

qd_dtype_total_t qd_checkpoint_total(const qd_checkpoint_t* ck) {
  qd_dtype_total_t zero = {0, 0, 0};
  return ck ? ck->total : zero;
}

size_t qd_checkpoint_index_metadata_count(const qd_checkpoint_t* ck) { return ck ? ck->index_meta_count : 0; }

bool qd_checkpoint_index_metadata_at(const qd_checkpoint_t* ck, size_t index, const char** out_key,
                                     const char** out_value) {
  if (!ck || index >= ck->index_meta_count) return false;
  const qd_json_member_t* m = &ck->index_meta[index];
  if (out_key) *out_key = m->key;
  if (out_value) *out_value = m->value->type == QD_JSON_STRING ? m->value->u.string.str : m->value->u.number.raw;
  return true;
}

bool qd_checkpoint_index_metadata_is_number(const qd_checkpoint_t* ck, size_t index) {
  return ck && index < ck->index_meta_count && ck->index_meta[index].value->type == QD_JSON_NUMBER;
}
