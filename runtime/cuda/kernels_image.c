/* Launchers for the image kernel templates: see runtime/cuda/kernels_image.h. Each one mirrors its template's
 * header comment: the same parameters, the same grid formula, the same requirements. */
#include "runtime/cuda/kernels_image.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/cuda/launch_checks.h"

static const char* const qd_ki_templates_[QD_IMAGE_OP_COUNT_] = {
    [QD_IMAGE_GROUP_NORM_STATS] = "image_ops.cu", [QD_IMAGE_GROUP_NORM_APPLY] = "image_ops.cu",
    [QD_IMAGE_UPSAMPLE_NEAREST] = "image_ops.cu", [QD_IMAGE_AFFINE] = "image_ops.cu",
    [QD_IMAGE_PERMUTE] = "image_ops.cu",          [QD_IMAGE_CONV2D] = "conv2d.cu",
    [QD_IMAGE_CONV2D_PACK_WEIGHT] = "conv2d.cu",
};

static const char* const qd_ki_functions_[QD_IMAGE_OP_COUNT_] = {
    [QD_IMAGE_GROUP_NORM_STATS] = "qd_group_norm_stats",
    [QD_IMAGE_GROUP_NORM_APPLY] = "qd_group_norm_apply",
    [QD_IMAGE_UPSAMPLE_NEAREST] = "qd_upsample_nearest",
    [QD_IMAGE_AFFINE] = "qd_affine",
    [QD_IMAGE_PERMUTE] = "qd_permute",
    [QD_IMAGE_CONV2D] = "qd_conv2d",
    [QD_IMAGE_CONV2D_PACK_WEIGHT] = "qd_conv2d_pack_weight",
};

const char* qd_image_kernel_template_name(qd_image_kernel_op_t op) {
  return (unsigned)op < QD_IMAGE_OP_COUNT_ ? qd_ki_templates_[op] : NULL;
}

const char* qd_image_kernel_function_name(qd_image_kernel_op_t op, const qd_kernel_config_t* config) {
  const char* tmpl = qd_image_kernel_template_name(op);
  if (!tmpl || !config || !config->template_name || strcmp(config->template_name, tmpl) != 0) return NULL;
  return qd_ki_functions_[op];
}

/* ---- checks (runtime/cuda/launch_checks.h) ------------------------------------------------------------------- */

static qd_status_t qd_ki_begin_(qd_image_kernel_op_t op, const qd_kernel_function_t* fn,
                                const qd_kernel_config_t* cfg) {
  return qd_launch_check_begin(qd_image_kernel_template_name(op), qd_image_kernel_function_name(op, cfg), fn, cfg,
                               false);
}

/* ---- image_ops.cu: group norm -------------------------------------------------------------------------------- */

typedef struct qd_ki_gn_ {
  int64_t n, chunks, blocks; /* elements per group, chunks per group, blocks of each kernel */
} qd_ki_gn_t_;

/* The grid of both kernels; KERNEL_ARG_SHAPE for shapes they cannot take. */
static qd_status_t qd_ki_gn_shape_(const char* k, int chunk, int64_t batch, int64_t channels, int64_t spatial,
                                   int64_t groups, qd_ki_gn_t_* out) {
  QD_TRY(qd_launch_check_range(k, "batch", batch, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "channels", channels, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "spatial", spatial, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "groups", groups, 1, channels));
  if (channels % groups != 0)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld groups do not divide %lld channels", k,
                  (long long)groups, (long long)channels);
  const int64_t n = qd_launch_mul(channels / groups, spatial);
  if (n < 0 || n > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a group of %lld channels x %lld positions reaches 2^31",
                  k, (long long)(channels / groups), (long long)spatial);
  out->n = n;
  out->chunks = (n + chunk - 1) / chunk;
  out->blocks = qd_launch_mul(qd_launch_mul(batch, groups), out->chunks);
  if (out->blocks < 0 || out->blocks > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld x %lld groups of %lld chunks is too many blocks", k,
                  (long long)batch, (long long)groups, (long long)out->chunks);
  return QD_OK;
}

