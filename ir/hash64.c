/* XXH64 (see ir/hash64.h). Structure, following the algorithm description:
 *   - inputs of 32 bytes or more are consumed in 32-byte stripes by four independent accumulators (this is what
 *     makes it fast: four multiply chains in flight), which are then folded into one value;
 *   - shorter inputs, and the tail after the last stripe, are mixed in 8, then 4, then 1 byte at a time;
 *   - the input length is added, and a final avalanche spreads every input bit over the result.
 * All reads are little-endian whatever the host, so checksums written on one machine verify on another. */
#include "ir/hash64.h"

#include <string.h>

#define QD_H64_P1 UINT64_C(0x9E3779B185EBCA87)
#define QD_H64_P2 UINT64_C(0xC2B2AE3D27D4EB4F)
#define QD_H64_P3 UINT64_C(0x165667B19E3779F9)
#define QD_H64_P4 UINT64_C(0x85EBCA77C2B2AE63)
#define QD_H64_P5 UINT64_C(0x27D4EB2F165667C5)

static inline uint64_t qd_h64_rotl_(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* memcpy compiles to one unaligned load; the swap disappears on little-endian hosts. */
static inline uint64_t qd_h64_read64_(const unsigned char* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

static inline uint32_t qd_h64_read32_(const unsigned char* p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap32(v);
#endif
  return v;
}

static inline uint64_t qd_h64_round_(uint64_t acc, uint64_t lane) {
  acc += lane * QD_H64_P2;
  acc = qd_h64_rotl_(acc, 31);
  return acc * QD_H64_P1;
}

static inline uint64_t qd_h64_merge_(uint64_t h, uint64_t acc) {
  h ^= qd_h64_round_(0, acc);
  return h * QD_H64_P1 + QD_H64_P4;
}

static void qd_h64_init_acc_(uint64_t acc[4], uint64_t seed) {
  acc[0] = seed + QD_H64_P1 + QD_H64_P2;
  acc[1] = seed + QD_H64_P2;
  acc[2] = seed;
  acc[3] = seed - QD_H64_P1;
}

/* Consumes whole stripes; returns how many bytes it used (a multiple of 32). Locals instead of acc[] let the
 * compiler keep the four chains in registers. */
static size_t qd_h64_stripes_(uint64_t acc[4], const unsigned char* p, size_t len) {
  uint64_t a = acc[0], b = acc[1], c = acc[2], d = acc[3];
  size_t n = len & ~(size_t)31;
  for (size_t i = 0; i < n; i += 32) {
    a = qd_h64_round_(a, qd_h64_read64_(p + i));
    b = qd_h64_round_(b, qd_h64_read64_(p + i + 8));
    c = qd_h64_round_(c, qd_h64_read64_(p + i + 16));
    d = qd_h64_round_(d, qd_h64_read64_(p + i + 24));
  }
  acc[0] = a;
  acc[1] = b;
  acc[2] = c;
  acc[3] = d;
  return n;
}

static uint64_t qd_h64_fold_(const uint64_t acc[4]) {
  uint64_t h = qd_h64_rotl_(acc[0], 1) + qd_h64_rotl_(acc[1], 7) + qd_h64_rotl_(acc[2], 12) +
               qd_h64_rotl_(acc[3], 18);
  for (int i = 0; i < 4; i++) h = qd_h64_merge_(h, acc[i]);
  return h;
}

/* Mixes the last len (< 32) bytes into h, then the avalanche. */
static uint64_t qd_h64_finish_(uint64_t h, const unsigned char* p, size_t len) {
  while (len >= 8) {
    h ^= qd_h64_round_(0, qd_h64_read64_(p));
    h = qd_h64_rotl_(h, 27) * QD_H64_P1 + QD_H64_P4;
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    h ^= (uint64_t)qd_h64_read32_(p) * QD_H64_P1;
    h = qd_h64_rotl_(h, 23) * QD_H64_P2 + QD_H64_P3;
    p += 4;
    len -= 4;
  }
  while (len > 0) {
    h ^= (uint64_t)*p * QD_H64_P5;
    h = qd_h64_rotl_(h, 11) * QD_H64_P1;
    p++;
    len--;
  }
  h ^= h >> 33;
  h *= QD_H64_P2;
  h ^= h >> 29;
  h *= QD_H64_P3;
  h ^= h >> 32;
  return h;
}

uint64_t qd_hash64(const void* data, size_t len, uint64_t seed) {
  const unsigned char* p = data;
  uint64_t h;
  size_t used = 0;
  if (len >= 32) {
    uint64_t acc[4];
    qd_h64_init_acc_(acc, seed);
    used = qd_h64_stripes_(acc, p, len);
    h = qd_h64_fold_(acc);
  } else {
    h = seed + QD_H64_P5;
  }
  h += (uint64_t)len;
  return qd_h64_finish_(h, p + used, len - used);
}

void qd_hash64_init(qd_hash64_state_t* s, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->seed = seed;
  qd_h64_init_acc_(s->acc, seed);
}

void qd_hash64_update(qd_hash64_state_t* s, const void* data, size_t len) {
  const unsigned char* p = data;
  if (len == 0) return;
  s->total_len += (uint64_t)len;
  if (s->buf_len) { /* top up the pending partial stripe first */
    size_t take = 32 - s->buf_len;
    if (take > len) take = len;
    memcpy(s->buf + s->buf_len, p, take);
    s->buf_len += (uint32_t)take;
    p += take;
    len -= take;
    if (s->buf_len < 32) return;
    qd_h64_stripes_(s->acc, s->buf, 32);
    s->buf_len = 0;
  }
  size_t used = qd_h64_stripes_(s->acc, p, len);
  if (len > used) {
    memcpy(s->buf, p + used, len - used);
    s->buf_len = (uint32_t)(len - used);
  }
}

uint64_t qd_hash64_digest(const qd_hash64_state_t* s) {
  /* The accumulators are used only once a full stripe was seen, exactly as in the one-shot form. */
  uint64_t h = s->total_len >= 32 ? qd_h64_fold_(s->acc) : s->seed + QD_H64_P5;
  h += s->total_len;
  return qd_h64_finish_(h, s->buf, s->buf_len);
}
