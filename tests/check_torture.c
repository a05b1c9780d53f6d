/*
 * Allocation-failure torture, as curl and SQLite do it: for each API path, fail its 1st
 * allocation, then its 2nd, and so on, until the call runs with no failure injected. Each
 * failed run must return TC_ERR_NOMEM (or succeed, when the allocation that failed was
 * optional: a local copy, a cached script hash), leak nothing (the ASan build checks), and
 * leave the cache working and coherent: what this process reads equals what Redis holds,
 * and a write that reported TC_ERR_NOMEM wrote nothing.
 *
 * Needs the torture build (configure --enable-alloc-fail, which defines TC_ALLOC_FAIL and
 * makes tc__alloc_fail_at work). Without it the suite has one test: the hook is a no-op.
 *
 * Limits: only the library's own allocations (tc__malloc and friends, uthash's through
 * them) can be failed. hiredis (contexts, replies) and jansson (tc_gql_key's parse tree)
 * allocate with the C library's malloc, and the library does not install process-wide
 * allocator hooks to reach them (STYLE.md), so their failures are not exercised here.
 */
#include "config.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "flight.h"
#include "testutil.h"

#ifdef TC_ALLOC_FAIL

static const char *rows_path;

static void report(const char *path, int allocations, int nomem, int optional)
{
    printf("torture %-18s %3d allocations: %3d TC_ERR_NOMEM, %2d optional\n", path, allocations,
           nomem, optional);
    fflush(stdout);
    if (!rows_path)
        return;
    char line[160];
    int n = snprintf(line, sizeof line, "%s|%d|%d|%d\n", path, allocations, nomem, optional);
    int fd = open(rows_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
}

/* c: the cache under torture (broadcast mode: its writes build invalidation messages;
 * its subscriber only ever sees its own messages, which it drops before allocating).
 * b: a witness with no local tier, reading Redis. */
static tc_cache *c, *b;

static void open_pair(void)
{
    tc_options o;
    tct_options(&o);
    o.flight_wait_ms = 300; /* a lock a failed load left behind is taken over quickly */
    o.lock_ttl_ms = 200;
    c = tct_open(&o);
    o.coherence = TC_COHERENCE_NONE;
    o.local_max_bytes = 0;
    b = tct_open(&o);
}

static void close_pair(void)
{
    tc_close(b);
    tc_close(c);
    c = b = NULL;
}

/* key reads the same through c (its local tier when it has a copy) and through b
 * (Redis). Returns c's status and copies its value into buf. */
static tc_status coherent(const char *key, char *buf, size_t cap)
{
    tc_value v1, v2;
    tc_status s1 = tc_get(c, key, &v1);
    tc_status s2 = tc_get(b, key, &v2);
    ck_assert_msg(s1 == s2, "%s: this process reads %s, Redis has %s", key, tc_strerror(s1),
                  tc_strerror(s2));
    buf[0] = '\0';
    if (s1 == TC_OK) {
        ck_assert_msg(v1.len == v2.len && memcmp(v1.data, v2.data, v1.len) == 0,
                      "%s: this process reads '%.*s', Redis has '%.*s'", key, (int)v1.len,
                      (const char *)v1.data, (int)v2.len, (const char *)v2.data);
        snprintf(buf, cap, "%.*s", (int)v1.len, (const char *)v1.data);
    }
    tc_value_release(&v1);
    tc_value_release(&v2);
    return s1;
}

static void expect_coherent(const char *key, tc_status want, const char *value)
{
    char buf[256];
    tc_status st = coherent(key, buf, sizeof buf);
    ck_assert_msg(st == want, "%s: %s, want %s", key, tc_strerror(st), tc_strerror(want));
    if (value)
        ck_assert_msg(strcmp(buf, value) == 0, "%s: '%s', want '%s'", key, buf, value);
}

/* The cache still works after the failure: a write and a read of a fresh key. */
static void still_works(int n)
{
    char k[32], v[32];
    snprintf(k, sizeof k, "alive%d", n);
    snprintf(v, sizeof v, "v%d", n);
    ck_assert_int_eq(tc_set(c, k, v, strlen(v), TC_TTL_DEFAULT), TC_OK);
    expect_coherent(k, TC_OK, v);
    ck_assert_uint_eq(tc__flights_count(tc__cache_flights(c)), 0);
}

/* One API path: setup (no injection), the call (injected), and what a success and a
 * failure must leave behind. */
typedef struct path {
    const char *name;
    void (*setup)(void);
    tc_status (*run)(void);
    bool (*success)(tc_status st);
    void (*after)(tc_status st); /* st: TC_ERR_NOMEM, or a success */
} path;

static bool is_ok(tc_status st)
{
    return st == TC_OK;
}

static void torture(const path *p)
{
    int nomem = 0, optional = 0, n;
    for (n = 1; n < 10000; n++) {
        if (p->setup)
            p->setup();
        tc__alloc_fail_at((uint64_t)n);
        tc_status st = p->run();
        uint64_t made = tc__alloc_fail_at(0);
        bool injected = made >= (uint64_t)n;
        if (!injected) {
            ck_assert_msg(p->success(st), "%s: no failure injected, got %s", p->name,
                          tc_strerror(st));
            if (p->after)
                p->after(st);
            break;
        }
        ck_assert_msg(st == TC_ERR_NOMEM || p->success(st),
                      "%s: allocation %d failed: got %s, want TC_ERR_NOMEM", p->name, n,
                      tc_strerror(st));
        if (st == TC_ERR_NOMEM)
            nomem++;
        else
            optional++;
        if (p->after)
            p->after(st);
        still_works(n);
    }
    ck_assert_int_lt(n, 10000);
    if (strcmp(p->name, "get hit (local)") == 0)
        ck_assert_int_eq(n - 1, 0); /* a local hit allocates nothing */
    report(p->name, n - 1, nomem, optional);
}

/* ------------------------------------------------------------------ the paths */

static tc_value got;

static tc_status run_get(void)
{
    tc_status st = tc_get(c, "g", &got);
    tc_value_release(&got);
    return st;
}

static void setup_get_miss(void)
{
    ck_assert_int_eq(tc_delete(c, "g") >= 0, 1);
}

static bool is_miss(tc_status st)
{
    return st == TC_MISS;
}

static void after_get_miss(tc_status st)
{
    (void)st;
    expect_coherent("g", TC_MISS, NULL);
}

static void setup_get_hit_remote(void)
{
    ck_assert_int_eq(tc_set(c, "g", "value", 5, TC_TTL_DEFAULT), TC_OK);
    tc__local_flush(tc__cache_local(c)); /* the read goes to Redis and fills the local tier */
}

static void setup_get_hit_local(void)
{
    setup_get_hit_remote();
    ck_assert_int_eq(run_get(), TC_OK);
}

static void after_get_hit(tc_status st)
{
    (void)st;
    expect_coherent("g", TC_OK, "value");
}

static int round_no;

static void setup_set(void)
{
    ck_assert_int_eq(tc_set(c, "s", "old", 3, TC_TTL_DEFAULT), TC_OK);
    expect_coherent("s", TC_OK, "old"); /* and a local copy to replace */
    round_no++;
}

static tc_status run_set(void)
{
    char v[32];
    snprintf(v, sizeof v, "new%d", round_no);
    return tc_set(c, "s", v, strlen(v), TC_TTL_DEFAULT);
}

static void after_set(tc_status st)
{
    char v[32];
    snprintf(v, sizeof v, "new%d", round_no);
    expect_coherent("s", TC_OK, st == TC_OK ? v : "old");
}

static void setup_add(void)
{
    tc_delete(c, "a");
    expect_coherent("a", TC_MISS, NULL);
}

static tc_status run_add(void)
{
    return tc_add(c, "a", "added", 5, TC_TTL_DEFAULT);
}

static void after_add(tc_status st)
{
    expect_coherent("a", st == TC_OK ? TC_OK : TC_MISS, st == TC_OK ? "added" : NULL);
}

static void setup_delete(void)
{
    ck_assert_int_eq(tc_set(c, "d", "x", 1, TC_TTL_DEFAULT), TC_OK);
    expect_coherent("d", TC_OK, "x");
}

static tc_status run_delete(void)
{
    return tc_delete(c, "d");
}

static void after_delete(tc_status st)
{
    expect_coherent("d", st == TC_OK ? TC_MISS : TC_OK, st == TC_OK ? NULL : "x");
}

static tc_status run_touch(void)
{
    return tc_touch(c, "d", 60000);
}

static void after_touch(tc_status st)
{
    (void)st;
    expect_coherent("d", TC_OK, "x");
}

static void setup_incr(void)
{
    ck_assert_int_eq(tc_set(c, "n", "5", 1, TC_TTL_DEFAULT), TC_OK);
    expect_coherent("n", TC_OK, "5");
}

static tc_status run_incr(void)
{
    int64_t r = 0;
    tc_status st = tc_incr(c, "n", 1, &r);
    ck_assert(st != TC_OK || r == 6);
    return st;
}

static void after_incr(tc_status st)
{
    expect_coherent("n", TC_OK, st == TC_OK ? "6" : "5"); /* NOMEM: not incremented */
}

static const char *const mkeys[] = {"m1", "m2", "m3"};

static void setup_get_many(void)
{
    const void *d[] = {"1", "2"};
    const size_t l[] = {1, 1};
    ck_assert_int_eq(tc_set_many(c, mkeys, d, l, 2, TC_TTL_DEFAULT), TC_OK);
    tc_delete(c, "m3");
    tc__local_flush(tc__cache_local(c));
    char buf[16];
    coherent("m1", buf, sizeof buf); /* m1 local, m2 remote, m3 absent */
}

static tc_status run_get_many(void)
{
    tc_value v[3];
    tc_status st[3];
    tc_status rc = tc_get_many(c, mkeys, 3, v, st);
    if (rc == TC_OK) {
        ck_assert(st[0] == TC_OK && st[1] == TC_OK && st[2] == TC_MISS);
        ck_assert(v[0].len == 1 && memcmp(v[0].data, "1", 1) == 0);
        ck_assert(v[1].len == 1 && memcmp(v[1].data, "2", 1) == 0);
    }
    for (int i = 0; i < 3; i++) {
        ck_assert(rc == TC_OK || v[i].priv == NULL);
        tc_value_release(&v[i]);
    }
    return rc;
}

static void after_get_many(tc_status st)
{
    (void)st;
    expect_coherent("m1", TC_OK, "1");
    expect_coherent("m2", TC_OK, "2");
    expect_coherent("m3", TC_MISS, NULL);
}

static void setup_set_many(void)
{
    const void *d[] = {"o1", "o2", "o3"};
    const size_t l[] = {2, 2, 2};
    ck_assert_int_eq(tc_set_many(c, mkeys, d, l, 3, TC_TTL_DEFAULT), TC_OK);
    char buf[16];
    for (int i = 0; i < 3; i++)
        coherent(mkeys[i], buf, sizeof buf);
}

static tc_status run_set_many(void)
{
    const void *d[] = {"n1", "n2", "n3"};
    const size_t l[] = {2, 2, 2};
    return tc_set_many(c, mkeys, d, l, 3, TC_TTL_DEFAULT);
}

static void after_set_many(tc_status st)
{
    expect_coherent("m1", TC_OK, st == TC_OK ? "n1" : "o1"); /* all or nothing */
    expect_coherent("m2", TC_OK, st == TC_OK ? "n2" : "o2");
    expect_coherent("m3", TC_OK, st == TC_OK ? "n3" : "o3");
}

static tc_status run_delete_many(void)
{
    return tc_delete_many(c, mkeys, 3);
}

static void after_delete_many(tc_status st)
{
    for (int i = 0; i < 3; i++)
        expect_coherent(mkeys[i], st == TC_OK ? TC_MISS : TC_OK, NULL);
}

static int loads;

static tc_status loader(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    loads++;
    return tc_buf_append(out, "loaded value", 12);
}

static void setup_get_or_set(void)
{
    tc_delete(c, "lz");
    expect_coherent("lz", TC_MISS, NULL);
}

static tc_status run_get_or_set(void)
{
    tc_value v;
    tc_status st = tc_get_or_set(c, "lz", loader, NULL, TC_TTL_DEFAULT, &v);
    ck_assert(st != TC_OK || (v.len == 12 && memcmp(v.data, "loaded value", 12) == 0));
    tc_value_release(&v);
    return st;
}

static void after_get_or_set(tc_status st)
{
    /* Whatever failed, the key is absent or holds the loaded value, coherently. */
    char buf[32];
    tc_status r = coherent("lz", buf, sizeof buf);
    ck_assert(r == TC_MISS || (r == TC_OK && strcmp(buf, "loaded value") == 0));
    ck_assert(st != TC_OK || r == TC_OK || r == TC_MISS);
}

static void setup_get_or_set_hit(void)
{
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(c, "lh", loader, NULL, TC_TTL_DEFAULT, &v), TC_OK);
    tc_value_release(&v);
    tc__local_flush(tc__cache_local(c));
}

