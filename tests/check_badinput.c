/*
 * Bad input, table driven: every public function fed NULLs, empty, oversized and
 * boundary-sized keys and values, control characters, invalid UTF-8, bad URLs, bad
 * options, bad TTLs and undersized buffers. Each input's expected status is asserted;
 * an invalid key must send nothing to Redis; a function that writes into a caller's
 * buffer must not write past the capacity it was given (a canary after it); and the cache
 * must still work afterwards. The ASan build turns any out-of-bounds access into a
 * failure.
 *
 * Each family of inputs is a test case of its own (its own process, so a crash shows up
 * as that case's error). main prints how many inputs were tried per family and in all,
 * and how many crashed (a family that did not report).
 */
#include "config.h"

#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "format.h"
#include "testutil.h"

static const char *rows_path;
static int tried; /* inputs tried by the running family */

static void family_done(const char *family)
{
    if (!rows_path)
        return;
    char line[128];
    int n = snprintf(line, sizeof line, "%s|%d\n", family, tried);
    int fd = open(rows_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
}

/* One input: the status must be want. */
static void expect(tc_status got, tc_status want, const char *what, const char *detail)
{
    tried++;
    ck_assert_msg(got == want, "%s [%s]: got %s (%d), want %s (%d)", what, detail, tc_strerror(got),
                  (int)got, tc_strerror(want), (int)want);
}

/* A printable description of a key for messages. */
static const char *describe(const char *k, char *buf, size_t cap)
{
    if (!k)
        return "NULL";
    size_t n = strlen(k), j = 0;
    for (size_t i = 0; i < n && j + 5 < cap && i < 24; i++) {
        unsigned char b = (unsigned char)k[i];
        j += (size_t)snprintf(buf + j, cap - j, b > 32 && b < 127 ? "%c" : "\\x%02x", b);
    }
    if (n > 24)
        snprintf(buf + j, cap - j, "...(%zu bytes)", n);
    else
        buf[j] = '\0';
    return buf;
}

static uint64_t commands_sent(tc_cache *c)
{
    tc_remote_stats rs;
    tc__remote_stats(tc__cache_remote(c), &rs);
    return rs.commands;
}

static tc_cache *open_with(size_t max_value, size_t max_key)
{
    tc_options o;
    tct_options(&o);
    o.max_value_bytes = max_value;
    o.max_key_len = max_key;
    return tct_open(&o);
}

/* ------------------------------------------------------------------ the key table */

typedef struct key_case {
    char *key; /* NULL: the NULL key */
    bool valid;
} key_case;

enum { MAX_KEYS = 128 };
static key_case keys[MAX_KEYS];
static int nkeys;

static void add_key(const char *k, size_t len, bool valid)
{
    ck_assert_int_lt(nkeys, MAX_KEYS);
    key_case *kc = &keys[nkeys++];
    kc->valid = valid;
    kc->key = NULL;
    if (k) {
        kc->key = malloc(len + 1);
        memcpy(kc->key, k, len);
        kc->key[len] = '\0';
    }
}

static void add_str(const char *k, bool valid)
{
    add_key(k, k ? strlen(k) : 0, valid);
}

static void add_filled(size_t len, bool valid)
{
    char *k = malloc(len + 1);
    memset(k, 'k', len);
    k[len] = '\0';
    add_key(k, len, valid);
    free(k);
}

/* Keys for a cache with max_key_len 250. */
static void build_keys(void)
{
    nkeys = 0;
    add_str(NULL, false);
    add_str("", false);
    /* Every byte a key may not hold, alone, first, inside and last. */
    for (int b = 1; b <= 32; b++) {
        char k[4] = {(char)b, 0};
        add_str(k, false);
        char mid[4] = {'a', (char)b, 'z', 0};
        add_str(mid, false);
    }
    add_str("\x7f", false);
    add_str("a\x7f", false);
    add_str("\x7f"
            "a",
            false);
    add_str("key with spaces", false);
    add_str("TC1 K 0123456789abcdef 1 k", false); /* an invalidation message as a key */
    /* Length limits. */
    add_filled(1, true);
    add_filled(249, true);
    add_filled(250, true);
    add_filled(251, false);
    add_filled(4096, false);
    add_filled(100000, false);
    /* Invalid UTF-8 is fine in a key (the rule is bytes, as memcached's). */
    add_str("\xff", true);
    add_str("\xc3\x28", true);
    add_str("\xe2\x82", true);
    add_str("\xed\xa0\x80", true);
    add_str("\xc0\xaf", true);
    add_str("\xf8\x88\x80\x80\x80", true);
    add_str("k\xfe\xff", true);
    add_str("caf\xc3\xa9", true);
    add_str("\xe6\x97\xa5\xe6\x9c\xac", true);
    /* Glob, format and separator characters mean nothing special. */
    add_str("*", true);
    add_str("?", true);
    add_str("[a-z]", true);
    add_str("\\", true);
    add_str("%s%n%p%x", true);
    add_str(":", true);
    add_str("::", true);
    add_str("a:b:c:d:e", true);
    add_str("\"quoted\"", true);
    add_str("__tc:inval", true);
}

static void free_keys(void)
{
    for (int i = 0; i < nkeys; i++)
        free(keys[i].key);
    nkeys = 0;
}

static tc_status loader_v(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    return tc_buf_append(out, "lv", 2);
}

/* Every key-taking call with key k (valid or not). An invalid key is TC_ERR_ARG and sends
 * nothing; a valid one behaves normally and its bytes round-trip. */
static void key_calls(tc_cache *c, const key_case *kc)
{
    char d[64];
    const char *k = kc->key;
    const char *what = describe(k, d, sizeof d);
    uint64_t before = commands_sent(c);
    tc_value v;
    tc_status want_arg = TC_ERR_ARG;
    int64_t n = 0;
    char buf[512];
    if (!kc->valid) {
        expect(tc_get(c, k, &v), want_arg, "tc_get", what);
        ck_assert_ptr_null(v.priv);
        expect(tc_set(c, k, "v", 1, TC_TTL_DEFAULT), want_arg, "tc_set", what);
        expect(tc_add(c, k, "v", 1, TC_TTL_DEFAULT), want_arg, "tc_add", what);
        expect(tc_delete(c, k), want_arg, "tc_delete", what);
        expect(tc_touch(c, k, 1000), want_arg, "tc_touch", what);
        expect(tc_incr(c, k, 1, &n), want_arg, "tc_incr", what);
        const char *ks[2] = {"fine", k};
        tc_value vs[2];
        tc_status sts[2];
        const void *data[2] = {"a", "b"};
        size_t lens[2] = {1, 1};
        expect(tc_get_many(c, ks, 2, vs, sts), want_arg, "tc_get_many", what);
        expect(tc_set_many(c, ks, data, lens, 2, TC_TTL_DEFAULT), want_arg, "tc_set_many", what);
        expect(tc_delete_many(c, ks, 2), want_arg, "tc_delete_many", what);
        expect(tc_get_or_set(c, k, loader_v, NULL, TC_TTL_DEFAULT, &v), want_arg, "tc_get_or_set",
               what);
        tc_lock *l = (tc_lock *)1;
        expect(tc_lock_acquire(c, k, 1000, 0, &l), want_arg, "tc_lock_acquire", what);
        ck_assert_ptr_null(l);
        expect(tc_ns_key(c, k, "s", buf, sizeof buf), want_arg, "tc_ns_key ns", what);
        ck_assert_str_eq(buf, "");
        expect(tc_ns_key(c, "ns", k, buf, sizeof buf), want_arg, "tc_ns_key suffix", what);
        expect(tc_ns_bump(c, k, &n), want_arg, "tc_ns_bump", what);
        const char *tags[2] = {"t", k};
        expect(tc_set_tagged(c, k, "v", 1, TC_TTL_DEFAULT, tags, 1), want_arg, "tc_set_tagged key",
               what);
        expect(tc_set_tagged(c, "fine", "v", 1, TC_TTL_DEFAULT, tags, 2), want_arg,
               "tc_set_tagged tag", what);
        expect(tc_tag_invalidate(c, k), want_arg, "tc_tag_invalidate", what);
        expect(tc_has_key(c, k), want_arg, "tc_has_key", what);
        n = 5;
        expect(tc_ttl(c, k, &n), want_arg, "tc_ttl", what);
        ck_assert_int_eq(n, 0);
        ck_assert_msg(commands_sent(c) == before, "%s: an invalid key reached Redis", what);
        return;
    }
    /* Valid: the bytes come back as written. */
    expect(tc_set(c, k, k, strlen(k), TC_TTL_DEFAULT), TC_OK, "tc_set", what);
    expect(tc_get(c, k, &v), TC_OK, "tc_get", what);
    ck_assert_uint_eq(v.len, strlen(k));
    ck_assert_int_eq(memcmp(v.data, k, v.len), 0);
    tc_value_release(&v);
    expect(tc_add(c, k, "x", 1, TC_TTL_DEFAULT), TC_EXISTS, "tc_add", what);
    expect(tc_touch(c, k, 60000), TC_OK, "tc_touch", what);
    expect(tc_has_key(c, k), TC_OK, "tc_has_key", what);
    expect(tc_ttl(c, k, &n), TC_OK, "tc_ttl", what);
    ck_assert(n > 0 && n <= 60000);
    expect(tc_incr(c, k, 1, &n), TC_ERR_NOT_INT, "tc_incr", what);
    const char *ks[1] = {k};
    tc_status sts[1];
    expect(tc_get_many(c, ks, 1, &v, sts), TC_OK, "tc_get_many", what);
    ck_assert_int_eq(sts[0], TC_OK);
    tc_value_release(&v);
    expect(tc_delete_many(c, ks, 1), TC_OK, "tc_delete_many", what);
    expect(tc_delete(c, k), TC_MISS, "tc_delete", what);
    expect(tc_get_or_set(c, k, loader_v, NULL, TC_TTL_DEFAULT, &v), TC_OK, "tc_get_or_set", what);
    ck_assert_uint_eq(v.len, 2);
    tc_value_release(&v);
    expect(tc_delete(c, k), TC_OK, "tc_delete", what);
    tc_lock *l = NULL;
    expect(tc_lock_acquire(c, k, 1000, 0, &l), TC_OK, "tc_lock_acquire", what);
    expect(tc_lock_release(l), TC_OK, "tc_lock_release", what);
    /* A namespace's version lives under "__tc:ns:<name>", a tag's under "__tc:tag:<name>",
     * keys like any other: names up to max_key_len - 8 and - 9 bytes (tiercache.h). */
    tc_status ns_want = strlen(k) + 8 <= 250 ? TC_OK : TC_ERR_ARG;
    tc_status tag_want = strlen(k) + 9 <= 250 ? TC_OK : TC_ERR_ARG;
    expect(tc_ns_bump(c, k, &n), ns_want, "tc_ns_bump", what);
    expect(tc_ns_key(c, k, "s", buf, sizeof buf), ns_want, "tc_ns_key", what);
    const char *tags[1] = {k};
    expect(tc_set_tagged(c, "tagged", "v", 1, TC_TTL_DEFAULT, tags, 1), tag_want, "tc_set_tagged",
           what);
    expect(tc_tag_invalidate(c, k), tag_want, "tc_tag_invalidate", what);
    expect(tc_get(c, "tagged", &v), TC_MISS, "tc_get tagged", what);
}

START_TEST(test_badinput_keys)
{
    tried = 0;
    build_keys();
    tc_cache *c = open_with(1000, 250);
    for (int i = 0; i < nkeys; i++)
        key_calls(c, &keys[i]);
    /* And with no cache at all. */
    for (int i = 0; i < nkeys; i++) {
        tc_value v;
        expect(tc_get(NULL, keys[i].key, &v), TC_ERR_ARG, "tc_get(NULL)", "");
        expect(tc_set(NULL, keys[i].key, "v", 1, 0), TC_ERR_ARG, "tc_set(NULL)", "");
        expect(tc_get_or_set(NULL, keys[i].key, loader_v, NULL, 0, &v), TC_ERR_ARG,
               "tc_get_or_set(NULL)", "");
    }
    /* max_key_len at its ceiling (64 KiB). */
    tc_cache *big = open_with(1000, (size_t)64 << 10);
    key_case at = {NULL, true}, over = {NULL, false};
    at.key = malloc(((size_t)64 << 10) + 2);
    memset(at.key, 'q', ((size_t)64 << 10) + 1);
    at.key[(size_t)64 << 10] = '\0';
    tc_value v;
    expect(tc_set(big, at.key, "v", 1, TC_TTL_DEFAULT), TC_OK, "tc_set", "64 KiB key");
    expect(tc_get(big, at.key, &v), TC_OK, "tc_get", "64 KiB key");
    tc_value_release(&v);
    over.key = at.key;
    at.key[(size_t)64 << 10] = 'q';
    at.key[((size_t)64 << 10) + 1] = '\0';
    key_calls(big, &over);
    free(at.key);
    tc_close(big);
    /* The cache still works. */
    expect(tc_set(c, "after", "ok", 2, TC_TTL_DEFAULT), TC_OK, "tc_set", "after");
    tct_expect(c, "after", TC_OK, "ok");
    tc_close(c);
    free_keys();
    family_done("keys (each through every key-taking call)");
}
END_TEST

/* ------------------------------------------------------------------ values and TTLs */

/* A patterned buffer of at least n bytes (n <= 2 MiB), allocated once: the value tables
 * keep pointers into it. */
static const void *big_value(size_t n)
{
    static unsigned char *buf;
    const size_t cap = (size_t)2 << 20;
    ck_assert_uint_le(n, cap);
    if (!buf) {
        buf = malloc(cap);
        for (size_t i = 0; i < cap; i++)
            buf[i] = (unsigned char)(i * 131 + 7);
    }
    return buf;
}

typedef struct value_case {
    const void *data;
    size_t len;
    tc_status want;
    const char *what;
} value_case;

typedef struct loader_arg {
    const void *data;
    size_t len;
    tc_status ret;
} loader_arg;

static tc_status loader_append(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    loader_arg *a = arg;
    tc_status st = tc_buf_append(out, a->data, a->len);
    return a->ret != TC_OK ? a->ret : st;
}

START_TEST(test_badinput_values_ttls)
{
    tried = 0;
    tc_cache *c = open_with(1000, 250);
    static const char with_nuls[] = "a\0b\0\0c";
    const value_case values[] = {
        {NULL, 0, TC_OK, "NULL, 0"},
        {NULL, 1, TC_ERR_ARG, "NULL, 1"},
        {NULL, SIZE_MAX, TC_ERR_ARG, "NULL, SIZE_MAX"},
        {"", 0, TC_OK, "empty"},
        {with_nuls, sizeof with_nuls, TC_OK, "NUL bytes"},
        {"\xff\xfe\x00\x80", 4, TC_OK, "invalid UTF-8"},
        {TC_FMT_MAGIC, TC_FMT_MAGIC_LEN, TC_OK, "the stored-format magic"},
        {TC_FMT_MAGIC "\x00\x01\x02\x03", TC_FMT_MAGIC_LEN + 4, TC_OK, "magic + junk"},
        {big_value(999), 999, TC_OK, "max - 1"},
        {big_value(1000), 1000, TC_OK, "max"},
        {big_value(1001), 1001, TC_ERR_TOO_BIG, "max + 1"},
        {big_value(1001), SIZE_MAX, TC_ERR_TOO_BIG, "SIZE_MAX"},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const value_case *vc = &values[i];
        tc_value v;
        expect(tc_set(c, "v", vc->data, vc->len, TC_TTL_DEFAULT), vc->want, "tc_set", vc->what);
        if (vc->want == TC_OK) {
            expect(tc_get(c, "v", &v), TC_OK, "tc_get", vc->what);
            ck_assert_uint_eq(v.len, vc->len);
            ck_assert(vc->len == 0 || memcmp(v.data, vc->data, vc->len) == 0);
            tc_value_release(&v);
            tc__local_flush(tc__cache_local(c)); /* and from Redis too */
            expect(tc_get(c, "v", &v), TC_OK, "tc_get remote", vc->what);
            ck_assert_uint_eq(v.len, vc->len);
            ck_assert(vc->len == 0 || memcmp(v.data, vc->data, vc->len) == 0);
            tc_value_release(&v);
        }
        tc_delete(c, "v");
        expect(tc_add(c, "v", vc->data, vc->len, TC_TTL_DEFAULT), vc->want, "tc_add", vc->what);
        const char *ks[2] = {"m1", "m2"};
        const void *ds[2] = {"ok", vc->data};
        size_t ls[2] = {2, vc->len};
        expect(tc_set_many(c, ks, ds, ls, 2, TC_TTL_DEFAULT), vc->want, "tc_set_many", vc->what);
        const char *tags[1] = {"tg"};
        expect(tc_set_tagged(c, "tv", vc->data, vc->len, TC_TTL_DEFAULT, tags, 1), vc->want,
               "tc_set_tagged", vc->what);
        /* A loader appending it: tc_buf_append's own answers are ARG and TOO_BIG. */
        loader_arg la = {vc->data, vc->len, TC_OK};
        char key[32];
        snprintf(key, sizeof key, "load%zu", i);
        tc_status st = tc_get_or_set(c, key, loader_append, &la, TC_TTL_DEFAULT, &v);
        tc_status want = vc->want == TC_ERR_ARG ? TC_ERR_LOADER : vc->want;
        expect(st, want, "tc_get_or_set", vc->what);
        if (st == TC_OK) {
            ck_assert_uint_eq(v.len, vc->len);
            tc_value_release(&v);
        }
    }
    /* Loaders that return what a loader may not. */
    const tc_status odd[] = {TC_ERR_IO,        TC_ERR_ARG,        TC_EXISTS,
                             (tc_status)12345, (tc_status)-12345, TC_ERR_NOMEM};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        loader_arg la = {"x", 1, odd[i]};
        char key[32];
        snprintf(key, sizeof key, "odd%zu", i);
        tc_value v;
        expect(tc_get_or_set(c, key, loader_append, &la, TC_TTL_DEFAULT, &v), TC_ERR_LOADER,
               "tc_get_or_set loader status", tc_strerror(odd[i]));
        ck_assert_ptr_null(v.priv);
    }
    expect(tc_buf_append(NULL, "x", 1), TC_ERR_ARG, "tc_buf_append", "NULL buf");
    /* TTLs. */
    const struct {
        int ttl;
        tc_status want;
    } ttls[] = {{-3, TC_ERR_ARG},
                {INT_MIN, TC_ERR_ARG},
                {-100000, TC_ERR_ARG},
                {TC_TTL_DEFAULT, TC_OK},
                {TC_TTL_FOREVER, TC_OK},
                {0, TC_OK},
                {1, TC_OK},
                {INT_MAX, TC_OK}};
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "ttl %d", ttls[i].ttl);
        tc_status want = ttls[i].want;
        expect(tc_set(c, "t", "v", 1, ttls[i].ttl), want, "tc_set", what);
        tc_status add = tc_add(c, "t2", "v", 1, ttls[i].ttl);
        tried++;
        ck_assert_msg(want == TC_ERR_ARG ? add == TC_ERR_ARG : add >= 0, "tc_add %s", what);
        tc_delete(c, "t2");
        expect(tc_set(c, "t3", "v", 1, TC_TTL_DEFAULT), TC_OK, "tc_set", what);
        expect(tc_touch(c, "t3", ttls[i].ttl), want, "tc_touch", what);
        const char *ks[1] = {"t4"};
        const void *ds[1] = {"v"};
        size_t ls[1] = {1};
        expect(tc_set_many(c, ks, ds, ls, 1, ttls[i].ttl), want, "tc_set_many", what);
        const char *tags[1] = {"tg"};
        expect(tc_set_tagged(c, "t5", "v", 1, ttls[i].ttl, tags, 1), want, "tc_set_tagged", what);
        tc_value v;
        loader_arg la = {"x", 1, TC_OK};
        expect(tc_get_or_set(c, "t6", loader_append, &la, ttls[i].ttl, &v), want, "tc_get_or_set",
               what);
        tc_value_release(&v);
        tc_delete(c, "t6");
        tc_lock *l = NULL;
        tc_status lw = ttls[i].ttl > 0 ? TC_OK : TC_ERR_ARG;
        expect(tc_lock_acquire(c, "lk", ttls[i].ttl, 0, &l), lw, "tc_lock_acquire ttl", what);
        if (l)
            tc_lock_release(l);
        l = NULL;
        tc_status ww = ttls[i].ttl >= 0 ? TC_OK : TC_ERR_ARG;
        expect(tc_lock_acquire(c, "lk2", 1000, ttls[i].ttl == INT_MAX ? 0 : ttls[i].ttl, &l),
               ttls[i].ttl == INT_MAX ? TC_OK : ww, "tc_lock_acquire wait", what);
        if (l)
            tc_lock_release(l);
    }
    /* incr deltas at the int64 limits. */
    expect(tc_set(c, "n", "9223372036854775806", 19, TC_TTL_DEFAULT), TC_OK, "tc_set", "max-1");
    int64_t n = 0;
    expect(tc_incr(c, "n", 1, &n), TC_OK, "tc_incr", "to INT64_MAX");
    ck_assert(n == INT64_MAX);
    expect(tc_incr(c, "n", 1, &n), TC_ERR_NOT_INT, "tc_incr", "overflow");
    expect(tc_incr(c, "n", INT64_MIN, &n), TC_OK, "tc_incr", "INT64_MIN");
    ck_assert_int_eq(n, -1);
    expect(tc_incr(c, "n", INT64_MIN, &n), TC_ERR_NOT_INT, "tc_incr", "underflow");
    const char *not_ints[] = {"",    " 1",  "1 ",  "+1", "0x10", "1e3", "99999999999999999999",
                              "--1", "1.5", "\xff"};
    for (size_t i = 0; i < sizeof not_ints / sizeof not_ints[0]; i++) {
        expect(tc_set(c, "ni", not_ints[i], strlen(not_ints[i]), TC_TTL_DEFAULT), TC_OK, "tc_set",
               not_ints[i]);
        expect(tc_incr(c, "ni", 1, NULL), TC_ERR_NOT_INT, "tc_incr", not_ints[i]);
        tct_expect(c, "ni", TC_OK, not_ints[i]); /* unchanged */
    }
    /* The default limit, exactly: 1 MiB. */
    tc_cache *d = tct_open_default();
    expect(tc_set(d, "mb", big_value((size_t)1 << 20), (size_t)1 << 20, TC_TTL_DEFAULT), TC_OK,
           "tc_set", "1 MiB");
    expect(tc_set(d, "mb", big_value(((size_t)1 << 20) + 1), ((size_t)1 << 20) + 1, TC_TTL_DEFAULT),
           TC_ERR_TOO_BIG, "tc_set", "1 MiB + 1");
    tc_close(d);
    tct_expect(c, "t3", TC_OK, NULL);
    tc_close(c);
    family_done("values, loaders, TTLs, incr deltas");
}
END_TEST

