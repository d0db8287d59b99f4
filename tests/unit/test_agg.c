/*
 * Unit tests for the KPL aggregation format (common/format/agg_encode.c, agg_decode.c):
 * hand-checked byte vectors, exact incremental size accounting, round trips,
 * and hostile input for the decoder (every failure passes through unchanged).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agg.h"
#include "md5.h"

/* ------------------------------------------------------------ helpers */

/* A small byte writer for building protobuf by hand in tests. */
typedef struct bb_s {
    unsigned char b[1 << 16];
    size_t n;
} bb_t;

static void bb_byte(bb_t *w, unsigned v) { w->b[w->n++] = (unsigned char)v; }
static void bb_mem(bb_t *w, const void *p, size_t n)
{
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void bb_varint(bb_t *w, uint64_t v)
{
    while (v >= 0x80) {
        bb_byte(w, (unsigned)(v & 0x7F) | 0x80);
        v >>= 7;
    }
    bb_byte(w, (unsigned)v);
}
/* Length-delimited field: tag, length, bytes. */
static void bb_ld(bb_t *w, unsigned field, const void *p, size_t n)
{
    bb_varint(w, field << 3 | 2);
    bb_varint(w, n);
    bb_mem(w, p, n);
}
static void bb_vi(bb_t *w, unsigned field, uint64_t v)
{
    bb_varint(w, field << 3 | 0);
    bb_varint(w, v);
}

/* magic + pb + MD5(pb), into a malloc'd buffer. */
static unsigned char *wrap(const void *pb, size_t n, size_t *out_len)
{
    unsigned char *o = malloc(n + KN__AGG_OVERHEAD + 1);
    memcpy(o, KN__AGG_MAGIC, 4);
    if (n)
        memcpy(o + 4, pb, n);
    kn__md5(pb, n, o + 4 + n);
    *out_len = n + KN__AGG_OVERHEAD;
    return o;
}

static kn__agg_in_t rec_in(const char *pk, const char *ehk, const char *data)
{
    kn__agg_in_t r;
    memset(&r, 0, sizeof(r));
    r.partition_key = pk;
    r.partition_key_len = strlen(pk);
    r.explicit_hash_key = ehk;
    r.explicit_hash_key_len = ehk ? strlen(ehk) : 0;
    r.data = data;
    r.data_len = strlen(data);
    return r;
}

/* Adds r after checking that size_with() predicted exactly the size that follows. */
static void add_checked(kn__agg_builder_t *b, const kn__agg_in_t *r)
{
    size_t predicted = kn__agg_builder_size_with(b, r);
    size_t n = kn__agg_builder_count(b);
    kn_error_t *err = calloc(1, sizeof(*err));
    assert_int_equal(kn__agg_builder_add(b, r, err), KN_ERR_OK);
    free(err);
    assert_int_equal(kn__agg_builder_size(b), predicted);
    assert_int_equal(kn__agg_builder_count(b), n + 1);
}

/* Finishes as an aggregate and checks the length against size(). */
static void finish_agg(const kn__agg_builder_t *b, const char *outer, kn__agg_out_t *out)
{
    assert_int_equal(kn__agg_builder_finish(b, outer, true, out, NULL), KN_ERR_OK);
    assert_true(out->aggregated);
    assert_int_equal(out->data.len, kn__agg_builder_size(b));
}

static void assert_mem(const void *a, size_t alen, const void *b, size_t blen)
{
    assert_int_equal(alen, blen);
    if (alen)
        assert_memory_equal(a, b, alen);
}

/* The whole output equals magic + expected protobuf + MD5(expected protobuf). */
static void assert_aggregate_bytes(const kn__agg_out_t *out, const unsigned char *pb, size_t pb_len)
{
    size_t n;
    unsigned char *want = wrap(pb, pb_len, &n);
    assert_mem(out->data.data, out->data.len, want, n);
    free(want);
}

/* Decodes and expects a pass-through with the given reason. */
static void expect_passthrough(const void *data, size_t len, kn__agg_reason_t why)
{
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(data, len, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_false(d.aggregated);
    if (d.reason != why)
        fail_msg("reason %s, expected %s", kn__agg_reason_name(d.reason), kn__agg_reason_name(why));
    assert_int_equal(d.count, 1);
    assert_ptr_equal(d.records[0].data, data);
    assert_int_equal(d.records[0].data_len, len);
    assert_mem(d.records[0].partition_key, d.records[0].partition_key_len, "pk", 2);
    assert_int_equal(d.records[0].sub_sequence, 0);
    assert_int_equal(d.records[0].n_tags, 0);
    kn__agg_decoded_free(&d);
}

/* Wraps pb and expects a pass-through with the given reason. */
static void expect_pb_passthrough(const bb_t *w, kn__agg_reason_t why)
{
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    expect_passthrough(a, n, why);
    free(a);
}

static uint64_t rng_state = 0x853c49e6748fea9bull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* ------------------------------------------------------------ encoder */

static void test_empty_builder(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    assert_non_null(b);
    assert_int_equal(kn__agg_builder_count(b), 0);
    assert_int_equal(kn__agg_builder_size(b), KN__AGG_OVERHEAD);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    kn_error_t *err = calloc(1, sizeof(*err));
    assert_int_equal(kn__agg_builder_finish(b, NULL, false, &out, err), KN_ERR_STATE);
    assert_int_equal(kn__agg_builder_finish(b, NULL, true, &out, err), KN_ERR_STATE);
    assert_int_equal(out.data.len, 0);
    assert_non_null(strstr(err->message, "no records"));
    free(err);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
    kn__agg_builder_destroy(NULL);
}

/* One record is sent raw with its own keys; forced, it is a one-record aggregate. */
static void test_single_record_raw(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r = rec_in("key", NULL, "hello");
    add_checked(b, &r);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, "outer", false, &out, NULL), KN_ERR_OK);
    assert_false(out.aggregated);
    assert_mem(out.data.data, out.data.len, "hello", 5);
    assert_mem(out.partition_key.data, out.partition_key.len, "key", 3);
    assert_int_equal(out.explicit_hash_key.len, 0);
    kn__agg_out_free(&out);

    /* With an explicit hash key, given with leading zeros: sent canonical. */
    kn__agg_builder_reset(b);
    r = rec_in("key", "000123", "hello");
    add_checked(b, &r);
    kn__agg_out_t out2 = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, NULL, false, &out2, NULL), KN_ERR_OK);
    assert_false(out2.aggregated);
    assert_mem(out2.data.data, out2.data.len, "hello", 5);
    assert_string_equal(out2.explicit_hash_key.data, "123");
    kn__agg_out_free(&out2);

    /* Empty data is a valid record. */
    kn__agg_builder_reset(b);
    r = rec_in("key", NULL, "");
    add_checked(b, &r);
    kn__agg_out_t out3 = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, NULL, false, &out3, NULL), KN_ERR_OK);
    assert_int_equal(out3.data.len, 0);
    kn__agg_out_free(&out3);
    kn__agg_builder_destroy(b);
}

/* One record forced into an aggregate, byte by byte. */
static void test_vector_one_record_forced(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r = rec_in("key", NULL, "hello");
    add_checked(b, &r);
    static const unsigned char pb[] = {
        0x0A, 0x03, 'k', 'e', 'y',             /* field 1 (pk table), LEN 3, "key" */
        0x1A, 0x09,                            /* field 3 (record), LEN 9 */
        0x08, 0x00,                            /*   Record.1 pk index, varint 0 */
        0x1A, 0x05, 'h', 'e', 'l', 'l', 'o',   /*   Record.3 data, LEN 5, "hello" */
    };
    assert_int_equal(kn__agg_builder_size(b), KN__AGG_OVERHEAD + sizeof(pb));
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    assert_aggregate_bytes(&out, pb, sizeof(pb));
    assert_string_equal(out.partition_key.data, "a"); /* the KPL's outer key */
    /* Outer explicit hash key: MD5("key") as a decimal. */
    char dec[KN__HASHKEY_STRLEN];
    kn__hashkey_format(kn__hashkey_from_partition_key("key", 3), dec);
    assert_string_equal(out.explicit_hash_key.data, dec);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
}

