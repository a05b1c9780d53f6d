/*
 * The plain types the Redis tier shares with its callers: an invalidation to publish with
 * a write, and the tier's counters. No hiredis here: the core includes this through
 * remote.h.
 */
#ifndef TC_REDIS_TYPES_H
#define TC_REDIS_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An invalidation to publish with a write: channel and payload. */
typedef struct tc_pub {
    const char *channel;
    size_t channel_len;
    const void *payload;
    size_t payload_len;
} tc_pub;

/* Counters. round_trips: replies waited for in batches (a pipeline counts once). In a
 * cluster, summed over the nodes; moved and ask count the redirects followed, and
 * map_refreshes the CLUSTER SLOTS reloads (for Sentinel: the failovers followed; all 0 for
 * a single server). */
typedef struct tc_remote_stats {
    uint64_t round_trips, commands, errors, reconnects;
    uint64_t moved, ask, map_refreshes;
} tc_remote_stats;

/* TLS settings, as tc_options gives them (docs/security.md); NULL strings are absent. */
typedef struct tc_tls_config {
    const char *ca_file, *ca_dir;     /* what to trust; both NULL: the system store */
    const char *cert_file, *key_file; /* our certificate, for mutual TLS */
    const char *server_name;          /* verified and sent as SNI; NULL: each server's host */
    bool skip_verify;                 /* tests only */
} tc_tls_config;

#endif /* TC_REDIS_TYPES_H */
