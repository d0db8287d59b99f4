/*
 * Internal: fault points for tests. A fault point names a place where the
 * library handles a failure that no real server or test can provoke on
 * demand (an allocation failing at one exact step). A test arms a point for
 * N hits; while armed, kn__fault() returns true at that point and counts the
 * hit down, and the code takes its failure path as if the allocation had
 * failed. Unarmed (always, outside tests), a point costs one relaxed atomic
 * load on a path that is about to allocate anyway.
 */
#ifndef KN_FAULT_H
#define KN_FAULT_H

#include <stdatomic.h>
#include <stdbool.h>

typedef enum kn__fault_point_e {
    KN__FP_PRODUCER_MISMATCH_ALLOC, /* send.c: waiting for a map after a wrong-shard landing */
    KN__FP_PRODUCER_FILL_ALLOC,     /* send.c: a success handed to the serving thread to fill in */
    KN__FP_READER_BATCH_ALLOC,      /* reader.c: a parsed answer's batch */
    KN__FP_READER_QUEUE_ALLOC,      /* reader.c: an event of the poller's own (caught up, stopped) */
    KN__FP__COUNT
} kn__fault_point_t;

extern _Atomic int kn__fault_armed[KN__FP__COUNT];

/* Arms point p for the next n hits (0 disarms). Any thread. */
void kn__fault_arm(kn__fault_point_t p, int n);
/* Hits armed so far and not yet used. */
int kn__fault_left(kn__fault_point_t p);

/* True when p is armed (and uses one hit): take the failure path. */
static inline bool kn__fault(kn__fault_point_t p)
{
    if (atomic_load_explicit(&kn__fault_armed[p], memory_order_relaxed) <= 0)
        return false;
    return atomic_fetch_sub(&kn__fault_armed[p], 1) > 0;
}

#endif
