/*
 * Unit tests for common/format/record_codec.c: the record and aggregate compression
 * scopes over the KPL format, the consumer's decode pipeline and its bounds,
 * and pass-through of everything that is not certainly ours.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "agg.h"
#include "compress.h"
#include "record_codec.h"

#define MIB ((size_t)1 << 20)

/* One JSON log line of about 200 bytes (deterministic in i). */
static size_t json_line(size_t i, char *buf, size_t size)
{
    static const char *lvls[] = {"INFO", "WARN", "DEBUG", "ERROR"};
    static const char *paths[] = {"/api/v1/orders", "/api/v1/users/me", "/health", "/api/v2/search"};
    uint32_t x = (uint32_t)i * 2654435761u + 17u;
    unsigned r = x >> 7;
    int n = snprintf(buf, size,
                     "{\"ts\":\"2026-11-25T22:%02u:%02u.%03uZ\",\"level\":\"%s\",\"svc\":\"checkout\","
                     "\"path\":\"%s\",\"status\":%u,\"latency_ms\":%u,\"req\":\"%08x\",\"user\":\"u%05u\","
                     "\"host\":\"ip-10-0-%u-%u\",\"msg\":\"request served\"}",
                     (r >> 3) % 60, (r >> 9) % 60, r % 1000, lvls[r % 4], paths[(r >> 5) % 4],
                     200 + (r % 3) * 100, r % 900, x, (r >> 7) % 20000, (r >> 2) % 16, (r >> 11) % 250);
    assert_true(n > 0 && (size_t)n < size);
    return (size_t)n;
}

typedef struct fixture_s {
    kn__zctx_t *z;
    kn__agg_builder_t *b;
    kn__rc_decoder_t *d;
    kn_error_t *err;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->z = kn__zctx_new();
    f->b = kn__agg_builder_new();
    f->d = kn__rc_decoder_new(NULL);
    f->err = kn_error_new();
    *state = f;
    return f->z && f->b && f->d && f->err ? 0 : -1;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kn__zctx_destroy(f->z);
    kn__agg_builder_destroy(f->b);
    kn__rc_decoder_destroy(f->d);
    kn_error_destroy(f->err);
    free(f);
    return 0;
}

static const kn__rc_decoded_t *decode(fixture_t *f, const kn__agg_out_t *o)
{
    const kn__rc_decoded_t *res = NULL;
    assert_int_equal(kn__rc_decode(f->d, o->data.data, o->data.len, o->partition_key.data,
                                   o->partition_key.len,
                                   o->explicit_hash_key.len ? o->explicit_hash_key.data : NULL,
                                   o->explicit_hash_key.len, &res, f->err),
                     KN_ERR_OK);
    assert_non_null(res);
    return res;
}

static const kn__rc_decoded_t *decode_raw(fixture_t *f, const void *p, size_t n)
{
    const kn__rc_decoded_t *res = NULL;
    assert_int_equal(kn__rc_decode(f->d, p, n, "pk", 2, NULL, 0, &res, f->err), KN_ERR_OK);
    return res;
}

/* Adds record i (JSON line, key "user-<i%7>", an explicit hash key on every 5th) compressed in record scope. */
static void add_record_scope(fixture_t *f, kn__codec_t c, size_t i, const void *data, size_t len)
{
    char pk[32];
    snprintf(pk, sizeof(pk), "user-%zu", i % 7);
    kn_buf_t comp = KN_BUF_INIT;
    kn__agg_tag_t tag;
    bool compressed = false;
    assert_int_equal(kn__rc_compress_record(f->z, c, 0, data, len, false, &comp, &tag, &compressed, f->err),
                     KN_ERR_OK);
    assert_true(compressed);
    assert_string_equal(tag.key, "content-encoding");
    assert_string_equal(tag.value, kn__codec_name(c));
    kn__agg_in_t in = {.partition_key = pk, .partition_key_len = strlen(pk),
                       .explicit_hash_key = i % 5 == 0 ? "1234567890123456789" : NULL,
                       .explicit_hash_key_len = i % 5 == 0 ? 19 : 0,
                       .data = comp.data, .data_len = comp.len, .tags = &tag, .n_tags = 1};
    assert_int_equal(kn__agg_builder_add(f->b, &in, f->err), KN_ERR_OK);
    kn__buf_free(&comp);
}

/* ----------------------------------------------------------- record scope */

/*
 * Record scope: every user record comes back with its keys and bytes; the
 * aggregate is a normal KPL aggregate whose records carry the tag and
 * standard frames (what any KPL deaggregator plus any gzip/zstd library sees).
 */
