/* The .qplan container: writer and reader round trip; every rejection rule triggered by a hand-made file (each
 * its own detail); corruption sweeps (truncation at every header and table offset and sampled data offsets, every
 * bit of header and table flipped, bytes flipped in every section and in padding), each variant in a buffer of
 * exactly its size so that AddressSanitizer sees any read past it; allocation-failure sweeps over open and the
 * writer; interrupted and failing writers leaving no file behind. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compiler/plan_writer.h"
#include "ir/hash64.h"
#include "qd/allocator.h"
#include "qd/plan_file.h"
#include "qd_test.h"

#define KIND(s) QD_PLAN_FOURCC(s[0], s[1], s[2], s[3])
#define HOFF(field) offsetof(qd_plan_header_t, field)
#define EOFF(field) offsetof(qd_plan_section_entry_t, field)

/* --- the standard test plan ------------------------------------------------------------------------------------ */

typedef struct {
  const char* kind;
  const char* name;
  size_t align; /* 0 = kind default */
  size_t size;
} spec_t;

/* Several sections of every kind, alignments from 8 to 8192, an empty section and an unknown optional kind. */
static const spec_t std_specs[] = {
    {"META", "", 0, 0 /* JSON, sized below */},
    {"PROG", "transformer", 0, 1000},
    {"PROG", "vae", 16, 77},
    {"WGHT", "transformer", 0, 10000},
    {"WGHT", "vae", 8192, 5000},
    {"WIDX", "transformer", 0, 640},
    {"WIDX", "vae", 64, 128},
    {"KERN", "sm_90", 256, 3000},
    {"KERN", "ptx", 0, 0},
    {"TUNE", "", 0, 50},
    {"TOKN", "clip", 0, 900},
    {"TOKN", "t5", 32, 1201},
    {"SCHD", "group", 0, 10},
    {"XTRA", "future", 0, 33},
};
#define STD_COUNT (sizeof std_specs / sizeof std_specs[0])

static const char std_meta[] =
    "{\"qd_plan\": 1, \"model\": \"flux-tiny\", \"components\": [\"transformer\", \"vae\"], "
    "\"resolutions\": [[64, 64]], \"compile\": {\"quantize\": \"none\"}}";

/* Deterministic content of section i: the JSON for META, LCG bytes otherwise. */
static unsigned char* spec_content(size_t i, size_t* out_size) {
  if (strcmp(std_specs[i].kind, "META") == 0) {
    *out_size = strlen(std_meta);
    unsigned char* b = malloc(*out_size);
    memcpy(b, std_meta, *out_size);
    return b;
  }
  size_t n = std_specs[i].size;
  unsigned char* b = malloc(n ? n : 1);
  uint32_t x = 0x9E3779B9u * (uint32_t)(i + 1);
  for (size_t k = 0; k < n; k++) {
    x = x * 1664525u + 1013904223u;
    b[k] = (unsigned char)(x >> 24);
  }
  *out_size = n;
  return b;
}

static char* tmp_path(const char* name) {
  static char bufs[8][1024];
  static int next;
  char* p = bufs[next++ % 8];
  snprintf(p, 1024, "%s/%s", qd_test_tmp_dir(), name);
  return p;
}

/* An empty scratch directory (files of an earlier run removed). */
static const char* fresh_dir(const char* name) {
  static char dirs[4][1024];
  static int next;
  char* d = dirs[next++ % 4];
  snprintf(d, 1024, "%s/plan_%s", qd_test_tmp_dir(), name);
  mkdir(d, 0755);
  DIR* dir = opendir(d);
  ck_assert_ptr_nonnull(dir);
  struct dirent* de;
  while ((de = readdir(dir)) != NULL) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", d, de->d_name);
    if (unlink(p) != 0) rmdir(p);
  }
  closedir(dir);
  return d;
}

static int dir_entries(const char* d) {
  DIR* dir = opendir(d);
  ck_assert_ptr_nonnull(dir);
  int n = 0;
  struct dirent* de;
  while ((de = readdir(dir)) != NULL)
    if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) n++;
  closedir(dir);
  return n;
}

static bool exists(const char* p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}

/* Writes the standard plan with `a`, in uneven chunks so that buffering and streaming checksums are exercised.
 * Returns the first failure (the writer is destroyed either way). */
static qd_status_t write_std_plan_with(const char* path, qd_allocator_t a) {
  qd_plan_writer_t* w = NULL;
  qd_status_t s = qd_plan_writer_create(path, a, &w);
  for (size_t i = 0; !s && i < STD_COUNT; i++) {
    s = qd_plan_writer_begin_section(w, KIND(std_specs[i].kind), std_specs[i].name, 0, std_specs[i].align);
    size_t n;
    unsigned char* b = spec_content(i, &n);
    for (size_t o = 0, chunk = 1; !s && o < n; o += chunk, chunk = chunk * 3 + 1) {
      if (chunk > n - o) chunk = n - o;
      s = qd_plan_writer_write(w, b + o, chunk);
    }
    free(b);
    if (!s) s = qd_plan_writer_end_section(w);
  }
  if (!s) s = qd_plan_writer_finish(w);
  qd_plan_writer_destroy(w);
  return s;
}

static const char* write_std_plan(const char* name) {
  const char* p = tmp_path(name);
  QD_ASSERT_OK(write_std_plan_with(p, qd_allocator_system()));
  return p;
}

/* --- images: a plan in memory, for hand-made corruption --------------------------------------------------------- */

typedef struct {
  unsigned char* b;
  size_t n;
} image_t;

