/* JSON field readers and writers shared by the Kinesis and DynamoDB operations. */
#include "json_fields.h"

#include <errno.h>
#include <math.h>
#include <string.h>

kn_err_t kn__jp_fail(const kn__jp_t *p, const char *key, const char *what)
{
    if (p->arr)
        return kn__error_set(p->err, KN_ERR_BAD_RESPONSE,
                             "%s response: field \"%s[%ld]%s%s\" %s", p->op, p->arr, p->idx,
                             key && *key ? "." : "", key ? key : "", what);
    return kn__error_set(p->err, KN_ERR_BAD_RESPONSE, "%s response: field \"%s\" %s", p->op,
                         key ? key : "", what);
}

/* The member, or NULL when absent or JSON null. */
static json_object *member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object))
        return NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

kn_err_t kn__jp_str(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    const char **out, size_t *len)
{
    json_object *v = member(o, key);
    *out = NULL;
    if (len)
        *len = 0;
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    if (!json_object_is_type(v, json_type_string))
        return kn__jp_fail(p, key, "is not a string");
    *out = json_object_get_string(v);
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return KN_ERR_OK;
}

kn_err_t kn__jp_int(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    int64_t *out)
{
    json_object *v = member(o, key);
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    if (!json_object_is_type(v, json_type_int))
        return kn__jp_fail(p, key, "is not an integer");
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno == ERANGE)
        return kn__jp_fail(p, key, "is out of range");
    *out = x;
    return KN_ERR_OK;
}

kn_err_t kn__jp_bool(const kn__jp_t *p, json_object *o, const char *key, bool required,
                     bool *out)
{
    json_object *v = member(o, key);
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    if (!json_object_is_type(v, json_type_boolean))
        return kn__jp_fail(p, key, "is not a boolean");
    *out = json_object_get_boolean(v) != 0;
    return KN_ERR_OK;
}

kn_err_t kn__jp_time_ms(const kn__jp_t *p, json_object *o, const char *key, bool required,
                        int64_t *out)
{
    json_object *v = member(o, key);
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    double d;
    if (json_object_is_type(v, json_type_int))
        d = (double)json_object_get_int64(v);
    else if (json_object_is_type(v, json_type_double))
        d = json_object_get_double(v);
    else
        return kn__jp_fail(p, key, "is not a number of seconds");
    if (!isfinite(d) || d < 0 || d > 9.2e15)
        return kn__jp_fail(p, key, "is not a valid time");
    *out = (int64_t)llround(d * 1000.0);
    return KN_ERR_OK;
}

kn_err_t kn__jp_obj(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    json_object **out)
{
    json_object *v = member(o, key);
    *out = NULL;
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    if (!json_object_is_type(v, json_type_object))
        return kn__jp_fail(p, key, "is not an object");
    *out = v;
    return KN_ERR_OK;
}

kn_err_t kn__jp_arr(const kn__jp_t *p, json_object *o, const char *key, bool required,
                    json_object **out)
{
    json_object *v = member(o, key);
    *out = NULL;
    if (!v)
        return required ? kn__jp_fail(p, key, "is missing") : KN_ERR_OK;
    if (!json_object_is_type(v, json_type_array))
        return kn__jp_fail(p, key, "is not an array");
    *out = v;
    return KN_ERR_OK;
}

int kn__json_put_str(kn_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    if (kn__buf_reserve(b, len + 2) != 0)
        return -1;
    if (kn__buf_putc(b, '"') != 0)
        return -1;
    size_t run = 0; /* start of the pending run of plain bytes */
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        if (kn__buf_append(b, s + run, i - run) != 0)
            return -1;
        run = i + 1;
        char esc[7];
        size_t n = 2;
        esc[0] = '\\';
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            n = 6;
        }
        if (kn__buf_append(b, esc, n) != 0)
            return -1;
    }
    if (kn__buf_append(b, s + run, len - run) != 0)
        return -1;
    return kn__buf_putc(b, '"');
}

kn_err_t kn__json_append(kn_buf_t *b, json_object *o, kn_error_t *err)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!s || kn__buf_append(b, s, len) != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory building a request body");
    return KN_ERR_OK;
}

long kn__utf8_count(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            count++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return -1;
        }
        if (len - i - 1 < n)
            return -1;
        for (size_t k = 1; k <= n; k++) {
            if ((p[i + k] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        /* Overlong forms, UTF-16 surrogates and code points past U+10FFFF. */
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        i += n + 1;
        count++;
    }
    return count;
}
