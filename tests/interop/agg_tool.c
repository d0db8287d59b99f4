/*
 * agg_tool: our KPL aggregation code as a command-line filter, for the
 * interop drivers (agg_kpl_node.js) that hold it against aws-kinesis-agg.
 *
 *   agg_tool encode [--max-bytes N] [--max-count N] [--outer-key KEY]
 *                   [--no-protect-magic] [--compress gzip|zstd [--compress-all]] IN OUT
 *       Reads user records from IN and writes the Kinesis records to send,
 *       aggregating greedily in input order: a record joins the current
 *       aggregate when the aggregate's exact size with it stays within
 *       --max-bytes (default 51200, the KPL's AggregationMaxSize) and its
 *       count within --max-count (default unlimited); otherwise the current
 *       aggregate is written and a new one starts with the record. A
 *       container of one record is written raw with the user's own keys,
 *       except (unless --no-protect-magic) when its data starts with the KPL
 *       magic: such a record is wrapped in a one-record aggregate, because
 *       deaggregators that only look at the magic (aws-kinesis-agg) would
 *       otherwise fail on it. Aggregates get the outer partition key
 *       (default "a") and the first record's hash key as explicit hash key.
 *       --compress: record-scope compression (record_codec.h): each record's
 *       data becomes a gzip or zstd frame tagged content-encoding, only when
 *       that makes it smaller unless --compress-all, and every container is
 *       an aggregate (tags exist only inside one).
 *
 *   agg_tool decode [--decompress] IN OUT
 *       Reads Kinesis records and writes the user records they hold
 *       (aggregates are split, anything else passes through unchanged).
 *       --decompress: through the full consumer decoder (record_codec.h):
 *       aggregate-scope frames unwrapped, tagged records decompressed.
 *
 *   agg_tool unzstd IN OUT
 *       Reads records and writes them back with their data decompressed by
 *       libzstd's one-shot ZSTD_decompress (not our codec code): an
 *       independent check that our zstd frames are standard.
 *
 * File formats (all integers unsigned 32-bit big-endian, no header):
 *   str   := u32 len | len bytes
 *   ostr  := u32 len | len bytes, or u32 0xFFFFFFFF for "absent"
 *   rec   := str partition_key | ostr explicit_hash_key | str data
 *   IN of encode, OUT of encode and IN of decode: a sequence of rec.
 *   OUT of decode: a sequence of
 *            rec | u32 sub_sequence | u32 flags | u32 n_tags | n_tags x (str key | ostr value)
 *          flags: 1 came out of an aggregate, 2 data was decompressed (record
 *          scope), 4 decoding failed (data as received), 8 the Kinesis record
 *          was an aggregate-scope frame; bits 8-11 the record-scope codec.
 * A summary goes to stderr; exit status 0 on success, 1 on any error (with a
 * message naming the record), 2 on bad usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "agg.h"
#include "buf.h"
#include "compress.h"
#include "err.h"
#include "record_codec.h"

#define ABSENT 0xFFFFFFFFu

typedef struct view_s {
    const unsigned char *p;
    size_t len;
} view_t;

/* One input record: views into the input file. */
typedef struct rec_s {
    view_t pk;
    view_t ehk;
    bool has_ehk;
    view_t data;
} rec_t;

typedef struct reader_s {
    const unsigned char *p;
    size_t len, off;
} reader_t;

static int read_file(const char *path, kn_buf_t *out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "agg_tool: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (kn__buf_append(out, chunk, n) != 0) {
            fprintf(stderr, "agg_tool: out of memory reading %s\n", path);
            rc = -1;
            goto out;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "agg_tool: cannot read %s: %s\n", path, strerror(errno));
        rc = -1;
    }
out:
    fclose(f);
    return rc;
}

static int get_u32(reader_t *r, uint32_t *v)
{
    if (r->len - r->off < 4)
        return -1;
    const unsigned char *p = r->p + r->off;
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    r->off += 4;
    return 0;
}