/* Two records, two keys; then shared keys de-duplicated. */
static void test_vector_many_and_shared_keys(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r1 = rec_in("a", NULL, "x");
    kn__agg_in_t r2 = rec_in("bb", NULL, "yz");
    kn__agg_in_t r3 = rec_in("a", NULL, "");
    add_checked(b, &r1);
    add_checked(b, &r2);
    add_checked(b, &r3);
    static const unsigned char pb[] = {
        0x0A, 0x01, 'a',            /* pk table [0] = "a" */
        0x0A, 0x02, 'b', 'b',       /* pk table [1] = "bb" (no entry for the repeated "a") */
        0x1A, 0x05,                 /* record 0, LEN 5 */
        0x08, 0x00,                 /*   pk index 0 */
        0x1A, 0x01, 'x',            /*   data "x" */
        0x1A, 0x06,                 /* record 1, LEN 6 */
        0x08, 0x01,                 /*   pk index 1 */
        0x1A, 0x02, 'y', 'z',       /*   data "yz" */
        0x1A, 0x04,                 /* record 2, LEN 4 */
        0x08, 0x00,                 /*   pk index 0 (shared with record 0) */
        0x1A, 0x00,                 /*   data "" (present: required) */
    };
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, "outer-key", &out);
    assert_aggregate_bytes(&out, pb, sizeof(pb));
    assert_string_equal(out.partition_key.data, "outer-key");
    char dec[KN__HASHKEY_STRLEN];
    kn__hashkey_format(kn__hashkey_from_partition_key("a", 1), dec);
    assert_string_equal(out.explicit_hash_key.data, dec);

    /* Not forced: the same aggregate (2+ records). */
    kn__agg_out_t out2 = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, NULL, false, &out2, NULL), KN_ERR_OK);
    assert_true(out2.aggregated);
    assert_mem(out2.data.data, out2.data.len, out.data.data, out.data.len);
    assert_string_equal(out2.partition_key.data, "a");
    kn__agg_out_free(&out);
    kn__agg_out_free(&out2);

    /* Reset empties the tables: the same records give the same bytes. */
    kn__agg_builder_reset(b);
    assert_int_equal(kn__agg_builder_size(b), KN__AGG_OVERHEAD);
    add_checked(b, &r1);
    add_checked(b, &r2);
    add_checked(b, &r3);
    kn__agg_out_t out3 = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out3);
    assert_aggregate_bytes(&out3, pb, sizeof(pb));
    kn__agg_out_free(&out3);
    kn__agg_builder_destroy(b);
}

/* Explicit hash keys: own table, de-duplicated, canonical, validated; outer key = the first record's. */
static void test_vector_explicit_hash_keys(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r1 = rec_in("p", "42", "1");
    kn__agg_in_t r2 = rec_in("p", NULL, "2");
    kn__agg_in_t r3 = rec_in("q", "0042", "3"); /* same key as r1 once canonical */
    kn__agg_in_t r4 = rec_in("q", "0", "4");
    add_checked(b, &r1);
    add_checked(b, &r2);
    add_checked(b, &r3);
    add_checked(b, &r4);
    static const unsigned char pb[] = {
        0x0A, 0x01, 'p',        /* pk table [0] = "p" */
        0x0A, 0x01, 'q',        /* pk table [1] = "q" */
        0x12, 0x02, '4', '2',   /* field 2 (ehk table) [0] = "42" */
        0x12, 0x01, '0',        /* ehk table [1] = "0" */
        0x1A, 0x07,             /* record 0, LEN 7 */
        0x08, 0x00,             /*   pk index 0 */
        0x10, 0x00,             /*   Record.2 ehk index, varint 0 */
        0x1A, 0x01, '1',        /*   data "1" */
        0x1A, 0x05,             /* record 1, LEN 5: no ehk index (optional, absent) */
        0x08, 0x00,             /*   pk index 0 */
        0x1A, 0x01, '2',        /*   data "2" */
        0x1A, 0x07,             /* record 2, LEN 7 */
        0x08, 0x01,             /*   pk index 1 */
        0x10, 0x00,             /*   ehk index 0 ("0042" == "42") */
        0x1A, 0x01, '3',        /*   data "3" */
        0x1A, 0x07,             /* record 3, LEN 7 */
        0x08, 0x01,             /*   pk index 1 */
        0x10, 0x01,             /*   ehk index 1 */
        0x1A, 0x01, '4',        /*   data "4" */
    };
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    assert_aggregate_bytes(&out, pb, sizeof(pb));
    assert_string_equal(out.explicit_hash_key.data, "42");
    kn__agg_out_free(&out);

    /* Invalid explicit hash keys are refused and leave the builder unchanged. */
    static const char *bad[] = {"abc", "-1", "1.5", " 1", "340282366920938463463374607431768211456",
                                "99999999999999999999999999999999999999999"};
    size_t before = kn__agg_builder_size(b);
    kn_error_t *err = calloc(1, sizeof(*err));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        kn__agg_in_t r = rec_in("p", bad[i], "x");
        assert_int_equal(kn__agg_builder_size_with(b, &r), SIZE_MAX);
        assert_int_equal(kn__agg_builder_add(b, &r, err), KN_ERR_INVALID_ARG);
        assert_non_null(strstr(err->message, "explicit hash key"));
    }
    assert_int_equal(kn__agg_builder_size(b), before);
    assert_int_equal(kn__agg_builder_count(b), 4);
    /* The largest valid key; a zero-length key counts as none. */
    kn__agg_in_t mx = rec_in("p", "340282366920938463463374607431768211455", "x");
    add_checked(b, &mx);
    kn__agg_in_t none = rec_in("p", "", "x");
    add_checked(b, &none);
    free(err);
    kn__agg_builder_destroy(b);
}

/* Tags (Record field 4), key only and key + value. */
static void test_vector_tags(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_tag_t tags[2] = {{"ce", 2, "zstd", 4}, {"k", 1, NULL, 0}};
    kn__agg_in_t r1 = rec_in("a", NULL, "d");
    r1.tags = tags;
    r1.n_tags = 2;
    kn__agg_in_t r2 = rec_in("a", NULL, "e");
    add_checked(b, &r1);
    add_checked(b, &r2);
    static const unsigned char pb[] = {
        0x0A, 0x01, 'a',                        /* pk table [0] = "a" */
        0x1A, 0x16,                             /* record 0, LEN 22 */
        0x08, 0x00,                             /*   pk index 0 */
        0x1A, 0x01, 'd',                        /*   data "d" */
        0x22, 0x0A,                             /*   Record.4 tag, LEN 10 */
        0x0A, 0x02, 'c', 'e',                   /*     Tag.1 key "ce" */
        0x12, 0x04, 'z', 's', 't', 'd',         /*     Tag.2 value "zstd" */
        0x22, 0x03,                             /*   Record.4 tag, LEN 3 */
        0x0A, 0x01, 'k',                        /*     Tag.1 key "k" (no value) */
        0x1A, 0x05,                             /* record 1, LEN 5 */
        0x08, 0x00,                             /*   pk index 0 */
        0x1A, 0x01, 'e',                        /*   data "e" */
    };
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    assert_aggregate_bytes(&out, pb, sizeof(pb));

    /* And back. */
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 2);
    assert_int_equal(d.records[0].n_tags, 2);
    assert_mem(d.records[0].tags[0].key, d.records[0].tags[0].key_len, "ce", 2);
    assert_mem(d.records[0].tags[0].value, d.records[0].tags[0].value_len, "zstd", 4);
    assert_mem(d.records[0].tags[1].key, d.records[0].tags[1].key_len, "k", 1);
    assert_null(d.records[0].tags[1].value);
    assert_int_equal(d.records[1].n_tags, 0);
    kn__agg_decoded_free(&d);
    kn__agg_out_free(&out);

    /* A tag without a key is refused. */
    kn__agg_tag_t bad = {NULL, 0, "v", 1};
    kn__agg_in_t r3 = rec_in("a", NULL, "f");
    r3.tags = &bad;
    r3.n_tags = 1;
    assert_int_equal(kn__agg_builder_add(b, &r3, NULL), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__agg_builder_count(b), 2);
    kn__agg_builder_destroy(b);
}

static void test_invalid_records(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn_error_t *err = calloc(1, sizeof(*err));
    kn__agg_in_t r = rec_in("", NULL, "x");
    assert_int_equal(kn__agg_builder_size_with(b, &r), SIZE_MAX);
    assert_int_equal(kn__agg_builder_add(b, &r, err), KN_ERR_INVALID_ARG);
    assert_non_null(strstr(err->message, "partition key"));
    r.partition_key = NULL;
    assert_int_equal(kn__agg_builder_add(b, &r, err), KN_ERR_INVALID_ARG);
    assert_int_equal(kn__agg_builder_count(b), 0);
    assert_int_equal(kn__agg_builder_size(b), KN__AGG_OVERHEAD);
    /* Outer partition key must not be empty. */
    kn__agg_in_t ok = rec_in("k", NULL, "x");
    add_checked(b, &ok);
    add_checked(b, &ok);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    assert_int_equal(kn__agg_builder_finish(b, "", false, &out, err), KN_ERR_INVALID_ARG);
    kn__agg_out_free(&out);
    free(err);
    kn__agg_builder_destroy(b);
}

/* 1 MiB data: a 3-byte length varint, round trip. */
static void test_large_data(void **state)
{
    (void)state;
    size_t big = 1 << 20;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++)
        data[i] = (char)(i * 31 + 7);
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r1 = rec_in("big", NULL, "");
    r1.data = data;
    r1.data_len = big;
    kn__agg_in_t r2 = rec_in("small", NULL, "s");
    add_checked(b, &r1);
    add_checked(b, &r2);
    /* pk entries 5 + 7; record 0: 1 + 3 (len 1048583) + (2 + 1 + 3 + 1048576); record 1: 1 + 1 + 5 */
    assert_int_equal(kn__agg_builder_size(b), 20 + 5 + 7 + (4 + 2 + 4 + big) + 7);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    const unsigned char *p = (const unsigned char *)out.data.data + 4 + 12;
    assert_int_equal(p[0], 0x1A);
    /* Record length 2 + 4 + 2^20 = 1048582 = 0x100006: varint 86 80 40. */
    assert_int_equal(p[1], 0x86);
    assert_int_equal(p[2], 0x80);
    assert_int_equal(p[3], 0x40);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 2);
    assert_mem(d.records[0].data, d.records[0].data_len, data, big);
    assert_mem(d.records[0].partition_key, d.records[0].partition_key_len, "big", 3);
    assert_mem(d.records[1].data, d.records[1].data_len, "s", 1);
    kn__agg_decoded_free(&d);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
    free(data);
}

