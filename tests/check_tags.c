/* Versioned namespaces and tags: bulk invalidation seen by every process at once. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "testutil.h"

#define BOUND_MS 1000

static char prefix[64];

static tc_cache *open_shared(void)
{
    tc_options o;
    tc_options_init(&o);
    o.redis_url = tct_redis.url;
    o.key_prefix = prefix;
    return tct_open(&o);
}

static uint64_t remote_commands(tc_cache *c)
{
    tc_remote_stats rs;
    tc__remote_stats(tc__cache_remote(c), &rs);
    return rs.commands;
}

/* ------------------------------------------------------------------ namespaces */

START_TEST(test_tags_ns_key_and_bump)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    char k[128];
    ck_assert_int_eq(tc_ns_key(c, "notifications", "list:user:7", k, sizeof k), TC_OK);
    ck_assert_str_eq(k, "notifications:v0:list:user:7");
    ck_assert_int_eq(tc_set(c, k, "old list", 8, TC_TTL_DEFAULT), TC_OK);
    int64_t v = -1;
    ck_assert_int_eq(tc_ns_bump(c, "notifications", &v), TC_OK);
    ck_assert_int_eq(v, 1);
    ck_assert_int_eq(tc_ns_bump(c, "notifications", &v), TC_OK);
    ck_assert_int_eq(v, 2);
    char k2[128];
    ck_assert_int_eq(tc_ns_key(c, "notifications", "list:user:7", k2, sizeof k2), TC_OK);
    ck_assert_str_eq(k2, "notifications:v2:list:user:7");
    tct_expect(c, k2, TC_MISS, NULL);    /* the old entry is unreachable */
    tct_expect(c, k, TC_OK, "old list"); /* and ages out by its TTL */
    ck_assert_int_eq(tc_ns_bump(c, "other", NULL), TC_OK);
    tc_close(c);
}
END_TEST

START_TEST(test_tags_ns_version_is_local)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    char k[128];
    ck_assert_int_eq(tc_ns_key(c, "grades", "gpa:student:1", k, sizeof k), TC_OK);
    uint64_t cmds = remote_commands(c);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(tc_ns_key(c, "grades", "gpa:student:1", k, sizeof k), TC_OK);
    ck_assert_uint_eq(remote_commands(c), cmds);
    tc_close(c);
}
END_TEST

START_TEST(test_tags_ns_bad_arguments)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    char k[16];
    ck_assert_int_eq(tc_ns_key(c, "bad ns", "x", k, sizeof k), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(c, "ns", "bad\nsuffix", k, sizeof k), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(c, NULL, "x", k, sizeof k), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(c, "ns", NULL, k, sizeof k), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(c, "ns", "x", NULL, 16), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(NULL, "ns", "x", k, sizeof k), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_key(c, "ns", "a-suffix-too-long", k, sizeof k), TC_ERR_ARG);
    ck_assert_str_eq(k, "");
    ck_assert_int_eq(tc_ns_bump(c, "", NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_bump(NULL, "ns", NULL), TC_ERR_ARG);
    tc_close(c);
}
END_TEST

static int ns_child(FILE *in, FILE *out, void *arg)
{
    TC_UNUSED(arg);
    tct_wait_line(in, "go");
    tc_cache *c = open_shared();
    char k[128];
    tc_ns_key(c, "catalog", "page:1", k, sizeof k);
    tc_ns_key(c, "catalog", "page:1", k, sizeof k); /* the version is now local */
    fprintf(out, "ready %s\n", k);
    tct_wait_line(in, "bumped");
    int64_t t0 = tc__now_ns();
    while (tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000) {
        tc_ns_key(c, "catalog", "page:1", k, sizeof k);
        if (strcmp(k, "catalog:v1:page:1") == 0) {
            fprintf(out, "ok bump seen after %lld us\n", (long long)((tc__now_ns() - t0) / 1000));
            tc_close(c);
            return 0;
        }
    }
    fprintf(out, "FAIL still %s\n", k);
    return 1;
}

