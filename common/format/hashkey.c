/*
 * 128-bit hash keys: the MD5 of a partition key read as a big-endian
 * unsigned number (how Kinesis maps a record to a shard), and decimal I/O
 * for the hash-key ranges the service returns.
 *
 * The MD5 itself is in md5.c.
 */
#include "hashkey.h"

#include <string.h>

#include "md5.h"

/* --------------------------------------------------------------- hash keys */

__extension__ typedef unsigned __int128 u128;

static inline u128 to_u128(kn__hashkey_t k) { return (u128)k.hi << 64 | k.lo; }

static inline kn__hashkey_t from_u128(u128 v)
{
    kn__hashkey_t k = {(uint64_t)(v >> 64), (uint64_t)v};
    return k;
}

kn__hashkey_t kn__hashkey_from_partition_key(const void *key, size_t len)
{
    unsigned char d[16];
    kn__md5(key, len, d);
    return kn__hashkey_from_digest(d);
}

kn__hashkey_t kn__hashkey_from_digest(const unsigned char d[16])
{
    kn__hashkey_t k = {0, 0};
    for (int i = 0; i < 8; i++) {
        k.hi = k.hi << 8 | d[i];
        k.lo = k.lo << 8 | d[8 + i];
    }
    return k;
}

int kn__hashkey_parse(const char *s, size_t len, kn__hashkey_t *out)
{
    const u128 max = ~(u128)0;
    u128 v = 0;
    if (!s || len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        unsigned c = (unsigned char)s[i];
        if (c < '0' || c > '9')
            return -1;
        unsigned digit = c - '0';
        if (v > (max - digit) / 10)
            return -1; /* v * 10 + digit would pass 2^128-1 */
        v = v * 10 + digit;
    }
    if (out)
        *out = from_u128(v);
    return 0;
}

/* Writes the digits of v, most significant first, at least min_digits (zero-padded); returns the count. */
static size_t format_u64(uint64_t v, size_t min_digits, char *out)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < min_digits)
        tmp[n++] = '0';
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/*
 * Two 128-bit divisions by 10^19 split the key into 64-bit parts, whose
 * digits come from divisions by 10 that the compiler turns into
 * multiplications; one 128-bit division per digit cost about a microsecond
 * per key (a producer formats one per aggregate).
 */
size_t kn__hashkey_format(kn__hashkey_t k, char out[KN__HASHKEY_STRLEN])
{
    const uint64_t e19 = 10000000000000000000ull;
    u128 v = to_u128(k);
    uint64_t low = (uint64_t)(v % e19);
    u128 q = v / e19;
    uint64_t mid = (uint64_t)(q % e19);
    uint64_t top = (uint64_t)(q / e19); /* at most 3: 2^128 < 4 * 10^38 */
    size_t n = 0;
    if (top) {
        n = format_u64(top, 0, out);
        n += format_u64(mid, 19, out + n);
        n += format_u64(low, 19, out + n);
    } else if (mid) {
        n = format_u64(mid, 0, out);
        n += format_u64(low, 19, out + n);
    } else {
        n = format_u64(low, 0, out);
    }
    out[n] = '\0';
    return n;
}

int kn__hashkey_cmp(kn__hashkey_t a, kn__hashkey_t b)
{
    if (a.hi != b.hi)
        return a.hi < b.hi ? -1 : 1;
    if (a.lo != b.lo)
        return a.lo < b.lo ? -1 : 1;
    return 0;
}
