/*
 * The stream reader's public API and its polling side: creation (the blocking
 * listing that validates the stream and the chosen shards), the inbox from
 * the loop thread, parsing of GetRecords answers and the hand-back of what
 * they said, deaggregation and decompression while serving, messages,
 * statistics and destroy. The loop side is in shard_walker.c and lineage.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "fault.h"
#include "reader_int.h"

/* Longest wait of destroy for the loop to acknowledge the stop. */
#define STOP_WAIT_MS 10000


static void strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void kn__child_shards_free(kn__child_shard_t *cs, size_t n)
{
    if (!cs)
        return;
    for (size_t i = 0; i < n; i++) {
        free(cs[i].shard_id);
        strv_free(cs[i].parent_shards, cs[i].parent_count);
    }
    free(cs);
}

void kn__handback_clear(kn__handback_t *hb)
{
    free(hb->next_iterator);
    free(hb->last_seq);
    kn__child_shards_free(hb->children, hb->child_count);
    memset(hb, 0, sizeof(*hb));
}

static void item_free(kn__ritem_t *it)
{
    if (!it)
        return;
    if (it->json)
        json_object_put(it->json);
    kn__buf_free(&it->body);
    free(it->errstr);
    strv_free(it->children, it->child_count);
    kn__child_shards_free(it->child_info, it->child_info_count);
    free(it);
}

bool kn__rbatch_digest_ok(kn__rbatch_t *b, size_t i)
{
    if (i < b->ok_from || i >= b->ok_from + b->ok_n) {
        const void *data[KN__RBATCH_OK_WINDOW];
        size_t len[KN__RBATCH_OK_WINDOW];
        size_t n = b->count - i < KN__RBATCH_OK_WINDOW ? b->count - i : KN__RBATCH_OK_WINDOW;
        for (size_t k = 0; k < n; k++) {
            data[k] = b->res.records[i + k].data;
            len[k] = b->res.records[i + k].data_len;
        }
        kn__agg_verify_many(n, data, len, b->digest_ok);
        b->ok_from = i;
        b->ok_n = n;
    }
    return b->digest_ok[i - b->ok_from];
}

static void batch_free(kn__rbatch_t *b)
{
    if (!b)
        return;
    kn__get_records_result_free(&b->res);
    free(b);
}

/* ------------------------------------------------------------ lifetime */

static void reader_free(kn_reader_t *r)
{
    kn__rshard_t *s = r->shards;
    while (s) {
        kn__rshard_t *next = s->next;
        free(s->id);
        free(s->parent);
        free(s->adjacent);
        free(s->pos_seq);
        free(s->iterator);
        free(s->last_seq);
        kn__handback_clear(&s->hb);
        free(s);
        s = next;
    }
    kn__ritem_t *it = r->in_head;
    while (it) {
        kn__ritem_t *next = it->next;
        item_free(it);
        it = next;
    }
    kn__shard_list_free(&r->page_acc);
    if (r->efd >= 0)
        close(r->efd);
    strv_free(r->sel, r->sel_count);
    free(r->start_seq);
    free(r->stream);
    kn_conf_destroy(r->conf);
    kn__rbudget_destroy(&r->own_budget);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

void kn__reader_unref(kn_reader_t *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        reader_free(r);
}

/* ------------------------------------------------------------ loop -> poller */

void kn__reader_push(kn_reader_t *r, kn__ritem_t *it)
{
    it->next = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->in_tail)
        r->in_tail->next = it;
    else
        r->in_head = it;
    r->in_tail = it;
    atomic_store(&r->in_pending, true);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (r->notify) {
        r->notify(r->notify_opaque);
    } else {
        uint64_t one = 1;
        ssize_t w = write(r->efd, &one, sizeof(one));
        (void)w;
    }
}

void kn__reader_push_event(kn_reader_t *r, kn__rshard_t *s, kn_reader_msg_type_t ev, kn_err_t err,
                           const char *errstr, char **children, size_t child_count)
{
    kn__ritem_t *it = calloc(1, sizeof(*it));
    if (!it) {
        strv_free(children, child_count);
        return;
    }
    it->kind = KN__RI_EVENT;
    it->shard = s;
    it->ev = ev;
    it->err = err;
    it->errstr = errstr ? strdup(errstr) : NULL;
    it->children = children;
    it->child_count = child_count;
    kn__reader_push(r, it);
}

void kn__reader_mark(kn_reader_t *r, kn__rshard_t *s)
{
    if (s->dirty)
        return;
    s->dirty = true;
    s->dirty_next = NULL;
    if (r->dirty_tail)
        r->dirty_tail->dirty_next = s;
    else
        r->dirty_head = s;
    r->dirty_tail = s;
}

/*
 * On the loop: steps the shards that something happened to (a hand-back
 * waits, or their own answers were served) and gives freed room to the
 * shards waiting for it. Only those: a kick costs what changed, not the
 * number of shards.
 */
