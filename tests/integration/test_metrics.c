/*
 * Metrics against real servers: the producer's metrics under the KPL's names
 * on kinesalite (each one made to move and compared with what the results
 * say), directly and through the fault proxy (throttling for
 * RetriesPerRecord and ErrorsByCode, a dead server for UserRecordExpired,
 * slow answers for UserRecordsPending); metrics.level and
 * metrics.granularity; and the JSON form. Each case runs as its own meson
 * test (the program takes a cmocka name filter).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "client.h"
#include "kinesis/producer.h"
#include "kinesis_ops.h"
#include "faults/fault_util.h"
#include "test_new.h"
#include "testutil.h"

/* ------------------------------------------------------------ collected metrics */

typedef struct got_s {
    char name[64];
    char dims[256]; /* "Name=value,..." in the order given; "" for the global figure */
    char unit[16];
    double sum, min, max;
    uint64_t count;
} got_t;

typedef struct sink_s {
    pthread_mutex_t lock;
    got_t *m;
    size_t n, cap;
    int calls;
    char ns[128];
    int bad; /* a metric the callback should never see: count 0, min > max, wrong struct_size */
} sink_t;

static void on_metrics(const char *ns, const kn_metric_t *ms, size_t n, void *opaque)
{
    sink_t *s = opaque;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    snprintf(s->ns, sizeof(s->ns), "%s", ns);
    for (size_t i = 0; i < n; i++) {
        const kn_metric_t *m = &ms[i];
        if (m->struct_size != sizeof(kn_metric_t) || m->count == 0 || m->min > m->max || m->end_ms < m->start_ms)
            s->bad++;
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 64;
            s->m = realloc(s->m, s->cap * sizeof(*s->m));
            assert_non_null(s->m);
        }
        got_t *g = &s->m[s->n++];
        memset(g, 0, sizeof(*g));
        snprintf(g->name, sizeof(g->name), "%s", m->name);
        snprintf(g->unit, sizeof(g->unit), "%s", m->unit);
        size_t len = 0;
        for (size_t k = 0; k < m->n_dims; k++)
            len += (size_t)snprintf(g->dims + len, sizeof(g->dims) - len, "%s%s=%s", k ? "," : "",
                                    m->dims[k].name, m->dims[k].value);
        g->sum = m->sum;
        g->min = m->min;
        g->max = m->max;
        g->count = m->count;
    }
    pthread_mutex_unlock(&s->lock);
}

/* Adds up every window's figures for (name, dims); count 0 when never seen. */
static got_t total(const sink_t *s, const char *name, const char *dims)
{
    got_t t;
    memset(&t, 0, sizeof(t));
    for (size_t i = 0; i < s->n; i++) {
        const got_t *g = &s->m[i];
        if (strcmp(g->name, name) != 0 || strcmp(g->dims, dims) != 0)
            continue;
        if (!t.count || g->min < t.min)
            t.min = g->min;
        if (!t.count || g->max > t.max)
            t.max = g->max;
        t.sum += g->sum;
        t.count += g->count;
        snprintf(t.unit, sizeof(t.unit), "%s", g->unit);
    }
    return t;
}

static bool seen(const sink_t *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->m[i].name, name) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------ results */

#define DATA_LEN 100

typedef struct rec_s {
    int results;
    kn_err_t err;
    char shard[80];
    int attempts;
} rec_t;

typedef struct run_s {
    rec_t *recs;
    int n;
} run_t;

static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    (void)opaque;
    rec_t *rec = kn_result_opaque(r);
    if (rec->results++)
        return;
    rec->err = kn_result_err(r);
    const char *sh = kn_result_shard_id(r);
    snprintf(rec->shard, sizeof(rec->shard), "%s", sh ? sh : "");
    rec->attempts = kn_result_attempt_count(r);
}

