/*
 * Unit tests for common/base/conf.c: defaults, validation of every type with its
 * message, bounds, KPL/KCL aliases and unit conversion, the KPL host/port
 * composition, pass-through KPL/KCL names, .properties files, dup, the
 * kn_conf_get size protocol, secrets and the property list.
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

#include "conf.h"
#include "log.h"

/* ---------------------------------------------------------------- helpers */

static kn_conf_t *new_conf(void)
{
    kn_conf_t *c = kn_conf_new();
    assert_non_null(c);
    return c;
}

/* kn_conf_get into a static buffer; fails the test on error. */
static const char *get(const kn_conf_t *c, const char *name)
{
    static char buf[1024];
    size_t sz = sizeof(buf);
    kn_err_t err = kn_conf_get(c, name, buf, &sz);
    if (err != KN_ERR_OK)
        fail_msg("kn_conf_get(%s) = %s", name, kn_err2name(err));
    return buf;
}

static void set_ok(kn_conf_t *c, const char *name, const char *value)
{
    char err[512] = "";
    kn_err_t e = kn_conf_set(c, name, value, err, sizeof(err));
    if (e != KN_ERR_OK)
        fail_msg("kn_conf_set(%s, %s) = %s: %s", name, value, kn_err2name(e), err);
}

/* Expects set to fail with code and exactly the message msg. */
static void set_fails(kn_conf_t *c, const char *name, const char *value, kn_err_t code,
                      const char *msg)
{
    char err[512] = "";
    assert_int_equal(kn_conf_set(c, name, value, err, sizeof(err)), code);
    assert_string_equal(err, msg);
}

/* Writes a temporary .properties file; the caller unlinks and frees the path. */
static char *write_tmp(const char *content, size_t len)
{
    char *path = strdup("/tmp/kn_test_conf_XXXXXX");
    assert_non_null(path);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

/* Loads content as a properties file; returns the code and the message in err. */
static kn_err_t load_str(kn_conf_t *c, const char *content, char *err, size_t size, char **path_out)
{
    char *path = write_tmp(content, strlen(content));
    kn_err_t e = kn_conf_load_properties(c, path, err, size);
    unlink(path);
    if (path_out)
        *path_out = path;
    else
        free(path);
    return e;
}

/* ------------------------------------------------------------------ tests */

static void test_tables_are_consistent(void **state)
{
    (void)state;
    char err[512] = "";
    int rc = kn__conf_check_tables(err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
}

static void test_defaults(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    assert_string_equal(get(c, "aws.region"), "");
    assert_string_equal(get(c, "http.max.connections"), "24");
    assert_string_equal(get(c, "http.tls.verify"), "true");
    assert_string_equal(get(c, "http.request.timeout.ms"), "6000");
    assert_string_equal(get(c, "log.level"), "info");
    assert_string_equal(get(c, "debug"), "");
    assert_string_equal(get(c, "kinesis.endpoint"), "");
    assert_string_equal(get(c, "aws.secret.access.key"), ""); /* unset secret: nothing to hide */
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 24);
    assert_int_equal(kn__conf_int(c, KN_P_PUT_MAX_BYTES), 5242880);
    assert_true(kn__conf_bool(c, KN_P_TLS_VERIFY));
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_INFO);
    assert_int_equal(kn__conf_int(c, KN_P_DEBUG), 0);
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "");
    for (int i = 0; i < KN_P__COUNT; i++)
        assert_false(kn__conf_is_set(c, (kn__prop_t)i));
    void *op = (void *)1;
    assert_null(kn__conf_log_cb(c, &op));
    assert_null(op);
    kn_conf_destroy(c);
    kn_conf_destroy(NULL); /* no-op */
}

static void test_int_bounds_and_messages(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_fails(c, "http.max.connections", "0", KN_ERR_CONF_INVALID,
              "http.max.connections: \"0\" is out of range 1..256");
    set_fails(c, "http.max.connections", "257", KN_ERR_CONF_INVALID,
              "http.max.connections: \"257\" is out of range 1..256");
    set_fails(c, "http.max.connections", "-1", KN_ERR_CONF_INVALID,
              "http.max.connections: \"-1\" is out of range 1..256");
    set_fails(c, "http.max.connections", "abc", KN_ERR_CONF_INVALID,
              "http.max.connections: \"abc\" is not an integer (allowed: 1..256)");
    set_fails(c, "http.max.connections", "", KN_ERR_CONF_INVALID,
              "http.max.connections: \"\" is not an integer (allowed: 1..256)");
    set_fails(c, "http.max.connections", "1e2", KN_ERR_CONF_INVALID,
              "http.max.connections: \"1e2\" is not an integer (allowed: 1..256)");
    set_fails(c, "http.max.connections", "99999999999999999999", KN_ERR_CONF_INVALID,
              "http.max.connections: \"99999999999999999999\" is not an integer (allowed: 1..256)");
    /* Failures leave the old value. */
    assert_string_equal(get(c, "http.max.connections"), "24");
    assert_false(kn__conf_is_set(c, KN_P_MAX_CONNECTIONS));

    set_ok(c, "http.max.connections", "1");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 1);
    set_ok(c, "http.max.connections", "256");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 256);
    /* Surrounding blanks are ignored, a '+' sign allowed; the value is normalized. */
    set_ok(c, "http.max.connections", " +32 \t");
    assert_string_equal(get(c, "http.max.connections"), "32");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 32);
    assert_true(kn__conf_is_set(c, KN_P_MAX_CONNECTIONS));
    /* A large bound. */
    set_ok(c, "http.max.response.bytes", "1073741824");
    set_fails(c, "http.max.response.bytes", "1073741825", KN_ERR_CONF_INVALID,
              "http.max.response.bytes: \"1073741825\" is out of range 1024..1073741824");
    kn_conf_destroy(c);
}

