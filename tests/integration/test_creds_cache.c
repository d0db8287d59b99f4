/*
 * The credentials cache with an injected clock, fed by a real
 * credential_process script whose answers the test changes between calls:
 * refresh five minutes before expiry, a failed refresh keeping the old keys
 * until they really expire, and concurrent refreshes never overlapping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "creds.h"
#include "err.h"
#include "test_creds_util.h"

#define E0 ((time_t)1893456000) /* 2030-01-01T00:00:00Z */

static time_t fake_now;
static time_t fake_clock(void) { return fake_now; }

/* The script answers with keys named after ~/mode and the expiry in ~/exp, or fails on "fail". */
static const char *script =
    "#!/bin/sh\n"
    "n=$(cat \"$HOME/count\" 2>/dev/null || echo 0)\n"
    "echo $((n + 1)) > \"$HOME/count\"\n"
    "if ! mkdir \"$HOME/running\" 2>/dev/null; then echo 'overlapping run' >&2; exit 2; fi\n"
    "sleep \"$(cat \"$HOME/delay\" 2>/dev/null || echo 0)\"\n"
    "rmdir \"$HOME/running\"\n"
    "mode=$(cat \"$HOME/mode\")\n"
    "if [ \"$mode\" = fail ]; then echo 'sts is down' >&2; exit 1; fi\n"
    "printf '{\"Version\": 1, \"AccessKeyId\": \"AKID%s\", \"SecretAccessKey\": \"secret%s\", "
    "\"SessionToken\": \"token\", \"Expiration\": \"%s\"}' \"$mode\" \"$mode\" \"$(cat "
    "\"$HOME/exp\")\"\n";

static void set_answer(const char *mode, time_t exp)
{
    char when[32];
    struct tm tm;
    gmtime_r(&exp, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    kn_t_write("mode", mode, 0600);
    kn_t_write("exp", when, 0600);
}

static int runs(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/count", kn_t_home);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (f) {
        if (fscanf(f, "%d", &n) != 1)
            n = -1;
        fclose(f);
    }
    return n;
}

static kn__creds_cache_t *cache;

static int setup(void **state)
{
    (void)state;
    kn_t_scrub_env();
    kn_t_write("creds.sh", script, 0700);
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "[default]\ncredential_process = %s/creds.sh\n", kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_opts_t o;
    memset(&o, 0, sizeof(o));
    o.tls_verify = true;
    cache = kn__creds_cache_new(&o);
    if (!cache)
        return -1;
    kn__creds_cache_set_clock(cache, fake_clock);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kn__creds_cache_destroy(cache);
    cache = NULL;
    kn_t_cleanup_home();
    return 0;
}

static void get_expect(const char *akid)
{
    kn__creds_t c;
    kn_error_t e;
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_get(cache, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, akid);
    kn__creds_free(&c);
}

static void refreshes_five_minutes_before_expiry(void **state)
{
    (void)state;
    kn__creds_t c;
    fake_now = E0 - 3600;
    assert_int_equal(kn__creds_cache_peek(cache, &c), KN__CREDS_NONE);
    set_answer("A", E0);
    get_expect("AKIDA");
    assert_int_equal(runs(), 1);
    assert_int_equal(kn__creds_cache_peek(cache, NULL), KN__CREDS_VALID);

    fake_now = E0 - KN__CREDS_REFRESH_BEFORE_S - 1; /* just outside the window: no refresh */
    set_answer("B", E0 + 3600);
    get_expect("AKIDA");
    assert_int_equal(runs(), 1);

    fake_now = E0 - KN__CREDS_REFRESH_BEFORE_S + 1; /* inside the window */
    assert_int_equal(kn__creds_cache_peek(cache, &c), KN__CREDS_REFRESH_DUE);
    assert_string_equal(c.access_key_id, "AKIDA"); /* still usable */
    kn__creds_free(&c);
    get_expect("AKIDB");
    assert_int_equal(runs(), 2);
    assert_int_equal(kn__creds_cache_peek(cache, &c), KN__CREDS_VALID);
    assert_int_equal((long long)c.expiration, (long long)(E0 + 3600));
    kn__creds_free(&c);
}