static void kick_task(kn_client_t *c, void *arg)
{
    (void)c;
    kn_reader_t *r = arg;
    pthread_mutex_lock(&r->lock);
    r->kick_posted = false;
    kn__rshard_t *s = r->dirty_head;
    r->dirty_head = r->dirty_tail = NULL;
    pthread_mutex_unlock(&r->lock);
    while (s) {
        /* Once dirty is cleared the poller may mark s again, on the new list: read next first. */
        pthread_mutex_lock(&r->lock);
        kn__rshard_t *next = s->dirty_next;
        s->dirty = false;
        s->dirty_next = NULL;
        pthread_mutex_unlock(&r->lock);
        if (!r->stopping && s->lstate == KN__RL_ACTIVE)
            kn__walker_step(r, s);
        s = next;
    }
    if (!r->stopping) /* a stopped reader's bound may be gone; stop_task served it */
        kn__walker_serve_room(r->budget);
    kn__reader_unref(r);
}

void kn__reader_kick(kn_reader_t *r)
{
    pthread_mutex_lock(&r->lock);
    bool post = !r->kick_posted && !r->stop_done;
    if (post)
        r->kick_posted = true;
    pthread_mutex_unlock(&r->lock);
    if (!post)
        return;
    atomic_fetch_add(&r->refs, 1);
    if (kn__client_post(r->client, kick_task, r) != KN_ERR_OK) {
        pthread_mutex_lock(&r->lock);
        r->kick_posted = false;
        pthread_mutex_unlock(&r->lock);
        kn__reader_unref(r);
    }
}

static void begin_task(kn_client_t *c, void *arg)
{
    (void)c;
    kn_reader_t *r = arg;
    if (!r->stopping)
        kn__lineage_begin(r);
    kn__reader_unref(r);
}

kn_err_t kn__reader_begin(kn_reader_t *r)
{
    kn_client_ref(r->client);
    atomic_fetch_add(&r->refs, 1);
    if (kn__client_post(r->client, begin_task, r) != KN_ERR_OK) {
        atomic_fetch_sub(&r->refs, 1);
        kn_client_destroy(r->client);
        r->client = NULL;
        return KN_ERR_DESTROYED;
    }
    return KN_ERR_OK;
}

/*
 * On the loop, for destroy: no more calls; what the reader holds under its
 * bound (answers not served, calls in flight) goes back now, so that a bound
 * shared with other readers neither keeps it for ever nor is touched once
 * destroy has returned (answers still in flight are dropped without it).
 */
static void stop_task(kn_client_t *c, void *arg)
{
    (void)c;
    kn_reader_t *r = arg;
    pthread_mutex_lock(&r->lock);
    bool detached = r->detached;
    int64_t held = r->queued_bytes;
    r->queued_bytes = 0;
    r->released_at_stop = true;
    pthread_mutex_unlock(&r->lock);
    if (detached)
        r->budget = &r->own_budget; /* destroy gave up waiting: the shared bound may be gone */
    r->stopping = true;
    for (kn__rshard_t *s = r->shards; s; s = s->next)
        kn__walker_close(r, s);
    if (held > 0)
        kn__rbudget_release(r->budget, held);
    kn__walker_serve_room(r->budget); /* the room of a shared bound goes to other readers */
    kn__lineage_close(r);
    pthread_mutex_lock(&r->lock);
    r->stop_done = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    kn__reader_unref(r);
}

/* ------------------------------------------------------------ creation */

