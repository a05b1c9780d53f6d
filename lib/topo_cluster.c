/*
 * The Redis Cluster topology (see topo.h): a router that sends every operation to a node,
 * each node a complete single server (redis_node.c: its pool, breaker, script cache and
 * counters), so a node behaves exactly as one Redis does. The router owns the
 * nodes and the slot table (slot -> node index), guarded by map_mu (a rwlock: operations
 * read it, redirects and CLUSTER SLOTS reloads write it). map_mu is a leaf lock, never held
 * during I/O or a log call. Nodes are only added, never freed before close, so a node
 * pointer read under the lock stays valid after it.
 *
 * Redirects: MOVED updates the slot's entry to the named node and retries there; ASK
 * retries once on the named node with ASKING before each command; TRYAGAIN / CLUSTERDOWN
 * retry after a pause (1 ms doubling to 32 ms: a slot whose keys are split between two
 * nodes by a migration in progress answers TRYAGAIN to a command on several of its keys,
 * as every write with group sequences is, until its keys have moved). Every retry is
 * bounded by the operation's deadline (command_timeout_ms from its start); MOVED and ASK
 * also by MAX_REDIRECTS. A node that cannot be reached reports its error for its
 * slots only (its breaker fails them fast); the slot map is reloaded when a node fails, at
 * most once per MAP_REFRESH_MS, so a failover promoting a replica is picked up.
 */
#include "config.h"

#include "topo.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "error.h"
#include "slot_tags.h"

#include "remote.h"

#define NSLOTS 16384
#define MAX_REDIRECTS 16
#define TRYAGAIN_PAUSE_MAX_MS 32
#define MAP_REFRESH_MS 1000

typedef struct tc_cluster {
    tc_node_config cfg;
    const tc_url *url; /* the facade's: seeds, credentials and db for the nodes */
    pthread_rwlock_t map_mu;
    tc_node **nodes; /* nodes[0..nnodes) */
    int nnodes, cap;
    int16_t slots[NSLOTS]; /* node index, -1: no node known */
    atomic_uint rr;        /* round robin for keyless commands and the subscriber */
    _Atomic int64_t last_refresh_ns;
    atomic_uint_fast64_t moved, ask, tryagain, map_refreshes;
} tc_cluster;

#define CLOG(cl, level, ...) tc__log(&(cl)->cfg.log, (level), __VA_ARGS__)

static uint16_t crc16_update(uint16_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t tc__crc16(const void *buf, size_t len)
{
    return crc16_update(0, buf, len);
}

/* The index in a || b of the first ch at or after from, or alen + blen. */
static size_t find_in2(const char *a, size_t alen, const char *b, size_t blen, size_t from, char ch)
{
    if (from < alen) {
        const char *p = memchr(a + from, ch, alen - from);
        if (p)
            return (size_t)(p - a);
        from = alen;
    }
    const char *p = memchr(b + (from - alen), ch, blen - (from - alen));
    return p ? alen + (size_t)(p - b) : alen + blen;
}

unsigned tc__cluster_slot2(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen + blen, lo = 0, hi = n;
    size_t open = find_in2(a, alen, b, blen, 0, '{');
    if (open < n) {
        size_t close = find_in2(a, alen, b, blen, open + 1, '}');
        if (close < n && close > open + 1) {
            lo = open + 1;
            hi = close;
        }
    }
    uint16_t crc = 0;
    if (lo < alen)
        crc = crc16_update(crc, a + lo, (hi < alen ? hi : alen) - lo);
    if (hi > alen) {
        size_t from = lo > alen ? lo - alen : 0;
        crc = crc16_update(crc, b + from, hi - alen - from);
    }
    return crc & (NSLOTS - 1);
}

unsigned tc__cluster_slot(const char *key, size_t len)
{
    return tc__cluster_slot2(key, len, key + len, 0);
}

/* The index of the node host:port, added if new. Caller holds map_mu for writing. -1 on
 * allocation failure. */
static int node_index_locked(tc_cluster *cl, const char *host, size_t hlen, int port)
{
    for (int i = 0; i < cl->nnodes; i++) {
        if (tc__node_is(cl->nodes[i], host, hlen, port))
            return i;
    }
    if (cl->nnodes == cl->cap) {
        int cap = cl->cap ? 2 * cl->cap : 8;
        tc_node **nn = tc__realloc(cl->nodes, sizeof *nn * (size_t)cap);
        if (!nn)
            return -1;
        cl->nodes = nn;
        cl->cap = cap;
    }
    tc_node *n = tc__node_new(&cl->cfg, cl->url, host, hlen, port);
    if (!n)
        return -1;
    cl->nodes[cl->nnodes] = n;
    return cl->nnodes++;
}

static tc_node *node_for_slot(tc_cluster *cl, unsigned slot)
{
    pthread_rwlock_rdlock(&cl->map_mu);
    int i = cl->slots[slot];
    tc_node *n = i >= 0 ? cl->nodes[i] : NULL;
    pthread_rwlock_unlock(&cl->map_mu);
    return n;
}

/* The i-th node known (wrapping), or NULL if none. */
static tc_node *node_nth(tc_cluster *cl, unsigned i, bool masters_only)
{
    tc_node *n = NULL;
    pthread_rwlock_rdlock(&cl->map_mu);
    for (int k = 0; k < cl->nnodes && !n; k++) {
        int idx = (int)((i + (unsigned)k) % (unsigned)cl->nnodes);
        bool master = !masters_only;
        for (int s = 0; s < NSLOTS && !master; s++)
            master = cl->slots[s] == idx;
        if (master)
            n = cl->nodes[idx];
    }
    pthread_rwlock_unlock(&cl->map_mu);
    return n;
}

/* Sets the slot's owner to host:port (MOVED). Returns the node, NULL on allocation failure. */
static tc_node *map_set_slot(tc_cluster *cl, int slot, const char *host, int port)
{
    pthread_rwlock_wrlock(&cl->map_mu);
    int i = node_index_locked(cl, host, strlen(host), port);
    if (i >= 0 && slot >= 0)
        cl->slots[slot] = (int16_t)i;
    tc_node *n = i >= 0 ? cl->nodes[i] : NULL;
    pthread_rwlock_unlock(&cl->map_mu);
    return n;
}

/* What a CLUSTER SLOTS walk needs: the router (its map_mu held for writing) and the node
 * asked, which stands for a range whose master is not named. */
typedef struct slots_walk {
    tc_cluster *cl;
    tc_node *from;
} slots_walk;

static bool map_set_range_locked(void *arg, int lo, int hi, const char *host, size_t hlen, int port)
{
    slots_walk *w = arg;
    if (!host) {
        int from_port;
        tc__node_addr(w->from, &host, &from_port);
        hlen = strlen(host);
    }
    int idx = node_index_locked(w->cl, host, hlen, port);
    if (idx < 0)
        return false;
    for (int sl = lo; sl <= hi; sl++)
        w->cl->slots[sl] = (int16_t)idx;
    return true;
}

/* Reloads the slot table from CLUSTER SLOTS asked of `from`. TC_OK if it got a map. */
static tc_status map_load_from(tc_cluster *cl, tc_node *from)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    redisReply *x = NULL;
    tc_status st = tc__ops_command(from, 2, argv, lens, &x);
    if (st != TC_OK)
        return st;
    if (x->type != REDIS_REPLY_ARRAY || x->elements == 0) {
        st = tc__bad_reply(&cl->cfg.log, x, "CLUSTER SLOTS");
        freeReplyObject(x);
        return st;
    }
    slots_walk w = {cl, from};
    pthread_rwlock_wrlock(&cl->map_mu);
    st = tc__reply_cluster_slots(x, map_set_range_locked, &w);
    pthread_rwlock_unlock(&cl->map_mu);
    freeReplyObject(x);
    if (st == TC_OK) {
        atomic_fetch_add(&cl->map_refreshes, 1);
        atomic_store(&cl->last_refresh_ns, tc__now_ns());
    } else if (st == TC_ERR_PROTO) {
        CLOG(cl, TC_LOG_WARN, "unexpected CLUSTER SLOTS reply");
    }
    return st;
}

