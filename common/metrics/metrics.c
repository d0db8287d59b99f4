/*
 * Metrics: statistic sets per dimension set, a window at a time, handed to
 * the callback and the CloudWatch publisher by a thread of their own (see
 * metrics.h for the model).
 *
 * The series live in an open-addressing table keyed by (metric, stream,
 * shard, error code) under one mutex. A series that had no sample for three
 * windows in a row is dropped, so shards that went away do not hold memory;
 * at most MAX_SERIES are kept (beyond, new series are counted as dropped and
 * logged once). Only the metrics thread frees series, so the window it
 * publishes can point into them after letting go of the lock.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "cloudwatch.h"
#include "conf.h"
#include "err.h"
#include "log.h"

#define MAX_SERIES 100000
#define IDLE_WINDOWS 3
#define SAMPLE_MS 1000

typedef struct series_s {
    uint64_t hash;
    int id;
    int idle; /* windows in a row without a sample */
    const char *stream, *shard, *err; /* in the same allocation, or NULL */
    kn__mstat_t st;
} series_t;

struct kn__metrics_s {
    kn_client_t *c;
    kn__logger_t *log;
    const kn__mdef_t *defs;
    int n_defs;
    uint8_t *wanted;
    int gran;
    char *ns;
    char *worker_id;
    int64_t interval_ms;
    kn_metrics_cb_t *cb;
    void *cb_opaque;
    kn__msample_fn_t *sample;
    void *sample_opaque;
    kn__cw_t *cw;
    char component[32];

    pthread_mutex_t lock; /* the table */
    series_t **slots;
    size_t cap, count;
    bool full_warned;

    pthread_mutex_t tlock; /* the thread's state below */
    pthread_cond_t cond;
    pthread_t thread;
    bool stop;
    uint64_t flush_asked, flush_done;
    int64_t window_start_ms; /* wall clock */

    atomic_uint_fast64_t windows, series_dropped;
};

/* ------------------------------------------------------------------ table */

static uint64_t fnv(uint64_t h, const char *s)
{
    /* NULL and "" must differ: a marker byte for "absent". */
    if (!s) {
        h ^= 0xff;
        return h * 0x100000001b3ULL;
    }
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    h ^= 0xfe;
    return h * 0x100000001b3ULL;
}

static uint64_t key_hash(int id, const char *stream, const char *shard, const char *err)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(unsigned)id;
    h *= 0x100000001b3ULL;
    return fnv(fnv(fnv(h, stream), shard), err);
}

static bool same(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* Puts s in the first free slot of its probe chain (cap a power of two, a free slot left). */
static void place(series_t **slots, size_t cap, series_t *s)
{
    size_t j = (size_t)s->hash & (cap - 1);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = s;
}

static bool grow(kn__metrics_t *m)
{
    size_t cap = m->cap ? m->cap * 2 : 256;
    series_t **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i])
            place(slots, cap, m->slots[i]);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

static char *put_str(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *out = memcpy(*at, s, n);
    *at += n;
    return out;
}

/* The series for this key, made when missing; NULL when out of room. Under m->lock. */
static series_t *series_of(kn__metrics_t *m, int id, const char *stream, const char *shard, const char *err)
{
    uint64_t h = key_hash(id, stream, shard, err);
    if (m->cap) {
        for (size_t j = (size_t)h & (m->cap - 1); m->slots[j]; j = (j + 1) & (m->cap - 1)) {
            series_t *s = m->slots[j];
            if (s->hash == h && s->id == id && same(s->stream, stream) && same(s->shard, shard) &&
                same(s->err, err))
                return s;
        }
    }
    if (m->count >= MAX_SERIES) {
        atomic_fetch_add(&m->series_dropped, 1);
        if (!m->full_warned) {
            m->full_warned = true;
            KN_LOG(m->log, KN_LOG_WARN, KN_DBG_METRICS,
                   "%s metrics: %d series kept at most; samples of new ones are dropped (use a coarser "
                   "metrics.granularity)",
                   m->component, MAX_SERIES);
        }
        return NULL;
    }
    if ((m->count + 1) * 10 > m->cap * 7 && !grow(m))
        return NULL;
    size_t len = sizeof(series_t) + (stream ? strlen(stream) + 1 : 0) + (shard ? strlen(shard) + 1 : 0) +
                 (err ? strlen(err) + 1 : 0);
    series_t *s = calloc(1, len);
    if (!s)
        return NULL;
    char *at = (char *)(s + 1);
    s->hash = h;
    s->id = id;
    s->stream = put_str(&at, stream);
    s->shard = put_str(&at, shard);
    s->err = put_str(&at, err);
    place(m->slots, m->cap, s);
    m->count++;
    return s;
}

