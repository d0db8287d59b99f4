/*
 * Typed Kinesis operations: request builders, response parsers and the
 * blocking/async calls over the AWS JSON layer. Control-plane bodies are
 * built with json-c; the PutRecords body is written by hand because it is
 * the producer's hot path (base64 straight into the output buffer).
 */
#include "kinesis_ops.h"
#include "clock.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aws.h"
#include "base64.h"
#include "client_int.h"

#define PARTITION_KEY_MAX_CHARS 256

/* ========================================================== small helpers */

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static int has(const char *s) { return s && *s; }

static kn_err_t nomem(kn_error_t *err, const char *op)
{
    return kn__error_set(err, KN_ERR_NOMEM, "%s: out of memory", op);
}

/* Adds v under key, taking v; -1 (and v released) on failure, including v == NULL. */
static int jadd(json_object *o, const char *key, json_object *v)
{
    if (!v)
        return -1;
    if (json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

static int jadd_str(json_object *o, const char *key, const char *v)
{
    return jadd(o, key, json_object_new_string(v));
}

static int jadd_int(json_object *o, const char *key, int64_t v)
{
    return jadd(o, key, json_object_new_int64(v));
}

static int jadd_bool(json_object *o, const char *key, bool v)
{
    return jadd(o, key, json_object_new_boolean(v));
}

/* A Kinesis Timestamp: a JSON number of seconds with a millisecond fraction. */
static int jadd_time_ms(json_object *o, const char *key, int64_t ms)
{
    char txt[48];
    snprintf(txt, sizeof(txt), "%" PRId64 ".%03d", ms / 1000, (int)(ms % 1000));
    return jadd(o, key, json_object_new_double_s((double)ms / 1000.0, txt));
}

static kn_err_t check_ref(const char *op, const kn__stream_ref_t *ref, kn_error_t *err)
{
    if (!ref || (!has(ref->name) && !has(ref->arn)))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a stream name or ARN is required", op);
    return KN_ERR_OK;
}

static int jadd_ref(json_object *o, const kn__stream_ref_t *ref)
{
    if (has(ref->name) && jadd_str(o, "StreamName", ref->name) != 0)
        return -1;
    if (has(ref->arn) && jadd_str(o, "StreamARN", ref->arn) != 0)
        return -1;
    return 0;
}

/* Serialises o into body (which keeps its old content on failure) and puts o. */
static kn_err_t finish_body(kn_buf_t *body, json_object *o, int bad, const char *op,
                            kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    if (!o || bad)
        rc = nomem(err, op);
    else
        rc = kn__json_append(body, o, err);
    json_object_put(o);
    return rc;
}

/* Sends body synchronously; *out (may be NULL) receives the parsed response. */
static kn_err_t call_sync(kn_client_t *c, const char *op, const kn_buf_t *body, json_object **out,
                          kn_error_t *err)
{
    json_object *resp = NULL;
    kn_err_t rc = kn__aws_call_sync(c, KN__SVC_KINESIS, op, body->data ? body->data : "{}",
                                    body->data ? body->len : 2, &resp, err);
    if (rc == KN_ERR_OK && out)
        *out = resp;
    else if (resp)
        json_object_put(resp);
    return rc;
}

static kn_err_t need_object(const char *op, json_object *resp, kn_error_t *err)
{
    if (!resp || !json_object_is_type(resp, json_type_object))
        return kn__error_set(err, KN_ERR_BAD_RESPONSE, "%s response: not a JSON object", op);
    return KN_ERR_OK;
}

static kn_err_t parse_hash_range(const kn__jp_t *p, json_object *o, kn__hashkey_t *start,
                                 kn__hashkey_t *end)
{
    json_object *hr;
    const char *s, *e;
    size_t sl, el;
    kn_err_t rc = kn__jp_obj(p, o, "HashKeyRange", true, &hr);
    if (rc)
        return rc;
    kn__jp_t q = *p;
    char path[96];
    if (p->arr)
        snprintf(path, sizeof(path), "%s[%ld].HashKeyRange", p->arr, p->idx);
    else
        snprintf(path, sizeof(path), "HashKeyRange");
    q.arr = NULL;
    /* Report the nested path in full. */
    if ((rc = kn__jp_str(&q, hr, "StartingHashKey", true, &s, &sl)) ||
        (rc = kn__jp_str(&q, hr, "EndingHashKey", true, &e, &el))) {
        kn__error_set(p->err, KN_ERR_BAD_RESPONSE, "%s response: field \"%s.%s\" is missing or not a string",
                      p->op, path, s ? "EndingHashKey" : "StartingHashKey");
        return KN_ERR_BAD_RESPONSE;
    }
    if (kn__hashkey_parse(s, sl, start) != 0)
        return kn__error_set(p->err, KN_ERR_BAD_RESPONSE,
                             "%s response: field \"%s.StartingHashKey\" is not a decimal hash key",
                             p->op, path);
    if (kn__hashkey_parse(e, el, end) != 0)
        return kn__error_set(p->err, KN_ERR_BAD_RESPONSE,
                             "%s response: field \"%s.EndingHashKey\" is not a decimal hash key",
                             p->op, path);
    return KN_ERR_OK;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}


void kn__kinesis_limits_from_conf(const kn_conf_t *conf, kn__kinesis_limits_t *out)
{
    out->put_max_records = kn__conf_int(conf, KN_P_PUT_MAX_RECORDS);
    out->put_max_bytes = kn__conf_int(conf, KN_P_PUT_MAX_BYTES);
    out->record_max_bytes = kn__conf_int(conf, KN_P_RECORD_MAX_BYTES);
}

/* ============================================================== ListStreams */

void kn__stream_names_free(kn__stream_names_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->count = 0;
}

kn_err_t kn__list_streams_build(kn_buf_t *body, const char *exclusive_start,
                                const char *next_token, int limit, kn_error_t *err)
{
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        if (has(next_token))
            bad |= jadd_str(o, "NextToken", next_token);
        else if (has(exclusive_start))
            bad |= jadd_str(o, "ExclusiveStartStreamName", exclusive_start);
        if (limit > 0)
            bad |= jadd_int(o, "Limit", limit);
    }
    return finish_body(body, o, bad, "ListStreams", err);
}

kn_err_t kn__list_streams_parse(json_object *resp, kn__stream_names_t *out, bool *has_more,
                                char **next_token, kn_error_t *err)
{
    kn__jp_t p = {"ListStreams", NULL, 0, err};
    json_object *arr;
    const char *tok;
    kn_err_t rc;
    *has_more = false;
    *next_token = NULL;
    if ((rc = need_object(p.op, resp, err)) || (rc = kn__jp_arr(&p, resp, "StreamNames", true, &arr)) ||
        (rc = kn__jp_bool(&p, resp, "HasMoreStreams", false, has_more)) ||
        (rc = kn__jp_str(&p, resp, "NextToken", false, &tok, NULL)))
        return rc;
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(arr, i);
        if (!v || !json_object_is_type(v, json_type_string)) {
            kn__jp_t q = {p.op, "StreamNames", (long)i, err};
            return kn__jp_fail(&q, "", "is not a string");
        }
    }
    char **names = realloc(out->names, (out->count + n + 1) * sizeof(*names));
    if (!names)
        return nomem(err, p.op);
    out->names = names;
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(arr, i);
        char *s = xstrndup(json_object_get_string(v), (size_t)json_object_get_string_len(v));
        if (!s)
            return nomem(err, p.op);
        out->names[out->count++] = s;
    }
    if (tok && !(*next_token = strdup(tok)))
        return nomem(err, p.op);
    return KN_ERR_OK;
}

