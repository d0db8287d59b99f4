/*
 * Internal: the producer's shared structures.
 *
 * Threads. Application threads call put/poll/flush; they touch only the
 * fields under p->lock (the "synced" part: the hand-over queue, memory
 * accounting, flush generations) and p->rlock (the result queue). The
 * client's loop thread owns everything under "loop only": streams' shard
 * state, aggregation, collection, requests in flight and retries. A record
 * moves put -> hand-over queue -> loop -> result queue -> served; it is
 * owned by exactly one of them at a time, so its own fields need no lock.
 */
#ifndef KN_PRODUCER_INT_H
#define KN_PRODUCER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "agg.h"
#include "client.h"
#include "clock.h"
#include "compress.h"
#include "record_codec.h"
#include "err.h"
#include "hashkey.h"
#include "kinesis/producer.h"
#include "kinesis_ops.h"
#include "metrics.h"
#include "shard_map.h"

typedef struct kn__pstream_s kn__pstream_t;
typedef struct kn__pshard_s kn__pshard_t;

/* Where a record landed: shared by every user record of one Kinesis record. */
typedef struct kn__landing_s {
    atomic_int refcnt;
    char *shard_id; /* point into the same allocation */
    char *seq;
} kn__landing_t;

typedef struct kn__pattempt_s {
    int64_t delay_ms, duration_ms;
    kn_err_t err;
    const char *name; /* interned (lives as long as the producer) */
} kn__pattempt_t;

/*
 * The success of one Kinesis record, for the serving thread to write into
 * its user records (r->fill on the first of them; the rest follow it in the
 * result queue). The loop thread hands the whole run over without touching
 * each record: by the time an answer comes its records have left the cache,
 * and the serving thread reads each of them anyway.
 */
typedef struct kn__fill_s {
    kn__landing_t *landing; /* counted for every record of the run */
    size_t count;           /* records in the run, the first included */
    int64_t start_ms, end_ms; /* the attempt: request sent, answer handled */
    const char *name;       /* the attempt's interned error name ("") */
    bool aggregated;
} kn__fill_t;

/*
 * One user record, in one allocation with its key, explicit hash key and
 * data; also its result. The fields are ordered by who reads them last: the
 * serving thread reaches each record long after it was put (cold in the
 * cache), so what it reads and writes fills the first two cache lines.
 */
struct kn_result_s {
    /* Serving (first cache line): the queue, the outcome, what the accounting reads. */
    struct kn_result_s *next;
    kn__fill_t *fill;       /* in the result queue: this and the next fill->count - 1 records succeeded */
    void *opaque;
    kn__landing_t *landing; /* on success */
    int64_t last_end_ms;
    uint64_t sub_seq;
    kn_err_t err;
    uint32_t gen;           /* flush generation slot */
    uint32_t key_len, ehk_len;
    /* Serving (second cache line): the attempts, what free reads. */
    size_t data_len;
    int n_attempts;
    bool aggregated, sent;
    bool hash_pending;      /* hash is the MD5 of key, computed when the loop takes the record */
    char *errstr;           /* malloc'd on failure */
    kn__pattempt_t *more;   /* attempts 1.. (malloc'd) */
    kn__pattempt_t attempt0;
    /* The loop's. */
    kn__pstream_t *stream;
    kn__hashkey_t hash;
    const char *key, *ehk;
    const unsigned char *data;
    int64_t put_ms, deadline_ms, expire_ms, not_before_ms;
    kn__codec_t zcodec; /* record scope: data is a frame of this codec (tagged); NONE: as put */
    uint32_t shard_index; /* predicted shard in the stream's current map */
    kn__pshard_t *wait_shard; /* while in a retry list */
};
typedef struct kn_result_s kn__prec_t;

typedef struct kn__plist_s {
    kn__prec_t *head, *tail;
    size_t count;
    size_t bytes;
} kn__plist_t;

/* Token bucket for one shard's records and bytes. */
typedef struct kn__bucket_s {
    double rec_tokens, byte_tokens;
    double factor; /* 1.0, lowered after throttling, recovering over time */
    int64_t last_ms;
    int64_t last_throttle_ms;
} kn__bucket_t;

struct kn__pshard_s {
    char *shard_id;
    kn__plist_t queue; /* records waiting, in order */
    kn__bucket_t bucket;
    int inflight;      /* requests carrying a record of this shard */
    int retry_wait;    /* records of this shard waiting out a backoff (strict mode blocks on them) */
    bool retired;      /* no longer in the map: kept (krecs may point here) until the end */
    bool in_ready;     /* strict mode: a krec of this shard is ready or in flight */
    bool compressing;  /* a krec of this shard is being compressed (aggregate scope) */
    kn__pshard_t *next_retired;
};

