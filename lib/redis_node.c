/*
 * One Redis server (see redis_node.h): its pool of blocking hiredis connections, the
 * connection handshake, the circuit breaker, the script SHA1 cache and the operation frame.
 *
 * Owns: its address and credentials, every pooled connection while it is idle, the
 * script SHA1 cache and the counters. A connection checked out of the pool belongs to the
 * calling thread until it gives it back; hiredis contexts are never shared between threads.
 *
 * Locks: pool_mu guards the slot count, the idle stack and the breaker; script_mu guards
 * the script cache. Both are leaf locks, never held together, never held during I/O, an
 * allocation of hiredis's or a log call. Counters are atomics.
 *
 * Invariants: 0 <= nidle <= nfree <= pool_size, and every idle context is connected, set
 * up (timeouts, AUTH, SELECT) and has no unread reply or unsent command. A context that
 * had an I/O error, a timeout or an unfinished pipeline is never pooled again: hiredis 0.14
 * cannot resynchronise a context after a read timeout (a late reply would be taken as the
 * answer to the next command) and redisReconnect drops the read timeout, so such a
 * context is freed and its slot refilled later with a brand-new one.
 *
 * Deadlines: an operation has one deadline, command_timeout_ms after it starts, shared by
 * its wait for a free slot and its round trips (redis_exch.c keeps every read and write
 * within it). A new connection made on the way takes connect_timeout_ms at most for the
 * TCP/unix connect and command_timeout_ms for the handshake, and pushes the operation's
 * deadline back by the time it took. So one operation takes at most command_timeout_ms, or
 * connect_timeout_ms + 2 x command_timeout_ms when it opens a connection; a DNS lookup of
 * a host name is the one wait outside these bounds (use an address or /etc/hosts where it
 * matters).
 *
 * Circuit breaker: a connect that fails because the server is absent or silent
 * (TC_ERR_IO, TC_ERR_TIMEOUT), or an operation whose round trip timed out on an
 * established connection (a server that accepts and even answers the handshake but not
 * the commands: a long DEBUG SLEEP, paused writes, a stuck proxy), opens it for 100 ms;
 * while open, every operation fails at once with TC_ERR_IO without touching the network.
 * When the window has passed one caller probes with its own operation; its failure
 * doubles the window (up to 2 s), and any reply from Redis (an error reply too: it proves
 * the server alive) closes the breaker. A lost connection (the server closed it) neither
 * opens nor closes it: after a restart every pooled connection fails once while the
 * server is back, and the next connect tells.
 */
#include "config.h"

#include "redis_node.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

/* Circuit breaker bounds: the first failed connect closes the door for 100 ms, each
 * further failure doubles that, up to 2 s; a successful connect resets it. */
#define BREAKER_MIN_MS 100
#define BREAKER_MAX_MS 2000

/* Arguments an EVAL/EVALSHA call can take without a heap allocation. */
#define SCRIPT_STACK_ARGS 12

/* Scripts one warm-up preloads at most. */
#define PRELOAD_MAX 8

typedef struct script_sha {
    const char *source; /* identity: the caller's pointer */
    char sha[41];
    struct script_sha *next;
} script_sha;

struct tc_node {
    tc_node_config cfg;
    tc_url url; /* TC_URL_TCP or TC_URL_UNIX; owned strings */

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* signalled when a slot is given back; CLOCK_MONOTONIC */
    tc_conn **idle;         /* idle[0..nidle): connected, set up, unused */
    int nidle;
    int nfree;              /* slots not checked out (idle or empty) */
    int breaker_backoff_ms; /* 0: closed (operations allowed) */
    int64_t breaker_until_ns;

    pthread_mutex_t script_mu;
    script_sha *scripts;

    tc_exch_counters ctr;
    atomic_uint_fast64_t errors, reconnects;
    atomic_uint_fast64_t created; /* pooled connections ever made */
    atomic_llong link_id;         /* targeted coherence: tc__node_set_link */
};

