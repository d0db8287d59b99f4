/*
 * The KCL MultiLang protocol (reference multilang.md): one JSON object per
 * line. The daemon sends an action and waits for the child's
 * {"action":"status","responseFor":<action>}; meanwhile the child may send
 * {"action":"checkpoint","sequenceNumber":<seq or null>,"subSequenceNumber":<n>}
 * requests, each answered with {"action":"checkpoint",...,"error":<null or the
 * KCL exception's name>} before the child goes on. Lines that are not
 * messages (not a JSON object with an "action") are ignored, as the Java
 * daemon ignores them (amazon_kclpy writes a blank line before each
 * message), up to a bound: a child that writes nothing but garbage is
 * stopped. A message that is not allowed now (a status for another action,
 * an unknown action) is a protocol error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multilang.h"

/* Lines that are not messages, per action, before the child counts as broken. */
#define ML_MAX_IGNORED 10000
/* While waiting without a limit, a note in the log this often. */
#define ML_NOTE_EVERY_MS 60000

json_object *ml_msg_initialize(const char *shard, const char *seq, uint64_t sub)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "action", json_object_new_string("initialize"));
    json_object_object_add(o, "shardId", json_object_new_string(shard));
    json_object_object_add(o, "sequenceNumber", json_object_new_string(seq));
    json_object_object_add(o, "subSequenceNumber", json_object_new_int64((int64_t)sub));
    return o;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static json_object *base64_string(const unsigned char *p, size_t n)
{
    size_t out_len = (n + 2) / 3 * 4;
    char *s = malloc(out_len + 1);
    if (!s)
        return json_object_new_string("");
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        s[o++] = b64[v >> 18];
        s[o++] = b64[(v >> 12) & 63];
        s[o++] = b64[(v >> 6) & 63];
        s[o++] = b64[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        s[o++] = b64[v >> 18];
        s[o++] = b64[(v >> 12) & 63];
        s[o++] = i + 1 < n ? b64[(v >> 6) & 63] : '=';
        s[o++] = '=';
    }
    json_object *j = json_object_new_string_len(s, (int)o);
    free(s);
    return j;
}

json_object *ml_msg_process_records(const kn_batch_t *b)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "action", json_object_new_string("processRecords"));
    int64_t mbl = kn_batch_millis_behind(b);
    json_object_object_add(o, "millisBehindLatest", mbl >= 0 ? json_object_new_int64(mbl) : NULL);
    json_object *recs = json_object_new_array();
    for (size_t i = 0; i < kn_batch_count(b); i++) {
        json_object *r = json_object_new_object();
        size_t len = 0, klen = 0;
        const void *data = kn_batch_data(b, i, &len);
        const char *key = kn_batch_partition_key(b, i, &klen);
        json_object_object_add(r, "action", json_object_new_string("record"));
        json_object_object_add(r, "data", base64_string(data, len));
        json_object_object_add(r, "partitionKey", json_object_new_string_len(key, (int)klen));
        json_object_object_add(r, "sequenceNumber", json_object_new_string(kn_batch_sequence_number(b, i)));
        json_object_object_add(r, "subSequenceNumber",
                               json_object_new_int64((int64_t)kn_batch_sub_sequence(b, i)));
        int64_t ts = kn_batch_arrival_ms(b, i);
        json_object_object_add(r, "approximateArrivalTimestamp", ts >= 0 ? json_object_new_int64(ts) : NULL);
        json_object_array_add(recs, r);
    }
    json_object_object_add(o, "records", recs);
    return o;
}

json_object *ml_msg_action(const char *action)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "action", json_object_new_string(action));
    return o;
}

const char *ml_exception_for(kn_err_t rc)
{
    switch (rc) {
    case KN_ERR_OK: return NULL;
    case KN_ERR_LEASE_LOST:
    case KN_ERR_DESTROYED: return "ShutdownException";
    case KN_ERR_THROTTLED: return "ThrottlingException";
    case KN_ERR_INVALID_ARG: return "IllegalArgumentException";
    case KN_ERR_STATE: return "InvalidStateException";
    default: return "KinesisClientLibDependencyException";
    }
}

static int send_json(ml_child_t *ch, json_object *o, char *err, size_t size)
{
    size_t len = 0;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    return ml_child_send(ch, s, len, err, size);
}

