/*
 * The batches handed to process_records: one GetRecords answer of one
 * shard, every Kinesis record decoded (an aggregate-scope frame unwrapped,
 * KPL sub-records split, record-scope compression undone), on the processor
 * thread that runs the shard. Each processor thread reuses one batch, so
 * handing out a batch allocates nothing once the arrays have grown.
 *
 * Data is referenced where it lies in the answer (a plain record, or a
 * sub-record inside an aggregate) and copied only when decoding produced it
 * (decompressed bytes live in the decoder, which the next record reuses).
 * Partition keys and explicit hash keys are copied, NUL-terminated.
 *
 * Records at or before the checkpoint the tenure started from are left out:
 * a tenure resumes AT_SEQUENCE_NUMBER of the checkpoint, whose record (or
 * its sub-records up to the checkpointed one) was already processed.
 * Sub-records outside the shard's hash range (an aggregate put under a stale
 * shard map) are delivered, as every other record: a consumer never drops a
 * record it read.
 */
#include <stdlib.h>
#include <string.h>

#include "consumer_int.h"

typedef struct brec_s {
    const unsigned char *data; /* NULL: in the arena at data_off */
    size_t data_off, data_len;
    size_t key_off, key_len;
    size_t ehk_off;            /* SIZE_MAX: none */
    const char *seq;           /* in the answer */
    uint64_t sub;
    int64_t arrival_ms;
    kn_err_t err;
    bool aggregated;
} brec_t;

struct kn_batch_s {
    const char *shard_id;
    int64_t millis_behind;
    brec_t *recs;
    size_t count, cap;
    kn_buf_t arena;
    int64_t bytes;
    size_t out_of_range; /* KPL sub-records whose hash key the shard does not own */
};

kn_batch_t *kn__batch_new(void) { return calloc(1, sizeof(kn_batch_t)); }

void kn__batch_free(kn_batch_t *b)
{
    if (!b)
        return;
    free(b->recs);
    kn__buf_free(&b->arena);
    free(b);
}

static int put_str(kn_batch_t *b, const char *s, size_t len, size_t *off)
{
    *off = b->arena.len;
    if (kn__buf_reserve(&b->arena, len + 1) != 0)
        return -1;
    if (len)
        memcpy(b->arena.data + b->arena.len, s, len);
    b->arena.data[b->arena.len + len] = '\0';
    b->arena.len += len + 1;
    return 0;
}

static brec_t *next_rec(kn_batch_t *b)
{
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        brec_t *v = realloc(b->recs, cap * sizeof(*v));
        if (!v)
            return NULL;
        b->recs = v;
        b->cap = cap;
    }
    return &b->recs[b->count];
}

static bool inside(const void *p, size_t n, const void *base, size_t len)
{
    const unsigned char *x = p, *lo = base;
    return x && lo && x >= lo && x + n <= lo + len;
}