/* try_add: size == limit fits, limit - 1 does not; count limit; builder unchanged when refused. */
static void test_size_exactly_at_limit(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r1 = rec_in("k1", NULL, "0123456789");
    add_checked(b, &r1);
    kn__agg_in_t r2 = rec_in("k2", "7", "abc");
    size_t with = kn__agg_builder_size_with(b, &r2);
    size_t before = kn__agg_builder_size(b);
    /* k2 entry 4, ehk entry 3, record 1+1+(2+2+5) */
    assert_int_equal(with, before + 4 + 3 + 11);
    kn_error_t *err = calloc(1, sizeof(*err));
    assert_int_equal(kn__agg_builder_try_add(b, &r2, with - 1, 0, err), KN_ERR_TOO_LARGE);
    assert_int_equal(err->code, KN_ERR_OK); /* not an error: err untouched */
    assert_int_equal(kn__agg_builder_size(b), before);
    assert_int_equal(kn__agg_builder_count(b), 1);
    /* The refused record's keys were not entered: a different key now gets index 1. */
    kn__agg_in_t r3 = rec_in("k3", NULL, "q");
    assert_int_equal(kn__agg_builder_try_add(b, &r2, with, 2, err), KN_ERR_OK);
    assert_int_equal(kn__agg_builder_size(b), with);
    assert_int_equal(kn__agg_builder_try_add(b, &r3, SIZE_MAX, 2, err), KN_ERR_TOO_LARGE);
    assert_int_equal(kn__agg_builder_count(b), 2);
    assert_int_equal(kn__agg_builder_try_add(b, &r3, SIZE_MAX, 3, err), KN_ERR_OK);
    /* Fill to exactly the KPL default limit, then one byte more does not fit. */
    kn__agg_builder_reset(b);
    char *data = calloc(1, KN__AGG_DEFAULT_MAX_BYTES);
    kn__agg_in_t f = rec_in("fill", NULL, "");
    f.data = data;
    /* 20 + pk entry 6 + record: 1 + varint(body) + body, body = 2 + 1 + varint(n) + n */
    f.data_len = KN__AGG_DEFAULT_MAX_BYTES - 20 - 6 - 1 - 3 - 2 - 1 - 3;
    assert_int_equal(kn__agg_builder_size_with(b, &f), KN__AGG_DEFAULT_MAX_BYTES);
    assert_int_equal(kn__agg_builder_try_add(b, &f, KN__AGG_DEFAULT_MAX_BYTES, 0, err), KN_ERR_OK);
    assert_int_equal(kn__agg_builder_size(b), KN__AGG_DEFAULT_MAX_BYTES);
    kn__agg_builder_reset(b);
    f.data_len++;
    assert_int_equal(kn__agg_builder_size_with(b, &f), KN__AGG_DEFAULT_MAX_BYTES + 1);
    assert_int_equal(kn__agg_builder_try_add(b, &f, KN__AGG_DEFAULT_MAX_BYTES, 0, err), KN_ERR_TOO_LARGE);
    assert_int_equal(kn__agg_builder_count(b), 0);
    free(data);
    free(err);
    kn__agg_builder_destroy(b);
}

/* ------------------------------------------------ random round trips */

typedef struct rrec_s {
    char pk[64];
    char ehk[48];
    bool has_ehk;
    unsigned char *data;
    size_t data_len;
    kn__agg_tag_t tags[3];
    char tagbuf[3][2][16];
    size_t n_tags;
} rrec_t;

/* Data lengths around the varint boundaries (127/128, 16383/16384) and small sizes. */
static size_t pick_len(void)
{
    static const size_t edges[] = {0, 1, 126, 127, 128, 129, 16382, 16383, 16384, 16385};
    uint64_t x = rnd() % 100;
    if (x < 10)
        return edges[rnd() % (sizeof(edges) / sizeof(edges[0]))];
    if (x < 90)
        return rnd() % 200;
    return rnd() % 3000;
}

static void make_rrec(rrec_t *r, size_t key_pool)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->pk, sizeof(r->pk), "pk-%llu", (unsigned long long)(rnd() % key_pool));
    if (rnd() % 3 == 0) {
        r->has_ehk = true;
        kn__hashkey_t k = {rnd() % 3 ? rnd() : 0, rnd() % 5 ? rnd() : rnd() % 4};
        kn__hashkey_format(k, r->ehk);
    }
    r->data_len = pick_len();
    r->data = malloc(r->data_len + 1);
    for (size_t i = 0; i < r->data_len; i++)
        r->data[i] = (unsigned char)rnd();
    r->n_tags = rnd() % 7 == 0 ? rnd() % 4 : 0;
    for (size_t t = 0; t < r->n_tags; t++) {
        snprintf(r->tagbuf[t][0], 16, "k%u", (unsigned)(rnd() % 100));
        snprintf(r->tagbuf[t][1], 16, "v%u", (unsigned)(rnd() % 100));
        r->tags[t].key = r->tagbuf[t][0];
        r->tags[t].key_len = strlen(r->tagbuf[t][0]);
        bool val = rnd() % 2;
        r->tags[t].value = val ? r->tagbuf[t][1] : NULL;
        r->tags[t].value_len = val ? strlen(r->tagbuf[t][1]) : 0;
    }
}

static kn__agg_in_t rrec_in(const rrec_t *r)
{
    kn__agg_in_t in;
    memset(&in, 0, sizeof(in));
    in.partition_key = r->pk;
    in.partition_key_len = strlen(r->pk);
    in.explicit_hash_key = r->has_ehk ? r->ehk : NULL;
    in.explicit_hash_key_len = r->has_ehk ? strlen(r->ehk) : 0;
    in.data = r->data;
    in.data_len = r->data_len;
    in.tags = r->tags;
    in.n_tags = r->n_tags;
    return in;
}

static void check_decoded_matches(const kn__agg_decoded_t *d, const rrec_t *rs, size_t n)
{
    assert_true(d->aggregated);
    assert_int_equal(d->reason, KN__AGG_R_OK);
    assert_int_equal(d->count, n);
    for (size_t i = 0; i < n; i++) {
        const kn__agg_rec_t *g = &d->records[i];
        assert_int_equal(g->sub_sequence, i);
        assert_mem(g->partition_key, g->partition_key_len, rs[i].pk, strlen(rs[i].pk));
        if (rs[i].has_ehk)
            assert_mem(g->explicit_hash_key, g->explicit_hash_key_len, rs[i].ehk, strlen(rs[i].ehk));
        else
            assert_null(g->explicit_hash_key);
        assert_mem(g->data, g->data_len, rs[i].data, rs[i].data_len);
        assert_int_equal(g->n_tags, rs[i].n_tags);
        for (size_t t = 0; t < g->n_tags; t++) {
            assert_mem(g->tags[t].key, g->tags[t].key_len, rs[i].tags[t].key, rs[i].tags[t].key_len);
            if (rs[i].tags[t].value)
                assert_mem(g->tags[t].value, g->tags[t].value_len, rs[i].tags[t].value,
                           rs[i].tags[t].value_len);
            else
                assert_null(g->tags[t].value);
        }
    }
}

/*
 * Thousands of random records: size_with() before each add equals size()
 * after it, the finished aggregate is exactly size() bytes, and it decodes to
 * the same records. Key pools of 3 (heavy sharing) to 400 (indexes past 127,
 * 2-byte varints).
 */
static void test_size_accounting_random_roundtrip(void **state)
{
    (void)state;
    static const size_t pools[] = {3, 50, 400};
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    size_t total = 0;
    for (int round = 0; round < 12; round++) {
        size_t n = 1 + (size_t)(rnd() % 700);
        rrec_t *rs = calloc(n, sizeof(*rs));
        kn__agg_builder_reset(b);
        for (size_t i = 0; i < n; i++) {
            make_rrec(&rs[i], pools[round % 3]);
            kn__agg_in_t in = rrec_in(&rs[i]);
            add_checked(b, &in);
        }
        total += n;
        kn__agg_out_t out = KN__AGG_OUT_INIT;
        finish_agg(b, NULL, &out);
        assert_true(kn__agg_is_aggregate(out.data.data, out.data.len));
        assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
        check_decoded_matches(&d, rs, n);
        /* The outer explicit hash key is the first record's hash key. */
        kn__hashkey_t k0;
        assert_int_equal(kn__agg_rec_hashkey(&d.records[0], &k0), 0);
        char dec[KN__HASHKEY_STRLEN];
        kn__hashkey_format(k0, dec);
        assert_string_equal(out.explicit_hash_key.data, dec);
        kn__agg_out_free(&out);
        for (size_t i = 0; i < n; i++)
            free(rs[i].data);
        free(rs);
    }
    assert_true(total > 1000);
    kn__agg_decoded_free(&d);
    kn__agg_builder_destroy(b);
}

