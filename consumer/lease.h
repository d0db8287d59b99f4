/*
 * Internal: a lease as the KCL keeps it in DynamoDB, and the lease table's
 * operations (lease_table.c).
 *
 * The item (KCL 2.x/3.x schema; reference leases.md):
 *   leaseKey (S, the table's hash key)      shard id
 *   leaseOwner (S)                          worker id; absent when unowned
 *   leaseCounter (N)                        +1 on every renew, take, checkpoint, release
 *   ownerSwitchesSinceCheckpoint (N)        +1 when the owner changes, 0 at a checkpoint
 *   checkpoint (S)                          sequence number, or TRIM_HORIZON, LATEST,
 *                                           AT_TIMESTAMP, SHARD_END
 *   checkpointSubSequenceNumber (N)         KPL sub-record index, 0 when not aggregated
 *   parentShardId (SS)                      1 or 2 parents; absent when none
 *   childShardIds (SS)                      set when the shard ended
 *   startingHashKey, endingHashKey (S)      the shard's hash range, decimal
 *   checkpointOwner (S)                     KCL 3.x graceful handoff: the previous owner,
 *                                           who still checkpoints and then removes it
 * Other attributes (pendingCheckpoint*, throughputKBps, ...) are never
 * written by us and left as they are: every change is an UpdateItem of the
 * attributes it concerns. Rows whose entityType exists and is not "LEASE"
 * (KCL 3.x keeps worker metrics and its leader there) are not leases: a scan
 * skips them.
 *
 * Every write is conditional (see each operation) so that a worker that lost
 * a lease, or a processor of an earlier tenure, cannot change it.
 */
#ifndef KN_LEASE_H
#define KN_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "dynamodb.h"
#include "err.h"

#define KN__CK_TRIM_HORIZON "TRIM_HORIZON"
#define KN__CK_LATEST "LATEST"
#define KN__CK_AT_TIMESTAMP "AT_TIMESTAMP"
#define KN__CK_SHARD_END "SHARD_END"

typedef struct kn__lease_s {
    char *key;
    char *owner;            /* NULL: unowned */
    int64_t counter;
    int64_t owner_switches;
    char *checkpoint;       /* never NULL once parsed (TRIM_HORIZON when the item has none) */
    uint64_t checkpoint_sub;
    char **parents;         /* parentShardId */
    size_t n_parents;
    char **children;        /* childShardIds */
    size_t n_children;
    char *start_hash, *end_hash; /* decimal, or NULL */
    char *checkpoint_owner; /* NULL unless a handoff is in progress */
} kn__lease_t;

void kn__lease_free(kn__lease_t *l); /* members; zeroes */
kn_err_t kn__lease_copy(kn__lease_t *dst, const kn__lease_t *src);

/*
 * From an item. *is_lease is false (and out empty, KN_ERR_OK) for rows that
 * are not leases (entityType other than LEASE). Errors are
 * KN_ERR_BAD_RESPONSE naming the attribute (a leaseKey missing, a counter
 * that is not a number).
 */
kn_err_t kn__lease_from_item(const kn__ddb_item_t *it, kn__lease_t *out, bool *is_lease,
                             kn_error_t *err);
/* The item of a new lease (no owner): what kn__lt_create writes. */
kn_err_t kn__lease_to_item(const kn__lease_t *l, kn__ddb_item_t *out, kn_error_t *err);

/* Whether a checkpoint is one of the four sentinels. */
bool kn__checkpoint_is_sentinel(const char *ck);
/*
 * Order of checkpoints: TRIM_HORIZON, LATEST and AT_TIMESTAMP below every
 * sequence number, SHARD_END above; sequence numbers as numbers (decimal
 * strings of any length), then sub-sequence numbers. <0, 0, >0.
 */
int kn__checkpoint_cmp(const char *a, uint64_t a_sub, const char *b, uint64_t b_sub);
/* Whether the lease's shard has begun: its checkpoint is a sequence number or SHARD_END. */
bool kn__lease_started(const kn__lease_t *l);
bool kn__lease_finished(const kn__lease_t *l);

/* ------------------------------------------------------------ the table */

typedef struct kn__lease_table_s kn__lease_table_t;

/* requests (may be NULL) counts every DynamoDB request made. name copied. */
kn__lease_table_t *kn__lease_table_new(kn_client_t *c, const char *name, _Atomic int64_t *requests);
void kn__lease_table_destroy(kn__lease_table_t *t);
const char *kn__lease_table_name(const kn__lease_table_t *t);
/* Per-attempt timeout of the asynchronous operations (0: http.request.timeout.ms). Before any is started. */
void kn__lease_table_set_timeout(kn__lease_table_t *t, long timeout_ms);

/*
 * Blocking, application threads: finds the table or creates it
 * (PAY_PER_REQUEST, hash key leaseKey of type S) and waits until it is
 * ACTIVE (timeout_ms); a table whose hash key is not leaseKey is refused with
 * KN_ERR_VALIDATION naming it. *created says whether it was made now.
 */
kn_err_t kn__lease_table_ensure(kn__lease_table_t *t, long timeout_ms, bool *created,
                                kn_error_t *err);
