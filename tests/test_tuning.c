/* The autotuning records of one component (runtime/cuda/tuning.c): JSON out and back in field for field, lookups by
 * exact key, replacement and growth on add, hostile TUNE sections rejected with the field and its value named,
 * text that is not NUL-terminated, and allocation failures (qd's allocator in parse and add, cJSON's in
 * qd_tuning_to_json). No GPU. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qd_test.h"
#include "runtime/cuda/tuning.h"

#define WHERE "x.qplan: TUNE 'transformer'"

/* --- records --------------------------------------------------------------------------------------------------- */

static qd_tuning_gemm_t make_gemm(int variant) {
  qd_tuning_gemm_t g;
  memset(&g, 0, sizeof g);
  if (variant == 0) { /* an unbatched GEMM with a bias epilogue, accumulating */
    g.m = 4096, g.n = 3072, g.k = 3072, g.epilogue = 1, g.batch = 1;
    g.w_ld = 3072, g.y_ld = 3072, g.accumulate = true;
    for (int i = 0; i < QD_TUNING_ALGO_BYTES; i++) g.algo[i] = (uint8_t)i;
    g.workspace = 1u << 20, g.candidates = 8, g.heuristic_us = 120.5, g.tuned_us = 98.25;
  } else { /* a batched one, every stride set, not accumulating */
    g.m = 4608, g.n = 64, g.k = 128, g.epilogue = 2, g.batch = 24;
    g.w_stride = 8192, g.y_stride = 110592, g.bias_stride = 64, g.w_ld = 128, g.y_ld = 64, g.accumulate = false;
    for (int i = 0; i < QD_TUNING_ALGO_BYTES; i++) g.algo[i] = (uint8_t)(255 - 3 * i);
    g.workspace = 4194304, g.candidates = 32, g.heuristic_us = 7.3, g.tuned_us = 0.1;
  }
  return g;
}

static qd_tuning_kernel_t make_kernel(int variant) {
  qd_tuning_kernel_t k;
  memset(&k, 0, sizeof k);
  if (variant == 0) {
    snprintf(k.site, sizeof k.site, "conv2d.cu:qd_conv2d CONV_K=3 CONV_STRIDE=1 CONV_PAD=1 src=0123456789abcdef");
    snprintf(k.shape, sizeof k.shape, "1x512x128x128<1x512x128x128");
    k.define_count = 2;
    snprintf(k.defines[0].name, sizeof k.defines[0].name, "CONV_WARPS_M");
    k.defines[0].value = 4;
    snprintf(k.defines[1].name, sizeof k.defines[1].name, "CONV_BK");
    k.defines[1].value = 16;
    k.candidates = 12, k.default_us = 800.5, k.tuned_us = 612.75;
  } else { /* the most defines a record may have, with extreme values */
    snprintf(k.site, sizeof k.site, "rms_norm.cu:qd_rms_norm RMS_VEC=4 src=fedcba9876543210");
    snprintf(k.shape, sizeof k.shape, "1x4608x3072<1x4608x3072,1x3072");
    k.define_count = QD_TUNING_MAX_DEFINES;
    for (int d = 0; d < QD_TUNING_MAX_DEFINES; d++) {
      snprintf(k.defines[d].name, sizeof k.defines[d].name, "RMS_D%d", d);
      k.defines[d].value = d == 0 ? INT32_MIN : d == 1 ? INT32_MAX : d * 3 - 7;
    }
    k.candidates = 0, k.default_us = 3.0, k.tuned_us = 2.875;
  }
  return k;
}

static qd_tuning_report_t make_report(int variant) {
  qd_tuning_report_t r;
  memset(&r, 0, sizeof r);
  r.width = variant ? 512 : 1024, r.height = variant ? 768 : 1024, r.batch = variant ? 4 : 1;
  for (int c = 0; c < QD_TUNING_CLASSES; c++) {
    r.untuned_ms[c] = 12.5 * (c + 1) + variant;
    r.tuned_ms[c] = c == 5 ? 0.0 : 10.25 * (c + 1) + 0.001 * variant;
  }
  return r;
}

/* Two GEMMs, two kernels and `reports` reports (1 or 2). */
static qd_tuning_t* make_tuning(qd_allocator_t a, int reports) {
  qd_tuning_t* t;
  QD_ASSERT_OK(qd_tuning_create(a, &t));
  snprintf(t->mode, sizeof t->mode, "max");
  snprintf(t->device, sizeof t->device, "NVIDIA H200");
  snprintf(t->arch, sizeof t->arch, "sm_90");
  t->driver = 12080, t->cublaslt = 120903;
  for (int i = 0; i < 2; i++) {
    qd_tuning_gemm_t g = make_gemm(i);
    QD_ASSERT_OK(qd_tuning_add_gemm(t, &g));
    qd_tuning_kernel_t k = make_kernel(i);
    QD_ASSERT_OK(qd_tuning_add_kernel(t, &k));
  }
  for (int i = 0; i < reports; i++) {
    qd_tuning_report_t r = make_report(i);
    QD_ASSERT_OK(qd_tuning_add_report(t, &r));
  }
  return t;
}

/* --- comparison ------------------------------------------------------------------------------------------------ */

static bool same_gemm(const qd_tuning_gemm_t* a, const qd_tuning_gemm_t* b) {
  return a->m == b->m && a->n == b->n && a->k == b->k && a->epilogue == b->epilogue && a->batch == b->batch &&
         a->w_stride == b->w_stride && a->y_stride == b->y_stride && a->bias_stride == b->bias_stride &&
         a->w_ld == b->w_ld && a->y_ld == b->y_ld && a->accumulate == b->accumulate &&
         memcmp(a->algo, b->algo, sizeof a->algo) == 0 && a->workspace == b->workspace &&
         a->candidates == b->candidates && a->heuristic_us == b->heuristic_us && a->tuned_us == b->tuned_us;
}

static bool same_kernel(const qd_tuning_kernel_t* a, const qd_tuning_kernel_t* b) {
  if (strcmp(a->site, b->site) || strcmp(a->shape, b->shape) || a->define_count != b->define_count ||
      a->candidates != b->candidates || a->default_us != b->default_us || a->tuned_us != b->tuned_us)
    return false;
  for (int32_t d = 0; d < a->define_count; d++)
    if (strcmp(a->defines[d].name, b->defines[d].name) || a->defines[d].value != b->defines[d].value) return false;
  return true;
}

