/*
 * The Redis tier's facade (see remote.h): parses the URL, picks the topology that serves
 * it (topo.h: a single server, Redis Cluster or Redis Sentinel), and turns each operation
 * into a tc_op that the topology routes to its nodes. Everything below it is in layers,
 * each calling only the one under it:
 *
 *   remote.c          this facade: URL -> topology, operations -> tc_op
 *   topo_*.c          which node an operation goes to (slot map, redirects, sentinels)
 *   redis_ops.c       the operations on one node (GET+PTTL, MULTI/EXEC writes, scripts)
 *   redis_node.c      one server: pool, handshake, breaker, script cache, operation frame
 *   redis_exch.c      one round trip on one connection, within a deadline
 *   redis_reply.c     what a reply means (pure)      redis_url.c   URL parsing (pure)
 *
 * Owns: a copy of the URL (and its parse), the topology. No locks of its own.
 */
#include "config.h"

#include "remote.h"
#include "remote_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topo.h"

struct tc_remote {
    tc_remote_config cfg; /* cfg.url points at url_copy */
    char *url_copy;
    tc_url url;
    const tc_topo_vt *vt;
    void *topo;
    tc_tls *tls; /* NULL: plaintext; shared by every node */
};

#define RLOG(r, level, ...) tc__log(&(r)->cfg.log, (level), __VA_ARGS__)

/* ------------------------------------------------------------------ open / close */

void tc__remote_close(tc_remote *r)
{
    if (!r)
        return;
    if (r->topo)
        r->vt->close(r->topo);
    tc__tls_free(r->tls);
    tc__url_free(&r->url);
    tc__url_wipe(r->url_copy);
    tc__free(r->url_copy);
    tc__free(r);
}

/* Never logs the URL itself: it may carry a password. */
static void log_bad_url(tc_remote *r)
{
    RLOG(r, TC_LOG_ERROR,
         "the Redis URL is malformed (expected redis[s]://[user[:password]@]host[:port][/db], "
         "unix:///path[?db=N], redis[s]-cluster://[user[:password]@]host:port[,host:port...] "
         "or redis[s]-sentinel://[user[:password]@]host:port[,host:port...]/master-name[/db])");
}

static const tc_topo_vt *topology_for(tc_url_kind kind)
{
    switch (kind) {
    case TC_URL_CLUSTER:
        return &tc__topo_cluster;
    case TC_URL_SENTINEL:
        return &tc__topo_sentinel;
    case TC_URL_TCP:
    case TC_URL_UNIX:
        break;
    }
    return &tc__topo_single;
}

tc_status tc__remote_open(const tc_remote_config *cfg, tc_remote **out)
{
    if (!out)
        return TC_ERR_ARG;
    *out = NULL;
    if (!cfg || !cfg->url || cfg->pool_size < 1 || cfg->connect_timeout_ms <= 0 ||
        cfg->command_timeout_ms <= 0)
        return TC_ERR_ARG;
    tc_remote *r = tc__calloc(1, sizeof *r);
    if (!r)
        return TC_ERR_NOMEM;
    r->cfg = *cfg;
    r->url_copy = tc__strdup(cfg->url);
    if (!r->url_copy) {
        tc__free(r);
        return TC_ERR_NOMEM;
    }
    r->cfg.url = r->url_copy;
    tc_status st = tc__url_parse(r->url_copy, &r->url);
    if (st == TC_ERR_ARG)
        log_bad_url(r);
    if (st == TC_OK && r->url.tls)
        st = tc__tls_new(&cfg->tls, &cfg->log, &r->tls);
    if (st == TC_OK) {
        tc_node_config ncfg = {cfg->pool_size, cfg->connect_timeout_ms, cfg->command_timeout_ms,
                               cfg->log, r->tls};
        r->vt = topology_for(r->url.kind);
        st = r->vt->open(&ncfg, &r->url, &r->topo);
    }
    if (st != TC_OK) {
        tc__remote_close(r);
        return st;
    }
    *out = r;
    return TC_OK;
}

const tc_remote_config *tc__remote_config(tc_remote *r)
{
    return &r->cfg;
}

bool tc__remote_is_cluster(const tc_remote *r)
{
    return r && r->vt == &tc__topo_cluster;
}

bool tc__remote_is_sentinel(const tc_remote *r)
{
    return r && r->vt == &tc__topo_sentinel;
}

void tc__remote_stats(tc_remote *r, tc_remote_stats *out)
{
    r->vt->stats(r->topo, out);
}

/* ------------------------------------------------------------------ connections */

tc_status tc__remote_connect(tc_remote *r, int timeout_ms, tc_conn **out)
{
    if (!r || !out)
        return TC_ERR_ARG;
    return r->vt->connect(r->topo, timeout_ms, out);
}