/* try_add with a limit packs records exactly as size_with predicts, across many aggregates. */
static void test_try_add_packs_to_limit(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    size_t limit = 4000, aggs = 0;
    for (int i = 0; i < 3000; i++) {
        rrec_t r;
        make_rrec(&r, 40);
        kn__agg_in_t in = rrec_in(&r);
        size_t with = kn__agg_builder_size_with(b, &in);
        kn_err_t rc = kn__agg_builder_try_add(b, &in, limit, 0, NULL);
        if (with <= limit) {
            assert_int_equal(rc, KN_ERR_OK);
            assert_int_equal(kn__agg_builder_size(b), with);
        } else {
            assert_int_equal(rc, KN_ERR_TOO_LARGE);
            assert_true(kn__agg_builder_size(b) <= limit);
            kn__agg_out_t out = KN__AGG_OUT_INIT;
            if (kn__agg_builder_count(b)) {
                finish_agg(b, NULL, &out);
                aggs++;
            }
            kn__agg_out_free(&out);
            kn__agg_builder_reset(b);
            if (kn__agg_builder_try_add(b, &in, limit, 0, NULL) != KN_ERR_OK)
                assert_true(kn__agg_builder_size_with(b, &in) > limit);
        }
        free(r.data);
    }
    assert_true(aggs > 10);
    kn__agg_builder_destroy(b);
}

/*
 * Deferred digests: aggregates finished with the MD5 left out, then digested
 * together by kn__agg_out_digest, are byte for byte the aggregates finished
 * the ordinary way; raw single records and finished ones are left alone.
 */
static void test_deferred_digests_match(void **state)
{
    (void)state;
    enum { N = 23 };
    kn__agg_out_t plain[N], deferred[N];
    kn__agg_out_t *outs[N + 1];
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_builder_t *d = kn__agg_builder_new();
    assert_true(b && d);
    kn__agg_builder_defer_digest(d, true);
    char key[32], data[600];
    for (int i = 0; i < N; i++) {
        kn__agg_builder_reset(b);
        kn__agg_builder_reset(d);
        int count = i == 3 ? 1 : 1 + (i * 7) % 40; /* i == 3: one record, sent raw */
        for (int j = 0; j < count; j++) {
            snprintf(key, sizeof(key), "key-%d-%d", i, j % 5);
            size_t dl = (size_t)((i * 131 + j * 17) % (int)sizeof(data));
            memset(data, 'a' + (i + j) % 26, dl);
            kn__agg_in_t r = {key, strlen(key), NULL, 0, data, dl, NULL, 0};
            assert_int_equal(kn__agg_builder_add(b, &r, NULL), KN_ERR_OK);
            assert_int_equal(kn__agg_builder_add(d, &r, NULL), KN_ERR_OK);
        }
        plain[i] = (kn__agg_out_t)KN__AGG_OUT_INIT;
        deferred[i] = (kn__agg_out_t)KN__AGG_OUT_INIT;
        assert_int_equal(kn__agg_builder_finish(b, NULL, false, &plain[i], NULL), KN_ERR_OK);
        assert_int_equal(kn__agg_builder_finish(d, NULL, false, &deferred[i], NULL), KN_ERR_OK);
        assert_false(plain[i].digest_pending);
        assert_int_equal(deferred[i].digest_pending, deferred[i].aggregated);
        assert_int_equal(plain[i].data.len, deferred[i].data.len);
        if (deferred[i].aggregated) {
            static const unsigned char zeros[16];
            assert_memory_equal(deferred[i].data.data + deferred[i].data.len - 16, zeros, 16);
            assert_memory_not_equal(plain[i].data.data + plain[i].data.len - 16, zeros, 16);
        }
        outs[i] = &deferred[i];
    }
    outs[N] = NULL;
    kn__agg_out_digest(outs, N + 1);
    kn__agg_out_digest(outs, N + 1); /* a second call changes nothing */
    for (int i = 0; i < N; i++) {
        assert_false(deferred[i].digest_pending);
        assert_int_equal(plain[i].data.len, deferred[i].data.len);
        assert_memory_equal(plain[i].data.data, deferred[i].data.data, plain[i].data.len);
        kn__agg_out_free(&plain[i]);
        kn__agg_out_free(&deferred[i]);
    }
    kn__agg_builder_destroy(b);
    kn__agg_builder_destroy(d);
}

/* ------------------------------------------------------------ decoder */

static void test_decode_plain_records(void **state)
{
    (void)state;
    expect_passthrough("hello", 5, KN__AGG_R_PLAIN);
    expect_passthrough("", 0, KN__AGG_R_PLAIN);
    expect_passthrough(NULL, 0, KN__AGG_R_PLAIN);
    expect_passthrough(KN__AGG_MAGIC, 4, KN__AGG_R_PLAIN);
    /* Magic + exactly 16 bytes: not "more than 16", plain even though MD5("") would match. */
    size_t n;
    unsigned char *a = wrap("", 0, &n);
    assert_int_equal(n, 20);
    assert_false(kn__agg_is_aggregate(a, n));
    expect_passthrough(a, n, KN__AGG_R_PLAIN);
    free(a);
    /* Magic almost right. */
    unsigned char m[40] = {0xF3, 0x89, 0x9A, 0xC3};
    expect_passthrough(m, sizeof(m), KN__AGG_R_PLAIN);
    /* A plain record keeps the caller's explicit hash key. */
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode("x", 1, "pk", 2, "99", 2, &d, NULL), KN_ERR_OK);
    assert_mem(d.records[0].explicit_hash_key, d.records[0].explicit_hash_key_len, "99", 2);
    kn__agg_decoded_free(&d);
}

/* A valid aggregate with a protobuf of one unknown field and no records: aggregated, zero records (KCL). */
static void test_decode_empty_aggregate(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    bb_vi(w, 9, 1); /* unknown field 9, varint 1 */
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 0);
    kn__agg_decoded_free(&d);
    free(a);
    free(w);
}

static void test_decode_wrong_md5(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_in_t r = rec_in("k", NULL, "data");
    add_checked(b, &r);
    add_checked(b, &r);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    unsigned char *buf = malloc(out.data.len);
    /* Each digest byte, and each protobuf byte, flipped. */
    for (size_t i = 4; i < out.data.len; i++) {
        memcpy(buf, out.data.data, out.data.len);
        buf[i] ^= 0x01;
        assert_false(kn__agg_is_aggregate(buf, out.data.len));
        expect_passthrough(buf, out.data.len, KN__AGG_R_BAD_MD5);
    }
    free(buf);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
}

/* A valid protobuf of two records with a table, for hostile variations. */
static void base_pb(bb_t *w)
{
    w->n = 0;
    bb_ld(w, 1, "k0", 2);
    bb_ld(w, 2, "5", 1);
    bb_t rec = {.n = 0};
    bb_vi(&rec, 1, 0);
    bb_vi(&rec, 2, 0);
    bb_ld(&rec, 3, "data-0", 6);
    bb_ld(w, 3, rec.b, rec.n);
    rec.n = 0;
    bb_vi(&rec, 1, 0);
    bb_ld(&rec, 3, "data-1", 6);
    bb_t tag = {.n = 0};
    bb_ld(&tag, 1, "tk", 2);
    bb_ld(&tag, 2, "tv", 2);
    bb_ld(&rec, 4, tag.b, tag.n);
    bb_ld(w, 3, rec.b, rec.n);
}

/*
 * Every prefix of a valid protobuf, re-wrapped with a correct MD5: either a
 * pass-through of exactly the input, or (cut between top-level fields) a
 * valid aggregate whose records are a prefix of the originals.
 */
static void test_decode_truncated_everywhere(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    base_pb(w);
    size_t parsed = 0, passed = 0;
    for (size_t cut = 0; cut <= w->n; cut++) {
        size_t n;
        unsigned char *a = wrap(w->b, cut, &n);
        kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
        assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
        if (d.aggregated) {
            parsed++;
            assert_true(d.count <= 2);
            for (size_t i = 0; i < d.count; i++) {
                char want[32];
                snprintf(want, sizeof(want), "data-%zu", i);
                assert_mem(d.records[i].data, d.records[i].data_len, want, 6);
            }
        } else {
            passed++;
            assert_int_equal(d.count, 1);
            assert_ptr_equal(d.records[0].data, a);
            assert_int_equal(d.records[0].data_len, n);
            assert_true(d.reason == KN__AGG_R_PLAIN || d.reason == KN__AGG_R_TRUNCATED ||
                        d.reason == KN__AGG_R_MISSING_FIELD);
            assert_true(d.reason_offset < n);
        }
        kn__agg_decoded_free(&d);
        free(a);

        /* The aggregate itself cut at every byte: the MD5 no longer matches (or too short). */
        unsigned char *full = wrap(w->b, w->n, &n);
        if (cut < n) {
            kn__agg_decoded_t d2 = KN__AGG_DECODED_INIT;
            assert_int_equal(kn__agg_decode(full, cut, "pk", 2, NULL, 0, &d2, NULL), KN_ERR_OK);
            assert_false(d2.aggregated);
            assert_int_equal(d2.records[0].data_len, cut);
            kn__agg_decoded_free(&d2);
        }
        free(full);
    }
    /* Cut points that fall between top-level fields decode (0 is too short to count). */
    assert_true(parsed >= 4);
    assert_true(passed > w->n / 2);
    /* The full one decodes to both records, tags included. */
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 2);
    assert_mem(d.records[0].explicit_hash_key, d.records[0].explicit_hash_key_len, "5", 1);
    assert_null(d.records[1].explicit_hash_key);
    assert_int_equal(d.records[1].n_tags, 1);
    assert_mem(d.records[1].tags[0].value, d.records[1].tags[0].value_len, "tv", 2);
    kn__agg_decoded_free(&d);
    free(a);
    free(w);
}

