/*
 * The public distributed lock (lib/lock.c): tc_lock_acquire and tc_lock_release. An expired
 * holder cannot release a lock someone else holds now; a wait of 0 tries once; a wait polls
 * in steps until the release or the deadline; a release wakes waiters in this process and,
 * through its invalidation message, in others. The multi-process test forks a child that
 * opens its own tc_cache on the suite's Redis with the same key prefix and talks to the
 * parent over pipes (as check_coherence.c does).
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "lock.h"
#include "testing.h"
#include "testutil.h"

static char prefix[64];

static void fresh_prefix(void)
{
    tcf_unique_prefix(prefix, sizeof prefix);
}

static void options(tc_options *o)
{
    tc_options_init(o);
    o->redis_url = tct_redis.url;
    o->key_prefix = prefix;
}

static tc_cache *open_default(void)
{
    tc_options o;
    options(&o);
    return tct_open(&o);
}

static int64_t ms_since(int64_t t0)
{
    return (tc__now_ns() - t0) / 1000000;
}

/* A Redis command on the suite's server; the reply as a string the caller frees. */
static char *redis(const char *a0, const char *a1, const char *a2)
{
    const char *argv[] = {a0, a1, a2, NULL};
    return tct_redis_cmd(argv);
}

static long long redis_int(const char *a0, const char *a1, const char *a2)
{
    char *s = redis(a0, a1, a2);
    ck_assert_ptr_nonnull(s);
    long long v = atoll(s);
    free(s);
    return v;
}

/* "<prefix>:1:<key>" */
static const char *rkey(const char *key)
{
    static char buf[256];
    snprintf(buf, sizeof buf, "%s:1:%s", prefix, key);
    return buf;
}

static int child_fail(FILE *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(out, "FAIL ");
    vfprintf(out, fmt, ap);
    fprintf(out, "\n");
    va_end(ap);
    return 1;
}

START_TEST(test_lock_expired_holder_cannot_release)
{
    fresh_prefix();
    tc_cache *c = open_default();
    tc_lock *a = NULL, *b = NULL;
    ck_assert_int_eq(tc_lock_acquire(c, "lock:job", 200, 0, &a), TC_OK);
    ck_assert_str_eq(tc__lock_key_of(a), rkey("lock:job"));
    ck_assert_uint_eq(strlen(tc__lock_token_of(a)), TC_LOCK_TOKEN_HEX);
    ck_assert_int_eq(tc_lock_acquire(c, "lock:job", 5000, 0, &b), TC_ERR_TIMEOUT);
    ck_assert_ptr_null(b);
    tct_sleep_ms(300); /* A stalls past its TTL */
    ck_assert_int_eq(tc_lock_acquire(c, "lock:job", 5000, 0, &b), TC_OK);
    char btoken[TC_LOCK_TOKEN_HEX + 1];
    snprintf(btoken, sizeof btoken, "%s", tc__lock_token_of(b));
    ck_assert_str_ne(tc__lock_token_of(a), btoken);
    ck_assert_int_eq(tc_lock_release(a), TC_MISS); /* not A's any more */
    char *held = redis("GET", rkey("lock:job"), NULL);
    ck_assert_str_eq(held, btoken); /* B's lock still stands */
    free(held);
    ck_assert_int_gt(redis_int("PTTL", rkey("lock:job"), NULL), 4000);
    ck_assert_int_eq(tc_lock_release(b), TC_OK);
    ck_assert_int_eq(redis_int("EXISTS", rkey("lock:job"), NULL), 0);
    tc_close(c);
}
END_TEST

/* SET commands run so far, over every server (a cluster's nodes). */
static long long set_calls(void)
{
    const char *argv[] = {"INFO", "commandstats", NULL};
    long long n = 0;
    for (int i = 0; i < tct_server_count(); i++) {
        char *info = tct_redis_cmd_on(i, argv);
        ck_assert_ptr_nonnull(info);
        char *p = strstr(info, "cmdstat_set:calls=");
        n += p ? atoll(p + strlen("cmdstat_set:calls=")) : 0;
        free(info);
    }
    return n;
}

START_TEST(test_lock_wait_zero_tries_once)
{
    fresh_prefix();
    tc_cache *c = open_default();
    tc_lock *held = NULL, *l = NULL;
    ck_assert_int_eq(tc_lock_acquire(c, "once", 10000, 0, &held), TC_OK);
    long long before = set_calls();
    int64_t t0 = tc__now_ns();
    ck_assert_int_eq(tc_lock_acquire(c, "once", 10000, 0, &l), TC_ERR_TIMEOUT);
    ck_assert_int_lt(ms_since(t0), 50);
    ck_assert_int_eq(set_calls() - before, 1);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(tc_lock_release(held), TC_OK);
    tc_close(c);
}
END_TEST

typedef struct releaser {
    tc_lock *l;
    int after_ms;
} releaser;

