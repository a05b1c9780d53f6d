/*
 * tc-bench recovery (see recovery.h): issue 18's measurement. A broken pub/sub link used to
 * flush every instance's local tier on reconnect, and every instance then refilled its hot
 * set from Redis at once. This workload shows that read load, 100 ms at a time.
 *
 * Processes: per mode (flush, groups) the bench forks N readers and a writer, each with its
 * own tc_cache in broadcast mode, TC_RECOVERY_GROUPS set or unset in its environment before
 * tc_open. Readers read Zipf keys through tc_get at a paced rate (every key is in Redis, so a
 * local miss is one GET, which refills the local tier); the writer tc_sets Zipf keys at a
 * low paced rate. Before each event the readers warm their tiers with unpaced reads, then
 * read paced; the bench then samples, fires the event, and samples on. A thread of the
 * bench samples `cmdstat_get` of INFO commandstats every 100 ms on its own connection.
 *
 * Shared state: one anonymous MAP_SHARED mapping per mode, mapped before the forks. The
 * bench asks for warm-ups and tc_stats snapshots by bumping a counter; each child answers
 * in its own slot. Children leave only by _exit (bench_fork), and are reaped, or killed, on
 * every way out (bench_reap; the cleanup in tc-bench.c kills what is left).
 */
#include "config.h"

#include "recovery.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "gen.h"
#include "keys.h"
#include "tiercache.h"
#include "workloads.h"

#define REC_READERS_MAX 64
#define REC_READERS_DEF 8
#define REC_RATE_DEF 2000.0
#define REC_WRITES_DEF 20.0
#define REC_AFTER_DEF 10.0
#define REC_WARMUP_DEF 150000
#define REC_LPCT_DEF 8.0
#define REC_KEYS_DEF 100000
#define REC_TICK_NS 100000000ull /* one bucket */
#define REC_BEFORE 20            /* buckets before the event: the steady window */
#define REC_WIN 5                /* buckets per window of the 'back' test */
#define REC_BAND 0.10            /* 'back': within +-10% of steady */
#define REC_SETTLE_NS 1000000000ull
#define REC_SNAPS 8 /* four per event: -2 s, -1 s, the event, the end */
#define SEC 1000000000ull

/* ------------------------------------------------------------------ shared state */

typedef struct rec_slot {
    atomic_int warmed;  /* the last warm-up round this reader finished */
    atomic_int snapped; /* the last snapshot it took */
    tc_stats snap[REC_SNAPS];
    uint64_t reads[REC_SNAPS], errors[REC_SNAPS], skipped[REC_SNAPS];
} rec_slot;

typedef struct rec_shm {
    atomic_int up, warm, snap, stop, abort;
    atomic_ullong paced_reads;     /* every reader's paced reads so far (not the warm-ups) */
    uint64_t writes, write_errors; /* the writer's, written as it goes */
    rec_slot r[REC_READERS_MAX];
    pid_t pids[REC_READERS_MAX + 1]; /* the bench's own: its children */
    int np;
} rec_shm;

/* What every process of a run knows; read-only after the forks. */
typedef struct rec_ctx {
    const bench_cfg *cfg;
    char prefix[96];
    keyset ks;
    zipf z;
    int readers;
    double rate, writes, after_s;
    uint64_t warmup;
    size_t vsize, local_bytes;
} rec_ctx;

static const char *const ev_names[] = {"", "kill", "restart"};
static const char *const mode_names[] = {"", "flush", "groups", "", "targeted"};

/* ------------------------------------------------------------------ children */

/* The coherence and recovery of this child's caches (set by rec_spawn in the child before
 * it opens any). */
static tc_coherence rec_coherence = TC_COHERENCE_BROADCAST;
static tc_recovery rec_recovery = TC_RECOVERY_AUTO;

static tc_cache *rec_open(const rec_ctx *x, size_t local_bytes)
{
    return wl_open_proc(x->cfg, x->prefix, rec_coherence, rec_recovery, local_bytes, "recovery");
}

/* One read of a Zipf key; 1 when it was not a value (every key is in Redis: an error). */
static int rec_read(tc_cache *c, const rec_ctx *x, rng *g)
{
    tc_value v;
    if (tc_get(c, keyset_key(&x->ks, zipf_next(&x->z, g)), &v) != TC_OK)
        return 1;
    tc_value_release(&v);
    return 0;
}

static bool rec_running(rec_shm *m)
{
    return !atomic_load(&m->stop) && !atomic_load(&m->abort);
}

/* The bench's view: running, and no child has exited (looked at without reaping it, so
 * that bench_reap still finds it). A child that died (killed, or a sanitizer refusing it)
 * ends the run at once instead of at a timeout. */
static bool rec_all_running(rec_shm *m)
{
    for (int i = 0; i < m->np; i++) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_PID, (id_t)m->pids[i], &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            si.si_pid != 0) {
            fprintf(stderr, "tc-bench: recovery: child %ld ended early\n", (long)si.si_pid);
            atomic_store(&m->abort, 1);
        }
    }
    return rec_running(m);
}

/* How many operations are due at rate/s since t0, given done: at most 100 ms behind (a
 * process that was not scheduled skips what it missed, counted in *skipped, rather than
 * bursting). */
static uint64_t paced_due(double rate, uint64_t t0, uint64_t *done, uint64_t *skipped)
{
    uint64_t due = (uint64_t)((double)(now_ns() - t0) * rate / 1e9);
    uint64_t cap = (uint64_t)(rate / 10) + 1;
    if (due > *done + cap) {
        *skipped += due - *done - cap;
        *done = due - cap;
    }
    return due;
}

