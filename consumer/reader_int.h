/*
 * Internal: the stream reader's shared structures.
 *
 * Three parties touch a reader:
 *   - the client's loop thread runs every shard's read state machine
 *     (shard_walker.c) and the shard lineage (lineage.c): fields marked
 *     "loop only";
 *   - the polling thread (kn_reader_poll, reader.c) parses answers, decodes
 *     records and serves messages: fields marked "poller only";
 *   - both meet in the "synced" fields under r->lock: the inbox (loop to
 *     poller: raw answers and events, in order), each shard's hand-back
 *     (poller to loop: what a parsed answer said), and the prefetch byte
 *     counts.
 * The loop-side state lives as long as anything may still call back into it:
 * r->refs counts the application's reference, each request in flight, each
 * open timer and each posted task; whoever drops the last frees the reader.
 */
#ifndef KN_READER_INT_H
#define KN_READER_INT_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "aws.h"
#include "buf.h"
#include "client.h"
#include "clock.h"
#include "err.h"
#include "hashkey.h"
#include "kinesis/reader.h"
#include "kinesis_ops.h"
#include "metrics.h"
#include "prefetch.h"
#include "record_codec.h"

/* Lineage state of a known shard (loop only). */
typedef enum kn__rl_state_e {
    KN__RL_IGNORED = 0, /* not read by this reader (not selected, before LATEST, below a stop) */
    KN__RL_PENDING,     /* will be read once its parents are done */
    KN__RL_ACTIVE,      /* being read */
    KN__RL_DONE,        /* read to its end: children may start */
    KN__RL_FINISHED,    /* stopped or failed: its children are not read */
} kn__rl_state_t;

/* Read state machine of an active shard (loop only). */
typedef enum kn__rs_phase_e {
    KN__RS_NEED_ITERATOR = 0,
    KN__RS_ITERATOR_CALL, /* GetShardIterator in flight */
    KN__RS_READY,         /* has an iterator; the next read is due or waits for room */
    KN__RS_TIMER,         /* pacing, idle or backoff wait */
    KN__RS_READ_CALL,     /* GetRecords in flight */
    KN__RS_PARSING,       /* answer handed to the poller; waiting for its hand-back */
    KN__RS_OVER,          /* no more reads */
} kn__rs_phase_t;

typedef struct kn__rshard_s kn__rshard_t;

/* Loop thread: the inbox got an item (single-shard readers of a consumer). */
typedef void(kn__rnotify_t)(void *opaque);

/* What the poller learnt from one answer (synced: written by the poller, taken by the loop). */
typedef struct kn__handback_s {
    bool ready;
    bool retry;         /* the answer could not be parsed: read again with the same iterator */
    bool stop;          /* stop_at reached */
    bool caught_up;     /* empty and MillisBehindLatest 0 */
    bool said_caught_up; /* ... and the application has been (or will be) told: SHARD_CAUGHT_UP queued */
    bool empty;
    size_t records;     /* Kinesis records in the answer (sizes the next call) */
    char *next_iterator; /* NULL: closed and read to its end */
    char *last_seq;      /* last sequence number in the answer, or NULL */
    kn__child_shard_t *children; /* ChildShards as sent (NULL when none) */
    size_t child_count;
    kn_error_t err;      /* retry: why */
} kn__handback_t;

struct kn__rshard_s {
    kn__rshard_t *next; /* every known shard, in discovery order (appended on the loop) */
    kn_reader_t *r;
    char *id;
    char *parent, *adjacent; /* NULL when absent */
    kn__hashkey_t start_hash, end_hash;
    bool listed_closed; /* the last listing showed it closed */

