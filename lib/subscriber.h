/*
 * The subscriber: one thread per cache (broadcast and the tracking modes) that keeps the local
 * tier coherent. It holds the invalidation links (a subscribed connection and, in tracking
 * mode, the tracker whose invalidations redirect to it), applies what they deliver to the
 * local tier, watches their health with a heartbeat and, with Sentinel, watches the
 * sentinels for a failover. While the links are not known healthy it reports the local
 * tier untrusted, through the flag its context names.
 *
 * It sees the cache only through its context, built by cache.c: the pieces it reads and
 * writes, all borrowed, all outliving the subscriber.
 *
 * Thread safety: start and stop from tc_open and tc_close only (forget: from a child after
 * fork, in place of stop); tc__subscriber_apply from any thread.
 */
#ifndef TC_SUBSCRIBER_H
#define TC_SUBSCRIBER_H

#include <stdatomic.h>

#include "common.h"
#include "flight.h"
#include "local.h"
#include "remote.h"
#include "stats.h"

/* Broadcast mode's group sequences (docs/design/coherence.md, "Recovery"): what this
 * instance last applied per group, the generation they belong to, and the options and test
 * hooks of the recovery. Owned by the cache; the subscriber thread and
 * tc__subscriber_apply use it under its own mutex. */
typedef struct tc_seqs tc_seqs;

/* A new state, every group unknown; by_slot for a cluster, where a message's groups are
 * slots (each with its own generation) and the local tier drops slot >> 4. TC_ERR_NOMEM. */
tc_status tc__seqs_new(tc_seqs **out, bool by_slot);
void tc__seqs_free(tc_seqs *s);
/* full: recover from a link break by flushing the whole tier although the writers bump
 * sequences (a test's way to see what the reconciliation saves); false (the default):
 * reconcile, keeping what did not change. */
void tc__seqs_set_full_flush(tc_seqs *s, bool full);
/* The next broadcast message is ignored as if lost (tests). */
void tc__seqs_drop_next(tc_seqs *s);

typedef struct tc_sub_ctx {
    tc_coherence mode;      /* TC_COHERENCE_BROADCAST, _TRACKING or _TARGETED */
    int version;            /* the cache's key version: messages of another are ignored */
    uint64_t origin;        /* this instance's id: its own messages are ignored */
    const char *channel;    /* broadcast: "<key_prefix>:__tc:inval" */
    const char *key_prefix; /* tracking: Redis reports writes under "<key_prefix>:" */
    const char *rprefix;    /* tracking: "<key_prefix>:<version>:", stripped from the */
    size_t rprefix_len;     /* full Redis keys Redis reports */
    int heartbeat_ms, connect_timeout_ms, command_timeout_ms;
    tc_logger log;
    tc_remote *remote;     /* where the links go (one server, a cluster or Sentinel) */
    tc_local *local;       /* the tier kept coherent */
    tc_flights *flights;   /* woken by a key invalidation (tc__flights_notify) */
    tc_types *types;       /* per key type: inval_received */
    tc_counters *counters; /* cache-wide: inval_received of flushes, inval_malformed,
                              link_failures */
    atomic_bool *healthy;  /* written by the subscriber alone (release): the local tier
                              may answer reads */
    tc_seqs *seqs;         /* broadcast with sequences: reconcile on a new link; NULL: flush */
    const char *seq_key;   /* with seqs: "<key_prefix>:__tc:seq" (a cluster: + "{<tag>}") */
    int pool_size;         /* with seqs: the pooled connections per node, each of which may
                              have died with the link (the fetch tries past them) */
} tc_sub_ctx;

typedef struct tc_subscriber tc_subscriber;

/* Starts the subscriber thread for ctx (copied; what it points to is borrowed) and waits
 * until it is subscribed, at most what its connections may take (connect and command
 * timeouts). On failure nothing is left running and *out is NULL. */
tc_status tc__subscriber_start(const tc_sub_ctx *ctx, tc_subscriber **out);

/* Tests: while hold is set, a broken link is not reconnected (the writes a test makes
 * "while the link is down" stay lost however long its link had been up). NULL: no-op. */
void tc__subscriber_test_hold(tc_subscriber *s, bool hold);

/* Stops and joins the thread and frees s; *ctx->healthy is false afterwards. NULL is a
 * no-op. */
void tc__subscriber_stop(tc_subscriber *s);

/* In a child after fork(), where s's thread does not exist: closes the sockets s's thread
 * held and s's wake pipe (close() only: nothing is sent, and the parent's copies are left
 * as they are), and frees s without joining anything. NULL is a no-op. */
void tc__subscriber_forget(tc_subscriber *s);

/* Parses and applies one broadcast message payload to ctx's local tier: evicts the keys it
 * names (waking their flights), or flushes the tier; ignores this instance's own messages
 * and those of another version. Returns true if the message was well formed (malformed
 * ones are counted in inval_malformed and change nothing). */
bool tc__subscriber_apply(const tc_sub_ctx *ctx, const char *payload, size_t len);

#endif /* TC_SUBSCRIBER_H */
