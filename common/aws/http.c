/*
 * Asynchronous HTTP: libcurl's multi interface driven by a libuv loop.
 *
 * curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to
 * wake it up (CURLMOPT_TIMERFUNCTION); we keep one uv_poll_t per socket and
 * one uv_timer_t, and feed readiness back with curl_multi_socket_action.
 * Finished transfers are collected with curl_multi_info_read.
 *
 * Invariants:
 * - A completion callback is never called from inside a curl callback or
 *   from inside kn__http_send: only from our uv callbacks (poll, timer,
 *   deferred-failure timer) or from kn__http_close.
 * - Every accepted transfer is in exactly one list (waiting, active or
 *   failed) until its callback has run, so each callback runs exactly once.
 * - At most max_connections transfers are in curl at once (active); the
 *   rest wait in order. A waiting transfer's timeout is looked at when a
 *   connection frees, so if every connection hangs without a timeout of its
 *   own, the waiting ones wait too (the request layer always sets one).
 * - Connections live in the multi handle's cache, not in the easy handles,
 *   so recycled easy handles and new ones reuse the same connections.
 *
 * Threads: loop thread only.
 */
#include "http.h"
#include "curl_err.h"

#include <ctype.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define EASY_POOL_MAX 8
#define HEADER_LOG_MAX 4096

/* Most bytes reserved for a response body from its Content-Length before they arrive. */
#define PRERESERVE_MAX ((size_t)4 << 20)

typedef struct sock_s sock_t;
typedef struct xfer_s xfer_t;

/* One watched socket. Lives from curl's first mention until its uv_close completes. */
struct sock_s {
    uv_poll_t poll;
    kn__http_t *h;
    curl_socket_t fd;
    int events;             /* what curl asked for, as UV_READABLE/UV_WRITABLE */
    bool closing;
    sock_t *prev, *next;
};

struct xfer_s {
    kn__http_t *h;
    xfer_t *prev, *next;
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    char method[16];
    long timeout_ms;
    kn__http_cb_t *cb;
    void *opaque;
    uint64_t start_ns;
    bool too_large;
    bool oom;
    kn__http_resp_t resp;
    char errbuf[CURL_ERROR_SIZE];
};

struct kn__http_s {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;       /* curl's timeout */
    uv_timer_t defer;       /* delivers failures found inside kn__http_send */
    kn__http_opts_t opts;
    char *ca_bundle;
    xfer_t *active;         /* added to the multi handle */
    size_t n_active;
    /*
     * Set up, waiting for one of max_connections (in order). curl would queue
     * them itself, but it walks its whole queue each time a transfer ends:
     * with hundreds of calls waiting (a reader of 1,000 shards, a consumer's
     * renewals) that walk was the largest single cost of the I/O thread.
     */
    xfer_t *waiting, *waiting_tail;
    xfer_t *failed;         /* waiting for the defer timer */
    sock_t *socks;
    size_t n_inflight;
    CURL *pool[EASY_POOL_MAX];
    size_t n_pool;
    int open_handles;       /* uv handles not yet closed */
    bool closing;
    void (*done)(void *opaque);
    void *done_opaque;
};

/* ---- global init ---- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static CURLcode g_init_rc = CURLE_FAILED_INIT;

static void global_init_once(void) { g_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

kn_err_t kn__http_global_init(kn_error_t *err)
{
    pthread_once(&g_once, global_init_once);
    if (g_init_rc != CURLE_OK)
        return kn__error_set(err, KN_ERR_TRANSPORT, "curl_global_init failed: %s",
                             curl_easy_strerror(g_init_rc));
    return KN_ERR_OK;
}

void kn__http_opts_default(kn__http_opts_t *opts)
{
    memset(opts, 0, sizeof(*opts));
    opts->max_connections = KN__HTTP_DEFAULT_MAX_CONNECTIONS;
    opts->connect_timeout_ms = KN__HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    opts->tls_verify = true;
    opts->max_response_bytes = KN__HTTP_DEFAULT_MAX_RESPONSE_BYTES;
}

/* ---- small helpers ---- */