static kn_err_t fail_new(kn_error_t *err, kn_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static kn_err_t fail_new(kn_error_t *err, kn_err_t code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (err) {
        kn__error_clear(err);
        kn__error_set(err, code, "%s", msg);
    }
    return code;
}

static bool valid_position(const kn_position_t *p)
{
    return p->type >= KN_POS_TRIM_HORIZON && p->type <= KN_POS_AFTER_SEQUENCE_NUMBER;
}

/*
 * The reader's structure with its settings from conf, its copies of stream
 * and opts, the eventfd (want_fd) and the decoder: what every reader needs
 * before its shards are known. NULL with err filled on failure.
 */
kn_reader_t *kn__reader_alloc(kn_client_t *client, const kn_conf_t *conf, const char *stream,
                              const kn_reader_opts_t *opts, bool want_fd, kn_error_t *err)
{
    bool seq_pos = opts->start.type == KN_POS_AT_SEQUENCE_NUMBER ||
                   opts->start.type == KN_POS_AFTER_SEQUENCE_NUMBER;
    kn_reader_t *r = calloc(1, sizeof(*r));
    if (!r) {
        fail_new(err, KN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&r->refs, 1);
    atomic_init(&r->at_end, false);
    for (int i = 0; i < KN_READER_STAT__COUNT; i++)
        atomic_init(&r->stats[i], 0);
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    kn__rbudget_init(&r->own_budget, 0);
    r->budget = &r->own_budget;
    r->efd = -1;
    r->client = client;
    r->conf = conf ? kn_conf_dup(conf) : kn_conf_new();
    r->stream = strdup(stream);
    r->opts = *opts;
    r->opts.shard_ids = NULL;
    r->opts.shard_count = 0;
    r->opts.start.sequence_number = NULL;
    if (!r->conf || !r->stream)
        goto nomem;
    if (seq_pos && !(r->start_seq = strdup(opts->start.sequence_number)))
        goto nomem;
    r->opts.start.sequence_number = r->start_seq;
    if (opts->shard_count > 0) {
        r->sel = calloc(opts->shard_count, sizeof(char *));
        if (!r->sel)
            goto nomem;
        r->sel_count = opts->shard_count;
        for (size_t i = 0; i < opts->shard_count; i++)
            if (!(r->sel[i] = strdup(opts->shard_ids[i])))
                goto nomem;
    }
    if (strncmp(stream, "arn:", 4) == 0)
        r->ref.arn = r->stream;
    else
        r->ref.name = r->stream;

    r->max_records = (int)kn__conf_int(r->conf, KN_P_C_MAX_RECORDS);
    r->interval_ms = kn__conf_int(r->conf, KN_P_C_GETRECORDS_INTERVAL_MS);
    r->getrecords_timeout_ms = kn__conf_int(r->conf, KN_P_C_GETRECORDS_TIMEOUT_MS);
    r->idle_ms = kn__conf_int(r->conf, KN_P_C_IDLE_MS);
    r->shard_max_bytes = kn__conf_int(r->conf, KN_P_C_PREFETCH_SHARD_BYTES);
    r->own_budget.max = kn__conf_int(r->conf, KN_P_C_PREFETCH_BYTES);
    r->read_max_bytes = kn__conf_int(r->conf, KN_P_C_GETRECORDS_MAX_BYTES);
    /* An answer sized to the budget must also fit under the HTTP layer's limit, with room to spare. */
    if (r->read_max_bytes > kn__conf_int(r->conf, KN_P_MAX_RESPONSE_BYTES) / 2)
        r->read_max_bytes = kn__conf_int(r->conf, KN_P_MAX_RESPONSE_BYTES) / 2;
    r->retry_base_ms = kn__conf_int(r->conf, KN_P_RETRY_BASE_MS);
    r->retry_cap_ms = kn__conf_int(r->conf, KN_P_RETRY_MAX_BACKOFF_MS);

    if (want_fd && (r->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        fail_new(err, KN_ERR_IO, "kn_reader_new: eventfd: %s", strerror(errno));
        reader_free(r);
        return NULL;
    }
    if (!opts->raw && !(r->dec = kn__rc_decoder_new(NULL)))
        goto nomem;
    return r;
nomem:
    fail_new(err, KN_ERR_NOMEM, "out of memory");
    kn__rc_decoder_destroy(r->dec);
    r->dec = NULL;
    reader_free(r);
    return NULL;

}

KN_API kn_reader_t *kn_reader_new_on(kn_client_t *client, const kn_conf_t *conf, const char *stream,
                                     const kn_reader_opts_t *opts, kn_error_t *err)
{
    static const kn_reader_opts_t defaults = KN_READER_OPTS_INIT;
    kn_reader_t *r = NULL;
    kn__shard_list_t list = {0};
    kn_error_t e;
    kn__error_clear(&e);
    if (err)
        kn__error_clear(err);
    if (!client) {
        fail_new(err, KN_ERR_INVALID_ARG, "kn_reader_new_on: client is NULL");
        return NULL;
    }
    if (!stream || !*stream) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: no stream name or ARN");
        return NULL;
    }
    if (!opts)
        opts = &defaults;
    if (opts->struct_size < sizeof(kn_reader_opts_t)) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: opts->struct_size is %zu, not sizeof(kn_reader_opts_t) (%zu): "
                 "start from KN_READER_OPTS_INIT",
                 opts->struct_size, sizeof(kn_reader_opts_t));
        return NULL;
    }
    if (!valid_position(&opts->start)) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: unknown start position type %d", (int)opts->start.type);
        return NULL;
    }
    if (opts->start.type == KN_POS_AT_TIMESTAMP && opts->start.timestamp_ms < 0) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: AT_TIMESTAMP needs timestamp_ms >= 0 (got %" PRId64 ")",
                 opts->start.timestamp_ms);
        return NULL;
    }
    bool seq_pos = opts->start.type == KN_POS_AT_SEQUENCE_NUMBER ||
                   opts->start.type == KN_POS_AFTER_SEQUENCE_NUMBER;
    if (seq_pos) {
        const char *sq = opts->start.sequence_number;
        bool digits = sq && *sq;
        for (const char *q = sq; digits && *q; q++)
            digits = *q >= '0' && *q <= '9';
        if (!digits) {
            fail_new(err, KN_ERR_INVALID_ARG,
                     "kn_reader_new: %s needs a decimal sequence_number",
                     opts->start.type == KN_POS_AT_SEQUENCE_NUMBER ? "AT_SEQUENCE_NUMBER"
                                                                   : "AFTER_SEQUENCE_NUMBER");
            return NULL;
        }
        if (!opts->shard_ids || opts->shard_count != 1) {
            fail_new(err, KN_ERR_INVALID_ARG,
                     "kn_reader_new: a sequence-number start position needs exactly one shard id "
                     "(a sequence number belongs to one shard)");
            return NULL;
        }
    }
    if (opts->stop_at_ms < 0) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: stop_at_ms must be >= 0 (got %" PRId64 ")", opts->stop_at_ms);
        return NULL;
    }
    if (opts->shard_count > 0 && !opts->shard_ids) {
        fail_new(err, KN_ERR_INVALID_ARG,
                 "kn_reader_new: shard_count %zu with shard_ids NULL", opts->shard_count);
        return NULL;
    }
    for (size_t i = 0; opts->shard_ids && i < opts->shard_count; i++) {
        if (!opts->shard_ids[i] || !*opts->shard_ids[i]) {
            fail_new(err, KN_ERR_INVALID_ARG,
                     "kn_reader_new: shard_ids[%zu] is NULL or empty", i);
            return NULL;
        }
    }

    r = kn__reader_alloc(client, conf, stream, opts, true, err);
    if (!r)
        return NULL;
    if (kn__rm_start(r, err) != KN_ERR_OK)
        goto fail;

    if (kn__kinesis_list_shards(client, &r->ref, NULL, &list, &e) != KN_ERR_OK) {
        kn__error_prefix(&e, "stream \"%s\"", stream);
        if (err)
            kn__error_copy(err, &e);
        goto fail;
    }
    for (size_t i = 0; i < r->sel_count; i++) {
        bool found = false;
        for (size_t k = 0; k < list.count && !found; k++)
            found = strcmp(list.shards[k].shard_id, r->sel[i]) == 0;
        if (!found) {
            fail_new(err, KN_ERR_NOT_FOUND,
                     "stream \"%s\" has no shard \"%s\" (%zu shards listed)", stream, r->sel[i],
                     list.count);
            goto fail;
        }
    }
    if (kn__lineage_init(r, &list, &e) != KN_ERR_OK) {
        if (err)
            kn__error_copy(err, &e);
        goto fail;
    }
    kn__shard_list_free(&list);
    if (kn__reader_begin(r) != KN_ERR_OK) {
        fail_new(err, KN_ERR_DESTROYED, "kn_reader_new: the client is shutting down");
        goto fail;
    }
    return r;

