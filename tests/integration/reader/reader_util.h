/*
 * Helpers shared by the reader tests (integration and faults), header-only:
 * a server with a client and a fresh stream, producing numbered records with
 * our producer (each result kept), reading with a reader and collecting
 * records and events, and the checks (every record exactly once with the
 * producer's key, bytes, shard, sequence and sub-sequence numbers; per-key
 * order; parents before children after a split and a merge).
 */
#ifndef KN_READER_UTIL_H
#define KN_READER_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "kinesis/producer.h"
#include "kinesis/reader.h"
#include "kinesis_ops.h"
#include "test_new.h"
#include "testutil.h"

typedef struct server_s {
    const char *label;
    const char *env;
    kn_client_t *client;
    char stream[128];
    const char *reader_url; /* where readers connect (a fault proxy); NULL: the server itself */
} server_t;


static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ setup */

static inline void unique_name(char *out, size_t size, const char *tag)
{
    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "knread-%d-%08lx-%u-%s", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffffUL, ++seq, tag);
}

static inline void conf_set(kn_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (kn_conf_set(conf, k, v, err, sizeof(err)) != KN_ERR_OK)
        fail_msg("conf %s=%s: %s", k, v, err);
}

static inline kn_conf_t *base_conf(const server_t *s)
{
    kn_conf_t *conf = kn_conf_new();
    conf_set(conf, "kinesis.endpoint", kn_test_server_url(s->env));
    conf_set(conf, "aws.region", "us-east-1");
    conf_set(conf, "aws.access.key.id", "AKIDREADTEST");
    conf_set(conf, "aws.secret.access.key", "read-test-secret");
    /* Faster tails in tests; the pacing itself stays on. */
    conf_set(conf, "consumer.idle.time.ms", "100");
    conf_set(conf, "consumer.getrecords.interval.ms", "50");
    return conf;
}

static inline int setup(void **state)
{
    server_t *s = *state;
    kn_conf_t *conf = base_conf(s);
    char err[512];
    s->client = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!s->client)
        fail_msg("kn_client_new: %s", err);
    s->stream[0] = '\0';
    return 0;
}

static inline int teardown(void **state)
{
    server_t *s = *state;
    if (s->stream[0]) {
        kn_error_t e = {0};
        kn__stream_ref_t ref = {s->stream, NULL};
        kn__kinesis_delete_stream(s->client, &ref, true, &e);
    }
    kn_client_destroy(s->client);
    s->client = NULL;
    return 0;
}

static inline void create_stream(server_t *s, const char *tag, int shards)
{
    kn_error_t e = {0};
    unique_name(s->stream, sizeof(s->stream), tag);
    kn__stream_ref_t ref = {s->stream, NULL};
    if (kn__kinesis_create_stream(s->client, s->stream, shards, &e) != KN_ERR_OK)
        fail_msg("CreateStream: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
}

/* ------------------------------------------------------------ producing */

typedef struct put_s {
    char key[32];
    char data[96];
    char shard[64];
    char seq[128];
    uint64_t sub;
    bool aggregated;
    int served;
    kn_err_t err;
} put_t;

static inline void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    (void)opaque;
    put_t *x = kn_result_opaque(r);
    x->served++;
    x->err = kn_result_err(r);
    const char *sh = kn_result_shard_id(r), *sq = kn_result_sequence_number(r);
    snprintf(x->shard, sizeof(x->shard), "%s", sh ? sh : "");
    snprintf(x->seq, sizeof(x->seq), "%s", sq ? sq : "");
    x->sub = kn_result_sub_sequence(r);
    x->aggregated = kn_result_aggregated(r);
}

/*
 * Puts recs[from..to) with keys "k<i % nkeys>" and data "d-<i>-<padding>";
 * extra: producer properties (NULL-terminated pairs).
 */
static inline void produce(server_t *s, put_t *recs, int from, int to, int nkeys, const char *const *extra)
{
    kn_conf_t *conf = base_conf(s);
    conf_set(conf, "producer.record.max.buffered.ms", "20");
    for (int i = 0; extra && extra[i]; i += 2)
        conf_set(conf, extra[i], extra[i + 1]);
    kn_conf_set_result_cb(conf, on_result, NULL);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);
    for (int i = from; i < to; i++) {
        put_t *x = &recs[i];
        snprintf(x->key, sizeof(x->key), "k%d", i % nkeys);
        snprintf(x->data, sizeof(x->data), "d-%d-%0*d", i, 20 + i % 40, i);
        kn_record_t rec = {.struct_size = sizeof(kn_record_t),.stream = s->stream, .partition_key = x->key, .data = x->data,
                           .data_len = strlen(x->data), .opaque = x};
        if (kn_producer_put(p, &rec, err, sizeof(err)) != KN_ERR_OK)
            fail_msg("put %d: %s", i, err);
    }
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    for (int i = from; i < to; i++) {
        assert_int_equal(recs[i].served, 1);
        assert_int_equal(recs[i].err, KN_ERR_OK);
    }
}

