/*
 * The AWS JSON request layer against a real server (kinesalite), directly and
 * through tests/faults/fault_proxy.py for the failures a real server does not
 * produce on demand: retries with backoff, fail-fast errors, connection
 * resets, clock skew, expired tokens, shutdown with calls pending, and no
 * secret in any log line at trace level.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <signal.h>
#include <cmocka.h>

#include "aws.h"
#include "client_int.h"
#include "log.h"
#include "test_new.h"
#include "testutil.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY-test-secret"
#define TOKEN "FQoGZXIvYXdzEXAMPLE-session-token-0123456789"

/* Every log line of the test, to search for secrets. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char *log_text;
static size_t log_len, log_lines;

static void collect_log(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque, (void)level;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(ctx) + strlen(msg) + 3;
    log_text = realloc(log_text, log_len + n + 1);
    log_len += (size_t)sprintf(log_text + log_len, "%s: %s\n", ctx, msg);
    log_lines++;
    pthread_mutex_unlock(&log_lock);
}

static kn_client_t *client_for(const char *url, const char *max_attempts, const char *base_ms)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", url, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDTESTLAYER", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", SECRET, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.session.token", TOKEN, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.max.attempts", max_attempts, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.base.ms", base_ms, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "http.request.timeout.ms", "5000", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "log.level", "trace", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "debug", "all", err, sizeof(err)), KN_ERR_OK);
    kn_conf_set_log_cb(conf, collect_log, NULL);
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    if (!c)
        fail_msg("kn_client_new: %s", err);
    kn_conf_destroy(conf);
    return c;
}

typedef struct proxy_s {
    pid_t pid;
    int port;
    char url[64];
} proxy_t;

static void proxy_start(proxy_t *p, const char *const *extra)
{
    const char *argv[32] = {"python3", kn_test_source_path("tests/faults/fault_proxy.py"),
                            kn_test_server_url("KN_TEST_KINESALITE_URL")};
    int n = 3;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    /* kn_test_source_path returns a static buffer: copy before the next use. */
    char script[4096];
    snprintf(script, sizeof(script), "%s", argv[1]);
    argv[1] = script;
    p->pid = kn_test_spawn_port((char *const *)argv, &p->port);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
}

/* Reads a counter from the proxy's stats through a blocking curl-free request on our own client. */
static long proxy_stat(proxy_t *p, const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "python3 -c \"import json,urllib.request;print(json.load(urllib.request.urlopen("
             "'http://127.0.0.1:%d/__proxy/stats'))['%s'])\"",
             p->port, name);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    long v = -1;
    assert_int_equal(fscanf(f, "%ld", &v), 1);
    pclose(f);
    return v;
}

/*
 * Starts a fault proxy with extra options in front of kinesalite, runs one
 * ListStreams through a client with the given attempts (10 ms base backoff),
 * and returns its result; the proxy keeps running for its stats.
 */
static kn_err_t list_streams_via_proxy(proxy_t *p, const char *const *extra, const char *max_attempts,
                                       kn_error_t *err)
{
    proxy_start(p, extra);
    kn_client_t *c = client_for(p->url, max_attempts, "10");
    kn__error_clear(err);
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, err);
    kn_client_destroy(c);
    return rc;
}

static void list_streams_succeeds_against_kinesalite(void **state)
{
    (void)state;
    kn_client_t *c = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3", "10");
    json_object *out = NULL;
    kn_error_t err;
    kn__error_clear(&err);
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, &out, &err);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams: %s", err.message);
    json_object *names;
    assert_true(json_object_object_get_ex(out, "StreamNames", &names));
    assert_true(json_object_is_type(names, json_type_array));
    json_object_put(out);
    kn_client_destroy(c);
}

/*
 * A session token of 8 KB (session tags and inline policies make real ones
 * long): the request headers are sized per request, so the call goes out
 * and succeeds instead of failing locally.
 */
static void long_session_token_is_sent(void **state)
{
    (void)state;
    static char token[8193];
    for (size_t i = 0; i < sizeof(token) - 1; i++)
        token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64];
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", kn_test_server_url("KN_TEST_KINESALITE_URL"), err,
                                 sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDLONGTOKEN", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", SECRET, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.session.token", token, err, sizeof(err)), KN_ERR_OK);
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(c);
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams with an 8 KB session token: %s", e.message);
    kn_client_destroy(c);
}

