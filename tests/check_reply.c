/* The Redis reply interpreters (lib/redis_reply.c), fed replies that hiredis's reader
 * builds from RESP bytes: no server. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_reply.h"
#include "remote.h"
#include "slot_tags.h"
#include "testutil.h"

/* The reply hiredis's reader makes of resp (one whole reply). */
static redisReply *reply_of(const char *resp)
{
    redisReader *rd = redisReaderCreate();
    ck_assert_ptr_nonnull(rd);
    ck_assert_int_eq(redisReaderFeed(rd, resp, strlen(resp)), REDIS_OK);
    void *x = NULL;
    ck_assert_int_eq(redisReaderGetReply(rd, &x), REDIS_OK);
    ck_assert_ptr_nonnull(x);
    redisReaderFree(rd);
    return x;
}

static tc_redirect redirect_of(const char *resp, bool *is)
{
    redisReply *x = reply_of(resp);
    tc_redirect d = {TC_REDIR_NONE, 0, 0, NULL};
    *is = tc__reply_redirect(x, &d);
    freeReplyObject(x);
    return d;
}

START_TEST(test_reply_redirects)
{
    bool is = false;
    tc_redirect d = redirect_of("-MOVED 3999 127.0.0.1:6381\r\n", &is);
    ck_assert(is);
    ck_assert_int_eq(d.kind, TC_REDIR_MOVED);
    ck_assert_int_eq(d.slot, 3999);
    ck_assert_str_eq(d.host, "127.0.0.1");
    ck_assert_int_eq(d.port, 6381);
    tc__redirect_clear(&d);
    ck_assert_ptr_null(d.host);

    d = redirect_of("-ASK 0 ::1:7000\r\n", &is); /* IPv6: the last colon splits */
    ck_assert(is);
    ck_assert_int_eq(d.kind, TC_REDIR_ASK);
    ck_assert_str_eq(d.host, "::1");
    ck_assert_int_eq(d.port, 7000);
    tc__redirect_clear(&d);

    d = redirect_of("-MOVED 16383 :6390\r\n", &is); /* Redis 7: an unknown endpoint */
    ck_assert(is);
    ck_assert_int_eq(d.kind, TC_REDIR_MOVED);
    ck_assert_ptr_null(d.host);
    tc__redirect_clear(&d);

    d = redirect_of("-TRYAGAIN Multiple keys request during rehashing of slot\r\n", &is);
    ck_assert(is);
    ck_assert_int_eq(d.kind, TC_REDIR_TRYAGAIN);
    d = redirect_of("-CLUSTERDOWN The cluster is down\r\n", &is);
    ck_assert_int_eq(d.kind, TC_REDIR_TRYAGAIN);

    const char *not_redirects[] = {
        "-MOVED 16384 127.0.0.1:6381\r\n",
        "-MOVED -1 127.0.0.1:6381\r\n",
        "-MOVED 12 127.0.0.1:0\r\n",
        "-MOVED 12 127.0.0.1:65536\r\n",
        "-MOVED 12 127.0.0.1\r\n",
        "-MOVED 12 127.0.0.1:63x\r\n",
        "-MOVEDX 12 a:1\r\n",
        "-ERR wrong type\r\n",
        "+MOVED 12 a:1\r\n",
        "$5\r\nMOVED\r\n",
    };
    for (size_t i = 0; i < sizeof not_redirects / sizeof *not_redirects; i++) {
        d = redirect_of(not_redirects[i], &is);
        ck_assert_msg(!is && d.kind == TC_REDIR_NONE && !d.host, "%s", not_redirects[i]);
    }
}
END_TEST

/* The regression the old fixed host[64] buffer had: a MOVED naming a longer host was taken
 * for no redirect at all. */
START_TEST(test_reply_redirect_long_host)
{
    char host[300], resp[400];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(resp, sizeof resp, "-MOVED 7 %s:7001\r\n", host);
    bool is = false;
    tc_redirect d = redirect_of(resp, &is);
    ck_assert(is);
    ck_assert_int_eq(d.kind, TC_REDIR_MOVED);
    ck_assert_str_eq(d.host, host);
    tc__redirect_clear(&d);
}
END_TEST

