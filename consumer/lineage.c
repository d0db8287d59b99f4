/*
 * Shard lineage on the loop thread: which known shards start, when a child
 * may start (every parent read to its end, or not read by this reader), how
 * children are found (ChildShards from the last GetRecords answer, else an
 * asynchronous ListShards), and when the reader is at its end.
 *
 * Parents before children: a child's first GetRecords is sent only after its
 * parents' last answers were handed back by the poller, which queued their
 * records first; so the serve queue holds every parent record before any
 * record of the child.
 */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reader_int.h"

kn__rshard_t *kn__lineage_find(kn_reader_t *r, const char *id)
{
    if (!id)
        return NULL;
    for (kn__rshard_t *s = r->shards; s; s = s->next)
        if (strcmp(s->id, id) == 0)
            return s;
    return NULL;
}

static char *dup_or_null(const char *s) { return s && *s ? strdup(s) : NULL; }

static kn__rshard_t *shard_add(kn_reader_t *r, const char *id, const char *parent,
                               const char *adjacent, kn__hashkey_t start, kn__hashkey_t end)
{
    kn__rshard_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->r = r;
    s->id = strdup(id);
    s->parent = dup_or_null(parent);
    s->adjacent = dup_or_null(adjacent);
    if (!s->id || (parent && *parent && !s->parent) || (adjacent && *adjacent && !s->adjacent)) {
        free(s->id);
        free(s->parent);
        free(s->adjacent);
        free(s);
        return NULL;
    }
    s->start_hash = start;
    s->end_hash = end;
    s->lstate = KN__RL_IGNORED;
    /* Children read from their beginning, or from the timestamp the reader started at. */
    if (r->opts.start.type == KN_POS_AT_TIMESTAMP) {
        s->pos_type = KN__IT_AT_TIMESTAMP;
        s->pos_ts_ms = r->opts.start.timestamp_ms;
    } else {
        s->pos_type = KN__IT_TRIM_HORIZON;
    }
    if (r->shards_tail)
        r->shards_tail->next = s;
    else
        r->shards = s;
    r->shards_tail = s;
    return s;
}

kn_err_t kn__lineage_add_one(kn_reader_t *r, const kn__shard_t *sh, const kn__iterator_pos_t *start)
{
    kn__rshard_t *s = shard_add(r, sh->shard_id, sh->parent_shard_id, sh->adjacent_parent_shard_id,
                                sh->start_hash, sh->end_hash);
    if (!s)
        return KN_ERR_NOMEM;
    s->lstate = KN__RL_PENDING;
    s->start_now = true;
    s->in_listing = true;
    s->pos_type = start->type;
    s->pos_ts_ms = start->timestamp_ms;
    if (start->sequence_number && !(s->pos_seq = strdup(start->sequence_number)))
        return KN_ERR_NOMEM;
    return KN_ERR_OK;
}

static kn__iterator_type_t it_type(kn_position_type_t t)
{
    switch (t) {
    case KN_POS_LATEST: return KN__IT_LATEST;
    case KN_POS_AT_TIMESTAMP: return KN__IT_AT_TIMESTAMP;
    case KN_POS_AT_SEQUENCE_NUMBER: return KN__IT_AT_SEQUENCE_NUMBER;
    case KN_POS_AFTER_SEQUENCE_NUMBER: return KN__IT_AFTER_SEQUENCE_NUMBER;
    case KN_POS_TRIM_HORIZON: break;
    }
    return KN__IT_TRIM_HORIZON;
}