static void service_errors_fail_fast_with_the_service_message(void **state)
{
    (void)state;
    kn_client_t *c = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "5", "10");
    kn_error_t err;
    kn__error_clear(&err);
    const char *body = "{\"StreamName\":\"kn-no-such-stream-4711\"}";
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "DescribeStreamSummary", body, strlen(body), NULL, &err);
    assert_int_equal(rc, KN_ERR_NOT_FOUND);
    assert_string_equal(err.aws_type, "ResourceNotFoundException");
    assert_int_equal(err.http_status, 400);
    assert_non_null(strstr(err.message, "DescribeStreamSummary"));
    assert_non_null(strstr(err.message, "kn-no-such-stream-4711"));
    assert_null(strstr(err.message, "attempts")); /* one attempt only */
    kn_client_destroy(c);
}

static void server_errors_are_retried_until_success(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "2", NULL};
    kn_error_t err;
    kn_err_t rc = list_streams_via_proxy(&p, extra, "5", &err);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams: %s", err.message);
    assert_int_equal(proxy_stat(&p, "requests"), 3);
    assert_int_equal(proxy_stat(&p, "forwarded"), 1);
    kn_test_stop(p.pid);
}

static void retries_end_after_max_attempts_with_the_last_error(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "100", "--fail-status", "503", "--fail-body",
                           "<html><head><title>503 Service Unavailable</title></head></html>", NULL};
    kn_error_t err;
    assert_int_equal(list_streams_via_proxy(&p, extra, "3", &err), KN_ERR_SERVICE);
    assert_int_equal(err.http_status, 503);
    assert_true(err.retriable);
    assert_non_null(strstr(err.message, "after 3 attempts"));
    assert_non_null(strstr(err.message, "503 Service Unavailable"));
    assert_int_equal(proxy_stat(&p, "requests"), 3);
    kn_test_stop(p.pid);
}

static void validation_errors_are_not_retried(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "100", "--fail-status", "400", "--fail-body",
                           "{\"__type\":\"ValidationException\",\"message\":\"1 validation error detected\"}", NULL};
    kn_error_t err;
    assert_int_equal(list_streams_via_proxy(&p, extra, "5", &err), KN_ERR_VALIDATION);
    assert_false(err.retriable);
    assert_non_null(strstr(err.message, "1 validation error detected"));
    assert_int_equal(proxy_stat(&p, "requests"), 1);
    kn_test_stop(p.pid);
}

static void connection_resets_are_retried(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--reset-first", "2", NULL};
    kn_error_t err;
    kn_err_t rc = list_streams_via_proxy(&p, extra, "4", &err);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams after resets: %s", err.message);
    assert_int_equal(proxy_stat(&p, "forwarded"), 1);
    kn_test_stop(p.pid);
}

static void clock_skew_is_corrected_from_the_response_date(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--skew-seconds", "3600", NULL};
    proxy_start(&p, extra);
    kn_client_t *c = client_for(p.url, "3", "10");
    kn_error_t err;
    kn__error_clear(&err);
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &err);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams with skew: %s", err.message);
    assert_int_equal(proxy_stat(&p, "requests"), 2);
    int64_t skew = __atomic_load_n(&c->clock_skew_s, __ATOMIC_RELAXED);
    assert_true(skew > 3500 && skew < 3700);
    /* The correction sticks: the next call needs one attempt. */
    rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &err);
    assert_int_equal(rc, KN_ERR_OK);
    assert_int_equal(proxy_stat(&p, "requests"), 3);
    kn_client_destroy(c);
    kn_test_stop(p.pid);
}

static void signature_errors_without_skew_fail_fast(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "100", "--fail-status", "400", "--fail-body",
                           "{\"__type\":\"InvalidSignatureException\",\"message\":\"The request signature we "
                           "calculated does not match the signature you provided.\"}",
                           NULL};
    kn_error_t err;
    assert_int_equal(list_streams_via_proxy(&p, extra, "5", &err), KN_ERR_AUTH);
    assert_string_equal(err.aws_type, "InvalidSignatureException");
    assert_int_equal(proxy_stat(&p, "requests"), 1);
    kn_test_stop(p.pid);
}

static void expired_token_refreshes_credentials_and_retries_once(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "1", "--fail-status", "400", "--fail-body",
                           "{\"__type\":\"ExpiredTokenException\",\"message\":\"The security token included in "
                           "the request is expired\"}",
                           NULL};
    kn_error_t err;
    kn_err_t rc = list_streams_via_proxy(&p, extra, "5", &err);
    if (rc != KN_ERR_OK)
        fail_msg("ListStreams after ExpiredToken: %s", err.message);
    assert_int_equal(proxy_stat(&p, "requests"), 2);
    kn_test_stop(p.pid);
}