/* A Kinesis record ready to send: one user record raw, or an aggregate. */
typedef struct kn__krec_s {
    struct kn__krec_s *next;
    kn__pshard_t *shard;
    kn__plist_t recs;
    kn__agg_out_t out; /* when aggregated, or wrapped (aggregate-scope compression) */
    bool aggregated;
    bool wrapped;      /* a raw record wrapped in a compression frame: data in out.data */
    int64_t min_deadline;
    size_t wire_bytes; /* data + partition key */
} kn__krec_t;

typedef struct kn__mismatch_s {
    struct kn__mismatch_s *next;
    kn__krec_t *krec;
    kn__landing_t *landing;
    kn__pattempt_t attempt;
} kn__mismatch_t;

struct kn__pstream_s {
    kn__pstream_t *next;      /* all streams (under p->lock) */
    kn__pstream_t *loop_next; /* started streams (loop only) */
    kn_producer_t *producer;
    char *name;
    kn__stream_ref_t ref;
    int64_t record_max_bytes; /* under p->lock */
    /*
     * Learning the stream's record size limit (MaxRecordSizeInKiB) for the
     * first record over the default, under p->lock: 0 not yet, 1 a
     * DescribeStreamSummary in flight, 2 learnt (or refused for good).
     */
    int limit_state;
    int64_t limit_retry_ms; /* after a failure that may pass: ask again from then on */
    char limit_err[300];    /* why the last attempt failed, for put's message */
    /* Loop only. */
    bool started;
    kn__shard_refresher_t *refresher;
    kn__shard_map_t *map;
    kn__pshard_t **shards; /* one per map entry */
    size_t nshards;
    kn__pshard_t *retired;
    kn__plist_t waiting; /* records before the first map */
    kn__plist_t retry;   /* records waiting out a backoff */
    int64_t retry_min_ms;
    kn__krec_t *ready_head, *ready_tail;
    size_t ready_count, ready_bytes;
    int64_t ready_min_deadline;
    kn__mismatch_t *mismatches; /* successes to check against the next map */
    atomic_int_fast64_t pending; /* with metrics: put and not yet served (UserRecordsPending) */
    char last_err[800];         /* the last map refresh error, for messages */
};

typedef struct kn__pstats_s {
    _Atomic int64_t received, put_ok, failed, expired, kinesis_put, requests, retries;
    _Atomic int64_t buffering_ms_total, buffering_count, request_ms_total, request_count;
    _Atomic int64_t throttled;
    _Atomic int64_t errors[KN_ERR__COUNT];
} kn__pstats_t;

#define KN__PGEN_SLOTS 64

struct kn_producer_s {
    kn_client_t *client;
    kn_conf_t *conf;
    kn_result_cb_t *cb;
    void *cb_opaque;
    kn_stats_cb_t *stats_cb;
    void *stats_opaque;
    int64_t stats_ms, stats_next_ms; /* stats_next_ms: serving thread (under serve_lock) */

    /* Settings. */
    int64_t buffered_ms, ttl_ms, put_timeout_ms, shutdown_ms;
    int64_t buf_max_records, buf_max_bytes;
    int64_t agg_max_bytes, agg_max_count, max_inflight;
    int64_t retry_base_ms, retry_cap_ms;
    double rate_percent;
    bool agg_enabled, strict, fail_if_throttled, background;
    kn__codec_t codec; /* KN__CODEC_NONE: no compression */
    kn__rc_scope_t zscope;
    int zlevel;
    char *outer_key;
    kn__kinesis_limits_t limits;

    /* Synced data, under lock. */
    pthread_mutex_t lock;
    pthread_cond_t room_cond; /* memory freed, flush progress, loop closed */
    kn__prec_t *in_head, *in_tail;
    bool in_posted;
    int64_t mem_records, mem_bytes;
    int64_t gen_count[KN__PGEN_SLOTS];
    uint32_t gen;
    kn__pstream_t *streams;
    bool destroying;
    int active_calls; /* puts/polls/flushes inside the producer (destroy waits for them) */
    bool loop_closed;

    /* Results, under rlock. */
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    kn__prec_t *res_head, *res_tail;
    pthread_mutex_t serve_lock; /* one server at a time */
    atomic_bool serving;        /* server is inside serve (callbacks may call put) */
    pthread_t server;
    int efd;
    bool bg_stop;
    bool stop_waits; /* destroy: a poll waiting for results returns instead (not destroy's own) */
    pthread_t destroyer; /* the thread in destroy, once stop_waits is set (under rlock) */
    pthread_t bg_thread;
    bool bg_started;

