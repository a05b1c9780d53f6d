/*
 * The measured workloads (see workloads.h), written against the public API only.
 *
 * A read workload pre-generates each thread's operations (key indices, the top bit marking
 * a write) so that generating them costs nothing inside the timed loop and every mode runs
 * exactly the same operations: tiercache, redis-only (local_max_bytes = 0) and the floor.
 * The modes take turns: the measured operations are split into rounds, and round 1 runs in
 * every mode, then round 2, ..., with both caches open throughout, so that a change in the
 * machine's load falls on every mode alike. Each thread times every operation into its own
 * histogram (one clock read per operation); the hot path also times whole loops, which is
 * what its ratios use.
 *
 * Processes: the coherence workload forks a writer and a reader, each with its own
 * tc_cache, sharing timestamps through an anonymous shared mapping. Children leave only by
 * _exit, so they never run the bench's cleanup (which stops the embedded Redis).
 */
#include "config.h"

#include "workloads.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "gen.h"
#include "remote.h"
#include "keys.h"
#include "tiercache.h"

#define WRITE_BIT 0x80000000u
#define POPULATE_BATCH 1000

typedef enum mode { MODE_TIER, MODE_REDIS, MODE_FLOOR, NMODES } mode;

static const char *const mode_names[NMODES] = {"tiercache", "redis-only (local off)",
                                               "floor (hash+memcpy)"};

/* ------------------------------------------------------------------ caches */

/* open_cache with shadow reads of 1 in shadow_rate local hits (0: off) and a recovery. */
static tc_cache *open_cache_rec(const bench_cfg *cfg, const char *prefix, size_t local_bytes,
                                unsigned shadow_rate, tc_recovery recovery)
{
    tc_options o;
    tc_options_init(&o);
    o.redis_url = cfg->redis_url;
    o.key_prefix = prefix;
    o.local_max_bytes = local_bytes;
    o.remote_ttl_ms = 3600 * 1000;
    o.local_ttl_ms = 3600 * 1000;
    o.fetch_remote_ttl = !cfg->no_remote_ttl;
    if (cfg->tls_ca && strncmp(cfg->redis_url, "rediss", 6) == 0)
        o.tls_ca_file = cfg->tls_ca;
    /* Generous: two loaded cores, other work on the machine; errors are counted anyway. */
    o.command_timeout_ms = 2000;
    o.connect_timeout_ms = 2000;
    o.shadow_rate = shadow_rate;
    o.recovery = recovery;
    tc_cache *c = NULL;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK)
        bench_die("tc_open(%s): %s", cfg->redis_url, tc_strerror(st));
    return c;
}

static tc_cache *open_cache_shadow(const bench_cfg *cfg, const char *prefix, size_t local_bytes,
                                   unsigned shadow_rate)
{
    return open_cache_rec(cfg, prefix, local_bytes, shadow_rate, TC_RECOVERY_AUTO);
}

static tc_cache *open_cache(const bench_cfg *cfg, const char *prefix, size_t local_bytes)
{
    return open_cache_shadow(cfg, prefix, local_bytes, 0);
}

tc_cache *wl_open_proc(const bench_cfg *cfg, const char *prefix, tc_coherence coh,
                       tc_recovery recovery, size_t local_bytes, const char *who)
{
    tc_options o;
    tc_options_init(&o);
    o.redis_url = cfg->redis_url;
    o.key_prefix = prefix;
    o.coherence = coh;
    o.recovery = recovery;
    o.local_max_bytes = local_bytes;
    o.remote_ttl_ms = 600 * 1000;
    o.local_ttl_ms = 600 * 1000;
    o.pool_size = 2;
    o.command_timeout_ms = 2000;
    o.connect_timeout_ms = 2000;
    o.check_redis_config = 0;
    tc_cache *c = NULL;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc-bench: %s: tc_open: %s\n", who, tc_strerror(st));
        return NULL;
    }
    return c;
}

void wl_populate(const bench_cfg *cfg, const char *prefix, const keyset *ks, size_t vsize)
{
    tc_cache *c = open_cache(cfg, prefix, 0);
    unsigned char *val = malloc(vsize ? vsize : 1);
    const void **data = malloc(POPULATE_BATCH * sizeof *data);
    size_t *lens = malloc(POPULATE_BATCH * sizeof *lens);
    if (!val || !data || !lens)
        bench_die("out of memory");
    memset(val, 'v', vsize);
    for (size_t i = 0; i < POPULATE_BATCH; i++) {
        data[i] = val;
        lens[i] = vsize;
    }
    for (size_t i = 0; i < ks->n; i += POPULATE_BATCH) {
        size_t n = ks->n - i < POPULATE_BATCH ? ks->n - i : POPULATE_BATCH;
        tc_status st = tc_set_many(c, (const char *const *)ks->k + i, data, lens, n,
                                   TC_TTL_FOREVER);
        if (st != TC_OK)
            bench_die("populating Redis: tc_set_many: %s", tc_strerror(st));
    }
    free(val);
    free(data);
    free(lens);
    tc_close(c);
}

void wl_unpopulate(const bench_cfg *cfg, const char *prefix)
{
    if (cfg->embedded)
        return;
    tc_cache *c = open_cache(cfg, prefix, 0);
    tc_status st = tc_clear(c);
    if (st != TC_OK)
        fprintf(stderr, "tc-bench: warning: tc_clear(%s): %s\n", prefix, tc_strerror(st));
    tc_close(c);
}

size_t wl_local_charge(const bench_cfg *cfg, const char *prefix, const char *key, size_t vsize)
{
    tc_cache *c = open_cache(cfg, prefix, (size_t)64 << 20);
    unsigned char *val = calloc(1, vsize ? vsize : 1);
    tc_value v;
    tc_stats s;
    size_t charge = 0;
    if (val && tc_set(c, key, val, vsize, TC_TTL_FOREVER) == TC_OK) {
        for (int i = 0; i < 2; i++)
            if (tc_get(c, key, &v) == TC_OK)
                tc_value_release(&v);
        tc_stats_get(c, &s);
        if (s.local_entries)
            charge = (size_t)(s.local_bytes / s.local_entries);
    }
    free(val);
    tc_close(c);
    return charge ? charge : 200 + strlen(key) + vsize; /* a guess if it did not stay */
}

size_t wl_local_budget(const bench_cfg *cfg, size_t charge, size_t nkeys)
{
    if (cfg->local_bytes)
        return cfg->local_bytes;
    return (size_t)(cfg->local_pct / 100.0 * (double)nkeys * (double)charge);
}

/* ------------------------------------------------------------------ threaded runs */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of v[0..n) (sorts v): the middle value, or the mean of the two middle ones. */
static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct run {
    mode m;
    tc_cache *c;
    const ftab *ft;
    const keyset *ks;
    size_t vsize;
    const unsigned char *wval;
    bool fill_on_miss;
    pthread_barrier_t bar;
} run;

typedef struct worker {
    run *r;
    const uint32_t *seq;
    size_t nwarm, nops;
    hist h;
    uint64_t errors, t_end;
    uint64_t sink;
    pthread_t tid;
} worker;

/* One operation; returns 1 on an error. The value read is copied out, as a caller would,
 * so tiercache and the floor both end with the bytes in the caller's buffer. The floor
 * treats a write as a read. */
static inline int do_op(const run *r, uint32_t x, unsigned char *buf)
{
    const char *key = keyset_key(r->ks, x & ~WRITE_BIT);
    if (r->m == MODE_FLOOR)
        return ftab_get(r->ft, key, buf) ? 0 : 1;
    if (x & WRITE_BIT)
        return tc_set(r->c, key, r->wval, r->vsize, TC_TTL_FOREVER) == TC_OK ? 0 : 1;
    tc_value v;
    tc_status st = tc_get(r->c, key, &v);
    if (st == TC_OK) {
        memcpy(buf, v.data, v.len < r->vsize ? v.len : r->vsize);
        tc_value_release(&v);
        return 0;
    }
    if (st == TC_MISS) {
        if (r->fill_on_miss)
            return tc_set(r->c, key, r->wval, r->vsize, TC_TTL_FOREVER) == TC_OK ? 0 : 1;
        return 0;
    }
    return 1;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    run *r = w->r;
    unsigned char *buf = malloc(r->vsize ? r->vsize : 1);
    if (!buf)
        bench_die("out of memory");
    memset(buf, 0, r->vsize ? r->vsize : 1);
    for (size_t i = 0; i < w->nwarm; i++)
        (void)do_op(r, w->seq[i], buf);
    pthread_barrier_wait(&r->bar); /* warmed up: the main thread snapshots the counters */
    pthread_barrier_wait(&r->bar); /* go */
    const uint32_t *s = w->seq + w->nwarm;
    uint64_t errors = 0, t = now_ns();
    for (size_t i = 0; i < w->nops; i++) {
        errors += (uint64_t)do_op(r, s[i], buf);
        uint64_t t2 = now_ns();
        hist_record(&w->h, t2 - t);
        t = t2;
    }
    w->t_end = t;
    w->errors = errors;
    w->sink = buf[0];
    free(buf);
    return NULL;
}

/* What one round of one mode measured; a mode's rounds are summed. */
typedef struct tally {
    uint64_t ops, writes, errors, ns;
    uint64_t local_hits, remote_hits, misses, round_trips, loads; /* tc_stats deltas */
} tally;

static void tally_add(tally *into, const tally *t)
{
    into->ops += t->ops;
    into->writes += t->writes;
    into->errors += t->errors;
    into->ns += t->ns;
    into->local_hits += t->local_hits;
    into->remote_hits += t->remote_hits;
    into->misses += t->misses;
    into->round_trips += t->round_trips;
    into->loads += t->loads;
}

/* (remote hits + misses + sets + deletes) / ops; 0 without a cache (the floor). */
static double tally_rt_per_op(const tally *t, bool cache)
{
    if (!cache)
        return 0;
    return t->ops ? (double)t->round_trips / (double)t->ops : NAN;
}

/* Runs threads workers in mode m, worker i over seqs[i]: nwarm[i] unmeasured operations,
 * then nops[i] measured ones. Merges their latencies into h and returns the counts in *t. */
static void run_threads(run *r, int threads, const uint32_t *const *seqs, const size_t *nwarm,
                        const size_t *nops, hist *h, tally *t)
{
    worker *w = calloc((size_t)threads, sizeof *w);
    if (!w)
        bench_die("out of memory");
    if (pthread_barrier_init(&r->bar, NULL, (unsigned)threads + 1) != 0)
        bench_die("pthread_barrier_init failed");
    for (int i = 0; i < threads; i++) {
        w[i].r = r;
        w[i].seq = seqs[i];
        w[i].nwarm = nwarm[i];
        w[i].nops = nops[i];
        hist_init(&w[i].h);
        if (pthread_create(&w[i].tid, NULL, worker_main, &w[i]) != 0)
            bench_die("pthread_create failed");
    }
    tc_stats s0, s1;
    memset(&s0, 0, sizeof s0);
    memset(&s1, 0, sizeof s1);
    pthread_barrier_wait(&r->bar);
    if (r->c)
        tc_stats_get(r->c, &s0);
    uint64_t t0 = now_ns();
    pthread_barrier_wait(&r->bar);
    uint64_t t1 = t0;
    memset(t, 0, sizeof *t);
    for (int i = 0; i < threads; i++) {
        pthread_join(w[i].tid, NULL);
        if (w[i].t_end > t1)
            t1 = w[i].t_end;
        hist_merge(h, &w[i].h);
        t->ops += w[i].nops;
        t->errors += w[i].errors;
        for (size_t j = 0; j < w[i].nops; j++)
            t->writes += (seqs[i][w[i].nwarm + j] & WRITE_BIT) != 0;
    }
    if (r->c)
        tc_stats_get(r->c, &s1);
    pthread_barrier_destroy(&r->bar);
    free(w);

    t->ns = t1 - t0;
    if (r->c) {
        t->local_hits = s1.local_hits - s0.local_hits;
        t->remote_hits = s1.remote_hits - s0.remote_hits;
        t->misses = s1.misses - s0.misses;
        t->round_trips = t->remote_hits + t->misses + (s1.sets - s0.sets) +
                         (s1.deletes - s0.deletes);
        t->loads = s1.loads - s0.loads;
    }
}

