/* NF4 against bitsandbytes itself (tests/data/golden/nf4_cases.safetensors, made by tools/golden/nf4.py with
 * bitsandbytes on the CPU): packed codes, absmax, nested statistics and offset byte for byte; dequantized values
 * bit for bit in the input's dtype. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/nf4.h"
#include "qd/dtype.h"
#include "qd/safetensors.h"
#include "qd_test.h"

static const qd_tensor_info_t* need(const qd_safetensors_t* st, const char* c, const char* suffix) {
  char name[256];
  snprintf(name, sizeof name, "%s.%s", c, suffix);
  const qd_tensor_info_t* t = qd_safetensors_find(st, name);
  ck_assert_msg(t != NULL, "fixture lacks %s", name);
  return t;
}

static void assert_bytes(const char* what, const char* c, const void* got, const void* want, size_t n) {
  if (memcmp(got, want, n) == 0) return;
  const unsigned char *g = got, *w = want;
  size_t i = 0;
  while (g[i] == w[i]) i++;
  ck_abort_msg("%s: %s differs at byte %zu (%02x, bitsandbytes %02x)", c, what, i, g[i], w[i]);
}

START_TEST(tables_match_bitsandbytes) {
  char path[512];
  snprintf(path, sizeof path, "%s/golden/nf4_cases.safetensors", qd_test_data_dir());
  qd_safetensors_t* st;
  QD_ASSERT_OK(qd_safetensors_open(path, qd_allocator_system(), &st));
  const qd_tensor_info_t* qm = qd_safetensors_find(st, "f32_n64_b64.quant_map");
  ck_assert_ptr_nonnull(qm);
  assert_bytes("NF4 code book", "quant_map", qd_nf4_code, qm->data, 64);
  /* The nested 8-bit map of any double-quantized case. */
  const qd_tensor_info_t* nm = NULL;
  for (size_t i = 0; i < qd_safetensors_tensor_count(st) && !nm; i++)
    if (strstr(qd_safetensors_tensor(st, i)->name, ".nested_quant_map")) nm = qd_safetensors_tensor(st, i);
  ck_assert_ptr_nonnull(nm);
  assert_bytes("dynamic map", nm->name, qd_dynamic_map_signed(), nm->data, 1024);
  qd_safetensors_close(st);
}
END_TEST

START_TEST(cases_are_byte_exact) {
  char path[512];
  snprintf(path, sizeof path, "%s/golden/nf4_cases.safetensors", qd_test_data_dir());
  qd_safetensors_t* st;
  QD_ASSERT_OK(qd_safetensors_open(path, qd_allocator_system(), &st));
  cJSON* cases = cJSON_Parse(qd_safetensors_metadata_get(st, "cases"));
  ck_assert_ptr_nonnull(cases);
  int count = 0, dq_count = 0;
  for (cJSON* c = cases->child; c; c = c->next) {
    const char* name = cJSON_GetObjectItem(c, "name")->valuestring;
    int bs = cJSON_GetObjectItem(c, "blocksize")->valueint;
    bool dq = cJSON_IsTrue(cJSON_GetObjectItem(c, "double_quant"));
    const qd_tensor_info_t* in = need(st, name, "input");
    uint64_t n = in->numel;
    float* x = malloc(n * 4);
    QD_ASSERT_OK(qd_tensor_read_f32(in, x));
    qd_nf4_layout_t l;
    QD_ASSERT_OK(qd_nf4_layout(n, bs, dq, &l));
    uint8_t* packed = malloc(l.packed_bytes);
    float* absmax = malloc(l.blocks * 4);
    uint8_t* codes = malloc(l.blocks);
    float* nested = malloc((l.nested_blocks + 1) * 4);
    qd_nf4_tensor_t t = {packed, dq ? NULL : absmax, codes, nested, 0};
    qd_nf4_quantize(&l, x, &t, absmax);

    const qd_tensor_info_t* wp = need(st, name, "packed");
    ck_assert_uint_eq(wp->nbytes, l.packed_bytes);
    assert_bytes("packed codes", name, packed, wp->data, l.packed_bytes);
    const qd_tensor_info_t* wa = need(st, name, "absmax");
    if (dq) {
      ck_assert_uint_eq(wa->nbytes, l.blocks);
      const qd_tensor_info_t* wo = need(st, name, "offset");
      assert_bytes("offset", name, &t.offset, wo->data, 4);
      assert_bytes("absmax codes", name, codes, wa->data, l.blocks);
      const qd_tensor_info_t* wn = need(st, name, "nested_absmax");
      ck_assert_uint_eq(wn->nbytes, l.nested_blocks * 4);
      assert_bytes("nested absmax", name, nested, wn->data, l.nested_blocks * 4);
      float* eff = malloc(l.blocks * 4);
      qd_nf4_absmax(&l, &t, eff);
      assert_bytes("dequantized absmax", name, eff, need(st, name, "absmax_dequant")->data, l.blocks * 4);
      free(eff);
      dq_count++;
    } else {
      ck_assert_uint_eq(wa->nbytes, l.blocks * 4);
      assert_bytes("absmax", name, absmax, wa->data, l.blocks * 4);
    }
    /* Dequantized, in the input's dtype, bit for bit. */
    float* y = malloc(n * 4);
    qd_nf4_dequantize(&l, &t, y);
    const qd_tensor_info_t* wd = need(st, name, "dequant");
    ck_assert_int_eq(wd->dtype, in->dtype);
    if (wd->dtype == QD_DTYPE_BF16) {
      uint16_t* yb = malloc(n * 2);
      for (uint64_t i = 0; i < n; i++) yb[i] = qd_f32_to_bf16(y[i]);
      assert_bytes("dequantized bf16", name, yb, wd->data, n * 2);
      free(yb);
    } else {
      assert_bytes("dequantized f32", name, y, wd->data, n * 4);
    }
    free(x);
    free(y);
    free(packed);
    free(absmax);
    free(codes);
    free(nested);
    count++;
  }
  printf("  %d cases byte-exact (%d with double quantization)\n", count, dq_count);
  ck_assert_int_ge(count, 10);
  ck_assert_int_ge(dq_count, 3);
  cJSON_Delete(cases);
  qd_safetensors_close(st);
}
END_TEST