static void reader_snapshot(tc_cache *c, rec_slot *s, int want, uint64_t reads, uint64_t errors,
                            uint64_t skipped)
{
    int i = (want - 1) % REC_SNAPS;
    tc_stats_get(c, &s->snap[i]);
    s->reads[i] = reads;
    s->errors[i] = errors;
    s->skipped[i] = skipped;
    atomic_store(&s->snapped, want);
}

static void rec_reader(const rec_ctx *x, rec_shm *m, int me)
{
    rec_slot *s = &m->r[me];
    tc_cache *c = rec_open(x, x->local_bytes);
    if (!c) {
        atomic_store(&m->abort, 1);
        return;
    }
    rng g;
    rng_seed(&g, x->cfg->seed * 0x9e3779b97f4a7c15ull + (uint64_t)me + 1);
    uint64_t reads = 0, errors = 0, skipped = 0, done = 0, t0 = now_ns();
    int warmed = 0, snapped = 0;
    atomic_fetch_add(&m->up, 1);
    while (rec_running(m)) {
        int want = atomic_load(&m->snap);
        if (want > snapped) {
            reader_snapshot(c, s, want, reads, errors, skipped);
            snapped = want;
        }
        if (atomic_load(&m->warm) > warmed) {
            warmed = atomic_load(&m->warm);
            for (uint64_t i = 0; i < x->warmup && rec_running(m); i++, reads++)
                errors += (uint64_t)rec_read(c, x, &g);
            atomic_store(&s->warmed, warmed);
            t0 = now_ns();
            done = 0;
            continue;
        }
        uint64_t due = paced_due(x->rate, t0, &done, &skipped);
        if (due > done)
            atomic_fetch_add(&m->paced_reads, due - done);
        for (; done < due; done++, reads++)
            errors += (uint64_t)rec_read(c, x, &g);
        sleep_ns(1000000);
    }
    tc_close(c);
}

static void rec_writer(const rec_ctx *x, rec_shm *m)
{
    tc_cache *c = rec_open(x, (size_t)1 << 20);
    char *val = malloc(x->vsize + 1);
    if (!c || !val) {
        atomic_store(&m->abort, 1);
        free(val);
        tc_close(c);
        return;
    }
    memset(val, 'w', x->vsize + 1);
    rng g;
    rng_seed(&g, x->cfg->seed ^ 0x5eedull);
    uint64_t t0 = now_ns(), done = 0, skipped = 0;
    atomic_fetch_add(&m->up, 1);
    while (rec_running(m)) {
        uint64_t due = paced_due(x->writes, t0, &done, &skipped);
        for (; done < due; done++) {
            /* A new value each time: a stamp over the first bytes. */
            int n = snprintf(val, x->vsize + 1, "%llu", (unsigned long long)done);
            if (n > 0 && (size_t)n < x->vsize)
                val[n] = 'w';
            const char *key = keyset_key(&x->ks, zipf_next(&x->z, &g));
            m->write_errors += tc_set(c, key, val, x->vsize, TC_TTL_FOREVER) != TC_OK;
            m->writes++;
        }
        sleep_ns(2000000);
    }
    free(val);
    tc_close(c);
}

/* Forks a child whose caches recover as the mode says (broadcast with TC_RECOVERY_FLUSH or
 * TC_RECOVERY_GROUPS, or TC_COHERENCE_TARGETED) and runs the reader me (or, me < 0, the writer).
 * Returns its pid. */
static pid_t rec_spawn(const rec_ctx *x, rec_shm *m, int mode, int me)
{
    pid_t pid = bench_fork();
    if (pid != 0)
        return pid;
    rec_recovery = mode == REC_MODE_GROUPS ? TC_RECOVERY_GROUPS : TC_RECOVERY_FLUSH;
    if (mode == REC_MODE_TARGETED) {
        rec_coherence = TC_COHERENCE_TARGETED;
        rec_recovery = TC_RECOVERY_AUTO; /* a full flush: Redis numbers nothing */
    }
    if (me >= 0)
        rec_reader(x, m, me);
    else
        rec_writer(x, m);
    _exit(0);
}

/* ------------------------------------------------------------------ the sampler */

/* A sample whose round trip took longer than this is dropped: when the server read its
 * counter is not known closely enough (the intervals around it are merged). */
#define REC_SAMPLE_SLACK_NS 10000000ull

typedef struct rec_sample {
    uint64_t t;     /* the middle of the round trip */
    int64_t gets;   /* cmdstat_get calls */
    uint64_t reads; /* the readers' paced reads (rec_shm), taken as the command is sent */
    uint64_t run;   /* a hash of the server's run_id */
    bool ok;        /* answered */
} rec_sample;

typedef struct rec_sampler {
    pthread_t th;
    int port;
    rec_shm *m;
    atomic_bool stop;
    pthread_mutex_t mu; /* guards s, n, cap */
    rec_sample *s;
    size_t n, cap;
} rec_sampler;

/* The value after "name" in an INFO reply, up to the next ',' or line end, or NULL. */
static const char *info_field(const char *info, const char *name, size_t *len)
{
    const char *p = strstr(info, name);
    if (!p)
        return NULL;
    p += strlen(name);
    *len = strcspn(p, ",\r\n");
    return p;
}

static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

