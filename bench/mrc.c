/*
 * Miss-ratio curves (see mrc.h). Every simulator counts in entries and sees the same access
 * sequence of key indices 0..nkeys-1; misses include the compulsory first accesses, so no
 * policy goes below distinct / accesses.
 *
 * The real tier is the one internal API the bench uses (lib/local.h): it is driven with
 * fixed-length keys and empty values, so every entry costs the budget the same, and given
 * cap entries' worth of bytes. Its budget is split evenly over its shards (up to 64, at
 * least 64 KiB each), so it may hold a few entries fewer than cap (whole entries per shard)
 * and its hash spreads keys unevenly over shards.
 */
#include "config.h"

#include "mrc.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "gen.h"
#include "keys.h"
#include "local.h"
#include "reclaim.h"

#define NONE UINT32_MAX

static const double sizes_pct[] = {1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 50};
#define NSIZES (sizeof sizes_pct / sizeof sizes_pct[0])

enum { P_CLOCK, P_REAL, P_LRU, P_OPT, NPOL };
static const char *const pol_names[NPOL] = {"clock-sim", "local-tier", "lru", "belady"};
static const char *const pol_titles[NPOL] = {"plain CLOCK (second chance), simulated",
                                             "local tier, real tc__local_* (W-TinyLFU over CLOCK)",
                                             "LRU", "Belady (offline optimum)"};

/* ------------------------------------------------------------------ list simulators */

typedef struct dlist {
    uint32_t *prev, *next;
    uint32_t head, tail;
} dlist;

static void dl_unlink(dlist *l, uint32_t k)
{
    if (l->prev[k] != NONE)
        l->next[l->prev[k]] = l->next[k];
    else
        l->head = l->next[k];
    if (l->next[k] != NONE)
        l->prev[l->next[k]] = l->prev[k];
    else
        l->tail = l->prev[k];
}

static void dl_push_head(dlist *l, uint32_t k)
{
    l->prev[k] = NONE;
    l->next[k] = l->head;
    if (l->head != NONE)
        l->prev[l->head] = k;
    else
        l->tail = k;
    l->head = k;
}

/* LRU (clock = false) or CLOCK as lib/local.c has it (clock = true): new entries enter at
 * the head with the bit clear, a hit sets the bit, and the hand at the tail gives an entry
 * with the bit set a second chance (bit cleared, moved to the head) instead of evicting it. */
static uint64_t sim_list(const uint32_t *seq, size_t n, size_t nkeys, size_t cap, bool clock)
{
    dlist l = {malloc(nkeys * sizeof(uint32_t)), malloc(nkeys * sizeof(uint32_t)), NONE, NONE};
    unsigned char *in = calloc(nkeys, 1), *ref = calloc(nkeys, 1);
    if (!l.prev || !l.next || !in || !ref)
        bench_die("out of memory");
    size_t count = 0;
    uint64_t misses = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = seq[i];
        if (in[k]) {
            if (clock) {
                ref[k] = 1;
            } else {
                dl_unlink(&l, k);
                dl_push_head(&l, k);
            }
            continue;
        }
        misses++;
        while (count >= cap) {
            uint32_t v = l.tail;
            dl_unlink(&l, v);
            if (clock && ref[v]) {
                ref[v] = 0;
                dl_push_head(&l, v);
            } else {
                in[v] = 0;
                count--;
            }
        }
        in[k] = 1;
        ref[k] = 0;
        dl_push_head(&l, k);
        count++;
    }
    free(l.prev);
    free(l.next);
    free(in);
    free(ref);
    return misses;
}

/* ------------------------------------------------------------------ Belady */

/* A max-heap of (next use << 32 | key), with lazy deletion: an element is current only if
 * its key is cached and its next use is the key's current one. */
typedef struct heap {
    uint64_t *a;
    size_t n;
} heap;

static void heap_push(heap *h, uint64_t v)
{
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (h->a[p] >= v)
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = v;
}

