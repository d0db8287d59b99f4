/*
 * libkinesis consumer: the KCL equivalent. Installed as <kinesis/consumer.h>.
 *
 * A consumer is one worker of an application (a consumer group) that reads
 * a stream together with other workers, in this process or elsewhere. The
 * workers share the stream's shards through leases in a DynamoDB table (the
 * lease table, named after the application; the KCL's schema, so a Java KCL
 * fleet can continue from it and we from theirs): each shard is processed by
 * one worker at a time, from the checkpoint its lease holds, by the
 * application's record processor.
 *
 * What the application writes is a record processor (kn_processor_t): a set
 * of callbacks called for each shard this worker holds, one shard at a time
 * per shard (never two callbacks of one shard at once), on the consumer's
 * processor threads (consumer.processor.threads), never on the I/O thread:
 *   initialize(shard, starting checkpoint) once per tenure of a lease, then
 *   process_records(batch, checkpointer) for each batch read, in order, and
 *   one of
 *   lease_lost()                 the lease went to another worker: stop; no checkpoint
 *                                is possible any more;
 *   shard_ended(checkpointer)    the shard was closed (split or merged) and read to
 *                                its end: its children follow once it is checkpointed
 *                                at SHARD_END (automatic by default);
 *   shutdown_requested(checkpointer)
 *                                the worker shuts down, or hands the shard to another
 *                                worker to balance the load: checkpoint now.
 *   close() at the very end of the tenure (free what initialize made).
 *
 * Guarantees:
 *   - at least once: every record is processed at least once; after a crash,
 *     records after the last checkpoint are processed again (by whoever takes
 *     the lease); records of a shard come in order;
 *   - one worker at a time per shard: a worker renews its leases every
 *     consumer.failover.ms / 3 and stops processing a shard (lease_lost)
 *     before its lease can expire for others; a worker whose lease was taken
 *     can never checkpoint it (KN_ERR_LEASE_LOST), also a processor of an
 *     earlier tenure;
 *   - planned moves process nothing twice: to balance the load a worker asks
 *     the lease's owner to hand it over (the owner finishes its batch, calls
 *     shutdown_requested, checkpoints, then lets go), and a worker that shuts
 *     down checkpoints and releases its leases so that the others take them at
 *     once (with consumer.checkpoint.on.shutdown, the default, the consumer
 *     checkpoints after the last batch whose process_records returned
 *     KN_ERR_OK if the processor did not);
 *   - parents before children: after a split or merge, a child shard is
 *     processed only once every parent still in the lease table is
 *     checkpointed at SHARD_END, so that per partition key records stay in
 *     order across a reshard;
 *   - failover: a dead worker's shards are taken by the others within about
 *     consumer.failover.ms plus consumer.lease.scan.ms; a new worker gets its
 *     fair share (ceil(leases / workers), at most consumer.max.leases)
 *     within a few scans.
 *
 * A callback that returns an error (anything but KN_ERR_OK) is retried with
 * backoff (the same batch again: nothing is skipped), each failure logged
 * with the shard, the callback and the code; a processor that cannot process
 * a record therefore holds its shard, visibly, instead of losing it.
 *
 * Threads: kn_consumer_* functions may be called from any application
 * thread unless they say otherwise, never from a processor callback unless
 * they say so. Objects handed to callbacks (batches, checkpointers) are valid
 * only inside the call.
 */
#ifndef KINESIS_CONSUMER_H
#define KINESIS_CONSUMER_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kn_consumer_s kn_consumer_t;

/* ------------------------------------------------------------ batches */

/*
 * The records of one GetRecords answer of one shard, deaggregated (each KPL
 * sub-record is one record) and decompressed, those at or before the
 * checkpoint the tenure started from left out. Valid only inside
 * process_records.
 */
typedef struct kn_batch_s kn_batch_t;

