/*
 * libkinesis stream reader: the lower half of a consumer. Installed as
 * <kinesis/reader.h>.
 *
 * A reader reads the shards of one stream (all of them, or a chosen list)
 * from a start position, follows child shards after a reshard (parents read
 * to their end before their children), deaggregates KPL records and undoes
 * libkinesis compression, and hands out one user record at a time from
 * kn_reader_poll() on the application's thread. It keeps no checkpoints and
 * takes no leases: that is the consumer group's job (built on top of this).
 *
 * Threads. GetRecords calls run on the client's I/O thread, which only
 * hands each answer over; reading the records out of it (base64 decoding,
 * copying), deaggregation and decompression run inside kn_reader_poll() on
 * the polling thread, so the I/O thread is not slowed by a large batch. The
 * exception is an idle read, an empty answer (at most 4 KiB) of a shard that
 * is caught up and whose KN_READER_SHARD_CAUGHT_UP is queued: there is
 * nothing in it for the application, and the I/O thread takes it itself
 * (counted in KN_READER_STAT_IDLE_READS). Readers with a stop_at_ms do not
 * take this short cut (the polling thread checks the stop time). One thread at a time may call kn_reader_poll() and read
 * the message it returned; the other functions may be called from any thread
 * unless they say otherwise.
 *
 * Memory is bounded, however far behind the shards are and however many
 * there are. Each GetRecords asks for as many records as fit an answer budget
 * (at most consumer.getrecords.max.bytes, default 4 MiB), sized from the bytes
 * per record of that shard's recent answers: the first call of a shard asks
 * for 10 records, a shard that is behind reaches full-size answers at its
 * second call, a caught-up shard's budget shrinks to twice its last answer
 * (at least 256 KiB), and an answer over http.max.response.bytes makes the
 * shard ask for half as many. Responses read but not yet served count toward
 * consumer.prefetch.shard.max.bytes (per shard, default 8 MiB) and, with the
 * budgets of the calls in flight, toward consumer.prefetch.max.bytes (the
 * whole reader, default 32 MiB). A shard over its bound, or a call whose budget
 * does not fit under the reader's bound, waits until the application has
 * polled enough; so when the application does not poll, reading pauses. Room
 * that frees up goes to the waiting shards in the order they began to wait:
 * no call starts while one asked for room before it, so the large budget of
 * a shard far behind is not passed over by the small reads of caught-up
 * shards, however many there are. An answer can exceed its
 * budget only when a shard's records suddenly grow, by at most the records of
 * that one answer.
 *
 * A GetRecords call may take consumer.getrecords.timeout.ms (default 30 s:
 * its answer can be 10 MiB), not the http.request.timeout.ms of small calls.
 *
 * Pacing per shard: at most one GetRecords in flight; calls start at least
 * consumer.getrecords.interval.ms apart (default 200 ms: the service allows 5
 * calls per second per shard); after an empty read of a caught-up shard
 * (MillisBehindLatest 0) the next waits consumer.idle.time.ms (KCL
 * idleTimeBetweenReadsInMillis). Throttling, 5xx answers and network errors
 * are retried for ever with exponential backoff and full jitter
 * (aws.retry.base.ms, aws.retry.max.backoff.ms) and counted; an expired
 * iterator is renewed after the last sequence number read from that shard
 * (else at the shard's start position). Errors that a retry cannot fix
 * (ResourceNotFound, validation, access denied) end that shard with a
 * KN_READER_SHARD_ERROR message, and so do 10 answers in a row that cannot
 * be read (cut short, not JSON, records that do not parse).
 *
 * Resharding. A shard that is closed and read to its end (no next iterator)
 * delivers KN_READER_SHARD_END after its last record. Its children are taken
 * from the ChildShards of the last GetRecords answer when the service sends
 * them, else from ListShards. A child starts (at TRIM_HORIZON) once every
 * parent it has is done (read to its end) or not being read by this reader
 * (expired from the stream, not selected, or before a LATEST start); so, per
 * partition key, every record of a parent is delivered before any record of
 * its child.
 *
 * Which shards start:
 *   - all shards (no shard_ids), TRIM_HORIZON or AT_TIMESTAMP: the shards
 *     whose parents are absent from the stream (expired) start at once; the
 *     others wait for their parents as above, so the whole lineage is read
 *     in order;
 *   - all shards, LATEST: the open shards; closed shards are skipped;
 *   - an explicit list: exactly the listed shards start, each at the start
 *     position, whatever their parents' state (the caller chose them); when
 *     one of them ends, its children are followed as above, with unlisted
 *     parents counting as "not being read". AT_SEQUENCE_NUMBER and
 *     AFTER_SEQUENCE_NUMBER need exactly one listed shard (a sequence number
 *     belongs to one shard).
 */
