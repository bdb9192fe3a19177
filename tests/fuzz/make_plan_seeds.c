/* Writes the seed plans for the plan-file fuzzer (tests/fuzz/fuzz_plan_file.c) with the real writer, so that the
 * fuzzer starts from valid plans of every shape and mutates its way into the rules from there.
 *
 *   make_plan_seeds DIR           (re)writes the seeds into DIR (tests/fuzz/seeds/plan)
 *   make_plan_seeds --check DIR   exits 1 unless DIR holds exactly what it would write (a meson test runs this)
 *
 * Seeds stay small (the largest is about 20 KiB) because libFuzzer's default input size limit follows the largest
 * seed. The writer records its version ("qd 0.1.0"), so a version bump changes the seeds: rerun this then. They
 * are named *.seed, not *.qplan, because .gitignore keeps compiled plans out of the repository. */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler/plan_writer.h"
#include "qd/plan_file.h"

typedef struct {
  const char* kind;
  const char* name;
  size_t align;
  size_t size;
} seed_section_t;

typedef struct {
  const char* file;
  const seed_section_t* sections;
  size_t count;
} seed_t;

static const seed_section_t full[] = {
    {"META", "", 0, 0},          {"PROG", "transformer", 0, 96}, {"PROG", "vae", 16, 40},
    {"WGHT", "transformer", 0, 300}, {"WIDX", "transformer", 0, 64}, {"KERN", "sm_90", 256, 100},
    {"TUNE", "", 0, 24},         {"TOKN", "clip", 32, 50},       {"SCHD", "group", 0, 8},
};
static const seed_section_t meta_only[] = {{"META", "", 0, 0}};
static const seed_section_t unknown_optional[] = {{"META", "", 0, 0}, {"XTRA", "future", 0, 17}};
static const seed_section_t zero_sizes[] = {
    {"META", "", 0, 0}, {"KERN", "a", 64, 0}, {"TUNE", "b", 8, 0}, {"WGHT", "c", 8192, 0}, {"SCHD", "d", 16, 3},
};
static const seed_section_t two_weights[] = {
    {"META", "", 0, 0}, {"WGHT", "t5", 0, 100}, {"WIDX", "t5", 0, 16}, {"WGHT", "vae", 16384, 10}, {"WIDX", "vae", 0, 16},
};

static const seed_t seeds[] = {
    {"empty.seed", NULL, 0},
    {"full.seed", full, sizeof full / sizeof full[0]},
    {"meta_only.seed", meta_only, 1},
    {"unknown_optional.seed", unknown_optional, 2},
    {"zero_sizes.seed", zero_sizes, sizeof zero_sizes / sizeof zero_sizes[0]},
    {"two_weights.seed", two_weights, sizeof two_weights / sizeof two_weights[0]},
};

static const char meta_json[] = "{\"qd_plan\": 1, \"model\": \"seed\", \"components\": [\"transformer\"]}";

static int write_seed(const char* dir, const seed_t* seed) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, seed->file);
  qd_plan_writer_t* w = NULL;
  qd_status_t s = qd_plan_writer_create(path, qd_allocator_system(), &w);
  uint32_t x = 12345;
  for (size_t i = 0; !s && i < seed->count; i++) {
    const seed_section_t* sec = &seed->sections[i];
    s = qd_plan_writer_begin_section(w, qd_plan_kind_from_text(sec->kind), sec->name, 0, sec->align);
    if (!s && strcmp(sec->kind, "META") == 0) s = qd_plan_writer_write(w, meta_json, strlen(meta_json));
    for (size_t k = 0; !s && k < sec->size; k++) {
      x = x * 1103515245u + 12345u;
      unsigned char b = (unsigned char)(x >> 24);
      s = qd_plan_writer_write(w, &b, 1);
    }
    if (!s) s = qd_plan_writer_end_section(w);
  }
  if (!s) s = qd_plan_writer_finish(w);
  qd_plan_writer_destroy(w);
  if (s) {
    qd_status_fprint(stderr, "make_plan_seeds", s, false);
    qd_status_free(s);
    return 1;
  }
  return 0;
}

static unsigned char* slurp(const char* path, size_t* n) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* b = malloc(len > 0 ? (size_t)len : 1);
  *n = b && len >= 0 ? fread(b, 1, (size_t)len, f) : 0;
  fclose(f);
  return b;
}

/* Writes every seed into a scratch directory and compares it with `dir`, file by file, both ways. */
static int check(const char* dir) {
  const char* tmp_root = getenv("QD_TEST_TMP");
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s/plan_seeds_check_%ld", tmp_root && *tmp_root ? tmp_root : "/tmp", (long)getpid());
  if (mkdir(tmp, 0755) != 0) {
    perror(tmp);
    return 1;
  }
  int bad = 0;
  size_t n = sizeof seeds / sizeof seeds[0];
  for (size_t i = 0; i < n; i++) {
    char a[8200], b[8200];
    snprintf(a, sizeof a, "%s/%s", tmp, seeds[i].file);
    snprintf(b, sizeof b, "%s/%s", dir, seeds[i].file);
    if (write_seed(tmp, &seeds[i])) return 1;
    size_t na = 0, nb = 0;
    unsigned char* da = slurp(a, &na);
    unsigned char* db = slurp(b, &nb);
    if (!db || na != nb || memcmp(da, db, na) != 0) {
      fprintf(stderr, "make_plan_seeds: %s is %s\n", b, db ? "out of date" : "missing");
      bad = 1;
    }
    free(da);
    free(db);
    unlink(a);
  }
  rmdir(tmp);
  DIR* d = opendir(dir);
  struct dirent* de;
  while (d && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    bool known = false;
    for (size_t i = 0; i < n; i++) known = known || strcmp(de->d_name, seeds[i].file) == 0;
    if (!known) {
      fprintf(stderr, "make_plan_seeds: %s/%s is not a seed this program writes\n", dir, de->d_name);
      bad = 1;
    }
  }
  if (d) closedir(d);
  if (bad) fprintf(stderr, "make_plan_seeds: regenerate with: build/tests/make_plan_seeds %s\n", dir);
  return bad;
}

int main(int argc, char** argv) {
  if (argc == 3 && strcmp(argv[1], "--check") == 0) return check(argv[2]);
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: make_plan_seeds [--check] DIR\n");
    return 2;
  }
  mkdir(argv[1], 0755);
  for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++)
    if (write_seed(argv[1], &seeds[i])) return 1;
  return 0;
}
