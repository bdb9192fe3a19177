/* Postprocessing and PNG output; see png.h. */
#include "runtime/pipeline/png.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qd/log.h"

void qd_image_to_rgb8(const float* chw, int64_t h, int64_t w, uint8_t* rgb) {
  int64_t plane = h * w;
  for (int64_t c = 0; c < 3; c++)
    for (int64_t p = 0; p < plane; p++) {
      /* denormalize in PyTorch: x * 0.5 + 0.5 (two roundings), clamp(0, 1); then NumPy: v * 255, round half to
       * even (rintf in the default rounding mode), uint8. */
      float v = chw[c * plane + p] * 0.5f;
      v = v + 0.5f;
      v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
      v = v * 255.0f;
      rgb[p * 3 + c] = isnan(v) ? 0 : (uint8_t)rintf(v);
    }
}

typedef struct qd_png_ctx {
  char message[256];
  const char* path;
  FILE* file;
  const uint8_t* rgb;
  int32_t width, height;
  const char* const* keys;
  const char* const* values;
  int32_t count;
  png_text* text;
} qd_png_ctx_t;

static void qd_png_error_(png_structp png, png_const_charp msg) {
  qd_png_ctx_t* ctx = png_get_error_ptr(png);
  snprintf(ctx->message, sizeof ctx->message, "%s", msg);
  png_longjmp(png, 1);
}

static void qd_png_warning_(png_structp png, png_const_charp msg) {
  qd_png_ctx_t* ctx = png_get_error_ptr(png);
  QD_LOG_DEBUG("%s: libpng: %s", ctx->path, msg);
}

static bool qd_is_ascii_(const char* s) {
  for (; *s; s++)
    if ((unsigned char)*s >= 0x80) return false;
  return true;
}

/* Everything libpng may longjmp out of lives here, with its state in ctx (not in locals changed after setjmp). */
static bool qd_png_encode_(qd_png_ctx_t* ctx) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, qd_png_error_, qd_png_warning_);
  if (!png) {
    snprintf(ctx->message, sizeof ctx->message, "libpng could not start (out of memory)");
    return false;
  }
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    if (!info) snprintf(ctx->message, sizeof ctx->message, "libpng could not start (out of memory)");
    png_destroy_write_struct(&png, info ? &info : NULL);
    return false;
  }
  png_init_io(png, ctx->file);
  png_set_IHDR(png, info, (png_uint_32)ctx->width, (png_uint_32)ctx->height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (int32_t i = 0; i < ctx->count; i++) {
    png_text* t = &ctx->text[i];
    memset(t, 0, sizeof *t);
    t->key = (png_charp)ctx->keys[i];
    t->text = (png_charp)ctx->values[i];
    t->text_length = strlen(ctx->values[i]);
    if (qd_is_ascii_(ctx->values[i])) {
      t->compression = PNG_TEXT_COMPRESSION_NONE;
    } else {
      t->compression = PNG_ITXT_COMPRESSION_NONE;
      t->lang = (png_charp) "";
      t->lang_key = (png_charp) "";
      t->itxt_length = t->text_length;
      t->text_length = 0;
    }
  }
  if (ctx->count) png_set_text(png, info, ctx->text, ctx->count);
  png_write_info(png, info);
  for (int32_t y = 0; y < ctx->height; y++)
    png_write_row(png, (png_const_bytep)(ctx->rgb + (size_t)y * (size_t)ctx->width * 3));
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return true;
}

qd_status_t qd_png_write_rgb(const char* path, const uint8_t* rgb, int32_t width, int32_t height,
                             const char* const* keys, const char* const* values, int32_t count) {
  /* PNG allows 2^31 - 1; a row must also fit libpng's size_t arithmetic, which this bound keeps far away. */
  if (width < 1 || height < 1 || width > (1 << 20) || height > (1 << 20) || !rgb || !path)
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_PNG, "%s: cannot write a %d x %d image%s", path ? path : "(no path)",
                  width, height, rgb ? "" : " without pixels");
  if (count < 0 || count > 64 || (count > 0 && (!keys || !values)))
    return QD_ERR(INVALID_ARGUMENT, PIPELINE_PNG, "%s: %d text chunks; expected 0 to 64 with keys and values", path,
                  count);
  for (int32_t i = 0; i < count; i++) {
    size_t n = keys[i] ? strlen(keys[i]) : 0;
    bool ok = n >= 1 && n <= 79 && values[i];
    for (size_t k = 0; ok && k < n; k++) ok = keys[i][k] >= 0x20 && keys[i][k] < 0x7f;
    if (!ok)
      return QD_ERR(INVALID_ARGUMENT, PIPELINE_PNG, "%s: text chunk %d: the key must be 1 to 79 printable ASCII "
                    "characters and the value present", path, i);
  }
  size_t tmp_len = strlen(path) + 48;
  char* tmp = malloc(tmp_len);
  png_text* text = calloc((size_t)(count ? count : 1), sizeof *text);
  if (!tmp || !text) {
    free(tmp);
    free(text);
    return QD_ERR(OUT_OF_MEMORY, OUT_OF_MEMORY, "%s: out of memory", path);
  }
  /* 0666 and the umask, as for any file the user creates (mkstemp would make it 0600); O_EXCL never reuses someone
   * else's file. */
  static unsigned counter;
  int fd = -1;
  for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
    snprintf(tmp, tmp_len, "%s.tmp.%ld.%u", path, (long)getpid(),
             __atomic_fetch_add(&counter, 1u, __ATOMIC_RELAXED));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  qd_status_t s = QD_OK;
  FILE* f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!f) {
    s = QD_ERR(IO, IO_OPEN, "%s: cannot create a file beside it: %s", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(tmp);
    }
  } else {
    qd_png_ctx_t ctx = {{0}, path, f, rgb, width, height, keys, values, count, text};
    bool encoded = qd_png_encode_(&ctx);
    bool flushed = fflush(f) == 0 && !ferror(f);
    if (fclose(f) != 0) flushed = false;
    if (!encoded)
      s = QD_ERR(IO, PIPELINE_PNG, "%s: libpng: %s", path, ctx.message);
    else if (!flushed)
      s = QD_ERR(IO, IO_WRITE, "%s: write failed: %s", path, strerror(errno));
    else if (rename(tmp, path) != 0)
      s = QD_ERR(IO, IO_RENAME, "%s: cannot move the finished image into place: %s", path, strerror(errno));
    if (s) unlink(tmp);
  }
  free(tmp);
  free(text);
  return s;
}