kn_err_t kn__lineage_init(kn_reader_t *r, const kn__shard_list_t *list, kn_error_t *err)
{
    for (size_t i = 0; i < list->count; i++) {
        const kn__shard_t *sh = &list->shards[i];
        kn__rshard_t *s = shard_add(r, sh->shard_id, sh->parent_shard_id,
                                    sh->adjacent_parent_shard_id, sh->start_hash, sh->end_hash);
        if (!s)
            return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        s->listed_closed = !kn__shard_is_open(sh);
        s->in_listing = true;
    }
    for (kn__rshard_t *s = r->shards; s; s = s->next) {
        bool start = false;
        if (r->sel_count > 0) {
            for (size_t k = 0; k < r->sel_count && !start; k++)
                start = strcmp(r->sel[k], s->id) == 0;
            s->lstate = start ? KN__RL_PENDING : KN__RL_IGNORED;
        } else if (r->opts.start.type == KN_POS_LATEST) {
            start = !s->listed_closed;
            s->lstate = start ? KN__RL_PENDING : KN__RL_IGNORED;
        } else {
            start = !kn__lineage_find(r, s->parent) && !kn__lineage_find(r, s->adjacent);
            s->lstate = KN__RL_PENDING;
        }
        if (start) {
            s->start_now = true;
            s->pos_type = it_type(r->opts.start.type);
            s->pos_ts_ms = r->opts.start.timestamp_ms;
            if (r->start_seq && !(s->pos_seq = strdup(r->start_seq)))
                return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
        }
    }
    return KN_ERR_OK;
}

/* Whether the parent id lets a child start; *dead when it never will (stopped or failed). */
static bool parent_ok(kn_reader_t *r, const char *id, bool *dead)
{
    kn__rshard_t *p = kn__lineage_find(r, id);
    if (!p)
        return true;
    switch (p->lstate) {
    case KN__RL_DONE:
    case KN__RL_IGNORED: return true;
    case KN__RL_FINISHED: *dead = true; return false;
    default: return false;
    }
}

/* Starts every pending shard whose parents allow it; drops those whose parents never will. */
static void start_pending(kn_reader_t *r)
{
    if (r->single)
        return; /* a consumer starts shards as it takes their leases */
    bool again = true;
    while (again && !r->stopping) {
        again = false;
        for (kn__rshard_t *s = r->shards; s; s = s->next) {
            if (s->lstate != KN__RL_PENDING || s->start_now)
                continue;
            bool dead = false;
            bool ok1 = parent_ok(r, s->parent, &dead);
            bool ok2 = parent_ok(r, s->adjacent, &dead);
            if (dead) {
                s->lstate = KN__RL_IGNORED;
                again = true;
            } else if (ok1 && ok2) {
                kn__walker_start(r, s);
                again = true;
            }
        }
    }
}

void kn__lineage_begin(kn_reader_t *r)
{
    for (kn__rshard_t *s = r->shards; s; s = s->next) {
        if (s->start_now) {
            s->start_now = false;
            kn__walker_start(r, s);
        }
    }
    start_pending(r);
    kn__lineage_check_end(r);
}

void kn__lineage_check_end(kn_reader_t *r)
{
    if (r->at_end_sent || r->stopping || r->listing || r->single)
        return;
    for (kn__rshard_t *s = r->shards; s; s = s->next) {
        if (s->resolving || s->lstate == KN__RL_PENDING)
            return;
        /* With a stop time, a shard is at its end only once it stopped (kcat's -o e@ts). */
        if (s->lstate == KN__RL_ACTIVE && (!s->ever_caught_up || r->opts.stop_at_ms > 0))
            return;
    }
    r->at_end_sent = true;
    kn__reader_push_event(r, NULL, KN_READER_AT_END, KN_ERR_OK, NULL, NULL, 0);
}

static void shard_over(kn_reader_t *r, kn__rshard_t *s, kn__rl_state_t st)
{
    s->lstate = st;
    kn__rstat_add(r, KN_READER_STAT_SHARDS_ACTIVE, -1);
    kn__rstat_add(r, KN_READER_STAT_SHARDS_DONE, 1);
}

void kn__lineage_shard_finished(kn_reader_t *r, kn__rshard_t *s)
{
    shard_over(r, s, KN__RL_FINISHED);
    start_pending(r);
    kn__lineage_check_end(r);
}

/* A child's description for the consumer: id, parents, hash range (copied). 0, or -1 without memory. */
static int child_info_set(kn__child_shard_t *out, const kn__rshard_t *c)
{
    memset(out, 0, sizeof(*out));
    out->start_hash = c->start_hash;
    out->end_hash = c->end_hash;
    out->shard_id = strdup(c->id);
    size_t np = (c->parent ? 1 : 0) + (c->adjacent ? 1 : 0);
    out->parent_shards = np ? calloc(np, sizeof(char *)) : NULL;
    if (!out->shard_id || (np && !out->parent_shards)) {
        free(out->shard_id);
        free(out->parent_shards);
        return -1;
    }
    if (c->parent)
        out->parent_shards[out->parent_count++] = strdup(c->parent);
    if (c->adjacent)
        out->parent_shards[out->parent_count++] = strdup(c->adjacent);
    return 0;
}

