/*
 * tiercache: a two-tier cache for multithreaded servers.
 *
 * A per-process in-memory cache (the local tier: sharded, lock-free reads, W-TinyLFU
 * admission over CLOCK eviction) in front of Redis (the remote tier). Writes publish
 * invalidations so the local tier of every process sharing the Redis stays coherent.
 *
 * Where to start: tc_options_init and tc_open make a cache; tc_get, tc_set and
 * tc_get_or_set read and write; tc_value_release gives back what a read returned; tc_close
 * ends. The types (tc_options and its defaults, tc_status, tc_value, tc_stats) and the key
 * and TTL rules are on one page, tiercache-types(3); the guide is docs/guide.md.
 *
 * Thread safety: every function taking a tc_cache may be called from any number of threads
 * at once on the same handle, except tc_close, which must be the last call on the handle.
 *
 * Ownership: strings and buffers passed in are borrowed for the duration of the call and
 * copied if kept. Values read out (tc_value) are read-only views that the caller owns until
 * tc_value_release.
 *
 * This header is the reference: scripts/gen-apidocs.py makes the manual pages (tiercache(3),
 * tiercache-types(3), one per function) and docs/api.md from its comments.
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

/* Lets the compiler check the arguments of a printf-style function (tc_keyf). */
#if defined(__GNUC__)
#define TC_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define TC_PRINTF(fmt, args)
#endif

/* ---------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------- */

/* The version of this header, checked at compile time. configure.ac takes the package
 * version from these three lines, so they are the one place it is written. */
#define TC_VERSION_MAJOR 0
#define TC_VERSION_MINOR 1
#define TC_VERSION_PATCH 0

/* The version of the library running, "MAJOR.MINOR.PATCH" (static; never NULL). It may
 * differ from the TC_VERSION_* of the header a program was compiled with when the shared
 * library was upgraded under it. Thread-safe. */
TC_API const char *tc_version(void);

/* Opaque; one per process is typical, shared by all threads. */
typedef struct tc_cache tc_cache;

#define TC_TTL_DEFAULT (-1) /* the cache's remote_ttl_ms */
#define TC_TTL_FOREVER (-2) /* no expiry in Redis; the local copy still obeys local_ttl_ms */

/* ---------------------------------------------------------------------------------------
 * Status codes
 * ------------------------------------------------------------------------------------- */

/* The result of every call that can fail: 0 and above are answers, below 0 errors
 * (tc_strerror describes each). New codes may be added; treat an unknown negative as an
 * error. */
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
 * It says what kind of failure s is, not why it happened: tc_open2 writes the reason a
 * cache could not be opened into a buffer of the caller's, and log_fn receives, at
 * TC_LOG_DEBUG, which argument of a failing call broke which rule (see tc_open2).
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

/* tc_key with a printf-style format, for ids and other numbers:
 *   tc_keyf(buf, cap, "grades:gpa:student:%d", id) -> "grades:gpa:student:123".
 * Returns the length written (without the NUL), or -1 if buf or fmt is NULL, the result
 * does not fit in cap bytes including the NUL, is empty, or holds a byte that keys may not
 * hold (a space from "%s" or "% d", for instance); buf is then "" (when cap > 0). As tc_key,
 * checks the byte rules only. Thread-safe (touches only buf). */
TC_API int tc_keyf(char *buf, size_t cap, const char *fmt, ...) TC_PRINTF(3, 4);

/* ---------------------------------------------------------------------------------------
 * Options and lifetime
 * ------------------------------------------------------------------------------------- */

/* How the local tiers of the processes sharing a Redis learn of each other's writes
 * (tc_options.coherence; docs/design/coherence.md). */
typedef enum tc_coherence {
    TC_COHERENCE_BROADCAST = 0, /* default: writers publish invalidations on a pub/sub channel */
    TC_COHERENCE_TRACKING = 1,  /* Redis server-assisted tracking (BCAST on key_prefix) */
    TC_COHERENCE_NONE = 2,      /* local tier bounded by local_ttl_ms only */
    TC_COHERENCE_TARGETED = 3   /* Redis client tracking (default mode): Redis tells only the
                                   processes that read a key, for writes by any client;
                                   see docs/design/coherence.md */
} tc_coherence;

