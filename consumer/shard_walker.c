/*
 * One shard's read state machine, on the client's loop thread: get an
 * iterator, wait for the pacing interval (or the idle time after a caught-up
 * empty read, or a backoff) and for room under the prefetch bounds, call
 * GetRecords, hand the answer to the poller (as the JSON tree the request
 * layer built, never walked here, or as the raw body when the layer leaves
 * it unparsed), and continue from the hand-back that the poller sends after
 * parsing it.
 *
 * Each call's Limit is sized so that its answer fits the shard's budget
 * (size_next below), and the budget is reserved against the reader's bound
 * while the call is in flight.
 *
 * Requests go out with one attempt each: this file does the retrying itself,
 * so that throttles are counted, an expired iterator is renewed from the
 * right place, and a retry is never faster than the shard's pacing.
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reader_int.h"

static bool step(kn_reader_t *r, kn__rshard_t *s);

/* The Limit of a shard's first GetRecords, before its record sizes are known. */
#define FIRST_LIMIT 10
/*
 * A shard whose GetRecords answers come back unreadable this many times in
 * a row (cut short, not JSON, records that do not parse) is given up with a
 * KN_READER_SHARD_ERROR instead of being read again for ever.
 */
#define MAX_BAD_ANSWERS 10
/* The least budget of a call: room for a few records of any size seen in practice. */
#define MIN_BUDGET (256 * 1024)

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Gives back the bytes reserved for the call in flight. */
static void unreserve(kn_reader_t *r, kn__rshard_t *s)
{
    if (s->reserved) {
        kn__rbudget_unreserve(r->budget, s->budget);
        s->reserved = false;
    }
}

/*
 * Sizes the next call from the answer just read (answer_bytes, records):
 * the bytes per record seen on this shard give the Limit that keeps an
 * answer near the budget; the budget grows fourfold while answers come full
 * (the shard is behind) and settles at twice the last answer otherwise, between
 * MIN_BUDGET and consumer.getrecords.max.bytes. A shard that is far behind
 * reaches full-size reads at its second call; a caught-up one reserves little.
 */
static void size_next(kn_reader_t *r, kn__rshard_t *s, size_t records)
{
    int64_t bytes = s->answer_bytes;
    if (records > 0) {
        int64_t per = bytes / (int64_t)records;
        if (per < 1)
            per = 1;
        s->avg_bytes = s->avg_bytes ? (s->avg_bytes + per) / 2 : per;
    }
    bool full = records >= (size_t)s->limit;
    int64_t lo = MIN_BUDGET < r->read_max_bytes ? MIN_BUDGET : r->read_max_bytes;
    s->budget = clamp64(full ? 4 * s->budget : 2 * bytes, lo, r->read_max_bytes);
    if (s->avg_bytes > 0)
        s->limit = (int)clamp64(s->budget / s->avg_bytes, 1, r->max_records);
}

static void on_timer(uv_timer_t *t)
{
    kn__rshard_t *s = t->data;
    kn_reader_t *r = s->r;
    if (r->stopping || s->phase != KN__RS_TIMER)
        return;
    s->phase = s->iterator ? KN__RS_READY : KN__RS_NEED_ITERATOR;
    step(r, s);
}

static void on_timer_closed(uv_handle_t *h)
{
    kn__rshard_t *s = h->data;
    kn__reader_unref(s->r);
}

void kn__walker_close(kn_reader_t *r, kn__rshard_t *s)
{
    if (s->timer_init) {
        s->timer_init = false;
        uv_close((uv_handle_t *)&s->timer, on_timer_closed);
    }
    s->paused = false;
    kn__rbudget_cancel(r->budget, &s->wait);
    unreserve(r, s); /* a call in flight: its answer will be dropped */
}

static void wait_until(kn_reader_t *r, kn__rshard_t *s, int64_t due)
{
    int64_t now = kn__mono_ms();
    s->phase = KN__RS_TIMER;
    uv_timer_start(&s->timer, on_timer, (uint64_t)(due > now ? due - now : 0), 0);
    (void)r;
}

/* Ends the shard after an error a retry cannot fix. */
static void shard_fail(kn_reader_t *r, kn__rshard_t *s, const kn_error_t *e, const char *what)
{
    char msg[1024];
    snprintf(msg, sizeof(msg), "shard %s of stream \"%s\": %s: %s", s->id, r->stream, what,
             e->message);
    KN_LOG(kn__client_log(r->client), KN_LOG_WARN, KN_DBG_CONSUMER, "%s", msg);
    s->phase = KN__RS_OVER;
    kn__reader_push_event(r, s, KN_READER_SHARD_ERROR, e->code, msg, NULL, 0);
    kn__lineage_shard_finished(r, s);
}

