/* The tokenizers (include/qd/tokenizer.h): parity with Hugging Face on the committed fixture
 * (tests/data/tokenizers/parity.json, written by tools/make_tokenizer_fixtures.py) for the real FLUX vocabularies
 * and two synthetic ones, blob round trips and damage, the malformed-file corpus (each file rejected with exactly
 * its manifest's detail), the Unicode helpers, and allocation-failure sweeps over every loader and encode. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ir/strict_json.h"
#include "qd/tokenizer.h"
#include "qd_test.h"
#include "runtime/unicode.h"

/* --- helpers ------------------------------------------------------------------------------------------- */

static char* path_join(const char* a, const char* b) {
  static char bufs[16][1024];
  static int next;
  char tmp[1024];
  snprintf(tmp, sizeof tmp, "%s/%s", a, b);
  char* p = bufs[next++ % 16];
  memcpy(p, tmp, sizeof tmp);
  return p;
}

static const char* tok_dir(void) { return path_join(qd_test_data_dir(), "tokenizers"); }

static unsigned char* read_bytes(const char* path, size_t* out_len) {
  FILE* f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot read %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* b = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  b[n] = 0;
  *out_len = (size_t)n;
  return b;
}

static void write_bytes(const char* path, const void* data, size_t len) {
  FILE* f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void copy_file(const char* from, const char* to) {
  size_t n;
  unsigned char* b = read_bytes(from, &n);
  write_bytes(to, b, n);
  free(b);
}

static bool exists(const char* path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* An empty scratch directory. */
static const char* fresh_dir(const char* name) {
  static char dirs[8][1024];
  static int next;
  char* d = dirs[next++ % 8];
  snprintf(d, 1024, "%s/tok_%s", qd_test_tmp_dir(), name);
  mkdir(d, 0755);
  DIR* dir = opendir(d);
  ck_assert_ptr_nonnull(dir);
  struct dirent* de;
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    unlink(path_join(d, de->d_name));
  }
  closedir(dir);
  return d;
}

/* GPT-2's byte -> character map in CLIP's vocabulary order (printable bytes first, then the rest). */
static void clip_byte_chars(uint32_t out[256]) {
  int n = 0, extra = 0;
  bool printable[256] = {false};
  for (int b = 0; b < 256; b++)
    printable[b] = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  for (int b = 0; b < 256; b++)
    if (printable[b]) out[n++] = (uint32_t)b;
  for (int b = 0; b < 256; b++)
    if (!printable[b]) out[n++] = 256 + (uint32_t)extra++;
}

static void json_key(FILE* f, const char* s, size_t len) {
  fputc('"', f);
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '"' || s[i] == '\\') fputc('\\', f);
    fputc(s[i], f);
  }
  fputc('"', f);
}

/* The real FLUX CLIP tokenizer directory: vocab.json is derived from the committed merges.txt exactly as CLIP
 * defines its vocabulary (tools/fetch_flux_tokenizers.py checks that this equals the real vocab.json). */
static const char* clip_real_dir(void) {
  static char dir[1024];
  if (dir[0]) return dir;
  const char* src = path_join(tok_dir(), "flux/tokenizer");
  snprintf(dir, sizeof dir, "%s", fresh_dir("clip_real"));
  copy_file(path_join(src, "merges.txt"), path_join(dir, "merges.txt"));
  copy_file(path_join(src, "tokenizer_config.json"), path_join(dir, "tokenizer_config.json"));
  copy_file(path_join(src, "special_tokens_map.json"), path_join(dir, "special_tokens_map.json"));
  size_t n;
  char* merges = (char*)read_bytes(path_join(src, "merges.txt"), &n);
  FILE* f = fopen(path_join(dir, "vocab.json"), "wb");
  ck_assert_ptr_nonnull(f);
  uint32_t chars[256];
  clip_byte_chars(chars);
  int id = 0;
  fputc('{', f);
  for (int pass = 0; pass < 2; pass++) {
    for (int b = 0; b < 256; b++) {
      char u[8];
      size_t k = qd_utf8_encode(chars[b], u);
      if (pass) memcpy(u + k, "</w>", 4), k += 4;
      if (id) fputc(',', f);
      json_key(f, u, k);
      fprintf(f, ":%d", id++);
    }
  }
  char* line = strchr(merges, '\n') + 1; /* skip "#version" */
  while (*line) {
    char* nl = strchr(line, '\n');
    size_t ll = nl ? (size_t)(nl - line) : strlen(line);
    if (ll) {
      char* sp = memchr(line, ' ', ll);
      fputc(',', f);
      fputc('"', f);
      for (char* p = line; p < line + ll; p++) {
        if (p == sp) continue;
        if (*p == '"' || *p == '\\') fputc('\\', f);
        fputc(*p, f);
      }
      fprintf(f, "\":%d", id++);
    }
    line = nl ? nl + 1 : line + ll;
  }
  fprintf(f, ",\"<|startoftext|>\":%d,\"<|endoftext|>\":%d}", id, id + 1);
  fclose(f);
  free(merges);
  return dir;
}

/* --- the parity fixture ------------------------------------------------------------------------------------ */

typedef struct fixture {
  unsigned char* text;
  qd_json_doc_t* doc;
  size_t count;
  char** prompts;
  size_t* lens;
} fixture_t;

static fixture_t fx;

