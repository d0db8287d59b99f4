/*
 * Internal: the plan of a shard sync (shard_sync.c), a pure function of the
 * stream's listing and the keys in the lease table, so that it can be tested
 * alone. The rules are in shard_sync.c's file comment.
 */
#ifndef KN_SHARD_SYNC_H
#define KN_SHARD_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "consumer_int.h"

typedef struct kn__sync_new_s {
    size_t shard;           /* index into the listing */
    const char *checkpoint; /* the sentinel it starts at (static) */
} kn__sync_new_t;

/*
 * The leases to create: keys (sorted by strcmp) are the lease table's.
 * *first says whether no shard of the listing had a lease (the initial
 * position applies). *out is malloc'd (NULL when nothing). KN_ERR_NOMEM only.
 */
kn_err_t kn__sync_plan(const kn__shard_list_t *shards, const char *const *keys, size_t n_keys,
                       kn__initpos_t initial, kn__sync_new_t **out, size_t *count, bool *first);

/* The new lease of shard s at checkpoint: parents, hash range, no owner. KN_ERR_NOMEM only. */
kn_err_t kn__sync_lease_of(const kn__shard_t *s, const char *checkpoint, kn__lease_t *l);

#endif