static image_t load(const char* path) {
  FILE* f = fopen(path, "rb");
  ck_assert_msg(f != NULL, "cannot read %s: %s", path, strerror(errno));
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  image_t im = {malloc((size_t)n), (size_t)n};
  ck_assert_uint_eq(fread(im.b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return im;
}

static image_t std_image(void) {
  static bool written;
  const char* p = tmp_path("std.qplan");
  if (!written || !exists(p)) write_std_plan("std.qplan");
  written = true;
  return load(p);
}

static uint64_t rd(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void wr(unsigned char* p, int bytes, uint64_t v) {
  for (int i = 0; i < bytes; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t table_off(const image_t* im) { return rd(im->b + HOFF(table_offset), 8); }
static uint32_t sec_count(const image_t* im) { return (uint32_t)rd(im->b + HOFF(section_count), 4); }
static uint32_t ent_size(const image_t* im) { return (uint32_t)rd(im->b + HOFF(entry_size), 4); }
static unsigned char* entry(const image_t* im, size_t i) { return im->b + table_off(im) + i * ent_size(im); }

static size_t find_entry(const image_t* im, const char* kind, const char* name) {
  for (size_t i = 0; i < sec_count(im); i++) {
    unsigned char* e = entry(im, i);
    if (rd(e + EOFF(kind), 4) == KIND(kind) && strncmp((const char*)e + EOFF(name), name, QD_PLAN_NAME_SIZE) == 0)
      return i;
  }
  ck_abort_msg("no section %s \"%s\"", kind, name);
  return 0;
}

/* Recomputes the header checksum, as a (buggy) writer would, so that the rule under test is the one that fires. */
static void reseal(image_t* im) {
  wr(im->b + HOFF(header_checksum), 8, 0);
  qd_hash64_state_t h;
  qd_hash64_init(&h, 0);
  qd_hash64_update(&h, im->b, QD_PLAN_HEADER_SIZE);
  qd_hash64_update(&h, im->b + table_off(im), (size_t)sec_count(im) * ent_size(im));
  wr(im->b + HOFF(header_checksum), 8, qd_hash64_digest(&h));
}

static void reseal_section(image_t* im, size_t i) {
  unsigned char* e = entry(im, i);
  uint64_t off = rd(e + EOFF(offset), 8), size = rd(e + EOFF(size), 8);
  wr(e + EOFF(checksum), 8, qd_hash64(im->b + off, (size_t)size, 0));
  reseal(im);
}

/* Inserts n bytes of `fill` at `at`, moving every later section and the table, and fixes file_size. */
static void insert_bytes(image_t* im, size_t at, size_t n, unsigned char fill) {
  unsigned char* b = malloc(im->n + n);
  memcpy(b, im->b, at);
  memset(b + at, fill, n);
  memcpy(b + at + n, im->b + at, im->n - at);
  free(im->b);
  im->b = b;
  im->n += n;
  if (table_off(im) >= at) wr(im->b + HOFF(table_offset), 8, table_off(im) + n);
  for (size_t i = 0; i < sec_count(im); i++) {
    unsigned char* e = entry(im, i);
    if (rd(e + EOFF(offset), 8) >= at) wr(e + EOFF(offset), 8, rd(e + EOFF(offset), 8) + n);
  }
  wr(im->b + HOFF(file_size), 8, im->n);
  reseal(im);
}

static qd_status_t open_image(const image_t* im, uint32_t flags, qd_plan_file_t** out) {
  return qd_plan_file_open_memory(im->b, im->n, "test.qplan", qd_allocator_system(), flags, out);
}

/* Opens a copy of exactly n bytes (ASan sees any over-read) with a counting allocator; expects `detail` and no
 * leak. Returns the formatted message (static) for content checks. */
static const char* expect_bytes(const unsigned char* data, size_t n, uint32_t flags, qd_error_detail_t detail) {
  static char msg[2048];
  unsigned char* copy = malloc(n ? n : 1);
  if (n) memcpy(copy, data, n);
  qd_test_allocator_t t;
  qd_test_allocator_init(&t, qd_allocator_system(), 0);
  qd_plan_file_t* pf = (qd_plan_file_t*)1;
  qd_status_t s = qd_plan_file_open_memory(copy, n, "test.qplan", qd_test_allocator_as_allocator(&t), flags, &pf);
  ck_assert_msg(s != QD_OK, "opened; expected %s", qd_error_detail_name(detail));
  ck_assert_ptr_null(pf);
  qd_status_format(s, msg, sizeof msg);
  ck_assert_msg(qd_status_detail(s) == detail, "expected %s, got %s: %s", qd_error_detail_name(detail),
                qd_error_detail_name(qd_status_detail(s)), msg);
  qd_status_free(s);
  ck_assert_int_eq(t.live_count, 0);
  free(copy);
  return msg;
}

static const char* expect(const image_t* im, qd_error_detail_t detail) {
  return expect_bytes(im->b, im->n, 0, detail);
}

static void expect_ok(const image_t* im) {
  qd_plan_file_t* pf = NULL;
  QD_ASSERT_OK(open_image(im, QD_PLAN_OPEN_VERIFY_ALL, &pf));
  qd_plan_file_close(pf);
}

#define ASSERT_CONTAINS(hay, needle) ck_assert_msg(strstr(hay, needle) != NULL, "'%s' not in: %s", needle, hay)

/* --- round trip ------------------------------------------------------------------------------------------------ */

START_TEST(round_trip) {
  const char* dir = fresh_dir("round_trip");
  char path[1100];
  snprintf(path, sizeof path, "%s/model.qplan", dir);
  QD_ASSERT_OK(write_std_plan_with(path, qd_allocator_system()));
  ck_assert_int_eq(dir_entries(dir), 1); /* the plan, no temporary file left */

  qd_plan_file_t* pf = NULL;
  QD_ASSERT_OK(qd_plan_file_open(path, qd_allocator_system(), 0, &pf));
  ck_assert_str_eq(qd_plan_file_path(pf), path);
  ck_assert_uint_eq(qd_plan_file_version_major(pf), 1);
  ck_assert_uint_eq(qd_plan_file_version_minor(pf), 0);
  ck_assert_str_eq(qd_plan_file_writer(pf), "qd 0.1.0");
  ck_assert_uint_eq(qd_plan_file_flags(pf), 0);
  struct stat sb;
  ck_assert_int_eq(stat(path, &sb), 0);
  ck_assert_uint_eq(qd_plan_file_size(pf), (uint64_t)sb.st_size);
  ck_assert_uint_eq(qd_plan_file_section_count(pf), STD_COUNT);
  ck_assert_ptr_null(qd_plan_file_section(pf, STD_COUNT));
  for (size_t i = 0; i < STD_COUNT; i++) {
    const qd_plan_section_t* s = qd_plan_file_section(pf, i);
    ck_assert_uint_eq(s->index, i);
    ck_assert_str_eq(s->kind_text, std_specs[i].kind);
    ck_assert_str_eq(s->name, std_specs[i].name);
    ck_assert_ptr_eq(qd_plan_file_find(pf, KIND(std_specs[i].kind), std_specs[i].name), s);
    size_t n;
    unsigned char* want = spec_content(i, &n);
    ck_assert_uint_eq(s->size, n);
    ck_assert_int_eq(memcmp(s->data, want, n), 0);
    free(want);
    ck_assert_ptr_eq(s->data, (const unsigned char*)qd_plan_file_image(pf) + s->offset);
    size_t align = std_specs[i].align ? std_specs[i].align : (strcmp(s->kind_text, "WGHT") == 0 ? 4096 : 8);
    ck_assert_uint_eq((uint64_t)1 << s->align_log2, align);
    ck_assert_uint_eq(s->offset % align, 0);
    size_t page = (size_t)sysconf(_SC_PAGESIZE); /* the mapping starts on a page */
    ck_assert_uint_eq((uintptr_t)s->data % (align < page ? align : page), 0);
    bool unknown = strcmp(s->kind_text, "XTRA") == 0;
    ck_assert(s->known == !unknown);
    ck_assert(s->required == qd_plan_kind_is_required(s->kind));
    ck_assert_uint_eq(s->checksum, qd_hash64(s->data, (size_t)s->size, 0));
  }
  ck_assert_ptr_null(qd_plan_file_find(pf, QD_PLAN_KIND_PROG, "clip"));
  ck_assert_ptr_null(qd_plan_file_find(pf, QD_PLAN_KIND_SCHD, ""));
  ck_assert_ptr_null(qd_plan_file_find(pf, QD_PLAN_KIND_META, NULL));
  QD_ASSERT_OK(qd_plan_file_verify(pf, &(qd_progress_sink_t){QD_PROGRESS_QUIET, NULL, NULL, NULL, 0}));
  uint64_t actual = 0;
  QD_ASSERT_OK(qd_plan_file_verify_section(pf, 3, NULL, &actual));
  ck_assert_uint_eq(actual, qd_plan_file_section(pf, 3)->checksum);
  QD_ASSERT_DETAIL(qd_plan_file_verify_section(pf, STD_COUNT, NULL, NULL), QD_E_INVALID_ARGUMENT);
  qd_plan_file_close(pf);
  qd_plan_file_close(NULL);

  /* the same bytes from memory, verifying everything at open */
  image_t im = load(path);
  QD_ASSERT_OK(open_image(&im, QD_PLAN_OPEN_VERIFY_ALL, &pf));
  ck_assert_str_eq(qd_plan_file_path(pf), "test.qplan");
  ck_assert_uint_eq(qd_plan_file_section_count(pf), STD_COUNT);
  qd_plan_file_close(pf);
  free(im.b);
}
END_TEST

START_TEST(empty_plan_and_overwrite) {
  const char* dir = fresh_dir("empty");
  char path[1100];
  snprintf(path, sizeof path, "%s/empty.qplan", dir);
  FILE* f = fopen(path, "wb"); /* an older file of the same name is replaced whole */
  fputs("old contents", f);
  fclose(f);
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  QD_ASSERT_OK(qd_plan_writer_finish(w));
  qd_plan_writer_destroy(w);
  ck_assert_int_eq(dir_entries(dir), 1);
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(path, qd_allocator_system(), QD_PLAN_OPEN_VERIFY_ALL, &pf));
  ck_assert_uint_eq(qd_plan_file_section_count(pf), 0);
  ck_assert_uint_eq(qd_plan_file_size(pf), QD_PLAN_HEADER_SIZE);
  ck_assert_ptr_null(qd_plan_file_find(pf, QD_PLAN_KIND_META, ""));
  qd_plan_file_close(pf);
}
END_TEST

START_TEST(kind_helpers) {
  char b[20];
  ck_assert_str_eq(qd_plan_kind_text(QD_PLAN_KIND_WGHT, b, sizeof b), "WGHT");
  ck_assert_str_eq(qd_plan_kind_text(QD_PLAN_FOURCC('A', 0, '\n', 'z'), b, sizeof b), "A\\x00\\x0az");
  ck_assert_uint_eq(qd_plan_kind_from_text("META"), QD_PLAN_KIND_META);
  ck_assert_uint_eq(qd_plan_kind_from_text("ME A"), 0);
  ck_assert_uint_eq(qd_plan_kind_from_text("METAX"), 0);
  ck_assert(qd_plan_kind_is_required(QD_PLAN_KIND_WIDX));
  ck_assert(!qd_plan_kind_is_required(QD_PLAN_KIND_TOKN));
  ck_assert(!qd_plan_kind_is_known(KIND("XTRA")));
  ck_assert_uint_eq(qd_plan_kind_min_align_log2(QD_PLAN_KIND_WGHT), 12);
  ck_assert_str_eq(qd_plan_kind_description(KIND("XTRA")), "unknown");
}
END_TEST

/* --- every rule, each with its own hand-made file --------------------------------------------------------------- */

START_TEST(rule_not_a_plan) {
  const char* m = expect_bytes((const unsigned char*)"", 0, 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "empty");
  const char* json = "  {\"qd_graph\": 1, \"nodes\": []}";
  m = expect_bytes((const unsigned char*)json, strlen(json), 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "graph description");
  m = expect_bytes((const unsigned char*)"[1, 2, 3]", 9, 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "JSON");
  unsigned char st[64] = {0};
  const char* hdr = "{\"__metadata__\":{}}";
  st[0] = (unsigned char)strlen(hdr);
  memcpy(st + 8, hdr, strlen(hdr));
  m = expect_bytes(st, 8 + strlen(hdr), 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "safetensors");
  m = expect_bytes((const unsigned char*)"\x89PNG\r\n\x1a\n....", 12, 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "PNG");
  m = expect_bytes((const unsigned char*)"hello world, this is text", 25, 0, QD_E_PLAN_NOT_A_PLAN);
  ASSERT_CONTAINS(m, "not a compiled plan");
}
END_TEST

START_TEST(rule_magic_mangled) {
  image_t im = std_image();
  /* CR LF -> LF, as a text-mode copy does: the file loses byte 4 */
  image_t lf = {malloc(im.n - 1), im.n - 1};
  memcpy(lf.b, im.b, 4);
  memcpy(lf.b + 4, im.b + 5, im.n - 5);
  ASSERT_CONTAINS(expect(&lf, QD_E_PLAN_MAGIC_MANGLED), "CR LF became LF");
  /* the high bit stripped */
  im.b[0] = 0x09;
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_MAGIC_MANGLED), "high bit");
  free(lf.b);
  free(im.b);
}
END_TEST

START_TEST(rule_file_too_small) {
  image_t im = std_image();
  expect_bytes(im.b, 100, 0, QD_E_PLAN_FILE_TOO_SMALL);
  expect_bytes(im.b, 5, 0, QD_E_PLAN_FILE_TOO_SMALL);
  free(im.b);
}
END_TEST

START_TEST(rule_version) {
  image_t im = std_image();
  wr(im.b + HOFF(version_major), 2, 2);
  const char* m = expect(&im, QD_E_PLAN_VERSION_NEWER);
  ASSERT_CONTAINS(m, "plan format 2.0 needs a newer qd (this one");
  ASSERT_CONTAINS(m, "reads 1.x");
  ASSERT_CONTAINS(m, "written by \"qd 0.1.0\"");
  qd_plan_file_t* pf;
  qd_status_t s = open_image(&im, 0, &pf);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_UNSUPPORTED);
  qd_status_free(s);
  wr(im.b + HOFF(version_major), 2, 0);
  expect(&im, QD_E_PLAN_VERSION_INVALID);
  /* a newer minor is fine, and may use reserved bytes */
  wr(im.b + HOFF(version_major), 2, 1);
  wr(im.b + HOFF(version_minor), 2, 7);
  im.b[HOFF(reserved) + 3] = 0x42;
  entry(&im, 2)[EOFF(reserved1)] = 0x42;
  reseal(&im);
  expect_ok(&im);
  free(im.b);
}
END_TEST

START_TEST(rule_file_size) {
  image_t im = std_image();
  ASSERT_CONTAINS(expect_bytes(im.b, im.n - 1, 0, QD_E_PLAN_FILE_SIZE), "truncated");
  unsigned char* more = calloc(1, im.n + 1);
  memcpy(more, im.b, im.n);
  ASSERT_CONTAINS(expect_bytes(more, im.n + 1, 0, QD_E_PLAN_FILE_SIZE), "appended");
  free(more);
  free(im.b);
}
END_TEST

START_TEST(rule_entry_size) {
  image_t im = std_image();
  wr(im.b + HOFF(entry_size), 4, 32);
  expect(&im, QD_E_PLAN_ENTRY_SIZE);
  wr(im.b + HOFF(entry_size), 4, 72); /* only a newer minor may grow entries */
  expect(&im, QD_E_PLAN_ENTRY_SIZE);
  free(im.b);
}
END_TEST

/* A 1.1 file with 72-byte entries (8 bytes of "future" fields each): a 1.0 reader skips the extra bytes. */
START_TEST(newer_minor_larger_entries) {
  image_t im = std_image();
  uint64_t to = table_off(&im);
  uint32_t n = sec_count(&im);
  size_t size = (size_t)to + (size_t)n * 72;
  unsigned char* b = calloc(1, size);
  memcpy(b, im.b, (size_t)to);
  for (uint32_t i = 0; i < n; i++) {
    memcpy(b + to + (size_t)i * 72, im.b + to + (size_t)i * 64, 64);
    memset(b + to + (size_t)i * 72 + 64, 0xAB, 8);
  }
  free(im.b);
  im.b = b;
  im.n = size;
  wr(im.b + HOFF(version_minor), 2, 1);
  wr(im.b + HOFF(entry_size), 4, 72);
  wr(im.b + HOFF(file_size), 8, size);
  reseal(&im);
  qd_plan_file_t* pf;
  QD_ASSERT_OK(open_image(&im, QD_PLAN_OPEN_VERIFY_ALL, &pf));
  ck_assert_uint_eq(qd_plan_file_version_minor(pf), 1);
  ck_assert_uint_eq(qd_plan_file_section_count(pf), STD_COUNT);
  ck_assert_str_eq(qd_plan_file_section(pf, 4)->name, "vae");
  qd_plan_file_close(pf);
  free(im.b);
}
END_TEST

START_TEST(rule_too_many_sections) {
  image_t im = std_image();
  wr(im.b + HOFF(section_count), 4, QD_PLAN_MAX_SECTIONS + 1);
  expect(&im, QD_E_PLAN_TOO_MANY_SECTIONS);
  free(im.b);
}
END_TEST

START_TEST(rule_table_offset) {
  image_t im = std_image();
  uint64_t to = table_off(&im);
  wr(im.b + HOFF(table_offset), 8, 64);
  expect(&im, QD_E_PLAN_TABLE_OFFSET);
  wr(im.b + HOFF(table_offset), 8, to + 4);
  expect(&im, QD_E_PLAN_TABLE_OFFSET);
  free(im.b);
}
END_TEST

START_TEST(rule_table_range) {
  image_t im = std_image();
  wr(im.b + HOFF(table_offset), 8, im.n - 8);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_TABLE_RANGE), "past the end of the file");
  wr(im.b + HOFF(table_offset), 8, UINT64_MAX - 7);
  expect(&im, QD_E_PLAN_TABLE_RANGE);
  free(im.b);
}
END_TEST

