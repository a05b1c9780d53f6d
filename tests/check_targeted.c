/*
 * Targeted coherence (TC_COHERENCE_TARGETED): Redis's default client tracking tells only
 * the processes that read a key. The redirect protocol on one node (a read is tracked only
 * through a connection whose redirect is the node's live link), invalidations that reach
 * the holders and nobody else, a subscriber link killed inside the fill window, and a
 * tracking table that overflows on the server.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "remote_conn.h"
#include "testing.h"
#include "testutil.h"

/* Generous: the healthy-link delay is milliseconds; sanitizer builds are slow. */
#define BOUND_MS 2000

static char prefix[64];

static void options_for(tc_options *o)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_options_init(o);
    tct_tls_options(o);
    o->redis_url = tct_redis.url;
    o->key_prefix = prefix;
    o->coherence = TC_COHERENCE_TARGETED;
}

static tc_cache *open_targeted(void)
{
    tc_options o;
    options_for(&o);
    return tct_open(&o);
}

/* The Redis key of key under the test's prefix (version 1). */
static const char *rkey_of(const char *key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:1:%s", prefix, key);
    return buf;
}

/* Writes key = val the way a plain client would. */
static void plain_set(const char *key, const char *val)
{
    char rk[128];
    const char *argv[] = {"SET", rkey_of(key, rk, sizeof rk), val, NULL};
    char *r = tct_redis_cmd(argv);
    ck_assert_ptr_nonnull(r);
    free(r);
}

static uint64_t inval_received(tc_cache *c)
{
    tc_stats s;
    tc_stats_get(c, &s);
    return s.inval_received;
}

static uint64_t local_hits(tc_cache *c)
{
    tc_stats s;
    tc_stats_get(c, &s);
    return s.local_hits;
}

/* Reads key and asserts it is served from the local tier with value want. */
static void expect_local(tc_cache *c, const char *key, const char *want)
{
    uint64_t h0 = local_hits(c);
    tct_expect(c, key, TC_OK, want);
    ck_assert_uint_eq(local_hits(c), h0 + 1);
}

/* Polls key until it reads as want or BOUND_MS passes; returns whether it did. */
static bool wait_for(tc_cache *c, const char *key, const char *want)
{
    int64_t t0 = tc__now_ns();
    while (tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000) {
        tc_value v;
        tc_status st = tc_get(c, key, &v);
        bool same = st == TC_OK && v.len == strlen(want) && memcmp(v.data, want, v.len) == 0;
        if (st == TC_OK)
            tc_value_release(&v);
        if (same)
            return true;
        tct_sleep_ms(1);
    }
    return false;
}

static bool wait_usable(tc_cache *c)
{
    int64_t t0 = tc__now_ns();
    while (!tc__test_local_usable(c) && tc__now_ns() - t0 < 5000000000LL)
        tct_sleep_ms(5);
    return tc__test_local_usable(c);
}

/* ------------------------------------------------------------------ the redirect protocol */

/* A raw connection subscribed to __redis__:invalidate; its client id in *id. */
static tc_conn *invalidation_sink(tc_remote *r, long long *id)
{
    tc_conn *c = NULL;
    ck_assert_int_eq(tc__remote_connect(r, 1000, &c), TC_OK);
    redisReply *x = NULL;
    const char *idv[] = {"CLIENT", "ID"};
    ck_assert_int_eq(tc__conn_command(c, 2, idv, NULL, &x), TC_OK);
    ck_assert_int_eq(x->type, REDIS_REPLY_INTEGER);
    *id = x->integer;
    freeReplyObject(x);
    const char *sub[] = {"SUBSCRIBE", "__redis__:invalidate"};
    ck_assert_int_eq(tc__conn_command(c, 2, sub, NULL, &x), TC_OK);
    freeReplyObject(x);
    return c;
}

