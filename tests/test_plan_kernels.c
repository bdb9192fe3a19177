/* Kernels compiled into plans, without a GPU: qdc compile --target builds the tiny FLUX transformer's kernels (the
 * golden checkpoint) for sm_80 and sm_90 and for sm_90 alone; the KERN index holds exactly what the executor's own
 * variant listing says each program launches, every cubin is an ELF defining its function and every PTX declares
 * it; the plan reopens; corrupt indexes are rejected rule by rule (and a truncation, bit-flip and
 * allocation-failure sweep over the reader ends cleanly); the executor's choice of cubin, PTX, NVRTC or nothing;
 * and qdrun --check, on this machine (no driver) and on the fake driver of tests/fake_cuda_driver.c posing as
 * sm_90 and sm_86 GPUs with new and old drivers. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "compiler/autotune.h"
#include "compiler/kernel_build.h"
#include "compiler/plan_writer.h"
#include "qd/device.h"
#include "qd/plan.h"
#include "qd_test.h"
#include "runtime/cuda/kernel_variants.h"
#include "runtime/cuda_nvrtc.h"
#include "runtime/plan_internal.h"

static char plan_80_90[512], plan_90[512];

static int run_shell(const char* cmd) {
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void compile_tiny(const char* out, const char* targets) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "'%s' compile '%s/golden/flux_guided_weights.safetensors' --graph '%s/models/flux-transformer.json' "
           "--resolutions 32x32 --target %s --threads 2 -q -o '%s'", getenv("QD_QDC"), qd_test_data_dir(),
           getenv("QD_SOURCE_ROOT"), targets, out);
  ck_assert_msg(run_shell(cmd) == 0, "%s failed", cmd);
}

/* Both plans once for the whole suite: NVRTC takes a few seconds per plan. */
static void setup(void) {
  snprintf(plan_80_90, sizeof plan_80_90, "%s/kern_tiny_80_90.qplan", qd_test_tmp_dir());
  snprintf(plan_90, sizeof plan_90, "%s/kern_tiny_90.qplan", qd_test_tmp_dir());
  compile_tiny(plan_80_90, "sm_80,sm_90");
  compile_tiny(plan_90, "sm_90");
}

/* --- the index covers what the lowering lists ------------------------------------------------------------------ */

/* Every kernel the component's programs launch for one target (both lowerings, as qdc lists them). */
static void list_for(const qd_plan_t* p, int32_t comp, qd_cuda_kernel_target_t t, qd_cuda_kernel_list_t* list) {
  qd_cuda_kernel_list_init(list, t, qd_allocator_system());
  const qd_plan_component_t* c = qd_plan_component(p, comp);
  for (int32_t r = 0; r < c->resolution_count; r++) {
    qd_graph_t* g;
    QD_ASSERT_OK(qd_plan_instantiate(p, comp, r, qd_allocator_system(), &g));
    QD_ASSERT_OK(qd_cuda_kernel_list_add_program(list, g, c->weights));
    qd_graph_destroy(g);
  }
}

static void check_coverage(const char* path, const int* ccs, int n_cc) {
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(path, qd_allocator_system(), QD_PLAN_OPEN_VERIFY_ALL, &p));
  const qd_plan_kernel_targets_t* t = qd_plan_kernel_targets(p);
  ck_assert(t->present);
  ck_assert_int_eq(t->count, n_cc);
  for (int i = 0; i < n_cc; i++) ck_assert_int_eq(t->cc[i], ccs[i]);
  ck_assert_int_eq(t->ptx_cc, ccs[0]);
  const qd_nvrtc_t* nv;
  QD_ASSERT_OK(qd_nvrtc_load(&nv));
  ck_assert_int_eq(t->nvrtc_major, nv->version_major);
  ck_assert_int_eq(t->nvrtc_minor, nv->version_minor);
  ck_assert_int_eq(t->cubin_min_driver, nv->version_major * 1000);

  const qd_plan_component_t* c = qd_plan_component(p, 0);
  int32_t expected = 0, cubins = 0, ptxs = 0;
  for (int i = 0; i <= n_cc; i++) {
    qd_cuda_kernel_target_t target = {i < n_cc ? ccs[i] : ccs[0], i == n_cc};
    qd_cuda_kernel_list_t list;
    list_for(p, 0, target, &list);
    /* The tiny model's head dim (16) has no attention kernel: those nodes are listed as unsupported. */
    ck_assert_int_eq(list.unsupported, 4);
    ck_assert_ptr_nonnull(strstr(list.first_unsupported, "head_dim is 16"));
    ck_assert_int_ge(list.count, 8);
    for (int32_t k = 0; k < list.count; k++) {
      const qd_cuda_kernel_t* kv = &list.items[k];
      const qd_plan_kernel_image_t* im = qd_plan_kernels_find(c->kernels, c->kernel_count, kv->key, kv->arch);
      ck_assert_msg(im != NULL, "%s: no %s image of %s", path, kv->arch, kv->key);
      ck_assert_str_eq(im->function, kv->function);
      if (im->ptx) {
        ck_assert(qd_ptx_has_function((const char*)im->data, (size_t)im->size, im->function));
        ptxs++;
      } else {
        ck_assert_int_eq(memcmp(im->data, "\x7f" "ELF", 4), 0);
        ck_assert(qd_cubin_has_function(im->data, (size_t)im->size, im->function));
        cubins++;
      }
      ck_assert_uint_eq((uintptr_t)im->data % QD_KERN_IMAGE_ALIGN, 0);
    }
    expected += list.count;
    qd_cuda_kernel_list_deinit(&list);
  }
  /* Exactly: nothing in the index that the listing does not ask for. */
  ck_assert_int_eq(c->kernel_count, expected);
  printf("  %s: %d images (%d cubins, %d PTX) for %d targets\n", path, expected, cubins, ptxs, n_cc);
  qd_plan_close(p);
}

START_TEST(kern_index_covers_the_lowering) {
  int both[2] = {80, 90}, hopper[1] = {90};
  check_coverage(plan_80_90, both, 2);
  check_coverage(plan_90, hopper, 1);
}
END_TEST

