/*
 * libkinesis: the parts every component shares.
 *
 * Errors, the configuration object, logging and the client context (the I/O
 * thread, HTTP connection pool, credentials and endpoints) that producers and
 * consumers in one process may share. Installed as <kinesis/common.h>.
 *
 * Threads: unless a function says otherwise it may be called from any thread.
 * Ownership: strings passed in are copied; strings returned are owned by the
 * object they came from and stay valid until it is destroyed, unless stated.
 */
#ifndef KINESIS_COMMON_H
#define KINESIS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KN_BUILDING_LIBRARY)
#define KN_API __attribute__((visibility("default")))
#else
#define KN_API
#endif

/* ---------------------------------------------------------------- version */

#define KN_VERSION_MAJOR 0
#define KN_VERSION_MINOR 1
#define KN_VERSION_PATCH 0
#define KN_VERSION_STR "0.1.0"

/** The library's version string, for example "0.1.0". Static storage. */
KN_API const char *kn_version_str(void);

/* ----------------------------------------------------------------- errors */

/*
 * The one list of error codes. X(NAME, description). KN_ERR_<NAME> is the
 * enum value; kn_err2name() returns "KN_ERR_<NAME>" and kn_err2str() the
 * description.
 */
#define KN_ERRORS(X)                                                             \
    X(OK, "success")                                                             \
    X(INVALID_ARG, "invalid argument")                                           \
    X(NOMEM, "out of memory")                                                    \
    X(CONF_UNKNOWN, "unknown configuration property")                            \
    X(CONF_INVALID, "invalid configuration value")                               \
    X(IO, "local I/O error")                                                     \
    X(TRANSPORT, "could not reach the server (connection or protocol error)")    \
    X(TIMEOUT, "timed out")                                                      \
    X(TLS, "TLS error (certificate or handshake)")                               \
    X(BAD_RESPONSE, "malformed or unexpected response from the server")          \
    X(SERVICE, "the service returned an error")                                  \
    X(THROTTLED, "throttled by the service")                                     \
    X(NOT_FOUND, "resource not found")                                           \
    X(IN_USE, "resource in use or not ready")                                    \
    X(CONDITION_FAILED, "conditional write failed")                              \
    X(VALIDATION, "the service rejected the request as invalid")                 \
    X(AUTH, "authentication or authorization failed")                            \
    X(EXPIRED_TOKEN, "security token expired")                                   \
    X(CREDENTIALS, "no usable credentials")                                      \
    X(EXPIRED_ITERATOR, "shard iterator expired")                                \
    X(STATE, "operation not allowed in the current state")                       \
    X(DESTROYED, "the object is being destroyed")                                \
    X(QUEUE_FULL, "queue full")                                                  \
    X(NOT_SUPPORTED, "not supported")                                            \
    X(TOO_LARGE, "too large")                                                    \
    X(LEASE_LOST, "the lease is lost: another worker owns the shard now")

#define KN__ERR_ENUM(name, desc) KN_ERR_##name,
typedef enum kn_err_e { KN_ERRORS(KN__ERR_ENUM) KN_ERR__COUNT } kn_err_t;
#undef KN__ERR_ENUM

/** Description of an error code. Static storage; never NULL. */
KN_API const char *kn_err2str(kn_err_t err);
/** Symbolic name of an error code, for example "KN_ERR_TIMEOUT". */
KN_API const char *kn_err2name(kn_err_t err);

/*
 * A rich error, filled in by calls that talk to a service: the error code,
 * a message that names the cause, the AWS error type (for example
 * "ResourceNotFoundException", prefix and suffix stripped), the HTTP status
 * (0 when no response arrived), the request id and whether a retry could
 * succeed. Owned by the caller.
 */
typedef struct kn_error_s kn_error_t;