#define NLOG(node, level, ...) tc__log(&(node)->cfg.log, (level), __VA_ARGS__)

/* ------------------------------------------------------------------ connections */

/* A TLS alert that says the server refused our certificate (mutual TLS), as OpenSSL words
 * it: it arrives with the first read after a TLS 1.3 handshake. */
static bool cert_refused(const char *errstr)
{
    return strstr(errstr, "alert") &&
           (strstr(errstr, "certificate") || strstr(errstr, "unknown ca") ||
            strstr(errstr, "access denied"));
}

/* Logs why the Redis handshake's round trip failed, and what that means. */
static tc_status handshake_failed(tc_node *node, tc_conn *c, tc_status st)
{
    const char *why = c->ctx->errstr[0] ? c->ctx->errstr : "no detail";
    if (c->ssl && cert_refused(why)) {
        NLOG(node, TC_LOG_ERROR,
             "TLS: Redis refused our client certificate (%s); set "
             "tls_cert_file and tls_key_file",
             why);
        return TC_ERR_AUTH;
    }
    /* What a TLS port does with a plaintext handshake: drops it, or answers an alert. */
    char reset[128];
    bool dropped = c->ctx->err == REDIS_ERR_PROTOCOL || c->ctx->err == REDIS_ERR_EOF ||
                   strcmp(why, tc__errno_text(ECONNRESET, reset)) == 0;
    NLOG(node, TC_LOG_WARN, "Redis handshake failed: %s (%s)%s", tc__strerror(st), why,
         !c->ssl && dropped ? "; if this port speaks TLS, use a rediss:// URL" : "");
    return st;
}

/* Sends AUTH / SELECT / PING in one round trip on a fresh context and maps the first
 * failure: credentials refused or missing -> TC_ERR_AUTH, other error replies ->
 * TC_ERR_PROTO, timeouts -> TC_ERR_TIMEOUT, I/O -> TC_ERR_IO. */
static tc_status handshake(tc_node *node, tc_conn *c)
{
    tc_exch e;
    tc__ex_init(&e, c, node->cfg.command_timeout_ms, &node->ctr);
    e.node = node;
    const tc_url *u = &node->url;
    const char *argv[3];
    size_t lens[3];
    size_t n = 0;
    tc_status st = TC_OK;
    bool auth = u->password || u->user;
    if (auth) {
        /* A user without a password still authenticates (with ""), which an ACL user
         * marked nopass accepts, rather than silently connecting as the default user. */
        const char *pw = u->password ? u->password : "";
        int argc = 0;
        argv[argc] = "AUTH";
        lens[argc++] = 4;
        if (u->user) {
            argv[argc] = u->user;
            lens[argc] = strlen(u->user);
            argc++;
        }
        argv[argc] = pw;
        lens[argc++] = strlen(pw);
        st = tc__ex_send(&e, argc, argv, lens);
        n++;
    }
    char db[16];
    if (st == TC_OK && u->db != 0) {
        int dl = snprintf(db, sizeof db, "%d", u->db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = (size_t)dl;
        st = tc__ex_send(&e, 2, argv, lens);
        n++;
    }
    if (st == TC_OK) {
        argv[0] = "PING";
        lens[0] = 4;
        st = tc__ex_send(&e, 1, argv, lens);
        n++;
    }
    redisReply *rep[3] = {NULL, NULL, NULL};
    if (st == TC_OK)
        st = tc__ex_recv(&e, n, rep);
    if (st != TC_OK)
        return handshake_failed(node, c, st);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *what = i == n - 1 ? "PING" : (auth && i == 0) ? "AUTH" : "SELECT";
        if (tc__reply_is_auth_error(rep[i])) {
            NLOG(node, TC_LOG_ERROR, "Redis refused the credentials: %.*s", (int)rep[i]->len,
                 rep[i]->str);
            st = TC_ERR_AUTH;
        } else if (!tc__reply_is_status(rep[i], i == n - 1 ? "PONG" : "OK")) {
            st = tc__bad_reply(&node->cfg.log, rep[i], what);
        }
    }
    tc__replies_free(rep, n);
    if (st == TC_OK && !tc__ex_restore_timeouts(&e))
        st = TC_ERR_IO;
    return st;
}