START_TEST(test_tags_ns_bump_seen_by_other_process)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tct_proc p;
    tct_proc_start(&p, ns_child, NULL);
    tc_cache *c = open_shared();
    tct_proc_say(&p, "go");
    tct_proc_expect(&p, "ready catalog:v0:page:1");
    ck_assert_int_eq(tc_ns_bump(c, "catalog", NULL), TC_OK);
    tct_proc_say(&p, "bumped");
    tct_proc_finish(&p);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ tags */

static const char *const student_tags[] = {"student:1", "course:2"};

START_TEST(test_tags_invalidate_makes_tagged_miss)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    ck_assert_int_eq(tc_set_tagged(c, "gpa:student:1", "3.9", 3, TC_TTL_DEFAULT, student_tags, 2),
                     TC_OK);
    ck_assert_int_eq(tc_set_tagged(c, "transcript:student:1", "A,B", 3, TC_TTL_DEFAULT,
                                   student_tags, 1),
                     TC_OK);
    const char *other[] = {"course:9"};
    ck_assert_int_eq(tc_set_tagged(c, "roster:course:9", "r", 1, TC_TTL_DEFAULT, other, 1), TC_OK);
    ck_assert_int_eq(tc_set(c, "untagged", "u", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "gpa:student:1", TC_OK, "3.9");
    ck_assert_int_eq(tc_tag_invalidate(c, "course:2"), TC_OK);
    tct_expect(c, "gpa:student:1", TC_MISS, NULL);
    tct_expect(c, "transcript:student:1", TC_OK, "A,B"); /* not tagged with course:2 */
    tct_expect(c, "roster:course:9", TC_OK, "r");
    tct_expect(c, "untagged", TC_OK, "u");
    /* Also from Redis (the local tier flushed): the recorded versions travel with it. */
    tc__local_flush(tc__cache_local(c));
    tct_expect(c, "gpa:student:1", TC_MISS, NULL);
    tct_expect(c, "transcript:student:1", TC_OK, "A,B");
    ck_assert_int_eq(tc_tag_invalidate(c, "student:1"), TC_OK);
    tct_expect(c, "transcript:student:1", TC_MISS, NULL);
    /* Written again after the invalidation: valid. */
    ck_assert_int_eq(tc_set_tagged(c, "gpa:student:1", "4.0", 3, TC_TTL_DEFAULT, student_tags, 2),
                     TC_OK);
    tct_expect(c, "gpa:student:1", TC_OK, "4.0");
    tc_close(c);
}
END_TEST

START_TEST(test_tags_tagged_hit_stays_local)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, student_tags, 2), TC_OK);
    tct_expect(c, "k", TC_OK, "v");
    uint64_t cmds = remote_commands(c);
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    for (int i = 0; i < 50; i++)
        tct_expect(c, "k", TC_OK, "v");
    tc_stats_get(c, &s1);
    ck_assert_uint_eq(remote_commands(c), cmds);
    ck_assert_uint_ge(s1.local_hits - s0.local_hits, 50);
    /* The value is stored plain in Redis behind a header; a plain client sees the header. */
    tc_close(c);
}
END_TEST

START_TEST(test_tags_bad_arguments)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    const char *bad[] = {"ok", "bad tag"};
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, bad, 2), TC_ERR_ARG);
    tct_expect(c, "k", TC_MISS, NULL);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, NULL, 1), TC_ERR_ARG);
    const char *many[65];
    for (int i = 0; i < 65; i++)
        many[i] = "t";
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, many, 65), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, many, 64), TC_OK);
    ck_assert_int_eq(tc_set_tagged(c, "plain", "p", 1, TC_TTL_DEFAULT, NULL, 0), TC_OK);
    tct_expect(c, "plain", TC_OK, "p");
    ck_assert_int_eq(tc_tag_invalidate(c, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc_tag_invalidate(c, "bad\ttag"), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_tagged(c, "big", "v", (size_t)2 << 20, TC_TTL_DEFAULT, student_tags, 1),
                     TC_ERR_TOO_BIG);
    tc_close(c);
}
END_TEST

