/*
 * Redis Cluster (redis-cluster:// URLs): slot hashing, the core cache semantics over keys
 * spread across three masters, batch writes sent to all masters at once, coherence between
 * two caches, locks and get_or_set, a slot migration under load (ASK then MOVED, counted and
 * survived, batches redirected) and a killed master; and the parsing of redis-cluster:// and
 * redis-sentinel:// URLs (Sentinel itself: check_sentinel.c). The cluster is started once by
 * main (tcf_cluster_start) and shared by the tests, which run in forked processes in the
 * order listed; the killed-master test starts its own servers.
 */
#include "config.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "inval.h"
#include "slot_tags.h"
#include "testing.h"
#include "remote.h"
#include "remote_conn.h"
#include "testutil.h"

static tcf_cluster cluster;

static void cl_options(tc_options *o, const tcf_cluster *cl)
{
    static char prefix[64];
    tc_options_init(o);
    o->redis_url = cl->url;
    o->key_prefix = tcf_unique_prefix(prefix, sizeof prefix);
    tct_tls_options(o); /* TC_TEST_TOPOLOGY=tls-cluster */
}

static tc_cache *cl_open(const tcf_cluster *cl, const char *prefix, size_t local_bytes)
{
    tc_options o;
    cl_options(&o, cl);
    if (prefix)
        o.key_prefix = prefix;
    o.local_max_bytes = local_bytes;
    return tct_open(&o);
}

static tc_remote_stats rstats(tc_cache *c)
{
    tc_remote_stats s;
    tc__remote_stats(tc__cache_remote(c), &s);
    return s;
}

/* One command on node i of the cluster (defined with the migration helpers). */
static char *node_cmd(int i, const char *a0, const char *a1, const char *a2, const char *a3,
                      const char *a4);

/* The index of the node that holds rkey (EXISTS answers 1 there, an error elsewhere or 0). */
static int holder(const tcf_cluster *cl, const char *rkey)
{
    for (int i = 0; i < cl->n; i++) {
        if (cl->nodes[i].pid <= 0)
            continue;
        const char *argv[] = {"EXISTS", rkey, NULL};
        char *x = tcf_redis_cmd(&cl->nodes[i], argv);
        bool here = x && strcmp(x, "1") == 0;
        free(x);
        if (here)
            return i;
    }
    return -1;
}

/* The index of the node that holds c's key (its Redis key under c's prefix), or -1. */
static int key_holder(const tcf_cluster *cl, const tc_cache *c, const char *key)
{
    char rk[640];
    snprintf(rk, sizeof rk, "%s%s", tc__test_rprefix(c), key);
    return holder(cl, rk);
}

/* ------------------------------------------------------------------ slots and URLs */

START_TEST(test_cluster_crc16_slots)
{
    ck_assert_uint_eq(tc__crc16("123456789", 9), 0x31C3);
    ck_assert_uint_eq(tc__cluster_slot("foo", 3), 12182);
    ck_assert_uint_eq(tc__cluster_slot("foo{bar}", 8), tc__cluster_slot("bar", 3));
    ck_assert_uint_eq(tc__cluster_slot("{user1000}.following", 20),
                      tc__cluster_slot("{user1000}.followers", 20));
    /* An empty tag does not count: the whole key is hashed. */
    ck_assert_uint_eq(tc__cluster_slot("foo{}{bar}", 10), tc__crc16("foo{}{bar}", 10) & 16383);
    ck_assert_uint_eq(tc__cluster_slot("foo{{bar}}zap", 13), tc__cluster_slot("{bar", 4));
    ck_assert_uint_eq(tc__cluster_slot("{", 1), tc__crc16("{", 1) & 16383);
}
END_TEST

START_TEST(test_cluster_url_parse)
{
    tc_url u;
    ck_assert_int_eq(tc__url_parse("redis-cluster://us%40r:p:w@h1:7000,[::1]:7001,h3:7002", &u),
                     TC_OK);
    ck_assert_int_eq(u.kind, TC_URL_CLUSTER);
    ck_assert_int_eq(u.nseeds, 3);
    ck_assert_str_eq(u.seed_hosts[0], "h1");
    ck_assert_str_eq(u.seed_hosts[1], "::1");
    ck_assert_int_eq(u.seed_ports[2], 7002);
    ck_assert_str_eq(u.user, "us@r");
    ck_assert_str_eq(u.password, "p:w");
    tc__url_free(&u);
    ck_assert_int_eq(tc__url_parse("REDIS-CLUSTER://h", &u), TC_OK);
    ck_assert_int_eq(u.port, 6379);
    tc__url_free(&u);
    ck_assert_int_eq(tc__url_parse("redis-sentinel://:pw@s1:26379,s2:26380/my%2Dmaster/3", &u),
                     TC_OK);
    ck_assert_int_eq(u.kind, TC_URL_SENTINEL);
    ck_assert_int_eq(u.nseeds, 2);
    ck_assert_int_eq(u.seed_ports[1], 26380);
    ck_assert_str_eq(u.master_name, "my-master");
    ck_assert_str_eq(u.password, "pw");
    ck_assert_int_eq(u.db, 3);
    ck_assert_ptr_null(u.sentinel_password);
    tc__url_free(&u);
    /* The sentinels' own credentials, apart from the master's. */
    ck_assert_int_eq(tc__url_parse("redis-sentinel://:pw@s1:26379/m/2?sentinel_password=s%3Ap"
                                   "&sentinel_user=su",
                                   &u),
                     TC_OK);
    ck_assert_str_eq(u.master_name, "m");
    ck_assert_int_eq(u.db, 2);
    ck_assert_str_eq(u.password, "pw");
    ck_assert_str_eq(u.sentinel_password, "s:p");
    ck_assert_str_eq(u.sentinel_user, "su");
    tc__url_free(&u);
    ck_assert_int_eq(tc__url_parse("redis-sentinel://s1:26379/m?sentinel_password=x", &u), TC_OK);
    ck_assert_int_eq(u.db, 0);
    ck_assert_ptr_null(u.password);
    ck_assert_str_eq(u.sentinel_password, "x");
    ck_assert_ptr_null(u.sentinel_user);
    tc__url_free(&u);
    const char *bad[] = {"redis-cluster://",
                         "redis-cluster://h:1/0",
                         "redis-cluster://h:1,",
                         "redis-cluster://h:1?x",
                         "redis-cluster://h:0",
                         "redis-sentinel://h:26379",
                         "redis-sentinel://h:26379/",
                         "redis-sentinel://h:26379/m/x",
                         "redis-sentinel:///m",
                         "redis-sentinel://h:1/m?",
                         "redis-sentinel://h:1/m?x=1",
                         "redis-sentinel://h:1/m?sentinel_password",
                         "redis-sentinel://h:1/m?sentinel_password=a&",
                         "redis-sentinel://h:1/m?sentinel_password=a&sentinel_password=b",
                         "redis-sentinel://h:1/?sentinel_password=a",
                         "redis-sentinel://h:1/m/x?sentinel_password=a",
                         "redis-sentinel://h:1/m?sentinel_password=a b",
                         "redis-cluster://h:1?sentinel_password=a",
                         NULL};
    for (int i = 0; bad[i]; i++)
        ck_assert_msg(tc__url_parse(bad[i], &u) == TC_ERR_ARG, "%s", bad[i]);
    /* No sentinel there: an I/O error at open, promptly. */
    tc_options o;
    tc_options_init(&o);
    o.redis_url = "redis-sentinel://127.0.0.1:1/mymaster";
    tc_cache *c = NULL;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_IO);
    ck_assert_ptr_null(c);
}
END_TEST

/* ------------------------------------------------------------------ core semantics */

