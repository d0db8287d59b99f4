/*
 * Writes seed inputs for the aggregation and compression fuzz targets into a
 * directory, built with our own encoder so they are valid and reach deep:
 *   seedgen TARGET DIR      (an unknown TARGET writes nothing and succeeds)
 * Each file starts with the target's selector byte (see the target's comment).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg.h"
#include "buf.h"
#include "compress.h"
#include "err.h"
#include "record_codec.h"

static const char *dir;
static int n_written;

static void die(const char *what, const kn_error_t *err)
{
    fprintf(stderr, "seedgen: %s: %s\n", what, err ? err->message : "failed");
    exit(1);
}

/* Writes selector byte + bytes as DIR/gen-NAME. */
static void put(const char *name, unsigned char sel, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/gen-%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(sel, f) == EOF || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
        die(path, NULL);
    n_written++;
}

typedef struct rec_s {
    const char *pk, *ehk, *data;
    size_t data_len;
} rec_t;

static const char log_line[] =
    "{\"ts\":\"2026-11-25T22:20:05.123Z\",\"level\":\"info\",\"service\":\"checkout\","
    "\"msg\":\"order placed\",\"order_id\":48213,\"items\":3,\"latency_ms\":41}";

static const rec_t recs[] = {
    {"a", NULL, "hello", 5},
    {"b", "170141183460469231731687303715884105728", log_line, sizeof(log_line) - 1},
    {"a", NULL, "", 0},
    {"partition-key-\xc3\xa9", "0", log_line, sizeof(log_line) - 1},
    {"b", "340282366920938463463374607431768211455", "x", 1},
};
#define N_RECS (sizeof(recs) / sizeof(recs[0]))

/*
 * An aggregate of recs[0..n): plain, with a tag on the first record, or
 * with record-scope compression (codec). Appends to out.
 */
static void aggregate(kn__zctx_t *z, size_t n, int tagged, kn__codec_t codec, kn_buf_t *out)
{
    kn_error_t err;
    kn__error_clear(&err);
    kn__agg_builder_t *b = kn__agg_builder_new();
    if (!b)
        die("builder", NULL);
    kn_buf_t comp[N_RECS];
    memset(comp, 0, sizeof(comp));
    for (size_t i = 0; i < n; i++) {
        const rec_t *r = &recs[i];
        kn__agg_tag_t tags[2] = {{"source", 6, "seedgen", 7}, {"flag", 4, NULL, 0}};
        kn__agg_in_t in = {r->pk, strlen(r->pk), r->ehk, r->ehk ? strlen(r->ehk) : 0,
                           r->data, r->data_len, NULL, 0};
        if (tagged && i == 0) {
            in.tags = tags;
            in.n_tags = 2;
        }
        kn__agg_tag_t ctag;
        bool compressed = false;
        if (codec != KN__CODEC_NONE) {
            if (kn__rc_compress_record(z, codec, KN__CODEC_LEVEL_DEFAULT, r->data, r->data_len,
                                       false, &comp[i], &ctag, &compressed, &err) != KN_ERR_OK)
                die("compress record", &err);
            if (compressed) {
                in.data = comp[i].data;
                in.data_len = comp[i].len;
                in.tags = &ctag;
                in.n_tags = 1;
            }
        }
        if (kn__agg_builder_add(b, &in, &err) != KN_ERR_OK)
            die("add", &err);
    }
    kn__agg_out_t o;
    memset(&o, 0, sizeof(o));
    if (kn__agg_builder_finish(b, NULL, true, &o, &err) != KN_ERR_OK)
        die("finish", &err);
    if (kn__buf_append(out, o.data.data, o.data.len) != 0)
        die("append", NULL);
    kn__agg_out_free(&o);
    for (size_t i = 0; i < N_RECS; i++)
        kn__buf_free(&comp[i]);
    kn__agg_builder_destroy(b);
}

static void compress(kn__zctx_t *z, kn__codec_t codec, const void *p, size_t n, kn_buf_t *out)
{
    kn_error_t err;
    kn__error_clear(&err);
    if (kn__compress(z, codec, KN__CODEC_LEVEL_DEFAULT, p, n, out, &err) != KN_ERR_OK)
        die("compress", &err);
}

static void wrap(kn__zctx_t *z, kn__codec_t codec, const void *p, size_t n, kn_buf_t *out)
{
    kn_error_t err;
    kn__error_clear(&err);
    bool wrapped = false;
    if (kn__rc_wrap(z, codec, KN__CODEC_LEVEL_DEFAULT, p, n, false, out, &wrapped, &err) !=
            KN_ERR_OK ||
        !wrapped)
        die("wrap", &err);
}

static void gen_agg(kn__zctx_t *z)
{
    static const size_t counts[] = {1, 2, N_RECS};
    char name[64];
    for (size_t c = 0; c < 3; c++) {
        for (int tagged = 0; tagged < 2; tagged++) {
            kn_buf_t a = KN_BUF_INIT;
            aggregate(z, counts[c], tagged, KN__CODEC_NONE, &a);
            snprintf(name, sizeof(name), "agg-%zu-%d", counts[c], tagged);
            put(name, 0, a.data, a.len);
            /* Mode 1: the protobuf alone (the target adds magic and MD5). */
            snprintf(name, sizeof(name), "pb-%zu-%d", counts[c], tagged);
            put(name, 1 | (tagged ? 2 : 0), a.data + KN__AGG_MAGIC_LEN, a.len - KN__AGG_OVERHEAD);
            kn__buf_free(&a);
        }
    }
    put("plain", 0, "not an aggregate", 16);
    put("magic-only", 0, KN__AGG_MAGIC, KN__AGG_MAGIC_LEN);
}

