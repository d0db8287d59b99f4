/*
 * The stream reader against real servers (kinesalite, and moto for a second
 * implementation): records put with our producer (plain, aggregated,
 * compressed) read back exactly (key, bytes, shard, sequence and
 * sub-sequence numbers); every start position; raw mode; many shards; an
 * explicit shard selection; split and merge before and while reading (every
 * record once, per-key order, parents before children, SHARD_END with its
 * children); caught-up, at-end and stop-at; the prefetch bound while the
 * application polls slowly; bad input.
 *
 * The program takes a cmocka name filter (argv[1]) so that meson runs each
 * group as its own test.
 */
#include <sys/select.h>

#include "test_new.h"
#include "agg.h"
#include "hashkey.h"
#include "fault.h"
#include "reader_util.h"
#include "reader_int.h"

static server_t kinesalite = {"kinesalite", "KN_TEST_KINESALITE_URL", NULL, "", NULL};
static server_t moto = {"moto", "KN_TEST_MOTO_URL", NULL, "", NULL};

/* ------------------------------------------------------------ round trips */

static void roundtrip(server_t *s, int shards, int n, const char *const *pextra, bool expect_agg)
{
    create_stream(s, "rt", shards);
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 50, pextra);
    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 60000);
    assert_true(kn_reader_at_end(r));
    assert_int_equal(run.started, shards);
    assert_int_equal(run.caught_up, shards);
    assert_int_equal(run.errors, 0);
    assert_int_equal(run.at_end, 1);
    check_exact(&run, recs, n);
    check_key_order(&run, 50);
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_RECORDS), n);
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_OUT_OF_RANGE), 0);
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_SHARDS_ACTIVE), shards);
    if (expect_agg)
        assert_true(kn_reader_stat(r, KN_READER_STAT_AGGREGATES) > 0);
    else
        assert_int_equal(kn_reader_stat(r, KN_READER_STAT_AGGREGATES), 0);
    /* Nothing more arrives: poll times out with NULL. */
    assert_null(kn_reader_poll(r, 300));
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

static void test_plain_records_read_back_exactly(void **state)
{
    const char *extra[] = {"producer.aggregation.enabled", "false", NULL};
    roundtrip(*state, 4, 300, extra, false);
}

static void test_aggregated_records_read_back_exactly(void **state)
{
    roundtrip(*state, 3, 2000, NULL, true);
}

static void test_zstd_aggregate_scope_read_back_exactly(void **state)
{
    const char *extra[] = {"producer.compression.codec", "zstd", NULL};
    roundtrip(*state, 2, 1500, extra, true);
}

static void test_gzip_record_scope_read_back_exactly(void **state)
{
    const char *extra[] = {"producer.compression.codec", "gzip", "producer.compression.scope",
                           "record", NULL};
    roundtrip(*state, 2, 800, extra, true);
}

static void test_many_shards(void **state)
{
    roundtrip(*state, 12, 1200, NULL, true);
}

/* Raw mode: the Kinesis records as stored (aggregates not unpacked). */
static void test_raw_mode(void **state)
{
    server_t *s = *state;
    create_stream(s, "raw", 1);
    int n = 500;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 10, NULL);
    size_t kinesis_records = 0;
    for (int i = 0; i < n; i++)
        kinesis_records += recs[i].sub == 0;
    kn_reader_opts_t o = {.struct_size = sizeof(kn_reader_opts_t), .raw = true};
    kn_reader_t *r = reader_with(s, &o, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 60000);
    assert_int_equal(run.n, kinesis_records);
    static const unsigned char magic[4] = {0xF3, 0x89, 0x9A, 0xC2};
    for (size_t g = 0; g < run.n; g++) {
        assert_false(run.v[g].aggregated);
        assert_int_equal(run.v[g].sub, 0);
        assert_memory_equal(run.v[g].head, magic, 4);
    }
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_AGGREGATES), 0);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * An aggregate from a producer that is not shard-aware (one outer key for
 * user records of every shard): every sub-record is delivered, and those
 * whose hash key lies outside the shard are flagged and counted.
 */
