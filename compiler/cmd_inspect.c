/* qdc inspect: describes an input file.
 *
 * The input's kind is decided first (qdc_inspect_detect_: directory, extension, then magic bytes), and each kind
 * has one handler in qdc_inspect_kinds_. Only checkpoints (a .safetensors file, an index or a directory) have a
 * handler today; graph descriptions and plans get theirs in their own files, registered in that table.
 *
 * Output contract: text on stdout for people; with --json exactly one JSON document on stdout and nothing else
 * there. Failures print one line, "qdc: error: ...", on stderr and exit 1; usage errors exit 2. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler/inspect.h"
#include "compiler/qdc_commands.h"
#include "ir/strict_json.h"
#include "qd/checkpoint.h"
#include "qd/plan_format.h"
#include "qd/progress.h"
#include "qd/safetensors.h"


typedef enum qdc_input_kind {
  QDC_INPUT_UNKNOWN = 0,
  QDC_INPUT_CHECKPOINT, /* .safetensors, *.index.json, or a directory */
  QDC_INPUT_GRAPH,      /* models/<name>.json */
  QDC_INPUT_PLAN,       /* .qplan */
} qdc_input_kind_t;

static int qdc_inspect_checkpoint_(const qdc_inspect_options_t* opt);

/* The dispatch point: one row per input kind; a NULL handler means qdc cannot inspect that kind yet. */
static const struct {
  qdc_input_kind_t kind;
  const char* what;
  int (*run)(const qdc_inspect_options_t* opt);
} qdc_inspect_kinds_[] = {
    {QDC_INPUT_CHECKPOINT, "a safetensors checkpoint", qdc_inspect_checkpoint_},
    {QDC_INPUT_GRAPH, "a graph description", qdc_inspect_graph},
    {QDC_INPUT_PLAN, "a compiled plan", qdc_inspect_plan},
};

static const char qdc_inspect_accepted_[] =
    "qdc inspect reads a .safetensors file, a *.safetensors.index.json checkpoint index, or a directory of them";

static void qdc_inspect_usage_(FILE* f) {
  fprintf(f,
          "usage: qdc inspect [options] PATH\n"
          "\n"
          "Validates and describes PATH, which is one of:\n"
          "  a checkpoint   a .safetensors file, a *.safetensors.index.json index (diffusers / transformers sharded\n"
          "                 layout), or a directory (its index if it has exactly one, else all its .safetensors\n"
          "                 files): every tensor (name, dtype, shape, parameters, bytes), totals per dtype, metadata\n"
          "  a graph        a graph description (models/*.json): configurations, parameters, nodes by op, and the\n"
          "                 FLOPs of one forward pass at a resolution\n"
          "  a plan         a compiled .qplan: header, sections, checksums\n"
          "\n"
          "options:\n"
          "  --json               print one JSON document on stdout instead of tables\n"
          "  --summary, -s        leave out the per-tensor table (and the \"tensors\" array with --json)\n"
          "  --quiet, -q          same as --summary\n"
          "  --config NAME        graphs: the configuration (default: the graph's default)\n"
          "  --resolution WxH     graphs: image size for token counts and FLOPs (default 1024x1024)\n"
          "  --batch N            graphs: images per forward pass (default 1)\n"
          "  --verify             plans: recompute every section's checksum, weights included (exit 1 on a\n"
          "                       mismatch)\n"
          "  --help, -h           show this help\n"
          "\n"
          "Exit status: 0 valid, 1 invalid or unreadable (one 'qdc: error:' line on stderr), 2 usage error.\n");
}

