/*
 * The Redis tier (see remote.h): URL parsing, a pool of blocking hiredis connections, the
 * connection handshake (AUTH, SELECT, PING), a small circuit breaker, the pipelined
 * operations and the Lua scripts.
 *
 * Owns: the parsed URL, every pooled redisContext while it is idle, the script SHA1 cache
 * and the counters. A connection checked out of the pool belongs to the calling thread
 * until it gives it back; hiredis contexts are never shared between threads.
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
 * Redis Cluster and Sentinel (redis-cluster://, redis-sentinel://): the handle is then a
 * router whose own pool stays empty; each server it talks to is a "node", a complete
 * single-server tc_remote as described here (pool, breaker, scripts, counters), and the
 * public operations route to a node (see the sections at the end of this file). A
 * single-server handle pays two pointer tests per operation for this.
 *
 * Deadlines: an operation has one deadline, command_timeout_ms after it starts, shared by
 * its wait for a free slot and its round trips (all of its reads and writes: the socket
 * timeouts alone would let a server that trickles its reply a byte at a time hold a call
 * for ever, so before each blocking read or write they are lowered to what is left). A new
 * connection made on the way takes connect_timeout_ms at most for the TCP/unix connect and
 * command_timeout_ms for the handshake, and pushes the operation's deadline back by the time
 * it took. So one operation takes at most command_timeout_ms, or connect_timeout_ms +
 * 2 x command_timeout_ms when it opens a connection; a DNS lookup of a host name is the one
 * wait outside these bounds (use an address or /etc/hosts where it matters).
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

#include "remote.h"
#include "remote_conn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

/* Circuit breaker bounds: the first failed connect closes the door for 100 ms, each
 * further failure doubles that, up to 2 s; a successful connect resets it. */
#define BREAKER_MIN_MS 100
#define BREAKER_MAX_MS 2000

/* SCAN batch hint for clear. */
#define CLEAR_SCAN_COUNT "1000"

/* Arguments an EVAL/EVALSHA call can take without a heap allocation. */
#define SCRIPT_STACK_ARGS 12

/* ------------------------------------------------------------------ URLs */

static bool has_prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char a = *s, b = *prefix;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* Percent-decodes s[0..n) into a new string (NULL if n is 0: an empty component is an
 * absent one). Characters outside unreserved, sub-delims and (if colon_ok) ':' are
 * TC_ERR_ARG, as are a malformed escape and an escape that decodes to NUL, which a C
 * string could not carry. */
/* Zeroes a secret's bytes before its memory goes back (volatile: not optimised away). */
static void wipe(char *s)
{
    if (!s)
        return;
    for (volatile char *p = s; *p; p++)
        *p = '\0';
}

static tc_status pct_decode(const char *s, size_t n, bool colon_ok, char **out)
{
    *out = NULL;
    if (n == 0)
        return TC_OK;
    char *d = tc__malloc(n + 1);
    if (!d)
        return TC_ERR_NOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0)) {
                d[j] = '\0';
                wipe(d); /* it may be half a password */
                tc__free(d);
                return TC_ERR_ARG;
            }
            d[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (is_unreserved(c) || is_sub_delim(c) || (colon_ok && c == ':')) {
            d[j++] = c;
        } else {
            d[j] = '\0';
            wipe(d);
            tc__free(d);
            return TC_ERR_ARG;
        }
    }
    d[j] = '\0';
    *out = d;
    return TC_OK;
}

/* "user[:password]" (both optional, both percent-encoded). The first ':' separates them;
 * the password may contain further ones. */
static tc_status parse_userinfo(const char *s, size_t n, tc_url *u)
{
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    tc_status st = pct_decode(s, ulen, false, &u->user);
    if (st == TC_OK && colon)
        st = pct_decode(colon + 1, n - ulen - 1, true, &u->password);
    return st;
}

/* Digits only, 0..max. */
static bool parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* "host[:port]" or "[v6]:port" into u->host and u->port. */
static tc_status parse_hostport(const char *s, size_t n, tc_url *u)
{
    const char *host, *rest;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return TC_ERR_ARG;
        host = s + 1;
        hlen = (size_t)(close - host);
        bool colon = false;
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (c == ':')
                colon = true;
            else if (c != '.' && hex_value(c) < 0)
                return TC_ERR_ARG; /* zone ids ("%25eth0") are not supported */
        }
        if (!colon)
            return TC_ERR_ARG;
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        host = s;
        hlen = colon ? (size_t)(colon - s) : n;
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return TC_ERR_ARG;
        }
        rest = s + hlen;
    }
    if (hlen == 0)
        return TC_ERR_ARG;
    size_t rlen = n - (size_t)(rest - s);
    u->port = 6379;
    if (rlen > 0) {
        long port;
        if (rest[0] != ':' || !parse_uint(rest + 1, rlen - 1, 65535, &port) || port == 0)
            return TC_ERR_ARG;
        u->port = (int)port;
    }
    u->host = tc__strndup(host, hlen);
    return u->host ? TC_OK : TC_ERR_NOMEM;
}

static tc_status parse_tcp(const char *p, tc_url *u)
{
    u->kind = TC_URL_TCP;
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    const char *hp = p;
    tc_status st;
    if (at) {
        st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
        hp = at + 1;
    }
    st = parse_hostport(hp, alen - (size_t)(hp - p), u);
    if (st != TC_OK)
        return st;
    const char *rest = p + alen;
    if (*rest == '\0')
        return TC_OK;
    if (*rest != '/')
        return TC_ERR_ARG; /* a query or fragment: redis:// takes its db in the path */
    rest++;
    if (*rest == '\0')
        return TC_OK;
    long db;
    if (!parse_uint(rest, strlen(rest), INT_MAX, &db))
        return TC_ERR_ARG;
    u->db = (int)db;
    return TC_OK;
}

static tc_status parse_unix(const char *p, tc_url *u)
{
    u->kind = TC_URL_UNIX;
    const char *slash = strchr(p, '/');
    if (!slash)
        return TC_ERR_ARG;
    if (slash != p) {
        /* Only credentials may stand before the path: a unix URL names no host. */
        const char *at = memchr(p, '@', (size_t)(slash - p));
        if (!at || at + 1 != slash)
            return TC_ERR_ARG;
        tc_status st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
    }
    size_t plen = strcspn(slash, "?#");
    char *path = tc__malloc(plen + 1);
    if (!path)
        return TC_ERR_NOMEM;
    size_t j = 0;
    for (size_t i = 0; i < plen; i++) {
        char c = slash[i];
        if (c == '%') {
            int hi = i + 2 < plen ? hex_value(slash[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(slash[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0)) {
                tc__free(path);
                return TC_ERR_ARG;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if ((unsigned char)c <= 32 || c == 127) {
            tc__free(path);
            return TC_ERR_ARG;
        }
        path[j++] = c;
    }
    path[j] = '\0';
    u->path = path;
    /* A socket is a file: "/" or "/dir/" names none; sun_path bounds the length. */
    if (j < 2 || path[j - 1] == '/' || j >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return TC_ERR_ARG;
    const char *rest = slash + plen;
    if (*rest == '\0')
        return TC_OK;
    long db;
    if (strncmp(rest, "?db=", 4) != 0 || !parse_uint(rest + 4, strlen(rest + 4), INT_MAX, &db))
        return TC_ERR_ARG;
    u->db = (int)db;
    return TC_OK;
}

/* "[user[:password]@]host:port[,host:port...]": the seed nodes of a cluster; for
 * Sentinel, the sentinels followed by "/master-name[/db][?query]". */
static tc_status parse_seeds(const char *p, tc_url *u);

/* A Sentinel URL's query: "sentinel_password=P" and "sentinel_user=U" (each at most once,
 * percent-encoded, joined by '&'): the credentials the sentinels themselves ask for. */
static tc_status parse_sentinel_query(const char *q, tc_url *u)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (!eq)
            return TC_ERR_ARG;
        size_t nlen = (size_t)(eq - q), vlen = len - nlen - 1;
        bool pw = nlen == 17 && memcmp(q, "sentinel_password", 17) == 0;
        bool user = nlen == 13 && memcmp(q, "sentinel_user", 13) == 0;
        char **dst = pw ? &u->sentinel_password : &u->sentinel_user;
        if ((!pw && !user) || *dst)
            return TC_ERR_ARG; /* unknown or repeated */
        tc_status st = pct_decode(eq + 1, vlen, pw, dst);
        if (st != TC_OK)
            return st;
        q += len;
        if (*q == '&' && *++q == '\0')
            return TC_ERR_ARG;
    }
    return TC_OK;
}

/* For Sentinel: "master-name[/db][?query]" after the sentinels' slash. */
static tc_status parse_sentinel_tail(const char *name, tc_url *u)
{
    const char *query = strchr(name, '?');
    size_t tail = query ? (size_t)(query - name) : strlen(name);
    size_t nlen = strcspn(name, "/?");
    if (nlen == 0)
        return TC_ERR_ARG;
    tc_status st = pct_decode(name, nlen, false, &u->master_name);
    if (st != TC_OK)
        return st;
    const char *rest = name + nlen;
    size_t rlen = tail - nlen;
    if (rlen > 1) {
        long db;
        if (rest[0] != '/' || !parse_uint(rest + 1, rlen - 1, INT_MAX, &db))
            return TC_ERR_ARG;
        u->db = (int)db;
    } else if (rlen == 1 && rest[0] != '/') {
        return TC_ERR_ARG;
    }
    if (query && query[1] == '\0')
        return TC_ERR_ARG;
    return query ? parse_sentinel_query(query + 1, u) : TC_OK;
}

static tc_status parse_cluster(const char *p, tc_url *u, bool sentinel)
{
    u->kind = sentinel ? TC_URL_SENTINEL : TC_URL_CLUSTER;
    char *copy = NULL;
    if (sentinel) {
        const char *slash = strchr(p, '/');
        if (!slash)
            return TC_ERR_ARG;
        tc_status st = parse_sentinel_tail(slash + 1, u);
        if (st != TC_OK)
            return st;
        copy = tc__strndup(p, (size_t)(slash - p));
        if (!copy)
            return TC_ERR_NOMEM;
        p = copy;
    }
    tc_status st = parse_seeds(p, u);
    wipe(copy); /* "user:password@hosts" */
    tc__free(copy);
    return st;
}

static tc_status parse_seeds(const char *p, tc_url *u)
{
    const char *at = strchr(p, '@');
    tc_status st;
    if (at) {
        st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
        p = at + 1;
    }
    if (*p == '\0')
        return TC_ERR_ARG;
    int n = 1;
    for (const char *q = p; *q; q++)
        n += *q == ',';
    u->seed_hosts = tc__calloc((size_t)n, sizeof *u->seed_hosts);
    u->seed_ports = tc__calloc((size_t)n, sizeof *u->seed_ports);
    if (!u->seed_hosts || !u->seed_ports)
        return TC_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        tc_url one;
        memset(&one, 0, sizeof one);
        if (len == 0 || memchr(p, '/', len) || memchr(p, '?', len))
            return TC_ERR_ARG;
        st = parse_hostport(p, len, &one);
        if (st != TC_OK) {
            tc__free(one.host);
            return st;
        }
        u->seed_hosts[i] = one.host;
        u->seed_ports[i] = one.port;
        u->nseeds = i + 1;
        p += len + (p[len] == ',');
    }
    u->host = tc__strdup(u->seed_hosts[0]);
    u->port = u->seed_ports[0];
    return u->host ? TC_OK : TC_ERR_NOMEM;
}

tc_status tc__url_parse(const char *s, tc_url *out)
{
    if (!out)
        return TC_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!s)
        return TC_ERR_ARG;
    tc_status st;
    if (has_prefix_ci(s, "redis://"))
        st = parse_tcp(s + 8, out);
    else if (has_prefix_ci(s, "unix://"))
        st = parse_unix(s + 7, out);
    else if (has_prefix_ci(s, "redis-cluster://"))
        st = parse_cluster(s + 16, out, false);
    else if (has_prefix_ci(s, "redis-sentinel://"))
        st = parse_cluster(s + 17, out, true);
    else
        st = TC_ERR_ARG; /* "rediss://" too: hiredis 0.14 has no TLS */
    if (st != TC_OK)
        tc__url_free(out);
    return st;
}

/* Overwrites a secret before its memory goes back to the allocator; volatile so the
 * compiler cannot drop the stores as dead. */
void tc__url_free(tc_url *u)
{
    if (!u)
        return;
    wipe(u->password);
    wipe(u->sentinel_password);
    tc__free(u->host);
    tc__free(u->path);
    tc__free(u->user);
    tc__free(u->password);
    for (int i = 0; i < u->nseeds; i++)
        tc__free(u->seed_hosts[i]);
    tc__free(u->seed_hosts);
    tc__free(u->seed_ports);
    tc__free(u->master_name);
    tc__free(u->sentinel_user);
    tc__free(u->sentinel_password);
    memset(u, 0, sizeof *u);
}

/* ------------------------------------------------------------------ the handle */

typedef struct script_sha {
    const char *source; /* identity: the caller's pointer */
    char sha[41];
    struct script_sha *next;
} script_sha;

struct tc_remote {
    tc_remote_config cfg; /* cfg.url points at url_copy */
    char *url_copy;
    tc_url url;
    struct timeval connect_tv, command_tv;

    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv; /* signalled when a slot is given back; CLOCK_MONOTONIC */
    redisContext **idle;    /* idle[0..nidle): connected, set up, unused */
    int nidle;
    int nfree;              /* slots not checked out (idle or empty) */
    int breaker_backoff_ms; /* 0: closed (operations allowed) */
    int64_t breaker_until_ns;

    pthread_mutex_t script_mu;
    script_sha *scripts;

    atomic_uint_fast64_t round_trips, commands, errors, reconnects;
    atomic_uint_fast64_t created; /* pooled connections ever made */

    struct tc_cluster *cluster; /* NULL: a single server (this pool); else the router */
    struct tc_sentinel *sentinel; /* NULL unless redis-sentinel:// */
    atomic_uint_fast64_t moved, ask, map_refreshes;
};

#define RLOG(r, level, ...) tc__log(&(r)->cfg.log, (level), __VA_ARGS__)

static struct timeval tv_from_ms(int ms)
{
    struct timeval tv = {0, 0};
    if (ms > 0) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    }
    return tv;
}

const tc_remote_config *tc__remote_config(tc_remote *r)
{
    return &r->cfg;
}

static void cluster_stats(tc_remote *r, tc_remote_stats *out);
static void sentinel_stats(tc_remote *r, tc_remote_stats *out);

void tc__remote_stats(tc_remote *r, tc_remote_stats *out)
{
    if (r->cluster) {
        cluster_stats(r, out);
        return;
    }
    if (r->sentinel) {
        sentinel_stats(r, out);
        return;
    }
    out->round_trips = atomic_load(&r->round_trips);
    out->commands = atomic_load(&r->commands);
    out->errors = atomic_load(&r->errors);
    out->reconnects = atomic_load(&r->reconnects);
    out->moved = out->ask = out->map_refreshes = 0;
}

/* ------------------------------------------------------------------ errors */

/* errnum's message, as hiredis formats it (strerror_r; buf may hold it). */
static const char *errno_text(int errnum, char buf[128])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, buf, 128);
#else
    return strerror_r(errnum, buf, 128) == 0 ? buf : "";
#endif
}

/* True if errstr is the message hiredis stored for errnum (it formats errno with
 * strerror_r, so that is all there is to compare). */
static bool errstr_is(const char *errstr, int errnum)
{
    char buf[128];
    return strcmp(errstr, errno_text(errnum, buf)) == 0;
}

tc_status tc__remote_ctx_status(const redisContext *ctx)
{
    if (ctx && ctx->err == REDIS_ERR_IO &&
        (errstr_is(ctx->errstr, EAGAIN) || errstr_is(ctx->errstr, EWOULDBLOCK)))
        return TC_ERR_TIMEOUT;
    return TC_ERR_IO;
}

static bool is_error(const redisReply *x)
{
    return x->type == REDIS_REPLY_ERROR;
}

