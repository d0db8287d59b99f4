/*
 * The credential chain and the refreshing cache.
 *
 * Chain order: static keys from the options; environment; web identity from
 * the environment; the selected profile of the shared files; the container
 * endpoint; EC2 instance metadata. Within a profile the precedence is
 * botocore's: role_arn (AssumeRole through source_profile or
 * credential_source), role_arn + web_identity_token_file, SSO, static keys
 * of the credentials file, credential_process, static keys of the config
 * file.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "creds_int.h"

#define KN__CREDS_DEFAULT_TIMEOUT_MS 5000
#define KN__MAX_ROLE_CHAIN 8
/* After a refresh attempt, get() does not try again for this long while the old keys still work. */
#define KN__CREDS_RETRY_GAP_S 10

/* -------------------------------------------------------------- helpers */

const char *kn__creds_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

void kn__creds_why(kn__creds_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->why, sizeof(ctx->why), fmt, ap);
    va_end(ap);
}

static void wipe_free(char *s)
{
    if (s) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

void kn__creds_free(kn__creds_t *c)
{
    if (!c)
        return;
    free(c->access_key_id);
    wipe_free(c->secret_access_key);
    wipe_free(c->session_token);
    memset(c, 0, sizeof(*c));
}

int kn__creds_copy(kn__creds_t *dst, const kn__creds_t *src)
{
    memset(dst, 0, sizeof(*dst));
    if (!src->access_key_id || !src->secret_access_key)
        return -1;
    dst->access_key_id = strdup(src->access_key_id);
    dst->secret_access_key = strdup(src->secret_access_key);
    dst->session_token = src->session_token ? strdup(src->session_token) : NULL;
    dst->expiration = src->expiration;
    memcpy(dst->source, src->source, sizeof(dst->source));
    if (!dst->access_key_id || !dst->secret_access_key ||
        (src->session_token && !dst->session_token)) {
        kn__creds_free(dst);
        return -1;
    }
    return 0;
}

int kn__creds_fill(kn__creds_t *c, const char *akid, size_t akid_len, const char *secret,
                   size_t secret_len, const char *token, size_t token_len, time_t expiration,
                   const char *source)
{
    kn__creds_free(c);
    c->access_key_id = strndup(akid, akid_len);
    c->secret_access_key = strndup(secret, secret_len);
    if (token && token_len)
        c->session_token = strndup(token, token_len);
    c->expiration = expiration;
    snprintf(c->source, sizeof(c->source), "%s", source ? source : "");
    if (!c->access_key_id || !c->secret_access_key || (token && token_len && !c->session_token)) {
        kn__creds_free(c);
        return -1;
    }
    return 0;
}

void kn__creds_register_secrets(const kn__creds_ctx_t *ctx, const kn__creds_t *c)
{
    if (!ctx->opts || !ctx->opts->log)
        return;
    kn__logger_add_secret(ctx->opts->log, c->secret_access_key);
    if (c->session_token)
        kn__logger_add_secret(ctx->opts->log, c->session_token);
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *v)
{
    if (at + count > n)
        return -1;
    int x = 0;
    for (size_t i = 0; i < count; i++) {
        if (!isdigit((unsigned char)s[at + i]))
            return -1;
        x = x * 10 + (s[at + i] - '0');
    }
    *v = x;
    return 0;
}

int kn__creds_parse_time(const char *s, size_t n, time_t *out)
{
    int Y, M, D, h, m, sec;
    if (!s)
        return -1;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (digits(s, n, 0, 4, &Y) || n < 19 || s[4] != '-' || digits(s, n, 5, 2, &M) || s[7] != '-' ||
        digits(s, n, 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s, n, 11, 2, &h) || s[13] != ':' || digits(s, n, 14, 2, &m) || s[16] != ':' ||
        digits(s, n, 17, 2, &sec))
        return -1;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return -1;
    size_t i = 19;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
        i++;
        size_t start = i;
        while (i < n && isdigit((unsigned char)s[i]))
            i++;
        if (i == start)
            return -1;
    }
    long offset = 0;
    if (i == n) {
        /* no zone: UTC, as AWS tools write it */
    } else if (n - i == 1 && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (n - i == 3 && strncmp(s + i, "UTC", 3) == 0) {
        i += 3;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        int sign = s[i] == '-' ? -1 : 1;
        if (digits(s, n, i + 1, 2, &oh))
            return -1;
        size_t j = i + 3;
        if (j < n && s[j] == ':')
            j++;
        if (digits(s, n, j, 2, &om) || j + 2 != n || oh > 23 || om > 59)
            return -1;
        offset = sign * (oh * 3600L + om * 60L);
        i = n;
    } else {
        return -1;
    }
    if (i != n)
        return -1;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = Y - 1900;
    tm.tm_mon = M - 1;
    tm.tm_mday = D;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = t - offset;
    return 0;
}

const char *kn__creds_region(kn__creds_ctx_t *ctx)
{
    if (ctx->region)
        return ctx->region;
    const char *r = ctx->opts && ctx->opts->region && *ctx->opts->region ? ctx->opts->region : NULL;
    if (!r)
        r = kn__creds_env("AWS_REGION");
    if (!r)
        r = kn__creds_env("AWS_DEFAULT_REGION");
    if (!r && ctx->profiles && ctx->profile)
        r = kn__profile_get(ctx->profiles, ctx->profile, "region");
    if (!r || !*r)
        r = "us-east-1";
    ctx->region = strdup(r);
    return ctx->region;
}

const char *kn__creds_profile_endpoint_url(const kn__creds_ctx_t *ctx)
{
    if (!ctx->profiles || !ctx->profile)
        return NULL;
    const char *v = kn__profile_get(ctx->profiles, ctx->profile, "endpoint_url");
    return v && *v ? v : NULL;
}

long kn__creds_timeout_ms(const kn__creds_ctx_t *ctx)
{
    return ctx->opts && ctx->opts->timeout_ms > 0 ? ctx->opts->timeout_ms
                                                  : KN__CREDS_DEFAULT_TIMEOUT_MS;
}

const char *kn__creds_ca_bundle(const kn__creds_ctx_t *ctx)
{
    if (ctx->opts && ctx->opts->ca_bundle && *ctx->opts->ca_bundle)
        return ctx->opts->ca_bundle;
    return kn__creds_env("AWS_CA_BUNDLE");
}


/* ------------------------------------------------------------- profiles */

/* Static keys of a profile in one file. */
static kn__cp_t static_keys(kn__creds_ctx_t *ctx, const char *profile, kn__profile_file_t which,
                            kn__creds_t *out, kn_error_t *err)
{
    const char *akid = kn__profile_get_file(ctx->profiles, which, profile, "aws_access_key_id");
    const char *secret =
        kn__profile_get_file(ctx->profiles, which, profile, "aws_secret_access_key");
    const char *token = kn__profile_get_file(ctx->profiles, which, profile, "aws_session_token");
    if (!token)
        token = kn__profile_get_file(ctx->profiles, which, profile, "aws_security_token");
    if ((!akid || !*akid) && (!secret || !*secret))
        return KN__CP_NONE;
    if (!akid || !*akid || !secret || !*secret) {
        kn__error_set(err, KN_ERR_CREDENTIALS, "profile %s in %s has %s but not %s", profile,
                      kn__profiles_path(ctx->profiles, which),
                      akid && *akid ? "aws_access_key_id" : "aws_secret_access_key",
                      akid && *akid ? "aws_secret_access_key" : "aws_access_key_id");
        return KN__CP_FAIL;
    }
    char source[64];
    snprintf(source, sizeof(source), "profile:%s", profile);
    if (kn__creds_fill(out, akid, strlen(akid), secret, strlen(secret), token,
                       token ? strlen(token) : 0, 0, source) != 0) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        return KN__CP_FAIL;
    }
    return KN__CP_FOUND;
}

