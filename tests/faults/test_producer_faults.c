/*
 * The producer under injected faults: tests/faults/fault_proxy.py sits
 * between the producer and a real kinesalite and resets connections, answers
 * 500s, throttles whole requests, fails part of a PutRecords, answers late
 * (past the request timeout), loses or corrupts answers of requests that took
 * effect, or has its upstream killed and restarted (kinesalite with --path
 * keeps its data). Each test then checks what the producer promises:
 *   - every record put gets exactly one result (through kn_producer_flush);
 *   - every record reported successful is in the stream, read back with
 *     GetRecords directly from the upstream and de-aggregated, with its key and
 *     bytes, on the shard and at the sequence number (and sub-sequence) its
 *     result names;
 *   - a failed record carries an error code and a message naming the cause;
 *   - the fault really happened (the proxy's counters) and shows in the
 *     results' attempt lists where the service named it;
 *   - the producer's statistics count what the results say;
 *   - with producer.ordering.strict=true, the records of each partition key
 *     are in the stream exactly once and in put order despite partial failures
 *     and throttling.
 * Run one case: test_producer_faults <name-pattern> (meson runs each case as
 * its own test, faults_<name>).
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "test_new.h"
#include "agg.h"
#include "client.h"
#include "clock.h"
#include "err.h"
#include "fault.h"
#include "fault_util.h"
#include "hashkey.h"
#include "kinesis/producer.h"
#include "kinesis_ops.h"

#define DATA_LEN 100

/* What we know about one record. */
typedef struct rec_s {
    int results;     /* result callbacks seen */
    kn_err_t err;    /* of the first result */
    char errstr[256];
    char shard[80];
    char seq[128];
    uint64_t sub;
    bool aggregated; /* put inside an aggregate (else as a plain Kinesis record) */
    int attempts;
    bool saw_error_name; /* an attempt names the expected service error */
    int found;           /* times read back from the stream */
    bool at_result_position; /* read back at the shard/sequence/sub-sequence of its result */
} rec_t;

typedef struct run_s {
    rec_t *recs;
    int n;
    int nkeys;
    const char *expect_error_name; /* for saw_error_name; NULL: any non-empty name */
    long bad_opaque;
    long results;
} run_t;

static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    run_t *run = opaque;
    rec_t *rec = kn_result_opaque(r);
    run->results++;
    if (!rec || rec < run->recs || rec >= run->recs + run->n) {
        run->bad_opaque++;
        return;
    }
    if (rec->results++ > 0)
        return;
    rec->err = kn_result_err(r);
    snprintf(rec->errstr, sizeof(rec->errstr), "%s", kn_result_errstr(r));
    if (rec->err == KN_ERR_OK) {
        const char *shard = kn_result_shard_id(r), *seq = kn_result_sequence_number(r);
        snprintf(rec->shard, sizeof(rec->shard), "%s", shard ? shard : "");
        snprintf(rec->seq, sizeof(rec->seq), "%s", seq ? seq : "");
        rec->sub = kn_result_sub_sequence(r);
        rec->aggregated = kn_result_aggregated(r);
    }
    rec->attempts = kn_result_attempt_count(r);
    for (int i = 0; i < rec->attempts; i++) {
        kn_attempt_t a = KN_ATTEMPT_INIT;
        if (!kn_result_attempt(r, i, &a) || !a.error_name || !a.error_name[0])
            continue;
        if (!run->expect_error_name || strstr(a.error_name, run->expect_error_name))
            rec->saw_error_name = true;
    }
}

static void key_of(int i, int nkeys, char *out, size_t size)
{
    snprintf(out, size, "pk-%d", i % nkeys);
}

/* "rec:<index>:" then a filler derived from the index, DATA_LEN bytes in all. */
static void data_of(int i, unsigned char *out)
{
    int n = snprintf((char *)out, DATA_LEN, "rec:%07d:", i);
    for (int j = n; j < DATA_LEN; j++)
        out[j] = (unsigned char)('a' + (i * 31 + j) % 26);
}

static kn_conf_t *base_conf(const char *url)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *kv[] = {"kinesis.endpoint", url, "aws.region", "us-east-1", "aws.access.key.id", "AKIDFAULTS",
                        "aws.secret.access.key", "faults-secret", "aws.retry.max.attempts", "5",
                        "aws.retry.base.ms", "20", "aws.retry.max.backoff.ms", "500", NULL};
    for (int i = 0; kv[i]; i += 2)
        if (kn_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != KN_ERR_OK)
            fail_msg("conf %s: %s", kv[i], err);
    return conf;
}

static kn_client_t *direct_client(const char *url)
{
    kn_conf_t *conf = base_conf(url);
    char err[512];
    kn_client_t *c = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!c)
        fail_msg("kn_client_new: %s", err);
    return c;
}

