/*
 * The producer against real servers (kinesalite, and moto for the round
 * trips): every record put is read back from the stream with its key and
 * bytes (GetRecords + KPL deaggregation), results carry the real shard id,
 * sequence number and the sub-sequence index of the decoded aggregate; bad
 * input, unknown streams, a full queue, a single-threaded producer far over
 * its buffer bound that never polls, flush timeouts, destroy with records
 * pending and many threads putting at once (every result exactly once).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "agg.h"
#include "aws.h"
#include "record_codec.h"
#include "client.h"
#include "kinesis/producer.h"
#include "producer_int.h"
#include "kinesis_ops.h"
#include "faults/fault_util.h"
#include "test_new.h"
#include "testutil.h"

typedef struct server_s {
    const char *label;
    const char *env;
    bool moto;
    kn_client_t *client;
    char stream[128]; /* deleted in teardown when set */
} server_t;

static server_t kinesalite = {"kinesalite", "KN_TEST_KINESALITE_URL", false, NULL, ""};
static server_t moto = {"moto", "KN_TEST_MOTO_URL", true, NULL, ""};

/* ------------------------------------------------------------ results */

typedef struct res_s {
    int served;
    kn_err_t err;
    char errstr[512];
    char shard[64];
    char seq[128];
    uint64_t sub;
    bool aggregated;
    int attempts;
} res_t;

typedef struct sink_s {
    pthread_mutex_t lock;
    res_t *r;
    int n;
    int total;
    int bad_opaque;
} sink_t;

static void on_result(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p;
    sink_t *s = opaque;
    intptr_t i = (intptr_t)kn_result_opaque(r);
    pthread_mutex_lock(&s->lock);
    s->total++;
    if (i < 0 || i >= s->n) {
        s->bad_opaque++;
    } else {
        res_t *x = &s->r[i];
        x->served++;
        x->err = kn_result_err(r);
        snprintf(x->errstr, sizeof(x->errstr), "%s", kn_result_errstr(r));
        const char *sh = kn_result_shard_id(r), *sq = kn_result_sequence_number(r);
        snprintf(x->shard, sizeof(x->shard), "%s", sh ? sh : "");
        snprintf(x->seq, sizeof(x->seq), "%s", sq ? sq : "");
        x->sub = kn_result_sub_sequence(r);
        x->aggregated = kn_result_aggregated(r);
        x->attempts = kn_result_attempt_count(r);
    }
    pthread_mutex_unlock(&s->lock);
}

static sink_t *sink_new(int n)
{
    sink_t *s = calloc(1, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->r = calloc((size_t)n, sizeof(res_t));
    s->n = n;
    return s;
}

static void sink_free(sink_t *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->r);
    free(s);
}

/* ------------------------------------------------------------ setup */

static void unique_name(char *out, size_t size, const char *tag)
{
    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(out, size, "knprod-%d-%08lx-%u-%s", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffffUL, ++seq, tag);
}

static kn_conf_t *base_conf(const server_t *s)
{
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *url = kn_test_server_url(s->env);
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", url, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDPRODTEST", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", "prod-test-secret", err, sizeof(err)),
                     KN_ERR_OK);
    return conf;
}

static int64_t now_ms_local(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void conf_set(kn_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (kn_conf_set(conf, k, v, err, sizeof(err)) != KN_ERR_OK)
        fail_msg("conf %s=%s: %s", k, v, err);
}

static int setup(void **state)
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

static int teardown(void **state)
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

static void create_stream(server_t *s, const char *tag, int shards)
{
    kn_error_t e = {0};
    unique_name(s->stream, sizeof(s->stream), tag);
    kn__stream_ref_t ref = {s->stream, NULL};
    if (kn__kinesis_create_stream(s->client, s->stream, shards, &e) != KN_ERR_OK)
        fail_msg("CreateStream: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 30000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
}

static kn_producer_t *producer_with(const server_t *s, sink_t *sink, const char *const *extra)
{
    kn_conf_t *conf = base_conf(s);
    for (int i = 0; extra && extra[i]; i += 2)
        conf_set(conf, extra[i], extra[i + 1]);
    kn_conf_set_result_cb(conf, on_result, sink);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!p)
        fail_msg("kn_producer_new: %s", err);
    return p;
}

/* ------------------------------------------------------------ reading back */

typedef struct got_s {
    char *key;
    size_t key_len;
    unsigned char *data;
    size_t data_len;
    char shard[64];
    char seq[128];
    uint64_t sub;
    bool aggregated;
    bool framed;       /* arrived in an aggregate-scope compression frame */
    bool out_of_range; /* inside an aggregate on a shard that does not own its hash key */
    kn__codec_t codec; /* record-scope codec undone */
} got_t;

typedef struct gotlist_s {
    got_t *v;
    size_t n, cap;
} gotlist_t;

static void gotlist_free(gotlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].data);
    }
    free(l->v);
}

static void got_add(gotlist_t *l, const kn__rc_rec_t *r, const char *shard, const char *seq, bool agg)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
    }
    got_t *g = &l->v[l->n++];
    memset(g, 0, sizeof(*g));
    g->key = malloc(r->partition_key_len + 1);
    memcpy(g->key, r->partition_key, r->partition_key_len);
    g->key[r->partition_key_len] = '\0';
    g->key_len = r->partition_key_len;
    g->data = malloc(r->data_len + 1);
    memcpy(g->data, r->data, r->data_len);
    g->data_len = r->data_len;
    snprintf(g->shard, sizeof(g->shard), "%s", shard);
    snprintf(g->seq, sizeof(g->seq), "%s", seq);
    g->sub = r->sub_sequence;
    g->aggregated = agg;
    g->codec = r->codec;
}

/*
 * Reads every shard from TRIM_HORIZON until `expect` user records were seen
 * or 3 empty reads per shard, decoding frames, aggregates and compressed
 * records as a consumer does.
 */