static void test_bool_values(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    static const char *const f[] = {"false", "FALSE", "0", "no", "Off", " false "};
    static const char *const t[] = {"true", "True", "1", "YES", "on"};
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        set_ok(c, "http.tls.verify", f[i]);
        assert_false(kn__conf_bool(c, KN_P_TLS_VERIFY));
        assert_string_equal(get(c, "http.tls.verify"), "false");
    }
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        set_ok(c, "http.tls.verify", t[i]);
        assert_true(kn__conf_bool(c, KN_P_TLS_VERIFY));
        assert_string_equal(get(c, "http.tls.verify"), "true");
    }
    set_fails(
        c, "http.tls.verify", "maybe", KN_ERR_CONF_INVALID,
        "http.tls.verify: \"maybe\" is not a boolean (allowed: true/false, 1/0, yes/no, on/off)");
    set_fails(c, "http.tls.verify", "2", KN_ERR_CONF_INVALID,
              "http.tls.verify: \"2\" is not a boolean (allowed: true/false, 1/0, yes/no, on/off)");
    assert_true(kn__conf_bool(c, KN_P_TLS_VERIFY));
    kn_conf_destroy(c);
}

static void test_level_and_debug_values(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "log.level", "WARNING");
    assert_string_equal(get(c, "log.level"), "warn");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_WARN);
    set_ok(c, "log.level", "trace");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_TRACE);
    set_fails(c, "log.level", "loud", KN_ERR_CONF_INVALID,
              "log.level: \"loud\" is not a log level (allowed: error, warn/warning, info, debug, "
              "trace)");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_TRACE);

    set_ok(c, "debug", "http,sigv4");
    assert_int_equal(kn__conf_int(c, KN_P_DEBUG), KN_DBG_HTTP | KN_DBG_SIGV4);
    assert_string_equal(get(c, "debug"), "http,sigv4");
    set_ok(c, "debug", "all");
    assert_int_equal(kn__conf_int(c, KN_P_DEBUG), KN_DBG_ALL);
    set_fails(
        c, "debug", "http,bogus", KN_ERR_CONF_INVALID,
        "debug: \"http,bogus\": unknown debug context \"bogus\" (allowed: a comma-separated list "
        "of generic,conf,http,sigv4,creds,aws,kinesis,dynamodb,producer,consumer,lease,metrics or all)");
    assert_int_equal(kn__conf_int(c, KN_P_DEBUG), KN_DBG_ALL);
    kn_conf_destroy(c);
}

static void test_url_validation(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    static const char *const good[] = {
        "http://127.0.0.1:4567",  "https://kinesis.us-east-1.amazonaws.com",
        "HTTP://localhost",       "http://[::1]:4567/",
        "https://host/some/path", "",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        set_ok(c, "kinesis.endpoint", good[i]);
        assert_string_equal(get(c, "kinesis.endpoint"), good[i]);
    }
    static const struct {
        const char *v, *msg;
    } bad[] = {
        {"ftp://x", "kinesis.endpoint: \"ftp://x\" is not an http:// or https:// URL"},
        {"127.0.0.1:4567",
         "kinesis.endpoint: \"127.0.0.1:4567\" is not an http:// or https:// URL"},
        {"http://", "kinesis.endpoint: \"http://\" has no host"},
        {"http://:80", "kinesis.endpoint: \"http://:80\" has no host"},
        {"http://h:0", "kinesis.endpoint: \"http://h:0\" has a bad port (allowed: 1..65535)"},
        {"http://h:65536",
         "kinesis.endpoint: \"http://h:65536\" has a bad port (allowed: 1..65535)"},
        {"http://h:x", "kinesis.endpoint: \"http://h:x\" has a bad port (allowed: 1..65535)"},
        {"http://h:", "kinesis.endpoint: \"http://h:\" has a bad port (allowed: 1..65535)"},
        {"http://u:p@h",
         "kinesis.endpoint: \"http://u:p@h\" contains user information (credentials "
         "do not belong in an endpoint)"},
        {"http://h/a b",
         "kinesis.endpoint: \"http://h/a b\" contains a space or control character"},
        {"http://h?x=1",
         "kinesis.endpoint: \"http://h?x=1\" has a query or fragment (an endpoint is "
         "scheme://host[:port][/path])"},
        {"http://[::1", "kinesis.endpoint: \"http://[::1\" has a malformed [IPv6] host"},
    };
    set_ok(c, "kinesis.endpoint", "http://keep:1");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        set_fails(c, "kinesis.endpoint", bad[i].v, KN_ERR_CONF_INVALID, bad[i].msg);
    assert_string_equal(get(c, "kinesis.endpoint"), "http://keep:1");
    /* Blanks around a URL are dropped. */
    set_ok(c, "dynamodb.endpoint", "  http://127.0.0.1:4568  ");
    assert_string_equal(kn__conf_str(c, KN_P_DYNAMODB_ENDPOINT), "http://127.0.0.1:4568");
    kn_conf_destroy(c);
}

