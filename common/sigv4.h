/*
 * Internal: AWS Signature Version 4, header signing, as a pure function.
 * No I/O, no clock: the caller passes the time. A small cache keeps the
 * derived signing key per (secret, date, region, service).
 */
#ifndef KN_SIGV4_H
#define KN_SIGV4_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
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

/* Headers the caller must add to the request, in this order. */
typedef struct kn__sigv4_out_s {
    char amz_date[17];          /* "20150830T123600Z" (X-Amz-Date) */
    char payload_hash[65];      /* hex SHA-256 of the payload */
    char signature[65];         /* hex signature */
    char authorization[1024];   /* full Authorization header value */
    bool add_date_header;       /* X-Amz-Date was not among the input headers */
    bool add_token_header;      /* X-Amz-Security-Token must be added */
    bool add_content_sha_header; /* x-amz-content-sha256 must be added */
} kn__sigv4_out_t;

typedef struct kn__sigv4_cache_s kn__sigv4_cache_t;

kn__sigv4_cache_t *kn__sigv4_cache_new(void);
void kn__sigv4_cache_destroy(kn__sigv4_cache_t *c);

/*
 * Signs a request. cache may be NULL (no caching; thread-safe otherwise).
 * canonical/string_to_sign may be NULL; when given they receive the canonical
 * request and the string to sign (for tests and sigv4 trace logging; neither
 * holds a secret). Returns KN_ERR_OK or an error (bad input) in err.
 */
kn_err_t kn__sigv4_sign(kn__sigv4_cache_t *cache, const kn__sigv4_creds_t *creds,
                        const kn__sigv4_req_t *req, kn__sigv4_out_t *out, kn_buf_t *canonical,
                        kn_buf_t *string_to_sign, kn_error_t *err);

/* Hex SHA-256 of data into out (65 bytes). */
void kn__sha256_hex(const void *data, size_t len, char out[65]);

/* "YYYYMMDDTHHMMSSZ" for t into out (17 bytes). */
void kn__sigv4_amz_date(time_t t, char out[17]);

#endif
