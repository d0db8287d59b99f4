/*
 * The credential chain with real files under a temporary HOME: static
 * profiles, profile selection, file precedence, credential_process with real
 * scripts, chain order and the "nothing found" message that lists each step.
 * Every test starts from an environment without AWS_* variables.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <time.h>

#include "creds.h"
#include "err.h"
#include "log.h"
#include "test_creds_util.h"

static int setup(void **state)
{
    (void)state;
    kn_t_scrub_env();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    kn_t_cleanup_home();
    return 0;
}

static kn__creds_opts_t base_opts(void)
{
    kn__creds_opts_t o;
    memset(&o, 0, sizeof(o));
    o.tls_verify = true;
    o.timeout_ms = 3000;
    return o;
}

static kn_err_t resolve(const kn__creds_opts_t *o, kn__creds_t *c, kn_error_t *e)
{
    kn__creds_opts_t d = base_opts();
    kn__error_clear(e);
    return kn__creds_resolve(o ? o : &d, c, e);
}

static void static_keys_of_default_profile_from_credentials_file(void **state)
{
    (void)state;
    kn_t_write(".aws/credentials",
               "[default]\n"
               "aws_access_key_id = AKIDDEFAULT00000001\n"
               "aws_secret_access_key = defaultSecret/0000000000000000000000000\n"
               "aws_session_token = defaultToken\n",
               0600);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDDEFAULT00000001");
    assert_string_equal(c.secret_access_key, "defaultSecret/0000000000000000000000000");
    assert_string_equal(c.session_token, "defaultToken");
    assert_int_equal(c.expiration, 0);
    assert_string_equal(c.source, "profile:default");
    kn__creds_free(&c);
    assert_null(c.access_key_id);
}

static void aws_profile_and_explicit_option_select_the_profile(void **state)
{
    (void)state;
    kn_t_write(".aws/credentials",
               "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n"
               "[work]\naws_access_key_id = AKIDWORK\naws_secret_access_key = s2\n"
               "[other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s3\n",
               0600);
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_PROFILE", "work", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDWORK");
    assert_string_equal(c.source, "profile:work");
    kn__creds_free(&c);

    kn__creds_opts_t o = base_opts();
    o.profile = "other"; /* the option beats AWS_PROFILE */
    assert_int_equal(resolve(&o, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDOTHER");
    kn__creds_free(&c);
}

static void config_file_profile_needs_the_profile_prefix(void **state)
{
    (void)state;
    kn_t_write(".aws/config",
               "[profile cfg]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = s\n"
               "[bare]\naws_access_key_id = AKIDBARE\naws_secret_access_key = s\n",
               0600);
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_PROFILE", "cfg", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDCONFIG");
    kn__creds_free(&c);
    /* "[bare]" is not a profile in the config file; asking for it by name is an error */
    setenv("AWS_PROFILE", "bare", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "profile bare: not found in"));
    assert_null(c.access_key_id);
}