/* ------------------------------------------------------------------ batches */

START_TEST(test_badinput_batches)
{
    tried = 0;
    tc_cache *c = open_with(1000, 250);
    tc_value vals[4];
    tc_status sts[4];
    const char *ks[4] = {"a", "b", "c", "d"};
    const void *ds[4] = {"1", "2", "3", "4"};
    size_t ls[4] = {1, 1, 1, 1};
    uint64_t before = commands_sent(c);
    expect(tc_get_many(c, NULL, 0, NULL, NULL), TC_OK, "tc_get_many", "n 0, all NULL");
    expect(tc_set_many(c, NULL, NULL, NULL, 0, TC_TTL_DEFAULT), TC_OK, "tc_set_many", "n 0");
    expect(tc_delete_many(c, NULL, 0), TC_OK, "tc_delete_many", "n 0");
    expect(tc_get_many(c, NULL, 2, vals, sts), TC_ERR_ARG, "tc_get_many", "NULL keys");
    expect(tc_get_many(c, ks, 2, NULL, sts), TC_ERR_ARG, "tc_get_many", "NULL out");
    expect(tc_get_many(c, ks, 2, vals, NULL), TC_ERR_ARG, "tc_get_many", "NULL st");
    expect(tc_set_many(c, NULL, ds, ls, 2, 0), TC_ERR_ARG, "tc_set_many", "NULL keys");
    expect(tc_set_many(c, ks, NULL, ls, 2, 0), TC_ERR_ARG, "tc_set_many", "NULL data");
    expect(tc_set_many(c, ks, ds, NULL, 2, 0), TC_ERR_ARG, "tc_set_many", "NULL lens");
    expect(tc_set_many(c, ks, ds, ls, 2, -7), TC_ERR_ARG, "tc_set_many", "bad ttl");
    expect(tc_delete_many(c, NULL, 2), TC_ERR_ARG, "tc_delete_many", "NULL keys");
    const char *with_null[4] = {"a", NULL, "c", "d"};
    expect(tc_get_many(c, with_null, 4, vals, sts), TC_ERR_ARG, "tc_get_many", "a NULL key");
    for (int i = 0; i < 4; i++)
        ck_assert_ptr_null(vals[i].priv);
    expect(tc_set_many(c, with_null, ds, ls, 4, 0), TC_ERR_ARG, "tc_set_many", "a NULL key");
    expect(tc_delete_many(c, with_null, 4), TC_ERR_ARG, "tc_delete_many", "a NULL key");
    const void *null_data[4] = {"1", NULL, "3", "4"};
    expect(tc_set_many(c, ks, null_data, ls, 4, TC_TTL_DEFAULT), TC_ERR_ARG, "tc_set_many",
           "a NULL value with len 1");
    ck_assert_uint_eq(commands_sent(c), before);
    size_t zero[4] = {1, 0, 1, 1};
    expect(tc_set_many(c, ks, null_data, zero, 4, TC_TTL_DEFAULT), TC_OK, "tc_set_many",
           "a NULL value with len 0");
    size_t too_big[4] = {1, 1, 1001, 1};
    expect(tc_set_many(c, ks, ds, too_big, 4, TC_TTL_DEFAULT), TC_ERR_TOO_BIG, "tc_set_many",
           "one value too big");
    /* The same key twice in a batch. */
    const char *dup[2] = {"same", "same"};
    const void *dd[2] = {"first", "second"};
    size_t dl[2] = {5, 6};
    expect(tc_set_many(c, dup, dd, dl, 2, TC_TTL_DEFAULT), TC_OK, "tc_set_many", "dup keys");
    tct_expect(c, "same", TC_OK, "second");
    expect(tc_get_many(c, dup, 2, vals, sts), TC_OK, "tc_get_many", "dup keys");
    tc_value_release(&vals[0]);
    tc_value_release(&vals[1]);
    expect(tc_delete_many(c, dup, 2), TC_OK, "tc_delete_many", "dup keys");
    /* A large batch. */
    enum { N = 2000 };
    char **many = malloc(N * sizeof *many);
    const void **mdata = malloc(N * sizeof *mdata);
    size_t *mlens = malloc(N * sizeof *mlens);
    tc_value *mvals = malloc(N * sizeof *mvals);
    tc_status *msts = malloc(N * sizeof *msts);
    for (int i = 0; i < N; i++) {
        many[i] = malloc(16);
        snprintf(many[i], 16, "many%d", i);
        mdata[i] = many[i];
        mlens[i] = strlen(many[i]);
    }
    expect(tc_set_many(c, (const char *const *)many, mdata, mlens, N, TC_TTL_DEFAULT), TC_OK,
           "tc_set_many", "2000 keys");
    expect(tc_get_many(c, (const char *const *)many, N, mvals, msts), TC_OK, "tc_get_many",
           "2000 keys");
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(msts[i], TC_OK);
        ck_assert_uint_eq(mvals[i].len, mlens[i]);
        tc_value_release(&mvals[i]);
    }
    expect(tc_delete_many(c, (const char *const *)many, N), TC_OK, "tc_delete_many", "2000 keys");
    for (int i = 0; i < N; i++)
        free(many[i]);
    free(many);
    free(mdata);
    free(mlens);
    free(mvals);
    free(msts);
    /* NULL cache. */
    expect(tc_get_many(NULL, ks, 1, vals, sts), TC_ERR_ARG, "tc_get_many", "NULL cache");
    expect(tc_set_many(NULL, ks, ds, ls, 1, 0), TC_ERR_ARG, "tc_set_many", "NULL cache");
    expect(tc_delete_many(NULL, ks, 1), TC_ERR_ARG, "tc_delete_many", "NULL cache");
    expect(tc_clear(NULL), TC_ERR_ARG, "tc_clear", "NULL cache");
    tc_close(c);
    family_done("batches");
}
END_TEST