static void test_out_of_range_sub_records_delivered(void **state)
{
    server_t *s = *state;
    create_stream(s, "oor", 2);
    kn__agg_builder_t *b = kn__agg_builder_new();
    assert_non_null(b);
    kn_error_t e = {0};
    char keys[40][8], datas[40][32];
    for (int i = 0; i < 40; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        snprintf(datas[i], sizeof(datas[i]), "d-%d-oor", i);
        kn__agg_in_t in = {.partition_key = keys[i], .partition_key_len = strlen(keys[i]),
                           .data = datas[i], .data_len = strlen(datas[i])};
        assert_int_equal(kn__agg_builder_add(b, &in, &e), KN_ERR_OK);
    }
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, "outer", true, &out, &e), KN_ERR_OK);
    kn__put_entry_t ent = {.data = out.data.data, .data_len = out.data.len,
                           .partition_key = "outer", .partition_key_len = 5};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__put_result_t pr;
    memset(&pr, 0, sizeof(pr));
    if (kn__kinesis_put_records(s->client, &ref, &ent, 1, &pr, &e) != KN_ERR_OK)
        fail_msg("PutRecords: %s", e.message);
    assert_int_equal(pr.failed_count, 0);
    char shard[64];
    snprintf(shard, sizeof(shard), "%s", pr.entries[0].shard_id);
    kn__put_result_free(&pr);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);

    kn__shard_list_t list = {0};
    assert_int_equal(kn__kinesis_list_shards(s->client, &ref, NULL, &list, &e), KN_ERR_OK);
    const kn__shard_t *sh = NULL;
    for (size_t i = 0; i < list.count; i++)
        if (!strcmp(list.shards[i].shard_id, shard))
            sh = &list.shards[i];
    assert_non_null(sh);
    int expect_oor = 0;
    bool oor[40];
    for (int i = 0; i < 40; i++) {
        kn__hashkey_t h = kn__hashkey_from_partition_key(keys[i], strlen(keys[i]));
        oor[i] = kn__hashkey_cmp(h, sh->start_hash) < 0 || kn__hashkey_cmp(h, sh->end_hash) > 0;
        expect_oor += oor[i];
    }
    kn__shard_list_free(&list);
    assert_true(expect_oor > 0 && expect_oor < 40);

    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 40);
    for (size_t g = 0; g < run.n; g++) {
        assert_int_equal(run.v[g].idx, (int)g);
        assert_int_equal(run.v[g].sub, g);
        assert_true(run.v[g].aggregated);
        assert_string_equal(run.v[g].shard, shard);
        assert_int_equal(run.v[g].out_of_range, oor[g]);
    }
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_OUT_OF_RANGE), expect_oor);
    print_message("out of range: %d of 40 sub-records delivered and counted\n", expect_oor);
    kn_reader_destroy(r);
    run_free(&run);
}

/* ------------------------------------------------------------ positions */

static void test_start_positions(void **state)
{
    server_t *s = *state;
    create_stream(s, "pos", 1);
    put_t recs[40];
    memset(recs, 0, sizeof(recs));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, 10, 1, plain);
    usleep(1500000);
    int64_t ts = wall_ms();
    usleep(1500000);
    produce(s, recs, 10, 20, 1, plain);
    const char *shard = "shardId-000000000000";
    const char *ids[] = {shard};

    /* TRIM_HORIZON */
    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 20);
    assert_int_equal(run.v[0].idx, 0);
    kn_reader_destroy(r);
    run_free(&run);

    /* AT_TIMESTAMP: only the second half */
    kn_reader_opts_t o = {.struct_size = sizeof(kn_reader_opts_t), .start = {.type = KN_POS_AT_TIMESTAMP, .timestamp_ms = ts}};
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 10);
    for (size_t i = 0; i < run.n; i++)
        assert_int_equal(run.v[i].idx, 10 + (int)i);
    kn_reader_destroy(r);
    run_free(&run);

    /* AT_SEQUENCE_NUMBER and AFTER_SEQUENCE_NUMBER of record 5 */
    o = (kn_reader_opts_t)KN_READER_OPTS_INIT;
    o.shard_ids = ids;
    o.shard_count = 1;
    o.start.type = KN_POS_AT_SEQUENCE_NUMBER;
    o.start.sequence_number = recs[5].seq;
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 15);
    assert_int_equal(run.v[0].idx, 5);
    kn_reader_destroy(r);
    run_free(&run);
    o.start.type = KN_POS_AFTER_SEQUENCE_NUMBER;
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 14);
    assert_int_equal(run.v[0].idx, 6);
    kn_reader_destroy(r);
    run_free(&run);

    /* LATEST: nothing old; records put afterwards arrive */
    o = (kn_reader_opts_t)KN_READER_OPTS_INIT;
    o.start.type = KN_POS_LATEST;
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000); /* caught up: the iterator is taken */
    assert_int_equal(run.n, 0);
    produce(s, recs, 20, 30, 1, plain);
    poll_until(r, &run, false, 10, 30000);
    int64_t quiet = now_ms() + 500; /* nothing else arrives (a CAUGHT_UP event may) */
    while (now_ms() < quiet) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    assert_int_equal(run.n, 10);
    for (size_t i = 0; i < run.n; i++)
        assert_int_equal(run.v[i].idx, 20 + (int)i);
    kn_reader_destroy(r);
    run_free(&run);

    /* stop at ts: the first half only, then SHARD_STOPPED and at-end */
    o = (kn_reader_opts_t)KN_READER_OPTS_INIT;
    o.stop_at_ms = ts;
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 10);
    assert_int_equal(run.stopped, 1);
    assert_int_equal(run.v[9].idx, 9);
    for (size_t i = 0; i < run.n; i++)
        assert_true(run.v[i].arrival_ms < ts);
    kn_reader_destroy(r);
    run_free(&run);

    /* stop in the future on a caught-up shard: stops once the clock passes it */
    o = (kn_reader_opts_t)KN_READER_OPTS_INIT;
    o.stop_at_ms = wall_ms() + 1500;
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.n, 30);
    assert_int_equal(run.stopped, 1);
    assert_true(wall_ms() >= o.stop_at_ms);
    kn_reader_destroy(r);
    run_free(&run);
}

