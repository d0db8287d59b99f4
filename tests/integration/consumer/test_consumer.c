/*
 * The lease-holding consumer (<kinesis/consumer.h>) against kinesalite and
 * dynalite, in one process: every record processed once with the
 * producer's key, data, shard and sequence numbers; checkpoints in the lease
 * table; a restart resuming from them with nothing delivered twice; leases
 * released at shutdown; two workers sharing the shards; processor errors
 * retried with the same batch; checkpoint validation; bad input refused with
 * a message naming it.
 */
#include <json-c/json.h>
#include <stdatomic.h>

#include "consumer_util.h"

static server_t kinesalite = {"kinesalite", "KN_TEST_KINESALITE_URL", NULL, "", NULL};

static void app_name(char *out, size_t size, const char *tag) { unique_name(out, size, tag); }

/* Every record of recs[0..n) processed exactly once, with the producer's attributes. */
static void check_once(app_t *a, const put_t *recs, int n)
{
    pthread_mutex_lock(&a->lock);
    check_exact(&a->run, recs, n);
    check_key_order(&a->run, 7);
    pthread_mutex_unlock(&a->lock);
}

/* The last record put to each shard, as checkpointed. */
static void check_checkpoints(const server_t *s, const char *table, const put_t *recs, int n)
{
    size_t nl = 0;
    kn__lease_t *v = leases_of(s, table, &nl);
    assert_true(nl > 0);
    for (size_t i = 0; i < nl; i++) {
        const put_t *last = NULL;
        for (int j = 0; j < n; j++)
            if (!strcmp(recs[j].shard, v[i].key) &&
                (!last || kn__checkpoint_cmp(recs[j].seq, recs[j].sub, last->seq, last->sub) > 0))
                last = &recs[j];
        if (!last)
            continue;
        if (strcmp(v[i].checkpoint, last->seq) != 0 || v[i].checkpoint_sub != last->sub)
            fail_msg("lease %s: checkpoint %s/%llu, expected %s/%llu", v[i].key, v[i].checkpoint,
                     (unsigned long long)v[i].checkpoint_sub, last->seq,
                     (unsigned long long)last->sub);
    }
    kn__leases_free(v, nl);
}

static void test_consumes_checkpoints_and_resumes(void **state)
{
    server_t *s = *state;
    create_stream(s, "basic", 2);
    char appname[128];
    app_name(appname, sizeof(appname), "app");
    enum { N1 = 300, N2 = 120 };
    put_t *recs = calloc(N1 + N2, sizeof(*recs));
    produce(s, recs, 0, N1, 7, NULL);

    app_t a;
    app_init(&a);
    kn_consumer_t *c = consumer_start(s, appname, "worker-1", &a, NULL);
    wait_records(&a, N1, 60000);
    int64_t deadline = now_ms() + 20000;
    while (!kn_consumer_caught_up(c) && now_ms() < deadline)
        usleep(20000);
    assert_true(kn_consumer_caught_up(c));
    check_once(&a, recs, N1);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD), 2);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_RECORDS), N1);
    assert_true(kn_consumer_stat(c, KN_CONSUMER_STAT_CHECKPOINTS) >= 2);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_CREATED), 2);
    check_checkpoints(s, appname, recs, N1);
    /* Shutdown releases the leases (no owner left), after shutdown_requested. */
    assert_int_equal(kn_consumer_shutdown(c, 20000), KN_ERR_OK);
    assert_int_equal(a.shutdowns, 2);
    assert_int_equal(a.closes, 2);
    assert_int_equal(a.lost, 0);
    size_t nl = 0;
    kn__lease_t *v = leases_of(s, appname, &nl);
    assert_int_equal(nl, 2);
    for (size_t i = 0; i < nl; i++)
        assert_null(v[i].owner);
    kn__leases_free(v, nl);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_RELEASED), 2);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);

    /* A new worker resumes from the checkpoints: only the new records. */
    produce(s, recs, N1, N1 + N2, 7, NULL);
    app_t b;
    app_init(&b);
    c = consumer_start(s, appname, "worker-2", &b, NULL);
    wait_records(&b, N2, 60000);
    usleep(500000); /* anything delivered twice would come now */
    pthread_mutex_lock(&b.lock);
    assert_int_equal(b.run.n, N2);
    for (size_t i = 0; i < b.run.n; i++)
        assert_true(b.run.v[i].idx >= N1);
    pthread_mutex_unlock(&b.lock);
    /* Tenures began at the checkpoints the first worker left. */
    for (int i = 0; i < b.tenures; i++)
        assert_false(kn__checkpoint_is_sentinel(b.states[i]->start_ck));
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    check_checkpoints(s, appname, recs, N1 + N2);
    delete_table(s, appname);
    app_free(&a);
    app_free(&b);
    free(recs);
}