kn_err_t kn__kinesis_list_streams(kn_client_t *c, int page_limit, kn__stream_names_t *out,
                                  kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    char *token = NULL;
    kn_err_t rc = KN_ERR_OK;
    for (;;) {
        json_object *resp = NULL;
        bool more = false;
        char *next = NULL;
        size_t before = out->count;
        const char *start = out->count ? out->names[out->count - 1] : NULL;
        kn__buf_reset(&body);
        if ((rc = kn__list_streams_build(&body, start, token, page_limit, err)) ||
            (rc = call_sync(c, "ListStreams", &body, &resp, err)))
            break;
        rc = kn__list_streams_parse(resp, out, &more, &next, err);
        json_object_put(resp);
        free(token);
        token = next;
        if (rc || !more)
            break;
        if (!token && out->count == before) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                               "ListStreams response: HasMoreStreams is true but the page is empty "
                               "and has no NextToken");
            break;
        }
    }
    free(token);
    kn__buf_free(&body);
    return rc;
}

/* ==================================================== DescribeStreamSummary */

void kn__stream_summary_free(kn__stream_summary_t *s)
{
    if (!s)
        return;
    free(s->name);
    free(s->arn);
    free(s->status_str);
    free(s->encryption_type);
    free(s->key_id);
    memset(s, 0, sizeof(*s));
}

kn_err_t kn__describe_stream_summary_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                           kn_error_t *err)
{
    kn_err_t rc = check_ref("DescribeStreamSummary", ref, err);
    if (rc)
        return rc;
    json_object *o = json_object_new_object();
    int bad = o ? jadd_ref(o, ref) : 0;
    return finish_body(body, o, bad, "DescribeStreamSummary", err);
}

static kn__stream_status_t status_from(const char *s)
{
    if (!s)
        return KN__STREAM_UNKNOWN;
    if (!strcmp(s, "ACTIVE"))
        return KN__STREAM_ACTIVE;
    if (!strcmp(s, "CREATING"))
        return KN__STREAM_CREATING;
    if (!strcmp(s, "DELETING"))
        return KN__STREAM_DELETING;
    if (!strcmp(s, "UPDATING"))
        return KN__STREAM_UPDATING;
    return KN__STREAM_UNKNOWN;
}

kn_err_t kn__describe_stream_summary_parse(json_object *resp, kn__stream_summary_t *out,
                                           kn_error_t *err)
{
    kn__jp_t p = {"DescribeStreamSummary", NULL, 0, err};
    json_object *d, *mode = NULL;
    const char *name, *arn, *status, *enc, *key, *modestr = NULL;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    out->consumer_count = -1;
    out->creation_ms = -1;
    if ((rc = need_object(p.op, resp, err)) ||
        (rc = kn__jp_obj(&p, resp, "StreamDescriptionSummary", true, &d)))
        return rc;
    p.op = "DescribeStreamSummary StreamDescriptionSummary";
    if ((rc = kn__jp_str(&p, d, "StreamName", true, &name, NULL)) ||
        (rc = kn__jp_str(&p, d, "StreamARN", true, &arn, NULL)) ||
        (rc = kn__jp_str(&p, d, "StreamStatus", true, &status, NULL)) ||
        (rc = kn__jp_int(&p, d, "OpenShardCount", true, &out->open_shard_count)) ||
        (rc = kn__jp_int(&p, d, "RetentionPeriodHours", true, &out->retention_hours)) ||
        (rc = kn__jp_str(&p, d, "EncryptionType", false, &enc, NULL)) ||
        (rc = kn__jp_str(&p, d, "KeyId", false, &key, NULL)) ||
        (rc = kn__jp_int(&p, d, "MaxRecordSizeInKiB", false, &out->max_record_size_kib)) ||
        (rc = kn__jp_int(&p, d, "ConsumerCount", false, &out->consumer_count)) ||
        (rc = kn__jp_time_ms(&p, d, "StreamCreationTimestamp", false, &out->creation_ms)) ||
        (rc = kn__jp_obj(&p, d, "StreamModeDetails", false, &mode)))
        return rc;
    if (mode) {
        p.op = "DescribeStreamSummary StreamDescriptionSummary.StreamModeDetails";
        if ((rc = kn__jp_str(&p, mode, "StreamMode", true, &modestr, NULL)))
            return rc;
        out->on_demand = strcmp(modestr, "ON_DEMAND") == 0;
    }
    out->status = status_from(status);
    if (!(out->name = strdup(name)) || !(out->arn = strdup(arn)) ||
        !(out->status_str = strdup(status)) || (enc && !(out->encryption_type = strdup(enc))) ||
        (key && !(out->key_id = strdup(key)))) {
        kn__stream_summary_free(out);
        return nomem(err, "DescribeStreamSummary");
    }
    return KN_ERR_OK;
}

kn_err_t kn__kinesis_describe_stream_summary(kn_client_t *c, const kn__stream_ref_t *ref,
                                             kn__stream_summary_t *out, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    if ((rc = kn__describe_stream_summary_build(&body, ref, err)) ||
        (rc = call_sync(c, "DescribeStreamSummary", &body, &resp, err)))
        goto out;
    rc = kn__describe_stream_summary_parse(resp, out, err);
out:
    json_object_put(resp);
    kn__buf_free(&body);
    return rc;
}