static tc_status run_get_or_set_hit(void)
{
    tc_value v;
    tc_status st = tc_get_or_set(c, "lh", loader, NULL, TC_TTL_DEFAULT, &v);
    tc_value_release(&v);
    return st;
}

static int64_t ns_version;

static void setup_ns(void)
{
    char buf[64];
    ck_assert_int_eq(tc_ns_key(c, "ns", "s", buf, sizeof buf), TC_OK);
    ck_assert(sscanf(buf, "ns:v%lld:s", (long long *)&ns_version) == 1);
}

static tc_status run_ns_key(void)
{
    char buf[64];
    tc_status st = tc_ns_key(c, "ns", "s", buf, sizeof buf);
    if (st == TC_OK) {
        char want[64];
        snprintf(want, sizeof want, "ns:v%lld:s", (long long)ns_version);
        ck_assert_str_eq(buf, want);
    }
    return st;
}

static tc_status run_ns_bump(void)
{
    int64_t v = 0;
    tc_status st = tc_ns_bump(c, "ns", &v);
    ck_assert(st != TC_OK || v == ns_version + 1);
    return st;
}

static void after_ns_bump(tc_status st)
{
    char buf[64], want[64];
    ck_assert_int_eq(tc_ns_key(c, "ns", "s", buf, sizeof buf), TC_OK);
    snprintf(want, sizeof want, "ns:v%lld:s", (long long)(ns_version + (st == TC_OK)));
    ck_assert_str_eq(buf, want);
    char version[24];
    snprintf(version, sizeof version, "%lld", (long long)(ns_version + (st == TC_OK)));
    expect_coherent("__tc:ns:ns", TC_OK, version); /* the version key itself */
}

