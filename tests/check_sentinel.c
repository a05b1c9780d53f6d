/*
 * Redis Sentinel (redis-sentinel:// URLs): a failover followed as soon as the sentinel
 * announces it, an answer of the sentinels asked before a +switch-master that must not undo
 * it, the heartbeat of the watch on the sentinel, and sentinels with a password. Each test
 * starts its own servers (a master, a replica where it needs one, and a sentinel:
 * tcf_sentinel_start); the tests run in forked processes in the order listed. Run by make
 * check-cluster, with the Redis Cluster suites, not by make check.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "cache.h"
#include "testing.h"
#include "remote.h"
#include "remote_conn.h"
#include "testutil.h"

static tc_remote_stats rstats(tc_cache *c)
{
    tc_remote_stats s;
    tc__remote_stats(tc__cache_remote(c), &s);
    return s;
}

/* ------------------------------------------------------------------ failover */

static bool info_has(const tcf_redis *r, const char *section, const char *needle)
{
    const char *argv[] = {"INFO", section, NULL};
    char *x = tcf_redis_cmd(r, argv);
    bool yes = x && strstr(x, needle) != NULL;
    free(x);
    return yes;
}

typedef struct sload_arg {
    tc_cache *c;
    atomic_bool stop;
    atomic_int ok, errors;
} sload_arg;

static void *sentinel_load(void *p)
{
    sload_arg *a = p;
    char key[32];
    for (int i = 0; !atomic_load(&a->stop); i++) {
        snprintf(key, sizeof key, "load%d", i % 20);
        tc_value v;
        tc_status st = tc_set(a->c, key, "L", 1, TC_TTL_DEFAULT);
        tc_status g = tc_get(a->c, key, &v);
        if (g == TC_OK)
            tc_value_release(&v);
        if (st == TC_OK && (g == TC_OK || g == TC_MISS))
            atomic_fetch_add(&a->ok, 1);
        else
            atomic_fetch_add(&a->errors, 1);
        tct_sleep_ms(1);
    }
    return NULL;
}

/* A master, its replica and a sentinel watching them as "tcmaster", the replica linked and
 * known to the sentinel. */
static void trio_start(tcf_redis *master, tcf_redis *replica, tcf_redis *sentinel)
{
    ck_assert_int_eq(tcf_redis_start(master, NULL), 0);
    char mport[16];
    snprintf(mport, sizeof mport, "%d", master->port);
    const char *rargs[] = {"--replicaof", "127.0.0.1", mport, NULL};
    ck_assert_int_eq(tcf_redis_start(replica, rargs), 0);
    ck_assert_int_eq(tcf_sentinel_start(sentinel, master->port, "tcmaster"), 0);
    bool ready = false;
    for (int i = 0; i < 300 && !ready; i++) { /* replica linked, and known to the sentinel */
        const char *argv[] = {"SENTINEL", "replicas", "tcmaster", NULL};
        char *n = tcf_redis_cmd(sentinel, argv);
        ready = info_has(replica, "replication", "master_link_status:up") && n &&
                strcmp(n, "1") == 0;
        free(n);
        if (!ready)
            tct_sleep_ms(50);
    }
    ck_assert_msg(ready, "replica not linked or not seen by the sentinel");
}

/* Options for a cache on the trio's master through sentinel (a fresh prefix in prefix). */
static void trio_options(tc_options *o, const tcf_redis *sentinel, char *prefix, size_t cap)
{
    tc_options_init(o);
    o->redis_url = sentinel->url;
    o->key_prefix = tcf_unique_prefix(prefix, cap);
    tct_tls_options(o);
    o->command_timeout_ms = 500;
    o->connect_timeout_ms = 500;
}

/* Asks the sentinel for a failover and waits until the replica is master and the sentinel
 * names it. */