static void test_two_workers_share_the_shards(void **state)
{
    server_t *s = *state;
    create_stream(s, "share", 4);
    char appname[128];
    app_name(appname, sizeof(appname), "share");
    enum { N = 400 };
    put_t *recs = calloc(N, sizeof(*recs));
    app_t a, b;
    app_init(&a);
    app_init(&b);
    kn_consumer_t *c1 = consumer_start(s, appname, "worker-a", &a, NULL);
    kn_consumer_t *c2 = consumer_start(s, appname, "worker-b", &b, NULL);
    /* Balanced: two leases each, within a few scans and handoffs. */
    int64_t deadline = now_ms() + 20000;
    while (now_ms() < deadline && (kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD) != 2 ||
                                   kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD) != 2))
        usleep(50000);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD), 2);
    assert_int_equal(kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD), 2);
    produce(s, recs, 0, N, 7, NULL);
    deadline = now_ms() + 60000;
    while (app_count(&a) + app_count(&b) < N && now_ms() < deadline)
        usleep(20000);
    usleep(500000);
    /* Together: every record once. */
    app_t all;
    app_init(&all);
    pthread_mutex_lock(&a.lock);
    pthread_mutex_lock(&b.lock);
    all.run.n = a.run.n + b.run.n;
    all.run.v = calloc(all.run.n + 1, sizeof(rec_t));
    memcpy(all.run.v, a.run.v, a.run.n * sizeof(rec_t));
    memcpy(all.run.v + a.run.n, b.run.v, b.run.n * sizeof(rec_t));
    assert_true(a.run.n > 0 && b.run.n > 0);
    pthread_mutex_unlock(&b.lock);
    pthread_mutex_unlock(&a.lock);
    check_exact(&all.run, recs, N);
    app_free(&all);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    app_free(&b);
    free(recs);
}

static void test_failed_batches_are_retried(void **state)
{
    server_t *s = *state;
    create_stream(s, "retry", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "retry");
    enum { N = 50 };
    put_t *recs = calloc(N, sizeof(*recs));
    produce(s, recs, 0, N, 7, NULL);
    app_t a;
    app_init(&a);
    a.fail_first = 3;
    const char *extra[] = {"consumer.processor.retry.ms", "50", NULL};
    kn_consumer_t *c = consumer_start(s, appname, NULL, &a, extra);
    wait_records(&a, N, 30000);
    usleep(300000);
    check_once(&a, recs, N);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_PROCESS_ERRORS), 3);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    free(recs);
}

/* kn_checkpoint_at's validation, and checkpointers outside their callback. */
typedef struct ckapp_s {
    app_t base;
    kn_err_t after_last, before_ck, bad_seq, ok_at, again;
    kn_checkpointer_t *kept;
    bool done;
} ckapp_t;

static kn_err_t ck_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    ckapp_t *a = app;
    (void)state;
    if (a->done || kn_batch_count(b) < 2)
        return KN_ERR_OK;
    kn_error_t e = {0};
    char bigger[160];
    snprintf(bigger, sizeof(bigger), "%s0", kn_batch_sequence_number(b, kn_batch_count(b) - 1));
    a->after_last = kn_checkpoint_at(cp, bigger, 0, &e);
    a->bad_seq = kn_checkpoint_at(cp, "12ab", 0, &e);
    a->ok_at = kn_checkpoint_at(cp, kn_batch_sequence_number(b, 1), kn_batch_sub_sequence(b, 1), &e);
    a->before_ck = kn_checkpoint_at(cp, kn_batch_sequence_number(b, 0), kn_batch_sub_sequence(b, 0), &e);
    a->again = kn_checkpoint(cp, &e);
    a->kept = cp;
    a->done = true;
    return KN_ERR_OK;
}