/* The lowering lists what the executor's node dispatch launches: a few spot checks of the variants themselves. */
START_TEST(listing_names_the_expected_variants) {
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan_80_90, qd_allocator_system(), 0, &p));
  qd_cuda_kernel_list_t list;
  list_for(p, 0, (qd_cuda_kernel_target_t){80, false}, &list);
  const char* want[] = {"nf4_dequant.cu:qd_nf4_dequant NF4_DOUBLE_QUANT=0", "layernorm_modulate.cu:qd_layernorm_modulate",
                        "qk_norm_rope.cu:qd_qk_norm_rope", "gated_residual.cu:qd_gated_residual",
                        "small_ops.cu:qd_timestep_embedding", "small_ops.cu:qd_rope_freqs", "small_ops.cu:qd_copy_rows",
                        "elementwise.cu:qd_ew_unary EW_OP=1"};
  for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
    bool found = false;
    for (int32_t k = 0; k < list.count && !found; k++)
      found = strncmp(list.items[k].key, want[w], strlen(want[w])) == 0 && strcmp(list.items[k].arch, "sm_80") == 0;
    ck_assert_msg(found, "no listed kernel starts with '%s'", want[w]);
  }
  qd_cuda_kernel_list_deinit(&list);
  qd_plan_close(p);
}
END_TEST

/* --- corrupt indexes -------------------------------------------------------------------------------------------- */

typedef struct {
  uint8_t* kern; /* a copy of the KERN section, to mutate */
  size_t kern_size;
  char* meta;    /* a copy of META's text, to mutate */
  size_t meta_size;
} sections_t;

typedef void (*mutate_fn)(sections_t* s);

static uint32_t get32(const uint8_t* p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t* p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint8_t* entry(sections_t* s, int i) { return s->kern + QD_KERN_HEADER_SIZE + (size_t)i * QD_KERN_ENTRY_SIZE; }

/* Copies the plan with KERN and META mutated (a NULL KERN drops the section). */
static void write_mutated(const char* good, const char* out, mutate_fn fn) {
  qd_allocator_t a = qd_allocator_system();
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(good, a, 0, &pf));
  const qd_plan_section_t* kern = qd_plan_file_find(pf, QD_PLAN_KIND_KERN, "transformer");
  const qd_plan_section_t* meta = qd_plan_file_find(pf, QD_PLAN_KIND_META, "");
  sections_t s = {malloc(kern->size), (size_t)kern->size, malloc(meta->size + 1), (size_t)meta->size};
  memcpy(s.kern, kern->data, kern->size);
  memcpy(s.meta, meta->data, meta->size);
  s.meta[s.meta_size] = '\0';
  fn(&s);
  qd_plan_writer_t* w;
  QD_ASSERT_OK(qd_plan_writer_create(out, a, &w));
  for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
    const qd_plan_section_t* sec = qd_plan_file_section(pf, i);
    const void* data = sec->data;
    size_t n = (size_t)sec->size;
    if (sec == kern) {
      if (!s.kern) continue;
      data = s.kern;
      n = s.kern_size;
    } else if (sec == meta) {
      data = s.meta;
      n = s.meta_size;
    }
    QD_ASSERT_OK(qd_plan_writer_begin_section(w, sec->kind, sec->name, 0, (size_t)1 << sec->align_log2));
    QD_ASSERT_OK(qd_plan_writer_write(w, data, n));
    QD_ASSERT_OK(qd_plan_writer_end_section(w));
  }
  QD_ASSERT_OK(qd_plan_writer_finish(w));
  qd_plan_writer_destroy(w);
  free(s.kern);
  free(s.meta);
  qd_plan_file_close(pf);
}

static void m_none(sections_t* s) { (void)s; }
static void m_offset_past_end(sections_t* s) { put64(entry(s, 0) + 24, (uint64_t)s->kern_size + 64); }
static void m_size_past_end(sections_t* s) { put64(entry(s, 1) + 32, (uint64_t)s->kern_size); }
static void m_misaligned(sections_t* s) { put64(entry(s, 2) + 24, get64(entry(s, 2) + 24) + 8); }
static void m_inside_index(sections_t* s) { put64(entry(s, 0) + 24, 0); }
static void m_duplicate(sections_t* s) { memcpy(entry(s, 1), entry(s, 0), QD_KERN_ENTRY_SIZE); }
static void m_unknown_arch(sections_t* s) {
  memset(entry(s, 0) + 8, 0, QD_KERN_ARCH_SIZE);
  memcpy(entry(s, 0) + 8, "sm_75", 5);
}
static void m_untargeted_arch(sections_t* s) {
  /* Known to qd, but not one this plan was built for. */
  memset(entry(s, 0) + 8, 0, QD_KERN_ARCH_SIZE);
  memcpy(entry(s, 0) + 8, "sm_86", 5);
}
static void m_arch_unterminated(sections_t* s) { memset(entry(s, 0) + 8, 'x', QD_KERN_ARCH_SIZE); }
static void m_key_past_pool(sections_t* s) { put32(entry(s, 0), get32(s->kern + 12) + 5); }
static void m_function_not_identifier(sections_t* s) {
  /* Point the function at the key (which holds ':' and spaces). */
  memcpy(entry(s, 0) + 4, entry(s, 0), 4);
}
static void m_version(sections_t* s) { put32(s->kern, 2); }
static void m_entry_size(sections_t* s) { put32(s->kern + 8, 40); }
static void m_count_past_end(sections_t* s) { put32(s->kern + 4, 60000); }
static void m_reserved(sections_t* s) { s->kern[20] = 1; }
static void m_entry_reserved(sections_t* s) { entry(s, 3)[44] = 1; }
static void m_not_elf(sections_t* s) {
  for (int i = 0;; i++)
    if (memcmp(entry(s, i) + 8, "sm_", 3) == 0) {
      s->kern[get64(entry(s, i) + 24)] ^= 0xff;
      return;
    }
}
static void m_ptx_unterminated(sections_t* s) {
  for (int i = 0;; i++)
    if (memcmp(entry(s, i) + 8, "compute_", 8) == 0) {
      s->kern[get64(entry(s, i) + 24) + get64(entry(s, i) + 32) - 1] = ' ';
      return;
    }
}
static void m_padding(sections_t* s) {
  /* The first byte after an image that does not end on a multiple of 64: padding before the next one. */
  for (uint32_t i = 0; i < get32(s->kern + 4); i++) {
    uint64_t end = get64(entry(s, (int)i) + 24) + get64(entry(s, (int)i) + 32);
    if (end % QD_KERN_IMAGE_ALIGN && end < s->kern_size) {
      s->kern[end] = 0x5a;
      return;
    }
  }
  ck_abort_msg("no image is followed by padding");
}
static void m_trailing(sections_t* s) {
  s->kern = realloc(s->kern, s->kern_size + 64);
  memset(s->kern + s->kern_size, 0, 64);
  s->kern[s->kern_size + 3] = 1;
  s->kern_size += 64;
}
static void m_replace_in_meta(sections_t* s, const char* from, const char* to) {
  char* at = strstr(s->meta, from);
  ck_assert_ptr_nonnull(at);
  size_t n = s->meta_size - (size_t)(at - s->meta) - strlen(from);
  char* out = malloc(s->meta_size - strlen(from) + strlen(to) + 1);
  memcpy(out, s->meta, (size_t)(at - s->meta));
  memcpy(out + (at - s->meta), to, strlen(to));
  memcpy(out + (at - s->meta) + strlen(to), at + strlen(from), n + 1);
  free(s->meta);
  s->meta = out;
  s->meta_size = strlen(out);
}
static void m_meta_unknown_target(sections_t* s) { m_replace_in_meta(s, "\"sm_80\"", "\"sm_75\""); }
static void m_meta_no_kernels(sections_t* s) { m_replace_in_meta(s, "\"kernels\":", "\"kernelz\":"); }
static void m_meta_ptx(sections_t* s) { m_replace_in_meta(s, "\"compute_80\"", "\"compute_90a\""); }

