/*
 * Every DynamoDB operation in common/ops/dynamodb.c against real servers: each
 * test body runs twice, once against dynalite (KN_TEST_DYNALITE_URL) and once
 * against moto_server (KN_TEST_MOTO_URL). Covers table create/describe/
 * delete, item put/get/update/delete with and without conditions (failed
 * conditions must come back as KN_ERR_CONDITION_FAILED), every attribute type
 * round-tripping through the server, and Scan paging with Limit=1.
 */
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
#include "test_new.h"
#include "testutil.h"

typedef struct server_s {
    const char *label;
    const char *env;
    kn_client_t *client;
    char table[128]; /* created by setup, deleted by teardown */
} server_t;

static server_t dynalite = {"dynalite", "KN_TEST_DYNALITE_URL", NULL, ""};
static server_t moto = {"moto", "KN_TEST_MOTO_URL", NULL, ""};

#define CHECK(call, e) \
    do { \
        kn_err_t rc_ = (call); \
        if (rc_ != KN_ERR_OK) \
            fail_msg("%s failed: %s: %s (aws_type %s, http %d)", #call, kn_err2name(rc_), (e).message, \
                     (e).aws_type, (e).http_status); \
    } while (0)

static int setup(void **state)
{
    server_t *s = *state;
    kn_conf_t *conf = kn_conf_new();
    char err[512];
    kn_error_t e = {0};
    assert_int_equal(kn_conf_set(conf, "dynamodb.endpoint", kn_test_server_url(s->env), err, sizeof(err)),
                     KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDOPSTEST", err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", "ops-test-secret", err, sizeof(err)),
                     KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.retry.max.attempts", "3", err, sizeof(err)), KN_ERR_OK);
    s->client = kn_t_client_new(conf, err, sizeof(err));
    kn_conf_destroy(conf);
    if (!s->client)
        fail_msg("kn_client_new: %s", err);

    static unsigned seq;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(s->table, sizeof(s->table), "knops-%d-%08lx-%u", (int)getpid(),
             (unsigned long)(ts.tv_nsec ^ (long)ts.tv_sec * 2654435761u) & 0xffffffffUL, ++seq);
    CHECK(kn__ddb_create_table(s->client, s->table, "leaseKey", &e), e);
    CHECK(kn__ddb_wait_table_active(s->client, s->table, 30000, 100, &e), e);
    return 0;
}

static int teardown(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    if (s->table[0])
        kn__ddb_delete_table(s->client, s->table, &e); /* may already be gone */
    s->table[0] = '\0';
    kn_client_destroy(s->client);
    s->client = NULL;
    return 0;
}

static void key_of(kn__ddb_item_t *key, const char *k)
{
    kn_error_t e = {0};
    kn__ddb_item_init(key);
    CHECK(kn__ddb_item_set_s(key, "leaseKey", k, &e), e);
}

static void test_describe_and_delete_table(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    kn__ddb_table_desc_t d;
    CHECK(kn__ddb_describe_table(s->client, s->table, &d, &e), e);
    assert_int_equal(d.status, KN__TABLE_ACTIVE);
    assert_string_equal(d.hash_key, "leaseKey");

    /* creating it again is an error the lease code can tell apart */
    assert_int_equal(kn__ddb_create_table(s->client, s->table, "leaseKey", &e), KN_ERR_IN_USE);
    assert_string_equal(e.aws_type, "ResourceInUseException");

    CHECK(kn__ddb_delete_table(s->client, s->table, &e), e);
    kn_err_t rc = KN_ERR_OK;
    for (int i = 0; i < 100; i++) { /* dynalite deletes after a short delay */
        rc = kn__ddb_describe_table(s->client, s->table, &d, &e);
        if (rc != KN_ERR_OK)
            break;
        usleep(100000);
    }
    assert_int_equal(rc, KN_ERR_NOT_FOUND);
    assert_string_equal(e.aws_type, "ResourceNotFoundException");
    s->table[0] = '\0';

    assert_int_equal(kn__ddb_describe_table(s->client, "knops-no-such-table", &d, &e), KN_ERR_NOT_FOUND);
}