static int has_static(const kn__creds_ctx_t *ctx, const char *profile)
{
    return kn__profile_get(ctx->profiles, profile, "aws_access_key_id") ||
           kn__profile_get(ctx->profiles, profile, "aws_secret_access_key");
}

static kn__cp_t resolve_profile(kn__creds_ctx_t *ctx, const char *name, const char **chain,
                                size_t depth, kn__creds_t *out, kn_error_t *err);

/* Source credentials for a role: credential_source or source_profile. */
static kn__cp_t role_source(kn__creds_ctx_t *ctx, const char *name, const char **chain,
                            size_t depth, kn__creds_t *src, kn_error_t *err)
{
    const char *sp = kn__profile_get(ctx->profiles, name, "source_profile");
    const char *cs = kn__profile_get(ctx->profiles, name, "credential_source");
    kn__cp_t r;
    if (sp && cs) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "profile %s has both source_profile and credential_source", name);
        return KN__CP_FAIL;
    }
    if (!sp && !cs) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "profile %s has role_arn but neither source_profile nor credential_source",
                      name);
        return KN__CP_FAIL;
    }
    if (cs) {
        if (strcasecmp(cs, "Environment") == 0)
            r = kn__cp_env(ctx, src, err);
        else if (strcasecmp(cs, "Ec2InstanceMetadata") == 0)
            r = kn__cp_imds(ctx, src, err);
        else if (strcasecmp(cs, "EcsContainer") == 0)
            r = kn__cp_container(ctx, src, err);
        else {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "profile %s: credential_source '%s' is not one of Environment, "
                          "Ec2InstanceMetadata, EcsContainer",
                          name, cs);
            return KN__CP_FAIL;
        }
        if (r == KN__CP_NONE) {
            kn__error_set(err, KN_ERR_CREDENTIALS, "profile %s: credential_source %s: %s", name, cs,
                          ctx->why);
            return KN__CP_FAIL;
        }
        if (r == KN__CP_FAIL)
            kn__error_prefix(err, "profile %s: credential_source %s", name, cs);
        return r;
    }
    if (!kn__profile_exists(ctx->profiles, sp)) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "profile %s: source_profile %s does not exist in %s or %s", name, sp,
                      kn__profiles_path(ctx->profiles, KN__PROFILE_CREDENTIALS_FILE),
                      kn__profiles_path(ctx->profiles, KN__PROFILE_CONFIG_FILE));
        return KN__CP_FAIL;
    }
    for (size_t i = 0; i <= depth; i++) {
        if (strcmp(chain[i], sp) != 0)
            continue;
        /* A profile may name itself to use its own static keys for the role. */
        if (strcmp(sp, name) == 0 && has_static(ctx, sp)) {
            r = static_keys(ctx, sp, KN__PROFILE_CREDENTIALS_FILE, src, err);
            if (r == KN__CP_NONE)
                r = static_keys(ctx, sp, KN__PROFILE_CONFIG_FILE, src, err);
            return r;
        }
        char path[512] = "";
        size_t used = 0;
        for (size_t j = 0; j <= depth && used < sizeof(path); j++) {
            int w = snprintf(path + used, sizeof(path) - used, "%s -> ", chain[j]);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        kn__error_set(err, KN_ERR_CREDENTIALS, "source_profile loop: %s%s", path, sp);
        return KN__CP_FAIL;
    }
    if (depth + 1 >= KN__MAX_ROLE_CHAIN) {
        kn__error_set(err, KN_ERR_CREDENTIALS, "profile %s: role chain longer than %d profiles",
                      name, KN__MAX_ROLE_CHAIN);
        return KN__CP_FAIL;
    }
    chain[depth + 1] = sp;
    r = resolve_profile(ctx, sp, chain, depth + 1, src, err);
    if (r == KN__CP_NONE) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "profile %s: source_profile %s has no credentials (%s)", name, sp, ctx->why);
        return KN__CP_FAIL;
    }
    return r;
}

