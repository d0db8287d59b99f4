/* The record and aggregate compression scopes, and the consumer's decode pipeline. */
#include "record_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#define TAG_KEY_LEN (sizeof(KN__RC_TAG_KEY) - 1)
#define FRAME_CODEC_GZIP 1
#define FRAME_CODEC_ZSTD 2

struct kn__rc_decoder_s {
    kn__rc_limits_t lim;
    kn__zctx_t *z;
    kn_buf_t unwrap;        /* the unwrapped frame */
    kn_buf_t arena;         /* record-scope decompressed data, back to back */
    kn_buf_t msgs;          /* error messages, NUL-separated */
    kn__agg_decoded_t agg;
    kn__rc_rec_t *recs;
    size_t rec_cap;
    size_t *data_off;       /* per record: offset in arena, or SIZE_MAX (data is a view) */
    size_t *msg_off;        /* per record: offset in msgs, or SIZE_MAX (no error) */
    size_t off_cap;
    kn__rc_decoded_t res;
    kn_error_t e; /* per-record problems, copied into the records as messages */
};

const char *kn__rc_scope_name(kn__rc_scope_t scope)
{
    return scope == KN__RC_SCOPE_RECORD ? "record" : "aggregate";
}

bool kn__rc_scope_from_name(const char *name, size_t len, kn__rc_scope_t *out)
{
    if (!name)
        return false;
    if (len == 6 && strncasecmp(name, "record", 6) == 0) {
        *out = KN__RC_SCOPE_RECORD;
        return true;
    }
    if (len == 9 && strncasecmp(name, "aggregate", 9) == 0) {
        *out = KN__RC_SCOPE_AGGREGATE;
        return true;
    }
    return false;
}

/* ------------------------------------------------------------ encoding */

static size_t varint_len(size_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t kn__rc_tag_cost(kn__codec_t codec)
{
    size_t vlen = strlen(kn__codec_name(codec));
    /* Tag { 1: key, 2: value } as field 4 of Record: key byte, length, message. */
    size_t msg = 1 + varint_len(TAG_KEY_LEN) + TAG_KEY_LEN + 1 + varint_len(vlen) + vlen;
    return 1 + varint_len(msg) + msg;
}

kn_err_t kn__rc_compress_record(kn__zctx_t *z, kn__codec_t codec, int level, const void *data,
                                size_t len, bool only_if_smaller, kn_buf_t *out, kn__agg_tag_t *tag,
                                bool *compressed, kn_error_t *err)
{
    size_t start = out->len;
    *compressed = false;
    kn_err_t rc = kn__compress(z, codec, level, data, len, out, err);
    if (rc != KN_ERR_OK)
        return rc;
    if (only_if_smaller && out->len - start + kn__rc_tag_cost(codec) >= len) {
        out->len = start;
        out->data[start] = '\0';
        return KN_ERR_OK;
    }
    kn__rc_record_tag(codec, tag);
    *compressed = true;
    return KN_ERR_OK;
}

void kn__rc_record_tag(kn__codec_t codec, kn__agg_tag_t *tag)
{
    tag->key = KN__RC_TAG_KEY;
    tag->key_len = TAG_KEY_LEN;
    tag->value = kn__codec_name(codec);
    tag->value_len = strlen(tag->value);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

kn_err_t kn__rc_wrap(kn__zctx_t *z, kn__codec_t codec, int level, const void *data, size_t len,
                     bool only_if_smaller, kn_buf_t *out, bool *wrapped, kn_error_t *err)
{
    size_t start = out->len;
    kn_err_t rc = KN_ERR_OK;
    *wrapped = false;
    if (codec != KN__CODEC_GZIP && codec != KN__CODEC_ZSTD)
        return kn__error_set(err, KN_ERR_INVALID_ARG, "compress: unknown codec %d", (int)codec);
    if (len > UINT32_MAX)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "compress: %zu bytes do not fit an aggregate-scope frame", len);
    unsigned char hdr[KN__RC_FRAME_HEADER_LEN];
    memcpy(hdr, KN__RC_FRAME_MAGIC, KN__RC_FRAME_MAGIC_LEN);
    hdr[4] = KN__RC_FRAME_VERSION;
    hdr[5] = codec == KN__CODEC_GZIP ? FRAME_CODEC_GZIP : FRAME_CODEC_ZSTD;
    hdr[6] = 0;
    hdr[7] = 0;
    put_be32(hdr + 8, (uint32_t)len);
    if (kn__buf_append(out, hdr, sizeof(hdr)) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "compress: no memory for a frame");
        goto out;
    }
    rc = kn__compress(z, codec, level, data, len, out, err);
    if (rc != KN_ERR_OK)
        goto out;
    unsigned char crc[KN__RC_FRAME_TRAILER_LEN];
    put_be32(crc, (uint32_t)crc32_z(0, (const unsigned char *)out->data + start, out->len - start));
    if (kn__buf_append(out, crc, sizeof(crc)) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "compress: no memory for a frame");
        goto out;
    }
    if (only_if_smaller && out->len - start >= len && !kn__rc_is_frame(data, len)) {
        out->len = start; /* not worth it: the caller sends data as it is */
        out->data[start] = '\0';
        goto out;
    }
    *wrapped = true;