static bool same_report(const qd_tuning_report_t* a, const qd_tuning_report_t* b) {
  if (a->width != b->width || a->height != b->height || a->batch != b->batch) return false;
  for (int c = 0; c < QD_TUNING_CLASSES; c++)
    if (a->untuned_ms[c] != b->untuned_ms[c] || a->tuned_ms[c] != b->tuned_ms[c]) return false;
  return true;
}

/* Whether two record sets are equal field for field (in order); when not, `why` names the first difference. */
static bool same_tuning(const qd_tuning_t* a, const qd_tuning_t* b, char* why, size_t size) {
  snprintf(why, size, "equal");
  if (strcmp(a->mode, b->mode) || strcmp(a->device, b->device) || strcmp(a->arch, b->arch) ||
      a->driver != b->driver || a->cublaslt != b->cublaslt)
    return snprintf(why, size, "mode/device/arch/driver/cublaslt differ"), false;
  if (a->gemm_count != b->gemm_count)
    return snprintf(why, size, "%d gemms, not %d", (int)b->gemm_count, (int)a->gemm_count), false;
  if (a->kernel_count != b->kernel_count)
    return snprintf(why, size, "%d kernels, not %d", (int)b->kernel_count, (int)a->kernel_count), false;
  if (a->report_count != b->report_count)
    return snprintf(why, size, "%d reports, not %d", (int)b->report_count, (int)a->report_count), false;
  for (int32_t i = 0; i < a->gemm_count; i++)
    if (!same_gemm(&a->gemms[i], &b->gemms[i])) return snprintf(why, size, "gemms[%d] differs", (int)i), false;
  for (int32_t i = 0; i < a->kernel_count; i++)
    if (!same_kernel(&a->kernels[i], &b->kernels[i]))
      return snprintf(why, size, "kernels[%d] differs (%d defines, not %d)", (int)i, (int)b->kernels[i].define_count,
                      (int)a->kernels[i].define_count), false;
  for (int32_t i = 0; i < a->report_count; i++)
    if (!same_report(&a->reports[i], &b->reports[i])) return snprintf(why, size, "report[%d] differs", (int)i), false;
  return true;
}

static char* to_text(const qd_tuning_t* t) {
  cJSON* j = qd_tuning_to_json(t);
  ck_assert_ptr_nonnull(j);
  char* text = cJSON_PrintUnformatted(j);
  ck_assert_ptr_nonnull(text);
  cJSON_Delete(j);
  return text;
}

/* --- cJSON's allocations, counted (and failed on request) through its global hooks ----------------------------- */

static int64_t cjson_calls, cjson_fail_at, cjson_live;

static void* cjson_counting_malloc(size_t size) {
  if (++cjson_calls == cjson_fail_at) return NULL;
  void* p = malloc(size);
  if (p) cjson_live++;
  return p;
}

static void cjson_counting_free(void* p) {
  if (p) cjson_live--;
  free(p);
}

static void cjson_hooks_on(int64_t fail_at) {
  cjson_calls = 0, cjson_fail_at = fail_at, cjson_live = 0;
  cJSON_Hooks hooks = {cjson_counting_malloc, cjson_counting_free};
  cJSON_InitHooks(&hooks);
}

static void cjson_hooks_off(void) { cJSON_InitHooks(NULL); }

/* --- parsing helpers ------------------------------------------------------------------------------------------- */

/* Parses `size` bytes copied into a buffer of exactly that size (no terminator, so ASan sees any read past it),
 * expecting `detail`; the message must hold `where` (or "tuning records" when where is NULL) and every fragment
 * (NULL-terminated list). Nothing may stay allocated, neither from qd's allocator nor from cJSON's. */
static void expect_parse_fails_v(const char* text, size_t size, const char* where, qd_error_detail_t detail,
                                 va_list fragments) {
  char* exact = malloc(size ? size : 1);
  memcpy(exact, text, size);
  qd_test_allocator_t ta;
  qd_test_allocator_init(&ta, qd_allocator_system(), 0);
  qd_tuning_t sentinel, *t = &sentinel; /* parse must set it to NULL */
  cjson_hooks_on(0);
  qd_status_t s = qd_tuning_parse(exact, size, where, qd_test_allocator_as_allocator(&ta), &t);
  int64_t cjson_left = cjson_live;
  cjson_hooks_off();
  free(exact);
  char msg[2048];
  qd_status_format(s, msg, sizeof msg);
  qd_error_detail_t got = qd_status_detail(s);
  qd_status_free(s);
  printf("  %-20s %s\n", qd_error_detail_name(got), msg);
  ck_assert_msg(s != QD_OK, "parsing %.*s succeeded; expected %s", (int)(size > 200 ? 200 : size), text,
                qd_error_detail_name(detail));
  ck_assert_msg(got == detail, "expected %s, got %s: %s", qd_error_detail_name(detail), qd_error_detail_name(got), msg);
  ck_assert_ptr_null(t);
  ck_assert_int_eq(ta.live_count, 0);
  ck_assert_int_eq(ta.live_bytes, 0);
  ck_assert_msg(cjson_left == 0, "%lld cJSON allocations left after a failed parse", (long long)cjson_left);
  const char* w = where ? where : "tuning records";
  ck_assert_msg(strstr(msg, w) != NULL, "'%s' is not in: %s", w, msg);
  for (const char* f = va_arg(fragments, const char*); f; f = va_arg(fragments, const char*))
    ck_assert_msg(strstr(msg, f) != NULL, "'%s' is not in: %s", f, msg);
}

static void expect_parse_fails(const char* text, size_t size, qd_error_detail_t detail, ...) {
  va_list ap;
  va_start(ap, detail);
  expect_parse_fails_v(text, size, WHERE, detail, ap);
  va_end(ap);
}

static void expect_not_json(const char* text) { expect_parse_fails(text, strlen(text), QD_E_PLAN_CONTENT_JSON, NULL); }

/* The base document (2 records of every kind), with the value at `path` ("gemms.1.m", "report.0.untuned_ms";
 * numbers index arrays) replaced by the JSON `value`, or removed when value is NULL. */
