/*
 * The KPL aggregate builder: an incremental proto2 encoder for
 *
 *   message AggregatedRecord { repeated string partition_key_table = 1;
 *                              repeated string explicit_hash_key_table = 2;
 *                              repeated Record records = 3; }
 *   message Record { required uint64 partition_key_index = 1;
 *                    optional uint64 explicit_hash_key_index = 2;
 *                    required bytes data = 3; repeated Tag tags = 4; }
 *   message Tag { required string key = 1; optional string value = 2; }
 *
 * written in field-number order as the KPL's protobuf serializer does. Each
 * record's Record entry (tag, length, body) is serialized into one buffer as
 * it is added; the key tables are kept apart (de-duplicated through an
 * open-addressing hash map) and written before the records at finish. The
 * protobuf size is therefore always exactly
 *   sum(table entries) + sum(record entries)
 * and each add only adds the size of its own entry plus, for a key not seen
 * before, its table entry. Nothing here allocates per record beyond the
 * amortised growth of the buffers.
 */
#include "agg.h"
#include "md5.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- varints */

static inline size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static inline unsigned char *put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Size of a length-delimited field with a one-byte tag (all our field numbers are < 16). */
static inline uint64_t ld_size(uint64_t len) { return 1 + varint_len(len) + len; }

/* Saturating addition, so absurd input sizes end as "too large" rather than wrapping. */
static inline uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* Protobuf tags (field number << 3 | wire type). */
enum {
    TAG_AR_PK_TABLE = 1 << 3 | 2,
    TAG_AR_EHK_TABLE = 2 << 3 | 2,
    TAG_AR_RECORD = 3 << 3 | 2,
    TAG_REC_PK_INDEX = 1 << 3 | 0,
    TAG_REC_EHK_INDEX = 2 << 3 | 0,
    TAG_REC_DATA = 3 << 3 | 2,
    TAG_REC_TAG = 4 << 3 | 2,
    TAG_TAG_KEY = 1 << 3 | 2,
    TAG_TAG_VALUE = 2 << 3 | 2,
};

/* ----------------------------------------------------------- key table */

/*
 * A de-duplicated key table. Keys are copied into one byte arena; slots map
 * a key's hash to its entry. A slot is live only if its generation equals
 * the table's, so reset is O(1) whatever the table once grew to.
 */
typedef struct key_ent_s {
    size_t off, len;
    uint64_t hash;
} key_ent_t;

typedef struct slot_s {
    uint32_t gen;
    uint32_t idx;
} slot_t;

typedef struct key_tab_s {
    kn_buf_t bytes;
    key_ent_t *ents;
    size_t n, cap;
    slot_t *slots;
    size_t mask; /* slot count - 1; slots == NULL until the first key */
    uint32_t gen;
    uint64_t pb_size; /* the encoded size of this table's field entries */
} key_tab_t;

static uint64_t hash_bytes(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xC2B2AE3D27D4EB4Full);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
        s += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, s, len);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    }
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 33;
    return h;
}

/* Finds key; returns its index, or -1 with *slot = where it would go. */
static long tab_find(const key_tab_t *t, const char *key, size_t len, uint64_t h, size_t *slot)
{
    if (!t->slots) {
        *slot = 0;
        return -1;
    }
    size_t i = (size_t)h & t->mask;
    for (;;) {
        const slot_t *s = &t->slots[i];
        if (s->gen != t->gen) {
            *slot = i;
            return -1;
        }
        const key_ent_t *e = &t->ents[s->idx];
        if (e->hash == h && e->len == len && memcmp(t->bytes.data + e->off, key, len) == 0)
            return (long)s->idx;
        i = (i + 1) & t->mask;
    }
}

