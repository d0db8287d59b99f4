/*
 * The stream reader through tests/faults/fault_proxy.py in front of the shared
 * kinesalite: records are put directly upstream with our producer, then read
 * through the proxy while it throttles GetRecords, expires iterators, answers
 * 500s, resets connections and cuts answers in half, and, with
 * --add-child-shards, sends ChildShards on the last answer of a closed shard
 * (as the service does; kinesalite never does). Every case checks that every
 * record arrives exactly once, in order per key, and that the reader's
 * counters agree with what the proxy injected.
 *
 * The program takes a cmocka name filter (argv[1]); meson runs each case as
 * its own test.
 */
#include <sys/select.h>

#include "test_new.h"
#include "../integration/reader/reader_util.h"
#include "fault_util.h"

static server_t upstream = {"kinesalite", "KN_TEST_KINESALITE_URL", NULL, "", NULL};

static const char *const fast_retries[] = {"aws.retry.base.ms", "20", "aws.retry.max.backoff.ms", "500",
                                           NULL};

/* How many requests of operation op the proxy saw; -1 when unreadable. */
static long proxy_target_count(const kn_fproxy_t *px, const char *op)
{
    char *stats = kn_fproxy_http(px->port, "GET", "/__proxy/stats", NULL);
    json_object *j = stats ? json_tokener_parse(stats) : NULL, *t = NULL, *v = NULL;
    long out = -1;
    if (j && json_object_object_get_ex(j, "targets", &t))
        out = json_object_object_get_ex(t, op, &v) ? (long)json_object_get_int64(v) : 0;
    json_object_put(j);
    free(stats);
    return out;
}

static void start_proxy(kn_fproxy_t *px, server_t *s, const char *const *extra)
{
    kn_fproxy_start(px, kn_test_server_url(s->env), extra);
    s->reader_url = px->url;
}

static void stop_proxy(kn_fproxy_t *px, server_t *s)
{
    kn_fproxy_stop(px);
    s->reader_url = NULL;
}

/* Puts n records (aggregated) into a fresh stream, reads them through the proxy, checks them. */
static kn_reader_t *read_through(server_t *s, int shards, int n, run_t *run, put_t **recs_out)
{
    create_stream(s, "flt", shards);
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 30, plain);
    /* Many small reads, so that many requests meet a fault. */
    const char *rx[] = {"consumer.max.records", "40", "aws.retry.base.ms", "20",
                        "aws.retry.max.backoff.ms", "500", NULL};
    kn_reader_t *r = reader_with(s, NULL, rx);
    poll_until(r, run, true, 0, 120000);
    if (run->errors)
        fail_msg("%d shard errors, the last: %s", run->errors, run->last_error);
    check_exact(run, recs, n);
    check_key_order(run, 30);
    *recs_out = recs;
    return r;
}

static void test_throttled_getrecords(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords", "--throttle-fraction", "0.35", "--seed", "5",
                           NULL};
    start_proxy(&px, s, extra);
    run_t run = {0};
    put_t *recs = NULL;
    kn_reader_t *r = read_through(s, 2, 1500, &run, &recs);
    long injected = kn_fproxy_stat(&px, "kinds.throttle");
    int64_t throttles = kn_reader_stat(r, KN_READER_STAT_THROTTLES);
    print_message("throttled: %ld injected, %lld counted, %lld retries\n", injected, (long long)throttles,
                  (long long)kn_reader_stat(r, KN_READER_STAT_RETRIES));
    assert_true(injected > 0);
    /*
     * Reads go on after the shards catch up: a throttled answer to a read still in flight when
     * the test looks (at most one per shard) is injected but not yet counted.
     */
    assert_true(throttles <= injected && throttles >= injected - 2);
    assert_true(kn_reader_stat(r, KN_READER_STAT_RETRIES) >= throttles);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

