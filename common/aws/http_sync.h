/*
 * Internal: small blocking HTTP requests (credential endpoints: STS, SSO,
 * container, IMDS, credential fetches at start-up). One curl easy handle per
 * call; never used on the loop thread or for Kinesis/DynamoDB traffic.
 */
#ifndef KN_HTTP_SYNC_H
#define KN_HTTP_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "err.h"

typedef struct kn__http_sync_req_s {
    const char *method; /* "GET", "PUT", "POST" */
    const char *url;
    const char *const *headers; /* NULL-terminated "Name: value" list, or NULL */
    const void *body;
    size_t body_len;
    long timeout_ms;       /* whole request */
    const char *ca_bundle; /* NULL: system store */
    bool tls_verify;
    size_t max_body; /* 0: 1 MiB */
} kn__http_sync_req_t;

typedef struct kn__http_sync_resp_s {
    long status;
    kn_buf_t body;
} kn__http_sync_resp_t;

/* Transport failures fill err (KN_ERR_TRANSPORT / TIMEOUT / TLS); any HTTP status is success here. */
kn_err_t kn__http_sync(const kn__http_sync_req_t *req, kn__http_sync_resp_t *resp, kn_error_t *err);
/*
 * The same, and gives up with KN_ERR_DESTROYED once *cancel (may be NULL) is
 * set from another thread: curl looks at it at least once a second.
 */
kn_err_t kn__http_sync_cancellable(const kn__http_sync_req_t *req, const atomic_int *cancel,
                                   kn__http_sync_resp_t *resp, kn_error_t *err);
void kn__http_sync_resp_free(kn__http_sync_resp_t *resp);

/*
 * Copies url into out (size bytes) without any user info ("user:password@"),
 * for messages: a URL from the environment may carry credentials.
 */
void kn__url_for_message(const char *url, char *out, size_t size);

#endif