START_TEST(test_tags_bad_arguments_send_nothing)
{
    /* Regression: a bad tag after good ones, a bad value or a bad TTL used to be found
     * only after the good tags' versions had been read (and created) in Redis. */
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    uint64_t before = remote_commands(c);
    const char *late_bad[] = {"t1", "t2", "bad tag"};
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, late_bad, 3), TC_ERR_ARG);
    const char *late_null[] = {"t1", NULL};
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, late_null, 2), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_tagged(c, "k", NULL, 3, TC_TTL_DEFAULT, student_tags, 2), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, -5, student_tags, 2), TC_ERR_ARG);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", (size_t)2 << 20, TC_TTL_DEFAULT, student_tags, 2),
                     TC_ERR_TOO_BIG);
    /* A name whose version key ("__tc:tag:<name>", "__tc:ns:<name>") would be longer
     * than max_key_len (250) is refused up front as well. */
    char name[250];
    memset(name, 'n', sizeof name - 1);
    name[241] = '\0'; /* 241 + 9 = 250: the longest tag */
    const char *long_tag[] = {name};
    ck_assert_uint_eq(remote_commands(c), before);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, long_tag, 1), TC_OK);
    ck_assert_int_eq(tc_tag_invalidate(c, name), TC_OK);
    name[241] = 'n';
    name[242] = '\0';
    before = remote_commands(c);
    ck_assert_int_eq(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, long_tag, 1), TC_ERR_ARG);
    ck_assert_int_eq(tc_tag_invalidate(c, name), TC_ERR_ARG);
    char buf[300];
    ck_assert_int_eq(tc_ns_key(c, name, "s", buf, sizeof buf), TC_OK); /* 242 + 8 = 250 */
    name[242] = 'n';
    name[243] = '\0';
    before = remote_commands(c);
    ck_assert_int_eq(tc_ns_key(c, name, "s", buf, sizeof buf), TC_ERR_ARG);
    ck_assert_int_eq(tc_ns_bump(c, name, NULL), TC_ERR_ARG);
    ck_assert_uint_eq(remote_commands(c), before);
    tct_expect(c, "k", TC_MISS, NULL); /* its 241-byte tag was invalidated */
    tc_close(c);
}
END_TEST

START_TEST(test_tags_ns_key_zero_capacity)
{
    /* Regression: tc_ns_key wrote its "" into a buffer of capacity 0 (one byte past it). */
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    char *buf = malloc(8);
    memset(buf, 'Z', 8);
    ck_assert_int_eq(tc_ns_key(c, "ns", "s", buf, 0), TC_ERR_ARG);
    ck_assert_int_eq(buf[0], 'Z');
    ck_assert_int_eq(tc_ns_key(c, "ns", "s", buf, 7), TC_ERR_ARG); /* "ns:v0:s" + NUL = 8 */
    ck_assert_int_eq(buf[0], '\0');
    ck_assert_int_eq(buf[7], 'Z');
    ck_assert_int_eq(tc_ns_key(c, "ns", "s", buf, 8), TC_OK);
    ck_assert_str_eq(buf, "ns:v0:s");
    free(buf);
    tc_close(c);
}
END_TEST

static int tag_child(FILE *in, FILE *out, void *arg)
{
    TC_UNUSED(arg);
    tct_wait_line(in, "go");
    tc_cache *c = open_shared();
    tc_value v;
    for (int i = 0; i < 2; i++) { /* the second read is local */
        if (tc_get(c, "page", &v) != TC_OK)
            return fprintf(out, "FAIL page not readable\n"), 1;
        tc_value_release(&v);
    }
    fprintf(out, "ready\n");
    tct_wait_line(in, "invalidated");
    int64_t t0 = tc__now_ns();
    tc_status st = TC_OK;
    while (st == TC_OK && tc__now_ns() - t0 < (int64_t)BOUND_MS * 1000000) {
        st = tc_get(c, "page", &v);
        tc_value_release(&v);
    }
    if (st != TC_MISS)
        return fprintf(out, "FAIL tagged value still served\n"), 1;
    if (tc_get(c, "untagged", &v) != TC_OK)
        return fprintf(out, "FAIL untagged value lost\n"), 1;
    tc_value_release(&v);
    fprintf(out, "ok tag invalidation seen after %lld us\n",
            (long long)((tc__now_ns() - t0) / 1000));
    tc_close(c);
    return 0;
}