/* A connection to the embedded server and the hash of its run_id; NULL if it is down. */
static redisContext *sampler_connect(int port, uint64_t *run)
{
    struct timeval tv = {0, 200000};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (!rc || rc->err || redisSetTimeout(rc, (struct timeval){0, 500000}) != REDIS_OK) {
        if (rc)
            redisFree(rc);
        return NULL;
    }
    redisReply *r = redisCommand(rc, "INFO server");
    size_t n = 0;
    const char *id = r && r->type == REDIS_REPLY_STRING ? info_field(r->str, "run_id:", &n) : NULL;
    *run = id ? fnv1a(id, n) : 0;
    if (r)
        freeReplyObject(r);
    if (!id) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}

static void sampler_take(rec_sampler *sp, redisContext **rc, uint64_t *run)
{
    rec_sample smp = {0};
    if (!*rc)
        *rc = sampler_connect(sp->port, run);
    uint64_t t0 = now_ns();
    smp.reads = atomic_load(&sp->m->paced_reads);
    redisReply *r = *rc ? redisCommand(*rc, "INFO commandstats") : NULL;
    uint64_t t1 = now_ns();
    smp.t = t0 + (t1 - t0) / 2;
    bool slow = t1 - t0 > REC_SAMPLE_SLACK_NS, answered = r && r->type == REDIS_REPLY_STRING;
    if (answered) {
        size_t n;
        const char *v = info_field(r->str, "cmdstat_get:calls=", &n);
        smp.gets = v ? strtoll(v, NULL, 10) : 0; /* no line: no GET since the server started */
        smp.run = *run;
        smp.ok = !slow;
    } else if (*rc) {
        redisFree(*rc); /* the server went away: a new connection next time */
        *rc = NULL;
    }
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&sp->mu);
    if (sp->n == sp->cap) {
        size_t cap = sp->cap ? 2 * sp->cap : 4096;
        rec_sample *s = realloc(sp->s, cap * sizeof *s);
        if (!s)
            bench_die("out of memory"); /* the bench waits for samples: it cannot go on */
        sp->s = s;
        sp->cap = cap;
    }
    sp->s[sp->n++] = smp;
    pthread_mutex_unlock(&sp->mu);
}

/* Every 100 ms on a fixed schedule; a tick missed while the server was blocked (SHUTDOWN
 * saving) is skipped, not made up. */
static void *sampler_main(void *arg)
{
    rec_sampler *sp = arg;
    redisContext *rc = NULL;
    uint64_t run = 0, next = now_ns();
    while (!atomic_load(&sp->stop)) {
        sampler_take(sp, &rc, &run);
        next += REC_TICK_NS;
        uint64_t now = now_ns();
        while (next <= now)
            next += REC_TICK_NS;
        sleep_ns(next - now);
    }
    if (rc)
        redisFree(rc);
    return NULL;
}

static size_t sampler_count(rec_sampler *sp)
{
    pthread_mutex_lock(&sp->mu);
    size_t n = sp->n;
    pthread_mutex_unlock(&sp->mu);
    return n;
}

/* Waits until the sampler holds more than n samples (the one at index n taken). */
static void sampler_wait(rec_sampler *sp, size_t n)
{
    while (sampler_count(sp) <= n)
        sleep_ns(2000000);
}

/* ------------------------------------------------------------------ one scenario */

typedef struct rec_scn {
    int event, mode;
    int nb;                 /* buckets: REC_BEFORE before the event, the rest after */
    double *t, *gets;       /* bucket k: (t[k], t[k + 1]] s from the event; GETs in it */
    double *reads;          /* the readers' paced reads in bucket k */
    double gpr, gpr_peak_x; /* GETs per read before; the highest after bucket's / that */
    double steady, peak, peak_x, back_s, extra, extra1, noise;
    size_t unknown; /* samples slow or unanswered (server down): their buckets are merged */
    double warm_s;  /* how long its warm-up took */
    bool back;      /* back within the band before the end */
    double hit, hit1, hit2, hit_after;
    uint64_t reconciles, full_flushes, link_failures, bypasses, errors, skipped;
    long long killed, keys_before, keys_after;
    double down_ms;
} rec_scn;

/* Spreads the GETs the counter says were served between two answered samples a < b over
 * the intervals (s[i-1], s[i]] between them, in proportion to their length. A new server
 * (another run_id) counted from zero since it started: its count goes to the last interval,
 * the old server's last moments (blocked in SHUTDOWN) are not known. */
static void spread(const rec_sample *s, size_t a, size_t b, double *per)
{
    if (s[a].run != s[b].run) {
        per[b] = (double)s[b].gets;
        return;
    }
    double span = (double)(s[b].t - s[a].t), d = (double)(s[b].gets - s[a].gets);
    for (size_t i = a + 1; i <= b; i++)
        per[i] = span > 0 ? d * (double)(s[i].t - s[i - 1].t) / span : 0;
}

