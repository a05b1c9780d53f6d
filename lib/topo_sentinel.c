/*
 * The Redis Sentinel topology (see topo.h): every operation goes to
 * the current master, a node (a single server, as in a cluster) found by asking
 * the sentinels SENTINEL get-master-addr-by-name. When an operation on the master fails
 * (connection lost or refused, a timeout, or an error reply such as READONLY from a master
 * demoted to a replica), the sentinels are asked again, at most every SENTINEL_ASK_MS; a
 * new address becomes the master for the next operations (that failed operation is not
 * retried: it may have been applied). The subscriber asks them each time it connects, so
 * after a failover it resubscribes on the new master, which flushes the local tier. It also
 * holds a watch (tc__sentinel_watch) on "+switch-master", which a sentinel publishes
 * the moment it names the new master: the master switches then, without waiting for an
 * error (the old master keeps answering until the sentinels demote it, seconds later).
 * Sentinels are asked with the URL's sentinel_user / sentinel_password, if any.
 * Locks: mu guards master and the list of former masters (kept until close so that
 * a node pointer read under the lock stays valid); a leaf lock, never held during I/O.
 */
#include "config.h"

#include "topo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "error.h"

#define SENTINEL_ASK_MS 200

typedef struct tc_sentinel {
    tc_node_config cfg;
    const tc_url *url; /* the facade's: master name, credentials, db, sentinels */
    pthread_mutex_t mu;
    tc_node **sentinels;
    int nsentinels;
    tc_node *master;
    tc_node **former;
    int nformer;
    _Atomic int64_t last_ask_ns;
    atomic_int last_good;        /* the sentinel that answered last: asked first next time */
    unsigned switches;           /* under mu: master changes so far */
    void (*ask_hook)(void *arg); /* under mu; tests only (tc__sentinel_ask_hook) */
    void *ask_hook_arg;
} tc_sentinel;

#define SLOG(sn, level, ...) tc__log(&(sn)->cfg.log, (level), __VA_ARGS__)

static tc_node *sentinel_master(tc_sentinel *sn)
{
    pthread_mutex_lock(&sn->mu);
    tc_node *m = sn->master;
    pthread_mutex_unlock(&sn->mu);
    return m;
}

/* Asks the sentinels for the master's address; TC_OK with host (caller frees) and port. */
static tc_status sentinel_ask(tc_sentinel *sn, char **host, int *port)
{
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", sn->url->master_name};
    size_t lens[3] = {8, 23, strlen(sn->url->master_name)};
    tc_status st = TC_ERR_IO;
    int first = atomic_load(&sn->last_good);
    for (int k = 0; k < sn->nsentinels; k++) {
        int i = (first + k) % sn->nsentinels;
        redisReply *x = NULL;
        st = tc__ops_command(sn->sentinels[i], 3, argv, lens, &x);
        if (st != TC_OK)
            continue;
        st = tc__reply_master_addr(x, host, port);
        if (st == TC_MISS)
            SLOG(sn, TC_LOG_ERROR, "Sentinel knows no master named %s", sn->url->master_name);
        else if (st == TC_ERR_PROTO)
            tc__bad_reply(&sn->cfg.log, x, "SENTINEL get-master-addr-by-name");
        freeReplyObject(x);
        if (st == TC_OK) {
            atomic_store(&sn->last_good, i);
            return TC_OK;
        }
        if (st == TC_ERR_NOMEM)
            return st;
        st = TC_ERR_PROTO;
    }
    return st;
}

/* Makes host:port the master unless it already is; the former master is kept until close
 * (see the section comment). asked_at: for an answer of the sentinels, the switch count
 * when they were asked (a switch since, announced by +switch-master, wins over it); NULL
 * for an announcement. TC_OK, or TC_ERR_NOMEM. */
static tc_status sentinel_switch_to(tc_sentinel *sn, const char *host, int port,
                                    const unsigned *asked_at)
{
    pthread_mutex_lock(&sn->mu);
    tc_node *m = sn->master;
    bool same = m && tc__node_is(m, host, strlen(host), port);
    /* An answer to a question asked before the last switch may predate it: stale. */
    bool stale = asked_at && *asked_at != sn->switches;
    pthread_mutex_unlock(&sn->mu);
    if (same || stale)
        return TC_OK;
    tc_node *n = tc__node_new(&sn->cfg, sn->url, host, strlen(host), port);
    if (!n)
        return TC_ERR_NOMEM;
    pthread_mutex_lock(&sn->mu);
    if (sn->master != m) { /* another thread switched meanwhile */
        pthread_mutex_unlock(&sn->mu);
        tc__node_close(n);
        return TC_OK;
    }
    if (m) {
        tc_node **former = tc__realloc(sn->former, sizeof *former * (size_t)(sn->nformer + 1));
        if (!former) {
            pthread_mutex_unlock(&sn->mu);
            tc__node_close(n);
            return TC_ERR_NOMEM;
        }
        sn->former = former;
        sn->former[sn->nformer++] = m;
    }
    sn->master = n;
    sn->switches++;
    pthread_mutex_unlock(&sn->mu);
    if (m)
        SLOG(sn, TC_LOG_WARN, "Sentinel: the master of %s moved to %s port %d (failover)",
             sn->url->master_name, host, port);
    return TC_OK;
}