/* A str (optional == false) or an ostr; *present tells which for an ostr. */
static int get_str(reader_t *r, bool optional, view_t *v, bool *present)
{
    uint32_t n;
    if (get_u32(r, &n) != 0)
        return -1;
    if (optional && n == ABSENT) {
        v->p = NULL;
        v->len = 0;
        *present = false;
        return 0;
    }
    if (r->len - r->off < n)
        return -1;
    v->p = r->p + r->off;
    v->len = n;
    r->off += n;
    if (present)
        *present = true;
    return 0;
}

/* 1: a record was read, 0: clean end of input, -1: truncated input. */
static int get_rec(reader_t *r, rec_t *rec)
{
    if (r->off == r->len)
        return 0;
    if (get_str(r, false, &rec->pk, NULL) != 0 || get_str(r, true, &rec->ehk, &rec->has_ehk) != 0 ||
        get_str(r, false, &rec->data, NULL) != 0)
        return -1;
    return 1;
}

static int put_u32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

static int put_str(FILE *f, const void *p, size_t len)
{
    if (len >= ABSENT || put_u32(f, (uint32_t)len) != 0)
        return -1;
    return len == 0 || fwrite(p, 1, len, f) == len ? 0 : -1;
}

static int put_ostr(FILE *f, const void *p, size_t len)
{
    if (!p)
        return put_u32(f, ABSENT);
    return put_str(f, p, len);
}

typedef struct encode_opts_s {
    size_t max_bytes;
    size_t max_count;
    const char *outer_key;
    bool protect_magic;
    kn__codec_t codec; /* record-scope compression; NONE: off */
    bool compress_all;
} encode_opts_t;

typedef struct encode_stats_s {
    size_t user_records, kinesis_records, aggregates, wrapped, largest_aggregate, compressed;
} encode_stats_t;

/* Writes the builder's contents as one Kinesis record and empties the builder. */
static int flush(kn__agg_builder_t *b, const encode_opts_t *o, bool first_has_magic, FILE *out,
                 encode_stats_t *st)
{
    size_t count = kn__agg_builder_count(b);
    if (count == 0)
        return 0;
    kn__agg_out_t res = KN__AGG_OUT_INIT;
    kn_error_t err = {0};
    int rc = -1;
    bool force = count == 1 && ((o->protect_magic && first_has_magic) || o->codec != KN__CODEC_NONE);
    if (kn__agg_builder_finish(b, o->outer_key, force, &res, &err) != KN_ERR_OK) {
        fprintf(stderr, "agg_tool: finishing the aggregate before user record %zu failed: %s\n",
                st->user_records, err.message);
        goto out;
    }
    if (put_str(out, res.partition_key.data, res.partition_key.len) != 0 ||
        put_ostr(out, res.explicit_hash_key.len ? res.explicit_hash_key.data : NULL,
                 res.explicit_hash_key.len) != 0 ||
        put_str(out, res.data.data, res.data.len) != 0) {
        fprintf(stderr, "agg_tool: cannot write the output: %s\n", strerror(errno));
        goto out;
    }
    st->kinesis_records++;
    if (res.aggregated) {
        st->aggregates++;
        if (res.data.len > st->largest_aggregate)
            st->largest_aggregate = res.data.len;
    }
    if (force && o->codec == KN__CODEC_NONE)
        st->wrapped++;
    kn__agg_builder_reset(b);
    rc = 0;
out:
    kn__agg_out_free(&res);
    return rc;
}

