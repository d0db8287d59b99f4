/*
 * The public admin API (<kinesis/admin.h>) against real local servers:
 * kinesalite for listing, describing, splitting, merging, deleting and key
 * lookup; moto for what kinesalite lacks (on-demand streams, UpdateShardCount).
 * Uses only the public API, linked to the shared library like a user.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <kinesis/admin.h>

#include "testutil.h"

#define MAX_HASH "340282366920938463463374607431768211455"

static kn_client_t *client_for(const char *url_var)
{
    const char *url = kn_test_server_url(url_var);
    char errstr[512] = "";
    kn_conf_t *conf = kn_conf_new();
    assert_non_null(conf);
    assert_int_equal(kn_conf_set(conf, "kinesis.endpoint", url, errstr, sizeof(errstr)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.region", "us-east-1", errstr, sizeof(errstr)), KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.access.key.id", "AKIDTEST", errstr, sizeof(errstr)),
                     KN_ERR_OK);
    assert_int_equal(kn_conf_set(conf, "aws.secret.access.key", "secret", errstr, sizeof(errstr)),
                     KN_ERR_OK);
    kn_error_t *e = kn_error_new();
    kn_client_t *c = kn_client_new(conf, e);
    if (!c)
        fail_msg("kn_client_new: %s", kn_error_message(e));
    kn_error_destroy(e);
    kn_conf_destroy(conf);
    return c;
}

static void stream_name(char *buf, size_t size, const char *what)
{
    static int n;
    snprintf(buf, size, "admin-%s-%d-%d", what, (int)getpid(), ++n);
}

#define OK(call)                                                                                   \
    do {                                                                                           \
        kn_err_t rc_ = (call);                                                                     \
        if (rc_ != KN_ERR_OK)                                                                      \
            fail_msg("%s: %s: %s", #call, kn_err2name(rc_), kn_error_message(err));                \
    } while (0)

static void create_active(kn_client_t *c, const char *name, int shards, kn_error_t *err)
{
    OK(kn_admin_create_stream(c, name, shards, err));
    OK(kn_admin_wait_active(c, name, 60000, err));
}

static bool listed(kn_client_t *c, const char *name, kn_error_t *err)
{
    kn_stream_list_t *l = NULL;
    OK(kn_admin_list_streams(c, &l, err));
    bool found = false;
    for (size_t i = 0; i < kn_stream_list_count(l); i++)
        found |= strcmp(kn_stream_list_name(l, i), name) == 0;
    assert_null(kn_stream_list_name(l, kn_stream_list_count(l)));
    kn_stream_list_destroy(l);
    return found;
}

static size_t find_shard(const kn_shard_list_t *l, const char *id)
{
    for (size_t i = 0; i < kn_shard_list_count(l); i++)
        if (strcmp(kn_shard_list_id(l, i), id) == 0)
            return i;
    fail_msg("shard %s not listed", id);
    return 0;
}

/* Create, list, describe and list shards agree with what was asked for. */
static void test_create_describe_list_shards(void **state)
{
    (void)state;
    kn_client_t *c = client_for("KN_TEST_KINESALITE_URL");
    kn_error_t *err = kn_error_new();
    char name[64];
    stream_name(name, sizeof(name), "desc");
    create_active(c, name, 2, err);
    assert_true(listed(c, name, err));

    kn_stream_info_t *info = NULL;
    OK(kn_admin_describe_stream(c, name, &info, err));
    assert_string_equal(kn_stream_info_name(info), name);
    assert_string_equal(kn_stream_info_status(info), "ACTIVE");
    assert_true(kn_stream_info_active(info));
    assert_int_equal(kn_stream_info_open_shard_count(info), 2);
    assert_false(kn_stream_info_on_demand(info));
    assert_int_equal(kn_stream_info_retention_hours(info), 24);
    assert_non_null(strstr(kn_stream_info_arn(info), name));

    kn_shard_list_t *l = NULL;
    OK(kn_admin_list_shards(c, name, &l, err));
    assert_int_equal(kn_shard_list_count(l), 2);
    /* The two ranges cover the whole key space, end to end. */
    assert_string_equal(kn_shard_list_hash_start(l, 0), "0");
    assert_string_equal(kn_shard_list_hash_end(l, 0), "170141183460469231731687303715884105727");
    assert_string_equal(kn_shard_list_hash_start(l, 1), "170141183460469231731687303715884105728");
    assert_string_equal(kn_shard_list_hash_end(l, 1), MAX_HASH);
    for (size_t i = 0; i < 2; i++) {
        assert_true(kn_shard_list_is_open(l, i));
        assert_null(kn_shard_list_end_seq(l, i));
        assert_null(kn_shard_list_parent(l, i));
        assert_null(kn_shard_list_adjacent_parent(l, i));
        assert_non_null(kn_shard_list_start_seq(l, i));
    }
    assert_null(kn_shard_list_id(l, 2));
    assert_false(kn_shard_list_is_open(l, 2));

    /* The ARN works wherever a name does (kinesalite only knows names, so only describe). */
    kn_shard_list_destroy(l);
    kn_stream_info_destroy(info);
    OK(kn_admin_delete_stream(c, name, err));
    kn_error_destroy(err);
    kn_client_destroy(c);
}

