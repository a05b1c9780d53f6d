/*
 * Coherence across processes: every test forks children that each open their own tc_cache
 * on the suite's Redis with the same key prefix, and talk to the parent over pipes.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cache.h"
#include "inval.h"
#include "key.h"
#include "local.h"
#include "redis_conn.h"
#include "remote.h"
#include "testing.h"
#include "testutil.h"

/* Generous: the healthy-link delay is milliseconds; sanitizer builds are slow. */
#define BOUND_MS 1000

static char prefix[64];

static void fresh_prefix(void)
{
    tcf_unique_prefix(prefix, sizeof prefix);
}

static void options_mode(tc_options *o, tc_coherence mode)
{
    tc_options_init(o);
    o->redis_url = tct_redis.url;
    o->key_prefix = prefix;
    o->coherence = mode;
}

static tc_cache *open_mode_shadow(tc_coherence mode, unsigned shadow_rate)
{
    tc_options o;
    options_mode(&o, mode);
    o.shadow_rate = shadow_rate;
    return tct_open(&o);
}

/* Broadcast mode on url with the given recovery. */
static tc_cache *open_recovery(const char *url, tc_recovery rec)
{
    tc_options o;
    options_mode(&o, TC_COHERENCE_BROADCAST);
    o.redis_url = url;
    o.recovery = rec;
    return tct_open(&o);
}

static tc_cache *open_mode(tc_coherence mode)
{
    return open_mode_shadow(mode, 0);
}

/* ------------------------------------------------------------------ child processes
 *
 * Children are forked while the test process has no thread of its own yet (before it opens
 * a cache): a child of a multi-threaded process may not start threads under ThreadSanitizer,
 * and POSIX only promises async-signal-safe calls there. Each child waits for "go". */

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

/* Polls key until it reads as want (NULL: a miss) or BOUND_MS passes; returns the delay
 * in microseconds, or -1. */
static long wait_for(tc_cache *c, const char *key, const char *want)
{
    int64_t t0 = tc__now_ns();
    char buf[128];
    while (tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000) {
        tc_status st = tct_read_str(c, key, buf, sizeof buf);
        if (want ? (st == TC_OK && strcmp(buf, want) == 0) : st == TC_MISS)
            return (long)((tc__now_ns() - t0) / 1000);
    }
    return -1;
}

/* ------------------------------------------------------------------ a hot key is replaced */

typedef enum op { OP_SET, OP_DELETE, OP_INCR, OP_TOUCH, OP_SET_MANY, OP_DELETE_MANY, OP_CLEAR } op;
static const char *const op_names[] = {"set",      "delete",      "incr", "touch",
                                       "set_many", "delete_many", "clear"};

/* What the key reads as in the other process after the op. NULL: a miss. For touch the
 * value is unchanged and the local copy must be gone (seen as a remote hit). */
static const char *const after_op[] = {"20", NULL, "11", "10", "30", NULL, NULL};

static int reader_child(FILE *in, FILE *out, void *arg)
{
    op o = (op)(intptr_t)arg;
    tct_wait_line(in, "go");
    tc_cache *c = open_mode(TC_COHERENCE_BROADCAST);
    char buf[64];
    if (tct_read_str(c, "hot", buf, sizeof buf) != TC_OK || strcmp(buf, "10") != 0)
        return child_fail(out, "initial read: '%s'", buf);
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    tct_read_str(c, "hot", buf, sizeof buf);
    tc_stats_get(c, &s1);
    if (s1.local_hits != s0.local_hits + 1)
        return child_fail(out, "the value was not served locally");
    fprintf(out, "ready\n");
    tct_wait_line(in, "done");
    long us;
    if (o == OP_TOUCH) {
        int64_t t0 = tc__now_ns();
        us = -1;
        while (tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000 && us < 0) {
            tc_stats_get(c, &s0);
            tct_read_str(c, "hot", buf, sizeof buf);
            tc_stats_get(c, &s1);
            if (s1.remote_hits > s0.remote_hits)
                us = (long)((tc__now_ns() - t0) / 1000);
        }
    } else {
        us = wait_for(c, "hot", after_op[o]);
    }
    if (us < 0)
        return child_fail(out, "%s: still stale after %d ms", op_names[o], BOUND_MS);
    fprintf(out, "ok %s seen after %ld us\n", op_names[o], us);
    tc_close(c);
    return 0;
}

static void run_op(tc_cache *w, op o)
{
    const char *keys[] = {"hot", "other"};
    const void *data[] = {"30", "x"};
    size_t lens[] = {2, 1};
    switch (o) {
    case OP_SET:
        ck_assert_int_eq(tc_set(w, "hot", "20", 2, TC_TTL_DEFAULT), TC_OK);
        break;
    case OP_DELETE:
        ck_assert_int_eq(tc_delete(w, "hot"), TC_OK);
        break;
    case OP_INCR:
        ck_assert_int_eq(tc_incr(w, "hot", 1, NULL), TC_OK);
        break;
    case OP_TOUCH:
        ck_assert_int_eq(tc_touch(w, "hot", 100000), TC_OK);
        break;
    case OP_SET_MANY:
        ck_assert_int_eq(tc_set_many(w, keys, data, lens, 2, TC_TTL_DEFAULT), TC_OK);
        break;
    case OP_DELETE_MANY:
        ck_assert_int_eq(tc_delete_many(w, keys, 2), TC_OK);
        break;
    case OP_CLEAR:
        ck_assert_int_eq(tc_clear(w), TC_OK);
        break;
    }
}

START_TEST(test_coherence_write_reaches_other_process)
{
    for (op o = OP_SET; o <= OP_CLEAR; o++) {
        fresh_prefix();
        tct_proc p;
        tct_proc_start(&p, reader_child, (void *)(intptr_t)o); /* before any thread exists */
        tc_cache *w = open_mode(TC_COHERENCE_BROADCAST);
        ck_assert_int_eq(tc_set(w, "hot", "10", 2, TC_TTL_DEFAULT), TC_OK);
        tct_proc_say(&p, "go");
        tct_proc_expect(&p, "ready");
        run_op(w, o);
        tct_proc_say(&p, "done");
        tct_proc_finish(&p);
        tc_close(w);
    }
}
END_TEST

/* ------------------------------------------------------------------ the fill race */

typedef struct fill_race {
    sem_t reached; /* the reader has its Redis reply and waits before storing */
    sem_t release; /* the test lets it store */
    tc_cache *c;
    char got[32];
} fill_race;

static void hold_fill(void *arg, const char *key)
{
    fill_race *fr = arg;
    if (strcmp(key, "race") != 0)
        return;
    sem_post(&fr->reached);
    sem_wait(&fr->release);
}

static void *race_reader(void *arg)
{
    fill_race *fr = arg;
    tct_read_str(fr->c, "race", fr->got, sizeof fr->got);
    return NULL;
}

