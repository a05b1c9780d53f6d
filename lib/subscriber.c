/*
 * The subscriber (see subscriber.h): the thread that applies invalidations to the local tier.
 *
 * Broadcast mode: it subscribes to "<key_prefix>:__tc:inval", on which every writer
 * publishes, atomically with the write, a message naming the changed keys or a flush
 * (inval.h has its bytes). A receiver ignores its own messages (its writes already updated
 * its local tier) and those of another version (they name other Redis keys). Anything that
 * does not parse is counted and ignored: anyone can PUBLISH.
 *
 * Tracking mode: a dedicated "tracker" connection runs CLIENT TRACKING ON REDIRECT <sub>
 * BCAST PREFIX "<key_prefix>:", so Redis itself reports writes by any client to the
 * subscriber's "__redis__:invalidate" channel (full Redis keys; nil after FLUSHALL/FLUSHDB).
 * A redirect cannot cross servers, so on a cluster the session holds such a pair (a link)
 * on every master, and ends (resubscribing, flushing) when the set of masters in the slot
 * map changes; broadcast mode needs one link anywhere (PUBLISH crosses the cluster).
 *
 * Targeted mode: no tracker. Each link learns its own client id and, once subscribed to
 * "__redis__:invalidate", publishes it to its node (tc__node_set_link); the pool's
 * connections then enable CLIENT TRACKING ON REDIRECT <id> (default mode: Redis remembers
 * what each connection read) before they read for the local tier (redis_ops.c), so Redis
 * tells this process about the keys it read, and nobody else. The id is cleared when the
 * session ends; a new link has a new id, and every pooled connection moves its redirect
 * before its next read for the tier. The messages are those of tracking mode. Liveness is
 * the link's own heartbeat: the redirect target is the subscribed connection itself, so a
 * dead target is a dead link (no TRACKINGINFO poll). See docs/design/coherence.md.
 *
 * The thread owns its connections. It pings every heartbeat_ms and declares the link dead
 * when a ping has had no answer for heartbeat_ms more (in tracking mode it also checks
 * CLIENT TRACKINGINFO for a broken redirect). While the link is not known healthy the local
 * tier is bypassed; after every (re)subscription it flushes the local tier (an epoch bump),
 * or with group sequences drops the groups that moved (reconcile), BEFORE declaring the link
 * healthy, because messages sent during the outage are lost.
 * With Sentinel it also holds a "watch" connection to a sentinel, subscribed to
 * +switch-master: when the sentinels name a new master it resubscribes there (flushing) at
 * once, not seconds later when the old master is demoted and drops its clients.
 *
 * Locks: start_mu guards the start handshake only. The healthy flag (the context's) is an
 * atomic read on every local read; it is written by this thread alone. Applying a key
 * invalidation also wakes a tc_get_or_set flight waiting for that key (flight.h), taking the
 * flight table's leaf mutex only while some flight is in progress.
 */
#include "config.h"

#include "subscriber.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "inval.h"
#include "key.h"
#include "reclaim.h"
#include "remote_conn.h"
#include "slot_tags.h"

#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define TRACKING_CHANNEL "__redis__:invalidate"
#define TC_SUB_LINKS_MAX 64 /* masters of a cluster in tracking mode */

struct tc_subscriber {
    tc_sub_ctx ctx;
    pthread_t thread;
    bool thread_started;
    int wake[2]; /* a pipe: a byte written to wake[1] stops the thread */
    atomic_bool stopping;
    pthread_mutex_t start_mu;
    pthread_cond_t start_cv;
    int start_state; /* 0 pending, 1 subscribed, < 0 the tc_status of the failure */
    /* The subscriber thread's own: */
    tc_conn *watch; /* Sentinel: subscribed to +switch-master, kept across sessions */
    int64_t watch_pong, watch_ping; /* its heartbeat, as a link's (watch_beat) */
    unsigned sessions;              /* sessions begun */
    /* The sockets of the thread's connections (links: sub at 2i, tracker at 2i + 1; the
     * watch last), or -1: what a child after fork closes (tc__subscriber_forget). The
     * thread sets a slot once the connection is made and clears it before freeing the
     * connection, so a slot never names a socket that may already be closed. */
    atomic_int fds[2 * TC_SUB_LINKS_MAX + 1];
    atomic_bool test_hold; /* tests: no reconnection while set (tc__subscriber_test_hold) */
};

#define WATCH_FD (2 * TC_SUB_LINKS_MAX)

static void fd_note(tc_subscriber *cs, int slot, const tc_conn *c)
{
    atomic_store(&cs->fds[slot], c ? tc__conn_fd(c) : -1);
}

/* ------------------------------------------------------------------ group sequences */

#define SEQ_UNKNOWN UINT64_MAX
/* A key message without sequences (TC1) from another instance means a writer that bumps
 * none may be running: for this long after one, a new link flushes the whole tier. */
#define LEGACY_WINDOW_NS (600LL * 1000000000)
#define RUN_ID_MAX 48

_Static_assert(TC_INVAL_GROUPS == TC_LOCAL_GROUPS, "one group numbering");
_Static_assert(TC_INVAL_SLOTS >> TC_INVAL_SLOT_SHIFT == TC_LOCAL_GROUPS, "16 slots a group");
_Static_assert(TC_INVAL_SLOTS == TC_SLOTS, "a cluster's slots");

struct tc_seqs {
    pthread_mutex_t mu; /* guards what follows but the atomics; a leaf lock */
    bool by_slot;       /* a cluster: groups are slots, each with its own generation */
    unsigned ngroups;   /* TC_INVAL_SLOTS or TC_INVAL_GROUPS */
    bool gen_known;     /* gen (one server) and last[] describe what was applied */
    uint64_t gen;
    char run_id[RUN_ID_MAX]; /* the server's run_id at the last reconciliation ("" unknown) */
    /* When a TC1 key message of another instance was last seen (0: never). An atomic, set
     * without the mutex: a legacy writer's every message would otherwise take it. */
    atomic_int_fast64_t legacy_ns;
    uint64_t *last; /* the last sequence applied per group, or SEQ_UNKNOWN (0: none yet) */
    /* by_slot: each slot's generation, when slot_gen_known (a slot that has no sequences
     * yet has none); the masters' run_ids at the last reconciliation. */
    uint64_t *slot_gen;
    bool *slot_gen_known;
    char (*runs)[RUN_ID_MAX];
    int nruns;
    atomic_bool full_flush, drop_next;
};

static void seqs_forget_locked(tc_seqs *s)
{
    s->gen_known = false;
    for (unsigned g = 0; g < s->ngroups; g++)
        s->last[g] = SEQ_UNKNOWN;
    if (s->by_slot)
        memset(s->slot_gen_known, 0, sizeof *s->slot_gen_known * s->ngroups);
    s->nruns = 0;
}

