/*
 * The client context: configuration, logging, endpoints, credentials and an
 * I/O thread running a libuv loop that owns the HTTP multi handle. Other
 * threads post tasks to the loop through a locked queue and uv_async_send.
 */
#include "client_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"

struct kn__task_s {
    void (*fn)(kn_client_t *c, void *arg);
    void *arg;
    kn__task_t *next;
};

static void drain_tasks(kn_client_t *c)
{
    for (;;) {
        pthread_mutex_lock(&c->lock);
        kn__task_t *t = c->tasks_head;
        c->tasks_head = c->tasks_tail = NULL;
        pthread_mutex_unlock(&c->lock);
        if (!t)
            return;
        while (t) {
            kn__task_t *next = t->next;
            t->fn(c, t->arg);
            free(t);
            t = next;
        }
    }
}

static void stop_task(kn_client_t *c);

static void on_wakeup(uv_async_t *h)
{
    kn_client_t *c = h->data;
    drain_tasks(c);
    pthread_mutex_lock(&c->lock);
    int stop = c->stopping && !c->stop_started;
    c->stop_started |= stop;
    pthread_mutex_unlock(&c->lock);
    if (stop)
        stop_task(c);
}

static void *io_thread(void *arg)
{
    kn_client_t *c = arg;
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return NULL;
}

kn_err_t kn__client_post(kn_client_t *c, void (*fn)(kn_client_t *c, void *arg), void *arg)
{
    kn__task_t *t = malloc(sizeof(*t));
    if (!t)
        return KN_ERR_NOMEM;
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->stopping) {
        pthread_mutex_unlock(&c->lock);
        free(t);
        return KN_ERR_DESTROYED;
    }
    if (c->tasks_tail)
        c->tasks_tail->next = t;
    else
        c->tasks_head = t;
    c->tasks_tail = t;
    pthread_mutex_unlock(&c->lock);
    uv_async_send(&c->wakeup);
    return KN_ERR_OK;
}

uv_loop_t *kn__client_loop(kn_client_t *c) { return &c->loop; }
kn__logger_t *kn__client_log(const kn_client_t *c) { return c->log; }
const kn_conf_t *kn__client_conf(const kn_client_t *c) { return c->conf; }

int kn__client_on_loop(const kn_client_t *c) { return pthread_equal(pthread_self(), c->thread); }

time_t kn__client_now(kn_client_t *c)
{
    return time(NULL) + (time_t)__atomic_load_n(&c->clock_skew_s, __ATOMIC_RELAXED);
}

static void *creds_thread(void *arg)
{
    kn_client_t *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->creds_wanted && !c->creds_quit)
            pthread_cond_wait(&c->creds_cond, &c->lock);
        if (c->creds_quit)
            break;
        c->creds_wanted = false;
        pthread_mutex_unlock(&c->lock);
        kn__error_clear(&c->creds_err);
        kn__creds_cache_refresh(c->creds, &c->creds_err);
        /* Refused once the client stops: the loop fails what waited for credentials itself. */
        kn__client_post(c, kn__aws_creds_done, NULL);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

