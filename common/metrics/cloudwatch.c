/*
 * The CloudWatch publisher (see cloudwatch.h). A window becomes one or more
 * PutMetricData forms, each sent as an asynchronous call; the publisher
 * holds a reference for itself and one per call in flight, so a call that
 * ends after destroy gave up waiting still finds its counters.
 */
#include "cloudwatch.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "buf.h"
#include "clock.h"
#include "conf.h"
#include "err.h"
#include "log.h"

struct kn__cw_s {
    kn_client_t *c;
    kn__logger_t *log;
    char component[32];
    size_t max_bytes;
    int64_t shutdown_ms;
    atomic_int refs;

    pthread_mutex_t lock; /* the fields below */
    pthread_cond_t cond;
    size_t bytes_in_flight;
    int in_flight;
    uint64_t sent, failed, dropped, datums;
};

typedef struct call_s {
    kn__cw_t *cw;
    size_t bytes, datums;
} call_t;

static void cw_unref(kn__cw_t *cw)
{
    if (atomic_fetch_sub(&cw->refs, 1) != 1)
        return;
    pthread_cond_destroy(&cw->cond);
    pthread_mutex_destroy(&cw->lock);
    free(cw);
}

kn__cw_t *kn__cw_new(kn_client_t *c, const kn_conf_t *conf, const char *component, kn_error_t *err)
{
    kn__cw_t *cw = calloc(1, sizeof(*cw));
    if (!cw) {
        kn__error_set(err, KN_ERR_NOMEM, "out of memory starting the CloudWatch publisher");
        return NULL;
    }
    cw->c = c;
    cw->log = kn__client_log(c);
    snprintf(cw->component, sizeof(cw->component), "%s", component ? component : "");
    cw->max_bytes = (size_t)kn__conf_int(conf, KN_P_METRICS_MAX_BYTES);
    cw->shutdown_ms = kn__conf_int(conf, KN_P_METRICS_SHUTDOWN_MS);
    atomic_init(&cw->refs, 1);
    pthread_mutex_init(&cw->lock, NULL);
    pthread_cond_init(&cw->cond, NULL);
    return cw;
}

/* ------------------------------------------------------------------ forms */

static int num(kn_buf_t *b, const char *prefix, const char *field, double v)
{
    char name[160], val[40];
    snprintf(name, sizeof(name), "%s%s", prefix, field);
    snprintf(val, sizeof(val), "%.17g", v);
    return kn__buf_form_pair(b, name, val);
}

static int str(kn_buf_t *b, const char *prefix, const char *field, const char *v)
{
    char name[160];
    snprintf(name, sizeof(name), "%s%s", prefix, field);
    return kn__buf_form_pair(b, name, v);
}

