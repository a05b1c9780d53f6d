/*
 * Shadow reads: a sample of local hits, compared with Redis off the caller's path, so that
 * an operator can see whether the coherence promise holds on a live system.
 *
 * A local hit picks itself for sampling with a per-thread random number (one multiply-free
 * xorshift step and a compare, only when shadow_rate is set) and offers the key and a
 * digest of the bytes it served to a fixed-size queue. The queue never waits: when its
 * mutex is busy or it is full the sample is dropped and counted. A thread of the cache
 * (the shadow worker) reads the key from Redis and compares; a difference is re-checked
 * after the staleness bound and counted as a divergence only if it outlived it.
 *
 * Thread safety: tc__shadow_offer may be called from any thread; start, stop and forget
 * from the thread that opens, closes or resets the cache. Lock: the queue mutex, a leaf,
 * never held while Redis is read or a log callback runs.
 */
#ifndef TC_SHADOW_H
#define TC_SHADOW_H

#include <stdatomic.h>

#include "common.h"

typedef struct tc_shadow tc_shadow;

/* The queue's capacity (samples waiting for the worker), and how many differences may
 * wait for their re-check at once. Both fixed at start: memory does not grow with load. */
#define TC_SHADOW_QUEUE 256
#define TC_SHADOW_PENDING 64

/* The state of this thread's sampling generator (initial-exec TLS: one load, no call). */
extern _Thread_local uint64_t tc__shadow_rng __attribute__((tls_model("initial-exec")));

/* Whether this local hit is sampled, for a threshold of UINT64_MAX / rate (see
 * tc__shadow_threshold). */
static inline bool tc__shadow_pick(uint64_t threshold)
{
    uint64_t x = tc__shadow_rng;
    if (x == 0) /* this thread's first sample: seed from its TLS address */
        x = (uint64_t)(uintptr_t)&tc__shadow_rng | 1u;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    tc__shadow_rng = x;
    return x - 1 < threshold;
}

/* The threshold for 1 in rate (rate >= 1): rate 1 samples every hit. */
uint64_t tc__shadow_threshold(unsigned rate);

/* Starts the worker for c (shadow_rate > 0). TC_ERR_NOMEM, TC_ERR_IO (no thread). */
tc_status tc__shadow_start(tc_cache *c, tc_shadow **out);
/* Stops and joins the worker and frees s. NULL is a no-op. */
void tc__shadow_stop(tc_shadow *s);
/* In a child after fork (the worker does not exist there): frees s unless a thread of the
 * parent held its mutex at the fork, then leaves it (a leak rather than a broken lock). */
void tc__shadow_forget(tc_shadow *s);

/* Offers a sample of a local hit: key (klen bytes, already valid) whose served copy has
 * flags and bytes data[0..len). Never blocks; a busy or full queue counts a drop. The
 * digest is taken here, from the bytes the caller is being handed (see shadow.c). */
void tc__shadow_offer(tc_shadow *s, const char *key, size_t klen, unsigned flags, const void *data,
                      size_t len);

/* Tests: the most samples the queue ever held at once (never above TC_SHADOW_QUEUE), and
 * whether the worker has nothing queued or waiting for a re-check. */
size_t tc__shadow_queue_max(tc_shadow *s);
bool tc__shadow_idle(tc_shadow *s);

#endif /* TC_SHADOW_H */
