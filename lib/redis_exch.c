/*
 * The exchange (see redis_exch.h): deadline-bounded, pipelined round trips on one hiredis
 * context, SIGPIPE-free writes, and the mapping of hiredis's errors to statuses.
 * Owns nothing but an exchange's ASKING queue; no locks.
 */
#include "config.h"

#include "redis_exch.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

struct timeval tc__tv_from_ms(int ms)
{
    struct timeval tv = {0, 0};
    if (ms > 0) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    }
    return tv;
}

const char *tc__errno_text(int errnum, char buf[128])
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
    return strcmp(errstr, tc__errno_text(errnum, buf)) == 0;
}

tc_status tc__remote_ctx_status(const redisContext *ctx)
{
    if (ctx && ctx->err == REDIS_ERR_IO &&
        (errstr_is(ctx->errstr, EAGAIN) || errstr_is(ctx->errstr, EWOULDBLOCK)))
        return TC_ERR_TIMEOUT;
    return TC_ERR_IO;
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

void tc__sigpipe_block(tc_sigpipe_guard *g)
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

void tc__sigpipe_restore(tc_sigpipe_guard *g, bool io_failed)
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

/* ------------------------------------------------------------------ exchanges */

/* Lowering the socket timeouts costs two setsockopt calls: skipped when they would
 * overshoot the deadline by less than this, which spares the usual exchange (started a few
 * microseconds into its operation) any extra syscall. */
#define CLAMP_SLACK_NS 2000000

void tc__ex_init(tc_exch *e, redisContext *c, int timeout_ms, tc_exch_counters *ctr)
{
    memset(e, 0, sizeof *e);
    e->c = c;
    e->ctr = ctr;
    e->timeout_ms = timeout_ms;
    e->deadline_ns = tc__deadline_after_ms(timeout_ms);
    e->sock_timeout_ns = (int64_t)timeout_ms * 1000000;
}

/* In asking mode (an ASK redirect being followed), every command but those inside MULTI
 * goes after an ASKING, whose reply tc__ex_recv drops; askq records which. */
static tc_status ex_asking(tc_exch *e, int argc, const char **argv)
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

tc_status tc__ex_send(tc_exch *e, int argc, const char **argv, const size_t *lens)
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
    atomic_fetch_add(&e->ctr->commands, 1);
    return TC_OK;
}

/* Called before each blocking read or write: false if the deadline has passed; else makes
 * sure the read or write cannot block past it, by lowering the socket timeouts to what is
 * left when they would overshoot. */
static bool ex_clamp(tc_exch *e)
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
            snprintf(ctx->errstr, sizeof ctx->errstr, "%s", tc__errno_text(errno, buf));
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

tc_status tc__ex_flush(tc_exch *e)
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

tc_status tc__ex_recv(tc_exch *e, size_t n, redisReply **rep)
{
    assert(n > 0); /* every exchange waits for something */
    atomic_fetch_add(&e->ctr->round_trips, 1);
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
        for (size_t k = 0; e->rt && k < n; k++)
            (void)tc__reply_redirect(rep[k], &e->rt->redir);
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

bool tc__ex_restore_timeouts(tc_exch *e)
{
    const int64_t full = (int64_t)e->timeout_ms * 1000000;
    if (e->sock_timeout_ns == full)
        return true;
    if (redisSetTimeout(e->c, tc__tv_from_ms(e->timeout_ms)) != REDIS_OK)
        return false;
    e->sock_timeout_ns = full;
    return true;
}

bool tc__ex_reusable(tc_exch *e)
{
    return !e->broken && e->owed == 0 && e->c->err == 0 && tc__ex_restore_timeouts(e);
}

void tc__ex_rearm(tc_exch *e)
{
    e->deadline_ns = tc__deadline_after_ms(e->timeout_ms);
    (void)tc__ex_restore_timeouts(e); /* on failure the lower timeout only ends it sooner */
}
