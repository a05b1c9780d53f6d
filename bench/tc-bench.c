/*
 * tc-bench: the tiercache benchmark harness (issue 5). Options, the embedded Redis, the
 * default suite, and the closing summary; the workloads are in workloads.c and mrc.c, the
 * report in report.c.
 *
 * With no --redis-url it starts its own redis-server on a free 127.0.0.1 port (the test
 * fixture) and stops it by PID on every way out: normal return, bench_die (exit through
 * atexit), and SIGINT/SIGTERM/SIGHUP/SIGQUIT, which every thread blocks and one thread
 * waits for with sigwait, so the stop runs as ordinary code, not in a signal handler. A crash
 * is covered by the fixture: the server dies with its parent (PR_SET_PDEATHSIG). It contacts
 * nothing but that server or the one --redis-url names.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "fixture.h"
#include "mrc.h"
#include "recovery.h"
#include "tiercache.h"
#include "workloads.h"

bench_summary g_summary;

/* ------------------------------------------------------------------ cleanup */

#define MAX_CHILDREN 80 /* fanout: up to 64 readers and a writer */

static pthread_mutex_t cleanup_mu = PTHREAD_MUTEX_INITIALIZER;
static tcf_redis g_redis;
static bool g_redis_started;
static tcf_tls g_tls;         /* --tls: certificates made for this run */
static tcf_redis g_redis_tls; /* --tls: the TLS twin of g_redis */
static bool g_tls_made, g_redis_tls_started;
static pid_t g_owner;
static pid_t g_children[MAX_CHILDREN];

void bench_child_add(pid_t pid)
{
    pthread_mutex_lock(&cleanup_mu);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (!g_children[i]) {
            g_children[i] = pid;
            break;
        }
    }
    pthread_mutex_unlock(&cleanup_mu);
}

void bench_child_remove(pid_t pid)
{
    pthread_mutex_lock(&cleanup_mu);
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_children[i] == pid)
            g_children[i] = 0;
    pthread_mutex_unlock(&cleanup_mu);
}

/* Kills the coherence children, then stops the embedded Redis by its PID. Only the bench
 * process itself does this (a forked child that exits runs no cleanup). Idempotent. */
static void cleanup(void)
{
    if (getpid() != g_owner)
        return;
    pthread_mutex_lock(&cleanup_mu);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (g_children[i] > 0) {
            kill(g_children[i], SIGKILL);
            waitpid(g_children[i], NULL, 0);
            g_children[i] = 0;
        }
    }
    if (g_redis_started) {
        tcf_redis_stop(&g_redis);
        g_redis_started = false;
    }
    if (g_redis_tls_started) {
        tcf_redis_stop(&g_redis_tls);
        g_redis_tls_started = false;
    }
    if (g_tls_made) {
        tcf_tls_remove(&g_tls);
        g_tls_made = false;
    }
    pthread_mutex_unlock(&cleanup_mu);
}

/* A signal that came while the main thread had them unblocked (starting Redis). */
static volatile sig_atomic_t g_pending_sig;
static sigset_t g_sigs; /* the signals signal_thread waits for */

/* Starts the embedded Redis (fresh, or again on its port and directory), with the signals
 * unblocked: redis-server inherits the signal mask across fork and exec, and must not
 * ignore the SIGTERM that stops it. A signal that came meanwhile stops the bench. */
static int redis_spawn(bool again)
{
    pthread_mutex_lock(&cleanup_mu);
    pthread_sigmask(SIG_UNBLOCK, &g_sigs, NULL);
    int r = again ? tcf_redis_restart(&g_redis, NULL) : tcf_redis_start(&g_redis, NULL);
    pthread_sigmask(SIG_BLOCK, &g_sigs, NULL);
    if (!again) /* a failed restart still has a directory for cleanup to remove */
        g_redis_started = r == 0;
    pthread_mutex_unlock(&cleanup_mu);
    if (g_pending_sig) {
        fprintf(stderr, "tc-bench: signal %d: stopping Redis and exiting\n", (int)g_pending_sig);
        cleanup();
        _exit(128 + g_pending_sig);
    }
    return r;
}

char *bench_redis_cmd(const char *const *argv)
{
    return g_redis_started ? tcf_redis_cmd(&g_redis, argv) : NULL;
}