static void test_expired_iterators(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords", "--expire-fraction", "0.3", "--seed", "7",
                           NULL};
    start_proxy(&px, s, extra);
    run_t run = {0};
    put_t *recs = NULL;
    /* Small reads, so that iterators expire in the middle of the shards too. */
    create_stream(s, "exp", 2);
    int n = 1200;
    recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 30, plain);
    const char *rx[] = {"consumer.max.records", "100", "aws.retry.base.ms", "20",
                        "aws.retry.max.backoff.ms", "500", NULL};
    kn_reader_t *r = reader_with(s, NULL, rx);
    poll_until(r, &run, true, 0, 120000);
    assert_int_equal(run.errors, 0);
    check_exact(&run, recs, n);
    check_key_order(&run, 30);
    long injected = kn_fproxy_stat(&px, "kinds.expire");
    int64_t renewals = kn_reader_stat(r, KN_READER_STAT_ITERATOR_RENEWALS);
    print_message("expired: %ld injected, %lld renewals, %lld GetShardIterator calls\n", injected,
                  (long long)renewals, (long long)proxy_target_count(&px, "GetShardIterator"));
    assert_true(injected > 0);
    assert_true(renewals <= injected && renewals >= injected - 2); /* one read in flight per shard may be unanswered yet */
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

static void test_500s_resets_and_corrupt_answers(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords,GetShardIterator", "--error-fraction", "0.15",
                           "--reset-fraction", "0.1", "--corrupt-fraction", "0.1", "--seed", "11", NULL};
    start_proxy(&px, s, extra);
    run_t run = {0};
    put_t *recs = NULL;
    kn_reader_t *r = read_through(s, 3, 1500, &run, &recs);
    long errors = kn_fproxy_stat(&px, "kinds.error"), resets = kn_fproxy_stat(&px, "kinds.reset"),
         corrupt = kn_fproxy_stat(&px, "kinds.corrupt");
    int64_t retries = kn_reader_stat(r, KN_READER_STAT_RETRIES);
    print_message("faults: %ld 500s, %ld resets, %ld corrupt answers; %lld retries\n", errors, resets,
                  corrupt, (long long)retries);
    assert_true(errors > 0 && resets > 0 && corrupt > 0);
    /*
     * Every 500 and cut answer is retried by the reader; a reset of a reused connection may be
     * retried inside libcurl (before any answer byte), so resets count at most once each. Reads
     * go on after the shards catch up: one per shard may still be in flight, its fault injected
     * but not yet answered, when the test looks.
     */
    assert_true(retries + 3 >= errors + corrupt);
    assert_true(retries <= errors + resets + corrupt);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

/*
 * Every answer of one shard comes back cut in half: after 10 unreadable
 * answers in a row the shard ends with KN_READER_SHARD_ERROR naming the
 * cause, instead of being read again for ever; the reader reaches its end.
 */