/* How a process recovers its local tier when its invalidation link breaks, or any other
 * time messages may have been missed (tc_options.recovery; docs/design/coherence.md,
 * "Recovery without a flush"). Every instance sharing a key_prefix should use the same
 * choice: a TC_RECOVERY_FLUSH writer publishes messages without sequences, and an instance
 * recovering by groups that hears one flushes its whole tier on every recovery for the next
 * 10 minutes. */
typedef enum tc_recovery {
    TC_RECOVERY_AUTO = 0,  /* default: TC_RECOVERY_GROUPS where it is supported
                              (TC_COHERENCE_BROADCAST on one server or a Sentinel-managed
                              master), TC_RECOVERY_FLUSH elsewhere */
    TC_RECOVERY_FLUSH = 1, /* a new link flushes the whole local tier; writes publish plain
                              messages and run no script */
    TC_RECOVERY_GROUPS = 2 /* each write also bumps a sequence for its keys' group (one of
                              1024) in Redis, atomically; a new link fetches the sequences
                              and drops only the groups that moved. tc_open refuses it
                              (TC_ERR_ARG) where it is not supported */
} tc_recovery;

/* Log levels passed to log_fn. */
#define TC_LOG_ERROR 0
#define TC_LOG_WARN 1
#define TC_LOG_INFO 2
#define TC_LOG_DEBUG 3

/* Filled with defaults by tc_options_init; then set what you need. The struct only ever
 * grows at its end; tc_open reads no further than struct_size. */