/* Reloads the slot table from the first node that answers. */
static tc_status map_refresh(tc_cluster *cl)
{
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&cl->rr, 1);
    int n = 0;
    pthread_rwlock_rdlock(&cl->map_mu);
    n = cl->nnodes;
    pthread_rwlock_unlock(&cl->map_mu);
    for (int k = 0; k < n && st != TC_OK; k++) {
        tc_node *node = node_nth(cl, start + (unsigned)k, false);
        if (node)
            st = map_load_from(cl, node);
    }
    return st;
}

/* After a node failed to answer: reload the map unless that was done recently. */
static void map_refresh_soon(tc_cluster *cl)
{
    int64_t last = atomic_load(&cl->last_refresh_ns);
    int64_t now = tc__now_ns();
    if (now - last < (int64_t)MAP_REFRESH_MS * 1000000)
        return;
    if (!atomic_compare_exchange_strong(&cl->last_refresh_ns, &last, now))
        return; /* another thread does it */
    map_refresh(cl);
}

static void cluster_close(void *t)
{
    tc_cluster *cl = t;
    if (!cl)
        return;
    /* Taken only in a child after fork, by a thread of the parent mid-update of the node
     * list: the nodes are then left (a leak) rather than walked. */
    if (pthread_rwlock_trywrlock(&cl->map_mu) == 0) {
        for (int i = 0; i < cl->nnodes; i++)
            tc__node_close(cl->nodes[i]);
        tc__free(cl->nodes);
        pthread_rwlock_unlock(&cl->map_mu);
    }
    pthread_rwlock_destroy(&cl->map_mu);
    tc__free(cl);
}

/* Loads the slot map from the first seed that answers. */
static tc_status load_from_seeds(tc_cluster *cl)
{
    tc_status st = TC_ERR_IO;
    const tc_url *u = cl->url;
    for (int i = 0; i < u->nseeds && st != TC_OK; i++) {
        pthread_rwlock_wrlock(&cl->map_mu);
        int idx = node_index_locked(cl, u->seed_hosts[i], strlen(u->seed_hosts[i]),
                                    u->seed_ports[i]);
        tc_node *seed = idx >= 0 ? cl->nodes[idx] : NULL;
        pthread_rwlock_unlock(&cl->map_mu);
        if (!seed)
            return TC_ERR_NOMEM;
        st = map_load_from(cl, seed);
        if (st == TC_ERR_AUTH || st == TC_ERR_NOMEM)
            break;
    }
    if (st == TC_ERR_PROTO)
        CLOG(cl, TC_LOG_ERROR,
             "redis-cluster:// names a server that is not a working Redis "
             "Cluster (CLUSTER SLOTS failed)");
    else if (st != TC_OK)
        CLOG(cl, TC_LOG_ERROR, "no seed node of the Redis Cluster answered: %s", tc__strerror(st));
    return st;
}

