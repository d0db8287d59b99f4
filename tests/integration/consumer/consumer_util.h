/*
 * Helpers shared by the consumer tests, header-only: a record processor that
 * keeps every record it is given (with the tenure that got it) and can be
 * told to fail, to checkpoint or not, and to go slowly; a consumer made on a
 * server's kinesalite and dynalite; reading the lease table back.
 * Builds on the reader tests' helpers (streams, producing, checks).
 */
#ifndef KN_CONSUMER_UTIL_H
#define KN_CONSUMER_UTIL_H

#include <pthread.h>

#include "../reader/reader_util.h"
#include "dynamodb.h"
#include "kinesis/consumer.h"
#include "lease.h"

typedef struct app_s app_t;

typedef struct tstate_s {
    app_t *app;
    char shard[64];
    int tenure;     /* numbered in the order tenures began in this app */
    char start_ck[128];
    uint64_t start_sub;
    int batches;
    bool lost, ended, shutdown, closed;
} tstate_t;

struct app_s {
    pthread_mutex_t lock;
    run_t run;               /* every record delivered, in delivery order */
    int *tenure_of;          /* tenure of each record in run */
    size_t tenure_cap;
    int tenures, inits, lost, ended, shutdowns, closes;
    bool checkpoint_each;    /* kn_checkpoint after every batch */
    int fail_first;          /* the first N process_records calls return KN_ERR_SERVICE */
    int calls;
    int slow_ms;             /* sleep in process_records */
    bool no_end_checkpoint;  /* shard_ended does not checkpoint */
    kn_err_t last_ck_rc;
    int ck_lost;             /* checkpoints refused with LEASE_LOST */
    tstate_t *states[256];
};

static inline void app_init(app_t *a)
{
    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->lock, NULL);
    a->checkpoint_each = true;
}

static inline void app_free(app_t *a)
{
    for (int i = 0; i < a->tenures && i < 256; i++)
        free(a->states[i]);
    run_free(&a->run);
    free(a->tenure_of);
    pthread_mutex_destroy(&a->lock);
}

static inline size_t app_count(app_t *a)
{
    pthread_mutex_lock(&a->lock);
    size_t n = a->run.n;
    pthread_mutex_unlock(&a->lock);
    return n;
}

static kn_err_t p_init(void *app, const char *shard, const char *ck, uint64_t sub, void **state)
{
    app_t *a = app;
    tstate_t *s = calloc(1, sizeof(*s));
    s->app = a;
    snprintf(s->shard, sizeof(s->shard), "%s", shard);
    snprintf(s->start_ck, sizeof(s->start_ck), "%s", ck);
    s->start_sub = sub;
    pthread_mutex_lock(&a->lock);
    s->tenure = a->tenures++;
    if (s->tenure < 256)
        a->states[s->tenure] = s;
    a->inits++;
    pthread_mutex_unlock(&a->lock);
    *state = s;
    return KN_ERR_OK;
}

static kn_err_t p_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    app_t *a = app;
    tstate_t *s = state;
    pthread_mutex_lock(&a->lock);
    bool fail = a->calls++ < a->fail_first;
    int slow = a->slow_ms;
    pthread_mutex_unlock(&a->lock);
    if (fail)
        return KN_ERR_SERVICE;
    if (slow)
        usleep((useconds_t)slow * 1000);
    assert_string_equal(kn_batch_shard_id(b), s->shard);
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < kn_batch_count(b); i++) {
        run_t *run = &a->run;
        if (run->n == run->cap) {
            run->cap = run->cap ? run->cap * 2 : 256;
            run->v = realloc(run->v, run->cap * sizeof(*run->v));
            a->tenure_of = realloc(a->tenure_of, run->cap * sizeof(int));
        }
        a->tenure_of[run->n] = s->tenure;
        rec_t *x = &run->v[run->n++];
        memset(x, 0, sizeof(*x));
        size_t len = 0, klen = 0;
        const unsigned char *d = kn_batch_data(b, i, &len);
        const char *k = kn_batch_partition_key(b, i, &klen);
        assert_non_null(k);
        assert_int_equal(strlen(k), klen);
        snprintf(x->key, sizeof(x->key), "%s", k);
        snprintf(x->shard, sizeof(x->shard), "%s", s->shard);
        snprintf(x->seq, sizeof(x->seq), "%s", kn_batch_sequence_number(b, i));
        x->sub = kn_batch_sub_sequence(b, i);
        x->aggregated = kn_batch_aggregated(b, i);
        x->arrival_ms = kn_batch_arrival_ms(b, i);
        x->mbl = kn_batch_millis_behind(b);
        x->len = len;
        char buf[128];
        size_t c = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
        if (c)
            memcpy(buf, d, c);
        buf[c] = 0;
        x->idx = -1;
        if (sscanf(buf, "d-%d-", &x->idx) != 1)
            x->idx = -1;
        assert_int_equal(kn_batch_record_err(b, i), KN_ERR_OK);
    }
    s->batches++;
    bool ck = a->checkpoint_each;
    pthread_mutex_unlock(&a->lock);
    if (ck && kn_batch_count(b) > 0) {
        kn_error_t e = {0};
        kn_err_t rc = kn_checkpoint(cp, &e);
        pthread_mutex_lock(&a->lock);
        a->last_ck_rc = rc;
        if (rc == KN_ERR_LEASE_LOST)
            a->ck_lost++;
        pthread_mutex_unlock(&a->lock);
        if (rc != KN_ERR_OK && rc != KN_ERR_LEASE_LOST)
            fail_msg("checkpoint: %s: %s", kn_err2name(rc), e.message);
    }
    return KN_ERR_OK;
}