/* A new connection set up like every pooled one: connected within connect_timeout_ms (and
 * its TLS handshake within command_timeout_ms), read and write timeouts of
 * command_timeout_ms for the Redis handshake and io_timeout_ms after it (none if <= 0),
 * TCP keepalive, then the Redis handshake. Does not touch the breaker. */
static tc_status conn_new(tc_node *node, int io_timeout_ms, tc_conn **out)
{
    *out = NULL;
    const tc_url *u = &node->url;
    tc_conn_addr a = {.host = u->kind == TC_URL_TCP ? u->host : NULL,
                      .port = u->port,
                      .path = u->path,
                      .tls = node->cfg.tls};
    tc_conn *c = NULL;
    tc_status st = tc__conn_open(&a, node->cfg.connect_timeout_ms, node->cfg.command_timeout_ms,
                                 &node->cfg.log, &c);
    if (st != TC_OK)
        return st;
    if (tc__conn_set_timeout(c, node->cfg.command_timeout_ms) != REDIS_OK ||
        (u->kind == TC_URL_TCP && redisEnableKeepAlive(c->ctx) != REDIS_OK)) {
        st = TC_ERR_IO;
        NLOG(node, TC_LOG_WARN, "cannot set up a Redis connection: %s", c->ctx->errstr);
    } else {
        st = handshake(node, c);
    }
    if (st == TC_OK && io_timeout_ms != node->cfg.command_timeout_ms &&
        tc__conn_set_timeout(c, io_timeout_ms) != REDIS_OK) {
        st = TC_ERR_IO;
        NLOG(node, TC_LOG_WARN, "cannot set the Redis timeout: %s", c->ctx->errstr);
    }
    if (st != TC_OK) {
        tc__conn_free(c);
        return st;
    }
    *out = c;
    return TC_OK;
}

/* Moves the breaker after an outcome: `alive` (Redis answered) closes it; `down` (absent
 * or silent) opens a closed breaker, or doubles the backoff when it is the probe's
 * outcome, so that operations already under way when it opened (a whole pool losing its
 * server at once) do not push it to the maximum together. Takes pool_mu; logs after. */
static void breaker_note(tc_node *node, bool alive, bool down, bool probe, const char *why)
{
    int opened = 0;
    bool closed = false;
    pthread_mutex_lock(&node->pool_mu);
    if (alive) {
        closed = node->breaker_backoff_ms != 0;
        node->breaker_backoff_ms = 0;
        node->breaker_until_ns = 0;
    } else if (down && (node->breaker_backoff_ms == 0 || probe)) {
        int b = node->breaker_backoff_ms;
        b = b == 0 ? BREAKER_MIN_MS : b >= BREAKER_MAX_MS / 2 ? BREAKER_MAX_MS : b * 2;
        node->breaker_backoff_ms = b;
        node->breaker_until_ns = tc__deadline_after_ms(b);
        opened = b;
    }
    pthread_mutex_unlock(&node->pool_mu);
    if (opened > 0)
        NLOG(node, TC_LOG_WARN, "%s: operations fail fast for %d ms", why, opened);
    else if (closed)
        NLOG(node, TC_LOG_INFO, "Redis answers again: operations resume");
}

/* Notes the outcome of a connect for the breaker. Only "the server is not there or does
 * not answer" (TC_ERR_IO, TC_ERR_TIMEOUT) counts against it; a refused password or an
 * error reply prove the server alive but close nothing. A success closes it, except for a
 * probe's connect: a server may accept connections and answer the handshake but not the
 * probe's command, so the probe's operation decides (op_finish). */
