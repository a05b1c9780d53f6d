/*
 * tiercache: a two-tier cache for multithreaded servers.
 *
 * A per-process in-memory LRU (the local tier) in front of Redis (the remote tier). Writes
 * publish invalidations so the local tier of every process sharing the Redis stays coherent.
 *
 * Thread safety: every function taking a tc_cache may be called from any number of threads
 * at once on the same handle, except tc_close, which must be the last call on the handle.
 *
 * Ownership: strings and buffers passed in are borrowed for the duration of the call and
 * copied if kept. Values read out (tc_value) are read-only views that the caller owns until
 * tc_value_release.
 *
 * See docs/man/ for one page per function, docs/guide.md for how to use it.
 */
#ifndef TIERCACHE_H
#define TIERCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && __GNUC__ >= 4
#define TC_API __attribute__((visibility("default")))
#else
#define TC_API
#endif

#define TC_VERSION_MAJOR 0
#define TC_VERSION_MINOR 1
#define TC_VERSION_PATCH 0

/* Opaque; one per process is typical, shared by all threads. */
typedef struct tc_cache tc_cache;

#define TC_TTL_DEFAULT (-1) /* the cache's remote_ttl_ms */
#define TC_TTL_FOREVER (-2) /* no expiry in Redis; the local copy still obeys local_ttl_ms */

/* ---------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------- */

typedef enum tc_status {
    TC_OK = 0,           /* success; for reads: a hit */
    TC_MISS = 1,         /* key absent (not an error) */
    TC_EXISTS = 2,       /* tc_add: key already present */
    TC_ERR_ARG = -1,     /* NULL where not allowed, invalid key, bad option */
    TC_ERR_NOMEM = -2,   /* an allocation failed */
    TC_ERR_IO = -3,      /* Redis unreachable, connection lost, circuit open */
    TC_ERR_TIMEOUT = -4, /* a deadline passed (command, lock wait, flight wait) */
    TC_ERR_PROTO = -5,   /* Redis error reply or unexpected reply type */
    TC_ERR_TOO_BIG = -6, /* value above max_value_bytes */
    TC_ERR_LOADER = -7,  /* the loader callback failed */
    TC_ERR_AUTH = -8,    /* authentication refused */
    TC_ERR_NOT_INT = -9, /* tc_incr on a value that is not an integer */
    TC_ERR_CLOSED = -10  /* the cache is closing */
} tc_status;

/* A static, human-readable description of s. Never NULL, also for values not in tc_status.
 * Thread-safe. */
TC_API const char *tc_strerror(tc_status s);

/* ---------------------------------------------------------------------------------------
 * Keys
 *
 * A key is a NUL-terminated string of 1..max_key_len bytes (default 250) with no byte below
 * 33 and no byte 127. Anything else is TC_ERR_ARG and nothing is sent to Redis. The Redis key
 * is "<key_prefix>:<version>:<key>".
 * ------------------------------------------------------------------------------------- */

/* Joins parts with ':' up to a NULL sentinel:
 *   tc_key(buf, cap, "grades", "gpa", "student", "123", NULL) -> "grades:gpa:student:123".
 * Returns the length written (without the NUL), or -1 if buf is NULL, the result does not
 * fit in cap bytes including the NUL, there is no part, or a part is empty or holds a byte
 * that keys may not hold. Checks the byte rules only: the length limit is the cache's
 * max_key_len, checked when the key is used. Thread-safe (touches only buf). */
TC_API int tc_key(char *buf, size_t cap, const char *part, ...);

/* ---------------------------------------------------------------------------------------
 * Options and lifetime
 * ------------------------------------------------------------------------------------- */

typedef enum tc_coherence {
    TC_COHERENCE_BROADCAST = 0, /* default: writers publish invalidations on a pub/sub channel */
    TC_COHERENCE_TRACKING = 1,  /* Redis server-assisted tracking (BCAST on key_prefix) */
    TC_COHERENCE_NONE = 2       /* local tier bounded by local_ttl_ms only */
} tc_coherence;

/* Log levels passed to log_fn. */
#define TC_LOG_ERROR 0
#define TC_LOG_WARN 1
#define TC_LOG_INFO 2
#define TC_LOG_DEBUG 3

/* Filled with defaults by tc_options_init; then set what you need. The struct only ever
 * grows at its end; tc_open reads no further than struct_size. */
typedef struct tc_options {
    size_t struct_size;       /* set by tc_options_init; lets the struct grow */
    const char *redis_url;    /* "redis://[user[:password]@]host[:port][/db]" or
                                 "unix:///path[?db=N]"; NULL: $TC_REDIS_URL, else
                                 "redis://127.0.0.1:6379/0" */
    const char *key_prefix;   /* default "" */
    int version;              /* default 1 */
    int remote_ttl_ms;        /* default 300000 (TC_TTL_DEFAULT resolves to this) */
    int local_ttl_ms;         /* default 60000; a local copy never outlives its remote TTL */
    size_t local_max_bytes;   /* default 64 MiB; 0 disables the local tier */
    size_t max_value_bytes;   /* default 1 MiB */
    size_t max_key_len;       /* default 250 */
    int pool_size;            /* Redis connections for commands; default 8 */
    int connect_timeout_ms;   /* default 500 */
    int command_timeout_ms;   /* default 250 */
    tc_coherence coherence;   /* default TC_COHERENCE_BROADCAST */
    void (*log_fn)(void *arg, int level, const char *msg); /* NULL: quiet. Called from any
                                 thread, never with a lock of the cache held. */
    void *log_arg;
    /* Fields below were added after the first layout; tc_open reads them only when
       struct_size covers them. */
    int heartbeat_ms;         /* default 250: the invalidation link is pinged this often and
                                 declared dead when a ping has no answer for as long again;
                                 while dead, reads bypass the local tier */
} tc_options;

