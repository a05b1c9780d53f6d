/*
 * The core API against a real Redis: what Django's cache backend tests cover, translated to
 * this API, plus the local tier's behaviour through the public calls.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "reclaim.h"
#include "format.h"
#include "key.h"
#include "testing.h"
#include "testutil.h"

/* Runs a Redis command on the suite's server (the key's node on a cluster); returns its reply as a
 * string (freed by the caller). */
static char *redis(const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {a0, a1, a2, a3, NULL};
    return tct_redis_cmd(argv);
}

static void expect_redis(const char *want, const char *a0, const char *a1, const char *a2)
{
    char *got = redis(a0, a1, a2, NULL);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, want);
    free(got);
}

/* "<prefix>:1:<key>" for the cache's default version. */
static const char *rkey_of(tc_cache *c, const char *key)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s", tc__test_rprefix(c), key);
    return buf;
}

static uint64_t remote_commands(tc_cache *c)
{
    tc_remote_stats rs;
    tc__remote_stats(tc__cache_remote(c), &rs);
    return rs.commands;
}

/* ------------------------------------------------------------------ round trips */

START_TEST(test_cache_set_get_round_trip)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "k", "value", 5, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "value");
    tct_expect(c, "absent", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_binary_and_empty_values)
{
    tc_cache *c = tct_open_default();
    const unsigned char bin[] = {0, 1, 2, 0xff, 0, 0xf8, 'T', 'C', 1, 0};
    ck_assert_int_eq(tc_set(c, "bin", bin, sizeof bin, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "empty", NULL, 0, TC_TTL_DEFAULT), TC_OK);
    for (int pass = 0; pass < 2; pass++) { /* remote, then local */
        tc_value v;
        ck_assert_int_eq(tc_get(c, "bin", &v), TC_OK);
        ck_assert_uint_eq(v.len, sizeof bin);
        ck_assert_int_eq(memcmp(v.data, bin, sizeof bin), 0);
        tc_value_release(&v);
        ck_assert_int_eq(tc_get(c, "empty", &v), TC_OK);
        ck_assert_uint_eq(v.len, 0);
        tc_value_release(&v);
        tc__local_flush(tc__cache_local(c));
    }
    tc_close(c);
}
END_TEST

START_TEST(test_cache_magic_prefixed_value_round_trips)
{
    tc_cache *c = tct_open_default();
    const char v[] = TC_FMT_MAGIC "\x08\x00\x00\x00looks like a header";
    ck_assert_int_eq(tc_set(c, "m", v, sizeof v - 1, TC_TTL_DEFAULT), TC_OK);
    tc__local_flush(tc__cache_local(c));
    tc_value out;
    ck_assert_int_eq(tc_get(c, "m", &out), TC_OK);
    ck_assert_uint_eq(out.len, sizeof v - 1);
    ck_assert_int_eq(memcmp(out.data, v, out.len), 0);
    tc_value_release(&out);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_values_are_plain_in_redis)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "plain", "hello", 5, TC_TTL_DEFAULT), TC_OK);
    expect_redis("hello", "GET", rkey_of(c, "plain"), NULL);
    /* A value written by another client is read as it is. */
    char *ok = redis("SET", rkey_of(c, "foreign"), "from-python", NULL);
    free(ok);
    tct_expect(c, "foreign", TC_OK, "from-python");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_overwrite_read_your_writes)
{
    tc_cache *c = tct_open_default();
    for (int i = 0; i < 50; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        ck_assert_int_eq(tc_set(c, "rw", v, strlen(v), TC_TTL_DEFAULT), TC_OK);
        tct_expect(c, "rw", TC_OK, v);
        tct_expect(c, "rw", TC_OK, v);
    }
    ck_assert_int_eq(tc_delete(c, "rw"), TC_OK);
    tct_expect(c, "rw", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_value_outlives_replacement)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "k", "first", 5, TC_TTL_DEFAULT), TC_OK);
    tc_value held;
    ck_assert_int_eq(tc_get(c, "k", &held), TC_OK);
    ck_assert_int_eq(tc_set(c, "k", "second", 6, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_delete(c, "k"), TC_OK);
    tc__local_flush(tc__cache_local(c));
    ck_assert_uint_eq(held.len, 5);
    ck_assert_int_eq(memcmp(held.data, "first", 5), 0);
    tc_close(c);
    tc__reclaim_now(); /* a pass frees what nothing holds (ASan: not held) */
    ck_assert_int_eq(memcmp(held.data, "first", 5), 0); /* valid after close too */
    tc_value_release(&held);
    tc_value_release(&held); /* zeroed: a second release is harmless */
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
}
END_TEST

static tc_status never_loads(void *arg, const char *key, tc_buf *out)
{
    (void)arg, (void)key, (void)out;
    ck_abort_msg("a local hit must not load");
    return TC_ERR_IO;
}

static void *release_value(void *v)
{
    tc_value_release(v);
    return NULL;
}

/* Local hits of tc_get and tc_get_or_set (borrowed: no count taken) released by another
 * thread, after the entries went and passes ran: the values stay valid until then, and are
 * freed after (ASan: no use after free, no leak). */
START_TEST(test_cache_hit_released_by_another_thread)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "a", "alpha", 5, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "b", "beta", 4, TC_TTL_DEFAULT), TC_OK);
    tc_value va, vb;
    ck_assert_int_eq(tc_get(c, "a", &va), TC_OK);
    ck_assert_int_eq(tc_get_or_set(c, "b", never_loads, NULL, TC_TTL_DEFAULT, &vb), TC_OK);
    tc_stats st;
    tc_stats_get(c, &st);
    ck_assert_uint_eq(st.local_hits, 2);
    ck_assert_int_eq(tc_delete(c, "a"), TC_OK);
    ck_assert_int_eq(tc_delete(c, "b"), TC_OK);
    for (int i = 0; i < 3; i++)
        tc__reclaim_now();
    ck_assert_int_eq(memcmp(va.data, "alpha", 5), 0);
    ck_assert_int_eq(memcmp(vb.data, "beta", 4), 0);
    pthread_t t[2];
    ck_assert_int_eq(pthread_create(&t[0], NULL, release_value, &va), 0);
    ck_assert_int_eq(pthread_create(&t[1], NULL, release_value, &vb), 0);
    ck_assert_int_eq(pthread_join(t[0], NULL), 0);
    ck_assert_int_eq(pthread_join(t[1], NULL), 0);
    tc_close(c);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
}
END_TEST

