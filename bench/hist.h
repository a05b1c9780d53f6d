/*
 * An HDR-style latency histogram: values below 128 ns are counted exactly; above, each power
 * of two is split into 64 linear sub-buckets, so a recorded value is kept to within 1/64
 * (1.6%) of itself, from 0 to 2^64 ns, in one fixed array (about 30 KiB). Recording is a few
 * instructions and never allocates. Not thread-safe: one per thread, merged afterwards.
 */
#ifndef TCB_HIST_H
#define TCB_HIST_H

#include <stddef.h>
#include <stdint.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) * HIST_SUB + HIST_SUB)

typedef struct hist {
    uint64_t count, min, max;
    double sum;
    uint64_t c[HIST_BUCKETS];
} hist;

void hist_init(hist *h);

static inline size_t hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (size_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - HIST_SUB_BITS;
    return (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) - HIST_SUB);
}

static inline void hist_record(hist *h, uint64_t v)
{
    h->c[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* Adds every count of from into into. */
void hist_merge(hist *into, const hist *from);

/* The lowest value of bucket i and its width. */
void hist_bucket(size_t i, uint64_t *low, uint64_t *width);

/* The value at percentile p (0..100): the middle of the bucket holding it, clamped to the
 * recorded min and max. 0 when empty. */
double hist_percentile(const hist *h, double p);

double hist_mean(const hist *h);

#endif /* TCB_HIST_H */