static int cmd_encode(const encode_opts_t *o, const char *in_path, const char *out_path)
{
    kn_buf_t in = KN_BUF_INIT;
    FILE *out = NULL;
    kn__agg_builder_t *b = NULL;
    kn__zctx_t *z = NULL;
    kn_buf_t cbuf = KN_BUF_INIT;
    encode_stats_t st = {0};
    int rc = 1;
    bool first_has_magic = false;

    if (read_file(in_path, &in) != 0)
        goto out;
    out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "agg_tool: cannot create %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    b = kn__agg_builder_new();
    z = kn__zctx_new();
    if (!b || !z) {
        fprintf(stderr, "agg_tool: out of memory\n");
        goto out;
    }
    reader_t rd = {(const unsigned char *)in.data, in.len, 0};
    rec_t rec;
    int got;
    while ((got = get_rec(&rd, &rec)) == 1) {
        kn__agg_in_t r = {
            .partition_key = (const char *)rec.pk.p,
            .partition_key_len = rec.pk.len,
            .explicit_hash_key = rec.has_ehk ? (const char *)rec.ehk.p : NULL,
            .explicit_hash_key_len = rec.ehk.len,
            .data = rec.data.p,
            .data_len = rec.data.len,
        };
        kn_error_t err = {0};
        kn__agg_tag_t tag;
        if (o->codec != KN__CODEC_NONE) {
            bool done = false;
            kn__buf_reset(&cbuf);
            if (kn__rc_compress_record(z, o->codec, KN__CODEC_LEVEL_DEFAULT, rec.data.p, rec.data.len,
                                       !o->compress_all, &cbuf, &tag, &done, &err) != KN_ERR_OK) {
                fprintf(stderr, "agg_tool: user record %zu: %s\n", st.user_records, err.message);
                goto out;
            }
            if (done) {
                r.data = cbuf.data;
                r.data_len = cbuf.len;
                r.tags = &tag;
                r.n_tags = 1;
                st.compressed++;
            }
        }
        /* Greedy: into the current aggregate if it fits, else the aggregate goes out first. */
        size_t max_count = o->max_count == SIZE_MAX ? 0 : o->max_count;
        kn_err_t e = kn__agg_builder_count(b) == 0
                         ? KN_ERR_TOO_LARGE
                         : kn__agg_builder_try_add(b, &r, o->max_bytes, max_count, &err);
        if (e == KN_ERR_TOO_LARGE) {
            if (flush(b, o, first_has_magic, out, &st) != 0)
                goto out;
            first_has_magic = rec.data.len >= KN__AGG_MAGIC_LEN &&
                              memcmp(rec.data.p, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0;
            e = kn__agg_builder_add(b, &r, &err);
        }
        if (e != KN_ERR_OK) {
            fprintf(stderr, "agg_tool: user record %zu: %s (%s)\n", st.user_records, err.message,
                    kn_err2name(e));
            goto out;
        }
        st.user_records++;
    }
    if (got < 0) {
        fprintf(stderr, "agg_tool: %s: truncated record at byte %zu (record %zu)\n", in_path, rd.off,
                st.user_records);
        goto out;
    }
    if (flush(b, o, first_has_magic, out, &st) != 0)
        goto out;
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "agg_tool: cannot write %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    out = NULL;
    fprintf(stderr,
            "agg_tool encode: %zu user records -> %zu Kinesis records (%zu aggregates, %zu "
            "magic-prefixed singles wrapped, largest aggregate %zu bytes, limit %zu; %zu records "
            "compressed with %s)\n",
            st.user_records, st.kinesis_records, st.aggregates, st.wrapped, st.largest_aggregate,
            o->max_bytes, st.compressed, kn__codec_name(o->codec));
    rc = 0;
out:
    if (out)
        fclose(out);
    kn__zctx_destroy(z);
    kn__buf_free(&cbuf);
    kn__agg_builder_destroy(b);
    kn__buf_free(&in);
    return rc;
}

/* One decoded user record in the decode output format. */
static int put_decoded(FILE *out, const char *pk, size_t pk_len, const char *ehk, size_t ehk_len,
                       const void *data, size_t data_len, uint64_t sub_sequence, uint32_t flags,
                       const kn__agg_tag_t *tags, size_t n_tags)
{
    int w = put_str(out, pk, pk_len) | put_ostr(out, ehk, ehk_len) | put_str(out, data, data_len) |
            put_u32(out, (uint32_t)sub_sequence) | put_u32(out, flags) | put_u32(out, (uint32_t)n_tags);
    for (size_t t = 0; t < n_tags; t++)
        w |= put_str(out, tags[t].key, tags[t].key_len) | put_ostr(out, tags[t].value, tags[t].value_len);
    return w;
}

static int cmd_decode(bool decompress, const char *in_path, const char *out_path)
{
    kn_buf_t in = KN_BUF_INIT;
    FILE *out = NULL;
    kn__agg_decoded_t dec = KN__AGG_DECODED_INIT;
    kn__rc_decoder_t *rcd = NULL;
    int rc = 1;
    size_t n_kinesis = 0, n_user = 0, n_aggregates = 0, n_decompressed = 0, n_failed = 0;

    if (read_file(in_path, &in) != 0)
        goto out;
    out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "agg_tool: cannot create %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    if (decompress && !(rcd = kn__rc_decoder_new(NULL))) {
        fprintf(stderr, "agg_tool: out of memory\n");
        goto out;
    }
    reader_t rd = {(const unsigned char *)in.data, in.len, 0};
    rec_t rec;
    int got;
    while ((got = get_rec(&rd, &rec)) == 1) {
        kn_error_t err = {0};
        const char *ehk = rec.has_ehk ? (const char *)rec.ehk.p : NULL;
        int w = 0;
        if (rcd) {
            const kn__rc_decoded_t *d = NULL;
            if (kn__rc_decode(rcd, rec.data.p, rec.data.len, (const char *)rec.pk.p, rec.pk.len, ehk,
                              rec.ehk.len, &d, &err) != KN_ERR_OK) {
                fprintf(stderr, "agg_tool: Kinesis record %zu: %s\n", n_kinesis, err.message);
                goto out;
            }
            n_aggregates += d->aggregated;
            for (size_t i = 0; i < d->count; i++) {
                const kn__rc_rec_t *u = &d->records[i];
                uint32_t flags = (d->aggregated ? 1u : 0u) | (u->codec != KN__CODEC_NONE ? 2u : 0u) |
                                 (u->err != KN_ERR_OK ? 4u : 0u) |
                                 (d->frame_codec != KN__CODEC_NONE ? 8u : 0u) | (uint32_t)u->codec << 8;
                if (u->err != KN_ERR_OK) {
                    n_failed++;
                    fprintf(stderr, "agg_tool: Kinesis record %zu, user record %zu: %s\n", n_kinesis, i,
                            u->err_msg);
                }
                n_decompressed += u->codec != KN__CODEC_NONE;
                w |= put_decoded(out, u->partition_key, u->partition_key_len, u->explicit_hash_key,
                                 u->explicit_hash_key_len, u->data, u->data_len, u->sub_sequence, flags,
                                 u->tags, u->n_tags);
            }
            n_user += d->count;
        } else {
            if (kn__agg_decode(rec.data.p, rec.data.len, (const char *)rec.pk.p, rec.pk.len, ehk,
                               rec.ehk.len, &dec, &err) != KN_ERR_OK) {
                fprintf(stderr, "agg_tool: Kinesis record %zu: %s\n", n_kinesis, err.message);
                goto out;
            }
            n_aggregates += dec.aggregated;
            for (size_t i = 0; i < dec.count; i++) {
                const kn__agg_rec_t *u = &dec.records[i];
                w |= put_decoded(out, u->partition_key, u->partition_key_len, u->explicit_hash_key,
                                 u->explicit_hash_key_len, u->data, u->data_len, u->sub_sequence,
                                 dec.aggregated ? 1u : 0u, u->tags, u->n_tags);
            }
            n_user += dec.count;
        }
        if (w != 0) {
            fprintf(stderr, "agg_tool: cannot write the output: %s\n", strerror(errno));
            goto out;
        }
        n_kinesis++;
    }
    if (got < 0) {
        fprintf(stderr, "agg_tool: %s: truncated record at byte %zu (record %zu)\n", in_path, rd.off,
                n_kinesis);
        goto out;
    }
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "agg_tool: cannot write %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    out = NULL;
    fprintf(stderr,
            "agg_tool decode: %zu Kinesis records (%zu aggregates) -> %zu user records (%zu "
            "decompressed, %zu failed)\n",
            n_kinesis, n_aggregates, n_user, n_decompressed, n_failed);
    rc = 0;
out:
    if (out)
        fclose(out);
    kn__rc_decoder_destroy(rcd);
    kn__agg_decoded_free(&dec);
    kn__buf_free(&in);
    return rc;
}

