/*
 * The KPL aggregate decoder, following the KCL's rules: a Kinesis record is
 * an aggregate if it starts with the magic, has more than 16 bytes after it,
 * the MD5 of [4, len-16) equals the last 16 bytes, and the protobuf parses;
 * otherwise it is delivered unchanged as one plain record.
 *
 * "Parses" means proto2 as protobuf-java reads it: fields in any order and
 * interleaved, unknown fields skipped by wire type (groups too, nested to a
 * depth of 100), a known field number with another wire type treated as an
 * unknown field, the last occurrence of a non-repeated field winning,
 * required fields (Record.partition_key_index, Record.data, Tag.key) checked.
 * We are stricter in that no varint is ever truncated (a value over 64 bits,
 * or a tag over 32 bits, fails) and that a key index outside its table makes
 * the record pass through (the KCL throws).
 *
 * Two passes keep memory bounded by the input: the first walks the top level
 * only and counts table entries and records (each record needs at least 6
 * bytes of input); the second fills exactly sized tables and parses the
 * records, whose user data stay views into the input.
 */
#include "agg.h"
#include "md5.h"

#include <stdlib.h>
#include <string.h>

static const char *const reason_desc[] = {
#define X(name, desc) desc,
    KN__AGG_REASONS(X)
#undef X
};
static const char *const reason_name[] = {
#define X(name, desc) #name,
    KN__AGG_REASONS(X)
#undef X
};

const char *kn__agg_reason_str(kn__agg_reason_t r)
{
    return (unsigned)r < KN__AGG_R__COUNT ? reason_desc[r] : "unknown";
}

const char *kn__agg_reason_name(kn__agg_reason_t r)
{
    return (unsigned)r < KN__AGG_R__COUNT ? reason_name[r] : "unknown";
}

/* ------------------------------------------------------------- reading */

typedef struct rd_s {
    const unsigned char *p, *end;
} rd_t;

enum { WT_VARINT = 0, WT_FIXED64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_FIXED32 = 5 };

#define MAX_GROUP_DEPTH 100

/* A varint of at most 10 bytes and 64 bits. */
static kn__agg_reason_t rd_varint(rd_t *r, uint64_t *v)
{
    const unsigned char *p = r->p;
    if (p < r->end && *p < 0x80) {
        *v = *p;
        r->p = p + 1;
        return KN__AGG_R_OK;
    }
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        if (p >= r->end)
            return KN__AGG_R_TRUNCATED;
        unsigned b = *p++;
        if (shift == 63 && b > 1)
            return KN__AGG_R_BAD_VARINT; /* bits beyond 64, or an 11th byte */
        x |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *v = x;
            r->p = p;
            return KN__AGG_R_OK;
        }
    }
    return KN__AGG_R_BAD_VARINT; /* not reached: the 10th byte fails above if it continues */
}

/* A tag: field number >= 1, wire type, value within 32 bits. */
static kn__agg_reason_t rd_tag(rd_t *r, uint32_t *field, unsigned *wt)
{
    uint64_t t;
    kn__agg_reason_t e = rd_varint(r, &t);
    if (e)
        return e;
    if (t > UINT32_MAX || (t >> 3) == 0)
        return KN__AGG_R_BAD_TAG;
    *field = (uint32_t)(t >> 3);
    *wt = (unsigned)(t & 7);
    return KN__AGG_R_OK;
}

/* A length-delimited payload, within the message. */
static kn__agg_reason_t rd_bytes(rd_t *r, const unsigned char **p, size_t *len)
{
    uint64_t n;
    kn__agg_reason_t e = rd_varint(r, &n);
    if (e)
        return e;
    if (n > (uint64_t)(r->end - r->p))
        return KN__AGG_R_TRUNCATED;
    *p = r->p;
    *len = (size_t)n;
    r->p += n;
    return KN__AGG_R_OK;
}

static kn__agg_reason_t skip_fixed(rd_t *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return KN__AGG_R_TRUNCATED;
    r->p += n;
    return KN__AGG_R_OK;
}

/*
 * Skips the value of an unknown field whose tag was just read. A group is
 * skipped up to its matching end-group (same field number); a stray
 * end-group, or wire type 6 or 7, fails.
 */
