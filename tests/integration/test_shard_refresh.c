/*
 * The shard map refresher (producer/shard_map.c) against real servers:
 * - a refreshed map of a 4-shard stream agrees with where kinesalite and
 *   moto put records (partition keys through MD5, and explicit hash keys at
 *   every shard boundary);
 * - after SplitShard a new refresh shows the children and not the parent;
 * - requests during a running refresh are merged into one more run (counted
 *   by the fault proxy, which slows ListShards down so the requests land
 *   inside the run);
 * - a failing endpoint is reported, and requests after failures wait for a
 *   growing, jittered backoff; a success resets it;
 * - many refreshers run at once (asynchronous calls, no pool threads);
 * - close during a running refresh, before it starts, and inside the
 *   callback frees everything (the ASan build checks for leaks).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "client.h"
#include "hashkey.h"
#include "kinesis_ops.h"
#include "shard_map.h"
#include "test_new.h"
#include "testutil.h"

typedef unsigned __int128 u128;

static u128 u(kn__hashkey_t k) { return ((u128)k.hi << 64) | k.lo; }
static kn__hashkey_t hk(u128 v)
{
    kn__hashkey_t k = {(uint64_t)(v >> 64), (uint64_t)v};
    return k;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

#define CHECK(call, e) \
    do { \
        kn_err_t rc_ = (call); \
        if (rc_ != KN_ERR_OK) \
            fail_msg("%s failed: %s: %s", #call, kn_err2name(rc_), (e).message); \
    } while (0)

/* ------------------------------------------------------------- clients */

static kn_client_t *client_for(const char *url, const char *max_attempts)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", url, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDSHARDMAP", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", "shard-map-secret", err, sizeof(err)),
                     KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.max.attempts", max_attempts, err, sizeof(err)), KN_ERR_OK);
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    if (!c)
        fail_msg("kn_client_new: %s", err);
    kn_conf_destroy(conf);
    return c;
}

static void unique_name(char *out, size_t size, const char *tag)
{
    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "knsm-%d-%08lx-%u-%s", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffffUL, ++seq, tag);
}

static void create_active(kn_client_t *c, const char *name, int shards)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {name, NULL};
    CHECK(kn__kinesis_create_stream(c, name, shards, &e), e);
    CHECK(kn__kinesis_wait_active(c, &ref, 30000, 100, &e), e);
}

static void delete_stream(kn_client_t *c, const char *name)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {name, NULL};
    kn__kinesis_delete_stream(c, &ref, true, &e); /* best effort */
}

/* ------------------------------------------------------- the fault proxy */

typedef struct proxy_s {
    pid_t pid;
    int port;
    char url[64];
} proxy_t;