/* --- autotuning records: tuned variants and the rewritten plan ----------------------------------------------- */

/* The first node of the plan's first program whose sm_90 kernel key starts with `prefix`; its key and shape. */
static int32_t node_with_kernel(const qd_graph_t* g, const qd_cuda_lowering_t* l, const qd_plan_component_t* c,
                                const char* prefix, qd_cuda_kernel_t* k, char* shape, size_t shape_size) {
  for (int32_t i = 0; i < g->node_count; i++) {
    bool has;
    qd_status_t s = qd_cuda_node_kernel(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, i, k, &has);
    if (s) {
      qd_status_free(s);
      continue;
    }
    if (has && strncmp(k->key, prefix, strlen(prefix)) == 0) {
      qd_cuda_kernel_site_shape(g, i, shape, shape_size);
      return i;
    }
  }
  return -1;
}

/* A record for (site, shape) on sm_90 changes that node's variant on sm_90 cubins only; not on sm_80, not for PTX,
 * not for another shape; records that set a non-tunable or an unlisted value are errors naming the record. */
START_TEST(tuning_records_choose_variants) {
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan_80_90, qd_allocator_system(), 0, &p));
  const qd_plan_component_t* c = qd_plan_component(p, 0);
  qd_graph_t* g;
  QD_ASSERT_OK(qd_plan_instantiate(p, 0, 0, qd_allocator_system(), &g));
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT, qd_allocator_system(), &l));
  qd_cuda_kernel_t k, tuned;
  char shape[QD_TUNING_SHAPE_MAX];
  int32_t node = node_with_kernel(g, l, c, "layernorm_modulate.cu:qd_layernorm_modulate", &k, shape, sizeof shape);
  ck_assert_int_ge(node, 0);
  ck_assert_ptr_nonnull(strchr(shape, '<'));
  qd_tuning_t* t;
  QD_ASSERT_OK(qd_tuning_create(qd_allocator_system(), &t));
  snprintf(t->arch, sizeof t->arch, "sm_90");
  qd_tuning_kernel_t rec;
  memset(&rec, 0, sizeof rec);
  snprintf(rec.site, sizeof rec.site, "%s", k.key);
  snprintf(rec.shape, sizeof rec.shape, "%s", shape);
  rec.define_count = 1;
  snprintf(rec.defines[0].name, sizeof rec.defines[0].name, "LN_THREADS");
  rec.defines[0].value = 256;
  QD_ASSERT_OK(qd_tuning_add_kernel(t, &rec));
  bool has;
  QD_ASSERT_OK(qd_cuda_node_kernel_tuned(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, t, node, &tuned, &has));
  ck_assert(has);
  ck_assert_str_ne(tuned.key, k.key);
  ck_assert_ptr_nonnull(strstr(tuned.key, "LN_THREADS=256"));
  int v = 0;
  QD_ASSERT_OK(qd_kernel_config_get(&tuned.config, "LN_THREADS", &v));
  ck_assert_int_eq(v, 256);
  /* the same record leaves sm_80, PTX and a NULL record set at the default */
  qd_cuda_kernel_target_t others[2] = {{80, false}, {90, true}};
  for (int o = 0; o < 2; o++) {
    qd_cuda_kernel_t d, x;
    QD_ASSERT_OK(qd_cuda_node_kernel(g, l, c->weights, others[o], node, &d, &has));
    QD_ASSERT_OK(qd_cuda_node_kernel_tuned(g, l, c->weights, others[o], t, node, &x, &has));
    ck_assert_str_eq(x.key, d.key);
  }
  QD_ASSERT_OK(qd_cuda_node_kernel_tuned(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, NULL, node, &tuned, &has));
  ck_assert_str_eq(tuned.key, k.key);
  /* another shape: the default */
  snprintf(rec.shape, sizeof rec.shape, "1x2x3");
  t->kernels[0] = rec;
  QD_ASSERT_OK(qd_cuda_node_kernel_tuned(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, t, node, &tuned, &has));
  ck_assert_str_eq(tuned.key, k.key);
  /* a select parameter, and a value the template does not list */
  snprintf(rec.shape, sizeof rec.shape, "%s", shape);
  snprintf(rec.defines[0].name, sizeof rec.defines[0].name, "LN_MODULATE");
  rec.defines[0].value = 0;
  t->kernels[0] = rec;
  QD_ASSERT_DETAIL(qd_cuda_node_kernel_tuned(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, t, node, &tuned, &has),
                   QD_E_KERNEL_DEFINE_INVALID);
  snprintf(rec.defines[0].name, sizeof rec.defines[0].name, "LN_THREADS");
  rec.defines[0].value = 7;
  t->kernels[0] = rec;
  QD_ASSERT_DETAIL(qd_cuda_node_kernel_tuned(g, l, c->weights, (qd_cuda_kernel_target_t){90, false}, t, node, &tuned, &has),
                   QD_E_KERNEL_DEFINE_INVALID);
  qd_tuning_destroy(t);
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
  qd_plan_close(p);
}
END_TEST