/* ------------------------------------------------------------ reading */

typedef struct rec_s {
    int idx; /* from the data, -1 if not ours */
    char key[32];
    char shard[64];
    char seq[128];
    uint64_t sub;
    bool aggregated;
    int64_t arrival_ms, mbl;
    size_t len;
    unsigned char head[8];
    bool out_of_range;
} rec_t;

typedef struct run_s {
    rec_t *v;
    size_t n, cap;
    int started, caught_up, ended, stopped, errors, at_end;
    char ended_ids[16][64];
    size_t ended_children[16];
    char last_error[1024];
} run_t;

static inline void run_free(run_t *r) { free(r->v); }

static inline void take(run_t *run, const kn_reader_msg_t *m)
{
    switch (kn_reader_msg_type(m)) {
    case KN_READER_RECORD: {
        if (run->n == run->cap) {
            run->cap = run->cap ? run->cap * 2 : 256;
            run->v = realloc(run->v, run->cap * sizeof(*run->v));
        }
        rec_t *x = &run->v[run->n++];
        memset(x, 0, sizeof(*x));
        size_t len = 0, klen = 0;
        const unsigned char *d = kn_reader_msg_data(m, &len);
        const char *k = kn_reader_msg_partition_key(m, &klen);
        assert_non_null(k);
        assert_int_equal(strlen(k), klen);
        snprintf(x->key, sizeof(x->key), "%s", k);
        snprintf(x->shard, sizeof(x->shard), "%s", kn_reader_msg_shard_id(m));
        snprintf(x->seq, sizeof(x->seq), "%s", kn_reader_msg_sequence_number(m));
        x->sub = kn_reader_msg_sub_sequence(m);
        x->aggregated = kn_reader_msg_aggregated(m);
        x->arrival_ms = kn_reader_msg_arrival_ms(m);
        x->mbl = kn_reader_msg_millis_behind(m);
        x->len = len;
        x->out_of_range = kn_reader_msg_out_of_range(m);
        memcpy(x->head, d, len < 8 ? len : 8);
        char buf[128];
        size_t c = len < sizeof(buf) - 1 ? len : sizeof(buf) - 1;
        memcpy(buf, d, c);
        buf[c] = 0;
        x->idx = -1;
        if (sscanf(buf, "d-%d-", &x->idx) != 1)
            x->idx = -1;
        assert_int_equal(kn_reader_msg_err(m), KN_ERR_OK);
        break;
    }
    case KN_READER_SHARD_STARTED:
        run->started++;
        break;
    case KN_READER_SHARD_CAUGHT_UP:
        run->caught_up++;
        assert_int_equal(kn_reader_msg_millis_behind(m), 0);
        break;
    case KN_READER_SHARD_END:
        if (run->ended < 16) {
            snprintf(run->ended_ids[run->ended], 64, "%s", kn_reader_msg_shard_id(m));
            run->ended_children[run->ended] = kn_reader_msg_child_count(m);
        }
        run->ended++;
        break;
    case KN_READER_SHARD_STOPPED:
        run->stopped++;
        break;
    case KN_READER_SHARD_ERROR:
        run->errors++;
        snprintf(run->last_error, sizeof(run->last_error), "%s", kn_reader_msg_errstr(m));
        break;
    case KN_READER_AT_END:
        run->at_end++;
        assert_null(kn_reader_msg_shard_id(m));
        break;
    }
}

/* Polls until AT_END (until_end) or until `records` records, at most max_ms. */
static inline void poll_until(kn_reader_t *r, run_t *run, bool until_end, size_t records, int64_t max_ms)
{
    int64_t deadline = now_ms() + max_ms;
    while (now_ms() < deadline) {
        if (until_end ? run->at_end > 0 : run->n >= records)
            return;
        const kn_reader_msg_t *m = kn_reader_poll(r, 200);
        if (m)
            take(run, m);
    }
    fail_msg("timed out: %zu records, at_end %d, started %d, caught up %d, ended %d, errors %d (%s)",
             run->n, run->at_end, run->started, run->caught_up, run->ended, run->errors,
             run->last_error);
}