/* Fills res from the sum of a mode's rounds and its merged histogram h (which res keeps). */
static void tally_result(result *res, int threads, const tally *t, bool cache, hist *h)
{
    res->threads = threads;
    res->ops = t->ops;
    res->errors = t->errors;
    res->seconds = (double)t->ns / 1e9;
    res->ops_s = (double)t->ops / res->seconds;
    result_latency(res, h);
    res->h = h;
    res->rt_per_op = tally_rt_per_op(t, cache);
    if (cache) {
        uint64_t reads = t->ops - t->writes;
        if (reads) {
            res->local_hit = (double)t->local_hits / (double)reads;
            res->remote_hit = (double)t->remote_hits / (double)reads;
            res->miss = (double)t->misses / (double)reads;
        }
        res->loads = t->loads;
    }
}

/* The modes take turns in up to TURN_ROUNDS rounds, each at least TURN_MIN_OPS operations
 * per thread (fewer rounds when there are fewer operations). */
#define TURN_ROUNDS 5
#define TURN_MIN_OPS 5000

/* The three modes over the same operations. The tiercache and redis-only caches use their
 * own key prefixes (prefix, base_prefix; both populated), so that one's writes do not
 * publish invalidations into the other's local tier between rounds. */
typedef struct modeset {
    const bench_cfg *cfg;
    const char *workload;
    const char *prefix;
    const char *base_prefix;
    const keyset *ks;
    const ftab *ft;
    size_t vsize;
    size_t local_bytes;
    bool fill_on_miss;
} modeset;

/* Each round's throughput and round trips per operation, by mode. */
typedef struct turns {
    int rounds;
    double ops_s[NMODES][TURN_ROUNDS];
    double rt_per_op[NMODES][TURN_ROUNDS];
} turns;

static int turn_rounds(int threads, const size_t *nops)
{
    size_t least = nops[0];
    for (int t = 1; t < threads; t++)
        if (nops[t] < least)
            least = nops[t];
    size_t n = least / TURN_MIN_OPS;
    return n < 1 ? 1 : n > TURN_ROUNDS ? TURN_ROUNDS : (int)n;
}

/* Thread t's operations are seqs[t][0 .. nwarm_tier[t] + nops[t]): every mode measures the
 * last nops[t] of them, split into rounds taken in turns (round 1 in each mode, then round
 * 2, ...). Before round 1 only, tiercache warms up with all nwarm_tier[t] before them, the
 * baselines with the last nwarm_base[t] (at most nwarm_tier[t]) of those. Results in
 * res[NMODES] (each mode's rounds summed, ratios filled), each round's numbers in *tn. */
static void run_modes(const modeset *ms, int threads, uint32_t *const *seqs,
                      const size_t *nwarm_tier, const size_t *nwarm_base, const size_t *nops,
                      const char *params, result res[NMODES], turns *tn)
{
    unsigned char *wval = malloc(ms->vsize ? ms->vsize : 1);
    if (!wval)
        bench_die("out of memory");
    memset(wval, 'w', ms->vsize);
    run r[NMODES];
    hist *h[NMODES];
    tally sum[NMODES];
    for (int m = 0; m < NMODES; m++) {
        result_init(&res[m], ms->workload, mode_names[m]);
        snprintf(res[m].params, sizeof res[m].params, "%s", params);
        res[m].keys = ms->ks->n;
        res[m].value_size = ms->vsize;
        r[m] = (run){.m = (mode)m,
                     .ft = ms->ft,
                     .ks = ms->ks,
                     .vsize = ms->vsize,
                     .wval = wval,
                     .fill_on_miss = ms->fill_on_miss};
        h[m] = malloc(sizeof *h[m]);
        if (!h[m])
            bench_die("out of memory");
        hist_init(h[m]);
        memset(&sum[m], 0, sizeof sum[m]);
    }
    r[MODE_TIER].c = open_cache(ms->cfg, ms->prefix, ms->local_bytes);
    r[MODE_REDIS].c = open_cache(ms->cfg, ms->base_prefix, 0);

    int rounds = turn_rounds(threads, nops);
    tn->rounds = rounds;
    for (int k = 0; k < rounds; k++) {
        for (int m = 0; m < NMODES; m++) {
            const uint32_t *seq[TCB_MAX_THREADS];
            size_t nw[TCB_MAX_THREADS], n[TCB_MAX_THREADS];
            for (int t = 0; t < threads; t++) {
                size_t lo = nops[t] * (size_t)k / (size_t)rounds;
                size_t hi = nops[t] * (size_t)(k + 1) / (size_t)rounds;
                nw[t] = 0;
                if (k == 0) {
                    nw[t] = m == MODE_TIER ? nwarm_tier[t] : nwarm_base[t];
                    if (nw[t] > nwarm_tier[t])
                        nw[t] = nwarm_tier[t];
                }
                seq[t] = seqs[t] + nwarm_tier[t] + lo - nw[t];
                n[t] = hi - lo;
            }
            tally t;
            run_threads(&r[m], threads, seq, nw, n, h[m], &t);
            tally_add(&sum[m], &t);
            tn->ops_s[m][k] = (double)t.ops / ((double)t.ns / 1e9);
            tn->rt_per_op[m][k] = tally_rt_per_op(&t, r[m].c != NULL);
        }
    }
    for (int m = 0; m < NMODES; m++)
        tally_result(&res[m], threads, &sum[m], r[m].c != NULL, h[m]);
    tc_close(r[MODE_TIER].c);
    tc_close(r[MODE_REDIS].c);
    for (int m = 0; m < NMODES; m++) {
        res[m].vs_redis = res[m].ops_s / res[MODE_REDIS].ops_s;
        res[m].vs_floor = res[m].ops_s / res[MODE_FLOOR].ops_s;
    }
    free(wval);
}

static void print_modes(result res[NMODES])
{
    for (int m = 0; m < NMODES; m++)
        report_latency_row(&res[m]);
}

static int plot_groups(const bench_cfg *cfg, const char *title, result *all, size_t n)
{
    if (!cfg->plot)
        return 0;
    return report_plot_cdf(cfg->plot, title, all, n);
}

/* ------------------------------------------------------------------ zipf */

/* The throughput the local tier's hit ratio allows when local hits cost nothing: the
 * redis-only throughput divided by the share of operations that still take a round trip
 * (for reads, the miss ratio of the local tier). res: the NMODES results of one run. */
static double zipf_bound(const result *res)
{
    double rt = res[MODE_TIER].rt_per_op / res[MODE_REDIS].rt_per_op;
    return res[MODE_REDIS].ops_s / rt;
}

/* tiercache's throughput / the bound, in each round against that round's own bound (so a
 * change in the machine's load between rounds falls on both): the median over the rounds,
 * and the lowest and highest. */
typedef struct bound_ratio {
    double med, lo, hi;
    int rounds;
} bound_ratio;

static bound_ratio zipf_bound_ratio(const turns *tn)
{
    double v[TURN_ROUNDS];
    int n = tn->rounds;
    for (int k = 0; k < n; k++) {
        double rt = tn->rt_per_op[MODE_TIER][k] / tn->rt_per_op[MODE_REDIS][k];
        v[k] = tn->ops_s[MODE_TIER][k] / (tn->ops_s[MODE_REDIS][k] / rt);
    }
    bound_ratio b = {.rounds = n};
    b.med = median(v, n);
    b.lo = v[0];
    b.hi = v[n - 1];
    return b;
}

static int zipf_runs(const bench_cfg *cfg, const int *thr, int nthr, uint64_t ops_default,
                     const char *title_extra)
{
    size_t nkeys = cfg->keys ? cfg->keys : 100000;
    size_t vsize = cfg->value_size;
    uint64_t ops = cfg->ops ? cfg->ops : ops_default;
    if (nkeys > WRITE_BIT - 1)
        bench_die("--keys too large");
    char prefix[80], bprefix[80];
    snprintf(prefix, sizeof prefix, "%sz", cfg->prefix);
    snprintf(bprefix, sizeof bprefix, "%szr", cfg->prefix);

    keyset ks;
    if (keyset_numbered(&ks, "k:", nkeys) != 0)
        bench_die("out of memory");
    zipf z;
    if (zipf_init(&z, nkeys, cfg->zipf_s, cfg->seed) != 0)
        bench_die("out of memory");
    ftab *ft = ftab_new(&ks, vsize);
    if (!ft)
        bench_die("out of memory");
    wl_populate(cfg, prefix, &ks, vsize);
    wl_populate(cfg, bprefix, &ks, vsize);
    size_t charge = wl_local_charge(cfg, prefix, ks.k[0], vsize);
    size_t budget = wl_local_budget(cfg, charge, nkeys);

    char title[256], params[160];
    snprintf(params, sizeof params, "s=%.2f write_frac=%.2f local_bytes=%zu%s", cfg->zipf_s,
             cfg->write_frac, budget, cfg->no_remote_ttl ? " fetch_remote_ttl=0" : "");
    snprintf(title, sizeof title,
             "zipf%s: s=%.2f, %zu keys, %zu-byte values, %.0f%% writes, %llu ops per mode in up "
             "to %d rounds, the modes taking turns; local tier %.2f MB (~%.1f%% of keys at "
             "%zu B/entry)%s",
             title_extra, cfg->zipf_s, nkeys, vsize, cfg->write_frac * 100, (unsigned long long)ops,
             TURN_ROUNDS, (double)budget / 1e6,
             100.0 * (double)budget / (double)charge / (double)nkeys, charge,
             cfg->no_remote_ttl ? "; fills GET alone (fetch_remote_ttl = 0)" : "");
    report_section(title);
    report_latency_head();

    modeset ms = {.cfg = cfg,
                  .workload = "zipf",
                  .prefix = prefix,
                  .base_prefix = bprefix,
                  .ks = &ks,
                  .ft = ft,
                  .vsize = vsize,
                  .local_bytes = budget};
    result *all = calloc((size_t)nthr * NMODES, sizeof *all);
    bound_ratio *vb = calloc((size_t)nthr, sizeof *vb);
    if (!all || !vb)
        bench_die("out of memory");
    for (int ti = 0; ti < nthr; ti++) {
        int threads = thr[ti];
        uint32_t *seqs[TCB_MAX_THREADS];
        size_t nwarm_tier[TCB_MAX_THREADS], nwarm_base[TCB_MAX_THREADS], nops[TCB_MAX_THREADS];
        for (int t = 0; t < threads; t++) {
            nops[t] = ops / (uint64_t)threads;
            /* Warm the local tier to its steady state before measuring: by default twice as
             * many reads as it holds entries, at least half the measured ops. */
            size_t w = cfg->warmup >= 0 ? (size_t)cfg->warmup / (size_t)threads
                                        : (size_t)(budget / charge * 2) / (size_t)threads;
            if (cfg->warmup < 0 && w < nops[t] / 2)
                w = nops[t] / 2;
            nwarm_tier[t] = w;
            nwarm_base[t] = w < 2000 ? w : 2000;
            seqs[t] = malloc((w + nops[t]) * sizeof *seqs[t]);
            if (!seqs[t])
                bench_die("out of memory");
            rng g;
            rng_seed(&g, cfg->seed * 1000003u + (uint64_t)t);
            for (size_t i = 0; i < w + nops[t]; i++) {
                uint32_t k = zipf_next(&z, &g);
                if (cfg->write_frac > 0 && rng_double(&g) < cfg->write_frac)
                    k |= WRITE_BIT;
                seqs[t][i] = k;
            }
        }
        result *res = &all[ti * NMODES];
        turns tn;
        run_modes(&ms, threads, seqs, nwarm_tier, nwarm_base, nops, params, res, &tn);
        print_modes(res);
        vb[ti] = zipf_bound_ratio(&tn);
        if (g_summary.nzipf < TCB_MAX_THREADS) {
            int k = g_summary.nzipf++;
            g_summary.zipf_threads[k] = threads;
            g_summary.zipf_speedup[k] = res[MODE_TIER].vs_redis;
            g_summary.zipf_floor[k] = res[MODE_TIER].vs_floor;
            g_summary.zipf_vs_bound[k] = vb[ti].med;
        }
        if (threads == 1)
            g_summary.zipf_local_hit = res[MODE_TIER].local_hit;
        for (int t = 0; t < threads; t++)
            free(seqs[t]);
    }
    report_printf("  (each thread's ops split into rounds of at least %d, at most %d rounds, "
                  "run in turns: round 1 in every mode, then round 2, ...; both caches stay "
                  "open, each under its own key prefix; a mode's row sums its rounds. Warmup "
                  "before round 1 only, not counted: tiercache %s ops, baselines up to 2000 "
                  "per thread; rt/op = (remote hits + misses + sets + deletes) / ops from "
                  "tc_stats)\n",
                  TURN_MIN_OPS, TURN_ROUNDS,
                  cfg->warmup >= 0 ? "--warmup" : "max(2x local entries, ops/2)");
    for (int ti = 0; ti < nthr; ti++) {
        result *res = &all[ti * NMODES];
        double bound = zipf_bound(res);
        report_printf("  %d thr: tiercache %.2fx redis-only throughput, %.3fx the floor's; "
                      "p50 %.0f ns vs redis-only %.0f ns\n",
                      res[0].threads, res[MODE_TIER].vs_redis, res[MODE_TIER].vs_floor,
                      res[MODE_TIER].p50, res[MODE_REDIS].p50);
        report_printf("         bound from the hit ratio (redis-only ops/s / tiercache rt/op) "
                      "%.1fk ops/s: tiercache reaches %.2fx of it (median of %d rounds, each "
                      "against its own bound; range %.2f-%.2fx; all rounds together %.2fx) "
                      "(target: within 10%%)\n",
                      bound / 1e3, vb[ti].med, vb[ti].rounds, vb[ti].lo, vb[ti].hi,
                      res[MODE_TIER].ops_s / bound);
    }
    for (int ti = 1; ti < nthr; ti++) {
        const result *a = &all[0], *b = &all[ti * NMODES];
        report_printf("  scaling %d -> %d thr (ops/s ratio): tiercache %.2fx, redis-only %.2fx, "
                      "floor %.2fx\n",
                      a->threads, b->threads, b[MODE_TIER].ops_s / a[MODE_TIER].ops_s,
                      b[MODE_REDIS].ops_s / a[MODE_REDIS].ops_s,
                      b[MODE_FLOOR].ops_s / a[MODE_FLOOR].ops_s);
    }
    int rc = plot_groups(cfg, "zipf read latency CDF: tiercache vs redis-only vs floor", all,
                         (size_t)nthr * NMODES);
    for (size_t i = 0; i < (size_t)nthr * NMODES; i++)
        result_free(&all[i]);
    free(all);
    free(vb);
    wl_unpopulate(cfg, prefix);
    wl_unpopulate(cfg, bprefix);
    ftab_free(ft);
    zipf_free(&z);
    keyset_free(&ks);
    return rc;
}