kn_err_t kn__kinesis_wait_active(kn_client_t *c, const kn__stream_ref_t *ref, long timeout_ms,
                                 long interval_ms, kn_error_t *err)
{
    int64_t deadline = kn__mono_ms() + timeout_ms;
    char last[32] = "unknown";
    for (;;) {
        kn__stream_summary_t s;
        kn_err_t rc = kn__kinesis_describe_stream_summary(c, ref, &s, err);
        if (rc)
            return rc;
        kn__stream_status_t st = s.status;
        snprintf(last, sizeof(last), "%s", s.status_str);
        kn__stream_summary_free(&s);
        if (st == KN__STREAM_ACTIVE)
            return KN_ERR_OK;
        if (kn__mono_ms() + interval_ms > deadline)
            return kn__error_set(err, KN_ERR_TIMEOUT,
                                 "stream %s did not become ACTIVE within %ld ms (status %s)",
                                 has(ref->name) ? ref->name : ref->arn, timeout_ms, last);
        sleep_ms(interval_ms);
    }
}

/* =============================================================== ListShards */

void kn__shard_list_free(kn__shard_list_t *l)
{
    if (!l)
        return;
    for (size_t i = 0; i < l->count; i++) {
        kn__shard_t *s = &l->shards[i];
        free(s->shard_id);
        free(s->parent_shard_id);
        free(s->adjacent_parent_shard_id);
        free(s->start_seq);
        free(s->end_seq);
    }
    free(l->shards);
    l->shards = NULL;
    l->count = 0;
}

static const char *shard_filter_name(kn__shard_filter_type_t t)
{
    switch (t) {
    case KN__SF_AFTER_SHARD_ID: return "AFTER_SHARD_ID";
    case KN__SF_AT_TRIM_HORIZON: return "AT_TRIM_HORIZON";
    case KN__SF_FROM_TRIM_HORIZON: return "FROM_TRIM_HORIZON";
    case KN__SF_AT_LATEST: return "AT_LATEST";
    case KN__SF_AT_TIMESTAMP: return "AT_TIMESTAMP";
    case KN__SF_FROM_TIMESTAMP: return "FROM_TIMESTAMP";
    default: return NULL;
    }
}

kn_err_t kn__list_shards_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const kn__list_shards_opts_t *opts, const char *next_token,
                               kn_error_t *err)
{
    static const char op[] = "ListShards";
    kn_err_t rc;
    int bad = 0;
    if (!has(next_token) && (rc = check_ref(op, ref, err)))
        return rc;
    if (opts && opts->max_results < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: MaxResults must not be negative", op);
    json_object *o = json_object_new_object();
    if (!o)
        return nomem(err, op);
    if (has(next_token)) {
        bad |= jadd_str(o, "NextToken", next_token);
    } else {
        bad |= jadd_ref(o, ref);
        if (opts && has(opts->exclusive_start_shard_id))
            bad |= jadd_str(o, "ExclusiveStartShardId", opts->exclusive_start_shard_id);
        if (opts && opts->filter != KN__SF_NONE) {
            const char *fname = shard_filter_name(opts->filter);
            if (!fname) {
                json_object_put(o);
                return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: unknown shard filter type %d",
                                     op, (int)opts->filter);
            }
            if (opts->filter == KN__SF_AFTER_SHARD_ID && !has(opts->filter_shard_id)) {
                json_object_put(o);
                return kn__error_set(err, KN_ERR_INVALID_ARG,
                                     "%s: shard filter AFTER_SHARD_ID needs a shard id", op);
            }
            if ((opts->filter == KN__SF_AT_TIMESTAMP || opts->filter == KN__SF_FROM_TIMESTAMP) &&
                opts->filter_timestamp_ms < 0) {
                json_object_put(o);
                return kn__error_set(err, KN_ERR_INVALID_ARG,
                                     "%s: shard filter %s needs a timestamp >= 0", op, fname);
            }
            json_object *f = json_object_new_object();
            if (!f) {
                json_object_put(o);
                return nomem(err, op);
            }
            bad |= json_object_object_add(o, "ShardFilter", f);
            bad |= jadd_str(f, "Type", fname);
            if (opts->filter == KN__SF_AFTER_SHARD_ID)
                bad |= jadd_str(f, "ShardId", opts->filter_shard_id);
            if (opts->filter == KN__SF_AT_TIMESTAMP || opts->filter == KN__SF_FROM_TIMESTAMP)
                bad |= jadd_time_ms(f, "Timestamp", opts->filter_timestamp_ms);
        }
    }
    if (opts && opts->max_results > 0)
        bad |= jadd_int(o, "MaxResults", opts->max_results);
    return finish_body(body, o, bad, op, err);
}

static kn_err_t dup_opt(const char *s, size_t len, char **out)
{
    *out = NULL;
    if (!s)
        return KN_ERR_OK;
    *out = xstrndup(s, len);
    return *out ? KN_ERR_OK : KN_ERR_NOMEM;
}

kn_err_t kn__list_shards_parse(json_object *resp, kn__shard_list_t *out, char **next_token,
                               kn_error_t *err)
{
    kn__jp_t p = {"ListShards", NULL, 0, err};
    json_object *arr;
    const char *tok;
    kn_err_t rc;
    *next_token = NULL;
    if ((rc = need_object(p.op, resp, err)) || (rc = kn__jp_arr(&p, resp, "Shards", true, &arr)) ||
        (rc = kn__jp_str(&p, resp, "NextToken", false, &tok, NULL)))
        return rc;
    size_t n = json_object_array_length(arr);
    kn__shard_t *shards = realloc(out->shards, (out->count + n + 1) * sizeof(*shards));
    if (!shards)
        return nomem(err, p.op);
    out->shards = shards;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i), *seq;
        kn__jp_t q = {p.op, "Shards", (long)i, err};
        const char *id, *par, *adj, *ss, *es;
        size_t idl, parl, adjl, ssl, esl;
        kn__shard_t s;
        memset(&s, 0, sizeof(s));
        if (!e || !json_object_is_type(e, json_type_object))
            return kn__jp_fail(&q, "", "is not an object");
        if ((rc = kn__jp_str(&q, e, "ShardId", true, &id, &idl)) ||
            (rc = kn__jp_str(&q, e, "ParentShardId", false, &par, &parl)) ||
            (rc = kn__jp_str(&q, e, "AdjacentParentShardId", false, &adj, &adjl)) ||
            (rc = parse_hash_range(&q, e, &s.start_hash, &s.end_hash)) ||
            (rc = kn__jp_obj(&q, e, "SequenceNumberRange", true, &seq)))
            return rc;
        if ((rc = kn__jp_str(&q, seq, "StartingSequenceNumber", true, &ss, &ssl)) ||
            (rc = kn__jp_str(&q, seq, "EndingSequenceNumber", false, &es, &esl))) {
            /* name the nested path */
            return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                                 "ListShards response: field \"Shards[%zu].SequenceNumberRange.%s\" "
                                 "is missing or not a string",
                                 i, ss ? "EndingSequenceNumber" : "StartingSequenceNumber");
        }
        if (dup_opt(id, idl, &s.shard_id) || dup_opt(par, parl, &s.parent_shard_id) ||
            dup_opt(adj, adjl, &s.adjacent_parent_shard_id) || dup_opt(ss, ssl, &s.start_seq) ||
            dup_opt(es, esl, &s.end_seq)) {
            free(s.shard_id);
            free(s.parent_shard_id);
            free(s.adjacent_parent_shard_id);
            free(s.start_seq);
            free(s.end_seq);
            return nomem(err, p.op);
        }
        out->shards[out->count++] = s;
    }
    if (tok && !(*next_token = strdup(tok)))
        return nomem(err, p.op);
    return KN_ERR_OK;
}