tc_status tc__seqs_new(tc_seqs **out, bool by_slot)
{
    tc_seqs *s = tc__calloc(1, sizeof *s);
    *out = s;
    if (!s)
        return TC_ERR_NOMEM;
    s->by_slot = by_slot;
    s->ngroups = by_slot ? TC_INVAL_SLOTS : TC_INVAL_GROUPS;
    s->last = tc__calloc(s->ngroups, sizeof *s->last);
    if (by_slot) {
        s->slot_gen = tc__calloc(s->ngroups, sizeof *s->slot_gen);
        s->slot_gen_known = tc__calloc(s->ngroups, sizeof *s->slot_gen_known);
        s->runs = tc__calloc(TC_SUB_LINKS_MAX, sizeof *s->runs);
    }
    pthread_mutex_init(&s->mu, NULL);
    if (!s->last || (by_slot && (!s->slot_gen || !s->slot_gen_known || !s->runs))) {
        tc__seqs_free(s);
        *out = NULL;
        return TC_ERR_NOMEM;
    }
    seqs_forget_locked(s);
    atomic_init(&s->full_flush, false);
    atomic_init(&s->legacy_ns, 0);
    atomic_init(&s->drop_next, false);
    return TC_OK;
}

void tc__seqs_free(tc_seqs *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    tc__free(s->last);
    tc__free(s->slot_gen);
    tc__free(s->slot_gen_known);
    tc__free(s->runs);
    tc__free(s);
}

void tc__seqs_set_full_flush(tc_seqs *s, bool full)
{
    atomic_store(&s->full_flush, full);
}

void tc__seqs_drop_next(tc_seqs *s)
{
    atomic_store(&s->drop_next, true);
}

/* The local group that group g of a message (a slot on a cluster) is dropped with. */
static unsigned local_group(const tc_seqs *s, unsigned g)
{
    return s->by_slot ? g >> TC_INVAL_SLOT_SHIFT : g;
}

/* Everything flushed, nothing trusted: the generation of what was applied changed. */
static void flush_forget_locked(const tc_sub_ctx *ctx, tc_seqs *s)
{
    tc__local_flush(ctx->local);
    TC_COUNT(ctx->counters, full_flushes);
    seqs_forget_locked(s);
}

/* One server: a message of a new generation (FLUSHALL, the hash evicted or cleared)
 * flushes everything. Unknown: nothing trusted predates it (a flush followed). */
static void apply_gen_locked(const tc_sub_ctx *ctx, tc_seqs *s, uint64_t gen)
{
    if (s->gen_known && gen == s->gen)
        return;
    if (s->gen_known)
        flush_forget_locked(ctx, s);
    else
        seqs_forget_locked(s);
    s->gen = gen;
    s->gen_known = true;
}

/* A cluster: each slot's sequences have their own generation (their key was created by
 * the slot's first writer). Another generation than the one known for the slot means the
 * key was lost (FLUSHALL on its node, eviction): what else that node lost is unknown, so
 * everything is flushed, as on one server. */
static void apply_slot_gen_locked(const tc_sub_ctx *ctx, tc_seqs *s, unsigned slot, uint64_t gen)
{
    if (s->slot_gen_known[slot] && s->slot_gen[slot] != gen)
        flush_forget_locked(ctx, s);
    s->slot_gen[slot] = gen;
    s->slot_gen_known[slot] = true;
}

/* A TC2 message's sequences. A group that skipped a sequence lost a message and is
 * dropped. Group numbers beyond this topology's (a cluster's slots on one server) are
 * another deployment's: ignored. */
static void apply_seqs(const tc_sub_ctx *ctx, tc_inval *m)
{
    tc_seqs *s = ctx->seqs;
    pthread_mutex_lock(&s->mu);
    if (!s->by_slot)
        apply_gen_locked(ctx, s, m->gen);
    unsigned g;
    uint64_t q;
    while (tc__inval_next_seq(m, &g, &q)) {
        if (g >= s->ngroups)
            continue;
        if (s->by_slot)
            apply_slot_gen_locked(ctx, s, g, m->gen);
        uint64_t last = s->last[g];
        if (last != SEQ_UNKNOWN && q > last + 1)
            tc__local_drop_group(ctx->local, local_group(s, g));
        if (last == SEQ_UNKNOWN || q > last)
            s->last[g] = q;
    }
    pthread_mutex_unlock(&s->mu);
}

/* KEYS[1] the sequences' hash; ARGV[1] a generation to create if it has none. Its fields. */
static const char script_fetch[] = "redis.call('HSETNX', KEYS[1], 'gen', ARGV[1])\n"
                                   "return redis.call('HGETALL', KEYS[1])\n";

static bool parse_u64(const char *p, size_t len, uint64_t *out)
{
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* The fields of an HGETALL reply into *gen and seq[] (0 for a group not there). */
static bool parse_fetch(const redisReply *r, uint64_t *gen, uint64_t *seq)
{
    bool have_gen = false;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements % 2)
        return false;
    memset(seq, 0, sizeof *seq * TC_INVAL_GROUPS);
    for (size_t i = 0; i < r->elements; i += 2) {
        const redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return false;
        uint64_t g;
        if (f->len == 3 && memcmp(f->str, "gen", 3) == 0)
            have_gen = tc__inval_parse_gen(v->str, (size_t)v->len, gen);
        else if (!parse_u64(f->str, (size_t)f->len, &g) || g >= TC_INVAL_GROUPS ||
                 !parse_u64(v->str, (size_t)v->len, &seq[g]))
            return false;
    }
    return have_gen;
}

/* The run_id an INFO server reply names, into out. False if it names none. */
static bool run_id_of(const redisReply *r, char out[RUN_ID_MAX])
{
    if (!r || r->type != REDIS_REPLY_STRING || !r->str)
        return false;
    const char *p = strstr(r->str, "run_id:");
    if (!p)
        return false;
    p += 7;
    size_t n = strcspn(p, "\r\n");
    if (n == 0 || n >= RUN_ID_MAX)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

/* No sequence-less message of another instance lately (a writer that bumps nothing). */
static bool legacy_quiet(tc_seqs *s)
{
    int64_t legacy = atomic_load(&s->legacy_ns);
    return legacy == 0 || tc__now_ns() - legacy > LEGACY_WINDOW_NS;
}

/* After a new link subscribed (broadcast with sequences): one round trip fetches every
 * group's sequence and the generation. Same generation and server run: the groups that
 * moved while the link was down are dropped, the rest of the tier is kept (true).
 * Anything else flushes the whole tier (false). Messages arriving from now on are on the
 * new link, so nothing published after the fetch is lost. */
static bool reconcile(tc_subscriber *cs, const char *run_id)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    tc_seqs *s = ctx->seqs;
    uint64_t cand = 0;
    if (tc__random_bytes(&cand, sizeof cand) != TC_OK)
        cand = (uint64_t)tc__now_ns() ^ ctx->origin;
    char gen[17];
    snprintf(gen, sizeof gen, "%016" PRIx64, cand);
    const char *argv[] = {"1", ctx->seq_key, gen};
    const size_t lens[] = {1, strlen(ctx->seq_key), 16};
    redisReply *r = NULL;
    /* Whatever broke the link (a restart, a proxy, the network) may have closed the pooled
     * connections too: each fails once and is discarded. Without the retries a blip that
     * cut every connection would always end in a full flush. */
    tc_status st = TC_ERR_IO;
    for (int i = 0; st == TC_ERR_IO && i <= ctx->pool_size; i++) {
        if (r)
            freeReplyObject(r);
        r = NULL;
        st = tc__remote_script(ctx->remote, script_fetch, 3, argv, lens, &r);
    }
    uint64_t seq[TC_INVAL_GROUPS];
    uint64_t fgen = 0;
    bool ok = st == TC_OK && parse_fetch(r, &fgen, seq);
    if (r)
        freeReplyObject(r);
    pthread_mutex_lock(&s->mu);
    bool keep = ok && s->gen_known && s->gen == fgen && !atomic_load(&s->full_flush) && run_id[0] &&
                strcmp(run_id, s->run_id) == 0 && legacy_quiet(s);
    /* A sequence behind what was applied: the hash lost writes its generation cannot
     * show (it never should): trust nothing. */
    for (unsigned g = 0; keep && g < TC_INVAL_GROUPS; g++)
        keep = s->last[g] == SEQ_UNKNOWN || seq[g] >= s->last[g];
    if (keep) {
        for (unsigned g = 0; g < TC_INVAL_GROUPS; g++)
            if (s->last[g] != seq[g])
                tc__local_drop_group(ctx->local, g);
    } else {
        tc__local_flush(ctx->local);
    }
    if (ok) {
        memcpy(s->last, seq, sizeof *s->last * TC_INVAL_GROUPS);
        s->gen = fgen;
        s->gen_known = true;
        snprintf(s->run_id, sizeof s->run_id, "%s", run_id);
    } else {
        seqs_forget_locked(s);
    }
    pthread_mutex_unlock(&s->mu);
    if (!ok)
        tc__log(&ctx->log, TC_LOG_WARN, "could not read the group sequences: local tier flushed");
    return keep;
}