static uint64_t heap_pop(heap *h)
{
    uint64_t top = h->a[0], v = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->a[c + 1] > h->a[c])
            c++;
        if (h->a[c] <= v)
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = v;
    return top;
}

/* Belady's MIN with bypass: on a miss with the cache full, the entry used farthest in the
 * future goes, which may be the new key itself (then it is not stored). This is the offline
 * optimum for a cache that may decline to store. next[i]: the next position of seq[i]'s key
 * after i, NONE if never. */
static uint64_t sim_opt(const uint32_t *seq, const uint32_t *next, size_t n, size_t nkeys,
                        size_t cap)
{
    uint32_t *cur = malloc(nkeys * sizeof *cur);
    unsigned char *in = calloc(nkeys, 1);
    heap h = {malloc((n + 1) * sizeof(uint64_t)), 0};
    if (!cur || !in || !h.a)
        bench_die("out of memory");
    size_t count = 0;
    uint64_t misses = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = seq[i], nx = next[i];
        if (in[k]) {
            cur[k] = nx;
            heap_push(&h, (uint64_t)nx << 32 | k);
            continue;
        }
        misses++;
        if (nx == NONE)
            continue; /* never used again: not worth a slot */
        if (count >= cap) {
            uint64_t top;
            for (;;) {
                top = h.a[0];
                uint32_t vk = (uint32_t)top, vn = (uint32_t)(top >> 32);
                if (in[vk] && cur[vk] == vn)
                    break;
                heap_pop(&h);
            }
            if ((uint32_t)(top >> 32) <= nx)
                continue; /* the new key is the farthest: bypass */
            heap_pop(&h);
            in[(uint32_t)top] = 0;
            count--;
        }
        in[k] = 1;
        cur[k] = nx;
        heap_push(&h, (uint64_t)nx << 32 | k);
        count++;
    }
    free(cur);
    free(in);
    free(h.a);
    return misses;
}

/* ------------------------------------------------------------------ the real local tier */

static size_t real_charge(const keyset *ks)
{
    tc_local *l;
    if (tc__local_new((size_t)1 << 30, 0, &l) != TC_OK)
        bench_die("tc__local_new failed");
    const char *key = ks->k[0];
    size_t klen = strlen(key);
    uint64_t h = XXH3_64bits(key, klen);
    tc_ref *v = tc__ref_new(0);
    if (!v)
        bench_die("out of memory");
    tc__local_store_if_fresh(l, h, key, klen, v, INT64_MAX, tc__local_ticket(l, h));
    tc__ref_drop(v);
    tc_local_stats s;
    tc__local_stats(l, &s);
    tc__local_free(l);
    if (!s.entries)
        bench_die("calibrating the local tier: nothing stored");
    return (size_t)s.bytes;
}

/* Misses of the real tier given cap entries' worth of budget; *held: the entries it held at
 * the end (its effective size). */
static uint64_t sim_real(const uint32_t *seq, size_t n, const keyset *ks, const uint64_t *hs,
                         size_t cap, size_t charge, size_t *held)
{
    tc_local *l;
    if (tc__local_new(cap * charge, 0, &l) != TC_OK)
        bench_die("tc__local_new failed");
    uint64_t misses = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t k = seq[i];
        const char *key = ks->k[k];
        size_t klen = ks->maxlen;
        tc_ref *r;
        if (tc__local_get(l, hs[k], key, klen, 0, &r)) {
            tc__ref_drop(r);
            continue;
        }
        misses++;
        tc_ticket t = tc__local_ticket(l, hs[k]);
        r = tc__ref_new(0);
        if (!r)
            bench_die("out of memory");
        tc__local_store_if_fresh(l, hs[k], key, klen, r, INT64_MAX, t);
        tc__ref_drop(r);
    }
    *held = tc__local_count(l);
    tc__local_free(l);
    return misses;
}

/* ------------------------------------------------------------------ the curve */