int bench_redis_restart(void)
{
    if (!g_redis_started)
        return -1;
    pthread_mutex_lock(&cleanup_mu);
    int r = tcf_redis_shutdown(&g_redis, true);
    pthread_mutex_unlock(&cleanup_mu);
    if (r != 0)
        fprintf(stderr, "tc-bench: SHUTDOWN SAVE failed: restarting anyway\n");
    if (redis_spawn(true) != 0) {
        fprintf(stderr, "tc-bench: could not restart redis-server on port %d\n", g_redis.port);
        return -1;
    }
    return r;
}

/* --tls: certificates for this run and a TLS-only twin of the embedded server, started with
 * the signals unblocked like the first (see main). */
static void start_tls_twin(bench_cfg *cfg, const sigset_t *sigs)
{
    if (tcf_tls_make(&g_tls) != 0)
        bench_die("--tls: could not make test certificates (is openssl installed?)");
    g_tls_made = true;
    pthread_mutex_lock(&cleanup_mu);
    pthread_sigmask(SIG_UNBLOCK, sigs, NULL);
    int r = tcf_redis_start_tls(&g_redis_tls, &g_tls, NULL);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    g_redis_tls_started = r == 0;
    pthread_mutex_unlock(&cleanup_mu);
    if (r != 0)
        bench_die("--tls: could not start redis-server with TLS");
    cfg->tls_url = g_redis_tls.url;
    cfg->tls_ca = g_tls.ca_file;
}

static void note_signal(int sig)
{
    g_pending_sig = sig;
}

static void *signal_thread(void *arg)
{
    const sigset_t *set = arg;
    int sig = 0;
    if (sigwait(set, &sig) != 0)
        return NULL;
    fprintf(stderr, "\ntc-bench: signal %d: stopping Redis and exiting\n", sig);
    cleanup();
    report_close();
    _exit(128 + sig);
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tc-bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (getpid() != g_owner)
        _exit(2);
    exit(1); /* atexit: cleanup */
}