/* qdc tune's rewrite (without a GPU: records made by hand): every section but KERN and TUNE comes through byte for
 * byte, TUNE holds the records, KERN gains the tuned variant's sm_90 cubin (and only that), and the new plan covers
 * what a tuned executor would load. Records for an architecture the plan lacks add no image. */
START_TEST(tuned_plan_rewrite) {
  qd_allocator_t a = qd_allocator_system();
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(plan_90, a, 0, &p));
  const qd_plan_component_t* c = qd_plan_component(p, 0);
  qd_graph_t* g;
  QD_ASSERT_OK(qd_plan_instantiate(p, 0, 0, a, &g));
  qd_cuda_lowering_t* l;
  QD_ASSERT_OK(qd_cuda_lowering_create(g, QD_LOWER_DEFAULT, a, &l));
  qd_cuda_kernel_t k;
  char shape[QD_TUNING_SHAPE_MAX];
  ck_assert_int_ge(node_with_kernel(g, l, c, "gated_residual.cu:qd_gated_residual", &k, shape, sizeof shape), 0);
  for (int arch = 0; arch < 2; arch++) {
    qd_tuning_t* t;
    QD_ASSERT_OK(qd_tuning_create(a, &t));
    snprintf(t->mode, sizeof t->mode, "default");
    snprintf(t->arch, sizeof t->arch, arch == 0 ? "sm_90" : "sm_86");
    snprintf(t->device, sizeof t->device, "a test");
    t->cublaslt = 130100;
    qd_tuning_kernel_t rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.site, sizeof rec.site, "%s", k.key);
    snprintf(rec.shape, sizeof rec.shape, "%s", shape);
    rec.define_count = 1;
    snprintf(rec.defines[0].name, sizeof rec.defines[0].name, "GR_THREADS");
    rec.defines[0].value = 512;
    QD_ASSERT_OK(qd_tuning_add_kernel(t, &rec));
    qd_tuning_gemm_t gm;
    memset(&gm, 0, sizeof gm);
    gm.m = 16, gm.n = 64, gm.k = 64, gm.batch = 1, gm.w_ld = 64, gm.y_ld = 64, gm.algo[0] = 7;
    QD_ASSERT_OK(qd_tuning_add_gemm(t, &gm));
    qd_cuda_kernel_list_t tuned;
    qd_cuda_kernel_list_init(&tuned, (qd_cuda_kernel_target_t){90, false}, a);
    tuned.tuning = t;
    QD_ASSERT_OK(qd_cuda_kernel_list_add_program(&tuned, g, c->weights));
    int32_t new_keys = 0;
    for (int32_t i = 0; i < tuned.count; i++)
      new_keys += !qd_plan_kernels_find(c->kernels, c->kernel_count, tuned.items[i].key, tuned.items[i].arch);
    ck_assert_int_eq(new_keys, arch == 0 ? 1 : 0);
    char out[600];
    snprintf(out, sizeof out, "%s/kern_tiny_90_tuned_%d.qplan", qd_test_tmp_dir(), arch);
    qd_tuning_t* records[1] = {t};
    QD_ASSERT_OK(qdc_autotune_write_plan(p, out, records, &tuned, a));
    qd_plan_t* q;
    QD_ASSERT_OK(qd_plan_open(out, a, QD_PLAN_OPEN_VERIFY_ALL, &q));
    /* every section but KERN and TUNE as it was */
    qd_plan_file_t *pf = qd_plan_container(p), *qf = qd_plan_container(q);
    for (size_t i = 0; i < qd_plan_file_section_count(pf); i++) {
      const qd_plan_section_t* x = qd_plan_file_section(pf, i);
      if (x->kind == QD_PLAN_KIND_KERN || x->kind == QD_PLAN_KIND_TUNE) continue;
      const qd_plan_section_t* y = qd_plan_file_find(qf, x->kind, x->name);
      ck_assert_ptr_nonnull(y);
      ck_assert_uint_eq(y->size, x->size);
      ck_assert_uint_eq(y->align_log2, x->align_log2);
      ck_assert_int_eq(memcmp(y->data, x->data, (size_t)x->size), 0);
    }
    /* TUNE: the records */
    const qd_plan_section_t* ts = qd_plan_file_find(qf, QD_PLAN_KIND_TUNE, qd_plan_component_name(q, 0));
    ck_assert_ptr_nonnull(ts);
    qd_tuning_t* back;
    QD_ASSERT_OK(qd_tuning_parse((const char*)ts->data, ts->size, out, a, &back));
    ck_assert_int_eq(back->kernel_count, 1);
    ck_assert_int_eq(back->gemm_count, 1);
    ck_assert_str_eq(back->arch, t->arch);
    ck_assert_int_eq(back->gemms[0].algo[0], 7);
    qd_tuning_destroy(back);
    /* KERN: the old images and the tuned one */
    const qd_plan_component_t* qc = qd_plan_component(q, 0);
    ck_assert_int_eq(qc->kernel_count, c->kernel_count + new_keys);
    for (int32_t i = 0; i < tuned.count; i++) {
      const qd_plan_kernel_image_t* im =
          qd_plan_kernels_find(qc->kernels, qc->kernel_count, tuned.items[i].key, tuned.items[i].arch);
      if (arch == 1 && !im) continue; /* sm_86 records: nothing added, and sm_90 keeps its defaults */
      ck_assert_msg(im != NULL, "no %s image of %s", tuned.items[i].arch, tuned.items[i].key);
      ck_assert(qd_cubin_has_function(im->data, (size_t)im->size, im->function));
    }
    qd_plan_close(q);
    /* qdc inspect summarizes the records */
    char cmd[1400], text[8192] = "";
    snprintf(cmd, sizeof cmd, "'%s' inspect '%s'", getenv("QD_QDC"), out);
    FILE* f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    ck_assert_int_eq(pclose(f), 0);
    char want[200];
    snprintf(want, sizeof want, "tuning: TUNE \"%s\": default on a test (%s, cuBLASLt 130100): 1 GEMM algorithm, 1 "
             "kernel variant", qd_plan_component_name(p, 0), t->arch);
    ck_assert_msg(strstr(text, want) != NULL, "qdc inspect lacks '%s':\n%s", want, text);
    /* qdrun --check says which records apply (whether it can run here or not) */
    snprintf(cmd, sizeof cmd, "'%s' --check '%s' 2>&1", getenv("QD_QDRUN"), out);
    f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    got = fread(text, 1, sizeof text - 1, f);
    text[got] = 0;
    pclose(f);
    snprintf(want, sizeof want, "tuning    '%s': 1 GEMM algorithm for cuBLASLt 130100 (", qd_plan_component_name(p, 0));
    ck_assert_msg(strstr(text, want) != NULL, "qdrun --check lacks '%s':\n%s", want, text);
    snprintf(want, sizeof want, "1 kernel variant for %s GPUs", t->arch);
    ck_assert_msg(strstr(text, want) != NULL, "qdrun --check lacks '%s':\n%s", want, text);
    remove(out);
    qd_cuda_kernel_list_deinit(&tuned);
    qd_tuning_destroy(t);
  }
  qd_cuda_lowering_destroy(l);
  qd_graph_destroy(g);
  qd_plan_close(p);
}
END_TEST

