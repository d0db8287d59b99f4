/*
 * A stream reader of exactly one shard, driven by the consumer: one per
 * lease tenure, created when the lease is taken and destroyed when it ends,
 * so that nothing of an earlier tenure (a call in flight, an answer queued)
 * can reach a later one. It reads like any reader (pacing, backoff, iterator
 * renewal, answers sized to their budget) but follows no children: its
 * SHARD_END names them, with their parents and hash ranges, for the
 * consumer's leases. Its answers count toward a bound the consumer's readers
 * share, and the consumer's worker that runs the shard takes them whole
 * (kn__reader_take) and decodes them itself.
 */
#include <string.h>

#include "reader_int.h"

kn_reader_t *kn__reader_new_one(kn_client_t *client, const kn_conf_t *conf, const char *stream,
                                const kn__shard_t *shard, const kn__iterator_pos_t *start,
                                kn__rbudget_t *budget, bool keep_empty, kn__rnotify_t *notify,
                                void *notify_opaque, kn_error_t *err)
{
    kn_reader_opts_t opts = KN_READER_OPTS_INIT;
    opts.raw = true; /* the consumer's workers decode */
    kn_reader_t *r = kn__reader_alloc(client, conf, stream, &opts, notify == NULL, err);
    if (!r)
        return NULL;
    r->single = true;
    if (budget)
        r->budget = budget;
    r->keep_empty = keep_empty;
    r->notify = notify;
    r->notify_opaque = notify_opaque;
    kn_err_t rc = kn__lineage_add_one(r, shard, start);
    if (rc == KN_ERR_OK)
        rc = kn__reader_begin(r);
    if (rc != KN_ERR_OK) {
        if (err) {
            kn__error_clear(err);
            kn__error_set(err, rc, "shard %s: %s", shard->shard_id,
                          rc == KN_ERR_NOMEM ? "out of memory" : "the client is shutting down");
        }
        kn__reader_unref(r);
        return NULL;
    }
    return r;
}
