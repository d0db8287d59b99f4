/*
 * libkinesis producer: the KPL equivalent. Installed as <kinesis/producer.h>.
 *
 * Records are put from any thread and collected per shard into KPL
 * aggregates and PutRecords requests on the client's I/O thread. The heavy
 * work stays off that thread, so that readers and consumers sharing the
 * client are not held up: the partition key's MD5 and, with record-scope
 * compression, the compression of the data run in put on the caller's
 * thread; aggregate-scope compression, the request body (base64, JSON) and
 * its SHA-256 run on libuv's thread pool. Every
 * record gets exactly one result, delivered through the result callback:
 * by default from kn_producer_poll()/kn_producer_flush() on the application's
 * thread (the librdkafka model); with producer.results.background=true from
 * an internal thread. Memory is bounded: records buffered plus results not yet
 * served count toward producer.buffer.max.records / .max.bytes; a put that
 * finds no room waits up to producer.put.timeout.ms while serving the
 * caller's pending results (so a single-threaded program never deadlocks),
 * then fails with KN_ERR_QUEUE_FULL.
 *
 * Ordering (default mode): records of one shard are sent in put order, but a
 * retried record may land after records put later (as with the KPL). With
 * producer.ordering.strict=true, at most one request per shard is in flight and
 * retries go before later records of that shard, so records of one partition
 * key land in put order.
 */
#ifndef KINESIS_PRODUCER_H
#define KINESIS_PRODUCER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kn_producer_s kn_producer_t;

/*
 * A record to put: a plain value record (its fields are public on purpose).
 * Start from KN_RECORD_INIT, which sets struct_size, so that later versions
 * can add fields without breaking programs built against this one:
 *   kn_record_t r = KN_RECORD_INIT;
 *   r.stream = "logs"; r.partition_key = key; r.data = buf; r.data_len = n;
 * Everything is copied by kn_producer_put(); opaque is handed back in the
 * record's result.
 */
typedef struct kn_record_s {
    size_t struct_size;            /* sizeof(kn_record_t) where the caller was built (KN_RECORD_INIT) */
    const char *stream;            /* stream name or ARN */
    const char *partition_key;     /* 1..256 Unicode characters, UTF-8 */
    size_t partition_key_len;      /* 0: strlen(partition_key) */
    const char *explicit_hash_key; /* decimal 0..2^128-1, or NULL */
    const void *data;
    size_t data_len;
    void *opaque;
} kn_record_t;

#define KN_RECORD_INIT {.struct_size = sizeof(kn_record_t)}

/* The result of one record. Valid only inside the result callback. */
typedef struct kn_result_s kn_result_t;

/*
 * Result callback: called exactly once per record put successfully (a put
 * that returns an error has no result). Runs on the thread that calls
 * kn_producer_poll()/kn_producer_flush()/kn_producer_put() (while it waits for
 * room), or on the producer's internal thread in background mode; never
 * concurrently with itself for one producer.
 */
typedef void(kn_result_cb_t)(kn_producer_t *p, const kn_result_t *r, void *opaque);

/** Sets the result callback on a conf (used by kn_producer_new). */
KN_API void kn_conf_set_result_cb(kn_conf_t *conf, kn_result_cb_t *cb, void *opaque);

/*
 * Stats callback: every producer.stats.interval.ms (0: never) with the text
 * kn_producer_stats_json() returns (valid only inside the call). Runs where
 * results are served: in kn_producer_poll()/kn_producer_flush()/a put that
 * waits for room, or on the internal thread in background mode; never
 * concurrently with the result callback.
 */
typedef void(kn_stats_cb_t)(kn_producer_t *p, const char *json, void *opaque);

/** Sets the stats callback on a conf (used by kn_producer_new). */
KN_API void kn_conf_set_stats_cb(kn_conf_t *conf, kn_stats_cb_t *cb, void *opaque);

KN_API kn_err_t kn_result_err(const kn_result_t *r);
/** Never NULL; "" on success. Names the cause (service error type, message, limit). */
KN_API const char *kn_result_errstr(const kn_result_t *r);
KN_API void *kn_result_opaque(const kn_result_t *r);
KN_API const char *kn_result_stream(const kn_result_t *r);
KN_API const char *kn_result_partition_key(const kn_result_t *r, size_t *len);
/** Shard and sequence number of the Kinesis record that carried it; NULL on failure. */
KN_API const char *kn_result_shard_id(const kn_result_t *r);
KN_API const char *kn_result_sequence_number(const kn_result_t *r);
/** Index of the record in its aggregate (0 when it was sent alone). */
KN_API uint64_t kn_result_sub_sequence(const kn_result_t *r);
KN_API bool kn_result_aggregated(const kn_result_t *r);