int tc__remote_masters(tc_remote *r, tc_node **out, int cap)
{
    return r->vt->masters(r->topo, out, cap);
}

tc_status tc__remote_refresh_map(tc_remote *r)
{
    return r->vt->refresh(r->topo);
}

tc_status tc__remote_sentinel_watch(tc_remote *r, int timeout_ms, tc_conn **out)
{
    if (!out)
        return TC_ERR_ARG;
    *out = NULL;
    if (!tc__remote_is_sentinel(r))
        return TC_ERR_ARG;
    return tc__sentinel_watch(r->topo, timeout_ms, out);
}

bool tc__remote_sentinel_switched(tc_remote *r, const redisReply *reply)
{
    return tc__remote_is_sentinel(r) && reply && tc__sentinel_switched(r->topo, reply);
}

void tc__remote_sentinel_ask_hook(tc_remote *r, void (*fn)(void *arg), void *arg)
{
    if (tc__remote_is_sentinel(r))
        tc__sentinel_ask_hook(r->topo, fn, arg);
}

/* ------------------------------------------------------------------ operations */

/* Checks o's arguments, then hands it to the topology. */
static tc_status run(tc_remote *r, const tc_op *o)
{
    tc_status st = tc__ops_check(o);
    if (st != TC_OK)
        return st == TC_MISS ? TC_OK : st; /* TC_MISS: an empty batch, nothing to do */
    if (!r)
        return TC_ERR_ARG;
    return r->vt->run(r->topo, o);
}

tc_status tc__remote_get(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                         int64_t *pttl_ms)
{
    return tc__remote_get_tracked(r, rkey, rklen, val, pttl_ms, NULL);
}

tc_status tc__remote_get_tracked(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                                 int64_t *pttl_ms, bool *tracked)
{
    tc_op o = {.kind = TC_OP_GET,
               .n = 1,
               .keys = &rkey,
               .klens = &rklen,
               .vals_out = val,
               .pttls = pttl_ms,
               .tracked = tracked};
    return run(r, &o);
}

tc_status tc__remote_get_many(tc_remote *r, size_t n, const char *const *rkeys,
                              const size_t *rklens, tc_ref **vals, int64_t *pttls, tc_status *st)
{
    return tc__remote_get_many_tracked(r, n, rkeys, rklens, vals, pttls, st, NULL);
}

tc_status tc__remote_get_many_tracked(tc_remote *r, size_t n, const char *const *rkeys,
                                      const size_t *rklens, tc_ref **vals, int64_t *pttls,
                                      tc_status *st, bool *tracked)
{
    tc_op o = {.kind = TC_OP_GET_MANY,
               .n = n,
               .keys = rkeys,
               .klens = rklens,
               .vals_out = vals,
               .pttls = pttls,
               .st_out = st,
               .tracked = tracked};
    return run(r, &o);
}

tc_status tc__remote_set(tc_remote *r, size_t n, const char *const *rkeys, const size_t *rklens,
                         const void *const *vals, const size_t *lens, int ttl_ms, const tc_pub *pub)
{
    tc_op o = {.kind = TC_OP_SET,
               .n = n,
               .keys = rkeys,
               .klens = rklens,
               .vals = vals,
               .lens = lens,
               .ttl_ms = ttl_ms,
               .pub = pub};
    return run(r, &o);
}

tc_status tc__remote_add(tc_remote *r, const char *rkey, size_t rklen, const void *val, size_t len,
                         int ttl_ms, const tc_pub *pub)
{
    tc_op o = {.kind = TC_OP_ADD,
               .n = 1,
               .keys = &rkey,
               .klens = &rklen,
               .vals = &val,
               .lens = &len,
               .ttl_ms = ttl_ms,
               .pub = pub};
    return run(r, &o);
}

tc_status tc__remote_delete(tc_remote *r, size_t n, const char *const *rkeys, const size_t *rklens,
                            const tc_pub *pub, size_t *deleted)
{
    tc_op o = {.kind = TC_OP_DELETE,
               .n = n,
               .keys = rkeys,
               .klens = rklens,
               .pub = pub,
               .deleted = deleted};
    return run(r, &o);
}

tc_status tc__remote_touch(tc_remote *r, const char *rkey, size_t rklen, int ttl_ms,
                           const tc_pub *pub)
{
    tc_op o = {
        .kind = TC_OP_TOUCH, .n = 1, .keys = &rkey, .klens = &rklen, .ttl_ms = ttl_ms, .pub = pub};
    return run(r, &o);
}

