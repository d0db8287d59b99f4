/*
 * Internal: the CloudWatch publisher. Turns a window of metrics into
 * PutMetricData calls (query protocol, signed for "monitoring" like every
 * other call, sent on the client's loop with the request layer's retries)
 * and never waits for them: at most metrics.cloudwatch.max.bytes of bodies
 * are in flight, and a window that does not fit is dropped, counted and
 * logged. Each datum is a statistic set (Sum, Minimum, Maximum, SampleCount)
 * with its unit and the window's end as its timestamp, as the KPL sends
 * them; a call carries at most 1,000 datums and 1 MB, the service's limits.
 */
#ifndef KN_CLOUDWATCH_H
#define KN_CLOUDWATCH_H

#include <stdint.h>

#include "buf.h"
#include "client.h"
#include "kinesis/common.h"

typedef struct kn__cw_s kn__cw_t;

#define KN__CW_MAX_DATUMS 1000
#define KN__CW_MAX_BODY 1000000

/* NULL with err set on failure. component names the owner in log lines. */
kn__cw_t *kn__cw_new(kn_client_t *c, const kn_conf_t *conf, const char *component, kn_error_t *err);

/* Sends metrics[0..n) under namespace ns; returns at once. Any thread. */
void kn__cw_publish(kn__cw_t *cw, const char *ns, const kn_metric_t *metrics, size_t n);

/*
 * Waits up to metrics.cloudwatch.shutdown.ms for the calls in flight, then
 * lets go (a call still in flight frees what it holds when it ends). NULL is
 * a no-op. Never from the client's loop thread.
 */
void kn__cw_destroy(kn__cw_t *cw);

/* Calls that succeeded, failed (after the request layer's retries) or were dropped; datums sent. */
void kn__cw_counters(const kn__cw_t *cw, uint64_t *sent, uint64_t *failed, uint64_t *dropped,
                     uint64_t *datums);

/*
 * Appends the form of one PutMetricData call with metrics[0..n) to body
 * (empty on entry). Pure; for unit tests. 0, or -1 without memory.
 */
int kn__cw_form(kn_buf_t *body, const char *ns, const kn_metric_t *metrics, size_t n);

#endif
