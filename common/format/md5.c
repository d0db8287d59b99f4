/*
 * MD5 (RFC 1321): a portable one-message implementation, and kn__md5_many,
 * which runs many messages side by side in SIMD lanes (see md5.h).
 *
 * The 64 steps are written once, as MD5_STEPS below, and expanded three
 * times: for 32-bit scalars, for AVX2 registers of 8 lanes and for AVX-512
 * registers of 16. A lane is one message; all lanes of a group take their
 * block j at the same time, and a lane whose message has fewer blocks is
 * masked out of the state update from then on. The wide code is compiled
 * for its instruction set with a target attribute and runs only when the
 * CPU says it has that set (the rest of the library is built for plain
 * x86-64), so one binary serves every machine.
 *
 * Why not OpenSSL: measured on the 2-core dev machine (gcc -O2, keys of 8 to
 * 48 bytes, best of 7 runs of 800k hashes), this scalar code ~110 ns per key,
 * OpenSSL 3.0 with a prefetched EVP_MD and a reused EVP_MD_CTX ~130 ns, a
 * one-shot EVP_Digest ~160 ns: for short inputs the EVP layer's per-call work
 * dominates. OpenSSL also has no many-message MD5, and an OpenSSL FIPS
 * configuration may refuse MD5 altogether, which is wrong for a partitioning
 * hash that has nothing to do with security.
 */
#include "md5.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#define KN_MD5_X86 1
#include <immintrin.h>
#endif

/*
 * The 64 steps: X(round function, a, b, c, d, message word, constant, shift)
 * means a = b + rotl(a + f(b, c, d) + w[word] + constant, shift).
 */