KN_API kn_error_t *kn_error_new(void);
KN_API void kn_error_destroy(kn_error_t *e);
KN_API kn_err_t kn_error_code(const kn_error_t *e);
/** Never NULL; "" when there is no error. */
KN_API const char *kn_error_message(const kn_error_t *e);
/** Never NULL; "" when the error did not come from the service. */
KN_API const char *kn_error_aws_type(const kn_error_t *e);
KN_API int kn_error_http_status(const kn_error_t *e);
/** Never NULL; "" when unknown. */
KN_API const char *kn_error_request_id(const kn_error_t *e);
KN_API bool kn_error_is_retriable(const kn_error_t *e);

/* ---------------------------------------------------------- configuration */

/*
 * A string key/value configuration. Every property has a type, a default,
 * bounds and documentation in one table; kn_conf_list() prints it. KPL and
 * KCL property names are accepted as aliases (case-sensitive) with their
 * units converted, so existing .properties files load unchanged.
 */
typedef struct kn_conf_s kn_conf_t;

KN_API kn_conf_t *kn_conf_new(void);
KN_API void kn_conf_destroy(kn_conf_t *conf);
/** A deep copy. */
KN_API kn_conf_t *kn_conf_dup(const kn_conf_t *conf);

/**
 * Set a property. Returns KN_ERR_OK, KN_ERR_CONF_UNKNOWN or
 * KN_ERR_CONF_INVALID with a message naming the property in errstr.
 * value is copied. Not thread-safe on the same conf.
 */
KN_API kn_err_t kn_conf_set(kn_conf_t *conf, const char *name, const char *value, char *errstr,
                            size_t errstr_size);

/**
 * Read a property's value (the default if unset) as a string into dest.
 * On entry *dest_size is the size of dest; on return it holds the size needed
 * including the terminating NUL. dest may be NULL to query the size.
 * Secret properties read back as "[redacted]".
 */
KN_API kn_err_t kn_conf_get(const kn_conf_t *conf, const char *name, char *dest, size_t *dest_size);

/**
 * Load a Java-style .properties file (name=value or name: value, '#' and '!'
 * comments, line continuations). Each line goes through kn_conf_set(); the
 * first error stops loading and names the file and line.
 */
KN_API kn_err_t kn_conf_load_properties(kn_conf_t *conf, const char *path, char *errstr,
                                        size_t errstr_size);

/**
 * What kn_conf_load_properties_cb() tells about a line it did not apply to a
 * property of the library: err is KN_ERR_CONF_UNKNOWN (no such name) or
 * KN_ERR_NOT_SUPPORTED (a KPL/KCL name the library keeps as a pass-through
 * value, kn_conf_get() returns it, but does not act on itself); message says
 * so with the file and line. The value is not passed (it may be a secret).
 * Return 0 to go on, non-zero to stop loading with err. Called on the
 * loading thread, inside the call.
 */
typedef int(kn_conf_line_cb_t)(void *opaque, const char *name, kn_err_t err, const char *message);

/**
 * As kn_conf_load_properties(), but unknown and pass-through names go to cb
 * (may be NULL: unknown names are then skipped silently) instead of stopping
 * the load: for programs that read a file written for another tool (a KCL
 * MultiLang .properties file) and want to warn about what they ignore.
 * Invalid values still stop it.
 */
KN_API kn_err_t kn_conf_load_properties_cb(kn_conf_t *conf, const char *path, kn_conf_line_cb_t *cb,
                                           void *opaque, char *errstr, size_t errstr_size);

/**
 * A text table of every property (name, type, default, range, aliases, doc)
 * for `-X list` style help. The caller frees it with kn_free().
 */
KN_API char *kn_conf_list(void);

/** Frees memory the library handed out (kn_conf_list() and the like). */
KN_API void kn_free(void *ptr);

/* ---------------------------------------------------------------- logging */

typedef enum kn_log_level_e {
    KN_LOG_ERROR = 3,
    KN_LOG_WARN = 4,
    KN_LOG_INFO = 6,
    KN_LOG_DEBUG = 7,
    KN_LOG_TRACE = 8,
} kn_log_level_t;

/*
 * Log callback. ctx names the debug context ("http", "sigv4", "creds", ...).
 * May be called from any library thread, concurrently; the message is valid
 * only inside the call. Secrets (secret keys, session tokens, the signature in
 * Authorization) never reach it.
 */