static tc_status cluster_open(const tc_node_config *cfg, const tc_url *url, void **out)
{
    tc_cluster *cl = tc__calloc(1, sizeof *cl);
    if (!cl)
        return TC_ERR_NOMEM;
    if (pthread_rwlock_init(&cl->map_mu, NULL) != 0) {
        tc__free(cl);
        return TC_ERR_NOMEM;
    }
    cl->cfg = *cfg;
    cl->url = url;
    for (int i = 0; i < NSLOTS; i++)
        cl->slots[i] = -1;
    tc_status st = load_from_seeds(cl);
    if (st != TC_OK) {
        cluster_close(cl);
        return st;
    }
    *out = cl;
    return TC_OK;
}

static void cluster_stats(void *t, tc_remote_stats *out)
{
    tc_cluster *cl = t;
    tc_node_stats ns = {0, 0, 0, 0};
    pthread_rwlock_rdlock(&cl->map_mu);
    for (int i = 0; i < cl->nnodes; i++)
        tc__node_add_stats(cl->nodes[i], &ns);
    pthread_rwlock_unlock(&cl->map_mu);
    tc__topo_stats_from(&ns, out);
    out->moved = atomic_load(&cl->moved);
    out->ask = atomic_load(&cl->ask);
    out->tryagain = atomic_load(&cl->tryagain);
    out->map_refreshes = atomic_load(&cl->map_refreshes);
}

static tc_status cluster_connect(void *t, int timeout_ms, tc_conn **out)
{
    tc_cluster *cl = t;
    /* Classic pub/sub reaches every node of a cluster: any node will do. */
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&cl->rr, 1);
    int n;
    pthread_rwlock_rdlock(&cl->map_mu);
    n = cl->nnodes;
    pthread_rwlock_unlock(&cl->map_mu);
    for (int k = 0; k < n && st != TC_OK; k++) {
        tc_node *node = node_nth(cl, start + (unsigned)k, true);
        if (!node)
            break;
        st = tc__node_connect(node, timeout_ms, out);
    }
    if (st != TC_OK)
        map_refresh_soon(cl);
    return st;
}

/* Marks in owner[] (nnodes entries) the nodes that own a slot. Caller holds map_mu. */
static void mark_masters_locked(const tc_cluster *cl, bool *owner)
{
    memset(owner, 0, sizeof *owner * (size_t)cl->nnodes);
    for (int s = 0; s < NSLOTS; s++)
        if (cl->slots[s] >= 0)
            owner[cl->slots[s]] = true;
}

static int cluster_masters(void *t, tc_node **out, int cap)
{
    tc_cluster *cl = t;
    pthread_rwlock_rdlock(&cl->map_mu);
    bool *owner = tc__malloc(sizeof *owner * (size_t)(cl->nnodes ? cl->nnodes : 1));
    int n = 0;
    if (owner) {
        mark_masters_locked(cl, owner);
        for (int i = 0; i < cl->nnodes && n >= 0; i++) {
            if (!owner[i])
                continue;
            if (n == cap)
                n = -1;
            else
                out[n++] = cl->nodes[i];
        }
    }
    pthread_rwlock_unlock(&cl->map_mu);
    tc__free(owner);
    return n;
}

static tc_status cluster_refresh(void *t)
{
    return map_refresh(t);
}

static tc_status cluster_run_at(tc_cluster *cl, unsigned slot, const tc_op *o);

/* The largest sequences' key a publication names: "<key_prefix>:__tc:seq", the prefix at
 * most 1024 bytes (the options' rule). */
#define SEQ_KEY_MAX 1100

/* Runs o on the node that serves slot, following redirects until the deadline. A
 * publication whose sequences go by slot bumps this slot's (tc__ops_pub_for_slot). */
static tc_status cluster_run(tc_cluster *cl, unsigned slot, const tc_op *o)
{
    if (!o->pub || !o->pub->seq_by_slot)
        return cluster_run_at(cl, slot, o);
    char buf[SEQ_KEY_MAX + TC_SLOT_KEY_EXTRA + 8];
    if (tc__ops_pub_slot_cap(o->pub) > sizeof buf)
        return TC_ERR_ARG;
    tc_pub pub;
    tc__ops_pub_for_slot(o->pub, slot, &pub, buf);
    tc_op one = *o;
    one.pub = &pub;
    return cluster_run_at(cl, slot, &one);
}

/* Sleeps *pause_ms (doubled for the next time, up to TRYAGAIN_PAUSE_MAX_MS), never past
 * deadline. */
static void tryagain_pause(int *pause_ms, int64_t deadline)
{
    int64_t left = deadline - tc__now_ns();
    int64_t ns = (int64_t)*pause_ms * 1000000;
    if (ns > left)
        ns = left > 0 ? left : 0;
    struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
    nanosleep(&ts, NULL);
    if (*pause_ms < TRYAGAIN_PAUSE_MAX_MS)
        *pause_ms *= 2;
}