#ifndef KINESIS_READER_H
#define KINESIS_READER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kn_reader_s kn_reader_t;

/* ------------------------------------------------------------ options */

/* Where reading starts in each shard (the GetShardIterator types). */
typedef enum kn_position_type_e {
    KN_POS_TRIM_HORIZON = 0, /* the oldest record kept (the default) */
    KN_POS_LATEST,           /* only records put after the iterator is taken */
    KN_POS_AT_TIMESTAMP,     /* the first record with arrival time >= timestamp_ms */
    KN_POS_AT_SEQUENCE_NUMBER,
    KN_POS_AFTER_SEQUENCE_NUMBER,
} kn_position_type_t;

/* A start position: a plain value record. */
typedef struct kn_position_s {
    kn_position_type_t type;
    int64_t timestamp_ms;        /* AT_TIMESTAMP: epoch milliseconds (>= 0) */
    const char *sequence_number; /* AT_/AFTER_SEQUENCE_NUMBER: decimal string (copied) */
} kn_position_t;

/*
 * Reader options: a plain value record. Start from KN_READER_OPTS_INIT (all
 * shards from TRIM_HORIZON, no stop time, records decoded; it sets
 * struct_size, so that later versions can add fields). Everything is copied
 * by kn_reader_new(); the struct may be freed after it returns.
 */
typedef struct kn_reader_opts_s {
    size_t struct_size;           /* sizeof(kn_reader_opts_t) where the caller was built */
    const char *const *shard_ids; /* shards to read; NULL or shard_count 0: all */
    size_t shard_count;
    kn_position_t start;
    /*
     * > 0: a shard stops at its first record with arrival time >= stop_at_ms
     * (that record is not delivered), or at an empty read of the caught-up
     * shard once the local clock has passed stop_at_ms; then
     * KN_READER_SHARD_STOPPED. Its children are not read. 0: never.
     */
    int64_t stop_at_ms;
    /*
     * true: records as stored (no KPL deaggregation, no decompression): one
     * message per Kinesis record, sub-sequence 0, aggregated false.
     */
    bool raw;
} kn_reader_opts_t;

#define KN_READER_OPTS_INIT {.struct_size = sizeof(kn_reader_opts_t)}

/* ------------------------------------------------------------ creation */

/**
 * Creates a reader with its own client (from conf; conf is copied, NULL
 * means defaults; the consumer.* properties apply). stream is a stream name
 * or ARN (copied). opts may be NULL (all shards from TRIM_HORIZON). Blocking:
 * lists the stream's shards before returning, so an unknown stream, an
 * unknown shard id, a bad option or a bad property fails here: NULL is
 * returned and err (may be NULL) receives the code, a message that names the
 * problem (the stream or shard id, the property) and, for service errors,
 * the details (for example KN_ERR_NOT_FOUND for an unknown stream).
 * Application threads only.
 */
KN_API kn_reader_t *kn_reader_new(const kn_conf_t *conf, const char *stream,
                                  const kn_reader_opts_t *opts, kn_error_t *err);

