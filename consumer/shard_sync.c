/*
 * Shard sync: the stream's shards against the lease table. Every shard that
 * should be read gets a lease (a conditional PutItem: whoever comes first
 * creates it, the others' writes fail harmlessly):
 *   - the first time (no shard of the listing has a lease yet) at the
 *     configured initial position: LATEST for the open shards only (closed
 *     shards hold nothing newer than the tip), TRIM_HORIZON or AT_TIMESTAMP
 *     for every shard (parents then wait for nothing and children for their
 *     parents);
 *   - later, a shard without a lease whose ancestor has one (the children of
 *     a split or merge, however many reshards deep) at TRIM_HORIZON, so that
 *     nothing written to it after its parents closed is skipped; an open
 *     shard with no leased ancestor (a root, or a lineage cleaned up) at the
 *     initial position if it is a root, else TRIM_HORIZON; closed shards with
 *     no leased ancestor are done (or were never wanted) and get none.
 * Parents are recorded in parentShardId, and a child is processed only once
 * every parent still in the table is at SHARD_END (lease_scan.c), so records
 * of one key stay in order across a reshard. Runs at start, every
 * consumer.shard.sync.ms, and for the children named at a shard's end.
 *
 * The listing is asynchronous (ListShards, every page) on the loop; the plan
 * (kn__sync_plan) is a pure function of the listing and the keys in the
 * table, tested on its own.
 */
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "consumer_int.h"
#include "shard_sync.h"

/* ------------------------------------------------------------ the plan */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct plan_ctx_s {
    const kn__shard_list_t *shards;
    const char *const *keys;
    size_t n_keys;
    size_t *by_id;       /* shard indexes sorted by id */
    signed char *memo;   /* leased ancestor: -1 unknown, 0 no, 1 yes, 2 being computed */
} plan_ctx_t;

static const plan_ctx_t *cmp_ctx;
static int by_id_cmp(const void *a, const void *b)
{
    const kn__shard_t *v = cmp_ctx->shards->shards;
    return strcmp(v[*(const size_t *)a].shard_id, v[*(const size_t *)b].shard_id);
}

static bool has_lease(const plan_ctx_t *p, const char *id)
{
    return id && p->n_keys > 0 && bsearch(&id, p->keys, p->n_keys, sizeof(*p->keys), str_cmp) != NULL;
}

