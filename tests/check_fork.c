/*
 * A cache opened before fork() and used in the child: the child never serves what the
 * parent's local tier held once it may be stale, hears invalidations on its own
 * subscriber, sends nothing on the parent's connections, and leaves the parent working.
 *
 * The children are forked from a test process that has opened a cache (and so runs a
 * subscriber thread), then start threads of their own (their subscriber). ThreadSanitizer
 * cannot start threads in the child of a multithreaded process, so under TSan only the
 * tests whose parent runs no thread (TC_COHERENCE_NONE) run; the others run in the plain
 * and ASan builds.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "testing.h"
#include "testutil.h"

/* Generous: an invalidation takes milliseconds; sanitizer builds are slow. */
#define BOUND_MS 2000

static tc_cache *pc; /* the parent's cache, inherited by the children */
static char prefix[64];
static char logged[4096]; /* what log_fn received in this process */

static void log_to_buf(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%s\n", msg);
}

static tc_cache *open_mode(tc_coherence mode)
{
    tc_options o;
    tc_options_init(&o);
    tcf_unique_prefix(prefix, sizeof prefix);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.coherence = mode;
    o.log_fn = log_to_buf;
    return tct_open(&o);
}

static int child_fail(FILE *out, const char *what, const char *detail)
{
    fprintf(out, "FAIL %s: %s\n", what, detail);
    return 1;
}

static bool reads_as(tc_cache *c, const char *key, const char *want)
{
    char buf[64];
    return tct_read_str(c, key, buf, sizeof buf) == TC_OK && strcmp(buf, want) == 0;
}

static void set_str(tc_cache *c, const char *key, const char *val)
{
    ck_assert_int_eq(tc_set(c, key, val, strlen(val), TC_TTL_DEFAULT), TC_OK);
}

/* A write by another process (Redis's own client: no invalidation reaches anyone), made
 * before the child's first read, is what the child reads: not the copy in the tier it
 * inherited. _i 0: broadcast; 1: TC_COHERENCE_NONE, where the parent runs no thread and the
 * child starts none, which TSan allows. */
static int fresh_reader_child(FILE *in, FILE *out, void *arg)
{
    (void)arg;
    tct_wait_line(in, "written");
    if (!reads_as(pc, "k", "new"))
        return child_fail(out, "read", "the inherited copy");
    if (tc_set(pc, "c", "child", 5, TC_TTL_DEFAULT) != TC_OK)
        return child_fail(out, "set", "");
    tc_close(pc);
    return 0;
}

START_TEST(test_fork_no_inherited_copy)
{
    pc = open_mode(_i ? TC_COHERENCE_NONE : TC_COHERENCE_BROADCAST);
    set_str(pc, "k", "old");
    tct_expect(pc, "k", TC_OK, "old");
    tct_proc p;
    tct_proc_start(&p, fresh_reader_child, NULL);
    char rkey[128];
    snprintf(rkey, sizeof rkey, "%s:1:k", prefix);
    const char *argv[] = {"SET", rkey, "new", NULL};
    free(tct_redis_cmd(argv));
    tct_proc_say(&p, "written");
    tct_proc_finish(&p);
    tct_expect(pc, "c", TC_OK, "child");
    tc_close(pc);
}
END_TEST

#ifndef UNDER_TSAN
/* Polls key until it reads as want or BOUND_MS passes. */
static bool wait_for(tc_cache *c, const char *key, const char *want)
{
    int64_t t0 = tc__now_ns();
    while (tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000) {
        if (reads_as(c, key, want))
            return true;
        usleep(1000);
    }
    return false;
}

static uint64_t local_hits(tc_cache *c)
{
    tc_stats s;
    tc_stats_get(c, &s);
    return s.local_hits;
}

/* The parent's cache still works after a child used it and exited: its pool answers, its
 * link never went down, and its subscriber hears a write by another process. */
static int writer_child(FILE *in, FILE *out, void *arg)
{
    (void)in;
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    tc_cache *c = NULL;
    if (tc_open(&o, &c) != TC_OK)
        return child_fail(out, "open", "");
    tc_status st = tc_set(c, (const char *)arg, "from-other", 10, TC_TTL_DEFAULT);
    tc_close(c);
    return st == TC_OK ? 0 : child_fail(out, "set", tc_strerror(st));
}

static void assert_parent_fine(const char *key)
{
    set_str(pc, key, "parent");
    tct_expect(pc, key, TC_OK, "parent");
    tct_expect(pc, key, TC_OK, "parent"); /* a local hit: the link is trusted */
    tc_stats s;
    tc_stats_get(pc, &s);
    ck_assert_uint_eq(s.inval_link_failures, 0);
    tct_proc w;
    tct_proc_start(&w, writer_child, (void *)key);
    tct_proc_finish(&w);
    ck_assert_msg(wait_for(pc, key, "from-other"), "the parent no longer hears invalidations");
}

