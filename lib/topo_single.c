/*
 * The single-server topology (see topo.h): one node, which every operation goes to. Owns
 * the node; no locks of its own.
 */
#include "config.h"

#include "topo.h"

static tc_status single_open(const tc_node_config *cfg, const tc_url *url, void **out)
{
    tc_node *node = tc__node_new(cfg, url, NULL, 0, 0);
    if (!node)
        return TC_ERR_NOMEM;
    tc_status st = tc__node_warm(node, tc__ops_scripts, tc__ops_nscripts);
    if (st != TC_OK) {
        tc__node_close(node);
        return st;
    }
    *out = node;
    return TC_OK;
}

static void single_close(void *t)
{
    tc__node_close(t);
}

static tc_status single_run(void *t, const tc_op *o)
{
    return tc__ops_run(t, NULL, o);
}

static tc_status single_connect(void *t, int timeout_ms, tc_conn **out)
{
    return tc__node_connect(t, timeout_ms, out);
}

static int single_masters(void *t, tc_node **out, int cap)
{
    if (cap < 1)
        return -1;
    out[0] = t;
    return 1;
}

static tc_status single_refresh(void *t)
{
    (void)t;
    return TC_OK;
}

static void single_stats(void *t, tc_remote_stats *out)
{
    tc_node_stats ns = {0, 0, 0, 0};
    tc__node_add_stats(t, &ns);
    tc__topo_stats_from(&ns, out);
}

const tc_topo_vt tc__topo_single = {
    .name = "single",
    .open = single_open,
    .close = single_close,
    .run = single_run,
    .connect = single_connect,
    .masters = single_masters,
    .refresh = single_refresh,
    .stats = single_stats,
};
