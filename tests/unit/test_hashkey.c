/* Unit tests for common/format/hashkey.c: partition key -> hash key, decimal I/O, comparison. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hashkey.h"

static char *fmt(kn__hashkey_t k, char buf[KN__HASHKEY_STRLEN])
{
    kn__hashkey_format(k, buf);
    return buf;
}

/*
 * Expected decimals computed with:
 *   python3 -c "import hashlib; print(int.from_bytes(hashlib.md5(K).digest(), 'big'))"
 */
static void test_partition_key_to_decimal(void **state)
{
    (void)state;
    static const struct {
        const char *key;
        size_t len;
        const char *dec;
    } v[] = {
        {"", 0, "281949768489412648962353822266799178366"},
        {"a", 1, "16955237001963240173058271559858726497"},
        {"abc", 3, "191415658344158766168031473277922803570"},
        {"partitionKey-1", 14, "159499196025307651934328298402289840726"},
        {"\xff\x00\x80", 3, "128674462859287813540340541269075409049"}, /* b'\xff\x00\x80' */
    };
    char buf[KN__HASHKEY_STRLEN];
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        kn__hashkey_t k = kn__hashkey_from_partition_key(v[i].key, v[i].len);
        assert_string_equal(fmt(k, buf), v[i].dec);
    }
    /* 56 and 256 bytes of 'x' (K = b'x'*56, b'x'*256). */
    char xs[256];
    memset(xs, 'x', sizeof(xs));
    assert_string_equal(fmt(kn__hashkey_from_partition_key(xs, 56), buf),
                        "136300121664425810192795845712325488971");
    assert_string_equal(fmt(kn__hashkey_from_partition_key(xs, 256), buf),
                        "265353499944959180620795534685136097465");
}

/* The hash key is the digest read big-endian: hi = first 8 bytes. */
static void test_partition_key_is_big_endian_digest(void **state)
{
    (void)state;
    kn__hashkey_t k = kn__hashkey_from_partition_key("abc", 3);
    /* md5("abc") = 900150983cd24fb0 d6963f7d28e17f72 */
    assert_true(k.hi == 0x900150983cd24fb0ull);
    assert_true(k.lo == 0xd6963f7d28e17f72ull);
}

static void test_parse_format_extremes_round_trip(void **state)
{
    (void)state;
    char buf[KN__HASHKEY_STRLEN];
    kn__hashkey_t k;
    const char *max = "340282366920938463463374607431768211455";

    assert_int_equal(kn__hashkey_parse("0", 1, &k), 0);
    assert_true(k.hi == 0 && k.lo == 0);
    assert_int_equal(kn__hashkey_format(k, buf), 1);
    assert_string_equal(buf, "0");

    assert_int_equal(kn__hashkey_parse(max, strlen(max), &k), 0);
    assert_true(k.hi == UINT64_MAX && k.lo == UINT64_MAX);
    assert_int_equal(kn__hashkey_format(k, buf), 39);
    assert_string_equal(buf, max);

    /* 2^64 crosses the word boundary; 2^64-1 is the largest low word. */
    assert_int_equal(kn__hashkey_parse("18446744073709551616", 20, &k), 0);
    assert_true(k.hi == 1 && k.lo == 0);
    assert_string_equal(fmt(k, buf), "18446744073709551616");
    assert_int_equal(kn__hashkey_parse("18446744073709551615", 20, &k), 0);
    assert_true(k.hi == 0 && k.lo == UINT64_MAX);

    /* Leading zeros are accepted (the value is what counts). */
    assert_int_equal(kn__hashkey_parse("000042", 6, &k), 0);
    assert_true(k.hi == 0 && k.lo == 42);
}

static void test_parse_round_trips_md5_values(void **state)
{
    (void)state;
    char buf[KN__HASHKEY_STRLEN];
    for (int i = 0; i < 2000; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "key-%d", i);
        kn__hashkey_t k = kn__hashkey_from_partition_key(key, (size_t)n), back;
        size_t len = kn__hashkey_format(k, buf);
        assert_int_equal(len, strlen(buf));
        assert_int_equal(kn__hashkey_parse(buf, len, &back), 0);
        assert_int_equal(kn__hashkey_cmp(k, back), 0);
    }
}