uint64_t qd_group_norm_workspace_bytes(const qd_kernel_config_t* cfg, int64_t batch, int64_t channels,
                                       int64_t spatial, int64_t groups) {
  if (!cfg || !cfg->template_name || strcmp(cfg->template_name, "image_ops.cu") != 0) return 0;
  int threads, items, vec;
  qd_status_t s = qd_launch_check_params(cfg, "GN_THREADS", &threads, "GN_ITEMS", &items, "GN_VEC", &vec, NULL);
  qd_ki_gn_t_ g;
  if (!s) s = qd_ki_gn_shape_("qd_group_norm", threads * items * vec, batch, channels, spatial, groups, &g);
  if (s) {
    qd_status_free(s);
    return 0;
  }
  return (uint64_t)g.blocks * 8u;
}

qd_status_t qd_launch_group_norm(const qd_kernel_function_t* stats, const qd_kernel_function_t* apply,
                                 const qd_kernel_config_t* cfg, CUstream stream, const qd_group_norm_args_t* a) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_GROUP_NORM_STATS, stats, cfg));
  QD_TRY(qd_ki_begin_(QD_IMAGE_GROUP_NORM_APPLY, apply, cfg));
  const char* k = "qd_group_norm";
  int threads, items, vec;
  QD_TRY(qd_launch_check_params(cfg, "GN_THREADS", &threads, "GN_ITEMS", &items, "GN_VEC", &vec, NULL));
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  QD_TRY(qd_launch_check_need(k, "workspace", a->workspace));
  qd_ki_gn_t_ g;
  QD_TRY(qd_ki_gn_shape_(k, threads * items * vec, a->batch, a->channels, a->spatial, a->groups, &g));
  if (!(a->eps > 0.0f) || !isfinite(a->eps))
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: eps = %g must be positive", k, (double)a->eps);
  QD_TRY(qd_launch_check_align(k, "y", a->y, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "x", a->x, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "weight", a->weight, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "bias", a->bias, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "workspace", a->workspace, 8, "the fp32 pairs of partial statistics"));
  const uint64_t need = (uint64_t)g.blocks * 8u;
  if (a->workspace_bytes < need)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: the workspace holds %llu bytes; this shape needs %llu", k,
                  (unsigned long long)a->workspace_bytes, (unsigned long long)need);
  /* The vector path needs every group run and both pointers to be whole vectors. */
  const uint64_t vb = (uint64_t)vec * 2;
  int use_vec = vec == 1 || (g.n % vec == 0 && a->x % vb == 0 && a->y % vb == 0);
  long long n = g.n;
  int chunks = (int)g.chunks, groups = (int)a->groups, cpg = (int)(a->channels / a->groups);
  int spatial = (int)a->spatial;
  float eps = a->eps;
  CUdeviceptr ws = a->workspace;
  const qd_kernel_dim3_t grid = qd_launch_dim((unsigned)g.blocks), block = qd_launch_dim((unsigned)threads);
  void* sp[] = {&ws, (void*)&a->x, &n, &chunks, &use_vec};
  QD_TRY(qd_kernel_launch(stats, grid, block, 0, stream, sp));
  void* ap[] = {(void*)&a->y, (void*)&a->x, (void*)&a->weight, (void*)&a->bias, &ws, &n, &chunks, &groups, &cpg,
                &spatial, &eps, &use_vec};
  return qd_kernel_launch(apply, grid, block, 0, stream, ap);
}

/* ---- image_ops.cu: upsample ---------------------------------------------------------------------------------- */

qd_status_t qd_launch_upsample_nearest(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg,
                                       CUstream stream, CUdeviceptr y, CUdeviceptr x, int64_t planes, int64_t h,
                                       int64_t w, int64_t factor) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_UPSAMPLE_NEAREST, fn, cfg));
  const char* k = fn->name;
  int threads, vec;
  QD_TRY(qd_launch_check_params(cfg, "IMG_THREADS", &threads, "IMG_VEC", &vec, NULL));
  QD_TRY(qd_launch_check_range(k, "factor", factor, 1, 64));
  QD_TRY(qd_launch_check_range(k, "planes", planes, 0, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "h", h, 0, INT_MAX / factor));
  QD_TRY(qd_launch_check_range(k, "w", w, 0, INT_MAX / factor));
  if (planes == 0 || h == 0 || w == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "x", x, 2, "bf16"));
  const int64_t wo = w * factor;
  int use_vec = vec == 1 || (wo % vec == 0 && y % ((uint64_t)vec * 2) == 0);
  const int64_t rows = qd_launch_mul(planes, h * factor);
  const int64_t units = qd_launch_mul(rows, use_vec ? wo / vec : wo);
  if (rows < 0 || units < 0 || units >= INT64_C(1) << 31)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld planes of %lld x %lld output reach 2^31 work items",
                  k, (long long)planes, (long long)(h * factor), (long long)wo);
  long long r = rows;
  int hh = (int)h, ww = (int)w, f = (int)factor;
  void* params[] = {&y, &x, &r, &hh, &ww, &f, &use_vec};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(units, threads)), qd_launch_dim((unsigned)threads), 0, stream,
                          params);
}