typedef struct curve {
    size_t distinct; /* keys the sequence touches */
    size_t cap[NSIZES], held[NSIZES];
    double miss[NPOL][NSIZES];
    double compulsory;
} curve;

static void compute(const uint32_t *seq, size_t n, size_t nkeys, curve *cv)
{
    uint32_t *next = malloc(n * sizeof *next), *last = malloc(nkeys * sizeof *last);
    uint64_t *hs = malloc(nkeys * sizeof *hs);
    keyset ks; /* fixed-length keys for the real tier: equal charges */
    if (!next || !last || !hs || keyset_numbered(&ks, "m:", nkeys) != 0)
        bench_die("out of memory");
    for (size_t k = 0; k < nkeys; k++) {
        last[k] = NONE;
        hs[k] = XXH3_64bits(ks.k[k], ks.maxlen);
    }
    size_t distinct = 0;
    for (size_t i = n; i-- > 0;) {
        next[i] = last[seq[i]];
        last[seq[i]] = (uint32_t)i;
    }
    for (size_t k = 0; k < nkeys; k++)
        distinct += last[k] != NONE;
    cv->distinct = distinct;
    cv->compulsory = (double)distinct / (double)n;
    size_t charge = real_charge(&ks);
    for (size_t s = 0; s < NSIZES; s++) {
        size_t cap = (size_t)llround(sizes_pct[s] / 100.0 * (double)nkeys);
        if (cap < 1)
            cap = 1;
        cv->cap[s] = cap;
        cv->miss[P_CLOCK][s] = (double)sim_list(seq, n, nkeys, cap, true) / (double)n;
        cv->miss[P_REAL][s] = (double)sim_real(seq, n, &ks, hs, cap, charge, &cv->held[s]) /
                              (double)n;
        cv->miss[P_LRU][s] = (double)sim_list(seq, n, nkeys, cap, false) / (double)n;
        cv->miss[P_OPT][s] = (double)sim_opt(seq, next, n, nkeys, cap) / (double)n;
    }
    free(next);
    free(last);
    free(hs);
    keyset_free(&ks);
}

static int plot_curve(const char *png, const char *title, const curve *cv)
{
    FILE *gp = gnuplot_open(png, 900, 600);
    if (!gp)
        return -1;
    fprintf(gp, "set title \"%s\"\n", title);
    fprintf(gp, "set xlabel 'cache size (%% of the key space, count-based)'\n");
    fprintf(gp, "set ylabel 'miss ratio'\nset grid\nset key top right\n");
    fprintf(gp, "set yrange [0:1]\nset xrange [0:%g]\n", sizes_pct[NSIZES - 1] + 1);
    fprintf(gp,
            "plot '-' using 1:2 with linespoints lw 2 pt 7 title \"%s\", "
            "'-' using 1:2 with linespoints lw 2 pt 5 title \"%s\", "
            "'-' using 1:2 with linespoints lw 2 pt 9 title \"%s\", "
            "'-' using 1:2 with linespoints lw 2 pt 11 title \"%s\", "
            "%g with lines dt 2 lc rgb 'gray40' title 'compulsory misses (first accesses)'\n",
            pol_titles[P_CLOCK], pol_titles[P_REAL], pol_titles[P_LRU], pol_titles[P_OPT],
            cv->compulsory);
    for (int p = 0; p < NPOL; p++) {
        for (size_t s = 0; s < NSIZES; s++)
            fprintf(gp, "%g %.6f\n", sizes_pct[s], cv->miss[p][s]);
        fprintf(gp, "e\n");
    }
    return gnuplot_close(gp, png);
}

