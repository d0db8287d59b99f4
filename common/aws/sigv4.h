/*
 * Internal: AWS Signature Version 4, header signing, as a pure function.
 * No I/O, no clock: the caller passes the time. A small cache keeps the
 * derived signing key per (access key id + secret digest, date, region,
 * service).
 *
 * Canonicalization rules (as AWS documents SigV4; checked against
 * the official vectors and botocore):
 * - Method: used as given (HTTP methods are case-sensitive).
 * - Path: the path as sent on the wire. With normalize_path, "." and ".."
 *   segments and empty segments (duplicate slashes) are removed; a trailing
 *   slash is kept when the result is not empty (botocore's rule). Then every
 *   byte except A-Z a-z 0-9 - _ . ~ and '/' is percent-encoded (upper-case hex),
 *   so an already percent-encoded wire path is encoded a second time, as all
 *   services except S3 expect. NULL or "" means "/".
 * - Query: the query as sent on the wire. Split on '&' (empty pieces are
 *   skipped), then each piece at its first '=' (none: empty value). Valid %XX
 *   escapes are decoded, everything else is taken literally ('+' is a plus
 *   sign, not a space), then each name and value is encoded as above without
 *   the '/' exception. Pairs are sorted by encoded name, then encoded value.
 * - Headers: names compared case-insensitively and emitted in lower case;
 *   values trimmed with inner runs of SP/HT folded to one space; a line break
 *   is accepted only as a folded continuation (followed by SP or HT) and folds
 *   like a space. Repeated names are joined with ',' in input order. Names
 *   must be HTTP tokens. These are never signed (as botocore): authorization,
 *   connection, expect, keep-alive, proxy-authenticate, proxy-authorization,
 *   te, trailer, transfer-encoding, upgrade, user-agent, x-amzn-trace-id
 *   (hop-by-hop, or rewritten by proxies and tracers on the way).
 * - Host must be among the headers (exactly once).
 * - X-Amz-Date: when among the headers its value (YYYYMMDDTHHMMSSZ) is the
 *   signing time and `now` is ignored; else it is made from `now` and added.
 * - Payload hash: the value of an x-amz-content-sha256 header when given,
 *   else payload_sha256_hex when given, else the SHA-256 of the body.
 */
#ifndef KN_SIGV4_H
#define KN_SIGV4_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "err.h"

typedef struct kn__hdr_s {
    const char *name; /* as the caller spells it; compared case-insensitively */
    const char *value; /* raw value; the signer trims and folds spaces */
} kn__hdr_t;

typedef struct kn__sigv4_req_s {
    const char *method;  /* "POST" */
    const char *path;    /* the path as sent on the wire, e.g. "/" (already percent-encoded) */
    const char *query;   /* the query string as sent, without '?'; NULL or "" for none */
    const kn__hdr_t *headers; /* must include Host; may include X-Amz-Date (else added) */
    size_t n_headers;
    const void *body;    /* payload; may be NULL when body_len == 0 */
    size_t body_len;
    const char *payload_sha256_hex; /* optional precomputed hash; overrides body */
    const char *region;
    const char *service;
    time_t now;          /* signing time (UTC seconds) */
    bool normalize_path; /* remove "." and ".." segments and duplicate slashes */
    bool sign_body;      /* add and sign x-amz-content-sha256 */
    bool omit_session_token; /* add X-Amz-Security-Token after signing (unsigned) */
} kn__sigv4_req_t;

typedef struct kn__sigv4_creds_s {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" for none */
} kn__sigv4_creds_t;

/*
 * Headers the caller must add to the request, in this order:
 *   add_date_header:        "X-Amz-Date: <amz_date>"
 *   add_token_header:       "X-Amz-Security-Token: <creds->session_token>"
 *   add_content_sha_header: "x-amz-content-sha256: <payload_hash>"
 *   always:                 "Authorization: <authorization>"
 */
typedef struct kn__sigv4_out_s {
    char amz_date[17];          /* "20150830T123600Z" (X-Amz-Date) */
    char payload_hash[65];      /* hex SHA-256 of the payload (or the given value) */
    char signature[65];         /* hex signature */
    char authorization[1024];   /* full Authorization header value */
    bool add_date_header;       /* X-Amz-Date was not among the input headers */
    bool add_token_header;      /* X-Amz-Security-Token must be added */
    bool add_content_sha_header; /* x-amz-content-sha256 must be added */
} kn__sigv4_out_t;

typedef struct kn__sigv4_cache_s kn__sigv4_cache_t;

/* NULL on allocation failure. destroy(NULL) is a no-op; destroy wipes the keys. */
kn__sigv4_cache_t *kn__sigv4_cache_new(void);
void kn__sigv4_cache_destroy(kn__sigv4_cache_t *c);
/* Lookup counters (for tests and debug logging). Thread-safe. */
void kn__sigv4_cache_stats(kn__sigv4_cache_t *c, uint64_t *hits, uint64_t *misses);

/*
 * Signs a request. cache may be NULL (no caching); any thread may call this,
 * also concurrently with the same cache. canonical/string_to_sign may be
 * NULL; when given they are reset and receive the canonical request and the
 * string to sign (for tests and sigv4 trace logging; the canonical request holds
 * the session token when it is signed: log it only through the logger, which redacts it).
 * Returns KN_ERR_OK, or KN_ERR_INVALID_ARG (bad input), KN_ERR_TOO_LARGE
 * (Authorization would not fit), KN_ERR_NOMEM, KN_ERR_NOT_SUPPORTED (OpenSSL
 * has no SHA-256/HMAC) with a message in err that never holds a secret.
 */
kn_err_t kn__sigv4_sign(kn__sigv4_cache_t *cache, const kn__sigv4_creds_t *creds,
                        const kn__sigv4_req_t *req, kn__sigv4_out_t *out, kn_buf_t *canonical,
                        kn_buf_t *string_to_sign, kn_error_t *err);

/*
 * The signing key: HMAC chain over "AWS4"+secret, date8 ("YYYYMMDD"), region,
 * service, "aws4_request". Uncached (tests use it to check the cache).
 */
kn_err_t kn__sigv4_derive_key(const char *secret_access_key, const char *date8, const char *region,
                              const char *service, unsigned char key[32], kn_error_t *err);

/* Hex SHA-256 of data into out (65 bytes); "" if OpenSSL fails. */
void kn__sha256_hex(const void *data, size_t len, char out[65]);

/* "YYYYMMDDTHHMMSSZ" for t into out (17 bytes); "" when t is outside years 0..9999. */
void kn__sigv4_amz_date(time_t t, char out[17]);

#endif
