/*
 * Unit tests for common/ops/dynamodb.c: typed attribute values and items (set,
 * replace, get with type checks), the wire JSON both ways (including nested
 * L/M, sets and base64 binaries), request builders and response parsers on
 * hand-written JSON, and parse errors that name the attribute path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dynamodb.h"

static json_object *J(const char *s)
{
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

static const char *jtxt(json_object *o)
{
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

#define assert_err_contains(e, text) \
    do { \
        if (!strstr((e)->message, (text))) \
            fail_msg("message \"%s\" lacks \"%s\"", (e)->message, (text)); \
    } while (0)

static void test_set_get_every_scalar_type(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it = KN__DDB_ITEM_INIT;
    const char *s;
    int64_t n;
    bool b;
    const void *bin;
    size_t len;
    assert_int_equal(kn__ddb_item_set_s(&it, "leaseKey", "shardId-000000000001", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_int64(&it, "leaseCounter", -9223372036854775807LL - 1, &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_n(&it, "ratio", "1.5e3", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_b(&it, "blob", "\x00\xff", 2, &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_bool(&it, "done", true, &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_null(&it, "nothing", &e), KN_ERR_OK);
    assert_int_equal(it.count, 6);

    assert_int_equal(kn__ddb_item_get_s(&it, "leaseKey", &s, &e), KN_ERR_OK);
    assert_string_equal(s, "shardId-000000000001");
    assert_int_equal(kn__ddb_item_get_int64(&it, "leaseCounter", &n, &e), KN_ERR_OK);
    assert_true(n == INT64_MIN);
    assert_int_equal(kn__ddb_item_get_n(&it, "ratio", &s, &e), KN_ERR_OK);
    assert_string_equal(s, "1.5e3");
    assert_int_equal(kn__ddb_item_get_b(&it, "blob", &bin, &len, &e), KN_ERR_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(bin, "\x00\xff", 2);
    assert_int_equal(kn__ddb_item_get_bool(&it, "done", &b, &e), KN_ERR_OK);
    assert_true(b);
    assert_int_equal(kn__ddb_item_get(&it, "nothing")->type, KN__DDB_NULL);

    /* replacing keeps one attribute of that name */
    assert_int_equal(kn__ddb_item_set_int64(&it, "leaseKey", 7, &e), KN_ERR_OK);
    assert_int_equal(it.count, 6);
    assert_int_equal(kn__ddb_item_get_int64(&it, "leaseKey", &n, &e), KN_ERR_OK);
    assert_int_equal(n, 7);
    assert_true(kn__ddb_item_remove(&it, "leaseKey"));
    assert_false(kn__ddb_item_remove(&it, "leaseKey"));
    assert_int_equal(it.count, 5);
    kn__ddb_item_clear(&it);
    assert_int_equal(it.count, 0);
}

