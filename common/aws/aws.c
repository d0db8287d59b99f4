/*
 * The AWS JSON request layer: one signed POST per attempt, on the client's
 * loop thread; retries with exponential backoff and full jitter for the
 * retriable classes, one credential refresh on an expired token, one retry
 * after correcting clock skew from the response Date.
 */
#include "aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_int.h"
#include "sigv4.h"

/* A signature error counts as clock skew when the server's clock is off by more than this. */
#define SKEW_THRESHOLD_S 240

struct kn__aws_call_s {
    kn_client_t *c;
    struct kn__aws_call_s *prev, *next; /* c->calls (loop thread) */
    kn__service_t svc;
    char op[64];
    char target[128];
    kn_buf_t body;
    int max_attempts;
    long timeout_ms;
    kn__aws_cb_t *cb;
    void *opaque;
    int attempt; /* attempts started */
    int skew_retried, refresh_retried;
    bool raw_body; /* hand a 2xx body over unparsed */
    int waiting_creds;
    int resume; /* marked by creds_after */
    int in_http;
    int timer_init;
    uv_timer_t timer;
    uint64_t started_ms;
    char payload_hash[65]; /* hex SHA-256 of the body, computed once (not on the loop) */
    kn_buf_t hdr_store;    /* "Name: value\0" each, sized per request (tokens can be long) */
    const char *hdrs[12];
    kn__aws_result_t res;
};
typedef struct kn__aws_call_s call_t;

static void attempt_send(call_t *call);

void kn__aws_result_free(kn__aws_result_t *res)
{
    if (!res)
        return;
    kn__buf_free(&res->body);
    json_object_put(res->json);
    res->json = NULL;
}

static void on_timer_closed(uv_handle_t *h) { free(h->data); }

static void call_free(call_t *call)
{
    kn__buf_free(&call->body);
    kn__buf_free(&call->hdr_store);
    kn__aws_result_free(&call->res);
    if (call->timer_init)
        uv_close((uv_handle_t *)&call->timer, on_timer_closed);
    else
        free(call);
}

static void finish(call_t *call)
{
    kn_client_t *c = call->c;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    call->res.attempts = call->attempt;
    if (call->res.err.code != KN_ERR_OK)
        KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_AWS, "%s failed: %s", call->op, call->res.err.message);
    call->cb(&call->res, call->opaque);
    call_free(call);
}

/* Fails the call with err, adding the operation and endpoint to the message. */
static void fail(call_t *call, const kn_error_t *err)
{
    char attempts[48] = "";
    if (call->attempt > 1)
        snprintf(attempts, sizeof(attempts), " after %d attempts", call->attempt);
    kn__error_copy(&call->res.err, err);
    kn__error_prefix(&call->res.err, "%s %s at %s%s", kn__service_signing_name(call->svc), call->op,
                     call->c->host[call->svc], attempts);
    finish(call);
}

static void fail_code(call_t *call, kn_err_t code, const char *msg)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__error_set(&e, code, "%s", msg);
    fail(call, &e);
}

/* ---------------------------------------------------------- credentials */

static void start_refresh(kn_client_t *c);

static void on_creds_timer(uv_timer_t *t) { start_refresh(t->data); }

/*
 * Arms the timer that refreshes temporary credentials ahead of their expiry,
 * so that no request has to wait for a refresh. After a failed refresh the
 * old credentials stay in use: try again in a minute while they last.
 */
static void schedule_refresh(kn_client_t *c, int failed)
{
    kn__creds_t cr = {0};
    kn__creds_state_t st = kn__creds_cache_peek(c->creds, &cr);
    time_t exp = cr.expiration;
    kn__creds_free(&cr);
    if (st == KN__CREDS_NONE || exp == 0 || c->stop_started)
        return;
    int64_t in_s = (int64_t)(exp - KN__CREDS_REFRESH_BEFORE_S - time(NULL));
    /* Credentials that arrive inside the window already are refreshed every 30 s at most. */
    if (failed)
        in_s = 60;
    else if (in_s < 1)
        in_s = 30;
    uv_timer_start(&c->creds_timer, on_creds_timer, (uint64_t)in_s * 1000, 0);
}