/* The buckets of the scenario: samples lo .. lo + nb, t relative to t_ev. */
static int scn_buckets(rec_scn *sc, rec_sampler *sp, size_t lo, int nb, uint64_t t_ev)
{
    pthread_mutex_lock(&sp->mu);
    const rec_sample *s = sp->s;
    size_t hi = lo + (size_t)nb, a = lo;
    while (a > 0 && !s[a].ok) /* the last answered sample at or before lo */
        a--;
    double *per = calloc(hi + 1, sizeof *per);
    sc->t = calloc((size_t)nb + 1, sizeof *sc->t);
    sc->gets = calloc((size_t)nb, sizeof *sc->gets);
    sc->reads = calloc((size_t)nb, sizeof *sc->reads);
    if (!per || !sc->t || !sc->gets || !sc->reads) {
        pthread_mutex_unlock(&sp->mu);
        free(per);
        return -1;
    }
    for (size_t b = a + 1; b <= hi; b++) {
        if (!s[b].ok)
            continue;
        spread(s, a, b, per);
        a = b;
    }
    for (int k = 0; k <= nb; k++)
        sc->t[k] = ((double)s[lo + (size_t)k].t - (double)t_ev) / 1e9;
    for (int k = 0; k < nb; k++) {
        sc->gets[k] = per[lo + (size_t)k + 1];
        sc->reads[k] = (double)(s[lo + (size_t)k + 1].reads - s[lo + (size_t)k].reads);
        sc->unknown += s[lo + (size_t)k + 1].ok ? 0 : 1;
    }
    pthread_mutex_unlock(&sp->mu);
    free(per);
    sc->nb = nb;
    return 0;
}

/* GETs/s over buckets [k, k + n). */
static double scn_rate(const rec_scn *sc, int k, int n)
{
    double g = 0;
    for (int i = k; i < k + n; i++)
        g += sc->gets[i];
    double dt = sc->t[k + n] - sc->t[k];
    return dt > 0 ? g / dt : NAN;
}

/* steady, peak, extra, back, noise from the buckets (definitions in --help). */
static void scn_measure(rec_scn *sc)
{
    sc->steady = scn_rate(sc, 0, REC_BEFORE);
    sc->peak = 0;
    double after = 0;
    for (int k = REC_BEFORE; k < sc->nb; k++) {
        double r = scn_rate(sc, k, 1);
        sc->peak = r > sc->peak ? r : sc->peak;
        after += sc->gets[k];
    }
    sc->peak_x = sc->peak / sc->steady;
    sc->extra = after - sc->steady * (sc->t[sc->nb] - sc->t[REC_BEFORE]);
    double first = 0; /* the first second */
    int k1 = REC_BEFORE;
    for (; k1 < sc->nb && sc->t[k1 + 1] <= 1.0 + 1e-3; k1++)
        first += sc->gets[k1];
    sc->extra1 = first - sc->steady * (sc->t[k1] - sc->t[REC_BEFORE]);
    int last_bad = -1, last = sc->nb - REC_WIN;
    for (int k = REC_BEFORE; k <= last; k++)
        if (fabs(scn_rate(sc, k, REC_WIN) / sc->steady - 1) > REC_BAND)
            last_bad = k;
    sc->back = last_bad < last;
    sc->back_s = last_bad < 0 ? 0 : sc->t[last_bad + 1];
    sc->noise = 0;
    for (int k = 0; k + REC_WIN <= REC_BEFORE; k++) {
        double d = fabs(scn_rate(sc, k, REC_WIN) / sc->steady - 1);
        sc->noise = d > sc->noise ? d : sc->noise;
    }
}

/* GETs per paced read before the event, and the highest after-bucket's over it: a burst of
 * reads (the readers descheduled together, then making up) raises GET/s, not GETs per read;
 * a colder tier raises both. */
static void scn_per_read(rec_scn *sc)
{
    double g = 0, r = 0;
    for (int k = 0; k < REC_BEFORE; k++) {
        g += sc->gets[k];
        r += sc->reads[k];
    }
    sc->gpr = r > 0 ? g / r : NAN;
    sc->gpr_peak_x = 0;
    for (int k = REC_BEFORE; k < sc->nb; k++)
        if (sc->reads[k] > 0)
            sc->gpr_peak_x = fmax(sc->gpr_peak_x, sc->gets[k] / sc->reads[k] / sc->gpr);
}

/* Asks every reader for a tc_stats snapshot (number want) and waits for them (5 s). */
static bool rec_snap(rec_shm *m, int n, int want)
{
    atomic_store(&m->snap, want);
    uint64_t until = now_ns() + 5 * SEC;
    for (int i = 0; i < n; i++)
        while (atomic_load(&m->r[i].snapped) < want)
            if (!rec_all_running(m) || now_ns() > until)
                return false;
            else
                sleep_ns(200000);
    return true;
}

static double hit_ratio(const rec_shm *m, int n, int from, int to)
{
    double hits = 0, reads = 0;
    for (int i = 0; i < n; i++) {
        const tc_stats *a = &m->r[i].snap[from], *b = &m->r[i].snap[to];
        hits += (double)(b->local_hits - a->local_hits);
        reads += (double)(b->local_hits + b->remote_hits + b->misses -
                          (a->local_hits + a->remote_hits + a->misses));
    }
    return reads > 0 ? hits / reads : NAN;
}

/* What the readers' counters say about [from, to]: the proof of what happened. */
static void scn_counters(rec_scn *sc, const rec_shm *m, int n, int from, int to)
{
    for (int i = 0; i < n; i++) {
        const rec_slot *r = &m->r[i];
        const tc_stats *a = &r->snap[from], *b = &r->snap[to];
        sc->reconciles += b->reconciles - a->reconciles;
        sc->full_flushes += b->full_flushes - a->full_flushes;
        sc->link_failures += b->inval_link_failures - a->inval_link_failures;
        sc->bypasses += b->local_bypasses - a->local_bypasses;
        sc->errors += r->errors[to] - r->errors[from];
        sc->skipped += r->skipped[to] - r->skipped[from];
    }
}