/* Without a GPU (the driver library pointed at nothing): qdc tune is an error that says so and leaves the plan as it
 * was; qdc compile --autotune writes the untuned plan and says why; a bad level is a usage error. */
START_TEST(autotune_without_a_gpu) {
  char copy[600], out[600], log[700], cmd[3000];
  snprintf(copy, sizeof copy, "%s/kern_tiny_tune_copy.qplan", qd_test_tmp_dir());
  snprintf(out, sizeof out, "%s/kern_tiny_tuned.qplan", qd_test_tmp_dir());
  snprintf(log, sizeof log, "%s/kern_tiny_tune.log", qd_test_tmp_dir());
  snprintf(cmd, sizeof cmd, "cp '%s' '%s'", plan_90, copy);
  ck_assert_int_eq(run_shell(cmd), 0);
  snprintf(cmd, sizeof cmd, "QD_CUDA_DRIVER_LIBRARY=/nonexistent/libcuda.so.1 '%s' tune '%s' > '%s' 2>&1",
           getenv("QD_QDC"), copy, log);
  ck_assert_int_eq(run_shell(cmd), 1);
  FILE* f = fopen(log, "r");
  ck_assert_ptr_nonnull(f);
  char text[4096] = "";
  text[fread(text, 1, sizeof text - 1, f)] = 0;
  fclose(f);
  ck_assert_msg(strstr(text, "qdc: error: tune:") && strstr(text, "no GPU to tune on"), "%s", text);
  snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", plan_90, copy);
  ck_assert_int_eq(run_shell(cmd), 0); /* untouched */
  snprintf(cmd, sizeof cmd, "QD_CUDA_DRIVER_LIBRARY=/nonexistent/libcuda.so.1 '%s' compile "
           "'%s/golden/flux_guided_weights.safetensors' --graph '%s/models/flux-transformer.json' --resolutions 32x32 "
           "--target none --threads 2 --autotune default -o '%s' > '%s' 2>&1",
           getenv("QD_QDC"), qd_test_data_dir(), getenv("QD_SOURCE_ROOT"), out, log);
  ck_assert_int_eq(run_shell(cmd), 0);
  f = fopen(log, "r");
  ck_assert_ptr_nonnull(f);
  text[fread(text, 1, sizeof text - 1, f)] = 0;
  fclose(f);
  ck_assert_msg(strstr(text, "autotune    no GPU to tune on"), "%s", text);
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(out, qd_allocator_system(), QD_PLAN_OPEN_VERIFY_ALL, &p));
  ck_assert_ptr_null(qd_plan_file_find(qd_plan_container(p), QD_PLAN_KIND_TUNE, "transformer"));
  qd_plan_close(p);
  snprintf(cmd, sizeof cmd, "'%s' compile x -o '%s' --autotune fast > '%s' 2>&1", getenv("QD_QDC"), out, log);
  ck_assert_int_eq(run_shell(cmd), 2);
  f = fopen(log, "r");
  ck_assert_ptr_nonnull(f);
  text[fread(text, 1, sizeof text - 1, f)] = 0;
  fclose(f);
  ck_assert_msg(strstr(text, "--autotune takes none, default or max, not 'fast'"), "%s", text);
  snprintf(cmd, sizeof cmd, "'%s' tune '%s' --level fast > '%s' 2>&1", getenv("QD_QDC"), copy, log);
  ck_assert_int_eq(run_shell(cmd), 2);
  remove(copy);
  remove(out);
  remove(log);
}
END_TEST

