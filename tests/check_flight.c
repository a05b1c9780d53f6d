/*
 * The single-flight table (lib/flight.c) on its own, without Redis: a waiter shares its
 * leader's value, a waiter whose leader never finishes leaves at its deadline, both leave
 * the table empty, and the table's random source stays in (0, 1]. tc_get_or_set, which
 * uses the table, is tested in check_load.c; the Redis locks in check_lock.c.
 */
#include "config.h"

#include <pthread.h>

#include "flight.h"
#include "testutil.h"

static int64_t ms_since(int64_t t0)
{
    return (tc__now_ns() - t0) / 1000000;
}

/* The table on its own: a waiter shares the leader's value; a waiter whose leader never
 * finishes times out; both leave the table empty. */
typedef struct table_waiter {
    tc_flights *fs;
    tc_flight *f;
    int64_t deadline;
    tc_flight_result res;
} table_waiter;

static void *table_wait(void *arg)
{
    table_waiter *w = arg;
    tc__flight_wait(w->fs, w->f, w->deadline, &w->res);
    return NULL;
}

START_TEST(test_flight_table_share_and_timeout)
{
    tc_flights *fs;
    ck_assert_int_eq(tc__flights_new(&fs), TC_OK);
    tc_flight_role role;
    tc_flight *f = tc__flight_join(fs, 42, "key", 3, false, &role);
    ck_assert_int_eq(role, TC_FLIGHT_LEADER);
    tc_flight *g = tc__flight_join(fs, 42, "key", 3, false, &role);
    ck_assert_int_eq(role, TC_FLIGHT_WAITER);
    ck_assert_ptr_eq(f, g);
    /* Same hash, another key: another flight. */
    tc_flight *h = tc__flight_join(fs, 42, "kez", 3, false, &role);
    ck_assert_int_eq(role, TC_FLIGHT_LEADER);
    ck_assert_ptr_null(tc__flight_try_lead(fs, 42, "key", 3));
    /* An early refresh is joined only on request. */
    tc_flight *rf = tc__flight_try_lead(fs, 7, "ref", 3);
    ck_assert_ptr_nonnull(rf);
    ck_assert_ptr_null(tc__flight_join(fs, 7, "ref", 3, false, &role));
    ck_assert_int_eq(role, TC_FLIGHT_REFRESHING);
    tc_flight_result done = {TC_OK, NULL, false};
    tc__flight_finish(fs, rf, &done);
    ck_assert_uint_eq(tc__flights_count(fs), 2);
    table_waiter w = {fs, g, tc__deadline_after_ms(5000), {0}};
    pthread_t th;
    pthread_create(&th, NULL, table_wait, &w);
    tct_sleep_ms(20);
    tc_ref *val = tc__ref_copy("shared", 6);
    tc_flight_result res = {TC_OK, val, false};
    tc__flight_finish(fs, f, &res);
    pthread_join(th, NULL);
    ck_assert_int_eq(w.res.st, TC_OK);
    ck_assert_ptr_eq(w.res.val, val); /* the very same value, a reference each */
    tc__ref_drop(w.res.val);
    tc__ref_drop(val);
    /* A waiter of a leader that never finishes leaves at its deadline. */
    tc_flight *h2 = tc__flight_join(fs, 42, "kez", 3, false, &role);
    ck_assert_int_eq(role, TC_FLIGHT_WAITER);
    int64_t t0 = tc__now_ns();
    tc_flight_result late;
    ck_assert_int_eq(tc__flight_wait(fs, h2, tc__deadline_after_ms(100), &late), TC_ERR_TIMEOUT);
    ck_assert_int_ge(ms_since(t0), 95);
    ck_assert_ptr_null(late.val);
    tc_flight_result fail = {TC_ERR_LOADER, NULL, false};
    tc__flight_finish(fs, h, &fail);
    ck_assert_uint_eq(tc__flights_count(fs), 0);
    /* The random source stays in (0, 1]. */
    for (int i = 0; i < 10000; i++) {
        double u = tc__flights_rand01(fs);
        ck_assert(u > 0 && u <= 1);
    }
    tc__flights_free(fs);
}
END_TEST

static Suite *flight_suite(void)
{
    Suite *s = suite_create("flight");
    TCase *tc = tcase_create("table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_flight_table_share_and_timeout);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(flight_suite(), false);
}