bool kn__metrics_wants(const kn__metrics_t *m, int id)
{
    return m && id >= 0 && id < m->n_defs && m->wanted[id];
}

/* Adds st to the global, stream and shard series its metric and the granularity allow. Under m->lock. */
static void record_locked(kn__metrics_t *m, int id, const char *stream, const char *shard,
                          const char *error_code, const kn__mstat_t *st)
{
    const kn__mdef_t *d = &m->defs[id];
    int depth = d->depth < m->gran ? d->depth : m->gran;
    series_t *s = series_of(m, id, NULL, NULL, error_code);
    if (s)
        kn__mstat_merge(&s->st, st);
    if (stream && depth >= KN__MG_STREAM && (s = series_of(m, id, stream, NULL, error_code)))
        kn__mstat_merge(&s->st, st);
    if (shard && depth >= KN__MG_SHARD && (s = series_of(m, id, stream, shard, error_code)))
        kn__mstat_merge(&s->st, st);
}

void kn__metrics_put(kn__metrics_t *m, int id, const char *stream, const char *shard,
                     const char *error_code, const kn__mstat_t *st)
{
    if (!kn__metrics_wants(m, id) || !st->n)
        return;
    pthread_mutex_lock(&m->lock);
    record_locked(m, id, stream, shard, error_code, st);
    pthread_mutex_unlock(&m->lock);
}

void kn__mbatch_add(kn__mbatch_t *b, int id, const char *stream, const char *shard, const char *error_code,
                    double v, uint64_t times)
{
    if (!kn__metrics_wants(b->m, id) || !times)
        return;
    for (size_t i = b->n; i-- > 0;) {
        kn__mbatch_entry_t *e = &b->e[i];
        if (e->id == id && same(e->stream, stream) && same(e->shard, shard) && same(e->err, error_code)) {
            kn__mstat_add(&e->st, v, times);
            return;
        }
    }
    if (b->n == KN__MBATCH_MAX)
        kn__mbatch_commit(b);
    kn__mbatch_entry_t *e = &b->e[b->n++];
    *e = (kn__mbatch_entry_t){id, stream, shard, error_code, KN__MSTAT_INIT};
    kn__mstat_add(&e->st, v, times);
}

void kn__mbatch_commit(kn__mbatch_t *b)
{
    if (!b->m || !b->n)
        return;
    pthread_mutex_lock(&b->m->lock);
    for (size_t i = 0; i < b->n; i++) {
        kn__mbatch_entry_t *e = &b->e[i];
        record_locked(b->m, e->id, e->stream, e->shard, e->err, &e->st);
    }
    pthread_mutex_unlock(&b->m->lock);
    b->n = 0;
}

void kn__metrics_add(kn__metrics_t *m, int id, const char *stream, const char *shard,
                     const char *error_code, double v, uint64_t times)
{
    if (!kn__metrics_wants(m, id))
        return;
    kn__mstat_t st = KN__MSTAT_INIT;
    kn__mstat_add(&st, v, times);
    kn__metrics_put(m, id, stream, shard, error_code, &st);
}

/* ---------------------------------------------------------------- windows */

static const char *unit_name(kn__munit_t u)
{
    switch (u) {
    case KN__MU_MS: return "Milliseconds";
    case KN__MU_BYTES: return "Bytes";
    default: return "Count";
    }
}

