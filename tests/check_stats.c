/* Metrics per key type and the Prometheus exposition. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
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
    tct_expect(c, unread, TC_OK, "3");                          /* local */
    ck_assert_int_eq(tc_incr(c, unread, -1, NULL), TC_OK);
    tct_expect(c, unread, TC_OK, "2");                          /* remote */
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
    ck_assert_ptr_nonnull(strstr(text, "tiercache_sets_total{key_type=\"we\\\"ird:ty\\\\pe\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(text, "{key_type=\"bad\xef\xbf\xbd:utf8\"}"));
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
    tct_options(&o);                     /* one prefix for both instances */
    tc_cache *c = tct_open(&o);
    tc_cache *c2 = tct_open(&o);
    int fail = 0;
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v);
    ck_assert_int_eq(tc_get_or_set(c, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v);                                                /* local */
    ck_assert_int_eq(tc_get_or_set(c2, "grades:gpa:student:1", load_gpa, &fail, 60000, &v), TC_OK);
    tc_value_release(&v);                                                /* remote */
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(stats_suite(), true);
}