static void proxy_start(proxy_t *p, const char *const *extra)
{
    char script[4096];
    snprintf(script, sizeof(script), "%s", kn_test_source_path("tests/faults/fault_proxy.py"));
    const char *argv[32] = {"python3", script, kn_test_server_url("KN_TEST_KINESALITE_URL")};
    int n = 3;
    for (int i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    p->pid = kn_test_spawn_port((char *const *)argv, &p->port);
    snprintf(p->url, sizeof(p->url), "http://127.0.0.1:%d", p->port);
}

/* A counter from the proxy's stats, read with a plain socket (a Python client starts too slowly here). */
static long proxy_stat(const proxy_t *p, const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    static const char req[] = "GET /__proxy/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    assert_non_null(body);
    json_object *j = json_tokener_parse(body + 4);
    json_object *v = NULL;
    if (!j || !json_object_object_get_ex(j, name, &v))
        fail_msg("proxy stats without \"%s\": %s", name, body + 4);
    long r = (long)json_object_get_int64(v);
    json_object_put(j);
    return r;
}

/* A loopback port with nothing listening on it. */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ------------------------------------------------- running on the loop */

typedef struct sync_task_s {
    void (*fn)(void *arg);
    void *arg;
    int done;
    pthread_mutex_t m;
    pthread_cond_t cv;
} sync_task_t;

static void sync_task_run(kn_client_t *c, void *arg)
{
    (void)c;
    sync_task_t *t = arg;
    t->fn(t->arg);
    pthread_mutex_lock(&t->m);
    t->done = 1;
    pthread_cond_signal(&t->cv);
    pthread_mutex_unlock(&t->m);
}

/* Runs fn(arg) on the client's loop thread and waits for it. */
static void on_loop(kn_client_t *c, void (*fn)(void *), void *arg)
{
    sync_task_t t = {.fn = fn, .arg = arg};
    pthread_mutex_init(&t.m, NULL);
    pthread_cond_init(&t.cv, NULL);
    assert_int_equal(kn__client_post(c, sync_task_run, &t), KN_ERR_OK);
    pthread_mutex_lock(&t.m);
    while (!t.done)
        pthread_cond_wait(&t.cv, &t.m);
    pthread_mutex_unlock(&t.m);
    pthread_mutex_destroy(&t.m);
    pthread_cond_destroy(&t.cv);
}

/* --------------------------------------------- a refresher and its results */

#define MAX_EVENTS 32

typedef struct event_s {
    long at_ms;
    bool ok;
    kn_err_t code;
    char message[768];
    uint64_t version;
    kn__shard_refresher_stats_t stats; /* right after the run */
} event_t;

typedef struct ctx_s {
    kn_client_t *c;
    kn__stream_ref_t ref;
    kn__shard_refresher_t *r;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int nevents;
    event_t ev[MAX_EVENTS];
    kn__shard_map_t *map;  /* the latest map (owned) */
    int rerequest_left;    /* ask again from inside the callback this many times */
    bool close_in_cb;      /* close the refresher inside the next callback */
    int burst;             /* requests made by req_burst */
} ctx_t;

static void on_map(kn__shard_map_t *map, const kn_error_t *err, void *opaque)
{
    ctx_t *x = opaque;
    assert_true(kn__client_on_loop(x->c));
    event_t ev = {.at_ms = now_ms(), .ok = map != NULL};
    if (map) {
        ev.version = kn__shard_map_version(map);
    } else {
        ev.code = err->code;
        snprintf(ev.message, sizeof(ev.message), "%s", err->message);
    }
    kn__shard_refresher_stats(x->r, &ev.stats);
    if (x->close_in_cb) {
        kn__shard_refresher_close(x->r);
        x->close_in_cb = false;
    } else if (x->rerequest_left > 0) {
        x->rerequest_left--;
        kn__shard_refresher_request(x->r);
    }
    pthread_mutex_lock(&x->m);
    if (map) {
        kn__shard_map_unref(x->map);
        x->map = map;
    }
    if (x->nevents < MAX_EVENTS)
        x->ev[x->nevents] = ev;
    x->nevents++;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->m);
}

static void ctx_init(ctx_t *x, kn_client_t *c, const char *stream)
{
    memset(x, 0, sizeof(*x));
    x->c = c;
    x->ref.name = stream;
    pthread_mutex_init(&x->m, NULL);
    pthread_cond_init(&x->cv, NULL);
}

static void ctx_free(ctx_t *x)
{
    kn__shard_map_unref(x->map);
    pthread_mutex_destroy(&x->m);
    pthread_cond_destroy(&x->cv);
}

static void do_new(void *arg)
{
    ctx_t *x = arg;
    x->r = kn__shard_refresher_new(x->c, &x->ref, on_map, x);
}

static void do_request(void *arg)
{
    ctx_t *x = arg;
    kn__shard_refresher_request(x->r);
}

static void do_close(void *arg)
{
    ctx_t *x = arg;
    kn__shard_refresher_close(x->r);
}

static void req_burst(void *arg)
{
    ctx_t *x = arg;
    for (int i = 0; i < x->burst; i++)
        kn__shard_refresher_request(x->r);
}

/* A burst only while the first run is still going (decided on the loop thread, so without a race). */
static void req_burst_if_running(void *arg)
{
    ctx_t *x = arg;
    kn__shard_refresher_stats_t st;
    kn__shard_refresher_stats(x->r, &st);
    pthread_mutex_lock(&x->m);
    bool first_done = x->nevents > 0;
    pthread_mutex_unlock(&x->m);
    if (st.runs == 1 && !first_done) {
        req_burst(x);
        x->burst = -1; /* tells the test it happened */
    }
}