static void test_every_type_round_trips(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    kn__ddb_item_t item, key, got;
    bool found;
    key_of(&item, "types");
    const char *ss[] = {"a", "b"}, *ns[] = {"1", "2.5"};
    CHECK(kn__ddb_item_set_int64(&item, "n", 9007199254740993LL, &e), e); /* not exact as a double */
    CHECK(kn__ddb_item_set_b(&item, "b", "\x00\x01\xff", 3, &e), e);
    CHECK(kn__ddb_item_set_bool(&item, "t", true, &e), e);
    CHECK(kn__ddb_item_set_null(&item, "z", &e), e);
    CHECK(kn__ddb_item_set_ss(&item, "ss", ss, 2, &e), e);
    CHECK(kn__ddb_item_set_ns(&item, "ns", ns, 2, &e), e);
    kn__ddb_value_t m = {0};
    m.type = KN__DDB_M;
    m.map = calloc(1, sizeof(*m.map));
    CHECK(kn__ddb_item_set_s(m.map, "inner", "v", &e), e);
    kn__ddb_value_t l = {0};
    l.type = KN__DDB_L;
    l.elems = calloc(1, sizeof(*l.elems));
    l.count = 1;
    l.elems[0] = m;
    CHECK(kn__ddb_item_set_value(&item, "l", &l, &e), e);
    CHECK(kn__ddb_put_item(s->client, s->table, &item, NULL, &e), e);

    key_of(&key, "types");
    CHECK(kn__ddb_get_item(s->client, s->table, &key, true, &got, &found, &e), e);
    assert_true(found);
    int64_t n;
    CHECK(kn__ddb_item_get_int64(&got, "n", &n, &e), e);
    assert_true(n == 9007199254740993LL);
    const void *bin;
    size_t len;
    CHECK(kn__ddb_item_get_b(&got, "b", &bin, &len, &e), e);
    assert_int_equal(len, 3);
    assert_memory_equal(bin, "\x00\x01\xff", 3);
    bool t;
    CHECK(kn__ddb_item_get_bool(&got, "t", &t, &e), e);
    assert_true(t);
    const kn__ddb_value_t *v;
    CHECK(kn__ddb_item_get_typed(&got, "z", KN__DDB_NULL, &v, &e), e);
    CHECK(kn__ddb_item_get_typed(&got, "ss", KN__DDB_SS, &v, &e), e);
    assert_int_equal(v->count, 2);
    CHECK(kn__ddb_item_get_typed(&got, "ns", KN__DDB_NS, &v, &e), e);
    assert_int_equal(v->count, 2);
    CHECK(kn__ddb_item_get_typed(&got, "l", KN__DDB_L, &v, &e), e);
    assert_int_equal(v->count, 1);
    assert_int_equal(v->elems[0].type, KN__DDB_M);
    const char *inner;
    CHECK(kn__ddb_item_get_s(v->elems[0].map, "inner", &inner, &e), e);
    assert_string_equal(inner, "v");
    /* a type mismatch on a real item is reported, not guessed */
    assert_int_equal(kn__ddb_item_get_int64(&got, "ss", &n, &e), KN_ERR_BAD_RESPONSE);
    assert_string_equal(e.message, "attribute \"ss\" is SS, expected N");
    kn__ddb_item_clear(&got);
    kn__ddb_item_clear(&key);
    kn__ddb_item_clear(&item);
}