static void test_type_mismatch_and_missing_are_errors(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it = KN__DDB_ITEM_INIT;
    const char *s;
    int64_t n;
    bool b;
    assert_int_equal(kn__ddb_item_set_s(&it, "leaseCounter", "12", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_get_int64(&it, "leaseCounter", &n, &e), KN_ERR_BAD_RESPONSE);
    assert_string_equal(e.message, "attribute \"leaseCounter\" is S, expected N");
    assert_int_equal(kn__ddb_item_get_bool(&it, "leaseCounter", &b, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "expected BOOL");
    assert_int_equal(kn__ddb_item_get_s(&it, "owner", &s, &e), KN_ERR_NOT_FOUND);
    assert_string_equal(e.message, "attribute \"owner\" is missing");
    assert_null(s);

    assert_int_equal(kn__ddb_item_set_n(&it, "x", "1.5", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_get_int64(&it, "x", &n, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "not an integer within int64");
    assert_int_equal(kn__ddb_item_set_n(&it, "x", "9223372036854775808", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_get_int64(&it, "x", &n, &e), KN_ERR_BAD_RESPONSE);
    assert_int_equal(kn__ddb_item_set_n(&it, "x", "12abc", &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "is not a number");
    kn__ddb_item_clear(&it);
}

static void test_number_syntax(void **state)
{
    (void)state;
    static const char *good[] = {"0", "-1", "+2", "3.", ".5", "1e10", "-1.25E-7", "123456789012345678901234567890123456789"};
    static const char *bad[] = {"", "-", ".", "e5", "1e", "1e+", "1.2.3", "0x10", " 1", "1 ", "NaN", "Infinity"};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
        assert_true(kn__ddb_number_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
        if (kn__ddb_number_valid(bad[i], strlen(bad[i])))
            fail_msg("\"%s\" accepted as a number", bad[i]);
}

static void test_sets_lists_maps_to_json_and_back(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it = KN__DDB_ITEM_INIT, back;
    const char *parents[] = {"shardId-000000000000", "shardId-000000000001"};
    const char *nums[] = {"1", "2.5"};
    assert_int_equal(kn__ddb_item_set_ss(&it, "parentShardId", parents, 2, &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_ns(&it, "ns", nums, 2, &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_ss(&it, "empty", parents, 0, &e), KN_ERR_INVALID_ARG);
    const char *badnums[] = {"1", "x"};
    assert_int_equal(kn__ddb_item_set_ns(&it, "ns2", badnums, 2, &e), KN_ERR_INVALID_ARG);
    assert_err_contains(&e, "element 1 \"x\" is not a number");

    /* a list holding an S and a map {"b": B} */
    kn__ddb_value_t list = {0}, m = {0};
    list.type = KN__DDB_L;
    list.elems = calloc(2, sizeof(*list.elems));
    list.count = 2;
    list.elems[0].type = KN__DDB_S;
    list.elems[0].str = strdup("x");
    list.elems[0].len = 1;
    m.type = KN__DDB_M;
    m.map = calloc(1, sizeof(*m.map));
    assert_int_equal(kn__ddb_item_set_b(m.map, "b", "hi", 2, &e), KN_ERR_OK);
    list.elems[1] = m;
    assert_int_equal(kn__ddb_item_set_value(&it, "l", &list, &e), KN_ERR_OK);
    assert_null(list.elems); /* moved */

    json_object *o = kn__ddb_item_to_json(&it);
    assert_non_null(o);
    assert_string_equal(jtxt(o), "{\"parentShardId\":{\"SS\":[\"shardId-000000000000\",\"shardId-000000000001\"]},"
                                 "\"ns\":{\"NS\":[\"1\",\"2.5\"]},"
                                 "\"l\":{\"L\":[{\"S\":\"x\"},{\"M\":{\"b\":{\"B\":\"aGk=\"}}}]}}");
    assert_int_equal(kn__ddb_item_from_json(o, &back, "Test", "Item", &e), KN_ERR_OK);
    json_object *o2 = kn__ddb_item_to_json(&back);
    assert_string_equal(jtxt(o), jtxt(o2));
    const kn__ddb_value_t *l;
    assert_int_equal(kn__ddb_item_get_typed(&back, "l", KN__DDB_L, &l, &e), KN_ERR_OK);
    const void *bin;
    size_t len;
    assert_int_equal(kn__ddb_item_get_b(l->elems[1].map, "b", &bin, &len, &e), KN_ERR_OK);
    assert_memory_equal(bin, "hi", 2);

    /* deep copy is independent */
    kn__ddb_item_t cp;
    assert_int_equal(kn__ddb_item_copy(&cp, &back, &e), KN_ERR_OK);
    kn__ddb_item_clear(&back);
    json_object *o3 = kn__ddb_item_to_json(&cp);
    assert_string_equal(jtxt(o), jtxt(o3));
    json_object_put(o);
    json_object_put(o2);
    json_object_put(o3);
    kn__ddb_item_clear(&cp);
    kn__ddb_item_clear(&it);
}

static void test_from_json_errors_name_the_path(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it;
    static const struct {
        const char *json, *text;
    } cases[] = {
        {"{\"a\":{\"X\":\"1\"}}", "\"Item.a\" has unknown type \"X\""},
        {"{\"a\":{\"N\":\"one\"}}", "\"Item.a\" is not a number"},
        {"{\"a\":{\"S\":\"x\",\"N\":\"1\"}}", "\"Item.a\" is not an object with exactly one type key"},
        {"{\"a\":{\"S\":5}}", "\"Item.a\" is not a string"},
        {"{\"a\":{\"B\":\"!!\"}}", "\"Item.a\" is not valid base64"},
        {"{\"a\":{\"BOOL\":\"true\"}}", "\"Item.a\" (BOOL) is not a boolean"},
        {"{\"a\":{\"L\":[{\"S\":\"ok\"},{\"N\":true}]}}", "\"Item.a.L[1]\" is not a JSON string"},
        {"{\"a\":{\"M\":{\"b\":{\"SS\":[\"x\",3]}}}}", "\"Item.a.M.b.SS[1]\" is not a string"},
        {"{\"a\":{\"M\":[]}}", "\"Item.a.M\" is not an object"},
        {"{\"a\":\"plain\"}", "\"Item.a\" is not an object with exactly one type key"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        json_object *o = J(cases[i].json);
        assert_int_equal(kn__ddb_item_from_json(o, &it, "GetItem", "Item", &e), KN_ERR_BAD_RESPONSE);
        assert_int_equal(it.count, 0);
        if (!strstr(e.message, cases[i].text) || !strstr(e.message, "GetItem response"))
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, e.message, cases[i].text);
        json_object_put(o);
    }
}

/* A bad value below a path longer than the message buffer: the path is cut and marked "...". */
static void test_deep_path_is_cut_not_overrun(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it;
    char json[8192];
    size_t n = 0;
    for (int i = 0; i < 14; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"level_%02d_attribute_with_a_long_descriptive_name\":{\"M\":", i);
    n += (size_t)snprintf(json + n, sizeof(json) - n, "{\"x\":{\"N\":\"nan\"}}");
    for (int i = 0; i < 14; i++)
        n += (size_t)snprintf(json + n, sizeof(json) - n, "}}");
    assert_true(n < sizeof(json));
    json_object *o = J(json);
    assert_int_equal(kn__ddb_item_from_json(o, &it, "GetItem", "Item", &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "\"Item.level_00_attribute_with_a_long_descriptive_name.M.level_01"));
    assert_non_null(strstr(e.message, "...\" is not a number"));
    json_object_put(o);
}

static void test_builders(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn_buf_t b = KN_BUF_INIT;
    kn__ddb_item_t key = KN__DDB_ITEM_INIT, vals = KN__DDB_ITEM_INIT;
    assert_int_equal(kn__ddb_create_table_build(&b, "t1", "leaseKey", &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"AttributeDefinitions\":[{\"AttributeName\":\"leaseKey\","
                                "\"AttributeType\":\"S\"}],\"KeySchema\":[{\"AttributeName\":\"leaseKey\","
                                "\"KeyType\":\"HASH\"}],\"BillingMode\":\"PAY_PER_REQUEST\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__ddb_table_build(&b, "t1", &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__ddb_table_build(&b, "", &e), KN_ERR_INVALID_ARG);

    assert_int_equal(kn__ddb_item_set_s(&key, "leaseKey", "k1", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_get_item_build(&b, "t1", &key, true, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"Key\":{\"leaseKey\":{\"S\":\"k1\"}},\"ConsistentRead\":true}");
    kn__buf_reset(&b);

    assert_int_equal(kn__ddb_item_set_s(&vals, ":owner", "w1", &e), KN_ERR_OK);
    assert_int_equal(kn__ddb_item_set_int64(&vals, ":c", 3, &e), KN_ERR_OK);
    const char *names[] = {"#o", "leaseOwner", "#c", "leaseCounter", NULL};
    kn__ddb_cond_t cond = {"#o = :owner AND #c = :c", names, &vals};
    assert_int_equal(kn__ddb_put_item_build(&b, "t1", &key, &cond, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"Item\":{\"leaseKey\":{\"S\":\"k1\"}},"
                                "\"ConditionExpression\":\"#o = :owner AND #c = :c\","
                                "\"ExpressionAttributeNames\":{\"#o\":\"leaseOwner\",\"#c\":\"leaseCounter\"},"
                                "\"ExpressionAttributeValues\":{\":owner\":{\"S\":\"w1\"},\":c\":{\"N\":\"3\"}}}");
    kn__buf_reset(&b);
    kn__ddb_cond_t notexists = {"attribute_not_exists(leaseKey)", NULL, NULL};
    assert_int_equal(kn__ddb_put_item_build(&b, "t1", &key, &notexists, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"Item\":{\"leaseKey\":{\"S\":\"k1\"}},"
                                "\"ConditionExpression\":\"attribute_not_exists(leaseKey)\"}");
    kn__buf_reset(&b);
    assert_int_equal(kn__ddb_update_item_build(&b, "t1", &key, "SET #c = #c + :c", &cond, true, &e), KN_ERR_OK);
    json_object *o = J(b.data);
    assert_string_equal(json_object_get_string(json_object_object_get(o, "UpdateExpression")), "SET #c = #c + :c");
    assert_string_equal(json_object_get_string(json_object_object_get(o, "ReturnValues")), "ALL_NEW");
    assert_non_null(json_object_object_get(o, "ExpressionAttributeValues"));
    json_object_put(o);
    kn__buf_reset(&b);
    assert_int_equal(kn__ddb_update_item_build(&b, "t1", &key, "", NULL, false, &e), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__ddb_delete_item_build(&b, "t1", &key, NULL, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"Key\":{\"leaseKey\":{\"S\":\"k1\"}}}");
    kn__buf_reset(&b);
    kn__ddb_item_t empty = KN__DDB_ITEM_INIT;
    assert_int_equal(kn__ddb_delete_item_build(&b, "t1", &empty, NULL, &e), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__ddb_scan_build(&b, "t1", &key, 1, false, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"Limit\":1,\"ExclusiveStartKey\":{\"leaseKey\":{\"S\":\"k1\"}}}");
    kn__buf_reset(&b);
    assert_int_equal(kn__ddb_scan_build(&b, "t1", NULL, 0, true, &e), KN_ERR_OK);
    assert_string_equal(b.data, "{\"TableName\":\"t1\",\"ConsistentRead\":true}");
    kn__buf_free(&b);
    kn__ddb_item_clear(&key);
    kn__ddb_item_clear(&vals);
}

static void test_parsers(void **state)
{
    (void)state;
    kn_error_t e = {0};
    kn__ddb_item_t it;
    bool found = true;
    json_object *o = J("{}");
    assert_int_equal(kn__ddb_get_item_parse(o, &it, &found, &e), KN_ERR_OK);
    assert_false(found);
    json_object_put(o);
    o = J("{\"Item\":{\"leaseKey\":{\"S\":\"k\"},\"leaseCounter\":{\"N\":\"42\"}}}");
    assert_int_equal(kn__ddb_get_item_parse(o, &it, &found, &e), KN_ERR_OK);
    assert_true(found);
    int64_t n;
    assert_int_equal(kn__ddb_item_get_int64(&it, "leaseCounter", &n, &e), KN_ERR_OK);
    assert_int_equal(n, 42);
    kn__ddb_item_clear(&it);
    json_object_put(o);
    o = J("{\"Item\":[]}");
    assert_int_equal(kn__ddb_get_item_parse(o, &it, &found, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"Item\" is not an object");
    json_object_put(o);

    kn__ddb_scan_page_t p;
    o = J("{\"Items\":[{\"k\":{\"S\":\"a\"}},{\"k\":{\"S\":\"b\"}}],\"Count\":2,\"ScannedCount\":2,"
          "\"LastEvaluatedKey\":{\"k\":{\"S\":\"b\"}}}");
    assert_int_equal(kn__ddb_scan_parse(o, &p, &e), KN_ERR_OK);
    assert_int_equal(p.count, 2);
    const char *s;
    assert_int_equal(kn__ddb_item_get_s(&p.items[1], "k", &s, &e), KN_ERR_OK);
    assert_string_equal(s, "b");
    assert_int_equal(p.last_key.count, 1);
    kn__ddb_scan_page_free(&p);
    json_object_put(o);
    o = J("{\"Items\":[],\"Count\":0}");
    assert_int_equal(kn__ddb_scan_parse(o, &p, &e), KN_ERR_OK);
    assert_int_equal(p.count, 0);
    assert_int_equal(p.last_key.count, 0);
    kn__ddb_scan_page_free(&p);
    json_object_put(o);
    o = J("{\"Items\":[{\"k\":{\"S\":\"a\"}},{\"k\":{\"Q\":\"b\"}}]}");
    assert_int_equal(kn__ddb_scan_parse(o, &p, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "Scan response: attribute value \"Items[1].k\" has unknown type \"Q\"");
    assert_null(p.items);
    json_object_put(o);

    kn__ddb_table_desc_t d;
    o = J("{\"Table\":{\"TableName\":\"t\",\"TableStatus\":\"CREATING\",\"ItemCount\":0,"
          "\"KeySchema\":[{\"AttributeName\":\"leaseKey\",\"KeyType\":\"HASH\"}]}}");
    assert_int_equal(kn__ddb_describe_table_parse(o, &d, &e), KN_ERR_OK);
    assert_int_equal(d.status, KN__TABLE_CREATING);
    assert_string_equal(d.status_str, "CREATING");
    assert_string_equal(d.hash_key, "leaseKey");
    assert_int_equal(d.item_count, 0);
    json_object_put(o);
    o = J("{\"Table\":{\"TableName\":\"t\",\"TableStatus\":3}}");
    assert_int_equal(kn__ddb_describe_table_parse(o, &d, &e), KN_ERR_BAD_RESPONSE);
    assert_err_contains(&e, "\"TableStatus\" is not a string");
    json_object_put(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_every_scalar_type),
        cmocka_unit_test(test_type_mismatch_and_missing_are_errors),
        cmocka_unit_test(test_number_syntax),
        cmocka_unit_test(test_sets_lists_maps_to_json_and_back),
        cmocka_unit_test(test_from_json_errors_name_the_path),
        cmocka_unit_test(test_deep_path_is_cut_not_overrun),
        cmocka_unit_test(test_builders),
        cmocka_unit_test(test_parsers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