out:
    if (rc != KN_ERR_OK && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

/* ------------------------------------------------------------ decoding */

static kn__codec_t frame_codec(const unsigned char *p)
{
    return p[5] == FRAME_CODEC_GZIP ? KN__CODEC_GZIP : p[5] == FRAME_CODEC_ZSTD ? KN__CODEC_ZSTD : KN__CODEC_NONE;
}

bool kn__rc_is_frame(const void *data, size_t len)
{
    const unsigned char *p = data;
    /* A payload holds at least one byte; cheap header checks first, the CRC last. */
    if (len < KN__RC_FRAME_OVERHEAD + 1 || memcmp(p, KN__RC_FRAME_MAGIC, KN__RC_FRAME_MAGIC_LEN) != 0)
        return false;
    if (p[4] != KN__RC_FRAME_VERSION || frame_codec(p) == KN__CODEC_NONE || p[6] != 0 || p[7] != 0)
        return false;
    size_t body = len - KN__RC_FRAME_TRAILER_LEN;
    return (uint32_t)crc32_z(0, p, body) == get_be32(p + body);
}

kn_err_t kn__rc_unwrap(kn__zctx_t *z, const void *data, size_t len, size_t max_out, kn_buf_t *out,
                       kn__codec_t *codec, kn_error_t *err)
{
    const unsigned char *p = data;
    if (!kn__rc_is_frame(data, len))
        return KN_ERR_NOT_FOUND;
    kn__codec_t c = frame_codec(p);
    if (codec)
        *codec = c;
    size_t want = get_be32(p + 8);
    if (want > max_out)
        return kn__error_set(err, KN_ERR_TOO_LARGE,
                             "%s frame: declares %zu bytes, more than the limit of %zu",
                             kn__codec_name(c), want, max_out);
    size_t start = out->len;
    kn_err_t rc = kn__decompress(z, c, p + KN__RC_FRAME_HEADER_LEN, len - KN__RC_FRAME_OVERHEAD, want,
                                 out, err);
    if (rc == KN_ERR_TOO_LARGE) /* more than declared: the frame contradicts itself */
        return kn__error_set(err, KN_ERR_BAD_RESPONSE,
                             "%s frame: the payload holds more than the %zu bytes the header declares",
                             kn__codec_name(c), want);
    if (rc != KN_ERR_OK) {
        kn__error_prefix(err, "frame");
        return rc;
    }
    if (out->len - start != want) {
        rc = kn__error_set(err, KN_ERR_BAD_RESPONSE,
                           "%s frame: the payload holds %zu bytes, the header declares %zu",
                           kn__codec_name(c), out->len - start, want);
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

kn__rc_decoder_t *kn__rc_decoder_new(const kn__rc_limits_t *limits)
{
    kn__rc_decoder_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->z = kn__zctx_new();
    if (!d->z) {
        free(d);
        return NULL;
    }
    d->lim.max_record_bytes = limits && limits->max_record_bytes ? limits->max_record_bytes
                                                                 : KN__RC_DEFAULT_MAX_RECORD_BYTES;
    d->lim.max_total_bytes = limits && limits->max_total_bytes ? limits->max_total_bytes
                                                               : KN__RC_DEFAULT_MAX_TOTAL_BYTES;
    kn__agg_decoded_t init = KN__AGG_DECODED_INIT;
    d->agg = init;
    return d;
}

void kn__rc_decoder_destroy(kn__rc_decoder_t *d)
{
    if (!d)
        return;
    kn__zctx_destroy(d->z);
    kn__buf_free(&d->unwrap);
    kn__buf_free(&d->arena);
    kn__buf_free(&d->msgs);
    kn__agg_decoded_free(&d->agg);
    free(d->recs);
    free(d->data_off);
    free(d->msg_off);
    free(d);
}

static int ensure_recs(kn__rc_decoder_t *d, size_t n)
{
    if (n <= d->rec_cap)
        return 0;
    size_t cap = d->rec_cap ? d->rec_cap : 16;
    while (cap < n)
        cap *= 2;
    kn__rc_rec_t *r = realloc(d->recs, cap * sizeof(*r));
    if (!r)
        return -1;
    d->recs = r;
    size_t *a = realloc(d->data_off, cap * sizeof(*a));
    if (!a)
        return -1;
    d->data_off = a;
    size_t *m = realloc(d->msg_off, cap * sizeof(*m));
    if (!m)
        return -1;
    d->msg_off = m;
    d->rec_cap = cap;
    return 0;
}

/* Keeps an error message for record i; on allocation failure the record keeps a generic one. */
static void keep_msg(kn__rc_decoder_t *d, size_t i, const char *msg)
{
    size_t off = d->msgs.len;
    if (kn__buf_append(&d->msgs, msg, strlen(msg) + 1) == 0)
        d->msg_off[i] = off;
}

/* Finds the content-encoding tag: *codec set, or *unknown to the tag's value if not gzip/zstd/identity. */
static bool find_encoding(const kn__agg_rec_t *r, kn__codec_t *codec, const kn__agg_tag_t **unknown)
{
    for (size_t t = 0; t < r->n_tags; t++) {
        const kn__agg_tag_t *tag = &r->tags[t];
        if (tag->key_len != TAG_KEY_LEN || strncasecmp(tag->key, KN__RC_TAG_KEY, TAG_KEY_LEN) != 0)
            continue;
        if (tag->value && tag->value_len == 8 && strncasecmp(tag->value, "identity", 8) == 0)
            return false;
        if (tag->value && kn__codec_from_name(tag->value, tag->value_len, codec) &&
            *codec != KN__CODEC_NONE)
            return true;
        *unknown = tag;
        return false;
    }
    return false;
}

kn_err_t kn__rc_decode(kn__rc_decoder_t *d, const void *data, size_t len, const char *partition_key,
                       size_t partition_key_len, const char *explicit_hash_key,
                       size_t explicit_hash_key_len, const kn__rc_decoded_t **out, kn_error_t *err)
{
    return kn__rc_decode_checked(d, data, len, partition_key, partition_key_len, explicit_hash_key,
                                 explicit_hash_key_len, false, out, err);
}

kn_err_t kn__rc_decode_checked(kn__rc_decoder_t *d, const void *data, size_t len, const char *partition_key,
                               size_t partition_key_len, const char *explicit_hash_key,
                               size_t explicit_hash_key_len, bool digest_ok, const kn__rc_decoded_t **out,
                               kn_error_t *err)
{
    kn_err_t rc = KN_ERR_OK;
    kn__rc_decoded_t *res = &d->res;
    kn_error_t *e = &d->e;
    kn__error_clear(e);
    memset(res, 0, sizeof(*res));
    *out = res;
    kn__buf_reset(&d->unwrap);
    kn__buf_reset(&d->arena);
    kn__buf_reset(&d->msgs);

    /* 1. An aggregate-scope frame, only if every check passes. */
    const void *body = data;
    size_t body_len = len;
    kn__codec_t fc = KN__CODEC_NONE;
    kn_err_t fr = kn__rc_unwrap(d->z, data, len, d->lim.max_total_bytes, &d->unwrap, &fc, e);
    if (fr == KN_ERR_NOMEM) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "decode: out of memory unwrapping a frame");
        goto out;
    }
    res->frame_codec = fc;
    if (fr == KN_ERR_OK) {
        body = d->unwrap.data;
        body_len = d->unwrap.len;
        res->decompressed_bytes = d->unwrap.len;
    } else if (fr != KN_ERR_NOT_FOUND) {
        /* Ours but unusable: deliver the record as received, with the reason. */
        res->frame_err = fr;
        if (ensure_recs(d, 1) != 0) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "decode: out of memory");
            goto out;
        }
        kn__rc_rec_t *r = &d->recs[0];
        memset(r, 0, sizeof(*r));
        r->partition_key = partition_key;
        r->partition_key_len = partition_key_len;
        r->explicit_hash_key = explicit_hash_key;
        r->explicit_hash_key_len = explicit_hash_key ? explicit_hash_key_len : 0;
        r->data = data;
        r->data_len = len;
        r->err = fr;
        d->msg_off[0] = SIZE_MAX;
        d->data_off[0] = SIZE_MAX;
        keep_msg(d, 0, kn_error_message(e));
        d->agg.count = 0;
        res->agg_reason = KN__AGG_R_PLAIN;
        res->count = 1;
        goto fixup;
    }

    /* 2. KPL deaggregation (anything else passes as one plain record). */
    /* The caller's digest check is about data; an unwrapped frame's body is checked here. */
    if (kn__agg_decode_checked(body, body_len, partition_key, partition_key_len, explicit_hash_key,
                               explicit_hash_key_len, digest_ok && body == data, &d->agg, err) != KN_ERR_OK) {
        rc = KN_ERR_NOMEM;
        goto out;
    }
    res->aggregated = d->agg.aggregated;
    res->agg_reason = d->agg.reason;
    if (ensure_recs(d, d->agg.count) != 0) {
        rc = kn__error_set(err, KN_ERR_NOMEM, "decode: out of memory for %zu records", d->agg.count);
        goto out;
    }

    /* 3. Record scope: decompress tagged user records within both bounds. */
    for (size_t i = 0; i < d->agg.count; i++) {
        const kn__agg_rec_t *a = &d->agg.records[i];
        kn__rc_rec_t *r = &d->recs[i];
        memset(r, 0, sizeof(*r));
        r->partition_key = a->partition_key;
        r->partition_key_len = a->partition_key_len;
        r->explicit_hash_key = a->explicit_hash_key;
        r->explicit_hash_key_len = a->explicit_hash_key_len;
        r->data = a->data;
        r->data_len = a->data_len;
        r->tags = a->tags;
        r->n_tags = a->n_tags;
        r->sub_sequence = a->sub_sequence;
        r->out_of_range = a->out_of_range;
        d->data_off[i] = SIZE_MAX;
        d->msg_off[i] = SIZE_MAX;

        kn__codec_t c = KN__CODEC_NONE;
        const kn__agg_tag_t *unknown = NULL;
        if (!find_encoding(a, &c, &unknown)) {
            if (unknown) {
                r->err = KN_ERR_NOT_SUPPORTED;
                kn__error_set(e, KN_ERR_NOT_SUPPORTED, "content-encoding \"%.*s\" is not supported",
                              unknown->value ? (int)(unknown->value_len > 64 ? 64 : unknown->value_len) : 0,
                              unknown->value ? unknown->value : "");
                keep_msg(d, i, kn_error_message(e));
            }
            continue;
        }
        size_t left = d->lim.max_total_bytes - res->decompressed_bytes;
        size_t bound = d->lim.max_record_bytes < left ? d->lim.max_record_bytes : left;
        size_t off = d->arena.len;
        kn_err_t x = kn__decompress(d->z, c, a->data, a->data_len, bound, &d->arena, e);
        if (x == KN_ERR_NOMEM) {
            rc = kn__error_set(err, KN_ERR_NOMEM, "decode: out of memory decompressing a record");
            goto out;
        }
        if (x != KN_ERR_OK) {
            r->err = x;
            kn__error_prefix(e, "user record %llu", (unsigned long long)a->sub_sequence);
            if (x == KN_ERR_TOO_LARGE && bound < d->lim.max_record_bytes)
                kn__error_prefix(e, "all records together exceed the decode limit of %zu bytes",
                                 d->lim.max_total_bytes);
            keep_msg(d, i, kn_error_message(e));
            continue;
        }
        r->codec = c;
        r->data_len = d->arena.len - off;
        d->data_off[i] = off;
        res->decompressed_bytes += r->data_len;
    }
    res->count = d->agg.count;

fixup:
    /* The arenas have stopped moving: turn offsets into pointers. */
    for (size_t i = 0; i < res->count; i++) {
        kn__rc_rec_t *r = &d->recs[i];
        if (d->data_off[i] != SIZE_MAX)
            r->data = (const unsigned char *)d->arena.data + d->data_off[i];
        if (r->err == KN_ERR_OK)
            r->err_msg = "";
        else if (d->msg_off[i] != SIZE_MAX)
            r->err_msg = d->msgs.data + d->msg_off[i];
        else
            r->err_msg = kn_err2str(r->err);
    }
    res->records = res->count ? d->recs : NULL;
out:
    if (rc != KN_ERR_OK)
        memset(res, 0, sizeof(*res));
    return rc;
}

size_t kn__rc_check_range(kn__rc_decoder_t *d, kn__hashkey_t start, kn__hashkey_t end)
{
    if (d->res.count != d->agg.count || !d->res.aggregated)
        return 0;
    size_t n = kn__agg_check_range(&d->agg, start, end);
    for (size_t i = 0; i < d->res.count; i++)
        d->recs[i].out_of_range = d->agg.records[i].out_of_range;
    return n;
}
