/*
 * Fault injection through the public API: what every call does when Redis is refused,
 * stopped, killed and restarted, put to sleep, paused for writes, cut off connection by
 * connection, silent, trickling, stuck in a Lua script, out of memory, flushed, or when
 * it drops the subscriber for its output buffer.
 *
 * Each scenario starts its own redis-server (with --enable-debug-command local) through the
 * fixture, stops it by PID, and checks:
 *   - no hang: every call is timed and must return within its bound (the figures of
 *     docs/operations.md, "Failure behaviour") plus a slack for slow builds
 *     ($TC_FAULT_SLACK_MS, default 150);
 *   - the documented answers: tc_get an error, or a local hit only within the
 *     staleness bound; tc_get_or_set always the loader's value; writes an error;
 *   - recovery without reopening the cache, and no stale read after it: a value written by
 *     another instance after recovery is seen, and an older one never again;
 *   - no crash and no leak (the ASan and valgrind runs of this program check those).
 * At the end, main prints the table of scenarios survived: calls made, the slowest call
 * against its bound, the result.
 */
#include "config.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "testing.h"
#include "testutil.h"

/* The options every scenario's caches use, and the bounds that follow from them. */
#define CMD_MS 200    /* command_timeout_ms */
#define CONN_MS 200   /* connect_timeout_ms */
#define HB_MS 50      /* heartbeat_ms */
#define FLIGHT_MS 800 /* flight_wait_ms */
#define LOCK_MS                                                                                    \
    400 /* lock_ttl_ms: below flight_wait_ms, so a lock whose release was                          \
           lost in a fault is taken over within one wait */
/* One operation (one round trip): command_timeout_ms, plus connect_timeout_ms +
 * command_timeout_ms when it has to open a connection. */
#define B_OP (CMD_MS + CONN_MS + CMD_MS)
/* A call made of several operations (namespaces, tags): the first that times out opens
 * the breaker and the others fail at once. */
#define B_MULTI (2 * B_OP)
/* tc_get_or_set: may also wait flight_wait_ms for a load another caller holds the lock
 * of (a lock left behind by a release that a fault swallowed). */
#define B_GOS (FLIGHT_MS + 2 * B_OP)
/* tc_open: the pool's connection, the script preload, the subscriber's connection and
 * subscription. tc_close: the subscriber's current connect. */
#define B_OPEN (2 * (CONN_MS + 2 * CMD_MS))
#define B_CLOSE (CONN_MS + 2 * CMD_MS)
/* A local copy may be served for this long after the link silently died. */
#define STALE_MS (2 * HB_MS)

static int slack_ms = 150;
static const char *rows_path; /* where each scenario appends its row of the table */

/* ------------------------------------------------------------------ timing and the table */

typedef struct scenario {
    const char *name;
    int calls;
    int64_t max_ns;   /* the slowest call */
    int64_t worst_ns; /* the call closest to its bound: its duration, bound and name */
    int worst_bound_ms;
    double worst_ratio;
    int64_t recovery_ms; /* from the end of the fault to the first successful write; -1 */
    char worst[96];
} scenario;

static scenario sc; /* the running scenario: one per test, each test its own process */

static void scenario_begin(const char *name)
{
    memset(&sc, 0, sizeof sc);
    sc.name = name;
    sc.recovery_ms = -1;
}

