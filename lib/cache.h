/*
 * The cache handle, shared by the modules that orchestrate the tiers (cache.c), keep them
 * coherent (coherence.c) and report on them (stats.c). Everything here is internal.
 */
#ifndef TC_CACHE_H
#define TC_CACHE_H

#include <stdatomic.h>

#include "common.h"
#include "local.h"
#include "remote.h"
#include "stats.h"
#include "subscriber.h"

/* Test hook: called by a read between the Redis reply and the local store (never with a
 * lock held), so a test can deliver an invalidation inside the fill race window. */
typedef void (*tc_fill_hook_fn)(void *arg, const char *key);

struct tc_cache {
    tc_options opt;         /* the caller's options with defaults applied; strings below */
    char *url;              /* owned copies of the option strings */
    char *key_prefix;
    size_t key_prefix_len;
    char *rprefix;          /* "<key_prefix>:<version>:", the Redis key prefix */
    size_t rprefix_len;
    char *channel;          /* "<key_prefix>:__tc:inval" */
    size_t channel_len;
    uint64_t origin;        /* random id of this instance, carried by its invalidations */
    bool local_enabled;     /* local_max_bytes > 0 and local_ttl_ms > 0 */
    int64_t coarse_res_ns;  /* local expiries are shortened by this: see local_expiry */
    tc_logger log;
    tc_local *local;
    tc_remote *remote;
    tc_sub_ctx sub_ctx;     /* what the subscriber works with (built by tc_open) */
    tc_subscriber *sub;     /* NULL in TC_COHERENCE_NONE */
    atomic_bool link_ok;    /* the local tier may answer: always in TC_COHERENCE_NONE,
                               otherwise while the subscriber's link is known healthy */
    struct tc_flights *flights; /* single-flight table of tc_get_or_set (flight.h) */
    tc_counters counters;   /* cache-wide: what belongs to no key type */
    tc_types *types;        /* counters per key type */
    atomic_bool closing;
    int lock_poll_ms;       /* when > 0, tc_lock_acquire polls with this fixed step.
                               Tests raise it to show waiters are woken by a release. */
    tc_fill_hook_fn fill_hook; /* tests only; NULL otherwise */
    void *fill_hook_arg;
};

/* For the modules built on the core operations (loading, namespaces, tags). Keys are
 * already validated; h is tc__key_hash(key, klen). */

/* The local tier's live copy of key when the local tier may answer (counts a bypass when
 * it may not). On true *out holds a new reference, negative entries included; or, if slot
 * is not NULL, is held as tc__local_borrow holds it (release with tc__local_unborrow, or
 * hand it to the caller with tc__value_give). */
bool tc__cache_local_get(tc_cache *c, uint64_t h, const char *key, size_t klen,
                         tc_ref **out, tc_hazard **slot);

/* Makes r, held through slot (NULL: a reference), the caller's tc_value. */
void tc__value_give(tc_value *out, tc_ref *r, tc_hazard *slot);

/* Reads key from Redis and keeps it locally under the fill guard. TC_OK with *out (a
 * reference the caller owns; a negative entry has TC_REF_NEGATIVE), TC_MISS, or an error.
 * Counts nothing in the hit/miss counters: the caller does. */
tc_status tc__cache_fetch(tc_cache *c, uint64_t h, const char *key, size_t klen,
                          tc_ref **out);

struct tc_fmt_meta;
/* Writes a value with its metadata (stored-format header) through the one write path:
 * local invalidation, SET + invalidation message in one round trip, write-through.
 * ttl_ms as the public API (0 deletes). */
tc_status tc__cache_store(tc_cache *c, const char *key, size_t klen, const void *data,
                          size_t len, const struct tc_fmt_meta *meta, int ttl_ms);

/* An invalidation message to publish with a write (its bytes: inval.h). */
typedef struct tc_inval_msg {
    tc_pub pub;  /* pass tc__cache_inval_pub(&m) to the remote write */
    char *buf;   /* owned */
    bool active; /* false: nothing to publish in this mode */
} tc_inval_msg;

/* Builds the message naming n caller keys (klens[i] bytes each), to publish atomically with
 * their write; inactive outside TC_COHERENCE_BROADCAST. TC_ERR_NOMEM. */
tc_status tc__cache_inval_keys(tc_cache *c, size_t n, const char *const *keys,
                               const size_t *klens, tc_inval_msg *m);

/* The publication to pass to a remote write: NULL when m is inactive. */
static inline const tc_pub *tc__cache_inval_pub(const tc_inval_msg *m)
{
    return m->active ? &m->pub : NULL;
}

/* Frees what m holds. */
void tc__cache_inval_done(tc_inval_msg *m);

/* The counters of key's type (registering the type if there is room). */
tc_counters *tc__key_counters(tc_cache *c, const char *key, size_t klen);

#endif /* TC_CACHE_H */
