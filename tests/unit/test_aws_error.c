/* Error responses from AWS, emulators and proxies: name, code, class and message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <locale.h>
#include <string.h>

#include <cmocka.h>

#include "aws.h"

static void parse(long status, const char *hdr, const char *body, kn_error_t *e)
{
    kn__error_clear(e);
    kn__aws_parse_error(status, hdr, body, body ? strlen(body) : 0, "req-1", e);
}

static void json_error_with_namespace_is_stripped_and_classified(void **state)
{
    (void)state;
    kn_error_t e;
    parse(400, NULL,
          "{\"__type\":\"com.amazonaws.kinesis.v20131202#ResourceNotFoundException\","
          "\"message\":\"Stream s under account 1 not found.\"}",
          &e);
    assert_int_equal(e.code, KN_ERR_NOT_FOUND);
    assert_int_equal(e.cls, KN__EC_FAIL);
    assert_false(e.retriable);
    assert_string_equal(e.aws_type, "ResourceNotFoundException");
    assert_int_equal(e.http_status, 400);
    assert_string_equal(e.request_id, "req-1");
    assert_non_null(strstr(e.message, "ResourceNotFoundException"));
    assert_non_null(strstr(e.message, "Stream s under account 1 not found."));
    assert_non_null(strstr(e.message, "HTTP 400"));
}

static void error_type_header_wins_and_loses_its_suffix(void **state)
{
    (void)state;
    kn_error_t e;
    parse(400, "ProvisionedThroughputExceededException:http://internal.amazon.com/coral/com.amazon.kinesis/",
          "{\"Message\":\"Rate exceeded for shard\"}", &e);
    assert_string_equal(e.aws_type, "ProvisionedThroughputExceededException");
    assert_int_equal(e.code, KN_ERR_THROTTLED);
    assert_int_equal(e.cls, KN__EC_RETRY);
    assert_true(e.retriable);
    assert_non_null(strstr(e.message, "Rate exceeded for shard"));
}

static void moto_xml_error_is_read(void **state)
{
    (void)state;
    kn_error_t e;
    parse(403, NULL,
          "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Type>Sender</Type>"
          "<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match "
          "&amp; so on</Message></Error></Errors><RequestId>x</RequestId></ErrorResponse>",
          &e);
    assert_string_equal(e.aws_type, "SignatureDoesNotMatch");
    assert_int_equal(e.code, KN_ERR_AUTH);
    assert_int_equal(e.cls, KN__EC_SKEW_CHECK);
    assert_non_null(strstr(e.message, "does not match & so on"));
}

static void html_page_from_a_proxy_is_retriable(void **state)
{
    (void)state;
    kn_error_t e;
    parse(502, NULL,
          "<!DOCTYPE html>\n<html><head><title>502 Bad\n Gateway</title></head><body><h1>Bad Gateway</h1>"
          "</body></html>",
          &e);
    assert_string_equal(e.aws_type, "");
    assert_int_equal(e.code, KN_ERR_SERVICE);
    assert_int_equal(e.cls, KN__EC_RETRY);
    assert_non_null(strstr(e.message, "HTTP 502"));
    assert_non_null(strstr(e.message, "HTML"));
    assert_non_null(strstr(e.message, "502 Bad Gateway"));
}

static void empty_and_garbage_bodies_give_clear_messages(void **state)
{
    (void)state;
    kn_error_t e;
    parse(503, NULL, "", &e);
    assert_int_equal(e.cls, KN__EC_RETRY);
    assert_non_null(strstr(e.message, "HTTP 503 with an empty body"));

    const char garbage[] = "\x01\x02\xff\xfe binary\x7f junk";
    parse(400, NULL, garbage, &e);
    assert_int_equal(e.cls, KN__EC_FAIL);
    for (const char *p = e.message; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);

    parse(500, NULL, "{\"__type\":\"Provis", &e); /* truncated JSON */
    assert_int_equal(e.cls, KN__EC_RETRY);
    parse(400, NULL, "<Error><Code>ValidationException", &e); /* unterminated XML */
    assert_string_equal(e.aws_type, "");
}

