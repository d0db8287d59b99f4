/*
 * Internal: the prefetch bound, the bytes that a reader (or all of a
 * consumer's single-shard readers together) may hold in answers read and not
 * yet served, and the queue of shards waiting for room under it.
 *
 * Two amounts count toward the bound: queued, the bytes of answers handed to
 * the poller and not yet served (added on the loop thread when an answer
 * arrives, taken off on the polling thread when it is served: under lock),
 * and reserved, the budgets of the GetRecords calls in flight (loop thread
 * only). A call may start when its budget fits under max with both, or when
 * nothing at all is held, so that a budget larger than the bound still makes
 * progress.
 *
 * Room is given in order. A shard whose call does not fit joins the back of
 * the queue, and no later call starts while anyone waits ahead of it (a
 * shard that leaves the queue without starting, for a backoff or its own
 * shard bound, asks again at the back): a
 * large budget (a shard's first read, or one far behind) is not starved by
 * the many small ones of caught-up shards that would otherwise always fit
 * first. Whoever frees room (the loop when a call ends, the poller through a
 * kick) has the loop take waiters from the head while they fit. Each
 * admission is O(1); nothing walks the shards.
 *
 * The queue and reserved belong to the loop thread; queued is under lock;
 * waiting is readable anywhere.
 */
#ifndef KN_PREFETCH_H
#define KN_PREFETCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* A place in the queue, carried by each shard (it never allocates). */
typedef struct kn__rwait_s {
    struct kn__rwait_s *prev, *next;
    bool queued;
    int64_t need; /* the budget it asks for */
} kn__rwait_t;

typedef struct kn__rbudget_s {
    pthread_mutex_t lock;
    int64_t queued;   /* under lock */
    int64_t reserved; /* loop only */
    int64_t max;
    kn__rwait_t *head, *tail; /* loop only */
    atomic_int waiting;       /* how many are queued */
} kn__rbudget_t;

void kn__rbudget_init(kn__rbudget_t *b, int64_t max);
void kn__rbudget_destroy(kn__rbudget_t *b);

/*
 * Loop: may a call with budget need start now for the shard that owns w?
 * Yes when nobody waits ahead of w and need fits: then w leaves the queue
 * and need is reserved. Otherwise w is queued (at the back, or where it
 * already was) and false returned.
 */
bool kn__rbudget_admit(kn__rbudget_t *b, kn__rwait_t *w, int64_t need);
/* Loop: the call that reserved need has ended. */
void kn__rbudget_unreserve(kn__rbudget_t *b, int64_t need);
/* Loop: w no longer waits (its shard stopped); no-op when not queued. */
void kn__rbudget_cancel(kn__rbudget_t *b, kn__rwait_t *w);
/* Loop: the head of the queue when its need fits now (still queued), else NULL. */
kn__rwait_t *kn__rbudget_ready(kn__rbudget_t *b);
/* Any thread: answers of bytes arrive (hold) or are served (release). */
void kn__rbudget_hold(kn__rbudget_t *b, int64_t bytes);
void kn__rbudget_release(kn__rbudget_t *b, int64_t bytes);

#endif
