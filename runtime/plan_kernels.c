/* Reading a plan's kernels (META "kernels" and the KERN sections); see plan_kernels.h. The index comes from a file
 * that may be hostile: every offset and size is checked with overflow-safe arithmetic before any byte it names is
 * read, and an image is handed out only after its contents were checked too (a cubin is an ELF holding its function,
 * PTX is NUL-terminated text declaring it), so the driver never sees bytes the index merely claims are code. */
#include "runtime/plan_kernels.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cuda/kernel_compile.h"

const int qd_kernel_known_targets[QD_KERN_MAX_TARGETS] = {80, 86, 89, 90};

static bool qd_kernel_cc_known_(int cc) {
  for (int i = 0; i < QD_KERN_MAX_TARGETS; i++)
    if (qd_kernel_known_targets[i] == cc) return true;
  return false;
}

/* Two decimal digits and nothing after them (or "a" when allowed); -1 otherwise. */
static int qd_kernel_cc_digits_(const char* p, bool allow_a, bool* out_a) {
  if (!isdigit((unsigned char)p[0]) || !isdigit((unsigned char)p[1])) return -1;
  int cc = (p[0] - '0') * 10 + (p[1] - '0');
  *out_a = false;
  if (p[2] == '\0') return cc;
  if (allow_a && p[2] == 'a' && p[3] == '\0') {
    *out_a = true;
    return cc;
  }
  return -1;
}

int qd_kernel_target_parse(const char* text) {
  if (!text) return 0;
  const char* p = strncmp(text, "sm_", 3) == 0 ? text + 3 : text;
  bool a;
  int cc = qd_kernel_cc_digits_(p, false, &a);
  return cc > 0 && qd_kernel_cc_known_(cc) ? cc : 0;
}

bool qd_kernel_arch_parse(const char* arch, int* out_cc, bool* out_ptx) {
  bool ptx = strncmp(arch, "compute_", 8) == 0, a = false;
  if (!ptx && strncmp(arch, "sm_", 3) != 0) return false;
  int cc = qd_kernel_cc_digits_(arch + (ptx ? 8 : 3), !ptx, &a);
  if (cc < 0 || !qd_kernel_cc_known_(cc)) return false;
  /* Only the Hopper attention kernel is built architecture-specific, and PTX is never: "a" code does not run on
   * later GPUs, which is what PTX is for. */
  if (a && cc != 90) return false;
  if (out_cc) *out_cc = cc;
  if (out_ptx) *out_ptx = ptx;
  return true;
}

const char* qd_plan_kernel_targets_format(const qd_plan_kernel_targets_t* t, char* buf, size_t size) {
  size_t used = 0;
  buf[0] = '\0';
  for (int32_t i = 0; t && i < t->count && used < size; i++) {
    int n = snprintf(buf + used, size - used, "%ssm_%d", i ? ", " : "", t->cc[i]);
    if (n > 0) used += (size_t)n;
  }
  if (!t || t->count == 0) snprintf(buf, size, "none");
  return buf;
}

bool qd_plan_kernel_targets_has(const qd_plan_kernel_targets_t* t, int cc) {
  for (int32_t i = 0; t && i < t->count; i++)
    if (t->cc[i] == cc) return true;
  return false;
}

/* --- META "kernels" -------------------------------------------------------------------------------------- */

static qd_status_t qd_kmeta_field_(const char* plan, const char* key, const char* what) {
  return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: META: kernels.%s %s", plan, key, what);
}

static qd_status_t qd_kmeta_int_(const char* plan, const cJSON* k, const char* key, int* out) {
  const cJSON* v = cJSON_GetObjectItemCaseSensitive(k, key);
  if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 || v->valuedouble > 1e6)
    return qd_kmeta_field_(plan, key, v ? "is not an integer from 0 to 1000000" : "is missing");
  *out = (int)v->valuedouble;
  return QD_OK;
}