void kn__aws_creds_done(kn_client_t *c, void *arg)
{
    (void)arg;
    c->creds_refreshing = 0;
    schedule_refresh(c, c->creds_err.code != KN_ERR_OK);
    if (c->creds_err.code != KN_ERR_OK)
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CREDS, "credential refresh failed: %s", c->creds_err.message);
    /* Resume (or fail) every call that waited for credentials. Mark first: resuming may add waiters. */
    for (call_t *call = c->calls; call; call = call->next) {
        call->resume = call->waiting_creds;
        call->waiting_creds = 0;
    }
    call_t *call = c->calls;
    while (call) {
        call_t *next = call->next;
        if (call->resume) {
            call->resume = 0;
            if (c->stop_started) {
                fail_code(call, KN_ERR_DESTROYED, "client destroyed while waiting for credentials");
            } else {
                kn__creds_t cr = {0};
                kn__creds_state_t st = kn__creds_cache_peek(c->creds, &cr);
                kn__creds_free(&cr);
                if (st == KN__CREDS_NONE) {
                    kn_error_t e;
                    kn__error_copy(&e, &c->creds_err);
                    if (e.code == KN_ERR_OK)
                        kn__error_set(&e, KN_ERR_CREDENTIALS, "no credentials available");
                    fail(call, &e);
                } else {
                    attempt_send(call);
                }
            }
        }
        call = next;
    }
}

static void start_refresh(kn_client_t *c)
{
    uv_timer_stop(&c->creds_timer);
    if (c->creds_refreshing || c->stop_started)
        return;
    c->creds_refreshing = 1;
    if (kn__client_creds_refresh(c) != KN_ERR_OK) {
        c->creds_refreshing = 0;
        KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_CREDS, "cannot start the credentials thread");
    }
}

/* ------------------------------------------------------------ attempts */

static void on_retry_timer(uv_timer_t *t) { attempt_send(t->data); }

static void retry_or_fail(call_t *call, const kn_error_t *err)
{
    kn_client_t *c = call->c;
    if (call->attempt >= call->max_attempts || c->stop_started) {
        fail(call, err);
        return;
    }
    long delay = kn__aws_backoff_ms(call->attempt - 1, (long)kn__conf_int(c->conf, KN_P_RETRY_BASE_MS),
                                    (long)kn__conf_int(c->conf, KN_P_RETRY_MAX_BACKOFF_MS));
    KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_AWS, "%s attempt %d failed (%s); retrying in %ld ms", call->op,
           call->attempt, err->message, delay);
    if (!call->timer_init) {
        uv_timer_init(&c->loop, &call->timer);
        call->timer.data = call;
        call->timer_init = 1;
    }
    uv_timer_start(&call->timer, on_retry_timer, (uint64_t)delay, 0);
}

