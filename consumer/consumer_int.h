/*
 * Internal: the consumer's structures, shared by its parts. The lease path,
 * top-down:
 *   consumer.c           the API: settings, start, shutdown, destroy, counters
 *   lease_coordinator.c  the leases this worker holds or is acquiring: take,
 *                        claim, renew, fence, hand over, release (loop thread)
 *   lease_scan.c         the table as seen by the periodic scans: expiry on the
 *                        observer's clock, the balance (what to take or ask
 *                        for), cleanup of finished leases (loop thread)
 *   lease_balance.c      the balancing decision itself (pure)
 *   shard_sync.c         the stream's shards against the table: leases for new
 *                        shards and children (loop thread; the plan is pure)
 *   dispatch.c           processor threads, one tenure of a lease at a time
 *                        each: reader, decoding, callbacks, retries
 *   batch.c              the batches handed to process_records
 *   checkpointer.c       kn_checkpoint from a processor, through the loop
 *   lease_table.c        the DynamoDB items and conditional writes (lease.h)
 *
 * Threads:
 *   - the client's loop thread owns everything marked "loop": the held list,
 *     the known leases, timers, the lease table operations' callbacks;
 *   - processor threads run tenures (dispatch.c); fields marked "worker"
 *     belong to the thread running the tenure at that moment (one at a time);
 *   - c->lock guards what both sides touch (marked "locked"): the run queue,
 *     each tenure's requests and flags, checkpoint replies, the lifecycle.
 * The loop never waits for a processor and a processor never runs on the
 * loop: renewals are never delayed by a slow callback.
 */
#ifndef KN_CONSUMER_INT_H
#define KN_CONSUMER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "client.h"
#include "conf.h"
#include "kinesis/consumer.h"
#include "kinesis_ops.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "reader_int.h"
#include "record_codec.h"

typedef struct kn__tenure_s kn__tenure_t;
typedef struct kn__held_s kn__held_t;
typedef struct kn__ckreq_s kn__ckreq_t;

typedef enum kn__initpos_e {
    KN__POS_TRIM_HORIZON,
    KN__POS_LATEST,
    KN__POS_AT_TIMESTAMP,
} kn__initpos_t;

/* Why a tenure ends. */
typedef enum kn__leave_e {
    KN__LEAVE_NONE = 0,
    KN__LEAVE_SHUTDOWN,  /* this worker shuts down: shutdown_requested, checkpoint, release */
    KN__LEAVE_HANDOFF,   /* another worker asked for it: shutdown_requested, checkpoint, hand over */
    KN__LEAVE_ERROR,     /* the shard cannot be read: shutdown_requested, checkpoint, release */
    KN__LEAVE_SHARD_END, /* read to its end: shard_ended, SHARD_END, release */
    KN__LEAVE_LOST,      /* no longer ours (taken, or not renewed in time): lease_lost */
} kn__leave_t;

const char *kn__leave_name(kn__leave_t why);

/* ------------------------------------------------------------ checkpoint requests */

/* From a processor thread to the loop and back (checkpointer.c, lease_coordinator.c). */
struct kn__ckreq_s {
    kn__ckreq_t *next; /* loop: the lease's queue of writes */
    kn__tenure_t *t;   /* a reference */
    int refs;          /* the waiter's and the loop's (locked) */
    char *seq;         /* a sequence number, or SHARD_END */
    uint64_t sub;
    /* Reply (locked). */
    bool done;
    kn_err_t rc;
    kn_error_t err;
};

/* Loop thread: the reply to a checkpoint request (e NULL: written); wakes its waiter. */
void kn__ckreq_reply(kn_consumer_t *c, kn__ckreq_t *q, const kn_error_t *e);

struct kn_checkpointer_s {
    kn__tenure_t *t;
    bool usable;    /* inside a callback that may checkpoint */
    bool shard_end; /* in shard_ended: kn_checkpoint means SHARD_END */
};

/* ------------------------------------------------------------ tenures */

/*
 * One tenure of one lease by this worker: from the take (or the end of a
 * handoff to us) until the lease is let go or lost. A tenure has its own
 * reader and processor state, so nothing of an earlier tenure can reach a
 * later one. Created by the loop, run by processor threads, freed by whoever
 * drops the last reference (the loop's, while it holds the lease, and the
 * dispatch's, until the tenure is finished).
 */
struct kn__tenure_s {
    atomic_int refs;
    kn_consumer_t *c;
    kn__tenure_t *all_prev, *all_next; /* c->tenures (locked) */
    kn__tenure_t *run_next;            /* c->runq (locked) */
    kn__held_t *held;                  /* loop: the lease it runs under, NULL once let go */
    char *shard_id;
    kn__shard_t shard;                 /* id, parents, hash range: what the reader needs */
    kn__hashkey_t start_hash, end_hash;
    char *start_ck;                    /* the checkpoint the tenure starts after */
    uint64_t start_sub;

