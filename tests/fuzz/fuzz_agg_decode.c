/*
 * The KPL aggregate decoder on hostile input. Input: a mode byte, then bytes.
 * Mode bit 0 clear: the bytes are a whole Kinesis record, decoded as they are.
 * Mode bit 0 set: the bytes are the protobuf, wrapped here with the magic and
 * the right MD5 so that the fuzzer reaches the parser (it would almost never
 * guess a digest). Bit 1: the record carries an explicit hash key.
 *
 * Invariants: detection agrees with kn__agg_is_aggregate; a pass-through is
 * the input itself with a reason; decoded records are views inside the input
 * numbered 0..n-1; and decoded records built again with our builder decode
 * to the same records (keys, data, tags, order). kn__agg_verify_many agrees
 * with detection, decoding with its answer gives the same result, and the
 * range check marks exactly what a one-at-a-time check of each record's
 * hash key says.
 */
#include "fuzz.h"

#include "agg.h"
#include "err.h"
#include "hashkey.h"
#include "md5.h"

static bool inside(const void *p, size_t n, const uint8_t *base, size_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q >= base && q <= base + len && n <= (size_t)(base + len - q));
}

static void touch(const void *p, size_t n)
{
    volatile unsigned char sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += ((const unsigned char *)p)[i];
    (void)sum;
}