static void credentials_file_beats_config_file_and_process_sits_between(void **state)
{
    (void)state;
    kn_t_write("proc.sh",
               "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", "
               "\"SecretAccessKey\": \"procSecret\"}'\n",
               0700);
    kn_t_write(".aws/credentials",
               "[both]\naws_access_key_id = AKIDCREDSFILE\naws_secret_access_key = s\n", 0600);
    char cfg[2048];
    snprintf(cfg, sizeof(cfg),
             "[profile both]\naws_access_key_id = AKIDCONFIGFILE\naws_secret_access_key = s\n"
             "credential_process = %s/proc.sh\n"
             "[profile cfgonly]\naws_access_key_id = AKIDCONFIGONLY\naws_secret_access_key = s\n"
             "credential_process = %s/proc.sh\n",
             kn_t_home, kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_PROFILE", "both", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDCREDSFILE");
    kn__creds_free(&c);
    /* credential_process beats static keys of the config file (botocore's order) */
    setenv("AWS_PROFILE", "cfgonly", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDPROCESS");
    assert_string_equal(c.source, "process");
    kn__creds_free(&c);
}

static void credential_process_output_is_parsed(void **state)
{
    (void)state;
    kn_t_write("bin/creds helper.sh",
               "#!/bin/sh\n"
               "echo \"helper got $1\" >&2\n"
               "cat <<EOF\n"
               "{\"Version\": 1, \"AccessKeyId\": \"AKIDPROC0000000001\",\n"
               " \"SecretAccessKey\": \"procSecret/with+slash\", \"SessionToken\": \"procToken\",\n"
               " \"Expiration\": \"2031-02-03T04:05:06Z\"}\n"
               "EOF\n",
               0700);
    char cfg[1024];
    snprintf(cfg, sizeof(cfg), "[default]\ncredential_process = \"%s/bin/creds helper.sh\" --arg\n",
             kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDPROC0000000001");
    assert_string_equal(c.secret_access_key, "procSecret/with+slash");
    assert_string_equal(c.session_token, "procToken");
    assert_int_equal((long long)c.expiration, 1927857906LL); /* 2031-02-03T04:05:06Z */
    assert_string_equal(c.source, "process");
    kn__creds_free(&c);
}

static void credential_process_failure_reports_exit_status_and_stderr(void **state)
{
    (void)state;
    kn_t_write("fail.sh",
               "#!/bin/sh\n"
               "echo '{\"Version\": 1, \"AccessKeyId\": \"AKIDLEAK\", \"SecretAccessKey\": "
               "\"leakedSecret\"}'\n"
               "echo '  session for corp expired, run login' >&2\n"
               "echo 'second line' >&2\n"
               "exit 3\n",
               0700);
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "[profile p]\ncredential_process = %s/fail.sh\n", kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    setenv("AWS_PROFILE", "p", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "credential_process of profile p"));
    assert_non_null(strstr(e.message, "exited with status 3: session for corp expired, run login"));
    assert_null(strstr(e.message, "second line"));
    assert_null(strstr(e.message, "leakedSecret"));
    assert_null(c.access_key_id);
}

static void credential_process_is_killed_after_its_timeout(void **state)
{
    (void)state;
    kn_t_write("slow.sh", "#!/bin/sh\nsleep 30 &\nsleep 30\n", 0700);
    char cfg[512];
    snprintf(cfg, sizeof(cfg), "[default]\ncredential_process = %s/slow.sh\n", kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_opts_t o = base_opts();
    o.process_timeout_ms = 400;
    kn__creds_t c;
    kn_error_t e;
    time_t t0 = time(NULL);
    assert_int_equal(resolve(&o, &c, &e), KN_ERR_TIMEOUT);
    assert_true(time(NULL) - t0 < 15);
    assert_non_null(strstr(e.message, "did not finish within 400 ms"));
}

static void credential_process_bad_output_is_rejected(void **state)
{
    (void)state;
    kn_t_write(
        "v2.sh",
        "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": \"A\", \"SecretAccessKey\": \"S\"}'\n",
        0700);
    kn_t_write("nojson.sh", "#!/bin/sh\necho 'not json at all'\n", 0700);
    kn_t_write("nokey.sh", "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"A\"}'\n", 0700);
    char cfg[1024];
    snprintf(cfg, sizeof(cfg),
             "[profile v2]\ncredential_process = %s/v2.sh\n"
             "[profile nojson]\ncredential_process = %s/nojson.sh\n"
             "[profile nokey]\ncredential_process = %s/nokey.sh\n",
             kn_t_home, kn_t_home, kn_t_home);
    kn_t_write(".aws/config", cfg, 0600);
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_PROFILE", "v2", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "\"Version\": 1"));
    setenv("AWS_PROFILE", "nojson", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "not a JSON object"));
    setenv("AWS_PROFILE", "nokey", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_BAD_RESPONSE);
    assert_non_null(strstr(e.message, "SecretAccessKey"));
}

static void static_options_beat_environment_which_beats_profile(void **state)
{
    (void)state;
    kn_t_write(".aws/credentials",
               "[default]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = s\n", 0600);
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "envSecret", 1);
    setenv("AWS_SESSION_TOKEN", "envToken", 1);
    setenv("AWS_CREDENTIAL_EXPIRATION", "2030-01-01T00:00:00+01:00", 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDENV");
    assert_string_equal(c.session_token, "envToken");
    assert_string_equal(c.source, "env");
    assert_int_equal((long long)c.expiration, 1893452400LL); /* 2029-12-31T23:00:00Z */
    kn__creds_free(&c);

    kn__creds_opts_t o = base_opts();
    o.static_access_key_id = "AKIDSTATIC";
    o.static_secret_access_key = "staticSecret";
    assert_int_equal(resolve(&o, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDSTATIC");
    assert_null(c.session_token);
    assert_string_equal(c.source, "static");
    kn__creds_free(&c);

    /* without the environment keys the profile is next */
    unsetenv("AWS_ACCESS_KEY_ID");
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_OK);
    assert_string_equal(c.access_key_id, "AKIDPROFILE");
    kn__creds_free(&c);
}

static void partial_keys_are_errors_that_name_the_missing_key(void **state)
{
    (void)state;
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "AWS_SECRET_ACCESS_KEY is not"));
    unsetenv("AWS_ACCESS_KEY_ID");

    kn__creds_opts_t o = base_opts();
    o.static_secret_access_key = "onlySecret";
    assert_int_equal(resolve(&o, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "static credentials"));
    assert_null(strstr(e.message, "onlySecret"));

    kn_t_write(".aws/credentials", "[default]\naws_secret_access_key = fileSecretOnly\n", 0600);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "has aws_secret_access_key but not aws_access_key_id"));
    assert_null(strstr(e.message, "fileSecretOnly"));
}

