/*
 * agg_tool: our KPL aggregation code as a command-line filter, for the
 * interop drivers (agg_kpl_node.js) that hold it against aws-kinesis-agg.
 *
 *   agg_tool encode [--max-bytes N] [--max-count N] [--outer-key KEY]
 *                   [--no-protect-magic] IN OUT
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
 *
 *   agg_tool decode IN OUT
 *       Reads Kinesis records and writes the user records they hold
 *       (aggregates are split, anything else passes through unchanged).
 *
 * File formats (all integers unsigned 32-bit big-endian, no header):
 *   str   := u32 len | len bytes
 *   ostr  := u32 len | len bytes, or u32 0xFFFFFFFF for "absent"
 *   rec   := str partition_key | ostr explicit_hash_key | str data
 *   IN of encode, OUT of encode and IN of decode: a sequence of rec.
 *   OUT of decode: a sequence of
 *            rec | u32 sub_sequence | u32 flags (1: came out of an aggregate)
 *                | u32 n_tags | n_tags x (str key | ostr value)
 * A summary goes to stderr; exit status 0 on success, 1 on any error (with a
 * message naming the record), 2 on bad usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "buf.h"
#include "err.h"

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
} encode_opts_t;

typedef struct encode_stats_s {
    size_t user_records, kinesis_records, aggregates, wrapped, largest_aggregate;
} encode_stats_t;

/* Writes the builder's contents as one Kinesis record and empties the builder. */
static int flush(kn__agg_builder_t *b, const encode_opts_t *o, bool first_has_magic, FILE *out,
                 encode_stats_t *st)
{
    size_t count = kn__agg_builder_count(b);
    if (count == 0)
        return 0;
    kn__agg_out_t res = {KN_BUF_INIT, KN_BUF_INIT, KN_BUF_INIT, false};
    kn_error_t err = {0};
    int rc = -1;
    bool force = o->protect_magic && count == 1 && first_has_magic;
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
    if (force)
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
    if (!b) {
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
        size_t count = kn__agg_builder_count(b);
        if (count > 0 &&
            (count >= o->max_count || kn__agg_builder_size_with(b, &r) > o->max_bytes)) {
            if (flush(b, o, first_has_magic, out, &st) != 0)
                goto out;
        }
        if (kn__agg_builder_count(b) == 0)
            first_has_magic = rec.data.len >= KN__AGG_MAGIC_LEN &&
                              memcmp(rec.data.p, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN) == 0;
        kn_error_t err = {0};
        if (kn__agg_builder_add(b, &r, &err) != KN_ERR_OK) {
            fprintf(stderr, "agg_tool: user record %zu: %s (%s)\n", st.user_records, err.message,
                    kn_err2name(err.code));
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
            "magic-prefixed singles wrapped, largest aggregate %zu bytes, limit %zu)\n",
            st.user_records, st.kinesis_records, st.aggregates, st.wrapped, st.largest_aggregate,
            o->max_bytes);
    rc = 0;
out:
    if (out)
        fclose(out);
    kn__agg_builder_destroy(b);
    kn__buf_free(&in);
    return rc;
}

static int cmd_decode(const char *in_path, const char *out_path)
{
    kn_buf_t in = KN_BUF_INIT;
    FILE *out = NULL;
    kn__agg_decoded_t dec;
    memset(&dec, 0, sizeof(dec));
    int rc = 1;
    size_t n_kinesis = 0, n_user = 0, n_aggregates = 0;

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
        kn_error_t err = {0};
        if (kn__agg_decode(rec.data.p, rec.data.len, (const char *)rec.pk.p, rec.pk.len,
                           rec.has_ehk ? (const char *)rec.ehk.p : NULL, rec.ehk.len, &dec,
                           &err) != KN_ERR_OK) {
            fprintf(stderr, "agg_tool: Kinesis record %zu: %s\n", n_kinesis, err.message);
            goto out;
        }
        if (dec.aggregated)
            n_aggregates++;
        for (size_t i = 0; i < dec.count; i++) {
            const kn__agg_rec_t *u = &dec.records[i];
            int w = put_str(out, u->partition_key, u->partition_key_len) |
                    put_ostr(out, u->explicit_hash_key, u->explicit_hash_key_len) |
                    put_str(out, u->data, u->data_len) |
                    put_u32(out, (uint32_t)u->sub_sequence) | put_u32(out, dec.aggregated ? 1u : 0u) |
                    put_u32(out, (uint32_t)u->n_tags);
            for (size_t t = 0; t < u->n_tags; t++)
                w |= put_str(out, u->tags[t].key, u->tags[t].key_len) |
                     put_ostr(out, u->tags[t].value, u->tags[t].value_len);
            if (w != 0) {
                fprintf(stderr, "agg_tool: cannot write the output: %s\n", strerror(errno));
                goto out;
            }
            n_user++;
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
    fprintf(stderr, "agg_tool decode: %zu Kinesis records (%zu aggregates) -> %zu user records\n",
            n_kinesis, n_aggregates, n_user);
    rc = 0;
out:
    if (out)
        fclose(out);
    kn__agg_decoded_free(&dec);
    kn__buf_free(&in);
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: agg_tool encode [--max-bytes N] [--max-count N] [--outer-key KEY] "
                    "[--no-protect-magic] IN OUT\n"
                    "       agg_tool decode IN OUT\n");
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
    encode_opts_t o = {KN__AGG_DEFAULT_MAX_BYTES, SIZE_MAX, "a", true};
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
        return cmd_decode(paths[0], paths[1]);
    return usage();
}
