/*
 * PutRecords requests and their outcomes (loop thread): building a request
 * from a stream's ready Kinesis records, per-entry results (success with
 * the shard check, throttling, retriable and fatal errors), whole-request
 * failures, retries with exponential backoff and full jitter until the
 * record's TTL, and records that landed inside an aggregate on a shard
 * other than the predicted one (after a reshard).
 *
 * Each request is sent with one attempt at the request layer: retries are
 * decided here, per record, so a record that succeeded is never resent.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "fault.h"
#include "producer_int.h"
#include "sigv4.h"

typedef struct preq_s {
    kn_producer_t *p;
    kn__pstream_t *s;
    int64_t start_ms;
    uv_work_t work;           /* the body is built on libuv's thread pool */
    kn__put_entry_t *entries; /* NULL: no memory */
    kn__kinesis_limits_t lim;
    kn_buf_t body;
    char body_sha256[65]; /* hashed on the thread pool with the body, not on the loop */
    kn_err_t rc;
    kn_error_t err;
    int64_t bytes; /* counted in p->inflight_bytes */
    size_t n;
    kn__krec_t *krecs[];
} preq_t;

static void on_put_done(kn__aws_result_t *res, void *opaque);

/* ------------------------------------------------------------ outcomes */

static void add_attempt(kn_producer_t *p, kn__prec_t *r, int64_t start, int64_t now, kn_err_t err,
                        const char *name)
{
    kn__prec_attempted(r, start, now, err, kn__pintern(p, name));
}

void kn__retry_or_fail(kn_producer_t *p, kn__pstream_t *s, kn__prec_t *r, kn__pshard_t *sh,
                       kn_err_t code, const char *msg, int64_t backoff_ms, kn__plist_t *done,
                       int64_t now)
{
    if (p->cancelled) {
        char m[600];
        snprintf(m, sizeof(m), "the producer was destroyed while the record waited for a retry; "
                               "last error: %s", msg);
        kn__prec_fail(r, KN_ERR_DESTROYED, m);
        kn__pl_push(done, r);
        return;
    }
    if (now + backoff_ms >= r->expire_ms) {
        char m[700];
        snprintf(m, sizeof(m),
                 "record not put within producer.record.ttl.ms=%" PRId64 " after %d attempts; last "
                 "error: %s (%s)",
                 p->ttl_ms, r->n_attempts, msg, kn_err2name(code));
        kn__prec_fail(r, KN_ERR_TIMEOUT, m);
        kn__pl_push(done, r);
        return;
    }
    r->not_before_ms = now + backoff_ms;
    r->wait_shard = sh;
    if (sh)
        sh->retry_wait++;
    kn__pl_push(&s->retry, r);
    if (r->not_before_ms < s->retry_min_ms)
        s->retry_min_ms = r->not_before_ms;
    atomic_fetch_add_explicit(&p->stats.retries, 1, memory_order_relaxed);
}

static int64_t backoff(const kn_producer_t *p, const kn__prec_t *r)
{
    return kn__aws_backoff_ms(r->n_attempts > 0 ? r->n_attempts - 1 : 0, (long)p->retry_base_ms,
                              (long)p->retry_cap_ms);
}

static kn__landing_t *landing_new(const char *shard_id, const char *seq)
{
    size_t a = strlen(shard_id) + 1, b = strlen(seq) + 1;
    kn__landing_t *l = malloc(sizeof(*l) + a + b);
    if (!l)
        return NULL;
    atomic_init(&l->refcnt, 0);
    l->shard_id = (char *)(l + 1);
    l->seq = l->shard_id + a;
    memcpy(l->shard_id, shard_id, a);
    memcpy(l->seq, seq, b);
    return l;
}

/* The caller has counted r into l's references. */
static void succeed(kn__prec_t *r, kn__landing_t *l, uint64_t sub, bool aggregated, kn__plist_t *done)
{
    kn__prec_succeed(r, l, sub, aggregated);
    kn__pl_push(done, r);
}