static kn__cp_t assume_role(kn__creds_ctx_t *ctx, const char *name, const char *role_arn,
                            const char **chain, size_t depth, kn__creds_t *out, kn_error_t *err)
{
    kn__creds_t src;
    memset(&src, 0, sizeof(src));
    kn__cp_t r = role_source(ctx, name, chain, depth, &src, err);
    if (r != KN__CP_FOUND)
        goto out;
    kn__creds_register_secrets(ctx, &src);
    const char *dur = kn__profile_get(ctx->profiles, name, "duration_seconds");
    long duration_s = 0;
    if (dur) {
        char *end;
        duration_s = strtol(dur, &end, 10);
        if (*end || duration_s < 900 || duration_s > 43200) {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "profile %s: duration_seconds '%.32s' is not a number from 900 to 43200",
                          name, dur);
            r = KN__CP_FAIL;
            goto out;
        }
    }
    if (kn__sts_assume_role(ctx, &src, role_arn,
                            kn__profile_get(ctx->profiles, name, "role_session_name"),
                            kn__profile_get(ctx->profiles, name, "external_id"), duration_s, out,
                            err) != KN_ERR_OK) {
        kn__error_prefix(err, "profile %s", name);
        r = KN__CP_FAIL;
        goto out;
    }
    snprintf(out->source, sizeof(out->source), "assume-role:%s", name);
    r = KN__CP_FOUND;