static char* mutated(const char* path, const char* value) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  cJSON* root = qd_tuning_to_json(t);
  ck_assert_ptr_nonnull(root);
  qd_tuning_destroy(t);
  char buf[256];
  snprintf(buf, sizeof buf, "%s", path);
  cJSON* parent = root;
  char* seg = buf;
  for (char* dot; (dot = strchr(seg, '.')) != NULL; seg = dot + 1) {
    *dot = 0;
    parent = cJSON_IsArray(parent) ? cJSON_GetArrayItem(parent, atoi(seg)) : cJSON_GetObjectItemCaseSensitive(parent, seg);
    ck_assert_msg(parent != NULL, "no '%s' in the base document (%s)", seg, path);
  }
  if (cJSON_IsArray(parent)) {
    int i = atoi(seg);
    ck_assert_ptr_nonnull(cJSON_GetArrayItem(parent, i));
    if (value) {
      cJSON* v = cJSON_Parse(value);
      ck_assert_msg(v != NULL, "bad test value %s", value);
      cJSON_ReplaceItemInArray(parent, i, v);
    } else {
      cJSON_DeleteItemFromArray(parent, i);
    }
  } else {
    ck_assert_msg(value || cJSON_GetObjectItemCaseSensitive(parent, seg), "no '%s' to remove (%s)", seg, path);
    cJSON_DeleteItemFromObjectCaseSensitive(parent, seg);
    if (value) {
      cJSON* v = cJSON_Parse(value);
      ck_assert_msg(v != NULL, "bad test value %s", value);
      cJSON_AddItemToObject(parent, seg, v);
    }
  }
  char* text = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return text;
}

/* The base document with `path` set to `value` (NULL: removed) must fail with PLAN_CONTENT_FIELD, naming the
 * fragments given (the list's context such as "gemms[1]", the field in quotes, the value shown). */
#define EXPECT_FIELD(path, value, ...)                                                     \
  do {                                                                                     \
    char* text_ = mutated(path, value);                                                    \
    expect_parse_fails(text_, strlen(text_), QD_E_PLAN_CONTENT_FIELD, __VA_ARGS__, NULL);  \
    cJSON_free(text_);                                                                     \
  } while (0)

/* A whole hand-written document that must fail with PLAN_CONTENT_FIELD. */
#define EXPECT_FIELD_TEXT(text, ...) expect_parse_fails(text, strlen(text), QD_E_PLAN_CONTENT_FIELD, __VA_ARGS__, NULL)

/* --- tests ----------------------------------------------------------------------------------------------------- */

/* qd_tuning_to_json, printed and parsed back, gives every record field for field (the algorithm's 64 bytes
 * included), and the lookups find each record by its key. */
START_TEST(round_trip_keeps_every_field) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 1);
  ck_assert_int_eq(t->gemm_count, 2);
  ck_assert_int_eq(t->kernel_count, 2);
  ck_assert_int_eq(t->report_count, 1);
  char* text = to_text(t);
  qd_tuning_t* back;
  QD_ASSERT_OK(qd_tuning_parse(text, strlen(text), WHERE, qd_allocator_system(), &back));
  ck_assert_str_eq(back->mode, "max");
  ck_assert_str_eq(back->device, "NVIDIA H200");
  ck_assert_str_eq(back->arch, "sm_90");
  ck_assert_int_eq(back->driver, 12080);
  ck_assert_int_eq(back->cublaslt, 120903);
  char why[128];
  ck_assert_msg(same_tuning(t, back, why, sizeof why), "the round trip changed the records: %s", why);
  for (int i = 0; i < 2; i++) {
    const qd_tuning_gemm_t want = make_gemm(i);
    const qd_tuning_gemm_t* g = &back->gemms[i];
    ck_assert_int_eq(g->m, want.m);
    ck_assert_int_eq(g->n, want.n);
    ck_assert_int_eq(g->k, want.k);
    ck_assert_int_eq(g->epilogue, want.epilogue);
    ck_assert_int_eq(g->batch, want.batch);
    ck_assert_int_eq(g->w_stride, want.w_stride);
    ck_assert_int_eq(g->y_stride, want.y_stride);
    ck_assert_int_eq(g->bias_stride, want.bias_stride);
    ck_assert_int_eq(g->w_ld, want.w_ld);
    ck_assert_int_eq(g->y_ld, want.y_ld);
    ck_assert(g->accumulate == want.accumulate);
    ck_assert_mem_eq(g->algo, want.algo, QD_TUNING_ALGO_BYTES);
    ck_assert_uint_eq(g->workspace, want.workspace);
    ck_assert_int_eq(g->candidates, want.candidates);
    ck_assert(g->heuristic_us == want.heuristic_us);
    ck_assert(g->tuned_us == want.tuned_us);
    ck_assert_ptr_eq(qd_tuning_find_gemm(back, &want), g);

    const qd_tuning_kernel_t kw = make_kernel(i);
    const qd_tuning_kernel_t* k = qd_tuning_find_kernel(back, kw.site, kw.shape);
    ck_assert_ptr_eq(k, &back->kernels[i]);
    ck_assert_str_eq(k->site, kw.site);
    ck_assert_str_eq(k->shape, kw.shape);
    ck_assert_int_eq(k->define_count, kw.define_count);
    for (int d = 0; d < kw.define_count; d++) {
      ck_assert_str_eq(k->defines[d].name, kw.defines[d].name);
      ck_assert_int_eq(k->defines[d].value, kw.defines[d].value);
    }
    ck_assert_int_eq(k->candidates, kw.candidates);
    ck_assert(k->default_us == kw.default_us);
    ck_assert(k->tuned_us == kw.tuned_us);
  }
  ck_assert_str_eq(back->kernels[0].defines[0].name, "CONV_WARPS_M");
  ck_assert_int_eq(back->kernels[0].defines[0].value, 4);
  ck_assert_str_eq(back->kernels[0].defines[1].name, "CONV_BK");
  ck_assert_int_eq(back->kernels[0].defines[1].value, 16);
  const qd_tuning_report_t rw = make_report(0);
  ck_assert(same_report(&back->reports[0], &rw));
  /* the site of one record with the shape of the other: no record */
  ck_assert_ptr_null(qd_tuning_find_kernel(back, back->kernels[0].site, back->kernels[1].shape));
  ck_assert_ptr_null(qd_tuning_find_kernel(back, "conv2d.cu:qd_conv2d", back->kernels[0].shape));
  /* printed again, the parsed records give the same text */
  char* again = to_text(back);
  ck_assert_str_eq(again, text);
  cJSON_free(again);
  cJSON_free(text);
  qd_tuning_destroy(back);
  qd_tuning_destroy(t);
  qd_tuning_destroy(NULL);
}
END_TEST

/* A GEMM is found only by its whole descriptor: a key differing in any one of the 11 descriptor fields finds
 * nothing, while the algorithm, workspace, candidates and timings are not part of the key. NULL record sets find
 * nothing. */
