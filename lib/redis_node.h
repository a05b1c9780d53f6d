/*
 * One Redis server: a pool of blocking hiredis connections usable from any thread, the
 * connection handshake (AUTH, SELECT, PING), a small circuit breaker, the Lua script SHA1
 * cache, and the frame every operation runs in (take a connection, exchange, give it back,
 * tell the breaker). The operations themselves live in redis_ops.c; the topologies
 * (topo_*.c) decide which node an operation goes to.
 *
 * Thread safety: every function may be called from any thread; a node's pool mutex and
 * script mutex are leaf locks, never held during I/O, an allocation of hiredis's or a log
 * call.
 */
#ifndef TC_REDIS_NODE_H
#define TC_REDIS_NODE_H

#include <hiredis/hiredis.h>

#include "common.h"
#include "redis_exch.h"
#include "redis_url.h"

typedef struct tc_node tc_node;

/* What every node of a handle shares. */
typedef struct tc_node_config {
    int pool_size;          /* >= 1 */
    int connect_timeout_ms; /* > 0 */
    int command_timeout_ms; /* > 0 */
    tc_logger log;
    tc_tls *tls; /* NULL: plaintext; else every connection over TLS (shared, borrowed) */
} tc_node_config;

/* A node's counters. */
typedef struct tc_node_stats {
    uint64_t round_trips, commands, errors, reconnects;
} tc_node_stats;

/* A node for the server that addr names (TC_URL_TCP or TC_URL_UNIX; its credentials and
 * db are copied), with host:port in place of addr's when host is not NULL. It connects
 * lazily. NULL without memory. */
tc_node *tc__node_new(const tc_node_config *cfg, const tc_url *addr, const char *host, size_t hlen,
                      int port);
/* Closes every connection. No call may be running. NULL is a no-op. In a child after fork
 * it sends nothing on the inherited sockets (close() only). */
void tc__node_close(tc_node *node);

/* Connects one connection now (to report a bad address, password or db at once), SCRIPT
 * LOADs the given scripts on it, and pools it. TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_AUTH,
 * TC_ERR_PROTO, TC_ERR_NOMEM. */
tc_status tc__node_warm(tc_node *node, const char *const *scripts, size_t nscripts);

/* A new connection, set up like the pool's (AUTH, SELECT, read/write timeout = timeout_ms,
 * or none if timeout_ms <= 0), owned by the caller (tc__conn_free). Not gated by the breaker:
 * the caller (a subscriber) paces its own retries and must learn promptly that Redis is
 * back; the outcome still informs the breaker. Errors as tc__node_warm. */
tc_status tc__node_connect(tc_node *node, int timeout_ms, tc_conn **out);
/* The same without telling the breaker (a sentinel's watch connection). */
tc_status tc__node_dial(tc_node *node, int timeout_ms, tc_conn **out);

/* Starts an operation on node: an exchange on a pooled connection (a new one if the slot
 * is empty), with the operation's deadline (rt's, if that is sooner). TC_ERR_IO at once
 * while the breaker is open; TC_ERR_TIMEOUT if no slot frees in time. Whatever it returns,
 * the caller ends with tc__node_op_finish. */
tc_status tc__node_op_start(tc_node *node, tc_route *rt, tc_exch *e);
/* Gives the connection back (or discards it), tells the breaker what the operation learnt
 * about the server (a round trip timed out; or Redis answered), and counts a failed
 * operation (not TC_ERR_ARG or TC_ERR_NOT_INT, which say nothing about Redis). Returns st. */
tc_status tc__node_op_finish(tc_exch *e, tc_status st);

/* Runs a Lua script given by its source (storage that outlives the node) on e's
 * connection: EVALSHA when its SHA1 is known, EVAL again on NOSCRIPT (the server lost its
 * script cache: SCRIPT FLUSH, restart, failover; EVAL caches it again, so the SHA1 held
 * stays right). The first time, SCRIPT LOAD and EVAL go in one round trip. argv holds
 * numkeys, the keys, then the arguments. *reply is the script's reply, possibly an error
 * reply. */
tc_status tc__node_script(tc_exch *e, const char *source, int argc, const char **argv,
                          const size_t *lens, redisReply **reply);

const tc_logger *tc__node_log(const tc_node *node);
/* The node's host and port (TCP; a Unix socket's path and port 0 otherwise). */
void tc__node_addr(const tc_node *node, const char **host, int *port);
/* Whether node is host[0..hlen):port. */
bool tc__node_is(const tc_node *node, const char *host, size_t hlen, int port);
/* Whether the node authenticates with a password. */
bool tc__node_has_password(const tc_node *node);
/* Targeted coherence: the client id of this process's live subscriber link to the node
 * (subscribed to __redis__:invalidate), or 0 while there is none. Set by the subscriber
 * once the link is subscribed and before it flushes the local tier; cleared when the
 * link is in doubt. Sequentially consistent: a reader that still sees an old id took its
 * fill-guard ticket before the flush that follows the new id. */
void tc__node_set_link(tc_node *node, long long id);
long long tc__node_link(const tc_node *node);
/* Adds node's counters to *acc. */
void tc__node_add_stats(const tc_node *node, tc_node_stats *acc);

#endif /* TC_REDIS_NODE_H */