START_TEST(corrupt_kern_indexes_are_rejected) {
  char bad[512];
  snprintf(bad, sizeof bad, "%s/kern_bad.qplan", qd_test_tmp_dir());
  struct {
    mutate_fn fn;
    qd_error_detail_t want; /* QD_E_NONE: opens */
  } cases[] = {
      {m_none, QD_E_NONE},
      {m_offset_past_end, QD_E_PLAN_KERNEL_RANGE},
      {m_size_past_end, QD_E_PLAN_KERNEL_RANGE},
      {m_misaligned, QD_E_PLAN_KERNEL_RANGE},
      {m_inside_index, QD_E_PLAN_KERNEL_RANGE},
      {m_duplicate, QD_E_PLAN_KERNEL_DUPLICATE},
      {m_unknown_arch, QD_E_PLAN_KERNEL_ARCH},
      {m_untargeted_arch, QD_E_PLAN_KERNEL_ARCH},
      {m_arch_unterminated, QD_E_PLAN_KERNEL_INDEX},
      {m_key_past_pool, QD_E_PLAN_KERNEL_INDEX},
      {m_function_not_identifier, QD_E_PLAN_KERNEL_INDEX},
      {m_version, QD_E_PLAN_CONTENT_VERSION},
      {m_entry_size, QD_E_PLAN_KERNEL_INDEX},
      {m_count_past_end, QD_E_PLAN_KERNEL_INDEX},
      {m_reserved, QD_E_PLAN_KERNEL_INDEX},
      {m_entry_reserved, QD_E_PLAN_KERNEL_INDEX},
      {m_not_elf, QD_E_PLAN_KERNEL_IMAGE},
      {m_ptx_unterminated, QD_E_PLAN_KERNEL_IMAGE},
      {m_padding, QD_E_PLAN_KERNEL_RANGE},
      {m_trailing, QD_E_PLAN_KERNEL_RANGE},
      {m_meta_unknown_target, QD_E_PLAN_KERNEL_ARCH},
      {m_meta_no_kernels, QD_E_PLAN_CONTENT_FIELD},
      {m_meta_ptx, QD_E_PLAN_KERNEL_ARCH},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_mutated(plan_80_90, bad, cases[i].fn);
    qd_plan_t* p = NULL;
    qd_status_t s = qd_plan_open(bad, qd_allocator_system(), 0, &p);
    char msg[1024] = "";
    qd_status_format(s, msg, sizeof msg);
    printf("  case %2zu: %-24s %s\n", i, s ? qd_error_detail_name(qd_status_detail(s)) : "ok", msg);
    ck_assert_msg(qd_status_detail(s) == cases[i].want, "case %zu: expected %s, got %s: %s", i,
                  qd_error_detail_name(cases[i].want), qd_error_detail_name(qd_status_detail(s)), msg);
    qd_status_free(s);
    qd_plan_close(p);
  }
}
END_TEST

/* A plan may leave a component's KERN out (qdrun then compiles with NVRTC); META still says what it was built for. */
static void m_drop_kern(sections_t* s) {
  free(s->kern);
  s->kern = NULL;
}

START_TEST(kern_may_be_absent) {
  char path[512];
  snprintf(path, sizeof path, "%s/kern_dropped.qplan", qd_test_tmp_dir());
  write_mutated(plan_80_90, path, m_drop_kern);
  qd_plan_t* p;
  QD_ASSERT_OK(qd_plan_open(path, qd_allocator_system(), 0, &p));
  ck_assert(qd_plan_kernel_targets(p)->present);
  ck_assert_int_eq(qd_plan_component(p, 0)->kernel_count, 0);
  qd_plan_close(p);
}
END_TEST

/* The reader on hostile bytes: every truncation of the index, every byte of header and entries flipped, and every
 * allocation failing; each ends with a status (or, for harmless flips, success) and no leak. */
START_TEST(kern_reader_sweeps) {
  qd_plan_file_t* pf;
  QD_ASSERT_OK(qd_plan_file_open(plan_80_90, qd_allocator_system(), 0, &pf));
  const qd_plan_section_t* kern = qd_plan_file_find(pf, QD_PLAN_KIND_KERN, "transformer");
  const uint8_t* d = kern->data;
  uint32_t count = get32(d + 4);
  size_t index_end = QD_KERN_HEADER_SIZE + (size_t)count * QD_KERN_ENTRY_SIZE + get32(d + 12);
  qd_plan_kernel_targets_t t = {.present = true, .count = 2, .cc = {80, 90}, .ptx_cc = 80};
  /* Truncations, each copy exactly its size so ASan sees any read past it. */
  for (size_t n = 0; n <= index_end + 256; n++) {
    uint8_t* copy = malloc(n ? n : 1);
    memcpy(copy, d, n);
    qd_plan_kernel_image_t* im;
    int32_t k;
    qd_status_t s = qd_plan_kernels_parse("t.qplan", "transformer", copy, n, &t, qd_allocator_system(), &im, &k);
    ck_assert_msg(s != QD_OK, "a KERN section truncated to %zu bytes was accepted", n);
    qd_status_free(s);
    free(copy);
  }
  /* Bit flips over header and entry table. */
  uint8_t* copy = malloc(kern->size);
  for (size_t at = 0; at < QD_KERN_HEADER_SIZE + (size_t)count * QD_KERN_ENTRY_SIZE; at++) {
    memcpy(copy, d, kern->size);
    copy[at] ^= 0xa5;
    qd_plan_kernel_image_t* im;
    int32_t k;
    qd_status_t s = qd_plan_kernels_parse("t.qplan", "transformer", copy, kern->size, &t, qd_allocator_system(), &im, &k);
    if (!s) qd_plan_kernels_free(qd_allocator_system(), im, k);
    qd_status_free(s);
  }
  free(copy);
  /* Allocation failures. */
  for (uint64_t fail = 1;; fail++) {
    qd_test_allocator_t ta;
    qd_test_allocator_init(&ta, qd_allocator_system(), fail);
    qd_allocator_t a = qd_test_allocator_as_allocator(&ta);
    qd_plan_kernel_image_t* im;
    int32_t k;
    qd_status_t s = qd_plan_kernels_parse("t.qplan", "transformer", d, kern->size, &t, a, &im, &k);
    if (!s) {
      qd_plan_kernels_free(a, im, k);
      ck_assert_int_eq(ta.live_count, 0);
      ck_assert_uint_eq(ta.failures, 0);
      break;
    }
    ck_assert_int_eq(qd_status_code(s), QD_CODE_OUT_OF_MEMORY);
    qd_status_free(s);
    ck_assert_int_eq(ta.live_count, 0);
  }
  qd_plan_file_close(pf);
}
END_TEST

/* --- targets and the executor's choice --------------------------------------------------------------------------- */

