/* bitsandbytes NF4 checkpoints, against tests/data/golden/nf4_bnb_linear*.safetensors (tools/golden/nf4.py): a
 * real bitsandbytes file reads as bitsandbytes' own dequantization and runs like its fp32 reference; `qdc
 * quantize` writes the bytes bitsandbytes writes, tensor for tensor; `qdc compile` takes NF4 weights from such a
 * file as they are; and a damaged quant state, statistic or code book is named, never guessed around. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "compiler/compile.h"
#include "ir/bnb_nf4.h"
#include "qd/progress.h"
#include "qd/safetensors_writer.h"
#include "qd_test.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/graph_runner.h"
#include "runtime/plan_internal.h"

static char bnb_path[512], source_path[512], graph_path[512];

static void setup(void) {
  snprintf(bnb_path, sizeof bnb_path, "%s/golden/nf4_bnb_linear.safetensors", qd_test_data_dir());
  snprintf(source_path, sizeof source_path, "%s/golden/nf4_bnb_linear_source.safetensors", qd_test_data_dir());
  snprintf(graph_path, sizeof graph_path, "%s/graphs/bnb_linear.json", qd_test_data_dir());
  qd_progress_sink_t quiet = {QD_PROGRESS_QUIET, NULL, NULL, NULL, 0};
  qd_progress_set_default_sink(&quiet);
}

static float* read_f32(const qd_tensor_info_t* t) {
  ck_assert_ptr_nonnull(t);
  float* x = malloc(t->numel * sizeof(float));
  QD_ASSERT_OK(qd_tensor_read_f32(t, x));
  return x;
}

/* Both layers: the quant state's fields, its JSON reproduced byte for byte, and the values equal to quantizing the
 * bf16 source ourselves (bitsandbytes' algorithm, tests/test_nf4.c) and dequantizing in fp32. */
START_TEST(reads_what_bitsandbytes_wrote) {
  qd_allocator_t a = qd_allocator_system();
  qd_checkpoint_t *ck, *src;
  QD_ASSERT_OK(qd_checkpoint_open(bnb_path, a, &ck));
  QD_ASSERT_OK(qd_checkpoint_open(source_path, a, &src));
  const char* names[2] = {"proj_in.weight", "proj_out.weight"};
  const int64_t shapes[2][2] = {{128, 192}, {48, 128}};
  for (int k = 0; k < 2; k++) {
    ck_assert(qd_bnb_nf4_present(ck, names[k]));
    ck_assert(!qd_bnb_nf4_present(src, names[k]));
    qd_bnb_nf4_t w;
    QD_ASSERT_OK(qd_bnb_nf4_open(ck, names[k], &w));
    ck_assert_int_eq(w.layout.blocksize, 64);
    ck_assert_int_eq(w.layout.double_quant, k == 0);
    ck_assert_int_eq(w.shape.rank, 2);
    ck_assert_int_eq(w.shape.dims[0], shapes[k][0]);
    ck_assert_int_eq(w.shape.dims[1], shapes[k][1]);
    ck_assert_int_eq(w.dtype, QD_DTYPE_BF16);

    char key[256], json[512];
    snprintf(key, sizeof key, "%s.quant_state.bitsandbytes__nf4", names[k]);
    const qd_tensor_info_t* st = qd_checkpoint_find(ck, key);
    size_t len = qd_bnb_nf4_quant_state(&w.layout, &w.shape, w.dtype, w.offset, json, sizeof json);
    ck_assert_uint_eq(len, st->nbytes);
    ck_assert_msg(memcmp(json, st->data, len) == 0, "quant state of %s: wrote %s, bitsandbytes %.*s", names[k], json,
                  (int)st->nbytes, (const char*)st->data);

    uint64_t n = w.layout.count;
    float* got = malloc(n * sizeof(float));
    QD_ASSERT_OK(qd_bnb_nf4_dequantize(&w, qd_allocator_system(), got));
    float* x = read_f32(qd_checkpoint_find(src, names[k]));
    uint8_t* packed = malloc(w.layout.packed_bytes);
    float* absmax = malloc(w.layout.blocks * sizeof(float));
    uint8_t* codes = malloc(w.layout.blocks);
    float* nested = malloc((w.layout.nested_blocks + 1) * sizeof(float));
    qd_nf4_tensor_t q = {packed, absmax, codes, nested, 0};
    qd_nf4_quantize(&w.layout, x, &q, absmax);
    ck_assert_int_eq(memcmp(packed, w.packed->data, w.layout.packed_bytes), 0);
    float* want = malloc(n * sizeof(float));
    qd_nf4_dequantize(&w.layout, &q, want);
    ck_assert_msg(memcmp(got, want, n * sizeof(float)) == 0, "%s: dequantized values differ", names[k]);
    free(got);
    free(x);
    free(packed);
    free(absmax);
    free(codes);
    free(nested);
    free(want);
  }
  qd_checkpoint_close(ck);
  qd_checkpoint_close(src);
}
END_TEST