/* libzstd's own one-shot decoder on every record's data (bounded at 64 MiB per record). */
static int cmd_unzstd(const char *in_path, const char *out_path)
{
    kn_buf_t in = KN_BUF_INIT;
    FILE *out = NULL;
    void *dst = NULL;
    int rc = 1;
    size_t n = 0;

    if (read_file(in_path, &in) != 0)
        goto out;
    out = fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "agg_tool: cannot create %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    reader_t rd = {(const unsigned char *)in.data, in.len, 0};
    rec_t rec;
    int got;
    while ((got = get_rec(&rd, &rec)) == 1) {
        unsigned long long size = ZSTD_getFrameContentSize(rec.data.p, rec.data.len);
        if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (64u << 20)) {
            fprintf(stderr, "agg_tool: record %zu: not a zstd frame with a content size (%llu)\n", n, size);
            goto out;
        }
        free(dst);
        dst = malloc(size ? size : 1);
        if (!dst) {
            fprintf(stderr, "agg_tool: out of memory\n");
            goto out;
        }
        size_t r = ZSTD_decompress(dst, size, rec.data.p, rec.data.len);
        if (ZSTD_isError(r) || r != size) {
            fprintf(stderr, "agg_tool: record %zu: ZSTD_decompress: %s\n", n,
                    ZSTD_isError(r) ? ZSTD_getErrorName(r) : "short output");
            goto out;
        }
        if (put_str(out, rec.pk.p, rec.pk.len) != 0 ||
            put_ostr(out, rec.has_ehk ? rec.ehk.p : NULL, rec.ehk.len) != 0 || put_str(out, dst, r) != 0) {
            fprintf(stderr, "agg_tool: cannot write the output: %s\n", strerror(errno));
            goto out;
        }
        n++;
    }
    if (got < 0) {
        fprintf(stderr, "agg_tool: %s: truncated record at byte %zu (record %zu)\n", in_path, rd.off, n);
        goto out;
    }
    if (fclose(out) != 0) {
        out = NULL;
        fprintf(stderr, "agg_tool: cannot write %s: %s\n", out_path, strerror(errno));
        goto out;
    }
    out = NULL;
    rc = 0;
