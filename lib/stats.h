/*
 * Counters and metrics per key type.
 *
 * A key's type is its first two ':'-separated parts ("notifications:unread_count" for
 * "notifications:unread_count:user:7"). Counters live per type, in a table of at most
 * TC_KEY_TYPES_MAX types; keys of further types are counted under "other" (id 0). The
 * cache-wide figures of tc_stats_get are sums over the types. Each counter is a relaxed
 * atomic: counters are statistics, not synchronisation.
 *
 * Local hits, evictions and rejects are not counted here but in the local tier (hits in each
 * thread's stripe, the others in the shards, under the shard lock those paths already
 * hold), by the type id recorded in the value (tc_ref), so a local hit touches no shared
 * cache line.
 *
 * Locks: the type table's mutex serialises insertions only; lookups are lock-free (a type,
 * once published with a release store, never changes).
 */
#ifndef TC_STATS_H
#define TC_STATS_H

#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#define TC_KEY_TYPES_MAX 128
#define TC_KEY_TYPE_OTHER 0u

typedef struct tc_counters {
    atomic_uint_fast64_t remote_hits, misses, sets, deletes, loads, load_errors, flight_waits,
        inval_sent, inval_received, remote_errors;
    /* Reads that skipped the local tier because the invalidation link was not healthy. */
    atomic_uint_fast64_t local_bypasses;
    /* tc_get_or_set: stale values served because a reload failed (stale_if_error_ms), and
     * early refreshes (XFetch) that called the loader before the value expired. */
    atomic_uint_fast64_t stale_served, early_refreshes;
    /* Shadow reads (shadow.c): samples checked, found equal to Redis, found diverged. */
    atomic_uint_fast64_t shadow_sampled, shadow_agreed, shadow_diverged;
    /* Cache-wide only (never per type): */
    atomic_uint_fast64_t inval_malformed, link_failures, full_flushes, reconciles;
    atomic_uint_fast64_t shadow_dropped; /* samples the full (or busy) queue turned away */
} tc_counters;

#define TC_COUNT(c, field) atomic_fetch_add_explicit(&(c)->field, 1, memory_order_relaxed)
#define TC_COUNT_N(c, field, n)                                                                    \
    atomic_fetch_add_explicit(&(c)->field, (uint_fast64_t)(n), memory_order_relaxed)
#define TC_READ(c, field) ((uint64_t)atomic_load_explicit(&(c)->field, memory_order_relaxed))

typedef struct tc_types tc_types;

tc_status tc__types_new(tc_types **out);
void tc__types_free(tc_types *t);

/* The id of key's type (registering the type if there is room): 0 is "other". */
uint32_t tc__type_of(tc_types *t, const char *key, size_t klen);

/* The counters of type id (0..TC_KEY_TYPES_MAX). */
tc_counters *tc__type_counters(tc_types *t, uint32_t id);

/* The number of ids in use (including "other"), and the name of id. */
uint32_t tc__types_count(const tc_types *t);
const char *tc__type_name(const tc_types *t, uint32_t id);

/* The length of key's type: up to (not including) its second ':', or the whole key. */
size_t tc__key_type_len(const char *key, size_t klen);

#endif /* TC_STATS_H */