static bool error_starts(const redisReply *x, const char *prefix)
{
    size_t n = strlen(prefix);
    return is_error(x) && x->len >= n && memcmp(x->str, prefix, n) == 0;
}

static bool error_contains(const redisReply *x, const char *needle)
{
    return is_error(x) && x->str && strstr(x->str, needle) != NULL;
}

static bool is_status(const redisReply *x, const char *s)
{
    size_t n = strlen(s);
    return x->type == REDIS_REPLY_STATUS && x->len == n && memcmp(x->str, s, n) == 0;
}

/* The ways Redis 2.x to 7.x say "these credentials are wrong or missing". */
static bool is_auth_error(const redisReply *x)
{
    return error_starts(x, "WRONGPASS") || error_starts(x, "NOAUTH") ||
           error_contains(x, "invalid username-password") ||
           error_contains(x, "invalid password") ||
           (error_starts(x, "ERR AUTH") && error_contains(x, "without any password configured"));
}

/* Logs an error reply or an unexpected reply to what, and returns TC_ERR_PROTO. */
static tc_status bad_reply(tc_remote *r, const redisReply *x, const char *what)
{
    if (error_starts(x, "MOVED ") || error_starts(x, "ASK ") || error_starts(x, "TRYAGAIN"))
        return TC_ERR_PROTO; /* a cluster redirect: the router follows it */
    if (is_error(x))
        RLOG(r, TC_LOG_WARN, "Redis error reply to %s: %.*s", what, (int)x->len, x->str);
    else
        RLOG(r, TC_LOG_WARN, "unexpected Redis reply type %d to %s", x->type, what);
    return TC_ERR_PROTO;
}

/* ------------------------------------------------------------------ SIGPIPE
 *
 * hiredis 0.14 writes with write(2), so a write on a connection the server reset raises
 * SIGPIPE, whose default action kills the process, and a library may not change the
 * process's signal dispositions. The operations write with ctx_write (send with
 * MSG_NOSIGNAL) and raise none. Where hiredis itself writes (redisGetReply, in the sentinel
 * watch's set-up), the section blocks SIGPIPE in the calling thread (as libpq does) and, if
 * the I/O failed, consumes a SIGPIPE that it caused before restoring the mask. A SIGPIPE
 * already pending before the section is left for its owner. (The subscriber thread runs
 * with every signal blocked.) */

typedef struct sigpipe_guard {
    sigset_t old;
    bool blocked, was_pending;
} sigpipe_guard;

static void sigpipe_block(sigpipe_guard *g)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);
    g->was_pending = false;
    g->blocked = pthread_sigmask(SIG_BLOCK, &s, &g->old) == 0;
    if (g->blocked && sigismember(&g->old, SIGPIPE)) {
        sigset_t pending;
        if (sigpending(&pending) == 0)
            g->was_pending = sigismember(&pending, SIGPIPE) == 1;
    }
}

static void sigpipe_restore(sigpipe_guard *g, bool io_failed)
{
    if (!g->blocked)
        return;
    if (io_failed && !g->was_pending) {
        sigset_t pending;
        if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
            sigset_t s;
            sigemptyset(&s);
            sigaddset(&s, SIGPIPE);
            struct timespec zero = {0, 0};
            while (sigtimedwait(&s, NULL, &zero) < 0 && errno == EINTR)
                ;
        }
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ------------------------------------------------------------------ exchanges
 *
 * An exchange appends commands to a context and then reads exactly as many replies, in
 * one round trip. It tracks what is still owed so that a context left with unread replies
 * is discarded, never pooled. */

/* What a cluster node answered instead of doing the command: MOVED (the slot lives on
 * another node for good), ASK (this one command goes to another node, after ASKING), or
 * TRYAGAIN / CLUSTERDOWN (a multi-key command during a migration, a cluster without a
 * quorum: try again shortly). The first one seen in an exchange is kept. */
typedef enum redir_kind { REDIR_NONE = 0, REDIR_MOVED, REDIR_ASK, REDIR_TRYAGAIN } redir_kind;

typedef struct route {
    bool asking;    /* in: send ASKING before each command (outside MULTI) */
    bool key_unlink; /* in: clear unlinks one key per command (keys of a SCAN may span slots) */
    int64_t deadline_ns; /* in: if not 0, the operation ends by then (a redirect's retry) */
    redir_kind kind; /* out */
    int slot;        /* out: MOVED/ASK */
    int port;        /* out: MOVED/ASK */
    char host[64];   /* out: MOVED/ASK */
} route;

typedef struct exch {
    tc_remote *r;
    route *rt;             /* NULL outside a cluster */
    bool in_multi;         /* asking mode: between MULTI and EXEC (ASKING lasts through it) */
    unsigned char *askq;   /* asking mode: per command sent, whether ASKING preceded it */
    size_t askq_n, askq_cap, askq_r;
    redisContext *c;
    size_t owed;           /* commands appended whose replies were not read */
    bool broken;           /* do not reuse the context */
    bool probe;            /* this operation is the breaker's probe */
    bool answered;         /* a round trip completed: the server answers */
    bool timed_out;        /* a round trip ran out of time on an established connection */
    bool shortened;        /* a redirect's retry with what was left of the first deadline:
                              its running out says nothing about the server */
    int64_t deadline_ns;   /* when the operation's time is up (monotonic) */
    int64_t sock_timeout_ns; /* the context's socket timeouts now (command_timeout_ms unless
                                lowered by ex_clamp; restored before it is pooled again) */
} exch;

/* Lowering the socket timeouts costs two setsockopt calls: skipped when they would
 * overshoot the deadline by less than this, which spares the usual exchange (started a few
 * microseconds into its operation) any extra syscall. */
#define CLAMP_SLACK_NS 2000000

/* An exchange on context c (already checked out or just connected), with the deadline
 * of an operation starting now. */
static void ex_init(exch *e, tc_remote *r, redisContext *c)
{
    memset(e, 0, sizeof *e);
    e->r = r;
    e->c = c;
    e->deadline_ns = tc__deadline_after_ms(r->cfg.command_timeout_ms);
    e->sock_timeout_ns = (int64_t)r->cfg.command_timeout_ms * 1000000;
}

/* In asking mode (an ASK redirect being followed), every command but those inside MULTI
 * goes after an ASKING, whose reply ex_recv drops; askq records which. */
static tc_status ex_asking(exch *e, int argc, const char **argv)
{
    bool multi = argc == 1 && strcmp(argv[0], "MULTI") == 0;
    bool exec = argc == 1 && strcmp(argv[0], "EXEC") == 0;
    bool ask = !e->in_multi;
    if (multi)
        e->in_multi = true;
    if (exec)
        e->in_multi = false;
    if (e->askq_n == e->askq_cap) {
        size_t cap = e->askq_cap ? 2 * e->askq_cap : 16;
        unsigned char *q = tc__realloc(e->askq, cap);
        if (!q)
            return TC_ERR_NOMEM;
        e->askq = q;
        e->askq_cap = cap;
    }
    e->askq[e->askq_n++] = ask;
    if (ask) {
        const char *a = "ASKING";
        size_t al = 6;
        if (redisAppendCommandArgv(e->c, 1, &a, &al) != REDIS_OK)
            return TC_ERR_NOMEM;
        e->owed++;
    }
    return TC_OK;
}

static tc_status ex_send(exch *e, int argc, const char **argv, const size_t *lens)
{
    if (e->rt && e->rt->asking && ex_asking(e, argc, argv) != TC_OK) {
        e->broken = true;
        return TC_ERR_NOMEM;
    }
    if (redisAppendCommandArgv(e->c, argc, argv, lens) != REDIS_OK) {
        e->broken = true;
        return TC_ERR_NOMEM;
    }
    e->owed++;
    atomic_fetch_add(&e->r->commands, 1);
    return TC_OK;
}

/* Called before each blocking read or write: false if the deadline has passed; else makes
 * sure the read or write cannot block past it, by lowering the socket timeouts to what is
 * left when they would overshoot. */
static bool ex_clamp(exch *e)
{
    int64_t left = e->deadline_ns - tc__now_ns();
    if (left <= 0)
        return false;
    if (left + CLAMP_SLACK_NS >= e->sock_timeout_ns)
        return true;
    int64_t us = (left + 999) / 1000; /* > 0: a zero timeval would mean "no timeout" */
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    if (redisSetTimeout(e->c, tv) != REDIS_OK)
        return false;
    e->sock_timeout_ns = left;
    return true;
}

/* Writes what ctx's output buffer holds, as redisBufferWrite does (hiredis 0.14; *done when
 * the buffer is empty), but with send(MSG_NOSIGNAL): a write to a connection the server
 * reset fails with EPIPE instead of raising SIGPIPE, so the operations need no signal-mask
 * guard, which cost two system calls each. Errors are recorded in ctx as hiredis records
 * them (REDIS_ERR_IO and strerror), so tc__remote_ctx_status reads them alike. */
static int ctx_write(redisContext *ctx, int *done)
{
    if (ctx->err)
        return REDIS_ERR;
    size_t len = sdslen(ctx->obuf);
    if (len > 0) {
        ssize_t n = send(ctx->fd, ctx->obuf, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR) {
            char buf[128];
            ctx->err = REDIS_ERR_IO;
            snprintf(ctx->errstr, sizeof ctx->errstr, "%s", errno_text(errno, buf));
            return REDIS_ERR;
        }
        if (n > 0 && (size_t)n == len) {
            sds empty = sdsempty();
            if (!empty) {
                ctx->err = REDIS_ERR_OOM;
                snprintf(ctx->errstr, sizeof ctx->errstr, "Out of memory");
                return REDIS_ERR;
            }
            sdsfree(ctx->obuf);
            ctx->obuf = empty;
        } else if (n > 0) {
            sdsrange(ctx->obuf, (int)n, -1);
        }
    }
    *done = sdslen(ctx->obuf) == 0;
    return REDIS_OK;
}

/* Flushes what was appended and reads n replies into rep, all before the deadline. On
 * failure nothing is returned and the context is broken: TC_ERR_TIMEOUT (the deadline
 * passed, or a read or write timed out), TC_ERR_PROTO (the server sent bytes that are not
 * RESP), TC_ERR_NOMEM (hiredis ran out of memory) or TC_ERR_IO. (This is redisGetReply's loop with a deadline check before each
 * blocking call.) */
/* Sends what was appended without waiting for the replies (ex_recv reads them later), so
 * that a router can put the batches of several nodes on the wire before it waits for any.
 * Failures as ex_recv's. */
static tc_status ex_flush(exch *e)
{
    bool late = false, ok = true;
    int done = 0;
    while (ok && !done) {
        if (!ex_clamp(e))
            late = true, ok = false;
        else
            ok = ctx_write(e->c, &done) == REDIS_OK;
    }
    if (ok)
        return TC_OK;
    e->broken = true;
    if (late || tc__remote_ctx_status(e->c) == TC_ERR_TIMEOUT) {
        e->timed_out = true;
        return TC_ERR_TIMEOUT;
    }
    return TC_ERR_IO;
}

/* Records in rt the first redirect among the replies. */
static void note_redirects(route *rt, redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n && rt->kind == REDIR_NONE; i++) {
        const redisReply *x = rep[i];
        if (x->type != REDIS_REPLY_ERROR || !x->str)
            continue;
        bool moved = strncmp(x->str, "MOVED ", 6) == 0;
        bool ask = strncmp(x->str, "ASK ", 4) == 0;
        if (moved || ask) {
            /* "MOVED <slot> <host>:<port>" */
            const char *p = x->str + (moved ? 6 : 4);
            char *end;
            long slot = strtol(p, &end, 10);
            const char *addr = end + (*end == ' ');
            const char *colon = strrchr(addr, ':');
            if (end == p || slot < 0 || slot > 16383 || !colon ||
                (size_t)(colon - addr) >= sizeof rt->host)
                continue;
            long port = strtol(colon + 1, NULL, 10);
            if (port <= 0 || port > 65535)
                continue;
            size_t hl = (size_t)(colon - addr);
            /* An empty host (Redis 7 with an unknown endpoint) means the node that answered. */
            memcpy(rt->host, addr, hl);
            rt->host[hl] = '\0';
            rt->slot = (int)slot;
            rt->port = (int)port;
            rt->kind = moved ? REDIR_MOVED : REDIR_ASK;
        } else if (strncmp(x->str, "TRYAGAIN", 8) == 0 ||
                   strncmp(x->str, "CLUSTERDOWN", 11) == 0) {
            rt->kind = REDIR_TRYAGAIN;
        }
    }
}

static tc_status ex_recv(exch *e, size_t n, redisReply **rep)
{
    assert(n > 0); /* every exchange waits for something */
    atomic_fetch_add(&e->r->round_trips, 1);
    bool late = false, ok = true;
    int done = 0;
    while (ok && !done) {
        if (!ex_clamp(e))
            late = true, ok = false;
        else
            ok = ctx_write(e->c, &done) == REDIS_OK;
    }
    size_t i;
    for (i = 0; ok && i < n; i++) {
        void *x = NULL;
        bool drop = e->askq && e->askq_r < e->askq_n && e->askq[e->askq_r++];
    again:
        while (ok) {
            if (redisGetReplyFromReader(e->c, &x) != REDIS_OK)
                ok = false;
            else if (x)
                break;
            else if (!ex_clamp(e))
                late = true, ok = false;
            else
                ok = redisBufferRead(e->c) == REDIS_OK;
        }
        if (!ok)
            break;
        if (drop) { /* ASKING's reply */
            freeReplyObject(x);
            x = NULL;
            e->owed--;
            drop = false;
            goto again;
        }
        rep[i] = x;
        e->owed--;
    }
    if (ok) {
        e->answered = true;
        if (e->rt)
            note_redirects(e->rt, rep, n);
        return TC_OK;
    }
    e->broken = true;
    while (i > 0) {
        freeReplyObject(rep[--i]);
        rep[i] = NULL;
    }
    if (late || tc__remote_ctx_status(e->c) == TC_ERR_TIMEOUT) {
        e->timed_out = true;
        return TC_ERR_TIMEOUT;
    }
    return e->c->err == REDIS_ERR_PROTOCOL ? TC_ERR_PROTO
           : e->c->err == REDIS_ERR_OOM    ? TC_ERR_NOMEM /* hiredis could not allocate */
                                           : TC_ERR_IO;
}

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
}

/* Puts back the socket timeouts every set-up context has (command_timeout_ms) if
 * ex_clamp lowered them: a context that leaves an exchange (a handshake, a preload, an
 * operation) must not keep a shorter timeout than the next exchange on it assumes. */
static bool ex_restore_timeouts(exch *e)
{
    const int64_t full = (int64_t)e->r->cfg.command_timeout_ms * 1000000;
    if (e->sock_timeout_ns == full)
        return true;
    if (redisSetTimeout(e->c, e->r->command_tv) != REDIS_OK)
        return false;
    e->sock_timeout_ns = full;
    return true;
}

/* Whether an exchange's context may be pooled again (with its timeouts restored). */
static bool ex_reusable(exch *e)
{
    return !e->broken && e->owed == 0 && e->c->err == 0 && ex_restore_timeouts(e);
}

/* ------------------------------------------------------------------ connections */

/* Sends AUTH / SELECT / PING in one round trip on a fresh context and maps the first
 * failure: credentials refused or missing -> TC_ERR_AUTH, other error replies ->
 * TC_ERR_PROTO, timeouts -> TC_ERR_TIMEOUT, I/O -> TC_ERR_IO. */