static void read_all_ex(server_t *s, size_t expect, gotlist_t *out, bool allow_out_of_range)
{
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__shard_list_t shards = {0};
    if (kn__kinesis_list_shards(s->client, &ref, NULL, &shards, &e) != KN_ERR_OK)
        fail_msg("ListShards: %s", e.message);
    kn__rc_decoder_t *dec = kn__rc_decoder_new(NULL);
    assert_non_null(dec);
    for (size_t i = 0; i < shards.count; i++) {
        const kn__shard_t *sh = &shards.shards[i];
        kn__iterator_pos_t pos = {KN__IT_TRIM_HORIZON, NULL, 0};
        char *it = NULL;
        if (kn__kinesis_get_shard_iterator(s->client, &ref, sh->shard_id, &pos, &it, &e) != KN_ERR_OK)
            fail_msg("GetShardIterator: %s", e.message);
        int empty = 0;
        while (it && empty < 3) {
            kn__get_records_result_t gr;
            memset(&gr, 0, sizeof(gr));
            if (kn__kinesis_get_records(s->client, &ref, it, 10000, &gr, &e) != KN_ERR_OK)
                fail_msg("GetRecords: %s", e.message);
            free(it);
            it = gr.next_iterator ? strdup(gr.next_iterator) : NULL;
            if (gr.count == 0)
                empty++;
            for (size_t j = 0; j < gr.count; j++) {
                const kn__record_t *kr = &gr.records[j];
                const kn__rc_decoded_t *d = NULL;
                assert_int_equal(kn__rc_decode(dec, kr->data, kr->data_len, kr->partition_key,
                                               kr->partition_key_len, NULL, 0, &d, &e),
                                 KN_ERR_OK);
                assert_int_equal(d->frame_err, KN_ERR_OK);
                /* Nothing we wrote may sit outside its shard's range inside an aggregate. */
                size_t bad = d->aggregated ? kn__rc_check_range(dec, sh->start_hash, sh->end_hash) : 0;
                if (!allow_out_of_range)
                    assert_int_equal(bad, 0);
                for (size_t k = 0; k < d->count; k++) {
                    assert_int_equal(d->records[k].err, KN_ERR_OK);
                    got_add(out, &d->records[k], sh->shard_id, kr->sequence_number, d->aggregated);
                    out->v[out->n - 1].framed = d->frame_codec != KN__CODEC_NONE;
                    out->v[out->n - 1].out_of_range = d->records[k].out_of_range;
                }
            }
            kn__get_records_result_free(&gr);
            if (out->n >= expect && gr.count == 0)
                break;
        }
        free(it);
    }
    kn__rc_decoder_destroy(dec);
    kn__shard_list_free(&shards);
}

static void read_all(server_t *s, size_t expect, gotlist_t *out) { read_all_ex(s, expect, out, false); }

/* ------------------------------------------------------------ helpers */

static void make_data(char *buf, size_t len, int i)
{
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)('a' + (int)((k * 7 + (size_t)i * 13) % 26));
    if (len >= 12)
        snprintf(buf, 12, "%010d", i), buf[10] = '|';
}

static kn_err_t put_one(kn_producer_t *p, const char *stream, const char *key, const void *data, size_t len,
                        intptr_t op, char *err, size_t errsz)
{
    kn_record_t rec = {sizeof(kn_record_t), stream, key, 0, NULL, data, len, (void *)op};
    return kn_producer_put(p, &rec, err, errsz);
}

/*
 * Puts n records (keys key-<i>, sizes varying), flushes, checks every result
 * and that every record is in the stream with the same key and bytes, and
 * that results name the shard, sequence number and sub-sequence index the
 * stream really holds.
 */
static void roundtrip_z(server_t *s, int shards, bool aggregate, int n, size_t max_len, const char *codec,
                        const char *scope)
{
    create_stream(s, aggregate ? "agg" : "raw", shards);
    sink_t *sink = sink_new(n);
    /*
     * moto numbers a shard's records as max + 1 without a lock, so concurrent
     * PutRecords to one shard can overwrite each other there: one request at a time on moto.
     */
    const char *extra[] = {"producer.aggregation.enabled", aggregate ? "true" : "false",
                           "producer.record.max.buffered.ms", "50", "producer.max.inflight.requests",
                           s->moto ? "1" : "24", "producer.compression.codec", codec,
                           "producer.compression.scope", scope, NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char *buf = malloc(max_len + 1);
    char key[64], err[512];
    for (int i = 0; i < n; i++) {
        size_t len = 1 + (size_t)(i * 37) % max_len;
        make_data(buf, len, i);
        snprintf(key, sizeof(key), "key-%d", i);
        if (put_one(p, s->stream, key, buf, len, i, err, sizeof(err)) != KN_ERR_OK)
            fail_msg("put %d: %s", i, err);
    }
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    assert_int_equal(kn_producer_pending(p), 0);
    char *stats = kn_producer_stats_json(p);
    assert_non_null(stats);
    json_object *js = json_tokener_parse(stats);
    assert_non_null(js);
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(js, "user_records_put", &v));
    assert_int_equal(json_object_get_int64(v), n);
    json_object_put(js);
    kn_free(stats);
    kn_producer_destroy(p);

    assert_int_equal(sink->total, n);
    assert_int_equal(sink->bad_opaque, 0);
    int aggregated = 0;
    for (int i = 0; i < n; i++) {
        res_t *x = &sink->r[i];
        assert_int_equal(x->served, 1);
        if (x->err != KN_ERR_OK)
            fail_msg("record %d: %s", i, x->errstr);
        assert_true(strncmp(x->shard, "shardId-", 8) == 0);
        assert_true(x->seq[0] != '\0');
        assert_true(x->attempts >= 1);
        aggregated += x->aggregated;
    }
    if (aggregate)
        assert_true(aggregated > n / 2);
    else
        assert_int_equal(aggregated, 0);

    gotlist_t got = {0};
    read_all(s, (size_t)n, &got);
    assert_int_equal(got.n, n);
    int *seen = calloc((size_t)n, sizeof(int));
    for (size_t g = 0; g < got.n; g++) {
        int i = -1;
        assert_int_equal(sscanf(got.v[g].key, "key-%d", &i), 1);
        assert_true(i >= 0 && i < n);
        seen[i]++;
        size_t len = 1 + (size_t)(i * 37) % max_len;
        make_data(buf, len, i);
        assert_int_equal(got.v[g].data_len, len);
        assert_memory_equal(got.v[g].data, buf, len);
        res_t *x = &sink->r[i];
        assert_string_equal(x->shard, got.v[g].shard);
        assert_string_equal(x->seq, got.v[g].seq);
        assert_int_equal(x->sub, got.v[g].sub);
        assert_int_equal(x->aggregated, got.v[g].aggregated);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    free(seen);
    size_t framed = 0, zrec = 0;
    for (size_t g = 0; g < got.n; g++) {
        framed += got.v[g].framed;
        zrec += got.v[g].codec != KN__CODEC_NONE;
    }
    bool on = strcmp(codec, "none") != 0;
    if (on && !strcmp(scope, "aggregate"))
        assert_true(framed > got.n / 2); /* the data compresses well */
    else
        assert_int_equal(framed, 0);
    if (on && !strcmp(scope, "record"))
        assert_true(zrec > got.n / 2);
    else
        assert_int_equal(zrec, 0);
    gotlist_free(&got);
    free(buf);
    sink_free(sink);
}

static void roundtrip(server_t *s, int shards, bool aggregate, int n, size_t max_len)
{
    roundtrip_z(s, shards, aggregate, n, max_len, "none", "aggregate");
}

/* ------------------------------------------------------------ tests */

static void test_roundtrip_gzip_aggregate_scope(void **state)
{
    roundtrip_z(*state, 2, true, 1000, 400, "gzip", "aggregate");
}
static void test_roundtrip_zstd_aggregate_scope_raw(void **state)
{
    roundtrip_z(*state, 2, false, 400, 400, "zstd", "aggregate");
}
static void test_roundtrip_zstd_record_scope(void **state)
{
    roundtrip_z(*state, 2, true, 1000, 400, "zstd", "record");
}
static void test_roundtrip_gzip_record_scope_1_shard(void **state)
{
    roundtrip_z(*state, 1, true, 300, 400, "gzip", "record");
}

static void test_roundtrip_aggregated_1_shard(void **state) { roundtrip(*state, 1, true, 1500, 300); }
static void test_roundtrip_aggregated_4_shards(void **state) { roundtrip(*state, 4, true, 3000, 200); }
static void test_roundtrip_raw_1_shard(void **state) { roundtrip(*state, 1, false, 700, 300); }
static void test_roundtrip_raw_4_shards(void **state) { roundtrip(*state, 4, false, 1200, 100); }

/* Records up to the 1 MiB limit go through (alone), one byte more is refused at put. */
static void test_max_size_records(void **state)
{
    server_t *s = *state;
    create_stream(s, "max", 1);
    sink_t *sink = sink_new(4);
    kn_producer_t *p = producer_with(s, sink, NULL);
    size_t limit = 1024 * 1024;
    char *buf = malloc(limit + 1);
    char err[512];
    const char *key = "big";
    size_t full = limit - strlen(key);
    make_data(buf, full, 7);
    assert_int_equal(put_one(p, s->stream, key, buf, full, 0, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, "small", "x", 1, 1, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, key, buf, full - 1000, 2, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, key, buf, full + 1, 3, err, sizeof(err)), KN_ERR_TOO_LARGE);
    assert_non_null(strstr(err, "kinesis.record.max.bytes"));
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, 3);
    for (int i = 0; i < 3; i++)
        if (sink->r[i].err != KN_ERR_OK)
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    gotlist_t got = {0};
    read_all(s, 3, &got);
    assert_int_equal(got.n, 3);
    int big = 0;
    for (size_t g = 0; g < got.n; g++) {
        if (got.v[g].data_len == full) {
            big++;
            assert_memory_equal(got.v[g].data, buf, full);
        }
    }
    assert_int_equal(big, 1);
    gotlist_free(&got);
    free(buf);
    sink_free(sink);
}