/* Blocking, for tools and tests: every lease (scan), in table order. */
kn_err_t kn__lease_table_list(kn__lease_table_t *t, kn__lease_t **out, size_t *count,
                              kn_error_t *err);
void kn__leases_free(kn__lease_t *v, size_t n);

/*
 * The asynchronous operations: they start from any thread and return
 * KN_ERR_OK, after which the callback runs later on the client's loop
 * thread, exactly once; or an error (the client is shutting down, no
 * memory), and then no callback. A failed condition is
 * KN_ERR_CONDITION_FAILED.
 * lease in the result is the item after a write (ReturnValues ALL_NEW) or as
 * read; leases/count the scan's. Valid only inside the callback.
 */
typedef struct kn__lt_result_s {
    kn_error_t err;
    kn__lease_t lease;
    bool found;           /* get: the item exists (and is a lease) */
    kn__lease_t *leases;  /* scan */
    size_t count;
} kn__lt_result_t;

typedef void(kn__lt_cb_t)(kn__lt_result_t *res, void *opaque);

/* Every lease, all pages (eventually consistent: decisions are made by conditional writes). */
kn_err_t kn__lt_scan(kn__lease_table_t *t, kn__lt_cb_t *cb, void *opaque);
/* One lease, strongly consistent (after a failed condition: what is there now). */
kn_err_t kn__lt_get(kn__lease_table_t *t, const char *key, kn__lt_cb_t *cb, void *opaque);
/* A new lease, if there is none for its key yet (attribute_not_exists(leaseKey)). */
kn_err_t kn__lt_create(kn__lease_table_t *t, const kn__lease_t *l, kn__lt_cb_t *cb, void *opaque);
/*
 * The writes of a lease's holder (renew, checkpoint, shard_end) are
 * conditioned on the counter it last saw and on holding it: being its owner
 * with no handoff in progress, or being the previous owner during a handoff
 * (checkpointOwner = me; KCL 3.x). A renew's result (ALL_NEW) therefore also
 * tells the holder that a handoff was asked for (leaseOwner is someone else).
 */
/* counter + 1. */
kn_err_t kn__lt_renew(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                      kn__lt_cb_t *cb, void *opaque);
/*
 * owner := me, counter + 1, ownerSwitchesSinceCheckpoint + 1, if the counter
 * is as seen and the owner is seen_owner (NULL: no owner): for leases that
 * are free or expired (judged by the caller). A handoff left unfinished by a
 * dead previous owner (checkpointOwner) is cleared with it.
 */
kn_err_t kn__lt_take(kn__lease_table_t *t, const char *key, const char *seen_owner, int64_t counter,
                     const char *me, kn__lt_cb_t *cb, void *opaque);
/*
 * Asks owner for the lease (KCL 3.x graceful handoff): leaseOwner := me,
 * checkpointOwner := owner, if owner is as seen, no handoff is in progress
 * and the shard has not ended. The counter is left alone, as the KCL does:
 * the previous owner keeps renewing (its counter stays valid), checkpoints,
 * then lets go (kn__lt_handoff_done); only then does the asker hold it.
 */
kn_err_t kn__lt_handoff_ask(kn__lease_table_t *t, const char *key, const char *owner, const char *me,
                            kn__lt_cb_t *cb, void *opaque);
/*
 * The asker withdraws (it shuts down before the owner let go): leaseOwner :=
 * owner again, REMOVE checkpointOwner, if the handoff is still the one asked.
 */
kn_err_t kn__lt_handoff_cancel(kn__lease_table_t *t, const char *key, const char *owner,
                               const char *me, kn__lt_cb_t *cb, void *opaque);
/* checkpoint := seq/sub, ownerSwitchesSinceCheckpoint := 0, counter + 1. */
kn_err_t kn__lt_checkpoint(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                           const char *seq, uint64_t sub, kn__lt_cb_t *cb, void *opaque);
/*
 * The previous owner lets go at the end of a handoff: REMOVE checkpointOwner
 * and counter + 1 (ADD, whatever it is), if checkpointOwner is me: what the
 * KCL's assignLease writes, so a Java KCL asker sees it as it expects.
 */
kn_err_t kn__lt_handoff_done(kn__lease_table_t *t, const char *key, const char *me, kn__lt_cb_t *cb,
                             void *opaque);
/*
 * REMOVE leaseOwner, counter + 1, if me is the owner with no handoff in
 * progress and the counter is as given: others may take it at once. (During
 * a handoff, letting go is kn__lt_handoff_done.)
 */
kn_err_t kn__lt_release(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                        kn__lt_cb_t *cb, void *opaque);
/* The shard was read to its end: checkpoint SHARD_END (sub 0), childShardIds (when n > 0), counter + 1. */
kn_err_t kn__lt_shard_end(kn__lease_table_t *t, const char *key, const char *me, int64_t counter,
                          const char *const *children, size_t n, kn__lt_cb_t *cb, void *opaque);
/* Deletes a finished lease, if its checkpoint is SHARD_END. */
kn_err_t kn__lt_delete(kn__lease_table_t *t, const char *key, kn__lt_cb_t *cb, void *opaque);

#endif
