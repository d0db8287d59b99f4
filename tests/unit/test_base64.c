/* Unit tests for common/format/base64.c: RFC 4648 vectors, strict decoding, no overreads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base64.h"

/* RFC 4648 section 10. */
static const struct {
    const char *plain, *b64;
} rfc[] = {
    {"", ""},
    {"f", "Zg=="},
    {"fo", "Zm8="},
    {"foo", "Zm9v"},
    {"foob", "Zm9vYg=="},
    {"foobar", "Zm9vYmFy"},
    {"fooba", "Zm9vYmE="},
};
#define N_RFC (sizeof(rfc) / sizeof(rfc[0]))

static void test_encode_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_RFC; i++) {
        kn_buf_t b = KN_BUF_INIT;
        assert_int_equal(kn__base64_encode(&b, rfc[i].plain, strlen(rfc[i].plain)), 0);
        assert_non_null(b.data);
        assert_int_equal(b.len, strlen(rfc[i].b64));
        assert_string_equal(b.data, rfc[i].b64);
        assert_int_equal(kn__base64_encoded_len(strlen(rfc[i].plain)), strlen(rfc[i].b64));
        kn__buf_free(&b);
    }
}

static void test_encode_to_writes_exact_length(void **state)
{
    (void)state;
    char dst[16];
    memset(dst, '#', sizeof(dst));
    kn__base64_encode_to(dst, "fooba", 5);
    assert_memory_equal(dst, "Zm9vYmE=", 8);
    assert_int_equal(dst[8], '#'); /* no NUL, nothing past the encoding */
}

static void test_encode_appends(void **state)
{
    (void)state;
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__buf_puts(&b, "data="), 0);
    assert_int_equal(kn__base64_encode(&b, "foo", 3), 0);
    assert_string_equal(b.data, "data=Zm9v");
    kn__buf_free(&b);
}

static void test_decode_rfc4648_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_RFC; i++) {
        kn_buf_t b = KN_BUF_INIT;
        assert_int_equal(kn__base64_decode(&b, rfc[i].b64, strlen(rfc[i].b64)), 0);
        assert_int_equal(b.len, strlen(rfc[i].plain));
        if (b.len)
            assert_memory_equal(b.data, rfc[i].plain, b.len);
        kn__buf_free(&b);
    }
}

static void test_round_trip_all_byte_values_and_lengths(void **state)
{
    (void)state;
    unsigned char in[300];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= sizeof(in); len++) {
        kn_buf_t e = KN_BUF_INIT, d = KN_BUF_INIT;
        assert_int_equal(kn__base64_encode(&e, in, len), 0);
        assert_int_equal(e.len, kn__base64_encoded_len(len));
        assert_int_equal(kn__base64_decode(&d, e.data, e.len), 0);
        assert_int_equal(d.len, len);
        if (len)
            assert_memory_equal(d.data, in, len);
        kn__buf_free(&e);
        kn__buf_free(&d);
    }
    /* All of the alphabet, including '+' and '/'. */
    unsigned char all[3] = {0xfb, 0xff, 0xbf};
    kn_buf_t e = KN_BUF_INIT;
    assert_int_equal(kn__base64_encode(&e, all, 3), 0);
    assert_string_equal(e.data, "+/+/");
    kn__buf_free(&e);
}

/* The encoder's table-driven fast path against a plain bit-by-bit encoder, every length and offset. */
static void test_encode_matches_bitwise_reference(void **state)
{
    (void)state;
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char in[520];
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < sizeof(in); i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        in[i] = (unsigned char)x;
    }
    char got[800], want[800];
    for (size_t off = 0; off < 8; off++) {
        for (size_t len = 0; len + off <= sizeof(in); len += (len < 64 ? 1 : 37)) {
            size_t n = 0, bits = 0, acc = 0;
            for (size_t i = 0; i < len; i++) {
                acc = (acc << 8) | in[off + i];
                bits += 8;
                while (bits >= 6) {
                    bits -= 6;
                    want[n++] = abc[(acc >> bits) & 63];
                }
            }
            if (bits)
                want[n++] = abc[(acc << (6 - bits)) & 63];
            while (n % 4)
                want[n++] = '=';
            assert_int_equal(n, kn__base64_encoded_len(len));
            memset(got, '?', sizeof(got));
            kn__base64_encode_to(got, in + off, len);
            assert_memory_equal(got, want, n);
            assert_int_equal(got[n], '?'); /* nothing written past the end */
        }
    }
}