kn_err_t kn__kinesis_list_shards(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const kn__list_shards_opts_t *opts, kn__shard_list_t *out,
                                 kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    char *token = NULL;
    kn_err_t rc;
    int pages = 0;
    for (;;) {
        json_object *resp = NULL;
        char *next = NULL;
        kn__buf_reset(&body);
        if ((rc = kn__list_shards_build(&body, ref, opts, token, err)) ||
            (rc = call_sync(c, "ListShards", &body, &resp, err)))
            break;
        rc = kn__list_shards_parse(resp, out, &next, err);
        json_object_put(resp);
        free(token);
        token = next;
        if (rc || !token)
            break;
        /* A server that hands out tokens forever must not hang us. */
        if (++pages > 100000) {
            rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                               "ListShards response: more than 100000 pages; giving up");
            break;
        }
    }
    free(token);
    kn__buf_free(&body);
    return rc;
}

/* ======================================================= stream management */

static kn_err_t simple_call(kn_client_t *c, const char *op, kn_buf_t *body, kn_err_t build_rc,
                            kn_error_t *err)
{
    kn_err_t rc = build_rc;
    if (rc == KN_ERR_OK)
        rc = call_sync(c, op, body, NULL, err);
    kn__buf_free(body);
    return rc;
}

kn_err_t kn__create_stream_build(kn_buf_t *body, const char *name, int shard_count,
                                 kn_error_t *err)
{
    static const char op[] = "CreateStream";
    if (!has(name))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a stream name is required", op);
    if (shard_count < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG,
                             "%s: shard count %d is negative (0 creates an on-demand stream)", op,
                             shard_count);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_str(o, "StreamName", name);
        if (shard_count > 0) {
            bad |= jadd_int(o, "ShardCount", shard_count);
        } else {
            json_object *m = json_object_new_object();
            if (!m || json_object_object_add(o, "StreamModeDetails", m) != 0) {
                json_object_put(m);
                bad = 1;
            } else {
                bad |= jadd_str(m, "StreamMode", "ON_DEMAND");
            }
        }
    }
    return finish_body(body, o, bad, op, err);
}

kn_err_t kn__kinesis_create_stream(kn_client_t *c, const char *name, int shard_count,
                                   kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    return simple_call(c, "CreateStream", &body,
                       kn__create_stream_build(&body, name, shard_count, err), err);
}

kn_err_t kn__delete_stream_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                 bool enforce_consumer_deletion, kn_error_t *err)
{
    kn_err_t rc = check_ref("DeleteStream", ref, err);
    if (rc)
        return rc;
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_ref(o, ref);
        if (enforce_consumer_deletion)
            bad |= jadd_bool(o, "EnforceConsumerDeletion", true);
    }
    return finish_body(body, o, bad, "DeleteStream", err);
}

kn_err_t kn__kinesis_delete_stream(kn_client_t *c, const kn__stream_ref_t *ref,
                                   bool enforce_consumer_deletion, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    return simple_call(c, "DeleteStream", &body,
                       kn__delete_stream_build(&body, ref, enforce_consumer_deletion, err), err);
}

kn_err_t kn__update_shard_count_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                      int target_shard_count, kn_error_t *err)
{
    static const char op[] = "UpdateShardCount";
    kn_err_t rc = check_ref(op, ref, err);
    if (rc)
        return rc;
    if (target_shard_count < 1)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: target shard count %d is below 1", op,
                             target_shard_count);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_ref(o, ref);
        bad |= jadd_int(o, "TargetShardCount", target_shard_count);
        bad |= jadd_str(o, "ScalingType", "UNIFORM_SCALING");
    }
    return finish_body(body, o, bad, op, err);
}

kn_err_t kn__kinesis_update_shard_count(kn_client_t *c, const kn__stream_ref_t *ref,
                                        int target_shard_count, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    return simple_call(c, "UpdateShardCount", &body,
                       kn__update_shard_count_build(&body, ref, target_shard_count, err), err);
}

kn_err_t kn__split_shard_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const char *shard_id, kn__hashkey_t new_starting_hash_key,
                               kn_error_t *err)
{
    static const char op[] = "SplitShard";
    kn_err_t rc = check_ref(op, ref, err);
    if (rc)
        return rc;
    if (!has(shard_id))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a shard id is required", op);
    char hk[KN__HASHKEY_STRLEN];
    kn__hashkey_format(new_starting_hash_key, hk);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_ref(o, ref);
        bad |= jadd_str(o, "ShardToSplit", shard_id);
        bad |= jadd_str(o, "NewStartingHashKey", hk);
    }
    return finish_body(body, o, bad, op, err);
}

kn_err_t kn__kinesis_split_shard(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const char *shard_id, kn__hashkey_t new_starting_hash_key,
                                 kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    return simple_call(c, "SplitShard", &body,
                       kn__split_shard_build(&body, ref, shard_id, new_starting_hash_key, err),
                       err);
}

kn_err_t kn__merge_shards_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                const char *shard_id, const char *adjacent_shard_id,
                                kn_error_t *err)
{
    static const char op[] = "MergeShards";
    kn_err_t rc = check_ref(op, ref, err);
    if (rc)
        return rc;
    if (!has(shard_id) || !has(adjacent_shard_id))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: two shard ids are required", op);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_ref(o, ref);
        bad |= jadd_str(o, "ShardToMerge", shard_id);
        bad |= jadd_str(o, "AdjacentShardToMerge", adjacent_shard_id);
    }
    return finish_body(body, o, bad, op, err);
}

