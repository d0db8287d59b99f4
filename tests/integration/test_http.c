/*
 * The asynchronous HTTP client (common/aws/http.c) against the scripted fixture
 * server (tests/servers/fixture_server.py): round trips, keep-alive, the
 * connection bound, timeouts, broken responses, the body cap, TLS, proxies,
 * and the callback contract (never inside send, exactly once, DESTROYED on
 * close). Each test drives its own uv loop on the test thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <malloc.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <json-c/json.h>

#include "http.h"
#include "log.h"
#include "testutil.h"

/* ---- fixture servers (started by pid, stopped by pid) ---- */

typedef struct server_s {
    pid_t pid;
    int port;
    bool tls;
} server_t;

static char g_tmp[128];
static server_t g_plain; /* routes below, also a forward proxy */
static server_t g_tls;   /* same routes over HTTPS, cert for 127.0.0.1 and localhost */
static server_t g_tls_wrong_host; /* cert for "localhost" only */
static char g_ca[512], g_routes[512];

static void server_stop(server_t *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 50; i++) {
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        usleep(100 * 1000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static void stop_all(void)
{
    server_stop(&g_plain);
    server_stop(&g_tls);
    server_stop(&g_tls_wrong_host);
}

static const char *fixture_script(void)
{
    static char path[512];
    const char *root = getenv("KN_SOURCE_ROOT");
    snprintf(path, sizeof(path), "%s/tests/servers/fixture_server.py", root ? root : ".");
    return path;
}

/* Runs the fixture with extra arguments (NULL-terminated); waits for its port file. */
static int server_start(server_t *s, const char *name, ...)
{
    char port_file[400];
    snprintf(port_file, sizeof(port_file), "%s/%s.port", g_tmp, name);
    const char *argv[32];
    int n = 0;
    argv[n++] = "python3";
    argv[n++] = fixture_script();
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    va_list ap;
    va_start(ap, name);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && n < 30)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* Dies with the test, even when the test is killed by its timeout. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0)
            dup2(devnull, 1);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 300; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", &s->port) == 1;
            fclose(f);
            if (ok)
                return 0;
        }
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            s->pid = 0;
            return -1;
        }
        usleep(50 * 1000);
    }
    server_stop(s);
    return -1;
}