static long long redis_int(const char *const *argv)
{
    char *r = bench_redis_cmd(argv);
    long long v = r ? strtoll(r, NULL, 10) : -1;
    free(r);
    return v;
}

/* DBSIZE once the server has loaded its data (up means answering, LOADING included), or -1
 * after 10 s. */
static long long redis_keys(void)
{
    static const char *const dbsize[] = {"DBSIZE", NULL};
    for (int i = 0; i < 1000; i++) {
        char *r = bench_redis_cmd(dbsize);
        long long n = r && r[0] >= '0' && r[0] <= '9' ? strtoll(r, NULL, 10) : -1;
        free(r);
        if (n >= 0)
            return n;
        sleep_ns(10000000);
    }
    return -1;
}

/* Fires the event, counting the keys before and after; 0, or -1 if it could not be done. */
static int fire(rec_scn *sc)
{
    static const char *const kill_argv[] = {"CLIENT", "KILL", "TYPE", "pubsub", NULL};
    sc->keys_before = redis_keys();
    int rc;
    if (sc->event == REC_EV_KILL) {
        sc->killed = redis_int(kill_argv);
        rc = sc->killed < 0 ? -1 : 0;
    } else {
        uint64_t t0 = now_ns();
        rc = bench_redis_restart();
        sc->down_ms = (double)(now_ns() - t0) / 1e6;
    }
    sc->keys_after = redis_keys();
    return rc;
}

/* Warm-up round `round`, steady reads, the event, and its after-window. */
static int rec_scenario(const rec_ctx *x, rec_shm *m, rec_sampler *sp, int round, rec_scn *sc)
{
    int n = x->readers, b = 4 * (round - 1);
    uint64_t t_warm = now_ns();
    atomic_store(&m->warm, round);
    uint64_t until = now_ns() + 900 * SEC;
    for (int i = 0; i < n; i++)
        while (atomic_load(&m->r[i].warmed) < round)
            if (!rec_all_running(m) || now_ns() > until)
                return -1;
            else
                sleep_ns(10000000);
    sc->warm_s = (double)(now_ns() - t_warm) / 1e9;
    sleep_ns(REC_SETTLE_NS);
    size_t base = sampler_count(sp);
    bool ok = rec_snap(m, n, b + 1);
    sampler_wait(sp, base + REC_BEFORE / 2);
    ok = ok && rec_snap(m, n, b + 2);
    sampler_wait(sp, base + REC_BEFORE);
    ok = ok && rec_snap(m, n, b + 3);
    size_t e = sampler_count(sp) - 1; /* the last sample before the event */
    uint64_t t_ev = now_ns();
    int rc = ok ? fire(sc) : -1;
    int nafter = (int)lround(x->after_s * 1e9 / (double)REC_TICK_NS);
    sampler_wait(sp, e + (size_t)nafter);
    ok = ok && rec_snap(m, n, b + 4);
    if (!ok || e < REC_BEFORE ||
        scn_buckets(sc, sp, e - REC_BEFORE, REC_BEFORE + nafter, t_ev) != 0)
        return -1;
    scn_measure(sc);
    scn_per_read(sc);
    sc->hit = hit_ratio(m, n, b, b + 2);
    sc->hit1 = hit_ratio(m, n, b, b + 1);
    sc->hit2 = hit_ratio(m, n, b + 1, b + 2);
    sc->hit_after = hit_ratio(m, n, b + 2, b + 3);
    scn_counters(sc, m, n, b + 2, b + 3);
    return rc;
}

/* One mode: its processes, then each event in turn. Fills out[0 ..), *nout. */
static int rec_mode(const rec_ctx *x, int mode, int events, rec_scn *out, int *nout,
                    uint64_t *writes, uint64_t *write_errors)
{
    rec_shm *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        bench_die("mmap: %s", strerror(errno));
    memset(m, 0, sizeof *m);
    /* The children first: a child forked while the sampler thread is inside malloc or
     * hiredis may inherit a lock that is never released (seen under ASan, clang 14: readers
     * hung before their cache was open). The bench's other thread only waits in sigwait. */
    for (int i = 0; i < x->readers; i++)
        m->pids[m->np++] = rec_spawn(x, m, mode, i);
    if (x->writes > 0)
        m->pids[m->np++] = rec_spawn(x, m, mode, -1);
    rec_sampler sp = {.m = m};
    sp.port = atoi(strrchr(x->cfg->redis_url, ':') + 1);
    pthread_mutex_init(&sp.mu, NULL);
    if (pthread_create(&sp.th, NULL, sampler_main, &sp) != 0)
        bench_die("recovery: cannot start the sampler thread");
    uint64_t until = now_ns() + 120 * SEC;
    while (atomic_load(&m->up) < m->np && rec_all_running(m) && now_ns() < until)
        sleep_ns(10000000);
    int rc = atomic_load(&m->up) < m->np ? 1 : 0;
    if (rc)
        fprintf(stderr, "tc-bench: recovery: %d of %d processes opened their cache in 120 s\n",
                atomic_load(&m->up), m->np);
    int round = 0;
    for (int ev = REC_EV_KILL; ev <= REC_EV_RESTART && !rc; ev <<= 1) {
        if (!(events & ev))
            continue;
        rec_scn *sc = &out[(*nout)++];
        memset(sc, 0, sizeof *sc);
        sc->event = ev;
        sc->mode = mode;
        if (rec_scenario(x, m, &sp, ++round, sc) != 0) {
            fprintf(stderr, "tc-bench: recovery: %s with %s could not run to its end\n",
                    ev_names[ev], mode_names[mode]);
            rc = 1;
        }
    }
    atomic_store(&m->stop, 1);
    for (int i = 0; i < m->np; i++)
        rc |= bench_reap(m->pids[i], now_ns() + 30 * SEC) != 0;
    rc |= atomic_load(&m->abort);
    *writes = m->writes;
    *write_errors = m->write_errors;
    atomic_store(&sp.stop, true);
    pthread_join(sp.th, NULL);
    pthread_mutex_destroy(&sp.mu);
    free(sp.s);
    munmap(m, sizeof *m);
    return rc;
}

