/*
 * Internal: asynchronous HTTP on libcurl's multi interface driven by a libuv
 * loop (CURLMOPT_SOCKETFUNCTION on uv_poll, CURLMOPT_TIMERFUNCTION on
 * uv_timer). Keep-alive connection reuse, a bounded number of connections,
 * connect and per-request timeouts, TLS verification on by default, CA
 * bundle, proxies from the usual environment variables (libcurl's own).
 *
 * Threads: everything here runs on the loop thread only, including the
 * completion callbacks.
 */
#ifndef KN_HTTP_H
#define KN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "err.h"
#include "log.h"

typedef struct kn__http_s kn__http_t;

/*
 * Zero fields take the defaults below, except tls_verify: fill the struct
 * with kn__http_opts_default() first (or pass opts == NULL) so that
 * verification stays on unless explicitly turned off.
 */
typedef struct kn__http_opts_s {
    long max_connections;    /* total and per host; more requests queue. 0: 24 */
    long connect_timeout_ms; /* 0: 6000 */
    const char *ca_bundle;   /* copied; NULL/"": system store */
    bool tls_verify;         /* peer and host name; kn__http_opts_default(): true */
    size_t max_response_bytes; /* larger bodies fail with KN_ERR_TOO_LARGE. 0: 64 MiB */
    kn__logger_t *log;       /* may be NULL; must outlive the client */
} kn__http_opts_t;

#define KN__HTTP_DEFAULT_MAX_CONNECTIONS 24
#define KN__HTTP_DEFAULT_CONNECT_TIMEOUT_MS 6000
#define KN__HTTP_DEFAULT_MAX_RESPONSE_BYTES ((size_t)64 << 20)

/* Fills opts with the defaults (TLS verification on). */
void kn__http_opts_default(kn__http_opts_t *opts);

/*
 * curl_global_init, once per process (pthread_once); safe from any thread.
 * kn__http_new calls it; other users of libcurl may too.
 */
kn_err_t kn__http_global_init(kn_error_t *err);

typedef struct kn__http_resp_s {
    long status;             /* 0 when no response arrived */
    kn_buf_t body;           /* owned by the response; the callback may steal it */
    char date[64];           /* Date header, "" if absent */
    char request_id[128];    /* x-amzn-RequestId (or x-amz-request-id), "" if absent */
    char error_type[128];    /* x-amzn-ErrorType, raw, "" if absent */
    char content_type[128];
    double total_s;          /* duration of the transfer */
    kn_error_t err;          /* code KN_ERR_OK when a complete response arrived (any
                              * status); else TRANSPORT, TIMEOUT, TLS, TOO_LARGE,
                              * NOMEM or DESTROYED (status may still be set when
                              * the headers came but the body failed) */
} kn__http_resp_t;

/* Runs on the loop thread; resp is valid only inside the call. */
typedef void(kn__http_cb_t)(kn__http_resp_t *resp, void *opaque);

typedef struct kn__http_req_s {
    const char *method;        /* "POST", "GET", ... */
    const char *url;           /* copied */
    const char *const *headers; /* NULL-terminated "Name: value" list, copied */
    const void *body;          /* NOT copied: must stay valid until the callback */
    size_t body_len;
    long timeout_ms;           /* whole request; 0: none */
    kn__http_cb_t *cb;
    void *opaque;
} kn__http_req_t;

/* Loop thread only; opts may be NULL (defaults). NULL on failure with err set. */
kn__http_t *kn__http_new(uv_loop_t *loop, const kn__http_opts_t *opts, kn_error_t *err);

/*
 * Starts a request. The callback is always called later from the loop,
 * never from inside this call, exactly once (with KN_ERR_DESTROYED when the
 * client shuts down first). Returns KN_ERR_OK or an error (then no callback).
 */
kn_err_t kn__http_send(kn__http_t *h, const kn__http_req_t *req, kn_error_t *err);

/*
 * Loop thread only, once per client (also allowed from inside a completion
 * callback). Cancels every transfer (callbacks get KN_ERR_DESTROYED), then closes the
 * libuv handles; done(opaque) runs once they are closed. The loop must keep
 * running until then.
 */
void kn__http_close(kn__http_t *h, void (*done)(void *opaque), void *opaque);

/* Number of transfers in flight (for tests and metrics). */
size_t kn__http_inflight(const kn__http_t *h);

#endif