START_TEST(test_coherence_fill_guard_race)
{
    fresh_prefix();
    fill_race fr;
    sem_init(&fr.reached, 0, 0);
    sem_init(&fr.release, 0, 0);
    tc_cache *victim = open_mode(TC_COHERENCE_BROADCAST);
    tc_cache *writer = open_mode(TC_COHERENCE_BROADCAST);
    ck_assert_int_eq(tc_set(writer, "race", "old", 3, TC_TTL_DEFAULT), TC_OK);
    fr.c = victim;
    tc__test_set_fill_hook(victim, hold_fill, &fr);
    pthread_t th;
    pthread_create(&th, NULL, race_reader, &fr);
    sem_wait(&fr.reached); /* the reader holds "old", fetched before the write */
    tc_stats s0, s1;
    tc_stats_get(victim, &s0);
    ck_assert_int_eq(tc_set(writer, "race", "new", 3, TC_TTL_DEFAULT), TC_OK);
    int64_t t0 = tc__now_ns();
    do { /* wait until the victim has processed the invalidation */
        tct_sleep_ms(1);
        tc_stats_get(victim, &s1);
    } while (s1.inval_received == s0.inval_received && tc__now_ns() - t0 < 2000000000LL);
    ck_assert_uint_gt(s1.inval_received, s0.inval_received);
    sem_post(&fr.release);
    pthread_join(th, NULL);
    tc__test_set_fill_hook(victim, NULL, NULL);
    ck_assert_str_eq(fr.got, "old"); /* the read itself began before the write */
    char buf[32];
    ck_assert_int_eq(tct_read_str(victim, "race", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "new"); /* and no stale copy was kept */
    tc_close(victim);
    tc_close(writer);
}
END_TEST

/* ------------------------------------------------------------------ the storm */

#define STORM_KEYS 64

typedef struct storm_reader {
    tc_cache *c;
    atomic_bool *stop;
    long reads;
} storm_reader;

static void *storm_read(void *arg)
{
    storm_reader *r = arg;
    char buf[32], key[16];
    while (!atomic_load(r->stop)) {
        snprintf(key, sizeof key, "s%ld", r->reads % STORM_KEYS);
        tct_read_str(r->c, key, buf, sizeof buf);
        r->reads++;
    }
    return NULL;
}

/* arg non-NULL: with shadow reads of every local hit, which must find no divergence. */
static int storm_child(FILE *in, FILE *out, void *arg)
{
    tct_wait_line(in, "go");
    tc_cache *c = open_mode_shadow(TC_COHERENCE_BROADCAST, arg ? 1 : 0);
    atomic_bool stop = false;
    storm_reader r[2] = {{c, &stop, 0}, {c, &stop, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, storm_read, &r[i]);
    fprintf(out, "ready\n");
    char line[64];
    long final = -1;
    while (fgets(line, sizeof line, in))
        if (sscanf(line, "final %ld", &final) == 1)
            break;
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    char want[32], key[16];
    snprintf(want, sizeof want, "%ld", final);
    long worst = 0;
    for (int k = 0; k < STORM_KEYS; k++) {
        snprintf(key, sizeof key, "s%d", k);
        long us = wait_for(c, key, want);
        if (us < 0)
            return child_fail(out, "%s never reached %s", key, want);
        worst = us > worst ? us : worst;
    }
    tc_stats s;
    tc_stats_get(c, &s);
    fprintf(out, "ok reads %ld, local hits %llu, converged within %ld us\n",
            r[0].reads + r[1].reads, (unsigned long long)s.local_hits, worst);
    if (arg) {
        /* Every difference seen during the storm waits for its re-check: let them finish. */
        int64_t t0 = tc__now_ns();
        while (!tc__test_shadow_idle(c) && tc__now_ns() - t0 < 10LL * 1000000000)
            tct_sleep_ms(20);
        tc_stats_get(c, &s);
        fprintf(out, "shadow: sampled %llu, agreed %llu, diverged %llu, dropped %llu\n",
                (unsigned long long)s.shadow_sampled, (unsigned long long)s.shadow_agreed,
                (unsigned long long)s.shadow_diverged, (unsigned long long)s.shadow_dropped);
        if (!tc__test_shadow_idle(c))
            return child_fail(out, "shadow worker still busy after 10 s");
        if (s.shadow_diverged != 0)
            return child_fail(out, "a healthy storm reported %llu divergences",
                              (unsigned long long)s.shadow_diverged);
        if (s.shadow_sampled == 0 || s.shadow_agreed == 0)
            return child_fail(out, "no sample was checked");
    }
    tc_close(c);
    return s.local_hits > 0 ? 0 : child_fail(out, "no local hits: the local tier was never used");
}

static void storm_run(void *child_arg)
{
    fresh_prefix();
    tct_proc p[2];
    for (int i = 0; i < 2; i++)
        tct_proc_start(&p[i], storm_child, child_arg); /* before any thread exists */
    tc_cache *w = open_mode(TC_COHERENCE_BROADCAST);
    char key[16];
    for (int k = 0; k < STORM_KEYS; k++) {
        snprintf(key, sizeof key, "s%d", k);
        ck_assert_int_eq(tc_set(w, key, "0", 1, TC_TTL_DEFAULT), TC_OK);
    }
    for (int i = 0; i < 2; i++)
        tct_proc_say(&p[i], "go");
    for (int i = 0; i < 2; i++)
        tct_proc_expect(&p[i], "ready");
    const int rounds = 30;
    for (int round = 1; round <= rounds; round++)
        for (int k = 0; k < STORM_KEYS; k++) {
            snprintf(key, sizeof key, "s%d", k);
            int64_t v;
            ck_assert_int_eq(tc_incr(w, key, 1, &v), TC_OK);
            ck_assert_int_eq(v, round);
        }
    char final[32];
    snprintf(final, sizeof final, "final %d", rounds);
    for (int i = 0; i < 2; i++)
        tct_proc_say(&p[i], final);
    for (int i = 0; i < 2; i++)
        tct_proc_finish(&p[i]);
    tc_close(w);
}

START_TEST(test_coherence_storm_converges)
{
    storm_run(NULL);
}
END_TEST

/* ------------------------------------------------------------------ shadow reads */

/* The same storm with every local hit of the readers shadowed: writes in flight are not
 * divergences, so a healthy system reports none. */
START_TEST(test_coherence_shadow_storm_no_divergence)
{
    static int on = 1;
    storm_run(&on);
}
END_TEST

/* The first warnings a cache logged that contain needle, and how many there were. */
typedef struct warn_log {
    pthread_mutex_t mu;
    const char *needle;
    int count;
    char msg[4][512];
} warn_log;

static void warn_log_fn(void *arg, int level, const char *msg)
{
    warn_log *l = arg;
    if (level != TC_LOG_WARN || !strstr(msg, l->needle))
        return;
    pthread_mutex_lock(&l->mu);
    if (l->count < 4)
        snprintf(l->msg[l->count], sizeof l->msg[0], "%s", msg);
    l->count++;
    pthread_mutex_unlock(&l->mu);
}

static int warn_log_count(warn_log *l)
{
    pthread_mutex_lock(&l->mu);
    int n = l->count;
    pthread_mutex_unlock(&l->mu);
    return n;
}

/* A stale copy: in broadcast mode a write by a client that is not tiercache publishes
 * nothing, exactly as if its invalidation had been lost. The sample that served it is
 * counted as a divergence once, within the bound and one sampling interval, logged once
 * with what an operator needs, and the copy is dropped. */
START_TEST(test_coherence_shadow_detects_stale_copy)
{
    fresh_prefix();
    warn_log lg = {.mu = PTHREAD_MUTEX_INITIALIZER, .needle = "shadow read"};
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.heartbeat_ms = 50;
    o.command_timeout_ms = 200;
    o.shadow_rate = 1;
    o.log_fn = warn_log_fn;
    o.log_arg = &lg;
    tc_cache *c = tct_open(&o);
    const int bound_ms = 2 * 50 + 200;
    const char *key = "shadow:stale:1";
    ck_assert_int_eq(tc_set(c, key, "v1", 2, TC_TTL_DEFAULT), TC_OK);
    char rkey[256];
    snprintf(rkey, sizeof rkey, "%s%s", tc__test_rprefix(c), key);
    const char *set[] = {"SET", rkey, "v2", NULL};
    free(tct_redis_cmd(set));
    int64_t t0 = tc__now_ns();
    tct_expect(c, key, TC_OK, "v1"); /* the stale local copy, sampled */
    tc_stats s;
    do {
        tct_sleep_ms(10);
        tc_stats_get(c, &s);
    } while (s.shadow_diverged == 0 && tc__now_ns() - t0 < 5LL * 1000000000);
    long ms = (long)((tc__now_ns() - t0) / 1000000);
    printf("shadow: divergence counted after %ld ms (bound %d ms)\n", ms, bound_ms);
    ck_assert_uint_eq(s.shadow_diverged, 1);
    ck_assert_uint_eq(s.shadow_sampled, 1);
    ck_assert_uint_eq(s.shadow_agreed, 0);
    ck_assert_int_ge(ms, bound_ms);
    ck_assert_int_le(ms, bound_ms + tct_slow_ms(500));
    ck_assert_int_eq(warn_log_count(&lg), 1);
    ck_assert_ptr_nonnull(strstr(lg.msg[0], "\"shadow:stale:1\""));
    ck_assert_ptr_nonnull(strstr(lg.msg[0], "type shadow:stale"));
    ck_assert_ptr_nonnull(strstr(lg.msg[0], "coherence broadcast"));
    ck_assert_ptr_nonnull(strstr(lg.msg[0], "held at least"));
    /* The copy was dropped: the next read goes to Redis. */
    tct_expect(c, key, TC_OK, "v2");
    char *text = NULL;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(
        strstr(text, "tiercache_shadow_diverged_total{key_type=\"shadow:stale\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "tiercache_shadow_sampled_total{key_type=\"shadow:stale\"} 1\n"));
    free(text);
    /* Once: nothing more is counted or logged later. */
    tct_sleep_ms(2 * bound_ms);
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.shadow_diverged, 1);
    ck_assert_int_eq(warn_log_count(&lg), 1);
    tc_close(c);
}
END_TEST

typedef struct shadow_flood_arg {
    tc_cache *c;
    long hits;
} shadow_flood_arg;

static void *shadow_flood(void *arg)
{
    shadow_flood_arg *f = arg;
    for (int i = 0; i < 20000; i++) {
        tc_value v;
        if (tc_get(f->c, "shadow:flood", &v) == TC_OK) {
            tc_value_release(&v);
            f->hits++;
        }
    }
    return NULL;
}

/* Every hit sampled, far faster than one Redis GET each: the queue stays within its bound
 * and the surplus is dropped and counted, never queued. */
START_TEST(test_coherence_shadow_queue_bounded)
{
    fresh_prefix();
    tc_cache *c = open_mode_shadow(TC_COHERENCE_BROADCAST, 1);
    ck_assert_int_eq(tc_set(c, "shadow:flood", "x", 1, TC_TTL_DEFAULT), TC_OK);
    shadow_flood_arg f[2] = {{c, 0}, {c, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, shadow_flood, &f[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    int64_t t0 = tc__now_ns();
    while (!tc__test_shadow_idle(c) && tc__now_ns() - t0 < 10LL * 1000000000)
        tct_sleep_ms(10);
    ck_assert(tc__test_shadow_idle(c));
    tc_stats s;
    tc_stats_get(c, &s);
    printf("shadow flood: hits %ld, sampled %llu, dropped %llu, queue max %zu\n",
           f[0].hits + f[1].hits, (unsigned long long)s.shadow_sampled,
           (unsigned long long)s.shadow_dropped, tc__test_shadow_queue_max(c));
    ck_assert_int_eq(f[0].hits + f[1].hits, 40000);
    ck_assert_uint_ge(s.local_hits, 39000);
    ck_assert_uint_eq(s.shadow_sampled + s.shadow_dropped, s.local_hits);
    ck_assert_uint_gt(s.shadow_dropped, 0);
    ck_assert_uint_eq(s.shadow_agreed, s.shadow_sampled);
    ck_assert_uint_le(tc__test_shadow_queue_max(c), 256);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ a killed subscriber */

static int kill_victim_child(FILE *in, FILE *out, void *arg)
{
    TC_UNUSED(arg);
    tct_wait_line(in, "go");
    tc_cache *c = open_mode(TC_COHERENCE_BROADCAST);
    char buf[32];
    tct_read_str(c, "k", buf, sizeof buf);
    tct_read_str(c, "k", buf, sizeof buf); /* hot locally */
    fprintf(out, "ready\n");
    tct_wait_line(in, "written");
    /* From here on the old value must never be returned, however the link recovers. */
    int64_t t0 = tc__now_ns();
    long reads = 0;
    bool seen_new = false;
    while (tc__now_ns() - t0 < 1500LL * 1000000) {
        tc_status st = tct_read_str(c, "k", buf, sizeof buf);
        reads++;
        if (st == TC_OK && strcmp(buf, "before") == 0 && seen_new)
            return child_fail(out, "old value returned after the new one");
        if (st == TC_OK && strcmp(buf, "after") == 0)
            seen_new = true;
    }
    if (!seen_new)
        return child_fail(out, "never saw the new value");
    /* The link came back: the local tier is in use again. */
    tc_stats s0, s1;
    tct_read_str(c, "k", buf, sizeof buf);
    tc_stats_get(c, &s0);
    tct_read_str(c, "k", buf, sizeof buf);
    tc_stats_get(c, &s1);
    fprintf(out, "ok %ld reads, local tier back: %d\n", reads, s1.local_hits > s0.local_hits);
    tc_close(c);
    return strcmp(buf, "after") == 0 && s1.local_hits > s0.local_hits ? 0 : 1;
}

START_TEST(test_coherence_killed_subscriber_never_stale)
{
    fresh_prefix();
    tct_proc p;
    tct_proc_start(&p, kill_victim_child, NULL); /* before any thread exists */
    tc_cache *pub = open_mode(TC_COHERENCE_BROADCAST);
    ck_assert_int_eq(tc_set(pub, "k", "before", 6, TC_TTL_DEFAULT), TC_OK);
    tct_proc_say(&p, "go");
    tct_proc_expect(&p, "ready");
    const char *kill_argv[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    char *killed = tct_redis_cmd_all(kill_argv);
    ck_assert_ptr_nonnull(killed);
    ck_assert_int_ge(atoi(killed), 1);
    free(killed);
    /* Written while the victim is cut off: its invalidation is lost to it. */
    ck_assert_int_eq(tc_set(pub, "k", "after", 5, TC_TTL_DEFAULT), TC_OK);
    tct_proc_say(&p, "written");
    tct_proc_finish(&p);
    tc_close(pub);
}
END_TEST

/* Kills the subscriber links, then waits until the cache logged its n-th link failure and
 * trusts its local tier again. */
static void kill_until_logged(tc_cache *c, warn_log *l, int n)
{
    const char *kill_argv[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    free(tct_redis_cmd_all(kill_argv));
    int64_t t0 = tc__now_ns();
    for (;;) {
        if ((warn_log_count(l) >= n && tc__test_local_usable(c)) ||
            tc__now_ns() - t0 > 5000000000LL)
            break;
        tct_sleep_ms(5);
    }
}

/* A link that was up a while is retried at once when it breaks: every read bypasses the
 * local tier until it is back, and the 50 ms wait that used to come first was most of the
 * read spike after a CLIENT KILL (tc-bench recovery). One that breaks soon after it came
 * up still backs off. */
START_TEST(test_coherence_long_lived_link_retried_at_once)
{
    fresh_prefix();
    warn_log lg = {.mu = PTHREAD_MUTEX_INITIALIZER, .needle = "invalidation link down"};
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.log_fn = warn_log_fn;
    o.log_arg = &lg;
    tc_cache *c = tct_open(&o);
    tct_sleep_ms(2100); /* longer than the longest backoff (2 s): a healthy stretch */
    kill_until_logged(c, &lg, 1);
    kill_until_logged(c, &lg, 2); /* a link just made */
    ck_assert_int_eq(warn_log_count(&lg), 2);
    ck_assert_msg(strstr(lg.msg[0], "reconnecting at once"), "%s", lg.msg[0]);
    ck_assert_msg(strstr(lg.msg[1], "reconnecting in 50 ms"), "%s", lg.msg[1]);
    ck_assert(tc__test_local_usable(c));
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ heartbeat */

START_TEST(test_coherence_heartbeat_bypasses_then_recovers)
{
    fresh_prefix();
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.heartbeat_ms = 50;
    tc_cache *c = tct_open(&o);
    ck_assert(tc__test_local_usable(c));
    tct_redis_pause();
    tct_sleep_ms(300); /* > 2 heartbeats with no answer */
    bool usable_while_stopped = tc__test_local_usable(c);
    tct_redis_resume();
    ck_assert(!usable_while_stopped);
    int64_t t0 = tc__now_ns();
    while (!tc__test_local_usable(c) && tc__now_ns() - t0 < 5000000000LL)
        tct_sleep_ms(10);
    ck_assert(tc__test_local_usable(c));
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    tc_close(c);
}
END_TEST

/* Publishes n well-formed invalidations of one key each, from another origin, pipelined on
 * one connection (the library's own, so over TLS too) so that Redis queues them for the
 * subscriber faster than it applies them. */
static void flood(const char *channel, int n)
{
    tc_options o;
    tct_options(&o);
    tc_tls_config tc = {.ca_file = o.tls_ca_file,
                        .cert_file = o.tls_cert_file,
                        .key_file = o.tls_key_file};
    tc_logger quiet = {NULL, NULL};
    tc_tls *tls = NULL;
    if (strncmp(tct_redis.url, "rediss", 6) == 0)
        ck_assert_int_eq(tc__tls_new(&tc, &quiet, &tls), TC_OK);
    tc_conn_addr a = {.host = "127.0.0.1", .port = tct_redis.port, .tls = tls};
    tc_conn *c = NULL;
    ck_assert_int_eq(tc__conn_open(&a, 2000, 2000, &quiet, &c), TC_OK);
    ck_assert_int_eq(tc__conn_set_timeout(c, 10000), REDIS_OK);
    char msg[96];
    for (int i = 0; i < n; i++) {
        snprintf(msg, sizeof msg, "TC1 K 0123456789abcdef 1 flood%d", i % 1000);
        const char *argv[] = {"PUBLISH", channel, msg};
        ck_assert_int_eq(redisAppendCommandArgv(c->ctx, 3, argv, NULL), REDIS_OK);
    }
    for (int i = 0; i < n; i++) {
        redisReply *x = NULL;
        ck_assert_int_eq(tc__conn_get_reply(c, &x), TC_OK);
        freeReplyObject(x);
    }
    tc__conn_free(c);
    tc__tls_free(tls);
}

/* Regression (issue 17): a subscriber behind a backlog of messages took the pong queued
 * after them for missing, declared the link dead, reconnected and flushed its whole tier.
 * A backlog is a link that works: it is read before the heartbeat is judged. */
START_TEST(test_coherence_backlog_is_not_a_dead_link)
{
    fresh_prefix();
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.heartbeat_ms = 30; /* the backlog (~60,000 messages) takes longer than a beat */
    tc_cache *c = tct_open(&o);
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    enum { N = 60000 }; /* ~5 MB queued: under Redis's 8 MB pubsub soft limit */
    flood(tc__test_channel(c), N);
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(20);
        tc_stats_get(c, &s1);
    } while (s1.inval_received < s0.inval_received + N && tc__now_ns() - t0 < 20000000000LL);
    ck_assert_msg(s1.inval_received >= s0.inval_received + N,
                  "%llu of %d messages applied; link failures %llu, full flushes %llu, malformed "
                  "%llu",
                  (unsigned long long)(s1.inval_received - s0.inval_received), N,
                  (unsigned long long)(s1.inval_link_failures - s0.inval_link_failures),
                  (unsigned long long)(s1.full_flushes - s0.full_flushes),
                  (unsigned long long)(s1.inval_malformed - s0.inval_malformed));
    ck_assert_uint_eq(s1.inval_link_failures, s0.inval_link_failures);
    ck_assert_uint_eq(s1.full_flushes, s0.full_flushes);
    ck_assert(tc__test_local_usable(c));
    tc_close(c);
}
END_TEST

START_TEST(test_coherence_output_buffer_cutoff)
{
    fresh_prefix();
    tc_cache *victim = open_mode(TC_COHERENCE_BROADCAST);
    tc_cache *w = open_mode(TC_COHERENCE_BROADCAST);
    ck_assert_int_eq(tc_set(w, "k", "old", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(victim, "k", TC_OK, "old");
    tct_expect(victim, "k", TC_OK, "old");
    const char *tight[] = {"CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 0", NULL};
    const char *normal[] = {"CONFIG", "SET", "client-output-buffer-limit",
                            "pubsub 33554432 8388608 60", NULL};
    free(tct_redis_cmd_all(tight));
    /* A message bigger than a client's 16 KiB reply buffer overflows the limit: Redis
     * drops every subscriber of the channel. */
    size_t big_len = 100 * 1024;
    char *big = malloc(big_len + 1);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    const char *pub_argv[] = {"PUBLISH", tc__test_channel(victim), big, NULL};
    free(tct_redis_cmd(pub_argv));
    free(big);
    /* Written while the victim is cut off: its invalidation is lost to the victim. */
    ck_assert_int_eq(tc_set(w, "k", "new", 3, TC_TTL_DEFAULT), TC_OK);
    free(tct_redis_cmd_all(normal));
    ck_assert_int_ge(wait_for(victim, "k", "new"), 0);
    ck_assert_uint_ge(TC_READ(tc__cache_counters(victim), link_failures), 1);
    int64_t t0 = tc__now_ns();
    while (!tc__test_local_usable(victim) && tc__now_ns() - t0 < 5000000000LL)
        tct_sleep_ms(10);
    ck_assert(tc__test_local_usable(victim));
    tct_expect(victim, "k", TC_OK, "new"); /* resubscribed, and never the old value */
    tct_expect(victim, "k", TC_OK, "new");
    tc_close(victim);
    tc_close(w);
}
END_TEST

/* ------------------------------------------------------------------ tracking and none */

START_TEST(test_coherence_tracking_sees_foreign_write)
{
    fresh_prefix();
    tc_cache *c = open_mode(TC_COHERENCE_TRACKING);
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    ck_assert_int_eq(tc_set(c, "t", "mine", 4, TC_TTL_DEFAULT), TC_OK);
    /* Redis reports our own write too: once that has arrived, the value stays local. */
    int64_t t0 = tc__now_ns();
    do {
        tc_stats_get(c, &s1);
    } while (s1.inval_received == s0.inval_received && tc__now_ns() - t0 < 2000000000LL);
    ck_assert_uint_gt(s1.inval_received, s0.inval_received);
    tct_expect(c, "t", TC_OK, "mine");
    tc_stats_get(c, &s0);
    tct_expect(c, "t", TC_OK, "mine");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1);
    char rkey[128];
    snprintf(rkey, sizeof rkey, "%s:1:t", prefix);
    const char *set_argv[] = {"SET", rkey, "theirs", NULL};
    free(tct_redis_cmd(set_argv)); /* a plain client, not the library */
    ck_assert_int_ge(wait_for(c, "t", "theirs"), 0);
    const char *flush_argv[] = {"FLUSHDB", NULL};
    tct_expect(c, "t", TC_OK, "theirs");
    free(tct_redis_cmd_all(flush_argv));
    ck_assert_int_ge(wait_for(c, "t", NULL), 0);
    tc_close(c);
}
END_TEST

START_TEST(test_coherence_none_mode_bounded_by_local_ttl)
{
    fresh_prefix();
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    o.coherence = TC_COHERENCE_NONE;
    o.local_ttl_ms = 200;
    tc_cache *a = tct_open(&o);
    tc_cache *b = tct_open(&o);
    ck_assert_int_eq(tc_set(a, "k", "1", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(b, "k", TC_OK, "1");
    ck_assert_int_eq(tc_set(a, "k", "2", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(b, "k", TC_OK, "1"); /* no invalidation in this mode */
    tct_sleep_ms(250);
    tct_expect(b, "k", TC_OK, "2");
    tc_close(a);
    tc_close(b);
}
END_TEST

/* ------------------------------------------------------------------ hostile messages */

START_TEST(test_coherence_garbage_messages_ignored)
{
    fresh_prefix();
    tc_cache *c = open_mode(TC_COHERENCE_BROADCAST);
    ck_assert_int_eq(tc_set(c, "g", "keep", 4, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "g", TC_OK, "keep");
    static const char *garbage[] = {
        "",
        "TC1",
        "TC1 ",
        "TC1 K",
        "TC1 K 0123",
        "TC1 X 0123456789abcdef",
        "TC1 K 0123456789abcdef",
        "TC1 K 0123456789abcdef 1",
        "TC1 K 0123456789abcdeg 1 g",
        "TC1 K 0123456789abcdef x g",
        "TC1 K 0123456789abcdef 1  g",
        "TC1 F 0123456789abcdef junk",
        "TC2 K 0123456789abcdef 1 g",
        "\xff\xfe\x00garbage",
        "TC1 K 0123456789abcdef 99999999999 g",
    };
    size_t n = sizeof garbage / sizeof garbage[0];
    for (size_t i = 0; i < n; i++) {
        const char *argv[] = {"PUBLISH", tc__test_channel(c), garbage[i], NULL};
        free(tct_redis_cmd(argv));
    }
    /* A well-formed message from another origin is applied (it can only evict). */
    const char *valid[] = {"PUBLISH", tc__test_channel(c), "TC1 K 0123456789abcdef 1 other", NULL};
    free(tct_redis_cmd(valid));
    int64_t t0 = tc__now_ns();
    tc_stats s;
    do {
        tct_sleep_ms(5);
        tc_stats_get(c, &s);
    } while (s.inval_received < 1 && tc__now_ns() - t0 < 2000000000LL);
    /* "" is not sent */
    ck_assert_uint_eq(TC_READ(tc__cache_counters(c), inval_malformed), n - 1);
    tc_stats s0;
    tc_stats_get(c, &s0);
    tct_expect(c, "g", TC_OK, "keep");
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.local_hits, s0.local_hits + 1); /* still served locally */
    tc_close(c);
}
END_TEST

START_TEST(test_coherence_forged_keys_break_no_rule)
{
    /* Regression (found by fuzz_inval): a message's keys were split on spaces but not
     * checked against the key rules, and a forged key holding a NUL reached the per-type
     * metrics, whose name copy stopped at the NUL while its length did not: a heap read
     * past the name (ASan). Now such a message is malformed as a whole and changes
     * nothing; in tracking mode such a Redis key (another client may write one) is
     * skipped. */
    fresh_prefix();
    tc_cache *c = open_mode(TC_COHERENCE_NONE);
    ck_assert_int_eq(tc_set(c, "p", "v", 1, TC_TTL_DEFAULT), TC_OK);
    static const char with_nul[] = "TC1 K 0123456789abcdef 1 p a\0b";
    static const char with_ctrl[] = "TC1 K 0123456789abcdef 1 p a\x01b";
    static const char with_del[] = "TC1 K 0123456789abcdef 1 p \x7f";
    const struct {
        const char *m;
        size_t len;
    } forged[] = {{with_nul, sizeof with_nul - 1},
                  {with_ctrl, sizeof with_ctrl - 1},
                  {with_del, sizeof with_del - 1}};
    for (size_t i = 0; i < sizeof forged / sizeof forged[0]; i++) {
        tc_stats s0, s1;
        ck_assert(!tc__test_inval_apply(c, forged[i].m, forged[i].len));
        tc_stats_get(c, &s0);
        tct_expect(c, "p", TC_OK, "v"); /* "p" was not evicted: nothing applied */
        tc_stats_get(c, &s1);
        ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1);
    }
    ck_assert_uint_eq(TC_READ(tc__cache_counters(c), inval_malformed), 3);
    /* Bytes above 127 (UTF-8 or not) are key bytes: such a message applies. */
    static const char high[] = "TC1 K 0123456789abcdef 1 \xff\xfe p";
    ck_assert(tc__test_inval_apply(c, high, sizeof high - 1));
    tc_close(c);

    tc_cache *t = open_mode(TC_COHERENCE_TRACKING);
    ck_assert_int_eq(tc_set(t, "q", "v", 1, TC_TTL_DEFAULT), TC_OK);
    char rkey[128];
    int n = snprintf(rkey, sizeof rkey, "%s:1:q", prefix);
    rkey[n - 1] = '\0'; /* "<prefix>:1:\0": a NUL where the key starts */
    const char *argv[] = {"SET", rkey, "x"};
    const size_t lens[] = {3, (size_t)n, 1};
    for (int i = 0; i < 2; i++) { /* twice: the second lookup of a name is what overran */
        char *x = tct_redis_cmd_bin(3, argv, lens); /* on the key's node in a cluster */
        ck_assert_ptr_nonnull(x);
        free(x);
    }
    tct_sleep_ms(100); /* the tracking message arrives and is skipped, not applied */
    tct_expect(t, "q", TC_OK, "v");
    tc_close(t);
}
END_TEST

START_TEST(test_coherence_parser_direct)
{
    fresh_prefix();
    tc_cache *c = open_mode(TC_COHERENCE_NONE);
    ck_assert_int_eq(tc_set(c, "p", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert(!tc__test_inval_apply(c, "TC1 K", 5));
    ck_assert(!tc__test_inval_apply(c, "TC1 K 0123456789abcdef 1 p ", 27)); /* trailing space */
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    tct_expect(c, "p", TC_OK, "v");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1);
    /* Other version: ignored. Own origin: ignored. Other origin: evicts. */
    ck_assert(tc__test_inval_apply(c, "TC1 K 0123456789abcdef 2 p", 26));
    char own[64];
    snprintf(own, sizeof own, "TC1 K %016llx 1 p", (unsigned long long)tc__test_origin(c));
    ck_assert(tc__test_inval_apply(c, own, strlen(own)));
    tc_stats_get(c, &s0);
    tct_expect(c, "p", TC_OK, "v");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1);
    ck_assert(tc__test_inval_apply(c, "TC1 K 0123456789abcdef 1 x p", 28));
    tc_stats_get(c, &s0);
    tct_expect(c, "p", TC_OK, "v");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits);
    ck_assert_uint_eq(s1.remote_hits, s0.remote_hits + 1);
    ck_assert(tc__test_inval_apply(c, "TC1 F 0123456789abcdef", 22));
    tc_stats_get(c, &s0);
    tct_expect(c, "p", TC_OK, "v");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.remote_hits, s0.remote_hits + 1);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ recovery (sequences) */

/* Whether the suite runs against a cluster (TC_TEST_TOPOLOGY=cluster). */
static bool clustered(void)
{
    const char *topo = getenv("TC_TEST_TOPOLOGY");
    return topo && strstr(topo, "cluster");
}

/* The cluster slot of key's Redis key under c. */
static unsigned slot_of(tc_cache *c, const char *key)
{
    char rk[256];
    size_t n = tc__cache_rkey(c, key, strlen(key), rk, sizeof rk);
    return tc__cluster_slot(rk, n);
}

/* The local group key's entry is dropped with: on a cluster its slot's (16 slots a group). */
static unsigned group_of(tc_cache *c, const char *key)
{
    if (clustered())
        return slot_of(c, key) >> TC_INVAL_SLOT_SHIFT;
    return tc__local_group(tc__key_hash(key, strlen(key)));
}

/* What a message numbers key's write in: its slot on a cluster, its group on one server. */
static unsigned seq_of(tc_cache *c, const char *key)
{
    return clustered() ? slot_of(c, key) : group_of(c, key);
}

/* A key "<stem><n>" whose of(c, key) is v (or, want false, is not v). */
static void key_where(char *buf, size_t cap, const char *stem, tc_cache *c,
                      unsigned (*of)(tc_cache *, const char *), unsigned v, bool want)
{
    for (int n = 0;; n++) {
        snprintf(buf, cap, "%s%d", stem, n);
        if ((of(c, buf) == v) == want)
            return;
    }
}

/* Writes a test makes through w while a reader's link is cut. */
typedef struct cut_writes {
    tc_cache *w;
    const char *key, *twin, *far; /* twin: numbered with key; far: in another group */
} cut_writes;

static void set_v2(void *arg)
{
    const cut_writes *x = arg;
    ck_assert_int_eq(tc_set(x->w, x->key, "v2", 2, TC_TTL_DEFAULT), TC_OK);
}

/* key and twin in one call (one slot), then far and key (two slots on a cluster). */
static void set_many_twice(void *arg)
{
    const cut_writes *x = arg;
    const char *one_slot[] = {x->key, x->twin};
    const void *v2[] = {"v2", "v2"};
    const size_t l2[] = {2, 2};
    ck_assert_int_eq(tc_set_many(x->w, one_slot, v2, l2, 2, TC_TTL_DEFAULT), TC_OK);
    const char *two_slots[] = {x->far, x->key};
    const void *v3[] = {"f2", "v3"};
    ck_assert_int_eq(tc_set_many(x->w, two_slots, v3, l2, 2, TC_TTL_DEFAULT), TC_OK);
}

/* Cuts every pub/sub connection, runs during(arg) (when given) while r is cut off (held
 * off: a link that had been up a while would reconnect at once), and waits until r is
 * back. */
static void kill_links_and_wait(tc_cache *r, void (*during)(void *), void *arg,
                                uint64_t *reconciles, uint64_t *flushes)
{
    tc_stats s0;
    tc_stats_get(r, &s0);
    tc__test_hold_relink(r, during != NULL);
    const char *kill_argv[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    free(tct_redis_cmd_all(kill_argv));
    if (during)
        during(arg);
    tc__test_hold_relink(r, false);
    tct_wait_relinked(r, &s0, reconciles, flushes);
}

/* Reads keys through r, returning how many were local hits. A read that fails is tried
 * again (after a Redis restart each pooled connection fails once); a local hit never
 * fails. */
static uint64_t local_reads(tc_cache *r, char keys[][32], int n)
{
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    for (int i = 0; i < n; i++) {
        char buf[32];
        tc_status st = TC_ERR_IO;
        for (int t = 0; t < 50 && st < 0; t++)
            st = tct_read_str(r, keys[i], buf, sizeof buf);
        ck_assert_int_eq(st, TC_OK);
    }
    tc_stats_get(r, &s1);
    return s1.local_hits - s0.local_hits;
}

#define RKEYS 40

/* Kills r's link, waits for its recovery, and checks that it kept its tier (one reconcile,
 * every key a local hit) or flushed it (one full flush, none). */
static void kill_and_expect(tc_cache *r, char keys[][32], bool kept)
{
    uint64_t rec, fl;
    kill_links_and_wait(r, NULL, NULL, &rec, &fl);
    ck_assert_uint_eq(rec, kept ? 1 : 0);
    ck_assert_uint_eq(fl, kept ? 0 : 1);
    ck_assert_uint_eq(local_reads(r, keys, RKEYS), kept ? RKEYS : 0);
}

/* Writes the keys through w and reads them through r until they are local. Waits for r to
 * apply every write's message first: on a cluster a message crosses the cluster bus, and
 * one still on its way when a test breaks the link is lost (its slot then counts as
 * written). */
static void fill(tc_cache *w, tc_cache *r, char keys[][32])
{
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    for (int i = 0; i < RKEYS; i++) {
        snprintf(keys[i], 32, "rk%d", i);
        ck_assert_int_eq(tc_set(w, keys[i], "v1", 2, TC_TTL_DEFAULT), TC_OK);
    }
    int64_t t0 = tc__now_ns();
    for (tc_stats_get(r, &s1);
         s1.inval_received - s0.inval_received < RKEYS && tc__now_ns() - t0 < 5000000000LL;
         tc_stats_get(r, &s1))
        tct_sleep_ms(2);
    ck_assert_uint_ge(s1.inval_received - s0.inval_received, RKEYS);
    local_reads(r, keys, RKEYS); /* fills */
    ck_assert_uint_eq(local_reads(r, keys, RKEYS), RKEYS);
}

/* A writer and a reader with the default recovery (TC_RECOVERY_AUTO: by group sequences)
 * under a fresh prefix (prefix_tail appended), the keys written and local in the reader. */
static void recovery_pair(tc_cache **w, tc_cache **r, char keys[][32], const char *prefix_tail)
{
    fresh_prefix();
    strcat(prefix, prefix_tail);
    *w = open_mode(TC_COHERENCE_BROADCAST);
    *r = open_mode(TC_COHERENCE_BROADCAST);
    fill(*w, *r, keys);
}

/* The default (TC_RECOVERY_AUTO): a link break with no write meanwhile keeps every entry,
 * and they are local hits after the reconnect. */
START_TEST(test_coherence_link_break_keeps_tier)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "");
    kill_and_expect(r, keys, true);
    /* Every connection cut (a proxy or network blip), not only the link: the fetch goes
     * past the dead pooled connections instead of giving up into a full flush. */
    const char *kill_normal[] = {"CLIENT", "KILL", "TYPE", "normal", NULL};
    free(tct_redis_cmd_all(kill_normal));
    kill_and_expect(r, keys, true);
    /* The same cache made to flush although its writers bump sequences (the test hook):
     * what the reconciliation saves. */
    tc__test_set_full_flush_recovery(r, true);
    kill_and_expect(r, keys, false);
    tc_close(r);
    tc_close(w);
}
END_TEST

static bool seq_hash_exists(void)
{
    char k[128];
    snprintf(k, sizeof k, "%s:__tc:seq", prefix);
    const char *argv[] = {"EXISTS", k, NULL};
    char *x = tct_redis_cmd(argv);
    bool yes = x && strcmp(x, "1") == 0;
    free(x);
    return yes;
}

/* TC_RECOVERY_FLUSH: the behaviour before sequences. Writes bump nothing (no sequence hash
 * appears), and a link break flushes the whole tier. */
START_TEST(test_coherence_recovery_flush_flushes)
{
    fresh_prefix();
    tc_cache *w = open_recovery(tct_redis.url, TC_RECOVERY_FLUSH);
    tc_cache *r = open_recovery(tct_redis.url, TC_RECOVERY_FLUSH);
    char keys[RKEYS][32];
    fill(w, r, keys);
    ck_assert(!seq_hash_exists());
    kill_and_expect(r, keys, false);
    ck_assert(!seq_hash_exists());
    tc_close(r);
    tc_close(w);
}
END_TEST

/* Instances of a prefix that disagree: a TC_RECOVERY_FLUSH writer bumps no sequence, so a
 * reader recovering by groups that heard its TC1 message flushes at its next recovery
 * (for 10 minutes after that message) rather than trust sequences the writer ignores. */
START_TEST(test_coherence_flush_writer_makes_readers_flush)
{
    fresh_prefix();
    tc_cache *w = open_recovery(tct_redis.url, TC_RECOVERY_FLUSH);
    tc_cache *r = open_recovery(tct_redis.url, TC_RECOVERY_AUTO);
    char keys[RKEYS][32];
    fill(w, r, keys);
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    ck_assert_int_eq(tc_set(w, keys[0], "v2", 2, TC_TTL_DEFAULT), TC_OK);
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(2);
        tc_stats_get(r, &s1);
    } while (s1.inval_received == s0.inval_received && tc__now_ns() - t0 < 5000000000LL);
    ck_assert_uint_gt(s1.inval_received, s0.inval_received);
    kill_and_expect(r, keys, false);
    tc_close(r);
    tc_close(w);
}
END_TEST

/* TC_RECOVERY_GROUPS where groups cannot work is refused, with the reason in words; on one
 * server it is what AUTO does. */
START_TEST(test_coherence_recovery_groups_refused)
{
    fresh_prefix();
    tc_options o;
    options_mode(&o, TC_COHERENCE_TRACKING);
    o.recovery = TC_RECOVERY_GROUPS;
    tct_tls_options(&o);
    tc_cache *c = (tc_cache *)1;
    char err[256];
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_ERR_ARG);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, "TC_RECOVERY_GROUPS") && strstr(err, "TC_COHERENCE_BROADCAST"), "%s",
                  err);
    o.coherence = TC_COHERENCE_BROADCAST;
    tc_status st = tc_open2(&o, &c, err, sizeof err);
    ck_assert_msg(st == TC_OK, "%s", err);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    if (!tct_on_cluster()) {
        ck_assert(seq_hash_exists());
    } else {
        /* A cluster whose key_prefix pins every key to a slot the sequences cannot follow:
         * asked for explicitly, refused. */
        char pinned[160];
        snprintf(pinned, sizeof pinned, "%s{x", prefix);
        o.key_prefix = pinned;
        tc_cache *p = (tc_cache *)1;
        ck_assert_int_eq(tc_open2(&o, &p, err, sizeof err), TC_ERR_ARG);
        ck_assert_ptr_null(p);
        ck_assert_msg(strstr(err, "key_prefix") != NULL, "%s", err);
    }
    tc_close(c);
}
END_TEST

/* A Redis restart flushes everything, even when the restarted server loads the same
 * generation and sequences (SAVE before the kill: the dump holds them): a new run_id means
 * messages may have been lost with writes the dump does not show. */
START_TEST(test_coherence_restart_flushes_everything)
{
    fresh_prefix();
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, NULL), 0);
    tc_cache *w = open_recovery(s.url, TC_RECOVERY_AUTO),
             *r = open_recovery(s.url, TC_RECOVERY_AUTO);
    char keys[RKEYS][32];
    fill(w, r, keys);
    ck_assert_uint_eq(local_reads(r, keys, RKEYS), RKEYS);
    const char *save[] = {"SAVE", NULL};
    char *x = tcf_redis_cmd(&s, save);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "SAVE: %s", x ? x : "error");
    free(x);
    tc_stats s0;
    tc_stats_get(r, &s0);
    tcf_redis_kill(&s);
    ck_assert_int_eq(tcf_redis_restart(&s, NULL), 0);
    uint64_t rec, fl;
    tct_wait_relinked(r, &s0, &rec, &fl);
    ck_assert_uint_eq(rec, 0);
    ck_assert_uint_eq(fl, 1);
    ck_assert_uint_eq(local_reads(r, keys, RKEYS), 0); /* from the dump, through Redis */
    tc_close(r);
    tc_close(w);
    tcf_redis_stop(&s);
}
END_TEST

START_TEST(test_coherence_link_break_drops_written_groups)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "");
    char same[32];
    key_where(same, sizeof same, "same", r, group_of, group_of(r, keys[0]), true);
    ck_assert_int_eq(tc_set(w, same, "s1", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(r, same, TC_OK, "s1");
    tct_expect(r, same, TC_OK, "s1"); /* now local */
    cut_writes x = {.w = w, .key = keys[0]};
    uint64_t rec, fl;
    kill_links_and_wait(r, set_v2, &x, &rec, &fl); /* keys[0] written while r is cut off */
    ck_assert_uint_eq(rec, 1);
    ck_assert_uint_eq(fl, 0);
    tct_expect(r, keys[0], TC_OK, "v2");
    tc_stats s0, s1;
    /* Every other key of keys[0]'s group was dropped with it; the rest stayed. */
    tc_stats_get(r, &s0);
    tct_expect(r, same, TC_OK, "s1");
    tc_stats_get(r, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits);
    uint64_t expect = 0;
    for (int i = 1; i < RKEYS; i++)
        expect += group_of(r, keys[i]) != group_of(r, keys[0]);
    ck_assert_uint_ge(local_reads(r, keys + 1, RKEYS - 1), expect);
    tc_close(r);
    tc_close(w);
}
END_TEST

/* Writes while the link is down: a two-key write to one slot (one transaction, its key
 * named by the cache) and a write across slots (on a cluster one transaction per slot,
 * each bumping its own slot's sequences). Exactly the local groups written are dropped:
 * every other key is still a local hit. */
START_TEST(test_coherence_link_break_drops_only_written_slots)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "");
    char twin[32], far[32], by[32];
    key_where(twin, sizeof twin, "twin", r, seq_of, seq_of(r, keys[0]), true);
    key_where(far, sizeof far, "far", r, group_of, group_of(r, keys[0]), false);
    /* by: in keys[0]'s group, never written below: dropped with the group all the same. */
    key_where(by, sizeof by, "by", r, group_of, group_of(r, keys[0]), true);
    ck_assert_int_eq(tc_set(w, far, "f1", 2, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(w, by, "b1", 2, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_ge(wait_for(r, far, "f1"), 0);
    ck_assert_int_ge(wait_for(r, by, "b1"), 0);
    tct_expect(r, far, TC_OK, "f1"); /* now local */
    tct_expect(r, by, TC_OK, "b1");
    cut_writes x = {w, keys[0], twin, far};
    uint64_t rec, fl;
    kill_links_and_wait(r, set_many_twice, &x, &rec, &fl);
    ck_assert_uint_eq(rec, 1);
    ck_assert_uint_eq(fl, 0);
    tct_expect(r, keys[0], TC_OK, "v3");
    tct_expect(r, twin, TC_OK, "v2");
    tct_expect(r, far, TC_OK, "f2");
    unsigned g0 = group_of(r, keys[0]), g1 = group_of(r, far);
    uint64_t expect = 0;
    for (int i = 1; i < RKEYS; i++)
        expect += group_of(r, keys[i]) != g0 && group_of(r, keys[i]) != g1;
    /* Exactly the keys of other groups were still local. */
    ck_assert_uint_eq(local_reads(r, keys + 1, RKEYS - 1), expect);
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    tct_expect(r, by, TC_OK, "b1");
    tc_stats_get(r, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits); /* dropped with keys[0]'s group */
    tc_close(r);
    tc_close(w);
}
END_TEST

START_TEST(test_coherence_lost_message_drops_group)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "");
    char same[32], other[32];
    /* same: numbered with keys[0], so its message shows the gap; other: in another group. */
    key_where(same, sizeof same, "same", r, seq_of, seq_of(r, keys[0]), true);
    key_where(other, sizeof other, "other", r, group_of, group_of(r, keys[0]), false);
    tc_stats before, now;
    tc_stats_get(r, &before);
    ck_assert_int_eq(tc_set(w, other, "o1", 2, TC_TTL_DEFAULT), TC_OK);
    /* Its message applied first: else the hook below could drop it instead, and it could
     * invalidate the copy read next. */
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(2);
        tc_stats_get(r, &now);
    } while (now.inval_received == before.inval_received && tc__now_ns() - t0 < 5000000000LL);
    ck_assert_uint_gt(now.inval_received, before.inval_received);
    tct_expect(r, other, TC_OK, "o1");
    ck_assert(tc__test_drop_next_inval(r));
    ck_assert_int_eq(tc_set(w, keys[0], "v2", 2, TC_TTL_DEFAULT), TC_OK);
    tct_sleep_ms(100);
    tct_expect(r, keys[0], TC_OK, "v1"); /* its message was lost: stale, as the hook wants */
    /* The next message of the group shows the gap: the whole group goes. */
    ck_assert_int_eq(tc_set(w, same, "s1", 2, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_ge(wait_for(r, keys[0], "v2"), 0);
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    tct_expect(r, other, TC_OK, "o1");
    tc_stats_get(r, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1); /* another group: kept */
    tc_close(r);
    tc_close(w);
}
END_TEST

START_TEST(test_coherence_flushall_flushes_everything)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "");
    const char *flushall[] = {"FLUSHALL", NULL};
    free(tct_redis_cmd_all(flushall));
    uint64_t rec, fl;
    kill_links_and_wait(r, NULL, NULL, &rec, &fl);
    ck_assert_uint_eq(rec, 0);
    ck_assert_uint_eq(fl, 1);
    for (int i = 0; i < RKEYS; i++)
        tct_expect(r, keys[i], TC_MISS, NULL);
    /* On a healthy link: the first write after a FLUSHALL starts a new generation (on a
     * cluster, of its slot: a write to a slot numbered before shows it). */
    fill(w, r, keys);
    free(tct_redis_cmd_all(flushall));
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    char another[32];
    key_where(another, sizeof another, "another", r, seq_of, seq_of(r, keys[0]), true);
    ck_assert_int_eq(tc_set(w, another, "x", 1, TC_TTL_DEFAULT), TC_OK);
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(5);
        tc_stats_get(r, &s1);
    } while (s1.full_flushes == s0.full_flushes && tc__now_ns() - t0 < 5000000000LL);
    ck_assert_uint_eq(s1.full_flushes, s0.full_flushes + 1);
    for (int i = 0; i < RKEYS; i++)
        tct_expect(r, keys[i], TC_MISS, NULL);
    tc_close(r);
    tc_close(w);
}
END_TEST