    /* Loop only. */
    kn__rl_state_t lstate;
    kn__rs_phase_t phase;
    bool ever_caught_up;
    bool started_once;
    bool resolving;     /* looking for children (ListShards) */
    bool paused;        /* its own answers are over consumer.prefetch.shard.max.bytes */
    kn__rwait_t wait;   /* its place in the queue for room under the reader's bound */
    bool start_now;     /* chosen at creation: starts when the loop begins */
    bool in_listing;    /* seen in the latest ListShards */
    /*
     * The last answer handed to the poller was an empty read of a caught-up
     * shard, and SHARD_CAUGHT_UP is queued: the next empty read like it has
     * nothing for the application, and the loop takes it itself (idle_read).
     */
    bool quiet;
    kn__iterator_type_t pos_type; /* where a new iterator starts when nothing was read */
    char *pos_seq;
    int64_t pos_ts_ms;
    char *iterator;
    char *last_seq;     /* last sequence number read (for iterator renewal) */
    int64_t last_call_ms; /* start of the last GetRecords */
    int64_t not_before_ms; /* idle or backoff */
    int fails;          /* consecutive failed calls (backoff exponent) */
    int bad_answers;    /* consecutive 2xx answers that could not be parsed */
    /*
     * Answer sizing: the next GetRecords asks for limit records, expected to
     * come to about budget bytes (avg_bytes per Kinesis record, as measured on
     * this shard's answers; 0 until the first one). budget is reserved against
     * consumer.prefetch.max.bytes while the call is in flight (reserved).
     */
    int limit;
    int64_t budget, avg_bytes, answer_bytes;
    bool reserved;
    bool timer_init;
    uv_timer_t timer;

    /* Synced, under r->lock. */
    int64_t queued_bytes; /* answers read and not yet served */
    kn__handback_t hb;
    /* On the reader's list of shards for the loop to step (a hand-back, or room of its own). */
    bool dirty;
    kn__rshard_t *dirty_next;

    /* Poller only. */
    bool p_caught_up;
    bool p_stopped;
};

/*
 * The poller's serve queue links batches and event items through this entry,
 * which each of them carries: queueing never allocates, so it cannot fail
 * and drop what it queues.
 */
typedef struct kn__rout_s {
    struct kn__rout_s *next;
    struct kn__rbatch_s *batch; /* the batch this entry is part of, or NULL */
    struct kn__ritem_s *event;  /* the event item this entry is part of, or NULL */
} kn__rout_t;

/* An item from the loop to the poller (the inbox), in order. */
typedef enum kn__ritem_kind_e { KN__RI_ANSWER, KN__RI_EVENT } kn__ritem_kind_t;

typedef struct kn__ritem_s {
    struct kn__ritem_s *next;
    kn__rout_t out;        /* its entry in the serve queue */
    kn__ritem_kind_t kind;
    kn__rshard_t *shard;   /* NULL for AT_END */
    /* ANSWER */
    json_object *json;     /* parsed by the request layer (stolen) */
    kn_buf_t body;         /* or the raw body when json is NULL */
    int64_t bytes;         /* counted in queued_bytes */
    /* EVENT */
    kn_reader_msg_type_t ev;
    kn_err_t err;
    char *errstr;
    char **children;
    size_t child_count;
    /* SHARD_END of a single-shard reader: the children with their parents and hash ranges */
    kn__child_shard_t *child_info;
    size_t child_info_count;
} kn__ritem_t;

/* One parsed answer being served (poller only). */
#define KN__RBATCH_OK_WINDOW 64
typedef struct kn__rbatch_s {
    kn__rout_t out;     /* its entry in the serve queue */
    kn__rshard_t *shard;
    kn__get_records_result_t res;
    size_t count;       /* records to serve (a stop may cut res.count) */
    size_t next;        /* next Kinesis record to decode */
    int64_t bytes;      /* to release when served */
    /* Digest checks of records [ok_from, ok_from + ok_n), made together (kn__rbatch_digest_ok). */
    size_t ok_from, ok_n;
    bool digest_ok[KN__RBATCH_OK_WINDOW];
} kn__rbatch_t;

/*
 * Whether record i of b is an aggregate with a good MD5, as checked for the
 * next KN__RBATCH_OK_WINDOW records at once (kn__agg_verify_many) when i
 * leaves the window: the answer for kn__rc_decode_checked.
 */
bool kn__rbatch_digest_ok(kn__rbatch_t *b, size_t i);



struct kn_reader_msg_s {
    kn_reader_msg_type_t type;
    const char *stream;
    const char *shard_id;
    const unsigned char *data;
    size_t data_len;
    kn_buf_t key;  /* NUL-terminated copy of the partition key */
    kn_buf_t ehk;  /* NUL-terminated copy of the explicit hash key (len 0: none) */
    const char *seq;
    uint64_t sub_seq;
    bool aggregated, out_of_range;
    int64_t arrival_ms, millis_behind;
    kn_err_t err;
    const char *errstr;
    char **children;
    size_t child_count;
};

struct kn_reader_s {
    atomic_int refs;
    kn_client_t *client;
    kn_conf_t *conf;
    char *stream; /* as given */
    kn__stream_ref_t ref;
    kn_reader_opts_t opts; /* shard_ids copied below; start.sequence_number copied */
    char **sel;
    size_t sel_count;
    char *start_seq;