fail:
    kn__shard_list_free(&list);
    kn__rm_stop(r);
    kn__rc_decoder_destroy(r->dec);
    r->dec = NULL;
    reader_free(r);
    return NULL;
}

KN_API kn_reader_t *kn_reader_new(const kn_conf_t *conf, const char *stream,
                                  const kn_reader_opts_t *opts, kn_error_t *err)
{
    kn_client_t *c = kn_client_new(conf, err);
    if (!c)
        return NULL;
    kn_reader_t *r = kn_reader_new_on(c, conf, stream, opts, err);
    kn_client_destroy(c); /* the reader holds its own reference */
    return r;
}

KN_API void kn_reader_destroy(kn_reader_t *r)
{
    if (!r)
        return;
    kn_client_t *c = r->client;
    atomic_fetch_add(&r->refs, 1);
    if (kn__client_post(c, stop_task, r) == KN_ERR_OK) {
        struct timespec ts;
        kn__abs_after(&ts, STOP_WAIT_MS);
        pthread_mutex_lock(&r->lock);
        while (!r->stop_done)
            if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
                break;
        if (!r->stop_done)
            r->detached = true; /* a late stop_task leaves the (maybe shared) bound alone */
        pthread_mutex_unlock(&r->lock);
    } else {
        kn__reader_unref(r);
    }
    /* Poller-side state is ours alone now. */
    kn__rout_t *o = r->out_head;
    while (o) {
        kn__rout_t *next = o->next;
        kn__rbatch_t *b = o->batch;
        kn__ritem_t *ev = o->event;
        batch_free(b); /* o is part of the batch or the item: gone with it */
        item_free(ev);
        o = next;
    }
    r->out_head = r->out_tail = NULL;
    item_free(r->msg_event);
    r->msg_event = NULL;
    kn__buf_free(&r->msg.key);
    kn__buf_free(&r->msg.ehk);
    kn__rc_decoder_destroy(r->dec);
    r->dec = NULL;
    kn__rm_stop(r); /* the last window, before the client (CloudWatch's calls) goes */
    /* Dropping the client fails calls still in flight; their callbacks drop their references. */
    kn_client_destroy(c);
    kn__reader_unref(r);
}

/* ------------------------------------------------------------ polling side */

static void release_bytes(kn_reader_t *r, kn__rshard_t *s, int64_t bytes)
{
    if (bytes <= 0)
        return;
    pthread_mutex_lock(&r->lock);
    if (r->released_at_stop) {
        pthread_mutex_unlock(&r->lock); /* stop_task gave everything back already */
        return;
    }
    kn__rbudget_release(r->budget, bytes);
    s->queued_bytes -= bytes;
    r->queued_bytes -= bytes;
    atomic_store(&r->stats[KN_READER_STAT_PREFETCH_BYTES], r->queued_bytes);
    /* Room of its own for s: step it if it paused on its shard bound (a no-op otherwise). */
    if (s->queued_bytes < r->shard_max_bytes)
        kn__reader_mark(r, s);
    pthread_mutex_unlock(&r->lock);
    /* The kick also gives the room to whoever waits under the bound, this reader's or not. */
    kn__reader_kick(r);
}

