/*
 * The consumer with DynamoDB faults: tests/faults/fault_proxy.py in front of
 * dynalite (kinesalite is reached directly). Resets, 500s, throttling, slow
 * answers and answers lost after the write took effect slow the workers down
 * but lose no lease they could have kept and no checkpoint they
 * acknowledged; an outage shorter than the lease loses nothing; a longer one
 * fences the workers (they stop before their leases can expire for others)
 * and they take the leases back when DynamoDB returns, from the checkpoints.
 */
#include <json-c/json.h>
#include <stdatomic.h>
#include <sys/select.h>

#include "../integration/consumer/consumer_util.h"
#include "fault_util.h"

static server_t upstream = {"kinesalite", "KN_TEST_KINESALITE_URL", NULL, "", NULL};

typedef struct ack_s {
    pthread_mutex_t lock;
    char shard[8][64];
    char seq[8][128];
    uint64_t sub[8];
    int n;
} ack_t;

/* A processor that remembers each shard's last acknowledged checkpoint. */
static ack_t acks;

static kn_err_t f_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    app_t *a = app;
    bool ck = a->checkpoint_each;
    a->checkpoint_each = false;
    kn_err_t rc = p_process(app, state, b, cp);
    a->checkpoint_each = ck;
    size_t n = kn_batch_count(b);
    if (rc != KN_ERR_OK || n == 0)
        return rc;
    kn_error_t e = {0};
    if (kn_checkpoint(cp, &e) != KN_ERR_OK)
        return KN_ERR_OK; /* throttled, lost, ...: the next batch checkpoints further */
    pthread_mutex_lock(&acks.lock);
    int i = 0;
    while (i < acks.n && strcmp(acks.shard[i], kn_batch_shard_id(b)))
        i++;
    if (i == acks.n && acks.n < 8)
        snprintf(acks.shard[acks.n++], 64, "%s", kn_batch_shard_id(b));
    if (i < 8) {
        snprintf(acks.seq[i], 128, "%s", kn_batch_sequence_number(b, n - 1));
        acks.sub[i] = kn_batch_sub_sequence(b, n - 1);
    }
    pthread_mutex_unlock(&acks.lock);
    return KN_ERR_OK;
}

/* The lease metrics the consumers of a case published, added up over their windows. */
static struct {
    pthread_mutex_t lock;
    double lost, taken, renew_sum, renew_min;
    uint64_t renew_count;
} lm = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 1, 0};

static void on_metrics(const char *ns, const kn_metric_t *m, size_t n, void *opaque)
{
    (void)ns;
    (void)opaque;
    pthread_mutex_lock(&lm.lock);
    for (size_t i = 0; i < n; i++) {
        bool global = m[i].n_dims == 2; /* Operation and WorkerIdentifier only */
        if (!global)
            continue;
        if (!strcmp(m[i].name, "LostLeases"))
            lm.lost += m[i].sum;
        else if (!strcmp(m[i].name, "TakenLeases"))
            lm.taken += m[i].sum;
        else if (!strcmp(m[i].name, "RenewLease.Success")) {
            lm.renew_sum += m[i].sum;
            lm.renew_count += m[i].count;
            if (m[i].min < lm.renew_min)
                lm.renew_min = m[i].min;
        }
    }
    pthread_mutex_unlock(&lm.lock);
}

static kn_consumer_t *start_via(const server_t *s, const kn_fproxy_t *px, const char *app_name,
                                const char *worker, app_t *a)
{
    const char *extra[] = {"dynamodb.endpoint", px->url, "metrics.interval.ms", "500", NULL};
    kn_conf_t *conf = consumer_conf(s, app_name, worker, extra);
    kn_conf_set_metrics_cb(conf, on_metrics, NULL);
    kn_processor_t p = test_processor();
    p.process_records = f_process;
    kn_error_t e = {0};
    kn_consumer_t *c = kn_consumer_new(conf, s->stream, &p, a, &e);
    kn_conf_destroy(conf);
    if (!c)
        fail_msg("kn_consumer_new: %s", e.message);
    if (kn_consumer_start(c, &e) != KN_ERR_OK)
        fail_msg("kn_consumer_start: %s", e.message);
    return c;
}