kn_err_t kn__kinesis_merge_shards(kn_client_t *c, const kn__stream_ref_t *ref,
                                  const char *shard_id, const char *adjacent_shard_id,
                                  kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    return simple_call(c, "MergeShards", &body,
                       kn__merge_shards_build(&body, ref, shard_id, adjacent_shard_id, err), err);
}

/* =============================================================== PutRecords */

void kn__put_result_free(kn__put_result_t *r)
{
    if (!r)
        return;
    free(r->entries);
    kn__buf_free(&r->strings);
    memset(r, 0, sizeof(*r));
}

static kn_err_t put_fail(kn_buf_t *body, size_t orig, kn_error_t *err, kn_err_t code,
                         const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static kn_err_t put_fail(kn_buf_t *body, size_t orig, kn_error_t *err, kn_err_t code,
                         const char *fmt, ...)
{
    if (body->data) {
        body->len = orig;
        body->data[orig] = '\0';
    }
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

kn_err_t kn__put_records_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                               const kn__put_entry_t *entries, size_t n,
                               const kn__kinesis_limits_t *limits, kn_error_t *err)
{
    static const char op[] = "PutRecords";
    const size_t orig = body->len;
    kn_err_t rc = check_ref(op, ref, err);
    if (rc)
        return rc;
    if (n == 0 || !entries)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: at least one record is required", op);
    if ((int64_t)n > limits->put_max_records)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "%s: %zu records exceed kinesis.putrecords.max.records=%" PRId64, op,
                             n, limits->put_max_records);

    /* Validate everything first and size the body. */
    uint64_t total = 0;
    size_t estimate = 64;
    for (size_t i = 0; i < n; i++) {
        const kn__put_entry_t *e = &entries[i];
        if (!e->data && e->data_len)
            return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: record %zu has no data pointer",
                                 op, i);
        if (!e->partition_key)
            return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: record %zu has no partition key",
                                 op, i);
        long chars = kn__utf8_count(e->partition_key, e->partition_key_len);
        if (chars < 0)
            return kn__error_set(err, KN_ERR_INVALID_ARG,
                                 "%s: partition key of record %zu is not valid UTF-8", op, i);
        if (chars < 1 || chars > PARTITION_KEY_MAX_CHARS)
            return kn__error_set(err, KN_ERR_INVALID_ARG,
                                 "%s: partition key of record %zu has %ld Unicode characters; "
                                 "the limit is 1 to %d",
                                 op, i, chars, PARTITION_KEY_MAX_CHARS);
        uint64_t rec = (uint64_t)e->data_len + e->partition_key_len;
        if (rec > (uint64_t)limits->record_max_bytes)
            return kn__error_set(err, KN_ERR_TOO_LARGE,
                                 "%s: record %zu is %" PRIu64 " bytes (data plus partition key), "
                                 "over kinesis.record.max.bytes=%" PRId64,
                                 op, i, rec, limits->record_max_bytes);
        if (e->explicit_hash_key) {
            kn__hashkey_t hk;
            if (kn__hashkey_parse(e->explicit_hash_key, e->explicit_hash_key_len, &hk) != 0)
                return kn__error_set(err, KN_ERR_INVALID_ARG,
                                     "%s: explicit hash key of record %zu is not a decimal "
                                     "number in 0..2^128-1",
                                     op, i);
        }
        total += rec;
        estimate += kn__base64_encoded_len(e->data_len) + e->partition_key_len + 96;
    }
    if (total > (uint64_t)limits->put_max_bytes)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "%s: %zu records total %" PRIu64 " bytes (data plus partition keys), "
                             "over kinesis.putrecords.max.bytes=%" PRId64,
                             op, n, total, limits->put_max_bytes);

    if (kn__buf_reserve(body, estimate) != 0)
        return nomem(err, op);
    int bad = kn__buf_putc(body, '{');
    if (has(ref->name)) {
        bad |= kn__buf_puts(body, "\"StreamName\":");
        bad |= kn__json_put_str(body, ref->name, strlen(ref->name));
        bad |= kn__buf_putc(body, ',');
    }
    if (has(ref->arn)) {
        bad |= kn__buf_puts(body, "\"StreamARN\":");
        bad |= kn__json_put_str(body, ref->arn, strlen(ref->arn));
        bad |= kn__buf_putc(body, ',');
    }
    bad |= kn__buf_puts(body, "\"Records\":[");
    for (size_t i = 0; i < n && !bad; i++) {
        const kn__put_entry_t *e = &entries[i];
        bad |= kn__buf_puts(body, i ? ",{\"Data\":\"" : "{\"Data\":\"");
        size_t enc = kn__base64_encoded_len(e->data_len);
        if (!bad && kn__buf_reserve(body, enc) == 0) {
            if (enc)
                kn__base64_encode_to(body->data + body->len, e->data, e->data_len);
            body->len += enc;
            body->data[body->len] = '\0';
        } else {
            bad = 1;
        }
        bad |= kn__buf_puts(body, "\",\"PartitionKey\":");
        bad |= kn__json_put_str(body, e->partition_key, e->partition_key_len);
        if (e->explicit_hash_key) {
            kn__hashkey_t hk;
            char txt[KN__HASHKEY_STRLEN];
            kn__hashkey_parse(e->explicit_hash_key, e->explicit_hash_key_len, &hk);
            size_t tl = kn__hashkey_format(hk, txt);
            bad |= kn__buf_puts(body, ",\"ExplicitHashKey\":\"");
            bad |= kn__buf_append(body, txt, tl);
            bad |= kn__buf_putc(body, '"');
        }
        bad |= kn__buf_putc(body, '}');
    }
    bad |= kn__buf_puts(body, "]}");
    if (bad)
        return put_fail(body, orig, err, KN_ERR_NOMEM, "%s: out of memory", op);
    return KN_ERR_OK;
}

/* Appends s plus a NUL to the arena; *off receives its offset (SIZE_MAX for NULL). */
static int arena_put(kn_buf_t *a, const char *s, size_t len, size_t *off)
{
    if (!s) {
        *off = SIZE_MAX;
        return 0;
    }
    *off = a->len;
    if (kn__buf_append(a, s, len) != 0 || kn__buf_putc(a, '\0') != 0)
        return -1;
    return 0;
}

static const char *arena_ptr(const kn_buf_t *a, size_t off)
{
    return off == SIZE_MAX ? NULL : a->data + off;
}