    /* Loop only. */
    uv_timer_t timer;
    bool timer_init;
    int64_t inflight;
    int64_t inflight_bytes, inflight_bytes_max; /* request bodies' payload in flight, bounded */
    bool cancelled;    /* destroy: no more sends, everything queued fails */
    bool closing_wait; /* cancelled: close once nothing is in flight */
    kn__pstream_t *loop_streams;
    kn__agg_builder_t *agg;
    int64_t buffered_total_ms, buffered_n; /* published to stats once per pump */
    bool closing;
    atomic_int flush_req; /* loop reads: a flush asked for "send now" */
    kn__krec_t *krec_free;
    struct kn__intern_s *interned;
    /*
     * Compression contexts with their output buffers, lent to whichever
     * thread compresses (record scope: the caller of put; aggregate scope:
     * libuv's thread pool), never the loop. Under zlock.
     */
    pthread_mutex_t zlock;
    struct kn__zslot_s *zfree;
    int zcompressing; /* loop only: aggregates being compressed on the thread pool */

    kn__pstats_t stats;
    kn__metrics_t *metrics; /* NULL: metrics off (producer_metrics.c) */
};

/* producer.c */
/* A compression context and its output buffer, lent by kn__zslot_get (any thread). */
typedef struct kn__zslot_s {
    struct kn__zslot_s *next;
    kn__zctx_t *z;
    kn_buf_t out;
} kn__zslot_t;
/* NULL when out of memory. The slot goes back with kn__zslot_put (its buffer reset). */
kn__zslot_t *kn__zslot_get(kn_producer_t *p);
void kn__zslot_put(kn_producer_t *p, kn__zslot_t *zs);

/* producer_metrics.c: the KPL's metrics (ids index its table). */
enum {
    KN__PM_USER_RECORDS_RECEIVED,
    KN__PM_USER_RECORDS_PENDING,
    KN__PM_USER_RECORDS_PUT,
    KN__PM_USER_RECORDS_DATA_PUT,
    KN__PM_USER_RECORD_EXPIRED,
    KN__PM_BUFFERING_TIME,
    KN__PM_RETRIES_PER_RECORD,
    KN__PM_KINESIS_RECORDS_PUT,
    KN__PM_KINESIS_RECORDS_DATA_PUT,
    KN__PM_ERRORS_BY_CODE,
    KN__PM_ALL_ERRORS,
    KN__PM_REQUEST_TIME,
    KN__PM_USER_RECORDS_PER_KINESIS_RECORD,
    KN__PM_KINESIS_RECORDS_PER_REQUEST,
    KN__PM_USER_RECORDS_PER_REQUEST,
    KN__PM__COUNT
};
/* Starts p->metrics from p->conf (stays NULL when off). */
kn_err_t kn__pm_start(kn_producer_t *p, kn_error_t *err);
/* Loop thread, a PutRecords answer, before its entries are handled: fail is the whole call's error or NULL. */
void kn__pm_answer(kn_producer_t *p, kn__pstream_t *s, kn__krec_t *const *krecs, size_t n,
                   const kn_error_t *fail, const kn__put_result_entry_t *entries, int64_t request_ms);
/* Serving thread: one served result into b (committed by the caller). */
void kn__pm_served(kn_producer_t *p, kn__mbatch_t *b, const kn__prec_t *r);

/* results.c: the result queue and serving. */
int kn__results_init(kn_producer_t *p);
void kn__results_fini(kn_producer_t *p);
/* Loop thread: hands a list of finished records to the result queue (one lock). */
void kn__results_push(kn_producer_t *p, kn__plist_t *l);
/* Serves waiting results on this thread, waiting up to timeout_ms for the first; returns the count. */
int kn__results_serve(kn_producer_t *p, int timeout_ms);
void kn__prec_free(kn__prec_t *r);
/* Records the outcome into r (loop thread). errstr copied. */
void kn__prec_fail(kn__prec_t *r, kn_err_t err, const char *errstr);
int kn__prec_add_attempt(kn__prec_t *r, const kn__pattempt_t *a);
/*
 * An attempt from start to end (ms) with its outcome and interned error name:
 * recorded with the wait before it (from put, or the attempt before).
 */