/* An explicit selection reads only the chosen shards. */
static void test_explicit_shard_selection(void **state)
{
    server_t *s = *state;
    create_stream(s, "sel", 3);
    int n = 300;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 30, NULL);
    const char *ids[] = {"shardId-000000000001"};
    kn_reader_opts_t o = {.struct_size = sizeof(kn_reader_opts_t), .shard_ids = ids, .shard_count = 1};
    kn_reader_t *r = reader_with(s, &o, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 30000);
    size_t expect = 0;
    for (int i = 0; i < n; i++)
        expect += strcmp(recs[i].shard, ids[0]) == 0;
    assert_true(expect > 0);
    assert_int_equal(run.n, expect);
    for (size_t g = 0; g < run.n; g++)
        assert_string_equal(run.v[g].shard, ids[0]);
    assert_int_equal(run.started, 1);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/* ------------------------------------------------------------ resharding */

static void test_split_and_merge_then_read(void **state)
{
    server_t *s = *state;
    create_stream(s, "lin", 1);
    int per = 300, nkeys = 40;
    put_t *recs = calloc((size_t)(3 * per), sizeof(put_t));
    split_and_merge(s, recs, per, nkeys);
    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    poll_until(r, &run, true, 0, 90000);
    check_lineage(&run, recs, 3 * per, nkeys);
    /* Shards 0, 1 and 2 closed and read to their end, each naming its children. */
    assert_int_equal(run.ended, 3);
    assert_int_equal(run.started, 4);
    assert_int_equal(run.errors, 0);
    for (int i = 0; i < run.ended; i++) {
        if (!strcmp(run.ended_ids[i], "shardId-000000000000"))
            assert_int_equal(run.ended_children[i], 2);
        else
            assert_int_equal(run.ended_children[i], 1);
    }
    assert_int_equal(kn_reader_stat(r, KN_READER_STAT_SHARDS_DONE), 3);
    kn_reader_destroy(r);
    run_free(&run);

    /* At LATEST only the open shard is read. */
    kn_reader_opts_t o = {.struct_size = sizeof(kn_reader_opts_t), .start = {.type = KN_POS_LATEST}};
    r = reader_with(s, &o, NULL);
    memset(&run, 0, sizeof(run));
    poll_until(r, &run, true, 0, 30000);
    assert_int_equal(run.started, 1);
    assert_int_equal(run.n, 0);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

static void test_split_and_merge_while_reading(void **state)
{
    server_t *s = *state;
    create_stream(s, "linlive", 1);
    int per = 300, nkeys = 40;
    put_t *recs = calloc((size_t)(3 * per), sizeof(put_t));
    kn_reader_t *r = reader_with(s, NULL, NULL);
    run_t run = {0};
    /* The reader runs (and is polled) in between the phases. */
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    produce(s, recs, 0, per, nkeys, NULL);
    poll_until(r, &run, false, (size_t)per, 30000);
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    if (kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e) != KN_ERR_OK)
        fail_msg("SplitShard: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
    produce(s, recs, per, 2 * per, nkeys, NULL);
    poll_until(r, &run, false, (size_t)(2 * per), 30000);
    if (kn__kinesis_merge_shards(s->client, &ref, "shardId-000000000001", "shardId-000000000002", &e) !=
        KN_ERR_OK)
        fail_msg("MergeShards: %s", e.message);
    if (kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e) != KN_ERR_OK)
        fail_msg("wait active: %s", e.message);
    produce(s, recs, 2 * per, 3 * per, nkeys, NULL);
    poll_until(r, &run, false, (size_t)(3 * per), 60000);
    check_lineage(&run, recs, 3 * per, nkeys);
    /* Drain the events: every closed shard ends, the merged child starts. */
    int64_t deadline = now_ms() + 30000;
    while ((run.ended < 3 || run.started < 4) && now_ms() < deadline) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 200);
        if (m)
            take(&run, m);
    }
    assert_int_equal(run.ended, 3);
    assert_int_equal(run.started, 4);
    assert_int_equal(run.n, (size_t)(3 * per));
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/* ------------------------------------------------------------ prefetch bound */

/*
 * A slow application: the reader stops reading when the answers it holds
 * reach the bound, and resumes as the application catches up; everything
 * arrives in order.
 */
static void test_prefetch_bound_with_slow_polling(void **state)
{
    server_t *s = *state;
    create_stream(s, "bound", 2);
    int n = 3000;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 20, plain);
    const char *extra[] = {"consumer.max.records", "50", "consumer.getrecords.interval.ms", "0",
                           "consumer.prefetch.shard.max.bytes", "20000",
                           "consumer.prefetch.max.bytes", "30000", NULL};
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    /* One record every 2 ms for 2 s. */
    int64_t end = now_ms() + 2000;
    while (now_ms() < end) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 0);
        if (m)
            take(&run, m);
        usleep(2000);
    }
    int64_t maxb = kn_reader_stat(r, KN_READER_STAT_PREFETCH_MAX_BYTES);
    int64_t pauses = kn_reader_stat(r, KN_READER_STAT_PAUSES);
    print_message("bound: %zu records served slowly, prefetch max %lld bytes, %lld pauses\n", run.n,
                  (long long)maxb, (long long)pauses);
    assert_true(pauses > 0);
    /*
     * At most the bound plus one answer per shard: 50 records of at most about 300 bytes of JSON
     * each (base64 data up to 96 bytes, a 56-digit sequence number, key, timestamp, names).
     */
    assert_true(maxb <= 30000 + 2 * 50 * 300);
    assert_true(run.n < (size_t)n);
    poll_until(r, &run, true, 0, 90000);
    check_exact(&run, recs, n);
    check_key_order(&run, 20);
    assert_true(kn_reader_stat(r, KN_READER_STAT_PREFETCH_MAX_BYTES) <= 30000 + 2 * 50 * 300);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * A shard far behind, holding many times the prefetch bounds (kinesalite
 * answers with everything a shard holds when asked, 10 MiB or not): each
 * GetRecords asks for as many records as fit the answer budget
 * (consumer.getrecords.max.bytes), so what the reader holds stays near its
 * bound however much is waiting, and every record still arrives exactly once.
 */