typedef struct tc_options {
    size_t struct_size;     /* set by tc_options_init; lets the struct grow */
    const char *redis_url;  /* "redis://[user[:password]@]host[:port][/db]",
                               "unix:///path[?db=N]", a Redis Cluster:
                               "redis-cluster://[user[:password]@]host:port[,host:port
                               ...]" (seed nodes; the rest is discovered; not with
                               TC_COHERENCE_TRACKING), or a Sentinel-managed master:
                               "redis-sentinel://[user[:password]@]host:port[,host:port
                               ...]/master-name[/db][?sentinel_password=P[&sentinel_user=
                               U]]" (the sentinels; credentials and db are the master's,
                               the query's the sentinels'); see docs/scaling.md.
                               NULL: $TC_REDIS_URL, else "redis://127.0.0.1:6379/0" */
    const char *key_prefix; /* default "" */
    int version;            /* default 1 */
    int remote_ttl_ms;      /* default 300000 (TC_TTL_DEFAULT resolves to this) */
    int local_ttl_ms;       /* default 60000; a local copy never outlives its remote TTL */
    size_t local_max_bytes; /* default 64 MiB; 0 disables the local tier */
    size_t max_value_bytes; /* default 1 MiB */
    size_t max_key_len;     /* default 250 */
    int pool_size;          /* Redis connections for commands; default 8 */
    int connect_timeout_ms; /* default 500: a TCP/unix connect to Redis */
    int command_timeout_ms; /* default 250: the deadline of one Redis operation, its wait
                               for a free pooled connection and its whole round trip
                               included (+ connect_timeout_ms + command_timeout_ms when
                               it opens a connection). Per call: docs/operations.md,
                               "Deadlines". A timeout opens the circuit breaker: calls
                               then fail at once with TC_ERR_IO until a probe gets an
                               answer (100 ms doubling to 2 s) */
    tc_coherence coherence; /* default TC_COHERENCE_BROADCAST */
    void (*log_fn)(void *arg, int level, const char *msg); /* NULL: quiet. Called from any
                                 thread, never with a lock of the cache held. */
    void *log_arg;
    /* Fields below were added after the first layout; tc_open reads them only when
       struct_size covers them. */
    int heartbeat_ms; /* default 250: the invalidation link is pinged this often and
                         declared dead when a ping has no answer for as long again;
                         while dead, reads bypass the local tier */
    /* Stampede protection (tc_get_or_set; see docs/stampede.md). */
    int lock_ttl_ms;        /* default 10000: TTL of the Redis lock a process holds while
                               it loads a key; a process that dies while loading blocks
                               others' loads of that key for at most this long. Keep it
                               above your slowest loader: when it runs out mid-load,
                               another process may load the same key */
    int flight_wait_ms;     /* default 5000: how long a caller waits for a load run by
                               another thread or process before TC_ERR_TIMEOUT */
    double xfetch_beta;     /* default 1.0: early refresh eagerness (XFetch beta); > 1
                               refreshes earlier, 0 disables early refresh */
    int stale_if_error_ms;  /* default 0 (off): when a reload fails, tc_get_or_set may
                               return a value that expired less than this long ago.
                               Values written by tc_get_or_set stay in Redis this much
                               longer than their TTL to make that possible, and tc_get
                               still returns them during that window */
    int negative_ttl_ms;    /* default 30000: how long a loader's "does not exist"
                               (TC_MISS) is cached, capped by the call's TTL; 0: never */
    int check_redis_config; /* default 1: at tc_open, warn through log_fn when Redis has
                               no maxmemory, an eviction policy other than allkeys-*, or
                               no password; 0 skips the check */
    int reserved1;          /* unused: it fills what was the end padding of the layout
                               before it, so that no field after it is ever read from an
                               older caller's padding (struct_size covers that padding) */
    int fetch_remote_ttl;   /* default 1: a read from Redis whose value will be kept in
                               the local tier also asks for the key's remaining TTL (PTTL,
                               in the same round trip), so that the local copy never
                               outlives it. 0: it does not (one command per fill instead
                               of two), and a local copy lives local_ttl_ms or until it
                               is invalidated, even up to local_ttl_ms past the expiry of
                               its Redis key: for when serving that is acceptable, or with
                               TC_COHERENCE_TRACKING, under which Redis reports a key that
                               expired when it deletes it (see docs/guide.md, "Local
                               TTLs") */
    /* TLS, for rediss://, rediss-cluster:// and rediss-sentinel:// URLs (docs/security.md).
       The files are read when a connection is made, so a rotated certificate or CA is
       picked up by the next new connection without a reopen. */
    const char *tls_ca_file;     /* PEM bundle of the CAs to trust; NULL: the system store
                                    (OpenSSL's default paths, which honour SSL_CERT_FILE
                                    and SSL_CERT_DIR) */
    const char *tls_ca_dir;      /* a hashed directory of CA certificates (c_rehash);
                                    NULL: none beyond the above */
    const char *tls_cert_file;   /* client certificate (PEM) for mutual TLS; NULL: none */
    const char *tls_key_file;    /* its private key (PEM); NULL: in tls_cert_file */
    const char *tls_server_name; /* the name sent as SNI and verified against the server's
                                    certificate; NULL: the URL's host (or the address a
                                    cluster or the sentinels announce) */
    int tls_skip_verify;         /* default 0. 1: no certificate or host name check: for
                                    tests only; tc_open logs a warning */
    unsigned shadow_rate;        /* default 0: off. N: 1 in N local hits (at random) is
                                    also read from Redis by a thread of the cache and
                                    compared with the copy served, to show whether the
                                    local tier keeps its coherence promise (shadow_*
                                    counters; docs/operations.md, "Shadow reads"). The
                                    caller's hit is not delayed: a sample that finds the
                                    queue full is dropped. Each sample costs one Redis
                                    GET; 10000 is the advised rate in production */
    tc_recovery recovery;        /* default TC_RECOVERY_AUTO: how the local tier recovers
                                    from a broken invalidation link (tc_recovery) */
    int reserved2;               /* unused: fills the end padding after recovery, for the
                                    reason given at reserved1 */
} tc_options;

/* Fills o with the defaults (each field's "default" in tc_options: tiercache-types(3)) and
 * sets struct_size. Thread-safe (touches only o). */
TC_API void tc_options_init(tc_options *o);

/* Validates the options, connects to Redis and starts what the coherence mode needs.
 * o is borrowed: strings in it are copied. On success *out is the new cache.
 * TC_ERR_ARG: NULL o or out, a bad URL or option (also TC_COHERENCE_TRACKING on a cluster
 * of more than 64 masters, and TC_RECOVERY_GROUPS outside TC_COHERENCE_BROADCAST or on a
 * cluster). TC_ERR_IO: Redis unreachable (for a cluster: no seed node
 * answered; for Sentinel: no sentinel named the master, or the master did not answer).
 * TC_ERR_PROTO: a redis-cluster:// server that is not a working cluster, or sentinels that
 * do not know master-name. TC_ERR_AUTH: the server refused our credentials, or requires
 * some and none were given.
 * TC_ERR_TIMEOUT: the server accepted the connection but did not answer in time.
 * TC_ERR_NOMEM. Thread-safe. */
