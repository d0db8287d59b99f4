/*
 * The producer's public API: creation, put (validation, hashing and the copy
 * on the caller's thread, memory accounting, the hand-over to the loop),
 * poll, flush, destroy and statistics. The loop side is in pipeline.c, the
 * result queue in results.c.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "buf.h"
#include "conf.h"
#include "json_fields.h"
#include "producer_int.h"

#define PARTITION_KEY_MAX_CHARS 256
/* Longest single wait slice while a put waits for room or a flush for results. */
#define WAIT_SLICE_MS 50


KN_API void kn_conf_set_result_cb(kn_conf_t *conf, kn_result_cb_t *cb, void *opaque)
{
    if (conf)
        kn__conf_set_cb(conf, KN__CB_RESULT, (kn__conf_fn_t *)cb, opaque);
}

KN_API void kn_conf_set_stats_cb(kn_conf_t *conf, kn_stats_cb_t *cb, void *opaque)
{
    if (conf)
        kn__conf_set_cb(conf, KN__CB_STATS, (kn__conf_fn_t *)cb, opaque);
}

/* Whether the calling thread is inside this producer's result (or stats) callback. */
static bool in_callback(kn_producer_t *p)
{
    return atomic_load(&p->serving) && pthread_equal(p->server, pthread_self());
}

/* ------------------------------------------------------------ background */

static void *bg_main(void *arg)
{
    kn_producer_t *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->rlock);
        bool stop = p->bg_stop && !p->res_head;
        pthread_mutex_unlock(&p->rlock);
        if (stop)
            break;
        kn__results_serve(p, -1);
    }
    return NULL;
}

/* ------------------------------------------------------------ compression slots */

/* Idle slots kept beyond this are freed when they come back. */
#define ZSLOTS_KEPT 8

kn__zslot_t *kn__zslot_get(kn_producer_t *p)
{
    pthread_mutex_lock(&p->zlock);
    kn__zslot_t *zs = p->zfree;
    if (zs)
        p->zfree = zs->next;
    pthread_mutex_unlock(&p->zlock);
    if (zs)
        return zs;
    zs = calloc(1, sizeof(*zs));
    if (zs && !(zs->z = kn__zctx_new())) {
        free(zs);
        zs = NULL;
    }
    return zs;
}

void kn__zslot_put(kn_producer_t *p, kn__zslot_t *zs)
{
    kn__buf_reset(&zs->out);
    pthread_mutex_lock(&p->zlock);
    int n = 0;
    for (kn__zslot_t *x = p->zfree; x; x = x->next)
        n++;
    if (n < ZSLOTS_KEPT) {
        zs->next = p->zfree;
        p->zfree = zs;
        zs = NULL;
    }
    pthread_mutex_unlock(&p->zlock);
    if (zs) {
        kn__zctx_destroy(zs->z);
        kn__buf_free(&zs->out);
        free(zs);
    }
}

/* ------------------------------------------------------------ creation */

static void producer_free(kn_producer_t *p)
{
    kn__pstream_t *s = p->streams;
    while (s) {
        kn__pstream_t *next = s->next;
        free(s->name);
        free(s);
        s = next;
    }
    kn__pintern_free(p);
    while (p->zfree) {
        kn__zslot_t *next = p->zfree->next;
        kn__zctx_destroy(p->zfree->z);
        kn__buf_free(&p->zfree->out);
        free(p->zfree);
        p->zfree = next;
    }
    pthread_mutex_destroy(&p->zlock);
    free(p->outer_key);
    kn__results_fini(p);
    pthread_cond_destroy(&p->rcond);
    pthread_mutex_destroy(&p->rlock);
    pthread_mutex_destroy(&p->serve_lock);
    pthread_cond_destroy(&p->room_cond);
    pthread_mutex_destroy(&p->lock);
    kn_conf_destroy(p->conf);
    free(p);
}