START_TEST(test_reply_first_redirect_kept)
{
    redisReply *a = reply_of("-MOVED 1 a:1\r\n"), *b = reply_of("-ASK 2 b:2\r\n");
    tc_redirect d = {TC_REDIR_NONE, 0, 0, NULL};
    ck_assert(tc__reply_redirect(a, &d));
    ck_assert(tc__reply_redirect(b, &d));
    ck_assert_int_eq(d.kind, TC_REDIR_MOVED);
    ck_assert_str_eq(d.host, "a");
    tc__redirect_clear(&d);
    freeReplyObject(a);
    freeReplyObject(b);
}
END_TEST

typedef struct range {
    int lo, hi, port;
    char host[32];
} range;

typedef struct ranges {
    range r[8];
    int n;
    int refuse_at; /* the callback refuses the range with this index (-1: none) */
} ranges;

static bool collect(void *arg, int lo, int hi, const char *host, size_t hlen, int port)
{
    ranges *rs = arg;
    if (rs->n == rs->refuse_at || rs->n == 8)
        return false;
    range *r = &rs->r[rs->n++];
    r->lo = lo;
    r->hi = hi;
    r->port = port;
    snprintf(r->host, sizeof r->host, "%.*s", (int)hlen, host ? host : "");
    ck_assert(host || hlen == 0);
    return true;
}

static tc_status slots_of(const char *resp, ranges *rs)
{
    memset(rs, 0, sizeof *rs);
    rs->refuse_at = -1;
    redisReply *x = reply_of(resp);
    tc_status st = tc__reply_cluster_slots(x, collect, rs);
    freeReplyObject(x);
    return st;
}

START_TEST(test_reply_cluster_slots)
{
    ranges rs;
    /* Two masters, the second with a replica and a node id; then one named "?". */
    ck_assert_int_eq(slots_of("*3\r\n"
                              "*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
                              "*4\r\n:5461\r\n:10922\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n"
                              "$3\r\nid1\r\n*2\r\n$9\r\n127.0.0.1\r\n:7004\r\n"
                              "*3\r\n:10923\r\n:16383\r\n*2\r\n$1\r\n?\r\n:7002\r\n",
                              &rs),
                     TC_OK);
    ck_assert_int_eq(rs.n, 3);
    ck_assert_int_eq(rs.r[0].lo, 0);
    ck_assert_int_eq(rs.r[0].hi, 5460);
    ck_assert_str_eq(rs.r[0].host, "127.0.0.1");
    ck_assert_int_eq(rs.r[0].port, 7000);
    ck_assert_int_eq(rs.r[1].port, 7001); /* the master, not the replica */
    ck_assert_str_eq(rs.r[2].host, "");   /* "?": the node asked */
    ck_assert_int_eq(rs.r[2].hi, 16383);

    const char *bad[] = {
        "*0\r\n",                                               /* no slots */
        "$2\r\nno\r\n",                                         /* not an array */
        "*1\r\n*3\r\n:5\r\n:4\r\n*2\r\n$1\r\na\r\n:1\r\n",      /* lo > hi */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n",  /* slot 16384 */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:0\r\n",      /* port 0 */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n:1\r\n:1\r\n",           /* host an int */
        "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\na\r\n",            /* no port */
        "*1\r\n*2\r\n:0\r\n:1\r\n",                             /* no master */
        "*1\r\n*3\r\n$1\r\n0\r\n:1\r\n*2\r\n$1\r\na\r\n:1\r\n", /* lo a string */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        ck_assert_msg(slots_of(bad[i], &rs) == TC_ERR_PROTO, "%zu", i);

    memset(&rs, 0, sizeof rs);
    rs.refuse_at = 1;
    redisReply *x = reply_of("*2\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:1\r\n"
                             "*3\r\n:2\r\n:3\r\n*2\r\n$1\r\nb\r\n:2\r\n");
    ck_assert_int_eq(tc__reply_cluster_slots(x, collect, &rs), TC_ERR_NOMEM);
    ck_assert_int_eq(rs.n, 1);
    freeReplyObject(x);
}
END_TEST

/* Found by fuzz_reply: a host with a NUL inside was cut short when copied, so the redirect
 * named another (empty) host than the reply did. */
START_TEST(test_reply_host_with_nul)
{
    redisReader *rd = redisReaderCreate();
    static const char resp[] = "-ASK 0 a\0b:7000\r\n"
                               "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$3\r\na\0b\r\n:7000\r\n";
    ck_assert_int_eq(redisReaderFeed(rd, resp, sizeof resp - 1), REDIS_OK);
    void *x = NULL, *y = NULL;
    ck_assert_int_eq(redisReaderGetReply(rd, &x), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(rd, &y), REDIS_OK);
    tc_redirect d = {TC_REDIR_NONE, 0, 0, NULL};
    ck_assert(!tc__reply_redirect(x, &d));
    ck_assert_int_eq(d.kind, TC_REDIR_NONE);
    ranges rs = {.refuse_at = -1};
    ck_assert_int_eq(tc__reply_cluster_slots(y, collect, &rs), TC_ERR_PROTO);
    freeReplyObject(x);
    freeReplyObject(y);
    redisReaderFree(rd);
}
END_TEST

START_TEST(test_reply_sentinel_master_addr)
{
    char *host = NULL;
    int port = 0;
    redisReply *x = reply_of("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n");
    ck_assert_int_eq(tc__reply_master_addr(x, &host, &port), TC_OK);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 6380);
    tc__free(host);
    freeReplyObject(x);

    x = reply_of("*-1\r\n"); /* nil: no such master */
    ck_assert_int_eq(tc__reply_master_addr(x, &host, &port), TC_MISS);
    ck_assert_ptr_null(host);
    freeReplyObject(x);

    const char *bad[] = {"*2\r\n$1\r\na\r\n$5\r\n65536\r\n",
                         "*2\r\n$1\r\na\r\n$1\r\n0\r\n",
                         "*2\r\n$0\r\n\r\n$2\r\n80\r\n",
                         "*2\r\n$1\r\na\r\n:80\r\n",
                         "*1\r\n$1\r\na\r\n",
                         "-ERR unknown\r\n",
                         "*3\r\n$1\r\na\r\n$2\r\n80\r\n$1\r\nx\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        x = reply_of(bad[i]);
        ck_assert_msg(tc__reply_master_addr(x, &host, &port) == TC_ERR_PROTO, "%zu", i);
        ck_assert_ptr_null(host);
        freeReplyObject(x);
    }
}
END_TEST