static void connection_refused_names_the_endpoint(void **state)
{
    (void)state;
    /* A port that was just free: bind, read the port, close. */
    proxy_t p;
    proxy_start(&p, NULL);
    kn_test_stop(p.pid);
    kn_client_t *c = client_for(p.url, "2", "10");
    kn_error_t err;
    kn__error_clear(&err);
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &err);
    assert_int_equal(rc, KN_ERR_TRANSPORT);
    char host[64];
    snprintf(host, sizeof(host), "127.0.0.1:%d", p.port);
    assert_non_null(strstr(err.message, host));
    assert_non_null(strstr(err.message, "after 2 attempts"));
    kn_client_destroy(c);
}

/*
 * A temporary HOME whose default profile gets its credentials from
 * `credential_process = command`, with every other source switched off.
 * Returns the previous HOME (malloc'd, may be NULL) for restore_home().
 */
static char *use_credential_process(const char *home, const char *command)
{
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s/.aws' && printf '[default]\\ncredential_process = %s\\n' > '%s/.aws/config'",
             home, command, home);
    assert_int_equal(system(cmd), 0);
    const char *vars[] = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                          "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    return old_home;
}

static void restore_home(const char *home, char *old_home)
{
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
}

/* A client on kinesalite that takes its credentials from the chain (no static keys). */
static kn_client_t *client_with_chain(bool trace)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", kn_test_server_url("KN_TEST_KINESALITE_URL"), err,
                                 sizeof(err)), KN_ERR_OK);
    if (trace) {
        kn_conf_set_log_cb(conf, collect_log, NULL);
        assert_int_equal(kn_conf_set(conf, "log.level", "trace", err, sizeof(err)), KN_ERR_OK);
        assert_int_equal(kn_conf_set(conf, "debug", "all", err, sizeof(err)), KN_ERR_OK);
    }
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!c)
        fail_msg("kn_client_new: %s", err);
    return c;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[16];
    int n = 0;
    while (f && fgets(line, sizeof(line), f))
        n++;
    if (f)
        fclose(f);
    return n;
}

/*
 * Temporary credentials are refreshed ahead of their expiry by a timer, in
 * the background: requests never wait for it and never trigger refreshes of
 * their own while one was just made (no hammering of the credential source).
 * The credentials here expire 302 s after each run, so the refresh falls due
 * 2 s after each run (the window is 300 s).
 */
static void temporary_credentials_are_refreshed_in_the_background(void **state)
{
    (void)state;
    char home[] = "/tmp/kn-aws-layer-XXXXXX";
    assert_non_null(mkdtemp(home));
    char path[512], count[600];
    snprintf(path, sizeof(path), "%s/creds.sh", home);
    snprintf(count, sizeof(count), "%s/count", home);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\necho run >> '%s'\n"
               "exp=$(date -u -d '+302 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
               "printf '{\"Version\":1,\"AccessKeyId\":\"AKIDPROC\",\"SecretAccessKey\":\"%s\","
               "\"SessionToken\":\"%s\",\"Expiration\":\"%%s\"}' \"$exp\"\n",
            count, SECRET, TOKEN);
    fclose(f);
    chmod(path, 0700);
    char *old_home = use_credential_process(home, path);
    kn_client_t *c = client_with_chain(true);
    kn_error_t e;
    kn__error_clear(&e);
    /*
     * Twenty calls in a row: one run of the provider (the first call waited
     * for it), two if the timer's refresh fell inside them on a slow machine;
     * a refresh per call would show ~20.
     */
    for (int i = 0; i < 20; i++) {
        kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e);
        if (rc != KN_ERR_OK)
            fail_msg("ListStreams with credential_process: %s", e.message);
    }
    int runs = count_lines(count);
    assert_true(runs >= 1 && runs <= 2);
    /* Then the timer refreshes them, without any call. */
    for (int i = 0; i < 1000 && runs < 2; i++) {
        usleep(10000);
        runs = count_lines(count);
    }
    assert_int_equal(runs, 2);
    kn_client_destroy(c);
    restore_home(home, old_home);
}

typedef struct async_s {
    pthread_mutex_t m;
    int calls;
    kn_err_t code;
} async_t;

