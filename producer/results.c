/*
 * Results: the queue from the loop thread to whoever serves results (poll,
 * flush, a put waiting for room, or the background thread), the eventfd that
 * is readable while results wait, and the kn_result_* accessors.
 *
 * Serving runs the callback outside every lock, then releases the records'
 * memory accounting in one step and wakes puts waiting for room. One thread
 * serves at a time; a callback that calls put does not serve recursively.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "producer_int.h"

void kn__prec_free(kn__prec_t *r)
{
    if (!r)
        return;
    if (r->landing && atomic_fetch_sub(&r->landing->refcnt, 1) == 1)
        free(r->landing);
    free(r->errstr);
    free(r->more);
    free(r);
}

void kn__prec_fail(kn__prec_t *r, kn_err_t err, const char *errstr)
{
    r->err = err;
    free(r->errstr);
    r->errstr = strdup(errstr ? errstr : kn_err2str(err));
}

int kn__prec_add_attempt(kn__prec_t *r, const kn__pattempt_t *a)
{
    if (r->n_attempts == 0) {
        r->attempt0 = *a;
    } else {
        kn__pattempt_t *m = realloc(r->more, sizeof(*m) * (size_t)r->n_attempts);
        if (!m)
            return -1;
        r->more = m;
        m[r->n_attempts - 1] = *a;
    }
    r->n_attempts++;
    return 0;
}

void kn__prec_attempted(kn__prec_t *r, int64_t start, int64_t end, kn_err_t err, const char *name)
{
    kn__pattempt_t a = {start - r->last_end_ms, end - start, err, name};
    if (a.delay_ms < 0)
        a.delay_ms = 0;
    kn__prec_add_attempt(r, &a); /* out of memory: the attempt goes uncounted, the result is kept */
    r->last_end_ms = end;
}

void kn__prec_succeed(kn__prec_t *r, kn__landing_t *l, uint64_t sub, bool aggregated)
{
    r->err = KN_ERR_OK;
    r->landing = l;
    r->sub_seq = sub;
    r->aggregated = aggregated;
}

/* Record j of a successful run (kn__fill_t): what the loop's answer handling writes otherwise. */
static void fill_in(kn__prec_t *r, const kn__fill_t *f, size_t j)
{
    kn__prec_attempted(r, f->start_ms, f->end_ms, KN_ERR_OK, f->name);
    kn__prec_succeed(r, f->landing, f->aggregated ? j : 0, f->aggregated);
}

int kn__results_init(kn_producer_t *p)
{
    p->efd = -1;
    if (!p->background) {
        p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (p->efd < 0)
            return -1;
    }
    return 0;
}

void kn__results_fini(kn_producer_t *p)
{
    if (p->efd >= 0)
        close(p->efd);
    p->efd = -1;
}

void kn__results_push(kn_producer_t *p, kn__plist_t *l)
{
    if (!l->head)
        return;
    pthread_mutex_lock(&p->rlock);
    bool was_empty = p->res_head == NULL;
    if (p->res_tail)
        p->res_tail->next = l->head;
    else
        p->res_head = l->head;
    p->res_tail = l->tail;
    if (was_empty) {
        if (p->efd >= 0) {
            uint64_t one = 1;
            ssize_t w = write(p->efd, &one, sizeof(one));
            (void)w; /* EAGAIN only when the counter is saturated: still readable */
        }
        pthread_cond_broadcast(&p->rcond);
    }
    pthread_mutex_unlock(&p->rlock);
    memset(l, 0, sizeof(*l));
}