int wl_zipf(const bench_cfg *cfg)
{
    static const int def[] = {1, 2};
    if (cfg->nthreads)
        return zipf_runs(cfg, cfg->threads, cfg->nthreads, 200000, "");
    return zipf_runs(cfg, def, 2, cfg->quick ? 100000 : 200000, "");
}

/* ------------------------------------------------------------------ trace */

int wl_trace(const bench_cfg *cfg)
{
    if (!cfg->trace)
        bench_die("trace: no trace file given");
    keyset ks;
    uint32_t *seq;
    size_t n, skipped;
    if (trace_load(cfg->trace, cfg->ops, &ks, &seq, &n, &skipped) != 0)
        return 1;
    size_t vsize = cfg->value_size;
    char prefix[80], bprefix[80];
    snprintf(prefix, sizeof prefix, "%st", cfg->prefix);
    snprintf(bprefix, sizeof bprefix, "%str", cfg->prefix);
    ftab *ft = ftab_new(&ks, vsize);
    if (!ft)
        bench_die("out of memory");
    wl_populate(cfg, prefix, &ks, vsize);
    wl_populate(cfg, bprefix, &ks, vsize);
    size_t charge = wl_local_charge(cfg, prefix, ks.k[0], vsize);
    size_t budget = wl_local_budget(cfg, charge, ks.n);

    const char *base = strrchr(cfg->trace, '/');
    base = base ? base + 1 : cfg->trace;
    char title[320], params[160];
    snprintf(params, sizeof params, "trace=%s local_bytes=%zu", base, budget);
    snprintf(title, sizeof title,
             "trace %s: %zu accesses (%zu skipped lines), %zu distinct keys, %zu-byte values; "
             "local tier %.2f MB (~%.1f%% of keys at %zu B/entry); replayed cold, no warmup, "
             "in up to %d rounds of at least %d accesses per thread, the modes taking turns",
             base, n, skipped, ks.n, vsize, (double)budget / 1e6,
             100.0 * (double)budget / (double)charge / (double)ks.n, charge, TURN_ROUNDS,
             TURN_MIN_OPS);
    report_section(title);
    report_latency_head();

    static const int def[] = {1};
    const int *thr = cfg->nthreads ? cfg->threads : def;
    int nthr = cfg->nthreads ? cfg->nthreads : 1;
    modeset ms = {.cfg = cfg,
                  .workload = "trace",
                  .prefix = prefix,
                  .base_prefix = bprefix,
                  .ks = &ks,
                  .ft = ft,
                  .vsize = vsize,
                  .local_bytes = budget,
                  .fill_on_miss = true};
    result *all = calloc((size_t)nthr * NMODES, sizeof *all);
    if (!all)
        bench_die("out of memory");
    for (int ti = 0; ti < nthr; ti++) {
        int threads = thr[ti];
        /* Thread t replays accesses t, t + threads, ...: the trace's order, interleaved. */
        uint32_t *seqs[TCB_MAX_THREADS];
        size_t nwarm[TCB_MAX_THREADS], nops[TCB_MAX_THREADS];
        for (int t = 0; t < threads; t++) {
            size_t cnt = n / (size_t)threads + ((size_t)t < n % (size_t)threads);
            size_t w = cfg->warmup > 0 ? (size_t)cfg->warmup / (size_t)threads : 0;
            seqs[t] = malloc((w + cnt + 1) * sizeof *seqs[t]);
            if (!seqs[t])
                bench_die("out of memory");
            /* A warmup (only with --warmup) replays the trace's start before measuring. */
            for (size_t i = 0; i < w; i++)
                seqs[t][i] = seq[(i * (size_t)threads + (size_t)t) % n];
            for (size_t i = 0; i < cnt; i++)
                seqs[t][w + i] = seq[i * (size_t)threads + (size_t)t];
            nwarm[t] = w;
            nops[t] = cnt;
        }
        result *res = &all[ti * NMODES];
        turns tn;
        run_modes(&ms, threads, seqs, nwarm, nwarm, nops, params, res, &tn);
        print_modes(res);
        report_printf("  %d thr: tiercache %.2fx redis-only throughput, %.3fx the floor's "
                      "(%d rounds in turns)\n",
                      threads, res[MODE_TIER].vs_redis, res[MODE_TIER].vs_floor, tn.rounds);
        for (int t = 0; t < threads; t++)
            free(seqs[t]);
    }
    int rc = plot_groups(cfg, "trace replay latency CDF: tiercache vs redis-only vs floor", all,
                         (size_t)nthr * NMODES);
    for (size_t i = 0; i < (size_t)nthr * NMODES; i++)
        result_free(&all[i]);
    free(all);
    wl_unpopulate(cfg, prefix);
    wl_unpopulate(cfg, bprefix);
    ftab_free(ft);
    free(seq);
    keyset_free(&ks);
    return rc;
}

/* ------------------------------------------------------------------ hot path */

#define HOT_REPS 5

/* The timed loops. Each is its own function, never inlined, so that a profiler can count
 * one alone (docs/performance.md: valgrind --tool=callgrind --toggle-collect=hot_local_loop).
 * They read the same keys round-robin and copy the value out. */
static inline int hot_get(tc_cache *c, const char *key, unsigned char *buf, size_t vsize)
{
    tc_value v;
    if (tc_get(c, key, &v) != TC_OK)
        return 1;
    memcpy(buf, v.data, v.len < vsize ? v.len : vsize);
    tc_value_release(&v);
    return 0;
}

/* Local hits (the cache's local tier holds every key). */
static __attribute__((noinline)) uint64_t hot_local_loop(tc_cache *c, const keyset *ks,
                                                         size_t iters, unsigned char *buf,
                                                         size_t vsize)
{
    uint64_t errors = 0;
    size_t nk = ks->n, j = 0;
    for (size_t i = 0; i < iters; i++) {
        errors += (uint64_t)hot_get(c, keyset_key(ks, j), buf, vsize);
        j = j + 1 == nk ? 0 : j + 1;
    }
    return errors;
}

/* Redis GETs (the cache's local tier is off); gives up after 100 errors, which at the
 * command timeout would take long. */
static __attribute__((noinline)) uint64_t hot_redis_loop(tc_cache *c, const keyset *ks,
                                                         size_t iters, unsigned char *buf,
                                                         size_t vsize)
{
    uint64_t errors = 0;
    size_t nk = ks->n, j = 0;
    for (size_t i = 0; i < iters && errors < 100; i++) {
        errors += (uint64_t)hot_get(c, keyset_key(ks, j), buf, vsize);
        j = j + 1 == nk ? 0 : j + 1;
    }
    return errors;
}

static __attribute__((noinline)) uint64_t hot_floor_loop(const ftab *ft, const keyset *ks,
                                                         size_t iters, unsigned char *buf)
{
    uint64_t errors = 0;
    size_t nk = ks->n, j = 0;
    for (size_t i = 0; i < iters; i++) {
        const char *key = keyset_key(ks, j);
        j = j + 1 == nk ? 0 : j + 1;
        errors += !ftab_get(ft, key, buf);
    }
    return errors;
}

/* The baseline of the miss path: the same GETs with hiredis alone (one connection, one
 * GET per read, the reply copied out), against the same server and Redis keys. */