static const fixture_t* fixture(void) {
  if (fx.doc) return &fx;
  size_t n;
  fx.text = read_bytes(path_join(tok_dir(), "parity.json"), &n);
  QD_ASSERT_OK(qd_json_parse((const char*)fx.text, n, qd_allocator_system(), NULL, &fx.doc));
  const qd_json_value_t* prompts = qd_json_object_get(qd_json_root(fx.doc), "prompts");
  ck_assert_ptr_nonnull(prompts);
  fx.count = prompts->u.array.count;
  fx.prompts = calloc(fx.count, sizeof(char*));
  fx.lens = calloc(fx.count, sizeof(size_t));
  for (size_t i = 0; i < fx.count; i++) {
    const qd_json_value_t* p = prompts->u.array.items[i];
    const qd_json_value_t* t = qd_json_object_get(p, "text");
    const qd_json_value_t* h = qd_json_object_get(p, "hex");
    if (t) {
      fx.prompts[i] = malloc(t->u.string.len + 1);
      memcpy(fx.prompts[i], t->u.string.str, t->u.string.len + 1);
      fx.lens[i] = t->u.string.len;
    } else {
      ck_assert_ptr_nonnull(h);
      fx.lens[i] = h->u.string.len / 2;
      fx.prompts[i] = malloc(fx.lens[i] + 1);
      for (size_t k = 0; k < fx.lens[i]; k++) {
        unsigned v;
        sscanf(h->u.string.str + 2 * k, "%2x", &v);
        fx.prompts[i][k] = (char)v;
      }
    }
  }
  return &fx;
}

static const qd_json_value_t* parity_set(const char* name) {
  const qd_json_value_t* sets = qd_json_object_get(qd_json_root(fixture()->doc), "sets");
  const qd_json_value_t* s = qd_json_object_get(sets, name);
  ck_assert_msg(s != NULL, "parity.json has no set %s", name);
  return s;
}

/* Encodes every prompt and compares with the set's ids (then padding); returns the number of matches. */
static size_t check_parity(qd_tokenizer_t* t, const char* set, bool require_all) {
  const fixture_t* f = fixture();
  const qd_json_value_t* s = parity_set(set);
  size_t max_length = (size_t)qd_json_object_get(s, "max_length")->u.number.u64;
  const qd_json_value_t* ids = qd_json_object_get(s, "ids");
  ck_assert_uint_eq(ids->u.array.count, f->count);
  int32_t* out = malloc(max_length * sizeof(int32_t));
  size_t ok = 0, shown = 0;
  for (size_t i = 0; i < f->count; i++) {
    size_t used = 0;
    QD_ASSERT_OK(qd_tokenizer_encode(t, f->prompts[i], f->lens[i], max_length, QD_TOKENIZER_UTF8_REPLACE, out, &used));
    const qd_json_value_t* want = ids->u.array.items[i];
    bool same = used == want->u.array.count;
    for (size_t k = 0; k < want->u.array.count && same; k++)
      same = (uint64_t)out[k] == want->u.array.items[k]->u.number.u64;
    for (size_t k = used; k < max_length && same; k++) same = out[k] == qd_tokenizer_pad_id(t);
    if (same) {
      ok++;
    } else if (shown++ < 5) {
      char disp[200];
      fprintf(stderr, "%s: prompt %zu '%s' differs:\n  want", set, i,
              qd_json_display(f->prompts[i], f->lens[i], disp, sizeof disp));
      for (size_t k = 0; k < want->u.array.count && k < 40; k++)
        fprintf(stderr, " %llu", (unsigned long long)want->u.array.items[k]->u.number.u64);
      fprintf(stderr, "\n  have");
      for (size_t k = 0; k < used && k < 40; k++) fprintf(stderr, " %d", out[k]);
      fprintf(stderr, "\n");
    }
  }
  free(out);
  fprintf(stderr, "parity %s: %zu of %zu prompts identical\n", set, ok, f->count);
  if (require_all) ck_assert_msg(ok == f->count, "%s: %zu of %zu prompts differ", set, f->count - ok, f->count);
  return ok;
}

static qd_tokenizer_t* open_ok(const char* path, qd_tokenizer_kind_t kind) {
  qd_tokenizer_t* t = NULL;
  QD_ASSERT_OK(qd_tokenizer_open(path, kind, qd_allocator_system(), &t));
  ck_assert_ptr_nonnull(t);
  return t;
}

/* Saves, loads back and checks the blob gives the same ids; returns the loaded copy. */
static qd_tokenizer_t* blob_round_trip(const qd_tokenizer_t* t) {
  void* blob;
  size_t size;
  QD_ASSERT_OK(qd_tokenizer_save_blob(t, qd_allocator_system(), &blob, &size));
  qd_tokenizer_t* u = NULL;
  QD_ASSERT_OK(qd_tokenizer_load_blob(blob, size, qd_allocator_system(), &u));
  void* again;
  size_t size2;
  QD_ASSERT_OK(qd_tokenizer_save_blob(u, qd_allocator_system(), &again, &size2));
  ck_assert_uint_eq(size, size2);
  ck_assert_msg(memcmp(blob, again, size) == 0, "a reloaded blob saves differently");
  qd_free(qd_allocator_system(), blob, size);
  qd_free(qd_allocator_system(), again, size2);
  return u;
}

/* --- parity ------------------------------------------------------------------------------------------------ */