/* ------------------------------------------------------------------ applying messages */

static void invalidate_key(const tc_sub_ctx *ctx, const char *key, size_t klen)
{
    uint64_t h = tc__key_hash(key, klen);
    tc__local_invalidate(ctx->local, h);
    /* A tc_get_or_set in this process may be waiting for another process to load key:
     * this message may be that load's write, so wake it to re-read Redis now. One atomic
     * load when nothing is in flight. */
    tc__flights_notify(ctx->flights, h, key, klen);
    TC_COUNT(tc__type_counters(ctx->types, tc__type_of(ctx->types, key, klen)), inval_received);
}

bool tc__subscriber_apply(const tc_sub_ctx *ctx, const char *payload, size_t len)
{
    tc_inval m;
    if (ctx->seqs && atomic_exchange(&ctx->seqs->drop_next, false))
        return true; /* a test's lost message */
    if (!tc__inval_parse(payload, len, &m)) {
        TC_COUNT(ctx->counters, inval_malformed);
        return false;
    }
    if (ctx->seqs && m.op == TC_INVAL_FLUSH) {
        /* tc_clear removed the sequences' hash too: a new generation follows. */
        pthread_mutex_lock(&ctx->seqs->mu);
        seqs_forget_locked(ctx->seqs);
        pthread_mutex_unlock(&ctx->seqs->mu);
    } else if (ctx->seqs && m.sequenced) {
        apply_seqs(ctx, &m); /* own messages and other versions' too: they bump groups */
    } else if (ctx->seqs && m.origin != ctx->origin) {
        atomic_store(&ctx->seqs->legacy_ns, tc__now_ns());
    }
    if (m.op == TC_INVAL_FLUSH) {
        TC_COUNT(ctx->counters, inval_received);
        if (m.origin != ctx->origin) {
            tc__local_flush(ctx->local);
            TC_COUNT(ctx->counters, full_flushes);
        }
        return true;
    }
    if (m.origin == ctx->origin || m.version != ctx->version)
        return true; /* well formed, not for us: counted nowhere */
    const char *key;
    size_t klen;
    while (tc__inval_next_key(&m, &key, &klen))
        invalidate_key(ctx, key, klen);
    return true;
}

/* A tracking message's payload: an array of full Redis keys, or nil for a flush. */
static void apply_tracking(const tc_sub_ctx *ctx, const redisReply *keys)
{
    if (keys->type == REDIS_REPLY_NIL) {
        TC_COUNT(ctx->counters, inval_received);
        tc__local_flush(ctx->local);
        TC_COUNT(ctx->counters, full_flushes);
        return;
    }
    if (keys->type != REDIS_REPLY_ARRAY) {
        TC_COUNT(ctx->counters, inval_malformed);
        tc__local_flush(ctx->local); /* unknown content: the safe answer */
        TC_COUNT(ctx->counters, full_flushes);
        return;
    }
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING)
            continue;
        /* Another client may write any bytes under our prefix; a name that breaks the
         * key rules is no key of ours and cannot be in the local tier. */
        if ((size_t)k->len > ctx->rprefix_len &&
            memcmp(k->str, ctx->rprefix, ctx->rprefix_len) == 0 &&
            tc__key_bytes_valid(k->str + ctx->rprefix_len, (size_t)k->len - ctx->rprefix_len))
            invalidate_key(ctx, k->str + ctx->rprefix_len, (size_t)k->len - ctx->rprefix_len);
    }
}

/* ------------------------------------------------------------------ the subscriber */

static bool reply_is_str(const redisReply *r, const char *s)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
           (size_t)r->len == strlen(s) && strncasecmp(r->str, s, (size_t)r->len) == 0;
}

/* What a reply in subscribed mode means for the loop. */
typedef enum sub_event { EV_NONE, EV_PONG, EV_SUBSCRIBED } sub_event;

/* The answer to a PING on a subscribed connection: ["pong", ""]. */
static bool is_pong(const redisReply *r)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements >= 1 && reply_is_str(r->element[0], "pong");
}

static sub_event handle_reply(tc_subscriber *cs, const redisReply *r)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1)
        return EV_NONE;
    const redisReply *kind = r->element[0];
    if (is_pong(r))
        return EV_PONG;
    if (reply_is_str(kind, "subscribe"))
        return EV_SUBSCRIBED;
    if (!reply_is_str(kind, "message") || r->elements != 3)
        return EV_NONE;
    const redisReply *payload = r->element[2];
    if (ctx->mode != TC_COHERENCE_BROADCAST) {
        apply_tracking(ctx, payload);
    } else if (payload->type == REDIS_REPLY_STRING) {
        tc__subscriber_apply(ctx, payload->str, (size_t)payload->len);
    } else {
        TC_COUNT(ctx->counters, inval_malformed);
    }
    return EV_NONE;
}

static void set_start_state(tc_subscriber *cs, int state)
{
    pthread_mutex_lock(&cs->start_mu);
    if (cs->start_state == 0) {
        cs->start_state = state;
        pthread_cond_broadcast(&cs->start_cv);
    }
    pthread_mutex_unlock(&cs->start_mu);
}

/* Runs one command on ctx and checks for an error reply; *out (may be NULL) gets the
 * reply. */
static tc_status run(tc_conn *c, redisReply **out, int argc, const char **argv)
{
    redisReply *r = NULL;
    tc_status st = tc__conn_command(c, argc, argv, NULL, &r);
    if (st != TC_OK || !r)
        return st == TC_OK ? TC_ERR_IO : st; /* never TC_OK without a reply */
    st = r->type == REDIS_REPLY_ERROR ? TC_ERR_PROTO : TC_OK;
    if (out && st == TC_OK)
        *out = r;
    else
        freeReplyObject(r);
    return st;
}