static void async_cb(kn__aws_result_t *res, void *opaque)
{
    async_t *a = opaque;
    pthread_mutex_lock(&a->m);
    a->calls++;
    a->code = res->err.code;
    pthread_mutex_unlock(&a->m);
}

static void destroy_fails_calls_waiting_in_backoff(void **state)
{
    (void)state;
    proxy_t p;
    const char *extra[] = {"--fail-first", "100", NULL};
    proxy_start(&p, extra);
    /* Backoff of up to 60 s: destroy must not wait for it. */
    kn_client_t *c = client_for(p.url, "10", "60000");
    async_t a = {PTHREAD_MUTEX_INITIALIZER, 0, KN_ERR_OK};
    kn__aws_req_t req = {.service = KN__SVC_KINESIS, .operation = "ListStreams", .cb = async_cb, .opaque = &a};
    kn__buf_puts(&req.body, "{}");
    kn_error_t err;
    assert_int_equal(kn__aws_call(c, &req, &err), KN_ERR_OK);
    /* Wait until the first attempt failed (the call is then in backoff). */
    for (int i = 0; i < 500 && proxy_stat(&p, "requests") < 1; i++)
        usleep(10000);
    usleep(100000);
    time_t t0 = time(NULL);
    kn_client_destroy(c);
    assert_true(time(NULL) - t0 <= 2);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.code, KN_ERR_DESTROYED);
    kn_test_stop(p.pid);
}

/* A credential source that hangs cannot hold up destroy: the running refresh is cancelled. */
static void destroy_does_not_wait_for_a_hanging_credential_source(void **state)
{
    (void)state;
    char home[] = "/tmp/kn-aws-layer-XXXXXX";
    assert_non_null(mkdtemp(home));
    char *old_home = use_credential_process(home, "sleep 50");
    kn_client_t *c = client_with_chain(false);
    async_t a = {PTHREAD_MUTEX_INITIALIZER, 0, KN_ERR_OK};
    kn__aws_req_t req = {.service = KN__SVC_KINESIS, .operation = "ListStreams", .cb = async_cb, .opaque = &a};
    kn__buf_puts(&req.body, "{}");
    kn_error_t e;
    assert_int_equal(kn__aws_call(c, &req, &e), KN_ERR_OK);
    usleep(300000); /* the refresh is now running credential_process */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kn_client_destroy(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    assert_true(s < 10.0);
    assert_int_equal(a.calls, 1);
    assert_int_not_equal(a.code, KN_ERR_OK);
    restore_home(home, old_home);
}

/* Starts tests/servers/fixture_server.py with args; returns its pid, the port in *port. */
static pid_t start_fixture(const char *const *args, const char *port_file, int *port)
{
    char script[4096];
    snprintf(script, sizeof(script), "%s", kn_test_source_path("tests/servers/fixture_server.py"));
    const char *argv[24] = {"python3", script, "--port-file", port_file, "--quiet"};
    int n = 5;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    unlink(port_file);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execvp("python3", (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            int ok = fscanf(f, "%d", port) == 1;
            fclose(f);
            if (ok && *port > 0)
                return pid;
        }
        usleep(50000);
    }
    kill(pid, SIGKILL);
    fail_msg("fixture_server.py did not start");
    return -1;
}

/*
 * http.tls.verify=false turns verification off for the service endpoints
 * only, with a warning: credentials from an https container endpoint whose
 * certificate is not trusted are still refused, until the separate
 * aws.credentials.tls.verify=false says so too.
 */
static void credential_traffic_stays_verified(void **state)
{
    (void)state;
    char dir[] = "/tmp/kn-credtls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[6000], port_file[600], cert[600], key[600], url[128];
    snprintf(cmd, sizeof(cmd), "python3 '%s' --gen-certs '%s/certs' >/dev/null",
             kn_test_source_path("tests/servers/fixture_server.py"), dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cert, sizeof(cert), "%s/certs/server.pem", dir);
    snprintf(key, sizeof(key), "%s/certs/server.key", dir);
    snprintf(port_file, sizeof(port_file), "%s/port", dir);
    const char *route = "GET /creds {\"body_json\": {\"AccessKeyId\": \"AKIDCONTAINER\", "
                        "\"SecretAccessKey\": \"container-secret\", \"Token\": \"container-token\", "
                        "\"Expiration\": \"2099-01-01T00:00:00Z\"}}";
    const char *args[] = {"--cert", cert, "--key", key, "--route", route, NULL};
    int port = 0;
    pid_t pid = start_fixture(args, port_file, &port);
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/creds", port);
    char home[700];
    snprintf(home, sizeof(home), "%s/home", dir);
    char *old_home = use_credential_process(home, "false");
    /* No profile file step succeeds: the container endpoint is the source. */
    snprintf(cmd, sizeof(cmd), "rm -f '%s/.aws/config'", home);
    assert_int_equal(system(cmd), 0);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    for (int relax = 0; relax < 2; relax++) {
        kn_conf_t *conf = kn_conf_new();
        char err[512];
        assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", kn_test_server_url("KN_TEST_KINESALITE_URL"), err,
                                     sizeof(err)), KN_ERR_OK);
        assert_int_equal(kn_conf_set(conf, "http.tls.verify", "false", err, sizeof(err)), KN_ERR_OK);
        if (relax)
            assert_int_equal(kn_conf_set(conf, "aws.credentials.tls.verify", "false", err, sizeof(err)), KN_ERR_OK);
        kn_conf_set_log_cb(conf, collect_log, NULL);
        pthread_mutex_lock(&log_lock);
        size_t mark = log_len;
        pthread_mutex_unlock(&log_lock);
        kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
        kn_conf_destroy(conf);
        assert_non_null(c);
        kn_error_t e;
        kn__error_clear(&e);
        kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e);
        kn_client_destroy(c);
        pthread_mutex_lock(&log_lock);
        bool warned = log_text && strstr(log_text + mark, "http.tls.verify=false") != NULL;
        bool warned_creds = log_text && strstr(log_text + mark, "aws.credentials.tls.verify=false") != NULL;
        pthread_mutex_unlock(&log_lock);
        print_message("relax %d: %s: %s\n", relax, kn_err2name(rc), e.message);
        assert_true(warned);
        if (!relax) {
            assert_int_not_equal(rc, KN_ERR_OK);
            if (!strstr(e.message, "certificate") && !strstr(e.message, "TLS") && !strstr(e.message, "SSL"))
                fail_msg("the refusal does not name the certificate: %s", e.message);
        } else {
            if (rc != KN_ERR_OK)
                fail_msg("with aws.credentials.tls.verify=false: %s", e.message);
            assert_true(warned_creds);
        }
    }
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    restore_home(dir, old_home);
}