/* nested_offset is written as Python's repr() of the float32 offset widened to a double (expected strings from
 * CPython: repr(struct.unpack("f", struct.pack("f", v))[0])). */
START_TEST(quant_state_writes_python_floats) {
  struct {
    float offset;
    const char* repr;
  } cases[] = {{0.1f, "0.10000000149011612"}, {100.0f, "100.0"}, {1e-5f, "9.999999747378752e-06"},
               {0.0001220703125f, "0.0001220703125"}, {0.0f, "0.0"}, {3.0e16f, "3.000000081769267e+16"},
               {1048576.0f, "1048576.0"}, {0.5f, "0.5"}, {-2.5f, "-2.5"}};
  qd_nf4_layout_t l;
  QD_ASSERT_OK(qd_nf4_layout(64, 64, true, &l));
  qd_shape_t shape = {.rank = 2, .dims = {4, 16}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[512], want[512];
    qd_bnb_nf4_quant_state(&l, &shape, QD_DTYPE_BF16, cases[i].offset, json, sizeof json);
    snprintf(want, sizeof want,
             "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [4, 16], "
             "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": %s}",
             cases[i].repr);
    ck_assert_str_eq(json, want);
  }
}
END_TEST

/* Writes the source's input as an F32 inputs file for the graph. */
static void write_inputs(const char* path) {
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* src;
  QD_ASSERT_OK(qd_safetensors_open(source_path, a, &src));
  const qd_tensor_info_t* in = qd_safetensors_find(src, "input");
  float* x = read_f32(in);
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(path, a, &w));
  QD_ASSERT_OK(qd_safetensors_writer_add(w, "input", QD_DTYPE_F32, 2, in->shape, x));
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  free(x);
  qd_safetensors_close(src);
}

/* The relative L2 error of running the graph on `weights` against bitsandbytes' fp32 reference_output. */
static double run_against_reference(const char* weights) {
  qd_allocator_t a = qd_allocator_system();
  char inputs[512];
  snprintf(inputs, sizeof inputs, "%s/bnb_inputs.safetensors", qd_test_tmp_dir());
  write_inputs(inputs);
  qd_safetensors_t *in, *src;
  QD_ASSERT_OK(qd_safetensors_open(inputs, a, &in));
  QD_ASSERT_OK(qd_safetensors_open(source_path, a, &src));
  qd_graph_runner_options_t o = {graph_path, NULL, weights, NULL, 2};
  qd_graph_runner_t* r;
  QD_ASSERT_OK(qd_graph_runner_create(&o, in, a, &r));
  qd_tensor_t out;
  QD_ASSERT_OK(qd_graph_runner_run(r, in, &out));
  float* ref = read_f32(qd_safetensors_find(src, "reference_output"));
  double rel, max_abs;
  qd_compare_f32(out.data, ref, (size_t)qd_shape_numel(&out.shape), &rel, &max_abs);
  free(ref);
  qd_tensor_free(a, &out);
  qd_graph_runner_destroy(r);
  qd_safetensors_close(in);
  qd_safetensors_close(src);
  return rel;
}

START_TEST(bnb_checkpoint_runs_like_bitsandbytes) {
  /* The reference is fp32 arithmetic on the dequantized (bf16) weights: only summation order differs. */
  double rel = run_against_reference(bnb_path);
  ck_assert_msg(rel < 1e-5, "relative L2 error %.3g against bitsandbytes' fp32 reference", rel);
}
END_TEST

