/*
 * The exchange: commands appended to one connection (redis_conn.h), flushed, and exactly
 * as many replies read, in one round trip, within one deadline. Before each blocking read
 * or write the socket
 * timeouts are lowered to what is left of the deadline, so a server that trickles its
 * reply a byte at a time cannot hold a call for ever.
 *
 * An exchange tracks what is still owed: a context left with unread replies, an I/O error
 * or a timeout is "broken" and must never be pooled again (hiredis 0.14 cannot
 * resynchronise a context after a read timeout).
 *
 * Thread safety: an exchange and its context belong to one thread at a time; the counters
 * are atomics shared by every exchange of a node.
 */
#ifndef TC_REDIS_EXCH_H
#define TC_REDIS_EXCH_H

#include <stdatomic.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "common.h"
#include "redis_conn.h"
#include "redis_reply.h"

/* What every exchange of a node counts. */
typedef struct tc_exch_counters {
    atomic_uint_fast64_t round_trips; /* replies waited for (a pipeline counts once) */
    atomic_uint_fast64_t commands;
} tc_exch_counters;

/* How a cluster router sends an operation to a node, and what the node answered about
 * where the keys live. Zeroed: a plain operation. */
typedef struct tc_route {
    bool asking;         /* in: send ASKING before each command (outside MULTI) */
    bool key_unlink;     /* in: clear unlinks one key per command (keys of a SCAN may span
                            slots) */
    int64_t deadline_ns; /* in: if not 0, the operation ends by then (a redirect's retry) */
    tc_redirect redir;   /* out: the first redirect among the replies (owned: the router
                            clears it) */
} tc_route;

struct tc_node;

typedef struct tc_exch {
    struct tc_node *node; /* the node whose pool lent c (the node layer's business) */
    tc_exch_counters *ctr;
    tc_route *rt;        /* NULL outside a cluster */
    bool in_multi;       /* asking mode: between MULTI and EXEC (ASKING lasts through it) */
    unsigned char *askq; /* asking mode: per command sent, whether ASKING preceded it */
    size_t askq_n, askq_cap, askq_r;
    tc_conn *conn;
    size_t owed;             /* commands appended whose replies were not read */
    bool broken;             /* do not reuse the context */
    bool probe;              /* this operation is the breaker's probe */
    bool answered;           /* a round trip completed: the server answers */
    bool timed_out;          /* a round trip ran out of time on an established connection */
    bool shortened;          /* a redirect's retry with what was left of the first deadline:
                                its running out says nothing about the server */
    int timeout_ms;          /* the command timeout: the context's socket timeouts at rest */
    int64_t deadline_ns;     /* when the operation's time is up (monotonic) */
    int64_t sock_timeout_ns; /* the context's socket timeouts now (timeout_ms unless
                                lowered; restored before it is pooled again) */
} tc_exch;

/* An exchange on context c (NULL: set later), with the deadline of an operation of
 * timeout_ms starting now. */
void tc__ex_init(tc_exch *e, tc_conn *c, int timeout_ms, tc_exch_counters *ctr);

/* Appends one command (in asking mode, after an ASKING). TC_ERR_NOMEM breaks e. */
tc_status tc__ex_send(tc_exch *e, int argc, const char **argv, const size_t *lens);

/* Sends what was appended without waiting for the replies (tc__ex_recv reads them later),
 * so that a router can put the batches of several nodes on the wire before it waits for
 * any. Failures as tc__ex_recv's. */
tc_status tc__ex_flush(tc_exch *e);

/* Flushes what was appended and reads n (> 0) replies into rep, all before the deadline;
 * records the first redirect among them in e->rt. On failure nothing is returned and the
 * context is broken: TC_ERR_TIMEOUT (the deadline passed, or a read or write timed out),
 * TC_ERR_PROTO (the server sent bytes that are not RESP), TC_ERR_NOMEM (hiredis ran out
 * of memory) or TC_ERR_IO. (This is redisGetReply's loop with a deadline check before
 * each blocking call.) */
tc_status tc__ex_recv(tc_exch *e, size_t n, redisReply **rep);

/* A fresh deadline for the next round trip of an operation that makes many (clear), or
 * for one node's replies of a batch sent to many nodes: the reads go node after node, so
 * a slow node must not use up the time of the others, whose replies may already wait. */
void tc__ex_rearm(tc_exch *e);

/* Puts back the socket timeouts every set-up context has (timeout_ms) if the deadline
 * lowered them: a context that leaves an exchange must not keep a shorter timeout than
 * the next exchange on it assumes. */
bool tc__ex_restore_timeouts(tc_exch *e);

/* Whether e's context may be pooled again (with its timeouts restored). */
bool tc__ex_reusable(tc_exch *e);

#endif /* TC_REDIS_EXCH_H */