START_TEST(lookups_need_the_exact_key) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 1);
  for (int i = 0; i < 2; i++) {
    const qd_tuning_gemm_t base = make_gemm(i);
    qd_tuning_gemm_t key = base;
    memset(key.algo, 0xee, sizeof key.algo);
    key.workspace = 7, key.candidates = 1, key.heuristic_us = 1e6, key.tuned_us = 5;
    ck_assert_ptr_eq(qd_tuning_find_gemm(t, &key), &t->gemms[i]);
    static const char* const fields[] = {"m", "n", "k", "epilogue", "batch", "w_stride", "y_stride", "bias_stride",
                                         "w_ld", "y_ld", "accumulate"};
    for (int f = 0; f < 11; f++) {
      key = base;
      switch (f) {
        case 0: key.m++; break;
        case 1: key.n++; break;
        case 2: key.k++; break;
        case 3: key.epilogue = (key.epilogue + 1) % 3; break;
        case 4: key.batch++; break;
        case 5: key.w_stride++; break;
        case 6: key.y_stride++; break;
        case 7: key.bias_stride++; break;
        case 8: key.w_ld++; break;
        case 9: key.y_ld++; break;
        default: key.accumulate = !key.accumulate; break;
      }
      ck_assert_msg(qd_tuning_find_gemm(t, &key) == NULL, "gemms[%d] found with another '%s'", i, fields[f]);
    }
  }
  const qd_tuning_gemm_t g0 = make_gemm(0);
  ck_assert_ptr_null(qd_tuning_find_gemm(NULL, &g0));
  ck_assert_ptr_null(qd_tuning_find_kernel(NULL, "conv2d.cu:qd_conv2d", "1x1"));
  const qd_tuning_kernel_t k0 = make_kernel(0);
  ck_assert_ptr_null(qd_tuning_find_kernel(NULL, k0.site, k0.shape));
  ck_assert_ptr_nonnull(qd_tuning_find_kernel(t, k0.site, k0.shape));
  /* an empty record set finds nothing either */
  qd_tuning_t* empty;
  QD_ASSERT_OK(qd_tuning_create(qd_allocator_system(), &empty));
  ck_assert_ptr_null(qd_tuning_find_gemm(empty, &g0));
  ck_assert_ptr_null(qd_tuning_find_kernel(empty, k0.site, k0.shape));
  qd_tuning_destroy(empty);
  qd_tuning_destroy(t);
}
END_TEST

/* Adding a record whose key is already there replaces that record: the count stays and the value is the new one
 * (GEMMs keyed by descriptor, kernels by site and shape, reports by width, height and batch). */
START_TEST(add_replaces_a_record_with_the_same_key) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  qd_tuning_gemm_t g = make_gemm(1);
  memset(g.algo, 0x5a, sizeof g.algo);
  g.tuned_us = 1.25, g.candidates = 99, g.workspace = 123;
  QD_ASSERT_OK(qd_tuning_add_gemm(t, &g));
  ck_assert_int_eq(t->gemm_count, 2);
  const qd_tuning_gemm_t* found = qd_tuning_find_gemm(t, &g);
  ck_assert_ptr_eq(found, &t->gemms[1]);
  ck_assert(same_gemm(found, &g));
  const qd_tuning_gemm_t g0 = make_gemm(0);
  ck_assert(same_gemm(&t->gemms[0], &g0)); /* the other one untouched */

  qd_tuning_kernel_t k = make_kernel(0);
  k.define_count = 1;
  snprintf(k.defines[0].name, sizeof k.defines[0].name, "CONV_BN");
  k.defines[0].value = 128;
  k.tuned_us = 500;
  QD_ASSERT_OK(qd_tuning_add_kernel(t, &k));
  ck_assert_int_eq(t->kernel_count, 2);
  const qd_tuning_kernel_t* kf = qd_tuning_find_kernel(t, k.site, k.shape);
  ck_assert_ptr_eq(kf, &t->kernels[0]);
  ck_assert_int_eq(kf->define_count, 1);
  ck_assert_str_eq(kf->defines[0].name, "CONV_BN");
  ck_assert_int_eq(kf->defines[0].value, 128);
  ck_assert(kf->tuned_us == 500);
  /* the same site at another shape is another record */
  snprintf(k.shape, sizeof k.shape, "1x512x64x64<1x512x64x64");
  QD_ASSERT_OK(qd_tuning_add_kernel(t, &k));
  ck_assert_int_eq(t->kernel_count, 3);

  qd_tuning_report_t r = make_report(1);
  r.tuned_ms[2] = 42;
  QD_ASSERT_OK(qd_tuning_add_report(t, &r));
  ck_assert_int_eq(t->report_count, 2);
  ck_assert(same_report(&t->reports[1], &r));
  r.batch = 2; /* another batch: another report */
  QD_ASSERT_OK(qd_tuning_add_report(t, &r));
  ck_assert_int_eq(t->report_count, 3);
  qd_tuning_destroy(t);
}
END_TEST

/* Many records grow the arrays past their first size; every record stays findable with its own value, and the
 * whole set survives a round trip. */
START_TEST(many_records_grow_the_arrays) {
  qd_tuning_t* t;
  QD_ASSERT_OK(qd_tuning_create(qd_allocator_system(), &t));
  snprintf(t->mode, sizeof t->mode, "default");
  for (int i = 0; i < 100; i++) {
    qd_tuning_gemm_t g = make_gemm(i % 2);
    g.m = 1 + i;
    memset(g.algo, i, sizeof g.algo);
    QD_ASSERT_OK(qd_tuning_add_gemm(t, &g));
    qd_tuning_kernel_t k = make_kernel(i % 2);
    snprintf(k.shape, sizeof k.shape, "1x%d<1x%d", i, i);
    k.candidates = i;
    QD_ASSERT_OK(qd_tuning_add_kernel(t, &k));
    qd_tuning_report_t r = make_report(0);
    r.width = 16 * (i + 1);
    QD_ASSERT_OK(qd_tuning_add_report(t, &r));
  }
  ck_assert_int_eq(t->gemm_count, 100);
  ck_assert_int_eq(t->kernel_count, 100);
  ck_assert_int_eq(t->report_count, 100);
  ck_assert_int_ge(t->gemm_capacity, 100);
  ck_assert_int_ge(t->kernel_capacity, 100);
  ck_assert_int_ge(t->report_capacity, 100);
  for (int i = 0; i < 100; i++) {
    qd_tuning_gemm_t key = make_gemm(i % 2);
    key.m = 1 + i;
    const qd_tuning_gemm_t* g = qd_tuning_find_gemm(t, &key);
    ck_assert_ptr_eq(g, &t->gemms[i]);
    ck_assert_uint_eq(g->algo[0], (unsigned)i);
    ck_assert_uint_eq(g->algo[63], (unsigned)i);
    char shape[32];
    snprintf(shape, sizeof shape, "1x%d<1x%d", i, i);
    const qd_tuning_kernel_t* k = qd_tuning_find_kernel(t, make_kernel(i % 2).site, shape);
    ck_assert_ptr_eq(k, &t->kernels[i]);
    ck_assert_int_eq(k->candidates, i);
    ck_assert_int_eq(t->reports[i].width, 16 * (i + 1));
  }
  char* text = to_text(t);
  qd_tuning_t* back;
  QD_ASSERT_OK(qd_tuning_parse(text, strlen(text), WHERE, qd_allocator_system(), &back));
  char why[128];
  ck_assert_msg(same_tuning(t, back, why, sizeof why), "%s", why);
  cJSON_free(text);
  qd_tuning_destroy(back);
  qd_tuning_destroy(t);
}
END_TEST