static kn_conf_t *conf_for(const char *url, sink_t *sink, run_t *run, const char *const *kv)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *base[] = {"kinesis.endpoint", url, "aws.region", "us-east-1", "aws.access.key.id", "AKIDMETRICS",
                          "aws.secret.access.key", "metrics-secret", "aws.retry.max.attempts", "5",
                          "aws.retry.base.ms", "20", "aws.retry.max.backoff.ms", "300",
                          "producer.record.max.buffered.ms", "20",
                          /* one window, ended by destroy */
                          "metrics.interval.ms", "600000", NULL};
    for (int i = 0; base[i]; i += 2)
        if (kn_conf_set(conf, base[i], base[i + 1], err, sizeof(err)) != KN_ERR_OK)
            fail_msg("conf %s: %s", base[i], err);
    for (int i = 0; kv && kv[i]; i += 2)
        if (kn_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != KN_ERR_OK)
            fail_msg("conf %s: %s", kv[i], err);
    if (sink)
        kn_conf_set_metrics_cb(conf, on_metrics, sink);
    kn_conf_set_result_cb(conf, on_result, run);
    return conf;
}

static kn_client_t *direct_client(const char *url)
{
    kn_conf_t *conf = conf_for(url, NULL, NULL, NULL);
    char err[512];
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!c)
        fail_msg("kn_client_new: %s", err);
    return c;
}

static void make_stream(kn_client_t *c, const char *name, int shards)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {name, NULL};
    if (kn__kinesis_create_stream(c, name, shards, &e) != KN_ERR_OK ||
        kn__kinesis_wait_active(c, &ref, 30000, 100, &e) != KN_ERR_OK)
        fail_msg("stream %s: %s", name, e.message);
}

static void drop_stream(kn_client_t *c, const char *name)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {name, NULL};
    kn__kinesis_delete_stream(c, &ref, true, &e);
}

/* Puts n records of DATA_LEN bytes over nkeys keys; destroys the producer (the last window). */
static void produce(const char *url, const char *stream, run_t *run, int nkeys, sink_t *sink,
                    const char *const *kv, int pause_ms)
{
    kn_conf_t *conf = conf_for(url, sink, run, kv);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);
    unsigned char data[DATA_LEN];
    for (int i = 0; i < run->n; i++) {
        char key[32];
        snprintf(key, sizeof(key), "key-%d", i % nkeys);
        memset(data, 'a' + i % 26, sizeof(data));
        kn_record_t r = KN_RECORD_INIT;
        r.stream = stream;
        r.partition_key = key;
        r.data = data;
        r.data_len = sizeof(data);
        r.opaque = &run->recs[i];
        kn_err_t rc;
        while ((rc = kn_producer_put(p, &r, err, sizeof(err))) == KN_ERR_QUEUE_FULL)
            kn_producer_poll(p, 10);
        if (rc != KN_ERR_OK)
            fail_msg("put %d: %s", i, err);
        kn_producer_poll(p, 0);
    }
    if (pause_ms > 0) {
        for (int waited = 0; waited < pause_ms; waited += 50) {
            kn_producer_poll(p, 0);
            usleep(50 * 1000);
        }
    }
    kn_producer_flush(p, 30000);
    kn_producer_destroy(p);
}

static void new_run(run_t *run, int n)
{
    run->n = n;
    run->recs = calloc((size_t)n, sizeof(rec_t));
    assert_non_null(run->recs);
}

static sink_t *new_sink(void)
{
    sink_t *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

static void free_sink(sink_t *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->m);
    free(s);
}

#define ASSERT_SUM(s, name, dims, want)                                                                \
    do {                                                                                               \
        got_t t_ = total((s), (name), (dims));                                                         \
        if (t_.sum != (double)(want))                                                                  \
            fail_msg("%s{%s}: sum %.0f (count %llu), want %.0f", (name), (dims), t_.sum,               \
                     (unsigned long long)t_.count, (double)(want));                                    \
    } while (0)

/* ------------------------------------------------------------ cases */

/*
 * Every producer metric moves, with the KPL's names and units, at every
 * granularity, and agrees with the results the records got.
 */
