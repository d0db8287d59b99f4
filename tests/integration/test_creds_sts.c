/*
 * STS credentials against moto_server (KN_TEST_MOTO_URL): web identity from
 * the environment and from a profile, and signed AssumeRole through
 * source_profile, role chains and credential_source. Calls go through the
 * recording relay of tests/servers/cred_endpoints.py, which forwards them to
 * moto and recomputes each signature with botocore's signer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <ctype.h>
#include <json-c/json.h>
#include <time.h>

#include "creds.h"
#include "err.h"
#include "test_creds_util.h"
#include "testutil.h"

#define BASE_SECRET "baseSecretKey/0000000000000000000000000"
#define ENV_SECRET "envSecretKey/00000000000000000000000000"

static kn_t_server_t relay;

static int setup(void **state)
{
    (void)state;
    const char *moto = kn_test_server_url("KN_TEST_MOTO_URL");
    kn_t_scrub_env();
    const char *secret = (const char *)*state;
    const char *args[] = {"--moto", moto, "--sts-secret", secret ? secret : BASE_SECRET, NULL};
    kn_t_server_start(&relay, args);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kn_t_server_stop(&relay);
    kn_t_cleanup_home();
    return 0;
}


/* moto hands out "ASIA" + 16 upper-case letters/digits and a 40-character secret. */
static void assert_moto_keys(const kn__creds_t *c)
{
    assert_non_null(c->access_key_id);
    assert_int_equal(strlen(c->access_key_id), 20);
    assert_memory_equal(c->access_key_id, "ASIA", 4);
    for (const char *p = c->access_key_id; *p; p++)
        assert_true(isupper((unsigned char)*p) || isdigit((unsigned char)*p));
    assert_int_equal(strlen(c->secret_access_key), 40);
    assert_non_null(c->session_token);
    assert_true(strlen(c->session_token) > 100);
    assert_true(c->expiration > time(NULL) + 600);
}

static void set_sts_endpoint(const char *suffix)
{
    char url[128];
    snprintf(url, sizeof(url), "%s%s", relay.url, suffix);
    setenv("AWS_ENDPOINT_URL_STS", url, 1);
}

/* The relay's log as a JSON array (caller puts). */
static json_object *sts_log(void)
{
    static char buf[65536];
    char url[128];
    snprintf(url, sizeof(url), "%s/_sts_log", relay.url);
    assert_int_equal(kn_t_http_get(url, buf), 200);
    json_object *o = json_tokener_parse(buf);
    assert_non_null(o);
    assert_true(json_object_is_type(o, json_type_array));
    return o;
}

static const char *field(json_object *entry, const char *k)
{
    json_object *v;
    if (!json_object_object_get_ex(entry, k, &v))
        return "";
    return json_object_get_string(v);
}

static int flag(json_object *entry, const char *k)
{
    json_object *v;
    return json_object_object_get_ex(entry, k, &v) && json_object_get_boolean(v);
}