/*
 * One attempt to put the record: when, how long, and what went wrong
 * (KN_ERR_OK for the last success). Filled by kn_result_attempt(); start from
 * KN_ATTEMPT_INIT (it sets struct_size, so the struct can grow).
 */
typedef struct kn_attempt_s {
    size_t struct_size;  /* sizeof(kn_attempt_t) where the caller was built (KN_ATTEMPT_INIT) */
    int64_t delay_ms;    /* from put (first attempt) or from the previous attempt's end to this one's start */
    int64_t duration_ms; /* of the request */
    kn_err_t err;
    const char *error_name; /* service error type or "" (valid inside the callback only) */
} kn_attempt_t;

#define KN_ATTEMPT_INIT {.struct_size = sizeof(kn_attempt_t)}

KN_API int kn_result_attempt_count(const kn_result_t *r);
/**
 * Fills *out for attempt i (0-based), the fields that out->struct_size
 * holds. Returns false when i is out of range or out->struct_size is not set
 * (KN_ATTEMPT_INIT).
 */
KN_API bool kn_result_attempt(const kn_result_t *r, int i, kn_attempt_t *out);

/**
 * Creates a producer with its own client (from the same conf). conf is
 * copied (NULL: defaults). NULL on failure, with err (may be NULL) holding
 * the code and a message that names the cause (a bad property names
 * itself). Any thread.
 */
KN_API kn_producer_t *kn_producer_new(const kn_conf_t *conf, kn_error_t *err);

/** Creates a producer on a shared client (a reference is taken); as kn_producer_new. */
KN_API kn_producer_t *kn_producer_new_on(kn_client_t *client, const kn_conf_t *conf, kn_error_t *err);

/**
 * Puts a record. Any thread. Validates and copies it (the partition key's MD5
 * is computed here, on the caller's thread) and returns; the result comes
 * later through the callback. Errors (no result follows): KN_ERR_INVALID_ARG
 * (bad key, hash key, NULL argument), KN_ERR_TOO_LARGE (over the record size
 * limit), KN_ERR_QUEUE_FULL (no room within producer.put.timeout.ms),
 * KN_ERR_DESTROYED (destroy has begun). errstr (may be NULL) names the cause.
 */
KN_API kn_err_t kn_producer_put(kn_producer_t *p, const kn_record_t *rec, char *errstr,
                                size_t errstr_size);

/**
 * Serves waiting results on the calling thread, waiting up to timeout_ms
 * (0: do not wait; -1: wait until one arrives) for the first one. Returns the
 * number of results served. Not in background mode (returns 0).
 */
KN_API int kn_producer_poll(kn_producer_t *p, int timeout_ms);

/**
 * Sends everything buffered now, without waiting for buffered-time
 * deadlines, and waits up to timeout_ms (-1: no limit) until every record put
 * before the call has its result served. Returns KN_ERR_OK, or
 * KN_ERR_TIMEOUT with records still pending. Called from inside the result
 * callback (which would have to return before anything more is served) it
 * returns KN_ERR_STATE at once and changes nothing.
 */
KN_API kn_err_t kn_producer_flush(kn_producer_t *p, int timeout_ms);

/**
 * A file descriptor that is readable while results wait to be served (for
 * an application's own event loop; call kn_producer_poll(p, 0) when it is).
 * Owned by the producer. -1 in background mode.
 */
KN_API int kn_producer_fd(kn_producer_t *p);

/** Records put whose results have not been served yet. */
KN_API int64_t kn_producer_pending(kn_producer_t *p);

/**
 * Statistics as a JSON object (KPL-style counters: user records
 * received/put/pending/expired, Kinesis records put, errors by code, retries,
 * buffering and request times, user records per Kinesis record and per
 * request). The caller frees it with kn_free().
 */
KN_API char *kn_producer_stats_json(kn_producer_t *p);

/**
 * Flushes for up to producer.shutdown.timeout.ms, then fails every record
 * still pending with KN_ERR_DESTROYED and serves all results (on this thread,
 * also in background mode), then frees. Never hangs beyond the timeout plus
 * the request timeout. Calls of put, poll and flush running on other threads
 * when it starts are waited for (they return KN_ERR_DESTROYED, or their count,
 * promptly); none may start after destroy has returned. Returns KN_ERR_OK, or
 * KN_ERR_STATE without touching the producer when called from inside its
 * result or stats callback (the thread serving results cannot wait for
 * itself): destroy it after the callback has returned. NULL: KN_ERR_OK.
 */
KN_API kn_err_t kn_producer_destroy(kn_producer_t *p);

#ifdef __cplusplus
}
#endif
#endif
