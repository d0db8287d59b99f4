/*
 * kncat -J envelopes: the JSON object printed per record by -C -J and read
 * back by -P -J, so a dump replays. Data that is valid UTF-8 travels as text
 * ("payload_encoding":"utf8"), anything else as base64.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "kncat.h"

/* Whether the 8 bytes at s are all ASCII (the fast path of the scans below). */
static inline bool ascii8(const unsigned char *s)
{
    uint64_t w;
    memcpy(&w, s, 8);
    return (w & 0x8080808080808080ULL) == 0;
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
bool kc_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        while (i + 8 <= len && ascii8(s + i))
            i += 8;
        if (i >= len)
            break;
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

/*
 * JSON output is built in one growing buffer and written with one fwrite per
 * string or envelope, so a record costs one stdio call rather than twenty.
 */
typedef struct obuf_s {
    char *p;
    size_t len, cap;
} obuf_t;

static obuf_t g_ob;

static bool ob_grow(obuf_t *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static inline bool ob_reserve(obuf_t *b, size_t more)
{
    return b->len + more <= b->cap || ob_grow(b, more);
}

static inline void ob_put(obuf_t *b, const void *s, size_t n)
{
    if (ob_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

#define OB_LIT(b, lit) ob_put((b), (lit), sizeof(lit) - 1)

static void ob_flush(obuf_t *b, FILE *out)
{
    if (b->len)
        fwrite(b->p, 1, b->len, out);
    b->len = 0;
}

/*
 * Whether any of the 16 bytes at s needs escaping in a JSON string: below
 * 0x20, '"', '\\' or DEL, or any byte >= 0x80 unless the text is valid UTF-8.
 * GCC/Clang vector extensions: 16 bytes compared at once on any target
 * (SSE2 on x86-64, NEON on arm64).
 */
typedef unsigned char kc_v16 __attribute__((vector_size(16)));

static inline bool needs_escape16(const unsigned char *s, bool valid)
{
    kc_v16 x;
    memcpy(&x, s, 16);
    kc_v16 m = (kc_v16)((x < 0x20) | (x == 0x22) | (x == 0x5C) | (x == 0x7F));
    if (!valid)
        m |= (kc_v16)(x >= 0x80);
    uint64_t w[2];
    memcpy(w, &m, 16);
    return (w[0] | w[1]) != 0;
}

static inline bool needs_escape(unsigned char c, bool valid)
{
    return c < 0x20 || c == '"' || c == '\\' || c == 0x7F || (c >= 0x80 && !valid);
}

/* Appends s as a JSON string; valid: s is valid UTF-8 (else bytes >= 0x80 become U+FFFD). */
static void ob_json_string(obuf_t *b, const unsigned char *s, size_t len, bool valid)
{
    static const char hex[] = "0123456789abcdef";
    /* At most 6 bytes out per byte in ("\u00XX" or "\ufffd"), and the quotes. */
    if (!ob_reserve(b, 6 * len + 2))
        return;
    char *o = b->p + b->len;
    *o++ = '"';
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run + 16 <= len && !needs_escape16(s + run, valid))
            run += 16;
        while (run < len && !needs_escape(s[run], valid))
            run++;
        memcpy(o, s + i, run - i);
        o += run - i;
        if (run >= len)
            break;
        unsigned char c = s[run];
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            if (c >= 0x80) {
                memcpy(o, "ufffd", 5);
            } else {
                o[0] = 'u';
                o[1] = o[2] = '0';
                o[3] = hex[c >> 4];
                o[4] = hex[c & 15];
            }
            o += 5;
        }
        i = run + 1;
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
}

static void ob_u64(obuf_t *b, uint64_t v)
{
    char buf[24], *p = buf + sizeof(buf);
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ob_put(b, p, (size_t)(buf + sizeof(buf) - p));
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void ob_base64(obuf_t *b, const unsigned char *in, size_t len)
{
    if (!ob_reserve(b, 4 * ((len + 2) / 3)))
        return;
    char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
}

void kc_json_string(FILE *out, const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    ob_json_string(&g_ob, u, len, kc_utf8_valid(u, len));
    ob_flush(&g_ob, out);
}

void kc_write_u64(FILE *out, uint64_t v)
{
    ob_u64(&g_ob, v);
    ob_flush(&g_ob, out);
}

void kc_base64_write(FILE *out, const unsigned char *in, size_t len)
{
    ob_base64(&g_ob, in, len);
    ob_flush(&g_ob, out);
}

/* A string of the envelope that the library hands out (stream, shard id, sequence number). */
static void ob_json_text(obuf_t *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    ob_json_string(b, u, n, kc_utf8_valid(u, n));
}

/*
 * The envelope's start, {"stream":"..","shard":"..","seq":, is the same for
 * every record of a shard: built once per (stream, shard) and copied.
 */
static struct {
    const char *stream, *shard; /* the strings it was built from (the reader's, stable) */
    obuf_t text;
} g_head;

static void ob_head(obuf_t *b, const kc_rec_t *r)
{
    if (g_head.stream != r->stream || g_head.shard != r->shard || !g_head.text.len) {
        g_head.text.len = 0;
        OB_LIT(&g_head.text, "{\"stream\":");
        ob_json_text(&g_head.text, r->stream);
        OB_LIT(&g_head.text, ",\"shard\":");
        ob_json_text(&g_head.text, r->shard);
        OB_LIT(&g_head.text, ",\"seq\":");
        g_head.stream = r->stream;
        g_head.shard = r->shard;
    }
    ob_put(b, g_head.text.p, g_head.text.len);
}

void kc_envelope_write(const kc_rec_t *r, FILE *out)
{
    obuf_t *b = &g_ob;
    ob_head(b, r);
    ob_json_text(b, r->seq);
    OB_LIT(b, ",\"subseq\":");
    ob_u64(b, r->subseq);
    OB_LIT(b, ",\"ts\":");
    if (r->ts_ms >= 0)
        ob_u64(b, (uint64_t)r->ts_ms);
    else
        OB_LIT(b, "null");
    OB_LIT(b, ",\"key\":");
    const unsigned char *k = (const unsigned char *)r->key;
    ob_json_string(b, k, r->key_len, kc_utf8_valid(k, r->key_len));
    OB_LIT(b, ",\"payload\":");
    if (kc_utf8_valid(r->data, r->data_len)) {
        ob_json_string(b, r->data, r->data_len, true);
        OB_LIT(b, ",\"payload_encoding\":\"utf8\"}\n");
    } else {
        OB_LIT(b, "\"");
        ob_base64(b, r->data, r->data_len);
        OB_LIT(b, "\",\"payload_encoding\":\"base64\"}\n");
    }
    ob_flush(b, out);
}

/* ------------------------------------------------------------------ base64 */

static int b64val(unsigned char c)
{
    const char *p = c ? strchr(b64, c) : NULL;
    return p ? (int)(p - b64) : -1;
}

unsigned char *kc_base64_decode(const char *in, size_t len, size_t *out_len)
{
    while (len && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    unsigned char *out = malloc(len / 4 * 3 + 3), *o = out;
    if (!out)
        return NULL;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            *o++ = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    *out_len = (size_t)(o - out);
    return out;
}

/* ------------------------------------------------------------------- input */

void kc_envelope_in_free(kc_envelope_in_t *e)
{
    free(e->key);
    free(e->data);
    free(e->hash_key);
    memset(e, 0, sizeof(*e));
}

static char *dup_str(json_object *v, size_t *len)
{
    int n = json_object_get_string_len(v);
    const char *s = json_object_get_string(v);
    char *d = malloc((size_t)n + 1);
    if (d) {
        memcpy(d, s, (size_t)n);
        d[n] = '\0';
    }
    if (len)
        *len = (size_t)n;
    return d;
}

int kc_envelope_parse(const char *line, size_t len, kc_envelope_in_t *out, char *errstr,
                      size_t errstr_size)
{
    memset(out, 0, sizeof(*out));
    json_tokener *tok = json_tokener_new();
    json_object *o = NULL, *v;
    int rc = -1;
    if (!tok) {
        snprintf(errstr, errstr_size, "out of memory");
        goto out;
    }
    o = json_tokener_parse_ex(tok, line, (int)len);
    if (!o || json_tokener_get_error(tok) != json_tokener_success) {
        snprintf(errstr, errstr_size, "not a JSON object: %s",
                 json_tokener_error_desc(json_tokener_get_error(tok)));
        goto out;
    }
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(errstr, errstr_size, "not a JSON object");
        goto out;
    }
    if (json_object_object_get_ex(o, "key", &v) && !json_object_is_type(v, json_type_null)) {
        if (!json_object_is_type(v, json_type_string)) {
            snprintf(errstr, errstr_size, "\"key\" is not a string");
            goto out;
        }
        out->key = dup_str(v, NULL);
    }
    if (json_object_object_get_ex(o, "hash_key", &v) && json_object_is_type(v, json_type_string))
        out->hash_key = dup_str(v, NULL);
    const char *enc = "utf8";
    json_object *e;
    if (json_object_object_get_ex(o, "payload_encoding", &e) &&
        !json_object_is_type(e, json_type_null)) {
        if (!json_object_is_type(e, json_type_string)) {
            snprintf(errstr, errstr_size, "\"payload_encoding\" is not a string");
            goto out;
        }
        enc = json_object_get_string(e);
    }
    if (!json_object_object_get_ex(o, "payload", &v) || !json_object_is_type(v, json_type_string)) {
        snprintf(errstr, errstr_size, "\"payload\" (a string) is missing");
        goto out;
    }
    if (strcmp(enc, "utf8") == 0) {
        out->data = (unsigned char *)dup_str(v, &out->data_len);
    } else if (strcmp(enc, "base64") == 0) {
        out->data = kc_base64_decode(json_object_get_string(v),
                                     (size_t)json_object_get_string_len(v), &out->data_len);
        if (!out->data) {
            snprintf(errstr, errstr_size, "\"payload\" is not valid base64");
            goto out;
        }
    } else {
        snprintf(errstr, errstr_size, "unknown payload_encoding \"%s\" (utf8 or base64)", enc);
        goto out;
    }
    rc = 0;
out:
    if (rc)
        kc_envelope_in_free(out);
    json_object_put(o);
    if (tok)
        json_tokener_free(tok);
    return rc;
}