static void test_always_corrupt_answers_end_the_shard(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords", "--corrupt-fraction", "1", NULL};
    start_proxy(&px, s, extra);
    create_stream(s, "corrupt", 1);
    put_t *recs = calloc(50, sizeof(put_t));
    produce(s, recs, 0, 50, 5, NULL);
    const char *rx[] = {"aws.retry.base.ms", "5", "aws.retry.max.backoff.ms", "50", NULL};
    kn_reader_t *r = reader_with(s, NULL, rx);
    run_t run = {0};
    poll_until(r, &run, true, 0, 60000);
    long calls = proxy_target_count(&px, "GetRecords");
    print_message("corrupt: %d shard errors after %ld GetRecords: %s\n", run.errors, calls, run.last_error);
    assert_int_equal(run.errors, 1);
    assert_int_equal(run.n, 0);
    assert_non_null(strstr(run.last_error, "10 answers in a row could not be read"));
    assert_non_null(strstr(run.last_error, "shardId-000000000000"));
    assert_int_equal(calls, 10);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

/*
 * ListShards fails (500s, past the request layer's attempts) just when a
 * shard is read to its end and its children must be found: the listing is
 * tried again with backoff until it works, and the children are read; the
 * parent is not given up with a shard error.
 */
static void test_children_listed_again_after_failures(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    start_proxy(&px, s, NULL);
    create_stream(s, "relist", 1);
    int n = 300;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, 100, 10, NULL);
    const char *rx[] = {"aws.retry.base.ms", "20", "aws.retry.max.backoff.ms", "200",
                        "aws.retry.max.attempts", "2", NULL};
    kn_reader_t *r = reader_with(s, NULL, rx);
    run_t run = {0};
    poll_until(r, &run, true, 100, 60000);
    /* From now on every ListShards fails; then split the shard (upstream, not through the proxy). */
    char *res = kn_fproxy_http(px.port, "POST", "/__proxy/config",
                               "{\"fault_target\":\"ListShards\",\"error_fraction\":1}");
    assert_non_null(res);
    free(res);
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    if (kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e) != KN_ERR_OK)
        fail_msg("SplitShard: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 30000, 100, &e) != KN_ERR_OK)
        fail_msg("wait: %s", e.message);
    produce(s, recs, 100, n, 10, NULL);
    int64_t until = now_ms() + 3000;
    while (now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    long failed_lists = kn_fproxy_stat(&px, "kinds.error");
    assert_true(failed_lists >= 3);
    assert_int_equal(run.errors, 0);
    res = kn_fproxy_http(px.port, "POST", "/__proxy/config", "{\"error_fraction\":0}");
    assert_non_null(res);
    free(res);
    poll_until(r, &run, false, (size_t)n, 60000);
    print_message("relist: %ld failed ListShards, then %zu records, %d shards ended\n", failed_lists, run.n,
                  run.ended);
    assert_int_equal(run.errors, 0);
    check_exact(&run, recs, n);
    check_key_order(&run, 10);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

/* ChildShards from GetRecords: the children are found without a ListShards. */
static void test_child_shards_from_getrecords(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--add-child-shards", NULL};
    start_proxy(&px, s, extra);
    create_stream(s, "child", 1);
    int per = 200, nkeys = 30;
    put_t *recs = calloc((size_t)(3 * per), sizeof(put_t));
    split_and_merge(s, recs, per, nkeys);
    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 120000);
    check_lineage(&run, recs, 3 * per, nkeys);
    assert_int_equal(run.ended, 3);
    assert_int_equal(run.started, 4);
    assert_int_equal(run.errors, 0);
    long added = kn_fproxy_stat(&px, "kinds.child_shards");
    long listings = proxy_target_count(&px, "ListShards");
    print_message("child shards: %ld answers with ChildShards, %ld ListShards\n", added, listings);
    assert_int_equal(added, 3);
    /* Only the listing at creation: every child came from ChildShards. */
    assert_int_equal(listings, 1);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

/* Throttling and expiry during a split and a merge: still every record, parents first. */
static void test_faults_across_reshard(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--add-child-shards", "--fault-target", "GetRecords", "--throttle-fraction",
                           "0.2", "--expire-fraction", "0.15", "--seed", "13", NULL};
    start_proxy(&px, s, extra);
    create_stream(s, "chflt", 1);
    int per = 200, nkeys = 30;
    put_t *recs = calloc((size_t)(3 * per), sizeof(put_t));
    split_and_merge(s, recs, per, nkeys);
    kn_reader_t *r = reader_with(s, NULL, fast_retries);
    run_t run = {0};
    poll_until(r, &run, true, 0, 120000);
    check_lineage(&run, recs, 3 * per, nkeys);
    assert_int_equal(run.ended, 3);
    assert_int_equal(run.errors, 0);
    assert_true(kn_fproxy_stat(&px, "kinds.throttle") > 0);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    stop_proxy(&px, s);
}

/* Destroy with GetRecords answers held back by the server: returns at once, frees everything. */
static void test_destroy_with_slow_answers(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords", "--slow-fraction", "1.0", "--slow-ms", "4000",
                           NULL};
    start_proxy(&px, s, extra);
    create_stream(s, "slow", 2);
    put_t recs[50];
    memset(recs, 0, sizeof(recs));
    produce(s, recs, 0, 50, 5, NULL);
    for (int shared = 0; shared < 2; shared++) {
        kn_reader_t *r;
        kn_client_t *c = NULL;
        if (shared) {
            kn_conf_t *conf = base_conf(s);
            conf_set(conf, "kinesis.endpoint", px.url);
            char err[512];
            c = kn_t_client_new(conf, err, sizeof(err));
            assert_non_null(c);
            r = kn_t_reader_new_on(c, conf, s->stream, NULL, NULL, err, sizeof(err));
            kn_conf_destroy(conf);
            assert_non_null(r);
        } else {
            r = reader_with(s, NULL, NULL);
        }
        /* Both shards started; their GetRecords now wait in the proxy. */
        run_t run = {0};
        int64_t until = now_ms() + 1000;
        while (now_ms() < until) {
            const kn_reader_msg_t *m = kn_reader_poll(r, 100);
            if (m)
                take(&run, m);
        }
        assert_int_equal(run.started, 2);
        assert_int_equal(run.n, 0);
        int64_t t0 = now_ms();
        kn_reader_destroy(r);
        int64_t took = now_ms() - t0;
        print_message("destroy (%s client) took %lld ms\n", shared ? "shared" : "own", (long long)took);
        assert_true(took < 2000);
        run_free(&run);
        if (c) {
            /*
             * The shared client lives on: the held-back answers arrive after the reader is gone
             * and release what is left of it on the loop thread (ASan checks that nothing is
             * touched after it is freed, and that nothing leaks).
             */
            usleep(5000000);
            kn_client_destroy(c);
        }
    }
    stop_proxy(&px, s);
}

