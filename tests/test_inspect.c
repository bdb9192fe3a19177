/* `qdc inspect` end to end: runs the built qdc (QD_QDC) on the sharded fixture and on corpus files and checks the
 * exit status, that --json prints one parseable document on stdout and nothing else, and that failures print
 * exactly one "qdc: error:" line on stderr. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "qd_test.h"

typedef struct {
  int status;
  char* out;
  char* err;
} run_result_t;

/* Runs `qdc inspect ARGS` (args already shell-quoted where needed), capturing stdout and stderr. */
static run_result_t run_inspect(const char* args) {
  const char* qdc = getenv("QD_QDC");
  ck_assert_msg(qdc && *qdc, "QD_QDC is not set (run through meson test)");
  char out[1024], err[1024], cmd[4096];
  snprintf(out, sizeof out, "%s/inspect_stdout.txt", qd_test_tmp_dir());
  snprintf(err, sizeof err, "%s/inspect_stderr.txt", qd_test_tmp_dir());
  snprintf(cmd, sizeof cmd, "'%s' inspect %s >'%s' 2>'%s'", qdc, args, out, err);
  int st = system(cmd);
  ck_assert_msg(st != -1 && WIFEXITED(st), "could not run: %s", cmd);
  run_result_t r = {WEXITSTATUS(st), qd_test_read_file(out), qd_test_read_file(err)};
  return r;
}

static void run_free(run_result_t* r) {
  free(r->out);
  free(r->err);
}

static char* data_path(const char* rel) {
  static char bufs[4][1024];
  static int next;
  char* p = bufs[next++ % 4];
  snprintf(p, 1024, "'%s/%s'", qd_test_data_dir(), rel);
  return p;
}

static int count_lines(const char* s) {
  int n = 0;
  for (; *s; s++) n += *s == '\n';
  return n;
}

static const cJSON* find_tensor(const cJSON* tensors, const char* name) {
  const cJSON* t;
  cJSON_ArrayForEach(t, tensors) {
    const cJSON* n = cJSON_GetObjectItemCaseSensitive(t, "name");
    if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) return t;
  }
  return NULL;
}

START_TEST(json_on_sharded_checkpoint) {
  const char* targets[] = {"flux_sharded", "flux_sharded/diffusion_pytorch_model.safetensors.index.json"};
  for (int k = 0; k < 2; k++) {
    char args[1200];
    snprintf(args, sizeof args, "--json %s", data_path(targets[k]));
    run_result_t r = run_inspect(args);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_str_eq(r.err, "");
    cJSON* doc = cJSON_Parse(r.out);
    ck_assert_msg(doc != NULL, "stdout is not one JSON document: %.200s", r.out);
    ck_assert_int_eq(cJSON_GetObjectItem(doc, "file_count")->valueint, 2);
    ck_assert_int_eq(cJSON_GetObjectItem(doc, "tensor_count")->valueint, 112);
    ck_assert_str_eq(cJSON_GetObjectItem(doc, "kind")->valuestring, k == 0 ? "directory" : "index");
    const cJSON* bf16 = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "totals"), "BF16");
    ck_assert_ptr_nonnull(bf16);
    ck_assert_int_eq(cJSON_GetObjectItem(bf16, "tensors")->valueint, 112);
    double bytes = cJSON_GetObjectItem(bf16, "bytes")->valuedouble;
    ck_assert(bytes == cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "total"), "bytes")->valuedouble);
    ck_assert(bytes == cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "index_metadata"), "total_size")->valuedouble);
    const cJSON* tensors = cJSON_GetObjectItem(doc, "tensors");
    ck_assert_int_eq(cJSON_GetArraySize(tensors), 112);
    const cJSON* ff = find_tensor(tensors, "transformer_blocks.1.ff_context.net.2.weight");
    ck_assert_ptr_nonnull(ff);
    ck_assert_str_eq(cJSON_GetObjectItem(ff, "dtype")->valuestring, "BF16");
    const cJSON* shape = cJSON_GetObjectItem(ff, "shape");
    ck_assert_int_eq(cJSON_GetArraySize(shape), 2);
    ck_assert_int_eq(cJSON_GetArrayItem(shape, 0)->valueint, 16);
    ck_assert_int_eq(cJSON_GetArrayItem(shape, 1)->valueint, 64);
    ck_assert_int_eq(cJSON_GetObjectItem(ff, "bytes")->valueint, 16 * 64 * 2);
    ck_assert_int_eq(cJSON_GetObjectItem(ff, "file")->valueint, 0);
    ck_assert_ptr_nonnull(find_tensor(tensors, "time_text_embed.guidance_embedder.linear_1.weight"));
    const cJSON* po = find_tensor(tensors, "proj_out.weight");
    ck_assert_int_eq(cJSON_GetObjectItem(po, "file")->valueint, 1);
    const cJSON* files = cJSON_GetObjectItem(doc, "files");
    ck_assert_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetArrayItem(files, 0), "metadata"), "format")
                         ->valuestring, "pt");
    cJSON_Delete(doc);
    run_free(&r);
  }

  /* --summary leaves the tensor list out. */
  char args[1200];
  snprintf(args, sizeof args, "--json --summary %s", data_path("flux_sharded"));
  run_result_t r = run_inspect(args);
  ck_assert_int_eq(r.status, 0);
  cJSON* doc = cJSON_Parse(r.out);
  ck_assert_ptr_nonnull(doc);
  ck_assert_ptr_null(cJSON_GetObjectItem(doc, "tensors"));
  ck_assert_int_eq(cJSON_GetObjectItem(doc, "tensor_count")->valueint, 112);
  cJSON_Delete(doc);
  run_free(&r);
}
END_TEST