static void *release_later(void *arg)
{
    releaser *r = arg;
    tct_sleep_ms(r->after_ms);
    ck_assert_int_eq(tc_lock_release(r->l), TC_OK);
    return NULL;
}

START_TEST(test_lock_wait_until_released_or_deadline)
{
    fresh_prefix();
    tc_cache *c = open_default();
    tc_lock *held = NULL, *l = NULL;
    ck_assert_int_eq(tc_lock_acquire(c, "w", 10000, 0, &held), TC_OK);
    int64_t t0 = tc__now_ns();
    ck_assert_int_eq(tc_lock_acquire(c, "w", 10000, 200, &l), TC_ERR_TIMEOUT);
    int64_t ms = ms_since(t0);
    ck_assert_int_ge(ms, 195);
    ck_assert_int_lt(ms, 500);
    long long before = set_calls();
    releaser r = {held, 150};
    pthread_t th;
    pthread_create(&th, NULL, release_later, &r);
    t0 = tc__now_ns();
    ck_assert_int_eq(tc_lock_acquire(c, "w", 10000, 5000, &l), TC_OK);
    ms = ms_since(t0);
    pthread_join(th, NULL);
    ck_assert_int_ge(ms, 140);
    ck_assert_int_lt(ms, 600);
    /* Polled in steps, not in a busy loop: a handful of tries over 150 ms. */
    ck_assert_int_lt(set_calls() - before, 20);
    ck_assert_int_eq(tc_lock_release(l), TC_OK);
    /* Arguments. */
    ck_assert_int_eq(tc_lock_acquire(c, "w", 0, 0, &l), TC_ERR_ARG);
    ck_assert_int_eq(tc_lock_acquire(c, "w", 100, -1, &l), TC_ERR_ARG);
    ck_assert_int_eq(tc_lock_acquire(c, "bad name", 100, 0, &l), TC_ERR_ARG);
    ck_assert_int_eq(tc_lock_acquire(c, "w", 100, 0, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_lock_acquire(NULL, "w", 100, 0, &l), TC_ERR_ARG);
    ck_assert_int_eq(tc_lock_release(NULL), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

/* A child that holds the lock "x" until told "go", then releases it 200 ms later. */
static int holder_child(FILE *in, FILE *out, void *arg)
{
    TC_UNUSED(arg);
    tc_cache *c = open_default();
    tc_lock *l = NULL;
    if (tc_lock_acquire(c, "x", 30000, 0, &l) != TC_OK)
        return child_fail(out, "cannot take the lock");
    fprintf(out, "held\n");
    tct_wait_line(in, "go");
    tct_sleep_ms(200);
    tc_status st = tc_lock_release(l);
    tc_close(c);
    return st == TC_OK ? 0 : child_fail(out, "release: %s", tc_strerror(st));
}

/* A waiter whose poll step (10 s) is longer than its wait (5 s) can only get the lock before
 * its deadline if the release wakes it: from another process through the release's
 * invalidation message, and from this process directly. */
START_TEST(test_lock_release_wakes_waiters)
{
    fresh_prefix();
    tct_proc p;
    tct_proc_start(&p, holder_child, NULL); /* before any thread exists */
    tct_proc_expect(&p, "held");
    tc_cache *c = open_default();
    tc__test_set_lock_poll_ms(c, 10000);
    tc_lock *l = NULL;
    ck_assert_int_eq(tc_lock_acquire(c, "x", 10000, 0, &l), TC_ERR_TIMEOUT);
    tct_proc_say(&p, "go");
    int64_t t0 = tc__now_ns();
    ck_assert_int_eq(tc_lock_acquire(c, "x", 10000, 5000, &l), TC_OK);
    ck_assert_int_lt(ms_since(t0), 2500);
    tct_proc_finish(&p);

    releaser r = {l, 200};
    pthread_t th;
    pthread_create(&th, NULL, release_later, &r);
    tc_lock *again = NULL;
    t0 = tc__now_ns();
    ck_assert_int_eq(tc_lock_acquire(c, "x", 10000, 5000, &again), TC_OK);
    ck_assert_int_lt(ms_since(t0), 2500);
    pthread_join(th, NULL);
    ck_assert_int_eq(tc_lock_release(again), TC_OK);
    tc_close(c);
}
END_TEST

static Suite *lock_suite(void)
{
    Suite *s = suite_create("lock");
    struct {
        const char *name;
        const TTest *tests[2];
    } groups[] = {
        {"lock_safety", {test_lock_expired_holder_cannot_release}},
        {"lock_try_once", {test_lock_wait_zero_tries_once}},
        {"lock_wait", {test_lock_wait_until_released_or_deadline}},
        {"lock_wake", {test_lock_release_wakes_waiters}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, 60);
        for (int i = 0; groups[g].tests[i]; i++)
            tcase_add_test(tc, groups[g].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(lock_suite(), true);
}