KN_API const char *kn_batch_shard_id(const kn_batch_t *b);
KN_API size_t kn_batch_count(const kn_batch_t *b);
/** MillisBehindLatest of the answer; -1 when the service sent none. */
KN_API int64_t kn_batch_millis_behind(const kn_batch_t *b);
/** Record i (0 <= i < count): data (NULL with len 0 when empty). */
KN_API const void *kn_batch_data(const kn_batch_t *b, size_t i, size_t *len);
/** Partition key, NUL-terminated; *len (may be NULL) its length. */
KN_API const char *kn_batch_partition_key(const kn_batch_t *b, size_t i, size_t *len);
/** Explicit hash key of a KPL sub-record (decimal), or NULL. */
KN_API const char *kn_batch_explicit_hash_key(const kn_batch_t *b, size_t i);
/** Sequence number of the Kinesis record that carried it (decimal string of any length). */
KN_API const char *kn_batch_sequence_number(const kn_batch_t *b, size_t i);
/** Index in its KPL aggregate; 0 when not aggregated. */
KN_API uint64_t kn_batch_sub_sequence(const kn_batch_t *b, size_t i);
/** Whether it came inside a KPL aggregate. */
KN_API bool kn_batch_aggregated(const kn_batch_t *b, size_t i);
/** ApproximateArrivalTimestamp in epoch ms; -1 when absent. */
KN_API int64_t kn_batch_arrival_ms(const kn_batch_t *b, size_t i);
/** KN_ERR_OK, or why the record could not be decoded (it is then delivered as received). */
KN_API kn_err_t kn_batch_record_err(const kn_batch_t *b, size_t i);

/* ------------------------------------------------------------ checkpoints */

/*
 * Records progress in the lease table. Valid only inside the callback that
 * received it. Every call is a conditional write on the lease (owner and
 * counter), so a worker that lost the lease cannot move its checkpoint.
 */
typedef struct kn_checkpointer_s kn_checkpointer_t;

/**
 * Checkpoints after the last record delivered to this processor (in
 * shard_ended: at SHARD_END). Blocking (one DynamoDB write). Returns
 * KN_ERR_OK; KN_ERR_LEASE_LOST (another worker owns the shard now, or this
 * tenure is over: stop); KN_ERR_THROTTLED or KN_ERR_TRANSPORT/TIMEOUT
 * (nothing was written: try again later, or leave it to the next
 * checkpoint); KN_ERR_STATE (no record delivered yet, or the consumer is
 * being destroyed). err (may be NULL) gets the details.
 */
KN_API kn_err_t kn_checkpoint(kn_checkpointer_t *cp, kn_error_t *err);

/**
 * Checkpoints at a given record: seq (copied) and sub-sequence of a record
 * delivered in this tenure. KN_ERR_INVALID_ARG when it is before the lease's
 * current checkpoint or after the last record delivered (a bug in the
 * caller: nothing is written); otherwise as kn_checkpoint.
 */
KN_API kn_err_t kn_checkpoint_at(kn_checkpointer_t *cp, const char *seq, uint64_t sub_sequence,
                                 kn_error_t *err);

/* ------------------------------------------------------------ processor */

/*
 * The record processor: a plain value record of callbacks. Start from
 * KN_PROCESSOR_INIT (it sets struct_size, so the struct can grow). Each
 * callback gets app (given to kn_consumer_new) and the state initialize made
 * for that shard's tenure. process_records is required; the others may be
 * NULL. Callbacks return KN_ERR_OK, or an error to have the call retried
 * with backoff (see the file comment).
 */
