/*
 * Workload generators (see gen.h).
 */
#include "gen.h"

#include <math.h>
#include <stdlib.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

int zipf_init(zipf *z, size_t n, double s, uint64_t seed)
{
    z->n = n;
    z->cdf = malloc(n * sizeof *z->cdf);
    z->perm = malloc(n * sizeof *z->perm);
    if (!z->cdf || !z->perm) {
        zipf_free(z);
        return -1;
    }
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)(i + 1), s);
        z->cdf[i] = sum;
    }
    for (size_t i = 0; i < n; i++)
        z->cdf[i] /= sum;
    z->cdf[n - 1] = 1.0;
    rng r;
    rng_seed(&r, seed ^ 0x5a17f00dull);
    for (size_t i = 0; i < n; i++)
        z->perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(rng_next(&r) % (i + 1));
        uint32_t t = z->perm[i];
        z->perm[i] = z->perm[j];
        z->perm[j] = t;
    }
    return 0;
}

uint32_t zipf_next(const zipf *z, rng *r)
{
    double u = rng_double(r);
    size_t lo = 0, hi = z->n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return z->perm[lo];
}

void zipf_free(zipf *z)
{
    free(z->cdf);
    free(z->perm);
    z->cdf = NULL;
    z->perm = NULL;
}
