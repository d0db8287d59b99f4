/*
 * Standard base64 (RFC 4648 section 4, with padding).
 *
 * Decoding is strict: the input length must be a multiple of 4, only the
 * alphabet may appear, '=' only as one or two final pad characters, and the
 * bits a pad leaves unused must be zero (so every byte string has exactly one
 * accepted encoding). Whitespace is not skipped. The decoder reads exactly
 * len bytes and never looks for a NUL.
 *
 * Where the CPU has AVX-512 VBMI, whole blocks of 48 bytes (64 characters)
 * go through byte permutations in one register each way, the method of
 * Mula and Lemire ("Base64 encoding and decoding at almost the speed of a
 * memory copy", 2019): about twenty times fewer instructions per byte than
 * the table code, which handles the rest (the ends, other CPUs, and any
 * block with a character outside the alphabet, so that errors are decided
 * in one place). The choice is made once, at run time; the unit test runs
 * both and compares them.
 */
#include "base64.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define KN_B64_X86 1
#include <immintrin.h>
#endif

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

static _Atomic bool use_vbmi; /* set once by pair_init; kn__base64_force_scalar turns it off */

static bool cpu_has_vbmi(void)
{
#ifdef KN_B64_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

static void pair_init(void)
{
    for (unsigned v = 0; v < 4096; v++) {
        unsigned char two[2] = {(unsigned char)enc_tab[v >> 6], (unsigned char)enc_tab[v & 63]};
        memcpy(&pair_tab[v], two, 2);
    }
    use_vbmi = cpu_has_vbmi();
}

int kn__base64_force_scalar(bool scalar)
{
    pthread_once(&pair_once, pair_init);
    bool has = cpu_has_vbmi();
    use_vbmi = !scalar && has;
    return has ? 1 : 0;
}

#ifdef KN_B64_X86
#define B64_VBMI __attribute__((target("avx512f,avx512bw,avx512vbmi")))

/*
 * Encodes the first len / 48 blocks of 48 bytes into 64 characters each;
 * returns the bytes done. Per block: one byte permutation gathers each
 * 3-byte group into a 32-bit lane as [b1 b0 b2 b1], a multishift picks out
 * the four 6-bit fields of each lane at bit offsets 10, 4, 22 and 16, and a
 * second permutation maps each field to its letter.
 */
B64_VBMI static size_t encode_vbmi(char *dst, const unsigned char *src, size_t len)
{
    const __m512i gather = _mm512_setr_epi32(
        0x01020001, 0x04050304, 0x07080607, 0x0a0b090a, 0x0d0e0c0d, 0x10110f10, 0x13141213, 0x16171516,
        0x191a1819, 0x1c1d1b1c, 0x1f201e1f, 0x22232122, 0x25262425, 0x28292728, 0x2b2c2a2b, 0x2e2f2d2e);
    const __m512i shifts = _mm512_set1_epi64(0x3036242a1016040aLL);
    const __m512i alphabet = _mm512_loadu_si512((const void *)enc_tab);
    size_t done = 0;
    for (; done + 48 <= len; done += 48, dst += 64) {
        __m512i in = _mm512_maskz_loadu_epi8(0x0000ffffffffffffULL, src + done);
        __m512i lanes = _mm512_permutexvar_epi8(gather, in);
        __m512i fields = _mm512_multishift_epi64_epi8(shifts, lanes);
        _mm512_storeu_si512((void *)dst, _mm512_permutexvar_epi8(fields, alphabet));
    }
    return done;
}

/* Alphabet value of each ASCII character, 0x80 for the others; built by vbmi_tab_init. */
static unsigned char vbmi_dec[128] __attribute__((aligned(64)));
static pthread_once_t vbmi_once = PTHREAD_ONCE_INIT;
static void vbmi_tab_init(void)
{
    for (int c = 0; c < 128; c++)
        vbmi_dec[c] = dec_tab[c] ? (unsigned char)(dec_tab[c] - 1) : 0x80;
}

/*
 * Decodes whole blocks of 64 characters of p[0..len) into 48 bytes each, in
 * order, stopping before a block with any byte outside the alphabet (the
 * table code then decides it); returns the characters done. d may be p:
 * block k is read whole before bytes 48k..48k+47 are written, and those lie
 * before block k+1.
 */
B64_VBMI static size_t decode_vbmi(unsigned char *d, const unsigned char *p, size_t len)
{
    pthread_once(&vbmi_once, vbmi_tab_init);
    const __m512i lo = _mm512_load_si512((const void *)vbmi_dec);
    const __m512i hi = _mm512_load_si512((const void *)(vbmi_dec + 64));
    /* Within each 32-bit lane: a<<6|b and c<<6|d as 16-bit halves, then (a<<6|b)<<12 | (c<<6|d). */
    const __m512i pair = _mm512_set1_epi32(0x01400140);
    const __m512i quad = _mm512_set1_epi32(0x00011000);
    /* The three bytes of each 24-bit lane value, most significant first. */
    const __m512i pack = _mm512_set_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        60, 61, 62, 56, 57, 58, 52, 53, 54, 48, 49, 50, 44, 45, 46, 40,
        41, 42, 36, 37, 38, 32, 33, 34, 28, 29, 30, 24, 25, 26, 20, 21,
        22, 16, 17, 18, 12, 13, 14, 8, 9, 10, 4, 5, 6, 0, 1, 2);
    size_t done = 0;
    for (; done + 64 <= len; done += 64, d += 48) {
        __m512i in = _mm512_loadu_si512((const void *)(p + done));
        __m512i vals = _mm512_permutex2var_epi8(lo, in, hi);
        if (_mm512_movepi8_mask(_mm512_or_si512(vals, in)) != 0)
            break; /* a byte >= 0x80, or one outside the alphabet */
        __m512i merged = _mm512_madd_epi16(_mm512_maddubs_epi16(vals, pair), quad);
        _mm512_mask_storeu_epi8(d, 0x0000ffffffffffffULL, _mm512_permutexvar_epi8(pack, merged));
    }
    return done;
}
#endif

void kn__base64_encode_to(char *dst, const void *data, size_t len)
{
    const unsigned char *p = data;
    size_t i = 0;
    pthread_once(&pair_once, pair_init);
#ifdef KN_B64_X86
    if (use_vbmi && len >= 48) {
        i = encode_vbmi(dst, p, len);
        dst += i / 3 * 4;
    }
#endif
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
    size_t i = 0;
#ifdef KN_B64_X86
    pthread_once(&pair_once, pair_init);
    if (use_vbmi && full >= 64) {
        i = decode_vbmi(d, p, full);
        d += i / 4 * 3;
    }
#endif
    for (; i < full; i += 4) {
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
