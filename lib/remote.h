/*
 * The Redis tier: URL parsing, a pool of hiredis connections usable from any thread, connect
 * and command timeouts, AUTH/SELECT, pipelining, and the Lua scripts (loaded once, run by
 * EVALSHA with a NOSCRIPT fallback to EVAL). It knows Redis keys and bytes only; the stored
 * value format and the local tier are the caller's business.
 *
 * Every write takes an optional publication (channel + payload) that reaches Redis in the
 * same atomic unit as the write (MULTI/EXEC or inside the script), so that no failure between
 * the two can leave other processes' local tiers stale.
 *
 * With a redis-cluster:// URL every operation is routed by its key's hash slot (MOVED and
 * ASK followed within the deadline); batches are split per node (each node's pipeline is
 * sent before any reply is read, so a batch takes about one round trip) and their MULTI/EXEC
 * per slot, so a batch is atomic per slot only. With redis-sentinel:// every operation goes to
 * the master the sentinels name, asked again after a failure or when the subscriber hears
 * a +switch-master (tc__remote_sentinel_watch). See docs/scaling.md.
 *
 * The tier is built in layers, each calling only the one below (remote.c's opening comment
 * draws them; docs/design/architecture.md too): this header is the top, the facade the
 * core calls.
 *
 * Thread safety: every function may be called from any thread. The pool mutex is a leaf lock
 * and is never held during I/O.
 */
#ifndef TC_REMOTE_H
#define TC_REMOTE_H

#include "common.h"
#include "local.h"
#include "redis_types.h"
#include "redis_url.h"

/* ------------------------------------------------------------------ the handle */

typedef struct tc_remote tc_remote;

typedef struct tc_remote_config {
    const char *url;        /* not NULL */
    int pool_size;          /* >= 1 */
    int connect_timeout_ms; /* > 0 */
    int command_timeout_ms; /* > 0 */
    tc_logger log;
    tc_tls_config tls; /* for a rediss URL (its strings are copied at open) */
} tc_remote_config;

/* Parses the URL, connects one connection (AUTH, SELECT, PING) to report problems now, and
 * loads the scripts. TC_ERR_ARG (bad URL), TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_AUTH. */
tc_status tc__remote_open(const tc_remote_config *cfg, tc_remote **out);
/* Closes every connection. No call may be running. */
void tc__remote_close(tc_remote *r);

/* ------------------------------------------------------------------ Redis Cluster */

/* The cluster hash slot of a key (0..16383): CRC16 (XMODEM) of the key, or of the part
 * between the first '{' and the next '}' when that part is not empty, mod 16384. */
unsigned tc__cluster_slot(const char *key, size_t len);
/* The slot of the key a || b (a Redis key as its prefix and the caller's key), without
 * building it. */
unsigned tc__cluster_slot2(const char *a, size_t alen, const char *b, size_t blen);
/* CRC16-CCITT (XMODEM: poly 0x1021, init 0), as Redis Cluster uses. */
uint16_t tc__crc16(const void *buf, size_t len);
/* Tests only (through tc__test_set_sentinel_ask_hook), for a redis-sentinel:// remote:
 * fn(arg) runs in every thread that asked the
 * sentinels, once their answer came and before it is applied. fn NULL removes it. */
void tc__remote_sentinel_ask_hook(tc_remote *r, void (*fn)(void *arg), void *arg);

/* Whether r talks to a Redis Cluster. (A Sentinel-managed master is not a cluster.) */
bool tc__remote_is_cluster(const tc_remote *r);
/* Whether r follows a master through Redis Sentinel (a redis-sentinel:// URL). */
bool tc__remote_is_sentinel(const tc_remote *r);
void tc__remote_stats(tc_remote *r, tc_remote_stats *out);

/* ------------------------------------------------------------------ operations
 *
 * Keys are Redis keys (already prefixed). ttl_ms is > 0 or TC_TTL_FOREVER; the caller turns
 * ttl 0 into a delete and TC_TTL_DEFAULT into its default. pub may be NULL (nothing
 * published). Errors: TC_ERR_IO (connection lost or refused), TC_ERR_TIMEOUT (no reply within
 * command_timeout_ms, or no free connection in that time), TC_ERR_PROTO (error reply or
 * unexpected reply), TC_ERR_NOMEM. A connection that failed is discarded and replaced by a
 * new one on a later call. */

/* GET, and PTTL in the same round trip when pttl_ms is not NULL. TC_OK: *val holds the
 * bytes (a new reference, data = buf, len = the stored length) and *pttl_ms the remaining
 * TTL (-1 none; 0 if the key expired between the two commands). TC_MISS: absent. */