typedef struct kn_processor_s {
    size_t struct_size;
    /*
     * A tenure begins: shard_id, and the checkpoint it starts after: a
     * sequence number with its sub-sequence, or "TRIM_HORIZON", "LATEST",
     * "AT_TIMESTAMP" for a shard never checkpointed. *state is handed to the
     * other callbacks of this tenure (NULL is fine).
     */
    kn_err_t (*initialize)(void *app, const char *shard_id, const char *checkpoint,
                           uint64_t sub_sequence, void **state);
    kn_err_t (*process_records)(void *app, void *state, const kn_batch_t *batch,
                                kn_checkpointer_t *cp);
    /* No checkpoint is possible: the lease belongs to another worker. */
    void (*lease_lost)(void *app, void *state);
    kn_err_t (*shard_ended)(void *app, void *state, kn_checkpointer_t *cp);
    kn_err_t (*shutdown_requested)(void *app, void *state, kn_checkpointer_t *cp);
    /* The last call of the tenure, whatever ended it. */
    void (*close)(void *app, void *state);
} kn_processor_t;

#define KN_PROCESSOR_INIT {.struct_size = sizeof(kn_processor_t)}

/* ------------------------------------------------------------ lifecycle */

/**
 * Creates a worker of the application named by consumer.application.name
 * (KCL applicationName; required) for stream (name or ARN, copied), with its
 * own client from conf (copied). proc is copied; app is passed to every
 * callback. Validates the configuration only: nothing is read or written
 * until kn_consumer_start. NULL on failure, with err (may be NULL) naming the
 * cause. Application threads.
 */
KN_API kn_consumer_t *kn_consumer_new(const kn_conf_t *conf, const char *stream,
                                      const kn_processor_t *proc, void *app, kn_error_t *err);

/**
 * As kn_consumer_new, on a shared client (a reference is taken): conf gives
 * the consumer.* settings (NULL: the client's); endpoints, region and
 * credentials are the client's.
 */
KN_API kn_consumer_t *kn_consumer_new_on(kn_client_t *client, const kn_conf_t *conf,
                                         const char *stream, const kn_processor_t *proc,
                                         void *app, kn_error_t *err);

/**
 * Starts the worker. Blocking: checks that the stream exists, finds the
 * lease table or creates it (PAY_PER_REQUEST, waiting until it is ACTIVE) and
 * checks its key schema, makes the leases of shards that have none, then
 * returns while the worker takes its share and processes in the background.
 * Errors name their cause: KN_ERR_NOT_FOUND (no such stream),
 * KN_ERR_AUTH (no permission on the table or the stream), KN_ERR_VALIDATION
 * (a table of that name with another key schema), ... Application threads;
 * once.
 */
KN_API kn_err_t kn_consumer_start(kn_consumer_t *c, kn_error_t *err);

/**
 * Graceful shutdown: every shard's processor gets shutdown_requested (after
 * its current batch), is checkpointed (consumer.checkpoint.on.shutdown) and
 * its lease released, so that other workers take over at once. Waits up to
 * timeout_ms (-1: no limit) for all of it; KN_ERR_TIMEOUT if shards were
 * still busy (destroy then ends them without a checkpoint). Application
 * threads; also from a signal-handling thread, not from a callback.
 */
KN_API kn_err_t kn_consumer_shutdown(kn_consumer_t *c, int timeout_ms);

/**
 * Stops and frees. Without a completed kn_consumer_shutdown it shuts down for
 * up to consumer.shutdown.timeout.ms first; it never hangs beyond that plus
 * a request timeout. KN_ERR_STATE, changing nothing, when called from a
 * processor callback. NULL: KN_ERR_OK.
 */
KN_API kn_err_t kn_consumer_destroy(kn_consumer_t *c);

/**
 * True when every shard this worker holds has read to the tip of its stream
 * at least once (an empty read with MillisBehindLatest 0, or the end of a
 * closed shard) and every batch read so far has been processed; with no lease
 * held, true once the first lease scan has found nothing to take. What
 * `kncat -G -e` waits for.
 */
KN_API bool kn_consumer_caught_up(kn_consumer_t *c);

/** The worker id (consumer.worker.id, or host name and pid). Static while c lives. */
KN_API const char *kn_consumer_worker_id(const kn_consumer_t *c);

/* ------------------------------------------------------------ statistics */

