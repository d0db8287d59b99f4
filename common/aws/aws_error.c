/*
 * AWS error responses: the error name (from x-amzn-ErrorType or the body),
 * the message, and the class that decides retry / refresh / fail. Bodies
 * come as JSON from AWS, and as XML or HTML from emulators and proxies; the
 * format is told from the body itself, not from the Content-Type.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "aws.h"

void kn__aws_error_name(const char *raw, size_t raw_len, char *out, size_t size)
{
    /* "namespace#Name:suffix": cut the suffix first, then keep what follows the last '#'. */
    const char *p = raw, *end = raw + raw_len;
    const char *colon = memchr(p, ':', raw_len);
    if (colon)
        end = colon;
    for (const char *q = end; q > p; q--) {
        if (q[-1] == '#') {
            p = q;
            break;
        }
    }
    while (p < end && isspace((unsigned char)*p))
        p++;
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    size_t n = (size_t)(end - p);
    if (n >= size)
        n = size - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static const struct {
    const char *name;
    kn__errclass_t cls;
    kn_err_t code;
} known_errors[] = {
    {"ProvisionedThroughputExceededException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"ThrottlingException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"Throttling", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"ThrottledException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"TooManyRequestsException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"RequestLimitExceeded", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"LimitExceededException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"KMSThrottlingException", KN__EC_RETRY, KN_ERR_THROTTLED},
    {"InternalFailure", KN__EC_RETRY, KN_ERR_SERVICE},
    {"InternalFailureException", KN__EC_RETRY, KN_ERR_SERVICE},
    {"InternalServerError", KN__EC_RETRY, KN_ERR_SERVICE},
    {"InternalError", KN__EC_RETRY, KN_ERR_SERVICE},
    {"ServiceUnavailable", KN__EC_RETRY, KN_ERR_SERVICE},
    {"ServiceUnavailableException", KN__EC_RETRY, KN_ERR_SERVICE},
    {"ExpiredTokenException", KN__EC_REFRESH_RETRY, KN_ERR_EXPIRED_TOKEN},
    {"ExpiredToken", KN__EC_REFRESH_RETRY, KN_ERR_EXPIRED_TOKEN},
    {"InvalidSignatureException", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"SignatureDoesNotMatch", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"RequestExpired", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"RequestTimeTooSkewed", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"RequestInTheFuture", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"AuthFailure", KN__EC_SKEW_CHECK, KN_ERR_AUTH},
    {"IncompleteSignatureException", KN__EC_FAIL, KN_ERR_AUTH},
    {"IncompleteSignature", KN__EC_FAIL, KN_ERR_AUTH},
    {"MissingAuthenticationTokenException", KN__EC_FAIL, KN_ERR_AUTH},
    {"MissingAuthenticationToken", KN__EC_FAIL, KN_ERR_AUTH},
    {"UnrecognizedClientException", KN__EC_FAIL, KN_ERR_AUTH},
    {"InvalidClientTokenId", KN__EC_FAIL, KN_ERR_AUTH},
    {"AccessDeniedException", KN__EC_FAIL, KN_ERR_AUTH},
    {"AccessDenied", KN__EC_FAIL, KN_ERR_AUTH},
    {"KMSAccessDeniedException", KN__EC_FAIL, KN_ERR_AUTH},
    {"KMSDisabledException", KN__EC_FAIL, KN_ERR_AUTH},
    {"KMSInvalidStateException", KN__EC_FAIL, KN_ERR_AUTH},
    {"KMSNotFoundException", KN__EC_FAIL, KN_ERR_AUTH},
    {"KMSOptInRequired", KN__EC_FAIL, KN_ERR_AUTH},
    {"ResourceNotFoundException", KN__EC_FAIL, KN_ERR_NOT_FOUND},
    {"ResourceInUseException", KN__EC_FAIL, KN_ERR_IN_USE},
    {"ValidationException", KN__EC_FAIL, KN_ERR_VALIDATION},
    {"InvalidArgumentException", KN__EC_FAIL, KN_ERR_VALIDATION},
    {"SerializationException", KN__EC_FAIL, KN_ERR_VALIDATION},
    {"InvalidParameterValue", KN__EC_FAIL, KN_ERR_VALIDATION},
    {"ConditionalCheckFailedException", KN__EC_FAIL, KN_ERR_CONDITION_FAILED},
    {"ExpiredIteratorException", KN__EC_FAIL, KN_ERR_EXPIRED_ITERATOR},
};

kn__errclass_t kn__aws_classify(const char *name, long status, kn_err_t *code)
{
    if (name && *name) {
        for (size_t i = 0; i < sizeof(known_errors) / sizeof(known_errors[0]); i++) {
            if (strcmp(name, known_errors[i].name) == 0) {
                *code = known_errors[i].code;
                return known_errors[i].cls;
            }
        }
    }
    if (status == 429) {
        *code = KN_ERR_THROTTLED;
        return KN__EC_RETRY;
    }
    if (status >= 500) {
        *code = KN_ERR_SERVICE;
        return KN__EC_RETRY;
    }
    if (status == 403) {
        *code = KN_ERR_AUTH;
        return KN__EC_FAIL;
    }
    if (status == 404) {
        *code = KN_ERR_NOT_FOUND;
        return KN__EC_FAIL;
    }
    *code = KN_ERR_SERVICE;
    return KN__EC_FAIL;
}

/* Copies text into out, decoding basic XML entities and replacing control characters. */
static void copy_clean(char *out, size_t size, const char *p, size_t n, int xml)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < size; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (xml && ch == '&') {
            static const struct {
                const char *ent;
                char ch;
            } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
            int done = 0;
            for (size_t e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
                size_t el = strlen(ents[e].ent);
                if (n - i >= el && memcmp(p + i, ents[e].ent, el) == 0) {
                    out[o++] = ents[e].ch;
                    i += el - 1;
                    done = 1;
                    break;
                }
            }
            if (done)
                continue;
        }
        if (ch == '\n' || ch == '\r' || ch == '\t')
            ch = ' ';
        else if (ch < 0x20 || ch == 0x7f)
            ch = '?';
        if (ch == ' ' && (o == 0 || out[o - 1] == ' '))
            continue; /* fold runs of white space */
        out[o++] = (char)ch;
    }
    while (o > 0 && out[o - 1] == ' ')
        o--;
    out[o] = '\0';
}

