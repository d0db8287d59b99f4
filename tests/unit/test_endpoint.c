/* Region and endpoint resolution order, with real config files in a temporary HOME. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "endpoint.h"

static char home[256];

static void clear_env(void)
{
    const char *vars[] = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                          "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB",
                          "AWS_ENDPOINT_URL_STS", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"};
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}

static void write_config(const char *text)
{
    char dir[300], path[320];
    snprintf(dir, sizeof(dir), "%s/.aws", home);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/config", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    snprintf(home, sizeof(home), "/tmp/kn-endpoint-test-XXXXXX");
    assert_non_null(mkdtemp(home));
    setenv("HOME", home, 1);
    clear_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", home);
    return system(cmd) == 0 ? 0 : -1;
}

static void expect_endpoint(kn__service_t svc, const char *explicit_url, const char *region, const char *profile,
                            const char *want)
{
    kn_error_t err;
    kn__error_clear(&err);
    char *url = kn__endpoint_resolve(svc, explicit_url, region, profile, &err);
    if (!url)
        fail_msg("resolve failed: %s", err.message);
    assert_string_equal(url, want);
    free(url);
}

static void endpoint_precedence(void **state)
{
    (void)state;
    clear_env();
    write_config("[default]\nregion = eu-west-3\nendpoint_url = http://127.0.0.1:9001\n"
                 "[profile other]\nregion = ap-south-1\n");
    /* profile endpoint_url */
    expect_endpoint(KN__SVC_KINESIS, NULL, "eu-west-3", NULL, "http://127.0.0.1:9001");
    /* a profile without endpoint_url falls back to the regional default */
    expect_endpoint(KN__SVC_KINESIS, NULL, "ap-south-1", "other", "https://kinesis.ap-south-1.amazonaws.com");
    /* AWS_ENDPOINT_URL beats the profile */
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9002/", 1);
    expect_endpoint(KN__SVC_DYNAMODB, NULL, "eu-west-3", NULL, "http://127.0.0.1:9002");
    /* the service's own variable beats AWS_ENDPOINT_URL, for that service only */
    setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:9003", 1);
    expect_endpoint(KN__SVC_KINESIS, NULL, "eu-west-3", NULL, "http://127.0.0.1:9003");
    expect_endpoint(KN__SVC_DYNAMODB, NULL, "eu-west-3", NULL, "http://127.0.0.1:9002");
    setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9004", 1);
    expect_endpoint(KN__SVC_STS, NULL, "eu-west-3", NULL, "http://127.0.0.1:9004");
    /* explicit configuration beats everything */
    expect_endpoint(KN__SVC_KINESIS, "https://example.test:8443", "eu-west-3", NULL, "https://example.test:8443");
    clear_env();
}

static void regional_defaults(void **state)
{
    (void)state;
    clear_env();
    write_config("");
    expect_endpoint(KN__SVC_KINESIS, NULL, "us-west-2", NULL, "https://kinesis.us-west-2.amazonaws.com");
    expect_endpoint(KN__SVC_DYNAMODB, NULL, "cn-north-1", NULL, "https://dynamodb.cn-north-1.amazonaws.com.cn");
    expect_endpoint(KN__SVC_STS, NULL, "eu-central-1", NULL, "https://sts.eu-central-1.amazonaws.com");
    expect_endpoint(KN__SVC_CLOUDWATCH, NULL, "us-east-1", NULL, "https://monitoring.us-east-1.amazonaws.com");
}

static void bad_endpoints_are_named_in_the_error(void **state)
{
    (void)state;
    clear_env();
    kn_error_t err;
    kn__error_clear(&err);
    assert_null(kn__endpoint_resolve(KN__SVC_KINESIS, "ftp://x", "us-east-1", NULL, &err));
    assert_int_equal(err.code, KN_ERR_CONF_INVALID);
    assert_non_null(strstr(err.message, "ftp://x"));
    assert_non_null(strstr(err.message, "configuration"));
    setenv("AWS_ENDPOINT_URL_KINESIS", "localhost:4567", 1);
    kn__error_clear(&err);
    assert_null(kn__endpoint_resolve(KN__SVC_KINESIS, NULL, "us-east-1", NULL, &err));
    assert_non_null(strstr(err.message, "AWS_ENDPOINT_URL_KINESIS"));
    /* user information is refused and its password never repeated */
    kn__error_clear(&err);
    assert_null(kn__endpoint_resolve(KN__SVC_KINESIS, "https://bob:hunter2@example.test:8443/x", "us-east-1",
                                     NULL, &err));
    assert_int_equal(err.code, KN_ERR_CONF_INVALID);
    assert_non_null(strstr(err.message, "user information"));
    assert_non_null(strstr(err.message, "https://***@example.test:8443/x"));
    assert_null(strstr(err.message, "hunter2"));
    assert_null(strstr(err.message, "bob"));
    /* an @ in the path is not user information */
    kn__error_clear(&err);
    char *u = kn__endpoint_resolve(KN__SVC_KINESIS, "http://127.0.0.1:4567/a@b", "us-east-1", NULL, &err);
    assert_non_null(u);
    free(u);
    clear_env();
}

static void region_precedence(void **state)
{
    (void)state;
    clear_env();
    write_config("[default]\nregion = eu-west-3\n[profile p2]\nregion = sa-east-1\n");
    char *r = kn__region_resolve(NULL, NULL);
    assert_string_equal(r, "eu-west-3");
    free(r);
    r = kn__region_resolve(NULL, "p2");
    assert_string_equal(r, "sa-east-1");
    free(r);
    setenv("AWS_PROFILE", "p2", 1);
    r = kn__region_resolve(NULL, NULL);
    assert_string_equal(r, "sa-east-1");
    free(r);
    setenv("AWS_DEFAULT_REGION", "us-west-1", 1);
    r = kn__region_resolve(NULL, NULL);
    assert_string_equal(r, "us-west-1");
    free(r);
    setenv("AWS_REGION", "us-west-2", 1);
    r = kn__region_resolve(NULL, NULL);
    assert_string_equal(r, "us-west-2");
    free(r);
    r = kn__region_resolve("ca-central-1", NULL);
    assert_string_equal(r, "ca-central-1");
    free(r);
    clear_env();
    write_config("");
    r = kn__region_resolve(NULL, NULL);
    assert_string_equal(r, "us-east-1");
    free(r);
}

static void host_header_drops_default_ports_only(void **state)
{
    (void)state;
    const struct {
        const char *url, *host;
    } cases[] = {
        {"https://kinesis.us-east-1.amazonaws.com", "kinesis.us-east-1.amazonaws.com"},
        {"https://h:443/", "h"},
        {"http://h:80", "h"},
        {"http://127.0.0.1:4567", "127.0.0.1:4567"},
        {"https://h:80", "h:80"},
        {"http://h:8080/x", "h:8080"},
        {"http://[::1]:4567", "[::1]:4567"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *h = kn__endpoint_host_header(cases[i].url);
        assert_non_null(h);
        assert_string_equal(h, cases[i].host);
        free(h);
    }
    assert_null(kn__endpoint_host_header("nourl"));
    assert_null(kn__endpoint_host_header("http:///path"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(endpoint_precedence),
        cmocka_unit_test(regional_defaults),
        cmocka_unit_test(bad_endpoints_are_named_in_the_error),
        cmocka_unit_test(region_precedence),
        cmocka_unit_test(host_header_drops_default_ports_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
