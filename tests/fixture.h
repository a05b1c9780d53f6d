/*
 * The Redis test fixture: starts a private redis-server on a free 127.0.0.1 port in a
 * temporary directory and stops it by its PID. A missing redis-server is a failure, never
 * a skip. The server dies with the process that started it (PR_SET_PDEATHSIG), so a crashed
 * test leaves nothing behind. Also used by tc-bench for its embedded default.
 *
 * With TLS (tcf_tls_make, then tcf_tls_use or tcf_redis_start_tls) the same servers listen
 * only on a TLS port (--tls-port, --port 0), and the fixture's own client (tcf_redis_cmd)
 * speaks TLS to them through OpenSSL, trusting the test CAs and presenting the test client
 * certificate.
 */
#ifndef TC_FIXTURE_H
#define TC_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct tcf_tls tcf_tls;

typedef struct tcf_redis {
    pid_t pid;
    int port; /* its TLS port when tls is set */
    char dir[256];
    char url[128];      /* redis://127.0.0.1:P/0, or rediss://127.0.0.1:P/0 */
    const tcf_tls *tls; /* borrowed: the certificates it serves; NULL: plaintext */
} tcf_redis;

/* Starts redis-server (REDIS_SERVER from the environment, else the one configure found, else
 * "redis-server" on PATH) with the given extra arguments (NULL-terminated list of
 * "--name value" pairs as separate strings; may be NULL), waits until it answers PING.
 * Returns 0, or -1 with a message on stderr. */
int tcf_redis_start(tcf_redis *r, const char *const *extra_args);

/* Sends SIGTERM to the server, waits for it (SIGKILL after 5 s) and removes its directory.
 * Safe to call twice. */
void tcf_redis_stop(tcf_redis *r);

/* Stops the server abruptly (SIGKILL) and waits for it, keeping the directory and port. */
void tcf_redis_kill(tcf_redis *r);

/* Shuts the server down by command (SHUTDOWN SAVE when save is true: the data file is
 * written even with no save points configured; else SHUTDOWN NOSAVE) and waits for it (up to
 * 30 s, then SIGKILL), keeping the directory and port for tcf_redis_restart, which loads the
 * data file. Returns 0 if the server exited by itself with status 0, else -1. */
int tcf_redis_shutdown(tcf_redis *r, bool save);

/* Starts the server again on the same port and directory (after tcf_redis_kill or
 * tcf_redis_shutdown). */
int tcf_redis_restart(tcf_redis *r, const char *const *extra_args);

/* Runs one command given as a NULL-terminated argv against the server, on a fresh connection,
 * and returns the integer or status reply as a malloc'd string ("" for nil), or NULL on
 * error. For tests that need to poke Redis directly. Over TLS when r->tls is set. */
char *tcf_redis_cmd(const tcf_redis *r, const char *const *argv);

/* The same with AUTH password first when password is not NULL (NULL if AUTH is refused),
 * argc arguments (argc < 0: argv is NULL-terminated) and their lengths (lens NULL: strlen),
 * for binary arguments. Also for an array reply: its elements' count, as above. */
char *tcf_redis_cmd_ex(const tcf_redis *r, const char *password, int argc, const char *const *argv,
                       const size_t *lens);

/* A free TCP port on 127.0.0.1 (bound and released; the usual small race applies). */
int tcf_free_port(void);

/* A key prefix unique to this process and call, e.g. "t4711_3", for test isolation. */
const char *tcf_unique_prefix(char *buf, size_t cap);

/* ---------------------------------------------------------------- TLS
 *
 * Certificates made at run time with the openssl command (none is committed), in a temporary
 * directory of their own: PEM files, EC P-256 keys, valid for ten years unless said. Every
 * server certificate uses server_key. */
struct tcf_tls {
    char dir[256];
    char ca_file[320];           /* the test CA */
    char server_cert[320];       /* by the CA, SAN IP:127.0.0.1 and DNS:localhost */
    char server_key[320];        /* the key of every server certificate below */
    char client_cert[320];       /* by the CA, no SAN: for mutual TLS */
    char client_key[320];        /* its key */
    char expired_cert[320];      /* by the CA, SAN as server_cert, valid on 2020-01-01 only */
    char other_host_cert[320];   /* by the CA, SAN DNS:other.example only */
    char other_ca_file[320];     /* a second CA */
    char other_server_cert[320]; /* by the second CA, SAN as server_cert */
    char auth_clients[16];       /* tls-auth-clients of the servers started with it: "no"
                                    (tcf_tls_make's default), "yes" or "optional" */
};

/* Makes the certificates. 0, or -1 with the openssl command's output on stderr. */
int tcf_tls_make(tcf_tls *t);
/* Removes t's directory and everything in it. Safe to call twice. */
void tcf_tls_remove(tcf_tls *t);

/* From now on tcf_redis_start, the cluster and the sentinel starters below start TLS servers
 * on t (borrowed: it must outlive them; NULL: plaintext again). Cluster nodes also get
 * tls-cluster yes; every TLS server gets tls-replication yes. Not thread-safe: call it before
 * starting servers, e.g. in main. */