/** As kn_reader_new, on a shared client (a reference is taken). conf may be NULL. */
KN_API kn_reader_t *kn_reader_new_on(kn_client_t *client, const kn_conf_t *conf,
                                     const char *stream, const kn_reader_opts_t *opts,
                                     kn_error_t *err);

/**
 * Stops reading and frees the reader with everything it holds (messages
 * returned by poll become invalid). Requests in flight are abandoned; never
 * hangs beyond about one loop round trip. Not from a reader callback (there
 * are none) and not concurrently with kn_reader_poll(). NULL is a no-op.
 */
KN_API void kn_reader_destroy(kn_reader_t *r);

/* ------------------------------------------------------------ messages */

typedef enum kn_reader_msg_type_e {
    KN_READER_RECORD = 0,      /* a user record */
    KN_READER_SHARD_STARTED,   /* reading of a shard begins (also each child shard) */
    KN_READER_SHARD_CAUGHT_UP, /* an empty read with MillisBehindLatest 0 (again after new records) */
    KN_READER_SHARD_END,       /* closed shard read to its end; children (if any) follow */
    KN_READER_SHARD_STOPPED,   /* stop_at_ms reached in this shard */
    KN_READER_SHARD_ERROR,     /* the shard cannot be read further (kn_reader_msg_err says why) */
    KN_READER_AT_END,          /* delivered once, when kn_reader_at_end() becomes true */
} kn_reader_msg_type_t;

/*
 * A message from kn_reader_poll(): a record or an event. Owned by the
 * reader; valid until the next kn_reader_poll() or kn_reader_destroy().
 */
typedef struct kn_reader_msg_s kn_reader_msg_t;

/**
 * Returns the next message, waiting up to timeout_ms (0: do not wait; -1: no
 * limit) for one; NULL when none came in time. Records of one shard come in
 * order; shards interleave. Parses, deaggregates and decompresses on the
 * calling thread. One polling thread at a time.
 */
KN_API const kn_reader_msg_t *kn_reader_poll(kn_reader_t *r, int timeout_ms);

/**
 * A file descriptor that is readable while messages (or responses to parse)
 * wait; for an application's own event loop: call kn_reader_poll(r, 0) until
 * it returns NULL when it is. Owned by the reader.
 */
KN_API int kn_reader_fd(kn_reader_t *r);

/**
 * True once every shard being read has caught up (an empty read with
 * MillisBehindLatest 0; later records do not undo it), reached its end, its
 * stop time or an error, no child shard is left to read, and every message
 * before KN_READER_AT_END has been returned by poll: what `kncat -e` waits
 * for. With stop_at_ms set, catching up is not enough: every shard must have
 * stopped (or ended, or failed), so a program reading to a stop time exits at
 * AT_END with or without -e. It never becomes false again.
 */
KN_API bool kn_reader_at_end(kn_reader_t *r);

KN_API kn_reader_msg_type_t kn_reader_msg_type(const kn_reader_msg_t *m);
/** "KN_READER_RECORD", ... (static storage). */
KN_API const char *kn_reader_msg_type_name(kn_reader_msg_type_t t);
/** Stream name (or the ARN when the reader was given one). Every message but AT_END. */
KN_API const char *kn_reader_msg_stream(const kn_reader_msg_t *m);
/** Shard id; NULL for AT_END. */
KN_API const char *kn_reader_msg_shard_id(const kn_reader_msg_t *m);
/** Record data (may be NULL with len 0 for an empty record). Records only. */
KN_API const void *kn_reader_msg_data(const kn_reader_msg_t *m, size_t *len);
/** Partition key, not NUL-terminated within len (but NUL-terminated in fact). Records only. */
KN_API const char *kn_reader_msg_partition_key(const kn_reader_msg_t *m, size_t *len);
/** The user record's explicit hash key (decimal) from an aggregate, or NULL. */
KN_API const char *kn_reader_msg_explicit_hash_key(const kn_reader_msg_t *m);
/** Sequence number of the Kinesis record (opaque decimal string of any length). Records only. */
KN_API const char *kn_reader_msg_sequence_number(const kn_reader_msg_t *m);
/** Index of the user record in its aggregate; 0 when not aggregated. */
KN_API uint64_t kn_reader_msg_sub_sequence(const kn_reader_msg_t *m);
/** Whether the record came out of a KPL aggregate. */
KN_API bool kn_reader_msg_aggregated(const kn_reader_msg_t *m);
/**
 * Whether the user record's hash key lies outside its shard's range (an
 * aggregate from a producer that is not shard-aware); delivered all the
 * same, and counted in KN_READER_STAT_OUT_OF_RANGE.
 */
