/*
 * tc-stress: a soak test (make stress; not part of make check).
 *
 * 16 threads run mixed operations for STRESS_SECONDS (default 20) on two caches that share
 * one private redis-server (two instances, as two processes would be, each with its own
 * local tier and invalidation link), while the main thread kills that server (SIGKILL)
 * and restarts it on the same port every STRESS_RESTART_MS (default 3000), and a link
 * killer thread cuts every invalidation link (CLIENT KILL TYPE pubsub) at random intervals
 * of up to STRESS_KILL_MS (default 1500; 0: never; a link that breaks
 * again within 2 s reconnects after a growing backoff, so tighter kills mostly keep it down).
 *
 * The caches recover as configured by default: by group sequences (a link break keeps the
 * tier and drops the groups written meanwhile; a restart flushes it). The run fails if no
 * link break was reconciled, so the storm exercises that path; the reads it then serves
 * from the kept tier are checked as every other read.
 *
 * Staleness. Two writer threads, one on A and one on B, own half of the "v:<i>" keys each
 * and write each key with increasing versions. There are enough keys (VKEYS) that a key
 * written during a link break is usually not written again within the staleness bound, so
 * a copy wrongly kept is read stale past it. Readers (on A and on B) check every value
 * they read:
 *   floor      a read that starts at t returns a version at least the newest one whose
 *              write returned OK at or before t - B, or a miss (a restart loses data);
 *   monotonic  once a reader has seen version x at t, no read it starts after t + B
 *              returns a version below x (a miss is allowed);
 *   invented   never a version above the highest one ever attempted.
 * B is the documented staleness bound for a link that broke without a word, 2 x
 * heartbeat_ms, plus STRESS_DELIVERY_MS (default 100) for delivery and scheduling.
 * Inside B an older value is allowed: that is what the bound means.
 *
 * Also checked: tc_get_or_set always returns a value (the loader's when Redis is down),
 * except TC_ERR_TIMEOUT while waiting for a load of the other instance; no call returns
 * an error other than a Redis fault (IO, TIMEOUT, PROTO); no call takes longer than its
 * bound. Memory: the resident set size, sampled every 100 ms, reported at the start (after
 * a 2 s warm-up), the end and its maximum.
 *
 * Prints the figures; exits 1 on any violation. STRESS_SELFTEST=1 checks the checker:
 * instance B is opened without coherence, and the run must report stale reads.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "fixture.h"
#include "tiercache.h"

#define THREADS 16
#define VKEYS 2048 /* versioned keys: half written through each instance */
#define RING 32    /* recent successful writes kept per key */
#define CMD_MS 250
#define CONN_MS 500
#define HB_MS 100
#define FLIGHT_MS 2000
/* Call bounds (docs/operations.md): one operation; several; get_or_set. */
#define B_OP (CMD_MS + CONN_MS + CMD_MS)
#define B_MULTI (2 * B_OP)
#define B_GOS (FLIGHT_MS + 2 * B_OP)
#define SLACK_MS 250

static int64_t bound_ns;      /* B */
static tcf_redis killer_view; /* the server's port and TLS, copied for the link killer */
static atomic_int links_killed;
static atomic_bool stop;
static tc_cache *ca, *cb;

/* ------------------------------------------------------------------ the writer's record */

typedef struct write_rec {
    int64_t version, returned_ns;
} write_rec;

typedef struct vkey {
    pthread_mutex_t mu;
    write_rec ring[RING]; /* successful writes, newest at head - 1 */
    unsigned head, count;
    atomic_int_fast64_t attempted; /* highest version ever sent */
} vkey;

static vkey vkeys[VKEYS];

/* The newest version whose write returned OK at or before t. */
static int64_t floor_at(vkey *k, int64_t t)
{
    int64_t f = 0;
    pthread_mutex_lock(&k->mu);
    for (unsigned i = 0; i < k->count; i++) {
        const write_rec *w = &k->ring[(k->head + RING - 1 - i) % RING];
        if (w->returned_ns <= t) {
            f = w->version;
            break;
        }
    }
    pthread_mutex_unlock(&k->mu);
    return f;
}

/* ------------------------------------------------------------------ tallies */