/* One published metric and its dimensions (kn_metric_t points into dims). */
typedef struct out_s {
    kn_metric_t m;
    kn_metric_dim_t dims[5];
} out_t;

/*
 * Takes the window's figures out of the table (resetting them), drops idle
 * series, and returns what had samples. Metrics thread only.
 */
static out_t *take_window(kn__metrics_t *m, size_t *n_out, int64_t start_ms, int64_t end_ms)
{
    pthread_mutex_lock(&m->lock);
    out_t *out = m->count ? calloc(m->count, sizeof(*out)) : NULL;
    size_t n = 0;
    size_t idle = 0;
    for (size_t i = 0; i < m->cap; i++) {
        series_t *s = m->slots[i];
        if (!s)
            continue;
        if (!s->st.n) {
            if (++s->idle >= IDLE_WINDOWS)
                idle++;
            continue;
        }
        s->idle = 0;
        if (out) {
            out_t *o = &out[n++];
            const kn__mdef_t *d = &m->defs[s->id];
            size_t nd = 0;
            if (d->operation)
                o->dims[nd++] = (kn_metric_dim_t){"Operation", d->operation};
            if (s->err)
                o->dims[nd++] = (kn_metric_dim_t){"ErrorCode", s->err};
            if (s->stream)
                o->dims[nd++] = (kn_metric_dim_t){"StreamName", s->stream};
            if (s->shard)
                o->dims[nd++] = (kn_metric_dim_t){"ShardId", s->shard};
            if (d->worker && m->worker_id)
                o->dims[nd++] = (kn_metric_dim_t){"WorkerIdentifier", m->worker_id};
            o->m = (kn_metric_t){sizeof(kn_metric_t), d->name, unit_name(d->unit), o->dims, nd,
                                 s->st.sum, s->st.min, s->st.max, s->st.n, start_ms, end_ms};
        }
        s->st = (kn__mstat_t)KN__MSTAT_INIT;
    }
    /*
     * Series idle for IDLE_WINDOWS go; the others are placed again, so that no
     * probe chain runs through a gap. Without memory for that, all stay.
     */
    series_t **fresh = idle ? calloc(m->cap, sizeof(*fresh)) : NULL;
    if (fresh) {
        for (size_t i = 0; i < m->cap; i++) {
            series_t *s = m->slots[i];
            if (!s)
                continue;
            if (s->idle >= IDLE_WINDOWS) {
                free(s);
                m->count--;
                continue;
            }
            place(fresh, m->cap, s);
        }
        free(m->slots);
        m->slots = fresh;
    }
    pthread_mutex_unlock(&m->lock);
    *n_out = out ? n : 0;
    if (out && !n) {
        free(out);
        out = NULL;
    }
    return out;
}

static void publish_window(kn__metrics_t *m)
{
    int64_t end = kn__wall_ms();
    size_t n = 0;
    out_t *out = take_window(m, &n, m->window_start_ms, end);
    m->window_start_ms = end;
    if (!n)
        return;
    kn_metric_t *list = malloc(n * sizeof(*list));
    if (list) {
        for (size_t i = 0; i < n; i++) {
            list[i] = out[i].m;
            list[i].dims = out[i].dims;
        }
        if (m->cb)
            m->cb(m->ns, list, n, m->cb_opaque);
        if (m->cw)
            kn__cw_publish(m->cw, m->ns, list, n);
        atomic_fetch_add(&m->windows, 1);
    }
    free(list);
    free(out);
}

