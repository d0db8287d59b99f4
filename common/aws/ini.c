/*
 * The AWS shared config/credentials file format, read the way botocore's
 * configparser-based loader reads it, with two deliberate differences that
 * other AWS SDKs share: a comment may follow a value when whitespace
 * precedes its '#' or ';', and a repeated section or key merges (the later
 * value wins) instead of failing.
 *
 *   [section]            section names are trimmed; runs of blanks inside
 *                        collapse to one space ("profile   dev" == "profile dev")
 *   key = value          '=' or ':' separates; keys are lower-cased
 *   # comment / ; comment
 *   parent =             an empty value followed by indented lines opens a
 *     child = value      sub-section, stored as the key "parent.child"
 *   key = first          an indented line after a non-empty value continues
 *     second             it (joined with '\n')
 */
#include "ini.h"

#include <ctype.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Files larger than this are not credential files; treat them as unreadable. */
#define KN__INI_MAX_BYTES (4u * 1024 * 1024)

typedef struct ini_kv_s {
    char *key;
    char *value;
} ini_kv_t;

typedef struct ini_section_s {
    char *name;
    ini_kv_t *kv;
    size_t n_kv, cap_kv;
} ini_section_t;

struct kn__ini_s {
    ini_section_t *sec;
    size_t n_sec, cap_sec;
    int exists;
};

