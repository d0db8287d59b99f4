/*
 * The consumer's two pure decisions: the balance (lease_balance.c: the fair
 * share, what to take, whom to ask) and the shard sync's plan
 * (shard_sync.c: which shards get leases, at which position).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lease_balance.h"
#include "shard_sync.h"

/* ------------------------------------------------------------ balance */

typedef struct world_s {
    kn__lease_t l[64];
    kn__bal_in_t in[64];
    char keys[64][32];
    size_t n;
} world_t;

/* A lease owned by owner (NULL: free), processable, alive unless expired. */
static kn__bal_in_t *add(world_t *w, const char *owner, bool expired)
{
    size_t i = w->n++;
    snprintf(w->keys[i], sizeof(w->keys[i]), "shardId-%012zu", i);
    memset(&w->l[i], 0, sizeof(w->l[i]));
    w->l[i].key = w->keys[i];
    w->l[i].owner = (char *)owner;
    w->l[i].checkpoint = "TRIM_HORIZON";
    memset(&w->in[i], 0, sizeof(w->in[i]));
    w->in[i].l = &w->l[i];
    w->in[i].processable = true;
    w->in[i].expired = expired;
    w->in[i].mine = owner && !strcmp(owner, "me");
    return &w->in[i];
}

static kn__bal_plan_t plan(world_t *w, int64_t max, int steal)
{
    kn__bal_plan_t p;
    assert_int_equal(kn__balance_plan(w->in, w->n, "me", max, steal, 42, &p), KN_ERR_OK);
    return p;
}

static void test_alone_takes_everything_free(void **state)
{
    (void)state;
    world_t w = {0};
    for (int i = 0; i < 5; i++)
        add(&w, NULL, false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.workers, 1);
    assert_int_equal(p.target, 5);
    assert_int_equal(p.n_take, 5);
    assert_int_equal(p.n_ask, 0);
    kn__bal_plan_free(&p);
    /* ... but no more than max leases. */
    p = plan(&w, 2, 1);
    assert_int_equal(p.target, 2);
    assert_int_equal(p.n_take, 2);
    kn__bal_plan_free(&p);
}

static void test_fair_share_with_free_and_expired(void **state)
{
    (void)state;
    world_t w = {0};
    add(&w, "a", false);
    add(&w, "a", false);
    add(&w, "a", false);
    add(&w, "dead", true); /* expired: its owner is no worker */
    add(&w, NULL, false);
    add(&w, NULL, false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.workers, 2);
    assert_int_equal(p.target, 3);
    assert_int_equal(p.n_take, 3);
    /* Free ones first, then the expired one. */
    assert_null(w.in[p.take[0]].l->owner);
    assert_null(w.in[p.take[1]].l->owner);
    assert_string_equal(w.in[p.take[2]].l->owner, "dead");
    kn__bal_plan_free(&p);
}

static void test_unprocessable_and_cooling_are_not_taken(void **state)
{
    (void)state;
    world_t w = {0};
    add(&w, NULL, false)->processable = false; /* finished, or parents not done */
    add(&w, NULL, false)->cooling = true;
    add(&w, NULL, false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.target, 2);
    assert_int_equal(p.n_take, 1);
    assert_string_equal(w.in[p.take[0]].l->key, w.keys[2]);
    kn__bal_plan_free(&p);
}

static void test_asks_the_busiest_only_when_it_helps(void **state)
{
    (void)state;
    world_t w = {0};
    /* 4 leases, a has 3, b has 1, me none: target 2 (3 workers: ceil(4/3)). */
    for (int i = 0; i < 3; i++)
        add(&w, "a", false);
    add(&w, "b", false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.workers, 3);
    assert_int_equal(p.target, 2);
    assert_int_equal(p.n_take, 0);
    assert_int_equal(p.n_ask, 1);
    assert_string_equal(w.in[p.ask[0]].l->owner, "a");
    kn__bal_plan_free(&p);
    /* steal.max 0: never asks. */
    p = plan(&w, INT32_MAX, 0);
    assert_int_equal(p.n_ask, 0);
    kn__bal_plan_free(&p);
    /* 3 leases, a 2, me 1: a move would only swap who has 2 (no ask). */
    world_t v = {0};
    add(&v, "a", false);
    add(&v, "a", false);
    add(&v, "me", false);
    p = plan(&v, INT32_MAX, 1);
    assert_int_equal(p.target, 2);
    assert_int_equal(p.mine, 1);
    assert_int_equal(p.n_ask, 0);
    kn__bal_plan_free(&p);
}