/* One subscription: the subscribed connection and, in tracking mode, the connection whose
 * tracking redirects to it (on the same server: a redirect cannot cross servers). Broadcast
 * mode needs one link (PUBLISH crosses a whole cluster); tracking mode one per master. */
typedef struct sub_link {
    tc_conn *sub;
    tc_conn *tracker; /* tracking: the tracker; targeted on a cluster, link 0: a plain
                         connection for CLUSTER SLOTS (masters_unchanged) */
    long long id;     /* targeted: sub's client id */
    int64_t last_pong, ping_sent;
    int64_t last_reply; /* when the link last delivered anything (a message, a pong) */
    bool subscribed;
    char run_id[RUN_ID_MAX]; /* broadcast with sequences: the server's run_id (INFO before
                                SUBSCRIBE) */
} sub_link;

/* A subscriber connection to server, or (NULL) to any node of the handle's Redis. */
static tc_status server_connect(const tc_sub_ctx *ctx, tc_node *server, tc_conn **out)
{
    return server ? tc__node_connect(server, ctx->command_timeout_ms, out)
                  : tc__remote_connect(ctx->remote, ctx->command_timeout_ms, out);
}

/* The link's client id (CLIENT ID on its subscriber connection). */
static tc_status client_id(sub_link *l)
{
    redisReply *r = NULL;
    const char *id_argv[] = {"CLIENT", "ID"};
    tc_status st = run(l->sub, &r, 2, id_argv);
    if (st != TC_OK)
        return st;
    l->id = r->type == REDIS_REPLY_INTEGER && r->integer > 0 ? r->integer : 0;
    freeReplyObject(r);
    return l->id > 0 ? TC_OK : TC_ERR_PROTO;
}

/* Tracking mode: learns the subscriber's client id and makes a new tracker connection to
 * the same server redirect Redis's invalidations for our prefix to it. */
static tc_status tracking_setup(tc_subscriber *cs, tc_node *server, sub_link *l)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    tc_status st = client_id(l);
    if (st != TC_OK)
        return st;
    char id[32];
    snprintf(id, sizeof id, "%lld", l->id);
    st = server_connect(ctx, server, &l->tracker);
    if (st != TC_OK)
        return st;
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s:", ctx->key_prefix);
    const char *argv[] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id, "BCAST", "PREFIX", prefix};
    st = run(l->tracker, NULL, 8, argv);
    if (st != TC_OK)
        tc__log(&ctx->log, TC_LOG_ERROR, "CLIENT TRACKING refused (Redis >= 6 needed)");
    return st;
}

/* Tracking mode heartbeat: the redirect must still point at a live subscriber. */
static bool tracker_healthy(tc_conn *tracker)
{
    const char *argv[] = {"CLIENT", "TRACKINGINFO"};
    redisReply *r = NULL;
    if (run(tracker, &r, 2, argv) != TC_OK)
        return false;
    bool ok = tc__reply_tracking_ok(r);
    freeReplyObject(r);
    return ok;
}

/* Appends argv and writes it all (blocking within the socket's timeouts). */
static bool send_command(tc_conn *c, int argc, const char **argv)
{
    return tc__conn_send(c, argc, argv, NULL) == REDIS_OK;
}

static bool send_ping(tc_conn *c)
{
    const char *argv[] = {"PING"};
    return send_command(c, 1, argv);
}

/* The INFO server reply sent before SUBSCRIBE: keeps its run_id (changed by every restart
 * and on a replica promoted by a failover). */
static void note_run_id(sub_link *l, const redisReply *r)
{
    (void)run_id_of(r, l->run_id);
}

/* Reads and applies every complete reply in the link's buffer. False if the stream is
 * broken. */
static bool drain(tc_subscriber *cs, sub_link *l)
{
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(l->sub->ctx, &reply) != REDIS_OK)
            return false;
        if (!reply)
            return true;
        l->last_reply = tc__now_ns();
        if (!l->subscribed)
            note_run_id(l, reply);
        sub_event ev = handle_reply(cs, reply);
        if (ev == EV_PONG)
            l->last_pong = tc__now_ns();
        if (ev == EV_SUBSCRIBED)
            l->subscribed = true;
        freeReplyObject(reply);
    }
}

/* The heartbeat of one link at time now: declares it dead (false) when a ping has gone
 * unanswered for a beat or its tracking redirect broke; sends the next ping when due.
 * *next gets the time it wants to be looked at again. */
/* Reads and applies what waits on the link's socket, until the pong of the ping in flight
 * comes or nothing more is there. A backlog of messages ahead of the pong (a burst of
 * writes, a subscriber slower than its publishers) is a link that works: Redis answers a
 * PING after the messages queued before it. False if the link broke meanwhile. */
static bool catch_up(tc_subscriber *cs, sub_link *l)
{
    struct pollfd p = {.fd = tc__conn_fd(l->sub), .events = POLLIN};
    while (l->ping_sent > l->last_pong && !atomic_load(&cs->stopping) && poll(&p, 1, 0) > 0) {
        if (tc__conn_read(l->sub) != REDIS_OK || !drain(cs, l))
            return false;
    }
    return true;
}

static bool link_beat(tc_subscriber *cs, sub_link *l, int64_t now, int64_t *next)
{
    const int64_t beat = (int64_t)cs->ctx.heartbeat_ms * 1000000;
    bool outstanding = l->ping_sent > l->last_pong;
    if (outstanding && now - l->ping_sent > beat) {
        if (!catch_up(cs, l))
            return false;
        outstanding = l->ping_sent > l->last_pong;
    }
    /* Dead: the ping unanswered for a beat, and the link silent for a beat. A link that
     * keeps delivering messages is alive even while its pong waits behind them (Redis
     * slowed by the burst it is sending). */
    int64_t heard = l->last_reply > l->ping_sent ? l->last_reply : l->ping_sent;
    if (outstanding && now - heard > beat) {
        tc__log(&cs->ctx.log, TC_LOG_WARN, "invalidation link: heartbeat missed");
        return false;
    }
    if (l->subscribed && !outstanding && now - l->last_pong >= beat) {
        if (cs->ctx.mode == TC_COHERENCE_TRACKING && !tracker_healthy(l->tracker)) {
            tc__log(&cs->ctx.log, TC_LOG_WARN, "tracking redirect broken");
            return false;
        }
        if (!send_ping(l->sub))
            return false;
        l->ping_sent = tc__now_ns();
        heard = l->ping_sent;
        outstanding = true;
    }
    *next = outstanding ? heard + beat : l->last_pong + beat;
    return true;
}

static bool all_subscribed(const sub_link *ls, int n)
{
    for (int i = 0; i < n; i++)
        if (!ls[i].subscribed)
            return false;
    return true;
}

/* Sentinel: opens the watch unless it is open (it outlives sessions: a switch announced
 * between two sessions waits in its buffer and is seen by the next one). */
static void watch_open(tc_subscriber *cs)
{
    if (cs->watch || !tc__remote_is_sentinel(cs->ctx.remote))
        return;
    tc_status st = tc__remote_sentinel_watch(cs->ctx.remote, cs->ctx.command_timeout_ms,
                                             &cs->watch);
    fd_note(cs, WATCH_FD, cs->watch);
    if (st != TC_OK)
        tc__log(&cs->ctx.log, TC_LOG_WARN, "cannot watch the sentinels for failovers (%s)",
                tc__strerror(st));
    cs->watch_pong = tc__now_ns();
    cs->watch_ping = 0;
}