static void failover(tcf_redis *sentinel, tcf_redis *replica)
{
    const char *fo[] = {"SENTINEL", "FAILOVER", "tcmaster", NULL};
    char *x = tcf_redis_cmd(sentinel, fo);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "SENTINEL FAILOVER: %s", x ? x : "error");
    free(x);
    bool promoted = false;
    for (int i = 0; i < 300 && !promoted; i++) {
        promoted = info_has(replica, "replication", "role:master");
        if (!promoted)
            tct_sleep_ms(50);
    }
    ck_assert_msg(promoted, "the replica was not promoted");
    char addr[64];
    snprintf(addr, sizeof addr, "address=127.0.0.1:%d,", replica->port);
    bool named = false;
    for (int i = 0; i < 500 && !named; i++) {
        named = info_has(sentinel, "sentinel", addr);
        if (!named)
            tct_sleep_ms(20);
    }
    ck_assert_msg(named, "the sentinel does not name the new master");
}

START_TEST(test_sentinel_failover)
{
    tcf_redis master, replica, sentinel;
    tc_options o;
    char prefix[64];
    trio_start(&master, &replica, &sentinel);
    trio_options(&o, &sentinel, prefix, sizeof prefix);
    tc_cache *c1 = tct_open(&o), *c2 = tct_open(&o);
    tct_sleep_ms(200);
    ck_assert_int_eq(tc_set(c1, "k", "v1", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c2, "k", TC_OK, "v1"); /* c2 holds a local copy */
    sload_arg la = {.c = c1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sentinel_load, &la), 0);
    tct_sleep_ms(100);

    failover(&sentinel, &replica);
    /* When the sentinel names the new master it announces +switch-master, which both caches
     * hear: writes go there at once and c2 drops its copy, long before the old master is
     * demoted (Sentinel waits some 10 s before it reconfigures a master that still runs, and
     * until then that one answers, so nothing else tells the caches). */
    int64_t t0 = tc__now_ns();
    bool landed = false, fresh2 = false;
    char rk[128];
    snprintf(rk, sizeof rk, "%s", tc__test_rprefix(c1));
    strncat(rk, "k", sizeof rk - strlen(rk) - 1);
    const char *get[] = {"GET", rk, NULL};
    while ((!landed || !fresh2) && tc__now_ns() - t0 < 3000000000LL) {
        if (!landed && tc_set(c1, "k", "v2", 2, TC_TTL_DEFAULT) == TC_OK) {
            char *on_new = tcf_redis_cmd(&replica, get);
            landed = on_new && strcmp(on_new, "v2") == 0;
            free(on_new);
        }
        tc_value v;
        if (landed && tc_get(c2, "k", &v) == TC_OK) {
            fresh2 = v.len == 2 && memcmp(v.data, "v2", 2) == 0;
            tc_value_release(&v);
        }
        tct_sleep_ms(20);
    }
    long long ms = (long long)((tc__now_ns() - t0) / 1000000);
    ck_assert_msg(landed, "writes still go to the old master %lld ms after the switch", ms);
    ck_assert_msg(fresh2, "the other cache kept its copy %lld ms after the switch", ms);
    /* The old master takes writes until it is demoted (the resync then drops them:
     * Sentinel's asynchronous failover); wait for that, then check that writes still go to
     * the new master. */
    bool demoted = false;
    for (int i = 0; i < 300 && !demoted; i++) {
        demoted = info_has(&master, "replication", "role:slave");
        if (!demoted)
            tct_sleep_ms(50);
    }
    ck_assert_msg(demoted, "the old master was not demoted");
    /* Writes reach the new master once the sentinel names it. */
    tc_status st = TC_ERR_IO;
    for (int i = 0; i < 200 && st != TC_OK; i++) {
        st = tc_set(c1, "k", "v2", 2, TC_TTL_DEFAULT);
        if (st != TC_OK)
            tct_sleep_ms(50);
    }
    ck_assert_msg(st == TC_OK, "no write after the failover: %s", tc_strerror(st));
    char *on_new = tcf_redis_cmd(&replica, get);
    ck_assert_ptr_nonnull(on_new);
    ck_assert_msg(strstr(on_new, "v2") != NULL, "the new master does not hold the write");
    free(on_new);
    /* c2 drops its copy: its subscriber moved to the new master (and flushed), or the
     * invalidation reached it there. */
    bool fresh = false;
    for (int i = 0; i < 200 && !fresh; i++) {
        tc_value v;
        if (tc_get(c2, "k", &v) == TC_OK) {
            fresh = v.len == 2 && memcmp(v.data, "v2", 2) == 0;
            tc_value_release(&v);
        }
        if (!fresh)
            tct_sleep_ms(50);
    }
    ck_assert_msg(fresh, "the other cache kept its pre-failover copy");
    int ok_before = atomic_load(&la.ok);
    tct_sleep_ms(300);
    atomic_store(&la.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_gt(atomic_load(&la.ok), ok_before); /* the load goes on after it */
    ck_assert_uint_ge(rstats(c1).map_refreshes, 1);   /* one failover followed */
    tc_close(c1);
    tc_close(c2);
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&replica);
    tcf_redis_stop(&master);
}
END_TEST