static int run_cmd(const char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static const char *ROUTES =
    "{\"routes\": ["
    "{\"method\": \"*\", \"path\": \"/echo\", \"responses\": {\"behavior\": \"echo\"}},"
    "{\"method\": \"GET\", \"path\": \"/hello\", \"responses\": {\"body\": \"hello\"}},"
    "{\"method\": \"POST\", \"path\": \"/aws-error\", \"responses\": {\"status\": 400,"
    "  \"headers\": {\"x-amzn-RequestId\": \"req-123\", \"x-amzn-ErrorType\": "
    "  \"ResourceNotFoundException:http://internal.amazon.com/\", \"Content-Type\": "
    "  \"application/x-amz-json-1.1\", \"Date\": \"Wed, 25 Nov 2026 10:00:00 GMT\"},"
    "  \"body\": \"{\\\"__type\\\":\\\"ResourceNotFoundException\\\"}\"}},"
    "{\"method\": \"GET\", \"path\": \"/s3-style\", \"responses\": {\"status\": 503,"
    "  \"headers\": {\"x-amz-request-id\": \"s3-req-9\", \"Content-Type\": \"application/xml\"},"
    "  \"body\": \"<Error/>\"}},"
    "{\"method\": \"GET\", \"path\": \"/slow\", \"responses\": {\"delay_ms\": 300, \"body\": \"slow\"}},"
    "{\"method\": \"GET\", \"path\": \"/hang\", \"responses\": {\"behavior\": \"hang\"}},"
    "{\"method\": \"GET\", \"path\": \"/stall\", \"responses\": {\"behavior\": \"stall\", \"body\": \"0123456789\"}},"
    "{\"method\": \"GET\", \"path\": \"/truncated\", \"responses\": {\"behavior\": \"truncate\", \"body\": \"abc\"}},"
    "{\"method\": \"GET\", \"path\": \"/garbage\", \"responses\": {\"behavior\": \"garbage\", \"size\": 200}},"
    "{\"method\": \"GET\", \"path\": \"/no-reply\", \"responses\": {\"behavior\": \"close\"}},"
    "{\"method\": \"GET\", \"path\": \"/reset\", \"responses\": {\"behavior\": \"reset\"}},"
    "{\"method\": \"GET\", \"path\": \"/close-each\", \"responses\": {\"body\": \"x\", \"close\": true}},"
    "{\"method\": \"GET\", \"path\": \"/close-silently\", \"responses\": {\"body\": \"y\", \"close_silently\": true}},"
    "{\"method\": \"GET\", \"path\": \"/claims-huge\", \"responses\": {\"behavior\": \"stall\","
    "  \"size\": 60000000, \"body\": \"0123456789012345678901234567890123456789\"}},"
    "{\"method\": \"GET\", \"path\": \"/huge\", \"responses\": {\"behavior\": \"huge\", \"size\": 8388608}},"
    "{\"method\": \"GET\", \"path\": \"/huge-chunked\", \"responses\": {\"behavior\": \"huge\", \"size\": 8388608,"
    "  \"chunked\": true}},"
    "{\"method\": \"GET\", \"path\": \"/exactly-1m\", \"responses\": {\"behavior\": \"huge\", \"size\": 1048576,"
    "  \"chunked\": true}}"
    "]}";

static void clear_proxy_env(void)
{
    static const char *const vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                       "ALL_PROXY",  "no_proxy",   "NO_PROXY"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static int group_setup(void **state)
{
    clear_proxy_env();
    snprintf(g_tmp, sizeof(g_tmp), "/tmp/kn_test_http_%d_XXXXXX", (int)getpid());
    if (!mkdtemp(g_tmp))
        return -1;
    atexit(stop_all);
    snprintf(g_routes, sizeof(g_routes), "%s/routes.json", g_tmp);
    FILE *f = fopen(g_routes, "w");
    if (!f)
        return -1;
    fputs(ROUTES, f);
    fclose(f);

    char certs[256], cert[512], key[512], wrong[256], wcert[512], wkey[512];
    snprintf(certs, sizeof(certs), "%s/certs", g_tmp);
    snprintf(wrong, sizeof(wrong), "%s/certs-localhost", g_tmp);
    const char *gen1[] = {"python3", fixture_script(), "--gen-certs", certs, NULL};
    const char *gen2[] = {"python3", fixture_script(), "--gen-certs", wrong, "--hosts", "localhost", NULL};
    if (run_cmd(gen1) != 0 || run_cmd(gen2) != 0) {
        fprintf(stderr, "could not generate test certificates\n");
        return -1;
    }
    snprintf(g_ca, sizeof(g_ca), "%s/ca.pem", certs);
    snprintf(cert, sizeof(cert), "%s/server.pem", certs);
    snprintf(key, sizeof(key), "%s/server.key", certs);
    snprintf(wcert, sizeof(wcert), "%s/server.pem", wrong);
    snprintf(wkey, sizeof(wkey), "%s/server.key", wrong);

    g_tls.tls = g_tls_wrong_host.tls = true;
    if (server_start(&g_plain, "plain", "--routes", g_routes, "--forward-proxy", NULL) != 0 ||
        server_start(&g_tls, "tls", "--routes", g_routes, "--cert", cert, "--key", key, NULL) != 0 ||
        server_start(&g_tls_wrong_host, "tls-localhost", "--routes", g_routes, "--cert", wcert, "--key", wkey,
                     NULL) != 0) {
        fprintf(stderr, "could not start the fixture servers\n");
        stop_all();
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    stop_all();
    if (g_tmp[0])
        nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    curl_global_cleanup();
    return 0;
}

/* ---- control endpoints, through plain blocking libcurl (not the code under test) ---- */

static size_t collect(char *p, size_t s, size_t n, void *userp)
{
    kn__buf_append(userp, p, s * n);
    return s * n;
}

static json_object *control(const server_t *s, const char *method, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", s->tls ? "https" : "http", s->port, path);
    kn_buf_t b = KN_BUF_INIT;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_CAINFO, g_ca);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    char errbuf[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK)
        fprintf(stderr, "control %s %s: %s\n", method, url, errbuf);
    assert_int_equal(rc, CURLE_OK);
    json_object *j = json_tokener_parse(b.data ? b.data : "");
    kn__buf_free(&b);
    assert_non_null(j);
    return j;
}

static void stats_reset(const server_t *s) { json_object_put(control(s, "POST", "/__reset")); }

static long stat_of(const server_t *s, const char *name)
{
    json_object *j = control(s, "GET", "/__stats"), *v;
    assert_true(json_object_object_get_ex(j, name, &v));
    long r = (long)json_object_get_int64(v);
    json_object_put(j);
    return r;
}

/* ---- loop helpers ---- */

typedef struct got_s {
    int calls;
    long status;
    kn_err_t code;
    char message[768];
    kn_buf_t body;
    char request_id[128], error_type[128], content_type[128], date[64];
    double total_s;
    bool retriable;
} got_t;

typedef struct env_s {
    uv_loop_t loop;
    kn__http_t *h;
    int closed;
    bool in_send;      /* set around every kn__http_send */
    int inside_calls;  /* callbacks that ran while in_send was set */
    int total_calls;
} env_t;

static void on_closed(void *opaque) { ((env_t *)opaque)->closed++; }

static void noop_timer(uv_timer_t *t) { (void)t; }

/* Runs the loop until *counter reaches target or max_s passes. */
static void run_until(env_t *e, const int *counter, int target, double max_s)
{
    uv_timer_t guard;
    uv_timer_init(&e->loop, &guard);
    uv_timer_start(&guard, noop_timer, 50, 50);
    uint64_t deadline = uv_hrtime() + (uint64_t)(max_s * 1e9);
    while (*counter < target && uv_hrtime() < deadline)
        uv_run(&e->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

static void run_for(env_t *e, double s)
{
    int never = 0;
    run_until(e, &never, 1, s);
}

static void env_open(env_t *e, const kn__http_opts_t *opts)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(uv_loop_init(&e->loop), 0);
    kn_error_t err;
    kn__error_clear(&err);
    e->h = kn__http_new(&e->loop, opts, &err);
    assert_non_null(e->h);
}

/* Closes the client and proves every handle went away (uv_loop_close fails otherwise). */
static void env_close(env_t *e)
{
    if (e->h)
        kn__http_close(e->h, on_closed, e);
    e->h = NULL;
    run_until(e, &e->closed, 1, 10);
    assert_int_equal(e->closed, 1);
    assert_int_equal(uv_loop_close(&e->loop), 0);
}

typedef struct call_s {
    env_t *env;
    got_t got;
} call_t;

static void record(kn__http_resp_t *resp, got_t *g)
{
    g->calls++;
    g->status = resp->status;
    g->code = resp->err.code;
    g->retriable = resp->err.retriable;
    snprintf(g->message, sizeof(g->message), "%s", resp->err.message);
    kn__buf_free(&g->body);
    g->body = resp->body; /* steal */
    resp->body = (kn_buf_t)KN_BUF_INIT;
    snprintf(g->request_id, sizeof(g->request_id), "%s", resp->request_id);
    snprintf(g->error_type, sizeof(g->error_type), "%s", resp->error_type);
    snprintf(g->content_type, sizeof(g->content_type), "%s", resp->content_type);
    snprintf(g->date, sizeof(g->date), "%s", resp->date);
    g->total_s = resp->total_s;
}

static void on_call_done(kn__http_resp_t *resp, void *opaque)
{
    call_t *c = opaque;
    if (c->env->in_send)
        c->env->inside_calls++;
    c->env->total_calls++;
    record(resp, &c->got);
}

static kn_err_t send_req(env_t *e, call_t *c, const char *method, const char *url, const char *const *headers,
                         const void *body, size_t body_len, long timeout_ms)
{
    c->env = e;
    kn__http_req_t req = {.method = method,
                          .url = url,
                          .headers = headers,
                          .body = body,
                          .body_len = body_len,
                          .timeout_ms = timeout_ms,
                          .cb = on_call_done,
                          .opaque = c};
    kn_error_t err;
    kn__error_clear(&err);
    e->in_send = true;
    kn_err_t rc = kn__http_send(e->h, &req, &err);
    e->in_send = false;
    return rc;
}

/* One request, run to completion. */
static void do_req(env_t *e, call_t *c, const char *method, const char *url, long timeout_ms)
{
    memset(c, 0, sizeof(*c));
    assert_int_equal(send_req(e, c, method, url, NULL, NULL, 0, timeout_ms), KN_ERR_OK);
    assert_int_equal(c->got.calls, 0);
    run_until(e, &c->got.calls, 1, 30);
    assert_int_equal(c->got.calls, 1);
}

static void url_of(char *out, size_t size, const server_t *s, const char *path)
{
    snprintf(out, size, "http://127.0.0.1:%d%s", s->port, path);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void got_free(got_t *g) { kn__buf_free(&g->body); }

/* ---- logging capture ---- */

typedef struct logcap_s {
    kn_buf_t all;
} logcap_t;

static void log_cb(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    logcap_t *lc = opaque;
    kn__buf_printf(&lc->all, "[%s] %s\n", ctx, msg);
}

/* ---- tests ---- */

/* A POST with headers and a 100 KiB body arrives intact, without Expect or a form content type. */
static void test_post_round_trip_sends_body_and_headers_exactly(void **state)
{
    env_t e;
    logcap_t lc = {KN_BUF_INIT};
    kn__logger_t *lg = kn__logger_new(log_cb, &lc, KN_LOG_TRACE, KN_DBG_HTTP);
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.log = lg;
    env_open(&e, &o);

    size_t n = 100 * 1024;
    char *body = malloc(n);
    for (size_t i = 0; i < n; i++)
        body[i] = (char)('a' + i % 26);
    const char *headers[] = {"Content-Type: application/x-amz-json-1.1", "X-Amz-Target: Kinesis_20131202.PutRecord",
                             "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/x, SignedHeaders=host, "
                             "Signature=0123456789abcdef0123456789abcdef",
                             "X-Amz-Security-Token: TOKENsecretvalue", NULL};
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/echo");
    call_t c = {0};
    assert_int_equal(send_req(&e, &c, "POST", url, headers, body, n, 10000), KN_ERR_OK);
    run_until(&e, &c.got.calls, 1, 30);
    assert_int_equal(c.got.calls, 1);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_int_equal(c.got.status, 200);
    assert_string_equal(c.got.content_type, "application/json");
    assert_true(c.got.date[0] != '\0');

    json_object *j = json_tokener_parse(c.got.body.data), *v;
    assert_non_null(j);
    assert_true(json_object_object_get_ex(j, "method", &v));
    assert_string_equal(json_object_get_string(v), "POST");
    assert_true(json_object_object_get_ex(j, "body_len", &v));
    assert_int_equal(json_object_get_int64(v), (int64_t)n);
    assert_true(json_object_object_get_ex(j, "body", &v));
    assert_int_equal(json_object_get_string_len(v), (int)n);
    assert_memory_equal(json_object_get_string(v), body, n);
    assert_true(json_object_object_get_ex(j, "headers", &v));
    int ctype = 0, target = 0;
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        json_object *hv = json_object_array_get_idx(v, i);
        const char *name = json_object_get_string(json_object_array_get_idx(hv, 0));
        const char *val = json_object_get_string(json_object_array_get_idx(hv, 1));
        assert_true(strcasecmp(name, "Expect") != 0);
        if (strcasecmp(name, "Content-Type") == 0) {
            ctype++;
            assert_string_equal(val, "application/x-amz-json-1.1");
        }
        if (strcasecmp(name, "X-Amz-Target") == 0)
            target++;
    }
    assert_int_equal(ctype, 1);
    assert_int_equal(target, 1);
    json_object_put(j);

    /* Trace logs name method, URL and status, but never the signature or the token. */
    assert_non_null(lc.all.data);
    assert_non_null(strstr(lc.all.data, "> POST http://127.0.0.1"));
    assert_non_null(strstr(lc.all.data, "-> 200"));
    assert_non_null(strstr(lc.all.data, "[http]"));
    assert_null(strstr(lc.all.data, "0123456789abcdef0123456789abcdef"));
    assert_null(strstr(lc.all.data, "TOKENsecretvalue"));

    got_free(&c.got);
    free(body);
    env_close(&e);
    kn__logger_destroy(lg);
    kn__buf_free(&lc.all);
}

/* Other methods: PUT and DELETE carry their method, GET has no body. */
static void test_methods_put_delete_get(void **state)
{
    env_t e;
    env_open(&e, NULL);
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/echo");
    const char *methods[] = {"PUT", "DELETE", "GET"};
    for (int i = 0; i < 3; i++) {
        call_t c = {0};
        const char *b = i == 0 ? "put-body" : NULL;
        assert_int_equal(send_req(&e, &c, methods[i], url, NULL, b, b ? strlen(b) : 0, 10000), KN_ERR_OK);
        run_until(&e, &c.got.calls, 1, 30);
        assert_int_equal(c.got.code, KN_ERR_OK);
        json_object *j = json_tokener_parse(c.got.body.data), *v;
        assert_non_null(j);
        assert_true(json_object_object_get_ex(j, "method", &v));
        assert_string_equal(json_object_get_string(v), methods[i]);
        assert_true(json_object_object_get_ex(j, "body", &v));
        assert_string_equal(json_object_get_string(v), i == 0 ? "put-body" : "");
        json_object_put(j);
        got_free(&c.got);
    }
    env_close(&e);
}

/* An AWS error response is a response (KN_ERR_OK) with its status and headers captured. */
static void test_error_status_and_aws_headers_are_captured(void **state)
{
    env_t e;
    env_open(&e, NULL);
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/aws-error");
    call_t c;
    do_req(&e, &c, "POST", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_int_equal(c.got.status, 400);
    assert_string_equal(c.got.request_id, "req-123");
    assert_string_equal(c.got.error_type, "ResourceNotFoundException:http://internal.amazon.com/");
    assert_string_equal(c.got.content_type, "application/x-amz-json-1.1");
    assert_string_equal(c.got.date, "Wed, 25 Nov 2026 10:00:00 GMT");
    assert_string_equal(c.got.body.data, "{\"__type\":\"ResourceNotFoundException\"}");
    got_free(&c.got);

    url_of(url, sizeof(url), &g_plain, "/s3-style");
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_int_equal(c.got.status, 503);
    assert_string_equal(c.got.request_id, "s3-req-9");
    assert_string_equal(c.got.error_type, "");
    assert_string_equal(c.got.body.data, "<Error/>");
    got_free(&c.got);
    env_close(&e);
}

/* Keep-alive: requests chained from the callbacks all travel on one connection. */
typedef struct chain_s {
    env_t *env;
    char url[256];
    int left, ok, done;
} chain_t;

static void on_chain(kn__http_resp_t *resp, void *opaque)
{
    chain_t *ch = opaque;
    if (ch->env->in_send)
        ch->env->inside_calls++;
    if (resp->err.code == KN_ERR_OK && resp->status == 200)
        ch->ok++;
    else
        fprintf(stderr, "chain: %s %s\n", kn_err2name(resp->err.code), resp->err.message);
    if (--ch->left > 0) {
        kn__http_req_t req = {.method = "GET", .url = ch->url, .timeout_ms = 10000, .cb = on_chain, .opaque = ch};
        ch->env->in_send = true;
        kn_err_t rc = kn__http_send(ch->env->h, &req, NULL);
        ch->env->in_send = false;
        if (rc != KN_ERR_OK)
            ch->done = 1;
    } else {
        ch->done = 1;
    }
}

static void chain_run(env_t *e, chain_t *ch, const char *path, int n)
{
    memset(ch, 0, sizeof(*ch));
    ch->env = e;
    ch->left = n;
    url_of(ch->url, sizeof(ch->url), &g_plain, path);
    kn__http_req_t req = {.method = "GET", .url = ch->url, .timeout_ms = 10000, .cb = on_chain, .opaque = ch};
    assert_int_equal(kn__http_send(e->h, &req, NULL), KN_ERR_OK);
    run_until(e, &ch->done, 1, 60);
    assert_int_equal(ch->done, 1);
    assert_int_equal(ch->ok, n);
    assert_int_equal(e->inside_calls, 0);
}

static void test_sequential_requests_reuse_one_connection(void **state)
{
    stats_reset(&g_plain);
    env_t e;
    env_open(&e, NULL);
    chain_t ch;
    chain_run(&e, &ch, "/hello", 10);
    assert_int_equal(stat_of(&g_plain, "requests"), 10);
    assert_int_equal(stat_of(&g_plain, "connections"), 1);
    env_close(&e);
}

/*
 * Servers that close after every response: each request needs a new socket,
 * and the kernel hands back the fd number curl just closed. The watcher for
 * the old socket must not swallow the new one.
 */
static void test_new_sockets_reusing_fd_numbers_keep_working(void **state)
{
    stats_reset(&g_plain);
    logcap_t lc = {KN_BUF_INIT};
    kn__logger_t *lg = kn__logger_new(log_cb, &lc, KN_LOG_TRACE, KN_DBG_HTTP);
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.log = lg;
    env_t e;
    env_open(&e, &o);
    chain_t ch;
    chain_run(&e, &ch, "/close-each", 15);
    assert_int_equal(stat_of(&g_plain, "connections"), 15);
    /* The scenario really happened: some fd number was watched again after it was dropped. */
    int seen[4096] = {0}, reused = 0;
    for (const char *p = lc.all.data; p && (p = strstr(p, "watching socket ")) != NULL; p++) {
        if (p > lc.all.data && p[-1] == 'n')
            continue; /* "unwatching" */
        int fd = atoi(p + strlen("watching socket "));
        if (fd >= 0 && fd < 4096 && seen[fd]++)
            reused++;
    }
    assert_true(reused >= 10);
    /* Dropped without "Connection: close": curl must notice the dead connection and reconnect. */
    chain_run(&e, &ch, "/close-silently", 8);
    assert_int_equal(stat_of(&g_plain, "requests"), 23);
    env_close(&e);
    kn__logger_destroy(lg);
    kn__buf_free(&lc.all);
}

/* With max_connections = 2, eight slow concurrent requests never open more than two connections. */
static void test_connection_bound_queues_requests(void **state)
{
    stats_reset(&g_plain);
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.max_connections = 2;
    env_t e;
    env_open(&e, &o);
    enum { N = 8 };
    call_t c[N];
    memset(c, 0, sizeof(c));
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/slow");
    for (int i = 0; i < N; i++)
        assert_int_equal(send_req(&e, &c[i], "GET", url, NULL, NULL, 0, 30000), KN_ERR_OK);
    assert_int_equal(kn__http_inflight(e.h), N);
    run_until(&e, &e.total_calls, N, 60);
    assert_int_equal(e.total_calls, N);
    assert_int_equal(kn__http_inflight(e.h), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].got.calls, 1);
        assert_int_equal(c[i].got.code, KN_ERR_OK);
        assert_string_equal(c[i].got.body.data, "slow");
        got_free(&c[i].got);
    }
    assert_int_equal(stat_of(&g_plain, "requests"), N);
    assert_int_equal(stat_of(&g_plain, "max_concurrent"), 2);
    assert_true(stat_of(&g_plain, "connections") <= 2);
    env_close(&e);
}

/*
 * Requests beyond max_connections wait their turn in the order sent, and a
 * waiting request's timeout counts from its send: with one connection, a
 * 300 ms request, then one with a 100 ms timeout (spent waiting: it fails
 * with KN_ERR_TIMEOUT without taking the connection), then another 300 ms
 * one, which therefore ends about 600 ms after the sends.
 */
typedef struct order_s {
    env_t *env;
    int seen[4];
    int n;
    uint64_t t0, done_ns[4];
} order_t;

typedef struct ocall_s {
    order_t *o;
    int idx;
    got_t got;
} ocall_t;

static void on_ordered(kn__http_resp_t *resp, void *opaque)
{
    ocall_t *c = opaque;
    c->o->done_ns[c->idx] = uv_hrtime() - c->o->t0;
    c->o->seen[c->o->n++] = c->idx;
    c->o->env->total_calls++;
    record(resp, &c->got);
}

static void test_waiting_requests_keep_order_and_timeout(void **state)
{
    (void)state;
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.max_connections = 1;
    env_t e;
    env_open(&e, &o);
    char slow[256], hang[256];
    url_of(slow, sizeof(slow), &g_plain, "/slow");
    url_of(hang, sizeof(hang), &g_plain, "/hang");
    order_t ord = {.env = &e, .t0 = uv_hrtime()};
    ocall_t c[3];
    memset(c, 0, sizeof(c));
    const char *urls[3] = {slow, hang, slow};
    long timeouts[3] = {30000, 100, 30000};
    for (int i = 0; i < 3; i++) {
        c[i].o = &ord;
        c[i].idx = i;
        kn__http_req_t req = {.method = "GET", .url = urls[i], .timeout_ms = timeouts[i],
                              .cb = on_ordered, .opaque = &c[i]};
        assert_int_equal(kn__http_send(e.h, &req, NULL), KN_ERR_OK);
    }
    assert_int_equal(kn__http_inflight(e.h), 3);
    run_until(&e, &e.total_calls, 3, 30);
    assert_int_equal(ord.n, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ord.seen[i], i);
    assert_int_equal(c[0].got.code, KN_ERR_OK);
    assert_int_equal(c[1].got.code, KN_ERR_TIMEOUT);
    assert_true(c[1].got.retriable);
    assert_non_null(strstr(c[1].got.message, "waiting for one of 1 connections"));
    assert_int_equal(c[2].got.code, KN_ERR_OK);
    double third = (double)ord.done_ns[2] / 1e9;
    print_message("waiting: the third request ended %.3f s after the sends\n", third);
    assert_true(third >= 0.55);
    assert_true(third < 0.9 + 0.3); /* not after 300 + 100 + 300 ms and a margin: it did not wait for the hang */
    for (int i = 0; i < 3; i++)
        got_free(&c[i].got);
    env_close(&e);
}

/* Close with requests waiting for a connection: each callback once with KN_ERR_DESTROYED. */
static void test_close_cancels_waiting_requests(void **state)
{
    (void)state;
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.max_connections = 1;
    env_t e;
    env_open(&e, &o);
    enum { N = 4 };
    call_t c[N];
    memset(c, 0, sizeof(c));
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/hang");
    for (int i = 0; i < N; i++)
        assert_int_equal(send_req(&e, &c[i], "GET", url, NULL, NULL, 0, 0), KN_ERR_OK);
    run_for(&e, 0.3); /* the first is connected, three wait */
    assert_int_equal(e.total_calls, 0);
    kn__http_close(e.h, on_closed, &e);
    e.h = NULL;
    assert_int_equal(e.total_calls, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(c[i].got.calls, 1);
        assert_int_equal(c[i].got.code, KN_ERR_DESTROYED);
        got_free(&c[i].got);
    }
    run_until(&e, &e.closed, 1, 10);
    assert_int_equal(e.closed, 1);
    assert_int_equal(uv_loop_close(&e.loop), 0);
}

/* A route that never answers fails with KN_ERR_TIMEOUT near the per-request timeout. */
static void test_request_timeout_against_hanging_server(void **state)
{
    env_t e;
    env_open(&e, NULL);
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/hang");
    call_t c;
    uint64_t t0 = uv_hrtime();
    do_req(&e, &c, "GET", url, 500);
    double took = (double)(uv_hrtime() - t0) / 1e9;
    assert_int_equal(c.got.code, KN_ERR_TIMEOUT);
    assert_true(c.got.retriable);
    assert_int_equal(c.got.status, 0);
    assert_true(took >= 0.45);
    assert_true(took < 10.0);
    assert_non_null(strstr(c.got.message, "127.0.0.1"));
    assert_non_null(strstr(c.got.message, "timed out"));
    got_free(&c.got);

    /* Headers came but the body stalls: still a timeout, with the status known. */
    url_of(url, sizeof(url), &g_plain, "/stall");
    do_req(&e, &c, "GET", url, 500);
    assert_int_equal(c.got.code, KN_ERR_TIMEOUT);
    assert_int_equal(c.got.status, 200);
    got_free(&c.got);
    env_close(&e);
}

/* Nobody listening: KN_ERR_TRANSPORT, naming host and port. */
static void test_connection_refused_is_transport_error(void **state)
{
    env_t e;
    env_open(&e, NULL);
    int port = closed_port();
    char url[256], hostport[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", port);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", port);
    call_t c;
    do_req(&e, &c, "POST", url, 5000);
    assert_int_equal(c.got.code, KN_ERR_TRANSPORT);
    assert_true(c.got.retriable);
    assert_int_equal(c.got.status, 0);
    assert_non_null(strstr(c.got.message, hostport));
    assert_non_null(strstr(c.got.message, "connect"));
    assert_null(c.got.body.data);
    got_free(&c.got);
    env_close(&e);
}

/* Truncated, garbage, empty and reset replies are errors; the client keeps working afterwards. */
static void test_broken_responses_fail_cleanly(void **state)
{
    env_t e;
    env_open(&e, NULL);
    static const struct {
        const char *path;
        long status;
    } cases[] = {{"/truncated", 200}, {"/garbage", 0}, {"/no-reply", 0}, {"/reset", 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char url[256];
        url_of(url, sizeof(url), &g_plain, cases[i].path);
        call_t c;
        do_req(&e, &c, "GET", url, 10000);
        assert_int_equal(c.got.code, KN_ERR_TRANSPORT);
        assert_int_equal(c.got.status, cases[i].status);
        assert_non_null(strstr(c.got.message, "127.0.0.1"));
        got_free(&c.got);
    }
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/hello");
    call_t c;
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_string_equal(c.got.body.data, "hello");
    got_free(&c.got);
    env_close(&e);
}

static size_t heap_bytes(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/*
 * A server announces a 60 MB body and sends 40 bytes: no more than a few MiB
 * are reserved for it while it hangs (glibc's counters; under the sanitizers,
 * whose allocator they do not see, the check is trivially true), and the
 * request times out cleanly.
 */
static void test_announced_length_is_not_reserved_up_front(void **state)
{
    env_t e;
    env_open(&e, NULL);
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/claims-huge");
    size_t before = heap_bytes();
    call_t c;
    memset(&c, 0, sizeof(c));
    assert_int_equal(send_req(&e, &c, "GET", url, NULL, NULL, 0, 1500), KN_ERR_OK);
    int never = 0;
    run_until(&e, &never, 1, 0.7); /* headers and 20 bytes are in; the rest never comes */
    size_t during = heap_bytes();
    run_until(&e, &c.got.calls, 1, 30);
    assert_int_equal(c.got.calls, 1);
    assert_int_equal(c.got.code, KN_ERR_TIMEOUT);
    print_message("claims-huge: %zu bytes more on the heap while the answer hung\n",
                  during > before ? during - before : 0);
    assert_true(during < before + ((size_t)6 << 20));
    got_free(&c.got);
    env_close(&e);
}

static char g_urllog[16384];

static void urllog_cb(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque, (void)level, (void)ctx;
    size_t n = strlen(g_urllog);
    snprintf(g_urllog + n, sizeof(g_urllog) - n, "%s\n", msg);
}

/* Logs show request URLs without their query strings (which can carry credentials), even at trace level. */
static void test_logged_urls_leave_out_the_query(void **state)
{
    g_urllog[0] = '\0';
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.log = kn__logger_new(urllog_cb, NULL, KN_LOG_TRACE, 0xffffffffu);
    assert_non_null(o.log);
    env_t e;
    env_open(&e, &o);
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/hello?X-Amz-Security-Token=QuErYsEcReT&role_name=admin");
    call_t c;
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    got_free(&c.got);
    url_of(url, sizeof(url), &g_plain, "/no-reply?token=QuErYsEcReT2");
    do_req(&e, &c, "GET", url, 10000);
    assert_int_not_equal(c.got.code, KN_ERR_OK);
    got_free(&c.got);
    env_close(&e);
    kn__logger_destroy(o.log);
    assert_non_null(strstr(g_urllog, "/hello?..."));
    assert_non_null(strstr(g_urllog, "/no-reply?..."));
    assert_null(strstr(g_urllog, "QuErYsEcReT"));
    assert_null(strstr(g_urllog, "role_name"));
}

/* Bodies over max_response_bytes fail with KN_ERR_TOO_LARGE, announced or chunked; the limit itself passes. */
static void test_body_over_cap_is_too_large(void **state)
{
    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.max_response_bytes = 1 << 20;
    env_t e;
    env_open(&e, &o);
    const char *paths[] = {"/huge", "/huge-chunked"};
    for (int i = 0; i < 2; i++) {
        char url[256];
        url_of(url, sizeof(url), &g_plain, paths[i]);
        call_t c;
        do_req(&e, &c, "GET", url, 30000);
        assert_int_equal(c.got.code, KN_ERR_TOO_LARGE);
        assert_false(c.got.retriable);
        assert_non_null(strstr(c.got.message, "1048576"));
        assert_null(c.got.body.data);
        got_free(&c.got);
    }
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/exactly-1m");
    call_t c;
    do_req(&e, &c, "GET", url, 30000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_int_equal(c.got.body.len, 1 << 20);
    got_free(&c.got);
    env_close(&e);
}

/* HTTPS: an unknown CA is refused, the test CA is accepted, a host name mismatch is refused. */
static void test_tls_verification(void **state)
{
    char url[256];
    call_t c;
    env_t e;

    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", g_tls.port);
    env_open(&e, NULL); /* system store: our CA is not in it */
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_TLS);
    assert_false(c.got.retriable);
    assert_non_null(strstr(c.got.message, "127.0.0.1"));
    assert_non_null(strstr(c.got.message, "certificate"));
    got_free(&c.got);
    env_close(&e);

    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.ca_bundle = g_ca;
    env_open(&e, &o);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_string_equal(c.got.body.data, "hello");
    got_free(&c.got);
    snprintf(url, sizeof(url), "https://localhost:%d/hello", g_tls.port);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    got_free(&c.got);
    /* Right CA, but the certificate names only "localhost". */
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", g_tls_wrong_host.port);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_TLS);
    got_free(&c.got);
    env_close(&e);

    /* Verification explicitly off accepts the unknown CA. */
    kn__http_opts_default(&o);
    o.tls_verify = false;
    env_open(&e, &o);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", g_tls.port);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    got_free(&c.got);
    env_close(&e);
}

/* Callbacks never run inside kn__http_send, whether the request succeeds, fails fast or is refused. */
static void test_callbacks_never_run_inside_send(void **state)
{
    env_t e;
    env_open(&e, NULL);
    char ok_url[256], refused_url[256];
    url_of(ok_url, sizeof(ok_url), &g_plain, "/hello");
    snprintf(refused_url, sizeof(refused_url), "http://127.0.0.1:%d/", closed_port());
    call_t c[4];
    memset(c, 0, sizeof(c));
    assert_int_equal(send_req(&e, &c[0], "GET", ok_url, NULL, NULL, 0, 10000), KN_ERR_OK);
    assert_int_equal(send_req(&e, &c[1], "GET", refused_url, NULL, NULL, 0, 10000), KN_ERR_OK);
    /* curl itself rejects this one, but only once the loop runs it. */
    assert_int_equal(send_req(&e, &c[2], "GET", "http://bad host name/", NULL, NULL, 0, 10000), KN_ERR_OK);
    assert_int_equal(e.total_calls, 0);
    run_until(&e, &e.total_calls, 3, 30);
    assert_int_equal(e.total_calls, 3);
    assert_int_equal(e.inside_calls, 0);
    assert_int_equal(c[0].got.code, KN_ERR_OK);
    assert_int_equal(c[1].got.code, KN_ERR_TRANSPORT);
    assert_int_equal(c[2].got.code, KN_ERR_INVALID_ARG);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].got.calls, 1);
        got_free(&c[i].got);
    }

    /* Refused synchronously: an error and never a callback. */
    kn_error_t err;
    kn__error_clear(&err);
    kn__http_req_t bad = {.method = "GET", .url = NULL, .cb = on_call_done, .opaque = &c[3]};
    assert_int_equal(kn__http_send(e.h, &bad, &err), KN_ERR_INVALID_ARG);
    assert_true(err.message[0] != '\0');
    bad.url = "ftp://127.0.0.1/";
    assert_int_equal(kn__http_send(e.h, &bad, &err), KN_ERR_INVALID_ARG);
    run_for(&e, 0.2);
    assert_int_equal(e.total_calls, 3);
    assert_int_equal(c[3].got.calls, 0);
    env_close(&e);
}

/* Close with transfers in flight: each callback exactly once with KN_ERR_DESTROYED, then done once. */
static void test_close_cancels_inflight_exactly_once(void **state)
{
    env_t e;
    env_open(&e, NULL);
    enum { N = 5 };
    call_t c[N + 2];
    memset(c, 0, sizeof(c));
    char url[256];
    url_of(url, sizeof(url), &g_plain, "/hang");
    for (int i = 0; i < N; i++)
        assert_int_equal(send_req(&e, &c[i], "GET", url, NULL, NULL, 0, 0), KN_ERR_OK);
    run_for(&e, 0.5); /* connected and waiting */
    /* Two more that never reach the loop before the close. */
    assert_int_equal(send_req(&e, &c[N], "GET", url, NULL, NULL, 0, 0), KN_ERR_OK);
    assert_int_equal(send_req(&e, &c[N + 1], "GET", "http://127.0.0.1:1/", NULL, NULL, 0, 0), KN_ERR_OK);
    assert_int_equal(e.total_calls, 0);
    kn__http_close(e.h, on_closed, &e);
    e.h = NULL;
    assert_int_equal(e.total_calls, N + 2);
    for (int i = 0; i < N + 2; i++) {
        assert_int_equal(c[i].got.calls, 1);
        assert_int_equal(c[i].got.code, KN_ERR_DESTROYED);
        got_free(&c[i].got);
    }
    assert_int_equal(e.closed, 0); /* done comes later, from the loop */
    run_until(&e, &e.closed, 1, 10);
    run_for(&e, 0.2);
    assert_int_equal(e.closed, 1);
    assert_int_equal(e.total_calls, N + 2);
    assert_int_equal(uv_loop_close(&e.loop), 0);
}

/* Close from inside a completion callback: the rest are cancelled, new sends are refused. */
typedef struct closer_s {
    env_t *env;
    call_t *others;
    kn_err_t send_after_close;
} closer_t;

static void on_closer(kn__http_resp_t *resp, void *opaque)
{
    closer_t *cl = opaque;
    cl->env->total_calls++;
    kn__http_t *h = cl->env->h;
    kn__http_close(h, on_closed, cl->env);
    cl->env->h = NULL;
    kn__http_req_t req = {.method = "GET", .url = "http://127.0.0.1:1/", .cb = on_call_done, .opaque = cl->others};
    cl->send_after_close = kn__http_send(h, &req, NULL);
}

static void test_close_from_callback(void **state)
{
    env_t e;
    env_open(&e, NULL);
    call_t hang[3];
    memset(hang, 0, sizeof(hang));
    char url[256], fast[256];
    url_of(url, sizeof(url), &g_plain, "/hang");
    url_of(fast, sizeof(fast), &g_plain, "/hello");
    for (int i = 0; i < 3; i++)
        assert_int_equal(send_req(&e, &hang[i], "GET", url, NULL, NULL, 0, 0), KN_ERR_OK);
    closer_t cl = {&e, hang, KN_ERR_OK};
    kn__http_req_t req = {.method = "GET", .url = fast, .timeout_ms = 10000, .cb = on_closer, .opaque = &cl};
    assert_int_equal(kn__http_send(e.h, &req, NULL), KN_ERR_OK);
    run_until(&e, &e.closed, 1, 30);
    assert_int_equal(e.closed, 1);
    assert_int_equal(cl.send_after_close, KN_ERR_DESTROYED);
    assert_int_equal(e.total_calls, 4);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(hang[i].got.calls, 1);
        assert_int_equal(hang[i].got.code, KN_ERR_DESTROYED);
        got_free(&hang[i].got);
    }
    assert_int_equal(uv_loop_close(&e.loop), 0);
}