static void watch_close(tc_subscriber *cs)
{
    fd_note(cs, WATCH_FD, NULL);
    tc__conn_free(cs->watch);
    cs->watch = NULL;
}

/* Applies what the watch holds, reading its socket first when read_socket (else only what
 * is already buffered: a switch may have come in with the subscription's confirmation).
 * True if the master moved: the caller ends the session and resubscribes on the new master,
 * which flushes the local tier. A watch that broke is closed (reopened by the next
 * session). */
static bool watch_switched(tc_subscriber *cs, bool read_socket)
{
    if (!cs->watch)
        return false;
    bool ok = !read_socket || tc__conn_read(cs->watch) == REDIS_OK, switched = false;
    while (ok) {
        void *reply = NULL;
        ok = redisGetReplyFromReader(cs->watch->ctx, &reply) == REDIS_OK;
        if (!ok || !reply)
            break;
        if (is_pong(reply))
            cs->watch_pong = tc__now_ns();
        switched = tc__remote_sentinel_switched(cs->ctx.remote, reply) || switched;
        freeReplyObject(reply);
    }
    if (switched)
        tc__log(&cs->ctx.log, TC_LOG_WARN, "Sentinel announced a new master: resubscribing");
    if (!ok) {
        tc__log(&cs->ctx.log, TC_LOG_WARN, "lost the connection to the sentinel");
        watch_close(cs);
    }
    return switched;
}

/* The watch's heartbeat at time now, as link_beat's: a watch whose sentinel stopped
 * answering (a crashed host leaves the connection half open) would miss the next failover
 * for good, and the session with it the writes to the new master. So a ping unanswered for
 * a beat closes the watch and ends the session (false): the next one opens a watch on a
 * sentinel that answers, if one does then (else it runs without one until the next
 * session), and asks the sentinels which master to follow. */
static bool watch_beat(tc_subscriber *cs, int64_t now, int64_t *next)
{
    *next = INT64_MAX;
    if (!cs->watch)
        return true;
    const int64_t beat = (int64_t)cs->ctx.heartbeat_ms * 1000000;
    bool outstanding = cs->watch_ping > cs->watch_pong;
    if (outstanding && now - cs->watch_ping > beat) {
        /* The loop looks at the time before it polls: read a pong that is waiting first. */
        struct pollfd p = {.fd = tc__conn_fd(cs->watch), .events = POLLIN};
        if (poll(&p, 1, 0) > 0 && (watch_switched(cs, true) || !cs->watch))
            return false; /* the master moved, or the watch broke */
        if (cs->watch_ping > cs->watch_pong) {
            tc__log(&cs->ctx.log, TC_LOG_WARN,
                    "the sentinel watched for failovers stopped answering");
            watch_close(cs);
            return false;
        }
        outstanding = false;
    }
    if (!outstanding && now - cs->watch_pong >= beat) {
        if (!send_ping(cs->watch)) {
            watch_close(cs);
            return false;
        }
        cs->watch_ping = tc__now_ns();
        outstanding = true;
    }
    *next = outstanding ? cs->watch_ping + beat : cs->watch_pong + beat;
    return true;
}

/* Tracking on a cluster: whether CLUSTER SLOTS, asked on the first link's tracker, still
 * names exactly the session's masters (a new master's writes would go unheard). Asked on a
 * live connection of the session, so a dead node's connect can never stall this thread
 * while it applies invalidations. */
/* What a CLUSTER SLOTS walk needs: the session's masters and which of them it named. */
typedef struct masters_walk {
    tc_node **servers;
    int n;
    bool seen[TC_SUB_LINKS_MAX];
} masters_walk;

/* The index among servers[0..n) of the master a CLUSTER SLOTS range names, or -1. No host
 * stands for the server asked: servers[0]. */
static int master_index(tc_node *const *servers, int n, const char *host, size_t hlen, int port)
{
    for (int j = 0; j < n; j++) {
        const char *h;
        int p;
        tc__node_addr(servers[j], &h, &p);
        bool same_host = !host ? j == 0 : strlen(h) == hlen && memcmp(h, host, hlen) == 0;
        if (same_host && p == port)
            return j;
    }
    return -1;
}

static bool note_master(void *arg, int lo, int hi, const char *host, size_t hlen, int port)
{
    (void)lo;
    (void)hi;
    masters_walk *w = arg;
    int j = master_index(w->servers, w->n, host, hlen, port);
    if (j >= 0)
        w->seen[j] = true;
    return j >= 0; /* else a master the session does not cover */
}

static bool masters_unchanged(tc_subscriber *cs, const sub_link *ls, tc_node **servers, int n)
{
    redisReply *r = NULL;
    const char *argv[] = {"CLUSTER", "SLOTS"};
    if (run(ls[0].tracker, &r, 2, argv) != TC_OK)
        return false;
    masters_walk w = {servers, n, {false}};
    bool ok = tc__reply_cluster_slots(r, note_master, &w) == TC_OK;
    for (int j = 0; ok && j < n; j++)
        ok = w.seen[j];
    freeReplyObject(r);
    if (!ok)
        tc__log(&cs->ctx.log, TC_LOG_WARN, "the cluster's masters changed: resubscribing");
    return ok;
}

/* ------------------------------------------------------------------ recovery on a cluster */

/* What a reconciliation on a cluster read: the masters (their run_ids) and, per slot, its
 * master and whether its sequences' key exists, with its generation and sequence. */
typedef struct slot_fetch {
    tc_node *masters[TC_SUB_LINKS_MAX];
    int nmasters;
    char runs[TC_SUB_LINKS_MAX][RUN_ID_MAX];
    int8_t owner[TC_INVAL_SLOTS]; /* index into masters, -1: no master named */
    bool present[TC_INVAL_SLOTS];
    uint64_t gen[TC_INVAL_SLOTS], seq[TC_INVAL_SLOTS];
} slot_fetch;

static bool note_owner(void *arg, int lo, int hi, const char *host, size_t hlen, int port)
{
    slot_fetch *f = arg;
    int j = master_index(f->masters, f->nmasters, host, hlen, port);
    for (int sl = lo; j >= 0 && sl <= hi; sl++)
        f->owner[sl] = (int8_t)j;
    return j >= 0; /* else a master the router does not know: the map moved */
}

/* The reply to HMGET <slot's key> gen <slot>: [nil, nil] when the slot has no sequences
 * yet, else its generation and sequence (nil: 0). */
static bool take_slot(slot_fetch *f, unsigned sl, const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
        return false;
    const redisReply *g = r->element[0], *q = r->element[1];
    f->present[sl] = g->type != REDIS_REPLY_NIL;
    f->seq[sl] = 0;
    if (!f->present[sl])
        return q->type == REDIS_REPLY_NIL;
    return g->type == REDIS_REPLY_STRING &&
           tc__inval_parse_gen(g->str, (size_t)g->len, &f->gen[sl]) &&
           (q->type == REDIS_REPLY_NIL ||
            (q->type == REDIS_REPLY_STRING && parse_u64(q->str, (size_t)q->len, &f->seq[sl])));
}