static void test_answers_sized_to_the_budget(void **state)
{
    server_t *s = *state;
    create_stream(s, "budget", 1);
    int n = 100000;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 50, NULL);
    const char *extra[] = {"consumer.getrecords.max.bytes", "262144",
                           "consumer.getrecords.interval.ms", "0",
                           "consumer.prefetch.shard.max.bytes", "524288",
                           "consumer.prefetch.max.bytes", "524288", NULL};
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    poll_until(r, &run, true, 0, 120000);
    int64_t maxb = kn_reader_stat(r, KN_READER_STAT_PREFETCH_MAX_BYTES);
    int64_t calls = kn_reader_stat(r, KN_READER_STAT_GETRECORDS);
    print_message("budget: %zu records, %lld GetRecords, prefetch max %lld bytes\n", run.n,
                  (long long)calls, (long long)maxb);
    check_exact(&run, recs, n);
    check_key_order(&run, 50);
    /* The whole shard is several MB of JSON: one answer alone would be over the bound. */
    assert_true(calls >= 12);
    /* The bound, plus one budget for an estimate that came out low. */
    assert_true(maxb <= 524288 + 262144);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * Room goes to waiting shards in turn. Two shards hold records and the
 * others none; with a bound of one full-size budget, each read of a shard
 * that is behind can start only when nothing else is held, while the empty
 * shards, reading without pause, ask for a quarter of that again and again.
 * Were room given to whichever asks when it fits, the small reads would keep
 * the bound busy and the two shards would wait for ever (as 300 shards did
 * on a 1,000-shard stream); in turn, everything is read to the end.
 */
static void test_room_goes_to_waiting_shards_in_turn(void **state)
{
    server_t *s = *state;
    create_stream(s, "turns", 16);
    int n = 2000;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 2, plain); /* keys k0 and k1: two shards at most */
    const char *extra[] = {"consumer.max.records", "50",
                           "consumer.getrecords.max.bytes", "1048576",
                           "consumer.prefetch.max.bytes", "1048576",
                           "consumer.getrecords.interval.ms", "0",
                           "consumer.idle.time.ms", "0", NULL};
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    int64_t t0 = now_ms();
    poll_until(r, &run, true, 0, 60000);
    int64_t calls = kn_reader_stat(r, KN_READER_STAT_GETRECORDS);
    int64_t pauses = kn_reader_stat(r, KN_READER_STAT_PAUSES);
    print_message("turns: %zu records in %lld ms, %lld GetRecords, %lld pauses\n", run.n,
                  (long long)(now_ms() - t0), (long long)calls, (long long)pauses);
    check_exact(&run, recs, n);
    check_key_order(&run, 2);
    /*
     * 1,000 records per shard, 50 a call: at least 20 reads each. In turn, each of them waits
     * behind each of the 16 shards at most once, and nothing else starts while it runs (its
     * budget is the whole bound), so the reads of all shards together stay under 16 per read
     * of the two (with room for the first and last reads). Given to whoever fits, the empty
     * shards read thousands of times meanwhile (56,597 reads, 10.5 s, when this was written).
     */
    assert_true(calls >= 2 * (1000 / 50));
    assert_true(calls <= 16 * 2 * (1000 / 50 + 10));
    assert_true(pauses > 0);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/* ------------------------------------------------------------ a shared bound at destroy */

static int64_t budget_queued(kn__rbudget_t *b)
{
    pthread_mutex_lock(&b->lock);
    int64_t q = b->queued;
    pthread_mutex_unlock(&b->lock);
    return q;
}

static kn__shard_t *first_shard(server_t *s, kn__shard_list_t *list)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__stream_ref_t ref = {s->stream, NULL};
    assert_int_equal(kn__kinesis_list_shards(s->client, &ref, NULL, list, &e), KN_ERR_OK);
    assert_true(list->count >= 1);
    return &list->shards[0];
}

/*
 * A consumer's single-shard reader destroyed with answers read ahead and not
 * taken gives their bytes back to the bound it shares: otherwise every
 * tenure that ends (a lease lost, handed over) would leave some behind, and
 * once enough were left the other readers could never fit a read again.
 */