/* Index of the shard with this id in the listing, or -1. */
static long find_shard(const plan_ctx_t *p, const char *id)
{
    size_t lo = 0, hi = p->shards->count;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(p->shards->shards[p->by_id[mid]].shard_id, id);
        if (c == 0)
            return (long)p->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Whether some ancestor of shard i (through the listing) has a lease. */
static bool leased_ancestor(plan_ctx_t *p, size_t i)
{
    if (p->memo[i] == 0 || p->memo[i] == 1)
        return p->memo[i] == 1;
    if (p->memo[i] == 2)
        return false; /* a cycle in a malformed listing: stop here */
    p->memo[i] = 2;
    const kn__shard_t *s = &p->shards->shards[i];
    const char *parents[2] = {s->parent_shard_id, s->adjacent_parent_shard_id};
    bool yes = false;
    for (int k = 0; k < 2 && !yes; k++) {
        if (!parents[k])
            continue;
        if (has_lease(p, parents[k])) {
            yes = true;
            break;
        }
        long j = find_shard(p, parents[k]);
        if (j >= 0 && leased_ancestor(p, (size_t)j))
            yes = true;
    }
    p->memo[i] = yes ? 1 : 0;
    return yes;
}

static const char *position_name(kn__initpos_t pos)
{
    switch (pos) {
    case KN__POS_LATEST: return KN__CK_LATEST;
    case KN__POS_AT_TIMESTAMP: return KN__CK_AT_TIMESTAMP;
    case KN__POS_TRIM_HORIZON: break;
    }
    return KN__CK_TRIM_HORIZON;
}

kn_err_t kn__sync_plan(const kn__shard_list_t *shards, const char *const *keys, size_t n_keys,
                       kn__initpos_t initial, kn__sync_new_t **out, size_t *count, bool *first)
{
    *out = NULL;
    *count = 0;
    size_t n = shards->count;
    plan_ctx_t p = {shards, keys, n_keys, NULL, NULL};
    *first = true;
    for (size_t i = 0; i < n; i++)
        if (has_lease(&p, shards->shards[i].shard_id))
            *first = false;
    if (n == 0)
        return KN_ERR_OK;
    p.by_id = malloc(n * sizeof(*p.by_id));
    p.memo = malloc(n);
    kn__sync_new_t *v = malloc(n * sizeof(*v));
    if (!p.by_id || !p.memo || !v) {
        free(p.by_id);
        free(p.memo);
        free(v);
        return KN_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        p.by_id[i] = i;
    cmp_ctx = &p; /* loop thread only: one plan at a time */
    qsort(p.by_id, n, sizeof(*p.by_id), by_id_cmp);
    memset(p.memo, -1, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const kn__shard_t *s = &shards->shards[i];
        if (has_lease(&p, s->shard_id))
            continue;
        const char *ck = NULL;
        bool open = kn__shard_is_open(s);
        if (*first) {
            if (initial != KN__POS_LATEST || open)
                ck = position_name(initial);
        } else if (leased_ancestor(&p, i)) {
            ck = KN__CK_TRIM_HORIZON;
        } else if (open) {
            bool root = !s->parent_shard_id && !s->adjacent_parent_shard_id;
            ck = root ? position_name(initial) : KN__CK_TRIM_HORIZON;
        }
        if (ck) {
            v[k].shard = i;
            v[k].checkpoint = ck;
            k++;
        }
    }
    free(p.by_id);
    free(p.memo);
    if (k == 0) {
        free(v);
        return KN_ERR_OK;
    }
    *out = v;
    *count = k;
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ leases from shards */

kn_err_t kn__sync_lease_of(const kn__shard_t *s, const char *checkpoint, kn__lease_t *l)
{
    memset(l, 0, sizeof(*l));
    char start[KN__HASHKEY_STRLEN], end[KN__HASHKEY_STRLEN];
    kn__hashkey_format(s->start_hash, start);
    kn__hashkey_format(s->end_hash, end);
    l->key = strdup(s->shard_id);
    l->checkpoint = strdup(checkpoint);
    l->start_hash = strdup(start);
    l->end_hash = strdup(end);
    const char *parents[2] = {s->parent_shard_id, s->adjacent_parent_shard_id};
    l->parents = calloc(2, sizeof(char *));
    bool ok = l->key && l->checkpoint && l->start_hash && l->end_hash && l->parents;
    for (int i = 0; ok && i < 2; i++) {
        if (!parents[i])
            continue;
        if (!(l->parents[l->n_parents] = strdup(parents[i])))
            ok = false;
        else
            l->n_parents++;
    }
    if (!ok) {
        kn__lease_free(l);
        return KN_ERR_NOMEM;
    }
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ creating */

typedef struct create_s {
    kn_consumer_t *c;
    bool initial; /* part of the first sync at start */
} create_t;

static void sync_finished(kn_consumer_t *c, const kn_error_t *e);

static void on_created(kn__lt_result_t *res, void *opaque)
{
    create_t *cr = opaque;
    kn_consumer_t *c = cr->c;
    if (res->err.code == KN_ERR_OK) {
        kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_CREATED, 1);
        c->scan_soon = true;
    } else if (res->err.code != KN_ERR_CONDITION_FAILED) {
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: %s", c->worker_id,
               res->err.message);
        if (cr->initial && c->creates_err.code == KN_ERR_OK)
            kn__error_copy(&c->creates_err, &res->err);
    }
    if (cr->initial && --c->creates_pending == 0)
        sync_finished(c, &c->creates_err);
    free(cr);
    kn__consumer_loop_unref(c);
}

/* Creates lease l; false (logged) if it could not be sent. */
static bool create_one(kn_consumer_t *c, const kn__lease_t *l, bool initial)
{
    create_t *cr = calloc(1, sizeof(*cr));
    if (!cr)
        return false;
    cr->c = c;
    cr->initial = initial;
    kn__consumer_loop_ref(c);
    if (initial)
        c->creates_pending++;
    kn_err_t rc = kn__lt_create(c->lt, l, on_created, cr);
    if (rc != KN_ERR_OK) {
        if (initial)
            c->creates_pending--;
        free(cr);
        kn__consumer_loop_unref(c);
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: lease %s not created: %s",
               c->worker_id, l->key, kn_err2str(rc));
        return false;
    }
    return true;
}

void kn__sync_children(kn_consumer_t *c, const kn__child_shard_t *cs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (kn__scan_find(c, cs[i].shard_id))
            continue;
        kn__shard_t s = {0};
        s.shard_id = cs[i].shard_id;
        s.parent_shard_id = cs[i].parent_count > 0 ? cs[i].parent_shards[0] : NULL;
        s.adjacent_parent_shard_id = cs[i].parent_count > 1 ? cs[i].parent_shards[1] : NULL;
        s.start_hash = cs[i].start_hash;
        s.end_hash = cs[i].end_hash;
        kn__lease_t l;
        if (kn__sync_lease_of(&s, KN__CK_TRIM_HORIZON, &l) != KN_ERR_OK)
            continue;
        create_one(c, &l, false);
        kn__lease_free(&l);
    }
}