int kn__results_serve(kn_producer_t *p, int timeout_ms)
{
    if (pthread_mutex_trylock(&p->serve_lock) != 0) {
        /* Another thread serves (or this thread, from inside a callback): wait for it a bit. */
        if (timeout_ms != 0) {
            struct timespec ts;
            kn__abs_after(&ts, timeout_ms < 0 || timeout_ms > 10 ? 10 : timeout_ms);
            pthread_mutex_lock(&p->lock);
            pthread_cond_timedwait(&p->room_cond, &p->lock, &ts);
            pthread_mutex_unlock(&p->lock);
        }
        return 0;
    }
    p->server = pthread_self();
    atomic_store(&p->serving, true);
    if (p->stats_cb && timeout_ms != 0) {
        /* Wake up for the next stats call. */
        int64_t until = p->stats_next_ms - kn__mono_ms();
        if (until < 1)
            until = 1;
        if (timeout_ms < 0 || until < timeout_ms)
            timeout_ms = (int)until;
    }
    pthread_mutex_lock(&p->rlock);
    /*
     * Destroy stops the waits of other threads' polls (stop_waits); its own
     * thread keeps waiting here, woken by results and by the loop closing,
     * instead of spinning through its drain.
     */
    bool mine = p->stop_waits && pthread_equal(p->destroyer, pthread_self());
    if (!p->res_head && timeout_ms != 0) {
        if (timeout_ms < 0) {
            while (!p->res_head && !p->bg_stop && (!p->stop_waits || mine))
                pthread_cond_wait(&p->rcond, &p->rlock);
        } else {
            struct timespec ts;
            kn__abs_after(&ts, timeout_ms);
            while (!p->res_head && !p->bg_stop && (!p->stop_waits || mine))
                if (pthread_cond_timedwait(&p->rcond, &p->rlock, &ts) == ETIMEDOUT)
                    break;
        }
    }
    kn__prec_t *list = p->res_head;
    p->res_head = p->res_tail = NULL;
    if (list && p->efd >= 0) {
        uint64_t v;
        ssize_t rd = read(p->efd, &v, sizeof(v));
        (void)rd;
    }
    pthread_mutex_unlock(&p->rlock);

    int n = 0;
    int64_t bytes = 0;
    int64_t gen_dec[KN__PGEN_SLOTS];
    memset(gen_dec, 0, sizeof(gen_dec));
    int64_t ok = 0, expired = 0;
    kn__pstats_t *st = &p->stats;
    kn__mbatch_t mb;
    kn__mbatch_init(&mb, p->metrics);
    kn__fill_t *fill = NULL;
    size_t fill_left = 0, fill_j = 0;
    /*
     * One pass: each record is served and freed while it is in the cache
     * (a request's results can be tens of thousands of records, more than
     * the cache holds). Freeing before the accounting below only makes the
     * memory bound more conservative for a moment. With metrics, a batch
     * keeps pointers to the records' shard names until it is committed, so
     * the records are freed after the commit instead.
     */
    kn__prec_t *later = NULL;
    for (kn__prec_t *r = list, *next; r; r = next) {
        next = r->next;
        __builtin_prefetch(next);
        if (r->fill) {
            free(fill); /* only if a run was cut short, which the loop never does */
            fill = r->fill;
            r->fill = NULL;
            fill_left = fill->count;
            fill_j = 0;
        }
        if (fill_left) {
            fill_in(r, fill, fill_j++);
            if (--fill_left == 0) {
                free(fill);
                fill = NULL;
            }
        }
        if (p->cb)
            p->cb(p, r, p->cb_opaque);
        if (p->metrics)
            kn__pm_served(p, &mb, r);
        if (r->err == KN_ERR_OK) {
            ok++;
        } else {
            atomic_fetch_add_explicit(&st->errors[r->err], 1, memory_order_relaxed);
            expired += r->err == KN_ERR_TIMEOUT;
        }
        n++;
        bytes += kn__prec_mem(r);
        gen_dec[r->gen]++;
        if (p->metrics) {
            r->next = later;
            later = r;
        } else {
            kn__prec_free(r);
        }
    }
    free(fill);
    kn__mbatch_commit(&mb);
    while (later) {
        kn__prec_t *next = later->next;
        kn__prec_free(later);
        later = next;
    }
    if (n) {
        atomic_fetch_add_explicit(&st->put_ok, ok, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->failed, n - ok, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->expired, expired, memory_order_relaxed);
        pthread_mutex_lock(&p->lock);
        p->mem_records -= n;
        p->mem_bytes -= bytes;
        for (int i = 0; i < KN__PGEN_SLOTS; i++)
            p->gen_count[i] -= gen_dec[i];
        pthread_cond_broadcast(&p->room_cond);
        pthread_mutex_unlock(&p->lock);
    }
    if (p->stats_cb && kn__mono_ms() >= p->stats_next_ms) {
        p->stats_next_ms = kn__mono_ms() + p->stats_ms;
        char *json = kn_producer_stats_json(p);
        if (json)
            p->stats_cb(p, json, p->stats_opaque);
        free(json);
    }
    atomic_store(&p->serving, false);
    pthread_mutex_unlock(&p->serve_lock);
    return n;
}

/* ------------------------------------------------------------ accessors */

KN_API kn_err_t kn_result_err(const kn_result_t *r) { return r->err; }

KN_API const char *kn_result_errstr(const kn_result_t *r)
{
    return r->err == KN_ERR_OK ? "" : r->errstr ? r->errstr : kn_err2str(r->err);
}

KN_API void *kn_result_opaque(const kn_result_t *r) { return r->opaque; }

KN_API const char *kn_result_stream(const kn_result_t *r) { return r->stream->name; }

KN_API const char *kn_result_partition_key(const kn_result_t *r, size_t *len)
{
    if (len)
        *len = r->key_len;
    return r->key;
}

KN_API const char *kn_result_shard_id(const kn_result_t *r)
{
    return r->err == KN_ERR_OK && r->landing ? r->landing->shard_id : NULL;
}

KN_API const char *kn_result_sequence_number(const kn_result_t *r)
{
    return r->err == KN_ERR_OK && r->landing ? r->landing->seq : NULL;
}

KN_API uint64_t kn_result_sub_sequence(const kn_result_t *r) { return r->sub_seq; }

KN_API bool kn_result_aggregated(const kn_result_t *r) { return r->aggregated; }

KN_API int kn_result_attempt_count(const kn_result_t *r) { return r->n_attempts; }

KN_API bool kn_result_attempt(const kn_result_t *r, int i, kn_attempt_t *out)
{
    if (!r || !out || i < 0 || i >= r->n_attempts || out->struct_size < sizeof(kn_attempt_t))
        return false;
    const kn__pattempt_t *a = i == 0 ? &r->attempt0 : &r->more[i - 1];
    out->delay_ms = a->delay_ms;
    out->duration_ms = a->duration_ms;
    out->err = a->err;
    out->error_name = a->name ? a->name : "";
    return true;
}