static bool qdc_ends_with_(const char* s, const char* suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* Decides what `path` is. Unknown extensions are sniffed: a safetensors file starts with a little-endian header
 * length followed by '{'. */
static qdc_input_kind_t qdc_inspect_detect_(const char* path) {
  struct stat sb;
  if (stat(path, &sb) != 0) return QDC_INPUT_UNKNOWN;
  if (S_ISDIR(sb.st_mode)) return QDC_INPUT_CHECKPOINT;
  if (qdc_ends_with_(path, ".safetensors") || qdc_ends_with_(path, ".index.json")) return QDC_INPUT_CHECKPOINT;
  if (qdc_ends_with_(path, ".qplan")) return QDC_INPUT_PLAN;
  if (qdc_ends_with_(path, ".json")) return QDC_INPUT_GRAPH;
  if (!S_ISREG(sb.st_mode)) return QDC_INPUT_UNKNOWN; /* never block reading a FIFO or device to sniff it */
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return QDC_INPUT_UNKNOWN;
  unsigned char head[9];
  ssize_t got = read(fd, head, sizeof head);
  close(fd);
  if (got >= QD_PLAN_MAGIC_SIZE && memcmp(head, QD_PLAN_MAGIC, QD_PLAN_MAGIC_SIZE) == 0) return QDC_INPUT_PLAN;
  if (got == (ssize_t)sizeof head && head[8] == '{') {
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | head[i];
    if (n <= QD_SAFETENSORS_MAX_HEADER && n <= (uint64_t)sb.st_size - 8) return QDC_INPUT_CHECKPOINT;
  }
  return QDC_INPUT_UNKNOWN;
}

static int qdc_inspect_fail_(qd_status_t s) {
  qd_status_fprint(stderr, "qdc", s, false);
  qd_status_free(s);
  return 1;
}

/* --- text output --------------------------------------------------------------------------------------- */

/* Orders names the way people number blocks: "blocks.2" before "blocks.10". */
static int qdc_natural_cmp_(const char* a, const char* b) {
  while (*a && *b) {
    if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
      while (*a == '0' && a[1] >= '0' && a[1] <= '9') a++;
      while (*b == '0' && b[1] >= '0' && b[1] <= '9') b++;
      size_t na = 0, nb = 0;
      while (a[na] >= '0' && a[na] <= '9') na++;
      while (b[nb] >= '0' && b[nb] <= '9') nb++;
      if (na != nb) return na < nb ? -1 : 1;
      int c = memcmp(a, b, na);
      if (c) return c;
      a += na;
      b += nb;
      continue;
    }
    if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
    a++;
    b++;
  }
  if (*a || *b) return *a ? 1 : -1;
  return 0;
}

static int qdc_tensor_natural_cmp_(const void* x, const void* y) {
  const qd_tensor_info_t* a = *(const qd_tensor_info_t* const*)x;
  const qd_tensor_info_t* b = *(const qd_tensor_info_t* const*)y;
  int c = qdc_natural_cmp_(a->name, b->name);
  return c ? c : strcmp(a->name, b->name);
}

static void qdc_shape_text_(const qd_tensor_info_t* t, char* buf, size_t size) {
  size_t o = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->rank && o < size; i++)
    o += (size_t)snprintf(buf + o, size - o, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
  if (o < size) snprintf(buf + o, size - o, "]");
}

/* 1234567 -> "1,234,567". */
static char* qdc_grouped_(uint64_t v, char* buf, size_t size) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)v);
  size_t o = 0;
  for (int i = 0; i < n && o + 2 < size; i++) {
    if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = '\0';
  return buf;
}

/* Display width of UTF-8 text, counting code points (good enough for tensor names). */
static size_t qdc_width_(const char* s) {
  size_t w = 0;
  for (; *s; s++)
    if (((unsigned char)*s & 0xC0) != 0x80) w++;
  return w;
}

static void qdc_pad_(FILE* f, const char* s, size_t width) {
  fputs(s, f);
  for (size_t w = qdc_width_(s); w < width; w++) fputc(' ', f);
}