static void print_curve(const char *label, const char *params, size_t n, size_t nkeys,
                        const curve *cv)
{
    report_printf("  %7s %8s %9s %10s %8s %8s %8s   %s\n", "size", "entries", "clock-sim",
                  "local-tier", "(held)", "lru", "belady", "hit ratio: clock-sim / lru / belady");
    for (size_t s = 0; s < NSIZES; s++) {
        report_printf("  %6g%% %8zu %9.4f %10.4f %8zu %8.4f %8.4f   %.3f / %.3f / %.3f\n",
                      sizes_pct[s], cv->cap[s], cv->miss[P_CLOCK][s], cv->miss[P_REAL][s],
                      cv->held[s], cv->miss[P_LRU][s], cv->miss[P_OPT][s], 1 - cv->miss[P_CLOCK][s],
                      1 - cv->miss[P_LRU][s], 1 - cv->miss[P_OPT][s]);
        for (int p = 0; p < NPOL; p++) {
            result r;
            result_init(&r, "mrc", pol_names[p]);
            snprintf(r.params, sizeof r.params, "%s size_pct=%g", params, sizes_pct[s]);
            r.threads = 1;
            r.keys = p == P_REAL ? cv->held[s] : cv->cap[s];
            r.ops = n;
            r.miss = cv->miss[p][s];
            r.local_hit = 1 - cv->miss[p][s];
            report_record(&r);
        }
    }
    report_printf("  size: %% of the key space (%zu keys), in entries; miss ratio = misses / "
                  "accesses, first accesses included (floor %.4f: %zu keys accessed, %zu "
                  "accesses)\n",
                  nkeys, cv->compulsory, cv->distinct, n);
    report_printf("  local-tier = the real tc__local_* driven with count-based sizing "
                  "(cap x entry charge bytes; held = entries it held at the end)\n");
    int k = g_summary.nmrc;
    if (k < 2) {
        for (size_t s = 0; s < NSIZES; s++) {
            if (sizes_pct[s] == 10) {
                snprintf(g_summary.mrc_label[k], sizeof g_summary.mrc_label[k], "%s", label);
                g_summary.mrc_clock[k] = cv->miss[P_CLOCK][s];
                g_summary.mrc_real[k] = cv->miss[P_REAL][s];
                g_summary.mrc_lru[k] = cv->miss[P_LRU][s];
                g_summary.mrc_opt[k] = cv->miss[P_OPT][s];
                g_summary.nmrc++;
            }
        }
    }
}

int wl_mrc(const bench_cfg *cfg)
{
    uint32_t *seq = NULL;
    size_t n = 0, nkeys = 0;
    char title[320], params[128], label[64];
    keyset ks = {0};
    if (cfg->trace) {
        size_t skipped;
        if (trace_load(cfg->trace, cfg->ops, &ks, &seq, &n, &skipped) != 0)
            return 1;
        nkeys = ks.n;
        const char *base = strrchr(cfg->trace, '/');
        base = base ? base + 1 : cfg->trace;
        snprintf(label, sizeof label, "trace %s", base);
        snprintf(params, sizeof params, "trace=%s", base);
        snprintf(title, sizeof title, "miss-ratio curve: trace %s (%zu accesses, %zu keys)", base,
                 n, nkeys);
    } else {
        nkeys = cfg->keys ? cfg->keys : 100000;
        n = cfg->ops ? cfg->ops : 1000000;
        zipf z;
        seq = malloc(n * sizeof *seq);
        if (!seq || zipf_init(&z, nkeys, cfg->zipf_s, cfg->seed) != 0)
            bench_die("out of memory");
        rng g;
        rng_seed(&g, cfg->seed);
        for (size_t i = 0; i < n; i++)
            seq[i] = zipf_next(&z, &g);
        zipf_free(&z);
        snprintf(label, sizeof label, "zipf s=%.2f", cfg->zipf_s);
        snprintf(params, sizeof params, "zipf s=%.2f keys=%zu", cfg->zipf_s, nkeys);
        snprintf(title, sizeof title, "miss-ratio curve: Zipf s=%.2f over %zu keys (%zu accesses)",
                 cfg->zipf_s, nkeys, n);
    }
    report_section(title);
    curve cv;
    compute(seq, n, nkeys, &cv);
    print_curve(label, params, n, nkeys, &cv);
    int rc = 0;
    if (cfg->plot)
        rc = plot_curve(cfg->plot, title, &cv);
    free(seq);
    keyset_free(&ks);
    return rc;
}