/* Queues a batch (b) or an event item (ev) for serving, through the entry it carries. */
static void out_append(kn_reader_t *r, kn__rbatch_t *b, kn__ritem_t *ev)
{
    kn__rout_t *o = b ? &b->out : &ev->out;
    o->next = NULL;
    o->batch = b;
    o->event = ev;
    if (r->out_tail)
        r->out_tail->next = o;
    else
        r->out_head = o;
    r->out_tail = o;
}

/* Queues an event of the poller's own; false when there is no memory for it. */
static bool out_event(kn_reader_t *r, kn__rshard_t *s, kn_reader_msg_type_t ev, int64_t mbl)
{
    kn__ritem_t *it = kn__fault(KN__FP_READER_QUEUE_ALLOC) ? NULL : calloc(1, sizeof(*it));
    if (!it)
        return false;
    it->kind = KN__RI_EVENT;
    it->shard = s;
    it->ev = ev;
    it->bytes = mbl; /* events carry MillisBehindLatest here */
    out_append(r, NULL, it);
    return true;
}

kn_err_t kn__reader_parse_body(kn_buf_t *body, kn__get_records_result_t *res, kn_error_t *e)
{
    /* The usual answer is parsed in place; the general parser takes the rest. */
    kn_err_t rc = kn__get_records_parse_body(body, res, e);
    if (rc != KN_ERR_NOT_SUPPORTED)
        return rc;
    json_tokener *tok = json_tokener_new();
    json_object *j = tok ? json_tokener_parse_ex(tok, body->data ? body->data : "", (int)body->len) : NULL;
    if (j && json_tokener_get_error(tok) != json_tokener_success) {
        json_object_put(j);
        j = NULL;
    }
    json_tokener_free(tok);
    if (!j)
        return kn__error_set(e, KN_ERR_BAD_RESPONSE, "GetRecords response is not JSON (%zu bytes)",
                             body->len);
    rc = kn__get_records_parse(j, res, e);
    json_object_put(j);
    return rc;
}

static kn_err_t parse_answer(kn__ritem_t *it, kn__get_records_result_t *res, kn_error_t *e)
{
    json_object *j = it->json;
    it->json = NULL;
    if (!j)
        return kn__reader_parse_body(&it->body, res, e);
    kn_err_t rc = kn__get_records_parse(j, res, e);
    json_object_put(j);
    return rc;
}

/* Parses one answer, queues its records and events, and hands back what the loop needs. */
static void take_answer(kn_reader_t *r, kn__ritem_t *it)
{
    kn__rshard_t *s = it->shard;
    kn__handback_t hb;
    memset(&hb, 0, sizeof(hb));
    kn__rbatch_t *b = kn__fault(KN__FP_READER_BATCH_ALLOC) ? NULL : calloc(1, sizeof(*b));
    kn_error_t e;
    kn__error_clear(&e);
    if (!b) {
        kn__error_set(&e, KN_ERR_NOMEM, "out of memory");
        hb.retry = true;
        kn__error_copy(&hb.err, &e);
        release_bytes(r, s, it->bytes);
        goto handback;
    }
    b->shard = s;
    b->bytes = it->bytes;
    if (parse_answer(it, &b->res, &e) != KN_ERR_OK) {
        hb.retry = true;
        kn__error_copy(&hb.err, &e);
        release_bytes(r, s, it->bytes);
        batch_free(b);
        goto handback;
    }
    kn__rstat_add(r, KN_READER_STAT_GETRECORDS, 1);
    kn__get_records_result_t *res = &b->res;
    b->count = res->count;
    if (r->opts.stop_at_ms > 0) {
        for (size_t i = 0; i < res->count; i++) {
            if (res->records[i].arrival_ms >= r->opts.stop_at_ms) {
                b->count = i;
                hb.stop = true;
                break;
            }
        }
    }
    hb.empty = res->count == 0;
    hb.records = res->count;
    hb.caught_up = res->count == 0 && res->millis_behind_latest == 0;
    if (hb.caught_up && r->opts.stop_at_ms > 0 && kn__wall_ms() >= r->opts.stop_at_ms)
        hb.stop = true;
    if (res->count > 0)
        hb.last_seq = strdup(res->records[res->count - 1].sequence_number);
    if (!hb.stop) {
        hb.next_iterator = res->next_iterator;
        res->next_iterator = NULL;
        hb.children = res->child_shards;
        hb.child_count = res->child_count;
        res->child_shards = NULL;
        res->child_count = 0;
    }
    kn__rstat_add(r, KN_READER_STAT_KINESIS_RECORDS, (int64_t)b->count);
    int64_t mbl = res->millis_behind_latest;
    if (r->metrics) {
        if (mbl >= 0)
            kn__mbatch_add(&r->mb, KN__RM_MBL, r->stream, s->id, NULL, (double)mbl, 1);
        kn__mbatch_commit(&r->mb);
    }
    if (b->count > 0 || (r->keep_empty && !hb.stop)) {
        if (b->count > 0)
            s->p_caught_up = false;
        out_append(r, b, NULL);
    } else {
        release_bytes(r, s, b->bytes);
        batch_free(b);
    }
    /* Without memory for the event, the next caught-up read of the shard says it instead. */
    if (hb.caught_up && !s->p_caught_up && !hb.stop)
        s->p_caught_up = out_event(r, s, KN_READER_SHARD_CAUGHT_UP, mbl);
    hb.said_caught_up = hb.caught_up && s->p_caught_up;
    if (hb.stop && !s->p_stopped)
        s->p_stopped = out_event(r, s, KN_READER_SHARD_STOPPED, mbl);
handback:
    hb.ready = true;
    pthread_mutex_lock(&r->lock);
    kn__handback_clear(&s->hb);
    s->hb = hb;
    kn__reader_mark(r, s);
    pthread_mutex_unlock(&r->lock);
    kn__reader_kick(r);
}