static redisContext *plain_connect(const bench_cfg *cfg)
{
    tc_url u;
    if (tc__url_parse(cfg->redis_url, &u) != TC_OK)
        return NULL;
    struct timeval tv = {2, 0};
    redisContext *rc = u.kind == TC_URL_UNIX ? redisConnectUnixWithTimeout(u.path, tv)
                                             : redisConnectWithTimeout(u.host, u.port, tv);
    if (rc && !rc->err && u.password) {
        redisReply *r = u.user ? redisCommand(rc, "AUTH %s %s", u.user, u.password)
                               : redisCommand(rc, "AUTH %s", u.password);
        if (r)
            freeReplyObject(r);
    }
    if (rc && !rc->err && u.db) {
        redisReply *r = redisCommand(rc, "SELECT %d", u.db);
        if (r)
            freeReplyObject(r);
    }
    tc__url_free(&u);
    if (rc && rc->err) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

static __attribute__((noinline)) uint64_t hot_hiredis_loop(redisContext *rc, char **rkeys,
                                                           size_t nk, size_t iters,
                                                           unsigned char *buf, size_t vsize)
{
    uint64_t errors = 0;
    size_t j = 0;
    for (size_t i = 0; i < iters && errors < 100; i++) {
        const char *argv[2] = {"GET", rkeys[j]};
        j = j + 1 == nk ? 0 : j + 1;
        redisReply *r = redisCommandArgv(rc, 2, argv, NULL);
        if (!r || r->type != REDIS_REPLY_STRING) {
            errors++;
        } else {
            memcpy(buf, r->str, (size_t)r->len < vsize ? (size_t)r->len : vsize);
        }
        if (r)
            freeReplyObject(r);
    }
    return errors;
}

/* The Redis keys of ks under prefix, as the library names them, for the plain client. */
static char **plain_rkeys(const char *prefix, const keyset *ks)
{
    char **rkeys = calloc(ks->n, sizeof *rkeys);
    if (!rkeys)
        bench_die("out of memory");
    for (size_t i = 0; i < ks->n; i++) {
        size_t len = strlen(prefix) + strlen(ks->k[i]) + 4;
        rkeys[i] = malloc(len);
        if (!rkeys[i])
            bench_die("out of memory");
        snprintf(rkeys[i], len, "%s:1:%s", prefix, ks->k[i]);
    }
    return rkeys;
}

enum { HOT_LOCAL, HOT_FLOOR, HOT_REDIS, HOT_PLAIN, HOT_KINDS };

/* What the timed loops run against. */
typedef struct hot_set {
    tc_cache *tier, *redis; /* local tier on (primed), and off */
    const ftab *ft;
    const keyset *ks;
    redisContext *plain; /* NULL: no plain hiredis baseline */
    char **rkeys;        /* the plain client's keys */
    unsigned char *buf;
    size_t vsize;
} hot_set;

static uint64_t hot_run(const hot_set *hs, int which, size_t iters)
{
    switch (which) {
    case HOT_LOCAL:
        return hot_local_loop(hs->tier, hs->ks, iters, hs->buf, hs->vsize);
    case HOT_REDIS:
        return hot_redis_loop(hs->redis, hs->ks, iters, hs->buf, hs->vsize);
    case HOT_PLAIN:
        return hot_hiredis_loop(hs->plain, hs->rkeys, hs->ks->n, iters, hs->buf, hs->vsize);
    default:
        return hot_floor_loop(hs->ft, hs->ks, iters, hs->buf);
    }
}

/* Times HOT_REPS loops of iters operations for each of the n kinds in which[], taking turns
 * (a, b, a, b, ...) so that a change in the machine's load falls on all of them alike, which
 * keeps their ratios steady on a shared machine. ns[i]: the median for which[i], in ns per
 * operation; errors[i] accumulates its errors. */
static void hot_loops(const hot_set *hs, const int *which, int n, size_t iters, double *ns,
                      uint64_t *errors)
{
    double per[HOT_KINDS][HOT_REPS];
    for (int rep = 0; rep < HOT_REPS; rep++) {
        for (int i = 0; i < n; i++) {
            uint64_t t0 = now_ns();
            errors[i] += hot_run(hs, which[i], iters);
            per[i][rep] = (double)(now_ns() - t0) / (double)iters;
        }
    }
    for (int i = 0; i < n; i++) {
        qsort(per[i], HOT_REPS, sizeof per[i][0], cmp_double);
        ns[i] = per[i][HOT_REPS / 2];
    }
}

/* One thread of a multi-threaded hot loop: its own buffer, and its own rotation of the keys
 * so that the threads do not walk the keys in step. */
typedef struct hot_thread {
    hot_set hs;
    keyset ks;
    int which;
    size_t iters;
    uint64_t errors;
    pthread_barrier_t *bar;
    pthread_t tid;
} hot_thread;

static void *hot_thread_main(void *arg)
{
    hot_thread *t = arg;
    pthread_barrier_wait(t->bar);
    t->errors = hot_run(&t->hs, t->which, t->iters);
    return NULL;
}

/* Operations per second of threads running the hot loop `which` at once, iters each. */
static double hot_threads_ops(const hot_set *hs, int which, int threads, size_t iters,
                              uint64_t *errors)
{
    hot_thread *t = calloc((size_t)threads, sizeof *t);
    pthread_barrier_t bar;
    if (!t || pthread_barrier_init(&bar, NULL, (unsigned)threads + 1) != 0)
        bench_die("out of memory");
    size_t n = hs->ks->n;
    for (int i = 0; i < threads; i++) {
        t[i].hs = *hs;
        t[i].ks = *hs->ks;
        t[i].ks.k = malloc(n * sizeof *t[i].ks.k);
        t[i].ks.stride = 0; /* each thread starts at its own place in the keys: see k */
        t[i].hs.buf = calloc(1, hs->vsize ? hs->vsize : 1);
        if (!t[i].ks.k || !t[i].hs.buf)
            bench_die("out of memory");
        for (size_t j = 0; j < n; j++)
            t[i].ks.k[j] = hs->ks->k[(j + (size_t)i * n / (size_t)threads) % n];
        t[i].hs.ks = &t[i].ks;
        t[i].which = which;
        t[i].iters = iters;
        t[i].bar = &bar;
        if (pthread_create(&t[i].tid, NULL, hot_thread_main, &t[i]) != 0)
            bench_die("pthread_create failed");
    }
    pthread_barrier_wait(&bar);
    uint64_t t0 = now_ns();
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i].tid, NULL);
        *errors += t[i].errors;
        free(t[i].ks.k);
        free(t[i].hs.buf);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    pthread_barrier_destroy(&bar);
    free(t);
    return (double)threads * (double)iters / secs;
}

/* Local hits and the floor with each thread count of thr[], HOT_REPS runs of each, all of
 * them taking turns (local and floor, at every thread count, then again) so that the
 * machine's load falls on every ratio alike: does the read path scale with threads? */
static void hot_scaling(const hot_set *hs, const int *thr, int nthr, size_t iters)
{
    report_printf("  local-hit throughput with threads sharing one cache (median of %d runs of "
                  "%zu ops per thread, taking turns with the floor and the other thread "
                  "counts):\n",
                  HOT_REPS, iters);
    double per[TCB_MAX_THREADS][2][HOT_REPS];
    uint64_t errors[TCB_MAX_THREADS] = {0};
    for (int rep = 0; rep < HOT_REPS; rep++) {
        for (int ti = 0; ti < nthr; ti++) {
            per[ti][0][rep] = hot_threads_ops(hs, HOT_LOCAL, thr[ti], iters, &errors[ti]);
            per[ti][1][rep] = hot_threads_ops(hs, HOT_FLOOR, thr[ti], iters, &errors[ti]);
        }
    }
    double base[2] = {0, 0};
    for (int ti = 0; ti < nthr; ti++) {
        double med[2];
        for (int i = 0; i < 2; i++) {
            qsort(per[ti][i], HOT_REPS, sizeof per[ti][i][0], cmp_double);
            med[i] = per[ti][i][HOT_REPS / 2];
            if (ti == 0)
                base[i] = med[i];
        }
        report_printf("    %d thr: local hit %6.2f M ops/s (%.2fx %d thr), floor %6.2f M ops/s "
                      "(%.2fx), errors %llu\n",
                      thr[ti], med[0] / 1e6, med[0] / base[0], thr[0], med[1] / 1e6,
                      med[1] / base[1], (unsigned long long)errors[ti]);
    }
}

/* The same operations timed one by one (latency percentiles; includes a clock read). */
static void hot_hist(tc_cache *c, const ftab *ft, const keyset *ks, size_t iters,
                     unsigned char *buf, size_t vsize, hist *h)
{
    size_t nk = ks->n, j = 0;
    uint64_t t = now_ns();
    for (size_t i = 0; i < iters; i++) {
        const char *key = keyset_key(ks, j);
        j = j + 1 == nk ? 0 : j + 1;
        if (ft) {
            (void)ftab_get(ft, key, buf);
        } else {
            tc_value v;
            if (tc_get(c, key, &v) == TC_OK) {
                memcpy(buf, v.data, v.len < vsize ? v.len : vsize);
                tc_value_release(&v);
            }
        }
        uint64_t t2 = now_ns();
        hist_record(h, t2 - t);
        t = t2;
    }
}

/* --tls: the miss path and the local hit over TLS next to plaintext, timed in turns
 * (plain miss, TLS miss, plain hit, TLS hit, ...) against twin servers holding the same keys. */
static void hot_tls(const bench_cfg *cfg, const char *prefix, const keyset *ks, tc_cache *tier,
                    tc_cache *redis, unsigned char *buf, size_t vsize, size_t iters, size_t riters)
{
    bench_cfg tcfg = *cfg;
    tcfg.redis_url = cfg->tls_url;
    wl_populate(&tcfg, prefix, ks, vsize);
    tc_cache *ttier = open_cache(&tcfg, prefix, (size_t)64 << 20);
    tc_cache *tredis = open_cache(&tcfg, prefix, 0);
    for (size_t i = 0; i < ks->n * 2; i++) {
        tc_value v;
        if (tc_get(ttier, keyset_key(ks, i % ks->n), &v) == TC_OK)
            tc_value_release(&v);
    }
    tc_cache *miss[2] = {redis, tredis}, *hit[2] = {tier, ttier};
    double per[4][HOT_REPS];
    uint64_t errors = 0;
    for (int rep = 0; rep < HOT_REPS; rep++) {
        for (int i = 0; i < 4; i++) {
            size_t n = i < 2 ? riters / HOT_REPS : iters;
            uint64_t t0 = now_ns();
            errors += i < 2 ? hot_redis_loop(miss[i], ks, n, buf, vsize)
                            : hot_local_loop(hit[i - 2], ks, n, buf, vsize);
            per[i][rep] = (double)(now_ns() - t0) / (double)n;
        }
    }
    double ns[4];
    for (int i = 0; i < 4; i++) {
        qsort(per[i], HOT_REPS, sizeof per[i][0], cmp_double);
        ns[i] = per[i][HOT_REPS / 2];
    }
    report_printf("  over TLS (twin servers, TLS 1.3; median of %d turns, %llu errors):\n"
                  "    miss path: tc_get (local tier off) over TLS / plaintext = %.3fx "
                  "(%.0f ns vs %.0f ns)\n"
                  "    local hit with TLS / without                      = %.3fx "
                  "(%.1f ns vs %.1f ns; target: the same)\n",
                  HOT_REPS, (unsigned long long)errors, ns[1] / ns[0], ns[1], ns[0], ns[3] / ns[2],
                  ns[3], ns[2]);
    tc_close(ttier);
    tc_close(tredis);
}

/* Shadow reads at the advised rate: the local hit with shadow_rate 10000 next to one
 * without (timed in turns, median of HOT_REPS), and the Redis GETs the samples added. */
#define HOT_SHADOW_RATE 10000u
static void hot_shadow(const bench_cfg *cfg, const char *prefix, const keyset *ks, tc_cache *tier,
                       unsigned char *buf, size_t vsize, size_t iters)
{
    tc_cache *sh = open_cache_shadow(cfg, prefix, (size_t)64 << 20, HOT_SHADOW_RATE);
    for (size_t i = 0; i < ks->n * 2; i++) {
        tc_value v;
        if (tc_get(sh, keyset_key(ks, i % ks->n), &v) == TC_OK)
            tc_value_release(&v);
    }
    tc_stats s0, s1;
    tc_stats_get(sh, &s0);
    double per[2][HOT_REPS];
    uint64_t errors = 0, t_on = 0;
    for (int rep = 0; rep < HOT_REPS; rep++) {
        for (int i = 0; i < 2; i++) {
            uint64_t t0 = now_ns();
            errors += hot_local_loop(i ? sh : tier, ks, iters, buf, vsize);
            uint64_t dt = now_ns() - t0;
            per[i][rep] = (double)dt / (double)iters;
            if (i)
                t_on += dt;
        }
    }
    /* Let the worker finish what was queued before the counters are read. */
    struct timespec ts = {0, 200 * 1000000};
    nanosleep(&ts, NULL);
    tc_stats_get(sh, &s1);
    double ns[2];
    for (int i = 0; i < 2; i++) {
        qsort(per[i], HOT_REPS, sizeof per[i][0], cmp_double);
        ns[i] = per[i][HOT_REPS / 2];
    }
    uint64_t hits = s1.local_hits - s0.local_hits, sampled = s1.shadow_sampled - s0.shadow_sampled;
    uint64_t dropped = s1.shadow_dropped - s0.shadow_dropped;
    report_printf("  shadow reads, 1 in %u local hits (median of %d turns, %llu errors):\n"
                  "    local hit with shadow reads / without = %.3fx (%.1f ns vs %.1f ns; "
                  "target: the same)\n"
                  "    Redis load: %llu GETs for %llu local hits (%.1f per million; %.0f GETs/s "
                  "at this loop's %.1fM hits/s); %llu dropped, %llu diverged\n",
                  HOT_SHADOW_RATE, HOT_REPS, (unsigned long long)errors, ns[1] / ns[0], ns[1],
                  ns[0], (unsigned long long)sampled, (unsigned long long)hits,
                  hits ? 1e6 * (double)sampled / (double)hits : 0.0,
                  t_on ? (double)sampled * 1e9 / (double)t_on : 0.0,
                  t_on ? (double)hits * 1e3 / (double)t_on : 0.0, (unsigned long long)dropped,
                  (unsigned long long)(s1.shadow_diverged - s0.shadow_diverged));
    tc_close(sh);
}

