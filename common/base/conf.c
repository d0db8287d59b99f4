/*
 * The configuration object: one property table (conf.h) drives defaults,
 * validation, KPL/KCL aliases, pass-through names, kn_conf_list() and the
 * .properties loader.
 *
 * Values are validated and normalized when set, so a conf object never holds
 * a value its components cannot use and typed getters cannot fail. Every
 * error names the property (and the alias used, if any), quotes the bad value
 * (never a secret's) and says what is allowed.
 *
 * Unknown names: our own names, the aliases in KN_CONF_ALIASES and the
 * pass-through KPL/KCL names in KN_CONF_FOREIGN are accepted; anything else
 * is KN_ERR_CONF_UNKNOWN, so a typo fails loudly instead of being ignored.
 */
#include "conf.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "err.h"
#include "log.h"

#define REDACTED "[redacted]"
/* A .properties file larger than this is surely not a configuration file. */
#define MAX_PROPERTIES_FILE (16u * 1024 * 1024)

/* ------------------------------------------------------------- the tables */

typedef struct prop_def {
    const char *name;
    kn__ctype_t type;
    const char *def;
    int64_t min, max;
    const char *doc;
} prop_def_t;

#define PROP_ROW(id, name, type, def, min, max, doc) {name, type, def, min, max, doc},
static const prop_def_t props[KN_P__COUNT] = {KN_CONF_PROPS(PROP_ROW)};
#undef PROP_ROW

enum { ORIGIN_KPL, ORIGIN_KCL };
static const char *const origin_names[] = {"KPL", "KCL"};

typedef struct alias_def {
    const char *name;
    int origin;
    kn__prop_t target;
    kn__conv_t conv;
} alias_def_t;

