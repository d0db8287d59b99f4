/*
 * Dispatch: the processor threads (consumer.processor.threads) and the
 * tenures they run. A tenure is an actor: it is in the run queue at most
 * once and runs on one thread at a time, one step per turn (a callback, an
 * event, or the next part of its end), so that a shard's callbacks never
 * overlap and many shards share a few threads fairly. It is queued when its
 * reader has something (the reader's notify, on the loop), when the loop asks
 * it to end (kn__tenure_leave), and after each step that did something; a
 * tenure waiting out a retry stays queued with the time it may run again.
 *
 * A tenure's life:
 *   its reader is made (from the lease's checkpoint: AT_SEQUENCE_NUMBER, or
 *   the position a never-checkpointed lease names) -> initialize ->
 *   process_records for each answer, in order (an error: the same batch again
 *   after a backoff of consumer.processor.retry.ms, doubling) -> one end:
 *     lost:      lease_lost (no checkpoint possible);
 *     shard end: shard_ended, then SHARD_END is checkpointed (automatic, or
 *                the processor must, consumer.shard.end.checkpoint);
 *     shutdown, handoff, read error: shutdown_requested, then (with
 *                consumer.checkpoint.on.shutdown) a checkpoint after the last
 *                batch processed OK if the processor did not make one;
 *   -> close -> the reader is destroyed -> the loop lets the lease go.
 * Records of an answer that was not processed OK are never checkpointed by
 * the consumer.
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"

static __thread bool in_callback;

bool kn__dispatch_in_callback(void) { return in_callback; }

/* ------------------------------------------------------------ tenures */

static void tenure_free(kn__tenure_t *t)
{
    free(t->shard_id);
    free(t->shard.parent_shard_id);
    free(t->shard.adjacent_parent_shard_id);
    free(t->start_ck);
    free(t->ck_seq);
    free(t->last_seq);
    free(t->ok_seq);
    kn__child_shards_free(t->children, t->n_children);
    free(t);
}

void kn__tenure_unref(kn__tenure_t *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1)
        tenure_free(t);
}

/* Locked: puts t in the run queue unless it is there, running or finished. */
static void enqueue(kn_consumer_t *c, kn__tenure_t *t)
{
    if (t->queued || t->running || t->finished)
        return;
    t->queued = true;
    t->run_next = NULL;
    if (c->runq_tail)
        c->runq_tail->run_next = t;
    else
        c->runq_head = t;
    c->runq_tail = t;
    pthread_cond_signal(&c->run_cond);
}

static kn_err_t parse_hash(const char *s, kn__hashkey_t def, kn__hashkey_t *out)
{
    *out = def;
    if (s && kn__hashkey_parse(s, strlen(s), out) != 0)
        *out = def;
    return KN_ERR_OK;
}

kn__tenure_t *kn__tenure_new(kn_consumer_t *c, kn__held_t *h)
{
    const kn__lease_t *l = &h->view;
    kn__tenure_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    atomic_init(&t->refs, 2); /* the loop's (until it lets the lease go) and the dispatch's */
    t->c = c;
    t->held = h;
    t->shard_id = strdup(l->key);
    t->start_ck = strdup(l->checkpoint ? l->checkpoint : KN__CK_TRIM_HORIZON);
    t->ck_seq = strdup(t->start_ck ? t->start_ck : KN__CK_TRIM_HORIZON);
    t->start_sub = t->ck_sub = l->checkpoint_sub;
    if (l->n_parents > 0)
        t->shard.parent_shard_id = strdup(l->parents[0]);
    if (l->n_parents > 1)
        t->shard.adjacent_parent_shard_id = strdup(l->parents[1]);
    kn__hashkey_t lo = {0}, hi;
    memset(&hi, 0xff, sizeof(hi));
    parse_hash(l->start_hash, lo, &t->start_hash);
    parse_hash(l->end_hash, hi, &t->end_hash);
    if (!t->shard_id || !t->start_ck || !t->ck_seq || (l->n_parents > 0 && !t->shard.parent_shard_id) ||
        (l->n_parents > 1 && !t->shard.adjacent_parent_shard_id)) {
        tenure_free(t);
        return NULL;
    }
    t->shard.shard_id = t->shard_id;
    t->shard.start_hash = t->start_hash;
    t->shard.end_hash = t->end_hash;
    t->skipping = !kn__checkpoint_is_sentinel(t->start_ck);
    t->cp.t = t;
    pthread_mutex_lock(&c->lock);
    t->all_next = c->tenures;
    if (c->tenures)
        c->tenures->all_prev = t;
    c->tenures = t;
    c->n_tenures++;
    enqueue(c, t);
    pthread_mutex_unlock(&c->lock);
    return t;
}

