/*
 * The consumer's API (<kinesis/consumer.h>): settings from consumer.*
 * properties, the lifecycle (start, shutdown, destroy), counters.
 *
 * Lifecycle: NEW -> kn_consumer_start (the stream checked, the table found
 * or created, processor threads started, the loop's tick begun, the first
 * shard sync waited for) -> RUNNING -> kn_consumer_shutdown (every tenure
 * ends with shutdown_requested and a checkpoint, every lease is released)
 * -> STOPPED -> kn_consumer_destroy (what is left ends without a
 * checkpoint, the threads are joined, the loop side winds down once every
 * operation in flight has answered, then everything is freed).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "consumer_int.h"

#define START_SYNC_WAIT_MS 120000
#define TABLE_WAIT_MS 120000
/* How long destroy waits for processors to finish their last callback once told to stop. */
#define TENURE_END_WAIT_MS 30000

static atomic_int consumers_made;

/* ------------------------------------------------------------ loop references */

void kn__consumer_loop_ref(kn_consumer_t *c)
{
    pthread_mutex_lock(&c->lock);
    c->loop_refs++;
    pthread_mutex_unlock(&c->lock);
}

void kn__consumer_loop_unref(kn_consumer_t *c)
{
    pthread_mutex_lock(&c->lock);
    if (--c->loop_refs == 0)
        pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

typedef struct post_s {
    kn_consumer_t *c;
    void (*fn)(kn_consumer_t *c, void *arg);
    void *arg;
} post_t;

static void run_post(kn_client_t *client, void *arg)
{
    (void)client;
    post_t *p = arg;
    p->fn(p->c, p->arg);
    kn__consumer_loop_unref(p->c);
    free(p);
}

bool kn__consumer_post(kn_consumer_t *c, void (*fn)(kn_consumer_t *c, void *arg), void *arg)
{
    post_t *p = malloc(sizeof(*p));
    if (!p)
        return false;
    p->c = c;
    p->fn = fn;
    p->arg = arg;
    kn__consumer_loop_ref(c);
    if (kn__client_post(c->client, run_post, p) != KN_ERR_OK) {
        kn__consumer_loop_unref(c);
        free(p);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------ creation */

static kn_consumer_t *fail_new(kn_error_t *err, kn_err_t rc, const char *fmt, const char *arg)
{
    if (err) {
        kn__error_clear(err);
        kn__error_set(err, rc, fmt, arg);
    }
    return NULL;
}

static void consumer_free(kn_consumer_t *c)
{
    if (!c)
        return;
    kn__lease_table_destroy(c->lt);
    kn__scan_free(c);
    while (c->held) {
        kn__held_t *h = c->held;
        c->held = h->next;
        kn__lease_free(&h->view);
        free(h->key);
        free(h);
    }
    kn__shard_list_free(&c->sync_acc);
    kn__rbudget_destroy(&c->budget);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->run_cond);
    kn__metrics_destroy(c->metrics); /* the last window, before the client goes */
    c->metrics = NULL;
    kn_conf_destroy(c->conf);
    free(c->stream);
    free(c->worker_id);
    if (c->client)
        kn_client_destroy(c->client);
    free(c);
}

static bool parse_position(const char *s, kn__initpos_t *out)
{
    if (!strcasecmp(s, "TRIM_HORIZON"))
        *out = KN__POS_TRIM_HORIZON;
    else if (!strcasecmp(s, "LATEST"))
        *out = KN__POS_LATEST;
    else if (!strcasecmp(s, "AT_TIMESTAMP"))
        *out = KN__POS_AT_TIMESTAMP;
    else
        return false;
    return true;
}

static char *default_worker_id(void)
{
    char host[256];
    if (gethostname(host, sizeof(host)) != 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    int n = atomic_fetch_add(&consumers_made, 1);
    char id[320];
    if (n == 0)
        snprintf(id, sizeof(id), "%s:%ld", host, (long)getpid());
    else
        snprintf(id, sizeof(id), "%s:%ld-%d", host, (long)getpid(), n + 1);
    return strdup(id);
}

static uint32_t mix(const char *s, uint64_t v)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h ^ (uint32_t)v ^ (uint32_t)(v >> 32);
}

KN_API kn_consumer_t *kn_consumer_new_on(kn_client_t *client, const kn_conf_t *conf,
                                         const char *stream, const kn_processor_t *proc,
                                         void *app, kn_error_t *err)
{
    if (err)
        kn__error_clear(err);
    if (!client)
        return fail_new(err, KN_ERR_INVALID_ARG, "kn_consumer_new: no client%s", "");
    if (!stream || !*stream)
        return fail_new(err, KN_ERR_INVALID_ARG, "kn_consumer_new: no stream name or ARN%s", "");
    if (!proc)
        return fail_new(err, KN_ERR_INVALID_ARG, "kn_consumer_new: no record processor%s", "");
    if (proc->struct_size == 0 || proc->struct_size > sizeof(kn_processor_t))
        return fail_new(err, KN_ERR_INVALID_ARG,
                        "kn_consumer_new: the processor's struct_size is %s: start it from "
                        "KN_PROCESSOR_INIT",
                        proc->struct_size == 0 ? "not set" : "larger than this library's");
    kn_processor_t p = KN_PROCESSOR_INIT;
    memcpy(&p, proc, proc->struct_size);
    p.struct_size = sizeof(p);
    if (!p.process_records)
        return fail_new(err, KN_ERR_INVALID_ARG,
                        "kn_consumer_new: the processor has no process_records callback%s", "");
    const kn_conf_t *cf = conf ? conf : kn__client_conf(client);
    const char *appname = kn__conf_str(cf, KN_P_C_APP_NAME);
    if (!appname || !*appname)
        return fail_new(err, KN_ERR_CONF_INVALID,
                        "kn_consumer_new: consumer.application.name (KCL applicationName) is "
                        "required: it names the consumer group and its lease table%s",
                        "");
    kn__initpos_t initial;
    const char *pos = kn__conf_str(cf, KN_P_C_INITIAL_POSITION);
    if (!parse_position(pos, &initial))
        return fail_new(err, KN_ERR_CONF_INVALID,
                        "kn_consumer_new: consumer.initial.position \"%s\" is not TRIM_HORIZON, "
                        "LATEST or AT_TIMESTAMP",
                        pos);
    if (initial == KN__POS_AT_TIMESTAMP && kn__conf_int(cf, KN_P_C_INITIAL_TIMESTAMP_MS) <= 0)
        return fail_new(err, KN_ERR_CONF_INVALID,
                        "kn_consumer_new: consumer.initial.position AT_TIMESTAMP needs "
                        "consumer.initial.timestamp.ms%s",
                        "");
    const char *sec = kn__conf_str(cf, KN_P_C_SHARD_END_CHECKPOINT);
    if (strcasecmp(sec, "auto") != 0 && strcasecmp(sec, "processor") != 0)
        return fail_new(err, KN_ERR_CONF_INVALID,
                        "kn_consumer_new: consumer.shard.end.checkpoint \"%s\" is not auto or "
                        "processor",
                        sec);

    kn_consumer_t *c = calloc(1, sizeof(*c));
    if (!c)
        return fail_new(err, KN_ERR_NOMEM, "kn_consumer_new: out of memory%s", "");
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->run_cond, NULL);
    kn__rbudget_init(&c->budget, 0);
    kn__error_clear(&c->sync_err);
    kn__error_clear(&c->creates_err);
    c->client = kn_client_ref(client);
    c->log = kn__client_log(client);
    c->conf = kn_conf_dup(cf);
    c->stream = strdup(stream);
    c->proc = p;
    c->app = app;
    const char *wid = kn__conf_str(cf, KN_P_C_WORKER_ID);
    c->worker_id = wid && *wid ? strdup(wid) : default_worker_id();
    if (!c->conf || !c->stream || !c->worker_id) {
        consumer_free(c);
        return fail_new(err, KN_ERR_NOMEM, "kn_consumer_new: out of memory%s", "");
    }
    if (strncmp(c->stream, "arn:", 4) == 0)
        c->ref.arn = c->stream;
    else
        c->ref.name = c->stream;

    c->failover_ms = kn__conf_int(cf, KN_P_C_FAILOVER_MS);
    c->renew_ms = c->failover_ms / 3 - 25;
    int64_t margin = c->failover_ms / 10 > 300 ? c->failover_ms / 10 : 300;
    c->fence_ms = c->failover_ms - margin;
    c->scan_ms = kn__conf_int(cf, KN_P_C_LEASE_SCAN_MS);
    if (c->scan_ms > c->failover_ms / 5)
        c->scan_ms = c->failover_ms / 5;
    c->sync_ms = kn__conf_int(cf, KN_P_C_SHARD_SYNC_MS);
    c->handoff_ms = kn__conf_int(cf, KN_P_C_HANDOFF_MS);
    c->retry_ms = kn__conf_int(cf, KN_P_C_PROCESSOR_RETRY_MS);
    c->max_retries = (int)kn__conf_int(cf, KN_P_C_PROCESSOR_MAX_RETRIES);
    c->shutdown_ms = kn__conf_int(cf, KN_P_C_SHUTDOWN_MS);
    c->max_leases = kn__conf_int(cf, KN_P_C_MAX_LEASES);
    c->steal_max = (int)kn__conf_int(cf, KN_P_C_STEAL_MAX);
    c->initial = initial;
    c->initial_ts_ms = kn__conf_int(cf, KN_P_C_INITIAL_TIMESTAMP_MS);
    c->cleanup = kn__conf_bool(cf, KN_P_C_CLEANUP_LEASES);
    c->shard_end_auto = strcasecmp(sec, "auto") == 0;
    c->ck_on_shutdown = kn__conf_bool(cf, KN_P_C_CHECKPOINT_ON_SHUTDOWN);
    c->process_empty = kn__conf_bool(cf, KN_P_C_PROCESS_EMPTY);
    c->threads = (int)kn__conf_int(cf, KN_P_C_THREADS);
    c->budget.max = kn__conf_int(cf, KN_P_C_PREFETCH_BYTES);
    c->seed = mix(c->worker_id, (uint64_t)kn__wall_ms());

    const char *table = kn__conf_str(cf, KN_P_C_TABLE_NAME);
    c->lt = kn__lease_table_new(client, table && *table ? table : appname,
                                &c->stats[KN_CONSUMER_STAT_DDB_REQUESTS]);
    if (!c->lt) {
        consumer_free(c);
        return fail_new(err, KN_ERR_NOMEM, "kn_consumer_new: out of memory%s", "");
    }
    if (kn__cm_start(c, appname, err) != KN_ERR_OK) {
        consumer_free(c);
        return NULL;
    }
    /* A lease write that takes longer than a quarter of the lease is as good as failed. */
    kn__lease_table_set_timeout(c->lt, c->failover_ms / 4 > 1000 ? (long)(c->failover_ms / 4) : 1000);
    c->state = KN__C_NEW;
    return c;
}

KN_API kn_consumer_t *kn_consumer_new(const kn_conf_t *conf, const char *stream,
                                      const kn_processor_t *proc, void *app, kn_error_t *err)
{
    kn_client_t *client = kn_client_new(conf, err);
    if (!client)
        return NULL;
    kn_consumer_t *c = kn_consumer_new_on(client, conf, stream, proc, app, err);
    kn_client_destroy(client); /* the consumer holds its own reference */
    return c;
}

/* ------------------------------------------------------------ start */

static void begin_task(kn_consumer_t *c, void *arg)
{
    (void)arg;
    kn__coord_begin(c);
}

KN_API kn_err_t kn_consumer_start(kn_consumer_t *c, kn_error_t *err)
{
    if (err)
        kn__error_clear(err);
    kn_error_t e;
    kn__error_clear(&e);
    if (!c)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "kn_consumer_start: no consumer");
    if (kn__dispatch_in_callback())
        return kn__error_set(err, KN_ERR_STATE, "kn_consumer_start: called from a processor callback");
    pthread_mutex_lock(&c->lock);
    bool fresh = c->state == KN__C_NEW;
    if (fresh)
        c->state = KN__C_STARTING;
    pthread_mutex_unlock(&c->lock);
    if (!fresh)
        return kn__error_set(err, KN_ERR_STATE, "kn_consumer_start: already started");

    kn__stream_summary_t sum;
    memset(&sum, 0, sizeof(sum));
    kn_err_t rc = kn__kinesis_describe_stream_summary(c->client, &c->ref, &sum, &e);
    kn__stream_summary_free(&sum);
    if (rc == KN_ERR_OK) {
        bool created = false;
        rc = kn__lease_table_ensure(c->lt, TABLE_WAIT_MS, &created, &e);
        if (rc == KN_ERR_OK && created)
            KN_LOG(c->log, KN_LOG_INFO, KN_DBG_CONSUMER, "consumer %s: created lease table \"%s\"",
                   c->worker_id, kn__lease_table_name(c->lt));
    } else {
        kn__error_prefix(&e, "stream \"%s\"", c->stream);
    }
    if (rc == KN_ERR_OK)
        rc = kn__dispatch_start(c, &e);
    if (rc == KN_ERR_OK && !kn__consumer_post(c, begin_task, NULL))
        rc = kn__error_set(&e, KN_ERR_DESTROYED, "kn_consumer_start: the client is shutting down");
    if (rc == KN_ERR_OK) {
        struct timespec ts;
        kn__abs_after(&ts, START_SYNC_WAIT_MS);
        pthread_mutex_lock(&c->lock);
        while (!c->sync_done)
            if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) != 0)
                break;
        if (!c->sync_done)
            rc = kn__error_set(&e, KN_ERR_TIMEOUT,
                               "kn_consumer_start: the first shard sync of stream \"%s\" did not "
                               "finish within %d s",
                               c->stream, START_SYNC_WAIT_MS / 1000);
        else if (c->sync_err.code != KN_ERR_OK) {
            kn__error_copy(&e, &c->sync_err);
            rc = c->sync_err.code;
        }
        if (rc == KN_ERR_OK)
            c->state = KN__C_RUNNING;
        pthread_mutex_unlock(&c->lock);
    }
    if (rc != KN_ERR_OK) {
        pthread_mutex_lock(&c->lock);
        c->state = KN__C_STOPPED;
        pthread_mutex_unlock(&c->lock);
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_CONSUMER, "consumer %s: not started: %s", c->worker_id,
               e.message); /* the caller has the error: not logged as one */
        if (err)
            kn__error_copy(err, &e);
        return rc;
    }
    KN_LOG(c->log, KN_LOG_INFO, KN_DBG_CONSUMER,
           "consumer %s: started on stream \"%s\", lease table \"%s\"", c->worker_id, c->stream,
           kn__lease_table_name(c->lt));
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ shutdown and destroy */