/* Delivers SHARD_END for s with its children (known shards naming s as a parent) and starts them. */
static void end_with_children(kn_reader_t *r, kn__rshard_t *s)
{
    size_t n = 0;
    for (kn__rshard_t *c = r->shards; c; c = c->next)
        if ((c->parent && strcmp(c->parent, s->id) == 0) ||
            (c->adjacent && strcmp(c->adjacent, s->id) == 0))
            n++;
    char **ids = n ? calloc(n, sizeof(char *)) : NULL;
    size_t k = 0;
    kn__child_shard_t *info = r->single && n ? calloc(n, sizeof(*info)) : NULL;
    size_t ki = 0;
    for (kn__rshard_t *c = r->shards; c; c = c->next) {
        if (!((c->parent && strcmp(c->parent, s->id) == 0) ||
              (c->adjacent && strcmp(c->adjacent, s->id) == 0)))
            continue;
        if (c->lstate == KN__RL_IGNORED && !c->started_once && !r->single)
            c->lstate = KN__RL_PENDING;
        if (ids && (ids[k] = strdup(c->id)))
            k++;
        if (info && child_info_set(&info[ki], c) == 0)
            ki++;
    }
    KN_LOG(kn__client_log(r->client), KN_LOG_DEBUG, KN_DBG_CONSUMER, "shard %s read to its end; %zu children",
           s->id, n);
    if (r->single) {
        /* The consumer makes the children's leases from this: ids, parents and hash ranges. */
        kn__ritem_t *it = calloc(1, sizeof(*it));
        if (it) {
            it->kind = KN__RI_EVENT;
            it->shard = s;
            it->ev = KN_READER_SHARD_END;
            it->children = ids;
            it->child_count = k;
            it->child_info = info;
            it->child_info_count = ki;
            kn__reader_push(r, it);
        } else {
            kn__child_shards_free(info, ki);
            kn__reader_push_event(r, s, KN_READER_SHARD_END, KN_ERR_OK, NULL, ids, k);
        }
        return;
    }
    kn__reader_push_event(r, s, KN_READER_SHARD_END, KN_ERR_OK, NULL, ids, k);
    start_pending(r);
}

/* ------------------------------------------------------------ ListShards */

static void list_page(kn_reader_t *r, const char *token);

static void list_complete(kn_reader_t *r)
{
    for (size_t i = 0; i < r->page_acc.count; i++) {
        const kn__shard_t *sh = &r->page_acc.shards[i];
        kn__rshard_t *s = kn__lineage_find(r, sh->shard_id);
        if (!s)
            s = shard_add(r, sh->shard_id, sh->parent_shard_id, sh->adjacent_parent_shard_id,
                          sh->start_hash, sh->end_hash);
        if (s) {
            s->listed_closed = !kn__shard_is_open(sh);
            s->in_listing = true;
        }
    }
    kn__shard_list_free(&r->page_acc);
    r->listing = 0;
    r->list_fails = 0;
    for (kn__rshard_t *s = r->shards; s; s = s->next) {
        if (s->resolving) {
            s->resolving = false;
            end_with_children(r, s);
        }
    }
    if (r->listing_again) {
        r->listing_again = false;
        list_page(r, NULL);
    }
    kn__lineage_check_end(r);
}

static void on_list_timer(uv_timer_t *t)
{
    kn_reader_t *r = t->data;
    if (!r->stopping)
        list_page(r, NULL);
}

static void on_list_timer_closed(uv_handle_t *h) { kn__reader_unref(h->data); }

void kn__lineage_close(kn_reader_t *r)
{
    if (r->list_timer_init) {
        r->list_timer_init = false;
        uv_close((uv_handle_t *)&r->list_timer, on_list_timer_closed);
    }
}

