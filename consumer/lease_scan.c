/*
 * The lease table as the periodic scans show it (loop thread), every
 * consumer.lease.scan.ms (at most a fifth of the failover time):
 *   - expiry on the observer's clock: a lease whose counter has not changed
 *     since a scan more than consumer.failover.ms ago (on this host's
 *     monotonic clock) is expired; no clocks of different hosts are
 *     compared. A counter is taken as changed when it differs from the last
 *     scan's, so a stale (eventually consistent) page can only delay expiry;
 *   - each lease this worker holds or asked for is shown to the coordinator
 *     (a handoff asked of us, the owner letting go of one we asked for);
 *   - the balance (lease_balance.c): what to take and what to ask for;
 *   - cleanup (consumer.cleanup.leases): a finished lease (SHARD_END) is
 *     deleted once every child it names has a lease that has begun and none
 *     of its own parents is left;
 *   - after a scan that a sync waits for, the shard sync (its plan needs the
 *     table's keys).
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"
#include "lease_balance.h"

/* A cleanup delete that got no answer is tried again after this long. */
#define DELETE_RETRY_MS 30000

static int known_cmp(const void *a, const void *b)
{
    return strcmp(((const kn__known_t *)a)->l.key, ((const kn__known_t *)b)->l.key);
}

const kn__known_t *kn__scan_find(const kn_consumer_t *c, const char *key)
{
    size_t lo = 0, hi = c->n_known;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(c->known[mid].l.key, key);
        if (r == 0)
            return &c->known[mid];
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool kn__scan_parents_done(const kn_consumer_t *c, const kn__lease_t *l)
{
    for (size_t i = 0; i < l->n_parents; i++) {
        const kn__known_t *p = kn__scan_find(c, l->parents[i]);
        if (p && !kn__lease_finished(&p->l))
            return false;
    }
    return true;
}

void kn__scan_cool(kn_consumer_t *c, const char *key, int64_t until_ms)
{
    for (size_t i = 0; i < c->n_cooling; i++) {
        if (strcmp(c->cooling[i], key) == 0) {
            c->cool_until[i] = until_ms;
            return;
        }
    }
    char *k = strdup(key);
    char **v = realloc(c->cooling, (c->n_cooling + 1) * sizeof(*v));
    if (v)
        c->cooling = v;
    int64_t *u = realloc(c->cool_until, (c->n_cooling + 1) * sizeof(*u));
    if (u)
        c->cool_until = u;
    if (!k || !v || !u) {
        free(k);
        return;
    }
    c->cooling[c->n_cooling] = k;
    c->cool_until[c->n_cooling] = until_ms;
    c->n_cooling++;
}

static bool cooling(kn_consumer_t *c, const char *key, int64_t now)
{
    for (size_t i = 0; i < c->n_cooling; i++)
        if (c->cool_until[i] > now && strcmp(c->cooling[i], key) == 0)
            return true;
    return false;
}

static void cool_prune(kn_consumer_t *c, int64_t now)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_cooling; i++) {
        if (c->cool_until[i] > now) {
            c->cooling[k] = c->cooling[i];
            c->cool_until[k] = c->cool_until[i];
            k++;
        } else {
            free(c->cooling[i]);
        }
    }
    c->n_cooling = k;
}

static void known_free(kn__known_t *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        kn__lease_free(&v[i].l);
    free(v);
}

void kn__scan_free(kn_consumer_t *c)
{
    known_free(c->known, c->n_known);
    c->known = NULL;
    c->n_known = 0;
    for (size_t i = 0; i < c->n_cooling; i++)
        free(c->cooling[i]);
    free(c->cooling);
    free(c->cool_until);
    c->cooling = NULL;
    c->cool_until = NULL;
    c->n_cooling = 0;
}

/* Takes the scan's leases (moved out of res) as the new view, carrying what the old one knew. */
static bool merge(kn_consumer_t *c, kn__lt_result_t *res, int64_t now)
{
    size_t n = res->count;
    kn__known_t *v = n ? calloc(n, sizeof(*v)) : NULL;
    if (n && !v)
        return false;
    for (size_t i = 0; i < n; i++) {
        v[i].l = res->leases[i];
        memset(&res->leases[i], 0, sizeof(res->leases[i]));
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), known_cmp);
    for (size_t i = 0; i < n; i++) {
        const kn__known_t *old = kn__scan_find(c, v[i].l.key);
        if (old && old->l.counter == v[i].l.counter)
            v[i].changed_ms = old->changed_ms;
        else
            v[i].changed_ms = now;
        v[i].deleting_ms = old ? old->deleting_ms : 0;
    }
    known_free(c->known, c->n_known);
    c->known = v;
    c->n_known = n;
    return true;
}

/* ------------------------------------------------------------ cleanup */

typedef struct del_s {
    kn_consumer_t *c;
    char key[];
} del_t;

static void on_deleted(kn__lt_result_t *res, void *opaque)
{
    del_t *d = opaque;
    kn_consumer_t *c = d->c;
    if (res->err.code == KN_ERR_OK) {
        kn__cstat_add(c, KN_CONSUMER_STAT_LEASES_DELETED, 1);
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_LEASE,
               "consumer %s: deleted the lease of finished shard %s (its children have begun)",
               c->worker_id, d->key);
    } else if (res->err.code != KN_ERR_CONDITION_FAILED) {
        KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_LEASE, "consumer %s: %s", c->worker_id,
               res->err.message);
    }
    free(d);
    kn__consumer_loop_unref(c);
}

