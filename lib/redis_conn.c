/*
 * Connections (see redis_conn.h): our own connect with a timeout, TLS when asked, and the
 * byte I/O under hiredis's RESP formatting and reader. Owns the socket and the TLS session
 * of each connection; no locks, no shared state.
 */
#include "config.h"

#include "redis_conn.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Bytes read per recv: hiredis's own buffer size. */
#define READ_CHUNK (16 * 1024)

/* True if errstr is the message recorded for errnum (errno text, as hiredis records it). */
static bool errstr_is(const char *errstr, int errnum)
{
    char buf[128];
    return strcmp(errstr, tc__errno_text(errnum, buf)) == 0;
}

tc_status tc__remote_ctx_status(const redisContext *ctx)
{
    if (ctx && ctx->err == REDIS_ERR_IO &&
        (errstr_is(ctx->errstr, EAGAIN) || errstr_is(ctx->errstr, EWOULDBLOCK)))
        return TC_ERR_TIMEOUT;
    return TC_ERR_IO;
}

/* Records an I/O error in c's context as hiredis would: the errno's text, or for a TLS
 * error (EPROTO) OpenSSL's reason. */
static int io_error(tc_conn *c, int errnum)
{
    char buf[128];
    redisContext *ctx = c->ctx;
    ctx->err = REDIS_ERR_IO;
    if (errnum == EPROTO && c->ssl)
        tc__tls_error(ctx->errstr, sizeof ctx->errstr);
    else
        snprintf(ctx->errstr, sizeof ctx->errstr, "%s", tc__errno_text(errnum, buf));
    return REDIS_ERR;
}

static int eof_error(tc_conn *c)
{
    c->ctx->err = REDIS_ERR_EOF;
    snprintf(c->ctx->errstr, sizeof c->ctx->errstr, "Server closed the connection");
    return REDIS_ERR;
}

/* ------------------------------------------------------------------ connecting */

/* A socket of family connected to sa by deadline_ns, in blocking mode; -1 with *err. */
static int connect_fd(int family, const struct sockaddr *sa, socklen_t len, int64_t deadline_ns,
                      int *err)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    int rc = connect(fd, sa, len);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int64_t left;
        do {
            left = deadline_ns - tc__now_ns();
            rc = left > 0 ? poll(&p, 1, (int)((left + 999999) / 1000000)) : 0;
        } while (rc < 0 && errno == EINTR);
        int so = 0;
        socklen_t sl = sizeof so;
        if (rc == 0)
            so = ETIMEDOUT;
        else if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) != 0)
            so = errno;
        rc = so ? -1 : 0;
        errno = so;
    }
    int flags = rc == 0 ? fcntl(fd, F_GETFL) : -1;
    if (rc != 0 || flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        *err = errno ? errno : EIO;
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_unix(const char *path, int64_t deadline_ns, int *err)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        *err = ENAMETOOLONG;
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    return connect_fd(AF_UNIX, (const struct sockaddr *)&sa, sizeof sa, deadline_ns, err);
}

/* Each address host resolves to, in turn, until one connects or the deadline passes. */
static int connect_tcp(const char *host, int port, int64_t deadline_ns, int *err)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(host, service, &hints, &res);
    if (gai != 0) {
        *err = gai == EAI_SYSTEM ? errno : EHOSTUNREACH;
        return -1;
    }
    int fd = -1;
    *err = EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai && fd < 0 && tc__now_ns() < deadline_ns; ai = ai->ai_next)
        fd = connect_fd(ai->ai_family, ai->ai_addr, ai->ai_addrlen, deadline_ns, err);
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static void log_connect_error(const tc_conn_addr *a, const tc_logger *log, int err)
{
    char buf[128];
    if (a->host)
        tc__log(log, TC_LOG_WARN, "cannot connect to Redis at %s port %d: %s", a->host, a->port,
                tc__errno_text(err, buf));
    else
        tc__log(log, TC_LOG_WARN, "cannot connect to Redis at %s: %s", a->path,
                tc__errno_text(err, buf));
}

tc_status tc__conn_open(const tc_conn_addr *a, int connect_timeout_ms, int handshake_ms,
                        const tc_logger *log, tc_conn **out)
{
    *out = NULL;
    int err = 0;
    int fd = a->host
                 ? connect_tcp(a->host, a->port, tc__deadline_after_ms(connect_timeout_ms), &err)
                 : connect_unix(a->path, tc__deadline_after_ms(connect_timeout_ms), &err);
    if (fd < 0) {
        /* Refused, unreachable or a connect timeout: the server is not there. */
        log_connect_error(a, log, err);
        return err == ETIMEDOUT ? TC_ERR_TIMEOUT : TC_ERR_IO;
    }
    tc_conn *c = tc__calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return TC_ERR_NOMEM;
    }
    tc_status st = TC_OK;
    if (a->tls && a->host)
        st = tc__tls_handshake(a->tls, fd, a->host, a->port, tc__deadline_after_ms(handshake_ms),
                               &c->ssl);
    if (st == TC_OK && !(c->ctx = redisConnectFd(fd)))
        st = TC_ERR_NOMEM;
    if (st != TC_OK) {
        if (c->ssl)
            tc__tls_close(c->ssl);
        close(fd);
        tc__free(c);
        return st;
    }
    *out = c;
    return TC_OK;
}