int wl_hotpath(const bench_cfg *cfg, bool with_zipf)
{
    size_t nk = cfg->hot_keys > 0 ? (size_t)cfg->hot_keys : 8;
    size_t vsize = cfg->value_size;
    size_t iters = cfg->ops ? cfg->ops : (cfg->quick ? 500000 : 1000000);
    size_t riters = iters / 100 < 5000 ? 5000 : iters / 100;
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%sh", cfg->prefix);
    keyset ks;
    if (keyset_numbered(&ks, "hot:", nk) != 0)
        bench_die("out of memory");
    ftab *ft = ftab_new(&ks, vsize);
    unsigned char *buf = calloc(1, vsize ? vsize : 1);
    if (!ft || !buf)
        bench_die("out of memory");
    wl_populate(cfg, prefix, &ks, vsize);

    char title[256];
    snprintf(title, sizeof title,
             "hot path: single thread, %zu hot keys round-robin, %zu-byte values; ns/op = "
             "median of %d timed loops of %zu ops, taking turns with the baselines (Redis GET: "
             "%zu ops)",
             nk, vsize, HOT_REPS, iters, riters);
    report_section(title);
    report_printf("  %-34s %9s %8s %8s %8s %8s %6s\n", "operation", "ns/op", "p50", "p99", "p99.9",
                  "max", "err");

    tc_cache *tier = open_cache(cfg, prefix, (size_t)64 << 20);
    tc_cache *redis = open_cache(cfg, prefix, 0);
    uint64_t err[3] = {0, 0, 0};
    /* Prime the local tier: the first read of each key goes to Redis. */
    for (size_t i = 0; i < nk * 2; i++) {
        tc_value v;
        if (tc_get(tier, ks.k[i % nk], &v) == TC_OK)
            tc_value_release(&v);
    }
    hot_set hs = {.tier = tier,
                  .redis = redis,
                  .ft = ft,
                  .ks = &ks,
                  .plain = plain_connect(cfg),
                  .buf = buf,
                  .vsize = vsize};
    if (hs.plain)
        hs.rkeys = plain_rkeys(prefix, &ks);
    tc_stats s0, s1;
    tc_stats_get(tier, &s0);
    double ns[4] = {0, 0, 0, 0};
    static const int mem_kinds[] = {HOT_LOCAL, HOT_FLOOR}, net_kinds[] = {HOT_REDIS, HOT_PLAIN};
    hot_loops(&hs, mem_kinds, 2, iters, ns, err);
    tc_stats_get(tier, &s1);
    uint64_t local = s1.local_hits - s0.local_hits, reads = (uint64_t)iters * HOT_REPS;
    uint64_t plain_err = 0, net_err[2] = {0, 0};
    hot_loops(&hs, net_kinds, hs.plain ? 2 : 1, riters / HOT_REPS, ns + 2, net_err);
    err[2] = net_err[0];
    plain_err = net_err[1];
    double plain = ns[3];

    static const char *const names[3] = {"local hit (tc_get+copy+release)",
                                         "floor (hash lookup+memcpy)",
                                         "Redis GET (tc_get, local tier off)"};
    static const char *const modes[3] = {"local-hit", "floor", "redis-get"};
    result res[3];
    for (int i = 0; i < 3; i++) {
        hist *h = malloc(sizeof *h);
        if (!h)
            bench_die("out of memory");
        hist_init(h);
        size_t n = i == 2 ? riters : iters / 2;
        hot_hist(i == 0 ? tier : i == 2 ? redis : NULL, i == 1 ? ft : NULL, &ks, n, buf, vsize, h);
        result_init(&res[i], "hotpath", modes[i]);
        snprintf(res[i].params, sizeof res[i].params, "hot_keys=%zu", nk);
        res[i].threads = 1;
        res[i].keys = nk;
        res[i].value_size = vsize;
        res[i].ops = i == 2 ? riters : iters;
        res[i].errors = err[i];
        result_latency(&res[i], h);
        res[i].mean_ns = ns[i];
        res[i].ops_s = 1e9 / ns[i];
        res[i].rt_per_op = i == 2 ? 1 : 0;
        res[i].h = h;
    }
    for (int i = 0; i < 3; i++) {
        res[i].vs_redis = res[i].ops_s / res[2].ops_s;
        res[i].vs_floor = res[i].ops_s / res[1].ops_s;
        char a[16], b[16], c[16], d[16];
        report_printf("  %-34s %9.1f %8s %8s %8s %8s %6llu\n", names[i], ns[i],
                      report_fmt_ns(res[i].p50, a, sizeof a),
                      report_fmt_ns(res[i].p99, b, sizeof b),
                      report_fmt_ns(res[i].p999, c, sizeof c),
                      report_fmt_ns(res[i].max_ns, d, sizeof d), (unsigned long long)err[i]);
        report_record(&res[i]);
    }
    if (plain > 0)
        report_printf("  %-34s %9.1f %8s %8s %8s %8s %6llu\n", "plain hiredis GET (baseline)",
                      plain, "", "", "", "", (unsigned long long)plain_err);
    report_printf("  local hit / floor     = %.2fx   (target: within 3x)\n", ns[0] / ns[1]);
    if (plain > 0)
        report_printf("  miss path: tc_get (local tier off) / plain hiredis GET = %.3fx "
                      "(target: at most 1.05x)\n",
                      ns[2] / plain);
    report_printf("  Redis GET / local hit = %.0fx    (target: at least 100x)\n", ns[2] / ns[0]);
    report_printf("  (both copy the value out; the local tier answered %.2f%% of the local-hit "
                  "loop's reads; percentiles from %zu separately timed ops, each including a "
                  "clock read)\n",
                  100.0 * (double)local / (double)reads, iters / 2);
    hot_shadow(cfg, prefix, &ks, tier, buf, vsize, iters);
    if (cfg->tls_url)
        hot_tls(cfg, prefix, &ks, tier, redis, buf, vsize, iters, riters);
    /* Not under --hot-only unless asked for: a profiler counting hot_local_loop would count
     * the threads' loops too. */
    static const int def_thr[] = {1, 2};
    if (cfg->nthreads)
        hot_scaling(&hs, cfg->threads, cfg->nthreads, iters);
    else if (!cfg->hot_only)
        hot_scaling(&hs, def_thr, 2, iters);
    g_summary.hit_ns = ns[0];
    g_summary.floor_ns = ns[1];
    g_summary.redis_get_ns = ns[2];
    for (int i = 0; i < 3; i++)
        result_free(&res[i]);
    if (hs.plain) {
        for (size_t i = 0; i < ks.n; i++)
            free(hs.rkeys[i]);
        free(hs.rkeys);
        redisFree(hs.plain);
    }
    tc_close(tier);
    tc_close(redis);
    wl_unpopulate(cfg, prefix);
    ftab_free(ft);
    free(buf);
    keyset_free(&ks);
    if (with_zipf) {
        static const int thr[] = {1, 2};
        return zipf_runs(cfg, thr, 2, cfg->quick ? 100000 : 200000, " (hot path throughput)");
    }
    return 0;
}

/* ------------------------------------------------------------------ coherence */

/* Shared between the bench and its writer and reader processes (MAP_SHARED|MAP_ANONYMOUS,
 * mapped before the forks). The atomics are lock-free, hence address-free: they work across
 * processes. Timestamps are CLOCK_MONOTONIC, the same clock in every process. */
typedef struct coh_shm {
    atomic_int writer_up, reader_up, abort;
    atomic_llong ready; /* the last version the reader holds (locally, when its tier is on) */
    int64_t n;          /* versions to write: 1..n */
    uint64_t writer_errors, reader_errors, reader_reads, timeouts;
    tc_stats reader_stats;
    uint64_t t_start[]; /* then t_ret[n + 1], t_seen[n + 1] */
} coh_shm;

#define COH_WAIT_NS (3ull * 1000000000ull)

static int64_t parse_version(const tc_value *v)
{
    char tmp[32];
    size_t n = v->len < sizeof tmp - 1 ? v->len : sizeof tmp - 1;
    memcpy(tmp, v->data, n);
    tmp[n] = '\0';
    return strtoll(tmp, NULL, 10);
}

/* Reads the hot key; the version it holds, or -1. */
static int64_t coh_read(tc_cache *c, const char *key)
{
    tc_value v;
    if (tc_get(c, key, &v) != TC_OK)
        return -1;
    int64_t ver = parse_version(&v);
    tc_value_release(&v);
    return ver;
}

/* True once a read of key is answered by c's local tier (checked through tc_stats). */
static bool coh_wait_local(tc_cache *c, const char *key, uint64_t deadline)
{
    while (now_ns() < deadline) {
        tc_stats a, b;
        tc_stats_get(c, &a);
        (void)coh_read(c, key);
        tc_stats_get(c, &b);
        if (b.local_hits > a.local_hits)
            return true;
    }
    return false;
}

static void coh_writer(const bench_cfg *cfg, const char *prefix, coh_shm *m)
{
    uint64_t *t_ret = m->t_start + m->n + 1;
    tc_cache *c = open_cache(cfg, prefix, (size_t)1 << 20);
    const char *key = "coh:hot";
    if (tc_set(c, key, "0", 1, TC_TTL_FOREVER) != TC_OK)
        m->writer_errors++;
    atomic_store(&m->writer_up, 1);
    uint64_t deadline = now_ns() + 10 * COH_WAIT_NS;
    while (!atomic_load(&m->reader_up) && !atomic_load(&m->abort) && now_ns() < deadline)
        sleep_ns(20000);
    rng g;
    rng_seed(&g, cfg->seed ^ 0xc0ffeeull);
    for (int64_t i = 1; i <= m->n && !atomic_load(&m->abort); i++) {
        /* Wait (without spinning: the reader and Redis need the cores) until the reader
         * holds version i - 1, then let it settle into local hits for 100..600 us. */
        uint64_t until = now_ns() + COH_WAIT_NS;
        while (atomic_load(&m->ready) < i - 1 && !atomic_load(&m->abort) && now_ns() < until)
            sleep_ns(20000);
        if (atomic_load(&m->ready) < i - 1) {
            m->timeouts++;
            atomic_store(&m->abort, 1);
            break;
        }
        sleep_ns(100000 + rng_next(&g) % 500000);
        char val[24];
        int len = snprintf(val, sizeof val, "%lld", (long long)i);
        m->t_start[i] = now_ns();
        tc_status st = tc_set(c, key, val, (size_t)len, TC_TTL_FOREVER);
        t_ret[i] = now_ns();
        if (st != TC_OK)
            m->writer_errors++;
    }
    tc_close(c);
}

static void coh_reader(const bench_cfg *cfg, const char *prefix, coh_shm *m, bool local)
{
    uint64_t *t_seen = m->t_start + 2 * (m->n + 1);
    uint64_t deadline = now_ns() + 10 * COH_WAIT_NS;
    while (!atomic_load(&m->writer_up) && !atomic_load(&m->abort) && now_ns() < deadline)
        sleep_ns(20000);
    tc_cache *c = open_cache(cfg, prefix, local ? (size_t)1 << 20 : 0);
    const char *key = "coh:hot";
    while (coh_read(c, key) != 0 && now_ns() < deadline)
        sleep_ns(1000);
    if (local && !coh_wait_local(c, key, deadline))
        atomic_store(&m->abort, 1);
    atomic_store(&m->ready, 0);
    atomic_store(&m->reader_up, 1);
    int64_t last = 0;
    uint64_t reads = 0, errors = 0, progress = now_ns();
    while (last < m->n && !atomic_load(&m->abort)) {
        int64_t v = coh_read(c, key);
        uint64_t t = now_ns();
        reads++;
        if (v < 0) {
            errors++;
        } else if (v > last) {
            t_seen[v] = t;
            last = v;
            progress = t;
            /* The next write waits until this version is held locally, so every write
             * is measured against a live local copy. */
            if (local && !coh_wait_local(c, key, t + COH_WAIT_NS))
                break;
            atomic_store(&m->ready, v);
        } else if (t - progress > 2 * COH_WAIT_NS) {
            m->timeouts++;
            atomic_store(&m->abort, 1);
        }
    }
    tc_stats_get(c, &m->reader_stats);
    m->reader_reads = reads;
    m->reader_errors = errors;
    tc_close(c);
}