static tc_status handshake(tc_remote *r, redisContext *c)
{
    exch e;
    ex_init(&e, r, c);
    const tc_url *u = &r->url;
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
        st = ex_send(&e, argc, argv, lens);
        n++;
    }
    char db[16];
    if (st == TC_OK && u->db != 0) {
        int dl = snprintf(db, sizeof db, "%d", u->db);
        argv[0] = "SELECT";
        lens[0] = 6;
        argv[1] = db;
        lens[1] = (size_t)dl;
        st = ex_send(&e, 2, argv, lens);
        n++;
    }
    if (st == TC_OK) {
        argv[0] = "PING";
        lens[0] = 4;
        st = ex_send(&e, 1, argv, lens);
        n++;
    }
    redisReply *rep[3] = {NULL, NULL, NULL};
    if (st == TC_OK)
        st = ex_recv(&e, n, rep);
    if (st != TC_OK) {
        RLOG(r, TC_LOG_WARN, "Redis handshake failed: %s (%s)", tc_strerror(st),
             c->errstr[0] ? c->errstr : "no detail");
        return st;
    }
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *what = i == n - 1 ? "PING" : (auth && i == 0) ? "AUTH" : "SELECT";
        if (is_auth_error(rep[i])) {
            RLOG(r, TC_LOG_ERROR, "Redis refused the credentials: %.*s", (int)rep[i]->len,
                 rep[i]->str);
            st = TC_ERR_AUTH;
        } else if (!is_status(rep[i], i == n - 1 ? "PONG" : "OK")) {
            st = bad_reply(r, rep[i], what);
        }
    }
    free_replies(rep, n);
    if (st == TC_OK && !ex_restore_timeouts(&e))
        st = TC_ERR_IO;
    return st;
}

/* A new context set up like every pooled one: connected within connect_timeout_ms, read
 * and write timeouts of command_timeout_ms for the handshake and io_timeout_ms after it
 * (none if <= 0), TCP keepalive, then the handshake. Does not touch the breaker. */
static tc_status conn_new(tc_remote *r, int io_timeout_ms, redisContext **out)
{
    *out = NULL;
    const tc_url *u = &r->url;
    if (u->kind != TC_URL_TCP && u->kind != TC_URL_UNIX)
        return TC_ERR_ARG; /* a router (cluster, sentinel) has no connection of its own */
    redisContext *c = u->kind == TC_URL_TCP
                          ? redisConnectWithTimeout(u->host, u->port, r->connect_tv)
                          : redisConnectUnixWithTimeout(u->path, r->connect_tv);
    if (!c)
        return TC_ERR_NOMEM;
    tc_status st = TC_OK;
    if (c->err) {
        /* Refused, unreachable or a connect timeout: the server is not there. */
        st = TC_ERR_IO;
        if (u->kind == TC_URL_TCP)
            RLOG(r, TC_LOG_WARN, "cannot connect to Redis at %s port %d: %s", u->host,
                 u->port, c->errstr);
        else
            RLOG(r, TC_LOG_WARN, "cannot connect to Redis at %s: %s", u->path, c->errstr);
    } else if (redisSetTimeout(c, r->command_tv) != REDIS_OK ||
               (u->kind == TC_URL_TCP && redisEnableKeepAlive(c) != REDIS_OK)) {
        st = TC_ERR_IO;
        RLOG(r, TC_LOG_WARN, "cannot set up a Redis connection: %s", c->errstr);
    } else {
        st = handshake(r, c);
    }
    if (st == TC_OK && io_timeout_ms != r->cfg.command_timeout_ms &&
        redisSetTimeout(c, tv_from_ms(io_timeout_ms)) != REDIS_OK) {
        st = TC_ERR_IO;
        RLOG(r, TC_LOG_WARN, "cannot set the Redis timeout: %s", c->errstr);
    }
    if (st != TC_OK) {
        redisFree(c);
        return st;
    }
    *out = c;
    return TC_OK;
}

/* Moves the breaker after an outcome: `alive` (Redis answered) closes it; `down` (absent
 * or silent) opens a closed breaker, or doubles the backoff when it is the probe's
 * outcome, so that operations already under way when it opened (a whole pool losing its
 * server at once) do not push it to the maximum together. Takes pool_mu; logs after. */
static void breaker_note(tc_remote *r, bool alive, bool down, bool probe, const char *why)
{
    int opened = 0;
    bool closed = false;
    pthread_mutex_lock(&r->pool_mu);
    if (alive) {
        closed = r->breaker_backoff_ms != 0;
        r->breaker_backoff_ms = 0;
        r->breaker_until_ns = 0;
    } else if (down && (r->breaker_backoff_ms == 0 || probe)) {
        int b = r->breaker_backoff_ms;
        b = b == 0 ? BREAKER_MIN_MS : b >= BREAKER_MAX_MS / 2 ? BREAKER_MAX_MS : b * 2;
        r->breaker_backoff_ms = b;
        r->breaker_until_ns = tc__deadline_after_ms(b);
        opened = b;
    }
    pthread_mutex_unlock(&r->pool_mu);
    if (opened > 0)
        RLOG(r, TC_LOG_WARN, "%s: operations fail fast for %d ms", why, opened);
    else if (closed)
        RLOG(r, TC_LOG_INFO, "Redis answers again: operations resume");
}

/* Notes the outcome of a connect for the breaker. Only "the server is not there or does
 * not answer" (TC_ERR_IO, TC_ERR_TIMEOUT) counts against it; a refused password or an
 * error reply prove the server alive but close nothing. A success closes it, except for a
 * probe's connect: a server may accept connections and answer the handshake but not the
 * probe's command, so the probe's operation decides (op_finish). */
static void breaker_record(tc_remote *r, tc_status st, bool probe)
{
    breaker_note(r, st == TC_OK && !probe, st == TC_ERR_IO || st == TC_ERR_TIMEOUT, probe,
                 "Redis connect failed");
}

/* Whether the breaker is open now (and no probe is due). Caller holds pool_mu. */
static bool breaker_open_locked(const tc_remote *r)
{
    return r->breaker_backoff_ms != 0 && tc__now_ns() < r->breaker_until_ns;
}

/* Whether an operation may go to Redis now. While the breaker is open, no; once its window
 * has passed, this caller becomes the probe (*probe) and the window is re-armed, so that
 * the others keep failing fast until the probe's outcome is known. Caller holds pool_mu. */
static bool breaker_allows_locked(tc_remote *r, bool *probe)
{
    *probe = false;
    if (r->breaker_backoff_ms == 0)
        return true;
    int64_t now = tc__now_ns();
    if (now < r->breaker_until_ns)
        return false;
    r->breaker_until_ns = now + (int64_t)r->breaker_backoff_ms * 1000000;
    *probe = true;
    return true;
}

/* Gives a slot back, with its context if that can be reused. Takes pool_mu. */
static void pool_release(tc_remote *r, redisContext *c, bool reusable)
{
    if (c && !reusable) {
        RLOG(r, TC_LOG_INFO, "discarding a Redis connection (%s)",
             c->errstr[0] ? c->errstr : "unfinished exchange");
        redisFree(c);
        c = NULL;
    }
    pthread_mutex_lock(&r->pool_mu);
    if (c)
        r->idle[r->nidle++] = c;
    r->nfree++;
    pthread_cond_signal(&r->pool_cv);
    pthread_mutex_unlock(&r->pool_mu);
}

/* Takes a slot for e, waiting for one until e's deadline, and sets e->c to its context,
 * connecting a new one (outside the lock) if the slot is empty; the connection's time
 * pushes e's deadline back. TC_ERR_IO at once while the breaker is open. */
static tc_status pool_acquire(tc_remote *r, exch *e)
{
    struct timespec ts;
    tc__deadline_to_timespec(e->deadline_ns, &ts);
    pthread_mutex_lock(&r->pool_mu);
    if (breaker_open_locked(r)) {
        pthread_mutex_unlock(&r->pool_mu);
        return TC_ERR_IO; /* no wait for a slot to learn that */
    }
    while (r->nfree == 0) {
        int rc = pthread_cond_timedwait(&r->pool_cv, &r->pool_mu, &ts);
        if (rc != 0 && r->nfree == 0) {
            pthread_mutex_unlock(&r->pool_mu);
            return TC_ERR_TIMEOUT;
        }
    }
    bool probe = false;
    if (!breaker_allows_locked(r, &probe)) { /* it opened while we waited */
        pthread_mutex_unlock(&r->pool_mu);
        return TC_ERR_IO;
    }
    r->nfree--;
    redisContext *c = r->nidle > 0 ? r->idle[--r->nidle] : NULL;
    pthread_mutex_unlock(&r->pool_mu);
    e->probe = probe;
    if (c) {
        e->c = c;
        return TC_OK;
    }
    int64_t t0 = tc__now_ns();
    tc_status st = conn_new(r, r->cfg.command_timeout_ms, &c);
    breaker_record(r, st, probe);
    if (st != TC_OK) {
        pool_release(r, NULL, false);
        return st;
    }
    e->deadline_ns += tc__now_ns() - t0;
    /* Slots start empty; a connection beyond the first pool_size replaces a lost one. */
    if (atomic_fetch_add(&r->created, 1) >= (uint_fast64_t)r->cfg.pool_size)
        atomic_fetch_add(&r->reconnects, 1);
    e->c = c;
    return TC_OK;
}

/* ------------------------------------------------------------------ operations' frame */

static tc_status op_start(tc_remote *r, route *rt, exch *e)
{
    ex_init(e, r, NULL);
    e->rt = rt;
    if (rt && rt->deadline_ns != 0 && rt->deadline_ns < e->deadline_ns) {
        e->deadline_ns = rt->deadline_ns;
        e->shortened = true;
    }
    return pool_acquire(r, e);
}

/* A fresh deadline for the next round trip of an operation that makes many (clear). */
static void ex_rearm(exch *e)
{
    e->deadline_ns = tc__deadline_after_ms(e->r->cfg.command_timeout_ms);
    (void)ex_restore_timeouts(e); /* on failure the lower timeout only ends it sooner */
}

/* Returns the connection, tells the breaker what the operation learnt about the server
 * (a round trip timed out; or Redis answered), and counts a failed operation. Returns st.
 * A caller error (TC_ERR_ARG) or a non-integer for incr (TC_ERR_NOT_INT) says nothing
 * about Redis and is not counted. */
/* Before reading one node's replies of a batch sent to many nodes. The reads go node after
 * node, so a slow node must not use up the time of the others, whose replies may already
 * be waiting: each read gets the full command timeout from its turn. */
static void ex_turn(exch *e)
{
    ex_rearm(e);
}

static tc_status op_finish(exch *e, tc_status st)
{
    tc__free(e->askq);
    e->askq = NULL;
    if (e->c)
        pool_release(e->r, e->c, ex_reusable(e));
    e->c = NULL;
    if ((e->timed_out && !e->shortened) || (e->answered && !e->timed_out))
        breaker_note(e->r, !e->timed_out, e->timed_out, e->probe,
                     "Redis did not answer in time");
    if (st < 0 && st != TC_ERR_ARG && st != TC_ERR_NOT_INT)
        atomic_fetch_add(&e->r->errors, 1);
    return st;
}

/* ------------------------------------------------------------------ scripts */