START_TEST(rule_header_checksum) {
  image_t im = std_image();
  im.b[HOFF(writer) + 3] ^= 0x01;
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_HEADER_CHECKSUM), "corrupt");
  im.b[HOFF(writer) + 3] ^= 0x01;
  entry(&im, 1)[EOFF(size)] ^= 0x01; /* the table is covered too */
  expect(&im, QD_E_PLAN_HEADER_CHECKSUM);
  free(im.b);
}
END_TEST

START_TEST(rule_header_flags) {
  image_t im = std_image();
  wr(im.b + HOFF(flags), 4, 0x1);
  reseal(&im);
  expect(&im, QD_E_PLAN_HEADER_FLAGS);
  wr(im.b + HOFF(flags), 4, 0x00010000); /* advisory bits are ignored */
  reseal(&im);
  expect_ok(&im);
  free(im.b);
}
END_TEST

START_TEST(rule_header_reserved) {
  image_t im = std_image();
  im.b[HOFF(reserved) + 63] = 1;
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_HEADER_RESERVED), "offset 127");
  free(im.b);
}
END_TEST

START_TEST(rule_writer_string) {
  image_t im = std_image();
  im.b[HOFF(writer)] = 0x01;
  reseal(&im);
  expect(&im, QD_E_PLAN_WRITER_STRING);
  memset(im.b + HOFF(writer), 'x', QD_PLAN_WRITER_SIZE); /* no NUL at all */
  reseal(&im);
  expect(&im, QD_E_PLAN_WRITER_STRING);
  memset(im.b + HOFF(writer), 0, QD_PLAN_WRITER_SIZE); /* text after the padding */
  im.b[HOFF(writer) + 9] = 'y';
  reseal(&im);
  expect(&im, QD_E_PLAN_WRITER_STRING);
  memset(im.b + HOFF(writer), 0, QD_PLAN_WRITER_SIZE); /* empty is fine */
  reseal(&im);
  expect_ok(&im);
  free(im.b);
}
END_TEST