void kn__tenure_leave(kn__tenure_t *t, kn__leave_t why)
{
    kn_consumer_t *c = t->c;
    pthread_mutex_lock(&c->lock);
    if (why == KN__LEAVE_LOST) {
        t->over = true;
        t->leave = KN__LEAVE_LOST;
    } else if (t->leave == KN__LEAVE_NONE) {
        t->leave = why;
    }
    t->not_before = 0;
    enqueue(c, t);
    pthread_mutex_unlock(&c->lock);
}

void kn__tenure_wake(kn__tenure_t *t)
{
    kn_consumer_t *c = t->c;
    pthread_mutex_lock(&c->lock);
    t->wake = true;
    enqueue(c, t);
    pthread_mutex_unlock(&c->lock);
}

static void reader_notify(void *opaque) { kn__tenure_wake(opaque); }

/* ------------------------------------------------------------ one step */

static void backoff(kn__tenure_t *t, const char *what, kn_err_t rc)
{
    kn_consumer_t *c = t->c;
    t->fails++;
    int shift = t->fails - 1 < 10 ? t->fails - 1 : 10;
    int64_t cap = 30 * c->retry_ms < 300000 ? 30 * c->retry_ms : 300000;
    int64_t delay = c->retry_ms << shift;
    if (delay > cap)
        delay = cap;
    kn__cstat_add(c, KN_CONSUMER_STAT_PROCESS_ERRORS, 1);
    if (c->max_retries > 0 && t->fails > c->max_retries && t->ending != KN__LEAVE_ERROR) {
        KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_CONSUMER,
               "consumer %s: shard %s: %s returned %s %d times in a row "
               "(consumer.processor.max.retries %d): letting the shard go",
               c->worker_id, t->shard_id, what, kn_err2name(rc), t->fails, c->max_retries);
        t->ending = KN__LEAVE_ERROR;
        t->end_called = false;
        t->fails = 0;
        return;
    }
    KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER,
           "consumer %s: shard %s: %s returned %s (%d in a row): called again in %lld ms",
           c->worker_id, t->shard_id, what, kn_err2name(rc), t->fails, (long long)delay);
    pthread_mutex_lock(&c->lock);
    t->not_before = kn__mono_ms() + delay;
    pthread_mutex_unlock(&c->lock);
}

static void make_reader(kn__tenure_t *t)
{
    kn_consumer_t *c = t->c;
    kn__iterator_pos_t pos = {0};
    const char *ck = t->start_ck;
    if (!strcmp(ck, KN__CK_LATEST)) {
        pos.type = KN__IT_LATEST;
    } else if (!strcmp(ck, KN__CK_AT_TIMESTAMP)) {
        pos.type = KN__IT_AT_TIMESTAMP;
        pos.timestamp_ms = c->initial_ts_ms;
    } else if (kn__checkpoint_is_sentinel(ck)) {
        pos.type = KN__IT_TRIM_HORIZON;
    } else {
        pos.type = KN__IT_AT_SEQUENCE_NUMBER;
        pos.sequence_number = ck;
    }
    kn_error_t e;
    kn__error_clear(&e);
    kn_reader_t *r = kn__reader_new_one(c->client, c->conf, c->stream, &t->shard, &pos, &c->budget,
                                        c->process_empty, reader_notify, t, &e);
    if (!r) {
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER, "consumer %s: shard %s: no reader: %s",
               c->worker_id, t->shard_id, e.message);
        t->ending = KN__LEAVE_ERROR;
        return;
    }
    pthread_mutex_lock(&c->lock);
    t->reader = r;
    pthread_mutex_unlock(&c->lock);
}

static void batch_done(kn__tenure_t *t)
{
    kn_consumer_t *c = t->c;
    if (!t->pending)
        return;
    pthread_mutex_lock(&c->lock);
    kn_reader_t *r = t->reader;
    t->busy = false;
    pthread_mutex_unlock(&c->lock);
    kn__reader_batch_done(r, t->pending);
    t->pending = NULL;
}

typedef struct done_s {
    kn__tenure_t *t;
    kn__leave_t why;
} done_t;

static void done_task(kn_consumer_t *c, void *arg)
{
    done_t *d = arg;
    kn__coord_tenure_done(c, d->t, d->why);
    free(d);
}

static void end_seen_task(kn_consumer_t *c, void *arg)
{
    kn__tenure_t *t = arg;
    kn__coord_shard_end_seen(c, t);
    kn__tenure_unref(t);
}

