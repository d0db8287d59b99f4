/*
 * Internal: MD5 (RFC 1321), one message at a time or many side by side.
 *
 * Kinesis uses MD5 twice, neither time for security: a partition key's MD5
 * is its hash key (which shard gets the record), and a KPL aggregate ends
 * with the MD5 of its protobuf message. A producer computes one of each per
 * few hundred bytes, so MD5 is the largest single cost of putting a record.
 *
 * One MD5 cannot go faster than its 64 dependent steps per 64-byte block.
 * Many independent MD5s can: kn__md5_many runs 16 messages at once in the
 * lanes of AVX-512 registers (8 with AVX2) where the CPU has them, chosen at
 * run time, and one after the other elsewhere. The results are the same
 * bytes whichever code runs (the unit test checks every path against
 * OpenSSL).
 */
#ifndef KN_MD5_H
#define KN_MD5_H

#include <stddef.h>

/* The 16-byte digest of len bytes at data (data may be NULL when len is 0). */
void kn__md5(const void *data, size_t len, unsigned char out[16]);

/*
 * The digests of n messages: out[i] = MD5(data[i], len[i]). Any lengths;
 * the messages may overlap or repeat, and out may not overlap them. Fastest
 * when the messages have similar lengths (a group of lanes runs for as many
 * blocks as its longest message). Any thread; no allocation.
 */
void kn__md5_many(size_t n, const void *const *data, const size_t *len, unsigned char (*out)[16]);

/*
 * Which code kn__md5_many uses on this machine: "avx512", "avx2" or
 * "scalar". kn__md5_many_force (tests and benchmarks) selects one by name
 * and returns 0, or -1 if this CPU lacks it; NULL returns to the choice
 * by CPU.
 */
const char *kn__md5_many_impl(void);
int kn__md5_many_force(const char *name);

#endif