/* ------------------------------------------------------------------ tc_open */

static const char *const bad_urls[] = {
    "",
    "localhost",
    "localhost:6379",
    "http://127.0.0.1:6379",
    "rediss://",
    "redisss://127.0.0.1:6379",
    "rediss-clusters://127.0.0.1:6379",
    "redis:/127.0.0.1",
    "redis://",
    "redis://:6379",
    "redis://u:p@",
    "redis://127.0.0.1:0",
    "redis://127.0.0.1:65536",
    "redis://127.0.0.1:",
    "redis://127.0.0.1:12a",
    "redis://127.0.0.1:-1",
    "redis://127.0.0.1/x",
    "redis://127.0.0.1/-1",
    "redis://127.0.0.1/1/",
    "redis://127.0.0.1/99999999999",
    "redis://127.0.0.1?db=1",
    "redis://127.0.0.1/1#f",
    "redis://[::1",
    "redis://[]:1",
    "redis://[g::1]",
    "redis://[fe80::1%25eth0]",
    "redis://::1:6379",
    "redis://h h",
    "redis://a@b@h",
    "redis://u:p w@h",
    "redis://u:p%4@h",
    "redis://u:p%zz@h",
    "redis://u:%00@h",
    "redis://127.0.0.1\n:6379",
    "redis://127.0.0.1:6379\r\n",
    "redis://\x01",
    "redis://h\xff",
    "redis://user\x7f@h",
    "unix://",
    "unix:///",
    "unix://tmp/s",
    "unix://host/tmp/s",
    "unix:///tmp/s?db=x",
    "unix:///tmp/s?db=",
    "unix:///tmp/s?x=1",
    "unix:///tmp/dir/",
    "unix:///tmp/a b",
    "unix:///tmp/a%00b",
    "unix:///tmp/\x01",
    " redis://127.0.0.1",
    "REDIS:/127.0.0.1",
    "redis//127.0.0.1",
    "ftp://x",
    "%72edis://127.0.0.1",
};