static void test_conditional_writes(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    kn__ddb_item_t item, key, vals, got, newi;
    bool found;

    /* create-if-absent succeeds once, then fails */
    key_of(&item, "shardId-000000000001");
    CHECK(kn__ddb_item_set_s(&item, "leaseOwner", "worker-a", &e), e);
    CHECK(kn__ddb_item_set_int64(&item, "leaseCounter", 1, &e), e);
    kn__ddb_cond_t absent = {"attribute_not_exists(leaseKey)", NULL, NULL};
    CHECK(kn__ddb_put_item(s->client, s->table, &item, &absent, &e), e);
    assert_int_equal(kn__ddb_put_item(s->client, s->table, &item, &absent, &e), KN_ERR_CONDITION_FAILED);
    assert_string_equal(e.aws_type, "ConditionalCheckFailedException");
    assert_false(kn_error_is_retriable(&e));

    /* renew: counter + 1 only while we own it */
    key_of(&key, "shardId-000000000001");
    kn__ddb_item_init(&vals);
    CHECK(kn__ddb_item_set_s(&vals, ":owner", "worker-a", &e), e);
    CHECK(kn__ddb_item_set_int64(&vals, ":one", 1, &e), e);
    const char *names[] = {"#o", "leaseOwner", "#c", "leaseCounter", NULL};
    kn__ddb_cond_t owned = {"#o = :owner", names, &vals};
    CHECK(kn__ddb_update_item(s->client, s->table, &key, "SET #c = #c + :one", &owned, &newi, &e), e);
    int64_t n;
    CHECK(kn__ddb_item_get_int64(&newi, "leaseCounter", &n, &e), e);
    assert_int_equal(n, 2);
    kn__ddb_item_clear(&newi);
    CHECK(kn__ddb_update_item(s->client, s->table, &key, "SET #c = #c + :one", &owned, NULL, &e), e);

    kn__ddb_item_t other;
    kn__ddb_item_init(&other);
    CHECK(kn__ddb_item_set_s(&other, ":owner", "worker-b", &e), e);
    CHECK(kn__ddb_item_set_int64(&other, ":one", 1, &e), e);
    kn__ddb_cond_t not_owned = {"#o = :owner", names, &other};
    assert_int_equal(kn__ddb_update_item(s->client, s->table, &key, "SET #c = #c + :one", &not_owned, NULL, &e),
                     KN_ERR_CONDITION_FAILED);
    assert_string_equal(e.aws_type, "ConditionalCheckFailedException");

    CHECK(kn__ddb_get_item(s->client, s->table, &key, true, &got, &found, &e), e);
    assert_true(found);
    CHECK(kn__ddb_item_get_int64(&got, "leaseCounter", &n, &e), e);
    assert_int_equal(n, 3); /* the failed update changed nothing */
    kn__ddb_item_clear(&got);

    /* conditional put (take over) with the wrong expected counter fails */
    kn__ddb_item_t cvals;
    kn__ddb_item_init(&cvals);
    CHECK(kn__ddb_item_set_int64(&cvals, ":c", 99, &e), e);
    const char *cnames[] = {"#c", "leaseCounter", NULL};
    kn__ddb_cond_t counter99 = {"#c = :c", cnames, &cvals};
    assert_int_equal(kn__ddb_put_item(s->client, s->table, &item, &counter99, &e), KN_ERR_CONDITION_FAILED);

    /*
     * Conditional delete: fails for the wrong owner, succeeds for the right
     * one. The service rejects unused ExpressionAttributeNames/Values with a
     * ValidationException, so these conditions carry only what they use.
     */
    assert_int_equal(kn__ddb_delete_item(s->client, s->table, &key, &not_owned, &e), KN_ERR_VALIDATION);
    assert_string_equal(e.aws_type, "ValidationException");
    kn__ddb_item_t ovals;
    kn__ddb_item_init(&ovals);
    CHECK(kn__ddb_item_set_s(&ovals, ":owner", "worker-b", &e), e);
    const char *onames[] = {"#o", "leaseOwner", NULL};
    kn__ddb_cond_t owner_only = {"#o = :owner", onames, &ovals};
    assert_int_equal(kn__ddb_delete_item(s->client, s->table, &key, &owner_only, &e), KN_ERR_CONDITION_FAILED);
    assert_string_equal(e.aws_type, "ConditionalCheckFailedException");
    CHECK(kn__ddb_item_set_s(&ovals, ":owner", "worker-a", &e), e);
    CHECK(kn__ddb_delete_item(s->client, s->table, &key, &owner_only, &e), e);
    CHECK(kn__ddb_get_item(s->client, s->table, &key, true, &got, &found, &e), e);
    assert_false(found);
    assert_int_equal(got.count, 0);
    /* unconditional delete of an absent item is fine */
    CHECK(kn__ddb_delete_item(s->client, s->table, &key, NULL, &e), e);

    kn__ddb_item_clear(&ovals);
    kn__ddb_item_clear(&cvals);
    kn__ddb_item_clear(&other);
    kn__ddb_item_clear(&vals);
    kn__ddb_item_clear(&key);
    kn__ddb_item_clear(&item);
}

