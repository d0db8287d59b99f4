/*
 * The lease table (consumer/lease_table.c) against dynalite and moto: the
 * table created on demand and refused when its key schema is not a lease
 * table's; items exactly in the KCL's schema (names and types read back raw);
 * every conditional operation succeeding when its condition holds and
 * failing with KN_ERR_CONDITION_FAILED when it does not (a stale counter, a
 * wrong owner, a handoff by someone else); items as the Java KCL 2.x and 3.x
 * write them read correctly, rows that are not leases skipped; and the order
 * of checkpoints.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client.h"
#include "dynamodb.h"
#include "lease.h"
#include "test_new.h"
#include "testutil.h"

typedef struct server_s {
    const char *label;
    const char *env;
    kn_client_t *client;
    kn__lease_table_t *t;
    char table[128];
} server_t;

static server_t dynalite = {"dynalite", "KN_TEST_DYNALITE_URL", NULL, NULL, ""};
static server_t moto = {"moto", "KN_TEST_MOTO_URL", NULL, NULL, ""};

static int setup(void **state)
{
    server_t *s = *state;
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    const char *kv[] = {"dynamodb.endpoint", kn_test_server_url(s->env), "aws.region", "us-east-1",
                        "aws.access.key.id", "AKIDLEASETEST", "aws.secret.access.key", "lease-secret", NULL};
    for (int i = 0; kv[i]; i += 2)
        assert_int_equal(kn_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)), KN_ERR_OK);
    s->client = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!s->client)
        fail_msg("kn_client_new: %s", err);
    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->table, sizeof(s->table), "knlease-%d-%08lx-%u", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffffUL, ++seq);
    s->t = kn__lease_table_new(s->client, s->table, NULL);
    assert_non_null(s->t);
    kn_error_t e = {0};
    bool created = false;
    if (kn__lease_table_ensure(s->t, 30000, &created, &e) != KN_ERR_OK)
        fail_msg("ensure: %s", e.message);
    assert_true(created);
    return 0;
}

static int teardown(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    kn__ddb_delete_table(s->client, s->table, &e);
    kn__lease_table_destroy(s->t);
    kn_client_destroy(s->client);
    s->client = NULL;
    return 0;
}

/* ------------------------------------------------------------ waiting for a callback */

typedef struct wait_s {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    kn_error_t err;
    kn__lease_t lease;
    bool found;
    kn__lease_t *leases;
    size_t count;
} wait_t;