/* The redirect CLIENT TRACKINGINFO reports for the pool's (one) connection. */
static long long pool_redirect(tc_remote *r)
{
    const char *argv[] = {"CLIENT", "TRACKINGINFO"};
    redisReply *x = NULL;
    ck_assert_int_eq(tc__remote_command(r, 2, argv, NULL, &x), TC_OK);
    long long redirect = -2;
    for (size_t i = 0; x->type == REDIS_REPLY_ARRAY && i + 1 < x->elements; i += 2)
        if (strcmp(x->element[i]->str, "redirect") == 0)
            redirect = x->element[i + 1]->integer;
    freeReplyObject(x);
    return redirect;
}

START_TEST(test_targeted_read_tracked_only_to_live_link)
{
    if (tct_on_cluster())
        return; /* one node's protocol: the cluster runs the cache-level tests */
    tc_remote_config rc = {.url = tct_redis.url,
                           .pool_size = 1,
                           .connect_timeout_ms = 1000,
                           .command_timeout_ms = 1000};
    if (tct_on_tls()) {
        rc.tls.ca_file = tct_tls()->ca_file;
        rc.tls.cert_file = tct_tls()->client_cert;
        rc.tls.key_file = tct_tls()->client_key;
    }
    tc_remote *r = NULL;
    ck_assert_int_eq(tc__remote_open(&rc, &r), TC_OK);
    tc_node *node = NULL;
    ck_assert_int_eq(tc__remote_masters(r, &node, 1), 1);
    tcf_unique_prefix(prefix, sizeof prefix);
    char rk[128];
    rkey_of("p", rk, sizeof rk);
    plain_set("p", "v");
    tc_ref *val = NULL;
    bool tracked = true;

    /* No live link: the value is returned, not tracked, and nothing was enabled. */
    ck_assert_int_eq(tc__remote_get_tracked(r, rk, strlen(rk), &val, NULL, &tracked), TC_OK);
    ck_assert(!tracked);
    tc__ref_drop(val);
    ck_assert_int_eq(pool_redirect(r), -1); /* tracking off: redirect -1 */

    /* A link id Redis does not know (the link died since it was set): refused, untracked,
     * and the GET of the same round trip still answers. */
    tc__node_set_link(node, 999999999);
    tracked = true;
    ck_assert_int_eq(tc__remote_get_tracked(r, rk, strlen(rk), &val, NULL, &tracked), TC_OK);
    ck_assert(!tracked);
    tc__ref_drop(val);

    /* A live link: tracked to it, and a plain client's write reaches it. */
    long long id1 = 0, id2 = 0;
    tc_conn *s1 = invalidation_sink(r, &id1);
    tc_conn *s2 = invalidation_sink(r, &id2);
    tc__node_set_link(node, id1);
    ck_assert_int_eq(tc__remote_get_tracked(r, rk, strlen(rk), &val, NULL, &tracked), TC_OK);
    ck_assert(tracked);
    tc__ref_drop(val);
    ck_assert_int_eq(pool_redirect(r), id1);

    /* A new link (a reconnect): the same pooled connection moves its redirect before the
     * next read for the tier, in that read's round trip. */
    tc__node_set_link(node, id2);
    ck_assert_int_eq(tc__remote_get_tracked(r, rk, strlen(rk), &val, NULL, &tracked), TC_OK);
    ck_assert(tracked);
    tc__ref_drop(val);
    ck_assert_int_eq(pool_redirect(r), id2);

    /* Batches too. */
    const char *keys[] = {rk};
    size_t klens[] = {strlen(rk)};
    tc_ref *vals[1] = {NULL};
    tc_status sts[1];
    bool trk[1] = {false};
    tc__node_set_link(node, id1);
    ck_assert_int_eq(tc__remote_get_many_tracked(r, 1, keys, klens, vals, NULL, sts, trk), TC_OK);
    ck_assert(trk[0]);
    ck_assert_int_eq(sts[0], TC_OK);
    tc__ref_drop(vals[0]);
    ck_assert_int_eq(pool_redirect(r), id1);
    tc__node_set_link(node, 0);
    ck_assert_int_eq(tc__remote_get_many_tracked(r, 1, keys, klens, vals, NULL, sts, trk), TC_OK);
    ck_assert(!trk[0]);
    tc__ref_drop(vals[0]);

    /* The key was read under redirect id1 last: a write is reported there. */
    plain_set("p", "w");
    redisReply *m = NULL;
    ck_assert_int_eq(tc__conn_get_reply(s1, &m), TC_OK);
    ck_assert_int_eq(m->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(m->elements, 3);
    ck_assert_str_eq(m->element[2]->element[0]->str, rk);
    freeReplyObject(m);
    tc__conn_free(s1);
    tc__conn_free(s2);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ holders only */

#define FLEET 8

START_TEST(test_targeted_only_holders_hear)
{
    tc_options o;
    options_for(&o);
    tc_cache *cs[FLEET];
    for (int i = 0; i < FLEET; i++)
        cs[i] = tct_open(&o);
    plain_set("hot", "1");
    /* Every instance reads (so its pool tracks), instance 0 alone the hot key. */
    for (int i = 1; i < FLEET; i++) {
        char k[16];
        snprintf(k, sizeof k, "own%d", i);
        plain_set(k, "x");
        tct_expect(cs[i], k, TC_OK, "x");
        expect_local(cs[i], k, "x");
    }
    tct_expect(cs[0], "hot", TC_OK, "1");
    expect_local(cs[0], "hot", "1");
    uint64_t before[FLEET];
    for (int i = 0; i < FLEET; i++)
        before[i] = inval_received(cs[i]);

    /* A plain client's write reaches the holder... */
    plain_set("hot", "2");
    ck_assert(wait_for(cs[0], "hot", "2"));
    expect_local(cs[0], "hot", "2"); /* read again, and tracked again */
    /* ...and a write by another instance (no PUBLISH in this mode) too. */
    ck_assert_int_eq(tc_set(cs[FLEET - 1], "hot", "3", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert(wait_for(cs[0], "hot", "3"));
    tct_sleep_ms(tct_slow_ms(100)); /* anything misdirected has arrived by now */
    ck_assert_uint_eq(inval_received(cs[0]), before[0] + 2);
    for (int i = 1; i < FLEET; i++)
        ck_assert_uint_eq(inval_received(cs[i]), before[i]);
    for (int i = 1; i < FLEET; i++) { /* and nobody else lost a copy */
        char k[16];
        snprintf(k, sizeof k, "own%d", i);
        expect_local(cs[i], k, "x");
    }
    for (int i = 0; i < FLEET; i++)
        tc_close(cs[i]);
}
END_TEST

/* ------------------------------------------------------------------ a stale redirect */

typedef struct kill_ctx {
    int calls;
} kill_ctx;

/* Inside the fill window of the first fill: the subscriber link dies, and a plain client
 * writes the key. Redis sends that write's invalidation to the dead link: lost. */
static void kill_link_and_write(void *arg, const char *key)
{
    kill_ctx *k = arg;
    if (k->calls++ > 0 || strcmp(key, "k") != 0)
        return;
    const char *kill[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    free(tct_redis_cmd_all(kill));
    plain_set("k", "v3");
}

START_TEST(test_targeted_stale_redirect_never_fills)
{
    tc_options o;
    options_for(&o);
    o.pool_size = 1; /* one pooled connection: its redirect is the one that goes stale */
    tc_cache *c = tct_open(&o);
    plain_set("k", "v1");
    tct_expect(c, "k", TC_OK, "v1");
    expect_local(c, "k", "v1");
    plain_set("k", "v2");
    ck_assert(wait_for(c, "k", "v2")); /* invalidated; the copy of v2 is now local */
    expect_local(c, "k", "v2");
    plain_set("k", "v2b");
    kill_ctx k = {0};
    tc__test_set_fill_hook(c, kill_link_and_write, &k);
    /* The read that misses fetches v2b; before it is stored the link dies and v3 is
     * written. The copy of v2b must not survive the reconnection. */
    ck_assert(wait_for(c, "k", "v2b") || k.calls > 0);
    ck_assert_int_ge(k.calls, 1);
    int64_t t0 = tc__now_ns(); /* the subscriber notices the kill, reconnects, flushes */
    while (TC_READ(tc__cache_counters(c), link_failures) == 0 && tc__now_ns() - t0 < 5000000000LL)
        tct_sleep_ms(1);
    ck_assert_uint_ge(TC_READ(tc__cache_counters(c), link_failures), 1);
    ck_assert(wait_usable(c));
    ck_assert(wait_for(c, "k", "v3"));
    tct_expect(c, "k", TC_OK, "v3");
    /* The fill of v3 went through the pooled connection whose redirect named the dead
     * link: it must have moved to the new one, or this write would never be heard. */
    expect_local(c, "k", "v3");
    plain_set("k", "v4");
    ck_assert(wait_for(c, "k", "v4"));
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ the tracking table */

/* A log_fn that appends each message to the buffer arg (4096 bytes) under a mutex. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static void keep_log(void *arg, int level, const char *msg)
{
    (void)level;
    char *buf = arg;
    pthread_mutex_lock(&log_mu);
    size_t used = strlen(buf);
    snprintf(buf + used, 4096 - used, "%s\n", msg);
    pthread_mutex_unlock(&log_mu);
}

START_TEST(test_targeted_tracking_table_overflow)
{
    const char *small[] = {"CONFIG", "SET", "tracking-table-max-keys", "4", NULL};
    free(tct_redis_cmd_all(small));
    tc_options o;
    options_for(&o);
    char log[4096] = "";
    o.log_fn = keep_log;
    o.log_arg = log;
    tc_cache *c = tct_open(&o);
    ck_assert_msg(strstr(log, "tracking-table-max-keys is 4"), "open did not check: %s", log);
    enum { N = 40 };
    char key[N][16], val[32];
    for (int i = 0; i < N; i++) {
        snprintf(key[i], sizeof key[i], "t%d", i);
        plain_set(key[i], "old");
    }
    /* Redis keeps 4 of the 40 keys in its table: reading the others evicts them from it,
     * and an evicted key is invalidated at once (its holders could no longer be told). */
    for (int i = 0; i < N; i++)
        tct_expect(c, key[i], TC_OK, "old");
    for (int i = 0; i < N; i++) {
        snprintf(val, sizeof val, "new%d", i);
        plain_set(key[i], val);
    }
    for (int i = 0; i < N; i++) {
        snprintf(val, sizeof val, "new%d", i);
        ck_assert_msg(wait_for(c, key[i], val), "%s stale", key[i]);
    }
    tc_stats s;
    tc_stats_get(c, &s);
    ck_assert_uint_ge(s.inval_received, N); /* evictions' and writes' */
    tc_close(c);
    /* Back to Redis's default for the tests that follow. */
    const char *restore[] = {"CONFIG", "SET", "tracking-table-max-keys", "1000000", NULL};
    free(tct_redis_cmd_all(restore));
}
END_TEST

START_TEST(test_targeted_get_many_fills_and_hears)
{
    tc_cache *c = open_targeted();
    const char *keys[] = {"m1", "m2", "m3"};
    for (int i = 0; i < 3; i++)
        plain_set(keys[i], "a");
    tc_value out[3];
    tc_status st[3];
    ck_assert_int_eq(tc_get_many(c, keys, 3, out, st), TC_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(st[i], TC_OK);
        tc_value_release(&out[i]);
    }
    for (int i = 0; i < 3; i++)
        expect_local(c, keys[i], "a");
    for (int i = 0; i < 3; i++)
        plain_set(keys[i], "b");
    for (int i = 0; i < 3; i++)
        ck_assert(wait_for(c, keys[i], "b"));
    tc_close(c);
}
END_TEST

static Suite *targeted_suite(void)
{
    Suite *s = suite_create("targeted");
    TCase *tc = tcase_create("protocol");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_targeted_read_tracked_only_to_live_link);
    suite_add_tcase(s, tc);
    tc = tcase_create("holders");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_targeted_only_holders_hear);
    tcase_add_test(tc, test_targeted_get_many_fills_and_hears);
    suite_add_tcase(s, tc);
    tc = tcase_create("link_failure");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_targeted_stale_redirect_never_fills);
    suite_add_tcase(s, tc);
    tc = tcase_create("table");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_targeted_tracking_table_overflow);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(targeted_suite(), true);
}