pid_t bench_fork(void)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        bench_die("fork: %s", strerror(errno));
    if (pid == 0) {
        /* Die with the bench, whatever way it ends. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(3);
    } else {
        bench_child_add(pid);
    }
    return pid;
}

int bench_reap(pid_t pid, uint64_t deadline)
{
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            status = -1;
            break;
        }
        sleep_ns(1000000);
    }
    bench_child_remove(pid);
    return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int coh_run(const bench_cfg *cfg, int64_t n, bool local, result *res, uint64_t *early,
                   uint64_t *lost)
{
    char prefix[80];
    snprintf(prefix, sizeof prefix, "%sc%d", cfg->prefix, local);
    size_t size = sizeof(coh_shm) + 3 * (size_t)(n + 1) * sizeof(uint64_t);
    coh_shm *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        bench_die("mmap: %s", strerror(errno));
    memset(m, 0, size);
    m->n = n;
    atomic_store(&m->ready, -1);

    pid_t w = bench_fork();
    if (w == 0) {
        coh_writer(cfg, prefix, m);
        _exit(0);
    }
    pid_t r = bench_fork();
    if (r == 0) {
        coh_reader(cfg, prefix, m, local);
        _exit(0);
    }
    uint64_t deadline = now_ns() + 30ull * 1000000000u + (uint64_t)n * 20000000u;
    int ws = bench_reap(w, deadline);
    int rs = bench_reap(r, deadline);

    uint64_t *t_ret = m->t_start + n + 1, *t_seen = m->t_start + 2 * (n + 1);
    hist *h = malloc(sizeof *h);
    if (!h)
        bench_die("out of memory");
    hist_init(h);
    *early = *lost = 0;
    for (int64_t i = 1; i <= n; i++) {
        if (!t_ret[i] || !t_seen[i]) {
            (*lost)++;
            continue;
        }
        /* The reader may see the new value before the writer's call has returned (the
         * invalidation travels with the write): that is a delay of zero. */
        if (t_seen[i] < t_ret[i])
            (*early)++;
        hist_record(h, t_seen[i] > t_ret[i] ? t_seen[i] - t_ret[i] : 0);
    }
    result_init(res, "coherence", local ? "tiercache (broadcast)" : "redis-only (local off)");
    snprintf(res->params, sizeof res->params,
             "delay = reader sees new value - writer's tc_set returned; early=%llu lost=%llu",
             (unsigned long long)*early, (unsigned long long)*lost);
    res->threads = 1;
    res->keys = 1;
    res->value_size = 0;
    res->ops = (uint64_t)n;
    res->errors = m->writer_errors + m->reader_errors + m->timeouts + (ws != 0) + (rs != 0);
    result_latency(res, h);
    res->h = h;
    if (m->reader_reads) {
        const tc_stats *s = &m->reader_stats;
        double reads = (double)(s->local_hits + s->remote_hits + s->misses);
        if (reads > 0) {
            res->local_hit = (double)s->local_hits / reads;
            res->remote_hit = (double)s->remote_hits / reads;
            res->miss = (double)s->misses / reads;
        }
    }
    munmap(m, size);
    wl_unpopulate(cfg, prefix);
    return (ws != 0 || rs != 0) ? 1 : 0;
}

int wl_coherence(const bench_cfg *cfg)
{
    int64_t n = cfg->ops ? (int64_t)cfg->ops : (cfg->quick ? 200 : 500);
    char title[256];
    snprintf(title, sizeof title,
             "coherence: a writer and a reader process, each with its own tc_cache; %lld "
             "writes of one hot key, the reader polling tc_get",
             (long long)n);
    report_section(title);
    report_printf("  %-24s %6s %8s %8s %8s %8s %6s %5s %7s %5s\n", "reader", "writes", "p50", "p99",
                  "p99.9", "max", "early", "lost", "local", "err");
    result res[2];
    uint64_t early[2], lost[2];
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        rc |= coh_run(cfg, n, i == 0, &res[i], &early[i], &lost[i]);
        char a[16], b[16], c[16], d[16];
        report_printf("  %-24s %6llu %8s %8s %8s %8s %6llu %5llu %6.1f%% %5llu\n", res[i].mode,
                      (unsigned long long)res[i].ops, report_fmt_ns(res[i].p50, a, sizeof a),
                      report_fmt_ns(res[i].p99, b, sizeof b),
                      report_fmt_ns(res[i].p999, c, sizeof c),
                      report_fmt_ns(res[i].max_ns, d, sizeof d), (unsigned long long)early[i],
                      (unsigned long long)lost[i],
                      isnan(res[i].local_hit) ? 0.0 : res[i].local_hit * 100,
                      (unsigned long long)res[i].errors);
    }
    res[0].vs_redis = res[0].p50 / res[1].p50;
    res[1].vs_redis = 1;
    for (int i = 0; i < 2; i++)
        report_record(&res[i]);
    report_printf("  delay: from the writer's tc_set returning to the reader's tc_get returning "
                  "the new value (CLOCK_MONOTONIC across processes; 'early': seen before the "
                  "write returned, counted as 0; 'local': the reader's local hit ratio). "
                  "tiercache p50 = %.2fx redis-only's\n",
                  res[0].vs_redis);
    g_summary.coh_p50 = res[0].p50;
    g_summary.coh_p99 = res[0].p99;
    g_summary.coh_max = res[0].max_ns;
    if (cfg->plot)
        rc |= report_plot_cdf(cfg->plot,
                              "invalidation delay CDF (write returned -> reader sees it)", res, 2);
    for (int i = 0; i < 2; i++)
        result_free(&res[i]);
    return rc;
}

/* ------------------------------------------------------------------ stampede */

/* Every thread asks for the same cold key at the same moment (a barrier per key); the
 * loader takes load_ns. With single-flight, one load per key; without (the naive
 * cache-aside baseline: tc_get, on a miss load and tc_set), one per thread. */
typedef enum st_mode { ST_TIER, ST_REDIS, ST_NAIVE, NST } st_mode;

static const char *const st_names[NST] = {"get_or_set", "get_or_set (local off)",
                                          "naive get+load+set"};

typedef struct st_run {
    st_mode m;
    tc_cache *c;
    const keyset *ks;
    const unsigned char *val;
    size_t vsize;
    uint64_t load_ns;
    atomic_ullong loads;
    pthread_barrier_t bar;
} st_run;

typedef struct st_worker {
    st_run *r;
    hist h;
    uint64_t errors, t_end;
    pthread_t tid;
} st_worker;

static tc_status st_loader(void *arg, const char *key, tc_buf *out)
{
    st_run *r = arg;
    (void)key;
    atomic_fetch_add(&r->loads, 1);
    sleep_ns(r->load_ns);
    return tc_buf_append(out, r->val, r->vsize);
}

static void *st_worker_main(void *arg)
{
    st_worker *w = arg;
    st_run *r = w->r;
    for (size_t i = 0; i < r->ks->n; i++) {
        const char *key = r->ks->k[i];
        pthread_barrier_wait(&r->bar);
        uint64_t t0 = now_ns();
        tc_value v;
        tc_status st;
        if (r->m == ST_NAIVE) {
            st = tc_get(r->c, key, &v);
            if (st == TC_MISS) {
                atomic_fetch_add(&r->loads, 1);
                sleep_ns(r->load_ns);
                st = tc_set(r->c, key, r->val, r->vsize, TC_TTL_DEFAULT);
                memset(&v, 0, sizeof v);
            }
        } else {
            st = tc_get_or_set(r->c, key, st_loader, r, TC_TTL_DEFAULT, &v);
        }
        uint64_t t1 = now_ns();
        hist_record(&w->h, t1 - t0);
        if (st == TC_OK)
            tc_value_release(&v);
        else
            w->errors++;
        w->t_end = t1;
    }
    return NULL;
}

int wl_stampede(const bench_cfg *cfg)
{
    size_t nkeys = cfg->keys ? cfg->keys : 100;
    int threads = cfg->nthreads ? cfg->threads[0] : TCB_MAX_THREADS;
    uint64_t load_ns = 1000000;
    size_t vsize = cfg->value_size;
    char title[256];
    snprintf(title, sizeof title,
             "stampede: %d threads call for the same cold key at once (a barrier per key), "
             "%zu keys, loader takes %.1f ms",
             threads, nkeys, (double)load_ns / 1e6);
    report_section(title);
    report_printf("  %-24s %3s %6s %8s %8s %8s %8s %8s %7s %6s %5s\n", "mode", "thr", "keys",
                  "loads", "per key", "p50", "p99", "max", "waits", "rt/op", "err");
    keyset ks;
    unsigned char *val = malloc(vsize ? vsize : 1);
    if (keyset_numbered(&ks, "cold:", nkeys) != 0 || !val)
        bench_die("out of memory");
    memset(val, 's', vsize);
    result res[NST];
    for (int m = 0; m < NST; m++) {
        char prefix[80];
        snprintf(prefix, sizeof prefix, "%ss%d", cfg->prefix, m);
        st_run r = {.m = (st_mode)m, .ks = &ks, .val = val, .vsize = vsize, .load_ns = load_ns};
        atomic_init(&r.loads, 0);
        r.c = open_cache(cfg, prefix, m == ST_REDIS ? 0 : (size_t)64 << 20);
        st_worker *w = calloc((size_t)threads, sizeof *w);
        if (!w || pthread_barrier_init(&r.bar, NULL, (unsigned)threads) != 0)
            bench_die("out of memory");
        uint64_t t0 = now_ns();
        for (int i = 0; i < threads; i++) {
            w[i].r = &r;
            hist_init(&w[i].h);
            if (pthread_create(&w[i].tid, NULL, st_worker_main, &w[i]) != 0)
                bench_die("pthread_create failed");
        }
        hist *h = malloc(sizeof *h);
        if (!h)
            bench_die("out of memory");
        hist_init(h);
        uint64_t t1 = t0, errors = 0;
        for (int i = 0; i < threads; i++) {
            pthread_join(w[i].tid, NULL);
            hist_merge(h, &w[i].h);
            errors += w[i].errors;
            if (w[i].t_end > t1)
                t1 = w[i].t_end;
        }
        tc_stats s;
        tc_stats_get(r.c, &s);
        pthread_barrier_destroy(&r.bar);
        free(w);
        tc_close(r.c);
        wl_unpopulate(cfg, prefix);

        result *x = &res[m];
        result_init(x, "stampede", st_names[m]);
        snprintf(x->params, sizeof x->params, "load_ms=%.1f flight_waits=%llu",
                 (double)load_ns / 1e6, (unsigned long long)s.flight_waits);
        x->threads = threads;
        x->keys = nkeys;
        x->value_size = vsize;
        x->ops = h->count;
        x->seconds = (double)(t1 - t0) / 1e9;
        x->ops_s = (double)x->ops / x->seconds;
        x->errors = errors;
        x->loads = (uint64_t)atomic_load(&r.loads);
        result_latency(x, h);
        x->h = h;
        double reads = (double)(s.local_hits + s.remote_hits + s.misses);
        if (reads > 0) {
            x->local_hit = (double)s.local_hits / reads;
            x->remote_hit = (double)s.remote_hits / reads;
            x->miss = (double)s.misses / reads;
        }
        x->rt_per_op = (double)(s.remote_hits + s.misses + s.sets + s.deletes) / (double)x->ops;
        char a[16], b[16], c[16];
        report_printf("  %-24s %3d %6zu %8llu %8.2f %8s %8s %8s %7llu %6.2f %5llu\n", x->mode,
                      threads, nkeys, (unsigned long long)x->loads,
                      (double)x->loads / (double)nkeys, report_fmt_ns(x->p50, a, sizeof a),
                      report_fmt_ns(x->p99, b, sizeof b), report_fmt_ns(x->max_ns, c, sizeof c),
                      (unsigned long long)s.flight_waits, x->rt_per_op, (unsigned long long)errors);
    }
    for (int m = 0; m < NST; m++) {
        res[m].vs_redis = res[m].ops_s / res[ST_REDIS].ops_s;
        report_record(&res[m]);
    }
    report_printf("  loads: loader calls counted by the bench (ideal: 1 per key); waits: "
                  "tc_stats flight_waits; rt/op counts only reads and sets from tc_stats (the "
                  "lock round trips of get_or_set are not in it)\n");
    g_summary.st_loads_per_key = (double)res[ST_TIER].loads / (double)nkeys;
    g_summary.st_naive_per_key = (double)res[ST_NAIVE].loads / (double)nkeys;
    int rc = 0;
    if (cfg->plot)
        rc = report_plot_cdf(cfg->plot, "stampede: latency of the calls for a cold key", res, NST);
    for (int m = 0; m < NST; m++)
        result_free(&res[m]);
    free(val);
    keyset_free(&ks);
    return rc;
}