static void test_asks_at_most_steal_max_and_half_the_gap(void **state)
{
    (void)state;
    world_t w = {0};
    for (int i = 0; i < 8; i++)
        add(&w, "a", false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 10);
    assert_int_equal(p.target, 4);
    assert_int_equal(p.n_ask, 4); /* (8 - 0) / 2 */
    kn__bal_plan_free(&p);
    p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.n_ask, 1);
    kn__bal_plan_free(&p);
    /* A lease already in a handoff is not asked for again. */
    for (size_t i = 0; i < w.n; i++)
        w.l[i].checkpoint_owner = "x";
    p = plan(&w, INT32_MAX, 10);
    assert_int_equal(p.n_ask, 0);
    kn__bal_plan_free(&p);
}

static void test_leaving_leases_do_not_count_for_me(void **state)
{
    (void)state;
    world_t w = {0};
    add(&w, "me", false)->leaving = true; /* being handed over */
    add(&w, "b", false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.mine, 0);
    assert_int_equal(p.workers, 2);
    assert_int_equal(p.n_take, 0); /* it is not free for me to take back */
    kn__bal_plan_free(&p);
}

static void test_different_seeds_spread_the_takes(void **state)
{
    (void)state;
    world_t w = {0};
    for (int i = 0; i < 16; i++)
        add(&w, NULL, false);
    add(&w, "a", false);
    /* Two workers under target choose their first take differently for most seeds. */
    int differ = 0;
    for (uint32_t seed = 1; seed <= 20; seed++) {
        kn__bal_plan_t p1, p2;
        assert_int_equal(kn__balance_plan(w.in, w.n, "me", INT32_MAX, 1, seed, &p1), KN_ERR_OK);
        assert_int_equal(kn__balance_plan(w.in, w.n, "me", INT32_MAX, 1, seed * 7919u + 13u, &p2),
                         KN_ERR_OK);
        if (p1.take[0] != p2.take[0])
            differ++;
        kn__bal_plan_free(&p1);
        kn__bal_plan_free(&p2);
    }
    assert_true(differ >= 15);
}

static void test_neglected_leases_are_taken_beyond_the_share(void **state)
{
    (void)state;
    world_t w = {0};
    /* 4 leases, a capped at 1 by its own max, me at 2 = ceil(4/2): one left free. */
    add(&w, "a", false);
    add(&w, "me", false);
    add(&w, "me", false);
    kn__bal_in_t *left = add(&w, NULL, false);
    kn__bal_plan_t p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.target, 2);
    assert_int_equal(p.n_take, 0); /* not at once: it may be a newcomer's */
    kn__bal_plan_free(&p);
    left->neglected = true;        /* still free a failover time later */
    p = plan(&w, INT32_MAX, 1);
    assert_int_equal(p.n_take, 1);
    assert_ptr_equal(&w.in[p.take[0]], left);
    kn__bal_plan_free(&p);
    p = plan(&w, 2, 1);            /* but never beyond this worker's own max */
    assert_int_equal(p.n_take, 0);
    kn__bal_plan_free(&p);
}

/* ------------------------------------------------------------ sync plan */

static kn__shard_t shard(const char *id, const char *parent, const char *adjacent, bool open)
{
    kn__shard_t s = {0};
    s.shard_id = (char *)id;
    s.parent_shard_id = (char *)parent;
    s.adjacent_parent_shard_id = (char *)adjacent;
    s.end_seq = open ? NULL : "999";
    return s;
}

/* shard 0 split into 1 and 2, merged into 3; 4 a root still open. */
static kn__shard_t lineage[] = {
    {"shardId-000000000000", NULL, NULL, {0, 0}, {0, 0}, "1", "900"},
    {"shardId-000000000001", "shardId-000000000000", NULL, {0, 0}, {0, 0}, "2", "901"},
    {"shardId-000000000002", "shardId-000000000000", NULL, {0, 0}, {0, 0}, "3", "902"},
    {"shardId-000000000003", "shardId-000000000001", "shardId-000000000002", {0, 0}, {0, 0}, "4", NULL},
    {"shardId-000000000004", NULL, NULL, {0, 0}, {0, 0}, "5", NULL},
};

static const char *ck_of(const kn__sync_new_t *v, size_t n, size_t shard_index)
{
    for (size_t i = 0; i < n; i++)
        if (v[i].shard == shard_index)
            return v[i].checkpoint;
    return NULL;
}