/* Local hits among n reads of "fk<i>" through c; a failed read is tried again (the pool
 * may still hold connections to the old master). */
static uint64_t local_hits_of(tc_cache *c, int n)
{
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    for (int i = 0; i < n; i++) {
        char k[16], buf[16];
        snprintf(k, sizeof k, "fk%d", i);
        tc_status st = TC_ERR_IO;
        for (int t = 0; t < 50 && st < 0; t++)
            if ((st = tct_read_str(c, k, buf, sizeof buf)) < 0)
                tct_sleep_ms(20);
        ck_assert_int_ge(st, 0);
    }
    tc_stats_get(c, &s1);
    return s1.local_hits - s0.local_hits;
}

/* Recovery by group sequences (the default here: broadcast on a Sentinel master) flushes
 * the whole tier at a failover: the promoted replica holds the same generation and
 * sequences (replicated), but it is another server (its run_id), which may have missed
 * writes whose messages went out. */
START_TEST(test_sentinel_failover_flushes)
{
    tcf_redis master, replica, sentinel;
    tc_options o;
    char prefix[64];
    trio_start(&master, &replica, &sentinel);
    trio_options(&o, &sentinel, prefix, sizeof prefix);
    tc_cache *w = tct_open(&o), *r = tct_open(&o);
    enum { N = 20 };
    for (int i = 0; i < N; i++) {
        char k[16];
        snprintf(k, sizeof k, "fk%d", i);
        ck_assert_int_eq(tc_set(w, k, "v", 1, TC_TTL_DEFAULT), TC_OK);
    }
    local_hits_of(r, N); /* fills */
    ck_assert_uint_eq(local_hits_of(r, N), N);
    const char *wait[] = {"WAIT", "1", "2000", NULL}; /* the replica has it all */
    char *x = tcf_redis_cmd(&master, wait);
    ck_assert_msg(x && strcmp(x, "1") == 0, "WAIT: %s", x ? x : "error");
    free(x);
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    failover(&sentinel, &replica);
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(10);
        tc_stats_get(r, &s1);
    } while (s1.reconciles + s1.full_flushes == s0.reconciles + s0.full_flushes &&
             tc__now_ns() - t0 < 10000000000LL);
    while (!tc__test_local_usable(r) && tc__now_ns() - t0 < 10000000000LL)
        tct_sleep_ms(10);
    ck_assert_uint_eq(s1.reconciles, s0.reconciles);
    ck_assert_uint_ge(s1.full_flushes, s0.full_flushes + 1);
    ck_assert_uint_eq(local_hits_of(r, N), 0);
    tc_close(r);
    tc_close(w);
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&replica);
    tcf_redis_stop(&master);
}
END_TEST

/* A +switch-master announcement as the watch connection reads it. */
static redisReply *switch_message(const char *name, int old_port, int new_port)
{
    char payload[128], resp[256];
    snprintf(payload, sizeof payload, "%s 127.0.0.1 %d 127.0.0.1 %d", name, old_port, new_port);
    snprintf(resp, sizeof resp, "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
             strlen(payload), payload);
    redisReader *rd = redisReaderCreate();
    ck_assert_ptr_nonnull(rd);
    ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *x = NULL;
    ck_assert_int_eq(redisReaderGetReply(rd, &x), REDIS_OK);
    redisReaderFree(rd);
    ck_assert_ptr_nonnull(x);
    return x;
}

typedef struct stale_arg {
    tc_remote *r;
    int old_port, new_port;
    atomic_int calls;
} stale_arg;

