/*
 * Internal: the AWS JSON request layer. Builds a signed POST for a JSON
 * protocol service (X-Amz-Target, Content-Type), sends it on the client's
 * loop, parses success and error bodies (JSON, XML or HTML told apart by the
 * body), classifies errors exactly by name, retries with exponential backoff
 * and full jitter, and corrects clock skew from the response Date.
 */
#ifndef KN_AWS_H
#define KN_AWS_H

#include <json-c/json.h>

#include "buf.h"
#include "endpoint.h"
#include "err.h"

typedef struct kn__aws_result_s {
    long http_status;
    kn_buf_t body;        /* raw response body (owned; may be stolen) */
    json_object *json;    /* parsed body on success (owned; may be stolen: set to NULL) */
    kn_error_t err;       /* KN_ERR_OK on success */
    int attempts;
    char request_id[128];
} kn__aws_result_t;

/* Runs on the client's loop thread; res is valid only inside the call. */
typedef void(kn__aws_cb_t)(kn__aws_result_t *res, void *opaque);

typedef struct kn__aws_req_s {
    kn__service_t service;
    const char *operation;  /* "ListShards"; copied */
    kn_buf_t body;          /* JSON body; ownership moves to the call */
    int max_attempts;       /* 0: aws.retry.max.attempts */
    long timeout_ms;        /* per attempt; 0: http.request.timeout.ms */
    /*
     * true: a 2xx body is handed over unparsed (res->json stays NULL), for
     * large answers that the caller parses off the loop thread (GetRecords).
     */
    bool raw_body;
    /*
     * Optional: the body's hex SHA-256 when the caller computed it already
     * (off the loop thread); else kn__aws_call computes it on the calling
     * thread. Copied.
     */
    const char *payload_sha256_hex;
    kn__aws_cb_t *cb;
    void *opaque;
} kn__aws_req_t;

/*
 * Starts a call from any thread. The callback runs later on the loop
 * thread, exactly once. On an immediate error (KN_ERR_DESTROYED, ENOMEM) no
 * callback is made, the body is freed and the error is returned.
 */
kn_err_t kn__aws_call(kn_client_t *c, kn__aws_req_t *req, kn_error_t *err);

/*
 * Blocking form for application threads (never the loop thread): sends the
 * body (copied) and waits. On success *out receives the parsed JSON (caller
 * puts it). On failure err is filled.
 */
kn_err_t kn__aws_call_sync(kn_client_t *c, kn__service_t svc, const char *operation,
                           const char *body, size_t body_len, json_object **out, kn_error_t *err);

void kn__aws_result_free(kn__aws_result_t *res);

/* Loop thread, at client shutdown: fails every call in progress with KN_ERR_DESTROYED. */
void kn__aws_shutdown(kn_client_t *c);
/* Loop task posted by the credentials thread: resumes (or fails) the calls that waited. */
void kn__aws_creds_done(kn_client_t *c, void *arg);

/* ---- pure helpers, exposed for unit tests ---- */

/*
 * Fills err from an error response: status, x-amzn-ErrorType header (may be
 * NULL) and body (JSON {"__type","message"|"Message"}, XML <Code>/<Message>,
 * HTML <title>, or plain text). Sets code, class, retriable, aws_type and a
 * message that always names the status and error.
 */
void kn__aws_parse_error(long status, const char *error_type_header, const char *body,
                         size_t body_len, const char *request_id, kn_error_t *err);

/* Strips "namespace#" and ":suffix" into out (size bytes). */
void kn__aws_error_name(const char *raw, size_t raw_len, char *out, size_t size);

/* Error class and code for an AWS error name and HTTP status. */
kn__errclass_t kn__aws_classify(const char *name, long status, kn_err_t *code);

/* Full-jitter backoff: random in [0, min(cap, base * 2^attempt)]. attempt counts from 0. */
long kn__aws_backoff_ms(int attempt, long base_ms, long cap_ms);

/* Parses an RFC 7231 HTTP date; (time_t)-1 when invalid. */
time_t kn__http_date_parse(const char *s);

#endif