START_TEST(rule_section_kind) {
  image_t im = std_image();
  entry(&im, 2)[EOFF(kind) + 2] = ' ';
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_KIND), "section 2");
  entry(&im, 2)[EOFF(kind) + 2] = 0;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_KIND);
  free(im.b);
}
END_TEST

START_TEST(rule_section_reserved) {
  image_t im = std_image();
  entry(&im, 1)[EOFF(reserved0)] = 1;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_RESERVED);
  entry(&im, 1)[EOFF(reserved0)] = 0;
  entry(&im, 1)[EOFF(reserved1) + 7] = 0xFF;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_RESERVED);
  free(im.b);
}
END_TEST

START_TEST(rule_section_flags) {
  image_t im = std_image();
  wr(entry(&im, 0) + EOFF(flags), 2, 0x8001);
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_FLAGS);
  free(im.b);
}
END_TEST

START_TEST(rule_section_name) {
  image_t im = std_image();
  unsigned char* name = entry(&im, 1) + EOFF(name);
  name[0] = 0x80;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_NAME);
  memset(name, 'a', QD_PLAN_NAME_SIZE); /* not terminated within the field */
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_NAME);
  memset(name, 0, QD_PLAN_NAME_SIZE);
  memcpy(name, "ab\0c", 4); /* text after the terminator */
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_NAME);
  free(im.b);
}
END_TEST

START_TEST(rule_section_alignment) {
  image_t im = std_image();
  entry(&im, 1)[EOFF(align_log2)] = 2;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_ALIGNMENT);
  entry(&im, 1)[EOFF(align_log2)] = 17;
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_ALIGNMENT);
  free(im.b);
}
END_TEST

START_TEST(rule_section_range) {
  image_t im = std_image();
  size_t i = find_entry(&im, "TUNE", "");
  wr(entry(&im, i) + EOFF(size), 8, UINT64_MAX - 10);
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_RANGE), "overflows");
  wr(entry(&im, i) + EOFF(size), 8, 8);
  wr(entry(&im, i) + EOFF(offset), 8, im.n + 8);
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_RANGE);
  free(im.b);
}
END_TEST

START_TEST(rule_section_misaligned) {
  image_t im = std_image();
  size_t i = find_entry(&im, "META", "");
  wr(entry(&im, i) + EOFF(offset), 8, rd(entry(&im, i) + EOFF(offset), 8) + 1);
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_MISALIGNED);
  free(im.b);
}
END_TEST

START_TEST(rule_section_required_flag) {
  image_t im = std_image();
  size_t meta = find_entry(&im, "META", "");
  wr(entry(&im, meta) + EOFF(flags), 2, 0);
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_REQUIRED_FLAG);
  wr(entry(&im, meta) + EOFF(flags), 2, 1);
  wr(entry(&im, find_entry(&im, "KERN", "sm_90")) + EOFF(flags), 2, 1);
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_REQUIRED_FLAG);
  free(im.b);
}
END_TEST

START_TEST(rule_section_kind_alignment) {
  image_t im = std_image();
  entry(&im, find_entry(&im, "WGHT", "transformer"))[EOFF(align_log2)] = 3;
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_KIND_ALIGNMENT), "4096");
  free(im.b);
}
END_TEST

START_TEST(rule_section_unknown_required) {
  image_t im = std_image();
  wr(entry(&im, find_entry(&im, "XTRA", "future")) + EOFF(flags), 2, 1);
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_UNKNOWN_REQUIRED), "XTRA");
  free(im.b);
}
END_TEST

START_TEST(rule_section_duplicate) {
  image_t im = std_image();
  unsigned char* name = entry(&im, find_entry(&im, "PROG", "vae")) + EOFF(name);
  memset(name, 0, QD_PLAN_NAME_SIZE);
  memcpy(name, "transformer", 11);
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_DUPLICATE), "PROG \"transformer\"");
  free(im.b);
}
END_TEST

START_TEST(rule_section_overlap) {
  image_t im = std_image();
  size_t meta = find_entry(&im, "META", ""), prog = find_entry(&im, "PROG", "transformer");
  uint64_t prog_off = rd(entry(&im, prog) + EOFF(offset), 8);
  wr(entry(&im, prog) + EOFF(offset), 8, rd(entry(&im, meta) + EOFF(offset), 8)); /* onto another section */
  reseal(&im);
  expect(&im, QD_E_PLAN_SECTION_OVERLAP);
  wr(entry(&im, prog) + EOFF(offset), 8, 64); /* into the header */
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_OVERLAP), "the header");
  wr(entry(&im, prog) + EOFF(offset), 8, prog_off);
  size_t last = find_entry(&im, "XTRA", "future"); /* the last section runs into the table after it */
  uint64_t last_end = rd(entry(&im, last) + EOFF(offset), 8) + rd(entry(&im, last) + EOFF(size), 8);
  wr(entry(&im, last) + EOFF(size), 8, table_off(&im) + 8 - rd(entry(&im, last) + EOFF(offset), 8));
  ck_assert_uint_lt(last_end, table_off(&im));
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_OVERLAP), "section table");
  free(im.b);
}
END_TEST