/* Moves the inbox into the serve queue, parsing answers. */
static void drain_inbox(kn_reader_t *r)
{
    if (r->efd >= 0) {
        uint64_t v;
        ssize_t n = read(r->efd, &v, sizeof(v));
        (void)n;
    }
    pthread_mutex_lock(&r->lock);
    kn__ritem_t *it = r->in_head;
    r->in_head = r->in_tail = NULL;
    atomic_store(&r->in_pending, false);
    pthread_mutex_unlock(&r->lock);
    while (it) {
        kn__ritem_t *next = it->next;
        it->next = NULL;
        if (it->kind == KN__RI_ANSWER) {
            take_answer(r, it);
            item_free(it);
        } else {
            it->bytes = -1;
            out_append(r, NULL, it);
        }
        it = next;
    }
}

/* A record of shard s goes to the application: the counters and the metrics. Poller side. */
static void delivered(kn_reader_t *r, const kn__rshard_t *s, size_t len)
{
    kn__rstat_add(r, KN_READER_STAT_RECORDS, 1);
    kn__rstat_add(r, KN_READER_STAT_BYTES, (int64_t)len);
    if (r->metrics) {
        kn__mbatch_add(&r->mb, KN__RM_RECORDS, r->stream, s->id, NULL, 1, 1);
        kn__mbatch_add(&r->mb, KN__RM_BYTES, r->stream, s->id, NULL, (double)len, 1);
    }
}

static void msg_reset(kn_reader_t *r)
{
    kn_reader_msg_t *m = &r->msg;
    kn_buf_t key = m->key, ehk = m->ehk;
    kn__buf_reset(&key);
    kn__buf_reset(&ehk);
    memset(m, 0, sizeof(*m));
    m->key = key;
    m->ehk = ehk;
    m->stream = r->stream;
    m->errstr = "";
    m->arrival_ms = -1;
    m->millis_behind = -1;
}

/* Unlinks the head entry (its batch or item is freed by the caller). */
static void pop_head(kn_reader_t *r)
{
    kn__rout_t *o = r->out_head;
    r->out_head = o->next;
    if (!r->out_head)
        r->out_tail = NULL;
}

static int set_key(kn_buf_t *b, const char *p, size_t n)
{
    kn__buf_reset(b);
    if (kn__buf_append(b, p ? p : "", n) != 0)
        return -1;
    return kn__buf_reserve(b, 1); /* keeps data non-NULL and NUL-terminated */
}

