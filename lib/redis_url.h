/*
 * Redis URLs: the single-server, Unix socket, Cluster and Sentinel forms, parsed into a
 * tc_url. Parsing only: no I/O, no allocation beyond the result. Fuzzed (fuzz/fuzz_url.c).
 * Thread safety: pure functions.
 */
#ifndef TC_REDIS_URL_H
#define TC_REDIS_URL_H

#include "common.h"

typedef enum tc_url_kind {
    TC_URL_TCP = 0,
    TC_URL_UNIX = 1,
    TC_URL_CLUSTER = 2,
    TC_URL_SENTINEL = 3
} tc_url_kind;

typedef struct tc_url {
    tc_url_kind kind;
    bool tls;       /* a rediss scheme: every connection (to nodes and sentinels) over TLS */
    char *host;     /* TCP: host name or address (IPv6 without brackets) */
    int port;       /* TCP: default 6379 */
    char *path;     /* UNIX: socket path */
    int db;         /* default 0 */
    char *user;     /* NULL: none (AUTH <password> only) */
    char *password; /* NULL: no AUTH, unless user is set (then AUTH <user> "", which an ACL
                       user marked nopass accepts) */
    /* CLUSTER: the seed nodes; SENTINEL: the sentinels (host/port above is the first). */
    int nseeds;
    char **seed_hosts;
    int *seed_ports;
    char *master_name;       /* SENTINEL: the monitored master's name */
    char *sentinel_user;     /* SENTINEL: what the sentinels themselves ask for (NULL: */
    char *sentinel_password; /* nothing), independent of the master's user and password */
} tc_url;

/* Parses "redis://[user[:password]@]host[:port][/db]" (host may be "[v6addr]"),
 * "unix:///path[?db=N]" (also "unix://[user[:password]@]/path[?db=N]" with credentials) and
 * "redis-cluster://[user[:password]@]host:port[,host:port...]" (seed nodes of a Redis
 * Cluster; no db: a cluster has only db 0) and
 * "redis-sentinel://[user[:password]@]host:port[,host:port...]/master-name[/db]
 * [?sentinel_password=P[&sentinel_user=U]]" (the sentinels; user and password are the
 * master's, and the sentinels get the query's credentials, or none).
 * "rediss://", "rediss-cluster://" and "rediss-sentinel://" are the same forms over TLS
 * (tls set).
 * User and password may be percent-encoded; an empty one is absent. TC_ERR_ARG on an
 * unknown scheme or bad syntax (empty host,
 * port outside 1..65535, db not a non-negative integer, trailing garbage, a character a
 * URL must percent-encode, an escape decoding to NUL, an IPv6 zone id, a socket path
 * longer than sun_path allows).
 * TC_ERR_NOMEM. On success the caller frees with tc__url_free. */
tc_status tc__url_parse(const char *s, tc_url *out);
void tc__url_free(tc_url *u);

/* Zeroes a secret's bytes before its memory goes back (volatile: not optimised away).
 * NULL is a no-op. */
void tc__url_wipe(char *s);

/* s[0..n) as a decimal of digits only, 0..max. */
bool tc__parse_uint(const char *s, size_t n, long max, long *out);

#endif /* TC_REDIS_URL_H */