static int run_qdc(const char* args) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' %s", getenv("QD_QDC"), args);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Every tensor of `layer` in `got` equals bitsandbytes' file byte for byte, and the file has no other tensor of
 * that layer. */
static void expect_layer_equal(const qd_safetensors_t* got, const qd_safetensors_t* want, const char* layer) {
  size_t matched = 0, n = strlen(layer);
  for (size_t i = 0; i < qd_safetensors_tensor_count(want); i++) {
    const qd_tensor_info_t* w = qd_safetensors_tensor(want, i);
    if (strncmp(w->name, layer, n) != 0) continue;
    const qd_tensor_info_t* g = qd_safetensors_find(got, w->name);
    ck_assert_msg(g != NULL, "qdc quantize did not write '%s'", w->name);
    ck_assert_msg(g->dtype == w->dtype && g->rank == w->rank && g->nbytes == w->nbytes &&
                      memcmp(g->shape, w->shape, sizeof g->shape) == 0,
                  "'%s': dtype or shape differs from bitsandbytes'", w->name);
    ck_assert_msg(memcmp(g->data, w->data, w->nbytes) == 0, "'%s': bytes differ from bitsandbytes'", w->name);
    matched++;
  }
  size_t written = 0;
  for (size_t i = 0; i < qd_safetensors_tensor_count(got); i++)
    written += strncmp(qd_safetensors_tensor(got, i)->name, layer, n) == 0;
  ck_assert_uint_gt(matched, 3);
  ck_assert_uint_eq(written, matched);
}

START_TEST(quantize_writes_bitsandbytes_bytes) {
  /* bitsandbytes' file has proj_in double-quantized and proj_out not: one run of each. */
  char out_dq[512], out_plain[512], args[2048];
  snprintf(out_dq, sizeof out_dq, "%s/bnb_quantized_dq.safetensors", qd_test_tmp_dir());
  snprintf(out_plain, sizeof out_plain, "%s/bnb_quantized.safetensors", qd_test_tmp_dir());
  snprintf(args, sizeof args, "quantize '%s' --graph '%s' --double-quant -q -o '%s'", source_path, graph_path, out_dq);
  ck_assert_int_eq(run_qdc(args), 0);
  snprintf(args, sizeof args, "quantize '%s' --graph '%s' -q -o '%s'", source_path, graph_path, out_plain);
  ck_assert_int_eq(run_qdc(args), 0);
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t *dq, *plain, *want, *src;
  QD_ASSERT_OK(qd_safetensors_open(out_dq, a, &dq));
  QD_ASSERT_OK(qd_safetensors_open(out_plain, a, &plain));
  QD_ASSERT_OK(qd_safetensors_open(bnb_path, a, &want));
  QD_ASSERT_OK(qd_safetensors_open(source_path, a, &src));
  expect_layer_equal(dq, want, "proj_in.weight");
  expect_layer_equal(plain, want, "proj_out.weight");
  ck_assert_str_eq(qd_safetensors_metadata_get(dq, "format"), "pt");
  /* What the graph does not quantize is copied as it is: the biases and the fixture's other tensors. */
  const char* copied[] = {"input", "output", "reference_output", "proj_in.output", "proj_in.bias", "proj_out.bias"};
  for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
    const qd_tensor_info_t* s = qd_safetensors_find(src, copied[i]);
    const qd_tensor_info_t* g = qd_safetensors_find(dq, copied[i]);
    ck_assert_msg(g && g->nbytes == s->nbytes && memcmp(g->data, s->data, s->nbytes) == 0, "'%s' not copied",
                  copied[i]);
  }
  /* Each quantized weight gains five tensors: absmax, quant_map, nested_absmax, nested_quant_map, quant_state. */
  ck_assert_uint_eq(qd_safetensors_tensor_count(dq), qd_safetensors_tensor_count(src) + 2 * 5);
  qd_safetensors_close(dq);
  qd_safetensors_close(plain);
  qd_safetensors_close(want);
  qd_safetensors_close(src);
  /* The file qdc wrote runs like bitsandbytes' own. */
  double rel = run_against_reference(out_dq);
  ck_assert_msg(rel < 1e-2, "relative L2 error %.3g", rel);
}
END_TEST