static void test_checkpoint_validation(void **state)
{
    server_t *s = *state;
    create_stream(s, "ckval", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "ckval");
    put_t *recs = calloc(20, sizeof(*recs));
    produce(s, recs, 0, 20, 20, (const char *const[]){"producer.aggregation.enabled", "false", NULL});
    ckapp_t a = {0};
    app_init(&a.base);
    kn_conf_t *conf = consumer_conf(s, appname, NULL, NULL);
    kn_processor_t p = KN_PROCESSOR_INIT;
    p.process_records = ck_process;
    kn_error_t e = {0};
    kn_consumer_t *c = kn_consumer_new(conf, s->stream, &p, &a, &e);
    kn_conf_destroy(conf);
    assert_non_null(c);
    assert_int_equal(kn_consumer_start(c, &e), KN_ERR_OK);
    int64_t deadline = now_ms() + 30000;
    while (!a.done && now_ms() < deadline)
        usleep(20000);
    assert_true(a.done);
    assert_int_equal(a.after_last, KN_ERR_INVALID_ARG);
    assert_int_equal(a.bad_seq, KN_ERR_INVALID_ARG);
    assert_int_equal(a.ok_at, KN_ERR_OK);
    assert_int_equal(a.before_ck, KN_ERR_INVALID_ARG);
    assert_int_equal(a.again, KN_ERR_OK);
    /* Outside its callback a checkpointer refuses. */
    kn_err_t rc = kn_checkpoint(a.kept, &e);
    assert_int_equal(rc, KN_ERR_STATE);
    assert_non_null(strstr(e.message, "only inside the callback"));
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a.base);
    free(recs);
}

static void test_bad_input_is_named(void **state)
{
    server_t *s = *state;
    char appname[128];
    app_name(appname, sizeof(appname), "bad");
    kn_processor_t p = test_processor();
    kn_error_t e = {0};
    /* No application name. */
    kn_conf_t *conf = base_conf(s);
    assert_null(kn_consumer_new(conf, "some-stream", &p, NULL, &e));
    assert_int_equal(e.code, KN_ERR_CONF_INVALID);
    assert_non_null(strstr(e.message, "consumer.application.name"));
    kn_conf_destroy(conf);
    /* A processor not made from KN_PROCESSOR_INIT, or without process_records. */
    conf = consumer_conf(s, appname, NULL, NULL);
    kn_processor_t raw = {0};
    raw.process_records = p_process;
    assert_null(kn_consumer_new(conf, "some-stream", &raw, NULL, &e));
    assert_int_equal(e.code, KN_ERR_INVALID_ARG);
    assert_non_null(strstr(e.message, "KN_PROCESSOR_INIT"));
    kn_processor_t none = KN_PROCESSOR_INIT;
    assert_null(kn_consumer_new(conf, "some-stream", &none, NULL, &e));
    assert_non_null(strstr(e.message, "process_records"));
    /* A bad initial position. */
    kn_conf_t *c2 = kn_conf_dup(conf);
    conf_set(c2, "consumer.initial.position", "YESTERDAY");
    assert_null(kn_consumer_new(c2, "some-stream", &p, NULL, &e));
    assert_non_null(strstr(e.message, "YESTERDAY"));
    kn_conf_destroy(c2);
    /* A stream that does not exist: start says so. */
    kn_consumer_t *c = kn_consumer_new(conf, "no-such-stream-here", &p, NULL, &e);
    assert_non_null(c);
    assert_int_equal(kn_consumer_start(c, &e), KN_ERR_NOT_FOUND);
    assert_non_null(strstr(e.message, "no-such-stream-here"));
    assert_int_equal(kn_consumer_start(c, &e), KN_ERR_STATE);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    kn_conf_destroy(conf);
    /* A table of that name that is not a lease table. */
    create_stream(s, "bad", 1);
    kn_conf_t *dconf = consumer_conf(s, appname, NULL, NULL);
    char err[512];
    kn_client_t *cl = kn_t_client_new(dconf, err, sizeof(err));
    assert_int_equal(kn__ddb_create_table(cl, appname, "id", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_wait_table_active(cl, appname, 30000, 100, &e), KN_ERR_OK);
    kn_client_destroy(cl);
    c = kn_consumer_new(dconf, s->stream, &p, NULL, &e);
    assert_non_null(c);
    assert_int_equal(kn_consumer_start(c, &e), KN_ERR_VALIDATION);
    assert_non_null(strstr(e.message, "not a KCL lease table"));
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    kn_conf_destroy(dconf);
    delete_table(s, appname);
}

/*
 * A split and a merge while consuming: every record once, parents before
 * children, each finished shard ended with shard_ended and SHARD_END, and
 * the finished leases deleted once their children began.
 */
static void test_split_and_merge_while_consuming(void **state)
{
    server_t *s = *state;
    create_stream(s, "reshard", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "reshard");
    enum { PER = 150, N = 3 * PER };
    put_t *recs = calloc(N, sizeof(*recs));
    app_t a;
    app_init(&a);
    kn_consumer_t *c = consumer_start(s, appname, NULL, &a, NULL);
    split_and_merge(s, recs, PER, 7);
    wait_records(&a, N, 90000);
    usleep(300000);
    pthread_mutex_lock(&a.lock);
    check_lineage(&a.run, recs, N, 7);
    assert_int_equal(a.ended, 3);
    pthread_mutex_unlock(&a.lock);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_SHARDS_ENDED), 3);
    /* Only the open shard's lease is left once the cleanup has run. */
    int64_t deadline = now_ms() + 20000;
    size_t nl = 0;
    kn__lease_t *v = NULL;
    for (;;) {
        v = leases_of(s, appname, &nl);
        if (nl == 1 || now_ms() > deadline)
            break;
        kn__leases_free(v, nl);
        usleep(200000);
    }
    if (nl != 1)
        fail_msg("%zu leases left, expected only shardId-000000000003", nl);
    assert_string_equal(v[0].key, "shardId-000000000003");
    assert_int_equal(v[0].n_parents, 2);
    kn__leases_free(v, nl);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_DELETED), 3);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    free(recs);
}