enum { OP_GET, OP_SET, OP_GOS, OP_MANY, OP_MISC, OP_NS, OP_LOCK, OP_N };
static const char *const op_names[OP_N] = {
    "get", "set (versioned)", "get_or_set", "get_many/set_many", "add/delete/incr/touch", "ns/tags",
    "lock"};
static const int op_bounds[OP_N] = {B_OP, B_OP, B_GOS, B_OP, B_OP, B_MULTI, B_OP};

typedef struct tally {
    atomic_uint_fast64_t calls[OP_N], faults[OP_N], max_us[OP_N];
    atomic_uint_fast64_t reads_checked, misses, stale_floor, stale_monotonic, invented, unexpected,
        over_bound, loads, gos_timeouts;
} tally;

static tally T;

/* Outages as the writer saw them: from its first failed write after a success to its next
 * success. */
static atomic_int_fast64_t outage_total_ns, outage_max_ns, outages;
static pthread_mutex_t msg_mu = PTHREAD_MUTEX_INITIALIZER;
static int messages;

static void complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void complain(const char *fmt, ...)
{
    pthread_mutex_lock(&msg_mu);
    if (messages++ < 20) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "tc-stress: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    pthread_mutex_unlock(&msg_mu);
}

/* Records a call of kind op that started at t0 with status st; faults are counted, and
 * anything else unexpected is a violation. */
static void record(int op, int64_t t0, tc_status st, bool ok)
{
    int64_t us = (tc__now_ns() - t0) / 1000;
    atomic_fetch_add(&T.calls[op], 1);
    uint_fast64_t m = atomic_load(&T.max_us[op]);
    while ((uint_fast64_t)us > m &&
           !atomic_compare_exchange_weak(&T.max_us[op], &m, (uint_fast64_t)us))
        ;
    if (us > (int64_t)(op_bounds[op] + SLACK_MS) * 1000) {
        atomic_fetch_add(&T.over_bound, 1);
        complain("%s took %" PRId64 " ms (bound %d ms)", op_names[op], us / 1000, op_bounds[op]);
    }
    if (ok)
        return;
    if (st == TC_ERR_IO || st == TC_ERR_TIMEOUT || st == TC_ERR_PROTO) {
        atomic_fetch_add(&T.faults[op], 1);
        return;
    }
    atomic_fetch_add(&T.unexpected, 1);
    complain("%s: unexpected %s", op_names[op], tc_strerror(st));
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ------------------------------------------------------------------ threads */

typedef struct reader_arg {
    tc_cache *c;
    uint64_t seed;
} reader_arg;

/* Writes the keys v:<i> of one parity (A's the even ones, B's the odd ones). */
static void *writer(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    int parity = a->c == cb;
    char val[2100];
    int64_t *version = calloc(VKEYS, sizeof *version);
    int64_t down_since = 0;
    if (!version)
        abort();
    while (!atomic_load(&stop)) {
        int i = (int)(rng_next(&r) % (VKEYS / 2)) * 2 + parity;
        int64_t v = ++version[i];
        atomic_store(&vkeys[i].attempted, v);
        int n = snprintf(val, sizeof val, "%" PRId64 ":", v);
        size_t pad = 16 + rng_next(&r) % 2000; /* values of 16..2 KiB: memory moves */
        memset(val + n, 'p', pad);
        char key[16];
        snprintf(key, sizeof key, "v:%d", i);
        int64_t t0 = tc__now_ns();
        tc_status st = tc_set(a->c, key, val, (size_t)n + pad, 60000);
        record(OP_SET, t0, st, st == TC_OK);
        if (st != TC_OK && !down_since)
            down_since = t0;
        if (st == TC_OK && down_since) {
            int64_t d = tc__now_ns() - down_since;
            atomic_fetch_add(&outage_total_ns, d);
            atomic_fetch_add(&outages, 1);
            if (d > atomic_load(&outage_max_ns))
                atomic_store(&outage_max_ns, d);
            down_since = 0;
        }
        if (st == TC_OK) {
            vkey *k = &vkeys[i];
            pthread_mutex_lock(&k->mu);
            k->ring[k->head] = (write_rec){v, tc__now_ns()};
            k->head = (k->head + 1) % RING;
            if (k->count < RING)
                k->count++;
            pthread_mutex_unlock(&k->mu);
        }
    }
    free(version);
    return NULL;
}

static void *reader(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    int64_t seen_v[VKEYS] = {0}, seen_t[VKEYS] = {0};
    while (!atomic_load(&stop)) {
        int i = (int)(rng_next(&r) % VKEYS);
        char key[16];
        snprintf(key, sizeof key, "v:%d", i);
        int64_t t0 = tc__now_ns();
        int64_t floor_v = floor_at(&vkeys[i], t0 - bound_ns);
        tc_value v;
        tc_status st = tc_get(a->c, key, &v);
        record(OP_GET, t0, st, st == TC_OK || st == TC_MISS);
        if (st == TC_MISS)
            atomic_fetch_add(&T.misses, 1);
        if (st != TC_OK)
            continue;
        int64_t got = strtoll(v.data, NULL, 10); /* "<version>:ppp": stops at the ':' */
        tc_value_release(&v);
        atomic_fetch_add(&T.reads_checked, 1);
        if (got < floor_v) {
            atomic_fetch_add(&T.stale_floor, 1);
            complain("%s: read version %" PRId64 ", but %" PRId64 " was written over %" PRId64
                     " ms before the read",
                     key, got, floor_v, bound_ns / 1000000);
        }
        if (got > atomic_load(&vkeys[i].attempted)) {
            atomic_fetch_add(&T.invented, 1);
            complain("%s: read version %" PRId64 ", never written", key, got);
        }
        if (got < seen_v[i] && t0 - seen_t[i] > bound_ns) {
            atomic_fetch_add(&T.stale_monotonic, 1);
            complain("%s: read version %" PRId64 " after seeing %" PRId64 " %" PRId64 " ms before",
                     key, got, seen_v[i], (t0 - seen_t[i]) / 1000000);
        }
        if (got >= seen_v[i]) {
            seen_v[i] = got;
            seen_t[i] = tc__now_ns();
        }
    }
    return NULL;
}

static tc_status load(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    atomic_fetch_add(&T.loads, 1);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "loaded %s", key);
    return tc_buf_append(out, buf, (size_t)n);
}