static void breaker_record(tc_node *node, tc_status st, bool probe)
{
    breaker_note(node, st == TC_OK && !probe, st == TC_ERR_IO || st == TC_ERR_TIMEOUT, probe,
                 "Redis connect failed");
}

/* Whether the breaker is open now (and no probe is due). Caller holds pool_mu. */
static bool breaker_open_locked(const tc_node *node)
{
    return node->breaker_backoff_ms != 0 && tc__now_ns() < node->breaker_until_ns;
}

/* Whether an operation may go to Redis now. While the breaker is open, no; once its window
 * has passed, this caller becomes the probe (*probe) and the window is re-armed, so that
 * the others keep failing fast until the probe's outcome is known. Caller holds pool_mu. */
static bool breaker_allows_locked(tc_node *node, bool *probe)
{
    *probe = false;
    if (node->breaker_backoff_ms == 0)
        return true;
    int64_t now = tc__now_ns();
    if (now < node->breaker_until_ns)
        return false;
    node->breaker_until_ns = now + (int64_t)node->breaker_backoff_ms * 1000000;
    *probe = true;
    return true;
}

/* Gives a slot back, with its context if that can be reused. Takes pool_mu. */
static void pool_release(tc_node *node, tc_conn *c, bool reusable)
{
    if (c && !reusable) {
        NLOG(node, TC_LOG_INFO, "discarding a Redis connection (%s)",
             c->ctx->errstr[0] ? c->ctx->errstr : "unfinished exchange");
        tc__conn_free(c);
        c = NULL;
    }
    pthread_mutex_lock(&node->pool_mu);
    if (c)
        node->idle[node->nidle++] = c;
    node->nfree++;
    pthread_cond_signal(&node->pool_cv);
    pthread_mutex_unlock(&node->pool_mu);
}

/* Takes a slot for e, waiting for one until e's deadline, and sets e->conn to its connection,
 * connecting a new one (outside the lock) if the slot is empty; the connection's time
 * pushes e's deadline back. TC_ERR_IO at once while the breaker is open. */
static tc_status pool_acquire(tc_node *node, tc_exch *e)
{
    struct timespec ts;
    tc__deadline_to_timespec(e->deadline_ns, &ts);
    pthread_mutex_lock(&node->pool_mu);
    if (breaker_open_locked(node)) {
        pthread_mutex_unlock(&node->pool_mu);
        return TC_ERR_IO; /* no wait for a slot to learn that */
    }
    while (node->nfree == 0) {
        int rc = pthread_cond_timedwait(&node->pool_cv, &node->pool_mu, &ts);
        if (rc != 0 && node->nfree == 0) {
            pthread_mutex_unlock(&node->pool_mu);
            return TC_ERR_TIMEOUT;
        }
    }
    bool probe = false;
    if (!breaker_allows_locked(node, &probe)) { /* it opened while we waited */
        pthread_mutex_unlock(&node->pool_mu);
        return TC_ERR_IO;
    }
    node->nfree--;
    tc_conn *c = node->nidle > 0 ? node->idle[--node->nidle] : NULL;
    pthread_mutex_unlock(&node->pool_mu);
    e->probe = probe;
    if (c) {
        e->conn = c;
        return TC_OK;
    }
    int64_t t0 = tc__now_ns();
    tc_status st = conn_new(node, node->cfg.command_timeout_ms, &c);
    breaker_record(node, st, probe);
    if (st != TC_OK) {
        pool_release(node, NULL, false);
        return st;
    }
    e->deadline_ns += tc__now_ns() - t0;
    /* Slots start empty; a connection beyond the first pool_size replaces a lost one. */
    if (atomic_fetch_add(&node->created, 1) >= (uint_fast64_t)node->cfg.pool_size)
        atomic_fetch_add(&node->reconnects, 1);
    e->conn = c;
    return TC_OK;
}