/* ------------------------------------------------------------------ report */

static void print_table(const rec_scn *sc, int n)
{
    report_printf("  %-8s %-7s %6s %9s %9s %7s %7s %8s %9s %6s %7s %6s %8s %6s\n", "event", "mode",
                  "hit", "steady/s", "peak/s", "peak x", "back", "extra 1s", "extra", "recon",
                  "flushes", "linkf", "bypasses", "errors");
    for (int i = 0; i < n; i++) {
        const rec_scn *s = &sc[i];
        char back[24];
        if (s->back)
            snprintf(back, sizeof back, "%.1f s", s->back_s);
        else
            snprintf(back, sizeof back, "> %.0f s", s->t[s->nb]);
        report_printf("  %-8s %-7s %6.3f %9.0f %9.0f %6.2fx %7s %+8.0f %+9.0f %6llu %7llu %6llu "
                      "%8llu %6llu\n",
                      ev_names[s->event], mode_names[s->mode], s->hit, s->steady, s->peak,
                      s->peak_x, back, s->extra1, s->extra, (unsigned long long)s->reconciles,
                      (unsigned long long)s->full_flushes, (unsigned long long)s->link_failures,
                      (unsigned long long)s->bypasses, (unsigned long long)s->errors);
    }
}

static void print_details(const rec_scn *sc, int n)
{
    for (int i = 0; i < n; i++) {
        const rec_scn *s = &sc[i];
        report_printf("  %s/%s: hit ratio %.3f before (%.3f, %.3f in its two seconds), %.3f in "
                      "the %.0f s after; steady window noise +-%.1f%% (500 ms windows)",
                      ev_names[s->event], mode_names[s->mode], s->hit, s->hit1, s->hit2,
                      s->hit_after, s->t[s->nb], s->noise * 100);
        if (s->event == REC_EV_KILL)
            report_printf("; %lld links killed", s->killed);
        else
            report_printf("; down %.0f ms", s->down_ms);
        report_printf("; keys %lld before, %lld after", s->keys_before, s->keys_after);
        if (s->skipped)
            report_printf("; %llu paced reads skipped", (unsigned long long)s->skipped);
        report_printf("; GETs per read %.3f before, the highest bucket after %.2fx that", s->gpr,
                      s->gpr_peak_x);
        report_printf("; warm-up %.1f s", s->warm_s);
        if (s->unknown)
            report_printf("; %zu sample%s unanswered or slow (buckets merged)", s->unknown,
                          s->unknown == 1 ? "" : "s");
        report_printf("\n");
    }
}

/* One character per 200 ms: the higher of its two buckets, on a scale shared by all. */
static void print_sparklines(const rec_scn *sc, int n)
{
    static const char *const lv[] = {"_",      "\u2581", "\u2582", "\u2583", "\u2584",
                                     "\u2585", "\u2586", "\u2587", "\u2588"};
    double top = 0;
    for (int i = 0; i < n; i++)
        top = sc[i].peak > top ? sc[i].peak : top;
    for (int i = 0; i < n; i++)
        top = sc[i].steady > top ? sc[i].steady : top;
    report_printf("\n  GET/s, one character per 200 ms (the higher of two buckets; full block "
                  "%.0f/s; '|' the event):\n",
                  top);
    for (int i = 0; i < n; i++) {
        const rec_scn *s = &sc[i];
        report_printf("  %-8s %-7s ", ev_names[s->event], mode_names[s->mode]);
        for (int k = 0; k + 1 < s->nb; k += 2) {
            if (k == REC_BEFORE)
                report_printf("|");
            double r = fmax(scn_rate(s, k, 1), scn_rate(s, k + 1, 1));
            int l = top > 0 ? (int)lround(r / top * 8) : 0;
            report_printf("%s", lv[l < 0 ? 0 : l > 8 ? 8 : l]);
        }
        report_printf("\n");
    }
    int after = (sc[0].nb - REC_BEFORE) / 2;
    report_printf("  %-16s -2 s%*s%*s+%.0f s\n", "", REC_BEFORE / 2 - 3, "0", after - 3, "",
                  sc[0].t[sc[0].nb]);
}

static void print_targets(const rec_scn *sc, int n)
{
    for (int i = 0; i < n; i++) {
        const rec_scn *s = &sc[i];
        if (s->event != REC_EV_KILL || s->mode != REC_MODE_GROUPS)
            continue;
        bool p = s->peak_x <= 1.3, t = s->back && s->back_s < 1.0;
        report_printf("\n  issue 18's targets, link kill with groups: peak <= 1.3x steady: %.2fx "
                      "%s; back within 10%% in < 1 s: %s%.1f s %s\n",
                      s->peak_x, p ? "met" : "NOT MET", s->back ? "" : "> ",
                      s->back ? s->back_s : s->t[s->nb], t ? "met" : "NOT MET");
    }
}