out:
    kn__creds_free(&src);
    return r;
}

/*
 * Credentials of one profile. chain[0..depth] are the profiles on the way
 * here (chain[depth] == name); depth > 0 means name is a source_profile.
 */
static kn__cp_t resolve_profile(kn__creds_ctx_t *ctx, const char *name, const char **chain,
                                size_t depth, kn__creds_t *out, kn_error_t *err)
{
    const kn__profiles_t *p = ctx->profiles;
    const char *role_arn = kn__profile_get(p, name, "role_arn");
    const char *wit = kn__profile_get(p, name, "web_identity_token_file");
    kn__cp_t r;

    /* A source profile's own static keys beat its role (botocore does the same). */
    if (role_arn && !wit && !(depth > 0 && has_static(ctx, name)))
        return assume_role(ctx, name, role_arn, chain, depth, out, err);
    if (wit) {
        if (!role_arn) {
            kn__error_set(err, KN_ERR_CREDENTIALS,
                          "profile %s has web_identity_token_file but no role_arn", name);
            return KN__CP_FAIL;
        }
        if (kn__sts_assume_role_with_web_identity(ctx, role_arn,
                                                  kn__profile_get(p, name, "role_session_name"),
                                                  wit, out, err) != KN_ERR_OK) {
            kn__error_prefix(err, "profile %s", name);
            return KN__CP_FAIL;
        }
        return KN__CP_FOUND;
    }
    r = kn__cp_sso(ctx, name, out, err);
    if (r != KN__CP_NONE)
        return r;
    r = static_keys(ctx, name, KN__PROFILE_CREDENTIALS_FILE, out, err);
    if (r != KN__CP_NONE)
        return r;
    const char *process = kn__profile_get(p, name, "credential_process");
    if (process && *process)
        return kn__cp_process(ctx, name, process, out, err);
    r = static_keys(ctx, name, KN__PROFILE_CONFIG_FILE, out, err);
    if (r != KN__CP_NONE)
        return r;
    kn__creds_why(ctx, "no credentials in the profile (no aws_access_key_id, role_arn, credential_process or "
             "sso_* keys)");
    return KN__CP_NONE;
}

/* The selected profile as a chain step. */
static kn__cp_t profile_step(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err)
{
    const char *name = ctx->profile;
    int explicit_profile = (ctx->opts && ctx->opts->profile && *ctx->opts->profile) ||
                           kn__creds_env("AWS_PROFILE") || kn__creds_env("AWS_DEFAULT_PROFILE");
    if (!kn__profile_exists(ctx->profiles, name)) {
        const char *cp = kn__profiles_path(ctx->profiles, KN__PROFILE_CREDENTIALS_FILE);
        const char *fp = kn__profiles_path(ctx->profiles, KN__PROFILE_CONFIG_FILE);
        if (explicit_profile && strcmp(name, "default") != 0) {
            /* A profile the user asked for by name must not silently fall through to IMDS. */
            kn__error_set(err, KN_ERR_CREDENTIALS, "profile %s: not found in %s or %s", name, cp,
                          fp);
            return KN__CP_FAIL;
        }
        kn__creds_why(ctx, "not found in %s or %s", cp, fp);
        return KN__CP_NONE;
    }
    const char *chain[KN__MAX_ROLE_CHAIN];
    chain[0] = name;
    return resolve_profile(ctx, name, chain, 0, out, err);
}