static void names_match_exactly_never_by_substring(void **state)
{
    (void)state;
    kn_err_t code;
    assert_int_equal(kn__aws_classify("ResourceNotFoundExceptionX", 400, &code), KN__EC_FAIL);
    assert_int_equal(code, KN_ERR_SERVICE);
    assert_int_equal(kn__aws_classify("NotThrottlingException", 400, &code), KN__EC_FAIL);
    assert_int_equal(kn__aws_classify("ThrottlingException", 400, &code), KN__EC_RETRY);
    assert_int_equal(code, KN_ERR_THROTTLED);
    assert_int_equal(kn__aws_classify("ExpiredTokenException", 400, &code), KN__EC_REFRESH_RETRY);
    assert_int_equal(code, KN_ERR_EXPIRED_TOKEN);
    assert_int_equal(kn__aws_classify("ConditionalCheckFailedException", 400, &code), KN__EC_FAIL);
    assert_int_equal(code, KN_ERR_CONDITION_FAILED);
    assert_int_equal(kn__aws_classify("ExpiredIteratorException", 400, &code), KN__EC_FAIL);
    assert_int_equal(code, KN_ERR_EXPIRED_ITERATOR);
    assert_int_equal(kn__aws_classify("", 429, &code), KN__EC_RETRY);
    assert_int_equal(code, KN_ERR_THROTTLED);
    assert_int_equal(kn__aws_classify(NULL, 500, &code), KN__EC_RETRY);
    assert_int_equal(kn__aws_classify("InvalidSignatureException", 400, &code), KN__EC_SKEW_CHECK);
}

static void error_name_helper_strips_prefix_and_suffix(void **state)
{
    (void)state;
    char out[64];
    const char *raw = "ns.v1#Name:http://x";
    kn__aws_error_name(raw, strlen(raw), out, sizeof(out));
    assert_string_equal(out, "Name");
    raw = "a#b#Name:http://x#y";
    kn__aws_error_name(raw, strlen(raw), out, sizeof(out));
    assert_string_equal(out, "Name");
    kn__aws_error_name("Plain", 5, out, sizeof(out));
    assert_string_equal(out, "Plain");
    kn__aws_error_name("abcdefgh", 8, out, 4); /* truncated safely */
    assert_string_equal(out, "abc");
}

static void backoff_is_full_jitter_within_the_cap(void **state)
{
    (void)state;
    for (int attempt = 0; attempt < 12; attempt++) {
        long ceiling = 100L << attempt;
        if (ceiling > 5000)
            ceiling = 5000;
        long max_seen = 0, min_seen = ceiling;
        for (int i = 0; i < 2000; i++) {
            long d = kn__aws_backoff_ms(attempt, 100, 5000);
            assert_true(d >= 0 && d <= ceiling);
            if (d > max_seen)
                max_seen = d;
            if (d < min_seen)
                min_seen = d;
        }
        /* Full jitter spreads over the whole range. */
        assert_true(max_seen > ceiling * 8 / 10);
        assert_true(min_seen < ceiling * 2 / 10);
    }
}

static void http_dates_parse(void **state)
{
    (void)state;
    /* The parse must not depend on the application's locale. */
    setlocale(LC_ALL, "");
    assert_int_equal(kn__http_date_parse("Wed, 25 Nov 2026 21:50:04 GMT"), 1795643404);
    assert_int_equal(kn__http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    assert_int_equal(kn__http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
    assert_int_equal(kn__http_date_parse("Sun Nov  6 08:49:37 1994"), 784111777);
    assert_int_equal(kn__http_date_parse("Sun, 06 Nov 1994 08:49:37 PST"), -1);
    assert_int_equal(kn__http_date_parse("Sun, 06 Foo 1994 08:49:37 GMT"), -1);
    assert_int_equal(kn__http_date_parse("Sun, 06 Nov 1994 25:49:37 GMT"), -1);
    assert_int_equal(kn__http_date_parse("yesterday"), -1);
    assert_int_equal(kn__http_date_parse(""), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_error_with_namespace_is_stripped_and_classified),
        cmocka_unit_test(error_type_header_wins_and_loses_its_suffix),
        cmocka_unit_test(moto_xml_error_is_read),
        cmocka_unit_test(html_page_from_a_proxy_is_retriable),
        cmocka_unit_test(empty_and_garbage_bodies_give_clear_messages),
        cmocka_unit_test(names_match_exactly_never_by_substring),
        cmocka_unit_test(error_name_helper_strips_prefix_and_suffix),
        cmocka_unit_test(backoff_is_full_jitter_within_the_cap),
        cmocka_unit_test(http_dates_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