static void test_record_scope_roundtrip(void **state)
{
    fixture_t *f = *state;
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn__agg_builder_reset(f->b);
        char line[512];
        for (size_t i = 0; i < 200; i++) {
            size_t n = json_line(i, line, sizeof(line));
            add_record_scope(f, c, i, line, i == 3 ? 0 : n); /* one empty record */
        }
        kn__agg_out_t o = KN__AGG_OUT_INIT;
        assert_int_equal(kn__agg_builder_finish(f->b, NULL, true, &o, f->err), KN_ERR_OK);
        assert_true(o.aggregated);

        /* What a plain KPL deaggregator sees. */
        kn__agg_decoded_t plain = KN__AGG_DECODED_INIT;
        assert_int_equal(kn__agg_decode(o.data.data, o.data.len, "a", 1, NULL, 0, &plain, f->err), KN_ERR_OK);
        assert_true(plain.aggregated);
        assert_int_equal(plain.count, 200);
        for (size_t i = 0; i < plain.count; i++) {
            assert_int_equal(plain.records[i].n_tags, 1);
            assert_memory_equal(plain.records[i].tags[0].key, "content-encoding", 16);
            assert_memory_equal(plain.records[i].tags[0].value, kn__codec_name(c), 4);
            assert_true(kn__codec_sniff(c, plain.records[i].data, plain.records[i].data_len));
            kn_buf_t back = KN_BUF_INIT;
            assert_int_equal(kn__decompress(f->z, c, plain.records[i].data, plain.records[i].data_len,
                                            1024, &back, f->err),
                             KN_ERR_OK);
            size_t n = json_line(i, line, sizeof(line));
            assert_int_equal(back.len, i == 3 ? 0 : n);
            kn__buf_free(&back);
        }
        kn__agg_decoded_free(&plain);

        /* Our pipeline. */
        const kn__rc_decoded_t *res = decode(f, &o);
        assert_true(res->aggregated);
        assert_int_equal(res->frame_codec, KN__CODEC_NONE);
        assert_int_equal(res->count, 200);
        for (size_t i = 0; i < res->count; i++) {
            const kn__rc_rec_t *r = &res->records[i];
            char pk[32];
            snprintf(pk, sizeof(pk), "user-%zu", i % 7);
            size_t n = i == 3 ? 0 : json_line(i, line, sizeof(line));
            assert_int_equal(r->err, KN_ERR_OK);
            assert_string_equal(r->err_msg, "");
            assert_int_equal(r->codec, c);
            assert_int_equal(r->sub_sequence, i);
            assert_int_equal(r->partition_key_len, strlen(pk));
            assert_memory_equal(r->partition_key, pk, strlen(pk));
            if (i % 5 == 0) {
                assert_int_equal(r->explicit_hash_key_len, 19);
                assert_memory_equal(r->explicit_hash_key, "1234567890123456789", 19);
            } else {
                assert_null(r->explicit_hash_key);
            }
            assert_int_equal(r->data_len, n);
            assert_memory_equal(r->data, line, n);
        }
        kn__agg_out_free(&o);
    }
}

/*
 * A lone record in record scope is sent as a one-record aggregate
 * (force_aggregate), so its tag survives; the raw form would lose it.
 */
static void test_record_scope_single_record_is_aggregated(void **state)
{
    fixture_t *f = *state;
    kn__agg_builder_reset(f->b);
    char line[512];
    size_t n = json_line(42, line, sizeof(line));
    add_record_scope(f, KN__CODEC_ZSTD, 1, line, n);
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, true, &o, f->err), KN_ERR_OK);
    assert_true(o.aggregated);
    assert_true(kn__agg_is_aggregate(o.data.data, o.data.len));
    const kn__rc_decoded_t *res = decode(f, &o);
    assert_int_equal(res->count, 1);
    assert_int_equal(res->records[0].codec, KN__CODEC_ZSTD);
    assert_int_equal(res->records[0].data_len, n);
    assert_memory_equal(res->records[0].data, line, n);
    assert_memory_equal(res->records[0].partition_key, "user-1", 6);
    kn__agg_out_free(&o);
}

/* Short records do not shrink: with only_if_smaller they stay as they are, untagged, and decode unchanged. */
static void test_record_scope_only_if_smaller(void **state)
{
    fixture_t *f = *state;
    kn_buf_t comp = KN_BUF_INIT;
    kn__agg_tag_t tag = {0};
    bool compressed = true;
    assert_int_equal(kn__rc_compress_record(f->z, KN__CODEC_GZIP, 0, "hello", 5, true, &comp, &tag,
                                            &compressed, f->err),
                     KN_ERR_OK);
    assert_false(compressed);
    assert_int_equal(comp.len, 0);
    assert_null(tag.key);
    char big[4096];
    memset(big, 'a', sizeof(big));
    assert_int_equal(kn__rc_compress_record(f->z, KN__CODEC_GZIP, 0, big, sizeof(big), true, &comp, &tag,
                                            &compressed, f->err),
                     KN_ERR_OK);
    assert_true(compressed);
    assert_true(comp.len < 100);
    /* The tag cost is the exact serialised size of the Tag field. */
    assert_int_equal(kn__rc_tag_cost(KN__CODEC_GZIP), 26);
    kn__agg_in_t with = {.partition_key = "k", .partition_key_len = 1, .data = "x", .data_len = 1,
                         .tags = &tag, .n_tags = 1};
    kn__agg_in_t without = with;
    without.tags = NULL;
    without.n_tags = 0;
    kn__agg_builder_reset(f->b);
    assert_int_equal(kn__agg_builder_size_with(f->b, &with) - kn__agg_builder_size_with(f->b, &without),
                     kn__rc_tag_cost(KN__CODEC_GZIP));
    kn__buf_free(&comp);
}