static void test_scan_pages_with_limit_one(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    const char *keys[] = {"k-a", "k-b", "k-c"};
    for (int i = 0; i < 3; i++) {
        kn__ddb_item_t it;
        key_of(&it, keys[i]);
        CHECK(kn__ddb_item_set_int64(&it, "i", i, &e), e);
        CHECK(kn__ddb_put_item(s->client, s->table, &it, NULL, &e), e);
        kn__ddb_item_clear(&it);
    }
    int seen[3] = {0, 0, 0};
    int pages = 0, items = 0;
    kn__ddb_item_t start;
    kn__ddb_item_init(&start);
    for (;;) {
        kn__ddb_scan_page_t p;
        CHECK(kn__ddb_scan(s->client, s->table, &start, 1, true, &p, &e), e);
        pages++;
        assert_true(p.count <= 1);
        for (size_t i = 0; i < p.count; i++) {
            const char *k;
            CHECK(kn__ddb_item_get_s(&p.items[i], "leaseKey", &k, &e), e);
            for (int j = 0; j < 3; j++)
                seen[j] += !strcmp(k, keys[j]);
            items++;
        }
        kn__ddb_item_clear(&start);
        if (p.last_key.count == 0) {
            kn__ddb_scan_page_free(&p);
            break;
        }
        start = p.last_key; /* move */
        kn__ddb_item_init(&p.last_key);
        kn__ddb_scan_page_free(&p);
        assert_true(pages < 10);
    }
    assert_int_equal(items, 3);
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    assert_true(pages >= 3);

    /* no limit: one page with everything */
    kn__ddb_scan_page_t all;
    CHECK(kn__ddb_scan(s->client, s->table, NULL, 0, false, &all, &e), e);
    assert_int_equal(all.count, 3);
    assert_int_equal(all.last_key.count, 0);
    kn__ddb_scan_page_free(&all);
}

static void test_missing_table_errors(void **state)
{
    server_t *s = *state;
    kn_error_t e = {0};
    kn__ddb_item_t key, got;
    bool found;
    key_of(&key, "x");
    assert_int_equal(kn__ddb_get_item(s->client, s->table, &key, false, &got, &found, &e), KN_ERR_OK);
    assert_false(found);
    assert_int_equal(kn__ddb_get_item(s->client, "knops-no-such-table", &key, false, &got, &found, &e),
                     KN_ERR_NOT_FOUND);
    assert_string_equal(e.aws_type, "ResourceNotFoundException");
    assert_int_equal(kn__ddb_put_item(s->client, "knops-no-such-table", &key, NULL, &e), KN_ERR_NOT_FOUND);
    kn__ddb_item_clear(&key);
}

#define BOTH(fn) \
    cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &dynalite), \
        cmocka_unit_test_prestate_setup_teardown(fn, setup, teardown, &moto)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_describe_and_delete_table),
        BOTH(test_every_type_round_trips),
        BOTH(test_conditional_writes),
        BOTH(test_scan_pages_with_limit_one),
        BOTH(test_missing_table_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