static void test_producer_metrics_agree_with_results(void **state)
{
    (void)state;
    const char *url = kn_test_server_url("KN_TEST_KINESALITE_URL");
    kn_client_t *c = direct_client(url);
    char stream[128], dims[256];
    kn_fault_stream_name(stream, sizeof(stream), "metrics");
    make_stream(c, stream, 2);
    run_t run;
    new_run(&run, 3000);
    sink_t *s = new_sink();
    produce(url, stream, &run, 40, s, NULL, 0);

    assert_int_equal(s->bad, 0);
    assert_string_equal(s->ns, "KinesisProducerLibrary");
    int n = run.n;
    char shards[2][80] = {"", ""};
    int on[2] = {0, 0};
    for (int i = 0; i < n; i++) {
        assert_int_equal(run.recs[i].results, 1);
        assert_int_equal(run.recs[i].err, KN_ERR_OK);
        int k = strcmp(run.recs[i].shard, "shardId-000000000000") == 0 ? 0 : 1;
        snprintf(shards[k], sizeof(shards[k]), "%s", run.recs[i].shard);
        on[k]++;
    }
    assert_true(on[0] > 0 && on[1] > 0);
    char sdims[160];
    snprintf(sdims, sizeof(sdims), "StreamName=%s", stream);

    ASSERT_SUM(s, "UserRecordsReceived", "", n);
    ASSERT_SUM(s, "UserRecordsReceived", sdims, n);
    ASSERT_SUM(s, "UserRecordsPut", "", n);
    ASSERT_SUM(s, "UserRecordsPut", sdims, n);
    ASSERT_SUM(s, "UserRecordsDataPut", "", (double)n * DATA_LEN);
    for (int k = 0; k < 2; k++) {
        snprintf(dims, sizeof(dims), "StreamName=%s,ShardId=%s", stream, shards[k]);
        ASSERT_SUM(s, "UserRecordsPut", dims, on[k]);
        ASSERT_SUM(s, "UserRecordsDataPut", dims, (double)on[k] * DATA_LEN);
    }
    assert_string_equal(total(s, "UserRecordsDataPut", "").unit, "Bytes");
    assert_string_equal(total(s, "BufferingTime", "").unit, "Milliseconds");
    assert_string_equal(total(s, "UserRecordsPut", "").unit, "Count");
    /* No faults: one attempt each, so no retries and one buffering sample per record. */
    ASSERT_SUM(s, "RetriesPerRecord", "", 0);
    assert_int_equal(total(s, "RetriesPerRecord", "").count, n);
    assert_int_equal(total(s, "BufferingTime", "").count, n);
    ASSERT_SUM(s, "AllErrors", "", 0);
    assert_false(seen(s, "ErrorsByCode"));
    assert_false(seen(s, "UserRecordExpired"));
    /* Kinesis records: as many as PutRecords carried, holding every user record. */
    got_t kput = total(s, "KinesisRecordsPut", "");
    assert_true(kput.sum >= 2 && kput.sum < n); /* aggregated */
    assert_int_equal(kput.count, (uint64_t)kput.sum);
    ASSERT_SUM(s, "UserRecordsPerKinesisRecord", "", n);
    assert_int_equal(total(s, "UserRecordsPerKinesisRecord", "").count, (uint64_t)kput.sum);
    ASSERT_SUM(s, "KinesisRecordsPerPutRecordsRequest", "", kput.sum);
    ASSERT_SUM(s, "UserRecordsPerPutRecordsRequest", "", n);
    uint64_t requests = total(s, "KinesisRecordsPerPutRecordsRequest", "").count;
    assert_true(requests >= 1);
    assert_int_equal(total(s, "RequestTime", "").count, requests);
    assert_int_equal(total(s, "RequestTime", sdims).count, requests);
    assert_true(total(s, "KinesisRecordsDataPut", "").sum > (double)n * DATA_LEN);
    /* Request-level metrics stop at the stream, as the KPL's do. */
    snprintf(dims, sizeof(dims), "StreamName=%s,ShardId=%s", stream, shards[0]);
    assert_int_equal(total(s, "RequestTime", dims).count, 0);
    assert_int_equal(total(s, "UserRecordsReceived", dims).count, 0);
    assert_true(total(s, "KinesisRecordsPut", dims).sum >= 1);
    assert_true(seen(s, "UserRecordsPending"));
    print_message("metrics: %zu series, %d calls; %.0f Kinesis records in %llu requests\n", s->n, s->calls,
                  kput.sum, (unsigned long long)requests);
    free_sink(s);
    free(run.recs);
    drop_stream(c, stream);
    kn_client_destroy(c);
}