/* Untagged records pass unchanged even when their data is a gzip file of the user's own. */
static void test_record_scope_untagged_gzip_data_is_not_touched(void **state)
{
    fixture_t *f = *state;
    kn_buf_t gz = KN_BUF_INIT;
    assert_int_equal(kn__compress(f->z, KN__CODEC_GZIP, 0, "my own file", 11, &gz, f->err), KN_ERR_OK);
    kn__agg_builder_reset(f->b);
    kn__agg_in_t a = {.partition_key = "k1", .partition_key_len = 2, .data = gz.data, .data_len = gz.len};
    kn__agg_in_t b = {.partition_key = "k2", .partition_key_len = 2, .data = "plain", .data_len = 5};
    assert_int_equal(kn__agg_builder_add(f->b, &a, f->err), KN_ERR_OK);
    assert_int_equal(kn__agg_builder_add(f->b, &b, f->err), KN_ERR_OK);
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, false, &o, f->err), KN_ERR_OK);
    const kn__rc_decoded_t *res = decode(f, &o);
    assert_int_equal(res->count, 2);
    assert_int_equal(res->records[0].codec, KN__CODEC_NONE);
    assert_int_equal(res->records[0].err, KN_ERR_OK);
    assert_int_equal(res->records[0].data_len, gz.len);
    assert_memory_equal(res->records[0].data, gz.data, gz.len);
    assert_memory_equal(res->records[1].data, "plain", 5);
    kn__agg_out_free(&o);

    /* The same file as a plain (unaggregated) record. */
    res = decode_raw(f, gz.data, gz.len);
    assert_int_equal(res->count, 1);
    assert_false(res->aggregated);
    assert_int_equal(res->frame_codec, KN__CODEC_NONE);
    assert_int_equal(res->records[0].data_len, gz.len);
    assert_ptr_equal(res->records[0].data, (const unsigned char *)gz.data);
    kn__buf_free(&gz);
}

/* Bad tagged records are reported on the record, delivered as received; their neighbours decode. */
static void test_record_scope_errors_are_per_record(void **state)
{
    fixture_t *f = *state;
    kn__rc_decoder_t *d = kn__rc_decoder_new(&(kn__rc_limits_t){.max_record_bytes = 64 * 1024,
                                                                 .max_total_bytes = 200 * 1024});
    kn__agg_builder_reset(f->b);
    static char zeros[100 * 1024];
    kn_buf_t bomb = KN_BUF_INIT, good = KN_BUF_INIT;
    assert_int_equal(kn__compress(f->z, KN__CODEC_ZSTD, 0, zeros, sizeof(zeros), &bomb, f->err), KN_ERR_OK);
    assert_int_equal(kn__compress(f->z, KN__CODEC_GZIP, 0, zeros, 60 * 1024, &good, f->err), KN_ERR_OK);
    const kn__agg_tag_t gz = {"content-encoding", 16, "gzip", 4};
    const kn__agg_tag_t zs = {"Content-Encoding", 16, "ZSTD", 4}; /* case does not matter */
    const kn__agg_tag_t br = {"content-encoding", 16, "br", 2};
    const kn__agg_tag_t id = {"content-encoding", 16, "identity", 8};
    const kn__agg_tag_t other = {"trace-id", 8, "abc", 3};
    struct {
        const void *data;
        size_t len;
        const kn__agg_tag_t *tag;
        kn_err_t want;
    } v[] = {
        {good.data, good.len, &gz, KN_ERR_OK},           /* 0: 60 KiB */
        {bomb.data, bomb.len, &zs, KN_ERR_TOO_LARGE},    /* 1: over the per-record bound */
        {"not gzip at all", 15, &gz, KN_ERR_BAD_RESPONSE}, /* 2: corrupt */
        {"brotli?", 7, &br, KN_ERR_NOT_SUPPORTED},        /* 3: unknown encoding */
        {"as is", 5, &id, KN_ERR_OK},                      /* 4: identity */
        {"tagged otherwise", 16, &other, KN_ERR_OK},       /* 5: another tag */
        {good.data, good.len, &gz, KN_ERR_OK},           /* 6: 120 KiB in all */
        {good.data, good.len, &gz, KN_ERR_OK},           /* 7: 180 KiB in all */
        {good.data, good.len, &gz, KN_ERR_TOO_LARGE},    /* 8: would pass the 200 KiB total */
    };
    size_t nv = sizeof(v) / sizeof(v[0]);
    for (size_t i = 0; i < nv; i++) {
        kn__agg_in_t in = {.partition_key = "k", .partition_key_len = 1, .data = v[i].data,
                           .data_len = v[i].len, .tags = v[i].tag, .n_tags = 1};
        assert_int_equal(kn__agg_builder_add(f->b, &in, f->err), KN_ERR_OK);
    }
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, false, &o, f->err), KN_ERR_OK);
    const kn__rc_decoded_t *res = NULL;
    assert_int_equal(kn__rc_decode(d, o.data.data, o.data.len, "a", 1, NULL, 0, &res, f->err), KN_ERR_OK);
    assert_int_equal(res->count, nv);
    for (size_t i = 0; i < nv; i++) {
        const kn__rc_rec_t *r = &res->records[i];
        print_message("record %zu: %s %s\n", i, kn_err2name(r->err), r->err_msg);
        assert_int_equal(r->err, v[i].want);
        if (v[i].want != KN_ERR_OK) {
            /* Delivered as received, with a message that says why. */
            assert_int_equal(r->codec, KN__CODEC_NONE);
            assert_int_equal(r->data_len, v[i].len);
            assert_memory_equal(r->data, v[i].data, v[i].len);
            assert_true(strlen(r->err_msg) > 10);
        } else if (v[i].tag == &gz) {
            assert_int_equal(r->data_len, 60 * 1024);
            assert_memory_equal(r->data, zeros, 60 * 1024);
        } else {
            assert_int_equal(r->data_len, v[i].len);
        }
    }
    assert_non_null(strstr(res->records[1].err_msg, "zstd"));
    assert_non_null(strstr(res->records[2].err_msg, "gzip"));
    assert_non_null(strstr(res->records[3].err_msg, "\"br\""));
    assert_non_null(strstr(res->records[8].err_msg, "all records together"));
    assert_true(res->decompressed_bytes <= 200 * 1024);
    kn__agg_out_free(&o);
    kn__buf_free(&bomb);
    kn__buf_free(&good);
    kn__rc_decoder_destroy(d);
}