static void nothing_configured_lists_every_step(void **state)
{
    (void)state;
    int fd;
    int port = kn_t_closed_port(&fd);
    char ep[64];
    snprintf(ep, sizeof(ep), "http://127.0.0.1:%d/", port);
    unsetenv("AWS_EC2_METADATA_DISABLED");
    setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", ep, 1);
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    char expect[1024];
    snprintf(
        expect, sizeof(expect),
        "no credentials found: environment: AWS_ACCESS_KEY_ID not set; web identity: "
        "AWS_WEB_IDENTITY_TOKEN_FILE not set; profile default: not found in %s/.aws/credentials "
        "or %s/.aws/config; container: not configured; IMDS: no response from "
        "http://127.0.0.1:%d/ (connection refused)",
        kn_t_home, kn_t_home, port);
    assert_string_equal(e.message, expect);
    close(fd);

    /* a profile without keys says so; a disabled IMDS says so */
    kn_t_write(".aws/config", "[default]\nregion = eu-west-1\n", 0600);
    setenv("AWS_EC2_METADATA_DISABLED", "TRUE", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "profile default: no credentials in the profile"));
    assert_non_null(strstr(e.message, "IMDS: disabled by AWS_EC2_METADATA_DISABLED"));
}

static void source_profile_loops_are_detected(void **state)
{
    (void)state;
    kn_t_write(
        ".aws/config",
        "[profile a]\nrole_arn = arn:aws:iam::123456789012:role/a\nsource_profile = b\n"
        "[profile b]\nrole_arn = arn:aws:iam::123456789012:role/b\nsource_profile = c\n"
        "[profile c]\nrole_arn = arn:aws:iam::123456789012:role/c\nsource_profile = a\n"
        "[profile both]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = a\n"
        "credential_source = Environment\n"
        "[profile dangling]\nrole_arn = arn:aws:iam::123456789012:role/x\nsource_profile = nope\n"
        "[profile badsource]\nrole_arn = arn:aws:iam::123456789012:role/x\n"
        "credential_source = Somewhere\n",
        0600);
    kn__creds_t c;
    kn_error_t e;
    setenv("AWS_PROFILE", "a", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_string_equal(e.message, "source_profile loop: a -> b -> c -> a");
    setenv("AWS_PROFILE", "both", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "both source_profile and credential_source"));
    setenv("AWS_PROFILE", "dangling", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "source_profile nope does not exist"));
    setenv("AWS_PROFILE", "badsource", 1);
    assert_int_equal(resolve(NULL, &c, &e), KN_ERR_CREDENTIALS);
    assert_non_null(strstr(e.message, "credential_source 'Somewhere'"));
}

static char logged[8192];
static void log_cb(void *opaque, kn_log_level_t level, const char *ctx, const char *msg)
{
    (void)opaque;
    (void)level;
    (void)ctx;
    size_t have = strlen(logged);
    snprintf(logged + have, sizeof(logged) - have, "%s\n", msg);
}

static void secrets_are_registered_with_the_logger(void **state)
{
    (void)state;
    kn_t_write(".aws/credentials",
               "[default]\naws_access_key_id = AKIDLOGGED\n"
               "aws_secret_access_key = verySecretValue123\n"
               "aws_session_token = verySecretToken456\n",
               0600);
    kn__logger_t *lg = kn__logger_new(log_cb, NULL, KN_LOG_TRACE, KN_DBG_ALL);
    assert_non_null(lg);
    kn__creds_opts_t o = base_opts();
    o.log = lg;
    logged[0] = '\0';
    kn__creds_t c;
    kn_error_t e;
    assert_int_equal(resolve(&o, &c, &e), KN_ERR_OK);
    assert_non_null(strstr(logged, "credentials from profile:default"));
    kn__log(lg, KN_LOG_INFO, KN_DBG_CREDS, "leak test %s %s", c.secret_access_key, c.session_token);
    assert_null(strstr(logged, "verySecretValue123"));
    assert_null(strstr(logged, "verySecretToken456"));
    assert_non_null(strstr(logged, "leak test"));
    kn__creds_free(&c);
    kn__logger_destroy(lg);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(static_keys_of_default_profile_from_credentials_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(aws_profile_and_explicit_option_select_the_profile, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(config_file_profile_needs_the_profile_prefix, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(credentials_file_beats_config_file_and_process_sits_between,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(credential_process_output_is_parsed, setup, teardown),
        cmocka_unit_test_setup_teardown(credential_process_failure_reports_exit_status_and_stderr,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(credential_process_is_killed_after_its_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(credential_process_bad_output_is_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(static_options_beat_environment_which_beats_profile, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(partial_keys_are_errors_that_name_the_missing_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(nothing_configured_lists_every_step, setup, teardown),
        cmocka_unit_test_setup_teardown(source_profile_loops_are_detected, setup, teardown),
        cmocka_unit_test_setup_teardown(secrets_are_registered_with_the_logger, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