/* The next message from the serve queue, or NULL when it is empty. */
static const kn_reader_msg_t *next_message(kn_reader_t *r)
{
    kn_reader_msg_t *m = &r->msg;
    while (r->out_head) {
        kn__rout_t *o = r->out_head;
        if (o->event) {
            kn__ritem_t *ev = o->event;
            pop_head(r);
            msg_reset(r);
            m->type = ev->ev;
            m->shard_id = ev->shard ? ev->shard->id : NULL;
            m->err = ev->err;
            m->errstr = ev->errstr ? ev->errstr : "";
            m->children = ev->children;
            m->child_count = ev->child_count;
            m->millis_behind = ev->bytes;
            if (ev->ev == KN_READER_AT_END) {
                m->stream = r->stream;
                atomic_store(&r->at_end, true);
            }
            r->msg_event = ev;
            return m;
        }
        kn__rbatch_t *b = o->batch;
        kn__rshard_t *s = b->shard;
        const kn__get_records_result_t *res = &b->res;
        if (r->opts.raw) {
            if (b->next < b->count) {
                const kn__record_t *rec = &res->records[b->next++];
                msg_reset(r);
                m->type = KN_READER_RECORD;
                m->shard_id = s->id;
                m->data = rec->data;
                m->data_len = rec->data_len;
                if (set_key(&m->key, rec->partition_key, rec->partition_key_len) != 0)
                    return NULL;
                m->seq = rec->sequence_number;
                m->arrival_ms = rec->arrival_ms;
                m->millis_behind = res->millis_behind_latest;
                delivered(r, s, rec->data_len);
                return m;
            }
        } else {
            if (r->decoded && r->decoded_next < r->decoded->count) {
                const kn__record_t *rec = &res->records[b->next - 1];
                const kn__rc_rec_t *u = &r->decoded->records[r->decoded_next++];
                msg_reset(r);
                m->type = KN_READER_RECORD;
                m->shard_id = s->id;
                m->data = u->data;
                m->data_len = u->data_len;
                if (set_key(&m->key, u->partition_key, u->partition_key_len) != 0 ||
                    (u->explicit_hash_key &&
                     set_key(&m->ehk, u->explicit_hash_key, u->explicit_hash_key_len) != 0))
                    return NULL;
                m->seq = rec->sequence_number;
                m->sub_seq = u->sub_sequence;
                m->aggregated = r->decoded->aggregated;
                m->out_of_range = u->out_of_range;
                m->arrival_ms = rec->arrival_ms;
                m->millis_behind = res->millis_behind_latest;
                m->err = u->err;
                m->errstr = u->err_msg ? u->err_msg : "";
                if (u->err != KN_ERR_OK)
                    kn__rstat_add(r, KN_READER_STAT_DECODE_ERRORS, 1);
                delivered(r, s, u->data_len);
                return m;
            }
            r->decoded = NULL;
            if (b->next < b->count) {
                const kn__record_t *rec = &res->records[b->next++];
                const kn__rc_decoded_t *d = NULL;
                kn_error_t e;
                kn__error_clear(&e);
                bool ok = kn__rbatch_digest_ok(b, b->next - 1);
                if (kn__rc_decode_checked(r->dec, rec->data, rec->data_len, rec->partition_key,
                                          rec->partition_key_len, NULL, 0, ok, &d, &e) != KN_ERR_OK) {
                    b->next--; /* out of memory: try this record again at the next poll */
                    return NULL;
                }
                size_t oor = kn__rc_check_range(r->dec, s->start_hash, s->end_hash);
                if (oor) {
                    kn__rstat_add(r, KN_READER_STAT_OUT_OF_RANGE, (int64_t)oor);
                    if (r->metrics)
                        kn__mbatch_add(&r->mb, KN__RM_OUT_OF_RANGE, r->stream, s->id, NULL, (double)oor, 1);
                }
                if (d->aggregated)
                    kn__rstat_add(r, KN_READER_STAT_AGGREGATES, 1);
                r->decoded = d;
                r->decoded_next = 0;
                continue;
            }
        }
        /* The batch is served. */
        pop_head(r);
        release_bytes(r, s, b->bytes);
        batch_free(b);
    }
    return NULL;
}

KN_API const kn_reader_msg_t *kn_reader_poll(kn_reader_t *r, int timeout_ms)
{
    if (!r)
        return NULL;
    item_free(r->msg_event);
    r->msg_event = NULL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : kn__mono_ms() + timeout_ms;
    for (;;) {
        /*
         * The inbox (a lock and a read of the eventfd) only when the loop
         * has put something there: once per answer rather than once per
         * record. Taking answers at once keeps reads going (the next
         * iterator is in the answer) while the application works through
         * what is queued; order is kept, the queue being older.
         */
        if (atomic_load(&r->in_pending))
            drain_inbox(r);
        const kn_reader_msg_t *m = next_message(r);
        if (m)
            return m;
        drain_inbox(r); /* clears the eventfd before waiting */
        m = next_message(r);
        if (m)
            return m;
        int64_t now = kn__mono_ms();
        if (now >= deadline)
            return NULL;
        pthread_mutex_lock(&r->lock);
        if (!r->in_head) {
            if (deadline == INT64_MAX) {
                pthread_cond_wait(&r->cond, &r->lock);
            } else {
                struct timespec ts;
                kn__abs_after(&ts, deadline - now);
                pthread_cond_timedwait(&r->cond, &r->lock, &ts);
            }
        }
        pthread_mutex_unlock(&r->lock);
    }
}

bool kn__reader_take(kn_reader_t *r, int timeout_ms, kn__rtake_t *out)
{
    out->batch = NULL;
    out->event = NULL;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : kn__mono_ms() + timeout_ms;
    for (;;) {
        drain_inbox(r);
        kn__rout_t *o = r->out_head;
        if (o) {
            pop_head(r);
            out->batch = o->batch;
            out->event = o->event;
            return true;
        }
        int64_t now = kn__mono_ms();
        if (now >= deadline)
            return false;
        pthread_mutex_lock(&r->lock);
        if (!r->in_head) {
            struct timespec ts;
            kn__abs_after(&ts, deadline == INT64_MAX ? 1000 : deadline - now);
            pthread_cond_timedwait(&r->cond, &r->lock, &ts);
        }
        pthread_mutex_unlock(&r->lock);
    }
}

