/*
 * kncat -f format strings (kcat's tokens adapted to Kinesis), escapes and the
 * time syntax of -o. A format is compiled once into a list of pieces so a bad
 * token is reported before anything is read.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kncat.h"

typedef enum piece_kind_e {
    P_LITERAL,
    P_DATA,      /* %s */
    P_DATA_LEN,  /* %S */
    P_KEY,       /* %k */
    P_KEY_LEN,   /* %K */
    P_STREAM,    /* %t */
    P_SHARD,     /* %p */
    P_SEQ,       /* %o */
    P_SUBSEQ,    /* %u */
    P_TS,        /* %T */
    P_TS_ISO,    /* %F */
    P_BASE64,    /* %b */
    P_HEX,       /* %x */
} piece_kind_t;

typedef struct piece_s {
    piece_kind_t kind;
    size_t off, len; /* P_LITERAL: bytes in lit */
} piece_t;

struct kc_format_s {
    piece_t *pieces;
    size_t n;
    char *lit;
    size_t lit_len;
};

static void seterr(char *errstr, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *errstr, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errstr && size)
        vsnprintf(errstr, size, fmt, ap);
    va_end(ap);
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One escape at s (s[0] == '\\'); writes the byte to *out and returns its length, or 0 if bad. */
static size_t one_escape(const char *s, unsigned char *out)
{
    switch (s[1]) {
    case 'n': *out = '\n'; return 2;
    case 't': *out = '\t'; return 2;
    case 'r': *out = '\r'; return 2;
    case '0': *out = '\0'; return 2;
    case '\\': *out = '\\'; return 2;
    case 'x': {
        int hi = s[2] ? hexval((unsigned char)s[2]) : -1;
        int lo = hi >= 0 && s[3] ? hexval((unsigned char)s[3]) : -1;
        if (lo < 0)
            return 0;
        *out = (unsigned char)(hi * 16 + lo);
        return 4;
    }
    default:
        return 0;
    }
}

char *kc_unescape(const char *s, size_t *len, char *errstr, size_t errstr_size)
{
    size_t n = strlen(s), o = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        seterr(errstr, errstr_size, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            buf[o++] = s[i++];
            continue;
        }
        unsigned char c;
        size_t k = one_escape(s + i, &c);
        if (!k) {
            seterr(errstr, errstr_size,
                   "bad escape \"%.4s\" (known: \\n \\t \\r \\0 \\\\ \\xNN)", s + i);
            free(buf);
            return NULL;
        }
        buf[o++] = (char)c;
        i += k;
    }
    buf[o] = '\0';
    *len = o;
    return buf;
}

static int add_piece(kc_format_t *f, piece_kind_t kind, size_t off, size_t len)
{
    piece_t *p = realloc(f->pieces, (f->n + 1) * sizeof(*p));
    if (!p)
        return -1;
    f->pieces = p;
    /* Consecutive literal bytes extend the previous literal piece. */
    if (kind == P_LITERAL && f->n && f->pieces[f->n - 1].kind == P_LITERAL &&
        f->pieces[f->n - 1].off + f->pieces[f->n - 1].len == off) {
        f->pieces[f->n - 1].len += len;
        return 0;
    }
    f->pieces[f->n++] = (piece_t){kind, off, len};
    return 0;
}

kc_format_t *kc_format_new(const char *fmt, char *errstr, size_t errstr_size)
{
    kc_format_t *f = calloc(1, sizeof(*f));
    size_t n = strlen(fmt);
    if (!f || !(f->lit = malloc(n + 1)))
        goto nomem;
    for (size_t i = 0; i < n;) {
        if (fmt[i] == '%') {
            piece_kind_t k;
            switch (fmt[i + 1]) {
            case 's': k = P_DATA; break;
            case 'S': k = P_DATA_LEN; break;
            case 'k': k = P_KEY; break;
            case 'K': k = P_KEY_LEN; break;
            case 't': k = P_STREAM; break;
            case 'p': k = P_SHARD; break;
            case 'o': k = P_SEQ; break;
            case 'u': k = P_SUBSEQ; break;
            case 'T': k = P_TS; break;
            case 'F': k = P_TS_ISO; break;
            case 'b': k = P_BASE64; break;
            case 'x': k = P_HEX; break;
            case '%':
                f->lit[f->lit_len] = '%';
                if (add_piece(f, P_LITERAL, f->lit_len++, 1))
                    goto nomem;
                i += 2;
                continue;
            default:
                if (fmt[i + 1])
                    seterr(errstr, errstr_size,
                           "unknown format token \"%%%c\" in -f (known: %%s %%S %%k %%K %%t %%p "
                           "%%o %%u %%T %%F %%b %%x %%%%)",
                           fmt[i + 1]);
                else
                    seterr(errstr, errstr_size, "format string ends with a lone \"%%\"");
                kc_format_destroy(f);
                return NULL;
            }
            if (add_piece(f, k, 0, 0))
                goto nomem;
            i += 2;
        } else if (fmt[i] == '\\') {
            unsigned char c;
            size_t k = one_escape(fmt + i, &c);
            if (!k) {
                seterr(errstr, errstr_size,
                       "bad escape \"%.4s\" in -f (known: \\n \\t \\r \\0 \\\\ \\xNN)", fmt + i);
                kc_format_destroy(f);
                return NULL;
            }
            f->lit[f->lit_len] = (char)c;
            if (add_piece(f, P_LITERAL, f->lit_len++, 1))
                goto nomem;
            i += k;
        } else {
            f->lit[f->lit_len] = fmt[i++];
            if (add_piece(f, P_LITERAL, f->lit_len++, 1))
                goto nomem;
        }
    }
    return f;
nomem:
    seterr(errstr, errstr_size, "out of memory");
    kc_format_destroy(f);
    return NULL;
}