/* libcurl's own proxy variables are honoured: http_proxy for HTTP, https_proxy (CONNECT) for HTTPS. */
static void test_requests_go_through_env_proxy(void **state)
{
    stats_reset(&g_plain);
    char proxy[128];
    snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", g_plain.port);
    setenv("http_proxy", proxy, 1);
    setenv("https_proxy", proxy, 1);

    kn__http_opts_t o;
    kn__http_opts_default(&o);
    o.ca_bundle = g_ca;
    env_t e;
    env_open(&e, &o);
    /* The origin is the plain fixture itself, addressed by another name so the proxy must forward. */
    char url[256];
    snprintf(url, sizeof(url), "http://localhost:%d/hello", g_plain.port);
    call_t c;
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_string_equal(c.got.body.data, "hello");
    got_free(&c.got);
    assert_int_equal(stat_of(&g_plain, "proxied"), 1);

    stats_reset(&g_tls);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/hello", g_tls.port);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    assert_string_equal(c.got.body.data, "hello");
    got_free(&c.got);
    assert_int_equal(stat_of(&g_plain, "tunnels"), 1);
    assert_int_equal(stat_of(&g_tls, "requests"), 1);
    env_close(&e);

    /* NO_PROXY bypasses it. */
    setenv("no_proxy", "127.0.0.1,localhost", 1);
    stats_reset(&g_plain);
    env_open(&e, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hello", g_plain.port);
    do_req(&e, &c, "GET", url, 10000);
    assert_int_equal(c.got.code, KN_ERR_OK);
    got_free(&c.got);
    assert_int_equal(stat_of(&g_plain, "proxied"), 0);
    assert_int_equal(stat_of(&g_plain, "requests"), 1);
    env_close(&e);
    clear_proxy_env();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_round_trip_sends_body_and_headers_exactly),
        cmocka_unit_test(test_methods_put_delete_get),
        cmocka_unit_test(test_error_status_and_aws_headers_are_captured),
        cmocka_unit_test(test_sequential_requests_reuse_one_connection),
        cmocka_unit_test(test_new_sockets_reusing_fd_numbers_keep_working),
        cmocka_unit_test(test_connection_bound_queues_requests),
        cmocka_unit_test(test_waiting_requests_keep_order_and_timeout),
        cmocka_unit_test(test_close_cancels_waiting_requests),
        cmocka_unit_test(test_request_timeout_against_hanging_server),
        cmocka_unit_test(test_connection_refused_is_transport_error),
        cmocka_unit_test(test_broken_responses_fail_cleanly),
        cmocka_unit_test(test_body_over_cap_is_too_large),
        cmocka_unit_test(test_announced_length_is_not_reserved_up_front),
        cmocka_unit_test(test_logged_urls_leave_out_the_query),
        cmocka_unit_test(test_tls_verification),
        cmocka_unit_test(test_callbacks_never_run_inside_send),
        cmocka_unit_test(test_close_cancels_inflight_exactly_once),
        cmocka_unit_test(test_close_from_callback),
        cmocka_unit_test(test_requests_go_through_env_proxy),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