tc_status tc__remote_get(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                         int64_t *pttl_ms);

/* n GETs + PTTLs in one round trip (pttls NULL: GETs alone). st[i] is TC_OK (vals[i],
 * and pttls[i] if asked, set) or TC_MISS (vals[i] NULL). Returns TC_OK if the batch ran;
 * on error nothing is returned (all NULL). */
tc_status tc__remote_get_many(tc_remote *r, size_t n, const char *const *rkeys,
                              const size_t *rklens, tc_ref **vals, int64_t *pttls, tc_status *st);

/* Targeted coherence: tc__remote_get and tc__remote_get_many for a read whose values the
 * caller will keep in its local tier. Each read goes on a connection whose CLIENT TRACKING
 * redirects to the subscriber link its node knows (tc__node_set_link), enabled in the same
 * round trip when the connection's redirect is stale; tracked (one for get, n for
 * get_many) says for each value whether that held. A value read while its node had no live
 * link, or whose redirect Redis refused, is not tracked and must not be kept. */
tc_status tc__remote_get_tracked(tc_remote *r, const char *rkey, size_t rklen, tc_ref **val,
                                 int64_t *pttl_ms, bool *tracked);
tc_status tc__remote_get_many_tracked(tc_remote *r, size_t n, const char *const *rkeys,
                                      const size_t *rklens, tc_ref **vals, int64_t *pttls,
                                      tc_status *st, bool *tracked);

/* SET each key to its value with the TTL (PX, or none for FOREVER), and PUBLISH pub, in one
 * MULTI/EXEC round trip. */
tc_status tc__remote_set(tc_remote *r, size_t n, const char *const *rkeys, const size_t *rklens,
                         const void *const *vals, const size_t *lens, int ttl_ms,
                         const tc_pub *pub);

/* SET NX with the TTL; publishes only if it stored. TC_OK stored, TC_EXISTS present. */
tc_status tc__remote_add(tc_remote *r, const char *rkey, size_t rklen, const void *val, size_t len,
                         int ttl_ms, const tc_pub *pub);

/* UNLINK the keys and PUBLISH pub in one MULTI/EXEC round trip. *deleted (may be NULL)
 * gets how many existed. */
tc_status tc__remote_delete(tc_remote *r, size_t n, const char *const *rkeys, const size_t *rklens,
                            const tc_pub *pub, size_t *deleted);

/* Sets the TTL of an existing key (PEXPIRE, or PERSIST for FOREVER); publishes only if the
 * key exists. TC_OK, or TC_MISS if absent. */
tc_status tc__remote_touch(tc_remote *r, const char *rkey, size_t rklen, int ttl_ms,
                           const tc_pub *pub);

/* Adds delta to the decimal integer at rkey, keeping its TTL, and publishes; a value of
 * "<header><digits>" written with a stored-format header (hdr_magic, its length in bytes
 * 4..5 little-endian) is first rewritten as the plain integer. TC_OK with *result, TC_MISS
 * if absent (nothing created), TC_ERR_NOT_INT if not an integer or on overflow. */
tc_status tc__remote_incr(tc_remote *r, const char *rkey, size_t rklen, int64_t delta,
                          const void *hdr_magic, size_t hdr_magic_len, const tc_pub *pub,
                          int64_t *result);

/* SCAN MATCH pattern (COUNT 1000) and UNLINK each batch until the cursor returns to 0, then
 * PUBLISH pub. The pattern is passed as is (the caller escapes glob characters). Not
 * atomic: keys written during the scan may survive. */
tc_status tc__remote_clear(tc_remote *r, const char *pattern, const tc_pub *pub);

/* Warns through the logger when the server is not configured as a cache should be: no
 * maxmemory, a maxmemory-policy other than allkeys-*, or no password in the URL. Returns
 * the number of warnings (0 also when CONFIG GET is refused). */
int tc__remote_check_config(tc_remote *r);

/* Targeted coherence: reads tracking-table-max-keys (on one master of a cluster) and warns
 * through the logger when it is 0 (Redis's tracking table is unbounded) or small (a full
 * table invalidates the oldest keys at once: more messages). Returns the number of
 * warnings (0 also when CONFIG GET is refused). */
int tc__remote_check_tracking(tc_remote *r);

/* PUBLISH alone. */
tc_status tc__remote_publish(tc_remote *r, const tc_pub *pub);

#endif /* TC_REMOTE_H */
