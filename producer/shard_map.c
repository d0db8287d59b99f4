/*
 * The shard map of one stream (an immutable, reference-counted snapshot of
 * its open shards ordered by hash range) and its refresher (ListShards on
 * the client's loop, de-duplicated, with backoff after failures).
 */
#include "shard_map.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "aws.h"
#include "client.h"
#include "log.h"

/* ================================================================= the map */

struct kn__shard_map_s {
    atomic_size_t refcnt;
    uint64_t version;
    size_t count;
    kn__shard_entry_t *entries;       /* by start hash key */
    const kn__shard_entry_t **by_id;  /* by shard id (strcmp) */
    char *ids;                        /* every shard id, NUL-terminated, back to back */
};

/* Versions are unique in the process, so they increase for every stream too. */
static atomic_uint_fast64_t g_map_version;

static const kn__hashkey_t HK_MAX = {UINT64_MAX, UINT64_MAX};

static kn__hashkey_t hk_inc(kn__hashkey_t k)
{
    kn__hashkey_t r = {k.hi + (k.lo == UINT64_MAX), k.lo + 1};
    return r;
}

static kn__hashkey_t hk_dec(kn__hashkey_t k)
{
    kn__hashkey_t r = {k.hi - (k.lo == 0), k.lo - 1};
    return r;
}

static bool hk_is_max(kn__hashkey_t k) { return k.hi == UINT64_MAX && k.lo == UINT64_MAX; }

static int cmp_by_start(const void *a, const void *b)
{
    const kn__shard_entry_t *x = a, *y = b;
    int c = kn__hashkey_cmp(x->start, y->start);
    return c ? c : kn__hashkey_cmp(x->end, y->end);
}

static int cmp_by_id(const void *a, const void *b)
{
    const kn__shard_entry_t *const *x = a, *const *y = b;
    return strcmp((*x)->shard_id, (*y)->shard_id);
}

static void map_free(kn__shard_map_t *m)
{
    if (!m)
        return;
    free(m->entries);
    free(m->by_id);
    free(m->ids);
    free(m);
}

/*
 * Checks that the sorted entries (each with start <= end) cover 0..2^128-1
 * exactly once. Stops at the first problem, so the previous entry is the one
 * that ends highest so far.
 */
static kn_err_t check_coverage(const kn__shard_entry_t *e, size_t n, kn_error_t *err)
{
    char a[KN__HASHKEY_STRLEN], b[KN__HASHKEY_STRLEN], c[KN__HASHKEY_STRLEN], d[KN__HASHKEY_STRLEN];
    kn__hashkey_t expected = {0, 0};
    for (size_t i = 0; i < n; i++) {
        /* After an entry ending at 2^128-1 (expected wrapped to 0) every further entry overlaps it. */
        bool prev_at_max = i > 0 && hk_is_max(e[i - 1].end);
        int cmp = prev_at_max ? -1 : kn__hashkey_cmp(e[i].start, expected);
        if (cmp > 0) {
            kn__hashkey_format(expected, a);
            kn__hashkey_format(hk_dec(e[i].start), b);
            kn__hashkey_format(e[i].start, c);
            if (i == 0)
                return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                                     "shard map: hash keys %s..%s belong to no open shard "
                                     "(the first open shard %s starts at %s)",
                                     a, b, e[i].shard_id, c);
            kn__hashkey_format(e[i - 1].end, d);
            return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                                 "shard map: hash keys %s..%s belong to no open shard "
                                 "(gap between %s ending at %s and %s starting at %s)",
                                 a, b, e[i - 1].shard_id, d, e[i].shard_id, c);
        }
        if (cmp < 0) {
            const kn__shard_entry_t *p = &e[i - 1];
            kn__hashkey_t ov_end = kn__hashkey_cmp(p->end, e[i].end) < 0 ? p->end : e[i].end;
            kn__hashkey_format(e[i].start, a);
            kn__hashkey_format(ov_end, b);
            kn__hashkey_format(p->start, c);
            kn__hashkey_format(p->end, d);
            char f[KN__HASHKEY_STRLEN], g[KN__HASHKEY_STRLEN];
            kn__hashkey_format(e[i].start, f);
            kn__hashkey_format(e[i].end, g);
            return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                                 "shard map: open shards %s (%s..%s) and %s (%s..%s) overlap on hash "
                                 "keys %s..%s",
                                 p->shard_id, c, d, e[i].shard_id, f, g, a, b);
        }
        expected = hk_inc(e[i].end);
    }
    if (n > 0 && !hk_is_max(e[n - 1].end)) {
        kn__hashkey_format(expected, a);
        kn__hashkey_format(HK_MAX, b);
        kn__hashkey_format(e[n - 1].end, c);
        return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                             "shard map: hash keys %s..%s belong to no open shard "
                             "(the last open shard %s ends at %s)",
                             a, b, e[n - 1].shard_id, c);
    }
    return KN_ERR_OK;
}