/* The tenure's last step: close, the reader, and the loop told. */
static void finish(kn__tenure_t *t, kn__leave_t why)
{
    kn_consumer_t *c = t->c;
    if (t->initialized && c->proc.close) {
        in_callback = true;
        c->proc.close(c->app, t->state);
        in_callback = false;
    }
    batch_done(t);
    pthread_mutex_lock(&c->lock);
    kn_reader_t *r = t->reader;
    t->reader = NULL;
    pthread_mutex_unlock(&c->lock);
    kn_reader_destroy(r);
    KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_CONSUMER, "consumer %s: shard %s: tenure over (%s)",
           c->worker_id, t->shard_id, kn__leave_name(why));
    done_t *d = malloc(sizeof(*d));
    if (d) {
        d->t = t;
        d->why = why;
        if (!kn__consumer_post(c, done_task, d)) {
            free(d);
            kn__tenure_unref(t); /* the loop is gone: its reference with it */
        }
    } else {
        kn__tenure_unref(t);
    }
    pthread_mutex_lock(&c->lock);
    t->finished = true;
    pthread_mutex_unlock(&c->lock);
}

static bool is_shard_end(const char *ck) { return ck && strcmp(ck, KN__CK_SHARD_END) == 0; }

static kn_err_t call_end(kn__tenure_t *t, kn_err_t (*fn)(void *, void *, kn_checkpointer_t *),
                         bool shard_end)
{
    kn_consumer_t *c = t->c;
    if (!fn)
        return KN_ERR_OK;
    t->cp.usable = true;
    t->cp.shard_end = shard_end;
    in_callback = true;
    kn_err_t rc = fn(c->app, t->state, &t->cp);
    in_callback = false;
    t->cp.usable = false;
    t->cp.shard_end = false;
    return rc;
}

/* One step of the end sequence; false when it waits (a retry) or is over. */
static bool end_step(kn__tenure_t *t, kn__leave_t leave)
{
    kn_consumer_t *c = t->c;
    pthread_mutex_lock(&c->lock);
    bool over = t->over;
    pthread_mutex_unlock(&c->lock);
    if (over || leave == KN__LEAVE_LOST) {
        if (t->initialized && !t->end_called && c->proc.lease_lost) {
            in_callback = true;
            c->proc.lease_lost(c->app, t->state);
            in_callback = false;
        }
        finish(t, KN__LEAVE_LOST);
        return false;
    }
    if (t->ending == KN__LEAVE_NONE)
        t->ending = leave;
    kn_error_t e;
    kn__error_clear(&e);
    if (t->ending == KN__LEAVE_SHARD_END) {
        if (!t->end_called) {
            kn_err_t rc = call_end(t, c->proc.shard_ended, true);
            if (rc != KN_ERR_OK) {
                backoff(t, "shard_ended", rc);
                return false;
            }
            if (!is_shard_end(t->ck_seq) && !c->shard_end_auto) {
                KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_CONSUMER,
                       "consumer %s: shard %s: shard_ended returned without checkpointing "
                       "SHARD_END (consumer.shard.end.checkpoint=processor): its children wait "
                       "until it does",
                       c->worker_id, t->shard_id);
                backoff(t, "shard_ended", KN_ERR_STATE);
                return false;
            }
            t->end_called = true;
            t->fails = 0;
        }
        if (!is_shard_end(t->ck_seq)) {
            kn_err_t rc = kn__checkpoint_write(t, KN__CK_SHARD_END, 0, &e);
            if (rc == KN_ERR_LEASE_LOST || rc == KN_ERR_STATE) {
                finish(t, KN__LEAVE_LOST);
                return false;
            }
            if (rc != KN_ERR_OK) {
                KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER,
                       "consumer %s: shard %s: checkpoint at SHARD_END: %s", c->worker_id,
                       t->shard_id, e.message);
                backoff(t, "the SHARD_END checkpoint", rc);
                return false;
            }
        }
        finish(t, KN__LEAVE_SHARD_END);
        return false;
    }
    /* Shutdown, handoff, or a shard that cannot be read. */
    if (!t->end_called) {
        kn_err_t rc = call_end(t, c->proc.shutdown_requested, false);
        if (rc != KN_ERR_OK)
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER,
                   "consumer %s: shard %s: shutdown_requested returned %s", c->worker_id,
                   t->shard_id, kn_err2name(rc));
        t->end_called = true;
    }
    if (c->ck_on_shutdown && t->ok_seq) {
        char *seq = t->ok_seq;
        t->ok_seq = NULL;
        kn_err_t rc = kn__checkpoint_write(t, seq, t->ok_sub, &e);
        if (rc != KN_ERR_OK)
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER,
                   "consumer %s: shard %s: checkpoint before letting go: %s", c->worker_id,
                   t->shard_id, e.message);
        free(seq);
    }
    finish(t, t->ending);
    return false;
}