/* A step of 1, 2 or 5 x 10^k giving about six ticks up to top. */
static double nice_step(double top)
{
    double raw = top / 6, p = pow(10, floor(log10(raw > 0 ? raw : 1)));
    return raw <= p ? p : raw <= 2 * p ? 2 * p : raw <= 5 * p ? 5 * p : 10 * p;
}

static int write_svg(const char *path, const rec_ctx *x, const rec_scn *sc, int n)
{
    static const char *const colour[] = {"#d62728", "#2ca02c", "#9467bd",
                                         "#ff7f0e", "#1f77b4", "#8c564b"};
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tc-bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    const double W = 900, H = 460, L = 80, R = 20, T = 50, B = 60;
    double x0 = -(double)REC_BEFORE / 10, x1 = x->after_s, top = 0;
    for (int i = 0; i < n; i++)
        top = sc[i].peak > top ? sc[i].peak : top;
    double step = nice_step(top), ytop = ceil(top * 1.05 / step) * step;
    ytop = ytop > 0 ? ytop : 1;
#define SX(v) (L + ((v)-x0) / (x1 - x0) * (W - L - R))
#define SY(v) (H - B - (v) / ytop * (H - T - B))
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
            "height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    fprintf(f,
            "<text x=\"%.0f\" y=\"22\" font-size=\"14\">Redis GET/s per 100 ms around the "
            "event: %d readers at %.0f reads/s, %.0f writes/s</text>\n",
            L, x->readers, x->rate, x->writes);
    for (double v = 0; v <= ytop + step / 2; v += step)
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n",
                L, W - R, SY(v), SY(v), L - 6, SY(v) + 4, v);
    for (double v = ceil(x0); v <= x1; v += 1)
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#999\"/>"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n",
                SX(v), SX(v), H - B, H - B + 5, SX(v), H - B + 18, v);
    fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L,
            W - R, H - B, H - B);
    fprintf(f, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n", L, L,
            T, H - B);
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">seconds from the event "
            "(bucket ends)</text>\n",
            (L + W - R) / 2, H - 20);
    fprintf(f,
            "<text transform=\"translate(20,%.0f) rotate(-90)\" text-anchor=\"middle\">Redis "
            "GET calls per second</text>\n",
            (T + H - B) / 2);
    fprintf(f,
            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"black\" "
            "stroke-dasharray=\"4,3\"/><text x=\"%.1f\" y=\"%.0f\">event</text>\n",
            SX(0), SX(0), T, H - B, SX(0) + 4, T + 12);
    for (int i = 0; i < n; i++) {
        const rec_scn *s = &sc[i];
        fprintf(f, "<polyline fill=\"none\" stroke-width=\"1.5\" stroke=\"%s\" points=\"",
                colour[i % 6]);
        for (int k = 0; k < s->nb; k++)
            fprintf(f, "%.1f,%.1f ", SX(s->t[k + 1]), SY(scn_rate(s, k, 1)));
        double ly = T + 14 + 16.0 * i;
        fprintf(f,
                "\"/>\n<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" "
                "stroke=\"%s\" stroke-width=\"3\"/><text x=\"%.0f\" y=\"%.0f\">%s, %s: "
                "peak %.2fx steady</text>\n",
                W - R - 290, W - R - 270, ly - 4, ly - 4, colour[i % 6], W - R - 264, ly,
                ev_names[s->event], mode_names[s->mode], s->peak_x);
    }
#undef SX
#undef SY
    fprintf(f, "</svg>\n");
    return fclose(f) == 0 ? 0 : 1;
}

static int write_buckets(const char *path, const rec_scn *sc, int n)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tc-bench: %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "event,mode,bucket,t_start_s,t_end_s,gets,gets_per_s,reads\n");
    for (int i = 0; i < n; i++)
        for (int k = 0; k < sc[i].nb; k++)
            fprintf(f, "%s,%s,%d,%.4f,%.4f,%.1f,%.1f,%.0f\n", ev_names[sc[i].event],
                    mode_names[sc[i].mode], k - REC_BEFORE, sc[i].t[k], sc[i].t[k + 1],
                    sc[i].gets[k], scn_rate(&sc[i], k, 1), sc[i].reads[k]);
    return fclose(f) == 0 ? 0 : 1;
}

static void record(const rec_ctx *x, const rec_scn *s)
{
    result r;
    char mode[32];
    snprintf(mode, sizeof mode, "%s/%s", ev_names[s->event], mode_names[s->mode]);
    result_init(&r, "recovery", mode);
    snprintf(r.params, sizeof r.params,
             "steady_get_s=%.1f peak_get_s=%.1f peak_x=%.3f back_s=%.2f back=%d extra_gets=%.0f "
             "extra_gets_1s=%.0f gets_per_read=%.4f gets_per_read_peak_x=%.3f reconciles=%llu "
             "full_flushes=%llu link_failures=%llu "
             "bypasses=%llu keys_before=%lld keys_after=%lld rate=%.0f writes=%.1f",
             s->steady, s->peak, s->peak_x, s->back_s, (int)s->back, s->extra, s->extra1, s->gpr,
             s->gpr_peak_x, (unsigned long long)s->reconciles, (unsigned long long)s->full_flushes,
             (unsigned long long)s->link_failures, (unsigned long long)s->bypasses, s->keys_before,
             s->keys_after, x->rate, x->writes);
    r.threads = x->readers;
    r.keys = x->ks.n;
    r.value_size = x->vsize;
    r.seconds = x->after_s;
    r.ops_s = s->steady;
    r.local_hit = s->hit;
    r.errors = s->errors;
    report_record(&r);
}

