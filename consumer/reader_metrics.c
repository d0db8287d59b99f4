/*
 * The stream reader's metrics (README "Metrics"). The reader has no KCL
 * counterpart; it publishes, per stream and shard, the records it delivers,
 * their bytes and how far behind the tip of the stream the answers were,
 * under the names the KCL gives the same figures (without Operation).
 * Samples gather in the reader's batch on the polling thread (r->mb,
 * committed at each answer and at destroy), so delivering a record costs no
 * lock.
 */
#include "metrics.h"
#include "reader_int.h"

static const kn__mdef_t reader_defs[KN__RM__COUNT] = {
    [KN__RM_RECORDS] = {"RecordsProcessed", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__RM_BYTES] = {"DataBytesProcessed", KN__MU_BYTES, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__RM_MBL] = {"MillisBehindLatest", KN__MU_MS, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__RM_OUT_OF_RANGE] = {"SubRecordsOutOfRange", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
};

kn_err_t kn__rm_start(kn_reader_t *r, kn_error_t *err)
{
    kn__metrics_opts_t o = {
        .defs = reader_defs,
        .n_defs = KN__RM__COUNT,
        .component = "reader",
        .default_namespace = "KinesisStreamReader",
    };
    kn_err_t rc = kn__metrics_start(r->client, r->conf, &o, &r->metrics, err);
    kn__mbatch_init(&r->mb, r->metrics);
    return rc;
}

void kn__rm_stop(kn_reader_t *r)
{
    kn__mbatch_commit(&r->mb);
    kn__metrics_destroy(r->metrics);
    r->metrics = NULL;
    r->mb.m = NULL;
}
