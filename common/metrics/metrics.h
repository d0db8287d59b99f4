/*
 * Internal: metrics, as the KPL and the KCL gather them. A component (the
 * producer, the consumer) describes its metrics in a table (kn__mdef_t:
 * the name it is published under, unit, level, how deep its dimensions go)
 * and records samples against that table; this module aggregates them per
 * dimension set into statistic sets (sum, min, max, count) over a window,
 * and at each window's end, on a thread of its own, hands the window to the
 * metrics callback and to the CloudWatch publisher (cloudwatch.h).
 *
 * Dimensions. A sample names a stream, a shard and an error code, each
 * optional. It counts in the global figure (no dimension), and, as
 * metrics.granularity and the metric's depth allow, in the stream's figure
 * (StreamName) and the shard's (StreamName, ShardId; or ShardId alone when no
 * stream is named, as the KCL publishes). An error code adds ErrorCode to
 * each (first, as the KPL orders them); a metric with an operation (the
 * KCL's) carries Operation first, and WorkerIdentifier when it says so.
 *
 * Cost. When metrics are off (metrics.level none, or neither a callback nor
 * CloudWatch) kn__metrics_start gives NULL and every recording call on NULL
 * returns at once. Recording takes one mutex per call: components add up
 * their samples locally (kn__mstat_t, exact: merging statistic sets loses
 * nothing) and record once per batch, not once per record.
 *
 * Threads. Recording calls are safe from any thread. The callback and the
 * sampler run on the metrics thread.
 */
#ifndef KN_METRICS_H
#define KN_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"
#include "kinesis/common.h"

typedef enum kn__munit_e { KN__MU_COUNT, KN__MU_MS, KN__MU_BYTES } kn__munit_t;

/* Levels, as metrics.level numbers them. */
enum { KN__ML_NONE = 0, KN__ML_SUMMARY = 1, KN__ML_DETAILED = 2 };
/* Depths, as metrics.granularity numbers them. */
enum { KN__MG_GLOBAL = 0, KN__MG_STREAM = 1, KN__MG_SHARD = 2 };

typedef struct kn__mdef_s {
    const char *name;      /* as published: "UserRecordsPut", "Request Time" */
    kn__munit_t unit;
    uint8_t level;         /* KN__ML_SUMMARY or KN__ML_DETAILED: the lowest level that has it */
    uint8_t depth;         /* the deepest dimensions it has: KN__MG_* */
    const char *operation; /* the KCL's Operation dimension, or NULL */
    bool worker;           /* carries WorkerIdentifier (the KCL's lease metrics) */
} kn__mdef_t;

/* A statistic set: what a window keeps of a metric's samples. */
typedef struct kn__mstat_s {
    double sum, min, max;
    uint64_t n;
} kn__mstat_t;

#define KN__MSTAT_INIT {0, 0, 0, 0}

/* Adds the sample v, times times (times 0: nothing). */
static inline void kn__mstat_add(kn__mstat_t *s, double v, uint64_t times)
{
    if (!times)
        return;
    if (!s->n || v < s->min)
        s->min = v;
    if (!s->n || v > s->max)
        s->max = v;
    s->sum += v * (double)times;
    s->n += times;
}

static inline void kn__mstat_merge(kn__mstat_t *a, const kn__mstat_t *b)
{
    if (!b->n)
        return;
    if (!a->n || b->min < a->min)
        a->min = b->min;
    if (!a->n || b->max > a->max)
        a->max = b->max;
    a->sum += b->sum;
    a->n += b->n;
}

typedef struct kn__metrics_s kn__metrics_t;

/* Called once a second on the metrics thread, to record gauges (UserRecordsPending). */
typedef void(kn__msample_fn_t)(kn__metrics_t *m, void *opaque);

typedef struct kn__metrics_opts_s {
    const kn__mdef_t *defs; /* the component's table, indexed by its metric ids; kept */
    int n_defs;
    const char *component;         /* "producer", "consumer": for log lines */
    const char *default_namespace; /* when metrics.namespace is empty */
    const char *worker_id;         /* WorkerIdentifier, for metrics that carry it (copied) */
    kn__msample_fn_t *sample;      /* optional */
    void *sample_opaque;
} kn__metrics_opts_t;

/*
 * Starts gathering for one component, from conf (metrics.*, the callback
 * set with kn_conf_set_metrics_cb), into *out: NULL when metrics are off.
 * KN_ERR_OK, or the error (in err too; *out NULL). The client is used for
 * CloudWatch and logging only, and must outlive the metrics.
 */
kn_err_t kn__metrics_start(kn_client_t *c, const kn_conf_t *conf, const kn__metrics_opts_t *o,
                           kn__metrics_t **out, kn_error_t *err);

/* Whether metric id is gathered (false on NULL): skip computing its samples otherwise. */
bool kn__metrics_wants(const kn__metrics_t *m, int id);

/* Records s (n may be 0: nothing) for metric id; stream, shard and error_code may be NULL. */
void kn__metrics_put(kn__metrics_t *m, int id, const char *stream, const char *shard,
                     const char *error_code, const kn__mstat_t *s);

/* One sample v, times times. */
void kn__metrics_add(kn__metrics_t *m, int id, const char *stream, const char *shard,
                     const char *error_code, double v, uint64_t times);

/*
 * A batch of samples gathered without a lock and recorded at once
 * (kn__mbatch_commit takes the mutex one time for all of them): a component
 * fills one on its stack per answer or per result list. The strings must
 * stay valid until the commit. Adding to a full batch commits it first.
 */
#define KN__MBATCH_MAX 48
typedef struct kn__mbatch_entry_s {
    int id;
    const char *stream, *shard, *err;
    kn__mstat_t st;
} kn__mbatch_entry_t;
typedef struct kn__mbatch_s {
    kn__metrics_t *m;
    size_t n;
    kn__mbatch_entry_t e[KN__MBATCH_MAX];
} kn__mbatch_t;

static inline void kn__mbatch_init(kn__mbatch_t *b, kn__metrics_t *m)
{
    b->m = m;
    b->n = 0;
}
void kn__mbatch_add(kn__mbatch_t *b, int id, const char *stream, const char *shard, const char *error_code,
                    double v, uint64_t times);
void kn__mbatch_commit(kn__mbatch_t *b);

/*
 * Ends the window now (the callback and the upload run with what was
 * gathered), waiting until the callback has returned. For tests and destroy.
 */
void kn__metrics_flush(kn__metrics_t *m);

/*
 * Ends the last window (callback and upload), stops the thread and frees.
 * Waits at most metrics.cloudwatch.shutdown.ms for uploads in flight. NULL is
 * a no-op. Must not be called from the metrics callback.
 */
void kn__metrics_destroy(kn__metrics_t *m);

/* Counters for tests and stats: series kept, windows published, uploads dropped. */
typedef struct kn__metrics_counters_s {
    uint64_t series, windows, series_dropped;
    uint64_t uploads_sent, uploads_failed, uploads_dropped, datums_sent;
} kn__metrics_counters_t;
void kn__metrics_counters(const kn__metrics_t *m, kn__metrics_counters_t *out);

#endif