static bool same(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

/*
 * The same explicit hash key: the same bytes, or the same number (the
 * builder may drop leading zeros).
 */
static bool same_hash_key(const kn__agg_rec_t *x, const kn__agg_rec_t *y)
{
    kn__hashkey_t a, b;
    /* An empty key in a table (invalid anyway) is built as no key. */
    if (!x->explicit_hash_key || !y->explicit_hash_key)
        return x->explicit_hash_key_len == 0 && y->explicit_hash_key_len == 0 &&
               (x->explicit_hash_key || !y->explicit_hash_key);
    if (x->explicit_hash_key && y->explicit_hash_key &&
        kn__hashkey_parse(x->explicit_hash_key, x->explicit_hash_key_len, &a) == 0 &&
        kn__hashkey_parse(y->explicit_hash_key, y->explicit_hash_key_len, &b) == 0)
        return kn__hashkey_cmp(a, b) == 0;
    return same(x->explicit_hash_key, x->explicit_hash_key_len, y->explicit_hash_key,
                y->explicit_hash_key_len);
}

/* Builds the decoded records again and checks they decode to the same. */
static void rebuild(const kn__agg_decoded_t *d)
{
    kn_error_t err;
    kn__error_clear(&err);
    kn__agg_builder_t *b = kn__agg_builder_new();
    FUZZ_CHECK(b);
    for (size_t i = 0; i < d->count; i++) {
        const kn__agg_rec_t *r = &d->records[i];
        kn__agg_in_t in = {r->partition_key, r->partition_key_len, r->explicit_hash_key,
                           r->explicit_hash_key_len, r->data, r->data_len, r->tags, r->n_tags};
        if (kn__agg_builder_add(b, &in, &err) != KN_ERR_OK) {
            /* The builder refuses what a producer must not send (an empty partition key, say). */
            FUZZ_CHECK(err.code == KN_ERR_INVALID_ARG || err.code == KN_ERR_TOO_LARGE);
            goto out;
        }
    }
    FUZZ_CHECK(kn__agg_builder_count(b) == d->count);
    kn__agg_out_t o;
    memset(&o, 0, sizeof(o));
    if (kn__agg_builder_finish(b, NULL, true, &o, &err) != KN_ERR_OK)
        fprintf(stderr, "cannot finish: %s\n", err.message);
    FUZZ_CHECK(err.code == KN_ERR_OK);
    FUZZ_CHECK(o.aggregated);
    FUZZ_CHECK(o.data.len == kn__agg_builder_size(b));
    FUZZ_CHECK(kn__agg_is_aggregate(o.data.data, o.data.len));
    kn__agg_decoded_t again = KN__AGG_DECODED_INIT;
    FUZZ_CHECK(kn__agg_decode(o.data.data, o.data.len, o.partition_key.data, o.partition_key.len,
                              o.explicit_hash_key.len ? o.explicit_hash_key.data : NULL,
                              o.explicit_hash_key.len, &again, &err) == KN_ERR_OK);
    if (!again.aggregated)
        fprintf(stderr, "our own aggregate does not decode: %s at byte %zu\n",
                kn__agg_reason_str(again.reason), again.reason_offset);
    FUZZ_CHECK(again.aggregated && again.count == d->count);
    for (size_t i = 0; i < d->count; i++) {
        const kn__agg_rec_t *x = &d->records[i], *y = &again.records[i];
        FUZZ_CHECK(same(x->partition_key, x->partition_key_len, y->partition_key,
                        y->partition_key_len));
        if (!same_hash_key(x, y))
            fprintf(stderr, "record %zu: explicit hash key \"%.*s\" came back as \"%.*s\"\n", i,
                    (int)x->explicit_hash_key_len, x->explicit_hash_key,
                    (int)y->explicit_hash_key_len, y->explicit_hash_key);
        FUZZ_CHECK(same_hash_key(x, y));
        FUZZ_CHECK(same(x->data, x->data_len, y->data, y->data_len));
        FUZZ_CHECK(x->n_tags == y->n_tags);
        for (size_t t = 0; t < x->n_tags; t++) {
            FUZZ_CHECK(same(x->tags[t].key, x->tags[t].key_len, y->tags[t].key, y->tags[t].key_len));
            FUZZ_CHECK((x->tags[t].value == NULL) == (y->tags[t].value == NULL));
            FUZZ_CHECK(same(x->tags[t].value, x->tags[t].value_len, y->tags[t].value,
                            y->tags[t].value_len));
        }
        FUZZ_CHECK(y->sub_sequence == i);
    }
    kn__agg_decoded_free(&again);
    kn__agg_out_free(&o);
out:
    kn__agg_builder_destroy(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    /* The record in its own heap block, so ASan sees any read outside it. */
    size_t len = (mode & 1) ? KN__AGG_OVERHEAD + size : size;
    uint8_t *rec = malloc(len ? len : 1);
    FUZZ_CHECK(rec);
    if (mode & 1) {
        memcpy(rec, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN);
        if (size)
            memcpy(rec + KN__AGG_MAGIC_LEN, data, size);
        kn__md5(data, size, rec + KN__AGG_MAGIC_LEN + size);
    } else if (size) {
        memcpy(rec, data, size);
    }
    static const char pk[] = "outer-key";
    static const char ehk[] = "170141183460469231731687303715884105728";
    const char *ehk_p = (mode & 2) ? ehk : NULL;
    size_t ehk_len = (mode & 2) ? sizeof(ehk) - 1 : 0;

    kn_error_t err;
    kn__error_clear(&err);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    FUZZ_CHECK(kn__agg_decode(rec, len, pk, sizeof(pk) - 1, ehk_p, ehk_len, &d, &err) == KN_ERR_OK);
    FUZZ_CHECK((unsigned)d.reason < KN__AGG_R__COUNT);
    FUZZ_CHECK(kn__agg_reason_str(d.reason) != NULL && kn__agg_reason_name(d.reason) != NULL);

    bool detected = kn__agg_is_aggregate(rec, len);
    if (!detected)
        FUZZ_CHECK(!d.aggregated && (d.reason == KN__AGG_R_PLAIN || d.reason == KN__AGG_R_BAD_MD5));
    else
        FUZZ_CHECK(d.reason != KN__AGG_R_PLAIN && d.reason != KN__AGG_R_BAD_MD5);
    if (mode & 1)
        FUZZ_CHECK(detected == (size > 0));

    if (!d.aggregated) {
        FUZZ_CHECK(d.reason != KN__AGG_R_OK);
        FUZZ_CHECK(d.count == 1);
        const kn__agg_rec_t *r = &d.records[0];
        FUZZ_CHECK(r->data == rec && r->data_len == len);
        FUZZ_CHECK(same(r->partition_key, r->partition_key_len, pk, sizeof(pk) - 1));
        FUZZ_CHECK(same(r->explicit_hash_key, r->explicit_hash_key_len, ehk_p, ehk_len));
        FUZZ_CHECK(r->sub_sequence == 0 && r->n_tags == 0);
        FUZZ_CHECK(d.reason_offset <= len);
    } else {
        FUZZ_CHECK(d.reason == KN__AGG_R_OK);
        for (size_t i = 0; i < d.count; i++) {
            const kn__agg_rec_t *r = &d.records[i];
            FUZZ_CHECK(r->sub_sequence == i);
            FUZZ_CHECK(inside(r->data, r->data_len, rec, len));
            FUZZ_CHECK(inside(r->partition_key, r->partition_key_len, rec, len));
            FUZZ_CHECK(inside(r->explicit_hash_key, r->explicit_hash_key_len, rec, len));
            FUZZ_CHECK(r->n_tags == 0 || r->tags != NULL);
            for (size_t t = 0; t < r->n_tags; t++) {
                FUZZ_CHECK(inside(r->tags[t].key, r->tags[t].key_len, rec, len));
                FUZZ_CHECK(inside(r->tags[t].value, r->tags[t].value_len, rec, len));
            }
            kn__hashkey_t h;
            if (kn__agg_rec_hashkey(r, &h) != 0)
                FUZZ_CHECK(r->explicit_hash_key != NULL);
        }
        /* A shard range from the input's first bytes: every record is marked or not, none lost. */
        kn__hashkey_t lo = {0, 0}, hi = {UINT64_MAX, UINT64_MAX};
        if (size >= 2) {
            lo.hi = (uint64_t)data[0] << 56;
            hi.hi = (uint64_t)data[1] << 56 | 0x00ffffffffffffffull;
        }
        size_t out = kn__agg_check_range(&d, lo, hi);
        size_t marked = 0;
        for (size_t i = 0; i < d.count; i++) {
            const kn__agg_rec_t *r = &d.records[i];
            kn__hashkey_t h;
            bool outside = kn__agg_rec_hashkey(r, &h) != 0 || kn__hashkey_cmp(h, lo) < 0 || kn__hashkey_cmp(h, hi) > 0;
            FUZZ_CHECK(r->out_of_range == outside);
            marked += r->out_of_range;
        }
        FUZZ_CHECK(out == marked && out <= d.count);
        if (d.count > 0) /* an aggregate may hold no record (the KCL yields none): nothing to build */
            rebuild(&d);
    }
    for (size_t i = 0; i < d.count; i++) {
        touch(d.records[i].data, d.records[i].data_len);
        touch(d.records[i].partition_key, d.records[i].partition_key_len);
    }

    /* The result is reusable: decoding again into it gives the same count. */
    size_t count = d.count;
    bool aggregated = d.aggregated;
    kn__agg_reason_t reason = d.reason;
    FUZZ_CHECK(kn__agg_decode(rec, len, pk, sizeof(pk) - 1, ehk_p, ehk_len, &d, &err) == KN_ERR_OK);
    FUZZ_CHECK(d.count == count);

    /* The many-at-once digest check says what detection says; decoding with its answer is the same. */
    const void *one = rec;
    bool ok = false;
    kn__agg_verify_many(1, &one, &len, &ok);
    FUZZ_CHECK(ok == detected);
    FUZZ_CHECK(kn__agg_decode_checked(rec, len, pk, sizeof(pk) - 1, ehk_p, ehk_len, ok, &d, &err) == KN_ERR_OK);
    FUZZ_CHECK(d.count == count && d.aggregated == aggregated && d.reason == reason);

    kn__agg_decoded_free(&d);
    free(rec);
    return 0;
}