void summary_init(void)
{
    memset(&g_summary, 0, sizeof g_summary);
    g_summary.hit_ns = g_summary.floor_ns = g_summary.redis_get_ns = NAN;
    g_summary.zipf_local_hit = NAN;
    g_summary.coh_p50 = g_summary.coh_p99 = g_summary.coh_max = NAN;
    g_summary.st_loads_per_key = g_summary.st_naive_per_key = NAN;
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: tc-bench [WORKLOAD] [options]\n"
        "\n"
        "Workloads (default: suite):\n"
        "  suite         hotpath, zipf (1 and 2 threads), trace (with --trace), mrc,\n"
        "                coherence, stampede: under a minute\n"
        "  hotpath       local hit vs floor (hash lookup + memcpy) vs Redis GET, local-hit\n"
        "                throughput with 1 and 2 threads, then zipf read throughput with 1\n"
        "                and 2 threads\n"
        "  zipf          Zipf(s) reads over --keys (writes with --write-frac)\n"
        "  trace FILE    replays FILE: one key id per line\n"
        "  stampede      threads missing the same cold keys through tc_get_or_set\n"
        "  coherence     writer and reader processes: invalidation delay p50/p99/max\n"
        "  fanout        per coherence mode, N subscribed reader processes and a writer at\n"
        "                full speed: writes/s, Redis CPU and messages per write, delay\n"
        "  writecost     tc_set with recovery by groups vs by flush: client time, Redis CPU\n"
        "                and commands per write; the sequence fetch of a new link; what a\n"
        "                link break costs a reader (--ops: writes per turn, 5000)\n"
        "  mrc           miss-ratio curve: local tier policy vs LRU vs Belady, on --trace FILE\n"
        "                (else on Zipf); --plot out.png draws it\n"
        "  entries       bytes per local entry (16, 100, 1000-byte values): the budget's\n"
        "                charge, its overhead beyond key and value, malloc's real use\n"
        "  recovery      what a broken invalidation link costs Redis (issue 18): --readers\n"
        "                reader processes (broadcast, warm local tiers) read Zipf keys at\n"
        "                --rate, a writer writes --writes/s; the bench samples Redis GET\n"
        "                calls (INFO commandstats) every 100 ms from 2 s before to --after s\n"
        "                after an event: kill (CLIENT KILL TYPE pubsub) or restart (SHUTDOWN\n"
        "                SAVE, same port and data file); each with a new link flushing the\n"
        "                tier (flush: TC_RECOVERY_GROUPS unset) and dropping only the groups\n"
        "                that moved (groups: recovery = TC_RECOVERY_GROUPS). Embedded Redis only.\n"
        "                Reports per scenario: steady GET/s (the 2 s before), the peak 100 ms\n"
        "                bucket, 'back': the time from the event after which every 500 ms\n"
        "                window (5 buckets, sliding by 100 ms) up to the end averages within\n"
        "                +-10%% of steady (0: never left; '>' with the window's length: not\n"
        "                back), the extra GETs over steady (first second, whole window),\n"
        "                GETs per paced read (a burst of reads raises GET/s, not this), the\n"
        "                readers' reconciles and full flushes; the issue's targets for kill\n"
        "                with groups (peak <= 1.3x, back < 1 s)\n"
        "Every workload runs its baselines in the same run: local tier off (a Redis round\n"
        "trip per read) and, for reads, the floor; ratios are against both.\n"
        "\n"
        "Options:\n"
        "  --redis-url URL    use this Redis instead of starting redis-server on a free\n"
        "                     127.0.0.1 port (keys go under a unique prefix, cleared after)\n"
        "  --keys N           key space (zipf: 100000)\n"
        "  --value-size N     value bytes (100)\n"
        "  --ops N            measured operations per run, split over the threads (zipf:\n"
        "                     200000; trace: all lines; coherence: writes, 500; hotpath: ops\n"
        "                     per timed loop, 1000000; mrc on zipf: accesses, 1000000)\n"
        "  --warmup N         unmeasured operations first (zipf: max(2x local entries, ops/2);\n"
        "                     trace: 0; recovery: unpaced reads per reader before each event,\n"
        "                     150000)\n"
        "  --threads N[,N..]  thread counts to run (zipf: 1,2; trace: 1; hotpath: local-hit\n"
        "                     throughput with threads sharing a cache, 1,2 but not with\n"
        "                     --hot-only unless given; at most %d)\n"
        "  --readers N[,N..]  fanout: reader processes per run (1,4,16,64; at most 64);\n"
        "                     recovery: one count (8)\n"
        "  --seed N           random seed (42)\n"
        "  --zipf-s S         Zipf exponent (0.99)\n"
        "  --write-frac F     fraction of zipf operations that are tc_set (0)\n"
        "  --local-pct P      local tier sized to hold P%% of the keys (10; recovery: 8)\n"
        "  --local-bytes N    local tier budget in bytes (overrides --local-pct)\n"
        "  --hot-keys N       hot path keys (8)\n"
        "  --hot-only         hotpath without the zipf throughput runs (for profilers)\n"
        "  --tls              hotpath, zipf: also start a TLS twin of the embedded Redis\n"
        "                     (certificates made for the run) and report the miss path and\n"
        "                     the local hit over TLS next to plaintext\n"
        "  --no-remote-ttl    fills do not ask Redis for the key's TTL (tc_options\n"
        "                     .fetch_remote_ttl = 0: GET alone, local copies bounded by\n"
        "                     local_ttl_ms only)\n"
        "  --rate R           recovery: reads/s of each reader, paced (2000)\n"
        "  --writes W         recovery: writes/s of the writer, Zipf keys (20; 0: none)\n"
        "  --event E          recovery: kill, restart or both (both)\n"
        "  --mode M           recovery: flush, groups, both (both), targeted\n"
        "                     (TC_COHERENCE_TARGETED: Redis tracking, whose new link\n"
        "                     flushes) or all three\n"
        "  --after S          recovery: seconds reported after the event (10)\n"
        "  --buckets-csv FILE recovery: every 100 ms bucket of every scenario, as CSV\n"
        "  --trace FILE       trace for suite and mrc\n"
        "  --plot FILE.png    mrc: the curve; zipf, trace, coherence: latency CDFs vs baselines;\n"
        "                     recovery: FILE.svg, GET/s over time per scenario (no gnuplot)\n"
        "  --json FILE        one JSON object per result and line (\"-\": stdout, the table\n"
        "                     then goes to stderr)\n"
        "  --csv FILE         one CSV line per result, with a header\n"
        "  --version          print the library's version and exit\n"
        "  -h, --help\n",
        TCB_MAX_THREADS);
}