/* ------------------------------------------------------------------ operations' frame */

tc_status tc__node_op_start(tc_node *node, tc_route *rt, tc_exch *e)
{
    tc__ex_init(e, NULL, node->cfg.command_timeout_ms, &node->ctr);
    e->node = node;
    e->rt = rt;
    if (rt && rt->deadline_ns != 0 && rt->deadline_ns < e->deadline_ns) {
        e->deadline_ns = rt->deadline_ns;
        e->shortened = true;
    }
    return pool_acquire(node, e);
}

tc_status tc__node_op_finish(tc_exch *e, tc_status st)
{
    tc_node *node = e->node;
    tc__free(e->askq);
    e->askq = NULL;
    if (e->conn)
        pool_release(node, e->conn, tc__ex_reusable(e));
    e->conn = NULL;
    if ((e->timed_out && !e->shortened) || (e->answered && !e->timed_out))
        breaker_note(node, !e->timed_out, e->timed_out, e->probe, "Redis did not answer in time");
    if (st < 0 && st != TC_ERR_ARG && st != TC_ERR_NOT_INT)
        atomic_fetch_add(&node->errors, 1);
    return st;
}

/* ------------------------------------------------------------------ scripts */

static bool script_lookup(tc_node *node, const char *source, char sha[41])
{
    bool found = false;
    pthread_mutex_lock(&node->script_mu);
    for (script_sha *s = node->scripts; s; s = s->next) {
        if (s->source == source) {
            memcpy(sha, s->sha, 41);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&node->script_mu);
    return found;
}

/* Remembers the SHA1 SCRIPT LOAD returned for source. Losing the race to another thread
 * or an allocation is harmless: the next call loads it again. */
static void script_remember(tc_node *node, const char *source, const redisReply *x)
{
    if (x->type != REDIS_REPLY_STRING || x->len != 40)
        return;
    script_sha *n = tc__malloc(sizeof *n);
    if (!n)
        return;
    n->source = source;
    memcpy(n->sha, x->str, 40);
    n->sha[40] = '\0';
    pthread_mutex_lock(&node->script_mu);
    bool dup = false;
    for (script_sha *s = node->scripts; s; s = s->next)
        dup = dup || s->source == source;
    if (!dup) {
        n->next = node->scripts;
        node->scripts = n;
    }
    pthread_mutex_unlock(&node->script_mu);
    if (dup)
        tc__free(n);
}

tc_status tc__node_script(tc_exch *e, const char *source, int argc, const char **argv,
                          const size_t *lens, redisReply **reply)
{
    *reply = NULL;
    const char *sargv[SCRIPT_STACK_ARGS];
    size_t slens[SCRIPT_STACK_ARGS];
    const char **av = sargv;
    size_t *al = slens;
    if (argc + 2 > SCRIPT_STACK_ARGS) {
        av = tc__malloc(sizeof *av * (size_t)(argc + 2));
        al = tc__malloc(sizeof *al * (size_t)(argc + 2));
        if (!av || !al) {
            tc__free(av);
            tc__free(al);
            return TC_ERR_NOMEM;
        }
    }
    memcpy(av + 2, argv, sizeof *av * (size_t)argc);
    memcpy(al + 2, lens, sizeof *al * (size_t)argc);
    char sha[41];
    size_t srclen = strlen(source);
    tc_status st;
    if (script_lookup(e->node, source, sha)) {
        av[0] = "EVALSHA";
        al[0] = 7;
        av[1] = sha;
        al[1] = 40;
        st = tc__ex_send(e, argc + 2, av, al);
        if (st == TC_OK)
            st = tc__ex_recv(e, 1, reply);
        if (st == TC_OK && tc__reply_error_starts(*reply, "NOSCRIPT")) {
            freeReplyObject(*reply);
            *reply = NULL;
            av[0] = "EVAL";
            al[0] = 4;
            av[1] = source;
            al[1] = srclen;
            st = tc__ex_send(e, argc + 2, av, al);
            if (st == TC_OK)
                st = tc__ex_recv(e, 1, reply);
        }
    } else {
        const char *largv[3] = {"SCRIPT", "LOAD", source};
        size_t llens[3] = {6, 4, srclen};
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = source;
        al[1] = srclen;
        redisReply *rep[2] = {NULL, NULL};
        st = tc__ex_send(e, 3, largv, llens);
        if (st == TC_OK)
            st = tc__ex_send(e, argc + 2, av, al);
        if (st == TC_OK)
            st = tc__ex_recv(e, 2, rep);
        if (st == TC_OK) {
            script_remember(e->node, source, rep[0]);
            freeReplyObject(rep[0]);
            *reply = rep[1];
        }
    }
    if (av != sargv) {
        tc__free(av);
        tc__free(al);
    }
    return st;
}

/* SCRIPT LOADs the scripts on a fresh connection in one round trip, so their first runs
 * go by EVALSHA. A refusal (an ACL without +@scripting) is only logged: the operations
 * will report it themselves. */
static tc_status preload_scripts(tc_node *node, tc_conn *c, const char *const *scripts,
                                 size_t nscripts)
{
    tc_exch e;
    tc__ex_init(&e, c, node->cfg.command_timeout_ms, &node->ctr);
    e.node = node;
    redisReply *rep[PRELOAD_MAX] = {NULL};
    size_t n = nscripts < PRELOAD_MAX ? nscripts : PRELOAD_MAX;
    tc_status st = TC_OK;
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", scripts[i]};
        size_t lens[3] = {6, 4, strlen(scripts[i])};
        st = tc__ex_send(&e, 3, argv, lens);
    }
    if (st == TC_OK && n > 0)
        st = tc__ex_recv(&e, n, rep);
    for (size_t i = 0; st == TC_OK && i < n; i++) {
        if (rep[i]->type == REDIS_REPLY_STRING)
            script_remember(node, scripts[i], rep[i]);
        else
            tc__bad_reply(&node->cfg.log, rep[i], "SCRIPT LOAD");
    }
    tc__replies_free(rep, n);
    if (st == TC_OK && !tc__ex_restore_timeouts(&e))
        st = TC_ERR_IO;
    return st;
}