#define CHECK(call, e)                                                                                 \
    do {                                                                                               \
        kn_err_t rc_ = (call);                                                                         \
        if (rc_ != KN_ERR_OK)                                                                          \
            fail_msg("%s failed: %s: %s", #call, kn_err2name(rc_), (e).message);                       \
    } while (0)

static void create_stream(kn_client_t *c, const char *name, int shards)
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

/* Per-key order of the records as read back (indexes in stream order). */
typedef struct order_s {
    int *idx;
    int len, cap;
} order_t;

/*
 * Reads every shard from TRIM_HORIZON to the end, de-aggregates, checks each
 * user record's key and bytes, counts it and appends it to its key's order.
 */
static void read_back(kn_client_t *c, const char *stream, run_t *run, order_t *orders)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {stream, NULL};
    kn__shard_list_t shards = {0};
    kn__agg_decoded_t dec = KN__AGG_DECODED_INIT;
    CHECK(kn__kinesis_list_shards(c, &ref, NULL, &shards, &e), e);
    for (size_t s = 0; s < shards.count; s++) {
        kn__iterator_pos_t pos = {KN__IT_TRIM_HORIZON, NULL, 0};
        char *it = NULL;
        CHECK(kn__kinesis_get_shard_iterator(c, &ref, shards.shards[s].shard_id, &pos, &it, &e), e);
        for (int page = 0; it && page < 10000; page++) {
            kn__get_records_result_t res = {0};
            CHECK(kn__kinesis_get_records(c, NULL, it, 10000, &res, &e), e);
            free(it);
            it = res.next_iterator ? strdup(res.next_iterator) : NULL;
            size_t got = res.count;
            for (size_t k = 0; k < res.count; k++) {
                const kn__record_t *kr = &res.records[k];
                CHECK(kn__agg_decode(kr->data, kr->data_len, kr->partition_key, kr->partition_key_len, NULL, 0,
                                     &dec, &e),
                      e);
                for (size_t u = 0; u < dec.count; u++) {
                    const kn__agg_rec_t *ur = &dec.records[u];
                    int i = -1;
                    if (ur->data_len != DATA_LEN || sscanf((const char *)ur->data, "rec:%7d:", &i) != 1 || i < 0 ||
                        i >= run->n)
                        fail_msg("shard %s: a record that we did not put (%zu bytes)", shards.shards[s].shard_id,
                                 ur->data_len);
                    unsigned char want[DATA_LEN];
                    char key[32];
                    data_of(i, want);
                    key_of(i, run->nkeys, key, sizeof(key));
                    if (memcmp(ur->data, want, DATA_LEN) != 0)
                        fail_msg("record %d: bytes differ", i);
                    if (ur->partition_key_len != strlen(key) || memcmp(ur->partition_key, key, strlen(key)) != 0)
                        fail_msg("record %d: partition key %.*s, want %s", i, (int)ur->partition_key_len,
                                 ur->partition_key, key);
                    rec_t *rec = &run->recs[i];
                    rec->found++;
                    if (!strcmp(rec->shard, shards.shards[s].shard_id) && !strcmp(rec->seq, kr->sequence_number) &&
                        rec->sub == ur->sub_sequence)
                        rec->at_result_position = true;
                    order_t *o = &orders[i % run->nkeys];
                    if (o->len == o->cap) {
                        o->cap = o->cap ? o->cap * 2 : 64;
                        o->idx = realloc(o->idx, (size_t)o->cap * sizeof(int));
                        assert_non_null(o->idx);
                    }
                    o->idx[o->len++] = i;
                }
            }
            kn__get_records_result_free(&res);
            if (got == 0)
                break; /* everything was put before we read: an empty page is the end */
        }
        free(it);
    }
    kn__agg_decoded_free(&dec);
    kn__shard_list_free(&shards);
}

/* A test case. */
typedef struct fcase_s {
    const char *tag;
    const char *const *proxy_args; /* NULL-terminated */
    const char *const *conf;       /* name/value pairs, NULL-terminated */
    int n;                         /* records */
    int nkeys;
    int shards;
    const char *kind;              /* proxy counter that must be > 0 ("kinds.x"), or NULL */
    const char *expect_error_name; /* some record's attempts name it; NULL: not checked */
    bool strict_check;             /* each key's records exactly once and in put order */
    bool allow_failures;           /* some records may fail (each with a reason) */
    bool own_kinesalite;           /* the proxy runs its own kinesalite (with --path) */
    bool restart;                  /* kill and restart that kinesalite while producing */
} fcase_t;

typedef struct outcome_s {
    int ok, failed;
    int retried;         /* records with more than one attempt */
    int saw_error_name;  /* records whose attempts name the expected error */
    int duplicates;      /* records found more than once (at-least-once delivery) */
} outcome_t;

