/*
 * AWS Signature Version 4 header signing (rules in sigv4.h).
 *
 * Runs per request on the I/O thread, so the steady state allocates nothing:
 * the canonical request is streamed through a small staging buffer straight
 * into SHA-256, the OpenSSL contexts come from a pool in the cache, the
 * signing key comes from the cache, and only a request with a long query, a
 * long path or many headers spills to the heap.
 */
#include "sigv4.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALGORITHM "AWS4-HMAC-SHA256"
#define MAX_SCOPE_PART 128 /* region, service, access key id */
#define CACHE_SLOTS 8
#define STACK_HEADERS 24
#define STACK_SEGMENTS 32
#define STACK_PAIRS 16

/* ---- OpenSSL algorithms, fetched once per process ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static EVP_MD *g_sha256;
static EVP_MAC *g_hmac;

static void crypto_init(void)
{
    /* Explicit fetches: the implicit fetch behind EVP_sha256() costs a
     * lookup on every EVP_DigestInit_ex. */
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
}

static bool crypto_ready(void)
{
    pthread_once(&g_once, crypto_init);
    return g_sha256 && g_hmac;
}

/* Per-call OpenSSL contexts; pooled in the cache so a signer reuses them. */
typedef struct work_s {
    EVP_MD_CTX *md;
    EVP_MAC_CTX *mac;
    struct work_s *next;
} work_t;

static void work_free(work_t *w)
{
    if (!w)
        return;
    EVP_MD_CTX_free(w->md);
    EVP_MAC_CTX_free(w->mac);
    free(w);
}

static work_t *work_new(void)
{
    work_t *w = calloc(1, sizeof(*w));
    if (!w)
        goto fail;
    w->md = EVP_MD_CTX_new();
    w->mac = EVP_MAC_CTX_new(g_hmac);
    if (!w->md || !w->mac)
        goto fail;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(w->mac, params) != 1)
        goto fail;
    return w;
fail:
    work_free(w);
    return NULL;
}

static int hmac256(work_t *w, const void *key, size_t key_len, const void *msg, size_t msg_len,
                   unsigned char out[32])
{
    size_t n = 0;
    if (EVP_MAC_init(w->mac, key, key_len, NULL) != 1 || EVP_MAC_update(w->mac, msg, msg_len) != 1 ||
        EVP_MAC_final(w->mac, out, &n, 32) != 1 || n != 32)
        return -1;
    return 0;
}

static int sha256(work_t *w, const void *data, size_t len, unsigned char out[32])
{
    if (EVP_DigestInit_ex(w->md, g_sha256, NULL) != 1 || EVP_DigestUpdate(w->md, data, len) != 1 ||
        EVP_DigestFinal_ex(w->md, out, NULL) != 1)
        return -1;
    return 0;
}

static inline char *append(char *dst, const char *src, size_t n)
{
    memcpy(dst, src, n);
    return dst + n;
}