#define MD5_STEPS(X) \
    X(F, a, b, c, d, 0, 0xd76aa478, 7) \
    X(F, d, a, b, c, 1, 0xe8c7b756, 12) \
    X(F, c, d, a, b, 2, 0x242070db, 17) \
    X(F, b, c, d, a, 3, 0xc1bdceee, 22) \
    X(F, a, b, c, d, 4, 0xf57c0faf, 7) \
    X(F, d, a, b, c, 5, 0x4787c62a, 12) \
    X(F, c, d, a, b, 6, 0xa8304613, 17) \
    X(F, b, c, d, a, 7, 0xfd469501, 22) \
    X(F, a, b, c, d, 8, 0x698098d8, 7) \
    X(F, d, a, b, c, 9, 0x8b44f7af, 12) \
    X(F, c, d, a, b, 10, 0xffff5bb1, 17) \
    X(F, b, c, d, a, 11, 0x895cd7be, 22) \
    X(F, a, b, c, d, 12, 0x6b901122, 7) \
    X(F, d, a, b, c, 13, 0xfd987193, 12) \
    X(F, c, d, a, b, 14, 0xa679438e, 17) \
    X(F, b, c, d, a, 15, 0x49b40821, 22) \
    X(G, a, b, c, d, 1, 0xf61e2562, 5) \
    X(G, d, a, b, c, 6, 0xc040b340, 9) \
    X(G, c, d, a, b, 11, 0x265e5a51, 14) \
    X(G, b, c, d, a, 0, 0xe9b6c7aa, 20) \
    X(G, a, b, c, d, 5, 0xd62f105d, 5) \
    X(G, d, a, b, c, 10, 0x02441453, 9) \
    X(G, c, d, a, b, 15, 0xd8a1e681, 14) \
    X(G, b, c, d, a, 4, 0xe7d3fbc8, 20) \
    X(G, a, b, c, d, 9, 0x21e1cde6, 5) \
    X(G, d, a, b, c, 14, 0xc33707d6, 9) \
    X(G, c, d, a, b, 3, 0xf4d50d87, 14) \
    X(G, b, c, d, a, 8, 0x455a14ed, 20) \
    X(G, a, b, c, d, 13, 0xa9e3e905, 5) \
    X(G, d, a, b, c, 2, 0xfcefa3f8, 9) \
    X(G, c, d, a, b, 7, 0x676f02d9, 14) \
    X(G, b, c, d, a, 12, 0x8d2a4c8a, 20) \
    X(H, a, b, c, d, 5, 0xfffa3942, 4) \
    X(H, d, a, b, c, 8, 0x8771f681, 11) \
    X(H, c, d, a, b, 11, 0x6d9d6122, 16) \
    X(H, b, c, d, a, 14, 0xfde5380c, 23) \
    X(H, a, b, c, d, 1, 0xa4beea44, 4) \
    X(H, d, a, b, c, 4, 0x4bdecfa9, 11) \
    X(H, c, d, a, b, 7, 0xf6bb4b60, 16) \
    X(H, b, c, d, a, 10, 0xbebfbc70, 23) \
    X(H, a, b, c, d, 13, 0x289b7ec6, 4) \
    X(H, d, a, b, c, 0, 0xeaa127fa, 11) \
    X(H, c, d, a, b, 3, 0xd4ef3085, 16) \
    X(H, b, c, d, a, 6, 0x04881d05, 23) \
    X(H, a, b, c, d, 9, 0xd9d4d039, 4) \
    X(H, d, a, b, c, 12, 0xe6db99e5, 11) \
    X(H, c, d, a, b, 15, 0x1fa27cf8, 16) \
    X(H, b, c, d, a, 2, 0xc4ac5665, 23) \
    X(I, a, b, c, d, 0, 0xf4292244, 6) \
    X(I, d, a, b, c, 7, 0x432aff97, 10) \
    X(I, c, d, a, b, 14, 0xab9423a7, 15) \
    X(I, b, c, d, a, 5, 0xfc93a039, 21) \
    X(I, a, b, c, d, 12, 0x655b59c3, 6) \
    X(I, d, a, b, c, 3, 0x8f0ccc92, 10) \
    X(I, c, d, a, b, 10, 0xffeff47d, 15) \
    X(I, b, c, d, a, 1, 0x85845dd1, 21) \
    X(I, a, b, c, d, 8, 0x6fa87e4f, 6) \
    X(I, d, a, b, c, 15, 0xfe2ce6e0, 10) \
    X(I, c, d, a, b, 6, 0xa3014314, 15) \
    X(I, b, c, d, a, 13, 0x4e0811a1, 21) \
    X(I, a, b, c, d, 4, 0xf7537e82, 6) \
    X(I, d, a, b, c, 11, 0xbd3af235, 10) \
    X(I, c, d, a, b, 2, 0x2ad7d2bb, 15) \
    X(I, b, c, d, a, 9, 0xeb86d391, 21)

#define MD5_INIT_A 0x67452301u
#define MD5_INIT_B 0xefcdab89u
#define MD5_INIT_C 0x98badcfeu
#define MD5_INIT_D 0x10325476u

/* ------------------------------------------------------------- scalar */

static inline uint32_t rotl32(uint32_t x, int c) { return (x << c) | (x >> (32 - c)); }

static inline uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The four round functions, in forms that need fewer operations than the RFC's. */
#define SF(x, y, z) ((z) ^ ((x) & ((y) ^ (z))))
#define SG(x, y, z) ((y) ^ ((z) & ((x) ^ (y))))
#define SH(x, y, z) ((x) ^ (y) ^ (z))
#define SI(x, y, z) ((y) ^ ((x) | ~(z)))
#define SSTEP(f, a, b, c, d, i, k, s)                                                              \
    (a) += S##f((b), (c), (d)) + w[i] + (uint32_t)(k);                                             \
    (a) = rotl32((a), (s)) + (b);

/* One 64-byte block, fully unrolled (measured about 1.5x faster than a loop). */
static void md5_block(uint32_t st[4], const unsigned char *p)
{
    uint32_t w[16];
    for (int i = 0; i < 16; i++)
        w[i] = load_le32(p + 4 * i);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    MD5_STEPS(SSTEP)
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
}