static tc_status cluster_run_at(tc_cluster *cl, unsigned slot, const tc_op *o)
{
    int64_t deadline = tc__deadline_after_ms(cl->cfg.command_timeout_ms);
    tc_node *ask_node = NULL;
    tc_status st = TC_ERR_IO;
    int pause_ms = 1;
    for (int attempt = 0;;) {
        tc_node *node = ask_node ? ask_node : node_for_slot(cl, slot);
        if (!node) {
            map_refresh_soon(cl);
            node = node_for_slot(cl, slot);
            if (!node)
                return TC_ERR_IO; /* no node serves this slot */
        }
        tc_route rt;
        memset(&rt, 0, sizeof rt);
        rt.asking = ask_node != NULL;
        rt.deadline_ns = deadline; /* retries share the first attempt's deadline */
        ask_node = NULL;
        st = tc__ops_run(node, &rt, o);
        if (rt.redir.kind == TC_REDIR_NONE) {
            if (st == TC_ERR_IO || st == TC_ERR_TIMEOUT)
                map_refresh_soon(cl);
            return st;
        }
        bool again = rt.redir.kind == TC_REDIR_TRYAGAIN;
        if ((!again && ++attempt >= MAX_REDIRECTS) || tc__now_ns() >= deadline) {
            tc__redirect_clear(&rt.redir);
            return st;
        }
        if ((o->kind == TC_OP_SCRIPT || o->kind == TC_OP_COMMAND) && *o->reply) {
            freeReplyObject(*o->reply);
            *o->reply = NULL;
        }
        const char *host = rt.redir.host;
        int answered_port;
        if (!host) /* the node that answered */
            tc__node_addr(node, &host, &answered_port);
        tc_redirect d = rt.redir;
        bool lost = false;
        if (d.kind == TC_REDIR_MOVED) {
            atomic_fetch_add(&cl->moved, 1);
            lost = !map_set_slot(cl, d.slot, host, d.port);
        } else if (d.kind == TC_REDIR_ASK) {
            atomic_fetch_add(&cl->ask, 1);
            ask_node = map_set_slot(cl, -1, host, d.port);
            lost = !ask_node;
        }
        tc__redirect_clear(&rt.redir);
        if (lost)
            return TC_ERR_NOMEM;
        if (again) { /* TRYAGAIN / CLUSTERDOWN: the same node again, within the deadline */
            atomic_fetch_add(&cl->tryagain, 1);
            tryagain_pause(&pause_ms, deadline);
        }
    }
}

static unsigned key_slot(const tc_op *o, size_t i)
{
    return tc__cluster_slot(o->keys[i], o->klens[i]);
}

static tc_status cluster_single(tc_cluster *cl, const tc_op *o)
{
    return cluster_run(cl, key_slot(o, 0), o);
}

