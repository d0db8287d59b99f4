/*
 * The SSO portal, container and EC2 instance metadata steps against
 * tests/servers/cred_endpoints.py, which enforces what the real endpoints
 * enforce (IMDSv2 session tokens, the container authorization token, the SSO
 * bearer token), plus a role whose credential_source is Ec2InstanceMetadata
 * (STS relayed to moto).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <time.h>

#include "creds.h"
#include "err.h"
#include "test_creds_util.h"
#include "testutil.h"

#define CONTAINER_TOKEN "container-auth-token-123"
#define SSO_TOKEN "kn-sso-access-token"
#define IMDS_SECRET "imdsSecretKeyExample0000000000000000000001"
#define SHA1_CORP "ee0bfd2552fbd840c02cc48b6e823320543c450f"
#define SHA1_START_URL                                                                             \
    "a51746d4aa793ae07b25e90c3a5db96fc7832bd7" /* https://corp.awsapps.com/start */

static kn_t_server_t srv;

static int setup(void **state)
{
    kn_t_scrub_env();
    const char *role = *state ? (const char *)*state : "kn-test-role";
    const char *args[] = {"--container-token",
                          CONTAINER_TOKEN,
                          "--sso-token",
                          SSO_TOKEN,
                          "--imds-role",
                          role,
                          "--moto",
                          kn_test_server_url("KN_TEST_MOTO_URL"),
                          "--sts-secret",
                          IMDS_SECRET,
                          NULL};
    kn_t_server_start(&srv, args);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kn_t_server_stop(&srv);
    kn_t_cleanup_home();
    return 0;
}


static void use_imds(void)
{
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", srv.url, 1);
}

static long stat_of(const char *key)
{
    static char buf[65536];
    char url[128];
    snprintf(url, sizeof(url), "%s/_stats", srv.url);
    assert_int_equal(kn_t_http_get(url, buf), 200);
    json_object *o = json_tokener_parse(buf), *v;
    assert_non_null(o);
    assert_true(json_object_object_get_ex(o, key, &v));
    long n = (long)json_object_get_int64(v);
    json_object_put(o);
    return n;
}

static void imds_v2_session_token_flow(void **state)
{
    (void)state;
    char url[160], buf[65536];
    /* the server really refuses IMDSv1-style requests */
    snprintf(url, sizeof(url), "%s/latest/meta-data/iam/security-credentials/", srv.url);
    assert_int_equal(kn_t_http_get(url, buf), 401);
    assert_int_equal(stat_of("imds_rejected"), 1);

    use_imds();
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIAIMDSEXAMPLE00001");
    assert_string_equal(c.secret_access_key, IMDS_SECRET);
    assert_string_equal(c.session_token, "imdsSessionTokenExample0001");
    assert_string_equal(c.source, "imds");
    time_t now = time(NULL);
    assert_true(c.expiration > now + 5 * 3600 && c.expiration < now + 7 * 3600);
    kn__creds_free(&c);
    assert_int_equal(stat_of("imds"), 1);
    assert_int_equal(stat_of("imds_rejected"), 1); /* every request of ours carried the token */
}

static void imds_without_a_role_is_listed_as_such(void **state)
{
    (void)state;
    use_imds();
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    char expect[200];
    snprintf(expect, sizeof(expect), "IMDS: no IAM role attached to the instance (%s)", srv.url);
    assert_non_null(strstr(e.message, expect));
}

static void container_full_uri_with_authorization_token(void **state)
{
    (void)state;
    char url[160];
    snprintf(url, sizeof(url), "%s/container/credentials", srv.url);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN, 1);
    use_imds(); /* container comes first */
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIACONTAINEREXAMPLE");
    assert_string_equal(c.session_token, "containerSessionTokenExample0001");
    assert_string_equal(c.source, "container");
    assert_true(c.expiration > time(NULL) + 5 * 3600);
    kn__creds_free(&c);
    assert_int_equal(stat_of("imds"), 0);

    /* the token file wins over the variable; its trailing newline is not part of the token */
    const char *tf = kn_t_write("container-token", CONTAINER_TOKEN "\n", 0600);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", tf, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "wrong-token", 1);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIACONTAINEREXAMPLE");
    kn__creds_free(&c);

    /* a rejected token stops the chain: IMDS is not asked */
    unsetenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_AUTH);
    assert_non_null(strstr(e.message, "container: GET"));
    assert_non_null(strstr(e.message, "returned HTTP 401"));
    assert_null(strstr(e.message, "wrong-token"));
    assert_int_equal(stat_of("imds"), 0);
}

static void container_full_uri_must_be_local_or_https(void **state)
{
    (void)state;
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://198.51.100.7/creds", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "must be https or a loopback"));
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1.example.com/creds", 1);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "must be https or a loopback"));
}

/*
 * A FULL_URI may carry user info: it never shows in a message, and it cannot
 * make a remote plain-http host pass for a loopback one (curl connects to
 * what follows the '@'). Only loopback port 1 (nothing listens) is contacted.
 */
static void container_uri_user_info_is_hidden_and_not_taken_for_the_host(void **state)
{
    (void)state;
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:9@198.51.100.7/creds", 1);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "must be https or a loopback"));
    assert_non_null(strstr(e.message, "http://198.51.100.7/creds"));

    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://kn:s3cretPw@127.0.0.1:1/creds", 1);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_TRANSPORT);
    assert_non_null(strstr(e.message, "http://127.0.0.1:1/creds"));
    assert_null(strstr(e.message, "s3cretPw"));

    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "https://kn:s3cretPw@127.0.0.1:1/creds", 1);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_TRANSPORT);
    assert_non_null(strstr(e.message, "https://127.0.0.1:1/creds"));
    assert_null(strstr(e.message, "s3cretPw"));
}