/* ------------------------------------------------------------------ the workload */

void recovery_check_cfg(const bench_cfg *cfg)
{
    if (cfg->redis_url)
        bench_die("recovery kills every pub/sub client of its server and restarts it: it runs "
                  "on the embedded Redis only (no --redis-url)");
    if (cfg->nreaders > 1 || (cfg->nreaders == 1 && cfg->readers[0] > REC_READERS_MAX))
        bench_die("recovery: --readers takes one count, 1..%d", REC_READERS_MAX);
    if (cfg->plot && (strlen(cfg->plot) < 4 || strcmp(cfg->plot + strlen(cfg->plot) - 4, ".svg")))
        bench_die("recovery: --plot writes an SVG file: give FILE.svg");
    if (cfg->value_size < 1 || cfg->value_size > (1u << 20))
        bench_die("recovery: --value-size 1..1048576");
}

static void ctx_init(rec_ctx *x, const bench_cfg *cfg)
{
    memset(x, 0, sizeof *x);
    x->cfg = cfg;
    snprintf(x->prefix, sizeof x->prefix, "%srec", cfg->prefix);
    x->readers = cfg->nreaders ? cfg->readers[0] : REC_READERS_DEF;
    x->rate = cfg->rate > 0 ? cfg->rate : REC_RATE_DEF;
    x->writes = cfg->writes >= 0 ? cfg->writes : REC_WRITES_DEF;
    x->after_s = cfg->after_s > 0 ? cfg->after_s : REC_AFTER_DEF;
    x->warmup = cfg->warmup >= 0 ? (uint64_t)cfg->warmup : REC_WARMUP_DEF;
    x->vsize = cfg->value_size;
    size_t nkeys = cfg->keys ? cfg->keys : REC_KEYS_DEF;
    if (keyset_numbered(&x->ks, "k:", nkeys) != 0 ||
        zipf_init(&x->z, nkeys, cfg->zipf_s, cfg->seed) != 0)
        bench_die("out of memory");
    wl_populate(cfg, x->prefix, &x->ks, x->vsize);
    size_t charge = wl_local_charge(cfg, x->prefix, x->ks.k[0], x->vsize);
    bench_cfg c2 = *cfg;
    if (!cfg->local_pct_given)
        c2.local_pct = REC_LPCT_DEF;
    x->local_bytes = wl_local_budget(&c2, charge, nkeys);
}

int wl_recovery(const bench_cfg *cfg)
{
    rec_ctx x;
    ctx_init(&x, cfg);
    int events = cfg->events ? cfg->events : REC_EV_KILL | REC_EV_RESTART;
    int modes = cfg->modes ? cfg->modes : REC_MODE_FLUSH | REC_MODE_GROUPS;
    char title[512];
    snprintf(title, sizeof title,
             "recovery: %d reader process%s (broadcast; TC_COHERENCE_TARGETED in mode targeted; "
             "local tier %zu KiB) read Zipf(%.2f) over "
             "%zu keys of %zu bytes at %.0f/s each through tc_get; a writer tc_sets %.0f/s; "
             "Redis GET/s per 100 ms, %d s before to %.0f s after the event; warm-up %llu "
             "unpaced reads per reader before each event",
             x.readers, x.readers == 1 ? "" : "es", x.local_bytes >> 10, cfg->zipf_s, x.ks.n,
             x.vsize, x.rate, x.writes, REC_BEFORE / 10, x.after_s, (unsigned long long)x.warmup);
    report_section(title);
    rec_scn sc[6];
    int n = 0, rc = 0;
    uint64_t writes = 0, werr = 0;
    for (int mode = REC_MODE_FLUSH; mode <= REC_MODE_TARGETED && !rc; mode <<= 1) {
        if (!(modes & mode))
            continue;
        uint64_t w, we;
        rc |= rec_mode(&x, mode, events, sc, &n, &w, &we);
        writes += w;
        werr += we;
    }
    /* The table in event order; the runs were in mode order (one set of processes each). */
    rec_scn sorted[6];
    int ns = 0;
    for (int ev = REC_EV_KILL; ev <= REC_EV_RESTART; ev <<= 1)
        for (int i = 0; i < n; i++)
            if (sc[i].event == ev && sc[i].t)
                sorted[ns++] = sc[i];
    if (ns > 0) {
        print_table(sorted, ns);
        print_details(sorted, ns);
        print_sparklines(sorted, ns);
        print_targets(sorted, ns);
        for (int i = 0; i < ns; i++)
            record(&x, &sorted[i]);
    }
    report_printf("\n  writer: %llu writes, %llu failed (a restart fails the writes while Redis "
                  "is down). GETs: cmdstat_get of INFO commandstats (a tiercache read that "
                  "misses locally sends GET with PTTL in one round trip).\n",
                  (unsigned long long)writes, (unsigned long long)werr);
    if (ns > 0 && cfg->plot) {
        rc |= write_svg(cfg->plot, &x, sorted, ns);
        report_printf("  plot: %s\n", cfg->plot);
    }
    if (ns > 0 && cfg->buckets_csv)
        rc |= write_buckets(cfg->buckets_csv, sorted, ns);
    for (int i = 0; i < n; i++) {
        free(sc[i].t);
        free(sc[i].gets);
        free(sc[i].reads);
    }
    zipf_free(&x.z);
    keyset_free(&x.ks);
    return rc;
}
