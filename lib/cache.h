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

typedef struct tc_coherence_state tc_coherence_state;

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
    tc_logger log;
    tc_local *local;
    tc_remote *remote;
    tc_coherence_state *coh; /* NULL in TC_COHERENCE_NONE */
    tc_counters counters;
    atomic_bool closing;
    tc_fill_hook_fn fill_hook; /* tests only; NULL otherwise */
    void *fill_hook_arg;
};

/* Fills buf with cryptographically random bytes (getrandom). TC_ERR_IO if unavailable. */
tc_status tc__random_bytes(void *buf, size_t n);

#endif /* TC_CACHE_H */
