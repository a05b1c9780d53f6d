/*
 * The operations on one Redis server: GET (+ PTTL), batches of them, SET / SET NX / UNLINK
 * / PEXPIRE / INCRBY with the invalidation published in the same atomic unit (MULTI/EXEC
 * or one of our Lua scripts), SCAN + UNLINK, PUBLISH, and raw commands and scripts. Each
 * runs in one node's operation frame (redis_node.h); the topologies (topo_*.c) pick the
 * node. An operation is described by a tc_op, so a router can hand any of them to any node
 * through one function.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TC_REDIS_OPS_H
#define TC_REDIS_OPS_H

#include "redis_node.h"
#include "redis_types.h"

typedef enum tc_op_kind {
    TC_OP_GET,
    TC_OP_GET_MANY,
    TC_OP_SET,
    TC_OP_ADD,
    TC_OP_DELETE,
    TC_OP_TOUCH,
    TC_OP_INCR,
    TC_OP_CLEAR,
    TC_OP_PUBLISH,
    TC_OP_SCRIPT,
    TC_OP_COMMAND
} tc_op_kind;

/* One operation, with the arguments of the tc__remote_* function of its name (remote.h).
 * keys/klens: the keys (n of them; one for GET, ADD, TOUCH, INCR; a script's or a
 * command's first key for routing). */
typedef struct tc_op {
    tc_op_kind kind;
    size_t n;
    const char *const *keys;
    const size_t *klens;
    tc_ref **vals_out;       /* GET, GET_MANY */
    int64_t *pttls;          /* GET, GET_MANY: NULL for no TTL */
    tc_status *st_out;       /* GET_MANY */
    bool *tracked;           /* GET (one), GET_MANY (n): NULL, or a read whose values the
                                caller will keep in its local tier under targeted coherence;
                                out: whether each was read on a connection whose tracking
                                redirects to its node's live subscriber link (false: do not
                                keep it) */
    const void *const *vals; /* SET, ADD */
    const size_t *lens;      /* SET, ADD */
    int ttl_ms;              /* SET, ADD, TOUCH */
    const tc_pub *pub;       /* every write; NULL: nothing published */
    size_t *deleted;         /* DELETE; may be NULL */
    int64_t delta;           /* INCR */
    const void *magic;       /* INCR: the stored-format header magic */
    size_t magic_len;
    int64_t *result;     /* INCR */
    const char *pattern; /* CLEAR */
    const char *source;  /* SCRIPT */
    int argc;            /* SCRIPT, COMMAND */
    const char **argv;
    const size_t *alens;
    redisReply **reply; /* SCRIPT, COMMAND */
} tc_op;

/* Runs o on node (rt: how a router sends it; NULL for a plain operation). Statuses as the
 * tc__remote_* function of its kind. */
tc_status tc__ops_run(tc_node *node, tc_route *rt, const tc_op *o);

/* One command on node (no routing). TC_OK: *reply is the reply (the caller frees it),
 * possibly an error reply. */
tc_status tc__ops_command(tc_node *node, int argc, const char **argv, const size_t *lens,
                          redisReply **reply);

/* Checks o's arguments as its node function would, before it is routed anywhere:
 * TC_ERR_ARG for a missing or invalid argument, TC_MISS when there is nothing to do (an
 * empty batch, whose outputs are then set: deleted 0), TC_OK otherwise. */
tc_status tc__ops_check(const tc_op *o);

/* Our Lua scripts, for a node to SCRIPT LOAD when it first connects (tc__node_warm). */
extern const char *const tc__ops_scripts[];
extern const size_t tc__ops_nscripts;

/* ------------------------------------------------------------------ for routers */

/* The PX argument for ttl_ms: its length, 0 for TC_TTL_FOREVER (no PX), -1 if invalid. */
int tc__ops_ttl_arg(int ttl_ms, char buf[16]);
/* Appends PUBLISH pub (sequenced: an EVAL of tc_pub, which a MULTI may hold: never
 * EVALSHA, whose NOSCRIPT would leave the write without its message). */
tc_status tc__ops_send_publish(tc_exch *e, const tc_pub *pub);
/* The publication of slot's transaction for a pub that is seq_by_slot (a copy of pub that
 * bumps slot in "<seq_key>{<tag>}"), its strings in buf: at least
 * tc__ops_pub_slot_cap(pub) bytes, which must outlive *out. A pub that is not seq_by_slot
 * is copied as it is. */
size_t tc__ops_pub_slot_cap(const tc_pub *pub);
void tc__ops_pub_for_slot(const tc_pub *pub, unsigned slot, tc_pub *out, char *buf);
/* Checks the replies of "MULTI, q commands, EXEC": OK, q x QUEUED and an array of q
 * results, which the caller inspects. The first error reply is the one reported (a
 * command refused while queued, e.g. OOM, makes EXEC answer EXECABORT). */
tc_status tc__ops_tx_check(const tc_logger *log, redisReply **rep, size_t q, const char *what);

/* A GET (+ PTTL) batch on one node, in two halves: tc__get_batch_send appends the
 * commands (and with flush, sends them), tc__get_batch_recv reads the replies and gives
 * the connection back. A router sends the batches of all its nodes before it reads any. */
typedef struct tc_get_batch {
    tc_exch e;
    tc_route rt; /* the node's redirect, if it met one (the caller clears it) */
    size_t n;
    size_t per; /* replies per key: GET, and PTTL when the TTLs are wanted */
    redisReply **rep;
    long long want; /* track: the link id the batch is tracked for (0: none) */
    bool tsent;     /* track: a CLIENT TRACKING precedes the GETs */
    tc_status st;
} tc_get_batch;

/* track: the values will fill the local tier under targeted coherence (tc_op.tracked). */
void tc__get_batch_send(tc_get_batch *b, tc_node *node, size_t n, const char *const *rkeys,
                        const size_t *rklens, bool ttl, bool track, bool flush);
/* vals[i] and st_out[i] (TC_OK or TC_MISS; pttls[i] if asked; tracked[i] if not NULL, as
 * tc_op.tracked) for each key. Returns TC_OK if the batch ran; on error nothing is returned
 * (every vals[i] NULL). */
tc_status tc__get_batch_recv(tc_get_batch *b, tc_ref **vals, int64_t *pttls, tc_status *st_out,
                             bool *tracked);

#endif /* TC_REDIS_OPS_H */