/* ---- image_ops.cu: affine ------------------------------------------------------------------------------------ */

qd_status_t qd_launch_affine(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                             CUdeviceptr y, CUdeviceptr x, int64_t n, float scale, float divisor, float shift) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_AFFINE, fn, cfg));
  const char* k = fn->name;
  int threads, vec;
  QD_TRY(qd_launch_check_params(cfg, "IMG_THREADS", &threads, "IMG_VEC", &vec, NULL));
  QD_TRY(qd_launch_check_range(k, "n", n, 0, (INT64_C(1) << 31) * 256));
  if (divisor == 0.0f) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: the divisor is zero", k);
  if (n == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "x", x, 2, "bf16"));
  const uint64_t vb = (uint64_t)vec * 2;
  int use_vec = vec > 1 && x % vb == 0 && y % vb == 0;
  const int64_t units = use_vec ? n / vec + n % vec : n;
  long long count = n;
  void* params[] = {&y, &x, &count, &scale, &divisor, &shift, &use_vec};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(units, threads)), qd_launch_dim((unsigned)threads), 0, stream,
                          params);
}

/* ---- image_ops.cu: permute ----------------------------------------------------------------------------------- */

/* The by-value parameter of qd_permute, laid out as in image_ops.cu. */
typedef struct qd_ki_permute_desc_ {
  long long total;
  long long dims[8];
  long long strides[8];
  long long batch, rows, cols;
  long long tiles_r, tiles_c;
  int rank, elem_bytes, mode, pad_;
} qd_ki_permute_desc_t_;
_Static_assert(sizeof(qd_ki_permute_desc_t_) == 192, "qd_permute_desc is 192 bytes in image_ops.cu");