tc_status tc__remote_incr(tc_remote *r, const char *rkey, size_t rklen, int64_t delta,
                          const void *hdr_magic, size_t hdr_magic_len, const tc_pub *pub,
                          int64_t *result)
{
    tc_op o = {.kind = TC_OP_INCR,
               .n = 1,
               .keys = &rkey,
               .klens = &rklen,
               .delta = delta,
               .magic = hdr_magic,
               .magic_len = hdr_magic_len,
               .pub = pub,
               .result = result};
    return run(r, &o);
}

tc_status tc__remote_clear(tc_remote *r, const char *pattern, const tc_pub *pub)
{
    tc_op o = {.kind = TC_OP_CLEAR, .pattern = pattern, .pub = pub};
    return run(r, &o);
}

tc_status tc__remote_publish(tc_remote *r, const tc_pub *pub)
{
    tc_op o = {.kind = TC_OP_PUBLISH, .pub = pub};
    return run(r, &o);
}

tc_status tc__remote_script(tc_remote *r, const char *source, int argc, const char **argv,
                            const size_t *lens, redisReply **reply)
{
    tc_op o = {.kind = TC_OP_SCRIPT,
               .source = source,
               .argc = argc,
               .argv = argv,
               .alens = lens,
               .reply = reply};
    return run(r, &o);
}

tc_status tc__remote_command(tc_remote *r, int argc, const char **argv, const size_t *lens,
                             redisReply **reply)
{
    tc_op o = {.kind = TC_OP_COMMAND, .argc = argc, .argv = argv, .alens = lens, .reply = reply};
    return run(r, &o);
}

/* ------------------------------------------------------------------ configuration check */

/* The value of one CONFIG GET parameter into buf ("" if unavailable: CONFIG may be
 * renamed or forbidden by an ACL). */
static bool config_get(tc_remote *r, const char *name, char *buf, size_t cap)
{
    const char *argv[] = {"CONFIG", "GET", name};
    redisReply *rep = NULL;
    buf[0] = '\0';
    if (tc__remote_command(r, 3, argv, NULL, &rep) != TC_OK)
        return false;
    bool ok = rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
              rep->element[1]->type == REDIS_REPLY_STRING;
    if (ok)
        snprintf(buf, cap, "%.*s", (int)rep->element[1]->len, rep->element[1]->str);
    freeReplyObject(rep);
    return ok;
}

int tc__remote_check_config(tc_remote *r)
{
    char maxmemory[32], policy[64];
    int warnings = 0;
    if (!config_get(r, "maxmemory", maxmemory, sizeof maxmemory) ||
        !config_get(r, "maxmemory-policy", policy, sizeof policy)) {
        RLOG(r, TC_LOG_INFO, "Redis configuration not checked: CONFIG GET is not allowed");
        return 0;
    }
    if (strcmp(maxmemory, "0") == 0) {
        RLOG(r, TC_LOG_WARN,
             "Redis has no maxmemory: as a cache it grows until the system "
             "runs out of memory; set maxmemory and maxmemory-policy "
             "allkeys-lru (docs/operations.md)");
        warnings++;
    }
    if (strncmp(policy, "allkeys-", 8) != 0) {
        RLOG(r, TC_LOG_WARN,
             "Redis maxmemory-policy is %s: keys without a TTL are never "
             "evicted and writes fail when memory is full; use allkeys-lru "
             "or allkeys-lfu (docs/operations.md)",
             policy);
        warnings++;
    }
    if (!r->url.password) {
        RLOG(r, TC_LOG_WARN,
             "connected to Redis without a password: anyone who reaches it "
             "can read the cache and forge invalidations "
             "(docs/security.md)");
        warnings++;
    }
    return warnings;
}

/* The table is full at this many keys or fewer: a fleet's local tiers hold more. */
#define TRACKING_TABLE_SMALL 100000

int tc__remote_check_tracking(tc_remote *r)
{
    char v[32];
    if (!config_get(r, "tracking-table-max-keys", v, sizeof v)) {
        RLOG(r, TC_LOG_INFO, "tracking-table-max-keys not checked: CONFIG GET is not allowed");
        return 0;
    }
    long long keys = strtoll(v, NULL, 10);
    if (keys == 0) {
        RLOG(r, TC_LOG_WARN,
             "Redis tracking-table-max-keys is 0 (no limit): with targeted coherence its "
             "tracking table grows with every key a process reads; set a limit "
             "(docs/operations.md)");
        return 1;
    }
    if (keys < TRACKING_TABLE_SMALL) {
        RLOG(r, TC_LOG_WARN,
             "Redis tracking-table-max-keys is %lld: when the keys the local tiers read "
             "outnumber it, Redis invalidates the oldest at once: correct, but more "
             "messages and refetches (docs/operations.md)",
             keys);
        return 1;
    }
    RLOG(r, TC_LOG_INFO, "Redis tracks up to %lld keys read (tracking-table-max-keys)", keys);
    return 0;
}