/* A failure that a retry may fix: back off (full jitter) and try again. */
static void shard_backoff(kn_reader_t *r, kn__rshard_t *s, const kn_error_t *e, const char *what)
{
    kn__rstat_add(r, KN_READER_STAT_RETRIES, 1);
    if (e->code == KN_ERR_THROTTLED)
        kn__rstat_add(r, KN_READER_STAT_THROTTLES, 1);
    long delay = kn__aws_backoff_ms(s->fails, (long)r->retry_base_ms, (long)r->retry_cap_ms);
    /* A credential outage is worth a warning when it begins; other retries are routine. */
    KN_LOG(kn__client_log(r->client), e->code == KN_ERR_CREDENTIALS && s->fails == 0 ? KN_LOG_WARN : KN_LOG_DEBUG,
           KN_DBG_CONSUMER, "shard %s: %s failed (%s); retry in %ld ms", s->id, what, e->message, delay);
    s->fails++;
    int64_t due = kn__mono_ms() + delay;
    if (due < s->not_before_ms)
        due = s->not_before_ms;
    s->not_before_ms = due;
    wait_until(r, s, due);
}

/*
 * Reads are idempotent, so besides what the request layer calls retriable a
 * broken 2xx answer (cut short, not JSON) is tried again too, and so is a
 * credential source that failed for now (an IMDS, STS or credential_process
 * timeout): a long-running reader rides out the outage with backoff.
 */
bool kn__reader_retriable(const kn_error_t *e)
{
    return e->retriable || e->cls == KN__EC_RETRY || e->code == KN_ERR_THROTTLED ||
           e->code == KN_ERR_TRANSPORT || e->code == KN_ERR_TIMEOUT ||
           e->code == KN_ERR_CREDENTIALS || (e->http_status >= 500 && e->http_status <= 599) ||
           (e->code == KN_ERR_BAD_RESPONSE && e->http_status / 100 == 2);
}

#define retriable kn__reader_retriable

/* ------------------------------------------------------------ GetShardIterator */

static void on_iterator(kn__aws_result_t *res, void *opaque)
{
    kn__rshard_t *s = opaque;
    kn_reader_t *r = s->r;
    if (r->stopping || s->lstate != KN__RL_ACTIVE) {
        kn__reader_unref(r);
        return;
    }
    kn_error_t e;
    kn__error_clear(&e);
    if (res->err.code != KN_ERR_OK) {
        kn__error_copy(&e, &res->err);
        s->phase = KN__RS_NEED_ITERATOR;
        if (retriable(&e))
            shard_backoff(r, s, &e, "GetShardIterator");
        else
            shard_fail(r, s, &e, "GetShardIterator");
    } else {
        char *it = NULL;
        if (kn__get_shard_iterator_parse(res->json, &it, &e) != KN_ERR_OK) {
            s->phase = KN__RS_NEED_ITERATOR;
            shard_backoff(r, s, &e, "GetShardIterator");
        } else {
            s->fails = 0;
            free(s->iterator);
            s->iterator = it;
            s->phase = KN__RS_READY;
            step(r, s);
        }
    }
    kn__reader_unref(r);
}

static void call_iterator(kn_reader_t *r, kn__rshard_t *s)
{
    kn__iterator_pos_t pos = {
        .type = s->pos_type, .sequence_number = s->pos_seq, .timestamp_ms = s->pos_ts_ms};
    if (s->last_seq) {
        /* Renewal: continue right after what was read. */
        pos.type = KN__IT_AFTER_SEQUENCE_NUMBER;
        pos.sequence_number = s->last_seq;
    }
    kn_error_t e;
    kn__error_clear(&e);
    kn__aws_req_t req = {0};
    req.service = KN__SVC_KINESIS;
    req.operation = "GetShardIterator";
    req.max_attempts = 1;
    req.cb = on_iterator;
    req.opaque = s;
    if (kn__get_shard_iterator_build(&req.body, &r->ref, s->id, &pos, &e) != KN_ERR_OK) {
        kn__buf_free(&req.body);
        shard_fail(r, s, &e, "GetShardIterator");
        return;
    }
    s->phase = KN__RS_ITERATOR_CALL;
    atomic_fetch_add(&r->refs, 1);
    if (kn__aws_call(r->client, &req, &e) != KN_ERR_OK) {
        kn__reader_unref(r);
        s->phase = KN__RS_NEED_ITERATOR;
        if (e.code != KN_ERR_DESTROYED)
            shard_backoff(r, s, &e, "GetShardIterator");
    }
}