/* ------------------------------------------------------------ the listing */

static void sync_finished(kn_consumer_t *c, const kn_error_t *e)
{
    c->syncing = false;
    c->last_sync_ms = kn__mono_ms();
    bool failed = e && e->code != KN_ERR_OK;
    pthread_mutex_lock(&c->lock);
    bool first = !c->sync_done;
    if (first) {
        c->sync_done = true;
        if (failed)
            kn__error_copy(&c->sync_err, e);
        pthread_cond_broadcast(&c->cond);
    }
    pthread_mutex_unlock(&c->lock);
    if (failed && !first)
        KN_LOG(c->log, KN_LOG_WARN, KN_DBG_LEASE, "consumer %s: shard sync: %s", c->worker_id,
               e->message);
}

static void plan_and_create(kn_consumer_t *c)
{
    kn_error_t e;
    kn__error_clear(&e);
    const char **keys = c->n_known ? malloc(c->n_known * sizeof(*keys)) : NULL;
    if (c->n_known && !keys) {
        kn__error_set(&e, KN_ERR_NOMEM, "shard sync: out of memory");
        sync_finished(c, &e);
        return;
    }
    for (size_t i = 0; i < c->n_known; i++)
        keys[i] = c->known[i].l.key; /* c->known is sorted by key */
    kn__sync_new_t *plan = NULL;
    size_t n = 0;
    bool first = false;
    kn_err_t rc = kn__sync_plan(&c->sync_acc, keys, c->n_known, c->initial, &plan, &n, &first);
    free(keys);
    if (rc != KN_ERR_OK) {
        kn__error_set(&e, rc, "shard sync: out of memory");
        sync_finished(c, &e);
        return;
    }
    bool initial = !c->sync_done;
    if (n > 0)
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
               "consumer %s: %zu new lease%s for stream \"%s\" (%zu shards)", c->worker_id, n,
               n == 1 ? "" : "s", c->stream, c->sync_acc.count);
    kn__error_clear(&c->creates_err);
    c->creates_pending++; /* held until every create is sent */
    for (size_t i = 0; i < n; i++) {
        kn__lease_t l;
        if (kn__sync_lease_of(&c->sync_acc.shards[plan[i].shard], plan[i].checkpoint, &l) != KN_ERR_OK)
            continue;
        create_one(c, &l, initial);
        kn__lease_free(&l);
    }
    free(plan);
    kn__shard_list_free(&c->sync_acc);
    if (--c->creates_pending == 0)
        sync_finished(c, initial ? &c->creates_err : NULL);
}

static void list_page(kn_consumer_t *c, const char *token);

static void on_list_page(kn__aws_result_t *res, void *opaque)
{
    kn_consumer_t *c = opaque;
    kn_error_t e;
    kn__error_clear(&e);
    if (res->err.code != KN_ERR_OK) {
        kn__error_copy(&e, &res->err);
        kn__error_prefix(&e, "listing the shards of stream \"%s\"", c->stream);
        kn__shard_list_free(&c->sync_acc);
        sync_finished(c, &e);
    } else {
        char *token = NULL;
        if (kn__list_shards_parse(res->json, &c->sync_acc, &token, &e) != KN_ERR_OK) {
            kn__shard_list_free(&c->sync_acc);
            sync_finished(c, &e);
        } else if (token) {
            list_page(c, token);
        } else {
            plan_and_create(c);
        }
        free(token);
    }
    kn__consumer_loop_unref(c);
}

static void list_page(kn_consumer_t *c, const char *token)
{
    kn_error_t e;
    kn__error_clear(&e);
    kn__aws_req_t req = {0};
    req.service = KN__SVC_KINESIS;
    req.operation = "ListShards";
    req.cb = on_list_page;
    req.opaque = c;
    if (kn__list_shards_build(&req.body, &c->ref, NULL, token, &e) != KN_ERR_OK) {
        kn__buf_free(&req.body);
        kn__shard_list_free(&c->sync_acc);
        sync_finished(c, &e);
        return;
    }
    kn__consumer_loop_ref(c);
    if (kn__aws_call(c->client, &req, &e) != KN_ERR_OK) {
        kn__consumer_loop_unref(c);
        kn__shard_list_free(&c->sync_acc);
        sync_finished(c, &e);
    }
}

void kn__sync_start(kn_consumer_t *c)
{
    if (c->syncing)
        return;
    c->syncing = true;
    kn__shard_list_free(&c->sync_acc);
    list_page(c, NULL);
}
