/* Internal: region and endpoint resolution (README "Pointing it at AWS"). */
#ifndef KN_ENDPOINT_H
#define KN_ENDPOINT_H

#include "err.h"

typedef enum kn__service_e {
    KN__SVC_KINESIS,
    KN__SVC_DYNAMODB,
    KN__SVC_STS,
    KN__SVC_CLOUDWATCH,
    KN__SVC_SSO,
    KN__SVC__COUNT
} kn__service_t;

/* SigV4 signing name ("kinesis", "dynamodb", "sts", "monitoring", "portal.sso"). */
const char *kn__service_signing_name(kn__service_t svc);
/* X-Amz-Target prefix ("Kinesis_20131202", "DynamoDB_20120810"), NULL if not JSON. */
const char *kn__service_target_prefix(kn__service_t svc);
/* Content-Type of the JSON protocol version. */
const char *kn__service_content_type(kn__service_t svc);

/*
 * Region: explicit, AWS_REGION, AWS_DEFAULT_REGION, the profile's region,
 * else "us-east-1". Returns a malloc'd string.
 */
char *kn__region_resolve(const char *explicit_region, const char *profile);

/*
 * Endpoint URL: explicit, the service's AWS_ENDPOINT_URL_<SVC>, AWS_ENDPOINT_URL,
 * the profile's endpoint_url, then https://<host>.<region>.amazonaws.com
 * (.com.cn in China regions). Returns a malloc'd URL without a trailing
 * slash, or NULL with err set when the result is not an http(s) URL.
 */
char *kn__endpoint_resolve(kn__service_t svc, const char *explicit_url, const char *region,
                           const char *profile, kn_error_t *err);

/* Splits a URL into host[:port] for the Host header (malloc'd). NULL if malformed. */
char *kn__endpoint_host_header(const char *url);

#endif