    /* Settings. */
    int max_records;
    int64_t interval_ms, idle_ms, shard_max_bytes, read_max_bytes;
    int64_t getrecords_timeout_ms; /* a whole GetRecords call, its large answer included */
    int64_t retry_base_ms, retry_cap_ms;

    /*
     * A reader of one shard for a consumer (kn__reader_new_one): no children
     * are followed (SHARD_END names them), no AT_END, the shared budget
     * instead of consumer.prefetch.max.bytes, notify instead of the eventfd.
     */
    bool single;
    bool keep_empty; /* empty answers are served too (as batches of no records) */
    /* The prefetch bound: own_budget (consumer.prefetch.max.bytes), or one shared by readers. */
    kn__rbudget_t *budget;
    kn__rbudget_t own_budget;
    kn__rnotify_t *notify;
    void *notify_opaque;

    /* Known shards: appended on the loop (or before the loop sees the reader); freed at the end. */
    kn__rshard_t *shards, *shards_tail;

    /* Loop only. */
    bool stopping;
    bool at_end_sent;
    int listing;         /* ListShards in flight (0/1), or waiting out a backoff */
    bool listing_again;  /* another listing wanted after this one */
    int list_fails;      /* consecutive failed listings (backoff exponent) */
    bool list_timer_init;
    uv_timer_t list_timer; /* backoff before listing again */
    kn__shard_list_t page_acc;

    /* Synced, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* inbox got an item; stop task done */
    kn__ritem_t *in_head, *in_tail;
    kn__rshard_t *dirty_head, *dirty_tail; /* shards for the next kick to step, in order */
    atomic_bool in_pending; /* in_head is not empty: lets poll skip the lock and the eventfd */
    int64_t queued_bytes;
    bool kick_posted;
    bool stop_done;
    bool detached;         /* destroy stopped waiting for stop_task: it must not touch r->budget */
    bool released_at_stop; /* stop_task gave back queued_bytes: later releases are no-ops */
    int efd;

    /* Poller only. */
    kn__rout_t *out_head, *out_tail;
    kn__rc_decoder_t *dec;
    const kn__rc_decoded_t *decoded; /* of the head batch's current record */
    size_t decoded_next;
    kn_reader_msg_t msg;
    kn__ritem_t *msg_event; /* the event item behind msg (freed at the next poll) */
    atomic_bool at_end;

    _Atomic int64_t stats[KN_READER_STAT__COUNT];
    /* Metrics (reader_metrics.c): NULL when off; mb is poller only. */
    kn__metrics_t *metrics;
    kn__mbatch_t mb;
};

/* reader.c */
/* The reader with its settings and copies, no shards yet (want_fd: create the eventfd). */
kn_reader_t *kn__reader_alloc(kn_client_t *client, const kn_conf_t *conf, const char *stream,
                              const kn_reader_opts_t *opts, bool want_fd, kn_error_t *err);
void kn__reader_unref(kn_reader_t *r);
/* Takes a client reference and has the loop start the shards chosen so far (start_now). */
kn_err_t kn__reader_begin(kn_reader_t *r);

/*
 * reader_one.c: a reader of exactly one shard, for the consumer (one per
 * lease tenure): from start (copied), no children followed (SHARD_END names
 * them with their parents and hash ranges), the shared budget (may be NULL:
 * consumer.prefetch.max.bytes of its own), notify called on the loop thread
 * whenever something waits to be taken (no eventfd then). Records come raw:
 * the caller decodes them (kn__reader_take). With keep_empty, empty answers
 * are taken too (batches of no records). Does not list the stream.
 */
kn_reader_t *kn__reader_new_one(kn_client_t *client, const kn_conf_t *conf, const char *stream,
                                const kn__shard_t *shard, const kn__iterator_pos_t *start,
                                kn__rbudget_t *budget, bool keep_empty, kn__rnotify_t *notify,
                                void *notify_opaque, kn_error_t *err);
/*
 * Poller side, for a consumer's single-shard readers: the next parsed answer
 * (its records parsed, not decoded: the caller decodes them) or event, in
 * order, waiting up to timeout_ms (-1: no limit). Ownership moves to the
 * caller: kn__reader_batch_done (releases the batch's prefetch bytes) and
 * kn__reader_item_free. False when nothing came in time.
 */