/* A record with pk index given as raw bytes (a varint written by hand). */
static void pb_with_index_bytes(bb_t *w, const unsigned char *idx, size_t idx_len)
{
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_t rec = {.n = 0};
    bb_byte(&rec, 0x08); /* Record.1, varint */
    bb_mem(&rec, idx, idx_len);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
}

static void test_decode_bad_varints(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    /* 10 bytes, value 0 written long: valid protobuf (index 0). */
    static const unsigned char ten0[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    pb_with_index_bytes(w, ten0, sizeof(ten0));
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 1);
    kn__agg_decoded_free(&d);
    free(a);
    /* 11 bytes. */
    static const unsigned char eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    pb_with_index_bytes(w, eleven, sizeof(eleven));
    expect_pb_passthrough(w, KN__AGG_R_BAD_VARINT);
    /* 10 bytes but over 64 bits. */
    static const unsigned char over[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02};
    pb_with_index_bytes(w, over, sizeof(over));
    expect_pb_passthrough(w, KN__AGG_R_BAD_VARINT);
    /* 2^64-1: a valid varint, an index far outside the table. */
    static const unsigned char max64[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    pb_with_index_bytes(w, max64, sizeof(max64));
    expect_pb_passthrough(w, KN__AGG_R_INDEX_OUT_OF_TABLE);
    /* 2^32: no truncation to 32 bits (protobuf-java's (int) cast would make it 0). */
    static const unsigned char p32[] = {0x80, 0x80, 0x80, 0x80, 0x10};
    pb_with_index_bytes(w, p32, sizeof(p32));
    expect_pb_passthrough(w, KN__AGG_R_INDEX_OUT_OF_TABLE);
    /* A varint that runs off the end of the record. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    static const unsigned char cut_rec[] = {0x08, 0x80, 0x80}; /* pk index, continuation bytes, end */
    bb_ld(w, 3, cut_rec, sizeof(cut_rec));
    expect_pb_passthrough(w, KN__AGG_R_TRUNCATED); /* under the minimum size, still named precisely */
    static const unsigned char cut_rec2[] = {0x1A, 0x00, 0x08, 0x80, 0x80}; /* data "", index cut */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_ld(w, 3, cut_rec2, sizeof(cut_rec2));
    expect_pb_passthrough(w, KN__AGG_R_TRUNCATED);
    /* A tag over 32 bits. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    static const unsigned char bigtag[] = {0x80, 0x80, 0x80, 0x80, 0x10, 0x00};
    bb_mem(w, bigtag, sizeof(bigtag));
    expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    /* 11-byte tag at the top level. */
    w->n = 0;
    bb_mem(w, eleven, sizeof(eleven));
    expect_pb_passthrough(w, KN__AGG_R_BAD_VARINT);
    free(w);
}

static void test_decode_huge_lengths(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    static const uint64_t lens[] = {100, 1u << 31, (uint64_t)1 << 32, (uint64_t)1 << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        /* In a table entry. */
        w->n = 0;
        bb_byte(w, 0x0A);
        bb_varint(w, lens[i]);
        bb_mem(w, "abc", 3);
        expect_pb_passthrough(w, KN__AGG_R_TRUNCATED);
        /* As a record's data length. */
        w->n = 0;
        bb_ld(w, 1, "k", 1);
        bb_t rec = {.n = 0};
        bb_vi(&rec, 1, 0);
        bb_byte(&rec, 0x1A);
        bb_varint(&rec, lens[i]);
        bb_mem(&rec, "xyz", 3);
        bb_ld(w, 3, rec.b, rec.n);
        expect_pb_passthrough(w, KN__AGG_R_TRUNCATED);
        /* An unknown length-delimited field. */
        w->n = 0;
        bb_byte(w, 15 << 3 | 2);
        bb_varint(w, lens[i]);
        bb_mem(w, "abc", 3);
        expect_pb_passthrough(w, KN__AGG_R_TRUNCATED);
    }
    /* A record claiming many records' worth: 3-byte records are refused, not allocated for. */
    w->n = 0;
    for (int i = 0; i < 1000; i++)
        bb_ld(w, 3, "\x08\x00", 2);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);
    free(w);
}

static void test_decode_index_out_of_table(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    bb_t rec = {.n = 0};
    /* pk index 1 with one key. */
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 1);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_INDEX_OUT_OF_TABLE);
    /* No pk table at all. */
    w->n = 0;
    rec.n = 0;
    bb_vi(&rec, 1, 0);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_INDEX_OUT_OF_TABLE);
    /* ehk index 0 with an empty ehk table. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 0);
    bb_vi(&rec, 2, 0);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_INDEX_OUT_OF_TABLE);
    /* Tables after the records, interleaved: valid protobuf, resolved. */
    w->n = 0;
    bb_ld(w, 3, rec.b, rec.n);
    bb_ld(w, 2, "12", 2);
    bb_ld(w, 1, "k", 1);
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_mem(d.records[0].partition_key, d.records[0].partition_key_len, "k", 1);
    assert_mem(d.records[0].explicit_hash_key, d.records[0].explicit_hash_key_len, "12", 2);
    kn__agg_decoded_free(&d);
    free(a);
    free(w);
}

static void test_decode_wire_types_and_unknown_fields(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    bb_t rec = {.n = 0};
    size_t n;
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;

    /* Unknown fields of every wire type, at every level, are skipped. */
    bb_vi(w, 10, 300);                                      /* varint */
    bb_byte(w, 11 << 3 | 1), bb_mem(w, "12345678", 8);       /* fixed64 */
    bb_byte(w, 12 << 3 | 5), bb_mem(w, "1234", 4);           /* fixed32 */
    bb_ld(w, 13, "ignored", 7);                             /* length-delimited */
    bb_byte(w, 14 << 3 | 3);                                /* group 14 { */
    bb_vi(w, 1, 5);                                         /*   a varint inside */
    bb_byte(w, 15 << 3 | 3), bb_byte(w, 15 << 3 | 4);       /*   group 15 { } */
    bb_byte(w, 14 << 3 | 4);                                /* } */
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 0);
    bb_vi(&rec, 9, 7);                       /* unknown in Record */
    bb_ld(&rec, 3, "d", 1);
    bb_t tag = {.n = 0};
    bb_ld(&tag, 1, "key", 3);
    bb_vi(&tag, 7, 1);                       /* unknown in Tag */
    bb_ld(&rec, 4, tag.b, tag.n);
    bb_ld(w, 3, rec.b, rec.n);
    /* A known field number with another wire type is an unknown field (protobuf): skipped. */
    bb_vi(w, 3, 77);                         /* field 3 as a varint: not a record */
    bb_vi(w, 1, 1);                          /* field 1 as a varint: not a table entry */
    unsigned char *a = wrap(w->b, w->n, &n);
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 1);
    assert_mem(d.records[0].data, d.records[0].data_len, "d", 1);
    assert_int_equal(d.records[0].n_tags, 1);
    assert_mem(d.records[0].tags[0].key, d.records[0].tags[0].key_len, "key", 3);
    free(a);

    /* The last occurrence of a non-repeated field wins. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k0", 2);
    bb_ld(w, 1, "k1", 2);
    bb_vi(&rec, 1, 0);
    bb_ld(&rec, 3, "first", 5);
    bb_vi(&rec, 1, 1);
    bb_ld(&rec, 3, "second", 6);
    bb_ld(w, 3, rec.b, rec.n);
    a = wrap(w->b, w->n, &n);
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_mem(d.records[0].partition_key, d.records[0].partition_key_len, "k1", 2);
    assert_mem(d.records[0].data, d.records[0].data_len, "second", 6);
    free(a);

    /* pk index given length-delimited: unknown, so the required field is missing. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k", 1);
    bb_ld(&rec, 1, "\x00", 1);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);

    /* Wire types 6 and 7, at the top level and inside a record. */
    for (unsigned wt = 6; wt <= 7; wt++) {
        w->n = 0;
        bb_ld(w, 1, "k", 1);
        bb_byte(w, 5 << 3 | wt);
        bb_byte(w, 0);
        expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
        w->n = 0;
        rec.n = 0;
        bb_ld(w, 1, "k", 1);
        bb_vi(&rec, 1, 0);
        bb_ld(&rec, 3, "d", 1);
        bb_byte(&rec, 5 << 3 | wt);
        bb_ld(w, 3, rec.b, rec.n);
        expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    }
    /* Field number 0. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_byte(w, 0x00);
    expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    w->n = 0;
    bb_byte(w, 0x02), bb_byte(w, 0x00); /* field 0, LEN */
    expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    /* A stray end-group. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_byte(w, 9 << 3 | 4);
    expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    /* A group closed with another field number. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_byte(w, 9 << 3 | 3);
    bb_byte(w, 8 << 3 | 4);
    expect_pb_passthrough(w, KN__AGG_R_BAD_TAG);
    /* A group never closed. */
    w->n = 0;
    bb_ld(w, 1, "k", 1);
    bb_byte(w, 9 << 3 | 3);
    bb_vi(w, 1, 1);
    expect_pb_passthrough(w, KN__AGG_R_TRUNCATED);
    /* Groups nested 100 deep are skipped; 101 deep fail. */
    for (int depth = 100; depth <= 101; depth++) {
        w->n = 0;
        bb_ld(w, 1, "k", 1);
        for (int i = 0; i < depth; i++)
            bb_byte(w, 9 << 3 | 3);
        for (int i = 0; i < depth; i++)
            bb_byte(w, 9 << 3 | 4);
        rec.n = 0;
        bb_vi(&rec, 1, 0);
        bb_ld(&rec, 3, "d", 1);
        bb_ld(w, 3, rec.b, rec.n);
        if (depth == 100) {
            a = wrap(w->b, w->n, &n);
            assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
            assert_true(d.aggregated);
            assert_int_equal(d.count, 1);
            free(a);
        } else {
            expect_pb_passthrough(w, KN__AGG_R_TOO_DEEP);
        }
    }
    kn__agg_decoded_free(&d);
    free(w);
}