static kn__agg_reason_t skip_field(rd_t *r, uint32_t field, unsigned wt)
{
    uint32_t open[MAX_GROUP_DEPTH];
    size_t depth = 0;
    kn__agg_reason_t e;
    for (;;) {
        const unsigned char *p;
        size_t n;
        uint64_t v;
        switch (wt) {
        case WT_VARINT:
            e = rd_varint(r, &v);
            break;
        case WT_FIXED64:
            e = skip_fixed(r, 8);
            break;
        case WT_LEN:
            e = rd_bytes(r, &p, &n);
            break;
        case WT_FIXED32:
            e = skip_fixed(r, 4);
            break;
        case WT_SGROUP:
            if (depth == MAX_GROUP_DEPTH)
                return KN__AGG_R_TOO_DEEP;
            open[depth++] = field;
            e = KN__AGG_R_OK;
            break;
        case WT_EGROUP:
            if (depth == 0 || open[depth - 1] != field)
                return KN__AGG_R_BAD_TAG;
            depth--;
            e = KN__AGG_R_OK;
            break;
        default:
            return KN__AGG_R_BAD_TAG;
        }
        if (e)
            return e;
        if (depth == 0)
            return KN__AGG_R_OK;
        if (r->p >= r->end)
            return KN__AGG_R_TRUNCATED; /* a group not closed before the end */
        e = rd_tag(r, &field, &wt);
        if (e)
            return e;
    }
}

/* ------------------------------------------------------------ storage */

typedef struct key_view_s {
    const char *p;
    size_t len;
} key_view_t;

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *p = realloc(*arr, c * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = c;
    return 0;
}

void kn__agg_decoded_free(kn__agg_decoded_t *out)
{
    if (!out)
        return;
    free(out->records);
    free(out->tag_store);
    free(out->keys);
    kn__agg_decoded_t z = KN__AGG_DECODED_INIT;
    *out = z;
}

/* ------------------------------------------------------------ parsing */

typedef struct parse_s {
    kn__agg_decoded_t *out;
    const key_view_t *pk, *ehk;
    size_t n_pk, n_ehk;
    size_t n_tags; /* used in out->tag_store */
    bool nomem;
    bool bad_index;      /* a key index outside its table (reported after the parse) */
    size_t rec_at, bad_index_at;
} parse_t;

/* One Tag message. */
static kn__agg_reason_t parse_tag(parse_t *ps, rd_t r)
{
    kn__agg_tag_t t = {NULL, 0, NULL, 0};
    while (r.p < r.end) {
        uint32_t field;
        unsigned wt;
        kn__agg_reason_t e = rd_tag(&r, &field, &wt);
        if (e)
            return e;
        const unsigned char *p;
        size_t n;
        if ((field == 1 || field == 2) && wt == WT_LEN) {
            if ((e = rd_bytes(&r, &p, &n)) != KN__AGG_R_OK)
                return e;
            if (field == 1) {
                t.key = (const char *)p;
                t.key_len = n;
            } else {
                t.value = (const char *)p;
                t.value_len = n;
            }
        } else if ((e = skip_field(&r, field, wt)) != KN__AGG_R_OK) {
            return e;
        }
    }
    if (!t.key)
        return KN__AGG_R_MISSING_FIELD;
    kn__agg_decoded_t *o = ps->out;
    void *store = o->tag_store;
    if (grow(&store, &o->tag_cap, ps->n_tags + 1, sizeof(kn__agg_tag_t)) != 0) {
        ps->nomem = true;
        return KN__AGG_R_OK;
    }
    o->tag_store = store;
    o->tag_store[ps->n_tags++] = t;
    return KN__AGG_R_OK;
}