static void *thread_main(void *arg)
{
    kn__metrics_t *m = arg;
    int64_t next_window = kn__mono_ms() + m->interval_ms;
    /* Without a sampler there is nothing to sample: no wake-ups for it (it would spin). */
    int64_t next_sample = m->sample ? kn__mono_ms() + SAMPLE_MS : INT64_MAX;
    pthread_mutex_lock(&m->tlock);
    for (;;) {
        int64_t now = kn__mono_ms();
        bool stop = m->stop;
        uint64_t asked = m->flush_asked;
        if (stop || asked != m->flush_done || now >= next_window || now >= next_sample) {
            pthread_mutex_unlock(&m->tlock);
            if (m->sample && (stop || asked != m->flush_done || now >= next_sample)) {
                m->sample(m, m->sample_opaque);
                next_sample = now + SAMPLE_MS;
            }
            if (stop || asked != m->flush_done || now >= next_window) {
                publish_window(m);
                next_window = now + m->interval_ms;
            }
            pthread_mutex_lock(&m->tlock);
            m->flush_done = asked;
            pthread_cond_broadcast(&m->cond);
            if (stop)
                break;
            continue;
        }
        int64_t until = next_window < next_sample ? next_window : next_sample;
        struct timespec ts;
        kn__abs_after(&ts, until - now);
        pthread_cond_timedwait(&m->cond, &m->tlock, &ts);
    }
    pthread_mutex_unlock(&m->tlock);
    return NULL;
}

/* ------------------------------------------------------------- life cycle */

/* Frees what kn__metrics_start made (the thread, if any, has ended). */
static void metrics_free(kn__metrics_t *m)
{
    kn__cw_destroy(m->cw);
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i]);
    free(m->slots);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->tlock);
    pthread_mutex_destroy(&m->lock);
    free(m->wanted);
    free(m->worker_id);
    free(m->ns);
    free(m);
}

kn_err_t kn__metrics_start(kn_client_t *c, const kn_conf_t *conf, const kn__metrics_opts_t *o,
                           kn__metrics_t **out, kn_error_t *err)
{
    *out = NULL;
    void *cb_opaque = NULL;
    kn_metrics_cb_t *cb = (kn_metrics_cb_t *)kn__conf_cb(conf, KN__CB_METRICS, &cb_opaque);
    bool cloudwatch = kn__conf_bool(conf, KN_P_METRICS_CLOUDWATCH);
    int level = (int)kn__conf_int(conf, KN_P_METRICS_LEVEL);
    if (level == KN__ML_NONE || (!cb && !cloudwatch))
        return KN_ERR_OK;
    kn__metrics_t *m = calloc(1, sizeof(*m));
    if (!m)
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory starting the metrics");
    m->c = c;
    m->log = kn__client_log(c);
    m->defs = o->defs;
    m->n_defs = o->n_defs;
    m->gran = (int)kn__conf_int(conf, KN_P_METRICS_GRANULARITY);
    m->interval_ms = kn__conf_int(conf, KN_P_METRICS_INTERVAL_MS);
    m->cb = cb;
    m->cb_opaque = cb_opaque;
    m->sample = o->sample;
    m->sample_opaque = o->sample_opaque;
    snprintf(m->component, sizeof(m->component), "%s", o->component ? o->component : "");
    const char *ns = kn__conf_str(conf, KN_P_METRICS_NAMESPACE);
    m->ns = strdup(*ns ? ns : (o->default_namespace ? o->default_namespace : "libkinesis"));
    m->wanted = calloc((size_t)(o->n_defs > 0 ? o->n_defs : 1), 1);
    m->worker_id = o->worker_id && *o->worker_id ? strdup(o->worker_id) : NULL;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->tlock, NULL);
    pthread_cond_init(&m->cond, NULL);
    kn_err_t rc = KN_ERR_OK;
    if (!m->ns || !m->wanted || (o->worker_id && *o->worker_id && !m->worker_id)) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "out of memory starting the metrics");
        goto fail;
    }
    for (int i = 0; i < o->n_defs; i++)
        m->wanted[i] = o->defs[i].level <= level;
    if (cloudwatch) {
        kn_error_t e;
        kn__error_clear(&e);
        m->cw = kn__cw_new(c, conf, m->component, &e);
        if (!m->cw) {
            kn__error_copy(err, &e);
            rc = e.code;
            goto fail;
        }
    }
    m->window_start_ms = kn__wall_ms();
    int prc = pthread_create(&m->thread, NULL, thread_main, m);
    if (prc != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "cannot start the metrics thread: %s", strerror(prc));
        goto fail;
    }
    KN_LOG(m->log, KN_LOG_DEBUG, KN_DBG_METRICS,
           "%s metrics: level %s, granularity %s, namespace %s, window %lld ms%s%s", m->component,
           kn__conf_str(conf, KN_P_METRICS_LEVEL), kn__conf_str(conf, KN_P_METRICS_GRANULARITY), m->ns,
           (long long)m->interval_ms, cb ? ", callback" : "", cloudwatch ? ", CloudWatch" : "");
    *out = m;
    return KN_ERR_OK;