/* Fills err (may be NULL) for a failed creation. */
static void new_fail(kn_error_t *err, kn_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void new_fail(kn_error_t *err, kn_err_t code, const char *fmt, ...)
{
    if (!err)
        return;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kn__error_clear(err);
    kn__error_set(err, code, "%s", msg);
}

KN_API kn_producer_t *kn_producer_new_on(kn_client_t *client, const kn_conf_t *conf, kn_error_t *err)
{
    if (!client) {
        new_fail(err, KN_ERR_INVALID_ARG, "kn_producer_new_on: client is NULL");
        return NULL;
    }
    kn_producer_t *p = calloc(1, sizeof(*p));
    if (!p) {
        new_fail(err, KN_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->room_cond, NULL);
    p->efd = -1; /* producer_free closes it */
    pthread_mutex_init(&p->rlock, NULL);
    pthread_cond_init(&p->rcond, NULL);
    pthread_mutex_init(&p->serve_lock, NULL);
    pthread_mutex_init(&p->zlock, NULL);
    p->conf = conf ? kn_conf_dup(conf) : kn_conf_new();
    if (!p->conf) {
        new_fail(err, KN_ERR_NOMEM, "out of memory");
        goto fail_early;
    }
    const kn_conf_t *cf = p->conf;
    void *op = NULL;
    p->cb = (kn_result_cb_t *)kn__conf_cb(cf, KN__CB_RESULT, &op);
    p->cb_opaque = op;
    op = NULL;
    p->stats_cb = (kn_stats_cb_t *)kn__conf_cb(cf, KN__CB_STATS, &op);
    p->stats_opaque = op;
    p->stats_ms = kn__conf_int(cf, KN_P_P_STATS_MS);
    if (p->stats_ms <= 0)
        p->stats_cb = NULL;
    p->stats_next_ms = kn__mono_ms() + p->stats_ms;
    p->buffered_ms = kn__conf_int(cf, KN_P_P_BUFFERED_MS);
    p->ttl_ms = kn__conf_int(cf, KN_P_P_TTL_MS);
    p->put_timeout_ms = kn__conf_int(cf, KN_P_P_PUT_TIMEOUT_MS);
    p->shutdown_ms = kn__conf_int(cf, KN_P_P_SHUTDOWN_MS);
    p->buf_max_records = kn__conf_int(cf, KN_P_P_BUF_RECORDS);
    p->buf_max_bytes = kn__conf_int(cf, KN_P_P_BUF_BYTES);
    p->agg_enabled = kn__conf_bool(cf, KN_P_P_AGG_ENABLED);
    p->agg_max_bytes = kn__conf_int(cf, KN_P_P_AGG_MAX_BYTES);
    p->agg_max_count = kn__conf_int(cf, KN_P_P_AGG_MAX_COUNT);
    p->max_inflight = kn__conf_int(cf, KN_P_P_MAX_INFLIGHT);
    p->rate_percent = (double)kn__conf_int(cf, KN_P_P_RATE_LIMIT);
    p->fail_if_throttled = kn__conf_bool(cf, KN_P_P_FAIL_IF_THROTTLED);
    p->strict = kn__conf_bool(cf, KN_P_P_STRICT_ORDER);
    p->background = kn__conf_bool(cf, KN_P_P_BACKGROUND);
    p->retry_base_ms = kn__conf_int(cf, KN_P_RETRY_BASE_MS);
    p->retry_cap_ms = kn__conf_int(cf, KN_P_RETRY_MAX_BACKOFF_MS);
    kn__kinesis_limits_from_conf(cf, &p->limits);
    /*
     * Bodies in flight copy their records (base64, 4/3): a quarter of the
     * buffer bound keeps the whole producer within about twice that bound.
     */
    p->inflight_bytes_max = p->buf_max_bytes / 4;
    if (p->inflight_bytes_max < p->limits.put_max_bytes)
        p->inflight_bytes_max = p->limits.put_max_bytes;
    const char *outer = kn__conf_str(cf, KN_P_P_OUTER_KEY);
    long outer_chars = kn__utf8_count(outer, strlen(outer));
    if (outer_chars < 1 || outer_chars > PARTITION_KEY_MAX_CHARS) {
        new_fail(err, KN_ERR_CONF_INVALID,
                 "producer.aggregation.partition.key: must be 1 to 256 Unicode characters");
        goto fail_early;
    }
    const char *codec = kn__conf_str(cf, KN_P_P_COMPRESSION);
    const char *scope = kn__conf_str(cf, KN_P_P_COMPRESSION_SCOPE);
    if (!kn__codec_from_name(codec, strlen(codec), &p->codec)) {
        new_fail(err, KN_ERR_CONF_INVALID, "producer.compression.codec=%s: expected none, gzip or zstd",
                   codec);
        goto fail_early;
    }
    if (!kn__rc_scope_from_name(scope, strlen(scope), &p->zscope)) {
        new_fail(err, KN_ERR_CONF_INVALID, "producer.compression.scope=%s: expected aggregate or record",
                   scope);
        goto fail_early;
    }
    p->zlevel = (int)kn__conf_int(cf, KN_P_P_COMPRESSION_LEVEL);
    if (p->codec != KN__CODEC_NONE) {
        int lo = 0, hi = 0;
        kn__codec_level_range(p->codec, &lo, &hi);
        if (p->zlevel != 0 && (p->zlevel < lo || p->zlevel > hi)) {
            new_fail(err, KN_ERR_CONF_INVALID, "producer.compression.level=%d: %s takes %d to %d (0: default)",
                       p->zlevel, codec, lo, hi);
            goto fail_early;
        }
        if (p->zscope == KN__RC_SCOPE_RECORD && !p->agg_enabled) {
            new_fail(err, KN_ERR_CONF_INVALID,
                       "producer.compression.scope=record needs producer.aggregation.enabled=true "
                       "(the content-encoding tag lives inside an aggregate)");
            goto fail_early;
        }
        kn__zslot_t *zs = kn__zslot_get(p); /* one ready from the start */
        if (!zs) {
            new_fail(err, KN_ERR_NOMEM, "out of memory");
            goto fail_early;
        }
        kn__zslot_put(p, zs);
    }
    p->outer_key = strdup(outer);
    if (!p->outer_key || kn__results_init(p) != 0) {
        new_fail(err, KN_ERR_NOMEM, "out of memory or no eventfd");
        goto fail_early;
    }
    p->client = kn_client_ref(client);
    if (kn__pm_start(p, err) != KN_ERR_OK) {
        kn_client_destroy(p->client);
        goto fail_early;
    }
    if (p->background) {
        if (pthread_create(&p->bg_thread, NULL, bg_main, p) != 0) {
            new_fail(err, KN_ERR_IO, "cannot start the result thread");
            kn__metrics_destroy(p->metrics);
            kn_client_destroy(p->client);
            goto fail_early;
        }
        p->bg_started = true;
    }
    return p;
fail_early:
    producer_free(p);
    return NULL;
}

KN_API kn_producer_t *kn_producer_new(const kn_conf_t *conf, kn_error_t *err)
{
    kn_client_t *c = kn_client_new(conf, err);
    if (!c)
        return NULL;
    kn_producer_t *p = kn_producer_new_on(c, conf, err);
    kn_client_destroy(c); /* the producer holds its own reference */
    return p;
}

/* ------------------------------------------------------------ put */

/* Under p->lock. */
static kn__pstream_t *stream_get(kn_producer_t *p, const char *name)
{
    for (kn__pstream_t *s = p->streams; s; s = s->next)
        if (strcmp(s->name, name) == 0)
            return s;
    kn__pstream_t *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->name = strdup(name);
    if (!s->name) {
        free(s);
        return NULL;
    }
    /* An ARN goes as StreamARN, a name as StreamName. */
    if (strncmp(name, "arn:", 4) == 0)
        s->ref.arn = s->name;
    else
        s->ref.name = s->name;
    s->record_max_bytes = p->limits.record_max_bytes;
    s->producer = p;
    s->next = p->streams;
    p->streams = s;
    return s;
}

/*
 * A record over kinesis.record.max.bytes may still fit the stream's own
 * limit (MaxRecordSizeInKiB): the first such record starts one asynchronous
 * DescribeStreamSummary for its stream, and every large put of that stream
 * waits for its answer (within producer.put.timeout.ms, serving results
 * meanwhile) instead of failing. A failure that may pass (throttling, the
 * network, credentials) is asked again 5 s later; a refusal (access denied:
 * the permission is optional) leaves the default limit. The call counts as an
 * active call, so destroy waits for it.
 */
#define LIMIT_RETRY_MS 5000

typedef struct limit_call_s {
    kn_producer_t *p;
    kn__pstream_t *s;
} limit_call_t;

static void on_limit(kn__aws_result_t *res, void *opaque)
{
    limit_call_t *lc = opaque;
    kn_producer_t *p = lc->p;
    kn__pstream_t *s = lc->s;
    free(lc);
    kn__stream_summary_t sum;
    memset(&sum, 0, sizeof(sum));
    kn_error_t e;
    kn__error_clear(&e);
    kn_err_t rc = res->err.code;
    if (rc == KN_ERR_OK)
        rc = kn__describe_stream_summary_parse(res->json, &sum, &e);
    else
        kn__error_copy(&e, &res->err);
    bool again = rc != KN_ERR_OK && (e.retriable || e.cls == KN__EC_RETRY ||
                                     e.code == KN_ERR_THROTTLED || e.code == KN_ERR_TRANSPORT ||
                                     e.code == KN_ERR_TIMEOUT || e.code == KN_ERR_CREDENTIALS);
    pthread_mutex_lock(&p->lock);
    if (rc == KN_ERR_OK && sum.max_record_size_kib * 1024 > s->record_max_bytes)
        s->record_max_bytes = sum.max_record_size_kib * 1024;
    if (rc != KN_ERR_OK) {
        /* Cut to fit; the whole message goes to the log below. */
        size_t n = strnlen(e.message, sizeof(s->limit_err) - 1);
        memcpy(s->limit_err, e.message, n);
        s->limit_err[n] = '\0';
    }
    s->limit_state = again ? 0 : 2;
    s->limit_retry_ms = again ? kn__mono_ms() + LIMIT_RETRY_MS : 0;
    if (--p->active_calls == 0 && p->destroying)
        pthread_cond_broadcast(&p->room_cond);
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->lock);
    kn__stream_summary_free(&sum);
    if (rc != KN_ERR_OK)
        KN_LOG(kn__client_log(p->client), KN_LOG_WARN, KN_DBG_PRODUCER,
               "stream %s: cannot learn its record size limit (%s)%s", s->name, e.message,
               again ? "; asking again later" : "; records over kinesis.record.max.bytes fail");
}

/* Under p->lock: starts learning s's limit unless it is known, being learnt or waiting to retry. */
static void limit_start(kn_producer_t *p, kn__pstream_t *s)
{
    if (s->limit_state != 0 || kn__mono_ms() < s->limit_retry_ms || p->destroying)
        return;
    limit_call_t *lc = malloc(sizeof(*lc));
    kn__aws_req_t req = {0};
    kn_error_t e;
    kn__error_clear(&e);
    if (!lc || kn__describe_stream_summary_build(&req.body, &s->ref, &e) != KN_ERR_OK) {
        free(lc);
        kn__buf_free(&req.body);
        return;
    }
    lc->p = p;
    lc->s = s;
    req.service = KN__SVC_KINESIS;
    req.operation = "DescribeStreamSummary";
    req.cb = on_limit;
    req.opaque = lc;
    s->limit_state = 1;
    p->active_calls++;
    if (kn__aws_call(p->client, &req, &e) != KN_ERR_OK) {
        free(lc);
        s->limit_state = 0;
        p->active_calls--;
    }
}

/*
 * Under p->lock: waits up to left ms (at most WAIT_SLICE_MS) for room or
 * news, serving this producer's results on this thread unless in background
 * mode, so that a single-threaded program cannot deadlock.
 */
static void wait_slice(kn_producer_t *p, int64_t left)
{
    if (left > WAIT_SLICE_MS)
        left = WAIT_SLICE_MS;
    if (p->background) {
        struct timespec ts;
        kn__abs_after(&ts, left);
        pthread_cond_timedwait(&p->room_cond, &p->lock, &ts);
    } else {
        pthread_mutex_unlock(&p->lock);
        kn__results_serve(p, (int)left);
        pthread_mutex_lock(&p->lock);
    }
}

static kn_err_t put_fail(char *errstr, size_t size, kn_err_t code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static kn_err_t put_fail(char *errstr, size_t size, kn_err_t code, const char *fmt, ...)
{
    if (errstr && size) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, size, fmt, ap);
        va_end(ap);
    }
    return code;
}