START_TEST(rule_gap) {
  image_t im = std_image();
  insert_bytes(&im, (size_t)table_off(&im), 8, 0); /* 8 zero bytes before the table: alignment needs none */
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_GAP), "section table");
  free(im.b);
  im = std_image(); /* 64 KiB before a weight section keeps every alignment but is not needed */
  insert_bytes(&im, (size_t)rd(entry(&im, find_entry(&im, "WGHT", "transformer")) + EOFF(offset), 8), 65536, 0);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_GAP), "WGHT \"transformer\"");
  free(im.b);
}
END_TEST

START_TEST(rule_padding) {
  image_t im = std_image();
  size_t i = find_entry(&im, "META", "");
  uint64_t end = rd(entry(&im, i) + EOFF(offset), 8) + rd(entry(&im, i) + EOFF(size), 8);
  uint64_t next = rd(entry(&im, i + 1) + EOFF(offset), 8);
  ck_assert_uint_gt(next, end); /* the standard plan has padding after META */
  im.b[end] = 0x5A;
  char want[64];
  snprintf(want, sizeof want, "byte %llu", (unsigned long long)end);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_PADDING), want);
  free(im.b);
}
END_TEST

START_TEST(rule_trailing_data) {
  image_t im = std_image();
  unsigned char* b = calloc(1, im.n + 8);
  memcpy(b, im.b, im.n);
  free(im.b);
  im.b = b;
  im.n += 8;
  wr(im.b + HOFF(file_size), 8, im.n);
  reseal(&im);
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_TRAILING_DATA), "8 bytes");
  free(im.b);
}
END_TEST

START_TEST(rule_section_checksum) {
  image_t im = std_image();
  size_t meta = find_entry(&im, "META", "");
  im.b[rd(entry(&im, meta) + EOFF(offset), 8) + 5] ^= 0x20;
  ASSERT_CONTAINS(expect(&im, QD_E_PLAN_SECTION_CHECKSUM), "META");
  reseal_section(&im, meta); /* the same change with a matching checksum is a valid plan */
  expect_ok(&im);
  free(im.b);
  /* weights are checked by verify, or at open when asked */
  im = std_image();
  size_t w = find_entry(&im, "WGHT", "vae");
  im.b[rd(entry(&im, w) + EOFF(offset), 8) + 4999] ^= 0x01;
  qd_plan_file_t* pf;
  QD_ASSERT_OK(open_image(&im, 0, &pf));
  QD_ASSERT_DETAIL(qd_plan_file_verify(pf, &(qd_progress_sink_t){QD_PROGRESS_QUIET, NULL, NULL, NULL, 0}),
                   QD_E_PLAN_SECTION_CHECKSUM);
  QD_ASSERT_DETAIL(qd_plan_file_verify_section(pf, w, NULL, NULL), QD_E_PLAN_SECTION_CHECKSUM);
  qd_plan_file_close(pf);
  expect_bytes(im.b, im.n, QD_PLAN_OPEN_VERIFY_ALL, QD_E_PLAN_SECTION_CHECKSUM);
  free(im.b);
}
END_TEST

START_TEST(open_errors) {
  qd_plan_file_t* pf = (qd_plan_file_t*)1;
  qd_status_t s = qd_plan_file_open(tmp_path("does-not-exist.qplan"), qd_allocator_system(), 0, &pf);
  ck_assert_int_eq(qd_status_code(s), QD_CODE_NOT_FOUND);
  ck_assert_int_eq(qd_status_detail(s), QD_E_IO_OPEN);
  ck_assert_ptr_null(pf);
  qd_status_free(s);
  QD_ASSERT_DETAIL(qd_plan_file_open(qd_test_tmp_dir(), qd_allocator_system(), 0, &pf), QD_E_NOT_A_FILE);
  QD_ASSERT_DETAIL(qd_plan_file_open(write_std_plan("flags.qplan"), qd_allocator_system(), 0x80, &pf),
                   QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_file_open_memory(NULL, 10, NULL, qd_allocator_system(), 0, &pf), QD_E_INVALID_ARGUMENT);
  /* an empty file on disk is reported, not mapped */
  FILE* f = fopen(tmp_path("empty-file.qplan"), "wb");
  fclose(f);
  QD_ASSERT_DETAIL(qd_plan_file_open(tmp_path("empty-file.qplan"), qd_allocator_system(), 0, &pf),
                   QD_E_PLAN_NOT_A_PLAN);
}
END_TEST

/* --- progress and cancelling --------------------------------------------------------------------------------------- */

typedef struct {
  int calls;
  uint64_t last_done, total;
  int cancel_after;
} progress_log_t;

static bool on_progress(void* user, const char* label, uint64_t done, uint64_t total, double elapsed) {
  progress_log_t* l = user;
  l->calls++;
  l->last_done = done;
  l->total = total;
  return l->cancel_after == 0 || l->calls < l->cancel_after;
}

START_TEST(verify_progress_and_cancel) {
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(write_std_plan("progress.qplan"), qd_allocator_system(), 0, &pf));
  uint64_t total = 0;
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) total += qd_plan_file_section(pf, i)->size;
  progress_log_t log = {0, 0, 0, 0};
  qd_progress_sink_t sink = {QD_PROGRESS_QUIET, NULL, on_progress, &log, 0};
  QD_ASSERT_OK(qd_plan_file_verify(pf, &sink));
  ck_assert_int_gt(log.calls, 0);
  ck_assert_uint_eq(log.last_done, total);
  ck_assert_uint_eq(log.total, total);
  log = (progress_log_t){0, 0, 0, 2};
  QD_ASSERT_DETAIL(qd_plan_file_verify(pf, &sink), QD_E_CANCELLED);
  qd_plan_file_close(pf);
}
END_TEST

/* --- sweeps -------------------------------------------------------------------------------------------------------- */

static void expect_any_failure(const unsigned char* data, size_t n, uint32_t flags, const char* what, size_t where) {
  qd_plan_file_t* pf = NULL;
  qd_status_t s = qd_plan_file_open_memory(data, n, "sweep.qplan", qd_allocator_system(), flags, &pf);
  if (!s) qd_plan_file_close(pf);
  ck_assert_msg(s != QD_OK, "%s at %zu: the corrupt plan opened", what, where);
  ck_assert_ptr_null(pf);
  ck_assert_int_ne(qd_status_code(s), QD_CODE_INTERNAL);
  qd_status_free(s);
}

START_TEST(sweep_truncation) {
  image_t im = std_image();
  size_t to = (size_t)table_off(&im);
  size_t variants = 0;
  for (size_t n = 0; n < im.n; n++) {
    bool in_header = n < QD_PLAN_HEADER_SIZE, in_table = n >= to;
    if (!in_header && !in_table && n % 61 != 0) continue; /* the data: a sample */
    unsigned char* copy = malloc(n ? n : 1);                /* exactly n bytes: ASan catches over-reads */
    memcpy(copy, im.b, n);
    expect_any_failure(copy, n, 0, "truncated", n);
    free(copy);
    variants++;
  }
  ck_assert_uint_gt(variants, QD_PLAN_HEADER_SIZE + (im.n - to) - 1);
  free(im.b);
}
END_TEST