START_TEST(parity_clip_real) {
  qd_tokenizer_t* t = open_ok(clip_real_dir(), QD_TOKENIZER_CLIP);
  ck_assert_int_eq(qd_tokenizer_kind(t), QD_TOKENIZER_CLIP);
  ck_assert_uint_eq(qd_tokenizer_vocab_size(t), 49408);
  ck_assert_int_eq(qd_tokenizer_bos_id(t), 49406);
  ck_assert_int_eq(qd_tokenizer_eos_id(t), 49407);
  ck_assert_int_eq(qd_tokenizer_pad_id(t), 49407);
  ck_assert_uint_eq(qd_tokenizer_model_max_length(t), 77);
  check_parity(t, "clip", true);
  qd_tokenizer_t* u = blob_round_trip(t);
  check_parity(u, "clip", true);
  qd_tokenizer_destroy(u);
  qd_tokenizer_destroy(t);
}
END_TEST

START_TEST(parity_t5_real) {
  qd_tokenizer_t* t = open_ok(path_join(tok_dir(), "flux/tokenizer_2"), QD_TOKENIZER_T5);
  ck_assert_int_eq(qd_tokenizer_kind(t), QD_TOKENIZER_T5);
  ck_assert_uint_eq(qd_tokenizer_vocab_size(t), 32100);
  ck_assert_int_eq(qd_tokenizer_eos_id(t), 1);
  ck_assert_int_eq(qd_tokenizer_pad_id(t), 0);
  ck_assert_int_eq(qd_tokenizer_unk_id(t), 2);
  ck_assert_int_eq(qd_tokenizer_bos_id(t), -1);
  ck_assert_uint_eq(qd_tokenizer_model_max_length(t), 512);
  check_parity(t, "t5", true);
  check_parity(t, "t5_256", true);
  qd_tokenizer_t* u = blob_round_trip(t);
  check_parity(u, "t5", true);
  qd_tokenizer_destroy(u);
  qd_tokenizer_destroy(t);
}
END_TEST

/* The complete files (tools/fetch_flux_tokenizers.py): the real vocab.json, and T5's tokenizer.json both as
 * FluxPipeline reads it (directory) and as tokenizers.Tokenizer.from_file does (the file's own pipeline). */
START_TEST(parity_full_files_when_fetched) {
  const char* full = path_join(tok_dir(), "flux_full");
  if (!exists(path_join(full, "tokenizer_2/tokenizer.json"))) {
    fprintf(stderr, "parity_full_files_when_fetched: %s absent (tools/fetch_flux_tokenizers.py): skipped\n", full);
    return;
  }
  qd_tokenizer_t* t = open_ok(path_join(full, "tokenizer"), QD_TOKENIZER_AUTO);
  check_parity(t, "clip", true);
  qd_tokenizer_destroy(t);
  t = open_ok(path_join(full, "tokenizer_2"), QD_TOKENIZER_AUTO);
  check_parity(t, "t5", true);
  check_parity(t, "t5_256", true);
  qd_tokenizer_destroy(t);
  t = open_ok(path_join(full, "tokenizer_2/tokenizer.json"), QD_TOKENIZER_T5);
  check_parity(t, "t5_json", true);
  qd_tokenizer_t* u = blob_round_trip(t);
  check_parity(u, "t5_json", true);
  qd_tokenizer_destroy(u);
  qd_tokenizer_destroy(t);
}
END_TEST

START_TEST(parity_synthetic) {
  qd_tokenizer_t* t = open_ok(path_join(tok_dir(), "clip_synth/tokenizer.json"), QD_TOKENIZER_CLIP);
  check_parity(t, "clip_synth", true);
  qd_tokenizer_t* u = blob_round_trip(t);
  check_parity(u, "clip_synth", true);
  qd_tokenizer_destroy(u);
  qd_tokenizer_destroy(t);
  t = open_ok(path_join(tok_dir(), "t5_synth/tokenizer.json"), QD_TOKENIZER_T5);
  check_parity(t, "t5_synth", true);
  u = blob_round_trip(t);
  check_parity(u, "t5_synth", true);
  qd_tokenizer_destroy(u);
  qd_tokenizer_destroy(t);
  /* the directory holds tokenizer.json too; the spiece.model form is read through a copy */
  const char* d = fresh_dir("t5_synth_spm");
  copy_file(path_join(tok_dir(), "t5_synth/spiece.model"), path_join(d, "spiece.model"));
  t = open_ok(d, QD_TOKENIZER_T5);
  check_parity(t, "t5_synth_spm", true);
  qd_tokenizer_destroy(t);
}
END_TEST

/* --- the malformed corpus ----------------------------------------------------------------------------------- */

static qd_tokenizer_kind_t kind_of(const char* k) {
  if (strcmp(k, "CLIP") == 0) return QD_TOKENIZER_CLIP;
  if (strcmp(k, "T5") == 0) return QD_TOKENIZER_T5;
  ck_assert_str_eq(k, "AUTO");
  return QD_TOKENIZER_AUTO;
}

static qd_error_detail_t detail_by_name(const char* name) {
  for (int d = 0; d < QD_E_COUNT_; d++)
    if (strcmp(qd_error_detail_name((qd_error_detail_t)d), name) == 0) return (qd_error_detail_t)d;
  return QD_E_COUNT_;
}

/* Details covered by dedicated tests below rather than by corpus files. */
static const qd_error_detail_t dedicated_[] = {
    QD_E_TOK_PROMPT_UTF8,  QD_E_TOK_PROMPT_TOO_LONG, QD_E_TOK_MAX_LENGTH,     QD_E_TOK_FILE_TOO_LARGE,
    QD_E_TOK_VOCAB_TOO_LARGE, QD_E_TOK_BLOB_MAGIC,   QD_E_TOK_BLOB_VERSION,   QD_E_TOK_BLOB_SIZE,
    QD_E_TOK_BLOB_CHECKSUM, QD_E_TOK_BLOB_TRUNCATED, QD_E_TOK_BLOB_FIELD,     QD_E_TOK_ID_RANGE,
};

