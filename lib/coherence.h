/*
 * Coherence: keeping every process's local tier consistent with Redis. In broadcast mode
 * every write publishes an invalidation message (built here) in the same atomic unit as the
 * write; in tracking mode Redis itself reports writes by any client. A subscriber thread per
 * cache applies the messages to the local tier, watches the health of its link, and while the
 * link is not known healthy the local tier is bypassed.
 *
 * Thread safety: all functions may be called from any thread; start/stop from tc_open and
 * tc_close only.
 */
#ifndef TC_COHERENCE_H
#define TC_COHERENCE_H

#include "cache.h"

/* Starts the subscriber (broadcast and tracking modes) and waits until it is subscribed,
 * at most connect + command timeout. Does nothing in TC_COHERENCE_NONE. */
tc_status tc__coherence_start(tc_cache *c);
/* Stops and joins the subscriber. Safe if never started. */
void tc__coherence_stop(tc_cache *c);

/* True when the local tier may answer reads: always in TC_COHERENCE_NONE, otherwise only
 * while the subscription is known healthy. One atomic load. */
bool tc__coherence_local_usable(const tc_cache *c);

/* True when a value this process writes may be kept in its local tier at once (its own
 * invalidation will not come back to evict it). */
bool tc__coherence_write_through(const tc_cache *c);

/* An invalidation message, ready to publish. */
typedef struct tc_inval_msg {
    tc_pub pub;  /* pass &msg.pub to the remote write; see tc__inval_pub */
    char *buf;   /* owned */
    bool active; /* false: nothing to publish in this mode */
} tc_inval_msg;

/* Builds the message naming n caller keys (each klens[i] bytes). */
tc_status tc__inval_keys(tc_cache *c, size_t n, const char *const *keys, const size_t *klens,
                         tc_inval_msg *m);
/* Builds the flush-all message (for tc_clear). */
tc_status tc__inval_flush(tc_cache *c, tc_inval_msg *m);
/* The publication to pass to a remote write: NULL when inactive. */
const tc_pub *tc__inval_pub(const tc_inval_msg *m);
void tc__inval_done(tc_inval_msg *m);

/* Parses and applies one broadcast message payload to c's local tier. Returns true if the
 * message was well formed (malformed ones are counted and ignored). Exposed for tests and
 * the fuzz target. */
bool tc__inval_apply(tc_cache *c, const char *payload, size_t len);

#endif /* TC_COHERENCE_H */