static char *dup_range(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static void trim(const char **p, size_t *n)
{
    while (*n && isspace((unsigned char)**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n && isspace((unsigned char)(*p)[*n - 1]))
        (*n)--;
}

static ini_section_t *find_section(const kn__ini_t *ini, const char *name)
{
    for (size_t i = 0; i < ini->n_sec; i++)
        if (strcmp(ini->sec[i].name, name) == 0)
            return &ini->sec[i];
    return NULL;
}

static ini_kv_t *find_kv(const ini_section_t *s, const char *key)
{
    for (size_t i = 0; i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0)
            return &s->kv[i];
    return NULL;
}

/* Returns the index of the (possibly new) section, or -1 on ENOMEM. */
static long section_open(kn__ini_t *ini, const char *p, size_t n)
{
    kn_buf_t name = KN_BUF_INIT;
    long idx = -1;
    int in_space = 0;
    for (size_t i = 0; i < n; i++) {
        if (isspace((unsigned char)p[i])) {
            in_space = 1;
            continue;
        }
        if (in_space && name.len && kn__buf_putc(&name, ' ') != 0)
            goto out;
        in_space = 0;
        if (kn__buf_putc(&name, p[i]) != 0)
            goto out;
    }
    if (kn__buf_reserve(&name, 0) != 0)
        goto out;
    ini_section_t *s = find_section(ini, name.data);
    if (s) {
        idx = (long)(s - ini->sec);
        goto out;
    }
    if (ini->n_sec == ini->cap_sec) {
        size_t cap = ini->cap_sec ? ini->cap_sec * 2 : 8;
        ini_section_t *ns = realloc(ini->sec, cap * sizeof(*ns));
        if (!ns)
            goto out;
        ini->sec = ns;
        ini->cap_sec = cap;
    }
    s = &ini->sec[ini->n_sec];
    memset(s, 0, sizeof(*s));
    s->name = kn__buf_steal(&name);
    if (!s->name)
        goto out;
    idx = (long)ini->n_sec++;
out:
    kn__buf_free(&name);
    return idx;
}

/* Sets key (lower-cased) to value, replacing an earlier value. 0 or -1. */
static int section_set(ini_section_t *s, const char *k, size_t kn, const char *v, size_t vn)
{
    char *key = dup_range(k, kn);
    char *value = dup_range(v, vn);
    if (!key || !value)
        goto fail;
    for (char *c = key; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    ini_kv_t *kv = find_kv(s, key);
    if (kv) {
        explicit_bzero(kv->value, strlen(kv->value)); /* values may be secrets */
        free(kv->value);
        kv->value = value;
        free(key);
        return 0;
    }
    if (s->n_kv == s->cap_kv) {
        size_t cap = s->cap_kv ? s->cap_kv * 2 : 8;
        ini_kv_t *nk = realloc(s->kv, cap * sizeof(*nk));
        if (!nk)
            goto fail;
        s->kv = nk;
        s->cap_kv = cap;
    }
    s->kv[s->n_kv].key = key;
    s->kv[s->n_kv].value = value;
    s->n_kv++;
    return 0;
fail:
    free(key);
    free(value);
    return -1;
}

/* Cuts a comment that starts with '#' or ';' preceded by whitespace. */
static void strip_value_comment(const char *p, size_t *n)
{
    for (size_t i = 1; i < *n; i++) {
        if ((p[i] == '#' || p[i] == ';') && isspace((unsigned char)p[i - 1])) {
            *n = i;
            break;
        }
    }
}

static int parse_into(kn__ini_t *ini, const char *text, size_t len)
{
    long cur = -1;           /* current section index */
    char parent[128] = "";   /* key of an open sub-section ("" if none) */
    char last_key[128] = ""; /* key of the last top-level value (for continuations) */
    size_t pos = 0;
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r')
            n--;
        int indented = n && (line[0] == ' ' || line[0] == '\t');
        const char *p = line;
        size_t m = n;
        trim(&p, &m);
        if (m == 0 || p[0] == '#' || p[0] == ';')
            continue;
        if (!indented && p[0] == '[') {
            const char *close = memchr(p, ']', m);
            parent[0] = last_key[0] = '\0';
            if (!close) {
                cur = -1; /* malformed header: ignore its keys */
                continue;
            }
            const char *name = p + 1;
            size_t name_len = (size_t)(close - name);
            trim(&name, &name_len);
            if (name_len == 0) {
                cur = -1;
                continue;
            }
            cur = section_open(ini, name, name_len);
            if (cur < 0)
                return -1;
            continue;
        }
        if (cur < 0)
            continue; /* keys before any section have no meaning */
        ini_section_t *s = &ini->sec[cur];
        if (indented && (parent[0] || last_key[0])) {
            if (parent[0]) {
                const char *eq = NULL;
                for (size_t i = 0; i < m; i++)
                    if (p[i] == '=' || p[i] == ':') {
                        eq = p + i;
                        break;
                    }
                if (!eq)
                    continue;
                const char *k = p, *v = eq + 1;
                size_t kn = (size_t)(eq - p), vn = m - kn - 1;
                trim(&k, &kn);
                strip_value_comment(v, &vn);
                trim(&v, &vn);
                char full[300];
                int fl = snprintf(full, sizeof(full), "%s.%.*s", parent, (int)kn, k);
                if (kn == 0 || fl < 0 || (size_t)fl >= sizeof(full))
                    continue;
                if (section_set(s, full, (size_t)fl, v, vn) != 0)
                    return -1;
            } else {
                ini_kv_t *kv = find_kv(s, last_key);
                if (!kv)
                    continue;
                size_t vn = m;
                strip_value_comment(p, &vn);
                size_t old = strlen(kv->value);
                char *nv = realloc(kv->value, old + 1 + vn + 1);
                if (!nv)
                    return -1;
                nv[old] = '\n';
                memcpy(nv + old + 1, p, vn);
                nv[old + 1 + vn] = '\0';
                kv->value = nv;
            }
            continue;
        }
        const char *eq = NULL;
        for (size_t i = 0; i < m; i++)
            if (p[i] == '=' || p[i] == ':') {
                eq = p + i;
                break;
            }
        parent[0] = last_key[0] = '\0';
        if (!eq)
            continue; /* not a key line: ignored, like an unknown line */
        const char *k = p, *v = eq + 1;
        size_t kn = (size_t)(eq - p), vn = m - kn - 1;
        trim(&k, &kn);
        strip_value_comment(v, &vn);
        trim(&v, &vn);
        if (kn == 0 || kn >= sizeof(last_key))
            continue;
        if (section_set(s, k, kn, v, vn) != 0)
            return -1;
        /* Remember the (lower-cased) key: indented lines below belong to it. */
        char *remember = vn == 0 ? parent : last_key;
        for (size_t i = 0; i < kn; i++)
            remember[i] = (char)tolower((unsigned char)k[i]);
        remember[kn] = '\0';
    }
    return 0;
}

kn__ini_t *kn__ini_parse(const char *text)
{
    kn__ini_t *ini = calloc(1, sizeof(*ini));
    if (!ini)
        return NULL;
    ini->exists = 1;
    if (text && parse_into(ini, text, strlen(text)) != 0) {
        kn__ini_destroy(ini);
        return NULL;
    }
    return ini;
}

kn__ini_t *kn__ini_load(const char *path)
{
    kn__ini_t *ini = calloc(1, sizeof(*ini));
    kn_buf_t text = KN_BUF_INIT;
    FILE *f = NULL;
    if (!ini)
        return NULL;
    if (!path || !*path)
        goto out;
    f = fopen(path, "rb");
    if (!f)
        goto out;
    /*
     * The text holds secrets (the credentials file): sized once from the
     * file so that no grown-and-freed copy is left behind, and wiped below.
     */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && st.st_size > 0 && st.st_size <= KN__INI_MAX_BYTES &&
        kn__buf_reserve(&text, (size_t)st.st_size + 1) != 0)
        goto out;
    char chunk[4096];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (text.len + got > KN__INI_MAX_BYTES)
            goto out; /* absurdly large: treated as unreadable */
        if (kn__buf_append(&text, chunk, got) != 0) {
            kn__ini_destroy(ini);
            ini = NULL;
            goto out;
        }
    }
    explicit_bzero(chunk, sizeof(chunk));
    if (ferror(f))
        goto out;
    ini->exists = 1;
    if (text.len && parse_into(ini, text.data, text.len) != 0) {
        kn__ini_destroy(ini);
        ini = NULL;
    }
out:
    if (f)
        fclose(f);
    if (text.data)
        explicit_bzero(text.data, text.cap);
    kn__buf_free(&text);
    return ini;
}

void kn__ini_destroy(kn__ini_t *ini)
{
    if (!ini)
        return;
    for (size_t i = 0; i < ini->n_sec; i++) {
        ini_section_t *s = &ini->sec[i];
        for (size_t j = 0; j < s->n_kv; j++) {
            free(s->kv[j].key);
            if (s->kv[j].value) {
                /* values may be secrets */
                memset(s->kv[j].value, 0, strlen(s->kv[j].value));
                free(s->kv[j].value);
            }
        }
        free(s->kv);
        free(s->name);
    }
    free(ini->sec);
    free(ini);
}

int kn__ini_exists(const kn__ini_t *ini) { return ini && ini->exists; }

const char *kn__ini_get(const kn__ini_t *ini, const char *section, const char *key)
{
    if (!ini || !section || !key)
        return NULL;
    const ini_section_t *s = find_section(ini, section);
    if (!s)
        return NULL;
    char lower[128];
    size_t n = strlen(key);
    if (n >= sizeof(lower))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)tolower((unsigned char)key[i]);
    const ini_kv_t *kv = find_kv(s, lower);
    return kv ? kv->value : NULL;
}

int kn__ini_has_section(const kn__ini_t *ini, const char *section)
{
    return ini && section && find_section(ini, section) != NULL;
}