void tc__node_close(tc_node *node)
{
    if (!node)
        return;
    /* Only a child after fork can find pool_mu taken (by a thread of the parent): the idle
     * stack may then be mid-update, and its connections are left open rather than walked.
     * redisFree only closes the socket and frees memory: nothing is sent, so a child
     * closing what it inherited leaves the parent's connections as they are. Connections
     * lent out at the fork are not here; their sockets stay open in the child. */
    if (pthread_mutex_trylock(&node->pool_mu) == 0) {
        for (int i = 0; node->idle && i < node->nidle; i++)
            tc__conn_free(node->idle[i]);
        pthread_mutex_unlock(&node->pool_mu);
    }
    tc__free(node->idle);
    script_sha *s = node->scripts;
    while (s) {
        script_sha *next = s->next;
        tc__free(s);
        s = next;
    }
    pthread_mutex_destroy(&node->pool_mu);
    pthread_cond_destroy(&node->pool_cv);
    pthread_mutex_destroy(&node->script_mu);
    tc__url_free(&node->url);
    tc__free(node);
}

static bool init_locks(tc_node *node)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    if (ok && pthread_cond_init(&node->pool_cv, &ca) != 0)
        ok = false;
    pthread_condattr_destroy(&ca);
    if (!ok)
        return false;
    if (pthread_mutex_init(&node->pool_mu, NULL) != 0) {
        pthread_cond_destroy(&node->pool_cv);
        return false;
    }
    if (pthread_mutex_init(&node->script_mu, NULL) != 0) {
        pthread_cond_destroy(&node->pool_cv);
        pthread_mutex_destroy(&node->pool_mu);
        return false;
    }
    return true;
}

