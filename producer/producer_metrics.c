/*
 * The producer's metrics, under the names the KPL publishes them (README
 * "Metrics"), recorded at three places:
 *   - each PutRecords answer (loop thread): the request's time and size, each
 *     Kinesis record put or failed, and the errors by code;
 *   - each served result (the serving thread): user records put or failed,
 *     their bytes, retries, buffering time, expiry;
 *   - once a second (metrics thread): the user records pending.
 * Each place gathers its samples in a kn__mbatch_t and records them under
 * one lock. With metrics off, p->metrics is NULL and each costs one test.
 */
#include <stdatomic.h>

#include "metrics.h"
#include "producer_int.h"

/* Wire names exactly as the KPL sends them (its documentation spells some with spaces). */
static const kn__mdef_t defs[KN__PM__COUNT] = {
    [KN__PM_USER_RECORDS_RECEIVED] = {"UserRecordsReceived", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_STREAM, NULL, false},
    [KN__PM_USER_RECORDS_PENDING] = {"UserRecordsPending", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_STREAM, NULL, false},
    [KN__PM_USER_RECORDS_PUT] = {"UserRecordsPut", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_USER_RECORDS_DATA_PUT] = {"UserRecordsDataPut", KN__MU_BYTES, KN__ML_DETAILED, KN__MG_SHARD, NULL, false},
    [KN__PM_USER_RECORD_EXPIRED] = {"UserRecordExpired", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_BUFFERING_TIME] = {"BufferingTime", KN__MU_MS, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_RETRIES_PER_RECORD] = {"RetriesPerRecord", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_SHARD, NULL, false},
    [KN__PM_KINESIS_RECORDS_PUT] = {"KinesisRecordsPut", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_KINESIS_RECORDS_DATA_PUT] = {"KinesisRecordsDataPut", KN__MU_BYTES, KN__ML_DETAILED, KN__MG_SHARD, NULL, false},
    [KN__PM_ERRORS_BY_CODE] = {"ErrorsByCode", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_ALL_ERRORS] = {"AllErrors", KN__MU_COUNT, KN__ML_SUMMARY, KN__MG_SHARD, NULL, false},
    [KN__PM_REQUEST_TIME] = {"RequestTime", KN__MU_MS, KN__ML_DETAILED, KN__MG_STREAM, NULL, false},
    [KN__PM_USER_RECORDS_PER_KINESIS_RECORD] = {"UserRecordsPerKinesisRecord", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_SHARD, NULL, false},
    [KN__PM_KINESIS_RECORDS_PER_REQUEST] = {"KinesisRecordsPerPutRecordsRequest", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_STREAM, NULL, false},
    [KN__PM_USER_RECORDS_PER_REQUEST] = {"UserRecordsPerPutRecordsRequest", KN__MU_COUNT, KN__ML_DETAILED, KN__MG_STREAM, NULL, false},
};

static void sample(kn__metrics_t *m, void *opaque)
{
    kn_producer_t *p = opaque;
    if (!kn__metrics_wants(m, KN__PM_USER_RECORDS_PENDING))
        return;
    kn__mbatch_t b;
    kn__mbatch_init(&b, m);
    /* Streams are never freed before the producer; the list only grows at its head, under p->lock. */
    pthread_mutex_lock(&p->lock);
    kn__pstream_t *head = p->streams;
    pthread_mutex_unlock(&p->lock);
    for (kn__pstream_t *s = head; s; s = s->next)
        kn__mbatch_add(&b, KN__PM_USER_RECORDS_PENDING, s->name, NULL, NULL,
                       (double)atomic_load_explicit(&s->pending, memory_order_relaxed), 1);
    kn__mbatch_commit(&b);
}

kn_err_t kn__pm_start(kn_producer_t *p, kn_error_t *err)
{
    kn__metrics_opts_t o = {
        .defs = defs,
        .n_defs = KN__PM__COUNT,
        .component = "producer",
        .default_namespace = "KinesisProducerLibrary",
        .sample = sample,
        .sample_opaque = p,
    };
    return kn__metrics_start(p->client, p->conf, &o, &p->metrics, err);
}