KN_API kn_err_t kn_producer_put(kn_producer_t *p, const kn_record_t *rec, char *errstr,
                                size_t errstr_size)
{
    if (!p || !rec)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG, "put: %s is NULL",
                        !p ? "the producer" : "the record");
    if (rec->struct_size < sizeof(kn_record_t))
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG,
                        "put: record.struct_size is %zu, not sizeof(kn_record_t) (%zu): start from "
                        "KN_RECORD_INIT",
                        rec->struct_size, sizeof(kn_record_t));
    if (!rec->stream || !*rec->stream)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG, "put: no stream name");
    if (!rec->partition_key)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG, "put: partition key is NULL");
    if (!rec->data && rec->data_len)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG,
                        "put: data is NULL with data_len %zu", rec->data_len);
    size_t klen = rec->partition_key_len ? rec->partition_key_len : strlen(rec->partition_key);
    long chars = kn__utf8_count(rec->partition_key, klen);
    if (chars < 0)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG,
                        "put: partition key is not valid UTF-8");
    if (chars < 1 || chars > PARTITION_KEY_MAX_CHARS)
        return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG,
                        "put: partition key has %ld Unicode characters; the limit is 1 to %d", chars,
                        PARTITION_KEY_MAX_CHARS);
    /*
     * An explicit hash key is checked here; the MD5 of a partition key is
     * left to the loop thread, which hashes the keys it takes many at a time
     * (kn__md5_many; pipeline.c).
     */
    kn__hashkey_t hash = {0, 0};
    size_t elen = 0;
    if (rec->explicit_hash_key) {
        elen = strlen(rec->explicit_hash_key);
        if (kn__hashkey_parse(rec->explicit_hash_key, elen, &hash) != 0)
            return put_fail(errstr, errstr_size, KN_ERR_INVALID_ARG,
                            "put: explicit hash key \"%.48s\" is not a decimal number in 0..2^128-1",
                            rec->explicit_hash_key);
    }
    uint64_t wire = (uint64_t)rec->data_len + klen;
    /*
     * Record scope: the data is compressed here, on the caller's thread, so
     * that this work scales with the application's threads and never holds
     * up the I/O thread; what is kept (and counted) is the frame.
     */
    const void *data = rec->data;
    size_t data_len = rec->data_len;
    kn__codec_t zcodec = KN__CODEC_NONE;
    kn__zslot_t *zs = NULL;
    if (p->codec != KN__CODEC_NONE && p->zscope == KN__RC_SCOPE_RECORD && data_len > 0) {
        kn_error_t ze;
        kn__error_clear(&ze);
        kn__agg_tag_t tag;
        bool compressed = false;
        if (!(zs = kn__zslot_get(p)))
            return put_fail(errstr, errstr_size, KN_ERR_NOMEM, "put: out of memory");
        kn_err_t zrc = kn__rc_compress_record(zs->z, p->codec, p->zlevel, data, data_len, true, &zs->out,
                                              &tag, &compressed, &ze);
        if (zrc != KN_ERR_OK) {
            kn__zslot_put(p, zs);
            return put_fail(errstr, errstr_size, zrc, "put: compressing the record: %s", ze.message);
        }
        if (compressed) {
            data = zs->out.data;
            data_len = zs->out.len;
            zcodec = p->codec;
        }
    }

    kn__prec_t *r = malloc(sizeof(*r) + klen + 1 + elen + 1 + data_len);
    if (!r) {
        if (zs)
            kn__zslot_put(p, zs);
        return put_fail(errstr, errstr_size, KN_ERR_NOMEM, "put: out of memory");
    }
    memset(r, 0, sizeof(*r));
    char *tail = (char *)(r + 1);
    memcpy(tail, rec->partition_key, klen);
    tail[klen] = '\0';
    r->key = tail;
    r->key_len = (uint32_t)klen;
    tail += klen + 1;
    if (rec->explicit_hash_key) {
        memcpy(tail, rec->explicit_hash_key, elen + 1);
        r->ehk = tail;
        r->ehk_len = (uint32_t)elen;
        tail += elen + 1;
    }
    if (data_len)
        memcpy(tail, data, data_len);
    r->data = (const unsigned char *)tail;
    r->data_len = data_len;
    r->zcodec = zcodec;
    if (zs)
        kn__zslot_put(p, zs);
    r->hash = hash;
    r->hash_pending = !rec->explicit_hash_key;
    r->opaque = rec->opaque;
    int64_t now = kn__mono_ms();
    r->put_ms = r->last_end_ms = now;
    r->deadline_ms = now + p->buffered_ms;
    r->expire_ms = now + p->ttl_ms;
    int64_t need = kn__prec_mem(r);

    kn_err_t rc = KN_ERR_OK;
    pthread_mutex_lock(&p->lock);
    p->active_calls++;
    if (p->destroying) {
        rc = put_fail(errstr, errstr_size, KN_ERR_DESTROYED, "put: the producer is being destroyed");
        goto out;
    }
    kn__pstream_t *s = stream_get(p, rec->stream);
    if (!s) {
        rc = put_fail(errstr, errstr_size, KN_ERR_NOMEM, "put: out of memory");
        goto out;
    }
    int64_t wait_until = now + p->put_timeout_ms;
    if (wire > (uint64_t)s->record_max_bytes) {
        limit_start(p, s);
        /* Wait for the stream's limit like for room: bounded, serving results meanwhile. */
        while (s->limit_state == 1 && !p->destroying) {
            int64_t left = wait_until - kn__mono_ms();
            if (left <= 0 || in_callback(p))
                break;
            wait_slice(p, left);
        }
        if (wire > (uint64_t)s->record_max_bytes) {
            rc = put_fail(errstr, errstr_size, KN_ERR_TOO_LARGE,
                          "put: record is %" PRIu64 " bytes (data plus partition key), over the "
                          "limit of %" PRId64 " (kinesis.record.max.bytes or the stream's "
                          "MaxRecordSizeInKiB%s%s%s)",
                          wire, s->record_max_bytes,
                          s->limit_state == 1 ? ", still being asked for" : "",
                          s->limit_err[0] ? ", not learnt: " : "", s->limit_err);
            goto out;
        }
    }
    r->stream = s;
    while (p->mem_records + 1 > p->buf_max_records ||
           (p->mem_records > 0 && p->mem_bytes + need > p->buf_max_bytes)) {
        int64_t left = wait_until - kn__mono_ms();
        if (p->destroying) {
            rc = put_fail(errstr, errstr_size, KN_ERR_DESTROYED,
                          "put: the producer is being destroyed");
            goto out;
        }
        if (left <= 0 || in_callback(p)) {
            /* From inside the callback nothing can be served: waiting would only stall. */
            rc = put_fail(errstr, errstr_size, KN_ERR_QUEUE_FULL,
                          "put: no room within producer.put.timeout.ms=%" PRId64 " (%" PRId64
                          " records, %" PRId64 " bytes buffered or unserved; limits "
                          "producer.buffer.max.records=%" PRId64 ", producer.buffer.max.bytes=%" PRId64
                          ")",
                          p->put_timeout_ms, p->mem_records, p->mem_bytes, p->buf_max_records,
                          p->buf_max_bytes);
            goto out;
        }
        wait_slice(p, left);
    }
    p->mem_records++;
    p->mem_bytes += need;
    if (p->metrics)
        atomic_fetch_add_explicit(&s->pending, 1, memory_order_relaxed);
    r->gen = p->gen % KN__PGEN_SLOTS;
    p->gen_count[r->gen]++;
    if (p->in_tail)
        p->in_tail->next = r;
    else
        p->in_head = r;
    p->in_tail = r;
    if (!p->in_posted) {
        /* Posted under the lock so that destroy's cancel task is always queued after it. */
        p->in_posted = true;
        if (kn__client_post(p->client, kn__pipeline_take, p) != KN_ERR_OK)
            p->in_posted = false; /* client stopping: destroy's cancel step collects it */
    }
    r = NULL;
    atomic_fetch_add_explicit(&p->stats.received, 1, memory_order_relaxed);