static uint64_t parse_u64(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || d < 0 || d > 1e15)
        bench_die("%s: not a non-negative number: %s", opt, s);
    return (uint64_t)d;
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (errno || end == s || *end || d < lo || d > hi)
        bench_die("%s: want a number in [%g, %g]: %s", opt, lo, hi, s);
    return d;
}

/* A comma-separated list of counts, each 1..max, at most TCB_MAX_THREADS of them. */
static void parse_counts(const char *opt, const char *s, int max, int *out, int *n)
{
    *n = 0;
    char buf[128];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v = parse_u64(opt, t);
        if (v < 1 || v > (uint64_t)max || *n >= TCB_MAX_THREADS)
            bench_die("%s: 1..%d each, at most %d counts", opt, max, TCB_MAX_THREADS);
        out[(*n)++] = (int)v;
    }
}

/* "a", "b" or "both" -> 1, 2 or 3. */
static int parse_pair(const char *opt, const char *s, const char *a, const char *b)
{
    if (strcmp(s, a) == 0)
        return 1;
    if (strcmp(s, b) == 0)
        return 2;
    if (strcmp(s, "both") == 0)
        return 3;
    bench_die("%s: want %s, %s or both: %s", opt, a, b, s);
}

/* Kept compact, one line per row of options. */
// clang-format off
enum {
    O_URL = 256, O_KEYS, O_VSIZE, O_OPS, O_WARMUP, O_THREADS, O_SEED, O_ZIPF_S, O_WFRAC,
    O_LPCT, O_LBYTES, O_HOT, O_HOT_ONLY, O_TRACE, O_PLOT, O_JSON, O_CSV, O_NO_RTTL,
    O_VERSION, O_TLS, O_READERS, O_RATE, O_WRITES, O_EVENT, O_MODE, O_AFTER, O_BUCKETS
};
// clang-format on