static bool script_lookup(tc_remote *r, const char *source, char sha[41])
{
    bool found = false;
    pthread_mutex_lock(&r->script_mu);
    for (script_sha *s = r->scripts; s; s = s->next) {
        if (s->source == source) {
            memcpy(sha, s->sha, 41);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&r->script_mu);
    return found;
}

/* Remembers the SHA1 SCRIPT LOAD returned for source. Losing the race to another thread
 * or an allocation is harmless: the next call loads it again. */
static void script_remember(tc_remote *r, const char *source, const redisReply *x)
{
    if (x->type != REDIS_REPLY_STRING || x->len != 40)
        return;
    script_sha *n = tc__malloc(sizeof *n);
    if (!n)
        return;
    n->source = source;
    memcpy(n->sha, x->str, 40);
    n->sha[40] = '\0';
    pthread_mutex_lock(&r->script_mu);
    bool dup = false;
    for (script_sha *s = r->scripts; s; s = s->next)
        dup = dup || s->source == source;
    if (!dup) {
        n->next = r->scripts;
        r->scripts = n;
    }
    pthread_mutex_unlock(&r->script_mu);
    if (dup)
        tc__free(n);
}

/* Runs source on e's connection: EVALSHA when its SHA1 is known, EVAL again on NOSCRIPT
 * (the server lost its script cache: SCRIPT FLUSH, restart, failover; EVAL caches it
 * again, so the SHA1 we hold stays right). The first time, SCRIPT LOAD and EVAL go in one
 * round trip. *reply is the script's reply, possibly an error reply. */
static tc_status ex_script(exch *e, const char *source, int argc, const char **argv,
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
    if (script_lookup(e->r, source, sha)) {
        av[0] = "EVALSHA";
        al[0] = 7;
        av[1] = sha;
        al[1] = 40;
        st = ex_send(e, argc + 2, av, al);
        if (st == TC_OK)
            st = ex_recv(e, 1, reply);
        if (st == TC_OK && error_starts(*reply, "NOSCRIPT")) {
            freeReplyObject(*reply);
            *reply = NULL;
            av[0] = "EVAL";
            al[0] = 4;
            av[1] = source;
            al[1] = srclen;
            st = ex_send(e, argc + 2, av, al);
            if (st == TC_OK)
                st = ex_recv(e, 1, reply);
        }
    } else {
        const char *largv[3] = {"SCRIPT", "LOAD", source};
        size_t llens[3] = {6, 4, srclen};
        av[0] = "EVAL";
        al[0] = 4;
        av[1] = source;
        al[1] = srclen;
        redisReply *rep[2] = {NULL, NULL};
        st = ex_send(e, 3, largv, llens);
        if (st == TC_OK)
            st = ex_send(e, argc + 2, av, al);
        if (st == TC_OK)
            st = ex_recv(e, 2, rep);
        if (st == TC_OK) {
            script_remember(e->r, source, rep[0]);
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

static tc_status node_script(tc_remote *r, route *rt, const char *source, int argc,
                             const char **argv,
                            const size_t *lens, redisReply **reply)
{
    if (!r || !source || !reply || argc < 1 || !argv || !lens)
        return TC_ERR_ARG;
    *reply = NULL;
    exch e;
    tc_status st = op_start(r, rt, &e);
    if (st == TC_OK)
        st = ex_script(&e, source, argc, argv, lens, reply);
    return op_finish(&e, st);
}

static tc_status node_command(tc_remote *r, route *rt, int argc, const char **argv,
                              const size_t *lens,
                             redisReply **reply)
{
    if (!r || argc < 1 || !argv || !reply)
        return TC_ERR_ARG;
    *reply = NULL;
    exch e;
    tc_status st = op_start(r, rt, &e);
    if (st == TC_OK)
        st = ex_send(&e, argc, argv, lens);
    if (st == TC_OK)
        st = ex_recv(&e, 1, reply);
    return op_finish(&e, st);
}

/* The scripts. A publication is passed as the last two arguments, when there is one, and
 * happens only if the write did, in the same atomic script. */

/* KEYS[1] key; ARGV[1] value, ARGV[2] TTL in ms ("" none), [ARGV[3] channel, ARGV[4]
 * payload]. 1 stored, 0 present. */
static const char script_add[] =
    "local ok\n"
    "if ARGV[2] == '' then ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
    "else ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) end\n"
    "if not ok then return 0 end\n"
    "if #ARGV >= 4 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end\n"
    "return 1\n";

/* KEYS[1] key; ARGV[1] TTL in ms ("" none: PERSIST), [ARGV[2] channel, ARGV[3] payload].
 * 1 touched, 0 absent. EXISTS decides: PERSIST also answers 0 for a key without a TTL. */
static const char script_touch[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "if ARGV[1] == '' then redis.call('PERSIST', KEYS[1])\n"
    "else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
    "if #ARGV >= 3 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end\n"
    "return 1\n";

/* KEYS[1] key; ARGV[1] delta, ARGV[2] header magic ("" none), [ARGV[3] channel, ARGV[4]
 * payload]. {0} absent, {-1} not an integer (or overflow), {1, new value as a string}: as
 * a string because a Lua number is a double and would round counters above 2^53. A value
 * with a header is rewritten as its plain body first (KEEPTTL); if INCRBY then refuses the
 * body, the original bytes are put back so that a failed incr changes nothing. */
static const char script_incr[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return {0} end\n"
    "local orig = v\n"
    "local m = ARGV[2]\n"
    "if #m > 0 and string.sub(v, 1, #m) == m then\n"
    "  if #v < 6 then return {-1} end\n"
    "  local hl = string.byte(v, 5) + 256 * string.byte(v, 6)\n"
    "  if hl < 6 or hl < #m or hl > #v then return {-1} end\n"
    "  v = string.sub(v, hl + 1)\n"
    "  redis.call('SET', KEYS[1], v, 'KEEPTTL')\n"
    "end\n"
    "local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])\n"
    "if type(n) == 'table' and n.err then\n"
    "  if v ~= orig then redis.call('SET', KEYS[1], orig, 'KEEPTTL') end\n"
    "  return {-1}\n"
    "end\n"
    "if #ARGV >= 4 then redis.call('PUBLISH', ARGV[3], ARGV[4]) end\n"
    "return {1, redis.call('GET', KEYS[1])}\n";

static const char *const own_scripts[] = {script_add, script_touch, script_incr};

/* SCRIPT LOADs our scripts on a fresh connection in one round trip, so the first add,
 * touch and incr run by EVALSHA. A refusal (an ACL without +@scripting) is only logged:
 * the operations will report it themselves. */
static tc_status preload_scripts(tc_remote *r, redisContext *c)
{
    enum { N = sizeof own_scripts / sizeof own_scripts[0] };
    exch e;
    ex_init(&e, r, c);
    redisReply *rep[N] = {NULL};
    tc_status st = TC_OK;
    for (size_t i = 0; i < N && st == TC_OK; i++) {
        const char *argv[3] = {"SCRIPT", "LOAD", own_scripts[i]};
        size_t lens[3] = {6, 4, strlen(own_scripts[i])};
        st = ex_send(&e, 3, argv, lens);
    }
    if (st == TC_OK)
        st = ex_recv(&e, N, rep);
    for (size_t i = 0; st == TC_OK && i < N; i++) {
        if (rep[i]->type == REDIS_REPLY_STRING)
            script_remember(r, own_scripts[i], rep[i]);
        else
            bad_reply(r, rep[i], "SCRIPT LOAD");
    }
    free_replies(rep, N);
    if (st == TC_OK && !ex_restore_timeouts(&e))
        st = TC_ERR_IO;
    return st;
}

/* ------------------------------------------------------------------ open / close */

static void cluster_free(tc_remote *r);
static void sentinel_free(tc_remote *r);

void tc__remote_close(tc_remote *r)
{
    if (!r)
        return;
    cluster_free(r);
    sentinel_free(r);
    for (int i = 0; r->idle && i < r->nidle; i++)
        redisFree(r->idle[i]);
    tc__free(r->idle);
    script_sha *s = r->scripts;
    while (s) {
        script_sha *next = s->next;
        tc__free(s);
        s = next;
    }
    pthread_mutex_destroy(&r->pool_mu);
    pthread_cond_destroy(&r->pool_cv);
    pthread_mutex_destroy(&r->script_mu);
    tc__url_free(&r->url);
    wipe(r->url_copy);
    tc__free(r->url_copy);
    tc__free(r);
}

static bool init_locks(tc_remote *r)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return false;
    bool ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    if (ok && pthread_cond_init(&r->pool_cv, &ca) != 0)
        ok = false;
    pthread_condattr_destroy(&ca);
    if (!ok)
        return false;
    if (pthread_mutex_init(&r->pool_mu, NULL) != 0) {
        pthread_cond_destroy(&r->pool_cv);
        return false;
    }
    if (pthread_mutex_init(&r->script_mu, NULL) != 0) {
        pthread_cond_destroy(&r->pool_cv);
        pthread_mutex_destroy(&r->pool_mu);
        return false;
    }
    return true;
}

static tc_status cluster_open(tc_remote *r);
static tc_status sentinel_open(tc_remote *r);

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
    if (!init_locks(r)) {
        tc__free(r);
        return TC_ERR_NOMEM;
    }
    r->cfg = *cfg;
    r->url_copy = tc__strdup(cfg->url);
    r->idle = tc__calloc((size_t)cfg->pool_size, sizeof *r->idle);
    if (!r->url_copy || !r->idle) {
        tc__remote_close(r);
        return TC_ERR_NOMEM;
    }
    r->cfg.url = r->url_copy;
    r->nfree = cfg->pool_size;
    r->connect_tv = tv_from_ms(cfg->connect_timeout_ms);
    r->command_tv = tv_from_ms(cfg->command_timeout_ms);

    tc_status st = tc__url_parse(r->url_copy, &r->url);
    if (st == TC_ERR_ARG) {
        /* Never log the URL itself: it may carry a password. */
        if (has_prefix_ci(cfg->url, "rediss://"))
            RLOG(r, TC_LOG_ERROR, "rediss:// (TLS) is not available: this build uses "
                                  "hiredis 0.14, which has no TLS support");
        else
            RLOG(r, TC_LOG_ERROR, "the Redis URL is malformed (expected redis://[user[:"
                                  "password]@]host[:port][/db], unix:///path[?db=N] or "
                                  "redis-cluster://[user[:password]@]host:port[,host:port"
                                  "...] or redis-sentinel://[user[:password]@]host:port"
                                  "[,host:port...]/master-name[/db])");
    }
    if (st == TC_OK && (r->url.kind == TC_URL_CLUSTER || r->url.kind == TC_URL_SENTINEL)) {
        st = r->url.kind == TC_URL_CLUSTER ? cluster_open(r) : sentinel_open(r);
        if (st != TC_OK) {
            tc__remote_close(r);
            return st;
        }
        *out = r;
        return TC_OK;
    }
    redisContext *c = NULL;
    if (st == TC_OK)
        st = conn_new(r, cfg->command_timeout_ms, &c);
    if (st == TC_OK) {
        st = preload_scripts(r, c);
        if (st != TC_OK) {
            redisFree(c);
            c = NULL;
        }
    }
    if (st != TC_OK) {
        tc__remote_close(r);
        return st;
    }
    r->idle[r->nidle++] = c;
    atomic_store(&r->created, 1);
    *out = r;
    return TC_OK;
}

static tc_status cluster_connect(tc_remote *r, int timeout_ms, redisContext **out);
static tc_status sentinel_connect(tc_remote *r, int timeout_ms, redisContext **out);

tc_status tc__remote_connect(tc_remote *r, int timeout_ms, redisContext **out)
{
    if (!r || !out)
        return TC_ERR_ARG;
    if (r->cluster)
        return cluster_connect(r, timeout_ms, out);
    if (r->sentinel)
        return sentinel_connect(r, timeout_ms, out);
    /* Not gated by the breaker: the caller (a subscriber) paces its own retries and must
     * learn promptly that Redis is back. Its outcome still informs the pool. */
    tc_status st = conn_new(r, timeout_ms, out);
    breaker_record(r, st, false);
    return st;
}

/* ------------------------------------------------------------------ operations */

/* The PX argument for ttl_ms: its length, 0 for TC_TTL_FOREVER (no PX), -1 if invalid. */
static int ttl_arg(int ttl_ms, char buf[16])
{
    if (ttl_ms == TC_TTL_FOREVER)
        return 0;
    if (ttl_ms <= 0)
        return -1;
    return snprintf(buf, 16, "%d", ttl_ms);
}

static bool pub_ok(const tc_pub *pub)
{
    return !pub || (pub->channel && (pub->payload || pub->payload_len == 0));
}

/* Appends a publication's channel and payload to argv at *argc. */
static void pub_args(const tc_pub *pub, const char **argv, size_t *lens, int *argc)
{
    argv[*argc] = pub->channel;
    lens[(*argc)++] = pub->channel_len;
    argv[*argc] = pub->payload ? pub->payload : "";
    lens[(*argc)++] = pub->payload_len;
}

static tc_status ex_publish(exch *e, const tc_pub *pub)
{
    const char *argv[3] = {"PUBLISH"};
    size_t lens[3] = {7};
    int argc = 1;
    pub_args(pub, argv, lens, &argc);
    return ex_send(e, argc, argv, lens);
}

/* Interprets a GET reply and, when the TTL was asked, a PTTL reply (t: NULL if not). */
static tc_status take_value(tc_remote *r, const redisReply *g, const redisReply *t,
                            tc_ref **val, int64_t *pttl_ms)
{
    if (g->type != REDIS_REPLY_STRING && g->type != REDIS_REPLY_NIL)
        return bad_reply(r, g, "GET");
    if (t && t->type != REDIS_REPLY_INTEGER)
        return bad_reply(r, t, "PTTL");
    if (g->type == REDIS_REPLY_NIL)
        return TC_MISS;
    tc_ref *v = tc__ref_new(g->len);
    if (!v)
        return TC_ERR_NOMEM;
    if (g->len)
        memcpy(v->buf, g->str, g->len);
    v->len = g->len;
    *val = v;
    /* -1: no TTL. -2: the key expired between the GET and the PTTL; the value was live
     * when read, with no time left. */
    if (pttl_ms && t)
        *pttl_ms = t->integer >= -1 ? (int64_t)t->integer : 0;
    return TC_OK;
}

static tc_status node_get(tc_remote *r, route *rt, const char *rkey, size_t rklen, tc_ref **val,
                         int64_t *pttl_ms)
{
    if (val)
        *val = NULL;
    if (!r || !rkey || !val)
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, rt, &e);
    const char *argv[2] = {"GET", rkey};
    size_t lens[2] = {3, rklen};
    redisReply *rep[2] = {NULL, NULL};
    size_t nrep = pttl_ms ? 2 : 1; /* the TTL only bounds a local copy: asked if wanted */
    if (st == TC_OK)
        st = ex_send(&e, 2, argv, lens);
    argv[0] = "PTTL";
    lens[0] = 4;
    if (st == TC_OK && pttl_ms)
        st = ex_send(&e, 2, argv, lens);
    if (st == TC_OK)
        st = ex_recv(&e, nrep, rep);
    if (st == TC_OK)
        st = take_value(r, rep[0], rep[1], val, pttl_ms);
    free_replies(rep, nrep);
    return op_finish(&e, st);
}

/* A GET + PTTL batch on one node, in two halves: get_batch_send appends the commands (and
 * with flush, sends them), get_batch_recv reads the replies and gives the connection back.
 * A router sends the batches of all its nodes before it reads any. */
typedef struct get_batch {
    exch e;
    route rt;
    size_t n;
    size_t per; /* replies per key: GET, and PTTL when the TTLs are wanted */
    redisReply **rep;
    tc_status st;
} get_batch;

static void get_batch_send(get_batch *b, tc_remote *r, route *rt, size_t n,
                           const char *const *rkeys, const size_t *rklens, bool ttl,
                           bool flush)
{
    memset(&b->rt, 0, sizeof b->rt);
    b->n = n;
    b->per = ttl ? 2 : 1;
    b->rep = n <= SIZE_MAX / 2 / sizeof(redisReply *) ? tc__calloc(b->per * n, sizeof *b->rep)
                                                      : NULL;
    ex_init(&b->e, r, NULL);
    if (!b->rep) {
        b->st = TC_ERR_NOMEM;
        return;
    }
    b->st = op_start(r, rt, &b->e);
    for (size_t i = 0; i < n && b->st == TC_OK; i++) {
        const char *argv[2] = {"GET", rkeys[i]};
        size_t lens[2] = {3, rklens[i]};
        b->st = ex_send(&b->e, 2, argv, lens);
        argv[0] = "PTTL";
        lens[0] = 4;
        if (b->st == TC_OK && ttl)
            b->st = ex_send(&b->e, 2, argv, lens);
    }
    if (b->st == TC_OK && flush)
        b->st = ex_flush(&b->e);
}

static tc_status get_batch_recv(get_batch *b, tc_ref **vals, int64_t *pttls, tc_status *st_out)
{
    tc_remote *r = b->e.r;
    size_t n = b->n;
    tc_status st = b->st;
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    if (st == TC_OK) {
        ex_turn(&b->e);
        st = ex_recv(&b->e, b->per * n, b->rep);
    }
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        redisReply *ttl = b->per == 2 ? b->rep[2 * i + 1] : NULL;
        tc_status one = take_value(r, b->rep[b->per * i], ttl, &vals[i],
                                   pttls && ttl ? &pttls[i] : NULL);
        if (one == TC_OK || one == TC_MISS)
            st_out[i] = one;
        else
            st = one;
    }
    if (st != TC_OK) {
        for (size_t i = 0; i < n; i++) {
            tc__ref_drop(vals[i]);
            vals[i] = NULL;
        }
    }
    if (b->rep)
        free_replies(b->rep, b->per * n);
    tc__free(b->rep);
    b->rep = NULL;
    return op_finish(&b->e, st);
}

static tc_status node_get_many(tc_remote *r, route *rt, size_t n, const char *const *rkeys,
                              const size_t *rklens, tc_ref **vals, int64_t *pttls,
                              tc_status *st_out)
{
    if (!r || (n > 0 && (!rkeys || !rklens || !vals || !st_out)))
        return TC_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    if (n == 0)
        return TC_OK;
    get_batch b;
    get_batch_send(&b, r, rt, n, rkeys, rklens, pttls != NULL, false);
    return get_batch_recv(&b, vals, pttls, st_out);
}

/* Checks the replies of "MULTI, q commands, EXEC": OK, q x QUEUED and an array of q
 * results, which the caller inspects. The first error reply is the one reported (a
 * command refused while queued, e.g. OOM, makes EXEC answer EXECABORT). */
static tc_status tx_check(tc_remote *r, redisReply **rep, size_t q, const char *what)
{
    if (!is_status(rep[0], "OK"))
        return bad_reply(r, rep[0], "MULTI");
    for (size_t i = 1; i <= q; i++) {
        if (!is_status(rep[i], "QUEUED"))
            return bad_reply(r, rep[i], what);
    }
    const redisReply *x = rep[q + 1];
    if (x->type != REDIS_REPLY_ARRAY || x->elements != q)
        return bad_reply(r, x, "EXEC");
    for (size_t i = 0; i < q; i++) {
        if (is_error(x->element[i]))
            return bad_reply(r, x->element[i], what);
    }
    return TC_OK;
}

static tc_status node_set(tc_remote *r, route *rt, size_t n, const char *const *rkeys,
                         const size_t *rklens, const void *const *vals, const size_t *lens,
                         int ttl_ms, const tc_pub *pub)
{
    char ttl[16];
    int tl = ttl_arg(ttl_ms, ttl);
    if (!r || tl < 0 || !pub_ok(pub) || (n > 0 && (!rkeys || !rklens || !vals || !lens)))
        return TC_ERR_ARG;
    if (n == 0)
        return TC_OK;
    size_t q = n + (pub ? 1 : 0);
    if (q > SIZE_MAX / sizeof(redisReply *) - 2)
        return TC_ERR_NOMEM;
    redisReply **rep = tc__calloc(q + 2, sizeof *rep);
    if (!rep)
        return TC_ERR_NOMEM;
    exch e;
    tc_status st = op_start(r, rt, &e);
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    if (st == TC_OK)
        st = ex_send(&e, 1, &multi, &multi_len);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *argv[5] = {"SET", rkeys[i], vals[i] ? vals[i] : "", "PX", ttl};
        size_t alens[5] = {3, rklens[i], lens[i], 2, (size_t)tl};
        st = ex_send(&e, tl > 0 ? 5 : 3, argv, alens);
    }
    if (st == TC_OK && pub)
        st = ex_publish(&e, pub);
    if (st == TC_OK)
        st = ex_send(&e, 1, &exec, &exec_len);
    if (st == TC_OK)
        st = ex_recv(&e, q + 2, rep);
    if (st == TC_OK)
        st = tx_check(r, rep, q, "SET");
    if (st == TC_OK) {
        const redisReply *x = rep[q + 1];
        for (size_t i = 0; i < n && st == TC_OK; i++) {
            if (!is_status(x->element[i], "OK"))
                st = bad_reply(r, x->element[i], "SET");
        }
        if (st == TC_OK && pub && x->element[n]->type != REDIS_REPLY_INTEGER)
            st = bad_reply(r, x->element[n], "PUBLISH");
    }
    free_replies(rep, q + 2);
    tc__free(rep);
    return op_finish(&e, st);
}

/* Runs one of our scripts for key with args (and pub appended) on a pooled connection.
 * The exchange stays open so the caller interprets the reply before op_finish counts the
 * outcome; the caller calls op_finish whatever this returns. */
static tc_status run_own_script(tc_remote *r, route *rt, exch *e, const char *source,
                                const char *rkey,
                                size_t rklen, int nargs, const char **args,
                                const size_t *arglens, const tc_pub *pub, redisReply **reply)
{
    const char *argv[8] = {"1", rkey};
    size_t lens[8] = {1, rklen};
    int argc = 2;
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens[i];
    }
    if (pub)
        pub_args(pub, argv, lens, &argc);
    tc_status st = op_start(r, rt, e);
    if (st == TC_OK)
        st = ex_script(e, source, argc, argv, lens, reply);
    return st;
}