/*
 * A lone record whose data starts with the KPL magic is sent as a one-record
 * aggregate, so deaggregators that trust the magic alone read it right; a
 * lone ordinary record is sent raw.
 */
static void test_lone_magic_record_is_wrapped(void **state)
{
    server_t *s = *state;
    create_stream(s, "magic", 1);
    sink_t *sink = sink_new(2);
    kn_producer_t *p = producer_with(s, sink, NULL);
    char err[512];
    const char magic_data[] = "\xF3\x89\x9A\xC2 not an aggregate";
    assert_int_equal(put_one(p, s->stream, "m", magic_data, sizeof(magic_data) - 1, 0, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, "plain", "hello", 5, 1, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, 2);
    assert_int_equal(sink->r[0].err, KN_ERR_OK);
    assert_true(sink->r[0].aggregated);
    assert_int_equal(sink->r[1].err, KN_ERR_OK);
    assert_false(sink->r[1].aggregated);
    gotlist_t got = {0};
    read_all(s, 2, &got);
    assert_int_equal(got.n, 2);
    int seen = 0;
    for (size_t g = 0; g < got.n; g++) {
        if (got.v[g].data_len == sizeof(magic_data) - 1) {
            assert_memory_equal(got.v[g].data, magic_data, sizeof(magic_data) - 1);
            assert_true(got.v[g].aggregated);
            assert_string_equal(got.v[g].key, "m");
            seen++;
        }
    }
    assert_int_equal(seen, 1);
    gotlist_free(&got);
    sink_free(sink);
}

static void test_bad_input(void **state)
{
    server_t *s = *state;
    sink_t *sink = sink_new(1);
    kn_producer_t *p = producer_with(s, sink, NULL);
    char err[512];
    char k257[258];
    memset(k257, 'k', 257);
    k257[257] = '\0';
    char k256u[256 * 2 + 1]; /* 256 two-byte characters: valid */
    for (int i = 0; i < 256; i++)
        k256u[2 * i] = (char)0xC3, k256u[2 * i + 1] = (char)0xA9;
    k256u[512] = '\0';
    kn_record_t ok = {sizeof(kn_record_t), "some-stream", "k", 0, NULL, "d", 1, NULL};
    kn_record_t r = ok;

    /* A record not started from KN_RECORD_INIT (struct_size unset) is refused, saying how to fix it. */
    r.struct_size = 0;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "KN_RECORD_INIT"));
    r = ok;
    r.partition_key = "";
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "partition key"));
    r = ok;
    r.partition_key = k257;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "257"));
    r = ok;
    r.partition_key = "\xff\xfe";
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    r = ok;
    r.partition_key = NULL;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    r = ok;
    r.stream = NULL;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    r = ok;
    r.stream = "";
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    r = ok;
    r.data = NULL;
    r.data_len = 5;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_producer_put(p, NULL, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_producer_put(NULL, &ok, err, sizeof(err)), KN_ERR_INVALID_ARG);
    const char *bad_ehk[] = {"", "-1", "abc", "340282366920938463463374607431768211456", "1.5", " 1", NULL};
    for (int i = 0; bad_ehk[i]; i++) {
        r = ok;
        r.explicit_hash_key = bad_ehk[i];
        assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_INVALID_ARG);
        assert_non_null(strstr(err, "explicit hash key"));
    }
    static char big[1024 * 1024];
    r = ok;
    r.data = big;
    r.data_len = sizeof(big); /* plus the 1-byte key: one over */
    r.stream = "knprod-no-such-stream-for-size";
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_TOO_LARGE);
    /* A NULL errstr is fine. */
    r = ok;
    r.partition_key = "";
    assert_int_equal(kn_producer_put(p, &r, NULL, 0), KN_ERR_INVALID_ARG);
    /* Valid edge cases are accepted: 256 multi-byte characters, hash keys 0 and 2^128-1, no data. */
    r = ok;
    r.stream = "knprod-no-such-stream-edge";
    r.partition_key = k256u;
    assert_int_equal(kn_producer_put(p, &r, err, sizeof(err)), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, 1); /* only the accepted record has a result */
    sink_free(sink);
}

