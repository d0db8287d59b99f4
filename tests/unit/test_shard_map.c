/*
 * Unit tests for producer/shard_map.c (the map only; the refresher is tested
 * against real servers in tests/integration/test_shard_refresh.c): maps of
 * 1, 2, 7 and 500 shards with hand-made ranges, lookups at every boundary,
 * closed shards ignored, gaps and overlaps rejected with messages that name
 * them, find by id, versions and the reference count across threads.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "hashkey.h"
#include "kinesis_ops.h"
#include "shard_map.h"

typedef unsigned __int128 u128;

#define U128_MAX (~(u128)0)
/* 2^128-1 and 2^127 in decimal, as ListShards writes them. */
#define MAX_DEC "340282366920938463463374607431768211455"
#define HALF_DEC "170141183460469231731687303715884105728"

static kn__hashkey_t hk(u128 v)
{
    kn__hashkey_t k = {(uint64_t)(v >> 64), (uint64_t)v};
    return k;
}

static u128 u(kn__hashkey_t k) { return ((u128)k.hi << 64) | k.lo; }

static kn__hashkey_t dec(const char *s)
{
    kn__hashkey_t k;
    assert_int_equal(kn__hashkey_parse(s, strlen(s), &k), 0);
    return k;
}

/* A ListShards result built by hand. */
typedef struct {
    kn__shard_list_t l;
    size_t cap;
} list_t;

static void add(list_t *t, const char *id, kn__hashkey_t start, kn__hashkey_t end, bool open)
{
    if (t->l.count == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->l.shards = realloc(t->l.shards, t->cap * sizeof(*t->l.shards));
        assert_non_null(t->l.shards);
    }
    kn__shard_t *s = &t->l.shards[t->l.count++];
    memset(s, 0, sizeof(*s));
    s->shard_id = strdup(id);
    s->start_hash = start;
    s->end_hash = end;
    s->start_seq = strdup("49590338271490256608559692538361571095921575989136588898");
    s->end_seq = open ? NULL : strdup("49590338271490256608559692540925702759324208523137515618");
}

static void add_u(list_t *t, const char *id, u128 start, u128 end, bool open)
{
    add(t, id, hk(start), hk(end), open);
}

static void list_free(list_t *t) { kn__shard_list_free(&t->l); }

/* Fisher-Yates with a fixed seed, so that the map has to sort. */
static void shuffle(list_t *t, unsigned seed)
{
    srand(seed);
    for (size_t i = t->l.count; i > 1; i--) {
        size_t j = (size_t)rand() % i;
        kn__shard_t tmp = t->l.shards[i - 1];
        t->l.shards[i - 1] = t->l.shards[j];
        t->l.shards[j] = tmp;
    }
}

static kn__shard_map_t *build_ok(list_t *t)
{
    kn_error_t e = {0};
    kn__shard_map_t *m = kn__shard_map_build(&t->l, &e);
    if (!m)
        fail_msg("kn__shard_map_build: %s", e.message);
    return m;
}

/* Whether the last build_fail() error was marked retriable. */
static bool g_retriable;

/* Builds, expects failure, and returns the message (static). */
static const char *build_fail(list_t *t)
{
    static kn_error_t e;
    memset(&e, 0, sizeof(e));
    g_retriable = false;
    kn__shard_map_t *m = kn__shard_map_build(&t->l, &e);
    assert_null(m);
    assert_int_equal(e.code, KN_ERR_BAD_RESPONSE);
    g_retriable = e.retriable && e.cls == KN__EC_RETRY;
    return e.message;
}

static void assert_contains(const char *msg, const char *part)
{
    assert_non_null(msg);
    if (!strstr(msg, part)) {
        char shown[1024];
        snprintf(shown, sizeof(shown), "%s", msg);
        fail_msg("message \"%s\" does not contain \"%s\"", shown, part);
    }
}

/* Linear reference for lookups: the open shard whose range holds k. */
static const char *owner_linear(const list_t *t, u128 k)
{
    const char *found = NULL;
    for (size_t i = 0; i < t->l.count; i++) {
        const kn__shard_t *s = &t->l.shards[i];
        if (kn__shard_is_open(s) && u(s->start_hash) <= k && k <= u(s->end_hash)) {
            assert_null(found);
            found = s->shard_id;
        }
    }
    assert_non_null(found);
    return found;
}