static tc_status switch_of(const char *payload, char **host, int *port)
{
    char resp[600];
    snprintf(resp, sizeof resp, "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%zu\r\n%s\r\n",
             strlen(payload), payload);
    redisReply *x = reply_of(resp);
    tc_status st = tc__reply_switch_master(x, "+switch-master", "mymaster", host, port);
    freeReplyObject(x);
    return st;
}

START_TEST(test_reply_switch_master)
{
    char *host = NULL;
    int port = 0;
    ck_assert_int_eq(switch_of("mymaster 127.0.0.1 6380 127.0.0.2 6381", &host, &port), TC_OK);
    ck_assert_str_eq(host, "127.0.0.2");
    ck_assert_int_eq(port, 6381);
    tc__free(host);
    const char *others[] = {"othermaster 127.0.0.1 6380 127.0.0.2 6381",
                            "mymaster2 127.0.0.1 6380 127.0.0.2 6381",
                            "mymaster 127.0.0.1 6380 127.0.0.2",
                            "mymaster 127.0.0.1 6380 127.0.0.2 6381 extra",
                            "mymaster 127.0.0.1 6380 127.0.0.2 0",
                            "mymaster 127.0.0.1 6380 127.0.0.2 70000",
                            ""};
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        ck_assert_msg(switch_of(others[i], &host, &port) == TC_MISS, "%s", others[i]);
        ck_assert_ptr_null(host);
    }
    /* Another channel, or not a message. */
    redisReply *x = reply_of("*3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$3\r\nabc\r\n");
    ck_assert_int_eq(tc__reply_switch_master(x, "+switch-master", "mymaster", &host, &port),
                     TC_MISS);
    freeReplyObject(x);
    x = reply_of("*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n");
    ck_assert_int_eq(tc__reply_switch_master(x, "+switch-master", "mymaster", &host, &port),
                     TC_MISS);
    freeReplyObject(x);
}
END_TEST

