/*
 * The latency histogram (see hist.h). Owns nothing but its fixed array.
 */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(hist *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_merge(hist *into, const hist *from)
{
    if (!from->count)
        return;
    for (size_t i = 0; i < HIST_BUCKETS; i++)
        into->c[i] += from->c[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

void hist_bucket(size_t i, uint64_t *low, uint64_t *width)
{
    if (i < 2 * HIST_SUB) {
        *low = i;
        *width = 1;
        return;
    }
    unsigned shift = (unsigned)(i / HIST_SUB) - 1;
    uint64_t sub = (uint64_t)(i % HIST_SUB) + HIST_SUB;
    *low = sub << shift;
    *width = (uint64_t)1 << shift;
}

double hist_percentile(const hist *h, double p)
{
    if (!h->count)
        return 0;
    /* The rank of the value wanted, 1-based: the smallest value with at least p% of the
     * values at or below it. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (size_t i = 0; i < HIST_BUCKETS; i++) {
        seen += h->c[i];
        if (seen >= rank) {
            uint64_t low, width;
            hist_bucket(i, &low, &width);
            double v = (double)low + (double)(width - 1) / 2.0;
            if (v < (double)h->min)
                v = (double)h->min;
            if (v > (double)h->max)
                v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

double hist_mean(const hist *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