/* ------------------------------------------------------------------ fanout
 *
 * N reader processes (each its own tc_cache and subscriber) read a small hot set slowly;
 * one writer process writes random keys of 100,000 at full speed for a fixed time. Reader 0
 * also holds a probe key that the writer rewrites every millisecond or so, once reader 0
 * has read the last version again: its invalidation delay is measured there. Per coherence
 * mode: writes/s, Redis CPU per write (INFO cpu deltas), messages delivered per write (the
 * readers' inval_received over the writes) and the probe's delay. */

#define FAN_MAX 64
#define FAN_KEYSPACE 100000
#define FAN_HOT 8
#define FAN_PROBES 20000
#define FAN_LOCAL ((size_t)8 << 20)

typedef struct fan_shm {
    atomic_int up, go, stop, writer_done, report, abort;
    atomic_llong probe_seen; /* the last probe version reader 0 read */
    int n;
    uint64_t writes, writer_errors, reader_errors;
    uint64_t inval[FAN_MAX], link_failures[FAN_MAX];
    uint64_t t_ret[FAN_PROBES], t_seen[FAN_PROBES];
} fan_shm;

static bool fan_wait(atomic_int *flag, int want, fan_shm *m, uint64_t ns)
{
    uint64_t until = now_ns() + ns;
    while (atomic_load(flag) < want && !atomic_load(&m->abort) && now_ns() < until)
        sleep_ns(200000);
    return atomic_load(flag) >= want;
}

static void fan_reader(const bench_cfg *cfg, const char *prefix, tc_coherence coh, fan_shm *m,
                       int me)
{
    tc_cache *c = wl_open_proc(cfg, prefix, coh, TC_RECOVERY_AUTO, FAN_LOCAL, "fanout");
    if (!c) {
        atomic_store(&m->abort, 1);
        return;
    }
    char hot[FAN_HOT][16];
    for (int j = 0; j < FAN_HOT; j++) {
        snprintf(hot[j], sizeof hot[j], "hot%d", j);
        (void)coh_read(c, hot[j]);
    }
    if (me == 0)
        atomic_store(&m->probe_seen, coh_read(c, "probe"));
    atomic_fetch_add(&m->up, 1);
    fan_wait(&m->go, 1, m, 120ull * 1000000000u);
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    uint64_t next_hot = 0, errors = 0;
    int64_t last = atomic_load(&m->probe_seen);
    while (!atomic_load(&m->stop) && !atomic_load(&m->abort)) {
        uint64_t t = now_ns();
        if (t >= next_hot) { /* the slow hot-set reads that keep every reader alive */
            for (int j = 0; j < FAN_HOT; j++)
                errors += coh_read(c, hot[j]) < 0;
            next_hot = t + 10000000;
        }
        if (me != 0) {
            sleep_ns(10000000);
            continue;
        }
        int64_t v = coh_read(c, "probe");
        t = now_ns();
        if (v > last && v < FAN_PROBES) {
            m->t_seen[v] = t;
            last = v;
            atomic_store(&m->probe_seen, v);
        }
        sleep_ns(20000);
    }
    fan_wait(&m->report, 1, m, 60ull * 1000000000u);
    tc_stats_get(c, &s1);
    m->inval[me] = s1.inval_received - s0.inval_received;
    m->link_failures[me] = s1.inval_link_failures - s0.inval_link_failures;
    if (errors)
        __atomic_fetch_add(&m->reader_errors, errors, __ATOMIC_RELAXED);
    tc_close(c);
}

static void fan_writer(const bench_cfg *cfg, const char *prefix, tc_coherence coh, fan_shm *m)
{
    tc_cache *c = wl_open_proc(cfg, prefix, coh, TC_RECOVERY_AUTO, FAN_LOCAL, "fanout");
    if (!c) {
        atomic_store(&m->abort, 1);
        return;
    }
    atomic_fetch_add(&m->up, 1);
    fan_wait(&m->go, 1, m, 120ull * 1000000000u);
    rng g;
    rng_seed(&g, cfg->seed ^ 0xfa17ull);
    uint64_t writes = 0, errors = 0, next_probe = now_ns() + 1000000;
    int64_t probe = atomic_load(&m->probe_seen);
    char key[24], val[24] = "value-0123456789";
    while (!atomic_load(&m->stop) && !atomic_load(&m->abort)) {
        uint64_t t = now_ns();
        if (t >= next_probe && atomic_load(&m->probe_seen) >= probe && probe + 1 < FAN_PROBES) {
            probe++;
            int len = snprintf(val, sizeof val, "%lld", (long long)probe);
            errors += tc_set(c, "probe", val, (size_t)len, TC_TTL_FOREVER) != TC_OK;
            m->t_ret[probe] = now_ns();
            next_probe = m->t_ret[probe] + 1000000;
        } else {
            snprintf(key, sizeof key, "k%llu", (unsigned long long)(rng_next(&g) % FAN_KEYSPACE));
            errors += tc_set(c, key, "value-0123456789", 16, TC_TTL_FOREVER) != TC_OK;
        }
        writes++;
    }
    m->writes = writes;
    m->writer_errors = errors;
    atomic_store(&m->writer_done, 1);
    fan_wait(&m->report, 1, m, 60ull * 1000000000u);
    tc_close(c);
}

/* used_cpu_sys + used_cpu_user of INFO cpu, in seconds; NaN if unavailable. */
static double redis_cpu(redisContext *rc)
{
    redisReply *r = rc ? redisCommand(rc, "INFO cpu") : NULL;
    double sys = NAN, user = NAN;
    if (r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "used_cpu_sys:");
        const char *q = strstr(r->str, "used_cpu_user:");
        if (p && q) {
            sys = strtod(p + 13, NULL);
            user = strtod(q + 14, NULL);
        }
    }
    if (r)
        freeReplyObject(r);
    return sys + user;
}

typedef struct fan_result {
    double writes_s, cpu_us, deliveries, p50, p99;
    uint64_t probes, link_failures, errors;
} fan_result;

static int fan_run(const bench_cfg *cfg, tc_coherence coh, int n, double seconds, fan_result *out)
{
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%sf%d_%d", cfg->prefix, (int)coh, n);
    tc_cache *seed = wl_open_proc(cfg, prefix, TC_COHERENCE_NONE, TC_RECOVERY_AUTO, FAN_LOCAL,
                                  "fanout");
    if (!seed)
        return 1;
    for (int j = 0; j < FAN_HOT; j++) {
        char k[16];
        snprintf(k, sizeof k, "hot%d", j);
        tc_set(seed, k, "1", 1, TC_TTL_FOREVER);
    }
    tc_set(seed, "probe", "0", 1, TC_TTL_FOREVER);
    tc_close(seed);
    fan_shm *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        bench_die("mmap: %s", strerror(errno));
    memset(m, 0, sizeof *m);
    m->n = n;
    pid_t pids[FAN_MAX + 1];
    for (int i = 0; i <= n; i++) {
        pids[i] = bench_fork();
        if (pids[i] == 0) {
            if (i < n)
                fan_reader(cfg, prefix, coh, m, i);
            else
                fan_writer(cfg, prefix, coh, m);
            _exit(0);
        }
    }
    redisContext *rc = plain_connect(cfg);
    bool up = fan_wait(&m->up, n + 1, m, 120ull * 1000000000u);
    sleep_ns(200000000); /* the readers' first sessions settle */
    double cpu0 = redis_cpu(rc);
    uint64_t t0 = now_ns();
    atomic_store(&m->go, 1);
    sleep_ns((uint64_t)(seconds * 1e9));
    atomic_store(&m->stop, 1);
    fan_wait(&m->writer_done, 1, m, 30ull * 1000000000u);
    uint64_t t1 = now_ns();
    sleep_ns(100000000); /* deliveries in flight arrive */
    double cpu1 = redis_cpu(rc);
    atomic_store(&m->report, 1);
    int bad = !up;
    for (int i = 0; i <= n; i++)
        bad |= bench_reap(pids[i], now_ns() + 60ull * 1000000000u) != 0;
    if (rc)
        redisFree(rc);
    hist h;
    hist_init(&h);
    out->probes = 0;
    for (int v = 1; v < FAN_PROBES; v++) {
        if (!m->t_ret[v] || !m->t_seen[v])
            continue;
        hist_record(&h, m->t_seen[v] > m->t_ret[v] ? m->t_seen[v] - m->t_ret[v] : 0);
        out->probes++;
    }
    uint64_t inval = 0, lf = 0;
    for (int i = 0; i < n; i++) {
        inval += m->inval[i];
        lf += m->link_failures[i];
    }
    double w = (double)m->writes;
    out->writes_s = w / ((double)(t1 - t0) / 1e9);
    out->cpu_us = w > 0 ? (cpu1 - cpu0) * 1e6 / w : NAN;
    out->deliveries = w > 0 ? (double)inval / w : NAN;
    out->p50 = out->probes ? hist_percentile(&h, 50) : NAN;
    out->p99 = out->probes ? hist_percentile(&h, 99) : NAN;
    out->link_failures = lf;
    out->errors = m->writer_errors + m->reader_errors + (uint64_t)bad + (uint64_t)m->abort;
    munmap(m, sizeof *m);
    wl_unpopulate(cfg, prefix);
    return bad;
}

int wl_fanout(const bench_cfg *cfg)
{
    static const int def_ns[] = {1, 4, 16, 64};
    int ns[TCB_MAX_THREADS], nn = 0;
    if (cfg->nreaders > 0) {
        for (int i = 0; i < cfg->nreaders; i++)
            ns[nn++] = cfg->readers[i];
    } else {
        for (int i = 0; i < 4; i++)
            ns[nn++] = def_ns[i];
    }
    double seconds = cfg->ops ? (double)cfg->ops : (cfg->quick ? 2.0 : 3.0);
    static const tc_coherence cohs[] = {TC_COHERENCE_BROADCAST, TC_COHERENCE_TRACKING,
                                        TC_COHERENCE_TARGETED};
    static const char *const names[] = {"broadcast", "tracking (BCAST)", "targeted"};
    char title[256];
    snprintf(title, sizeof title,
             "fanout: N reader processes reading %d hot keys every 10 ms, one writer tc_set of "
             "random keys of %d for %.0f s; delay at the one reader holding the probe key",
             FAN_HOT, FAN_KEYSPACE, seconds);
    report_section(title);
    report_printf("  %-18s %4s %9s %12s %12s %9s %9s %7s %5s %4s\n", "mode", "N", "writes/s",
                  "Redis us/wr", "deliv/write", "p50", "p99", "probes", "linkf", "err");
    int rc = 0;
    for (size_t k = 0; k < 3; k++) {
        for (int i = 0; i < nn; i++) {
            fan_result r;
            rc |= fan_run(cfg, cohs[k], ns[i], seconds, &r);
            char a[32], b[32];
            report_printf("  %-18s %4d %9.0f %12.1f %12.3f %9s %9s %7llu %5llu %4llu\n", names[k],
                          ns[i], r.writes_s, r.cpu_us, r.deliveries,
                          report_fmt_ns(r.p50, a, sizeof a), report_fmt_ns(r.p99, b, sizeof b),
                          (unsigned long long)r.probes, (unsigned long long)r.link_failures,
                          (unsigned long long)r.errors);
            result res;
            result_init(&res, "fanout", names[k]);
            snprintf(res.params, sizeof res.params,
                     "N=%d readers; redis_cpu_us_per_write=%.2f deliveries_per_write=%.4f "
                     "probes=%llu link_failures=%llu",
                     ns[i], r.cpu_us, r.deliveries, (unsigned long long)r.probes,
                     (unsigned long long)r.link_failures);
            res.threads = ns[i];
            res.keys = FAN_KEYSPACE;
            res.ops_s = r.writes_s;
            res.seconds = seconds;
            res.p50 = r.p50;
            res.p99 = r.p99;
            res.errors = r.errors;
            report_record(&res);
            result_free(&res);
        }
    }
    return rc;
}