/* Replaces control characters in s (in place): white space by a space, the rest by '?'. */
static void clean_text(char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t')
            *s = ' ';
        else if (c < 0x20 || c == 0x7F)
            *s = '?';
    }
}

kn_err_t kn__put_records_parse(json_object *resp, size_t n, kn__put_result_t *out,
                               kn_error_t *err)
{
    kn__jp_t p = {"PutRecords", NULL, 0, err};
    json_object *arr;
    const char *enc;
    size_t encl, enc_off = SIZE_MAX;
    size_t *offs = NULL;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    if ((rc = need_object(p.op, resp, err)) || (rc = kn__jp_arr(&p, resp, "Records", true, &arr)) ||
        (rc = kn__jp_int(&p, resp, "FailedRecordCount", false, &out->failed_count)) ||
        (rc = kn__jp_str(&p, resp, "EncryptionType", false, &enc, &encl)))
        return rc;
    size_t got = json_object_array_length(arr);
    if (got != n)
        return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                             "PutRecords response: field \"Records\" has %zu entries for %zu "
                             "records sent",
                             got, n);
    out->entries = calloc(n ? n : 1, sizeof(*out->entries));
    offs = malloc((n ? n : 1) * 4 * sizeof(*offs));
    if (!out->entries || !offs) {
        rc = nomem(err, p.op);
        goto out;
    }
    if (arena_put(&out->strings, enc, encl, &enc_off) != 0) {
        rc = nomem(err, p.op);
        goto out;
    }
    int64_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        kn__jp_t q = {p.op, "Records", (long)i, err};
        const char *sid, *seq, *code, *msg;
        size_t sidl, seql, codel, msgl;
        if (!e || !json_object_is_type(e, json_type_object)) {
            rc = kn__jp_fail(&q, "", "is not an object");
            goto out;
        }
        if ((rc = kn__jp_str(&q, e, "ErrorCode", false, &code, &codel)) ||
            (rc = kn__jp_str(&q, e, "ErrorMessage", false, &msg, &msgl)))
            goto out;
        if (code) {
            sid = seq = NULL;
            sidl = seql = 0;
            failed++;
        } else if ((rc = kn__jp_str(&q, e, "ShardId", true, &sid, &sidl)) ||
                   (rc = kn__jp_str(&q, e, "SequenceNumber", true, &seq, &seql))) {
            goto out;
        }
        size_t *o = offs + 4 * i;
        if (arena_put(&out->strings, sid, sidl, &o[0]) ||
            arena_put(&out->strings, seq, seql, &o[1]) ||
            arena_put(&out->strings, code, codel, &o[2]) ||
            arena_put(&out->strings, code ? msg : NULL, msgl, &o[3])) {
            rc = nomem(err, p.op);
            goto out;
        }
    }
    json_object *fc = NULL;
    if (!json_object_object_get_ex(resp, "FailedRecordCount", &fc) || !fc)
        out->failed_count = failed;
    else if (out->failed_count != failed) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                           "PutRecords response: FailedRecordCount is %" PRId64
                           " but %" PRId64 " entries carry an ErrorCode",
                           out->failed_count, failed);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const size_t *o = offs + 4 * i;
        out->entries[i].shard_id = arena_ptr(&out->strings, o[0]);
        out->entries[i].sequence_number = arena_ptr(&out->strings, o[1]);
        out->entries[i].error_code = arena_ptr(&out->strings, o[2]);
        out->entries[i].error_message = arena_ptr(&out->strings, o[3]);
        /* They end up in results and logs: no terminal escapes, bells or line breaks from a server. */
        clean_text((char *)out->entries[i].error_code);
        clean_text((char *)out->entries[i].error_message);
    }
    out->encryption_type = arena_ptr(&out->strings, enc_off);
    out->count = n;
out:
    free(offs);
    if (rc)
        kn__put_result_free(out);
    return rc;
}

kn_err_t kn__kinesis_put_records(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const kn__put_entry_t *entries, size_t n,
                                 kn__put_result_t *out, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn__kinesis_limits_t lim;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    kn__kinesis_limits_from_conf(c->conf, &lim);
    if ((rc = kn__put_records_build(&body, ref, entries, n, &lim, err)) ||
        (rc = call_sync(c, "PutRecords", &body, &resp, err)))
        goto out;
    rc = kn__put_records_parse(resp, n, out, err);
out:
    json_object_put(resp);
    kn__buf_free(&body);
    return rc;
}

/* The error a parser of a successful response fills: it carries the response's status and request id. */
static void parse_err_init(kn_error_t *e, const kn__aws_result_t *res)
{
    kn__error_clear(e);
    e->http_status = (int)res->http_status;
    snprintf(e->request_id, sizeof(e->request_id), "%s", res->request_id);
}

/* Sends a built body asynchronously; done(res, a) follows on the loop. On an immediate error a is freed. */
static kn_err_t send_async(kn_client_t *c, const char *op, kn__aws_req_t *req, kn__aws_cb_t *done, void *a,
                           kn_error_t *err)
{
    req->service = KN__SVC_KINESIS;
    req->operation = op;
    req->cb = done;
    req->opaque = a;
    kn_err_t rc = kn__aws_call(c, req, err);
    if (rc)
        free(a); /* no callback comes; the layer freed the body */
    return rc;
}

typedef struct put_async_s {
    kn__put_records_cb_t *cb;
    void *opaque;
    size_t n;
} put_async_t;

static void put_records_done(kn__aws_result_t *res, void *opaque)
{
    put_async_t *a = opaque;
    kn__put_result_t r;
    kn_error_t e;
    memset(&r, 0, sizeof(r));
    if (res->err.code != KN_ERR_OK) {
        a->cb(&r, &res->err, a->opaque);
    } else {
        parse_err_init(&e, res);
        kn__put_records_parse(res->json, a->n, &r, &e);
        a->cb(&r, &e, a->opaque);
    }
    free(a);
}

kn_err_t kn__kinesis_put_records_async(kn_client_t *c, const kn__stream_ref_t *ref,
                                       const kn__put_entry_t *entries, size_t n,
                                       kn__put_records_cb_t *cb, void *opaque, kn_error_t *err)
{
    kn__aws_req_t req;
    kn__kinesis_limits_t lim;
    kn_err_t rc;
    put_async_t *a = malloc(sizeof(*a));
    memset(&req, 0, sizeof(req));
    if (!a)
        return nomem(err, "PutRecords");
    kn__kinesis_limits_from_conf(c->conf, &lim);
    if ((rc = kn__put_records_build(&req.body, ref, entries, n, &lim, err))) {
        kn__buf_free(&req.body);
        free(a);
        return rc;
    }
    a->cb = cb;
    a->opaque = opaque;
    a->n = n;
    return send_async(c, "PutRecords", &req, put_records_done, a, err);
}