qd_status_t qd_plan_kernels_parse_meta(const char* plan, const cJSON* meta, qd_plan_kernel_targets_t* out) {
  memset(out, 0, sizeof *out);
  const cJSON* k = cJSON_GetObjectItemCaseSensitive(meta, "kernels");
  if (!k) return QD_OK;
  if (!cJSON_IsObject(k)) return QD_ERR(BAD_INPUT, PLAN_CONTENT_FIELD, "%s: META: \"kernels\" is not an object", plan);
  qd_plan_kernel_targets_t t = {.present = true};
  const cJSON* targets = cJSON_GetObjectItemCaseSensitive(k, "targets");
  if (!cJSON_IsArray(targets) || cJSON_GetArraySize(targets) > QD_KERN_MAX_TARGETS)
    return qd_kmeta_field_(plan, "targets", "is not an array of at most 4 architectures");
  for (const cJSON* e = targets->child; e; e = e->next) {
    int cc = cJSON_IsString(e) && strncmp(e->valuestring, "sm_", 3) == 0 ? qd_kernel_target_parse(e->valuestring) : 0;
    if (!cc)
      return QD_ERR(BAD_INPUT, PLAN_KERNEL_ARCH, "%s: META: kernels.targets holds %s%s%s; this qd builds for sm_80, "
                    "sm_86, sm_89 and sm_90", plan, cJSON_IsString(e) ? "'" : "a non-string",
                    cJSON_IsString(e) ? e->valuestring : "", cJSON_IsString(e) ? "'" : "");
    /* Ascending and distinct, as the compiler writes them: lookups and messages can rely on the order. */
    if (t.count && cc <= t.cc[t.count - 1])
      return qd_kmeta_field_(plan, "targets", "is not in ascending order without repeats");
    t.cc[t.count++] = cc;
  }
  const cJSON* ptx = cJSON_GetObjectItemCaseSensitive(k, "ptx");
  if (ptx && !cJSON_IsNull(ptx)) {
    bool is_ptx = false;
    if (!cJSON_IsString(ptx) || !qd_kernel_arch_parse(ptx->valuestring, &t.ptx_cc, &is_ptx) || !is_ptx)
      return QD_ERR(BAD_INPUT, PLAN_KERNEL_ARCH, "%s: META: kernels.ptx is %s%s%s; expected compute_80, compute_86, "
                    "compute_89 or compute_90", plan, cJSON_IsString(ptx) ? "'" : "not a string", 
                    cJSON_IsString(ptx) ? ptx->valuestring : "", cJSON_IsString(ptx) ? "'" : "");
  }
  const cJSON* nv = cJSON_GetObjectItemCaseSensitive(k, "nvrtc");
  if (!cJSON_IsString(nv) || sscanf(nv->valuestring, "%d.%d", &t.nvrtc_major, &t.nvrtc_minor) != 2)
    return qd_kmeta_field_(plan, "nvrtc", "is not a version string such as \"13.0\"");
  QD_TRY(qd_kmeta_int_(plan, k, "cubin_min_driver", &t.cubin_min_driver));
  QD_TRY(qd_kmeta_int_(plan, k, "ptx_min_driver", &t.ptx_min_driver));
  *out = t;
  return QD_OK;
}

/* --- KERN sections --------------------------------------------------------------------------------------- */

static uint32_t qd_kle32_(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t qd_kle64_(const uint8_t* p) { return (uint64_t)qd_kle32_(p) | (uint64_t)qd_kle32_(p + 4) << 32; }

typedef struct qd_kctx {
  const char* plan;
  const char* component;
} qd_kctx_t;

#define QD_KERR_(c, detail, fmt, ...) \
  QD_ERR(BAD_INPUT, detail, "%s: KERN/%s: " fmt, (c)->plan, (c)->component, __VA_ARGS__)

/* A string of the pool: in range, NUL-terminated inside the pool, printable ASCII, not empty. */
static qd_status_t qd_kstring_(const qd_kctx_t* c, const uint8_t* pool, uint32_t pool_size, uint32_t off,
                               int32_t entry, const char* field, const char** out) {
  if (off >= pool_size)
    return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %d: %s offset %u lies outside the %u-byte string pool", entry, field,
                    off, pool_size);
  const uint8_t* end = memchr(pool + off, 0, pool_size - off);
  if (!end)
    return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %d: %s at pool offset %u is not NUL-terminated", entry, field, off);
  if (end == pool + off) return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %d: %s is empty", entry, field);
  for (const uint8_t* p = pool + off; p < end; p++)
    if (*p < 0x20 || *p > 0x7e)
      return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %d: %s holds byte 0x%02x at pool offset %u; expected printable "
                      "ASCII", entry, field, *p, (unsigned)(p - pool));
  *out = (const char*)(pool + off);
  return QD_OK;
}