/* A plan compiled from bitsandbytes' file: proj_in (blocksize 64, double-quantized, as asked) is copied as it is;
 * proj_out (not double-quantized) is requantized from its dequantized values; both run from the plan. */
START_TEST(compile_takes_bnb_weights_as_they_are) {
  char plan[512];
  snprintf(plan, sizeof plan, "%s/bnb.qplan", qd_test_tmp_dir());
  qdc_compile_options_t o;
  memset(&o, 0, sizeof o);
  o.input = bnb_path;
  o.output = plan;
  o.graph = graph_path;
  o.component = "mlp";
  o.quant = QDC_QUANT_NF4;
  o.quantize_component = true;
  o.blocksize = 64;
  o.double_quant = true;
  o.resolution_count = 1;
  o.resolutions[0] = (qdc_resolution_t){16, 16, 4};
  o.threads = 2;
  qd_allocator_t a = qd_allocator_system();
  qd_threadpool_t* pool;
  qdc_component_t* c;
  QD_ASSERT_OK(qd_threadpool_create(2, a, &pool));
  QD_ASSERT_OK(qdc_component_create(&o, a, &c));
  QD_ASSERT_OK(qdc_choose_formats(&o, c));
  QD_ASSERT_OK(qdc_emit_plan(&o, c, pool));
  ck_assert_uint_eq(c->weights_copied, 1);
  qdc_component_destroy(c);
  qd_threadpool_destroy(pool);

  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan, a, QD_PLAN_OPEN_VERIFY_ALL, &p));
  float** w;
  QD_ASSERT_OK(qd_plan_weights_f32(p, 0, a, &w));
  const qd_plan_component_t* pc = qd_plan_component(p, 0);
  qd_checkpoint_t* ck;
  QD_ASSERT_OK(qd_checkpoint_open(bnb_path, a, &ck));
  for (int32_t i = 0; i < pc->weight_count; i++) {
    if (strcmp(pc->weights[i].name, "proj_in.weight") != 0) continue;
    qd_bnb_nf4_t b;
    QD_ASSERT_OK(qd_bnb_nf4_open(ck, "proj_in.weight", &b));
    float* nested = malloc(b.layout.nested_blocks * sizeof(float));
    memcpy(nested, b.nested_absmax->data, b.layout.nested_blocks * sizeof(float));
    qd_nf4_tensor_t t = {(uint8_t*)b.packed->data, NULL, (uint8_t*)b.absmax->data, nested, b.offset};
    float* want = malloc(b.layout.count * sizeof(float));
    qd_nf4_dequantize(&b.layout, &t, want);
    ck_assert_msg(memcmp(want, w[i], b.layout.count * sizeof(float)) == 0, "proj_in was not copied as it is");
    free(want);
    free(nested);
  }
  qd_checkpoint_close(ck);
  qd_plan_weights_f32_free(p, 0, a, w);
  qd_plan_close(p);
}
END_TEST

/* The BFL single-file layout fuses q, k and v into one nn.Linear, which bitsandbytes (and `qdc quantize`) quantize
 * whole; the graph reads it in three row ranges. A plan compiled from the quantized file equals, weight for weight,
 * the plan compiled from the original: the row ranges start on block boundaries, and requantizing NF4 values
 * gives back the same codes and scales. */
