/*
 * Unit tests for common/ops/kinesis_ops.c: request builders and response parsers
 * on hand-written JSON (kinesalite-, moto- and AWS-shaped), including moto's
 * short sequence numbers, absent optional fields, wrong types (which must
 * fail with KN_ERR_BAD_RESPONSE naming the field) and the PutRecords limits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kinesis_ops.h"

static json_object *J(const char *s)
{
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

/* Parses a built body back so tests can look at fields. */
static json_object *body_json(const kn_buf_t *b)
{
    assert_non_null(b->data);
    assert_int_equal(strlen(b->data), b->len);
    return J(b->data);
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static int jhas(json_object *o, const char *key) { return json_object_object_get_ex(o, key, NULL); }

static const kn__kinesis_limits_t default_limits = {500, 5242880, 1048576};

#define assert_err_contains(e, text) \
    do { \
        if (!strstr((e)->message, (text))) \
            fail_msg("message \"%s\" lacks \"%s\"", (e)->message, (text)); \
    } while (0)

/* ------------------------------------------------------------ ListStreams */

static void test_list_streams_build_prefers_next_token(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__list_streams_build(&b, "after", "tok", 5, &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    assert_string_equal(jstr(o, "NextToken"), "tok");
    assert_false(jhas(o, "ExclusiveStartStreamName"));
    assert_int_equal(json_object_get_int(json_object_object_get(o, "Limit")), 5);
    json_object_put(o);
    kn__buf_reset(&b);
    assert_int_equal(kn__list_streams_build(&b, "after", NULL, 0, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"ExclusiveStartStreamName\":\"after\"}");
    kn__buf_free(&b);
}

static void test_list_streams_parse_appends_pages(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__stream_names_t l = {0};
    bool more;
    char *tok;
    json_object *p1 = J("{\"StreamNames\":[\"a\",\"b\"],\"HasMoreStreams\":true,\"NextToken\":\"t1\"}");
    json_object *p2 = J("{\"StreamNames\":[\"c\"],\"HasMoreStreams\":false}");
    assert_int_equal(kn__list_streams_parse(p1, &l, &more, &tok, &e), KN_ERR_OK);
    assert_true(more);
    assert_string_equal(tok, "t1");
    free(tok);
    assert_int_equal(kn__list_streams_parse(p2, &l, &more, &tok, &e), KN_ERR_OK);
    assert_false(more);
    assert_null(tok);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.names[0], "a");
    assert_string_equal(l.names[2], "c");
    kn__stream_names_free(&l);
    json_object_put(p1);
    json_object_put(p2);
}

static void test_list_streams_parse_wrong_types_name_the_field(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__stream_names_t l = {0};
    bool more;
    char *tok;
    json_object *o = J("{\"StreamNames\":[\"a\"],\"HasMoreStreams\":\"yes\"}");
    assert_int_equal(kn__list_streams_parse(o, &l, &more, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"HasMoreStreams\" is not a boolean");
    json_object_put(o);
    o = J("{\"StreamNames\":[\"a\",7],\"HasMoreStreams\":false}");
    assert_int_equal(kn__list_streams_parse(o, &l, &more, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"StreamNames[1]\" is not a string");
    json_object_put(o);
    o = J("{\"HasMoreStreams\":false}");
    assert_int_equal(kn__list_streams_parse(o, &l, &more, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "ListStreams response: field \"StreamNames\" is missing");
    json_object_put(o);
    kn__stream_names_free(&l);
}

/* -------------------------------------------------- DescribeStreamSummary */

static void test_describe_summary_kinesalite_shape(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__stream_summary_t s;
    json_object *o = J("{\"StreamDescriptionSummary\":{\"RetentionPeriodHours\":24,"
                       "\"EnhancedMonitoring\":[{\"ShardLevelMetrics\":[]}],\"EncryptionType\":\"NONE\","
                       "\"StreamARN\":\"arn:aws:kinesis:us-east-1:000000000000:stream/s1\","
                       "\"StreamName\":\"s1\",\"StreamStatus\":\"CREATING\","
                       "\"StreamCreationTimestamp\":1795643869,\"OpenShardCount\":2,\"ConsumerCount\":0}}");
    assert_int_equal(kn__describe_stream_summary_parse(o, &s, &e), KN_ERR_OK);
    assert_string_equal(s.name, "s1");
    assert_string_equal(s.arn, "arn:aws:kinesis:us-east-1:000000000000:stream/s1");
    assert_int_equal(s.status, KN__STREAM_CREATING);
    assert_string_equal(s.status_str, "CREATING");
    assert_int_equal(s.open_shard_count, 2);
    assert_int_equal(s.retention_hours, 24);
    assert_string_equal(s.encryption_type, "NONE");
    assert_null(s.key_id);
    assert_false(s.on_demand);
    assert_int_equal(s.max_record_size_kib, 0); /* absent */
    assert_int_equal(s.consumer_count, 0);
    assert_int_equal(s.creation_ms, 1795643869000LL);
    kn__stream_summary_free(&s);
    json_object_put(o);
}

static void test_describe_summary_aws_shape_with_mode_and_record_size(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__stream_summary_t s;
    json_object *o = J("{\"StreamDescriptionSummary\":{\"StreamName\":\"s2\",\"StreamARN\":\"arn:x\","
                       "\"StreamStatus\":\"ACTIVE\",\"StreamModeDetails\":{\"StreamMode\":\"ON_DEMAND\"},"
                       "\"RetentionPeriodHours\":48,\"StreamCreationTimestamp\":1795643869.945,"
                       "\"EncryptionType\":\"KMS\",\"KeyId\":\"alias/aws/kinesis\","
                       "\"OpenShardCount\":4,\"MaxRecordSizeInKiB\":10240}}");
    assert_int_equal(kn__describe_stream_summary_parse(o, &s, &e), KN_ERR_OK);
    assert_int_equal(s.status, KN__STREAM_ACTIVE);
    assert_true(s.on_demand);
    assert_int_equal(s.max_record_size_kib, 10240);
    assert_int_equal(s.creation_ms, 1795643869945LL);
    assert_string_equal(s.key_id, "alias/aws/kinesis");
    assert_int_equal(s.consumer_count, -1); /* absent */
    kn__stream_summary_free(&s);
    json_object_put(o);
}

static void test_describe_summary_errors_name_the_field(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__stream_summary_t s;
    json_object *o = J("{\"StreamDescriptionSummary\":{\"StreamName\":\"s\",\"StreamARN\":\"a\","
                       "\"StreamStatus\":\"ACTIVE\",\"RetentionPeriodHours\":24,\"OpenShardCount\":\"2\"}}");
    assert_int_equal(kn__describe_stream_summary_parse(o, &s, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"OpenShardCount\" is not an integer");
    json_object_put(o);
    o = J("{\"StreamDescriptionSummary\":{\"StreamName\":\"s\",\"StreamARN\":\"a\","
          "\"RetentionPeriodHours\":24,\"OpenShardCount\":2}}");
    assert_int_equal(kn__describe_stream_summary_parse(o, &s, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"StreamStatus\" is missing");
    json_object_put(o);
    o = J("[1,2]");
    assert_int_equal(kn__describe_stream_summary_parse(o, &s, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "not a JSON object");
    json_object_put(o);
    assert_int_equal(kn__describe_stream_summary_parse(NULL, &s, &e), KN_ERR_BAD_RESPONSE);
}

static void test_stream_ref_name_arn_or_both(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t byname = {"s", NULL}, byarn = {NULL, "arn:aws:kinesis:r:1:stream/s"},
                     both = {"s", "arn:aws:kinesis:r:1:stream/s"}, none = {"", NULL};
    assert_int_equal(kn__describe_stream_summary_build(&b, &byname, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__describe_stream_summary_build(&b, &byarn, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamARN\":\"arn:aws:kinesis:r:1:stream/s\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__describe_stream_summary_build(&b, &both, &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    assert_string_equal(jstr(o, "StreamName"), "s");
    assert_string_equal(jstr(o, "StreamARN"), "arn:aws:kinesis:r:1:stream/s");
    json_object_put(o);
    kn__buf_reset(&b);
    assert_int_equal(kn__describe_stream_summary_build(&b, &none, &e), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__describe_stream_summary_build(&b, NULL, &e), KN_ERR_INVALID_ARG);
    assert_int_equal(b.len, 0);
    kn__buf_free(&b);
}

/* ------------------------------------------------------------- ListShards */

static void test_list_shards_build_next_token_without_stream_name(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", "arn:s"};
    kn__list_shards_opts_t opts = {KN__SF_AT_LATEST, NULL, 0, "shardId-000000000001", 2};
    assert_int_equal(kn__list_shards_build(&b, &ref, &opts, "TOKEN", &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    assert_string_equal(jstr(o, "NextToken"), "TOKEN");
    assert_false(jhas(o, "StreamName"));
    assert_false(jhas(o, "StreamARN"));
    assert_false(jhas(o, "ShardFilter"));
    assert_false(jhas(o, "ExclusiveStartShardId"));
    assert_int_equal(json_object_get_int(json_object_object_get(o, "MaxResults")), 2);
    json_object_put(o);
    kn__buf_free(&b);
}

static void test_list_shards_build_filters(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL};
    kn__list_shards_opts_t opts = {KN__SF_AT_TIMESTAMP, NULL, 1700000000123LL, NULL, 0};
    assert_int_equal(kn__list_shards_build(&b, &ref, &opts, NULL, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardFilter\":{\"Type\":\"AT_TIMESTAMP\","
                                "\"Timestamp\":1700000000.123}}");
    kn__buf_reset(&b);
    opts = (kn__list_shards_opts_t){KN__SF_AFTER_SHARD_ID, "shardId-000000000003", 0, NULL, 0};
    assert_int_equal(kn__list_shards_build(&b, &ref, &opts, NULL, &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    json_object *f = json_object_object_get(o, "ShardFilter");
    assert_string_equal(jstr(f, "Type"), "AFTER_SHARD_ID");
    assert_string_equal(jstr(f, "ShardId"), "shardId-000000000003");
    json_object_put(o);
    kn__buf_reset(&b);
    opts.filter_shard_id = NULL;
    assert_int_equal(kn__list_shards_build(&b, &ref, &opts, NULL, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "AFTER_SHARD_ID needs a shard id");
    assert_int_equal(kn__list_shards_build(&b, &ref, NULL, NULL, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\"}");
    kn__buf_free(&b);
}

static void test_list_shards_parse_parents_ranges_and_open_closed(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__shard_list_t l = {0};
    char *tok;
    json_object *o = J(
        "{\"Shards\":["
        "{\"ShardId\":\"shardId-000000000000\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
        "\"EndingHashKey\":\"340282366920938463463374607431768211455\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"1\",\"EndingSequenceNumber\":\"7\"}},"
        "{\"ShardId\":\"shardId-000000000001\",\"ParentShardId\":\"shardId-000000000000\","
        "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"170141183460469231731687303715884105727\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"49680564449946406687512674976982570810893108444953313282\"}},"
        "{\"ShardId\":\"shardId-000000000003\",\"ParentShardId\":\"shardId-000000000001\","
        "\"AdjacentParentShardId\":\"shardId-000000000002\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
        "\"EndingHashKey\":\"340282366920938463463374607431768211455\"},"
        "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"9\",\"EndingSequenceNumber\":null}}"
        "],\"NextToken\":\"abc\"}");
    assert_int_equal(kn__list_shards_parse(o, &l, &tok, &e), KN_ERR_OK);
    assert_string_equal(tok, "abc");
    free(tok);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.shards[0].shard_id, "shardId-000000000000");
    assert_null(l.shards[0].parent_shard_id);
    assert_false(kn__shard_is_open(&l.shards[0]));
    assert_string_equal(l.shards[0].start_seq, "1"); /* moto-style short sequence numbers */
    assert_string_equal(l.shards[0].end_seq, "7");
    assert_true(l.shards[0].start_hash.hi == 0 && l.shards[0].start_hash.lo == 0);
    assert_true(l.shards[0].end_hash.hi == UINT64_MAX && l.shards[0].end_hash.lo == UINT64_MAX);
    assert_string_equal(l.shards[1].parent_shard_id, "shardId-000000000000");
    assert_true(kn__shard_is_open(&l.shards[1]));
    assert_true(l.shards[1].end_hash.hi == (UINT64_MAX >> 1) && l.shards[1].end_hash.lo == UINT64_MAX);
    assert_string_equal(l.shards[1].start_seq,
                        "49680564449946406687512674976982570810893108444953313282");
    assert_string_equal(l.shards[2].adjacent_parent_shard_id, "shardId-000000000002");
    assert_true(kn__shard_is_open(&l.shards[2])); /* null EndingSequenceNumber = open */
    kn__shard_list_free(&l);
    json_object_put(o);
}

static void test_list_shards_parse_errors_name_the_field(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__shard_list_t l = {0};
    char *tok;
    json_object *o = J("{\"Shards\":[{\"ShardId\":\"a\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
                       "\"EndingHashKey\":\"340282366920938463463374607431768211456\"},"
                       "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"1\"}}]}");
    assert_int_equal(kn__list_shards_parse(o, &l, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "Shards[0].HashKeyRange.EndingHashKey");
    json_object_put(o);
    o = J("{\"Shards\":[{\"ShardId\":\"a\",\"HashKeyRange\":{\"StartingHashKey\":\"0\","
          "\"EndingHashKey\":\"1\"},\"SequenceNumberRange\":{}}]}");
    assert_int_equal(kn__list_shards_parse(o, &l, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "Shards[0].SequenceNumberRange.StartingSequenceNumber");
    json_object_put(o);
    o = J("{\"Shards\":[{\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"},"
          "\"SequenceNumberRange\":{\"StartingSequenceNumber\":\"1\"}}]}");
    assert_int_equal(kn__list_shards_parse(o, &l, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Shards[0].ShardId\" is missing");
    json_object_put(o);
    o = J("{\"Shards\":{}}");
    assert_int_equal(kn__list_shards_parse(o, &l, &tok, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Shards\" is not an array");
    json_object_put(o);
    assert_int_equal(l.count, 0);
    kn__shard_list_free(&l);
}

/* ------------------------------------------------------ stream management */

static void test_create_stream_provisioned_and_on_demand(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    assert_int_equal(kn__create_stream_build(&b, "s", 3, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardCount\":3}");
    kn__buf_reset(&b);
    assert_int_equal(kn__create_stream_build(&b, "s", 0, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"StreamModeDetails\":{\"StreamMode\":\"ON_DEMAND\"}}");
    kn__buf_reset(&b);
    assert_int_equal(kn__create_stream_build(&b, "s", -1, &e), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__create_stream_build(&b, NULL, 1, &e), KN_ERR_INVALID_ARG);
    kn__buf_free(&b);
}

static void test_management_builders(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL}, arn = {NULL, "arn:aws:kinesis:us-east-1:1:stream/s"};
    assert_int_equal(kn__delete_stream_build(&b, &ref, true, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"EnforceConsumerDeletion\":true}");
    kn__buf_reset(&b);
    assert_int_equal(kn__delete_stream_build(&b, &arn, false, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamARN\":\"arn:aws:kinesis:us-east-1:1:stream/s\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__update_shard_count_build(&b, &ref, 4, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"TargetShardCount\":4,\"ScalingType\":\"UNIFORM_SCALING\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__update_shard_count_build(&b, &ref, 0, &e), KN_ERR_INVALID_ARG);
    kn__hashkey_t mid = {1ULL << 63, 0}; /* 2^127 */
    assert_int_equal(kn__split_shard_build(&b, &ref, "shardId-000000000000", mid, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardToSplit\":\"shardId-000000000000\","
                                "\"NewStartingHashKey\":\"170141183460469231731687303715884105728\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__merge_shards_build(&b, &ref, "shardId-000000000001", "shardId-000000000002", &e),
                     KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardToMerge\":\"shardId-000000000001\","
                                "\"AdjacentShardToMerge\":\"shardId-000000000002\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__merge_shards_build(&b, &ref, "a", NULL, &e), KN_ERR_INVALID_ARG);
    kn__buf_free(&b);
}

/* ------------------------------------------------------------- PutRecords */

static void test_put_records_build_exact_body(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL};
    static const unsigned char bin[] = {0, 1, 2, 0xff};
    kn__put_entry_t ents[] = {
        {"hello", 5, "pk", 2, NULL, 0},
        {bin, sizeof(bin), "q\"\\\n\x01", 5, "00042", 5},
        {NULL, 0, "empty", 5, NULL, 0},
    };
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 3, &default_limits, &e), KN_ERR_OK);
    assert_string_equal(b.data,
                        "{\"StreamName\":\"s\",\"Records\":["
                        "{\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"pk\"},"
                        "{\"Data\":\"AAEC/w==\",\"PartitionKey\":\"q\\\"\\\\\\n\\u0001\",\"ExplicitHashKey\":\"42\"},"
                        "{\"Data\":\"\",\"PartitionKey\":\"empty\"}]}");
    /* and it is valid JSON that round-trips the partition key */
    json_object *o = body_json(&b);
    json_object *r1 = json_object_array_get_idx(json_object_object_get(o, "Records"), 1);
    assert_string_equal(jstr(r1, "PartitionKey"), "q\"\\\n\x01");
    json_object_put(o);
    kn__buf_free(&b);
}

static void test_put_records_build_with_arn(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {NULL, "arn:aws:kinesis:us-east-1:123456789012:stream/s"};
    kn__put_entry_t ent = {"x", 1, "k", 1, NULL, 0};
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    assert_string_equal(jstr(o, "StreamARN"), ref.arn);
    assert_false(jhas(o, "StreamName"));
    json_object_put(o);
    kn__buf_free(&b);
}

static void test_put_records_limits_reject_with_named_limit(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL};
    kn__kinesis_limits_t lim = {3, 100, 40};
    kn__put_entry_t ents[4];
    for (int i = 0; i < 4; i++)
        ents[i] = (kn__put_entry_t){"0123456789", 10, "key", 3, NULL, 0};
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 3, &lim, &e), KN_ERR_OK);
    size_t good_len = b.len;

    assert_int_equal(kn__put_records_build(&b, &ref, ents, 4, &lim, &e), KN_ERR_TOO_LARGE);
    assert_err_contains(&e, "kinesis.putrecords.max.records=3");
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 0, &lim, &e), KN_ERR_INVALID_ARG);

    /* a record of exactly the limit passes; one byte more fails */
    ents[1].data_len = 37;
    ents[1].data = "0123456789012345678901234567890123456";
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 2, &lim, &e), KN_ERR_OK);
    ents[1].partition_key = "keyz";
    ents[1].partition_key_len = 4;
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 2, &lim, &e), KN_ERR_TOO_LARGE);
    assert_err_contains(&e, "record 1 is 41 bytes");
    assert_err_contains(&e, "kinesis.record.max.bytes=40");

    /* request bytes: 3 x 40 = 120 > 100 */
    for (int i = 0; i < 3; i++)
        ents[i] = (kn__put_entry_t){"0123456789012345678901234567890123456", 37, "key", 3, NULL, 0};
    kn__buf_reset(&b);
    assert_int_equal(kn__put_records_build(&b, &ref, ents, 3, &lim, &e), KN_ERR_TOO_LARGE);
    assert_err_contains(&e, "kinesis.putrecords.max.bytes=100");
    assert_int_equal(b.len, 0); /* nothing written on error */
    (void)good_len;
    kn__buf_free(&b);
}

static void test_put_records_partition_key_and_hash_key_validation(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL};
    char pk[1024];
    kn__put_entry_t ent = {"d", 1, pk, 0, NULL, 0};

    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "partition key of record 0 has 0 Unicode characters");

    /* 256 two-byte characters (512 bytes) are fine: the limit counts characters */
    for (int i = 0; i < 256; i++)
        memcpy(pk + 2 * i, "\xc3\xa9", 2);
    ent.partition_key_len = 512;
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_OK);
    memcpy(pk + 512, "x", 1);
    ent.partition_key_len = 513;
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "257 Unicode characters");
    assert_err_contains(&e, "1 to 256");

    ent.partition_key = "\xc3";
    ent.partition_key_len = 1;
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "not valid UTF-8");

    ent.partition_key = "k";
    ent.explicit_hash_key = "340282366920938463463374607431768211455";
    ent.explicit_hash_key_len = strlen(ent.explicit_hash_key);
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_OK);
    ent.explicit_hash_key = "340282366920938463463374607431768211456";
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "explicit hash key of record 0");
    ent.explicit_hash_key = "-1";
    ent.explicit_hash_key_len = 2;
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    ent.explicit_hash_key = "";
    ent.explicit_hash_key_len = 0;
    assert_int_equal(kn__put_records_build(&b, &ref, &ent, 1, &default_limits, &e), KN_ERR_INVALID_ARG);
    kn__buf_free(&b);
}

static void test_utf8_count(void **state)
{
    (void)state;
    assert_int_equal(kn__utf8_count("abc", 3), 3);
    assert_int_equal(kn__utf8_count("\xe2\x82\xac\xf0\x9f\x98\x80", 7), 2);
    assert_int_equal(kn__utf8_count("\xc0\xaf", 2), -1);         /* overlong */
    assert_int_equal(kn__utf8_count("\xed\xa0\x80", 3), -1);     /* surrogate */
    assert_int_equal(kn__utf8_count("\xf4\x90\x80\x80", 4), -1); /* past U+10FFFF */
    assert_int_equal(kn__utf8_count("\xe2\x82", 2), -1);         /* truncated */
}

static void test_put_records_parse_mixed_results_in_order(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__put_result_t r;
    json_object *o = J("{\"FailedRecordCount\":1,\"Records\":["
                       "{\"SequenceNumber\":\"1\",\"ShardId\":\"shardId-000000000000\"},"
                       "{\"ErrorCode\":\"ProvisionedThroughputExceededException\",\"ErrorMessage\":\"Rate exceeded\"},"
                       "{\"SequenceNumber\":\"2\",\"ShardId\":\"shardId-000000000001\"}],"
                       "\"EncryptionType\":\"NONE\"}");
    assert_int_equal(kn__put_records_parse(o, 3, &r, &e), KN_ERR_OK);
    assert_int_equal(r.count, 3);
    assert_int_equal(r.failed_count, 1);
    assert_string_equal(r.entries[0].sequence_number, "1");
    assert_string_equal(r.entries[0].shard_id, "shardId-000000000000");
    assert_null(r.entries[0].error_code);
    assert_null(r.entries[1].shard_id);
    assert_string_equal(r.entries[1].error_code, "ProvisionedThroughputExceededException");
    assert_string_equal(r.entries[1].error_message, "Rate exceeded");
    assert_string_equal(r.entries[2].shard_id, "shardId-000000000001");
    assert_string_equal(r.encryption_type, "NONE");
    kn__put_result_free(&r);
    json_object_put(o);
}

/* Per-entry errors from a server may hold terminal escapes and line breaks: they are made plain. */
static void test_put_records_parse_cleans_error_text(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__put_result_t r;
    json_object *o = J("{\"FailedRecordCount\":1,\"Records\":["
                       "{\"ErrorCode\":\"Internal\\u0007Failure\",\"ErrorMessage\":"
                       "\"line one\\nline two\\r\\t\\u001b[31mred\\u007f\"}]}");
    assert_int_equal(kn__put_records_parse(o, 1, &r, &e), KN_ERR_OK);
    assert_string_equal(r.entries[0].error_code, "Internal?Failure");
    assert_string_equal(r.entries[0].error_message, "line one line two  ?[31mred?");
    kn__put_result_free(&r);
    json_object_put(o);
}

static void test_put_records_parse_rejects_inconsistent_responses(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__put_result_t r;
    json_object *o = J("{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"s\"}]}");
    assert_int_equal(kn__put_records_parse(o, 2, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "has 1 entries for 2 records");
    json_object_put(o);
    o = J("{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\"}]}");
    assert_int_equal(kn__put_records_parse(o, 1, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Records[0].ShardId\" is missing");
    json_object_put(o);
    o = J("{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":1,\"ShardId\":\"s\"}]}");
    assert_int_equal(kn__put_records_parse(o, 1, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Records[0].SequenceNumber\" is not a string");
    json_object_put(o);
    o = J("{\"FailedRecordCount\":2,\"Records\":[{\"ErrorCode\":\"InternalFailure\"}]}");
    assert_int_equal(kn__put_records_parse(o, 1, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "FailedRecordCount");
    json_object_put(o);
    assert_null(r.entries);
}

/* ------------------------------------------------------- GetShardIterator */

static void test_get_shard_iterator_all_types(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", NULL};
    kn__iterator_pos_t pos = {KN__IT_AT_SEQUENCE_NUMBER, "1", 0};
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "shardId-000000000000", &pos, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardId\":\"shardId-000000000000\","
                                "\"ShardIteratorType\":\"AT_SEQUENCE_NUMBER\",\"StartingSequenceNumber\":\"1\"}");
    kn__buf_reset(&b);
    pos.type = KN__IT_AFTER_SEQUENCE_NUMBER;
    pos.sequence_number = "49680564449946406687512674976983779736712723280286449666";
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "shardId-000000000000", &pos, &e), KN_ERR_OK);
    json_object *o = body_json(&b);
    assert_string_equal(jstr(o, "ShardIteratorType"), "AFTER_SEQUENCE_NUMBER");
    assert_string_equal(jstr(o, "StartingSequenceNumber"), pos.sequence_number);
    json_object_put(o);
    kn__buf_reset(&b);
    pos = (kn__iterator_pos_t){KN__IT_TRIM_HORIZON, NULL, 0};
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "sh", &pos, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardId\":\"sh\",\"ShardIteratorType\":\"TRIM_HORIZON\"}");
    kn__buf_reset(&b);
    pos.type = KN__IT_LATEST;
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "sh", &pos, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardId\":\"sh\",\"ShardIteratorType\":\"LATEST\"}");
    kn__buf_reset(&b);
    pos = (kn__iterator_pos_t){KN__IT_AT_TIMESTAMP, NULL, 1700000000005LL};
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "sh", &pos, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"StreamName\":\"s\",\"ShardId\":\"sh\",\"ShardIteratorType\":\"AT_TIMESTAMP\","
                                "\"Timestamp\":1700000000.005}");
    kn__buf_reset(&b);
    pos.timestamp_ms = -1;
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "sh", &pos, &e), KN_ERR_INVALID_ARG);
    pos = (kn__iterator_pos_t){KN__IT_AT_SEQUENCE_NUMBER, NULL, 0};
    assert_int_equal(kn__get_shard_iterator_build(&b, &ref, "sh", &pos, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "AT_SEQUENCE_NUMBER needs a sequence number");
    assert_int_equal(b.len, 0);
    kn__buf_free(&b);
}

static void test_get_shard_iterator_parse(void **state)
{
    (void)state;
    kn_error_t e = {0};
    char *it;
    json_object *o = J("{\"ShardIterator\":\"b3BzcHJvYmU1MDg1OnNoYXJk\\n\"}");
    assert_int_equal(kn__get_shard_iterator_parse(o, &it, &e), KN_ERR_OK);
    assert_string_equal(it, "b3BzcHJvYmU1MDg1OnNoYXJk\n"); /* moto's iterators end in a newline */
    free(it);
    json_object_put(o);
    o = J("{\"ShardIterator\":null}");
    assert_int_equal(kn__get_shard_iterator_parse(o, &it, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"ShardIterator\" is missing");
    assert_null(it);
    json_object_put(o);
}

/* ------------------------------------------------------------- GetRecords */

static void test_get_records_build(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__stream_ref_t ref = {"s", "arn:s"}, name_only = {"s", NULL};
    assert_int_equal(kn__get_records_build(&b, &name_only, "IT", 0, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"ShardIterator\":\"IT\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__get_records_build(&b, &ref, "IT", 10, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"ShardIterator\":\"IT\",\"Limit\":10,\"StreamARN\":\"arn:s\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__get_records_build(&b, NULL, "", 0, &e), KN_ERR_INVALID_ARG);
    kn__buf_free(&b);
}

static void test_get_records_parse_records_byte_exact(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__get_records_result_t r;
    json_object *o = J("{\"Records\":["
                       "{\"SequenceNumber\":\"1\",\"ApproximateArrivalTimestamp\":1795643871.039,"
                       "\"Data\":\"AAEC/w==\",\"PartitionKey\":\"a\"},"
                       "{\"PartitionKey\":\"b\\u00e9\",\"Data\":\"\",\"ApproximateArrivalTimestamp\":1795643872,"
                       "\"SequenceNumber\":\"49680564449946406687512674976983779736712723280286449666\","
                       "\"EncryptionType\":\"KMS\"},"
                       "{\"SequenceNumber\":\"3\",\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"c\"}],"
                       "\"NextShardIterator\":\"NEXT\",\"MillisBehindLatest\":12}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_OK);
    assert_int_equal(r.count, 3);
    assert_int_equal(r.records[0].data_len, 4);
    assert_memory_equal(r.records[0].data, "\x00\x01\x02\xff", 4);
    assert_string_equal(r.records[0].partition_key, "a");
    assert_string_equal(r.records[0].sequence_number, "1");
    assert_int_equal(r.records[0].arrival_ms, 1795643871039LL);
    assert_null(r.records[0].encryption_type);
    assert_int_equal(r.records[1].data_len, 0);
    assert_non_null(r.records[1].data);
    assert_int_equal(r.records[1].partition_key_len, 3);
    assert_string_equal(r.records[1].partition_key, "b\xc3\xa9");
    assert_int_equal(r.records[1].arrival_ms, 1795643872000LL);
    assert_string_equal(r.records[1].encryption_type, "KMS");
    assert_memory_equal(r.records[2].data, "hello", 5);
    assert_int_equal(r.records[2].arrival_ms, -1);
    assert_int_equal(r.millis_behind_latest, 12);
    assert_string_equal(r.next_iterator, "NEXT");
    assert_int_equal(r.child_count, 0);
    kn__get_records_result_free(&r);
    json_object_put(o);
}

static void test_get_records_parse_closed_shard_with_children(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__get_records_result_t r;
    json_object *o = J("{\"Records\":[],\"NextShardIterator\":null,\"MillisBehindLatest\":0,"
                       "\"ChildShards\":["
                       "{\"ShardId\":\"shardId-000000000002\",\"ParentShards\":[\"shardId-000000000000\"],"
                       "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"99\"}},"
                       "{\"ShardId\":\"shardId-000000000003\",\"ParentShards\":[\"shardId-000000000000\","
                       "\"shardId-000000000001\"],\"HashKeyRange\":{\"StartingHashKey\":\"100\","
                       "\"EndingHashKey\":\"340282366920938463463374607431768211455\"}}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_OK);
    assert_int_equal(r.count, 0);
    assert_null(r.next_iterator);
    assert_int_equal(r.millis_behind_latest, 0);
    assert_int_equal(r.child_count, 2);
    assert_string_equal(r.child_shards[0].shard_id, "shardId-000000000002");
    assert_int_equal(r.child_shards[0].parent_count, 1);
    assert_true(r.child_shards[0].end_hash.hi == 0 && r.child_shards[0].end_hash.lo == 99);
    assert_int_equal(r.child_shards[1].parent_count, 2);
    assert_string_equal(r.child_shards[1].parent_shards[1], "shardId-000000000001");
    assert_true(r.child_shards[1].start_hash.lo == 100);
    kn__get_records_result_free(&r);
    json_object_put(o);

    /* absent NextShardIterator and MillisBehindLatest */
    o = J("{\"Records\":[]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_OK);
    assert_null(r.next_iterator);
    assert_int_equal(r.millis_behind_latest, -1);
    kn__get_records_result_free(&r);
    json_object_put(o);
}

static void test_get_records_parse_errors_name_the_field(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__get_records_result_t r;
    json_object *o = J("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"aGVsbG8=\",\"PartitionKey\":\"a\"},"
                       "{\"SequenceNumber\":\"2\",\"Data\":\"not base64!\",\"PartitionKey\":\"a\"}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "GetRecords response: field \"Records[1].Data\" is not valid base64");
    assert_null(r.records);
    json_object_put(o);
    o = J("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\"}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Records[0].PartitionKey\" is missing");
    json_object_put(o);
    o = J("{\"Records\":[{\"SequenceNumber\":\"1\",\"Data\":\"\",\"PartitionKey\":\"a\","
          "\"ApproximateArrivalTimestamp\":\"2024-01-01\"}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Records[0].ApproximateArrivalTimestamp\" is not a number");
    json_object_put(o);
    o = J("{\"Records\":[],\"MillisBehindLatest\":1.5}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"MillisBehindLatest\" is not an integer");
    json_object_put(o);
    o = J("{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"x\",\"ParentShards\":[1],"
          "\"HashKeyRange\":{\"StartingHashKey\":\"0\",\"EndingHashKey\":\"1\"}}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "ChildShards[0].ParentShards[0]");
    json_object_put(o);
    o = J("{\"Records\":[],\"ChildShards\":[{\"ShardId\":\"x\",\"ParentShards\":[]}]}");
    assert_int_equal(kn__get_records_parse(o, &r, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"ChildShards[0].HashKeyRange\" is missing");
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_streams_build_prefers_next_token),
        cmocka_unit_test(test_list_streams_parse_appends_pages),
        cmocka_unit_test(test_list_streams_parse_wrong_types_name_the_field),
        cmocka_unit_test(test_describe_summary_kinesalite_shape),
        cmocka_unit_test(test_describe_summary_aws_shape_with_mode_and_record_size),
        cmocka_unit_test(test_describe_summary_errors_name_the_field),
        cmocka_unit_test(test_stream_ref_name_arn_or_both),
        cmocka_unit_test(test_list_shards_build_next_token_without_stream_name),
        cmocka_unit_test(test_list_shards_build_filters),
        cmocka_unit_test(test_list_shards_parse_parents_ranges_and_open_closed),
        cmocka_unit_test(test_list_shards_parse_errors_name_the_field),
        cmocka_unit_test(test_create_stream_provisioned_and_on_demand),
        cmocka_unit_test(test_management_builders),
        cmocka_unit_test(test_put_records_build_exact_body),
        cmocka_unit_test(test_put_records_build_with_arn),
        cmocka_unit_test(test_put_records_limits_reject_with_named_limit),
        cmocka_unit_test(test_put_records_partition_key_and_hash_key_validation),
        cmocka_unit_test(test_utf8_count),
        cmocka_unit_test(test_put_records_parse_mixed_results_in_order),
        cmocka_unit_test(test_put_records_parse_cleans_error_text),
        cmocka_unit_test(test_put_records_parse_rejects_inconsistent_responses),
        cmocka_unit_test(test_get_shard_iterator_all_types),
        cmocka_unit_test(test_get_shard_iterator_parse),
        cmocka_unit_test(test_get_records_build),
        cmocka_unit_test(test_get_records_parse_records_byte_exact),
        cmocka_unit_test(test_get_records_parse_closed_shard_with_children),
        cmocka_unit_test(test_get_records_parse_errors_name_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