/* The announcement arrives while a thread holds the sentinels' answer, not yet applied. */
static void announce_during_ask(void *p)
{
    stale_arg *a = p;
    if (atomic_fetch_add(&a->calls, 1) != 0)
        return;
    redisReply *x = switch_message("tcstale", a->old_port, a->new_port);
    ck_assert(tc__remote_sentinel_switched(a->r, x));
    freeReplyObject(x);
}

/* Options for the master name watched by the sentinel on port (a fresh key prefix). The
 * strings live until the next call. */
static void sentinel_options(tc_options *o, int port, const char *name)
{
    static char prefix[64], url[256];
    tc_options_init(o);
    snprintf(url, sizeof url, "%s://127.0.0.1:%d/%s",
             tct_on_tls() ? "rediss-sentinel" : "redis-sentinel", port, name);
    o->redis_url = url;
    o->key_prefix = tcf_unique_prefix(prefix, sizeof prefix);
    tct_tls_options(o);
}

static int master_port(tc_cache *c)
{
    tc_node *m[1];
    ck_assert_int_eq(tc__remote_masters(tc__cache_remote(c), m, 1), 1); /* asks the sentinels */
    const char *host;
    int port;
    tc__node_addr(m[0], &host, &port);
    return port;
}

/* Regression: an answer of the sentinels asked before a +switch-master was applied after
 * it, sending operations back to the old master until the next failure. The announcement
 * is newer and stands; an answer asked after it is applied as usual. */
START_TEST(test_sentinel_stale_answer)
{
    tcf_redis master, other, sentinel;
    ck_assert_int_eq(tcf_redis_start(&master, NULL), 0);
    ck_assert_int_eq(tcf_redis_start(&other, NULL), 0); /* the announced new master */
    ck_assert_int_eq(tcf_sentinel_start(&sentinel, master.port, "tcstale"), 0);
    tc_options o;
    sentinel_options(&o, sentinel.port, "tcstale");
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(master_port(c), master.port);

    stale_arg a = {.r = tc__cache_remote(c), .old_port = master.port, .new_port = other.port};
    tc__test_set_sentinel_ask_hook(c, announce_during_ask, &a);
    int port = master_port(c); /* answer: master; announced meanwhile: other */
    tc__test_set_sentinel_ask_hook(c, NULL, NULL);
    ck_assert_int_ge(atomic_load(&a.calls), 1);
    ck_assert_msg(port == other.port, "the answer from before the switch undid it (%d)", port);

    /* The sentinels still name the first master (nothing failed over): asked after the
     * switch, their answer is applied. */
    ck_assert_int_eq(master_port(c), master.port);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    tc_close(c);
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&other);
    tcf_redis_stop(&master);
}
END_TEST

/* Waits up to ms for the local tier to become usable (want) or bypassed (!want). */
static bool usable_within(tc_cache *c, bool want, int ms)
{
    int64_t t0 = tc__now_ns();
    while (tc__test_local_usable(c) != want && tc__now_ns() - t0 < (int64_t)ms * 1000000)
        tct_sleep_ms(10);
    return tc__test_local_usable(c) == want;
}

/* The watch on the sentinel has a heartbeat: a sentinel that stops answering (SIGSTOP here;
 * a crashed host in life, which leaves the connection half open) ends the session within
 * a couple of beats, since failovers would go unannounced; while it answers, its pongs
 * keep the session up. */