START_TEST(test_tags_invalidation_seen_by_other_process)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tct_proc p;
    tct_proc_start(&p, tag_child, NULL);
    tc_cache *c = open_shared();
    const char *tags[] = {"product:42"};
    ck_assert_int_eq(tc_set_tagged(c, "page", "<html>", 6, TC_TTL_DEFAULT, tags, 1), TC_OK);
    ck_assert_int_eq(tc_set(c, "untagged", "u", 1, TC_TTL_DEFAULT), TC_OK);
    tct_proc_say(&p, "go");
    tct_proc_expect(&p, "ready");
    ck_assert_int_eq(tc_tag_invalidate(c, "product:42"), TC_OK);
    tct_proc_say(&p, "invalidated");
    tct_proc_finish(&p);
    tc_close(c);
}
END_TEST

static tc_status load_fresh(void *arg, const char *key, tc_buf *out)
{
    TC_UNUSED(key);
    (*(int *)arg)++;
    return tc_buf_append(out, "fresh", 5);
}

START_TEST(test_tags_get_or_set_respects_tags)
{
    tcf_unique_prefix(prefix, sizeof prefix);
    tc_cache *c = open_shared();
    ck_assert_int_eq(tc_set_tagged(c, "k", "tagged", 6, TC_TTL_DEFAULT, student_tags, 2), TC_OK);
    int calls = 0;
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "k", load_fresh, &calls, TC_TTL_DEFAULT, &v), TC_OK);
    ck_assert_int_eq(calls, 0);
    ck_assert_int_eq(memcmp(v.data, "tagged", 6), 0);
    tc_value_release(&v);
    ck_assert_int_eq(tc_tag_invalidate(c, "student:1"), TC_OK);
    ck_assert_int_eq(tc_get_or_set(c, "k", load_fresh, &calls, TC_TTL_DEFAULT, &v), TC_OK);
    ck_assert_int_eq(calls, 1);
    ck_assert_int_eq(memcmp(v.data, "fresh", 5), 0);
    tc_value_release(&v);
    const char *keys[] = {"k"};
    ck_assert_int_eq(tc_set_tagged(c, "k", "tagged", 6, TC_TTL_DEFAULT, student_tags, 2), TC_OK);
    ck_assert_int_eq(tc_tag_invalidate(c, "course:2"), TC_OK);
    tc_status st;
    ck_assert_int_eq(tc_get_many(c, keys, 1, &v, &st), TC_OK);
    ck_assert_int_eq(st, TC_MISS);
    tc_close(c);
}
END_TEST

static Suite *tags_suite(void)
{
    Suite *s = suite_create("tags");
    struct {
        const char *name;
        const TTest *tests[8];
    } groups[] = {
        {"namespaces",
         {test_tags_ns_key_and_bump, test_tags_ns_version_is_local, test_tags_ns_bad_arguments,
          test_tags_ns_key_zero_capacity}},
        {"ns_cross_process", {test_tags_ns_bump_seen_by_other_process}},
        {"tags",
         {test_tags_invalidate_makes_tagged_miss, test_tags_tagged_hit_stays_local,
          test_tags_bad_arguments, test_tags_get_or_set_respects_tags,
          test_tags_bad_arguments_send_nothing}},
        {"tags_cross_process", {test_tags_invalidation_seen_by_other_process}},
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
    return tct_main(tags_suite(), true);
}