static const char *const tags[] = {"tag1", "tag2"};

static void setup_tagged(void)
{
    ck_assert_int_eq(tc_set(c, "tg", "old", 3, TC_TTL_DEFAULT), TC_OK);
    expect_coherent("tg", TC_OK, "old");
}

static tc_status run_set_tagged(void)
{
    return tc_set_tagged(c, "tg", "tagged", 6, TC_TTL_DEFAULT, tags, 2);
}

static void after_set_tagged(tc_status st)
{
    expect_coherent("tg", TC_OK, st == TC_OK ? "tagged" : "old");
}

static void setup_tag_invalidate(void)
{
    ck_assert_int_eq(tc_set_tagged(c, "tg", "tagged", 6, TC_TTL_DEFAULT, tags, 2), TC_OK);
    expect_coherent("tg", TC_OK, "tagged");
}

static tc_status run_tag_invalidate(void)
{
    return tc_tag_invalidate(c, "tag2");
}

static void after_tag_invalidate(tc_status st)
{
    expect_coherent("tg", st == TC_OK ? TC_MISS : TC_OK, st == TC_OK ? NULL : "tagged");
}

static tc_status run_prometheus(void)
{
    char *text = NULL;
    tc_status st = tc_stats_prometheus(c, &text);
    ck_assert(st == TC_OK ? text != NULL && strstr(text, "tiercache_sets_total") : !text);
    free(text);
    return st;
}