/* ------------------------------------------------------------------ the scenario */

static int reader_child(FILE *in, FILE *out, void *arg)
{
    (void)arg;
    char buf[64];
    /* The parent's tier holds "k" = "old"; so does Redis: the child reads it from Redis
     * (its own tier is empty), then locally. */
    if (tct_read_str(pc, "k", buf, sizeof buf) != TC_OK || strcmp(buf, "old") != 0)
        return child_fail(out, "first read", buf);
    if (local_hits(pc) != 0)
        return child_fail(out, "first read", "served by the inherited tier");
    if (!reads_as(pc, "k", "old") || local_hits(pc) != 1)
        return child_fail(out, "second read", "not a local hit");
    if (!strstr(logged, "fork detected"))
        return child_fail(out, "log", "no line about the fork");
    fprintf(out, "ready\n");
    tct_wait_line(in, "written");
    if (!wait_for(pc, "k", "new"))
        return child_fail(out, "after the write", "still the old value");
    fprintf(out, "ok\n");
    tc_close(pc);
    return 0;
}

/* The parent opens a cache, reads "k" (= v1, a local hit), forks fn, and writes v2 once
 * the child says "ready"; the child says "ok" when it read v2. The parent then still works. */
static void write_after_fork(tct_child_fn fn, void *arg, const char *v1, const char *v2)
{
    pc = open_mode(TC_COHERENCE_BROADCAST);
    set_str(pc, "k", v1);
    tct_expect(pc, "k", TC_OK, v1);
    ck_assert_uint_eq(local_hits(pc), 1);
    tct_proc p;
    tct_proc_start(&p, fn, arg);
    tct_proc_expect(&p, "ready");
    set_str(pc, "k", v2);
    tct_proc_say(&p, "written");
    tct_proc_expect(&p, "ok");
    tct_proc_finish(&p);
    assert_parent_fine("k");
    tc_close(pc);
}

START_TEST(test_fork_child_sees_new_value)
{
    write_after_fork(reader_child, NULL, "old", "new");
}
END_TEST

/* ------------------------------------------------------------------ the parent */

static int closer_child(FILE *in, FILE *out, void *arg)
{
    (void)in;
    (void)out;
    bool use = arg != NULL;
    alarm(10); /* a join of the parent's subscriber would hang here */
    if (use && !reads_as(pc, "k", "v"))
        return child_fail(out, "read", "");
    if (use && tc_set(pc, "c", "child", 5, TC_TTL_DEFAULT) != TC_OK)
        return child_fail(out, "set", "");
    tc_close(pc);
    return 0;
}

START_TEST(test_fork_parent_unaffected)
{
    pc = open_mode(TC_COHERENCE_BROADCAST);
    set_str(pc, "k", "v");
    tct_expect(pc, "k", TC_OK, "v");
    /* One child closes the inherited handle at once, one uses it first. */
    for (int i = 0; i < 2; i++) {
        tct_proc p;
        tct_proc_start(&p, closer_child, i ? (void *)1 : NULL);
        tct_proc_finish(&p);
    }
    tct_expect(pc, "c", TC_OK, "child");
    assert_parent_fine("k");
    tc_close(pc);
}
END_TEST

/* A lock taken before the fork is the parent's: the child's release leaves it alone. */
static int lock_child(FILE *in, FILE *out, void *arg)
{
    (void)in;
    tc_status st = tc_lock_release(arg);
    return st == TC_MISS ? 0 : child_fail(out, "release", tc_strerror(st));
}

START_TEST(test_fork_lock_stays_the_parents)
{
    pc = open_mode(TC_COHERENCE_BROADCAST);
    tc_lock *l = NULL;
    ck_assert_int_eq(tc_lock_acquire(pc, "lk", 10000, 0, &l), TC_OK);
    tct_proc p;
    tct_proc_start(&p, lock_child, l);
    tct_proc_finish(&p);
    tc_lock *other = NULL;
    ck_assert_int_eq(tc_lock_acquire(pc, "lk", 10000, 0, &other), TC_ERR_TIMEOUT);
    ck_assert_int_eq(tc_lock_release(l), TC_OK);
    tc_close(pc);
}
END_TEST

/* ------------------------------------------------------------------ a fork in a fork */