/* A session token sent over plain http:// to a host that is not this machine is warned about, once. */
static void session_token_over_plain_http_is_warned_about(void **state)
{
    (void)state;
    /* 127.0.0.2 is this machine too, but the client cannot tell: "localhost" and 127.* are exempt. */
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", "http://kinesis.example.invalid:1", err, sizeof(err)),
                     KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDPLAIN", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", SECRET, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.session.token", TOKEN, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.max.attempts", "1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "http.connect.timeout.ms", "500", err, sizeof(err)), KN_ERR_OK);
    kn_conf_set_log_cb(conf, collect_log, NULL);
    pthread_mutex_lock(&log_lock);
    size_t mark = log_len;
    pthread_mutex_unlock(&log_lock);
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(c);
    for (int i = 0; i < 3; i++) {
        kn_error_t e;
        kn__error_clear(&e);
        kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e);
    }
    kn_client_destroy(c);
    pthread_mutex_lock(&log_lock);
    const char *a = strstr(log_text + mark, "a session token goes to kinesis.example.invalid:1 over plain http://");
    const char *b = a ? strstr(a + 40, "a session token goes to") : NULL;
    pthread_mutex_unlock(&log_lock);
    assert_non_null(a);
    assert_null(b);
}

/*
 * Self-contained, with the logger's safety net (the replacement of registered
 * secrets) turned off: static keys with a session token, keys from a
 * credential_process, calls that succeed, fail with a service error, are
 * retried after 500s and after a clock-skew answer, all at trace level with
 * debug=all. Not one line may hold a secret, so no code path formats one.
 */