static const struct option long_opts[] = {
    {"redis-url", required_argument, NULL, O_URL},
    {"keys", required_argument, NULL, O_KEYS},
    {"value-size", required_argument, NULL, O_VSIZE},
    {"ops", required_argument, NULL, O_OPS},
    {"warmup", required_argument, NULL, O_WARMUP},
    {"threads", required_argument, NULL, O_THREADS},
    {"readers", required_argument, NULL, O_READERS},
    {"seed", required_argument, NULL, O_SEED},
    {"zipf-s", required_argument, NULL, O_ZIPF_S},
    {"write-frac", required_argument, NULL, O_WFRAC},
    {"local-pct", required_argument, NULL, O_LPCT},
    {"local-bytes", required_argument, NULL, O_LBYTES},
    {"hot-keys", required_argument, NULL, O_HOT},
    {"hot-only", no_argument, NULL, O_HOT_ONLY},
    {"no-remote-ttl", no_argument, NULL, O_NO_RTTL},
    {"tls", no_argument, NULL, O_TLS},
    {"trace", required_argument, NULL, O_TRACE},
    {"plot", required_argument, NULL, O_PLOT},
    {"json", required_argument, NULL, O_JSON},
    {"csv", required_argument, NULL, O_CSV},
    {"rate", required_argument, NULL, O_RATE},
    {"writes", required_argument, NULL, O_WRITES},
    {"event", required_argument, NULL, O_EVENT},
    {"mode", required_argument, NULL, O_MODE},
    {"after", required_argument, NULL, O_AFTER},
    {"buckets-csv", required_argument, NULL, O_BUCKETS},
    {"version", no_argument, NULL, O_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* ------------------------------------------------------------------ Redis */

/* "redis://user:secret@host:1/0" -> "redis://host:1/0": credentials never reach a report. */
static void url_public(const char *url, char *out, size_t cap)
{
    const char *scheme = strstr(url, "://");
    const char *at = strrchr(url, '@');
    if (scheme && at && at > scheme)
        snprintf(out, cap, "%.*s%s", (int)(scheme + 3 - url), url, at + 1);
    else
        snprintf(out, cap, "%s", url);
}

static void redis_version(char *out, size_t cap)
{
    static const char *const argv[] = {"INFO", "server", NULL};
    out[0] = '\0';
    char *info = tcf_redis_cmd(&g_redis, argv);
    if (!info)
        return;
    const char *v = strstr(info, "redis_version:");
    if (v) {
        v += strlen("redis_version:");
        size_t n = strcspn(v, "\r\n");
        snprintf(out, cap, "%.*s", (int)n, v);
    }
    free(info);
}

/* ------------------------------------------------------------------ suite and summary */

static void print_summary(const bench_cfg *cfg)
{
    report_section("summary vs the targets (docs/performance.md; ratios from this run)");
    if (!isnan(g_summary.hit_ns)) {
        double r1 = g_summary.hit_ns / g_summary.floor_ns;
        double r2 = g_summary.redis_get_ns / g_summary.hit_ns;
        report_printf("  local hit %.1f ns / floor %.1f ns     = %5.2fx  (target <= 3x)    %s\n",
                      g_summary.hit_ns, g_summary.floor_ns, r1, r1 <= 3 ? "met" : "NOT MET");
        report_printf("  Redis GET %.1f us / local hit        = %5.0fx  (target >= 100x)  %s\n",
                      g_summary.redis_get_ns / 1e3, r2, r2 >= 100 ? "met" : "NOT MET");
    }
    for (int i = 0; i < g_summary.nzipf; i++)
        report_printf("  zipf reads, %d thr: tiercache / redis-only throughput = %5.2fx  "
                      "(target: several times)   / floor = %.3fx   / hit-ratio bound = %.2fx "
                      "(target >= 0.90x)\n",
                      g_summary.zipf_threads[i], g_summary.zipf_speedup[i], g_summary.zipf_floor[i],
                      g_summary.zipf_vs_bound[i]);
    for (int i = 0; i < g_summary.nmrc; i++)
        report_printf("  hit ratio at 10%% of keys, %s: clock-sim %.3f, real tier %.3f, "
                      "LRU %.3f, Belady %.3f\n",
                      g_summary.mrc_label[i], 1 - g_summary.mrc_clock[i], 1 - g_summary.mrc_real[i],
                      1 - g_summary.mrc_lru[i], 1 - g_summary.mrc_opt[i]);
    if (!isnan(g_summary.coh_p50)) {
        char a[16], b[16], c[16];
        report_printf("  invalidation delay (write returned -> other process sees it): p50 %s, "
                      "p99 %s, max %s\n",
                      report_fmt_ns(g_summary.coh_p50, a, sizeof a),
                      report_fmt_ns(g_summary.coh_p99, b, sizeof b),
                      report_fmt_ns(g_summary.coh_max, c, sizeof c));
    }
    if (!isnan(g_summary.st_loads_per_key))
        report_printf("  stampede: loader calls per cold key: get_or_set %.2f, naive "
                      "get+load+set %.2f (ideal 1)\n",
                      g_summary.st_loads_per_key, g_summary.st_naive_per_key);
    (void)cfg;
}

static int run_suite(bench_cfg *cfg)
{
    int rc = 0;
    cfg->quick = true;
    const char *plot = cfg->plot;
    cfg->plot = NULL; /* one png per command: the suite draws none */
    if (plot)
        report_printf("  (--plot is ignored by the suite: use it with one workload)\n");
    rc |= wl_hotpath(cfg, false);
    rc |= wl_zipf(cfg);
    if (cfg->trace) {
        rc |= wl_trace(cfg);
    } else {
        report_section("trace: skipped (no --trace FILE given)");
    }
    /* The curves: on the trace when there is one, and on Zipf with the zipf workload's
     * parameters. */
    if (cfg->trace)
        rc |= wl_mrc(cfg);
    const char *trace = cfg->trace;
    cfg->trace = NULL;
    uint64_t ops = cfg->ops;
    cfg->ops = 0;
    rc |= wl_mrc(cfg);
    cfg->trace = trace;
    cfg->ops = ops;
    rc |= wl_entries(cfg);
    rc |= wl_coherence(cfg);
    rc |= wl_stampede(cfg);
    print_summary(cfg);
    return rc;
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    g_owner = getpid();
    summary_init();

    /* Every thread started from here on inherits the blocked set; only signal_thread
     * receives these signals. */
    sigemptyset(&g_sigs);
    sigaddset(&g_sigs, SIGINT);
    sigaddset(&g_sigs, SIGTERM);
    sigaddset(&g_sigs, SIGHUP);
    sigaddset(&g_sigs, SIGQUIT);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = note_signal;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (sigismember(&g_sigs, s) == 1)
            sigaction(s, &sa, NULL);
    pthread_sigmask(SIG_BLOCK, &g_sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t st;
    if (pthread_create(&st, NULL, signal_thread, &g_sigs) != 0) {
        fprintf(stderr, "tc-bench: cannot start the signal thread\n");
        return 1;
    }
    pthread_detach(st);
    atexit(cleanup);

    bench_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.value_size = 100;
    cfg.warmup = -1;
    cfg.seed = 42;
    cfg.zipf_s = 0.99;
    cfg.local_pct = 10;
    cfg.hot_keys = 8;
    cfg.writes = -1;
    const char *json = NULL, *csv = NULL;

    int c;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1) {
        switch (c) {
        case O_URL:
            cfg.redis_url = optarg;
            break;
        case O_KEYS:
            cfg.keys = parse_u64("--keys", optarg);
            break;
        case O_VSIZE:
            cfg.value_size = (size_t)parse_u64("--value-size", optarg);
            break;
        case O_OPS:
            cfg.ops = parse_u64("--ops", optarg);
            break;
        case O_WARMUP:
            cfg.warmup = (int64_t)parse_u64("--warmup", optarg);
            break;
        case O_THREADS:
            parse_counts("--threads", optarg, TCB_MAX_THREADS, cfg.threads, &cfg.nthreads);
            break;
        case O_READERS:
            parse_counts("--readers", optarg, 64, cfg.readers, &cfg.nreaders);
            break;
        case O_SEED:
            cfg.seed = parse_u64("--seed", optarg);
            break;
        case O_ZIPF_S:
            cfg.zipf_s = parse_double("--zipf-s", optarg, 0, 10);
            break;
        case O_WFRAC:
            cfg.write_frac = parse_double("--write-frac", optarg, 0, 1);
            break;
        case O_LPCT:
            cfg.local_pct = parse_double("--local-pct", optarg, 0, 1000);
            cfg.local_pct_given = true;
            break;
        case O_LBYTES:
            cfg.local_bytes = (size_t)parse_u64("--local-bytes", optarg);
            break;
        case O_HOT:
            cfg.hot_keys = (int)parse_u64("--hot-keys", optarg);
            break;
        case O_HOT_ONLY:
            cfg.hot_only = true;
            break;
        case O_TLS:
            cfg.tls = true;
            break;
        case O_NO_RTTL:
            cfg.no_remote_ttl = true;
            break;
        case O_TRACE:
            cfg.trace = optarg;
            break;
        case O_PLOT:
            cfg.plot = optarg;
            break;
        case O_JSON:
            json = optarg;
            break;
        case O_CSV:
            csv = optarg;
            break;
        case O_RATE:
            cfg.rate = parse_double("--rate", optarg, 1, 1e6);
            break;
        case O_WRITES:
            cfg.writes = parse_double("--writes", optarg, 0, 1e5);
            break;
        case O_EVENT:
            cfg.events = parse_pair("--event", optarg, "kill", "restart");
            break;
        case O_MODE:
            cfg.modes = strcmp(optarg, "targeted") == 0 ? REC_MODE_TARGETED
                        : strcmp(optarg, "all") == 0
                            ? REC_MODE_FLUSH | REC_MODE_GROUPS | REC_MODE_TARGETED
                            : parse_pair("--mode", optarg, "flush", "groups");
            break;
        case O_AFTER:
            cfg.after_s = parse_double("--after", optarg, 1, 60);
            break;
        case O_BUCKETS:
            cfg.buckets_csv = optarg;
            break;
        case O_VERSION:
            printf("tc-bench %s\n", tc_version());
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    const char *workload = optind < argc ? argv[optind++] : "suite";
    if (strcmp(workload, "trace") == 0 && optind < argc)
        cfg.trace = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tc-bench: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    static const char *const known[] = {"suite",    "hotpath",   "zipf",     "trace",
                                        "stampede", "coherence", "mrc",      "entries",
                                        "fanout",   "writecost", "recovery", NULL};
    bool ok = false;
    for (int i = 0; known[i]; i++)
        ok |= strcmp(workload, known[i]) == 0;
    if (!ok) {
        fprintf(stderr, "tc-bench: unknown workload: %s\n", workload);
        usage(stderr);
        return 2;
    }
    if (strcmp(workload, "trace") == 0 && !cfg.trace)
        bench_die("trace: give the trace file: tc-bench trace FILE");
    if (cfg.trace && access(cfg.trace, R_OK) != 0)
        bench_die("cannot read trace %s: %s", cfg.trace, strerror(errno));
    if (cfg.hot_keys < 1)
        bench_die("--hot-keys: at least 1");
    if (cfg.tls && cfg.redis_url)
        bench_die("--tls starts a TLS twin of the embedded Redis: not with --redis-url");
    if (cfg.tls && strcmp(workload, "hotpath") != 0 && strcmp(workload, "zipf") != 0)
        bench_die("--tls: for the hotpath and zipf workloads");
    if (strcmp(workload, "recovery") == 0)
        recovery_check_cfg(&cfg);
    if (report_open(json, csv) != 0)
        return 1;

    /* The Redis: an embedded one unless --redis-url. The mrc workload needs none. */
    char redis_desc[256];
    snprintf(redis_desc, sizeof redis_desc, "none (mrc and entries need no Redis)");
    if (strcmp(workload, "mrc") != 0 && strcmp(workload, "entries") != 0) {
        if (cfg.redis_url) {
            char pub[200];
            url_public(cfg.redis_url, pub, sizeof pub);
            snprintf(redis_desc, sizeof redis_desc, "external %s (--redis-url)", pub);
        } else {
            int r = redis_spawn(false);
            if (r != 0)
                bench_die("could not start redis-server (install it, or give --redis-url)");
            cfg.redis_url = g_redis.url;
            cfg.embedded = true;
            if (cfg.tls)
                start_tls_twin(&cfg, &g_sigs);
            char ver[64];
            redis_version(ver, sizeof ver);
            snprintf(redis_desc, sizeof redis_desc,
                     "redis-server %s, embedded on 127.0.0.1:%d (pid %ld), stopped at exit",
                     ver[0] ? ver : "?", g_redis.port, (long)g_redis.pid);
        }
    }
    snprintf(cfg.prefix, sizeof cfg.prefix, "tcbench%ld", (long)getpid());
    report_machine(redis_desc);

    int rc;
    if (strcmp(workload, "suite") == 0)
        rc = run_suite(&cfg);
    else if (strcmp(workload, "hotpath") == 0) {
        rc = wl_hotpath(&cfg, !cfg.hot_only);
        print_summary(&cfg);
    } else if (strcmp(workload, "zipf") == 0) {
        rc = wl_zipf(&cfg);
        if (cfg.tls_url) { /* the same workload against the TLS twin, for comparison */
            bench_cfg tcfg = cfg;
            tcfg.redis_url = cfg.tls_url;
            report_printf("\n== the same zipf workload over TLS (%s)\n", cfg.tls_url);
            rc |= wl_zipf(&tcfg);
        }
    } else if (strcmp(workload, "trace") == 0)
        rc = wl_trace(&cfg);
    else if (strcmp(workload, "stampede") == 0)
        rc = wl_stampede(&cfg);
    else if (strcmp(workload, "coherence") == 0)
        rc = wl_coherence(&cfg);
    else if (strcmp(workload, "fanout") == 0)
        rc = wl_fanout(&cfg);
    else if (strcmp(workload, "writecost") == 0)
        rc = wl_writecost(&cfg);
    else if (strcmp(workload, "entries") == 0)
        rc = wl_entries(&cfg);
    else if (strcmp(workload, "recovery") == 0)
        rc = wl_recovery(&cfg);
    else
        rc = wl_mrc(&cfg);

    report_close();
    cleanup();
    return rc;
}