/* The shard a key maps to is the open shard whose range holds its MD5 hash key. */
static void test_shard_for_key_agrees_with_ranges(void **state)
{
    (void)state;
    kn_client_t *c = client_for("KN_TEST_KINESALITE_URL");
    kn_error_t *err = kn_error_new();
    char name[64];
    stream_name(name, sizeof(name), "query");
    create_active(c, name, 2, err);

    char hash[KN_HASH_KEY_STRLEN], hash2[KN_HASH_KEY_STRLEN], shard[128];
    /* md5("a") = 0cc175b9c0f1b6a831c399e269772661 */
    assert_int_equal(kn_hash_key_of("a", 1, hash), KN_ERR_OK);
    assert_string_equal(hash, "16955237001963240173058271559858726497");
    OK(kn_admin_shard_for_key(c, name, "a", NULL, hash2, shard, sizeof(shard), err));
    assert_string_equal(hash2, hash);
    assert_string_equal(shard, "shardId-000000000000");
    OK(kn_admin_shard_for_key(c, name, NULL, MAX_HASH, hash2, shard, sizeof(shard), err));
    assert_string_equal(hash2, MAX_HASH);
    assert_string_equal(shard, "shardId-000000000001");
    OK(kn_admin_shard_for_key(c, name, "ignored", "170141183460469231731687303715884105728", hash2,
                              shard, sizeof(shard), err));
    assert_string_equal(shard, "shardId-000000000001");

    assert_int_equal(kn_admin_shard_for_key(c, name, NULL, "340282366920938463463374607431768211456",
                                            hash2, shard, sizeof(shard), err),
                     KN_ERR_INVALID_ARG);
    assert_non_null(strstr(kn_error_message(err), "not a hash key"));
    assert_int_equal(kn_admin_shard_for_key(c, name, NULL, NULL, hash2, shard, sizeof(shard), err),
                     KN_ERR_INVALID_ARG);
    assert_int_equal(kn_hash_key_of("", 0, hash), KN_ERR_INVALID_ARG);
    OK(kn_admin_delete_stream(c, name, err));
    kn_error_destroy(err);
    kn_client_destroy(c);
}

/* Split at the middle by default, then merge the children back; parents and ranges follow. */
static void test_split_middle_then_merge(void **state)
{
    (void)state;
    kn_client_t *c = client_for("KN_TEST_KINESALITE_URL");
    kn_error_t *err = kn_error_new();
    char name[64];
    stream_name(name, sizeof(name), "split");
    create_active(c, name, 1, err);

    OK(kn_admin_split_shard(c, name, "shardId-000000000000", NULL, err));
    OK(kn_admin_wait_active(c, name, 60000, err));
    kn_shard_list_t *l = NULL;
    OK(kn_admin_list_shards(c, name, &l, err));
    assert_int_equal(kn_shard_list_count(l), 3);
    size_t p = find_shard(l, "shardId-000000000000");
    size_t a = find_shard(l, "shardId-000000000001");
    size_t b = find_shard(l, "shardId-000000000002");
    assert_false(kn_shard_list_is_open(l, p));
    assert_non_null(kn_shard_list_end_seq(l, p));
    assert_string_equal(kn_shard_list_parent(l, a), "shardId-000000000000");
    assert_string_equal(kn_shard_list_parent(l, b), "shardId-000000000000");
    assert_string_equal(kn_shard_list_hash_start(l, a), "0");
    assert_string_equal(kn_shard_list_hash_end(l, a), "170141183460469231731687303715884105727");
    assert_string_equal(kn_shard_list_hash_start(l, b), "170141183460469231731687303715884105728");
    assert_string_equal(kn_shard_list_hash_end(l, b), MAX_HASH);
    kn_shard_list_destroy(l);

    /* A closed shard cannot be split; an unknown one is not found. */
    assert_int_equal(kn_admin_split_shard(c, name, "shardId-000000000000", NULL, err), KN_ERR_STATE);
    assert_int_equal(kn_admin_split_shard(c, name, "shardId-000000000099", NULL, err),
                     KN_ERR_NOT_FOUND);
    assert_int_equal(kn_admin_split_shard(c, name, "shardId-000000000001", "12x", err),
                     KN_ERR_INVALID_ARG);

    /* An explicit split point. */
    OK(kn_admin_split_shard(c, name, "shardId-000000000001", "1000", err));
    OK(kn_admin_wait_active(c, name, 60000, err));
    OK(kn_admin_list_shards(c, name, &l, err));
    size_t lo = find_shard(l, "shardId-000000000003"), hi = find_shard(l, "shardId-000000000004");
    assert_string_equal(kn_shard_list_hash_end(l, lo), "999");
    assert_string_equal(kn_shard_list_hash_start(l, hi), "1000");
    kn_shard_list_destroy(l);

    OK(kn_admin_merge_shards(c, name, "shardId-000000000003", "shardId-000000000004", err));
    OK(kn_admin_wait_active(c, name, 60000, err));
    OK(kn_admin_list_shards(c, name, &l, err));
    size_t m = find_shard(l, "shardId-000000000005");
    assert_true(kn_shard_list_is_open(l, m));
    assert_string_equal(kn_shard_list_parent(l, m), "shardId-000000000003");
    assert_string_equal(kn_shard_list_adjacent_parent(l, m), "shardId-000000000004");
    assert_string_equal(kn_shard_list_hash_start(l, m), "0");
    assert_string_equal(kn_shard_list_hash_end(l, m), "170141183460469231731687303715884105727");
    kn_shard_list_destroy(l);

    kn_stream_info_t *info = NULL;
    OK(kn_admin_describe_stream(c, name, &info, err));
    assert_int_equal(kn_stream_info_open_shard_count(info), 2);
    kn_stream_info_destroy(info);
    OK(kn_admin_delete_stream(c, name, err));
    kn_error_destroy(err);
    kn_client_destroy(c);
}