START_TEST(malformed_corpus) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path_join(tok_dir(), "corpus"));
  FILE* m = fopen(path_join(dir, "manifest.txt"), "r");
  ck_assert_ptr_nonnull(m);
  bool seen[QD_E_COUNT_] = {false};
  char name[256], kind[16], want[64];
  size_t cases = 0;
  while (fscanf(m, "%255s %15s %63s", name, kind, want) == 3) {
    cases++;
    qd_tokenizer_t* t = (qd_tokenizer_t*)1;
    qd_status_t st = qd_tokenizer_open(path_join(dir, name), kind_of(kind), qd_allocator_system(), &t);
    if (strcmp(want, "OK") == 0) {
      QD_ASSERT_OK(st);
      int32_t ids[16];
      QD_ASSERT_OK(qd_tokenizer_encode(t, "ab a", 4, 16, QD_TOKENIZER_UTF8_REPLACE, ids, NULL));
      qd_tokenizer_destroy(t);
      continue;
    }
    qd_error_detail_t d = detail_by_name(want);
    ck_assert_msg(d != QD_E_COUNT_, "manifest names unknown detail %s", want);
    char msg[2048];
    qd_status_format(st, msg, sizeof msg);
    ck_assert_msg(st != QD_OK, "%s opened; expected %s", name, want);
    ck_assert_ptr_null(t);
    ck_assert_msg(qd_status_detail(st) == d, "%s: expected %s, got %s: %s", name, want,
                  qd_error_detail_name(qd_status_detail(st)), msg);
    qd_status_free(st);
    seen[d] = true;
  }
  fclose(m);
  ck_assert_uint_gt(cases, 100);
  for (size_t i = 0; i < sizeof dedicated_ / sizeof dedicated_[0]; i++) seen[dedicated_[i]] = true;
  for (int d = QD_E_TOK_PROMPT_UTF8; d <= QD_E_TOK_ID_RANGE; d++)
    ck_assert_msg(seen[d], "no corpus file or test for %s", qd_error_detail_name((qd_error_detail_t)d));
}
END_TEST

/* Sizes no corpus should hold: a sparse file over the size limit, and more merges than tokens allowed. */
START_TEST(hostile_sizes) {
  const char* d = fresh_dir("huge");
  const char* merges = path_join(d, "merges.txt");
  FILE* f = fopen(merges, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_int_eq(ftruncate(fileno(f), (off_t)300 << 20), 0); /* sparse: no disk used */
  fclose(f);
  write_bytes(path_join(d, "vocab.json"), "{\"a\": 0}", 8);
  qd_tokenizer_t* t;
  QD_ASSERT_DETAIL(qd_tokenizer_open(d, QD_TOKENIZER_CLIP, qd_allocator_system(), &t), QD_E_TOK_FILE_TOO_LARGE);
  f = fopen(merges, "wb");
  static const char line[] = "a b\n";
  for (size_t i = 0; i < (4u << 20) + 8; i++) fwrite(line, 1, 4, f);
  fclose(f);
  static const char vocab[] = "{\"a\": 0, \"b\": 1, \"ab\": 2}";
  write_bytes(path_join(d, "vocab.json"), vocab, strlen(vocab));
  QD_ASSERT_DETAIL(qd_tokenizer_open(d, QD_TOKENIZER_CLIP, qd_allocator_system(), &t), QD_E_TOK_VOCAB_TOO_LARGE);
  unlink(merges);
}
END_TEST

/* --- blobs --------------------------------------------------------------------------------------------------- */

static uint64_t fnv(const unsigned char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

/* Rewrites the size and checksum fields so that a damaged payload gets past them. */
static void reseal(unsigned char* b, size_t size) {
  uint64_t sum = fnv(b + 32, size - 32);
  for (int i = 0; i < 8; i++) {
    b[16 + i] = (unsigned char)((uint64_t)size >> (8 * i));
    b[24 + i] = (unsigned char)(sum >> (8 * i));
  }
}

static void put_u32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static qd_status_t load(const unsigned char* b, size_t n) {
  qd_tokenizer_t* t = NULL;
  qd_status_t s = qd_tokenizer_load_blob(b, n, qd_allocator_system(), &t);
  qd_tokenizer_destroy(t);
  return s;
}

START_TEST(blob_damage) {
  qd_tokenizer_t* t = open_ok(path_join(tok_dir(), "corpus/valid_t5.json"), QD_TOKENIZER_T5);
  void* blob;
  size_t n;
  QD_ASSERT_OK(qd_tokenizer_save_blob(t, qd_allocator_system(), &blob, &n));
  qd_tokenizer_destroy(t);
  unsigned char* b = malloc(n);
  QD_ASSERT_OK(load(blob, n));
  /* the header */
  memcpy(b, blob, n);
  b[0] = 'X';
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_MAGIC);
  QD_ASSERT_DETAIL(load(b, 5), QD_E_TOK_BLOB_MAGIC);
  memcpy(b, blob, n);
  put_u32(b + 8, 2);
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_VERSION);
  QD_ASSERT_DETAIL(load(blob, n - 1), QD_E_TOK_BLOB_SIZE);
  memcpy(b, blob, n);
  b[n / 2] ^= 0x40;
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_CHECKSUM);
  /* every truncation, resealed so that the reader itself must notice */
  for (size_t k = 32; k < n; k++) {
    memcpy(b, blob, n);
    reseal(b, k);
    qd_status_t s = load(b, k);
    ck_assert_msg(s != QD_OK, "a blob cut to %zu of %zu bytes loaded", k, n);
    ck_assert_msg(qd_status_detail(s) == QD_E_TOK_BLOB_TRUNCATED || qd_status_detail(s) == QD_E_TOK_BLOB_FIELD ||
                      qd_status_detail(s) == QD_E_TOK_VOCAB_EMPTY,
                  "cut to %zu: %s", k, qd_error_detail_name(qd_status_detail(s)));
    qd_status_free(s);
  }
  /* every single-byte change of the payload, resealed: a clean status or a tokenizer that still works */
  int32_t ids[32];
  for (size_t k = 32; k < n; k++) {
    for (int v = 0; v < 3; v++) {
      memcpy(b, blob, n);
      b[k] = v == 0 ? 0xFF : v == 1 ? (unsigned char)(b[k] + 1) : 0x00;
      reseal(b, n);
      qd_tokenizer_t* u = NULL;
      qd_status_t s = qd_tokenizer_load_blob(b, n, qd_allocator_system(), &u);
      if (s) {
        qd_status_free(s);
        continue;
      }
      qd_status_t e = qd_tokenizer_encode(u, "ab ba  a", 8, 32, QD_TOKENIZER_UTF8_REPLACE, ids, NULL);
      qd_status_free(e);
      qd_tokenizer_destroy(u);
    }
  }
  /* specific fields: kind, vocabulary size, an id, a flag, trailing bytes */
  memcpy(b, blob, n);
  put_u32(b + 12, 7);
  reseal(b, n);
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_FIELD);
  memcpy(b, blob, n);
  put_u32(b + 32, 1); /* kind CLIP with a Unigram model */
  reseal(b, n);
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_FIELD);
  memcpy(b, blob, n);
  put_u32(b + 36, 0xFFFFFFF0u); /* vocabulary size */
  reseal(b, n);
  QD_ASSERT_DETAIL(load(b, n), QD_E_TOK_BLOB_FIELD);
  unsigned char* longer = malloc(n + 4);
  memcpy(longer, blob, n);
  memset(longer + n, 0, 4);
  reseal(longer, n + 4);
  QD_ASSERT_DETAIL(load(longer, n + 4), QD_E_TOK_BLOB_FIELD);
  free(longer);
  QD_ASSERT_DETAIL(qd_tokenizer_load_blob(NULL, 4, qd_allocator_system(), &t), QD_E_INVALID_ARGUMENT);
  free(b);
  qd_free(qd_allocator_system(), blob, n);
}
END_TEST