START_TEST(targets_parse) {
  int32_t cc[4], n;
  QD_ASSERT_OK(qdc_targets_parse("sm_90,sm_80", cc, &n));
  ck_assert_int_eq(n, 2);
  ck_assert_int_eq(cc[0], 80);
  ck_assert_int_eq(cc[1], 90);
  QD_ASSERT_OK(qdc_targets_parse("86,sm_86,89,sm_90,80", cc, &n));
  ck_assert_int_eq(n, 4);
  ck_assert_int_eq(cc[3], 90);
  QD_ASSERT_OK(qdc_targets_parse("none", cc, &n));
  ck_assert_int_eq(n, 0);
  QD_ASSERT_DETAIL(qdc_targets_parse("sm_75", cc, &n), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qdc_targets_parse("sm_90a", cc, &n), QD_E_INVALID_ARGUMENT);
  QD_ASSERT_DETAIL(qdc_targets_parse(",", cc, &n), QD_E_INVALID_ARGUMENT);
  /* The command line says so with a usage error, before any work. */
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' compile x.safetensors -o '%s/never.qplan' --target sm_70 2>/dev/null", getenv("QD_QDC"),
           qd_test_tmp_dir());
  ck_assert_int_eq(run_shell(cmd), 2);
}
END_TEST

static qd_cuda_kernel_source_t choose(const qd_plan_kernel_targets_t* t, int cc, int driver, const char* nvrtc,
                                      const char* expect_in_why) {
  qd_cuda_kernel_choice_t c;
  qd_cuda_kernel_choose(t, cc, driver, nvrtc, &c);
  if (expect_in_why) ck_assert_msg(strstr(c.why, expect_in_why), "'%s' does not say '%s'", c.why, expect_in_why);
  return c.source;
}

START_TEST(executor_kernel_choice) {
  qd_plan_kernel_targets_t t = {.present = true, .count = 2, .cc = {80, 86}, .ptx_cc = 80, .nvrtc_major = 13,
                                .cubin_min_driver = 13000, .ptx_min_driver = 13000};
  qd_cuda_kernel_choice_t c;
  qd_cuda_kernel_choose(&t, 86, 13000, NULL, &c);
  ck_assert_int_eq(c.source, QD_CUDA_KERNELS_CUBIN);
  ck_assert_int_eq(c.target.cc, 86);
  ck_assert(!c.target.ptx);
  /* A newer GPU: the lowest target's PTX, listed for that target. */
  qd_cuda_kernel_choose(&t, 90, 13000, "missing", &c);
  ck_assert_int_eq(c.source, QD_CUDA_KERNELS_PTX);
  ck_assert_int_eq(c.target.cc, 80);
  ck_assert(c.target.ptx);
  /* Too old a driver for either: NVRTC when there, else the driver is named as the fix. */
  ck_assert_int_eq(choose(&t, 86, 12080, NULL, "with NVRTC"), QD_CUDA_KERNELS_NVRTC);
  ck_assert_int_eq(choose(&t, 86, 12080, "not found", "update the driver to CUDA 13.0"), QD_CUDA_KERNELS_NONE);
  /* The message the issue asks for. */
  t.ptx_cc = 0;
  ck_assert_int_eq(choose(&t, 90, 13000, "not found", "this plan was built for sm_80, sm_86; this GPU is sm_90: "
                          "recompile with --target sm_90"), QD_CUDA_KERNELS_NONE);
  /* An older GPU than the PTX. */
  qd_plan_kernel_targets_t h = {.present = true, .count = 1, .cc = {90}, .ptx_cc = 90, .cubin_min_driver = 13000,
                                .ptx_min_driver = 13000};
  ck_assert_int_eq(choose(&h, 89, 13000, "not found", "compute_90 PTX needs sm_90 or newer"), QD_CUDA_KERNELS_NONE);
  ck_assert_int_eq(choose(&h, 89, 13000, NULL, NULL), QD_CUDA_KERNELS_NVRTC);
  /* No kernels at all; a GPU too old for qd. */
  qd_plan_kernel_targets_t none = {0};
  ck_assert_int_eq(choose(&none, 90, 13000, "not found", "carries no compiled kernels"), QD_CUDA_KERNELS_NONE);
  ck_assert_int_eq(choose(&none, 90, 13000, NULL, NULL), QD_CUDA_KERNELS_NVRTC);
  ck_assert_int_eq(choose(&t, 75, 13000, NULL, "sm_80 or newer"), QD_CUDA_KERNELS_NONE);
}
END_TEST

/* --- qdrun --check ------------------------------------------------------------------------------------------------ */

typedef struct {
  int rc;
  char out[65536];
} run_t;

static void run_check(const char* env, const char* plan, const char* flags, run_t* r) {
  char path[512], cmd[2048];
  snprintf(path, sizeof path, "%s/kern_check.out", qd_test_tmp_dir());
  snprintf(cmd, sizeof cmd, "env %s '%s' --check %s '%s' >'%s' 2>&1", env, getenv("QD_QDRUN"), flags, plan, path);
  r->rc = run_shell(cmd);
  FILE* f = fopen(path, "rb");
  size_t n = f ? fread(r->out, 1, sizeof r->out - 1, f) : 0;
  r->out[n] = '\0';
  if (f) fclose(f);
  printf("  $ %s\n%s", cmd, r->out);
}

START_TEST(qdrun_check_without_a_driver) {
  qd_device_list_t* list = NULL;
  qd_status_t s = qd_devices_query(qd_allocator_system(), &list);
  bool no_driver = qd_status_is(s, QD_E_CUDA_NO_DRIVER);
  qd_status_free(s);
  qd_device_list_destroy(list);
  if (!no_driver) {
    printf("  skipped: this machine has a CUDA driver\n");
    return;
  }
  run_t r;
  run_check("", plan_80_90, "", &r);
  ck_assert_int_eq(r.rc, 1);
  ck_assert_ptr_nonnull(strstr(r.out, "no CUDA driver"));
  ck_assert_ptr_nonnull(strstr(r.out, "cubins for sm_80, sm_90, PTX for compute_80"));
  run_check("", plan_80_90, "--json", &r);
  ck_assert_int_eq(r.rc, 1);
  cJSON* j = cJSON_Parse(r.out);
  ck_assert_ptr_nonnull(j);
  ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(j, "can_run")));
  ck_assert_ptr_nonnull(strstr(cJSON_GetObjectItem(j, "reason")->valuestring, "no CUDA driver"));
  ck_assert_int_gt(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "memory"), "total")->valuedouble, 32 << 20);
  cJSON_Delete(j);
}
END_TEST