static bool qd_kidentifier_(const char* s) {
  if (!isalpha((unsigned char)s[0]) && s[0] != '_') return false;
  for (const char* p = s; *p; p++)
    if (!isalnum((unsigned char)*p) && *p != '_') return false;
  return true;
}

static int qd_kimage_cmp_(const void* a, const void* b) {
  const qd_plan_kernel_image_t *x = a, *y = b;
  int k = strcmp(x->key, y->key);
  return k ? k : strcmp(x->arch, y->arch);
}

static int qd_koffset_cmp_(const void* a, const void* b) {
  const qd_plan_kernel_image_t *x = *(const qd_plan_kernel_image_t* const*)a,
                               *y = *(const qd_plan_kernel_image_t* const*)b;
  return (x->data > y->data) - (x->data < y->data);
}

/* Whether an architecture is one the plan's targets produce: their cubins, sm_90a with sm_90, their PTX. */
static bool qd_karch_covered_(const qd_plan_kernel_targets_t* t, const char* arch, int cc, bool ptx) {
  if (ptx) return t->ptx_cc == cc;
  return qd_plan_kernel_targets_has(t, cc) && (strcmp(arch + 3, "90a") != 0 || cc == 90);
}

/* The checks that need the entry table only; fills images[] (data pointers unchecked until qd_kranges_). */
static qd_status_t qd_kentries_(const qd_kctx_t* c, const uint8_t* d, uint64_t size, uint32_t count,
                                const uint8_t* pool, uint32_t pool_size, uint64_t pool_end,
                                const qd_plan_kernel_targets_t* targets, qd_plan_kernel_image_t* images) {
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t* e = d + QD_KERN_HEADER_SIZE + (uint64_t)i * QD_KERN_ENTRY_SIZE;
    qd_plan_kernel_image_t* im = &images[i];
    QD_TRY(qd_kstring_(c, pool, pool_size, qd_kle32_(e), (int32_t)i, "key", &im->key));
    QD_TRY(qd_kstring_(c, pool, pool_size, qd_kle32_(e + 4), (int32_t)i, "function", &im->function));
    if (!qd_kidentifier_(im->function))
      return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %u: function '%s' is not a C identifier", i, im->function);
    const uint8_t* arch = e + 8;
    const uint8_t* nul = memchr(arch, 0, QD_KERN_ARCH_SIZE);
    bool padded = nul != NULL;
    for (const uint8_t* p = nul; p && p < arch + QD_KERN_ARCH_SIZE; p++) padded = padded && *p == 0;
    bool printable = true;
    for (const uint8_t* p = arch; p < (nul ? nul : arch + QD_KERN_ARCH_SIZE); p++) printable = printable && *p >= 0x20 && *p <= 0x7e;
    if (!padded || !printable || nul == arch)
      return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %u ('%s'): the architecture field is not printable ASCII then NUL "
                      "padding within %d bytes", i, im->key, QD_KERN_ARCH_SIZE);
    memcpy(im->arch, arch, QD_KERN_ARCH_SIZE);
    if (!qd_kernel_arch_parse(im->arch, &im->cc, &im->ptx))
      return QD_KERR_(c, PLAN_KERNEL_ARCH, "entry %u ('%s'): unknown architecture '%s'; this qd loads sm_80, sm_86, "
                      "sm_89, sm_90, sm_90a and compute_80 .. compute_90", i, im->key, im->arch);
    if (targets && !qd_karch_covered_(targets, im->arch, im->cc, im->ptx)) {
      char list[64];
      return QD_KERR_(c, PLAN_KERNEL_ARCH, "entry %u ('%s'): architecture '%s' is not one the plan was built for "
                      "(META kernels: targets %s, PTX %s%d)", i, im->key, im->arch,
                      qd_plan_kernel_targets_format(targets, list, sizeof list), targets->ptx_cc ? "compute_" : "none",
                      targets->ptx_cc);
    }
    uint64_t off = qd_kle64_(e + 24), n = qd_kle64_(e + 32);
    if (qd_kle64_(e + 40) != 0)
      return QD_KERR_(c, PLAN_KERNEL_INDEX, "entry %u ('%s' for %s): reserved field is not zero", i, im->key, im->arch);
    if (off > size || n > size - off || n == 0)
      return QD_KERR_(c, PLAN_KERNEL_RANGE, "entry %u ('%s' for %s): image [%llu, +%llu) lies outside the %llu-byte "
                      "section", i, im->key, im->arch, (unsigned long long)off, (unsigned long long)n,
                      (unsigned long long)size);
    if (off % QD_KERN_IMAGE_ALIGN || off < pool_end)
      return QD_KERR_(c, PLAN_KERNEL_RANGE, "entry %u ('%s' for %s): image offset %llu is %s", i, im->key, im->arch,
                      (unsigned long long)off, off < pool_end ? "inside the index" : "not a multiple of 64");
    im->data = d + off;
    im->size = n;
  }
  return QD_OK;
}