/* One Record message into rec (tags counted in rec->n_tags, pointers set later). */
static kn__agg_reason_t parse_record(parse_t *ps, rd_t r, kn__agg_rec_t *rec)
{
    bool have_pk = false, have_ehk = false, have_data = false;
    uint64_t pk_idx = 0, ehk_idx = 0;
    const unsigned char *data = NULL;
    size_t data_len = 0, n_tags = 0;
    while (r.p < r.end) {
        uint32_t field;
        unsigned wt;
        kn__agg_reason_t e = rd_tag(&r, &field, &wt);
        if (e)
            return e;
        if (field == 1 && wt == WT_VARINT) {
            e = rd_varint(&r, &pk_idx);
            have_pk = true;
        } else if (field == 2 && wt == WT_VARINT) {
            e = rd_varint(&r, &ehk_idx);
            have_ehk = true;
        } else if (field == 3 && wt == WT_LEN) {
            e = rd_bytes(&r, &data, &data_len);
            have_data = true;
        } else if (field == 4 && wt == WT_LEN) {
            rd_t sub;
            size_t n;
            if ((e = rd_bytes(&r, &sub.p, &n)) == KN__AGG_R_OK) {
                sub.end = sub.p + n;
                e = parse_tag(ps, sub);
                if (ps->nomem)
                    return KN__AGG_R_OK;
                n_tags++;
            }
        } else {
            e = skip_field(&r, field, wt);
        }
        if (e)
            return e;
    }
    if (!have_pk || !have_data)
        return KN__AGG_R_MISSING_FIELD;
    memset(rec, 0, sizeof(*rec));
    /* An index error is reported only if the whole protobuf parses (a parse error comes first, as in the KCL). */
    if (pk_idx >= ps->n_pk || (have_ehk && ehk_idx >= ps->n_ehk)) {
        if (!ps->bad_index) {
            ps->bad_index = true;
            ps->bad_index_at = ps->rec_at;
        }
        return KN__AGG_R_OK;
    }
    rec->partition_key = ps->pk[pk_idx].p;
    rec->partition_key_len = ps->pk[pk_idx].len;
    rec->explicit_hash_key = have_ehk ? ps->ehk[ehk_idx].p : NULL;
    rec->explicit_hash_key_len = have_ehk ? ps->ehk[ehk_idx].len : 0;
    rec->data = data;
    rec->data_len = data_len;
    rec->tags = NULL;
    rec->n_tags = n_tags;
    rec->out_of_range = false;
    return KN__AGG_R_OK;
}

/* The smallest valid Record: 08 <idx> 1A 00. */
#define MIN_RECORD_LEN 4

/*
 * Parses the protobuf pb[0, len). On failure returns the reason with *at =
 * the failing offset within pb (approximately: where the failing field
 * starts). Sets ps->nomem on allocation failure.
 */
static kn__agg_reason_t parse_aggregate(parse_t *ps, const unsigned char *pb, size_t len, size_t *at)
{
    kn__agg_decoded_t *o = ps->out;
    rd_t r = {pb, pb + len};
    size_t n_pk = 0, n_ehk = 0, n_rec = 0;
    kn__agg_reason_t e = KN__AGG_R_OK;

    /* Pass 1: the top level, counting. */
    while (r.p < r.end) {
        *at = (size_t)(r.p - pb);
        uint32_t field;
        unsigned wt;
        if ((e = rd_tag(&r, &field, &wt)) != KN__AGG_R_OK)
            return e;
        if (field >= 1 && field <= 3 && wt == WT_LEN) {
            rd_t sub;
            size_t n;
            if ((e = rd_bytes(&r, &sub.p, &n)) != KN__AGG_R_OK)
                return e;
            if (field == 1) {
                n_pk++;
            } else if (field == 2) {
                n_ehk++;
            } else {
                if (n < MIN_RECORD_LEN) {
                    /* Invalid anyway; parse it to name the precise reason. */
                    kn__agg_rec_t scratch;
                    parse_t tmp = {o, NULL, NULL, 0, 0, ps->n_tags, false, false, 0, 0};
                    sub.end = sub.p + n;
                    e = parse_record(&tmp, sub, &scratch);
                    return e ? e : KN__AGG_R_MISSING_FIELD;
                }
                n_rec++;
            }
        } else if ((e = skip_field(&r, field, wt)) != KN__AGG_R_OK) {
            return e;
        }
    }

    /* Storage, bounded by len: n_pk + n_ehk <= len / 2, n_rec <= len / 6. */
    size_t need_rec = n_rec ? n_rec : 1;
    void *recs = o->records;
    int g = grow(&o->keys, &o->key_cap, n_pk + n_ehk, sizeof(key_view_t));
    if (g == 0)
        g = grow(&recs, &o->rec_cap, need_rec, sizeof(kn__agg_rec_t));
    o->records = recs;
    if (g != 0) {
        ps->nomem = true;
        return KN__AGG_R_OK;
    }
    key_view_t *keys = o->keys;
    ps->pk = keys;
    ps->ehk = keys ? keys + n_pk : NULL; /* no tables at all: keys stays NULL */
    ps->n_pk = n_pk;
    ps->n_ehk = n_ehk;

    /* Pass 2a: the tables. Pass 1 checked the top-level structure, so these reads cannot fail. */
    size_t i_pk = 0, i_ehk = 0;
    r.p = pb;
    while (r.p < r.end) {
        uint32_t field = 0;
        unsigned wt = 0;
        rd_tag(&r, &field, &wt);
        if ((field == 1 || field == 2) && wt == WT_LEN) {
            const unsigned char *p = NULL;
            size_t n = 0;
            rd_bytes(&r, &p, &n);
            key_view_t *kv = field == 1 ? &keys[i_pk++] : &keys[n_pk + i_ehk++];
            kv->p = (const char *)p;
            kv->len = n;
        } else {
            skip_field(&r, field, wt);
        }
    }

    /* Pass 2b: the records. */
    size_t i_rec = 0;
    r.p = pb;
    while (r.p < r.end) {
        *at = (size_t)(r.p - pb);
        uint32_t field = 0;
        unsigned wt = 0;
        rd_tag(&r, &field, &wt);
        if (field == 3 && wt == WT_LEN) {
            rd_t sub = {NULL, NULL};
            size_t n = 0;
            rd_bytes(&r, &sub.p, &n);
            sub.end = sub.p + n;
            kn__agg_rec_t *rec = &o->records[i_rec];
            ps->rec_at = *at;
            if ((e = parse_record(ps, sub, rec)) != KN__AGG_R_OK || ps->nomem)
                return e;
            rec->sub_sequence = i_rec;
            i_rec++;
        } else {
            skip_field(&r, field, wt);
        }
    }

    if (ps->bad_index) {
        *at = ps->bad_index_at;
        return KN__AGG_R_INDEX_OUT_OF_TABLE;
    }

    /* Tag pointers, now that tag_store has stopped moving: tags were stored in record order. */
    size_t t = 0;
    for (size_t i = 0; i < n_rec; i++) {
        kn__agg_rec_t *rec = &o->records[i];
        rec->tags = rec->n_tags ? o->tag_store + t : NULL;
        t += rec->n_tags;
    }
    o->count = n_rec;
    *at = 0;
    return KN__AGG_R_OK;
}

