/*
 * The Redis tier (lib/remote.c): URL parsing, the handshake and its error mapping, every
 * operation against the suite's private Redis, failure behaviour (refused, silent server,
 * stalled server, dead and restarted server, the circuit breaker) and the pool under
 * concurrency. Servers other than the suite's are started here through the fixture and
 * stopped by the test that started them.
 */
#include "config.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "remote.h"
#include "remote_conn.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

static atomic_int log_connect_failures;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_all[16384];

/* Records what the library logs, and counts connection attempts that failed, which is how
 * the breaker test sees whether a connect was attempted at all. */
static void test_log(void *arg, int level, const char *msg)
{
    (void)arg;
    (void)level;
    if (strstr(msg, "cannot connect"))
        atomic_fetch_add(&log_connect_failures, 1);
    pthread_mutex_lock(&log_mu);
    size_t used = strlen(log_all);
    snprintf(log_all + used, sizeof log_all - used, "%s\n", msg);
    pthread_mutex_unlock(&log_mu);
}

/* Each test starts with an empty log (in CK_FORK=no runs, as under valgrind, the tests
 * share one process). */
static void log_reset(void)
{
    pthread_mutex_lock(&log_mu);
    log_all[0] = '\0';
    pthread_mutex_unlock(&log_mu);
    atomic_store(&log_connect_failures, 0);
}

static int connect_failures(void)
{
    return atomic_load(&log_connect_failures);
}

static bool logged(const char *needle)
{
    pthread_mutex_lock(&log_mu);
    bool found = strstr(log_all, needle) != NULL;
    pthread_mutex_unlock(&log_mu);
    return found;
}

static tc_remote_config config(const char *url, int pool, int connect_ms, int command_ms)
{
    tc_remote_config c = {
        .url = url,
        .pool_size = pool,
        .connect_timeout_ms = connect_ms,
        .command_timeout_ms = command_ms,
        .log = {.fn = test_log, .arg = NULL},
    };
    return c;
}

static tc_status try_open(const char *url, int pool, int connect_ms, int command_ms,
                          tc_remote **out)
{
    tc_remote_config c = config(url, pool, connect_ms, command_ms);
    return tc__remote_open(&c, out);
}

static tc_remote *open_remote(const char *url, int pool, int connect_ms, int command_ms)
{
    tc_remote *r = NULL;
    tc_status st = try_open(url, pool, connect_ms, command_ms, &r);
    ck_assert_msg(st == TC_OK, "open %s: %s", url, tc_strerror(st));
    ck_assert_ptr_nonnull(r);
    return r;
}

static tc_remote *open_default(void)
{
    return open_remote(tct_redis.url, 2, 500, 1000);
}

static int64_t ms_since(int64_t t0)
{
    return (tc__now_ns() - t0) / 1000000;
}

/* A key unique to this test: "<prefix>:<name>". */
static const char *tkey(char *buf, size_t cap, const char *name)
{
    char p[64];
    snprintf(buf, cap, "%s:%s", tcf_unique_prefix(p, sizeof p), name);
    return buf;
}

static tc_status set1(tc_remote *r, const char *k, const void *v, size_t len, int ttl,
                      const tc_pub *pub)
{
    size_t kl = strlen(k);
    return tc__remote_set(r, 1, &k, &kl, &v, &len, ttl, pub);
}

static tc_status set_str(tc_remote *r, const char *k, const char *v, int ttl)
{
    return set1(r, k, v, strlen(v), ttl, NULL);
}

/* GET through the library; asserts the status and, on a hit, the bytes. */
static void expect_get(tc_remote *r, const char *k, tc_status want, const void *v, size_t len)
{
    tc_ref *val = NULL;
    int64_t pttl = 0;
    tc_status st = tc__remote_get(r, k, strlen(k), &val, &pttl);
    ck_assert_msg(st == want, "get %s: %s, want %s", k, tc_strerror(st), tc_strerror(want));
    if (st == TC_OK) {
        ck_assert_uint_eq(val->len, len);
        ck_assert_int_eq(memcmp(tc__ref_data(val), v, len), 0);
    } else {
        ck_assert_ptr_null(val);
    }
    tc__ref_drop(val);
}

/* One command on the suite's Redis, outside the library; the reply as a string. */
static char *raw(const char *a0, const char *a1, const char *a2)
{
    const char *argv[] = {a0, a1, a2, NULL};
    char *s = tcf_redis_cmd(&tct_redis, argv);
    ck_assert_ptr_nonnull(s);
    return s;
}

static long long raw_int(const char *a0, const char *a1)
{
    char *s = raw(a0, a1, NULL);
    long long v = atoll(s);
    free(s);
    return v;
}

/* A plain hiredis connection to port, outside the library, with a 1 s timeout. */
static redisContext *raw_connect(int port)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(c->err, 0);
    redisSetTimeout(c, tv);
    return c;
}

/* GET key on a raw connection; returns the malloc'd bytes (NULL if absent) and *len. */
static char *raw_get_bin(redisContext *c, const char *k, size_t *len)
{
    const char *argv[2] = {"GET", k};
    redisReply *x = redisCommandArgv(c, 2, argv, NULL);
    ck_assert_ptr_nonnull(x);
    char *out = NULL;
    if (x->type == REDIS_REPLY_STRING) {
        out = malloc(x->len + 1);
        memcpy(out, x->str, x->len);
        out[x->len] = '\0';
        *len = x->len;
    } else {
        ck_assert_int_eq(x->type, REDIS_REPLY_NIL);
    }
    freeReplyObject(x);
    return out;
}

/* A subscriber on channel (a raw connection), for checking what operations publish. */
static redisContext *subscribe(const char *channel)
{
    redisContext *c = raw_connect(tct_redis.port);
    redisReply *x = redisCommand(c, "SUBSCRIBE %s", channel);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->type, REDIS_REPLY_ARRAY);
    freeReplyObject(x);
    return c;
}

/* The next message's payload on a subscriber, or NULL if none arrives within 300 ms. It
 * waits with poll, not a socket timeout: a hiredis context that timed out is unusable. */
static char *next_message(redisContext *c)
{
    void *v = NULL;
    ck_assert_int_eq(redisGetReplyFromReader(c, &v), REDIS_OK);
    if (!v) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, 300) != 1)
            return NULL;
        ck_assert_int_eq(redisGetReply(c, &v), REDIS_OK);
    }
    redisReply *x = v;
    ck_assert_int_eq(x->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(x->elements, 3);
    ck_assert_str_eq(x->element[0]->str, "message");
    char *s = strndup(x->element[2]->str, x->element[2]->len);
    freeReplyObject(x);
    return s;
}

static tc_pub make_pub(const char *channel, const char *payload)
{
    tc_pub p = {.channel = channel,
                .channel_len = strlen(channel),
                .payload = payload,
                .payload_len = strlen(payload)};
    return p;
}

/* ------------------------------------------------------------------ URL parsing */

typedef struct url_case {
    const char *s;
    tc_status want;
    tc_url_kind kind;
    const char *host; /* or path for UNIX */
    int port;
    int db;
    const char *user, *password;
} url_case;