static void test_strings_reject_line_breaks_without_leaking_secrets(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "aws.region", "eu-west-1");
    set_fails(c, "aws.region", "eu\nwest", KN_ERR_CONF_INVALID,
              "aws.region: \"eu\\nwest\" contains a line break (not allowed)");
    assert_string_equal(get(c, "aws.region"), "eu-west-1");
    char err[512] = "";
    assert_int_equal(kn_conf_set(c, "aws.secret.access.key", "SeCrEt\r\nX", err, sizeof(err)),
                     KN_ERR_CONF_INVALID);
    assert_null(strstr(err, "SeCrEt"));
    assert_string_equal(err,
                        "aws.secret.access.key: [redacted] contains a line break (not allowed)");
    /* Strings keep their blanks (Java semantics). */
    set_ok(c, "aws.profile", " p ");
    assert_string_equal(get(c, "aws.profile"), " p ");
    kn_conf_destroy(c);
}

static void test_secrets_are_redacted_in_get(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "aws.secret.access.key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    set_ok(c, "aws.session.token", "tok3n-value");
    set_ok(c, "aws.access.key.id", "AKIDEXAMPLE");
    assert_string_equal(get(c, "aws.secret.access.key"), "[redacted]");
    assert_string_equal(get(c, "aws.session.token"), "[redacted]");
    assert_string_equal(get(c, "aws.access.key.id"), "AKIDEXAMPLE"); /* not a secret */
    /* The internal getter hands the real value to the credential code. */
    assert_string_equal(kn__conf_str(c, KN_P_SECRET_ACCESS_KEY),
                        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    /* A secret pass-through name too. */
    set_ok(c, "ProxyPassword", "hunter22");
    assert_string_equal(get(c, "ProxyPassword"), "[redacted]");
    assert_string_equal(kn__conf_extra(c, "ProxyPassword"), "hunter22");
    kn_conf_destroy(c);
}

static void test_unknown_names(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_fails(c, "no.such.thing", "1", KN_ERR_CONF_UNKNOWN,
              "unknown property \"no.such.thing\" (kn_conf_list() lists them all)");
    set_fails(c, "HTTP.MAX.CONNECTIONS", "1", KN_ERR_CONF_UNKNOWN,
              "unknown property \"HTTP.MAX.CONNECTIONS\" (did you mean \"http.max.connections\"? "
              "names are case-sensitive)");
    set_fails(c, "maxConnections", "1", KN_ERR_CONF_UNKNOWN,
              "unknown property \"maxConnections\" (did you mean \"MaxConnections\"? names are "
              "case-sensitive)");
    set_fails(c, "", "1", KN_ERR_CONF_UNKNOWN,
              "unknown property \"\" (kn_conf_list() lists them all)");
    char buf[8];
    size_t sz = sizeof(buf);
    assert_int_equal(kn_conf_get(c, "no.such.thing", buf, &sz), KN_ERR_CONF_UNKNOWN);
    char err[128] = "";
    assert_int_equal(kn_conf_set(c, NULL, "x", err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_conf_set(c, "aws.region", NULL, err, sizeof(err)), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_conf_set(NULL, "aws.region", "x", NULL, 0), KN_ERR_INVALID_ARG);
    kn_conf_destroy(c);
}

static void test_kpl_and_kcl_aliases(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "Region", "eu-central-1");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "eu-central-1");
    set_ok(c, "regionName", "us-west-2");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "us-west-2");
    assert_string_equal(get(c, "Region"), "us-west-2");

    set_ok(c, "MaxConnections", "32");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 32);
    set_fails(c, "MaxConnections", "0", KN_ERR_CONF_INVALID,
              "MaxConnections (KPL name of http.max.connections): \"0\" is out of range 1..256");
    set_ok(c, "RequestTimeout", "7000"); /* KPL milliseconds = our milliseconds */
    assert_int_equal(kn__conf_int(c, KN_P_REQUEST_TIMEOUT_MS), 7000);
    set_ok(c, "ConnectTimeout", "1500");
    assert_int_equal(kn__conf_int(c, KN_P_CONNECT_TIMEOUT_MS), 1500);
    set_ok(c, "VerifyCertificate", "false");
    assert_false(kn__conf_bool(c, KN_P_TLS_VERIFY));
    set_ok(c, "CaCertFile", "/etc/ssl/ca.pem");
    assert_string_equal(kn__conf_str(c, KN_P_CA_BUNDLE), "/etc/ssl/ca.pem");
    set_ok(c, "CollectionMaxCount", "100");
    assert_int_equal(kn__conf_int(c, KN_P_PUT_MAX_RECORDS), 100);
    set_ok(c, "CollectionMaxSize", "52224");
    assert_int_equal(kn__conf_int(c, KN_P_PUT_MAX_BYTES), 52224);

    /* The KPL's LogLevel values: info, warning, error. */
    set_ok(c, "LogLevel", "warning");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_WARN);
    set_ok(c, "LogLevel", "error");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_ERROR);
    set_ok(c, "LogLevel", "info");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_INFO);
    set_fails(c, "LogLevel", "verbose", KN_ERR_CONF_INVALID,
              "LogLevel (KPL name of log.level): \"verbose\" is not a log level (allowed: error, "
              "warn/warning, info, debug, trace)");

    /* The KCL's kinesisEndpoint is a URL; the KPL's KinesisEndpoint (other case) a host. */
    set_ok(c, "kinesisEndpoint", "http://127.0.0.1:4567");
    assert_string_equal(kn__conf_str(c, KN_P_KINESIS_ENDPOINT), "http://127.0.0.1:4567");
    set_fails(c, "kinesisEndpoint", "localhost", KN_ERR_CONF_INVALID,
              "kinesisEndpoint (KCL name of kinesis.endpoint): \"localhost\" is not an http:// or "
              "https:// URL");
    set_ok(c, "dynamoDBEndpoint", "http://127.0.0.1:4568");
    assert_string_equal(kn__conf_str(c, KN_P_DYNAMODB_ENDPOINT), "http://127.0.0.1:4568");
    /* Aliases are case-sensitive. */
    set_fails(c, "region", "x", KN_ERR_CONF_UNKNOWN,
              "unknown property \"region\" (did you mean \"Region\"? names are case-sensitive)");
    kn_conf_destroy(c);
}