static void to_hex(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- derived-key cache ---- */

typedef struct slot_s {
    bool used;
    unsigned char id[32]; /* SHA-256(access key id NUL secret): the secret itself is not kept */
    char date[9];
    char region[MAX_SCOPE_PART + 1];
    char service[MAX_SCOPE_PART + 1];
    unsigned char key[32];
} slot_t;

struct kn__sigv4_cache_s {
    pthread_mutex_t lock;
    slot_t slots[CACHE_SLOTS];
    unsigned next_victim;
    uint64_t hits, misses;
    work_t *pool;
};

kn__sigv4_cache_t *kn__sigv4_cache_new(void)
{
    kn__sigv4_cache_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    return c;
}

void kn__sigv4_cache_destroy(kn__sigv4_cache_t *c)
{
    if (!c)
        return;
    while (c->pool) {
        work_t *w = c->pool;
        c->pool = w->next;
        work_free(w);
    }
    pthread_mutex_destroy(&c->lock);
    OPENSSL_cleanse(c, sizeof(*c));
    free(c);
}

void kn__sigv4_cache_stats(kn__sigv4_cache_t *c, uint64_t *hits, uint64_t *misses)
{
    uint64_t h = 0, m = 0;
    if (c) {
        pthread_mutex_lock(&c->lock);
        h = c->hits;
        m = c->misses;
        pthread_mutex_unlock(&c->lock);
    }
    if (hits)
        *hits = h;
    if (misses)
        *misses = m;
}

static work_t *work_get(kn__sigv4_cache_t *c)
{
    work_t *w = NULL;
    if (c) {
        pthread_mutex_lock(&c->lock);
        w = c->pool;
        if (w)
            c->pool = w->next;
        pthread_mutex_unlock(&c->lock);
    }
    return w ? w : work_new();
}

static void work_put(kn__sigv4_cache_t *c, work_t *w)
{
    if (!w)
        return;
    if (!c) {
        work_free(w);
        return;
    }
    pthread_mutex_lock(&c->lock);
    w->next = c->pool;
    c->pool = w;
    pthread_mutex_unlock(&c->lock);
}

static int derive(work_t *w, const char *secret, size_t secret_len, const char *date8, const char *region,
                  const char *service, unsigned char key[32])
{
    int rc = -1;
    unsigned char k1[32], k2[32];
    char stack_key[256];
    char *k0 = stack_key;
    size_t k0_len = 4 + secret_len;
    if (k0_len > sizeof(stack_key)) {
        k0 = malloc(k0_len);
        if (!k0)
            goto out;
    }
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret, secret_len);
    if (hmac256(w, k0, k0_len, date8, strlen(date8), k1) != 0 ||
        hmac256(w, k1, 32, region, strlen(region), k2) != 0 ||
        hmac256(w, k2, 32, service, strlen(service), k1) != 0 ||
        hmac256(w, k1, 32, "aws4_request", 12, key) != 0)
        goto out;
    rc = 0;
out:
    if (k0) {
        OPENSSL_cleanse(k0, k0 == stack_key ? sizeof(stack_key) : k0_len);
        if (k0 != stack_key)
            free(k0);
    }
    OPENSSL_cleanse(k1, sizeof(k1));
    OPENSSL_cleanse(k2, sizeof(k2));
    return rc;
}

/* Signing key through the cache. Returns 0, -1 (crypto) or -2 (memory). */
static int signing_key(kn__sigv4_cache_t *c, work_t *w, const kn__sigv4_creds_t *creds, const char *date8,
                       const char *region, const char *service, unsigned char key[32])
{
    size_t akid_len = strlen(creds->access_key_id), secret_len = strlen(creds->secret_access_key);
    if (!c)
        return derive(w, creds->secret_access_key, secret_len, date8, region, service, key);

    unsigned char id[32];
    if (EVP_DigestInit_ex(w->md, g_sha256, NULL) != 1 ||
        EVP_DigestUpdate(w->md, creds->access_key_id, akid_len + 1) != 1 ||
        EVP_DigestUpdate(w->md, creds->secret_access_key, secret_len) != 1 ||
        EVP_DigestFinal_ex(w->md, id, NULL) != 1)
        return -1;

    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < CACHE_SLOTS; i++) {
        slot_t *s = &c->slots[i];
        if (s->used && memcmp(s->id, id, 32) == 0 && strcmp(s->date, date8) == 0 &&
            strcmp(s->region, region) == 0 && strcmp(s->service, service) == 0) {
            memcpy(key, s->key, 32);
            c->hits++;
            pthread_mutex_unlock(&c->lock);
            return 0;
        }
    }
    c->misses++;
    pthread_mutex_unlock(&c->lock);

    /* Derive outside the lock; two threads may race to fill the same entry,
     * which only costs a duplicate slot until it is evicted. */
    if (derive(w, creds->secret_access_key, secret_len, date8, region, service, key) != 0)
        return -1;

    pthread_mutex_lock(&c->lock);
    slot_t *s = &c->slots[c->next_victim];
    c->next_victim = (c->next_victim + 1) % CACHE_SLOTS;
    s->used = true;
    memcpy(s->id, id, 32);
    memcpy(s->date, date8, 9);
    snprintf(s->region, sizeof(s->region), "%s", region);
    snprintf(s->service, sizeof(s->service), "%s", service);
    memcpy(s->key, key, 32);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

/* ---- canonical request sink: staging buffer -> SHA-256 (+ optional copy) ---- */