/* Makes room for one more key of len bytes (load factor <= 1/2): 1 if the slots moved, 0, or -1 (nothing lost). */
static int tab_reserve(key_tab_t *t, size_t len)
{
    if (t->n >= UINT32_MAX - 1)
        return -1;
    if (kn__buf_reserve(&t->bytes, len) != 0)
        return -1;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        key_ent_t *e = realloc(t->ents, cap * sizeof(*e));
        if (!e)
            return -1;
        t->ents = e;
        t->cap = cap;
    }
    size_t nslots = t->slots ? t->mask + 1 : 0;
    if ((t->n + 1) * 2 > nslots) {
        size_t ns = nslots ? nslots * 2 : 32;
        slot_t *s = calloc(ns, sizeof(*s));
        if (!s)
            return -1;
        size_t mask = ns - 1;
        for (size_t k = 0; k < t->n; k++) {
            size_t i = (size_t)t->ents[k].hash & mask;
            while (s[i].gen == 1)
                i = (i + 1) & mask;
            s[i].gen = 1;
            s[i].idx = (uint32_t)k;
        }
        free(t->slots);
        t->slots = s;
        t->mask = mask;
        t->gen = 1;
        return 1;
    }
    return 0;
}

/* Inserts a key known to be absent at the slot tab_find gave (after tab_reserve). */
static uint32_t tab_insert(key_tab_t *t, const char *key, size_t len, uint64_t h, size_t slot)
{
    uint32_t idx = (uint32_t)t->n++;
    key_ent_t *e = &t->ents[idx];
    e->off = t->bytes.len;
    e->len = len;
    e->hash = h;
    kn__buf_append(&t->bytes, key, len); /* cannot fail: reserved */
    t->slots[slot].gen = t->gen;
    t->slots[slot].idx = idx;
    t->pb_size += ld_size(len);
    return idx;
}

static void tab_reset(key_tab_t *t)
{
    t->n = 0;
    t->pb_size = 0;
    kn__buf_reset(&t->bytes);
    if (t->slots && ++t->gen == 0) {
        memset(t->slots, 0, (t->mask + 1) * sizeof(*t->slots));
        t->gen = 1;
    }
}

static void tab_free(key_tab_t *t)
{
    kn__buf_free(&t->bytes);
    free(t->ents);
    free(t->slots);
}

static unsigned char *tab_write(const key_tab_t *t, unsigned char *p, int tag)
{
    for (size_t i = 0; i < t->n; i++) {
        const key_ent_t *e = &t->ents[i];
        *p++ = (unsigned char)tag;
        p = put_varint(p, e->len);
        memcpy(p, t->bytes.data + e->off, e->len);
        p += e->len;
    }
    return p;
}

/* ------------------------------------------------------------- builder */

struct kn__agg_builder_s {
    key_tab_t pk, ehk;
    kn_buf_t recs; /* serialized field-3 entries, in order */
    size_t count;
    /* The first record, for the raw single-record output and the outer hash key. */
    size_t first_data_off, first_data_len;
    long first_ehk; /* index in ehk, or -1 */
    bool defer_digest; /* finish leaves the MD5 to kn__agg_out_digest */
};

kn__agg_builder_t *kn__agg_builder_new(void)
{
    kn__agg_builder_t *b = calloc(1, sizeof(*b));
    if (b)
        b->first_ehk = -1;
    return b;
}

void kn__agg_builder_destroy(kn__agg_builder_t *b)
{
    if (!b)
        return;
    tab_free(&b->pk);
    tab_free(&b->ehk);
    kn__buf_free(&b->recs);
    free(b);
}

void kn__agg_builder_reset(kn__agg_builder_t *b)
{
    tab_reset(&b->pk);
    tab_reset(&b->ehk);
    kn__buf_reset(&b->recs);
    b->count = 0;
    b->first_data_off = b->first_data_len = 0;
    b->first_ehk = -1;
}

size_t kn__agg_builder_count(const kn__agg_builder_t *b) { return b->count; }

static uint64_t pb_size(const kn__agg_builder_t *b)
{
    return b->pk.pb_size + b->ehk.pb_size + (uint64_t)b->recs.len;
}

size_t kn__agg_builder_size(const kn__agg_builder_t *b)
{
    return (size_t)(KN__AGG_OVERHEAD + pb_size(b));
}

/*
 * Everything add needs to know about a record, computed without changing
 * the builder: its keys' places in the tables and its sizes.
 */
typedef struct plan_s {
    const char *ehk; /* canonical form */
    size_t ehk_len;
    char ehk_buf[KN__HASHKEY_STRLEN];
    uint64_t pk_hash, ehk_hash;
    long pk_idx, ehk_idx; /* -1: new key */
    size_t pk_slot, ehk_slot;
    uint64_t body;      /* Record message body */
    uint64_t entry;     /* field-3 entry: tag + length + body */
    uint64_t new_bytes; /* entry + new table entries */
    const char *why;    /* invalid input: the message */
} plan_t;