static const url_case url_cases[] = {
    {"redis://127.0.0.1:6380/2", TC_OK, TC_URL_TCP, "127.0.0.1", 6380, 2, NULL, NULL},
    {"redis://localhost", TC_OK, TC_URL_TCP, "localhost", 6379, 0, NULL, NULL},
    {"redis://localhost/", TC_OK, TC_URL_TCP, "localhost", 6379, 0, NULL, NULL},
    {"REDIS://Cache-1.example_x:65535/0", TC_OK, TC_URL_TCP, "Cache-1.example_x", 65535, 0, NULL,
     NULL},
    {"redis://[::1]:7000/3", TC_OK, TC_URL_TCP, "::1", 7000, 3, NULL, NULL},
    {"redis://[2001:db8::1]", TC_OK, TC_URL_TCP, "2001:db8::1", 6379, 0, NULL, NULL},
    {"redis://:secret@h", TC_OK, TC_URL_TCP, "h", 6379, 0, NULL, "secret"},
    {"redis://alice:p%40ss%3Aw%2Frd@h:1/15", TC_OK, TC_URL_TCP, "h", 1, 15, "alice", "p@ss:w/rd"},
    {"redis://al%69ce:a:b@[::1]:2", TC_OK, TC_URL_TCP, "::1", 2, 0, "alice", "a:b"},
    {"redis://alice@h", TC_OK, TC_URL_TCP, "h", 6379, 0, "alice", NULL},
    {"redis://@h", TC_OK, TC_URL_TCP, "h", 6379, 0, NULL, NULL},
    {"unix:///tmp/redis.sock", TC_OK, TC_URL_UNIX, "/tmp/redis.sock", 0, 0, NULL, NULL},
    {"unix:///tmp/redis.sock?db=5", TC_OK, TC_URL_UNIX, "/tmp/redis.sock", 0, 5, NULL, NULL},
    {"unix://u:p%21@/var/run/r.sock?db=1", TC_OK, TC_URL_UNIX, "/var/run/r.sock", 0, 1, "u", "p!"},
    {"unix:///tmp/my%20sock", TC_OK, TC_URL_UNIX, "/tmp/my sock", 0, 0, NULL, NULL},
    {"", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"localhost:6379", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"http://h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"rediss://h:6380", TC_OK, TC_URL_TCP, "h", 6380, 0, NULL, NULL},
    {"REDISS://u:p@h/2", TC_OK, TC_URL_TCP, "h", 6379, 2, "u", "p"},
    {"redisss://h:6380", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"rediss:/h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"rediss-unix:///tmp/s", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis:/h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://:6379", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:p@", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h:0", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h:65536", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h:", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h:12a", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h:-1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/x", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/-1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/1/", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/1 ", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/99999999999", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h?db=1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h/1#frag", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[::1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[]:1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[g::1]", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[127.0.0.1]", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[::1]x", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://[fe80::1%25eth0]", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://::1:6379", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://h h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://a@b@h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:p w@h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:p%4@h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:p%4", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:p%zz@h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"redis://u:%00@h", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix://", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix://tmp/s", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix://host/tmp/s", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix://u:p@x/tmp/s", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/s?db=x", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/s?db=", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/s?foo=1", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/s?db=1&x=2", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/dir/", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/s#x", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/a b", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
    {"unix:///tmp/a%00b", TC_ERR_ARG, 0, NULL, 0, 0, NULL, NULL},
};

static void expect_str(const char *what, const char *s, const char *got, const char *want)
{
    if (!want) {
        ck_assert_msg(got == NULL, "%s: %s is \"%s\", want none", s, what, got);
        return;
    }
    ck_assert_msg(got != NULL, "%s: no %s, want \"%s\"", s, what, want);
    ck_assert_msg(strcmp(got, want) == 0, "%s: %s \"%s\", want \"%s\"", s, what, got, want);
}

/* The rediss schemes are their plaintext twins over TLS; the others are not TLS. */
START_TEST(test_remote_url_tls_schemes)
{
    static const struct {
        const char *s;
        tc_url_kind kind;
        bool tls;
    } cases[] = {
        {"rediss://h:6380", TC_URL_TCP, true},
        {"ReDiSs://h", TC_URL_TCP, true},
        {"redis://h", TC_URL_TCP, false},
        {"rediss-cluster://a:1,b:2", TC_URL_CLUSTER, true},
        {"redis-cluster://a:1", TC_URL_CLUSTER, false},
        {"rediss-sentinel://a:1,b:2/m/3", TC_URL_SENTINEL, true},
        {"redis-sentinel://a:1/m", TC_URL_SENTINEL, false},
        {"unix:///tmp/s", TC_URL_UNIX, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tc_url u;
        ck_assert_msg(tc__url_parse(cases[i].s, &u) == TC_OK, "%s", cases[i].s);
        ck_assert_msg(u.kind == cases[i].kind && u.tls == cases[i].tls, "%s", cases[i].s);
        tc__url_free(&u);
    }
}
END_TEST

START_TEST(test_remote_url_parse)
{
    for (size_t i = 0; i < sizeof url_cases / sizeof url_cases[0]; i++) {
        const url_case *c = &url_cases[i];
        tc_url u;
        tc_status st = tc__url_parse(c->s, &u);
        ck_assert_msg(st == c->want, "\"%s\": %s, want %s", c->s, tc_strerror(st),
                      tc_strerror(c->want));
        if (st != TC_OK) {
            ck_assert_ptr_null(u.host);
            ck_assert_ptr_null(u.user);
            ck_assert_ptr_null(u.password);
            continue;
        }
        ck_assert_int_eq(u.kind, c->kind);
        if (c->kind == TC_URL_TCP) {
            expect_str("host", c->s, u.host, c->host);
            ck_assert_int_eq(u.port, c->port);
            ck_assert_ptr_null(u.path);
        } else {
            expect_str("path", c->s, u.path, c->host);
            ck_assert_ptr_null(u.host);
        }
        ck_assert_int_eq(u.db, c->db);
        expect_str("user", c->s, u.user, c->user);
        expect_str("password", c->s, u.password, c->password);
        tc__url_free(&u);
    }

    /* A socket path must fit in sun_path (108 bytes with its NUL). */
    char longpath[160];
    snprintf(longpath, sizeof longpath, "unix:///%0*d", 110, 0);
    tc_url u;
    ck_assert_int_eq(tc__url_parse(longpath, &u), TC_ERR_ARG);
    snprintf(longpath, sizeof longpath, "unix:///%0*d", 100, 0);
    ck_assert_int_eq(tc__url_parse(longpath, &u), TC_OK);
    tc__url_free(&u);
    ck_assert_int_eq(tc__url_parse(NULL, &u), TC_ERR_ARG);
}
END_TEST

/* ------------------------------------------------------------------ open */

START_TEST(test_remote_open)
{
    tc_remote *r = open_default();
    tc_remote_stats s;
    tc__remote_stats(r, &s);
    /* The eager connection: handshake and script preload happened at open. */
    ck_assert_uint_ge(s.round_trips, 2);
    ck_assert_uint_eq(s.errors, 0);
    ck_assert_int_eq(tc__remote_config(r)->pool_size, 2);
    ck_assert_str_eq(tc__remote_config(r)->url, tct_redis.url);
    tc__remote_close(r);
    tc__remote_close(NULL);

    /* A bad URL is refused before any I/O. */
    tc_remote *bad = (tc_remote *)1;
    ck_assert_int_eq(try_open("redis://h:0", 1, 100, 100, &bad), TC_ERR_ARG);
    ck_assert_ptr_null(bad);
    ck_assert_int_eq(try_open(tct_redis.url, 0, 100, 100, &bad), TC_ERR_ARG);
    ck_assert_int_eq(try_open(tct_redis.url, 1, 0, 100, &bad), TC_ERR_ARG);
}
END_TEST

START_TEST(test_remote_db_select)
{
    /* redis://.../3 selects db 3: the key lands there and not in db 0. */
    char url[160], k[96];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", tct_redis.port);
    tc_remote *r = open_remote(url, 1, 500, 1000);
    tkey(k, sizeof k, "in3");
    ck_assert_int_eq(set_str(r, k, "three", 60000), TC_OK);
    expect_get(r, k, TC_OK, "three", 5);
    char *s = raw("EXISTS", k, NULL);
    ck_assert_str_eq(s, "0");
    free(s);
    redisContext *c = raw_connect(tct_redis.port);
    redisReply *x = redisCommand(c, "SELECT 3");
    freeReplyObject(x);
    size_t len = 0;
    char *v = raw_get_bin(c, k, &len);
    ck_assert_ptr_nonnull(v);
    ck_assert_str_eq(v, "three");
    free(v);
    redisFree(c);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_unix_socket)
{
    char dir[] = "/tmp/tcsockXXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sock[128], url[192];
    snprintf(sock, sizeof sock, "%s/r.sock", dir);
    const char *args[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, args), 0);
    snprintf(url, sizeof url, "unix://%s?db=2", sock);
    tc_remote *r = NULL;
    tc_status st = try_open(url, 1, 500, 1000, &r);
    tc_status set_st = TC_ERR_IO;
    char *in2 = NULL, *in0 = NULL;
    if (st == TC_OK) {
        set_st = set_str(r, "ukey", "over-unix", 60000);
        tc__remote_close(r);
        /* Over TCP to the same server: the key is in db 2 only. */
        redisContext *c = raw_connect(s.port);
        size_t len;
        in0 = raw_get_bin(c, "ukey", &len);
        freeReplyObject(redisCommand(c, "SELECT 2"));
        in2 = raw_get_bin(c, "ukey", &len);
        redisFree(c);
    }
    tcf_redis_stop(&s);
    unlink(sock);
    rmdir(dir);
    ck_assert_int_eq(st, TC_OK);
    ck_assert_int_eq(set_st, TC_OK);
    ck_assert_ptr_null(in0);
    ck_assert_ptr_nonnull(in2);
    ck_assert_str_eq(in2, "over-unix");
    free(in2);
}
END_TEST

/* ------------------------------------------------------------------ get / set */

START_TEST(test_remote_get_set)
{
    tc_remote *r = open_default();
    char k[96], k2[96], k3[96];
    tkey(k, sizeof k, "bin");
    tkey(k2, sizeof k2, "forever");
    tkey(k3, sizeof k3, "empty");

    expect_get(r, k, TC_MISS, NULL, 0);

    /* Binary bytes, NULs included, come back exactly, with the TTL that remains. */
    static const char bin[] = {'a', '\0', 'b', '\0', '\xff', '\x01', '\0'};
    ck_assert_int_eq(set1(r, k, bin, sizeof bin, 5000, NULL), TC_OK);
    tc_ref *v = NULL;
    int64_t pttl = 0;
    ck_assert_int_eq(tc__remote_get(r, k, strlen(k), &v, &pttl), TC_OK);
    ck_assert_uint_eq(v->len, sizeof bin);
    ck_assert_int_eq(memcmp(tc__ref_data(v), bin, sizeof bin), 0);
    ck_assert_int_eq(atomic_load(&v->refs), 1);
    ck_assert(pttl > 4000 && pttl <= 5000);
    tc__ref_drop(v);

    /* FOREVER: no TTL in Redis, reported as -1. */
    ck_assert_int_eq(set_str(r, k2, "x", TC_TTL_FOREVER), TC_OK);
    ck_assert_int_eq(tc__remote_get(r, k2, strlen(k2), &v, &pttl), TC_OK);
    ck_assert_int_eq(pttl, -1);
    tc__ref_drop(v);
    ck_assert_int_eq(raw_int("PTTL", k2), -1);

    /* A zero-length value is a hit of length 0. */
    ck_assert_int_eq(set1(r, k3, "", 0, 60000, NULL), TC_OK);
    expect_get(r, k3, TC_OK, "", 0);

    /* An overwrite replaces the value and its TTL. */
    ck_assert_int_eq(set_str(r, k2, "y", 1500), TC_OK);
    expect_get(r, k2, TC_OK, "y", 1);
    long long t = raw_int("PTTL", k2);
    ck_assert(t > 0 && t <= 1500);

    /* Invalid TTLs are refused before any I/O. */
    ck_assert_int_eq(set_str(r, k, "z", 0), TC_ERR_ARG);
    ck_assert_int_eq(set_str(r, k, "z", -7), TC_ERR_ARG);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_get_many)
{
    tc_remote *r = open_default();
    char keys[5][96];
    const char *kp[5];
    size_t kl[5];
    for (int i = 0; i < 5; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d", i);
        kp[i] = tkey(keys[i], sizeof keys[i], name);
        kl[i] = strlen(kp[i]);
    }
    /* Keys 0, 2, 4 present (4 without a TTL); 1 and 3 absent. */
    ck_assert_int_eq(set_str(r, kp[0], "zero", 60000), TC_OK);
    ck_assert_int_eq(set1(r, kp[2], "t\0o", 3, 60000, NULL), TC_OK);
    ck_assert_int_eq(set_str(r, kp[4], "four", TC_TTL_FOREVER), TC_OK);

    tc_ref *vals[5];
    int64_t pttls[5];
    tc_status st[5];
    tc_remote_stats before, after;
    tc__remote_stats(r, &before);
    ck_assert_int_eq(tc__remote_get_many(r, 5, kp, kl, vals, pttls, st), TC_OK);
    tc__remote_stats(r, &after);
    ck_assert_uint_eq(after.round_trips - before.round_trips, 1);
    ck_assert_uint_eq(after.commands - before.commands, 10);

    ck_assert_int_eq(st[0], TC_OK);
    ck_assert_int_eq(st[1], TC_MISS);
    ck_assert_int_eq(st[2], TC_OK);
    ck_assert_int_eq(st[3], TC_MISS);
    ck_assert_int_eq(st[4], TC_OK);
    ck_assert_ptr_null(vals[1]);
    ck_assert_ptr_null(vals[3]);
    ck_assert_uint_eq(vals[0]->len, 4);
    ck_assert_int_eq(memcmp(tc__ref_data(vals[0]), "zero", 4), 0);
    ck_assert_uint_eq(vals[2]->len, 3);
    ck_assert_int_eq(memcmp(tc__ref_data(vals[2]), "t\0o", 3), 0);
    ck_assert(pttls[0] > 50000 && pttls[0] <= 60000);
    ck_assert_int_eq(pttls[4], -1);
    for (int i = 0; i < 5; i++)
        tc__ref_drop(vals[i]);

    ck_assert_int_eq(tc__remote_get_many(r, 0, NULL, NULL, NULL, NULL, NULL), TC_OK);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_set_many)
{
    tc_remote *r = open_default();
    char keys[3][96];
    const char *kp[3];
    size_t kl[3];
    const void *vp[3] = {"a", "bb", "ccc"};
    size_t vl[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", i);
        kp[i] = tkey(keys[i], sizeof keys[i], name);
        kl[i] = strlen(kp[i]);
    }
    tc_remote_stats before, after;
    tc__remote_stats(r, &before);
    ck_assert_int_eq(tc__remote_set(r, 3, kp, kl, vp, vl, 9000, NULL), TC_OK);
    tc__remote_stats(r, &after);
    ck_assert_uint_eq(after.round_trips - before.round_trips, 1);
    for (int i = 0; i < 3; i++) {
        expect_get(r, kp[i], TC_OK, vp[i], vl[i]);
        long long t = raw_int("PTTL", kp[i]);
        ck_assert(t > 0 && t <= 9000);
    }
    tc__remote_close(r);

    /* All or nothing: an ACL user allowed only "<prefix>:ok*" keys writes a batch with one
     * forbidden key. The refusal aborts the transaction, so the allowed key is not written
     * either (pipelined plain SETs would have written it). */
    char pfx[64], user[80], keypat[96], url[256];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(user, sizeof user, "u%s", pfx);
    snprintf(keypat, sizeof keypat, "~%s:ok*", pfx);
    const char *acl[] = {"ACL", "SETUSER", user, "on", ">pw", keypat, "&*", "+@all", NULL};
    char *s = tcf_redis_cmd(&tct_redis, acl);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "OK");
    free(s);
    snprintf(url, sizeof url, "redis://%s:pw@127.0.0.1:%d", user, tct_redis.port);
    r = open_remote(url, 1, 500, 1000);
    char ok[96], no[96];
    snprintf(ok, sizeof ok, "%s:ok1", pfx);
    snprintf(no, sizeof no, "%s:no1", pfx);
    const char *bk[2] = {ok, no};
    size_t bl[2] = {strlen(ok), strlen(no)};
    const void *bv[2] = {"1", "2"};
    size_t bvl[2] = {1, 1};
    ck_assert_int_eq(tc__remote_set(r, 2, bk, bl, bv, bvl, 60000, NULL), TC_ERR_PROTO);
    ck_assert_int_eq(raw_int("EXISTS", ok), 0);
    ck_assert_int_eq(raw_int("EXISTS", no), 0);
    /* The connection is still good after the refused transaction. */
    ck_assert_int_eq(tc__remote_set(r, 1, bk, bl, bv, bvl, 60000, NULL), TC_OK);
    ck_assert_int_eq(raw_int("EXISTS", ok), 1);
    tc_remote_stats rs;
    tc__remote_stats(r, &rs);
    ck_assert_uint_eq(rs.errors, 1);
    ck_assert_uint_eq(rs.reconnects, 0);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ add / delete / touch */

START_TEST(test_remote_add)
{
    tc_remote *r = open_default();
    char k[96], k2[96], ch[96];
    tkey(k, sizeof k, "add");
    tkey(k2, sizeof k2, "addforever");
    tkey(ch, sizeof ch, "chan");
    redisContext *sub = subscribe(ch);
    tc_pub pub = make_pub(ch, "added");

    ck_assert_int_eq(tc__remote_add(r, k, strlen(k), "v\0one", 5, 4000, &pub), TC_OK);
    expect_get(r, k, TC_OK, "v\0one", 5);
    long long t = raw_int("PTTL", k);
    ck_assert(t > 0 && t <= 4000);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "added");
    free(m);

    /* Present: nothing stored, nothing published. */
    ck_assert_int_eq(tc__remote_add(r, k, strlen(k), "two", 3, 4000, &pub), TC_EXISTS);
    expect_get(r, k, TC_OK, "v\0one", 5);
    ck_assert_ptr_null(next_message(sub));

    ck_assert_int_eq(tc__remote_add(r, k2, strlen(k2), "f", 1, TC_TTL_FOREVER, NULL), TC_OK);
    ck_assert_int_eq(raw_int("PTTL", k2), -1);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_delete)
{
    tc_remote *r = open_default();
    char keys[3][96], ch[96];
    const char *kp[3];
    size_t kl[3];
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", i);
        kp[i] = tkey(keys[i], sizeof keys[i], name);
        kl[i] = strlen(kp[i]);
    }
    tkey(ch, sizeof ch, "chan");
    ck_assert_int_eq(set_str(r, kp[0], "a", 60000), TC_OK);
    ck_assert_int_eq(set_str(r, kp[2], "c", 60000), TC_OK);
    redisContext *sub = subscribe(ch);
    tc_pub pub = make_pub(ch, "deleted");

    size_t deleted = 99;
    tc_remote_stats before, after;
    tc__remote_stats(r, &before);
    ck_assert_int_eq(tc__remote_delete(r, 3, kp, kl, &pub, &deleted), TC_OK);
    tc__remote_stats(r, &after);
    ck_assert_uint_eq(after.round_trips - before.round_trips, 1);
    ck_assert_uint_eq(deleted, 2);
    for (int i = 0; i < 3; i++)
        expect_get(r, kp[i], TC_MISS, NULL, 0);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "deleted");
    free(m);

    ck_assert_int_eq(tc__remote_delete(r, 1, kp, kl, NULL, &deleted), TC_OK);
    ck_assert_uint_eq(deleted, 0);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_touch)
{
    tc_remote *r = open_default();
    char k[96], ch[96];
    tkey(k, sizeof k, "touch");
    tkey(ch, sizeof ch, "chan");
    redisContext *sub = subscribe(ch);
    tc_pub pub = make_pub(ch, "touched");

    /* Absent: TC_MISS, nothing created, nothing published. */
    ck_assert_int_eq(tc__remote_touch(r, k, strlen(k), 5000, &pub), TC_MISS);
    ck_assert_int_eq(raw_int("EXISTS", k), 0);
    ck_assert_ptr_null(next_message(sub));

    ck_assert_int_eq(set_str(r, k, "v", 2000), TC_OK);
    ck_assert_int_eq(tc__remote_touch(r, k, strlen(k), 30000, &pub), TC_OK);
    long long t = raw_int("PTTL", k);
    ck_assert(t > 20000 && t <= 30000);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "touched");
    free(m);

    /* FOREVER removes the TTL; and touching a key that has no TTL is still TC_OK (PERSIST
     * alone would answer 0 and make it look absent). */
    ck_assert_int_eq(tc__remote_touch(r, k, strlen(k), TC_TTL_FOREVER, NULL), TC_OK);
    ck_assert_int_eq(raw_int("PTTL", k), -1);
    ck_assert_int_eq(tc__remote_touch(r, k, strlen(k), TC_TTL_FOREVER, &pub), TC_OK);
    ck_assert_int_eq(raw_int("PTTL", k), -1);
    m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    free(m);
    expect_get(r, k, TC_OK, "v", 1);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ incr */