typedef void (*opt_mutator)(tc_options *o);
#define MUT(name, stmt)                                                                            \
    static void name(tc_options *o)                                                                \
    {                                                                                              \
        stmt;                                                                                      \
    }
MUT(m_prefix_space, o->key_prefix = "a b")
MUT(m_prefix_ctrl, o->key_prefix = "a\x01")
MUT(m_prefix_del, o->key_prefix = "\x7f")
MUT(m_remote_ttl0, o->remote_ttl_ms = 0)
MUT(m_remote_ttl_neg, o->remote_ttl_ms = -5)
MUT(m_local_ttl_neg, o->local_ttl_ms = -1)
MUT(m_max_value0, o->max_value_bytes = 0)
MUT(m_max_value_big, o->max_value_bytes = ((size_t)512 << 20) + 1)
MUT(m_max_value_huge, o->max_value_bytes = SIZE_MAX)
MUT(m_max_key0, o->max_key_len = 0)
MUT(m_max_key_big, o->max_key_len = ((size_t)64 << 10) + 1)
MUT(m_pool0, o->pool_size = 0)
MUT(m_pool_neg, o->pool_size = -1)
MUT(m_pool_big, o->pool_size = 1025)
MUT(m_connect0, o->connect_timeout_ms = 0)
MUT(m_connect_neg, o->connect_timeout_ms = INT_MIN)
MUT(m_command0, o->command_timeout_ms = 0)
MUT(m_command_neg, o->command_timeout_ms = -1)
MUT(m_coherence7, o->coherence = (tc_coherence)7)
MUT(m_coherence_neg, o->coherence = (tc_coherence)-1)
MUT(m_heartbeat_low, o->heartbeat_ms = 9)
MUT(m_heartbeat_neg, o->heartbeat_ms = -250)
MUT(m_lock_ttl0, o->lock_ttl_ms = 0)
MUT(m_flight0, o->flight_wait_ms = 0)
MUT(m_beta_neg, o->xfetch_beta = -1)
MUT(m_beta_nan, o->xfetch_beta = NAN)
MUT(m_beta_inf, o->xfetch_beta = INFINITY)
MUT(m_beta_big, o->xfetch_beta = 1e7)
MUT(m_stale_neg, o->stale_if_error_ms = -1)
MUT(m_negative_neg, o->negative_ttl_ms = -1)
MUT(m_recovery3, o->recovery = (tc_recovery)3)
MUT(m_recovery_neg, o->recovery = (tc_recovery)-1)
MUT(m_groups_tracking, (o->recovery = TC_RECOVERY_GROUPS, o->coherence = TC_COHERENCE_TRACKING))
MUT(m_groups_targeted, (o->recovery = TC_RECOVERY_GROUPS, o->coherence = TC_COHERENCE_TARGETED))
MUT(m_groups_none, (o->recovery = TC_RECOVERY_GROUPS, o->coherence = TC_COHERENCE_NONE))
MUT(m_struct0, o->struct_size = 0)
MUT(m_struct8, o->struct_size = 8)
MUT(m_struct_half, o->struct_size = offsetof(tc_options, log_fn))