/* Asks the sentinels and makes their answer the master. TC_OK if one answered. */
static tc_status sentinel_update(tc_sentinel *sn)
{
    char *host = NULL;
    int port = 0;
    atomic_store(&sn->last_ask_ns, tc__now_ns());
    pthread_mutex_lock(&sn->mu);
    unsigned asked_at = sn->switches;
    void (*hook)(void *) = sn->ask_hook;
    void *hook_arg = sn->ask_hook_arg;
    pthread_mutex_unlock(&sn->mu);
    tc_status st = sentinel_ask(sn, &host, &port);
    if (st == TC_OK && hook)
        hook(hook_arg);
    if (st == TC_OK)
        st = sentinel_switch_to(sn, host, port, &asked_at);
    tc__free(host);
    return st;
}

/* After an operation on the master: on a failure that a failover explains, asks the
 * sentinels again (not more often than SENTINEL_ASK_MS). Returns st. */
static tc_status sentinel_after(tc_sentinel *sn, tc_status st)
{
    if (st != TC_ERR_IO && st != TC_ERR_TIMEOUT && st != TC_ERR_PROTO)
        return st;
    int64_t last = atomic_load(&sn->last_ask_ns);
    int64_t now = tc__now_ns();
    if (now - last >= (int64_t)SENTINEL_ASK_MS * 1000000 &&
        atomic_compare_exchange_strong(&sn->last_ask_ns, &last, now))
        sentinel_update(sn);
    return st;
}

static void sentinel_close(void *t)
{
    tc_sentinel *sn = t;
    if (!sn)
        return;
    for (int i = 0; i < sn->nsentinels; i++)
        tc__node_close(sn->sentinels[i]);
    /* Taken only in a child after fork, by a thread of the parent mid-switch: the masters
     * are then left (a leak) rather than walked. */
    if (pthread_mutex_trylock(&sn->mu) == 0) {
        for (int i = 0; i < sn->nformer; i++)
            tc__node_close(sn->former[i]);
        tc__node_close(sn->master);
        tc__free(sn->former);
        pthread_mutex_unlock(&sn->mu);
    }
    tc__free(sn->sentinels);
    pthread_mutex_destroy(&sn->mu);
    tc__free(sn);
}

/* A node per sentinel of the URL. Sentinels get their own credentials (if any), not the
 * master's, and no db. */
static tc_status add_sentinels(tc_sentinel *sn)
{
    const tc_url *u = sn->url;
    tc_url tmpl = {.kind = TC_URL_TCP, .user = u->sentinel_user, .password = u->sentinel_password};
    sn->sentinels = tc__calloc((size_t)u->nseeds, sizeof *sn->sentinels);
    if (!sn->sentinels)
        return TC_ERR_NOMEM;
    for (int i = 0; i < u->nseeds; i++) {
        tc_node *s = tc__node_new(&sn->cfg, &tmpl, u->seed_hosts[i], strlen(u->seed_hosts[i]),
                                  u->seed_ports[i]);
        if (!s)
            return TC_ERR_NOMEM;
        sn->sentinels[sn->nsentinels++] = s;
    }
    return TC_OK;
}

/* Asks the sentinels for the master, then reports a wrong password or an unreachable
 * master now, as a plain URL does. */
static tc_status find_master(tc_sentinel *sn)
{
    tc_status st = sentinel_update(sn);
    if (st != TC_OK) {
        SLOG(sn, TC_LOG_ERROR, "no sentinel told the address of master %s: %s",
             sn->url->master_name, tc__strerror(st));
        return st;
    }
    const char *ping = "PING";
    size_t plen = 4;
    redisReply *x = NULL;
    st = tc__ops_command(sentinel_master(sn), 1, &ping, &plen, &x);
    if (x)
        freeReplyObject(x);
    return st;
}

