/*
 * Internal to the credentials module (creds.c, creds_providers.c,
 * creds_sts.c): the providers and the helpers they share.
 */
#ifndef KN_CREDS_INT_H
#define KN_CREDS_INT_H

#include <stddef.h>
#include <time.h>

#include "buf.h"
#include "creds.h"
#include "profile.h"

/* What a provider did. */
typedef enum kn__cp_e {
    KN__CP_FOUND, /* out holds credentials */
    KN__CP_NONE,  /* not configured here: ctx->why says why; the chain goes on */
    KN__CP_FAIL,  /* configured but failed: err is set; the chain stops */
} kn__cp_t;

/* One run of the chain. */
typedef struct kn__creds_ctx_s {
    const kn__creds_opts_t *opts;
    kn__profiles_t *profiles; /* loaded once per run */
    const char *profile;      /* the selected profile name */
    char *region;             /* for STS; resolved lazily (malloc'd) */
    char why[384];            /* reason of the last KN__CP_NONE */
} kn__creds_ctx_t;

/*
 * Region for STS: the option, AWS_REGION, AWS_DEFAULT_REGION, the selected
 * profile's region, else "us-east-1". NULL on ENOMEM.
 */
const char *kn__creds_region(kn__creds_ctx_t *ctx);
/* The selected profile's endpoint_url (NULL when none). */
const char *kn__creds_profile_endpoint_url(const kn__creds_ctx_t *ctx);
/* Per-call HTTP timeout from the options (default 5 s). */
long kn__creds_timeout_ms(const kn__creds_ctx_t *ctx);
/* CA bundle from the options, else AWS_CA_BUNDLE, else NULL (system store). */
const char *kn__creds_ca_bundle(const kn__creds_ctx_t *ctx);

/* getenv(name), with an empty value taken as unset (NULL). */
const char *kn__creds_env(const char *name);
/* Records why a provider gave KN__CP_NONE (ctx->why). */
void kn__creds_why(kn__creds_ctx_t *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills c from the given strings (copied); token may be NULL or "". 0, or -1 on ENOMEM. */
int kn__creds_fill(kn__creds_t *c, const char *akid, size_t akid_len, const char *secret,
                   size_t secret_len, const char *token, size_t token_len, time_t expiration,
                   const char *source);
/* Registers the secret parts with the logger (when there is one). */
void kn__creds_register_secrets(const kn__creds_ctx_t *ctx, const kn__creds_t *c);

/*
 * Parses an ISO 8601 UTC time: YYYY-MM-DDTHH:MM:SS[.fraction](Z|UTC|+HH:MM|-HH:MM).
 * Returns 0 and sets *out, or -1.
 */
int kn__creds_parse_time(const char *s, size_t n, time_t *out);

/* Environment keys (AWS_ACCESS_KEY_ID, ...). */
kn__cp_t kn__cp_env(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err);
/* AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI. */
kn__cp_t kn__cp_container(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err);
/* EC2 instance metadata, IMDSv2. */
kn__cp_t kn__cp_imds(kn__creds_ctx_t *ctx, kn__creds_t *out, kn_error_t *err);
/* A profile's credential_process command. */
kn__cp_t kn__cp_process(kn__creds_ctx_t *ctx, const char *profile, const char *command,
                        kn__creds_t *out, kn_error_t *err);
/* A profile's SSO configuration (NONE when it has none). */
kn__cp_t kn__cp_sso(kn__creds_ctx_t *ctx, const char *profile, kn__creds_t *out, kn_error_t *err);

/* STS AssumeRoleWithWebIdentity (unsigned). token_file is read here. */
/*
 * Parses an STS answer (the XML of a 200, or an error body) into out or a
 * precise error; what names the operation ("AssumeRole": its <whatResult>
 * element), role_arn and source go into messages and the credentials. A
 * view in: never reads past x + xn.
 */
kn_err_t kn__sts_parse_response(long status, const char *x, size_t xn, const char *what,
                                const char *role_arn, const char *source, kn__creds_t *out,
                                kn_error_t *err);

/* Which JSON credentials shape kn__creds_parse_json expects. */
typedef enum kn__creds_json_e {
    KN__CJ_PROCESS,   /* credential_process output (AccessKeyId, ..., Expiration ISO 8601) */
    KN__CJ_CONTAINER, /* ECS/EKS container endpoint (Token) */
    KN__CJ_IMDS,      /* EC2 instance metadata (Token) */
    KN__CJ_SSO,       /* SSO GetRoleCredentials roleCredentials (expiration in ms) */
} kn__creds_json_t;

/* Parses a credentials JSON text of the given shape (a view) into out. what names it in messages. */
kn_err_t kn__creds_parse_json(kn__creds_json_t shape, const char *text, size_t len, const char *what,
                              kn__creds_t *out, kn_error_t *err);

kn_err_t kn__sts_assume_role_with_web_identity(kn__creds_ctx_t *ctx, const char *role_arn,
                                               const char *session_name, const char *token_file,
                                               kn__creds_t *out, kn_error_t *err);
/* STS AssumeRole signed with source. external_id may be NULL; duration_s 0 for the default. */
kn_err_t kn__sts_assume_role(kn__creds_ctx_t *ctx, const kn__creds_t *source, const char *role_arn,
                             const char *session_name, const char *external_id, long duration_s,
                             kn__creds_t *out, kn_error_t *err);

#endif