/* Every record of an unknown stream fails with the service's ResourceNotFoundException. */
static void test_unknown_stream(void **state)
{
    server_t *s = *state;
    int n = 50;
    sink_t *sink = sink_new(n);
    kn_producer_t *p = producer_with(s, sink, NULL);
    char name[128], err[512];
    unique_name(name, sizeof(name), "missing");
    for (int i = 0; i < n; i++)
        assert_int_equal(put_one(p, name, "k", "data", 4, i, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        assert_int_equal(sink->r[i].err, KN_ERR_NOT_FOUND);
        if (!strstr(sink->r[i].errstr, "ResourceNotFoundException"))
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    }
    sink_free(sink);
}

/* With put.timeout.ms=0 a put over the bound fails at once with KN_ERR_QUEUE_FULL; unserved results count. */
static void test_queue_full(void **state)
{
    server_t *s = *state;
    create_stream(s, "full", 1);
    int n = 10;
    sink_t *sink = sink_new(n + 1);
    const char *extra[] = {"producer.buffer.max.records", "10", "producer.put.timeout.ms", "0", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char err[512];
    for (int i = 0; i < n; i++)
        assert_int_equal(put_one(p, s->stream, "k", "d", 1, i, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_pending(p), n);
    assert_int_equal(put_one(p, s->stream, "k", "d", 1, n, err, sizeof(err)), KN_ERR_QUEUE_FULL);
    assert_non_null(strstr(err, "producer.buffer.max.records"));
    /* The records are put meanwhile, but their results are not served until poll/flush. */
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_int_equal(kn_producer_pending(p), 0);
    assert_int_equal(put_one(p, s->stream, "k", "d", 1, n, err, sizeof(err)), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, n + 1);
    for (int i = 0; i <= n; i++)
        assert_int_equal(sink->r[i].err, KN_ERR_OK);
    sink_free(sink);
}

/* A single thread puts 20x the buffer bound and never polls: put serves results itself. */
static void test_single_thread_never_polls(void **state)
{
    server_t *s = *state;
    create_stream(s, "nopoll", 2);
    int n = 4000;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.buffer.max.records", "200", "producer.record.max.buffered.ms", "20", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char err[512], key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%d", i);
        if (put_one(p, s->stream, key, "payload", 7, i, err, sizeof(err)) != KN_ERR_OK)
            fail_msg("put %d: %s", i, err);
        assert_true(kn_producer_pending(p) <= 200);
    }
    assert_true(sink->total >= n - 200);
    kn_producer_destroy(p); /* flushes the rest */
    assert_int_equal(sink->total, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        assert_int_equal(sink->r[i].err, KN_ERR_OK);
    }
    sink_free(sink);
}

/*
 * A rate limit of 1 % (10 records/s per shard) keeps records buffered: flush
 * times out, then destroy (shutdown 300 ms) fails the rest with
 * KN_ERR_DESTROYED, and every record still has exactly one result.
 */
static void test_flush_timeout_and_destroy_pending(void **state)
{
    server_t *s = *state;
    create_stream(s, "slow", 1);
    int n = 300;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.rate.limit.percent", "1", "producer.aggregation.enabled", "false",
                           "producer.shutdown.timeout.ms", "300", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char err[512], key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "%d", i);
        assert_int_equal(put_one(p, s->stream, key, "payload", 7, i, err, sizeof(err)), KN_ERR_OK);
    }
    assert_int_equal(kn_producer_flush(p, 300), KN_ERR_TIMEOUT);
    assert_true(kn_producer_pending(p) > 0);
    char *stats = kn_producer_stats_json(p);
    assert_non_null(strstr(stats, "\"user_records_received\":300"));
    kn_free(stats);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, n);
    int ok = 0, destroyed = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        if (sink->r[i].err == KN_ERR_OK)
            ok++;
        else if (sink->r[i].err == KN_ERR_DESTROYED)
            destroyed++;
        else
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    }
    assert_true(ok > 0);
    assert_true(destroyed > 0);
    sink_free(sink);
}

static void count_cb(kn__aws_result_t *res, void *opaque)
{
    (void)res;
    atomic_fetch_add((atomic_int *)opaque, 1);
}

/*
 * Credential sources that hang (six clients whose credential_process sleeps)
 * do not hold up a producer on another client: refreshes run on each
 * client's own credentials thread, and libuv's thread pool (four threads for
 * the whole process) stays free to build request bodies.
 */
static void test_hanging_credential_sources_leave_body_building_alone(void **state)
{
    server_t *s = *state;
    create_stream(s, "hangcreds", 2);
    char home[] = "/tmp/kn-hangcreds-XXXXXX";
    assert_non_null(mkdtemp(home));
    char cmd[600];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s/.aws' && printf '[default]\\ncredential_process = sleep 30\\n' > '%s/.aws/config'",
             home, home);
    assert_int_equal(system(cmd), 0);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
    enum { HANGING = 6 };
    kn_client_t *hung[HANGING];
    atomic_int answered = 0;
    for (int i = 0; i < HANGING; i++) {
        kn_conf_t *conf = kn_conf_new();
        conf_set(conf, "kinesis.endpoint", kn_test_server_url(s->env));
        conf_set(conf, "aws.region", "us-east-1");
        char err[512];
        hung[i] = kn_t_client_new(conf, err, sizeof(err));
        kn_conf_destroy(conf);
        assert_non_null(hung[i]);
        kn__aws_req_t req = {.service = KN__SVC_KINESIS, .operation = "ListStreams", .cb = count_cb,
                             .opaque = &answered};
        kn__buf_puts(&req.body, "{}");
        kn_error_t e;
        assert_int_equal(kn__aws_call(hung[i], &req, &e), KN_ERR_OK);
    }
    usleep(300000); /* every refresh is now waiting for its credential_process */

    int n = 300;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.record.max.buffered.ms", "5", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char key[16], data[32], err[256];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "hc-%d", i % 17);
        int len = snprintf(data, sizeof(data), "hanging creds %d", i);
        assert_int_equal(put_one(p, s->stream, key, data, (size_t)len, i, err, sizeof(err)), KN_ERR_OK);
    }
    kn_err_t rc = kn_producer_flush(p, 8000);
    kn_producer_destroy(p);
    assert_int_equal(rc, KN_ERR_OK);
    for (int i = 0; i < n; i++)
        if (sink->r[i].err != KN_ERR_OK)
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    assert_int_equal(atomic_load(&answered), 0); /* they really were still hanging */
    for (int i = 0; i < HANGING; i++)
        kn_client_destroy(hung[i]);
    assert_int_equal(atomic_load(&answered), HANGING);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
    sink_free(sink);
}

/*
 * The credential source is down when the producer starts (a credential_process
 * that fails while a marker file exists) and back 2 s later: the records wait
 * within their TTL (the shard map and PutRecords are retried), then all are put.
 */
static void test_records_wait_out_a_credential_outage(void **state)
{
    server_t *s = *state;
    create_stream(s, "credwait", 2);
    char home[] = "/tmp/kn-credwait-XXXXXX";
    assert_non_null(mkdtemp(home));
    char path[512], marker[512], cmd[2048];
    snprintf(path, sizeof(path), "%s/creds.sh", home);
    snprintf(marker, sizeof(marker), "%s/broken", home);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n"
               "if [ -e '%s' ]; then echo 'credential source down' >&2; exit 1; fi\n"
               "printf '{\"Version\":1,\"AccessKeyId\":\"AKIDCREDWAIT\",\"SecretAccessKey\":\"s\"}'\n",
            marker);
    fclose(f);
    f = fopen(marker, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "chmod +x '%s' && mkdir -p '%s/.aws' && printf '[default]\\ncredential_process = %s\\n' > "
             "'%s/.aws/config'",
             path, home, path, home);
    assert_int_equal(system(cmd), 0);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);

    int n = 100;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"aws.access.key.id", "", "aws.secret.access.key", "", "aws.retry.base.ms", "50",
                           "aws.retry.max.backoff.ms", "300", "aws.retry.max.attempts", "2",
                           "producer.record.ttl.ms", "15000", "producer.record.max.buffered.ms", "10", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char key[16], data[32], err[256];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "cw-%d", i % 7);
        int len = snprintf(data, sizeof(data), "credential wait %d", i);
        assert_int_equal(put_one(p, s->stream, key, data, (size_t)len, i, err, sizeof(err)), KN_ERR_OK);
    }
    kn_producer_poll(p, 2000);
    int early = 0;
    for (int i = 0; i < n; i++)
        early += sink->r[i].served;
    assert_int_equal(unlink(marker), 0);
    assert_int_equal(kn_producer_flush(p, 20000), KN_ERR_OK);
    kn_producer_destroy(p);
    print_message("credwait: %d results during the outage\n", early);
    assert_int_equal(early, 0);
    for (int i = 0; i < n; i++)
        if (sink->r[i].err != KN_ERR_OK)
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
    sink_free(sink);
}

