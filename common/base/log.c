/*
 * Logging through the application's callback. Every line is scrubbed before
 * delivery: registered secrets are replaced wherever they appear, and the
 * signature and security-token parts of request headers are cut, so no code
 * path can leak a secret by formatting it by mistake.
 */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define REDACTED "[redacted]"
/*
 * Secrets kept for scrubbing. Each credential refresh registers a new secret
 * key and token, so a long-running process would otherwise grow this list
 * (and the cost of every log line) without end; the oldest go first, long
 * after the credentials they belonged to were replaced.
 */
#define MAX_SECRETS 64

struct kn__logger_s {
    kn_log_cb_t *cb;
    void *opaque;
    kn_log_level_t level;
    uint32_t debug_mask;
    pthread_mutex_t lock; /* guards secrets */
    char **secrets;
    size_t n_secrets;
};

#define KN__DBG_NAME(n, s) s,
static const char *const ctx_names[] = {KN_DBG_CONTEXTS(KN__DBG_NAME)};
#undef KN__DBG_NAME

kn__logger_t *kn__logger_new(kn_log_cb_t *cb, void *opaque, kn_log_level_t level, uint32_t debug_mask)
{
    kn__logger_t *lg = calloc(1, sizeof(*lg));
    if (!lg)
        return NULL;
    lg->cb = cb;
    lg->opaque = opaque;
    lg->level = level;
    lg->debug_mask = debug_mask;
    pthread_mutex_init(&lg->lock, NULL);
    return lg;
}

void kn__logger_destroy(kn__logger_t *lg)
{
    if (!lg)
        return;
    for (size_t i = 0; i < lg->n_secrets; i++) {
        memset(lg->secrets[i], 0, strlen(lg->secrets[i]));
        free(lg->secrets[i]);
    }
    free(lg->secrets);
    pthread_mutex_destroy(&lg->lock);
    free(lg);
}

int kn__log_parse_debug(const char *csv, uint32_t *mask, char *errstr, size_t size)
{
    uint32_t m = 0;
    const char *p = csv ? csv : "";
    while (*p) {
        while (*p == ',' || *p == ' ')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, ", ");
        int found = 0;
        if (n == 3 && strncasecmp(p, "all", 3) == 0) {
            m |= KN_DBG_ALL;
            found = 1;
        }
        for (int i = 0; !found && i < KN__DBGI_COUNT; i++) {
            if (strlen(ctx_names[i]) == n && strncasecmp(p, ctx_names[i], n) == 0) {
                m |= 1u << i;
                found = 1;
            }
        }
        if (!found) {
            if (errstr && size)
                snprintf(errstr, size, "unknown debug context \"%.*s\"", (int)n, p);
            return -1;
        }
        p += n;
    }
    *mask = m;
    return 0;
}

int kn__log_parse_level(const char *s, kn_log_level_t *level)
{
    static const struct {
        const char *name;
        kn_log_level_t level;
    } names[] = {{"error", KN_LOG_ERROR}, {"warn", KN_LOG_WARN},   {"warning", KN_LOG_WARN},
                 {"info", KN_LOG_INFO},   {"debug", KN_LOG_DEBUG}, {"trace", KN_LOG_TRACE}};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0) {
            *level = names[i].level;
            return 0;
        }
    }
    return -1;
}

void kn__logger_add_secret(kn__logger_t *lg, const char *secret)
{
    if (!lg || !secret || strlen(secret) < 4)
        return;
    pthread_mutex_lock(&lg->lock);
    for (size_t i = 0; i < lg->n_secrets; i++) {
        if (strcmp(lg->secrets[i], secret) == 0)
            goto out;
    }
    char *copy = strdup(secret);
    if (!copy)
        goto out;
    if (lg->n_secrets == MAX_SECRETS) {
        memset(lg->secrets[0], 0, strlen(lg->secrets[0]));
        free(lg->secrets[0]);
        memmove(lg->secrets, lg->secrets + 1, (lg->n_secrets - 1) * sizeof(*lg->secrets));
        lg->n_secrets--;
    } else {
        char **v = realloc(lg->secrets, (lg->n_secrets + 1) * sizeof(*v));
        if (!v) {
            free(copy);
            goto out;
        }
        lg->secrets = v;
    }
    lg->secrets[lg->n_secrets++] = copy;
out:
    pthread_mutex_unlock(&lg->lock);
}

