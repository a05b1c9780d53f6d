/* The stored value format (lib/format.c): plain values stay plain, the magic prefix is
 * escaped, metadata round-trips, and a malformed header is read as plain bytes. */
#include "config.h"

#include <string.h>

#include "format.h"
#include "testutil.h"

static tc_ref *stored(const void *data, size_t len, const tc_fmt_meta *meta)
{
    size_t h = tc__fmt_header_len(data, len, meta);
    tc_ref *r = tc__ref_new(h + len);
    ck_assert_ptr_nonnull(r);
    if (h)
        tc__fmt_write_header(r->buf, h, meta);
    memcpy(r->buf + h, data, len);
    r->len = h + len;
    return r;
}

START_TEST(test_format_plain_values_stay_plain)
{
    ck_assert_uint_eq(tc__fmt_header_len("41", 2, NULL), 0);
    ck_assert_uint_eq(tc__fmt_header_len("", 0, NULL), 0);
    tc_ref *r = stored("hello", 5, NULL);
    tc__fmt_decode(r);
    ck_assert_uint_eq(r->len, 5);
    ck_assert_int_eq(memcmp(tc__ref_data(r), "hello", 5), 0);
    tc__ref_drop(r);
}
END_TEST

START_TEST(test_format_magic_escaped)
{
    const char v[] = TC_FMT_MAGIC "payload";
    size_t vlen = sizeof v - 1;
    ck_assert_uint_eq(tc__fmt_header_len(v, vlen, NULL), TC_FMT_BASE_LEN);
    tc_ref *r = stored(v, vlen, NULL);
    ck_assert_uint_eq(r->len, vlen + TC_FMT_BASE_LEN);
    tc__fmt_decode(r);
    ck_assert_uint_eq(r->len, vlen);
    ck_assert_int_eq(memcmp(tc__ref_data(r), v, vlen), 0);
    tc__ref_drop(r);
}
END_TEST

START_TEST(test_format_meta_round_trip)
{
    tc_fmt_meta m = {.flags = TC_FMT_NEGATIVE | TC_FMT_XFETCH,
                     .expiry_ms = 1700000000123LL,
                     .delta_ms = 70000};
    tc_ref *r = stored("", 0, &m);
    tc__fmt_decode(r);
    ck_assert_uint_eq(r->len, 0);
    ck_assert(r->flags & TC_REF_NEGATIVE);
    ck_assert_int_eq(tc__fmt_expiry_ms(r), 1700000000123LL);
    ck_assert_uint_eq(tc__fmt_delta_ms(r), 70000);
    tc__ref_drop(r);
}
END_TEST

START_TEST(test_format_bad_header_is_plain)
{
    /* Magic but a length beyond the value: not a header, returned as is. */
    const char v[] = TC_FMT_MAGIC "\xff\x00\x00\x00xyz";
    tc_ref *r = tc__ref_copy(v, sizeof v - 1);
    tc__fmt_decode(r);
    ck_assert_uint_eq(r->len, sizeof v - 1);
    ck_assert_ptr_eq(tc__ref_data(r), r->buf);
    tc__ref_drop(r);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = tcase_create("format");
    tcase_add_test(tc, test_format_plain_values_stay_plain);
    tcase_add_test(tc, test_format_magic_escaped);
    tcase_add_test(tc, test_format_meta_round_trip);
    tcase_add_test(tc, test_format_bad_header_is_plain);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(format_suite(), false);
}