START_TEST(test_cluster_basic_ops)
{
    tc_cache *c = cl_open(&cluster, NULL, 0);
    char key[32], val[32];
    bool on[TCF_CLUSTER_MAX] = {false};
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        ck_assert_int_eq(tc_set(c, key, val, strlen(val), TC_TTL_DEFAULT), TC_OK);
        int h = key_holder(&cluster, c, key);
        ck_assert_int_ge(h, 0);
        on[h] = true;
    }
    for (int i = 0; i < cluster.n; i++)
        ck_assert_msg(on[i], "no key landed on node %d", i);
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "v%d", i);
        tct_expect(c, key, TC_OK, val);
    }
    tct_expect(c, "absent", TC_MISS, NULL);
    ck_assert_int_eq(tc_add(c, "k1", "x", 1, TC_TTL_DEFAULT), TC_EXISTS);
    ck_assert_int_eq(tc_add(c, "new", "x", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "new", TC_OK, "x");
    ck_assert_int_eq(tc_delete(c, "new"), TC_OK);
    ck_assert_int_eq(tc_delete(c, "new"), TC_MISS);
    ck_assert_int_eq(tc_set(c, "n", "41", 2, TC_TTL_DEFAULT), TC_OK);
    int64_t r = 0;
    ck_assert_int_eq(tc_incr(c, "n", 1, &r), TC_OK);
    ck_assert_int_eq(r, 42);
    ck_assert_int_eq(tc_incr(c, "nothere", 1, &r), TC_MISS);
    ck_assert_int_eq(tc_touch(c, "k2", 50), TC_OK);
    ck_assert_int_eq(tc_touch(c, "nothere", 50), TC_MISS);
    tct_sleep_ms(120);
    tct_expect(c, "k2", TC_MISS, NULL);
    tc_remote_stats s = rstats(c);
    ck_assert_uint_eq(s.moved, 0);
    ck_assert_uint_eq(s.errors, 0);
    tc_close(c);
}
END_TEST

START_TEST(test_cluster_batches_across_slots)
{
    tc_cache *c = cl_open(&cluster, NULL, 0);
    enum { N = 40 };
    char kb[N][16], vb[N][16];
    const char *keys[N];
    const void *vals[N];
    size_t lens[N];
    for (int i = 0; i < N; i++) {
        snprintf(kb[i], sizeof kb[i], "m%d", i);
        snprintf(vb[i], sizeof vb[i], "val%d", i);
        keys[i] = kb[i];
        vals[i] = vb[i];
        lens[i] = strlen(vb[i]);
    }
    tc_value out[N + 1];
    tc_status st[N + 1];
    /* Warm up: one connection per node (its handshake is a round trip too). */
    ck_assert_int_eq(tc_get_many(c, keys, N, out, st), TC_OK);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(st[i], TC_MISS);
    tc_remote_stats w0 = rstats(c);
    ck_assert_int_eq(tc_set_many(c, keys, vals, lens, N, TC_TTL_DEFAULT), TC_OK);
    /* One MULTI per slot, pipelined per node: one round trip per node. */
    ck_assert_uint_le(rstats(c).round_trips - w0.round_trips, (uint64_t)cluster.n);
    const char *keys2[N + 1];
    memcpy(keys2, keys, sizeof keys);
    keys2[N] = "missing";
    tc_remote_stats before = rstats(c);
    ck_assert_int_eq(tc_get_many(c, keys2, N + 1, out, st), TC_OK);
    tc_remote_stats after = rstats(c);
    /* One round trip per node, not per key. */
    ck_assert_uint_le(after.round_trips - before.round_trips, (uint64_t)cluster.n);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(st[i], TC_OK);
        ck_assert_uint_eq(out[i].len, lens[i]);
        ck_assert_int_eq(memcmp(out[i].data, vb[i], lens[i]), 0);
        tc_value_release(&out[i]);
    }
    ck_assert_int_eq(st[N], TC_MISS);
    w0 = rstats(c);
    ck_assert_int_eq(tc_delete_many(c, keys, N / 2), TC_OK);
    ck_assert_uint_le(rstats(c).round_trips - w0.round_trips, (uint64_t)cluster.n);
    for (int i = 0; i < N; i++)
        tct_expect(c, kb[i], i < N / 2 ? TC_MISS : TC_OK, i < N / 2 ? NULL : vb[i]);
    tc_close(c);
}
END_TEST

/* Whether node i has a client in a transaction that waits for a CLIENT PAUSE to end (Redis
 * 7.0 holds back a write queued after MULTI, later ones hold back EXEC): CLIENT LIST flags
 * "x" (in MULTI) and "b" (blocked). */
static bool exec_paused_on(int i)
{
    const char *argv[] = {"CLIENT", "LIST", NULL};
    char *x = tcf_redis_cmd(&cluster.nodes[i], argv);
    bool yes = false;
    for (char *line = x; line && *line && !yes;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        const char *flags = strstr(line, " flags=");
        const char *fend = flags ? strchr(flags + 1, ' ') : NULL;
        size_t fl = flags && fend ? (size_t)(fend - flags) : 0;
        yes = fl > 0 && memchr(flags, 'x', fl) != NULL && memchr(flags, 'b', fl) != NULL;
        line = end ? end + 1 : NULL;
    }
    free(x);
    return yes;
}

static void pause_all(bool on)
{
    for (int i = 0; i < cluster.n; i++) {
        const char *pause[] = {"CLIENT", "PAUSE", "5000", "WRITE", NULL};
        const char *unpause[] = {"CLIENT", "UNPAUSE", NULL};
        char *x = tcf_redis_cmd(&cluster.nodes[i], on ? pause : unpause);
        ck_assert_msg(x && strcmp(x, "OK") == 0, "CLIENT %sPAUSE on node %d", on ? "" : "UN", i);
        free(x);
    }
}

typedef struct batch_arg {
    tc_cache *c;
    const char **keys;
    const void **vals; /* NULL: delete_many */
    size_t *lens;
    size_t n;
    tc_status st;
} batch_arg;

static void *batch_thread(void *p)
{
    batch_arg *a = p;
    a->st = a->vals ? tc_set_many(a->c, a->keys, a->vals, a->lens, a->n, TC_TTL_DEFAULT)
                    : tc_delete_many(a->c, a->keys, a->n);
    return NULL;
}

/* Runs the batch while every master holds writes back (CLIENT PAUSE WRITE) and reports
 * whether all of them had its transactions waiting at once: a batch sent node after node
 * would reach the second node only once the first one answered. */
static bool batch_reaches_all_nodes_at_once(batch_arg *a)
{
    pause_all(true);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, batch_thread, a), 0);
    bool all = false;
    for (int t = 0; t < 200 && !all; t++) { /* up to 2 s of the 5 s pause */
        all = true;
        for (int i = 0; i < cluster.n && all; i++)
            all = exec_paused_on(i);
        if (!all)
            tct_sleep_ms(10);
    }
    pause_all(false);
    pthread_join(th, NULL);
    ck_assert_msg(a->st == TC_OK, "%s", tc_strerror(a->st));
    return all;
}