static void test_decode_missing_required(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    bb_t rec = {.n = 0};
    /* No data. */
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 0);
    bb_vi(&rec, 2, 0);
    bb_vi(&rec, 9, 0);
    bb_ld(w, 2, "1", 1);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);
    /* No pk index. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k", 1);
    bb_ld(&rec, 3, "data", 4);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);
    /* A tag without its key. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 0);
    bb_ld(&rec, 3, "d", 1);
    bb_t tag = {.n = 0};
    bb_ld(&tag, 2, "value", 5);
    bb_ld(&rec, 4, tag.b, tag.n);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);
    /* An empty tag message. */
    w->n = 0;
    rec.n = 0;
    bb_ld(w, 1, "k", 1);
    bb_vi(&rec, 1, 0);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(&rec, 4, "", 0);
    bb_ld(w, 3, rec.b, rec.n);
    expect_pb_passthrough(w, KN__AGG_R_MISSING_FIELD);
    free(w);
}

/* Random garbage and random mutations of valid aggregates (re-wrapped with a good MD5): never a crash. */
static void test_decode_garbage_and_mutations(void **state)
{
    (void)state;
    bb_t *w = calloc(1, sizeof(*w));
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    size_t aggregated = 0, passed = 0;
    for (int it = 0; it < 20000; it++) {
        if (it % 2 == 0) {
            w->n = (size_t)(rnd() % 200);
            for (size_t i = 0; i < w->n; i++)
                w->b[i] = (unsigned char)rnd();
        } else {
            base_pb(w);
            int muts = 1 + (int)(rnd() % 4);
            for (int m = 0; m < muts; m++) {
                size_t at = (size_t)(rnd() % w->n);
                switch (rnd() % 3) {
                case 0:
                    w->b[at] = (unsigned char)rnd();
                    break;
                case 1:
                    w->b[at] ^= (unsigned char)(1u << (rnd() % 8));
                    break;
                default:
                    w->n = at + 1;
                    break;
                }
            }
        }
        size_t n;
        unsigned char *a = wrap(w->b, w->n, &n);
        assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
        if (d.aggregated) {
            aggregated++;
            for (size_t i = 0; i < d.count; i++) {
                const kn__agg_rec_t *r = &d.records[i];
                assert_true(r->data >= a + 4 && r->data + r->data_len <= a + n - 16);
                assert_true((const unsigned char *)r->partition_key >= a + 4);
                assert_true((const unsigned char *)r->partition_key + r->partition_key_len <= a + n - 16);
                assert_int_equal(r->sub_sequence, i);
            }
        } else {
            passed++;
            assert_int_equal(d.count, 1);
            assert_ptr_equal(d.records[0].data, a);
            assert_int_equal(d.records[0].data_len, n);
            assert_int_not_equal(d.reason, KN__AGG_R_OK);
        }
        free(a);
    }
    assert_true(aggregated > 100);
    assert_true(passed > 100);
    kn__agg_decoded_free(&d);
    free(w);
}