    /* Locked. */
    bool queued, running, wake, finished;
    kn__leave_t leave;  /* asked by the loop (handoff, shutdown, lost) */
    bool over;          /* the lease is not ours any more: checkpoints are refused */
    bool caught_up;     /* read to the tip once (or to the end of the shard) */
    bool busy;          /* a batch is taken and not yet processed */
    int64_t not_before; /* retry backoff (monotonic ms) */
    kn_reader_t *reader;

    /* Worker. */
    bool initialized;
    kn__leave_t ending; /* the end sequence under way, once begun */
    bool end_called;    /* its callback returned */
    void *state;
    int fails;           /* consecutive failed callbacks (backoff exponent) */
    kn__rbatch_t *pending; /* a batch taken and not yet processed OK */
    bool skipping;       /* records at or before start_ck are still being left out */
    char *ck_seq;        /* the lease's checkpoint as this tenure knows it */
    uint64_t ck_sub;
    char *last_seq;      /* the last record delivered */
    uint64_t last_sub;
    char *ok_seq;        /* the last record of a batch processed OK and not checkpointed */
    uint64_t ok_sub;
    kn__child_shard_t *children; /* SHARD_END: the children */
    size_t n_children;
    kn_checkpointer_t cp;
};

void kn__tenure_unref(kn__tenure_t *t);

/* ------------------------------------------------------------ held leases */

typedef enum kn__hstate_e {
    KN__H_TAKING,    /* a take in flight */
    KN__H_ASKED,     /* its owner was asked to hand it over: waiting until it lets go */
    KN__H_CLAIMING,  /* the owner let go: a renew confirms it is ours */
    KN__H_HELD,      /* ours: its tenure runs */
    KN__H_LETTING_GO,/* the tenure ended: the last write (release, handoff) */
    KN__H_GONE,      /* freed once no operation is in flight */
} kn__hstate_t;

/* A lease this worker holds or is acquiring (loop). */
struct kn__held_s {
    kn__held_t *next;
    kn_consumer_t *c;
    char *key;
    kn__hstate_t state;
    kn__lease_t view;   /* the lease as of the last write or read */
    int64_t counter;    /* after our last write that succeeded */
    int64_t sent_ms;    /* when that write was sent: the fence counts from it */
    int64_t since_ms;   /* when the state began (asks, handoffs: their timeouts) */
    int64_t asked_ms;   /* when this worker asked its owner for it (0: it did not) */
    int ops;            /* lease table operations in flight for it */
    bool writing;       /* a write in flight (renew, checkpoint, last write): one at a time */
    int64_t next_renew_ms;
    int write_fails;    /* consecutive failed writes (not lost): renew sooner */
    kn__ckreq_t *ck_head, *ck_tail;
    bool handoff;       /* another worker asked for it: we are its checkpointOwner */
    bool lost;          /* no longer ours: no more writes */
    bool handed_off;    /* the handoff's last write succeeded (or was given up) */
    kn__leave_t why;    /* how the tenure ended */
    kn__tenure_t *tenure; /* HELD, and LETTING_GO until the tenure finishes */
};

/* ------------------------------------------------------------ the table as scanned */

/* A lease as the last scans showed it (loop). */
typedef struct kn__known_s {
    kn__lease_t l;
    int64_t changed_ms;   /* observer's clock: when its counter was last seen to change */
    int64_t deleting_ms;  /* a cleanup delete was sent then (0: none) */
} kn__known_t;

/* ------------------------------------------------------------ the worker */

typedef struct kn__worker_s {
    kn_consumer_t *c;
    pthread_t thread;
    kn__rc_decoder_t *dec;
    kn_batch_t *batch; /* reused for every batch this thread hands out */
} kn__worker_t;

typedef enum kn__cstate_e {
    KN__C_NEW,
    KN__C_STARTING,
    KN__C_RUNNING,
    KN__C_SHUTTING,  /* graceful shutdown under way */
    KN__C_STOPPED,   /* no lease held any more (or given up) */
} kn__cstate_t;

struct kn_consumer_s {
    kn_client_t *client;
    kn_conf_t *conf;
    kn__logger_t *log;
    char *stream;          /* as given (name or ARN) */
    char *stream_name, *stream_arn;
    kn__stream_ref_t ref;
    kn_processor_t proc;
    void *app;
    char *worker_id;
    kn__lease_table_t *lt;