START_TEST(sweep_bit_flips_header_and_table) {
  image_t im = std_image();
  unsigned char* b = malloc(im.n);
  memcpy(b, im.b, im.n);
  size_t to = (size_t)table_off(&im);
  for (size_t i = 0; i < im.n; i++) {
    if (i >= QD_PLAN_HEADER_SIZE && i < to) continue;
    for (int bit = 0; bit < 8; bit++) {
      b[i] ^= (unsigned char)(1u << bit);
      expect_any_failure(b, im.n, 0, "bit flip", i * 8 + (size_t)bit);
      b[i] ^= (unsigned char)(1u << bit);
    }
  }
  ck_assert_int_eq(memcmp(b, im.b, im.n), 0);
  free(b);
  free(im.b);
}
END_TEST

START_TEST(sweep_section_bytes) {
  image_t im = std_image();
  unsigned char* b = malloc(im.n);
  memcpy(b, im.b, im.n);
  for (size_t i = 0; i < sec_count(&im); i++) {
    const unsigned char* e = entry(&im, i);
    uint64_t off = rd(e + EOFF(offset), 8), size = rd(e + EOFF(size), 8);
    bool weights = rd(e + EOFF(kind), 4) == QD_PLAN_KIND_WGHT;
    for (uint64_t k = 0; k < size; k += (size < 64 ? 1 : size / 37 + 1)) {
      size_t at = (size_t)(off + k);
      b[at] ^= 0xA5;
      if (weights) {
        qd_plan_file_t* pf;
        QD_ASSERT_OK(qd_plan_file_open_memory(b, im.n, "w.qplan", qd_allocator_system(), 0, &pf));
        QD_ASSERT_DETAIL(qd_plan_file_verify_section(pf, i, NULL, NULL), QD_E_PLAN_SECTION_CHECKSUM);
        qd_plan_file_close(pf);
        expect_bytes(b, im.n, QD_PLAN_OPEN_VERIFY_ALL, QD_E_PLAN_SECTION_CHECKSUM);
      } else {
        expect_bytes(b, im.n, 0, QD_E_PLAN_SECTION_CHECKSUM);
      }
      b[at] ^= 0xA5;
    }
  }
  free(b);
  free(im.b);
}
END_TEST

/* Every padding byte (all bytes in no region) made non-zero, one at a time. */
START_TEST(sweep_padding_bytes) {
  image_t im = std_image();
  unsigned char* used = calloc(1, im.n);
  memset(used, 1, QD_PLAN_HEADER_SIZE);
  memset(used + table_off(&im), 1, (size_t)sec_count(&im) * ent_size(&im));
  for (size_t i = 0; i < sec_count(&im); i++) {
    const unsigned char* e = entry(&im, i);
    memset(used + rd(e + EOFF(offset), 8), 1, (size_t)rd(e + EOFF(size), 8));
  }
  unsigned char* b = malloc(im.n);
  memcpy(b, im.b, im.n);
  size_t tested = 0;
  for (size_t i = 0; i < im.n; i++) {
    if (used[i]) continue;
    ck_assert_uint_eq(b[i], 0);
    if (i % 3 != 0 && tested > 0) continue; /* a third of them: plenty, and quick under ASan */
    b[i] = 0x01;
    expect_bytes(b, im.n, 0, QD_E_PLAN_PADDING);
    b[i] = 0;
    tested++;
  }
  ck_assert_uint_gt(tested, 100);
  free(b);
  free(used);
  free(im.b);
}
END_TEST

START_TEST(sweep_allocation_failures_open) {
  const char* path = write_std_plan("alloc.qplan");
  for (int mode = 0; mode < 2; mode++) {
    image_t im = load(path);
    bool done = false;
    for (uint64_t n = 1; !done && n < 1000; n++) {
      qd_test_allocator_t t;
      qd_test_allocator_init(&t, qd_allocator_system(), n);
      qd_allocator_t a = qd_test_allocator_as_allocator(&t);
      qd_plan_file_t* pf = NULL;
      qd_status_t s = mode == 0 ? qd_plan_file_open(path, a, QD_PLAN_OPEN_VERIFY_ALL, &pf)
                                : qd_plan_file_open_memory(im.b, im.n, "m", a, 0, &pf);
      if (s == QD_OK) {
        ck_assert_uint_eq(t.failures, 0);
        qd_plan_file_close(pf);
        done = true;
      } else {
        ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "fail_at %llu: %s", (unsigned long long)n,
                      qd_status_message(s));
        ck_assert_ptr_null(pf);
        qd_status_free(s);
      }
      ck_assert_int_eq(t.live_count, 0);
      ck_assert_int_eq(t.live_bytes, 0);
    }
    ck_assert(done);
    free(im.b);
  }
}
END_TEST

/* --- the writer ------------------------------------------------------------------------------------------------------ */

START_TEST(sweep_allocation_failures_writer) {
  const char* dir = fresh_dir("writer_alloc");
  char path[1100];
  snprintf(path, sizeof path, "%s/w.qplan", dir);
  bool done = false;
  for (uint64_t n = 1; !done && n < 1000; n++) {
    qd_test_allocator_t t;
    qd_test_allocator_init(&t, qd_allocator_system(), n);
    qd_status_t s = write_std_plan_with(path, qd_test_allocator_as_allocator(&t));
    if (s == QD_OK) {
      done = true;
      ck_assert_int_eq(dir_entries(dir), 1);
    } else {
      ck_assert_msg(qd_status_code(s) == QD_CODE_OUT_OF_MEMORY, "fail_at %llu: %s", (unsigned long long)n,
                    qd_status_message(s));
      qd_status_free(s);
      ck_assert_int_eq(dir_entries(dir), 0); /* neither the plan nor a temporary file */
    }
    ck_assert_int_eq(t.live_count, 0);
  }
  ck_assert(done);
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(path, qd_allocator_system(), QD_PLAN_OPEN_VERIFY_ALL, &pf));
  qd_plan_file_close(pf);
}
END_TEST

START_TEST(writer_destroy_without_finish) {
  const char* dir = fresh_dir("abandon");
  char path[1100];
  snprintf(path, sizeof path, "%s/model.qplan", dir);
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  const char* tmp = qd_plan_writer_temp_path(w);
  ck_assert(exists(tmp));
  size_t tl = strlen(tmp);
  ck_assert(tl < 6 || strcmp(tmp + tl - 6, ".qplan") != 0); /* nothing mistakes it for a plan */
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_META, "", 0, 0));
  QD_ASSERT_OK(qd_plan_writer_write(w, "{}", 2));
  ck_assert_uint_eq(qd_plan_writer_section_size(w), 2);
  QD_ASSERT_OK(qd_plan_writer_end_section(w));
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_WGHT, "t", 0, 0));
  ck_assert_uint_eq(qd_plan_writer_position(w), 4096);
  qd_plan_writer_destroy(w); /* mid-section */
  ck_assert_int_eq(dir_entries(dir), 0);
  qd_plan_writer_destroy(NULL);

  /* an existing plan of that name is left as it was */
  FILE* f = fopen(path, "wb");
  fputs("previous", f);
  fclose(f);
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_META, "", 0, 0));
  qd_plan_writer_destroy(w);
  ck_assert_int_eq(dir_entries(dir), 1);
  image_t im = load(path);
  ck_assert_uint_eq(im.n, 8);
  ck_assert_int_eq(memcmp(im.b, "previous", 8), 0);
  free(im.b);
}
END_TEST