/* A kernel record with more than 8 defines, a negative count, or an unterminated string is INVALID_ARGUMENT and
 * adds nothing. */
START_TEST(add_kernel_refuses_bad_records) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 1);
  qd_tuning_kernel_t k = make_kernel(0);
  snprintf(k.shape, sizeof k.shape, "2x2");
  k.define_count = QD_TUNING_MAX_DEFINES + 1;
  QD_ASSERT_DETAIL(qd_tuning_add_kernel(t, &k), QD_E_INVALID_ARGUMENT);
  k.define_count = -1;
  QD_ASSERT_DETAIL(qd_tuning_add_kernel(t, &k), QD_E_INVALID_ARGUMENT);
  k.define_count = 0;
  memset(k.site, 'a', sizeof k.site);
  QD_ASSERT_DETAIL(qd_tuning_add_kernel(t, &k), QD_E_INVALID_ARGUMENT);
  k = make_kernel(0);
  memset(k.shape, '1', sizeof k.shape);
  QD_ASSERT_DETAIL(qd_tuning_add_kernel(t, &k), QD_E_INVALID_ARGUMENT);
  ck_assert_int_eq(t->kernel_count, 2);
  /* the refused record with the existing key did not replace the existing one */
  const qd_tuning_kernel_t k0 = make_kernel(0);
  k = k0;
  k.define_count = QD_TUNING_MAX_DEFINES + 1;
  QD_ASSERT_DETAIL(qd_tuning_add_kernel(t, &k), QD_E_INVALID_ARGUMENT);
  ck_assert(same_kernel(qd_tuning_find_kernel(t, k0.site, k0.shape), &k0));
  qd_tuning_destroy(t);
}
END_TEST

/* Text that is not JSON, empty text, a size of 0, and every truncation of a valid document are PLAN_CONTENT_JSON
 * naming `where`; each buffer is exactly `size` bytes without a terminator, so ASan catches a read past it. */
START_TEST(text_that_is_not_json_is_plan_content_json) {
  expect_not_json("not json");
  expect_not_json("{\"tuning_version\": 1,");
  expect_not_json("{\"tuning_version\": 1,}");
  expect_not_json("nul");
  expect_not_json("");
  expect_not_json("   ");
  expect_parse_fails("{}", 0, QD_E_PLAN_CONTENT_JSON, NULL); /* a size of 0 */
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  char* text = to_text(t);
  qd_tuning_destroy(t);
  size_t n = strlen(text);
  for (size_t cut = 0; cut < n; cut++) expect_parse_fails(text, cut, QD_E_PLAN_CONTENT_JSON, NULL);
  cJSON_free(text);
}
END_TEST

/* A valid document in a buffer of exactly its length (no NUL after it) parses to the same records. */
START_TEST(text_without_a_terminator_parses) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  char* text = to_text(t);
  size_t n = strlen(text);
  char* exact = malloc(n);
  memcpy(exact, text, n);
  qd_tuning_t* back;
  QD_ASSERT_OK(qd_tuning_parse(exact, n, WHERE, qd_allocator_system(), &back));
  char why[128];
  ck_assert_msg(same_tuning(t, back, why, sizeof why), "%s", why);
  qd_tuning_destroy(back);
  /* the same text followed by bytes past `size` that are not JSON: only `size` bytes are read */
  char* longer = malloc(n + 8);
  memcpy(longer, text, n);
  memcpy(longer + n, "garbage!", 8);
  QD_ASSERT_OK(qd_tuning_parse(longer, n, WHERE, qd_allocator_system(), &back));
  ck_assert_msg(same_tuning(t, back, why, sizeof why), "%s", why);
  qd_tuning_destroy(back);
  free(longer);
  free(exact);
  cJSON_free(text);
  qd_tuning_destroy(t);
}
END_TEST

/* The document's own fields: the root must be an object with tuning_version 1 (the integer), mode "default" or
 * "max", device and arch printable and short enough, driver and cublaslt integers from 0, and the three lists
 * arrays of objects. Each failure is PLAN_CONTENT_FIELD naming `where`, the field and its value. */
START_TEST(hostile_root_fields_are_named) {
  EXPECT_FIELD_TEXT("[]", "(the section)", "[]");
  EXPECT_FIELD_TEXT("5", "(the section)", "5");
  EXPECT_FIELD_TEXT("\"tuning\"", "(the section)");
  EXPECT_FIELD_TEXT("{}", "'tuning_version'", "missing");
  EXPECT_FIELD("tuning_version", NULL, "'tuning_version'", "missing");
  EXPECT_FIELD("tuning_version", "0", "'tuning_version'", "is 0");
  EXPECT_FIELD("tuning_version", "2", "'tuning_version'", "is 2");
  EXPECT_FIELD("tuning_version", "1.5", "'tuning_version'", "1.5");
  EXPECT_FIELD("tuning_version", "\"1\"", "'tuning_version'", "\"1\"");
  EXPECT_FIELD("mode", "\"fast\"", "'mode'", "\"fast\"");
  EXPECT_FIELD("mode", NULL, "'mode'", "missing");
  char device[140];
  snprintf(device, sizeof device, "\"%096d\"", 0); /* 96 bytes: one too many */
  EXPECT_FIELD("device", device, "'device'", "...");
  snprintf(device, sizeof device, "\"%095d\"", 0); /* 95 bytes: accepted */
  char* ok = mutated("device", device);
  qd_tuning_t* t;
  QD_ASSERT_OK(qd_tuning_parse(ok, strlen(ok), WHERE, qd_allocator_system(), &t));
  ck_assert_uint_eq(strlen(t->device), 95);
  qd_tuning_destroy(t);
  cJSON_free(ok);
  EXPECT_FIELD("arch", "\"sm_\\u000190\"", "'arch'");
  EXPECT_FIELD("arch", "\"sm\\t90\"", "'arch'");
  EXPECT_FIELD("arch", "\"sm_9\\u00e9\"", "'arch'"); /* not ASCII */
  EXPECT_FIELD("arch", "90", "'arch'", "90");
  EXPECT_FIELD("driver", "-1", "'driver'", "-1");
  EXPECT_FIELD("driver", "1e10", "'driver'");
  EXPECT_FIELD("cublaslt", "null", "'cublaslt'", "null");
  EXPECT_FIELD("gemms", "{}", "'gemms'", "{}");
  EXPECT_FIELD("gemms", NULL, "'gemms'", "missing");
  EXPECT_FIELD("kernels", "\"x\"", "'kernels'");
  EXPECT_FIELD("report", "7", "'report'", "7");
  EXPECT_FIELD("gemms.1", "5", "gemms[1]", "(the entry)", "5");
  EXPECT_FIELD("kernels.0", "[]", "kernels[0]", "(the entry)");
  EXPECT_FIELD("report.1", "true", "report[1]", "(the entry)");
}
END_TEST