static void shutdown_task(kn_consumer_t *c, void *arg)
{
    (void)arg;
    kn__coord_shutdown(c);
}

static void close_task(kn_consumer_t *c, void *arg)
{
    (void)arg;
    kn__coord_close(c);
}

/* Locked: waits for pred(c) until deadline (INT64_MAX: none). */
static bool wait_for(kn_consumer_t *c, bool (*pred)(kn_consumer_t *), int64_t deadline)
{
    while (!pred(c)) {
        int64_t now = kn__mono_ms();
        if (now >= deadline)
            return false;
        struct timespec ts;
        kn__abs_after(&ts, deadline - now > 1000 ? 1000 : deadline - now);
        pthread_cond_timedwait(&c->cond, &c->lock, &ts);
    }
    return true;
}

static bool is_stopped(kn_consumer_t *c) { return c->state == KN__C_STOPPED; }
static bool no_tenures(kn_consumer_t *c) { return c->n_tenures == 0; }
static bool no_loop_refs(kn_consumer_t *c) { return c->loop_refs == 0; }

KN_API kn_err_t kn_consumer_shutdown(kn_consumer_t *c, int timeout_ms)
{
    if (!c)
        return KN_ERR_INVALID_ARG;
    if (kn__dispatch_in_callback())
        return KN_ERR_STATE;
    pthread_mutex_lock(&c->lock);
    if (c->state == KN__C_NEW || c->state == KN__C_STOPPED) {
        c->state = KN__C_STOPPED;
        pthread_mutex_unlock(&c->lock);
        return KN_ERR_OK;
    }
    bool post = c->state != KN__C_SHUTTING;
    c->state = KN__C_SHUTTING;
    pthread_mutex_unlock(&c->lock);
    if (post && !kn__consumer_post(c, shutdown_task, NULL))
        return KN_ERR_DESTROYED;
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : kn__mono_ms() + timeout_ms;
    pthread_mutex_lock(&c->lock);
    bool ok = wait_for(c, is_stopped, deadline);
    pthread_mutex_unlock(&c->lock);
    if (ok)
        KN_LOG(c->log, KN_LOG_INFO, KN_DBG_CONSUMER, "consumer %s: shut down, leases released",
               c->worker_id);
    return ok ? KN_ERR_OK : KN_ERR_TIMEOUT;
}