void tcf_tls_use(const tcf_tls *t);
/* What tcf_tls_use set (NULL: plaintext). */
const tcf_tls *tcf_tls_current(void);

/* tcf_redis_start with t for this server only (NULL: plaintext, whatever tcf_tls_use said).
 * Later extra_args win over the TLS arguments the fixture passes, e.g. {"--tls-cert-file",
 * t->expired_cert, NULL}; tcf_redis_restart reuses t. */
int tcf_redis_start_tls(tcf_redis *r, const tcf_tls *t, const char *const *extra_args);

/* ---------------------------------------------------------------- a Redis Cluster
 *
 * n masters (no replicas), each a tcf_redis with --cluster-enabled in its own directory,
 * joined by `redis-cli --cluster create`; started when every node reports
 * cluster_state:ok. url is "redis-cluster://127.0.0.1:P1,127.0.0.1:P2,...". */
#define TCF_CLUSTER_MAX 6
typedef struct tcf_cluster {
    int n;
    tcf_redis nodes[TCF_CLUSTER_MAX];
    char url[512];
} tcf_cluster;

/* Returns 0, or -1 with a message on stderr (everything started is stopped). */
int tcf_cluster_start(tcf_cluster *cl, int masters);
/* One cluster-enabled redis-server with the settings of tcf_cluster_start's nodes, in no
 * cluster yet (CLUSTER MEET joins it). Stop it with tcf_redis_stop. */
int tcf_cluster_node_start(tcf_redis *r);
/* Stops every node by its PID (those already killed are skipped) and removes their dirs. */
void tcf_cluster_stop(tcf_cluster *cl);
/* Waits up to timeout_ms until every node still running reports cluster_state:ok. */
int tcf_cluster_wait_ok(const tcf_cluster *cl, int timeout_ms);

/* ---------------------------------------------------------------- Redis Sentinel
 *
 * A sentinel (redis-server <conf> --sentinel) on a free 127.0.0.1 port, monitoring the master
 * on master_port under `name` with quorum 1, down-after 1000 ms and failover-timeout 5000 ms.
 * Waits until it answers PING and knows the master. Stop it with tcf_redis_stop. With
 * tcf_tls_use the sentinel listens on TLS only, reaches the master (then on its TLS port) over
 * TLS, and its url is "rediss-sentinel://127.0.0.1:P/name". */
int tcf_sentinel_start(tcf_redis *s, int master_port, const char *name);
/* The same with extra_conf (may be NULL) appended to the sentinel's configuration file, e.g.
 * "requirepass secret\nsentinel auth-pass mymaster masterpw\n" (name the master as given).
 * A sentinel with a password still counts as up when it answers NOAUTH. */
int tcf_sentinel_start_conf(tcf_redis *s, int master_port, const char *name,
                            const char *extra_conf);

/* ---------------------------------------------------------------- a misbehaving network
 *
 * A TCP proxy on a free 127.0.0.1 port in front of a server on 127.0.0.1, run by a thread
 * of its own, whose behaviour a test switches at any time:
 *   TCF_PROXY_PASS     forwards both ways;
 *   TCF_PROXY_MUTE     accepts connections and swallows what clients send: a server that
 *                      accepts and never answers (nothing reaches the real server);
 *   TCF_PROXY_TRICKLE  forwards requests, but replies one byte every trickle_ms: a server
 *                      that never lets a socket timeout fire, yet takes for ever;
 *   TCF_PROXY_CUT      forwards requests; of the next bytes the server sends on each
 *                      connection, half reach the client, then the proxy resets the
 *                      connection (RST): a reply cut off mid-way, or for a new TLS connection
 *                      a server that dies mid-handshake.
 * The proxy forwards bytes, whatever they are: it works in front of a TLS server too (MUTE
 * is then a server that accepts TCP and never answers the handshake). */
typedef struct tcf_proxy tcf_proxy;
typedef enum tcf_proxy_mode {
    TCF_PROXY_PASS,
    TCF_PROXY_MUTE,
    TCF_PROXY_TRICKLE,
    TCF_PROXY_CUT
} tcf_proxy_mode;

/* NULL (with a message on stderr) if it cannot listen or start its thread. */
tcf_proxy *tcf_proxy_start(int target_port);
int tcf_proxy_port(const tcf_proxy *p);
void tcf_proxy_set_mode(tcf_proxy *p, tcf_proxy_mode mode, int trickle_ms);
/* Connections accepted so far. */
int tcf_proxy_accepted(const tcf_proxy *p);
/* Closes every connection it holds (clients see the server hang up), keeps listening. */
void tcf_proxy_drop_all(tcf_proxy *p);
/* Stops the thread, closes everything, frees p. NULL is a no-op. */
void tcf_proxy_stop(tcf_proxy *p);

#endif /* TC_FIXTURE_H */
