/*
 * Internal: logging through the application's callback, with levels, debug
 * contexts and redaction. Every message is scrubbed of registered secrets
 * (secret keys, session tokens) before it reaches the callback, and the
 * signature part of an Authorization header is always cut.
 */
#ifndef KN_LOG_H
#define KN_LOG_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "kinesis/common.h"

/* Debug contexts (bit mask); names as accepted by the "debug" property. */
#define KN_DBG_CONTEXTS(X)                                                       \
    X(GENERIC, "generic")                                                        \
    X(CONF, "conf")                                                              \
    X(HTTP, "http")                                                              \
    X(SIGV4, "sigv4")                                                            \
    X(CREDS, "creds")                                                            \
    X(AWS, "aws")                                                                \
    X(KINESIS, "kinesis")                                                        \
    X(DYNAMODB, "dynamodb")                                                      \
    X(PRODUCER, "producer")                                                      \
    X(CONSUMER, "consumer")                                                      \
    X(LEASE, "lease")                                                            \
    X(METRICS, "metrics")

#define KN__DBG_ENUM(n, s) KN__DBGI_##n,
enum { KN_DBG_CONTEXTS(KN__DBG_ENUM) KN__DBGI_COUNT };
#undef KN__DBG_ENUM
#define KN__DBG_BIT(n, s) KN_DBG_##n = 1u << KN__DBGI_##n,
enum { KN_DBG_CONTEXTS(KN__DBG_BIT) KN_DBG_ALL = (1u << KN__DBGI_COUNT) - 1 };
#undef KN__DBG_BIT

typedef struct kn__logger_s kn__logger_t;

kn__logger_t *kn__logger_new(kn_log_cb_t *cb, void *opaque, kn_log_level_t level, uint32_t debug_mask);
void kn__logger_destroy(kn__logger_t *lg);

/*
 * Parses "http,sigv4" / "all" into a mask. Returns -1 and names the bad
 * context in errstr on an unknown name.
 */
int kn__log_parse_debug(const char *csv, uint32_t *mask, char *errstr, size_t size);
/* "error", "warn"/"warning", "info", "debug", "trace" (case-insensitive). */
int kn__log_parse_level(const char *s, kn_log_level_t *level);

/*
 * Registers a secret that must never appear in a log line (copied; strings
 * shorter than 4 bytes are ignored). Thread-safe. The most recent 64 are
 * kept: each credential refresh adds new ones, and the list must not grow
 * for the life of the process.
 */
void kn__logger_add_secret(kn__logger_t *lg, const char *secret);
/* How many secrets are kept (bounded: the oldest are dropped first). Thread-safe. */
size_t kn__logger_secret_count(kn__logger_t *lg);

/*
 * Whether a message at this level and context would be delivered. Debug and
 * trace messages need their context's bit in the debug mask.
 */
int kn__log_enabled(const kn__logger_t *lg, kn_log_level_t level, uint32_t ctx_bit);

void kn__log(kn__logger_t *lg, kn_log_level_t level, uint32_t ctx_bit, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Copies src into dst (size bytes) with the signature of any
 * "Signature=..." and the value of any "X-Amz-Security-Token:" header cut.
 * Used for logging request headers.
 */
void kn__log_redact_headers(char *dst, size_t size, const char *src);

/*
 * For tests only: true turns off the last safety net (the replacement of
 * registered secrets in every line), so that a test can prove that no code
 * path formats a secret into a message in the first place. The structural
 * cuts of kn__log_redact_headers, which code applies on purpose, stay.
 */
extern _Atomic bool kn__log_safety_net_off;

#define KN_LOG(lg, lvl, ctx, ...)                                                 \
    do {                                                                         \
        if ((lg) && kn__log_enabled((lg), (lvl), (ctx)))                         \
            kn__log((lg), (lvl), (ctx), __VA_ARGS__);                            \
    } while (0)

#endif
