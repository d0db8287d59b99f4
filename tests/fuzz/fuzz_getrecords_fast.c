/*
 * The in-place GetRecords parser (common/ops/getrecords_parse.c) against the
 * general one (json-c + kn__get_records_parse) on any input: whenever the
 * fast parser accepts an answer, the general parser accepts it too and both
 * give the same records (data, keys, sequence numbers, times, encryption),
 * iterator and MillisBehindLatest; when it declines (KN_ERR_NOT_SUPPORTED)
 * the body is unchanged. It never reads past the body (an exact-size copy).
 */
#include "fuzz.h"
#include "json_input.h"

#include "buf.h"
#include "err.h"
#include "kinesis_ops.h"

static int same_str(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    kn_buf_t body = {copy, size, size};
    kn__get_records_result_t fast;
    kn_error_t err;
    kn__error_clear(&err);
    kn_err_t rc = kn__get_records_parse_body(&body, &fast, &err);
    if (rc == KN_ERR_NOT_SUPPORTED) {
        FUZZ_CHECK(body.data == copy && body.len == size);
        FUZZ_CHECK(size == 0 || memcmp(copy, data, size) == 0);
        FUZZ_CHECK(err.code == KN_ERR_OK);
        free(copy);
        return 0;
    }
    json_object *o = fuzz_json(data, size);
    FUZZ_CHECK(o != NULL); /* the fast parser accepted only JSON */
    kn__get_records_result_t gen;
    kn_error_t gerr;
    kn__error_clear(&gerr);
    kn_err_t grc = kn__get_records_parse(o, &gen, &gerr);
    if (rc != KN_ERR_OK) {
        /* A final error (bad base64): the general parser refuses it with the same message. */
        FUZZ_CHECK(rc == err.code && rc == KN_ERR_BAD_RESPONSE);
        FUZZ_CHECK(grc == KN_ERR_BAD_RESPONSE);
        FUZZ_CHECK(strcmp(err.message, gerr.message) == 0);
        free(body.data); /* not taken over on failure */
    } else {
        FUZZ_CHECK(grc == KN_ERR_OK);
        FUZZ_CHECK(body.data == NULL); /* moved into the result */
        FUZZ_CHECK(fast.count == gen.count);
        FUZZ_CHECK(fast.millis_behind_latest == gen.millis_behind_latest);
        FUZZ_CHECK(same_str(fast.next_iterator, gen.next_iterator));
        FUZZ_CHECK(fast.child_count == 0 && gen.child_count == 0);
        for (size_t i = 0; i < fast.count; i++) {
            const kn__record_t *a = &fast.records[i], *b = &gen.records[i];
            FUZZ_CHECK(a->data_len == b->data_len);
            FUZZ_CHECK(a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
            FUZZ_CHECK(a->partition_key_len == b->partition_key_len);
            FUZZ_CHECK(memcmp(a->partition_key, b->partition_key, a->partition_key_len) == 0);
            FUZZ_CHECK(a->partition_key[a->partition_key_len] == '\0');
            FUZZ_CHECK(same_str(a->sequence_number, b->sequence_number));
            FUZZ_CHECK(same_str(a->encryption_type, b->encryption_type));
            FUZZ_CHECK(a->arrival_ms == b->arrival_ms);
        }
    }
    if (grc == KN_ERR_OK)
        kn__get_records_result_free(&gen);
    kn__get_records_result_free(&fast);
    json_object_put(o);
    return 0;
}