/* metrics.level and metrics.granularity (with the KPL's names) choose what is gathered. */
static void test_levels_and_granularities(void **state)
{
    (void)state;
    const char *url = kn_test_server_url("KN_TEST_KINESALITE_URL");
    kn_client_t *c = direct_client(url);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "mlevels");
    make_stream(c, stream, 2);

    /* summary, global: the summary metrics only, without dimensions. */
    run_t run;
    new_run(&run, 500);
    sink_t *s = new_sink();
    const char *summary[] = {"MetricsLevel", "summary", "MetricsGranularity", "global", NULL};
    produce(url, stream, &run, 10, s, summary, 0);
    assert_true(s->n > 0);
    for (size_t i = 0; i < s->n; i++) {
        const got_t *g = &s->m[i];
        bool is_summary = strcmp(g->name, "UserRecordsPut") == 0 || strcmp(g->name, "KinesisRecordsPut") == 0 ||
                          strcmp(g->name, "BufferingTime") == 0 || strcmp(g->name, "AllErrors") == 0;
        if (!is_summary)
            fail_msg("%s gathered at level summary", g->name);
        if (g->dims[0])
            fail_msg("%s{%s} gathered at granularity global", g->name, g->dims);
    }
    ASSERT_SUM(s, "UserRecordsPut", "", run.n);
    free_sink(s);
    free(run.recs);

    /* detailed, stream: no ShardId anywhere. */
    new_run(&run, 500);
    s = new_sink();
    const char *by_stream[] = {"metrics.granularity", "stream", "metrics.namespace", "MyApp/Producer", NULL};
    produce(url, stream, &run, 10, s, by_stream, 0);
    assert_string_equal(s->ns, "MyApp/Producer");
    assert_true(seen(s, "UserRecordsDataPut"));
    for (size_t i = 0; i < s->n; i++)
        if (strstr(s->m[i].dims, "ShardId"))
            fail_msg("%s{%s} gathered at granularity stream", s->m[i].name, s->m[i].dims);
    char sdims[160];
    snprintf(sdims, sizeof(sdims), "StreamName=%s", stream);
    ASSERT_SUM(s, "UserRecordsPut", sdims, run.n);
    free_sink(s);
    free(run.recs);

    /* none: the callback is never called. */
    new_run(&run, 100);
    s = new_sink();
    const char *none[] = {"metrics.level", "NONE", NULL};
    produce(url, stream, &run, 10, s, none, 0);
    assert_int_equal(s->calls, 0);
    free_sink(s);
    free(run.recs);
    drop_stream(c, stream);
    kn_client_destroy(c);
}

/*
 * Throttled PutRecords calls (the proxy answers 400 ProvisionedThroughputExceeded
 * to a share of them): RetriesPerRecord adds up to the attempts the results
 * report, and every throttled call counts once in ErrorsByCode and AllErrors.
 */
static void test_retries_and_errors_after_throttling(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "21", "--throttle-fraction", "0.4", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *c = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "mthrottle");
    make_stream(c, stream, 2);
    run_t run;
    new_run(&run, 2000);
    sink_t *s = new_sink();
    const char *kv[] = {"producer.aggregation.enabled", "false", "CollectionMaxCount", "50", NULL};
    produce(px.url, stream, &run, 40, s, kv, 0);

    long throttled = kn_fproxy_stat(&px, "kinds.throttle");
    assert_true(throttled > 0);
    long retries = 0, attempts = 0;
    for (int i = 0; i < run.n; i++) {
        assert_int_equal(run.recs[i].err, KN_ERR_OK);
        retries += run.recs[i].attempts - 1;
        attempts += run.recs[i].attempts;
    }
    assert_true(retries > 0);
    ASSERT_SUM(s, "RetriesPerRecord", "", retries);
    assert_int_equal(total(s, "RetriesPerRecord", "").max > 0, 1);
    assert_int_equal(total(s, "BufferingTime", "").count, attempts);
    ASSERT_SUM(s, "ErrorsByCode", "ErrorCode=ProvisionedThroughputExceededException", throttled);
    char dims[256];
    snprintf(dims, sizeof(dims), "ErrorCode=ProvisionedThroughputExceededException,StreamName=%s", stream);
    ASSERT_SUM(s, "ErrorsByCode", dims, throttled);
    ASSERT_SUM(s, "AllErrors", "", throttled);
    ASSERT_SUM(s, "UserRecordsPut", "", run.n);
    print_message("mthrottle: %ld throttled calls, %ld retries over %d records\n", throttled, retries, run.n);
    free_sink(s);
    free(run.recs);
    drop_stream(c, stream);
    kn_client_destroy(c);
    kn_fproxy_stop(&px);
}

