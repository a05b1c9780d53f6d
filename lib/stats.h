/*
 * Cache-wide counters. Each is a relaxed atomic: counters are statistics, not
 * synchronisation, and a relaxed increment costs no fence. Local hits are not counted here
 * but in the local tier's shards, under the shard lock the hit path already holds, so a
 * local hit touches no shared cache line.
 */
#ifndef TC_STATS_H
#define TC_STATS_H

#include <stdatomic.h>

#include "common.h"

typedef struct tc_counters {
    atomic_uint_fast64_t remote_hits, misses, sets, deletes, loads, load_errors,
        flight_waits, inval_sent, inval_received, inval_malformed, remote_errors,
        local_bypasses, link_failures;
    /* tc_get_or_set: stale values served because a reload failed (stale_if_error_ms), and
     * early refreshes (XFetch) that called the loader before the value expired. */
    atomic_uint_fast64_t stale_served, early_refreshes;
} tc_counters;

#define TC_COUNT(c, field) atomic_fetch_add_explicit(&(c)->field, 1, memory_order_relaxed)
#define TC_COUNT_N(c, field, n)                                                          \
    atomic_fetch_add_explicit(&(c)->field, (uint_fast64_t)(n), memory_order_relaxed)
#define TC_READ(c, field) ((uint64_t)atomic_load_explicit(&(c)->field, memory_order_relaxed))

#endif /* TC_STATS_H */