/* ------------------------------------------------------------------ NUL-terminated values */

/* Asserts that key reads as the text want, with a NUL after its bytes (data[len] == 0). */
static void expect_nul_terminated(tc_cache *c, const char *key, const char *want)
{
    tc_value v;
    ck_assert_int_eq(tc_get(c, key, &v), TC_OK);
    ck_assert_uint_eq(v.len, strlen(want));
    ck_assert_int_eq(((const char *)v.data)[v.len], '\0');
    ck_assert_str_eq(v.data, want);
    tc_value_release(&v);
}

/* A loader that appends its value in pieces, so the buffer has room to spare after it. */
static tc_status loads_pieces(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    for (const char *p = arg; *p; p++)
        if (tc_buf_append(out, p, 1) != TC_OK)
            return TC_ERR_LOADER;
    return TC_OK;
}

START_TEST(test_cache_values_nul_terminated)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "n:num", "12345", 5, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "n:empty", "", 0, TC_TTL_DEFAULT), TC_OK);
    const char *tags[] = {"n:tag"};
    ck_assert_int_eq(tc_set_tagged(c, "n:tagged", "42", 2, TC_TTL_DEFAULT, tags, 1), TC_OK);
    free(redis("SET", rkey_of(c, "n:raw"), "7", NULL)); /* another client's plain bytes */
    const char magic[] = TC_FMT_MAGIC "x";
    ck_assert_int_eq(tc_set(c, "n:magic", magic, sizeof magic - 1, TC_TTL_DEFAULT), TC_OK);
    for (int pass = 0; pass < 2; pass++) { /* local copies, then fetched from Redis */
        expect_nul_terminated(c, "n:num", "12345");
        expect_nul_terminated(c, "n:empty", "");
        expect_nul_terminated(c, "n:tagged", "42"); /* read through a stored-format header */
        expect_nul_terminated(c, "n:raw", "7");
        expect_nul_terminated(c, "n:magic", magic); /* stored behind a header */
        tc__local_flush(tc__cache_local(c));
    }
    tc_value v;
    char pi[] = "314", none[] = "";
    ck_assert_int_eq(tc_get_or_set(c, "n:loaded", loads_pieces, pi, TC_TTL_DEFAULT, &v), TC_OK);
    ck_assert_uint_eq(v.len, 3);
    ck_assert_str_eq(v.data, "314");
    tc_value_release(&v);
    ck_assert_int_eq(tc_get_or_set(c, "n:loaded-empty", loads_pieces, none, TC_TTL_DEFAULT, &v),
                     TC_OK);
    ck_assert_uint_eq(v.len, 0);
    ck_assert_str_eq(v.data, "");
    tc_value_release(&v);
    tc__local_flush(tc__cache_local(c));
    expect_nul_terminated(c, "n:loaded", "314"); /* written with an early-refresh header */
    expect_nul_terminated(c, "n:loaded-empty", "");
    const char *keys[] = {"n:num", "n:empty"};
    tc_value out[2];
    tc_status st[2];
    ck_assert_int_eq(tc_get_many(c, keys, 2, out, st), TC_OK);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(st[i], TC_OK);
        ck_assert_int_eq(((const char *)out[i].data)[out[i].len], '\0');
        tc_value_release(&out[i]);
    }
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ add, delete, touch */