/* Indices 0..n-1 sorted by slot (stable), so that keys of a slot form runs. */
static int cmp_slot(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b; /* (slot << 16 | 0) sort keys, then index */
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* order[2*i] = slot, order[2*i+1] = index, sorted by slot. */
static uint32_t *by_slot(const tc_op *o)
{
    if (o->n > SIZE_MAX / (2 * sizeof(uint32_t)) || o->n > UINT32_MAX)
        return NULL;
    uint32_t *ord = tc__malloc(2 * sizeof *ord * (o->n ? o->n : 1));
    if (!ord)
        return NULL;
    for (size_t i = 0; i < o->n; i++) {
        ord[2 * i] = key_slot(o, i);
        ord[2 * i + 1] = (uint32_t)i;
    }
    qsort(ord, o->n, 2 * sizeof *ord, cmp_slot);
    return ord;
}

/* A write (set or delete) over keys of many slots, laid out for sending. A group is one slot's
 * keys (a MULTI/EXEC may touch one slot only), contiguous in keys[]. The groups are sorted by
 * their node's address, then slot, so that a node's groups are adjacent and the nodes come in
 * the order their connections are taken; the groups of a slot no node is known for come
 * last. */
typedef struct wgroup {
    size_t beg, n; /* its keys: keys[beg .. beg + n) */
    unsigned slot;
    tc_node *node; /* NULL: no node known for the slot (yet) */
    tc_status st;  /* its transaction's outcome */
    bool redir;    /* it met a redirect: routed again on its own */
} wgroup;

/* One node's transactions, pipelined in one round trip: wbatch_send puts them on the wire,
 * wbatch_recv reads the replies and gives the connection back. */
typedef struct wbatch {
    tc_exch e;
    size_t g0, g1; /* its groups: g[g0 .. g1) */
    size_t nrep;
    redisReply **rep;
    tc_status st; /* the send's outcome */
} wbatch;

typedef struct wplan {
    const tc_op *o;
    const char **keys;
    size_t *klens;
    const void **vals; /* NULL for a delete */
    size_t *lens;
    const char **argv; /* a delete's UNLINK command line, rebuilt per group */
    size_t *alens;
    wgroup *g;
    size_t ng;
    wbatch *b; /* one per node, in the groups' order */
    size_t nb;
    char ttl[16];
    int tl;
    char *seqbuf; /* a publication by slot: its per-slot strings (tc__ops_pub_for_slot) */
} wplan;

/* By node address (unknown nodes last), then slot. */
static int cmp_group(const void *a, const void *b)
{
    const wgroup *x = a, *y = b;
    if (x->node != y->node) {
        if (!x->node || !y->node)
            return x->node ? -1 : 1;
        return (uintptr_t)x->node < (uintptr_t)y->node ? -1 : 1;
    }
    return x->slot < y->slot ? -1 : x->slot > y->slot;
}

static void plan_free(wplan *p)
{
    tc__free(p->keys);
    tc__free(p->klens);
    tc__free(p->vals);
    tc__free(p->lens);
    tc__free(p->argv);
    tc__free(p->alens);
    tc__free(p->g);
    tc__free(p->b);
    tc__free(p->seqbuf);
}

/* Lays o out as described at wgroup and splits the groups into one batch per node. */
static tc_status plan_make(tc_cluster *cl, const tc_op *o, wplan *p)
{
    memset(p, 0, sizeof *p);
    p->o = o;
    size_t m = o->n;
    bool set = o->kind == TC_OP_SET;
    p->tl = set ? tc__ops_ttl_arg(o->ttl_ms, p->ttl) : 0;
    uint32_t *ord = by_slot(o);
    p->keys = tc__malloc(sizeof *p->keys * m);
    p->klens = tc__malloc(sizeof *p->klens * m);
    p->vals = set ? tc__malloc(sizeof *p->vals * m) : NULL;
    p->lens = set ? tc__malloc(sizeof *p->lens * m) : NULL;
    p->argv = set ? NULL : tc__malloc(sizeof *p->argv * (m + 1));
    p->alens = set ? NULL : tc__malloc(sizeof *p->alens * (m + 1));
    p->g = tc__calloc(m, sizeof *p->g);
    p->b = tc__calloc(m, sizeof *p->b);
    bool by_slot = o->pub && o->pub->seq_by_slot;
    p->seqbuf = by_slot ? tc__malloc(tc__ops_pub_slot_cap(o->pub)) : NULL;
    if (!ord || !p->keys || !p->klens || (set ? !p->vals || !p->lens : !p->argv || !p->alens) ||
        !p->g || !p->b || (by_slot && !p->seqbuf)) {
        tc__free(ord);
        return TC_ERR_NOMEM;
    }
    /* The groups in slot order; beg indexes ord until the layout below. */
    for (size_t i = 0; i < m; i++) {
        if (i == 0 || ord[2 * i] != ord[2 * (i - 1)]) {
            wgroup *g = &p->g[p->ng++];
            g->beg = i;
            g->slot = ord[2 * i];
            g->node = node_for_slot(cl, g->slot);
        }
        p->g[p->ng - 1].n++;
    }
    qsort(p->g, p->ng, sizeof *p->g, cmp_group);
    size_t k = 0;
    for (size_t j = 0; j < p->ng; j++) {
        wgroup *g = &p->g[j];
        for (size_t i = g->beg; i < g->beg + g->n; i++, k++) {
            size_t idx = ord[2 * i + 1];
            p->keys[k] = o->keys[idx];
            p->klens[k] = o->klens[idx];
            if (set) {
                p->vals[k] = o->vals[idx];
                p->lens[k] = o->lens[idx];
            }
        }
        g->beg = k - g->n;
        if (g->node && (j == 0 || g->node != p->g[j - 1].node))
            p->b[p->nb++].g0 = j;
        if (g->node)
            p->b[p->nb - 1].g1 = j + 1;
    }
    tc__free(ord);
    return TC_OK;
}

/* The commands a group queues between MULTI and EXEC: its SETs or one UNLINK, and its
 * PUBLISH. */
static size_t wgroup_queued(const wplan *p, const wgroup *g)
{
    return (p->vals ? g->n : 1) + (p->o->pub ? 1 : 0);
}

/* Appends g's transaction: MULTI, the writes, its own PUBLISH of the invalidation (bumping
 * g's slot when the sequences go by slot), EXEC. */
static tc_status wgroup_send(wplan *p, tc_exch *e, const wgroup *g)
{
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    tc_status st = tc__ex_send(e, 1, &multi, &multi_len);
    if (p->vals) {
        for (size_t i = g->beg; i < g->beg + g->n && st == TC_OK; i++) {
            const char *av[5] = {"SET", p->keys[i], p->vals[i] ? p->vals[i] : "", "PX", p->ttl};
            size_t al[5] = {3, p->klens[i], p->lens[i], 2, (size_t)p->tl};
            st = tc__ex_send(e, p->tl > 0 ? 5 : 3, av, al);
        }
    } else if (st == TC_OK) {
        p->argv[0] = "UNLINK";
        p->alens[0] = 6;
        memcpy(p->argv + 1, p->keys + g->beg, sizeof *p->argv * g->n);
        memcpy(p->alens + 1, p->klens + g->beg, sizeof *p->alens * g->n);
        st = tc__ex_send(e, (int)(g->n + 1), p->argv, p->alens);
    }
    if (st == TC_OK && p->o->pub) {
        tc_pub pub;
        tc__ops_pub_for_slot(p->o->pub, g->slot, &pub, p->seqbuf);
        st = tc__ops_send_publish(e, &pub);
    }
    if (st == TC_OK)
        st = tc__ex_send(e, 1, &exec, &exec_len);
    return st;
}

/* Sets g->st and g->redir from its replies (MULTI, the QUEUED, EXEC's array); a delete adds
 * the keys it removed to *deleted. */
static void wgroup_check(const wplan *p, const tc_logger *log, wgroup *g, redisReply **rep,
                         size_t *deleted)
{
    size_t q = wgroup_queued(p, g);
    tc_redirect d = {TC_REDIR_NONE, 0, 0, NULL};
    for (size_t i = 0; i < q + 2; i++)
        (void)tc__reply_redirect(rep[i], &d);
    g->redir = d.kind != TC_REDIR_NONE;
    tc__redirect_clear(&d);
    g->st = g->redir ? TC_ERR_PROTO : tc__ops_tx_check(log, rep, q, p->vals ? "SET" : "UNLINK");
    if (g->st != TC_OK)
        return;
    const redisReply *x = rep[q + 1];
    if (p->vals) {
        for (size_t i = 0; i < g->n && g->st == TC_OK; i++) {
            if (!tc__reply_is_status(x->element[i], "OK"))
                g->st = tc__bad_reply(log, x->element[i], "SET");
        }
    } else if (x->element[0]->type != REDIS_REPLY_INTEGER || x->element[0]->integer < 0) {
        g->st = tc__bad_reply(log, x->element[0], "UNLINK");
    } else {
        *deleted += (size_t)x->element[0]->integer;
    }
    if (g->st == TC_OK && p->o->pub && x->element[q - 1]->type != REDIS_REPLY_INTEGER)
        g->st = tc__bad_reply(log, x->element[q - 1], "PUBLISH");
}

/* Takes a connection to b's node and puts all its transactions on the wire, without waiting
 * for the replies. A failure is kept in b->st for wbatch_recv. */
static void wbatch_send(wplan *p, wbatch *b)
{
    tc_node *node = p->g[b->g0].node;
    b->nrep = 0;
    for (size_t j = b->g0; j < b->g1; j++)
        b->nrep += wgroup_queued(p, &p->g[j]) + 2;
    b->rep = tc__calloc(b->nrep, sizeof *b->rep);
    tc__ex_init(&b->e, NULL, 0, NULL);
    b->e.node = node; /* for tc__node_op_finish, whatever happens */
    if (!b->rep) {
        b->st = TC_ERR_NOMEM;
        return;
    }
    b->st = tc__node_op_start(node, NULL, &b->e);
    for (size_t j = b->g0; j < b->g1 && b->st == TC_OK; j++)
        b->st = wgroup_send(p, &b->e, &p->g[j]);
    if (b->st == TC_OK)
        b->st = tc__ex_flush(&b->e);
}

/* Reads b's replies into its groups' outcomes and gives the connection back. Returns the
 * exchange's status (I/O, timeout): on failure no group's outcome is known. */
static tc_status wbatch_recv(wplan *p, wbatch *b, size_t *deleted)
{
    tc_status st = b->st;
    if (st == TC_OK) {
        tc__ex_rearm(&b->e);
        st = tc__ex_recv(&b->e, b->nrep, b->rep);
    }
    redisReply **rep = b->rep;
    for (size_t j = b->g0; j < b->g1 && st == TC_OK; j++) {
        wgroup_check(p, tc__node_log(b->e.node), &p->g[j], rep, deleted);
        rep += wgroup_queued(p, &p->g[j]) + 2;
    }
    if (b->rep)
        tc__replies_free(b->rep, b->nrep);
    tc__free(b->rep);
    b->rep = NULL;
    return tc__node_op_finish(&b->e, st);
}

/* Routes g again on its own: cluster_run finds its node and follows its redirects. */
static void wgroup_redo(tc_cluster *cl, wplan *p, wgroup *g, size_t *deleted)
{
    tc_op sub = *p->o;
    size_t d = 0;
    sub.n = g->n;
    sub.keys = p->keys + g->beg;
    sub.klens = p->klens + g->beg;
    sub.vals = p->vals ? p->vals + g->beg : NULL;
    sub.lens = p->lens ? p->lens + g->beg : NULL;
    sub.deleted = &d;
    g->st = cluster_run(cl, g->slot, &sub);
    *deleted += d;
}

/* A MULTI/EXEC write (set or delete) over keys of many slots: one transaction per slot, each
 * with its own publication (PUBLISH reaches the whole cluster from any node). The
 * transactions of one node go in one pipeline, and every node's pipeline is sent before any
 * reply is read, so the nodes work in parallel and the call takes about one round trip.
 * Connections are taken in the order of the nodes' addresses (as cluster_get_many does), so
 * two threads never each hold what the other waits for. After the first batch that cannot be
 * sent no other is started (the call fails anyway); the ones sent are all read. Then the
 * transactions that met a redirect, and those of slots no node was known for, are routed
 * one by one. Not atomic across slots: a failure can leave some slots written. */
static tc_status cluster_write_by_slot(tc_cluster *cl, const tc_op *o)
{
    wplan p;
    tc_status st = plan_make(cl, o, &p);
    size_t sent = 0;
    bool send_failed = false;
    while (st == TC_OK && sent < p.nb && !send_failed) {
        wbatch_send(&p, &p.b[sent]);
        send_failed = p.b[sent++].st != TC_OK;
    }
    size_t deleted = 0;
    bool refresh = false; /* after every batch is read: the others hold connections */
    for (size_t j = 0; j < sent; j++) {
        tc_status one = wbatch_recv(&p, &p.b[j], &deleted);
        refresh = refresh || one == TC_ERR_IO || one == TC_ERR_TIMEOUT;
        if (st == TC_OK)
            st = one;
    }
    if (refresh)
        map_refresh_soon(cl);
    for (size_t j = 0; j < p.ng && st == TC_OK; j++) {
        wgroup *g = &p.g[j];
        if (g->redir || !g->node)
            wgroup_redo(cl, &p, g, &deleted);
        st = g->st;
    }
    if (o->deleted)
        *o->deleted = st == TC_OK ? deleted : 0;
    plan_free(&p);
    return st;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (tc_node *const *)a, y = (uintptr_t) * (tc_node *const *)b;
    return x < y ? -1 : x > y;
}

/* GETs over many slots: one pipelined batch per node, all sent before any is read, so the
 * nodes work in parallel and the call takes about one round trip. Connections are taken
 * in the order of the nodes' addresses, so two threads can never each hold what the other
 * waits for. A node batch that meets a redirect is redone key by key (each following its
 * own redirects). */
static tc_status cluster_get_many(tc_cluster *cl, const tc_op *o)
{
    size_t n = o->n;
    tc_node **owner = tc__calloc(n, sizeof *owner);
    tc_node **nodes = tc__calloc(n, sizeof *nodes);
    size_t *beg = tc__calloc(n + 1, sizeof *beg);
    bool *done = tc__calloc(n, sizeof *done);
    const char **keys = tc__malloc(sizeof *keys * n);
    size_t *klens = tc__malloc(sizeof *klens * n);
    size_t *idx = tc__malloc(sizeof *idx * n);
    tc_ref **vals = tc__calloc(n, sizeof *vals);
    int64_t *pttls = tc__malloc(sizeof *pttls * n);
    tc_status *sts = tc__malloc(sizeof *sts * n);
    bool *trk = tc__calloc(n, sizeof *trk);
    tc_get_batch *batches = tc__calloc(n, sizeof *batches);
    tc_status st = TC_OK;
    if (!owner || !nodes || !beg || !done || !keys || !klens || !idx || !vals || !pttls || !sts ||
        !trk || !batches)
        st = TC_ERR_NOMEM;
    size_t nn = 0; /* distinct nodes */
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        owner[i] = node_for_slot(cl, key_slot(o, i));
        bool seen = !owner[i]; /* unknown slot: key by key below */
        for (size_t j = 0; j < nn && !seen; j++)
            seen = nodes[j] == owner[i];
        if (!seen)
            nodes[nn++] = owner[i];
    }
    if (st == TC_OK)
        qsort(nodes, nn, sizeof *nodes, cmp_ptr);
    size_t k = 0;
    for (size_t j = 0; j < nn; j++) {
        beg[j] = k;
        for (size_t i = 0; i < n; i++) {
            if (owner[i] == nodes[j]) {
                keys[k] = o->keys[i];
                klens[k] = o->klens[i];
                idx[k++] = i;
            }
        }
    }
    if (st == TC_OK)
        beg[nn] = k;
    for (size_t j = 0; j < nn && st == TC_OK; j++)
        tc__get_batch_send(&batches[j], nodes[j], beg[j + 1] - beg[j], keys + beg[j],
                           klens + beg[j], o->pttls != NULL, o->tracked != NULL, true);
    size_t sent = st == TC_OK ? nn : 0;
    /* Every batch sent is read (or fails), whatever the others did, so each gives its
     * connection back; the map is reloaded only then (the batches hold connections). */
    bool refresh = false;
    for (size_t j = 0; j < sent; j++) {
        tc_get_batch *b = &batches[j];
        size_t m = beg[j + 1] - beg[j];
        tc_status one = tc__get_batch_recv(b, vals + beg[j], pttls + beg[j], sts + beg[j],
                                           trk + beg[j]);
        bool redirected = b->rt.redir.kind != TC_REDIR_NONE;
        tc__redirect_clear(&b->rt.redir);
        if (redirected) {
            for (size_t q = beg[j]; q < beg[j + 1]; q++) {
                tc__ref_drop(vals[q]);
                vals[q] = NULL;
            }
            continue; /* not done: key by key below */
        }
        if (one != TC_OK || st != TC_OK) {
            refresh = refresh || one == TC_ERR_IO || one == TC_ERR_TIMEOUT;
            if (st == TC_OK)
                st = one;
            continue;
        }
        for (size_t q = beg[j]; q < beg[j] + m; q++) {
            size_t i = idx[q];
            done[i] = true;
            o->vals_out[i] = vals[q];
            vals[q] = NULL;
            if (o->pttls)
                o->pttls[i] = pttls[q];
            if (o->tracked)
                o->tracked[i] = trk[q];
            o->st_out[i] = sts[q];
        }
    }
    if (refresh)
        map_refresh_soon(cl);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        if (done[i])
            continue;
        tc_op g = {.kind = TC_OP_GET,
                   .n = 1,
                   .keys = &o->keys[i],
                   .klens = &o->klens[i],
                   .vals_out = &o->vals_out[i],
                   .pttls = o->pttls ? &o->pttls[i] : NULL,
                   .tracked = o->tracked ? &o->tracked[i] : NULL};
        tc_status one = cluster_single(cl, &g);
        if (one == TC_OK || one == TC_MISS)
            o->st_out[i] = one;
        else
            st = one;
    }
    if (st != TC_OK && o->vals_out) {
        for (size_t i = 0; i < n; i++) {
            tc__ref_drop(o->vals_out[i]);
            o->vals_out[i] = NULL;
        }
    }
    for (size_t i = 0; vals && i < n; i++)
        tc__ref_drop(vals[i]);
    tc__free(owner);
    tc__free(nodes);
    tc__free(beg);
    tc__free(done);
    tc__free(keys);
    tc__free(klens);
    tc__free(idx);
    tc__free(vals);
    tc__free(pttls);
    tc__free(sts);
    tc__free(trk);
    tc__free(batches);
    return st;
}

