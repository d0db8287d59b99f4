/* The shared config/credentials file format and profile lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "creds_int.h"
#include "ini.h"
#include "profile.h"

static void ini_reads_sections_keys_and_comments(void **state)
{
    (void)state;
    kn__ini_t *ini =
        kn__ini_parse("# top comment\n"
                      "[default]\n"
                      "aws_access_key_id = AKIDDEFAULT\n"
                      "  ; indented comment\n"
                      "AWS_Secret_Access_Key=secret/with+chars==\n"
                      "region: eu-west-1\n"
                      "[profile   dev ]\r\n"
                      "role_arn = arn:aws:iam::123456789012:role/x # trailing comment\n"
                      "url = http://h/#frag\n"
                      "empty =\n"
                      "\n"
                      "[sso-session corp]\n"
                      "sso_start_url = https://corp.awsapps.com/start\n");
    assert_non_null(ini);
    assert_true(kn__ini_exists(ini));
    assert_string_equal(kn__ini_get(ini, "default", "aws_access_key_id"), "AKIDDEFAULT");
    /* keys are case-insensitive, values keep '=' and '/' */
    assert_string_equal(kn__ini_get(ini, "default", "aws_secret_access_key"),
                        "secret/with+chars==");
    assert_string_equal(kn__ini_get(ini, "default", "AWS_SECRET_ACCESS_KEY"),
                        "secret/with+chars==");
    assert_string_equal(kn__ini_get(ini, "default", "region"), "eu-west-1");
    /* blanks inside the header collapse; CRLF is fine */
    assert_true(kn__ini_has_section(ini, "profile dev"));
    assert_string_equal(kn__ini_get(ini, "profile dev", "role_arn"),
                        "arn:aws:iam::123456789012:role/x");
    /* '#' without whitespace before it is part of the value */
    assert_string_equal(kn__ini_get(ini, "profile dev", "url"), "http://h/#frag");
    assert_string_equal(kn__ini_get(ini, "profile dev", "empty"), "");
    assert_string_equal(kn__ini_get(ini, "sso-session corp", "sso_start_url"),
                        "https://corp.awsapps.com/start");
    assert_null(kn__ini_get(ini, "default", "missing"));
    assert_null(kn__ini_get(ini, "nosuch", "region"));
    assert_false(kn__ini_has_section(ini, "Default")); /* section names are exact */
    kn__ini_destroy(ini);
}

static void ini_subsections_continuations_and_duplicates(void **state)
{
    (void)state;
    kn__ini_t *ini = kn__ini_parse("stray = before any section\n"
                                   "[a]\n"
                                   "s3 =\n"
                                   "  max_concurrent_requests = 20\n"
                                   "  addressing_style = path\n"
                                   "region = us-west-2\n"
                                   "multi = first\n"
                                   "  second\n"
                                   "garbage line without separator\n"
                                   "[b\n"
                                   "lost = yes\n"
                                   "[a]\n"
                                   "region = us-east-2\n");
    assert_non_null(ini);
    assert_string_equal(kn__ini_get(ini, "a", "s3.max_concurrent_requests"), "20");
    assert_string_equal(kn__ini_get(ini, "a", "s3.addressing_style"), "path");
    assert_string_equal(kn__ini_get(ini, "a", "s3"), "");
    assert_string_equal(kn__ini_get(ini, "a", "multi"), "first\nsecond");
    /* a repeated section merges, the later value wins */
    assert_string_equal(kn__ini_get(ini, "a", "region"), "us-east-2");
    /* a broken header hides its keys rather than giving them to the previous section */
    assert_null(kn__ini_get(ini, "a", "lost"));
    assert_false(kn__ini_has_section(ini, "b"));
    kn__ini_destroy(ini);
}

static void ini_missing_file_is_empty_not_an_error(void **state)
{
    (void)state;
    kn__ini_t *ini = kn__ini_load("/nonexistent/dir/config");
    assert_non_null(ini);
    assert_false(kn__ini_exists(ini));
    assert_null(kn__ini_get(ini, "default", "region"));
    kn__ini_destroy(ini);
    ini = kn__ini_parse("");
    assert_non_null(ini);
    kn__ini_destroy(ini);
}

static char tmpdir[PATH_MAX];

