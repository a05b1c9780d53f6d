/*
 * The test-only interface: what the test programs (tests/, fuzz/, stress/) reach inside a
 * cache to observe or steer it. Nothing in the library's own operation calls these.
 *
 * Thread safety: the setters are meant for a cache no other thread uses yet, or for values
 * read once per operation; the rest may be called from any thread.
 */
#ifndef TC_TESTING_H
#define TC_TESTING_H

#include "common.h"

/* Applies one broadcast invalidation payload to c's local tier, as the subscriber does
 * when it arrives (tc__subscriber_apply with c's context). True if well formed. */
bool tc__test_inval_apply(tc_cache *c, const char *payload, size_t len);

/* Whether c's local tier may answer reads now: always in TC_COHERENCE_NONE, otherwise
 * while the invalidation link is known healthy. */
bool tc__test_local_usable(const tc_cache *c);

#endif /* TC_TESTING_H */