/* ------------------------------------------------------------ a table the Java KCL wrote */

static kn_client_t *ddb_client(const server_t *s)
{
    kn_conf_t *conf = consumer_conf(s, "x", NULL, NULL);
    char err[512];
    kn_client_t *cl = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    assert_non_null(cl);
    return cl;
}

static void put_json(kn_client_t *cl, const char *table, const char *json)
{
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    kn__ddb_item_t it;
    kn_error_t e = {0};
    assert_int_equal(kn__ddb_item_from_json(o, &it, "test", "Item", &e), KN_ERR_OK);
    if (kn__ddb_put_item(cl, table, &it, NULL, &e) != KN_ERR_OK)
        fail_msg("PutItem: %s", e.message);
    kn__ddb_item_clear(&it);
    json_object_put(o);
}

static void get_raw(kn_client_t *cl, const char *table, const char *key, kn__ddb_item_t *out)
{
    kn__ddb_item_t k = KN__DDB_ITEM_INIT;
    kn_error_t e = {0};
    bool found = false;
    assert_int_equal(kn__ddb_item_set_s(&k, "leaseKey", key, &e), KN_ERR_OK);
    if (kn__ddb_get_item(cl, table, &k, true, out, &found, &e) != KN_ERR_OK)
        fail_msg("GetItem: %s", e.message);
    assert_true(found);
    kn__ddb_item_clear(&k);
}

static void assert_type(const kn__ddb_item_t *it, const char *name, kn__ddb_type_t type)
{
    const kn__ddb_value_t *v = kn__ddb_item_get(it, name);
    if (!v)
        fail_msg("attribute %s missing", name);
    if (v->type != type)
        fail_msg("attribute %s is %s, expected %s", name, kn__ddb_type_name(v->type),
                 kn__ddb_type_name(type));
}

/*
 * A lease table laid out as KCL 2.x and 3.x write it (a dead Java worker's
 * lease with a sub-sequence checkpoint and 3.x attributes, a free lease, a
 * worker-metrics row): our consumer takes it over once the Java worker's
 * lease expires and continues from its checkpoint; the attributes it does
 * not write are kept, the row that is not a lease is left alone, and the
 * items it writes keep the KCL's names and types.
 */