/* ========================================================= GetShardIterator */

const char *kn__iterator_type_name(kn__iterator_type_t t)
{
    switch (t) {
    case KN__IT_AT_SEQUENCE_NUMBER: return "AT_SEQUENCE_NUMBER";
    case KN__IT_AFTER_SEQUENCE_NUMBER: return "AFTER_SEQUENCE_NUMBER";
    case KN__IT_TRIM_HORIZON: return "TRIM_HORIZON";
    case KN__IT_LATEST: return "LATEST";
    case KN__IT_AT_TIMESTAMP: return "AT_TIMESTAMP";
    }
    return NULL;
}

kn_err_t kn__get_shard_iterator_build(kn_buf_t *body, const kn__stream_ref_t *ref,
                                      const char *shard_id, const kn__iterator_pos_t *pos,
                                      kn_error_t *err)
{
    static const char op[] = "GetShardIterator";
    kn_err_t rc = check_ref(op, ref, err);
    if (rc)
        return rc;
    if (!has(shard_id))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a shard id is required", op);
    const char *tname = pos ? kn__iterator_type_name(pos->type) : NULL;
    if (!tname)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: unknown shard iterator type", op);
    bool by_seq = pos->type == KN__IT_AT_SEQUENCE_NUMBER || pos->type == KN__IT_AFTER_SEQUENCE_NUMBER;
    if (by_seq && !has(pos->sequence_number))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: %s needs a sequence number", op,
                             tname);
    if (pos->type == KN__IT_AT_TIMESTAMP && pos->timestamp_ms < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG,
                             "%s: AT_TIMESTAMP needs a timestamp >= 0 (got %" PRId64 " ms)", op,
                             pos->timestamp_ms);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_ref(o, ref);
        bad |= jadd_str(o, "ShardId", shard_id);
        bad |= jadd_str(o, "ShardIteratorType", tname);
        if (by_seq)
            bad |= jadd_str(o, "StartingSequenceNumber", pos->sequence_number);
        if (pos->type == KN__IT_AT_TIMESTAMP)
            bad |= jadd_time_ms(o, "Timestamp", pos->timestamp_ms);
    }
    return finish_body(body, o, bad, op, err);
}

kn_err_t kn__get_shard_iterator_parse(json_object *resp, char **iterator, kn_error_t *err)
{
    kn__jp_t p = {"GetShardIterator", NULL, 0, err};
    const char *it;
    size_t len;
    kn_err_t rc;
    *iterator = NULL;
    if ((rc = need_object(p.op, resp, err)) ||
        (rc = kn__jp_str(&p, resp, "ShardIterator", true, &it, &len)))
        return rc;
    if (!(*iterator = xstrndup(it, len)))
        return nomem(err, p.op);
    return KN_ERR_OK;
}

kn_err_t kn__kinesis_get_shard_iterator(kn_client_t *c, const kn__stream_ref_t *ref,
                                        const char *shard_id, const kn__iterator_pos_t *pos,
                                        char **iterator, kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn_err_t rc;
    *iterator = NULL;
    if ((rc = kn__get_shard_iterator_build(&body, ref, shard_id, pos, err)) ||
        (rc = call_sync(c, "GetShardIterator", &body, &resp, err)))
        goto out;
    rc = kn__get_shard_iterator_parse(resp, iterator, err);
out:
    json_object_put(resp);
    kn__buf_free(&body);
    return rc;
}

/* =============================================================== GetRecords */

void kn__get_records_result_free(kn__get_records_result_t *r)
{
    if (!r)
        return;
    free(r->records);
    free(r->next_iterator);
    for (size_t i = 0; i < r->child_count; i++) {
        kn__child_shard_t *cs = &r->child_shards[i];
        free(cs->shard_id);
        for (size_t k = 0; k < cs->parent_count; k++)
            free(cs->parent_shards[k]);
        free(cs->parent_shards);
    }
    free(r->child_shards);
    kn__buf_free(&r->arena);
    memset(r, 0, sizeof(*r));
}

kn_err_t kn__get_records_build(kn_buf_t *body, const kn__stream_ref_t *ref, const char *iterator,
                               int limit, kn_error_t *err)
{
    static const char op[] = "GetRecords";
    if (!has(iterator))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: a shard iterator is required", op);
    if (limit < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s: limit %d is negative", op, limit);
    json_object *o = json_object_new_object();
    int bad = 0;
    if (o) {
        bad |= jadd_str(o, "ShardIterator", iterator);
        if (limit > 0)
            bad |= jadd_int(o, "Limit", limit);
        if (ref && has(ref->arn))
            bad |= jadd_str(o, "StreamARN", ref->arn);
    }
    return finish_body(body, o, bad, op, err);
}

static kn_err_t parse_child_shards(const kn__jp_t *p, json_object *arr,
                                   kn__get_records_result_t *out)
{
    size_t n = json_object_array_length(arr);
    kn_err_t rc;
    if (n == 0)
        return KN_ERR_OK;
    out->child_shards = calloc(n, sizeof(*out->child_shards));
    if (!out->child_shards)
        return nomem(p->err, p->op);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i), *parents;
        kn__jp_t q = {p->op, "ChildShards", (long)i, p->err};
        kn__child_shard_t *cs = &out->child_shards[i];
        const char *id;
        size_t idl;
        out->child_count = i + 1; /* so that free() sees what is filled */
        if (!e || !json_object_is_type(e, json_type_object))
            return kn__jp_fail(&q, "", "is not an object");
        if ((rc = kn__jp_str(&q, e, "ShardId", true, &id, &idl)) ||
            (rc = kn__jp_arr(&q, e, "ParentShards", true, &parents)) ||
            (rc = parse_hash_range(&q, e, &cs->start_hash, &cs->end_hash)))
            return rc;
        if (!(cs->shard_id = xstrndup(id, idl)))
            return nomem(p->err, p->op);
        size_t pn = json_object_array_length(parents);
        cs->parent_shards = calloc(pn ? pn : 1, sizeof(char *));
        if (!cs->parent_shards)
            return nomem(p->err, p->op);
        for (size_t k = 0; k < pn; k++) {
            json_object *v = json_object_array_get_idx(parents, k);
            if (!v || !json_object_is_type(v, json_type_string))
                return kn__error_set(p->err, KN_ERR_BAD_RESPONSE,
                                     "%s response: field \"ChildShards[%zu].ParentShards[%zu]\" "
                                     "is not a string",
                                     p->op, i, k);
            if (!(cs->parent_shards[k] = xstrndup(json_object_get_string(v),
                                                  (size_t)json_object_get_string_len(v))))
                return nomem(p->err, p->op);
            cs->parent_count = k + 1;
        }
    }
    return KN_ERR_OK;
}

