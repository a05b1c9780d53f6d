/*
 * The report: the human table (stdout, or stderr when a machine format goes to stdout), JSON
 * lines and CSV lines with one record per result, the machine and build description that
 * every record carries, and gnuplot drawing. State: the open output streams and the machine
 * description, set once by the main thread.
 */
#include "config.h"

#include "bench.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TC_BENCH_CC
#define TC_BENCH_CC "cc"
#endif
#ifndef TC_BENCH_CFLAGS
#define TC_BENCH_CFLAGS ""
#endif
#ifndef TC_BENCH_SRCDIR
#define TC_BENCH_SRCDIR "."
#endif

static FILE *table_out;
static FILE *json_out;
static FILE *csv_out;
static char m_cpu[128] = "unknown";
static long m_ncpu;
static char m_compiler[160];
static char m_cflags[256];
static char m_commit[80] = "unknown";
static char m_redis[160];

/* ------------------------------------------------------------------ results */

void result_init(result *r, const char *workload, const char *mode)
{
    memset(r, 0, sizeof *r);
    snprintf(r->workload, sizeof r->workload, "%s", workload);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    r->seconds = r->ops_s = r->mean_ns = r->p50 = r->p99 = r->p999 = r->max_ns = NAN;
    r->local_hit = r->remote_hit = r->miss = r->rt_per_op = NAN;
    r->vs_redis = r->vs_floor = NAN;
}

void result_free(result *r)
{
    free(r->h);
    r->h = NULL;
}

void result_latency(result *r, const hist *h)
{
    r->mean_ns = hist_mean(h);
    r->p50 = hist_percentile(h, 50);
    r->p99 = hist_percentile(h, 99);
    r->p999 = hist_percentile(h, 99.9);
    r->max_ns = (double)h->max;
}

/* ------------------------------------------------------------------ machine */

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

/* The first line a command prints, or "" (the command runs locally: git on the source). */
static void first_line_of(const char *cmd, char *out, size_t cap)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (!p)
        return;
    if (!fgets(out, (int)cap, p))
        out[0] = '\0';
    while (fgetc(p) != EOF)
        ;
    pclose(p);
    trim(out);
}

static void machine_probe(void)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "model name", 10) == 0) {
                char *c = strchr(line, ':');
                if (c) {
                    c++;
                    while (*c == ' ' || *c == '\t')
                        c++;
                    snprintf(m_cpu, sizeof m_cpu, "%s", c);
                    trim(m_cpu);
                }
                break;
            }
        }
        fclose(f);
    }
    m_ncpu = sysconf(_SC_NPROCESSORS_ONLN);
#ifdef __clang__
    snprintf(m_compiler, sizeof m_compiler, "%s (clang %d.%d.%d)", TC_BENCH_CC, __clang_major__,
             __clang_minor__, __clang_patchlevel__);
#elif defined(__GNUC__)
    snprintf(m_compiler, sizeof m_compiler, "%s (gcc %s)", TC_BENCH_CC, __VERSION__);
#else
    snprintf(m_compiler, sizeof m_compiler, "%s", TC_BENCH_CC);
#endif
    trim(m_compiler);
    snprintf(m_cflags, sizeof m_cflags, "%s", TC_BENCH_CFLAGS);
    trim(m_cflags);
    /* The commit of the source tree the bench was built from, at run time; "+dirty" when
     * tracked files differ from it. */
    char commit[64], dirty[64];
    first_line_of("git -C '" TC_BENCH_SRCDIR "' rev-parse --short HEAD 2>/dev/null", commit,
                  sizeof commit);
    if (commit[0]) {
        first_line_of("git -C '" TC_BENCH_SRCDIR "' status --porcelain --untracked-files=no "
                      "2>/dev/null",
                      dirty, sizeof dirty);
        snprintf(m_commit, sizeof m_commit, "%s%s", commit, dirty[0] ? "+dirty" : "");
    }
}

/* ------------------------------------------------------------------ output streams */

static FILE *open_out(const char *path)
{
    if (strcmp(path, "-") == 0)
        return stdout;
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "tc-bench: cannot write %s\n", path);
    return f;
}

