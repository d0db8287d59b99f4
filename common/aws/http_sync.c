/*
 * Small blocking HTTP requests with one curl easy handle per call, for the
 * credential endpoints. Only http and https; no redirects (a credential
 * endpoint that redirects is misconfigured, and following it could hand a
 * token to another host); the body is bounded.
 */
#include "http_sync.h"
#include "curl_err.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KN__HTTP_SYNC_DEFAULT_MAX_BODY (1024u * 1024u)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct sink_s {
    kn_buf_t *body;
    size_t max;
    int too_large;
    int nomem;
} sink_t;

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    sink_t *s = ud;
    size_t n = size * nmemb;
    if (s->body->len + n > s->max) {
        s->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (kn__buf_append(s->body, p, n) != 0) {
        s->nomem = 1;
        return 0;
    }
    return n;
}

/*
 * Loopback and link-local hosts (IMDS, container endpoints, test servers)
 * must never go through an HTTP proxy from the environment.
 */
static int host_is_local(const char *url)
{
    const char *h = strstr(url, "://");
    if (!h)
        return 0;
    h += 3;
    return strncmp(h, "127.", 4) == 0 || strncasecmp(h, "localhost", 9) == 0 ||
           strncmp(h, "169.254.", 8) == 0 || strncmp(h, "[::1]", 5) == 0 ||
           strncasecmp(h, "[fd00:ec2::", 11) == 0;
}

void kn__url_for_message(const char *url, char *out, size_t size)
{
    if (!size)
        return;
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *q = auth; q < auth + alen; q++)
        if (*q == '@')
            at = q;
    if (at)
        snprintf(out, size, "%.*s%s", (int)(auth - url), url, at + 1);
    else
        snprintf(out, size, "%s", url);
}

/* Progress callback: a non-zero return aborts the transfer (curl calls it at least once a second). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load((const atomic_int *)ud) ? 1 : 0;
}

kn_err_t kn__http_sync(const kn__http_sync_req_t *req, kn__http_sync_resp_t *resp, kn_error_t *err)
{
    return kn__http_sync_cancellable(req, NULL, resp, err);
}

kn_err_t kn__http_sync_cancellable(const kn__http_sync_req_t *req, const atomic_int *cancel,
                                   kn__http_sync_resp_t *resp, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";

    if (!req || !req->url || !req->method || !resp)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "http_sync: missing request fields");
    if (cancel && atomic_load(cancel))
        return kn__error_set(err, KN_ERR_DESTROYED, "%s: cancelled (shutting down)", req->method);
    resp->status = 0;
    kn__buf_reset(&resp->body);
    pthread_once(&curl_once, curl_init_once);
    h = curl_easy_init();
    if (!h) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "http_sync: curl_easy_init failed");
        goto out;
    }
    for (const char *const *hp = req->headers; hp && *hp; hp++) {
        struct curl_slist *n = curl_slist_append(hdrs, *hp);
        if (!n) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "http_sync: out of memory");
            goto out;
        }
        hdrs = n;
    }
    /* curl adds "Expect: 100-continue" to larger POSTs; credential endpoints do not need it. */
    if (req->body_len) {
        struct curl_slist *n = curl_slist_append(hdrs, "Expect:");
        if (!n) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "http_sync: out of memory");
            goto out;
        }
        hdrs = n;
    }

    sink_t sink = {&resp->body, req->max_body ? req->max_body : KN__HTTP_SYNC_DEFAULT_MAX_BODY, 0,
                   0};
    long timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : 10000;
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "libkinesis/" KN_VERSION_STR);
    if (hdrs)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (cancel) {
        curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(h, CURLOPT_XFERINFODATA, (void *)cancel);
    }
    if (host_is_local(req->url))
        curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    if (req->ca_bundle && *req->ca_bundle)
        curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_bundle);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, req->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, req->tls_verify ? 2L : 0L);

    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        if (strcmp(req->method, "PUT") == 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);
    }

    CURLcode cc = curl_easy_perform(h);
    char where[512];
    kn__url_for_message(req->url, where, sizeof(where));
    if (sink.nomem) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "%s %s: out of memory reading the response",
                           req->method, where);
        goto out;
    }
    if (sink.too_large) {
        rc = kn__error_set(err, KN_ERR_TOO_LARGE, "%s %s: response body larger than %zu bytes",
                           req->method, where, sink.max);
        goto out;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK && cancel && atomic_load(cancel)) {
        rc = kn__error_set(err, KN_ERR_DESTROYED, "%s %s: cancelled (shutting down)", req->method,
                           where);
        goto out;
    }
    if (cc != CURLE_OK) {
        long os_errno = 0;
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
        char detail[CURL_ERROR_SIZE + 64];
        if (cc == CURLE_COULDNT_CONNECT && os_errno)
            snprintf(detail, sizeof(detail), "%s", strerror((int)os_errno));
        else
            snprintf(detail, sizeof(detail), "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
        /* strerror starts with a capital; the message reads better in lower case. */
        if (detail[0] >= 'A' && detail[0] <= 'Z' && detail[1] >= 'a' && detail[1] <= 'z')
            detail[0] = (char)(detail[0] - 'A' + 'a');
        kn_err_t code = kn__curl_err(cc);
        rc = kn__error_set(err, code, "%s %s: %s", req->method, where, detail);
        if (err) {
            err->http_status = 0;
            err->retriable = code == KN_ERR_TRANSPORT || code == KN_ERR_TIMEOUT;
        }
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (kn__buf_reserve(&resp->body, 0) != 0) { /* body.data is never NULL on success */
        rc = kn__error_set(err, KN_ERR_NOMEM, "http_sync: out of memory");
        goto out;
    }
out:
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    return rc;
}

void kn__http_sync_resp_free(kn__http_sync_resp_t *resp)
{
    if (!resp)
        return;
    kn__buf_free(&resp->body);
    resp->status = 0;
}