static void refresher_new(ctx_t *x)
{
    on_loop(x->c, do_new, x);
    assert_non_null(x->r);
}

/* Waits until n callbacks came, at most timeout_ms; returns the count. */
static int wait_events(ctx_t *x, int n, long timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&x->m);
    while (x->nevents < n && pthread_cond_timedwait(&x->cv, &x->m, &dl) == 0)
        ;
    int got = x->nevents;
    pthread_mutex_unlock(&x->m);
    return got;
}

/* Requests a refresh and returns the map it produced (borrowed from x). */
static kn__shard_map_t *refresh_once(ctx_t *x)
{
    int before = x->nevents;
    on_loop(x->c, do_request, x);
    assert_int_equal(wait_events(x, before + 1, 60000), before + 1);
    event_t *ev = &x->ev[before];
    if (!ev->ok)
        fail_msg("refresh failed: %s", ev->message);
    return x->map;
}

typedef struct stats_req_s {
    ctx_t *x;
    kn__shard_refresher_stats_t stats;
    bool busy;
} stats_req_t;

static void do_stats(void *arg)
{
    stats_req_t *s = arg;
    kn__shard_refresher_stats(s->x->r, &s->stats);
    s->busy = kn__shard_refresher_busy(s->x->r);
}

static stats_req_t get_stats(ctx_t *x)
{
    stats_req_t s = {.x = x};
    on_loop(x->c, do_stats, &s);
    return s;
}

/* ------------------------------------------------------------- servers */

typedef struct server_s {
    const char *label;
    const char *env;
    bool moto;
} server_t;

static server_t kinesalite = {"kinesalite", "KN_TEST_KINESALITE_URL", false};
static server_t moto = {"moto", "KN_TEST_MOTO_URL", true};

/* ---------------------------------------------------------------- tests */

/*
 * The map of a 4-shard stream covers the range and agrees with the service:
 * records put with random partition keys land on the shard the map's lookup
 * of MD5(key) names, and records with an explicit hash key at the start and
 * the end of every shard land on that shard.
 */
static void test_map_agrees_with_where_records_land(void **state)
{
    server_t *s = *state;
    kn_client_t *c = client_for(kn_test_server_url(s->env), "3");
    char name[128];
    unique_name(name, sizeof(name), "agree");
    create_active(c, name, 4);

    ctx_t x;
    ctx_init(&x, c, name);
    refresher_new(&x);
    kn__shard_map_t *m = refresh_once(&x);
    assert_int_equal(kn__shard_map_count(m), 4);
    assert_true(u(kn__shard_map_at(m, 0)->start) == 0);
    assert_true(u(kn__shard_map_at(m, 3)->end) == ~(u128)0);
    assert_true(kn__shard_map_version(m) > 0);

    /* 40 random partition keys. */
    enum { NKEYS = 40 };
    char keys[NKEYS][32];
    kn__put_entry_t ents[NKEYS + 8];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "pk-%d-%ld", i, (long)rand());
        ents[i] = (kn__put_entry_t){"r", 1, keys[i], strlen(keys[i]), NULL, 0};
    }
    /*
     * Explicit hash keys at both ends of each shard. moto treats a shard's
     * EndingHashKey as exclusive (it answers 500 for a key equal to one):
     * there the last key but one stands in for the end.
     */
    char ehk[8][KN__HASHKEY_STRLEN];
    for (int i = 0; i < 8; i++) {
        const kn__shard_entry_t *e = kn__shard_map_at(m, (size_t)i / 2);
        kn__hashkey_t end = s->moto ? hk(u(e->end) - 1) : e->end;
        size_t len = kn__hashkey_format(i % 2 ? end : e->start, ehk[i]);
        ents[NKEYS + i] = (kn__put_entry_t){"e", 1, "ehk", 3, ehk[i], len};
    }
    kn__put_result_t res = {0};
    kn_error_t e = {0};
    CHECK(kn__kinesis_put_records(c, &x.ref, ents, NKEYS + 8, &res, &e), e);
    assert_int_equal(res.failed_count, 0);
    int used[4] = {0};
    for (int i = 0; i < NKEYS; i++) {
        kn__hashkey_t k = kn__hashkey_from_partition_key(keys[i], strlen(keys[i]));
        const kn__shard_entry_t *en = kn__shard_map_lookup(m, k);
        if (strcmp(res.entries[i].shard_id, en->shard_id))
            fail_msg("%s: key %s went to %s, the map says %s", s->label, keys[i], res.entries[i].shard_id,
                     en->shard_id);
        used[en->index]++;
    }
    for (int i = 0; i < 8; i++) {
        const char *want = kn__shard_map_at(m, (size_t)i / 2)->shard_id;
        if (strcmp(res.entries[NKEYS + i].shard_id, want))
            fail_msg("%s: explicit hash key %s went to %s, the map says %s", s->label, ehk[i],
                     res.entries[NKEYS + i].shard_id, want);
        assert_ptr_equal(kn__shard_map_lookup(m, kn__shard_map_at(m, (size_t)i / 2)->end),
                         kn__shard_map_at(m, (size_t)i / 2));
    }
    /* 40 random keys over 4 even shards: each gets some (all in one shard has odds ~1e-15). */
    assert_true(used[0] + used[1] + used[2] + used[3] == NKEYS);
    kn__put_result_free(&res);

    on_loop(c, do_close, &x);
    delete_stream(c, name);
    kn_client_destroy(c);
    ctx_free(&x);
}