/* Every PutRecords fails (500): the records expire at their TTL, counted in UserRecordExpired. */
static void test_expired_records(void **state)
{
    (void)state;
    const char *proxy[] = {"--error-fraction", "1", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *c = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "mexpire");
    make_stream(c, stream, 1);
    run_t run;
    new_run(&run, 200);
    sink_t *s = new_sink();
    const char *kv[] = {"producer.record.ttl.ms", "800", NULL};
    produce(px.url, stream, &run, 5, s, kv, 0);
    for (int i = 0; i < run.n; i++)
        assert_int_equal(run.recs[i].err, KN_ERR_TIMEOUT);
    ASSERT_SUM(s, "UserRecordExpired", "", run.n);
    ASSERT_SUM(s, "UserRecordsPut", "", 0);
    assert_int_equal(total(s, "UserRecordsPut", "").count, run.n);
    assert_true(total(s, "AllErrors", "").sum > 0);
    assert_true(total(s, "ErrorsByCode", "ErrorCode=InternalFailure").sum > 0);
    free_sink(s);
    free(run.recs);
    drop_stream(c, stream);
    kn_client_destroy(c);
    kn_fproxy_stop(&px);
}

/* Answers held back 2.5 s: a second's sample sees every record pending. */
static void test_user_records_pending(void **state)
{
    (void)state;
    const char *proxy[] = {"--slow-fraction", "1", "--slow-ms", "2500", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *c = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "mpending");
    make_stream(c, stream, 1);
    run_t run;
    new_run(&run, 300);
    sink_t *s = new_sink();
    produce(px.url, stream, &run, 5, s, NULL, 1500);
    char sdims[160];
    snprintf(sdims, sizeof(sdims), "StreamName=%s", stream);
    got_t pend = total(s, "UserRecordsPending", sdims);
    assert_true(pend.count >= 1);
    if (pend.max != run.n)
        fail_msg("UserRecordsPending max %.0f, want %d", pend.max, run.n);
    assert_true(total(s, "UserRecordsPending", "").max == run.n);
    assert_true(total(s, "RequestTime", "").min >= 2400);
    free_sink(s);
    free(run.recs);
    drop_stream(c, stream);
    kn_client_destroy(c);
    kn_fproxy_stop(&px);
}

/* kn_metric_json: one object, escaped, with the average; a short buffer says how much it needs. */
static void test_metric_json(void **state)
{
    (void)state;
    kn_metric_dim_t dims[] = {{"StreamName", "s\"1"}, {"ShardId", "shardId-000000000001"}};
    kn_metric_t m = {sizeof(kn_metric_t), "UserRecordsPut", "Count", dims, 2, 10, 1, 4, 4, 1000, 2000};
    char buf[512];
    size_t need = kn_metric_json("Ns", &m, buf, sizeof(buf));
    assert_int_equal(need, strlen(buf));
    json_object *j = json_tokener_parse(buf);
    assert_non_null(j);
    json_object *v, *d;
    assert_true(json_object_object_get_ex(j, "name", &v));
    assert_string_equal(json_object_get_string(v), "UserRecordsPut");
    assert_true(json_object_object_get_ex(j, "dimensions", &d));
    assert_true(json_object_object_get_ex(d, "StreamName", &v));
    assert_string_equal(json_object_get_string(v), "s\"1");
    assert_true(json_object_object_get_ex(j, "average", &v));
    assert_true(json_object_get_double(v) == 2.5);
    assert_true(json_object_object_get_ex(j, "count", &v));
    assert_int_equal(json_object_get_int64(v), 4);
    json_object_put(j);
    char small[16];
    assert_int_equal(kn_metric_json("Ns", &m, small, sizeof(small)), need);
    assert_int_equal(strlen(small), sizeof(small) - 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_producer_metrics_agree_with_results),
        cmocka_unit_test(test_levels_and_granularities),
        cmocka_unit_test(test_retries_and_errors_after_throttling),
        cmocka_unit_test(test_expired_records),
        cmocka_unit_test(test_user_records_pending),
        cmocka_unit_test(test_metric_json),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