/* Finds the text of the first <tag>...</tag> (case-insensitive tag), bounded by the body. */
static int find_element(const char *body, size_t len, const char *tag, const char **start, size_t *n)
{
    char open[64], close[64];
    snprintf(open, sizeof(open), "<%s", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    size_t ol = strlen(open), cl = strlen(close);
    for (size_t i = 0; i + ol <= len; i++) {
        if (strncasecmp(body + i, open, ol) != 0)
            continue;
        size_t j = i + ol;
        if (j < len && body[j] != '>' && body[j] != ' ')
            continue; /* a longer tag name */
        const char *gt = memchr(body + j, '>', len - j);
        if (!gt)
            return 0;
        const char *s = gt + 1;
        for (const char *q = s; q + cl <= body + len; q++) {
            if (strncasecmp(q, close, cl) == 0) {
                *start = s;
                *n = (size_t)(q - s);
                return 1;
            }
        }
        return 0;
    }
    return 0;
}

static int contains_ci(const char *body, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; i + nl <= len; i++) {
        if (strncasecmp(body + i, needle, nl) == 0)
            return 1;
    }
    return 0;
}

void kn__aws_parse_error(long status, const char *error_type_header, const char *body,
                         size_t body_len, const char *request_id, kn_error_t *err)
{
    char name[128] = "", msg[512] = "";
    const char *kind = "";
    if (!body)
        body_len = 0;

    size_t skip = 0;
    while (skip < body_len && isspace((unsigned char)body[skip]))
        skip++;
    const char *b = body + skip;
    size_t blen = body_len - skip;

    if (blen > 0 && b[0] == '{') {
        json_tokener *tok = json_tokener_new();
        json_object *obj = tok ? json_tokener_parse_ex(tok, b, (int)(blen > INT32_MAX ? INT32_MAX : blen)) : NULL;
        if (obj && json_object_is_type(obj, json_type_object)) {
            json_object *v;
            if ((json_object_object_get_ex(obj, "__type", &v) || json_object_object_get_ex(obj, "code", &v)) &&
                json_object_is_type(v, json_type_string))
                kn__aws_error_name(json_object_get_string(v), (size_t)json_object_get_string_len(v), name,
                                   sizeof(name));
            if ((json_object_object_get_ex(obj, "message", &v) || json_object_object_get_ex(obj, "Message", &v)) &&
                json_object_is_type(v, json_type_string))
                copy_clean(msg, sizeof(msg), json_object_get_string(v), (size_t)json_object_get_string_len(v), 0);
            kind = "json";
        }
        json_object_put(obj);
        json_tokener_free(tok);
    } else if (blen > 0 && b[0] == '<') {
        const char *s;
        size_t n;
        if (contains_ci(b, blen, "<html") || contains_ci(b, blen, "<!doctype html")) {
            kind = "html";
            if (find_element(b, blen, "title", &s, &n) || find_element(b, blen, "h1", &s, &n))
                copy_clean(msg, sizeof(msg), s, n, 1);
        } else {
            kind = "xml";
            if (find_element(b, blen, "Code", &s, &n)) {
                char tmp[128];
                copy_clean(tmp, sizeof(tmp), s, n, 1);
                kn__aws_error_name(tmp, strlen(tmp), name, sizeof(name));
            }
            if (find_element(b, blen, "Message", &s, &n))
                copy_clean(msg, sizeof(msg), s, n, 1);
        }
    }
    if (!*kind && blen > 0) {
        kind = "text";
        size_t n = 0; /* the body is a view: it need not be NUL-terminated */
        while (n < blen && b[n] != '\r' && b[n] != '\n')
            n++;
        copy_clean(msg, sizeof(msg), b, n > 200 ? 200 : n, 0);
    }
    /* The header names the error exactly, when the service sends it. */
    if (error_type_header && *error_type_header)
        kn__aws_error_name(error_type_header, strlen(error_type_header), name, sizeof(name));

    if (!err)
        return;
    kn_err_t code;
    kn__errclass_t cls = kn__aws_classify(name, status, &code);
    err->http_status = (int)status;
    err->cls = cls;
    err->retriable = cls == KN__EC_RETRY || cls == KN__EC_REFRESH_RETRY;
    snprintf(err->aws_type, sizeof(err->aws_type), "%s", name);
    snprintf(err->request_id, sizeof(err->request_id), "%s", request_id ? request_id : "");
    if (*name)
        kn__error_set(err, code, "%s (HTTP %ld): %s", name, status, *msg ? msg : "no message");
    else if (*msg)
        kn__error_set(err, code, "HTTP %ld with a%s %s body: %s", status, *kind == 'h' ? "n" : "",
                      *kind == 'h' ? "HTML" : *kind == 'x' ? "XML" : "non-AWS", msg);
    else
        kn__error_set(err, code, "HTTP %ld with %s", status, blen ? "an unrecognised body" : "an empty body");
}