void kn__reader_batch_done(kn_reader_t *r, kn__rbatch_t *b)
{
    if (!b)
        return;
    release_bytes(r, b->shard, b->bytes);
    batch_free(b);
}

void kn__reader_item_free(kn__ritem_t *it) { item_free(it); }

KN_API int kn_reader_fd(kn_reader_t *r) { return r ? r->efd : -1; }

KN_API bool kn_reader_at_end(kn_reader_t *r) { return r && atomic_load(&r->at_end); }

/* ------------------------------------------------------------ accessors */

KN_API kn_reader_msg_type_t kn_reader_msg_type(const kn_reader_msg_t *m)
{
    return m ? m->type : KN_READER_RECORD;
}

KN_API const char *kn_reader_msg_type_name(kn_reader_msg_type_t t)
{
    switch (t) {
    case KN_READER_RECORD: return "KN_READER_RECORD";
    case KN_READER_SHARD_STARTED: return "KN_READER_SHARD_STARTED";
    case KN_READER_SHARD_CAUGHT_UP: return "KN_READER_SHARD_CAUGHT_UP";
    case KN_READER_SHARD_END: return "KN_READER_SHARD_END";
    case KN_READER_SHARD_STOPPED: return "KN_READER_SHARD_STOPPED";
    case KN_READER_SHARD_ERROR: return "KN_READER_SHARD_ERROR";
    case KN_READER_AT_END: return "KN_READER_AT_END";
    }
    return "KN_READER_UNKNOWN";
}

KN_API const char *kn_reader_msg_stream(const kn_reader_msg_t *m) { return m ? m->stream : NULL; }
KN_API const char *kn_reader_msg_shard_id(const kn_reader_msg_t *m)
{
    return m ? m->shard_id : NULL;
}

KN_API const void *kn_reader_msg_data(const kn_reader_msg_t *m, size_t *len)
{
    if (len)
        *len = m ? m->data_len : 0;
    return m ? m->data : NULL;
}

KN_API const char *kn_reader_msg_partition_key(const kn_reader_msg_t *m, size_t *len)
{
    bool rec = m && m->type == KN_READER_RECORD;
    if (len)
        *len = rec ? m->key.len : 0;
    return rec ? m->key.data : NULL;
}

KN_API const char *kn_reader_msg_explicit_hash_key(const kn_reader_msg_t *m)
{
    return m && m->type == KN_READER_RECORD && m->ehk.len > 0 ? m->ehk.data : NULL;
}

KN_API const char *kn_reader_msg_sequence_number(const kn_reader_msg_t *m)
{
    return m ? m->seq : NULL;
}
KN_API uint64_t kn_reader_msg_sub_sequence(const kn_reader_msg_t *m) { return m ? m->sub_seq : 0; }
KN_API bool kn_reader_msg_aggregated(const kn_reader_msg_t *m) { return m && m->aggregated; }
KN_API bool kn_reader_msg_out_of_range(const kn_reader_msg_t *m) { return m && m->out_of_range; }
KN_API int64_t kn_reader_msg_arrival_ms(const kn_reader_msg_t *m) { return m ? m->arrival_ms : -1; }
KN_API int64_t kn_reader_msg_millis_behind(const kn_reader_msg_t *m)
{
    return m ? m->millis_behind : -1;
}
KN_API kn_err_t kn_reader_msg_err(const kn_reader_msg_t *m)
{
    return m ? m->err : KN_ERR_INVALID_ARG;
}
KN_API const char *kn_reader_msg_errstr(const kn_reader_msg_t *m)
{
    return m && m->errstr ? m->errstr : "";
}

KN_API size_t kn_reader_msg_child_count(const kn_reader_msg_t *m)
{
    return m && m->type == KN_READER_SHARD_END ? m->child_count : 0;
}

KN_API const char *kn_reader_msg_child_shard_id(const kn_reader_msg_t *m, size_t i)
{
    return m && m->type == KN_READER_SHARD_END && i < m->child_count ? m->children[i] : NULL;
}

/* ------------------------------------------------------------ statistics */

static const char *const stat_names[KN_READER_STAT__COUNT] = {
    "records",         "bytes",
    "kinesis_records", "aggregates",
    "out_of_range",    "decode_errors",
    "getrecords",      "throttles",
    "retries",         "iterator_renewals",
    "shards_active",   "shards_done",
    "prefetch_bytes",  "prefetch_max_bytes",
    "pauses",          "idle_reads",
};

KN_API int64_t kn_reader_stat(kn_reader_t *r, kn_reader_stat_t which)
{
    if (!r || (int)which < 0 || which >= KN_READER_STAT__COUNT)
        return -1;
    return atomic_load(&r->stats[which]);
}

KN_API const char *kn_reader_stat_name(kn_reader_stat_t which)
{
    if ((int)which < 0 || which >= KN_READER_STAT__COUNT)
        return NULL;
    return stat_names[which];
}