void kn__pm_answer(kn_producer_t *p, kn__pstream_t *s, kn__krec_t *const *krecs, size_t n,
                   const kn_error_t *fail, const kn__put_result_entry_t *entries, int64_t request_ms)
{
    kn__mbatch_t b;
    kn__mbatch_init(&b, p->metrics);
    size_t user_records = 0;
    for (size_t i = 0; i < n; i++)
        user_records += krecs[i]->recs.count;
    kn__mbatch_add(&b, KN__PM_REQUEST_TIME, s->name, NULL, NULL, (double)request_ms, 1);
    kn__mbatch_add(&b, KN__PM_KINESIS_RECORDS_PER_REQUEST, s->name, NULL, NULL, (double)n, 1);
    kn__mbatch_add(&b, KN__PM_USER_RECORDS_PER_REQUEST, s->name, NULL, NULL, (double)user_records, 1);
    if (fail) {
        /* The whole call failed: counted once, at the stream, as the KPL does. */
        const char *code = *fail->aws_type ? fail->aws_type : kn_err2name(fail->code);
        kn__mbatch_add(&b, KN__PM_ERRORS_BY_CODE, s->name, NULL, code, 1, 1);
        kn__mbatch_add(&b, KN__PM_ALL_ERRORS, s->name, NULL, NULL, 1, 1);
        kn__mbatch_commit(&b);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const kn__krec_t *k = krecs[i];
        const kn__put_result_entry_t *en = &entries[i];
        const char *shard = k->shard->shard_id; /* predicted, as the KPL reports it */
        bool ok = en->shard_id && en->sequence_number;
        kn__mbatch_add(&b, KN__PM_KINESIS_RECORDS_PUT, s->name, shard, NULL, ok ? 1 : 0, 1);
        kn__mbatch_add(&b, KN__PM_ALL_ERRORS, s->name, shard, NULL, ok ? 0 : 1, 1);
        if (ok) {
            kn__mbatch_add(&b, KN__PM_KINESIS_RECORDS_DATA_PUT, s->name, shard, NULL, (double)k->wire_bytes, 1);
            kn__mbatch_add(&b, KN__PM_USER_RECORDS_PER_KINESIS_RECORD, s->name, shard, NULL,
                           (double)k->recs.count, 1);
        } else {
            kn__mbatch_add(&b, KN__PM_ERRORS_BY_CODE, s->name, shard,
                           en->error_code && *en->error_code ? en->error_code : "UnknownError", 1, 1);
        }
    }
    kn__mbatch_commit(&b);
}

void kn__pm_served(kn_producer_t *p, kn__mbatch_t *b, const kn__prec_t *r)
{
    const char *stream = r->stream->name;
    /* A failed record's shard is not kept: its figures count at the stream and globally only. */
    const char *shard = r->err == KN_ERR_OK && r->landing ? r->landing->shard_id : NULL;
    atomic_fetch_sub_explicit(&r->stream->pending, 1, memory_order_relaxed);
    kn__mbatch_add(b, KN__PM_USER_RECORDS_PUT, stream, shard, NULL, r->err == KN_ERR_OK ? 1 : 0, 1);
    if (r->err == KN_ERR_OK)
        kn__mbatch_add(b, KN__PM_USER_RECORDS_DATA_PUT, stream, shard, NULL, (double)r->data_len, 1);
    else if (r->err == KN_ERR_TIMEOUT)
        kn__mbatch_add(b, KN__PM_USER_RECORD_EXPIRED, stream, NULL, NULL, 1, 1);
    if (r->n_attempts > 0) {
        kn__mbatch_add(b, KN__PM_RETRIES_PER_RECORD, stream, shard, NULL, (double)(r->n_attempts - 1), 1);
        /* One sample per attempt: how long it waited before it (from put, or from the attempt before). */
        kn__mbatch_add(b, KN__PM_BUFFERING_TIME, stream, shard, NULL, (double)r->attempt0.delay_ms, 1);
        for (int i = 1; i < r->n_attempts; i++)
            kn__mbatch_add(b, KN__PM_BUFFERING_TIME, stream, shard, NULL, (double)r->more[i - 1].delay_ms, 1);
    }
    (void)p;
}