#define MAGIC "\xF8TC\x01"

START_TEST(test_remote_incr)
{
    tc_remote *r = open_default();
    char k[96], ch[96];
    int64_t res = 0;
    tkey(k, sizeof k, "ctr");
    tkey(ch, sizeof ch, "chan");
    redisContext *sub = subscribe(ch);
    tc_pub pub = make_pub(ch, "incr");

    /* Absent: a miss, and nothing is created (as Django). */
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, &pub, &res), TC_MISS);
    ck_assert_int_eq(raw_int("EXISTS", k), 0);
    ck_assert_ptr_null(next_message(sub));

    /* A plain integer, its TTL kept. */
    ck_assert_int_eq(set_str(r, k, "41", 60000), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, &pub, &res), TC_OK);
    ck_assert_int_eq(res, 42);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), -50, MAGIC, 4, NULL, &res), TC_OK);
    ck_assert_int_eq(res, -8);
    long long t = raw_int("PTTL", k);
    ck_assert(t > 50000 && t <= 60000);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "incr");
    free(m);

    /* Beyond 2^53, where a Lua number would round. */
    ck_assert_int_eq(set_str(r, k, "9007199254740993", 60000), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 2, MAGIC, 4, NULL, &res), TC_OK);
    ck_assert(res == INT64_C(9007199254740995));

    /* Not an integer, and overflow: TC_ERR_NOT_INT, value unchanged, nothing published. */
    ck_assert_int_eq(set_str(r, k, "abc", 60000), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, &pub, &res), TC_ERR_NOT_INT);
    expect_get(r, k, TC_OK, "abc", 3);
    ck_assert_ptr_null(next_message(sub));
    ck_assert_int_eq(set_str(r, k, "", 60000), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_ERR_NOT_INT);
    ck_assert_int_eq(set_str(r, k, "9223372036854775807", 60000), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_ERR_NOT_INT);
    expect_get(r, k, TC_OK, "9223372036854775807", 19);

    /* A value written with a 16-byte stored-format header: the header goes, the plain
     * integer stays, with its TTL. */
    unsigned char hv[18];
    memset(hv, 0, sizeof hv);
    memcpy(hv, MAGIC, 4);
    hv[4] = 16;
    hv[5] = 0;
    hv[6] = 0x02;
    memcpy(hv + 16, "41", 2);
    ck_assert_int_eq(set1(r, k, hv, sizeof hv, 60000, NULL), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_OK);
    ck_assert_int_eq(res, 42);
    expect_get(r, k, TC_OK, "42", 2);
    t = raw_int("PTTL", k);
    ck_assert(t > 50000 && t <= 60000);

    /* A header around a non-integer: refused, and the stored bytes are left as they were. */
    memcpy(hv + 16, "4x", 2);
    ck_assert_int_eq(set1(r, k, hv, sizeof hv, 60000, NULL), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_ERR_NOT_INT);
    expect_get(r, k, TC_OK, hv, sizeof hv);

    /* A header length past the value is malformed: not an integer. */
    hv[4] = 40;
    memcpy(hv + 16, "41", 2);
    ck_assert_int_eq(set1(r, k, hv, sizeof hv, 60000, NULL), TC_OK);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_ERR_NOT_INT);

    /* A caller error is not a Redis error. */
    tc_remote_stats s;
    tc__remote_stats(r, &s);
    ck_assert_uint_eq(s.errors, 0);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ clear / publish */

