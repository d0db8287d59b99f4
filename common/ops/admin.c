/*
 * The public admin API (<kinesis/admin.h>): thin, blocking wrappers over the
 * internal Kinesis operations, with results copied into opaque objects so the
 * internal structs can change without touching the ABI.
 */
#include "kinesis/admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hashkey.h"
#include "kinesis_ops.h"

/* How often kn_admin_wait_active polls DescribeStreamSummary. */
#define WAIT_POLL_MS 200

static bool has(const char *s) { return s && *s; }

/* A name, or an ARN when the string looks like one (kinesalite only knows names). */
static kn__stream_ref_t make_ref(const char *stream)
{
    kn__stream_ref_t ref = {NULL, NULL};
    if (has(stream) && strncmp(stream, "arn:", 4) == 0)
        ref.arn = stream;
    else
        ref.name = stream;
    return ref;
}

static kn_err_t need(const char *what, const char *value, kn_error_t *err)
{
    if (!has(value))
        return kn__error_set(err, KN_ERR_INVALID_ARG, "%s is required", what);
    return KN_ERR_OK;
}

/* ------------------------------------------------------------ stream list */

struct kn_stream_list_s {
    kn__stream_names_t names;
};

kn_err_t kn_admin_list_streams(kn_client_t *client, kn_stream_list_t **out, kn_error_t *err)
{
    kn__error_clear(err);
    if (!client || !out)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "list streams: client and out are required");
    kn_stream_list_t *l = calloc(1, sizeof(*l));
    if (!l)
        return kn__error_set(err, KN_ERR_NOMEM, "list streams: out of memory");
    kn_err_t rc = kn__kinesis_list_streams(client, 0, &l->names, err);
    if (rc) {
        kn_stream_list_destroy(l);
        return rc;
    }
    *out = l;
    return KN_ERR_OK;
}

size_t kn_stream_list_count(const kn_stream_list_t *l) { return l ? l->names.count : 0; }

const char *kn_stream_list_name(const kn_stream_list_t *l, size_t i)
{
    return l && i < l->names.count ? l->names.names[i] : NULL;
}

void kn_stream_list_destroy(kn_stream_list_t *l)
{
    if (!l)
        return;
    kn__stream_names_free(&l->names);
    free(l);
}

/* --------------------------------------------------------- stream summary */

struct kn_stream_info_s {
    kn__stream_summary_t s;
};

kn_err_t kn_admin_describe_stream(kn_client_t *client, const char *stream,
                                  kn_stream_info_t **out, kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        return rc;
    if (!client || !out)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "describe stream: client and out are required");
    kn_stream_info_t *s = calloc(1, sizeof(*s));
    if (!s)
        return kn__error_set(err, KN_ERR_NOMEM, "describe stream: out of memory");
    kn__stream_ref_t ref = make_ref(stream);
    rc = kn__kinesis_describe_stream_summary(client, &ref, &s->s, err);
    if (rc) {
        kn_stream_info_destroy(s);
        return rc;
    }
    *out = s;
    return KN_ERR_OK;
}

const char *kn_stream_info_name(const kn_stream_info_t *s) { return s && s->s.name ? s->s.name : ""; }
const char *kn_stream_info_arn(const kn_stream_info_t *s) { return s && s->s.arn ? s->s.arn : ""; }
const char *kn_stream_info_status(const kn_stream_info_t *s)
{
    return s && s->s.status_str ? s->s.status_str : "";
}
bool kn_stream_info_active(const kn_stream_info_t *s) { return s && s->s.status == KN__STREAM_ACTIVE; }
int64_t kn_stream_info_open_shard_count(const kn_stream_info_t *s) { return s ? s->s.open_shard_count : 0; }
bool kn_stream_info_on_demand(const kn_stream_info_t *s) { return s && s->s.on_demand; }
int64_t kn_stream_info_retention_hours(const kn_stream_info_t *s) { return s ? s->s.retention_hours : 0; }

void kn_stream_info_destroy(kn_stream_info_t *s)
{
    if (!s)
        return;
    kn__stream_summary_free(&s->s);
    free(s);
}

/* ------------------------------------------------------------- shard list */

typedef struct shard_keys_s {
    char start[KN__HASHKEY_STRLEN];
    char end[KN__HASHKEY_STRLEN];
} shard_keys_t;

struct kn_shard_list_s {
    kn__shard_list_t list;
    shard_keys_t *keys; /* decimal forms of each shard's hash range */
};

static kn_err_t fetch_shards(kn_client_t *client, const char *stream, kn__shard_list_t *out,
                             kn_error_t *err)
{
    kn__stream_ref_t ref = make_ref(stream);
    return kn__kinesis_list_shards(client, &ref, NULL, out, err);
}