/* After SplitShard (and the stream back to ACTIVE) a new refresh shows both children and not the parent. */
static void test_split_shows_children_not_parent(void **state)
{
    server_t *s = *state;
    kn_client_t *c = client_for(kn_test_server_url(s->env), "3");
    char name[128];
    unique_name(name, sizeof(name), "split");
    create_active(c, name, 2);

    ctx_t x;
    ctx_init(&x, c, name);
    refresher_new(&x);
    kn__shard_map_t *m1 = kn__shard_map_ref(refresh_once(&x));
    assert_int_equal(kn__shard_map_count(m1), 2);
    const kn__shard_entry_t *parent = kn__shard_map_at(m1, 0);
    u128 ps = u(parent->start), pe = u(parent->end);
    u128 mid = ps + (pe - ps) / 2 + 1;

    kn_error_t e = {0};
    CHECK(kn__kinesis_split_shard(c, &x.ref, parent->shard_id, hk(mid), &e), e);
    CHECK(kn__kinesis_wait_active(c, &x.ref, 30000, 100, &e), e);

    kn__shard_map_t *m2 = refresh_once(&x);
    assert_int_equal(kn__shard_map_count(m2), 3);
    assert_true(kn__shard_map_version(m2) > kn__shard_map_version(m1));
    assert_null(kn__shard_map_find(m2, parent->shard_id));
    const kn__shard_entry_t *lo = kn__shard_map_lookup(m2, hk(mid - 1));
    const kn__shard_entry_t *hi = kn__shard_map_lookup(m2, hk(mid));
    assert_string_not_equal(lo->shard_id, parent->shard_id);
    assert_string_not_equal(hi->shard_id, parent->shard_id);
    assert_string_not_equal(lo->shard_id, hi->shard_id);
    assert_true(u(lo->start) == ps && u(lo->end) == mid - 1);
    assert_true(u(hi->start) == mid && u(hi->end) == pe);
    /* The other shard did not change. */
    const kn__shard_entry_t *other = kn__shard_map_find(m2, kn__shard_map_at(m1, 1)->shard_id);
    assert_non_null(other);
    assert_int_equal(other->index, 2);

    /*
     * And the service agrees: a key on each side of the split lands on the
     * child the map names. moto keeps routing records to the closed parent
     * (unlike the service and kinesalite), so this part runs on kinesalite.
     */
    if (!s->moto) {
        char a[KN__HASHKEY_STRLEN], b[KN__HASHKEY_STRLEN];
        size_t al = kn__hashkey_format(hk(mid - 1), a), bl = kn__hashkey_format(hk(mid), b);
        kn__put_entry_t ents[2] = {{"a", 1, "k", 1, a, al}, {"b", 1, "k", 1, b, bl}};
        kn__put_result_t res = {0};
        CHECK(kn__kinesis_put_records(c, &x.ref, ents, 2, &res, &e), e);
        assert_string_equal(res.entries[0].shard_id, lo->shard_id);
        assert_string_equal(res.entries[1].shard_id, hi->shard_id);
        kn__put_result_free(&res);
    }

    kn__shard_map_unref(m1);
    on_loop(c, do_close, &x);
    delete_stream(c, name);
    kn_client_destroy(c);
    ctx_free(&x);
}

