/*
 * The test-only interface: what the test programs reach inside a cache to observe or steer
 * it, and the hooks they set. The library itself only reads the hooks (cache.c the fill
 * hook, lock.c the lock poll step), which are zero unless a test set them. Everything else
 * a test needs comes from the internal API of cache.h.
 *
 * Thread safety: the setters are meant for a cache no other thread uses yet, or for values
 * read once per operation; the rest may be called from any thread.
 */
#ifndef TC_TESTING_H
#define TC_TESTING_H

#include "common.h"

/* ------------------------------------------------------------------ hooks */

/* Called by a read between the Redis reply and the local store (never with a lock held),
 * so a test can deliver an invalidation inside the fill race window. */
typedef void (*tc_fill_hook_fn)(void *arg, const char *key);

/* Sets c's fill hook (NULL: none, the default). */
void tc__test_set_fill_hook(tc_cache *c, tc_fill_hook_fn fn, void *arg);

/* When ms > 0, tc_lock_acquire polls with this fixed step instead of 2 ms doubling to
 * 50 ms: tests raise it to show that waiters are woken by a release, not by a poll. 0: the
 * default steps. */
void tc__test_set_lock_poll_ms(tc_cache *c, int ms);
/* What the lock module reads: the step set above, 0 unless a test set one. */
int tc__test_lock_poll_ms(const tc_cache *c);

/* For a redis-sentinel:// cache: fn(arg) runs in every thread that asked the sentinels,
 * once their answer came and before it is applied. fn NULL removes it; other caches
 * ignore it. */
void tc__test_set_sentinel_ask_hook(tc_cache *c, void (*fn)(void *arg), void *arg);

/* Broadcast mode with group sequences: full makes c recover from a link break by flushing
 * its whole local tier, although its writers still bump sequences (unlike
 * TC_RECOVERY_FLUSH, which also stops the bumps); false (the default) reconciles, keeping
 * what did not change. No effect without group sequences. */
void tc__test_set_full_flush_recovery(tc_cache *c, bool full);

/* While hold is set, c's subscriber does not reconnect a broken link. */
void tc__test_hold_relink(tc_cache *c, bool hold);

/* The next invalidation message c's subscriber receives is ignored, as if lost. False
 * (and nothing set) when c uses no group sequences. */
bool tc__test_drop_next_inval(tc_cache *c);

/* ------------------------------------------------------------------ observation */

/* Applies one broadcast invalidation payload to c's local tier, as the subscriber does
 * when it arrives (tc__subscriber_apply with c's context). True if well formed. */
bool tc__test_inval_apply(tc_cache *c, const char *payload, size_t len);

/* Whether c's local tier may answer reads now: always in TC_COHERENCE_NONE, otherwise
 * while the invalidation link is known healthy. */
bool tc__test_local_usable(const tc_cache *c);

/* c's Redis key prefix "<key_prefix>:<version>:", invalidation channel and origin id. */
const char *tc__test_rprefix(const tc_cache *c);
const char *tc__test_channel(const tc_cache *c);
uint64_t tc__test_origin(const tc_cache *c);

/* Shadow reads (shadow.h): the most samples c's queue ever held at once, and whether its
 * worker has nothing queued or waiting for a re-check. 0 and true when they are off. */
size_t tc__test_shadow_queue_max(tc_cache *c);
bool tc__test_shadow_idle(tc_cache *c);

#endif /* TC_TESTING_H */