/* A plan from a qd whose template had other text: one key's source digest differs. */
static void m_stale_source(sections_t* s) {
  size_t pool = QD_KERN_HEADER_SIZE + (size_t)get32(s->kern + 4) * QD_KERN_ENTRY_SIZE;
  char* at = memmem(s->kern + pool, get32(s->kern + 12), " src=", 5);
  ck_assert_ptr_nonnull(at);
  at[5] = at[5] == '0' ? '1' : '0';
}

/* The first device's kernel source and reason (and its problems), from --json on the fake driver. */
static int fake_check_full(const char* plan, const char* env, char* source, char* why, size_t why_size,
                           char* problem, size_t problem_size, int* missing) {
  char full[1024];
  snprintf(full, sizeof full, "QD_CUDA_DRIVER_LIBRARY='%s' %s", getenv("QD_FAKE_CUDA_DRIVER"), env);
  run_t r;
  run_check(full, plan, "--json", &r);
  cJSON* j = cJSON_Parse(r.out);
  ck_assert_msg(j != NULL, "not JSON: %s", r.out);
  cJSON* d0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "devices"), 0);
  ck_assert_ptr_nonnull(d0);
  cJSON* k = cJSON_GetObjectItem(d0, "kernels");
  snprintf(source, 16, "%s", cJSON_GetObjectItem(k, "source")->valuestring);
  snprintf(why, why_size, "%s", cJSON_GetObjectItem(k, "why")->valuestring);
  size_t used = 0;
  for (cJSON* pr = cJSON_GetObjectItem(d0, "problems")->child; problem && pr && used < problem_size; pr = pr->next)
    used += (size_t)snprintf(problem + used, problem_size - used, "%s\n", pr->valuestring);
  if (missing) *missing = (int)cJSON_GetObjectItem(k, "missing")->valuedouble;
  cJSON_Delete(j);
  return r.rc;
}

static int fake_check(const char* plan, const char* env, char* source, char* why, size_t why_size) {
  return fake_check_full(plan, env, source, why, why_size, NULL, 0, NULL);
}

START_TEST(qdrun_check_on_the_fake_driver) {
  char src[16], why[1024];
  /* sm_90 with a CUDA 13.2 driver: the plan's cubins. The tiny model still cannot run (no attention kernel for
   * head dim 16), which --check says. */
  ck_assert_int_eq(fake_check(plan_80_90, "QD_FAKE_CUDA_MODE=new", src, why, sizeof why), 1);
  ck_assert_str_eq(src, "cubin");
  /* sm_86 is not a target: the sm_80 PTX, JIT-compiled. */
  ck_assert_int_eq(fake_check(plan_80_90, "QD_FAKE_CUDA_MODE=new QD_FAKE_CUDA_CC=86", src, why, sizeof why), 1);
  ck_assert_str_eq(src, "ptx");
  ck_assert_ptr_nonnull(strstr(why, "JIT"));
  /* A CUDA 12.8 driver cannot load NVRTC 13's images: NVRTC compiles, or nothing can. */
  ck_assert_int_eq(fake_check(plan_80_90, "", src, why, sizeof why), 1);
  ck_assert_str_eq(src, "nvrtc");
  ck_assert_int_eq(fake_check(plan_80_90, "QD_NVRTC_LIBRARY=/nonexistent/libnvrtc.so", src, why, sizeof why), 1);
  ck_assert_str_eq(src, "none");
  ck_assert_ptr_nonnull(strstr(why, "update the driver"));
  /* Built for sm_90 only, on an sm_86 GPU without NVRTC. */
  ck_assert_int_eq(fake_check(plan_90, "QD_FAKE_CUDA_MODE=new QD_FAKE_CUDA_CC=86 QD_NVRTC_LIBRARY=/nonexistent/x.so",
                              src, why, sizeof why), 1);
  ck_assert_str_eq(src, "none");
  ck_assert_ptr_nonnull(strstr(why, "this plan was built for sm_90; this GPU is sm_86: recompile with --target sm_86"));
  /* Built from other kernel sources: the images are not found under this qd's keys. */
  char stale[512], problem[4096];
  int missing = 0;
  snprintf(stale, sizeof stale, "%s/kern_stale.qplan", qd_test_tmp_dir());
  write_mutated(plan_80_90, stale, m_stale_source);
  ck_assert_int_eq(fake_check_full(stale, "QD_FAKE_CUDA_MODE=new QD_NVRTC_LIBRARY=/nonexistent/x.so", src, why,
                                   sizeof why, problem, sizeof problem, &missing), 1);
  ck_assert_str_eq(src, "cubin");
  ck_assert_int_eq(missing, 1);
  ck_assert_ptr_nonnull(strstr(problem, "other kernel sources"));
}
END_TEST

static Suite* plan_kernels_suite(void) {
  Suite* s = suite_create("plan_kernels");
  TCase* tc = tcase_create("core");
  tcase_add_unchecked_fixture(tc, setup, NULL);
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, kern_index_covers_the_lowering);
  tcase_add_test(tc, listing_names_the_expected_variants);
  tcase_add_test(tc, tuning_records_choose_variants);
  tcase_add_test(tc, tuned_plan_rewrite);
  tcase_add_test(tc, autotune_without_a_gpu);
  tcase_add_test(tc, corrupt_kern_indexes_are_rejected);
  tcase_add_test(tc, kern_may_be_absent);
  tcase_add_test(tc, kern_reader_sweeps);
  tcase_add_test(tc, targets_parse);
  tcase_add_test(tc, executor_kernel_choice);
  tcase_add_test(tc, qdrun_check_without_a_driver);
  tcase_add_test(tc, qdrun_check_on_the_fake_driver);
  suite_add_tcase(s, tc);
  return s;
}

QD_TEST_MAIN(plan_kernels_suite)