/* -------------------------------------------------------- aggregate scope */

static void build_plain_aggregate(fixture_t *f, size_t n, kn__agg_out_t *o)
{
    char line[512];
    kn__agg_builder_reset(f->b);
    for (size_t i = 0; i < n; i++) {
        char pk[32];
        snprintf(pk, sizeof(pk), "user-%zu", i % 7);
        size_t len = json_line(i, line, sizeof(line));
        kn__agg_in_t in = {.partition_key = pk, .partition_key_len = strlen(pk), .data = line,
                           .data_len = len};
        assert_int_equal(kn__agg_builder_add(f->b, &in, f->err), KN_ERR_OK);
    }
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, false, o, f->err), KN_ERR_OK);
}

static void test_aggregate_scope_roundtrip(void **state)
{
    fixture_t *f = *state;
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    build_plain_aggregate(f, 150, &o);
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn_buf_t frame = KN_BUF_INIT;
        bool wrapped = false;
        assert_int_equal(kn__rc_wrap(f->z, c, 0, o.data.data, o.data.len, true, &frame, &wrapped, f->err),
                         KN_ERR_OK);
        assert_true(wrapped);
        assert_true(frame.len < o.data.len / 3);
        /* The documented layout. */
        const unsigned char *p = (const unsigned char *)frame.data;
        assert_memory_equal(p, "\xF4KNZ", 4);
        assert_int_equal(p[4], 1);
        assert_int_equal(p[5], c == KN__CODEC_GZIP ? 1 : 2);
        assert_int_equal(p[6] | p[7], 0);
        assert_int_equal((size_t)p[8] << 24 | (size_t)p[9] << 16 | (size_t)p[10] << 8 | p[11], o.data.len);
        assert_true(kn__codec_sniff(c, p + 12, frame.len - 16));
        uint32_t crc = (uint32_t)crc32(0, p, (uInt)frame.len - 4);
        const unsigned char *t = p + frame.len - 4;
        assert_int_equal((uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3], crc);

        const kn__rc_decoded_t *res = NULL;
        assert_int_equal(kn__rc_decode(f->d, frame.data, frame.len, o.partition_key.data, o.partition_key.len,
                                       o.explicit_hash_key.data, o.explicit_hash_key.len, &res, f->err),
                         KN_ERR_OK);
        assert_int_equal(res->frame_codec, c);
        assert_int_equal(res->frame_err, KN_ERR_OK);
        assert_true(res->aggregated);
        assert_int_equal(res->decompressed_bytes, o.data.len);
        assert_int_equal(res->count, 150);
        char line[512];
        for (size_t i = 0; i < res->count; i++) {
            size_t len = json_line(i, line, sizeof(line));
            assert_int_equal(res->records[i].err, KN_ERR_OK);
            assert_int_equal(res->records[i].codec, KN__CODEC_NONE);
            assert_int_equal(res->records[i].sub_sequence, i);
            assert_int_equal(res->records[i].data_len, len);
            assert_memory_equal(res->records[i].data, line, len);
        }
        kn__buf_free(&frame);
    }
    kn__agg_out_free(&o);
}