/* Asks master j, in one pipelined round trip on c, for its run_id and the sequences of every
 * slot it serves. A slot that moved since CLUSTER SLOTS answers MOVED or ASK: false. */
static bool fetch_master(const tc_sub_ctx *ctx, slot_fetch *f, int j, tc_conn *c)
{
    const char *info[] = {"INFO", "server"};
    bool ok = tc__conn_append(c, 2, info, NULL) == REDIS_OK;
    size_t blen = strlen(ctx->seq_key);
    char key[1100 + TC_SLOT_KEY_EXTRA];
    if (blen > 1100)
        return false; /* the key_prefix rule keeps it shorter */
    for (unsigned sl = 0; ok && sl < TC_INVAL_SLOTS; sl++) {
        if (f->owner[sl] != j)
            continue;
        char field[8];
        size_t kl = tc__slot_key(key, ctx->seq_key, blen, sl);
        int fl = snprintf(field, sizeof field, "%u", sl);
        const char *argv[] = {"HMGET", key, "gen", field};
        const size_t lens[] = {5, kl, 3, (size_t)fl};
        ok = tc__conn_append(c, 4, argv, lens) == REDIS_OK;
    }
    ok = ok && tc__conn_flush(c) == REDIS_OK;
    redisReply *r = NULL;
    ok = ok && tc__conn_get_reply(c, &r) == TC_OK && run_id_of(r, f->runs[j]);
    for (unsigned sl = 0; ok && sl < TC_INVAL_SLOTS; sl++) {
        if (f->owner[sl] != j)
            continue;
        if (r)
            freeReplyObject(r);
        r = NULL;
        ok = tc__conn_get_reply(c, &r) == TC_OK && take_slot(f, sl, r);
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

/* Reads what a reconciliation on a cluster compares: the slot map (CLUSTER SLOTS, asked of
 * the first master after the router reloaded its map), then one round trip per master. */
static bool fetch_slots(const tc_sub_ctx *ctx, slot_fetch *f)
{
    (void)tc__remote_refresh_map(ctx->remote); /* on failure the map we have is used */
    f->nmasters = tc__remote_masters(ctx->remote, f->masters, TC_SUB_LINKS_MAX);
    if (f->nmasters <= 0)
        return false;
    memset(f->owner, -1, sizeof f->owner);
    bool ok = true;
    for (int j = 0; ok && j < f->nmasters; j++) {
        tc_conn *c = NULL;
        ok = tc__node_connect(f->masters[j], ctx->command_timeout_ms, &c) == TC_OK;
        if (ok && j == 0) {
            redisReply *r = NULL;
            const char *argv[] = {"CLUSTER", "SLOTS"};
            ok = run(c, &r, 2, argv) == TC_OK && tc__reply_cluster_slots(r, note_owner, f) == TC_OK;
            if (r)
                freeReplyObject(r);
            for (unsigned sl = 0; ok && sl < TC_INVAL_SLOTS; sl++)
                ok = f->owner[sl] >= 0; /* a slot no master serves: its writes unknown */
        }
        ok = ok && fetch_master(ctx, f, j, c);
        tc__conn_free(c);
    }
    return ok;
}

/* Whether slot sl can be kept: its generation and sequence go on from what was applied. A
 * slot that had no sequences may have them now (it is dropped if so). */
static bool slot_keepable(const tc_seqs *s, const slot_fetch *f, unsigned sl)
{
    if (!s->slot_gen_known[sl])
        return s->last[sl] == 0;
    return f->present[sl] && f->gen[sl] == s->slot_gen[sl] && s->last[sl] != SEQ_UNKNOWN &&
           f->seq[sl] >= s->last[sl];
}

/* The same masters, by run_id, as at the last reconciliation: none restarted or replaced
 * by a failover, none added. Slots may have moved between them (see coherence.md). */
static bool same_masters(const tc_seqs *s, const slot_fetch *f)
{
    if (s->nruns != f->nmasters)
        return false;
    for (int j = 0; j < f->nmasters; j++) {
        bool found = false;
        for (int k = 0; k < s->nruns && !found; k++)
            found = strcmp(f->runs[j], s->runs[k]) == 0;
        if (!found)
            return false;
    }
    return true;
}

/* Drops the local group of every slot whose sequence moved while the link was down. */
static void drop_moved_slots(const tc_sub_ctx *ctx, const tc_seqs *s, const slot_fetch *f)
{
    bool dropped[TC_LOCAL_GROUPS] = {false};
    for (unsigned sl = 0; sl < TC_INVAL_SLOTS; sl++) {
        bool moved = s->slot_gen_known[sl] ? f->seq[sl] != s->last[sl] : f->present[sl];
        unsigned g = local_group(s, sl);
        if (moved && !dropped[g]) {
            tc__local_drop_group(ctx->local, g);
            dropped[g] = true;
        }
    }
}

static void remember_slots(tc_seqs *s, const slot_fetch *f)
{
    for (unsigned sl = 0; sl < TC_INVAL_SLOTS; sl++) {
        s->last[sl] = f->present[sl] ? f->seq[sl] : 0;
        s->slot_gen[sl] = f->gen[sl];
        s->slot_gen_known[sl] = f->present[sl];
    }
    memcpy(s->runs, f->runs, sizeof f->runs[0] * (size_t)f->nmasters);
    s->nruns = f->nmasters;
    s->gen_known = true;
}

/* reconcile on a cluster: every master answers, the masters are the same processes, and
 * every slot's generation and sequence go on from what was applied. Then the slots that
 * moved are dropped (their local groups) and the rest is kept (true); otherwise the whole
 * tier is flushed (false). */
static bool reconcile_slots(tc_subscriber *cs)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    tc_seqs *s = ctx->seqs;
    slot_fetch *f = tc__calloc(1, sizeof *f);
    bool ok = f && fetch_slots(ctx, f);
    pthread_mutex_lock(&s->mu);
    bool keep = ok && s->gen_known && !atomic_load(&s->full_flush) && legacy_quiet(s) &&
                same_masters(s, f);
    for (unsigned sl = 0; keep && sl < TC_INVAL_SLOTS; sl++)
        keep = slot_keepable(s, f, sl);
    if (keep)
        drop_moved_slots(ctx, s, f);
    else
        tc__local_flush(ctx->local);
    if (ok)
        remember_slots(s, f);
    else
        seqs_forget_locked(s);
    pthread_mutex_unlock(&s->mu);
    tc__free(f);
    if (!ok)
        tc__log(&ctx->log, TC_LOG_WARN,
                "could not read every slot's sequences: local tier flushed");
    return keep;
}

/* The subscribed loop: returns when a link fails, the set of masters a tracking session on
 * a cluster covers changes (check_masters), the sentinels announce a new master, or the
 * cache stops. */
static void listen_loop(tc_subscriber *cs, sub_link *ls, tc_node **servers, int n,
                        bool check_masters)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    bool healthy = false;
    const int64_t sub_deadline = tc__deadline_after_ms(ctx->command_timeout_ms +
                                                       ctx->connect_timeout_ms);
    const int64_t beat = (int64_t)cs->ctx.heartbeat_ms * 1000000;
    struct pollfd fds[TC_SUB_LINKS_MAX + 2];
    int64_t next_masters_check = 0;
    for (int i = 0; i < n; i++)
        ls[i].last_pong = tc__now_ns();
    if (watch_switched(cs, false))
        return;
    while (!atomic_load(&cs->stopping)) {
        int64_t now = tc__now_ns(), next = INT64_MAX;
        if (!healthy && now > sub_deadline)
            return;
        for (int i = 0; i < n; i++) {
            int64_t t;
            if (!link_beat(cs, &ls[i], now, &t))
                return;
            next = t < next ? t : next;
        }
        int64_t tw = INT64_MAX;
        if (healthy && !watch_beat(cs, now, &tw))
            return;
        next = tw < next ? tw : next;
        if (check_masters && healthy && now >= next_masters_check) {
            if (!masters_unchanged(cs, ls, servers, n))
                return;
            next_masters_check = now + beat;
        }
        if (check_masters && next_masters_check < next)
            next = next_masters_check;
        int wait_ms = (int)((next - now) / 1000000) + 1;
        for (int i = 0; i < n; i++)
            fds[i] = (struct pollfd){.fd = tc__conn_fd(ls[i].sub), .events = POLLIN};
        fds[n] = (struct pollfd){.fd = cs->wake[0], .events = POLLIN};
        fds[n + 1] = (struct pollfd){.fd = cs->watch ? tc__conn_fd(cs->watch) : -1,
                                     .events = POLLIN};
        int ready = poll(fds, (nfds_t)n + 2, wait_ms < 1 ? 1 : wait_ms);
        if (ready < 0 && errno != EINTR)
            return;
        if (ready == 0)
            tc__reclaim_now(); /* idle: free what this thread's invalidations retired */
        if (ready <= 0)
            continue;
        if (fds[n].revents)
            return;
        for (int i = 0; i < n; i++)
            if (fds[i].revents && (tc__conn_read(ls[i].sub) != REDIS_OK || !drain(cs, &ls[i])))
                return;
        if (fds[n + 1].revents && watch_switched(cs, true))
            return;
        if (!healthy && all_subscribed(ls, n)) {
            /* Targeted: the pool may now read for the tier through these links; reads
             * tracked to an id set here but begun before the flush below are refused by
             * their fill-guard tickets. */
            for (int i = 0; ctx->mode == TC_COHERENCE_TARGETED && i < n; i++)
                tc__node_set_link(servers[i], ls[i].id);
            /* Messages from before this point are lost: forget everything first, or with
             * sequences what changed. (The first session's flush empties a tier that was
             * never trusted: not counted.) */
            bool kept = false;
            if (ctx->seqs && ctx->seqs->by_slot)
                kept = reconcile_slots(cs);
            else if (ctx->seqs)
                kept = reconcile(cs, ls[0].run_id);
            else
                tc__local_flush(ctx->local);
            if (cs->sessions > 1 && kept)
                TC_COUNT(ctx->counters, reconciles);
            else if (cs->sessions > 1)
                TC_COUNT(ctx->counters, full_flushes);
            atomic_store(cs->ctx.healthy, true);
            set_start_state(cs, 1);
            healthy = true;
            for (int i = 0; i < n; i++)
                ls[i].last_pong = tc__now_ns();
        }
    }
}