/* A reshard caught half way: the same ListShards a little later gives a good map. */
static void mark_retriable(kn_error_t *err)
{
    if (err) {
        err->retriable = true;
        err->cls = KN__EC_RETRY;
    }
}

kn__shard_map_t *kn__shard_map_build(const kn__shard_list_t *list, kn_error_t *err)
{
    kn__shard_map_t *m = NULL;
    size_t n = 0, id_bytes = 0;
    for (size_t i = 0; list && i < list->count; i++) {
        const kn__shard_t *s = &list->shards[i];
        if (!kn__shard_is_open(s))
            continue;
        if (!s->shard_id || !*s->shard_id) {
            kn__error_set(err, KN_ERR_BAD_RESPONSE, "shard map: shard %zu of the list has no shard id", i);
            goto fail;
        }
        n++;
        id_bytes += strlen(s->shard_id) + 1;
    }
    if (n == 0) {
        kn__error_set(err, KN_ERR_BAD_RESPONSE, "shard map: the stream has no open shard (%zu closed)",
                      list ? list->count : 0);
        mark_retriable(err);
        goto fail;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        goto nomem;
    m->entries = calloc(n, sizeof(*m->entries));
    m->by_id = calloc(n, sizeof(*m->by_id));
    m->ids = malloc(id_bytes);
    if (!m->entries || !m->by_id || !m->ids)
        goto nomem;
    char *p = m->ids;
    size_t k = 0;
    for (size_t i = 0; i < list->count; i++) {
        const kn__shard_t *s = &list->shards[i];
        if (!kn__shard_is_open(s))
            continue;
        size_t len = strlen(s->shard_id) + 1;
        memcpy(p, s->shard_id, len);
        m->entries[k].shard_id = p;
        m->entries[k].start = s->start_hash;
        m->entries[k].end = s->end_hash;
        p += len;
        k++;
    }
    m->count = n;
    qsort(m->entries, n, sizeof(*m->entries), cmp_by_start);
    for (size_t i = 0; i < n; i++) {
        const kn__shard_entry_t *e = &m->entries[i];
        if (kn__hashkey_cmp(e->start, e->end) > 0) {
            char a[KN__HASHKEY_STRLEN], b[KN__HASHKEY_STRLEN];
            kn__hashkey_format(e->start, a);
            kn__hashkey_format(e->end, b);
            kn__error_set(err, KN_ERR_BAD_RESPONSE,
                          "shard map: shard %s starts at hash key %s, after its end %s", e->shard_id, a, b);
            goto fail;
        }
    }
    if (check_coverage(m->entries, n, err) != KN_ERR_OK) {
        mark_retriable(err);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        m->entries[i].index = (uint32_t)i;
        m->by_id[i] = &m->entries[i];
    }
    qsort(m->by_id, n, sizeof(*m->by_id), cmp_by_id);
    for (size_t i = 1; i < n; i++) {
        if (!strcmp(m->by_id[i - 1]->shard_id, m->by_id[i]->shard_id)) {
            kn__error_set(err, KN_ERR_BAD_RESPONSE, "shard map: shard id %s appears twice among open shards",
                          m->by_id[i]->shard_id);
            goto fail;
        }
    }
    atomic_init(&m->refcnt, 1);
    m->version = atomic_fetch_add(&g_map_version, 1) + 1;
    return m;

nomem:
    kn__error_set(err, KN_ERR_NOMEM, "shard map: out of memory for %zu shards", n);
fail:
    map_free(m);
    return NULL;
}

kn__shard_map_t *kn__shard_map_ref(kn__shard_map_t *m)
{
    if (m)
        atomic_fetch_add_explicit(&m->refcnt, 1, memory_order_relaxed);
    return m;
}

void kn__shard_map_unref(kn__shard_map_t *m)
{
    if (m && atomic_fetch_sub_explicit(&m->refcnt, 1, memory_order_acq_rel) == 1)
        map_free(m);
}

size_t kn__shard_map_count(const kn__shard_map_t *m) { return m->count; }

const kn__shard_entry_t *kn__shard_map_at(const kn__shard_map_t *m, size_t i)
{
    return i < m->count ? &m->entries[i] : NULL;
}

const kn__shard_entry_t *kn__shard_map_lookup(const kn__shard_map_t *m, kn__hashkey_t k)
{
    /* The last entry starting at or below k; entries[0] starts at 0 in a built map. */
    size_t lo = 0, hi = m->count;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (kn__hashkey_cmp(m->entries[mid].start, k) <= 0)
            lo = mid;
        else
            hi = mid;
    }
    return &m->entries[lo];
}