enum { SINK_OK = 0, SINK_ECRYPTO, SINK_ENOMEM };

typedef struct sink_s {
    EVP_MD_CTX *md;
    kn_buf_t *copy;
    int err;
    size_t n;
    char buf[1024];
} sink_t;

static void sink_write(sink_t *s, const void *p, size_t n)
{
    if (s->err)
        return;
    if (EVP_DigestUpdate(s->md, p, n) != 1)
        s->err = SINK_ECRYPTO;
    else if (s->copy && kn__buf_append(s->copy, p, n) != 0)
        s->err = SINK_ENOMEM;
}

static void sink_flush(sink_t *s)
{
    if (s->n)
        sink_write(s, s->buf, s->n);
    s->n = 0;
}

static void sink_put(sink_t *s, const void *p, size_t n)
{
    if (n > sizeof(s->buf) - s->n) {
        sink_flush(s);
        if (n >= sizeof(s->buf)) {
            sink_write(s, p, n);
            return;
        }
    }
    memcpy(s->buf + s->n, p, n);
    s->n += n;
}

static inline void sink_putc(sink_t *s, char c)
{
    if (s->n == sizeof(s->buf))
        sink_flush(s);
    s->buf[s->n++] = c;
}

static inline unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static void sink_put_lower(sink_t *s, const char *p, size_t n)
{
    while (n) {
        if (s->n == sizeof(s->buf))
            sink_flush(s);
        size_t k = sizeof(s->buf) - s->n;
        if (k > n)
            k = n;
        for (size_t i = 0; i < k; i++)
            s->buf[s->n + i] = (char)lower((unsigned char)p[i]);
        s->n += k;
        p += k;
        n -= k;
    }
}

/* ---- character classes ---- */

static inline bool is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

static inline bool is_tchar(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7f)
        return false;
    switch (c) {
    case '"': case '(': case ')': case ',': case '/': case ':': case ';': case '<': case '=':
    case '>': case '?': case '@': case '[': case '\\': case ']': case '{': case '}':
        return false;
    default:
        return true;
    }
}

static inline int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static const char k_hex_upper[] = "0123456789ABCDEF";

/* Percent-encodes p into the sink; '/' stays when keep_slash. */
static void put_encoded(sink_t *s, const char *p, size_t n, bool keep_slash)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (is_unreserved(c) || (keep_slash && c == '/'))
            continue;
        if (i > run)
            sink_put(s, p + run, i - run);
        char esc[3] = {'%', k_hex_upper[c >> 4], k_hex_upper[c & 15]};
        sink_put(s, esc, 3);
        run = i + 1;
    }
    if (n > run)
        sink_put(s, p + run, n - run);
}

/* Decodes valid %XX escapes in p and re-encodes into dst (room for 3*n). */
static size_t recode_query_part(const char *p, size_t n, char *dst)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        int h, l;
        if (c == '%' && i + 2 < n && (h = hexval((unsigned char)p[i + 1])) >= 0 &&
            (l = hexval((unsigned char)p[i + 2])) >= 0) {
            c = (unsigned char)(h << 4 | l);
            i += 3;
        } else {
            i++;
        }
        if (is_unreserved(c)) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '%';
            dst[o++] = k_hex_upper[c >> 4];
            dst[o++] = k_hex_upper[c & 15];
        }
    }
    return o;
}

/* ---- canonical URI ---- */

typedef struct view_s {
    const char *p;
    size_t n;
} view_t;