/* ------------------------------------------------------------ GetRecords */

static void bad_answers_fail(kn_reader_t *r, kn__rshard_t *s, const kn_error_t *last)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__error_set(&e, KN_ERR_BAD_RESPONSE, "%d answers in a row could not be read; the last: %s",
                  s->bad_answers, last->message);
    shard_fail(r, s, &e, "GetRecords");
}

static void on_records_(kn_reader_t *r, kn__rshard_t *s, kn__aws_result_t *res);
static void apply_handback(kn_reader_t *r, kn__rshard_t *s, kn__handback_t hb);

/* A GetRecords call ended: its reservation goes back, perhaps to a shard waiting for it. */
static void on_records(kn__aws_result_t *res, void *opaque)
{
    kn__rshard_t *s = opaque;
    kn_reader_t *r = s->r;
    if (r->stopping) {
        /* stop_task gave the reservation back: a shared bound may be gone by now. */
        kn__reader_unref(r);
        return;
    }
    unreserve(r, s);
    if (s->lstate == KN__RL_ACTIVE)
        on_records_(r, s, res);
    kn__walker_serve_room(r->budget); /* before the reference goes: the own bound is in r */
    kn__reader_unref(r);
}

/*
 * An idle read: the answer of a shard that is caught up and has said so
 * (s->quiet), empty again. Nothing in it is for the application, so the loop
 * takes it itself instead of handing it to the poller and waiting for the
 * hand-back: two thread hand-offs, a large part of what an idle read costs,
 * and with many caught-up shards most reads are idle. Only a clean empty
 * answer (MillisBehindLatest 0, a next iterator, no child shards) of at most
 * IDLE_MAX_BYTES is taken; anything else goes to the poller as usual, its
 * body unchanged (the parse runs on a copy). Order is kept: the shard has
 * one call at a time, so the poller is done with its earlier answers.
 */
#define IDLE_MAX_BYTES 4096
static bool idle_read(kn_reader_t *r, kn__rshard_t *s, kn__aws_result_t *res)
{
    if (!s->quiet || r->keep_empty || r->opts.stop_at_ms > 0 || res->json || !res->body.data ||
        res->body.len == 0 || res->body.len > IDLE_MAX_BYTES)
        return false;
    kn_buf_t copy = {0};
    if (kn__buf_append(&copy, res->body.data, res->body.len) != 0)
        return false;
    kn__get_records_result_t g;
    memset(&g, 0, sizeof(g));
    kn_error_t e;
    kn__error_clear(&e);
    bool idle = kn__reader_parse_body(&copy, &g, &e) == KN_ERR_OK && g.count == 0 &&
                g.millis_behind_latest == 0 && g.next_iterator && g.child_count == 0;
    if (idle) {
        kn__rstat_add(r, KN_READER_STAT_GETRECORDS, 1);
        kn__rstat_add(r, KN_READER_STAT_IDLE_READS, 1);
        if (r->metrics)
            kn__metrics_add(r->metrics, KN__RM_MBL, r->stream, s->id, NULL, 0, 1);
        s->answer_bytes = (int64_t)res->body.len;
        /* The hand-back the poller would have sent for it. */
        kn__handback_t hb = {.ready = true, .caught_up = true, .said_caught_up = true, .empty = true,
                             .next_iterator = g.next_iterator};
        g.next_iterator = NULL;
        apply_handback(r, s, hb);
    }
    kn__get_records_result_free(&g);
    kn__buf_free(&copy);
    if (idle)
        step(r, s);
    return idle;
}