/* Every acknowledged checkpoint is in the table (or a later one). */
static void check_acks(const server_t *s, const char *app)
{
    size_t nl = 0;
    kn__lease_t *v = leases_of(s, app, &nl);
    pthread_mutex_lock(&acks.lock);
    for (int i = 0; i < acks.n; i++) {
        const kn__lease_t *l = NULL;
        for (size_t j = 0; j < nl; j++)
            if (!strcmp(v[j].key, acks.shard[i]))
                l = &v[j];
        assert_non_null(l);
        if (kn__checkpoint_cmp(l->checkpoint, l->checkpoint_sub, acks.seq[i], acks.sub[i]) < 0)
            fail_msg("%s: the table has %s/%llu, below the acknowledged %s/%llu", l->key,
                     l->checkpoint, (unsigned long long)l->checkpoint_sub, acks.seq[i],
                     (unsigned long long)acks.sub[i]);
    }
    pthread_mutex_unlock(&acks.lock);
    kn__leases_free(v, nl);
}

static void total(app_t *a, app_t *b, run_t *all)
{
    pthread_mutex_lock(&a->lock);
    pthread_mutex_lock(&b->lock);
    all->n = a->run.n + b->run.n;
    all->v = calloc(all->n + 1, sizeof(rec_t));
    memcpy(all->v, a->run.v, a->run.n * sizeof(rec_t));
    memcpy(all->v + a->run.n, b->run.v, b->run.n * sizeof(rec_t));
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_unlock(&a->lock);
}

/* How many of the records 0..n-1 run holds (each counted once). */
static int distinct(const run_t *run, int n)
{
    char *seen = calloc((size_t)n, 1);
    int k = 0;
    for (size_t i = 0; i < run->n; i++)
        if (run->v[i].idx >= 0 && run->v[i].idx < n && !seen[run->v[i].idx]++)
            k++;
    free(seen);
    return k;
}

/* Every record of recs[0..n) processed at least once (a fault may repeat a few). */
static void check_at_least_once(const run_t *run, int n)
{
    char *seen = calloc((size_t)n, 1);
    for (size_t i = 0; i < run->n; i++)
        if (run->v[i].idx >= 0 && run->v[i].idx < n)
            seen[run->v[i].idx] = 1;
    for (int i = 0; i < n; i++)
        if (!seen[i])
            fail_msg("record %d never processed", i);
    free(seen);
}

static void test_dynamodb_faults_lose_no_lease(void **state)
{
    server_t *s = *state;
    memset(&acks, 0, sizeof(acks));
    pthread_mutex_init(&acks.lock, NULL);
    create_stream(s, "ddbfaults", 4);
    char app[128];
    unique_name(app, sizeof(app), "ddbfaults");
    kn_fproxy_t px;
    const char *opts[] = {"--fault-target", "all", "--seed", "7", "--reset-fraction", "0.04",
                          "--error-fraction", "0.04", "--throttle-fraction", "0.04",
                          "--lost-answer-fraction", "0.04", "--slow-fraction", "0.03",
                          "--slow-ms", "300", NULL};
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_DYNALITE_URL"), opts);
    enum { N = 600 };
    put_t *recs = calloc(N, sizeof(*recs));
    app_t a, b;
    app_init(&a);
    app_init(&b);
    kn_consumer_t *c1 = start_via(s, &px, app, "fa", &a);
    kn_consumer_t *c2 = start_via(s, &px, app, "fb", &b);
    for (int i = 0; i < 6; i++) {
        produce(s, recs, i * (N / 6), (i + 1) * (N / 6), 7, NULL);
        usleep(700000);
    }
    int64_t deadline = now_ms() + 60000;
    run_t all = {0};
    for (;;) {
        run_free(&all);
        memset(&all, 0, sizeof(all));
        total(&a, &b, &all);
        if (distinct(&all, N) == N || now_ms() > deadline)
            break;
        usleep(100000);
    }
    check_at_least_once(&all, N);
    run_free(&all);
    long injected = kn_fproxy_stat(&px, "injected"), lost = kn_fproxy_stat(&px, "kinds.lost_answer");
    int64_t renew_fail = kn_consumer_stat(c1, KN_CONSUMER_STAT_RENEW_FAILURES) +
                         kn_consumer_stat(c2, KN_CONSUMER_STAT_RENEW_FAILURES);
    int64_t leases_lost = kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_LOST) +
                          kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_LOST);
    print_message("faults injected %ld (answers lost after the write %ld), renew failures %lld, "
                  "leases lost %lld, held %lld + %lld\n",
                  injected, lost, (long long)renew_fail, (long long)leases_lost,
                  (long long)kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD),
                  (long long)kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD));
    assert_true(injected > 20);
    assert_true(lost > 0);
    assert_int_equal(leases_lost, 0);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD) +
                         kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD),
                     4);
    kn_fproxy_config(&px, "{\"reset_fraction\":0,\"error_fraction\":0,\"throttle_fraction\":0,"
                          "\"lost_answer_fraction\":0,\"slow_fraction\":0}");
    check_acks(s, app);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    check_acks(s, app);
    kn_fproxy_stop(&px);
    delete_table(s, app);
    app_free(&a);
    app_free(&b);
    free(recs);
}