/*
 * Requests during a running refresh (ListShards slowed down by the proxy)
 * make exactly one more run: 10 requests at once, then 10 more while the
 * first run is still on the pool, give 2 ListShards and 2 callbacks.
 */
static void test_concurrent_requests_are_merged(void **state)
{
    (void)state;
    kn_client_t *direct = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3");
    char name[128];
    unique_name(name, sizeof(name), "dedup");
    create_active(direct, name, 1);

    proxy_t p;
    const char *extra[] = {"--delay-ms", "1500", NULL};
    proxy_start(&p, extra);
    kn_client_t *c = client_for(p.url, "1");
    ctx_t x;
    ctx_init(&x, c, name);
    refresher_new(&x);
    x.burst = 10;
    on_loop(c, req_burst, &x); /* the first starts a run, 9 more mark it pending */
    stats_req_t st = get_stats(&x);
    assert_int_equal(st.stats.runs, 1);
    assert_true(st.busy);
    /* 10 more while the first run still waits on the proxy (it has not reached it yet or is delayed there). */
    for (int i = 0; i < 500 && proxy_stat(&p, "requests") < 1; i++)
        usleep(10000);
    on_loop(c, req_burst_if_running, &x);
    assert_int_equal(x.burst, -1); /* 1.5 s per ListShards: the first run cannot be over yet */
    assert_int_equal(wait_events(&x, 2, 30000), 2);
    assert_true(x.ev[0].ok);
    assert_true(x.ev[1].ok);
    assert_true(x.ev[1].version > x.ev[0].version);
    /* Nothing more follows. */
    usleep(1500 * 1000);
    assert_int_equal(x.nevents, 2);
    st = get_stats(&x);
    assert_int_equal(st.stats.runs, 2);
    assert_false(st.busy);
    assert_int_equal(proxy_stat(&p, "requests"), 2);

    on_loop(c, do_close, &x);
    kn_client_destroy(c);
    kn_test_stop(p.pid);
    delete_stream(direct, name);
    kn_client_destroy(direct);
    ctx_free(&x);
}

/*
 * A closed port: every run fails and is reported with the stream's name;
 * asking again from each callback starts the next run only after the drawn
 * delay, whose ceiling doubles from 100 ms. The refresher does not retry on
 * its own.
 */