static void on_records_(kn_reader_t *r, kn__rshard_t *s, kn__aws_result_t *res)
{
    if (res->err.code == KN_ERR_OK && idle_read(r, s, res))
        return;
    if (res->err.code == KN_ERR_OK) {
        kn__ritem_t *it = calloc(1, sizeof(*it));
        if (!it) {
            kn_error_t e;
            kn__error_clear(&e);
            kn__error_set(&e, KN_ERR_NOMEM, "out of memory");
            s->phase = KN__RS_READY;
            shard_backoff(r, s, &e, "GetRecords");
            return;
        }
        it->kind = KN__RI_ANSWER;
        it->shard = s;
        it->json = res->json;
        res->json = NULL;
        it->bytes = (int64_t)res->body.len;
        s->answer_bytes = it->bytes;
        if (!it->json) {
            /* A request layer that leaves success bodies unparsed: the poller parses the raw body. */
            it->body = res->body;
            memset(&res->body, 0, sizeof(res->body));
        }
        if (it->bytes <= 0)
            it->bytes = 1;
        pthread_mutex_lock(&r->lock);
        s->queued_bytes += it->bytes;
        r->queued_bytes += it->bytes;
        int64_t q = r->queued_bytes;
        pthread_mutex_unlock(&r->lock);
        kn__rbudget_hold(r->budget, it->bytes);
        atomic_store(&r->stats[KN_READER_STAT_PREFETCH_BYTES], q);
        if (q > atomic_load(&r->stats[KN_READER_STAT_PREFETCH_MAX_BYTES]))
            atomic_store(&r->stats[KN_READER_STAT_PREFETCH_MAX_BYTES], q);
        s->phase = KN__RS_PARSING;
        kn__reader_push(r, it);
    } else {
        kn_error_t e;
        kn__error_copy(&e, &res->err);
        if (e.code == KN_ERR_EXPIRED_ITERATOR) {
            kn__rstat_add(r, KN_READER_STAT_ITERATOR_RENEWALS, 1);
            KN_LOG(kn__client_log(r->client), KN_LOG_DEBUG, KN_DBG_CONSUMER,
                   "shard %s: iterator expired; a new one %s", s->id,
                   s->last_seq ? "after the last sequence number read" : "at the start position");
            free(s->iterator);
            s->iterator = NULL;
            s->phase = KN__RS_NEED_ITERATOR;
            step(r, s);
        } else if (e.code == KN_ERR_TOO_LARGE && s->limit > 1) {
            /* Records larger than this shard's recent ones: ask for half as many. */
            s->limit /= 2;
            s->budget /= 2;
            s->phase = KN__RS_READY;
            shard_backoff(r, s, &e, "GetRecords");
        } else if (e.code == KN_ERR_BAD_RESPONSE && e.http_status / 100 == 2 &&
                   ++s->bad_answers >= MAX_BAD_ANSWERS) {
            bad_answers_fail(r, s, &e);
        } else if (retriable(&e)) {
            s->phase = KN__RS_READY;
            shard_backoff(r, s, &e, "GetRecords");
        } else {
            shard_fail(r, s, &e, "GetRecords");
        }
    }
}

/* Whether the answers of s that are not served yet are over consumer.prefetch.shard.max.bytes. */
static bool over_shard_bound(kn_reader_t *r, kn__rshard_t *s)
{
    pthread_mutex_lock(&r->lock);
    bool over = s->queued_bytes >= r->shard_max_bytes;
    pthread_mutex_unlock(&r->lock);
    return over;
}

/* Counts a read postponed for room (once per wait). */
static void count_pause(kn_reader_t *r) { kn__rstat_add(r, KN_READER_STAT_PAUSES, 1); }

static void call_records(kn_reader_t *r, kn__rshard_t *s)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__aws_req_t req = {0};
    req.service = KN__SVC_KINESIS;
    req.operation = "GetRecords";
    req.max_attempts = 1;
    req.raw_body = true; /* parsed on the polling thread (reader.c), never on the loop */
    req.timeout_ms = (long)r->getrecords_timeout_ms;
    req.cb = on_records;
    req.opaque = s;
    if (kn__get_records_build(&req.body, &r->ref, s->iterator, s->limit, &e) != KN_ERR_OK) {
        kn__buf_free(&req.body);
        unreserve(r, s);
        shard_fail(r, s, &e, "GetRecords");
        return;
    }
    s->phase = KN__RS_READ_CALL;
    s->last_call_ms = kn__mono_ms();
    atomic_fetch_add(&r->refs, 1);
    if (kn__aws_call(r->client, &req, &e) != KN_ERR_OK) {
        kn__reader_unref(r);
        unreserve(r, s);
        s->phase = KN__RS_READY;
        if (e.code != KN_ERR_DESTROYED)
            shard_backoff(r, s, &e, "GetRecords");
    }
}

/* ------------------------------------------------------------ the hand-back */