static void write_row(const char *result)
{
    if (!rows_path)
        return;
    char line[256];
    char rec[24] = "-";
    if (sc.recovery_ms >= 0)
        snprintf(rec, sizeof rec, "%lld", (long long)sc.recovery_ms);
    int n = snprintf(line, sizeof line, "%s|%d|%.1f|%.1f / %d|%s|%s|%s\n", sc.name, sc.calls,
                     (double)sc.max_ns / 1e6, (double)sc.worst_ns / 1e6, sc.worst_bound_ms, rec,
                     result, sc.worst);
    int fd = open(rows_path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (fd >= 0) {
        ssize_t w = write(fd, line, (size_t)n);
        (void)w;
        close(fd);
    }
}

static void scenario_end(void)
{
    write_row("survived");
}

static int64_t ms_since(int64_t t0)
{
    return (tc__now_ns() - t0) / 1000000;
}

/* Records one call: its duration must be within bound_ms + slack. */
static void note_call(const char *what, int bound_ms, int64_t t0)
{
    int64_t d = tc__now_ns() - t0;
    sc.calls++;
    double ratio = (double)d / ((double)bound_ms * 1e6);
    if (d > sc.max_ns)
        sc.max_ns = d;
    if (ratio > sc.worst_ratio) {
        sc.worst_ratio = ratio;
        sc.worst_ns = d;
        sc.worst_bound_ms = bound_ms;
        snprintf(sc.worst, sizeof sc.worst, "%.60s", what);
    }
    if (d > ((int64_t)bound_ms + slack_ms) * 1000000) {
        write_row("HUNG");
        ck_abort_msg("%s: %s took %.1f ms, bound %d ms", sc.name, what, (double)d / 1e6, bound_ms);
    }
}

/* st = expr, timed against bound. */
#define T(st, bound, expr)                                                                         \
    do {                                                                                           \
        int64_t t0_ = tc__now_ns();                                                                \
        (st) = (expr);                                                                             \
        note_call(#expr, (bound), t0_);                                                            \
    } while (0)

/* ------------------------------------------------------------------ servers and caches */

static const char *const debug_args[] = {"--enable-debug-command", "local", NULL};

static void start_server(tcf_redis *s, const char *const *extra)
{
    const char *args[16];
    int n = 0;
    for (int i = 0; debug_args[i]; i++)
        args[n++] = debug_args[i];
    for (int i = 0; extra && extra[i] && n < 15; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    ck_assert_int_eq(tcf_redis_start(s, args), 0);
}

static char *cmd(const tcf_redis *s, const char *a0, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {a0, a1, a2, a3, NULL};
    return tcf_redis_cmd(s, argv);
}

static void cmd_ok(const tcf_redis *s, const char *a0, const char *a1, const char *a2,
                   const char *a3)
{
    char *r = cmd(s, a0, a1, a2, a3);
    ck_assert_msg(r != NULL, "%s %s failed", a0, a1 ? a1 : "");
    free(r);
}

static char prefix[64];

static void options_for(tc_options *o, const char *url, tc_coherence mode)
{
    tc_options_init(o);
    o->redis_url = url;
    o->key_prefix = prefix;
    o->connect_timeout_ms = CONN_MS;
    o->command_timeout_ms = CMD_MS;
    o->heartbeat_ms = HB_MS;
    o->pool_size = 4;
    o->flight_wait_ms = FLIGHT_MS;
    o->lock_ttl_ms = LOCK_MS;
    o->coherence = mode;
}

static tc_cache *open_url(const char *url, tc_coherence mode)
{
    tc_options o;
    options_for(&o, url, mode);
    tc_cache *c = NULL;
    tc_status st;
    T(st, B_OPEN, tc_open(&o, &c));
    ck_assert_msg(st == TC_OK, "tc_open: %s", tc_strerror(st));
    return c;
}

static void close_timed(tc_cache *c)
{
    int64_t t0 = tc__now_ns();
    tc_close(c);
    note_call("tc_close", B_CLOSE, t0);
}

/* ------------------------------------------------------------------ calls under fault */

static atomic_int loads;

static tc_status loader(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    atomic_fetch_add(&loads, 1);
    return tc_buf_append(out, "loaded", 6);
}

/* What a round of calls saw. */
typedef struct tally {
    int ok, errors, local_hits;
    int64_t last_local_hit_ns; /* of the watched key */
} tally;

static bool is_fault(tc_status st)
{
    return st == TC_ERR_IO || st == TC_ERR_TIMEOUT || st == TC_ERR_PROTO;
}

static void count(tally *t, tc_status st, const char *what)
{
    if (st >= 0)
        t->ok++;
    else if (is_fault(st))
        t->errors++;
    else
        ck_abort_msg("%s: %s: unexpected %s", sc.name, what, tc_strerror(st));
}

/* One of each public call that talks to Redis, each timed against its bound. watched is a
 * key cached locally before the fault with value `old`: a hit on it is allowed only while
 * the local tier may be trusted (recorded for the caller to check). */
static void round_of_calls(tc_cache *c, int i, const char *watched, tally *t)
{
    tc_status st;
    tc_value v;
    char k[32], k2[32];
    snprintf(k, sizeof k, "r%d", i % 5);
    snprintf(k2, sizeof k2, "r%d", (i + 1) % 5);

    T(st, B_OP, tc_get(c, watched, &v));
    if (st == TC_OK) {
        t->local_hits++;
        t->last_local_hit_ns = tc__now_ns();
    }
    tc_value_release(&v);
    count(t, st, "get");
    T(st, B_OP, tc_set(c, k, "x", 1, 60000));
    count(t, st, "set");
    T(st, B_OP, tc_get(c, k, &v));
    tc_value_release(&v);
    count(t, st, "get");
    T(st, B_OP, tc_add(c, k2, "y", 1, 60000));
    count(t, st, "add");
    T(st, B_OP, tc_touch(c, k, 60000));
    count(t, st, "touch");
    int64_t n;
    T(st, B_OP, tc_incr(c, "ctr", 1, &n));
    count(t, st, "incr");
    T(st, B_OP, tc_delete(c, k2));
    count(t, st, "delete");
    const char *keys[] = {k, k2};
    const void *data[] = {"1", "2"};
    const size_t lens[] = {1, 1};
    tc_value vals[2];
    tc_status sts[2];
    T(st, B_OP, tc_get_many(c, keys, 2, vals, sts));
    if (st == TC_OK) {
        tc_value_release(&vals[0]);
        tc_value_release(&vals[1]);
    }
    count(t, st, "get_many");
    T(st, B_OP, tc_set_many(c, keys, data, lens, 2, 60000));
    count(t, st, "set_many");
    T(st, B_OP, tc_delete_many(c, keys, 2));
    count(t, st, "delete_many");
    /* The loader answers whatever Redis does. */
    char gk[32];
    snprintf(gk, sizeof gk, "gos%d", i);
    T(st, B_GOS, tc_get_or_set(c, gk, loader, NULL, 60000, &v));
    ck_assert_msg(st == TC_OK, "%s: get_or_set: %s", sc.name, tc_strerror(st));
    ck_assert_uint_eq(v.len, 6);
    tc_value_release(&v);
    tc_lock *l = NULL;
    T(st, B_OP, tc_lock_acquire(c, "lk", 1000, 0, &l));
    if (st == TC_OK) {
        T(st, B_OP, tc_lock_release(l));
        count(t, st == TC_MISS ? TC_OK : st, "lock_release");
    } else if (st != TC_ERR_TIMEOUT) { /* TIMEOUT: held (a lost release) or Redis */
        count(t, st, "lock_acquire");
    }
    char nk[96];
    T(st, B_MULTI, tc_ns_key(c, "ns", "x", nk, sizeof nk));
    count(t, st, "ns_key");
    const char *tags[] = {"tg"};
    T(st, B_MULTI, tc_set_tagged(c, "tagged", "t", 1, 60000, tags, 1));
    count(t, st, "set_tagged");
}

/* Rounds of calls for ms milliseconds. */
static void rounds_for(tc_cache *c, int ms, const char *watched, tally *t)
{
    int64_t t0 = tc__now_ns();
    for (int i = 0; ms_since(t0) < ms; i++)
        round_of_calls(c, i, watched, t);
}

/* Waits (calling tc_set, timed) until c can write again; returns how long it took. */
static int64_t recover(tc_cache *c, int limit_ms)
{
    int64_t t0 = tc__now_ns();
    tc_status st = TC_ERR_IO;
    while (ms_since(t0) < limit_ms) {
        T(st, B_OP, tc_set(c, "probe", "p", 1, 60000));
        if (st == TC_OK)
            break;
        tct_sleep_ms(10);
    }
    ck_assert_msg(st == TC_OK, "%s: no recovery within %d ms: %s", sc.name, limit_ms,
                  tc_strerror(st));
    sc.recovery_ms = ms_since(t0);
    return sc.recovery_ms;
}

/* A read of key by c: its value into buf ("" for a miss), or false on an error. */
static bool read_value(tc_cache *c, const char *key, char *buf, size_t cap)
{
    tc_value v;
    tc_status st;
    T(st, B_OP, tc_get(c, key, &v));
    buf[0] = '\0';
    if (st == TC_OK)
        snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.data);
    tc_value_release(&v);
    return st == TC_OK || st == TC_MISS;
}

/* No stale read after recovery: w writes key = a fresh token (retrying until Redis takes
 * it); from then on c never returns `old`, converges to the token within the invalidation
 * bound, and never goes back. strict: c may not even return old before converging (after
 * a restart, when Redis itself has forgotten old). */
static void check_fresh(tc_cache *c, tc_cache *w, const char *key, const char *old, bool strict)
{
    char token[32], got[64];
    snprintf(token, sizeof token, "after-%lld", (long long)tc__now_ns());
    tc_status st = TC_ERR_IO;
    int64_t t0 = tc__now_ns();
    while (ms_since(t0) < 3000) {
        T(st, B_OP, tc_set(w, key, token, strlen(token), TC_TTL_DEFAULT));
        if (st == TC_OK)
            break;
        tct_sleep_ms(10);
    }
    ck_assert_msg(st == TC_OK, "%s: writer never recovered: %s", sc.name, tc_strerror(st));
    bool seen = false;
    t0 = tc__now_ns();
    while (!seen && ms_since(t0) < 3000) {
        if (read_value(c, key, got, sizeof got)) {
            seen = strcmp(got, token) == 0;
            ck_assert_msg(!strict || seen || strcmp(got, old) != 0,
                          "%s: read the pre-fault value '%s' after a write of '%s'", sc.name, old,
                          token);
        }
        if (!seen)
            tct_sleep_ms(2);
    }
    ck_assert_msg(seen, "%s: never saw the value written after recovery", sc.name);
    for (int i = 0; i < 50; i++) {
        ck_assert_msg(read_value(c, key, got, sizeof got), "%s: read failed after recovery",
                      sc.name);
        ck_assert_msg(strcmp(got, token) == 0, "%s: read '%s' after seeing '%s'", sc.name, got,
                      token);
    }
}

/* Caches k = value in c's local tier (read twice: the second is a local hit). */
static void cache_locally(tc_cache *c, const char *k, const char *value)
{
    ck_assert_int_eq(tc_set(c, k, value, strlen(value), TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, k, TC_OK, value);
    tct_expect(c, k, TC_OK, value);
}

/* ------------------------------------------------------------------ scenarios */

START_TEST(test_faults_refused_at_open)
{
    scenario_begin("connection refused at open");
    tcf_unique_prefix(prefix, sizeof prefix);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tcf_free_port());
    for (int mode = 0; mode < 3; mode++) {
        tc_options o;
        options_for(&o, url, (tc_coherence)mode);
        tc_cache *c = (tc_cache *)1;
        tc_status st;
        T(st, CONN_MS, tc_open(&o, &c));
        ck_assert_int_eq(st, TC_ERR_IO);
        ck_assert_ptr_null(c);
    }
    scenario_end();
}
END_TEST

START_TEST(test_faults_silent_at_open)
{
    scenario_begin("accepts, never answers: at open");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tcf_proxy *px = tcf_proxy_start(s.port);
    ck_assert_ptr_nonnull(px);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tcf_proxy_port(px));
    tcf_proxy_set_mode(px, TCF_PROXY_MUTE, 0);
    tc_options o;
    options_for(&o, url, TC_COHERENCE_BROADCAST);
    tc_cache *c = (tc_cache *)1;
    tc_status st;
    T(st, CONN_MS + CMD_MS, tc_open(&o, &c));
    ck_assert_int_eq(st, TC_ERR_TIMEOUT);
    ck_assert_ptr_null(c);
    tcf_proxy_set_mode(px, TCF_PROXY_TRICKLE, 30); /* each byte in time, the whole never */
    T(st, CONN_MS + CMD_MS, tc_open(&o, &c));
    ck_assert_int_eq(st, TC_ERR_TIMEOUT);
    ck_assert_ptr_null(c);
    tcf_proxy_stop(px);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_sigstop)
{
    scenario_begin("SIGSTOP, then SIGCONT");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    tally t = {0};
    kill(s.pid, SIGSTOP);
    int64_t stopped = tc__now_ns();
    rounds_for(c, 900, "k", &t);
    kill(s.pid, SIGCONT);
    /* A local hit is the documented bounded-stale answer: only until the heartbeat has
     * declared the link dead. */
    if (t.local_hits)
        ck_assert_int_le((t.last_local_hit_ns - stopped) / 1000000, STALE_MS + slack_ms);
    ck_assert_int_gt(t.errors, 0);
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_breaker_public_api)
{
    /* The circuit breaker end to end: Redis stops answering; the first call pays one
     * command timeout; while the breaker is open, tc_get and writes fail at once with
     * TC_ERR_IO (the link is dead by then: no local answer) and tc_get_or_set returns the
     * loader's value at once; when Redis answers again a probe closes it. */
    scenario_begin("circuit breaker through the public API");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "v");
    kill(s.pid, SIGSTOP);
    tct_sleep_ms(STALE_MS + 50); /* the heartbeat declares the link dead */
    tc_status st, get_st[20], set_st[20], gos_st[20];
    tc_value v;
    T(st, CMD_MS, tc_get(c, "k", &v)); /* the pooled connection: one timeout */
    tc_status first = st;
    int64_t slowest_ns = 0;
    for (int i = 0; i < 20; i++) {
        int64_t t0 = tc__now_ns();
        T(get_st[i], B_OP, tc_get(c, "k", &v));
        T(set_st[i], B_OP, tc_set(c, "k", "w", 1, TC_TTL_DEFAULT));
        T(gos_st[i], B_OP, tc_get_or_set(c, "g", loader, NULL, 60000, &v));
        tc_value_release(&v);
        if (tc__now_ns() - t0 > slowest_ns)
            slowest_ns = tc__now_ns() - t0;
    }
    kill(s.pid, SIGCONT);
    ck_assert_int_eq(first, TC_ERR_TIMEOUT);
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(get_st[i], TC_ERR_IO);
        ck_assert_int_eq(set_st[i], TC_ERR_IO);
        ck_assert_int_eq(gos_st[i], TC_OK);
    }
    ck_assert_int_lt(slowest_ns / 1000000, 5 + slack_ms / 10); /* three calls, fail fast */
    recover(c, 3000);               /* the probe gets an answer: closed */
    tct_expect(c, "k", TC_OK, "v"); /* none of the failed writes happened */
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_kill_restart)
{
    scenario_begin("killed, restarted on the same port");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    tally t = {0};
    tcf_redis_kill(&s);
    rounds_for(c, 600, "k", &t);
    ck_assert_int_gt(t.errors, 0);
    ck_assert_int_eq(tcf_redis_restart(&s, debug_args), 0);
    /* The same handles reconnect by themselves; Redis has forgotten "before", and c must
     * never serve it again once w has written after the restart. */
    recover(c, 3000);
    check_fresh(c, w, "k", "before", true);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

typedef struct bg_cmd {
    const tcf_redis *s;
    const char *argv[6];
    char *reply;
} bg_cmd;

static void *run_bg(void *arg)
{
    bg_cmd *b = arg;
    b->reply = tcf_redis_cmd(b->s, b->argv);
    return NULL;
}

START_TEST(test_faults_debug_sleep)
{
    scenario_begin("DEBUG SLEEP 0.8");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    bg_cmd b = {.s = &s, .argv = {"DEBUG", "SLEEP", "0.8", NULL}};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, run_bg, &b), 0);
    tct_sleep_ms(20);
    int64_t slept = tc__now_ns();
    tally t = {0};
    rounds_for(c, 700, "k", &t);
    pthread_join(th, NULL);
    ck_assert_ptr_nonnull(b.reply);
    free(b.reply);
    if (t.local_hits)
        ck_assert_int_le((t.last_local_hit_ns - slept) / 1000000, STALE_MS + slack_ms);
    ck_assert_int_gt(t.errors, 0);
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