static void test_kcl_table_is_taken_over(void **state)
{
    server_t *s = *state;
    create_stream(s, "kcl", 2);
    char appname[128];
    app_name(appname, sizeof(appname), "kcl");
    enum { N = 200 };
    put_t *recs = calloc(N, sizeof(*recs));
    produce(s, recs, 0, N, 7, NULL);
    /* The Java worker's checkpoint: the 20th record put to shard 0. */
    const put_t *ck = NULL;
    int seen = 0;
    for (int i = 0; i < N && !ck; i++)
        if (!strcmp(recs[i].shard, "shardId-000000000000") && ++seen == 20)
            ck = &recs[i];
    assert_non_null(ck);
    kn_client_t *cl = ddb_client(s);
    kn_error_t e = {0};
    assert_int_equal(kn__ddb_create_table(cl, appname, "leaseKey", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_wait_table_active(cl, appname, 30000, 100, &e), KN_ERR_OK);
    char item[2048];
    snprintf(item, sizeof(item),
             "{\"leaseKey\":{\"S\":\"shardId-000000000000\"},\"leaseOwner\":{\"S\":\"java-worker-1\"},"
             "\"leaseCounter\":{\"N\":\"4711\"},\"ownerSwitchesSinceCheckpoint\":{\"N\":\"2\"},"
             "\"checkpoint\":{\"S\":\"%s\"},\"checkpointSubSequenceNumber\":{\"N\":\"%llu\"},"
             "\"startingHashKey\":{\"S\":\"0\"},"
             "\"endingHashKey\":{\"S\":\"170141183460469231731687303715884105727\"},"
             "\"throughputKBps\":{\"N\":\"12.5\"},"
             "\"pendingCheckpoint\":{\"S\":\"%s\"},\"pendingCheckpointSubSequenceNumber\":{\"N\":\"0\"}}",
             ck->seq, (unsigned long long)ck->sub, ck->seq);
    put_json(cl, appname, item);
    put_json(cl, appname,
             "{\"leaseKey\":{\"S\":\"shardId-000000000001\"},\"leaseCounter\":{\"N\":\"0\"},"
             "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},\"checkpoint\":{\"S\":\"TRIM_HORIZON\"},"
             "\"checkpointSubSequenceNumber\":{\"N\":\"0\"}}");
    put_json(cl, appname,
             "{\"leaseKey\":{\"S\":\"java-worker-1\"},\"entityType\":{\"S\":\"WORKER_METRIC_STATS\"},"
             "\"lut\":{\"N\":\"1700000000\"},\"sts\":{\"M\":{}}}");

    app_t a;
    app_init(&a);
    int64_t t0 = now_ms();
    kn_consumer_t *c = consumer_start(s, appname, "c-worker", &a, NULL);
    /* Shard 1 is free: at once. Shard 0 once java-worker-1's lease has expired (3 s). */
    size_t want = 0;
    for (int i = 0; i < N; i++)
        if (strcmp(recs[i].shard, "shardId-000000000000") ||
            kn__checkpoint_cmp(recs[i].seq, recs[i].sub, ck->seq, ck->sub) > 0)
            want++;
    wait_records(&a, want, 30000);
    usleep(500000);
    pthread_mutex_lock(&a.lock);
    assert_int_equal(a.run.n, want);
    for (size_t i = 0; i < a.run.n; i++) {
        const rec_t *x = &a.run.v[i];
        if (!strcmp(x->shard, "shardId-000000000000"))
            assert_true(kn__checkpoint_cmp(x->seq, x->sub, ck->seq, ck->sub) > 0);
    }
    pthread_mutex_unlock(&a.lock);
    assert_true(now_ms() - t0 >= 3000); /* not before the Java worker's lease could expire */
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_TAKEN), 2);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_CREATED), 0);
    /* Our writes: KCL names and types; the rest kept. */
    kn__ddb_item_t it;
    get_raw(cl, appname, "shardId-000000000000", &it);
    assert_type(&it, "leaseKey", KN__DDB_S);
    assert_type(&it, "leaseOwner", KN__DDB_S);
    assert_type(&it, "leaseCounter", KN__DDB_N);
    assert_type(&it, "ownerSwitchesSinceCheckpoint", KN__DDB_N);
    assert_type(&it, "checkpoint", KN__DDB_S);
    assert_type(&it, "checkpointSubSequenceNumber", KN__DDB_N);
    assert_type(&it, "throughputKBps", KN__DDB_N);
    assert_type(&it, "pendingCheckpoint", KN__DDB_S);
    const char *owner = NULL;
    assert_int_equal(kn__ddb_item_get_s(&it, "leaseOwner", &owner, &e), KN_ERR_OK);
    assert_string_equal(owner, "c-worker");
    int64_t counter = 0;
    assert_int_equal(kn__ddb_item_get_int64(&it, "leaseCounter", &counter, &e), KN_ERR_OK);
    assert_true(counter > 4711);
    kn__ddb_item_clear(&it);
    get_raw(cl, appname, "java-worker-1", &it);
    assert_null(kn__ddb_item_get(&it, "leaseOwner"));
    assert_null(kn__ddb_item_get(&it, "leaseCounter"));
    kn__ddb_item_clear(&it);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    /* Released: what a Java worker takes next. */
    get_raw(cl, appname, "shardId-000000000000", &it);
    assert_null(kn__ddb_item_get(&it, "leaseOwner"));
    assert_null(kn__ddb_item_get(&it, "checkpointOwner"));
    kn__ddb_item_clear(&it);
    kn_client_destroy(cl);
    delete_table(s, appname);
    app_free(&a);
    free(recs);
}

/*
 * A processor slower than the lease (4 s per batch, failover 3 s): renewals
 * run on the I/O thread and do not wait for it, so no lease is lost and
 * nothing is processed twice.
 */