TC_API tc_status tc_open(const tc_options *o, tc_cache **out);

/* As tc_open, and on failure also writes why into err (errlen bytes with the NUL, cut to
 * fit): the status's tc_strerror text, then the first error the open logged, or else its
 * first warning, naming what failed: the option and the rule it broke ("option
 * local_ttl_ms = -5: must be >= 0"), the URL, the server that refused the connection
 * ("cannot connect to Redis at 127.0.0.1 port 6379: Connection refused") or the
 * credentials. This is the same text log_fn receives (at TC_LOG_ERROR or TC_LOG_WARN), so
 * a caller that sets up no logging still learns the reason. On success err is "". err may
 * be NULL (errlen is then ignored): tc_open(o, out) is tc_open2(o, out, NULL, 0).
 *
 * Why a buffer and not a "last error" to ask for afterwards: the reason belongs to this
 * one call and is handed back with it, so nothing is shared, neither between threads nor
 * between caches, and no later call can overwrite it. Per-call failures (a bad key, a bad
 * TTL, a NULL argument, a value too big) are explained through log_fn at TC_LOG_DEBUG, so
 * a busy server is not flooded unless it asks for that level. Thread-safe. */
TC_API tc_status tc_open2(const tc_options *o, tc_cache **out, char *err, size_t errlen);

/* Stops every thread the cache started, closes its connections and frees it. NULL is a
 * no-op. No other call on c may be running or made afterwards; values read from c and not
 * yet released stay valid until released.
 *
 * fork(): a cache opened before a fork works in the child. The child's first call on it
 * closes the connections it inherited (close() only: nothing is sent, the parent's are
 * untouched), empties its local tier, reconnects and starts its own subscriber, while the
 * child's other threads wait; if Redis cannot be reached then, that call and those of the
 * next 100 ms fail with that status. A local hit checks for a fork with one load, no system
 * call. In a child, tc_close only drops what was inherited; see docs/guide.md, "fork()". */
TC_API void tc_close(tc_cache *c);

/* ---------------------------------------------------------------------------------------
 * TTLs
 *
 * ttl_ms > 0 is that many milliseconds; TC_TTL_DEFAULT is remote_ttl_ms; TC_TTL_FOREVER is
 * no expiry in Redis; 0 expires at once (the key is deleted); any other negative value is
 * TC_ERR_ARG. A local copy lives at most local_ttl_ms and never past its Redis TTL.
 * ------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------
 * Values and basic operations
 * ------------------------------------------------------------------------------------- */

/* A read-only view of a value, valid until tc_value_release, also after tc_close. data is
 * NUL-terminated: data[len] is 0 (not counted in len), also for the empty value, so a text
 * value can be passed to strtol or printf("%s") as is (a value that holds a NUL of its own
 * reads shorter as a C string: len is its length). */
typedef struct tc_value {
    const void *data; /* the value's len bytes, then a NUL; NULL only in a zeroed value */
    size_t len;       /* its length in bytes (0: the empty value, still a hit) */
    void *priv;       /* the library's: what tc_value_release lets go of */
} tc_value;

/* Drops the hold a TC_OK read handed out and zeroes v. Safe on a zeroed value and on
 * NULL. Thread-safe: any thread may release a value another thread read; each value must be
 * released once. */
TC_API void tc_value_release(tc_value *v);

/* Reads key: TC_OK with *out set (release it), or TC_MISS with *out zeroed. A live local
 * copy is returned without a Redis round trip, copy or allocation. Errors: TC_ERR_ARG,
 * TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_PROTO, TC_ERR_NOMEM; *out is zeroed on every error. */
TC_API tc_status tc_get(tc_cache *c, const char *key, tc_value *out);

/* Stores len bytes at data (copied; data may be NULL when len is 0) under key for ttl_ms.
 * TC_ERR_TOO_BIG above max_value_bytes. The write is visible to this process's next read
 * when the call returns, and to other processes' local tiers as the coherence mode says. */
TC_API tc_status tc_set(tc_cache *c, const char *key, const void *data, size_t len, int ttl_ms);

/* As tc_set, but only if key is absent: TC_OK stored, TC_EXISTS if present (nothing
 * written). */
TC_API tc_status tc_add(tc_cache *c, const char *key, const void *data, size_t len, int ttl_ms);

