/*
 * Internal: credentials. The standard chain (in the AWS SDKs' order:
 * environment, web identity from the environment, shared files and profiles,
 * container endpoint, EC2 IMDSv2) and a cache that refreshes before expiry.
 * Resolution blocks (it may do network I/O): never call it on the loop
 * thread; the client runs it on libuv's thread pool.
 */
#ifndef KN_CREDS_H
#define KN_CREDS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

#include "err.h"
#include "log.h"

typedef struct kn__creds_s {
    char *access_key_id;
    char *secret_access_key;
    char *session_token; /* NULL when none */
    time_t expiration;   /* 0: does not expire */
    /* "static", "env", "web-identity", "profile:NAME" (static keys of a profile),
     * "assume-role", "process", "sso", "container", "imds" */
    char source[64];
} kn__creds_t;

void kn__creds_free(kn__creds_t *c); /* frees members, zeroes (secrets wiped) */
int kn__creds_copy(kn__creds_t *dst, const kn__creds_t *src); /* 0 or -1 */

typedef struct kn__creds_opts_s {
    const char *profile;      /* NULL/"": AWS_PROFILE, else "default". When set, the
                                  environment's keys and web identity are skipped (botocore) */
    const char *region;       /* for the STS regional endpoint; NULL/"": resolved */
    const char *sts_endpoint; /* explicit STS URL; NULL/"": AWS_ENDPOINT_URL_STS, ... */
    const char *ca_bundle;    /* NULL/"": AWS_CA_BUNDLE, else system */
    bool tls_verify;
    long timeout_ms;         /* per HTTP call (IMDS uses 1 s regardless); 0: 5 s */
    long process_timeout_ms; /* credential_process run time; 0: 60 s */
    /* Static keys from configuration; when both are set the chain is skipped. */
    const char *static_access_key_id;
    const char *static_secret_access_key;
    const char *static_session_token;
    kn__logger_t *log; /* may be NULL */
    /* When non-NULL and set (from any thread), the chain gives up as soon as it can:
     * a running credential_process is killed, an HTTP call aborted, KN_ERR_DESTROYED
     * returned. The cache points it at its own flag (kn__creds_cache_cancel). */
    const atomic_int *cancel;
    /* When non-NULL: seconds added to the local clock when signing STS calls
     * (the client's measured skew, read atomically), as for every other call. */
    const int64_t *clock_skew_s;
} kn__creds_opts_t;

/*
 * Runs the chain once. On success fills out. When no step yields
 * credentials returns KN_ERR_CREDENTIALS with a message listing each step
 * tried and why it gave nothing. A step that is configured but fails (a bad
 * role, an unreachable endpoint) stops the chain with its own error, as the
 * AWS SDKs do.
 */
kn_err_t kn__creds_resolve(const kn__creds_opts_t *opts, kn__creds_t *out, kn_error_t *err);

/* Refresh this long before expiry. */
#define KN__CREDS_REFRESH_BEFORE_S 300

typedef struct kn__creds_cache_s kn__creds_cache_t;

/* opts is deep-copied. */
kn__creds_cache_t *kn__creds_cache_new(const kn__creds_opts_t *opts);
void kn__creds_cache_destroy(kn__creds_cache_t *c);

typedef enum kn__creds_state_e {
    KN__CREDS_NONE = 0,    /* nothing usable: resolve before signing */
    KN__CREDS_VALID,       /* usable */
    KN__CREDS_REFRESH_DUE, /* usable, but within the refresh window */
} kn__creds_state_t;

/* Non-blocking: copies the current credentials into out when usable. Thread-safe. */
kn__creds_state_t kn__creds_cache_peek(kn__creds_cache_t *c, kn__creds_t *out);

/*
 * Blocking: runs the chain and stores the result. On failure the old
 * credentials stay in use until they really expire, and the error is
 * returned. Concurrent callers are serialised. Thread-safe.
 */
kn_err_t kn__creds_cache_refresh(kn__creds_cache_t *c, kn_error_t *err);

/*
 * Non-blocking: whether a refresh should start now. True when nothing usable
 * is cached; when the credentials are inside the refresh window, true only if
 * no refresh attempt ended in the last 10 s, so that a failing source, or
 * credentials that arrive already inside the window, are not asked again for
 * every request. Callers that refresh in the background check this before
 * starting one. Thread-safe.
 */
bool kn__creds_cache_refresh_wanted(kn__creds_cache_t *c);

/* Blocking: peek, and refresh first when needed. Thread-safe. */
kn_err_t kn__creds_cache_get(kn__creds_cache_t *c, kn__creds_t *out, kn_error_t *err);

/*
 * For shutdown, from any thread: a refresh in progress, and every later one,
 * gives up within about a second with KN_ERR_DESTROYED (a credential_process
 * is killed, an HTTP call to STS, SSO, a container or IMDS endpoint aborted),
 * so that the thread waiting for it is not held for the providers' timeouts.
 */
void kn__creds_cache_cancel(kn__creds_cache_t *c);

/* For tests: replaces time(NULL). */
void kn__creds_cache_set_clock(kn__creds_cache_t *c, time_t (*now)(void));

#endif