static void on_result(kn__lt_result_t *res, void *opaque)
{
    wait_t *w = opaque;
    pthread_mutex_lock(&w->lock);
    kn__error_copy(&w->err, &res->err);
    if (res->lease.key)
        assert_int_equal(kn__lease_copy(&w->lease, &res->lease), KN_ERR_OK);
    w->found = res->found;
    if (res->count) {
        w->leases = calloc(res->count, sizeof(kn__lease_t));
        for (size_t i = 0; i < res->count; i++)
            assert_int_equal(kn__lease_copy(&w->leases[i], &res->leases[i]), KN_ERR_OK);
        w->count = res->count;
    }
    w->done = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void w_init(wait_t *w)
{
    memset(w, 0, sizeof(*w));
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

/* Waits for the callback; returns its code. The result stays in w (w_free). */
static kn_err_t w_wait(wait_t *w, kn_err_t started)
{
    assert_int_equal(started, KN_ERR_OK);
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    return w->err.code;
}

static void w_free(wait_t *w)
{
    kn__lease_free(&w->lease);
    kn__leases_free(w->leases, w->count);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

#define OP(rc_expected, call_with_w)                                                               \
    do {                                                                                           \
        wait_t w_;                                                                                 \
        w_init(&w_);                                                                               \
        wait_t *w = &w_;                                                                           \
        kn_err_t rc_ = w_wait(w, call_with_w);                                                     \
        if (rc_ != (rc_expected))                                                                  \
            fail_msg("%s: %s, expected %s: %s", #call_with_w, kn_err2name(rc_),                    \
                     kn_err2name(rc_expected), w->err.message);                                    \
        if (last.key)                                                                              \
            kn__lease_free(&last);                                                                 \
        if (w->lease.key)                                                                          \
            assert_int_equal(kn__lease_copy(&last, &w->lease), KN_ERR_OK);                         \
        w_free(w);                                                                                 \
    } while (0)

/* The item as stored, for checking names and types. */
static void raw_item(server_t *s, const char *key, kn__ddb_item_t *out)
{
    kn__ddb_item_t k = KN__DDB_ITEM_INIT;
    kn_error_t e = {0};
    bool found = false;
    assert_int_equal(kn__ddb_item_set_s(&k, "leaseKey", key, &e), KN_ERR_OK);
    if (kn__ddb_get_item(s->client, s->table, &k, true, out, &found, &e) != KN_ERR_OK)
        fail_msg("GetItem: %s", e.message);
    assert_true(found);
    kn__ddb_item_clear(&k);
}

static void assert_attr(const kn__ddb_item_t *it, const char *name, kn__ddb_type_t type, const char *value)
{
    const kn__ddb_value_t *v = kn__ddb_item_get(it, name);
    if (!v)
        fail_msg("attribute %s is missing", name);
    if (v->type != type)
        fail_msg("attribute %s is %s, expected %s", name, kn__ddb_type_name(v->type), kn__ddb_type_name(type));
    if (value && strcmp(v->str, value) != 0)
        fail_msg("attribute %s is \"%s\", expected \"%s\"", name, v->str, value);
}

static kn__lease_t new_lease(const char *key, const char *parent)
{
    kn__lease_t l;
    memset(&l, 0, sizeof(l));
    l.key = strdup(key);
    l.checkpoint = strdup(KN__CK_TRIM_HORIZON);
    l.start_hash = strdup("0");
    l.end_hash = strdup("170141183460469231731687303715884105727");
    if (parent) {
        l.parents = calloc(1, sizeof(char *));
        l.parents[0] = strdup(parent);
        l.n_parents = 1;
    }
    return l;
}

/* ------------------------------------------------------------ tests */

/* A new lease is the item the KCL writes; a second create of the same key fails its condition. */
static void test_create_writes_the_kcl_schema(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    kn__lease_t l = new_lease("shardId-000000000007", "shardId-000000000001");
    OP(KN_ERR_OK, kn__lt_create(s->t, &l, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_create(s->t, &l, on_result, w));
    kn__ddb_item_t it;
    raw_item(s, "shardId-000000000007", &it);
    assert_attr(&it, "leaseKey", KN__DDB_S, "shardId-000000000007");
    assert_attr(&it, "leaseCounter", KN__DDB_N, "0");
    assert_attr(&it, "ownerSwitchesSinceCheckpoint", KN__DDB_N, "0");
    assert_attr(&it, "checkpoint", KN__DDB_S, "TRIM_HORIZON");
    assert_attr(&it, "checkpointSubSequenceNumber", KN__DDB_N, "0");
    assert_attr(&it, "parentShardId", KN__DDB_SS, NULL);
    assert_string_equal(kn__ddb_item_get(&it, "parentShardId")->elems[0].str, "shardId-000000000001");
    assert_attr(&it, "startingHashKey", KN__DDB_S, "0");
    assert_attr(&it, "endingHashKey", KN__DDB_S, "170141183460469231731687303715884105727");
    assert_null(kn__ddb_item_get(&it, "leaseOwner"));
    assert_null(kn__ddb_item_get(&it, "childShardIds"));
    assert_int_equal(it.count, 8);
    kn__ddb_item_clear(&it);
    kn__lease_free(&l);
    kn__lease_free(&last);
}

/* take, renew and checkpoint change exactly what they should, under exactly their conditions. */
static void test_take_renew_checkpoint(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    kn__lease_t l = new_lease("shardId-000000000000", NULL);
    OP(KN_ERR_OK, kn__lt_create(s->t, &l, on_result, w));
    /* Taking an unowned lease: the counter as seen, no owner. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_take(s->t, l.key, NULL, 5, "worker-a", on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_take(s->t, l.key, "worker-x", 0, "worker-a", on_result, w));
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, NULL, 0, "worker-a", on_result, w));
    assert_string_equal(last.owner, "worker-a");
    assert_int_equal(last.counter, 1);
    assert_int_equal(last.owner_switches, 1);
    /* Renew: counter + 1 if owner and counter match. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_renew(s->t, l.key, "worker-a", 0, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_renew(s->t, l.key, "worker-b", 1, on_result, w));
    OP(KN_ERR_OK, kn__lt_renew(s->t, l.key, "worker-a", 1, on_result, w));
    assert_int_equal(last.counter, 2);
    /* Checkpoint: sequence and sub-sequence, switches back to 0, counter + 1. */
    OP(KN_ERR_CONDITION_FAILED,
       kn__lt_checkpoint(s->t, l.key, "worker-b", 2, "49590338271490256608559692538361571095921575989136588898", 3,
                         on_result, w));
    OP(KN_ERR_OK, kn__lt_checkpoint(s->t, l.key, "worker-a", 2,
                                    "49590338271490256608559692538361571095921575989136588898", 3, on_result, w));
    assert_string_equal(last.checkpoint, "49590338271490256608559692538361571095921575989136588898");
    assert_int_equal(last.checkpoint_sub, 3);
    assert_int_equal(last.owner_switches, 0);
    assert_int_equal(last.counter, 3);
    kn__ddb_item_t it;
    raw_item(s, l.key, &it);
    assert_attr(&it, "checkpointSubSequenceNumber", KN__DDB_N, "3");
    assert_attr(&it, "leaseOwner", KN__DDB_S, "worker-a");
    assert_attr(&it, "leaseCounter", KN__DDB_N, "3");
    kn__ddb_item_clear(&it);
    /* Another worker takes it over (as after expiry): conditioned on the owner and counter it saw. */
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, "worker-a", 3, "worker-b", on_result, w));
    assert_string_equal(last.owner, "worker-b");
    assert_int_equal(last.owner_switches, 1);
    /* The old owner's renewals and checkpoints fail from now on. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_renew(s->t, l.key, "worker-a", 3, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_checkpoint(s->t, l.key, "worker-a", 4, "1", 0, on_result, w));
    /* Read back as it is. */
    OP(KN_ERR_OK, kn__lt_get(s->t, l.key, on_result, w));
    assert_string_equal(last.owner, "worker-b");
    assert_int_equal(last.counter, 4);
    kn__lease_free(&l);
    kn__lease_free(&last);
}

/*
 * The KCL 3.x graceful handoff: the asker becomes leaseOwner with the old
 * owner as checkpointOwner and the counter left alone; the old owner keeps
 * renewing and checkpointing on its counter, then lets go; only then may the
 * new owner write.
 */
static void test_handoff(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    kn__lease_t l = new_lease("shardId-000000000003", NULL);
    OP(KN_ERR_OK, kn__lt_create(s->t, &l, on_result, w));
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, NULL, 0, "worker-a", on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_handoff_ask(s->t, l.key, "worker-x", "worker-b", on_result, w));
    OP(KN_ERR_OK, kn__lt_handoff_ask(s->t, l.key, "worker-a", "worker-b", on_result, w));
    assert_string_equal(last.owner, "worker-b");
    assert_string_equal(last.checkpoint_owner, "worker-a");
    assert_int_equal(last.counter, 1);
    kn__ddb_item_t it;
    raw_item(s, l.key, &it);
    assert_attr(&it, "checkpointOwner", KN__DDB_S, "worker-a");
    assert_attr(&it, "leaseOwner", KN__DDB_S, "worker-b");
    kn__ddb_item_clear(&it);
    /* A second ask while one is in progress fails. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_handoff_ask(s->t, l.key, "worker-b", "worker-c", on_result, w));
    /* The old owner renews and checkpoints with its counter; the new owner cannot write yet. */
    OP(KN_ERR_OK, kn__lt_renew(s->t, l.key, "worker-a", 1, on_result, w));
    assert_int_equal(last.counter, 2);
    assert_string_equal(last.owner, "worker-b"); /* what tells the old owner a handoff was asked */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_renew(s->t, l.key, "worker-b", 2, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_checkpoint(s->t, l.key, "worker-b", 2, "99999", 0, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_release(s->t, l.key, "worker-a", 2, on_result, w));
    OP(KN_ERR_OK, kn__lt_checkpoint(s->t, l.key, "worker-a", 2, "12345", 0, on_result, w));
    assert_int_equal(last.counter, 3);
    assert_string_equal(last.checkpoint, "12345");
    OP(KN_ERR_CONDITION_FAILED, kn__lt_handoff_done(s->t, l.key, "worker-c", on_result, w));
    OP(KN_ERR_OK, kn__lt_handoff_done(s->t, l.key, "worker-a", on_result, w));
    assert_null(last.checkpoint_owner);
    assert_string_equal(last.owner, "worker-b");
    assert_int_equal(last.counter, 4);
    /* Done: the old owner can no longer write; the new one can. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_checkpoint(s->t, l.key, "worker-a", 4, "99999", 0, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_handoff_done(s->t, l.key, "worker-a", on_result, w));
    OP(KN_ERR_OK, kn__lt_renew(s->t, l.key, "worker-b", 4, on_result, w));
    /* A take of a lease whose previous owner died in the middle of a handoff clears it. */
    OP(KN_ERR_OK, kn__lt_handoff_ask(s->t, l.key, "worker-b", "worker-c", on_result, w));
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, "worker-c", 5, "worker-d", on_result, w));
    assert_null(last.checkpoint_owner);
    assert_string_equal(last.owner, "worker-d");
    assert_int_equal(last.counter, 6);
    OP(KN_ERR_OK, kn__lt_shard_end(s->t, l.key, "worker-d", 6, NULL, 0, on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_handoff_ask(s->t, l.key, "worker-d", "worker-e", on_result, w));
    kn__lease_free(&l);
    kn__lease_free(&last);
}

/* release, shard end, delete. */
static void test_release_shard_end_delete(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    kn__lease_t l = new_lease("shardId-000000000004", NULL);
    OP(KN_ERR_OK, kn__lt_create(s->t, &l, on_result, w));
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, NULL, 0, "worker-a", on_result, w));
    OP(KN_ERR_CONDITION_FAILED, kn__lt_release(s->t, l.key, "worker-b", 1, on_result, w));
    OP(KN_ERR_OK, kn__lt_release(s->t, l.key, "worker-a", 1, on_result, w));
    assert_null(last.owner);
    assert_int_equal(last.counter, 2);
    kn__ddb_item_t it;
    raw_item(s, l.key, &it);
    assert_null(kn__ddb_item_get(&it, "leaseOwner"));
    kn__ddb_item_clear(&it);
    /* Not finished: no delete. */
    OP(KN_ERR_CONDITION_FAILED, kn__lt_delete(s->t, l.key, on_result, w));
    OP(KN_ERR_OK, kn__lt_take(s->t, l.key, NULL, 2, "worker-b", on_result, w));
    const char *kids[] = {"shardId-000000000005", "shardId-000000000006"};
    OP(KN_ERR_OK, kn__lt_shard_end(s->t, l.key, "worker-b", 3, kids, 2, on_result, w));
    assert_string_equal(last.checkpoint, "SHARD_END");
    assert_int_equal(last.n_children, 2);
    assert_true(kn__lease_finished(&last));
    raw_item(s, l.key, &it);
    assert_attr(&it, "childShardIds", KN__DDB_SS, NULL);
    assert_attr(&it, "checkpoint", KN__DDB_S, "SHARD_END");
    kn__ddb_item_clear(&it);
    OP(KN_ERR_OK, kn__lt_delete(s->t, l.key, on_result, w));
    OP(KN_ERR_OK, kn__lt_get(s->t, l.key, on_result, w));
    kn__lease_free(&l);
    kn__lease_free(&last);
}

