/*
 * Internal: the shard map of one stream: its open shards ordered by hash
 * range, for partition key -> shard lookup, and its refresh.
 *
 * A map is an immutable, reference-counted snapshot: the loop thread swaps
 * in a new one after a refresh while records already assigned keep a
 * reference to the map they were assigned with.
 */
#ifndef KN_SHARD_MAP_H
#define KN_SHARD_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hashkey.h"
#include "kinesis_ops.h"

typedef struct kn__shard_entry_s {
    kn__hashkey_t start, end; /* inclusive */
    const char *shard_id;     /* owned by the map */
    uint32_t index;           /* position in the map, 0..count-1 */
} kn__shard_entry_t;

typedef struct kn__shard_map_s kn__shard_map_t;

/*
 * Builds a map from a ListShards result, keeping open shards only (no
 * EndingSequenceNumber). Fails with KN_ERR_BAD_RESPONSE when the open shards
 * overlap or do not cover 0..2^128-1 exactly (a reshard caught half way:
 * the caller retries later), naming the gap or overlap. Such errors (and a
 * list without any open shard) are marked retriable (err->retriable,
 * KN__EC_RETRY); malformed lists (a range ending before it starts, an id
 * listed twice) are not.
 */
kn__shard_map_t *kn__shard_map_build(const kn__shard_list_t *list, kn_error_t *err);
kn__shard_map_t *kn__shard_map_ref(kn__shard_map_t *m);
void kn__shard_map_unref(kn__shard_map_t *m); /* NULL is a no-op; thread-safe */

size_t kn__shard_map_count(const kn__shard_map_t *m);
const kn__shard_entry_t *kn__shard_map_at(const kn__shard_map_t *m, size_t i);
/* The shard owning hash key k (O(log n)); never NULL for a built map. */
const kn__shard_entry_t *kn__shard_map_lookup(const kn__shard_map_t *m, kn__hashkey_t k);
/* The entry with this shard id, or NULL. */
const kn__shard_entry_t *kn__shard_map_find(const kn__shard_map_t *m, const char *shard_id);
/* Monotonic version: each successful refresh of a stream gets a higher one. */
uint64_t kn__shard_map_version(const kn__shard_map_t *m);

/*
 * Refresh of one stream's map: runs ListShards (all pages) as asynchronous
 * calls on the client's loop (no blocking, no pool thread); de-duplicates concurrent requests (one
 * refresh at a time; a request during a refresh runs once more after it) and
 * backs off exponentially with full jitter after failures (and after maps
 * that do not cover the hash range), from 100 ms up to 10 s.
 *
 * Backoff applies to requests: a failed run is reported through the callback
 * and the refresher does NOT retry on its own; the next request (the owner
 * typically asks again when it still has no usable map, possibly from inside
 * the callback) starts no earlier than a random delay in [0, min(10 s,
 * 100 ms * 2^(failures-1))] after the failed run ended. Requests made while
 * that delay runs are merged into the one waiting run. A success resets the
 * backoff.
 *
 * The owner closes the refresher on the loop thread before it destroys the
 * client (an open refresher keeps a timer on the client's loop).
 */
typedef struct kn__shard_refresher_s kn__shard_refresher_t;

/* Runs on the loop thread. map is a new reference (the callee owns it) or NULL with err set. */
typedef void(kn__shard_map_cb_t)(kn__shard_map_t *map, const kn_error_t *err, void *opaque);

/* Loop thread only. ref is copied. NULL on bad arguments or out of memory. */
kn__shard_refresher_t *kn__shard_refresher_new(kn_client_t *c, const kn__stream_ref_t *ref,
                                               kn__shard_map_cb_t *cb, void *opaque);
/* Asks for a refresh (loop thread). The callback follows, later, once per refresh run. */
void kn__shard_refresher_request(kn__shard_refresher_t *r);
/* Whether a refresh is running or scheduled. */
bool kn__shard_refresher_busy(const kn__shard_refresher_t *r);
/*
 * Loop thread. Stops timers; a ListShards page in flight completes without
 * calling back; frees when done. Allowed inside the callback. NULL is a no-op.
 */
void kn__shard_refresher_close(kn__shard_refresher_t *r);

/* Counters for tests and metrics (loop thread). */
typedef struct kn__shard_refresher_stats_s {
    uint64_t runs;            /* refresh runs started */
    uint64_t failures;        /* runs that ended with an error (incl. maps not covering the range) */
    int consecutive_failures; /* since the last success */
    long backoff_cap_ms;      /* ceiling of the last backoff drawn (0 before any failure) */
    long last_delay_ms;       /* the backoff drawn after the last failure; 0 after a success */
} kn__shard_refresher_stats_t;

void kn__shard_refresher_stats(const kn__shard_refresher_t *r, kn__shard_refresher_stats_t *out);

#endif