START_TEST(test_badinput_open)
{
    tried = 0;
    tc_options o;
    tc_cache *c = (tc_cache *)1;
    expect(tc_open(NULL, &c), TC_ERR_ARG, "tc_open", "NULL options");
    ck_assert_ptr_null(c);
    tct_options(&o);
    expect(tc_open(&o, NULL), TC_ERR_ARG, "tc_open", "NULL out");
    for (size_t i = 0; i < sizeof bad_urls / sizeof bad_urls[0]; i++) {
        char d[64];
        tct_options(&o);
        o.redis_url = bad_urls[i];
        c = (tc_cache *)1;
        expect(tc_open(&o, &c), TC_ERR_ARG, "tc_open url", describe(bad_urls[i], d, sizeof d));
        ck_assert_ptr_null(c);
    }
    /* Long URLs: a 10000-byte password (refused by our server, which has none), a
     * socket path longer than sun_path. */
    char *longurl = malloc(20000);
    memcpy(longurl, "redis://:", 9);
    memset(longurl + 9, 'p', 10000);
    snprintf(longurl + 10009, 64, "@127.0.0.1:%d", tct_redis.port);
    tct_options(&o);
    o.redis_url = longurl;
    expect(tc_open(&o, &c), TC_ERR_AUTH, "tc_open", "10000-byte password");
    snprintf(longurl, 20000, "unix:///tmp/");
    memset(longurl + 12, 's', 200);
    longurl[212] = '\0';
    o.redis_url = longurl;
    expect(tc_open(&o, &c), TC_ERR_ARG, "tc_open", "unix path over sun_path");
    free(longurl);
    const opt_mutator muts[] = {
        m_prefix_space,    m_prefix_ctrl,     m_prefix_del,    m_remote_ttl0,    m_remote_ttl_neg,
        m_local_ttl_neg,   m_max_value0,      m_max_value_big, m_max_value_huge, m_max_key0,
        m_max_key_big,     m_pool0,           m_pool_neg,      m_pool_big,       m_connect0,
        m_connect_neg,     m_command0,        m_command_neg,   m_coherence7,     m_coherence_neg,
        m_heartbeat_low,   m_heartbeat_neg,   m_lock_ttl0,     m_flight0,        m_beta_neg,
        m_beta_nan,        m_beta_inf,        m_beta_big,      m_stale_neg,      m_negative_neg,
        m_struct0,         m_struct8,         m_struct_half,   m_recovery3,      m_recovery_neg,
        m_groups_tracking, m_groups_targeted, m_groups_none,
    };
    for (size_t i = 0; i < sizeof muts / sizeof muts[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "option %zu", i);
        tct_options(&o);
        muts[i](&o);
        c = (tc_cache *)1;
        expect(tc_open(&o, &c), TC_ERR_ARG, "tc_open", what);
        ck_assert_ptr_null(c);
    }
    /* A prefix of the longest allowed length, and one byte more. */
    char *pfx = malloc(1026);
    memset(pfx, 'p', 1025);
    pfx[1024] = '\0';
    tct_options(&o);
    o.key_prefix = pfx;
    expect(tc_open(&o, &c), TC_OK, "tc_open", "1024-byte prefix");
    expect(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK, "tc_set", "1024-byte prefix");
    tct_expect(c, "k", TC_OK, "v");
    expect(tc_clear(c), TC_OK, "tc_clear", "1024-byte prefix");
    tc_close(c);
    pfx[1024] = 'p';
    pfx[1025] = '\0';
    o.key_prefix = pfx;
    expect(tc_open(&o, &c), TC_ERR_ARG, "tc_open", "1025-byte prefix");
    free(pfx);
    /* Glob characters in the prefix: clear still only removes this prefix's keys. */
    tct_options(&o);
    char gp[80];
    snprintf(gp, sizeof gp, "%s*[?]\\", o.key_prefix);
    o.key_prefix = gp;
    expect(tc_open(&o, &c), TC_OK, "tc_open", "glob prefix");
    tc_cache *other = tct_open_default();
    expect(tc_set(other, "keep", "1", 1, TC_TTL_DEFAULT), TC_OK, "tc_set", "other prefix");
    expect(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK, "tc_set", "glob prefix");
    expect(tc_clear(c), TC_OK, "tc_clear", "glob prefix");
    tc__local_flush(tc__cache_local(other));
    tct_expect(other, "keep", TC_OK, "1");
    tct_expect(c, "k", TC_MISS, NULL);
    tc_close(other);
    tc_close(c);
    tc_options_init(NULL);
    tc_close(NULL);
    family_done("tc_open: URLs and options");
}
END_TEST