int report_open(const char *json_path, const char *csv_path)
{
    table_out = stdout;
    if ((json_path && strcmp(json_path, "-") == 0) || (csv_path && strcmp(csv_path, "-") == 0))
        table_out = stderr;
    if (json_path && !(json_out = open_out(json_path)))
        return -1;
    if (csv_path && !(csv_out = open_out(csv_path)))
        return -1;
    if (csv_out)
        fprintf(csv_out, "workload,mode,params,threads,keys,value_size,ops,seconds,ops_per_s,"
                         "mean_ns,p50_ns,p99_ns,p999_ns,max_ns,local_hit_ratio,"
                         "remote_hit_ratio,miss_ratio,rt_per_op,loader_calls,errors,vs_redis,"
                         "vs_floor,commit,compiler,cflags,cpu,ncpu,redis\n");
    machine_probe();
    return 0;
}

void report_close(void)
{
    if (json_out && json_out != stdout)
        fclose(json_out);
    if (csv_out && csv_out != stdout)
        fclose(csv_out);
    json_out = csv_out = NULL;
    fflush(stdout);
}

FILE *report_out(void)
{
    return table_out ? table_out : stdout;
}

void report_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(report_out(), fmt, ap);
    va_end(ap);
    fflush(report_out());
}

void report_machine(const char *redis_desc)
{
    snprintf(m_redis, sizeof m_redis, "%s", redis_desc);
    report_printf("tc-bench  commit %s\n", m_commit);
    report_printf("  cpu      %s (%ld online)\n", m_cpu, m_ncpu);
    report_printf("  compiler %s\n", m_compiler);
    report_printf("  cflags   %s\n", m_cflags);
    report_printf("  redis    %s\n", m_redis);
    uint64_t t0 = now_ns(), t1 = t0;
    for (int i = 0; i < 100000; i++)
        t1 = now_ns();
    report_printf("  clock    CLOCK_MONOTONIC, %.0f ns per read (included in per-op latencies)\n",
                  (double)(t1 - t0) / 100000.0);
}

/* ------------------------------------------------------------------ the table */

/* "95ns", "1.23us", "35.1us", "1.20ms", "2.5s", in at most 8 characters. */
const char *report_fmt_ns(double ns, char *buf, size_t cap)
{
    if (isnan(ns))
        snprintf(buf, cap, "-");
    else if (ns < 1000)
        snprintf(buf, cap, "%.0fns", ns);
    else if (ns < 10000)
        snprintf(buf, cap, "%.2fus", ns / 1e3);
    else if (ns < 1e6)
        snprintf(buf, cap, "%.1fus", ns / 1e3);
    else if (ns < 1e9)
        snprintf(buf, cap, "%.2fms", ns / 1e6);
    else
        snprintf(buf, cap, "%.2fs", ns / 1e9);
    return buf;
}

static const char *fmt_rate(double v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (v >= 1e6)
        snprintf(buf, cap, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, cap, "%.1fk", v / 1e3);
    else
        snprintf(buf, cap, "%.0f", v);
    return buf;
}

static const char *fmt_pct(double v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, "%.1f%%", v * 100);
    return buf;
}

static const char *fmt_ratio(double v, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else if (v >= 100)
        snprintf(buf, cap, "%.0fx", v);
    else if (v >= 0.1)
        snprintf(buf, cap, "%.2fx", v);
    else
        snprintf(buf, cap, "%.3fx", v);
    return buf;
}

static const char *fmt_num(double v, const char *f, char *buf, size_t cap)
{
    if (isnan(v))
        snprintf(buf, cap, "-");
    else
        snprintf(buf, cap, f, v);
    return buf;
}

void report_section(const char *title)
{
    report_printf("\n== %s\n", title);
}

void report_latency_head(void)
{
    report_printf("  %-22s %3s %8s %8s %8s %8s %8s %6s %6s %6s %5s %5s %4s %8s %8s\n", "mode",
                  "thr", "ops/s", "mean", "p50", "p99", "p99.9", "local", "remote", "miss", "rt/op",
                  "loads", "err", "vs redis", "vs floor");
}

