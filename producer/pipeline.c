/*
 * The producer's loop side: taking records from the hand-over queue, the
 * per-stream shard maps (a record waits until its stream's first map
 * arrives), per-shard queues and aggregation, the collection of Kinesis
 * records into PutRecords requests driven by buffered-time deadlines with
 * one uv timer, the rate limit, and destroy's cancel step. Everything here
 * runs on the client's loop thread; sending and responses are in send.c.
 *
 * When a shard's records are turned into Kinesis records: when the oldest
 * is due (producer.record.max.buffered.ms), when a flush asks, or when the
 * shard holds a full aggregate's worth (then the aggregate waits in the
 * stream's ready list until a request fills up or its oldest record is
 * due). Without aggregation every record becomes a Kinesis record at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "md5.h"
#include "producer_int.h"

typedef struct kn__intern_s {
    struct kn__intern_s *next;
    char name[];
} intern_t;

/*
 * Error names come from the service, so the set is bounded: at most
 * KN__PINTERN_MAX names of at most KN__PINTERN_NAME_MAX bytes are kept; a
 * server that makes up new names for ever gets KN__PINTERN_OTHER for the rest.
 */
const char *kn__pintern(kn_producer_t *p, const char *name)
{
    if (!name || !*name)
        return "";
    size_t n = strnlen(name, KN__PINTERN_NAME_MAX);
    int count = 0;
    for (intern_t *i = p->interned; i; i = i->next, count++)
        if (strncmp(i->name, name, n) == 0 && i->name[n] == '\0')
            return i->name;
    if (count >= KN__PINTERN_MAX)
        return KN__PINTERN_OTHER;
    intern_t *i = malloc(sizeof(*i) + n + 1);
    if (!i)
        return "";
    memcpy(i->name, name, n);
    i->name[n] = '\0';
    i->next = p->interned;
    p->interned = i;
    return i->name;
}

void kn__pintern_free(kn_producer_t *p)
{
    intern_t *i = p->interned;
    while (i) {
        intern_t *next = i->next;
        free(i);
        i = next;
    }
    p->interned = NULL;
}

/* ------------------------------------------------------------ krecs */

static kn__krec_t *krec_new(kn_producer_t *p)
{
    kn__krec_t *k = p->krec_free;
    if (k) {
        p->krec_free = k->next;
    } else {
        k = malloc(sizeof(*k));
        if (!k)
            return NULL;
    }
    memset(k, 0, sizeof(*k));
    return k;
}

void kn__krec_release(kn_producer_t *p, kn__krec_t *k)
{
    kn__agg_out_free(&k->out);
    k->next = p->krec_free;
    p->krec_free = k;
}

/* ------------------------------------------------------------ streams and maps */

static void fail_list(kn_producer_t *p, kn__plist_t *l, kn_err_t code, const char *msg, kn__plist_t *done)
{
    kn__prec_t *r;
    (void)p;
    while ((r = kn__pl_pop(l))) {
        kn__prec_fail(r, code, msg);
        kn__pl_push(done, r);
    }
}

static kn__pshard_t *pshard_new(const char *id, double rate_percent, int64_t now)
{
    kn__pshard_t *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return NULL;
    sh->shard_id = strdup(id);
    if (!sh->shard_id) {
        free(sh);
        return NULL;
    }
    kn__bucket_init(&sh->bucket, rate_percent, now);
    return sh;
}

static void pshard_free(kn__pshard_t *sh)
{
    if (!sh)
        return;
    free(sh->shard_id);
    free(sh);
}

void kn__pipeline_route(kn_producer_t *p, kn__pstream_t *s, kn__prec_t *r)
{
    if (!s->map) {
        kn__pl_push(&s->waiting, r);
        if (s->refresher && !kn__shard_refresher_busy(s->refresher))
            kn__shard_refresher_request(s->refresher);
        return;
    }
    (void)p;
    const kn__shard_entry_t *e = kn__shard_map_lookup(s->map, r->hash);
    r->shard_index = e->index;
    kn__pl_push(&s->shards[e->index]->queue, r);
}