/* The reply to a checkpoint request: its sequence number (and sub-sequence) as asked, and the error. */
static int answer_checkpoint(ml_child_t *ch, json_object *req, const char *exception, char *err, size_t size)
{
    json_object *o = json_object_new_object(), *v = NULL;
    json_object_object_add(o, "action", json_object_new_string("checkpoint"));
    json_object_object_add(o, "sequenceNumber",
                           json_object_object_get_ex(req, "sequenceNumber", &v) && v ? json_object_get(v) : NULL);
    if (json_object_object_get_ex(req, "subSequenceNumber", &v))
        json_object_object_add(o, "subSequenceNumber", v ? json_object_get(v) : NULL);
    json_object_object_add(o, "error", exception ? json_object_new_string(exception) : NULL);
    int rc = send_json(ch, o, err, size);
    json_object_put(o);
    return rc;
}

/* A checkpoint request's arguments; false (with the exception to answer) when they are malformed. */
static bool checkpoint_args(json_object *req, const char **seq, bool *has_sub, uint64_t *sub)
{
    json_object *s = NULL, *n = NULL;
    *seq = NULL;
    *has_sub = false;
    *sub = 0;
    if (json_object_object_get_ex(req, "sequenceNumber", &s) && s) {
        if (!json_object_is_type(s, json_type_string))
            return false;
        *seq = json_object_get_string(s);
    }
    if (json_object_object_get_ex(req, "subSequenceNumber", &n) && n) {
        if (json_object_is_type(n, json_type_int)) {
            int64_t v = json_object_get_int64(n);
            if (v < 0)
                return false;
            *sub = (uint64_t)v;
        } else if (json_object_is_type(n, json_type_string)) {
            char *end = NULL;
            errno = 0;
            unsigned long long v = strtoull(json_object_get_string(n), &end, 10);
            if (errno || !end || *end)
                return false;
            *sub = v;
        } else {
            return false;
        }
        *has_sub = true;
    }
    return true;
}

int ml_conversation(ml_child_t *ch, const char *action, json_object *msg, ml_ck_fn_t *ck,
                    void *opaque, const char *refusal, int64_t timeout_ms, char *err, size_t size)
{
    int rc = send_json(ch, msg, err, size);
    json_object_put(msg);
    if (rc != 0)
        return -1;
    int64_t start = ml_now_ms();
    int64_t deadline = timeout_ms > 0 ? start + timeout_ms : INT64_MAX;
    int64_t next_note = start + ML_NOTE_EVERY_MS;
    int ignored = 0;
    for (;;) {
        char *line = NULL;
        int64_t until = deadline < next_note ? deadline : next_note;
        int r = ml_child_read_line(ch, until, &line, err, size);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (ml_now_ms() >= deadline) {
                snprintf(err, size, "no answer to %s within %lld ms (timeoutInSeconds)", action,
                         (long long)timeout_ms);
                return -1;
            }
            ml_log("%s: still waiting for the processor's answer to %s (%lld s)", ch->shard, action,
                   (long long)((ml_now_ms() - start) / 1000));
            next_note += ML_NOTE_EVERY_MS;
            continue;
        }
        json_tokener *tok = json_tokener_new();
        json_object *m = tok ? json_tokener_parse_ex(tok, line, (int)strlen(line)) : NULL;
        bool whole = tok && json_tokener_get_error(tok) == json_tokener_success;
        json_tokener_free(tok);
        json_object *a = NULL;
        if (!m || !whole || !json_object_is_type(m, json_type_object) ||
            !json_object_object_get_ex(m, "action", &a) || !json_object_is_type(a, json_type_string)) {
            json_object_put(m);
            if (++ignored > ML_MAX_IGNORED) {
                snprintf(err, size, "the processor wrote over %d lines that are not messages while "
                                    "answering %s", ML_MAX_IGNORED, action);
                return -1;
            }
            continue;
        }
        const char *act = json_object_get_string(a);
        if (!strcmp(act, "status")) {
            json_object *f = NULL;
            const char *rf = json_object_object_get_ex(m, "responseFor", &f) && f ? json_object_get_string(f) : "";
            if (strcmp(rf, action) != 0) {
                snprintf(err, size, "protocol error: a status for \"%.40s\" while %s was asked", rf, action);
                json_object_put(m);
                return -1;
            }
            json_object_put(m);
            return 0;
        }
        if (!strcmp(act, "checkpoint")) {
            const char *seq = NULL, *exc = NULL;
            bool has_sub = false;
            uint64_t sub = 0;
            if (!ck)
                exc = refusal ? refusal : "InvalidStateException";
            else if (!checkpoint_args(m, &seq, &has_sub, &sub))
                exc = "IllegalArgumentException";
            else
                exc = ck(opaque, seq, has_sub, sub);
            rc = answer_checkpoint(ch, m, exc, err, size);
            json_object_put(m);
            if (rc != 0)
                return -1;
            continue;
        }
        snprintf(err, size, "protocol error: unexpected action \"%.40s\" while %s was asked", act, action);
        json_object_put(m);
        return -1;
    }
}