START_TEST(test_remote_clear)
{
    tc_remote *r = open_default();
    char pfx[64], pattern[96], other[96], ch[96];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(pattern, sizeof pattern, "%s:c:*", pfx);
    snprintf(other, sizeof other, "%s:keep", pfx);
    tkey(ch, sizeof ch, "chan");

    /* More keys than one SCAN batch, so the loop must run several times. */
    enum { N = 2500 };
    static char names[N][80];
    static const char *kp[N];
    static size_t kl[N];
    static const void *vp[N];
    static size_t vl[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "%s:c:%d", pfx, i);
        kp[i] = names[i];
        kl[i] = strlen(names[i]);
        vp[i] = "v";
        vl[i] = 1;
    }
    ck_assert_int_eq(tc__remote_set(r, N, kp, kl, vp, vl, 60000, NULL), TC_OK);
    ck_assert_int_eq(set_str(r, other, "k", 60000), TC_OK);
    ck_assert_int_eq(raw_int("EXISTS", kp[N - 1]), 1);

    redisContext *sub = subscribe(ch);
    tc_pub pub = make_pub(ch, "flush");
    ck_assert_int_eq(tc__remote_clear(r, pattern, &pub), TC_OK);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "flush");
    free(m);

    const char *scan[] = {"EVAL", "return #redis.call('KEYS', ARGV[1])", "0", pattern, NULL};
    char *left = tcf_redis_cmd(&tct_redis, scan);
    ck_assert_ptr_nonnull(left);
    ck_assert_str_eq(left, "0");
    free(left);
    expect_get(r, other, TC_OK, "k", 1);

    /* Nothing to clear is fine too. */
    ck_assert_int_eq(tc__remote_clear(r, pattern, NULL), TC_OK);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_publish)
{
    tc_remote *r = open_default();
    char k[96], ch[96];
    tkey(k, sizeof k, "pub");
    tkey(ch, sizeof ch, "chan");
    redisContext *sub = subscribe(ch);

    /* A set carries its publication in the same transaction. */
    tc_pub pub = {.channel = ch, .channel_len = strlen(ch), .payload = "inv\0al", .payload_len = 6};
    ck_assert_int_eq(set_str(r, k, "v", 60000), TC_OK);
    ck_assert_ptr_null(next_message(sub));
    const char *kp = k;
    size_t kl = strlen(k);
    const void *vp = "w";
    size_t vl = 1;
    ck_assert_int_eq(tc__remote_set(r, 1, &kp, &kl, &vp, &vl, 60000, &pub), TC_OK);
    void *v = NULL;
    ck_assert_int_eq(redisGetReply(sub, &v), REDIS_OK);
    redisReply *x = v;
    ck_assert_int_eq(x->type, REDIS_REPLY_ARRAY);
    ck_assert_str_eq(x->element[1]->str, ch);
    ck_assert_uint_eq(x->element[2]->len, 6);
    ck_assert_int_eq(memcmp(x->element[2]->str, "inv\0al", 6), 0);
    freeReplyObject(x);

    tc_pub alone = make_pub(ch, "alone");
    ck_assert_int_eq(tc__remote_publish(r, &alone), TC_OK);
    char *m = next_message(sub);
    ck_assert_ptr_nonnull(m);
    ck_assert_str_eq(m, "alone");
    free(m);
    redisFree(sub);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ raw access */

START_TEST(test_remote_command)
{
    tc_remote *r = open_default();
    const char *argv[2] = {"ECHO", "he\0llo"};
    size_t lens[2] = {4, 6};
    redisReply *x = NULL;
    ck_assert_int_eq(tc__remote_command(r, 2, argv, lens, &x), TC_OK);
    ck_assert_int_eq(x->type, REDIS_REPLY_STRING);
    ck_assert_uint_eq(x->len, 6);
    ck_assert_int_eq(memcmp(x->str, "he\0llo", 6), 0);
    freeReplyObject(x);

    /* An error reply is handed to the caller, and the connection stays usable. */
    const char *bad[1] = {"NOSUCHCOMMAND"};
    ck_assert_int_eq(tc__remote_command(r, 1, bad, NULL, &x), TC_OK);
    ck_assert_int_eq(x->type, REDIS_REPLY_ERROR);
    freeReplyObject(x);

    /* A dedicated connection: set up (it answers) and owned by the caller. */
    tc_conn *c = NULL;
    const char *ping[] = {"PING"};
    ck_assert_int_eq(tc__remote_connect(r, 0, &c), TC_OK);
    ck_assert_int_eq(tc__conn_command(c, 1, ping, NULL, &x), TC_OK);
    ck_assert_str_eq(x->str, "PONG");
    freeReplyObject(x);
    tc__conn_free(c);

    /* A dedicated connection with a timeout reports it as TC_ERR_TIMEOUT. */
    const char *blpop[] = {"BLPOP", "tc-no-such-list", "1"};
    ck_assert_int_eq(tc__remote_connect(r, 150, &c), TC_OK);
    ck_assert_int_eq(tc__conn_command(c, 3, blpop, NULL, &x), TC_ERR_TIMEOUT);
    ck_assert_ptr_null(x);
    ck_assert_int_eq(tc__remote_ctx_status(c->ctx), TC_ERR_TIMEOUT);
    tc__conn_free(c);

    tc_remote_stats s;
    tc__remote_stats(r, &s);
    ck_assert_uint_eq(s.reconnects, 0);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_noscript)
{
    tc_remote *r = open_default();
    char k[96], k2[96];
    tkey(k, sizeof k, "ns1");
    tkey(k2, sizeof k2, "ns2");
    char *s = raw("SCRIPT", "FLUSH", NULL);
    ck_assert_str_eq(s, "OK");
    free(s);

    /* EVALSHA meets NOSCRIPT and falls back to EVAL: two round trips, a correct answer. */
    tc_remote_stats a, b, c;
    tc__remote_stats(r, &a);
    ck_assert_int_eq(tc__remote_add(r, k, strlen(k), "v", 1, 60000, NULL), TC_OK);
    tc__remote_stats(r, &b);
    ck_assert_uint_eq(b.round_trips - a.round_trips, 2);
    expect_get(r, k, TC_OK, "v", 1);
    /* The EVAL cached it on the server again: back to one EVALSHA. */
    tc__remote_stats(r, &b);
    ck_assert_int_eq(tc__remote_add(r, k2, strlen(k2), "v", 1, 60000, NULL), TC_OK);
    tc__remote_stats(r, &c);
    ck_assert_uint_eq(c.round_trips - b.round_trips, 1);
    ck_assert_uint_eq(c.commands - b.commands, 1);

    /* A caller's script: loaded and run in one round trip the first time, by EVALSHA after
     * that, and by EVAL again after a flush. */
    static const char src[] = "return ARGV[1] .. KEYS[1]";
    const char *argv[3] = {"1", "k", "x"};
    size_t lens[3] = {1, 1, 1};
    redisReply *x = NULL;
    for (int round = 0; round < 3; round++) {
        if (round == 2) {
            s = raw("SCRIPT", "FLUSH", NULL);
            free(s);
        }
        ck_assert_int_eq(tc__remote_script(r, src, 3, argv, lens, &x), TC_OK);
        ck_assert_int_eq(x->type, REDIS_REPLY_STRING);
        ck_assert_str_eq(x->str, "xk");
        freeReplyObject(x);
    }
    tc__remote_stats(r, &a);
    ck_assert_uint_eq(a.errors, 0);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_error_replies)
{
    tc_remote *r = open_default();
    char k[96];
    tkey(k, sizeof k, "hash");
    const char *argv[] = {"HSET", k, "f", "v", NULL};
    char *s = tcf_redis_cmd(&tct_redis, argv);
    free(s);
    /* WRONGTYPE everywhere: an error status, never a crash, and the pool stays healthy. */
    tc_ref *v = NULL;
    int64_t res;
    ck_assert_int_eq(tc__remote_get(r, k, strlen(k), &v, NULL), TC_ERR_PROTO);
    ck_assert_ptr_null(v);
    ck_assert_int_eq(tc__remote_incr(r, k, strlen(k), 1, MAGIC, 4, NULL, &res), TC_ERR_PROTO);
    const char *kp = k;
    size_t kl = strlen(k);
    tc_ref *vals[1] = {(tc_ref *)1};
    tc_status st[1];
    ck_assert_int_eq(tc__remote_get_many(r, 1, &kp, &kl, vals, NULL, st), TC_ERR_PROTO);
    ck_assert_ptr_null(vals[0]);
    tc_remote_stats stats;
    tc__remote_stats(r, &stats);
    ck_assert_uint_eq(stats.errors, 3);
    ck_assert_uint_eq(stats.reconnects, 0);
    ck_assert(logged("WRONGTYPE"));
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_oom)
{
    /* A server out of memory refuses writes: TC_ERR_PROTO for the transaction and for the
     * script, while reads go on. */
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, NULL), 0);
    tc_remote *r = open_remote(s.url, 1, 500, 1000);
    ck_assert_int_eq(set_str(r, "before", "v", 60000), TC_OK);
    const char *cfg[] = {"CONFIG", "SET", "maxmemory", "1", NULL};
    char *out = tcf_redis_cmd(&s, cfg);
    tc_status set_st = set_str(r, "k", "v", 60000);
    tc_status add_st = tc__remote_add(r, "k2", 2, "v", 1, 60000, NULL);
    tc_ref *v = NULL;
    tc_status get_st = tc__remote_get(r, "before", 6, &v, NULL);
    tc__ref_drop(v);
    tc__remote_close(r);
    tcf_redis_stop(&s);
    ck_assert_ptr_nonnull(out);
    ck_assert_str_eq(out, "OK");
    free(out);
    ck_assert_int_eq(set_st, TC_ERR_PROTO);
    ck_assert_int_eq(add_st, TC_ERR_PROTO);
    ck_assert_int_eq(get_st, TC_OK);
    ck_assert(logged("OOM"));
}
END_TEST

/* ------------------------------------------------------------------ auth */

START_TEST(test_remote_auth_password)
{
    const char *args[] = {"--requirepass", "secret", NULL};
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, args), 0);
    char none[128], wrong[128], right[128];
    snprintf(none, sizeof none, "redis://127.0.0.1:%d", s.port);
    snprintf(wrong, sizeof wrong, "redis://:nope@127.0.0.1:%d", s.port);
    snprintf(right, sizeof right, "redis://:secret@127.0.0.1:%d/1", s.port);
    tc_remote *r = NULL;
    tc_status st_none = try_open(none, 1, 500, 1000, &r);
    tc_status st_wrong = try_open(wrong, 1, 500, 1000, &r);
    tc_status st_right = try_open(right, 1, 500, 1000, &r);
    tc_status st_set = TC_ERR_IO;
    if (st_right == TC_OK) {
        st_set = set_str(r, "k", "v", 60000);
        tc__remote_close(r);
    }
    tcf_redis_stop(&s);
    ck_assert_int_eq(st_none, TC_ERR_AUTH);
    ck_assert_int_eq(st_wrong, TC_ERR_AUTH);
    ck_assert_int_eq(st_right, TC_OK);
    ck_assert_int_eq(st_set, TC_OK);

    /* A password for a server that has none is refused too, not silently ignored. */
    char extra[128];
    snprintf(extra, sizeof extra, "redis://:secret@127.0.0.1:%d", tct_redis.port);
    ck_assert_int_eq(try_open(extra, 1, 500, 1000, &r), TC_ERR_AUTH);
}
END_TEST