static int grandchild(FILE *in, FILE *out, void *arg)
{
    (void)arg;
    if (!reads_as(pc, "k", "v1") || !reads_as(pc, "k", "v1") || local_hits(pc) != 1)
        return child_fail(out, "grandchild read", "");
    fprintf(out, "ready\n");
    tct_wait_line(in, "written");
    if (!wait_for(pc, "k", "v2"))
        return child_fail(out, "grandchild", "still v1");
    fprintf(out, "ok\n");
    tc_close(pc);
    return 0;
}

static int middle_child(FILE *in, FILE *out, void *arg)
{
    bool use_first = arg != NULL;
    if (use_first && (!reads_as(pc, "k", "v1") || !reads_as(pc, "k", "v1")))
        return child_fail(out, "child read", "");
    tct_proc g;
    tct_proc_start(&g, grandchild, NULL);
    tct_proc_expect(&g, "ready");
    fprintf(out, "ready\n");
    tct_wait_line(in, "written");
    tct_proc_say(&g, "written");
    tct_proc_expect(&g, "ok");
    tct_proc_finish(&g);
    if (!wait_for(pc, "k", "v2"))
        return child_fail(out, "child", "still v1");
    fprintf(out, "ok\n");
    tc_close(pc);
    return 0;
}

START_TEST(test_fork_in_fork)
{
    /* _i 0: the child forks before touching the cache; 1: after it made it its own. */
    write_after_fork(middle_child, _i ? (void *)1 : NULL, "v1", "v2");
}
END_TEST
#ifndef UNDER_ASAN /* see fork_suite */
/* ------------------------------------------------------------------ mid-operation */

static atomic_bool stop_workers;

static tc_status load_fn(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    return tc_buf_append(out, "loaded", 6);
}

/* Writes, reads and loads as fast as it can, so a fork lands mid-operation. */
static void *worker(void *arg)
{
    long id = (long)arg;
    char key[32];
    unsigned i = 0;
    while (!atomic_load(&stop_workers)) {
        snprintf(key, sizeof key, "w%ld:%u", id, i++ % 64);
        tc_value v;
        (void)tc_set(pc, key, "x", 1, TC_TTL_DEFAULT);
        if (tc_get(pc, key, &v) == TC_OK)
            tc_value_release(&v);
        if (tc_get_or_set(pc, key, load_fn, NULL, 1000, &v) == TC_OK)
            tc_value_release(&v);
        (void)tc_delete(pc, key);
    }
    return NULL;
}

static int busy_child(FILE *in, FILE *out, void *arg)
{
    (void)in;
    (void)arg;
    alarm(20); /* a lock a thread of the parent held would hang us */
    pthread_t t;
    /* The child's own thread too, racing its first call against ours. */
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return child_fail(out, "thread", "");
    char key[32];
    snprintf(key, sizeof key, "child:%d", (int)getpid());
    bool ok = tc_set(pc, key, "mine", 4, TC_TTL_DEFAULT) == TC_OK && reads_as(pc, key, "mine") &&
              reads_as(pc, "k", "v");
    atomic_store(&stop_workers, true);
    pthread_join(t, NULL);
    tc_close(pc);
    return ok ? 0 : child_fail(out, "child", "a call failed");
}

START_TEST(test_fork_mid_operation)
{
    pc = open_mode(TC_COHERENCE_BROADCAST);
    set_str(pc, "k", "v");
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, worker, (void *)i), 0);
    for (int n = 0; n < 8; n++) {
        usleep(5000);
        tct_proc p;
        tct_proc_start(&p, busy_child, NULL);
        tct_proc_finish(&p);
    }
    atomic_store(&stop_workers, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_parent_fine("k");
    tc_close(pc);
}
END_TEST
#endif /* UNDER_ASAN */
#endif /* UNDER_TSAN */

static Suite *fork_suite(void)
{
    Suite *s = suite_create("fork");
    struct {
        const char *name;
        const TTest *fn;
        int first, loops;
    } cases[] = {
#ifndef UNDER_TSAN
        {"child_sees_new_value", test_fork_child_sees_new_value, 0, 1},
        {"no_inherited_copy", test_fork_no_inherited_copy, 0, 2},
        {"parent_unaffected", test_fork_parent_unaffected, 0, 1},
        {"lock_stays_the_parents", test_fork_lock_stays_the_parents, 0, 1},
        {"in_fork", test_fork_in_fork, 0, 2},
#ifndef UNDER_ASAN
        /* Under ASan this test's process has been killed (SIGKILL) in loaded CI runs, cause
         * not found yet; the gcc and clang builds run it. */
        {"mid_operation", test_fork_mid_operation, 0, 1},
#endif
#else
        {"no_inherited_copy", test_fork_no_inherited_copy, 1, 2},
#endif
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, cases[i].fn, cases[i].first, cases[i].loops);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(fork_suite(), true);
}