kn_err_t kn_admin_list_shards(kn_client_t *client, const char *stream, kn_shard_list_t **out,
                              kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        return rc;
    if (!client || !out)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "list shards: client and out are required");
    kn_shard_list_t *l = calloc(1, sizeof(*l));
    if (!l)
        return kn__error_set(err, KN_ERR_NOMEM, "list shards: out of memory");
    rc = fetch_shards(client, stream, &l->list, err);
    if (rc)
        goto out;
    l->keys = calloc(l->list.count ? l->list.count : 1, sizeof(*l->keys));
    if (!l->keys) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "list shards: out of memory");
        goto out;
    }
    for (size_t i = 0; i < l->list.count; i++) {
        kn__hashkey_format(l->list.shards[i].start_hash, l->keys[i].start);
        kn__hashkey_format(l->list.shards[i].end_hash, l->keys[i].end);
    }
out:
    if (rc)
        kn_shard_list_destroy(l);
    else
        *out = l;
    return rc;
}

size_t kn_shard_list_count(const kn_shard_list_t *l) { return l ? l->list.count : 0; }

static const kn__shard_t *shard_at(const kn_shard_list_t *l, size_t i)
{
    return l && i < l->list.count ? &l->list.shards[i] : NULL;
}

const char *kn_shard_list_id(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s ? s->shard_id : NULL;
}
const char *kn_shard_list_parent(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s ? s->parent_shard_id : NULL;
}
const char *kn_shard_list_adjacent_parent(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s ? s->adjacent_parent_shard_id : NULL;
}
const char *kn_shard_list_hash_start(const kn_shard_list_t *l, size_t i)
{
    return shard_at(l, i) ? l->keys[i].start : NULL;
}
const char *kn_shard_list_hash_end(const kn_shard_list_t *l, size_t i)
{
    return shard_at(l, i) ? l->keys[i].end : NULL;
}
const char *kn_shard_list_start_seq(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s ? s->start_seq : NULL;
}
const char *kn_shard_list_end_seq(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s ? s->end_seq : NULL;
}
bool kn_shard_list_is_open(const kn_shard_list_t *l, size_t i)
{
    const kn__shard_t *s = shard_at(l, i);
    return s && kn__shard_is_open(s);
}

void kn_shard_list_destroy(kn_shard_list_t *l)
{
    if (!l)
        return;
    kn__shard_list_free(&l->list);
    free(l->keys);
    free(l);
}

/* ------------------------------------------------------------- management */

kn_err_t kn_admin_create_stream(kn_client_t *client, const char *name, int shard_count,
                                kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream name", name, err);
    if (rc)
        return rc;
    if (shard_count < 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG,
                             "create stream %s: shard count %d is negative", name, shard_count);
    return kn__kinesis_create_stream(client, name, shard_count, err);
}

kn_err_t kn_admin_delete_stream(kn_client_t *client, const char *stream, kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        return rc;
    kn__stream_ref_t ref = make_ref(stream);
    return kn__kinesis_delete_stream(client, &ref, true, err);
}

kn_err_t kn_admin_scale_stream(kn_client_t *client, const char *stream, int target_shard_count,
                               kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        return rc;
    if (target_shard_count < 1)
        return kn__error_set(err, KN_ERR_INVALID_ARG,
                             "scale stream %s: target shard count %d must be at least 1", stream,
                             target_shard_count);
    kn__stream_ref_t ref = make_ref(stream);
    return kn__kinesis_update_shard_count(client, &ref, target_shard_count, err);
}

/* The first key of the upper half: start + (end - start) / 2 + 1. */
static kn__hashkey_t middle_of(kn__hashkey_t start, kn__hashkey_t end)
{
    unsigned __int128 s = ((unsigned __int128)start.hi << 64) | start.lo;
    unsigned __int128 e = ((unsigned __int128)end.hi << 64) | end.lo;
    unsigned __int128 m = s + (e - s) / 2 + 1;
    kn__hashkey_t k = {(uint64_t)(m >> 64), (uint64_t)m};
    return k;
}