START_TEST(test_sentinel_watch_heartbeat)
{
    tcf_redis master, sentinel;
    ck_assert_int_eq(tcf_redis_start(&master, NULL), 0);
    ck_assert_int_eq(tcf_sentinel_start(&sentinel, master.port, "tcbeat"), 0);
    tc_options o;
    sentinel_options(&o, sentinel.port, "tcbeat");
    o.heartbeat_ms = 200;
    o.command_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    tc_cache *c = tct_open(&o);
    ck_assert_msg(usable_within(c, true, 5000), "the invalidation link never came up");
    uint64_t failures = TC_READ(tc__cache_counters(c), link_failures);
    tct_sleep_ms(1200); /* six beats: the sentinel answers every ping */
    ck_assert_uint_eq(TC_READ(tc__cache_counters(c), link_failures), failures);
    ck_assert(tc__test_local_usable(c));

    ck_assert_int_eq(kill(sentinel.pid, SIGSTOP), 0);
    bool down = usable_within(c, false, 3000);
    ck_assert_int_eq(kill(sentinel.pid, SIGCONT), 0);
    ck_assert_msg(down, "a silent sentinel went unnoticed");
    /* Counted once the session has closed its links, just after it stopped trusting them. */
    for (int i = 0; i < 100 && TC_READ(tc__cache_counters(c), link_failures) == failures; i++)
        tct_sleep_ms(10);
    ck_assert_uint_gt(TC_READ(tc__cache_counters(c), link_failures), failures);
    ck_assert_msg(usable_within(c, true, 10000), "no new session after the sentinel came back");
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    tc_close(c);
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&master);
}
END_TEST

/* How many clients of the sentinel are subscribed (CLIENT LIST: sub=1), asked with its
 * password (over TLS on a TLS run). */
static int sentinel_subscribers(const tcf_redis *s, const char *password)
{
    const char *argv[] = {"CLIENT", "LIST", NULL};
    char *x = tcf_redis_cmd_ex(s, password, -1, argv, NULL);
    ck_assert_msg(x != NULL, "AUTH and CLIENT LIST on the sentinel failed");
    int n = 0;
    for (const char *p = x; (p = strstr(p, " sub=1 ")) != NULL; p++)
        n++;
    free(x);
    return n;
}

START_TEST(test_sentinel_auth)
{
    tcf_redis master, sentinel;
    const char *margs[] = {"--requirepass", "mpw", NULL};
    ck_assert_int_eq(tcf_redis_start(&master, margs), 0);
    ck_assert_int_eq(tcf_sentinel_start_conf(&sentinel, master.port, "tcauth",
                                             "requirepass spw\n"
                                             "sentinel auth-pass tcauth mpw\n"),
                     0);
    tc_options o;
    tc_options_init(&o);
    char prefix[64], url[256];
    o.key_prefix = tcf_unique_prefix(prefix, sizeof prefix);
    o.redis_url = url;
    tct_tls_options(&o);
    o.command_timeout_ms = 1000;
    o.connect_timeout_ms = 1000;
    const struct {
        const char *userinfo, *query;
        tc_status want;
    } cases[] = {
        {":mpw@", "", TC_ERR_AUTH},                        /* the sentinel wants one */
        {":mpw@", "?sentinel_password=nope", TC_ERR_AUTH}, /* a wrong one */
        {":bad@", "?sentinel_password=spw", TC_ERR_AUTH},  /* the master's is wrong */
        {"", "?sentinel_password=spw", TC_ERR_AUTH},       /* the master wants one too */
        {":mpw@", "?sentinel_user=default&sentinel_password=spw", TC_OK},
        {":mpw@", "?sentinel_password=spw", TC_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(url, sizeof url, "%s://%s127.0.0.1:%d/tcauth%s",
                 tct_on_tls() ? "rediss-sentinel" : "redis-sentinel", cases[i].userinfo,
                 sentinel.port, cases[i].query);
        tc_cache *c = NULL;
        tc_status st = tc_open(&o, &c);
        ck_assert_msg(st == cases[i].want, "%s: %s", url, tc_strerror(st));
        if (st != TC_OK)
            continue;
        ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
        tct_expect(c, "k", TC_OK, "v");
        /* Its subscriber watches the sentinel for failovers, through the password too. */
        ck_assert_int_eq(sentinel_subscribers(&sentinel, "spw"), 1);
        tc_close(c);
    }
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&master);
}
END_TEST

static Suite *sentinel_suite(void)
{
    Suite *s = suite_create("sentinel");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"sentinel", test_sentinel_failover},
        {"sentinel_failover_flushes", test_sentinel_failover_flushes},
        {"sentinel_auth", test_sentinel_auth},
        {"sentinel_stale_answer", test_sentinel_stale_answer},
        {"sentinel_watch_heartbeat", test_sentinel_watch_heartbeat},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(sentinel_suite(), false);
}