/* Every record of k failed with the same error. */
static void krec_failed(kn_producer_t *p, kn__pstream_t *s, kn__krec_t *k, kn_err_t code,
                        const char *name, const char *msg, bool retry, int64_t start, int64_t now,
                        kn__plist_t *done)
{
    kn__prec_t *r;
    /*
     * One backoff for the whole Kinesis record: its records come back
     * together and in order (strict ordering relies on it).
     */
    int64_t wait_ms = -1;
    while ((r = kn__pl_pop(&k->recs))) {
        add_attempt(p, r, start, now, code, name);
        if (retry) {
            if (wait_ms < 0)
                wait_ms = backoff(p, r);
            kn__retry_or_fail(p, s, r, k->shard, code, msg, wait_ms, done, now);
        } else {
            kn__prec_fail(r, code, msg);
            kn__pl_push(done, r);
        }
    }
}

void kn__resolve_mismatches(kn_producer_t *p, kn__pstream_t *s, const kn__shard_map_t *map,
                            kn__plist_t *done, int64_t now)
{
    kn__mismatch_t *m = s->mismatches;
    s->mismatches = NULL;
    while (m) {
        kn__mismatch_t *next = m->next;
        kn__krec_t *k = m->krec;
        const kn__shard_entry_t *e = map ? kn__shard_map_find(map, m->landing->shard_id) : NULL;
        uint64_t j = 0;
        kn__prec_t *r;
        /* One backoff for all its records put again: they come back together and in order. */
        int64_t wait_ms = -1;
        while ((r = kn__pl_pop(&k->recs))) {
            bool inside = e && kn__hashkey_cmp(r->hash, e->start) >= 0 &&
                          kn__hashkey_cmp(r->hash, e->end) <= 0;
            if (inside) {
                atomic_fetch_add(&m->landing->refcnt, 1);
                kn__prec_add_attempt(r, &m->attempt);
                r->last_end_ms = now;
                succeed(r, m->landing, j, true, done);
            } else if (p->cancelled) {
                kn__prec_add_attempt(r, &m->attempt);
                char msg[400];
                snprintf(msg, sizeof(msg),
                         "the producer was destroyed before the record was confirmed: it landed in "
                         "an aggregate on shard %s, which may not own its hash key after a reshard",
                         m->landing->shard_id);
                kn__prec_fail(r, KN_ERR_DESTROYED, msg);
                kn__pl_push(done, r);
            } else {
                /* A KCL consumer would drop it from that aggregate: put it again. */
                kn__pattempt_t a = m->attempt;
                a.err = KN_ERR_STATE;
                a.name = kn__pintern(p, "WrongShard");
                kn__prec_add_attempt(r, &a);
                r->last_end_ms = now;
                char msg[300];
                snprintf(msg, sizeof(msg), "landed in an aggregate on shard %s, outside its hash range",
                         m->landing->shard_id);
                /*
                 * With backoff: a server that keeps routing to the same shard
                 * (moto writes to closed parents) must not cause a busy loop.
                 * It waits as a record of the shard that now holds its key,
                 * so that strict ordering keeps that shard's later records
                 * behind it.
                 */
                kn__pshard_t *target = NULL;
                if (map && map == s->map && s->shards)
                    target = s->shards[kn__shard_map_lookup(map, r->hash)->index];
                if (wait_ms < 0)
                    wait_ms = backoff(p, r);
                kn__retry_or_fail(p, s, r, target, KN_ERR_STATE, msg, wait_ms, done, now);
            }
            j++;
        }
        if (atomic_load(&m->landing->refcnt) == 0)
            free(m->landing);
        if (p->strict)
            k->shard->in_ready = false;
        kn__krec_release(p, k);
        free(m);
        m = next;
    }
}

static bool whole_retriable(const kn_error_t *e)
{
    if (e->code == KN_ERR_DESTROYED)
        return false;
    /* A credential source that failed for now: the records wait within their TTL. */
    return e->retriable || e->cls == KN__EC_RETRY || e->code == KN_ERR_TRANSPORT ||
           e->code == KN_ERR_TIMEOUT || e->code == KN_ERR_THROTTLED ||
           e->code == KN_ERR_BAD_RESPONSE || e->code == KN_ERR_NOMEM || e->code == KN_ERR_CREDENTIALS;
}