static tc_status node_add(tc_remote *r, route *rt, const char *rkey, size_t rklen, const void *val,
                         size_t len, int ttl_ms, const tc_pub *pub)
{
    char ttl[16];
    int tl = ttl_arg(ttl_ms, ttl);
    if (!r || !rkey || (!val && len > 0) || tl < 0 || !pub_ok(pub))
        return TC_ERR_ARG;
    const char *args[2] = {val ? val : "", ttl};
    size_t lens[2] = {len, (size_t)tl};
    redisReply *x = NULL;
    exch e;
    tc_status st = run_own_script(r, rt, &e, script_add, rkey, rklen, 2, args, lens, pub, &x);
    if (st == TC_OK) {
        if (x->type == REDIS_REPLY_INTEGER && (x->integer == 0 || x->integer == 1))
            st = x->integer ? TC_OK : TC_EXISTS;
        else
            st = bad_reply(r, x, "add");
        freeReplyObject(x);
    }
    return op_finish(&e, st);
}

static tc_status node_delete(tc_remote *r, route *rt, size_t n, const char *const *rkeys,
                            const size_t *rklens, const tc_pub *pub, size_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (!r || !pub_ok(pub) || (n > 0 && (!rkeys || !rklens)))
        return TC_ERR_ARG;
    if (n == 0)
        return TC_OK;
    if (n > SIZE_MAX / sizeof(size_t) - 1)
        return TC_ERR_NOMEM;
    const char **argv = tc__malloc(sizeof *argv * (n + 1));
    size_t *lens = tc__malloc(sizeof *lens * (n + 1));
    if (!argv || !lens) {
        tc__free(argv);
        tc__free(lens);
        return TC_ERR_NOMEM;
    }
    argv[0] = "UNLINK";
    lens[0] = 6;
    memcpy(argv + 1, rkeys, sizeof *argv * n);
    memcpy(lens + 1, rklens, sizeof *lens * n);
    size_t q = pub ? 2 : 1;
    redisReply *rep[4] = {NULL, NULL, NULL, NULL};
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    exch e;
    tc_status st = op_start(r, rt, &e);
    if (st == TC_OK)
        st = ex_send(&e, 1, &multi, &multi_len);
    if (st == TC_OK)
        st = ex_send(&e, (int)(n + 1), argv, lens);
    if (st == TC_OK && pub)
        st = ex_publish(&e, pub);
    if (st == TC_OK)
        st = ex_send(&e, 1, &exec, &exec_len);
    tc__free(argv);
    tc__free(lens);
    if (st == TC_OK)
        st = ex_recv(&e, q + 2, rep);
    if (st == TC_OK)
        st = tx_check(r, rep, q, "UNLINK");
    if (st == TC_OK) {
        const redisReply *x = rep[q + 1];
        if (x->element[0]->type != REDIS_REPLY_INTEGER || x->element[0]->integer < 0)
            st = bad_reply(r, x->element[0], "UNLINK");
        else if (pub && x->element[1]->type != REDIS_REPLY_INTEGER)
            st = bad_reply(r, x->element[1], "PUBLISH");
        else if (deleted)
            *deleted = (size_t)x->element[0]->integer;
    }
    free_replies(rep, q + 2);
    return op_finish(&e, st);
}

static tc_status node_touch(tc_remote *r, route *rt, const char *rkey, size_t rklen, int ttl_ms,
                           const tc_pub *pub)
{
    char ttl[16];
    int tl = ttl_arg(ttl_ms, ttl);
    if (!r || !rkey || tl < 0 || !pub_ok(pub))
        return TC_ERR_ARG;
    const char *args[1] = {ttl};
    size_t lens[1] = {(size_t)tl};
    redisReply *x = NULL;
    exch e;
    tc_status st = run_own_script(r, rt, &e, script_touch, rkey, rklen, 1, args, lens, pub, &x);
    if (st == TC_OK) {
        if (x->type == REDIS_REPLY_INTEGER && (x->integer == 0 || x->integer == 1))
            st = x->integer ? TC_OK : TC_MISS;
        else
            st = bad_reply(r, x, "touch");
        freeReplyObject(x);
    }
    return op_finish(&e, st);
}

/* A decimal int64 exactly as Redis writes one. */
static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    char buf[24];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || end != buf + n || buf[0] == ' ' || buf[0] == '+')
        return false;
    *out = (int64_t)v;
    return true;
}

static tc_status node_incr(tc_remote *r, route *rt, const char *rkey, size_t rklen, int64_t delta,
                          const void *hdr_magic, size_t hdr_magic_len, const tc_pub *pub,
                          int64_t *result)
{
    if (!r || !rkey || !result || (!hdr_magic && hdr_magic_len > 0) || !pub_ok(pub))
        return TC_ERR_ARG;
    char d[24];
    int dl = snprintf(d, sizeof d, "%" PRId64, delta);
    const char *args[2] = {d, hdr_magic ? hdr_magic : ""};
    size_t lens[2] = {(size_t)dl, hdr_magic_len};
    redisReply *x = NULL;
    exch e;
    tc_status st = run_own_script(r, rt, &e, script_incr, rkey, rklen, 2, args, lens, pub, &x);
    if (st != TC_OK)
        return op_finish(&e, st);
    const redisReply *code = x->type == REDIS_REPLY_ARRAY && x->elements >= 1 ? x->element[0]
                                                                              : NULL;
    if (!code || code->type != REDIS_REPLY_INTEGER) {
        st = bad_reply(r, code ? code : x, "incr");
    } else if (code->integer == 0 && x->elements == 1) {
        st = TC_MISS;
    } else if (code->integer == -1 && x->elements == 1) {
        st = TC_ERR_NOT_INT;
    } else if (code->integer == 1 && x->elements == 2 &&
               x->element[1]->type == REDIS_REPLY_STRING &&
               parse_i64(x->element[1]->str, x->element[1]->len, result)) {
        st = TC_OK;
    } else {
        st = bad_reply(r, x, "incr");
    }
    freeReplyObject(x);
    return op_finish(&e, st);
}

/* Appends UNLINK for the keys of a SCAN reply's key array (none if it is empty): one
 * command, or in a cluster one per key (the keys a node holds may span slots, and a
 * multi-key command must stay in one). Sets *sent to the number of commands sent. */
static tc_status ex_unlink_batch(exch *e, const redisReply *keys, size_t *sent)
{
    *sent = 0;
    if (!keys || keys->elements == 0)
        return TC_OK;
    size_t n = keys->elements;
    if (e->rt && e->rt->key_unlink) {
        tc_status st = TC_OK;
        for (size_t i = 0; i < n && st == TC_OK; i++) {
            const char *argv[2] = {"UNLINK", keys->element[i]->str};
            size_t lens[2] = {6, keys->element[i]->len};
            st = ex_send(e, 2, argv, lens);
            if (st == TC_OK)
                (*sent)++;
        }
        return st;
    }
    const char **argv = tc__malloc(sizeof *argv * (n + 1));
    size_t *lens = tc__malloc(sizeof *lens * (n + 1));
    tc_status st = TC_ERR_NOMEM;
    if (argv && lens) {
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < n; i++) {
            argv[i + 1] = keys->element[i]->str;
            lens[i + 1] = keys->element[i]->len;
        }
        st = ex_send(e, (int)(n + 1), argv, lens);
        *sent = st == TC_OK;
    }
    tc__free(argv);
    tc__free(lens);
    return st;
}

static tc_status ex_scan(exch *e, const char *cursor, const char *pattern)
{
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_SCAN_COUNT};
    size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, sizeof CLEAR_SCAN_COUNT - 1};
    return ex_send(e, 6, argv, lens);
}

/* A well-formed SCAN reply: [cursor digits, [key strings]]. */
static bool scan_reply_ok(const redisReply *x)
{
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2)
        return false;
    const redisReply *cur = x->element[0], *keys = x->element[1];
    if (cur->type != REDIS_REPLY_STRING || cur->len == 0 || cur->len > 20 ||
        keys->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < cur->len; i++) {
        if (cur->str[i] < '0' || cur->str[i] > '9')
            return false;
    }
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return false;
    }
    return keys->elements < INT_MAX;
}

static tc_status node_clear(tc_remote *r, route *rt, const char *pattern, const tc_pub *pub)
{
    if (!r || !pattern || !pub_ok(pub))
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, rt, &e);
    /* Each round trip carries the UNLINK of the previous batch with the next SCAN. */
    char cursor[24] = "0";
    redisReply *prev = NULL; /* the last SCAN reply, whose keys are still to unlink */
    redisReply **rep = NULL; /* the replies of one round trip */
    size_t cap = 0;
    bool done = false;
    while (st == TC_OK && !done) {
        size_t unlinking = 0;
        st = ex_unlink_batch(&e, prev ? prev->element[1] : NULL, &unlinking);
        if (st == TC_OK)
            st = ex_scan(&e, cursor, pattern);
        if (prev)
            freeReplyObject(prev);
        prev = NULL;
        if (st == TC_OK && unlinking + 1 > cap) {
            tc__free(rep);
            cap = unlinking + 1;
            rep = tc__calloc(cap, sizeof *rep);
            if (!rep) {
                cap = 0;
                st = TC_ERR_NOMEM;
                e.broken = true;
            }
        }
        if (st == TC_OK) {
            ex_rearm(&e); /* each batch has command_timeout_ms */
            st = ex_recv(&e, unlinking + 1, rep);
        }
        for (size_t i = 0; st == TC_OK && i < unlinking; i++) {
            if (rep[i]->type != REDIS_REPLY_INTEGER)
                st = bad_reply(r, rep[i], "UNLINK");
        }
        redisReply *scan = st == TC_OK ? rep[unlinking] : NULL;
        if (st == TC_OK && !scan_reply_ok(scan))
            st = bad_reply(r, scan, "SCAN");
        if (st == TC_OK) {
            memcpy(cursor, scan->element[0]->str, scan->element[0]->len);
            cursor[scan->element[0]->len] = '\0';
            done = strcmp(cursor, "0") == 0;
            prev = scan;
            rep[unlinking] = NULL;
        }
        if (rep)
            free_replies(rep, unlinking + 1 <= cap ? unlinking + 1 : cap);
    }
    if (st == TC_OK) {
        /* The last batch and the publication: the announcement follows the deletes. */
        size_t unlinking = 0;
        st = ex_unlink_batch(&e, prev->element[1], &unlinking);
        size_t n = unlinking + (pub ? 1 : 0);
        if (st == TC_OK && pub)
            st = ex_publish(&e, pub);
        if (st == TC_OK && n > cap) {
            tc__free(rep);
            cap = n;
            rep = tc__calloc(cap, sizeof *rep);
            if (!rep) {
                cap = 0;
                st = TC_ERR_NOMEM;
                e.broken = true;
            }
        }
        if (st == TC_OK && n > 0) {
            ex_rearm(&e);
            st = ex_recv(&e, n, rep);
        }
        for (size_t i = 0; st == TC_OK && i < n; i++) {
            if (rep[i]->type != REDIS_REPLY_INTEGER)
                st = bad_reply(r, rep[i], i < unlinking ? "UNLINK" : "PUBLISH");
        }
        if (rep)
            free_replies(rep, n <= cap ? n : cap);
    }
    tc__free(rep);
    if (prev)
        freeReplyObject(prev);
    return op_finish(&e, st);
}

static tc_status node_publish(tc_remote *r, route *rt, const tc_pub *pub)
{
    if (!r || !pub || !pub_ok(pub))
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, rt, &e);
    redisReply *x = NULL;
    if (st == TC_OK)
        st = ex_publish(&e, pub);
    if (st == TC_OK)
        st = ex_recv(&e, 1, &x);
    if (st == TC_OK && x->type != REDIS_REPLY_INTEGER)
        st = bad_reply(r, x, "PUBLISH");
    if (x)
        freeReplyObject(x);
    return op_finish(&e, st);
}

/* ------------------------------------------------------------------ Redis Cluster
 *
 * A cluster handle is a tc_remote whose own pool stays unused: it routes every operation to
 * a node, and each node is a complete single-server tc_remote (its pool, breaker, script
 * cache and counters), so a node behaves exactly as one Redis does. The router owns the
 * nodes and the slot table (slot -> node index), guarded by map_mu (a rwlock: operations
 * read it, redirects and CLUSTER SLOTS reloads write it). map_mu is a leaf lock, never held
 * during I/O or a log call. Nodes are only added, never freed before close, so a node
 * pointer read under the lock stays valid after it.
 *
 * Redirects: MOVED updates the slot's entry to the named node and retries there; ASK
 * retries once on the named node with ASKING before each command; TRYAGAIN / CLUSTERDOWN
 * retry. Every retry is bounded by the operation's deadline (command_timeout_ms from its
 * start) and by MAX_REDIRECTS. A node that cannot be reached reports its error for its
 * slots only (its breaker fails them fast); the slot map is reloaded when a node fails, at
 * most once per MAP_REFRESH_MS, so a failover promoting a replica is picked up. */

#define NSLOTS 16384
#define MAX_REDIRECTS 16
#define MAP_REFRESH_MS 1000

typedef struct tc_cluster {
    pthread_rwlock_t map_mu;
    tc_remote **nodes; /* nodes[0..nnodes) */
    int nnodes, cap;
    int16_t slots[NSLOTS]; /* node index, -1: no node known */
    atomic_uint rr;        /* round robin for keyless commands and the subscriber */
    _Atomic int64_t last_refresh_ns;
} tc_cluster;

uint16_t tc__crc16(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned tc__cluster_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open - key) - 1;
        const char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) {
            key = open + 1;
            len = (size_t)(close - key);
        }
    }
    return tc__crc16(key, len) & (NSLOTS - 1);
}

bool tc__remote_is_cluster(const tc_remote *r)
{
    return r && r->cluster;
}

/* A node: a single-server remote for host:port with the router's settings and
 * credentials, connecting lazily. */
static tc_remote *node_new(tc_remote *parent, const char *host, size_t hlen, int port)
{
    tc_remote *n = tc__calloc(1, sizeof *n);
    if (!n)
        return NULL;
    if (!init_locks(n)) {
        tc__free(n);
        return NULL;
    }
    n->cfg = parent->cfg;
    n->connect_tv = parent->connect_tv;
    n->command_tv = parent->command_tv;
    n->nfree = parent->cfg.pool_size;
    n->idle = tc__calloc((size_t)parent->cfg.pool_size, sizeof *n->idle);
    n->url.kind = TC_URL_TCP;
    n->url.port = port;
    n->url.db = parent->url.db;
    n->url.host = tc__strndup(host, hlen);
    bool ok = n->idle && n->url.host;
    if (parent->url.user && !(n->url.user = tc__strdup(parent->url.user)))
        ok = false;
    if (parent->url.password && !(n->url.password = tc__strdup(parent->url.password)))
        ok = false;
    if (!ok) {
        tc__remote_close(n);
        return NULL;
    }
    return n;
}

/* The index of the node host:port, added if new. Caller holds map_mu for writing. -1 on
 * allocation failure. */
static int node_index_locked(tc_remote *r, const char *host, size_t hlen, int port)
{
    tc_cluster *cl = r->cluster;
    for (int i = 0; i < cl->nnodes; i++) {
        const tc_url *u = &cl->nodes[i]->url;
        if (u->port == port && strlen(u->host) == hlen && memcmp(u->host, host, hlen) == 0)
            return i;
    }
    if (cl->nnodes == cl->cap) {
        int cap = cl->cap ? 2 * cl->cap : 8;
        tc_remote **nn = tc__realloc(cl->nodes, sizeof *nn * (size_t)cap);
        if (!nn)
            return -1;
        cl->nodes = nn;
        cl->cap = cap;
    }
    tc_remote *n = node_new(r, host, hlen, port);
    if (!n)
        return -1;
    cl->nodes[cl->nnodes] = n;
    return cl->nnodes++;
}