static void test_slow_processor_keeps_its_lease(void **state)
{
    server_t *s = *state;
    create_stream(s, "slow", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "slow");
    put_t *recs = calloc(60, sizeof(*recs));
    app_t a;
    app_init(&a);
    a.slow_ms = 4000;
    kn_consumer_t *c = consumer_start(s, appname, NULL, &a, NULL);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_HELD) != 1 && now_ms() < deadline)
        usleep(20000);
    int64_t t0 = now_ms();
    produce(s, recs, 0, 20, 7, NULL);
    wait_records(&a, 20, 30000);
    produce(s, recs, 20, 40, 7, NULL);
    wait_records(&a, 40, 30000);
    int64_t renewals = kn_consumer_stat(c, KN_CONSUMER_STAT_RENEWALS);
    print_message("renewals during %lld ms of slow processing: %lld\n", (long long)(now_ms() - t0),
                  (long long)renewals);
    assert_true(renewals >= 6);
    assert_int_equal(kn_consumer_stat(c, KN_CONSUMER_STAT_LEASES_LOST), 0);
    pthread_mutex_lock(&a.lock);
    assert_int_equal(a.lost, 0);
    assert_int_equal(a.tenures, 1);
    check_exact(&a.run, recs, 40);
    pthread_mutex_unlock(&a.lock);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    free(recs);
}

/* Records put before t and after; only those after reach a consumer at LATEST (started after t) or AT_TIMESTAMP t. */
static void test_initial_positions(void **state)
{
    server_t *s = *state;
    create_stream(s, "pos", 1);
    put_t *recs = calloc(60, sizeof(*recs));
    produce(s, recs, 0, 20, 7, NULL);
    usleep(1100000);
    int64_t t = wall_ms();
    usleep(1100000);
    produce(s, recs, 20, 40, 7, NULL);
    char app1[128], app2[128], ts[32];
    app_name(app1, sizeof(app1), "posts");
    app_name(app2, sizeof(app2), "poslatest");
    snprintf(ts, sizeof(ts), "%lld", (long long)t);
    app_t a, b;
    app_init(&a);
    app_init(&b);
    const char *at_ts[] = {"consumer.initial.position", "AT_TIMESTAMP", "consumer.initial.timestamp.ms", ts, NULL};
    kn_consumer_t *c1 = consumer_start(s, app1, NULL, &a, at_ts);
    const char *latest[] = {"consumer.initial.position", "LATEST", NULL};
    kn_consumer_t *c2 = consumer_start(s, app2, NULL, &b, latest);
    int64_t deadline = now_ms() + 10000;
    while ((kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD) != 1 || !kn_consumer_caught_up(c2)) &&
           now_ms() < deadline)
        usleep(50000);
    produce(s, recs, 40, 60, 7, NULL);
    wait_records(&a, 40, 30000);
    wait_records(&b, 20, 30000);
    usleep(500000);
    pthread_mutex_lock(&a.lock);
    assert_int_equal(a.run.n, 40);
    for (size_t i = 0; i < a.run.n; i++)
        assert_true(a.run.v[i].idx >= 20);
    assert_string_equal(a.states[0]->start_ck, "AT_TIMESTAMP");
    pthread_mutex_unlock(&a.lock);
    pthread_mutex_lock(&b.lock);
    assert_int_equal(b.run.n, 20);
    for (size_t i = 0; i < b.run.n; i++)
        assert_true(b.run.v[i].idx >= 40);
    assert_string_equal(b.states[0]->start_ck, "LATEST");
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    delete_table(s, app1);
    delete_table(s, app2);
    app_free(&a);
    app_free(&b);
    free(recs);
}

/* consumer.max.leases (KCL maxLeasesForWorker): a worker never holds more, the others take the rest. */
static void test_max_leases(void **state)
{
    server_t *s = *state;
    create_stream(s, "maxl", 4);
    char appname[128];
    app_name(appname, sizeof(appname), "maxl");
    app_t a, b;
    app_init(&a);
    app_init(&b);
    const char *one[] = {"consumer.max.leases", "1", NULL};
    kn_consumer_t *c1 = consumer_start(s, appname, "capped", &a, one);
    int64_t deadline = now_ms() + 5000;
    while (kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD) < 1 && now_ms() < deadline)
        usleep(50000);
    usleep(1000000); /* several scans: still one */
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD), 1);
    kn_consumer_t *c2 = consumer_start(s, appname, "free", &b, NULL);
    /* Its share is 2 (ceil(4 / 2)); the fourth, that nobody else may take, once it stays free. */
    deadline = now_ms() + 15000;
    while (kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD) != 3 && now_ms() < deadline)
        usleep(50000);
    usleep(1000000);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD), 1);
    assert_int_equal(kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD), 3);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    app_free(&b);
}

/*
 * consumer.shard.end.checkpoint=processor (the KCL's rule): a shard_ended that
 * does not checkpoint SHARD_END is called again, and the children wait; once
 * it checkpoints they are processed.
 */