static void handle_entry(kn_producer_t *p, preq_t *q, kn__krec_t *k, const kn__put_result_entry_t *en,
                         int64_t now, kn__plist_t *done)
{
    kn__pstream_t *s = q->s;
    if (en->shard_id && en->sequence_number) {
        kn__landing_t *l = landing_new(en->shard_id, en->sequence_number);
        if (!l) {
            krec_failed(p, s, k, KN_ERR_NOMEM, "", "out of memory recording a result", true,
                        q->start_ms, now, done);
            kn__krec_release(p, k);
            return;
        }
        atomic_fetch_add_explicit(&p->stats.kinesis_put, 1, memory_order_relaxed);
        if (k->aggregated && strcmp(en->shard_id, k->shard->shard_id) != 0) {
            kn__mismatch_t *m = kn__fault(KN__FP_PRODUCER_MISMATCH_ALLOC) ? NULL : malloc(sizeof(*m));
            if (m) {
                m->krec = k;
                m->landing = l;
                m->attempt = (kn__pattempt_t){q->start_ms - k->recs.head->last_end_ms,
                                              now - q->start_ms, KN_ERR_OK, ""};
                if (m->attempt.delay_ms < 0)
                    m->attempt.delay_ms = 0;
                /* In arrival order: they are decided in the order they were sent. */
                m->next = NULL;
                kn__mismatch_t **tail = &s->mismatches;
                while (*tail)
                    tail = &(*tail)->next;
                *tail = m;
                /*
                 * Strict ordering: the shard sends nothing more until this is
                 * decided, or a later record of a key could overtake one that
                 * must be put again.
                 */
                if (p->strict)
                    k->shard->in_ready = true;
                KN_LOG(kn__client_log(p->client), KN_LOG_INFO, KN_DBG_PRODUCER,
                       "stream %s: an aggregate predicted for %s landed on %s; refreshing the "
                       "shard map",
                       s->name, k->shard->shard_id, en->shard_id);
                if (s->refresher)
                    kn__shard_refresher_request(s->refresher);
                else
                    kn__resolve_mismatches(p, s, s->map, done, now);
                return;
            }
            /*
             * No memory to wait for the map: put every record again (a
             * duplicate at worst, never one reported put where it may not be).
             */
            free(l);
            char msg[300];
            snprintf(msg, sizeof(msg),
                     "landed in an aggregate on shard %s (predicted %s); no memory to check it "
                     "against a new shard map",
                     en->shard_id, k->shard->shard_id);
            krec_failed(p, s, k, KN_ERR_STATE, "WrongShard", msg, true, q->start_ms, now, done);
            kn__krec_release(p, k);
            return;
        }
        atomic_store(&l->refcnt, (int)k->recs.count);
        kn__fill_t *f = kn__fault(KN__FP_PRODUCER_FILL_ALLOC) ? NULL : malloc(sizeof(*f));
        if (f) {
            /* The serving thread writes the outcome into each record (results.c). */
            *f = (kn__fill_t){l, k->recs.count, q->start_ms, now, kn__pintern(p, ""), k->aggregated};
            k->recs.head->fill = f;
            kn__pl_concat(done, &k->recs);
            kn__krec_release(p, k);
            return;
        }
        uint64_t j = 0;
        kn__prec_t *r;
        while ((r = kn__pl_pop(&k->recs))) {
            if (r->next)
                __builtin_prefetch(r->next);
            add_attempt(p, r, q->start_ms, now, KN_ERR_OK, "");
            succeed(r, l, k->aggregated ? j : 0, k->aggregated, done);
            j++;
        }
        if (atomic_load(&l->refcnt) == 0)
            free(l);
        kn__krec_release(p, k);
        return;
    }
    const char *name = en->error_code ? en->error_code : "UnknownError";
    char msg[600];
    snprintf(msg, sizeof(msg), "%s: %s", name, en->error_message ? en->error_message : "no message");
    kn_err_t code = KN_ERR_SERVICE;
    kn__errclass_t cls = kn__aws_classify(name, 200, &code);
    bool retry = cls == KN__EC_RETRY || cls == KN__EC_REFRESH_RETRY;
    if (code == KN_ERR_THROTTLED) {
        atomic_fetch_add_explicit(&p->stats.throttled, 1, memory_order_relaxed);
        kn__bucket_throttled(&k->shard->bucket, now);
        if (p->fail_if_throttled) {
            retry = false;
            snprintf(msg, sizeof(msg), "%s: %s (producer.fail.if.throttled)", name,
                     en->error_message ? en->error_message : "no message");
        }
    }
    krec_failed(p, s, k, code, name, msg, retry, q->start_ms, now, done);
    kn__krec_release(p, k);
}