static void secrets_are_never_formatted_into_log_messages(void **state)
{
    (void)state;
    pthread_mutex_lock(&log_lock);
    size_t mark = log_len;
    pthread_mutex_unlock(&log_lock);
    atomic_store(&kn__log_safety_net_off, true);
    kn_error_t e;
    /* Static keys. */
    kn_client_t *c = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3", "10");
    kn__error_clear(&e);
    assert_int_equal(kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e), KN_ERR_OK);
    const char *bad = "{\"StreamName\":\"kn-no-such-stream-secret-test\"}";
    kn__error_clear(&e);
    assert_int_equal(kn__aws_call_sync(c, KN__SVC_KINESIS, "DescribeStreamSummary", bad, strlen(bad), NULL, &e),
                     KN_ERR_NOT_FOUND);
    kn_client_destroy(c);
    proxy_t p1, p2;
    const char *fail2[] = {"--fail-first", "2", NULL};
    kn__error_clear(&e);
    assert_int_equal(list_streams_via_proxy(&p1, fail2, "5", &e), KN_ERR_OK);
    kn_test_stop(p1.pid);
    const char *skew[] = {"--skew-seconds", "3600", NULL};
    kn__error_clear(&e);
    assert_int_equal(list_streams_via_proxy(&p2, skew, "5", &e), KN_ERR_OK);
    kn_test_stop(p2.pid);
    /* Keys from a credential_process. */
    char home[] = "/tmp/kn-aws-layer-XXXXXX";
    assert_non_null(mkdtemp(home));
    char path[512];
    snprintf(path, sizeof(path), "%s/creds.sh", home);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nprintf '{\"Version\":1,\"AccessKeyId\":\"AKIDPROC\",\"SecretAccessKey\":\"%s\","
               "\"SessionToken\":\"%s\"}'\n", SECRET, TOKEN);
    fclose(f);
    chmod(path, 0700);
    char *old_home = use_credential_process(home, path);
    c = client_with_chain(true);
    kn__error_clear(&e);
    assert_int_equal(kn__aws_call_sync(c, KN__SVC_KINESIS, "ListStreams", "{}", 2, NULL, &e), KN_ERR_OK);
    kn_client_destroy(c);
    restore_home(home, old_home);
    atomic_store(&kn__log_safety_net_off, false);

    pthread_mutex_lock(&log_lock);
    const char *mine = log_text ? log_text + mark : "";
    size_t lines = 0;
    for (const char *q = mine; *q; q++)
        lines += *q == '\n';
    bool leak = strstr(mine, SECRET) || strstr(mine, TOKEN) || strstr(mine, "wJalrXUtnFEMI");
    bool traced = strstr(mine, "X-Amz-Security-Token") != NULL && strstr(mine, "Authorization") != NULL;
    pthread_mutex_unlock(&log_lock);
    print_message("secrets: %zu log lines with the safety net off\n", lines);
    assert_true(lines > 20);
    assert_true(traced); /* the headers were logged, with their values cut */
    assert_false(leak);
}

static void no_secret_reaches_the_log_at_trace_level(void **state)
{
    (void)state;
    /* Every test above logged at trace level with debug=all into log_text, with the safety net on. */
    pthread_mutex_lock(&log_lock);
    if (getenv("KN_TEST_VERBOSE"))
        fputs(log_text, stderr);
    assert_true(log_lines > 20);
    assert_null(strstr(log_text, SECRET));
    assert_null(strstr(log_text, TOKEN));
    assert_null(strstr(log_text, "wJalrXUtnFEMI"));
    pthread_mutex_unlock(&log_lock);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_streams_succeeds_against_kinesalite),
        cmocka_unit_test(long_session_token_is_sent),
        cmocka_unit_test(service_errors_fail_fast_with_the_service_message),
        cmocka_unit_test(server_errors_are_retried_until_success),
        cmocka_unit_test(retries_end_after_max_attempts_with_the_last_error),
        cmocka_unit_test(validation_errors_are_not_retried),
        cmocka_unit_test(connection_resets_are_retried),
        cmocka_unit_test(clock_skew_is_corrected_from_the_response_date),
        cmocka_unit_test(signature_errors_without_skew_fail_fast),
        cmocka_unit_test(expired_token_refreshes_credentials_and_retries_once),
        cmocka_unit_test(connection_refused_names_the_endpoint),
        cmocka_unit_test(destroy_fails_calls_waiting_in_backoff),
        cmocka_unit_test(temporary_credentials_are_refreshed_in_the_background),
        cmocka_unit_test(destroy_does_not_wait_for_a_hanging_credential_source),
        cmocka_unit_test(credential_traffic_stays_verified),
        cmocka_unit_test(session_token_over_plain_http_is_warned_about),
        cmocka_unit_test(secrets_are_never_formatted_into_log_messages),
        cmocka_unit_test(no_secret_reaches_the_log_at_trace_level),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    free(log_text);
    return rc;
}