/* ------------------------------------------------------------ the API */

bool kn__agg_is_aggregate(const void *data, size_t len)
{
    bool ok;
    kn__agg_verify_many(1, &data, &len, &ok);
    return ok;
}

void kn__agg_verify_many(size_t n, const void *const *data, const size_t *len, bool *ok)
{
    enum { GROUP = 64 };
    const void *pb[GROUP];
    size_t pb_len[GROUP], who[GROUP];
    unsigned char md[GROUP][16];
    size_t m = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            const unsigned char *d = data[i];
            ok[i] = false;
            if (d && len[i] > KN__AGG_OVERHEAD && memcmp(d, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0) {
                pb[m] = d + KN__AGG_MAGIC_LEN;
                pb_len[m] = len[i] - KN__AGG_OVERHEAD;
                who[m++] = i;
            }
        }
        if (m == GROUP || (i == n && m > 0)) {
            kn__md5_many(m, pb, pb_len, md);
            for (size_t k = 0; k < m; k++) {
                const unsigned char *d = data[who[k]];
                ok[who[k]] = memcmp(md[k], d + len[who[k]] - KN__AGG_DIGEST_LEN, KN__AGG_DIGEST_LEN) == 0;
            }
            m = 0;
        }
    }
}

kn_err_t kn__agg_decode(const void *data, size_t len, const char *partition_key,
                        size_t partition_key_len, const char *explicit_hash_key,
                        size_t explicit_hash_key_len, kn__agg_decoded_t *out, kn_error_t *err)
{
    return kn__agg_decode_checked(data, len, partition_key, partition_key_len, explicit_hash_key,
                                  explicit_hash_key_len, false, out, err);
}