out:
    if (out)
        fclose(out);
    free(dst);
    kn__buf_free(&in);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: agg_tool encode [--max-bytes N] [--max-count N] [--outer-key KEY] "
                    "[--no-protect-magic] [--compress gzip|zstd [--compress-all]] IN OUT\n"
                    "       agg_tool decode [--decompress] IN OUT\n"
                    "       agg_tool unzstd IN OUT\n");
    return 2;
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || s[0] == '-')
        return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    encode_opts_t o = {KN__AGG_DEFAULT_MAX_BYTES, SIZE_MAX, KN__AGG_DEFAULT_OUTER_PARTITION_KEY, true,
                       KN__CODEC_NONE, false};
    bool decompress = false;
    const char *paths[2];
    int n_paths = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--max-bytes") == 0 && has_val) {
            if (parse_size(argv[++i], &o.max_bytes) != 0)
                return usage();
        } else if (strcmp(a, "--max-count") == 0 && has_val) {
            if (parse_size(argv[++i], &o.max_count) != 0)
                return usage();
        } else if (strcmp(a, "--outer-key") == 0 && has_val) {
            o.outer_key = argv[++i];
        } else if (strcmp(a, "--no-protect-magic") == 0) {
            o.protect_magic = false;
        } else if (strcmp(a, "--compress") == 0 && has_val) {
            const char *c = argv[++i];
            if (!kn__codec_from_name(c, strlen(c), &o.codec))
                return usage();
        } else if (strcmp(a, "--compress-all") == 0) {
            o.compress_all = true;
        } else if (strcmp(a, "--decompress") == 0) {
            decompress = true;
        } else if (a[0] == '-' && a[1]) {
            return usage();
        } else if (n_paths < 2) {
            paths[n_paths++] = a;
        } else {
            return usage();
        }
    }
    if (n_paths != 2)
        return usage();
    if (strcmp(cmd, "encode") == 0)
        return cmd_encode(&o, paths[0], paths[1]);
    if (strcmp(cmd, "decode") == 0)
        return cmd_decode(decompress, paths[0], paths[1]);
    if (strcmp(cmd, "unzstd") == 0)
        return cmd_unzstd(paths[0], paths[1]);
    return usage();
}