out:
    p->active_calls--;
    if (p->active_calls == 0 && p->destroying)
        pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->lock);
    free(r);
    return rc;
}

/* ------------------------------------------------------------ poll / flush */

/* poll and flush count as active calls: destroy waits until they have left the producer. */
static void call_enter(kn_producer_t *p)
{
    pthread_mutex_lock(&p->lock);
    p->active_calls++;
    pthread_mutex_unlock(&p->lock);
}

static void call_leave(kn_producer_t *p)
{
    pthread_mutex_lock(&p->lock);
    if (--p->active_calls == 0 && p->destroying)
        pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->lock);
}

KN_API int kn_producer_poll(kn_producer_t *p, int timeout_ms)
{
    if (!p || p->background)
        return 0;
    call_enter(p);
    int n = kn__results_serve(p, timeout_ms);
    call_leave(p);
    return n;
}

KN_API int kn_producer_fd(kn_producer_t *p) { return p && !p->background ? p->efd : -1; }

KN_API int64_t kn_producer_pending(kn_producer_t *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->lock);
    int64_t n = p->mem_records;
    pthread_mutex_unlock(&p->lock);
    return n;
}

/* Records of generations before first_new (slot) still unserved. Under p->lock. */
static int64_t older_pending(const kn_producer_t *p, uint32_t first_new)
{
    uint32_t span = p->gen - first_new + 1; /* generations started since the flush began */
    int64_t n = 0;
    if (span >= KN__PGEN_SLOTS)
        span = 0; /* slots reused: wait for everything (longer, never shorter) */
    for (uint32_t i = 0; i < KN__PGEN_SLOTS; i++) {
        uint32_t g = (first_new + i) % KN__PGEN_SLOTS;
        if (i < span)
            continue; /* a generation put after the flush began */
        n += p->gen_count[g];
    }
    return n;
}