size_t kn__logger_secret_count(kn__logger_t *lg)
{
    if (!lg)
        return 0;
    pthread_mutex_lock(&lg->lock);
    size_t n = lg->n_secrets;
    pthread_mutex_unlock(&lg->lock);
    return n;
}

int kn__log_enabled(const kn__logger_t *lg, kn_log_level_t level, uint32_t ctx_bit)
{
    if (!lg || !lg->cb || level > lg->level)
        return 0;
    if (level >= KN_LOG_DEBUG && !(lg->debug_mask & ctx_bit))
        return 0;
    return 1;
}

/* Replaces every occurrence of needle in s (in place; REDACTED may be longer, so s has room size). */
static void scrub(char *s, size_t size, const char *needle)
{
    size_t nlen = strlen(needle), rlen = strlen(REDACTED);
    char *p = s;
    while ((p = strstr(p, needle)) != NULL) {
        size_t tail = strlen(p + nlen);
        size_t used = (size_t)(p - s);
        if (used + rlen + tail + 1 > size) {
            /* No room to expand: overwrite the secret itself. */
            memset(p, '*', nlen);
            p += nlen;
            continue;
        }
        memmove(p + rlen, p + nlen, tail + 1);
        memcpy(p, REDACTED, rlen);
        p += rlen;
    }
}

/*
 * When the line was cut at its end, a secret may have been cut with it: mask
 * the longest tail of s that is a prefix of needle, so no part of it shows.
 */
static void scrub_cut_tail(char *s, const char *needle)
{
    size_t len = strlen(s), nlen = strlen(needle);
    size_t max = len < nlen ? len : nlen - 1;
    for (size_t k = max; k >= 1; k--) {
        if (memcmp(s + len - k, needle, k) == 0) {
            memset(s + len - k, '*', k);
            return;
        }
    }
}

/* Cuts the value after marker up to one of the stop characters. */
static void cut_after(char *dst, size_t size, const char *marker, const char *stops)
{
    size_t mlen = strlen(marker);
    char *p = dst;
    while ((p = strcasestr(p, marker)) != NULL) {
        char *v = p + mlen;
        while (*v == ' ')
            v++;
        size_t vlen = strcspn(v, stops);
        if (vlen == 0 || (vlen == strlen(REDACTED) && strncmp(v, REDACTED, vlen) == 0)) {
            p = v + vlen;
            continue;
        }
        size_t rlen = strlen(REDACTED);
        size_t tail = strlen(v + vlen);
        if ((size_t)(v - dst) + rlen + tail + 1 > size) {
            memset(v, '*', vlen);
            p = v + vlen;
            continue;
        }
        memmove(v + rlen, v + vlen, tail + 1);
        memcpy(v, REDACTED, rlen);
        p = v + rlen;
    }
}

void kn__log_redact_headers(char *dst, size_t size, const char *src)
{
    if (!size)
        return;
    snprintf(dst, size, "%s", src);
    cut_after(dst, size, "Signature=", ", \r\n\"");
    cut_after(dst, size, "X-Amz-Security-Token:", "\r\n\"");
    cut_after(dst, size, "X-Amz-Security-Token=", "&\r\n\" ");
    cut_after(dst, size, "aws_secret_access_key", "\r\n\"");
}

_Atomic bool kn__log_safety_net_off;

void kn__log(kn__logger_t *lg, kn_log_level_t level, uint32_t ctx_bit, const char *fmt, ...)
{
    if (!kn__log_enabled(lg, level, ctx_bit))
        return;
    char raw[4096], line[4096 + 512];
    va_list ap;
    va_start(ap, fmt);
    int full = vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    bool cut = full >= (int)sizeof(raw);
    kn__log_redact_headers(line, sizeof(line), raw);
    pthread_mutex_lock(&lg->lock);
    for (size_t i = 0; i < lg->n_secrets && !atomic_load(&kn__log_safety_net_off); i++) {
        scrub(line, sizeof(line), lg->secrets[i]);
        if (cut)
            scrub_cut_tail(line, lg->secrets[i]);
    }
    pthread_mutex_unlock(&lg->lock);
    const char *ctx = "generic";
    for (int i = 0; i < KN__DBGI_COUNT; i++) {
        if (ctx_bit == (1u << i)) {
            ctx = ctx_names[i];
            break;
        }
    }
    lg->cb(lg->opaque, level, ctx, line);
}