static void on_http_done(kn__http_resp_t *resp, void *opaque)
{
    call_t *call = opaque;
    kn_client_t *c = call->c;
    call->in_http = 0;
    kn__aws_result_free(&call->res);
    memset(&call->res, 0, sizeof(call->res));
    call->res.http_status = resp->status;
    snprintf(call->res.request_id, sizeof(call->res.request_id), "%s", resp->request_id);
    KN_LOG(c->log, KN_LOG_TRACE, KN_DBG_AWS, "%s attempt %d: HTTP %ld, %zu bytes, %.1f ms, request id %s",
           call->op, call->attempt, resp->status, resp->body.len, resp->total_s * 1000.0,
           *resp->request_id ? resp->request_id : "-");

    if (resp->err.code != KN_ERR_OK) {
        kn_error_t e;
        kn__error_copy(&e, &resp->err);
        if (e.code == KN_ERR_TRANSPORT || e.code == KN_ERR_TIMEOUT) {
            e.retriable = true;
            e.cls = KN__EC_RETRY;
            retry_or_fail(call, &e);
        } else {
            fail(call, &e);
        }
        return;
    }

    if (resp->status >= 200 && resp->status < 300) {
        call->res.body = resp->body;
        memset(&resp->body, 0, sizeof(resp->body));
        if (call->raw_body) {
            finish(call); /* the caller parses it, off this thread */
            return;
        }
        const char *b = call->res.body.data ? call->res.body.data : "";
        size_t n = call->res.body.len;
        size_t i = 0;
        while (i < n && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t'))
            i++;
        if (i == n) {
            call->res.json = json_object_new_object(); /* CreateStream and friends answer empty */
        } else {
            json_tokener *tok = json_tokener_new();
            call->res.json = tok ? json_tokener_parse_ex(tok, b, (int)n) : NULL;
            if (call->res.json && json_tokener_get_error(tok) != json_tokener_success) {
                json_object_put(call->res.json);
                call->res.json = NULL;
            }
            json_tokener_free(tok);
        }
        if (!call->res.json || !json_object_is_type(call->res.json, json_type_object)) {
            json_object_put(call->res.json);
            call->res.json = NULL;
            kn_error_t e;
            kn__error_clear(&e);
            e.http_status = (int)resp->status;
            kn__error_set(&e, KN_ERR_BAD_RESPONSE, "HTTP %ld with a body that is not a JSON object (%zu bytes)",
                          resp->status, n);
            fail(call, &e);
            return;
        }
        finish(call);
        return;
    }

    kn_error_t e;
    kn__error_clear(&e);
    kn__aws_parse_error(resp->status, resp->error_type, resp->body.data, resp->body.len, resp->request_id, &e);
    switch (e.cls) {
    case KN__EC_RETRY:
        retry_or_fail(call, &e);
        return;
    case KN__EC_REFRESH_RETRY:
        if (!call->refresh_retried && !c->stop_started) {
            call->refresh_retried = 1;
            KN_LOG(c->log, KN_LOG_INFO, KN_DBG_CREDS, "%s: %s; refreshing credentials", call->op, e.message);
            call->waiting_creds = 1;
            start_refresh(c);
            if (!c->creds_refreshing) {
                call->waiting_creds = 0;
                fail(call, &e);
            }
            return;
        }
        break;
    case KN__EC_SKEW_CHECK: {
        time_t server = kn__http_date_parse(resp->date);
        time_t local = time(NULL);
        int64_t skew = server == (time_t)-1 ? 0 : (int64_t)(server - local);
        int64_t current = __atomic_load_n(&c->clock_skew_s, __ATOMIC_RELAXED);
        if (server != (time_t)-1 && !call->skew_retried && llabs(skew - current) > SKEW_THRESHOLD_S) {
            call->skew_retried = 1;
            __atomic_store_n(&c->clock_skew_s, skew, __ATOMIC_RELAXED);
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_AWS,
                   "%s: %s; the server's clock differs from ours by %lld s: correcting and retrying",
                   call->op, e.aws_type, (long long)skew);
            attempt_send(call);
            return;
        }
        break;
    }
    default:
        break;
    }
    fail(call, &e);
}

/*
 * Appends "name: value" to the call's header store; offs[*nh] gets its
 * offset (pointers are made once the store stops growing).
 */
static int add_header(call_t *call, size_t offs[], int *nh, const char *name, const char *value)
{
    if (*nh >= 11)
        return -1;
    offs[(*nh)++] = call->hdr_store.len;
    size_t a = strlen(name), b = strlen(value);
    return kn__buf_append(&call->hdr_store, name, a) || kn__buf_append(&call->hdr_store, ": ", 2) ||
           kn__buf_append(&call->hdr_store, value, b) || kn__buf_append(&call->hdr_store, "", 1);
}