void tc__conn_free(tc_conn *c)
{
    if (!c)
        return;
    if (c->ssl)
        tc__tls_close(c->ssl);
    redisFree(c->ctx); /* closes the socket; hiredis writes nothing on it */
    tc__free(c);
}

int tc__conn_set_timeout_tv(tc_conn *c, struct timeval tv)
{
    return redisSetTimeout(c->ctx, tv);
}

int tc__conn_set_timeout(tc_conn *c, int ms)
{
    struct timeval tv = {0, 0};
    if (ms > 0) {
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
    }
    return tc__conn_set_timeout_tv(c, tv);
}

int tc__conn_fd(const tc_conn *c)
{
    return c->ctx->fd;
}

/* ------------------------------------------------------------------ I/O */

int tc__conn_write(tc_conn *c, int *done)
{
    redisContext *ctx = c->ctx;
    if (ctx->err)
        return REDIS_ERR;
    size_t len = sdslen(ctx->obuf);
    if (len > 0) {
        long n = c->ssl ? tc__tls_write(c->ssl, ctx->obuf, len)
                        : (long)send(ctx->fd, ctx->obuf, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR)
            return io_error(c, errno);
        if (n > 0 && (size_t)n == len) {
            sds empty = sdsempty();
            if (!empty) {
                ctx->err = REDIS_ERR_OOM;
                snprintf(ctx->errstr, sizeof ctx->errstr, "Out of memory");
                return REDIS_ERR;
            }
            sdsfree(ctx->obuf);
            ctx->obuf = empty;
        } else if (n > 0) {
            sdsrange(ctx->obuf, (int)n, -1);
        }
    }
    *done = sdslen(ctx->obuf) == 0;
    return REDIS_OK;
}

/* Feeds n bytes to the reader; its error, if any, becomes the context's. */
static int feed(tc_conn *c, const char *buf, long n)
{
    redisContext *ctx = c->ctx;
    if (redisReaderFeed(ctx->reader, buf, (size_t)n) != REDIS_OK) {
        ctx->err = ctx->reader->err;
        snprintf(ctx->errstr, sizeof ctx->errstr, "%s", ctx->reader->errstr);
        return REDIS_ERR;
    }
    return REDIS_OK;
}

int tc__conn_read(tc_conn *c)
{
    if (c->ctx->err)
        return REDIS_ERR;
    char buf[READ_CHUNK];
    do {
        long n = c->ssl ? tc__tls_read(c->ssl, buf, sizeof buf)
                        : (long)recv(c->ctx->fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            return REDIS_OK; /* try again */
        if (n < 0)
            return io_error(c, errno);
        if (n == 0)
            return eof_error(c);
        if (feed(c, buf, n) != REDIS_OK)
            return REDIS_ERR;
    } while (c->ssl && tc__tls_pending(c->ssl));
    return REDIS_OK;
}

/* Writes everything appended, blocking within the socket's timeouts. */
static int write_all(tc_conn *c)
{
    int done = 0;
    while (!done) {
        if (tc__conn_write(c, &done) != REDIS_OK)
            return REDIS_ERR;
    }
    return REDIS_OK;
}

tc_status tc__conn_get_reply(tc_conn *c, redisReply **reply)
{
    *reply = NULL;
    void *x = NULL;
    if (write_all(c) != REDIS_OK)
        return tc__remote_ctx_status(c->ctx);
    for (;;) {
        if (redisGetReplyFromReader(c->ctx, &x) != REDIS_OK)
            return c->ctx->err == REDIS_ERR_PROTOCOL ? TC_ERR_PROTO : TC_ERR_IO;
        if (x) {
            *reply = x;
            return TC_OK;
        }
        if (tc__conn_read(c) != REDIS_OK) {
            tc_status st = tc__remote_ctx_status(c->ctx);
            return c->ctx->err == REDIS_ERR_PROTOCOL ? TC_ERR_PROTO : st;
        }
    }
}

tc_status tc__conn_status(const tc_conn *c)
{
    return c->ctx->err == REDIS_ERR_OOM ? TC_ERR_NOMEM : tc__remote_ctx_status(c->ctx);
}

int tc__conn_append(tc_conn *c, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(c->ctx, argc, argv, lens) != REDIS_OK) {
        c->ctx->err = REDIS_ERR_OOM;
        snprintf(c->ctx->errstr, sizeof c->ctx->errstr, "Out of memory");
        return REDIS_ERR;
    }
    return REDIS_OK;
}

int tc__conn_flush(tc_conn *c)
{
    return write_all(c);
}

int tc__conn_send(tc_conn *c, int argc, const char **argv, const size_t *lens)
{
    return tc__conn_append(c, argc, argv, lens) == REDIS_OK ? write_all(c) : REDIS_ERR;
}

tc_status tc__conn_command(tc_conn *c, int argc, const char **argv, const size_t *lens,
                           redisReply **reply)
{
    *reply = NULL;
    if (tc__conn_send(c, argc, argv, lens) != REDIS_OK)
        return tc__conn_status(c);
    return tc__conn_get_reply(c, reply);
}