START_TEST(quantized_bfl_file_compiles_to_the_same_plan) {
  char bfl[512], quantized[512], plan_a[512], plan_b[512], args[2048];
  snprintf(bfl, sizeof bfl, "%s/golden/flux_guided_bfl.safetensors", qd_test_data_dir());
  snprintf(quantized, sizeof quantized, "%s/bnb_bfl.safetensors", qd_test_tmp_dir());
  snprintf(plan_a, sizeof plan_a, "%s/bnb_bfl_a.qplan", qd_test_tmp_dir());
  snprintf(plan_b, sizeof plan_b, "%s/bnb_bfl_b.qplan", qd_test_tmp_dir());
  snprintf(args, sizeof args, "quantize '%s' -q -o '%s'", bfl, quantized);
  ck_assert_int_eq(run_qdc(args), 0);
  qd_allocator_t a = qd_allocator_system();
  qd_checkpoint_t* ck;
  QD_ASSERT_OK(qd_checkpoint_open(quantized, a, &ck));
  ck_assert(qd_bnb_nf4_present(ck, "double_blocks.0.img_attn.qkv.weight"));
  qd_checkpoint_close(ck);
  snprintf(args, sizeof args, "compile '%s' -q --target none --resolutions 32x32 -o '%s'", bfl, plan_a);
  ck_assert_int_eq(run_qdc(args), 0);
  snprintf(args, sizeof args, "compile '%s' -q --target none --resolutions 32x32 -o '%s'", quantized, plan_b);
  ck_assert_int_eq(run_qdc(args), 0);
  qd_plan_t *pa, *pb;
  QD_ASSERT_OK(qd_plan_open(plan_a, a, QD_PLAN_OPEN_VERIFY_ALL, &pa));
  QD_ASSERT_OK(qd_plan_open(plan_b, a, QD_PLAN_OPEN_VERIFY_ALL, &pb));
  const qd_plan_component_t *ca = qd_plan_component(pa, 0), *cb = qd_plan_component(pb, 0);
  ck_assert_int_eq(ca->weight_count, cb->weight_count);
  float **wa, **wb;
  QD_ASSERT_OK(qd_plan_weights_f32(pa, 0, a, &wa));
  QD_ASSERT_OK(qd_plan_weights_f32(pb, 0, a, &wb));
  int nf4 = 0;
  for (int32_t i = 0; i < ca->weight_count; i++) {
    ck_assert_str_eq(ca->weights[i].name, cb->weights[i].name);
    ck_assert_int_eq(ca->weights[i].format, cb->weights[i].format);
    nf4 += ca->weights[i].format == QD_WEIGHT_FORMAT_NF4;
    ck_assert_msg(memcmp(wa[i], wb[i], (size_t)qd_shape_numel(&ca->weights[i].shape) * sizeof(float)) == 0,
                  "weight '%s' differs", ca->weights[i].name);
  }
  ck_assert_int_gt(nf4, 40);
  qd_plan_weights_f32_free(pa, 0, a, wa);
  qd_plan_weights_f32_free(pb, 0, a, wb);
  qd_plan_close(pa);
  qd_plan_close(pb);
}
END_TEST

/* Copies bitsandbytes' file with one tensor replaced (data != NULL), or dropped (data == NULL). */
static void write_variant(const char* path, const char* name, qd_dtype_t dtype, uint64_t count, const void* data) {
  qd_allocator_t a = qd_allocator_system();
  qd_safetensors_t* st;
  QD_ASSERT_OK(qd_safetensors_open(bnb_path, a, &st));
  qd_safetensors_writer_t* w;
  QD_ASSERT_OK(qd_safetensors_writer_create(path, a, &w));
  for (size_t i = 0; i < qd_safetensors_tensor_count(st); i++) {
    const qd_tensor_info_t* t = qd_safetensors_tensor(st, i);
    if (strcmp(t->name, name) != 0) {
      QD_ASSERT_OK(qd_safetensors_writer_add(w, t->name, t->dtype, t->rank, t->shape, t->data));
    } else if (data) {
      QD_ASSERT_OK(qd_safetensors_writer_add(w, t->name, dtype, 1, &count, data));
    }
  }
  QD_ASSERT_OK(qd_safetensors_writer_finish(w));
  qd_safetensors_writer_destroy(w);
  qd_safetensors_close(st);
}

static qd_status_t open_variant(const char* path, const char* weight) {
  qd_checkpoint_t* ck;
  QD_TRY(qd_checkpoint_open(path, qd_allocator_system(), &ck));
  qd_bnb_nf4_t w;
  qd_status_t s = qd_bnb_nf4_open(ck, weight, &w);
  qd_checkpoint_close(ck);
  return s;
}