static void write_file(const char *name, const char *text)
{
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_files(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/kn-ini-test-%d-XXXXXX", (int)getpid());
    if (!mkdtemp(tmpdir))
        return -1;
    setenv("HOME", tmpdir, 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
    char d[PATH_MAX + 8];
    snprintf(d, sizeof(d), "%s/.aws", tmpdir);
    mkdir(d, 0700);
    return 0;
}

static int teardown_files(void **state)
{
    (void)state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void profiles_merge_files_with_credentials_first(void **state)
{
    (void)state;
    write_file(".aws/credentials", "[default]\naws_access_key_id = FROMCREDS\n"
                                   "[dev]\naws_access_key_id = DEVCREDS\n");
    write_file(".aws/config", "[default]\naws_access_key_id = FROMCONFIG\nregion = eu-north-1\n"
                              "[profile dev]\nregion = ap-south-1\n"
                              "[ops]\nregion = ignored-without-profile-prefix\n"
                              "[sso-session corp]\nsso_region = us-east-2\n");
    kn__profiles_t *p = kn__profiles_load();
    assert_non_null(p);
    assert_string_equal(kn__profile_get(p, "default", "aws_access_key_id"), "FROMCREDS");
    assert_string_equal(
        kn__profile_get_file(p, KN__PROFILE_CONFIG_FILE, "default", "aws_access_key_id"),
        "FROMCONFIG");
    assert_string_equal(kn__profile_get(p, "default", "region"), "eu-north-1");
    assert_string_equal(kn__profile_get(p, "dev", "aws_access_key_id"), "DEVCREDS");
    assert_string_equal(kn__profile_get(p, "dev", "region"), "ap-south-1");
    assert_true(kn__profile_exists(p, "dev"));
    assert_false(kn__profile_exists(p, "ops")); /* config needs "[profile ops]" */
    assert_null(kn__profile_get(p, "ops", "region"));
    assert_string_equal(kn__profile_sso_session_get(p, "corp", "sso_region"), "us-east-2");
    char expect[PATH_MAX + 32];
    snprintf(expect, sizeof(expect), "%s/.aws/config", tmpdir);
    assert_string_equal(kn__profiles_path(p, KN__PROFILE_CONFIG_FILE), expect);
    kn__profiles_destroy(p);
}

static void profiles_paths_from_environment_and_profile_default_section(void **state)
{
    (void)state;
    write_file("alt-config", "[default]\nregion = from-default\n"
                             "[profile default]\nregion = from-profile-default\n");
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/alt-config", tmpdir);
    setenv("AWS_CONFIG_FILE", path, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", "~/alt-credentials", 1);
    write_file("alt-credentials", "[x]\naws_access_key_id = ALT\n");
    kn__profiles_t *p = kn__profiles_load();
    assert_non_null(p);
    /* [profile default] wins over [default] */
    assert_string_equal(kn__profile_get(p, "default", "region"), "from-profile-default");
    /* "~" expands to HOME */
    assert_string_equal(kn__profile_get(p, "x", "aws_access_key_id"), "ALT");
    kn__profiles_destroy(p);
    unsetenv("AWS_CONFIG_FILE");
    unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

static void profile_name_selection_order(void **state)
{
    (void)state;
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
    assert_string_equal(kn__profile_name(NULL), "default");
    assert_string_equal(kn__profile_name(""), "default");
    setenv("AWS_DEFAULT_PROFILE", "legacy", 1);
    assert_string_equal(kn__profile_name(NULL), "legacy");
    setenv("AWS_PROFILE", "env", 1);
    assert_string_equal(kn__profile_name(NULL), "env");
    assert_string_equal(kn__profile_name("explicit"), "explicit");
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
}

/* Expiration times as STS, credential_process, containers and the SSO cache write them. */
static void iso8601_times_of_credential_sources(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        long long t;
    } ok[] = {
        {"2031-02-03T04:05:06Z", 1927857906LL},      {"2031-02-03T04:05:06.157032Z", 1927857906LL},
        {"2031-02-03T04:05:06UTC", 1927857906LL},    {"2031-02-03T04:05:06", 1927857906LL},
        {"2031-02-03T05:05:06+01:00", 1927857906LL}, {"2031-02-03T03:35:06-0030", 1927857906LL},
        {"2031-02-03 04:05:06z\n", 1927857906LL},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        time_t t = 0;
        assert_int_equal(kn__creds_parse_time(ok[i].s, strlen(ok[i].s), &t), 0);
        assert_int_equal((long long)t, ok[i].t);
    }
    static const char *const bad[] = {"",
                                      "2031-02-03",
                                      "2031-02-03T04:05",
                                      "2031-13-03T04:05:06Z",
                                      "2031-02-03T04:05:06Q",
                                      "2031-02-03T04:05:06.Z",
                                      "2031-02-03T04:05:06+1",
                                      "tomorrow",
                                      "2031-02-03T24:00:00Z"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        time_t t = 0;
        assert_int_equal(kn__creds_parse_time(bad[i], strlen(bad[i]), &t), -1);
    }
    /* the view's length is honoured: a longer buffer is not read past n */
    const char *longer = "2031-02-03T04:05:06Zjunk";
    time_t t = 0;
    assert_int_equal(kn__creds_parse_time(longer, 20, &t), 0);
    assert_int_equal((long long)t, 1927857906LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(ini_reads_sections_keys_and_comments),
        cmocka_unit_test(ini_subsections_continuations_and_duplicates),
        cmocka_unit_test(ini_missing_file_is_empty_not_an_error),
        cmocka_unit_test_setup_teardown(profiles_merge_files_with_credentials_first, setup_files,
                                        teardown_files),
        cmocka_unit_test_setup_teardown(profiles_paths_from_environment_and_profile_default_section,
                                        setup_files, teardown_files),
        cmocka_unit_test(profile_name_selection_order),
        cmocka_unit_test(iso8601_times_of_credential_sources),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
