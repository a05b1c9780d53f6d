/*
 * Redis replies: pure interpreters of the replies the Redis tier reads (error kinds,
 * MOVED/ASK redirects, CLUSTER SLOTS, the sentinels' answers and announcements, GET +
 * PTTL, SCAN, CLIENT TRACKINGINFO). They take a redisReply that hiredis's reader built and
 * do no I/O, so they are unit-tested (tests/check_reply.c) and fuzzed (fuzz/fuzz_reply.c)
 * without a server, the way hiredis keeps its reader apart from its I/O.
 * Thread safety: pure functions; tc__bad_reply only logs.
 */
#ifndef TC_REDIS_REPLY_H
#define TC_REDIS_REPLY_H

#include <hiredis/hiredis.h>

#include "common.h"
#include "ref.h"

/* ------------------------------------------------------------------ kinds of reply */

bool tc__reply_is_error(const redisReply *x);
/* An error reply whose text starts with prefix. */
bool tc__reply_error_starts(const redisReply *x, const char *prefix);
/* A status reply that is exactly s ("OK", "QUEUED", "PONG"). */
bool tc__reply_is_status(const redisReply *x, const char *s);
/* A bulk string reply that is exactly s. */
bool tc__reply_is_str(const redisReply *x, const char *s);
/* The ways Redis 2.x to 7.x say "these credentials are wrong or missing". */
bool tc__reply_is_auth_error(const redisReply *x);

/* Logs an error reply or an unexpected reply to what (a cluster redirect silently: the
 * router follows it), and returns TC_ERR_PROTO. */
tc_status tc__bad_reply(const tc_logger *log, const redisReply *x, const char *what);

/* ------------------------------------------------------------------ redirects */

/* What a cluster node answered instead of doing the command: MOVED (the slot lives on
 * another node for good), ASK (this one command goes to another node, after ASKING), or
 * TRYAGAIN / CLUSTERDOWN (a multi-key command during a migration, a cluster without a
 * quorum: try again shortly). */
typedef enum tc_redir_kind {
    TC_REDIR_NONE = 0,
    TC_REDIR_MOVED,
    TC_REDIR_ASK,
    TC_REDIR_TRYAGAIN
} tc_redir_kind;

typedef struct tc_redirect {
    tc_redir_kind kind;
    int slot;   /* MOVED/ASK */
    int port;   /* MOVED/ASK */
    char *host; /* MOVED/ASK: owned (tc__redirect_clear frees it); NULL: the node that
                   answered (Redis 7 names no endpoint it does not know) */
} tc_redirect;

/* Whether x is a redirect; if so, and out->kind is still TC_REDIR_NONE, records it in out
 * (the first redirect of an exchange is the one followed). A MOVED or ASK whose slot,
 * address or port is malformed is no redirect; nor is one whose host cannot be copied
 * (out of memory: the caller then reports the error reply as it is). */
bool tc__reply_redirect(const redisReply *x, tc_redirect *out);
/* Frees out's host and resets it to TC_REDIR_NONE. */
void tc__redirect_clear(tc_redirect *out);

/* ------------------------------------------------------------------ CLUSTER SLOTS */

/* Called once per slot range of a CLUSTER SLOTS reply with its master's address; host
 * NULL (hlen 0) when the reply names none ("" or "?": the node asked). Returns false to
 * stop the walk (the parse then fails with TC_ERR_NOMEM). */
typedef bool (*tc_slots_fn)(void *arg, int lo, int hi, const char *host, size_t hlen, int port);

/* Walks a CLUSTER SLOTS reply. TC_OK if every range was well formed (slots in 0..16383,
 * lo <= hi, a port in 1..65535) and fn accepted it, TC_ERR_PROTO for an empty or
 * malformed reply (fn may have seen the ranges before the bad one), TC_ERR_NOMEM if fn
 * refused one. */
tc_status tc__reply_cluster_slots(const redisReply *x, tc_slots_fn fn, void *arg);

/* ------------------------------------------------------------------ Sentinel */

/* SENTINEL get-master-addr-by-name's answer. TC_OK: *host (the caller frees it) and *port;
 * TC_MISS: the sentinel knows no such master (nil); TC_ERR_PROTO: anything else;
 * TC_ERR_NOMEM. */
tc_status tc__reply_master_addr(const redisReply *x, char **host, int *port);

/* Whether x is a "+switch-master" message for master_name ("<master-name> <old-ip>
 * <old-port> <new-ip> <new-port>" on channel; the form a subscribed connection reads).
 * TC_OK: *host (the caller frees it) and *port are the new master's; TC_MISS: another
 * message, another master or a malformed one; TC_ERR_NOMEM. */
tc_status tc__reply_switch_master(const redisReply *x, const char *channel, const char *master_name,
                                  char **host, int *port);

/* ------------------------------------------------------------------ values and lists */

/* A GET reply g and, when the TTL was asked, a PTTL reply t (NULL if not). TC_OK: *val
 * is a new reference to the bytes and *pttl_ms (if both it and t are given) the TTL left
 * (-1 none; 0 if the key expired between the two commands); TC_MISS: nil; TC_ERR_PROTO
 * with *bad the reply of the wrong type; TC_ERR_NOMEM. */
tc_status tc__reply_value(const redisReply *g, const redisReply *t, tc_ref **val, int64_t *pttl_ms,
                          const redisReply **bad);

/* A well-formed SCAN reply: [cursor digits (at most 20), [key strings]]. */
bool tc__reply_scan_ok(const redisReply *x);

/* A decimal int64 exactly as Redis writes one (no sign but '-', no space, no overflow). */
bool tc__parse_i64(const char *s, size_t n, int64_t *out);

/* CLIENT TRACKINGINFO's answer: whether tracking is on and its redirect is not broken. */
bool tc__reply_tracking_ok(const redisReply *x);

/* Frees the n replies of rep that are set, and NULLs them. */
void tc__replies_free(redisReply **rep, size_t n);

#endif /* TC_REDIS_REPLY_H */