#define ALIAS_ROW(name, origin, target, conv)                                                      \
    {name, ORIGIN_##origin, KN_P_##target, KN__CONV_##conv},
static const alias_def_t aliases[] = {KN_CONF_ALIASES(ALIAS_ROW)};
#undef ALIAS_ROW
#define N_ALIASES (sizeof(aliases) / sizeof(aliases[0]))

typedef struct foreign_def {
    const char *name;
    int origin;
    bool secret;
} foreign_def_t;

#define FOREIGN_ROW(name, origin, secret) {name, ORIGIN_##origin, secret},
static const foreign_def_t foreigns[] = {KN_CONF_FOREIGN(FOREIGN_ROW)};
#undef FOREIGN_ROW
#define N_FOREIGN (sizeof(foreigns) / sizeof(foreigns[0]))

/* ---------------------------------------------------------- the conf object */

typedef struct slot {
    char *str;   /* normalized value; NULL: the default */
    int64_t num; /* INT value, BOOL 0/1, LEVEL level, DEBUG mask (default's when unset) */
} slot_t;

/* The KPL's split "<Service>Endpoint" host and "<Service>Port" for one URL property. */
typedef struct hostport {
    char *host; /* NULL: the host alias is not in effect */
    int64_t port;
} hostport_t;

struct kn_conf_s {
    slot_t slot[KN_P__COUNT];
    hostport_t hp[KN_P__COUNT];
    char *extra[N_FOREIGN]; /* pass-through values; NULL: unset */
    kn_log_cb_t *log_cb;
    void *log_opaque;
    kn__conf_fn_t *cb[KN__CB__COUNT]; /* component callbacks (result, stats) */
    void *cb_opaque[KN__CB__COUNT];
};

#define KPL_DEFAULT_PORT 443

/* ------------------------------------------------------------------ helpers */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static bool is_secret(kn__prop_t id) { return props[id].type == KN__CT_SECRET; }

/*
 * Quotes v for an error message: escapes control characters, quotes and
 * backslashes, and cuts long values, so a message stays one readable line.
 */
static void quote(char *dst, size_t size, const char *v)
{
    kn_buf_t b = KN_BUF_INIT;
    size_t n = strlen(v);
    size_t show = n > 80 ? 77 : n;
    int rc = kn__buf_putc(&b, '"');
    for (size_t i = 0; rc == 0 && i < show; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c == '"' || c == '\\')
            rc = kn__buf_printf(&b, "\\%c", c);
        else if (c == '\n')
            rc = kn__buf_puts(&b, "\\n");
        else if (c == '\r')
            rc = kn__buf_puts(&b, "\\r");
        else if (c == '\t')
            rc = kn__buf_puts(&b, "\\t");
        else if (c < 0x20 || c == 0x7f)
            rc = kn__buf_printf(&b, "\\x%02x", c);
        else
            rc = kn__buf_putc(&b, (char)c);
    }
    if (rc == 0 && show < n)
        rc = kn__buf_puts(&b, "...");
    if (rc == 0)
        rc = kn__buf_putc(&b, '"');
    snprintf(dst, size, "%s", rc == 0 ? b.data : "\"(value)\"");
    kn__buf_free(&b);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* A malloc'd copy of v without leading and trailing white space. */
static char *trimmed_dup(const char *v)
{
    while (is_space(*v))
        v++;
    size_t n = strlen(v);
    while (n && is_space(v[n - 1]))
        n--;
    return strndup(v, n);
}

/* Strict decimal int64: optional sign, digits only. 0 or -1. */
static int parse_i64(const char *s, int64_t *out)
{
    const char *p = s;
    bool neg = false;
    if (*p == '+' || *p == '-')
        neg = *p++ == '-';
    if (!*p)
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static const char *level_name(int64_t level)
{
    switch (level) {
    case KN_LOG_ERROR: return "error";
    case KN_LOG_WARN: return "warn";
    case KN_LOG_INFO: return "info";
    case KN_LOG_DEBUG: return "debug";
    default: return "trace";
    }
}

/* The debug context names, for messages and the list. */
static const char *debug_names(void)
{
    return "generic,conf,http,sigv4,creds,aws,kinesis,dynamodb,producer,consumer,lease,metrics or all";
}

static const char *type_name(kn__ctype_t t)
{
    switch (t) {
    case KN__CT_STR: return "string";
    case KN__CT_SECRET: return "secret";
    case KN__CT_URL: return "url";
    case KN__CT_INT: return "int";
    case KN__CT_BOOL: return "bool";
    case KN__CT_LEVEL: return "level";
    case KN__CT_DEBUG: return "debug";
    case KN__CT_CHOICE: return "choice";
    }
    return "?";
}

/* Checks "" or http(s)://host[:port][/path]. 0, or -1 with the reason in why. */
static int check_url(const char *u, char *why, size_t size)
{
    if (!*u)
        return 0;
    const char *p;
    if (strncasecmp(u, "https://", 8) == 0)
        p = u + 8;
    else if (strncasecmp(u, "http://", 7) == 0)
        p = u + 7;
    else {
        snprintf(why, size, "is not an http:// or https:// URL");
        return -1;
    }
    for (const char *q = u; *q; q++) {
        unsigned char c = (unsigned char)*q;
        if (c <= 0x20 || c == 0x7f) {
            snprintf(why, size, "contains a space or control character");
            return -1;
        }
        if (c == '?' || c == '#') {
            snprintf(why, size,
                     "has a query or fragment (an endpoint is scheme://host[:port][/path])");
            return -1;
        }
    }
    size_t alen = strcspn(p, "/");
    const char *host_end = p + alen;
    if (memchr(p, '@', alen)) {
        snprintf(why, size, "contains user information (credentials do not belong in an endpoint)");
        return -1;
    }
    const char *port = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', alen);
        if (!rb || rb == p + 1) {
            snprintf(why, size, "has a malformed [IPv6] host");
            return -1;
        }
        if (rb + 1 < host_end) {
            if (rb[1] != ':') {
                snprintf(why, size, "has a malformed [IPv6] host");
                return -1;
            }
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        if (colon)
            port = colon + 1;
        if ((colon ? colon : host_end) == p) {
            snprintf(why, size, "has no host");
            return -1;
        }
    }
    if (port) {
        int64_t v = 0;
        size_t plen = (size_t)(host_end - port);
        bool ok = plen > 0 && plen <= 5;
        for (size_t i = 0; ok && i < plen; i++) {
            if (port[i] < '0' || port[i] > '9')
                ok = false;
            else
                v = v * 10 + (port[i] - '0');
        }
        if (!ok || v < 1 || v > 65535) {
            snprintf(why, size, "has a bad port (allowed: 1..65535)");
            return -1;
        }
    }
    return 0;
}

/* Bare host name or IPv4 address as the KPL takes it: [A-Za-z0-9.-]+. */
static bool is_kpl_host(const char *h)
{
    if (!*h)
        return false;
    for (; *h; h++) {
        char c = *h;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-'))
            return false;
    }
    return true;
}

#define CHOICE_ROW(id, words) [KN_P_##id] = words,
static const char *const choices[KN_P__COUNT] = {KN_CONF_CHOICES(CHOICE_ROW)};
#undef CHOICE_ROW

/* The index of word (case-insensitive) among id's "|"-separated choices, or -1. */
static int choice_index(kn__prop_t id, const char *word)
{
    const char *w = choices[id];
    size_t len = strlen(word);
    for (int i = 0; w && *w; i++) {
        const char *end = strchr(w, '|');
        size_t n = end ? (size_t)(end - w) : strlen(w);
        if (n == len && strncasecmp(w, word, n) == 0)
            return i;
        if (!end)
            break;
        w = end + 1;
    }
    return -1;
}

/*
 * Validates value for property id and produces its normalized text (*norm,
 * malloc'd) and number. On failure writes "<quoted value> <problem>" into
 * why and returns KN_ERR_CONF_INVALID (or KN_ERR_NOMEM).
 */
static kn_err_t parse_value(kn__prop_t id, const char *value, char **norm, int64_t *num, char *why,
                            size_t size)
{
    const prop_def_t *d = &props[id];
    kn_err_t err = KN_ERR_OK;
    char q[128];
    char *t = NULL;
    *norm = NULL;
    *num = 0;

    if (d->type == KN__CT_STR || d->type == KN__CT_SECRET) {
        /* Line breaks would split HTTP headers and log lines. */
        if (strpbrk(value, "\r\n")) {
            if (d->type == KN__CT_SECRET)
                snprintf(q, sizeof(q), REDACTED);
            else
                quote(q, sizeof(q), value);
            snprintf(why, size, "%s contains a line break (not allowed)", q);
            err = KN_ERR_CONF_INVALID;
            goto out;
        }
        t = strdup(value);
        if (!t)
            err = KN_ERR_NOMEM;
        goto out;
    }

    /* The other types ignore surrounding white space (a trailing blank in a file is invisible). */
    t = trimmed_dup(value);
    if (!t) {
        err = KN_ERR_NOMEM;
        goto out;
    }
    quote(q, sizeof(q), value);

    switch (d->type) {
    case KN__CT_URL: {
        char reason[160];
        if (check_url(t, reason, sizeof(reason)) != 0) {
            snprintf(why, size, "%s %s", q, reason);
            err = KN_ERR_CONF_INVALID;
        }
        break;
    }
    case KN__CT_INT: {
        int64_t v;
        if (parse_i64(t, &v) != 0) {
            snprintf(why, size, "%s is not an integer (allowed: %lld..%lld)", q, (long long)d->min,
                     (long long)d->max);
            err = KN_ERR_CONF_INVALID;
        } else if (v < d->min || v > d->max) {
            snprintf(why, size, "%s is out of range %lld..%lld", q, (long long)d->min,
                     (long long)d->max);
            err = KN_ERR_CONF_INVALID;
        } else {
            char buf[24];
            snprintf(buf, sizeof(buf), "%lld", (long long)v);
            free(t);
            t = strdup(buf);
            if (!t)
                err = KN_ERR_NOMEM;
            *num = v;
        }
        break;
    }
    case KN__CT_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        int b = -1;
        for (size_t i = 0; i < 4 && b < 0; i++) {
            if (strcasecmp(t, yes[i]) == 0)
                b = 1;
            else if (strcasecmp(t, no[i]) == 0)
                b = 0;
        }
        if (b < 0) {
            snprintf(why, size, "%s is not a boolean (allowed: true/false, 1/0, yes/no, on/off)",
                     q);
            err = KN_ERR_CONF_INVALID;
            break;
        }
        free(t);
        t = strdup(b ? "true" : "false");
        if (!t)
            err = KN_ERR_NOMEM;
        *num = b;
        break;
    }
    case KN__CT_LEVEL: {
        kn_log_level_t lvl;
        if (kn__log_parse_level(t, &lvl) != 0) {
            snprintf(why, size,
                     "%s is not a log level (allowed: error, warn/warning, info, debug, trace)", q);
            err = KN_ERR_CONF_INVALID;
            break;
        }
        free(t);
        t = strdup(level_name(lvl));
        if (!t)
            err = KN_ERR_NOMEM;
        *num = lvl;
        break;
    }
    case KN__CT_CHOICE: {
        int i = choice_index(id, t);
        if (i < 0) {
            snprintf(why, size, "%s is not one of %s", q, choices[id]);
            err = KN_ERR_CONF_INVALID;
            break;
        }
        for (char *c = t; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        *num = i;
        break;
    }
    case KN__CT_DEBUG: {
        uint32_t mask = 0;
        char reason[160];
        if (kn__log_parse_debug(t, &mask, reason, sizeof(reason)) != 0) {
            snprintf(why, size, "%s: %s (allowed: a comma-separated list of %s)", q, reason,
                     debug_names());
            err = KN_ERR_CONF_INVALID;
            break;
        }
        *num = mask;
        break;
    }
    default: break;
    }
out:
    if (err != KN_ERR_OK) {
        if (err == KN_ERR_NOMEM)
            snprintf(why, size, "out of memory");
        if (d->type == KN__CT_SECRET)
            wipe_free(t);
        else
            free(t);
        return err;
    }
    *norm = t;
    return KN_ERR_OK;
}

/* Replaces the value of a slot (takes norm). */
static void slot_put(kn_conf_t *conf, kn__prop_t id, char *norm, int64_t num)
{
    if (is_secret(id))
        wipe_free(conf->slot[id].str);
    else
        free(conf->slot[id].str);
    conf->slot[id].str = norm;
    conf->slot[id].num = num;
}

static int find_prop(const char *name)
{
    for (int i = 0; i < KN_P__COUNT; i++) {
        if (strcmp(props[i].name, name) == 0)
            return i;
    }
    return -1;
}

static int find_alias(const char *name)
{
    for (size_t i = 0; i < N_ALIASES; i++) {
        if (strcmp(aliases[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

static int find_foreign(const char *name)
{
    for (size_t i = 0; i < N_FOREIGN; i++) {
        if (strcmp(foreigns[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

/* The message prefix for an error: the name used, and for an alias what it stands for. */
static void label_for(char *dst, size_t size, const char *name, int alias)
{
    if (alias < 0)
        snprintf(dst, size, "%s", name);
    else
        snprintf(dst, size, "%s (%s name of %s)", name, origin_names[aliases[alias].origin],
                 props[aliases[alias].target].name);
}

/* Sets a property from text (already resolved from any alias). */
static kn_err_t set_prop(kn_conf_t *conf, kn__prop_t id, const char *value, const char *label,
                         char *errstr, size_t size)
{
    char why[512];
    char *norm;
    int64_t num;
    kn_err_t err = parse_value(id, value, &norm, &num, why, sizeof(why));
    if (err != KN_ERR_OK) {
        kn__errstr(errstr, size, "%s: %s", label, why);
        return err;
    }
    slot_put(conf, id, norm, num);
    return KN_ERR_OK;
}

/* https://host[:port] from the KPL host/port pair of a URL property. */
static kn_err_t compose_endpoint(kn_conf_t *conf, kn__prop_t id, const char *label, char *errstr,
                                 size_t size)
{
    const hostport_t *hp = &conf->hp[id];
    char url[512];
    int n;
    /* :443 is left out: it is https's default and a Host header would not carry it either. */
    if (hp->port == KPL_DEFAULT_PORT)
        n = snprintf(url, sizeof(url), "https://%s", hp->host);
    else
        n = snprintf(url, sizeof(url), "https://%s:%lld", hp->host, (long long)hp->port);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        kn__errstr(errstr, size, "%s: host name too long", label);
        return KN_ERR_CONF_INVALID;
    }
    return set_prop(conf, id, url, label, errstr, size);
}

kn_err_t kn__conf_set_as(kn_conf_t *conf, const char *label, kn__prop_t target, kn__conv_t conv,
                         const char *value, char *errstr, size_t size)
{
    assert((unsigned)target < KN_P__COUNT);
    assert(conv != KN__CONV_SEC_TO_MS || props[target].type == KN__CT_INT);
    assert((conv != KN__CONV_HOST && conv != KN__CONV_PORT) || props[target].type == KN__CT_URL);
    const prop_def_t *d = &props[target];
    char q[128];
    kn_err_t err = KN_ERR_OK;
    char *t = NULL;

    switch (conv) {
    case KN__CONV_SAME:
        err = set_prop(conf, target, value, label, errstr, size);
        if (err == KN_ERR_OK) {
            /* Like a direct set: an explicit URL supersedes a KPL host given earlier. */
            free(conf->hp[target].host);
            conf->hp[target].host = NULL;
        }
        break;

    case KN__CONV_SEC_TO_MS: {
        int64_t s;
        int64_t smin = d->min <= 0 ? d->min / 1000 : (d->min + 999) / 1000;
        int64_t smax = d->max / 1000;
        quote(q, sizeof(q), value);
        t = trimmed_dup(value);
        if (!t) {
            err = KN_ERR_NOMEM;
            kn__errstr(errstr, size, "%s: out of memory", label);
        } else if (parse_i64(t, &s) != 0) {
            kn__errstr(errstr, size,
                       "%s: %s is not an integer number of seconds (allowed: %lld..%lld)", label, q,
                       (long long)smin, (long long)smax);
            err = KN_ERR_CONF_INVALID;
        } else if (s < smin || s > smax) {
            kn__errstr(errstr, size, "%s: %s is out of range %lld..%lld seconds", label, q,
                       (long long)smin, (long long)smax);
            err = KN_ERR_CONF_INVALID;
        } else {
            char ms[24];
            snprintf(ms, sizeof(ms), "%lld", (long long)(s * 1000));
            err = set_prop(conf, target, ms, label, errstr, size);
        }
        break;
    }

    case KN__CONV_HOST: {
        hostport_t *hp = &conf->hp[target];
        quote(q, sizeof(q), value);
        t = trimmed_dup(value);
        if (!t) {
            err = KN_ERR_NOMEM;
            kn__errstr(errstr, size, "%s: out of memory", label);
            break;
        }
        if (!*t) {
            /* Clearing the host returns the endpoint to its default. */
            free(hp->host);
            hp->host = NULL;
            slot_put(conf, target, NULL, 0);
            break;
        }
        if (!is_kpl_host(t) || strlen(t) > 253) {
            kn__errstr(errstr, size,
                       "%s: %s is not a host name (allowed: a host name or IPv4 address without "
                       "scheme, port or path; give a URL to %s instead)",
                       label, q, d->name);
            err = KN_ERR_CONF_INVALID;
            break;
        }
        char *old = hp->host;
        hp->host = t;
        t = NULL;
        err = compose_endpoint(conf, target, label, errstr, size);
        if (err != KN_ERR_OK) {
            free(hp->host);
            hp->host = old;
        } else {
            free(old);
        }
        break;
    }

    case KN__CONV_PORT: {
        hostport_t *hp = &conf->hp[target];
        int64_t port;
        quote(q, sizeof(q), value);
        t = trimmed_dup(value);
        if (!t) {
            err = KN_ERR_NOMEM;
            kn__errstr(errstr, size, "%s: out of memory", label);
        } else if (parse_i64(t, &port) != 0) {
            kn__errstr(errstr, size, "%s: %s is not an integer (allowed: 1..65535)", label, q);
            err = KN_ERR_CONF_INVALID;
        } else if (port < 1 || port > 65535) {
            kn__errstr(errstr, size, "%s: %s is out of range 1..65535", label, q);
            err = KN_ERR_CONF_INVALID;
        } else {
            int64_t old = hp->port;
            hp->port = port;
            /* Without a host the port waits for one, as in the KPL. */
            if (hp->host) {
                err = compose_endpoint(conf, target, label, errstr, size);
                if (err != KN_ERR_OK)
                    hp->port = old;
            }
        }
        break;
    }
    }
    free(t);
    return err;
}

static kn_err_t set_alias(kn_conf_t *conf, int ai, const char *value, char *errstr, size_t size)
{
    char label[256];
    label_for(label, sizeof(label), aliases[ai].name, ai);
    return kn__conf_set_as(conf, label, aliases[ai].target, aliases[ai].conv, value, errstr, size);
}

/* Looks for a name that differs only in case, for a "did you mean" hint. */
static const char *case_insensitive_match(const char *name)
{
    for (int i = 0; i < KN_P__COUNT; i++) {
        if (strcasecmp(props[i].name, name) == 0)
            return props[i].name;
    }
    for (size_t i = 0; i < N_ALIASES; i++) {
        if (strcasecmp(aliases[i].name, name) == 0)
            return aliases[i].name;
    }
    for (size_t i = 0; i < N_FOREIGN; i++) {
        if (strcasecmp(foreigns[i].name, name) == 0)
            return foreigns[i].name;
    }
    return NULL;
}

static kn_err_t unknown_name(const char *name, char *errstr, size_t size)
{
    char q[128];
    quote(q, sizeof(q), name);
    const char *hint = case_insensitive_match(name);
    if (hint)
        kn__errstr(errstr, size,
                   "unknown property %s (did you mean \"%s\"? names are case-sensitive)", q, hint);
    else
        kn__errstr(errstr, size, "unknown property %s (kn_conf_list() lists them all)", q);
    return KN_ERR_CONF_UNKNOWN;
}

/* ------------------------------------------------------------- public API */

KN_API kn_conf_t *kn_conf_new(void)
{
    kn_conf_t *conf = calloc(1, sizeof(*conf));
    if (!conf)
        return NULL;
    for (int i = 0; i < KN_P__COUNT; i++) {
        char *norm = NULL, why[256];
        int64_t num = 0;
        kn_err_t err = parse_value((kn__prop_t)i, props[i].def, &norm, &num, why, sizeof(why));
        if (err != KN_ERR_OK) {
            /* A bad default is a table bug (kn__conf_check_tables() reports it). */
            assert(err == KN_ERR_NOMEM);
            kn_conf_destroy(conf);
            return NULL;
        }
        free(norm);
        conf->slot[i].num = num;
        conf->hp[i].port = KPL_DEFAULT_PORT;
    }
    return conf;
}

KN_API void kn_conf_destroy(kn_conf_t *conf)
{
    if (!conf)
        return;
    for (int i = 0; i < KN_P__COUNT; i++) {
        if (is_secret((kn__prop_t)i))
            wipe_free(conf->slot[i].str);
        else
            free(conf->slot[i].str);
        free(conf->hp[i].host);
    }
    for (size_t i = 0; i < N_FOREIGN; i++) {
        if (foreigns[i].secret)
            wipe_free(conf->extra[i]);
        else
            free(conf->extra[i]);
    }
    free(conf);
}

static bool dup_str(char **dst, const char *src)
{
    if (!src) {
        *dst = NULL;
        return true;
    }
    *dst = strdup(src);
    return *dst != NULL;
}

KN_API kn_conf_t *kn_conf_dup(const kn_conf_t *conf)
{
    if (!conf)
        return NULL;
    kn_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    bool ok = true;
    for (int i = 0; i < KN_P__COUNT; i++) {
        c->slot[i].num = conf->slot[i].num;
        c->hp[i].port = conf->hp[i].port;
        ok = ok && dup_str(&c->slot[i].str, conf->slot[i].str);
        ok = ok && dup_str(&c->hp[i].host, conf->hp[i].host);
    }
    for (size_t i = 0; i < N_FOREIGN; i++)
        ok = ok && dup_str(&c->extra[i], conf->extra[i]);
    c->log_cb = conf->log_cb;
    c->log_opaque = conf->log_opaque;
    memcpy(c->cb, conf->cb, sizeof(c->cb));
    memcpy(c->cb_opaque, conf->cb_opaque, sizeof(c->cb_opaque));
    if (!ok) {
        kn_conf_destroy(c);
        return NULL;
    }
    return c;
}

KN_API kn_err_t kn_conf_set(kn_conf_t *conf, const char *name, const char *value, char *errstr,
                            size_t errstr_size)
{
    if (!conf || !name || !value) {
        kn__errstr(errstr, errstr_size, "kn_conf_set: conf, name and value must not be NULL");
        return KN_ERR_INVALID_ARG;
    }
    int i = find_prop(name);
    if (i >= 0) {
        kn_err_t err = set_prop(conf, (kn__prop_t)i, value, name, errstr, errstr_size);
        /* An explicit URL supersedes a KPL host given earlier (a later port must not undo it). */
        if (err == KN_ERR_OK && conf->hp[i].host) {
            free(conf->hp[i].host);
            conf->hp[i].host = NULL;
        }
        return err;
    }
    i = find_alias(name);
    if (i >= 0)
        return set_alias(conf, i, value, errstr, errstr_size);
    i = find_foreign(name);
    if (i >= 0) {
        char *v = strdup(value);
        if (!v) {
            kn__errstr(errstr, errstr_size, "%s: out of memory", name);
            return KN_ERR_NOMEM;
        }
        if (foreigns[i].secret)
            wipe_free(conf->extra[i]);
        else
            free(conf->extra[i]);
        conf->extra[i] = v;
        return KN_ERR_OK;
    }
    return unknown_name(name, errstr, errstr_size);
}

/*
 * The text kn_conf_get() reports for a name: points into conf or the tables,
 * or into buf for values computed on the fly. NULL if the name is unknown.
 */
static const char *get_text(const kn_conf_t *conf, const char *name, char *buf, size_t size)
{
    int i = find_prop(name);
    if (i >= 0) {
        const char *v = kn__conf_str(conf, (kn__prop_t)i);
        return is_secret((kn__prop_t)i) && *v ? REDACTED : v;
    }
    i = find_alias(name);
    if (i >= 0) {
        const alias_def_t *a = &aliases[i];
        switch (a->conv) {
        case KN__CONV_SAME: {
            const char *v = kn__conf_str(conf, a->target);
            return is_secret(a->target) && *v ? REDACTED : v;
        }
        case KN__CONV_SEC_TO_MS:
            snprintf(buf, size, "%lld", (long long)(conf->slot[a->target].num / 1000));
            return buf;
        case KN__CONV_HOST: return conf->hp[a->target].host ? conf->hp[a->target].host : "";
        case KN__CONV_PORT:
            snprintf(buf, size, "%lld", (long long)conf->hp[a->target].port);
            return buf;
        }
    }
    i = find_foreign(name);
    if (i >= 0) {
        const char *v = conf->extra[i] ? conf->extra[i] : "";
        return foreigns[i].secret && *v ? REDACTED : v;
    }
    return NULL;
}

KN_API kn_err_t kn_conf_get(const kn_conf_t *conf, const char *name, char *dest, size_t *dest_size)
{
    if (!conf || !name || !dest_size)
        return KN_ERR_INVALID_ARG;
    char buf[32];
    const char *v = get_text(conf, name, buf, sizeof(buf));
    if (!v)
        return KN_ERR_CONF_UNKNOWN;
    size_t need = strlen(v) + 1;
    size_t have = *dest_size;
    *dest_size = need;
    if (!dest)
        return KN_ERR_OK;
    if (have >= need) {
        memcpy(dest, v, need);
        return KN_ERR_OK;
    }
    /* Too small: a truncated, terminated copy, and an error so the caller notices. */
    if (have > 0) {
        memcpy(dest, v, have - 1);
        dest[have - 1] = '\0';
    }
    return KN_ERR_TOO_LARGE;
}

KN_API void kn_conf_set_log_cb(kn_conf_t *conf, kn_log_cb_t *cb, void *opaque)
{
    if (!conf)
        return;
    conf->log_cb = cb;
    conf->log_opaque = cb ? opaque : NULL;
}

KN_API void kn_free(void *ptr) { free(ptr); }

/* ---------------------------------------------------------- typed getters */

const char *kn__conf_str(const kn_conf_t *conf, kn__prop_t id)
{
    assert((unsigned)id < KN_P__COUNT);
    return conf->slot[id].str ? conf->slot[id].str : props[id].def;
}

int64_t kn__conf_int(const kn_conf_t *conf, kn__prop_t id)
{
    assert((unsigned)id < KN_P__COUNT);
    assert(props[id].type == KN__CT_INT || props[id].type == KN__CT_LEVEL ||
           props[id].type == KN__CT_DEBUG || props[id].type == KN__CT_CHOICE);
    return conf->slot[id].num;
}

bool kn__conf_bool(const kn_conf_t *conf, kn__prop_t id)
{
    assert((unsigned)id < KN_P__COUNT);
    assert(props[id].type == KN__CT_BOOL);
    return conf->slot[id].num != 0;
}

bool kn__conf_is_set(const kn_conf_t *conf, kn__prop_t id)
{
    assert((unsigned)id < KN_P__COUNT);
    return conf->slot[id].str != NULL;
}

void kn__conf_set_cb(kn_conf_t *conf, kn__conf_cb_t which, kn__conf_fn_t *fn, void *opaque)
{
    if (!conf || (unsigned)which >= KN__CB__COUNT)
        return;
    conf->cb[which] = fn;
    conf->cb_opaque[which] = fn ? opaque : NULL;
}

kn__conf_fn_t *kn__conf_cb(const kn_conf_t *conf, kn__conf_cb_t which, void **opaque)
{
    if (opaque)
        *opaque = conf->cb_opaque[which];
    return conf->cb[which];
}

kn_log_cb_t *kn__conf_log_cb(const kn_conf_t *conf, void **opaque)
{
    if (opaque)
        *opaque = conf->log_opaque;
    return conf->log_cb;
}

const char *kn__conf_extra(const kn_conf_t *conf, const char *name)
{
    int i = find_foreign(name);
    return i >= 0 ? conf->extra[i] : NULL;
}

/* --------------------------------------------------------------- the list */

static void range_text(char *dst, size_t size, const prop_def_t *d)
{
    switch (d->type) {
    case KN__CT_INT: snprintf(dst, size, "%lld..%lld", (long long)d->min, (long long)d->max); break;
    case KN__CT_BOOL: snprintf(dst, size, "true|false"); break;
    case KN__CT_LEVEL: snprintf(dst, size, "error|warn|info|debug|trace"); break;
    case KN__CT_DEBUG: snprintf(dst, size, "contexts,..."); break;
    case KN__CT_CHOICE: snprintf(dst, size, "%s", choices[d - props]); break;
    case KN__CT_URL: snprintf(dst, size, "http(s)://host[:port][/path]"); break;
    default: snprintf(dst, size, "-"); break;
    }
}

static int alias_text(kn_buf_t *b, kn__prop_t id)
{
    static const char *const conv_note[] = {[KN__CONV_SAME] = "",
                                            [KN__CONV_SEC_TO_MS] = ", seconds",
                                            [KN__CONV_HOST] = ", host",
                                            [KN__CONV_PORT] = ", port"};
    int rc = 0;
    bool first = true;
    for (size_t i = 0; rc == 0 && i < N_ALIASES; i++) {
        if (aliases[i].target != id)
            continue;
        rc = kn__buf_printf(b, "%s%s (%s%s)", first ? "" : ", ", aliases[i].name,
                            origin_names[aliases[i].origin], conv_note[aliases[i].conv]);
        first = false;
    }
    if (rc == 0 && first)
        rc = kn__buf_puts(b, "-");
    return rc;
}

KN_API char *kn_conf_list(void)
{
    kn_buf_t out = KN_BUF_INIT, al = KN_BUF_INIT;
    char range[64], def[128];
    int rc = 0;
    size_t w_name = 4, w_type = 4, w_def = 7, w_range = 5, w_alias = 7;

    /* Column widths first. */
    for (int i = 0; rc == 0 && i < KN_P__COUNT; i++) {
        const prop_def_t *d = &props[i];
        range_text(range, sizeof(range), d);
        snprintf(def, sizeof(def), "%s", *d->def ? d->def : "\"\"");
        kn__buf_reset(&al);
        rc = alias_text(&al, (kn__prop_t)i);
        if (strlen(d->name) > w_name)
            w_name = strlen(d->name);
        if (strlen(type_name(d->type)) > w_type)
            w_type = strlen(type_name(d->type));
        if (strlen(def) > w_def)
            w_def = strlen(def);
        if (strlen(range) > w_range)
            w_range = strlen(range);
        if (rc == 0 && al.len > w_alias)
            w_alias = al.len;
    }
    if (rc == 0)
        rc = kn__buf_printf(&out, "%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", (int)w_name, "NAME",
                            (int)w_type, "TYPE", (int)w_def, "DEFAULT", (int)w_range, "RANGE",
                            (int)w_alias, "ALIASES", "DESCRIPTION");
    for (int i = 0; rc == 0 && i < KN_P__COUNT; i++) {
        const prop_def_t *d = &props[i];
        range_text(range, sizeof(range), d);
        snprintf(def, sizeof(def), "%s", *d->def ? d->def : "\"\"");
        kn__buf_reset(&al);
        rc = alias_text(&al, (kn__prop_t)i);
        if (rc == 0)
            rc = kn__buf_printf(&out, "%-*s  %-*s  %-*s  %-*s  %-*s  %s%s\n", (int)w_name, d->name,
                                (int)w_type, type_name(d->type), (int)w_def, def, (int)w_range,
                                range, (int)w_alias, al.data,
                                d->type == KN__CT_SECRET ? "(secret: never shown) " : "", d->doc);
    }
    if (rc == 0)
        rc = kn__buf_puts(
            &out, "\nAliases are KPL/KCL names (case-sensitive); \"seconds\" means the alias "
                  "takes seconds where the property takes milliseconds; the KPL's host and "
                  "port aliases together form https://host[:port].\n"
                  "\nAccepted without validation and kept for components that will use "
                  "them (KPL/KCL names we do not implement yet):\n");
    for (int origin = ORIGIN_KPL; rc == 0 && origin <= ORIGIN_KCL; origin++) {
        size_t col = 0;
        rc = kn__buf_printf(&out, "  %s:", origin_names[origin]);
        col = 6;
        for (size_t i = 0; rc == 0 && i < N_FOREIGN; i++) {
            if (foreigns[i].origin != origin)
                continue;
            size_t n = strlen(foreigns[i].name) + 1;
            if (col + n > 100) {
                rc = kn__buf_puts(&out, "\n      ");
                col = 6;
            }
            if (rc == 0)
                rc = kn__buf_printf(&out, " %s", foreigns[i].name);
            col += n;
        }
        if (rc == 0)
            rc = kn__buf_putc(&out, '\n');
    }
    kn__buf_free(&al);
    if (rc != 0) {
        kn__buf_free(&out);
        return NULL;
    }
    return kn__buf_steal(&out);
}

/* ------------------------------------------------------ .properties files */

typedef struct pfile {
    const char *p; /* file contents */
    size_t len, pos;
    int line; /* line number at pos */
} pfile_t;

static bool pf_eol(const pfile_t *f)
{
    return f->pos >= f->len || f->p[f->pos] == '\n' || f->p[f->pos] == '\r';
}

static void pf_skip_eol(pfile_t *f)
{
    if (f->pos < f->len && f->p[f->pos] == '\r')
        f->pos++;
    if (f->pos < f->len && f->p[f->pos] == '\n')
        f->pos++;
    f->line++;
}

static void pf_skip_blank(pfile_t *f)
{
    while (f->pos < f->len && (f->p[f->pos] == ' ' || f->p[f->pos] == '\t' || f->p[f->pos] == '\f'))
        f->pos++;
}

/* Appends code point cp as UTF-8. */
static int put_utf8(kn_buf_t *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xc0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xe0 | cp >> 12);
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (char)(0xf0 | cp >> 18);
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return kn__buf_append(b, u, n);
}

/* Reads the 4 hex digits of a \uXXXX escape at s[*i] (just after the 'u'). */
static int read_hex4(const char *s, size_t len, size_t *i, uint32_t *out)
{
    uint32_t v = 0;
    if (*i + 4 > len)
        return -1;
    for (size_t k = 0; k < 4; k++) {
        char c = s[*i + k];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (uint32_t)(c - 'A' + 10);
        else
            return -1;
    }
    *i += 4;
    *out = v;
    return 0;
}

/*
 * Decodes one escape starting at s[*i] (the character after the backslash)
 * and appends it to b. 0, or -1 with the problem in why.
 */
static int decode_escape(const char *s, size_t len, size_t *i, kn_buf_t *b, char *why, size_t size)
{
    char c = s[(*i)++];
    switch (c) {
    case 't': return kn__buf_putc(b, '\t');
    case 'n': return kn__buf_putc(b, '\n');
    case 'r': return kn__buf_putc(b, '\r');
    case 'f': return kn__buf_putc(b, '\f');
    case 'u': {
        uint32_t cp, lo;
        if (read_hex4(s, len, i, &cp) != 0) {
            snprintf(why, size, "malformed \\uXXXX escape (four hex digits expected)");
            return -1;
        }
        if (cp >= 0xd800 && cp <= 0xdbff) {
            /* A UTF-16 surrogate pair written as two escapes. */
            if (*i + 2 > len || s[*i] != '\\' || s[*i + 1] != 'u') {
                snprintf(why, size, "\\u%04X is half of a surrogate pair without its other half",
                         cp);
                return -1;
            }
            *i += 2;
            if (read_hex4(s, len, i, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff) {
                snprintf(why, size, "\\u%04X is half of a surrogate pair without its other half",
                         cp);
                return -1;
            }
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            snprintf(why, size, "\\u%04X is half of a surrogate pair without its other half", cp);
            return -1;
        } else if (cp == 0) {
            snprintf(why, size, "\\u0000 (a NUL character) is not allowed");
            return -1;
        }
        return put_utf8(b, cp);
    }
    default: return kn__buf_putc(b, c); /* "\=", "\:", "\ ", "\\", "\#": the character itself */
    }
}

/* Splits a logical line into key and value (escapes decoded). 0 or -1 with why. */
static int split_line(const char *s, size_t len, kn_buf_t *key, kn_buf_t *val, char *why,
                      size_t size)
{
    size_t i = 0;
    int rc = 0;
    while (rc == 0 && i < len) {
        char c = s[i];
        if (c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\f')
            break;
        i++;
        if (c == '\\' && i < len)
            rc = decode_escape(s, len, &i, key, why, size);
        else if (c != '\\')
            rc = kn__buf_putc(key, c);
    }
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\f'))
        i++;
    if (i < len && (s[i] == '=' || s[i] == ':'))
        i++;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\f'))
        i++;
    while (rc == 0 && i < len) {
        char c = s[i++];
        if (c == '\\' && i < len)
            rc = decode_escape(s, len, &i, val, why, size);
        else if (c != '\\')
            rc = kn__buf_putc(val, c);
    }
    if (rc != 0 && !*why)
        snprintf(why, size, "out of memory");
    if (rc == 0 && (kn__buf_reserve(key, 0) != 0 || kn__buf_reserve(val, 0) != 0)) {
        snprintf(why, size, "out of memory");
        rc = -1;
    }
    if (rc == 0) {
        /* An empty key or value has had nothing appended: reserve alone does not terminate it. */
        key->data[key->len] = '\0';
        val->data[val->len] = '\0';
    }
    return rc;
}

static kn_err_t read_file(const char *path, kn_buf_t *out, char *errstr, size_t size)
{
    kn_err_t err = KN_ERR_OK;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        kn__errstr(errstr, size, "%s: cannot open: %s", path, strerror(errno));
        return KN_ERR_IO;
    }
    for (;;) {
        if (kn__buf_reserve(out, 4096) != 0) {
            kn__errstr(errstr, size, "%s: out of memory", path);
            err = KN_ERR_NOMEM;
            goto out;
        }
        size_t n = fread(out->data + out->len, 1, out->cap - out->len - 1, fp);
        out->len += n;
        out->data[out->len] = '\0';
        if (out->len > MAX_PROPERTIES_FILE) {
            kn__errstr(errstr, size, "%s: larger than %u bytes, not a properties file", path,
                       MAX_PROPERTIES_FILE);
            err = KN_ERR_TOO_LARGE;
            goto out;
        }
        if (n == 0) {
            if (ferror(fp)) {
                kn__errstr(errstr, size, "%s: read error: %s", path, strerror(errno));
                err = KN_ERR_IO;
            }
            goto out;
        }
    }
out:
    fclose(fp);
    return err;
}

/* Parses the file contents into work; on error fills errstr with "path:line: ...". */
/* How a load treats names it cannot apply (kn_conf_load_properties_cb). */
typedef struct load_cb_s {
    bool lenient;
    kn_conf_line_cb_t *cb;
    void *opaque;
} load_cb_t;

static kn_err_t apply_properties(kn_conf_t *work, const char *path, const char *data, size_t len,
                                 const load_cb_t *lc, char *errstr, size_t size)
{
    pfile_t f = {data, len, 0, 1};
    kn_buf_t raw = KN_BUF_INIT, key = KN_BUF_INIT, val = KN_BUF_INIT;
    kn_err_t err = KN_ERR_OK;
    char why[512];

    if (memchr(data, '\0', len)) {
        const char *z = memchr(data, '\0', len);
        int line = 1;
        for (const char *p = data; p < z; p++)
            line += *p == '\n';
        kn__errstr(errstr, size, "%s:%d: contains a NUL byte (not a text file?)", path, line);
        return KN_ERR_CONF_INVALID;
    }

    while (f.pos < f.len) {
        pf_skip_blank(&f);
        if (pf_eol(&f)) {
            if (f.pos < f.len)
                pf_skip_eol(&f);
            else
                break;
            continue;
        }
        if (f.p[f.pos] == '#' || f.p[f.pos] == '!') {
            /* Comment lines never continue, even if they end with a backslash. */
            while (!pf_eol(&f))
                f.pos++;
            if (f.pos < f.len)
                pf_skip_eol(&f);
            continue;
        }

        /* Join natural lines that end with an odd number of backslashes. */
        int start_line = f.line;
        kn__buf_reset(&raw);
        for (;;) {
            size_t begin = f.pos;
            while (!pf_eol(&f))
                f.pos++;
            size_t end = f.pos, bs = 0;
            while (end - bs > begin && f.p[end - bs - 1] == '\\')
                bs++;
            bool cont = bs % 2 == 1;
            if (kn__buf_append(&raw, f.p + begin, end - begin - (cont ? 1 : 0)) != 0) {
                kn__errstr(errstr, size, "%s:%d: out of memory", path, start_line);
                err = KN_ERR_NOMEM;
                goto out;
            }
            bool at_eof = f.pos >= f.len;
            if (!at_eof)
                pf_skip_eol(&f);
            if (!cont || at_eof)
                break;
            pf_skip_blank(&f);
        }

        kn__buf_reset(&key);
        kn__buf_reset(&val);
        why[0] = '\0';
        if (split_line(raw.data, raw.len, &key, &val, why, sizeof(why)) != 0) {
            kn__errstr(errstr, size, "%s:%d: %s", path, start_line, why);
            err = strcmp(why, "out of memory") == 0 ? KN_ERR_NOMEM : KN_ERR_CONF_INVALID;
            goto out;
        }
        err = kn_conf_set(work, key.data, val.data, why, sizeof(why));
        if (lc->lenient && (err == KN_ERR_CONF_UNKNOWN ||
                            (err == KN_ERR_OK && find_foreign(key.data) >= 0))) {
            kn_err_t what = err == KN_ERR_OK ? KN_ERR_NOT_SUPPORTED : err;
            char msg[768];
            if (what == KN_ERR_NOT_SUPPORTED)
                snprintf(msg, sizeof(msg), "%s:%d: %s is kept but not used by the library", path,
                         start_line, key.data);
            else
                snprintf(msg, sizeof(msg), "%s:%d: %s", path, start_line, why);
            err = KN_ERR_OK;
            if (lc->cb && lc->cb(lc->opaque, key.data, what, msg) != 0) {
                kn__errstr(errstr, size, "%s", msg);
                err = what;
                goto out;
            }
            continue;
        }
        if (err != KN_ERR_OK) {
            kn__errstr(errstr, size, "%s:%d: %s", path, start_line, why);
            goto out;
        }
    }
out:
    kn__buf_free(&raw);
    kn__buf_free(&key);
    if (val.data)
        explicit_bzero(val.data, val.cap);
    kn__buf_free(&val);
    return err;
}

static kn_err_t load_properties(kn_conf_t *conf, const char *path, const load_cb_t *lc, char *errstr,
                                size_t errstr_size);

KN_API kn_err_t kn_conf_load_properties(kn_conf_t *conf, const char *path, char *errstr,
                                        size_t errstr_size)
{
    load_cb_t lc = {false, NULL, NULL};
    return load_properties(conf, path, &lc, errstr, errstr_size);
}

KN_API kn_err_t kn_conf_load_properties_cb(kn_conf_t *conf, const char *path, kn_conf_line_cb_t *cb,
                                           void *opaque, char *errstr, size_t errstr_size)
{
    load_cb_t lc = {true, cb, opaque};
    return load_properties(conf, path, &lc, errstr, errstr_size);
}

static kn_err_t load_properties(kn_conf_t *conf, const char *path, const load_cb_t *lc, char *errstr,
                                size_t errstr_size)
{
    kn_buf_t data = KN_BUF_INIT;
    kn_conf_t *work = NULL;
    kn_err_t err;
    if (!conf || !path) {
        kn__errstr(errstr, errstr_size, "kn_conf_load_properties: conf and path must not be NULL");
        return KN_ERR_INVALID_ARG;
    }
    err = read_file(path, &data, errstr, errstr_size);
    if (err != KN_ERR_OK)
        goto out;
    /* Load into a copy so a file that fails half-way leaves conf as it was. */
    work = kn_conf_dup(conf);
    if (!work) {
        kn__errstr(errstr, errstr_size, "%s: out of memory", path);
        err = KN_ERR_NOMEM;
        goto out;
    }
    err = apply_properties(work, path, data.data, data.len, lc, errstr, errstr_size);
    if (err != KN_ERR_OK)
        goto out;
    kn_conf_t tmp = *conf;
    *conf = *work;
    *work = tmp;
out:
    kn_conf_destroy(work);
    if (data.data)
        explicit_bzero(data.data, data.cap); /* may hold secrets */
    kn__buf_free(&data);
    return err;
}

/* ------------------------------------------------------------ table check */

int kn__conf_check_tables(char *errstr, size_t size)
{
    char why[512];
    for (int i = 0; i < KN_P__COUNT; i++) {
        const prop_def_t *d = &props[i];
        char *norm = NULL;
        int64_t num;
        if (d->type == KN__CT_INT && d->min > d->max) {
            kn__errstr(errstr, size, "%s: min %lld > max %lld", d->name, (long long)d->min,
                       (long long)d->max);
            return -1;
        }
        if (parse_value((kn__prop_t)i, d->def, &norm, &num, why, sizeof(why)) != KN_ERR_OK) {
            kn__errstr(errstr, size, "%s: default is invalid: %s", d->name, why);
            return -1;
        }
        bool same = strcmp(norm, d->def) == 0;
        free(norm);
        if (!same) {
            kn__errstr(errstr, size, "%s: default \"%s\" is not in normalized form", d->name,
                       d->def);
            return -1;
        }
        if (find_prop(d->name) != i) {
            kn__errstr(errstr, size, "%s: duplicate property name", d->name);
            return -1;
        }
    }
    for (size_t i = 0; i < N_ALIASES; i++) {
        const alias_def_t *a = &aliases[i];
        kn__ctype_t tt = props[a->target].type;
        if (find_prop(a->name) >= 0 || find_alias(a->name) != (int)i) {
            kn__errstr(errstr, size, "alias %s: duplicates another name", a->name);
            return -1;
        }
        if (find_foreign(a->name) >= 0) {
            kn__errstr(errstr, size, "alias %s: also listed in KN_CONF_FOREIGN (remove it there)",
                       a->name);
            return -1;
        }
        if ((a->conv == KN__CONV_SEC_TO_MS && tt != KN__CT_INT) ||
            ((a->conv == KN__CONV_HOST || a->conv == KN__CONV_PORT) && tt != KN__CT_URL)) {
            kn__errstr(errstr, size, "alias %s: conversion does not fit the type of %s", a->name,
                       props[a->target].name);
            return -1;
        }
        if (a->conv == KN__CONV_HOST || a->conv == KN__CONV_PORT) {
            kn__conv_t partner = a->conv == KN__CONV_HOST ? KN__CONV_PORT : KN__CONV_HOST;
            int found = 0;
            for (size_t k = 0; k < N_ALIASES; k++)
                found += aliases[k].target == a->target && aliases[k].conv == partner;
            if (found != 1) {
                kn__errstr(errstr, size, "alias %s: needs exactly one %s alias for %s", a->name,
                           partner == KN__CONV_PORT ? "port" : "host", props[a->target].name);
                return -1;
            }
        }
    }
    for (size_t i = 0; i < N_FOREIGN; i++) {
        const char *n = foreigns[i].name;
        if (find_prop(n) >= 0 || find_foreign(n) != (int)i) {
            kn__errstr(errstr, size, "foreign name %s: duplicates another name", n);
            return -1;
        }
    }
    return 0;
}
