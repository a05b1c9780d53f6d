/* Metrics per key type and the Prometheus exposition. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "testing.h"
#include "testutil.h"

typedef struct seen {
    char names[200][64];
    tc_stats s[200];
    int n;
} seen;

static void collect(void *arg, const char *key_type, const tc_stats *s)
{
    seen *w = arg;
    ck_assert_int_lt(w->n, 200);
    snprintf(w->names[w->n], sizeof w->names[0], "%s", key_type);
    w->s[w->n++] = *s;
}

static const tc_stats *find(const seen *w, const char *name)
{
    for (int i = 0; i < w->n; i++)
        if (strcmp(w->names[i], name) == 0)
            return &w->s[i];
    return NULL;
}

START_TEST(test_stats_per_key_type)
{
    tc_cache *c = tct_open_default();
    const char *unread = "notifications:unread_count:user:7";
    ck_assert_int_eq(tc_set(c, unread, "3", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, unread, TC_OK, "3"); /* local */
    ck_assert_int_eq(tc_incr(c, unread, -1, NULL), TC_OK);
    tct_expect(c, unread, TC_OK, "2"); /* remote */
    tct_expect(c, "notifications:unread_count:user:8", TC_MISS, NULL);
    ck_assert_int_eq(tc_set(c, "grades:gpa:student:1", "3.9", 3, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_delete(c, "grades:gpa:student:1"), TC_OK);
    ck_assert_int_eq(tc_set(c, "single", "s", 1, TC_TTL_DEFAULT), TC_OK);
    seen w = {.n = 0};
    tc_stats_foreach(c, collect, &w);
    const tc_stats *n = find(&w, "notifications:unread_count");
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(n->local_hits, 1);
    ck_assert_uint_eq(n->remote_hits, 1);
    ck_assert_uint_eq(n->misses, 1);
    ck_assert_uint_eq(n->sets, 2); /* set + incr */
    ck_assert_uint_eq(n->deletes, 0);
    const tc_stats *g = find(&w, "grades:gpa");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->sets, 1);
    ck_assert_uint_eq(g->deletes, 1);
    ck_assert_uint_eq(g->local_hits + g->remote_hits + g->misses, 0);
    ck_assert_ptr_nonnull(find(&w, "single")); /* fewer than two parts: the whole key */
    ck_assert_ptr_null(find(&w, "other"));     /* nothing fell into it */
    /* The cache-wide figures are the sums. */
    tc_stats all;
    tc_stats_get(c, &all);
    uint64_t sets = 0, hits = 0;
    for (int i = 0; i < w.n; i++) {
        sets += w.s[i].sets;
        hits += w.s[i].local_hits + w.s[i].remote_hits;
    }
    ck_assert_uint_eq(all.sets, sets);
    ck_assert_uint_eq(all.local_hits + all.remote_hits, hits);
    tc_close(c);
}
END_TEST

START_TEST(test_stats_types_bounded)
{
    tc_cache *c = tct_open_default();
    for (int i = 0; i < 150; i++) {
        char k[64];
        snprintf(k, sizeof k, "app%d:entity:1", i);
        ck_assert_int_eq(tc_set(c, k, "v", 1, TC_TTL_DEFAULT), TC_OK);
    }
    seen w = {.n = 0};
    tc_stats_foreach(c, collect, &w);
    ck_assert_int_eq(w.n, 129); /* 128 types and "other" */
    const tc_stats *other = find(&w, "other");
    ck_assert_ptr_nonnull(other);
    ck_assert_uint_eq(other->sets, 150 - 128);
    tc_close(c);
}
END_TEST

/* A line of the text format: a comment, or name[{labels}] value. */
static bool line_ok(const char *l)
{
    if (l[0] == '#')
        return strncmp(l, "# HELP tiercache_", 17) == 0 || strncmp(l, "# TYPE tiercache_", 17) == 0;
    const char *p = l;
    if (strncmp(p, "tiercache_", 10) != 0)
        return false;
    while (*p && *p != '{' && *p != ' ')
        p++;
    if (*p == '{') {
        if (strncmp(p, "{key_type=\"", 11) != 0)
            return false;
        p += 11;
        for (; *p && *p != '"'; p++) {
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    return false;
            }
            if (*p == '\n')
                return false;
        }
        if (strncmp(p, "\"} ", 3) != 0)
            return false;
        p += 3;
    } else {
        p++;
    }
    char *end;
    strtoull(p, &end, 10);
    return end != p && *end == '\0';
}

