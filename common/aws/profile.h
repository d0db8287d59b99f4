/*
 * Internal: the shared config and credentials files (~/.aws/config,
 * ~/.aws/credentials, AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE) and
 * profile selection.
 */
#ifndef KN_PROFILE_H
#define KN_PROFILE_H

typedef struct kn__profiles_s kn__profiles_t;

/* Loads both files (missing files are fine). NULL on ENOMEM. */
kn__profiles_t *kn__profiles_load(void);
void kn__profiles_destroy(kn__profiles_t *p);

/* explicit if non-empty, else AWS_PROFILE, else AWS_DEFAULT_PROFILE, else "default". Static or explicit storage. */
const char *kn__profile_name(const char *explicit_name);

/*
 * A key of a profile: the credentials file's [name] first for credential
 * keys, then the config file's [profile name] ([default] for "default").
 * NULL when absent.
 */
const char *kn__profile_get(const kn__profiles_t *p, const char *profile, const char *key);
/* A key of an [sso-session NAME] section of the config file. */
const char *kn__profile_sso_session_get(const kn__profiles_t *p, const char *session,
                                        const char *key);
/* Whether the profile exists in either file. */
int kn__profile_exists(const kn__profiles_t *p, const char *profile);

typedef enum kn__profile_file_e {
    KN__PROFILE_CREDENTIALS_FILE,
    KN__PROFILE_CONFIG_FILE,
} kn__profile_file_t;

/* A key of a profile in one file only (for precedence between the files). */
const char *kn__profile_get_file(const kn__profiles_t *p, kn__profile_file_t which,
                                 const char *profile, const char *key);
/* The path a file was loaded from (after "~" expansion); never NULL. */
const char *kn__profiles_path(const kn__profiles_t *p, kn__profile_file_t which);

/*
 * Expands a leading "~/" with getenv("HOME"). Returns a malloc'd string
 * (a copy when there is nothing to expand), NULL on ENOMEM.
 */
char *kn__path_expand_home(const char *path);

#endif