/* TC_OK: deleted. TC_MISS: it was absent. */
TC_API tc_status tc_delete(tc_cache *c, const char *key);

/* Whether key holds a value, by the rules of tc_get (Django's has_key): TC_OK present,
 * TC_MISS absent, also for a cached "does not exist" (tc_get_or_set's negative entry) and a
 * tagged value whose tag was invalidated. Answered by the local tier when tc_get would be,
 * else by Redis (it reads the value, as tc_get does, to apply those rules), and counted as
 * a read. Errors: as tc_get. Thread-safe. */
TC_API tc_status tc_has_key(tc_cache *c, const char *key);

/* The remaining Redis TTL of key (django-redis's ttl), in milliseconds: *ms_left > 0, or -1
 * when the key never expires (TC_TTL_FOREVER, tc_touch with it, or a key written by another
 * client without one). Always asks Redis (one round trip: GET and PTTL): the local tier
 * does not know it. TC_OK present; TC_MISS absent by the rules of tc_has_key (*ms_left is
 * then 0). A value written by tc_get_or_set with stale_if_error_ms > 0 is kept that much
 * longer in Redis, and the TTL reported includes it. Errors: as tc_get (*ms_left 0);
 * TC_ERR_ARG also for NULL ms_left. Thread-safe. */
TC_API tc_status tc_ttl(tc_cache *c, const char *key, int64_t *ms_left);

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
 * Response caching helpers
 *
 * For caching whole responses (a GraphQL result, an HTTP body) under a key derived from the
 * request. They touch no tc_cache; see docs/graphql.md.
 * ------------------------------------------------------------------------------------- */

/* A stable key for a GraphQL response: equal for documents that differ only in insignificant
 * whitespace, commas and comments, and for variables JSON that differs only in member order
 * or spacing. scope: "public", or the viewer's identity for per-user responses.
 * Writes "gql:<scope>:<hex digest>": 32 lowercase hex digits of XXH3-128 over the scope, the
 * normalised document, the operation name and the canonical variables, so the key is
 * strlen(scope) + 37 bytes and cap must be at least one more.
 *
 * The document is tokenised by the GraphQL lexical grammar (October 2021): spaces, tabs, line
 * terminators, commas, comments and byte order marks are dropped; every other token is kept
 * byte for byte (string and block string contents, escapes included, are never touched).
 * Tokens are not parsed further: documents that differ in anything else (field order, alias
 * or fragment names, a 1 written as 1.0) get different keys. A byte that starts no GraphQL
 * token is kept as a token of its own, so an invalid document still gets a key.
 * The variables are any JSON text (normally an object); members are sorted at every level,
 * escapes decoded ("\u00e9" and "é" are equal), and numbers read as jansson does: integers
 * within int64, other numbers as doubles (two reals equal as doubles are equal here).
 * NULL operation_name or variables_json means absent, which differs from "" and "{}".
 *
 * TC_ERR_ARG: scope, document or buf NULL; scope empty or holding a byte a key may not hold
 * (the key rules); a string or block string in the document left open; variables_json not
 * valid JSON (UTF-8 only), nested deeper than 2048, holding an integer outside int64, a
 * number beyond the double range, "\u0000" in a member name, or a member name twice in one
 * object (which one a server keeps varies); cap too small for the key. buf is set to "" on
 * every error (when cap > 0). TC_ERR_NOMEM. The digest is not cryptographic: it makes
 * accidental collisions negligible, not crafted ones impossible. The key must also fit the
 * cache's max_key_len (default 250: a scope of up to 213 bytes). Thread-safe (no state;
 * touches only buf). */
TC_API tc_status tc_gql_key(const char *scope, const char *document, const char *operation_name,
                            const char *variables_json, char *buf, size_t cap);

/* A Cache-Control header value for a response cached for remaining_ttl_ms more: writes
 * "public, max-age=N" when scope is exactly "public", "private, max-age=N" for any other
 * scope, where N is the remaining whole seconds (rounded down; 0 for a negative TTL).
 * 25 bytes always suffice. TC_ERR_ARG: scope or buf NULL, or cap too small (buf is then set
 * to "" when cap > 0). Thread-safe (touches only buf). */
