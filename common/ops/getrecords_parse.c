/*
 * The GetRecords answer parsed in place: the hot path of every consumer.
 *
 * A GetRecords answer is up to 10 MiB of JSON, almost all of it the base64
 * text of the records' data. json-c would build a tree with a copy of every
 * string and the general parser (kinesis_ops.c) then decodes the data into an
 * arena: three copies of the bytes. This parser walks the body once to find
 * the fields, then base64-decodes each record's data over its own text and
 * ends each string where its closing quote was, so the records point into the
 * body, which becomes the result's arena.
 *
 * It handles the answers Kinesis sends. Anything else (escapes in a string it
 * keeps, ChildShards, numbers it would have to guess at, JSON it finds
 * malformed, a missing field) is KN_ERR_NOT_SUPPORTED before the body is
 * changed, and the caller uses the general parser, which gives the precise
 * error. So both parsers agree on every answer this one accepts (a fuzz
 * target checks it against the general one).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "base64.h"
#include "kinesis_ops.h"

typedef struct cur_s {
    const char *p, *end;
} cur_t;

typedef struct span_s {
    size_t off, len;
    bool set;
} span_t;

typedef struct rec_span_s {
    span_t data, pk, seq, enc;
    int64_t arrival_ms;
} rec_span_t;

/* Well inside json-c's default depth (32), so that nothing this parser accepts is refused there. */
#define MAX_DEPTH 16

static void ws(cur_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool eat(cur_t *c, char ch)
{
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

static bool eat_word(cur_t *c, const char *w)
{
    size_t n = strlen(w);
    ws(c);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, w, n) == 0) {
        c->p += n;
        return true;
    }
    return false;
}

/*
 * A string at the cursor: its text between the quotes (*s, *n), and whether
 * it holds an escape. False when malformed (unterminated, a control byte).
 */
/*
 * The first byte at or after p that ends a run of plain string characters
 * (a quote, a backslash or a control byte), or end. 16 bytes at a time with
 * SSE2 (every x86-64 has it): a record's base64 text is almost all of an
 * answer, and it has none of those bytes until its closing quote.
 */
static const char *plain_run(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* x < 0x20 (unsigned) exactly when 0x20 - x saturates to something non-zero. */
        __m128i ctl = _mm_cmpeq_epi8(_mm_subs_epu8(space, x), _mm_setzero_si128());
        __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)),
                                    _mm_xor_si128(ctl, _mm_set1_epi8(-1)));
        int m = _mm_movemask_epi8(stop);
        if (m)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && (unsigned char)*p >= 0x20)
        p++;
    return p;
}

static bool string(cur_t *c, const char **s, size_t *n, bool *escaped)
{
    ws(c);
    if (c->p >= c->end || *c->p != '"')
        return false;
    const char *q = ++c->p;
    *escaped = false;
    while (c->p < c->end) {
        c->p = plain_run(c->p, c->end);
        if (c->p >= c->end)
            break;
        unsigned char ch = (unsigned char)*c->p;
        if (ch == '"') {
            *s = q;
            *n = (size_t)(c->p - q);
            c->p++;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch == '\\') {
            *escaped = true;
            if (++c->p >= c->end)
                return false;
            /* Only JSON's escapes: anything else is malformed (json-c refuses it too). */
            if (*c->p == 'u') {
                for (int i = 0; i < 4; i++) {
                    if (++c->p >= c->end || !strchr("0123456789abcdefABCDEF", *c->p) || !*c->p)
                        return false;
                }
            } else if (!*c->p || !strchr("\"\\/bfnrt", *c->p)) {
                return false;
            }
        }
        c->p++;
    }
    return false;
}