static void list_push(xfer_t **head, xfer_t *x)
{
    x->prev = NULL;
    x->next = *head;
    if (*head)
        (*head)->prev = x;
    *head = x;
}

static void list_unlink(xfer_t **head, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        *head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

/* "host[:port]" of a URL, without any user info (never put credentials in messages). */
static void url_host(const char *url, char *out, size_t size)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n = strcspn(p, "/?#");
    const char *at = memchr(p, '@', n);
    if (at) {
        n -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    snprintf(out, size, "%.*s", (int)n, p);
}

/* Copies a header value, trimmed, into a fixed field. */
static void copy_value(char *dst, size_t size, const char *v, size_t n)
{
    while (n && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= size)
        n = size - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static bool header_is(const char *line, size_t len, const char *name, const char **value, size_t *vlen)
{
    size_t nl = strlen(name);
    if (len <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return false;
    *value = line + nl + 1;
    *vlen = len - nl - 1;
    return true;
}

/* ---- curl callbacks (no user callbacks may run in here) ---- */

static size_t on_header(char *line, size_t size, size_t nitems, void *userp)
{
    xfer_t *x = userp;
    size_t len = size * nitems;
    const char *v;
    size_t vn;
    /* A new status line starts a new header block (1xx, proxies): forget the old one. */
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        x->resp.date[0] = x->resp.request_id[0] = x->resp.error_type[0] = '\0';
        x->resp.content_type[0] = '\0';
        return len;
    }
    if (header_is(line, len, "Date", &v, &vn)) {
        copy_value(x->resp.date, sizeof(x->resp.date), v, vn);
    } else if (header_is(line, len, "x-amzn-RequestId", &v, &vn)) {
        copy_value(x->resp.request_id, sizeof(x->resp.request_id), v, vn);
    } else if (header_is(line, len, "x-amz-request-id", &v, &vn)) {
        if (!x->resp.request_id[0])
            copy_value(x->resp.request_id, sizeof(x->resp.request_id), v, vn);
    } else if (header_is(line, len, "x-amzn-ErrorType", &v, &vn)) {
        copy_value(x->resp.error_type, sizeof(x->resp.error_type), v, vn);
    } else if (header_is(line, len, "Content-Type", &v, &vn)) {
        copy_value(x->resp.content_type, sizeof(x->resp.content_type), v, vn);
    } else if (header_is(line, len, "Content-Length", &v, &vn)) {
        char num[32];
        copy_value(num, sizeof(num), v, vn);
        char *end;
        unsigned long long cl = strtoull(num, &end, 10);
        if (end != num && *end == '\0') {
            if (cl > x->h->opts.max_response_bytes) {
                x->too_large = true;
                return 0; /* aborts the transfer */
            }
            /*
             * Size the body from the announced length, but never reserve more
             * than PRERESERVE_MAX before the bytes arrive: a server (or
             * something in between) that announces 64 MiB and sends nothing
             * costs no more than that. Beyond it the body grows as it comes.
             */
            size_t want = cl < PRERESERVE_MAX ? (size_t)cl : PRERESERVE_MAX;
            if (want > x->resp.body.len)
                (void)kn__buf_reserve_exact(&x->resp.body, want - x->resp.body.len);
        }
    }
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp)
{
    xfer_t *x = userp;
    size_t n = size * nmemb;
    if (n > x->h->opts.max_response_bytes - x->resp.body.len) {
        x->too_large = true;
        return 0;
    }
    if (kn__buf_append(&x->resp.body, data, n) != 0) {
        x->oom = true;
        return 0;
    }
    return n;
}

static void on_sock_closed(uv_handle_t *handle);

static void sock_close(sock_t *s)
{
    if (s->closing)
        return;
    s->closing = true;
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void check_multi_info(kn__http_t *h);

static void on_poll(uv_poll_t *poll, int status, int events)
{
    sock_t *s = poll->data;
    kn__http_t *h = s->h;
    int flags = 0;
    if (status < 0) {
        /*
         * libuv reports POLLERR (a reset, say) as an error and stops the
         * watcher. Let curl read and write so that it sees the real socket
         * error itself: on a reused connection that means a quiet retry on
         * a fresh one instead of a failed transfer.
         */
        flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running = 0;
    /* s may be closed (not freed) by curl's socket callback in here. */
    curl_multi_socket_action(h->multi, s->fd, flags, &running);
    if (status < 0 && !s->closing && !h->closing && s->events)
        uv_poll_start(&s->poll, s->events, on_poll);
    check_multi_info(h);
}

static void on_timer(uv_timer_t *t)
{
    kn__http_t *h = t->data;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi_info(h);
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    kn__http_t *h = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&h->timer);
    else if (!h->closing)
        /* Even 0 goes through the loop: curl forbids socket_action from its callbacks. */
        uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static sock_t *sock_new(kn__http_t *h, curl_socket_t fd)
{
    /*
     * A live watcher on the same fd number means curl closed that socket
     * without telling us and the number came back for a new one. Its epoll
     * registration is gone with the old file; retire the watcher first, or
     * libuv would refuse (or silently ignore) the new one.
     */
    for (sock_t *o = h->socks; o; o = o->next) {
        if (!o->closing && o->fd == fd)
            sock_close(o);
    }
    sock_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (uv_poll_init_socket(h->loop, &s->poll, fd) != 0) {
        free(s);
        return NULL;
    }
    s->h = h;
    s->fd = fd;
    s->poll.data = s;
    s->next = h->socks;
    if (h->socks)
        h->socks->prev = s;
    h->socks = s;
    h->open_handles++;
    KN_LOG(h->opts.log, KN_LOG_TRACE, KN_DBG_HTTP, "watching socket %d", (int)fd);
    return s;
}

static int curl_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    kn__http_t *h = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            KN_LOG(h->opts.log, KN_LOG_TRACE, KN_DBG_HTTP, "unwatching socket %d", (int)fd);
            sock_close(s);
            curl_multi_assign(h->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = sock_new(h, fd);
        if (!s)
            return -1; /* curl fails the transfer */
        curl_multi_assign(h->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    s->events = events;
    if (uv_poll_start(&s->poll, events, on_poll) != 0)
        return -1;
    return 0;
}

/* ---- completion ---- */

static void map_curl_error(xfer_t *x, CURLcode rc)
{
    char host[256];
    url_host(x->url, host, sizeof(host));
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    kn_error_t *e = &x->resp.err;
    if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        kn__error_set(e, KN_ERR_TOO_LARGE, "HTTP %s to %s: response body exceeds the limit of %zu bytes",
                      x->method, host, x->h->opts.max_response_bytes);
        e->cls = KN__EC_FAIL;
        return;
    }
    if (x->oom || rc == CURLE_OUT_OF_MEMORY) {
        kn__error_set(e, KN_ERR_NOMEM, "HTTP %s to %s: out of memory", x->method, host);
        e->cls = KN__EC_FAIL;
        return;
    }
    switch (kn__curl_err(rc)) {
    case KN_ERR_INVALID_ARG:
        kn__error_set(e, KN_ERR_INVALID_ARG, "HTTP %s: malformed URL: %s", x->method, why);
        e->cls = KN__EC_FAIL;
        break;
    case KN_ERR_TIMEOUT:
        kn__error_set(e, KN_ERR_TIMEOUT, "HTTP %s to %s timed out: %s", x->method, host, why);
        e->retriable = true;
        e->cls = KN__EC_RETRY;
        break;
    case KN_ERR_TLS:
        kn__error_set(e, KN_ERR_TLS, "HTTPS %s to %s: TLS failure: %s", x->method, host, why);
        e->cls = KN__EC_FAIL;
        break;
    default:
        kn__error_set(e, KN_ERR_TRANSPORT, "HTTP %s to %s failed: %s", x->method, host, why);
        e->retriable = true;
        e->cls = KN__EC_RETRY;
        break;
    }
}

static void easy_release(kn__http_t *h, CURL *easy)
{
    if (!easy)
        return;
    if (!h->closing && h->n_pool < EASY_POOL_MAX)
        h->pool[h->n_pool++] = easy;
    else
        curl_easy_cleanup(easy);
}

static void xfer_free(xfer_t *x)
{
    curl_slist_free_all(x->hdrs);
    kn__buf_free(&x->resp.body);
    free(x->url);
    free(x);
}

/* Runs the user callback once and frees the transfer. x is already off every list. */
/*
 * A URL as logs show it: without its query string, which can carry
 * credentials (presigned requests, SSO role names and tokens); "?..." says
 * there was one.
 */
static const char *url_for_log(const char *url, char *out, size_t size)
{
    const char *q = strchr(url, '?');
    if (!q)
        return url;
    snprintf(out, size, "%.*s?...", (int)(q - url < 1000 ? q - url : 1000), url);
    return out;
}

static void xfer_deliver(kn__http_t *h, xfer_t *x)
{
    h->n_inflight--;
    x->resp.total_s = (double)(uv_hrtime() - x->start_ns) / 1e9;
    char ubuf[1100];
    if (x->resp.err.code == KN_ERR_OK) {
        KN_LOG(h->opts.log, KN_LOG_TRACE, KN_DBG_HTTP, "< %s %s -> %ld in %.1f ms (%zu bytes, request id %s)",
               x->method, url_for_log(x->url, ubuf, sizeof(ubuf)), x->resp.status, x->resp.total_s * 1e3,
               x->resp.body.len, x->resp.request_id[0] ? x->resp.request_id : "-");
    } else {
        KN_LOG(h->opts.log, KN_LOG_DEBUG, KN_DBG_HTTP, "< %s %s -> %s after %.1f ms: %s", x->method,
               url_for_log(x->url, ubuf, sizeof(ubuf)), kn_err2name(x->resp.err.code),
               x->resp.total_s * 1e3, x->resp.err.message);
    }
    x->cb(&x->resp, x->opaque);
    xfer_free(x);
}

static void xfer_finish(kn__http_t *h, xfer_t *x, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    x->resp.status = status;
    if (rc == CURLE_OK && !x->too_large && !x->oom) {
        kn__error_clear(&x->resp.err);
    } else {
        map_curl_error(x, rc);
        kn__buf_free(&x->resp.body); /* a partial body is of no use */
    }
    x->resp.err.http_status = (int)status;
    snprintf(x->resp.err.request_id, sizeof(x->resp.err.request_id), "%s", x->resp.request_id);
    list_unlink(&h->active, x);
    easy_release(h, x->easy);
    x->easy = NULL;
    xfer_deliver(h, x);
}

static void on_defer(uv_timer_t *t);

/* x failed before curl had it (its error set): its callback runs from the defer timer. */
static void fail_later(kn__http_t *h, xfer_t *x)
{
    easy_release(h, x->easy);
    x->easy = NULL;
    list_push(&h->failed, x);
    uv_timer_start(&h->defer, on_defer, 0, 0);
}

/* Hands the waiting transfers to curl, oldest first, while fewer than max_connections run. */
static void start_waiting(kn__http_t *h)
{
    while (!h->closing && h->waiting && h->n_active < (size_t)h->opts.max_connections) {
        xfer_t *x = h->waiting;
        h->waiting = x->next;
        if (!h->waiting)
            h->waiting_tail = NULL;
        x->next = NULL;
        if (x->timeout_ms > 0) {
            /* The request's timeout counts from kn__http_send: what is left of it, or it failed waiting. */
            long waited = (long)((uv_hrtime() - x->start_ns) / 1000000);
            long left = x->timeout_ms - waited;
            if (left <= 0) {
                char host[256];
                url_host(x->url, host, sizeof(host));
                kn__error_set(&x->resp.err, KN_ERR_TIMEOUT,
                              "HTTP %s to %s timed out: %ld ms waiting for one of %ld connections", x->method,
                              host, waited, h->opts.max_connections);
                x->resp.err.retriable = true;
                x->resp.err.cls = KN__EC_RETRY;
                fail_later(h, x);
                continue;
            }
            curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, left);
        }
        CURLMcode mrc = curl_multi_add_handle(h->multi, x->easy);
        if (mrc != CURLM_OK) {
            char host[256];
            url_host(x->url, host, sizeof(host));
            kn__error_set(&x->resp.err, mrc == CURLM_OUT_OF_MEMORY ? KN_ERR_NOMEM : KN_ERR_TRANSPORT,
                          "HTTP %s to %s could not start: %s", x->method, host, curl_multi_strerror(mrc));
            fail_later(h, x);
            continue;
        }
        h->n_active++;
        list_push(&h->active, x);
    }
}

static void check_multi_info(kn__http_t *h)
{
    CURLMsg *msg;
    int left;
    while (!h->closing && (msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        curl_multi_remove_handle(h->multi, easy);
        h->n_active--;
        start_waiting(h); /* the freed place goes to the oldest waiting, not to the callback's */
        /* The callback may send more requests or even close the client. */
        xfer_finish(h, x, rc);
    }
}

static void on_defer(uv_timer_t *t)
{
    kn__http_t *h = t->data;
    while (!h->closing && h->failed) {
        xfer_t *x = h->failed;
        list_unlink(&h->failed, x);
        xfer_deliver(h, x);
    }
}

/* ---- public ---- */

kn__http_t *kn__http_new(uv_loop_t *loop, const kn__http_opts_t *opts, kn_error_t *err)
{
    kn__http_t *h = NULL;
    if (kn__http_global_init(err) != KN_ERR_OK)
        goto fail;
    h = calloc(1, sizeof(*h));
    if (!h) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory creating the HTTP client");
        goto fail;
    }
    h->loop = loop;
    if (opts)
        h->opts = *opts;
    else
        kn__http_opts_default(&h->opts);
    if (h->opts.max_connections <= 0)
        h->opts.max_connections = KN__HTTP_DEFAULT_MAX_CONNECTIONS;
    if (h->opts.connect_timeout_ms <= 0)
        h->opts.connect_timeout_ms = KN__HTTP_DEFAULT_CONNECT_TIMEOUT_MS;
    if (h->opts.max_response_bytes == 0)
        h->opts.max_response_bytes = KN__HTTP_DEFAULT_MAX_RESPONSE_BYTES;
    if (h->opts.ca_bundle && h->opts.ca_bundle[0]) {
        h->ca_bundle = strdup(h->opts.ca_bundle);
        if (!h->ca_bundle) {
            kn__error_set(err, KN_ERR_NOMEM, "out of memory creating the HTTP client");
            goto fail;
        }
    }
    h->opts.ca_bundle = h->ca_bundle;
    h->multi = curl_multi_init();
    if (!h->multi) {
        kn__error_set(err, KN_ERR_NOMEM, "curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, h->opts.max_connections);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, h->opts.max_connections);
    /* Keep as many idle connections as we may open, no more. */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, h->opts.max_connections);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->defer);
    h->defer.data = h;
    h->open_handles = 2;
    return h;
fail:
    if (h) {
        free(h->ca_bundle);
        free(h);
    }
    return NULL;
}

size_t kn__http_inflight(const kn__http_t *h) { return h ? h->n_inflight : 0; }

static CURL *easy_get(kn__http_t *h)
{
    if (h->n_pool) {
        CURL *e = h->pool[--h->n_pool];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}


static void log_request(kn__http_t *h, const xfer_t *x, const kn__http_req_t *req)
{
    if (!kn__log_enabled(h->opts.log, KN_LOG_TRACE, KN_DBG_HTTP))
        return;
    char all[HEADER_LOG_MAX] = "";
    size_t used = 0;
    for (const char *const *p = req->headers; p && *p && used + 1 < sizeof(all); p++) {
        char one[1024];
        kn__log_redact_headers(one, sizeof(one), *p);
        /* One header per line: the redaction stops at line ends. */
        int n = snprintf(all + used, sizeof(all) - used, "\n  %s", one);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    char ubuf[1100];
    KN_LOG(h->opts.log, KN_LOG_TRACE, KN_DBG_HTTP, "> %s %s (%zu body bytes)%s", x->method,
           url_for_log(x->url, ubuf, sizeof(ubuf)), req->body_len, all);
}

/* Sets every per-request option; the first refusal from curl is returned. */
static CURLcode easy_setup(kn__http_t *h, xfer_t *x, const kn__http_req_t *req)
{
    CURL *e = x->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                                   \
    do {                                                                                                \
        if ((rc = curl_easy_setopt(e, opt, val)) != CURLE_OK)                                           \
            return rc;                                                                                  \
    } while (0)
    SET(CURLOPT_ERRORBUFFER, x->errbuf);
    SET(CURLOPT_PRIVATE, x);
    SET(CURLOPT_URL, x->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    SET(CURLOPT_TCP_KEEPIDLE, 30L);
    SET(CURLOPT_TCP_KEEPINTVL, 15L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    /*
     * HTTP/1.1 on purpose: the request/response operations need nothing
     * more, and the connection bound then means concurrent requests.
     */
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SET(CURLOPT_CONNECTTIMEOUT_MS, h->opts.connect_timeout_ms);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
    SET(CURLOPT_SSL_VERIFYPEER, h->opts.tls_verify ? 1L : 0L);
    SET(CURLOPT_SSL_VERIFYHOST, h->opts.tls_verify ? 2L : 0L);
    if (h->ca_bundle)
        SET(CURLOPT_CAINFO, h->ca_bundle);
    SET(CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->opts.max_response_bytes);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, x);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, x);
    /* Proxies: libcurl reads http_proxy/HTTPS_PROXY/NO_PROXY itself when CURLOPT_PROXY is unset. */
    if (strcmp(x->method, "GET") == 0 && req->body_len == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(x->method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else {
        /* POSTFIELDS sends a Content-Length body for any method, even an empty one. */
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_POSTFIELDS, req->body_len ? req->body : "");
        if (strcmp(x->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, x->method);
    }
    SET(CURLOPT_HTTPHEADER, x->hdrs);
#undef SET
    return rc;
}

kn_err_t kn__http_send(kn__http_t *h, const kn__http_req_t *req, kn_error_t *err)
{
    kn_err_t ret = KN_ERR_OK;
    xfer_t *x = NULL;
    if (!h || !req || !req->url || !req->cb || !req->method || !req->method[0] ||
        strlen(req->method) >= sizeof(x->method) || (req->body_len && !req->body)) {
        ret = kn__error_set(err, KN_ERR_INVALID_ARG, "HTTP request: missing or invalid method, URL, body or callback");
        goto out;
    }
    if (strncasecmp(req->url, "http://", 7) != 0 && strncasecmp(req->url, "https://", 8) != 0) {
        ret = kn__error_set(err, KN_ERR_INVALID_ARG, "HTTP request: URL must start with http:// or https://");
        goto out;
    }
    if (h->closing) {
        ret = kn__error_set(err, KN_ERR_DESTROYED, "HTTP client is closing");
        goto out;
    }
    x = calloc(1, sizeof(*x));
    if (!x || !(x->url = strdup(req->url)))
        goto nomem;
    x->h = h;
    snprintf(x->method, sizeof(x->method), "%s", req->method);
    x->timeout_ms = req->timeout_ms;
    x->cb = req->cb;
    x->opaque = req->opaque;
    bool has_ctype = false;
    for (const char *const *p = req->headers; p && *p; p++) {
        if (strncasecmp(*p, "Content-Type:", 13) == 0)
            has_ctype = true;
        struct curl_slist *n = curl_slist_append(x->hdrs, *p);
        if (!n)
            goto nomem;
        x->hdrs = n;
    }
    /* No "Expect: 100-continue" round trip, and no form content type we did not ask for. */
    struct curl_slist *n = curl_slist_append(x->hdrs, "Expect:");
    if (!n)
        goto nomem;
    x->hdrs = n;
    if (!has_ctype) {
        if (!(n = curl_slist_append(x->hdrs, "Content-Type:")))
            goto nomem;
        x->hdrs = n;
    }
    x->easy = easy_get(h);
    if (!x->easy)
        goto nomem;
    x->start_ns = uv_hrtime();
    log_request(h, x, req);

    /* From here on the request is accepted: any failure goes to the callback, later. */
    h->n_inflight++;
    CURLcode rc = easy_setup(h, x, req);
    CURLMcode mrc = CURLM_OK;
    if (rc == CURLE_OK && (h->waiting || h->n_active >= (size_t)h->opts.max_connections)) {
        /* Every connection is busy: it waits its turn (start_waiting; a list by next alone). */
        x->next = NULL;
        if (h->waiting_tail)
            h->waiting_tail->next = x;
        else
            h->waiting = x;
        h->waiting_tail = x;
        goto out;
    }
    if (rc == CURLE_OK)
        mrc = curl_multi_add_handle(h->multi, x->easy);
    if (rc != CURLE_OK || mrc != CURLM_OK) {
        char host[256];
        url_host(x->url, host, sizeof(host));
        kn__error_set(&x->resp.err, rc == CURLE_OUT_OF_MEMORY || mrc == CURLM_OUT_OF_MEMORY ? KN_ERR_NOMEM
                                                                                            : KN_ERR_TRANSPORT,
                      "HTTP %s to %s could not start: %s", x->method, host,
                      rc != CURLE_OK ? curl_easy_strerror(rc) : curl_multi_strerror(mrc));
        fail_later(h, x);
        goto out;
    }
    h->n_active++;
    list_push(&h->active, x);
    goto out;
nomem:
    ret = kn__error_set(err, KN_ERR_NOMEM, "out of memory starting an HTTP request");
    if (x) {
        if (x->easy)
            easy_release(h, x->easy);
        xfer_free(x);
    }
out:
    return ret;
}

static void on_handle_closed(uv_handle_t *handle);

static void finalize(kn__http_t *h)
{
    void (*done)(void *) = h->done;
    void *opaque = h->done_opaque;
    free(h->ca_bundle);
    free(h);
    if (done)
        done(opaque);
}

static void on_sock_closed(uv_handle_t *handle)
{
    sock_t *s = handle->data;
    kn__http_t *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
    if (--h->open_handles == 0 && h->closing)
        finalize(h);
}

static void on_handle_closed(uv_handle_t *handle)
{
    kn__http_t *h = handle->data;
    if (--h->open_handles == 0 && h->closing)
        finalize(h);
}

static void cancel(kn__http_t *h, xfer_t *x)
{
    char host[256];
    url_host(x->url, host, sizeof(host));
    kn__error_set(&x->resp.err, KN_ERR_DESTROYED, "HTTP %s to %s cancelled: the client is closing", x->method, host);
    x->resp.err.cls = KN__EC_FAIL;
    x->resp.status = 0;
    x->resp.err.http_status = 0;
    kn__buf_free(&x->resp.body);
    xfer_deliver(h, x);
}

void kn__http_close(kn__http_t *h, void (*done)(void *opaque), void *opaque)
{
    if (!h || h->closing)
        return;
    h->closing = true;
    h->done = done;
    h->done_opaque = opaque;
    /* Callbacks below may call kn__http_send (refused now) but never touch the lists. */
    while (h->active) {
        xfer_t *x = h->active;
        list_unlink(&h->active, x);
        curl_multi_remove_handle(h->multi, x->easy);
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        cancel(h, x);
    }
    while (h->waiting) {
        xfer_t *x = h->waiting;
        h->waiting = x->next;
        x->next = NULL;
        curl_easy_cleanup(x->easy);
        x->easy = NULL;
        cancel(h, x);
    }
    h->waiting_tail = NULL;
    while (h->failed) {
        xfer_t *x = h->failed;
        list_unlink(&h->failed, x);
        cancel(h, x);
    }
    while (h->n_pool)
        curl_easy_cleanup(h->pool[--h->n_pool]);
    /* Closes the cached connections; curl may still report sockets to remove. */
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    for (sock_t *s = h->socks; s; s = s->next)
        sock_close(s);
    uv_timer_stop(&h->timer);
    uv_timer_stop(&h->defer);
    uv_close((uv_handle_t *)&h->timer, on_handle_closed);
    uv_close((uv_handle_t *)&h->defer, on_handle_closed);
}