/* Error names a server makes up are kept in a bounded set: the 65th distinct name is "OtherError". */
static void test_interned_error_names_are_bounded(void **state)
{
    (void)state;
    kn_producer_t *p = calloc(1, sizeof(*p)); /* kn__pintern uses only the interned list */
    assert_non_null(p);
    char name[300];
    const char *first = NULL;
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "MadeUpError%d", i);
        const char *got = kn__pintern(p, name);
        if (i == 0)
            first = got;
        if (i < KN__PINTERN_MAX)
            assert_string_equal(got, name);
        else
            assert_string_equal(got, KN__PINTERN_OTHER);
    }
    assert_ptr_equal(kn__pintern(p, "MadeUpError0"), first); /* known names stay known */
    memset(name, 'x', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    kn__pintern_free(p);
    assert_int_equal(strlen(kn__pintern(p, name)), KN__PINTERN_NAME_MAX);
    kn__pintern_free(p);
    free(p);
}

/*
 * Puts KEYS x PER records ("order-k" keys, values counting up per key)
 * through the fault proxy, which fails every 7th PutRecords entry, so that
 * records are retried while later ones of their key go out; reads the
 * stream back shard by shard and returns how many records are not in put
 * order within their key (every record must be there exactly once).
 */
static int strict_ordering_run(server_t *s, bool strict)
{
    create_stream(s, strict ? "strict" : "nostrict", 2);
    enum { KEYS = 4, PER = 400 };
    int n = KEYS * PER;
    kn_fproxy_t px;
    const char *faults[] = {"--partial-every", "7", NULL};
    kn_fproxy_start(&px, kn_test_server_url(s->env), faults);
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.ordering.strict", strict ? "true" : "false", "kinesis.endpoint", px.url,
                           "producer.record.max.buffered.ms", "5", "producer.aggregation.max.size", "2048",
                           "aws.retry.base.ms", "20", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char key[16], data[32], err[256];
    for (int i = 0; i < n; i++) {
        int k = i % KEYS;
        snprintf(key, sizeof(key), "order-%d", k);
        int len = snprintf(data, sizeof(data), "%d", i / KEYS);
        assert_int_equal(put_one(p, s->stream, key, data, (size_t)len, i, err, sizeof(err)), KN_ERR_OK);
        if (i % 40 == 39)
            usleep(2000); /* many requests, so the failures fall on many of them */
    }
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    long injected = kn_fproxy_stat(&px, "kinds.partial_entries");
    kn_fproxy_stop(&px);
    int retried = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].err, KN_ERR_OK);
        retried += sink->r[i].attempts > 1;
    }
    assert_true(injected > 0 && retried > 0);
    gotlist_t got = {0};
    read_all(s, (size_t)n, &got);
    assert_int_equal(got.n, n);
    int last[KEYS], violations = 0;
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    for (size_t g = 0; g < got.n; g++) {
        int k = -1;
        assert_int_equal(sscanf(got.v[g].key, "order-%d", &k), 1);
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)got.v[g].data_len, (const char *)got.v[g].data);
        int v = atoi(tmp);
        if (v != last[k] + 1)
            violations++;
        last[k] = v; /* read back shard by shard, in stream order */
    }
    print_message("strict=%d: %ld entries failed by the proxy, %d records retried, %d out of order\n", strict,
                  injected, retried, violations);
    gotlist_free(&got);
    sink_free(sink);
    return violations;
}

/*
 * Strict ordering: records of one partition key are in the stream in put
 * order although some are retried; the same run without strict ordering
 * shows that the retries do reorder them (so the check can fail).
 */
static void test_strict_ordering(void **state)
{
    server_t *s = *state;
    assert_int_equal(strict_ordering_run(s, true), 0);
    assert_true(strict_ordering_run(s, false) > 0);
}

/* Bad compression settings fail at creation with a message naming the property. */
static void test_bad_conf(void **state)
{
    server_t *s = *state;
    struct {
        const char *k1, *v1, *k2, *v2, *needle;
    } cases[] = {
        {"producer.compression.codec", "lz4", NULL, NULL, "producer.compression.codec"},
        {"producer.compression.scope", "shard", NULL, NULL, "producer.compression.scope"},
        {"producer.compression.codec", "gzip", "producer.compression.level", "15", "producer.compression.level"},
        {"producer.compression.codec", "zstd", "producer.aggregation.enabled", "false",
         "producer.compression.scope=record"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kn_conf_t *conf = base_conf(s);
        conf_set(conf, cases[i].k1, cases[i].v1);
        if (cases[i].k2)
            conf_set(conf, cases[i].k2, cases[i].v2);
        if (i == 3)
            conf_set(conf, "producer.compression.scope", "record");
        char err[512] = "";
        kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
        kn_conf_destroy(conf);
        assert_null(p);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: \"%s\" does not name %s", i, err, cases[i].needle);
    }
}

static int stats_calls;
static char stats_last[2048];

static void on_stats(kn_producer_t *p, const char *json, void *opaque)
{
    (void)p, (void)opaque;
    stats_calls++;
    snprintf(stats_last, sizeof(stats_last), "%s", json);
}

