/*
 * The core's internal API: what the modules built on the cache call (load.c, lock.c,
 * tags.c, stats.c). struct tc_cache is private to cache.c; they reach the cache only
 * through these functions, and none of them calls a public tc_* function (whose open
 * check, validation and counting would run a second time).
 *
 * Unless said otherwise: keys are already validated, h is tc__key_hash(key, klen), and a
 * function may be called from any thread with no lock held.
 */
#ifndef TC_CACHE_H
#define TC_CACHE_H

#include <string.h>

#include "common.h"
#include "flight.h"
#include "local.h"
#include "remote.h"
#include "stats.h"

/* ------------------------------------------------------------------ the handle */

/* TC_OK for an open cache; TC_ERR_ARG for NULL, TC_ERR_CLOSED once tc_close began. */
tc_status tc__cache_check_open(const tc_cache *c);

/* In a child after fork, makes c the child's own (as every call through
 * tc__cache_check_open does first) before its parts are read; a no-op otherwise. For the
 * calls that read a cache without that check (the stats). */
void tc__cache_after_fork(tc_cache *c);
/* The fork generation c's connections belong to (common.h, tc__fork_gen). */
unsigned tc__cache_gen(const tc_cache *c);

/* A caller's bad key (or name, tag, namespace): logs at TC_LOG_DEBUG "<fn>: <what> <why
 * it breaks the key rules of max_len bytes>" and returns TC_ERR_ARG. */
tc_status tc__cache_bad_key(const tc_cache *c, const char *fn, const char *what, const char *key,
                            size_t max_len);

/* The caller's options with defaults applied (read-only, fixed while the cache lives). */
const tc_options *tc__cache_options(const tc_cache *c);
const tc_logger *tc__cache_log(const tc_cache *c);

/* The cache's parts, borrowed for the cache's lifetime. */
tc_remote *tc__cache_remote(const tc_cache *c);
tc_local *tc__cache_local(const tc_cache *c);
tc_flights *tc__cache_flights(const tc_cache *c);
tc_types *tc__cache_types(const tc_cache *c);

/* Counters: the cache-wide ones (what belongs to no key type), and those of key's type
 * (registering the type if there is room). */
tc_counters *tc__cache_counters(tc_cache *c);
tc_counters *tc__key_counters(tc_cache *c, const char *key, size_t klen);

/* The length of key's Redis key "<key_prefix>:<version>:<key>" (NUL excluded). */
size_t tc__cache_rkey_len(const tc_cache *c, size_t klen);
/* Writes key's Redis key into buf (cap > tc__cache_rkey_len) and returns its length. */
size_t tc__cache_rkey(const tc_cache *c, const char *key, size_t klen, char *buf, size_t cap);

/* Whether c's local tier may answer reads now (always in TC_COHERENCE_NONE, otherwise
 * while the invalidation link is known healthy). */
bool tc__cache_local_usable(const tc_cache *c);

/* ------------------------------------------------------------------ values */

/* priv of a value held through a hazard slot (a local hit): the slot's address with its
 * low bit set, which a tc_ref's address never has. */
#define TC_PRIV_SLOT 1u

/* Makes r, held through slot (NULL: a reference, which the value takes over), the caller's
 * tc_value. */
static inline void tc__value_give(tc_value *out, tc_ref *r, tc_hazard *slot)
{
    out->data = tc__ref_data(r);
    out->len = r->len;
    out->priv = slot ? (void *)((uintptr_t)slot | TC_PRIV_SLOT) : (void *)r;
}

/* tc_value_release: lets go of what a tc_value holds and zeroes it. */
static inline void tc__value_release(tc_value *v)
{
    uintptr_t p = (uintptr_t)v->priv;
    if (p & TC_PRIV_SLOT)
        tc__hazard_drop((tc_hazard *)(p & ~(uintptr_t)TC_PRIV_SLOT));
    else
        tc__ref_drop(v->priv);
    memset(v, 0, sizeof *v);
}

/* ------------------------------------------------------------------ reads */

/* The local tier's live copy of key when the local tier may answer (counts a bypass when
 * it may not). On true *out holds a new reference, negative entries included; or, if slot
 * is not NULL, is held as tc__local_borrow holds it (release with tc__local_unborrow, or
 * hand it to the caller with tc__value_give). */
bool tc__cache_local_get(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out,
                         tc_hazard **slot);

/* The local tier's copy of key even while the tier is bypassed (for stale-if-error, which
 * accepts a copy that may have missed invalidations). True with *out a new reference. */
bool tc__cache_local_peek(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out);

/* Reads key from Redis and keeps it locally under the fill guard. TC_OK with *out (a
 * reference the caller owns; a negative entry has TC_REF_NEGATIVE), TC_MISS, or an error.
 * Counts nothing in the hit/miss counters: the caller does. */
tc_status tc__cache_fetch(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out);

/* tc_get of a validated key: local tier, then Redis, counted as tc_get counts. TC_OK with
 * *out (release with tc__value_release), TC_MISS (a cached "does not exist" too), or an
 * error. */
tc_status tc__cache_read(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_value *out);

/* ------------------------------------------------------------------ writes
 *
 * Every write goes through the one write path of cache.c: local invalidation, the Redis
 * write and its invalidation message in one round trip, write-through. ttl_ms as the public
 * API (TC_TTL_DEFAULT, TC_TTL_FOREVER, 0 deletes). */

struct tc_fmt_meta;
/* tc_set of a validated key, with the value's metadata (stored-format header; NULL: none). */
tc_status tc__cache_store(tc_cache *c, const char *key, size_t klen, const void *data, size_t len,
                          const struct tc_fmt_meta *meta, int ttl_ms);

/* tc_add of a validated key: TC_OK stored, TC_EXISTS present, or an error. */
tc_status tc__cache_add(tc_cache *c, const char *key, size_t klen, const void *data, size_t len,
                        int ttl_ms);

/* tc_incr of a validated key. */
tc_status tc__cache_incr(tc_cache *c, const char *key, size_t klen, int64_t delta, int64_t *result);

/* An invalidation message to publish with a write (its bytes: inval.h). */
typedef struct tc_inval_msg {
    tc_pub pub;  /* pass tc__cache_inval_pub(&m) to the remote write */
    char *buf;   /* owned */
    bool active; /* false: nothing to publish in this mode */
} tc_inval_msg;

/* Builds the message naming n caller keys (klens[i] bytes each), to publish atomically with
 * their write; inactive outside TC_COHERENCE_BROADCAST. TC_ERR_NOMEM. */
tc_status tc__cache_inval_keys(tc_cache *c, size_t n, const char *const *keys, const size_t *klens,
                               tc_inval_msg *m);

/* The publication to pass to a remote write: NULL when m is inactive. */
static inline const tc_pub *tc__cache_inval_pub(const tc_inval_msg *m)
{
    return m->active ? &m->pub : NULL;
}

/* Frees what m holds. */
void tc__cache_inval_done(tc_inval_msg *m);

#endif /* TC_CACHE_H */