START_TEST(test_cluster_batch_writes_parallel)
{
    tc_options o;
    cl_options(&o, &cluster);
    o.coherence = TC_COHERENCE_NONE; /* no subscriber: our batch is the only writer */
    o.local_max_bytes = 0;
    o.command_timeout_ms = 8000;
    tc_cache *c = tct_open(&o);
    enum { N = 30 };
    char kb[N][16], vb[N][16];
    const char *keys[N];
    const void *vals[N];
    size_t lens[N];
    bool on[TCF_CLUSTER_MAX] = {false};
    for (int i = 0; i < N; i++) {
        snprintf(kb[i], sizeof kb[i], "par%d", i);
        keys[i] = kb[i];
        vals[i] = "old";
        lens[i] = 3;
    }
    ck_assert_int_eq(tc_set_many(c, keys, vals, lens, N, TC_TTL_DEFAULT), TC_OK);
    for (int i = 0; i < N; i++) {
        int h = key_holder(&cluster, c, kb[i]);
        ck_assert_int_ge(h, 0);
        on[h] = true;
    }
    for (int i = 0; i < cluster.n; i++)
        ck_assert_msg(on[i], "no key of the batch on node %d", i);
    for (int i = 0; i < N; i++) {
        snprintf(vb[i], sizeof vb[i], "new%d", i);
        vals[i] = vb[i];
        lens[i] = strlen(vb[i]);
    }
    batch_arg a = {.c = c, .keys = keys, .vals = vals, .lens = lens, .n = N};
    ck_assert_msg(batch_reaches_all_nodes_at_once(&a), "set_many went node after node");
    for (int i = 0; i < N; i++)
        tct_expect(c, kb[i], TC_OK, vb[i]);
    batch_arg d = {.c = c, .keys = keys, .n = N};
    ck_assert_msg(batch_reaches_all_nodes_at_once(&d), "delete_many went node after node");
    for (int i = 0; i < N; i++)
        tct_expect(c, kb[i], TC_MISS, NULL);
    ck_assert_uint_eq(rstats(c).errors, 0);
    tc_close(c);
}
END_TEST

/* One slow node must not fail the rest of a cross-node batch: the replies of the others are
 * read after it, and they must not be judged by the time the slow one used up. Each master
 * in turn holds writes back for longer than the command timeout: the batch reports the
 * timeout, the other masters' writes land, and their breakers stay closed. */
START_TEST(test_cluster_batch_slow_node_spares_others)
{
    tc_options o;
    cl_options(&o, &cluster);
    o.coherence = TC_COHERENCE_NONE;
    o.local_max_bytes = 0;
    o.command_timeout_ms = 300;
    tc_cache *c = tct_open(&o);
    enum { N = 30 };
    char kb[N][16];
    const char *keys[N], *one_on[TCF_CLUSTER_MAX] = {NULL};
    const void *vals[N];
    size_t lens[N];
    int on[N];
    for (int i = 0; i < N; i++) {
        snprintf(kb[i], sizeof kb[i], "slow%d", i);
        keys[i] = kb[i];
        vals[i] = "v";
        lens[i] = 1;
    }
    ck_assert_int_eq(tc_set_many(c, keys, vals, lens, N, TC_TTL_DEFAULT), TC_OK);
    for (int i = 0; i < N; i++) {
        on[i] = key_holder(&cluster, c, kb[i]);
        ck_assert_int_ge(on[i], 0);
        one_on[on[i]] = kb[i];
    }
    for (int paused = 0; paused < cluster.n; paused++) {
        ck_assert_ptr_nonnull(one_on[paused]);
        free(node_cmd(paused, "CLIENT", "PAUSE", "700", "WRITE", NULL));
        char val[16];
        snprintf(val, sizeof val, "p%d", paused);
        for (int i = 0; i < N; i++) {
            vals[i] = val;
            lens[i] = strlen(val);
        }
        ck_assert_int_eq(tc_set_many(c, keys, vals, lens, N, TC_TTL_DEFAULT), TC_ERR_TIMEOUT);
        for (int i = 0; i < N; i++) /* the others wrote, and still answer at once */
            if (on[i] != paused)
                tct_expect(c, kb[i], TC_OK, val);
        for (int m = 0; m < cluster.n; m++)
            if (m != paused)
                ck_assert_int_eq(tc_set(c, one_on[m], "x", 1, TC_TTL_DEFAULT), TC_OK);
        tct_sleep_ms(800); /* the pause ends; the slow node's breaker may take a probe */
        int64_t t0 = tc__now_ns();
        while (tc_set(c, one_on[paused], "x", 1, TC_TTL_DEFAULT) != TC_OK &&
               tc__now_ns() - t0 < 5000000000LL)
            tct_sleep_ms(50);
    }
    tc_close(c);
}
END_TEST

START_TEST(test_cluster_clear_all_masters_prefix_isolation)
{
    char pa[64], pb[64];
    tcf_unique_prefix(pa, sizeof pa);
    tcf_unique_prefix(pb, sizeof pb);
    tc_cache *a = cl_open(&cluster, pa, 0), *b = cl_open(&cluster, pb, 0);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "c%d", i);
        ck_assert_int_eq(tc_set(a, key, "a", 1, TC_TTL_DEFAULT), TC_OK);
        ck_assert_int_eq(tc_set(b, key, "b", 1, TC_TTL_DEFAULT), TC_OK);
    }
    ck_assert_int_eq(tc_clear(a), TC_OK);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "c%d", i);
        tct_expect(a, key, TC_MISS, NULL);
        tct_expect(b, key, TC_OK, "b");
    }
    tc_close(a);
    tc_close(b);
}
END_TEST

/* ------------------------------------------------------------------ coherence, locks */

START_TEST(test_cluster_coherence_two_caches)
{
    char p[64];
    tcf_unique_prefix(p, sizeof p);
    tc_cache *c1 = cl_open(&cluster, p, 1 << 20), *c2 = cl_open(&cluster, p, 1 << 20);
    tct_sleep_ms(200); /* both subscribers listening */
    char key[32];
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "co%d", i);
        ck_assert_int_eq(tc_set(c1, key, "old", 3, TC_TTL_DEFAULT), TC_OK);
        tct_expect(c2, key, TC_OK, "old"); /* c2 now holds a local copy */
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "co%d", i);
        ck_assert_int_eq(tc_set(c1, key, "new", 3, TC_TTL_DEFAULT), TC_OK);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "co%d", i);
        bool fresh = false;
        for (int t = 0; t < 200 && !fresh; t++) {
            tc_value v;
            if (tc_get(c2, key, &v) == TC_OK) {
                fresh = v.len == 3 && memcmp(v.data, "new", 3) == 0;
                tc_value_release(&v);
            }
            if (!fresh)
                tct_sleep_ms(10);
        }
        ck_assert_msg(fresh, "%s still stale in the other cache", key);
    }
    tc_close(c1);
    tc_close(c2);
}
END_TEST

static atomic_int loads;

static tc_status loader(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    atomic_fetch_add(&loads, 1);
    return tc_buf_append(out, "loaded", 6);
}