static void put_range(kn_producer_t *p, const char *stream, run_t *run, int from, int to)
{
    char key[32], err[256];
    unsigned char data[DATA_LEN];
    for (int i = from; i < to; i++) {
        key_of(i, run->nkeys, key, sizeof(key));
        data_of(i, data);
        kn_record_t r = {sizeof(kn_record_t), stream, key, 0, NULL, data, DATA_LEN, &run->recs[i]};
        kn_err_t rc = kn_producer_put(p, &r, err, sizeof(err));
        if (rc != KN_ERR_OK)
            fail_msg("put %d: %s: %s", i, kn_err2name(rc), err);
        /* Pace the puts (5 ms every 25 records) so that the records go out in many requests
         * (producer.record.max.buffered.ms is 5) and the faults land on many of them. */
        if (i % 25 == 24) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
            kn_producer_poll(p, 0);
        }
    }
}

static void run_case(const fcase_t *fc, outcome_t *out)
{
    kn_fproxy_t px;
    kn_fproxy_start(&px, fc->own_kinesalite ? NULL : kn_test_server_url("KN_TEST_KINESALITE_URL"), fc->proxy_args);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), fc->tag);
    create_stream(direct, stream, fc->shards);

    run_t run = {0};
    run.n = fc->n;
    run.nkeys = fc->nkeys;
    run.expect_error_name = fc->expect_error_name;
    run.recs = calloc((size_t)fc->n, sizeof(rec_t));
    assert_non_null(run.recs);

    kn_conf_t *conf = base_conf(px.url);
    char err[512];
    assert_int_equal(kn_conf_set(conf, "producer.record.max.buffered.ms", "5", err, sizeof(err)), KN_ERR_OK);
    for (int i = 0; fc->conf && fc->conf[i]; i += 2)
        if (kn_conf_set(conf, fc->conf[i], fc->conf[i + 1], err, sizeof(err)) != KN_ERR_OK)
            fail_msg("conf %s: %s", fc->conf[i], err);
    kn_conf_set_result_cb(conf, on_result, &run);
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);

    if (fc->restart) {
        /* A third before, a third while the server is down, a third after it is back. */
        int a = fc->n / 3, b = 2 * fc->n / 3;
        put_range(p, stream, &run, 0, a);
        kn_err_t rc = kn_producer_flush(p, 40000);
        assert_int_equal(rc, KN_ERR_OK);
        assert_int_equal(kn_fproxy_upstream(&px, "stop"), 0);
        put_range(p, stream, &run, a, b);
        for (int i = 0; i < 15; i++) { /* 1.5 s of failing requests */
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
            kn_producer_poll(p, 0);
        }
        assert_int_equal(kn_fproxy_upstream(&px, "start"), 0);
        put_range(p, stream, &run, b, fc->n);
    } else {
        put_range(p, stream, &run, 0, fc->n);
    }
    kn_err_t rc = kn_producer_flush(p, 45000);
    if (rc != KN_ERR_OK)
        fail_msg("flush: %s with %" PRId64 " records pending", kn_err2name(rc), kn_producer_pending(p));
    assert_int_equal(kn_producer_pending(p), 0);
    char *stats = kn_producer_stats_json(p);
    assert_non_null(stats);
    kn_producer_destroy(p);

    /* Exactly one result per record, nothing unknown. */
    assert_int_equal(run.bad_opaque, 0);
    assert_int_equal(run.results, fc->n);

    /* The counters agree with the results. */
    long n_ok = 0;
    for (int i = 0; i < fc->n; i++)
        n_ok += run.recs[i].err == KN_ERR_OK;
    json_object *js = json_tokener_parse(stats), *v = NULL;
    if (!js)
        fail_msg("stats are not JSON: %s", stats);
    assert_true(json_object_object_get_ex(js, "user_records_received", &v));
    assert_int_equal(json_object_get_int64(v), fc->n);
    assert_true(json_object_object_get_ex(js, "user_records_put", &v));
    assert_int_equal(json_object_get_int64(v), n_ok);
    assert_true(json_object_object_get_ex(js, "user_records_pending", &v));
    assert_int_equal(json_object_get_int64(v), 0);
    json_object_put(js);
    kn_free(stats);

    if (fc->kind) {
        long hits = kn_fproxy_stat(&px, fc->kind);
        if (hits <= 0)
            fail_msg("the proxy injected no %s (%ld): the test proved nothing", fc->kind, hits);
    }

    order_t *orders = calloc((size_t)fc->nkeys, sizeof(order_t));
    assert_non_null(orders);
    read_back(direct, stream, &run, orders);

    memset(out, 0, sizeof(*out));
    for (int i = 0; i < fc->n; i++) {
        rec_t *r = &run.recs[i];
        if (r->results != 1)
            fail_msg("record %d: %d results", i, r->results);
        if (r->err == KN_ERR_OK) {
            out->ok++;
            if (!r->found)
                fail_msg("record %d was reported put (shard %s, sequence %s) but is not in the stream", i, r->shard,
                         r->seq);
            if (!r->at_result_position)
                fail_msg("record %d: not found at the position of its result (shard %s, sequence %s, sub %" PRIu64
                         ")",
                         i, r->shard, r->seq, r->sub);
        } else {
            out->failed++;
            if (!fc->allow_failures)
                fail_msg("record %d failed: %s: %s", i, kn_err2name(r->err), r->errstr);
            if (!r->errstr[0])
                fail_msg("record %d failed with %s but no message", i, kn_err2name(r->err));
        }
        if (r->attempts < 1)
            fail_msg("record %d: %d attempts in its result", i, r->attempts);
        if (r->attempts > 1)
            out->retried++;
        if (r->saw_error_name)
            out->saw_error_name++;
        if (r->found > 1)
            out->duplicates++;
    }
    if (fc->expect_error_name && out->saw_error_name == 0)
        fail_msg("no record's attempts name %s", fc->expect_error_name);
    if (fc->strict_check) {
        for (int k = 0; k < fc->nkeys; k++) {
            const order_t *o = &orders[k];
            for (int j = 1; j < o->len; j++)
                if (o->idx[j] <= o->idx[j - 1]) {
                    char around[256] = "";
                    for (int m = j < 4 ? 0 : j - 4, w = 0; m < o->len && m < j + 4; m++)
                        w += snprintf(around + w, sizeof(around) - (size_t)w, " %d(x%d)", o->idx[m],
                                      run.recs[o->idx[m]].found);
                    fail_msg("key pk-%d: record %d is in the stream after record %d; the key's records there "
                             "(times found):%s", k, o->idx[j], o->idx[j - 1], around);
                }
        }
        assert_int_equal(out->duplicates, 0);
    }
    print_message("%s: %d ok, %d failed, %d retried, %d named %s, %d duplicated; proxy injected %ld\n", fc->tag,
                  out->ok, out->failed, out->retried, out->saw_error_name,
                  fc->expect_error_name ? fc->expect_error_name : "an error", out->duplicates,
                  kn_fproxy_stat(&px, "injected"));

    for (int k = 0; k < fc->nkeys; k++)
        free(orders[k].idx);
    free(orders);
    free(run.recs);
    delete_stream(direct, stream);
    kn_client_destroy(direct);
    kn_fproxy_stop(&px);
}