/* A write that fails half-way (the file-size limit stands in for a full disk): the writer reports IO_WRITE, refuses
 * further work, and destroy leaves nothing. */
START_TEST(writer_fails_mid_way) {
  const char* dir = fresh_dir("fail_mid");
  char path[1100];
  snprintf(path, sizeof path, "%s/model.qplan", dir);
  struct rlimit old;
  ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = {256 * 1024, old.rlim_max};
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_WGHT, "transformer", 0, 0));
  static unsigned char chunk[100000];
  qd_status_t s = QD_OK;
  for (int i = 0; i < 100 && !s; i++) s = qd_plan_writer_write(w, chunk, sizeof chunk);
  ck_assert_ptr_nonnull(s);
  ck_assert_int_eq(qd_status_detail(s), QD_E_IO_WRITE);
  qd_status_free(s);
  QD_ASSERT_DETAIL(qd_plan_writer_write(w, chunk, 10), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_end_section(w), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_finish(w), QD_E_INVALID_ARGUMENT);
  qd_plan_writer_destroy(w);
  ck_assert_int_eq(dir_entries(dir), 0);
  ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
  signal(SIGXFSZ, SIG_DFL);
}
END_TEST

/* finish fails at the rename (a directory holds the name): the temporary file is still removed by destroy. */
START_TEST(writer_fails_at_rename) {
  const char* dir = fresh_dir("fail_rename");
  char path[1100], inner[1200];
  snprintf(path, sizeof path, "%s/model.qplan", dir);
  mkdir(path, 0755);
  snprintf(inner, sizeof inner, "%s/keep", path);
  FILE* f = fopen(inner, "wb");
  fclose(f);
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_META, "", 0, 0));
  QD_ASSERT_OK(qd_plan_writer_end_section(w));
  QD_ASSERT_DETAIL(qd_plan_writer_finish(w), QD_E_IO_RENAME);
  ck_assert_int_eq(dir_entries(dir), 2); /* the directory and the temporary file, until destroy */
  qd_plan_writer_destroy(w);
  ck_assert_int_eq(dir_entries(dir), 1);
  unlink(inner);
  rmdir(path);
  /* and a directory that does not exist */
  snprintf(path, sizeof path, "%s/no/such/dir/model.qplan", dir);
  qd_status_t s = qd_plan_writer_create(path, qd_allocator_system(), &w);
  ck_assert_int_eq(qd_status_detail(s), QD_E_IO_OPEN);
  ck_assert_ptr_null(w);
  qd_status_free(s);
}
END_TEST

START_TEST(writer_signal_cleanup) {
  const char* dir = fresh_dir("signal");
  char a[1100], b[1100];
  snprintf(a, sizeof a, "%s/a.qplan", dir);
  snprintf(b, sizeof b, "%s/b.qplan", dir);
  qd_plan_writer_t *wa, *wb;
  QD_ASSERT_OK(qd_plan_writer_create(a, qd_allocator_system(), &wa));
  QD_ASSERT_OK(qd_plan_writer_create(b, qd_allocator_system(), &wb));
  ck_assert_int_eq(dir_entries(dir), 2);
  qd_plan_writer_remove_temporaries(); /* what qdc's SIGINT handler calls */
  ck_assert_int_eq(dir_entries(dir), 0);
  qd_plan_writer_destroy(wa);
  qd_plan_writer_destroy(wb);
  /* a finished writer's plan is never touched */
  QD_ASSERT_OK(qd_plan_writer_create(a, qd_allocator_system(), &wa));
  QD_ASSERT_OK(qd_plan_writer_finish(wa));
  qd_plan_writer_remove_temporaries();
  ck_assert(exists(a));
  qd_plan_writer_destroy(wa);
  ck_assert(exists(a));
}
END_TEST

START_TEST(writer_argument_errors) {
  const char* path = tmp_path("args.qplan");
  qd_plan_writer_t* w;
  QD_ASSERT_DETAIL(qd_plan_writer_create("", qd_allocator_system(), &w), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_OK(qd_plan_writer_create(path, qd_allocator_system(), &w));
  QD_ASSERT_DETAIL(qd_plan_writer_write(w, "x", 1), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_end_section(w), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_FOURCC('M', 'E', ' ', 'A'), "", 0, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "a name that is far too long", 0, 0),
                   QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "tab\there", 0, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", 0x2, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_KERN, "x", QD_PLAN_SECTION_REQUIRED, 0),
                   QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", 0, 4), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", 0, 24), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", 0, 131072), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_WGHT, "x", 0, 2048), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", QD_PLAN_SECTION_REQUIRED, 65536));
  QD_ASSERT_DETAIL(qd_plan_writer_write(w, NULL, 3), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_OK(qd_plan_writer_write(w, NULL, 0));
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "y", 0, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_plan_writer_finish(w), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_OK(qd_plan_writer_end_section(w));
  QD_ASSERT_DETAIL(qd_plan_writer_begin_section(w, QD_PLAN_KIND_PROG, "x", 0, 0), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_OK(qd_plan_writer_begin_section(w, KIND("Zz09"), NULL, QD_PLAN_SECTION_REQUIRED, 0));
  QD_ASSERT_OK(qd_plan_writer_end_section(w));
  QD_ASSERT_OK(qd_plan_writer_finish(w)); /* the errors above left the writer usable */
  QD_ASSERT_DETAIL(qd_plan_writer_finish(w), QD_E_INVALID_ARGUMENT);
  qd_plan_writer_destroy(w);
  /* the unknown required section makes the plan unreadable for this qd, as it should */
  qd_plan_file_t* pf;
  QD_ASSERT_DETAIL(qd_plan_file_open(path, qd_allocator_system(), 0, &pf), QD_E_PLAN_SECTION_UNKNOWN_REQUIRED);
}
END_TEST

/* --- qdc inspect on plans ------------------------------------------------------------------------------------------ */

typedef struct {
  int status;
  char* out;
  char* err;
} run_t;

static char* slurp_text(const char* path) {
  image_t im = load(path);
  char* t = realloc(im.b, im.n + 1);
  t[im.n] = '\0';
  return t;
}

static run_t run_qdc_inspect(const char* args) {
  const char* qdc = getenv("QD_QDC");
  ck_assert_msg(qdc && *qdc, "QD_QDC is not set (run through meson test)");
  char cmd[4096];
  const char* out = tmp_path("plan_inspect.out");
  const char* err = tmp_path("plan_inspect.err");
  snprintf(cmd, sizeof cmd, "'%s' inspect %s >'%s' 2>'%s'", qdc, args, out, err);
  int st = system(cmd);
  ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
  run_t r = {WEXITSTATUS(st), slurp_text(out), slurp_text(err)};
  return r;
}

static int count_lines(const char* s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

START_TEST(inspect_text_json_verify) {
  const char* path = write_std_plan("inspect.qplan");
  char args[2048];
  snprintf(args, sizeof args, "'%s'", path);
  run_t r = run_qdc_inspect(args);
  ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
  ck_assert_str_eq(r.err, "");
  ASSERT_CONTAINS(r.out, "format 1.0");
  ASSERT_CONTAINS(r.out, "\"qd 0.1.0\"");
  ASSERT_CONTAINS(r.out, "WGHT  \"transformer\"");
  ASSERT_CONTAINS(r.out, "(unknown kind, skipped)");
  ASSERT_CONTAINS(r.out, "5 keys: qd_plan, model, components, resolutions, compile");
  free(r.out);
  free(r.err);

  snprintf(args, sizeof args, "--json --verify '%s'", path);
  r = run_qdc_inspect(args);
  ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
  cJSON* doc = cJSON_Parse(r.out);
  ck_assert_msg(doc != NULL, "stdout is not one JSON document: %s", r.out);
  ck_assert_str_eq(cJSON_GetObjectItem(doc, "kind")->valuestring, "plan");
  ck_assert_int_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "format"), "major")->valueint, 1);
  const cJSON* sections = cJSON_GetObjectItem(doc, "sections");
  ck_assert_int_eq(cJSON_GetArraySize(sections), (int)STD_COUNT);
  const cJSON* w = cJSON_GetArrayItem(sections, 3);
  ck_assert_str_eq(cJSON_GetObjectItem(w, "kind")->valuestring, "WGHT");
  ck_assert_int_eq(cJSON_GetObjectItem(w, "alignment")->valueint, 4096);
  ck_assert_str_eq(cJSON_GetObjectItem(w, "verify")->valuestring, "ok");
  ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "verify"), "ok")));
  ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "metadata"), "keys")), 5);
  cJSON_Delete(doc);
  free(r.out);
  free(r.err);

  /* a corrupt weight section: the plan opens, --verify finds it */
  image_t im = load(path);
  size_t wi = find_entry(&im, "WGHT", "vae");
  im.b[rd(entry(&im, wi) + EOFF(offset), 8) + 10] ^= 0x40;
  const char* bad = tmp_path("inspect_bad.qplan");
  FILE* f = fopen(bad, "wb");
  fwrite(im.b, 1, im.n, f);
  fclose(f);
  free(im.b);
  snprintf(args, sizeof args, "'%s'", bad);
  r = run_qdc_inspect(args);
  ck_assert_int_eq(r.status, 0);
  free(r.out);
  free(r.err);
  snprintf(args, sizeof args, "--verify '%s'", bad);
  r = run_qdc_inspect(args);
  ck_assert_int_eq(r.status, 1);
  ASSERT_CONTAINS(r.out, "MISMATCH");
  ASSERT_CONTAINS(r.out, "checksum mismatch in 1 of 14 sections");
  ck_assert_int_eq(count_lines(r.err), 1);
  ASSERT_CONTAINS(r.err, "qdc: error: ");
  ASSERT_CONTAINS(r.err, "WGHT \"vae\"");
  free(r.out);
  free(r.err);
  snprintf(args, sizeof args, "--json --verify '%s'", bad);
  r = run_qdc_inspect(args);
  ck_assert_int_eq(r.status, 1);
  doc = cJSON_Parse(r.out);
  ck_assert_ptr_nonnull(doc);
  ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "verify"), "ok")));
  ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "sections"), (int)wi), "verify")
                       ->valuestring, "mismatch");
  cJSON_Delete(doc);
  free(r.out);
  free(r.err);
}
END_TEST

