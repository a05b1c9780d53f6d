/*
 * Errors that say why: every failing call names the option, key or argument and the rule
 * it broke, through log_fn (per-call errors at TC_LOG_DEBUG), and tc_open2 hands the reason
 * for a failed open to a caller that set up no logging.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "testutil.h"

/* Every line log_fn received, with its level. */
static char logged[8192];

static void log_to_buf(void *arg, int level, const char *msg)
{
    (void)arg;
    size_t n = strlen(logged);
    snprintf(logged + n, sizeof logged - n, "%d %s\n", level, msg);
}

static void assert_logged(const char *want)
{
    ck_assert_msg(strstr(logged, want) != NULL, "log lacks '%s'; it has:\n%s", want, logged);
}

/* ------------------------------------------------------------------ options */

/* What the open says for each option spoil() breaks, in its order. */
static const char *const bad_options[] = {
    "option local_ttl_ms = -5: must be >= 0",
    "option pool_size = 0: must be 1..1024",
    "option coherence = 9: must be TC_COHERENCE_BROADCAST (0)",
    "option key_prefix \"a b\" holds byte 0x20 at offset 1",
    "option redis_url is \"\"",
    "option max_value_bytes = 0: must be 1..536870912",
    "option xfetch_beta = -1: must be 0..1e6",
};

static void spoil(tc_options *o, int i)
{
    switch (i) {
    case 0:
        o->local_ttl_ms = -5;
        break;
    case 1:
        o->pool_size = 0;
        break;
    case 2:
        o->coherence = (tc_coherence)9;
        break;
    case 3:
        o->key_prefix = "a b";
        break;
    case 4:
        o->redis_url = "";
        break;
    case 5:
        o->max_value_bytes = 0;
        break;
    default:
        o->xfetch_beta = -1;
        break;
    }
}

START_TEST(test_errors_bad_option)
{
    tc_options o;
    tc_options_init(&o);
    o.redis_url = "redis://127.0.0.1:1/0"; /* never reached: options are checked first */
    o.log_fn = log_to_buf;
    spoil(&o, _i);
    logged[0] = '\0';
    char err[256];
    tc_cache *c = NULL;
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_ERR_ARG);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err, bad_options[_i]) && strstr(err, "invalid argument: ") == err,
                  "err: '%s'", err);
    /* The same line reaches log_fn, as an error. */
    char line[300];
    snprintf(line, sizeof line, "%d tc_open: %s", TC_LOG_ERROR, bad_options[_i]);
    assert_logged(line);
    /* Without log_fn the buffer still tells. */
    o.log_fn = NULL;
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, bad_options[_i]));
}
END_TEST

START_TEST(test_errors_open_reasons)
{
    tc_options o;
    tc_options_init(&o);
    char err[256];
    tc_cache *c = NULL;
    /* An older caller's struct too small for any layout. */
    o.struct_size = 4;
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(err, "struct_size = 4"));
    tc_options_init(&o);
    ck_assert_int_eq(tc_open2(NULL, &c, err, sizeof err), TC_ERR_ARG);
    ck_assert_str_eq(err, "invalid argument: o is NULL");
    /* No Redis there (port 1 refuses). */
    o.redis_url = "redis://127.0.0.1:1/0";
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_ERR_IO);
    ck_assert_msg(strstr(err, "cannot connect to Redis at 127.0.0.1 port 1") != NULL, "err: '%s'",
                  err);
    /* A small buffer is cut, NUL-terminated; NULL is allowed. */
    char small[8];
    ck_assert_int_eq(tc_open2(&o, &c, small, sizeof small), TC_ERR_IO);
    ck_assert_uint_eq(strlen(small), 7);
    ck_assert_int_eq(tc_open2(&o, &c, NULL, 99), TC_ERR_IO);
    /* Success: "" and a working cache. */
    o.redis_url = tct_redis.url;
    strcpy(err, "junk");
    ck_assert_int_eq(tc_open2(&o, &c, err, sizeof err), TC_OK);
    ck_assert_str_eq(err, "");
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tc_close(c);
}
END_TEST