static tc_status cluster_publish(tc_cluster *cl, const tc_pub *pub)
{
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&cl->rr, 1);
    for (unsigned k = 0; k < 3 && st != TC_OK; k++) {
        tc_node *node = node_nth(cl, start + k, true);
        if (!node)
            break;
        tc_op o = {.kind = TC_OP_PUBLISH, .pub = pub};
        st = tc__ops_run(node, NULL, &o);
    }
    return st;
}

/* SCAN + UNLINK on every master (a key lives on exactly one), then one publication. */
static tc_status cluster_clear(tc_cluster *cl, const char *pattern, const tc_pub *pub)
{
    tc_status st = TC_OK;
    int n;
    pthread_rwlock_rdlock(&cl->map_mu);
    n = cl->nnodes;
    pthread_rwlock_unlock(&cl->map_mu);
    for (int i = 0; i < n; i++) {
        pthread_rwlock_rdlock(&cl->map_mu);
        tc_node *node = cl->nodes[i];
        bool master = false;
        for (int s = 0; s < NSLOTS && !master; s++)
            master = cl->slots[s] == i;
        pthread_rwlock_unlock(&cl->map_mu);
        if (!master)
            continue;
        tc_route rt;
        memset(&rt, 0, sizeof rt);
        rt.key_unlink = true;
        tc_op o = {.kind = TC_OP_CLEAR, .pattern = pattern};
        tc_status one = tc__ops_run(node, &rt, &o);
        if (one != TC_OK && st == TC_OK)
            st = one;
    }
    if (pub) {
        tc_status one = cluster_publish(cl, pub);
        if (st == TC_OK)
            st = one;
    }
    return st;
}