static void profile_beats_container_and_imds(void **state)
{
    (void)state;
    char url[160];
    snprintf(url, sizeof(url), "%s/container/credentials", srv.url);
    setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", url, 1);
    setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", CONTAINER_TOKEN, 1);
    use_imds();
    kn_t_write(".aws/credentials",
               "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n", 0600);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDPROFILE");
    kn__creds_free(&c);
    assert_int_equal(stat_of("container"), 0);
    assert_int_equal(stat_of("imds"), 0);
}

static void write_sso_token(const char *hash, const char *token, int valid_for_s)
{
    char rel[128], body[512], when[32];
    time_t t = time(NULL) + valid_for_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(rel, sizeof(rel), ".aws/sso/cache/%s.json", hash);
    snprintf(body, sizeof(body),
             "{\"startUrl\": \"https://corp.awsapps.com/start\", \"region\": \"us-east-2\", "
             "\"accessToken\": \"%s\", \"expiresAt\": \"%s\"}",
             token, when);
    kn_t_write(rel, body, 0600);
}

static void sso_session_profile_exchanges_the_cached_token(void **state)
{
    (void)state;
    kn_t_write(".aws/config",
               "[profile dev]\nsso_session = corp\nsso_account_id = 123456789012\n"
               "sso_role_name = kn-sso-role\n"
               "[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\n"
               "sso_region = us-east-2\n",
               0600);
    write_sso_token(SHA1_CORP, SSO_TOKEN, 3600);
    setenv("AWS_ENDPOINT_URL_SSO", srv.url, 1);
    setenv("AWS_PROFILE", "dev", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIASSOEXAMPLE000001");
    assert_string_equal(c.secret_access_key, "ssoSecretKeyExample0000000000000000000001");
    assert_string_equal(c.session_token, "ssoSessionTokenExample0001");
    assert_string_equal(c.source, "sso");
    time_t now = time(NULL);
    assert_true(c.expiration > now + 3000 && c.expiration <= now + 3700); /* from milliseconds */
    kn__creds_free(&c);
}

static void sso_legacy_profile_and_token_problems(void **state)
{
    (void)state;
    kn_t_write(".aws/config",
               "[default]\nsso_start_url = https://corp.awsapps.com/start\n"
               "sso_region = us-east-2\nsso_account_id = 123456789012\n"
               "sso_role_name = kn-sso-role\n",
               0600);
    setenv("AWS_ENDPOINT_URL", srv.url, 1); /* the general override serves SSO too */
    kn__creds_t c;
    kn_error_t e;

    /* no cached token yet */
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(
        strstr(e.message, "no cached SSO token for start URL https://corp.awsapps.com/start"));
    assert_non_null(strstr(e.message, "aws sso login"));

    write_sso_token(SHA1_START_URL, SSO_TOKEN, 3600);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIASSOEXAMPLE000001");
    kn__creds_free(&c);

    write_sso_token(SHA1_START_URL, SSO_TOKEN, -60);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_EXPIRED_TOKEN);
    assert_non_null(strstr(e.message, "cached SSO token expired"));

    write_sso_token(SHA1_START_URL, "not-the-right-token", 3600);
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_AUTH);
    assert_non_null(strstr(e.message, "HTTP 401"));
    assert_null(strstr(e.message, "not-the-right-token"));
    assert_int_equal(stat_of("sso"), 1);
}

static void role_with_imds_credential_source(void **state)
{
    (void)state;
    use_imds();
    char sts[160];
    snprintf(sts, sizeof(sts), "%s/sts", srv.url);
    setenv("AWS_ENDPOINT_URL_STS", sts, 1);
    kn_t_write(".aws/config",
               "[profile ec2role]\nrole_arn = arn:aws:iam::123456789012:role/ec2role\n"
               "credential_source = Ec2InstanceMetadata\nregion = ap-southeast-2\n",
               0600);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve("ec2role", &c, &e), KN_ERR_OK);
    assert_memory_equal(c.access_key_id, "ASIA", 4);
    assert_string_not_equal(c.access_key_id, "ASIAIMDSEXAMPLE00001");
    assert_string_equal(c.source, "assume-role:ec2role");
    kn__creds_free(&c);
    static char buf[65536];
    char url[160];
    snprintf(url, sizeof(url), "%s/_sts_log", srv.url);
    assert_int_equal(kn_t_http_get(url, buf), 200);
    /* signed with the instance's keys and session token, verified by botocore */
    assert_non_null(strstr(buf, "\"signature_valid\": true"));
    assert_non_null(
        strstr(buf, "\"signature_detail\": \"ASIAIMDSEXAMPLE00001/ap-southeast-2/sts\""));
    assert_non_null(strstr(buf, "\"security_token\": true"));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(imds_v2_session_token_flow, setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(imds_without_a_role_is_listed_as_such, setup,
                                                 teardown, ""),
        cmocka_unit_test_setup_teardown(container_full_uri_with_authorization_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(container_full_uri_must_be_local_or_https, setup, teardown),
        cmocka_unit_test_setup_teardown(container_uri_user_info_is_hidden_and_not_taken_for_the_host,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(profile_beats_container_and_imds, setup, teardown),
        cmocka_unit_test_setup_teardown(sso_session_profile_exchanges_the_cached_token, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sso_legacy_profile_and_token_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(role_with_imds_credential_source, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