TC_API tc_status tc_cache_control(int remaining_ttl_ms, const char *scope, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------
 * Loading with stampede protection
 *
 * tc_get_or_set reads the local tier, then Redis, and only on a miss calls the loader. All
 * callers of one key in a process share one load (single-flight), and all processes share
 * one load through a Redis lock ("<key_prefix>:<version>:<key>:lock"). See docs/stampede.md.
 * ------------------------------------------------------------------------------------- */

/* Where a loader writes the value. Opaque; owned by the library and valid only during the
 * loader call that received it. */
typedef struct tc_buf tc_buf;

/* Appends len bytes at data (copied; data may be NULL when len is 0) to the value being
 * loaded. TC_OK. TC_ERR_TOO_BIG: the value would exceed max_value_bytes (nothing is
 * appended, and the load fails with TC_ERR_TOO_BIG whatever the loader returns).
 * TC_ERR_NOMEM (the load fails with it). TC_ERR_ARG: NULL b, or NULL data with len > 0.
 * Thread-safe: appends to one buffer from several threads are serialised (in the order
 * they take the buffer), as long as they all finish before the loader returns. */
TC_API tc_status tc_buf_append(tc_buf *b, const void *data, size_t len);

/* A loader: computes the value of key (borrowed, valid during the call) and appends it to
 * out. Returns TC_OK after appending the value (appending nothing is the empty value);
 * TC_MISS for "does not exist" (cached as a negative entry for min(ttl, negative_ttl_ms),
 * and tc_get_or_set returns TC_MISS; anything appended is discarded); any other value is a
 * failure: nothing is cached and tc_get_or_set returns TC_ERR_LOADER. Called with no lock
 * of the cache held, from the thread of one of the callers; it may call the cache (but a
 * tc_get_or_set of the same key from inside its own loader waits for itself until
 * flight_wait_ms and gets TC_ERR_TIMEOUT). */
typedef tc_status (*tc_loader_fn)(void *arg, const char *key, tc_buf *out);

/* Reads key as tc_get does; on a miss, calls fn(arg, key, buf) to compute the value,
 * stores it with ttl_ms (as tc_set: TC_TTL_DEFAULT, TC_TTL_FOREVER; 0 returns the value and
 * deletes the key) and returns it. Concurrent callers of one key share one load: one per process
 * (the others wait for it, at most flight_wait_ms), and one across processes (a Redis lock taken
 * with SET NX PX lock_ttl_ms; processes that lose it wait for the winner's value, woken by the
 * invalidation its write publishes, re-reading Redis every 50 ms as a fallback, and take
 * over if the lock expires without a value).
 *
 * Early refresh: a value loaded here records how long its load took and when it expires; a
 * hit shortly before expiry (with a probability that rises as expiry nears, scaled by the
 * load time and xfetch_beta) makes that one caller reload it synchronously and return the
 * new value, while every concurrent caller keeps getting the current one without waiting.
 *
 * Returns TC_OK with *out set (release it with tc_value_release); TC_MISS (the loader said
 * the key does not exist, now or within negative_ttl_ms; *out zeroed). Errors (with *out
 * zeroed): TC_ERR_ARG (NULL c, fn or out, invalid key, bad TTL); TC_ERR_LOADER (the loader
 * failed; also shared by every caller that waited for that load); TC_ERR_TOO_BIG (the value
 * exceeded max_value_bytes); TC_ERR_TIMEOUT (waited flight_wait_ms for another thread's or
 * process's load); TC_ERR_NOMEM; TC_ERR_CLOSED. A failed load caches nothing: the next
 * call tries again. With stale_if_error_ms > 0, a failed reload returns TC_OK with the
 * value that expired less than stale_if_error_ms ago, if there is one, instead of the
 * error. When Redis is unreachable the loader is still called (without the cross-process
 * lock) and its value returned: Redis errors are not returned by this function.
 * Thread-safe. arg is passed to fn untouched. */
TC_API tc_status tc_get_or_set(tc_cache *c, const char *key, tc_loader_fn fn, void *arg, int ttl_ms,
                               tc_value *out);

/* ---------------------------------------------------------------------------------------
 * Distributed lock
 *
 * A lease in Redis: SET "<key_prefix>:<version>:<name>" <random token> NX PX ttl_ms, and a
 * compare-and-delete release. Names share the key space of the cache: pick names that are
 * not cache keys (e.g. tc_key(buf, cap, "lock", "nightly-report", NULL)). A lock is a
 * lease: when its TTL runs out while its holder still works, another process may take it.
 * ------------------------------------------------------------------------------------- */

/* Opaque handle of a held lock. */
typedef struct tc_lock tc_lock;

/* Takes the lock name (key rules) for ttl_ms (> 0). wait_ms: 0 tries once; > 0 retries
 * until it is taken or wait_ms has passed: at once when the holder releases it (a release
 * publishes an invalidation naming the lock, and this process's releases wake its waiters
 * directly), otherwise polling every 2 ms at first, backing off to every 50 ms (a lease
 * that ran out publishes nothing). TC_OK: held; *out is the handle (release it with
 * tc_lock_release, before tc_close). TC_ERR_TIMEOUT: not acquired within wait_ms. TC_ERR_ARG: NULL
 * c or out, bad name, ttl_ms <= 0 or wait_ms < 0. TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_PROTO: Redis
 * trouble. TC_ERR_NOMEM, TC_ERR_CLOSED. *out is NULL on every error. Thread-safe. */
TC_API tc_status tc_lock_acquire(tc_cache *c, const char *name, int ttl_ms, int wait_ms,
                                 tc_lock **out);

/* Gives the lock back and frees l, whatever the outcome. TC_OK: released. TC_MISS: it had
 * expired, or another owner holds it now (that owner's lock is left alone). TC_ERR_ARG:
 * NULL l. TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_PROTO: Redis trouble (the lock then ends with
 * its TTL). Thread-safe; l itself must be released once, by one thread. */
TC_API tc_status tc_lock_release(tc_lock *l);

/* ---------------------------------------------------------------------------------------
 * Bulk invalidation: versioned namespaces and tags
 *
 * Invalidate many keys at once without scanning or pattern-deleting them. A namespace or
 * tag has a version counter in Redis, read through the local tier and bumped atomically with
 * an invalidation broadcast, so every process sees a bump at once. ns, suffix and tags
 * follow the key rules (TC_ERR_ARG otherwise, and nothing is sent to Redis); since a
 * namespace's version is kept under the key "__tc:ns:<ns>" and a tag's under
 * "__tc:tag:<tag>", a namespace name has at most max_key_len - 8 bytes and a tag
 * max_key_len - 9.
 * ------------------------------------------------------------------------------------- */

/* Writes "<ns>:v<version>:<suffix>" into buf (cap bytes with the NUL), where version is the
 * namespace's current version (0 if never bumped), read through the local tier. Use the
 * result as a key. TC_ERR_ARG also when the result does not fit in cap (buf is then "").
 * Errors reading the version: as tc_get. Thread-safe. */
TC_API tc_status tc_ns_key(tc_cache *c, const char *ns, const char *suffix, char *buf, size_t cap);

/* Increments the namespace version (new = old + 1; a namespace never bumped is version 0):
 * every key built before by tc_ns_key for ns is stale at once, in every instance, with no
 * key scan; the old keys age out by their TTL. *new_version (may be NULL) gets the new
 * version. Errors: as tc_incr. Thread-safe. */
TC_API tc_status tc_ns_bump(tc_cache *c, const char *ns, int64_t *new_version);

/* As tc_set, and the value records the current version of each of its ntags tags (at most
 * 64): a read after any of them is invalidated is TC_MISS, in every process. ntags 0 is a
 * plain tc_set. A tagged local hit stays a local hit (the tag versions are local too).
 * Thread-safe. */
TC_API tc_status tc_set_tagged(tc_cache *c, const char *key, const void *data, size_t len,
                               int ttl_ms, const char *const *tags, size_t ntags);

/* Invalidates every value tagged with tag, everywhere. Errors: as tc_incr. Thread-safe. */
TC_API tc_status tc_tag_invalidate(tc_cache *c, const char *tag);

/* ---------------------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------------------- */

/* Counters of the cache. The struct only ever grows at its end; tc_stats_get_sized is
 * told how large the caller's struct is and writes no further, so a program compiled
 * against an older header keeps working with a newer library. */
typedef struct tc_stats {
    uint64_t local_hits, remote_hits, misses;   /* reads by where they were answered */
    uint64_t sets, deletes, loads, load_errors; /* loads: loader calls */
    uint64_t flight_waits;                      /* callers that waited on another's load */
    uint64_t inval_sent, inval_received;
    uint64_t local_evictions, local_entries, local_bytes;
    uint64_t remote_errors;
    /* Fields below were added after the first layout (14 fields); only tc_stats_get_sized,
       and tc_stats_get through its macro, fill them. */
    uint64_t local_rejects;       /* values the local tier did not keep: refused by its
                                     admission filter, or too large for its budget */
    uint64_t local_bypasses;      /* reads that skipped the local tier because the
                                     invalidation link was not known healthy */
    uint64_t full_flushes;        /* times the whole local tier was emptied because
                                     invalidations may have been lost (the link was
                                     re-established) or another instance flushed everything
                                     (tc_clear, or FLUSHALL under tracking); cache-wide */
    uint64_t inval_link_failures; /* times the invalidation link went down; cache-wide */
    uint64_t inval_malformed;     /* invalidation messages ignored as malformed; cache-wide */
    uint64_t shadow_sampled;      /* shadow reads: sampled local hits checked against Redis */
    uint64_t shadow_agreed;       /* ... whose copy equalled Redis (at once, or once a write
                                     in flight had reached the local tier) */
    uint64_t shadow_diverged;     /* ... whose copy still differed from Redis after the
                                     staleness bound (logged, and dropped from the tier);
                                     should stay 0 */
    uint64_t shadow_dropped;      /* sampled local hits not checked because the queue was
                                     full or busy; cache-wide */
    uint64_t reconciles;          /* broadcast mode: times the invalidation link came back and
                                     the local tier was kept, only the sequence groups
                                     written meanwhile dropped; cache-wide */
} tc_stats;

/* A snapshot of the cache's counters (each read atomically; the set is not one instant).
 * The fields are described above and in docs/operations.md, "Metrics". In a program built
 * against this header, tc_stats_get(c, &s) is the macro below: it calls tc_stats_get_sized
 * with sizeof(tc_stats) and fills every field. The function of this name is the one that
 * programs built against the first header (14 fields, local_hits to remote_errors) call: it
 * fills those 14 fields and never writes past them; newer code reaches it only through a
 * pointer, (tc_stats_get) or &tc_stats_get. NULL c zeroes the fields; NULL out does
 * nothing. Thread-safe. */
TC_API void tc_stats_get(tc_cache *c, tc_stats *out);

/* As tc_stats_get, for a struct of size bytes: fills the fields that lie wholly within
 * size (a smaller size is an older layout) and writes nothing past size. Fields the
 * library does not know of (a caller built against a newer header) are zeroed. NULL c zeroes
 * them all; NULL out does nothing. Thread-safe. */
TC_API void tc_stats_get_sized(tc_cache *c, tc_stats *out, size_t size);

/* tc_stats_get(c, &s) fills the whole struct of the header it was compiled with. */
#define tc_stats_get(c, out) tc_stats_get_sized((c), (out), sizeof(tc_stats))

/* Per key type: the first two ':' parts of the key ("notifications:unread_count" for
 * "notifications:unread_count:user:7"; the whole key if it has fewer). The first 128 types
 * seen are tracked; keys of further types count under "other". key_type is valid only
 * during the call. local_entries, local_bytes and the counters marked cache-wide are 0 per
 * type. s points at a struct of this header's full layout. */
typedef void (*tc_stats_fn)(void *arg, const char *key_type, const tc_stats *s);

/* Calls fn once per key type seen, with its counters. fn runs on the calling thread with no
 * lock of the cache held (it may call the cache). Thread-safe. */
TC_API void tc_stats_foreach(tc_cache *c, tc_stats_fn fn, void *arg);

/* The counters per key type, and the cache-wide gauges, in the Prometheus text exposition
 * format (version 0.0.4): counters named tiercache_<field>_total with a key_type label,
 * HELP and TYPE lines, label values escaped. No two key types share a label: a byte that is
 * not UTF-8 is written \xNN, a backslash \\, and a key type named "other" (a one-part key)
 * \x6fther, apart from the overflow bucket "other". *text is malloc'd: free() it.
 * TC_ERR_ARG (NULL c or text), TC_ERR_NOMEM. Thread-safe. */
TC_API tc_status tc_stats_prometheus(tc_cache *c, char **text);

#ifdef __cplusplus
}
#endif

#endif /* TIERCACHE_H */
