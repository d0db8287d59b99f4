/*
 * 128-bit decimal hash keys (ExplicitHashKey, shard hash ranges). A key
 * that parses formats to its canonical decimal, which parses to the same key;
 * the canonical form is the input without leading zeros. Also the MD5 of the
 * input as a partition key formats and parses back, and kn__md5_many, in
 * every implementation this CPU has, gives kn__md5's digests for pieces of
 * the input (cut where the input's bytes say).
 */
#include "fuzz.h"

#include "hashkey.h"
#include "md5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size ? size : 1); /* unterminated: a read past the view is caught */
    FUZZ_CHECK(s);
    if (size)
        memcpy(s, data, size);

    kn__hashkey_t k;
    if (kn__hashkey_parse(s, size, &k) == 0) {
        char dec[KN__HASHKEY_STRLEN];
        size_t n = kn__hashkey_format(k, dec);
        FUZZ_CHECK(n > 0 && n < KN__HASHKEY_STRLEN && dec[n] == '\0');
        kn__hashkey_t k2;
        FUZZ_CHECK(kn__hashkey_parse(dec, n, &k2) == 0);
        FUZZ_CHECK(kn__hashkey_cmp(k, k2) == 0);
        /* Accepted input is digits only; without its leading zeros it is the canonical form. */
        size_t z = 0;
        while (z + 1 < size && s[z] == '0')
            z++;
        FUZZ_CHECK(size - z == n && memcmp(s + z, dec, n) == 0);
    }

    kn__hashkey_t h = kn__hashkey_from_partition_key(data, size);
    char dec[KN__HASHKEY_STRLEN];
    size_t n = kn__hashkey_format(h, dec);
    kn__hashkey_t h2;
    FUZZ_CHECK(kn__hashkey_parse(dec, n, &h2) == 0 && kn__hashkey_cmp(h, h2) == 0);
    unsigned char md5[16];
    kn__md5(data, size, md5);
    uint64_t hi = 0, lo = 0;
    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | md5[i];
        lo = lo << 8 | md5[8 + i];
    }
    FUZZ_CHECK(h.hi == hi && h.lo == lo);

    /* Up to 40 pieces: each piece's length is its first byte (times 3), or what is left. */
    const void *piece[40];
    size_t plen[40];
    unsigned char got[40][16], want[16];
    size_t np = 0, pos = 0;
    while (np < 40 && pos <= size) {
        size_t l = pos < size ? (size_t)data[pos] * 3 : 0;
        if (l > size - pos)
            l = size - pos;
        piece[np] = data + pos;
        plen[np++] = l;
        pos += l + 1;
    }
    static const char *const impls[] = {"scalar", "avx2", "avx512"};
    for (int im = 0; im < 3; im++) {
        if (kn__md5_many_force(impls[im]) != 0)
            continue;
        kn__md5_many(np, piece, plen, got);
        for (size_t i = 0; i < np; i++) {
            kn__md5(piece[i], plen[i], want);
            FUZZ_CHECK(memcmp(got[i], want, 16) == 0);
        }
    }
    kn__md5_many_force(NULL);
    free(s);
    return 0;
}