/* Commands that name no key go to any master; the others are routed by argv[1]. */
static bool keyless_command(int argc, const char **argv)
{
    static const char *const keyless[] = {"CONFIG", "PING",   "PUBLISH", "INFO", "CLUSTER",
                                          "SCRIPT", "CLIENT", "DBSIZE",  "TIME", NULL};
    if (argc < 2)
        return true;
    for (int i = 0; keyless[i]; i++) {
        if (strcasecmp(argv[0], keyless[i]) == 0)
            return true;
    }
    return false;
}

/* A script or command routed by its first key (a script's keys must share a slot). */
static tc_status cluster_by_first_key(tc_cluster *cl, const tc_op *o, size_t klen)
{
    tc_op k = *o;
    k.n = 1;
    k.keys = &o->argv[1];
    k.klens = &klen;
    return cluster_single(cl, &k);
}

static tc_status cluster_run_op(void *t, const tc_op *o)
{
    tc_cluster *cl = t;
    switch (o->kind) {
    case TC_OP_GET_MANY:
        return cluster_get_many(cl, o);
    case TC_OP_SET:
    case TC_OP_DELETE:
        return cluster_write_by_slot(cl, o);
    case TC_OP_CLEAR:
        return cluster_clear(cl, o->pattern, o->pub);
    case TC_OP_PUBLISH:
        return cluster_publish(cl, o->pub);
    case TC_OP_SCRIPT:
        if (o->argc < 2 || strcmp(o->argv[0], "0") == 0) { /* no key: any master */
            tc_node *node = node_nth(cl, 0, true);
            return node ? tc__ops_run(node, NULL, o) : TC_ERR_IO;
        }
        return cluster_by_first_key(cl, o, o->alens[1]);
    case TC_OP_COMMAND:
        if (keyless_command(o->argc, o->argv)) {
            tc_node *node = node_nth(cl, atomic_fetch_add(&cl->rr, 1), true);
            return node ? tc__ops_run(node, NULL, o) : TC_ERR_IO;
        }
        return cluster_by_first_key(cl, o, o->alens ? o->alens[1] : strlen(o->argv[1]));
    case TC_OP_GET:
    case TC_OP_ADD:
    case TC_OP_TOUCH:
    case TC_OP_INCR:
        break;
    }
    return cluster_single(cl, o);
}

const tc_topo_vt tc__topo_cluster = {
    .name = "cluster",
    .open = cluster_open,
    .close = cluster_close,
    .run = cluster_run_op,
    .connect = cluster_connect,
    .masters = cluster_masters,
    .refresh = cluster_refresh,
    .stats = cluster_stats,
};
