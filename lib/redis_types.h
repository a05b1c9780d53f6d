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
    /* A sequenced publication (docs/design/coherence.md, "Recovery"): seq_key NULL for a
     * plain PUBLISH. Otherwise, in the same atomic unit, the generation in the hash seq_key
     * is created from seq_gen if missing, each group of seq_groups ("<g>,<g>,...") is
     * bumped there, and "<gen> <g>:<s>,... " is inserted at byte seq_split of payload. */
    const char *seq_key;
    size_t seq_key_len;
    const char *seq_groups;
    size_t seq_groups_len;
    const char *seq_gen; /* 16 lowercase hex digits */
    size_t seq_split;
    /* A cluster write whose keys span slots (docs/design/coherence.md, "Recovery on a
     * cluster"): seq_key is "<key_prefix>:__tc:seq" without a slot's tag and seq_groups is
     * unused; the topology sends each slot's transaction with the publication
     * tc__ops_pub_for_slot makes, which bumps that slot in its own key. */
    bool seq_by_slot;
} tc_pub;

/* The Lua function tc_pub(k, ch, p, split, gen, groups) our scripts publish with: a
 * plain PUBLISH ch p when k is nil, otherwise the sequenced publication of tc_pub.seq_key
 * (k the hash). Scripts prepend it to their source. */
#define TC_OPS_PUB_LUA                                                                             \
    "local function tc_pub(k, ch, p, split, gen, groups)\n"                                        \
    "  if not k then return redis.call('PUBLISH', ch, p) end\n"                                    \
    "  if redis.call('HSETNX', k, 'gen', gen) == 0 then\n"                                         \
    "    local g = redis.call('HGET', k, 'gen')\n"                                                 \
    "    if type(g) == 'string' and #g == 16 and string.match(g, '^[0-9a-f]+$') then gen = g\n"    \
    "    else redis.call('HSET', k, 'gen', gen) end\n"                                             \
    "  end\n"                                                                                      \
    "  local s = {}\n"                                                                             \
    "  for g in string.gmatch(groups, '%d+') do\n"                                                 \
    "    s[#s + 1] = g .. ':' .. string.format('%d', redis.call('HINCRBY', k, g, 1))\n"            \
    "  end\n"                                                                                      \
    "  local n = tonumber(split)\n"                                                                \
    "  return redis.call('PUBLISH', ch, string.sub(p, 1, n) .. gen .. ' ' ..\n"                    \
    "                    table.concat(s, ',') .. ' ' .. string.sub(p, n + 1))\n"                   \
    "end\n"

/* A script's publication arguments: appends channel and payload and, when pub is
 * sequenced, split (formatted into splitbuf), gen and groups to argv/lens at *argc (5 at
 * most). The script passes them to tc_pub with KEYS[n] = pub->seq_key (the caller adds
 * that key). */
void tc__ops_pub_args(const tc_pub *pub, const char **argv, size_t *lens, int *argc,
                      char splitbuf[24]);

/* Counters. round_trips: replies waited for in batches (a pipeline counts once). In a
 * cluster, summed over the nodes; moved and ask count the redirects followed, tryagain the
 * TRYAGAIN / CLUSTERDOWN answers waited out, and map_refreshes the CLUSTER SLOTS reloads (for
 * Sentinel: the failovers followed; all 0 for a single server). */
typedef struct tc_remote_stats {
    uint64_t round_trips, commands, errors, reconnects;
    uint64_t moved, ask, tryagain, map_refreshes;
} tc_remote_stats;

/* TLS settings, as tc_options gives them (docs/security.md); NULL strings are absent. */
typedef struct tc_tls_config {
    const char *ca_file, *ca_dir;     /* what to trust; both NULL: the system store */
    const char *cert_file, *key_file; /* our certificate, for mutual TLS */
    const char *server_name;          /* verified and sent as SNI; NULL: each server's host */
    bool skip_verify;                 /* tests only */
} tc_tls_config;

#endif /* TC_REDIS_TYPES_H */