/* Aggregation off: one raw record (empty, small, 1 MiB) in a frame comes back with the outer keys. */
static void test_aggregate_scope_raw_record(void **state)
{
    fixture_t *f = *state;
    kn_buf_t big = KN_BUF_INIT;
    char line[512];
    for (size_t i = 0; big.len < MIB; i++) {
        size_t n = json_line(i, line, sizeof(line));
        assert_int_equal(kn__buf_append(&big, line, n), 0);
        assert_int_equal(kn__buf_putc(&big, '\n'), 0);
    }
    big.len = MIB;
    const size_t sizes[] = {0, 1, 200, MIB};
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            kn_buf_t frame = KN_BUF_INIT;
            bool wrapped = false;
            assert_int_equal(kn__rc_wrap(f->z, c, 0, big.data, sizes[s], false, &frame, &wrapped, f->err),
                             KN_ERR_OK);
            assert_true(wrapped);
            assert_true(kn__rc_is_frame(frame.data, frame.len));
            const kn__rc_decoded_t *res = NULL;
            assert_int_equal(kn__rc_decode(f->d, frame.data, frame.len, "my-key", 6, "42", 2, &res, f->err),
                             KN_ERR_OK);
            assert_int_equal(res->frame_codec, c);
            assert_false(res->aggregated);
            assert_int_equal(res->count, 1);
            assert_int_equal(res->records[0].err, KN_ERR_OK);
            assert_int_equal(res->records[0].data_len, sizes[s]);
            if (sizes[s])
                assert_memory_equal(res->records[0].data, big.data, sizes[s]);
            assert_memory_equal(res->records[0].partition_key, "my-key", 6);
            assert_memory_equal(res->records[0].explicit_hash_key, "42", 2);
            kn__buf_free(&frame);
        }
    }
    kn__buf_free(&big);
}

/* A 1 MiB user record in record scope, both codecs. */
static void test_record_scope_1mib(void **state)
{
    fixture_t *f = *state;
    kn_buf_t big = KN_BUF_INIT;
    char line[512];
    for (size_t i = 0; big.len < MIB; i++)
        assert_int_equal(kn__buf_append(&big, line, json_line(i, line, sizeof(line))), 0);
    big.len = MIB;
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn__agg_builder_reset(f->b);
        add_record_scope(f, c, 0, big.data, big.len);
        add_record_scope(f, c, 1, "tail", 4);
        kn__agg_out_t o = KN__AGG_OUT_INIT;
        assert_int_equal(kn__agg_builder_finish(f->b, NULL, true, &o, f->err), KN_ERR_OK);
        assert_true(o.data.len < MIB / 3);
        const kn__rc_decoded_t *res = decode(f, &o);
        assert_int_equal(res->count, 2);
        assert_int_equal(res->records[0].data_len, MIB);
        assert_memory_equal(res->records[0].data, big.data, MIB);
        assert_int_equal(res->records[1].data_len, 4);
        assert_memory_equal(res->records[1].data, "tail", 4);
        kn__agg_out_free(&o);
    }
    kn__buf_free(&big);
}

/* Incompressible data is not worth a frame: sent as it is (unless it looks like a frame itself). */
static void test_wrap_only_if_smaller(void **state)
{
    fixture_t *f = *state;
    unsigned char rnd[2000];
    uint32_t x = 5;
    for (size_t i = 0; i < sizeof(rnd); i++) {
        x = x * 1664525u + 1013904223u;
        rnd[i] = (unsigned char)(x >> 24);
    }
    kn_buf_t frame = KN_BUF_INIT;
    bool wrapped = true;
    assert_int_equal(kn__rc_wrap(f->z, KN__CODEC_ZSTD, 0, rnd, sizeof(rnd), true, &frame, &wrapped, f->err),
                     KN_ERR_OK);
    assert_false(wrapped);
    assert_int_equal(frame.len, 0);
    /* Bytes that pass frame detection are wrapped even though it does not pay, and come back exact. */
    kn_buf_t inner = KN_BUF_INIT;
    assert_int_equal(kn__rc_wrap(f->z, KN__CODEC_GZIP, 0, rnd, 20, false, &inner, &wrapped, f->err), KN_ERR_OK);
    assert_true(wrapped);
    assert_int_equal(kn__rc_wrap(f->z, KN__CODEC_GZIP, 0, inner.data, inner.len, true, &frame, &wrapped,
                                 f->err),
                     KN_ERR_OK);
    assert_true(wrapped);
    const kn__rc_decoded_t *res = decode_raw(f, frame.data, frame.len);
    assert_int_equal(res->count, 1);
    assert_int_equal(res->records[0].data_len, inner.len);
    assert_memory_equal(res->records[0].data, inner.data, inner.len);
    kn__buf_free(&frame);
    kn__buf_free(&inner);
}