void kc_format_destroy(kc_format_t *f)
{
    if (!f)
        return;
    free(f->pieces);
    free(f->lit);
    free(f);
}

void kc_format_write(const kc_format_t *f, const kc_rec_t *r, FILE *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < f->n; i++) {
        const piece_t *p = &f->pieces[i];
        switch (p->kind) {
        case P_LITERAL: fwrite(f->lit + p->off, 1, p->len, out); break;
        case P_DATA: fwrite(r->data, 1, r->data_len, out); break;
        case P_DATA_LEN: kc_write_u64(out, r->data_len); break;
        case P_KEY: fwrite(r->key, 1, r->key_len, out); break;
        case P_KEY_LEN: kc_write_u64(out, r->key_len); break;
        case P_STREAM: fputs(r->stream, out); break;
        case P_SHARD: fputs(r->shard, out); break;
        case P_SEQ: fputs(r->seq, out); break;
        case P_SUBSEQ: kc_write_u64(out, r->subseq); break;
        case P_TS:
            if (r->ts_ms >= 0)
                kc_write_u64(out, (uint64_t)r->ts_ms);
            else
                fputs("-1", out);
            break;
        case P_TS_ISO: {
            /* Records of one batch share their second: gmtime once per second, not per record. */
            static int64_t cached_s = INT64_MIN;
            static char cached[40];
            if (r->ts_ms < 0) {
                fputc('-', out);
                break;
            }
            if (r->ts_ms / 1000 != cached_s) {
                cached_s = r->ts_ms / 1000;
                kc_iso8601(cached_s * 1000, cached, sizeof(cached));
            }
            /* cached ends in ".000Z": the milliseconds are this record's. */
            size_t n = strlen(cached);
            if (n >= 5 && cached[n - 5] == '.') {
                char ms[5] = {(char)('0' + r->ts_ms % 1000 / 100), (char)('0' + r->ts_ms % 100 / 10),
                              (char)('0' + r->ts_ms % 10), 'Z', 0};
                fwrite(cached, 1, n - 4, out);
                fputs(ms, out);
            } else {
                char buf[40];
                kc_iso8601(r->ts_ms, buf, sizeof(buf));
                fputs(buf, out);
            }
            break;
        }
        case P_BASE64: kc_base64_write(out, r->data, r->data_len); break;
        case P_HEX: {
            char buf[512];
            for (size_t j = 0; j < r->data_len;) {
                size_t o = 0;
                for (; j < r->data_len && o < sizeof(buf); j++) {
                    buf[o++] = hex[r->data[j] >> 4];
                    buf[o++] = hex[r->data[j] & 15];
                }
                fwrite(buf, 1, o, out);
            }
            break;
        }
        }
    }
}

void kc_iso8601(int64_t ms, char *out, size_t size)
{
    if (ms < 0) {
        snprintf(out, size, "-");
        return;
    }
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    /* Years past 9999 take more digits; a buffer too small for them gets the epoch ms instead. */
    int n = snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    if (n < 0 || (size_t)n >= size)
        snprintf(out, size, "%lld", (long long)ms);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* -15m, -2h, -30s, -1d, -500ms. */
static int parse_relative(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s + 1, &end, 10);
    if (errno || end == s + 1 || v < 0)
        return -1;
    int64_t unit;
    if (strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return -1;
    *ms = wall_ms() - (int64_t)v * unit;
    return 0;
}

/* 2024-01-02T03:04:05[.mmm][Z|+hh:mm|-hh:mm], also with a space for the T. */
static int parse_iso(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3 || n != 10)
        return -1;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        n = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 3 || n != 8)
            return -1;
        p += 9;
    } else if (*p) {
        return -1;
    }
    int frac = 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (isdigit((unsigned char)*p)) {
            if (digits < 3) {
                frac = frac * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        if (!digits)
            return -1;
        while (digits++ < 3)
            frac *= 10;
    }
    int64_t off_s = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        n = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
            return -1;
        off_s = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
        p += 6;
    }
    if (*p)
        return -1;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *ms = ((int64_t)t - off_s) * 1000 + frac;
    return 0;
}

int kc_parse_time(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -1;
    if (s[0] == '-')
        return parse_relative(s, ms);
    size_t digits = strspn(s, "0123456789");
    if (digits == strlen(s) && digits > 4) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno)
            return -1;
        *ms = v;
        return 0;
    }
    return parse_iso(s, ms);
}