static uint64_t tag_body_size(const kn__agg_tag_t *t)
{
    uint64_t n = ld_size(t->key_len);
    if (t->value)
        n = sat_add(n, ld_size(t->value_len));
    return n;
}

/* The largest length we accept for any one field: keeps every sum far from overflow. */
#define MAX_FIELD_LEN ((uint64_t)1 << 40)

/* 0, or -1 with p->why set. Looks the keys up (no change to the builder). */
static int plan_record(const kn__agg_builder_t *b, const kn__agg_in_t *r, plan_t *p)
{
    p->why = NULL;
    if (!r->partition_key || r->partition_key_len == 0) {
        p->why = "empty partition key";
        return -1;
    }
    if (r->partition_key_len > MAX_FIELD_LEN || r->data_len > MAX_FIELD_LEN ||
        (r->data_len && !r->data) || (r->n_tags && !r->tags)) {
        p->why = "record too large or NULL data";
        return -1;
    }
    p->ehk = NULL;
    p->ehk_len = 0;
    if (r->explicit_hash_key && r->explicit_hash_key_len) {
        kn__hashkey_t hk;
        if (kn__hashkey_parse(r->explicit_hash_key, r->explicit_hash_key_len, &hk) != 0) {
            p->why = "explicit hash key is not a decimal number in 0..2^128-1";
            return -1;
        }
        if (r->explicit_hash_key[0] == '0' && r->explicit_hash_key_len > 1) {
            p->ehk_len = kn__hashkey_format(hk, p->ehk_buf);
            p->ehk = p->ehk_buf;
        } else {
            p->ehk = r->explicit_hash_key;
            p->ehk_len = r->explicit_hash_key_len;
        }
    }

    p->pk_hash = hash_bytes(r->partition_key, r->partition_key_len);
    p->pk_idx = tab_find(&b->pk, r->partition_key, r->partition_key_len, p->pk_hash, &p->pk_slot);
    uint64_t pk_idx = p->pk_idx >= 0 ? (uint64_t)p->pk_idx : b->pk.n;
    uint64_t new_bytes = p->pk_idx >= 0 ? 0 : ld_size(r->partition_key_len);

    uint64_t body = 1 + varint_len(pk_idx);
    if (p->ehk) {
        p->ehk_hash = hash_bytes(p->ehk, p->ehk_len);
        p->ehk_idx = tab_find(&b->ehk, p->ehk, p->ehk_len, p->ehk_hash, &p->ehk_slot);
        uint64_t ehk_idx = p->ehk_idx >= 0 ? (uint64_t)p->ehk_idx : b->ehk.n;
        if (p->ehk_idx < 0)
            new_bytes += ld_size(p->ehk_len);
        body += 1 + varint_len(ehk_idx);
    }
    body += ld_size(r->data_len);
    for (size_t i = 0; i < r->n_tags; i++) {
        const kn__agg_tag_t *t = &r->tags[i];
        if (!t->key || t->key_len > MAX_FIELD_LEN || (t->value && t->value_len > MAX_FIELD_LEN)) {
            p->why = "tag without a key, or too large";
            return -1;
        }
        body = sat_add(body, ld_size(tag_body_size(t)));
    }
    if (body > MAX_FIELD_LEN * 4) {
        p->why = "record too large";
        return -1;
    }
    p->body = body;
    p->entry = ld_size(body);
    p->new_bytes = sat_add(new_bytes, p->entry);
    return 0;
}

size_t kn__agg_builder_size_with(const kn__agg_builder_t *b, const kn__agg_in_t *r)
{
    plan_t p;
    if (plan_record(b, r, &p) != 0)
        return SIZE_MAX;
    uint64_t total = sat_add(KN__AGG_OVERHEAD + pb_size(b), p.new_bytes);
    return total > SIZE_MAX ? SIZE_MAX : (size_t)total;
}

