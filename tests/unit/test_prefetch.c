/*
 * Unit tests for consumer/prefetch.c: the prefetch bound admits calls while
 * their budgets fit, always admits when nothing is held, and gives room in
 * the order the shards asked for it, so that a large budget is not passed
 * over by smaller ones that would fit first.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "prefetch.h"

#define MIB (1024 * 1024)

static void test_admits_while_budgets_fit(void **state)
{
    (void)state;
    kn__rbudget_t b;
    kn__rbudget_init(&b, 4 * MIB);
    kn__rwait_t w[5] = {0};
    for (int i = 0; i < 4; i++)
        assert_true(kn__rbudget_admit(&b, &w[i], MIB));
    assert_int_equal(b.reserved, 4 * MIB);
    assert_false(kn__rbudget_admit(&b, &w[4], 1)); /* a byte over */
    assert_true(w[4].queued);
    assert_int_equal(atomic_load(&b.waiting), 1);
    assert_null(kn__rbudget_ready(&b));
    kn__rbudget_unreserve(&b, MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &w[4]);
    assert_true(kn__rbudget_admit(&b, &w[4], 1));
    assert_false(w[4].queued);
    assert_int_equal(atomic_load(&b.waiting), 0);
    assert_int_equal(b.reserved, 3 * MIB + 1);
    kn__rbudget_destroy(&b);
}

static void test_answers_held_count_too(void **state)
{
    (void)state;
    kn__rbudget_t b;
    kn__rbudget_init(&b, 2 * MIB);
    kn__rwait_t a = {0}, c = {0};
    kn__rbudget_hold(&b, 2 * MIB);
    assert_false(kn__rbudget_admit(&b, &a, 1));
    kn__rbudget_release(&b, MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &a);
    assert_true(kn__rbudget_admit(&b, &a, MIB));
    /* Held exactly at the bound: one more byte waits. */
    assert_false(kn__rbudget_admit(&b, &c, 1));
    kn__rbudget_cancel(&b, &c);
    kn__rbudget_destroy(&b);
}

static void test_budget_over_the_bound_goes_when_nothing_is_held(void **state)
{
    (void)state;
    kn__rbudget_t b;
    kn__rbudget_init(&b, MIB);
    kn__rwait_t big = {0}, small = {0};
    assert_true(kn__rbudget_admit(&b, &big, 4 * MIB)); /* nothing held: it goes */
    assert_false(kn__rbudget_admit(&b, &small, 1));    /* while it runs, nothing else */
    kn__rbudget_unreserve(&b, 4 * MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &small);
    assert_true(kn__rbudget_admit(&b, &small, 1));
    kn__rbudget_destroy(&b);
}

/*
 * A large budget waits at the head; smaller ones that would fit now wait
 * behind it, and room goes out in the order asked.
 */
static void test_room_in_the_order_asked(void **state)
{
    (void)state;
    kn__rbudget_t b;
    kn__rbudget_init(&b, 4 * MIB);
    kn__rwait_t running = {0}, big = {0}, s1 = {0}, s2 = {0};
    assert_true(kn__rbudget_admit(&b, &running, MIB));
    assert_false(kn__rbudget_admit(&b, &big, 4 * MIB)); /* needs everything free */
    assert_false(kn__rbudget_admit(&b, &s1, MIB));      /* would fit, but big asked first */
    assert_false(kn__rbudget_admit(&b, &s2, MIB));
    assert_int_equal(atomic_load(&b.waiting), 3);
    assert_null(kn__rbudget_ready(&b));
    /* Asking again keeps the place in the queue; s1 is still not first. */
    assert_false(kn__rbudget_admit(&b, &s1, MIB));
    assert_int_equal(atomic_load(&b.waiting), 3);
    kn__rbudget_unreserve(&b, MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &big);
    assert_false(kn__rbudget_admit(&b, &s1, MIB)); /* big first */
    assert_true(kn__rbudget_admit(&b, &big, 4 * MIB));
    assert_null(kn__rbudget_ready(&b));
    kn__rbudget_unreserve(&b, 4 * MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &s1);
    assert_true(kn__rbudget_admit(&b, &s1, MIB));
    assert_ptr_equal(kn__rbudget_ready(&b), &s2);
    assert_true(kn__rbudget_admit(&b, &s2, MIB));
    assert_null(kn__rbudget_ready(&b));
    assert_int_equal(atomic_load(&b.waiting), 0);
    assert_int_equal(b.reserved, 2 * MIB);
    kn__rbudget_destroy(&b);
}

/* A waiter that gives up (its shard stopped) leaves its place: the ones behind move up. */
static void test_cancel_anywhere_in_the_queue(void **state)
{
    (void)state;
    kn__rbudget_t b;
    kn__rbudget_init(&b, MIB);
    kn__rwait_t run = {0}, w[4] = {0};
    assert_true(kn__rbudget_admit(&b, &run, MIB));
    for (int i = 0; i < 4; i++)
        assert_false(kn__rbudget_admit(&b, &w[i], MIB / 2));
    kn__rbudget_cancel(&b, &w[2]); /* middle */
    kn__rbudget_cancel(&b, &w[0]); /* head */
    kn__rbudget_cancel(&b, &w[0]); /* twice: nothing */
    assert_int_equal(atomic_load(&b.waiting), 2);
    kn__rbudget_unreserve(&b, MIB);
    assert_ptr_equal(kn__rbudget_ready(&b), &w[1]);
    assert_true(kn__rbudget_admit(&b, &w[1], MIB / 2));
    assert_ptr_equal(kn__rbudget_ready(&b), &w[3]);
    kn__rbudget_cancel(&b, &w[3]); /* tail */
    assert_null(kn__rbudget_ready(&b));
    assert_null(b.head);
    assert_null(b.tail);
    /* The queue works again after emptying. */
    assert_true(kn__rbudget_admit(&b, &w[0], MIB / 2));
    assert_false(kn__rbudget_admit(&b, &w[2], MIB));
    assert_ptr_equal(b.head, &w[2]);
    assert_ptr_equal(b.tail, &w[2]);
    kn__rbudget_cancel(&b, &w[2]);
    kn__rbudget_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admits_while_budgets_fit),
        cmocka_unit_test(test_answers_held_count_too),
        cmocka_unit_test(test_budget_over_the_bound_goes_when_nothing_is_held),
        cmocka_unit_test(test_room_in_the_order_asked),
        cmocka_unit_test(test_cancel_anywhere_in_the_queue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