/* The stats callback fires at its interval from poll with the JSON counters. */
static void test_stats_callback(void **state)
{
    server_t *s = *state;
    create_stream(s, "stats", 1);
    sink_t *sink = sink_new(10);
    kn_conf_t *conf = base_conf(s);
    conf_set(conf, "producer.stats.interval.ms", "100");
    kn_conf_set_result_cb(conf, on_result, sink);
    kn_conf_set_stats_cb(conf, on_stats, NULL);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    for (int i = 0; i < 10; i++)
        assert_int_equal(put_one(p, s->stream, "k", "v", 1, i, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    stats_calls = 0;
    for (int t = 0; t < 100 && stats_calls < 2; t++)
        kn_producer_poll(p, 50);
    assert_true(stats_calls >= 2);
    json_object *js = json_tokener_parse(stats_last);
    assert_non_null(js);
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(js, "user_records_put", &v));
    assert_int_equal(json_object_get_int64(v), 10);
    assert_true(json_object_object_get_ex(js, "kinesis_records_put", &v));
    assert_true(json_object_get_int64(v) >= 1);
    json_object_put(js);
    kn_producer_destroy(p);
    sink_free(sink);
}

typedef struct reput_s {
    const char *stream;
    kn_err_t rc;
    int calls;
} reput_t;

static void on_result_reput(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    reput_t *x = opaque;
    (void)r;
    if (x->calls++ == 0) {
        char err[256];
        x->rc = put_one(p, x->stream, "k", "v", 1, 99, err, sizeof(err));
    }
}

/* A put from inside the result callback that finds no room fails at once instead of stalling. */
static void test_put_from_callback_when_full(void **state)
{
    server_t *s = *state;
    create_stream(s, "reput", 1);
    reput_t x = {s->stream, KN_ERR_OK, 0};
    kn_conf_t *conf = base_conf(s);
    conf_set(conf, "producer.buffer.max.records", "2");
    kn_conf_set_result_cb(conf, on_result_reput, &x);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    assert_int_equal(put_one(p, s->stream, "k", "v", 1, 0, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, "k", "v", 1, 1, err, sizeof(err)), KN_ERR_OK);
    time_t t0 = time(NULL);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_true(time(NULL) - t0 < 20); /* not the 60 s put timeout */
    assert_int_equal(x.rc, KN_ERR_QUEUE_FULL);
    kn_producer_destroy(p);
    assert_int_equal(x.calls, 2);
}

typedef struct flushcb_s {
    kn_err_t rc;
    int calls;
} flushcb_t;

static void on_result_flush(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    flushcb_t *x = opaque;
    (void)r;
    if (x->calls++ == 0)
        x->rc = kn_producer_flush(p, 20000);
}

/* A flush from inside the result callback cannot wait for itself: KN_ERR_STATE at once. */
static void test_flush_from_callback(void **state)
{
    server_t *s = *state;
    create_stream(s, "flushcb", 1);
    flushcb_t x = {KN_ERR_OK, 0};
    kn_conf_t *conf = base_conf(s);
    kn_conf_set_result_cb(conf, on_result_flush, &x);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    assert_int_equal(put_one(p, s->stream, "k", "v", 1, 0, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(put_one(p, s->stream, "k", "w", 1, 1, err, sizeof(err)), KN_ERR_OK);
    time_t t0 = time(NULL);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_true(time(NULL) - t0 < 15); /* not the callback's 20 s flush */
    assert_int_equal(x.rc, KN_ERR_STATE);
    assert_int_equal(x.calls, 2);
    kn_producer_destroy(p);
}

typedef struct destroycb_s {
    kn_err_t rc;
    int calls;
    bool background;
} destroycb_t;

static void on_result_destroy(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)r;
    destroycb_t *x = opaque;
    if (x->calls++ == 0)
        x->rc = kn_producer_destroy(p);
}

/*
 * kn_producer_destroy from inside the result callback (in poll mode and in
 * background mode, where the serving thread would join itself) is refused
 * with KN_ERR_STATE and leaves the producer working; destroyed afterwards
 * from the application's thread it ends normally.
 */
static void destroy_from_callback(server_t *s, bool background)
{
    create_stream(s, background ? "destroycbbg" : "destroycb", 1);
    destroycb_t x = {KN_ERR_OK, 0, background};
    kn_conf_t *conf = base_conf(s);
    if (background)
        conf_set(conf, "producer.results.background", "true");
    kn_conf_set_result_cb(conf, on_result_destroy, &x);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    assert_int_equal(put_one(p, s->stream, "k", "v", 1, 0, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.rc, KN_ERR_STATE);
    /* Still usable. */
    assert_int_equal(put_one(p, s->stream, "k", "w", 1, 1, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_producer_flush(p, 30000), KN_ERR_OK);
    assert_int_equal(x.calls, 2);
    assert_int_equal(kn_producer_destroy(p), KN_ERR_OK);
}

static void test_destroy_from_callback(void **state) { destroy_from_callback(*state, false); }
static void test_destroy_from_callback_background(void **state) { destroy_from_callback(*state, true); }

typedef struct poller_s {
    kn_producer_t *p;
    atomic_int in_poll, polls;
} poller_t;

static void on_result_slow(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    (void)p, (void)r, (void)opaque;
    usleep(20000);
}

static void *poll_loop(void *arg)
{
    poller_t *t = arg;
    for (;;) {
        atomic_store(&t->in_poll, 1);
        int n = kn_producer_poll(t->p, -1); /* returns when destroy begins, or with results */
        atomic_store(&t->in_poll, 0);
        atomic_fetch_add(&t->polls, 1);
        if (n == 0)
            return NULL; /* destroy has begun: no more calls after this one */
    }
}

/*
 * destroy while another thread is inside kn_producer_poll (serving results
 * with a slow callback, or waiting for results without a limit): destroy
 * waits for that call to leave the producer before freeing it (the
 * sanitizer build sees any use after free), and the waiting poll returns.
 */
static void test_destroy_during_poll_on_another_thread(void **state)
{
    server_t *s = *state;
    create_stream(s, "destroypoll", 1);
    kn_conf_t *conf = base_conf(s);
    kn_conf_set_result_cb(conf, on_result_slow, NULL);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    poller_t t = {p, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, poll_loop, &t);
    for (int i = 0; i < 60; i++)
        assert_int_equal(put_one(p, s->stream, "k", "v", 1, i, err, sizeof(err)), KN_ERR_OK);
    usleep(300000); /* results are being served slowly on the other thread */
    int64_t t0 = now_ms_local();
    assert_int_equal(kn_producer_destroy(p), KN_ERR_OK);
    assert_true(now_ms_local() - t0 < 20000);
    pthread_join(th, NULL);
    assert_true(atomic_load(&t.polls) >= 1);
}

typedef struct feeder_s {
    kn_producer_t *p;
    const char *stream;
    int n;
    int failed;
} feeder_t;

static void *feeder(void *arg)
{
    feeder_t *f = arg;
    char key[32], data[64], err[256];
    for (int i = 0; i < f->n; i++) {
        snprintf(key, sizeof(key), "rs-%d", i);
        int len = snprintf(data, sizeof(data), "reshard %d", i);
        if (put_one(f->p, f->stream, key, data, (size_t)len, i, err, sizeof(err)) != KN_ERR_OK)
            f->failed++;
        if (i % 50 == 0)
            usleep(20000);
    }
    return NULL;
}

/*
 * A reshard while records flow (a split of one shard, or a merge of two):
 * every record succeeds and is in the stream inside its own shard's range; a
 * copy that landed in an aggregate on a shard that does not own its key
 * (found by the shard check) was put again, so no KCL consumer can lose it.
 */
static void reshard_while_producing(server_t *s, bool merge)
{
    create_stream(s, merge ? "merge" : "split", merge ? 2 : 1);
    int n = 3000;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.record.max.buffered.ms", "20", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    feeder_t f = {p, s->stream, n, 0};
    pthread_t th;
    pthread_create(&th, NULL, feeder, &f);
    usleep(300000);
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    if (merge) {
        if (kn__kinesis_merge_shards(s->client, &ref, "shardId-000000000000", "shardId-000000000001",
                                     &e) != KN_ERR_OK)
            fail_msg("MergeShards: %s", e.message);
    } else if (kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e) != KN_ERR_OK) {
        fail_msg("SplitShard: %s", e.message);
    }
    pthread_join(th, NULL);
    assert_int_equal(f.failed, 0);
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        if (sink->r[i].err != KN_ERR_OK)
            fail_msg("record %d: %s", i, sink->r[i].errstr);
    }
    gotlist_t got = {0};
    read_all_ex(s, (size_t)n, &got, true);
    int *in_range = calloc((size_t)n, sizeof(int));
    for (size_t g = 0; g < got.n; g++) {
        int i = -1;
        assert_int_equal(sscanf(got.v[g].key, "rs-%d", &i), 1);
        if (!got.v[g].out_of_range)
            in_range[i]++;
        /* The result names the copy a consumer keeps. */
        if (!got.v[g].out_of_range && !strcmp(sink->r[i].seq, got.v[g].seq))
            assert_string_equal(sink->r[i].shard, got.v[g].shard);
    }
    for (int i = 0; i < n; i++)
        if (in_range[i] < 1)
            fail_msg("record %d is not in the stream inside its shard's range", i);
    size_t oor = 0, reput = 0;
    for (size_t g = 0; g < got.n; g++)
        oor += got.v[g].out_of_range;
    for (int i = 0; i < n; i++)
        reput += sink->r[i].attempts > 1;
    print_message("%s: %zu records read, %zu wrong-shard copies in aggregates, %zu records put again\n",
                  merge ? "merge" : "split", got.n, oor, reput);
    free(in_range);
    gotlist_free(&got);
    sink_free(sink);
}

/* Puts KEYS keys round robin, "<key>:<n>" with n counting up per key, pacing a little. */
typedef struct ofeeder_s {
    kn_producer_t *p;
    const char *stream;
    int n, keys, failed;
} ofeeder_t;

static void *ordered_feeder(void *arg)
{
    ofeeder_t *f = arg;
    char key[32], data[64], err[256];
    for (int i = 0; i < f->n; i++) {
        snprintf(key, sizeof(key), "so-%d", i % f->keys);
        int len = snprintf(data, sizeof(data), "%d", i / f->keys);
        if (put_one(f->p, f->stream, key, data, (size_t)len, i, err, sizeof(err)) != KN_ERR_OK)
            f->failed++;
        if (i % 40 == 0)
            usleep(15000);
    }
    return NULL;
}

/*
 * Strict ordering across a split: records of the parent that land in an
 * aggregate on the child that does not hold their key are put again, and
 * until they are, the later records of their key wait behind them. What a
 * KCL consumer sees (the copies inside their shard's range), read parent
 * first: every key's values in put order, each exactly once.
 */
static void test_strict_ordering_across_split(void **state)
{
    server_t *s = *state;
    create_stream(s, "strictsplit", 1);
    enum { KEYS = 16 };
    int n = 3200;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.ordering.strict", "true", "producer.record.max.buffered.ms", "10",
                           "aws.retry.base.ms", "200", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    ofeeder_t f = {p, s->stream, n, KEYS, 0};
    pthread_t th;
    pthread_create(&th, NULL, ordered_feeder, &f);
    usleep(300000);
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    if (kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e) != KN_ERR_OK)
        fail_msg("SplitShard: %s", e.message);
    pthread_join(th, NULL);
    assert_int_equal(f.failed, 0);
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    size_t reput = 0;
    for (int i = 0; i < n; i++) {
        if (sink->r[i].err != KN_ERR_OK)
            fail_msg("record %d: %s", i, sink->r[i].errstr);
        reput += sink->r[i].attempts > 1;
    }
    gotlist_t got = {0};
    read_all_ex(s, (size_t)n, &got, true);
    /* read_all_ex reads the shards in listing order: the parent (shard 0) first. */
    int last[KEYS], seen = 0;
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    for (size_t g = 0; g < got.n; g++) {
        if (got.v[g].out_of_range)
            continue;
        int k = -1;
        assert_int_equal(sscanf(got.v[g].key, "so-%d", &k), 1);
        char tmp[32];
        snprintf(tmp, sizeof(tmp), "%.*s", (int)got.v[g].data_len, (const char *)got.v[g].data);
        int v = atoi(tmp);
        if (v != last[k] + 1) {
            for (size_t h = 0; h < got.n; h++) {
                int k2 = -1;
                sscanf(got.v[h].key, "so-%d", &k2);
                if (k2 == k)
                    print_message("  so-%d %.*s %s%s seq %s sub %llu\n", k, (int)got.v[h].data_len,
                                  (const char *)got.v[h].data, got.v[h].shard,
                                  got.v[h].out_of_range ? " (out of range)" : "", got.v[h].seq,
                                  (unsigned long long)got.v[h].sub);
            }
            fail_msg("key so-%d: value %d after %d (shard %s)", k, v, last[k], got.v[g].shard);
        }
        last[k] = v;
        seen++;
    }
    assert_int_equal(seen, n);
    print_message("strict split: %d records in order, %zu put again\n", seen, reput);
    gotlist_free(&got);
    sink_free(sink);
}

static void test_reshard_while_producing(void **state) { reshard_while_producing(*state, false); }
static void test_merge_while_producing(void **state) { reshard_while_producing(*state, true); }

/*
 * moto keeps writing to a parent shard after UpdateShardCount, so every
 * aggregate lands outside the shard that owns its keys: the records are put
 * again with backoff (not in a busy loop) until they land right or their TTL
 * ends, each with exactly one result.
 */
static void test_wrong_shard_retries_back_off(void **state)
{
    server_t *s = *state;
    create_stream(s, "wrongshard", 1);
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    if (kn__kinesis_update_shard_count(s->client, &ref, 2, &e) != KN_ERR_OK)
        fail_msg("UpdateShardCount: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 30000, 200, &e) != KN_ERR_OK)
        fail_msg("wait: %s", e.message);
    int n = 40;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.record.ttl.ms", "4000", "producer.record.max.buffered.ms", "20", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    char err[256], key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "ws-%d", i);
        assert_int_equal(put_one(p, s->stream, key, "x", 1, i, err, sizeof(err)), KN_ERR_OK);
    }
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    int wrong = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        if (sink->r[i].err != KN_ERR_OK) {
            assert_int_equal(sink->r[i].err, KN_ERR_TIMEOUT);
            assert_non_null(strstr(sink->r[i].errstr, "outside its hash range"));
            wrong++;
        }
        /* 4 s of exponential backoff from 100 ms allows a few dozen attempts, not thousands. */
        if (sink->r[i].attempts > 60)
            fail_msg("record %d: %d attempts within a 4 s TTL", i, sink->r[i].attempts);
    }
    int most = 0;
    for (int i = 0; i < n; i++)
        most = sink->r[i].attempts > most ? sink->r[i].attempts : most;
    print_message("wrong shard: %d of %d records never landed on their own shard; at most %d attempts\n", wrong, n, most);
    sink_free(sink);
}