static void p_lost(void *app, void *state)
{
    app_t *a = app;
    tstate_t *s = state;
    pthread_mutex_lock(&a->lock);
    a->lost++;
    s->lost = true;
    pthread_mutex_unlock(&a->lock);
}

static kn_err_t p_ended(void *app, void *state, kn_checkpointer_t *cp)
{
    app_t *a = app;
    tstate_t *s = state;
    pthread_mutex_lock(&a->lock);
    a->ended++;
    s->ended = true;
    bool no_ck = a->no_end_checkpoint;
    pthread_mutex_unlock(&a->lock);
    if (!no_ck) {
        kn_error_t e = {0};
        kn_err_t rc = kn_checkpoint(cp, &e);
        if (rc != KN_ERR_OK)
            return rc;
    }
    return KN_ERR_OK;
}

static kn_err_t p_shutdown(void *app, void *state, kn_checkpointer_t *cp)
{
    app_t *a = app;
    tstate_t *s = state;
    (void)cp;
    pthread_mutex_lock(&a->lock);
    a->shutdowns++;
    s->shutdown = true;
    pthread_mutex_unlock(&a->lock);
    return KN_ERR_OK;
}

static void p_close(void *app, void *state)
{
    app_t *a = app;
    tstate_t *s = state;
    pthread_mutex_lock(&a->lock);
    a->closes++;
    s->closed = true;
    pthread_mutex_unlock(&a->lock);
}

static inline kn_processor_t test_processor(void)
{
    kn_processor_t p = KN_PROCESSOR_INIT;
    p.initialize = p_init;
    p.process_records = p_process;
    p.lease_lost = p_lost;
    p.shard_ended = p_ended;
    p.shutdown_requested = p_shutdown;
    p.close = p_close;
    return p;
}

static void debug_log(void *opaque, kn_log_level_t level, const char *ctx, const char *line)
{
    (void)opaque;
    fprintf(stderr, "%lld %d %s %s\n", (long long)now_ms(), (int)level, ctx, line);
}

/* A consumer of s->stream in application appname; extra: more properties (NULL-terminated pairs). */
static inline kn_conf_t *consumer_conf(const server_t *s, const char *appname, const char *worker,
                                       const char *const *extra)
{
    kn_conf_t *conf = base_conf(s);
    conf_set(conf, "dynamodb.endpoint", kn_test_server_url("KN_TEST_DYNALITE_URL"));
    conf_set(conf, "consumer.application.name", appname);
    if (worker)
        conf_set(conf, "consumer.worker.id", worker);
    conf_set(conf, "consumer.initial.position", "TRIM_HORIZON");
    conf_set(conf, "consumer.failover.ms", "3000");
    conf_set(conf, "consumer.lease.scan.ms", "200");
    for (int i = 0; extra && extra[i]; i += 2)
        conf_set(conf, extra[i], extra[i + 1]);
    if (getenv("KN_TEST_DEBUG")) { /* for reading a failing test's story: KN_TEST_DEBUG=lease,consumer */
        conf_set(conf, "log.level", "debug");
        conf_set(conf, "debug", getenv("KN_TEST_DEBUG"));
        kn_conf_set_log_cb(conf, debug_log, NULL);
    }
    return conf;
}

static inline kn_consumer_t *consumer_start(const server_t *s, const char *appname, const char *worker,
                                            app_t *a, const char *const *extra)
{
    kn_conf_t *conf = consumer_conf(s, appname, worker, extra);
    kn_processor_t p = test_processor();
    kn_error_t e = {0};
    kn_consumer_t *c = kn_consumer_new(conf, s->stream, &p, a, &e);
    kn_conf_destroy(conf);
    if (!c)
        fail_msg("kn_consumer_new: %s", e.message);
    if (kn_consumer_start(c, &e) != KN_ERR_OK)
        fail_msg("kn_consumer_start: %s: %s", kn_err2name(e.code), e.message);
    return c;
}

/* Waits until the app has n records (at most max_ms). */
static inline void wait_records(app_t *a, size_t n, int64_t max_ms)
{
    int64_t deadline = now_ms() + max_ms;
    while (app_count(a) < n) {
        if (now_ms() > deadline)
            fail_msg("timed out: %zu of %zu records", app_count(a), n);
        usleep(20000);
    }
}

/* The lease table's leases (blocking scan). */
static inline kn__lease_t *leases_of(const server_t *s, const char *table, size_t *n)
{
    kn_conf_t *conf = consumer_conf(s, table, NULL, NULL);
    char err[512];
    kn_client_t *cl = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(cl);
    kn__lease_table_t *t = kn__lease_table_new(cl, table, NULL);
    kn__lease_t *v = NULL;
    kn_error_t e = {0};
    if (kn__lease_table_list(t, &v, n, &e) != KN_ERR_OK)
        fail_msg("list leases: %s", e.message);
    kn__lease_table_destroy(t);
    kn_client_destroy(cl);
    return v;
}

static inline void delete_table(const server_t *s, const char *table)
{
    kn_conf_t *conf = consumer_conf(s, table, NULL, NULL);
    char err[512];
    kn_client_t *cl = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    kn_error_t e = {0};
    kn__ddb_delete_table(cl, table, &e);
    kn_client_destroy(cl);
}

#endif