static bool may_delete(const kn_consumer_t *c, const kn__lease_t *l)
{
    if (!kn__lease_finished(l) || l->n_children == 0)
        return false;
    for (size_t i = 0; i < l->n_children; i++) {
        const kn__known_t *ch = kn__scan_find(c, l->children[i]);
        if (!ch || !kn__lease_started(&ch->l))
            return false;
    }
    for (size_t i = 0; i < l->n_parents; i++)
        if (kn__scan_find(c, l->parents[i]))
            return false;
    return true;
}

static void cleanup(kn_consumer_t *c, int64_t now)
{
    for (size_t i = 0; i < c->n_known; i++) {
        kn__known_t *k = &c->known[i];
        if (k->deleting_ms && now - k->deleting_ms < DELETE_RETRY_MS)
            continue;
        if (!may_delete(c, &k->l))
            continue;
        size_t len = strlen(k->l.key);
        del_t *d = malloc(sizeof(*d) + len + 1);
        if (!d)
            continue;
        d->c = c;
        memcpy(d->key, k->l.key, len + 1);
        kn__consumer_loop_ref(c);
        if (kn__lt_delete(c->lt, k->l.key, on_deleted, d) != KN_ERR_OK) {
            free(d);
            kn__consumer_loop_unref(c);
            continue;
        }
        k->deleting_ms = now;
    }
}

/* ------------------------------------------------------------ balance */

static void balance(kn_consumer_t *c, int64_t now)
{
    size_t n = c->n_known;
    kn__bal_in_t *in = n ? calloc(n, sizeof(*in)) : NULL;
    if (n && !in)
        return;
    for (size_t i = 0; i < n; i++) {
        const kn__known_t *k = &c->known[i];
        kn__held_t *h = kn__coord_find(c, k->l.key);
        in[i].l = &k->l;
        in[i].processable = !kn__lease_finished(&k->l) && kn__scan_parents_done(c, &k->l);
        in[i].expired = k->l.owner && now - k->changed_ms > c->failover_ms;
        in[i].neglected = now - k->changed_ms > (k->l.owner ? 2 : 1) * c->failover_ms;
        in[i].mine = h && kn__coord_counts(h);
        in[i].leaving = h && !kn__coord_counts(h);
        in[i].cooling = cooling(c, k->l.key, now);
    }
    kn__bal_plan_t plan;
    pthread_mutex_lock(&c->lock);
    bool running = c->state == KN__C_RUNNING || c->state == KN__C_STARTING;
    pthread_mutex_unlock(&c->lock);
    if (running && kn__balance_plan(in, n, c->worker_id, c->max_leases, c->steal_max, c->seed,
                                    &plan) == KN_ERR_OK) {
        for (size_t i = 0; i < plan.n_take; i++)
            kn__coord_take(c, in[plan.take[i]].l, in[plan.take[i]].expired);
        for (size_t i = 0; i < plan.n_ask; i++)
            kn__coord_ask(c, in[plan.ask[i]].l);
        pthread_mutex_lock(&c->lock);
        c->scanned = true;
        c->nothing_to_take = plan.n_take == 0 && plan.n_ask == 0;
        pthread_mutex_unlock(&c->lock);
        if (c->metrics) {
            size_t expired = 0;
            for (size_t i = 0; i < n; i++)
                expired += in[i].expired;
            kn__cm_scan(c, n, plan.workers, expired, plan.target - plan.mine, plan.n_take);
        }
        KN_LOG(c->log, KN_LOG_DEBUG, KN_DBG_LEASE,
               "consumer %s: scan: %zu leases, %lld workers, target %lld, mine %lld, "
               "available %lld, taking %zu, asking %zu",
               c->worker_id, n, (long long)plan.workers, (long long)plan.target,
               (long long)plan.mine, (long long)plan.available, plan.n_take, plan.n_ask);
        kn__bal_plan_free(&plan);
    }
    free(in);
}

/* ------------------------------------------------------------ the scan */

static void on_scan(kn__lt_result_t *res, void *opaque)
{
    kn_consumer_t *c = opaque;
    c->scanning = false;
    if (c->loop_closing) {
        kn__consumer_loop_unref(c);
        return;
    }
    int64_t now = kn__mono_ms();
    if (res->err.code != KN_ERR_OK) {
        c->scan_fails++;
        int level = c->scan_fails == 1 || c->scan_fails % 20 == 0 ? KN_LOG_WARN : KN_LOG_DEBUG;
        KN_LOG(c->log, level, KN_DBG_LEASE, "consumer %s: lease scan failed (%d in a row): %s",
               c->worker_id, c->scan_fails, res->err.message);
        kn__consumer_loop_unref(c);
        return;
    }
    c->scan_fails = 0;
    kn__cstat_add(c, KN_CONSUMER_STAT_SCANS, 1);
    if (!merge(c, res, now)) {
        kn__consumer_loop_unref(c);
        return;
    }
    for (kn__held_t *h = c->held; h; h = h->next)
        kn__coord_seen(c, h, kn__scan_find(c, h->key), c->scan_started_ms);
    if (c->sync_wanted && !c->syncing) {
        c->sync_wanted = false;
        kn__sync_start(c);
    }
    cool_prune(c, now);
    /* Until the first sync made the leases, there is nothing to balance. */
    pthread_mutex_lock(&c->lock);
    bool synced = c->sync_done;
    pthread_mutex_unlock(&c->lock);
    if (synced) {
        balance(c, now);
        if (c->cleanup)
            cleanup(c, now);
    }
    kn__consumer_loop_unref(c);
}

void kn__scan_start(kn_consumer_t *c)
{
    if (c->scanning || c->loop_closing)
        return;
    c->scanning = true;
    c->last_scan_ms = c->scan_started_ms = kn__mono_ms();
    kn__consumer_loop_ref(c);
    if (kn__lt_scan(c->lt, on_scan, c) != KN_ERR_OK) {
        c->scanning = false;
        kn__consumer_loop_unref(c);
    }
}