static unsigned char *write_record(unsigned char *w, const kn__agg_in_t *r, const plan_t *p,
                                   uint64_t pk_idx, uint64_t ehk_idx, size_t *data_off_in_entry)
{
    unsigned char *start = w;
    *w++ = TAG_AR_RECORD;
    w = put_varint(w, p->body);
    *w++ = TAG_REC_PK_INDEX;
    w = put_varint(w, pk_idx);
    if (p->ehk) {
        *w++ = TAG_REC_EHK_INDEX;
        w = put_varint(w, ehk_idx);
    }
    *w++ = TAG_REC_DATA;
    w = put_varint(w, r->data_len);
    *data_off_in_entry = (size_t)(w - start);
    if (r->data_len)
        memcpy(w, r->data, r->data_len);
    w += r->data_len;
    for (size_t i = 0; i < r->n_tags; i++) {
        const kn__agg_tag_t *t = &r->tags[i];
        *w++ = TAG_REC_TAG;
        w = put_varint(w, tag_body_size(t));
        *w++ = TAG_TAG_KEY;
        w = put_varint(w, t->key_len);
        if (t->key_len)
            memcpy(w, t->key, t->key_len);
        w += t->key_len;
        if (t->value) {
            *w++ = TAG_TAG_VALUE;
            w = put_varint(w, t->value_len);
            if (t->value_len)
                memcpy(w, t->value, t->value_len);
            w += t->value_len;
        }
    }
    return w;
}

kn_err_t kn__agg_builder_try_add(kn__agg_builder_t *b, const kn__agg_in_t *r, size_t max_bytes,
                                 size_t max_count, kn_error_t *err)
{
    plan_t p;
    if (plan_record(b, r, &p) != 0)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "aggregate: %s", p.why);
    /*
     * Room for the new keys (growth loses nothing if a later step fails). A
     * rehash moves the slots the lookups found, so then look up again.
     */
    int grown = 0;
    if (p.pk_idx < 0) {
        int g = tab_reserve(&b->pk, r->partition_key_len);
        if (g < 0)
            return kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory for a key table");
        grown |= g;
    }
    if (p.ehk && p.ehk_idx < 0) {
        int g = tab_reserve(&b->ehk, p.ehk_len);
        if (g < 0)
            return kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory for a key table");
        grown |= g;
    }
    if (grown)
        plan_record(b, r, &p);
    if (max_count && b->count + 1 > max_count)
        return KN_ERR_TOO_LARGE;
    uint64_t total = sat_add(KN__AGG_OVERHEAD + pb_size(b), p.new_bytes);
    if (total > max_bytes)
        return KN_ERR_TOO_LARGE;
    if (p.entry > SIZE_MAX / 2 || kn__buf_reserve(&b->recs, (size_t)p.entry) != 0)
        return kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory for a %llu-byte record",
                             (unsigned long long)p.entry);

    uint64_t pk_idx = p.pk_idx >= 0
                          ? (uint64_t)p.pk_idx
                          : tab_insert(&b->pk, r->partition_key, r->partition_key_len, p.pk_hash, p.pk_slot);
    uint64_t ehk_idx = 0;
    if (p.ehk)
        ehk_idx = p.ehk_idx >= 0 ? (uint64_t)p.ehk_idx
                                 : tab_insert(&b->ehk, p.ehk, p.ehk_len, p.ehk_hash, p.ehk_slot);

    unsigned char *w0 = (unsigned char *)b->recs.data + b->recs.len;
    size_t data_off;
    unsigned char *w = write_record(w0, r, &p, pk_idx, ehk_idx, &data_off);
    if (b->count == 0) {
        b->first_data_off = b->recs.len + data_off;
        b->first_data_len = r->data_len;
        b->first_ehk = p.ehk ? (long)ehk_idx : -1;
    }
    b->recs.len += (size_t)(w - w0);
    b->recs.data[b->recs.len] = '\0';
    b->count++;
    return KN_ERR_OK;
}

kn_err_t kn__agg_builder_add(kn__agg_builder_t *b, const kn__agg_in_t *r, kn_error_t *err)
{
    return kn__agg_builder_try_add(b, r, SIZE_MAX, 0, err);
}