kn_err_t kn__agg_decode_checked(const void *data, size_t len, const char *partition_key,
                                size_t partition_key_len, const char *explicit_hash_key,
                                size_t explicit_hash_key_len, bool digest_ok, kn__agg_decoded_t *out,
                                kn_error_t *err)
{
    const unsigned char *d = data;
    kn__agg_reason_t why = KN__AGG_R_PLAIN;
    size_t at = 0;
    out->count = 0;
    out->aggregated = false;

    if (d && len > KN__AGG_OVERHEAD && memcmp(d, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0) {
        const unsigned char *pb = d + KN__AGG_MAGIC_LEN;
        size_t pb_len = len - KN__AGG_OVERHEAD;
        if (!digest_ok)
            digest_ok = kn__agg_is_aggregate(d, len);
        if (!digest_ok) {
            why = KN__AGG_R_BAD_MD5;
            at = len - KN__AGG_DIGEST_LEN;
        } else {
            parse_t ps = {out, NULL, NULL, 0, 0, 0, false, false, 0, 0};
            why = parse_aggregate(&ps, pb, pb_len, &at);
            if (ps.nomem) {
                out->count = 0;
                return kn__error_set(err, KN_ERR_NOMEM, "deaggregation: out of memory (%zu-byte record)", len);
            }
            if (why == KN__AGG_R_OK) {
                out->aggregated = true;
                out->reason = KN__AGG_R_OK;
                out->reason_offset = 0;
                return KN_ERR_OK;
            }
            at += KN__AGG_MAGIC_LEN;
        }
    }

    /* Pass-through: the input is one plain record. */
    void *recs = out->records;
    int g = grow(&recs, &out->rec_cap, 1, sizeof(kn__agg_rec_t));
    out->records = recs;
    if (g != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "deaggregation: out of memory");
    kn__agg_rec_t *rec = &out->records[0];
    rec->partition_key = partition_key;
    rec->partition_key_len = partition_key_len;
    rec->explicit_hash_key = explicit_hash_key;
    rec->explicit_hash_key_len = explicit_hash_key ? explicit_hash_key_len : 0;
    rec->data = d;
    rec->data_len = len;
    rec->tags = NULL;
    rec->n_tags = 0;
    rec->sub_sequence = 0;
    rec->out_of_range = false;
    out->count = 1;
    out->reason = why;
    out->reason_offset = why == KN__AGG_R_PLAIN ? 0 : at;
    return KN_ERR_OK;
}

int kn__agg_rec_hashkey(const kn__agg_rec_t *r, kn__hashkey_t *out)
{
    if (r->explicit_hash_key)
        return kn__hashkey_parse(r->explicit_hash_key, r->explicit_hash_key_len, out);
    *out = kn__hashkey_from_partition_key(r->partition_key, r->partition_key_len);
    return 0;
}

size_t kn__agg_check_range(kn__agg_decoded_t *d, kn__hashkey_t start, kn__hashkey_t end)
{
    size_t n = 0;
    if (!d->aggregated)
        return 0;
    enum { GROUP = 64 };
    const void *key[GROUP];
    size_t key_len[GROUP];
    unsigned char md[GROUP][16];
    for (size_t base = 0; base < d->count; base += GROUP) {
        size_t end_i = d->count - base < GROUP ? d->count : base + GROUP;
        /* The partition keys' MD5s of this group, one per run of records sharing a key. */
        size_t m = 0;
        const char *last = NULL;
        for (size_t i = base; i < end_i; i++) {
            const kn__agg_rec_t *r = &d->records[i];
            if (r->explicit_hash_key || (m > 0 && r->partition_key == last))
                continue;
            last = r->partition_key;
            key[m] = r->partition_key;
            key_len[m++] = r->partition_key_len;
        }
        kn__md5_many(m, key, key_len, md);
        size_t j = 0;
        last = NULL;
        kn__hashkey_t k = {0, 0};
        for (size_t i = base; i < end_i; i++) {
            kn__agg_rec_t *r = &d->records[i];
            bool bad = false;
            if (r->explicit_hash_key) {
                kn__hashkey_t e;
                bad = kn__hashkey_parse(r->explicit_hash_key, r->explicit_hash_key_len, &e) != 0;
                r->out_of_range = bad || kn__hashkey_cmp(e, start) < 0 || kn__hashkey_cmp(e, end) > 0;
            } else {
                if (j == 0 || r->partition_key != last) {
                    k = kn__hashkey_from_digest(md[j++]);
                    last = r->partition_key;
                }
                r->out_of_range = kn__hashkey_cmp(k, start) < 0 || kn__hashkey_cmp(k, end) > 0;
            }
            n += r->out_of_range;
        }
    }
    return n;
}
