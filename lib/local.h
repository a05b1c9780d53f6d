/*
 * The local tier: an in-process cache of reference-counted values, split into shards
 * (a power of two, each with its own writers' lock), each a hash table keyed by the 64-bit
 * hash of the caller's key, eviction lists and a byte budget. Reads take no lock and write
 * nothing shared (local.c, "Reads").
 *
 * Coherence support: every shard keeps an array of invalidation sequences ("slots", chosen
 * by hash) and the whole tier has a flush epoch. A reader takes a ticket before it fetches
 * from Redis and may store what it fetched only if neither its slot's sequence nor the epoch
 * moved meanwhile (the fill guard). Invalidations and write-through stores bump the slot.
 * A sequence group (a fixed share of the hashes) can be dropped alone, as a flush does the
 * whole tier: O(1), and every ticket taken before either is refused.
 *
 * Thread safety: every function may be called from any thread. Lock order: a shard lock is
 * a leaf lock (nothing else is taken while it is held). No callback is called.
 */
#ifndef TC_LOCAL_H
#define TC_LOCAL_H

#include <stdatomic.h>

#include "common.h"
#include "reclaim.h"
#include "ref.h"

typedef struct tc_local tc_local;

/* A snapshot taken before a Redis fetch, for the fill guard. */
typedef struct tc_ticket {
    uint64_t epoch;
    uint64_t seq;
} tc_ticket;

typedef struct tc_local_stats {
    uint64_t hits, misses, evictions, expirations, entries, bytes, stores, store_rejects;
    uint64_t rejects;      /* not kept: refused by admission, or larger than a shard's budget */
    uint64_t sketch_bytes; /* the admission sketch's memory, outside the budget */
    uint64_t table_bytes;  /* the hash tables' and window rings' memory, outside the budget */
    uint64_t window_entries, window_bytes; /* in the admission windows (part of the above) */
} tc_local_stats;

/* max_bytes: the budget for keys + values + per-entry overhead across all shards; 0 makes
 * a tier that stores nothing (every get misses). nshards: a power of two, or 0 for the
 * default (64). On success *out is the new tier. */
tc_status tc__local_new(size_t max_bytes, unsigned nshards, tc_local **out);
/* Admission (W-TinyLFU, on by default): a new entry waits in a window of 1% of the budget
 * and then enters the main region only if it is more popular than what it would evict.
 * Off: plain CLOCK. Call before the tier is shared (not thread-safe). */
void tc__local_set_admission(tc_local *l, bool on);

/* Frees the tier and drops its references (values still held by callers stay valid). */
void tc__local_free(tc_local *l);
/* tc__local_free in a child after fork(): the same unless a thread of the parent held a
 * shard lock at the fork; then l is left unfreed (a leak), since it may be mid-update. */
void tc__local_free_after_fork(tc_local *l);

/* Looks up key (full key compared; a hash collision never returns another key's value).
 * On a live hit sets *out to the value with one new reference for the caller and returns
 * true. Expired entries and entries from before the last flush are misses (and are removed
 * lazily). now_ns: tc__now_ns() of the caller. No lock, no allocation, no syscall (but a
 * thread's first read registers it, and a read that finds a dead entry takes the shard
 * lock to remove it). */
bool tc__local_get(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                   tc_ref **out);

/* As tc__local_get, but the caller holds the value through *slot, a hazard slot of its
 * thread, instead of a reference, so the hit and its release write nothing another thread
 * reads: *slot NULL means a counted reference after all (every slot was taken). Release
 * with tc__local_unborrow (from any thread). Only for a value handed straight to the
 * caller of the library: it must not be stored anywhere or passed to code that expects a
 * reference, nor held (tc__ref_hold): once the tier let go, its count may be 0. */
bool tc__local_borrow(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                      tc_ref **out, tc_hazard **slot);
void tc__local_unborrow(tc_ref *r, tc_hazard *slot);
/* Turns a borrowed value into a reference the caller owns, or returns NULL (and releases
 * it) if its count already reached zero: the tier let go and nobody else holds one. */
tc_ref *tc__local_keep(tc_ref *r, tc_hazard *slot);

/* The fill-guard ticket for hash h. Take it before the Redis fetch begins. */
tc_ticket tc__local_ticket(tc_local *l, uint64_t h);

/* Stores a copy of v (the tier's own: one allocation with the entry and key; v is
 * borrowed) under key until expires_ns (monotonic),
 * unless the ticket is stale: its slot's sequence or the flush epoch moved since it was
 * taken. Then nothing is stored. Returns true if stored. Replaces an entry for the same
 * hash. Evicts to stay within the byte budget; a value larger than the whole budget, or
 * a key longer than 65,535 bytes, is not stored (a reject). */
bool tc__local_store_if_fresh(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                              int64_t expires_ns, tc_ticket t);

/* As tc__local_store_if_fresh, for a value this process has just written: also bumps the
 * slot's sequence, so that a concurrent reader's fill that started before cannot overwrite
 * it with an older value. If the ticket is stale the entry is removed instead. */
bool tc__local_store_write(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                           int64_t expires_ns, tc_ticket t);

/* Removes the entry for hash h (whatever its key: a hash names the slot it lives in) and
 * bumps the slot's sequence, so fills in flight for it are not stored. */
void tc__local_invalidate(tc_local *l, uint64_t h);

/* Sequence groups (docs/design/coherence.md, "Recovery"): every entry belongs to one of
 * TC_LOCAL_GROUPS groups, named by the caller on the value it stores (tc_ref.group), and a
 * group can be dropped on its own. On one server the group is the top bits of the key's
 * hash folded to 32 bits (tc__local_group); the cache may choose another rule (a cluster
 * slot's), as long as every instance of a fleet agrees. */
#define TC_LOCAL_GROUP_BITS 10
#define TC_LOCAL_GROUPS (1u << TC_LOCAL_GROUP_BITS)
static inline unsigned tc__local_group_of_fold(uint32_t fold)
{
    return (unsigned)(fold >> (32 - TC_LOCAL_GROUP_BITS));
}
static inline unsigned tc__local_group(uint64_t h)
{
    return tc__local_group_of_fold((uint32_t)h ^ (uint32_t)(h >> 32));
}

/* Makes every entry of group stale at once (O(1), reclaimed lazily as after a flush) and,
 * like a flush, every ticket taken before it. */
void tc__local_drop_group(tc_local *l, unsigned group);

/* Makes every entry stale at once (O(1): an epoch bump; entries are reclaimed lazily or
 * when evicted) and makes every ticket taken before it stale. */
void tc__local_flush(tc_local *l);

/* For tests: n flushes at once, as fast as flushes could come (the sweep that keeps the
 * entries' 32-bit epochs unambiguous runs as it would for them). */
void tc__local_test_flushes(tc_local *l, uint64_t n);

/* Local expiries are kept in ticks of this many ns: an entry may expire up to one tick
 * before its expires_ns, never after. */
#define TC_LOCAL_EXPIRY_TICK_NS ((int64_t)1 << 20)

/* Counters and current size, summed over shards. */
void tc__local_stats(tc_local *l, tc_local_stats *out);

/* Local hits, evictions and rejects per key type id (tc_ref.type_id), summed over the
 * threads' stripes and the shards into arrays of TC_LOCAL_TYPES (ids at or above it count
 * as 0, "other"). */
#define TC_LOCAL_TYPES 129
void tc__local_type_stats(tc_local *l, uint64_t *hits, uint64_t *evictions, uint64_t *rejects);

/* The number of live entries (walks every shard; for tests). */
size_t tc__local_count(tc_local *l);

#endif /* TC_LOCAL_H */