static void test_first_sync_positions(void **state)
{
    (void)state;
    kn__shard_list_t l = {lineage, 5};
    kn__sync_new_t *v = NULL;
    size_t n = 0;
    bool first = false;
    /* LATEST: only open shards, at LATEST. */
    assert_int_equal(kn__sync_plan(&l, NULL, 0, KN__POS_LATEST, &v, &n, &first), KN_ERR_OK);
    assert_true(first);
    assert_int_equal(n, 2);
    assert_string_equal(ck_of(v, n, 3), "LATEST");
    assert_string_equal(ck_of(v, n, 4), "LATEST");
    free(v);
    /* TRIM_HORIZON and AT_TIMESTAMP: every shard. */
    assert_int_equal(kn__sync_plan(&l, NULL, 0, KN__POS_TRIM_HORIZON, &v, &n, &first), KN_ERR_OK);
    assert_int_equal(n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(ck_of(v, n, i), "TRIM_HORIZON");
    free(v);
    assert_int_equal(kn__sync_plan(&l, NULL, 0, KN__POS_AT_TIMESTAMP, &v, &n, &first), KN_ERR_OK);
    assert_int_equal(n, 5);
    assert_string_equal(ck_of(v, n, 0), "AT_TIMESTAMP");
    free(v);
}

static void test_later_syncs_follow_the_lineage(void **state)
{
    (void)state;
    kn__shard_list_t l = {lineage, 5};
    kn__sync_new_t *v = NULL;
    size_t n = 0;
    bool first = true;
    /* Shard 0 is leased (being read): its descendants get TRIM_HORIZON, however deep. */
    const char *keys0[] = {"shardId-000000000000", "shardId-000000000004"};
    assert_int_equal(kn__sync_plan(&l, keys0, 2, KN__POS_LATEST, &v, &n, &first), KN_ERR_OK);
    assert_false(first);
    assert_int_equal(n, 3);
    assert_string_equal(ck_of(v, n, 1), "TRIM_HORIZON");
    assert_string_equal(ck_of(v, n, 2), "TRIM_HORIZON");
    assert_string_equal(ck_of(v, n, 3), "TRIM_HORIZON");
    free(v);
    /* 0 finished and cleaned up, 1 and 2 leased: only 3 is missing. */
    const char *keys12[] = {"shardId-000000000001", "shardId-000000000002", "shardId-000000000004"};
    assert_int_equal(kn__sync_plan(&l, keys12, 3, KN__POS_LATEST, &v, &n, &first), KN_ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ck_of(v, n, 3), "TRIM_HORIZON");
    free(v);
    /* Everything done and cleaned up but 3 and 4: nothing to make. */
    const char *keys34[] = {"shardId-000000000003", "shardId-000000000004"};
    assert_int_equal(kn__sync_plan(&l, keys34, 2, KN__POS_TRIM_HORIZON, &v, &n, &first), KN_ERR_OK);
    assert_int_equal(n, 0);
    assert_null(v);
    /* A root that lost its lease gets the initial position; a closed root without one, none. */
    const char *keys3[] = {"shardId-000000000003"};
    assert_int_equal(kn__sync_plan(&l, keys3, 1, KN__POS_LATEST, &v, &n, &first), KN_ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ck_of(v, n, 4), "LATEST");
    free(v);
}

static void test_lease_of_a_shard(void **state)
{
    (void)state;
    kn__shard_t s = shard("shardId-000000000003", "shardId-000000000001", "shardId-000000000002", true);
    s.start_hash = (kn__hashkey_t){0, 0};
    memset(&s.end_hash, 0xff, sizeof(s.end_hash));
    kn__lease_t l;
    assert_int_equal(kn__sync_lease_of(&s, "TRIM_HORIZON", &l), KN_ERR_OK);
    assert_string_equal(l.key, "shardId-000000000003");
    assert_string_equal(l.checkpoint, "TRIM_HORIZON");
    assert_null(l.owner);
    assert_int_equal(l.n_parents, 2);
    assert_string_equal(l.parents[0], "shardId-000000000001");
    assert_string_equal(l.parents[1], "shardId-000000000002");
    assert_string_equal(l.start_hash, "0");
    assert_string_equal(l.end_hash, "340282366920938463463374607431768211455");
    kn__lease_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alone_takes_everything_free),
        cmocka_unit_test(test_fair_share_with_free_and_expired),
        cmocka_unit_test(test_unprocessable_and_cooling_are_not_taken),
        cmocka_unit_test(test_asks_the_busiest_only_when_it_helps),
        cmocka_unit_test(test_asks_at_most_steal_max_and_half_the_gap),
        cmocka_unit_test(test_leaving_leases_do_not_count_for_me),
        cmocka_unit_test(test_different_seeds_spread_the_takes),
        cmocka_unit_test(test_neglected_leases_are_taken_beyond_the_share),
        cmocka_unit_test(test_first_sync_positions),
        cmocka_unit_test(test_later_syncs_follow_the_lineage),
        cmocka_unit_test(test_lease_of_a_shard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