START_TEST(test_cache_add_semantics)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_add(c, "a", "one", 3, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_add(c, "a", "two", 3, TC_TTL_DEFAULT), TC_EXISTS);
    tct_expect(c, "a", TC_OK, "one");
    tc__local_flush(tc__cache_local(c));
    tct_expect(c, "a", TC_OK, "one");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_delete_semantics)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_delete(c, "nothing"), TC_MISS);
    ck_assert_int_eq(tc_set(c, "d", "x", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "d", TC_OK, "x");
    ck_assert_int_eq(tc_delete(c, "d"), TC_OK);
    tct_expect(c, "d", TC_MISS, NULL);
    ck_assert_int_eq(tc_delete(c, "d"), TC_MISS);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_touch)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_touch(c, "absent", 1000), TC_MISS);
    ck_assert_int_eq(tc_set(c, "t", "x", 1, 300), TC_OK);
    ck_assert_int_eq(tc_touch(c, "t", 5000), TC_OK);
    tct_sleep_ms(400);
    tct_expect(c, "t", TC_OK, "x");
    ck_assert_int_eq(tc_touch(c, "t", TC_TTL_FOREVER), TC_OK);
    expect_redis("-1", "PTTL", rkey_of(c, "t"), NULL);
    ck_assert_int_eq(tc_touch(c, "t", 0), TC_OK);
    tct_expect(c, "t", TC_MISS, NULL);
    ck_assert_int_eq(tc_touch(c, "t", 0), TC_MISS);
    ck_assert_int_eq(tc_touch(c, "t", -5), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ incr */

START_TEST(test_cache_incr)
{
    tc_cache *c = tct_open_default();
    int64_t r = 0;
    ck_assert_int_eq(tc_incr(c, "n", 1, &r), TC_MISS);
    tct_expect(c, "n", TC_MISS, NULL); /* nothing created, as Django */
    ck_assert_int_eq(tc_set(c, "n", "41", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "n", TC_OK, "41"); /* now held locally */
    ck_assert_int_eq(tc_incr(c, "n", 1, &r), TC_OK);
    ck_assert_int_eq(r, 42);
    tct_expect(c, "n", TC_OK, "42"); /* the local copy was invalidated */
    ck_assert_int_eq(tc_incr(c, "n", -50, &r), TC_OK);
    ck_assert_int_eq(r, -8);
    ck_assert_int_eq(tc_incr(c, "n", 10, NULL), TC_OK);
    tct_expect(c, "n", TC_OK, "2");
    expect_redis("2", "GET", rkey_of(c, "n"), NULL); /* a plain Redis integer */
    tc_close(c);
}
END_TEST

START_TEST(test_cache_incr_not_int)
{
    tc_cache *c = tct_open_default();
    int64_t r = 7;
    ck_assert_int_eq(tc_set(c, "s", "abc", 3, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_incr(c, "s", 1, &r), TC_ERR_NOT_INT);
    ck_assert_int_eq(r, 7);
    ck_assert_int_eq(tc_set(c, "e", "", 0, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_incr(c, "e", 1, &r), TC_ERR_NOT_INT);
    ck_assert_int_eq(tc_set(c, "big", "9223372036854775807", 19, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_incr(c, "big", 1, &r), TC_ERR_NOT_INT); /* overflow */
    tct_expect(c, "s", TC_OK, "abc");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_incr_keeps_ttl)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "ttl", "1", 1, 60000), TC_OK);
    ck_assert_int_eq(tc_incr(c, "ttl", 1, NULL), TC_OK);
    char *pttl = redis("PTTL", rkey_of(c, "ttl"), NULL, NULL);
    ck_assert_int_gt(atoll(pttl), 50000);
    free(pttl);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ many */

START_TEST(test_cache_get_many_mixed)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "a", "A", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "c", "C", 1, TC_TTL_DEFAULT), TC_OK);
    char *ok = redis("SET", rkey_of(c, "d"), "D", NULL); /* only in Redis */
    free(ok);
    const char *keys[] = {"a", "b", "c", "d"};
    tc_value v[4];
    tc_status st[4];
    ck_assert_int_eq(tc_get_many(c, keys, 4, v, st), TC_OK);
    ck_assert_int_eq(st[0], TC_OK);
    ck_assert_int_eq(st[1], TC_MISS);
    ck_assert_int_eq(st[2], TC_OK);
    ck_assert_int_eq(st[3], TC_OK);
    ck_assert_int_eq(memcmp(v[0].data, "A", 1), 0);
    ck_assert_ptr_null(v[1].priv);
    ck_assert_int_eq(memcmp(v[2].data, "C", 1), 0);
    ck_assert_int_eq(memcmp(v[3].data, "D", 1), 0);
    for (int i = 0; i < 4; i++)
        tc_value_release(&v[i]);
    ck_assert_int_eq(tc_get_many(c, keys, 0, v, st), TC_OK);
    tc_close(c);
}
END_TEST

/* A read that goes to Redis asks the TTL with the value only when a local copy will need
 * it: without a local tier, tc_get is a plain GET. */
START_TEST(test_cache_remote_read_asks_ttl_only_for_local_copy)
{
    tc_options o;
    tct_options(&o);
    o.local_max_bytes = 0;
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    uint64_t before = remote_commands(c);
    tct_expect(c, "k", TC_OK, "v");
    ck_assert_uint_eq(remote_commands(c) - before, 1); /* GET */
    tct_expect(c, "absent", TC_MISS, NULL); /* on a cluster, maybe a new node's handshake */
    before = remote_commands(c);
    tct_expect(c, "absent", TC_MISS, NULL);
    ck_assert_uint_eq(remote_commands(c) - before, 1);
    tc_close(c);
    c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_delete(c, "k"), TC_OK); /* forget the written-through copy */
    ck_assert_int_eq(tc_set(c, "k", "v", 1, 60000), TC_OK);
    tc__local_invalidate(tc__cache_local(c), tc__key_hash("k", 1));
    before = remote_commands(c);
    tct_expect(c, "k", TC_OK, "v");
    ck_assert_uint_eq(remote_commands(c) - before, 2); /* GET + PTTL: the copy's bound */
    tc_close(c);
}
END_TEST

/* fetch_remote_ttl = 0: a fill is a GET alone (tc_get and tc_get_many), and the local
 * copy then lives its local TTL even past its Redis key's expiry; by default it asks the
 * TTL and the copy ends with the key. */
static void check_fetch_remote_ttl(int on)
{
    tc_options o;
    tct_options(&o);
    o.fetch_remote_ttl = on;
    tc_cache *c = tct_open(&o);
    const char *keys[] = {"m1", "m2", "m3"};
    const void *data[] = {"1", "2", "3"};
    size_t lens[] = {1, 1, 1};
    tc_value v[3];
    tc_status st[3];
    ck_assert_int_eq(tc_set_many(c, keys, data, lens, 3, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_get_many(c, keys, 3, v, st), TC_OK); /* opens what it needs */
    for (int i = 0; i < 3; i++)
        tc_value_release(&v[i]);
    tc__local_flush(tc__cache_local(c));
    uint64_t before = remote_commands(c);
    ck_assert_int_eq(tc_get_many(c, keys, 3, v, st), TC_OK);
    ck_assert_uint_eq(remote_commands(c) - before, on ? 6 : 3);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(st[i], TC_OK);
        ck_assert_int_eq(memcmp(v[i].data, data[i], 1), 0);
        tc_value_release(&v[i]);
    }

    tct_expect(c, "short", TC_MISS, NULL); /* on a cluster, opens its node's connection */
    free(redis("SET", rkey_of(c, "short"), "v", NULL));
    char ms[16];
    snprintf(ms, sizeof ms, "%d", tct_slow_ms(300));
    expect_redis("1", "PEXPIRE", rkey_of(c, "short"), ms);
    before = remote_commands(c);
    tct_expect(c, "short", TC_OK, "v");
    ck_assert_uint_eq(remote_commands(c) - before, on ? 2 : 1);
    tct_sleep_ms(tct_slow_ms(300) + 150); /* gone from Redis */
    expect_redis("-2", "PTTL", rkey_of(c, "short"), NULL);
    if (on)
        tct_expect(c, "short", TC_MISS, NULL); /* the copy ended with the key */
    else
        tct_expect(c, "short", TC_OK, "v"); /* the copy lives its local TTL */
    tc_close(c);
}