/* Fills o with the defaults above and sets struct_size. Thread-safe (touches only o). */
TC_API void tc_options_init(tc_options *o);

/* Validates the options, connects to Redis and starts what the coherence mode needs.
 * o is borrowed: strings in it are copied. On success *out is the new cache.
 * TC_ERR_ARG: NULL o or out, a bad URL or option. TC_ERR_IO: Redis unreachable.
 * TC_ERR_AUTH: the server refused our credentials, or requires some and none were given.
 * TC_ERR_TIMEOUT: the server accepted the connection but did not answer in time.
 * TC_ERR_NOMEM. Thread-safe. */
TC_API tc_status tc_open(const tc_options *o, tc_cache **out);

/* Stops every thread the cache started, closes its connections and frees it. NULL is a
 * no-op. No other call on c may be running or made afterwards; values read from c and not
 * yet released stay valid until released. */
TC_API void tc_close(tc_cache *c);

/* ---------------------------------------------------------------------------------------
 * TTLs: ttl_ms > 0 is that many milliseconds; TC_TTL_DEFAULT is remote_ttl_ms;
 * TC_TTL_FOREVER is no expiry in Redis; 0 expires at once (the key is deleted); any other
 * negative value is TC_ERR_ARG.
 * ------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------
 * Values and basic operations
 * ------------------------------------------------------------------------------------- */

/* A read-only view of a value. data is valid until tc_value_release, also after tc_close. */
typedef struct tc_value {
    const void *data;
    size_t len;
    void *priv;
} tc_value;

/* Drops the reference a TC_OK read handed out and zeroes v. Safe on a zeroed value and on
 * NULL. Thread-safe; each value must be released once. */
TC_API void tc_value_release(tc_value *v);

/* Reads key: TC_OK with *out set (release it), or TC_MISS with *out zeroed. A live local
 * copy is returned without a Redis round trip, copy or allocation. Errors: TC_ERR_ARG,
 * TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_PROTO, TC_ERR_NOMEM; *out is zeroed on every error. */
TC_API tc_status tc_get(tc_cache *c, const char *key, tc_value *out);

/* Stores len bytes at data (copied; data may be NULL when len is 0) under key for ttl_ms.
 * TC_ERR_TOO_BIG above max_value_bytes. The write is visible to this process's next read
 * when the call returns, and to other processes' local tiers as the coherence mode says. */
TC_API tc_status tc_set(tc_cache *c, const char *key, const void *data, size_t len,
                        int ttl_ms);

/* As tc_set, but only if key is absent: TC_OK stored, TC_EXISTS if present (nothing
 * written). */
TC_API tc_status tc_add(tc_cache *c, const char *key, const void *data, size_t len,
                        int ttl_ms);

/* TC_OK: deleted. TC_MISS: it was absent. */
TC_API tc_status tc_delete(tc_cache *c, const char *key);

/* Sets a new TTL on an existing key (ttl_ms as above; 0 deletes it). TC_MISS if absent. */
TC_API tc_status tc_touch(tc_cache *c, const char *key, int ttl_ms);

/* Adds delta to the decimal integer stored under key and writes the sum to *result
 * (result may be NULL). TC_MISS if absent (nothing is created, as Django does);
 * TC_ERR_NOT_INT if the value is not a decimal integer (the empty value included) or the
 * sum would overflow. Counters are stored as plain Redis integers and keep their TTL. */
TC_API tc_status tc_incr(tc_cache *c, const char *key, int64_t delta, int64_t *result);

/* Reads n keys: one Redis round trip for all the local misses. out[i] and st[i] are set per
 * key (TC_OK with a value to release, or TC_MISS with out[i] zeroed). Returns TC_OK when the
 * batch ran, an error when it could not (then every out[i] is zeroed). n == 0 is TC_OK.
 * Any invalid key makes the whole batch TC_ERR_ARG and nothing is sent. */
TC_API tc_status tc_get_many(tc_cache *c, const char *const *keys, size_t n, tc_value *out,
                             tc_status *st);

/* Stores n values in one round trip (atomically: all or none). Any invalid key or
 * oversized value makes the whole batch fail (TC_ERR_ARG / TC_ERR_TOO_BIG) and nothing is
 * written. */
TC_API tc_status tc_set_many(tc_cache *c, const char *const *keys, const void *const *data,
                             const size_t *lens, size_t n, int ttl_ms);

/* Deletes n keys in one round trip. TC_OK whether or not they existed. */
TC_API tc_status tc_delete_many(tc_cache *c, const char *const *keys, size_t n);

/* Deletes every key under this cache's key_prefix (all versions) by SCAN + UNLINK, never
 * KEYS, and empties every local tier sharing the prefix. Not for hot paths. */
TC_API tc_status tc_clear(tc_cache *c);

/* ---------------------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------------------- */

typedef struct tc_stats {
    uint64_t local_hits, remote_hits, misses;   /* reads by where they were answered */
    uint64_t sets, deletes, loads, load_errors; /* loads: loader calls */
    uint64_t flight_waits;                      /* callers that waited on another's load */
    uint64_t inval_sent, inval_received;
    uint64_t local_evictions, local_entries, local_bytes;
    uint64_t remote_errors;
} tc_stats;

/* A snapshot of the cache's counters (each read atomically; the set is not one instant).
 * Thread-safe. */
TC_API void tc_stats_get(tc_cache *c, tc_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TIERCACHE_H */