/* Unknown streams, bad arguments and deletion give clear errors with the right codes. */
static void test_errors_and_delete(void **state)
{
    (void)state;
    kn_client_t *c = client_for("KN_TEST_KINESALITE_URL");
    kn_error_t *err = kn_error_new();
    kn_stream_info_t *info = NULL;
    kn_shard_list_t *l = NULL;
    assert_int_equal(kn_admin_describe_stream(c, "admin-no-such-stream", &info, err),
                     KN_ERR_NOT_FOUND);
    assert_null(info);
    assert_string_equal(kn_error_aws_type(err), "ResourceNotFoundException");
    assert_non_null(strstr(kn_error_message(err), "admin-no-such-stream"));
    assert_int_equal(kn_admin_list_shards(c, "admin-no-such-stream", &l, err), KN_ERR_NOT_FOUND);
    assert_null(l);
    assert_int_equal(kn_admin_delete_stream(c, "admin-no-such-stream", err), KN_ERR_NOT_FOUND);
    assert_int_equal(kn_admin_describe_stream(c, "", &info, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_admin_create_stream(c, "x", -1, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_admin_scale_stream(c, "x", 0, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_admin_merge_shards(c, "x", "a", NULL, err), KN_ERR_INVALID_ARG);

    char name[64];
    stream_name(name, sizeof(name), "del");
    create_active(c, name, 1, err);
    /* Creating it again is refused as in use. */
    assert_int_equal(kn_admin_create_stream(c, name, 1, err), KN_ERR_IN_USE);
    OK(kn_admin_delete_stream(c, name, err));
    /* Gone (after DELETING) within a while. */
    kn_err_t rc = KN_ERR_OK;
    for (int i = 0; i < 300; i++) {
        rc = kn_admin_describe_stream(c, name, &info, err);
        kn_stream_info_destroy(info);
        info = NULL;
        if (rc != KN_ERR_OK)
            break;
        usleep(100000);
    }
    assert_int_equal(rc, KN_ERR_NOT_FOUND);
    assert_false(listed(c, name, err));
    kn_error_destroy(err);
    kn_client_destroy(c);
}

/* moto: on-demand streams and UpdateShardCount, which kinesalite lacks. */
static void test_moto_on_demand_and_scale(void **state)
{
    (void)state;
    kn_client_t *c = client_for("KN_TEST_MOTO_URL");
    kn_error_t *err = kn_error_new();
    char name[64];
    stream_name(name, sizeof(name), "ondemand");
    create_active(c, name, 0, err);
    kn_stream_info_t *info = NULL;
    OK(kn_admin_describe_stream(c, name, &info, err));
    assert_true(kn_stream_info_on_demand(info));
    kn_stream_info_destroy(info);
    OK(kn_admin_delete_stream(c, name, err));

    stream_name(name, sizeof(name), "scale");
    create_active(c, name, 1, err);
    OK(kn_admin_scale_stream(c, name, 2, err));
    OK(kn_admin_wait_active(c, name, 60000, err));
    OK(kn_admin_describe_stream(c, name, &info, err));
    assert_false(kn_stream_info_on_demand(info));
    assert_int_equal(kn_stream_info_open_shard_count(info), 2);
    kn_stream_info_destroy(info);
    kn_shard_list_t *l = NULL;
    OK(kn_admin_list_shards(c, name, &l, err));
    size_t open = 0;
    for (size_t i = 0; i < kn_shard_list_count(l); i++)
        open += kn_shard_list_is_open(l, i);
    assert_int_equal(open, 2);
    kn_shard_list_destroy(l);
    OK(kn_admin_delete_stream(c, name, err));
    kn_error_destroy(err);
    kn_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_describe_list_shards),
        cmocka_unit_test(test_shard_for_key_agrees_with_ranges),
        cmocka_unit_test(test_split_middle_then_merge),
        cmocka_unit_test(test_errors_and_delete),
        cmocka_unit_test(test_moto_on_demand_and_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