START_TEST(test_cache_fetch_remote_ttl)
{
    check_fetch_remote_ttl(1);
    check_fetch_remote_ttl(0);
}
END_TEST

START_TEST(test_cache_get_many_one_round_trip)
{
    tc_cache *c = tct_open_default();
    const char *keys[] = {"x1", "x2", "x3", "x4", "x5"};
    tc_remote_stats before, after;
    tc_value v[5];
    tc_status st[5];
    /* Warm first: a new connection's handshake is a round trip of its own (on a cluster,
     * the first call opens one per node). */
    ck_assert_int_eq(tc_get_many(c, keys, 5, v, st), TC_OK);
    tc__remote_stats(tc__cache_remote(c), &before);
    ck_assert_int_eq(tc_get_many(c, keys, 5, v, st), TC_OK);
    tc__remote_stats(tc__cache_remote(c), &after);
    /* One round trip per server holding the keys, sent to all before any is read. */
    ck_assert_uint_ge(after.round_trips - before.round_trips, 1);
    ck_assert_uint_le(after.round_trips - before.round_trips, (unsigned)tct_server_count());
    tc_close(c);
}
END_TEST

START_TEST(test_cache_set_many_delete_many)
{
    tc_cache *c = tct_open_default();
    const char *keys[] = {"k1", "k2", "k3"};
    const void *data[] = {"one", "", "three"};
    size_t lens[] = {3, 0, 5};
    ck_assert_int_eq(tc_set_many(c, keys, data, lens, 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k1", TC_OK, "one");
    tct_expect(c, "k2", TC_OK, "");
    tct_expect(c, "k3", TC_OK, "three");
    tc__local_flush(tc__cache_local(c));
    tct_expect(c, "k3", TC_OK, "three");
    ck_assert_int_eq(tc_delete_many(c, keys, 2), TC_OK);
    tct_expect(c, "k1", TC_MISS, NULL);
    tct_expect(c, "k2", TC_MISS, NULL);
    tct_expect(c, "k3", TC_OK, "three");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_many_bad_key_writes_nothing)
{
    tc_cache *c = tct_open_default();
    const char *keys[] = {"good1", "bad key", "good2"};
    const void *data[] = {"1", "2", "3"};
    size_t lens[] = {1, 1, 1};
    uint64_t cmds = remote_commands(c);
    ck_assert_int_eq(tc_set_many(c, keys, data, lens, 3, TC_TTL_DEFAULT), TC_ERR_ARG);
    ck_assert_int_eq(tc_delete_many(c, keys, 3), TC_ERR_ARG);
    tc_value v[3];
    tc_status st[3];
    ck_assert_int_eq(tc_get_many(c, keys, 3, v, st), TC_ERR_ARG);
    ck_assert_uint_eq(remote_commands(c), cmds);
    tct_expect(c, "good1", TC_MISS, NULL);
    size_t big[] = {1, 1u << 21, 1};
    ck_assert_int_eq(tc_set_many(c, (const char *[]){"a", "b", "c"}, data, big, 3, TC_TTL_DEFAULT),
                     TC_ERR_TOO_BIG);
    tct_expect(c, "a", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_set_many_expiry)
{
    tc_cache *c = tct_open_default();
    const char *keys[] = {"e1", "e2"};
    const void *data[] = {"1", "2"};
    size_t lens[] = {1, 1};
    ck_assert_int_eq(tc_set_many(c, keys, data, lens, 2, 200), TC_OK);
    tct_expect(c, "e1", TC_OK, "1");
    tct_sleep_ms(300);
    tct_expect(c, "e1", TC_MISS, NULL);
    tct_expect(c, "e2", TC_MISS, NULL);
    ck_assert_int_eq(tc_set_many(c, keys, data, lens, 2, 0), TC_OK); /* 0: deleted */
    tct_expect(c, "e1", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ isolation and clear */

START_TEST(test_cache_prefix_isolation)
{
    tc_options o;
    tct_options(&o);
    tc_cache *a = tct_open(&o);
    char other[64];
    snprintf(other, sizeof other, "%s_other", o.key_prefix);
    o.key_prefix = other;
    tc_cache *b = tct_open(&o);
    ck_assert_int_eq(tc_set(a, "k", "A", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(b, "k", TC_MISS, NULL);
    ck_assert_int_eq(tc_set(b, "k", "B", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(a, "k", TC_OK, "A");
    tc_close(a);
    tc_close(b);
}
END_TEST

START_TEST(test_cache_version_isolation)
{
    tc_options o;
    tct_options(&o);
    tc_cache *v1 = tct_open(&o);
    o.version = 2;
    tc_cache *v2 = tct_open(&o);
    ck_assert_int_eq(tc_set(v1, "k", "one", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(v2, "k", TC_MISS, NULL);
    ck_assert_int_eq(tc_set(v2, "k", "two", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(v1, "k", TC_OK, "one");
    tct_expect(v2, "k", TC_OK, "two");
    char want[128];
    snprintf(want, sizeof want, "%s:2:k", o.key_prefix);
    expect_redis("two", "GET", want, NULL);
    tc_close(v1);
    tc_close(v2);
}
END_TEST

START_TEST(test_cache_clear_only_its_prefix)
{
    tc_options o;
    tct_options(&o);
    tc_cache *a = tct_open(&o);
    char other[64];
    snprintf(other, sizeof other, "%sX", o.key_prefix);
    o.key_prefix = other;
    tc_cache *b = tct_open(&o);
    for (int i = 0; i < 2500; i++) { /* more than one SCAN batch */
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        ck_assert_int_eq(tc_set(a, k, "a", 1, TC_TTL_DEFAULT), TC_OK);
    }
    ck_assert_int_eq(tc_set(b, "k1", "b", 1, TC_TTL_DEFAULT), TC_OK);
    char *unrelated = redis("SET", "unrelated", "u", NULL);
    free(unrelated);
    ck_assert_int_eq(tc_clear(a), TC_OK);
    tct_expect(a, "k1", TC_MISS, NULL);
    tct_expect(a, "k2499", TC_MISS, NULL);
    tct_expect(b, "k1", TC_OK, "b");
    expect_redis("u", "GET", "unrelated", NULL);
    tc_close(a);
    tc_close(b);
}
END_TEST

/* ------------------------------------------------------------------ TTLs */

START_TEST(test_cache_expiry_both_tiers)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "short", "x", 1, 250), TC_OK);
    tct_expect(c, "short", TC_OK, "x"); /* local */
    tc_stats s;
    tc_stats_get(c, &s);
    ck_assert_uint_ge(s.local_hits, 1);
    tct_sleep_ms(350);
    tct_expect(c, "short", TC_MISS, NULL);
    /* A key with a TTL set by someone else: the local copy follows the Redis TTL. */
    char *ok = redis("SET", rkey_of(c, "ext"), "y", NULL);
    free(ok);
    ok = redis("PEXPIRE", rkey_of(c, "ext"), "250", NULL);
    free(ok);
    tct_expect(c, "ext", TC_OK, "y");
    tct_expect(c, "ext", TC_OK, "y");
    tct_sleep_ms(350);
    tct_expect(c, "ext", TC_MISS, NULL);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_local_ttl_bounds_local_copy)
{
    tc_options o;
    tct_options(&o);
    o.local_ttl_ms = 150;
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    tct_sleep_ms(250);
    tct_expect(c, "k", TC_OK, "v"); /* still in Redis, but no longer local */
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(s1.remote_hits, s0.remote_hits + 1);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_ttl_semantics)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "forever", "f", 1, TC_TTL_FOREVER), TC_OK);
    expect_redis("-1", "PTTL", rkey_of(c, "forever"), NULL);
    ck_assert_int_eq(tc_set(c, "default", "d", 1, TC_TTL_DEFAULT), TC_OK);
    char *pttl = redis("PTTL", rkey_of(c, "default"), NULL, NULL);
    ck_assert_int_gt(atoll(pttl), 290000);
    ck_assert_int_le(atoll(pttl), 300000);
    free(pttl);
    ck_assert_int_eq(tc_set(c, "zero", "z", 1, 10000), TC_OK);
    ck_assert_int_eq(tc_set(c, "zero", "z", 1, 0), TC_OK); /* expire at once */
    tct_expect(c, "zero", TC_MISS, NULL);
    expect_redis("0", "EXISTS", rkey_of(c, "zero"), NULL);
    ck_assert_int_eq(tc_add(c, "zadd", "z", 1, 0), TC_OK);
    tct_expect(c, "zadd", TC_MISS, NULL);
    ck_assert_int_eq(tc_set(c, "neg", "n", 1, -3), TC_ERR_ARG);
    ck_assert_int_eq(tc_add(c, "neg", "n", 1, -100), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ has_key and ttl */

static tc_status loads_nothing(void *arg, const char *key, tc_buf *out)
{
    (void)arg, (void)key, (void)out;
    return TC_MISS; /* "does not exist": a negative entry */
}

START_TEST(test_cache_has_key)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_has_key(c, "hk"), TC_MISS);
    ck_assert_int_eq(tc_set(c, "hk", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "hk:empty", "", 0, TC_TTL_DEFAULT), TC_OK);
    /* Held locally after the write: answered without Redis, as tc_get would be. */
    uint64_t before = remote_commands(c);
    ck_assert_int_eq(tc_has_key(c, "hk"), TC_OK);
    ck_assert_int_eq(tc_has_key(c, "hk:empty"), TC_OK); /* a zero-length value is a value */
    ck_assert_uint_eq(remote_commands(c), before);
    /* Written by another client: only Redis knows. */
    free(redis("SET", rkey_of(c, "hk:other"), "x", NULL));
    ck_assert_int_eq(tc_has_key(c, "hk:other"), TC_OK);
    ck_assert_int_eq(tc_delete(c, "hk"), TC_OK);
    ck_assert_int_eq(tc_has_key(c, "hk"), TC_MISS);
    /* A cached "does not exist" is absent, locally and in Redis. */
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "hk:neg", loads_nothing, NULL, TC_TTL_DEFAULT, &v), TC_MISS);
    ck_assert_int_eq(tc_has_key(c, "hk:neg"), TC_MISS);
    char *raw = redis("EXISTS", rkey_of(c, "hk:neg"), NULL, NULL);
    ck_assert_str_eq(raw, "1");
    free(raw);
    tc_stats st;
    tc_stats_get(c, &st);
    ck_assert_uint_ge(st.local_hits, 2); /* counted as reads */
    ck_assert_int_eq(tc_has_key(c, "bad key"), TC_ERR_ARG);
    ck_assert_int_eq(tc_has_key(c, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_has_key(NULL, "hk"), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

/* A tagged value whose tag was invalidated is absent for both, through either tier. */
START_TEST(test_cache_has_key_tagged)
{
    tc_options o;
    tct_options(&o);
    tc_cache *c = tct_open(&o);
    o.local_max_bytes = 0; /* Redis only */
    tc_cache *remote_only = tct_open(&o);
    const char *tags[] = {"t:1"};
    ck_assert_int_eq(tc_set_tagged(c, "tagged", "v", 1, TC_TTL_DEFAULT, tags, 1), TC_OK);
    ck_assert_int_eq(tc_has_key(c, "tagged"), TC_OK);
    ck_assert_int_eq(tc_has_key(remote_only, "tagged"), TC_OK);
    int64_t ms = 0;
    ck_assert_int_eq(tc_ttl(remote_only, "tagged", &ms), TC_OK);
    ck_assert_int_gt(ms, 0);
    ck_assert_int_eq(tc_tag_invalidate(c, "t:1"), TC_OK);
    ck_assert_int_eq(tc_has_key(c, "tagged"), TC_MISS);
    ck_assert_int_eq(tc_has_key(remote_only, "tagged"), TC_MISS);
    ck_assert_int_eq(tc_ttl(c, "tagged", &ms), TC_MISS);
    ck_assert_int_eq(ms, 0);
    tc_close(remote_only);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_ttl_remaining)
{
    tc_cache *c = tct_open_default();
    int64_t ms = 123;
    ck_assert_int_eq(tc_ttl(c, "t:absent", &ms), TC_MISS);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(tc_set(c, "t:10s", "v", 1, 10000), TC_OK);
    ck_assert_int_eq(tc_ttl(c, "t:10s", &ms), TC_OK); /* held locally: asks Redis anyway */
    ck_assert_int_gt(ms, 9000);
    ck_assert_int_le(ms, 10000);
    ck_assert_int_eq(tc_set(c, "t:default", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_ttl(c, "t:default", &ms), TC_OK);
    ck_assert_int_gt(ms, 290000); /* remote_ttl_ms, 300000 by default */
    ck_assert_int_le(ms, 300000);
    ck_assert_int_eq(tc_set(c, "t:forever", "", 0, TC_TTL_FOREVER), TC_OK);
    ck_assert_int_eq(tc_ttl(c, "t:forever", &ms), TC_OK);
    ck_assert_int_eq(ms, -1);
    ck_assert_int_eq(tc_touch(c, "t:forever", 5000), TC_OK);
    ck_assert_int_eq(tc_ttl(c, "t:forever", &ms), TC_OK);
    ck_assert_int_gt(ms, 4000);
    ck_assert_int_le(ms, 5000);
    free(redis("SET", rkey_of(c, "t:plain"), "x", NULL)); /* another client, no expiry */
    ck_assert_int_eq(tc_ttl(c, "t:plain", &ms), TC_OK);
    ck_assert_int_eq(ms, -1);
    ck_assert_int_eq(tc_set(c, "t:short", "v", 1, 50), TC_OK);
    tct_sleep_ms(120);
    ck_assert_int_eq(tc_ttl(c, "t:short", &ms), TC_MISS);
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "t:neg", loads_nothing, NULL, TC_TTL_DEFAULT, &v), TC_MISS);
    ck_assert_int_eq(tc_ttl(c, "t:neg", &ms), TC_MISS);
    ck_assert_int_eq(tc_ttl(c, "t:10s", NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_ttl(c, "bad key", &ms), TC_ERR_ARG);
    ck_assert_int_eq(tc_ttl(NULL, "t:10s", &ms), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ bad input */

START_TEST(test_cache_invalid_keys_send_nothing)
{
    tc_cache *c = tct_open_default();
    char longkey[300];
    memset(longkey, 'k', sizeof longkey);
    longkey[251] = '\0';
    const char *bad[] = {"", "a b", "tab\t", "nl\n", "del\x7f", "\x01", longkey, NULL};
    uint64_t cmds = remote_commands(c);
    for (int i = 0; bad[i]; i++) {
        tc_value v;
        ck_assert_int_eq(tc_get(c, bad[i], &v), TC_ERR_ARG);
        ck_assert_int_eq(tc_set(c, bad[i], "x", 1, TC_TTL_DEFAULT), TC_ERR_ARG);
        ck_assert_int_eq(tc_add(c, bad[i], "x", 1, TC_TTL_DEFAULT), TC_ERR_ARG);
        ck_assert_int_eq(tc_delete(c, bad[i]), TC_ERR_ARG);
        ck_assert_int_eq(tc_touch(c, bad[i], 100), TC_ERR_ARG);
        ck_assert_int_eq(tc_incr(c, bad[i], 1, NULL), TC_ERR_ARG);
    }
    ck_assert_uint_eq(remote_commands(c), cmds);
    longkey[250] = '\0'; /* exactly max_key_len: fine */
    ck_assert_int_eq(tc_set(c, longkey, "x", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, longkey, TC_OK, "x");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_null_arguments)
{
    tc_cache *c = tct_open_default();
    tc_value v;
    tc_status st;
    const char *k = "k";
    ck_assert_int_eq(tc_get(NULL, "k", &v), TC_ERR_ARG);
    ck_assert_int_eq(tc_get(c, NULL, &v), TC_ERR_ARG);
    ck_assert_int_eq(tc_get(c, "k", NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_set(NULL, "k", "x", 1, 0), TC_ERR_ARG);
    ck_assert_int_eq(tc_set(c, NULL, "x", 1, 0), TC_ERR_ARG);
    ck_assert_int_eq(tc_set(c, "k", NULL, 1, TC_TTL_DEFAULT), TC_ERR_ARG);
    ck_assert_int_eq(tc_add(c, "k", NULL, 3, TC_TTL_DEFAULT), TC_ERR_ARG);
    ck_assert_int_eq(tc_delete(NULL, "k"), TC_ERR_ARG);
    ck_assert_int_eq(tc_touch(NULL, "k", 1), TC_ERR_ARG);
    ck_assert_int_eq(tc_incr(NULL, "k", 1, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_get_many(c, NULL, 1, &v, &st), TC_ERR_ARG);
    ck_assert_int_eq(tc_get_many(c, &k, 1, NULL, &st), TC_ERR_ARG);
    ck_assert_int_eq(tc_get_many(c, &k, 1, &v, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_many(c, NULL, NULL, NULL, 1, 0), TC_ERR_ARG);
    ck_assert_int_eq(tc_delete_many(c, NULL, 1), TC_ERR_ARG);
    ck_assert_int_eq(tc_clear(NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_open(NULL, NULL), TC_ERR_ARG);
    tc_stats_get(NULL, NULL);
    tc_stats s;
    tc_stats_get(NULL, &s);
    ck_assert_uint_eq(s.sets, 0);
    tc_value_release(NULL);
    tc_close(NULL);
    ck_assert_ptr_nonnull(tc_strerror((tc_status)12345));
    ck_assert_str_eq(tc_strerror((tc_status)-99), "unknown status");
    tc_close(c);
}
END_TEST

START_TEST(test_cache_value_size_limit)
{
    tc_options o;
    tct_options(&o);
    o.max_value_bytes = 1000;
    tc_cache *c = tct_open(&o);
    char *buf = calloc(1, 1001);
    ck_assert_int_eq(tc_set(c, "big", buf, 1001, TC_TTL_DEFAULT), TC_ERR_TOO_BIG);
    ck_assert_int_eq(tc_add(c, "big", buf, 1001, TC_TTL_DEFAULT), TC_ERR_TOO_BIG);
    tct_expect(c, "big", TC_MISS, NULL);
    ck_assert_int_eq(tc_set(c, "big", buf, 1000, TC_TTL_DEFAULT), TC_OK);
    tc_value v;
    ck_assert_int_eq(tc_get(c, "big", &v), TC_OK);
    ck_assert_uint_eq(v.len, 1000);
    tc_value_release(&v);
    free(buf);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_large_value_default_limit)
{
    tc_cache *c = tct_open_default();
    size_t n = (size_t)1 << 20;
    unsigned char *buf = malloc(n);
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(i * 31);
    ck_assert_int_eq(tc_set(c, "mb", buf, n, TC_TTL_DEFAULT), TC_OK);
    tc__local_flush(tc__cache_local(c));
    tc_value v;
    ck_assert_int_eq(tc_get(c, "mb", &v), TC_OK);
    ck_assert_uint_eq(v.len, n);
    ck_assert_int_eq(memcmp(v.data, buf, n), 0);
    tc_value_release(&v);
    ck_assert_int_eq(tc_set(c, "mb", buf, n + 1, TC_TTL_DEFAULT), TC_ERR_TOO_BIG);
    free(buf);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_bad_options)
{
    tc_options o;
    tc_cache *c = (tc_cache *)0x1;
    tct_options(&o);
    o.redis_url = "http://127.0.0.1:1/";
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    ck_assert_ptr_null(c);
    tct_options(&o);
    o.pool_size = 0;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    tct_options(&o);
    o.remote_ttl_ms = 0;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    tct_options(&o);
    o.key_prefix = "bad prefix";
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    tct_options(&o);
    o.coherence = (tc_coherence)7;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    tct_options(&o);
    o.struct_size = 8;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    /* Regression: "" used to mean the default, 127.0.0.1:6379 (not even $TC_REDIS_URL),
     * hiding a configuration error behind a connection to whatever listens there. */
    tct_options(&o);
    o.redis_url = "";
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_ARG);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_cache_old_options_layout)
{
    /* A program built against the first layout passes a smaller struct: the newer fields
     * take their defaults. */
    tc_options o;
    tct_options(&o);
    o.heartbeat_ms = -77; /* beyond struct_size: must not be read */
    o.struct_size = offsetof(tc_options, heartbeat_ms);
    tc_cache *c = NULL;
    ck_assert_int_eq(tc_open(&o, &c), TC_OK);
    ck_assert_int_eq(tc__cache_options(c)->heartbeat_ms, 250);
    tc_close(c);

    /* The layout before fetch_remote_ttl ended in padding, which its struct_size (sizeof)
     * covers: whatever that padding held (here 0), the field takes its default. */
    _Static_assert(offsetof(tc_options, reserved1) + sizeof(int) ==
                       offsetof(tc_options, fetch_remote_ttl),
                   "fetch_remote_ttl lies beyond the padding of the layout before it");
    tct_options(&o);
    o.fetch_remote_ttl = 0;
    o.struct_size = offsetof(tc_options, reserved1) + sizeof(int);
    ck_assert_int_eq(tc_open(&o, &c), TC_OK);
    ck_assert_int_eq(tc__cache_options(c)->fetch_remote_ttl, 1);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_unreachable)
{
    tc_options o;
    tct_options(&o);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tcf_free_port());
    o.redis_url = url;
    tc_cache *c = NULL;
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_IO);
    ck_assert_ptr_null(c);
}
END_TEST

START_TEST(test_cache_env_url)
{
    tc_options o;
    tct_options(&o);
    o.redis_url = NULL; /* $TC_REDIS_URL, set by the test main */
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "env", "e", 1, TC_TTL_DEFAULT), TC_OK);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ stats and local tier */

START_TEST(test_cache_stats_move)
{
    tc_cache *c = tct_open_default();
    tc_stats s;
    ck_assert_int_eq(tc_set(c, "s", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "s", TC_OK, "v"); /* local (write-through) */
    tct_expect(c, "nope", TC_MISS, NULL);
    tc__local_flush(tc__cache_local(c));
    tct_expect(c, "s", TC_OK, "v"); /* remote */
    ck_assert_int_eq(tc_delete(c, "s"), TC_OK);
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.sets, 1);
    ck_assert_uint_eq(s.local_hits, 1);
    ck_assert_uint_eq(s.remote_hits, 1);
    ck_assert_uint_eq(s.misses, 1);
    ck_assert_uint_eq(s.deletes, 1);
    ck_assert_uint_eq(s.inval_sent, 2);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_local_disabled)
{
    tc_options o;
    tct_options(&o);
    o.local_max_bytes = 0;
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    tct_expect(c, "k", TC_OK, "v");
    tc_stats s;
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.local_hits, 0);
    ck_assert_uint_eq(s.remote_hits, 2);
    ck_assert_uint_eq(s.local_entries, 0);
    tc_close(c);
}
END_TEST

START_TEST(test_cache_local_byte_budget)
{
    tc_options o;
    tct_options(&o);
    o.local_max_bytes = 256 * 1024;
    tc_cache *c = tct_open(&o);
    char val[1000];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 2000; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i);
        ck_assert_int_eq(tc_set(c, k, val, sizeof val, TC_TTL_DEFAULT), TC_OK);
    }
    tc_stats s;
    tc_stats_get(c, &s);
    ck_assert_uint_le(s.local_bytes, o.local_max_bytes);
    ck_assert_uint_gt(s.local_evictions, 0);
    ck_assert_uint_gt(s.local_entries, 50);
    tct_expect(c, "k0", TC_OK, NULL); /* evicted locally, still in Redis */
    tc_close(c);
}
END_TEST

/* Threads hammering one cache: values must always be one that some thread wrote. */
typedef struct hammer_arg {
    tc_cache *c;
    int id;
    int errors;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *a = p;
    for (int i = 0; i < 400; i++) {
        char k[16], v[32];
        snprintf(k, sizeof k, "h%d", i % 8);
        snprintf(v, sizeof v, "val-%d-%d", a->id, i);
        tc_value out;
        switch (i % 4) {
        case 0:
            if (tc_set(a->c, k, v, strlen(v), TC_TTL_DEFAULT) != TC_OK)
                a->errors++;
            break;
        case 3:
            if (tc_delete(a->c, k) < 0)
                a->errors++;
            break;
        default:
            if (tc_get(a->c, k, &out) == TC_OK) {
                if (out.len < 4 || memcmp(out.data, "val-", 4) != 0)
                    a->errors++;
                tc_value_release(&out);
            }
        }
    }
    return NULL;
}

START_TEST(test_cache_threads_share_one_cache)
{
    tc_cache *c = tct_open_default();
    pthread_t th[8];
    hammer_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (hammer_arg){.c = c, .id = i};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(args[i].errors, 0);
    }
    tc_close(c);
}
END_TEST

typedef struct log_capture {
    int warnings;
    char last[512];
} log_capture;

static void capture_log(void *arg, int level, const char *msg)
{
    log_capture *lc = arg;
    if (level == TC_LOG_WARN) {
        lc->warnings++;
        snprintf(lc->last, sizeof lc->last, "%s", msg);
    }
}

START_TEST(test_cache_config_check_warns)
{
    tc_options o;
    log_capture lc = {0};
    tct_options(&o);
    o.log_fn = capture_log;
    o.log_arg = &lc;
    tc_cache *c = tct_open(&o); /* the test server: no maxmemory, noeviction, no password */
    ck_assert_int_eq(lc.warnings, 3);
    tc_close(c);
    memset(&lc, 0, sizeof lc);
    o.check_redis_config = 0;
    c = tct_open(&o);
    ck_assert_int_eq(lc.warnings, 0);
    tc_close(c);
    /* A server set up as docs/operations.md says: nothing to warn about. */
    const char *args[] = {"--maxmemory", "64mb",          "--maxmemory-policy",
                          "allkeys-lru", "--requirepass", "s3cret",
                          NULL};
    tcf_redis good;
    ck_assert_int_eq(tcf_redis_start(&good, args), 0);
    char url[128];
    snprintf(url, sizeof url, "%s://:s3cret@127.0.0.1:%d/0", tct_on_tls() ? "rediss" : "redis",
             good.port);
    tct_options(&o);
    o.redis_url = url;
    o.log_fn = capture_log;
    o.log_arg = &lc;
    tc_cache *g = NULL;
    tc_status st = tc_open(&o, &g);
    int warnings = lc.warnings;
    tc_close(g);
    tcf_redis_stop(&good);
    ck_assert_int_eq(st, TC_OK);
    ck_assert_msg(warnings == 0, "unexpected warning: %s", lc.last);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    struct {
        const char *name;
        const TTest *tests[12];
    } groups[] = {
        {"round_trip",
         {test_cache_set_get_round_trip, test_cache_binary_and_empty_values,
          test_cache_magic_prefixed_value_round_trips, test_cache_values_are_plain_in_redis,
          test_cache_overwrite_read_your_writes, test_cache_value_outlives_replacement,
          test_cache_hit_released_by_another_thread, test_cache_values_nul_terminated}},
        {"add_delete_touch",
         {test_cache_add_semantics, test_cache_delete_semantics, test_cache_touch}},
        {"incr", {test_cache_incr, test_cache_incr_not_int, test_cache_incr_keeps_ttl}},
        {"many",
         {test_cache_get_many_mixed, test_cache_get_many_one_round_trip,
          test_cache_set_many_delete_many, test_cache_many_bad_key_writes_nothing,
          test_cache_set_many_expiry, test_cache_remote_read_asks_ttl_only_for_local_copy}},
        {"isolation",
         {test_cache_prefix_isolation, test_cache_version_isolation,
          test_cache_clear_only_its_prefix}},
        {"ttl",
         {test_cache_expiry_both_tiers, test_cache_local_ttl_bounds_local_copy,
          test_cache_ttl_semantics, test_cache_fetch_remote_ttl}},
        {"has_key_ttl", {test_cache_has_key, test_cache_has_key_tagged, test_cache_ttl_remaining}},
        {"bad_input",
         {test_cache_invalid_keys_send_nothing, test_cache_null_arguments,
          test_cache_value_size_limit, test_cache_large_value_default_limit, test_cache_bad_options,
          test_cache_old_options_layout, test_cache_unreachable, test_cache_env_url,
          test_cache_config_check_warns}},
        {"local",
         {test_cache_stats_move, test_cache_local_disabled, test_cache_local_byte_budget,
          test_cache_threads_share_one_cache}},
    };
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        TCase *tc = tcase_create(groups[g].name);
        tcase_set_timeout(tc, 30);
        for (int i = 0; groups[g].tests[i]; i++)
            tcase_add_test(tc, groups[g].tests[i]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(cache_suite(), true);
}