static void test_decode_rejects_bad_input_and_leaves_out_unchanged(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "Zg",       /* missing padding */
        "Zg=",      /* length not a multiple of 4 */
        "Zm9vY",    /* length not a multiple of 4 */
        "Z===",     /* three pads */
        "====",     /* only pads */
        "Zg==Zg==", /* pad in the middle */
        "Z=g=",     /* pad before data */
        "Zm9v\n",   /* whitespace is not skipped */
        "Zm 9",     /* space */
        "Zm9-",     /* base64url alphabet is not accepted */
        "Zm9_",
        "Zh==", /* non-zero unused bits: 'h' leaves low bits set */
        "Zm9=", /* non-zero unused bits with one pad ('9' = 61, low 2 bits 01) */
        "Zm9v\x80\x80\x80\x80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kn_buf_t b = KN_BUF_INIT;
        assert_int_equal(kn__buf_puts(&b, "keep"), 0);
        assert_int_equal(kn__base64_decode(&b, bad[i], strlen(bad[i])), -1);
        assert_int_equal(b.len, 4);
        assert_string_equal(b.data, "keep");
        kn__buf_free(&b);
    }
    /* An embedded NUL is a bad character, not an end marker. */
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__base64_decode(&b, "Zm\0v", 4), -1);
    assert_int_equal(b.len, 0);
    kn__buf_free(&b);
}

/* Decoding a view: bytes after len are never read (ASan checks the heap copy). */
static void test_decode_reads_only_len_bytes(void **state)
{
    (void)state;
    char *h = malloc(8);
    memcpy(h, "Zm9vYmFy", 8); /* no terminator */
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__base64_decode(&b, h, 4), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "foo", 3);
    assert_int_equal(kn__base64_decode(&b, h, 8), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "foofoobar", 9);
    assert_int_equal(b.data[b.len], '\0');
    kn__buf_free(&b);
    free(h);
}

static uint32_t xs = 88172645u;
static uint32_t xrand(void)
{
    xs ^= xs << 13;
    xs ^= xs >> 17;
    xs ^= xs << 5;
    return xs;
}

/*
 * The AVX-512 VBMI blocks (where this CPU has them) and the table code give
 * the same characters for every length 0..400 and a long input, decode each
 * other's output, and agree on every rejection: one bad byte (outside the
 * alphabet, a '=' inside, a byte >= 0x80) at any position of a 300-character
 * input, and wrongly padded ends. In-place decoding agrees too.
 */
static void test_vector_and_table_code_agree(void **state)
{
    (void)state;
    int has = kn__base64_force_scalar(false);
    if (!has)
        print_message("# base64: this CPU has no AVX-512 VBMI; only the table code runs\n");
    size_t max = 5000;
    unsigned char *in = malloc(max);
    char *a = malloc(max * 2), *b = malloc(max * 2);
    assert_true(in && a && b);
    for (size_t i = 0; i < max; i++)
        in[i] = (unsigned char)xrand();
    for (size_t len = 0; len <= max; len = len < 400 ? len + 1 : len * 2 + 1) {
        if (len > max)
            len = max;
        size_t n = kn__base64_encoded_len(len);
        kn__base64_force_scalar(true);
        kn__base64_encode_to(a, in, len);
        kn__base64_force_scalar(false);
        kn__base64_encode_to(b, in, len);
        if (memcmp(a, b, n) != 0)
            fail_msg("encoding %zu bytes: the two codes differ", len);
        for (int scalar = 0; scalar < 2; scalar++) {
            kn__base64_force_scalar(scalar);
            kn_buf_t out = KN_BUF_INIT;
            assert_int_equal(kn__base64_decode(&out, a, n), 0);
            assert_int_equal(out.len, len);
            if (len)
                assert_memory_equal(out.data, in, len);
            kn__buf_free(&out);
            memcpy(b, a, n);
            assert_int_equal(kn__base64_decode_inplace(b, n), (long)len);
            if (len)
                assert_memory_equal(b, in, len);
        }
        if (len == max)
            break;
    }
    /* One bad byte anywhere in 300 characters: both codes refuse. */
    size_t n = kn__base64_encoded_len(225);
    kn__base64_force_scalar(false);
    kn__base64_encode_to(a, in, 225);
    static const unsigned char bad[] = {'=', '*', ' ', '\0', 0x80, 0xff, '-', '_'};
    for (size_t pos = 0; pos < n; pos++) {
        for (size_t k = 0; k < sizeof(bad); k++) {
            memcpy(b, a, n);
            b[pos] = (char)bad[k];
            if (bad[k] == '=' && pos >= n - 2)
                continue; /* a pad there can be valid */
            for (int scalar = 0; scalar < 2; scalar++) {
                kn__base64_force_scalar(scalar);
                kn_buf_t out = KN_BUF_INIT;
                if (kn__base64_decode(&out, b, n) != -1)
                    fail_msg("byte 0x%02x at %zu accepted (%s code)", bad[k], pos, scalar ? "table" : "vector");
                assert_int_equal(out.len, 0);
                kn__buf_free(&out);
            }
        }
    }
    kn__base64_force_scalar(false);
    free(in);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_rfc4648_vectors),
        cmocka_unit_test(test_encode_to_writes_exact_length),
        cmocka_unit_test(test_encode_matches_bitwise_reference),
        cmocka_unit_test(test_encode_appends),
        cmocka_unit_test(test_decode_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_all_byte_values_and_lengths),
        cmocka_unit_test(test_decode_rejects_bad_input_and_leaves_out_unchanged),
        cmocka_unit_test(test_decode_reads_only_len_bytes),
        cmocka_unit_test(test_vector_and_table_code_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