/* Connects and subscribes one link to server; control: also a plain connection for the
 * checks of a targeted session on a cluster (the first link's). */
static tc_status link_open(tc_subscriber *cs, tc_node *server, sub_link *l, bool control)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    tc_status st = server_connect(ctx, server, &l->sub);
    if (st == TC_OK && ctx->mode == TC_COHERENCE_TRACKING)
        st = tracking_setup(cs, server, l);
    if (st == TC_OK && ctx->mode == TC_COHERENCE_TARGETED)
        st = client_id(l);
    if (st == TC_OK && ctx->mode == TC_COHERENCE_TARGETED && control)
        st = server_connect(ctx, server, &l->tracker);
    if (st != TC_OK)
        return st;
    const char *info[] = {"INFO", "server"};
    if (ctx->seqs && !send_command(l->sub, 2, info))
        return tc__conn_status(l->sub);
    const char *argv[] = {"SUBSCRIBE",
                          ctx->mode != TC_COHERENCE_BROADCAST ? TRACKING_CHANNEL : ctx->channel};
    if (!send_command(l->sub, 2, argv))
        return tc__conn_status(l->sub);
    return TC_OK;
}

static void link_close(sub_link *l)
{
    if (l->tracker)
        tc__conn_free(l->tracker);
    if (l->sub)
        tc__conn_free(l->sub);
    memset(l, 0, sizeof *l);
}

/* The servers a session subscribes to. Broadcast mode on a cluster: any node (PUBLISH
 * crosses the cluster), one link. Tracking on a cluster: every master, the map reloaded
 * first after a failed session (the masters may be what changed). Sentinel: the master the
 * sentinels name now, so that a tracker and its subscriber are on the same server. The
 * count, or <= 0 with *st set. */
static int session_servers(tc_subscriber *cs, tc_node **servers, tc_status *st)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    bool cluster = tc__remote_is_cluster(ctx->remote);
    if (cluster && ctx->mode == TC_COHERENCE_BROADCAST) {
        servers[0] = NULL; /* any node: server_connect asks the cluster */
        return 1;
    }
    if (cluster && cs->sessions > 1)
        (void)tc__remote_refresh_map(ctx->remote); /* on failure the map we have is used */
    int n = tc__remote_masters(ctx->remote, servers, TC_SUB_LINKS_MAX);
    if (n < 0)
        tc__log(&ctx->log, TC_LOG_ERROR, "tracking modes follow at most %d masters",
                TC_SUB_LINKS_MAX);
    if (n <= 0)
        *st = n < 0 ? TC_ERR_ARG : TC_ERR_NOMEM;
    return n;
}

/* One session: connect and subscribe every link, listen until one fails. */
static tc_status session(tc_subscriber *cs)
{
    const tc_sub_ctx *ctx = &cs->ctx;
    tc_node *servers[TC_SUB_LINKS_MAX];
    sub_link ls[TC_SUB_LINKS_MAX];
    tc_status st = TC_OK;
    cs->sessions++;
    /* The watch first: a switch announced after the sentinels were asked is then seen. */
    watch_open(cs);
    int n = session_servers(cs, servers, &st);
    memset(ls, 0, sizeof ls);
    bool per_master = ctx->mode != TC_COHERENCE_BROADCAST && tc__remote_is_cluster(ctx->remote);
    for (int i = 0; i < n && st == TC_OK; i++)
        st = link_open(cs, servers[i], &ls[i], per_master && i == 0);
    for (int i = 0; i < n; i++) {
        fd_note(cs, 2 * i, ls[i].sub);
        fd_note(cs, 2 * i + 1, ls[i].tracker);
    }
    if (st == TC_OK)
        listen_loop(cs, ls, servers, n, per_master);
    /* Targeted: no read fills the tier through these links from now on. */
    for (int i = 0; ctx->mode == TC_COHERENCE_TARGETED && i < n; i++)
        tc__node_set_link(servers[i], 0);
    atomic_store(cs->ctx.healthy, false);
    for (int i = 0; i < n; i++) {
        fd_note(cs, 2 * i, NULL);
        fd_note(cs, 2 * i + 1, NULL);
        link_close(&ls[i]);
    }
    return st;
}