START_TEST(test_reply_value)
{
    redisReply *g = reply_of("$3\r\nabc\r\n"), *t = reply_of(":1500\r\n");
    tc_ref *v = NULL;
    int64_t pttl = 0;
    const redisReply *bad = NULL;
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_OK);
    ck_assert_uint_eq(v->len, 3);
    ck_assert_mem_eq(v->buf, "abc", 3);
    ck_assert_int_eq(pttl, 1500);
    tc__ref_drop(v);
    freeReplyObject(t);

    t = reply_of(":-2\r\n"); /* expired between GET and PTTL: no time left */
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_OK);
    ck_assert_int_eq(pttl, 0);
    tc__ref_drop(v);
    freeReplyObject(t);

    t = reply_of(":-1\r\n"); /* no TTL */
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_OK);
    ck_assert_int_eq(pttl, -1);
    tc__ref_drop(v);
    ck_assert_int_eq(tc__reply_value(g, NULL, &v, NULL, &bad), TC_OK); /* GET alone */
    tc__ref_drop(v);
    freeReplyObject(g);

    g = reply_of("$-1\r\n");
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_MISS);
    ck_assert_ptr_null(v);
    freeReplyObject(g);

    g = reply_of("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_ERR_PROTO);
    ck_assert_ptr_eq(bad, g);
    freeReplyObject(g);
    freeReplyObject(t);

    g = reply_of("$0\r\n\r\n"); /* the empty value is a value */
    t = reply_of("$2\r\n10\r\n");
    ck_assert_int_eq(tc__reply_value(g, t, &v, &pttl, &bad), TC_ERR_PROTO);
    ck_assert_ptr_eq(bad, t);
    ck_assert_int_eq(tc__reply_value(g, NULL, &v, NULL, &bad), TC_OK);
    ck_assert_uint_eq(v->len, 0);
    tc__ref_drop(v);
    freeReplyObject(g);
    freeReplyObject(t);
}
END_TEST

START_TEST(test_reply_scan_and_integers)
{
    redisReply *x = reply_of("*2\r\n$2\r\n17\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n");
    ck_assert(tc__reply_scan_ok(x));
    freeReplyObject(x);
    const char *bad[] = {"*2\r\n$2\r\n1x\r\n*0\r\n",
                         "*2\r\n$0\r\n\r\n*0\r\n",
                         "*2\r\n:17\r\n*0\r\n",
                         "*2\r\n$1\r\n0\r\n*1\r\n:1\r\n",
                         "*1\r\n$1\r\n0\r\n",
                         "*2\r\n$21\r\n123456789012345678901\r\n*0\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        x = reply_of(bad[i]);
        ck_assert_msg(!tc__reply_scan_ok(x), "%zu", i);
        freeReplyObject(x);
    }
    int64_t v = 0;
    ck_assert(tc__parse_i64("-9223372036854775808", 20, &v));
    ck_assert(v == INT64_MIN);
    ck_assert(tc__parse_i64("42", 2, &v) && v == 42);
    ck_assert(!tc__parse_i64("9223372036854775808", 19, &v));
    ck_assert(!tc__parse_i64("+1", 2, &v));
    ck_assert(!tc__parse_i64(" 1", 2, &v));
    ck_assert(!tc__parse_i64("1x", 2, &v));
    ck_assert(!tc__parse_i64("", 0, &v));
}
END_TEST