static void iso8601(int64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* One datum as member i (1-based). */
static int datum(kn_buf_t *b, size_t i, const kn_metric_t *m)
{
    char p[48], d[112], ts[80];
    snprintf(p, sizeof(p), "MetricData.member.%zu.", i);
    iso8601(m->end_ms, ts, sizeof(ts));
    if (str(b, p, "MetricName", m->name) || str(b, p, "Unit", m->unit) || str(b, p, "Timestamp", ts) ||
        num(b, p, "StatisticValues.Sum", m->sum) || num(b, p, "StatisticValues.Minimum", m->min) ||
        num(b, p, "StatisticValues.Maximum", m->max) ||
        num(b, p, "StatisticValues.SampleCount", (double)m->count))
        return -1;
    for (size_t k = 0; k < m->n_dims; k++) {
        snprintf(d, sizeof(d), "%sDimensions.member.%zu.", p, k + 1);
        if (str(b, d, "Name", m->dims[k].name) || str(b, d, "Value", m->dims[k].value))
            return -1;
    }
    return 0;
}

int kn__cw_form(kn_buf_t *body, const char *ns, const kn_metric_t *metrics, size_t n)
{
    if (kn__buf_form_pair(body, "Action", "PutMetricData") || kn__buf_form_pair(body, "Version", "2010-08-01") ||
        kn__buf_form_pair(body, "Namespace", ns))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (datum(body, i + 1, &metrics[i]))
            return -1;
    return 0;
}

/* ------------------------------------------------------------------ calls */

static void on_done(kn__aws_result_t *res, void *opaque)
{
    call_t *call = opaque;
    kn__cw_t *cw = call->cw;
    bool ok = res->err.code == KN_ERR_OK;
    pthread_mutex_lock(&cw->lock);
    cw->bytes_in_flight -= call->bytes;
    cw->in_flight--;
    uint64_t failed = ok ? cw->failed : ++cw->failed;
    if (ok) {
        cw->sent++;
        cw->datums += call->datums;
    }
    pthread_cond_broadcast(&cw->cond);
    pthread_mutex_unlock(&cw->lock);
    /* The first failure, then one in a hundred: an outage must not flood the log. */
    if (!ok && (failed == 1 || failed % 100 == 0))
        KN_LOG(cw->log, KN_LOG_WARN, KN_DBG_METRICS,
               "%s metrics: PutMetricData failed after %d attempts (%llu failed calls so far; their "
               "metrics are dropped): %s",
               cw->component, res->attempts, (unsigned long long)failed, res->err.message);
    free(call);
    cw_unref(cw);
}

static void send_form(kn__cw_t *cw, kn_buf_t *body, size_t datums)
{
    size_t bytes = body->len;
    pthread_mutex_lock(&cw->lock);
    bool fits = cw->bytes_in_flight + bytes <= cw->max_bytes;
    uint64_t dropped = fits ? cw->dropped : ++cw->dropped;
    if (fits) {
        cw->bytes_in_flight += bytes;
        cw->in_flight++;
    }
    pthread_mutex_unlock(&cw->lock);
    if (!fits) {
        kn__buf_free(body);
        if (dropped == 1 || dropped % 100 == 0)
            KN_LOG(cw->log, KN_LOG_WARN, KN_DBG_METRICS,
                   "%s metrics: %zu datums dropped: earlier uploads still hold "
                   "metrics.cloudwatch.max.bytes (%llu uploads dropped so far)",
                   cw->component, datums, (unsigned long long)dropped);
        return;
    }
    call_t *call = malloc(sizeof(*call));
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = KN_ERR_NOMEM;
    if (call) {
        *call = (call_t){cw, bytes, datums};
        atomic_fetch_add(&cw->refs, 1);
        kn__aws_req_t req = {
            .service = KN__SVC_CLOUDWATCH,
            .operation = "PutMetricData",
            .body = *body,
            .cb = on_done,
            .opaque = call,
        };
        memset(body, 0, sizeof(*body));
        rc = kn__aws_call(cw->c, &req, &e);
        if (rc != KN_ERR_OK) {
            atomic_fetch_sub(&cw->refs, 1);
            free(call);
        }
    } else {
        kn__buf_free(body);
    }
    if (rc != KN_ERR_OK) {
        pthread_mutex_lock(&cw->lock);
        cw->bytes_in_flight -= bytes;
        cw->in_flight--;
        cw->failed++;
        pthread_mutex_unlock(&cw->lock);
        KN_LOG(cw->log, KN_LOG_WARN, KN_DBG_METRICS, "%s metrics: PutMetricData not sent: %s", cw->component,
               call ? e.message : "out of memory");
    }
}

void kn__cw_publish(kn__cw_t *cw, const char *ns, const kn_metric_t *metrics, size_t n)
{
    if (!cw)
        return;
    size_t i = 0;
    while (i < n) {
        kn_buf_t body = {0};
        /* As many datums as fit the limits; a datum is far below 1 MB, so each call takes one. */
        size_t first = i, mark = 0;
        if (kn__cw_form(&body, ns, NULL, 0) != 0)
            goto nomem;
        while (i < n && i - first < KN__CW_MAX_DATUMS) {
            mark = body.len;
            if (datum(&body, i - first + 1, &metrics[i]) != 0)
                goto nomem;
            if (body.len > KN__CW_MAX_BODY && i > first) {
                body.len = mark;
                break;
            }
            i++;
        }
        send_form(cw, &body, i - first);
        continue;
    nomem:
        kn__buf_free(&body);
        pthread_mutex_lock(&cw->lock);
        cw->dropped++;
        pthread_mutex_unlock(&cw->lock);
        KN_LOG(cw->log, KN_LOG_WARN, KN_DBG_METRICS, "%s metrics: out of memory building PutMetricData; %zu "
               "datums dropped", cw->component, n - first);
        return;
    }
}

void kn__cw_destroy(kn__cw_t *cw)
{
    if (!cw)
        return;
    int64_t deadline = kn__mono_ms() + cw->shutdown_ms;
    pthread_mutex_lock(&cw->lock);
    while (cw->in_flight > 0) {
        int64_t left = deadline - kn__mono_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        kn__abs_after(&ts, left);
        pthread_cond_timedwait(&cw->cond, &cw->lock, &ts);
    }
    int left = cw->in_flight;
    pthread_mutex_unlock(&cw->lock);
    if (left)
        KN_LOG(cw->log, KN_LOG_WARN, KN_DBG_METRICS,
               "%s metrics: %d PutMetricData calls still in flight after metrics.cloudwatch.shutdown.ms; "
               "not waiting for them",
               cw->component, left);
    cw_unref(cw);
}

void kn__cw_counters(const kn__cw_t *cw, uint64_t *sent, uint64_t *failed, uint64_t *dropped,
                     uint64_t *datums)
{
    *sent = *failed = *dropped = *datums = 0;
    if (!cw)
        return;
    kn__cw_t *w = (kn__cw_t *)cw;
    pthread_mutex_lock(&w->lock);
    *sent = w->sent;
    *failed = w->failed;
    *dropped = w->dropped;
    *datums = w->datums;
    pthread_mutex_unlock(&w->lock);
}