static tc_status sentinel_open(const tc_node_config *cfg, const tc_url *url, void **out)
{
    tc_sentinel *sn = tc__calloc(1, sizeof *sn);
    if (!sn)
        return TC_ERR_NOMEM;
    if (pthread_mutex_init(&sn->mu, NULL) != 0) {
        tc__free(sn);
        return TC_ERR_NOMEM;
    }
    sn->cfg = *cfg;
    sn->url = url;
    tc_status st = add_sentinels(sn);
    if (st == TC_OK)
        st = find_master(sn);
    if (st != TC_OK) {
        sentinel_close(sn);
        return st;
    }
    *out = sn;
    return TC_OK;
}

static void sentinel_stats(void *t, tc_remote_stats *out)
{
    tc_sentinel *sn = t;
    tc_node_stats ns = {0, 0, 0, 0};
    pthread_mutex_lock(&sn->mu);
    for (int i = -1; i < sn->nformer; i++)
        tc__node_add_stats(i < 0 ? sn->master : sn->former[i], &ns);
    uint64_t failovers = (uint64_t)sn->nformer;
    pthread_mutex_unlock(&sn->mu);
    tc__topo_stats_from(&ns, out);
    out->map_refreshes = failovers; /* failovers followed */
}

static tc_status sentinel_connect(void *t, int timeout_ms, tc_conn **out)
{
    tc_sentinel *sn = t;
    sentinel_update(sn);
    return tc__node_connect(sentinel_master(sn), timeout_ms, out);
}

static tc_status sentinel_run(void *t, const tc_op *o)
{
    tc_sentinel *sn = t;
    return sentinel_after(sn, tc__ops_run(sentinel_master(sn), NULL, o));
}

/* Asked now, as a subscriber's connect always did. */
static int sentinel_masters(void *t, tc_node **out, int cap)
{
    if (cap < 1)
        return -1;
    sentinel_update(t);
    out[0] = sentinel_master(t);
    return 1;
}

static tc_status sentinel_refresh(void *t)
{
    (void)t;
    return TC_OK;
}

/* The channel on which a sentinel announces a failover's end: "<master-name> <old-ip>
 * <old-port> <new-ip> <new-port>". */
#define SWITCH_CHANNEL "+switch-master"

/* Subscribes c to SWITCH_CHANNEL and waits for the confirmation. */
static tc_status watch_subscribe(tc_conn *c)
{
    const char *argv[2] = {"SUBSCRIBE", SWITCH_CHANNEL};
    redisReply *x = NULL;
    tc_status st = tc__conn_command(c, 2, argv, NULL, &x);
    if (st != TC_OK)
        return st;
    bool ok = x->type == REDIS_REPLY_ARRAY && x->elements == 3 &&
              tc__reply_is_str(x->element[0], "subscribe");
    freeReplyObject(x);
    return ok ? TC_OK : TC_ERR_PROTO;
}

tc_status tc__sentinel_watch(void *t, int timeout_ms, tc_conn **out)
{
    tc_sentinel *sn = t;
    tc_status st = TC_ERR_IO;
    int first = atomic_load(&sn->last_good); /* a silent sentinel ahead costs a timeout */
    for (int k = 0; k < sn->nsentinels && st != TC_OK; k++) {
        int i = (first + k) % sn->nsentinels;
        tc_conn *c = NULL;
        st = tc__node_dial(sn->sentinels[i], timeout_ms, &c);
        if (st == TC_OK)
            st = watch_subscribe(c);
        if (st == TC_OK)
            *out = c;
        else
            tc__conn_free(c);
    }
    return st;
}

void tc__sentinel_ask_hook(void *t, void (*fn)(void *arg), void *arg)
{
    tc_sentinel *sn = t;
    pthread_mutex_lock(&sn->mu);
    sn->ask_hook = fn;
    sn->ask_hook_arg = arg;
    pthread_mutex_unlock(&sn->mu);
}

bool tc__sentinel_switched(void *t, const redisReply *x)
{
    tc_sentinel *sn = t;
    char *host = NULL;
    int port = 0;
    tc_status st = tc__reply_switch_master(x, SWITCH_CHANNEL, sn->url->master_name, &host, &port);
    /* On TC_ERR_NOMEM the caller's resubscription asks the sentinels again. */
    if (st == TC_OK)
        (void)sentinel_switch_to(sn, host, port, NULL); /* an announcement is news */
    tc__free(host);
    return st != TC_MISS;
}

const tc_topo_vt tc__topo_sentinel = {
    .name = "sentinel",
    .open = sentinel_open,
    .close = sentinel_close,
    .run = sentinel_run,
    .connect = sentinel_connect,
    .masters = sentinel_masters,
    .refresh = sentinel_refresh,
    .stats = sentinel_stats,
};