typedef void(kn_log_cb_t)(void *opaque, kn_log_level_t level, const char *ctx,
                          const char *message);

/* ---------------------------------------------------------------- metrics */

/*
 * Metrics, under the names the KPL and the KCL publish (README "Metrics" lists
 * them). A producer or consumer gathers them only when a metrics callback is
 * set on its conf or metrics.cloudwatch is true, at metrics.level (none,
 * summary, detailed) and metrics.granularity (global, stream, shard). Each
 * metric is aggregated over a window of metrics.interval.ms as CloudWatch's
 * statistic sets are: the sum, minimum, maximum and number of its samples.
 */
typedef struct kn_metric_dim_s {
    const char *name;  /* "StreamName", "ShardId", "ErrorCode", "Operation", ... */
    const char *value;
} kn_metric_dim_t;

typedef struct kn_metric_s {
    size_t struct_size;         /* sizeof(kn_metric_t) of the library that filled it */
    const char *name;           /* "UserRecordsPut", "MillisBehindLatest", ... */
    const char *unit;           /* the CloudWatch unit: "Count", "Milliseconds" or "Bytes" */
    const kn_metric_dim_t *dims;
    size_t n_dims;              /* 0: the global figure */
    double sum, min, max;
    uint64_t count;             /* samples in the window (CloudWatch's SampleCount); never 0 */
    int64_t start_ms, end_ms;   /* the window, wall clock (ms since the epoch) */
} kn_metric_t;

/*
 * Metrics callback: once per window with every metric that had a sample in
 * it (and once more at destroy with the last, partial window). ns is the
 * namespace (metrics.namespace or the component's default). Runs on the
 * producer's or consumer's metrics thread, never on the I/O thread and never
 * concurrently with itself for one producer or consumer; everything it is
 * given is valid only inside the call. A slow callback delays only the next
 * window's callback, never records.
 */
typedef void(kn_metrics_cb_t)(const char *ns, const kn_metric_t *metrics, size_t n, void *opaque);

/** Sets the metrics callback on a conf (used by producers and consumers made from it). */
KN_API void kn_conf_set_metrics_cb(kn_conf_t *conf, kn_metrics_cb_t *cb, void *opaque);

/**
 * Writes one metric as a JSON object (no line break) into buf, NUL-terminated:
 *   {"namespace":..,"name":..,"unit":..,"dimensions":{..},"sum":..,"min":..,
 *    "max":..,"count":..,"average":..,"start":ms,"end":ms}
 * Returns the length it needs (not counting the NUL); when that is >= size
 * the text was cut (as snprintf does).
 */
KN_API size_t kn_metric_json(const char *ns, const kn_metric_t *m, char *buf, size_t size);

/* ----------------------------------------------------------------- client */

/*
 * The client context: an I/O thread running a libuv loop, an HTTP
 * connection pool, credentials and endpoints. Producers and consumers share
 * one when given it and otherwise create their own.
 */
typedef struct kn_client_s kn_client_t;

/**
 * Sets the log callback on a conf (used by kn_client_new). NULL restores the
 * default, which drops all messages (the library never writes to stdio).
 */
KN_API void kn_conf_set_log_cb(kn_conf_t *conf, kn_log_cb_t *cb, void *opaque);

/**
 * Creates a client. conf is copied (the caller keeps it; NULL means
 * defaults). Credentials are resolved lazily on the first request, not here.
 * Returns NULL on failure, with err (may be NULL) holding the code and a
 * message naming the cause. Every constructor of the library reports its
 * failure this way.
 */
KN_API kn_client_t *kn_client_new(const kn_conf_t *conf, kn_error_t *err);

/** Adds a reference. Each kn_client_new/kn_client_ref needs a destroy. */
KN_API kn_client_t *kn_client_ref(kn_client_t *client);

/**
 * Drops a reference; the last one stops the I/O thread, failing requests
 * still in flight with KN_ERR_DESTROYED. Must not be called from a library
 * callback. NULL is a no-op.
 */
KN_API void kn_client_destroy(kn_client_t *client);

#ifdef __cplusplus
}
#endif
#endif