typedef enum kn_consumer_stat_e {
    KN_CONSUMER_STAT_RECORDS,         /* records given to process_records */
    KN_CONSUMER_STAT_BYTES,           /* their data bytes */
    KN_CONSUMER_STAT_BATCHES,         /* process_records calls that returned KN_ERR_OK */
    KN_CONSUMER_STAT_PROCESS_ERRORS,  /* callbacks that returned an error (retried) */
    KN_CONSUMER_STAT_LEASES_HELD,     /* leases held now */
    KN_CONSUMER_STAT_LEASES_TAKEN,    /* expired or free leases taken */
    KN_CONSUMER_STAT_LEASES_STOLEN,   /* leases asked from a busier worker and handed over */
    KN_CONSUMER_STAT_LEASES_HANDED,   /* leases this worker handed over on request */
    KN_CONSUMER_STAT_LEASES_LOST,     /* leases lost (taken by another, or self-fenced) */
    KN_CONSUMER_STAT_LEASES_RELEASED, /* leases released at shutdown or after their shard ended */
    KN_CONSUMER_STAT_RENEWALS,        /* successful lease renewals */
    KN_CONSUMER_STAT_RENEW_FAILURES,  /* renewals that failed (network, throttling, lost) */
    KN_CONSUMER_STAT_CHECKPOINTS,     /* checkpoints written */
    KN_CONSUMER_STAT_SHARDS_ENDED,    /* shards read to their end and checkpointed at SHARD_END */
    KN_CONSUMER_STAT_LEASES_CREATED,  /* leases this worker created (new shards, children) */
    KN_CONSUMER_STAT_LEASES_DELETED,  /* finished leases this worker cleaned up */
    KN_CONSUMER_STAT_DDB_REQUESTS,    /* DynamoDB requests made for the lease table */
    KN_CONSUMER_STAT_SCANS,           /* lease table scans */
    KN_CONSUMER_STAT__COUNT
} kn_consumer_stat_t;

/** A counter's current value (any thread); -1 for an unknown counter. */
KN_API int64_t kn_consumer_stat(kn_consumer_t *c, kn_consumer_stat_t which);
/** Its name in lower case, for example "leases_held" (static storage; NULL if unknown). */
KN_API const char *kn_consumer_stat_name(kn_consumer_stat_t which);

/* ------------------------------------------------------------ a group from outside */

/* One lease of a group as its table holds it (kn_group_leases). */
typedef struct kn_group_lease_s {
    const char *shard_id;
    const char *owner;            /* the worker holding it; NULL when free */
    const char *handing_over;     /* during a handoff: the previous owner, still finishing; else NULL */
    const char *checkpoint;       /* a sequence number, or TRIM_HORIZON, LATEST, AT_TIMESTAMP,
                                     SHARD_END (the shard is finished) */
    uint64_t checkpoint_sub;      /* sub-sequence number of the checkpoint */
    int64_t counter;              /* leaseCounter: moves with every renewal */
    const char *parents;          /* "parent" or "parent,adjacent"; NULL for a root shard */
    int64_t lag_ms;               /* MillisBehindLatest of the first record after the
                                     checkpoint: how far behind the tip it is; 0 at the tip;
                                     -1 unknown (no stream given, finished, or the read failed) */
} kn_group_lease_t;

/**
 * The leases of a consumer group (an application's lease table), in shard
 * order: for tools (kncat -L -G) and monitoring. table: the lease table (the
 * application name unless consumer.table.name was set). With stream (may be
 * NULL) each unfinished lease's lag is read (one GetShardIterator and one
 * GetRecords of one record per lease). Blocking. *out is freed with
 * kn_group_leases_free. KN_ERR_NOT_FOUND when there is no such table.
 */
KN_API kn_err_t kn_group_leases(kn_client_t *client, const char *table, const char *stream,
                                kn_group_lease_t **out, size_t *count, kn_error_t *err);
KN_API void kn_group_leases_free(kn_group_lease_t *v, size_t count);

#ifdef __cplusplus
}
#endif
#endif
