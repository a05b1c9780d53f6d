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
                tc__free(d);
                return TC_ERR_ARG;
            }
            d[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (is_unreserved(c) || is_sub_delim(c) || (colon_ok && c == ':')) {
            d[j++] = c;
        } else {
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
    else
        st = TC_ERR_ARG; /* "rediss://" too: hiredis 0.14 has no TLS */
    if (st != TC_OK)
        tc__url_free(out);
    return st;
}

/* Overwrites a secret before its memory goes back to the allocator; volatile so the
 * compiler cannot drop the stores as dead. */
static void wipe(char *s)
{
    if (!s)
        return;
    for (volatile char *p = s; *p; p++)
        *p = '\0';
}

void tc__url_free(tc_url *u)
{
    if (!u)
        return;
    wipe(u->password);
    tc__free(u->host);
    tc__free(u->path);
    tc__free(u->user);
    tc__free(u->password);
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

void tc__remote_stats(tc_remote *r, tc_remote_stats *out)
{
    out->round_trips = atomic_load(&r->round_trips);
    out->commands = atomic_load(&r->commands);
    out->errors = atomic_load(&r->errors);
    out->reconnects = atomic_load(&r->reconnects);
}

/* ------------------------------------------------------------------ errors */

/* True if errstr is the message hiredis stored for errnum (it formats errno with
 * strerror_r, so that is all there is to compare). */
static bool errstr_is(const char *errstr, int errnum)
{
    char buf[128];
    const char *msg;
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    msg = strerror_r(errnum, buf, sizeof buf);
#else
    msg = strerror_r(errnum, buf, sizeof buf) == 0 ? buf : "";
#endif
    return strcmp(errstr, msg) == 0;
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
    if (is_error(x))
        RLOG(r, TC_LOG_WARN, "Redis error reply to %s: %.*s", what, (int)x->len, x->str);
    else
        RLOG(r, TC_LOG_WARN, "unexpected Redis reply type %d to %s", x->type, what);
    return TC_ERR_PROTO;
}

/* ------------------------------------------------------------------ SIGPIPE
 *
 * hiredis 0.14 writes with write(2), so a write on a connection the server reset raises
 * SIGPIPE, whose default action kills the process. A library may not change the process's
 * signal dispositions, so (as libpq does) each I/O section blocks SIGPIPE in the calling
 * thread, and if the I/O failed, consumes a SIGPIPE that it caused before restoring the
 * mask. A SIGPIPE already pending before the section is left for its owner. */

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

typedef struct exch {
    tc_remote *r;
    redisContext *c;
    size_t owed;           /* commands appended whose replies were not read */
    bool broken;           /* do not reuse the context */
    bool probe;            /* this operation is the breaker's probe */
    bool answered;         /* a round trip completed: the server answers */
    bool timed_out;        /* a round trip ran out of time on an established connection */
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

static tc_status ex_send(exch *e, int argc, const char **argv, const size_t *lens)
{
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

/* Flushes what was appended and reads n replies into rep, all before the deadline. On
 * failure nothing is returned and the context is broken: TC_ERR_TIMEOUT (the deadline
 * passed, or a read or write timed out), TC_ERR_PROTO (the server sent bytes that are not
 * RESP) or TC_ERR_IO. (This is redisGetReply's loop with a deadline check before each
 * blocking call.) */
static tc_status ex_recv(exch *e, size_t n, redisReply **rep)
{
    assert(n > 0); /* every exchange waits for something */
    atomic_fetch_add(&e->r->round_trips, 1);
    sigpipe_guard g;
    sigpipe_block(&g);
    bool late = false, ok = true;
    int done = 0;
    while (ok && !done) {
        if (!ex_clamp(e))
            late = true, ok = false;
        else
            ok = redisBufferWrite(e->c, &done) == REDIS_OK;
    }
    size_t i;
    for (i = 0; ok && i < n; i++) {
        void *x = NULL;
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
        rep[i] = x;
        e->owed--;
    }
    sigpipe_restore(&g, !ok);
    if (ok) {
        e->answered = true;
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
    return e->c->err == REDIS_ERR_PROTOCOL ? TC_ERR_PROTO : TC_ERR_IO;
}

static void free_replies(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
}

/* Whether an exchange's context may be pooled again, with the socket timeouts of a pooled
 * context (restored here if ex_clamp lowered them). */
static bool ex_reusable(exch *e)
{
    if (e->broken || e->owed != 0 || e->c->err != 0)
        return false;
    if (e->sock_timeout_ns != (int64_t)e->r->cfg.command_timeout_ms * 1000000 &&
        redisSetTimeout(e->c, e->r->command_tv) != REDIS_OK)
        return false;
    return true;
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
    return st;
}

/* A new context set up like every pooled one: connected within connect_timeout_ms, read
 * and write timeouts of command_timeout_ms for the handshake and io_timeout_ms after it
 * (none if <= 0), TCP keepalive, then the handshake. Does not touch the breaker. */
static tc_status conn_new(tc_remote *r, int io_timeout_ms, redisContext **out)
{
    *out = NULL;
    const tc_url *u = &r->url;
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

static tc_status op_start(tc_remote *r, exch *e)
{
    ex_init(e, r, NULL);
    return pool_acquire(r, e);
}

/* A fresh deadline for the next round trip of an operation that makes many (clear). */
static void ex_rearm(exch *e)
{
    e->deadline_ns = tc__deadline_after_ms(e->r->cfg.command_timeout_ms);
    if (e->sock_timeout_ns != (int64_t)e->r->cfg.command_timeout_ms * 1000000 &&
        redisSetTimeout(e->c, e->r->command_tv) == REDIS_OK)
        e->sock_timeout_ns = (int64_t)e->r->cfg.command_timeout_ms * 1000000;
}

/* Returns the connection, tells the breaker what the operation learnt about the server
 * (a round trip timed out; or Redis answered), and counts a failed operation. Returns st.
 * A caller error (TC_ERR_ARG) or a non-integer for incr (TC_ERR_NOT_INT) says nothing
 * about Redis and is not counted. */
static tc_status op_finish(exch *e, tc_status st)
{
    if (e->c)
        pool_release(e->r, e->c, ex_reusable(e));
    e->c = NULL;
    if (e->timed_out || e->answered)
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

tc_status tc__remote_script(tc_remote *r, const char *source, int argc, const char **argv,
                            const size_t *lens, redisReply **reply)
{
    if (!r || !source || !reply || argc < 1 || !argv || !lens)
        return TC_ERR_ARG;
    *reply = NULL;
    exch e;
    tc_status st = op_start(r, &e);
    if (st == TC_OK)
        st = ex_script(&e, source, argc, argv, lens, reply);
    return op_finish(&e, st);
}

tc_status tc__remote_command(tc_remote *r, int argc, const char **argv, const size_t *lens,
                             redisReply **reply)
{
    if (!r || argc < 1 || !argv || !reply)
        return TC_ERR_ARG;
    *reply = NULL;
    exch e;
    tc_status st = op_start(r, &e);
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
    return st;
}

/* ------------------------------------------------------------------ open / close */

void tc__remote_close(tc_remote *r)
{
    if (!r)
        return;
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
                                  "password]@]host[:port][/db] or unix:///path[?db=N])");
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

tc_status tc__remote_connect(tc_remote *r, int timeout_ms, redisContext **out)
{
    if (!r || !out)
        return TC_ERR_ARG;
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

/* Interprets a GET reply and a PTTL reply. */
static tc_status take_value(tc_remote *r, const redisReply *g, const redisReply *t,
                            tc_ref **val, int64_t *pttl_ms)
{
    if (g->type != REDIS_REPLY_STRING && g->type != REDIS_REPLY_NIL)
        return bad_reply(r, g, "GET");
    if (t->type != REDIS_REPLY_INTEGER)
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
    if (pttl_ms)
        *pttl_ms = t->integer >= -1 ? (int64_t)t->integer : 0;
    return TC_OK;
}

tc_status tc__remote_get(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                         int64_t *pttl_ms)
{
    if (val)
        *val = NULL;
    if (!r || !rkey || !val)
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, &e);
    const char *argv[2] = {"GET", rkey};
    size_t lens[2] = {3, rklen};
    redisReply *rep[2] = {NULL, NULL};
    if (st == TC_OK)
        st = ex_send(&e, 2, argv, lens);
    argv[0] = "PTTL";
    lens[0] = 4;
    if (st == TC_OK)
        st = ex_send(&e, 2, argv, lens);
    if (st == TC_OK)
        st = ex_recv(&e, 2, rep);
    if (st == TC_OK)
        st = take_value(r, rep[0], rep[1], val, pttl_ms);
    free_replies(rep, 2);
    return op_finish(&e, st);
}

tc_status tc__remote_get_many(tc_remote *r, size_t n, const char *const *rkeys,
                              const size_t *rklens, tc_ref **vals, int64_t *pttls,
                              tc_status *st_out)
{
    if (!r || (n > 0 && (!rkeys || !rklens || !vals || !st_out)))
        return TC_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    if (n == 0)
        return TC_OK;
    if (n > SIZE_MAX / 2 / sizeof(redisReply *))
        return TC_ERR_NOMEM;
    redisReply **rep = tc__calloc(2 * n, sizeof *rep);
    if (!rep)
        return TC_ERR_NOMEM;
    exch e;
    tc_status st = op_start(r, &e);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *argv[2] = {"GET", rkeys[i]};
        size_t lens[2] = {3, rklens[i]};
        st = ex_send(&e, 2, argv, lens);
        argv[0] = "PTTL";
        lens[0] = 4;
        if (st == TC_OK)
            st = ex_send(&e, 2, argv, lens);
    }
    if (st == TC_OK)
        st = ex_recv(&e, 2 * n, rep);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        tc_status one = take_value(r, rep[2 * i], rep[2 * i + 1], &vals[i],
                                   pttls ? &pttls[i] : NULL);
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
    free_replies(rep, 2 * n);
    tc__free(rep);
    return op_finish(&e, st);
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

tc_status tc__remote_set(tc_remote *r, size_t n, const char *const *rkeys,
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
    tc_status st = op_start(r, &e);
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
static tc_status run_own_script(tc_remote *r, exch *e, const char *source, const char *rkey,
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
    tc_status st = op_start(r, e);
    if (st == TC_OK)
        st = ex_script(e, source, argc, argv, lens, reply);
    return st;
}

tc_status tc__remote_add(tc_remote *r, const char *rkey, size_t rklen, const void *val,
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
    tc_status st = run_own_script(r, &e, script_add, rkey, rklen, 2, args, lens, pub, &x);
    if (st == TC_OK) {
        if (x->type == REDIS_REPLY_INTEGER && (x->integer == 0 || x->integer == 1))
            st = x->integer ? TC_OK : TC_EXISTS;
        else
            st = bad_reply(r, x, "add");
        freeReplyObject(x);
    }
    return op_finish(&e, st);
}

tc_status tc__remote_delete(tc_remote *r, size_t n, const char *const *rkeys,
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
    tc_status st = op_start(r, &e);
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

tc_status tc__remote_touch(tc_remote *r, const char *rkey, size_t rklen, int ttl_ms,
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
    tc_status st = run_own_script(r, &e, script_touch, rkey, rklen, 1, args, lens, pub, &x);
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

tc_status tc__remote_incr(tc_remote *r, const char *rkey, size_t rklen, int64_t delta,
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
    tc_status st = run_own_script(r, &e, script_incr, rkey, rklen, 2, args, lens, pub, &x);
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

/* Appends UNLINK for the keys of a SCAN reply's key array (none if it is empty). Sets
 * *sent to whether a command went out. */
static tc_status ex_unlink_batch(exch *e, const redisReply *keys, bool *sent)
{
    *sent = false;
    if (!keys || keys->elements == 0)
        return TC_OK;
    size_t n = keys->elements;
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

tc_status tc__remote_clear(tc_remote *r, const char *pattern, const tc_pub *pub)
{
    if (!r || !pattern || !pub_ok(pub))
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, &e);
    /* Each round trip carries the UNLINK of the previous batch with the next SCAN. */
    char cursor[24] = "0";
    redisReply *prev = NULL; /* the last SCAN reply, whose keys are still to unlink */
    bool done = false;
    while (st == TC_OK && !done) {
        bool unlinking = false;
        st = ex_unlink_batch(&e, prev ? prev->element[1] : NULL, &unlinking);
        if (st == TC_OK)
            st = ex_scan(&e, cursor, pattern);
        if (prev)
            freeReplyObject(prev);
        prev = NULL;
        redisReply *rep[2] = {NULL, NULL};
        if (st == TC_OK) {
            ex_rearm(&e); /* each batch has command_timeout_ms */
            st = ex_recv(&e, unlinking ? 2 : 1, rep);
        }
        if (st == TC_OK && unlinking && rep[0]->type != REDIS_REPLY_INTEGER)
            st = bad_reply(r, rep[0], "UNLINK");
        redisReply *scan = unlinking ? rep[1] : rep[0];
        if (st == TC_OK && !scan_reply_ok(scan))
            st = bad_reply(r, scan, "SCAN");
        if (st == TC_OK) {
            memcpy(cursor, scan->element[0]->str, scan->element[0]->len);
            cursor[scan->element[0]->len] = '\0';
            done = strcmp(cursor, "0") == 0;
            prev = scan;
            if (unlinking)
                freeReplyObject(rep[0]);
        } else {
            free_replies(rep, 2);
        }
    }
    if (st == TC_OK) {
        /* The last batch and the publication: the announcement follows the deletes. */
        bool unlinking = false;
        st = ex_unlink_batch(&e, prev->element[1], &unlinking);
        size_t n = (unlinking ? 1 : 0) + (pub ? 1 : 0);
        if (st == TC_OK && pub)
            st = ex_publish(&e, pub);
        redisReply *rep[2] = {NULL, NULL};
        if (st == TC_OK && n > 0) {
            ex_rearm(&e);
            st = ex_recv(&e, n, rep);
        }
        for (size_t i = 0; st == TC_OK && i < n; i++) {
            if (rep[i]->type != REDIS_REPLY_INTEGER)
                st = bad_reply(r, rep[i], i == 0 && unlinking ? "UNLINK" : "PUBLISH");
        }
        free_replies(rep, 2);
    }
    if (prev)
        freeReplyObject(prev);
    return op_finish(&e, st);
}

tc_status tc__remote_publish(tc_remote *r, const tc_pub *pub)
{
    if (!r || !pub || !pub_ok(pub))
        return TC_ERR_ARG;
    exch e;
    tc_status st = op_start(r, &e);
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
