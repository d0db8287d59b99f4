/*
 * The consumer's metrics (README "Metrics"; the stream reader's are in
 * reader_metrics.c). The consumer publishes under the KCL's names and dimensions: the
 * ProcessTask metrics (Operation, ShardId) per process_records call
 * (dispatch.c), the lease metrics of RenewAllLeases and TakeLeases
 * (Operation, WorkerIdentifier) from the lease coordinator's counters and
 * the scans, and our own where the KCL has no equivalent (Operation
 * LeaseCoordinator: handoffs both ways, releases, checkpoints).
 */
#include <stdatomic.h>

#include "consumer_int.h"
#include "metrics.h"

static const kn__mdef_t consumer_defs[KN__CM__COUNT] = {
    [KN__CM_RECORDS] = {"RecordsProcessed", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, "ProcessTask", false},
    [KN__CM_BYTES] = {"DataBytesProcessed", KN__MU_BYTES, KN__ML_SUMMARY, KN__MG_SHARD, "ProcessTask", false},
    [KN__CM_MBL] = {"MillisBehindLatest", KN__MU_MS, KN__ML_SUMMARY, KN__MG_SHARD, "ProcessTask", false},
    [KN__CM_PROCESS_TIME] = {"RecordProcessor.processRecords.Time", KN__MU_MS, KN__ML_SUMMARY, KN__MG_SHARD,
                             "ProcessTask", false},
    [KN__CM_CURRENT_LEASES] = {"CurrentLeases", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "RenewAllLeases", true},
    [KN__CM_LOST_LEASES] = {"LostLeases", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "RenewAllLeases", true},
    [KN__CM_RENEW_SUCCESS] = {"RenewLease.Success", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_GLOBAL, "RenewAllLeases",
                              true},
    [KN__CM_TAKEN_LEASES] = {"TakenLeases", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_TOTAL_LEASES] = {"TotalLeases", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_NUM_WORKERS] = {"NumWorkers", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_EXPIRED_LEASES] = {"ExpiredLeases", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_NEEDED_LEASES] = {"NeededLeases", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_LEASES_TO_TAKE] = {"LeasesToTake", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_GLOBAL, "TakeLeases", true},
    [KN__CM_HANDED_TO_US] = {"LeasesHandedToUs", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "LeaseCoordinator",
                             true},
    [KN__CM_HANDED_OVER] = {"LeasesHandedOver", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "LeaseCoordinator",
                            true},
    [KN__CM_RELEASED] = {"LeasesReleased", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_GLOBAL, "LeaseCoordinator", true},
    [KN__CM_CHECKPOINTS] = {"Checkpoints", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_GLOBAL, "LeaseCoordinator", true},
    [KN__CM_HANDOFF_TIME] = {"HandoffTime", KN__MU_MS, KN__ML_SUMMARY, KN__MG_GLOBAL, "LeaseCoordinator", true},
    [KN__CM_OUT_OF_RANGE] = {"SubRecordsOutOfRange", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, "ProcessTask",
                             false},
};

static void consumer_sample(kn__metrics_t *m, void *opaque)
{
    kn_consumer_t *c = opaque;
    kn__metrics_add(m, KN__CM_CURRENT_LEASES, NULL, NULL, NULL,
                    (double)atomic_load_explicit(&c->stats[KN_CONSUMER_STAT_LEASES_HELD], memory_order_relaxed),
                    1);
}

kn_err_t kn__cm_start(kn_consumer_t *c, const char *appname, kn_error_t *err)
{
    kn__metrics_opts_t o = {
        .defs = consumer_defs,
        .n_defs = KN__CM__COUNT,
        .component = "consumer",
        .default_namespace = appname, /* the KCL's default */
        .worker_id = c->worker_id,
        .sample = consumer_sample,
        .sample_opaque = c,
    };
    return kn__metrics_start(c->client, c->conf, &o, &c->metrics, err);
}

void kn__cm_stat(kn_consumer_t *c, kn_consumer_stat_t s, int64_t v)
{
    int id;
    double value = 1; /* events: one sample of 1 each (RenewLease.Success: 1 or 0) */
    switch (s) {
    case KN_CONSUMER_STAT_LEASES_TAKEN: id = KN__CM_TAKEN_LEASES; break;
    case KN_CONSUMER_STAT_LEASES_LOST: id = KN__CM_LOST_LEASES; break;
    case KN_CONSUMER_STAT_LEASES_STOLEN: id = KN__CM_HANDED_TO_US; break;
    case KN_CONSUMER_STAT_LEASES_HANDED: id = KN__CM_HANDED_OVER; break;
    case KN_CONSUMER_STAT_LEASES_RELEASED: id = KN__CM_RELEASED; break;
    case KN_CONSUMER_STAT_CHECKPOINTS: id = KN__CM_CHECKPOINTS; break;
    case KN_CONSUMER_STAT_RENEWALS: id = KN__CM_RENEW_SUCCESS; value = 1; break;
    case KN_CONSUMER_STAT_RENEW_FAILURES: id = KN__CM_RENEW_SUCCESS; value = 0; break;
    default: return;
    }
    if (v > 0)
        kn__metrics_add(c->metrics, id, NULL, NULL, NULL, value, (uint64_t)v);
}

void kn__cm_batch(kn_consumer_t *c, const char *shard, size_t records, int64_t bytes, int64_t millis_behind,
                  int64_t process_ms, size_t out_of_range)
{
    kn__mbatch_t b;
    kn__mbatch_init(&b, c->metrics);
    kn__mbatch_add(&b, KN__CM_RECORDS, NULL, shard, NULL, (double)records, 1);
    kn__mbatch_add(&b, KN__CM_BYTES, NULL, shard, NULL, (double)bytes, 1);
    if (millis_behind >= 0)
        kn__mbatch_add(&b, KN__CM_MBL, NULL, shard, NULL, (double)millis_behind, 1);
    kn__mbatch_add(&b, KN__CM_PROCESS_TIME, NULL, shard, NULL, (double)process_ms, 1);
    if (out_of_range)
        kn__mbatch_add(&b, KN__CM_OUT_OF_RANGE, NULL, shard, NULL, (double)out_of_range, 1);
    kn__mbatch_commit(&b);
}

void kn__cm_handoff(kn_consumer_t *c, int64_t ms)
{
    kn__metrics_add(c->metrics, KN__CM_HANDOFF_TIME, NULL, NULL, NULL, (double)ms, 1);
}

void kn__cm_scan(kn_consumer_t *c, size_t total, int64_t workers, size_t expired, int64_t needed, size_t to_take)
{
    kn__mbatch_t b;
    kn__mbatch_init(&b, c->metrics);
    kn__mbatch_add(&b, KN__CM_TOTAL_LEASES, NULL, NULL, NULL, (double)total, 1);
    kn__mbatch_add(&b, KN__CM_NUM_WORKERS, NULL, NULL, NULL, (double)workers, 1);
    kn__mbatch_add(&b, KN__CM_EXPIRED_LEASES, NULL, NULL, NULL, (double)expired, 1);
    kn__mbatch_add(&b, KN__CM_NEEDED_LEASES, NULL, NULL, NULL, (double)(needed > 0 ? needed : 0), 1);
    kn__mbatch_add(&b, KN__CM_LEASES_TO_TAKE, NULL, NULL, NULL, (double)to_take, 1);
    kn__mbatch_commit(&b);
}
