/* Internal: 128-bit hash keys (MD5 of a partition key, big-endian), decimal I/O. */
#ifndef KN_HASHKEY_H
#define KN_HASHKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kn__hashkey_s {
    uint64_t hi, lo;
} kn__hashkey_t;

/* Max decimal digits of 2^128-1 plus NUL. */
#define KN__HASHKEY_STRLEN 40

/*
 * MD5 of key as a big-endian unsigned 128-bit number. Uses a reused context;
 * safe from any thread. Works in OpenSSL FIPS mode (it is a partitioning hash).
 */
kn__hashkey_t kn__hashkey_from_partition_key(const void *key, size_t len);
/* A 16-byte MD5 digest as a hash key (for digests computed elsewhere, e.g. by kn__md5_many). */
kn__hashkey_t kn__hashkey_from_digest(const unsigned char d[16]);
/* Parses a decimal "0".."340282366920938463463374607431768211455"; -1 if invalid. */
int kn__hashkey_parse(const char *s, size_t len, kn__hashkey_t *out);
/* Decimal representation into out (KN__HASHKEY_STRLEN bytes); returns length. */
size_t kn__hashkey_format(kn__hashkey_t k, char out[KN__HASHKEY_STRLEN]);
int kn__hashkey_cmp(kn__hashkey_t a, kn__hashkey_t b);

#endif