void report_latency_row(const result *r)
{
    char a[16], b[16], c[16], d[16], e[16], f[16], g[16], h[16], i[16], j[16], k[16];
    report_printf("  %-22s %3d %8s %8s %8s %8s %8s %6s %6s %6s %5s %5llu %4llu %8s %8s\n", r->mode,
                  r->threads, fmt_rate(r->ops_s, a, sizeof a),
                  report_fmt_ns(r->mean_ns, b, sizeof b), report_fmt_ns(r->p50, c, sizeof c),
                  report_fmt_ns(r->p99, d, sizeof d), report_fmt_ns(r->p999, e, sizeof e),
                  fmt_pct(r->local_hit, f, sizeof f), fmt_pct(r->remote_hit, g, sizeof g),
                  fmt_pct(r->miss, h, sizeof h), fmt_num(r->rt_per_op, "%.2f", i, sizeof i),
                  (unsigned long long)r->loads, (unsigned long long)r->errors,
                  fmt_ratio(r->vs_redis, j, sizeof j), fmt_ratio(r->vs_floor, k, sizeof k));
    report_record(r);
}

/* ------------------------------------------------------------------ JSON and CSV */

static void json_str(FILE *f, const char *k, const char *v, bool comma)
{
    fprintf(f, "%s\"%s\":\"", comma ? "," : "", k);
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, const char *k, double v)
{
    if (isnan(v) || isinf(v))
        fprintf(f, ",\"%s\":null", k);
    else if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, ",\"%s\":%.0f", k, v);
    else
        fprintf(f, ",\"%s\":%.6g", k, v);
}