/* Waits ms milliseconds or until woken by stop. True if stopping. */
static bool wait_or_stop(tc_subscriber *cs, int ms)
{
    struct pollfd p = {.fd = cs->wake[0], .events = POLLIN};
    int n = poll(&p, 1, ms);
    return n > 0 || atomic_load(&cs->stopping);
}

static void *subscriber_main(void *arg)
{
    tc_subscriber *cs = arg;
    int backoff = BACKOFF_MIN_MS;
    while (!atomic_load(&cs->stopping)) {
        int64_t began = tc__now_ns();
        tc_status st = session(cs);
        if (atomic_load(&cs->stopping))
            break;
        TC_COUNT(cs->ctx.counters, link_failures);
        if (st != TC_OK)
            set_start_state(cs, st);
        else
            set_start_state(cs, TC_ERR_TIMEOUT);
        /* A link that stayed up a while is retried at once: every read bypasses the local
         * tier until it is back, so a wait is a read spike on Redis (tc-bench recovery: a
         * 50 ms wait was 2.3x the steady GET rate). A flapping one backs off. */
        bool at_once = tc__now_ns() - began > (int64_t)BACKOFF_MAX_MS * 1000000;
        if (at_once) {
            backoff = BACKOFF_MIN_MS;
            tc__log(&cs->ctx.log, TC_LOG_WARN,
                    "invalidation link down (%s); local tier bypassed; reconnecting at once",
                    tc__strerror(st));
        } else {
            tc__log(&cs->ctx.log, TC_LOG_WARN,
                    "invalidation link down (%s); local tier bypassed; reconnecting in %d ms",
                    tc__strerror(st), backoff);
        }
        bool stop = false;
        while (!stop && atomic_load(&cs->test_hold))
            stop = wait_or_stop(cs, 2);
        if (stop || (!at_once && wait_or_stop(cs, backoff)))
            break;
        if (!at_once)
            backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
    atomic_store(cs->ctx.healthy, false);
    if (cs->watch)
        watch_close(cs);
    return NULL;
}

static void state_free(tc_subscriber *cs)
{
    if (cs->wake[0] >= 0)
        close(cs->wake[0]);
    if (cs->wake[1] >= 0)
        close(cs->wake[1]);
    pthread_mutex_destroy(&cs->start_mu);
    pthread_cond_destroy(&cs->start_cv);
    tc__free(cs);
}

/* How long tc_open waits for the first subscription: what the connections it needs may
 * take, one after the other. One link: a connect and two commands (tracking: two of each).
 * Tracking on a cluster: a link per master. Sentinel: the watch's connect and subscribe. */
/* The masters a cluster's map names now (at least 1). */
static int masters_count(const tc_sub_ctx *ctx)
{
    tc_node *servers[TC_SUB_LINKS_MAX];
    int n = tc__remote_masters(ctx->remote, servers, TC_SUB_LINKS_MAX);
    return n > 1 ? n : 1;
}

static int startup_budget_ms(const tc_sub_ctx *ctx)
{
    bool tracking = ctx->mode != TC_COHERENCE_BROADCAST; /* targeted: as many round trips */
    int link = tracking ? 2 * (ctx->connect_timeout_ms + ctx->command_timeout_ms)
                        : ctx->connect_timeout_ms + 2 * ctx->command_timeout_ms;
    int links = 1;
    if (tracking && tc__remote_is_cluster(ctx->remote))
        links = masters_count(ctx);
    /* Recovery on a cluster: the map's reload and CLUSTER SLOTS, then a connect and a round
     * trip per master (reconcile_slots). */
    if (ctx->seqs && ctx->seqs->by_slot)
        link += 2 * ctx->command_timeout_ms +
                masters_count(ctx) * (ctx->connect_timeout_ms + ctx->command_timeout_ms);
    int watch = tc__remote_is_sentinel(ctx->remote)
                    ? ctx->connect_timeout_ms + ctx->command_timeout_ms
                    : 0;
    return link * links + watch;
}

static tc_status wait_started(tc_subscriber *cs)
{
    struct timespec ts;
    tc__deadline_to_timespec(tc__deadline_after_ms(startup_budget_ms(&cs->ctx)), &ts);
    pthread_mutex_lock(&cs->start_mu);
    while (cs->start_state == 0)
        if (pthread_cond_timedwait(&cs->start_cv, &cs->start_mu, &ts) == ETIMEDOUT)
            break;
    int state = cs->start_state;
    pthread_mutex_unlock(&cs->start_mu);
    return state == 1 ? TC_OK : state < 0 ? (tc_status)state : TC_ERR_TIMEOUT;
}

tc_status tc__subscriber_start(const tc_sub_ctx *ctx, tc_subscriber **out)
{
    *out = NULL;
    tc_subscriber *cs = tc__calloc(1, sizeof *cs);
    if (!cs)
        return TC_ERR_NOMEM;
    cs->ctx = *ctx;
    cs->wake[0] = cs->wake[1] = -1;
    for (int i = 0; i <= WATCH_FD; i++)
        atomic_init(&cs->fds[i], -1);
    atomic_init(&cs->test_hold, false);
    atomic_store(ctx->healthy, false);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cs->start_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&cs->start_mu, NULL);
    if (pipe2(cs->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        state_free(cs);
        return TC_ERR_IO;
    }
    /* The thread starts with every signal blocked: process signals belong to the
     * application's threads, and a SIGPIPE from writing to a connection Redis has closed
     * stays pending on this thread instead of killing the process. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int created = pthread_create(&cs->thread, NULL, subscriber_main, cs);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (created != 0) {
        state_free(cs);
        return TC_ERR_NOMEM;
    }
    cs->thread_started = true;
    tc_status st = wait_started(cs);
    if (st != TC_OK) {
        tc__subscriber_stop(cs);
        return st;
    }
    *out = cs;
    return TC_OK;
}

void tc__subscriber_test_hold(tc_subscriber *cs, bool hold)
{
    if (cs)
        atomic_store(&cs->test_hold, hold);
}

void tc__subscriber_stop(tc_subscriber *cs)
{
    if (!cs)
        return;
    atomic_store(&cs->stopping, true);
    if (cs->thread_started) {
        ssize_t w = write(cs->wake[1], "x", 1);
        (void)w; /* a full pipe already wakes the thread */
        pthread_join(cs->thread, NULL);
    }
    state_free(cs);
}

void tc__subscriber_forget(tc_subscriber *cs)
{
    if (!cs)
        return;
    /* Only close(): the parent's sockets stay open in the parent, and nothing is written
     * on them (its thread still reads and writes them). The thread's connections are not
     * freed: it may have been inside hiredis on one when the fork happened, so their
     * buffers may be mid-update (a few KB, shared copy-on-write with the parent). Nor are
     * start_mu and start_cv destroyed: a thread of the parent may have held them. */
    for (int i = 0; i <= WATCH_FD; i++) {
        int fd = atomic_load(&cs->fds[i]);
        if (fd >= 0)
            close(fd);
    }
    if (cs->wake[0] >= 0)
        close(cs->wake[0]);
    if (cs->wake[1] >= 0)
        close(cs->wake[1]);
    tc__free(cs);
}
