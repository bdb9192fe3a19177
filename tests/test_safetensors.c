/* The safetensors reader and the checkpoint opener: valid files of every dtype, widening, the malformed corpus
 * (each file rejected with exactly its manifest's detail), the sharded FLUX fixture and every index rule, and
 * allocation-failure sweeps over both openers. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qd/checkpoint.h"
#include "qd/safetensors.h"
#include "qd_test.h"

/* --- helpers ------------------------------------------------------------------------------------------- */

static char* path_join(const char* a, const char* b) {
  static char bufs[8][1024];
  static int next;
  char tmp[1024]; /* a or b may be an earlier result */
  snprintf(tmp, sizeof tmp, "%s/%s", a, b);
  char* p = bufs[next++ % 8];
  memcpy(p, tmp, sizeof tmp);
  return p;
}

static const char* corpus_dir(void) { return path_join(qd_test_data_dir(), "safetensors_corpus"); }
static const char* flux_dir(void) { return path_join(qd_test_data_dir(), "flux_sharded"); }
static const char* flux_index(void) {
  return path_join(flux_dir(), "diffusion_pytorch_model.safetensors.index.json");
}

static void write_bytes(const char* path, const void* data, size_t len) {
  FILE* f = fopen(path, "wb");
  ck_assert_msg(f != NULL, "cannot write %s: %s", path, strerror(errno));
  ck_assert_uint_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void write_text(const char* path, const char* text) { write_bytes(path, text, strlen(text)); }

static unsigned char* read_bytes(const char* path, size_t* out_len) {
  FILE* f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot read %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* b = malloc((size_t)n + 1);
  ck_assert_uint_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *out_len = (size_t)n;
  return b;
}

static void copy_file(const char* from, const char* to) {
  size_t n;
  unsigned char* b = read_bytes(from, &n);
  write_bytes(to, b, n);
  free(b);
}

/* An empty scratch directory for one test (files of an earlier run removed, one level of subdirectories too). */
static const char* fresh_dir(const char* name) {
  static char dirs[4][1024];
  static int next;
  char* d = dirs[next++ % 4];
  snprintf(d, 1024, "%s/st_%s", qd_test_tmp_dir(), name);
  mkdir(d, 0755);
  DIR* dir = opendir(d);
  ck_assert_ptr_nonnull(dir);
  struct dirent* de;
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", d, de->d_name);
    if (unlink(p) != 0) {
      DIR* sub = opendir(p);
      struct dirent* se;
      while (sub && (se = readdir(sub)) != NULL) {
        char q[3072];
        snprintf(q, sizeof q, "%s/%s", p, se->d_name);
        unlink(q);
      }
      if (sub) closedir(sub);
      rmdir(p);
    }
  }
  closedir(dir);
  return d;
}

/* Writes a safetensors file from a header text (padded with spaces to 8) and data. */
static void write_safetensors(const char* path, const char* header, const void* data, size_t data_len) {
  size_t hl = strlen(header);
  size_t padded = hl + ((8 - (hl % 8)) % 8);
  size_t total = 8 + padded + data_len;
  unsigned char* b = malloc(total);
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  memcpy(b + 8, header, hl);
  memset(b + 8 + hl, ' ', padded - hl);
  if (data_len) memcpy(b + 8 + padded, data, data_len);
  write_bytes(path, b, total);
  free(b);
}

static qd_safetensors_t* open_ok(const char* path) {
  qd_safetensors_t* st = NULL;
  QD_ASSERT_OK(qd_safetensors_open(path, qd_allocator_system(), &st));
  ck_assert_ptr_nonnull(st);
  return st;
}

static qd_checkpoint_t* ckpt_ok(const char* path) {
  qd_checkpoint_t* ck = NULL;
  QD_ASSERT_OK(qd_checkpoint_open(path, qd_allocator_system(), &ck));
  ck_assert_ptr_nonnull(ck);
  return ck;
}

/* Opens and expects `detail`; returns the formatted message (static) for content checks. */
static const char* ckpt_fail(const char* path, qd_error_detail_t detail) {
  static char msg[2048];
  qd_checkpoint_t* ck = (qd_checkpoint_t*)1;
  qd_status_t s = qd_checkpoint_open(path, qd_allocator_system(), &ck);
  ck_assert_msg(s != QD_OK, "%s opened; expected %s", path, qd_error_detail_name(detail));
  ck_assert_ptr_null(ck);
  qd_status_format(s, msg, sizeof msg);
  ck_assert_msg(qd_status_detail(s) == detail, "%s: expected %s, got %s: %s", path, qd_error_detail_name(detail),
                qd_error_detail_name(qd_status_detail(s)), msg);
  qd_status_free(s);
  return msg;
}

/* --- single files -------------------------------------------------------------------------------------- */