/* A GEMM record's fields: integers in range (m 0, 1.5, negative or 1e300 are not), epilogue 0..2, batch from 1,
 * accumulate a boolean, algo exactly 128 lower-case hex digits, times non-negative numbers. */
START_TEST(hostile_gemm_fields_are_named) {
  EXPECT_FIELD("gemms.0.m", "0", "gemms[0]", "'m'", "is 0");
  EXPECT_FIELD("gemms.0.m", "1.5", "gemms[0]", "'m'", "1.5");
  EXPECT_FIELD("gemms.0.m", "-4096", "gemms[0]", "'m'", "-4096");
  EXPECT_FIELD("gemms.0.m", "1e300", "gemms[0]", "'m'");
  EXPECT_FIELD("gemms.0.m", "-1e300", "gemms[0]", "'m'");
  EXPECT_FIELD("gemms.0.m", "9223372036854775808", "gemms[0]", "'m'");
  EXPECT_FIELD("gemms.0.m", NULL, "gemms[0]", "'m'", "missing");
  EXPECT_FIELD("gemms.1.n", "\"64\"", "gemms[1]", "'n'", "\"64\"");
  EXPECT_FIELD("gemms.1.epilogue", "3", "gemms[1]", "'epilogue'", "is 3");
  EXPECT_FIELD("gemms.1.epilogue", "-1", "gemms[1]", "'epilogue'");
  EXPECT_FIELD("gemms.1.batch", "0", "gemms[1]", "'batch'", "is 0");
  EXPECT_FIELD("gemms.1.batch", "4097", "gemms[1]", "'batch'");
  EXPECT_FIELD("gemms.1.w_stride", "-8192", "gemms[1]", "'w_stride'");
  EXPECT_FIELD("gemms.1.y_ld", "0", "gemms[1]", "'y_ld'");
  EXPECT_FIELD("gemms.0.workspace", "-1", "gemms[0]", "'workspace'");
  EXPECT_FIELD("gemms.0.candidates", "4097", "gemms[0]", "'candidates'");
  EXPECT_FIELD("gemms.0.accumulate", "\"yes\"", "gemms[0]", "'accumulate'", "\"yes\"");
  EXPECT_FIELD("gemms.0.accumulate", "1", "gemms[0]", "'accumulate'");
  EXPECT_FIELD("gemms.0.accumulate", NULL, "gemms[0]", "'accumulate'", "missing");
  char algo[200];
  snprintf(algo, sizeof algo, "\"%0127d\"", 0); /* 127 digits */
  EXPECT_FIELD("gemms.0.algo", algo, "gemms[0]", "'algo'");
  snprintf(algo, sizeof algo, "\"%0129d\"", 0); /* 129 digits */
  EXPECT_FIELD("gemms.0.algo", algo, "gemms[0]", "'algo'");
  snprintf(algo, sizeof algo, "\"%0127dA\"", 0); /* upper-case hex */
  EXPECT_FIELD("gemms.0.algo", algo, "gemms[0]", "'algo'");
  snprintf(algo, sizeof algo, "\"%0120dg1234567\"", 0); /* a 'g' */
  EXPECT_FIELD("gemms.0.algo", algo, "gemms[0]", "'algo'");
  EXPECT_FIELD("gemms.0.algo", "12", "gemms[0]", "'algo'", "12");
  EXPECT_FIELD("gemms.0.algo", NULL, "gemms[0]", "'algo'", "missing");
  snprintf(algo, sizeof algo, "\"%0128d\"", 0); /* 128 zeros: accepted */
  char* ok = mutated("gemms.0.algo", algo);
  qd_tuning_t* t;
  QD_ASSERT_OK(qd_tuning_parse(ok, strlen(ok), WHERE, qd_allocator_system(), &t));
  static const uint8_t zeros[QD_TUNING_ALGO_BYTES];
  ck_assert_mem_eq(t->gemms[0].algo, zeros, sizeof zeros);
  qd_tuning_destroy(t);
  cJSON_free(ok);
  EXPECT_FIELD("gemms.1.heuristic_us", "-1", "gemms[1]", "'heuristic_us'", "-1");
  EXPECT_FIELD("gemms.1.heuristic_us", "\"x\"", "gemms[1]", "'heuristic_us'", "\"x\"");
  EXPECT_FIELD("gemms.1.tuned_us", "1e10", "gemms[1]", "'tuned_us'");
  EXPECT_FIELD("gemms.1.tuned_us", NULL, "gemms[1]", "'tuned_us'", "missing");
}
END_TEST

/* A kernel record's fields: site and shape printable and short enough, defines an object of at most 8 C
 * identifiers with int32 values. */