static void test_kpl_endpoint_host_and_port_compose_in_either_order(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    /* Host then port. */
    set_ok(c, "KinesisEndpoint", "localhost");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://localhost");
    set_ok(c, "KinesisPort", "4567");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://localhost:4567");
    assert_string_equal(get(c, "KinesisEndpoint"), "localhost");
    assert_string_equal(get(c, "KinesisPort"), "4567");
    kn_conf_destroy(c);

    /* Port then host; the port alone changes nothing. */
    c = new_conf();
    set_ok(c, "KinesisPort", "8443");
    assert_string_equal(get(c, "kinesis.endpoint"), "");
    assert_false(kn__conf_is_set(c, KN_P_KINESIS_ENDPOINT));
    set_ok(c, "KinesisEndpoint", "kinesis.example.com");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://kinesis.example.com:8443");
    /* Back to 443: the default port is left out of the URL. */
    set_ok(c, "KinesisPort", "443");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://kinesis.example.com");

    /* Bad values name the alias, the property and what is allowed; nothing changes. */
    set_fails(c, "KinesisEndpoint", "http://x:1", KN_ERR_CONF_INVALID,
              "KinesisEndpoint (KPL name of kinesis.endpoint): \"http://x:1\" is not a host name "
              "(allowed: a host name or IPv4 address without scheme, port or path; give a URL to "
              "kinesis.endpoint instead)");
    set_fails(c, "KinesisPort", "0", KN_ERR_CONF_INVALID,
              "KinesisPort (KPL name of kinesis.endpoint): \"0\" is out of range 1..65535");
    set_fails(
        c, "KinesisPort", "x", KN_ERR_CONF_INVALID,
        "KinesisPort (KPL name of kinesis.endpoint): \"x\" is not an integer (allowed: 1..65535)");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://kinesis.example.com");

    /* An explicit URL wins over the KPL host, and a later port does not undo it. */
    set_ok(c, "kinesis.endpoint", "http://127.0.0.1:4567");
    set_ok(c, "KinesisPort", "9999");
    assert_string_equal(get(c, "kinesis.endpoint"), "http://127.0.0.1:4567");
    assert_string_equal(get(c, "KinesisEndpoint"), "");

    /* An empty host returns the endpoint to its default. */
    set_ok(c, "KinesisEndpoint", "h");
    assert_string_equal(get(c, "kinesis.endpoint"), "https://h:9999");
    set_ok(c, "KinesisEndpoint", "");
    assert_string_equal(get(c, "kinesis.endpoint"), "");
    assert_false(kn__conf_is_set(c, KN_P_KINESIS_ENDPOINT));

    /* STS works the same way and is independent of Kinesis. */
    set_ok(c, "StsPort", "5000");
    set_ok(c, "StsEndpoint", "127.0.0.1");
    assert_string_equal(get(c, "sts.endpoint"), "https://127.0.0.1:5000");
    assert_string_equal(get(c, "kinesis.endpoint"), "");
    kn_conf_destroy(c);
}

/* The seconds -> milliseconds conversion an alias row like KCL timeoutInSeconds uses. */
static void test_seconds_alias_conversion(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    char err[512] = "";
    assert_int_equal(kn__conf_set_as(c, "timeoutInSeconds", KN_P_REQUEST_TIMEOUT_MS,
                                     KN__CONV_SEC_TO_MS, "30", err, sizeof(err)),
                     KN_ERR_OK);
    assert_int_equal(kn__conf_int(c, KN_P_REQUEST_TIMEOUT_MS), 30000);
    /* Bounds are shown in the alias's unit: 100..600000 ms is 1..600 s. */
    assert_int_equal(kn__conf_set_as(c, "timeoutInSeconds", KN_P_REQUEST_TIMEOUT_MS,
                                     KN__CONV_SEC_TO_MS, "601", err, sizeof(err)),
                     KN_ERR_CONF_INVALID);
    assert_string_equal(err, "timeoutInSeconds: \"601\" is out of range 1..600 seconds");
    assert_int_equal(kn__conf_set_as(c, "timeoutInSeconds", KN_P_REQUEST_TIMEOUT_MS,
                                     KN__CONV_SEC_TO_MS, "0", err, sizeof(err)),
                     KN_ERR_CONF_INVALID);
    assert_string_equal(err, "timeoutInSeconds: \"0\" is out of range 1..600 seconds");
    assert_int_equal(kn__conf_set_as(c, "timeoutInSeconds", KN_P_REQUEST_TIMEOUT_MS,
                                     KN__CONV_SEC_TO_MS, "1.5", err, sizeof(err)),
                     KN_ERR_CONF_INVALID);
    assert_string_equal(err, "timeoutInSeconds: \"1.5\" is not an integer number of seconds "
                             "(allowed: 1..600)");
    /* No overflow on huge values. */
    assert_int_equal(kn__conf_set_as(c, "t", KN_P_REQUEST_TIMEOUT_MS, KN__CONV_SEC_TO_MS,
                                     "9223372036854775807", err, sizeof(err)),
                     KN_ERR_CONF_INVALID);
    assert_int_equal(kn__conf_int(c, KN_P_REQUEST_TIMEOUT_MS), 30000);
    kn_conf_destroy(c);
}