/* ---------------------------------------------------------------- cases */

static void test_resets(void **state)
{
    (void)state;
    /* libcurl resends a request once by itself when a reused connection dies; 0.5 makes some resets reach us. */
    const char *proxy[] = {"--seed", "11", "--reset-fraction", "0.5", NULL};
    fcase_t fc = {.tag = "resets", .proxy_args = proxy, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.reset"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

static void test_500s(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "12", "--error-fraction", "0.3", NULL};
    fcase_t fc = {.tag = "e500", .proxy_args = proxy, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.error", .expect_error_name = "InternalFailure"};
    outcome_t o;
    run_case(&fc, &o);
}

static void test_throttling(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "13", "--throttle-fraction", "0.3", NULL};
    fcase_t fc = {.tag = "throttle", .proxy_args = proxy, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.throttle", .expect_error_name = "ProvisionedThroughputExceeded"};
    outcome_t o;
    run_case(&fc, &o);
}

/* FailIfThrottled: throttled records fail at once, with a reason; the others are in the stream. */
static void test_fail_if_throttled(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "14", "--throttle-fraction", "0.3", "--partial-every", "9", NULL};
    const char *conf[] = {"producer.fail.if.throttled", "true", "producer.aggregation.enabled", "false", NULL};
    fcase_t fc = {.tag = "failthr", .proxy_args = proxy, .conf = conf, .n = 2000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.throttle", .allow_failures = true};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.failed > 0);
    assert_true(o.ok > 0);
}

/* Partial PutRecords failures of single records (no aggregation), both error codes the service uses. */
static void test_partial_failures(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "15", "--partial-every", "7", "--partial-error",
                           "ProvisionedThroughputExceededException", "--partial-error", "InternalFailure", NULL};
    const char *conf[] = {"producer.aggregation.enabled", "false", NULL};
    fcase_t fc = {.tag = "partial", .proxy_args = proxy, .conf = conf, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.partial_entries"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
    assert_true(o.saw_error_name > 0);
}

/* Partial failures of whole aggregates. */
static void test_partial_failures_aggregated(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "16", "--partial-fraction", "0.3", NULL};
    const char *conf[] = {"producer.aggregation.max.size", "2048", NULL};
    fcase_t fc = {.tag = "partagg", .proxy_args = proxy, .conf = conf, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.partial_entries", .expect_error_name = "ProvisionedThroughputExceeded"};
    outcome_t o;
    run_case(&fc, &o);
}

/*
 * Slow answers past the request timeout and lost answers: requests that took
 * effect are retried, so records may be in the stream twice, but each has one
 * result, and it points at one of its copies.
 */
static void test_slow_and_lost_answers(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "17", "--slow-fraction", "0.25", "--slow-ms", "1500",
                           "--lost-answer-fraction", "0.1", NULL};
    const char *conf[] = {"http.request.timeout.ms", "700", NULL};
    fcase_t fc = {.tag = "slow", .proxy_args = proxy, .conf = conf, .n = 2000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.slow"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

/* Answers cut in half (broken JSON) of requests that took effect: retried, at least once in the stream. */
static void test_corrupt_answers(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "20", "--corrupt-fraction", "0.25", NULL};
    fcase_t fc = {.tag = "corrupt", .proxy_args = proxy, .n = 2000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.corrupt"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

/* The same guarantees with results delivered from the producer's own thread (background mode). */
static void test_background_results(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "21", "--partial-every", "6", "--reset-fraction", "0.2", "--error-fraction",
                           "0.1", NULL};
    const char *conf[] = {"producer.results.background", "true", NULL};
    fcase_t fc = {.tag = "bg", .proxy_args = proxy, .conf = conf, .n = 3000, .nkeys = 64, .shards = 4,
                  .kind = "kinds.partial_entries"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

/* Strict ordering: each key's records exactly once and in put order despite partial failures and throttles. */
static void test_strict_order_partial(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "18", "--partial-every", "5", "--throttle-fraction", "0.1", NULL};
    const char *conf[] = {"producer.ordering.strict", "true", "producer.aggregation.enabled", "false", NULL};
    /* One record per shard per request in this mode: a few hundred records keep it well inside the TTL. */
    fcase_t fc = {.tag = "strict", .proxy_args = proxy, .conf = conf, .n = 250, .nkeys = 8, .shards = 4,
                  .kind = "kinds.partial_entries", .strict_check = true};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

/* The same with aggregation: failed aggregates are resent before later records of their shard. */
static void test_strict_order_aggregated(void **state)
{
    (void)state;
    const char *proxy[] = {"--seed", "19", "--partial-fraction", "0.25", "--reset-fraction", "0.1", NULL};
    const char *conf[] = {"producer.ordering.strict", "true", "producer.aggregation.max.size", "1024", NULL};
    fcase_t fc = {.tag = "strictagg", .proxy_args = proxy, .conf = conf, .n = 2000, .nkeys = 8, .shards = 2,
                  .kind = "kinds.partial_entries", .strict_check = true};
    outcome_t o;
    run_case(&fc, &o);
}

/* Baseline for the two above: strict ordering through the proxy with no fault at all. */
static void test_strict_order_no_faults(void **state)
{
    (void)state;
    const char *conf[] = {"producer.ordering.strict", "true", "producer.aggregation.max.size", "1024", NULL};
    fcase_t fc = {.tag = "strictnf", .conf = conf, .n = 2000, .nkeys = 8, .shards = 2, .strict_check = true};
    outcome_t o;
    run_case(&fc, &o);
}

/*
 * A Kinesis record's success is normally written into its user records by
 * the serving thread (one allocation per Kinesis record carries it there).
 * With that allocation failing for the first 40 Kinesis records, the loop
 * writes them itself: every record still gets one result, at the shard,
 * sequence and sub-sequence where it is read back, and the rest take the
 * usual path in the same run.
 */
static void test_results_without_fill_memory(void **state)
{
    (void)state;
    const char *conf[] = {"producer.aggregation.max.size", "1024", NULL};
    fcase_t fc = {.tag = "nofill", .conf = conf, .n = 2000, .nkeys = 40, .shards = 2};
    outcome_t o;
    kn__fault_arm(KN__FP_PRODUCER_FILL_ALLOC, 40);
    run_case(&fc, &o);
    int left = kn__fault_left(KN__FP_PRODUCER_FILL_ALLOC);
    kn__fault_arm(KN__FP_PRODUCER_FILL_ALLOC, 0);
    assert_int_equal(left, 0);
    assert_int_equal(o.ok, fc.n);
}

/* The server killed (SIGKILL) and restarted on the same port and data directory while producing. */
static void test_server_restart(void **state)
{
    (void)state;
    fcase_t fc = {.tag = "restart", .n = 1500, .nkeys = 64, .shards = 4, .own_kinesalite = true,
                  .restart = true, .kind = "kinds.upstream_down"};
    outcome_t o;
    run_case(&fc, &o);
    assert_true(o.retried > 0);
}

/* The server stays down past the records' TTL: every record fails with a reason, none is left hanging. */
static void test_server_down_ttl(void **state)
{
    (void)state;
    kn_fproxy_t px;
    kn_fproxy_start(&px, NULL, NULL);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "ttl");
    create_stream(direct, stream, 2);

    run_t run = {0};
    run.n = 300;
    run.nkeys = 16;
    run.recs = calloc((size_t)run.n, sizeof(rec_t));
    assert_non_null(run.recs);
    kn_conf_t *conf = base_conf(px.url);
    char err[512];
    assert_int_equal(kn_conf_set(conf, "producer.record.ttl.ms", "1500", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "producer.record.max.buffered.ms", "5", err, sizeof(err)), KN_ERR_OK);
    kn_conf_set_result_cb(conf, on_result, &run);
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);

    /* The first 50 while the server is up (the producer learns the shards), the rest while it is down. */
    put_range(p, stream, &run, 0, 50);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    kn_client_destroy(direct);
    assert_int_equal(kn_fproxy_upstream(&px, "stop"), 0);
    put_range(p, stream, &run, 50, run.n);
    assert_int_equal(kn_producer_flush(p, 40000), KN_ERR_OK);
    kn_producer_destroy(p);

    assert_int_equal(run.bad_opaque, 0);
    assert_int_equal(run.results, run.n);
    for (int i = 0; i < run.n; i++) {
        rec_t *r = &run.recs[i];
        assert_int_equal(r->results, 1);
        if (i < 50) {
            if (r->err != KN_ERR_OK)
                fail_msg("record %d (server up) failed: %s", i, r->errstr);
        } else {
            if (r->err == KN_ERR_OK)
                fail_msg("record %d was reported put while the server was down", i);
            if (!r->errstr[0])
                fail_msg("record %d failed with %s but no message", i, kn_err2name(r->err));
        }
    }
    print_message("ttl: record 50 failed with %s: %s\n", kn_err2name(run.recs[50].err), run.recs[50].errstr);
    free(run.recs);
    kn_fproxy_stop(&px);
}

/* ---------------------------------------------------------------- wrong shards */

/*
 * The proxy says that records stored on shard 0 landed on shard 1 (what a
 * producer sees when the service routes an aggregate elsewhere than its map
 * predicted, after a reshard). owner[i] receives the shard id whose hash range
 * holds record i's key (from a listing of the upstream).
 */
static void owners(kn_client_t *direct, const char *stream, run_t *run, char (*owner)[80])
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {stream, NULL};
    kn__shard_list_t shards = {0};
    CHECK(kn__kinesis_list_shards(direct, &ref, NULL, &shards, &e), e);
    for (int i = 0; i < run->n; i++) {
        char key[32];
        key_of(i, run->nkeys, key, sizeof(key));
        kn__hashkey_t h = kn__hashkey_from_partition_key(key, strlen(key));
        owner[i][0] = 0;
        for (size_t k = 0; k < shards.count; k++)
            if (kn__hashkey_cmp(h, shards.shards[k].start_hash) >= 0 &&
                kn__hashkey_cmp(h, shards.shards[k].end_hash) <= 0)
                snprintf(owner[i], 80, "%s", shards.shards[k].shard_id);
    }
    kn__shard_list_free(&shards);
}

static kn_producer_t *wrong_shard_producer(const char *url, run_t *run, const char *const *conf_kv)
{
    kn_conf_t *conf = base_conf(url);
    char err[512];
    assert_int_equal(kn_conf_set(conf, "producer.record.max.buffered.ms", "5", err, sizeof(err)), KN_ERR_OK);
    for (int i = 0; conf_kv && conf_kv[i]; i += 2)
        if (kn_conf_set(conf, conf_kv[i], conf_kv[i + 1], err, sizeof(err)) != KN_ERR_OK)
            fail_msg("conf %s: %s", conf_kv[i], err);
    kn_conf_set_result_cb(conf, on_result, run);
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);
    return p;
}

/*
 * Destroy while the answers of aggregates that "landed on the wrong shard"
 * are still on their way: they arrive after the producer has cancelled what
 * was left, when no new shard map can come any more. Every record still gets
 * exactly one result: put for those whose shard holds their key, failed with
 * KN_ERR_DESTROYED (naming the shard) for the others.
 */
static void test_wrong_shard_answers_at_destroy(void **state)
{
    (void)state;
    const char *proxy[] = {"--rewrite-shard", "shardId-000000000000=shardId-000000000001", "--slow-fraction",
                           "1", "--slow-ms", "1500", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "wrongdestroy");
    create_stream(direct, stream, 2);
    run_t run = {0};
    run.n = 400;
    run.nkeys = 40;
    run.recs = calloc((size_t)run.n, sizeof(rec_t));
    char(*owner)[80] = calloc((size_t)run.n, sizeof(*owner));
    assert_non_null(run.recs);
    assert_non_null(owner);
    owners(direct, stream, &run, owner);
    const char *conf[] = {"producer.shutdown.timeout.ms", "200", NULL};
    kn_producer_t *p = wrong_shard_producer(px.url, &run, conf);
    put_range(p, stream, &run, 0, run.n);
    kn_producer_destroy(p); /* cancels after 200 ms; the answers come 1.5 s after the server's */

    assert_int_equal(run.bad_opaque, 0);
    int on0 = 0, destroyed = 0;
    for (int i = 0; i < run.n; i++) {
        rec_t *r = &run.recs[i];
        if (r->results != 1)
            fail_msg("record %d (key owned by %s): %d results", i, owner[i], r->results);
        if (strcmp(owner[i], "shardId-000000000000") != 0)
            continue;
        on0++;
        /*
         * A record that went out alone, as a plain Kinesis record, was placed
         * by the service from its own key: the producer rightly believes the
         * shard the answer names (here the proxy's lie). Only an aggregate's
         * landing is checked against the map.
         */
        if (r->err == KN_ERR_OK && r->aggregated)
            fail_msg("record %d reported put on %s, which does not hold its key", i, r->shard);
        if (r->err == KN_ERR_DESTROYED && strstr(r->errstr, "shardId-000000000001"))
            destroyed++;
    }
    print_message("wrongdestroy: %d records owned by shard 0, %d failed as destroyed naming shard 1; %ld "
                  "entries rewritten\n", on0, destroyed, kn_fproxy_stat(&px, "kinds.rewritten"));
    assert_true(on0 > 0);
    assert_true(destroyed > 0);
    assert_true(kn_fproxy_stat(&px, "kinds.rewritten") > 0);
    free(owner);
    free(run.recs);
    delete_stream(direct, stream);
    kn_client_destroy(direct);
    kn_fproxy_stop(&px);
}

/*
 * No memory to wait for a shard map after a wrong-shard landing: the records
 * are put again (a duplicate at worst), never reported as put on a shard
 * that does not hold their key.
 */
static void test_wrong_shard_without_memory(void **state)
{
    (void)state;
    const char *proxy[] = {"--rewrite-shard", "shardId-000000000000=shardId-000000000001", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "wrongnomem");
    create_stream(direct, stream, 2);
    run_t run = {0};
    run.n = 200;
    run.nkeys = 20;
    run.recs = calloc((size_t)run.n, sizeof(rec_t));
    char(*owner)[80] = calloc((size_t)run.n, sizeof(*owner));
    assert_non_null(run.recs);
    assert_non_null(owner);
    owners(direct, stream, &run, owner);
    /* Shard 0's records can never be confirmed through this proxy: they end at their TTL. */
    const char *conf[] = {"producer.record.ttl.ms", "2500", NULL};
    kn_producer_t *p = wrong_shard_producer(px.url, &run, conf);
    kn__fault_arm(KN__FP_PRODUCER_MISMATCH_ALLOC, 1000);
    put_range(p, stream, &run, 0, run.n);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    int used = 1000 - kn__fault_left(KN__FP_PRODUCER_MISMATCH_ALLOC);
    kn__fault_arm(KN__FP_PRODUCER_MISMATCH_ALLOC, 0);
    kn_producer_destroy(p);

    assert_int_equal(run.bad_opaque, 0);
    int on0 = 0;
    for (int i = 0; i < run.n; i++) {
        rec_t *r = &run.recs[i];
        assert_int_equal(r->results, 1);
        /* A plain (unaggregated) record is placed by the service from its key: see above. */
        if (r->err == KN_ERR_OK && r->aggregated && strcmp(r->shard, owner[i]) != 0)
            fail_msg("record %d reported put on %s; its key belongs to %s", i, r->shard, owner[i]);
        if (strcmp(owner[i], "shardId-000000000000") == 0) {
            if (r->err == KN_ERR_OK && !r->aggregated)
                continue;
            on0++;
            if (r->err != KN_ERR_TIMEOUT)
                fail_msg("record %d (shard 0): %s: %s, expected a timeout", i, kn_err2name(r->err), r->errstr);
        }
    }
    print_message("wrongnomem: %d allocation failures injected, %d records of shard 0 timed out\n", used, on0);
    assert_true(used > 0);
    assert_true(on0 > 0);
    free(owner);
    free(run.recs);
    delete_stream(direct, stream);
    kn_client_destroy(direct);
    kn_fproxy_stop(&px);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/*
 * Destroy with answers 2 s late: it waits for them (its drain, then the
 * cancel step), and waits without spinning: the process uses a small part
 * of a core meanwhile. (Destroy's own thread once spun through both waits,
 * a whole core for as long as the answers took.)
 */
static void test_destroy_waits_without_spinning(void **state)
{
    (void)state;
    const char *proxy[] = {"--slow-fraction", "1", "--slow-ms", "2000", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "nospin");
    create_stream(direct, stream, 1);
    run_t run = {0};
    run.n = 50;
    run.nkeys = 5;
    run.recs = calloc((size_t)run.n, sizeof(rec_t));
    assert_non_null(run.recs);
    kn_producer_t *p = wrong_shard_producer(px.url, &run, NULL);
    put_range(p, stream, &run, 0, run.n);
    usleep(200 * 1000); /* the PutRecords call is out, its answer 2 s away */
    int64_t t0 = kn__mono_ms();
    double c0 = cpu_seconds();
    kn_producer_destroy(p);
    double cpu = cpu_seconds() - c0;
    int64_t wall = kn__mono_ms() - t0;
    print_message("nospin: destroy took %lld ms of wall time and %.0f ms of CPU\n", (long long)wall, cpu * 1000);
    assert_true(wall >= 1000); /* it did wait for the answer */
    assert_true(cpu < 0.25 * (double)wall / 1000.0);
    for (int i = 0; i < run.n; i++) {
        assert_int_equal(run.recs[i].results, 1);
        assert_int_equal(run.recs[i].err, KN_ERR_OK);
    }
    free(run.recs);
    delete_stream(direct, stream);
    kn_client_destroy(direct);
    kn_fproxy_stop(&px);
}

/*
 * A record over the default size limit makes the producer ask the stream's
 * own limit (DescribeStreamSummary, answered 3 s late here): the put waits at
 * most producer.put.timeout.ms for it, then fails with KN_ERR_TOO_LARGE
 * saying the limit is still being asked for; small records go on meanwhile.
 */
static void test_large_record_waits_within_put_timeout(void **state)
{
    (void)state;
    const char *proxy[] = {"--fault-target", "DescribeStreamSummary", "--slow-fraction", "1", "--slow-ms",
                           "3000", NULL};
    kn_fproxy_t px;
    kn_fproxy_start(&px, kn_test_server_url("KN_TEST_KINESALITE_URL"), proxy);
    kn_client_t *direct = direct_client(px.upstream);
    char stream[128];
    kn_fault_stream_name(stream, sizeof(stream), "bigwait");
    create_stream(direct, stream, 1);
    run_t run = {0};
    run.n = 10;
    run.nkeys = 2;
    run.recs = calloc((size_t)run.n, sizeof(rec_t));
    const char *conf[] = {"producer.put.timeout.ms", "800", NULL};
    kn_producer_t *p = wrong_shard_producer(px.url, &run, conf);
    size_t big_len = 1024 * 1024;
    char *big = calloc(1, big_len);
    assert_non_null(big);
    char err[512];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kn_record_t r = {sizeof(kn_record_t), stream, "big", 0, NULL, big, big_len, &run.recs[0]};
    kn_err_t rc = kn_producer_put(p, &r, err, sizeof(err));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("bigwait: put returned %s after %.2f s: %s\n", kn_err2name(rc), waited, err);
    assert_int_equal(rc, KN_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "still being asked for"));
    assert_true(waited >= 0.7 && waited < 2.5);
    /* Small records are not held up by the question in flight. */
    put_range(p, stream, &run, 1, run.n);
    assert_int_equal(kn_producer_flush(p, 20000), KN_ERR_OK);
    for (int i = 1; i < run.n; i++)
        assert_int_equal(run.recs[i].err, KN_ERR_OK);
    kn_producer_destroy(p); /* waits for the DescribeStreamSummary still in flight */
    assert_true(kn_fproxy_stat(&px, "kinds.slow") >= 1);
    free(big);
    free(run.recs);
    delete_stream(direct, stream);
    kn_client_destroy(direct);
    kn_fproxy_stop(&px);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resets),
        cmocka_unit_test(test_500s),
        cmocka_unit_test(test_throttling),
        cmocka_unit_test(test_fail_if_throttled),
        cmocka_unit_test(test_partial_failures),
        cmocka_unit_test(test_partial_failures_aggregated),
        cmocka_unit_test(test_slow_and_lost_answers),
        cmocka_unit_test(test_corrupt_answers),
        cmocka_unit_test(test_background_results),
        cmocka_unit_test(test_strict_order_partial),
        cmocka_unit_test(test_strict_order_aggregated),
        cmocka_unit_test(test_strict_order_no_faults),
        cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_server_down_ttl),
        cmocka_unit_test(test_wrong_shard_answers_at_destroy),
        cmocka_unit_test(test_wrong_shard_without_memory),
        cmocka_unit_test(test_results_without_fill_memory),
        cmocka_unit_test(test_large_record_waits_within_put_timeout),
        cmocka_unit_test(test_destroy_waits_without_spinning),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("producer_faults", tests, NULL, NULL);
}