kn_err_t kn__batch_fill(kn_batch_t *b, kn__tenure_t *t, kn__rc_decoder_t *dec,
                        kn__rbatch_t *rb)
{
    const kn__get_records_result_t *res = &rb->res;
    b->shard_id = t->shard_id;
    b->millis_behind = res->millis_behind_latest;
    b->count = 0;
    b->bytes = 0;
    b->out_of_range = 0;
    kn__buf_reset(&b->arena);
    for (size_t i = 0; i < rb->count; i++) {
        const kn__record_t *rec = &res->records[i];
        if (t->skipping && kn__checkpoint_cmp(rec->sequence_number, UINT64_MAX, t->start_ck,
                                              t->start_sub) < 0)
            continue; /* below the checkpoint (not expected from AT_SEQUENCE_NUMBER) */
        const kn__rc_decoded_t *d = NULL;
        kn_error_t e;
        kn__error_clear(&e);
        if (kn__rc_decode_checked(dec, rec->data, rec->data_len, rec->partition_key, rec->partition_key_len,
                                  NULL, 0, kn__rbatch_digest_ok(rb, i), &d, &e) != KN_ERR_OK)
            return KN_ERR_NOMEM;
        b->out_of_range += kn__rc_check_range(dec, t->start_hash, t->end_hash);
        for (size_t j = 0; j < d->count; j++) {
            const kn__rc_rec_t *u = &d->records[j];
            if (t->skipping && kn__checkpoint_cmp(rec->sequence_number, u->sub_sequence,
                                                  t->start_ck, t->start_sub) <= 0)
                continue; /* processed before the checkpoint (the tenure clears skipping) */
            brec_t *r = next_rec(b);
            if (!r)
                return KN_ERR_NOMEM;
            memset(r, 0, sizeof(*r));
            r->data_len = u->data_len;
            if (u->data_len == 0) {
                r->data = NULL;
            } else if (inside(u->data, u->data_len, rec->data, rec->data_len)) {
                r->data = u->data;
            } else {
                r->data_off = b->arena.len;
                if (kn__buf_append(&b->arena, u->data, u->data_len) != 0)
                    return KN_ERR_NOMEM;
            }
            if (put_str(b, u->partition_key, u->partition_key_len, &r->key_off) != 0)
                return KN_ERR_NOMEM;
            r->key_len = u->partition_key_len;
            r->ehk_off = SIZE_MAX;
            if (u->explicit_hash_key &&
                put_str(b, u->explicit_hash_key, u->explicit_hash_key_len, &r->ehk_off) != 0)
                return KN_ERR_NOMEM;
            r->seq = rec->sequence_number;
            r->sub = u->sub_sequence;
            r->arrival_ms = rec->arrival_ms;
            r->err = u->err;
            r->aggregated = d->aggregated;
            b->bytes += (int64_t)u->data_len;
            b->count++;
        }
    }
    return KN_ERR_OK;
}

const char *kn__batch_last(const kn_batch_t *b, uint64_t *sub)
{
    if (!b || b->count == 0)
        return NULL;
    *sub = b->recs[b->count - 1].sub;
    return b->recs[b->count - 1].seq;
}

int64_t kn__batch_bytes(const kn_batch_t *b) { return b ? b->bytes : 0; }
size_t kn__batch_out_of_range(const kn_batch_t *b) { return b ? b->out_of_range : 0; }

/* ------------------------------------------------------------ accessors */

static const brec_t *rec_at(const kn_batch_t *b, size_t i)
{
    return b && i < b->count ? &b->recs[i] : NULL;
}

KN_API const char *kn_batch_shard_id(const kn_batch_t *b) { return b ? b->shard_id : NULL; }

KN_API size_t kn_batch_count(const kn_batch_t *b) { return b ? b->count : 0; }

KN_API int64_t kn_batch_millis_behind(const kn_batch_t *b) { return b ? b->millis_behind : -1; }

KN_API const void *kn_batch_data(const kn_batch_t *b, size_t i, size_t *len)
{
    const brec_t *r = rec_at(b, i);
    if (len)
        *len = r ? r->data_len : 0;
    if (!r || r->data_len == 0)
        return NULL;
    return r->data ? (const void *)r->data : (const void *)(b->arena.data + r->data_off);
}

KN_API const char *kn_batch_partition_key(const kn_batch_t *b, size_t i, size_t *len)
{
    const brec_t *r = rec_at(b, i);
    if (len)
        *len = r ? r->key_len : 0;
    return r ? b->arena.data + r->key_off : NULL;
}

KN_API const char *kn_batch_explicit_hash_key(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r && r->ehk_off != SIZE_MAX ? b->arena.data + r->ehk_off : NULL;
}

KN_API const char *kn_batch_sequence_number(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r ? r->seq : NULL;
}

KN_API uint64_t kn_batch_sub_sequence(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r ? r->sub : 0;
}

KN_API bool kn_batch_aggregated(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r && r->aggregated;
}

KN_API int64_t kn_batch_arrival_ms(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r ? r->arrival_ms : -1;
}

KN_API kn_err_t kn_batch_record_err(const kn_batch_t *b, size_t i)
{
    const brec_t *r = rec_at(b, i);
    return r ? r->err : KN_ERR_INVALID_ARG;
}