static void *loader_thread(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    while (!atomic_load(&stop)) {
        char key[16];
        snprintf(key, sizeof key, "g:%d", (int)(rng_next(&r) % 256));
        int64_t t0 = tc__now_ns();
        tc_value v;
        tc_status st = tc_get_or_set(a->c, key, load, NULL, 2000, &v);
        if (st == TC_ERR_TIMEOUT)
            atomic_fetch_add(&T.gos_timeouts, 1); /* waited for the other instance's load */
        record(OP_GOS, t0, st, st == TC_OK || st == TC_ERR_TIMEOUT);
        if (st == TC_OK) {
            char want[64];
            int n = snprintf(want, sizeof want, "loaded %s", key);
            if (v.len != (size_t)n || memcmp(v.data, want, v.len) != 0) {
                atomic_fetch_add(&T.unexpected, 1);
                complain("get_or_set %s: wrong value", key);
            }
            tc_value_release(&v);
        }
    }
    return NULL;
}

static void *batch_thread(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    const char *keys[8];
    char names[8][16];
    const void *data[8];
    size_t lens[8];
    while (!atomic_load(&stop)) {
        int base = (int)(rng_next(&r) % 120);
        for (int i = 0; i < 8; i++) {
            snprintf(names[i], sizeof names[i], "b:%d", base + i);
            keys[i] = names[i];
            data[i] = names[i];
            lens[i] = strlen(names[i]);
        }
        int64_t t0 = tc__now_ns();
        tc_status st = tc_set_many(a->c, keys, data, lens, 8, 30000);
        record(OP_MANY, t0, st, st == TC_OK);
        tc_value vals[8];
        tc_status sts[8];
        t0 = tc__now_ns();
        st = tc_get_many(a->c, keys, 8, vals, sts);
        record(OP_MANY, t0, st, st == TC_OK);
        for (int i = 0; st == TC_OK && i < 8; i++) {
            if (sts[i] == TC_OK &&
                (vals[i].len != lens[i] || memcmp(vals[i].data, keys[i], lens[i]) != 0)) {
                atomic_fetch_add(&T.unexpected, 1);
                complain("get_many %s: another key's value", keys[i]);
            }
            tc_value_release(&vals[i]);
        }
        if (rng_next(&r) % 4 == 0) {
            t0 = tc__now_ns();
            st = tc_delete_many(a->c, keys, 8);
            record(OP_MANY, t0, st, st == TC_OK);
        }
    }
    return NULL;
}