START_TEST(test_remote_auth_acl)
{
    char pfx[64], user[80], url[256];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(user, sizeof user, "alice%s", pfx);
    /* The password "p@ss:w/rd" must arrive percent-decoded. */
    const char *acl[] = {"ACL", "SETUSER", user, "on", ">p@ss:w/rd", "~*", "&*", "+@all", NULL};
    char *s = tcf_redis_cmd(&tct_redis, acl);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "OK");
    free(s);
    tc_remote *r = NULL;
    snprintf(url, sizeof url, "redis://%s:p%%40ss%%3Aw%%2Frd@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(try_open(url, 1, 500, 1000, &r), TC_OK);
    const char *argv[2] = {"ACL", "WHOAMI"};
    redisReply *x = NULL;
    ck_assert_int_eq(tc__remote_command(r, 2, argv, NULL, &x), TC_OK);
    ck_assert_str_eq(x->str, user);
    freeReplyObject(x);
    tc__remote_close(r);

    snprintf(url, sizeof url, "redis://%s:pw@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(try_open(url, 1, 500, 1000, &r), TC_ERR_AUTH);
    snprintf(url, sizeof url, "redis://nobody%s:pw@127.0.0.1:%d", pfx, tct_redis.port);
    ck_assert_int_eq(try_open(url, 1, 500, 1000, &r), TC_ERR_AUTH);
    /* A user without a password is not quietly the default user. */
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(try_open(url, 1, 500, 1000, &r), TC_ERR_AUTH);
}
END_TEST

/* ------------------------------------------------------------------ failures */

START_TEST(test_remote_refused)
{
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tcf_free_port());
    tc_remote *r = (tc_remote *)1;
    int64_t t0 = tc__now_ns();
    ck_assert_int_eq(try_open(url, 1, 1000, 1000, &r), TC_ERR_IO);
    ck_assert_int_lt(ms_since(t0), 200);
    ck_assert_ptr_null(r);
    ck_assert(logged("cannot connect"));
}
END_TEST

/* A listening socket on 127.0.0.1 that nobody serves: the kernel completes connections
 * into its backlog, and nothing ever answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Accepts one connection and reads it until the client hangs up, answering nothing. */
static void *accept_and_read(void *arg)
{
    int fd = *(const int *)arg;
    int peer = accept(fd, NULL, NULL);
    if (peer >= 0) {
        char buf[256];
        while (read(peer, buf, sizeof buf) > 0)
            ;
        close(peer);
    }
    return NULL;
}

START_TEST(test_remote_silent_server)
{
    int port;
    int fd = silent_listener(&port);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    tc_remote *r = NULL;
    int64_t t0 = tc__now_ns();
    tc_status st = try_open(url, 1, 200, 300, &r);
    int64_t took = ms_since(t0);
    ck_assert_int_eq(st, TC_ERR_TIMEOUT);
    ck_assert_int_ge(took, 250);
    ck_assert_int_lt(took, 200 + 300 + 300);

    close(fd);

    /* Accepted and read from, never answered: the same. */
    fd = silent_listener(&port);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, accept_and_read, &fd), 0);
    t0 = tc__now_ns();
    st = try_open(url, 1, 200, 300, &r);
    took = ms_since(t0);
    pthread_join(t, NULL);
    close(fd);
    ck_assert_int_eq(st, TC_ERR_TIMEOUT);
    ck_assert_int_ge(took, 250);
    ck_assert_int_lt(took, 200 + 300 + 300);
}
END_TEST

START_TEST(test_remote_stall_recovery)
{
    tc_remote *r = open_remote(tct_redis.url, 1, 200, 200);
    char k[96];
    tkey(k, sizeof k, "stall");
    ck_assert_int_eq(set_str(r, k, "v", 60000), TC_OK);

    /* Everything is measured with the server stopped and asserted after SIGCONT, so that
     * a failure cannot leave the suite's server stopped. */
    kill(tct_redis.pid, SIGSTOP);
    int64_t t0 = tc__now_ns();
    tc_ref *v = NULL;
    tc_status st1 = tc__remote_get(r, k, strlen(k), &v, NULL); /* pooled conn times out */
    int64_t took1 = ms_since(t0);
    tc__ref_drop(v);
    v = NULL;
    /* The timeout opened the breaker: no second timeout, no new connection. */
    t0 = tc__now_ns();
    tc_status st2 = tc__remote_get(r, k, strlen(k), &v, NULL);
    int64_t took2 = ms_since(t0);
    tc__ref_drop(v);
    v = NULL;
    t0 = tc__now_ns();
    tc_status st3 = tc__remote_get(r, k, strlen(k), &v, NULL);
    int64_t took3 = ms_since(t0);
    tc__ref_drop(v);
    v = NULL;
    kill(tct_redis.pid, SIGCONT);

    ck_assert_int_eq(st1, TC_ERR_TIMEOUT);
    ck_assert_int_ge(took1, 150);
    ck_assert_int_lt(took1, 600);
    ck_assert_int_eq(st2, TC_ERR_IO);
    ck_assert_int_lt(took2, 50);
    ck_assert_int_eq(st3, TC_ERR_IO);
    ck_assert_int_lt(took3, 50);
    ck_assert(logged("Redis did not answer in time: operations fail fast for 100 ms"));

    /* The pool recovers by itself once the breaker's window has passed. */
    t0 = tc__now_ns();
    tc_status st = TC_ERR_IO;
    while (ms_since(t0) < 2500) {
        st = tc__remote_get(r, k, strlen(k), &v, NULL);
        if (st == TC_OK)
            break;
        tct_sleep_ms(20);
    }
    ck_assert_int_eq(st, TC_OK);
    ck_assert_ptr_nonnull(v);
    ck_assert_uint_eq(v->len, 1);
    tc__ref_drop(v);
    ck_assert_int_lt(ms_since(t0), 1000);
    tc_remote_stats s;
    tc__remote_stats(r, &s);
    ck_assert_uint_ge(s.reconnects, 1);
    ck_assert_uint_ge(s.errors, 3);
    tc__remote_close(r);
}
END_TEST

START_TEST(test_remote_breaker)
{
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, NULL), 0);
    tc_remote *r = open_remote(s.url, 1, 200, 200);
    ck_assert_int_eq(set_str(r, "k", "v", 60000), TC_OK);
    tcf_redis_kill(&s);

    /* The pooled connection finds the server gone; the next call's connect is refused
     * and opens the breaker; the calls after that fail without trying to connect. */
    tc_ref *v = NULL;
    ck_assert_int_eq(tc__remote_get(r, "k", 1, &v, NULL), TC_ERR_IO);
    atomic_store(&log_connect_failures, 0);
    ck_assert_int_eq(tc__remote_get(r, "k", 1, &v, NULL), TC_ERR_IO);
    ck_assert_int_eq(connect_failures(), 1);
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(tc__remote_get(r, "k", 1, &v, NULL), TC_ERR_IO);
    ck_assert_int_eq(connect_failures(), 1);
    ck_assert(logged("fail fast for 100 ms"));

    /* Once the window has passed one probe goes out, is refused, and doubles it. */
    tct_sleep_ms(120);
    ck_assert_int_eq(tc__remote_get(r, "k", 1, &v, NULL), TC_ERR_IO);
    ck_assert_int_eq(connect_failures(), 2);
    ck_assert(logged("fail fast for 200 ms"));

    /* Back up: the pool reconnects by itself within the backoff. */
    ck_assert_int_eq(tcf_redis_restart(&s, NULL), 0);
    int64_t t0 = tc__now_ns();
    tc_status st = TC_ERR_IO;
    while (ms_since(t0) < 2500) {
        st = tc__remote_get(r, "k", 1, &v, NULL);
        if (st != TC_ERR_IO)
            break;
        tct_sleep_ms(10);
    }
    tc__remote_close(r);
    tcf_redis_stop(&s);
    ck_assert_int_eq(st, TC_MISS); /* the restarted server is empty */
    ck_assert_int_lt(ms_since(t0), 2100);
}
END_TEST

/* A server shut down with a save and restarted on its port loads its data file: the pool
 * reconnects by itself and finds the key written before (tc-bench recovery's restart). */
START_TEST(test_remote_shutdown_save_restart)
{
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, NULL), 0);
    tc_remote *r = open_remote(s.url, 1, 200, 200);
    ck_assert_int_eq(set_str(r, "k", "kept", 60000), TC_OK);
    int port = s.port;
    ck_assert_int_eq(tcf_redis_shutdown(&s, true), 0);
    ck_assert_int_eq(s.pid, 0);
    ck_assert_int_eq(tcf_redis_restart(&s, NULL), 0);
    ck_assert_int_eq(s.port, port);
    tc_ref *v = NULL;
    tc_status st = TC_ERR_IO;
    for (int i = 0; i < 300 && st == TC_ERR_IO; i++) { /* the breaker's backoff, at most */
        st = tc__remote_get(r, "k", 1, &v, NULL);
        if (st == TC_ERR_IO)
            tct_sleep_ms(10);
    }
    ck_assert_int_eq(st, TC_OK);
    tc__ref_drop(v);
    expect_get(r, "k", TC_OK, "kept", 4);
    /* NOSAVE writes nothing: a key written since is gone, the first file's key is back. */
    ck_assert_int_eq(set_str(r, "k2", "lost", 60000), TC_OK);
    ck_assert_int_eq(tcf_redis_shutdown(&s, false), 0);
    ck_assert_int_eq(tcf_redis_restart(&s, NULL), 0);
    const char *argv[] = {"EXISTS", "k2", NULL};
    char *n = NULL;
    for (int i = 0; i < 300 && !n; i++) { /* the fixture's client, on a fresh connection */
        n = tcf_redis_cmd(&s, argv);
        if (!n)
            tct_sleep_ms(10);
    }
    ck_assert_ptr_nonnull(n);
    ck_assert_str_eq(n, "0");
    free(n);
    tc__remote_close(r);
    tcf_redis_stop(&s);
}
END_TEST

/* ------------------------------------------------------------------ deadlines */

