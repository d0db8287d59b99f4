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

#include <stdint.h>

static const char enc_tab[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 0xff for everything else. */
static const unsigned char dec_tab[256] = {
    ['A'] = 0,  ['B'] = 1,  ['C'] = 2,  ['D'] = 3,  ['E'] = 4,  ['F'] = 5,  ['G'] = 6,
    ['H'] = 7,  ['I'] = 8,  ['J'] = 9,  ['K'] = 10, ['L'] = 11, ['M'] = 12, ['N'] = 13,
    ['O'] = 14, ['P'] = 15, ['Q'] = 16, ['R'] = 17, ['S'] = 18, ['T'] = 19, ['U'] = 20,
    ['V'] = 21, ['W'] = 22, ['X'] = 23, ['Y'] = 24, ['Z'] = 25, ['a'] = 26, ['b'] = 27,
    ['c'] = 28, ['d'] = 29, ['e'] = 30, ['f'] = 31, ['g'] = 32, ['h'] = 33, ['i'] = 34,
    ['j'] = 35, ['k'] = 36, ['l'] = 37, ['m'] = 38, ['n'] = 39, ['o'] = 40, ['p'] = 41,
    ['q'] = 42, ['r'] = 43, ['s'] = 44, ['t'] = 45, ['u'] = 46, ['v'] = 47, ['w'] = 48,
    ['x'] = 49, ['y'] = 50, ['z'] = 51, ['0'] = 52, ['1'] = 53, ['2'] = 54, ['3'] = 55,
    ['4'] = 56, ['5'] = 57, ['6'] = 58, ['7'] = 59, ['8'] = 60, ['9'] = 61, ['+'] = 62,
    ['/'] = 63,
};

/* dec_tab maps 'A' to 0 like any unlisted byte, so validity needs its own table. */
static int is_b64(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

void kn__base64_encode_to(char *dst, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *dst++ = enc_tab[v >> 18];
        *dst++ = enc_tab[(v >> 12) & 63];
        *dst++ = enc_tab[(v >> 6) & 63];
        *dst++ = enc_tab[v & 63];
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

int kn__base64_decode(kn_buf_t *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    if (len % 4 != 0)
        return -1;
    if (len == 0)
        return kn__buf_reserve(out, 0) == 0 ? 0 : -2;
    /* Validate everything first, so a bad input leaves out untouched. */
    size_t pad = 0;
    if (p[len - 1] == '=')
        pad = p[len - 2] == '=' ? 2 : 1;
    for (size_t i = 0; i < len - pad; i++) {
        if (!is_b64(p[i]))
            return -1;
    }
    if (pad == 2 && (dec_tab[p[len - 3]] & 0x0f) != 0)
        return -1; /* "xy==" carries 12 bits of which the low 4 are unused */
    if (pad == 1 && (dec_tab[p[len - 2]] & 0x03) != 0)
        return -1; /* "xyz=" carries 18 bits of which the low 2 are unused */

    size_t n = len / 4 * 3 - pad;
    if (kn__buf_reserve(out, n) != 0)
        return -2;
    unsigned char *d = (unsigned char *)out->data + out->len;
    size_t full = pad ? len - 4 : len;
    size_t i = 0;
    for (; i < full; i += 4) {
        uint32_t v = (uint32_t)dec_tab[p[i]] << 18 | (uint32_t)dec_tab[p[i + 1]] << 12 |
                     (uint32_t)dec_tab[p[i + 2]] << 6 | dec_tab[p[i + 3]];
        *d++ = (unsigned char)(v >> 16);
        *d++ = (unsigned char)(v >> 8);
        *d++ = (unsigned char)v;
    }
    if (pad == 1) {
        uint32_t v = (uint32_t)dec_tab[p[i]] << 18 | (uint32_t)dec_tab[p[i + 1]] << 12 |
                     (uint32_t)dec_tab[p[i + 2]] << 6;
        *d++ = (unsigned char)(v >> 16);
        *d++ = (unsigned char)(v >> 8);
    } else if (pad == 2) {
        uint32_t v = (uint32_t)dec_tab[p[i]] << 18 | (uint32_t)dec_tab[p[i + 1]] << 12;
        *d++ = (unsigned char)(v >> 16);
    }
    out->len += n;
    out->data[out->len] = '\0';
    return 0;
}