/* A JSON number's text, checked against the JSON grammar (no leading zeros, digits around '.'). */
static bool number(cur_t *c, const char **s, size_t *n, bool *integral)
{
    ws(c);
    const char *p = c->p, *e = c->end;
    const char *start = p;
    *integral = true;
    if (p < e && *p == '-')
        p++;
    if (p >= e || *p < '0' || *p > '9')
        return false;
    if (*p == '0')
        p++;
    else
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    if (p < e && *p == '.') {
        *integral = false;
        p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        *integral = false;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (p >= e || *p < '0' || *p > '9')
            return false;
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    *s = start;
    *n = (size_t)(p - start);
    c->p = p;
    return true;
}

static bool skip_value(cur_t *c, int depth);

static bool skip_container(cur_t *c, char close, bool keys, int depth)
{
    if (depth > MAX_DEPTH)
        return false;
    if (eat(c, close))
        return true;
    for (;;) {
        if (keys) {
            const char *s;
            size_t n;
            bool esc;
            if (!string(c, &s, &n, &esc) || !eat(c, ':'))
                return false;
        }
        if (!skip_value(c, depth + 1))
            return false;
        if (eat(c, close))
            return true;
        if (!eat(c, ','))
            return false;
    }
}

static bool skip_value(cur_t *c, int depth)
{
    ws(c);
    if (c->p >= c->end)
        return false;
    const char *s;
    size_t n;
    bool flag;
    switch (*c->p) {
    case '"':
        return string(c, &s, &n, &flag);
    case '{':
        c->p++;
        return skip_container(c, '}', true, depth);
    case '[':
        c->p++;
        return skip_container(c, ']', false, depth);
    case 't':
        return eat_word(c, "true");
    case 'f':
        return eat_word(c, "false");
    case 'n':
        return eat_word(c, "null");
    default:
        return number(c, &s, &n, &flag);
    }
}

static bool key_is(const char *s, size_t n, const char *k)
{
    return strlen(k) == n && memcmp(s, k, n) == 0;
}

/* A string field we keep (no escapes), or null (absent). */
static bool kept_string(cur_t *c, const char *base, span_t *out)
{
    const char *s;
    size_t n;
    bool esc;
    if (eat_word(c, "null")) {
        out->set = false;
        return true;
    }
    if (!string(c, &s, &n, &esc) || esc)
        return false;
    out->off = (size_t)(s - base);
    out->len = n;
    out->set = true;
    return true;
}

/* ApproximateArrivalTimestamp: seconds as a JSON number, or null. Converted as the general parser does. */
static bool arrival(cur_t *c, int64_t *ms)
{
    const char *s;
    size_t n;
    bool integral;
    if (eat_word(c, "null")) {
        *ms = -1;
        return true;
    }
    if (!number(c, &s, &n, &integral) || n > 40 || (integral && n > 15))
        return false;
    char tmp[48];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    double d;
    if (integral) {
        d = (double)strtoll(tmp, NULL, 10);
    } else {
        errno = 0;
        d = strtod(tmp, NULL);
        if (errno == ERANGE)
            return false;
    }
    if (!isfinite(d) || d < 0 || d > 9.2e15)
        return false;
    *ms = (int64_t)llround(d * 1000.0);
    return true;
}

static bool record(cur_t *c, const char *base, rec_span_t *r)
{
    memset(r, 0, sizeof(*r));
    r->arrival_ms = -1;
    if (!eat(c, '{'))
        return false;
    if (eat(c, '}'))
        return false; /* no Data: the general parser names it */
    for (;;) {
        const char *k;
        size_t kn;
        bool esc;
        if (!string(c, &k, &kn, &esc) || esc || !eat(c, ':'))
            return false;
        bool ok;
        if (key_is(k, kn, "Data"))
            ok = kept_string(c, base, &r->data);
        else if (key_is(k, kn, "PartitionKey"))
            ok = kept_string(c, base, &r->pk);
        else if (key_is(k, kn, "SequenceNumber"))
            ok = kept_string(c, base, &r->seq);
        else if (key_is(k, kn, "EncryptionType"))
            ok = kept_string(c, base, &r->enc);
        else if (key_is(k, kn, "ApproximateArrivalTimestamp"))
            ok = arrival(c, &r->arrival_ms);
        else
            ok = skip_value(c, 2);
        if (!ok)
            return false;
        if (eat(c, '}'))
            break;
        if (!eat(c, ','))
            return false;
    }
    return r->data.set && r->pk.set && r->seq.set;
}

kn_err_t kn__get_records_parse_body(kn_buf_t *body, kn__get_records_result_t *out, kn_error_t *err)
{
    memset(out, 0, sizeof(*out));
    out->millis_behind_latest = -1;
    if (!body->data || body->len == 0)
        return KN_ERR_NOT_SUPPORTED;
    const char *base = body->data;
    cur_t c = {base, base + body->len};
    rec_span_t *recs = NULL;
    size_t n = 0, cap = 0;
    span_t next = {0, 0, false};
    bool have_records = false;
    kn_err_t rc = KN_ERR_NOT_SUPPORTED;

    /* Pass 1: find every field; nothing is changed yet. */
    if (!eat(&c, '{') || eat(&c, '}'))
        goto out;
    for (;;) {
        const char *k;
        size_t kn;
        bool esc;
        if (!string(&c, &k, &kn, &esc) || esc || !eat(&c, ':'))
            goto out;
        if (key_is(k, kn, "Records")) {
            if (!eat(&c, '['))
                goto out; /* null or not an array: the general parser says which */
            n = 0;
            have_records = true;
            if (!eat(&c, ']')) {
                for (;;) {
                    if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 64;
                        rec_span_t *g = realloc(recs, ncap * sizeof(*g));
                        if (!g) {
                            rc = kn__error_set(err, KN_ERR_NOMEM, "GetRecords response: out of memory");
                            goto out;
                        }
                        recs = g;
                        cap = ncap;
                    }
                    if (!record(&c, base, &recs[n]))
                        goto out;
                    n++;
                    if (eat(&c, ']'))
                        break;
                    if (!eat(&c, ','))
                        goto out;
                }
            }
        } else if (key_is(k, kn, "NextShardIterator")) {
            if (!kept_string(&c, base, &next))
                goto out;
        } else if (key_is(k, kn, "MillisBehindLatest")) {
            const char *s;
            size_t sn;
            bool integral;
            if (eat_word(&c, "null")) {
                out->millis_behind_latest = -1;
            } else {
                if (!number(&c, &s, &sn, &integral) || !integral || sn > 18)
                    goto out;
                char tmp[24];
                memcpy(tmp, s, sn);
                tmp[sn] = '\0';
                out->millis_behind_latest = strtoll(tmp, NULL, 10);
            }
        } else if (key_is(k, kn, "ChildShards")) {
            if (!eat_word(&c, "null"))
                goto out; /* rare (the last answer of a closed shard): the general parser reads them */
        } else if (!skip_value(&c, 1)) {
            goto out;
        }
        if (eat(&c, '}'))
            break;
        if (!eat(&c, ','))
            goto out;
    }
    ws(&c);
    if (c.p != c.end || !have_records)
        goto out;

    /* Pass 2: decode in place. From here the body is changed: errors are final. */
    out->records = calloc(n ? n : 1, sizeof(*out->records));
    if (!out->records || (next.set && !(out->next_iterator = strndup(base + next.off, next.len)))) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "GetRecords response: out of memory");
        goto out;
    }
    char *b = body->data;
    for (size_t i = 0; i < n; i++) {
        rec_span_t *s = &recs[i];
        kn__record_t *r = &out->records[i];
        long d = kn__base64_decode_inplace(b + s->data.off, s->data.len);
        if (d < 0) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                               "GetRecords response: field \"Records[%zu].Data\" is not valid base64", i);
            goto out;
        }
        /* Each string ends where its closing quote was (or inside its own text, for the data). */
        b[s->data.off + (size_t)d] = '\0';
        b[s->pk.off + s->pk.len] = '\0';
        b[s->seq.off + s->seq.len] = '\0';
        r->data = (const unsigned char *)b + s->data.off;
        r->data_len = (size_t)d;
        r->partition_key = b + s->pk.off;
        r->partition_key_len = s->pk.len;
        r->sequence_number = b + s->seq.off;
        r->arrival_ms = s->arrival_ms;
        if (s->enc.set) {
            b[s->enc.off + s->enc.len] = '\0';
            r->encryption_type = b + s->enc.off;
        }
    }
    out->count = n;
    out->arena = *body; /* the records point into it */
    memset(body, 0, sizeof(*body));
    rc = KN_ERR_OK;
out:
    free(recs);
    if (rc != KN_ERR_OK) {
        free(out->records);
        free(out->next_iterator);
        memset(out, 0, sizeof(*out));
        out->millis_behind_latest = -1;
    }
    return rc;
}