static int month_index(const char *m)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    for (int i = 0; i < 12; i++) {
        if (strncmp(m, months + 3 * i, 3) == 0)
            return i;
    }
    return -1;
}

/*
 * The three forms RFC 7231 (section 7.1.1.1) requires a recipient to accept,
 * parsed without the C library's locale-dependent strptime:
 *   IMF-fixdate  "Sun, 06 Nov 1994 08:49:37 GMT"
 *   RFC 850      "Sunday, 06-Nov-94 08:49:37 GMT"
 *   asctime      "Sun Nov  6 08:49:37 1994"
 */
time_t kn__http_date_parse(const char *s)
{
    if (!s || !*s)
        return (time_t)-1;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    char mon[4] = "", wday[16] = "", zone[4] = "";
    int day = 0, year = 0, h = 0, mi = 0, se = 0, n = 0;
    if (sscanf(s, "%15[A-Za-z], %2d %3s %4d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &h, &mi, &se, zone, &n) == 8 &&
        strcmp(zone, "GMT") == 0) {
        /* IMF-fixdate */
    } else if (sscanf(s, "%15[A-Za-z], %2d-%3s-%2d %2d:%2d:%2d %3s%n", wday, &day, mon, &year, &h, &mi, &se, zone,
                      &n) == 8 &&
               strcmp(zone, "GMT") == 0) {
        year += year < 70 ? 2000 : 1900;
    } else if (sscanf(s, "%3s %3s %2d %2d:%2d:%2d %4d%n", wday, mon, &day, &h, &mi, &se, &year, &n) == 7) {
        /* asctime */
    } else {
        return (time_t)-1;
    }
    int m = month_index(mon);
    if (m < 0 || day < 1 || day > 31 || h > 23 || mi > 59 || se > 60 || year < 1970)
        return (time_t)-1;
    tm.tm_year = year - 1900;
    tm.tm_mon = m;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    return timegm(&tm);
}

long kn__aws_backoff_ms(int attempt, long base_ms, long cap_ms)
{
    static _Thread_local uint64_t state;
    if (!state)
        state = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)&state << 16) ^ 0x9e3779b97f4a7c15ull;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    long ceiling = base_ms;
    for (int i = 0; i < attempt && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    if (ceiling <= 0)
        return 0;
    return (long)(state % (uint64_t)(ceiling + 1));
}