static void test_parse_rejects_invalid(void **state)
{
    (void)state;
    kn__hashkey_t k = {7, 7};
    static const char *const bad[] = {
        "",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1a",
        "0x10",
        "1.0",
        "١",                                        /* Arabic-Indic digit one */
        "340282366920938463463374607431768211456",  /* 2^128 */
        "340282366920938463463374607431768211460",  /* 2^128 + 4 */
        "999999999999999999999999999999999999999",  /* 39 digits, too big */
        "3402823669209384634633746074317682114550", /* 40 digits */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(kn__hashkey_parse(bad[i], strlen(bad[i]), &k), -1);
    assert_true(k.hi == 7 && k.lo == 7); /* untouched on failure */
    assert_int_equal(kn__hashkey_parse(NULL, 0, &k), -1);
}

/* Parsing honours len: it never reads past the view, even without a NUL. */
static void test_parse_respects_length(void **state)
{
    (void)state;
    kn__hashkey_t k;
    const char s[] = {'1', '2', '3', 'x'};
    assert_int_equal(kn__hashkey_parse(s, 3, &k), 0);
    assert_true(k.hi == 0 && k.lo == 123);
    assert_int_equal(kn__hashkey_parse(s, 4, &k), -1);
    /* A heap buffer without terminator, so ASan catches any overread. */
    char *h = malloc(5);
    memcpy(h, "98765", 5);
    assert_int_equal(kn__hashkey_parse(h, 5, &k), 0);
    assert_true(k.lo == 98765);
    free(h);
}

static void test_cmp_orders_by_value(void **state)
{
    (void)state;
    kn__hashkey_t zero = {0, 0}, one = {0, 1}, lo_max = {0, UINT64_MAX}, two64 = {1, 0},
                  max = {UINT64_MAX, UINT64_MAX};
    kn__hashkey_t seq[] = {zero, one, lo_max, two64, max};
    for (size_t i = 0; i < 5; i++) {
        for (size_t j = 0; j < 5; j++) {
            int c = kn__hashkey_cmp(seq[i], seq[j]);
            if (i < j)
                assert_int_equal(c, -1);
            else if (i > j)
                assert_int_equal(c, 1);
            else
                assert_int_equal(c, 0);
        }
    }
}

/* The digit-at-a-time reference the formatter once was. */
static size_t ref_format(unsigned __int128 v, char *out)
{
    char tmp[48];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (unsigned)(v % 10));
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

/* Around every power of ten (the 10^19 splits included), both 64-bit halves, and random keys. */
static void test_format_matches_digit_at_a_time(void **state)
{
    (void)state;
    __extension__ typedef unsigned __int128 u128;
    u128 vals[400];
    size_t nv = 0;
    u128 p10 = 1;
    for (int e = 0; e <= 38; e++, p10 *= 10) {
        vals[nv++] = p10 - 1;
        vals[nv++] = p10;
        vals[nv++] = p10 + 1;
        vals[nv++] = p10 * 3 + 7;
    }
    vals[nv++] = (u128)UINT64_MAX;
    vals[nv++] = (u128)UINT64_MAX + 1;
    vals[nv++] = ~(u128)0;
    vals[nv++] = ~(u128)0 - 1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    while (nv < 400) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t y = x * 0xff51afd7ed558ccdull;
        vals[nv++] = (u128)x << 64 | y;
    }
    for (size_t i = 0; i < nv; i++) {
        kn__hashkey_t k = {(uint64_t)(vals[i] >> 64), (uint64_t)vals[i]};
        char got[KN__HASHKEY_STRLEN], want[48];
        size_t n = kn__hashkey_format(k, got);
        size_t m = ref_format(vals[i], want);
        assert_int_equal(n, m);
        assert_string_equal(got, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_key_to_decimal),
        cmocka_unit_test(test_partition_key_is_big_endian_digest),
        cmocka_unit_test(test_parse_format_extremes_round_trip),
        cmocka_unit_test(test_format_matches_digit_at_a_time),
        cmocka_unit_test(test_parse_round_trips_md5_values),
        cmocka_unit_test(test_parse_rejects_invalid),
        cmocka_unit_test(test_parse_respects_length),
        cmocka_unit_test(test_cmp_orders_by_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