static void failed_refresh_keeps_old_credentials_until_they_expire(void **state)
{
    (void)state;
    kn__creds_t c;
    kn_error_t e;
    fake_now = E0 - 3600;
    set_answer("A", E0);
    get_expect("AKIDA");

    set_answer("fail", E0);
    fake_now = E0 - 200;
    get_expect("AKIDA"); /* the refresh ran, failed, and the old keys were served */
    assert_int_equal(runs(), 2);
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_refresh(cache, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "exited with status 1: sts is down"));
    assert_int_equal(runs(), 3);
    assert_int_equal(kn__creds_cache_peek(cache, &c), KN__CREDS_REFRESH_DUE);
    assert_string_equal(c.access_key_id, "AKIDA");
    kn__creds_free(&c);

    fake_now = E0 - 195; /* right after a failure get() does not retry on every call */
    get_expect("AKIDA");
    assert_int_equal(runs(), 3);

    fake_now = E0; /* really expired now */
    assert_int_equal(kn__creds_cache_peek(cache, &c), KN__CREDS_NONE);
    assert_null(c.access_key_id);
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_get(cache, &c, &e), KN_ERR_CREDENTIALS);
    assert_null(c.access_key_id);
    assert_non_null(strstr(e.message, "sts is down"));

    set_answer("C", E0 + 7200); /* the source recovers */
    get_expect("AKIDC");
}

static void credentials_that_arrive_expired_are_an_error(void **state)
{
    (void)state;
    kn__creds_t c;
    kn_error_t e;
    fake_now = E0 + 10;
    set_answer("A", E0);
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_get(cache, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "already expired"));
    assert_null(c.access_key_id);
}

/*
 * A background refresher (the client's loop) asks refresh_wanted() before
 * each refresh: missing credentials always want one; inside the window a
 * failed source, or keys that arrive already inside the window, are not run
 * again for every request.
 */
static void refresh_wanted_spaces_out_refreshes_inside_the_window(void **state)
{
    (void)state;
    kn_error_t e;
    fake_now = E0 - 3600;
    assert_true(kn__creds_cache_refresh_wanted(cache)); /* nothing cached yet */
    set_answer("A", E0);
    assert_int_equal(kn__creds_cache_refresh(cache, NULL), KN_ERR_OK);
    assert_false(kn__creds_cache_refresh_wanted(cache)); /* valid, outside the window */

    fake_now = E0 - 200; /* inside the window, last attempt long ago */
    assert_true(kn__creds_cache_refresh_wanted(cache));
    set_answer("fail", E0);
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_refresh(cache, &e), KN_ERR_CREDENTIALS);
    int n = runs();
    fake_now = E0 - 195; /* right after the failure */
    assert_false(kn__creds_cache_refresh_wanted(cache));
    fake_now = E0 - 185; /* the gap has passed */
    assert_true(kn__creds_cache_refresh_wanted(cache));

    /* Keys that arrive already inside the window: not asked again at once. */
    set_answer("B", E0 + 100);
    assert_int_equal(kn__creds_cache_refresh(cache, NULL), KN_ERR_OK);
    assert_int_equal(runs(), n + 1);
    assert_false(kn__creds_cache_refresh_wanted(cache));

    fake_now = E0 + 100; /* expired: always wanted, whatever the gap */
    assert_true(kn__creds_cache_refresh_wanted(cache));
}

/* ---- cancellation at shutdown ---- */

typedef struct cancel_run_s {
    kn__creds_cache_t *cache;
    kn_err_t rc;
    char message[768];
} cancel_run_t;