/* ------------------------------------------------------------------ write cost
 *
 * What recovery by group sequences costs (docs/design/coherence.md, "Recovery without a
 * flush"): each broadcast write also runs a script that bumps its group's sequence, and
 * each new link fetches every sequence once. Two writers, one per recovery (FLUSH: TC1, a
 * plain PUBLISH in the MULTI; GROUPS: TC2, the tc_pub script), each with a subscribed
 * reader on its own prefix, write random keys in turns; then the commands Redis ran per
 * write (INFO commandstats), the sequence fetch's round trip with every group present, and
 * what a link break costs each reader. */

#define WC_KEYS 10000
#define WC_TURNS 7

static const char *const wc_names[2] = {"FLUSH (TC1)", "GROUPS (TC2)"};

typedef struct wc_side {
    tc_cache *w, *r;
    char prefix[96];
    double ns[WC_TURNS]; /* client time per tc_set, each turn */
    double cpu_s;        /* Redis CPU over the timed turns */
    uint64_t writes, errors;
    hist h;
} wc_side;

static void wc_writes(wc_side *s, const keyset *ks, const unsigned char *val, size_t vsize,
                      size_t n, uint64_t *seed, bool timed)
{
    for (size_t i = 0; i < n; i++) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        uint64_t t0 = timed ? now_ns() : 0;
        if (tc_set(s->w, keyset_key(ks, *seed % ks->n), val, vsize, TC_TTL_FOREVER) != TC_OK)
            s->errors++;
        if (timed)
            hist_record(&s->h, now_ns() - t0);
    }
}

/* INFO commandstats after n writes: "cmd calls/write us/write usec_per_call" per command.
 * EXEC's time includes the commands it ran, and EVAL's the script's calls: the write's own
 * time in Redis is MULTI + EXEC. */
static void wc_commandstats(redisContext *rc, const char *what, double n)
{
    redisReply *r = rc ? redisCommand(rc, "INFO commandstats") : NULL;
    if (!r || r->type != REDIS_REPLY_STRING) {
        report_printf("    %s: INFO commandstats unavailable\n", what);
        if (r)
            freeReplyObject(r);
        return;
    }
    double tx = 0;
    report_printf("    %s, per tc_set:\n", what);
    for (const char *p = strstr(r->str, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
        char name[64];
        double calls = 0, usec = 0, per = 0;
        if (sscanf(p, "cmdstat_%63[^:]:calls=%lf,usec=%lf,usec_per_call=%lf", name, &calls, &usec,
                   &per) != 4 ||
            strcmp(name, "config|resetstat") == 0 || strcmp(name, "info") == 0)
            continue;
        report_printf("      %-10s %5.2f calls %7.2f us  (usec_per_call %.2f)\n", name, calls / n,
                      usec / n, per);
        if (strcmp(name, "multi") == 0 || strcmp(name, "exec") == 0)
            tx += usec / n;
    }
    report_printf("      %-10s %21.2f us  (the write's time in Redis)\n", "multi+exec", tx);
    freeReplyObject(r);
}

static void wc_reset_stats(redisContext *rc)
{
    redisReply *r = rc ? redisCommand(rc, "CONFIG RESETSTAT") : NULL;
    if (r)
        freeReplyObject(r);
}

/* The reconciliation's fetch (HSETNX gen + HGETALL of the sequences' hash), as the
 * subscriber runs it, timed over a plain connection: median and p99 of reps, in ns. */
static void wc_fetch_time(redisContext *rc, const char *seq_key, int reps, double *p50, double *p99,
                          long long *fields)
{
    static const char script[] = "redis.call('HSETNX', KEYS[1], 'gen', ARGV[1])\n"
                                 "return redis.call('HGETALL', KEYS[1])\n";
    hist h;
    hist_init(&h);
    *fields = 0;
    for (int i = 0; rc && i < reps; i++) {
        uint64_t t0 = now_ns();
        redisReply *r = redisCommand(rc, "EVAL %s 1 %s %s", script, seq_key, "0123456789abcdef");
        hist_record(&h, now_ns() - t0);
        if (r && r->type == REDIS_REPLY_ARRAY)
            *fields = (long long)r->elements / 2;
        if (r)
            freeReplyObject(r);
    }
    *p50 = hist_percentile(&h, 50);
    *p99 = hist_percentile(&h, 99);
}

/* Local hits of one read of every key through c. */
static uint64_t wc_local_pass(tc_cache *c, const keyset *ks)
{
    tc_stats s0, s1;
    tc_stats_get(c, &s0);
    for (size_t i = 0; i < ks->n; i++) {
        tc_value v;
        if (tc_get(c, keyset_key(ks, i), &v) == TC_OK)
            tc_value_release(&v);
    }
    tc_stats_get(c, &s1);
    return s1.local_hits - s0.local_hits;
}

/* Kills every pub/sub link and times, per side, how long until its reader recovered
 * (reconciles or full_flushes moved, in ms); then the local hits of a read of every key. */
static void wc_link_break(redisContext *rc, wc_side *sd, const keyset *ks, double ms[2],
                          uint64_t kept[2])
{
    tc_stats s0[2], s1;
    for (int m = 0; m < 2; m++) {
        wc_local_pass(sd[m].r, ks); /* fills the reader's tier */
        tc_stats_get(sd[m].r, &s0[m]);
        ms[m] = NAN;
    }
    redisReply *r = rc ? redisCommand(rc, "CLIENT KILL TYPE pubsub") : NULL;
    if (r)
        freeReplyObject(r);
    uint64_t t0 = now_ns();
    while ((isnan(ms[0]) || isnan(ms[1])) && now_ns() - t0 < 10000000000ull) {
        for (int m = 0; m < 2; m++) {
            tc_stats_get(sd[m].r, &s1);
            if (isnan(ms[m]) &&
                s1.reconciles + s1.full_flushes != s0[m].reconciles + s0[m].full_flushes)
                ms[m] = (double)(now_ns() - t0) / 1e6;
        }
        sleep_ns(100000);
    }
    for (int m = 0; m < 2; m++)
        kept[m] = wc_local_pass(sd[m].r, ks);
}

int wl_writecost(const bench_cfg *cfg)
{
    size_t vsize = cfg->value_size;
    size_t n = cfg->ops ? (size_t)cfg->ops : (cfg->quick ? 2000 : 5000); /* per turn */
    keyset ks;
    if (keyset_numbered(&ks, "wc:", WC_KEYS) != 0)
        bench_die("out of memory");
    unsigned char *val = malloc(vsize ? vsize : 1);
    if (!val)
        bench_die("out of memory");
    memset(val, 'w', vsize);
    wc_side sd[2];
    memset(sd, 0, sizeof sd);
    for (int m = 0; m < 2; m++) {
        tc_recovery rec = m ? TC_RECOVERY_GROUPS : TC_RECOVERY_FLUSH;
        snprintf(sd[m].prefix, sizeof sd[m].prefix, "%swc%d", cfg->prefix, m);
        sd[m].w = open_cache_rec(cfg, sd[m].prefix, (size_t)64 << 20, 0, rec);
        sd[m].r = open_cache_rec(cfg, sd[m].prefix, (size_t)64 << 20, 0, rec);
        hist_init(&sd[m].h);
    }
    redisContext *rc = plain_connect(cfg);
    uint64_t seed = cfg->seed ? cfg->seed : 42;
    char title[200];
    snprintf(title, sizeof title,
             "writecost: tc_set of %d random keys (%zu-byte values), %zu per turn, %d turns "
             "alternating; one subscribed reader per recovery",
             WC_KEYS, vsize, n, WC_TURNS);
    report_section(title);
    for (int m = 0; m < 2; m++) /* warm: connections, script caches, every group once */
        wc_writes(&sd[m], &ks, val, vsize, n, &seed, false);
    for (int t = 0; t < WC_TURNS; t++) {
        for (int m = 0; m < 2; m++) {
            double c0 = redis_cpu(rc);
            uint64_t t0 = now_ns();
            wc_writes(&sd[m], &ks, val, vsize, n, &seed, true);
            sd[m].ns[t] = (double)(now_ns() - t0) / (double)n;
            sd[m].cpu_s += redis_cpu(rc) - c0;
            sd[m].writes += n;
        }
    }
    report_printf("  %-14s %12s %10s %10s %14s %6s\n", "recovery", "ns/tc_set", "p50", "p99",
                  "Redis CPU us/w", "errors");
    double med[2], cpu[2];
    for (int m = 0; m < 2; m++) {
        qsort(sd[m].ns, WC_TURNS, sizeof sd[m].ns[0], cmp_double);
        med[m] = sd[m].ns[WC_TURNS / 2];
        cpu[m] = sd[m].cpu_s * 1e6 / (double)sd[m].writes;
        char a[32], b[32];
        report_printf("  %-14s %12.0f %10s %10s %14.2f %6llu\n", wc_names[m], med[m],
                      report_fmt_ns(hist_percentile(&sd[m].h, 50), a, sizeof a),
                      report_fmt_ns(hist_percentile(&sd[m].h, 99), b, sizeof b), cpu[m],
                      (unsigned long long)sd[m].errors);
        result res;
        result_init(&res, "writecost", wc_names[m]);
        snprintf(res.params, sizeof res.params, "redis_cpu_us_per_write=%.3f median_of=%d", cpu[m],
                 WC_TURNS);
        res.keys = WC_KEYS;
        res.value_size = vsize;
        res.ops = sd[m].writes;
        res.errors = sd[m].errors;
        res.mean_ns = med[m];
        res.p50 = hist_percentile(&sd[m].h, 50);
        res.p99 = hist_percentile(&sd[m].h, 99);
        report_record(&res);
        result_free(&res);
    }
    report_printf("  GROUPS / FLUSH: client time per tc_set %.3fx, Redis CPU per write %.3fx\n",
                  med[1] / med[0], cpu[1] / cpu[0]);
    report_printf("  Redis commands per tc_set (INFO commandstats over %zu writes each; scripts' "
                  "own calls counted as commands):\n",
                  n);
    for (int m = 0; m < 2; m++) {
        wc_reset_stats(rc);
        wc_writes(&sd[m], &ks, val, vsize, n, &seed, false);
        wc_commandstats(rc, wc_names[m], (double)n);
    }
    char seq_key[128];
    snprintf(seq_key, sizeof seq_key, "%s:__tc:seq", sd[1].prefix);
    double f50, f99;
    long long fields;
    wc_fetch_time(rc, seq_key, 200, &f50, &f99, &fields);
    char a[32], b[32];
    report_printf("  sequence fetch on a new link (HSETNX + HGETALL by EVAL, %lld fields in the "
                  "hash): p50 %s, p99 %s\n",
                  fields, report_fmt_ns(f50, a, sizeof a), report_fmt_ns(f99, b, sizeof b));
    double ms[2];
    uint64_t kept[2];
    wc_link_break(rc, sd, &ks, ms, kept);
    for (int m = 0; m < 2; m++)
        report_printf("  link killed, %-12s: tier trusted again after %.1f ms (a 50 ms "
                      "reconnect backoff included); then %llu of %d keys read were local hits\n",
                      wc_names[m], ms[m], (unsigned long long)kept[m], WC_KEYS);
    int bad = sd[0].errors + sd[1].errors > 0;
    for (int m = 0; m < 2; m++) {
        tc_close(sd[m].r);
        tc_close(sd[m].w);
        wl_unpopulate(cfg, sd[m].prefix);
    }
    if (rc)
        redisFree(rc);
    free(val);
    keyset_free(&ks);
    return bad;
}
