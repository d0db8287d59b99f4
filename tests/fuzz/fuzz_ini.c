/*
 * The AWS shared config/credentials format: kn__ini_parse on any text, then
 * lookups; and the same text loaded as both shared files through the profile
 * layer (file reading, "[profile x]" / "[sso-session x]" sections,
 * sub-sections, precedence between the files).
 */
#include "fuzz.h"
#include "memfile.h"

#include "ini.h"
#include "profile.h"

static const char *const sections[] = {"default", "profile dev", "dev", "sso-session s", "x"};
static const char *const keys[] = {"region", "aws_access_key_id", "aws_secret_access_key",
                                   "role_arn", "source_profile", "s3.max_concurrent_requests",
                                   "credential_process", "sso_session", "sso_start_url", "a"};
#define N(a) (sizeof(a) / sizeof((a)[0]))

static fuzz_memfile_t file;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_memfile_open(&file, "aws-config");
    setenv("AWS_CONFIG_FILE", file.path, 1);
    setenv("AWS_SHARED_CREDENTIALS_FILE", file.path, 1);
    unsetenv("AWS_PROFILE");
    unsetenv("AWS_DEFAULT_PROFILE");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_cstr(data, size);
    kn__ini_t *ini = kn__ini_parse(text);
    if (ini) {
        FUZZ_CHECK(kn__ini_exists(ini));
        for (size_t i = 0; i < N(sections); i++) {
            int has = kn__ini_has_section(ini, sections[i]);
            for (size_t k = 0; k < N(keys); k++) {
                const char *v = kn__ini_get(ini, sections[i], keys[k]);
                if (v) {
                    FUZZ_CHECK(has);
                    (void)strlen(v);
                }
            }
        }
        kn__ini_destroy(ini);
    }

    fuzz_memfile_set(&file, data, size);
    kn__profiles_t *p = kn__profiles_load();
    if (p) {
        static const char *const profiles[] = {"default", "dev", "profile dev", "x"};
        for (size_t i = 0; i < N(profiles); i++) {
            (void)kn__profile_exists(p, profiles[i]);
            for (size_t k = 0; k < N(keys); k++) {
                const char *v = kn__profile_get(p, profiles[i], keys[k]);
                if (v)
                    (void)strlen(v);
                v = kn__profile_get_file(p, KN__PROFILE_CONFIG_FILE, profiles[i], keys[k]);
                if (v)
                    (void)strlen(v);
            }
        }
        const char *v = kn__profile_sso_session_get(p, "s", "sso_region");
        if (v)
            (void)strlen(v);
        kn__profiles_destroy(p);
    }
    free(text);
    return 0;
}