static const char* qdc_basename_(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static const char* qdc_kind_name_(const qd_checkpoint_t* ck) {
  switch (qd_checkpoint_kind(ck)) {
    case QD_CHECKPOINT_FILE: return "safetensors";
    case QD_CHECKPOINT_INDEX: return "index";
    case QD_CHECKPOINT_DIRECTORY: return "directory";
  }
  return "unknown";
}

static int qdc_print_tensor_table_(const qd_checkpoint_t* ck) {
  size_t n = qd_checkpoint_tensor_count(ck);
  if (n == 0) {
    printf("(no tensors)\n\n");
    return 0;
  }
  const qd_tensor_info_t** order = calloc(n, sizeof *order);
  if (!order) return qdc_inspect_fail_(QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory sorting %zu tensors", n));
  for (size_t i = 0; i < n; i++) order[i] = qd_checkpoint_tensor(ck, i);
  qsort(order, n, sizeof *order, qdc_tensor_natural_cmp_);

  bool multi = qd_checkpoint_file_count(ck) > 1;
  size_t wname = 4, wshape = 5, wparams = 10, wbytes = 5;
  char name[256], shape[200], num[32], bytes[32];
  for (size_t i = 0; i < n; i++) {
    qd_json_display(order[i]->name, strlen(order[i]->name), name, sizeof name);
    qdc_shape_text_(order[i], shape, sizeof shape);
    size_t w = qdc_width_(name);
    if (w > wname) wname = w;
    if (strlen(shape) > wshape) wshape = strlen(shape);
    if (strlen(qdc_grouped_(order[i]->numel, num, sizeof num)) > wparams) wparams = strlen(num);
    if (strlen(qd_format_bytes(order[i]->nbytes, bytes, sizeof bytes)) > wbytes) wbytes = strlen(bytes);
  }
  qdc_pad_(stdout, "name", wname);
  printf("  %-7s  ", "dtype");
  qdc_pad_(stdout, "shape", wshape);
  printf("  %*s  %*s%s\n", (int)wparams, "parameters", (int)wbytes, "bytes", multi ? "  file" : "");
  for (size_t i = 0; i < n; i++) {
    const qd_tensor_info_t* t = order[i];
    qd_json_display(t->name, strlen(t->name), name, sizeof name);
    qdc_shape_text_(t, shape, sizeof shape);
    qdc_pad_(stdout, name, wname);
    printf("  %-7s  ", qd_dtype_name(t->dtype));
    qdc_pad_(stdout, shape, wshape);
    printf("  %*s  %*s", (int)wparams, qdc_grouped_(t->numel, num, sizeof num), (int)wbytes,
           qd_format_bytes(t->nbytes, bytes, sizeof bytes));
    if (multi) printf("  %u", t->file_index + 1);
    putchar('\n');
  }
  putchar('\n');
  free(order);
  return 0;
}

static void qdc_print_totals_(const qd_checkpoint_t* ck) {
  char p[32], b[32];
  printf("%-7s  %8s  %15s  %10s\n", "dtype", "tensors", "parameters", "bytes");
  for (int d = 1; d < QD_DTYPE_COUNT_; d++) {
    qd_dtype_total_t t = qd_checkpoint_dtype_total(ck, (qd_dtype_t)d);
    if (t.tensors == 0) continue;
    printf("%-7s  %8llu  %15s  %10s\n", qd_dtype_name((qd_dtype_t)d), (unsigned long long)t.tensors,
           qdc_grouped_(t.elements, p, sizeof p), qd_format_bytes(t.bytes, b, sizeof b));
  }
  qd_dtype_total_t all = qd_checkpoint_total(ck);
  printf("%-7s  %8llu  %15s  %10s\n\n", "total", (unsigned long long)all.tensors,
         qdc_grouped_(all.elements, p, sizeof p), qd_format_bytes(all.bytes, b, sizeof b));
}

static void qdc_print_files_(const qd_checkpoint_t* ck) {
  size_t nf = qd_checkpoint_file_count(ck);
  char b[32], k[512], v[1024];
  printf("files: %zu\n", nf);
  for (size_t i = 0; i < nf; i++) {
    const qd_safetensors_t* st = qd_checkpoint_file(ck, i);
    printf("  %zu  %s  (%zu tensors, %s)\n", i + 1, qd_safetensors_path(st), qd_safetensors_tensor_count(st),
           qd_format_bytes(qd_safetensors_file_size(st), b, sizeof b));
    const char *key, *value;
    for (size_t m = 0; qd_safetensors_metadata_at(st, m, &key, &value); m++)
      printf("     %s = %s\n", qd_json_display(key, strlen(key), k, sizeof k),
             qd_json_display(value, strlen(value), v, sizeof v));
  }
  if (qd_checkpoint_index_metadata_count(ck)) {
    printf("index metadata (%s):\n", qdc_basename_(qd_checkpoint_index_path(ck)));
    const char *key, *value;
    for (size_t m = 0; qd_checkpoint_index_metadata_at(ck, m, &key, &value); m++)
      printf("  %s = %s\n", qd_json_display(key, strlen(key), k, sizeof k),
             qd_json_display(value, strlen(value), v, sizeof v));
  }
}

static int qdc_print_text_(const qd_checkpoint_t* ck, const qdc_inspect_options_t* opt) {
  qd_dtype_total_t all = qd_checkpoint_total(ck);
  char b[32];
  printf("%s: %s", qd_checkpoint_path(ck), qdc_kind_name_(ck));
  if (qd_checkpoint_index_path(ck) && qd_checkpoint_kind(ck) == QD_CHECKPOINT_DIRECTORY)
    printf(" with index %s", qdc_basename_(qd_checkpoint_index_path(ck)));
  printf(", %zu file%s, %llu tensors, %s\n\n", qd_checkpoint_file_count(ck),
         qd_checkpoint_file_count(ck) == 1 ? "" : "s", (unsigned long long)all.tensors,
         qd_format_bytes(all.bytes, b, sizeof b));
  if (!opt->summary && qdc_print_tensor_table_(ck) != 0) return 1;
  qdc_print_totals_(ck);
  qdc_print_files_(ck);
  return 0;
}

/* --- JSON output --------------------------------------------------------------------------------------- */

static bool qdc_json_add_total_(cJSON* parent, const char* key, qd_dtype_total_t t) {
  cJSON* o = cJSON_AddObjectToObject(parent, key);
  return o && cJSON_AddNumberToObject(o, "tensors", (double)t.tensors) &&
         cJSON_AddNumberToObject(o, "parameters", (double)t.elements) &&
         cJSON_AddNumberToObject(o, "bytes", (double)t.bytes);
}

/* Builds the document; NULL when cJSON runs out of memory. */
static cJSON* qdc_json_build_(const qd_checkpoint_t* ck, const qdc_inspect_options_t* opt) {
  cJSON* root = cJSON_CreateObject();
  if (!root) return NULL;
  bool ok = cJSON_AddStringToObject(root, "path", qd_checkpoint_path(ck)) &&
            cJSON_AddStringToObject(root, "kind", qdc_kind_name_(ck)) &&
            (qd_checkpoint_index_path(ck) ? cJSON_AddStringToObject(root, "index", qd_checkpoint_index_path(ck))
                                          : cJSON_AddNullToObject(root, "index")) &&
            cJSON_AddNumberToObject(root, "file_count", (double)qd_checkpoint_file_count(ck)) &&
            cJSON_AddNumberToObject(root, "tensor_count", (double)qd_checkpoint_tensor_count(ck));
  cJSON* files = ok ? cJSON_AddArrayToObject(root, "files") : NULL;
  ok = ok && files;
  for (size_t i = 0; ok && i < qd_checkpoint_file_count(ck); i++) {
    const qd_safetensors_t* st = qd_checkpoint_file(ck, i);
    cJSON* f = cJSON_CreateObject();
    ok = f && cJSON_AddItemToArray(files, f) && cJSON_AddStringToObject(f, "path", qd_safetensors_path(st)) &&
         cJSON_AddNumberToObject(f, "size", (double)qd_safetensors_file_size(st)) &&
         cJSON_AddNumberToObject(f, "header_size", (double)qd_safetensors_header_size(st)) &&
         cJSON_AddNumberToObject(f, "tensor_count", (double)qd_safetensors_tensor_count(st));
    cJSON* md = ok ? cJSON_AddObjectToObject(f, "metadata") : NULL;
    ok = ok && md;
    const char *key, *value;
    for (size_t m = 0; ok && qd_safetensors_metadata_at(st, m, &key, &value); m++)
      ok = cJSON_AddStringToObject(md, key, value) != NULL;
  }
  cJSON* imd = ok ? cJSON_AddObjectToObject(root, "index_metadata") : NULL;
  ok = ok && imd;
  const char *key, *value;
  for (size_t m = 0; ok && qd_checkpoint_index_metadata_at(ck, m, &key, &value); m++) {
    /* Numbers go out as numbers; cJSON holds doubles, so one past 2^53 is written as the nearest. */
    if (qd_checkpoint_index_metadata_is_number(ck, m))
      ok = cJSON_AddNumberToObject(imd, key, strtod(value, NULL)) != NULL;
    else
      ok = cJSON_AddStringToObject(imd, key, value) != NULL;
  }
  cJSON* totals = ok ? cJSON_AddObjectToObject(root, "totals") : NULL;
  ok = ok && totals;
  for (int d = 1; ok && d < QD_DTYPE_COUNT_; d++) {
    qd_dtype_total_t t = qd_checkpoint_dtype_total(ck, (qd_dtype_t)d);
    if (t.tensors) ok = qdc_json_add_total_(totals, qd_dtype_name((qd_dtype_t)d), t);
  }
  ok = ok && qdc_json_add_total_(root, "total", qd_checkpoint_total(ck));
  if (ok && !opt->summary) {
    cJSON* tensors = cJSON_AddArrayToObject(root, "tensors");
    ok = tensors != NULL;
    for (size_t i = 0; ok && i < qd_checkpoint_tensor_count(ck); i++) {
      const qd_tensor_info_t* t = qd_checkpoint_tensor(ck, i);
      cJSON* o = cJSON_CreateObject();
      ok = o && cJSON_AddItemToArray(tensors, o) && cJSON_AddStringToObject(o, "name", t->name) &&
           cJSON_AddStringToObject(o, "dtype", qd_dtype_name(t->dtype));
      cJSON* shape = ok ? cJSON_AddArrayToObject(o, "shape") : NULL;
      ok = ok && shape;
      for (int r = 0; ok && r < t->rank; r++) {
        cJSON* dim = cJSON_CreateNumber((double)t->shape[r]);
        ok = dim && cJSON_AddItemToArray(shape, dim);
      }
      ok = ok && cJSON_AddNumberToObject(o, "parameters", (double)t->numel) &&
           cJSON_AddNumberToObject(o, "bytes", (double)t->nbytes) &&
           cJSON_AddNumberToObject(o, "file", (double)t->file_index) &&
           cJSON_AddNumberToObject(o, "offset", (double)t->file_offset);
    }
  }
  if (!ok) {
    cJSON_Delete(root);
    return NULL;
  }
  return root;
}

static int qdc_print_json_(const qd_checkpoint_t* ck, const qdc_inspect_options_t* opt) {
  cJSON* doc = qdc_json_build_(ck, opt);
  char* text = doc ? cJSON_Print(doc) : NULL;
  cJSON_Delete(doc);
  if (!text) return qdc_inspect_fail_(QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "out of memory building the JSON output"));
  fputs(text, stdout);
  fputc('\n', stdout);
  cJSON_free(text);
  return 0;
}

static int qdc_inspect_checkpoint_(const qdc_inspect_options_t* opt) {
  qd_checkpoint_t* ck;
  qd_status_t s = qd_checkpoint_open(opt->path, qd_allocator_system(), &ck);
  if (s) return qdc_inspect_fail_(s);
  int rc = opt->json ? qdc_print_json_(ck, opt) : qdc_print_text_(ck, opt);
  qd_checkpoint_close(ck);
  if (rc == 0 && fflush(stdout) != 0) {
    int e = errno;
    return qdc_inspect_fail_(QD_ERR(IO, IO_WRITE, "cannot write to stdout: %s", strerror(e)));
  }
  return rc;
}

/* --- entry --------------------------------------------------------------------------------------------- */

int qdc_cmd_inspect(int argc, char** argv) {
  qdc_inspect_options_t opt = {0};
  bool options_done = false;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    if (!options_done && a[0] == '-' && a[1] != '\0') {
      if (strcmp(a, "--") == 0) {
        options_done = true;
      } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
        qdc_inspect_usage_(stdout);
        return 0;
      } else if (strcmp(a, "--json") == 0) {
        opt.json = true;
      } else if (strcmp(a, "--verify") == 0) {
        opt.verify = true;
      } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--resolution") == 0 || strcmp(a, "--batch") == 0) &&
                 i + 1 >= argc) {
        fprintf(stderr, "qdc: error: inspect: %s needs a value\n", a);
        return 2;
      } else if (strcmp(a, "--config") == 0) {
        opt.config = argv[++i];
      } else if (strcmp(a, "--resolution") == 0) {
        if (!qdc_parse_resolution(argv[++i], &opt.width, &opt.height)) {
          fprintf(stderr, "qdc: error: inspect: --resolution '%s': expected WIDTHxHEIGHT, e.g. 1024x1024\n", argv[i]);
          return 2;
        }
      } else if (strcmp(a, "--batch") == 0) {
        char* end;
        opt.batch = strtoll(argv[++i], &end, 10);
        if (*end || opt.batch < 1 || opt.batch > 64) {
          fprintf(stderr, "qdc: error: inspect: --batch '%s': expected a number from 1 to 64\n", argv[i]);
          return 2;
        }
      } else if (strcmp(a, "--summary") == 0 || strcmp(a, "-s") == 0 || strcmp(a, "--quiet") == 0 ||
                 strcmp(a, "-q") == 0) {
        opt.summary = true;
      } else {
        fprintf(stderr, "qdc: error: inspect: unknown option '%s' (run 'qdc inspect --help')\n", a);
        return 2;
      }
      continue;
    }
    if (opt.path) {
      fprintf(stderr, "qdc: error: inspect: one PATH expected, got '%s' and '%s'\n", opt.path, a);
      return 2;
    }
    opt.path = a;
  }
  if (!opt.path) {
    fprintf(stderr, "qdc: error: inspect: missing PATH (run 'qdc inspect --help')\n");
    return 2;
  }

  struct stat sb;
  if (stat(opt.path, &sb) != 0) {
    int e = errno;
    return qdc_inspect_fail_(qd_status_make(e == ENOENT ? QD_CODE_NOT_FOUND : QD_CODE_IO, QD_E_IO_OPEN, __FILE__,
                                            __LINE__, "%s: cannot open: %s", opt.path, strerror(e)));
  }
  qdc_input_kind_t kind = qdc_inspect_detect_(opt.path);
  for (size_t i = 0; i < sizeof qdc_inspect_kinds_ / sizeof qdc_inspect_kinds_[0]; i++) {
    if (qdc_inspect_kinds_[i].kind != kind) continue;
    if (qdc_inspect_kinds_[i].run) return qdc_inspect_kinds_[i].run(&opt);
    return qdc_inspect_fail_(QD_ERR(UNSUPPORTED, NOT_A_FILE, "%s: looks like %s, which qdc inspect cannot describe "
                                    "yet; %s", opt.path, qdc_inspect_kinds_[i].what, qdc_inspect_accepted_));
  }
  return qdc_inspect_fail_(QD_ERR(BAD_INPUT, NOT_A_FILE, "%s: not a kind of file qdc inspect knows; %s", opt.path,
                                  qdc_inspect_accepted_));
}