START_TEST(every_dtype_and_widening) {
  qd_safetensors_t* st = open_ok(path_join(corpus_dir(), "valid_all_dtypes.safetensors"));
  ck_assert_uint_eq(qd_safetensors_tensor_count(st), 12);
  static const struct {
    const char* name;
    qd_dtype_t dtype;
    size_t n;
    float want[2];
  } cases[] = {
      {"u8", QD_DTYPE_U8, 2, {0.0f, 255.0f}},         {"i8", QD_DTYPE_I8, 2, {-128.0f, 127.0f}},
      {"i16", QD_DTYPE_I16, 1, {-32768.0f}},          {"i32", QD_DTYPE_I32, 1, {-1.0f}},
      {"i64", QD_DTYPE_I64, 1, {2.0f}},               {"f8_e4m3", QD_DTYPE_F8_E4M3, 2, {1.0f, -1.0f}},
      {"f8_e5m2", QD_DTYPE_F8_E5M2, 2, {1.0f, -1.0f}}, {"f16", QD_DTYPE_F16, 1, {1.0f}},
      {"bf16", QD_DTYPE_BF16, 1, {1.0f}},             {"f32", QD_DTYPE_F32, 1, {1.0f}},
      {"f64", QD_DTYPE_F64, 1, {1.0f}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const qd_tensor_info_t* t = qd_safetensors_find(st, cases[i].name);
    ck_assert_msg(t != NULL, "%s missing", cases[i].name);
    ck_assert_int_eq(t->dtype, cases[i].dtype);
    ck_assert_int_eq(t->rank, 1);
    ck_assert_uint_eq(t->numel, cases[i].n);
    ck_assert_uint_eq(t->nbytes, cases[i].n * qd_dtype_size(cases[i].dtype));
    float out[2] = {-7, -7};
    QD_ASSERT_OK(qd_tensor_read_f32(t, out));
    for (size_t k = 0; k < cases[i].n; k++)
      ck_assert_msg(out[k] == cases[i].want[k], "%s[%zu] = %g, want %g", cases[i].name, k, out[k], cases[i].want[k]);
  }
  float out[2];
  QD_ASSERT_DETAIL(qd_tensor_read_f32(qd_safetensors_find(st, "bool"), out), QD_E_ST_DTYPE_CONVERSION);
  QD_ASSERT_DETAIL(qd_tensor_read_f32(NULL, out), QD_E_INVALID_ARGUMENT);
  ck_assert_str_eq(qd_safetensors_metadata_get(st, "format"), "pt");
  qd_safetensors_close(st);
  qd_safetensors_close(NULL);
}
END_TEST

START_TEST(widening_special_values) {
  /* bit patterns, little-endian, and what they mean */
  static const uint16_t bf16[] = {0x4049, 0xC0A0, 0x0001, 0x7F7F, 0xFF80, 0x8000};
  static const float bf16_want[] = {3.140625f, -5.0f, 0x1p-133f, 0x1.fep127f, -INFINITY, -0.0f};
  static const uint16_t f16[] = {0x3555, 0x0001, 0x7BFF, 0xFC00, 0x03FF, 0xC000};
  static const float f16_want[] = {0.333251953125f, 0x1p-24f, 65504.0f, -INFINITY, 0x1.ff8p-15f, -2.0f};
  static const uint8_t e4m3[] = {0x7E, 0x01, 0x08, 0xC4, 0x7F, 0xFF};
  static const float e4m3_want[] = {448.0f, 0x1p-9f, 0x1p-6f, -3.0f, NAN, NAN};
  static const uint8_t e5m2[] = {0x7B, 0x01, 0x7C, 0xFC, 0x40, 0x7E};
  static const float e5m2_want[] = {57344.0f, 0x1p-16f, INFINITY, -INFINITY, 2.0f, NAN};
  unsigned char data[12 + 12 + 6 + 6];
  memcpy(data, bf16, 12);
  memcpy(data + 12, f16, 12);
  memcpy(data + 24, e4m3, 6);
  memcpy(data + 30, e5m2, 6);
  const char* dir = fresh_dir("widen");
  const char* path = path_join(dir, "w.safetensors");
  write_safetensors(path,
                    "{\"b\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[0,12]},"
                    "\"h\":{\"dtype\":\"F16\",\"shape\":[2,3],\"data_offsets\":[12,24]},"
                    "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[6],\"data_offsets\":[24,30]},"
                    "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[3,1,2],\"data_offsets\":[30,36]}}",
                    data, sizeof data);
  qd_safetensors_t* st = open_ok(path);
  const struct {
    const char* name;
    const float* want;
  } cases[] = {{"b", bf16_want}, {"h", f16_want}, {"e4", e4m3_want}, {"e5", e5m2_want}};
  for (size_t i = 0; i < 4; i++) {
    const qd_tensor_info_t* t = qd_safetensors_find(st, cases[i].name);
    ck_assert_uint_eq(t->numel, 6);
    float out[6];
    QD_ASSERT_OK(qd_tensor_read_f32(t, out));
    for (int k = 0; k < 6; k++) {
      float w = cases[i].want[k];
      if (isnan(w))
        ck_assert_msg(isnan(out[k]), "%s[%d] = %a, want NaN", cases[i].name, k, out[k]);
      else
        ck_assert_msg(out[k] == w && signbit(out[k]) == signbit(w), "%s[%d] = %a, want %a", cases[i].name, k,
                      out[k], w);
    }
  }
  ck_assert_int_eq(qd_safetensors_find(st, "e5")->rank, 3);
  /* Data-offset order. */
  ck_assert_str_eq(qd_safetensors_tensor(st, 0)->name, "b");
  ck_assert_str_eq(qd_safetensors_tensor(st, 3)->name, "e5");
  ck_assert_ptr_null(qd_safetensors_tensor(st, 4));
  qd_safetensors_close(st);
}
END_TEST

START_TEST(edge_cases_and_lookups) {
  qd_safetensors_t* st = open_ok(path_join(corpus_dir(), "valid_empty.safetensors"));
  ck_assert_uint_eq(qd_safetensors_tensor_count(st), 0);
  ck_assert_uint_eq(qd_safetensors_data_size(st), 0);
  ck_assert_ptr_null(qd_safetensors_find(st, "x"));
  ck_assert_ptr_null(qd_safetensors_tensor(st, 0));
  ck_assert_uint_eq(qd_safetensors_metadata_count(st), 0);
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_zero_element.safetensors"));
  const qd_tensor_info_t* e = qd_safetensors_find(st, "empty");
  ck_assert_uint_eq(e->numel, 0);
  ck_assert_uint_eq(e->nbytes, 0);
  ck_assert_ptr_nonnull(e->data);
  ck_assert_uint_eq(e->shape[0], 0);
  ck_assert_uint_eq(e->shape[1], 4);
  float out[2];
  QD_ASSERT_OK(qd_tensor_read_f32(e, out));
  const qd_tensor_info_t* w = qd_safetensors_find(st, "w");
  QD_ASSERT_OK(qd_tensor_read_f32(w, out));
  ck_assert(out[0] == 1.0f && out[1] == 2.0f);
  ck_assert_str_eq(qd_safetensors_tensor(st, 0)->name, "empty"); /* ties at offset 0: the empty one first */
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_scalar.safetensors"));
  const qd_tensor_info_t* s = qd_safetensors_tensor(st, 0);
  ck_assert_int_eq(s->rank, 0);
  ck_assert_uint_eq(s->numel, 1);
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_unpadded_unaligned.safetensors"));
  const qd_tensor_info_t* u = qd_safetensors_tensor(st, 0);
  ck_assert_uint_ne(u->file_offset % 4, 0);
  QD_ASSERT_OK(qd_tensor_read_f32(u, out));
  ck_assert(out[0] == 3.0f);
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_padded_header.safetensors"));
  ck_assert_uint_eq((8 + qd_safetensors_header_size(st)) % 256, 0);
  const char *k, *v;
  ck_assert(qd_safetensors_metadata_at(st, 0, &k, &v));
  ck_assert_str_eq(k, "format");
  ck_assert_str_eq(v, "pt");
  ck_assert(!qd_safetensors_metadata_at(st, 1, &k, &v));
  ck_assert_ptr_null(qd_safetensors_metadata_get(st, "nope"));
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_unicode_names.safetensors"));
  ck_assert_ptr_nonnull(qd_safetensors_find(st, "caf\xc3\xa9.w"));
  ck_assert_ptr_nonnull(qd_safetensors_find(st, "\xf0\x9f\x98\x80.b"));
  qd_safetensors_close(st);

  st = open_ok(path_join(corpus_dir(), "valid_offsets_out_of_order.safetensors"));
  ck_assert_str_eq(qd_safetensors_tensor(st, 0)->name, "a");
  ck_assert_uint_eq(qd_safetensors_tensor(st, 1)->file_offset, qd_safetensors_tensor(st, 0)->file_offset + 8);
  qd_safetensors_close(st);

  /* The OS errors. */
  qd_safetensors_t* none = (qd_safetensors_t*)1;
  qd_status_t err = qd_safetensors_open(path_join(corpus_dir(), "no_such.safetensors"), qd_allocator_system(), &none);
  ck_assert(qd_status_is(err, QD_E_IO_OPEN));
  ck_assert_int_eq(qd_status_code(err), QD_CODE_NOT_FOUND);
  ck_assert_ptr_null(none);
  qd_status_free(err);
  QD_ASSERT_DETAIL(qd_safetensors_open(corpus_dir(), qd_allocator_system(), &none), QD_E_NOT_A_FILE);
}
END_TEST

START_TEST(many_tensors_find) {
  /* Enough tensors that find must be a real search; names in an order unrelated to offsets. */
  const int n = 2000;
  size_t cap = (size_t)n * 96 + 16;
  char* h = malloc(cap);
  size_t o = (size_t)snprintf(h, cap, "{");
  for (int i = 0; i < n; i++) {
    int id = (i * 7919) % n;
    o += (size_t)snprintf(h + o, cap - o, "%s\"t.%d.w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                          i ? "," : "", id, i, i + 1);
  }
  snprintf(h + o, cap - o, "}");
  unsigned char* data = malloc((size_t)n);
  for (int i = 0; i < n; i++) data[i] = (unsigned char)i;
  const char* path = path_join(fresh_dir("many"), "many.safetensors");
  write_safetensors(path, h, data, (size_t)n);
  qd_safetensors_t* st = open_ok(path);
  ck_assert_uint_eq(qd_safetensors_tensor_count(st), (size_t)n);
  for (int i = 0; i < n; i++) {
    char name[32];
    int id = (i * 7919) % n;
    snprintf(name, sizeof name, "t.%d.w", id);
    const qd_tensor_info_t* t = qd_safetensors_find(st, name);
    ck_assert_msg(t != NULL, "%s not found", name);
    ck_assert_int_eq(*(const unsigned char*)t->data, (unsigned char)i);
    ck_assert_ptr_eq(qd_safetensors_tensor(st, (size_t)i), t);
  }
  ck_assert_ptr_null(qd_safetensors_find(st, "t.2000.w"));
  ck_assert_ptr_null(qd_safetensors_find(st, ""));
  qd_safetensors_close(st);
  free(h);
  free(data);
}
END_TEST

/* Every corpus file, from disk and from memory, fails with exactly its manifest's detail (or opens, for OK). */
START_TEST(malformed_corpus) {
  FILE* m = fopen(path_join(corpus_dir(), "manifest.txt"), "r");
  ck_assert_ptr_nonnull(m);
  char line[512];
  int checked = 0, rejected = 0;
  bool seen[QD_E_COUNT_] = {false};
  while (fgets(line, sizeof line, m)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    char file[256], want[128];
    ck_assert_int_eq(sscanf(line, "%255s %127s", file, want), 2);
    const char* path = path_join(corpus_dir(), file);
    qd_error_detail_t detail = QD_E_NONE;
    bool ok = strcmp(want, "OK") == 0;
    if (!ok) {
      for (int d = 0; d < QD_E_COUNT_; d++)
        if (strcmp(qd_error_detail_name((qd_error_detail_t)d), want) == 0) detail = (qd_error_detail_t)d;
      ck_assert_msg(detail != QD_E_NONE, "manifest names unknown detail %s", want);
    }
    size_t len;
    unsigned char* bytes = read_bytes(path, &len);
    for (int from_memory = 0; from_memory < 2; from_memory++) {
      qd_safetensors_t* st = NULL;
      qd_status_t s = from_memory ? qd_safetensors_open_memory(bytes, len, path, qd_allocator_system(), &st)
                                  : qd_safetensors_open(path, qd_allocator_system(), &st);
      char msg[2048];
      qd_status_format(s, msg, sizeof msg);
      if (ok) {
        ck_assert_msg(s == QD_OK, "%s: expected to open, got %s: %s", file,
                      qd_error_detail_name(qd_status_detail(s)), msg);
        qd_safetensors_close(st);
        continue;
      }
      ck_assert_msg(s != QD_OK, "%s opened; expected %s", file, want);
      ck_assert_msg(qd_status_detail(s) == detail, "%s: expected %s, got %s: %s", file, want,
                    qd_error_detail_name(qd_status_detail(s)), msg);
      ck_assert_int_eq(qd_status_code(s), QD_CODE_BAD_INPUT);
      ck_assert_msg(strstr(msg, file) != NULL, "%s: message does not name the file: %s", file, msg);
      ck_assert_msg(strchr(msg, '\n') == NULL, "%s: message has a newline: %s", file, msg);
      ck_assert_ptr_null(st);
      qd_status_free(s);
    }
    free(bytes);
    checked++;
    if (!ok) {
      rejected++;
      seen[detail] = true;
    }
  }
  fclose(m);
  ck_assert_int_ge(rejected, 30);
  ck_assert_int_ge(checked - rejected, 3);
  /* Every single-file rule has at least one corpus file. */
  static const qd_error_detail_t rules[] = {
      QD_E_ST_FILE_TOO_SMALL, QD_E_ST_HEADER_LENGTH, QD_E_ST_HEADER_TOO_LARGE, QD_E_ST_HEADER_UTF8,
      QD_E_ST_HEADER_JSON, QD_E_ST_HEADER_NOT_OBJECT, QD_E_ST_DUPLICATE_KEY, QD_E_ST_TENSOR_NOT_OBJECT,
      QD_E_ST_TENSOR_UNKNOWN_FIELD, QD_E_ST_TENSOR_EMPTY_NAME, QD_E_ST_DTYPE_MISSING, QD_E_ST_DTYPE_NOT_STRING,
      QD_E_ST_DTYPE_UNKNOWN, QD_E_ST_SHAPE_MISSING, QD_E_ST_SHAPE_NOT_ARRAY, QD_E_ST_SHAPE_NOT_INTEGER,
      QD_E_ST_SHAPE_NEGATIVE, QD_E_ST_SHAPE_TOO_LARGE, QD_E_ST_SHAPE_RANK, QD_E_ST_OFFSETS_MISSING,
      QD_E_ST_OFFSETS_NOT_PAIR, QD_E_ST_OFFSETS_NOT_INTEGER, QD_E_ST_OFFSETS_REVERSED, QD_E_ST_SIZE_OVERFLOW,
      QD_E_ST_SIZE_MISMATCH, QD_E_ST_DATA_START, QD_E_ST_DATA_GAP, QD_E_ST_DATA_OVERLAP, QD_E_ST_DATA_END,
      QD_E_ST_METADATA_NOT_OBJECT, QD_E_ST_METADATA_NOT_STRING, QD_E_ST_JSON_TOO_DEEP, QD_E_ST_STRING_NUL,
  };
  for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
    ck_assert_msg(seen[rules[i]], "no corpus file for %s", qd_error_detail_name(rules[i]));
}
END_TEST

START_TEST(messages_name_file_tensor_field_value) {
  char msg[1024];
  qd_safetensors_t* st;
  const char* path = path_join(corpus_dir(), "shape_negative.safetensors");
  qd_status_t s = qd_safetensors_open(path, qd_allocator_system(), &st);
  qd_status_format(s, msg, sizeof msg);
  qd_status_free(s);
  char want[1200];
  snprintf(want, sizeof want, "%s: tensor 'w': shape[1] is -1; dimensions must be non-negative integers", path);
  ck_assert_str_eq(msg, want);
  /* Hostile names are shown escaped, so the message stays one line. */
  const char* p2 = path_join(fresh_dir("msg"), "nl.safetensors");
  write_safetensors(p2, "{\"a\\nb\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", NULL, 0);
  s = qd_safetensors_open(p2, qd_allocator_system(), &st);
  qd_status_format(s, msg, sizeof msg);
  ck_assert(qd_status_is(s, QD_E_ST_SHAPE_NEGATIVE));
  qd_status_free(s);
  ck_assert_ptr_nonnull(strstr(msg, "tensor 'a\\x0Ab'"));
}
END_TEST

/* --- checkpoints --------------------------------------------------------------------------------------- */

/* first/second: substrings of the two shards' paths. */
static void check_flux(const qd_checkpoint_t* ck, const char* first, const char* second) {
  ck_assert_uint_eq(qd_checkpoint_file_count(ck), 2);
  ck_assert_uint_eq(qd_checkpoint_tensor_count(ck), 112);
  const qd_tensor_info_t* q = qd_checkpoint_find(ck, "transformer_blocks.0.attn.to_q.weight");
  ck_assert_ptr_nonnull(q);
  ck_assert_int_eq(q->dtype, QD_DTYPE_BF16);
  ck_assert_int_eq(q->rank, 2);
  ck_assert_uint_eq(q->shape[0], 16);
  ck_assert_uint_eq(q->shape[1], 16);
  ck_assert_uint_eq(q->file_index, 0);
  ck_assert_msg(strstr(q->file, first) != NULL, "%s is not in %s", q->file, first);
  const qd_tensor_info_t* p = qd_checkpoint_find(ck, "proj_out.weight");
  ck_assert_uint_eq(p->file_index, 1);
  ck_assert_msg(strstr(p->file, second) != NULL, "%s is not in %s", p->file, second);
  ck_assert_str_eq(qd_safetensors_path(qd_checkpoint_file(ck, p->file_index)), p->file);
  static const char* const names[] = {
      "x_embedder.weight", "context_embedder.bias", "time_text_embed.timestep_embedder.linear_1.weight",
      "time_text_embed.guidance_embedder.linear_2.bias", "time_text_embed.text_embedder.linear_1.weight",
      "transformer_blocks.1.norm1_context.linear.weight", "transformer_blocks.1.attn.add_k_proj.bias",
      "transformer_blocks.1.attn.to_out.0.weight", "transformer_blocks.1.attn.to_add_out.bias",
      "transformer_blocks.0.attn.norm_added_q.weight", "transformer_blocks.0.ff.net.0.proj.weight",
      "transformer_blocks.0.ff_context.net.2.bias", "single_transformer_blocks.1.norm.linear.weight",
      "single_transformer_blocks.1.proj_mlp.weight", "single_transformer_blocks.0.attn.norm_k.weight",
      "norm_out.linear.bias",
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    ck_assert_msg(qd_checkpoint_find(ck, names[i]) != NULL, "%s missing", names[i]);
  ck_assert_ptr_null(qd_checkpoint_find(ck, "transformer_blocks.2.attn.to_q.weight"));
  /* Iteration is sorted by name, and the totals add up. */
  uint64_t bytes = 0;
  for (size_t i = 0; i < qd_checkpoint_tensor_count(ck); i++) {
    const qd_tensor_info_t* t = qd_checkpoint_tensor(ck, i);
    if (i) ck_assert_int_lt(strcmp(qd_checkpoint_tensor(ck, i - 1)->name, t->name), 0);
    ck_assert_ptr_eq(qd_checkpoint_find(ck, t->name), t);
    bytes += t->nbytes;
  }
  ck_assert_ptr_null(qd_checkpoint_tensor(ck, 112));
  qd_dtype_total_t bf = qd_checkpoint_dtype_total(ck, QD_DTYPE_BF16);
  ck_assert_uint_eq(bf.tensors, 112);
  ck_assert_uint_eq(bf.bytes, bytes);
  ck_assert_uint_eq(bf.elements * 2, bytes);
  ck_assert_uint_eq(qd_checkpoint_dtype_total(ck, QD_DTYPE_F32).tensors, 0);
  ck_assert_uint_eq(qd_checkpoint_total(ck).bytes, bytes);
  /* The data is really there: an RMSNorm scale near 1. */
  float scale[8];
  QD_ASSERT_OK(qd_tensor_read_f32(qd_checkpoint_find(ck, "transformer_blocks.0.attn.norm_q.weight"), scale));
  for (int i = 0; i < 8; i++) ck_assert(scale[i] > 0.9f && scale[i] < 1.1f);
}

START_TEST(sharded_fixture_by_index_and_directory) {
  qd_checkpoint_t* ck = ckpt_ok(flux_index());
  ck_assert_int_eq(qd_checkpoint_kind(ck), QD_CHECKPOINT_INDEX);
  ck_assert_str_eq(qd_checkpoint_index_path(ck), flux_index());
  check_flux(ck, "00001-of-00002.safetensors", "00002-of-00002.safetensors");
  const char *k, *v;
  ck_assert(qd_checkpoint_index_metadata_at(ck, 0, &k, &v));
  ck_assert_str_eq(k, "total_size");
  ck_assert(qd_checkpoint_index_metadata_is_number(ck, 0));
  ck_assert_uint_eq(strtoull(v, NULL, 10), qd_checkpoint_total(ck).bytes);
  ck_assert(!qd_checkpoint_index_metadata_at(ck, 1, &k, &v));
  qd_checkpoint_close(ck);
  qd_checkpoint_close(NULL);

  ck = ckpt_ok(flux_dir());
  ck_assert_int_eq(qd_checkpoint_kind(ck), QD_CHECKPOINT_DIRECTORY);
  ck_assert_ptr_nonnull(qd_checkpoint_index_path(ck));
  check_flux(ck, "00001-of-00002.safetensors", "00002-of-00002.safetensors");
  qd_checkpoint_close(ck);

  /* One shard on its own is a single-file checkpoint. */
  ck = ckpt_ok(path_join(flux_dir(), "diffusion_pytorch_model-00002-of-00002.safetensors"));
  ck_assert_int_eq(qd_checkpoint_kind(ck), QD_CHECKPOINT_FILE);
  ck_assert_uint_eq(qd_checkpoint_file_count(ck), 1);
  ck_assert_uint_eq(qd_checkpoint_tensor_count(ck), 32);
  ck_assert_ptr_null(qd_checkpoint_index_path(ck));
  qd_checkpoint_close(ck);
}
END_TEST

/* A scratch copy of the fixture's shards with an index written from `weight_map_json` (or none). */
static const char* shards_with_index(const char* name, const char* index_json) {
  const char* d = fresh_dir(name);
  copy_file(path_join(flux_dir(), "diffusion_pytorch_model-00001-of-00002.safetensors"), path_join(d, "a.safetensors"));
  copy_file(path_join(flux_dir(), "diffusion_pytorch_model-00002-of-00002.safetensors"), path_join(d, "b.safetensors"));
  if (index_json) write_text(path_join(d, "model.safetensors.index.json"), index_json);
  return d;
}

/* Builds an index text from the fixture's real weight_map, with shard names replaced (a/b) and an edit applied:
 * drop a tensor, add one, or move one to the other shard. */
static char* rewritten_index(const char* drop, const char* add_name, const char* add_shard, const char* move) {
  qd_checkpoint_t* ck = ckpt_ok(flux_index());
  size_t cap = 64 * 1024;
  char* t = malloc(cap);
  size_t o = (size_t)snprintf(t, cap, "{\"metadata\": {\"total_size\": 1, \"format\": \"pt\"},\n \"weight_map\": {");
  bool first = true;
  for (size_t i = 0; i < qd_checkpoint_tensor_count(ck); i++) {
    const qd_tensor_info_t* x = qd_checkpoint_tensor(ck, i);
    if (drop && strcmp(x->name, drop) == 0) continue;
    bool in_a = x->file_index == 0;
    if (move && strcmp(x->name, move) == 0) in_a = !in_a;
    o += (size_t)snprintf(t + o, cap - o, "%s\n  \"%s\": \"%s\"", first ? "" : ",", x->name,
                          in_a ? "a.safetensors" : "b.safetensors");
    first = false;
  }
  if (add_name) o += (size_t)snprintf(t + o, cap - o, ",\n  \"%s\": \"%s\"", add_name, add_shard);
  snprintf(t + o, cap - o, "\n }\n}\n");
  qd_checkpoint_close(ck);
  return t;
}

START_TEST(index_rules) {
  char* idx = rewritten_index(NULL, NULL, NULL, NULL);
  const char* d = shards_with_index("idx_ok", idx);
  qd_checkpoint_t* ck = ckpt_ok(path_join(d, "model.safetensors.index.json"));
  check_flux(ck, "/a.safetensors", "/b.safetensors");
  ck_assert_uint_eq(qd_checkpoint_index_metadata_count(ck), 2);
  ck_assert(!qd_checkpoint_index_metadata_is_number(ck, 1));
  qd_checkpoint_close(ck);
  free(idx);

  idx = rewritten_index("proj_out.bias", NULL, NULL, NULL);
  d = shards_with_index("idx_unlisted", idx);
  const char* msg = ckpt_fail(path_join(d, "model.safetensors.index.json"), QD_E_ST_INDEX_TENSOR_UNLISTED);
  ck_assert_ptr_nonnull(strstr(msg, "'proj_out.bias'"));
  free(idx);

  idx = rewritten_index(NULL, "proj_out.extra", "b.safetensors", NULL);
  d = shards_with_index("idx_missing", idx);
  msg = ckpt_fail(path_join(d, "model.safetensors.index.json"), QD_E_ST_INDEX_TENSOR_MISSING);
  ck_assert_ptr_nonnull(strstr(msg, "'proj_out.extra'"));
  ck_assert_ptr_nonnull(strstr(msg, "b.safetensors"));
  free(idx);

  idx = rewritten_index(NULL, NULL, NULL, "x_embedder.weight");
  d = shards_with_index("idx_moved", idx);
  msg = ckpt_fail(path_join(d, "model.safetensors.index.json"), QD_E_ST_INDEX_TENSOR_UNLISTED);
  ck_assert_ptr_nonnull(strstr(msg, "'x_embedder.weight'"));
  free(idx);

  idx = rewritten_index(NULL, "late.weight", "c.safetensors", NULL);
  d = shards_with_index("idx_no_shard", idx);
  msg = ckpt_fail(path_join(d, "model.safetensors.index.json"), QD_E_ST_INDEX_SHARD_MISSING);
  ck_assert_ptr_nonnull(strstr(msg, "c.safetensors"));
  ck_assert_ptr_nonnull(strstr(msg, "late.weight"));
  free(idx);

  static const struct {
    const char* json;
    qd_error_detail_t detail;
  } bad[] = {
      {"{\"weight_map\": {\"x\": \"../a.safetensors\"}}", QD_E_ST_INDEX_BAD_SHARD_NAME},
      {"{\"weight_map\": {\"x\": \"/etc/a.safetensors\"}}", QD_E_ST_INDEX_BAD_SHARD_NAME},
      {"{\"weight_map\": {\"x\": \"sub/../../a.safetensors\"}}", QD_E_ST_INDEX_BAD_SHARD_NAME},
      {"{\"weight_map\": {\"x\": \"sub/..\"}}", QD_E_ST_INDEX_BAD_SHARD_NAME},
      {"{\"weight_map\": {\"x\": 3}}", QD_E_ST_INDEX_BAD_ENTRY},
      {"{\"weight_map\": {\"x\": \"\"}}", QD_E_ST_INDEX_BAD_ENTRY},
      {"{\"weight_map\": {\"x\": \"a\\u0000.safetensors\"}}", QD_E_ST_INDEX_BAD_ENTRY},
      {"{\"metadata\": {}}", QD_E_ST_INDEX_NO_WEIGHT_MAP},
      {"{\"weight_map\": [\"a.safetensors\"]}", QD_E_ST_INDEX_NO_WEIGHT_MAP},
      {"[]", QD_E_ST_INDEX_NO_WEIGHT_MAP},
      {"{\"weight_map\": {}, \"metadata\": [1]}", QD_E_ST_INDEX_METADATA},
      {"{\"weight_map\": {}, \"metadata\": {\"a\": {}}}", QD_E_ST_INDEX_METADATA},
      {"{\"weight_map\": {\"x\": \"a.safetensors\", \"x\": \"b.safetensors\"}}", QD_E_ST_DUPLICATE_KEY},
      {"{\"weight_map\": {", QD_E_ST_INDEX_JSON},
      {"", QD_E_ST_INDEX_JSON},
      {"{\"weight_map\": {\"\xc0\xae\": \"a.safetensors\"}}", QD_E_ST_INDEX_JSON},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    d = shards_with_index("idx_bad", bad[i].json);
    ckpt_fail(path_join(d, "model.safetensors.index.json"), bad[i].detail);
  }

  /* An empty weight_map is an empty checkpoint; other top-level keys are ignored. */
  d = shards_with_index("idx_empty", "{\"weight_map\": {}, \"format\": \"x\"}");
  ck = ckpt_ok(path_join(d, "model.safetensors.index.json"));
  ck_assert_uint_eq(qd_checkpoint_tensor_count(ck), 0);
  ck_assert_uint_eq(qd_checkpoint_file_count(ck), 0);
  qd_checkpoint_close(ck);

  /* Shards in a subdirectory are fine. */
  d = fresh_dir("idx_sub");
  char sub[1100];
  snprintf(sub, sizeof sub, "%s/sub", d);
  mkdir(sub, 0755);
  copy_file(path_join(flux_dir(), "diffusion_pytorch_model-00002-of-00002.safetensors"),
            path_join(sub, "b.safetensors"));
  qd_checkpoint_t* one = ckpt_ok(path_join(sub, "b.safetensors"));
  size_t cap = 16384;
  char* text = malloc(cap);
  size_t o = (size_t)snprintf(text, cap, "{\"weight_map\": {");
  for (size_t i = 0; i < qd_checkpoint_tensor_count(one); i++)
    o += (size_t)snprintf(text + o, cap - o, "%s\"%s\": \"./sub/b.safetensors\"", i ? "," : "",
                          qd_checkpoint_tensor(one, i)->name);
  snprintf(text + o, cap - o, "}}");
  qd_checkpoint_close(one);
  write_text(path_join(d, "m.safetensors.index.json"), text);
  free(text);
  ck = ckpt_ok(path_join(d, "m.safetensors.index.json"));
  ck_assert_uint_eq(qd_checkpoint_tensor_count(ck), 32);
  qd_checkpoint_close(ck);

  /* A broken shard reports its own rule, with the index as context. */
  d = shards_with_index("idx_broken_shard", "{\"weight_map\": {\"w\": \"bad.safetensors\"}}");
  copy_file(path_join(corpus_dir(), "data_gap.safetensors"), path_join(d, "bad.safetensors"));
  msg = ckpt_fail(path_join(d, "model.safetensors.index.json"), QD_E_ST_DATA_GAP);
  ck_assert_ptr_nonnull(strstr(msg, "model.safetensors.index.json"));
}
END_TEST

START_TEST(directory_rules) {
  /* No index: every .safetensors file, sorted. */
  const char* d = shards_with_index("dir_files", NULL);
  write_text(path_join(d, "README.md"), "not a shard");
  qd_checkpoint_t* ck = ckpt_ok(d);
  ck_assert_ptr_null(qd_checkpoint_index_path(ck));
  ck_assert_ptr_nonnull(strstr(qd_safetensors_path(qd_checkpoint_file(ck, 0)), "a.safetensors"));
  check_flux(ck, "/a.safetensors", "/b.safetensors");
  qd_checkpoint_close(ck);

  /* Two indexes: neither is used, the files are. */
  write_text(path_join(d, "one.safetensors.index.json"), "{}");
  write_text(path_join(d, "two.safetensors.index.json"), "{}");
  ck = ckpt_ok(d);
  ck_assert_ptr_null(qd_checkpoint_index_path(ck));
  ck_assert_uint_eq(qd_checkpoint_tensor_count(ck), 112);
  qd_checkpoint_close(ck);

  /* The same tensor in two files. */
  copy_file(path_join(d, "b.safetensors"), path_join(d, "c.safetensors"));
  const char* msg = ckpt_fail(d, QD_E_ST_DUPLICATE_TENSOR);
  ck_assert_ptr_nonnull(strstr(msg, "b.safetensors"));
  ck_assert_ptr_nonnull(strstr(msg, "c.safetensors"));

  /* Nothing to read. */
  d = fresh_dir("dir_empty");
  ckpt_fail(d, QD_E_ST_EMPTY_DIRECTORY);
  write_text(path_join(d, "notes.txt"), "x");
  mkdir(path_join(d, "dir.safetensors"), 0755); /* a directory with the right name is not a file */
  ckpt_fail(d, QD_E_ST_EMPTY_DIRECTORY);

  /* A broken file in a directory reports its own rule. */
  d = fresh_dir("dir_broken");
  copy_file(path_join(corpus_dir(), "shape_float.safetensors"), path_join(d, "x.safetensors"));
  ckpt_fail(d, QD_E_ST_SHAPE_NOT_INTEGER);

  /* A path that does not exist. */
  qd_checkpoint_t* none = (qd_checkpoint_t*)1;
  qd_status_t s = qd_checkpoint_open(path_join(d, "missing"), qd_allocator_system(), &none);
  ck_assert(qd_status_is(s, QD_E_IO_OPEN));
  ck_assert_ptr_null(none);
  qd_status_free(s);
}
END_TEST

/* --- allocation failures ------------------------------------------------------------------------------- */

typedef qd_status_t (*opener_fn)(const char* path, qd_allocator_t a, void** out);
static qd_status_t open_st(const char* path, qd_allocator_t a, void** out) {
  return qd_safetensors_open(path, a, (qd_safetensors_t**)out);
}
static qd_status_t open_ck(const char* path, qd_allocator_t a, void** out) {
  return qd_checkpoint_open(path, a, (qd_checkpoint_t**)out);
}

/* Fails allocation N for N = 1, 2, ... until an open completes without a failure: every failing N must give a
 * clean OUT_OF_MEMORY (or, for an invalid input, its own detail once the failure is past) and free everything. */
static void sweep(opener_fn open_fn, void (*close_fn)(void*), const char* path, qd_error_detail_t final_detail) {
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    void* obj = NULL;
    qd_status_t s = open_fn(path, qd_test_allocator_as_allocator(&t), &obj);
    if (t.failures == 0) {
      if (final_detail == QD_E_NONE) {
        QD_ASSERT_OK(s);
        close_fn(obj);
      } else {
        ck_assert_msg(qd_status_is(s, final_detail), "%s: expected %s", path, qd_error_detail_name(final_detail));
        qd_status_free(s);
      }
      ck_assert_int_eq(t.live_count, 0);
      ck_assert_int_eq(t.live_bytes, 0);
      break;
    }
    ck_assert_msg(s != QD_OK, "%s: allocation %llu failed but the open succeeded", path, (unsigned long long)n);
    ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "%s: failing allocation %llu gave %s", path,
                  (unsigned long long)n, qd_error_detail_name(qd_status_detail(s)));
    ck_assert_ptr_null(obj);
    qd_status_free(s);
    ck_assert_msg(t.live_count == 0 && t.live_bytes == 0, "%s: failing allocation %llu leaked %lld blocks", path,
                  (unsigned long long)n, (long long)t.live_count);
  }
}

static void close_st(void* p) { qd_safetensors_close(p); }
static void close_ck(void* p) { qd_checkpoint_close(p); }

START_TEST(allocation_failure_sweeps) {
  sweep(open_st, close_st, path_join(corpus_dir(), "valid_all_dtypes.safetensors"), QD_E_NONE);
  sweep(open_st, close_st, path_join(flux_dir(), "diffusion_pytorch_model-00001-of-00002.safetensors"), QD_E_NONE);
  sweep(open_st, close_st, path_join(corpus_dir(), "data_overlap.safetensors"), QD_E_ST_DATA_OVERLAP);
  sweep(open_ck, close_ck, flux_index(), QD_E_NONE);
  sweep(open_ck, close_ck, flux_dir(), QD_E_NONE);
  sweep(open_ck, close_ck, path_join(corpus_dir(), "valid_zero_element.safetensors"), QD_E_NONE);
  const char* d = shards_with_index("sweep_files", NULL);
  sweep(open_ck, close_ck, d, QD_E_NONE);
  copy_file(path_join(d, "b.safetensors"), path_join(d, "c.safetensors"));
  sweep(open_ck, close_ck, d, QD_E_ST_DUPLICATE_TENSOR);
  char* idx = rewritten_index("proj_out.bias", NULL, NULL, NULL);
  d = shards_with_index("sweep_idx", idx);
  free(idx);
  sweep(open_ck, close_ck, path_join(d, "model.safetensors.index.json"), QD_E_ST_INDEX_TENSOR_UNLISTED);
}
END_TEST

static Suite* safetensors_suite(void) {
  Suite* s = suite_create("safetensors");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, every_dtype_and_widening);
  tcase_add_test(tc, widening_special_values);
  tcase_add_test(tc, edge_cases_and_lookups);
  tcase_add_test(tc, many_tensors_find);
  tcase_add_test(tc, malformed_corpus);
  tcase_add_test(tc, messages_name_file_tensor_field_value);
  tcase_add_test(tc, sharded_fixture_by_index_and_directory);
  tcase_add_test(tc, index_rules);
  tcase_add_test(tc, directory_rules);
  tcase_add_test(tc, allocation_failure_sweeps);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(safetensors_suite)