qd_status_t qd_launch_permute(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                              CUdeviceptr y, CUdeviceptr x, const int64_t* dims, const int64_t* perm, int32_t rank,
                              int64_t elem_bytes) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_PERMUTE, fn, cfg));
  const char* k = fn->name;
  int threads, tile, tile_rows;
  QD_TRY(qd_launch_check_params(cfg, "IMG_THREADS", &threads, "TR_TILE", &tile, "TR_ROWS", &tile_rows, NULL));
  QD_TRY(qd_launch_check_range(k, "rank", rank, 1, 8));
  if (!dims || !perm) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no dims or perm given", k);
  if (elem_bytes != 1 && elem_bytes != 2 && elem_bytes != 4 && elem_bytes != 8)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: elements of %lld bytes; 1, 2, 4 or 8 are supported", k,
                  (long long)elem_bytes);
  bool seen[8] = {false};
  int64_t total = 1;
  for (int32_t i = 0; i < rank; i++) {
    if (perm[i] < 0 || perm[i] >= rank || seen[perm[i]])
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: perm[%d] = %lld; perm must list every axis of 0..%d once",
                    k, (int)i, (long long)perm[i], (int)rank - 1);
    seen[perm[i]] = true;
    QD_TRY(qd_launch_check_range(k, "a dimension", dims[i], 0, INT64_MAX));
    total = qd_launch_mul(total, dims[i]);
    if (total < 0 || qd_launch_mul(total, elem_bytes) < 0)
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: the tensor's size overflows", k);
  }
  if (total == 0) return QD_OK;
  QD_TRY(qd_launch_check_need(k, "y", y));
  QD_TRY(qd_launch_check_need(k, "x", x));
  QD_TRY(qd_launch_check_align(k, "y", y, (uint64_t)elem_bytes, "the element size"));
  QD_TRY(qd_launch_check_align(k, "x", x, (uint64_t)elem_bytes, "the element size"));

  /* Drop size-1 axes, then merge output axes that are adjacent and in order in the input. */
  int64_t in_dims[8];
  int map[8], p[8], r = 0, pr = 0;
  for (int32_t a = 0; a < rank; a++) {
    map[a] = dims[a] != 1 ? r : -1;
    if (dims[a] != 1) in_dims[r++] = dims[a];
  }
  for (int32_t i = 0; i < rank; i++)
    if (map[perm[i]] >= 0) p[pr++] = map[perm[i]];
  int first[8], last[8], gcount = 0;
  for (int i = 0; i < pr; i++) {
    if (gcount > 0 && p[i] == last[gcount - 1] + 1) {
      last[gcount - 1] = p[i];
    } else {
      first[gcount] = last[gcount] = p[i];
      gcount++;
    }
  }
  /* Group j (in output order) is input axes first[j]..last[j]; its place among the groups in input order: */
  int64_t gdims[8], gstrides[8];
  int gperm[8];
  for (int j = 0; j < gcount; j++) {
    int rank_in = 0;
    for (int m = 0; m < gcount; m++) rank_in += first[m] < first[j];
    gperm[j] = rank_in;
    int64_t size = 1;
    for (int a = first[j]; a <= last[j]; a++) size *= in_dims[a];
    gdims[rank_in] = size;
  }
  for (int j = gcount - 1; j >= 0; j--) gstrides[j] = j == gcount - 1 ? 1 : gstrides[j + 1] * gdims[j + 1];

  qd_ki_permute_desc_t_ d;
  memset(&d, 0, sizeof d);
  d.total = total;
  d.elem_bytes = (int)elem_bytes;
  const bool small = elem_bytes == 2 || elem_bytes == 4;
  if (small && gcount == 2 && gperm[0] == 1) {
    d.mode = 0, d.batch = 1, d.rows = gdims[0], d.cols = gdims[1];
  } else if (small && gcount == 3 && gperm[0] == 0 && gperm[1] == 2) {
    d.mode = 0, d.batch = gdims[0], d.rows = gdims[1], d.cols = gdims[2];
  } else {
    d.mode = 1;
    d.rank = gcount > 0 ? gcount : 1;
    if (gcount == 0) { /* every axis has size 1: one element */
      d.dims[0] = 1, d.strides[0] = 1;
    }
    for (int j = 0; j < gcount; j++) {
      d.dims[j] = gdims[gperm[j]];
      d.strides[j] = gstrides[gperm[j]];
    }
  }
  if (d.mode == 0) {
    d.tiles_r = (d.rows + tile - 1) / tile;
    d.tiles_c = (d.cols + tile - 1) / tile;
    const int64_t blocks = qd_launch_mul(qd_launch_mul(d.batch, d.tiles_r), d.tiles_c);
    if (blocks < 0 || blocks > INT_MAX)
      return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a transpose of %lld tiles is too many blocks", k,
                    (long long)blocks);
    void* params[] = {&y, &x, &d};
    return qd_kernel_launch(fn, qd_launch_dim((unsigned)blocks), qd_launch_dim((unsigned)(tile * tile_rows)), 0, stream,
                            params);
  }
  int64_t blocks = (total + threads - 1) / threads;
  if (blocks > (1 << 20)) blocks = 1 << 20; /* a grid-stride loop covers the rest */
  void* params[] = {&y, &x, &d};
  return qd_kernel_launch(fn, qd_launch_dim((unsigned)blocks), qd_launch_dim((unsigned)threads), 0, stream, params);
}

/* ---- conv2d.cu ----------------------------------------------------------------------------------------------- */

/* The by-value parameter of qd_conv2d, laid out as in conv2d.cu. */
typedef struct qd_ki_conv2d_params_ {
  CUdeviceptr y, x, w, bias, residual;
  int batch, cin, cinp, h, w_in, cout, hout, wout, pad;
  int tiles_x, tiles_y, co_tiles, chunks, pad_;
} qd_ki_conv2d_params_t_;
_Static_assert(sizeof(qd_ki_conv2d_params_t_) == 96, "qd_conv2d_params is 96 bytes in conv2d.cu");

typedef struct qd_ki_conv_cfg_ {
  int residual, k, stride, warp_m, warp_n, warps_m, warps_n, tw, bk, stages;
  int bm, bn, th, threads;
  uint32_t smem;
} qd_ki_conv_cfg_t_;