static void assert_lookup(const kn__shard_map_t *m, u128 k, const char *id)
{
    const kn__shard_entry_t *e = kn__shard_map_lookup(m, hk(k));
    assert_non_null(e);
    assert_string_equal(e->shard_id, id);
    assert_true(u(e->start) <= k && k <= u(e->end));
}

/*
 * Checks the map's entries against the list: sorted, contiguous, indexed,
 * each findable by id, and lookups at start, end and end+1 of every entry
 * plus 0 and 2^128-1 agree with a linear search.
 */
static void check_map(const kn__shard_map_t *m, const list_t *t, size_t open_count)
{
    assert_int_equal(kn__shard_map_count(m), open_count);
    assert_null(kn__shard_map_at(m, open_count));
    u128 expected = 0;
    for (size_t i = 0; i < open_count; i++) {
        const kn__shard_entry_t *e = kn__shard_map_at(m, i);
        assert_non_null(e);
        assert_int_equal(e->index, i);
        assert_true(u(e->start) == expected);
        assert_ptr_equal(kn__shard_map_find(m, e->shard_id), e);
        assert_lookup(m, u(e->start), e->shard_id);
        assert_lookup(m, u(e->end), e->shard_id);
        assert_string_equal(owner_linear(t, u(e->start)), e->shard_id);
        if (u(e->end) != U128_MAX) {
            const char *next = owner_linear(t, u(e->end) + 1);
            assert_lookup(m, u(e->end) + 1, next);
            assert_string_equal(kn__shard_map_at(m, i + 1)->shard_id, next);
        }
        expected = u(e->end) + 1;
    }
    assert_true(u(kn__shard_map_at(m, open_count - 1)->end) == U128_MAX);
    assert_lookup(m, 0, owner_linear(t, 0));
    assert_lookup(m, U128_MAX, owner_linear(t, U128_MAX));
}

/* ------------------------------------------------------------------ tests */

static void test_one_shard_owns_every_key(void **state)
{
    (void)state;
    list_t t = {0};
    add(&t, "shardId-000000000000", dec("0"), dec(MAX_DEC), true);
    kn__shard_map_t *m = build_ok(&t);
    check_map(m, &t, 1);
    assert_lookup(m, 0, "shardId-000000000000");
    assert_lookup(m, U128_MAX, "shardId-000000000000");
    assert_lookup(m, (u128)1 << 127, "shardId-000000000000");
    kn__hashkey_t k = kn__hashkey_from_partition_key("pk", 2);
    assert_string_equal(kn__shard_map_lookup(m, k)->shard_id, "shardId-000000000000");
    kn__shard_map_unref(m);
    list_free(&t);
}

static void test_two_shards_split_at_half(void **state)
{
    (void)state;
    list_t t = {0};
    /* Listed high half first: the map sorts by start hash key. */
    add(&t, "shardId-000000000001", dec(HALF_DEC), dec(MAX_DEC), true);
    add(&t, "shardId-000000000000", dec("0"), dec("170141183460469231731687303715884105727"), true);
    kn__shard_map_t *m = build_ok(&t);
    check_map(m, &t, 2);
    assert_string_equal(kn__shard_map_at(m, 0)->shard_id, "shardId-000000000000");
    assert_lookup(m, ((u128)1 << 127) - 1, "shardId-000000000000");
    assert_lookup(m, (u128)1 << 127, "shardId-000000000001");
    assert_lookup(m, U128_MAX, "shardId-000000000001");
    kn__shard_map_unref(m);
    list_free(&t);
}

