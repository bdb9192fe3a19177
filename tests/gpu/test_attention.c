/* GPU test and benchmark of the attention kernels (kernels/templates/attention.cu, attention_sm90.cu).
 *
 * For every variant in tests/gpu/attention_variants.h that the device can run: compile the template with NVRTC
 * for the device (sm_90a for the wgmma kernel), load it, run it on random bf16 inputs (never zeros) with the
 * output poisoned with NaN first, and compare with qd_ref_attention (runtime/cpu/ref.h) computed in fp32 from
 * the same bf16-rounded inputs: every output element must be written and the relative L2 error must be at most
 * 1e-2. Long sequences are checked on a subset of query rows (rows are independent without a mask). Then time
 * the FLUX shapes (B=1, H=24, D=128, S=4608 and 1280; CUDA events around each launch, median of 20 after 3
 * warm-ups, the outputs of those runs checked on a subset of rows) and print TFLOP/s = 4*B*H*S*S*D / time.
 *
 * Exits 77 (skip) without a driver or device, 0 when every check passes, 1 otherwise. Not a Check suite on
 * purpose: it must run on GPU machines that have neither Check nor cJSON.
 * Usage: test_attention [--no-bench] [--only NAME,PREFIX*,...] [--templates DIR] [--dump DIR] [--list] [--max-seq N]
 * --dump writes each variant's cubin to DIR/<variant>.cubin (for cuobjdump); --max-seq skips correctness cases
 * longer than N (for runs under compute-sanitizer).
 * The templates are the ones embedded in the library (runtime/cuda/kernel_sources.h), or read from DIR. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qd/allocator.h"
#include "qd/dtype.h"
#include "qd/status.h"
#include "runtime/cpu/ref.h"
#include "runtime/cpu/threadpool.h"
#include "runtime/cuda/attention.h"
#include "runtime/cuda/kernel_compile.h"
#include "runtime/cuda/kernel_sources.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_nvrtc.h"
#include "tests/gpu/attention_variants.h"

static const qd_cuda_driver_t* cu;
static qd_threadpool_t* pool;
static int failures;

#define CHECK_CU(call)                                                                        \
  do {                                                                                        \
    CUresult r_ = (call);                                                                     \
    if (r_ != CUDA_SUCCESS) {                                                                 \
      fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call, qd_cuda_result_name(r_)); \
      exit(1);                                                                                \
    }                                                                                         \
  } while (0)

static void die_status_(const char* what, qd_status_t s) {
  char buf[8192];
  qd_status_format(s, buf, sizeof buf);
  fprintf(stderr, "test_attention: %s: %s\n", what, buf);
  qd_status_free(s);
  exit(1);
}

static double now_s_(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- random data ---- */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next_(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double rng_uniform_(void) { return ((rng_next_() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static float rng_normal_(void) {
  double u = rng_uniform_(), v = rng_uniform_();
  return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

/* Fills n bf16 values (normal * sigma) and their exact float values; never zero everywhere. */
static void fill_bf16_(uint16_t* h, float* f, size_t n, float sigma) {
  for (size_t i = 0; i < n; i++) {
    h[i] = qd_f32_to_bf16(rng_normal_() * sigma);
    f[i] = qd_bf16_to_f32(h[i]);
  }
}

static void* xmalloc_(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "test_attention: out of host memory (%zu bytes)\n", n);
    exit(1);
  }
  return p;
}

static char* read_file_(const char* path) {
  FILE* f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char* s = xmalloc_((size_t)n + 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) {
    fclose(f);
    free(s);
    return NULL;
  }
  s[n] = 0;
  fclose(f);
  return s;
}

/* ---- one compiled variant ---- */
typedef struct built {
  const qd_attention_test_variant_t* tv;
  CUmodule module;
  CUfunction fn;
  int regs, local_bytes;
  double compile_s;
  double max_err; /* worst relative L2 error over its cases */
  bool ok;        /* every check passed */
  double tflops[2];
} built_t;

/* ---- a test case ---- */
typedef struct attn_case {
  int64_t batch, heads, sq, sk;
  bool fused;       /* q, k, v are slices of one [B, S, 3*H*D] buffer; o rows padded by 64 elements */
  float q_sigma;    /* larger sharpens the softmax: exercises the running-maximum rescaling */
  int64_t rows;     /* query rows checked against the reference (0: all) */
  int64_t bias_batch, bias_heads;
} attn_case_t;

typedef struct host_data {
  attn_case_t c;
  int64_t d;
  int64_t q_rs, k_rs, v_rs, o_rs; /* row strides (elements) */
  size_t qkv_elems, o_elems;      /* per buffer (fused: one qkv buffer) */
  uint16_t *hq, *hk, *hv;         /* bf16 as uploaded (fused: hq holds everything) */
  float *fq, *fk, *fv;            /* dense float copies [B, S, H*D] for the reference */
  float* bias;
  int64_t* rows;                  /* checked query rows */
  int64_t nrows;
  float* ref;                     /* [B, nrows, H*D] */
} host_data_t;

static void host_data_free_(host_data_t* h) {
  free(h->hq);
  free(h->hk);
  free(h->hv);
  free(h->fq);
  free(h->fk);
  free(h->fv);
  free(h->bias);
  free(h->rows);
  free(h->ref);
  memset(h, 0, sizeof *h);
}

static void host_data_make_(host_data_t* h, const attn_case_t* c, int64_t d, bool causal, bool bias) {
  memset(h, 0, sizeof *h);
  h->c = *c;
  h->d = d;
  const int64_t w = c->heads * d;
  const size_t nq = (size_t)(c->batch * c->sq * w), nk = (size_t)(c->batch * c->sk * w);
  h->fq = xmalloc_(nq * sizeof(float));
  h->fk = xmalloc_(nk * sizeof(float));
  h->fv = xmalloc_(nk * sizeof(float));
  if (c->fused) {
    /* one buffer, token-major [B, S, 3, H*D]: q, k, v interleaved per token */
    h->q_rs = h->k_rs = h->v_rs = 3 * w;
    h->o_rs = w + 64;
    h->qkv_elems = (size_t)(c->batch * c->sq * 3 * w);
    h->hq = xmalloc_(h->qkv_elems * 2);
    for (int64_t t = 0; t < c->batch * c->sq; t++) {
      uint16_t* row = h->hq + t * 3 * w;
      fill_bf16_(row, h->fq + t * w, (size_t)w, c->q_sigma);
      fill_bf16_(row + w, h->fk + t * w, (size_t)w, 1.0f);
      fill_bf16_(row + 2 * w, h->fv + t * w, (size_t)w, 1.0f);
    }
  } else {
    h->q_rs = h->k_rs = h->v_rs = h->o_rs = w;
    h->hq = xmalloc_(nq * 2);
    h->hk = xmalloc_(nk * 2);
    h->hv = xmalloc_(nk * 2);
    fill_bf16_(h->hq, h->fq, nq, c->q_sigma);
    fill_bf16_(h->hk, h->fk, nk, 1.0f);
    fill_bf16_(h->hv, h->fv, nk, 1.0f);
  }
  h->o_elems = (size_t)(c->batch * c->sq * h->o_rs);
  if (bias) {
    size_t nb = (size_t)(c->bias_batch * c->bias_heads * c->sq * c->sk);
    h->bias = xmalloc_(nb * sizeof(float));
    for (size_t i = 0; i < nb; i++) h->bias[i] = 2.0f * rng_normal_();
  }
  /* Rows to check: all, or the first and last 32 plus random ones (causal and bias need all rows). */
  int64_t n = (c->rows == 0 || causal || bias || c->rows >= c->sq) ? c->sq : c->rows;
  h->rows = xmalloc_((size_t)n * sizeof(int64_t));
  h->nrows = n;
  if (n == c->sq) {
    for (int64_t i = 0; i < n; i++) h->rows[i] = i;
  } else {
    for (int64_t i = 0; i < n; i++) {
      if (i < 32) h->rows[i] = i;
      else if (i < 64) h->rows[i] = c->sq - 64 + i;
      else h->rows[i] = 64 + (int64_t)(rng_uniform_() * (double)(c->sq - 128));
    }
  }
  /* The reference on the chosen rows: without a mask or bias rows are independent, so a q of just those rows
   * gives the same numbers; with them every row is computed. */
  h->ref = xmalloc_((size_t)(c->batch * n * w) * sizeof(float));
  float scale = (float)(1.0 / sqrt((double)d));
  if (n == c->sq) {
    qd_ref_attention(pool, h->fq, h->fk, h->fv, h->bias, c->bias_batch, c->bias_heads, h->ref, c->batch, c->sq,
                     c->sk, c->heads, d, d, scale, causal);
  } else {
    float* qs = xmalloc_((size_t)(c->batch * n * w) * sizeof(float));
    for (int64_t b = 0; b < c->batch; b++)
      for (int64_t i = 0; i < n; i++)
        memcpy(qs + (b * n + i) * w, h->fq + (b * c->sq + h->rows[i]) * w, (size_t)w * sizeof(float));
    qd_ref_attention(pool, qs, h->fk, h->fv, NULL, 1, 1, h->ref, c->batch, n, c->sk, c->heads, d, d, scale, false);
    free(qs);
  }
}

/* Device copies of one host_data. */
typedef struct dev_data {
  CUdeviceptr q, k, v, o, bias, qkv;
  size_t o_bytes;
} dev_data_t;

static void dev_data_make_(dev_data_t* g, const host_data_t* h) {
  memset(g, 0, sizeof *g);
  const attn_case_t* c = &h->c;
  const int64_t w = c->heads * h->d;
  if (c->fused) {
    CHECK_CU(cu->cuMemAlloc(&g->qkv, h->qkv_elems * 2));
    CHECK_CU(cu->cuMemcpyHtoD(g->qkv, h->hq, h->qkv_elems * 2));
    g->q = g->qkv;
    g->k = g->qkv + (CUdeviceptr)w * 2;
    g->v = g->qkv + (CUdeviceptr)w * 4;
  } else {
    size_t nq = (size_t)(c->batch * c->sq * w), nk = (size_t)(c->batch * c->sk * w);
    CHECK_CU(cu->cuMemAlloc(&g->q, nq * 2));
    CHECK_CU(cu->cuMemAlloc(&g->k, nk * 2));
    CHECK_CU(cu->cuMemAlloc(&g->v, nk * 2));
    CHECK_CU(cu->cuMemcpyHtoD(g->q, h->hq, nq * 2));
    CHECK_CU(cu->cuMemcpyHtoD(g->k, h->hk, nk * 2));
    CHECK_CU(cu->cuMemcpyHtoD(g->v, h->hv, nk * 2));
  }
  g->o_bytes = h->o_elems * 2;
  CHECK_CU(cu->cuMemAlloc(&g->o, g->o_bytes));
  if (h->bias) {
    size_t nb = (size_t)(c->bias_batch * c->bias_heads * c->sq * c->sk);
    CHECK_CU(cu->cuMemAlloc(&g->bias, nb * sizeof(float)));
    CHECK_CU(cu->cuMemcpyHtoD(g->bias, h->bias, nb * sizeof(float)));
  }
}

static void dev_data_free_(dev_data_t* g) {
  if (g->qkv) {
    cu->cuMemFree(g->qkv);
  } else {
    if (g->q) cu->cuMemFree(g->q);
    if (g->k) cu->cuMemFree(g->k);
    if (g->v) cu->cuMemFree(g->v);
  }
  if (g->o) cu->cuMemFree(g->o);
  if (g->bias) cu->cuMemFree(g->bias);
  memset(g, 0, sizeof *g);
}

static qd_attention_args_t args_for_(const host_data_t* h, const dev_data_t* g) {
  const attn_case_t* c = &h->c;
  qd_attention_args_t a = {.q = g->q, .k = g->k, .v = g->v, .o = g->o, .bias = g->bias, .batch = c->batch,
                           .sq = c->sq, .sk = c->sk, .heads = c->heads, .q_row_stride = h->q_rs,
                           .k_row_stride = h->k_rs, .v_row_stride = h->v_rs, .o_row_stride = h->o_rs,
                           .bias_batch = c->bias_batch, .bias_heads = c->bias_heads};
  return a;
}

/* Downloads o, checks that every element the kernel owns was written (no NaN poison left), that the padding
 * between rows was not touched, and returns the relative L2 error over the checked rows (INFINITY on failure). */
static double check_output_(const host_data_t* h, const dev_data_t* g, char* why, size_t why_size) {
  const attn_case_t* c = &h->c;
  const int64_t w = c->heads * h->d;
  uint16_t* out = xmalloc_(g->o_bytes);
  CHECK_CU(cu->cuMemcpyDtoH(out, g->o, g->o_bytes));
  double err2 = 0, ref2 = 0;
  int64_t unwritten = 0, pad_touched = 0;
  for (int64_t t = 0; t < c->batch * c->sq; t++) {
    for (int64_t x = 0; x < h->o_rs; x++) {
      uint16_t v = out[t * h->o_rs + x];
      if (x < w) {
        if (isnan(qd_bf16_to_f32(v))) unwritten++;
      } else if (v != 0xFFFF) {
        pad_touched++;
      }
    }
  }
  for (int64_t b = 0; b < c->batch; b++) {
    for (int64_t i = 0; i < h->nrows; i++) {
      const uint16_t* o = out + (b * c->sq + h->rows[i]) * h->o_rs;
      const float* r = h->ref + (b * h->nrows + i) * w;
      for (int64_t x = 0; x < w; x++) {
        double e = (double)qd_bf16_to_f32(o[x]) - r[x];
        err2 += e * e;
        ref2 += (double)r[x] * r[x];
      }
    }
  }
  free(out);
  if (unwritten || pad_touched) {
    snprintf(why, why_size, "%lld outputs unwritten (NaN poison), %lld padding elements overwritten",
             (long long)unwritten, (long long)pad_touched);
    return INFINITY;
  }
  double rel = sqrt(err2 / (ref2 > 0 ? ref2 : 1));
  if (!(rel <= 1e-2)) snprintf(why, why_size, "relative L2 error %.3g > 1e-2", rel);
  return rel;
}

static void launch_or_die_(built_t* bv, const qd_attention_args_t* a, CUstream stream) {
  qd_status_t s = qd_attention_launch(cu, bv->fn, &bv->tv->v, a, stream);
  if (s) die_status_(bv->tv->name, s);
}

/* One correctness case for one variant. */
static void run_case_(built_t* bv, const attn_case_t* c) {
  const qd_attention_variant_t* v = &bv->tv->v;
  host_data_t h;
  host_data_make_(&h, c, v->head_dim, v->causal, v->has_bias);
  dev_data_t g;
  dev_data_make_(&g, &h);
  CHECK_CU(cu->cuMemsetD8(g.o, 0xFF, g.o_bytes)); /* bf16 0xFFFF is a NaN */
  qd_attention_args_t a = args_for_(&h, &g);
  launch_or_die_(bv, &a, NULL);
  CUresult r = cu->cuCtxSynchronize();
  char why[256] = "";
  double rel;
  if (r != CUDA_SUCCESS) {
    /* A fault poisons the context: report and stop, nothing after it can be trusted. */
    fprintf(stderr, "FATAL %s: kernel failed: %s\n", bv->tv->name, qd_cuda_result_name(r));
    exit(1);
  }
  rel = check_output_(&h, &g, why, sizeof why);
  bool ok = rel <= 1e-2;
  printf("  %-30s B=%lld H=%lld Sq=%-5lld Sk=%-5lld %s%s rows=%-5lld rel_l2=%.2e %s%s\n", bv->tv->name,
         (long long)c->batch, (long long)c->heads, (long long)c->sq, (long long)c->sk, c->fused ? "fused " : "dense ",
         c->q_sigma > 1 ? "sharp" : "     ", (long long)h.nrows, rel, ok ? "ok" : "FAIL: ", ok ? "" : why);
  if (!ok) {
    failures++;
    bv->ok = false;
  }
  if (!(rel <= bv->max_err)) bv->max_err = rel;
  dev_data_free_(&g);
  host_data_free_(&h);
}

/* `only` is a comma-separated list of names; a name ending in '*' matches as a prefix. */
static bool name_matches_(const char* name, const char* only) {
  for (const char* p = only; *p;) {
    const char* end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && p[n - 1] == '*' ? strncmp(name, p, n - 1) == 0 : (strlen(name) == n && strncmp(name, p, n) == 0))
      return true;
    p += n;
    if (*p == ',') p++;
  }
  return false;
}

static int cmp_float_(const void* a, const void* b) {
  float x = *(const float*)a, y = *(const float*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  bool bench = true;
  const char* only = NULL;
  const char* tdir = NULL;
  const char* dump = NULL;
  long max_seq = 1L << 30;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--no-bench") == 0) bench = false;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    else if (strcmp(argv[i], "--templates") == 0 && i + 1 < argc) tdir = argv[++i];
    else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) dump = argv[++i];
    else if (strcmp(argv[i], "--max-seq") == 0 && i + 1 < argc) max_seq = strtol(argv[++i], NULL, 10);
    else if (strcmp(argv[i], "--list") == 0) {
      for (size_t k = 0; k < QD_ATTENTION_TEST_VARIANT_COUNT; k++) printf("%s\n", qd_attention_test_variants[k].name);
      return 0;
    }
    else {
      fprintf(stderr, "usage: test_attention [--no-bench] [--only NAME,PREFIX*,...] [--templates DIR] [--dump DIR] "
                      "[--list] [--max-seq N]\n");
      return 2;
    }
  }
  qd_status_t s = qd_cuda_driver_load(&cu);
  if (s) {
    if (qd_status_is(s, QD_E_CUDA_NO_DRIVER) || qd_status_is(s, QD_E_CUDA_NO_DEVICE)) {
      char buf[1024];
      qd_status_format(s, buf, sizeof buf);
      printf("test_attention: skipped: %s\n", buf);
      qd_status_free(s);
      return 77;
    }
    die_status_("loading the CUDA driver", s);
  }
  CUdevice dev;
  CHECK_CU(cu->cuDeviceGet(&dev, 0));
  int ccmaj = 0, ccmin = 0, sms = 0;
  char name[256];
  CHECK_CU(cu->cuDeviceGetAttribute(&ccmaj, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
  CHECK_CU(cu->cuDeviceGetAttribute(&ccmin, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
  CHECK_CU(cu->cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  CHECK_CU(cu->cuDeviceGetName(name, sizeof name, dev));
  if (ccmaj < 8) {
    printf("test_attention: skipped: %s is compute capability %d.%d; the kernels need 8.0+\n", name, ccmaj, ccmin);
    return 77;
  }
  CUcontext ctx;
  CHECK_CU(cu->cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK_CU(cu->cuCtxSetCurrent(ctx));
  const qd_nvrtc_t* nv;
  s = qd_nvrtc_load(&nv);
  if (s) die_status_("loading NVRTC", s);
  printf("test_attention: %s (sm_%d%d, %d SMs), driver %d, NVRTC %d.%d (%s)\n", name, ccmaj, ccmin, sms,
         cu->driver_version, nv->version_major, nv->version_minor, nv->library);
  s = qd_threadpool_create(0, qd_allocator_system(), &pool);
  if (s) die_status_("thread pool", s);

  built_t built[QD_ATTENTION_TEST_VARIANT_COUNT];
  size_t nbuilt = 0;
  for (size_t i = 0; i < QD_ATTENTION_TEST_VARIANT_COUNT; i++) {
    const qd_attention_test_variant_t* tv = &qd_attention_test_variants[i];
    if (only && !name_matches_(tv->name, only)) continue;
    char arch[16];
    s = qd_attention_target_arch(tv->v.kernel, ccmaj, ccmin, arch, sizeof arch);
    if (s) {
      printf("  %-30s not for this device\n", tv->name);
      qd_status_free(s);
      continue;
    }
    const char* file = qd_attention_template_file(tv->v.kernel);
    char* src = NULL;
    if (tdir) {
      char path[4200];
      snprintf(path, sizeof path, "%s/%s", tdir, file);
      src = read_file_(path);
      if (!src) {
        fprintf(stderr, "test_attention: cannot read %s\n", path);
        return 1;
      }
    } else {
      const char* text = qd_kernel_source_find(file);
      if (!text) {
        fprintf(stderr, "test_attention: %s is not embedded in the library\n", file);
        return 1;
      }
      src = xmalloc_(strlen(text) + 1);
      memcpy(src, text, strlen(text) + 1);
    }
    qd_attention_defines_t defs;
    s = qd_attention_variant_defines(&tv->v, &defs);
    if (s) die_status_(tv->name, s);
    qd_kernel_headers_t headers; /* qd_mma.cuh and the other shared headers, as the runtime passes them */
    qd_kernel_headers_get(&headers);
    qd_nvrtc_compile_options_t opt = {.source = src, .name = qd_attention_template_file(tv->v.kernel),
                                      .arch = arch, .outputs = QD_NVRTC_OUTPUT_CUBIN, .options = defs.options,
                                      .option_count = defs.count, .header_names = headers.names,
                                      .headers = headers.texts, .header_count = headers.count};
    qd_nvrtc_output_t out;
    double t0 = now_s_();
    s = qd_nvrtc_compile(qd_allocator_system(), &opt, &out);
    double t1 = now_s_();
    free(src);
    if (s) die_status_(tv->name, s);
    built_t* bv = &built[nbuilt++];
    memset(bv, 0, sizeof *bv);
    bv->tv = tv;
    bv->ok = true;
    bv->compile_s = t1 - t0;
    if (dump) {
      char cpath[4300];
      snprintf(cpath, sizeof cpath, "%s/%s.cubin", dump, tv->name);
      FILE* f = fopen(cpath, "wb");
      if (!f || fwrite(out.cubin, 1, out.cubin_size, f) != out.cubin_size) fprintf(stderr, "cannot write %s\n", cpath);
      if (f) fclose(f);
    }
    CHECK_CU(cu->cuModuleLoadData(&bv->module, out.cubin));
    qd_nvrtc_output_deinit(&out);
    CHECK_CU(cu->cuModuleGetFunction(&bv->fn, bv->module, qd_attention_kernel_name(tv->v.kernel)));
    CHECK_CU(cu->cuFuncGetAttribute(&bv->regs, CU_FUNC_ATTRIBUTE_NUM_REGS, bv->fn));
    CHECK_CU(cu->cuFuncGetAttribute(&bv->local_bytes, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, bv->fn));
    printf("  %-30s built for %s in %.2f s: %d registers, %d local bytes, %zu shared bytes\n", tv->name, arch,
           bv->compile_s, bv->regs, bv->local_bytes, qd_attention_shared_bytes(&tv->v));
  }

  /* Correctness. */
  printf("correctness (rel L2 vs qd_ref_attention, tolerance 1e-2):\n");
  for (size_t i = 0; i < nbuilt; i++) {
    built_t* bv = &built[i];
    const qd_attention_variant_t* v = &bv->tv->v;
    const bool plain = !v->causal && !v->has_bias;
    attn_case_t cases[] = {
        {.batch = 1, .heads = 2, .sq = 256, .sk = 256, .q_sigma = 1, .bias_batch = 1, .bias_heads = 1},
        {.batch = 1, .heads = 2, .sq = 300, .sk = 300, .q_sigma = 3, .bias_batch = 1, .bias_heads = 2},
        {.batch = 2, .heads = 3, .sq = 77, .sk = 77, .q_sigma = 1, .bias_batch = 2, .bias_heads = 1},
        {.batch = 2, .heads = 2, .sq = 130, .sk = 333, .q_sigma = 1, .fused = false, .bias_batch = 1,
         .bias_heads = 1},
        {.batch = 2, .heads = 2, .sq = 200, .sk = 200, .q_sigma = 1, .fused = true, .bias_batch = 2,
         .bias_heads = 2},
        {.batch = 1, .heads = 2, .sq = 4608, .sk = 4608, .q_sigma = 2, .rows = 192, .bias_batch = 1,
         .bias_heads = 1},
    };
    size_t ncases = sizeof cases / sizeof cases[0];
    for (size_t k = 0; k < ncases; k++) {
      /* the long case costs minutes of CPU reference with a mask or bias (every row): plain variants only */
      if (cases[k].sq > 1024 && !plain) continue;
      if (cases[k].sq > max_seq || cases[k].sk > max_seq) continue;
      /* causal with fewer keys than queries leaves rows past Sk attending to a prefix: still defined */
      run_case_(bv, &cases[k]);
    }
  }

  /* Benchmark: FLUX shapes. */
  if (bench) {
    const int64_t seqs[2] = {4608, 1280};
    for (int si = 0; si < 2; si++) {
      attn_case_t c = {.batch = 1, .heads = 24, .sq = seqs[si], .sk = seqs[si], .q_sigma = 1, .rows = 48,
                       .bias_batch = 1, .bias_heads = 1};
      host_data_t h;
      host_data_make_(&h, &c, 128, false, false);
      dev_data_t g;
      dev_data_make_(&g, &h);
      CUevent ev[21];
      for (int e = 0; e < 21; e++) CHECK_CU(cu->cuEventCreate(&ev[e], CU_EVENT_DEFAULT));
      for (size_t i = 0; i < nbuilt; i++) {
        built_t* bv = &built[i];
        if (!bv->tv->bench) continue;
        CHECK_CU(cu->cuMemsetD8(g.o, 0xFF, g.o_bytes));
        qd_attention_args_t a = args_for_(&h, &g);
        for (int w = 0; w < 3; w++) launch_or_die_(bv, &a, NULL);
        CHECK_CU(cu->cuEventRecord(ev[0], NULL));
        for (int r = 0; r < 20; r++) {
          launch_or_die_(bv, &a, NULL);
          CHECK_CU(cu->cuEventRecord(ev[r + 1], NULL));
        }
        CUresult r = cu->cuEventSynchronize(ev[20]);
        if (r != CUDA_SUCCESS) {
          fprintf(stderr, "FATAL %s: benchmark kernel failed: %s\n", bv->tv->name, qd_cuda_result_name(r));
          return 1;
        }
        float ms[20];
        for (int e = 0; e < 20; e++) CHECK_CU(cu->cuEventElapsedTime(&ms[e], ev[e], ev[e + 1]));
        qsort(ms, 20, sizeof ms[0], cmp_float_);
        double med = 0.5 * (ms[9] + ms[10]);
        double flops = 4.0 * (double)c.batch * c.heads * c.sq * c.sk * 128;
        bv->tflops[si] = flops / (med * 1e-3) / 1e12;
        char why[256] = "";
        double rel = check_output_(&h, &g, why, sizeof why);
        bool ok = rel <= 1e-2;
        if (!ok) {
          failures++;
          bv->ok = false;
        }
        if (!(rel <= bv->max_err)) bv->max_err = rel;
        printf("  bench %-30s S=%-5lld median %.3f ms (min %.3f, max %.3f) %.1f TFLOP/s rel_l2=%.2e %s%s\n",
               bv->tv->name, (long long)c.sq, med, ms[0], ms[19], bv->tflops[si], rel, ok ? "ok" : "FAIL: ",
               ok ? "" : why);
      }
      for (int e = 0; e < 21; e++) cu->cuEventDestroy(ev[e]);
      dev_data_free_(&g);
      host_data_free_(&h);
    }
  }

  printf("\n%-30s %5s %6s %8s %9s %10s %10s  %s\n", "variant", "regs", "local", "smem", "max_rel", "TF@4608",
         "TF@1280", "result");
  for (size_t i = 0; i < nbuilt; i++) {
    built_t* bv = &built[i];
    printf("%-30s %5d %6d %8zu %9.2e %10.1f %10.1f  %s\n", bv->tv->name, bv->regs, bv->local_bytes,
           qd_attention_shared_bytes(&bv->tv->v), bv->max_err, bv->tflops[0], bv->tflops[1],
           bv->ok ? "ok" : "FAIL");
    cu->cuModuleUnload(bv->module);
  }
  qd_threadpool_destroy(pool);
  printf("test_attention: %s (%d failures)\n", failures ? "FAILED" : "passed", failures);
  return failures ? 1 : 0;
}