START_TEST(text_table) {
  run_result_t r = run_inspect(data_path("flux_sharded/diffusion_pytorch_model-00002-of-00002.safetensors"));
  ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
  ck_assert_str_eq(r.err, "");
  ck_assert_ptr_nonnull(strstr(r.out, "name "));
  ck_assert_ptr_nonnull(strstr(r.out, "single_transformer_blocks.1.proj_out.weight"));
  ck_assert_ptr_nonnull(strstr(r.out, "[16, 80]"));
  ck_assert_ptr_nonnull(strstr(r.out, "BF16"));
  ck_assert_ptr_nonnull(strstr(r.out, "format = pt"));
  ck_assert_ptr_nonnull(strstr(r.out, "files: 1"));
  /* Blocks in numeric order: block 1's rows come after block 0's. */
  const char* b0 = strstr(r.out, "single_transformer_blocks.0.");
  const char* b1 = strstr(r.out, "single_transformer_blocks.1.");
  ck_assert(b0 && b1 && b0 < b1);
  run_free(&r);

  r = run_inspect("--summary" " " "--" " " "'/dev/null/../no such'");
  ck_assert_int_eq(r.status, 1);
  run_free(&r);
}
END_TEST

START_TEST(malformed_files_fail_with_one_line) {
  static const struct {
    const char* file;
    const char* fragment;
  } cases[] = {
      {"shape_negative.safetensors", "tensor 'w': shape[1] is -1; dimensions must be non-negative integers"},
      {"header_too_large.safetensors", "header length is 100000001 bytes"},
      {"duplicate_tensor_name.safetensors", "duplicate key \"w\""},
      {"file_empty.safetensors", "the file is 0 bytes"},
      {"data_gap.safetensors", "4 unused bytes"},
      {"tensor_name_nul.safetensors", "tensor 'a\\x00b'"},
      {"utf8_overlong.safetensors", "invalid UTF-8"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int json = 0; json < 2; json++) {
      char rel[256], args[1200];
      snprintf(rel, sizeof rel, "safetensors_corpus/%s", cases[i].file);
      snprintf(args, sizeof args, "%s%s", json ? "--json " : "", data_path(rel));
      run_result_t r = run_inspect(args);
      ck_assert_msg(r.status == 1, "%s: exit %d", cases[i].file, r.status);
      ck_assert_msg(r.out[0] == '\0', "%s: stdout not empty: %s", cases[i].file, r.out);
      ck_assert_msg(strncmp(r.err, "qdc: error: ", 12) == 0, "%s: stderr: %s", cases[i].file, r.err);
      ck_assert_msg(count_lines(r.err) == 1, "%s: stderr is not one line: %s", cases[i].file, r.err);
      ck_assert_msg(strstr(r.err, cases[i].file) != NULL, "%s: stderr does not name the file: %s", cases[i].file,
                    r.err);
      ck_assert_msg(strstr(r.err, cases[i].fragment) != NULL, "%s: stderr lacks '%s': %s", cases[i].file,
                    cases[i].fragment, r.err);
      run_free(&r);
    }
  }
}
END_TEST