static void test_shard_end_checkpoint_by_the_processor(void **state)
{
    server_t *s = *state;
    create_stream(s, "endck", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "endck");
    put_t *recs = calloc(100, sizeof(*recs));
    produce(s, recs, 0, 30, 7, NULL);
    app_t a;
    app_init(&a);
    a.no_end_checkpoint = true;
    const char *extra[] = {"consumer.shard.end.checkpoint", "processor", "consumer.processor.retry.ms", "200",
                           NULL};
    kn_consumer_t *c = consumer_start(s, appname, NULL, &a, extra);
    wait_records(&a, 30, 30000);
    kn_error_t e = {0};
    kn__stream_ref_t ref = {s->stream, NULL};
    kn__hashkey_t mid = {0x8000000000000000ULL, 0};
    assert_int_equal(kn__kinesis_split_shard(s->client, &ref, "shardId-000000000000", mid, &e), KN_ERR_OK);
    assert_int_equal(kn__kinesis_wait_active(s->client, &ref, 60000, 100, &e), KN_ERR_OK);
    produce(s, recs, 30, 60, 7, NULL);
    int64_t deadline = now_ms() + 20000;
    for (;;) {
        pthread_mutex_lock(&a.lock);
        int ended = a.ended;
        pthread_mutex_unlock(&a.lock);
        if (ended >= 3 || now_ms() > deadline)
            break;
        usleep(50000);
    }
    pthread_mutex_lock(&a.lock);
    assert_true(a.ended >= 3); /* called again and again */
    assert_int_equal(a.run.n, 30); /* the children wait */
    a.no_end_checkpoint = false;
    pthread_mutex_unlock(&a.lock);
    wait_records(&a, 60, 30000);
    pthread_mutex_lock(&a.lock);
    check_exact(&a.run, recs, 60);
    pthread_mutex_unlock(&a.lock);
    assert_true(kn_consumer_stat(c, KN_CONSUMER_STAT_PROCESS_ERRORS) >= 2);
    assert_int_equal(kn_consumer_destroy(c), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    free(recs);
}

/*
 * A processor stuck in process_records while another worker asks for its
 * shard: after consumer.handoff.timeout.ms the owner hands the lease over
 * without it, its late checkpoint is refused, and the asker goes on from the
 * last checkpoint.
 */
typedef struct stuck_s {
    app_t base;
    atomic_int stuck;      /* process_records calls that should hang */
    atomic_int refused;    /* checkpoints refused after hanging */
} stuck_t;

static kn_err_t stuck_process(void *app, void *state, const kn_batch_t *b, kn_checkpointer_t *cp)
{
    stuck_t *a = app;
    if (atomic_fetch_sub(&a->stuck, 1) > 0) {
        usleep(4000000);
        kn_error_t e = {0};
        if (kn_checkpoint(cp, &e) == KN_ERR_LEASE_LOST)
            atomic_fetch_add(&a->refused, 1);
        return KN_ERR_OK;
    }
    return p_process(app, state, b, cp);
}

static void test_stuck_owner_hands_over_after_the_timeout(void **state)
{
    server_t *s = *state;
    create_stream(s, "stuck", 2);
    char appname[128];
    app_name(appname, sizeof(appname), "stuck");
    put_t *recs = calloc(100, sizeof(*recs));
    stuck_t a = {0};
    app_init(&a.base);
    kn_conf_t *conf = consumer_conf(s, appname, "owner", (const char *const[]){"consumer.handoff.timeout.ms",
                                                                                "1000", NULL});
    kn_processor_t p = test_processor();
    p.process_records = stuck_process;
    kn_error_t e = {0};
    kn_consumer_t *c1 = kn_consumer_new(conf, s->stream, &p, &a, &e);
    kn_conf_destroy(conf);
    assert_int_equal(kn_consumer_start(c1, &e), KN_ERR_OK);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD) != 2 && now_ms() < deadline)
        usleep(50000);
    atomic_store(&a.stuck, 2); /* both shards' next batches hang */
    produce(s, recs, 0, 40, 7, NULL);
    usleep(300000);
    app_t b;
    app_init(&b);
    kn_consumer_t *c2 = consumer_start(s, appname, "asker", &b, NULL);
    deadline = now_ms() + 15000;
    while (kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD) < 1 && now_ms() < deadline)
        usleep(50000);
    assert_int_equal(kn_consumer_stat(c2, KN_CONSUMER_STAT_LEASES_HELD), 1);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HANDED), 1);
    deadline = now_ms() + 10000;
    while (atomic_load(&a.refused) < 1 && now_ms() < deadline)
        usleep(50000);
    assert_int_equal(atomic_load(&a.refused), 1); /* the stuck processor of the handed shard */
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a.base);
    app_free(&b);
    free(recs);
}