/* ------------------------------------------------------------------ per-call errors */

static tc_cache *open_logged(void)
{
    tc_options o;
    tct_options(&o);
    o.log_fn = log_to_buf;
    return tct_open(&o);
}

/* The call returned TC_ERR_ARG and logged, at TC_LOG_DEBUG, a line holding want. */
static void assert_explained(tc_status st, const char *want)
{
    ck_assert_int_eq(st, TC_ERR_ARG);
    char line[300];
    snprintf(line, sizeof line, "%d %s", TC_LOG_DEBUG, want);
    assert_logged(line);
    logged[0] = '\0';
}

START_TEST(test_errors_bad_call)
{
    tc_cache *c = open_logged();
    tc_value v;
    logged[0] = '\0';
    assert_explained(tc_get(c, "a b", &v), "tc_get: key \"a b\" holds byte 0x20 at offset 1");
    assert_explained(tc_get(c, "", &v), "tc_get: key is empty");
    assert_explained(tc_get(c, "k", NULL), "tc_get: out is NULL");
    char long_key[300];
    memset(long_key, 'x', sizeof long_key - 1);
    long_key[sizeof long_key - 1] = '\0';
    tc_status del = tc_delete(c, long_key);
    ck_assert_ptr_nonnull(strstr(logged, "...\" is longer than max_key_len (250 bytes)"));
    assert_explained(del, "tc_delete: key \"xxxxxxxxxx");
    assert_explained(tc_set(c, "tab\there", "v", 1, 1000),
                     "tc_set: key \"tab\\x09here\" holds byte 0x09 at offset 3");
    assert_explained(tc_set(c, "k", "v", 1, -5), "ttl_ms: -5 is not a TTL");
    assert_explained(tc_touch(c, "k", -7), "ttl_ms: -7 is not a TTL");
    assert_explained(tc_set(c, "k", NULL, 3, 1000), "data: NULL with a length of 3");
    const char *keys[] = {"ok", "no\x7f", "ok2"};
    tc_value out[3];
    tc_status st[3];
    assert_explained(tc_get_many(c, keys, 3, out, st),
                     "tc_get_many: keys[1] \"no\\x7f\" holds byte 0x7f");
    assert_explained(tc_delete_many(c, NULL, 2), "tc_delete_many: keys is NULL");
    /* Nothing about a call that succeeds. */
    ck_assert_int_eq(tc_set(c, "k", "v", 1, 1000), TC_OK);
    ck_assert_ptr_null(strstr(logged, "3 "));
    tc_close(c);
}
END_TEST

static tc_status failing_loader(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    (void)out;
    return TC_ERR_IO;
}

START_TEST(test_errors_loader)
{
    tc_cache *c = open_logged();
    tc_value v;
    logged[0] = '\0';
    ck_assert_int_eq(tc_get_or_set(c, "lk", failing_loader, NULL, 1000, &v), TC_ERR_LOADER);
    assert_logged("tc_get_or_set lk: the loader failed: it returned -3 (Redis unreachable or "
                  "connection lost), neither TC_OK nor TC_MISS");
    tc_close(c);
}
END_TEST

static Suite *errors_suite(void)
{
    Suite *s = suite_create("errors");
    TCase *tc = tcase_create("bad_option");
    tcase_add_loop_test(tc, test_errors_bad_option, 0,
                        (int)(sizeof bad_options / sizeof bad_options[0]));
    suite_add_tcase(s, tc);
    tc = tcase_create("open_reasons");
    tcase_add_test(tc, test_errors_open_reasons);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad_call");
    tcase_add_test(tc, test_errors_bad_call);
    suite_add_tcase(s, tc);
    tc = tcase_create("loader");
    tcase_add_test(tc, test_errors_loader);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(errors_suite(), true);
}