static void on_event(kn__tenure_t *t, kn__ritem_t *ev)
{
    kn_consumer_t *c = t->c;
    switch (ev->ev) {
    case KN_READER_SHARD_END:
        t->children = ev->child_info;
        t->n_children = ev->child_info_count;
        ev->child_info = NULL;
        ev->child_info_count = 0;
        t->ending = KN__LEAVE_SHARD_END;
        pthread_mutex_lock(&c->lock);
        t->caught_up = true;
        pthread_mutex_unlock(&c->lock);
        atomic_fetch_add(&t->refs, 1);
        if (!kn__consumer_post(c, end_seen_task, t))
            kn__tenure_unref(t);
        break;
    case KN_READER_SHARD_ERROR:
        KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_CONSUMER,
               "consumer %s: shard %s cannot be read (%s): letting it go, retried later: %s",
               c->worker_id, t->shard_id, kn_err2name(ev->err), ev->errstr ? ev->errstr : "");
        t->ending = KN__LEAVE_ERROR;
        break;
    case KN_READER_SHARD_CAUGHT_UP:
        pthread_mutex_lock(&c->lock);
        t->caught_up = true;
        pthread_mutex_unlock(&c->lock);
        break;
    default: break;
    }
    kn__reader_item_free(ev);
}

static void set_str(char **dst, const char *src)
{
    size_t n = strlen(src);
    char *p = *dst ? realloc(*dst, n + 1) : malloc(n + 1);
    if (!p)
        return; /* keeps the old value: a checkpoint then lands a little earlier */
    memcpy(p, src, n + 1);
    *dst = p;
}

/* One turn of tenure t on worker w; true if it did something (it may have more to do). */
static bool step(kn__worker_t *w, kn__tenure_t *t)
{
    kn_consumer_t *c = t->c;
    pthread_mutex_lock(&c->lock);
    kn__leave_t leave = t->leave;
    t->wake = false;
    bool have_reader = t->reader != NULL;
    pthread_mutex_unlock(&c->lock);
    if (!t->initialized) {
        if (leave != KN__LEAVE_NONE) {
            finish(t, leave == KN__LEAVE_LOST ? KN__LEAVE_LOST : leave);
            return false;
        }
        if (!have_reader && t->ending == KN__LEAVE_NONE)
            make_reader(t);
        if (t->ending == KN__LEAVE_ERROR) { /* no reader, or initialize gave up */
            finish(t, KN__LEAVE_ERROR);
            return false;
        }
        if (c->proc.initialize) {
            in_callback = true;
            kn_err_t rc = c->proc.initialize(c->app, t->shard_id, t->start_ck, t->start_sub, &t->state);
            in_callback = false;
            if (rc != KN_ERR_OK) {
                backoff(t, "initialize", rc);
                return false;
            }
        }
        t->initialized = true;
        t->fails = 0;
        KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_CONSUMER, "consumer %s: shard %s: from %s/%llu",
               c->worker_id, t->shard_id, t->start_ck, (unsigned long long)t->start_sub);
        return true;
    }
    if (leave != KN__LEAVE_NONE || t->ending != KN__LEAVE_NONE)
        return end_step(t, leave);
    if (!t->pending) {
        pthread_mutex_lock(&c->lock);
        kn_reader_t *r = t->reader;
        pthread_mutex_unlock(&c->lock);
        kn__rtake_t tk;
        if (!r || !kn__reader_take(r, 0, &tk))
            return false;
        if (tk.event) {
            on_event(t, tk.event);
            return true;
        }
        t->pending = tk.batch;
        pthread_mutex_lock(&c->lock);
        t->busy = true;
        pthread_mutex_unlock(&c->lock);
    }
    kn_batch_t *b = w->batch;
    if (kn__batch_fill(b, t, w->dec, t->pending) != KN_ERR_OK) {
        backoff(t, "decoding a batch (out of memory)", KN_ERR_NOMEM);
        return false;
    }
    size_t n = kn_batch_count(b);
    if (n == 0 && !c->process_empty) {
        batch_done(t);
        return true;
    }
    uint64_t sub = 0;
    const char *last = kn__batch_last(b, &sub);
    if (last) {
        set_str(&t->last_seq, last);
        t->last_sub = sub;
    }
    t->cp.usable = true;
    in_callback = true;
    int64_t began_ms = c->metrics ? kn__mono_ms() : 0;
    kn_err_t rc = c->proc.process_records(c->app, t->state, b, &t->cp);
    in_callback = false;
    t->cp.usable = false;
    if (rc != KN_ERR_OK) {
        backoff(t, "process_records", rc);
        return false;
    }
    t->fails = 0;
    kn__cstat_add(c, KN_CONSUMER_STAT_BATCHES, 1);
    kn__cstat_add(c, KN_CONSUMER_STAT_RECORDS, (int64_t)n);
    kn__cstat_add(c, KN_CONSUMER_STAT_BYTES, kn__batch_bytes(b));
    if (c->metrics)
        kn__cm_batch(c, t->shard.shard_id, n, kn__batch_bytes(b), kn_batch_millis_behind(b),
                     kn__mono_ms() - began_ms, kn__batch_out_of_range(b));
    if (last) {
        t->skipping = false;
        if (!t->ck_seq || kn__checkpoint_cmp(last, sub, t->ck_seq, t->ck_sub) > 0) {
            set_str(&t->ok_seq, last);
            t->ok_sub = sub;
        }
    }
    batch_done(t);
    return true;
}