/* One decoded result reused: a large aggregate, then a plain record, then a small aggregate. */
static void test_decode_reuse(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    for (int i = 0; i < 500; i++) {
        char pk[16];
        snprintf(pk, sizeof(pk), "k%d", i);
        kn__agg_in_t r = rec_in(pk, NULL, "v");
        add_checked(b, &r);
    }
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_int_equal(d.count, 500);
    assert_mem(d.records[499].partition_key, d.records[499].partition_key_len, "k499", 4);
    assert_int_equal(d.records[499].sub_sequence, 499);
    assert_int_equal(kn__agg_decode("plain", 5, "p", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_false(d.aggregated);
    assert_int_equal(d.count, 1);
    kn__agg_builder_reset(b);
    kn__agg_in_t r = rec_in("z", NULL, "zz");
    add_checked(b, &r);
    add_checked(b, &r);
    kn__agg_out_t out2 = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out2);
    assert_int_equal(kn__agg_decode(out2.data.data, out2.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    assert_int_equal(d.count, 2);
    kn__agg_out_free(&out);
    kn__agg_out_free(&out2);
    kn__agg_decoded_free(&d);
    kn__agg_decoded_free(&d); /* twice is harmless */
    kn__agg_builder_destroy(b);
}

/* ---------------------------------------------------- hash-range check */

static void test_check_range(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    /* Shard [1000, 2000]: explicit keys at both ends, just outside, and an MD5 key. */
    kn__agg_in_t rs[] = {rec_in("a", "1000", "0"), rec_in("b", "2000", "1"), rec_in("c", "999", "2"),
                         rec_in("d", "2001", "3"), rec_in("e", NULL, "4")};
    for (size_t i = 0; i < 5; i++)
        add_checked(b, &rs[i]);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    kn__hashkey_t lo = {0, 1000}, hi = {0, 2000};
    assert_int_equal(kn__agg_check_range(&d, lo, hi), 3);
    assert_false(d.records[0].out_of_range);
    assert_false(d.records[1].out_of_range);
    assert_true(d.records[2].out_of_range);
    assert_true(d.records[3].out_of_range);
    assert_true(d.records[4].out_of_range); /* MD5("e") is far above 2000 */
    /* The MD5 key's own shard: [md5("e"), md5("e")]. */
    kn__hashkey_t e = kn__hashkey_from_partition_key("e", 1);
    assert_int_equal(kn__agg_check_range(&d, e, e), 4);
    assert_false(d.records[4].out_of_range);
    kn__hashkey_t all_lo = {0, 0}, all_hi = {UINT64_MAX, UINT64_MAX};
    assert_int_equal(kn__agg_check_range(&d, all_lo, all_hi), 0);
    /* A plain record is never marked, whatever its partition key hashes to. */
    assert_int_equal(kn__agg_decode("x", 1, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_int_equal(kn__agg_check_range(&d, lo, hi), 0);
    assert_false(d.records[0].out_of_range);
    /* An invalid explicit hash key inside an aggregate counts as outside every range. */
    bb_t *w = calloc(1, sizeof(*w));
    bb_t rec = {.n = 0};
    bb_ld(w, 1, "k", 1);
    bb_ld(w, 2, "not-a-number", 12);
    bb_vi(&rec, 1, 0);
    bb_vi(&rec, 2, 0);
    bb_ld(&rec, 3, "d", 1);
    bb_ld(w, 3, rec.b, rec.n);
    size_t n;
    unsigned char *a = wrap(w->b, w->n, &n);
    assert_int_equal(kn__agg_decode(a, n, "pk", 2, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_true(d.aggregated);
    kn__hashkey_t k;
    assert_int_equal(kn__agg_rec_hashkey(&d.records[0], &k), -1);
    assert_int_equal(kn__agg_check_range(&d, all_lo, all_hi), 1);
    free(a);
    free(w);
    kn__agg_decoded_free(&d);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
}

static void test_reason_strings(void **state)
{
    (void)state;
    assert_string_equal(kn__agg_reason_name(KN__AGG_R_BAD_MD5), "BAD_MD5");
    assert_string_equal(kn__agg_reason_str(KN__AGG_R_BAD_MD5), "MD5 digest mismatch");
    assert_string_equal(kn__agg_reason_name(KN__AGG_R_INDEX_OUT_OF_TABLE), "INDEX_OUT_OF_TABLE");
    assert_string_equal(kn__agg_reason_str((kn__agg_reason_t)999), "unknown");
    for (int r = 0; r < KN__AGG_R__COUNT; r++)
        assert_true(strlen(kn__agg_reason_str((kn__agg_reason_t)r)) > 5);
}

/* ------------------------------------------------- protobuf cross-check */

/*
 * If python3 has google.protobuf, the reference implementation parses what
 * we write and what we decode (descriptors built at run time from the
 * schema; strings as bytes, as protobuf-java does not check proto2 UTF-8).
 * Skipped, with a message, when the package is missing.
 */
static const char *const PY_PRELUDE =
    "import sys, warnings\n"
    "warnings.simplefilter('error')  # the C++ backend only warns on a stray end-group\n"
    "try:\n"
    "    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory\n"
    "except ImportError:\n"
    "    sys.exit(77)\n"
    "fd = descriptor_pb2.FileDescriptorProto(name='m.proto', package='t', syntax='proto2')\n"
    "L = descriptor_pb2.FieldDescriptorProto\n"
    "def msg(name, fields):\n"
    "    m = fd.message_type.add(name=name)\n"
    "    for num, fname, label, typ, tn in fields:\n"
    "        f = m.field.add(name=fname, number=num, label=label, type=typ)\n"
    "        if tn: f.type_name = tn\n"
    "msg('AggregatedRecord', [(1, 'pk', L.LABEL_REPEATED, L.TYPE_BYTES, None),\n"
    "    (2, 'ehk', L.LABEL_REPEATED, L.TYPE_BYTES, None),\n"
    "    (3, 'records', L.LABEL_REPEATED, L.TYPE_MESSAGE, '.t.Record')])\n"
    "msg('Record', [(1, 'pki', L.LABEL_REQUIRED, L.TYPE_UINT64, None),\n"
    "    (2, 'ehki', L.LABEL_OPTIONAL, L.TYPE_UINT64, None),\n"
    "    (3, 'data', L.LABEL_REQUIRED, L.TYPE_BYTES, None),\n"
    "    (4, 'tags', L.LABEL_REPEATED, L.TYPE_MESSAGE, '.t.Tag')])\n"
    "msg('Tag', [(1, 'key', L.LABEL_REQUIRED, L.TYPE_BYTES, None),\n"
    "    (2, 'value', L.LABEL_OPTIONAL, L.TYPE_BYTES, None)])\n"
    "pool = descriptor_pool.DescriptorPool()\n"
    "pool.Add(fd)\n"
    "d = pool.FindMessageTypeByName('t.AggregatedRecord')\n"
    "try:\n"
    "    cls = message_factory.GetMessageClass(d)\n"
    "except AttributeError:\n"
    "    cls = message_factory.MessageFactory(pool).GetPrototype(d)\n"
    "import hashlib\n";

/* Our aggregate, parsed by protobuf: bytes re-serialize identically, same records. */
static const char *const PY_CHECK =
    "raw = sys.stdin.buffer.read()\n"
    "assert raw[:4] == b'\\xf3\\x89\\x9a\\xc2', 'magic'\n"
    "pb = raw[4:-16]\n"
    "assert hashlib.md5(pb).digest() == raw[-16:], 'md5'\n"
    "m = cls()\n"
    "m.ParseFromString(pb)\n"
    "assert m.IsInitialized()\n"
    "assert m.SerializeToString() == pb, 're-serialization differs'\n"
    "out = []\n"
    "for r in m.records:\n"
    "    e = m.ehk[r.ehki].decode() if r.HasField('ehki') else '-'\n"
    "    tags = ','.join(t.key.decode() + ('=' + t.value.decode() if t.HasField('value') else '')\n"
    "                    for t in r.tags)\n"
    "    out.append('%s|%s|%s|%s' % (m.pk[r.pki].decode(), e, r.data.hex(), tags))\n"
    "print('\\n'.join(out))\n";

/*
 * Differential: length-prefixed protobufs in, one line per case out: "pass"
 * (protobuf rejects it), "index" (parses, a key index outside its table) or
 * "agg" and each record as " pk/ehk/data/ntags" in hex.
 */
static const char *const PY_DIFF =
    "import struct\n"
    "raw = sys.stdin.buffer.read()\n"
    "i = 0\n"
    "out = []\n"
    "while i < len(raw):\n"
    "    (n,) = struct.unpack_from('<I', raw, i)\n"
    "    pb = raw[i + 4:i + 4 + n]\n"
    "    i += 4 + n\n"
    "    m = cls()\n"
    "    try:\n"
    "        if not pb: raise ValueError('empty: not more than 16 bytes after the magic')\n"
    "        m.ParseFromString(pb)\n"
    "        if not m.IsInitialized(): raise ValueError('required field missing')\n"
    "    except Exception:\n"
    "        out.append('pass')\n"
    "        continue\n"
    "    if any(r.pki >= len(m.pk) or (r.HasField('ehki') and r.ehki >= len(m.ehk)) for r in m.records):\n"
    "        out.append('index')\n"
    "        continue\n"
    "    s = 'agg'\n"
    "    for r in m.records:\n"
    "        e = m.ehk[r.ehki].hex() if r.HasField('ehki') else '-'\n"
    "        s += ' %s/%s/%s/%d' % (m.pk[r.pki].hex(), e, r.data.hex(), len(r.tags))\n"
    "    out.append(s)\n"
    "print('\\n'.join(out))\n";

/* Runs PY_PRELUDE + body with input on stdin; returns the exit status (77: no protobuf) and stdout. */
static int run_python(const char *body, const void *in, size_t in_len, kn_buf_t *out)
{
    char in_path[] = "/tmp/kn_agg_pyinXXXXXX";
    char script_path[] = "/tmp/kn_agg_pyscriptXXXXXX";
    int fd = mkstemp(in_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, in, in_len), (ssize_t)in_len);
    close(fd);
    fd = mkstemp(script_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, PY_PRELUDE, strlen(PY_PRELUDE)), (ssize_t)strlen(PY_PRELUDE));
    assert_int_equal(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    char cmd[256];
    /*
     * Debian's python3-protobuf (tools/setup.sh installs it) belongs to the
     * system interpreter, which may not be the python3 first in PATH.
     */
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    snprintf(cmd, sizeof(cmd), "%s %s < %s", py, script_path, in_path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        assert_int_equal(kn__buf_append(out, chunk, n), 0);
    int st = pclose(p);
    unlink(in_path);
    unlink(script_path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cross_check_python_protobuf(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    kn__agg_tag_t tags[2] = {{"content-encoding", 16, "zstd", 4}, {"x", 1, NULL, 0}};
    kn__agg_in_t r1 = rec_in("alpha", "123456789012345678901234567890", "\x01\x02");
    kn__agg_in_t r2 = rec_in("beta", NULL, "hello");
    r2.tags = tags;
    r2.n_tags = 2;
    kn__agg_in_t r3 = rec_in("alpha", NULL, "");
    add_checked(b, &r1);
    add_checked(b, &r2);
    add_checked(b, &r3);
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    kn_buf_t got = KN_BUF_INIT;
    int st = run_python(PY_CHECK, out.data.data, out.data.len, &got);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
    if (st == 77) {
        kn__buf_free(&got);
        skip(); /* python3 has no google.protobuf here: cross-check not run */
        return;
    }
    assert_int_equal(st, 0);
    assert_string_equal(got.data, "alpha|123456789012345678901234567890|0102|\n"
                                  "beta|-|68656c6c6f|content-encoding=zstd,x\n"
                                  "alpha|-||\n");
    kn__buf_free(&got);
}

static void hex_append(kn_buf_t *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++)
        kn__buf_printf(b, "%02x", s[i]);
}

/*
 * Thousands of mutations of a valid protobuf (byte changes, bit flips,
 * deletions, inserted tags of every wire type), each wrapped with a correct
 * MD5: our decoder and protobuf agree on every one, records included.
 */
static void test_differential_python_protobuf(void **state)
{
    (void)state;
    static const unsigned char pieces[][2] = {
        {0x08, 0}, {0x10, 0}, {0x1A, 0}, {0x22, 0}, {0x0B, 0}, {0x0C, 0}, {0x4B, 0}, {0x4C, 0},
        {0x4D, 0}, {0x49, 0}, {0x4E, 0}, {0x4F, 0}, {0x80, 0}, {0xFF, 0}, {0x00, 0}, {0x1A, 0x02}};
    enum { CASES = 4000 };
    bb_t *w = calloc(1, sizeof(*w));
    kn_buf_t in = KN_BUF_INIT, ours = KN_BUF_INIT, theirs = KN_BUF_INIT;
    unsigned char **cases = calloc(CASES, sizeof(*cases));
    size_t *lens = calloc(CASES, sizeof(*lens));
    for (int c = 0; c < CASES; c++) {
        base_pb(w);
        int muts = 1 + (int)(rnd() % 3);
        for (int m = 0; m < muts; m++) {
            size_t at = (size_t)(rnd() % (w->n + 1));
            size_t k = (size_t)(rnd() % 5);
            if (k < 2 && at == w->n)
                at = w->n - 1;
            if (k == 0) {
                w->b[at] = (unsigned char)rnd();
            } else if (k == 1) {
                w->b[at] ^= (unsigned char)(1u << (rnd() % 8));
            } else if (k == 2) {
                size_t del = 1 + (size_t)(rnd() % 3);
                if (at + del > w->n)
                    del = w->n - at;
                memmove(w->b + at, w->b + at + del, w->n - at - del);
                w->n -= del;
            } else {
                const unsigned char *pc = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
                size_t pl = k == 3 && pc[1] ? 2 : 1;
                memmove(w->b + at + pl, w->b + at, w->n - at);
                memcpy(w->b + at, pc, pl);
                w->n += pl;
            }
        }
        uint32_t n32 = (uint32_t)w->n;
        unsigned char le[4] = {(unsigned char)n32, (unsigned char)(n32 >> 8), (unsigned char)(n32 >> 16),
                               (unsigned char)(n32 >> 24)};
        kn__buf_append(&in, le, 4);
        kn__buf_append(&in, w->b, w->n);
        cases[c] = wrap(w->b, w->n, &lens[c]);
    }
    int st = run_python(PY_DIFF, in.data, in.len, &theirs);
    if (st == 77) {
        for (int c = 0; c < CASES; c++)
            free(cases[c]);
        free(cases);
        free(lens);
        free(w);
        kn__buf_free(&in);
        kn__buf_free(&theirs);
        skip(); /* python3 has no google.protobuf here: differential check not run */
        return;
    }
    assert_int_equal(st, 0);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    size_t agg = 0;
    for (int c = 0; c < CASES; c++) {
        assert_int_equal(kn__agg_decode(cases[c], lens[c], "p", 1, NULL, 0, &d, NULL), KN_ERR_OK);
        if (!d.aggregated) {
            kn__buf_puts(&ours, d.reason == KN__AGG_R_INDEX_OUT_OF_TABLE ? "index\n" : "pass\n");
        } else {
            agg++;
            kn__buf_puts(&ours, "agg");
            for (size_t i = 0; i < d.count; i++) {
                const kn__agg_rec_t *r = &d.records[i];
                kn__buf_putc(&ours, ' ');
                hex_append(&ours, r->partition_key, r->partition_key_len);
                kn__buf_putc(&ours, '/');
                if (r->explicit_hash_key)
                    hex_append(&ours, r->explicit_hash_key, r->explicit_hash_key_len);
                else
                    kn__buf_putc(&ours, '-');
                kn__buf_putc(&ours, '/');
                hex_append(&ours, r->data, r->data_len);
                kn__buf_printf(&ours, "/%zu", r->n_tags);
            }
            kn__buf_putc(&ours, '\n');
        }
        free(cases[c]);
    }
    /* Compare line by line, so a failure names the case. */
    const char *a = ours.data, *t = theirs.data;
    for (int c = 0; c < CASES; c++) {
        const char *ae = strchr(a, '\n'), *te = strchr(t, '\n');
        assert_non_null(ae);
        assert_non_null(te);
        if (ae - a != te - t || memcmp(a, t, (size_t)(ae - a)) != 0)
            fail_msg("case %d: ours '%.*s', protobuf '%.*s'", c, (int)(ae - a), a, (int)(te - t), t);
        a = ae + 1;
        t = te + 1;
    }
    assert_true(agg > CASES / 20);
    kn__agg_decoded_free(&d);
    free(cases);
    free(lens);
    free(w);
    kn__buf_free(&in);
    kn__buf_free(&ours);
    kn__buf_free(&theirs);
}

/*
 * Many records (more than one group of 64), keys in runs that share a table
 * entry, explicit keys in between: the grouped MD5s mark exactly the records
 * a one-at-a-time check marks, at several ranges.
 */
static void test_check_range_many_matches_one_at_a_time(void **state)
{
    (void)state;
    kn__agg_builder_t *b = kn__agg_builder_new();
    char key[32], ehk[48];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof(key), "key-%d", (i / 3) % 70); /* runs of 3, keys coming back later */
        kn__agg_in_t r;
        memset(&r, 0, sizeof(r));
        r.partition_key = key;
        r.partition_key_len = strlen(key);
        if (i % 17 == 5) {
            snprintf(ehk, sizeof(ehk), "%d000000000000000000000000000000000000", 1 + i % 3);
            r.explicit_hash_key = ehk;
            r.explicit_hash_key_len = strlen(ehk);
        }
        r.data = "x";
        r.data_len = 1;
        assert_int_equal(kn__agg_builder_add(b, &r, NULL), KN_ERR_OK);
    }
    kn__agg_out_t out = KN__AGG_OUT_INIT;
    finish_agg(b, NULL, &out);
    kn__agg_decoded_t d = KN__AGG_DECODED_INIT;
    assert_int_equal(kn__agg_decode(out.data.data, out.data.len, "a", 1, NULL, 0, &d, NULL), KN_ERR_OK);
    assert_int_equal(d.count, 300);
    kn__hashkey_t cuts[] = {{0, 0}, {0x4000000000000000ull, 0}, {0x8000000000000000ull, 5}, {UINT64_MAX, UINT64_MAX}};
    for (int a = 0; a < 4; a++) {
        for (int z = a; z < 4; z++) {
            size_t want = 0;
            bool mark[300];
            for (size_t i = 0; i < d.count; i++) {
                kn__hashkey_t k;
                mark[i] = kn__agg_rec_hashkey(&d.records[i], &k) != 0 || kn__hashkey_cmp(k, cuts[a]) < 0 ||
                          kn__hashkey_cmp(k, cuts[z]) > 0;
                want += mark[i];
            }
            assert_int_equal(kn__agg_check_range(&d, cuts[a], cuts[z]), want);
            for (size_t i = 0; i < d.count; i++)
                if (d.records[i].out_of_range != mark[i])
                    fail_msg("range %d..%d: record %zu marked %d, one at a time says %d", a, z, i,
                             d.records[i].out_of_range, mark[i]);
        }
    }
    kn__agg_decoded_free(&d);
    kn__agg_out_free(&out);
    kn__agg_builder_destroy(b);
}

/*
 * kn__agg_verify_many finds exactly the aggregates with a good digest among
 * good ones, corrupted ones, plain records and short ones; decoding with its
 * answer gives what decoding alone gives.
 */
static void test_verify_many_and_decode_checked(void **state)
{
    (void)state;
    enum { N = 70 };
    kn__agg_out_t outs[N];
    const void *data[N];
    size_t len[N];
    bool ok[N], want[N];
    kn__agg_builder_t *b = kn__agg_builder_new();
    for (int i = 0; i < N; i++) {
        kn__agg_builder_reset(b);
        char key[16];
        for (int j = 0; j < 1 + i % 5; j++) {
            snprintf(key, sizeof(key), "k%d", j);
            kn__agg_in_t r = rec_in(key, NULL, "payload");
            add_checked(b, &r);
        }
        outs[i] = (kn__agg_out_t)KN__AGG_OUT_INIT;
        finish_agg(b, NULL, &outs[i]);
        data[i] = outs[i].data.data;
        len[i] = outs[i].data.len;
        want[i] = true;
        if (i % 7 == 3) {
            outs[i].data.data[outs[i].data.len - 1] ^= 1; /* digest wrong */
            want[i] = false;
        } else if (i % 7 == 4) {
            outs[i].data.data[6] ^= 0x40; /* body wrong */
            want[i] = false;
        } else if (i % 11 == 6) {
            data[i] = "plain record";
            len[i] = 12;
            want[i] = false;
        } else if (i % 13 == 8) {
            len[i] = KN__AGG_OVERHEAD; /* magic and nothing after it but 16 bytes */
            want[i] = false;
        }
    }
    kn__agg_verify_many(N, data, len, ok);
    kn__agg_decoded_t d1 = KN__AGG_DECODED_INIT, d2 = KN__AGG_DECODED_INIT;
    for (int i = 0; i < N; i++) {
        if (ok[i] != want[i])
            fail_msg("record %d: verify_many says %d, expected %d", i, ok[i], want[i]);
        assert_int_equal(kn__agg_decode(data[i], len[i], "pk", 2, NULL, 0, &d1, NULL), KN_ERR_OK);
        assert_int_equal(kn__agg_decode_checked(data[i], len[i], "pk", 2, NULL, 0, ok[i], &d2, NULL), KN_ERR_OK);
        assert_int_equal(d1.aggregated, d2.aggregated);
        assert_int_equal(d1.reason, d2.reason);
        assert_int_equal(d1.count, d2.count);
        for (size_t k = 0; k < d1.count; k++)
            assert_int_equal(d1.records[k].data_len, d2.records[k].data_len);
        kn__agg_out_free(&outs[i]);
    }
    kn__agg_decoded_free(&d1);
    kn__agg_decoded_free(&d2);
    kn__agg_builder_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_builder),
        cmocka_unit_test(test_single_record_raw),
        cmocka_unit_test(test_vector_one_record_forced),
        cmocka_unit_test(test_vector_many_and_shared_keys),
        cmocka_unit_test(test_vector_explicit_hash_keys),
        cmocka_unit_test(test_vector_tags),
        cmocka_unit_test(test_invalid_records),
        cmocka_unit_test(test_large_data),
        cmocka_unit_test(test_size_exactly_at_limit),
        cmocka_unit_test(test_size_accounting_random_roundtrip),
        cmocka_unit_test(test_try_add_packs_to_limit),
        cmocka_unit_test(test_deferred_digests_match),
        cmocka_unit_test(test_decode_plain_records),
        cmocka_unit_test(test_decode_empty_aggregate),
        cmocka_unit_test(test_decode_wrong_md5),
        cmocka_unit_test(test_decode_truncated_everywhere),
        cmocka_unit_test(test_decode_bad_varints),
        cmocka_unit_test(test_decode_huge_lengths),
        cmocka_unit_test(test_decode_index_out_of_table),
        cmocka_unit_test(test_decode_wire_types_and_unknown_fields),
        cmocka_unit_test(test_decode_missing_required),
        cmocka_unit_test(test_decode_garbage_and_mutations),
        cmocka_unit_test(test_decode_reuse),
        cmocka_unit_test(test_check_range),
        cmocka_unit_test(test_check_range_many_matches_one_at_a_time),
        cmocka_unit_test(test_verify_many_and_decode_checked),
        cmocka_unit_test(test_reason_strings),
        cmocka_unit_test(test_cross_check_python_protobuf),
        cmocka_unit_test(test_differential_python_protobuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