/* ------------------------------------------------------------------ caller buffers */

#define CANARY 0xA5
#define GUARD 32

/* A buffer of cap bytes followed by GUARD canary bytes (heap, so ASan sees the end). */
static char *guarded(size_t cap)
{
    char *b = malloc(cap + GUARD);
    memset(b, 'Z', cap);
    memset(b + cap, CANARY, GUARD);
    return b;
}

static void check_guard(char *b, size_t cap, const char *what, size_t cap_given)
{
    for (size_t i = 0; i < GUARD; i++)
        ck_assert_msg((unsigned char)b[cap + i] == CANARY, "%s: wrote past cap %zu", what,
                      cap_given);
}

START_TEST(test_badinput_buffers)
{
    tried = 0;
    tc_cache *c = open_with(1000, 250);
    const size_t caps[] = {0, 1, 2, 5, 10, 20, 24, 25, 36, 37, 38, 41, 42, 64};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        char what[48];
        /* tc_key */
        char *b = guarded(cap);
        int n = tc_key(b, cap, "grades", "gpa", "7", NULL);
        tried++;
        ck_assert_int_eq(n, cap > 12 ? 12 : -1);
        check_guard(b, cap, "tc_key", cap);
        free(b);
        /* tc_cache_control: "private, max-age=2147483" is 24 bytes. */
        b = guarded(cap);
        tc_status st = tc_cache_control(INT_MAX, "viewer", b, cap);
        expect(st, cap >= 25 ? TC_OK : TC_ERR_ARG, "tc_cache_control", "cap");
        check_guard(b, cap, "tc_cache_control", cap);
        free(b);
        /* tc_gql_key: "gql:public:" + 32 hex = 43 bytes + NUL. */
        b = guarded(cap);
        snprintf(what, sizeof what, "tc_gql_key cap %zu", cap);
        st = tc_gql_key("pub", "{ a }", NULL, NULL, b, cap);
        expect(st, cap >= 41 ? TC_OK : TC_ERR_ARG, what, "");
        check_guard(b, cap, "tc_gql_key", cap);
        free(b);
        /* tc_ns_key: "ns:v0:s" is 7 bytes + NUL. */
        b = guarded(cap);
        snprintf(what, sizeof what, "tc_ns_key cap %zu", cap);
        st = tc_ns_key(c, "ns", "s", b, cap);
        expect(st, cap >= 8 ? TC_OK : TC_ERR_ARG, what, "");
        check_guard(b, cap, "tc_ns_key", cap);
        if (cap > 0 && st != TC_OK)
            ck_assert_int_eq(b[0], '\0');
        free(b);
    }
    /* tc_key: parts. */
    char buf[64];
    const struct {
        const char *a, *b, *c;
        int want;
    } parts[] = {
        {"a", "b", "c", 5},        {"", "b", NULL, -1},       {"a", "", NULL, -1},
        {"a b", NULL, NULL, -1},   {"a\x01", NULL, NULL, -1}, {"\x7f", NULL, NULL, -1},
        {"\xff", "\xc3", NULL, 3}, {"a:b", "c", NULL, 5},     {"%s", "%n", NULL, 5},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        int n = tc_key(buf, sizeof buf, parts[i].a, parts[i].b, parts[i].c, NULL);
        tried++;
        ck_assert_int_eq(n, parts[i].want);
        if (n < 0)
            ck_assert_str_eq(buf, "");
    }
    tried += 2;
    ck_assert_int_eq(tc_key(NULL, 10, "a", NULL), -1);
    ck_assert_int_eq(tc_key(buf, sizeof buf, NULL), -1);
    /* tc_keyf: every cap, the canary after it intact. */
    for (size_t cap = 0; cap < 16; cap++) {
        char *b = guarded(cap);
        int n = tc_keyf(b, cap, "grades:%d", 1234);
        tried++;
        ck_assert_int_eq(n, cap > 11 ? 11 : -1);
        check_guard(b, cap, "tc_keyf", cap);
        free(b);
    }
    /* tc_cache_control: odd TTLs and scopes. */
    const int ttls[] = {INT_MIN, -1, 0, 999, 1000, INT_MAX};
    for (size_t i = 0; i < sizeof ttls / sizeof ttls[0]; i++) {
        expect(tc_cache_control(ttls[i], "public", buf, sizeof buf), TC_OK, "tc_cache_control",
               "ttl");
        ck_assert_ptr_nonnull(strstr(buf, "max-age="));
        ck_assert(buf[strlen("public, max-age=")] != '-');
    }
    expect(tc_cache_control(1000, NULL, buf, sizeof buf), TC_ERR_ARG, "tc_cache_control",
           "NULL scope");
    expect(tc_cache_control(1000, "public", NULL, 10), TC_ERR_ARG, "tc_cache_control", "NULL buf");
    expect(tc_cache_control(1000, "", buf, sizeof buf), TC_OK, "tc_cache_control", "\"\"");
    /* tc_ns_key and the like with NULLs. */
    expect(tc_ns_key(NULL, "ns", "s", buf, sizeof buf), TC_ERR_ARG, "tc_ns_key", "NULL c");
    expect(tc_ns_key(c, "ns", "s", NULL, 10), TC_ERR_ARG, "tc_ns_key", "NULL buf");
    expect(tc_ns_key(c, NULL, "s", buf, sizeof buf), TC_ERR_ARG, "tc_ns_key", "NULL ns");
    expect(tc_ns_key(c, "ns", NULL, buf, sizeof buf), TC_ERR_ARG, "tc_ns_key", "NULL suffix");
    expect(tc_ns_bump(NULL, "ns", NULL), TC_ERR_ARG, "tc_ns_bump", "NULL c");
    expect(tc_ns_bump(c, "ns", NULL), TC_OK, "tc_ns_bump", "NULL result");
    expect(tc_tag_invalidate(NULL, "t"), TC_ERR_ARG, "tc_tag_invalidate", "NULL c");
    /* Tags. */
    const char *tags65[65];
    for (int i = 0; i < 65; i++)
        tags65[i] = "t";
    expect(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, tags65, 64), TC_OK, "tc_set_tagged",
           "64 tags");
    expect(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, tags65, 65), TC_ERR_ARG, "tc_set_tagged",
           "65 tags");
    expect(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, NULL, 1), TC_ERR_ARG, "tc_set_tagged",
           "NULL tags");
    expect(tc_set_tagged(c, "k", "v", 1, TC_TTL_DEFAULT, NULL, 0), TC_OK, "tc_set_tagged",
           "no tags");
    expect(tc_set_tagged(NULL, "k", "v", 1, TC_TTL_DEFAULT, tags65, 1), TC_ERR_ARG, "tc_set_tagged",
           "NULL c");
    /* Locks and stats. */
    tc_lock *l = NULL;
    expect(tc_lock_acquire(NULL, "l", 100, 0, &l), TC_ERR_ARG, "tc_lock_acquire", "NULL c");
    expect(tc_lock_acquire(c, "l", 100, 0, NULL), TC_ERR_ARG, "tc_lock_acquire", "NULL out");
    expect(tc_lock_release(NULL), TC_ERR_ARG, "tc_lock_release", "NULL");
    tc_value v;
    expect(tc_get_or_set(c, "k", NULL, NULL, 1000, &v), TC_ERR_ARG, "tc_get_or_set", "NULL fn");
    expect(tc_get_or_set(c, "k", loader_v, NULL, 1000, NULL), TC_ERR_ARG, "tc_get_or_set",
           "NULL out");
    char *text = (char *)1;
    expect(tc_stats_prometheus(NULL, &text), TC_ERR_ARG, "tc_stats_prometheus", "NULL c");
    ck_assert_ptr_null(text);
    expect(tc_stats_prometheus(c, NULL), TC_ERR_ARG, "tc_stats_prometheus", "NULL text");
    tc_stats_foreach(NULL, NULL, NULL);
    tc_stats_foreach(c, NULL, NULL);
    tc_stats_get(NULL, NULL);
    tc_stats_get(c, NULL);
    tc_value_release(NULL);
    memset(&v, 0, sizeof v);
    tc_value_release(&v);
    tc_value_release(&v);
    tried += 7;
    for (int s = -20; s <= 20; s++) {
        tried++;
        ck_assert_ptr_nonnull(tc_strerror((tc_status)s));
    }
    tried += 2;
    ck_assert_ptr_nonnull(tc_strerror((tc_status)INT_MIN));
    ck_assert_ptr_nonnull(tc_strerror((tc_status)INT_MAX));
    expect(tc_set(c, "after", "ok", 2, TC_TTL_DEFAULT), TC_OK, "tc_set", "after");
    tc_close(c);
    family_done("caller buffers, NULLs, tags, locks, metrics");
}
END_TEST

