/*
 * TLS for the Redis tier, through OpenSSL: a client context shared by every connection of
 * a handle (the CAs to trust, the client certificate for mutual TLS, TLS 1.2 at least,
 * verification on unless skip_verify), and the handshake on a connected socket within a
 * deadline. The files are watched: when one changes on disk (a rotated certificate or
 * CA), the next handshake builds a new context from them; connections already open keep
 * theirs. The socket I/O of a TLS connection goes through send/recv with MSG_NOSIGNAL, so
 * a reset connection raises no SIGPIPE here either.
 *
 * Thread safety: every function may be called from any thread; the context swap is under
 * a leaf mutex, never held during I/O or a log call.
 */
#ifndef TC_REDIS_TLS_H
#define TC_REDIS_TLS_H

#include "common.h"
#include "redis_types.h"

typedef struct tc_tls tc_tls;
struct ssl_st;

/* A TLS client for cfg (its strings are copied). Loads the files now, so that a missing or
 * unreadable file fails tc_open with a log line naming it: TC_ERR_ARG; TC_ERR_NOMEM. */
tc_status tc__tls_new(const tc_tls_config *cfg, const tc_logger *log, tc_tls **out);
void tc__tls_free(tc_tls *t);

/* The TLS handshake on fd, a connected socket in blocking mode, finished by deadline_ns
 * (monotonic): host is the name (or address) verified against the server's certificate
 * and sent as SNI unless it is an address, unless the configuration names another. On
 * success *out is the session, to be used with tc__tls_read / tc__tls_write and freed with
 * tc__tls_close. Errors, each logged with its cause: TC_ERR_AUTH (the certificate was not
 * trusted, has expired, names another host; or the server refused ours), TC_ERR_PROTO
 * (the server does not speak TLS, or not a version we accept), TC_ERR_TIMEOUT,
 * TC_ERR_IO, TC_ERR_NOMEM. */
tc_status tc__tls_handshake(tc_tls *t, int fd, const char *host, int port, int64_t deadline_ns,
                            struct ssl_st **out);

/* Reads up to cap bytes: the count, 0 at the end of the stream (the server closed it), -1
 * on an error with errno set (EAGAIN: the socket's timeout ran out; EINTR: no data yet, a
 * record without data was handled: read again; EPROTO: a TLS error, whose text
 * tc__tls_error copies). */
long tc__tls_read(struct ssl_st *ssl, void *buf, size_t cap);
/* Writes up to len bytes: the count written (> 0), or -1 with errno set as tc__tls_read's. */
long tc__tls_write(struct ssl_st *ssl, const void *buf, size_t len);
/* Whether decrypted bytes wait inside the session (poll cannot see them). */
bool tc__tls_pending(struct ssl_st *ssl);
/* The text of the last TLS error of this thread, into buf. */
const char *tc__tls_error(char *buf, size_t cap);
/* Frees the session without a close_notify: nothing is written to the socket (which may
 * be dead, or a parent's after fork). The socket is the caller's to close. */
void tc__tls_close(struct ssl_st *ssl);

#endif /* TC_REDIS_TLS_H */