static void *misc_thread(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    while (!atomic_load(&stop)) {
        char key[16];
        snprintf(key, sizeof key, "m:%d", (int)(rng_next(&r) % 50));
        int64_t t0 = tc__now_ns();
        tc_status st;
        int64_t n;
        switch (rng_next(&r) % 5) {
        case 0:
            st = tc_add(a->c, key, "1", 1, 10000);
            record(OP_MISC, t0, st, st == TC_OK || st == TC_EXISTS);
            break;
        case 1:
            st = tc_delete(a->c, key);
            record(OP_MISC, t0, st, st == TC_OK || st == TC_MISS);
            break;
        case 2:
            st = tc_incr(a->c, key, 1, &n);
            record(OP_MISC, t0, st, st == TC_OK || st == TC_MISS);
            break;
        case 3:
            st = tc_touch(a->c, key, 20000);
            record(OP_MISC, t0, st, st == TC_OK || st == TC_MISS);
            break;
        default:
            st = tc_set(a->c, key, "7", 1, 10000);
            record(OP_MISC, t0, st, st == TC_OK);
            break;
        }
    }
    return NULL;
}

static void *ns_thread(void *arg)
{
    reader_arg *a = arg;
    uint64_t r = a->seed;
    const char *tags[2] = {"tag:a", "tag:b"};
    while (!atomic_load(&stop)) {
        char buf[96];
        int64_t t0 = tc__now_ns();
        tc_status st = tc_ns_key(a->c, "users", "list", buf, sizeof buf);
        record(OP_NS, t0, st, st == TC_OK);
        t0 = tc__now_ns();
        switch (rng_next(&r) % 4) {
        case 0:
            st = tc_ns_bump(a->c, "users", NULL);
            break;
        case 1:
            st = tc_tag_invalidate(a->c, tags[rng_next(&r) % 2]);
            break;
        default:
            st = tc_set_tagged(a->c, "tagged", "t", 1, 10000, tags, 2);
            break;
        }
        record(OP_NS, t0, st, st == TC_OK);
        tc_value v;
        t0 = tc__now_ns();
        st = tc_get(a->c, "tagged", &v);
        record(OP_NS, t0, st, st == TC_OK || st == TC_MISS);
        tc_value_release(&v);
    }
    return NULL;
}

static void *lock_thread(void *arg)
{
    reader_arg *a = arg;
    while (!atomic_load(&stop)) {
        tc_lock *l = NULL;
        int64_t t0 = tc__now_ns();
        tc_status st = tc_lock_acquire(a->c, "job", 500, 0, &l);
        record(OP_LOCK, t0, st, st == TC_OK || st == TC_ERR_TIMEOUT);
        if (st == TC_OK) {
            t0 = tc__now_ns();
            st = tc_lock_release(l);
            record(OP_LOCK, t0, st, st == TC_OK || st == TC_MISS);
        }
    }
    return NULL;
}

/* Cuts every invalidation link of the server at random intervals of up to max_ms (arg).
 * The first cut comes after 1 s (before the first restart), so that even a short run
 * reconciles at least once. */
static void *link_killer(void *arg)
{
    int max_ms = *(const int *)arg;
    uint64_t r = 0xdeadbeefcafef00dull;
    const char *argv[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    for (bool first = true; !atomic_load(&stop); first = false) {
        long ms = first && max_ms > 1000 ? 1000 : (long)(1 + rng_next(&r) % (uint64_t)max_ms);
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        char *n = tcf_redis_cmd(&killer_view, argv); /* NULL while the server restarts */
        if (n && atoi(n) > 0)
            atomic_fetch_add(&links_killed, 1);
        free(n);
    }
    return NULL;
}

/* ------------------------------------------------------------------ memory */

static long page_kib;
static atomic_long rss_max_kib, rss_now_kib;

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * page_kib;
}

