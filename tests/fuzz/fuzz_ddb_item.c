/*
 * DynamoDB items and responses on any JSON: kn__ddb_item_from_json (every
 * type, nested L and M, sets, numbers, base64 B), GetItem, Scan and
 * DescribeTable parsers. An item that parses converts back to JSON, which
 * parses to the same item; a copy serialises the same.
 */
#include "fuzz.h"
#include "json_input.h"

#include "dynamodb.h"
#include "err.h"

static char *item_text(const kn__ddb_item_t *it)
{
    json_object *j = kn__ddb_item_to_json(it);
    FUZZ_CHECK(j);
    char *s = strdup(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
    FUZZ_CHECK(s);
    json_object_put(j);
    return s;
}

static void check_roundtrip(const kn__ddb_item_t *it)
{
    kn_error_t err;
    kn__error_clear(&err);
    json_object *j = kn__ddb_item_to_json(it);
    FUZZ_CHECK(j);
    kn__ddb_item_t back = KN__DDB_ITEM_INIT;
    kn_err_t rc = kn__ddb_item_from_json(j, &back, "Fuzz", "Item", &err);
    if (rc != KN_ERR_OK)
        fprintf(stderr, "an item we wrote does not parse: %s\n", err.message);
    FUZZ_CHECK(rc == KN_ERR_OK);
    char *a = item_text(it), *b = item_text(&back);
    FUZZ_CHECK(strcmp(a, b) == 0);
    free(b);

    kn__ddb_item_t copy = KN__DDB_ITEM_INIT;
    FUZZ_CHECK(kn__ddb_item_copy(&copy, it, &err) == KN_ERR_OK);
    b = item_text(&copy);
    FUZZ_CHECK(strcmp(a, b) == 0);
    free(b);
    free(a);
    for (size_t i = 0; i < it->count; i++) {
        const kn__ddb_value_t *v = kn__ddb_item_get(it, it->attrs[i].name);
        FUZZ_CHECK(v != NULL);
        int64_t n;
        (void)kn__ddb_item_get_int64(it, it->attrs[i].name, &n, &err);
    }
    kn__ddb_item_clear(&copy);
    kn__ddb_item_clear(&back);
    json_object_put(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_object *o = fuzz_json(data, size);
    if (!o)
        return 0;
    kn_error_t err;
    kn__error_clear(&err);

    kn__ddb_item_t item = KN__DDB_ITEM_INIT;
    if (kn__ddb_item_from_json(o, &item, "Fuzz", "Item", &err) == KN_ERR_OK)
        check_roundtrip(&item);
    else
        FUZZ_CHECK(err.message[0] != '\0');
    kn__ddb_item_clear(&item);

    bool found = false;
    kn__error_clear(&err);
    if (kn__ddb_get_item_parse(o, &item, &found, &err) == KN_ERR_OK && found)
        check_roundtrip(&item);
    kn__ddb_item_clear(&item);

    kn__ddb_scan_page_t page;
    memset(&page, 0, sizeof(page));
    kn__error_clear(&err);
    if (kn__ddb_scan_parse(o, &page, &err) == KN_ERR_OK) {
        for (size_t i = 0; i < page.count; i++)
            check_roundtrip(&page.items[i]);
        check_roundtrip(&page.last_key);
    }
    kn__ddb_scan_page_free(&page);

    kn__ddb_table_desc_t desc;
    kn__error_clear(&err);
    if (kn__ddb_describe_table_parse(o, &desc, &err) == KN_ERR_OK) {
        FUZZ_CHECK(memchr(desc.status_str, '\0', sizeof(desc.status_str)) != NULL);
        FUZZ_CHECK(memchr(desc.hash_key, '\0', sizeof(desc.hash_key)) != NULL);
    }

    json_object_put(o);
    return 0;
}