/* One flipped byte anywhere (header, payload, CRC), or any truncation: the record passes unchanged. */
static void test_aggregate_scope_any_damage_passes_through(void **state)
{
    fixture_t *f = *state;
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    build_plain_aggregate(f, 20, &o);
    for (kn__codec_t c = KN__CODEC_GZIP; c <= KN__CODEC_ZSTD; c++) {
        kn_buf_t frame = KN_BUF_INIT, bad = KN_BUF_INIT;
        bool wrapped = false;
        assert_int_equal(kn__rc_wrap(f->z, c, 0, o.data.data, o.data.len, false, &frame, &wrapped, f->err),
                         KN_ERR_OK);
        for (size_t pos = 0; pos < frame.len; pos++) {
            static const unsigned char flips[] = {0x01, 0x80, 0xff};
            for (size_t k = 0; k < sizeof(flips); k++) {
                kn__buf_reset(&bad);
                assert_int_equal(kn__buf_append(&bad, frame.data, frame.len), 0);
                bad.data[pos] ^= (char)flips[k];
                const kn__rc_decoded_t *res = decode_raw(f, bad.data, bad.len);
                if (res->frame_codec != KN__CODEC_NONE || res->count != 1 || res->records[0].err != KN_ERR_OK)
                    fail_msg("%s frame, byte %zu ^ 0x%02x: not passed through", kn__codec_name(c), pos,
                             flips[k]);
                assert_false(res->aggregated);
                assert_int_equal(res->records[0].data_len, bad.len);
                assert_memory_equal(res->records[0].data, bad.data, bad.len);
            }
        }
        for (size_t cut = 0; cut < frame.len; cut++) {
            const kn__rc_decoded_t *res = decode_raw(f, frame.data, cut);
            assert_int_equal(res->frame_codec, KN__CODEC_NONE);
            assert_int_equal(res->count, 1);
            assert_int_equal(res->records[0].data_len, cut);
        }
        /* Extra bytes appended: the CRC no longer sits at the end. */
        kn__buf_reset(&bad);
        assert_int_equal(kn__buf_append(&bad, frame.data, frame.len), 0);
        assert_int_equal(kn__buf_puts(&bad, "x"), 0);
        assert_int_equal(decode_raw(f, bad.data, bad.len)->frame_codec, KN__CODEC_NONE);
        kn__buf_free(&frame);
        kn__buf_free(&bad);
    }
    kn__agg_out_free(&o);
}

/* User data that starts with our marker (and even a plausible header) is delivered unchanged. */
static void test_user_data_with_marker_passes(void **state)
{
    fixture_t *f = *state;
    static const char *samples[] = {
        "\xF4KNZ",
        "\xF4KNZ hello world, this is my data",
        "\xF4KNZ\x01\x01\x00\x00\x00\x00\x00\x05 payload-bytes crc!",
        "\xF4KNZ\x01\x02\x00\x00\x00\x00\x00\x05\x28\xb5\x2f\xfd\x00\x00\x00\x00",
    };
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        size_t n = strlen(samples[i]);
        if (i == 3)
            n = 20;
        assert_false(kn__rc_is_frame(samples[i], n));
        const kn__rc_decoded_t *res = decode_raw(f, samples[i], n);
        assert_int_equal(res->frame_codec, KN__CODEC_NONE);
        assert_int_equal(res->count, 1);
        assert_int_equal(res->records[0].err, KN_ERR_OK);
        assert_int_equal(res->records[0].data_len, n);
        assert_ptr_equal(res->records[0].data, (const unsigned char *)samples[i]);
    }
    /* And inside an aggregate, as a user record's data. */
    kn__agg_builder_reset(f->b);
    kn__agg_in_t a = {.partition_key = "k", .partition_key_len = 1, .data = samples[2],
                      .data_len = strlen(samples[2])};
    assert_int_equal(kn__agg_builder_add(f->b, &a, f->err), KN_ERR_OK);
    assert_int_equal(kn__agg_builder_add(f->b, &a, f->err), KN_ERR_OK);
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, false, &o, f->err), KN_ERR_OK);
    const kn__rc_decoded_t *res = decode(f, &o);
    assert_int_equal(res->count, 2);
    assert_memory_equal(res->records[1].data, samples[2], strlen(samples[2]));
    kn__agg_out_free(&o);
}

/* Builds a frame with a valid CRC around the given payload and declared length. */
static void forge_frame(kn_buf_t *b, unsigned codec, uint32_t declared, const void *payload, size_t n)
{
    unsigned char h[12] = {0xF4, 'K', 'N', 'Z', 1, (unsigned char)codec, 0, 0,
                           (unsigned char)(declared >> 24), (unsigned char)(declared >> 16),
                           (unsigned char)(declared >> 8), (unsigned char)declared};
    kn__buf_reset(b);
    assert_int_equal(kn__buf_append(b, h, sizeof(h)), 0);
    assert_int_equal(kn__buf_append(b, payload, n), 0);
    uint32_t crc = (uint32_t)crc32(0, (const unsigned char *)b->data, (uInt)b->len);
    unsigned char t[4] = {(unsigned char)(crc >> 24), (unsigned char)(crc >> 16), (unsigned char)(crc >> 8),
                          (unsigned char)crc};
    assert_int_equal(kn__buf_append(b, t, 4), 0);
}

/*
 * A frame that passes every check but cannot be unwrapped (a bomb over the
 * bound, a corrupt payload, a wrong declared length) is reported and the
 * Kinesis record delivered as received.
 */
