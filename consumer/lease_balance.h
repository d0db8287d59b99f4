/*
 * Internal: the balancing decision (lease_balance.c), a pure function of a
 * scan's view so that it can be tested alone.
 *
 * Of the leases that can be processed now (not finished, parents ended),
 * each worker should hold about target = ceil(leases / workers), at most
 * max_leases; workers are the owners of unexpired leases plus this one.
 * A worker under target takes free leases (no owner) first, then expired
 * ones, in an order of its own (seed) so that several workers scanning at
 * once do not all go for the same lease. When nothing is free and it is
 * still under target, it asks the most loaded worker for leases (the KCL
 * 3.x handoff), at most steal_max per scan, and only when that worker has
 * at least two more than this one (so that a move never makes the spread
 * worse and two workers never pass a lease back and forth).
 * A lease left free for long (every other worker at its share, or capped by
 * its own consumer.max.leases) is taken beyond the share, up to max_leases:
 * no shard is left unread while a worker could read it (the KCL takes such
 * "very old" leases the same way).
 */
#ifndef KN_LEASE_BALANCE_H
#define KN_LEASE_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "lease.h"

typedef struct kn__bal_in_s {
    const kn__lease_t *l;
    bool processable; /* not finished, and every parent still in the table ended */
    bool expired;     /* owned, and its counter unchanged for the failover time (observer's clock) */
    bool mine;        /* held, being taken, asked for or claimed by this worker */
    bool leaving;     /* held by this worker but going (handoff asked of it, shutting down) */
    bool cooling;     /* this worker does not take it now (it failed here recently) */
    bool neglected;   /* free, or expired, for long (a failover time past expiry): nobody takes it */
} kn__bal_in_t;

typedef struct kn__bal_plan_s {
    size_t *take;   /* indexes into the input: leases to take */
    size_t n_take;
    size_t *ask;    /* leases to ask their owners for */
    size_t n_ask;
    int64_t target; /* this worker's fair share */
    int64_t workers;
    int64_t mine;
    int64_t available; /* free or expired leases this worker could take */
} kn__bal_plan_t;

/* KN_ERR_NOMEM only. out is freed with kn__bal_plan_free. */
kn_err_t kn__balance_plan(const kn__bal_in_t *in, size_t n, const char *me, int64_t max_leases,
                          int steal_max, uint32_t seed, kn__bal_plan_t *out);
void kn__bal_plan_free(kn__bal_plan_t *p);

#endif