/* The padded end of a message: its last len % 64 bytes, 0x80, zeros, the bit length. 1 or 2 blocks. */
static size_t md5_tail(unsigned char tail[128], const unsigned char *data, size_t len)
{
    size_t n = len % 64;
    size_t tail_len = n < 56 ? 64 : 128;
    if (n)
        memcpy(tail, data + (len - n), n);
    tail[n] = 0x80;
    memset(tail + n + 1, 0, tail_len - n - 1 - 8);
    uint64_t bits = (uint64_t)len << 3;
    for (size_t i = 0; i < 8; i++)
        tail[tail_len - 8 + i] = (unsigned char)(bits >> (8 * i));
    return tail_len / 64;
}

static void md5_out(const uint32_t st[4], unsigned char out[16])
{
    for (int i = 0; i < 4; i++) {
        out[4 * i] = (unsigned char)st[i];
        out[4 * i + 1] = (unsigned char)(st[i] >> 8);
        out[4 * i + 2] = (unsigned char)(st[i] >> 16);
        out[4 * i + 3] = (unsigned char)(st[i] >> 24);
    }
}

void kn__md5(const void *data, size_t len, unsigned char out[16])
{
    uint32_t st[4] = {MD5_INIT_A, MD5_INIT_B, MD5_INIT_C, MD5_INIT_D};
    const unsigned char *p = data;
    for (size_t n = len / 64; n > 0; n--, p += 64)
        md5_block(st, p);
    unsigned char tail[128];
    size_t tb = md5_tail(tail, data, len);
    for (size_t j = 0; j < tb; j++)
        md5_block(st, tail + 64 * j);
    md5_out(st, out);
}

static void many_scalar(size_t n, const void *const *data, const size_t *len, unsigned char (*out)[16])
{
    for (size_t i = 0; i < n; i++)
        kn__md5(data[i], len[i], out[i]);
}

#ifdef KN_MD5_X86

/* ------------------------------------------------------------- lanes */

#define MAX_LANES 16

/* One message of a group: its whole blocks in place, then its padded tail. */
typedef struct lane_s {
    const unsigned char *data;
    size_t full;   /* whole 64-byte blocks of the data */
    size_t blocks; /* full + the tail's 1 or 2 */
    unsigned char tail[128];
} lane_t;

static const unsigned char zero_block[64];

/* The group's longest message, in blocks. */
static size_t lanes_init(lane_t *l, size_t m, const void *const *data, const size_t *len)
{
    size_t most = 0;
    for (size_t k = 0; k < m; k++) {
        l[k].data = data[k];
        l[k].full = len[k] / 64;
        l[k].blocks = l[k].full + md5_tail(l[k].tail, data[k], len[k]);
        if (l[k].blocks > most)
            most = l[k].blocks;
    }
    return most;
}

/*
 * Block j of every lane, transposed: w[t][k] is word t of lane k's block.
 * Lanes past their message (and unused lanes) read zeros; their state is
 * masked, so what they compute does not matter.
 */
static inline void lanes_load(const lane_t *l, size_t m, size_t j, uint32_t w[16][MAX_LANES])
{
    for (size_t k = 0; k < m; k++) {
        const unsigned char *b = j < l[k].full ? l[k].data + 64 * j
                                 : j < l[k].blocks ? l[k].tail + 64 * (j - l[k].full)
                                                   : zero_block;
        for (int t = 0; t < 16; t++)
            memcpy(&w[t][k], b + 4 * t, 4); /* x86 is little-endian, as MD5's words are */
    }
}

static void lanes_out(size_t m, const uint32_t st[4][MAX_LANES], unsigned char (*out)[16])
{
    for (size_t k = 0; k < m; k++) {
        uint32_t s[4] = {st[0][k], st[1][k], st[2][k], st[3][k]};
        md5_out(s, out[k]);
    }
}

/* ------------------------------------------------------------- AVX2: 8 lanes */

