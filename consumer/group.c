/*
 * A consumer group seen from outside (kn_group_leases): its lease table
 * read with a consistent scan, and, when asked, how far each lease's
 * checkpoint is behind the tip of its shard (the MillisBehindLatest of a
 * one-record read just after the checkpoint). For tools and monitoring: it
 * takes no lease and writes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"

static int by_key(const void *a, const void *b)
{
    return strcmp(((const kn__lease_t *)a)->key, ((const kn__lease_t *)b)->key);
}

/* MillisBehindLatest just after l's checkpoint, or -1. */
static int64_t lag_of(kn_client_t *client, const char *stream, const kn__lease_t *l)
{
    if (kn__lease_finished(l) || !l->checkpoint)
        return -1;
    kn__stream_ref_t ref = {0};
    if (strncmp(stream, "arn:", 4) == 0)
        ref.arn = stream;
    else
        ref.name = stream;
    kn__iterator_pos_t pos = {0};
    if (!strcmp(l->checkpoint, KN__CK_LATEST))
        return 0;
    if (!strcmp(l->checkpoint, KN__CK_TRIM_HORIZON)) {
        pos.type = KN__IT_TRIM_HORIZON;
    } else if (kn__checkpoint_is_sentinel(l->checkpoint)) {
        return -1; /* AT_TIMESTAMP: the time is not in the lease */
    } else {
        pos.type = KN__IT_AFTER_SEQUENCE_NUMBER;
        pos.sequence_number = l->checkpoint;
    }
    kn_error_t e;
    kn__error_clear(&e);
    char *it = NULL;
    if (kn__kinesis_get_shard_iterator(client, &ref, l->key, &pos, &it, &e) != KN_ERR_OK)
        return -1;
    kn__get_records_result_t res;
    memset(&res, 0, sizeof(res));
    int64_t lag = -1;
    if (kn__kinesis_get_records(client, &ref, it, 1, &res, &e) == KN_ERR_OK)
        lag = res.millis_behind_latest;
    kn__get_records_result_free(&res);
    free(it);
    return lag;
}

KN_API kn_err_t kn_group_leases(kn_client_t *client, const char *table, const char *stream,
                                kn_group_lease_t **out, size_t *count, kn_error_t *err)
{
    if (err)
        kn__error_clear(err);
    kn_error_t e;
    kn__error_clear(&e);
    if (out)
        *out = NULL;
    if (count)
        *count = 0;
    if (!client || !table || !*table || !out || !count)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "kn_group_leases: client, table, out and "
                                                      "count are required");
    kn__lease_table_t *t = kn__lease_table_new(client, table, NULL);
    if (!t)
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    kn__lease_t *v = NULL;
    size_t n = 0;
    kn_err_t rc = kn__lease_table_list(t, &v, &n, &e);
    kn__lease_table_destroy(t);
    if (rc != KN_ERR_OK) {
        if (rc == KN_ERR_NOT_FOUND)
            kn__error_set(&e, rc, "no lease table \"%s\" (no consumer of that group has started)",
                          table);
        if (err)
            kn__error_copy(err, &e);
        return rc;
    }
    if (n > 1)
        qsort(v, n, sizeof(*v), by_key);
    /* One block: the structs, then every string. */
    size_t bytes = n * sizeof(kn_group_lease_t);
    for (size_t i = 0; i < n; i++) {
        bytes += strlen(v[i].key) + 1;
        bytes += v[i].owner ? strlen(v[i].owner) + 1 : 0;
        bytes += v[i].checkpoint_owner ? strlen(v[i].checkpoint_owner) + 1 : 0;
        bytes += v[i].checkpoint ? strlen(v[i].checkpoint) + 1 : 0;
        for (size_t j = 0; j < v[i].n_parents; j++)
            bytes += strlen(v[i].parents[j]) + 1;
    }
    kn_group_lease_t *g = n ? malloc(bytes) : NULL;
    if (n && !g) {
        kn__leases_free(v, n);
        return kn__error_set(err, KN_ERR_NOMEM, "out of memory");
    }
    char *p = (char *)(g + n);
#define PUT(dst, src)                                                                              \
    do {                                                                                           \
        if (src) {                                                                                 \
            size_t len_ = strlen(src) + 1;                                                         \
            memcpy(p, src, len_);                                                                  \
            (dst) = p;                                                                             \
            p += len_;                                                                             \
        } else {                                                                                   \
            (dst) = NULL;                                                                          \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < n; i++) {
        kn_group_lease_t *x = &g[i];
        PUT(x->shard_id, v[i].key);
        PUT(x->owner, v[i].owner);
        PUT(x->handing_over, v[i].checkpoint_owner);
        PUT(x->checkpoint, v[i].checkpoint);
        x->checkpoint_sub = v[i].checkpoint_sub;
        x->counter = v[i].counter;
        x->parents = NULL;
        if (v[i].n_parents > 0) {
            x->parents = p;
            for (size_t j = 0; j < v[i].n_parents; j++) {
                size_t len = strlen(v[i].parents[j]);
                memcpy(p, v[i].parents[j], len);
                p += len;
                *p++ = j + 1 < v[i].n_parents ? ',' : '\0';
            }
        }
        x->lag_ms = stream && *stream ? lag_of(client, stream, &v[i]) : -1;
    }
#undef PUT
    kn__leases_free(v, n);
    *out = g;
    *count = n;
    return KN_ERR_OK;
}

KN_API void kn_group_leases_free(kn_group_lease_t *v, size_t count)
{
    (void)count;
    free(v);
}