START_TEST(test_remote_deadline_trickle)
{
    /* A server that answers one byte every 40 ms never lets a 200 ms socket timeout fire.
     * Before the operation deadline, a GET + PTTL took the whole trickle (over a second)
     * and tc_open 2.7 s: the deadline now ends each at command_timeout_ms. */
    tcf_proxy *px = tcf_proxy_start(tct_redis.port);
    ck_assert_ptr_nonnull(px);
    char url[128], k[96];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tcf_proxy_port(px));
    tc_remote *r = open_remote(url, 1, 200, 200);
    tkey(k, sizeof k, "trickle");
    ck_assert_int_eq(set_str(r, k, "a value of some length", 60000), TC_OK);
    tcf_proxy_set_mode(px, TCF_PROXY_TRICKLE, 40);
    int64_t t0 = tc__now_ns();
    tc_ref *v = NULL;
    tc_status st = tc__remote_get(r, k, strlen(k), &v, NULL);
    int64_t took = ms_since(t0);
    tc__ref_drop(v);
    tc_remote *r2 = NULL;
    int64_t t1 = tc__now_ns();
    tc_status st_open = try_open(url, 1, 200, 200, &r2); /* the handshake trickles */
    int64_t took_open = ms_since(t1);
    tcf_proxy_set_mode(px, TCF_PROXY_PASS, 0);
    tc__remote_close(r);
    tcf_proxy_stop(px);
    ck_assert_int_eq(st, TC_ERR_TIMEOUT);
    ck_assert_int_ge(took, 190);
    ck_assert_int_lt(took, 200 + 150);
    ck_assert_int_eq(st_open, TC_ERR_TIMEOUT);
    ck_assert_ptr_null(r2);
    ck_assert_int_lt(took_open, 200 + 150);
}
END_TEST

typedef struct blpop_arg {
    tc_remote *r;
    const char *key, *secs;
    tc_status st;
} blpop_arg;

/* BLPOP key secs on a pooled connection: a command Redis answers (nil) after secs. */
static void *blpop(void *arg)
{
    blpop_arg *a = arg;
    const char *argv[3] = {"BLPOP", a->key, a->secs};
    redisReply *x = NULL;
    a->st = tc__remote_command(a->r, 3, argv, NULL, &x);
    if (x)
        freeReplyObject(x);
    return NULL;
}

START_TEST(test_remote_deadline_covers_slot_wait)
{
    /* One operation, one deadline: a caller that waited for a free connection has only
     * what is left of command_timeout_ms for its round trip. With one connection, A holds
     * it 250 ms; B, starting 50 ms later, waits 200 ms for it, then needs 200 ms more.
     * Before, B took 400 ms and succeeded; now it ends at its 300 ms deadline. */
    const char *args[] = {"--hz", "500", NULL}; /* BLPOP timeouts to within 2 ms */
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, args), 0);
    tc_remote *r = open_remote(s.url, 1, 300, 300);
    char k[96];
    tkey(k, sizeof k, "emptylist");
    blpop_arg a = {r, k, "0.25", TC_ERR_IO}, b = {r, k, "0.2", TC_ERR_IO};
    pthread_t ta;
    ck_assert_int_eq(pthread_create(&ta, NULL, blpop, &a), 0);
    tct_sleep_ms(50);
    int64_t t0 = tc__now_ns();
    blpop(&b);
    int64_t took = ms_since(t0);
    pthread_join(ta, NULL);
    tc__remote_close(r);
    tcf_redis_stop(&s);
    ck_assert_int_eq(a.st, TC_OK);
    ck_assert_int_eq(b.st, TC_ERR_TIMEOUT);
    ck_assert_int_lt(took, 300 + 60);
}
END_TEST

START_TEST(test_remote_slow_handshake_keeps_full_timeout)
{
    /* Regression: a handshake slow enough for the deadline to lower the socket timeouts
     * left them lowered on the new connection, whose next exchange assumed the full
     * command_timeout_ms and timed out early. Here the handshake's "+PONG" trickles in for
     * about 180 ms of a 400 ms timeout, leaving about 250 ms; then a command that needs
     * 330 ms must still get its full 400. */
    const char *args[] = {"--hz", "500", NULL}; /* BLPOP timeouts to within 2 ms */
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, args), 0);
    tcf_proxy *px = tcf_proxy_start(s.port);
    ck_assert_ptr_nonnull(px);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tcf_proxy_port(px));
    tc_remote *r = open_remote(url, 1, 400, 400);
    tcf_proxy_set_mode(px, TCF_PROXY_TRICKLE, 30);
    tc_conn *ctx = NULL;
    int64_t t0 = tc__now_ns();
    tc_status st = tc__remote_connect(r, 400, &ctx);
    int64_t handshake_ms = ms_since(t0);
    tcf_proxy_set_mode(px, TCF_PROXY_PASS, 0);
    redisReply *x = NULL;
    const char *blpop[] = {"BLPOP", "nothing-here", "0.33"};
    if (st == TC_OK)
        (void)tc__conn_command(ctx, 3, blpop, NULL, &x);
    bool answered = x && x->type == REDIS_REPLY_NIL;
    if (x)
        freeReplyObject(x);
    tc__conn_free(ctx);
    tc__remote_close(r);
    tcf_proxy_stop(px);
    tcf_redis_stop(&s);
    ck_assert_int_eq(st, TC_OK);
    ck_assert_int_ge(handshake_ms, 120);
    ck_assert_msg(answered, "the command timed out early: the timeouts were not restored");
}
END_TEST

/* ------------------------------------------------------------------ the breaker, extended */

START_TEST(test_remote_breaker_command_timeouts)
{
    /* A server that accepts connections but answers no command (here a proxy that
     * swallows everything): one timeout opens the breaker, and until its window has
     * passed nothing is sent and no connection is made. Before, every call paid a full
     * timeout and a new connection. */
    tcf_proxy *px = tcf_proxy_start(tct_redis.port);
    ck_assert_ptr_nonnull(px);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tcf_proxy_port(px));
    tc_remote *r = open_remote(url, 2, 200, 200);
    ck_assert_int_eq(set_str(r, "bk", "v", 60000), TC_OK);
    int accepted = tcf_proxy_accepted(px);
    tcf_proxy_set_mode(px, TCF_PROXY_MUTE, 0);
    tc_ref *v = NULL;
    int64_t t0 = tc__now_ns();
    tc_status first = tc__remote_get(r, "bk", 2, &v, NULL);
    int64_t first_ms = ms_since(t0);
    int fast_fail = 0;
    int64_t slowest = 0;
    for (int i = 0; i < 30; i++) {
        int64_t t = tc__now_ns();
        if (set_str(r, "bk", "w", 60000) == TC_ERR_IO)
            fast_fail++;
        slowest = ms_since(t) > slowest ? ms_since(t) : slowest;
    }
    int accepted_while_open = tcf_proxy_accepted(px) - accepted;
    /* The window passes: one probe, still unanswered, doubles it. */
    tct_sleep_ms(120);
    tc_status probe = tc__remote_get(r, "bk", 2, &v, NULL);
    bool doubled = logged("fail fast for 200 ms");
    /* Healed: the next probe gets an answer and closes the breaker. */
    tcf_proxy_set_mode(px, TCF_PROXY_PASS, 0);
    tct_sleep_ms(220);
    tc_status healed = tc__remote_get(r, "bk", 2, &v, NULL);
    tc__ref_drop(v);
    v = NULL;
    tc_status after = tc__remote_get(r, "bk", 2, &v, NULL);
    tc__ref_drop(v);
    tc__remote_close(r);
    tcf_proxy_stop(px);
    ck_assert_int_eq(first, TC_ERR_TIMEOUT);
    ck_assert_int_lt(first_ms, 200 + 150);
    ck_assert(logged("Redis did not answer in time: operations fail fast for 100 ms"));
    ck_assert_int_eq(fast_fail, 30);
    ck_assert_int_lt(slowest, 20);
    ck_assert_int_eq(accepted_while_open, 0);
    ck_assert_int_eq(probe, TC_ERR_TIMEOUT);
    ck_assert(doubled);
    ck_assert_int_eq(healed, TC_OK);
    ck_assert_int_eq(after, TC_OK);
    ck_assert(logged("Redis answers again"));
}
END_TEST

START_TEST(test_remote_lost_connection_keeps_breaker_closed)
{
    /* Connections the server closes (a restart, CLIENT KILL) fail their next operation
     * once; that is no reason to stop talking to a server that is there. */
    tcf_proxy *px = tcf_proxy_start(tct_redis.port);
    ck_assert_ptr_nonnull(px);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", tcf_proxy_port(px));
    tc_remote *r = open_remote(url, 1, 200, 200);
    ck_assert_int_eq(set_str(r, "lk", "v", 60000), TC_OK);
    tcf_proxy_drop_all(px);
    tc_ref *v = NULL;
    tc_status lost = tc__remote_get(r, "lk", 2, &v, NULL);
    int64_t t0 = tc__now_ns();
    tc_status next = tc__remote_get(r, "lk", 2, &v, NULL);
    int64_t took = ms_since(t0);
    tc__ref_drop(v);
    tc__remote_close(r);
    tcf_proxy_stop(px);
    ck_assert_int_eq(lost, TC_ERR_IO);
    ck_assert_int_eq(next, TC_OK);
    ck_assert_int_lt(took, 100);
    ck_assert(!logged("fail fast"));
}
END_TEST

/* ------------------------------------------------------------------ through tc_open */

START_TEST(test_remote_open_auth_password)
{
    const char *args[] = {"--requirepass", "s3cr:t", NULL};
    tcf_redis s;
    ck_assert_int_eq(tcf_redis_start(&s, args), 0);
    char none[128], wrong[128], right[128];
    snprintf(none, sizeof none, "redis://127.0.0.1:%d", s.port);
    snprintf(wrong, sizeof wrong, "redis://:nope@127.0.0.1:%d", s.port);
    snprintf(right, sizeof right, "redis://:s3cr%%3At@127.0.0.1:%d/2", s.port);
    tc_options o;
    tc_options_init(&o);
    o.key_prefix = "auth";
    o.log_fn = test_log;
    tc_cache *c = (tc_cache *)1;
    o.redis_url = none;
    tc_status st_none = tc_open(&o, &c);
    tc_cache *c_none = c;
    o.redis_url = wrong;
    tc_status st_wrong = tc_open(&o, &c);
    tc_cache *c_wrong = c;
    o.redis_url = right;
    tc_status st_right = tc_open(&o, &c);
    tc_status st_set = TC_ERR_IO, st_get = TC_ERR_IO, st_sub = TC_ERR_IO;
    if (st_right == TC_OK) {
        st_set = tc_set(c, "k", "v", 1, TC_TTL_DEFAULT);
        tc_value v;
        st_get = tc_get(c, "k", &v);
        tc_value_release(&v);
        /* The subscriber authenticated too: a second instance's write reaches c. */
        tc_cache *c2 = NULL;
        if (tc_open(&o, &c2) == TC_OK) {
            st_sub = tc_set(c2, "k", "w", 1, TC_TTL_DEFAULT);
            int64_t t0 = tc__now_ns();
            while (st_sub == TC_OK && ms_since(t0) < 2000) {
                st_sub = tc_get(c, "k", &v);
                bool seen = st_sub == TC_OK && v.len == 1 && memcmp(v.data, "w", 1) == 0;
                tc_value_release(&v);
                if (seen)
                    break;
                tct_sleep_ms(5);
            }
            tc_close(c2);
        }
        tc_close(c);
    }
    tcf_redis_stop(&s);
    ck_assert_int_eq(st_none, TC_ERR_AUTH);
    ck_assert_ptr_null(c_none);
    ck_assert_int_eq(st_wrong, TC_ERR_AUTH);
    ck_assert_ptr_null(c_wrong);
    ck_assert_int_eq(st_right, TC_OK);
    ck_assert_int_eq(st_set, TC_OK);
    ck_assert_int_eq(st_get, TC_OK);
    ck_assert_int_eq(st_sub, TC_OK);
    ck_assert(!logged("s3cr")); /* the password is never logged */
}
END_TEST