/* Seven shards of very different widths, including one-key shards at both ends. */
static void test_seven_uneven_shards(void **state)
{
    (void)state;
    static const u128 ends[7] = {
        0,                          /* one key: 0 */
        1000,
        ((u128)1 << 64),            /* straddles the 64-bit word boundary */
        ((u128)1 << 100) + 12345,
        ((u128)1 << 127) - 1,
        U128_MAX - 1,
        U128_MAX,                   /* one key: 2^128-1 */
    };
    list_t t = {0};
    u128 start = 0;
    for (int i = 0; i < 7; i++) {
        char id[32];
        snprintf(id, sizeof(id), "shardId-%012d", 100 - i); /* id order differs from range order */
        add_u(&t, id, start, ends[i], true);
        start = ends[i] + 1;
    }
    shuffle(&t, 7);
    kn__shard_map_t *m = build_ok(&t);
    check_map(m, &t, 7);
    assert_lookup(m, 0, "shardId-000000000100");
    assert_lookup(m, 1, "shardId-000000000099");
    assert_lookup(m, (u128)1 << 64, "shardId-000000000098");
    assert_lookup(m, ((u128)1 << 64) + 1, "shardId-000000000097");
    assert_lookup(m, U128_MAX - 1, "shardId-000000000095");
    assert_lookup(m, U128_MAX, "shardId-000000000094");
    kn__shard_map_unref(m);
    list_free(&t);
}

/* 500 shards as the service splits a stream evenly, shuffled; every boundary and random keys. */
static void test_500_shards_every_boundary(void **state)
{
    (void)state;
    list_t t = {0};
    u128 width = U128_MAX / 500;
    for (int i = 0; i < 500; i++) {
        char id[32];
        snprintf(id, sizeof(id), "shardId-%012d", i);
        u128 s = width * (u128)i;
        u128 e = i == 499 ? U128_MAX : width * (u128)(i + 1) - 1;
        add_u(&t, id, s, e, true);
    }
    shuffle(&t, 500);
    kn__shard_map_t *m = build_ok(&t);
    check_map(m, &t, 500);
    for (int i = 0; i < 500; i++) {
        char id[32];
        snprintf(id, sizeof(id), "shardId-%012d", i);
        const kn__shard_entry_t *e = kn__shard_map_find(m, id);
        assert_non_null(e);
        assert_int_equal(e->index, i);
    }
    /* Partition keys through MD5 agree with a linear search. */
    for (int i = 0; i < 2000; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "key-%d", i);
        kn__hashkey_t k = kn__hashkey_from_partition_key(key, (size_t)n);
        assert_string_equal(kn__shard_map_lookup(m, k)->shard_id, owner_linear(&t, u(k)));
    }
    kn__shard_map_unref(m);
    list_free(&t);
}

/* After a split and a merge, ListShards lists closed parents over the children's ranges. */
static void test_closed_shards_are_ignored(void **state)
{
    (void)state;
    list_t t = {0};
    u128 half = (u128)1 << 127, quarter = (u128)1 << 126;
    add_u(&t, "shardId-000000000000", 0, half - 1, false);          /* split parent */
    add_u(&t, "shardId-000000000001", half, U128_MAX, false);       /* merged parent */
    add_u(&t, "shardId-000000000002", 0, quarter - 1, true);        /* split children */
    add_u(&t, "shardId-000000000003", quarter, half - 1, false);    /* closed again: merged */
    add_u(&t, "shardId-000000000004", quarter, U128_MAX, true);     /* the merge's child */
    kn__shard_map_t *m = build_ok(&t);
    check_map(m, &t, 2);
    assert_null(kn__shard_map_find(m, "shardId-000000000000"));
    assert_null(kn__shard_map_find(m, "shardId-000000000001"));
    assert_null(kn__shard_map_find(m, "shardId-000000000003"));
    assert_lookup(m, 0, "shardId-000000000002");
    assert_lookup(m, quarter - 1, "shardId-000000000002");
    assert_lookup(m, quarter, "shardId-000000000004");
    assert_lookup(m, half, "shardId-000000000004");
    kn__shard_map_unref(m);
    list_free(&t);
}