static void on_put_done(kn__aws_result_t *res, void *opaque)
{
    preq_t *q = opaque;
    kn_producer_t *p = q->p;
    int64_t now = kn__mono_ms();
    kn__plist_t done = {0};
    p->inflight--;
    p->inflight_bytes -= q->bytes;
    atomic_fetch_add_explicit(&p->stats.request_ms_total, now - q->start_ms, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->stats.request_count, 1, memory_order_relaxed);
    for (size_t i = 0; i < q->n; i++) {
        q->krecs[i]->shard->inflight--;
        q->krecs[i]->shard->in_ready = false;
    }

    kn__put_result_t pr;
    kn_error_t e;
    memset(&pr, 0, sizeof(pr));
    kn__error_clear(&e);
    const kn_error_t *fail = NULL;
    if (res->err.code != KN_ERR_OK) {
        fail = &res->err;
    } else if (kn__put_records_parse(res->json, q->n, &pr, &e) != KN_ERR_OK) {
        e.retriable = true;
        fail = &e;
    }
    if (p->metrics)
        kn__pm_answer(p, q->s, q->krecs, q->n, fail, fail ? NULL : pr.entries, now - q->start_ms);
    if (fail) {
        bool retry = whole_retriable(fail);
        const char *name = *fail->aws_type ? fail->aws_type : kn_err2name(fail->code);
        if (fail->code == KN_ERR_THROTTLED)
            for (size_t i = 0; i < q->n; i++)
                kn__bucket_throttled(&q->krecs[i]->shard->bucket, now);
        for (size_t i = 0; i < q->n; i++) {
            krec_failed(p, q->s, q->krecs[i], fail->code, name, fail->message, retry, q->start_ms,
                        now, &done);
            kn__krec_release(p, q->krecs[i]);
        }
    } else {
        for (size_t i = 0; i < q->n; i++)
            handle_entry(p, q, q->krecs[i], &pr.entries[i], now, &done);
    }
    kn__put_result_free(&pr);
    free(q);
    kn__results_push(p, &done);
    kn__pipeline_pump(p);
    kn__pipeline_maybe_close(p);
}

/* ------------------------------------------------------------ sending */

/* Thread pool: base64 and JSON of the body (the records and Kinesis records are the request's alone). */
static void build_work(uv_work_t *w)
{
    preq_t *q = w->data;
    kn__error_clear(&q->err);
    if (!q->entries) {
        q->rc = kn__error_set(&q->err, KN_ERR_NOMEM, "out of memory building a request");
        return;
    }
    /* The aggregates' digests, many at once (kn__agg_out_digest), 64 Kinesis records at a time. */
    for (size_t i = 0; i < q->n; i += 64) {
        kn__agg_out_t *outs[64];
        size_t m = q->n - i < 64 ? q->n - i : 64;
        for (size_t k = 0; k < m; k++)
            outs[k] = &q->krecs[i + k]->out;
        kn__agg_out_digest(outs, m);
    }
    for (size_t i = 0; i < q->n; i++) {
        kn__krec_t *x = q->krecs[i];
        kn__put_entry_t *en = &q->entries[i];
        if (x->aggregated) {
            en->data = x->out.data.data;
            en->data_len = x->out.data.len;
            en->partition_key = x->out.partition_key.data;
            en->partition_key_len = x->out.partition_key.len;
            en->explicit_hash_key = x->out.explicit_hash_key.len ? x->out.explicit_hash_key.data : NULL;
            en->explicit_hash_key_len = x->out.explicit_hash_key.len;
        } else {
            kn__prec_t *r = x->recs.head;
            en->data = x->wrapped ? (const void *)x->out.data.data : r->data;
            en->data_len = x->wrapped ? x->out.data.len : r->data_len;
            en->partition_key = r->key;
            en->partition_key_len = r->key_len;
            en->explicit_hash_key = r->ehk;
            en->explicit_hash_key_len = r->ehk_len;
        }
    }
    q->rc = kn__put_records_build(&q->body, &q->s->ref, q->entries, q->n, &q->lim, &q->err);
    q->body_sha256[0] = '\0';
    if (q->rc == KN_ERR_OK)
        kn__sha256_hex(q->body.data, q->body.len, q->body_sha256);
}