static qd_status_t qd_ki_conv_cfg_(const qd_kernel_config_t* cfg, qd_ki_conv_cfg_t_* c) {
  QD_TRY(qd_launch_check_params(cfg, "CONV_RESIDUAL", &c->residual, "CONV_K", &c->k, "CONV_STRIDE", &c->stride, "CONV_WARP_M",
                       &c->warp_m, "CONV_WARP_N", &c->warp_n, "CONV_WARPS_M", &c->warps_m, "CONV_WARPS_N", &c->warps_n,
                       "CONV_TW", &c->tw, "CONV_BK", &c->bk, "CONV_STAGES", &c->stages, NULL));
  c->bm = c->warps_m * c->warp_m;
  c->bn = c->warps_n * c->warp_n;
  c->th = c->bn / c->tw;
  c->threads = 32 * c->warps_m * c->warps_n;
  if (c->th < 1 || c->bn % c->tw != 0)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "the conv2d.cu configuration has CONV_TW=%d, which does not "
                  "divide its %d-pixel tile", c->tw, c->bn);
  const int64_t halo = (int64_t)((c->th - 1) * c->stride + c->k) * ((c->tw - 1) * c->stride + c->k);
  c->smem = (uint32_t)(((int64_t)c->stages * c->bm + 2 * halo) * c->bk * 2);
  return QD_OK;
}

uint32_t qd_conv2d_shared_bytes(const qd_kernel_config_t* cfg) {
  if (!cfg || !cfg->template_name || strcmp(cfg->template_name, "conv2d.cu") != 0) return 0;
  qd_ki_conv_cfg_t_ c;
  qd_status_t s = qd_ki_conv_cfg_(cfg, &c);
  if (s) {
    qd_status_free(s);
    return 0;
  }
  return c.smem;
}

int64_t qd_conv2d_packed_weight_elems(int64_t cout, int64_t cin, int64_t kernel) {
  if (cout < 1 || cin < 1 || kernel < 1 || cin > INT64_MAX - 8) return -1;
  return qd_launch_mul(qd_launch_mul(cout, qd_launch_mul(kernel, kernel)), (cin + 7) / 8 * 8);
}

void qd_conv2d_pack_weight_host(const uint16_t* w, uint16_t* packed, int64_t cout, int64_t cin, int64_t kernel) {
  const int64_t kk = kernel * kernel, cinp = (cin + 7) / 8 * 8;
  for (int64_t co = 0; co < cout; co++)
    for (int64_t t = 0; t < kk; t++) {
      uint16_t* dst = packed + (co * kk + t) * cinp;
      for (int64_t ci = 0; ci < cinp; ci++) dst[ci] = ci < cin ? w[(co * cin + ci) * kk + t] : 0;
    }
}

qd_status_t qd_launch_conv2d_pack_weight(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg,
                                         CUstream stream, CUdeviceptr packed, CUdeviceptr weight, int64_t cout,
                                         int64_t cin, int64_t kernel) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_CONV2D_PACK_WEIGHT, fn, cfg));
  const char* k = fn->name;
  QD_TRY(qd_launch_check_range(k, "cout", cout, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cin", cin, 1, INT_MAX - 8));
  QD_TRY(qd_launch_check_range(k, "kernel", kernel, 1, 64));
  const int64_t elems = qd_conv2d_packed_weight_elems(cout, cin, kernel);
  if (elems < 0 || elems >= (INT64_C(1) << 31) * 256)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: a weight of %lld x %lld x %lld^2 is too large", k,
                  (long long)cout, (long long)cin, (long long)kernel);
  QD_TRY(qd_launch_check_need(k, "packed", packed));
  QD_TRY(qd_launch_check_need(k, "weight", weight));
  QD_TRY(qd_launch_check_align(k, "packed", packed, 16, "qd_conv2d's 16-byte weight copies"));
  QD_TRY(qd_launch_check_align(k, "weight", weight, 2, "bf16"));
  int co = (int)cout, ci = (int)cin, cinp = (int)((cin + 7) / 8 * 8), kk = (int)(kernel * kernel);
  void* params[] = {&packed, &weight, &co, &ci, &cinp, &kk};
  return qd_kernel_launch(fn, qd_launch_dim(qd_launch_blocks(elems, 256)), qd_launch_dim(256), 0, stream, params);
}

