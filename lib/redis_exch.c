/*
 * The exchange (see redis_exch.h): deadline-bounded, pipelined round trips on one
 * connection.
 * Owns nothing but an exchange's ASKING queue; no locks.
 */
#include "config.h"

#include "redis_exch.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ exchanges */

/* Lowering the socket timeouts costs two setsockopt calls: skipped when they would
 * overshoot the deadline by less than this, which spares the usual exchange (started a few
 * microseconds into its operation) any extra syscall. */
#define CLAMP_SLACK_NS 2000000

void tc__ex_init(tc_exch *e, tc_conn *c, int timeout_ms, tc_exch_counters *ctr)
{
    memset(e, 0, sizeof *e);
    e->conn = c;
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
        if (redisAppendCommandArgv(e->conn->ctx, 1, &a, &al) != REDIS_OK)
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
    if (redisAppendCommandArgv(e->conn->ctx, argc, argv, lens) != REDIS_OK) {
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
    if (tc__conn_set_timeout_tv(e->conn, tv) != REDIS_OK)
        return false;
    e->sock_timeout_ns = left;
    return true;
}

/* Writes everything appended, each write within the deadline; *late if it ran out. */
static bool write_all(tc_exch *e, bool *late)
{
    int done = 0;
    while (!done) {
        if (!ex_clamp(e)) {
            *late = true;
            return false;
        }
        if (tc__conn_write(e->conn, &done) != REDIS_OK)
            return false;
    }
    return true;
}

tc_status tc__ex_flush(tc_exch *e)
{
    bool late = false, ok = write_all(e, &late);
    if (ok)
        return TC_OK;
    e->broken = true;
    if (late || tc__remote_ctx_status(e->conn->ctx) == TC_ERR_TIMEOUT) {
        e->timed_out = true;
        return TC_ERR_TIMEOUT;
    }
    return TC_ERR_IO;
}

tc_status tc__ex_recv(tc_exch *e, size_t n, redisReply **rep)
{
    assert(n > 0); /* every exchange waits for something */
    atomic_fetch_add(&e->ctr->round_trips, 1);
    bool late = false, ok = write_all(e, &late);
    size_t i;
    for (i = 0; ok && i < n; i++) {
        void *x = NULL;
        bool drop = e->askq && e->askq_r < e->askq_n && e->askq[e->askq_r++];
    again:
        while (ok) {
            if (redisGetReplyFromReader(e->conn->ctx, &x) != REDIS_OK)
                ok = false;
            else if (x)
                break;
            else if (!ex_clamp(e))
                late = true, ok = false;
            else
                ok = tc__conn_read(e->conn) == REDIS_OK;
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
    if (late || tc__remote_ctx_status(e->conn->ctx) == TC_ERR_TIMEOUT) {
        e->timed_out = true;
        return TC_ERR_TIMEOUT;
    }
    return e->conn->ctx->err == REDIS_ERR_PROTOCOL ? TC_ERR_PROTO
           : e->conn->ctx->err == REDIS_ERR_OOM    ? TC_ERR_NOMEM /* hiredis could not allocate */
                                                   : TC_ERR_IO;
}

bool tc__ex_restore_timeouts(tc_exch *e)
{
    const int64_t full = (int64_t)e->timeout_ms * 1000000;
    if (e->sock_timeout_ns == full)
        return true;
    if (tc__conn_set_timeout(e->conn, e->timeout_ms) != REDIS_OK)
        return false;
    e->sock_timeout_ns = full;
    return true;
}

bool tc__ex_reusable(tc_exch *e)
{
    return !e->broken && e->owed == 0 && e->conn->ctx->err == 0 && tc__ex_restore_timeouts(e);
}

void tc__ex_rearm(tc_exch *e)
{
    e->deadline_ns = tc__deadline_after_ms(e->timeout_ms);
    (void)tc__ex_restore_timeouts(e); /* on failure the lower timeout only ends it sooner */
}