/* Loop thread: send the built body, or fail its records. status 1: called inline from a pump. */
static void build_after(uv_work_t *w, int status)
{
    preq_t *q = w->data;
    kn_producer_t *p = q->p;
    kn__pstream_t *s = q->s;
    kn__plist_t done = {0};
    int64_t now = kn__mono_ms();
    free(q->entries);
    q->entries = NULL;
    for (size_t i = 0; i < q->n; i++)
        kn__agg_out_free(&q->krecs[i]->out); /* the body holds the bytes now */
    kn_error_t *e = &q->err;
    if (q->rc == KN_ERR_OK && !p->cancelled) {
        kn__aws_req_t req;
        memset(&req, 0, sizeof(req));
        req.service = KN__SVC_KINESIS;
        req.operation = "PutRecords";
        req.max_attempts = 1;
        req.cb = on_put_done;
        req.opaque = q;
        req.body = q->body;
        req.payload_sha256_hex = q->body_sha256;
        memset(&q->body, 0, sizeof(q->body));
        if (kn__aws_call(p->client, &req, e) == KN_ERR_OK)
            return;
        q->rc = e->code;
    } else if (q->rc == KN_ERR_OK) {
        q->rc = kn__error_set(e, KN_ERR_DESTROYED, "the producer was destroyed before the request was sent");
    }
    kn__buf_free(&q->body);
    p->inflight--;
    p->inflight_bytes -= q->bytes;
    bool retry = q->rc == KN_ERR_NOMEM;
    for (size_t i = 0; i < q->n; i++) {
        q->krecs[i]->shard->inflight--;
        q->krecs[i]->shard->in_ready = false;
        krec_failed(p, s, q->krecs[i], q->rc, "", e->message, retry, q->start_ms, now, &done);
        kn__krec_release(p, q->krecs[i]);
    }
    free(q);
    kn__results_push(p, &done);
    if (status == 1)
        return; /* the pump that sent it goes on */
    kn__pipeline_pump(p);
    kn__pipeline_maybe_close(p);
}



void kn__send_request(kn_producer_t *p, kn__pstream_t *s, int64_t now)
{
    size_t n = 0, bytes = 0;
    for (kn__krec_t *k = s->ready_head; k; k = k->next) {
        if (n > 0 && ((int64_t)(n + 1) > p->limits.put_max_records ||
                      (int64_t)(bytes + k->wire_bytes) > p->limits.put_max_bytes))
            break;
        n++;
        bytes += k->wire_bytes;
    }
    kn__plist_t done = {0};
    preq_t *q = malloc(sizeof(*q) + n * sizeof(kn__krec_t *));
    kn__put_entry_t *entries = malloc(n * sizeof(*entries));
    /* Take them off the ready list first: they belong to the request from here on. */
    kn__krec_t *k = s->ready_head;
    for (size_t i = 0; i < n; i++) {
        kn__krec_t *next = k->next;
        if (q)
            q->krecs[i] = k;
        s->ready_count--;
        s->ready_bytes -= k->wire_bytes;
        k->next = NULL;
        if (!q) {
            krec_failed(p, s, k, KN_ERR_NOMEM, "", "out of memory building a request", true, now, now,
                        &done);
            kn__krec_release(p, k);
        }
        k = next;
    }
    s->ready_head = k;
    if (!k)
        s->ready_tail = NULL;
    s->ready_min_deadline = INT64_MAX;
    for (kn__krec_t *x = s->ready_head; x; x = x->next)
        if (x->min_deadline < s->ready_min_deadline)
            s->ready_min_deadline = x->min_deadline;
    if (!q) {
        free(entries);
        kn__results_push(p, &done);
        return;
    }
    memset(q, 0, sizeof(*q));
    q->p = p;
    q->s = s;
    q->n = n;
    q->start_ms = now;
    q->work.data = q;

    q->entries = entries;
    q->lim = p->limits;
    pthread_mutex_lock(&p->lock); /* the stream's limit is raised by puts */
    if (s->record_max_bytes > q->lim.record_max_bytes)
        q->lim.record_max_bytes = s->record_max_bytes;
    pthread_mutex_unlock(&p->lock);
    /* In flight from here: strict ordering and destroy's wait count it. */
    p->inflight++;
    q->bytes = (int64_t)bytes;
    p->inflight_bytes += q->bytes;
    for (size_t i = 0; i < n; i++)
        q->krecs[i]->shard->inflight++;
    atomic_fetch_add_explicit(&p->stats.requests, 1, memory_order_relaxed);
    if (uv_queue_work(kn__client_loop(p->client), &q->work, build_work, build_after) != 0) {
        build_work(&q->work);
        build_after(&q->work, 1);
    }
}