kn_err_t kn__client_creds_refresh(kn_client_t *c)
{
    kn_err_t rc = KN_ERR_OK;
    pthread_mutex_lock(&c->lock);
    if (!c->creds_thread_started) {
        if (pthread_create(&c->creds_thread, NULL, creds_thread, c) == 0)
            c->creds_thread_started = true;
        else
            rc = KN_ERR_IO;
    }
    if (rc == KN_ERR_OK) {
        c->creds_wanted = true;
        pthread_cond_signal(&c->creds_cond);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static void on_http_closed(void *opaque)
{
    kn_client_t *c = opaque;
    c->http = NULL;
    uv_close((uv_handle_t *)&c->creds_timer, NULL);
    uv_close((uv_handle_t *)&c->wakeup, NULL);
}

/* Last task on the loop: fail what is pending, close HTTP, then the async handle. */
static void stop_task(kn_client_t *c)
{
    kn__aws_shutdown(c);
    if (c->http)
        kn__http_close(c->http, on_http_closed, c);
    else
        on_http_closed(c);
}

static void client_free(kn_client_t *c)
{
    for (int i = 0; i < KN__SVC__COUNT; i++) {
        free(c->endpoint[i]);
        free(c->url[i]);
        free(c->host[i]);
    }
    free(c->region);
    free(c->profile);
    kn__creds_cache_destroy(c->creds);
    kn__sigv4_cache_destroy(c->sigv4);
    kn__logger_destroy(c->log);
    kn_conf_destroy(c->conf);
    pthread_cond_destroy(&c->creds_cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Whether a Host header value (host[:port], [v6]:port) names this machine. */
static bool host_is_loopback(const char *host)
{
    char h[256];
    snprintf(h, sizeof(h), "%s", host);
    char *end = h[0] == '[' ? strchr(h, ']') : strrchr(h, ':');
    if (end && h[0] == '[')
        end[1] = '\0';
    else if (end)
        *end = '\0';
    return strcmp(h, "localhost") == 0 || strncmp(h, "127.", 4) == 0 || strcmp(h, "[::1]") == 0;
}

static void log_discard(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque, (void)level, (void)ctx, (void)msg;
}

KN_API kn_client_t *kn_client_new(const kn_conf_t *conf, kn_error_t *errp)
{
    kn_error_t err;
    kn__error_clear(&err);
    kn_client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        if (errp)
            kn__error_set(errp, KN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&c->refcnt, 1);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->creds_cond, NULL);
    int loop_ok = 0;

    c->conf = conf ? kn_conf_dup(conf) : kn_conf_new();
    if (!c->conf) {
        kn__error_set(&err, KN_ERR_NOMEM, "out of memory");
        goto fail;
    }

    void *log_opaque = NULL;
    kn_log_cb_t *cb = kn__conf_log_cb(c->conf, &log_opaque);
    kn_log_level_t level = KN_LOG_INFO;
    uint32_t mask = 0;
    kn__log_parse_level(kn__conf_str(c->conf, KN_P_LOG_LEVEL), &level);
    kn__log_parse_debug(kn__conf_str(c->conf, KN_P_DEBUG), &mask, NULL, 0);
    c->log = kn__logger_new(cb ? cb : log_discard, log_opaque, level, mask);
    if (!c->log) {
        kn__error_set(&err, KN_ERR_NOMEM, "out of memory");
        goto fail;
    }

    const char *profile = kn__conf_str(c->conf, KN_P_PROFILE);
    c->profile = *profile ? strdup(profile) : NULL;
    c->region = kn__region_resolve(kn__conf_str(c->conf, KN_P_REGION), c->profile);
    if (!c->region) {
        kn__error_set(&err, KN_ERR_NOMEM, "out of memory");
        goto fail;
    }
    static const kn__prop_t endpoint_prop[KN__SVC__COUNT] = {
        [KN__SVC_KINESIS] = KN_P_KINESIS_ENDPOINT,
        [KN__SVC_DYNAMODB] = KN_P_DYNAMODB_ENDPOINT,
        [KN__SVC_STS] = KN_P_STS_ENDPOINT,
        [KN__SVC_CLOUDWATCH] = KN_P_CLOUDWATCH_ENDPOINT,
        [KN__SVC_SSO] = KN_P__COUNT,
    };
    for (int i = 0; i < KN__SVC__COUNT; i++) {
        const char *explicit_url =
            endpoint_prop[i] == KN_P__COUNT ? NULL : kn__conf_str(c->conf, endpoint_prop[i]);
        c->endpoint[i] = kn__endpoint_resolve((kn__service_t)i, explicit_url, c->region, c->profile, &err);
        if (!c->endpoint[i])
            goto fail;
        const char *ep = c->endpoint[i];
        const char *after_scheme = strstr(ep, "://") + 3;
        int has_path = strchr(after_scheme, '/') != NULL;
        size_t n = strlen(ep) + 2;
        c->url[i] = malloc(n);
        c->host[i] = kn__endpoint_host_header(ep);
        if (!c->url[i] || !c->host[i]) {
            kn__error_set(&err, KN_ERR_CONF_INVALID, "endpoint \"%s\" has no host", ep);
            goto fail;
        }
        snprintf(c->url[i], n, "%s%s", ep, has_path ? "" : "/");
        c->path[i] = strchr(strstr(c->url[i], "://") + 3, '/');
        c->plain_remote[i] = strncmp(ep, "http://", 7) == 0 && !host_is_loopback(c->host[i]);
    }

    const char *ca = kn__conf_str(c->conf, KN_P_CA_BUNDLE);
    if (!*ca && getenv("AWS_CA_BUNDLE"))
        ca = getenv("AWS_CA_BUNDLE");
    kn__creds_opts_t copts = {
        .profile = c->profile,
        .region = c->region,
        .sts_endpoint = kn__conf_str(c->conf, KN_P_STS_ENDPOINT),
        .ca_bundle = ca,
        .tls_verify = kn__conf_bool(c->conf, KN_P_CREDS_TLS_VERIFY),
        .timeout_ms = (long)kn__conf_int(c->conf, KN_P_REQUEST_TIMEOUT_MS),
        .static_access_key_id = kn__conf_str(c->conf, KN_P_ACCESS_KEY_ID),
        .static_secret_access_key = kn__conf_str(c->conf, KN_P_SECRET_ACCESS_KEY),
        .static_session_token = kn__conf_str(c->conf, KN_P_SESSION_TOKEN),
        .log = c->log,
        .clock_skew_s = &c->clock_skew_s,
    };
    if (!kn__conf_bool(c->conf, KN_P_TLS_VERIFY))
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_GENERIC,
               "http.tls.verify=false: the TLS certificates of the Kinesis and DynamoDB endpoints are "
               "not verified, so anyone on the path can impersonate them (credential traffic still "
               "is verified unless aws.credentials.tls.verify=false)");
    if (!copts.tls_verify)
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CREDS,
               "aws.credentials.tls.verify=false: the TLS certificates of STS, SSO and the container "
               "and instance metadata endpoints are not verified");
    kn__logger_add_secret(c->log, copts.static_secret_access_key);
    kn__logger_add_secret(c->log, copts.static_session_token);
    c->creds = kn__creds_cache_new(&copts);
    c->sigv4 = kn__sigv4_cache_new();
    if (!c->creds || !c->sigv4) {
        kn__error_set(&err, KN_ERR_NOMEM, "out of memory");
        goto fail;
    }

    if (uv_loop_init(&c->loop) != 0) {
        kn__error_set(&err, KN_ERR_IO, "cannot initialise the event loop");
        goto fail;
    }
    loop_ok = 1;
    if (uv_async_init(&c->loop, &c->wakeup, on_wakeup) != 0) {
        kn__error_set(&err, KN_ERR_IO, "cannot initialise the event loop wake-up handle");
        goto fail;
    }
    c->wakeup.data = c;
    uv_timer_init(&c->loop, &c->creds_timer);
    c->creds_timer.data = c;
    loop_ok = 2;

    /* The loop is not running yet, so creating loop-owned objects here is safe. */
    kn__http_opts_t hopts = {
        .max_connections = (long)kn__conf_int(c->conf, KN_P_MAX_CONNECTIONS),
        .connect_timeout_ms = (long)kn__conf_int(c->conf, KN_P_CONNECT_TIMEOUT_MS),
        .ca_bundle = ca,
        .tls_verify = kn__conf_bool(c->conf, KN_P_TLS_VERIFY),
        .max_response_bytes = (size_t)kn__conf_int(c->conf, KN_P_MAX_RESPONSE_BYTES),
        .log = c->log,
    };
    c->http = kn__http_new(&c->loop, &hopts, &err);
    if (!c->http)
        goto fail;

    if (pthread_create(&c->thread, NULL, io_thread, c) != 0) {
        kn__error_set(&err, KN_ERR_IO, "cannot start the I/O thread");
        goto fail;
    }
    KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_GENERIC, "client ready: region %s, kinesis %s, dynamodb %s",
           c->region, c->endpoint[KN__SVC_KINESIS], c->endpoint[KN__SVC_DYNAMODB]);
    return c;

fail:
    if (errp)
        kn__error_copy(errp, &err);
    if (loop_ok) {
        if (c->http) {
            kn__http_close(c->http, on_http_closed, c);
        } else if (loop_ok == 2) {
            uv_close((uv_handle_t *)&c->creds_timer, NULL);
            uv_close((uv_handle_t *)&c->wakeup, NULL);
        }
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
    }
    client_free(c);
    return NULL;
}