/* Images in offset order: no overlaps, zero bytes between them, the section ending with the last. */
static qd_status_t qd_kranges_(const qd_kctx_t* c, const uint8_t* d, uint64_t size, uint64_t pool_end,
                               qd_plan_kernel_image_t** by_offset, uint32_t count) {
  qsort(by_offset, count, sizeof *by_offset, qd_koffset_cmp_);
  uint64_t pos = pool_end;
  for (uint32_t i = 0; i <= count; i++) {
    uint64_t next = i < count ? (uint64_t)(by_offset[i]->data - d) : size;
    if (next < pos)
      return QD_KERR_(c, PLAN_KERNEL_RANGE, "images '%s' (%s) and '%s' (%s) share bytes at offset %llu",
                      by_offset[i - 1]->key, by_offset[i - 1]->arch, by_offset[i]->key, by_offset[i]->arch,
                      (unsigned long long)next);
    for (uint64_t b = pos; b < next; b++)
      if (d[b])
        return QD_KERR_(c, PLAN_KERNEL_RANGE, "byte %llu, %s, is 0x%02x; the bytes between images are zero",
                        (unsigned long long)b, i < count ? "before an image" : "after the last image", d[b]);
    if (i < count) pos = next + by_offset[i]->size;
  }
  return QD_OK;
}

static qd_status_t qd_kcontents_(const qd_kctx_t* c, const qd_plan_kernel_image_t* im) {
  if (im->ptx) {
    const uint8_t* nul = memchr(im->data, 0, (size_t)im->size);
    if (nul != im->data + im->size - 1)
      return QD_KERR_(c, PLAN_KERNEL_IMAGE, "'%s' for %s: the PTX is not text ending in one NUL", im->key, im->arch);
    if (!qd_ptx_has_function((const char*)im->data, (size_t)im->size, im->function))
      return QD_KERR_(c, PLAN_KERNEL_IMAGE, "'%s' for %s: the PTX declares no entry '%s'", im->key, im->arch,
                      im->function);
  } else if (!qd_cubin_has_function(im->data, (size_t)im->size, im->function)) {
    return QD_KERR_(c, PLAN_KERNEL_IMAGE, "'%s' for %s: the image is not a 64-bit ELF cubin defining kernel '%s'",
                    im->key, im->arch, im->function);
  }
  return QD_OK;
}