    /* Settings. */
    int64_t failover_ms, renew_ms, fence_ms, scan_ms, sync_ms, handoff_ms, retry_ms, shutdown_ms;
    int64_t max_leases;
    int steal_max;
    int max_retries; /* consumer.processor.max.retries (0: for ever) */
    kn__initpos_t initial;
    int64_t initial_ts_ms;
    bool cleanup, shard_end_auto, ck_on_shutdown, process_empty;
    int threads;
    kn__rbudget_t budget;

    /* Locked. */
    pthread_mutex_t lock;
    pthread_cond_t cond;     /* lifecycle changes, checkpoint replies, tenures finished */
    pthread_cond_t run_cond; /* the run queue got work */
    kn__cstate_t state;
    kn__tenure_t *tenures;   /* every unfinished tenure */
    int n_tenures;
    kn__tenure_t *runq_head, *runq_tail;
    bool workers_stop;
    bool sync_done;          /* the first shard sync finished (with sync_err) */
    kn_error_t sync_err;
    bool loop_closed;        /* the loop side is closed: nothing more runs there */
    int loop_refs;           /* loop-side references: timers, operations, posted tasks */
    bool scanned;            /* a scan has been taken into account */
    bool nothing_to_take;    /* the last scan found nothing this worker should take */
    int acquiring;           /* leases being taken, asked or claimed */

    /* Workers. */
    kn__worker_t *workers;
    int n_workers;

    /* Loop. */
    uv_timer_t tick;
    bool tick_init;
    bool loop_closing;       /* kn__coord_close ran: no new writes */
    kn__held_t *held;
    size_t n_gone;           /* entries of held in state GONE, not yet freed (reap walks only then) */
    kn__known_t *known;      /* sorted by key */
    size_t n_known;
    int64_t last_scan_ms, last_sync_ms;
    bool scanning, syncing, scan_soon;
    int scan_fails;          /* consecutive failed scans */
    int64_t scan_started_ms;
    char **cooling;          /* keys this worker does not take again before cool_until */
    int64_t *cool_until;
    size_t n_cooling;
    uint32_t seed;
    kn__shard_list_t sync_acc;   /* the listing being read */
    int creates_pending;         /* creates of the first sync in flight (start waits for them) */
    kn_error_t creates_err;      /* the first of their failures */
    bool sync_wanted;            /* a sync follows the next scan */

    _Atomic int64_t stats[KN_CONSUMER_STAT__COUNT];
    kn__metrics_t *metrics; /* NULL: metrics off (consumer_metrics.c) */
};

/* consumer_metrics.c: the KCL's metrics (ids index its table). */
enum {
    KN__CM_RECORDS,
    KN__CM_BYTES,
    KN__CM_MBL,
    KN__CM_PROCESS_TIME,
    KN__CM_CURRENT_LEASES,
    KN__CM_LOST_LEASES,
    KN__CM_RENEW_SUCCESS,
    KN__CM_TAKEN_LEASES,
    KN__CM_TOTAL_LEASES,
    KN__CM_NUM_WORKERS,
    KN__CM_EXPIRED_LEASES,
    KN__CM_NEEDED_LEASES,
    KN__CM_LEASES_TO_TAKE,
    KN__CM_HANDED_TO_US,
    KN__CM_HANDED_OVER,
    KN__CM_RELEASED,
    KN__CM_CHECKPOINTS,
    KN__CM_HANDOFF_TIME,
    KN__CM_OUT_OF_RANGE,
    KN__CM__COUNT
};
/* Starts c->metrics (stays NULL when off); appname is the default namespace. */
kn_err_t kn__cm_start(kn_consumer_t *c, const char *appname, kn_error_t *err);
/* A counter moved: the lease metrics that follow it. */
void kn__cm_stat(kn_consumer_t *c, kn_consumer_stat_t s, int64_t v);
/* A process_records call that returned KN_ERR_OK (processor thread). */
void kn__cm_batch(kn_consumer_t *c, const char *shard, size_t records, int64_t bytes, int64_t millis_behind,
                  int64_t process_ms, size_t out_of_range);
/* A lease handed over to this worker, ms after it asked (loop thread). */
void kn__cm_handoff(kn_consumer_t *c, int64_t ms);
/* A scan's view of the table and its plan (loop thread). */
void kn__cm_scan(kn_consumer_t *c, size_t total, int64_t workers, size_t expired, int64_t needed,
                 size_t to_take);

static inline void kn__cstat_add(kn_consumer_t *c, kn_consumer_stat_t s, int64_t v)
{
    atomic_fetch_add_explicit(&c->stats[s], v, memory_order_relaxed);
    if (c->metrics)
        kn__cm_stat(c, s, v);
}