START_TEST(test_cluster_get_or_set_and_locks)
{
    tc_cache *c = cl_open(&cluster, NULL, 1 << 20);
    char key[32];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "gs%d", i);
        tc_value v;
        ck_assert_int_eq(tc_get_or_set(c, key, loader, NULL, TC_TTL_DEFAULT, &v), TC_OK);
        ck_assert_uint_eq(v.len, 6);
        tc_value_release(&v);
        ck_assert_int_eq(tc_get_or_set(c, key, loader, NULL, TC_TTL_DEFAULT, &v), TC_OK);
        tc_value_release(&v);
    }
    ck_assert_int_eq(atomic_load(&loads), 20);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "lock%d", i);
        tc_lock *l = NULL, *l2 = NULL;
        ck_assert_int_eq(tc_lock_acquire(c, key, 5000, 0, &l), TC_OK);
        ck_assert_int_eq(tc_lock_acquire(c, key, 5000, 0, &l2), TC_ERR_TIMEOUT);
        ck_assert_int_eq(tc_lock_release(l), TC_OK);
        ck_assert_int_eq(tc_lock_acquire(c, key, 5000, 0, &l2), TC_OK);
        ck_assert_int_eq(tc_lock_release(l2), TC_OK);
    }
    int64_t v = 0;
    ck_assert_int_eq(tc_ns_bump(c, "users", &v), TC_OK);
    ck_assert_int_eq(tc_set_tagged(c, "tagged", "t", 1, TC_TTL_DEFAULT, (const char *[]){"tg"}, 1),
                     TC_OK);
    tct_expect(c, "tagged", TC_OK, "t");
    ck_assert_int_eq(tc_tag_invalidate(c, "tg"), TC_OK);
    tct_expect(c, "tagged", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

/* tc_set of "mine" until it succeeds (a slot that just moved may answer TRYAGAIN or
 * CLUSTERDOWN briefly), at most 3 s. */
static bool eventually_writable(tc_cache *c, const char *key)
{
    int64_t t0 = tc__now_ns();
    while (tc_set(c, key, "mine", 4, TC_TTL_DEFAULT) != TC_OK) {
        if (tc__now_ns() - t0 > 3000000000LL)
            return false;
        tct_sleep_ms(20);
    }
    return true;
}

/* Reads key until it answers want (NULL: a miss), at most 3 s. */
static bool eventually(tc_cache *c, const char *key, const char *want)
{
    int64_t t0 = tc__now_ns();
    do {
        tc_value v;
        tc_status st = tc_get(c, key, &v);
        bool ok = want ? st == TC_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0
                       : st == TC_MISS;
        if (st == TC_OK)
            tc_value_release(&v);
        if (ok)
            return true;
        tct_sleep_ms(5);
    } while (tc__now_ns() - t0 < 3000000000LL);
    return false;
}

/* The tracking tests run in both modes where Redis reports the writes (loop index _i). */
static const tc_coherence tracking_modes[] = {TC_COHERENCE_TRACKING, TC_COHERENCE_TARGETED};

/* Tracking mode on a cluster: a subscriber and a tracker on every master, so a write by a
 * plain client (not the library) to a key on any master reaches the local tier, and so
 * does a FLUSHDB. With one subscriber, as broadcast mode has, two masters would go
 * unheard. Targeted mode: a subscriber on every master, to which the pool's connections
 * to that master redirect. */
START_TEST(test_cluster_tracking_every_master)
{
    tc_options o;
    cl_options(&o, &cluster);
    o.coherence = tracking_modes[_i];
    tc_cache *c = tct_open(&o);
    char keys[TCF_CLUSTER_MAX][32];
    bool have[TCF_CLUSTER_MAX] = {false};
    int found = 0;
    char rkey[256];
    for (int i = 0; found < cluster.n && i < 1000; i++) {
        char k[32];
        snprintf(k, sizeof k, "tk%d", i);
        ck_assert_int_eq(tc_set(c, k, "mine", 4, TC_TTL_DEFAULT), TC_OK);
        int h = key_holder(&cluster, c, k);
        if (h >= 0 && !have[h]) {
            have[h] = true;
            strcpy(keys[h], k);
            found++;
        }
    }
    ck_assert_int_eq(found, cluster.n);
    for (int m = 0; m < cluster.n; m++) {
        ck_assert(eventually(c, keys[m], "mine"));
        /* Held locally now: a second read is a local hit. */
        tc_stats s0, s1;
        int64_t t0 = tc__now_ns();
        do {
            tc_stats_get(c, &s0);
            tct_expect(c, keys[m], TC_OK, "mine");
            tc_stats_get(c, &s1);
        } while (s1.local_hits == s0.local_hits && tc__now_ns() - t0 < 3000000000LL);
        ck_assert_uint_gt(s1.local_hits, s0.local_hits);
        snprintf(rkey, sizeof rkey, "%s%s", tc__test_rprefix(c), keys[m]);
        free(node_cmd(m, "SET", rkey, "theirs", NULL, NULL));
        ck_assert_msg(eventually(c, keys[m], "theirs"), "write on master %d unheard", m);
    }
    free(node_cmd(cluster.n - 1, "FLUSHDB", NULL, NULL, NULL, NULL));
    ck_assert(eventually(c, keys[cluster.n - 1], NULL));
    tc_close(c);
}
END_TEST

#ifdef TC_ALLOC_FAIL
/* Allocation-failure torture of the cross-node writes, check_torture's loop on a cluster (run
 * this suite in a build configured with --enable-alloc-fail and --enable-asan): each
 * allocation of a set and a delete over keys on every master fails in turn. Each run returns
 * TC_ERR_NOMEM or succeeds, leaks nothing (ASan) and gives every connection back: the batches
 * after it, more than the pool has connections, still work within the timeout. */
START_TEST(test_cluster_torture_batch_writes)
{
    tc_options o;
    cl_options(&o, &cluster);
    o.coherence = TC_COHERENCE_NONE; /* no subscriber thread allocating meanwhile */
    o.local_max_bytes = 0;
    o.pool_size = 2;
    o.command_timeout_ms = 2000;
    tc_cache *c = tct_open(&o);
    enum { N = 20 };
    char rkb[N][640];
    const char *rkeys[N];
    const void *vals[N];
    size_t rklens[N], lens[N];
    for (int i = 0; i < N; i++) {
        snprintf(rkb[i], sizeof rkb[i], "%stw%d", tc__test_rprefix(c), i);
        rkeys[i] = rkb[i];
        rklens[i] = strlen(rkb[i]);
        vals[i] = "v";
        lens[i] = 1;
    }
    tc_pub pub = {.channel = "tw-torture", .channel_len = 10, .payload = "x", .payload_len = 1};
    tc_remote *rem = tc__cache_remote(c);
    for (int kind = 0; kind < 2; kind++) {
        int n, nomem = 0;
        for (n = 1; n < 1000; n++) {
            size_t deleted = 0;
            tc__alloc_fail_at((uint64_t)n);
            tc_status st = kind == 0
                               ? tc__remote_set(rem, N, rkeys, rklens, vals, lens, 60000, &pub)
                               : tc__remote_delete(rem, N, rkeys, rklens, &pub, &deleted);
            uint64_t made = tc__alloc_fail_at(0);
            if (made < (uint64_t)n) {
                ck_assert_msg(st == TC_OK, "no failure injected: %s", tc_strerror(st));
                break;
            }
            ck_assert_msg(st == TC_ERR_NOMEM || st == TC_OK, "allocation %d failed: %s", n,
                          tc_strerror(st));
            nomem += st == TC_ERR_NOMEM;
            for (int k = 0; k < 3; k++)
                ck_assert_int_eq(tc__remote_set(rem, N, rkeys, rklens, vals, lens, 60000, &pub),
                                 TC_OK);
        }
        ck_assert_int_lt(n, 1000);
        ck_assert_int_gt(nomem, 0);
        printf("torture cluster %s: %d allocations, %d TC_ERR_NOMEM\n",
               kind == 0 ? "set_many" : "delete_many", n - 1, nomem);
    }
    tc_close(c);
}
END_TEST
#endif

/* ------------------------------------------------------------------ slot migration */

typedef struct load_arg {
    tc_cache *c;
    atomic_bool stop;
    atomic_int ops, errors;
} load_arg;

static void *load_thread(void *p)
{
    load_arg *a = p;
    char key[32];
    for (int i = 0; !atomic_load(&a->stop); i++) {
        /* The migrating slot ("{mig}") and others. */
        snprintf(key, sizeof key, i % 2 ? "{mig}b" : "other%d", i % 50);
        tc_status st = tc_set(a->c, key, "L", 1, TC_TTL_DEFAULT);
        tc_value v;
        tc_status g = tc_get(a->c, key, &v);
        if (g == TC_OK)
            tc_value_release(&v);
        if (st != TC_OK || (g != TC_OK && g != TC_MISS))
            atomic_fetch_add(&a->errors, 1);
        atomic_fetch_add(&a->ops, 1);
    }
    return NULL;
}

/* One command on a server outside the cluster struct; asserts a reply. */
static char *cmd_on(const tcf_redis *r, const char *a0, const char *a1, const char *a2,
                    const char *a3, const char *a4)
{
    const char *argv[] = {a0, a1, a2, a3, a4, NULL};
    char *x = tcf_redis_cmd(r, argv);
    ck_assert_msg(x != NULL, "%s %s %s %s %s on port %d failed", a0, a1 ? a1 : "", a2 ? a2 : "",
                  a3 ? a3 : "", a4 ? a4 : "", r->port);
    return x;
}

/* Moves the empty slot from the server from to the server to (CLUSTER SETSLOT on both). */
static void move_empty_slot(const tcf_redis *from, const tcf_redis *to, const char *slot)
{
    char *from_id = cmd_on(from, "CLUSTER", "MYID", NULL, NULL, NULL);
    char *to_id = cmd_on(to, "CLUSTER", "MYID", NULL, NULL, NULL);
    free(cmd_on(to, "CLUSTER", "SETSLOT", slot, "IMPORTING", from_id));
    free(cmd_on(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", to_id));
    free(cmd_on(to, "CLUSTER", "SETSLOT", slot, "NODE", to_id));
    /* A source that has just lost its last slot may already have turned into the target's
     * replica (Redis does that) and refuse SETSLOT: either way it no longer serves it. */
    const char *argv[] = {"CLUSTER", "SETSLOT", slot, "NODE", to_id, NULL};
    free(tcf_redis_cmd(from, argv));
    free(from_id);
    free(to_id);
}

/* Whether the server has at least one pub/sub client. */
static bool has_subscriber(const tcf_redis *r)
{
    char *x = cmd_on(r, "CLIENT", "LIST", "TYPE", "pubsub", NULL);
    bool yes = strstr(x, "id=") != NULL;
    free(x);
    return yes;
}

/* Tracking on a cluster whose set of masters changes: a fourth server joins and takes one
 * slot. The subscriber notices at its next map reload, resubscribes on all four masters,
 * and a plain client's write to a key of that slot then reaches the local tier. Without the
 * check, the new master would go unheard. Then the new master dies and the slot goes back:
 * the subscriber recovers by itself. The server is forgotten at the end, so the tests
 * after this one see the cluster as before. */
START_TEST(test_cluster_tracking_follows_new_master)
{
    tc_options o;
    cl_options(&o, &cluster);
    o.coherence = tracking_modes[_i];
    o.heartbeat_ms = 100;
    tc_cache *c = tct_open(&o);
    tcf_redis extra;
    ck_assert_int_eq(tcf_cluster_node_start(&extra), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", extra.port);
    free(node_cmd(0, "CLUSTER", "MEET", "127.0.0.1", port, NULL));
    /* A key whose slot holds no key yet, and that slot's owner. */
    char key[64], rkey[256], slot[16] = "";
    int owner = -1;
    for (int i = 0; owner < 0 && i < 100; i++) {
        snprintf(key, sizeof key, "nm{%d-%d}", (int)getpid(), i);
        snprintf(rkey, sizeof rkey, "%s%s", tc__test_rprefix(c), key);
        char *x = node_cmd(0, "CLUSTER", "KEYSLOT", rkey, NULL, NULL);
        snprintf(slot, sizeof slot, "%s", x);
        free(x);
        for (int m = 0; m < cluster.n && owner < 0; m++) {
            char *e = node_cmd(m, "EXISTS", rkey, NULL, NULL, NULL); /* MOVED elsewhere */
            char *n = e ? node_cmd(m, "CLUSTER", "COUNTKEYSINSLOT", slot, NULL, NULL) : NULL;
            if (n && strcmp(n, "0") == 0)
                owner = m;
            free(e);
            free(n);
        }
    }
    ck_assert_int_ge(owner, 0);
    /* Every server must know the new one before a slot can move to it. */
    for (int m = 0; m <= cluster.n; m++) {
        const tcf_redis *r = m < cluster.n ? &cluster.nodes[m] : &extra;
        int64_t t0 = tc__now_ns();
        char *info = cmd_on(r, "CLUSTER", "INFO", NULL, NULL, NULL);
        while (!strstr(info, "cluster_known_nodes:4") && tc__now_ns() - t0 < 5000000000LL) {
            free(info);
            tct_sleep_ms(20);
            info = cmd_on(r, "CLUSTER", "INFO", NULL, NULL, NULL);
        }
        ck_assert_msg(strstr(info, "cluster_known_nodes:4") != NULL, "MEET: %s", info);
        free(info);
    }
    move_empty_slot(&cluster.nodes[owner], &extra, slot);
    int64_t t0 = tc__now_ns();
    while (!has_subscriber(&extra) && tc__now_ns() - t0 < 10000000000LL)
        tct_sleep_ms(20);
    ck_assert_msg(has_subscriber(&extra),
                  "no subscriber on the new master (link failures %" PRIu64 ", map reloads %" PRIu64
                  ")",
                  (uint64_t)TC_READ(tc__cache_counters(c), link_failures),
                  (uint64_t)rstats(c).map_refreshes);
    ck_assert(eventually_writable(c, key));
    ck_assert(eventually(c, key, "mine"));
    free(cmd_on(&extra, "SET", rkey, "theirs", NULL, NULL));
    ck_assert_msg(eventually(c, key, "theirs"), "a write on the new master went unheard");
    /* The new master dies and its old owner takes the slot back, as a promoted replica
     * would. With no operation on that slot to make the router reload its map, the
     * subscriber must find out by itself (a failed session reloads the map) and trust the
     * local tier again on the three masters left. */
    char *extra_id = cmd_on(&extra, "CLUSTER", "MYID", NULL, NULL, NULL);
    char *owner_id = node_cmd(owner, "CLUSTER", "MYID", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(owner_id);
    tcf_redis_kill(&extra);
    free(node_cmd(owner, "CLUSTER", "SETSLOT", slot, "NODE", owner_id));
    for (int m = 0; m < cluster.n; m++)
        free(node_cmd(m, "CLUSTER", "SETSLOT", slot, "NODE", owner_id));
    t0 = tc__now_ns();
    while (tc__test_local_usable(c) && tc__now_ns() - t0 < 3000000000LL)
        tct_sleep_ms(10); /* its link to the dead server fails */
    while (!tc__test_local_usable(c) && tc__now_ns() - t0 < 10000000000LL)
        tct_sleep_ms(20);
    ck_assert_msg(tc__test_local_usable(c), "the local tier stayed bypassed");
    ck_assert(eventually_writable(c, key));
    ck_assert(eventually(c, key, "mine"));
    tc_close(c);
    tcf_redis_stop(&extra);
    for (int m = 0; m < cluster.n; m++)
        free(node_cmd(m, "CLUSTER", "FORGET", extra_id, NULL, NULL));
    free(extra_id);
    free(owner_id);
    ck_assert_int_eq(tcf_cluster_wait_ok(&cluster, 10000), 0);
}
END_TEST

static char *node_cmd(int i, const char *a0, const char *a1, const char *a2, const char *a3,
                      const char *a4)
{
    const char *argv[] = {a0, a1, a2, a3, a4, NULL};
    return tcf_redis_cmd(&cluster.nodes[i], argv);
}

static void setslot(int i, const char *slot, const char *how, const char *id)
{
    char *x = node_cmd(i, "CLUSTER", "SETSLOT", slot, how, id);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "SETSLOT %s %s on node %d", how, slot, i);
    free(x);
}

static void migrate(int src, int dst, const char *rkey)
{
    char port[16];
    snprintf(port, sizeof port, "%d", cluster.nodes[dst].port);
    const char *argv[] = {"MIGRATE", "127.0.0.1", port, rkey, "0", "5000", NULL};
    char *x = tcf_redis_cmd(&cluster.nodes[src], argv);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "MIGRATE %s: %s", rkey, x ? x : "error");
    free(x);
}

/* set_many and delete_many over keys on every master while the slot of "{mig}a" migrates
 * (that key already on the target): its transaction meets ASK and is redone there, the others
 * go straight, and the number of keys deleted adds up across nodes and the redirect. */
static void migrating_batches(tc_cache *c)
{
    enum { W = 30, NK = W + 2 };
    char names[W][16], rkb[NK][640];
    const char *keys[NK], *rkeys[NK];
    const void *vals[NK];
    size_t lens[NK], rklens[NK];
    for (int i = 0; i < W; i++) {
        snprintf(names[i], sizeof names[i], "mw%d", i);
        keys[i] = names[i];
        vals[i] = "W";
        lens[i] = 1;
    }
    keys[W] = "{mig}a";
    vals[W] = "A4";
    lens[W] = 2;
    keys[W + 1] = "mw-absent"; /* deleted below though never written */
    uint64_t ask0 = rstats(c).ask;
    ck_assert_int_eq(tc_set_many(c, keys, vals, lens, W + 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_uint_gt(rstats(c).ask, ask0);
    bool on[TCF_CLUSTER_MAX] = {false};
    for (int i = 0; i < NK; i++) {
        snprintf(rkb[i], sizeof rkb[i], "%s%s", tc__test_rprefix(c), keys[i]);
        rkeys[i] = rkb[i];
        rklens[i] = strlen(rkb[i]);
        if (i < W) {
            int h = holder(&cluster, rkb[i]);
            ck_assert_int_ge(h, 0);
            on[h] = true;
        }
    }
    for (int i = 0; i < cluster.n; i++)
        ck_assert_msg(on[i], "no key of the batch on node %d", i);
    for (int i = 0; i < W; i++)
        tct_expect(c, keys[i], TC_OK, "W");
    tct_expect(c, "{mig}a", TC_OK, "A4");
    uint64_t ask1 = rstats(c).ask;
    size_t deleted = 0;
    tc_remote *rem = tc__cache_remote(c);
    ck_assert_int_eq(tc__remote_delete(rem, NK, rkeys, rklens, NULL, &deleted), TC_OK);
    ck_assert_uint_eq(deleted, W + 1);
    ck_assert_uint_gt(rstats(c).ask, ask1);
    ck_assert_int_eq(tc__remote_delete(rem, NK, rkeys, rklens, NULL, &deleted), TC_OK);
    ck_assert_uint_eq(deleted, 0);
    for (int i = 0; i <= W; i++)
        tct_expect(c, keys[i], TC_MISS, NULL);
}

/* A cache whose every read goes to Redis, with the given recovery. */
static tc_cache *cl_open_recovery(const char *prefix, tc_recovery recovery, int timeout_ms)
{
    tc_options o;
    cl_options(&o, &cluster);
    if (prefix)
        o.key_prefix = prefix;
    o.local_max_bytes = 0;
    o.recovery = recovery;
    if (timeout_ms)
        o.command_timeout_ms = timeout_ms;
    return tct_open(&o);
}

/* Routing through a slot migration done key by key, with pauses between keys (each write a
 * single-key transaction: TC_RECOVERY_FLUSH; with group sequences a write also touches its
 * slot's sequences key and waits for the whole slot, test_cluster_write_waits_out_migration). */
START_TEST(test_cluster_slot_migration_moved_ask)
{
    tc_cache *c = cl_open_recovery(NULL, TC_RECOVERY_FLUSH, 0);
    tc_cache *c2 = cl_open_recovery(tc__cache_options(c)->key_prefix, TC_RECOVERY_FLUSH, 0);
    ck_assert_int_eq(tc_set(c, "{mig}a", "A", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "{mig}b", "B", 1, TC_TTL_DEFAULT), TC_OK);
    char ra[128], rb[128], slot[16];
    snprintf(ra, sizeof ra, "%s{mig}a", tc__test_rprefix(c));
    snprintf(rb, sizeof rb, "%s{mig}b", tc__test_rprefix(c));
    snprintf(slot, sizeof slot, "%u", tc__cluster_slot(ra, strlen(ra)));
    int src = holder(&cluster, ra), dst = (src + 1) % cluster.n;
    ck_assert_int_ge(src, 0);
    char *src_id = node_cmd(src, "CLUSTER", "MYID", NULL, NULL, NULL);
    char *dst_id = node_cmd(dst, "CLUSTER", "MYID", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(src_id);
    ck_assert_ptr_nonnull(dst_id);

    load_arg la = {.c = c2};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, load_thread, &la), 0);
    tct_sleep_ms(50);

    setslot(dst, slot, "IMPORTING", src_id);
    setslot(src, slot, "MIGRATING", dst_id);
    migrate(src, dst, ra);
    /* "{mig}a" now lives on dst while the slot is still src's: ASK. */
    tc_remote_stats s0 = rstats(c);
    tct_expect(c, "{mig}a", TC_OK, "A");
    ck_assert_int_eq(tc_set(c, "{mig}a", "A2", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "{mig}a", TC_OK, "A2");
    tct_expect(c, "{mig}b", TC_OK, NULL); /* still on src: no redirect needed */
    /* A batch whose transaction for the migrating slot is redirected, the others not. */
    const char *bk[3] = {"{mig}a", "x1", "x2"};
    const void *bv[3] = {"A3", "X", "X"};
    size_t bl[3] = {2, 1, 1};
    ck_assert_int_eq(tc_set_many(c, bk, bv, bl, 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "{mig}a", TC_OK, "A3");
    tct_expect(c, "x2", TC_OK, "X");
    /* A get_many whose batch for src meets ASK: redone key by key. */
    tc_value gv[3];
    tc_status gs[3];
    uint64_t ask_before = rstats(c).ask;
    ck_assert_int_eq(tc_get_many(c, bk, 3, gv, gs), TC_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(gs[i], TC_OK);
        ck_assert_uint_eq(gv[i].len, bl[i]);
        ck_assert_int_eq(memcmp(gv[i].data, bv[i], bl[i]), 0);
        tc_value_release(&gv[i]);
    }
    ck_assert_uint_gt(rstats(c).ask, ask_before);
    migrating_batches(c);
    ck_assert_int_eq(tc_set(c, "{mig}a", "A2", 2, TC_TTL_DEFAULT), TC_OK);
    tc_remote_stats s1 = rstats(c);
    ck_assert_uint_ge(s1.ask - s0.ask, 3);
    tct_sleep_ms(100);
    migrate(src, dst, rb);
    tct_sleep_ms(100);
    /* Target first, then the source, then the others. */
    setslot(dst, slot, "NODE", dst_id);
    setslot(src, slot, "NODE", dst_id);
    for (int i = 0; i < cluster.n; i++) {
        if (i != src && i != dst) /* optional: gossip tells them too */
            free(node_cmd(i, "CLUSTER", "SETSLOT", slot, "NODE", dst_id));
    }
    tct_sleep_ms(100);
    tct_expect(c, "{mig}a", TC_OK, "A2"); /* the map still says src: MOVED */
    tc_remote_stats s2 = rstats(c);
    ck_assert_uint_ge(s2.moved - s1.moved, 1);
    tct_expect(c, "{mig}a", TC_OK, "A2"); /* learnt: no further redirect */
    ck_assert_uint_eq(rstats(c).moved, s2.moved);
    tct_sleep_ms(100);
    atomic_store(&la.stop, true);
    pthread_join(th, NULL);
    ck_assert_int_gt(atomic_load(&la.ops), 10);
    ck_assert_int_eq(atomic_load(&la.errors), 0);
    tc_remote_stats l = rstats(c2);
    ck_assert_uint_ge(l.moved + l.ask, 1);
    ck_assert_int_eq(holder(&cluster, ra), dst);
    ck_assert_int_eq(holder(&cluster, rb), dst);
    free(src_id);
    free(dst_id);
    tc_close(c);
    tc_close(c2);
}
END_TEST

/* ------------------------------------------------------------------ recovery and migration */

/* The sequences' key of slot sl under c's key_prefix. */
static void seq_key_of(tc_cache *c, unsigned sl, char *out)
{
    char base[128];
    size_t bl = (size_t)snprintf(base, sizeof base, "%s:__tc:seq",
                                 tc__cache_options(c)->key_prefix);
    out[tc__slot_key(out, base, bl, sl)] = '\0';
}

/* A slot migration of the slot of keys a and b (under c's prefix) between two masters. */
typedef struct slot_mig {
    char ra[128], rb[128], seq[160], slot[16];
    unsigned sl;
    int src, dst;
    char *src_id, *dst_id;
} slot_mig;

/* Names the keys, the slot's sequences key and the two masters, and starts the migration
 * (IMPORTING on the target, MIGRATING on the source); nothing has moved yet. */
static void mig_begin(slot_mig *m, tc_cache *c, const char *a, const char *b)
{
    snprintf(m->ra, sizeof m->ra, "%s%s", tc__test_rprefix(c), a);
    snprintf(m->rb, sizeof m->rb, "%s%s", tc__test_rprefix(c), b);
    m->sl = tc__cluster_slot(m->ra, strlen(m->ra));
    snprintf(m->slot, sizeof m->slot, "%u", m->sl);
    seq_key_of(c, m->sl, m->seq);
    m->src = holder(&cluster, m->ra);
    m->dst = (m->src + 1) % cluster.n;
    ck_assert_int_ge(m->src, 0);
    ck_assert_int_eq(holder(&cluster, m->seq), m->src);
    m->src_id = node_cmd(m->src, "CLUSTER", "MYID", NULL, NULL, NULL);
    m->dst_id = node_cmd(m->dst, "CLUSTER", "MYID", NULL, NULL, NULL);
    ck_assert_ptr_nonnull(m->src_id);
    ck_assert_ptr_nonnull(m->dst_id);
    setslot(m->dst, m->slot, "IMPORTING", m->src_id);
    setslot(m->src, m->slot, "MIGRATING", m->dst_id);
}

/* Gives the (emptied) slot to the target: the target first, then the source (the other
 * way round, a write between the two would be sent back and forth by MOVED), then the
 * others, as a resharding tool does. */
static void mig_end(slot_mig *m)
{
    free(node_cmd(m->dst, "CLUSTER", "SETSLOT", m->slot, "NODE", m->dst_id));
    free(node_cmd(m->src, "CLUSTER", "SETSLOT", m->slot, "NODE", m->dst_id));
    for (int i = 0; i < cluster.n; i++)
        if (i != m->src && i != m->dst)
            free(node_cmd(i, "CLUSTER", "SETSLOT", m->slot, "NODE", m->dst_id));
}

static void mig_free(slot_mig *m)
{
    free(m->src_id);
    free(m->dst_id);
}

/* Moves the migration's last key (b), then gives the slot to its target, after a pause. */
static void *finish_migration(void *p)
{
    slot_mig *m = p;
    tct_sleep_ms(150);
    migrate(m->src, m->dst, m->rb);
    mig_end(m);
    return NULL;
}

/* With group sequences every write touches two keys of its slot (the key and the slot's
 * sequences key). While a migration has moved some of the slot's keys and not others,
 * Redis answers TRYAGAIN; the write waits (pausing, within command_timeout_ms) until the
 * keys are together again, and then succeeds through ASK or MOVED. */
START_TEST(test_cluster_write_waits_out_migration)
{
    tc_cache *c = cl_open_recovery(NULL, TC_RECOVERY_GROUPS, 3000);
    ck_assert_int_eq(tc_set(c, "{tw}a", "A", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "{tw}b", "B", 1, TC_TTL_DEFAULT), TC_OK);
    slot_mig m;
    mig_begin(&m, c, "{tw}a", "{tw}b");
    migrate(m.src, m.dst, m.ra);
    migrate(m.src, m.dst, m.seq); /* "{tw}b" alone stays on src: its writes meet TRYAGAIN */
    pthread_t th;
    uint64_t again0 = rstats(c).tryagain;
    ck_assert_int_eq(pthread_create(&th, NULL, finish_migration, &m), 0);
    ck_assert_int_eq(tc_set(c, "{tw}b", "B2", 2, TC_TTL_DEFAULT), TC_OK);
    pthread_join(th, NULL);
    ck_assert_uint_gt(rstats(c).tryagain, again0);
    tct_expect(c, "{tw}b", TC_OK, "B2");
    tct_expect(c, "{tw}a", TC_OK, "A");
    ck_assert_int_eq(holder(&cluster, m.rb), m.dst);
    mig_free(&m);
    tc_close(c);
}
END_TEST

/* Cuts every pub/sub connection on every node and waits until r is back (reconciled or
 * flushed); *rec and *fl: the reconciliations and full flushes meanwhile. write(arg), when
 * given, runs while r is cut off. */
static void cut_links(tc_cache *r, void (*write)(tc_cache *), tc_cache *w, uint64_t *rec,
                      uint64_t *fl)
{
    tc_stats s0;
    tc_stats_get(r, &s0);
    tc__test_hold_relink(r, write != NULL); /* or a long-lived link reconnects at once */
    for (int i = 0; i < cluster.n; i++)
        free(node_cmd(i, "CLIENT", "KILL", "TYPE", "pubsub", NULL));
    if (write)
        write(w);
    tc__test_hold_relink(r, false);
    tct_wait_relinked(r, &s0, rec, fl);
}

#define RM_OTHERS 20

/* How many of the keys r answers locally. */
static int local_hits(tc_cache *r, const char *const *keys, int n)
{
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    for (int i = 0; i < n; i++)
        tct_expect(r, keys[i], TC_OK, NULL);
    tc_stats_get(r, &s1);
    return (int)(s1.local_hits - s0.local_hits);
}

static void write_rmig_a(tc_cache *w)
{
    ck_assert_int_eq(tc_set(w, "{rmig}a", "A2", 2, TC_TTL_DEFAULT), TC_OK);
}

/* Recovery by group sequences across a finished slot migration. A slot's sequences live in
 * a key of that slot, so they move with its keys; the masters are the same processes, so
 * a link break after the move keeps the local tier, and a write to the moved slot while the
 * link is down drops only its group. */
START_TEST(test_cluster_recovery_across_migration)
{
    tc_cache *w = cl_open(&cluster, NULL, 0);
    const char *prefix = tc__cache_options(w)->key_prefix;
    tc_cache *r = cl_open(&cluster, prefix, 1 << 20);
    tc__test_set_full_flush_recovery(r, false);
    char names[RM_OTHERS][16];
    const char *keys[RM_OTHERS + 2] = {"{rmig}a", "{rmig}b"};
    for (int i = 0; i < RM_OTHERS; i++) {
        snprintf(names[i], sizeof names[i], "o%d", i);
        keys[i + 2] = names[i];
    }
    tc_stats s0, s1;
    tc_stats_get(r, &s0);
    for (int i = 0; i < RM_OTHERS + 2; i++)
        ck_assert_int_eq(tc_set(w, keys[i], "v", 1, TC_TTL_DEFAULT), TC_OK);
    int64_t t0 = tc__now_ns();
    for (tc_stats_get(r, &s1);
         s1.inval_received - s0.inval_received < RM_OTHERS + 2 && tc__now_ns() - t0 < 5000000000LL;
         tc_stats_get(r, &s1))
        tct_sleep_ms(2); /* every message applied: none lost when the links are cut */
    local_hits(r, keys, RM_OTHERS + 2); /* fills */
    ck_assert_int_eq(local_hits(r, keys, RM_OTHERS + 2), RM_OTHERS + 2);

    /* Move the slot with all its keys, the sequences' key among them. */
    slot_mig m;
    mig_begin(&m, r, "{rmig}a", "{rmig}b");
    migrate(m.src, m.dst, m.ra);
    migrate(m.src, m.dst, m.rb);
    migrate(m.src, m.dst, m.seq);
    mig_end(&m);
    ck_assert_int_eq(holder(&cluster, m.seq), m.dst);

    uint64_t rec, fl;
    cut_links(r, NULL, NULL, &rec, &fl);
    ck_assert_uint_eq(rec, 1);
    ck_assert_uint_eq(fl, 0);
    ck_assert_int_eq(local_hits(r, keys, RM_OTHERS + 2), RM_OTHERS + 2);

    cut_links(r, write_rmig_a, w, &rec, &fl);
    ck_assert_uint_eq(rec, 1);
    ck_assert_uint_eq(fl, 0);
    tct_expect(r, "{rmig}a", TC_OK, "A2");
    ck_assert_int_eq(local_hits(r, keys + 1, 1), 0); /* its slot's group: dropped */
    int expect = 0;
    for (int i = 2; i < RM_OTHERS + 2; i++) {
        char rk[128];
        snprintf(rk, sizeof rk, "%s%s", tc__test_rprefix(r), keys[i]);
        expect += tc__cluster_slot(rk, strlen(rk)) >> TC_INVAL_SLOT_SHIFT !=
                  m.sl >> TC_INVAL_SLOT_SHIFT;
    }
    ck_assert_int_eq(local_hits(r, keys + 2, RM_OTHERS), expect);
    mig_free(&m);
    tc_close(r);
    tc_close(w);
}
END_TEST

/* ------------------------------------------------------------------ a master dies */

START_TEST(test_cluster_killed_master)
{
    tcf_cluster own;
    ck_assert_int_eq(tcf_cluster_start(&own, 3), 0);
    tc_options o;
    cl_options(&o, &own);
    o.command_timeout_ms = 300;
    o.connect_timeout_ms = 300;
    o.local_max_bytes = 0;
    tc_cache *c = tct_open(&o);
    o.local_max_bytes = 1 << 20;
    o.heartbeat_ms = 200;
    tc_cache *c2 = tct_open(&o); /* its subscriber is on the first seed: the victim */
    char key[32];
    int where[60];
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "d%d", i);
        ck_assert_int_eq(tc_set(c, key, "v", 1, TC_TTL_DEFAULT), TC_OK);
        where[i] = key_holder(&own, c, key);
    }
    int victim = 0, live = -1;
    for (int i = 0; i < 60; i++) {
        if (where[i] != victim && live < 0)
            live = i;
    }
    ck_assert_int_ge(live, 0);
    char lkey[32];
    snprintf(lkey, sizeof lkey, "d%d", live);
    tct_expect(c2, lkey, TC_OK, "v"); /* a local copy in c2 */
    tcf_redis_kill(&own.nodes[victim]);
    int ok = 0, failed = 0;
    for (int i = 0; i < 60; i++) {
        snprintf(key, sizeof key, "d%d", i);
        int64_t t0 = tc__now_ns();
        tc_value v;
        tc_status st = tc_get(c, key, &v);
        int64_t ms = (tc__now_ns() - t0) / 1000000;
        ck_assert_msg(ms < 2000, "a read took %lld ms", (long long)ms);
        if (where[i] == victim) {
            ck_assert_msg(st == TC_ERR_IO || st == TC_ERR_TIMEOUT, "%s: %s", key, tc_strerror(st));
            failed++;
        } else {
            ck_assert_msg(st == TC_OK, "%s: %s", key, tc_strerror(st));
            tc_value_release(&v);
            ok++;
        }
    }
    ck_assert_int_gt(ok, 0);
    ck_assert_int_gt(failed, 0);
    /* A batch touching the dead node fails as a whole; batches of live keys keep working,
     * and no connection is lost on the way (more rounds than the pool has connections). */
    const char *all[60], *alive[60];
    char names[60][16];
    size_t nalive = 0;
    for (int i = 0; i < 60; i++) {
        snprintf(names[i], sizeof names[i], "d%d", i);
        all[i] = names[i];
        if (where[i] != victim)
            alive[nalive++] = names[i];
    }
    tc_value vs[60];
    tc_status ss[60];
    tc_status bst = tc_get_many(c, all, 60, vs, ss);
    ck_assert_msg(bst == TC_ERR_IO || bst == TC_ERR_TIMEOUT, "%s", tc_strerror(bst));
    for (int round = 0; round < 20; round++) {
        ck_assert_int_eq(tc_get_many(c, alive, nalive, vs, ss), TC_OK);
        for (size_t i = 0; i < nalive; i++) {
            ck_assert_int_eq(ss[i], TC_OK);
            tc_value_release(&vs[i]);
        }
    }
    /* Writes to live slots keep working once the others mark the node failed. */
    tcf_cluster_wait_ok(&own, 5000);
    for (int i = 0; i < 60; i++) {
        if (where[i] == victim)
            continue;
        snprintf(key, sizeof key, "d%d", i);
        ck_assert_int_eq(tc_set(c, key, "w", 1, TC_TTL_DEFAULT), TC_OK);
        tct_expect(c, key, TC_OK, "w");
    }
    /* c2's subscriber moved to a live node (flushing its local tier): its copy of a live
     * key is not served stale. */
    bool fresh = false;
    for (int i = 0; i < 100 && !fresh; i++) {
        tc_value v;
        if (tc_get(c2, lkey, &v) == TC_OK) {
            fresh = v.len == 1 && memcmp(v.data, "w", 1) == 0;
            tc_value_release(&v);
        }
        if (!fresh)
            tct_sleep_ms(50);
    }
    ck_assert_msg(fresh, "c2 still serves its copy from before the node died");
    tc_close(c2);
    tc_close(c);
    tcf_cluster_stop(&own);
}
END_TEST

static Suite *cluster_suite(void)
{
    Suite *s = suite_create("cluster");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        {"crc16", test_cluster_crc16_slots},
        {"url", test_cluster_url_parse},
        {"basic", test_cluster_basic_ops},
        {"batches", test_cluster_batches_across_slots},
        {"batch_parallel", test_cluster_batch_writes_parallel},
        {"batch_slow_node", test_cluster_batch_slow_node_spares_others},
        {"clear", test_cluster_clear_all_masters_prefix_isolation},
        {"coherence", test_cluster_coherence_two_caches},
        {"load_lock", test_cluster_get_or_set_and_locks},
        {"tracking", test_cluster_tracking_every_master},
        {"tracking_new_master", test_cluster_tracking_follows_new_master},
        {"migration", test_cluster_slot_migration_moved_ask},
        {"recovery_migration", test_cluster_recovery_across_migration},
        {"tryagain", test_cluster_write_waits_out_migration},
        {"killed", test_cluster_killed_master},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 60);
        if (cases[i].test == test_cluster_tracking_every_master ||
            cases[i].test == test_cluster_tracking_follows_new_master)
            tcase_add_loop_test(tc, cases[i].test, 0, 2); /* over tracking_modes */
        else
            tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
#ifdef TC_ALLOC_FAIL
    TCase *tc = tcase_create("torture");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cluster_torture_batch_writes);
    suite_add_tcase(s, tc);
#endif
    return s;
}

int main(void)
{
    if (tct_tls_setup() != 0 || tcf_cluster_start(&cluster, 3) != 0) {
        fprintf(stderr, "cannot start the test cluster: failing\n");
        tct_tls_teardown();
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(cluster_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tcf_cluster_stop(&cluster);
    tct_tls_teardown();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
