/* qd internal: XXH64, the 64-bit xxHash, for plan-file checksums.
 *
 * Why XXH64: plan files carry gigabytes of weights and every byte is checksummed, both when qdc writes them and when
 * `qdc inspect --verify` or qdrun checks them. XXH64 runs at memory bandwidth on one core (several GB/s), has a
 * published, stable definition with reference vectors, and needs no tables. It is an integrity check against
 * truncation, bit rot and bad copies, not a defence against someone forging a file.
 *
 * Written from the published algorithm description (xxHash specification, "XXH64 algorithm description"); the
 * result for a given input and seed matches every other XXH64 implementation (`xxhsum -H64`).
 *
 * Two interfaces with identical results: one-shot qd_hash64(), and streaming (init, update any number of times with
 * any split of the input, digest) for writers that checksum while they write. A state is a plain value the caller
 * owns (no allocation); digest does not change it, so more input may follow.
 */
#ifndef QD_IR_HASH64_H
#define QD_IR_HASH64_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of len bytes at data (data may be NULL when len is 0). */
uint64_t qd_hash64(const void* data, size_t len, uint64_t seed);

typedef struct qd_hash64_state {
  uint64_t acc[4];      /* the four lane accumulators, valid once 32 bytes have been seen */
  uint64_t total_len;   /* bytes seen so far */
  uint64_t seed;
  unsigned char buf[32]; /* input not yet forming a whole 32-byte stripe */
  uint32_t buf_len;
} qd_hash64_state_t;

void qd_hash64_init(qd_hash64_state_t* state, uint64_t seed);
void qd_hash64_update(qd_hash64_state_t* state, const void* data, size_t len);
/* The hash of everything given so far; the state stays usable. */
uint64_t qd_hash64_digest(const qd_hash64_state_t* state);

#endif /* QD_IR_HASH64_H */