/* A key_prefix with an unclosed '{': on a cluster a slot's sequences key would hash
 * elsewhere than the slot (its tag would run from the prefix's '{' to the key's '}'), so
 * recovery stays off there and a link break flushes; writes still work. On one server
 * nothing hashes: recovery runs. */
START_TEST(test_coherence_unclosed_tag_prefix)
{
    tc_cache *w, *r;
    char keys[RKEYS][32];
    recovery_pair(&w, &r, keys, "{u");
    uint64_t rec, fl;
    kill_links_and_wait(r, NULL, NULL, &rec, &fl);
    ck_assert_uint_eq(rec, clustered() ? 0 : 1);
    ck_assert_uint_eq(fl, clustered() ? 1 : 0);
    ck_assert_int_eq(tc_set(w, keys[0], "v2", 2, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_ge(wait_for(r, keys[0], "v2"), 0);
    tc_close(r);
    tc_close(w);
}
END_TEST

static Suite *coherence_suite(void)
{
    Suite *s = suite_create("coherence");
    struct {
        const char *name;
        const TTest *tests[12];
    } groups[] = {
        {"cross_process", {test_coherence_write_reaches_other_process}},
        {"fill_guard", {test_coherence_fill_guard_race}},
        {"storm", {test_coherence_storm_converges}},
        {"shadow",
         {test_coherence_shadow_storm_no_divergence, test_coherence_shadow_detects_stale_copy,
          test_coherence_shadow_queue_bounded}},
        {"link_failure",
         {test_coherence_killed_subscriber_never_stale,
          test_coherence_heartbeat_bypasses_then_recovers, test_coherence_output_buffer_cutoff,
          test_coherence_backlog_is_not_a_dead_link,
          test_coherence_long_lived_link_retried_at_once}},
        {"modes",
         {test_coherence_tracking_sees_foreign_write,
          test_coherence_none_mode_bounded_by_local_ttl}},
        {"recovery",
         {test_coherence_link_break_keeps_tier, test_coherence_link_break_drops_written_groups,
          test_coherence_link_break_drops_only_written_slots,
          test_coherence_lost_message_drops_group, test_coherence_flushall_flushes_everything,
          test_coherence_unclosed_tag_prefix, test_coherence_restart_flushes_everything,
          test_coherence_recovery_flush_flushes, test_coherence_flush_writer_makes_readers_flush}},
        {"recovery_option", {test_coherence_recovery_groups_refused}},
        {"hostile",
         {test_coherence_garbage_messages_ignored, test_coherence_parser_direct,
          test_coherence_forged_keys_break_no_rule}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, 60);
        for (int i = 0; groups[g].tests[i]; i++) {
            /* On a cluster the flood crosses the cluster bus, whose own buffering and
             * limits, not the subscriber, decide what arrives when. */
            if (clustered() && groups[g].tests[i] == test_coherence_backlog_is_not_a_dead_link)
                continue;
            tcase_add_test(tc, groups[g].tests[i]);
        }
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(coherence_suite(), true);
}