static void attempt_send(call_t *call)
{
    kn_client_t *c = call->c;
    kn_error_t e;
    kn__error_clear(&e);
    if (c->stop_started) {
        fail_code(call, KN_ERR_DESTROYED, "client destroyed before the request was sent");
        return;
    }
    kn__creds_t cr = {0};
    kn__creds_state_t st = kn__creds_cache_peek(c->creds, &cr);
    if (st == KN__CREDS_NONE) {
        call->waiting_creds = 1;
        start_refresh(c);
        if (!c->creds_refreshing) {
            call->waiting_creds = 0;
            fail_code(call, KN_ERR_CREDENTIALS, "cannot start resolving credentials");
        }
        return;
    }
    /* Inside the refresh window: refresh in the background, spaced out (the timer does the rest). */
    if (st == KN__CREDS_REFRESH_DUE && kn__creds_cache_refresh_wanted(c->creds))
        start_refresh(c);

    /* The JSON protocols name the operation in X-Amz-Target; the query protocol in the body. */
    bool query = !call->target[0];
    kn__hdr_t sh[3] = {
        {"Host", c->host[call->svc]},
        {"Content-Type", kn__service_content_type(call->svc)},
        {"X-Amz-Target", call->target},
    };
    kn__sigv4_req_t sreq = {
        .method = "POST",
        .path = c->path[call->svc],
        .query = NULL,
        .headers = sh,
        .n_headers = query ? 2 : 3,
        .body = call->body.data,
        .body_len = call->body.len,
        .payload_sha256_hex = call->payload_hash,
        .region = c->region,
        .service = kn__service_signing_name(call->svc),
        .now = kn__client_now(c),
        .normalize_path = true,
    };
    if (c->plain_remote[call->svc] && cr.session_token && *cr.session_token &&
        !atomic_exchange(&c->token_warned[call->svc], true))
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_AWS,
               "a session token goes to %s over plain http://: anyone on the path can read it and "
               "use it until it expires; use an https:// endpoint",
               c->host[call->svc]);
    kn__sigv4_creds_t sc = {cr.access_key_id, cr.secret_access_key, cr.session_token};
    kn__sigv4_out_t out;
    kn_err_t rc = kn__sigv4_sign(c->sigv4, &sc, &sreq, &out, NULL, NULL, &e);
    size_t offs[12];
    int nh = 0;
    kn__buf_reset(&call->hdr_store);
    if (rc == KN_ERR_OK) {
        int bad = add_header(call, offs, &nh, "Host", c->host[call->svc]) ||
                  add_header(call, offs, &nh, "Content-Type", kn__service_content_type(call->svc)) ||
                  (!query && add_header(call, offs, &nh, "X-Amz-Target", call->target)) ||
                  add_header(call, offs, &nh, "X-Amz-Date", out.amz_date) ||
                  (out.add_token_header && add_header(call, offs, &nh, "X-Amz-Security-Token", cr.session_token)) ||
                  add_header(call, offs, &nh, "Authorization", out.authorization) ||
                  add_header(call, offs, &nh, "User-Agent", "libkinesis/" KN_VERSION_STR) ||
                  add_header(call, offs, &nh, "Accept", query ? "text/xml" : "application/json");
        if (bad)
            rc = kn__error_set(&e, KN_ERR_NOMEM, "out of memory building the request headers");
    }
    kn__creds_free(&cr);
    if (rc != KN_ERR_OK) {
        fail(call, &e);
        return;
    }
    for (int i = 0; i < nh; i++)
        call->hdrs[i] = call->hdr_store.data + offs[i];
    call->hdrs[nh] = NULL;
    call->attempt++;
    kn__http_req_t hreq = {
        .method = "POST",
        .url = c->url[call->svc],
        .headers = call->hdrs,
        .body = call->body.data,
        .body_len = call->body.len,
        .timeout_ms = call->timeout_ms,
        .cb = on_http_done,
        .opaque = call,
    };
    KN_LOG(c->log, KN_LOG_TRACE, KN_DBG_AWS, "%s attempt %d: POST %s, %zu bytes", call->op, call->attempt,
           c->url[call->svc], call->body.len);
    if (kn__http_send(c->http, &hreq, &e) != KN_ERR_OK) {
        fail(call, &e);
        return;
    }
    call->in_http = 1;
}

static void start_task(kn_client_t *c, void *arg)
{
    call_t *call = arg;
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    attempt_send(call);
}