/* Web identity from AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN. */
static kn__cp_t web_identity_env_step(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err)
{
    const char *file = kn__creds_env("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (!file) {
        kn__creds_why(ctx, "AWS_WEB_IDENTITY_TOKEN_FILE not set");
        return KN__CP_NONE;
    }
    const char *arn = kn__creds_env("AWS_ROLE_ARN");
    if (!arn) {
        kn__error_set(err, KN_ERR_CREDENTIALS,
                      "web identity: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not");
        return KN__CP_FAIL;
    }
    if (kn__sts_assume_role_with_web_identity(ctx, arn, kn__creds_env("AWS_ROLE_SESSION_NAME"), file, out,
                                              err) != KN_ERR_OK) {
        kn__error_prefix(err, "web identity");
        return KN__CP_FAIL;
    }
    return KN__CP_FOUND;
}

/* ---------------------------------------------------------------- chain */

kn_err_t kn__creds_resolve(const kn__creds_opts_t *opts, kn__creds_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn__creds_ctx_t ctx;
    kn_buf_t steps = KN_BUF_INIT;
    kn__cp_t r = KN__CP_NONE;
    char label[160];

    memset(&ctx, 0, sizeof(ctx));
    ctx.opts = opts;
    memset(out, 0, sizeof(*out));
    kn__logger_t *log = opts ? opts->log : NULL;

    const char *sak = opts && opts->static_access_key_id && *opts->static_access_key_id
                          ? opts->static_access_key_id
                          : NULL;
    const char *ssk = opts && opts->static_secret_access_key && *opts->static_secret_access_key
                          ? opts->static_secret_access_key
                          : NULL;
    if (sak || ssk) {
        if (!sak || !ssk) {
            rc = kn__error_set(err, KN_ERR_CREDENTIALS,
                               "static credentials: %s is set but %s is not",
                               sak ? "the access key id" : "the secret access key",
                               sak ? "the secret access key" : "the access key id");
            goto out;
        }
        const char *tok = opts->static_session_token;
        if (kn__creds_fill(out, sak, strlen(sak), ssk, strlen(ssk), tok, tok ? strlen(tok) : 0, 0,
                           "static") != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
            goto out;
        }
        r = KN__CP_FOUND;
        goto found;
    }

    ctx.profiles = kn__profiles_load();
    if (!ctx.profiles) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory loading the shared config files");
        goto out;
    }
    ctx.profile = kn__profile_name(opts ? opts->profile : NULL);

    /*
     * A profile named in the configuration beats the environment's keys and
     * web identity, as a profile passed to a botocore Session does.
     */
    int profile_set = opts && opts->profile && *opts->profile;
    for (int step = 0; step < 5; step++) {
        ctx.why[0] = '\0';
        if (opts && opts->cancel && atomic_load(opts->cancel)) {
            rc = kn__error_set(err, KN_ERR_DESTROYED, "credentials: cancelled (shutting down)");
            goto out;
        }
        switch (step) {
        case 0:
            if (profile_set) {
                r = KN__CP_NONE;
                kn__creds_why(&ctx, "skipped: profile %.100s set in the configuration", ctx.profile);
            } else {
                r = kn__cp_env(&ctx, out, err);
            }
            snprintf(label, sizeof(label), "environment");
            break;
        case 1:
            if (profile_set) {
                r = KN__CP_NONE;
                kn__creds_why(&ctx, "skipped: profile set in the configuration");
            } else {
                r = web_identity_env_step(&ctx, out, err);
            }
            snprintf(label, sizeof(label), "web identity");
            break;
        case 2:
            r = profile_step(&ctx, out, err);
            snprintf(label, sizeof(label), "profile %.100s", ctx.profile);
            break;
        case 3:
            r = kn__cp_container(&ctx, out, err);
            snprintf(label, sizeof(label), "container");
            break;
        default:
            r = kn__cp_imds(&ctx, out, err);
            snprintf(label, sizeof(label), "IMDS");
            break;
        }
        if (r == KN__CP_FOUND)
            goto found;
        if (r == KN__CP_FAIL) {
            rc = err ? err->code : KN_ERR_CREDENTIALS;
            if (rc == KN_ERR_OK)
                rc = KN_ERR_CREDENTIALS;
            KN_LOG(log, KN_LOG_DEBUG, KN_DBG_CREDS, "credentials: %s failed: %s", label,
                   err ? err->message : "");
            goto out;
        }
        KN_LOG(log, KN_LOG_DEBUG, KN_DBG_CREDS, "credentials: %s: %s", label, ctx.why);
        if (kn__buf_printf(&steps, "%s%s: %s", steps.len ? "; " : "", label, ctx.why) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
            goto out;
        }
    }
    if (opts && opts->cancel && atomic_load(opts->cancel)) {
        rc = kn__error_set(err, KN_ERR_DESTROYED, "credentials: cancelled (shutting down)");
        goto out;
    }
    rc = kn__error_set(err, KN_ERR_CREDENTIALS, "no credentials found: %s", steps.data);
    goto out;