#define A2_F(x, y, z) _mm256_xor_si256((z), _mm256_and_si256((x), _mm256_xor_si256((y), (z))))
#define A2_G(x, y, z) _mm256_xor_si256((y), _mm256_and_si256((z), _mm256_xor_si256((x), (y))))
#define A2_H(x, y, z) _mm256_xor_si256(_mm256_xor_si256((x), (y)), (z))
#define A2_I(x, y, z) _mm256_xor_si256((y), _mm256_or_si256((x), _mm256_xor_si256((z), ones)))
#define A2_STEP(f, a, b, c, d, i, k, s)                                                            \
    (a) = _mm256_add_epi32(_mm256_add_epi32((a), A2_##f((b), (c), (d))),                           \
                           _mm256_add_epi32(w[i], _mm256_set1_epi32((int)(k))));                   \
    (a) = _mm256_add_epi32(_mm256_or_si256(_mm256_slli_epi32((a), (s)), _mm256_srli_epi32((a), 32 - (s))), (b));

__attribute__((target("avx2"))) static void group_avx2(size_t m, const void *const *data, const size_t *len,
                                                      unsigned char (*out)[16])
{
    lane_t l[8];
    uint32_t wt[16][MAX_LANES] __attribute__((aligned(64)));
    uint32_t st[4][MAX_LANES] __attribute__((aligned(64)));
    int32_t live[8] __attribute__((aligned(32)));
    memset(wt, 0, sizeof(wt));
    size_t most = lanes_init(l, m, data, len);
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i A = _mm256_set1_epi32((int)MD5_INIT_A), B = _mm256_set1_epi32((int)MD5_INIT_B);
    __m256i C = _mm256_set1_epi32((int)MD5_INIT_C), D = _mm256_set1_epi32((int)MD5_INIT_D);
    for (size_t j = 0; j < most; j++) {
        lanes_load(l, m, j, wt);
        for (size_t k = 0; k < 8; k++)
            live[k] = k < m && j < l[k].blocks ? -1 : 0;
        __m256i w[16];
        for (int t = 0; t < 16; t++)
            w[t] = _mm256_load_si256((const __m256i *)wt[t]);
        __m256i a = A, b = B, c = C, d = D;
        MD5_STEPS(A2_STEP)
        __m256i mask = _mm256_load_si256((const __m256i *)live);
        A = _mm256_blendv_epi8(A, _mm256_add_epi32(A, a), mask);
        B = _mm256_blendv_epi8(B, _mm256_add_epi32(B, b), mask);
        C = _mm256_blendv_epi8(C, _mm256_add_epi32(C, c), mask);
        D = _mm256_blendv_epi8(D, _mm256_add_epi32(D, d), mask);
    }
    _mm256_store_si256((__m256i *)st[0], A);
    _mm256_store_si256((__m256i *)st[1], B);
    _mm256_store_si256((__m256i *)st[2], C);
    _mm256_store_si256((__m256i *)st[3], D);
    lanes_out(m, st, out);
}

/* ------------------------------------------------------------- AVX-512: 16 lanes */

/* vpternlogd truth tables (operands b, c, d): F = b ? c : d, G = d ? b : c, H = b ^ c ^ d, I = c ^ (b | ~d). */
#define A5_F 0xca
#define A5_G 0xe4
#define A5_H 0x96
#define A5_I 0x39
#define A5_STEP(f, a, b, c, d, i, k, s)                                                            \
    (a) = _mm512_add_epi32(_mm512_add_epi32((a), _mm512_ternarylogic_epi32((b), (c), (d), A5_##f)), \
                           _mm512_add_epi32(w[i], _mm512_set1_epi32((int)(k))));                   \
    (a) = _mm512_add_epi32(_mm512_rol_epi32((a), (s)), (b));

__attribute__((target("avx512f"))) static void group_avx512(size_t m, const void *const *data,
                                                           const size_t *len, unsigned char (*out)[16])
{
    lane_t l[16];
    uint32_t wt[16][MAX_LANES] __attribute__((aligned(64)));
    uint32_t st[4][MAX_LANES] __attribute__((aligned(64)));
    memset(wt, 0, sizeof(wt));
    size_t most = lanes_init(l, m, data, len);
    __m512i A = _mm512_set1_epi32((int)MD5_INIT_A), B = _mm512_set1_epi32((int)MD5_INIT_B);
    __m512i C = _mm512_set1_epi32((int)MD5_INIT_C), D = _mm512_set1_epi32((int)MD5_INIT_D);
    for (size_t j = 0; j < most; j++) {
        lanes_load(l, m, j, wt);
        __mmask16 live = 0;
        for (size_t k = 0; k < m; k++)
            if (j < l[k].blocks)
                live |= (__mmask16)(1u << k);
        __m512i w[16];
        for (int t = 0; t < 16; t++)
            w[t] = _mm512_load_si512((const void *)wt[t]);
        __m512i a = A, b = B, c = C, d = D;
        MD5_STEPS(A5_STEP)
        A = _mm512_mask_add_epi32(A, live, A, a);
        B = _mm512_mask_add_epi32(B, live, B, b);
        C = _mm512_mask_add_epi32(C, live, C, c);
        D = _mm512_mask_add_epi32(D, live, D, d);
    }
    _mm512_store_si512((void *)st[0], A);
    _mm512_store_si512((void *)st[1], B);
    _mm512_store_si512((void *)st[2], C);
    _mm512_store_si512((void *)st[3], D);
    lanes_out(m, st, out);
}

#endif /* KN_MD5_X86 */

/* ------------------------------------------------------------- dispatch */

enum { IMPL_UNSET, IMPL_SCALAR, IMPL_AVX2, IMPL_AVX512 };
static _Atomic int impl_choice = IMPL_UNSET;

static int impl_by_cpu(void)
{
#ifdef KN_MD5_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return IMPL_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return IMPL_AVX2;
#endif
    return IMPL_SCALAR;
}

static int impl_get(void)
{
    int c = atomic_load_explicit(&impl_choice, memory_order_relaxed);
    if (c == IMPL_UNSET) {
        c = impl_by_cpu(); /* every thread that races here computes the same answer */
        atomic_store_explicit(&impl_choice, c, memory_order_relaxed);
    }
    return c;
}

const char *kn__md5_many_impl(void)
{
    switch (impl_get()) {
    case IMPL_AVX512:
        return "avx512";
    case IMPL_AVX2:
        return "avx2";
    default:
        return "scalar";
    }
}

int kn__md5_many_force(const char *name)
{
    int want = IMPL_UNSET;
    if (!name) {
        atomic_store(&impl_choice, impl_by_cpu());
        return 0;
    }
    if (strcmp(name, "scalar") == 0)
        want = IMPL_SCALAR;
#ifdef KN_MD5_X86
    __builtin_cpu_init();
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2"))
        want = IMPL_AVX2;
    if (strcmp(name, "avx512") == 0 && __builtin_cpu_supports("avx512f"))
        want = IMPL_AVX512;
#endif
    if (want == IMPL_UNSET)
        return -1;
    atomic_store(&impl_choice, want);
    return 0;
}

void kn__md5_many(size_t n, const void *const *data, const size_t *len, unsigned char (*out)[16])
{
    int c = impl_get();
#ifdef KN_MD5_X86
    size_t lanes = c == IMPL_AVX512 ? 16 : c == IMPL_AVX2 ? 8 : 1;
    while (lanes > 1 && n >= 2) {
        size_t m = n < lanes ? n : lanes;
        if (c == IMPL_AVX512)
            group_avx512(m, data, len, out);
        else
            group_avx2(m, data, len, out);
        n -= m;
        data += m;
        len += m;
        out += m;
    }
#else
    (void)c;
#endif
    many_scalar(n, data, len, out);
}