static void test_gaps_are_rejected_with_their_range(void **state)
{
    (void)state;
    /* A gap in the middle: keys 1001..1999 belong to nobody. */
    list_t t = {0};
    add_u(&t, "shardId-A", 0, 1000, true);
    add_u(&t, "shardId-B", 2000, U128_MAX, true);
    const char *msg = build_fail(&t);
    assert_contains(msg, "1001..1999");
    assert_contains(msg, "no open shard");
    assert_contains(msg, "shardId-A ending at 1000");
    assert_contains(msg, "shardId-B starting at 2000");
    assert_true(g_retriable); /* a reshard caught half way: worth asking again */
    list_free(&t);

    /* The first shard does not start at 0. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 5, U128_MAX, true);
    msg = build_fail(&t);
    assert_contains(msg, "0..4 belong to no open shard");
    assert_contains(msg, "shardId-A");
    list_free(&t);

    /* The last shard stops short of 2^128-1. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 0, 1000, true);
    add_u(&t, "shardId-B", 1001, U128_MAX - 10, true);
    msg = build_fail(&t);
    assert_contains(msg, "340282366920938463463374607431768211446.." MAX_DEC);
    assert_contains(msg, "shardId-B ends at 340282366920938463463374607431768211445");
    list_free(&t);

    /* A reshard caught half way: the parent is closed, one child not listed yet. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-P", 0, U128_MAX, false);
    add_u(&t, "shardId-C1", 0, ((u128)1 << 127) - 1, true);
    msg = build_fail(&t);
    assert_contains(msg, HALF_DEC ".." MAX_DEC);
    list_free(&t);
}

static void test_overlaps_are_rejected_with_their_range(void **state)
{
    (void)state;
    list_t t = {0};
    add_u(&t, "shardId-A", 0, 2000, true);
    add_u(&t, "shardId-B", 1500, U128_MAX, true);
    const char *msg = build_fail(&t);
    assert_contains(msg, "overlap");
    assert_contains(msg, "shardId-A (0..2000)");
    assert_contains(msg, "shardId-B (1500.." MAX_DEC ")");
    assert_contains(msg, "keys 1500..2000");
    assert_true(g_retriable);
    list_free(&t);

    /* A shard inside another one. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 0, U128_MAX, true);
    add_u(&t, "shardId-B", 10, 20, true);
    msg = build_fail(&t);
    assert_contains(msg, "keys 10..20");
    list_free(&t);

    /* Two shards ending at 2^128-1 (a split whose parent still looks open). */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-P", 0, U128_MAX, true);
    add_u(&t, "shardId-C", U128_MAX, U128_MAX, true);
    msg = build_fail(&t);
    assert_contains(msg, "keys " MAX_DEC ".." MAX_DEC);
    list_free(&t);

    /* Same range twice. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 0, U128_MAX, true);
    add_u(&t, "shardId-B", 0, U128_MAX, true);
    msg = build_fail(&t);
    assert_contains(msg, "keys 0.." MAX_DEC);
    list_free(&t);
}

static void test_bad_lists_are_rejected(void **state)
{
    (void)state;
    list_t t = {0};
    /* Nothing listed. */
    assert_contains(build_fail(&t), "no open shard");
    kn_error_t e = {0};
    assert_null(kn__shard_map_build(NULL, &e));
    assert_int_equal(e.code, KN_ERR_BAD_RESPONSE);

    /* Only closed shards. */
    add_u(&t, "shardId-A", 0, U128_MAX, false);
    assert_contains(build_fail(&t), "no open shard (1 closed)");
    assert_true(g_retriable);
    list_free(&t);

    /* A range that ends before it starts. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 0, 99, true);
    add_u(&t, "shardId-B", 200, 100, true);
    add_u(&t, "shardId-C", 201, U128_MAX, true);
    assert_contains(build_fail(&t), "shardId-B starts at hash key 200, after its end 100");
    assert_false(g_retriable); /* malformed: asking again will not help */
    list_free(&t);

    /* The same id twice. */
    memset(&t, 0, sizeof(t));
    add_u(&t, "shardId-A", 0, 99, true);
    add_u(&t, "shardId-A", 100, U128_MAX, true);
    assert_contains(build_fail(&t), "shardId-A appears twice");
    assert_false(g_retriable);
    list_free(&t);
}