kn_err_t kn_admin_split_shard(kn_client_t *client, const char *stream, const char *shard_id,
                              const char *new_starting_hash_key, kn_error_t *err)
{
    kn__error_clear(err);
    kn__shard_list_t shards = {0};
    kn__hashkey_t at;
    kn_err_t rc = need("stream", stream, err);
    if (!rc)
        rc = need("shard id", shard_id, err);
    if (rc)
        goto out;
    if (has(new_starting_hash_key)) {
        if (kn__hashkey_parse(new_starting_hash_key, strlen(new_starting_hash_key), &at) != 0) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                               "split %s: \"%s\" is not a hash key (a decimal number from 0 to "
                               "2^128-1)",
                               shard_id, new_starting_hash_key);
            goto out;
        }
    } else {
        if ((rc = fetch_shards(client, stream, &shards, err)))
            goto out;
        size_t i = 0;
        while (i < shards.count && strcmp(shards.shards[i].shard_id, shard_id) != 0)
            i++;
        if (i == shards.count) {
            rc = kn__error_set(err, KN_ERR_NOT_FOUND, "split: stream %s has no shard %s", stream,
                               shard_id);
            goto out;
        }
        if (!kn__shard_is_open(&shards.shards[i])) {
            rc = kn__error_set(err, KN_ERR_STATE, "split: shard %s of stream %s is closed",
                               shard_id, stream);
            goto out;
        }
        at = middle_of(shards.shards[i].start_hash, shards.shards[i].end_hash);
    }
    kn__stream_ref_t ref = make_ref(stream);
    rc = kn__kinesis_split_shard(client, &ref, shard_id, at, err);
out:
    kn__shard_list_free(&shards);
    return rc;
}

kn_err_t kn_admin_merge_shards(kn_client_t *client, const char *stream, const char *shard_id,
                               const char *adjacent_shard_id, kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (!rc)
        rc = need("shard id", shard_id, err);
    if (!rc)
        rc = need("adjacent shard id", adjacent_shard_id, err);
    if (rc)
        return rc;
    kn__stream_ref_t ref = make_ref(stream);
    return kn__kinesis_merge_shards(client, &ref, shard_id, adjacent_shard_id, err);
}

kn_err_t kn_admin_wait_active(kn_client_t *client, const char *stream, long timeout_ms,
                              kn_error_t *err)
{
    kn__error_clear(err);
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        return rc;
    kn__stream_ref_t ref = make_ref(stream);
    return kn__kinesis_wait_active(client, &ref, timeout_ms < 0 ? 0 : timeout_ms, WAIT_POLL_MS,
                                   err);
}

/* ------------------------------------------------------------ partitioning */

kn_err_t kn_hash_key_of(const char *partition_key, size_t partition_key_len,
                        char out[KN_HASH_KEY_STRLEN])
{
    if (!partition_key || partition_key_len == 0 || !out)
        return KN_ERR_INVALID_ARG;
    kn__hashkey_format(kn__hashkey_from_partition_key(partition_key, partition_key_len), out);
    return KN_ERR_OK;
}

kn_err_t kn_admin_shard_for_key(kn_client_t *client, const char *stream,
                                const char *partition_key, const char *explicit_hash_key,
                                char hash_key_out[KN_HASH_KEY_STRLEN], char *shard_id_out,
                                size_t shard_id_size, kn_error_t *err)
{
    kn__error_clear(err);
    kn__shard_list_t shards = {0};
    kn__hashkey_t key;
    kn_err_t rc = need("stream", stream, err);
    if (rc)
        goto out;
    if (has(explicit_hash_key)) {
        if (kn__hashkey_parse(explicit_hash_key, strlen(explicit_hash_key), &key) != 0) {
            rc = kn__error_set(err, KN_ERR_INVALID_ARG,
                               "\"%s\" is not a hash key (a decimal number from 0 to 2^128-1)",
                               explicit_hash_key);
            goto out;
        }
    } else if (has(partition_key)) {
        key = kn__hashkey_from_partition_key(partition_key, strlen(partition_key));
    } else {
        rc = kn__error_set(err, KN_ERR_INVALID_ARG, "a partition key or a hash key is required");
        goto out;
    }
    if (hash_key_out)
        kn__hashkey_format(key, hash_key_out);
    if ((rc = fetch_shards(client, stream, &shards, err)))
        goto out;
    for (size_t i = 0; i < shards.count; i++) {
        const kn__shard_t *s = &shards.shards[i];
        if (kn__shard_is_open(s) && kn__hashkey_cmp(key, s->start_hash) >= 0 &&
            kn__hashkey_cmp(key, s->end_hash) <= 0) {
            if (shard_id_out && shard_id_size)
                snprintf(shard_id_out, shard_id_size, "%s", s->shard_id);
            goto out;
        }
    }
    rc = kn__error_set(err, KN_ERR_NOT_FOUND, "no open shard of stream %s covers hash key %s",
                       stream, hash_key_out ? hash_key_out : "(given)");
out:
    kn__shard_list_free(&shards);
    return rc;
}