/*
 * A worker that asked for a lease and shuts down before the owner let go
 * withdraws the ask: the owner keeps the lease (no loss, no handoff).
 */
static void test_asker_withdraws_at_shutdown(void **state)
{
    server_t *s = *state;
    create_stream(s, "withdraw", 2);
    char appname[128];
    app_name(appname, sizeof(appname), "withdraw");
    put_t *recs = calloc(100, sizeof(*recs));
    app_t a;
    app_init(&a);
    a.slow_ms = 2500; /* the owner takes long to finish a batch: handoffs wait for it */
    kn_consumer_t *c1 = consumer_start(s, appname, "owner", &a, NULL);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD) != 2 && now_ms() < deadline)
        usleep(50000);
    produce(s, recs, 0, 40, 7, NULL);
    usleep(300000);
    app_t b;
    app_init(&b);
    kn_consumer_t *c2 = consumer_start(s, appname, "asker", &b, NULL);
    /* The ask is made at its first scans; the owner is busy for seconds. */
    deadline = now_ms() + 5000;
    bool asked = false;
    while (!asked && now_ms() < deadline) {
        size_t nl = 0;
        kn__lease_t *v = leases_of(s, appname, &nl);
        for (size_t i = 0; i < nl; i++)
            if (v[i].checkpoint_owner && !strcmp(v[i].owner, "asker"))
                asked = true;
        kn__leases_free(v, nl);
        usleep(50000);
    }
    assert_true(asked);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    usleep(6000000); /* the owner's batches finish; its handoff finds the ask withdrawn */
    size_t nl = 0;
    kn__lease_t *v = leases_of(s, appname, &nl);
    for (size_t i = 0; i < nl; i++) {
        assert_null(v[i].checkpoint_owner);
        if (!v[i].owner || strcmp(v[i].owner, "owner"))
            fail_msg("%s is owned by %s after the asker left", v[i].key, v[i].owner ? v[i].owner : "nobody");
    }
    kn__leases_free(v, nl);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_LOST), 0);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD), 2);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&a);
    app_free(&b);
    free(recs);
}

/*
 * consumer.processor.max.retries: a processor that keeps failing lets its
 * shard go (released, cooled off here) so another worker can take it; that
 * worker processes every record.
 */
static void test_failing_processor_lets_the_shard_go(void **state)
{
    server_t *s = *state;
    create_stream(s, "giveup", 1);
    char appname[128];
    app_name(appname, sizeof(appname), "giveup");
    put_t *recs = calloc(30, sizeof(*recs));
    produce(s, recs, 0, 30, 7, NULL);
    app_t bad, good;
    app_init(&bad);
    app_init(&good);
    bad.fail_first = 1000000;
    const char *extra[] = {"consumer.processor.max.retries", "2", "consumer.processor.retry.ms", "50", NULL};
    kn_consumer_t *c1 = consumer_start(s, appname, "bad", &bad, extra);
    int64_t deadline = now_ms() + 10000;
    while (kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_RELEASED) < 1 && now_ms() < deadline)
        usleep(20000);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_RELEASED), 1);
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_PROCESS_ERRORS), 3);
    kn_consumer_t *c2 = consumer_start(s, appname, "good", &good, NULL);
    wait_records(&good, 30, 20000);
    pthread_mutex_lock(&good.lock);
    check_exact(&good.run, recs, 30);
    pthread_mutex_unlock(&good.lock);
    /* The failing worker does not take it back while it cools off. */
    assert_int_equal(kn_consumer_stat(c1, KN_CONSUMER_STAT_LEASES_HELD), 0);
    assert_int_equal(kn_consumer_destroy(c2), KN_ERR_OK);
    assert_int_equal(kn_consumer_destroy(c1), KN_ERR_OK);
    delete_table(s, appname);
    app_free(&bad);
    app_free(&good);
    free(recs);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate_setup_teardown(test_bad_input_is_named, setup, teardown, &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_consumes_checkpoints_and_resumes, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_failed_batches_are_retried, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_checkpoint_validation, setup, teardown, &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_two_workers_share_the_shards, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_split_and_merge_while_consuming, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_kcl_table_is_taken_over, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_slow_processor_keeps_its_lease, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_initial_positions, setup, teardown, &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_max_leases, setup, teardown, &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_shard_end_checkpoint_by_the_processor, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_stuck_owner_hands_over_after_the_timeout, setup,
                                                 teardown, &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_asker_withdraws_at_shutdown, setup, teardown,
                                                 &kinesalite),
        cmocka_unit_test_prestate_setup_teardown(test_failing_processor_lets_the_shard_go, setup, teardown,
                                                 &kinesalite),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]); /* one test by name, when debugging */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