static void test_failing_endpoint_backs_off(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", closed_port());
    kn_client_t *c = client_for(url, "1");
    char name[128];
    unique_name(name, sizeof(name), "nowhere");
    enum { RUNS = 6 };
    ctx_t x;
    ctx_init(&x, c, name);
    refresher_new(&x);
    x.rerequest_left = RUNS - 1;
    on_loop(c, do_request, &x);
    assert_int_equal(wait_events(&x, RUNS, 60000), RUNS);
    long total_gap = 0;
    for (int i = 0; i < RUNS; i++) {
        event_t *ev = &x.ev[i];
        assert_false(ev->ok);
        assert_int_equal(ev->code, KN_ERR_TRANSPORT);
        if (!strstr(ev->message, name) || !strstr(ev->message, "ListShards"))
            fail_msg("the error does not name the stream and operation: %s", ev->message);
        assert_int_equal(ev->stats.failures, i + 1);
        assert_int_equal(ev->stats.consecutive_failures, i + 1);
        assert_int_equal(ev->stats.runs, i + 1);
        assert_int_equal(ev->stats.backoff_cap_ms, 100L << i);
        assert_true(ev->stats.last_delay_ms >= 0 && ev->stats.last_delay_ms <= ev->stats.backoff_cap_ms);
        if (i > 0) {
            long gap = ev->at_ms - x.ev[i - 1].at_ms;
            /* The next run started no earlier than the delay drawn after the previous failure. */
            if (gap + 5 < x.ev[i - 1].stats.last_delay_ms)
                fail_msg("run %d came %ld ms after failure %d, before its backoff of %ld ms", i + 1, gap, i,
                         x.ev[i - 1].stats.last_delay_ms);
            total_gap += gap;
        }
    }
    /* Five delays drawn from [0,100]..[0,1600] ms: all under 100 ms in total has odds below 1e-5. */
    assert_true(total_gap >= 100);
    /* No run on its own after the last failure. */
    usleep(400 * 1000);
    stats_req_t st = get_stats(&x);
    assert_int_equal(x.nevents, RUNS);
    assert_int_equal(st.stats.runs, RUNS);
    assert_false(st.busy);

    on_loop(c, do_close, &x);
    kn_client_destroy(c);
    ctx_free(&x);
}

/* Two failures (500s from the proxy) then a success: the success resets the backoff. */
static void test_success_after_failures_resets_backoff(void **state)
{
    (void)state;
    kn_client_t *direct = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3");
    char name[128];
    unique_name(name, sizeof(name), "recover");
    create_active(direct, name, 2);

    proxy_t p;
    const char *extra[] = {"--fail-first", "2", NULL};
    proxy_start(&p, extra);
    kn_client_t *c = client_for(p.url, "1");
    ctx_t x;
    ctx_init(&x, c, name);
    refresher_new(&x);
    x.rerequest_left = 2;
    on_loop(c, do_request, &x);
    assert_int_equal(wait_events(&x, 3, 30000), 3);
    assert_false(x.ev[0].ok);
    assert_int_equal(x.ev[0].code, KN_ERR_SERVICE);
    assert_non_null(strstr(x.ev[0].message, "injected by fault_proxy"));
    assert_false(x.ev[1].ok);
    assert_int_equal(x.ev[1].stats.consecutive_failures, 2);
    assert_true(x.ev[2].ok);
    assert_int_equal(x.ev[2].stats.consecutive_failures, 0);
    assert_int_equal(x.ev[2].stats.last_delay_ms, 0);
    assert_int_equal(kn__shard_map_count(x.map), 2);
    /* A request after the success is served as usual. */
    refresh_once(&x);
    assert_int_equal(x.ev[3].stats.runs, 4);
    assert_int_equal(proxy_stat(&p, "requests"), 4);

    on_loop(c, do_close, &x);
    kn_client_destroy(c);
    kn_test_stop(p.pid);
    delete_stream(direct, name);
    kn_client_destroy(direct);
    ctx_free(&x);
}

typedef struct pool_group_s {
    ctx_t *x;
    int n;
} pool_group_t;

static void request_group(void *arg)
{
    pool_group_t *g = arg;
    for (int i = 0; i < g->n; i++)
        kn__shard_refresher_request(g->x[i].r);
}

/*
 * Eight refreshers asked at once, more than libuv's pool has threads: runs are
 * asynchronous calls on the loop, so all run at once and all deliver.
 */