found:
    kn__creds_register_secrets(&ctx, out);
    KN_LOG(log, KN_LOG_DEBUG, KN_DBG_CREDS, "credentials from %s (access key id %s, expires %lld)",
           out->source, out->access_key_id, (long long)out->expiration);
    if (err)
        kn__error_clear(err);
out:
    if (rc != KN_ERR_OK)
        kn__creds_free(out);
    kn__profiles_destroy(ctx.profiles);
    free(ctx.region);
    kn__buf_free(&steps);
    return rc;
}

/* ---------------------------------------------------------------- cache */

struct kn__creds_cache_s {
    kn__creds_opts_t opts; /* strings below are owned copies */
    char *s_profile, *s_region, *s_sts, *s_ca, *s_akid, *s_secret, *s_token;

    pthread_mutex_t refresh_lock; /* serialises refreshes; taken before lock */
    pthread_mutex_t lock;         /* guards everything below */
    kn__creds_t creds;
    bool have;
    uint64_t gen; /* completed refresh attempts */
    kn_err_t last_rc;
    kn_error_t last_err;
    time_t last_attempt_at; /* 0: never */
    time_t (*now)(void);
    atomic_int cancelled; /* c->opts.cancel points here */
};

static time_t default_now(void) { return time(NULL); }

static char *dup_opt(const char *s, int *fail)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *fail = 1;
    return d;
}

kn__creds_cache_t *kn__creds_cache_new(const kn__creds_opts_t *opts)
{
    kn__creds_cache_t *c = calloc(1, sizeof(*c));
    int fail = 0;
    if (!c)
        return NULL;
    if (opts)
        c->opts = *opts;
    c->opts.profile = c->s_profile = dup_opt(c->opts.profile, &fail);
    c->opts.region = c->s_region = dup_opt(c->opts.region, &fail);
    c->opts.sts_endpoint = c->s_sts = dup_opt(c->opts.sts_endpoint, &fail);
    c->opts.ca_bundle = c->s_ca = dup_opt(c->opts.ca_bundle, &fail);
    c->opts.static_access_key_id = c->s_akid = dup_opt(c->opts.static_access_key_id, &fail);
    c->opts.static_secret_access_key = c->s_secret =
        dup_opt(c->opts.static_secret_access_key, &fail);
    c->opts.static_session_token = c->s_token = dup_opt(c->opts.static_session_token, &fail);
    c->now = default_now;
    atomic_init(&c->cancelled, 0);
    c->opts.cancel = &c->cancelled;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->refresh_lock, NULL);
    if (fail) {
        kn__creds_cache_destroy(c);
        return NULL;
    }
    return c;
}

void kn__creds_cache_destroy(kn__creds_cache_t *c)
{
    if (!c)
        return;
    kn__creds_free(&c->creds);
    free(c->s_profile);
    free(c->s_region);
    free(c->s_sts);
    free(c->s_ca);
    free(c->s_akid);
    wipe_free(c->s_secret);
    wipe_free(c->s_token);
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->refresh_lock);
    free(c);
}

void kn__creds_cache_cancel(kn__creds_cache_t *c)
{
    if (c)
        atomic_store(&c->cancelled, 1);
}

void kn__creds_cache_set_clock(kn__creds_cache_t *c, time_t (*now)(void))
{
    pthread_mutex_lock(&c->lock);
    c->now = now ? now : default_now;
    pthread_mutex_unlock(&c->lock);
}