static void gen_decompress(kn__zctx_t *z)
{
    static char zeros[65536];
    struct {
        const char *name;
        const void *p;
        size_t n;
    } in[] = {
        {"log", log_line, sizeof(log_line) - 1},
        {"empty", "", 0},
        {"bomb", zeros, sizeof(zeros)},
    };
    char name[64];
    for (int codec = KN__CODEC_GZIP; codec <= KN__CODEC_ZSTD; codec++) {
        unsigned char sel_codec = codec == KN__CODEC_ZSTD ? 1 : 0;
        for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
            kn_buf_t c = KN_BUF_INIT;
            compress(z, (kn__codec_t)codec, in[i].p, in[i].n, &c);
            /* Bounds: index 4 (4096) and 7 (8 MiB); the bomb passes only the large one. */
            snprintf(name, sizeof(name), "%s-%s", kn__codec_name((kn__codec_t)codec), in[i].name);
            put(name, sel_codec | 4 << 1, c.data, c.len);
            snprintf(name, sizeof(name), "%s-%s-big", kn__codec_name((kn__codec_t)codec),
                     in[i].name);
            put(name, sel_codec | 7 << 1, c.data, c.len);
            kn__buf_free(&c);
        }
        /* Two frames back to back. */
        kn_buf_t two = KN_BUF_INIT;
        compress(z, (kn__codec_t)codec, "first ", 6, &two);
        compress(z, (kn__codec_t)codec, "second", 6, &two);
        snprintf(name, sizeof(name), "%s-two-frames", kn__codec_name((kn__codec_t)codec));
        put(name, sel_codec | 4 << 1, two.data, two.len);
        kn__buf_free(&two);
    }
}

static void gen_record_decode(kn__zctx_t *z)
{
    char name[64];
    for (int codec = KN__CODEC_GZIP; codec <= KN__CODEC_ZSTD; codec++) {
        const char *cn = kn__codec_name((kn__codec_t)codec);
        unsigned char cbit = codec == KN__CODEC_ZSTD ? 4 : 0;
        /* Record scope: an aggregate of compressed, tagged records. */
        kn_buf_t a = KN_BUF_INIT;
        aggregate(z, N_RECS, 0, (kn__codec_t)codec, &a);
        snprintf(name, sizeof(name), "record-scope-%s", cn);
        put(name, 0, a.data, a.len);
        snprintf(name, sizeof(name), "record-scope-%s-pb", cn);
        put(name, 2 | cbit, a.data + KN__AGG_MAGIC_LEN, a.len - KN__AGG_OVERHEAD);
        snprintf(name, sizeof(name), "record-scope-%s-pb-framed", cn);
        put(name, 3 | cbit, a.data + KN__AGG_MAGIC_LEN, a.len - KN__AGG_OVERHEAD);
        snprintf(name, sizeof(name), "record-scope-%s-small", cn);
        put(name, 0 | 1 << 4, a.data, a.len);
        kn__buf_free(&a);

        /* Aggregate scope: a framed aggregate, and a framed raw record. */
        kn_buf_t plain = KN_BUF_INIT, f = KN_BUF_INIT;
        aggregate(z, N_RECS, 1, KN__CODEC_NONE, &plain);
        wrap(z, (kn__codec_t)codec, plain.data, plain.len, &f);
        snprintf(name, sizeof(name), "aggregate-scope-%s", cn);
        put(name, 0, f.data, f.len);
        snprintf(name, sizeof(name), "aggregate-scope-%s-pb", cn);
        put(name, 3 | cbit, plain.data + KN__AGG_MAGIC_LEN, plain.len - KN__AGG_OVERHEAD);
        /* Mode 1: declared length + payload (the target builds header and CRC). */
        kn_buf_t payload = KN_BUF_INIT;
        unsigned char be[4] = {(unsigned char)(plain.len >> 24), (unsigned char)(plain.len >> 16),
                               (unsigned char)(plain.len >> 8), (unsigned char)plain.len};
        if (kn__buf_append(&payload, be, 4) != 0)
            die("append", NULL);
        compress(z, (kn__codec_t)codec, plain.data, plain.len, &payload);
        snprintf(name, sizeof(name), "frame-payload-%s", cn);
        put(name, 1 | cbit, payload.data, payload.len);
        kn__buf_free(&payload);
        kn__buf_reset(&f);
        wrap(z, (kn__codec_t)codec, log_line, sizeof(log_line) - 1, &f);
        snprintf(name, sizeof(name), "aggregate-scope-raw-%s", cn);
        put(name, 0, f.data, f.len);
        kn__buf_free(&f);
        kn__buf_free(&plain);
    }
    put("plain", 0, log_line, sizeof(log_line) - 1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: seedgen TARGET DIR\n");
        return 2;
    }
    dir = argv[2];
    kn__zctx_t *z = kn__zctx_new();
    if (!z)
        die("zctx", NULL);
    if (strcmp(argv[1], "fuzz_agg_decode") == 0)
        gen_agg(z);
    else if (strcmp(argv[1], "fuzz_decompress") == 0)
        gen_decompress(z);
    else if (strcmp(argv[1], "fuzz_record_decode") == 0)
        gen_record_decode(z);
    kn__zctx_destroy(z);
    printf("seedgen: %d seeds for %s in %s\n", n_written, argv[1], dir);
    return 0;
}