/* DynamoDB unreachable for less than the lease: nothing lost; for longer: fenced, then taken back. */
static void test_dynamodb_outages(void **state)
{
    server_t *s = *state;
    memset(&acks, 0, sizeof(acks));
    pthread_mutex_init(&acks.lock, NULL);
    create_stream(s, "ddbdown", 2);
    char app[128];
    unique_name(app, sizeof(app), "ddbdown");
    kn_fproxy_t px;
    const char *opts[] = {"--fault-target", "all", NULL};
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_DYNALITE_URL"), opts);
    enum { N = 300 };
    put_t *recs = calloc(N, sizeof(*recs));
    app_t a;
    app_init(&a);
    kn_consumer_t *c = start_via(s, &px, app, "solo", &a);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD) != 2 && now_ms() < deadline)
        usleep(50000);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD), 2);
    produce(s, recs, 0, 100, 7, NULL);
    wait_records(&a, 100, 30000);
    /* 1 s of 500s (the lease is 3 s, renewed every second): ridden out. */
    kn_fproxy_config(&px, "{\"error_fraction\":1}");
    usleep(1000000);
    kn_fproxy_config(&px, "{\"error_fraction\":0}");
    produce(s, recs, 100, 150, 7, NULL);
    wait_records(&a, 150, 30000);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST), 0);
    assert_true(kn_fproxy_stat(&px, "kinds.error") >= 3); /* renewals and scans were refused */
    /* 6 s of resets: fenced before the lease could expire; back once DynamoDB is. */
    kn_fproxy_config(&px, "{\"reset_fraction\":1}");
    int64_t t0 = now_ms();
    deadline = t0 + 10000;
    while (kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST) < 2 && now_ms() < deadline)
        usleep(20000);
    int64_t fenced_after = now_ms() - t0;
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST), 2);
    assert_true(fenced_after < 3000); /* before anyone else could take them */
    /* Each processor hears of it (lease_lost, on its thread, once its tenure ends). */
    int lost = 0;
    for (deadline = now_ms() + 5000; lost < 2 && now_ms() < deadline; usleep(20000)) {
        pthread_mutex_lock(&a.lock);
        lost = a.lost;
        pthread_mutex_unlock(&a.lock);
    }
    assert_int_equal(lost, 2);
    produce(s, recs, 150, 250, 7, NULL);
    while (now_ms() - t0 < 6000)
        usleep(50000);
    kn_fproxy_config(&px, "{\"reset_fraction\":0}");
    produce(s, recs, 250, N, 7, NULL);
    /* Its own expired leases are taken again and read from their checkpoints. */
    deadline = now_ms() + 30000;
    for (;;) {
        pthread_mutex_lock(&a.lock);
        int k = distinct(&a.run, N);
        pthread_mutex_unlock(&a.lock);
        if (k == N || now_ms() > deadline)
            break;
        usleep(100000);
    }
    pthread_mutex_lock(&a.lock);
    check_at_least_once(&a.run, N);
    pthread_mutex_unlock(&a.lock);
    print_message("fenced %lld ms into the outage; leases taken back: %lld\n", (long long)fenced_after,
                  (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_TAKEN));
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD), 2);
    check_acks(s, app);
    /* Shut down first, so that no renewal comes between reading the counters and the last window. */
    assert_int_equal(kn_consumer_shutdown(c, 30000), KN_ERR_OK);
    int64_t renewals = kn_consumer_stat(c, KN_CONSUMER_STAT_RENEWALS);
    int64_t renew_failures = kn_consumer_stat(c, KN_CONSUMER_STAT_RENEW_FAILURES);
    int64_t taken = kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_TAKEN);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    /* The KCL's lease metrics say the same as the counters (the last window came with destroy). */
    pthread_mutex_lock(&lm.lock);
    print_message("metrics: LostLeases %.0f, TakenLeases %.0f, RenewLease.Success %.0f of %llu (min %.0f)\n",
                  lm.lost, lm.taken, lm.renew_sum, (unsigned long long)lm.renew_count, lm.renew_min);
    assert_true(lm.lost == 2);
    assert_true(lm.taken == (double)taken);
    assert_true(renew_failures > 0);
    assert_true(lm.renew_sum == (double)renewals);
    assert_int_equal(lm.renew_count, renewals + renew_failures);
    assert_true(lm.renew_min == 0);
    pthread_mutex_unlock(&lm.lock);
    kn_fproxy_stop(&px);
    delete_table(s, app);
    app_free(&a);
    free(recs);
}