kn_err_t kn__get_records_parse(json_object *resp, kn__get_records_result_t *out, kn_error_t *err)
{
    kn__jp_t p = {"GetRecords", NULL, 0, err};
    json_object *arr, *children;
    const char *next;
    size_t nextl;
    size_t *offs = NULL;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    out->millis_behind_latest = -1;
    if ((rc = need_object(p.op, resp, err)) || (rc = kn__jp_arr(&p, resp, "Records", true, &arr)) ||
        (rc = kn__jp_int(&p, resp, "MillisBehindLatest", false, &out->millis_behind_latest)) ||
        (rc = kn__jp_str(&p, resp, "NextShardIterator", false, &next, &nextl)) ||
        (rc = kn__jp_arr(&p, resp, "ChildShards", false, &children)))
        goto out;
    size_t n = json_object_array_length(arr);
    out->records = calloc(n ? n : 1, sizeof(*out->records));
    offs = malloc((n ? n : 1) * 4 * sizeof(*offs));
    if (!out->records || !offs) {
        rc = nomem(err, p.op);
        goto out;
    }
    /* Size the arena once: decoded data is at most 3/4 of its base64 text. */
    size_t need = 1;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        if (!e || !json_object_is_type(e, json_type_object))
            continue;
        json_object_object_foreach(e, k, v)
        {
            (void)k;
            if (json_object_is_type(v, json_type_string))
                need += (size_t)json_object_get_string_len(v) + 1;
        }
    }
    if (kn__buf_reserve(&out->arena, need) != 0) {
        rc = nomem(err, p.op);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(arr, i);
        kn__jp_t q = {p.op, "Records", (long)i, err};
        kn__record_t *r = &out->records[i];
        const char *data, *pk, *seq, *enc;
        size_t datal, pkl, seql, encl;
        size_t *o = offs + 4 * i;
        r->arrival_ms = -1;
        if (!e || !json_object_is_type(e, json_type_object)) {
            rc = kn__jp_fail(&q, "", "is not an object");
            goto out;
        }
        if ((rc = kn__jp_str(&q, e, "Data", true, &data, &datal)) ||
            (rc = kn__jp_str(&q, e, "PartitionKey", true, &pk, &pkl)) ||
            (rc = kn__jp_str(&q, e, "SequenceNumber", true, &seq, &seql)) ||
            (rc = kn__jp_str(&q, e, "EncryptionType", false, &enc, &encl)) ||
            (rc = kn__jp_time_ms(&q, e, "ApproximateArrivalTimestamp", false, &r->arrival_ms)))
            goto out;
        o[0] = out->arena.len;
        int d = kn__base64_decode(&out->arena, data, datal);
        if (d == -2) {
            rc = nomem(err, p.op);
            goto out;
        }
        if (d != 0) {
            rc = kn__jp_fail(&q, "Data", "is not valid base64");
            goto out;
        }
        r->data_len = out->arena.len - o[0];
        if (kn__buf_putc(&out->arena, '\0') || arena_put(&out->arena, pk, pkl, &o[1]) ||
            arena_put(&out->arena, seq, seql, &o[2]) || arena_put(&out->arena, enc, encl, &o[3])) {
            rc = nomem(err, p.op);
            goto out;
        }
        r->partition_key_len = pkl;
    }
    for (size_t i = 0; i < n; i++) {
        const size_t *o = offs + 4 * i;
        kn__record_t *r = &out->records[i];
        r->data = (const unsigned char *)out->arena.data + o[0];
        r->partition_key = arena_ptr(&out->arena, o[1]);
        r->sequence_number = arena_ptr(&out->arena, o[2]);
        r->encryption_type = arena_ptr(&out->arena, o[3]);
    }
    out->count = n;
    if (next && !(out->next_iterator = xstrndup(next, nextl))) {
        rc = nomem(err, p.op);
        goto out;
    }
    if (children && (rc = parse_child_shards(&p, children, out)))
        goto out;
out:
    free(offs);
    if (rc)
        kn__get_records_result_free(out);
    return rc;
}

kn_err_t kn__kinesis_get_records(kn_client_t *c, const kn__stream_ref_t *ref,
                                 const char *iterator, int limit, kn__get_records_result_t *out,
                                 kn_error_t *err)
{
    kn_buf_t body = KN_BUF_INIT;
    json_object *resp = NULL;
    kn_err_t rc;
    memset(out, 0, sizeof(*out));
    if ((rc = kn__get_records_build(&body, ref, iterator, limit, err)) ||
        (rc = call_sync(c, "GetRecords", &body, &resp, err)))
        goto out;
    rc = kn__get_records_parse(resp, out, err);
out:
    json_object_put(resp);
    kn__buf_free(&body);
    return rc;
}

typedef struct get_async_s {
    kn__get_records_cb_t *cb;
    void *opaque;
} get_async_t;

static void get_records_done(kn__aws_result_t *res, void *opaque)
{
    get_async_t *a = opaque;
    kn__get_records_result_t r;
    kn_error_t e;
    memset(&r, 0, sizeof(r));
    if (res->err.code != KN_ERR_OK) {
        a->cb(&r, &res->err, a->opaque);
    } else {
        parse_err_init(&e, res);
        kn__get_records_parse(res->json, &r, &e);
        a->cb(&r, &e, a->opaque);
    }
    free(a);
}

kn_err_t kn__kinesis_get_records_async(kn_client_t *c, const kn__stream_ref_t *ref,
                                       const char *iterator, int limit,
                                       kn__get_records_cb_t *cb, void *opaque, kn_error_t *err)
{
    kn__aws_req_t req;
    kn_err_t rc;
    get_async_t *a = malloc(sizeof(*a));
    memset(&req, 0, sizeof(req));
    if (!a)
        return nomem(err, "GetRecords");
    if ((rc = kn__get_records_build(&req.body, ref, iterator, limit, err))) {
        kn__buf_free(&req.body);
        free(a);
        return rc;
    }
    a->cb = cb;
    a->opaque = opaque;
    return send_async(c, "GetRecords", &req, get_records_done, a, err);
}