static void test_aggregate_scope_frame_errors_are_reported(void **state)
{
    fixture_t *f = *state;
    kn__rc_decoder_t *d = kn__rc_decoder_new(&(kn__rc_limits_t){.max_total_bytes = MIB});
    kn_buf_t frame = KN_BUF_INIT, payload = KN_BUF_INIT;
    static char zeros[4 * 1024 * 1024];
    struct {
        kn__codec_t c;
        uint32_t declared;
        size_t real;
        bool garble;
        kn_err_t want;
    } v[] = {
        {KN__CODEC_ZSTD, sizeof(zeros), sizeof(zeros), false, KN_ERR_TOO_LARGE}, /* declares > bound */
        {KN__CODEC_GZIP, 1000, sizeof(zeros), false, KN_ERR_BAD_RESPONSE},      /* lies: holds more */
        {KN__CODEC_GZIP, 1000, 999, false, KN_ERR_BAD_RESPONSE},                /* holds less */
        {KN__CODEC_ZSTD, 1000, 1000, true, KN_ERR_BAD_RESPONSE},                /* corrupt payload */
        {KN__CODEC_GZIP, 1000, 1000, false, KN_ERR_OK},                         /* control */
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        kn__buf_reset(&payload);
        assert_int_equal(kn__compress(f->z, v[i].c, 0, zeros, v[i].real, &payload, f->err), KN_ERR_OK);
        if (v[i].garble)
            payload.data[payload.len / 2] ^= 0x55;
        forge_frame(&frame, v[i].c == KN__CODEC_GZIP ? 1 : 2, v[i].declared, payload.data, payload.len);
        const kn__rc_decoded_t *res = NULL;
        assert_int_equal(kn__rc_decode(d, frame.data, frame.len, "pk", 2, NULL, 0, &res, f->err), KN_ERR_OK);
        assert_int_equal(res->frame_codec, v[i].c);
        assert_int_equal(res->frame_err, v[i].want);
        assert_int_equal(res->count, 1);
        assert_int_equal(res->records[0].err, v[i].want);
        print_message("forged frame %zu: %s %s\n", i, kn_err2name(res->frame_err), res->records[0].err_msg);
        if (v[i].want == KN_ERR_OK) {
            assert_int_equal(res->records[0].data_len, v[i].real);
        } else {
            assert_int_equal(res->records[0].data_len, frame.len);
            assert_memory_equal(res->records[0].data, frame.data, frame.len);
            assert_non_null(strstr(res->records[0].err_msg, kn__codec_name(v[i].c)));
            assert_true(res->decompressed_bytes == 0);
        }
    }
    kn__buf_free(&frame);
    kn__buf_free(&payload);
    kn__rc_decoder_destroy(d);
}

/* ------------------------------------------ interop: aws-kinesis-agg reads record scope */

/*
 * The npm aws-kinesis-agg deaggregator (with MD5 verification) reads a
 * record-scope aggregate, and Node's zlib.gunzipSync decompresses every
 * user record's data. Skipped when node or the package is missing.
 */
static void test_record_scope_read_by_aws_kinesis_agg(void **state)
{
    fixture_t *f = *state;
    const char *root = getenv("KN_SOURCE_ROOT");
    char mod[1024], cmd[4096], path[64], outp[80];
    snprintf(mod, sizeof(mod), "%s/tests/servers/node_modules/aws-kinesis-agg", root ? root : ".");
    if (system("command -v node >/dev/null 2>&1") != 0 || access(mod, R_OK) != 0) {
        print_message("node or aws-kinesis-agg not available: skipped\n");
        skip();
    }
    kn__agg_builder_reset(f->b);
    char line[512];
    kn_buf_t want = KN_BUF_INIT;
    for (size_t i = 0; i < 300; i++) {
        size_t n = json_line(i, line, sizeof(line));
        add_record_scope(f, KN__CODEC_GZIP, i, line, n);
        assert_int_equal(kn__buf_append(&want, line, n), 0);
        assert_int_equal(kn__buf_putc(&want, '\n'), 0);
    }
    kn__agg_out_t o = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(f->b, NULL, true, &o, f->err), KN_ERR_OK);
    snprintf(path, sizeof(path), "/tmp/kn_rc_%d.bin", (int)getpid());
    snprintf(outp, sizeof(outp), "/tmp/kn_rc_%d.out", (int)getpid());
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(o.data.data, 1, o.data.len, fp), o.data.len);
    fclose(fp);
    snprintf(cmd, sizeof(cmd),
             "node -e '"
             "const agg=require(process.argv[1]),fs=require(\"fs\"),zlib=require(\"zlib\");"
             "const rec={partitionKey:\"a\",sequenceNumber:\"1\",data:fs.readFileSync(process.argv[2]).toString(\"base64\")};"
             "agg.deaggregateSync(rec,true,(err,recs)=>{if(err)throw err;"
             "let out=\"\";for(const r of recs)out+=zlib.gunzipSync(Buffer.from(r.data,\"base64\")).toString()+\"\\n\";"
             "fs.writeFileSync(process.argv[3],out);});' '%s' '%s' '%s'",
             mod, path, outp);
    assert_int_equal(system(cmd), 0);
    fp = fopen(outp, "rb");
    assert_non_null(fp);
    kn_buf_t got = KN_BUF_INIT;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        assert_int_equal(kn__buf_append(&got, tmp, n), 0);
    fclose(fp);
    unlink(path);
    unlink(outp);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    kn__buf_free(&got);
    kn__buf_free(&want);
    kn__agg_out_free(&o);
}

