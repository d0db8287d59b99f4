/*
 * Kinesis response parsers on any JSON: GetRecords (base64 data, timestamps,
 * ChildShards with hash ranges), ListShards, PutRecords, DescribeStreamSummary,
 * ListStreams and GetShardIterator. Each either fills its result or fails with
 * KN_ERR_BAD_RESPONSE and a message; every view in a result is readable.
 */
#include "fuzz.h"
#include "json_input.h"

#include "err.h"
#include "kinesis_ops.h"

static void touch(const void *p, size_t n)
{
    /* Reading every byte lets ASan check the view. */
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ((const unsigned char *)p)[i];
    (void)sum;
}

static void touch_str(const char *s)
{
    if (s)
        touch(s, strlen(s) + 1);
}

static void check_err(kn_err_t rc, const kn_error_t *err)
{
    FUZZ_CHECK(rc == err->code);
    if (rc != KN_ERR_OK) {
        FUZZ_CHECK(rc == KN_ERR_BAD_RESPONSE || rc == KN_ERR_NOMEM);
        FUZZ_CHECK(err->message[0] != '\0');
        FUZZ_CHECK(memchr(err->message, '\0', sizeof(err->message)) != NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object *o = fuzz_json(data, size);
    if (!o)
        return 0;
    kn_error_t err;
    kn_err_t rc;

    kn__error_clear(&err);
    kn__get_records_result_t gr;
    rc = kn__get_records_parse(o, &gr, &err);
    check_err(rc, &err);
    if (rc == KN_ERR_OK) {
        for (size_t i = 0; i < gr.count; i++) {
            const kn__record_t *r = &gr.records[i];
            touch(r->data, r->data_len);
            touch(r->partition_key, r->partition_key_len);
            touch_str(r->sequence_number);
            touch_str(r->encryption_type);
        }
        touch_str(gr.next_iterator);
        for (size_t i = 0; i < gr.child_count; i++) {
            touch_str(gr.child_shards[i].shard_id);
            for (size_t j = 0; j < gr.child_shards[i].parent_count; j++)
                touch_str(gr.child_shards[i].parent_shards[j]);
        }
    }
    kn__get_records_result_free(&gr);

    kn__error_clear(&err);
    kn__shard_list_t sl = {0};
    char *next = NULL;
    rc = kn__list_shards_parse(o, &sl, &next, &err);
    check_err(rc, &err);
    for (size_t i = 0; i < sl.count; i++) {
        touch_str(sl.shards[i].shard_id);
        touch_str(sl.shards[i].parent_shard_id);
        touch_str(sl.shards[i].adjacent_parent_shard_id);
        touch_str(sl.shards[i].start_seq);
        touch_str(sl.shards[i].end_seq);
    }
    touch_str(next);
    free(next);
    kn__shard_list_free(&sl);

    /* PutRecords: the entry count the request had; try the true one and a wrong one. */
    json_object *recs = NULL;
    size_t n = 1;
    if (json_object_is_type(o, json_type_object) && json_object_object_get_ex(o, "Records", &recs) &&
        json_object_is_type(recs, json_type_array))
        n = json_object_array_length(recs);
    for (int pass = 0; pass < 2; pass++) {
        kn__error_clear(&err);
        kn__put_result_t pr = {0};
        rc = kn__put_records_parse(o, pass ? n + 1 : n, &pr, &err);
        check_err(rc, &err);
        if (pass)
            FUZZ_CHECK(rc != KN_ERR_OK);
        if (rc == KN_ERR_OK) {
            FUZZ_CHECK(pr.count == n);
            int64_t failed = 0;
            for (size_t i = 0; i < pr.count; i++) {
                const kn__put_result_entry_t *e = &pr.entries[i];
                touch_str(e->shard_id);
                touch_str(e->sequence_number);
                touch_str(e->error_code);
                touch_str(e->error_message);
                /* Each entry is a success (shard and sequence) or a failure (error code). */
                FUZZ_CHECK((e->error_code != NULL) != (e->sequence_number != NULL));
                failed += e->error_code != NULL;
            }
            FUZZ_CHECK(pr.failed_count == failed);
            touch_str(pr.encryption_type);
        }
        kn__put_result_free(&pr);
    }

    kn__error_clear(&err);
    kn__stream_summary_t ss;
    memset(&ss, 0, sizeof(ss));
    rc = kn__describe_stream_summary_parse(o, &ss, &err);
    check_err(rc, &err);
    if (rc == KN_ERR_OK) {
        touch_str(ss.name);
        touch_str(ss.arn);
        touch_str(ss.status_str);
        touch_str(ss.encryption_type);
        touch_str(ss.key_id);
    }
    kn__stream_summary_free(&ss);

    kn__error_clear(&err);
    kn__stream_names_t names = {0};
    bool more = false;
    next = NULL;
    rc = kn__list_streams_parse(o, &names, &more, &next, &err);
    check_err(rc, &err);
    for (size_t i = 0; i < names.count; i++)
        touch_str(names.names[i]);
    free(next);
    kn__stream_names_free(&names);

    kn__error_clear(&err);
    char *it = NULL;
    rc = kn__get_shard_iterator_parse(o, &it, &err);
    check_err(rc, &err);
    touch_str(it);
    free(it);

    json_object_put(o);
    return 0;
}
