/*
 * Internal: the AWS shared config/credentials file format (INI with
 * "[profile name]" sections in the config file, "key = value", '#' and ';'
 * comments, indented sub-sections such as "s3 =\n  key = value").
 */
#ifndef KN_INI_H
#define KN_INI_H

typedef struct kn__ini_s kn__ini_t;

/* Loads path; a missing file yields an empty ini (not an error). NULL on ENOMEM. */
kn__ini_t *kn__ini_load(const char *path);
/* Parses text (for tests). */
kn__ini_t *kn__ini_parse(const char *text);
void kn__ini_destroy(kn__ini_t *ini);
/* Whether the file existed / was readable. */
int kn__ini_exists(const kn__ini_t *ini);
/* Value of key in section, or NULL. Section names are exact: "default", "profile dev", "sso-session x". */
const char *kn__ini_get(const kn__ini_t *ini, const char *section, const char *key);
int kn__ini_has_section(const kn__ini_t *ini, const char *section);

#endif