START_TEST(test_stats_prometheus_format)
{
    tc_cache *c = tct_open_default();
    ck_assert_int_eq(tc_set(c, "plain:type:1", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "we\"ird:ty\\pe:1", "v", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_set(c, "bad\xff:utf8:1", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "plain:type:1", TC_OK, "v");
    char *text = NULL;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(text);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE tiercache_local_hits_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "tiercache_local_hits_total{key_type=\"plain:type\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "tiercache_sets_total{key_type=\"we\\\"ird:ty\\\\\\\\pe\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"bad\\\\xff:utf8\"}"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE tiercache_local_bytes gauge\n"));
    int lines = 0;
    for (char *l = strtok(text, "\n"); l; l = strtok(NULL, "\n"), lines++)
        ck_assert_msg(line_ok(l), "bad exposition line: %s", l);
    ck_assert_int_gt(lines, 40);
    free(text);
    ck_assert_int_eq(tc_stats_prometheus(NULL, &text), TC_ERR_ARG);
    ck_assert_int_eq(tc_stats_prometheus(c, NULL), TC_ERR_ARG);
    tc_stats_foreach(c, NULL, NULL); /* harmless */
    tc_close(c);
}
END_TEST

/* Regression: a one-part key "other" and the overflow bucket "other" printed the same
 * series, and so did key types that differed only in bytes that are not UTF-8 (each became
 * U+FFFD): the exposition format forbids duplicate series. */
START_TEST(test_stats_prometheus_unique_series)
{
    tc_cache *c = tct_open_default();
    static const char *const hostile[] = {"other",      "a\xff:x:1",
                                          "a\xfe:x:1",  "a\xef\xbf\xbd:x:1",
                                          "a\\xff:x:1", "a\\\\xff:x:1",
                                          "q\"\\:x:1"};
    size_t nh = sizeof hostile / sizeof hostile[0];
    for (size_t i = 0; i < nh; i++)
        ck_assert_int_eq(tc_set(c, hostile[i], "v", 1, TC_TTL_DEFAULT), TC_OK);
    char key[32];
    for (int i = 0; i < 130; i++) { /* fills the table: the rest go to the overflow bucket */
        snprintf(key, sizeof key, "fill%d:t:1", i);
        ck_assert_int_eq(tc_set(c, key, "v", 1, TC_TTL_DEFAULT), TC_OK);
    }
    char *text = NULL;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(strstr(text, "tiercache_sets_total{key_type=\"other\"} 9\n"));
    ck_assert_ptr_nonnull(strstr(text, "tiercache_sets_total{key_type=\"\\\\x6fther\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"a\\\\xff:x\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"a\\\\\\\\xff:x\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"a\xef\xbf\xbd:x\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"q\\\"\\\\\\\\:x\"} 1\n"));
    /* Every series of a metric has its own labels. */
    static char labels[200][128];
    int n = 0;
    const char *name = "tiercache_sets_total{";
    for (const char *p = strstr(text, name); p; p = strstr(p + 1, name)) {
        const char *end = strstr(p, "} ");
        ck_assert_ptr_nonnull(end);
        ck_assert_int_lt(n, 200);
        ck_assert_int_lt(end - p, 128);
        snprintf(labels[n], sizeof labels[0], "%.*s", (int)(end - p), p);
        for (int j = 0; j < n; j++)
            ck_assert_msg(strcmp(labels[j], labels[n]) != 0, "duplicate series %s", labels[n]);
        n++;
    }
    ck_assert_int_eq(n, 129); /* 128 types and the overflow bucket */
    free(text);
    tc_close(c);
}
END_TEST

/* Regression: tc_get_or_set counted its misses, Redis hits, loads, load errors and flight
 * waits cache-wide only, so tc_stats_foreach and the Prometheus text showed 0 loads for
 * every key type while tc_stats_get counted them. */
static tc_status load_gpa(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    return *(int *)arg ? TC_ERR_IO : tc_buf_append(out, "3.9", 3);
}

START_TEST(test_stats_get_or_set_per_key_type)
{
    tc_options o;
    tct_options(&o); /* one prefix for both instances */
    tc_cache *c = tct_open(&o);
    tc_cache *c2 = tct_open(&o);
    int fail = 0;
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v);
    ck_assert_int_eq(tc_get_or_set(c, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v); /* local */
    ck_assert_int_eq(tc_get_or_set(c2, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v); /* remote */
    fail = 1;
    ck_assert_int_eq(tc_get_or_set(c, "grades:gpa:student:2", load_gpa, &fail, 60000, &v),
                     TC_ERR_LOADER);
    seen w = {.n = 0};
    tc_stats_foreach(c, collect, &w);
    const tc_stats *g = find(&w, "grades:gpa");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->misses, 2);
    ck_assert_uint_eq(g->loads, 2);
    ck_assert_uint_eq(g->load_errors, 1);
    ck_assert_uint_eq(g->local_hits, 1);
    ck_assert_ptr_null(find(&w, "other"));
    tc_stats all;
    tc_stats_get(c, &all);
    ck_assert_uint_eq(all.loads, 2);
    ck_assert_uint_eq(all.misses, 2);
    w.n = 0;
    tc_stats_foreach(c2, collect, &w);
    g = find(&w, "grades:gpa");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->remote_hits, 1);
    ck_assert_uint_eq(g->loads, 0);
    char *text;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(strstr(text, "tiercache_loads_total{key_type=\"grades:gpa\"} 2\n"));
    free(text);
    tc_close(c2);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ growable tc_stats */

/* A program built against the first header: its struct ends after remote_errors. */
typedef struct first_layout {
    uint64_t f[14];
    uint64_t guard[6]; /* what lies after it in that program's memory */
} first_layout;

#define GUARD 0xa5a5a5a5a5a5a5a5u

/* A cache with some counts in the first fields and in the later ones. */
static tc_cache *cache_with_counts(void)
{
    tc_options o;
    tct_options(&o);
    o.local_max_bytes = 2048; /* the big value below is larger than the whole tier */
    tc_cache *c = tct_open(&o);
    char big[2048];
    memset(big, 'b', sizeof big);
    ck_assert_int_eq(tc_set(c, "grades:gpa:1", "3.9", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "grades:gpa:1", TC_OK, "3.9");
    ck_assert_int_eq(tc_set(c, "grades:big:1", big, sizeof big, TC_TTL_DEFAULT), TC_OK);
    return c;
}

START_TEST(test_stats_first_layout)
{
    /* The exported tc_stats_get, which programs built against the first header call:
     * it fills the 14 fields of the first layout and writes nothing after them. */
    tc_cache *c = cache_with_counts();
    first_layout old;
    memset(old.f, 0xff, sizeof old.f);
    for (size_t i = 0; i < 6; i++)
        old.guard[i] = GUARD;
    (tc_stats_get)(c, (tc_stats *)(void *)&old);
    for (size_t i = 0; i < 6; i++)
        ck_assert_uint_eq(old.guard[i], GUARD);
    tc_stats now;
    tc_stats_get(c, &now);
    ck_assert_uint_eq(old.f[0], now.local_hits);
    ck_assert_uint_eq(old.f[0], 1);
    ck_assert_uint_eq(old.f[3], now.sets);
    ck_assert_uint_eq(old.f[3], 2);
    ck_assert_uint_eq(old.f[13], now.remote_errors);
    ck_assert_uint_eq(now.local_rejects, 1); /* the macro reaches the later fields */
    /* A pointer to the function is the same function. */
    void (*get)(tc_cache *, tc_stats *) = &tc_stats_get;
    old.guard[0] = GUARD;
    get(c, (tc_stats *)(void *)&old);
    ck_assert_uint_eq(old.guard[0], GUARD);
    /* NULL cache: the fields are zeroed, still no further. */
    (tc_stats_get)(NULL, (tc_stats *)(void *)&old);
    ck_assert_uint_eq(old.f[0] | old.f[13], 0);
    ck_assert_uint_eq(old.guard[0], GUARD);
    tc_close(c);
}
END_TEST

START_TEST(test_stats_sized)
{
    tc_cache *c = cache_with_counts();
    /* A layout that ends after local_rejects (whole fields only: a size that cuts one
     * leaves it alone). */
    tc_stats s;
    memset(&s, 0xff, sizeof s);
    tc_stats_get_sized(c, &s, offsetof(tc_stats, local_bypasses) + 4);
    ck_assert_uint_eq(s.local_hits, 1);
    ck_assert_uint_eq(s.local_rejects, 1);
    ck_assert_uint_eq(s.local_bypasses, UINT64_MAX);
    ck_assert_uint_eq(s.inval_malformed, UINT64_MAX);
    /* Size 0 writes nothing. */
    tc_stats_get_sized(c, &s, 0);
    ck_assert_uint_eq(s.inval_malformed, UINT64_MAX);
    /* The full size (what the tc_stats_get macro passes) fills everything. */
    tc_stats_get_sized(c, &s, sizeof s);
    ck_assert_uint_eq(s.local_bypasses, 0);
    ck_assert_uint_eq(s.inval_malformed, 0);
    tc_stats m;
    memset(&m, 0xff, sizeof m);
    tc_stats_get(c, &m);
    ck_assert_int_eq(memcmp(&s, &m, sizeof s), 0);
    /* A newer caller's struct: the fields this library does not know are zeroed. */
    struct newer_layout {
        tc_stats s;
        uint64_t later[2];
        uint64_t guard;
    } newer;
    memset(&newer, 0xff, sizeof newer);
    tc_stats_get_sized(c, &newer.s, offsetof(struct newer_layout, guard));
    ck_assert_uint_eq(newer.s.local_rejects, 1);
    ck_assert_uint_eq(newer.later[0] | newer.later[1], 0);
    ck_assert_uint_eq(newer.guard, UINT64_MAX);
    tc_stats_get_sized(c, NULL, sizeof s); /* harmless */
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ the later counters */

START_TEST(test_stats_local_rejects)
{
    /* A value too large for the local tier is a reject, per key type, each time the tier
     * is offered it: the write-through store of the set, and the fill of a read. */
    tc_cache *c = cache_with_counts();
    tc_value v;
    ck_assert_int_eq(tc_get(c, "grades:big:1", &v), TC_OK);
    ck_assert_uint_eq(v.len, 2048);
    tc_value_release(&v);
    tc_stats all;
    tc_stats_get(c, &all);
    ck_assert_uint_eq(all.local_rejects, 2);
    ck_assert_uint_eq(all.local_evictions, 0);
    seen w = {.n = 0};
    tc_stats_foreach(c, collect, &w);
    ck_assert_uint_eq(find(&w, "grades:big")->local_rejects, 2);
    ck_assert_uint_eq(find(&w, "grades:gpa")->local_rejects, 0);
    char *text;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(strstr(text, "# TYPE tiercache_local_rejects_total counter\n"));
    ck_assert_ptr_nonnull(
        strstr(text, "tiercache_local_rejects_total{key_type=\"grades:big\"} 2\n"));
    free(text);
    tc_close(c);
}
END_TEST

/* Waits up to 5 s for the invalidation link to be trusted again. */
static void wait_usable(tc_cache *c)
{
    int64_t t0 = tc__now_ns();
    while (!tc__test_local_usable(c) && tc__now_ns() - t0 < 5000000000LL)
        tct_sleep_ms(10);
    ck_assert(tc__test_local_usable(c));
}

START_TEST(test_stats_link_down)
{
    /* While the invalidation link is down, reads bypass the local tier (counted per key
     * type); the link's failure is counted, and so is the flush when it is back (asked
     * for: by default the tier would be reconciled). */
    tc_options o;
    tct_options(&o);
    o.heartbeat_ms = 50;
    o.recovery = TC_RECOVERY_FLUSH;
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "grades:gpa:1", "3.9", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "grades:gpa:1", TC_OK, "3.9");
    tc_stats s;
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.local_bypasses + s.inval_link_failures + s.full_flushes, 0);
    tct_redis_pause();
    tct_sleep_ms(tct_slow_ms(300)); /* > 2 heartbeats with no answer */
    bool usable = tc__test_local_usable(c);
    tc_value v;
    tc_status st = tc_get(c, "grades:gpa:1", &v); /* Redis is frozen: it fails */
    tct_redis_resume();
    ck_assert(!usable);
    ck_assert_int_lt(st, 0);
    wait_usable(c);
    tct_expect(c, "grades:gpa:1", TC_OK, "3.9"); /* from Redis: the tier was flushed */
    tc_stats_get(c, &s);
    ck_assert_uint_eq(s.local_bypasses, 1);
    ck_assert_uint_ge(s.inval_link_failures, 1);
    ck_assert_uint_eq(s.full_flushes, 1);
    ck_assert_uint_eq(s.local_hits, 1);
    ck_assert_uint_eq(s.remote_hits, 1);
    seen w = {.n = 0};
    tc_stats_foreach(c, collect, &w);
    const tc_stats *g = find(&w, "grades:gpa");
    ck_assert_uint_eq(g->local_bypasses, 1);
    ck_assert_uint_eq(g->inval_link_failures + g->full_flushes, 0); /* cache-wide only */
    char *text, line[128];
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(
        strstr(text, "tiercache_local_bypasses_total{key_type=\"grades:gpa\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "# TYPE tiercache_full_flushes_total counter\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ntiercache_full_flushes_total 1\n"));
    snprintf(line, sizeof line, "\ntiercache_invalidation_link_failures_total %llu\n",
             (unsigned long long)s.inval_link_failures);
    ck_assert_ptr_nonnull(strstr(text, line));
    free(text);
    tc_close(c);
}
END_TEST

/* Waits up to 2 s for the counter at offset in c's stats to be counted; returns them. */
static tc_stats wait_counted(tc_cache *c, size_t offset)
{
    tc_stats s;
    uint64_t v;
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(5);
        tc_stats_get(c, &s);
        memcpy(&v, (const char *)&s + offset, sizeof v);
    } while (v == 0 && tc__now_ns() - t0 < 2000000000LL);
    return s;
}

START_TEST(test_stats_flush_all_message)
{
    /* Another instance's tc_clear flushes this one's local tier: a full flush here, none
     * in the instance that cleared (its own call, not a loss). */
    tc_options o;
    tct_options(&o);
    tc_cache *a = tct_open(&o);
    tc_cache *b = tct_open(&o);
    ck_assert_int_eq(tc_set(a, "grades:gpa:1", "3.9", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(b, "grades:gpa:1", TC_OK, "3.9");
    ck_assert_int_eq(tc_clear(a), TC_OK);
    tc_stats s = wait_counted(b, offsetof(tc_stats, full_flushes));
    ck_assert_uint_eq(s.full_flushes, 1);
    tct_expect(b, "grades:gpa:1", TC_MISS, NULL);
    tc_stats_get(a, &s);
    ck_assert_uint_eq(s.full_flushes, 0);
    tc_close(b);
    tc_close(a);
}
END_TEST

START_TEST(test_stats_tracking_flush)
{
    /* Under tracking, FLUSHDB is announced as a nil invalidation: a full flush. */
    tc_options o;
    tct_options(&o);
    o.coherence = TC_COHERENCE_TRACKING;
    tc_cache *c = tct_open(&o);
    static const char *const flushdb[] = {"FLUSHDB", NULL};
    free(tct_redis_cmd_all(flushdb));
    tc_stats s = wait_counted(c, offsetof(tc_stats, full_flushes));
    ck_assert_uint_ge(s.full_flushes, 1);
    ck_assert_uint_eq(s.inval_link_failures, 0);
    tc_close(c);
}
END_TEST

START_TEST(test_stats_inval_malformed)
{
    tc_cache *c = tct_open_default();
    const char *argv[] = {"PUBLISH", tc__test_channel(c), "TC1 nonsense", NULL};
    free(tct_redis_cmd(argv));
    tc_stats s = wait_counted(c, offsetof(tc_stats, inval_malformed));
    ck_assert_uint_eq(s.inval_malformed, 1);
    ck_assert_uint_eq(s.full_flushes, 0);
    char *text;
    ck_assert_int_eq(tc_stats_prometheus(c, &text), TC_OK);
    ck_assert_ptr_nonnull(strstr(text, "\ntiercache_invalidations_malformed_total 1\n"));
    free(text);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ version */

START_TEST(test_stats_version)
{
    /* One version: the header's macros, the library's string and configure's
     * PACKAGE_VERSION (taken from the header by configure.ac; after a bump, re-run
     * ./autogen.sh if this fails). */
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TC_VERSION_MAJOR, TC_VERSION_MINOR, TC_VERSION_PATCH);
    ck_assert_ptr_nonnull(tc_version());
    ck_assert_str_eq(tc_version(), want);
    ck_assert_str_eq(tc_version(), PACKAGE_VERSION);
}
END_TEST

static Suite *stats_suite(void)
{
    Suite *s = suite_create("stats");
    TCase *tc = tcase_create("per_type");
    tcase_add_test(tc, test_stats_per_key_type);
    tcase_add_test(tc, test_stats_types_bounded);
    tcase_add_test(tc, test_stats_get_or_set_per_key_type);
    suite_add_tcase(s, tc);
    tc = tcase_create("prometheus");
    tcase_add_test(tc, test_stats_prometheus_format);
    tcase_add_test(tc, test_stats_prometheus_unique_series);
    suite_add_tcase(s, tc);
    tc = tcase_create("growable");
    tcase_add_test(tc, test_stats_first_layout);
    tcase_add_test(tc, test_stats_sized);
    suite_add_tcase(s, tc);
    tc = tcase_create("later_counters");
    tcase_add_test(tc, test_stats_local_rejects);
    tcase_add_test(tc, test_stats_link_down);
    tcase_add_test(tc, test_stats_flush_all_message);
    tcase_add_test(tc, test_stats_tracking_flush);
    tcase_add_test(tc, test_stats_inval_malformed);
    suite_add_tcase(s, tc);
    tc = tcase_create("version");
    tcase_add_test(tc, test_stats_version);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(stats_suite(), true);
}