/* --- API behaviour ------------------------------------------------------------------------------------------- */

START_TEST(encode_contract) {
  qd_tokenizer_t* t = open_ok(clip_real_dir(), QD_TOKENIZER_AUTO);
  int32_t ids[80];
  size_t used = 99;
  /* REPLACE (default) against REJECT, with the offset of the first bad byte in the message */
  QD_ASSERT_OK(qd_tokenizer_encode(t, "ab\xff" "c", 4, 77, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  qd_status_t s = qd_tokenizer_encode(t, "abc\xe2\x82" "d", 6, 77, QD_TOKENIZER_UTF8_REJECT, ids, &used);
  ck_assert(qd_status_is(s, QD_E_TOK_PROMPT_UTF8));
  ck_assert_ptr_nonnull(strstr(qd_status_message(s), "byte offset 3"));
  qd_status_free(s);
  QD_ASSERT_OK(qd_tokenizer_encode(t, "caf\xc3\xa9", 5, 77, QD_TOKENIZER_UTF8_REJECT, ids, &used));
  /* max_length: the two special tokens must fit; exactly two gives <bos><eos> */
  QD_ASSERT_DETAIL(qd_tokenizer_encode(t, "a", 1, 1, QD_TOKENIZER_UTF8_REPLACE, ids, &used), QD_E_TOK_MAX_LENGTH);
  QD_ASSERT_DETAIL(qd_tokenizer_encode(t, "a", 1, QD_TOKENIZER_MAX_LENGTH + 1, QD_TOKENIZER_UTF8_REPLACE, ids, &used),
                   QD_E_TOK_MAX_LENGTH);
  QD_ASSERT_OK(qd_tokenizer_encode(t, "a cat", 5, 2, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  ck_assert_int_eq(ids[0], 49406);
  ck_assert_int_eq(ids[1], 49407);
  ck_assert_uint_eq(used, 2);
  /* empty prompt: <bos><eos> then padding */
  QD_ASSERT_OK(qd_tokenizer_encode(t, "", 0, 77, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  ck_assert_uint_eq(used, 2);
  ck_assert_int_eq(ids[76], 49407);
  QD_ASSERT_OK(qd_tokenizer_encode(t, NULL, 0, 77, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  /* limits */
  char* big = malloc(QD_TOKENIZER_MAX_PROMPT_BYTES + 1);
  memset(big, 'a', QD_TOKENIZER_MAX_PROMPT_BYTES + 1);
  QD_ASSERT_DETAIL(qd_tokenizer_encode(t, big, QD_TOKENIZER_MAX_PROMPT_BYTES + 1, 77, QD_TOKENIZER_UTF8_REPLACE, ids,
                                       &used),
                   QD_E_TOK_PROMPT_TOO_LONG);
  free(big);
  QD_ASSERT_DETAIL(qd_tokenizer_encode(NULL, "a", 1, 77, QD_TOKENIZER_UTF8_REPLACE, ids, &used),
                   QD_E_INVALID_ARGUMENT);
  /* tokenize: the text's tokens alone */
  int32_t* raw;
  size_t n;
  QD_ASSERT_OK(qd_tokenizer_tokenize(t, "a photo of a cat", 16, QD_TOKENIZER_UTF8_REPLACE, qd_allocator_system(), &raw,
                                     &n));
  ck_assert_uint_eq(n, 5);
  ck_assert_int_eq(raw[0], 320);
  ck_assert_int_eq(raw[4], 2368);
  /* decode for logs */
  char* text;
  size_t len;
  QD_ASSERT_OK(qd_tokenizer_decode(t, raw, n, true, qd_allocator_system(), &text, &len));
  ck_assert_str_eq(text, "a photo of a cat");
  qd_free(qd_allocator_system(), text, len + 1);
  qd_free(qd_allocator_system(), raw, n * sizeof(int32_t));
  QD_ASSERT_OK(qd_tokenizer_encode(t, "Hello, WORLD! café 東京", strlen("Hello, WORLD! café 東京"), 77,
                                   QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  QD_ASSERT_OK(qd_tokenizer_decode(t, ids, used, true, qd_allocator_system(), &text, &len));
  ck_assert_str_eq(text, "hello , world ! café 東京");
  qd_free(qd_allocator_system(), text, len + 1);
  QD_ASSERT_OK(qd_tokenizer_decode(t, ids, used, false, qd_allocator_system(), &text, &len));
  ck_assert_ptr_nonnull(strstr(text, "<|startoftext|>"));
  qd_free(qd_allocator_system(), text, len + 1);
  int32_t bad = 49408;
  QD_ASSERT_DETAIL(qd_tokenizer_decode(t, &bad, 1, false, qd_allocator_system(), &text, &len), QD_E_TOK_ID_RANGE);
  ck_assert_str_eq(qd_tokenizer_id_to_token(t, 320), "a</w>");
  ck_assert_int_eq(qd_tokenizer_token_to_id(t, "cat</w>"), 2368);
  ck_assert_int_eq(qd_tokenizer_token_to_id(t, "no such token"), -1);
  ck_assert_ptr_null(qd_tokenizer_id_to_token(t, -1));
  qd_tokenizer_destroy(t);
  qd_tokenizer_destroy(NULL);

  t = open_ok(path_join(tok_dir(), "flux/tokenizer_2"), QD_TOKENIZER_T5);
  const char* p = "A cat holding a sign that says hello world";
  QD_ASSERT_OK(qd_tokenizer_encode(t, p, strlen(p), 16, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
  QD_ASSERT_OK(qd_tokenizer_decode(t, ids, used, true, qd_allocator_system(), &text, &len));
  ck_assert_str_eq(text, p);
  qd_free(qd_allocator_system(), text, len + 1);
  qd_tokenizer_destroy(t);

  s = qd_tokenizer_open(path_join(tok_dir(), "no_such_dir"), QD_TOKENIZER_AUTO, qd_allocator_system(), &t);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_NOT_FOUND);
  qd_status_free(s);
}
END_TEST

/* Random byte strings (valid UTF-8 or not, special-token fragments, long runs) through every kind of tokenizer:
 * each encode must succeed in REPLACE mode and produce ids inside the vocabulary. */
START_TEST(random_prompts) {
  qd_tokenizer_t* toks[4] = {open_ok(clip_real_dir(), QD_TOKENIZER_CLIP),
                             open_ok(path_join(tok_dir(), "flux/tokenizer_2"), QD_TOKENIZER_T5),
                             open_ok(path_join(tok_dir(), "clip_synth/tokenizer.json"), QD_TOKENIZER_CLIP),
                             open_ok(path_join(tok_dir(), "t5_synth/tokenizer.json"), QD_TOKENIZER_T5)};
  static const char* const frags[] = {"<|endoftext|>", "</s>",         "<extra_id_7>", "\xe2\x96\x81",
                                      " ",             "  ",           "'s",           "e\xcc\x81",
                                      "\xef\xac\x81",  "\xf0\x9f\x91\xa8\xe2\x80\x8d", "\r\n", "\xed\xa0\x80",
                                      "\xff",          "A"};
  uint64_t rng = 0x9E3779B97F4A7C15ULL;
  char buf[600];
  int32_t ids[300];
  for (int iter = 0; iter < 3000; iter++) {
    size_t len = 0;
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    size_t target = (rng >> 33) % 500;
    while (len < target) {
      rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
      unsigned r = (unsigned)(rng >> 40);
      if (r % 4 == 0) {
        const char* f = frags[(r >> 3) % (sizeof frags / sizeof frags[0])];
        size_t fl = strlen(f);
        if (len + fl > sizeof buf) break;
        memcpy(buf + len, f, fl);
        len += fl;
      } else {
        buf[len++] = (char)(r % 3 == 0 ? (r >> 8) & 0xFF : 'a' + (r >> 8) % 26);
      }
    }
    for (int k = 0; k < 4; k++) {
      size_t used;
      QD_ASSERT_OK(qd_tokenizer_encode(toks[k], buf, len, 300, QD_TOKENIZER_UTF8_REPLACE, ids, &used));
      for (size_t i = 0; i < 300; i++) ck_assert(ids[i] >= 0 && (size_t)ids[i] < qd_tokenizer_vocab_size(toks[k]));
    }
  }
  /* a prompt of the largest accepted size, as one word and as many */
  char* big = malloc(QD_TOKENIZER_MAX_PROMPT_BYTES);
  for (size_t i = 0; i < QD_TOKENIZER_MAX_PROMPT_BYTES; i++) big[i] = (char)('a' + i % 7);
  for (int k = 0; k < 4; k++)
    QD_ASSERT_OK(qd_tokenizer_encode(toks[k], big, QD_TOKENIZER_MAX_PROMPT_BYTES, 77, QD_TOKENIZER_UTF8_REPLACE, ids,
                                     NULL));
  for (size_t i = 0; i < QD_TOKENIZER_MAX_PROMPT_BYTES; i += 9) big[i] = ' ';
  for (int k = 0; k < 4; k++)
    QD_ASSERT_OK(qd_tokenizer_encode(toks[k], big, QD_TOKENIZER_MAX_PROMPT_BYTES, 77, QD_TOKENIZER_UTF8_REPLACE, ids,
                                     NULL));
  free(big);
  for (int k = 0; k < 4; k++) qd_tokenizer_destroy(toks[k]);
}
END_TEST

/* --- Unicode helpers ------------------------------------------------------------------------------------------ */

static size_t to_cps(const char* s, uint32_t* out) {
  size_t n = 0, len = strlen(s);
  for (size_t i = 0; i < len;) {
    size_t k = qd_utf8_decode((const unsigned char*)s + i, len - i, &out[n]);
    ck_assert_uint_ne(k, 0);
    i += k;
    n++;
  }
  return n;
}

START_TEST(unicode_helpers) {
  ck_assert_str_eq(qd_unicode_version, "14.0.0");
  uint32_t in[16], out[64];
  /* NFC: composition, canonical order, Hangul, singletons, exclusions */
  static const struct {
    const char *from, *to;
  } nfc[] = {{"e\xcc\x81", "\xc3\xa9"},                       /* e + acute */
             {"a\xcc\xa3\xcc\x81", "\xe1\xba\xa5\xcc\xa3"},  /* no: a + dot below + acute composes a-acute? */
             {"\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab", "\xed\x95\x9c"}, /* jamo -> 한 */
             {"\xe2\x84\xab", "\xc3\x85"},                    /* angstrom sign -> Å */
             {"\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc"},    /* U+0958 is excluded from composition */
             {"\xcc\x81" "a", "\xcc\x81" "a"}};               /* a leading mark stays */
  for (size_t i = 0; i < sizeof nfc / sizeof nfc[0]; i++) {
    if (i == 1) continue; /* see the NFC check below, computed rather than hand-written */
    size_t n = to_cps(nfc[i].from, in);
    size_t m = qd_unicode_nfc(in, n, out);
    uint32_t want[16];
    size_t wn = to_cps(nfc[i].to, want);
    ck_assert_uint_eq(m, wn);
    for (size_t k = 0; k < m; k++) ck_assert_uint_eq(out[k], want[k]);
  }
  /* a + U+0301 + U+0323 reorders (230 after 220) and composes to U+1EA1 U+0301 */
  in[0] = 'a';
  in[1] = 0x301;
  in[2] = 0x323;
  ck_assert_uint_eq(qd_unicode_nfc(in, 3, out), 2);
  ck_assert_uint_eq(out[0], 0x1EA1);
  ck_assert_uint_eq(out[1], 0x301);
  /* lowercase: full mapping, no context */
  uint32_t low[3];
  ck_assert_uint_eq(qd_unicode_to_lower(0x130, low), 2);
  ck_assert_uint_eq(low[0], 'i');
  ck_assert_uint_eq(low[1], 0x307);
  ck_assert_uint_eq(qd_unicode_to_lower(0x3A3, low), 1);
  ck_assert_uint_eq(low[0], 0x3C3);
  ck_assert_uint_eq(qd_unicode_to_lower(0x100, low), 1);
  ck_assert_uint_eq(low[0], 0x101);
  ck_assert_uint_eq(qd_unicode_to_lower(0x101, low), 1);
  ck_assert_uint_eq(low[0], 0x101);
  ck_assert_uint_eq(qd_unicode_to_lower(0xFF21, low), 1);
  ck_assert_uint_eq(low[0], 0xFF41);
  /* categories */
  ck_assert(qd_unicode_is_letter(0x6771) && !qd_unicode_is_letter(0x301) && qd_unicode_is_number(0xBD));
  ck_assert(qd_unicode_is_white_space(0x85) && qd_unicode_is_white_space(0x3000) && !qd_unicode_is_white_space(0x200B));
  ck_assert(!qd_unicode_is_white_space(0x1C));
  /* grapheme clusters: CR LF, marks, ZWJ emoji, flags, Hangul, Prepend */
  static const struct {
    const char* s;
    size_t first_end;
  } g[] = {{"\r\nx", 2}, {"e\xcc\x81\xcc\x82x", 3}, {"\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9x", 3},
           {"\xf0\x9f\x87\xab\xf0\x9f\x87\xb7\xf0\x9f\x87\xaf", 2}, {"\xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab!", 3},
           {"\xd8\x80" "a", 2}, {"a\r", 1}, {"ab", 1}};
  for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
    size_t n = to_cps(g[i].s, in);
    ck_assert_msg(qd_unicode_grapheme_end(in, n, 0) == g[i].first_end, "case %zu: %zu", i,
                  qd_unicode_grapheme_end(in, n, 0));
  }
  /* UTF-8: maximal subparts */
  uint32_t cp;
  ck_assert_uint_eq(qd_utf8_decode((const unsigned char*)"\xe2\x82", 2, &cp), 0);
  ck_assert_uint_eq(cp, 2);
  ck_assert_uint_eq(qd_utf8_decode((const unsigned char*)"\xed\xa0\x80", 3, &cp), 0);
  ck_assert_uint_eq(cp, 1);
  ck_assert_uint_eq(qd_utf8_decode((const unsigned char*)"\xf4\x8f\xbf\xbf", 4, &cp), 4);
  ck_assert_uint_eq(cp, 0x10FFFF);
  ck_assert_uint_eq(qd_utf8_first_invalid("ok\xc0\xaf", 4), 2);
}
END_TEST

/* --- allocation-failure sweeps --------------------------------------------------------------------------------- */

typedef qd_status_t (*make_fn)(qd_allocator_t a, const void* arg, qd_tokenizer_t** out);

static qd_status_t make_open(qd_allocator_t a, const void* arg, qd_tokenizer_t** out) {
  return qd_tokenizer_open(arg, QD_TOKENIZER_AUTO, a, out);
}

typedef struct blob_arg {
  const void* data;
  size_t size;
} blob_arg_t;

static qd_status_t make_blob(qd_allocator_t a, const void* arg, qd_tokenizer_t** out) {
  const blob_arg_t* b = arg;
  return qd_tokenizer_load_blob(b->data, b->size, a, out);
}

/* Fails the N-th allocation for every N through open/load, one encode and one save: each N gives a clean
 * OUT_OF_MEMORY (or success once N is past the last allocation) and frees everything. */
static void sweep(make_fn make, const void* arg, const char* label) {
  const char* prompt = "Hello, WORLD! <|endoftext|> café ﬁ 東京 🎉 don't  </s> e\xcc\x81";
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t ta;
    qd_test_allocator_init(&ta, qd_allocator_system(), n);
    qd_allocator_t a = qd_test_allocator_as_allocator(&ta);
    qd_tokenizer_t* t = NULL;
    qd_status_t s = make(a, arg, &t);
    bool done = false;
    if (!s) {
      int32_t ids[64];
      s = qd_tokenizer_encode(t, prompt, strlen(prompt), 64, QD_TOKENIZER_UTF8_REPLACE, ids, NULL);
      if (!s) {
        void* blob;
        size_t size;
        s = qd_tokenizer_save_blob(t, a, &blob, &size);
        if (!s) qd_free(a, blob, size);
      }
      done = s == QD_OK && ta.failures == 0;
      qd_tokenizer_destroy(t);
    } else {
      ck_assert_ptr_null(t);
    }
    if (s) {
      ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "%s, failing allocation %llu: %s", label,
                    (unsigned long long)n, qd_status_message(s));
      qd_status_free(s);
    }
    ck_assert_msg(ta.live_count == 0 && ta.live_bytes == 0, "%s, failing allocation %llu: %lld allocations leaked",
                  label, (unsigned long long)n, (long long)ta.live_count);
    if (done) break;
    ck_assert_msg(n < 100000, "%s: the sweep does not end", label);
  }
}

START_TEST(allocation_failure_sweeps) {
  sweep(make_open, path_join(tok_dir(), "corpus/valid_clip_dir"), "CLIP directory");
  sweep(make_open, path_join(tok_dir(), "corpus/valid_clip.json"), "CLIP tokenizer.json");
  sweep(make_open, path_join(tok_dir(), "corpus/valid_t5.json"), "T5 tokenizer.json");
  sweep(make_open, path_join(tok_dir(), "corpus/valid_t5_dir"), "T5 spiece.model directory");
  qd_tokenizer_t* t = open_ok(path_join(tok_dir(), "corpus/valid_t5.json"), QD_TOKENIZER_T5);
  blob_arg_t b;
  QD_ASSERT_OK(qd_tokenizer_save_blob(t, qd_allocator_system(), (void**)&b.data, &b.size));
  qd_tokenizer_destroy(t);
  sweep(make_blob, &b, "T5 blob");
  qd_free(qd_allocator_system(), (void*)b.data, b.size);
  t = open_ok(path_join(tok_dir(), "corpus/valid_clip.json"), QD_TOKENIZER_CLIP);
  QD_ASSERT_OK(qd_tokenizer_save_blob(t, qd_allocator_system(), (void**)&b.data, &b.size));
  qd_tokenizer_destroy(t);
  sweep(make_blob, &b, "CLIP blob");
  qd_free(qd_allocator_system(), (void*)b.data, b.size);
}
END_TEST

static Suite* tokenizer_suite(void) {
  Suite* s = suite_create("tokenizer");
  TCase* tc = tcase_create("parity");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, parity_clip_real);
  tcase_add_test(tc, parity_t5_real);
  tcase_add_test(tc, parity_full_files_when_fetched);
  tcase_add_test(tc, parity_synthetic);
  suite_add_tcase(s, tc);
  TCase* tf = tcase_create("files");
  tcase_set_timeout(tf, 600);
  tcase_add_test(tf, malformed_corpus);
  tcase_add_test(tf, hostile_sizes);
  tcase_add_test(tf, blob_damage);
  tcase_add_test(tf, encode_contract);
  tcase_add_test(tf, unicode_helpers);
  tcase_add_test(tf, random_prompts);
  tcase_add_test(tf, allocation_failure_sweeps);
  suite_add_tcase(s, tf);
  return s;
}

QD_TEST_MAIN(tokenizer_suite)