START_TEST(hostile_kernel_fields_are_named) {
  EXPECT_FIELD("kernels.1.defines",
               "{\"A\":1,\"B\":2,\"C\":3,\"D\":4,\"E\":5,\"F\":6,\"G\":7,\"H\":8,\"I\":9}", "kernels[1]", "'defines'");
  /* a bad define is named with its name, so the user sees which one */
  EXPECT_FIELD("kernels.0.defines", "{\"1X\":4}", "kernels[0]", "'defines.1X'");
  EXPECT_FIELD("kernels.0.defines", "{\"CONV-BK\":4}", "kernels[0]", "'defines.CONV-BK'");
  EXPECT_FIELD("kernels.0.defines", "{\"\":4}", "kernels[0]", "'defines.'");
  EXPECT_FIELD("kernels.0.defines", "{\"ABCDEFGHIJKLMNOPQRSTUVWXYZ_ABCDEF\":4}", "kernels[0]",
               "'defines.ABCDEFGHIJKLMNOPQRSTUVWXYZ_ABCDEF'");
  EXPECT_FIELD("kernels.0.defines", "{\"CONV_BK\":1.5}", "kernels[0]", "'defines.CONV_BK'", "1.5");
  EXPECT_FIELD("kernels.0.defines", "{\"CONV_BK\":\"16\"}", "kernels[0]", "'defines.CONV_BK'");
  EXPECT_FIELD("kernels.0.defines", "{\"CONV_BK\":3000000000}", "kernels[0]", "'defines.CONV_BK'");
  EXPECT_FIELD("kernels.0.defines", "[]", "kernels[0]", "'defines'", "[]");
  EXPECT_FIELD("kernels.0.defines", NULL, "kernels[0]", "'defines'", "missing");
  EXPECT_FIELD("kernels.0.site", NULL, "kernels[0]", "'site'", "missing");
  EXPECT_FIELD("kernels.0.site", "3", "kernels[0]", "'site'", "3");
  char site[400];
  snprintf(site, sizeof site, "\"%0256d\"", 0); /* 256 bytes: one too many */
  EXPECT_FIELD("kernels.0.site", site, "kernels[0]", "'site'");
  EXPECT_FIELD("kernels.1.shape", "\"1x2\\n\"", "kernels[1]", "'shape'");
  EXPECT_FIELD("kernels.1.candidates", "-1", "kernels[1]", "'candidates'");
  EXPECT_FIELD("kernels.1.default_us", "-0.5", "kernels[1]", "'default_us'");
}
END_TEST

/* A report's fields: sizes in range and exactly 6 non-negative times per list. */
START_TEST(hostile_report_fields_are_named) {
  EXPECT_FIELD("report.0.untuned_ms", "[1,2,3,4,5]", "report[0]", "'untuned_ms'", "[1,2,3,4,5]");
  EXPECT_FIELD("report.0.untuned_ms", "[1,2,3,4,5,6,7]", "report[0]", "'untuned_ms'");
  EXPECT_FIELD("report.1.untuned_ms", "[1,2,-3,4,5,6]", "report[1]", "'untuned_ms'", "-3");
  EXPECT_FIELD("report.1.tuned_ms", "[1,2,3,4,5,\"6\"]", "report[1]", "'tuned_ms'");
  EXPECT_FIELD("report.1.tuned_ms", NULL, "report[1]", "'tuned_ms'", "missing");
  EXPECT_FIELD("report.0.width", "0", "report[0]", "'width'", "is 0");
  EXPECT_FIELD("report.0.height", "1048577", "report[0]", "'height'");
  EXPECT_FIELD("report.0.batch", "2.5", "report[0]", "'batch'", "2.5");
}
END_TEST

/* Every allocation of create, add and parse may fail: the call is OUT_OF_MEMORY, a failed add keeps the records
 * there were, and once destroyed nothing is left allocated. */
START_TEST(allocation_failures_leak_nothing) {
  /* parse: a document whose arrays grow twice (40 GEMMs) */
  qd_tuning_t* big = make_tuning(qd_allocator_system(), 2);
  for (int i = 0; i < 38; i++) {
    qd_tuning_gemm_t g = make_gemm(0);
    g.n = 1 + i;
    QD_ASSERT_OK(qd_tuning_add_gemm(big, &g));
  }
  char* text = to_text(big);
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t ta;
    qd_test_allocator_init(&ta, qd_allocator_system(), n);
    qd_tuning_t* t = NULL;
    qd_status_t s = qd_tuning_parse(text, strlen(text), WHERE, qd_test_allocator_as_allocator(&ta), &t);
    if (!s) {
      ck_assert_uint_eq(ta.failures, 0);
      char why[128];
      ck_assert_msg(same_tuning(big, t, why, sizeof why), "%s", why);
      qd_tuning_destroy(t);
      ck_assert_int_eq(ta.live_count, 0);
      ck_assert_int_eq(ta.live_bytes, 0);
      ck_assert_uint_gt(n, 3); /* the set and three arrays, one of them grown twice */
      break;
    }
    ck_assert_int_eq(qd_status_detail(s), QD_E_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(ta.live_count, 0);
    ck_assert_int_eq(ta.live_bytes, 0);
    ck_assert_uint_lt(n, 50);
  }
  cJSON_free(text);
  qd_tuning_destroy(big);

  /* create and add */
  for (uint64_t n = 1;; n++) {
    qd_test_allocator_t ta;
    qd_test_allocator_init(&ta, qd_allocator_system(), n);
    qd_tuning_t sentinel, *t = &sentinel;
    qd_status_t s = qd_tuning_create(qd_test_allocator_as_allocator(&ta), &t);
    if (s) ck_assert_ptr_null(t);
    int added = 0;
    for (int i = 0; !s && i < 20; i++) {
      qd_tuning_gemm_t g = make_gemm(0);
      g.m = 1 + i;
      qd_tuning_kernel_t k = make_kernel(1);
      k.candidates = i;
      snprintf(k.shape, sizeof k.shape, "%d", i);
      qd_tuning_report_t r = make_report(0);
      r.batch = 1 + i;
      int32_t want[3] = {added, added, added}; /* the counts after a failed add of the gemm, kernel, report */
      if ((s = qd_tuning_add_gemm(t, &g)) == QD_OK) {
        want[0]++;
        if ((s = qd_tuning_add_kernel(t, &k)) == QD_OK) {
          want[1]++;
          s = qd_tuning_add_report(t, &r);
        }
      }
      if (!s) {
        added++;
        continue;
      }
      ck_assert_int_eq(t->gemm_count, want[0]);
      ck_assert_int_eq(t->kernel_count, want[1]);
      ck_assert_int_eq(t->report_count, want[2]);
      for (int j = 0; j < added; j++) { /* the records there were are intact */
        g = make_gemm(0);
        g.m = 1 + j;
        ck_assert_ptr_eq(qd_tuning_find_gemm(t, &g), &t->gemms[j]);
        ck_assert_int_eq(t->kernels[j].candidates, j);
        ck_assert_int_eq(t->reports[j].batch, 1 + j);
      }
    }
    qd_tuning_destroy(t);
    ck_assert_int_eq(ta.live_count, 0);
    ck_assert_int_eq(ta.live_bytes, 0);
    if (!s) {
      ck_assert_int_eq(added, 20);
      break;
    }
    ck_assert_int_eq(qd_status_detail(s), QD_E_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_uint_lt(n, 50);
  }
}
END_TEST

/* qd_tuning_to_json is documented to return NULL when out of memory. With cJSON's n-th allocation failing (for
 * every n), it must return either NULL or a document that parses back to exactly the records: never a partial one
 * that drops a field, a define or a whole record. */
START_TEST(to_json_out_of_memory_is_null_not_a_partial_document) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  char first_unparsable[1024] = "", first_other[1024] = "";
  int unparsable = 0, other = 0, nulls = 0;
  int64_t n;
  for (n = 1;; n++) {
    cjson_hooks_on(n);
    cJSON* j = qd_tuning_to_json(t);
    bool failed_one = cjson_calls >= n;
    cjson_fail_at = 0;
    if (!j) {
      nulls++;
    } else {
      char* text = cJSON_PrintUnformatted(j);
      cJSON_Delete(j);
      ck_assert_ptr_nonnull(text);
      qd_tuning_t* back = NULL;
      qd_status_t s = qd_tuning_parse(text, strlen(text), WHERE, qd_allocator_system(), &back);
      char why[512];
      if (s) {
        qd_status_format(s, why, sizeof why);
        qd_status_free(s);
        if (!unparsable++)
          snprintf(first_unparsable, sizeof first_unparsable, "#%lld: %s", (long long)n, why);
      } else {
        if (!same_tuning(t, back, why, sizeof why) && !other++)
          snprintf(first_other, sizeof first_other, "#%lld: %s", (long long)n, why);
        qd_tuning_destroy(back);
      }
      cJSON_free(text);
    }
    cjson_hooks_off();
    if (!failed_one) break; /* this n was past the last allocation: the whole document was built */
    ck_assert_int_lt(n, 100000);
  }
  printf("  qd_tuning_to_json makes %lld cJSON allocations; failing each in turn: %d NULL, %d documents that do not "
         "parse (first %s), %d that parse to other records (first %s)\n", (long long)(n - 1), nulls, unparsable,
         first_unparsable, other, first_other);
  qd_tuning_destroy(t);
  ck_assert_msg(unparsable + other == 0, "qd_tuning_to_json returned a partial document instead of NULL for %d of "
                "%lld failing cJSON allocations: %d do not parse (the first, allocation %s), %d parse silently to "
                "other records (the first, allocation %s)", unparsable + other, (long long)(n - 1), unparsable,
                first_unparsable, other, first_other);
}
END_TEST