static void test_many_refreshers_at_once_all_deliver(void **state)
{
    (void)state;
    kn_client_t *direct = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3");
    char name[128];
    unique_name(name, sizeof(name), "pool");
    create_active(direct, name, 1);

    proxy_t p;
    const char *extra[] = {"--delay-ms", "300", NULL};
    proxy_start(&p, extra);
    kn_client_t *c = client_for(p.url, "1");
    enum { N = 8 };
    ctx_t x[N];
    for (int i = 0; i < N; i++) {
        ctx_init(&x[i], c, name);
        refresher_new(&x[i]);
    }
    /* All in one loop task, so that none finishes before the last starts. */
    pool_group_t g = {x, N};
    on_loop(c, request_group, &g);
    for (int i = 0; i < N; i++)
        assert_int_equal(wait_events(&x[i], 1, 30000), 1);
    for (int i = 0; i < N; i++) {
        assert_true(x[i].ev[0].ok);
        assert_int_equal(x[i].ev[0].stats.runs, 1);
    }
    for (int i = 0; i < N; i++)
        on_loop(c, do_close, &x[i]);
    kn_client_destroy(c);
    kn_test_stop(p.pid);
    delete_stream(direct, name);
    kn_client_destroy(direct);
    for (int i = 0; i < N; i++)
        ctx_free(&x[i]);
}

/*
 * Close while the run waits on a slow proxy, close in the same loop task as
 * the request (the run may not have started), close inside the callback:
 * no callback after close, and everything is freed (the ASan build reports
 * leaks); the client's destroy does not hang on the run.
 */
static void test_close_frees_everything(void **state)
{
    (void)state;
    kn_client_t *direct = client_for(kn_test_server_url("KN_TEST_KINESALITE_URL"), "3");
    char name[128];
    unique_name(name, sizeof(name), "close");
    create_active(direct, name, 1);

    proxy_t p;
    const char *extra[] = {"--delay-ms", "3000", NULL};
    proxy_start(&p, extra);
    kn_client_t *c = client_for(p.url, "1");

    /* 1: the run is inside ListShards (the proxy has the request) when the refresher closes. */
    ctx_t a;
    ctx_init(&a, c, name);
    refresher_new(&a);
    on_loop(c, do_request, &a);
    for (int i = 0; i < 500 && proxy_stat(&p, "requests") < 1; i++)
        usleep(10000);
    assert_int_equal(proxy_stat(&p, "requests"), 1);
    on_loop(c, do_close, &a);

    /* 2: request and close in one task. */
    ctx_t b;
    ctx_init(&b, c, name);
    refresher_new(&b);
    b.burst = 3;
    on_loop(c, req_burst, &b);
    on_loop(c, do_close, &b);

    /* 3: close inside the callback, with a request pending. */
    ctx_t d;
    ctx_init(&d, c, name);
    refresher_new(&d);
    d.close_in_cb = true;
    d.burst = 2;
    on_loop(c, req_burst, &d);
    assert_int_equal(wait_events(&d, 1, 30000), 1);
    assert_true(d.ev[0].ok);

    usleep(3500 * 1000); /* the first two runs end meanwhile; their results must go nowhere */
    assert_int_equal(a.nevents, 0);
    assert_int_equal(b.nevents, 0);
    assert_int_equal(d.nevents, 1);

    /* 4: a run still on the pool when the client goes: destroy waits for it and frees it. */
    ctx_t f;
    ctx_init(&f, c, name);
    refresher_new(&f);
    on_loop(c, do_request, &f);
    on_loop(c, do_close, &f);
    long t0 = now_ms();
    kn_client_destroy(c);
    assert_true(now_ms() - t0 < 20000);
    assert_int_equal(f.nevents, 0);

    kn_test_stop(p.pid);
    delete_stream(direct, name);
    kn_client_destroy(direct);
    ctx_free(&a);
    ctx_free(&b);
    ctx_free(&d);
    ctx_free(&f);
}

int main(void)
{
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_map_agrees_with_where_records_land, &kinesalite),
        cmocka_unit_test_prestate(test_map_agrees_with_where_records_land, &moto),
        cmocka_unit_test_prestate(test_split_shows_children_not_parent, &kinesalite),
        cmocka_unit_test_prestate(test_split_shows_children_not_parent, &moto),
        cmocka_unit_test(test_concurrent_requests_are_merged),
        cmocka_unit_test(test_failing_endpoint_backs_off),
        cmocka_unit_test(test_success_after_failures_resets_backoff),
        cmocka_unit_test(test_many_refreshers_at_once_all_deliver),
        cmocka_unit_test(test_close_frees_everything),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