kn_err_t kn__aws_call(kn_client_t *c, kn__aws_req_t *req, kn_error_t *err)
{
    /*
     * A service without a target prefix speaks the query protocol (CloudWatch's
     * PutMetricData): the body is a form that names the action itself, and a
     * 2xx answer is XML, handed over unparsed.
     */
    bool query = (unsigned)req->service < KN__SVC__COUNT && !kn__service_target_prefix(req->service) &&
                 strcmp(kn__service_content_type(req->service), "application/x-www-form-urlencoded") == 0;
    const char *prefix = (unsigned)req->service < KN__SVC__COUNT ? kn__service_target_prefix(req->service) : NULL;
    if ((!prefix && !query) || !req->operation || !req->cb) {
        kn__buf_free(&req->body);
        return kn__error_set(err, KN_ERR_INVALID_ARG, "aws call: bad service, operation or callback");
    }
    call_t *call = calloc(1, sizeof(*call));
    if (!call) {
        kn__buf_free(&req->body);
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    }
    call->c = c;
    call->svc = req->service;
    snprintf(call->op, sizeof(call->op), "%s", req->operation);
    if (query)
        call->target[0] = '\0';
    else
        snprintf(call->target, sizeof(call->target), "%s.%s", prefix, req->operation);
    call->body = req->body;
    memset(&req->body, 0, sizeof(req->body));
    call->max_attempts = req->max_attempts > 0 ? req->max_attempts : (int)kn__conf_int(c->conf, KN_P_RETRY_MAX_ATTEMPTS);
    call->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : (long)kn__conf_int(c->conf, KN_P_REQUEST_TIMEOUT_MS);
    call->cb = req->cb;
    call->opaque = req->opaque;
    call->raw_body = req->raw_body || query;
    /*
     * The payload hash once per call, here on the calling thread (or given by
     * a caller that hashed on its own worker): every attempt re-signs with a
     * new date, never re-reads the body, and the loop never hashes megabytes.
     */
    if (req->payload_sha256_hex && strlen(req->payload_sha256_hex) == 64)
        memcpy(call->payload_hash, req->payload_sha256_hex, 65);
    else
        kn__sha256_hex(call->body.data ? call->body.data : "", call->body.len, call->payload_hash);
    kn_err_t rc = kn__client_post(c, start_task, call);
    if (rc != KN_ERR_OK) {
        kn__buf_free(&call->body);
        free(call);
        return kn__error_set(err, rc, "%s: the client is being destroyed", req->operation);
    }
    return KN_ERR_OK;
}

void kn__aws_shutdown(kn_client_t *c)
{
    uv_timer_stop(&c->creds_timer);
    call_t *call = c->calls;
    while (call) {
        call_t *next = call->next;
        /* Calls inside HTTP are failed by kn__http_close; the rest end here. */
        if (call->in_http != 1) {
            if (call->timer_init)
                uv_timer_stop(&call->timer);
            call->waiting_creds = 0;
            fail_code(call, KN_ERR_DESTROYED, "client destroyed before the request completed");
        }
        call = next;
    }
}

/* ------------------------------------------------------------- blocking */

typedef struct sync_wait_s {
    pthread_mutex_t m;
    pthread_cond_t cv;
    int done;
    json_object *json;
    kn_error_t err;
} sync_wait_t;

static void sync_cb(kn__aws_result_t *res, void *opaque)
{
    sync_wait_t *w = opaque;
    pthread_mutex_lock(&w->m);
    kn__error_copy(&w->err, &res->err);
    w->json = res->json;
    res->json = NULL;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->m);
}

kn_err_t kn__aws_call_sync(kn_client_t *c, kn__service_t svc, const char *operation, const char *body,
                           size_t body_len, json_object **out, kn_error_t *err)
{
    if (out)
        *out = NULL;
    if (kn__client_on_loop(c))
        return kn__error_set(err, KN_ERR_STATE, "%s: a blocking call cannot run on the client's I/O thread",
                             operation);
    sync_wait_t w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_init(&w.m, NULL);
    pthread_cond_init(&w.cv, NULL);
    kn__aws_req_t req = {.service = svc, .operation = operation, .cb = sync_cb, .opaque = &w};
    kn_err_t rc;
    if (kn__buf_append(&req.body, body ? body : "{}", body ? body_len : 2) != 0) {
        kn__buf_free(&req.body);
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        goto out;
    }
    rc = kn__aws_call(c, &req, err);
    if (rc != KN_ERR_OK)
        goto out;
    pthread_mutex_lock(&w.m);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.m);
    pthread_mutex_unlock(&w.m);
    rc = w.err.code;
    if (rc != KN_ERR_OK) {
        kn__error_copy(err, &w.err);
        json_object_put(w.json);
    } else if (out) {
        *out = w.json;
    } else {
        json_object_put(w.json);
    }
out:
    pthread_mutex_destroy(&w.m);
    pthread_cond_destroy(&w.cv);
    return rc;
}