static void test_find_by_id(void **state)
{
    (void)state;
    list_t t = {0};
    add_u(&t, "shardId-000000000010", 0, 99, true);
    add_u(&t, "shardId-000000000002", 100, 199, true);
    add_u(&t, "shardId-000000000007", 200, U128_MAX, true);
    add_u(&t, "shardId-000000000001", 0, U128_MAX, false);
    kn__shard_map_t *m = build_ok(&t);
    const kn__shard_entry_t *e = kn__shard_map_find(m, "shardId-000000000002");
    assert_non_null(e);
    assert_int_equal(e->index, 1);
    assert_true(u(e->start) == 100 && u(e->end) == 199);
    assert_int_equal(kn__shard_map_find(m, "shardId-000000000010")->index, 0);
    assert_int_equal(kn__shard_map_find(m, "shardId-000000000007")->index, 2);
    assert_null(kn__shard_map_find(m, "shardId-000000000001")); /* closed */
    assert_null(kn__shard_map_find(m, "shardId-00000000000"));  /* a prefix */
    assert_null(kn__shard_map_find(m, "shardId-0000000000020"));
    assert_null(kn__shard_map_find(m, ""));
    assert_null(kn__shard_map_find(m, NULL));
    /* The map owns its ids: they outlive the list. */
    list_free(&t);
    assert_string_equal(kn__shard_map_at(m, 2)->shard_id, "shardId-000000000007");
    kn__shard_map_unref(m);
}

static void test_versions_increase(void **state)
{
    (void)state;
    list_t t = {0};
    add_u(&t, "shardId-A", 0, U128_MAX, true);
    kn__shard_map_t *a = build_ok(&t);
    kn__shard_map_t *b = build_ok(&t);
    assert_true(kn__shard_map_version(a) > 0);
    assert_true(kn__shard_map_version(b) > kn__shard_map_version(a));
    /* A failed build takes no version away from the next success. */
    list_t bad = {0};
    add_u(&bad, "shardId-A", 1, U128_MAX, true);
    build_fail(&bad);
    kn__shard_map_t *c = build_ok(&t);
    assert_true(kn__shard_map_version(c) > kn__shard_map_version(b));
    kn__shard_map_unref(a);
    kn__shard_map_unref(b);
    kn__shard_map_unref(c);
    list_free(&t);
    list_free(&bad);
}

#define REF_THREADS 4
#define REF_ROUNDS 200000

static void *ref_worker(void *arg)
{
    kn__shard_map_t *m = arg;
    for (int i = 0; i < REF_ROUNDS; i++) {
        kn__shard_map_t *r = kn__shard_map_ref(m);
        /* Read through the reference as a sender would. */
        if (kn__shard_map_lookup(r, hk((u128)i))->index != 0)
            abort();
        kn__shard_map_unref(r);
    }
    kn__shard_map_unref(m); /* the reference the test handed this thread */
    return NULL;
}

/*
 * References taken and dropped on several threads at once leave the count
 * exact: the map lives until the last unref (ASan reports a use after free
 * or a leak otherwise).
 */
static void test_refcount_across_threads(void **state)
{
    (void)state;
    list_t t = {0};
    add_u(&t, "shardId-A", 0, ((u128)1 << 100), true);
    add_u(&t, "shardId-B", ((u128)1 << 100) + 1, U128_MAX, true);
    kn__shard_map_t *m = build_ok(&t);
    list_free(&t);
    assert_ptr_equal(kn__shard_map_ref(m), m);
    kn__shard_map_unref(m);
    kn__shard_map_unref(NULL);
    assert_null(kn__shard_map_ref(NULL));

    pthread_t th[REF_THREADS];
    for (int i = 0; i < REF_THREADS; i++) {
        kn__shard_map_ref(m);
        assert_int_equal(pthread_create(&th[i], NULL, ref_worker, m), 0);
    }
    kn__shard_map_unref(m); /* the builder's reference: the threads keep it alive */
    for (int i = 0; i < REF_THREADS; i++)
        pthread_join(th[i], NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_shard_owns_every_key),
        cmocka_unit_test(test_two_shards_split_at_half),
        cmocka_unit_test(test_seven_uneven_shards),
        cmocka_unit_test(test_500_shards_every_boundary),
        cmocka_unit_test(test_closed_shards_are_ignored),
        cmocka_unit_test(test_gaps_are_rejected_with_their_range),
        cmocka_unit_test(test_overlaps_are_rejected_with_their_range),
        cmocka_unit_test(test_bad_lists_are_rejected),
        cmocka_unit_test(test_find_by_id),
        cmocka_unit_test(test_versions_increase),
        cmocka_unit_test(test_refcount_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