static void csv_str(FILE *f, const char *v)
{
    if (strpbrk(v, ",\"\n")) {
        fputc('"', f);
        for (; *v; v++) {
            if (*v == '"')
                fputc('"', f);
            fputc(*v, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
}

static void csv_num(FILE *f, double v)
{
    fputc(',', f);
    if (isnan(v) || isinf(v))
        return;
    if (v == floor(v) && fabs(v) < 1e15)
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.6g", v);
}

static void emit(const result *r, const char *status, const char *why)
{
    if (json_out) {
        FILE *f = json_out;
        fputc('{', f);
        json_str(f, "bench", "tc-bench", false);
        json_str(f, "workload", r->workload, true);
        json_str(f, "mode", r->mode, true);
        if (status) {
            json_str(f, "status", status, true);
            json_str(f, "reason", why, true);
        }
        json_str(f, "params", r->params, true);
        json_num(f, "threads", r->threads);
        json_num(f, "keys", (double)r->keys);
        json_num(f, "value_size", (double)r->value_size);
        json_num(f, "ops", (double)r->ops);
        json_num(f, "seconds", r->seconds);
        json_num(f, "ops_per_s", r->ops_s);
        json_num(f, "mean_ns", r->mean_ns);
        json_num(f, "p50_ns", r->p50);
        json_num(f, "p99_ns", r->p99);
        json_num(f, "p999_ns", r->p999);
        json_num(f, "max_ns", r->max_ns);
        json_num(f, "local_hit_ratio", r->local_hit);
        json_num(f, "remote_hit_ratio", r->remote_hit);
        json_num(f, "miss_ratio", r->miss);
        json_num(f, "rt_per_op", r->rt_per_op);
        json_num(f, "loader_calls", (double)r->loads);
        json_num(f, "errors", (double)r->errors);
        json_num(f, "vs_redis", r->vs_redis);
        json_num(f, "vs_floor", r->vs_floor);
        json_str(f, "commit", m_commit, true);
        json_str(f, "compiler", m_compiler, true);
        json_str(f, "cflags", m_cflags, true);
        json_str(f, "cpu", m_cpu, true);
        json_num(f, "ncpu", (double)m_ncpu);
        json_str(f, "redis", m_redis, true);
        fputs("}\n", f);
        fflush(f);
    }
    if (csv_out) {
        FILE *f = csv_out;
        csv_str(f, r->workload);
        fputc(',', f);
        csv_str(f, status ? status : r->mode);
        fputc(',', f);
        csv_str(f, why ? why : r->params);
        csv_num(f, r->threads);
        csv_num(f, (double)r->keys);
        csv_num(f, (double)r->value_size);
        csv_num(f, (double)r->ops);
        csv_num(f, r->seconds);
        csv_num(f, r->ops_s);
        csv_num(f, r->mean_ns);
        csv_num(f, r->p50);
        csv_num(f, r->p99);
        csv_num(f, r->p999);
        csv_num(f, r->max_ns);
        csv_num(f, r->local_hit);
        csv_num(f, r->remote_hit);
        csv_num(f, r->miss);
        csv_num(f, r->rt_per_op);
        csv_num(f, (double)r->loads);
        csv_num(f, (double)r->errors);
        csv_num(f, r->vs_redis);
        csv_num(f, r->vs_floor);
        const char *tail[] = {m_commit, m_compiler, m_cflags, m_cpu};
        for (size_t i = 0; i < 4; i++) {
            fputc(',', f);
            csv_str(f, tail[i]);
        }
        csv_num(f, (double)m_ncpu);
        fputc(',', f);
        csv_str(f, m_redis);
        fputc('\n', f);
        fflush(f);
    }
}

void report_record(const result *r)
{
    emit(r, NULL, NULL);
}

void report_unavailable(const char *workload, const char *why)
{
    result r;
    result_init(&r, workload, "unavailable");
    emit(&r, "unavailable", why);
    report_printf("  %s: UNAVAILABLE: %s\n", workload, why);
}

/* ------------------------------------------------------------------ gnuplot */

FILE *gnuplot_open(const char *png, int width, int height)
{
    FILE *gp = popen("gnuplot", "w");
    if (!gp) {
        fprintf(stderr, "tc-bench: cannot run gnuplot\n");
        return NULL;
    }
    /* pngcairo draws better, but gnuplot-nox may lack it: fall back to the libgd png. */
    fprintf(gp,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size %d,%d font 'sans,10'\n"
            "} else {\n"
            "  set terminal png size %d,%d\n"
            "}\n",
            width, height, width, height);
    fprintf(gp, "set termoption noenhanced\n");
    fprintf(gp, "set output '");
    for (const char *p = png; *p; p++) {
        if (*p == '\'')
            fputc('\'', gp);
        fputc(*p, gp);
    }
    fprintf(gp, "'\n");
    return gp;
}

int gnuplot_close(FILE *gp, const char *png)
{
    fprintf(gp, "unset output\n");
    int rc = pclose(gp);
    if (rc != 0) {
        fprintf(stderr, "tc-bench: gnuplot failed drawing %s\n", png);
        return -1;
    }
    report_printf("  plot: %s\n", png);
    return 0;
}

int report_plot_cdf(const char *png, const char *title, result *rs, size_t n)
{
    FILE *gp = gnuplot_open(png, 900, 560);
    if (!gp)
        return -1;
    fprintf(gp, "set title \"%s\"\n", title);
    fprintf(gp, "set logscale x 10\n");
    fprintf(gp, "set xtics ('10ns' 10, '100ns' 100, '1us' 1e3, '10us' 1e4, '100us' 1e5, "
                "'1ms' 1e6, '10ms' 1e7, '100ms' 1e8, '1s' 1e9)\n");
    fprintf(gp, "set xlabel 'latency per operation (ns, log scale)'\n");
    fprintf(gp, "set ylabel 'fraction of operations at or below'\n");
    fprintf(gp, "set yrange [0:1.0]\nset grid\nset key bottom right\n");
    fprintf(gp, "plot ");
    int drawn = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rs[i].h || !rs[i].h->count)
            continue;
        fprintf(gp, "%s'-' using 1:2 with steps lw 2 title \"%s, %d thr\"", drawn ? ", " : "",
                rs[i].mode, rs[i].threads);
        drawn++;
    }
    if (!drawn) {
        fprintf(gp, "0 notitle\n");
        return gnuplot_close(gp, png);
    }
    fprintf(gp, "\n");
    for (size_t i = 0; i < n; i++) {
        const hist *h = rs[i].h;
        if (!h || !h->count)
            continue;
        uint64_t seen = 0;
        for (size_t b = 0; b < HIST_BUCKETS; b++) {
            if (!h->c[b])
                continue;
            uint64_t low, width;
            hist_bucket(b, &low, &width);
            seen += h->c[b];
            fprintf(gp, "%llu %.6f\n", (unsigned long long)(low + width),
                    (double)seen / (double)h->count);
        }
        fprintf(gp, "e\n");
    }
    return gnuplot_close(gp, png);
}