static tc_status run_gql(void)
{
    char buf[128];
    tc_status st = tc_gql_key("public", "query Q($id: ID!) { user(id: $id) { name } }", "Q",
                              "{\"id\": 7, \"b\": [1, 2]}", buf, sizeof buf);
    if (st == TC_OK)
        ck_assert_uint_eq(strlen(buf), 4 + 6 + 1 + 32);
    else
        ck_assert_str_eq(buf, "");
    return st;
}

static tc_status run_lock(void)
{
    tc_lock *l = (tc_lock *)1;
    tc_status st = tc_lock_acquire(c, "lock", 5000, 0, &l);
    if (st == TC_OK)
        ck_assert_int_eq(tc_lock_release(l), TC_OK);
    else
        ck_assert_ptr_null(l);
    return st;
}

static void setup_clear(void)
{
    ck_assert_int_eq(tc_set(c, "cl", "x", 1, TC_TTL_DEFAULT), TC_OK);
    expect_coherent("cl", TC_OK, "x");
}

static tc_status run_clear(void)
{
    return tc_clear(c);
}

static void after_clear(tc_status st)
{
    char buf[8];
    tc_status r = coherent("cl", buf, sizeof buf);
    ck_assert(st != TC_OK || r == TC_MISS);
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_torture_open)
{
    /* tc_open in each coherence mode, and tc_close of what it returns. */
    for (int mode = 0; mode < 3; mode++) {
        tc_options o;
        tct_options(&o);
        o.coherence = (tc_coherence)mode;
        int nomem = 0, optional = 0, n;
        for (n = 1; n < 10000; n++) {
            tc_cache *x = (tc_cache *)1;
            tc__alloc_fail_at((uint64_t)n);
            tc_status st = tc_open(&o, &x);
            uint64_t made = tc__alloc_fail_at(0);
            if (made < (uint64_t)n) {
                ck_assert_msg(st == TC_OK, "tc_open: %s", tc_strerror(st));
                tc_close(x);
                break;
            }
            ck_assert_msg(st == TC_ERR_NOMEM || st == TC_OK, "tc_open, allocation %d failed: %s", n,
                          tc_strerror(st));
            if (st == TC_OK) {
                optional++;
                ck_assert_int_eq(tc_set(x, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
                tct_expect(x, "k", TC_OK, "v");
                tc_close(x);
            } else {
                nomem++;
                ck_assert_ptr_null(x);
            }
        }
        const char *names[] = {"open (broadcast)", "open (tracking)", "open (none)"};
        report(names[mode], n - 1, nomem, optional);
    }
}
END_TEST

static const path paths[] = {
    {"get miss", setup_get_miss, run_get, is_miss, after_get_miss},
    {"get hit (Redis)", setup_get_hit_remote, run_get, is_ok, after_get_hit},
    {"get hit (local)", setup_get_hit_local, run_get, is_ok, after_get_hit},
    {"set", setup_set, run_set, is_ok, after_set},
    {"add", setup_add, run_add, is_ok, after_add},
    {"delete", setup_delete, run_delete, is_ok, after_delete},
    {"touch", setup_delete, run_touch, is_ok, after_touch},
    {"incr", setup_incr, run_incr, is_ok, after_incr},
    {"get_many", setup_get_many, run_get_many, is_ok, after_get_many},
    {"set_many", setup_set_many, run_set_many, is_ok, after_set_many},
    {"delete_many", setup_set_many, run_delete_many, is_ok, after_delete_many},
    {"get_or_set (load)", setup_get_or_set, run_get_or_set, is_ok, after_get_or_set},
    {"get_or_set (hit)", setup_get_or_set_hit, run_get_or_set_hit, is_ok, NULL},
    {"ns_key", setup_ns, run_ns_key, is_ok, NULL},
    {"ns_bump", setup_ns, run_ns_bump, is_ok, after_ns_bump},
    {"set_tagged", setup_tagged, run_set_tagged, is_ok, after_set_tagged},
    {"tag_invalidate", setup_tag_invalidate, run_tag_invalidate, is_ok, after_tag_invalidate},
    {"lock", NULL, run_lock, is_ok, NULL},
    {"clear", setup_clear, run_clear, is_ok, after_clear},
    {"stats_prometheus", NULL, run_prometheus, is_ok, NULL},
    {"gql_key", NULL, run_gql, is_ok, NULL},
};

START_TEST(test_torture_path)
{
    open_pair();
    torture(&paths[_i]);
    close_pair();
}
END_TEST

#else /* !TC_ALLOC_FAIL */

START_TEST(test_torture_hook_is_noop)
{
    /* Without --enable-alloc-fail the hook does nothing: no allocation fails, none is
     * counted, and the library works as usual. */
    ck_assert_uint_eq(tc__alloc_fail_at(1), 0);
    void *p = tc__malloc(16);
    ck_assert_ptr_nonnull(p);
    tc__free(p);
    tc_cache *x = tct_open_default();
    ck_assert_int_eq(tc_set(x, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(x, "k", TC_OK, "v");
    tc_close(x);
    ck_assert_uint_eq(tc__alloc_fail_at(0), 0);
}
END_TEST

#endif

int main(void)
{
    Suite *s = suite_create("torture");
    TCase *tc = tcase_create("torture");
    tcase_set_timeout(tc, 120);
#ifdef TC_ALLOC_FAIL
    static char path[256];
    snprintf(path, sizeof path, "%s/tc-torture-%ld.rows",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    unlink(path);
    rows_path = path;
    tcase_add_test(tc, test_torture_open);
    tcase_add_loop_test(tc, test_torture_path, 0, (int)(sizeof paths / sizeof paths[0]));
#else
    tcase_add_test(tc, test_torture_hook_is_noop);
#endif
    suite_add_tcase(s, tc);
    int rc = tct_main(s, true);
#ifdef TC_ALLOC_FAIL
    FILE *f = fopen(path, "r");
    int paths_done = 0, allocs = 0, nomem = 0, optional = 0;
    char line[200];
    while (f && fgets(line, sizeof line, f)) {
        int a, b2, o;
        char *bar = strchr(line, '|');
        if (bar && sscanf(bar + 1, "%d|%d|%d", &a, &b2, &o) == 3) {
            paths_done++;
            allocs += a;
            nomem += b2;
            optional += o;
        }
    }
    if (f)
        fclose(f);
    printf("\ntorture: %d paths, %d allocations failed one at a time: %d TC_ERR_NOMEM, %d "
           "optional (the call still succeeded)\n",
           paths_done, allocs, nomem, optional);
    unlink(path);
#endif
    return rc;
}
