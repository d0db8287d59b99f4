/*
 * Unit tests for common/format/md5.c: the one-message MD5 against RFC 1321's
 * vectors and OpenSSL, and kn__md5_many, in every implementation this CPU
 * has, against the one-message MD5 on mixed, boundary and long lengths.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "md5.h"

static void hex16(const unsigned char d[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* RFC 1321 appendix A.5 test suite, plus block-boundary lengths. */
static void test_md5_rfc1321_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *hex;
    } v[] = {
        {"", "d41d8cd98f00b204e9800998ecf8427e"},
        {"a", "0cc175b9c0f1b6a831c399e269772661"},
        {"abc", "900150983cd24fb0d6963f7d28e17f72"},
        {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
        {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
        {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
         "d174ab98d277d9f5a5611c2c9f419d9f"},
        {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        unsigned char d[16];
        char hex[33];
        kn__md5(v[i].in, strlen(v[i].in), d);
        hex16(d, hex);
        assert_string_equal(hex, v[i].hex);
    }
}

/*
 * The embedded MD5 agrees with OpenSSL for every length 0..300 (covers the
 * 55/56/63/64-byte padding boundaries and multi-block inputs) and arbitrary
 * bytes. OpenSSL is fetched with "-fips" as the library once did.
 */
static void test_md5_matches_openssl_all_lengths(void **state)
{
    (void)state;
    EVP_MD *md = EVP_MD_fetch(NULL, "MD5", "-fips");
    assert_non_null(md);
    unsigned char buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    for (size_t len = 0; len <= sizeof(buf); len++) {
        unsigned char a[16], b[EVP_MAX_MD_SIZE];
        unsigned int blen = 0;
        kn__md5(buf, len, a);
        assert_int_equal(EVP_Digest(buf, len, b, &blen, md, NULL), 1);
        assert_int_equal(blen, 16);
        assert_memory_equal(a, b, 16);
    }
    EVP_MD_free(md);
}

static uint32_t rng = 2463534242u;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

/* n messages cut from buf (lengths from lens, starts random), digests compared with kn__md5. */
static void check_many(const unsigned char *buf, size_t buf_len, const size_t *lens, size_t n)
{
    const void **data = calloc(n, sizeof(*data));
    size_t *len = calloc(n, sizeof(*len));
    unsigned char(*got)[16] = calloc(n, 16);
    assert_true(data && len && got);
    for (size_t i = 0; i < n; i++) {
        len[i] = lens[i];
        assert_true(len[i] <= buf_len);
        data[i] = buf + next_rand() % (buf_len - len[i] + 1);
    }
    kn__md5_many(n, data, len, got);
    for (size_t i = 0; i < n; i++) {
        unsigned char want[16];
        kn__md5(data[i], len[i], want);
        if (memcmp(want, got[i], 16) != 0)
            fail_msg("%s: message %zu of %zu (%zu bytes) has the wrong digest", kn__md5_many_impl(), i, n,
                     len[i]);
    }
    free(data);
    free(len);
    free(got);
}

/* Every implementation this CPU has: the same digests as kn__md5 whatever the mix of lengths. */
static void test_many_matches_one_at_a_time(void **state)
{
    (void)state;
    size_t buf_len = 70000;
    unsigned char *buf = malloc(buf_len);
    assert_non_null(buf);
    for (size_t i = 0; i < buf_len; i++)
        buf[i] = (unsigned char)next_rand();
    static const char *const impls[] = {"scalar", "avx2", "avx512"};
    int ran = 0;
    for (size_t k = 0; k < 3; k++) {
        if (kn__md5_many_force(impls[k]) != 0) {
            printf("# md5_many: this CPU has no %s; not run\n", impls[k]);
            continue;
        }
        assert_string_equal(kn__md5_many_impl(), impls[k]);
        ran++;
        size_t lens[200];
        /* Every length 0..199, in one call: groups of mixed lengths, across the padding boundaries. */
        for (size_t i = 0; i < 200; i++)
            lens[i] = i;
        check_many(buf, buf_len, lens, 200);
        /* Every group size from 1 to 40 (a partly filled last group), random lengths up to 300. */
        for (size_t n = 1; n <= 40; n++) {
            for (size_t i = 0; i < n; i++)
                lens[i] = next_rand() % 301;
            check_many(buf, buf_len, lens, n);
        }
        /* Aggregate-sized messages, one much longer than the others, and empties among them. */
        for (size_t i = 0; i < 37; i++)
            lens[i] = i % 9 == 0 ? 0 : 51200 - next_rand() % 500;
        lens[5] = 69999;
        check_many(buf, buf_len, lens, 37);
        /* The same message in every lane. */
        const void *same[16];
        size_t same_len[16];
        unsigned char out[16][16], want[16];
        for (int i = 0; i < 16; i++) {
            same[i] = buf;
            same_len[i] = 1000;
        }
        kn__md5_many(16, same, same_len, out);
        kn__md5(buf, 1000, want);
        for (int i = 0; i < 16; i++)
            assert_memory_equal(out[i], want, 16);
        /* n = 0 writes nothing; an empty message may be NULL. */
        kn__md5_many(0, NULL, NULL, NULL);
        const void *nul[2] = {NULL, buf};
        size_t nul_len[2] = {0, 3};
        kn__md5_many(2, nul, nul_len, out);
        char hex[33];
        hex16(out[0], hex);
        assert_string_equal(hex, "d41d8cd98f00b204e9800998ecf8427e");
    }
    assert_int_equal(kn__md5_many_force("no such"), -1);
    assert_int_equal(kn__md5_many_force(NULL), 0);
    printf("# md5_many: %d implementation(s) checked; this CPU uses %s\n", ran, kn__md5_many_impl());
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_md5_rfc1321_vectors),
        cmocka_unit_test(test_md5_matches_openssl_all_lengths),
        cmocka_unit_test(test_many_matches_one_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