KN_API kn_client_t *kn_client_ref(kn_client_t *client)
{
    if (!client)
        return NULL;
    atomic_fetch_add(&client->refcnt, 1);
    return client;
}

KN_API void kn_client_destroy(kn_client_t *c)
{
    if (!c)
        return;
    if (kn__client_on_loop(c)) {
        /* From a library callback the I/O thread would join itself: refuse (documented). */
        KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_GENERIC, "kn_client_destroy called from a library callback: ignored");
        return;
    }
    if (atomic_fetch_sub(&c->refcnt, 1) != 1)
        return;
    /* Tasks posted before this point still run; kn__client_post refuses new ones. */
    pthread_mutex_lock(&c->lock);
    c->stopping = 1;
    pthread_mutex_unlock(&c->lock);
    /* A refresh that blocks (a hanging credential source) is cut short. */
    kn__creds_cache_cancel(c->creds);
    uv_async_send(&c->wakeup);
    pthread_join(c->thread, NULL);
    pthread_mutex_lock(&c->lock);
    c->creds_quit = true;
    pthread_cond_signal(&c->creds_cond);
    bool joined = c->creds_thread_started;
    pthread_mutex_unlock(&c->lock);
    if (joined)
        pthread_join(c->creds_thread, NULL);
    uv_loop_close(&c->loop);
    client_free(c);
}
