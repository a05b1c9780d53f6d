/*
 * Metrics: assembling tc_stats from the cache's counters and the local tier's shards.
 */
#include "config.h"

#include "cache.h"

#include <string.h>

TC_API void tc_stats_get(tc_cache *c, tc_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    const tc_counters *k = &c->counters;
    tc_local_stats ls;
    tc__local_stats(c->local, &ls);
    out->local_hits = ls.hits;
    out->remote_hits = TC_READ(k, remote_hits);
    out->misses = TC_READ(k, misses);
    out->sets = TC_READ(k, sets);
    out->deletes = TC_READ(k, deletes);
    out->loads = TC_READ(k, loads);
    out->load_errors = TC_READ(k, load_errors);
    out->flight_waits = TC_READ(k, flight_waits);
    out->inval_sent = TC_READ(k, inval_sent);
    out->inval_received = TC_READ(k, inval_received);
    out->local_evictions = ls.evictions;
    out->local_entries = ls.entries;
    out->local_bytes = ls.bytes;
    out->remote_errors = TC_READ(k, remote_errors);
}