START_TEST(damaged_bnb_weights_are_named) {
  char path[512];
  snprintf(path, sizeof path, "%s/bnb_damaged.safetensors", qd_test_tmp_dir());
  const char* state_in = "proj_in.weight.quant_state.bitsandbytes__nf4";
  const char* state_out = "proj_out.weight.quant_state.bitsandbytes__nf4";
  struct {
    const char* tensor;
    const char* weight;
    const char* state; /* replacement quant state JSON, or NULL */
    qd_error_detail_t detail;
  } cases[] = {
      {state_out, "proj_out.weight",
       "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [48, 128]}",
       QD_E_BNB_QUANT_TYPE},
      {state_out, "proj_out.weight", "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [48, 128]",
       QD_E_BNB_QUANT_STATE},
      {state_out, "proj_out.weight", "{\"quant_type\": \"nf4\", \"blocksize\": 48, \"shape\": [48, 128]}",
       QD_E_INVALID_ARGUMENT},
      {state_out, "proj_out.weight", "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [48, 0]}",
       QD_E_BNB_QUANT_STATE},
      /* A shape whose packed size the weight tensor does not have. */
      {state_out, "proj_out.weight", "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [48, 130]}",
       QD_E_BNB_SIZE},
      {state_in, "proj_in.weight",
       "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"shape\": [128, 192], \"nested_offset\": \"x\"}",
       QD_E_BNB_QUANT_STATE},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_variant(path, cases[i].tensor, QD_DTYPE_U8, strlen(cases[i].state), cases[i].state);
    QD_ASSERT_DETAIL(open_variant(path, cases[i].weight), cases[i].detail);
  }
  /* Statistics and code books. */
  float absmax[95] = {0};
  write_variant(path, "proj_out.weight.absmax", QD_DTYPE_F32, 95, absmax);
  QD_ASSERT_DETAIL(open_variant(path, "proj_out.weight"), QD_E_BNB_SIZE);
  write_variant(path, "proj_out.weight.quant_map", QD_DTYPE_F32, 0, NULL);
  QD_ASSERT_DETAIL(open_variant(path, "proj_out.weight"), QD_E_BNB_MISSING_TENSOR);
  float map[16];
  memcpy(map, qd_nf4_code, sizeof map);
  map[3] += 1e-3f; /* an FP4 or custom code book: values qd would silently misread */
  write_variant(path, "proj_out.weight.quant_map", QD_DTYPE_F32, 16, map);
  QD_ASSERT_DETAIL(open_variant(path, "proj_out.weight"), QD_E_BNB_CODE_BOOK);
  write_variant(path, "proj_in.weight.nested_absmax", QD_DTYPE_F32, 0, NULL);
  QD_ASSERT_DETAIL(open_variant(path, "proj_in.weight"), QD_E_BNB_MISSING_TENSOR);
  float dyn[256];
  memcpy(dyn, qd_dynamic_map_signed(), sizeof dyn);
  dyn[0] = 0;
  write_variant(path, "proj_in.weight.nested_quant_map", QD_DTYPE_F32, 256, dyn);
  QD_ASSERT_DETAIL(open_variant(path, "proj_in.weight"), QD_E_BNB_CODE_BOOK);
  /* A graph that wants another shape than the quant state records. */
  const char* wrong_shape = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [128, 48]}";
  write_variant(path, state_out, QD_DTYPE_U8, strlen(wrong_shape), wrong_shape);
  qd_safetensors_t* in;
  char inputs[512];
  snprintf(inputs, sizeof inputs, "%s/bnb_inputs_damaged.safetensors", qd_test_tmp_dir());
  write_inputs(inputs);
  QD_ASSERT_OK(qd_safetensors_open(inputs, qd_allocator_system(), &in));
  qd_graph_runner_options_t o = {graph_path, NULL, path, NULL, 1};
  qd_graph_runner_t* r = NULL;
  QD_ASSERT_DETAIL(qd_graph_runner_create(&o, in, qd_allocator_system(), &r), QD_E_WEIGHT_SHAPE);
  qd_safetensors_close(in);
}
END_TEST

static Suite* bnb_suite(void) {
  Suite* s = suite_create("bnb");
  TCase* tc = tcase_create("bnb");
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 300);
  tcase_add_test(tc, reads_what_bitsandbytes_wrote);
  tcase_add_test(tc, quant_state_writes_python_floats);
  tcase_add_test(tc, bnb_checkpoint_runs_like_bitsandbytes);
  tcase_add_test(tc, quantize_writes_bitsandbytes_bytes);
  tcase_add_test(tc, compile_takes_bnb_weights_as_they_are);
  tcase_add_test(tc, quantized_bfl_file_compiles_to_the_same_plan);
  tcase_add_test(tc, damaged_bnb_weights_are_named);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(bnb_suite)