static int put_path(sink_t *s, const char *path, bool normalize)
{
    size_t len = path ? strlen(path) : 0;
    if (len == 0) {
        sink_putc(s, '/');
        return 0;
    }
    if (!normalize) {
        put_encoded(s, path, len, true);
        return 0;
    }

    view_t stack_segs[STACK_SEGMENTS];
    view_t *segs = stack_segs;
    size_t max_segs = 1;
    for (size_t i = 0; i < len; i++)
        max_segs += path[i] == '/';
    if (max_segs > STACK_SEGMENTS) {
        segs = malloc(max_segs * sizeof(*segs));
        if (!segs)
            return -1;
    }
    size_t n = 0;
    for (size_t start = 0; start <= len;) {
        const char *slash = memchr(path + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - path) : len;
        const char *seg = path + start;
        size_t seg_len = end - start;
        if (seg_len == 0 || (seg_len == 1 && seg[0] == '.')) {
            /* empty segment (duplicate slash) or "." */
        } else if (seg_len == 2 && seg[0] == '.' && seg[1] == '.') {
            if (n)
                n--;
        } else {
            segs[n].p = seg;
            segs[n].n = seg_len;
            n++;
        }
        start = end + 1;
    }
    if (path[0] == '/')
        sink_putc(s, '/');
    for (size_t i = 0; i < n; i++) {
        if (i)
            sink_putc(s, '/');
        put_encoded(s, segs[i].p, segs[i].n, false);
    }
    if (path[len - 1] == '/' && n)
        sink_putc(s, '/');
    if (segs != stack_segs)
        free(segs);
    return 0;
}

/* ---- canonical query ---- */

typedef struct pair_s {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} pair_t;

static int pair_cmp(const void *a, const void *b)
{
    const pair_t *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int r = memcmp(x->name, y->name, n);
    if (r)
        return r;
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    n = x->value_len < y->value_len ? x->value_len : y->value_len;
    r = memcmp(x->value, y->value, n);
    if (r)
        return r;
    return x->value_len < y->value_len ? -1 : x->value_len > y->value_len;
}

static int put_query(sink_t *s, const char *query)
{
    int rc = -1;
    size_t len = query ? strlen(query) : 0;
    if (len == 0)
        return 0;

    char stack_text[768];
    pair_t stack_pairs[STACK_PAIRS];
    char *text = stack_text;
    pair_t *pairs = stack_pairs;
    size_t max_pairs = 1;
    for (size_t i = 0; i < len; i++)
        max_pairs += query[i] == '&';
    if (len > (SIZE_MAX - 1) / 3)
        goto out;
    if (3 * len > sizeof(stack_text) && !(text = malloc(3 * len)))
        goto out;
    if (max_pairs > STACK_PAIRS && !(pairs = malloc(max_pairs * sizeof(*pairs))))
        goto out;

    size_t n = 0, o = 0;
    for (size_t start = 0; start <= len;) {
        const char *amp = memchr(query + start, '&', len - start);
        size_t end = amp ? (size_t)(amp - query) : len;
        if (end > start) {
            const char *piece = query + start;
            size_t piece_len = end - start;
            const char *eq = memchr(piece, '=', piece_len);
            size_t name_len = eq ? (size_t)(eq - piece) : piece_len;
            pairs[n].name = text + o;
            pairs[n].name_len = recode_query_part(piece, name_len, text + o);
            o += pairs[n].name_len;
            pairs[n].value = text + o;
            pairs[n].value_len =
                eq ? recode_query_part(eq + 1, piece_len - name_len - 1, text + o) : 0;
            o += pairs[n].value_len;
            n++;
        }
        start = end + 1;
    }
    qsort(pairs, n, sizeof(*pairs), pair_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i)
            sink_putc(s, '&');
        sink_put(s, pairs[i].name, pairs[i].name_len);
        sink_putc(s, '=');
        sink_put(s, pairs[i].value, pairs[i].value_len);
    }
    rc = 0;
out:
    if (text != stack_text)
        free(text);
    if (pairs != stack_pairs)
        free(pairs);
    return rc;
}

/* ---- headers ---- */

typedef struct hent_s {
    const char *name;
    size_t name_len;
    const char *value;
    size_t idx; /* input order: ties keep it, so repeated headers join in order */
} hent_t;