START_TEST(test_reply_kinds_and_tracking)
{
    redisReply *x = reply_of("-WRONGPASS invalid username-password pair\r\n");
    ck_assert(tc__reply_is_auth_error(x));
    freeReplyObject(x);
    x = reply_of("-NOAUTH Authentication required.\r\n");
    ck_assert(tc__reply_is_auth_error(x));
    freeReplyObject(x);
    x = reply_of("-ERR AUTH <password> called without any password configured\r\n");
    ck_assert(tc__reply_is_auth_error(x));
    freeReplyObject(x);
    x = reply_of("-ERR unknown command\r\n");
    ck_assert(!tc__reply_is_auth_error(x));
    ck_assert(tc__reply_error_starts(x, "ERR "));
    freeReplyObject(x);
    x = reply_of("+OK\r\n");
    ck_assert(tc__reply_is_status(x, "OK"));
    ck_assert(!tc__reply_is_status(x, "OKAY"));
    ck_assert(!tc__reply_is_str(x, "OK"));
    freeReplyObject(x);

    x = reply_of("*6\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$5\r\nbcast\r\n"
                 "$8\r\nredirect\r\n:7\r\n$8\r\nprefixes\r\n*0\r\n");
    ck_assert(tc__reply_tracking_ok(x));
    freeReplyObject(x);
    x = reply_of("*2\r\n$5\r\nflags\r\n*2\r\n$2\r\non\r\n$15\r\nbroken_redirect\r\n");
    ck_assert(!tc__reply_tracking_ok(x));
    freeReplyObject(x);
    x = reply_of("*2\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n");
    ck_assert(!tc__reply_tracking_ok(x));
    freeReplyObject(x);
}
END_TEST

/* The generated table: every slot's tag, alone and in the sequences' key, lands in that
 * slot as the router computes it. */
START_TEST(test_reply_slot_tags_map_to_their_slots)
{
    char key[64];
    for (unsigned sl = 0; sl < TC_SLOTS; sl++) {
        ck_assert_uint_eq(tc__cluster_slot(tc__slot_tag(sl), TC_SLOT_TAG_LEN), sl);
        size_t kl = tc__slot_key(key, "app:__tc:seq", 12, sl);
        ck_assert_uint_eq(kl, 12 + TC_SLOT_KEY_EXTRA);
        ck_assert_uint_eq(tc__cluster_slot(key, kl), sl);
        for (size_t i = 0; i < TC_SLOT_TAG_LEN; i++)
            ck_assert_msg(tc__slot_tag(sl)[i] != '{' && tc__slot_tag(sl)[i] != '}', "slot %u", sl);
    }
}
END_TEST

/* The slot of a Redis key given as prefix and caller key, at every split, is the slot of
 * the whole key: hash tags may open in one part and close in the other. */
START_TEST(test_reply_slot_of_two_parts)
{
    static const char *const keys[] = {"app:1:user42",  "app{x}:1:k",   "app{:1:k}z", "a{}b:1:{k}",
                                       "app:1:{}",      "{:1:k",        "p:1:}{",     "{{a}}",
                                       "app:1:{user}1", "app:1:user{1", "{",          ""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        size_t n = strlen(keys[k]);
        unsigned whole = tc__cluster_slot(keys[k], n);
        for (size_t i = 0; i <= n; i++)
            ck_assert_msg(tc__cluster_slot2(keys[k], i, keys[k] + i, n - i) == whole, "%s at %zu",
                          keys[k], i);
    }
}
END_TEST

static Suite *reply_suite(void)
{
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("redirects");
    tcase_add_test(tc, test_reply_redirects);
    tcase_add_test(tc, test_reply_redirect_long_host);
    tcase_add_test(tc, test_reply_first_redirect_kept);
    suite_add_tcase(s, tc);
    tc = tcase_create("cluster_slots");
    tcase_add_test(tc, test_reply_cluster_slots);
    tcase_add_test(tc, test_reply_host_with_nul);
    suite_add_tcase(s, tc);
    tc = tcase_create("slot_tags");
    tcase_add_test(tc, test_reply_slot_tags_map_to_their_slots);
    tcase_add_test(tc, test_reply_slot_of_two_parts);
    suite_add_tcase(s, tc);
    tc = tcase_create("sentinel");
    tcase_add_test(tc, test_reply_sentinel_master_addr);
    tcase_add_test(tc, test_reply_switch_master);
    suite_add_tcase(s, tc);
    tc = tcase_create("values");
    tcase_add_test(tc, test_reply_value);
    tcase_add_test(tc, test_reply_scan_and_integers);
    tcase_add_test(tc, test_reply_kinds_and_tracking);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tct_main(reply_suite(), false);
}