static void *refresh_thread(void *arg)
{
    cancel_run_t *r = arg;
    kn_error_t e;
    kn__error_clear(&e);
    r->rc = kn__creds_cache_refresh(r->cache, &e);
    snprintf(r->message, sizeof(r->message), "%s", e.message);
    return NULL;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Starts a refresh on a thread, cancels it after 300 ms, returns how long the refresh took. */
static double cancel_during_refresh(kn__creds_cache_t *c, cancel_run_t *r)
{
    pthread_t t;
    r->cache = c;
    double t0 = now_s();
    assert_int_equal(pthread_create(&t, NULL, refresh_thread, r), 0);
    struct timespec pause = {0, 300 * 1000000};
    nanosleep(&pause, NULL);
    kn__creds_cache_cancel(c);
    pthread_join(t, NULL);
    return now_s() - t0;
}

/*
 * A credential_process that hangs (up to its 60 s limit) does not hold the
 * client's shutdown: cancel kills it and the refresh ends with
 * KN_ERR_DESTROYED; later refreshes give up at once.
 */
static void cancel_stops_a_hanging_credential_process(void **state)
{
    (void)state;
    fake_now = E0 - 3600;
    set_answer("A", E0);
    kn_t_write("delay", "60", 0600);
    cancel_run_t r;
    double took = cancel_during_refresh(cache, &r);
    assert_int_equal(r.rc, KN_ERR_DESTROYED);
    assert_non_null(strstr(r.message, "shutting down"));
    assert_true(took < 20.0);
    kn_error_t e;
    kn__error_clear(&e);
    assert_int_equal(kn__creds_cache_refresh(cache, &e), KN_ERR_DESTROYED);
}

/* The same for an HTTP endpoint that accepts the connection and never answers. */
static void cancel_aborts_a_hanging_credentials_endpoint(void **state)
{
    (void)state;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 4), 0); /* the kernel completes the handshake; nobody answers */
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/creds", ntohs(a.sin_port));
    kn_t_write(".aws/config", "", 0600); /* no profile: the chain reaches the container step */
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    kn__creds_opts_t o;
    memset(&o, 0, sizeof(o));
    o.tls_verify = true;
    o.timeout_ms = 60000;
    kn__creds_cache_t *c = kn__creds_cache_new(&o);
    assert_non_null(c);
    cancel_run_t r;
    double took = cancel_during_refresh(c, &r);
    unsetenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    close(ls);
    kn__creds_cache_destroy(c);
    assert_int_equal(r.rc, KN_ERR_DESTROYED);
    assert_non_null(strstr(r.message, "cancelled"));
    assert_true(took < 20.0);
}

static pthread_barrier_t barrier;
static kn_err_t thread_rc[4];

static void *refresher(void *arg)
{
    size_t i = (size_t)arg;
    kn_error_t e;
    kn__error_clear(&e);
    pthread_barrier_wait(&barrier);
    thread_rc[i] = kn__creds_cache_refresh(cache, &e);
    if (thread_rc[i] != KN_ERR_OK)
        fprintf(stderr, "thread %zu: %s\n", i, e.message);
    return NULL;
}

static void concurrent_refreshes_are_serialised(void **state)
{
    (void)state;
    fake_now = E0 - 3600;
    set_answer("A", E0);
    kn_t_write("delay", "0.3", 0600);
    pthread_t t[4];
    pthread_barrier_init(&barrier, NULL, 4);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, refresher, (void *)i), 0);
    for (size_t i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&barrier);
    /* the script exits 2 when a second copy starts while one runs */
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(thread_rc[i], KN_ERR_OK);
    int n = runs();
    assert_true(n >= 1 && n <= 4);
    get_expect("AKIDA");
    assert_int_equal(runs(), n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(refreshes_five_minutes_before_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_refresh_keeps_old_credentials_until_they_expire,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(credentials_that_arrive_expired_are_an_error, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(refresh_wanted_spaces_out_refreshes_inside_the_window,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_stops_a_hanging_credential_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(cancel_aborts_a_hanging_credentials_endpoint, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(concurrent_refreshes_are_serialised, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