static int hent_cmp(const void *a, const void *b)
{
    const hent_t *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    for (size_t i = 0; i < n; i++) {
        unsigned char cx = lower((unsigned char)x->name[i]), cy = lower((unsigned char)y->name[i]);
        if (cx != cy)
            return cx < cy ? -1 : 1;
    }
    if (x->name_len != y->name_len)
        return x->name_len < y->name_len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static bool same_name(const hent_t *x, const hent_t *y)
{
    if (x->name_len != y->name_len)
        return false;
    for (size_t i = 0; i < x->name_len; i++)
        if (lower((unsigned char)x->name[i]) != lower((unsigned char)y->name[i]))
            return false;
    return true;
}

enum hkind { H_OTHER, H_SKIP, H_HOST, H_DATE, H_SHA, H_TOKEN };

/* Headers the signer treats specially. The skipped ones are never signed (as
 * botocore): hop-by-hop headers, and ones proxies and tracers rewrite. */
static const struct {
    const char *name;
    size_t len;
    enum hkind kind;
} k_special[] = {
#define SPECIAL(n, k) {n, sizeof(n) - 1, k}
    SPECIAL("te", H_SKIP),
    SPECIAL("host", H_HOST),
    SPECIAL("expect", H_SKIP),
    SPECIAL("trailer", H_SKIP),
    SPECIAL("upgrade", H_SKIP),
    SPECIAL("connection", H_SKIP),
    SPECIAL("keep-alive", H_SKIP),
    SPECIAL("user-agent", H_SKIP),
    SPECIAL("x-amz-date", H_DATE),
    SPECIAL("authorization", H_SKIP),
    SPECIAL("x-amzn-trace-id", H_SKIP),
    SPECIAL("transfer-encoding", H_SKIP),
    SPECIAL("proxy-authenticate", H_SKIP),
    SPECIAL("proxy-authorization", H_SKIP),
    SPECIAL("x-amz-content-sha256", H_SHA),
    SPECIAL("x-amz-security-token", H_TOKEN),
#undef SPECIAL
};

static enum hkind classify(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(k_special) / sizeof(k_special[0]); i++) {
        if (k_special[i].len != len)
            continue;
        size_t k = 0;
        while (k < len && lower((unsigned char)name[k]) == (unsigned char)k_special[i].name[k])
            k++;
        if (k == len)
            return k_special[i].kind;
    }
    return H_OTHER;
}

static inline bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* A line break inside a value must be a folded continuation (then SP/HT). */
static bool value_ok(const char *v)
{
    for (size_t i = 0; v[i]; i++) {
        if (v[i] == '\r' || v[i] == '\n') {
            size_t j = i;
            while (v[j] == '\r' || v[j] == '\n')
                j++;
            if (v[j] != ' ' && v[j] != '\t')
                return false;
            i = j;
        }
    }
    return true;
}

/* Trimmed, folded value into the sink. */
static void put_value(sink_t *s, const char *v)
{
    size_t i = 0;
    bool any = false;
    while (v[i]) {
        while (is_ws((unsigned char)v[i]))
            i++;
        if (!v[i])
            break;
        size_t start = i;
        while (v[i] && !is_ws((unsigned char)v[i]))
            i++;
        if (any)
            sink_putc(s, ' ');
        sink_put(s, v + start, i - start);
        any = true;
    }
}

/* Trimmed value (no inner folding needed for the tokens we read) into dst. */
static bool trimmed_copy(const char *v, char *dst, size_t size)
{
    while (is_ws((unsigned char)*v))
        v++;
    size_t n = strlen(v);
    while (n && is_ws((unsigned char)v[n - 1]))
        n--;
    if (n >= size)
        return false;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return true;
}

static bool amz_date_ok(const char *d)
{
    for (int i = 0; i < 16; i++) {
        char c = d[i];
        if (i == 8 ? c != 'T' : i == 15 ? c != 'Z' : !(c >= '0' && c <= '9'))
            return false;
    }
    return d[16] == '\0';
}

/* Printable ASCII without space, '/' and ',' (a credential scope part). */
static bool scope_part_ok(const char *s)
{
    if (!s || !*s || strlen(s) > MAX_SCOPE_PART)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == '/' || *s == ',')
            return false;
    return true;
}

/* ---- public helpers ---- */