fail:
    metrics_free(m);
    return rc;
}

void kn__metrics_flush(kn__metrics_t *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->tlock);
    uint64_t mine = ++m->flush_asked;
    pthread_cond_broadcast(&m->cond);
    while (m->flush_done < mine && !m->stop)
        pthread_cond_wait(&m->cond, &m->tlock);
    pthread_mutex_unlock(&m->tlock);
}

void kn__metrics_destroy(kn__metrics_t *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->tlock);
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->tlock);
    pthread_join(m->thread, NULL);
    metrics_free(m);
}

void kn__metrics_counters(const kn__metrics_t *m, kn__metrics_counters_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!m)
        return;
    pthread_mutex_lock((pthread_mutex_t *)&m->lock);
    out->series = m->count;
    pthread_mutex_unlock((pthread_mutex_t *)&m->lock);
    out->windows = atomic_load(&((kn__metrics_t *)m)->windows);
    out->series_dropped = atomic_load(&((kn__metrics_t *)m)->series_dropped);
    kn__cw_counters(m->cw, &out->uploads_sent, &out->uploads_failed, &out->uploads_dropped, &out->datums_sent);
}

/* ------------------------------------------------------------------- JSON */

typedef struct jw_s {
    char *buf;
    size_t size, len;
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (w->len < w->size) {
        size_t room = w->size - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void jw_fmt(jw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jw_fmt(jw_t *w, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        jw_raw(w, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void jw_str(jw_t *w, const char *s)
{
    jw_raw(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            jw_raw(w, e, 2);
        } else if (*p < 0x20) {
            jw_fmt(w, "\\u%04x", *p);
        } else {
            jw_raw(w, (const char *)p, 1);
        }
    }
    jw_raw(w, "\"", 1);
}

KN_API size_t kn_metric_json(const char *ns, const kn_metric_t *m, char *buf, size_t size)
{
    jw_t w = {buf, size, 0};
    if (!m) {
        jw_raw(&w, "{}", 2);
    } else {
        jw_raw(&w, "{\"namespace\":", 13);
        jw_str(&w, ns);
        jw_raw(&w, ",\"name\":", 8);
        jw_str(&w, m->name);
        jw_raw(&w, ",\"unit\":", 8);
        jw_str(&w, m->unit);
        jw_raw(&w, ",\"dimensions\":{", 15);
        for (size_t i = 0; i < m->n_dims; i++) {
            if (i)
                jw_raw(&w, ",", 1);
            jw_str(&w, m->dims[i].name);
            jw_raw(&w, ":", 1);
            jw_str(&w, m->dims[i].value);
        }
        jw_fmt(&w, "},\"sum\":%.15g", m->sum);
        jw_fmt(&w, ",\"min\":%.15g", m->min);
        jw_fmt(&w, ",\"max\":%.15g", m->max);
        jw_fmt(&w, ",\"count\":%llu", (unsigned long long)m->count);
        jw_fmt(&w, ",\"average\":%.15g", m->count ? m->sum / (double)m->count : 0.0);
        jw_fmt(&w, ",\"start\":%lld", (long long)m->start_ms);
        jw_fmt(&w, ",\"end\":%lld}", (long long)m->end_ms);
    }
    if (size)
        buf[w.len < size ? w.len : size - 1] = '\0';
    return w.len;
}

KN_API void kn_conf_set_metrics_cb(kn_conf_t *conf, kn_metrics_cb_t *cb, void *opaque)
{
    if (conf)
        kn__conf_set_cb(conf, KN__CB_METRICS, (kn__conf_fn_t *)cb, opaque);
}