static void test_pass_through_kpl_kcl_names(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    /* Known but not implemented yet: unset reads back empty. */
    assert_string_equal(get(c, "streamName"), "");
    assert_null(kn__conf_extra(c, "streamName"));
    set_ok(c, "streamName", "my-stream");
    set_ok(c, "executableName", "node app.js");
    set_ok(c, "AWSCredentialsProvider", "DefaultCredentialsProvider");
    set_ok(c, "ThreadingModel", "POOLED");
    assert_string_equal(get(c, "streamName"), "my-stream");
    assert_string_equal(kn__conf_extra(c, "executableName"), "node app.js");
    assert_string_equal(kn__conf_extra(c, "ThreadingModel"), "POOLED");
    assert_null(kn__conf_extra(c, "AggregationMaxSize")); /* a real alias now */
    set_ok(c, "MetricsLevel", "none");                    /* so is this one */
    assert_null(kn__conf_extra(c, "MetricsLevel"));
    /* Not a pass-through name: */
    assert_null(kn__conf_extra(c, "http.max.connections"));
    assert_null(kn__conf_extra(c, "bogus"));
    kn_conf_destroy(c);
}

/* A choice takes one of its words in any case, reads back lower-case, and names the words when wrong. */
static void test_choice_properties(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    assert_string_equal(get(c, "metrics.level"), "detailed");
    assert_int_equal(kn__conf_int(c, KN_P_METRICS_LEVEL), 2);
    set_ok(c, "metricsLevel", "SUMMARY"); /* the KCL's spelling */
    assert_string_equal(get(c, "metrics.level"), "summary");
    assert_int_equal(kn__conf_int(c, KN_P_METRICS_LEVEL), 1);
    set_ok(c, "MetricsGranularity", "stream");
    assert_int_equal(kn__conf_int(c, KN_P_METRICS_GRANULARITY), 1);
    char err[256];
    assert_int_equal(kn_conf_set(c, "metrics.granularity", "shards", err, sizeof(err)), KN_ERR_CONF_INVALID);
    assert_non_null(strstr(err, "global|stream|shard"));
    assert_non_null(strstr(err, "shards"));
    assert_int_equal(kn_conf_set(c, "metrics.level", "", err, sizeof(err)), KN_ERR_CONF_INVALID);
    assert_int_equal(kn__conf_int(c, KN_P_METRICS_GRANULARITY), 1); /* unchanged by the refusal */
    set_ok(c, "MetricsUploadDelay", "5000");
    assert_int_equal(kn__conf_int(c, KN_P_METRICS_INTERVAL_MS), 5000);
    set_ok(c, "CloudwatchEndpoint", "monitoring.example.com");
    assert_string_equal(get(c, "cloudwatch.endpoint"), "https://monitoring.example.com");
    kn_conf_destroy(c);
}

static void test_get_size_protocol(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "aws.region", "ap-southeast-2"); /* 14 chars */
    size_t sz = 0;
    assert_int_equal(kn_conf_get(c, "aws.region", NULL, &sz), KN_ERR_OK);
    assert_int_equal(sz, 15);

    char buf[32];
    memset(buf, 'Z', sizeof(buf));
    sz = 15;
    assert_int_equal(kn_conf_get(c, "aws.region", buf, &sz), KN_ERR_OK);
    assert_int_equal(sz, 15);
    assert_string_equal(buf, "ap-southeast-2");
    assert_int_equal(buf[15], 'Z'); /* nothing written past the value */

    /* Too small: truncated and terminated, the size needed returned, and an error. */
    memset(buf, 'Z', sizeof(buf));
    sz = 5;
    assert_int_equal(kn_conf_get(c, "aws.region", buf, &sz), KN_ERR_TOO_LARGE);
    assert_int_equal(sz, 15);
    assert_string_equal(buf, "ap-s");
    assert_int_equal(buf[5], 'Z');

    sz = 0;
    assert_int_equal(kn_conf_get(c, "aws.region", buf, &sz), KN_ERR_TOO_LARGE);
    assert_int_equal(sz, 15);

    /* Secrets report the size of the placeholder, not of the secret. */
    set_ok(c, "aws.secret.access.key", "a-rather-long-secret-value-here-0123456789");
    sz = 0;
    assert_int_equal(kn_conf_get(c, "aws.secret.access.key", NULL, &sz), KN_ERR_OK);
    assert_int_equal(sz, strlen("[redacted]") + 1);

    assert_int_equal(kn_conf_get(NULL, "aws.region", buf, &sz), KN_ERR_INVALID_ARG);
    assert_int_equal(kn_conf_get(c, "aws.region", buf, NULL), KN_ERR_INVALID_ARG);
    kn_conf_destroy(c);
}

static void dummy_log(void *opaque, kn_log_level_t level, const char *ctx, const char *message)
{
    (void)opaque;
    (void)level;
    (void)ctx;
    (void)message;
}