static tc_remote *node_for_slot(tc_remote *r, unsigned slot)
{
    tc_cluster *cl = r->cluster;
    pthread_rwlock_rdlock(&cl->map_mu);
    int i = cl->slots[slot];
    tc_remote *n = i >= 0 ? cl->nodes[i] : NULL;
    pthread_rwlock_unlock(&cl->map_mu);
    return n;
}

/* The i-th node known (wrapping), or NULL if none. */
static tc_remote *node_nth(tc_remote *r, unsigned i, bool masters_only)
{
    tc_cluster *cl = r->cluster;
    tc_remote *n = NULL;
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
static tc_remote *map_set_slot(tc_remote *r, int slot, const char *host, int port)
{
    tc_cluster *cl = r->cluster;
    pthread_rwlock_wrlock(&cl->map_mu);
    int i = node_index_locked(r, host, strlen(host), port);
    if (i >= 0 && slot >= 0)
        cl->slots[slot] = (int16_t)i;
    tc_remote *n = i >= 0 ? cl->nodes[i] : NULL;
    pthread_rwlock_unlock(&cl->map_mu);
    return n;
}

/* Reloads the slot table from CLUSTER SLOTS asked of `from`. TC_OK if it got a map. */
static tc_status map_load_from(tc_remote *r, tc_remote *from)
{
    const char *argv[2] = {"CLUSTER", "SLOTS"};
    size_t lens[2] = {7, 5};
    redisReply *x = NULL;
    tc_status st = node_command(from, NULL, 2, argv, lens, &x);
    if (st != TC_OK)
        return st;
    if (x->type != REDIS_REPLY_ARRAY || x->elements == 0) {
        st = bad_reply(r, x, "CLUSTER SLOTS");
        freeReplyObject(x);
        return st == TC_OK ? TC_ERR_PROTO : st;
    }
    tc_cluster *cl = r->cluster;
    pthread_rwlock_wrlock(&cl->map_mu);
    for (size_t i = 0; i < x->elements && st == TC_OK; i++) {
        const redisReply *e = x->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
            e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
            e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
            st = TC_ERR_PROTO;
            break;
        }
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *h = e->element[2]->element[0];
        long long port = e->element[2]->element[1]->integer;
        if (lo < 0 || hi >= NSLOTS || lo > hi || port <= 0 || port > 65535) {
            st = TC_ERR_PROTO;
            break;
        }
        /* An empty or "?" host: the node we asked stands for it. */
        const char *host = h->str;
        size_t hlen = h->len;
        if (hlen == 0 || (hlen == 1 && host[0] == '?')) {
            host = from->url.host;
            hlen = strlen(host);
        }
        int idx = node_index_locked(r, host, hlen, (int)port);
        if (idx < 0) {
            st = TC_ERR_NOMEM;
            break;
        }
        for (long long sl = lo; sl <= hi; sl++)
            cl->slots[sl] = (int16_t)idx;
    }
    pthread_rwlock_unlock(&cl->map_mu);
    freeReplyObject(x);
    if (st == TC_OK) {
        atomic_fetch_add(&r->map_refreshes, 1);
        atomic_store(&cl->last_refresh_ns, tc__now_ns());
    } else if (st == TC_ERR_PROTO) {
        RLOG(r, TC_LOG_WARN, "unexpected CLUSTER SLOTS reply");
    }
    return st;
}

/* Reloads the slot table from the first node that answers. */
static tc_status map_refresh(tc_remote *r)
{
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&r->cluster->rr, 1);
    int n = 0;
    pthread_rwlock_rdlock(&r->cluster->map_mu);
    n = r->cluster->nnodes;
    pthread_rwlock_unlock(&r->cluster->map_mu);
    for (int k = 0; k < n && st != TC_OK; k++) {
        tc_remote *node = node_nth(r, start + (unsigned)k, false);
        if (node)
            st = map_load_from(r, node);
    }
    return st;
}

/* After a node failed to answer: reload the map unless that was done recently. */
static void map_refresh_soon(tc_remote *r)
{
    int64_t last = atomic_load(&r->cluster->last_refresh_ns);
    int64_t now = tc__now_ns();
    if (now - last < (int64_t)MAP_REFRESH_MS * 1000000)
        return;
    if (!atomic_compare_exchange_strong(&r->cluster->last_refresh_ns, &last, now))
        return; /* another thread does it */
    map_refresh(r);
}

static void cluster_free(tc_remote *r)
{
    tc_cluster *cl = r->cluster;
    if (!cl)
        return;
    for (int i = 0; i < cl->nnodes; i++)
        tc__remote_close(cl->nodes[i]);
    tc__free(cl->nodes);
    pthread_rwlock_destroy(&cl->map_mu);
    tc__free(cl);
    r->cluster = NULL;
}

static tc_status cluster_open(tc_remote *r)
{
    tc_cluster *cl = tc__calloc(1, sizeof *cl);
    if (!cl)
        return TC_ERR_NOMEM;
    if (pthread_rwlock_init(&cl->map_mu, NULL) != 0) {
        tc__free(cl);
        return TC_ERR_NOMEM;
    }
    for (int i = 0; i < NSLOTS; i++)
        cl->slots[i] = -1;
    r->cluster = cl;
    tc_status st = TC_ERR_IO;
    for (int i = 0; i < r->url.nseeds && st != TC_OK; i++) {
        pthread_rwlock_wrlock(&cl->map_mu);
        int idx = node_index_locked(r, r->url.seed_hosts[i], strlen(r->url.seed_hosts[i]),
                                    r->url.seed_ports[i]);
        tc_remote *seed = idx >= 0 ? cl->nodes[idx] : NULL;
        pthread_rwlock_unlock(&cl->map_mu);
        if (!seed)
            return TC_ERR_NOMEM;
        st = map_load_from(r, seed);
        if (st == TC_ERR_AUTH || st == TC_ERR_NOMEM)
            break;
    }
    if (st == TC_ERR_PROTO)
        RLOG(r, TC_LOG_ERROR, "redis-cluster:// names a server that is not a working Redis "
                              "Cluster (CLUSTER SLOTS failed)");
    else if (st != TC_OK)
        RLOG(r, TC_LOG_ERROR, "no seed node of the Redis Cluster answered: %s",
             tc_strerror(st));
    return st;
}

static void cluster_stats(tc_remote *r, tc_remote_stats *out)
{
    memset(out, 0, sizeof *out);
    tc_cluster *cl = r->cluster;
    pthread_rwlock_rdlock(&cl->map_mu);
    for (int i = 0; i < cl->nnodes; i++) {
        tc_remote *n = cl->nodes[i];
        out->round_trips += atomic_load(&n->round_trips);
        out->commands += atomic_load(&n->commands);
        out->errors += atomic_load(&n->errors);
        out->reconnects += atomic_load(&n->reconnects);
    }
    pthread_rwlock_unlock(&cl->map_mu);
    out->errors += atomic_load(&r->errors);
    out->moved = atomic_load(&r->moved);
    out->ask = atomic_load(&r->ask);
    out->map_refreshes = atomic_load(&r->map_refreshes);
}

static tc_status cluster_connect(tc_remote *r, int timeout_ms, redisContext **out)
{
    /* Classic pub/sub reaches every node of a cluster: any node will do. */
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&r->cluster->rr, 1);
    int n;
    pthread_rwlock_rdlock(&r->cluster->map_mu);
    n = r->cluster->nnodes;
    pthread_rwlock_unlock(&r->cluster->map_mu);
    for (int k = 0; k < n && st != TC_OK; k++) {
        tc_remote *node = node_nth(r, start + (unsigned)k, true);
        if (!node)
            break;
        st = conn_new(node, timeout_ms, out);
        breaker_record(node, st, false);
    }
    if (st != TC_OK)
        map_refresh_soon(r);
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

static tc_status sentinel_update(tc_remote *r);
static tc_remote *sentinel_master(tc_remote *r);

int tc__remote_masters(tc_remote *r, tc_remote **out, int cap)
{
    if (r->sentinel) { /* asked now, as a subscriber's connect always did */
        sentinel_update(r);
        out[0] = sentinel_master(r);
        return 1;
    }
    if (!r->cluster) {
        out[0] = r;
        return 1;
    }
    tc_cluster *cl = r->cluster;
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

tc_status tc__remote_refresh_map(tc_remote *r)
{
    return r->cluster ? map_refresh(r) : TC_OK;
}

void tc__remote_addr(const tc_remote *r, const char **host, int *port)
{
    *host = r->url.host;
    *port = r->url.port;
}

/* One operation, as the router hands it to a node. */
typedef enum op_kind {
    OP_GET, OP_GET_MANY, OP_SET, OP_ADD, OP_DELETE, OP_TOUCH, OP_INCR, OP_SCRIPT, OP_COMMAND
} op_kind;

typedef struct op {
    op_kind kind;
    size_t n;
    const char *const *keys;
    const size_t *klens;
    tc_ref **vals_out;
    int64_t *pttls;
    tc_status *st_out;
    const void *const *vals;
    const size_t *lens;
    int ttl_ms;
    const tc_pub *pub;
    size_t *deleted;
    int64_t delta;
    const void *magic;
    size_t magic_len;
    int64_t *result;
    const char *source;
    int argc;
    const char **argv;
    const size_t *alens;
    redisReply **reply;
} op;

static tc_status node_run(tc_remote *node, route *rt, const op *o)
{
    switch (o->kind) {
    case OP_GET:
        return node_get(node, rt, o->keys[0], o->klens[0], o->vals_out, o->pttls);
    case OP_GET_MANY:
        return node_get_many(node, rt, o->n, o->keys, o->klens, o->vals_out, o->pttls,
                             o->st_out);
    case OP_SET:
        return node_set(node, rt, o->n, o->keys, o->klens, o->vals, o->lens, o->ttl_ms,
                        o->pub);
    case OP_ADD:
        return node_add(node, rt, o->keys[0], o->klens[0], o->vals[0], o->lens[0], o->ttl_ms,
                        o->pub);
    case OP_DELETE:
        return node_delete(node, rt, o->n, o->keys, o->klens, o->pub, o->deleted);
    case OP_TOUCH:
        return node_touch(node, rt, o->keys[0], o->klens[0], o->ttl_ms, o->pub);
    case OP_INCR:
        return node_incr(node, rt, o->keys[0], o->klens[0], o->delta, o->magic, o->magic_len,
                         o->pub, o->result);
    case OP_SCRIPT:
        return node_script(node, rt, o->source, o->argc, o->argv, o->alens, o->reply);
    case OP_COMMAND:
        return node_command(node, rt, o->argc, o->argv, o->alens, o->reply);
    }
    return TC_ERR_ARG;
}

/* Runs o on the node that serves slot, following redirects until the deadline. */
static tc_status cluster_run(tc_remote *r, unsigned slot, const op *o)
{
    int64_t deadline = tc__deadline_after_ms(r->cfg.command_timeout_ms);
    tc_remote *ask_node = NULL;
    tc_status st = TC_ERR_IO;
    for (int attempt = 0;; attempt++) {
        tc_remote *node = ask_node ? ask_node : node_for_slot(r, slot);
        if (!node) {
            map_refresh_soon(r);
            node = node_for_slot(r, slot);
            if (!node)
                return TC_ERR_IO; /* no node serves this slot */
        }
        route rt;
        memset(&rt, 0, sizeof rt);
        rt.asking = ask_node != NULL;
        rt.deadline_ns = deadline; /* retries share the first attempt's deadline */
        ask_node = NULL;
        st = node_run(node, &rt, o);
        if (rt.kind == REDIR_NONE) {
            if (st == TC_ERR_IO || st == TC_ERR_TIMEOUT)
                map_refresh_soon(r);
            return st;
        }
        if (attempt + 1 >= MAX_REDIRECTS || tc__now_ns() >= deadline)
            return st;
        if ((o->kind == OP_SCRIPT || o->kind == OP_COMMAND) && *o->reply) {
            freeReplyObject(*o->reply);
            *o->reply = NULL;
        }
        const char *host = rt.host[0] ? rt.host : node->url.host;
        if (rt.kind == REDIR_MOVED) {
            atomic_fetch_add(&r->moved, 1);
            if (!map_set_slot(r, rt.slot, host, rt.port))
                return TC_ERR_NOMEM;
        } else if (rt.kind == REDIR_ASK) {
            atomic_fetch_add(&r->ask, 1);
            ask_node = map_set_slot(r, -1, host, rt.port);
            if (!ask_node)
                return TC_ERR_NOMEM;
        }
        /* TRYAGAIN / CLUSTERDOWN: the same node again, within the deadline. */
    }
}

static unsigned key_slot(const op *o, size_t i)
{
    return tc__cluster_slot(o->keys[i], o->klens[i]);
}

static tc_status cluster_single(tc_remote *r, op *o)
{
    return cluster_run(r, key_slot(o, 0), o);
}

/* Indices 0..n-1 sorted by slot (stable), so that keys of a slot form runs. */
static int cmp_slot(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b; /* (slot << 16 | 0) sort keys, then index */
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1];
}

/* order[2*i] = slot, order[2*i+1] = index, sorted by slot. */
static uint32_t *by_slot(const op *o)
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
    size_t beg, n;   /* its keys: keys[beg .. beg + n) */
    unsigned slot;
    tc_remote *node; /* NULL: no node known for the slot (yet) */
    tc_status st;    /* its transaction's outcome */
    bool redir;      /* it met a redirect: routed again on its own */
} wgroup;

/* One node's transactions, pipelined in one round trip: wbatch_send puts them on the wire,
 * wbatch_recv reads the replies and gives the connection back. */
typedef struct wbatch {
    exch e;
    size_t g0, g1; /* its groups: g[g0 .. g1) */
    size_t nrep;
    redisReply **rep;
    tc_status st;  /* the send's outcome */
} wbatch;

typedef struct wplan {
    const op *o;
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
}