static inline kn_reader_t *reader_with(const server_t *s, const kn_reader_opts_t *opts,
                                const char *const *extra)
{
    kn_conf_t *conf = base_conf(s);
    if (s->reader_url)
        conf_set(conf, "kinesis.endpoint", s->reader_url);
    for (int i = 0; extra && extra[i]; i += 2)
        conf_set(conf, extra[i], extra[i + 1]);
    char err[1024];
    kn_error_t *e = kn_error_new();
    kn_reader_t *r = kn_t_reader_new(conf, s->stream, opts, e, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!r)
        fail_msg("kn_reader_new: %s (%s)", err, kn_err2name(kn_error_code(e)));
    kn_error_destroy(e);
    return r;
}

/* Every record put is read exactly once, with the producer's key, data, shard, seq and sub-sequence. */
static inline void check_exact(const run_t *run, const put_t *recs, int n)
{
    int *seen = calloc((size_t)n, sizeof(int));
    for (size_t g = 0; g < run->n; g++) {
        const rec_t *x = &run->v[g];
        if (x->idx < 0 || x->idx >= n)
            fail_msg("record %zu is not ours", g);
        const put_t *p = &recs[x->idx];
        seen[x->idx]++;
        assert_string_equal(x->key, p->key);
        assert_int_equal(x->len, strlen(p->data));
        assert_string_equal(x->shard, p->shard);
        assert_string_equal(x->seq, p->seq);
        assert_int_equal(x->sub, p->sub);
        assert_int_equal(x->aggregated, p->aggregated);
        assert_true(x->arrival_ms > 0);
    }
    for (int i = 0; i < n; i++)
        if (seen[i] != 1)
            fail_msg("record %d read %d times", i, seen[i]);
    free(seen);
}

/* a < b for decimal strings of any length. */
static inline int seq_cmp(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/*
 * Per key, records come in stream order: within a shard by sequence and
 * sub-sequence number; across shards (a parent, then its child) in put order
 * (each phase of the reshard tests is flushed before the next begins).
 */
static inline void check_key_order(const run_t *run, int nkeys)
{
    const rec_t **last = calloc((size_t)nkeys, sizeof(*last));
    for (size_t g = 0; g < run->n; g++) {
        const rec_t *x = &run->v[g];
        int k = -1;
        assert_int_equal(sscanf(x->key, "k%d", &k), 1);
        assert_true(k >= 0 && k < nkeys);
        const rec_t *p = last[k];
        if (p) {
            bool ok;
            if (!strcmp(p->shard, x->shard)) {
                int c = seq_cmp(p->seq, x->seq);
                ok = c < 0 || (c == 0 && p->sub < x->sub);
            } else {
                ok = p->idx < x->idx;
            }
            if (!ok)
                fail_msg("key k%d: record %d (%s %s/%llu) after %d (%s %s/%llu)", k, x->idx, x->shard,
                         x->seq, (unsigned long long)x->sub, p->idx, p->shard, p->seq,
                         (unsigned long long)p->sub);
        }
        last[k] = x;
    }
    free(last);
}

static inline void split_and_merge(server_t *s, put_t *recs, int per_phase, int nkeys)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    produce(s, recs, 0, per_phase, nkeys, NULL);
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    if (kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e) != KN_ERR_OK)
        fail_msg("SplitShard: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
    produce(s, recs, per_phase, 2 * per_phase, nkeys, NULL);
    if (kn__kinesis_merge_shards(s->client, &ref, "shardId-000000000001", "shardId-000000000002", &e) !=
        KN_ERR_OK)
        fail_msg("MergeShards: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
    produce(s, recs, 2 * per_phase, 3 * per_phase, nkeys, NULL);
}

static inline void check_lineage(const run_t *run, const put_t *recs, int n, int nkeys)
{
    check_exact(run, recs, n);
    check_key_order(run, nkeys);
    /* Every record of shard 0 comes before any of 1 and 2, and those before any of 3. */
    size_t last0 = 0, first12 = SIZE_MAX, last12 = 0, first3 = SIZE_MAX;
    for (size_t g = 0; g < run->n; g++) {
        const char *sh = run->v[g].shard;
        if (!strcmp(sh, "shardId-000000000000"))
            last0 = g;
        else if (!strcmp(sh, "shardId-000000000003")) {
            if (first3 == SIZE_MAX)
                first3 = g;
        } else {
            if (first12 == SIZE_MAX)
                first12 = g;
            last12 = g;
        }
    }
    assert_true(first12 != SIZE_MAX && first3 != SIZE_MAX);
    assert_true(last0 < first12);
    assert_true(last12 < first3);
}

#endif