/* ---------------------------------------------------------- ratio figures */

/*
 * Not asserted beyond sanity: prints the ratio of each scope on 1000 JSON log
 * lines of ~200 bytes in 50 KiB aggregates (the benchmark proper lives in
 * tests/bench/).
 */
static void test_print_compression_ratios(void **state)
{
    fixture_t *f = *state;
    enum { N = 1000 };
    static char lines[N][320];
    static size_t lens[N];
    size_t raw_total = 0;
    for (size_t i = 0; i < N; i++) {
        lens[i] = json_line(i, lines[i], sizeof(lines[i]));
        raw_total += lens[i];
    }
    const char *names[] = {"none", "record/gzip", "record/zstd", "record/gzip(only-if-smaller)",
                           "aggregate/gzip", "aggregate/zstd"};
    size_t plain_bytes = 0;
    for (int mode = 0; mode < 6; mode++) {
        kn__codec_t c = (mode == 1 || mode == 3 || mode == 4) ? KN__CODEC_GZIP : KN__CODEC_ZSTD;
        bool rec_scope = mode >= 1 && mode <= 3;
        size_t sent = 0, kinesis_records = 0;
        kn__agg_builder_reset(f->b);
        kn_buf_t comp = KN_BUF_INIT, frame = KN_BUF_INIT;
        for (size_t i = 0; i <= N; i++) {
            kn__agg_in_t in = {0};
            kn__agg_tag_t tag;
            char pk[16];
            if (i < N) {
                snprintf(pk, sizeof(pk), "k%zu", i % 13);
                in.partition_key = pk;
                in.partition_key_len = strlen(pk);
                in.data = lines[i];
                in.data_len = lens[i];
                if (rec_scope) {
                    bool compressed = false;
                    kn__buf_reset(&comp);
                    assert_int_equal(kn__rc_compress_record(f->z, c, 0, lines[i], lens[i], mode == 3, &comp,
                                                            &tag, &compressed, f->err),
                                     KN_ERR_OK);
                    if (compressed) {
                        in.data = comp.data;
                        in.data_len = comp.len;
                        in.tags = &tag;
                        in.n_tags = 1;
                    }
                }
                kn_err_t r = kn__agg_builder_try_add(f->b, &in, KN__AGG_DEFAULT_MAX_BYTES, 0, f->err);
                if (r == KN_ERR_OK)
                    continue;
                assert_int_equal(r, KN_ERR_TOO_LARGE);
            }
            if (kn__agg_builder_count(f->b) == 0)
                break;
            kn__agg_out_t o = KN__AGG_OUT_INIT;
            assert_int_equal(kn__agg_builder_finish(f->b, NULL, rec_scope, &o, f->err), KN_ERR_OK);
            if (mode >= 4) {
                bool wrapped = false;
                kn__buf_reset(&frame);
                assert_int_equal(kn__rc_wrap(f->z, c, 0, o.data.data, o.data.len, true, &frame, &wrapped,
                                             f->err),
                                 KN_ERR_OK);
                sent += wrapped ? frame.len : o.data.len;
            } else {
                sent += o.data.len;
            }
            kinesis_records++;
            kn__agg_out_free(&o);
            kn__agg_builder_reset(f->b);
            if (i < N)
                assert_int_equal(kn__agg_builder_add(f->b, &in, f->err), KN_ERR_OK);
        }
        if (mode == 0)
            plain_bytes = sent;
        print_message("scope %-30s %4zu records, %7zu user bytes -> %7zu bytes in %zu Kinesis records: "
                      "%.2fx vs uncompressed aggregates\n",
                      names[mode], (size_t)N, raw_total, sent, kinesis_records,
                      (double)plain_bytes / (double)sent);
        if (mode >= 4)
            assert_true(sent < plain_bytes / 3);
        kn__buf_free(&comp);
        kn__buf_free(&frame);
    }
}

static void test_scope_names(void **state)
{
    (void)state;
    kn__rc_scope_t s;
    assert_true(kn__rc_scope_from_name("record", 6, &s));
    assert_int_equal(s, KN__RC_SCOPE_RECORD);
    assert_true(kn__rc_scope_from_name("AGGREGATE", 9, &s));
    assert_int_equal(s, KN__RC_SCOPE_AGGREGATE);
    assert_false(kn__rc_scope_from_name("frame", 5, &s));
    assert_string_equal(kn__rc_scope_name(KN__RC_SCOPE_RECORD), "record");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_record_scope_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_single_record_is_aggregated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_only_if_smaller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_untagged_gzip_data_is_not_touched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_errors_are_per_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_1mib, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate_scope_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate_scope_raw_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap_only_if_smaller, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate_scope_any_damage_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_user_data_with_marker_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_aggregate_scope_frame_errors_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_scope_read_by_aws_kinesis_agg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_print_compression_ratios, setup, teardown),
        cmocka_unit_test(test_scope_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