/* ------------------------------------------------------------ the threads */

static void *worker_main(void *arg)
{
    kn__worker_t *w = arg;
    kn_consumer_t *c = w->c;
    pthread_mutex_lock(&c->lock);
    while (!c->workers_stop) {
        int64_t now = kn__mono_ms(), next_due = INT64_MAX;
        kn__tenure_t *t = c->runq_head, *prev = NULL;
        while (t && t->not_before > now) {
            if (t->not_before < next_due)
                next_due = t->not_before;
            prev = t;
            t = t->run_next;
        }
        if (!t) {
            struct timespec ts;
            int64_t wait = next_due == INT64_MAX ? 1000 : next_due - now;
            kn__abs_after(&ts, wait > 1000 ? 1000 : wait);
            pthread_cond_timedwait(&c->run_cond, &c->lock, &ts);
            continue;
        }
        if (prev)
            prev->run_next = t->run_next;
        else
            c->runq_head = t->run_next;
        if (c->runq_tail == t)
            c->runq_tail = prev;
        t->run_next = NULL;
        t->queued = false;
        t->running = true;
        pthread_mutex_unlock(&c->lock);
        bool again = step(w, t);
        pthread_mutex_lock(&c->lock);
        t->running = false;
        if (t->finished) {
            if (t->all_prev)
                t->all_prev->all_next = t->all_next;
            else
                c->tenures = t->all_next;
            if (t->all_next)
                t->all_next->all_prev = t->all_prev;
            c->n_tenures--;
            pthread_cond_broadcast(&c->cond);
            pthread_mutex_unlock(&c->lock);
            kn__tenure_unref(t); /* the dispatch's reference */
            pthread_mutex_lock(&c->lock);
            continue;
        }
        if (again || t->wake || t->leave != KN__LEAVE_NONE || t->ending != KN__LEAVE_NONE ||
            t->not_before > kn__mono_ms())
            enqueue(c, t);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

kn_err_t kn__dispatch_start(kn_consumer_t *c, kn_error_t *err)
{
    c->workers = calloc((size_t)c->threads, sizeof(*c->workers));
    if (!c->workers)
        return kn__error_set(err, KN_ERR_NOMEM, "consumer: out of memory");
    for (int i = 0; i < c->threads; i++) {
        kn__worker_t *w = &c->workers[i];
        w->c = c;
        w->dec = kn__rc_decoder_new(NULL);
        w->batch = kn__batch_new();
        if (!w->dec || !w->batch || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            kn__rc_decoder_destroy(w->dec);
            kn__batch_free(w->batch);
            w->dec = NULL;
            w->batch = NULL;
            kn__dispatch_stop(c);
            return kn__error_set(err, KN_ERR_NOMEM, "consumer: could not start processor thread %d",
                                 i + 1);
        }
        c->n_workers++;
    }
    return KN_ERR_OK;
}

void kn__dispatch_stop(kn_consumer_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->workers_stop = true;
    pthread_cond_broadcast(&c->run_cond);
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < c->n_workers; i++) {
        pthread_join(c->workers[i].thread, NULL);
        kn__rc_decoder_destroy(c->workers[i].dec);
        kn__batch_free(c->workers[i].batch);
    }
    free(c->workers);
    c->workers = NULL;
    c->n_workers = 0;
}
