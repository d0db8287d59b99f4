/*
 * The shared config and credentials files and profile selection.
 *
 * As in botocore, a profile is the union of the credentials file's [name]
 * and the config file's [profile name] ([default] or [profile default] for
 * "default"), the credentials file winning where both set a key.
 */
#include "profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ini.h"

struct kn__profiles_s {
    kn__ini_t *config;
    kn__ini_t *credentials;
    char *config_path;
    char *credentials_path;
};

char *kn__path_expand_home(const char *path)
{
    if (!path)
        return NULL;
    if (path[0] == '~' && (path[1] == '/' || path[1] == '\0')) {
        const char *home = getenv("HOME");
        if (home && *home) {
            size_t hl = strlen(home), pl = strlen(path + 1);
            char *s = malloc(hl + pl + 1);
            if (s) {
                memcpy(s, home, hl);
                memcpy(s + hl, path + 1, pl + 1);
            }
            return s;
        }
    }
    return strdup(path);
}

static char *file_path(const char *env_var, const char *fallback)
{
    const char *v = getenv(env_var);
    return kn__path_expand_home(v && *v ? v : fallback);
}

kn__profiles_t *kn__profiles_load(void)
{
    kn__profiles_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->config_path = file_path("AWS_CONFIG_FILE", "~/.aws/config");
    p->credentials_path = file_path("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials");
    if (!p->config_path || !p->credentials_path)
        goto fail;
    p->config = kn__ini_load(p->config_path);
    p->credentials = kn__ini_load(p->credentials_path);
    if (!p->config || !p->credentials)
        goto fail;
    return p;
fail:
    kn__profiles_destroy(p);
    return NULL;
}

void kn__profiles_destroy(kn__profiles_t *p)
{
    if (!p)
        return;
    kn__ini_destroy(p->config);
    kn__ini_destroy(p->credentials);
    free(p->config_path);
    free(p->credentials_path);
    free(p);
}

const char *kn__profile_name(const char *explicit_name)
{
    if (explicit_name && *explicit_name)
        return explicit_name;
    const char *v = getenv("AWS_PROFILE");
    if (v && *v)
        return v;
    v = getenv("AWS_DEFAULT_PROFILE");
    if (v && *v)
        return v;
    return "default";
}

/* The config file section for a profile: "profile NAME"; "default" also as [default]. */
static const char *config_get(const kn__profiles_t *p, const char *profile, const char *key)
{
    char section[512];
    int n = snprintf(section, sizeof(section), "profile %s", profile);
    if (n < 0 || (size_t)n >= sizeof(section))
        return NULL;
    if (strcmp(profile, "default") == 0 && kn__ini_has_section(p->config, section))
        return kn__ini_get(p->config, section, key); /* [profile default] wins over [default] */
    if (strcmp(profile, "default") == 0)
        return kn__ini_get(p->config, "default", key);
    return kn__ini_get(p->config, section, key);
}

const char *kn__profile_get_file(const kn__profiles_t *p, kn__profile_file_t which,
                                 const char *profile, const char *key)
{
    if (!p || !profile || !key)
        return NULL;
    if (which == KN__PROFILE_CREDENTIALS_FILE)
        return kn__ini_get(p->credentials, profile, key);
    return config_get(p, profile, key);
}

const char *kn__profile_get(const kn__profiles_t *p, const char *profile, const char *key)
{
    const char *v = kn__profile_get_file(p, KN__PROFILE_CREDENTIALS_FILE, profile, key);
    return v ? v : kn__profile_get_file(p, KN__PROFILE_CONFIG_FILE, profile, key);
}

const char *kn__profile_sso_session_get(const kn__profiles_t *p, const char *session,
                                        const char *key)
{
    if (!p || !session || !key)
        return NULL;
    char section[512];
    int n = snprintf(section, sizeof(section), "sso-session %s", session);
    if (n < 0 || (size_t)n >= sizeof(section))
        return NULL;
    return kn__ini_get(p->config, section, key);
}

int kn__profile_exists(const kn__profiles_t *p, const char *profile)
{
    if (!p || !profile)
        return 0;
    if (kn__ini_has_section(p->credentials, profile))
        return 1;
    char section[512];
    int n = snprintf(section, sizeof(section), "profile %s", profile);
    if (n > 0 && (size_t)n < sizeof(section) && kn__ini_has_section(p->config, section))
        return 1;
    return strcmp(profile, "default") == 0 && kn__ini_has_section(p->config, "default");
}

const char *kn__profiles_path(const kn__profiles_t *p, kn__profile_file_t which)
{
    if (!p)
        return "";
    return which == KN__PROFILE_CREDENTIALS_FILE ? p->credentials_path : p->config_path;
}