static void test_dup_is_deep_and_independent(void **state)
{
    (void)state;
    int token;
    kn_conf_t *c = new_conf();
    set_ok(c, "aws.region", "eu-west-3");
    set_ok(c, "aws.secret.access.key", "s3cr3t-value");
    set_ok(c, "streamName", "s1");
    set_ok(c, "KinesisEndpoint", "localhost");
    kn_conf_set_log_cb(c, dummy_log, &token);

    kn_conf_t *d = kn_conf_dup(c);
    assert_non_null(d);
    /* Changing the original does not touch the copy, and vice versa. */
    set_ok(c, "aws.region", "us-east-2");
    set_ok(c, "streamName", "s2");
    set_ok(d, "http.max.connections", "7");
    assert_string_equal(kn__conf_str(d, KN_P_REGION), "eu-west-3");
    assert_string_equal(kn__conf_extra(d, "streamName"), "s1");
    assert_string_equal(kn__conf_str(d, KN_P_SECRET_ACCESS_KEY), "s3cr3t-value");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 24);
    assert_true(kn__conf_is_set(d, KN_P_REGION));
    /* The KPL host travels with the copy: a port set on the copy recomposes from it. */
    set_ok(d, "KinesisPort", "4567");
    assert_string_equal(kn__conf_str(d, KN_P_KINESIS_ENDPOINT), "https://localhost:4567");
    assert_string_equal(kn__conf_str(c, KN_P_KINESIS_ENDPOINT), "https://localhost");
    void *op = NULL;
    assert_ptr_equal(kn__conf_log_cb(d, &op), dummy_log);
    assert_ptr_equal(op, &token);
    kn_conf_set_log_cb(c, NULL, &token);
    assert_null(kn__conf_log_cb(c, &op));
    assert_null(op);
    kn_conf_destroy(c);
    kn_conf_destroy(d);
    assert_null(kn_conf_dup(NULL));
}

static void test_list_documents_every_property(void **state)
{
    (void)state;
    char *list = kn_conf_list();
    assert_non_null(list);
    /* Header and a full row: name, type, default, range, aliases, doc. */
    assert_non_null(strstr(list, "NAME"));
    assert_non_null(strstr(list, "DESCRIPTION"));
    const char *row = strstr(list, "http.max.connections ");
    assert_non_null(row);
    const char *eol = strchr(row, '\n');
    assert_non_null(eol);
    char line[1024];
    snprintf(line, sizeof(line), "%.*s", (int)(eol - row), row);
    assert_non_null(strstr(line, " int "));
    assert_non_null(strstr(line, " 24 "));
    assert_non_null(strstr(line, " 1..256 "));
    assert_non_null(strstr(line, "MaxConnections (KPL)"));
    assert_non_null(strstr(line, "Maximum concurrent HTTP connections per client"));
    /* Every property, alias and pass-through name appears. */
    static const char *const names[] = {
        "aws.region",
        "aws.secret.access.key",
        "log.level",
        "debug",
        "kinesis.putrecords.max.bytes",
        "regionName (KCL)",
        "KinesisEndpoint (KPL, host)",
        "KinesisPort (KPL, port)",
        "kinesisEndpoint (KCL)",
        "dynamoDBEndpoint (KCL)",
        "executableName",
        "ProxyPassword",
        "AggregationMaxSize",
        "failoverTimeMillis",
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (!strstr(list, names[i]))
            fail_msg("kn_conf_list() lacks %s", names[i]);
    }
    /* A secret's row says it is secret and shows only its (empty) default. */
    row = strstr(list, "aws.secret.access.key ");
    assert_non_null(row);
    eol = strchr(row, '\n');
    snprintf(line, sizeof(line), "%.*s", (int)(eol - row), row);
    assert_non_null(strstr(line, " secret "));
    assert_non_null(strstr(line, "\"\""));
    assert_non_null(strstr(line, "never shown"));
    kn_free(list);
}

/* ------------------------------------------------------ .properties files */

static void test_properties_syntax(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    char err[512] = "";
    const char *file =
        "# a comment\n"
        "! another comment\n"
        "\n"
        "   \t\n"
        "aws.region=eu-north-1\n"
        "   http.max.connections : 40\n" /* leading blanks, ':' with blanks */
        "aws.profile\tprof\n"            /* whitespace separator */
        "log.level = \\\n"               /* continuation; next line's blanks dropped */
        "      warning\n"
        "# comment ending in a backslash does not continue \\\n"
        "streamName = a\\tb\\u00e9\\u4e2d\\uD83D\\uDE00\\n\n" /* escapes, surrogate pair */
        "applicationName=x\\:y\\=z\\\\\n" /* escaped separators and a backslash */
        "workerId = w \n"                 /* trailing blank kept for strings */
        "executableName=one\\\n"
        "  two\\\n"
        "three\n"
        "tableName=ends-with-backslash\\\\\n" /* even count: no continuation */
        "consumerName=\r\n"                   /* empty value, CRLF */
        "processingLanguage:python\r"         /* old Mac line end */
        "debug http,creds\n"
        "regionName"; /* key without value at EOF */
    /* regionName with an empty value sets aws.region to "": put it before a later check. */
    assert_int_equal(load_str(c, file, err, sizeof(err), NULL), KN_ERR_OK);
    assert_string_equal(err, "");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "");
    assert_int_equal(kn__conf_int(c, KN_P_MAX_CONNECTIONS), 40);
    assert_string_equal(kn__conf_str(c, KN_P_PROFILE), "prof");
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_WARN);
    assert_string_equal(kn__conf_extra(c, "streamName"),
                        "a\tb\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\n");
    assert_string_equal(kn__conf_str(c, KN_P_C_APP_NAME), "x:y=z\\");
    assert_string_equal(kn__conf_str(c, KN_P_C_WORKER_ID), "w ");
    assert_string_equal(kn__conf_extra(c, "executableName"), "onetwothree");
    assert_string_equal(kn__conf_str(c, KN_P_C_TABLE_NAME), "ends-with-backslash\\");
    assert_string_equal(kn__conf_extra(c, "consumerName"), "");
    assert_string_equal(kn__conf_extra(c, "processingLanguage"), "python");
    assert_int_equal(kn__conf_int(c, KN_P_DEBUG), KN_DBG_HTTP | KN_DBG_CREDS);
    kn_conf_destroy(c);
}