/* The scales qd_nf4_block_absmax reports are the ones the quantizer stores, including a partial last block that
 * is all zeros (stored clamped to 1e-38): qdc quantize takes double quantization's offset from them before
 * quantizing. */
START_TEST(block_absmax_is_the_quantizers) {
  enum { N = 64 * 3 + 40 };
  float x[N];
  for (int i = 0; i < N; i++) x[i] = i < 64 * 3 ? (float)((i * 37) % 101 - 50) / 7.0f : 0.0f;
  x[5] = -123.25f;
  for (int bs = 32; bs <= 128; bs *= 2) {
    qd_nf4_layout_t l;
    QD_ASSERT_OK(qd_nf4_layout(N, bs, false, &l));
    uint8_t packed[N / 2 + 1];
    float stored[16], reported[16];
    qd_nf4_quantize_blocks(&l, x, 0, l.blocks, packed, stored);
    qd_nf4_block_absmax(&l, x, 0, l.blocks, reported);
    ck_assert_mem_eq(stored, reported, l.blocks * sizeof(float));
  }
  qd_nf4_layout_t l;
  QD_ASSERT_OK(qd_nf4_layout(N, 64, false, &l));
  float absmax[16] = {0};
  qd_nf4_block_absmax(&l, x, l.blocks - 1, l.blocks, absmax); /* only the last block: 40 zeros */
  ck_assert_float_eq(absmax[l.blocks - 1], 1e-38f);
  ck_assert_float_eq(absmax[0], 0.0f); /* blocks outside the range are not written */
}
END_TEST

START_TEST(layout_sizes) {
  qd_nf4_layout_t l;
  QD_ASSERT_OK(qd_nf4_layout(3072 * 3072, 64, false, &l));
  ck_assert_uint_eq(qd_nf4_storage_bytes(&l), 3072 * 3072 / 2 + 3072 * 3072 / 64 * 4);
  ck_assert(fabs((double)qd_nf4_storage_bytes(&l) / (3072.0 * 3072.0) - 0.5625) < 1e-12);
  QD_ASSERT_OK(qd_nf4_layout(1000, 64, true, &l));
  ck_assert_uint_eq(l.blocks, 16);
  ck_assert_uint_eq(l.nested_blocks, 1);
  ck_assert_uint_eq(l.packed_bytes, 500);
  QD_ASSERT_DETAIL(qd_nf4_layout(64, 48, false, &l), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qd_nf4_layout(64, 8192, false, &l), QD_E_INVALID_ARGUMENT);
}
END_TEST

static Suite* nf4_suite(void) {
  Suite* s = suite_create("nf4");
  TCase* tc = tcase_create("core");
  tcase_add_test(tc, tables_match_bitsandbytes);
  tcase_add_test(tc, cases_are_byte_exact);
  tcase_add_test(tc, block_absmax_is_the_quantizers);
  tcase_add_test(tc, layout_sizes);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(nf4_suite)