/* Put a raw item (as another implementation would write it). */
static void put_raw(server_t *s, const char *json)
{
    json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    kn__ddb_item_t it;
    kn_error_t e = {0};
    assert_int_equal(kn__ddb_item_from_json(o, &it, "test", "Item", &e), KN_ERR_OK);
    if (kn__ddb_put_item(s->client, s->table, &it, NULL, &e) != KN_ERR_OK)
        fail_msg("PutItem: %s", e.message);
    kn__ddb_item_clear(&it);
    json_object_put(o);
}

/*
 * Items as the Java KCL 2.x and 3.x write them (with attributes we never
 * write, a sub-sequence number, a plain-string parent as KCL 1.x had it) are
 * read as leases; KCL 3.x's worker-metrics and leader rows are skipped.
 */
static void test_scan_reads_kcl_items_and_skips_other_rows(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    put_raw(s, "{\"leaseKey\":{\"S\":\"shardId-000000000010\"},\"leaseOwner\":{\"S\":\"java-worker-1\"},"
               "\"leaseCounter\":{\"N\":\"4711\"},\"ownerSwitchesSinceCheckpoint\":{\"N\":\"2\"},"
               "\"checkpoint\":{\"S\":\"49590338271490256608559692538361571095921575989136588898\"},"
               "\"checkpointSubSequenceNumber\":{\"N\":\"17\"},"
               "\"pendingCheckpoint\":{\"S\":\"49590338271490256608559692538361571095921575989136589999\"},"
               "\"pendingCheckpointSubSequenceNumber\":{\"N\":\"0\"},"
               "\"parentShardId\":{\"SS\":[\"shardId-000000000001\",\"shardId-000000000002\"]},"
               "\"startingHashKey\":{\"S\":\"0\"},\"endingHashKey\":{\"S\":\"99\"}}");
    put_raw(s, "{\"leaseKey\":{\"S\":\"shardId-000000000011\"},\"leaseCounter\":{\"N\":\"0\"},"
               "\"checkpoint\":{\"S\":\"SHARD_END\"},\"checkpointSubSequenceNumber\":{\"N\":\"0\"},"
               "\"ownerSwitchesSinceCheckpoint\":{\"N\":\"0\"},\"childShardIds\":{\"SS\":[\"shardId-000000000012\"]},"
               "\"parentShardId\":{\"S\":\"shardId-000000000009\"},"
               "\"throughputKBps\":{\"N\":\"12.5\"},\"entityType\":{\"S\":\"LEASE\"}}");
    put_raw(s, "{\"leaseKey\":{\"S\":\"worker-metrics-java-worker-1\"},\"entityType\":{\"S\":\"WORKER_METRIC_STATS\"},"
               "\"wid\":{\"S\":\"java-worker-1\"}}");
    put_raw(s, "{\"leaseKey\":{\"S\":\"leader\"},\"entityType\":{\"S\":\"LEADER\"}}");
    wait_t ws;
    w_init(&ws);
    assert_int_equal(w_wait(&ws, kn__lt_scan(s->t, on_result, &ws)), KN_ERR_OK);
    assert_int_equal(ws.count, 2);
    for (size_t i = 0; i < ws.count; i++) {
        const kn__lease_t *l = &ws.leases[i];
        if (!strcmp(l->key, "shardId-000000000010")) {
            assert_string_equal(l->owner, "java-worker-1");
            assert_int_equal(l->counter, 4711);
            assert_int_equal(l->owner_switches, 2);
            assert_int_equal(l->checkpoint_sub, 17);
            assert_int_equal(l->n_parents, 2);
            assert_string_equal(l->end_hash, "99");
            assert_false(kn__lease_finished(l));
            assert_true(kn__lease_started(l));
        } else {
            assert_string_equal(l->key, "shardId-000000000011");
            assert_null(l->owner);
            assert_true(kn__lease_finished(l));
            assert_int_equal(l->n_parents, 1);
            assert_string_equal(l->parents[0], "shardId-000000000009");
            assert_int_equal(l->n_children, 1);
        }
    }
    w_free(&ws);
    /* Our writes keep the attributes we do not know about. */
    OP(KN_ERR_OK, kn__lt_renew(s->t, "shardId-000000000010", "java-worker-1", 4711, on_result, w));
    kn__ddb_item_t it;
    raw_item(s, "shardId-000000000010", &it);
    assert_attr(&it, "pendingCheckpoint", KN__DDB_S, "49590338271490256608559692538361571095921575989136589999");
    assert_attr(&it, "leaseCounter", KN__DDB_N, "4712");
    kn__ddb_item_clear(&it);
    /* The blocking listing (tools) sees the same. */
    kn__lease_t *v = NULL;
    size_t n = 0;
    kn_error_t e = {0};
    assert_int_equal(kn__lease_table_list(s->t, &v, &n, &e), KN_ERR_OK);
    assert_int_equal(n, 2);
    kn__leases_free(v, n);
    kn__lease_free(&last);
}