static void test_single_reader_gives_back_its_bytes_at_destroy(void **state)
{
    server_t *s = *state;
    create_stream(s, "giveback", 1);
    int n = 200;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 10, plain);
    kn__shard_list_t list = {0};
    kn__shard_t *sh = first_shard(s, &list);
    kn__rbudget_t b;
    kn__rbudget_init(&b, 32 << 20);
    kn_conf_t *conf = base_conf(s);
    conf_set(conf, "consumer.max.records", "20");
    conf_set(conf, "consumer.getrecords.interval.ms", "0");
    kn__iterator_pos_t pos = {.type = KN__IT_TRIM_HORIZON};
    kn_error_t e;
    kn__error_clear(&e);
    kn_reader_t *r = kn__reader_new_one(s->client, conf, s->stream, sh, &pos, &b, false, NULL, NULL, &e);
    assert_non_null(r);
    /*
     * Each take parses what arrived (the next read starts from its iterator) and hands out one
     * item; the others stay queued, counted in the bound.
     */
    int64_t until = now_ms() + 20000;
    while (budget_queued(&b) < 3000 && now_ms() < until) {
        kn__rtake_t tk;
        if (kn__reader_take(r, 200, &tk) && tk.event)
            kn__reader_item_free(tk.event); /* SHARD_STARTED; batches are left queued */
        else if (tk.batch)
            kn__reader_batch_done(r, tk.batch);
        usleep(100 * 1000);
    }
    int64_t before = budget_queued(&b);
    kn_reader_destroy(r);
    int64_t after = budget_queued(&b);
    print_message("giveback: %lld bytes held before destroy, %lld after\n", (long long)before,
                  (long long)after);
    assert_true(before > 0);
    assert_int_equal(after, 0);
    assert_int_equal(b.reserved, 0);
    assert_int_equal(atomic_load(&b.waiting), 0);
    kn__rbudget_destroy(&b);
    kn_conf_destroy(conf);
    kn__shard_list_free(&list);
    free(recs);
}

/*
 * Once kn_reader_destroy returns, the reader no longer touches the bound it
 * shared (the consumer frees it with itself): a GetRecords still in flight
 * at destroy ends later without it. The bound is freed at once here, so the
 * ASan suite sees any late write; the plain one sees reserved change.
 */
static void test_shared_bound_untouched_after_destroy(void **state)
{
    server_t *s = *state;
    create_stream(s, "untouched", 1);
    kn__shard_list_t list = {0};
    kn__shard_t *sh = first_shard(s, &list);
    kn_conf_t *conf = base_conf(s);
    int in_flight = 0;
    for (int it = 0; it < 20; it++) {
        kn__rbudget_t *b = calloc(1, sizeof(*b));
        assert_non_null(b);
        kn__rbudget_init(b, 32 << 20);
        kn__iterator_pos_t pos = {.type = KN__IT_LATEST};
        kn_error_t e;
        kn__error_clear(&e);
        kn_reader_t *r = kn__reader_new_one(s->client, conf, s->stream, sh, &pos, b, false, NULL, NULL, &e);
        assert_non_null(r);
        int64_t until = now_ms() + 2000;
        while (now_ms() < until) {
            pthread_mutex_lock(&b->lock); /* reserved is the loop's: read it for the test only */
            int64_t res = b->reserved;
            pthread_mutex_unlock(&b->lock);
            if (res > 0)
                break;
            usleep(500);
        }
        in_flight += b->reserved > 0;
        kn_reader_destroy(r);
        assert_int_equal(b->reserved, 0);
        assert_int_equal(budget_queued(b), 0);
        kn__rbudget_destroy(b);
        free(b); /* a late callback writing to it is a use after free */
    }
    usleep(300 * 1000); /* the calls still in flight end now */
    print_message("untouched: %d of 20 readers destroyed with a GetRecords in flight\n", in_flight);
    assert_true(in_flight > 0);
    kn_conf_destroy(conf);
    kn__shard_list_free(&list);
}

/*
 * Idle reads: once a shard is caught up and has said so, its empty reads are
 * taken on the I/O thread (counted as idle_reads) and give the application
 * nothing, not a second SHARD_CAUGHT_UP; records put afterwards arrive
 * exactly, in order, followed by one SHARD_CAUGHT_UP per shard again.
 */