/* ------------------------------------------------------------------ bytes per entry */

/* Bytes malloc has handed out and not had back (glibc's mallinfo2; 0 where there is none). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* What a tier holds outside its budget, per budget byte: the admission sketch and the
 * hash tables (fixed by the budget, so an empty tier shows it). */
static void sketch_line(void)
{
    tc_local *l;
    size_t budget = (size_t)1 << 30;
    if (tc__local_new(budget, 0, &l) != TC_OK)
        bench_die("tc__local_new failed");
    tc_local_stats st;
    tc__local_stats(l, &st);
    tc__local_free(l);
    double b = (double)budget;
    report_printf("  outside the budget (1 GiB here): sketch %.1f MiB (%.1f%%), hash tables %.1f "
                  "MiB (%.1f%%)\n",
                  (double)st.sketch_bytes / 1048576, 100.0 * (double)st.sketch_bytes / b,
                  (double)st.table_bytes / 1048576, 100.0 * (double)st.table_bytes / b);
}

int wl_entries(const bench_cfg *cfg)
{
    static const size_t vsizes[] = {16, 100, 1000};
    size_t n = cfg->keys ? cfg->keys : 20000;
    report_section("bytes per local entry: the budget's charge and malloc's real use");
    report_printf("  %7s %6s %10s %10s %12s %10s %12s\n", "value", "key", "charge", "overhead",
                  "malloc real", "overhead", "charge/real");
    for (size_t i = 0; i < sizeof vsizes / sizeof vsizes[0]; i++) {
        size_t vlen = vsizes[i];
        tc_local *l;
        if (tc__local_new((size_t)1 << 30, 0, &l) != TC_OK)
            bench_die("tc__local_new failed");
        char *val = calloc(1, vlen);
        if (!val)
            bench_die("out of memory");
        tc__reclaim_now();
        size_t before = heap_in_use(), klen = 0;
        for (size_t k = 0; k < n; k++) {
            char key[32];
            int kl = snprintf(key, sizeof key, "user:%012zu", k); /* 17 bytes */
            klen = (size_t)kl;
            uint64_t h = XXH3_64bits(key, klen);
            tc_ref *r = tc__ref_copy(val, vlen);
            if (!r)
                bench_die("out of memory");
            tc__local_store_if_fresh(l, h, key, klen, r, INT64_MAX, tc__local_ticket(l, h));
            tc__ref_drop(r);
        }
        tc__reclaim_now();
        size_t after = heap_in_use();
        tc_local_stats st;
        tc__local_stats(l, &st);
        if (st.entries == 0)
            bench_die("the local tier kept nothing");
        double charge = (double)st.bytes / (double)st.entries;
        double real = after > before ? (double)(after - before) / (double)st.entries : 0;
        double kv = (double)(klen + vlen);
        report_printf("  %6zuB %5zuB %9.1fB %9.1fB %11.1fB %9.1fB %11.3fx\n", vlen, klen, charge,
                      charge - kv, real, real ? real - kv : 0, real ? charge / real : 0);

        result r;
        result_init(&r, "entries", "local-tier");
        snprintf(r.params, sizeof r.params,
                 "value_size=%zu key_size=%zu charge=%.1f overhead=%.1f malloc=%.1f", vlen, klen,
                 charge, charge - kv, real);
        r.threads = 1;
        r.keys = st.entries;
        r.value_size = vlen;
        report_record(&r);
        tc__local_free(l);
        free(val);
    }
    report_printf("  %zu entries each, one thread; charge = local_bytes / local_entries (what the "
                  "budget counts); overhead = charge - key - value; malloc real = mallinfo2 "
                  "in-use bytes added by the entries / entries\n",
                  n);
    sketch_line();
    return 0;
}