static void web_identity_from_environment_directly_against_moto(void **state)
{
    (void)state;
    const char *tok = kn_t_write("token", "eyJhbGciOiJSUzI1NiJ9.e30.sig-web-identity\n", 0600);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kn-web", 1);
    setenv("AWS_ROLE_SESSION_NAME", "kn-session", 1);
    setenv("AWS_ENDPOINT_URL_STS", getenv("KN_TEST_MOTO_URL"), 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    assert_string_equal(c.source, "web-identity");
    kn__creds_free(&c);
}

static void web_identity_request_is_unsigned_and_carries_the_role(void **state)
{
    (void)state;
    const char *tok = kn_t_write("token", "header.payload.signature", 0600);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kn-web2", 1);
    set_sts_endpoint("/sts");
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    kn__creds_free(&c);
    json_object *log = sts_log();
    assert_int_equal(json_object_array_length(log), 1);
    json_object *en = json_object_array_get_idx(log, 0);
    assert_string_equal(field(en, "action"), "AssumeRoleWithWebIdentity");
    assert_string_equal(field(en, "role_arn"), "arn:aws:iam::123456789012:role/kn-web2");
    assert_memory_equal(field(en, "session_name"), "libkinesis-", 11); /* generated */
    assert_false(flag(en, "signed"));
    json_object_put(log);
}

static void web_identity_from_a_profile(void **state)
{
    (void)state;
    kn_t_write("tok", "profile-token", 0600);
    kn_t_write(".aws/config",
               "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/kn-wi\n"
               "web_identity_token_file = ~/tok\nrole_session_name = wi-session\n",
               0600);
    set_sts_endpoint("/sts");
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve("wi", &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    kn__creds_free(&c);
    json_object *log = sts_log();
    json_object *en = json_object_array_get_idx(log, 0);
    assert_string_equal(field(en, "action"), "AssumeRoleWithWebIdentity");
    assert_string_equal(field(en, "session_name"), "wi-session");
    json_object_put(log);

    /* a missing token file is a clear error that stops the chain */
    kn_t_write(".aws/config",
               "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/kn-wi\n"
               "web_identity_token_file = ~/missing-token\n",
               0600);
    assert_int_equal(kn_t_resolve("wi", &c, &e), KN_ERR_IO);
    assert_non_null(strstr(e.message, "profile wi: cannot read web identity token file"));
}

/*
 * With no AWS_ENDPOINT_URL_STS / AWS_ENDPOINT_URL, the profile's
 * endpoint_url is the STS endpoint, as for every other service.
 */
static void profile_endpoint_url_is_the_sts_endpoint(void **state)
{
    (void)state;
    kn_t_write("tok", "profile-token", 0600);
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/kn-ep\n"
             "web_identity_token_file = ~/tok\nendpoint_url = %s/sts\n",
             relay.url);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve("wi", &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    kn__creds_free(&c);
    json_object *log = sts_log();
    assert_int_equal(json_object_array_length(log), 1);
    json_object *en = json_object_array_get_idx(log, 0);
    assert_string_equal(field(en, "role_arn"), "arn:aws:iam::123456789012:role/kn-ep");
    json_object_put(log);
}

static void assume_role_through_source_profile_is_signed_with_its_keys(void **state)
{
    (void)state;
    kn_t_write(
        ".aws/credentials",
        "[base]\naws_access_key_id = AKIDBASE000000000001\naws_secret_access_key = " BASE_SECRET
        "\n",
        0600);
    kn_t_write(".aws/config",
               "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/kn-role\n"
               "source_profile = base\nexternal_id = ext-123\n"
               "role_session_name = kn-role-session\nduration_seconds = 1800\n"
               "region = eu-central-1\n",
               0600);
    set_sts_endpoint("/sts/");
    setenv("AWS_PROFILE", "role", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    assert_string_equal(c.source, "assume-role:role");
    kn__creds_free(&c);
    json_object *log = sts_log();
    assert_int_equal(json_object_array_length(log), 1);
    json_object *en = json_object_array_get_idx(log, 0);
    assert_string_equal(field(en, "action"), "AssumeRole");
    assert_string_equal(field(en, "role_arn"), "arn:aws:iam::123456789012:role/kn-role");
    assert_string_equal(field(en, "external_id"), "ext-123");
    assert_string_equal(field(en, "session_name"), "kn-role-session");
    assert_string_equal(field(en, "duration"), "1800");
    assert_true(flag(en, "signed"));
    assert_false(flag(en, "security_token"));
    /* botocore recomputed the signature with the source profile's secret */
    assert_string_equal(field(en, "signature_detail"), "AKIDBASE000000000001/eu-central-1/sts");
    assert_true(flag(en, "signature_valid"));
    json_object_put(log);
}

/* The client's measured clock skew applies to AssumeRole's signature too (X-Amz-Date moves with it). */
static void assume_role_is_signed_with_the_skew_corrected_clock(void **state)
{
    (void)state;
    kn_t_write(".aws/credentials",
               "[base]\naws_access_key_id = AKIDBASE000000000001\naws_secret_access_key = " BASE_SECRET "\n",
               0600);
    kn_t_write(".aws/config",
               "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/kn-skew\nsource_profile = base\n"
               "region = eu-central-1\n",
               0600);
    set_sts_endpoint("/sts/");
    int64_t skew = 7200;
    kn__creds_opts_t o;
    memset(&o, 0, sizeof(o));
    o.tls_verify = true;
    o.timeout_ms = 10000;
    o.profile = "role";
    o.clock_skew_s = &skew;
    kn__creds_t c;
    kn_error_t e;
    kn__error_clear(&e);
    time_t before = time(NULL);
    assert_int_equal(kn__creds_resolve(&o, &c, &e), KN_ERR_OK);
    kn__creds_free(&c);
    json_object *log = sts_log();
    assert_int_equal(json_object_array_length(log), 1);
    const char *d = field(json_object_array_get_idx(log, 0), "amz_date");
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(d, "%Y%m%dT%H%M%SZ", &tm));
    time_t sent = timegm(&tm);
    if (sent < before + skew - 60 || sent > time(NULL) + skew + 60)
        fail_msg("X-Amz-Date %s is not the local clock + %lld s", d, (long long)skew);
    assert_true(flag(json_object_array_get_idx(log, 0), "signature_valid"));
    json_object_put(log);
}

static void role_chain_signs_the_second_call_with_the_first_roles_keys(void **state)
{
    (void)state;
    kn_t_write(
        ".aws/credentials",
        "[base]\naws_access_key_id = AKIDBASE000000000001\naws_secret_access_key = " BASE_SECRET
        "\n",
        0600);
    kn_t_write(".aws/config",
               "[profile first]\nrole_arn = arn:aws:iam::123456789012:role/first\n"
               "source_profile = base\n"
               "[profile second]\nrole_arn = arn:aws:iam::123456789012:role/second\n"
               "source_profile = first\n",
               0600);
    set_sts_endpoint("/sts");
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve("second", &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    kn__creds_free(&c);
    json_object *log = sts_log();
    assert_int_equal(json_object_array_length(log), 2);
    json_object *a = json_object_array_get_idx(log, 0), *b = json_object_array_get_idx(log, 1);
    assert_string_equal(field(a, "role_arn"), "arn:aws:iam::123456789012:role/first");
    assert_true(flag(a, "signature_valid"));
    assert_false(flag(a, "security_token"));
    assert_string_equal(field(b, "role_arn"), "arn:aws:iam::123456789012:role/second");
    assert_true(flag(b, "signed"));
    assert_true(flag(b, "security_token")); /* temporary keys of the first role */
    assert_memory_equal(field(b, "signature_detail") + 0, "signature mismatch", 18);
    json_object_put(log);
}

static void credential_source_environment_signs_with_the_environment_keys(void **state)
{
    (void)state;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV0000000000001", 1);
    setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET, 1);
    kn_t_write(".aws/config",
               "[profile envrole]\nrole_arn = arn:aws:iam::123456789012:role/envrole\n"
               "credential_source = Environment\n",
               0600);
    set_sts_endpoint("/sts");
    setenv("AWS_REGION", "us-west-2", 1);
    kn__creds_t c;
    kn_error_t e;
    /* the profile is set in the configuration, so the environment keys do not win by themselves */
    assert_int_equal(kn_t_resolve("envrole", &c, &e), KN_ERR_OK);
    assert_moto_keys(&c);
    kn__creds_free(&c);
    json_object *log = sts_log();
    json_object *en = json_object_array_get_idx(log, 0);
    assert_string_equal(field(en, "signature_detail"), "AKIDENV0000000000001/us-west-2/sts");
    assert_true(flag(en, "signature_valid"));
    json_object_put(log);
}

static void sts_failure_stops_the_chain_with_the_status(void **state)
{
    (void)state;
    kn_t_write(
        ".aws/credentials",
        "[base]\naws_access_key_id = AKIDBASE000000000001\naws_secret_access_key = " BASE_SECRET
        "\n",
        0600);
    kn_t_write(".aws/config",
               "[profile role]\nrole_arn = arn:aws:iam::123456789012:role/kn-role\n"
               "source_profile = base\n",
               0600);
    set_sts_endpoint("/not-sts"); /* the relay answers 404 here */
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve("role", &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(
        e.message,
        "profile role: STS AssumeRole for arn:aws:iam::123456789012:role/kn-role: HTTP 404"));
    assert_int_equal(e.http_status, 404);
    assert_null(strstr(e.message, BASE_SECRET));
}

static kn_err_t canned(const char *name, kn__creds_t *c, kn_error_t *e)
{
    char suffix[64];
    snprintf(suffix, sizeof(suffix), "/canned/%s", name);
    set_sts_endpoint(suffix);
    return kn_t_resolve(NULL, c, e);
}

static void sts_xml_is_decoded_and_malformed_answers_are_rejected(void **state)
{
    (void)state;
    const char *tok = kn_t_write("token", "header.payload.signature", 0600);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kn-canned", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(canned("entities", &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "ASIACANNED0000000001");
    assert_string_equal(c.secret_access_key, "sec<ret&1");
    assert_string_equal(c.session_token, "tok&en/x+y<>\"'\xc3\xa9");
    assert_int_equal((long long)c.expiration, 1927857906LL);
    kn__creds_free(&c);

    assert_int_equal(canned("truncated", &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "no complete AssumeRoleWithWebIdentityResult/Credentials"));
    assert_int_equal(canned("badentity", &c, &e), KN_ERR_BAD_RESPONSE);
    assert_int_equal(canned("noexpiry", &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "Expiration"));
    assert_null(c.access_key_id);

    assert_int_equal(canned("denied", &c, &e), KN_ERR_AUTH);
    assert_non_null(strstr(e.message, "web identity: STS AssumeRoleWithWebIdentity for "
                                      "arn:aws:iam::123456789012:role/kn-canned: AccessDenied: "
                                      "Not authorized & denied (HTTP 403)"));
    assert_string_equal(e.aws_type, "AccessDenied");
    assert_string_equal(e.request_id, "req-123");
    assert_int_equal(e.http_status, 403);
    assert_false(e.retriable);

    assert_int_equal(canned("html502", &c, &e), KN_ERR_SERVICE);
    assert_non_null(strstr(e.message, "HTTP 502 with no STS error in the body"));
    assert_non_null(strstr(e.message, "502 Bad Gateway")); /* what the proxy said */
    assert_true(e.retriable);

    assert_int_equal(canned("huge", &c, &e), KN_ERR_TOO_LARGE);
    assert_null(strstr(e.message, "header.payload.signature"));
}

/* An STS URL that curl cannot parse is a configuration error, not a retriable transport one. */
static void malformed_sts_url_is_invalid_and_not_retriable(void **state)
{
    (void)state;
    const char *tok = kn_t_write("token", "header.payload.signature", 0600);
    setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tok, 1);
    setenv("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/kn-bad-url", 1);
    setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:99999/", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(kn_t_resolve(NULL, &c, &e), KN_ERR_INVALID_ARG);
    assert_false(e.retriable);
    assert_non_null(strstr(e.message, "127.0.0.1:99999"));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(web_identity_from_environment_directly_against_moto, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(web_identity_request_is_unsigned_and_carries_the_role,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(web_identity_from_a_profile, setup, teardown),
        cmocka_unit_test_setup_teardown(profile_endpoint_url_is_the_sts_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(assume_role_is_signed_with_the_skew_corrected_clock, setup, teardown),
        cmocka_unit_test_setup_teardown(assume_role_through_source_profile_is_signed_with_its_keys,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(role_chain_signs_the_second_call_with_the_first_roles_keys,
                                        setup, teardown),
        cmocka_unit_test_prestate_setup_teardown(
            credential_source_environment_signs_with_the_environment_keys, setup, teardown,
            (void *)ENV_SECRET),
        cmocka_unit_test_setup_teardown(sts_failure_stops_the_chain_with_the_status, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(sts_xml_is_decoded_and_malformed_answers_are_rejected,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_sts_url_is_invalid_and_not_retriable, setup,
                                        teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