typedef struct worker_s {
    kn_producer_t *p;
    const char *stream;
    int first, count;
    int failed;
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    char key[32], data[64], err[256];
    for (int i = w->first; i < w->first + w->count; i++) {
        snprintf(key, sizeof(key), "t%d", i);
        int len = snprintf(data, sizeof(data), "record %d", i);
        if (put_one(w->p, w->stream, key, data, (size_t)len, i, err, sizeof(err)) != KN_ERR_OK)
            w->failed++;
    }
    return NULL;
}

/* Four threads put at once, the main thread polls: every result exactly once, all in the stream. */
static void test_many_threads(void **state)
{
    server_t *s = *state;
    create_stream(s, "threads", 4);
    enum { THREADS = 4, PER = 2500 };
    int n = THREADS * PER;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.buffer.max.records", "3000", NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){p, s->stream, i * PER, PER, 0};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(w[i].failed, 0);
    assert_int_equal(kn_producer_flush(p, 60000), KN_ERR_OK);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, n);
    for (int i = 0; i < n; i++) {
        assert_int_equal(sink->r[i].served, 1);
        assert_int_equal(sink->r[i].err, KN_ERR_OK);
    }
    gotlist_t got = {0};
    read_all(s, (size_t)n, &got);
    assert_int_equal(got.n, n);
    gotlist_free(&got);
    sink_free(sink);
}