/* What an answer said, from the poller's hand-back or an idle read: the shard goes on from it. */
static void apply_handback(kn_reader_t *r, kn__rshard_t *s, kn__handback_t hb)
{
    s->quiet = false;
    if (hb.retry) {
        /* A corrupt answer: read again with the same iterator, a bounded number of times. */
        if (hb.err.code == KN_ERR_BAD_RESPONSE && ++s->bad_answers >= MAX_BAD_ANSWERS) {
            bad_answers_fail(r, s, &hb.err);
        } else {
            s->phase = KN__RS_READY;
            shard_backoff(r, s, &hb.err, "GetRecords (parsing the answer)");
        }
        kn__handback_clear(&hb);
        return;
    }
    s->fails = 0;
    s->bad_answers = 0;
    size_next(r, s, hb.records);
    if (hb.last_seq) {
        free(s->last_seq);
        s->last_seq = hb.last_seq;
        hb.last_seq = NULL;
    }
    /* The reader's end may have come when a shard first catches up (not at each idle read). */
    bool first_caught_up = hb.caught_up && !s->ever_caught_up;
    if (hb.caught_up)
        s->ever_caught_up = true;
    if (hb.stop) {
        s->phase = KN__RS_OVER;
        kn__lineage_shard_finished(r, s);
    } else if (!hb.next_iterator) {
        s->phase = KN__RS_OVER;
        kn__lineage_shard_done(r, s, hb.children, hb.child_count);
    } else {
        free(s->iterator);
        s->iterator = hb.next_iterator;
        hb.next_iterator = NULL;
        if (hb.caught_up)
            s->not_before_ms = kn__mono_ms() + r->idle_ms;
        s->quiet = hb.said_caught_up;
        s->phase = KN__RS_READY;
    }
    kn__handback_clear(&hb);
    if (first_caught_up)
        kn__lineage_check_end(r);
}

static void take_handback(kn_reader_t *r, kn__rshard_t *s)
{
    pthread_mutex_lock(&r->lock);
    kn__handback_t hb = s->hb;
    if (hb.ready)
        memset(&s->hb, 0, sizeof(s->hb));
    pthread_mutex_unlock(&r->lock);
    if (hb.ready)
        apply_handback(r, s, hb);
}

/* ------------------------------------------------------------ stepping */

/* Advances s; returns whether a GetRecords call started. */
static bool step(kn_reader_t *r, kn__rshard_t *s)
{
    if (r->stopping || s->lstate != KN__RL_ACTIVE)
        return false;
    if (s->phase == KN__RS_PARSING)
        take_handback(r, s);
    if (s->lstate != KN__RL_ACTIVE)
        return false;
    switch (s->phase) {
    case KN__RS_NEED_ITERATOR: {
        int64_t now = kn__mono_ms();
        if (s->not_before_ms > now)
            wait_until(r, s, s->not_before_ms);
        else
            call_iterator(r, s);
        break;
    }
    case KN__RS_READY: {
        int64_t due = s->last_call_ms + r->interval_ms;
        if (s->not_before_ms > due)
            due = s->not_before_ms;
        if (due > kn__mono_ms()) {
            wait_until(r, s, due);
            break;
        }
        if (over_shard_bound(r, s)) {
            if (!s->paused)
                count_pause(r);
            s->paused = true;
            break; /* serving its answers marks it for the next kick */
        }
        s->paused = false;
        bool was_waiting = s->wait.queued;
        if (!kn__rbudget_admit(r->budget, &s->wait, s->budget)) {
            if (!was_waiting)
                count_pause(r);
            break; /* kn__walker_serve_room starts it when its turn comes and it fits */
        }
        s->reserved = true; /* admitted: the budget is reserved */
        call_records(r, s);
        return s->phase == KN__RS_READ_CALL;
    }
    default: break;
    }
    return false;
}

bool kn__walker_step(kn_reader_t *r, kn__rshard_t *s) { return step(r, s); }

void kn__walker_serve_room(kn__rbudget_t *b)
{
    kn__rwait_t *w;
    while ((w = kn__rbudget_ready(b))) {
        kn__rshard_t *s = (kn__rshard_t *)((char *)w - offsetof(kn__rshard_t, wait));
        kn_reader_t *r = s->r;
        if (!r->stopping && s->lstate == KN__RL_ACTIVE && s->phase == KN__RS_READY)
            step(r, s);
        /* Whatever kept it from starting (a wait that began meanwhile), it does not hold up the rest. */
        if (b->head == w)
            kn__rbudget_cancel(b, w);
    }
}

void kn__walker_start(kn_reader_t *r, kn__rshard_t *s)
{
    s->lstate = KN__RL_ACTIVE;
    s->phase = KN__RS_NEED_ITERATOR;
    s->started_once = true;
    s->limit = r->max_records < FIRST_LIMIT ? r->max_records : FIRST_LIMIT;
    s->budget = r->read_max_bytes;
    s->avg_bytes = 0;
    if (!s->timer_init) {
        uv_timer_init(kn__client_loop(r->client), &s->timer);
        s->timer.data = s;
        s->timer_init = true;
        atomic_fetch_add(&r->refs, 1); /* dropped when the timer is closed */
    }
    kn__rstat_add(r, KN_READER_STAT_SHARDS_ACTIVE, 1);
    kn__reader_push_event(r, s, KN_READER_SHARD_STARTED, KN_ERR_OK, NULL, NULL, 0);
    step(r, s);
}