START_TEST(inspect_rejects) {
  /* a broken plan: nothing on stdout, one error line naming the rule's subject */
  image_t im = std_image();
  wr(im.b + HOFF(version_major), 2, 2);
  const char* p = tmp_path("inspect_v2.qplan");
  FILE* f = fopen(p, "wb");
  fwrite(im.b, 1, im.n, f);
  fclose(f);
  free(im.b);
  char args[2048];
  snprintf(args, sizeof args, "--json '%s'", p);
  run_t r = run_qdc_inspect(args);
  ck_assert_int_eq(r.status, 1);
  ck_assert_str_eq(r.out, "");
  ck_assert_int_eq(count_lines(r.err), 1);
  ASSERT_CONTAINS(r.err, "plan format 2.0 needs a newer qd");
  free(r.out);
  free(r.err);
  /* a plan without the .qplan extension is recognized by its magic */
  const char* noext = tmp_path("inspect_plan_noext");
  image_t ok = std_image();
  f = fopen(noext, "wb");
  fwrite(ok.b, 1, ok.n, f);
  fclose(f);
  free(ok.b);
  snprintf(args, sizeof args, "'%s'", noext);
  r = run_qdc_inspect(args);
  ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
  ASSERT_CONTAINS(r.out, "compiled plan");
  free(r.out);
  free(r.err);
  /* JSON under a .qplan name says what it is */
  const char* js = tmp_path("inspect_json.qplan");
  f = fopen(js, "wb");
  fputs("{\"a\": 1}\n", f);
  fclose(f);
  snprintf(args, sizeof args, "'%s'", js);
  r = run_qdc_inspect(args);
  ck_assert_int_eq(r.status, 1);
  ASSERT_CONTAINS(r.err, "looks like JSON");
  free(r.out);
  free(r.err);
}
END_TEST

static Suite* plan_file_suite(void) {
  Suite* s = suite_create("plan_file");
  TCase* tc = tcase_create("round_trip");
  tcase_add_test(tc, round_trip);
  tcase_add_test(tc, empty_plan_and_overwrite);
  tcase_add_test(tc, kind_helpers);
  tcase_add_test(tc, verify_progress_and_cancel);
  tcase_add_test(tc, open_errors);
  suite_add_tcase(s, tc);

  tc = tcase_create("rules");
  tcase_add_test(tc, rule_not_a_plan);
  tcase_add_test(tc, rule_magic_mangled);
  tcase_add_test(tc, rule_file_too_small);
  tcase_add_test(tc, rule_version);
  tcase_add_test(tc, rule_file_size);
  tcase_add_test(tc, rule_entry_size);
  tcase_add_test(tc, newer_minor_larger_entries);
  tcase_add_test(tc, rule_too_many_sections);
  tcase_add_test(tc, rule_table_offset);
  tcase_add_test(tc, rule_table_range);
  tcase_add_test(tc, rule_header_checksum);
  tcase_add_test(tc, rule_header_flags);
  tcase_add_test(tc, rule_header_reserved);
  tcase_add_test(tc, rule_writer_string);
  tcase_add_test(tc, rule_section_kind);
  tcase_add_test(tc, rule_section_reserved);
  tcase_add_test(tc, rule_section_flags);
  tcase_add_test(tc, rule_section_name);
  tcase_add_test(tc, rule_section_alignment);
  tcase_add_test(tc, rule_section_range);
  tcase_add_test(tc, rule_section_misaligned);
  tcase_add_test(tc, rule_section_required_flag);
  tcase_add_test(tc, rule_section_kind_alignment);
  tcase_add_test(tc, rule_section_unknown_required);
  tcase_add_test(tc, rule_section_duplicate);
  tcase_add_test(tc, rule_section_overlap);
  tcase_add_test(tc, rule_gap);
  tcase_add_test(tc, rule_padding);
  tcase_add_test(tc, rule_trailing_data);
  tcase_add_test(tc, rule_section_checksum);
  suite_add_tcase(s, tc);

  tc = tcase_create("sweeps");
  tcase_add_test(tc, sweep_truncation);
  tcase_add_test(tc, sweep_bit_flips_header_and_table);
  tcase_add_test(tc, sweep_section_bytes);
  tcase_add_test(tc, sweep_padding_bytes);
  tcase_add_test(tc, sweep_allocation_failures_open);
  suite_add_tcase(s, tc);

  tc = tcase_create("writer");
  tcase_add_test(tc, sweep_allocation_failures_writer);
  tcase_add_test(tc, writer_destroy_without_finish);
  tcase_add_test(tc, writer_fails_mid_way);
  tcase_add_test(tc, writer_fails_at_rename);
  tcase_add_test(tc, writer_signal_cleanup);
  tcase_add_test(tc, writer_argument_errors);
  suite_add_tcase(s, tc);

  tc = tcase_create("inspect");
  tcase_add_test(tc, inspect_text_json_verify);
  tcase_add_test(tc, inspect_rejects);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(plan_file_suite)
