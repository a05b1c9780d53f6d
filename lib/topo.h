/*
 * A topology: how the Redis tier finds the server for an operation. One table of functions
 * per kind, as curl keeps one per TLS backend: a single server (topo_single.c), Redis
 * Cluster (topo_cluster.c: slot map, redirects, fan-out) and Redis Sentinel
 * (topo_sentinel.c: the master the sentinels name). The facade (remote.c) picks the table
 * by the URL's scheme and calls only through it; a topology hands each operation to the
 * nodes (redis_node.h) through redis_ops.h.
 *
 * Thread safety: every function but open and close may be called from any thread.
 */
#ifndef TC_TOPO_H
#define TC_TOPO_H

#include "redis_ops.h"
#include "redis_types.h"
#include "redis_url.h"

typedef struct tc_topo_vt {
    const char *name;
    /* Builds the topology for url (borrowed: it outlives the topology) and connects
     * enough to report a bad address or password now. Errors as tc__remote_open. */
    tc_status (*open)(const tc_node_config *cfg, const tc_url *url, void **out);
    void (*close)(void *t);
    /* Runs an operation whose arguments tc__ops_check accepted. */
    tc_status (*run)(void *t, const tc_op *o);
    /* A new connection for a subscriber: to a master of the topology. */
    tc_status (*connect)(void *t, int timeout_ms, tc_conn **out);
    /* The masters a subscriber that needs the data servers connects to (at most cap):
     * the count, 0 without memory, -1 if there are more than cap. */
    int (*masters)(void *t, tc_node **out, int cap);
    /* Reloads what the topology knows of its servers (a cluster's slot map). */
    tc_status (*refresh)(void *t);
    void (*stats)(void *t, tc_remote_stats *out);
} tc_topo_vt;

/* A topology's counters from the sum of its nodes'. */
static inline void tc__topo_stats_from(const tc_node_stats *ns, tc_remote_stats *out)
{
    *out = (tc_remote_stats){.round_trips = ns->round_trips,
                             .commands = ns->commands,
                             .errors = ns->errors,
                             .reconnects = ns->reconnects};
}

extern const tc_topo_vt tc__topo_single;
extern const tc_topo_vt tc__topo_cluster;
extern const tc_topo_vt tc__topo_sentinel;

/* Sentinel only (t from tc__topo_sentinel): the "+switch-master" watch. */
tc_status tc__sentinel_watch(void *t, int timeout_ms, tc_conn **out);
bool tc__sentinel_switched(void *t, const redisReply *reply);
void tc__sentinel_ask_hook(void *t, void (*fn)(void *arg), void *arg);

#endif /* TC_TOPO_H */