/* A scan of many leases goes over several pages (moto and dynalite page at 1 MB: big items). */
static void test_scan_pages(void **state)
{
    server_t *s = *state;
    kn__lease_t last = {0};
    char key[64];
    static char pad[40000];
    memset(pad, 'p', sizeof(pad) - 1);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "shardId-%012d", 100 + i);
        char json[41000];
        snprintf(json, sizeof(json),
                 "{\"leaseKey\":{\"S\":\"%s\"},\"leaseCounter\":{\"N\":\"%d\"},\"checkpoint\":{\"S\":\"LATEST\"},"
                 "\"padding\":{\"S\":\"%s\"}}",
                 key, i, pad);
        put_raw(s, json);
    }
    wait_t ws;
    w_init(&ws);
    assert_int_equal(w_wait(&ws, kn__lt_scan(s->t, on_result, &ws)), KN_ERR_OK);
    assert_int_equal(ws.count, 40);
    w_free(&ws);
    kn__lease_free(&last);
}

/* A table of that name with another key is not a lease table: a clear refusal. */
static void test_wrong_key_schema_is_refused(void **state)
{
    server_t *s = *state;
    char name[160];
    snprintf(name, sizeof(name), "%s-other", s->table);
    kn_error_t e = {0};
    assert_int_equal(kn__ddb_create_table(s->client, name, "id", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_wait_table_active(s->client, name, 30000, 100, &e), KN_ERR_OK);
    kn__lease_table_t *t = kn__lease_table_new(s->client, name, NULL);
    bool created = true;
    assert_int_equal(kn__lease_table_ensure(t, 30000, &created, &e), KN_ERR_VALIDATION);
    assert_false(created);
    assert_non_null(strstr(e.message, "\"id\""));
    assert_non_null(strstr(e.message, name));
    kn__lease_table_destroy(t);
    kn__ddb_delete_table(s->client, name, &e);
    /* The table that setup made is found again, not made twice. */
    assert_int_equal(kn__lease_table_ensure(s->t, 30000, &created, &e), KN_ERR_OK);
    assert_false(created);
}

static void test_checkpoint_order(void **state)
{
    (void)state;
    assert_true(kn__checkpoint_cmp("TRIM_HORIZON", 0, "1", 0) < 0);
    assert_true(kn__checkpoint_cmp("LATEST", 0, "AT_TIMESTAMP", 0) == 0);
    assert_true(kn__checkpoint_cmp("SHARD_END", 0, "999999999999999999999999999999999999999999999999999999999", 5) > 0);
    assert_true(kn__checkpoint_cmp("9", 0, "10", 0) < 0); /* numbers, not strings */
    assert_true(kn__checkpoint_cmp("0010", 0, "10", 0) == 0);
    assert_true(kn__checkpoint_cmp("49590338271490256608559692538361571095921575989136588898", 3,
                                   "49590338271490256608559692538361571095921575989136588898", 4) < 0);
    assert_true(kn__checkpoint_cmp("49590338271490256608559692538361571095921575989136588899", 0,
                                   "49590338271490256608559692538361571095921575989136588898", 9) > 0);
    assert_true(kn__checkpoint_is_sentinel("SHARD_END"));
    assert_false(kn__checkpoint_is_sentinel("12"));
}

#define ON(server, fn) cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &server)

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_order),
        ON(dynalite, test_create_writes_the_kcl_schema),
        ON(moto, test_create_writes_the_kcl_schema),
        ON(dynalite, test_take_renew_checkpoint),
        ON(moto, test_take_renew_checkpoint),
        ON(dynalite, test_handoff),
        ON(moto, test_handoff),
        ON(dynalite, test_release_shard_end_delete),
        ON(moto, test_release_shard_end_delete),
        ON(dynalite, test_scan_reads_kcl_items_and_skips_other_rows),
        ON(moto, test_scan_reads_kcl_items_and_skips_other_rows),
        ON(dynalite, test_scan_pages),
        ON(dynalite, test_wrong_key_schema_is_refused),
        ON(moto, test_wrong_key_schema_is_refused),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("lease_table", tests, NULL, NULL);
}