static atomic_int landed_logs;

static void count_landed(void *opaque, kn_log_level_t level, const char *ctx, const char *line)
{
    (void)opaque;
    (void)level;
    (void)ctx;
    if (strstr(line, "had landed (its answer was lost)"))
        atomic_fetch_add(&landed_logs, 1);
}

/*
 * Half the answers to UpdateItem are lost after the write took effect: the
 * retried write's condition fails, a consistent read shows the lease still
 * ours with the counter we wrote, and nothing is lost.
 */
static void test_lost_answers_are_read_back(void **state)
{
    server_t *s = *state;
    memset(&acks, 0, sizeof(acks));
    pthread_mutex_init(&acks.lock, NULL);
    create_stream(s, "ddblost", 2);
    char app[128];
    unique_name(app, sizeof(app), "ddblost");
    kn_fproxy_t px;
    const char *opts[] = {"--fault-target", "UpdateItem", "--seed", "3", NULL};
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_DYNALITE_URL"), opts);
    const char *extra[] = {"dynamodb.endpoint", px.url, "log.level", "debug", "debug", "lease", NULL};
    kn_conf_t *conf = consumer_conf(s, app, "reread", extra);
    kn_conf_set_log_cb(conf, count_landed, NULL);
    kn_processor_t p = test_processor();
    p.process_records = f_process;
    app_t a;
    app_init(&a);
    kn_error_t e = {0};
    kn_consumer_t *c = kn_consumer_new(conf, s->stream, &p, &a, &e);
    kn_conf_destroy(conf);
    assert_non_null(c);
    assert_int_equal(kn_consumer_start(c, &e), KN_ERR_OK);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD) != 2 && now_ms() < deadline)
        usleep(50000);
    kn_fproxy_config(&px, "{\"lost_answer_fraction\":0.5}");
    enum { N = 200 };
    put_t *recs = calloc(N, sizeof(*recs));
    for (int i = 0; i < 4; i++) {
        produce(s, recs, i * 50, (i + 1) * 50, 7, NULL);
        usleep(1500000);
    }
    wait_records(&a, N, 30000);
    kn_fproxy_config(&px, "{\"lost_answer_fraction\":0}");
    print_message("answers lost %ld, writes found landed by a read %d, leases lost %lld\n",
                  kn_fproxy_stat(&px, "kinds.lost_answer"), atomic_load(&landed_logs),
                  (long long)kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST));
    assert_true(kn_fproxy_stat(&px, "kinds.lost_answer") >= 4);
    assert_true(atomic_load(&landed_logs) >= 1);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST), 0);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD), 2);
    pthread_mutex_lock(&a.lock);
    check_at_least_once(&a.run, N);
    pthread_mutex_unlock(&a.lock);
    check_acks(s, app);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    kn_fproxy_stop(&px);
    delete_table(s, app);
    app_free(&a);
    free(recs);
}

#define ON(srv, fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &srv)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        ON(upstream, test_dynamodb_faults_lose_no_lease),
        ON(upstream, test_dynamodb_outages),
        ON(upstream, test_lost_answers_are_read_back),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("consumer_faults", tests, NULL, NULL);
}