static void put_digits(char *dst, int v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        dst[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void kn__sigv4_amz_date(time_t t, char out[17])
{
    struct tm tm;
    out[0] = '\0';
    if (!gmtime_r(&t, &tm) || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
        return;
    put_digits(out, tm.tm_year + 1900, 4);
    put_digits(out + 4, tm.tm_mon + 1, 2);
    put_digits(out + 6, tm.tm_mday, 2);
    out[8] = 'T';
    put_digits(out + 9, tm.tm_hour, 2);
    put_digits(out + 11, tm.tm_min, 2);
    put_digits(out + 13, tm.tm_sec, 2);
    out[15] = 'Z';
    out[16] = '\0';
}

void kn__sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char d[32];
    unsigned int n = 0;
    out[0] = '\0';
    if (!crypto_ready() || EVP_Digest(data, len, d, &n, g_sha256, NULL) != 1 || n != 32)
        return;
    to_hex(d, 32, out);
}

kn_err_t kn__sigv4_derive_key(const char *secret_access_key, const char *date8, const char *region,
                              const char *service, unsigned char key[32], kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    work_t *w = NULL;
    if (!secret_access_key || !*secret_access_key || !date8 || strlen(date8) != 8 ||
        !scope_part_ok(region) || !scope_part_ok(service)) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                           "SigV4: key derivation needs a secret, an 8-digit date, a region and a service");
        goto out;
    }
    if (!crypto_ready()) {
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL offers no SHA-256/HMAC");
        goto out;
    }
    if (!(w = work_new())) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "SigV4: out of memory");
        goto out;
    }
    if (derive(w, secret_access_key, strlen(secret_access_key), date8, region, service, key) != 0)
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL HMAC-SHA256 failed");
out:
    work_free(w);
    return rc;
}

/* ---- the signer ---- */

