/*
 * Raw access to Redis for the other Redis modules (coherence, lock): one command on a
 * pooled connection, and dedicated connections (for the subscriber) that are set up like the
 * pool's (timeouts, AUTH, SELECT) but not pooled. Includes hiredis: only Redis modules may
 * include this header.
 */
#ifndef TC_REMOTE_CONN_H
#define TC_REMOTE_CONN_H

#include <hiredis/hiredis.h>

#include "redis_node.h"
#include "remote.h"

/* Runs one command on a pooled connection. TC_OK: *reply is the reply (the caller frees it
 * with freeReplyObject), which may be an error reply: the caller maps it. Errors as the
 * other remote operations (I/O, timeout, no connection). */
tc_status tc__remote_command(tc_remote *r, int argc, const char **argv, const size_t *lens,
                             redisReply **reply);

/* Runs a Lua script given by its source (a string literal or other storage that outlives r):
 * EVALSHA with the SHA1 that SCRIPT LOAD returned the first time r saw this source (cached
 * in r), and EVAL on a NOSCRIPT error (after a SCRIPT FLUSH or a failover). argv holds
 * numkeys, the keys, then the arguments, as EVAL takes them after the script. Reply as
 * tc__remote_command. */
tc_status tc__remote_script(tc_remote *r, const char *source, int argc, const char **argv,
                            const size_t *lens, redisReply **reply);

/* A new connection, set up like the pool's (AUTH, SELECT, read/write timeout = timeout_ms,
 * or none if timeout_ms <= 0), owned by the caller (tc__conn_free). Errors as tc__remote_open. */
tc_status tc__remote_connect(tc_remote *r, int timeout_ms, tc_conn **out);

/* For a redis-sentinel:// remote: a new connection to the first sentinel that answers (with
 * the URL's sentinel credentials), subscribed to "+switch-master" (the subscription is
 * confirmed before this returns, so no switch announced later is missed), with read/write
 * timeouts of timeout_ms; owned by the caller (tc__conn_free). TC_ERR_ARG for other remotes;
 * otherwise errors as tc__remote_connect. */
tc_status tc__remote_sentinel_watch(tc_remote *r, int timeout_ms, tc_conn **out);

/* Given a reply read from a watch connection: whether it announces that r's master moved
 * (a +switch-master naming r's master). If so, r's later operations already go to the new
 * master when this returns. Borrows reply. */
bool tc__remote_sentinel_switched(tc_remote *r, const redisReply *reply);

/* The servers a subscriber that needs the data servers themselves connects to: a
 * cluster's masters in its current slot map (at most cap); the master the sentinels name
 * now (asked first) for Sentinel; the one server otherwise. Each is a node that
 * tc__node_connect connects to directly (tc__node_addr names it). The count, 0 without
 * memory, -1 if there are more than cap. */
int tc__remote_masters(tc_remote *r, tc_node **out, int cap);

/* Reloads a cluster's slot map (TC_OK, or the error of the last node asked); nothing to do
 * for other remotes. */
tc_status tc__remote_refresh_map(tc_remote *r);

/* The configuration the remote was opened with (timeouts, logger). */
const tc_remote_config *tc__remote_config(tc_remote *r);

#endif /* TC_REMOTE_CONN_H */