/*
 * GetRecords answers that take 2.5 s, past a 1 s http.request.timeout.ms: they are waited for
 * under consumer.getrecords.timeout.ms (a 10 MiB answer may take a while) and every record is
 * read without a retry; with consumer.getrecords.timeout.ms below their time they are retried.
 */
static void test_slow_getrecords_within_its_own_timeout(void **state)
{
    server_t *s = *state;
    kn_fproxy_t px;
    const char *extra[] = {"--fault-target", "GetRecords", "--slow-fraction", "1.0", "--slow-ms", "2500",
                           NULL};
    start_proxy(&px, s, extra);
    create_stream(s, "slowok", 2);
    int n = 60;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 6, NULL);
    const char *rx[] = {"http.request.timeout.ms", "1000", NULL};
    kn_reader_t *r = reader_with(s, NULL, rx);
    run_t run = {0};
    poll_until(r, &run, true, 0, 90000);
    assert_int_equal(run.errors, 0);
    check_exact(&run, recs, n);
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_RETRIES), 0);
    kn_reader_destroy(r);
    run_free(&run);

    const char *tight[] = {"http.request.timeout.ms", "1000", "consumer.getrecords.timeout.ms", "1000",
                           "aws.retry.base.ms", "20", "aws.retry.max.backoff.ms", "200", NULL};
    r = reader_with(s, NULL, tight);
    run_t run2 = {0};
    int64_t until = now_ms() + 6000;
    while (now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run2, m);
    }
    int64_t retries = kn_reader_stat(r, KN_READER_STAT_RETRIES);
    print_message("slow answers: %zu records and %lld retries with a 1 s GetRecords timeout\n", run2.n,
                  (long long)retries);
    assert_int_equal(run2.n, 0);
    assert_true(retries > 0);
    kn_reader_destroy(r);
    run_free(&run2);
    free(recs);
    stop_proxy(&px, s);
}

#define ON(server, fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &server)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        ON(upstream, test_throttled_getrecords),
        ON(upstream, test_expired_iterators),
        ON(upstream, test_500s_resets_and_corrupt_answers),
        ON(upstream, test_always_corrupt_answers_end_the_shard),
        ON(upstream, test_children_listed_again_after_failures),
        ON(upstream, test_child_shards_from_getrecords),
        ON(upstream, test_faults_across_reshard),
        ON(upstream, test_destroy_with_slow_answers),
        ON(upstream, test_slow_getrecords_within_its_own_timeout),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("reader_faults", tests, NULL, NULL);
}
