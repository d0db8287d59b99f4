/*
 * Standard base64 (RFC 4648 section 4, with padding).
 *
 * Decoding is strict: the input length must be a multiple of 4, only the
 * alphabet may appear, '=' only as one or two final pad characters, and the
 * bits a pad leaves unused must be zero (so every byte string has exactly one
 * accepted encoding). Whitespace is not skipped. The decoder reads exactly
 * len bytes and never looks for a NUL.
 */
#include "base64.h"

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

static const char enc_tab[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * Alphabet value plus one, so that 0 marks every byte outside the alphabet
 * and one lookup gives both validity and value.
 */
static const unsigned char dec_tab[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
};

/*
 * Two output characters per 12 input bits, in memory order, so that the
 * main loop turns 6 input bytes into 8 characters with four lookups and one
 * store (the PutRecords body is base64 of every byte the producer sends).
 */
static uint16_t pair_tab[4096];
static pthread_once_t pair_once = PTHREAD_ONCE_INIT;

static void pair_init(void)
{
    for (unsigned v = 0; v < 4096; v++) {
        unsigned char two[2] = {(unsigned char)enc_tab[v >> 6], (unsigned char)enc_tab[v & 63]};
        memcpy(&pair_tab[v], two, 2);
    }
}

void kn__base64_encode_to(char *dst, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    pthread_once(&pair_once, pair_init);
    for (; i + 6 <= len; i += 6) {
        uint64_t v = (uint64_t)p[i] << 56 | (uint64_t)p[i + 1] << 48 | (uint64_t)p[i + 2] << 40 |
                     (uint64_t)p[i + 3] << 32 | (uint64_t)p[i + 4] << 24 | (uint64_t)p[i + 5] << 16;
        uint16_t q[4] = {pair_tab[v >> 52], pair_tab[(v >> 40) & 0xfff], pair_tab[(v >> 28) & 0xfff],
                         pair_tab[(v >> 16) & 0xfff]};
        memcpy(dst, q, 8);
        dst += 8;
    }
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        memcpy(dst, &pair_tab[v >> 12], 2);
        memcpy(dst + 2, &pair_tab[v & 0xfff], 2);
        dst += 4;
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = '=';
        *dst++ = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = enc_tab[(v >> 6) & 63];
        *dst++ = '=';
    }
}

int kn__base64_encode(kn_buf_t *out, const void *data, size_t len)
{
    if (len > (SIZE_MAX - 2) / 4 * 3)
        return -1;
    size_t n = kn__base64_encoded_len(len);
    if (kn__buf_reserve(out, n) != 0)
        return -1;
    kn__base64_encode_to(out->data + out->len, data, len);
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}

/*
 * Decodes len characters of p into d; *n gets the decoded length. 0, or -1
 * for a bad length, character or padding. d may be p itself: each block of
 * four characters is read before its three bytes are written, and writes
 * never pass reads.
 */
static int decode_core(unsigned char *d, const unsigned char *p, size_t len, size_t *n)
{
    *n = 0;
    if (len % 4 != 0)
        return -1;
    if (len == 0)
        return 0;
    size_t pad = 0;
    if (p[len - 1] == '=')
        pad = p[len - 2] == '=' ? 2 : 1;
    size_t out = len / 4 * 3 - pad;
    size_t full = pad ? len - 4 : len;
    for (size_t i = 0; i < full; i += 4) {
        unsigned a = dec_tab[p[i]], b = dec_tab[p[i + 1]], c = dec_tab[p[i + 2]],
                 e = dec_tab[p[i + 3]];
        if (!a || !b || !c || !e)
            return -1;
        uint32_t v =
            (uint32_t)(a - 1) << 18 | (uint32_t)(b - 1) << 12 | (uint32_t)(c - 1) << 6 | (e - 1);
        *d++ = (unsigned char)(v >> 16);
        *d++ = (unsigned char)(v >> 8);
        *d++ = (unsigned char)v;
    }
    if (pad) {
        const unsigned char *q = p + len - 4;
        unsigned a = dec_tab[q[0]], b = dec_tab[q[1]], c = pad == 1 ? dec_tab[q[2]] : 1;
        if (!a || !b || !c)
            return -1;
        uint32_t v = (uint32_t)(a - 1) << 18 | (uint32_t)(b - 1) << 12 | (uint32_t)(c - 1) << 6;
        /* The bits a pad leaves unused must be zero: one canonical encoding per input. */
        if (pad == 2 ? (v & 0xffff) != 0 : (v & 0xff) != 0)
            return -1;
        *d++ = (unsigned char)(v >> 16);
        if (pad == 1)
            *d++ = (unsigned char)(v >> 8);
    }
    *n = out;
    return 0;
}

int kn__base64_decode(kn_buf_t *out, const char *s, size_t len)
{
    if (len % 4 != 0)
        return -1;
    if (kn__buf_reserve(out, len / 4 * 3) != 0)
        return -2;
    size_t n;
    /* A bad character anywhere leaves out->len as it was. */
    int rc = decode_core((unsigned char *)out->data + out->len, (const unsigned char *)s, len, &n);
    if (rc == 0)
        out->len += n;
    out->data[out->len] = '\0';
    return rc;
}

long kn__base64_decode_inplace(char *s, size_t len)
{
    size_t n;
    if (len > (size_t)LONG_MAX || decode_core((unsigned char *)s, (const unsigned char *)s, len, &n) != 0)
        return -1;
    return (long)n;
}