/* ------------------------------------------------------------------ GraphQL keys */

START_TEST(test_badinput_gql)
{
    tried = 0;
    char buf[256];
    const struct {
        const char *scope, *doc, *op, *vars;
        tc_status want;
    } cases[] = {
        {NULL, "{a}", NULL, NULL, TC_ERR_ARG},
        {"public", NULL, NULL, NULL, TC_ERR_ARG},
        {"", "{a}", NULL, NULL, TC_ERR_ARG},
        {"a b", "{a}", NULL, NULL, TC_ERR_ARG},
        {"a\n", "{a}", NULL, NULL, TC_ERR_ARG},
        {"\xff\xfe", "{a}", NULL, NULL, TC_OK},
        {"public", "", NULL, NULL, TC_OK},
        {"public", "\"open string", NULL, NULL, TC_ERR_ARG},
        {"public", "\"\"\"open block", NULL, NULL, TC_ERR_ARG},
        {"public", "\"\\", NULL, NULL, TC_ERR_ARG},
        {"public", "{ a(x: \"\xff\xc0\") }", NULL, NULL, TC_OK},
        {"public", "\x01\x02\x7f\xff", NULL, NULL, TC_OK},
        {"public", "# only a comment", NULL, NULL, TC_OK},
        {"public", "{a}", "", NULL, TC_OK},
        {"public", "{a}", "\xff op", NULL, TC_OK},
        {"public", "{a}", NULL, "", TC_ERR_ARG},
        {"public", "{a}", NULL, "{", TC_ERR_ARG},
        {"public", "{a}", NULL, "{\"a\":1,\"a\":2}", TC_ERR_ARG},
        {"public", "{a}", NULL, "{\"\\u0000\":1}", TC_ERR_ARG},
        {"public", "{a}", NULL, "{\"a\":\"\xff\"}", TC_ERR_ARG},
        {"public", "{a}", NULL, "[1e999]", TC_ERR_ARG},
        {"public", "{a}", NULL, "99999999999999999999", TC_ERR_ARG},
        {"public", "{a}", NULL, "NaN", TC_ERR_ARG},
        {"public", "{a}", NULL, "{\"a\":\"\\ud800\"}", TC_ERR_ARG},
        {"public", "{a}", NULL, "null", TC_OK},
        {"public", "{a}", NULL, "\"s\\u0000t\"", TC_OK},
        {"public", "{a}", NULL, "{\"b\":[1,2,{\"c\":null}],\"a\":-0.0}", TC_OK},
        {"public", "{a}", NULL, "{} trailing", TC_ERR_ARG},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[32];
        snprintf(what, sizeof what, "case %zu", i);
        tc_status st = tc_gql_key(cases[i].scope, cases[i].doc, cases[i].op, cases[i].vars, buf,
                                  sizeof buf);
        expect(st, cases[i].want, "tc_gql_key", what);
        if (st != TC_OK)
            ck_assert_str_eq(buf, "");
    }
    expect(tc_gql_key("public", "{a}", NULL, NULL, NULL, 64), TC_ERR_ARG, "tc_gql_key", "NULL buf");
    /* Nesting: deep documents (the lexer does not recurse) and variables at and past the
     * 2048 limit. */
    size_t deep = 200000;
    char *doc = malloc(2 * deep + 1);
    memset(doc, '{', deep);
    memset(doc + deep, '}', deep);
    doc[2 * deep] = '\0';
    expect(tc_gql_key("public", doc, NULL, NULL, buf, sizeof buf), TC_OK, "tc_gql_key",
           "200000 braces");
    free(doc);
    for (size_t depth = 2047; depth <= 2049; depth++) {
        char *vars = malloc(2 * depth + 1);
        memset(vars, '[', depth);
        memset(vars + depth, ']', depth);
        vars[2 * depth] = '\0';
        tc_status st = tc_gql_key("public", "{a}", NULL, vars, buf, sizeof buf);
        tried++;
        ck_assert(st == TC_OK || st == TC_ERR_ARG);
        if (depth > 2048)
            ck_assert_int_eq(st, TC_ERR_ARG);
        free(vars);
    }
    /* A large document: 4 MiB of fields. */
    size_t big = (size_t)4 << 20;
    doc = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        doc[i] = "{ab,c}"[i % 6];
    doc[big] = '\0';
    expect(tc_gql_key("public", doc, "Op", "{\"x\":1}", buf, sizeof buf), TC_OK, "tc_gql_key",
           "4 MiB document");
    free(doc);
    /* A scope as long as a cache key can hold, and a very long one (cap decides). */
    char scope[214];
    memset(scope, 's', 213);
    scope[213] = '\0';
    expect(tc_gql_key(scope, "{a}", NULL, NULL, buf, sizeof buf), TC_OK, "tc_gql_key",
           "213-byte scope");
    ck_assert_uint_eq(strlen(buf), 250);
    char *huge = malloc(100001);
    memset(huge, 's', 100000);
    huge[100000] = '\0';
    expect(tc_gql_key(huge, "{a}", NULL, NULL, buf, sizeof buf), TC_ERR_ARG, "tc_gql_key",
           "scope larger than the buffer");
    free(huge);
    family_done("tc_gql_key");
}
END_TEST