/* Lays o out as described at wgroup and splits the groups into one batch per node. */
static tc_status plan_make(tc_remote *r, const op *o, wplan *p)
{
    memset(p, 0, sizeof *p);
    p->o = o;
    size_t m = o->n;
    bool set = o->kind == OP_SET;
    p->tl = set ? ttl_arg(o->ttl_ms, p->ttl) : 0;
    uint32_t *ord = by_slot(o);
    p->keys = tc__malloc(sizeof *p->keys * m);
    p->klens = tc__malloc(sizeof *p->klens * m);
    p->vals = set ? tc__malloc(sizeof *p->vals * m) : NULL;
    p->lens = set ? tc__malloc(sizeof *p->lens * m) : NULL;
    p->argv = set ? NULL : tc__malloc(sizeof *p->argv * (m + 1));
    p->alens = set ? NULL : tc__malloc(sizeof *p->alens * (m + 1));
    p->g = tc__calloc(m, sizeof *p->g);
    p->b = tc__calloc(m, sizeof *p->b);
    if (!ord || !p->keys || !p->klens || (set ? !p->vals || !p->lens : !p->argv || !p->alens) ||
        !p->g || !p->b) {
        tc__free(ord);
        return TC_ERR_NOMEM;
    }
    /* The groups in slot order; beg indexes ord until the layout below. */
    for (size_t i = 0; i < m; i++) {
        if (i == 0 || ord[2 * i] != ord[2 * (i - 1)]) {
            wgroup *g = &p->g[p->ng++];
            g->beg = i;
            g->slot = ord[2 * i];
            g->node = node_for_slot(r, g->slot);
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

/* Appends g's transaction: MULTI, the writes, its own PUBLISH of the invalidation, EXEC. */
static tc_status wgroup_send(wplan *p, exch *e, const wgroup *g)
{
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    tc_status st = ex_send(e, 1, &multi, &multi_len);
    if (p->vals) {
        for (size_t i = g->beg; i < g->beg + g->n && st == TC_OK; i++) {
            const char *av[5] = {"SET", p->keys[i], p->vals[i] ? p->vals[i] : "", "PX",
                                 p->ttl};
            size_t al[5] = {3, p->klens[i], p->lens[i], 2, (size_t)p->tl};
            st = ex_send(e, p->tl > 0 ? 5 : 3, av, al);
        }
    } else if (st == TC_OK) {
        p->argv[0] = "UNLINK";
        p->alens[0] = 6;
        memcpy(p->argv + 1, p->keys + g->beg, sizeof *p->argv * g->n);
        memcpy(p->alens + 1, p->klens + g->beg, sizeof *p->alens * g->n);
        st = ex_send(e, (int)(g->n + 1), p->argv, p->alens);
    }
    if (st == TC_OK && p->o->pub)
        st = ex_publish(e, p->o->pub);
    if (st == TC_OK)
        st = ex_send(e, 1, &exec, &exec_len);
    return st;
}

/* Sets g->st and g->redir from its replies (MULTI, the QUEUED, EXEC's array); a delete adds
 * the keys it removed to *deleted. */
static void wgroup_check(const wplan *p, tc_remote *r, wgroup *g, redisReply **rep,
                         size_t *deleted)
{
    size_t q = wgroup_queued(p, g);
    route rt;
    memset(&rt, 0, sizeof rt);
    note_redirects(&rt, rep, q + 2);
    g->redir = rt.kind != REDIR_NONE;
    g->st = g->redir ? TC_ERR_PROTO : tx_check(r, rep, q, p->vals ? "SET" : "UNLINK");
    if (g->st != TC_OK)
        return;
    const redisReply *x = rep[q + 1];
    if (p->vals) {
        for (size_t i = 0; i < g->n && g->st == TC_OK; i++) {
            if (!is_status(x->element[i], "OK"))
                g->st = bad_reply(r, x->element[i], "SET");
        }
    } else if (x->element[0]->type != REDIS_REPLY_INTEGER || x->element[0]->integer < 0) {
        g->st = bad_reply(r, x->element[0], "UNLINK");
    } else {
        *deleted += (size_t)x->element[0]->integer;
    }
    if (g->st == TC_OK && p->o->pub && x->element[q - 1]->type != REDIS_REPLY_INTEGER)
        g->st = bad_reply(r, x->element[q - 1], "PUBLISH");
}

/* Takes a connection to b's node and puts all its transactions on the wire, without waiting
 * for the replies. A failure is kept in b->st for wbatch_recv. */
static void wbatch_send(wplan *p, wbatch *b)
{
    tc_remote *node = p->g[b->g0].node;
    b->nrep = 0;
    for (size_t j = b->g0; j < b->g1; j++)
        b->nrep += wgroup_queued(p, &p->g[j]) + 2;
    b->rep = tc__calloc(b->nrep, sizeof *b->rep);
    ex_init(&b->e, node, NULL);
    if (!b->rep) {
        b->st = TC_ERR_NOMEM;
        return;
    }
    b->st = op_start(node, NULL, &b->e);
    for (size_t j = b->g0; j < b->g1 && b->st == TC_OK; j++)
        b->st = wgroup_send(p, &b->e, &p->g[j]);
    if (b->st == TC_OK)
        b->st = ex_flush(&b->e);
}

/* Reads b's replies into its groups' outcomes and gives the connection back. Returns the
 * exchange's status (I/O, timeout): on failure no group's outcome is known. */
static tc_status wbatch_recv(wplan *p, wbatch *b, size_t *deleted)
{
    tc_status st = b->st;
    if (st == TC_OK) {
        ex_turn(&b->e);
        st = ex_recv(&b->e, b->nrep, b->rep);
    }
    redisReply **rep = b->rep;
    for (size_t j = b->g0; j < b->g1 && st == TC_OK; j++) {
        wgroup_check(p, b->e.r, &p->g[j], rep, deleted);
        rep += wgroup_queued(p, &p->g[j]) + 2;
    }
    if (b->rep)
        free_replies(b->rep, b->nrep);
    tc__free(b->rep);
    b->rep = NULL;
    return op_finish(&b->e, st);
}

/* Routes g again on its own: cluster_run finds its node and follows its redirects. */
static void wgroup_redo(tc_remote *r, wplan *p, wgroup *g, size_t *deleted)
{
    op sub = *p->o;
    size_t d = 0;
    sub.n = g->n;
    sub.keys = p->keys + g->beg;
    sub.klens = p->klens + g->beg;
    sub.vals = p->vals ? p->vals + g->beg : NULL;
    sub.lens = p->lens ? p->lens + g->beg : NULL;
    sub.deleted = &d;
    g->st = cluster_run(r, g->slot, &sub);
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
static tc_status cluster_write_by_slot(tc_remote *r, const op *o)
{
    wplan p;
    tc_status st = plan_make(r, o, &p);
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
        map_refresh_soon(r);
    for (size_t j = 0; j < p.ng && st == TC_OK; j++) {
        wgroup *g = &p.g[j];
        if (g->redir || !g->node)
            wgroup_redo(r, &p, g, &deleted);
        st = g->st;
    }
    if (o->deleted)
        *o->deleted = st == TC_OK ? deleted : 0;
    plan_free(&p);
    return st;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(tc_remote *const *)a, y = (uintptr_t)*(tc_remote *const *)b;
    return x < y ? -1 : x > y;
}

/* GETs over many slots: one pipelined batch per node, all sent before any is read, so the
 * nodes work in parallel and the call takes about one round trip. Connections are taken
 * in the order of the nodes' addresses, so two threads can never each hold what the other
 * waits for. A node batch that meets a redirect is redone key by key (each following its
 * own redirects). */
static tc_status cluster_get_many(tc_remote *r, const op *o)
{
    size_t n = o->n;
    tc_remote **owner = tc__calloc(n, sizeof *owner);
    tc_remote **nodes = tc__calloc(n, sizeof *nodes);
    size_t *beg = tc__calloc(n + 1, sizeof *beg);
    bool *done = tc__calloc(n, sizeof *done);
    const char **keys = tc__malloc(sizeof *keys * n);
    size_t *klens = tc__malloc(sizeof *klens * n);
    size_t *idx = tc__malloc(sizeof *idx * n);
    tc_ref **vals = tc__calloc(n, sizeof *vals);
    int64_t *pttls = tc__malloc(sizeof *pttls * n);
    tc_status *sts = tc__malloc(sizeof *sts * n);
    get_batch *batches = tc__calloc(n, sizeof *batches);
    tc_status st = TC_OK;
    if (!owner || !nodes || !beg || !done || !keys || !klens || !idx || !vals || !pttls ||
        !sts || !batches)
        st = TC_ERR_NOMEM;
    size_t nn = 0; /* distinct nodes */
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        owner[i] = node_for_slot(r, key_slot(o, i));
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
        get_batch_send(&batches[j], nodes[j], &batches[j].rt, beg[j + 1] - beg[j],
                       keys + beg[j], klens + beg[j], o->pttls != NULL, true);
    size_t sent = st == TC_OK ? nn : 0;
    /* Every batch sent is read (or fails), whatever the others did, so each gives its
     * connection back; the map is reloaded only then (the batches hold connections). */
    bool refresh = false;
    for (size_t j = 0; j < sent; j++) {
        get_batch *b = &batches[j];
        size_t m = beg[j + 1] - beg[j];
        tc_status one = get_batch_recv(b, vals + beg[j], pttls + beg[j], sts + beg[j]);
        if (b->rt.kind != REDIR_NONE) {
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
            o->st_out[i] = sts[q];
        }
    }
    if (refresh)
        map_refresh_soon(r);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        if (done[i])
            continue;
        op g = {.kind = OP_GET, .n = 1, .keys = &o->keys[i], .klens = &o->klens[i],
                .vals_out = &o->vals_out[i], .pttls = o->pttls ? &o->pttls[i] : NULL};
        tc_status one = cluster_single(r, &g);
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
    tc__free(batches);
    return st;
}

static tc_status cluster_publish(tc_remote *r, const tc_pub *pub)
{
    tc_status st = TC_ERR_IO;
    unsigned start = atomic_fetch_add(&r->cluster->rr, 1);
    for (unsigned k = 0; k < 3 && st != TC_OK; k++) {
        tc_remote *node = node_nth(r, start + k, true);
        if (!node)
            break;
        st = node_publish(node, NULL, pub);
    }
    return st;
}

/* SCAN + UNLINK on every master (a key lives on exactly one), then one publication. */
static tc_status cluster_clear(tc_remote *r, const char *pattern, const tc_pub *pub)
{
    tc_cluster *cl = r->cluster;
    tc_status st = TC_OK;
    int n;
    pthread_rwlock_rdlock(&cl->map_mu);
    n = cl->nnodes;
    pthread_rwlock_unlock(&cl->map_mu);
    for (int i = 0; i < n; i++) {
        pthread_rwlock_rdlock(&cl->map_mu);
        tc_remote *node = cl->nodes[i];
        bool master = false;
        for (int s = 0; s < NSLOTS && !master; s++)
            master = cl->slots[s] == i;
        pthread_rwlock_unlock(&cl->map_mu);
        if (!master)
            continue;
        route rt;
        memset(&rt, 0, sizeof rt);
        rt.key_unlink = true;
        tc_status one = node_clear(node, &rt, pattern, NULL);
        if (one != TC_OK && st == TC_OK)
            st = one;
    }
    if (pub) {
        tc_status one = cluster_publish(r, pub);
        if (st == TC_OK)
            st = one;
    }
    return st;
}

/* Commands that name no key go to any master; the others are routed by argv[1]. */
static bool keyless_command(int argc, const char **argv)
{
    static const char *const keyless[] = {"CONFIG", "PING", "PUBLISH", "INFO", "CLUSTER",
                                          "SCRIPT", "CLIENT", "DBSIZE", "TIME", NULL};
    if (argc < 2)
        return true;
    for (int i = 0; keyless[i]; i++) {
        if (strcasecmp(argv[0], keyless[i]) == 0)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------ Redis Sentinel
 *
 * A Sentinel handle is a tc_remote whose own pool stays unused: every operation goes to
 * the current master, a node (a single-server tc_remote, as in a cluster) found by asking
 * the sentinels SENTINEL get-master-addr-by-name. When an operation on the master fails
 * (connection lost or refused, a timeout, or an error reply such as READONLY from a master
 * demoted to a replica), the sentinels are asked again, at most every SENTINEL_ASK_MS; a
 * new address becomes the master for the next operations (that failed operation is not
 * retried: it may have been applied). The subscriber asks them each time it connects, so
 * after a failover it resubscribes on the new master, which flushes the local tier. It also
 * holds a watch (tc__remote_sentinel_watch) on "+switch-master", which a sentinel publishes
 * the moment it names the new master: the master switches then, without waiting for an
 * error (the old master keeps answering until the sentinels demote it, seconds later).
 * Sentinels are asked with the URL's sentinel_user / sentinel_password, if any.
 * Locks: sent_mu guards master and the list of former masters (kept until close so that
 * a node pointer read under the lock stays valid); a leaf lock, never held during I/O. */

#define SENTINEL_ASK_MS 200

typedef struct tc_sentinel {
    pthread_mutex_t mu;
    tc_remote **sentinels;
    int nsentinels;
    tc_remote *master;
    tc_remote **former;
    int nformer;
    _Atomic int64_t last_ask_ns;
    atomic_int last_good; /* the sentinel that answered last: asked first next time */
    unsigned switches;    /* under mu: master changes so far */
    void (*ask_hook)(void *arg); /* under mu; tests only (tc__remote_sentinel_ask_hook) */
    void *ask_hook_arg;
} tc_sentinel;

static tc_remote *sentinel_master(tc_remote *r)
{
    pthread_mutex_lock(&r->sentinel->mu);
    tc_remote *m = r->sentinel->master;
    pthread_mutex_unlock(&r->sentinel->mu);
    return m;
}

/* Asks the sentinels for the master's address; TC_OK with host (caller frees) and port. */
static tc_status sentinel_ask(tc_remote *r, char **host, int *port)
{
    tc_sentinel *sn = r->sentinel;
    const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", r->url.master_name};
    size_t lens[3] = {8, 23, strlen(r->url.master_name)};
    tc_status st = TC_ERR_IO;
    int first = atomic_load(&sn->last_good);
    for (int k = 0; k < sn->nsentinels; k++) {
        int i = (first + k) % sn->nsentinels;
        redisReply *x = NULL;
        st = node_command(sn->sentinels[i], NULL, 3, argv, lens, &x);
        if (st != TC_OK)
            continue;
        long p = 0;
        if (x->type == REDIS_REPLY_ARRAY && x->elements == 2 &&
            x->element[0]->type == REDIS_REPLY_STRING &&
            x->element[1]->type == REDIS_REPLY_STRING &&
            parse_uint(x->element[1]->str, x->element[1]->len, 65535, &p) && p > 0) {
            *host = tc__strndup(x->element[0]->str, x->element[0]->len);
            *port = (int)p;
            freeReplyObject(x);
            atomic_store(&sn->last_good, i);
            return *host ? TC_OK : TC_ERR_NOMEM;
        }
        if (x->type == REDIS_REPLY_NIL)
            RLOG(r, TC_LOG_ERROR, "Sentinel knows no master named %s", r->url.master_name);
        else
            bad_reply(r, x, "SENTINEL get-master-addr-by-name");
        freeReplyObject(x);
        st = TC_ERR_PROTO;
    }
    return st;
}

/* Makes host:port the master unless it already is; the former master is kept until close
 * (see the section comment). asked_at: for an answer of the sentinels, the switch count
 * when they were asked (a switch since, announced by +switch-master, wins over it); NULL
 * for an announcement. TC_OK, or TC_ERR_NOMEM. */
static tc_status sentinel_switch_to(tc_remote *r, const char *host, int port,
                                    const unsigned *asked_at)
{
    tc_sentinel *sn = r->sentinel;
    pthread_mutex_lock(&sn->mu);
    tc_remote *m = sn->master;
    bool same = m && m->url.port == port && strcmp(m->url.host, host) == 0;
    /* An answer to a question asked before the last switch may predate it: stale. */
    bool stale = asked_at && *asked_at != sn->switches;
    pthread_mutex_unlock(&sn->mu);
    if (same || stale)
        return TC_OK;
    tc_remote *n = node_new(r, host, strlen(host), port);
    if (!n)
        return TC_ERR_NOMEM;
    pthread_mutex_lock(&sn->mu);
    if (sn->master != m) { /* another thread switched meanwhile */
        pthread_mutex_unlock(&sn->mu);
        tc__remote_close(n);
        return TC_OK;
    }
    if (m) {
        tc_remote **former =
            tc__realloc(sn->former, sizeof *former * (size_t)(sn->nformer + 1));
        if (!former) {
            pthread_mutex_unlock(&sn->mu);
            tc__remote_close(n);
            return TC_ERR_NOMEM;
        }
        sn->former = former;
        sn->former[sn->nformer++] = m;
    }
    sn->master = n;
    sn->switches++;
    pthread_mutex_unlock(&sn->mu);
    if (m)
        RLOG(r, TC_LOG_WARN, "Sentinel: the master of %s moved to %s port %d (failover)",
             r->url.master_name, host, port);
    return TC_OK;
}

/* Asks the sentinels and makes their answer the master. TC_OK if one answered. */
static tc_status sentinel_update(tc_remote *r)
{
    char *host = NULL;
    int port = 0;
    atomic_store(&r->sentinel->last_ask_ns, tc__now_ns());
    pthread_mutex_lock(&r->sentinel->mu);
    unsigned asked_at = r->sentinel->switches;
    void (*hook)(void *) = r->sentinel->ask_hook;
    void *hook_arg = r->sentinel->ask_hook_arg;
    pthread_mutex_unlock(&r->sentinel->mu);
    tc_status st = sentinel_ask(r, &host, &port);
    if (st == TC_OK && hook)
        hook(hook_arg);
    if (st == TC_OK)
        st = sentinel_switch_to(r, host, port, &asked_at);
    tc__free(host);
    return st;
}

/* After an operation on master m: on a failure that a failover explains, asks the
 * sentinels again (not more often than SENTINEL_ASK_MS). Returns st. */
static tc_status sentinel_after(tc_remote *r, tc_status st)
{
    if (st != TC_ERR_IO && st != TC_ERR_TIMEOUT && st != TC_ERR_PROTO)
        return st;
    int64_t last = atomic_load(&r->sentinel->last_ask_ns);
    int64_t now = tc__now_ns();
    if (now - last >= (int64_t)SENTINEL_ASK_MS * 1000000 &&
        atomic_compare_exchange_strong(&r->sentinel->last_ask_ns, &last, now))
        sentinel_update(r);
    return st;
}

static void sentinel_free(tc_remote *r)
{
    tc_sentinel *sn = r->sentinel;
    if (!sn)
        return;
    for (int i = 0; i < sn->nsentinels; i++)
        tc__remote_close(sn->sentinels[i]);
    for (int i = 0; i < sn->nformer; i++)
        tc__remote_close(sn->former[i]);
    tc__remote_close(sn->master);
    tc__free(sn->sentinels);
    tc__free(sn->former);
    pthread_mutex_destroy(&sn->mu);
    tc__free(sn);
    r->sentinel = NULL;
}

static tc_status sentinel_open(tc_remote *r)
{
    tc_sentinel *sn = tc__calloc(1, sizeof *sn);
    if (!sn)
        return TC_ERR_NOMEM;
    if (pthread_mutex_init(&sn->mu, NULL) != 0) {
        tc__free(sn);
        return TC_ERR_NOMEM;
    }
    r->sentinel = sn;
    sn->sentinels = tc__calloc((size_t)r->url.nseeds, sizeof *sn->sentinels);
    if (!sn->sentinels)
        return TC_ERR_NOMEM;
    for (int i = 0; i < r->url.nseeds; i++) {
        tc_remote *s = node_new(r, r->url.seed_hosts[i], strlen(r->url.seed_hosts[i]),
                                r->url.seed_ports[i]);
        if (!s)
            return TC_ERR_NOMEM;
        sn->sentinels[sn->nsentinels++] = s;
        /* Sentinels get their own credentials (if any), not the master's, and no db. */
        wipe(s->url.password);
        tc__free(s->url.password);
        tc__free(s->url.user);
        s->url.password = s->url.user = NULL;
        s->url.db = 0;
        const tc_url *u = &r->url;
        if ((u->sentinel_user && !(s->url.user = tc__strdup(u->sentinel_user))) ||
            (u->sentinel_password && !(s->url.password = tc__strdup(u->sentinel_password))))
            return TC_ERR_NOMEM;
    }
    tc_status st = sentinel_update(r);
    if (st != TC_OK) {
        RLOG(r, TC_LOG_ERROR, "no sentinel told the address of master %s: %s",
             r->url.master_name, tc_strerror(st));
        return st;
    }
    /* Reports a wrong password or an unreachable master now, as a plain URL does. */
    const char *ping = "PING";
    size_t plen = 4;
    redisReply *x = NULL;
    st = node_command(sentinel_master(r), NULL, 1, &ping, &plen, &x);
    if (x)
        freeReplyObject(x);
    return st;
}

static void sentinel_stats(tc_remote *r, tc_remote_stats *out)
{
    memset(out, 0, sizeof *out);
    tc_sentinel *sn = r->sentinel;
    pthread_mutex_lock(&sn->mu);
    for (int i = -1; i < sn->nformer; i++) {
        tc_remote *n = i < 0 ? sn->master : sn->former[i];
        out->round_trips += atomic_load(&n->round_trips);
        out->commands += atomic_load(&n->commands);
        out->errors += atomic_load(&n->errors);
        out->reconnects += atomic_load(&n->reconnects);
    }
    out->map_refreshes = (uint64_t)sn->nformer; /* failovers followed */
    pthread_mutex_unlock(&sn->mu);
}

static tc_status sentinel_connect(tc_remote *r, int timeout_ms, redisContext **out)
{
    sentinel_update(r);
    tc_remote *m = sentinel_master(r);
    tc_status st = conn_new(m, timeout_ms, out);
    breaker_record(m, st, false);
    return st;
}

bool tc__remote_is_sentinel(const tc_remote *r)
{
    return r && r->sentinel;
}

/* The channel on which a sentinel announces a failover's end: "<master-name> <old-ip>
 * <old-port> <new-ip> <new-port>". */
#define SWITCH_CHANNEL "+switch-master"

/* Subscribes c to SWITCH_CHANNEL and waits for the confirmation. */
static tc_status watch_subscribe(redisContext *c)
{
    const char *argv[2] = {"SUBSCRIBE", SWITCH_CHANNEL};
    if (redisAppendCommandArgv(c, 2, argv, NULL) != REDIS_OK)
        return TC_ERR_NOMEM;
    sigpipe_guard g;
    sigpipe_block(&g);
    redisReply *x = NULL;
    bool io_ok = redisGetReply(c, (void **)&x) == REDIS_OK;
    sigpipe_restore(&g, !io_ok);
    if (!io_ok)
        return tc__remote_ctx_status(c);
    bool ok = x->type == REDIS_REPLY_ARRAY && x->elements == 3 &&
              x->element[0]->type == REDIS_REPLY_STRING && x->element[0]->len == 9 &&
              memcmp(x->element[0]->str, "subscribe", 9) == 0;
    freeReplyObject(x);
    return ok ? TC_OK : TC_ERR_PROTO;
}

tc_status tc__remote_sentinel_watch(tc_remote *r, int timeout_ms, redisContext **out)
{
    if (!out)
        return TC_ERR_ARG;
    *out = NULL;
    if (!r || !r->sentinel)
        return TC_ERR_ARG;
    tc_sentinel *sn = r->sentinel;
    tc_status st = TC_ERR_IO;
    int first = atomic_load(&sn->last_good); /* a silent sentinel ahead costs a timeout */
    for (int k = 0; k < sn->nsentinels && st != TC_OK; k++) {
        int i = (first + k) % sn->nsentinels;
        redisContext *c = NULL;
        st = conn_new(sn->sentinels[i], timeout_ms, &c);
        if (st == TC_OK)
            st = watch_subscribe(c);
        if (st == TC_OK)
            *out = c;
        else if (c)
            redisFree(c);
    }
    return st;
}

static bool reply_is(const redisReply *x, const char *s)
{
    size_t n = strlen(s);
    return x->type == REDIS_REPLY_STRING && x->len == n && memcmp(x->str, s, n) == 0;
}

void tc__remote_sentinel_ask_hook(tc_remote *r, void (*fn)(void *arg), void *arg)
{
    if (!r || !r->sentinel)
        return;
    pthread_mutex_lock(&r->sentinel->mu);
    r->sentinel->ask_hook = fn;
    r->sentinel->ask_hook_arg = arg;
    pthread_mutex_unlock(&r->sentinel->mu);
}

bool tc__remote_sentinel_switched(tc_remote *r, const redisReply *x)
{
    if (!r || !r->sentinel || !x || x->type != REDIS_REPLY_ARRAY || x->elements != 3 ||
        !reply_is(x->element[0], "message") || !reply_is(x->element[1], SWITCH_CHANNEL) ||
        x->element[2]->type != REDIS_REPLY_STRING)
        return false;
    char buf[512], *save = NULL, *tok[5];
    const redisReply *p = x->element[2];
    if (p->len >= sizeof buf)
        return false;
    memcpy(buf, p->str, p->len);
    buf[p->len] = '\0';
    int n = 0;
    for (char *t = strtok_r(buf, " ", &save); t && n < 5; t = strtok_r(NULL, " ", &save))
        tok[n++] = t;
    long port;
    if (n != 5 || strcmp(tok[0], r->url.master_name) != 0 ||
        !parse_uint(tok[4], strlen(tok[4]), 65535, &port) || port == 0)
        return false;
    /* On TC_ERR_NOMEM the caller's resubscription asks the sentinels again. */
    (void)sentinel_switch_to(r, tok[3], (int)port, NULL); /* an announcement is news */
    return true;
}

/* ------------------------------------------------------------------ operations: routing */

tc_status tc__remote_get(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                         int64_t *pttl_ms)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_get(sentinel_master(r), NULL, rkey, rklen, val, pttl_ms));
    if (!r || !r->cluster)
        return node_get(r, NULL, rkey, rklen, val, pttl_ms);
    if (val)
        *val = NULL;
    if (!rkey || !val)
        return TC_ERR_ARG;
    op o = {.kind = OP_GET, .n = 1, .keys = &rkey, .klens = &rklen, .vals_out = val,
            .pttls = pttl_ms};
    return cluster_single(r, &o);
}

tc_status tc__remote_get_many(tc_remote *r, size_t n, const char *const *rkeys,
                              const size_t *rklens, tc_ref **vals, int64_t *pttls,
                              tc_status *st)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_get_many(sentinel_master(r), NULL, n, rkeys, rklens,
                                               vals, pttls, st));
    if (!r || !r->cluster || n == 0 || !rkeys || !rklens || !vals || !st)
        return node_get_many(r, NULL, n, rkeys, rklens, vals, pttls, st);
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    op o = {.kind = OP_GET_MANY, .n = n, .keys = rkeys, .klens = rklens, .vals_out = vals,
            .pttls = pttls, .st_out = st};
    return cluster_get_many(r, &o);
}

tc_status tc__remote_set(tc_remote *r, size_t n, const char *const *rkeys,
                         const size_t *rklens, const void *const *vals, const size_t *lens,
                         int ttl_ms, const tc_pub *pub)
{
    char ttl[16];
    if (r && r->sentinel)
        return sentinel_after(r, node_set(sentinel_master(r), NULL, n, rkeys, rklens, vals,
                                          lens, ttl_ms, pub));
    if (!r || !r->cluster || n == 0 || !rkeys || !rklens || !vals || !lens ||
        ttl_arg(ttl_ms, ttl) < 0 || !pub_ok(pub))
        return node_set(r, NULL, n, rkeys, rklens, vals, lens, ttl_ms, pub);
    op o = {.kind = OP_SET, .n = n, .keys = rkeys, .klens = rklens, .vals = vals,
            .lens = lens, .ttl_ms = ttl_ms, .pub = pub};
    return cluster_write_by_slot(r, &o);
}

tc_status tc__remote_add(tc_remote *r, const char *rkey, size_t rklen, const void *val,
                         size_t len, int ttl_ms, const tc_pub *pub)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_add(sentinel_master(r), NULL, rkey, rklen, val, len,
                                          ttl_ms, pub));
    if (!r || !r->cluster || !rkey)
        return node_add(r, NULL, rkey, rklen, val, len, ttl_ms, pub);
    op o = {.kind = OP_ADD, .n = 1, .keys = &rkey, .klens = &rklen, .vals = &val,
            .lens = &len, .ttl_ms = ttl_ms, .pub = pub};
    return cluster_single(r, &o);
}