typedef struct kn__rtake_s {
    kn__rbatch_t *batch;
    kn__ritem_t *event;
} kn__rtake_t;
bool kn__reader_take(kn_reader_t *r, int timeout_ms, kn__rtake_t *out);
void kn__reader_batch_done(kn_reader_t *r, kn__rbatch_t *b);
void kn__reader_item_free(kn__ritem_t *it);
/*
 * A raw GetRecords body into res: in place when the fast parser can
 * (kn__get_records_parse_body), else with json-c. Any thread.
 */
kn_err_t kn__reader_parse_body(kn_buf_t *body, kn__get_records_result_t *res, kn_error_t *e);
/* Loop thread: appends an item to the inbox and wakes the poller. */
void kn__reader_push(kn_reader_t *r, kn__ritem_t *it);
/* Loop thread: pushes an event for shard s (NULL for AT_END); errstr copied (may be NULL). */
void kn__reader_push_event(kn_reader_t *r, kn__rshard_t *s, kn_reader_msg_type_t ev, kn_err_t err,
                           const char *errstr, char **children, size_t child_count);
/*
 * Any thread: asks the loop to step the shards marked dirty (kn__reader_mark,
 * under r->lock) and to give freed room to waiting shards (coalesced).
 */
void kn__reader_kick(kn_reader_t *r);
/* Under r->lock: s goes on the list of shards for the next kick to step. */
void kn__reader_mark(kn_reader_t *r, kn__rshard_t *s);
void kn__handback_clear(kn__handback_t *hb);
void kn__child_shards_free(kn__child_shard_t *cs, size_t n);
/* reader_metrics.c: the reader's metrics (ids index its table). */
enum { KN__RM_RECORDS, KN__RM_BYTES, KN__RM_MBL, KN__RM_OUT_OF_RANGE, KN__RM__COUNT };
/* Starts r->metrics from r->conf (stays NULL when off). Public readers only. */
kn_err_t kn__rm_start(kn_reader_t *r, kn_error_t *err);
/* Records what is gathered and stops the metrics (the last window). Poller side, at destroy. */
void kn__rm_stop(kn_reader_t *r);

static inline void kn__rstat_add(kn_reader_t *r, kn_reader_stat_t s, int64_t v)
{
    atomic_fetch_add(&r->stats[s], v);
}

/* shard_walker.c (loop thread) */
/* Whether a failed read or listing is worth trying again (with backoff). */
bool kn__reader_retriable(const kn_error_t *e);
/* Starts reading s (lstate becomes ACTIVE) with its start position set. */
void kn__walker_start(kn_reader_t *r, kn__rshard_t *s);
/* Advances s as far as it can go now (iterator, pacing, room, hand-back); true if a read started. */
bool kn__walker_step(kn_reader_t *r, kn__rshard_t *s);
/* Closes the shard's timer and gives up its place in the queue for room (at stop). */
void kn__walker_close(kn_reader_t *r, kn__rshard_t *s);
/* Starts the calls of shards waiting for room under b while they fit, in order. */
void kn__walker_serve_room(kn__rbudget_t *b);

/* lineage.c */
/* Application thread, in kn_reader_new: the known shards from a listing, and which start. */
kn_err_t kn__lineage_init(kn_reader_t *r, const kn__shard_list_t *list, kn_error_t *err);
/* Loop thread: starts the shards that were chosen at creation. */
void kn__lineage_begin(kn_reader_t *r);
/* Loop thread: s was read to its end; children from ChildShards (may be 0) or a listing. */
void kn__lineage_shard_done(kn_reader_t *r, kn__rshard_t *s, const kn__child_shard_t *children,
                            size_t child_count);
/* Loop thread: s stopped or failed (its children are not read). */
void kn__lineage_shard_finished(kn_reader_t *r, kn__rshard_t *s);
/* Loop thread: delivers AT_END once when everything is at its end. */
void kn__lineage_check_end(kn_reader_t *r);
kn__rshard_t *kn__lineage_find(kn_reader_t *r, const char *id);
/* Before the loop sees the reader: adds the one shard to read from start (reader_one.c). */
kn_err_t kn__lineage_add_one(kn_reader_t *r, const kn__shard_t *sh, const kn__iterator_pos_t *start);
/* Loop thread, at stop: closes the listing's backoff timer. */
void kn__lineage_close(kn_reader_t *r);

#endif