/* Background mode: results arrive on the internal thread without poll; kn_producer_fd is -1. */
static void test_background_mode(void **state)
{
    server_t *s = *state;
    create_stream(s, "bg", 1);
    int n = 500;
    sink_t *sink = sink_new(n);
    const char *extra[] = {"producer.results.background", "true", "producer.record.max.buffered.ms", "10",
                           NULL};
    kn_producer_t *p = producer_with(s, sink, extra);
    assert_int_equal(kn_producer_fd(p), -1);
    char err[256];
    for (int i = 0; i < n; i++)
        assert_int_equal(put_one(p, s->stream, "bgkey", "v", 1, i, err, sizeof(err)), KN_ERR_OK);
    for (int t = 0; t < 600; t++) {
        pthread_mutex_lock(&sink->lock);
        int total = sink->total;
        pthread_mutex_unlock(&sink->lock);
        if (total == n)
            break;
        usleep(50000);
    }
    assert_int_equal(kn_producer_pending(p), 0);
    assert_int_equal(kn_producer_poll(p, 0), 0);
    kn_producer_destroy(p);
    assert_int_equal(sink->total, n);
    sink_free(sink);
}

/* The fd becomes readable when results wait; poll serves them. */
static void test_fd_and_poll(void **state)
{
    server_t *s = *state;
    create_stream(s, "fd", 1);
    sink_t *sink = sink_new(1);
    kn_producer_t *p = producer_with(s, sink, NULL);
    int fd = kn_producer_fd(p);
    assert_true(fd >= 0);
    char err[256];
    assert_int_equal(put_one(p, s->stream, "k", "v", 1, 0, err, sizeof(err)), KN_ERR_OK);
    fd_set rf;
    struct timeval tv = {30, 0};
    FD_ZERO(&rf);
    FD_SET(fd, &rf);
    assert_int_equal(select(fd + 1, &rf, NULL, NULL, &tv), 1);
    assert_int_equal(kn_producer_poll(p, 0), 1);
    assert_int_equal(sink->total, 1);
    assert_int_equal(sink->r[0].err, KN_ERR_OK);
    FD_ZERO(&rf);
    FD_SET(fd, &rf);
    tv = (struct timeval){0, 0};
    assert_int_equal(select(fd + 1, &rf, NULL, NULL, &tv), 0);
    kn_producer_destroy(p);
    sink_free(sink);
}

typedef struct during_destroy_s {
    const char *stream;
    bool destroying;
    int calls;
    int put_ok, put_destroyed, put_other;
} during_destroy_t;

static void on_result_put_again(kn_producer_t *p, const kn_result_t *r, void *opaque)
{
    during_destroy_t *x = opaque;
    (void)r;
    x->calls++;
    if (!x->destroying)
        return;
    char err[256];
    kn_err_t rc = put_one(p, x->stream, "k", "v", 1, 0, err, sizeof(err));
    if (rc == KN_ERR_OK)
        x->put_ok++;
    else if (rc == KN_ERR_DESTROYED && strstr(err, "destroyed"))
        x->put_destroyed++;
    else
        x->put_other++;
}

/*
 * A put after destroy began fails with KN_ERR_DESTROYED: destroy serves the
 * pending results on its thread, and the callback tries to put again.
 */
static void test_put_after_destroy_began(void **state)
{
    server_t *s = *state;
    kn_producer_destroy(NULL); /* a no-op */
    create_stream(s, "late", 1);
    during_destroy_t x = {s->stream, false, 0, 0, 0, 0};
    kn_conf_t *conf = base_conf(s);
    kn_conf_set_result_cb(conf, on_result_put_again, &x);
    char err[512];
    kn_producer_t *p = kn_t_producer_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(p);
    for (int i = 0; i < 20; i++)
        assert_int_equal(put_one(p, s->stream, "k", "v", 1, i, err, sizeof(err)), KN_ERR_OK);
    x.destroying = true; /* nothing was polled: every result is served inside destroy */
    kn_producer_destroy(p);
    assert_int_equal(x.calls, 20);
    assert_int_equal(x.put_destroyed, 20);
    assert_int_equal(x.put_ok, 0);
    assert_int_equal(x.put_other, 0);
}

#define ON(server, fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &server)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        ON(kinesalite, test_roundtrip_aggregated_1_shard),
        ON(kinesalite, test_roundtrip_aggregated_4_shards),
        ON(kinesalite, test_roundtrip_raw_1_shard),
        ON(kinesalite, test_roundtrip_raw_4_shards),
        ON(moto, test_roundtrip_aggregated_4_shards),
        ON(moto, test_roundtrip_raw_1_shard),
        ON(kinesalite, test_roundtrip_gzip_aggregate_scope),
        ON(kinesalite, test_roundtrip_zstd_aggregate_scope_raw),
        ON(kinesalite, test_roundtrip_zstd_record_scope),
        ON(kinesalite, test_roundtrip_gzip_record_scope_1_shard),
        ON(kinesalite, test_max_size_records),
        ON(kinesalite, test_lone_magic_record_is_wrapped),
        ON(kinesalite, test_bad_input),
        ON(kinesalite, test_unknown_stream),
        ON(moto, test_unknown_stream),
        ON(kinesalite, test_queue_full),
        ON(kinesalite, test_single_thread_never_polls),
        ON(kinesalite, test_flush_timeout_and_destroy_pending),
        ON(kinesalite, test_many_threads),
        ON(kinesalite, test_strict_ordering),
        ON(kinesalite, test_interned_error_names_are_bounded),
        ON(kinesalite, test_hanging_credential_sources_leave_body_building_alone),
        ON(kinesalite, test_records_wait_out_a_credential_outage),
        ON(kinesalite, test_strict_ordering_across_split),
        ON(kinesalite, test_reshard_while_producing),
        ON(kinesalite, test_merge_while_producing),
        ON(moto, test_wrong_shard_retries_back_off),
        ON(kinesalite, test_background_mode),
        ON(kinesalite, test_fd_and_poll),
        ON(kinesalite, test_put_after_destroy_began),
        ON(kinesalite, test_bad_conf),
        ON(kinesalite, test_stats_callback),
        ON(kinesalite, test_put_from_callback_when_full),
        ON(kinesalite, test_flush_from_callback),
        ON(kinesalite, test_destroy_from_callback),
        ON(kinesalite, test_destroy_from_callback_background),
        ON(kinesalite, test_destroy_during_poll_on_another_thread),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