KN_API bool kn_reader_msg_out_of_range(const kn_reader_msg_t *m);
/** ApproximateArrivalTimestamp in epoch ms; -1 when the service sent none. */
KN_API int64_t kn_reader_msg_arrival_ms(const kn_reader_msg_t *m);
/** MillisBehindLatest of the GetRecords answer the record (or CAUGHT_UP) came in; -1 if absent. */
KN_API int64_t kn_reader_msg_millis_behind(const kn_reader_msg_t *m);
/**
 * SHARD_ERROR: why the shard stopped. RECORD: KN_ERR_OK, or why the record
 * could not be decoded (decompression failed, too large): it is then
 * delivered with its bytes as received. Else KN_ERR_OK.
 */
KN_API kn_err_t kn_reader_msg_err(const kn_reader_msg_t *m);
/** Never NULL; "" with KN_ERR_OK. Names the shard and the cause. */
KN_API const char *kn_reader_msg_errstr(const kn_reader_msg_t *m);
/**
 * SHARD_END: the children that this reader will read after it (ids valid as
 * long as the message); 0 when none. Other messages: 0.
 */
KN_API size_t kn_reader_msg_child_count(const kn_reader_msg_t *m);
KN_API const char *kn_reader_msg_child_shard_id(const kn_reader_msg_t *m, size_t i);

/* ------------------------------------------------------------ statistics */

typedef enum kn_reader_stat_e {
    KN_READER_STAT_RECORDS,          /* user records delivered */
    KN_READER_STAT_BYTES,            /* data bytes of the user records delivered */
    KN_READER_STAT_KINESIS_RECORDS,  /* Kinesis records parsed */
    KN_READER_STAT_AGGREGATES,       /* of those, KPL aggregates */
    KN_READER_STAT_OUT_OF_RANGE,     /* sub-records outside their shard's hash range (delivered) */
    KN_READER_STAT_DECODE_ERRORS,    /* records delivered as received because decoding failed */
    KN_READER_STAT_GETRECORDS,       /* GetRecords calls answered successfully */
    KN_READER_STAT_THROTTLES,        /* ProvisionedThroughputExceeded / LimitExceeded answers */
    KN_READER_STAT_RETRIES,          /* GetRecords / GetShardIterator retried after any error */
    KN_READER_STAT_ITERATOR_RENEWALS,/* new iterators after ExpiredIteratorException */
    KN_READER_STAT_SHARDS_ACTIVE,    /* shards being read now */
    KN_READER_STAT_SHARDS_DONE,      /* shards ended, stopped or failed */
    KN_READER_STAT_PREFETCH_BYTES,   /* response bytes read and not yet served, now */
    KN_READER_STAT_PREFETCH_MAX_BYTES,/* the highest PREFETCH_BYTES seen */
    KN_READER_STAT_PAUSES,           /* reads postponed because a prefetch bound was reached */
    KN_READER_STAT_IDLE_READS,       /* of GETRECORDS: empty reads of shards already caught up */
    KN_READER_STAT__COUNT
} kn_reader_stat_t;

/** A counter's current value (any thread); -1 for an unknown counter. */
KN_API int64_t kn_reader_stat(kn_reader_t *r, kn_reader_stat_t which);
/** Its name in lower case, for example "records" (static storage; NULL if unknown). */
KN_API const char *kn_reader_stat_name(kn_reader_stat_t which);

#ifdef __cplusplus
}
#endif
#endif
