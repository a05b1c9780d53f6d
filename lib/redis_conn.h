/*
 * A connection to one Redis server: our own socket (TCP or Unix, connected within a
 * timeout), TLS on it when asked (redis_tls.h), and a hiredis context used for RESP only:
 * its output buffer, where commands are formatted, and its reader, which parses replies.
 * Every byte goes through the functions here (send with MSG_NOSIGNAL, recv, or the TLS
 * session), never through hiredis's own I/O, so plain and TLS connections behave alike
 * under the exchange's deadlines, and a reset connection raises no SIGPIPE.
 *
 * Errors are recorded in ctx as hiredis records its own (ctx->err REDIS_ERR_IO with the
 * errno text, REDIS_ERR_EOF, REDIS_ERR_PROTOCOL, REDIS_ERR_OOM), so tc__remote_ctx_status
 * maps them: a socket timeout (EAGAIN) is TC_ERR_TIMEOUT.
 *
 * Thread safety: a connection belongs to one thread at a time.
 */
#ifndef TC_REDIS_CONN_H
#define TC_REDIS_CONN_H

#include <hiredis/hiredis.h>

#include "common.h"
#include "redis_tls.h"

typedef struct tc_conn {
    redisContext *ctx;  /* RESP only: ctx->obuf (formatted commands), ctx->reader */
    struct ssl_st *ssl; /* NULL: plaintext */
    long long redirect; /* targeted coherence: the client id this connection's CLIENT
                           TRACKING last redirected to (redis_ops.c); 0: not known */
} tc_conn;

/* Where to connect: host:port, or a Unix socket at path (host NULL); over TLS when tls is
 * not NULL (TCP only). */
typedef struct tc_conn_addr {
    const char *host;
    int port;
    const char *path;
    tc_tls *tls;
} tc_conn_addr;

/* Connects within connect_timeout_ms (each address a host name resolves to, in turn) and,
 * for TLS, does the handshake within handshake_ms more. Logs why it failed: TC_ERR_IO
 * (refused, unreachable), TC_ERR_TIMEOUT, TC_ERR_NOMEM, or the TLS handshake's errors
 * (tc__tls_handshake). */
tc_status tc__conn_open(const tc_conn_addr *a, int connect_timeout_ms, int handshake_ms,
                        const tc_logger *log, tc_conn **out);
/* Frees the connection and closes its socket, writing nothing on it. NULL is a no-op. */
void tc__conn_free(tc_conn *c);

/* Sets the socket's read and write timeouts (none if ms <= 0). REDIS_OK or REDIS_ERR. */
int tc__conn_set_timeout(tc_conn *c, int ms);
int tc__conn_set_timeout_tv(tc_conn *c, struct timeval tv);
int tc__conn_fd(const tc_conn *c);

/* Writes what ctx->obuf holds, as redisBufferWrite does (*done when it is empty): one send
 * or TLS write. REDIS_OK, or REDIS_ERR with the error in ctx. */
int tc__conn_write(tc_conn *c, int *done);
/* Reads what the socket has (blocking until something comes or its timeout) into the
 * reader, as redisBufferRead does; for TLS, also every decrypted byte the session holds,
 * so that poll(2) on the socket stays a true test of "more to read". */
int tc__conn_read(tc_conn *c);

/* Maps a failed context (ctx->err) to a status: timeouts (EAGAIN) to TC_ERR_TIMEOUT,
 * everything else to TC_ERR_IO. */
tc_status tc__remote_ctx_status(const redisContext *ctx);

/* Appends argv (lens NULL: NUL-terminated strings) and writes it all, blocking within the
 * socket's timeouts. REDIS_OK, or REDIS_ERR with the error in ctx (REDIS_ERR_OOM if it
 * could not be formatted). */
int tc__conn_send(tc_conn *c, int argc, const char **argv, const size_t *lens);
/* tc__conn_send in two steps, for a long pipeline: append argv (no I/O), then write
 * everything appended. Same results. */
int tc__conn_append(tc_conn *c, int argc, const char **argv, const size_t *lens);
int tc__conn_flush(tc_conn *c);
/* The status of c's recorded error: TC_ERR_NOMEM for an allocation, else as
 * tc__remote_ctx_status. */
tc_status tc__conn_status(const tc_conn *c);

/* Blocking command: appends argv (lens NULL: NUL-terminated strings), writes it all,
 * reads one reply, all bounded by the socket's timeouts. TC_OK with *reply (possibly an
 * error reply: the caller's to interpret and free), or the connection's status. */
tc_status tc__conn_command(tc_conn *c, int argc, const char **argv, const size_t *lens,
                           redisReply **reply);
/* Blocking read of the next reply (a subscription confirmation, a message). */
tc_status tc__conn_get_reply(tc_conn *c, redisReply **reply);

#endif /* TC_REDIS_CONN_H */