/* State of the stored credentials at time now (lock held). */
static kn__creds_state_t state_locked(const kn__creds_cache_t *c, time_t now)
{
    if (!c->have)
        return KN__CREDS_NONE;
    if (c->creds.expiration == 0)
        return KN__CREDS_VALID;
    if (now >= c->creds.expiration)
        return KN__CREDS_NONE;
    if (now >= c->creds.expiration - KN__CREDS_REFRESH_BEFORE_S)
        return KN__CREDS_REFRESH_DUE;
    return KN__CREDS_VALID;
}

kn__creds_state_t kn__creds_cache_peek(kn__creds_cache_t *c, kn__creds_t *out)
{
    pthread_mutex_lock(&c->lock);
    kn__creds_state_t st = state_locked(c, c->now());
    if (st != KN__CREDS_NONE && out && kn__creds_copy(out, &c->creds) != 0)
        st = KN__CREDS_NONE;
    pthread_mutex_unlock(&c->lock);
    return st;
}

kn_err_t kn__creds_cache_refresh(kn__creds_cache_t *c, kn_error_t *err)
{
    kn_err_t rc;
    pthread_mutex_lock(&c->lock);
    uint64_t gen = c->gen;
    pthread_mutex_unlock(&c->lock);

    pthread_mutex_lock(&c->refresh_lock);
    pthread_mutex_lock(&c->lock);
    if (c->gen != gen) {
        /* Another caller refreshed while this one waited: share its outcome. */
        rc = c->last_rc;
        if (rc != KN_ERR_OK)
            kn__error_copy(err, &c->last_err);
        pthread_mutex_unlock(&c->lock);
        goto out;
    }
    pthread_mutex_unlock(&c->lock);

    kn__creds_t fresh;
    kn_error_t e;
    kn__error_clear(&e);
    rc = kn__creds_resolve(&c->opts, &fresh, &e);

    pthread_mutex_lock(&c->lock);
    c->gen++;
    c->last_rc = rc;
    c->last_attempt_at = c->now();
    kn__error_copy(&c->last_err, &e);
    if (rc == KN_ERR_OK) {
        kn__creds_free(&c->creds);
        c->creds = fresh; /* ownership moves */
        c->have = true;
    } else {
        KN_LOG(c->opts.log, KN_LOG_WARN, KN_DBG_CREDS, "credentials refresh failed%s: %s",
               state_locked(c, c->last_attempt_at) != KN__CREDS_NONE
                   ? " (the current credentials stay in use until they expire)"
                   : "",
               e.message);
        kn__error_copy(err, &e);
    }
    pthread_mutex_unlock(&c->lock);
out:
    pthread_mutex_unlock(&c->refresh_lock);
    return rc;
}

bool kn__creds_cache_refresh_wanted(kn__creds_cache_t *c)
{
    pthread_mutex_lock(&c->lock);
    time_t now = c->now();
    kn__creds_state_t st = state_locked(c, now);
    bool recent = c->last_attempt_at && now - c->last_attempt_at < KN__CREDS_RETRY_GAP_S;
    pthread_mutex_unlock(&c->lock);
    return st == KN__CREDS_NONE || (st == KN__CREDS_REFRESH_DUE && !recent);
}

kn_err_t kn__creds_cache_get(kn__creds_cache_t *c, kn__creds_t *out, kn_error_t *err)
{
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    kn__creds_state_t st = kn__creds_cache_peek(c, out);
    if (st == KN__CREDS_VALID)
        return KN_ERR_OK;
    if (st == KN__CREDS_REFRESH_DUE) {
        if (!kn__creds_cache_refresh_wanted(c))
            return KN_ERR_OK;
        if (kn__creds_cache_refresh(c, NULL) == KN_ERR_OK) {
            kn__creds_t newer;
            if (kn__creds_cache_peek(c, &newer) != KN__CREDS_NONE) {
                kn__creds_free(out);
                *out = newer;
            }
        }
        /* A failed refresh keeps the old credentials, which still work. */
        return KN_ERR_OK;
    }
    rc = kn__creds_cache_refresh(c, err);
    if (rc != KN_ERR_OK)
        return rc;
    if (kn__creds_cache_peek(c, out) == KN__CREDS_NONE)
        return kn__error_set(err, KN_ERR_CREDENTIALS,
                             "the credentials just obtained are already expired (check the clock)");
    return KN_ERR_OK;
}