void kn__prec_attempted(kn__prec_t *r, int64_t start, int64_t end, kn_err_t err, const char *name);
/* r landed at l (counted by the caller) as sub-record sub (0 when not aggregated). */
void kn__prec_succeed(kn__prec_t *r, kn__landing_t *l, uint64_t sub, bool aggregated);

/* pipeline.c: the loop side. */
/* Loop task: takes the hand-over queue. */
void kn__pipeline_take(kn_client_t *c, void *arg);
/* Loop task: send now (flush). */
void kn__pipeline_kick(kn_client_t *c, void *arg);
/* Loop task: destroy's cancel step; sets p->loop_closed (under lock) when all is done. */
void kn__pipeline_cancel(kn_client_t *c, void *arg);
/* Interned error names (loop thread): at most KN__PINTERN_MAX, cut at KN__PINTERN_NAME_MAX bytes. */
#define KN__PINTERN_MAX 64
#define KN__PINTERN_NAME_MAX 128
#define KN__PINTERN_OTHER "OtherError"
const char *kn__pintern(kn_producer_t *p, const char *name);
void kn__pintern_free(kn_producer_t *p);

/*
 * Bytes a record counts toward producer.buffer.max.bytes: its data and keys
 * plus its bookkeeping, so that the bound holds for memory, not just payload.
 */
static inline int64_t kn__prec_mem(const kn__prec_t *r)
{
    return (int64_t)(sizeof(*r) + r->key_len + r->ehk_len + r->data_len);
}

/* List helpers (loop thread). wire bytes = data + partition key. */
static inline size_t kn__prec_wire(const kn__prec_t *r) { return r->data_len + r->key_len; }
static inline void kn__pl_push(kn__plist_t *l, kn__prec_t *r)
{
    r->next = NULL;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->count++;
    l->bytes += kn__prec_wire(r);
}
static inline kn__prec_t *kn__pl_pop(kn__plist_t *l)
{
    kn__prec_t *r = l->head;
    if (!r)
        return NULL;
    l->head = r->next;
    if (!l->head)
        l->tail = NULL;
    l->count--;
    l->bytes -= kn__prec_wire(r);
    r->next = NULL;
    return r;
}
static inline void kn__pl_push_front(kn__plist_t *l, kn__prec_t *r)
{
    r->next = l->head;
    l->head = r;
    if (!l->tail)
        l->tail = r;
    l->count++;
    l->bytes += kn__prec_wire(r);
}
/* Appends b to a; b ends empty. */
static inline void kn__pl_concat(kn__plist_t *a, kn__plist_t *b)
{
    if (!b->head)
        return;
    if (a->tail)
        a->tail->next = b->head;
    else
        a->head = b->head;
    a->tail = b->tail;
    a->count += b->count;
    a->bytes += b->bytes;
    b->head = b->tail = NULL;
    b->count = b->bytes = 0;
}

/* pipeline.c, shared with send.c (loop thread). */
void kn__pipeline_pump(kn_producer_t *p);
/* Routes a record to its shard's queue (or the stream's waiting list). */
void kn__pipeline_route(kn_producer_t *p, kn__pstream_t *s, kn__prec_t *r);
void kn__krec_release(kn_producer_t *p, kn__krec_t *k);
/* After a request ends: completes destroy's close once nothing is in flight. */
void kn__pipeline_maybe_close(kn_producer_t *p);

/* send.c (loop thread). */
/* Builds and sends one PutRecords request from the stream's ready list. */
void kn__send_request(kn_producer_t *p, kn__pstream_t *s, int64_t now);
/* Fails r (into done), or puts it on the stream's retry list after a backoff. */
void kn__retry_or_fail(kn_producer_t *p, kn__pstream_t *s, kn__prec_t *r, kn__pshard_t *sh,
                       kn_err_t code, const char *msg, int64_t backoff_ms, kn__plist_t *done,
                       int64_t now);
/* Decides the successes that landed on an unexpected shard, with map (may be NULL). */
void kn__resolve_mismatches(kn_producer_t *p, kn__pstream_t *s, const kn__shard_map_t *map,
                            kn__plist_t *done, int64_t now);

/* ratelimit.c */
void kn__bucket_init(kn__bucket_t *b, double rate_percent, int64_t now);
/* Refills; true if the shard may send now. */
bool kn__bucket_ready(kn__bucket_t *b, double rate_percent, int64_t now);
void kn__bucket_take(kn__bucket_t *b, size_t bytes);
void kn__bucket_throttled(kn__bucket_t *b, int64_t now);
/* ms until the bucket is ready again (>= 1). */
int64_t kn__bucket_wait_ms(const kn__bucket_t *b, double rate_percent);

#endif
