/*
 * kncat -J envelopes: the JSON object printed per record by -C -J and read
 * back by -P -J, so a dump replays. Data that is valid UTF-8 travels as text
 * ("payload_encoding":"utf8"), anything else as base64.
 */
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "kncat.h"

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
bool kc_utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
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

void kc_json_string(FILE *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    bool valid = kc_utf8_valid(u, len);
    fputc('"', out);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = u[i];
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (c < 0x20 || c == 0x7F) {
                fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            } else if (c >= 0x80 && !valid) {
                fputs("\\ufffd", out);
            } else {
                fputc(c, out);
            }
        }
    }
    fputc('"', out);
}

void kc_envelope_write(const kc_rec_t *r, FILE *out)
{
    fputs("{\"stream\":", out);
    kc_json_string(out, r->stream, strlen(r->stream));
    fputs(",\"shard\":", out);
    kc_json_string(out, r->shard, strlen(r->shard));
    fputs(",\"seq\":", out);
    kc_json_string(out, r->seq, strlen(r->seq));
    fprintf(out, ",\"subseq\":%llu,\"ts\":", (unsigned long long)r->subseq);
    if (r->ts_ms >= 0)
        fprintf(out, "%lld", (long long)r->ts_ms);
    else
        fputs("null", out);
    fputs(",\"key\":", out);
    kc_json_string(out, r->key, r->key_len);
    fputs(",\"payload\":", out);
    if (kc_utf8_valid(r->data, r->data_len)) {
        kc_json_string(out, (const char *)r->data, r->data_len);
        fputs(",\"payload_encoding\":\"utf8\"}\n", out);
    } else {
        size_t n = 0;
        char *b = kc_base64_encode(r->data, r->data_len, &n);
        fputc('"', out);
        if (b)
            fwrite(b, 1, n, out);
        fputc('"', out);
        free(b);
        fputs(",\"payload_encoding\":\"base64\"}\n", out);
    }
}

/* ------------------------------------------------------------------ base64 */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *kc_base64_encode(const unsigned char *in, size_t len, size_t *out_len)
{
    size_t n = 4 * ((len + 2) / 3);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
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
    *o = '\0';
    *out_len = n;
    return out;
}

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
