/* Key rules, key building and key hashing. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "key.h"
#include "testutil.h"

START_TEST(test_key_valid_rules)
{
    size_t len = 0;
    ck_assert(tc__key_valid("a", 250, &len));
    ck_assert_uint_eq(len, 1);
    ck_assert(tc__key_valid("grades:gpa:student:123", 250, &len));
    ck_assert(tc__key_valid("caf\xc3\xa9", 250, &len)); /* UTF-8 bytes are >= 128: allowed */
    ck_assert(!tc__key_valid(NULL, 250, &len));
    ck_assert(!tc__key_valid("", 250, &len));
    ck_assert(!tc__key_valid("has space", 250, &len));
    ck_assert(!tc__key_valid("tab\there", 250, &len));
    ck_assert(!tc__key_valid("nl\n", 250, &len));
    ck_assert(!tc__key_valid("del\x7f", 250, &len));
    ck_assert(!tc__key_valid("\x01", 250, &len));
}
END_TEST

START_TEST(test_key_valid_length)
{
    char k[300];
    memset(k, 'k', sizeof k);
    k[250] = '\0';
    ck_assert(tc__key_valid(k, 250, NULL));
    k[250] = 'k';
    k[251] = '\0';
    ck_assert(!tc__key_valid(k, 250, NULL));
}
END_TEST

START_TEST(test_key_build_joins_parts)
{
    char buf[64];
    int n = tc_key(buf, sizeof buf, "grades", "gpa", "student", "123", NULL);
    ck_assert_int_eq(n, 22);
    ck_assert_str_eq(buf, "grades:gpa:student:123");
    ck_assert_int_eq(tc_key(buf, sizeof buf, "one", NULL), 3);
    ck_assert_str_eq(buf, "one");
}
END_TEST

START_TEST(test_key_build_rejects)
{
    char buf[8];
    ck_assert_int_eq(tc_key(buf, sizeof buf, "toolong", "x", NULL), -1);
    ck_assert_int_eq(tc_key(buf, sizeof buf, "a b", NULL), -1);
    ck_assert_int_eq(tc_key(buf, sizeof buf, "a", "", NULL), -1);
    ck_assert_int_eq(tc_key(buf, sizeof buf, NULL), -1);
    ck_assert_int_eq(tc_key(NULL, 8, "a", NULL), -1);
    ck_assert_int_eq(tc_key(buf, 0, "a", NULL), -1);
    ck_assert_int_eq(tc_key(buf, sizeof buf, "1234567", NULL), 7); /* exactly fits */
    ck_assert_int_eq(tc_key(buf, sizeof buf, "12345678", NULL), -1);
}
END_TEST

START_TEST(test_key_build_formats)
{
    char buf[32];
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "grades:gpa:student:%d", 123), 22);
    ck_assert_str_eq(buf, "grades:gpa:student:123");
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "u:%s:%lld", "x\xc3\xa9", -7LL), 8);
    ck_assert_str_eq(buf, "u:x\xc3\xa9:-7");
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "plain"), 5);
    ck_assert_str_eq(buf, "plain");
}
END_TEST

/* The key rules hold for the result, whatever the format made of it; buf is "" on -1. */
START_TEST(test_key_build_format_rejects)
{
    char buf[8];
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "a:%s", "b c"), -1);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "a:% d", 5), -1);     /* a space from the flag */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "a:%c", '\t'), -1);   /* a control byte */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "a:%c", 127), -1);    /* DEL */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "a:%c", 0), -1);      /* a NUL inside */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "%s", ""), -1);       /* empty */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "1234567"), 7);       /* exactly fits */
    ck_assert_int_eq(tc_keyf(buf, sizeof buf, "k:%d", 123456), -1); /* truncated */
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(tc_keyf(NULL, 8, "a"), -1);
    ck_assert_int_eq(tc_keyf(buf, 0, "a"), -1);
    int (*keyf)(char *, size_t, const char *, ...) = tc_keyf; /* no format check: NULL */
    ck_assert_int_eq(keyf(buf, sizeof buf, NULL), -1);
}
END_TEST

START_TEST(test_key_redis_prefix)
{
    char buf[32];
    ck_assert_uint_eq(tc__key_redis(buf, sizeof buf, "app:1:", 6, "k", 1), 7);
    ck_assert_str_eq(buf, "app:1:k");
    ck_assert_uint_eq(tc__key_redis(buf, 7, "app:1:", 6, "k", 1), 0);
}
END_TEST

START_TEST(test_key_hash_stable)
{
    ck_assert_uint_eq(tc__key_hash("abc", 3), tc__key_hash("abc", 3));
    ck_assert_uint_ne(tc__key_hash("abc", 3), tc__key_hash("abd", 3));
}
END_TEST

/* The byte check reads eight bytes at a time (a read checks a key's bytes only when the
 * local tier does not answer: every key it holds passed the check). Every forbidden byte,
 * at every position of keys of 1 to 40 bytes, after bytes >= 128 (whose borrows the word
 * test must not mistake) or not, is found, and nothing else is.
 */

START_TEST(test_key_bytes_word_check)
{
    char k[48];
    size_t len;
    for (size_t n = 1; n <= 40; n++) {
        for (int high = 0; high < 2; high++) {
            memset(k, high ? 0xe9 : 'a', n);
            k[n] = '\0';
            ck_assert(tc__key_valid(k, 250, &len));
            ck_assert_uint_eq(len, n);
            ck_assert_uint_eq(tc__key_len(k, 250), n);
            for (size_t p = 0; p < n; p++) {
                for (int b = 1; b < 256; b++) {
                    k[p] = (char)b;
                    bool ok = b >= 33 && b != 127;
                    ck_assert_msg(tc__key_bytes_valid(k, n) == ok, "n %zu p %zu b %d", n, p, b);
                    ck_assert(tc__key_valid(k, 250, NULL) == ok);
                }
                k[p] = high ? (char)0xe9 : 'a';
            }
            /* The length limit: max_len bytes pass, one more does not; NUL ends the key. */
            ck_assert_uint_eq(tc__key_len(k, n), n);
            ck_assert_uint_eq(tc__key_len(k, n - 1), 0);
            ck_assert(!tc__key_valid(k, n - 1, NULL));
        }
    }
    ck_assert_uint_eq(tc__key_len("", 250), 0);
    ck_assert_uint_eq(tc__key_len(NULL, 250), 0);
    ck_assert(tc__key_valid("k", SIZE_MAX, NULL));
}
END_TEST

static Suite *key_suite(void)
{
    Suite *s = suite_create("key");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, test_key_valid_rules);
    tcase_add_test(tc, test_key_valid_length);
    suite_add_tcase(s, tc);
    tc = tcase_create("word_check"); /* exhaustive: seconds under the sanitizers */
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_key_bytes_word_check);
    suite_add_tcase(s, tc);
    tc = tcase_create("build");
    tcase_add_test(tc, test_key_build_joins_parts);
    tcase_add_test(tc, test_key_build_rejects);
    tcase_add_test(tc, test_key_build_formats);
    tcase_add_test(tc, test_key_build_format_rejects);
    tcase_add_test(tc, test_key_redis_prefix);
    tcase_add_test(tc, test_key_hash_stable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(key_suite(), false);
}