static void list_failed(kn_reader_t *r, const kn_error_t *e)
{
    kn__shard_list_free(&r->page_acc);
    r->listing_again = false;
    if (kn__reader_retriable(e)) {
        /*
         * A shard read to its end waits for its children: list again after a
         * backoff (a control-plane or credential outage passes; the shard is
         * not given up).
         */
        long delay = kn__aws_backoff_ms(r->list_fails++, (long)r->retry_base_ms, (long)r->retry_cap_ms);
        KN_LOG(kn__client_log(r->client), r->list_fails == 1 ? KN_LOG_WARN : KN_LOG_DEBUG, KN_DBG_CONSUMER,
               "stream \"%s\": listing the children of finished shards failed (%s); again in %ld ms",
               r->stream, e->message, delay);
        kn__rstat_add(r, KN_READER_STAT_RETRIES, 1);
        if (!r->list_timer_init) {
            uv_timer_init(kn__client_loop(r->client), &r->list_timer);
            r->list_timer.data = r;
            r->list_timer_init = true;
            atomic_fetch_add(&r->refs, 1); /* dropped when the timer is closed */
        }
        uv_timer_start(&r->list_timer, on_list_timer, (uint64_t)delay, 0);
        return; /* r->listing stays 1: the shards keep waiting */
    }
    r->listing = 0;
    for (kn__rshard_t *s = r->shards; s; s = s->next) {
        if (!s->resolving)
            continue;
        s->resolving = false;
        char msg[1024];
        snprintf(msg, sizeof(msg),
                 "shard %s of stream \"%s\" is read to its end, but its children "
                 "could not be listed: %s",
                 s->id, r->stream, e->message);
        KN_LOG(kn__client_log(r->client), KN_LOG_WARN, KN_DBG_CONSUMER, "%s", msg);
        kn__reader_push_event(r, s, KN_READER_SHARD_ERROR, e->code, msg, NULL, 0);
    }
    kn__lineage_check_end(r);
}

static void on_list_page(kn__aws_result_t *res, void *opaque)
{
    kn_reader_t *r = opaque;
    if (r->stopping) {
        kn__reader_unref(r);
        return;
    }
    kn_error_t e;
    kn__error_clear(&e);
    if (res->err.code != KN_ERR_OK) {
        list_failed(r, &res->err);
    } else {
        char *token = NULL;
        if (kn__list_shards_parse(res->json, &r->page_acc, &token, &e) != KN_ERR_OK)
            list_failed(r, &e);
        else if (token)
            list_page(r, token);
        else
            list_complete(r);
        free(token);
    }
    kn__reader_unref(r);
}

static void list_page(kn_reader_t *r, const char *token)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__aws_req_t req = {0};
    req.service = KN__SVC_KINESIS;
    req.operation = "ListShards";
    req.cb = on_list_page;
    req.opaque = r;
    r->listing = 1;
    if (kn__list_shards_build(&req.body, &r->ref, NULL, token, &e) != KN_ERR_OK) {
        kn__buf_free(&req.body);
        list_failed(r, &e);
        return;
    }
    atomic_fetch_add(&r->refs, 1);
    if (kn__aws_call(r->client, &req, &e) != KN_ERR_OK) {
        kn__reader_unref(r);
        list_failed(r, &e);
    }
}

void kn__lineage_shard_done(kn_reader_t *r, kn__rshard_t *s, const kn__child_shard_t *children,
                            size_t child_count)
{
    shard_over(r, s, KN__RL_DONE);
    if (child_count > 0) {
        for (size_t i = 0; i < child_count; i++) {
            const kn__child_shard_t *cs = &children[i];
            if (kn__lineage_find(r, cs->shard_id))
                continue;
            shard_add(r, cs->shard_id, cs->parent_count > 0 ? cs->parent_shards[0] : NULL,
                      cs->parent_count > 1 ? cs->parent_shards[1] : NULL, cs->start_hash,
                      cs->end_hash);
        }
        end_with_children(r, s);
        kn__lineage_check_end(r);
        return;
    }
    /* kinesalite and moto send no ChildShards: find the children in a listing. */
    s->resolving = true;
    if (r->listing)
        r->listing_again = true;
    else
        list_page(r, NULL);
}
