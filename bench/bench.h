/*
 * What the tc-bench modules share: the run configuration, one result record (a row of the
 * human table, a JSON line, a CSV line), the report functions (report.c), the machine
 * description, and the registry of child processes that must die with the bench.
 *
 * Threads: the report functions are called from the main thread only.
 */
#ifndef TCB_BENCH_H
#define TCB_BENCH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "hist.h"

#define TCB_MAX_THREADS 8

typedef struct bench_cfg {
    const char *redis_url; /* the embedded server's or --redis-url */
    bool embedded;
    char prefix[64]; /* key prefix unique to this run; cleared after each workload */
    uint64_t keys;   /* 0: the workload's default */
    size_t value_size;
    uint64_t ops;   /* 0: the workload's default */
    int64_t warmup; /* < 0: the workload's default */
    int threads[TCB_MAX_THREADS];
    int nthreads;                 /* 0: the workload's default */
    int readers[TCB_MAX_THREADS]; /* fanout: reader processes per run */
    int nreaders;                 /* 0: the workload's default */
    uint64_t seed;
    double zipf_s;
    double write_frac;
    double local_pct;     /* local tier sized for this % of the keys */
    bool local_pct_given; /* --local-pct was given (recovery has its own default) */
    size_t local_bytes;   /* > 0: overrides local_pct */
    const char *trace;    /* trace file (trace, mrc, suite) */
    const char *plot;     /* --plot out.png */
    int hot_keys;         /* hot path */
    bool quick;           /* the default suite's shorter runs */
    bool hot_only;        /* hotpath without its zipf throughput runs */
    bool no_remote_ttl;   /* tc_options.fetch_remote_ttl = 0 */
    bool tls;             /* --tls: also measure over TLS, against tls_url */
    const char *tls_url;  /* an embedded TLS twin of the embedded server (rediss://) */
    const char *tls_ca;   /* the CA that signed its certificate */
    /* recovery: */
    double rate;             /* reads/s per reader (0: 2000) */
    double writes;           /* writes/s of the writer (< 0: 20) */
    int events;              /* REC_EV_* bits (0: both) */
    int modes;               /* REC_MODE_* bits (0: flush and groups) */
    double after_s;          /* seconds reported after the event (0: 10) */
    const char *buckets_csv; /* the raw 100 ms buckets, one CSV line each */
} bench_cfg;

#define REC_EV_KILL 1       /* CLIENT KILL TYPE pubsub */
#define REC_EV_RESTART 2    /* SHUTDOWN SAVE and a restart on the same port */
#define REC_MODE_FLUSH 1    /* TC_RECOVERY_GROUPS unset: a new link flushes the tier */
#define REC_MODE_GROUPS 2   /* TC_RECOVERY_GROUPS: a new link drops the groups that moved */
#define REC_MODE_TARGETED 4 /* TC_COHERENCE_TARGETED: Redis's tracking, a new link flushes */

/* One measured result. Numbers that do not apply are NaN (a blank in the table and CSV,
 * null in JSON). */
typedef struct result {
    char workload[24];
    char mode[32];
    char params[256];
    int threads;
    uint64_t keys, value_size, ops, errors, loads;
    double seconds, ops_s, mean_ns, p50, p99, p999, max_ns;
    double local_hit, remote_hit, miss, rt_per_op;
    double vs_redis, vs_floor; /* throughput of this mode / the baseline's */
    hist *h;                   /* owned when set (for latency plots) */
} result;

void result_init(result *r, const char *workload, const char *mode);
void result_free(result *r);
/* Sets count, mean and percentiles from h (does not keep h). */
void result_latency(result *r, const hist *h);

/* Output: the human table goes to stdout (to stderr when --json or --csv is "-"). */
int report_open(const char *json_path, const char *csv_path);
void report_close(void);
FILE *report_out(void);
/* Machine and build description, printed once at the top and carried by every record. */
void report_machine(const char *redis_desc);
/* A section heading and the column heads of the latency table. */
void report_section(const char *title);
void report_latency_head(void);
/* A row of the latency table, and its JSON/CSV line. */
void report_latency_row(const result *r);
/* Only the JSON/CSV line (for rows printed by a workload's own table). */
void report_record(const result *r);
/* A record saying a workload could not run, with why. */
void report_unavailable(const char *workload, const char *why);
/* "95ns", "1.23us", "35.1us", "1.20ms"; "-" for NaN. Returns buf. */
const char *report_fmt_ns(double ns, char *buf, size_t cap);
/* printf to the table's stream. */
void report_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Latency CDFs of the results that hold a histogram, drawn into png with gnuplot. */
int report_plot_cdf(const char *png, const char *title, result *rs, size_t n);
/* Opens gnuplot writing a png (pngcairo if available, else png). NULL on failure. */
FILE *gnuplot_open(const char *png, int width, int height);
int gnuplot_close(FILE *gp, const char *png);

/* Headline numbers the workloads leave for the suite's closing summary (NaN: not run). */
typedef struct bench_summary {
    double hit_ns, floor_ns, redis_get_ns; /* hot path, mean per op */
    double zipf_speedup[TCB_MAX_THREADS];  /* tiercache / redis-only ops/s, by thread count */
    double zipf_floor[TCB_MAX_THREADS];    /* tiercache / floor ops/s */
    double zipf_vs_bound[TCB_MAX_THREADS]; /* tiercache / (redis-only ops/s / rt per op) */
    int zipf_threads[TCB_MAX_THREADS];
    int nzipf;
    double zipf_local_hit;                     /* 1 thread */
    double coh_p50, coh_p99, coh_max;          /* invalidation delay, tiercache */
    double st_loads_per_key, st_naive_per_key; /* stampede: loader calls per cold key */
    char mrc_label[2][64];                     /* "trace" / "zipf": miss ratios at 10% */
    double mrc_clock[2], mrc_real[2], mrc_lru[2], mrc_opt[2];
    int nmrc;
} bench_summary;

extern bench_summary g_summary;
void summary_init(void);

/* Monotonic nanoseconds (CLOCK_MONOTONIC: the same clock in every process of a machine). */
static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleeps ns nanoseconds, resuming after signals. */
static inline void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Forks a worker process that dies with the bench (PR_SET_PDEATHSIG), registered with
 * bench_child_add; 0 in the child, which leaves only by _exit. Defined in workloads.c. */
pid_t bench_fork(void);
/* Waits for pid until deadline (now_ns), then kills it; unregisters it. Its exit status,
 * or -1. */
int bench_reap(pid_t pid, uint64_t deadline);

/* Child processes (coherence workers) are registered so that an interrupted bench kills
 * them before it stops its Redis. Defined in tc-bench.c. */
void bench_child_add(pid_t pid);
void bench_child_remove(pid_t pid);

/* The embedded Redis (tc-bench.c); only when cfg->embedded. One command on a fresh
 * connection: the reply as a malloc'd string, NULL on error (tcf_redis_cmd). */
char *bench_redis_cmd(const char *const *argv);
/* Shuts the embedded Redis down with a save (SHUTDOWN SAVE) and starts it again on the same
 * port with its data file, as a restart in production. 0, or -1 with a message. */
int bench_redis_restart(void);

/* Prints a message and exits through the cleanup path (which stops the embedded Redis). */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif /* TCB_BENCH_H */