typedef struct writer_arg {
    tc_cache *c;
    int id, ms;
    int slow; /* calls that waited for a timeout */
} writer_arg;

static void *paused_writer(void *arg)
{
    writer_arg *a = arg;
    char k[32];
    snprintf(k, sizeof k, "w%d", a->id);
    int64_t t0 = tc__now_ns();
    while (ms_since(t0) < a->ms) {
        int64_t t1 = tc__now_ns();
        tc_status st = tc_set(a->c, k, "v", 1, 60000);
        int64_t d = ms_since(t1);
        if (d >= CMD_MS / 2)
            a->slow++;
        (void)st;
        tct_sleep_ms(5);
    }
    return NULL;
}

static long long info_stat(const tcf_redis *s, const char *field)
{
    char *info = cmd(s, "INFO", "stats", NULL, NULL);
    ck_assert_ptr_nonnull(info);
    const char *p = strstr(info, field);
    long long v = p ? atoll(p + strlen(field) + 1) : -1;
    free(info);
    return v;
}

START_TEST(test_faults_client_pause_write)
{
    scenario_begin("CLIENT PAUSE WRITE 1 s");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    long long conns0 = info_stat(&s, "total_connections_received");
    cmd_ok(&s, "CLIENT", "PAUSE", "1000", "WRITE");
    /* Four threads writing: the first timeout opens the breaker, and the others fail
     * fast instead of each paying a timeout and a new connection per call. */
    enum { WRITERS = 4 };
    writer_arg wa[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        wa[i] = (writer_arg){.c = c, .id = i, .ms = 800};
        ck_assert_int_eq(pthread_create(&th[i], NULL, paused_writer, &wa[i]), 0);
    }
    /* Meanwhile reads: the values cannot change while writes are paused, and the link is
     * healthy, so local hits are right. */
    tc_status st;
    tc_value v;
    for (int i = 0; i < 50; i++) {
        T(st, B_OP, tc_get(c, "k", &v));
        ck_assert(st == TC_OK || is_fault(st));
        if (st == TC_OK)
            ck_assert_int_eq(memcmp(v.data, "before", 6), 0);
        tc_value_release(&v);
        tct_sleep_ms(10);
    }
    int slow = 0;
    for (int i = 0; i < WRITERS; i++) {
        pthread_join(th[i], NULL);
        slow += wa[i].slow;
    }
    long long conns = info_stat(&s, "total_connections_received") - conns0;
    tc_stats stats;
    tc_stats_get(c, &stats);
    printf("pause write: %d writes waited for a timeout, %lld new connections in 0.8 s\n", slow,
           conns);
    fflush(stdout);
    /* Backoff 100, 200, 400 ms: a handful of probes, not 4 threads x 4 timeouts each. */
    ck_assert_int_le(slow, 8);
    ck_assert_int_le(conns, 10);
    tct_sleep_ms(300); /* the pause ends */
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

/* The ids of the server's clients but the one asking. */
static int client_ids(const tcf_redis *s, long long *ids, int max)
{
    char *list = cmd(s, "CLIENT", "LIST", NULL, NULL);
    ck_assert_ptr_nonnull(list);
    int n = 0;
    for (char *line = strtok(list, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        if (strstr(line, "cmd=client|list"))
            continue;
        const char *id = strstr(line, "id=");
        if (id)
            ids[n++] = atoll(id + 3);
    }
    free(list);
    return n;
}

START_TEST(test_faults_client_kill_each)
{
    scenario_begin("CLIENT KILL of each connection");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    tally warm = {0};
    rounds_for(c, 50, "k", &warm);
    long long ids[64];
    int n = client_ids(&s, ids, 64);
    ck_assert_int_ge(n, 2); /* the pool's and the subscriber's */
    int failures = 0;
    for (int i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof id, "%lld", ids[i]);
        cmd_ok(&s, "CLIENT", "KILL", "ID", id);
        tally t = {0};
        round_of_calls(c, i, "k", &t);
        failures += t.errors;
    }
    /* Each killed pooled connection fails the one call that finds it dead; a killed
     * subscriber costs no call anything. Then everything works again. */
    int64_t t0 = tc__now_ns();
    int ok_in_a_row = 0;
    while (ok_in_a_row < 3 && ms_since(t0) < 3000) {
        tally t = {0};
        round_of_calls(c, 0, "k", &t);
        failures += t.errors;
        ok_in_a_row = t.errors == 0 ? ok_in_a_row + 1 : 0;
    }
    ck_assert_int_eq(ok_in_a_row, 3);
    ck_assert_int_le(failures, n);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_silent_midway)
{
    scenario_begin("accepts, never answers: mid-run");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tcf_proxy *px = tcf_proxy_start(s.port);
    ck_assert_ptr_nonnull(px);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tcf_proxy_port(px));
    tc_cache *c = open_url(url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST); /* not behind the proxy */
    cache_locally(c, "k", "before");
    tcf_proxy_set_mode(px, TCF_PROXY_MUTE, 0);
    int64_t muted = tc__now_ns();
    tally t = {0};
    rounds_for(c, 700, "k", &t);
    if (t.local_hits)
        ck_assert_int_le((t.last_local_hit_ns - muted) / 1000000, STALE_MS + slack_ms);
    ck_assert_int_gt(t.errors, 0);
    /* While c cannot hear, w writes: c must not keep serving its copy. */
    ck_assert_int_eq(tc_set(w, "k", "during", 6, TC_TTL_DEFAULT), TC_OK);
    tcf_proxy_set_mode(px, TCF_PROXY_PASS, 0);
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_proxy_stop(px);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_trickle_midway)
{
    scenario_begin("replies trickle a byte per 30 ms");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tcf_proxy *px = tcf_proxy_start(s.port);
    ck_assert_ptr_nonnull(px);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", tcf_proxy_port(px));
    tc_cache *c = open_url(url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    tcf_proxy_set_mode(px, TCF_PROXY_TRICKLE, 30);
    tally t = {0};
    rounds_for(c, 700, "k", &t);
    ck_assert_int_gt(t.errors, 0);
    tcf_proxy_set_mode(px, TCF_PROXY_PASS, 0);
    tcf_proxy_drop_all(px); /* streams left half-read by the trickle */
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_proxy_stop(px);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_busy_script)
{
    scenario_begin("busy Lua script, then SCRIPT KILL");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    const char *args[] = {"--lua-time-limit", "100", NULL}; /* BUSY replies after 100 ms */
    start_server(&s, args);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    bg_cmd b = {.s = &s, .argv = {"EVAL", "local i = 0 while true do i = i + 1 end", "0", NULL}};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, run_bg, &b), 0);
    tct_sleep_ms(20);
    int64_t busy = tc__now_ns();
    tally t = {0};
    rounds_for(c, 700, "k", &t);
    if (t.local_hits)
        ck_assert_int_le((t.last_local_hit_ns - busy) / 1000000, STALE_MS + slack_ms);
    ck_assert_int_gt(t.errors, 0);
    cmd_ok(&s, "SCRIPT", "KILL", NULL, NULL);
    pthread_join(th, NULL);
    free(b.reply); /* NULL: the script's caller got an error */
    recover(c, 3000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_oom_noeviction)
{
    scenario_begin("maxmemory + noeviction: OOM on writes");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    const char *args[] = {"--maxmemory-policy", "noeviction", NULL};
    start_server(&s, args);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    cmd_ok(&s, "CONFIG", "SET", "maxmemory", "1");
    tc_status st;
    /* Writes fail with the OOM error reply and leave nothing behind: no local copy of a
     * value Redis refused. */
    T(st, B_OP, tc_set(c, "k", "refused", 7, TC_TTL_DEFAULT));
    ck_assert_int_eq(st, TC_ERR_PROTO);
    tct_expect(c, "k", TC_OK, "before");
    tct_expect(w, "k", TC_OK, "before");
    int64_t n;
    T(st, B_OP, tc_incr(c, "k2", 1, &n));
    ck_assert(st == TC_ERR_PROTO || st == TC_MISS);
    tally t = {0};
    rounds_for(c, 300, "k", &t);
    ck_assert_int_gt(t.errors, 0);
    ck_assert_int_gt(t.local_hits, 0); /* reads work */
    tct_expect(c, "k", TC_OK, "before");
    cmd_ok(&s, "CONFIG", "SET", "maxmemory", "0");
    recover(c, 1000);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_pubsub_buffer_cutoff)
{
    scenario_begin("subscriber cut off: output buffer limit");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_cache *c = open_url(s.url, TC_COHERENCE_BROADCAST);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    cmd_ok(&s, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 1 0");
    size_t big_len = 100 * 1024;
    char *big = malloc(big_len + 1);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    char *r = cmd(&s, "PUBLISH", tc__test_channel(c), big, NULL);
    free(r);
    free(big);
    tally t = {0};
    rounds_for(c, 300, "k", &t);
    cmd_ok(&s, "CONFIG", "SET", "client-output-buffer-limit", "pubsub 33554432 8388608 60");
    ck_assert_uint_ge(TC_READ(tc__cache_counters(c), link_failures), 1);
    check_fresh(c, w, "k", "before", false);
    close_timed(w);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

START_TEST(test_faults_flushall)
{
    scenario_begin("FLUSHALL by another client");
    tcf_unique_prefix(prefix, sizeof prefix);
    tcf_redis s;
    start_server(&s, NULL);
    tc_options o;
    options_for(&o, s.url, TC_COHERENCE_BROADCAST);
    o.local_ttl_ms = 400;
    tc_cache *c = NULL;
    tc_status st;
    T(st, B_OPEN, tc_open(&o, &c));
    ck_assert_int_eq(st, TC_OK);
    o.coherence = TC_COHERENCE_TRACKING;
    tc_cache *tr = NULL;
    T(st, B_OPEN, tc_open(&o, &tr));
    ck_assert_int_eq(st, TC_OK);
    tc_cache *w = open_url(s.url, TC_COHERENCE_BROADCAST);
    cache_locally(c, "k", "before");
    tct_expect(tr, "k", TC_OK, "before");
    tct_expect(tr, "k", TC_OK, "before");
    cmd_ok(&s, "FLUSHALL", NULL, NULL, NULL);
    int64_t flushed = tc__now_ns();
    /* Tracking mode: Redis's null invalidation empties the local tier at once. */
    char got[64] = "before";
    while (strcmp(got, "") != 0 && ms_since(flushed) < 1000)
        read_value(tr, "k", got, sizeof got);
    ck_assert_str_eq(got, "");
    ck_assert_int_le(ms_since(flushed), 200);
    /* Broadcast mode hears nothing of FLUSHALL: its copy lives until local_ttl_ms (the
     * documented bound), then the flush shows. */
    strcpy(got, "before");
    while (strcmp(got, "") != 0 && ms_since(flushed) < 1000) {
        read_value(c, "k", got, sizeof got);
        if (strcmp(got, "") != 0)
            tct_sleep_ms(5);
    }
    ck_assert_str_eq(got, "");
    ck_assert_int_le(ms_since(flushed), 400 + slack_ms);
    tally t = {0};
    rounds_for(c, 200, "k", &t);
    ck_assert_int_eq(t.errors, 0);
    check_fresh(c, w, "k", "before", true);
    check_fresh(tr, w, "k", "before", true);
    close_timed(w);
    close_timed(tr);
    close_timed(c);
    tcf_redis_stop(&s);
    scenario_end();
}
END_TEST

/* ------------------------------------------------------------------ the table */

static void print_table(int expected)
{
    FILE *f = rows_path ? fopen(rows_path, "r") : NULL;
    printf("\nFault scenarios (bounds: command_timeout_ms %d, connect_timeout_ms %d, "
           "heartbeat_ms %d, flight_wait_ms %d; slack %d ms)\n",
           CMD_MS, CONN_MS, HB_MS, FLIGHT_MS, slack_ms);
    printf("%-40s %7s %7s %14s %8s  %-8s %s\n", "scenario", "calls", "max ms", "worst ms/bound",
           "recovery", "result", "worst call (closest to its bound)");
    int rows = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        char *field[7] = {0};
        int k = 0;
        for (char *p = strtok(line, "|\n"); p && k < 7; p = strtok(NULL, "|\n"))
            field[k++] = p;
        if (k < 6)
            continue;
        printf("%-40s %7s %7s %14s %8s  %-8s %s\n", field[0], field[1], field[2], field[3],
               field[4], field[5], k > 6 ? field[6] : "");
        rows++;
    }
    if (f)
        fclose(f);
    printf("%d of %d scenarios reported (a missing one failed an assertion: see above)\n\n", rows,
           expected);
}

int main(void)
{
    const char *slack = getenv("TC_FAULT_SLACK_MS");
    if (slack && atoi(slack) > 0)
        slack_ms = atoi(slack);
    static char path[256];
    snprintf(path, sizeof path, "%s/tc-faults-%ld.rows",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (long)getpid());
    unlink(path);
    rows_path = path;
    const struct {
        const char *name;
        const TTest *test;
    } scenarios[] = {
        {"refused_at_open", test_faults_refused_at_open},
        {"silent_at_open", test_faults_silent_at_open},
        {"sigstop", test_faults_sigstop},
        {"breaker_public_api", test_faults_breaker_public_api},
        {"kill_restart", test_faults_kill_restart},
        {"debug_sleep", test_faults_debug_sleep},
        {"client_pause_write", test_faults_client_pause_write},
        {"client_kill_each", test_faults_client_kill_each},
        {"silent_midway", test_faults_silent_midway},
        {"trickle_midway", test_faults_trickle_midway},
        {"busy_script", test_faults_busy_script},
        {"oom_noeviction", test_faults_oom_noeviction},
        {"pubsub_buffer_cutoff", test_faults_pubsub_buffer_cutoff},
        {"flushall", test_faults_flushall},
    };
    Suite *s = suite_create("faults");
    size_t n = sizeof scenarios / sizeof scenarios[0];
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(scenarios[i].name);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, scenarios[i].test);
        suite_add_tcase(s, tc);
    }
    int rc = tct_main(s, false);
    print_table((int)n);
    unlink(path);
    return rc;
}
