/*
 * Internal: the property table and typed getters. conf.c owns parsing,
 * validation, aliases and the list dump. Later components add their rows to
 * KN_CONF_PROPS (one table drives defaults, validation, -X list and docs).
 */
#ifndef KN_CONF_H
#define KN_CONF_H

#include <stdbool.h>
#include <stdint.h>

#include "kinesis/common.h"

typedef enum kn__ctype_e {
    KN__CT_STR,    /* free string */
    KN__CT_SECRET, /* string, never printed (reads back as "[redacted]") */
    KN__CT_URL,    /* "" or an http:// / https:// URL */
    KN__CT_INT,    /* int64 within [min, max] */
    KN__CT_BOOL,   /* true/false (also 1/0, yes/no, on/off; case-insensitive) */
    KN__CT_LEVEL,  /* log level name */
    KN__CT_DEBUG,  /* comma-separated debug contexts */
} kn__ctype_t;

/* X(ID, name, type, default, min, max, doc). min/max apply to INT only. */
#define KN_CONF_PROPS(X)                                                                         \
    X(REGION, "aws.region", KN__CT_STR, "", 0, 0,                                                \
      "AWS region. Empty: AWS_REGION, AWS_DEFAULT_REGION, the profile's region, else us-east-1") \
    X(PROFILE, "aws.profile", KN__CT_STR, "", 0, 0,                                              \
      "Shared-config profile. Empty: AWS_PROFILE, else \"default\"")                             \
    X(ACCESS_KEY_ID, "aws.access.key.id", KN__CT_STR, "", 0, 0,                                  \
      "Static access key id; when set (with the secret) the credential chain is skipped")        \
    X(SECRET_ACCESS_KEY, "aws.secret.access.key", KN__CT_SECRET, "", 0, 0,                       \
      "Static secret access key")                                                                \
    X(SESSION_TOKEN, "aws.session.token", KN__CT_SECRET, "", 0, 0,                               \
      "Static session token (optional)")                                                         \
    X(KINESIS_ENDPOINT, "kinesis.endpoint", KN__CT_URL, "", 0, 0,                                \
      "Kinesis endpoint URL. Empty: AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, the profile's "  \
      "endpoint_url, else the regional endpoint")                                                \
    X(DYNAMODB_ENDPOINT, "dynamodb.endpoint", KN__CT_URL, "", 0, 0,                              \
      "DynamoDB endpoint URL (lease table). Empty: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, "\
      "the profile's endpoint_url, else the regional endpoint")                                  \
    X(STS_ENDPOINT, "sts.endpoint", KN__CT_URL, "", 0, 0,                                        \
      "STS endpoint URL for role credentials. Empty: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL, "   \
      "else the regional endpoint")                                                              \
    X(CA_BUNDLE, "http.ca.bundle", KN__CT_STR, "", 0, 0,                                         \
      "PEM file of CA certificates. Empty: AWS_CA_BUNDLE, else the system store")                \
    X(TLS_VERIFY, "http.tls.verify", KN__CT_BOOL, "true", 0, 0,                                  \
      "Verify the server's TLS certificate and host name")                                       \
    X(MAX_CONNECTIONS, "http.max.connections", KN__CT_INT, "24", 1, 256,                         \
      "Maximum concurrent HTTP connections per client")                                          \
    X(CONNECT_TIMEOUT_MS, "http.connect.timeout.ms", KN__CT_INT, "6000", 100, 300000,            \
      "TCP+TLS connect timeout in milliseconds")                                                 \
    X(REQUEST_TIMEOUT_MS, "http.request.timeout.ms", KN__CT_INT, "6000", 100, 600000,            \
      "Timeout of one HTTP request attempt in milliseconds")                                     \
    X(MAX_RESPONSE_BYTES, "http.max.response.bytes", KN__CT_INT, "67108864", 1024,               \
      1073741824, "Largest response body accepted; larger fails with KN_ERR_TOO_LARGE")          \
    X(RETRY_MAX_ATTEMPTS, "aws.retry.max.attempts", KN__CT_INT, "10", 1, 100,                   \
      "Attempts (first try included) of a control-plane request before giving up")              \
    X(RETRY_BASE_MS, "aws.retry.base.ms", KN__CT_INT, "100", 1, 60000,                           \
      "Base delay of exponential backoff with full jitter, in milliseconds")                     \
    X(RETRY_MAX_BACKOFF_MS, "aws.retry.max.backoff.ms", KN__CT_INT, "20000", 1, 600000,          \
      "Largest backoff delay between two attempts, in milliseconds")                             \
    X(PUT_MAX_RECORDS, "kinesis.putrecords.max.records", KN__CT_INT, "500", 1, 100000,           \
      "Most records in one PutRecords request (the service allows 500)")                         \
    X(PUT_MAX_BYTES, "kinesis.putrecords.max.bytes", KN__CT_INT, "5242880", 1024, 1073741824,    \
      "Most bytes (data plus partition keys) in one PutRecords request")                         \
    X(RECORD_MAX_BYTES, "kinesis.record.max.bytes", KN__CT_INT, "1048576", 1, 1073741824,        \
      "Largest record (data plus partition key); the stream's MaxRecordSizeInKiB may raise it")  \
    X(LOG_LEVEL, "log.level", KN__CT_LEVEL, "info", 0, 0,                                        \
      "Least severe level delivered to the log callback: error, warn, info, debug, trace")       \
    X(DEBUG, "debug", KN__CT_DEBUG, "", 0, 0,                                                    \
      "Debug contexts for debug/trace messages: generic,conf,http,sigv4,creds,aws,kinesis,"      \
      "dynamodb,producer,consumer,lease or all")

#define KN__PROP_ENUM(id, name, type, def, min, max, doc) KN_P_##id,
typedef enum kn__prop_e { KN_CONF_PROPS(KN__PROP_ENUM) KN_P__COUNT } kn__prop_t;
#undef KN__PROP_ENUM

/* Typed getters; the property must have the matching type (asserted). */
const char *kn__conf_str(const kn_conf_t *conf, kn__prop_t id); /* never NULL */
int64_t kn__conf_int(const kn_conf_t *conf, kn__prop_t id);
bool kn__conf_bool(const kn_conf_t *conf, kn__prop_t id);
/* Whether the property was set explicitly (not the default). */
bool kn__conf_is_set(const kn_conf_t *conf, kn__prop_t id);
/* The log callback set with kn_conf_set_log_cb(). */
kn_log_cb_t *kn__conf_log_cb(const kn_conf_t *conf, void **opaque);

#endif