static tc_status copy_str(const char *s, char **out)
{
    *out = NULL;
    return s && !(*out = tc__strdup(s)) ? TC_ERR_NOMEM : TC_OK;
}

tc_node *tc__node_new(const tc_node_config *cfg, const tc_url *addr, const char *host, size_t hlen,
                      int port)
{
    tc_node *node = tc__calloc(1, sizeof *node);
    if (!node)
        return NULL;
    if (!init_locks(node)) {
        tc__free(node);
        return NULL;
    }
    node->cfg = *cfg;
    node->nfree = cfg->pool_size;
    node->idle = tc__calloc((size_t)cfg->pool_size, sizeof *node->idle);
    node->url.kind = addr->kind == TC_URL_UNIX ? TC_URL_UNIX : TC_URL_TCP;
    node->url.port = host ? port : addr->port;
    node->url.db = addr->db;
    node->url.host = host ? tc__strndup(host, hlen) : addr->host ? tc__strdup(addr->host) : NULL;
    bool ok = node->idle && (node->url.host || node->url.kind == TC_URL_UNIX);
    if (ok && (copy_str(addr->path, &node->url.path) != TC_OK ||
               copy_str(addr->user, &node->url.user) != TC_OK ||
               copy_str(addr->password, &node->url.password) != TC_OK))
        ok = false;
    if (!ok) {
        tc__node_close(node);
        return NULL;
    }
    return node;
}

tc_status tc__node_warm(tc_node *node, const char *const *scripts, size_t nscripts)
{
    tc_conn *c = NULL;
    tc_status st = conn_new(node, node->cfg.command_timeout_ms, &c);
    if (st == TC_OK)
        st = preload_scripts(node, c, scripts, nscripts);
    if (st != TC_OK) {
        if (c)
            tc__conn_free(c);
        return st;
    }
    pthread_mutex_lock(&node->pool_mu);
    if (node->nidle < node->nfree) {
        node->idle[node->nidle++] = c;
        c = NULL;
        atomic_fetch_add(&node->created, 1);
    }
    pthread_mutex_unlock(&node->pool_mu);
    if (c)
        tc__conn_free(c);
    return TC_OK;
}

tc_status tc__node_connect(tc_node *node, int timeout_ms, tc_conn **out)
{
    tc_status st = conn_new(node, timeout_ms, out);
    breaker_record(node, st, false);
    return st;
}

tc_status tc__node_dial(tc_node *node, int timeout_ms, tc_conn **out)
{
    return conn_new(node, timeout_ms, out);
}

const tc_logger *tc__node_log(const tc_node *node)
{
    return &node->cfg.log;
}

void tc__node_addr(const tc_node *node, const char **host, int *port)
{
    *host = node->url.kind == TC_URL_UNIX ? node->url.path : node->url.host;
    *port = node->url.kind == TC_URL_UNIX ? 0 : node->url.port;
}

bool tc__node_is(const tc_node *node, const char *host, size_t hlen, int port)
{
    const tc_url *u = &node->url;
    return u->kind == TC_URL_TCP && u->port == port && strlen(u->host) == hlen &&
           memcmp(u->host, host, hlen) == 0;
}

bool tc__node_has_password(const tc_node *node)
{
    return node->url.password != NULL;
}

void tc__node_set_link(tc_node *node, long long id)
{
    atomic_store(&node->link_id, id);
}

long long tc__node_link(const tc_node *node)
{
    return atomic_load(&((tc_node *)node)->link_id);
}

void tc__node_add_stats(const tc_node *node, tc_node_stats *acc)
{
    acc->round_trips += atomic_load(&node->ctr.round_trips);
    acc->commands += atomic_load(&node->ctr.commands);
    acc->errors += atomic_load(&node->errors);
    acc->reconnects += atomic_load(&node->reconnects);
}