qd_status_t qd_launch_conv2d(const qd_kernel_function_t* fn, const qd_kernel_config_t* cfg, CUstream stream,
                             const qd_conv2d_args_t* a) {
  QD_TRY(qd_ki_begin_(QD_IMAGE_CONV2D, fn, cfg));
  const char* k = fn->name;
  qd_ki_conv_cfg_t_ c;
  QD_TRY(qd_ki_conv_cfg_(cfg, &c));
  if (!a) return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_NULL, "%s: no arguments", k);
  QD_TRY(qd_launch_check_need(k, "y", a->y));
  QD_TRY(qd_launch_check_need(k, "x", a->x));
  QD_TRY(qd_launch_check_need(k, "weight", a->weight));
  if (c.residual)
    QD_TRY(qd_launch_check_need(k, "residual", a->residual));
  else if (a->residual)
    return QD_ERR(INVALID_ARGUMENT, INVALID_ARGUMENT, "%s: a residual was given to a variant built without "
                  "CONV_RESIDUAL", k);
  if (a->kernel != c.k || a->stride != c.stride)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: kernel %lld stride %lld, but this variant is compiled for "
                  "CONV_K=%d CONV_STRIDE=%d", k, (long long)a->kernel, (long long)a->stride, c.k, c.stride);
  QD_TRY(qd_launch_check_range(k, "pad", a->pad, 0, a->kernel - 1));
  QD_TRY(qd_launch_check_range(k, "batch", a->batch, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "cin", a->cin, 1, INT_MAX - 8));
  QD_TRY(qd_launch_check_range(k, "cout", a->cout, 1, INT_MAX));
  QD_TRY(qd_launch_check_range(k, "h", a->h, a->kernel - 2 * a->pad, INT_MAX / 2));
  QD_TRY(qd_launch_check_range(k, "w", a->w, a->kernel - 2 * a->pad, INT_MAX / 2));
  const int64_t hout = (a->h + 2 * a->pad - a->kernel) / a->stride + 1;
  const int64_t wout = (a->w + 2 * a->pad - a->kernel) / a->stride + 1;
  const int64_t tiles_y = (hout + c.th - 1) / c.th, tiles_x = (wout + c.tw - 1) / c.tw;
  const int64_t co_tiles = (a->cout + c.bm - 1) / c.bm;
  const int64_t blocks = qd_launch_mul(qd_launch_mul(qd_launch_mul(a->batch, tiles_y), tiles_x), co_tiles);
  const int64_t chunks = (a->cin + c.bk - 1) / c.bk;
  if (blocks < 0 || blocks > INT_MAX || chunks * c.k * c.k > INT_MAX)
    return QD_ERR(INVALID_ARGUMENT, KERNEL_ARG_SHAPE, "%s: %lld x %lld output of %lld x %lld x %lld is too many "
                  "blocks", k, (long long)hout, (long long)wout, (long long)a->batch, (long long)a->cout,
                  (long long)a->cin);
  QD_TRY(qd_launch_check_align(k, "y", a->y, 4, "the paired bf16 stores"));
  QD_TRY(qd_launch_check_align(k, "x", a->x, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "weight", a->weight, 16, "the 16-byte weight copies"));
  QD_TRY(qd_launch_check_align(k, "bias", a->bias, 2, "bf16"));
  QD_TRY(qd_launch_check_align(k, "residual", a->residual, 4, "the paired bf16 loads"));

  qd_ki_conv2d_params_t_ p = {
      .y = a->y, .x = a->x, .w = a->weight, .bias = a->bias, .residual = a->residual,
      .batch = (int)a->batch, .cin = (int)a->cin, .cinp = (int)((a->cin + 7) / 8 * 8), .h = (int)a->h,
      .w_in = (int)a->w, .cout = (int)a->cout, .hout = (int)hout, .wout = (int)wout, .pad = (int)a->pad,
      .tiles_x = (int)tiles_x, .tiles_y = (int)tiles_y, .co_tiles = (int)co_tiles, .chunks = (int)chunks};
  void* params[] = {&p};
  qd_kernel_function_t raised;
  if (c.smem > (uint32_t)fn->max_dynamic_shared_bytes && fn->cu) {
    raised = *fn;
    QD_TRY(qd_kernel_function_set_max_dynamic_shared(&raised, (int)c.smem));
    fn = &raised;
  }
  return qd_kernel_launch(fn, qd_launch_dim((unsigned)blocks), qd_launch_dim((unsigned)c.threads), c.smem, stream, params);
}
