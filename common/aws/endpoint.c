/* Region and endpoint resolution: explicit configuration, environment, profile, regional default. */
#include "endpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "profile.h"

static const struct {
    const char *signing_name;
    const char *target_prefix;
    const char *content_type;
    const char *env_suffix; /* AWS_ENDPOINT_URL_<suffix> */
    const char *host_prefix;
} services[KN__SVC__COUNT] = {
    [KN__SVC_KINESIS] = {"kinesis", "Kinesis_20131202", "application/x-amz-json-1.1", "KINESIS", "kinesis"},
    [KN__SVC_DYNAMODB] = {"dynamodb", "DynamoDB_20120810", "application/x-amz-json-1.0", "DYNAMODB", "dynamodb"},
    [KN__SVC_STS] = {"sts", NULL, "application/x-www-form-urlencoded", "STS", "sts"},
    [KN__SVC_CLOUDWATCH] = {"monitoring", NULL, "application/x-www-form-urlencoded", "CLOUDWATCH", "monitoring"},
    [KN__SVC_SSO] = {"awsssoportal", NULL, "application/json", "SSO", "portal.sso"},
};

const char *kn__service_signing_name(kn__service_t svc) { return services[svc].signing_name; }
const char *kn__service_target_prefix(kn__service_t svc) { return services[svc].target_prefix; }
const char *kn__service_content_type(kn__service_t svc) { return services[svc].content_type; }

static const char *nonempty_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

char *kn__region_resolve(const char *explicit_region, const char *profile)
{
    const char *r = explicit_region && *explicit_region ? explicit_region : NULL;
    if (!r)
        r = nonempty_env("AWS_REGION");
    if (!r)
        r = nonempty_env("AWS_DEFAULT_REGION");
    if (r)
        return strdup(r);
    char *out = NULL;
    kn__profiles_t *p = kn__profiles_load();
    if (p) {
        const char *pr = kn__profile_get(p, kn__profile_name(profile), "region");
        if (pr && *pr)
            out = strdup(pr);
        kn__profiles_destroy(p);
    }
    return out ? out : strdup("us-east-1");
}

static int valid_url(const char *url)
{
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return 0;
    const char *host = strstr(url, "://") + 3;
    return *host && *host != '/' && *host != ':';
}

char *kn__endpoint_resolve(kn__service_t svc, const char *explicit_url, const char *region,
                           const char *profile, kn_error_t *err)
{
    char envname[64];
    const char *url = NULL, *from = NULL;
    char *profile_url = NULL, *out = NULL;

    if (explicit_url && *explicit_url) {
        url = explicit_url;
        from = "configuration";
    }
    if (!url) {
        snprintf(envname, sizeof(envname), "AWS_ENDPOINT_URL_%s", services[svc].env_suffix);
        if ((url = nonempty_env(envname)) != NULL)
            from = envname;
    }
    if (!url && (url = nonempty_env("AWS_ENDPOINT_URL")) != NULL)
        from = "AWS_ENDPOINT_URL";
    if (!url) {
        kn__profiles_t *p = kn__profiles_load();
        if (p) {
            const char *v = kn__profile_get(p, kn__profile_name(profile), "endpoint_url");
            if (v && *v)
                profile_url = strdup(v);
            kn__profiles_destroy(p);
        }
        if (profile_url) {
            url = profile_url;
            from = "the profile's endpoint_url";
        }
    }
    if (url) {
        const char *auth = strstr(url, "://");
        size_t auth_len = auth ? strcspn(auth + 3, "/?#") : 0;
        const char *at = auth ? memchr(auth + 3, '@', auth_len) : NULL;
        if (at) {
            /*
             * user:password@ in an endpoint would end up in logs and in the
             * Host header; SigV4 is the only authentication AWS endpoints
             * take. Refused, and never repeated in the message.
             */
            kn__error_set(err, KN_ERR_CONF_INVALID,
                          "endpoint \"%.*s***@%s\" from %s contains user information (user:password@); "
                          "remove it: requests are authenticated by SigV4 only",
                          (int)(auth + 3 - url), url, at + 1, from);
            goto out;
        }
        if (!valid_url(url)) {
            kn__error_set(err, KN_ERR_CONF_INVALID,
                          "endpoint \"%s\" from %s is not an http:// or https:// URL", url, from);
            goto out;
        }
        size_t n = strlen(url);
        while (n > 0 && url[n - 1] == '/')
            n--;
        out = strndup(url, n);
    } else {
        const char *reg = region && *region ? region : "us-east-1";
        const char *suffix = strncmp(reg, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
        size_t n = strlen(services[svc].host_prefix) + strlen(reg) + strlen(suffix) + 16;
        out = malloc(n);
        if (out)
            snprintf(out, n, "https://%s.%s.%s", services[svc].host_prefix, reg, suffix);
    }
    if (!out)
        kn__error_set(err, KN_ERR_NOMEM, "out of memory resolving an endpoint");
out:
    free(profile_url);
    return out;
}

char *kn__endpoint_host_header(const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return NULL;
    int https = strncasecmp(url, "https", 5) == 0;
    p += 3;
    size_t n = strcspn(p, "/?#");
    if (n == 0)
        return NULL;
    /* Drop a default port, as curl does for the Host header it would send. */
    if (https && n > 4 && strncmp(p + n - 4, ":443", 4) == 0 && p[n - 5] != ']')
        n -= 4;
    else if (!https && n > 3 && strncmp(p + n - 3, ":80", 3) == 0 && p[n - 4] != ']')
        n -= 3;
    return strndup(p, n);
}
