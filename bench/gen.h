/*
 * Workload generators: a seeded xoshiro256** random generator (one per thread; not
 * thread-safe) and a Zipf(s) sampler over n keys by exact inversion of the precomputed CDF
 * (binary search), with ranks scattered over key ids by a seeded permutation so the hot keys
 * are not the first ids. The sampler is read-only after zipf_init and may be shared.
 */
#ifndef TCB_GEN_H
#define TCB_GEN_H

#include <stddef.h>
#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

void rng_seed(rng *r, uint64_t seed);

static inline uint64_t rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rng_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rng_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, 1). */
static inline double rng_double(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

typedef struct zipf {
    size_t n;
    double *cdf;    /* cdf[i]: P(rank <= i) */
    uint32_t *perm; /* rank -> key id */
} zipf;

/* n >= 1 keys, exponent s >= 0 (0 is uniform). Returns 0, or -1 on allocation failure. */
int zipf_init(zipf *z, size_t n, double s, uint64_t seed);
/* A key id in [0, n). */
uint32_t zipf_next(const zipf *z, rng *r);
void zipf_free(zipf *z);

#endif /* TCB_GEN_H */