START_TEST(kinds_and_usage) {
  /* Not a kind inspect reads. */
  char p[1024], args[1200];
  snprintf(p, sizeof p, "%s/inspect_notes.txt", qd_test_tmp_dir());
  FILE* f = fopen(p, "w");
  fputs("hello\n", f);
  fclose(f);
  snprintf(args, sizeof args, "'%s'", p);
  run_result_t r = run_inspect(args);
  ck_assert_int_eq(r.status, 1);
  ck_assert_int_eq(count_lines(r.err), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "inspect_notes.txt"));
  ck_assert_ptr_nonnull(strstr(r.err, ".safetensors"));
  run_free(&r);

  /* A graph description is recognised but not handled yet. */
  snprintf(p, sizeof p, "%s/inspect_graph.json", qd_test_tmp_dir());
  f = fopen(p, "w");
  fputs("{\"nodes\": []}\n", f);
  fclose(f);
  snprintf(args, sizeof args, "'%s'", p);
  r = run_inspect(args);
  ck_assert_int_eq(r.status, 1);
  ck_assert_int_eq(count_lines(r.err), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "graph description"));
  run_free(&r);

  /* A safetensors file without the extension is recognised by its bytes. */
  snprintf(p, sizeof p, "%s/inspect_renamed.bin", qd_test_tmp_dir());
  char src[1024];
  snprintf(src, sizeof src, "%s/safetensors_corpus/valid_all_dtypes.safetensors", qd_test_data_dir());
  char* bytes = qd_test_read_file(src);
  struct stat sb;
  stat(src, &sb);
  f = fopen(p, "wb");
  fwrite(bytes, 1, (size_t)sb.st_size, f);
  fclose(f);
  free(bytes);
  snprintf(args, sizeof args, "--json '%s'", p);
  r = run_inspect(args);
  ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
  run_free(&r);

  r = run_inspect("--help");
  ck_assert_int_eq(r.status, 0);
  ck_assert_ptr_nonnull(strstr(r.out, "usage: qdc inspect"));
  run_free(&r);
  r = run_inspect("");
  ck_assert_int_eq(r.status, 2);
  ck_assert_int_eq(count_lines(r.err), 1);
  run_free(&r);
  r = run_inspect("--bogus x");
  ck_assert_int_eq(r.status, 2);
  run_free(&r);
  r = run_inspect("a b");
  ck_assert_int_eq(r.status, 2);
  run_free(&r);
  r = run_inspect("/nonexistent/model.safetensors");
  ck_assert_int_eq(r.status, 1);
  ck_assert_int_eq(count_lines(r.err), 1);
  ck_assert_ptr_nonnull(strstr(r.err, "/nonexistent/model.safetensors"));
  run_free(&r);
}
END_TEST

static Suite* inspect_suite(void) {
  Suite* s = suite_create("inspect");
  TCase* tc = tcase_create("qdc");
  tcase_add_test(tc, json_on_sharded_checkpoint);
  tcase_add_test(tc, text_table);
  tcase_add_test(tc, malformed_files_fail_with_one_line);
  tcase_add_test(tc, kinds_and_usage);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(inspect_suite)