kn_err_t kn__sigv4_sign(kn__sigv4_cache_t *cache, const kn__sigv4_creds_t *creds,
                        const kn__sigv4_req_t *req, kn__sigv4_out_t *out, kn_buf_t *canonical,
                        kn_buf_t *string_to_sign, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    work_t *w = NULL;
    hent_t stack_ents[STACK_HEADERS];
    hent_t *ents = stack_ents;
    unsigned char key[32], digest[32];
    sink_t sink; /* staging area only: not initialized beyond the header */
    sink.n = 0;
    sink.err = SINK_OK;
    sink.copy = canonical;
    sink.md = NULL;

    if (!creds || !req || !out) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: credentials, request and output are required");
        goto out;
    }
    out->amz_date[0] = out->payload_hash[0] = out->signature[0] = out->authorization[0] = '\0';
    out->add_date_header = out->add_token_header = out->add_content_sha_header = false;
    if (!req->method || !*req->method) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: the request has no HTTP method");
        goto out;
    }
    for (const char *m = req->method; *m; m++) {
        if (!is_tchar((unsigned char)*m)) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: the HTTP method is not a token");
            goto out;
        }
    }
    if (!scope_part_ok(creds->access_key_id)) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                           "SigV4: the access key id is missing, longer than %d bytes, or holds a "
                           "space, '/', ',' or a non-ASCII byte",
                           MAX_SCOPE_PART);
        goto out;
    }
    if (!creds->secret_access_key || !*creds->secret_access_key) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: the secret access key is missing");
        goto out;
    }
    if (!scope_part_ok(req->region) || !scope_part_ok(req->service)) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                           "SigV4: the %s is missing, longer than %d bytes, or holds a space, '/', ',' "
                           "or a non-ASCII byte",
                           scope_part_ok(req->region) ? "service name" : "region", MAX_SCOPE_PART);
        goto out;
    }
    if (req->n_headers && !req->headers) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: n_headers is %zu but headers is NULL",
                           req->n_headers);
        goto out;
    }
    if (req->body_len && !req->body) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: body_len is %zu but body is NULL", req->body_len);
        goto out;
    }
    if (!crypto_ready()) {
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL offers no SHA-256/HMAC");
        goto out;
    }

    bool has_token = creds->session_token && *creds->session_token;
    const char *given_date = NULL, *given_sha = NULL;
    bool token_present = false;
    size_t n_host = 0;

    if (req->n_headers + 3 > STACK_HEADERS) {
        ents = malloc((req->n_headers + 3) * sizeof(*ents));
        if (!ents) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "SigV4: out of memory");
            goto out;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *name = req->headers[i].name, *value = req->headers[i].value;
        if (!name || !*name || !value) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: header #%zu has no %s", i,
                               !name || !*name ? "name" : "value");
            goto out;
        }
        size_t len = 0;
        for (; name[len]; len++) {
            if (!is_tchar((unsigned char)name[len])) {
                rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                                   "SigV4: header name #%zu holds a character not allowed in a "
                                   "header name (byte 0x%02x)",
                                   i, (unsigned char)name[len]);
                goto out;
            }
        }
        if (!value_ok(value)) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                               "SigV4: the value of header '%s' holds a line break that is not a "
                               "folded continuation",
                               name);
            goto out;
        }
        enum hkind kind = classify(name, len);
        if (kind == H_SKIP)
            continue;
        if (kind == H_HOST) {
            n_host++;
        } else if (kind == H_DATE) {
            if (given_date) {
                rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: more than one X-Amz-Date header");
                goto out;
            }
            given_date = value;
        } else if (kind == H_SHA) {
            if (given_sha) {
                rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                                   "SigV4: more than one x-amz-content-sha256 header");
                goto out;
            }
            given_sha = value;
        } else if (kind == H_TOKEN) {
            token_present = true;
            if (req->omit_session_token)
                continue;
        }
        ents[n].name = name;
        ents[n].name_len = len;
        ents[n].value = value;
        ents[n].idx = i;
        n++;
    }
    if (n_host != 1) {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                           n_host ? "SigV4: more than one Host header"
                                  : "SigV4: the request has no Host header (it must be signed)");
        goto out;
    }

    /* Signing time. */
    if (given_date) {
        if (!trimmed_copy(given_date, out->amz_date, sizeof(out->amz_date)) || !amz_date_ok(out->amz_date)) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                               "SigV4: the X-Amz-Date header is not of the form YYYYMMDDTHHMMSSZ");
            goto out;
        }
    } else {
        kn__sigv4_amz_date(req->now, out->amz_date);
        if (!out->amz_date[0]) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG, "SigV4: the signing time %lld is out of range",
                               (long long)req->now);
            goto out;
        }
        out->add_date_header = true;
        ents[n++] = (hent_t){"x-amz-date", 10, out->amz_date, req->n_headers};
    }

    w = work_get(cache);
    if (!w) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "SigV4: out of memory (OpenSSL contexts)");
        goto out;
    }

    /* Payload hash. */
    if (given_sha || (req->payload_sha256_hex && *req->payload_sha256_hex)) {
        const char *src = given_sha ? given_sha : req->payload_sha256_hex;
        bool ok = trimmed_copy(src, out->payload_hash, sizeof(out->payload_hash)) && out->payload_hash[0];
        for (const char *p = out->payload_hash; ok && *p; p++)
            ok = (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f;
        if (!ok) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                               "SigV4: the %s is empty, longer than 64 bytes or not printable ASCII",
                               given_sha ? "x-amz-content-sha256 header" : "precomputed payload hash");
            goto out;
        }
    } else {
        if (sha256(w, req->body_len ? req->body : "", req->body_len, digest) != 0) {
            rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL SHA-256 failed");
            goto out;
        }
        to_hex(digest, 32, out->payload_hash);
    }

    if (has_token && !token_present) {
        out->add_token_header = true;
        if (!req->omit_session_token)
            ents[n++] = (hent_t){"x-amz-security-token", 20, creds->session_token, req->n_headers + 1};
    }
    if (req->sign_body && !given_sha) {
        out->add_content_sha_header = true;
        ents[n++] = (hent_t){"x-amz-content-sha256", 20, out->payload_hash, req->n_headers + 2};
    }
    qsort(ents, n, sizeof(*ents), hent_cmp);

    /* Credential scope "date/region/service/aws4_request" (lengths checked above). */
    char scope[8 + 2 * MAX_SCOPE_PART + 16];
    size_t region_len = strlen(req->region), service_len = strlen(req->service);
    char *e = append(scope, out->amz_date, 8);
    *e++ = '/';
    e = append(e, req->region, region_len);
    *e++ = '/';
    e = append(e, req->service, service_len);
    e = append(e, "/aws4_request", 13);
    size_t scope_len = (size_t)(e - scope);
    char date8[9];
    memcpy(date8, out->amz_date, 8);
    date8[8] = '\0';

    /* Authorization up to the signed-header list, which the canonical request reuses. */
    char *auth = out->authorization;
    const size_t auth_room = sizeof(out->authorization) - (sizeof(", Signature=") - 1) - 64 - 1;
    e = append(auth, ALGORITHM " Credential=", sizeof(ALGORITHM " Credential=") - 1);
    e = append(e, creds->access_key_id, strlen(creds->access_key_id));
    *e++ = '/';
    e = append(e, scope, scope_len);
    e = append(e, ", SignedHeaders=", 16);
    size_t len = (size_t)(e - auth);
    size_t pos = len, list_start = pos;
    for (size_t i = 0; i < n; i++) {
        if (i && same_name(&ents[i - 1], &ents[i]))
            continue; /* same name as the previous entry */
        if (pos + (i ? 1 : 0) + ents[i].name_len > auth_room) {
            rc = kn__error_set(err, KN_ERR_TOO_LARGE,
                               "SigV4: the Authorization header would exceed %zu bytes (too many or "
                               "too long signed header names)",
                               sizeof(out->authorization) - 1);
            goto out;
        }
        if (pos > list_start)
            auth[pos++] = ';';
        for (size_t k = 0; k < ents[i].name_len; k++)
            auth[pos++] = (char)lower((unsigned char)ents[i].name[k]);
    }
    auth[pos] = '\0';

    /* Canonical request, streamed into SHA-256. */
    if (canonical)
        kn__buf_reset(canonical);
    sink.md = w->md;
    if (EVP_DigestInit_ex(w->md, g_sha256, NULL) != 1) {
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL SHA-256 failed");
        goto out;
    }
    sink_put(&sink, req->method, strlen(req->method));
    sink_putc(&sink, '\n');
    if (put_path(&sink, req->path, req->normalize_path) != 0)
        goto nomem;
    sink_putc(&sink, '\n');
    if (put_query(&sink, req->query) != 0)
        goto nomem;
    sink_putc(&sink, '\n');
    for (size_t i = 0; i < n;) {
        sink_put_lower(&sink, ents[i].name, ents[i].name_len);
        sink_putc(&sink, ':');
        put_value(&sink, ents[i].value);
        size_t j = i + 1;
        for (; j < n && same_name(&ents[i], &ents[j]); j++) {
            sink_putc(&sink, ',');
            put_value(&sink, ents[j].value);
        }
        sink_putc(&sink, '\n');
        i = j;
    }
    sink_putc(&sink, '\n');
    sink_put(&sink, auth + list_start, pos - list_start);
    sink_putc(&sink, '\n');
    sink_put(&sink, out->payload_hash, strlen(out->payload_hash));
    sink_flush(&sink);
    if (sink.err == SINK_ENOMEM)
        goto nomem;
    if (sink.err || EVP_DigestFinal_ex(w->md, digest, NULL) != 1) {
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL SHA-256 failed");
        goto out;
    }

    /* String to sign. */
    char sts[sizeof(ALGORITHM) + 17 + 9 + 2 * MAX_SCOPE_PART + 16 + 65 + 8];
    e = append(sts, ALGORITHM "\n", sizeof(ALGORITHM));
    e = append(e, out->amz_date, 16);
    *e++ = '\n';
    e = append(e, scope, scope_len);
    *e++ = '\n';
    len = (size_t)(e - sts);
    to_hex(digest, 32, sts + len);
    len += 64;
    if (string_to_sign) {
        kn__buf_reset(string_to_sign);
        if (kn__buf_append(string_to_sign, sts, len) != 0)
            goto nomem;
    }

    /* Signature. */
    if (signing_key(cache, w, creds, date8, req->region, req->service, key) != 0 ||
        hmac256(w, key, 32, sts, len, digest) != 0) {
        rc = kn__error_set(err, KN_ERR_NOT_SUPPORTED, "SigV4: OpenSSL HMAC-SHA256 failed");
        goto out;
    }
    to_hex(digest, 32, out->signature);
    memcpy(auth + pos, ", Signature=", sizeof(", Signature=") - 1);
    pos += sizeof(", Signature=") - 1;
    memcpy(auth + pos, out->signature, 65);
    goto out;

nomem:
    rc = kn__error_set(err, KN_ERR_NOMEM, "SigV4: out of memory");
out:
    OPENSSL_cleanse(key, sizeof(key));
    work_put(cache, w);
    if (ents != stack_ents)
        free(ents);
    return rc;
}