/* qd_tuning_to_json frees everything it made when one of cJSON's allocations fails. */
START_TEST(to_json_out_of_memory_leaks_nothing) {
  qd_tuning_t* t = make_tuning(qd_allocator_system(), 2);
  int64_t first_leak = 0, leaked = 0, n;
  int leaks = 0;
  for (n = 1;; n++) {
    cjson_hooks_on(n);
    cJSON* j = qd_tuning_to_json(t);
    bool failed_one = cjson_calls >= n;
    cJSON_Delete(j);
    int64_t left = cjson_live;
    cjson_hooks_off();
    if (left && !leaks++) first_leak = n, leaked = left;
    if (!failed_one) break;
    ck_assert_int_lt(n, 100000);
  }
  qd_tuning_destroy(t);
  ck_assert_msg(leaks == 0, "qd_tuning_to_json leaked cJSON allocations when one failed, for %d of %lld failing "
                "allocations; the first: allocation #%lld failing left %lld allocations", leaks, (long long)(n - 1),
                (long long)first_leak, (long long)leaked);
}
END_TEST

/* `where` may be NULL (parse then says "tuning records"): in every error, including text that is not JSON. */
START_TEST(a_null_where_is_named_tuning_records) {
  qd_tuning_t sentinel, *t = &sentinel;
  qd_status_t s = qd_tuning_parse("[]", 2, NULL, qd_allocator_system(), &t);
  char msg[2048];
  qd_status_format(s, msg, sizeof msg);
  ck_assert_int_eq(qd_status_detail(s), QD_E_PLAN_CONTENT_FIELD);
  qd_status_free(s);
  ck_assert_ptr_null(t);
  ck_assert_msg(strstr(msg, "tuning records") != NULL, "%s", msg);
  s = qd_tuning_parse("not json", 8, NULL, qd_allocator_system(), &t);
  qd_status_format(s, msg, sizeof msg);
  ck_assert_int_eq(qd_status_detail(s), QD_E_PLAN_CONTENT_JSON);
  qd_status_free(s);
  ck_assert_ptr_null(t);
  ck_assert_msg(strstr(msg, "tuning records") != NULL && strstr(msg, "(null)") == NULL,
                "with where NULL, the not-JSON error passes NULL to %%s: %s", msg);
}
END_TEST

static Suite* tuning_suite(void) {
  Suite* s = suite_create("tuning");
  TCase* tc = tcase_create("records");
  tcase_add_test(tc, round_trip_keeps_every_field);
  tcase_add_test(tc, lookups_need_the_exact_key);
  tcase_add_test(tc, add_replaces_a_record_with_the_same_key);
  tcase_add_test(tc, many_records_grow_the_arrays);
  tcase_add_test(tc, add_kernel_refuses_bad_records);
  suite_add_tcase(s, tc);
  TCase* parse = tcase_create("parse");
  tcase_add_test(parse, text_that_is_not_json_is_plan_content_json);
  tcase_add_test(parse, text_without_a_terminator_parses);
  tcase_add_test(parse, hostile_root_fields_are_named);
  tcase_add_test(parse, hostile_gemm_fields_are_named);
  tcase_add_test(parse, hostile_kernel_fields_are_named);
  tcase_add_test(parse, hostile_report_fields_are_named);
  tcase_add_test(parse, a_null_where_is_named_tuning_records);
  suite_add_tcase(s, parse);
  TCase* oom = tcase_create("out_of_memory");
  tcase_add_test(oom, allocation_failures_leak_nothing);
  tcase_add_test(oom, to_json_out_of_memory_is_null_not_a_partial_document);
  tcase_add_test(oom, to_json_out_of_memory_leaks_nothing);
  suite_add_tcase(s, oom);
  return s;
}

QD_TEST_MAIN(tuning_suite)