/* ------------------------------------------------------------------ main */

int main(void)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/tc-badinput-%ld.rows",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    unlink(path);
    rows_path = path;
    const struct {
        const char *name;
        const TTest *test;
    } families[] = {
        {"keys", test_badinput_keys},       {"values_ttls", test_badinput_values_ttls},
        {"batches", test_badinput_batches}, {"open", test_badinput_open},
        {"buffers", test_badinput_buffers}, {"gql", test_badinput_gql},
    };
    size_t n = sizeof families / sizeof families[0];
    Suite *s = suite_create("badinput");
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(families[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, families[i].test);
        suite_add_tcase(s, tc);
    }
    int rc = tct_main(s, true);
    FILE *f = fopen(path, "r");
    int total = 0, reported = 0;
    char line[256];
    printf("\nBad input:\n");
    while (f && fgets(line, sizeof line, f)) {
        char *bar = strrchr(line, '|');
        if (!bar)
            continue;
        *bar = '\0';
        int k = atoi(bar + 1);
        printf("  %-48s %6d inputs\n", line, k);
        total += k;
        reported++;
    }
    if (f)
        fclose(f);
    printf("  %d inputs tried in %d families; %d crashed%s\n\n", total, (int)n, (int)n - reported,
           rc == 0 ? ", 0 failed" : "; FAILURES: see above");
    unlink(path);
    return rc;
}