kn_err_t kn__agg_builder_finish(const kn__agg_builder_t *b, const char *outer_partition_key,
                                bool force_aggregate, kn__agg_out_t *out, kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    if (b->count == 0)
        return kn__error_set(err, KN_ERR_STATE, "aggregate: no records to finish");
    if (!outer_partition_key)
        outer_partition_key = KN__AGG_DEFAULT_OUTER_PARTITION_KEY;
    if (!*outer_partition_key)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "aggregate: empty outer partition key");

    const key_ent_t *pk0 = &b->pk.ents[0]; /* the first record's key is always entry 0 */
    const char *pk0_bytes = b->pk.bytes.data + pk0->off;
    const key_ent_t *ehk0 = b->first_ehk >= 0 ? &b->ehk.ents[b->first_ehk] : NULL;

    if (b->count == 1 && !force_aggregate) {
        if (kn__buf_append(&out->data, b->recs.data + b->first_data_off, b->first_data_len) != 0 ||
            kn__buf_append(&out->partition_key, pk0_bytes, pk0->len) != 0 ||
            (ehk0 && kn__buf_append(&out->explicit_hash_key, b->ehk.bytes.data + ehk0->off,
                                    ehk0->len) != 0)) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory");
            goto out;
        }
        out->aggregated = false;
        goto out;
    }

    size_t total = kn__agg_builder_size(b);
    if (kn__buf_reserve(&out->data, total) != 0 || kn__buf_puts(&out->partition_key, outer_partition_key) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory for %zu bytes", total);
        goto out;
    }
    if (ehk0) {
        if (kn__buf_append(&out->explicit_hash_key, b->ehk.bytes.data + ehk0->off, ehk0->len) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory");
            goto out;
        }
    } else {
        char dec[KN__HASHKEY_STRLEN];
        size_t n = kn__hashkey_format(kn__hashkey_from_partition_key(pk0_bytes, pk0->len), dec);
        if (kn__buf_append(&out->explicit_hash_key, dec, n) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "aggregate: out of memory");
            goto out;
        }
    }

    unsigned char *start = (unsigned char *)out->data.data + out->data.len;
    unsigned char *w = start;
    memcpy(w, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN);
    w += KN__AGG_MAGIC_LEN;
    w = tab_write(&b->pk, w, TAG_AR_PK_TABLE);
    w = tab_write(&b->ehk, w, TAG_AR_EHK_TABLE);
    memcpy(w, b->recs.data, b->recs.len);
    w += b->recs.len;
    if (b->defer_digest) {
        memset(w, 0, KN__AGG_DIGEST_LEN);
        out->digest_pending = true;
    } else {
        kn__md5(start + KN__AGG_MAGIC_LEN, (size_t)(w - start) - KN__AGG_MAGIC_LEN, w);
    }
    w += KN__AGG_DIGEST_LEN;
    out->data.len += (size_t)(w - start);
    out->data.data[out->data.len] = '\0';
    out->aggregated = true;
out:
    return rc;
}

void kn__agg_builder_defer_digest(kn__agg_builder_t *b, bool defer) { b->defer_digest = defer; }

void kn__agg_out_digest(kn__agg_out_t *const *outs, size_t n)
{
    /* In groups of up to 64, so that the lane arrays stay on the stack. */
    enum { GROUP = 64 };
    const void *data[GROUP];
    size_t len[GROUP];
    unsigned char digest[GROUP][16];
    kn__agg_out_t *who[GROUP];
    size_t m = 0;
    for (size_t i = 0; i <= n; i++) {
        kn__agg_out_t *o = i < n ? outs[i] : NULL;
        if (o && o->digest_pending && o->aggregated && o->data.len >= KN__AGG_OVERHEAD) {
            who[m] = o;
            data[m] = o->data.data + KN__AGG_MAGIC_LEN;
            len[m] = o->data.len - KN__AGG_OVERHEAD;
            m++;
        }
        if (m == GROUP || (i == n && m > 0)) {
            kn__md5_many(m, data, len, digest);
            for (size_t k = 0; k < m; k++) {
                memcpy(who[k]->data.data + who[k]->data.len - KN__AGG_DIGEST_LEN, digest[k], 16);
                who[k]->digest_pending = false;
            }
            m = 0;
        }
    }
}

void kn__agg_out_free(kn__agg_out_t *out)
{
    if (!out)
        return;
    kn__buf_free(&out->data);
    kn__buf_free(&out->partition_key);
    kn__buf_free(&out->explicit_hash_key);
    out->aggregated = false;
}