START_TEST(test_remote_open_auth_acl)
{
    char pfx[64], user[80], url[256];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(user, sizeof user, "bob%s", pfx);
    const char *acl[] = {"ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", NULL};
    char *s = tcf_redis_cmd(&tct_redis, acl);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "OK");
    free(s);
    tc_options o;
    tc_options_init(&o);
    o.key_prefix = pfx;
    o.log_fn = test_log;
    tc_cache *c = NULL;
    snprintf(url, sizeof url, "redis://%s:pw@127.0.0.1:%d", user, tct_redis.port);
    o.redis_url = url;
    ck_assert_int_eq(tc_open(&o, &c), TC_OK);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tc_close(c);
    snprintf(url, sizeof url, "redis://%s:bad@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_AUTH);
    ck_assert_ptr_null(c);
    snprintf(url, sizeof url, "redis://%s@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_AUTH);
    /* A user switched off is refused as well. */
    const char *off[] = {"ACL", "SETUSER", user, "off", NULL};
    free(tcf_redis_cmd(&tct_redis, off));
    snprintf(url, sizeof url, "redis://%s:pw@127.0.0.1:%d", user, tct_redis.port);
    ck_assert_int_eq(tc_open(&o, &c), TC_ERR_AUTH);
    ck_assert(!logged(":pw@"));
}
END_TEST

/* The ACL rule of docs/security.md, from the document itself, with its placeholders
 * (user tiercache, password CHANGE-ME, prefix myapp) replaced. argv points into store. */
static int acl_rule_from_doc(const char *user, const char *pw, const char *prefix,
                             const char **argv, int max, char *store, size_t cap)
{
    FILE *f = fopen(TC_SRCDIR "/docs/security.md", "r");
    ck_assert_msg(f != NULL, "cannot read %s/docs/security.md", TC_SRCDIR);
    char line[2048];
    bool marker = false, in_block = false;
    size_t used = 0;
    int argc = 0;
    while (fgets(line, sizeof line, f)) {
        if (!marker) {
            marker = strstr(line, "<!-- acl-rule") != NULL;
            continue;
        }
        if (strncmp(line, "```", 3) == 0) {
            if (in_block)
                break;
            in_block = true;
            continue;
        }
        if (!in_block)
            continue;
        for (char *tok = strtok(line, " \t\r\n\\"); tok; tok = strtok(NULL, " \t\r\n\\")) {
            char word[512] = "";
            if (strcmp(tok, "tiercache") == 0)
                snprintf(word, sizeof word, "%s", user);
            else if (strcmp(tok, ">CHANGE-ME") == 0)
                snprintf(word, sizeof word, ">%s", pw);
            else {
                const char *m = strstr(tok, "myapp");
                if (m)
                    snprintf(word, sizeof word, "%.*s%s%s", (int)(m - tok), tok, prefix, m + 5);
                else
                    snprintf(word, sizeof word, "%s", tok);
            }
            size_t n = strlen(word) + 1;
            ck_assert(used + n <= cap && argc + 1 < max);
            memcpy(store + used, word, n);
            argv[argc++] = store + used;
            used += n;
        }
    }
    fclose(f);
    argv[argc] = NULL;
    ck_assert_msg(argc > 10 && strcmp(argv[0], "ACL") == 0, "no ACL rule in security.md");
    return argc;
}

/* A value read through c must be want (NULL: a miss). */
static void expect_value(tc_cache *c, const char *key, const char *want)
{
    tc_value v;
    tc_status st = tc_get(c, key, &v);
    ck_assert_msg(st == (want ? TC_OK : TC_MISS), "get %s: %s", key, tc_strerror(st));
    if (want) {
        ck_assert_uint_eq(v.len, strlen(want));
        ck_assert_int_eq(memcmp(v.data, want, v.len), 0);
    }
    tc_value_release(&v);
}

static tc_status acl_loader(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    ++*(int *)arg;
    return tc_buf_append(out, "loaded", 6);
}

/* Waits until c reads want for key (another instance wrote it). */
static bool converges(tc_cache *c, const char *key, const char *want)
{
    int64_t t0 = tc__now_ns();
    while (ms_since(t0) < 3000) {
        tc_value v;
        bool ok = tc_get(c, key, &v) == TC_OK && v.len == strlen(want) &&
                  memcmp(v.data, want, v.len) == 0;
        tc_value_release(&v);
        if (ok)
            return true;
        tct_sleep_ms(5);
    }
    return false;
}

/* The operation set of check_cache and friends, through the public API. */
static void run_operation_set(tc_cache *a, tc_cache *b)
{
    int64_t n = 0;
    /* basic operations */
    ck_assert_int_eq(tc_set(a, "k", "v1", 2, TC_TTL_DEFAULT), TC_OK);
    expect_value(a, "k", "v1");
    expect_value(b, "k", "v1");
    expect_value(b, "k", "v1"); /* now a local copy in b */
    ck_assert_int_eq(tc_set(a, "k", "v2", 2, TC_TTL_FOREVER), TC_OK);
    ck_assert(converges(b, "k", "v2")); /* b's subscriber got a's invalidation */
    ck_assert_int_eq(tc_set(a, "empty", NULL, 0, 60000), TC_OK);
    expect_value(a, "empty", "");
    ck_assert_int_eq(tc_add(a, "k", "x", 1, TC_TTL_DEFAULT), TC_EXISTS);
    ck_assert_int_eq(tc_add(a, "new", "n", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_add(a, "zero", "z", 1, 0), TC_OK);
    ck_assert_int_eq(tc_touch(a, "new", 60000), TC_OK);
    ck_assert_int_eq(tc_touch(a, "new", TC_TTL_FOREVER), TC_OK);
    ck_assert_int_eq(tc_touch(a, "absent", 60000), TC_MISS);
    ck_assert_int_eq(tc_delete(a, "new"), TC_OK);
    ck_assert_int_eq(tc_delete(a, "new"), TC_MISS);
    expect_value(a, "new", NULL);
    ck_assert_int_eq(tc_set(a, "ctr", "41", 2, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_incr(a, "ctr", 1, &n), TC_OK);
    ck_assert_int_eq(n, 42);
    ck_assert_int_eq(tc_incr(a, "absent", 1, &n), TC_MISS);
    ck_assert_int_eq(tc_incr(a, "k", 1, &n), TC_ERR_NOT_INT);
    ck_assert(converges(b, "ctr", "42"));
    /* batches */
    const char *keys[] = {"m1", "m2", "m3"};
    const void *data[] = {"1", "2", "3"};
    const size_t lens[] = {1, 1, 1};
    ck_assert_int_eq(tc_set_many(a, keys, data, lens, 3, TC_TTL_DEFAULT), TC_OK);
    tc_value vals[3];
    tc_status st[3];
    ck_assert_int_eq(tc_get_many(b, keys, 3, vals, st), TC_OK);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(st[i], TC_OK);
        tc_value_release(&vals[i]);
    }
    ck_assert_int_eq(tc_delete_many(a, keys, 3), TC_OK);
    ck_assert_int_eq(tc_get_many(a, keys, 3, vals, st), TC_OK);
    ck_assert_int_eq(st[0], TC_MISS);
    /* loading, locks, namespaces and tags */
    int loads = 0;
    tc_value v;
    ck_assert_int_eq(tc_get_or_set(a, "lazy", acl_loader, &loads, 60000, &v), TC_OK);
    tc_value_release(&v);
    ck_assert_int_eq(tc_get_or_set(b, "lazy", acl_loader, &loads, 60000, &v), TC_OK);
    tc_value_release(&v);
    ck_assert_int_eq(loads, 1);
    tc_lock *l = NULL;
    ck_assert_int_eq(tc_lock_acquire(a, "job", 5000, 0, &l), TC_OK);
    tc_lock *l2 = NULL;
    ck_assert_int_eq(tc_lock_acquire(b, "job", 5000, 0, &l2), TC_ERR_TIMEOUT);
    ck_assert_int_eq(tc_lock_release(l), TC_OK);
    char nk[128], nk2[128];
    ck_assert_int_eq(tc_ns_key(a, "users", "7", nk, sizeof nk), TC_OK);
    ck_assert_int_eq(tc_ns_bump(a, "users", &n), TC_OK);
    ck_assert_int_eq(tc_ns_key(a, "users", "7", nk2, sizeof nk2), TC_OK);
    ck_assert_str_ne(nk, nk2);
    const char *tags[] = {"t1", "t2"};
    ck_assert_int_eq(tc_set_tagged(a, "tagged", "tv", 2, TC_TTL_DEFAULT, tags, 2), TC_OK);
    expect_value(b, "tagged", "tv");
    ck_assert_int_eq(tc_tag_invalidate(a, "t2"), TC_OK);
    expect_value(a, "tagged", NULL);
    ck_assert(converges(b, "k", "v2"));
    /* clear and metrics */
    ck_assert_int_eq(tc_clear(a), TC_OK);
    expect_value(a, "k", NULL);
    int64_t t0 = tc__now_ns();
    tc_status bs = TC_OK;
    while (ms_since(t0) < 3000 && (bs = tc_get(b, "k", &v)) == TC_OK) {
        tc_value_release(&v);
        tct_sleep_ms(5);
    }
    ck_assert_int_eq(bs, TC_MISS);
    char *text = NULL;
    ck_assert_int_eq(tc_stats_prometheus(a, &text), TC_OK);
    free(text);
    tc_stats sa, sb;
    tc_stats_get(a, &sa);
    tc_stats_get(b, &sb);
    ck_assert_uint_eq(sa.remote_errors, 0);
    ck_assert_uint_eq(sb.remote_errors, 0);
}

/* One command as user (AUTH on a raw connection); the reply's error text, "" if none. */
static void expect_noperm(int port, const char *user, const char *pw, const char *const *argv)
{
    redisContext *c = raw_connect(port);
    redisReply *x = redisCommand(c, "AUTH %s %s", user, pw);
    ck_assert_ptr_nonnull(x);
    ck_assert_int_eq(x->type, REDIS_REPLY_STATUS);
    freeReplyObject(x);
    int argc = 0;
    while (argv[argc])
        argc++;
    x = redisCommandArgv(c, argc, (const char **)argv, NULL);
    ck_assert_ptr_nonnull(x);
    ck_assert_msg(x->type == REDIS_REPLY_ERROR && strstr(x->str, "NOPERM"), "%s %s was allowed",
                  argv[0], argc > 1 ? argv[1] : "");
    freeReplyObject(x);
    redisFree(c);
}

START_TEST(test_remote_acl_least_privilege)
{
    char pfx[64], user[80], other[80];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(user, sizeof user, "tc%s", pfx);
    snprintf(other, sizeof other, "%sx", pfx); /* another tenant's prefix */
    const char *argv[64];
    char store[4096];
    acl_rule_from_doc(user, "pw0", pfx, argv, 64, store, sizeof store);
    char *s = tcf_redis_cmd(&tct_redis, argv);
    ck_assert_msg(s && strcmp(s, "OK") == 0, "ACL SETUSER from docs/security.md: %s",
                  s ? s : "(error)");
    free(s);

    char url[256];
    snprintf(url, sizeof url, "redis://%s:pw0@127.0.0.1:%d", user, tct_redis.port);
    tc_options o;
    tc_options_init(&o);
    o.redis_url = url;
    o.key_prefix = pfx;
    o.log_fn = test_log;
    tc_cache *a = NULL, *b = NULL, *t = NULL;
    ck_assert_int_eq(tc_open(&o, &a), TC_OK);
    ck_assert_int_eq(tc_open(&o, &b), TC_OK);
    run_operation_set(a, b);
    tc_close(b);
    /* Tracking mode works with the rule too: Redis reports a's writes to t. */
    o.coherence = TC_COHERENCE_TRACKING;
    ck_assert_int_eq(tc_open(&o, &t), TC_OK);
    ck_assert_int_eq(tc_set(a, "tr", "1", 1, TC_TTL_DEFAULT), TC_OK);
    expect_value(t, "tr", "1");
    expect_value(t, "tr", "1");
    ck_assert_int_eq(tc_set(a, "tr", "2", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert(converges(t, "tr", "2"));
    tc_close(t);
    tc_close(a);
    ck_assert(!logged("NOPERM"));

    /* What the user may not do. */
    char okey[128], ochan[128];
    snprintf(okey, sizeof okey, "%s:1:k", other);
    snprintf(ochan, sizeof ochan, "%s:__tc:inval", other);
    const char *get_other[] = {"GET", okey, NULL};
    const char *set_other[] = {"SET", okey, "x", NULL};
    const char *pub_other[] = {"PUBLISH", ochan, "TC1 F 0123456789abcdef", NULL};
    const char *flushall[] = {"FLUSHALL", NULL};
    const char *config[] = {"CONFIG", "GET", "requirepass", NULL};
    const char *keys[] = {"KEYS", "*", NULL};
    const char *kill[] = {"CLIENT", "KILL", "TYPE", "normal", NULL};
    const char *const *denied[] = {get_other, set_other, pub_other, flushall, config, keys, kill};
    for (size_t i = 0; i < sizeof denied / sizeof denied[0]; i++)
        expect_noperm(tct_redis.port, user, "pw0", denied[i]);
    const char *del[] = {"ACL", "DELUSER", user, NULL};
    free(tcf_redis_cmd(&tct_redis, del));
}
END_TEST

/* ------------------------------------------------------------------ concurrency */

enum { THREADS = 8, OPS = 2000 };

typedef struct worker {
    tc_remote *r;
    const char *prefix;
    int id;
    int failures;
    char first_error[128];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char k[128], ctr[128], val[32];
    snprintf(ctr, sizeof ctr, "%s:ctr", w->prefix);
    for (int i = 0; i < OPS; i++) {
        tc_status st = TC_OK;
        /* The delete (i % 4 == 3) removes the key the step before it wrote. */
        int slot = (i % 4 == 3 ? i - 1 : i) % 16;
        snprintf(k, sizeof k, "%s:w%d:%d", w->prefix, w->id, slot);
        switch (i % 4) {
        case 0: {
            int64_t res;
            st = tc__remote_incr(w->r, ctr, strlen(ctr), 1, MAGIC, 4, NULL, &res);
            break;
        }
        case 1:
        case 2: {
            int n = snprintf(val, sizeof val, "%d:%d", w->id, i);
            st = set1(w->r, k, val, (size_t)n, 60000, NULL);
            if (st != TC_OK)
                break;
            tc_ref *v = NULL;
            st = tc__remote_get(w->r, k, strlen(k), &v, NULL);
            if (st == TC_OK && (v->len != (size_t)n || memcmp(tc__ref_data(v), val, v->len) != 0))
                st = TC_ERR_PROTO; /* another thread's reply: a shared connection */
            tc__ref_drop(v);
            break;
        }
        default: {
            size_t deleted;
            const char *kp = k;
            size_t kl = strlen(k);
            st = tc__remote_delete(w->r, 1, &kp, &kl, NULL, &deleted);
            if (st == TC_OK && deleted != 1)
                st = TC_ERR_PROTO;
            break;
        }
        }
        if (st != TC_OK && w->failures++ == 0)
            snprintf(w->first_error, sizeof w->first_error, "op %d: %s", i, tc_strerror(st));
    }
    return NULL;
}

START_TEST(test_remote_pool_concurrency)
{
    tc_remote *r = open_remote(tct_redis.url, 2, 500, 2000);
    char pfx[64], ctr[96];
    tcf_unique_prefix(pfx, sizeof pfx);
    snprintf(ctr, sizeof ctr, "%s:ctr", pfx);
    ck_assert_int_eq(set_str(r, ctr, "0", 60000), TC_OK);
    pthread_t t[THREADS];
    worker w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.r = r, .prefix = pfx, .id = i};
        ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        ck_assert_msg(w[i].failures == 0, "thread %d: %d failures, first %s", i, w[i].failures,
                      w[i].first_error);
    char *s = raw("GET", ctr, NULL);
    ck_assert_int_eq(atoi(s), THREADS * OPS / 4);
    free(s);
    tc_remote_stats st;
    tc__remote_stats(r, &st);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert_uint_eq(st.reconnects, 0);
    ck_assert_uint_ge(st.round_trips, (uint64_t)THREADS * OPS);
    tc__remote_close(r);
}
END_TEST

/* ------------------------------------------------------------------ suite */

/* The server resets the connection while a large write is in flight: the write fails with
 * EPIPE, and SIGPIPE (whose default action would kill this process) is never raised. */
START_TEST(test_remote_reset_mid_write_raises_no_sigpipe)
{
    signal(SIGPIPE, SIG_DFL);
    tc_remote *r = open_remote(tct_redis.url, 1, 500, 2000);
    char kb[128];
    const char *k = tkey(kb, sizeof kb, "pipe");
    ck_assert_int_eq(set1(r, k, "v", 1, 60000, NULL), TC_OK); /* a pooled connection */
    const char *kill_argv[] = {"CLIENT", "KILL", "TYPE", "normal", NULL};
    for (int round = 0; round < 3; round++) {
        free(tcf_redis_cmd(&tct_redis, kill_argv)); /* ours among them */
        tct_sleep_ms(50);
        size_t big = 32u << 20;
        char *v = malloc(big);
        ck_assert_ptr_nonnull(v);
        memset(v, 'x', big);
        tc_status st = set1(r, k, v, big, 60000, NULL);
        free(v);
        ck_assert_msg(st == TC_ERR_IO || st == TC_ERR_TIMEOUT || st == TC_OK, "set: %s",
                      tc_strerror(st));
        ck_assert_int_eq(set1(r, k, "v", 1, 60000, NULL), TC_OK); /* and it recovers */
    }
    tc__remote_close(r);
}
END_TEST

static Suite *remote_suite(void)
{
    Suite *s = suite_create("remote");
    struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"url_parse", test_remote_url_parse, 0},
        {"url_tls_schemes", test_remote_url_tls_schemes, 0},
        {"open", test_remote_open, 0},
        {"db_select", test_remote_db_select, 0},
        {"unix_socket", test_remote_unix_socket, 0},
        {"get_set", test_remote_get_set, 0},
        {"get_many", test_remote_get_many, 0},
        {"set_many", test_remote_set_many, 0},
        {"add", test_remote_add, 0},
        {"delete", test_remote_delete, 0},
        {"touch", test_remote_touch, 0},
        {"incr", test_remote_incr, 0},
        {"clear", test_remote_clear, 0},
        {"publish", test_remote_publish, 0},
        {"command", test_remote_command, 0},
        {"noscript", test_remote_noscript, 0},
        {"error_replies", test_remote_error_replies, 0},
        {"oom", test_remote_oom, 0},
        {"auth_password", test_remote_auth_password, 0},
        {"auth_acl", test_remote_auth_acl, 0},
        {"refused", test_remote_refused, 0},
        {"silent_server", test_remote_silent_server, 0},
        {"stall_recovery", test_remote_stall_recovery, 10},
        {"breaker", test_remote_breaker, 10},
        {"shutdown_save_restart", test_remote_shutdown_save_restart, 30},
        {"deadline_trickle", test_remote_deadline_trickle, 10},
        {"deadline_slot_wait", test_remote_deadline_covers_slot_wait, 10},
        {"slow_handshake_timeouts", test_remote_slow_handshake_keeps_full_timeout, 10},
        {"breaker_command_timeouts", test_remote_breaker_command_timeouts, 10},
        {"lost_connection", test_remote_lost_connection_keeps_breaker_closed, 10},
        {"open_auth_password", test_remote_open_auth_password, 10},
        {"open_auth_acl", test_remote_open_auth_acl, 10},
        {"acl_least_privilege", test_remote_acl_least_privilege, 20},
        {"pool_concurrency", test_remote_pool_concurrency, 30},
        {"no_sigpipe", test_remote_reset_mid_write_raises_no_sigpipe, 30},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_checked_fixture(tc, log_reset, NULL);
        if (cases[i].timeout)
            tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(remote_suite(), true);
}