/* consumer.c */
/* Loop-side references: taken for each operation and posted task, dropped when they end. */
void kn__consumer_loop_ref(kn_consumer_t *c);
void kn__consumer_loop_unref(kn_consumer_t *c);
/* Any thread: runs fn on the loop with a loop reference; false if the client is going away. */
bool kn__consumer_post(kn_consumer_t *c, void (*fn)(kn_consumer_t *c, void *arg), void *arg);

/* lease_coordinator.c (loop) */
/* Starts the periodic work (tick timer): renewals, fences, scans, syncs. */
void kn__coord_begin(kn_consumer_t *c);
/* The graceful shutdown: every tenure ends (shutdown_requested), leases are released. */
void kn__coord_shutdown(kn_consumer_t *c);
/* Ends what is left without a checkpoint, stops the tick; the loop side winds down. */
void kn__coord_close(kn_consumer_t *c);
/* A lease to take (free or expired, as seen) / to ask its owner for. */
void kn__coord_take(kn_consumer_t *c, const kn__lease_t *l, bool expired);
void kn__coord_ask(kn_consumer_t *c, const kn__lease_t *l);
/*
 * The view of a scan that began at scan_started_ms of a lease this worker
 * holds or is acquiring (k NULL: not in the table). An ask withdrawn during
 * shutdown is also made here.
 */
void kn__coord_seen(kn_consumer_t *c, kn__held_t *h, const kn__known_t *k, int64_t scan_started_ms);
kn__held_t *kn__coord_find(kn_consumer_t *c, const char *key);
/* Whether a held entry counts as this worker's for the balance. */
bool kn__coord_counts(const kn__held_t *h);
/* A checkpoint request reached the loop. */
void kn__coord_checkpoint(kn_consumer_t *c, kn__ckreq_t *q);
/* The tenure finished (its close ran): let the lease go as it ended. */
void kn__coord_tenure_done(kn_consumer_t *c, kn__tenure_t *t, kn__leave_t why);
/* The tenure read its shard to the end: children to create. */
void kn__coord_shard_end_seen(kn_consumer_t *c, kn__tenure_t *t);

/* lease_scan.c (loop) */
void kn__scan_start(kn_consumer_t *c);
const kn__known_t *kn__scan_find(const kn_consumer_t *c, const char *key);
/* Whether the shard's processing may begin: every parent still in the table has ended. */
bool kn__scan_parents_done(const kn_consumer_t *c, const kn__lease_t *l);
void kn__scan_cool(kn_consumer_t *c, const char *key, int64_t until_ms);
void kn__scan_free(kn_consumer_t *c);

/* shard_sync.c (loop) */
void kn__sync_start(kn_consumer_t *c);
/* Creates the leases of children found at a shard's end (TRIM_HORIZON, their parents). */
void kn__sync_children(kn_consumer_t *c, const kn__child_shard_t *cs, size_t n);

/* dispatch.c */
kn_err_t kn__dispatch_start(kn_consumer_t *c, kn_error_t *err);
/* Waits for the workers to end (after every tenure finished, or at the deadline). */
void kn__dispatch_stop(kn_consumer_t *c);
/* Loop: a tenure for lease h, queued to run. NULL when out of memory. */
kn__tenure_t *kn__tenure_new(kn_consumer_t *c, kn__held_t *h);
/* Loop: asks the tenure to end (why) after its current callback; lost also refuses checkpoints. */
void kn__tenure_leave(kn__tenure_t *t, kn__leave_t why);
/* Any thread: the tenure has something to do (locked inside). */
void kn__tenure_wake(kn__tenure_t *t);
/* Whether this thread is running a processor callback (destroy refuses then). */
bool kn__dispatch_in_callback(void);

/* batch.c (worker) */
kn_batch_t *kn__batch_new(void);
void kn__batch_free(kn_batch_t *b);
/*
 * Fills b from one answer of t's shard: every Kinesis record decoded (KPL
 * sub-records, decompression), those at or before the tenure's starting
 * checkpoint left out while t->skipping. KN_ERR_NOMEM only.
 */
kn_err_t kn__batch_fill(kn_batch_t *b, kn__tenure_t *t, kn__rc_decoder_t *dec,
                        kn__rbatch_t *rb);
/* The last record of the batch (NULL when it has none). */
const char *kn__batch_last(const kn_batch_t *b, uint64_t *sub);
int64_t kn__batch_bytes(const kn_batch_t *b);
/* Its KPL sub-records whose explicit hash key lies outside the shard's range (delivered all the same). */
size_t kn__batch_out_of_range(const kn_batch_t *b);

/* checkpointer.c (worker) */
/* A blocking checkpoint of t at seq/sub (SHARD_END with 0), validated by the caller. */
kn_err_t kn__checkpoint_write(kn__tenure_t *t, const char *seq, uint64_t sub, kn_error_t *err);

#endif