static kn_err_t flush_wait(kn_producer_t *p, int64_t timeout_ms)
{
    pthread_mutex_lock(&p->lock);
    p->gen++;
    uint32_t first_new = p->gen;
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_add(&p->flush_req, 1);
    kn__client_post(p->client, kn__pipeline_kick, p);
    int64_t until = timeout_ms < 0 ? INT64_MAX : kn__mono_ms() + timeout_ms;
    kn_err_t rc = KN_ERR_OK;
    pthread_mutex_lock(&p->lock);
    while (older_pending(p, first_new) > 0) {
        int64_t left = until == INT64_MAX ? WAIT_SLICE_MS : until - kn__mono_ms();
        if (left <= 0) {
            rc = KN_ERR_TIMEOUT;
            break;
        }
        if (left > WAIT_SLICE_MS)
            left = WAIT_SLICE_MS;
        if (p->background) {
            struct timespec ts;
            kn__abs_after(&ts, left);
            pthread_cond_timedwait(&p->room_cond, &p->lock, &ts);
        } else {
            pthread_mutex_unlock(&p->lock);
            kn__results_serve(p, (int)left);
            pthread_mutex_lock(&p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);
    atomic_fetch_sub(&p->flush_req, 1);
    return rc;
}

KN_API kn_err_t kn_producer_flush(kn_producer_t *p, int timeout_ms)
{
    if (!p)
        return KN_ERR_INVALID_ARG;
    /* The callback's own thread serves results: waiting here would only wait for itself. */
    if (in_callback(p))
        return KN_ERR_STATE;
    call_enter(p);
    kn_err_t rc = flush_wait(p, timeout_ms);
    call_leave(p);
    return rc;
}

/* ------------------------------------------------------------ destroy */

KN_API kn_err_t kn_producer_destroy(kn_producer_t *p)
{
    if (!p)
        return KN_ERR_OK;
    if (in_callback(p)) {
        /* Freeing the producer under the loop that serves (or joining our own thread) cannot work. */
        KN_LOG(kn__client_log(p->client), KN_LOG_ERROR, KN_DBG_PRODUCER,
               "kn_producer_destroy called from the result or stats callback: refused "
               "(KN_ERR_STATE); destroy the producer after the callback returns");
        return KN_ERR_STATE;
    }
    pthread_mutex_lock(&p->lock);
    if (p->destroying) {
        pthread_mutex_unlock(&p->lock);
        return KN_ERR_STATE; /* a second destroy while the first runs */
    }
    p->destroying = true;
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->lock);
    /*
     * A poll on another thread waiting for a result that may never come
     * returns now (in background mode nobody polls; its thread keeps waiting).
     */
    pthread_mutex_lock(&p->rlock);
    p->destroyer = pthread_self();
    p->stop_waits = !p->background;
    pthread_cond_broadcast(&p->rcond);
    pthread_mutex_unlock(&p->rlock);

    flush_wait(p, p->shutdown_ms);

    /* Fail what is left; requests in flight end within their timeout. */
    pthread_mutex_lock(&p->lock);
    kn_err_t prc = kn__client_post(p->client, kn__pipeline_cancel, p);
    if (prc != KN_ERR_OK)
        p->loop_closed = true; /* cannot happen while we hold a client reference */
    while (!p->loop_closed || p->active_calls > 0) {
        if (p->background) {
            struct timespec ts;
            kn__abs_after(&ts, WAIT_SLICE_MS);
            pthread_cond_timedwait(&p->room_cond, &p->lock, &ts);
        } else {
            pthread_mutex_unlock(&p->lock);
            kn__results_serve(p, WAIT_SLICE_MS);
            pthread_mutex_lock(&p->lock);
        }
    }
    /* Records handed over but never taken (only if the post failed). */
    kn__prec_t *left = p->in_head;
    p->in_head = p->in_tail = NULL;
    pthread_mutex_unlock(&p->lock);
    if (left) {
        kn__plist_t l = {left, NULL, 0, 0};
        for (kn__prec_t *r = left; r; r = r->next) {
            kn__prec_fail(r, KN_ERR_DESTROYED, "the producer was destroyed before the record was sent");
            l.tail = r;
        }
        kn__results_push(p, &l);
    }

    if (p->bg_started) {
        pthread_mutex_lock(&p->rlock);
        p->bg_stop = true;
        pthread_cond_broadcast(&p->rcond);
        pthread_mutex_unlock(&p->rlock);
        pthread_join(p->bg_thread, NULL);
    }
    while (kn__results_serve(p, 0) > 0) {
    }
    /* The last window, every result in it, before the client (CloudWatch's calls) goes. */
    kn__metrics_destroy(p->metrics);
    kn_client_t *c = p->client;
    producer_free(p);
    kn_client_destroy(c);
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ stats */

static int64_t ld(_Atomic int64_t *v) { return atomic_load_explicit(v, memory_order_relaxed); }

KN_API char *kn_producer_stats_json(kn_producer_t *p)
{
    if (!p)
        return NULL;
    kn__pstats_t *s = &p->stats;
    kn_buf_t b = KN_BUF_INIT;
    int64_t pending = kn_producer_pending(p);
    int64_t put_ok = ld(&s->put_ok), kput = ld(&s->kinesis_put), reqs = ld(&s->requests);
    int64_t bufc = ld(&s->buffering_count), reqc = ld(&s->request_count);
    int bad = kn__buf_printf(
        &b,
        "{\"user_records_received\":%" PRId64 ",\"user_records_put\":%" PRId64
        ",\"user_records_pending\":%" PRId64 ",\"user_records_failed\":%" PRId64
        ",\"user_records_expired\":%" PRId64 ",\"kinesis_records_put\":%" PRId64
        ",\"requests\":%" PRId64 ",\"retries\":%" PRId64 ",\"throttled\":%" PRId64
        ",\"buffering_ms_avg\":%.3f,\"request_ms_avg\":%.3f"
        ",\"user_records_per_kinesis_record\":%.3f,\"user_records_per_request\":%.3f"
        ",\"errors\":{",
        ld(&s->received), put_ok, pending, ld(&s->failed), ld(&s->expired), kput, reqs,
        ld(&s->retries), ld(&s->throttled),
        bufc ? (double)ld(&s->buffering_ms_total) / (double)bufc : 0.0,
        reqc ? (double)ld(&s->request_ms_total) / (double)reqc : 0.0,
        kput ? (double)put_ok / (double)kput : 0.0, reqs ? (double)put_ok / (double)reqs : 0.0);
    bool first = true;
    for (int i = 1; i < KN_ERR__COUNT; i++) {
        int64_t n = ld(&s->errors[i]);
        if (!n)
            continue;
        bad |= kn__buf_printf(&b, "%s\"%s\":%" PRId64, first ? "" : ",", kn_err2name((kn_err_t)i), n);
        first = false;
    }
    bad |= kn__buf_puts(&b, "}}");
    if (bad) {
        kn__buf_free(&b);
        return NULL;
    }
    return kn__buf_steal(&b);
}