static void test_properties_kpl_file(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    char err[512] = "";
    /* As a KPL default_config.properties might be edited for a local test. */
    const char *file = "AggregationEnabled = true\n"
                       "AggregationMaxSize = 51200\n"
                       "KinesisPort = 4567\n"
                       "ConnectTimeout = 6000\n"
                       "LogLevel = warning\n"
                       "MaxConnections = 24\n"
                       "RecordMaxBufferedTime = 250\n"
                       "Region = us-east-1\n"
                       "RequestTimeout = 6000\n"
                       "VerifyCertificate = false\n"
                       "KinesisEndpoint = localhost\n";
    assert_int_equal(load_str(c, file, err, sizeof(err), NULL), KN_ERR_OK);
    assert_string_equal(kn__conf_str(c, KN_P_KINESIS_ENDPOINT), "https://localhost:4567");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "us-east-1");
    assert_false(kn__conf_bool(c, KN_P_TLS_VERIFY));
    assert_int_equal(kn__conf_int(c, KN_P_LOG_LEVEL), KN_LOG_WARN);
    assert_int_equal(kn__conf_int(c, KN_P_P_BUFFERED_MS), 250);
    assert_true(kn__conf_bool(c, KN_P_P_AGG_ENABLED));
    kn_conf_destroy(c);
}

static void test_properties_kcl_multilang_file(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    char err[512] = "";
    const char *file = "executableName = node sample_kcl_app.js\n"
                       "streamName = kclnodejssample\n"
                       "applicationName = kclnodejssample\n"
                       "AWSCredentialsProvider = DefaultCredentialsProvider\n"
                       "processingLanguage = nodejs\n"
                       "initialPositionInStream = TRIM_HORIZON\n"
                       "regionName = us-east-1\n"
                       "kinesisEndpoint = http://127.0.0.1:4567\n"
                       "dynamoDBEndpoint = http://127.0.0.1:4568\n"
                       "failoverTimeMillis = 10000\n"
                       "maxRecords = 10000\n"
                       "idleTimeBetweenReadsInMillis = 1000\n";
    assert_int_equal(load_str(c, file, err, sizeof(err), NULL), KN_ERR_OK);
    assert_string_equal(kn__conf_str(c, KN_P_KINESIS_ENDPOINT), "http://127.0.0.1:4567");
    assert_string_equal(kn__conf_str(c, KN_P_DYNAMODB_ENDPOINT), "http://127.0.0.1:4568");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "us-east-1");
    assert_string_equal(get(c, "executableName"), "node sample_kcl_app.js");
    assert_string_equal(get(c, "initialPositionInStream"), "TRIM_HORIZON");
    assert_string_equal(get(c, "failoverTimeMillis"), "10000");
    /* The KCL names set our properties. */
    assert_string_equal(kn__conf_str(c, KN_P_C_APP_NAME), "kclnodejssample");
    assert_string_equal(kn__conf_str(c, KN_P_C_INITIAL_POSITION), "TRIM_HORIZON");
    assert_int_equal(kn__conf_int(c, KN_P_C_FAILOVER_MS), 10000);
    kn_conf_destroy(c);
}

static void test_properties_errors_name_file_and_line(void **state)
{
    (void)state;
    kn_conf_t *c = new_conf();
    set_ok(c, "aws.region", "before");
    char err[1024], expect[1024];
    char *path = NULL;

    /* Unknown key on line 3; the conf is left exactly as it was (atomic load). */
    assert_int_equal(load_str(c, "aws.region=after\n# x\nbogusKey=1\n", err, sizeof(err), &path),
                     KN_ERR_CONF_UNKNOWN);
    snprintf(expect, sizeof(expect),
             "%s:3: unknown property \"bogusKey\" (kn_conf_list() lists them all)", path);
    assert_string_equal(err, expect);
    free(path);
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "before");

    /* Invalid value in a continued line: the line where the entry starts. */
    assert_int_equal(load_str(c, "\n\nhttp.max.connections = \\\n  0\n", err, sizeof(err), &path),
                     KN_ERR_CONF_INVALID);
    snprintf(expect, sizeof(expect), "%s:3: http.max.connections: \"0\" is out of range 1..256",
             path);
    assert_string_equal(err, expect);
    free(path);

    /* Malformed escapes. */
    assert_int_equal(load_str(c, "streamName=\\u12G4\n", err, sizeof(err), &path),
                     KN_ERR_CONF_INVALID);
    snprintf(expect, sizeof(expect), "%s:1: malformed \\uXXXX escape (four hex digits expected)",
             path);
    assert_string_equal(err, expect);
    free(path);
    assert_int_equal(load_str(c, "streamName=\\u12\n", err, sizeof(err), &path),
                     KN_ERR_CONF_INVALID); /* escape cut short by the end of the line */
    snprintf(expect, sizeof(expect), "%s:1: malformed \\uXXXX escape (four hex digits expected)",
             path);
    assert_string_equal(err, expect);
    free(path);
    assert_int_equal(load_str(c, "\r\nstreamName=\\uD83D\n", err, sizeof(err), &path),
                     KN_ERR_CONF_INVALID);
    snprintf(expect, sizeof(expect),
             "%s:2: \\uD83D is half of a surrogate pair without its other half", path);
    assert_string_equal(err, expect);
    free(path);
    assert_int_equal(load_str(c, "streamName=\\u0000\n", err, sizeof(err), &path),
                     KN_ERR_CONF_INVALID);
    free(path);

    /* A NUL byte. */
    char *p = write_tmp("aws.region=x\nstream\0Name=y\n", 27);
    assert_int_equal(kn_conf_load_properties(c, p, err, sizeof(err)), KN_ERR_CONF_INVALID);
    snprintf(expect, sizeof(expect), "%s:2: contains a NUL byte (not a text file?)", p);
    assert_string_equal(err, expect);
    unlink(p);
    free(p);

    /* A file that is not there. */
    assert_int_equal(kn_conf_load_properties(c, "/nonexistent/kn.properties", err, sizeof(err)),
                     KN_ERR_IO);
    assert_string_equal(err, "/nonexistent/kn.properties: cannot open: No such file or directory");
    assert_string_equal(kn__conf_str(c, KN_P_REGION), "before");
    kn_conf_destroy(c);
}