/* Swaps in a new map: shards kept by id, records re-routed in their order. */
static void install_map(kn_producer_t *p, kn__pstream_t *s, kn__shard_map_t *map, kn__plist_t *done,
                        int64_t now)
{
    size_t n = kn__shard_map_count(map);
    kn__pshard_t **ns = calloc(n ? n : 1, sizeof(*ns));
    if (!ns) {
        kn__shard_map_unref(map);
        return; /* keep the old map; a later refresh retries */
    }
    /* First allocate the shards that are new, so that a failure changes nothing. */
    for (size_t i = 0; i < n; i++) {
        const kn__shard_entry_t *e = kn__shard_map_at(map, i);
        bool known = false;
        for (size_t j = 0; j < s->nshards && !known; j++)
            known = s->shards[j] && strcmp(s->shards[j]->shard_id, e->shard_id) == 0;
        if (!known && !(ns[i] = pshard_new(e->shard_id, p->rate_percent, now))) {
            for (size_t j = 0; j < i; j++)
                pshard_free(ns[j]);
            free(ns);
            kn__shard_map_unref(map);
            return; /* keep the old map; a later refresh retries */
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (ns[i])
            continue;
        const kn__shard_entry_t *e = kn__shard_map_at(map, i);
        for (size_t j = 0; j < s->nshards; j++) {
            if (s->shards[j] && strcmp(s->shards[j]->shard_id, e->shard_id) == 0) {
                ns[i] = s->shards[j];
                s->shards[j] = NULL;
                break;
            }
        }
    }
    /* Collect every queued record in old shard order (a key's records share one old shard). */
    kn__plist_t all = {0};
    for (size_t i = 0; i < n; i++)
        kn__pl_concat(&all, &ns[i]->queue);
    for (size_t j = 0; j < s->nshards; j++) {
        kn__pshard_t *old = s->shards[j];
        if (!old)
            continue;
        kn__pl_concat(&all, &old->queue);
        old->retired = true;
        old->next_retired = s->retired;
        s->retired = old;
    }
    kn__pl_concat(&all, &s->waiting);
    free(s->shards);
    s->shards = ns;
    s->nshards = n;
    kn__shard_map_unref(s->map);
    s->map = map;
    kn__prec_t *r;
    while ((r = kn__pl_pop(&all)))
        kn__pipeline_route(p, s, r);
    kn__resolve_mismatches(p, s, map, done, now);
}

static bool retriable(const kn_error_t *e)
{
    return e->retriable || e->cls == KN__EC_RETRY || e->code == KN_ERR_TRANSPORT ||
           e->code == KN_ERR_TIMEOUT || e->code == KN_ERR_THROTTLED || e->code == KN_ERR_NOMEM ||
           e->code == KN_ERR_CREDENTIALS;
}

static void on_map(kn__shard_map_t *map, const kn_error_t *err, void *opaque)
{
    kn__pstream_t *s = opaque;
    kn_producer_t *p = s->producer;
    kn__plist_t done = {0};
    int64_t now = kn__mono_ms();
    if (p->closing) {
        kn__shard_map_unref(map);
        return;
    }
    if (map) {
        install_map(p, s, map, &done, now);
    } else {
        snprintf(s->last_err, sizeof(s->last_err), "%s", err ? err->message : "shard map refresh failed");
        KN_LOG(kn__client_log(p->client), KN_LOG_WARN, KN_DBG_PRODUCER, "stream %s: shard map: %s", s->name,
               s->last_err);
        if (err && retriable(err)) {
            if (!s->map || s->mismatches)
                kn__shard_refresher_request(s->refresher);
        } else {
            if (!s->map) {
                char msg[1200];
                snprintf(msg, sizeof(msg), "stream %s: %s", s->name, s->last_err);
                fail_list(p, &s->waiting, err ? err->code : KN_ERR_SERVICE, msg, &done);
            }
            kn__resolve_mismatches(p, s, s->map, &done, now);
        }
    }
    kn__results_push(p, &done);
    kn__pipeline_pump(p);
}

static void start_stream(kn_producer_t *p, kn__pstream_t *s)
{
    s->started = true;
    s->producer = p;
    s->loop_next = p->loop_streams;
    p->loop_streams = s;
    s->retry_min_ms = INT64_MAX;
    s->ready_min_deadline = INT64_MAX;
    s->refresher = kn__shard_refresher_new(p->client, &s->ref, on_map, s);
    if (s->refresher)
        kn__shard_refresher_request(s->refresher);
    else
        snprintf(s->last_err, sizeof(s->last_err), "out of memory creating the shard map refresher");
}

/* ------------------------------------------------------------ timer */

static void on_timer(uv_timer_t *t) { kn__pipeline_pump(t->data); }

static void ensure_timer(kn_producer_t *p)
{
    if (p->timer_init)
        return;
    uv_timer_init(kn__client_loop(p->client), &p->timer);
    p->timer.data = p;
    p->timer_init = true;
}

static void schedule(kn_producer_t *p, int64_t wake, int64_t now)
{
    if (wake == INT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    int64_t delay = wake - now;
    if (delay < 1)
        delay = 1;
    uv_timer_start(&p->timer, on_timer, (uint64_t)delay, 0);
}

/* ------------------------------------------------------------ hand-over */

/*
 * The hash keys of the next records of a taken list (up to 64) that were put
 * with a partition key only: their MD5s side by side (kn__md5_many, 16 at a
 * time with AVX-512, about a third of the cost of one after another for
 * short keys). Returns the record after the last one looked at.
 */
static kn__prec_t *hash_keys(kn__prec_t *list)
{
    enum { GROUP = 64 };
    const void *key[GROUP];
    size_t len[GROUP];
    unsigned char digest[GROUP][16];
    kn__prec_t *who[GROUP];
    size_t m = 0, seen = 0;
    kn__prec_t *r = list;
    for (; r && seen < GROUP; r = r->next, seen++) {
        if (r->hash_pending) {
            who[m] = r;
            key[m] = r->key;
            len[m] = r->key_len;
            m++;
        }
    }
    kn__md5_many(m, key, len, digest);
    for (size_t k = 0; k < m; k++) {
        who[k]->hash = kn__hashkey_from_digest(digest[k]);
        who[k]->hash_pending = false;
    }
    return r;
}

void kn__pipeline_take(kn_client_t *c, void *arg)
{
    kn_producer_t *p = arg;
    (void)c;
    pthread_mutex_lock(&p->lock);
    kn__prec_t *list = p->in_head;
    p->in_head = p->in_tail = NULL;
    p->in_posted = false;
    pthread_mutex_unlock(&p->lock);
    if (p->closing || p->cancelled) {
        kn__plist_t done = {0};
        while (list) {
            kn__prec_t *next = list->next;
            kn__prec_fail(list, KN_ERR_DESTROYED, "the producer was destroyed before the record was sent");
            kn__pl_push(&done, list);
            list = next;
        }
        kn__results_push(p, &done);
        return;
    }
    ensure_timer(p);
    kn__mbatch_t mb;
    kn__mbatch_init(&mb, p->metrics);
    while (list) {
        kn__prec_t *end = hash_keys(list);
        while (list != end) {
            kn__prec_t *next = list->next;
            kn__pstream_t *s = list->stream;
            if (p->metrics)
                kn__mbatch_add(&mb, KN__PM_USER_RECORDS_RECEIVED, s->name, NULL, NULL, 1, 1);
            if (!s->started)
                start_stream(p, s);
            kn__pipeline_route(p, s, list);
            list = next;
        }
    }
    kn__mbatch_commit(&mb);
    kn__pipeline_pump(p);
}

void kn__pipeline_kick(kn_client_t *c, void *arg)
{
    kn_producer_t *p = arg;
    (void)c;
    if (p->closing || p->cancelled)
        return;
    ensure_timer(p);
    kn__pipeline_pump(p);
}

/* ------------------------------------------------------------ collection */

static void note_buffered(kn_producer_t *p, kn__prec_t *r, int64_t now)
{
    if (!r->sent) {
        r->sent = true;
        p->buffered_total_ms += now - r->put_ms;
        p->buffered_n++;
    }
}

/*
 * Adds r to the aggregate if it fits in max_bytes; a record compressed at put
 * (record scope) goes in with its content-encoding tag. KN_ERR_TOO_LARGE when
 * it does not fit.
 */
static kn_err_t agg_try(kn_producer_t *p, const kn__prec_t *r, size_t max_bytes, size_t max_count,
                        kn_error_t *e)
{
    kn__agg_in_t in = {r->key, r->key_len, r->ehk, r->ehk_len, r->data, r->data_len, NULL, 0};
    kn__agg_tag_t tag;
    if (r->zcodec != KN__CODEC_NONE) {
        kn__rc_record_tag(r->zcodec, &tag);
        in.tags = &tag;
        in.n_tags = 1;
    }
    return kn__agg_builder_try_add(p->agg, &in, max_bytes, max_count, e);
}

/*
 * Aggregate scope: the Kinesis record's data becomes a frame when that is
 * smaller. Runs on libuv's thread pool (compress_work below), not the loop:
 * compressing an aggregate takes about a millisecond, which every reader and
 * producer sharing the client would otherwise wait for.
 */
typedef struct zjob_s {
    uv_work_t work;
    kn_producer_t *p;
    kn__pstream_t *s;
    kn__pshard_t *sh;
    kn__krec_t *k;
    kn__zslot_t *zs;
    bool wrapped;
} zjob_t;

static void compress_work(uv_work_t *w)
{
    zjob_t *j = w->data;
    kn__krec_t *k = j->k;
    const void *data = k->aggregated ? (const void *)k->out.data.data : k->recs.head->data;
    size_t len = k->aggregated ? k->out.data.len : k->recs.head->data_len;
    kn_error_t e;
    e.code = KN_ERR_OK;
    j->wrapped = false;
    if (kn__rc_wrap(j->zs->z, j->p->codec, j->p->zlevel, data, len, true, &j->zs->out, &j->wrapped, &e) !=
        KN_ERR_OK)
        j->wrapped = false; /* sent as it is */
}

static void ready_push(kn__pstream_t *s, kn__krec_t *k);

/* Loop thread: the compressed Kinesis record joins the ready list, as if built just now. */
static void compress_after(uv_work_t *w, int status)
{
    (void)status;
    zjob_t *j = w->data;
    kn_producer_t *p = j->p;
    kn__krec_t *k = j->k;
    kn__pshard_t *sh = j->sh;
    p->zcompressing--;
    sh->compressing = false;
    if (j->wrapped) {
        size_t key_len = k->aggregated ? k->out.partition_key.len : k->recs.head->key_len;
        kn__buf_free(&k->out.data);
        k->out.data = j->zs->out; /* the frame moves into the Kinesis record */
        memset(&j->zs->out, 0, sizeof(j->zs->out));
        k->wrapped = !k->aggregated;
        k->wire_bytes = k->out.data.len + key_len;
    }
    kn__zslot_put(p, j->zs);
    kn__pstream_t *s = j->s;
    free(j);
    if (p->cancelled) {
        kn__plist_t done = {0};
        kn__prec_t *r;
        while ((r = kn__pl_pop(&k->recs))) {
            kn__prec_fail(r, KN_ERR_DESTROYED, "the producer was destroyed before the record was sent");
            kn__pl_push(&done, r);
        }
        kn__krec_release(p, k);
        if (p->strict)
            sh->in_ready = false;
        kn__results_push(p, &done);
        kn__pipeline_maybe_close(p);
        return;
    }
    kn__bucket_take(&sh->bucket, k->wire_bytes);
    ready_push(s, k);
    kn__pipeline_pump(p);
}

/* Whether k must be compressed before it is ready (aggregate scope). */
static bool wants_wrap(const kn_producer_t *p)
{
    return p->codec != KN__CODEC_NONE && p->zscope == KN__RC_SCOPE_AGGREGATE;
}

/*
 * Starts compressing k on the thread pool; the shard builds nothing more
 * until it is done (order and the rate limit stay per shard). False when it
 * cannot start: k is then sent as it is.
 */
static bool compress_start(kn_producer_t *p, kn__pstream_t *s, kn__pshard_t *sh, kn__krec_t *k)
{
    zjob_t *j = calloc(1, sizeof(*j));
    kn__zslot_t *zs = j ? kn__zslot_get(p) : NULL;
    if (!zs) {
        free(j);
        return false;
    }
    j->work.data = j;
    j->p = p;
    j->s = s;
    j->sh = sh;
    j->k = k;
    j->zs = zs;
    if (uv_queue_work(kn__client_loop(p->client), &j->work, compress_work, compress_after) != 0) {
        kn__zslot_put(p, zs);
        free(j);
        return false;
    }
    sh->compressing = true;
    p->zcompressing++;
    return true;
}

/* Turns the shard's head records into one Kinesis record (an aggregate, or one record raw). */
static kn__krec_t *build_krec(kn_producer_t *p, kn__pshard_t *sh, kn__plist_t *done, int64_t now)
{
    kn__krec_t *k = krec_new(p);
    if (!k)
        return NULL;
    k->shard = sh;
    k->min_deadline = INT64_MAX;
    /* Record-scope compression tags records, and tags only exist inside an aggregate. */
    bool force = p->codec != KN__CODEC_NONE && p->zscope == KN__RC_SCOPE_RECORD;
    /*
     * A lone record whose data starts with the KPL magic goes out as a
     * one-record aggregate: deaggregators that look only at the magic
     * (aws-kinesis-agg) would reject it raw, where the KCL passes it through.
     */
    const kn__prec_t *head = sh->queue.head;
    if (head && head->data_len >= KN__AGG_MAGIC_LEN && memcmp(head->data, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0)
        force = true;
    if (p->agg_enabled && (sh->queue.count > 1 || force)) {
        if (!p->agg) {
            if (!(p->agg = kn__agg_builder_new())) {
                kn__krec_release(p, k);
                return NULL;
            }
            /*
             * The aggregates' MD5s are computed together when a request is
             * built (send.c), many at once and off this thread, unless the
             * aggregate is compressed first (aggregate scope), which needs it.
             */
            kn__agg_builder_defer_digest(p->agg, !wants_wrap(p));
        }
        kn__agg_builder_reset(p->agg);
        size_t max_count = p->agg_max_count >= 4294967295LL ? 0 : (size_t)p->agg_max_count;
        kn__prec_t *r;
        kn_error_t e; /* written only on a real error */
        e.code = KN_ERR_OK;
        e.message[0] = '\0';
        while ((r = sh->queue.head)) {
            if (r->next)
                __builtin_prefetch(r->next);
            kn_err_t rc = agg_try(p, r, (size_t)p->agg_max_bytes, max_count, &e);
            if (rc == KN_ERR_TOO_LARGE && force && k->recs.count == 0) {
                /* Too big for an aggregate of producer.aggregation.max.size: alone, up to the record limit. */
                size_t lim = (size_t)p->limits.record_max_bytes - strlen(p->outer_key);
                rc = agg_try(p, r, lim, 1, &e);
            }
            if (rc == KN_ERR_TOO_LARGE)
                break;
            kn__pl_pop(&sh->queue);
            if (rc != KN_ERR_OK) {
                kn__prec_fail(r, rc, e.message);
                kn__pl_push(done, r);
                continue;
            }
            kn__pl_push(&k->recs, r);
            if (r->deadline_ms < k->min_deadline)
                k->min_deadline = r->deadline_ms;
            note_buffered(p, r, now);
        }
        if (k->recs.count >= 2 || (force && k->recs.count == 1)) {
            kn__agg_out_t out = KN__AGG_OUT_INIT;
            if (kn__agg_builder_finish(p->agg, p->outer_key, force, &out, &e) == KN_ERR_OK) {
                k->out = out;
                k->aggregated = true;
                k->wire_bytes = out.data.len + out.partition_key.len;
                return k;
            }
            kn__agg_out_free(&out);
            /* Out of memory: put them back and send the first alone. */
            kn__plist_t back = k->recs;
            memset(&k->recs, 0, sizeof(k->recs));
            kn__pl_concat(&back, &sh->queue);
            sh->queue = back;
        } else if (k->recs.count == 1) {
            kn__prec_t *one = kn__pl_pop(&k->recs);
            kn__pl_push_front(&sh->queue, one);
        }
        k->min_deadline = INT64_MAX;
    }
    kn__prec_t *r = kn__pl_pop(&sh->queue);
    if (!r) {
        kn__krec_release(p, k);
        return NULL;
    }
    kn__pl_push(&k->recs, r);
    k->min_deadline = r->deadline_ms;
    k->wire_bytes = kn__prec_wire(r);
    note_buffered(p, r, now);
    return k;
}

static void ready_push(kn__pstream_t *s, kn__krec_t *k)
{
    k->next = NULL;
    if (s->ready_tail)
        s->ready_tail->next = k;
    else
        s->ready_head = k;
    s->ready_tail = k;
    s->ready_count++;
    s->ready_bytes += k->wire_bytes;
    if (k->min_deadline < s->ready_min_deadline)
        s->ready_min_deadline = k->min_deadline;
}

static const char *last_error_name(const kn__prec_t *r)
{
    if (r->n_attempts == 0)
        return NULL;
    const kn__pattempt_t *a = r->n_attempts == 1 ? &r->attempt0 : &r->more[r->n_attempts - 2];
    return a->name && *a->name ? a->name : kn_err2name(a->err);
}

static void expire(kn_producer_t *p, kn__pstream_t *s, kn__prec_t *r, kn__plist_t *done)
{
    char msg[1200];
    const char *last = last_error_name(r);
    if (last)
        snprintf(msg, sizeof(msg),
                 "record not put within producer.record.ttl.ms=%" PRId64 " after %d attempts; last "
                 "error: %s",
                 p->ttl_ms, r->n_attempts, last);
    else if (!s->map)
        snprintf(msg, sizeof(msg),
                 "record not put within producer.record.ttl.ms=%" PRId64 ": no shard map for stream "
                 "%s yet%s%s",
                 p->ttl_ms, s->name, *s->last_err ? "; last error: " : "", s->last_err);
    else
        snprintf(msg, sizeof(msg),
                 "record not put within producer.record.ttl.ms=%" PRId64 " (never sent: rate limit "
                 "or requests in flight)",
                 p->ttl_ms);
    kn__prec_fail(r, KN_ERR_TIMEOUT, msg);
    kn__pl_push(done, r);
}

/* Moves records whose backoff is over back to the head of their shard's queue, in order. */
static void requeue_retries(kn_producer_t *p, kn__pstream_t *s, int64_t now)
{
    kn__plist_t keep = {0}, due = {0};
    kn__prec_t *r;
    s->retry_min_ms = INT64_MAX;
    while ((r = kn__pl_pop(&s->retry))) {
        if (r->not_before_ms <= now) {
            if (r->wait_shard)
                r->wait_shard->retry_wait--;
            r->wait_shard = NULL;
            kn__pl_push(&due, r);
        } else {
            if (r->not_before_ms < s->retry_min_ms)
                s->retry_min_ms = r->not_before_ms;
            kn__pl_push(&keep, r);
        }
    }
    s->retry = keep;
    /* Reverse, then push each to the front of its queue: the original order is kept. */
    kn__prec_t *rev = NULL;
    while ((r = kn__pl_pop(&due))) {
        r->next = rev;
        rev = r;
    }
    while (rev) {
        kn__prec_t *next = rev->next;
        const kn__shard_entry_t *e = kn__shard_map_lookup(s->map, rev->hash);
        rev->shard_index = e->index;
        kn__pl_push_front(&s->shards[e->index]->queue, rev);
        rev = next;
    }
    (void)p;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

static int64_t pump_stream(kn_producer_t *p, kn__pstream_t *s, bool flush_all, int64_t now,
                           kn__plist_t *done)
{
    int64_t wake = INT64_MAX;
    while (s->waiting.head && s->waiting.head->expire_ms <= now)
        expire(p, s, kn__pl_pop(&s->waiting), done);
    if (s->waiting.head)
        wake = min64(wake, s->waiting.head->expire_ms);
    if (!s->map)
        return wake;
    if (s->retry.head && s->retry_min_ms <= now)
        requeue_retries(p, s, now);
    if (s->retry.head)
        wake = min64(wake, s->retry_min_ms);

    for (size_t i = 0; i < s->nshards; i++) {
        kn__pshard_t *sh = s->shards[i];
        while (sh->queue.head && sh->queue.head->expire_ms <= now)
            expire(p, s, kn__pl_pop(&sh->queue), done);
        while (sh->queue.head) {
            if (sh->compressing || (p->strict && (sh->in_ready || sh->retry_wait > 0)))
                break;
            kn__prec_t *h = sh->queue.head;
            bool full = !p->agg_enabled || sh->queue.bytes >= (size_t)p->agg_max_bytes ||
                        (int64_t)sh->queue.count >= p->agg_max_count;
            if (!(flush_all || full || h->deadline_ms <= now)) {
                wake = min64(wake, h->deadline_ms);
                break;
            }
            if ((int64_t)s->ready_count >= 2 * p->limits.put_max_records ||
                (int64_t)s->ready_bytes >= 2 * p->limits.put_max_bytes)
                break; /* two requests' worth ready: a response pumps again (aggregates copy records) */
            if (!kn__bucket_ready(&sh->bucket, p->rate_percent, now)) {
                wake = min64(wake, now + kn__bucket_wait_ms(&sh->bucket, p->rate_percent));
                break;
            }
            kn__krec_t *k = build_krec(p, sh, done, now);
            if (!k)
                break;
            if (p->strict)
                sh->in_ready = true;
            if (wants_wrap(p) && compress_start(p, s, sh, k))
                break; /* ready (and its tokens taken) once compressed */
            kn__bucket_take(&sh->bucket, k->wire_bytes);
            ready_push(s, k);
            if (p->strict)
                break;
        }
        if (sh->queue.head && sh->queue.head->expire_ms > now)
            wake = min64(wake, sh->queue.head->expire_ms);
    }

    while (s->ready_head && p->inflight < p->max_inflight &&
           p->inflight_bytes < p->inflight_bytes_max &&
           (flush_all || (int64_t)s->ready_count >= p->limits.put_max_records ||
            (int64_t)s->ready_bytes >= p->limits.put_max_bytes || s->ready_min_deadline <= now))
        kn__send_request(p, s, now);
    if (s->ready_head && p->inflight < p->max_inflight && p->inflight_bytes < p->inflight_bytes_max)
        wake = min64(wake, s->ready_min_deadline);
    return wake;
}

void kn__pipeline_pump(kn_producer_t *p)
{
    if (p->closing || p->cancelled)
        return;
    int64_t now = kn__mono_ms();
    bool flush_all = atomic_load(&p->flush_req) > 0;
    int64_t wake = INT64_MAX;
    kn__plist_t done = {0};
    for (kn__pstream_t *s = p->loop_streams; s; s = s->loop_next)
        wake = min64(wake, pump_stream(p, s, flush_all, now, &done));
    kn__results_push(p, &done);
    if (p->buffered_n) {
        atomic_fetch_add_explicit(&p->stats.buffering_ms_total, p->buffered_total_ms, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->stats.buffering_count, p->buffered_n, memory_order_relaxed);
        p->buffered_total_ms = p->buffered_n = 0;
    }
    if (p->timer_init)
        schedule(p, wake, now);
}

/* ------------------------------------------------------------ destroy */

static void on_timer_closed(uv_handle_t *h)
{
    kn_producer_t *p = h->data;
    /*
     * Destroy's thread waits for this under p->lock, or for results under
     * rlock: both hear of it. p is not touched after p->lock is let go (destroy
     * may free it then). This is the one place the two locks nest, p->lock
     * first; nothing takes p->lock while holding rlock.
     */
    pthread_mutex_lock(&p->lock);
    p->loop_closed = true;
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_lock(&p->rlock);
    pthread_cond_broadcast(&p->rcond);
    pthread_mutex_unlock(&p->rlock);
    pthread_mutex_unlock(&p->lock);
}

static void finish_close(kn_producer_t *p)
{
    p->closing = true;
    kn__plist_t done = {0};
    for (kn__pstream_t *s = p->loop_streams; s; s = s->loop_next) {
        /*
         * Answers that came after the cancel step may have parked aggregates
         * that landed on an unexpected shard; no new map will come for them:
         * decide them with the map we have (records it does not show inside
         * the shard they landed on fail as destroyed).
         */
        kn__resolve_mismatches(p, s, s->map, &done, kn__mono_ms());
        if (s->refresher)
            kn__shard_refresher_close(s->refresher);
        s->refresher = NULL;
        kn__shard_map_unref(s->map);
        s->map = NULL;
        for (size_t i = 0; i < s->nshards; i++)
            pshard_free(s->shards[i]);
        free(s->shards);
        s->shards = NULL;
        s->nshards = 0;
        while (s->retired) {
            kn__pshard_t *next = s->retired->next_retired;
            pshard_free(s->retired);
            s->retired = next;
        }
    }
    while (p->krec_free) {
        kn__krec_t *next = p->krec_free->next;
        free(p->krec_free);
        p->krec_free = next;
    }
    kn__results_push(p, &done);
    kn__agg_builder_destroy(p->agg);
    p->agg = NULL;
    if (p->timer_init) {
        uv_timer_stop(&p->timer);
        uv_close((uv_handle_t *)&p->timer, on_timer_closed);
    } else {
        on_timer_closed((uv_handle_t *)&(uv_timer_t){.data = p});
    }
}

void kn__pipeline_maybe_close(kn_producer_t *p)
{
    if (p->closing_wait && !p->closing && p->inflight == 0 && p->zcompressing == 0)
        finish_close(p);
}

void kn__pipeline_cancel(kn_client_t *c, void *arg)
{
    kn_producer_t *p = arg;
    (void)c;
    static const char gone[] = "the producer was destroyed before the record was put "
                               "(producer.shutdown.timeout.ms passed)";
    kn__plist_t done = {0};
    p->cancelled = true;
    pthread_mutex_lock(&p->lock);
    kn__prec_t *list = p->in_head;
    p->in_head = p->in_tail = NULL;
    p->in_posted = false;
    pthread_mutex_unlock(&p->lock);
    while (list) {
        kn__prec_t *next = list->next;
        kn__prec_fail(list, KN_ERR_DESTROYED, gone);
        kn__pl_push(&done, list);
        list = next;
    }
    for (kn__pstream_t *s = p->loop_streams; s; s = s->loop_next) {
        fail_list(p, &s->waiting, KN_ERR_DESTROYED, gone, &done);
        fail_list(p, &s->retry, KN_ERR_DESTROYED, gone, &done);
        for (size_t i = 0; i < s->nshards; i++)
            fail_list(p, &s->shards[i]->queue, KN_ERR_DESTROYED, gone, &done);
        while (s->ready_head) {
            kn__krec_t *k = s->ready_head;
            s->ready_head = k->next;
            fail_list(p, &k->recs, KN_ERR_DESTROYED, gone, &done);
            kn__krec_release(p, k);
        }
        s->ready_tail = NULL;
        s->ready_count = s->ready_bytes = 0;
        /* Landed in an aggregate on an unexpected shard, not yet checked: say so. */
        kn__resolve_mismatches(p, s, NULL, &done, kn__mono_ms());
    }
    kn__results_push(p, &done);
    p->closing_wait = true;
    kn__pipeline_maybe_close(p);
}