tc_status tc__remote_delete(tc_remote *r, size_t n, const char *const *rkeys,
                            const size_t *rklens, const tc_pub *pub, size_t *deleted)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_delete(sentinel_master(r), NULL, n, rkeys, rklens, pub,
                                             deleted));
    if (!r || !r->cluster || n == 0 || !rkeys || !rklens || !pub_ok(pub))
        return node_delete(r, NULL, n, rkeys, rklens, pub, deleted);
    op o = {.kind = OP_DELETE, .n = n, .keys = rkeys, .klens = rklens, .pub = pub,
            .deleted = deleted};
    return cluster_write_by_slot(r, &o);
}

tc_status tc__remote_touch(tc_remote *r, const char *rkey, size_t rklen, int ttl_ms,
                           const tc_pub *pub)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_touch(sentinel_master(r), NULL, rkey, rklen, ttl_ms, pub));
    if (!r || !r->cluster || !rkey)
        return node_touch(r, NULL, rkey, rklen, ttl_ms, pub);
    op o = {.kind = OP_TOUCH, .n = 1, .keys = &rkey, .klens = &rklen, .ttl_ms = ttl_ms,
            .pub = pub};
    return cluster_single(r, &o);
}

tc_status tc__remote_incr(tc_remote *r, const char *rkey, size_t rklen, int64_t delta,
                          const void *hdr_magic, size_t hdr_magic_len, const tc_pub *pub,
                          int64_t *result)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_incr(sentinel_master(r), NULL, rkey, rklen, delta,
                                           hdr_magic, hdr_magic_len, pub, result));
    if (!r || !r->cluster || !rkey)
        return node_incr(r, NULL, rkey, rklen, delta, hdr_magic, hdr_magic_len, pub, result);
    op o = {.kind = OP_INCR, .n = 1, .keys = &rkey, .klens = &rklen, .delta = delta,
            .magic = hdr_magic, .magic_len = hdr_magic_len, .pub = pub, .result = result};
    return cluster_single(r, &o);
}

tc_status tc__remote_clear(tc_remote *r, const char *pattern, const tc_pub *pub)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_clear(sentinel_master(r), NULL, pattern, pub));
    if (!r || !r->cluster || !pattern || !pub_ok(pub))
        return node_clear(r, NULL, pattern, pub);
    return cluster_clear(r, pattern, pub);
}

tc_status tc__remote_publish(tc_remote *r, const tc_pub *pub)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_publish(sentinel_master(r), NULL, pub));
    if (!r || !r->cluster || !pub || !pub_ok(pub))
        return node_publish(r, NULL, pub);
    return cluster_publish(r, pub);
}

tc_status tc__remote_script(tc_remote *r, const char *source, int argc, const char **argv,
                            const size_t *lens, redisReply **reply)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_script(sentinel_master(r), NULL, source, argc, argv,
                                             lens, reply));
    if (!r || !r->cluster || !source || !reply || argc < 2 || !argv || !lens ||
        strcmp(argv[0], "0") == 0)
        return node_script(r && r->cluster ? node_nth(r, 0, true) : r, NULL, source, argc,
                           argv, lens, reply);
    /* Routed by the first key (all of a script's keys must share a slot). */
    op o = {.kind = OP_SCRIPT, .n = 1, .keys = &argv[1], .klens = &lens[1],
            .source = source, .argc = argc, .argv = argv, .alens = lens, .reply = reply};
    *reply = NULL;
    return cluster_single(r, &o);
}

tc_status tc__remote_command(tc_remote *r, int argc, const char **argv, const size_t *lens,
                             redisReply **reply)
{
    if (r && r->sentinel)
        return sentinel_after(r, node_command(sentinel_master(r), NULL, argc, argv, lens, reply));
    if (!r || !r->cluster || argc < 1 || !argv || !reply)
        return node_command(r, NULL, argc, argv, lens, reply);
    if (keyless_command(argc, argv)) {
        tc_remote *node = node_nth(r, atomic_fetch_add(&r->cluster->rr, 1), true);
        return node ? node_command(node, NULL, argc, argv, lens, reply) : TC_ERR_IO;
    }
    size_t klen = lens ? lens[1] : strlen(argv[1]);
    op o = {.kind = OP_COMMAND, .n = 1, .keys = &argv[1], .klens = &klen, .argc = argc,
            .argv = argv, .alens = lens, .reply = reply};
    *reply = NULL;
    return cluster_single(r, &o);
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
        RLOG(r, TC_LOG_WARN, "Redis has no maxmemory: as a cache it grows until the system "
                             "runs out of memory; set maxmemory and maxmemory-policy "
                             "allkeys-lru (docs/operations.md)");
        warnings++;
    }
    if (strncmp(policy, "allkeys-", 8) != 0) {
        RLOG(r, TC_LOG_WARN, "Redis maxmemory-policy is %s: keys without a TTL are never "
                             "evicted and writes fail when memory is full; use allkeys-lru "
                             "or allkeys-lfu (docs/operations.md)", policy);
        warnings++;
    }
    if (!r->url.password) {
        RLOG(r, TC_LOG_WARN, "connected to Redis without a password: anyone who reaches it "
                             "can read the cache and forge invalidations "
                             "(docs/security.md)");
        warnings++;
    }
    return warnings;
}