typedef struct seen_s {
    char names[8][64];
    kn_err_t errs[8];
    char msgs[8][256];
    int n;
    int stop_at; /* stop when this many were reported (0: never) */
} seen_t;

static int on_line(void *opaque, const char *name, kn_err_t err, const char *message)
{
    seen_t *s = opaque;
    if (s->n < 8) {
        snprintf(s->names[s->n], 64, "%s", name);
        s->errs[s->n] = err;
        snprintf(s->msgs[s->n], 256, "%s", message);
    }
    s->n++;
    return s->stop_at && s->n >= s->stop_at;
}

/* kn_conf_load_properties_cb: unknown and pass-through names reported and skipped, bad values still fatal. */
static void test_properties_cb_reports_what_it_skips(void **state)
{
    (void)state;
    const char *text = "applicationName = app\n"
                       "executableName = node app.js\n"
                       "someFutureKclKey = 1\n"
                       "failoverTimeMillis = 4000\n";
    char *path = write_tmp(text, strlen(text));
    kn_conf_t *c = kn_conf_new();
    char err[512] = "";
    seen_t seen = {0};
    assert_int_equal(kn_conf_load_properties_cb(c, path, on_line, &seen, err, sizeof(err)), KN_ERR_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.names[0], "executableName");
    assert_int_equal(seen.errs[0], KN_ERR_NOT_SUPPORTED);
    assert_non_null(strstr(seen.msgs[0], ":2:"));
    assert_string_equal(seen.names[1], "someFutureKclKey");
    assert_int_equal(seen.errs[1], KN_ERR_CONF_UNKNOWN);
    assert_non_null(strstr(seen.msgs[1], ":3:"));
    assert_null(strstr(seen.msgs[0], "node app.js")); /* values are not repeated */
    char v[64];
    size_t vs = sizeof(v);
    assert_int_equal(kn_conf_get(c, "consumer.failover.ms", v, &vs), KN_ERR_OK);
    assert_string_equal(v, "4000");
    vs = sizeof(v);
    assert_int_equal(kn_conf_get(c, "executableName", v, &vs), KN_ERR_OK);
    assert_string_equal(v, "node app.js");
    /* The callback may stop it; the conf is then left as it was. */
    kn_conf_t *d = kn_conf_new();
    seen_t stop = {0};
    stop.stop_at = 1;
    assert_int_equal(kn_conf_load_properties_cb(d, path, on_line, &stop, err, sizeof(err)),
                     KN_ERR_NOT_SUPPORTED);
    vs = sizeof(v);
    assert_int_equal(kn_conf_get(d, "consumer.application.name", v, &vs), KN_ERR_OK);
    assert_string_equal(v, "");
    unlink(path);
    free(path);
    /* Invalid values stop it, with file and line. */
    const char *bad = "failoverTimeMillis = soon\n";
    path = write_tmp(bad, strlen(bad));
    assert_int_equal(kn_conf_load_properties_cb(d, path, on_line, &seen, err, sizeof(err)), KN_ERR_CONF_INVALID);
    assert_non_null(strstr(err, ":1:"));
    unlink(path);
    free(path);
    kn_conf_destroy(c);
    kn_conf_destroy(d);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_are_consistent),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_int_bounds_and_messages),
        cmocka_unit_test(test_bool_values),
        cmocka_unit_test(test_level_and_debug_values),
        cmocka_unit_test(test_url_validation),
        cmocka_unit_test(test_strings_reject_line_breaks_without_leaking_secrets),
        cmocka_unit_test(test_secrets_are_redacted_in_get),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_kpl_and_kcl_aliases),
        cmocka_unit_test(test_kpl_endpoint_host_and_port_compose_in_either_order),
        cmocka_unit_test(test_seconds_alias_conversion),
        cmocka_unit_test(test_pass_through_kpl_kcl_names),
        cmocka_unit_test(test_choice_properties),
        cmocka_unit_test(test_get_size_protocol),
        cmocka_unit_test(test_dup_is_deep_and_independent),
        cmocka_unit_test(test_list_documents_every_property),
        cmocka_unit_test(test_properties_syntax),
        cmocka_unit_test(test_properties_kpl_file),
        cmocka_unit_test(test_properties_kcl_multilang_file),
        cmocka_unit_test(test_properties_errors_name_file_and_line),
        cmocka_unit_test(test_properties_cb_reports_what_it_skips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
