/*
 * Logging: levels and debug contexts, and redaction of secrets before a line
 * reaches the application's callback.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "log.h"

static char last[8192];
static int n_lines;

static void capture(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque, (void)level, (void)ctx;
    snprintf(last, sizeof(last), "%s", msg);
    n_lines++;
}

static kn__logger_t *new_logger(void)
{
    last[0] = '\0';
    n_lines = 0;
    kn__logger_t *lg = kn__logger_new(capture, NULL, KN_LOG_TRACE, KN_DBG_ALL);
    assert_non_null(lg);
    return lg;
}

static void registered_secret_is_replaced_wherever_it_appears(void **state)
{
    (void)state;
    kn__logger_t *lg = new_logger();
    kn__logger_add_secret(lg, "wJalrXUtnFEMI/K7MDENG");
    kn__log(lg, KN_LOG_INFO, KN_DBG_CREDS, "a wJalrXUtnFEMI/K7MDENG b wJalrXUtnFEMI/K7MDENG");
    assert_int_equal(n_lines, 1);
    assert_string_equal(last, "a [redacted] b [redacted]");
    kn__logger_destroy(lg);
}

static void signature_and_security_token_are_cut_from_headers(void **state)
{
    (void)state;
    kn__logger_t *lg = new_logger();
    kn__log(lg, KN_LOG_TRACE, KN_DBG_HTTP,
            "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kinesis/aws4_request, "
            "SignedHeaders=host, Signature=0123abcd\nX-Amz-Security-Token: tokentokentoken\n");
    assert_null(strstr(last, "0123abcd"));
    assert_null(strstr(last, "tokentokentoken"));
    assert_non_null(strstr(last, "Credential=AKID/20150830")); /* the key id is not a secret */
    kn__logger_destroy(lg);
}

/*
 * A line longer than the formatting buffer is cut; a secret that straddles
 * the cut must not leave its first bytes behind.
 */
static void secret_cut_at_the_line_limit_leaves_no_part_of_it(void **state)
{
    (void)state;
    kn__logger_t *lg = new_logger();
    const char *secret = "ZQ9sessiontokenvalue0123456789abcdef";
    kn__logger_add_secret(lg, secret);
    char pad[4091];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    /* 4090 bytes of padding, then the secret: the buffer keeps 4095 bytes. */
    kn__log(lg, KN_LOG_INFO, KN_DBG_GENERIC, "%s%s and more", pad, secret);
    assert_int_equal(n_lines, 1);
    assert_null(strstr(last, "ZQ9"));
    assert_null(strstr(last, "ZQ9se"));
    size_t len = strlen(last);
    assert_true(len >= 5);
    assert_memory_equal(last + len - 5, "*****", 5);
    assert_memory_equal(last, "xxxxxxxx", 8);
    kn__logger_destroy(lg);
}

/* A line that was not cut is left alone even when it ends like the start of a secret. */
static void uncut_line_ending_like_a_secret_is_unchanged(void **state)
{
    (void)state;
    kn__logger_t *lg = new_logger();
    kn__logger_add_secret(lg, "ZQ9sessiontokenvalue");
    kn__log(lg, KN_LOG_INFO, KN_DBG_GENERIC, "ends with ZQ9");
    assert_string_equal(last, "ends with ZQ9");
    kn__logger_destroy(lg);
}

/*
 * Every credential refresh registers a new secret key and token; the list
 * stays bounded and keeps the newest.
 */
static void secret_list_is_bounded_and_keeps_the_newest(void **state)
{
    (void)state;
    kn__logger_t *lg = new_logger();
    char s[64];
    for (int i = 0; i < 500; i++) {
        snprintf(s, sizeof(s), "secret-%04d-value", i);
        kn__logger_add_secret(lg, s);
    }
    assert_true(kn__logger_secret_count(lg) <= 64);
    assert_true(kn__logger_secret_count(lg) >= 32);
    for (int i = 500 - 32; i < 500; i++) {
        snprintf(s, sizeof(s), "secret-%04d-value", i);
        kn__log(lg, KN_LOG_INFO, KN_DBG_CREDS, "<%s>", s);
        assert_string_equal(last, "<[redacted]>");
    }
    /* The same secret twice is kept once. */
    size_t n = kn__logger_secret_count(lg);
    kn__logger_add_secret(lg, "secret-0499-value");
    assert_int_equal(kn__logger_secret_count(lg), n);
    kn__logger_destroy(lg);
}

static void debug_needs_its_context_and_level_gates_the_rest(void **state)
{
    (void)state;
    last[0] = '\0';
    n_lines = 0;
    kn__logger_t *lg = kn__logger_new(capture, NULL, KN_LOG_DEBUG, KN_DBG_HTTP);
    assert_non_null(lg);
    KN_LOG(lg, KN_LOG_DEBUG, KN_DBG_CREDS, "hidden");
    KN_LOG(lg, KN_LOG_TRACE, KN_DBG_HTTP, "hidden");
    assert_int_equal(n_lines, 0);
    KN_LOG(lg, KN_LOG_DEBUG, KN_DBG_HTTP, "shown");
    KN_LOG(lg, KN_LOG_WARN, KN_DBG_CREDS, "shown too");
    assert_int_equal(n_lines, 2);
    assert_string_equal(last, "shown too");
    kn__logger_destroy(lg);

    uint32_t mask = 0;
    char err[128] = "";
    assert_int_equal(kn__log_parse_debug("http, sigv4", &mask, err, sizeof(err)), 0);
    assert_int_equal(mask, KN_DBG_HTTP | KN_DBG_SIGV4);
    assert_int_equal(kn__log_parse_debug("http,bogus", &mask, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "\"bogus\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(registered_secret_is_replaced_wherever_it_appears),
        cmocka_unit_test(signature_and_security_token_are_cut_from_headers),
        cmocka_unit_test(secret_cut_at_the_line_limit_leaves_no_part_of_it),
        cmocka_unit_test(uncut_line_ending_like_a_secret_is_unchanged),
        cmocka_unit_test(secret_list_is_bounded_and_keeps_the_newest),
        cmocka_unit_test(debug_needs_its_context_and_level_gates_the_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