qd_status_t qd_plan_kernels_parse(const char* plan, const char* component, const void* data, uint64_t size,
                                  const qd_plan_kernel_targets_t* targets, qd_allocator_t a,
                                  qd_plan_kernel_image_t** out_images, int32_t* out_count) {
  *out_images = NULL;
  *out_count = 0;
  qd_kctx_t c = {plan, component};
  const uint8_t* d = data;
  if (size < QD_KERN_HEADER_SIZE)
    return QD_KERR_(&c, PLAN_KERNEL_INDEX, "the section is %llu bytes; its index header alone is %d",
                    (unsigned long long)size, QD_KERN_HEADER_SIZE);
  uint32_t version = qd_kle32_(d), count = qd_kle32_(d + 4), entry_size = qd_kle32_(d + 8),
           pool_size = qd_kle32_(d + 12);
  if (version > QD_KERN_VERSION)
    return QD_ERR(UNSUPPORTED, PLAN_CONTENT_VERSION, "%s: KERN/%s: kernel index version %u; this qd reads version %d",
                  plan, component, version, QD_KERN_VERSION);
  if (version == 0) return QD_KERR_(&c, PLAN_KERNEL_INDEX, "version is 0; expected %d", QD_KERN_VERSION);
  if (entry_size != QD_KERN_ENTRY_SIZE)
    return QD_KERR_(&c, PLAN_KERNEL_INDEX, "entry_size is %u; expected %d", entry_size, QD_KERN_ENTRY_SIZE);
  if (count > QD_KERN_MAX_ENTRIES)
    return QD_KERR_(&c, PLAN_KERNEL_INDEX, "entry_count is %u; at most %d", count, QD_KERN_MAX_ENTRIES);
  if (pool_size > QD_KERN_MAX_STRINGS)
    return QD_KERR_(&c, PLAN_KERNEL_INDEX, "strings_size is %u; at most %d", pool_size, QD_KERN_MAX_STRINGS);
  if (qd_kle64_(d + 16) || qd_kle64_(d + 24)) return QD_KERR_(&c, PLAN_KERNEL_INDEX, "%s", "reserved header bytes are not zero");
  /* Bounded above, so no overflow: at most 32 + 48 * 65536 + 1 MiB. */
  uint64_t pool_off = QD_KERN_HEADER_SIZE + (uint64_t)count * QD_KERN_ENTRY_SIZE, pool_end = pool_off + pool_size;
  if (pool_end > size)
    return QD_KERR_(&c, PLAN_KERNEL_INDEX, "%u entries and a %u-byte string pool end at byte %llu, past the section's "
                    "%llu bytes", count, pool_size, (unsigned long long)pool_end, (unsigned long long)size);
  if (count == 0 && pool_end != size)
    return QD_KERR_(&c, PLAN_KERNEL_RANGE, "%llu bytes follow an index without entries",
                    (unsigned long long)(size - pool_end));
  if (count == 0) return QD_OK;

  qd_plan_kernel_image_t* images;
  qd_plan_kernel_image_t** order;
  QD_TRY(qd_calloc(a, count, sizeof *images, (void**)&images));
  qd_status_t s = qd_calloc(a, count, sizeof *order, (void**)&order);
  if (s) {
    qd_free(a, images, (size_t)count * sizeof *images);
    return s;
  }
  s = qd_kentries_(&c, d, size, count, d + pool_off, pool_size, pool_end, targets, images);
  /* Duplicates before the layout: a copied entry also shares its image's bytes, and "two entries for one variant"
   * is what went wrong then. */
  if (!s) {
    qsort(images, count, sizeof *images, qd_kimage_cmp_);
    for (uint32_t i = 1; i < count && !s; i++)
      if (qd_kimage_cmp_(&images[i - 1], &images[i]) == 0)
        s = QD_KERR_(&c, PLAN_KERNEL_DUPLICATE, "two entries hold '%s' for %s", images[i].key, images[i].arch);
  }
  for (uint32_t i = 0; i < count; i++) order[i] = &images[i];
  if (!s) s = qd_kranges_(&c, d, size, pool_end, order, count);
  for (uint32_t i = 0; i < count && !s; i++) s = qd_kcontents_(&c, &images[i]);
  qd_free(a, order, (size_t)count * sizeof *order);
  if (s) {
    qd_free(a, images, (size_t)count * sizeof *images);
    return s;
  }
  *out_images = images;
  *out_count = (int32_t)count;
  return QD_OK;
}

void qd_plan_kernels_free(qd_allocator_t a, qd_plan_kernel_image_t* images, int32_t count) {
  if (images) qd_free(a, images, (size_t)count * sizeof *images);
}

const qd_plan_kernel_image_t* qd_plan_kernels_find(const qd_plan_kernel_image_t* images, int32_t count,
                                                   const char* key, const char* arch) {
  qd_plan_kernel_image_t probe = {.key = key};
  snprintf(probe.arch, sizeof probe.arch, "%s", arch);
  return images && count > 0 ? bsearch(&probe, images, (size_t)count, sizeof *images, qd_kimage_cmp_) : NULL;
}