static void test_idle_reads_then_new_records(void **state)
{
    server_t *s = *state;
    create_stream(s, "idle", 2);
    int n = 400;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, 200, 10, NULL);
    const char *extra[] = {"consumer.idle.time.ms", "50", NULL};
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    poll_until(r, &run, true, 0, 60000);
    assert_int_equal(run.n, 200);
    assert_int_equal(run.caught_up, 2);
    int64_t idle0 = kn_reader_stat(r, KN_READER_STAT_IDLE_READS);
    int64_t calls0 = kn_reader_stat(r, KN_READER_STAT_GETRECORDS);
    /* About 20 idle reads a second per shard for 1.5 s: nothing for the application. */
    int64_t until = now_ms() + 1500;
    while (now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    int64_t idle = kn_reader_stat(r, KN_READER_STAT_IDLE_READS) - idle0;
    int64_t calls = kn_reader_stat(r, KN_READER_STAT_GETRECORDS) - calls0;
    print_message("idle: %lld idle reads of %lld GetRecords in 1.5 s\n", (long long)idle, (long long)calls);
    assert_true(idle >= 10);
    assert_true(calls >= idle);
    assert_int_equal(run.n, 200);
    assert_int_equal(run.caught_up, 2);
    assert_int_equal(run.errors, 0);
    produce(s, recs, 200, n, 10, NULL);
    poll_until(r, &run, false, (size_t)n, 60000);
    until = now_ms() + 60000;
    while (run.caught_up < 4 && now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    assert_int_equal(run.caught_up, 4);
    check_exact(&run, recs, n);
    check_key_order(&run, 10);
    assert_int_equal(run.at_end, 1);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * Answers over http.max.response.bytes (KN_ERR_TOO_LARGE): the shard asks for
 * half as many records and goes on, instead of failing or retrying the same
 * call for ever.
 */
static void test_too_large_answer_asks_for_fewer(void **state)
{
    server_t *s = *state;
    create_stream(s, "large", 1);
    int n = 20000;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, n, 10, NULL);
    /* Aggregates of about 50 KB: 10 of them (the first call's Limit) are far over 150 KB. */
    const char *extra[] = {"http.max.response.bytes", "150000", "consumer.getrecords.interval.ms",
                           "0", "aws.retry.base.ms", "5", NULL};
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    poll_until(r, &run, true, 0, 120000);
    int64_t retries = kn_reader_stat(r, KN_READER_STAT_RETRIES);
    print_message("large: %zu records, %lld retries\n", run.n, (long long)retries);
    check_exact(&run, recs, n);
    assert_true(retries >= 1);
    assert_int_equal(run.errors, 0);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * Small allocations fail while answers are served (fault points): the
 * answer is read again, or served later, and every record still arrives
 * exactly once and in order; nothing is dropped.
 */
static void test_allocation_failures_lose_nothing(void **state)
{
    server_t *s = *state;
    create_stream(s, "nomem", 2);
    int n = 2000;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    const char *plain[] = {"producer.aggregation.enabled", "false", NULL};
    produce(s, recs, 0, n, 20, plain);
    const char *extra[] = {"consumer.max.records", "100", "consumer.getrecords.interval.ms", "0",
                           "aws.retry.base.ms", "5", NULL};
    kn__fault_arm(KN__FP_READER_BATCH_ALLOC, 3);
    kn__fault_arm(KN__FP_READER_QUEUE_ALLOC, 1);
    kn_reader_t *r = reader_with(s, NULL, extra);
    run_t run = {0};
    poll_until(r, &run, true, 0, 90000);
    /* The caught-up event that found no memory comes with the shard's next empty read. */
    int64_t until = now_ms() + 3000;
    while (run.caught_up < 2 && now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    assert_int_equal(run.caught_up, 2);
    int left = kn__fault_left(KN__FP_READER_BATCH_ALLOC) + kn__fault_left(KN__FP_READER_QUEUE_ALLOC);
    kn__fault_arm(KN__FP_READER_BATCH_ALLOC, 0);
    kn__fault_arm(KN__FP_READER_QUEUE_ALLOC, 0);
    print_message("nomem: %zu records, %d injected failures unused\n", run.n, left);
    assert_int_equal(left, 0);
    check_exact(&run, recs, n);
    check_key_order(&run, 20);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
}

/*
 * A credential source that fails for a while (a credential_process that
 * exits 1 while a marker file exists, after the credentials it gave have
 * expired): the reads that meet KN_ERR_CREDENTIALS (counted as retries) are
 * tried again with backoff instead of ending their shards, and every record
 * arrives. (kinesalite does not check expiry, so reads with the expired
 * credentials may still succeed in between; a shard error is what must not
 * happen.)
 */
static void test_credential_outage_is_ridden_out(void **state)
{
    server_t *s = *state;
    create_stream(s, "credout", 2);
    char home[] = "/tmp/kn-credout-XXXXXX";
    assert_non_null(mkdtemp(home));
    char path[512], marker[512], cmd[2048];
    snprintf(path, sizeof(path), "%s/creds.sh", home);
    snprintf(marker, sizeof(marker), "%s/broken", home);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    /* Credentials that expire 3 s after they are handed out. */
    fprintf(f, "#!/bin/sh\n"
               "if [ -e '%s' ]; then echo 'credential source down' >&2; exit 1; fi\n"
               "exp=$(date -u -d '+3 seconds' +%%Y-%%m-%%dT%%H:%%M:%%SZ)\n"
               "printf '{\"Version\":1,\"AccessKeyId\":\"AKIDCREDOUT\",\"SecretAccessKey\":\"s\","
               "\"SessionToken\":\"t\",\"Expiration\":\"%%s\"}' \"$exp\"\n",
            marker);
    fclose(f);
    snprintf(cmd, sizeof(cmd),
             "chmod +x '%s' && mkdir -p '%s/.aws' && printf '[default]\\ncredential_process = %s\\n' > "
             "'%s/.aws/config'",
             path, home, path, home);
    assert_int_equal(system(cmd), 0);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    setenv("HOME", home, 1);
    setenv("AWS_EC2_METADATA_DISABLED", "true", 1);

    int n = 400;
    put_t *recs = calloc((size_t)n, sizeof(put_t));
    produce(s, recs, 0, 200, 10, NULL); /* the producer has static keys */
    const char *chain[] = {"aws.access.key.id", "", "aws.secret.access.key", "", "aws.retry.base.ms", "50",
                           "aws.retry.max.backoff.ms", "500", "aws.retry.max.attempts", "2", NULL};
    kn_reader_t *r = reader_with(s, NULL, chain);
    run_t run = {0};
    poll_until(r, &run, true, 200, 60000);
    /* The source goes down; the credentials the reader holds run out. */
    f = fopen(marker, "w");
    assert_non_null(f);
    fclose(f);
    produce(s, recs, 200, n, 10, NULL);
    int64_t until = now_ms() + 5000;
    while (now_ms() < until) {
        const kn_reader_msg_t *m = kn_reader_poll(r, 100);
        if (m)
            take(&run, m);
    }
    int64_t retries = kn_reader_stat(r, KN_READER_STAT_RETRIES);
    size_t during = run.n;
    assert_int_equal(run.errors, 0);
    assert_true(retries > 0);
    /* Back up: everything put meanwhile arrives. */
    assert_int_equal(unlink(marker), 0);
    poll_until(r, &run, false, (size_t)n, 60000);
    print_message("credout: %zu records before the outage ended, %lld retries, %zu in all\n", during,
                  (long long)retries, run.n);
    assert_int_equal(run.errors, 0);
    check_exact(&run, recs, n);
    kn_reader_destroy(r);
    run_free(&run);
    free(recs);
    if (old_home)
        setenv("HOME", old_home, 1);
    free(old_home);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    assert_int_equal(system(cmd), 0);
}

/* The reader's fd is readable when messages wait. */
static void test_fd_and_destroy_while_reading(void **state)
{
    server_t *s = *state;
    create_stream(s, "fd", 2);
    put_t recs[100];
    memset(recs, 0, sizeof(recs));
    produce(s, recs, 0, 100, 10, NULL);
    kn_reader_t *r = reader_with(s, NULL, NULL);
    int fd = kn_reader_fd(r);
    assert_true(fd >= 0);
    fd_set rf;
    FD_ZERO(&rf);
    FD_SET(fd, &rf);
    struct timeval tv = {10, 0};
    assert_int_equal(select(fd + 1, &rf, NULL, NULL, &tv), 1);
    assert_non_null(kn_reader_poll(r, 0));
    /* Destroy with reads in flight and messages unserved: no hang, no leak. */
    int64_t t0 = now_ms();
    kn_reader_destroy(r);
    assert_true(now_ms() - t0 < 5000);
}

/*
 * Two readers on one shared client: destroying one while its reads are in
 * flight leaves the other (and the client) working; the client outlives both.
 */
static void test_shared_client(void **state)
{
    server_t *s = *state;
    create_stream(s, "shared", 2);
    put_t recs[200];
    memset(recs, 0, sizeof(recs));
    produce(s, recs, 0, 200, 10, NULL);
    kn_conf_t *conf = base_conf(s);
    char err[512];
    kn_reader_t *a = kn_t_reader_new_on(s->client, conf, s->stream, NULL, NULL, err, sizeof(err));
    kn_reader_t *b = kn_t_reader_new_on(s->client, conf, s->stream, NULL, NULL, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(kn_reader_poll(a, 5000));
    kn_reader_destroy(a);
    run_t run = {0};
    poll_until(b, &run, true, 0, 30000);
    check_exact(&run, recs, 200);
    kn_reader_destroy(b);
    run_free(&run);
    /* The client still works. */
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__shard_list_t list = {0};
    assert_int_equal(kn__kinesis_list_shards(s->client, &ref, NULL, &list, &e), KN_ERR_OK);
    kn__shard_list_free(&list);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_input(void **state)
{
    server_t *s = *state;
    create_stream(s, "bad", 2);
    kn_conf_t *conf = base_conf(s);
    char err[1024];
    kn_error_t *e = kn_error_new();

    /* Unknown stream: NOT_FOUND naming the stream. */
    assert_null(kn_t_reader_new(conf, "no-such-stream-knread", NULL, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "no-such-stream-knread"));
    print_message("unknown stream: %s\n", err);

    /* Unknown shard. */
    const char *ids[] = {"shardId-000000000099"};
    kn_reader_opts_t o = {.struct_size = sizeof(kn_reader_opts_t), .shard_ids = ids, .shard_count = 1};
    assert_null(kn_t_reader_new(conf, s->stream, &o, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_NOT_FOUND);
    assert_non_null(strstr(err, "shardId-000000000099"));

    /* NULL and empty arguments. */
    assert_null(kn_t_reader_new(conf, NULL, NULL, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    assert_null(kn_t_reader_new(conf, "", NULL, NULL, err, sizeof(err)));
    assert_null(kn_t_reader_new_on(NULL, conf, s->stream, NULL, e, NULL, 0));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    const char *nullid[] = {NULL};
    kn_reader_opts_t o2 = {.struct_size = sizeof(kn_reader_opts_t), .shard_ids = nullid, .shard_count = 1};
    assert_null(kn_t_reader_new(conf, s->stream, &o2, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);

    /* Bad positions. */
    kn_reader_opts_t o3 = {.struct_size = sizeof(kn_reader_opts_t), .start = {.type = (kn_position_type_t)99}};
    assert_null(kn_t_reader_new(conf, s->stream, &o3, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    kn_reader_opts_t o4 = {.struct_size = sizeof(kn_reader_opts_t), .start = {.type = KN_POS_AT_SEQUENCE_NUMBER, .sequence_number = "123"}};
    assert_null(kn_t_reader_new(conf, s->stream, &o4, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "exactly one shard"));
    const char *one[] = {"shardId-000000000000"};
    kn_reader_opts_t o5 = {.struct_size = sizeof(kn_reader_opts_t), .shard_ids = one, .shard_count = 1,
                           .start = {.type = KN_POS_AFTER_SEQUENCE_NUMBER, .sequence_number = "12x"}};
    assert_null(kn_t_reader_new(conf, s->stream, &o5, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    kn_reader_opts_t o6 = {.struct_size = sizeof(kn_reader_opts_t), .start = {.type = KN_POS_AT_TIMESTAMP, .timestamp_ms = -5}};
    assert_null(kn_t_reader_new(conf, s->stream, &o6, e, err, sizeof(err)));
    kn_reader_opts_t o7 = {.struct_size = sizeof(kn_reader_opts_t), .stop_at_ms = -1};
    assert_null(kn_t_reader_new(conf, s->stream, &o7, e, err, sizeof(err)));
    /* Options not started from KN_READER_OPTS_INIT (struct_size unset): refused, saying how to fix it. */
    kn_reader_opts_t o9 = {.raw = true};
    assert_null(kn_t_reader_new(conf, s->stream, &o9, e, err, sizeof(err)));
    assert_int_equal(kn_error_code(e), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err, "KN_READER_OPTS_INIT"));

    /*
     * A sequence number the service rejects (kinesalite: it encodes another shard; moto takes any
     * number): a SHARD_ERROR naming the shard, then at-end.
     */
    if (s == &kinesalite) {
        kn_reader_opts_t o8 = {.struct_size = sizeof(kn_reader_opts_t), .shard_ids = one, .shard_count = 1,
                               .start = {.type = KN_POS_AT_SEQUENCE_NUMBER, .sequence_number = "1"}};
        kn_reader_t *r = kn_t_reader_new(conf, s->stream, &o8, e, err, sizeof(err));
        assert_non_null(r);
        run_t run = {0};
        poll_until(r, &run, true, 0, 30000);
        assert_int_equal(run.errors, 1);
        assert_non_null(strstr(run.last_error, "shardId-000000000000"));
        print_message("bad sequence number: %s\n", run.last_error);
        kn_reader_destroy(r);
        run_free(&run);
    }

    /* Bad properties fail at kn_conf_set, naming themselves. */
    assert_int_equal(kn_conf_set(conf, "consumer.max.records", "0", err, sizeof(err)), KN_ERR_CONF_INVALID);
    assert_non_null(strstr(err, "consumer.max.records"));
    assert_int_equal(kn_conf_set(conf, "maxRecords", "20000", err, sizeof(err)), KN_ERR_CONF_INVALID);
    assert_int_equal(kn_conf_set(conf, "idleTimeBetweenReadsInMillis", "250", err, sizeof(err)), KN_ERR_OK);

    /* NULL handles. */
    kn_reader_destroy(NULL);
    assert_null(kn_reader_poll(NULL, 0));
    assert_false(kn_reader_at_end(NULL));
    assert_int_equal(kn_reader_fd(NULL), -1);
    assert_int_equal(kn_reader_stat(NULL, KN_READER_STAT_RECORDS), -1);
    assert_null(kn_reader_stat_name(KN_READER_STAT__COUNT));
    assert_string_equal(kn_reader_stat_name(KN_READER_STAT_THROTTLES), "throttles");
    assert_string_equal(kn_reader_stat_name(KN_READER_STAT_IDLE_READS), "idle_reads");
    assert_null(kn_reader_msg_partition_key(NULL, NULL));
    kn_error_destroy(e);
    kn_conf_destroy(conf);
}

#define ON(server, fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &server)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        ON(kinesalite, test_plain_records_read_back_exactly),
        ON(kinesalite, test_aggregated_records_read_back_exactly),
        ON(kinesalite, test_zstd_aggregate_scope_read_back_exactly),
        ON(kinesalite, test_gzip_record_scope_read_back_exactly),
        ON(kinesalite, test_many_shards),
        ON(moto, test_plain_records_read_back_exactly),
        ON(moto, test_aggregated_records_read_back_exactly),
        ON(kinesalite, test_raw_mode),
        ON(kinesalite, test_out_of_range_sub_records_delivered),
        ON(kinesalite, test_start_positions),
        ON(kinesalite, test_explicit_shard_selection),
        ON(kinesalite, test_split_and_merge_then_read),
        ON(kinesalite, test_split_and_merge_while_reading),
        ON(kinesalite, test_prefetch_bound_with_slow_polling),
        ON(kinesalite, test_answers_sized_to_the_budget),
        ON(kinesalite, test_room_goes_to_waiting_shards_in_turn),
        ON(kinesalite, test_idle_reads_then_new_records),
        ON(kinesalite, test_single_reader_gives_back_its_bytes_at_destroy),
        ON(kinesalite, test_shared_bound_untouched_after_destroy),
        ON(moto, test_idle_reads_then_new_records),
        ON(kinesalite, test_too_large_answer_asks_for_fewer),
        ON(kinesalite, test_allocation_failures_lose_nothing),
        ON(kinesalite, test_credential_outage_is_ridden_out),
        ON(kinesalite, test_fd_and_destroy_while_reading),
        ON(kinesalite, test_shared_client),
        ON(kinesalite, test_bad_input),
        ON(moto, test_bad_input),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("reader", tests, NULL, NULL);
}