KN_API kn_err_t kn_consumer_destroy(kn_consumer_t *c)
{
    if (!c)
        return KN_ERR_OK;
    if (kn__dispatch_in_callback())
        return KN_ERR_STATE;
    pthread_mutex_lock(&c->lock);
    kn__cstate_t st = c->state;
    pthread_mutex_unlock(&c->lock);
    if (st == KN__C_RUNNING || st == KN__C_SHUTTING)
        kn_consumer_shutdown(c, (int)c->shutdown_ms);
    bool started = st != KN__C_NEW;
    if (started) {
        /* Whatever is left ends now, without a checkpoint; the loop stops its tick. */
        if (!kn__consumer_post(c, close_task, NULL))
            KN_LOG(c->log, KN_LOG_WARN, KN_DBG_CONSUMER,
                   "consumer %s: the client is shutting down under the consumer", c->worker_id);
        pthread_mutex_lock(&c->lock);
        bool ended = wait_for(c, no_tenures, kn__mono_ms() + TENURE_END_WAIT_MS);
        pthread_mutex_unlock(&c->lock);
        if (!ended) {
            KN_LOG(c->log, KN_LOG_ERROR, KN_DBG_CONSUMER,
                   "consumer %s: a record processor did not return within %d s of being told "
                   "to stop: the consumer is left running in the background (leaked)",
                   c->worker_id, TENURE_END_WAIT_MS / 1000);
            return KN_ERR_TIMEOUT;
        }
        kn__dispatch_stop(c);
        pthread_mutex_lock(&c->lock);
        wait_for(c, no_loop_refs, INT64_MAX); /* every operation has a deadline of its own */
        pthread_mutex_unlock(&c->lock);
    }
    consumer_free(c);
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ state and counters */

KN_API bool kn_consumer_caught_up(kn_consumer_t *c)
{
    if (!c)
        return false;
    pthread_mutex_lock(&c->lock);
    bool yes = c->state == KN__C_RUNNING && c->scanned && c->nothing_to_take && c->acquiring == 0;
    for (kn__tenure_t *t = c->tenures; yes && t; t = t->all_next)
        if (!t->caught_up || t->busy || t->queued || t->running)
            yes = false;
    pthread_mutex_unlock(&c->lock);
    return yes;
}

KN_API const char *kn_consumer_worker_id(const kn_consumer_t *c) { return c ? c->worker_id : NULL; }

static const char *const stat_names[KN_CONSUMER_STAT__COUNT] = {
    [KN_CONSUMER_STAT_RECORDS] = "records",
    [KN_CONSUMER_STAT_BYTES] = "bytes",
    [KN_CONSUMER_STAT_BATCHES] = "batches",
    [KN_CONSUMER_STAT_PROCESS_ERRORS] = "process_errors",
    [KN_CONSUMER_STAT_LEASES_HELD] = "leases_held",
    [KN_CONSUMER_STAT_LEASES_TAKEN] = "leases_taken",
    [KN_CONSUMER_STAT_LEASES_STOLEN] = "leases_stolen",
    [KN_CONSUMER_STAT_LEASES_HANDED] = "leases_handed",
    [KN_CONSUMER_STAT_LEASES_LOST] = "leases_lost",
    [KN_CONSUMER_STAT_LEASES_RELEASED] = "leases_released",
    [KN_CONSUMER_STAT_RENEWALS] = "renewals",
    [KN_CONSUMER_STAT_RENEW_FAILURES] = "renew_failures",
    [KN_CONSUMER_STAT_CHECKPOINTS] = "checkpoints",
    [KN_CONSUMER_STAT_SHARDS_ENDED] = "shards_ended",
    [KN_CONSUMER_STAT_LEASES_CREATED] = "leases_created",
    [KN_CONSUMER_STAT_LEASES_DELETED] = "leases_deleted",
    [KN_CONSUMER_STAT_DDB_REQUESTS] = "ddb_requests",
    [KN_CONSUMER_STAT_SCANS] = "scans",
};

KN_API int64_t kn_consumer_stat(kn_consumer_t *c, kn_consumer_stat_t which)
{
    if (!c || (int)which < 0 || which >= KN_CONSUMER_STAT__COUNT)
        return -1;
    return atomic_load(&c->stats[which]);
}

KN_API const char *kn_consumer_stat_name(kn_consumer_stat_t which)
{
    if ((int)which < 0 || which >= KN_CONSUMER_STAT__COUNT)
        return NULL;
    return stat_names[which];
}