static void *sampler(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        long r = rss_kib();
        atomic_store(&rss_now_kib, r);
        if (r > atomic_load(&rss_max_kib))
            atomic_store(&rss_max_kib, r);
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ------------------------------------------------------------------ main */

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && atoi(s) > 0 ? atoi(s) : def;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static tc_cache *open_instance(const char *url, const char *prefix, bool broken)
{
    tc_options o;
    tc_options_init(&o);
    if (broken) /* the checker's self-test: B hears no invalidation at all */
        o.coherence = TC_COHERENCE_NONE;
    o.redis_url = url;
    o.key_prefix = prefix;
    o.command_timeout_ms = CMD_MS;
    o.connect_timeout_ms = CONN_MS;
    o.heartbeat_ms = HB_MS;
    o.flight_wait_ms = FLIGHT_MS;
    o.lock_ttl_ms = 1000;
    o.local_max_bytes = (size_t)8 << 20;
    o.pool_size = 4;
    tc_cache *c = NULL;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc-stress: tc_open: %s\n", tc_strerror(st));
        exit(2);
    }
    return c;
}

int main(void)
{
    int seconds = env_int("STRESS_SECONDS", 20);
    int restart_ms = env_int("STRESS_RESTART_MS", 3000);
    int delivery_ms = env_int("STRESS_DELIVERY_MS", 100);
    const char *km = getenv("STRESS_KILL_MS");
    int kill_ms = km ? atoi(km) : 1500;
    kill_ms = kill_ms < 0 ? 0 : kill_ms;
    bound_ns = (int64_t)(2 * HB_MS + delivery_ms) * 1000000;
    page_kib = sysconf(_SC_PAGESIZE) / 1024;
    for (int i = 0; i < VKEYS; i++)
        pthread_mutex_init(&vkeys[i].mu, NULL);

    tcf_redis srv;
    if (tcf_redis_start(&srv, NULL) != 0)
        return 2;
    char prefix[64];
    tcf_unique_prefix(prefix, sizeof prefix);
    bool selftest = env_int("STRESS_SELFTEST", 0) > 0;
    ca = open_instance(srv.url, prefix, false);
    cb = open_instance(srv.url, prefix, selftest);

    killer_view = srv;
    pthread_t th[THREADS], samp, killer;
    reader_arg args[THREADS];
    /* Even slots run on A, odd ones on B. */
    void *(*fns[THREADS])(void *) = {writer,       writer,        reader,        reader,
                                     reader,       reader,        reader,        reader,
                                     reader,       loader_thread, loader_thread, batch_thread,
                                     batch_thread, misc_thread,   ns_thread,     lock_thread};
    for (int i = 0; i < THREADS; i++) {
        args[i] = (reader_arg){.c = i % 2 ? cb : ca, .seed = 0x1234567ull * (uint64_t)(i + 1)};
        pthread_create(&th[i], NULL, fns[i], &args[i]);
    }
    pthread_create(&samp, NULL, sampler, NULL);
    if (kill_ms > 0)
        pthread_create(&killer, NULL, link_killer, &kill_ms);

    int64_t t0 = tc__now_ns(), end = t0 + (int64_t)seconds * 1000000000;
    int64_t next_restart = t0 + (int64_t)restart_ms * 1000000;
    long rss_start = 0;
    int restarts = 0, restart_failures = 0;
    while (tc__now_ns() < end) {
        sleep_ms(50);
        if (!rss_start && tc__now_ns() - t0 > 2000000000LL) {
            rss_start = rss_kib();
            atomic_store(&rss_max_kib, rss_start);
        }
        if (tc__now_ns() >= next_restart && tc__now_ns() + 1000000000LL < end) {
            tcf_redis_kill(&srv);
            sleep_ms(200);
            if (tcf_redis_restart(&srv, NULL) != 0)
                restart_failures++;
            restarts++;
            next_restart = tc__now_ns() + (int64_t)restart_ms * 1000000;
        }
    }
    long rss_end = rss_kib();
    atomic_store(&stop, true);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(samp, NULL);
    if (kill_ms > 0)
        pthread_join(killer, NULL);
    tc_stats sa, sb;
    tc_stats_get(ca, &sa);
    tc_stats_get(cb, &sb);
    tc_close(ca);
    tc_close(cb);
    tcf_redis_stop(&srv);

    double secs = (double)(tc__now_ns() - t0) / 1e9;
    uint64_t total = 0;
    printf("tc-stress: %d threads, %.1f s, Redis killed and restarted %d times (every %d ms)\n",
           THREADS, secs, restarts, restart_ms);
    printf("%-24s %10s %10s %12s %10s\n", "operation", "calls", "faults", "max call ms",
           "bound ms");
    for (int op = 0; op < OP_N; op++) {
        uint64_t n = atomic_load(&T.calls[op]);
        total += n;
        printf("%-24s %10" PRIu64 " %10" PRIu64 " %12.1f %10d\n", op_names[op], n,
               (uint64_t)atomic_load(&T.faults[op]), (double)atomic_load(&T.max_us[op]) / 1000.0,
               op_bounds[op]);
    }
    printf("total %" PRIu64 " calls (%.0f/s); loader calls %" PRIu64
           "; get_or_set waits timed out %" PRIu64 "\n",
           total, (double)total / secs, (uint64_t)atomic_load(&T.loads),
           (uint64_t)atomic_load(&T.gos_timeouts));
    printf("reads checked %" PRIu64 " (misses %" PRIu64 "), staleness bound %" PRId64
           " ms: %" PRIu64 " below the floor, %" PRIu64 " went back in time, %" PRIu64
           " never written\n",
           (uint64_t)atomic_load(&T.reads_checked), (uint64_t)atomic_load(&T.misses),
           bound_ns / 1000000, (uint64_t)atomic_load(&T.stale_floor),
           (uint64_t)atomic_load(&T.stale_monotonic), (uint64_t)atomic_load(&T.invented));
    printf("writes unavailable: %.0f ms in all over %" PRId64 " outages, the longest %.0f ms "
           "(each restart: 200 ms down, then reconnection)\n",
           (double)atomic_load(&outage_total_ns) / 1e6, (int64_t)atomic_load(&outages),
           (double)atomic_load(&outage_max_ns) / 1e6);
    printf("local hits A %" PRIu64 " B %" PRIu64 ", remote hits A %" PRIu64 " B %" PRIu64
           ", remote errors A %" PRIu64 " B %" PRIu64 "\n",
           sa.local_hits, sb.local_hits, sa.remote_hits, sb.remote_hits, sa.remote_errors,
           sb.remote_errors);
    printf("links killed %d times (CLIENT KILL TYPE pubsub, at random up to every %d ms); "
           "reconciles A %" PRIu64 " B %" PRIu64 ", full flushes A %" PRIu64 " B %" PRIu64 "\n",
           atomic_load(&links_killed), kill_ms, sa.reconciles, sb.reconciles, sa.full_flushes,
           sb.full_flushes);
    printf("RSS: start %ld KiB (after 2 s), end %ld KiB, max %ld KiB (growth %+ld KiB)\n",
           rss_start, rss_end, (long)atomic_load(&rss_max_kib), rss_end - rss_start);
    uint64_t bad = atomic_load(&T.stale_floor) + atomic_load(&T.stale_monotonic) +
                   atomic_load(&T.invented) + atomic_load(&T.unexpected) +
                   atomic_load(&T.over_bound);
    long growth_limit = env_int("STRESS_RSS_GROWTH_KIB", 32768);
    bool grew = rss_start > 0 && rss_end - rss_start > growth_limit;
    /* The link breaks must have exercised the recovery that keeps the tier. */
    bool unreconciled = kill_ms > 0 && !selftest && sa.reconciles + sb.reconciles == 0;
    printf("violations: %" PRIu64 " (unexpected statuses %" PRIu64 ", over bound %" PRIu64
           ")%s%s%s\n",
           bad, (uint64_t)atomic_load(&T.unexpected), (uint64_t)atomic_load(&T.over_bound),
           grew ? "; RSS grew more than STRESS_RSS_GROWTH_KIB" : "",
           restart_failures ? "; a restart failed" : "",
           unreconciled ? "; no link break was reconciled" : "");
    if (selftest) { /* the checker must have caught B's stale reads */
        printf("self-test (B without coherence): %s\n",
               atomic_load(&T.stale_floor) > 0 ? "stale reads caught" : "NOT CAUGHT");
        return atomic_load(&T.stale_floor) > 0 ? 0 : 1;
    }
    return bad || grew || restart_failures || unreconciled || restarts == 0 ? 1 : 0;
}