const kn__shard_entry_t *kn__shard_map_find(const kn__shard_map_t *m, const char *shard_id)
{
    if (!m || !shard_id)
        return NULL;
    size_t lo = 0, hi = m->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(m->by_id[mid]->shard_id, shard_id);
        if (c == 0)
            return m->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

uint64_t kn__shard_map_version(const kn__shard_map_t *m) { return m->version; }

/* =========================================================== the refresher */

#define BACKOFF_BASE_MS 100
#define BACKOFF_CAP_MS 10000

/*
 * A run is a chain of asynchronous ListShards pages on the client's loop
 * (kn__aws_call): no thread of libuv's pool is blocked waiting for the loop,
 * so any number of streams can refresh at once without starving the
 * credential refresh that shares that pool.
 */
struct kn__shard_refresher_s {
    kn_client_t *c;
    char *name, *arn;
    kn__stream_ref_t ref;
    kn__shard_map_cb_t *cb;
    void *opaque;

    /* Loop thread only. */
    uv_timer_t timer;      /* backoff wait */
    bool timer_armed;
    bool timer_closed;
    bool running;          /* a ListShards page is in flight */
    bool pending;          /* asked for during a run: one more run after it */
    bool closing;
    int in_cb;             /* inside the user's callback */
    int failures;          /* consecutive failed runs */
    uint64_t not_before;   /* uv_now() before which no run starts (after a failure) */
    kn__shard_list_t list; /* pages of the current run */
    kn__shard_refresher_stats_t stats;
};

static void start_run(kn__shard_refresher_t *r);

static void refresher_free(kn__shard_refresher_t *r)
{
    kn__shard_list_free(&r->list);
    free(r->name);
    free(r->arn);
    free(r);
}

static void maybe_free(kn__shard_refresher_t *r)
{
    if (r->closing && r->timer_closed && !r->running && !r->in_cb)
        refresher_free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    kn__shard_refresher_t *r = h->data;
    r->timer_closed = true;
    maybe_free(r);
}

static void on_timer(uv_timer_t *t)
{
    kn__shard_refresher_t *r = t->data;
    r->timer_armed = false;
    if (!r->closing)
        start_run(r);
}

static void arm_timer(kn__shard_refresher_t *r, uint64_t delay_ms)
{
    r->timer_armed = true;
    uv_timer_start(&r->timer, on_timer, delay_ms, 0);
}

/* The request logic: run now, or when the backoff allows, or after the current run. */
static void schedule(kn__shard_refresher_t *r)
{
    if (r->closing)
        return;
    if (r->running) {
        r->pending = true;
        return;
    }
    if (r->timer_armed)
        return;
    uint64_t now = uv_now(kn__client_loop(r->c));
    if (r->not_before > now) {
        arm_timer(r, r->not_before - now);
        return;
    }
    start_run(r);
}

/* The end of a run: a new map or an error; backoff bookkeeping; the callback; a pending run. */
static void run_done(kn__shard_refresher_t *r, kn__shard_map_t *map, kn_error_t *werr)
{
    r->running = false;
    kn__shard_list_free(&r->list);
    if (r->closing) {
        /* Closed while running: no callback. */
        kn__shard_map_unref(map);
        r->pending = false;
        maybe_free(r);
        return;
    }
    const char *label = r->name ? r->name : r->arn;
    uint64_t now = uv_now(kn__client_loop(r->c));
    if (map) {
        r->failures = 0;
        r->not_before = 0;
        r->stats.last_delay_ms = 0;
        KN_LOG(kn__client_log(r->c), KN_LOG_DEBUG, KN_DBG_PRODUCER, "stream %s: shard map version %llu, %zu open shards",
               label, (unsigned long long)map->version, map->count);
    } else {
        r->stats.failures++;
        long delay = kn__aws_backoff_ms(r->failures, BACKOFF_BASE_MS, BACKOFF_CAP_MS);
        long cap = BACKOFF_BASE_MS;
        for (int i = 0; i < r->failures && cap < BACKOFF_CAP_MS; i++)
            cap *= 2;
        r->failures++;
        r->stats.backoff_cap_ms = cap < BACKOFF_CAP_MS ? cap : BACKOFF_CAP_MS;
        r->stats.last_delay_ms = delay;
        r->not_before = now + (uint64_t)delay;
        kn__error_prefix(werr, "shard map refresh of stream %s", label);
        KN_LOG(kn__client_log(r->c), KN_LOG_WARN, KN_DBG_PRODUCER, "%s; next refresh no earlier than in %ld ms",
               werr->message, delay);
    }
    r->stats.consecutive_failures = r->failures;
    bool again = r->pending;
    r->pending = false;
    r->in_cb++;
    r->cb(map, map ? NULL : werr, r->opaque);
    r->in_cb--;
    if (r->closing) {
        maybe_free(r);
        return;
    }
    if (again)
        schedule(r);
}

static kn_err_t send_page(kn__shard_refresher_t *r, const char *next_token, kn_error_t *err);

static void on_page(kn__aws_result_t *res, void *opaque)
{
    kn__shard_refresher_t *r = opaque;
    kn_error_t err;
    kn__error_clear(&err);
    char *next = NULL;
    if (res->err.code != KN_ERR_OK) {
        kn__error_copy(&err, &res->err);
    } else if (r->closing) {
        run_done(r, NULL, &err);
        return;
    } else if (kn__list_shards_parse(res->json, &r->list, &next, &err) == KN_ERR_OK) {
        if (next) {
            kn_err_t rc = send_page(r, next, &err);
            free(next);
            if (rc == KN_ERR_OK)
                return; /* the next page continues the run */
        } else {
            kn__shard_map_t *map = kn__shard_map_build(&r->list, &err);
            run_done(r, map, map ? NULL : &err);
            return;
        }
    }
    run_done(r, NULL, &err);
}

static kn_err_t send_page(kn__shard_refresher_t *r, const char *next_token, kn_error_t *err)
{
    kn__aws_req_t req = {.service = KN__SVC_KINESIS, .operation = "ListShards", .cb = on_page, .opaque = r};
    kn_err_t rc = kn__list_shards_build(&req.body, &r->ref, NULL, next_token, err);
    if (rc != KN_ERR_OK) {
        kn__buf_free(&req.body);
        return rc;
    }
    return kn__aws_call(r->c, &req, err);
}

static void start_run(kn__shard_refresher_t *r)
{
    kn_error_t err;
    kn__error_clear(&err);
    r->running = true;
    r->stats.runs++;
    if (send_page(r, NULL, &err) != KN_ERR_OK)
        run_done(r, NULL, &err); /* KN_ERR_DESTROYED or ENOMEM: reported like a failed run */
}

kn__shard_refresher_t *kn__shard_refresher_new(kn_client_t *c, const kn__stream_ref_t *ref,
                                               kn__shard_map_cb_t *cb, void *opaque)
{
    if (!c || !ref || !cb || ((!ref->name || !*ref->name) && (!ref->arn || !*ref->arn)))
        return NULL;
    kn__shard_refresher_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->c = c;
    r->cb = cb;
    r->opaque = opaque;
    if (ref->name && *ref->name && !(r->name = strdup(ref->name)))
        goto fail;
    if (ref->arn && *ref->arn && !(r->arn = strdup(ref->arn)))
        goto fail;
    r->ref.name = r->name;
    r->ref.arn = r->arn;
    if (uv_timer_init(kn__client_loop(c), &r->timer) != 0)
        goto fail;
    r->timer.data = r;
    return r;
fail:
    refresher_free(r);
    return NULL;
}

void kn__shard_refresher_request(kn__shard_refresher_t *r)
{
    if (r)
        schedule(r);
}

bool kn__shard_refresher_busy(const kn__shard_refresher_t *r)
{
    return r && (r->running || r->pending || r->timer_armed);
}

void kn__shard_refresher_stats(const kn__shard_refresher_t *r, kn__shard_refresher_stats_t *out)
{
    *out = r->stats;
}

void kn__shard_refresher_close(kn__shard_refresher_t *r)
{
    if (!r || r->closing)
        return;
    r->closing = true;
    r->pending = false;
    r->timer_armed = false;
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    /* A page in flight ends in on_page, which frees the refresher. */
    maybe_free(r);
}
