/*
 * TLS through OpenSSL (see redis_tls.h).
 *
 * Owns: a copy of the settings, the current SSL_CTX and the identity (inode, size, mtime)
 * of each file it was built from. Locks: mu guards ctx and the identities; a leaf lock,
 * never held while a file is read, during I/O or a log call (a context is built outside
 * it and swapped in). Each session holds its own reference to the context it was made
 * from, so a swap never frees a context in use.
 *
 * I/O: a session's BIO is ours: send(MSG_NOSIGNAL) and recv on the caller's socket, so
 * that a write to a reset connection fails with EPIPE instead of raising SIGPIPE (OpenSSL's
 * socket BIO writes with write(2)), and the socket's own timeouts (SO_RCVTIMEO,
 * SO_SNDTIMEO, which the exchange lowers to its deadline) bound every read and write: a
 * timeout surfaces as errno EAGAIN.
 */
#include "config.h"

#include "redis_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "error.h"

/* The files a context is built from, in this order. */
enum { F_CA, F_CA_DIR, F_CERT, F_KEY, F_COUNT };

typedef struct file_id {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    bool present;
} file_id;

struct tc_tls {
    tc_tls_config cfg; /* owned strings */
    tc_logger log;
    pthread_mutex_t mu;
    SSL_CTX *ctx;
    file_id ids[F_COUNT];
};

#define TLOG(t, level, ...) tc__log(&(t)->log, (level), __VA_ARGS__)

/* ------------------------------------------------------------------ our BIO */

static int bio_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(fd, buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* The method is made once per process and never freed: OpenSSL keeps it for the process's
 * life as well. */
static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "tiercache");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
        bio_method = m;
    else if (m)
        BIO_meth_free(m);
}

/* ------------------------------------------------------------------ contexts */

static const char *file_of(const tc_tls_config *cfg, int i)
{
    switch (i) {
    case F_CA:
        return cfg->ca_file;
    case F_CA_DIR:
        return cfg->ca_dir;
    case F_CERT:
        return cfg->cert_file;
    default:
        return cfg->key_file;
    }
}

static void identify(const tc_tls_config *cfg, file_id ids[F_COUNT])
{
    memset(ids, 0, sizeof(file_id) * F_COUNT);
    for (int i = 0; i < F_COUNT; i++) {
        struct stat st;
        const char *f = file_of(cfg, i);
        if (f && stat(f, &st) == 0)
            ids[i] = (file_id){st.st_dev, st.st_ino, st.st_size, st.st_mtim, true};
    }
}

static bool same_ids(const file_id *a, const file_id *b)
{
    for (int i = 0; i < F_COUNT; i++) {
        if (a[i].present != b[i].present || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
            a[i].size != b[i].size || a[i].mtime.tv_sec != b[i].mtime.tv_sec ||
            a[i].mtime.tv_nsec != b[i].mtime.tv_nsec)
            return false;
    }
    return true;
}

const char *tc__tls_error(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (!e) {
        snprintf(buf, cap, "no detail");
        return buf;
    }
    ERR_error_string_n(e, buf, cap);
    return buf;
}

/* Logs what failed while building a context, with OpenSSL's reason. */
static void log_build_error(tc_tls *t, const char *what, const char *file)
{
    char why[256];
    TLOG(t, TC_LOG_ERROR, "TLS: %s%s%s: %s", what, file ? " " : "", file ? file : "",
         tc__tls_error(why, sizeof why));
    ERR_clear_error();
}

/* A context from the settings as the files are now. NULL (logged) on failure. */
static SSL_CTX *build_ctx(tc_tls *t)
{
    const tc_tls_config *cfg = &t->cfg;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        log_build_error(t, "cannot make a context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* A read that meets only a non-data record (a TLS 1.3 session ticket) returns at once
     * instead of waiting for data on the socket: the subscriber reads after poll(2), and
     * must never sit in a read until the socket's timeout. */
    SSL_CTX_clear_mode(ctx, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_verify(ctx, cfg->skip_verify ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    bool ok = true;
    if (cfg->ca_file || cfg->ca_dir) {
        if (SSL_CTX_load_verify_locations(ctx, cfg->ca_file, cfg->ca_dir) != 1) {
            log_build_error(t, "cannot load the CA certificates from",
                            cfg->ca_file ? cfg->ca_file : cfg->ca_dir);
            ok = false;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        log_build_error(t, "cannot load the system's CA certificates", NULL);
        ok = false;
    }
    if (ok && cfg->cert_file) {
        const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1) {
            log_build_error(t, "cannot load the client certificate", cfg->cert_file);
            ok = false;
        } else if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                   SSL_CTX_check_private_key(ctx) != 1) {
            log_build_error(t,
                            "cannot load the client key (or it does not match the "
                            "certificate)",
                            key);
            ok = false;
        }
    } else if (ok && cfg->key_file) {
        TLOG(t, TC_LOG_ERROR, "TLS: tls_key_file without tls_cert_file");
        ok = false;
    }
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* A reference to the context for the files as they are now, rebuilt if one changed since
 * the current one was made (a rotation); the current one when a rebuild fails. NULL only
 * if there is none at all. The caller frees the reference with SSL_CTX_free. */
static SSL_CTX *current_ctx(tc_tls *t)
{
    file_id now[F_COUNT];
    identify(&t->cfg, now);
    pthread_mutex_lock(&t->mu);
    bool stale = !same_ids(now, t->ids);
    pthread_mutex_unlock(&t->mu);
    SSL_CTX *fresh = stale ? build_ctx(t) : NULL;
    pthread_mutex_lock(&t->mu);
    if (fresh) {
        SSL_CTX_free(t->ctx);
        t->ctx = fresh;
        memcpy(t->ids, now, sizeof now);
    }
    SSL_CTX *ctx = t->ctx;
    if (ctx)
        SSL_CTX_up_ref(ctx);
    pthread_mutex_unlock(&t->mu);
    if (fresh)
        TLOG(t, TC_LOG_INFO, "TLS: certificate files changed: new connections use them");
    return ctx;
}

static tc_status copy_opt(const char *s, const char **out)
{
    *out = NULL;
    if (!s)
        return TC_OK;
    return (*out = tc__strdup(s)) ? TC_OK : TC_ERR_NOMEM;
}

void tc__tls_free(tc_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    tc__free((char *)t->cfg.ca_file);
    tc__free((char *)t->cfg.ca_dir);
    tc__free((char *)t->cfg.cert_file);
    tc__free((char *)t->cfg.key_file);
    tc__free((char *)t->cfg.server_name);
    pthread_mutex_destroy(&t->mu);
    tc__free(t);
}

tc_status tc__tls_new(const tc_tls_config *cfg, const tc_logger *log, tc_tls **out)
{
    *out = NULL;
    pthread_once(&bio_once, bio_method_init);
    if (!bio_method)
        return TC_ERR_NOMEM;
    tc_tls *t = tc__calloc(1, sizeof *t);
    if (!t)
        return TC_ERR_NOMEM;
    if (pthread_mutex_init(&t->mu, NULL) != 0) {
        tc__free(t);
        return TC_ERR_NOMEM;
    }
    t->log = *log;
    t->cfg.skip_verify = cfg->skip_verify;
    if (copy_opt(cfg->ca_file, &t->cfg.ca_file) != TC_OK ||
        copy_opt(cfg->ca_dir, &t->cfg.ca_dir) != TC_OK ||
        copy_opt(cfg->cert_file, &t->cfg.cert_file) != TC_OK ||
        copy_opt(cfg->key_file, &t->cfg.key_file) != TC_OK ||
        copy_opt(cfg->server_name, &t->cfg.server_name) != TC_OK) {
        tc__tls_free(t);
        return TC_ERR_NOMEM;
    }
    identify(&t->cfg, t->ids);
    t->ctx = build_ctx(t);
    if (!t->ctx) {
        tc__tls_free(t);
        return TC_ERR_ARG;
    }
    if (cfg->skip_verify)
        TLOG(t, TC_LOG_WARN,
             "TLS: tls_skip_verify is set: the server's certificate is not "
             "checked, so anyone on the path can pose as Redis (tests only)");
    *out = t;
    return TC_OK;
}

/* ------------------------------------------------------------------ the handshake */

static bool is_address(const char *s)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* What the server's name check and SNI use. */
static bool set_name(tc_tls *t, SSL *ssl, const char *name)
{
    bool ok = true;
    if (!is_address(name))
        ok = SSL_set_tlsext_host_name(ssl, name) == 1;
    if (t->cfg.skip_verify || !ok)
        return ok;
    if (is_address(name))
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    return SSL_set1_host(ssl, name) == 1;
}

/* Waits until fd is ready for what SSL asks, or the deadline. */
static bool wait_for(int fd, int ssl_err, int64_t deadline_ns)
{
    int64_t left = deadline_ns - tc__now_ns();
    if (left <= 0)
        return false;
    struct pollfd p = {.fd = fd, .events = ssl_err == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN};
    int ms = (int)((left + 999999) / 1000000);
    int rc;
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return rc > 0;
}

/* The alerts a server sends when it refuses our certificate (mutual TLS). */
static bool refused_our_cert(unsigned long e)
{
    int r = ERR_GET_REASON(e);
    return r == SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED || r == SSL_R_SSLV3_ALERT_BAD_CERTIFICATE ||
           r == SSL_R_TLSV1_ALERT_UNKNOWN_CA || r == SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN ||
           r == SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE || r == SSL_R_TLSV1_ALERT_ACCESS_DENIED;
}

/* Not a TLS server: what OpenSSL says when the first bytes back are not a TLS record. */
static bool not_tls(unsigned long e)
{
    int r = ERR_GET_REASON(e);
    return r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG ||
           r == SSL_R_RECORD_LENGTH_MISMATCH || r == SSL_R_UNEXPECTED_EOF_WHILE_READING;
}

/* Maps and logs a failed handshake. */
static tc_status handshake_failed(tc_tls *t, SSL *ssl, int ssl_err, const char *host, int port,
                                  const char *name)
{
    long vr = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    char why[256];
    if (vr != X509_V_OK && !t->cfg.skip_verify) {
        bool mismatch = vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH;
        TLOG(t, TC_LOG_ERROR, "TLS: the certificate of Redis at %s port %d is not trusted: %s%s%s",
             host, port, X509_verify_cert_error_string(vr), mismatch ? ": it is not for " : "",
             mismatch ? name : "");
        return TC_ERR_AUTH;
    }
    if (e && refused_our_cert(e)) {
        TLOG(t, TC_LOG_ERROR,
             "TLS: Redis at %s port %d refused our client certificate (%s); "
             "set tls_cert_file and tls_key_file",
             host, port, tc__tls_error(why, sizeof why));
        return TC_ERR_AUTH;
    }
    if ((e && not_tls(e)) || (ssl_err == SSL_ERROR_SYSCALL && errno == 0)) {
        TLOG(t, TC_LOG_ERROR,
             "TLS handshake with Redis at %s port %d failed: the server does "
             "not speak TLS (a plaintext port on a rediss:// URL?) (%s)",
             host, port, e ? tc__tls_error(why, sizeof why) : "connection closed");
        return TC_ERR_PROTO;
    }
    if (ssl_err == SSL_ERROR_SYSCALL) {
        TLOG(t, TC_LOG_WARN, "TLS handshake with Redis at %s port %d failed: %s", host, port,
             tc__errno_text(errno, why));
        return TC_ERR_IO;
    }
    TLOG(t, TC_LOG_ERROR, "TLS handshake with Redis at %s port %d failed: %s", host, port,
         tc__tls_error(why, sizeof why));
    return ERR_GET_LIB(e) == ERR_LIB_SSL ? TC_ERR_PROTO : TC_ERR_IO;
}

/* Runs SSL_connect on the non-blocking fd until done, a failure or the deadline. */
static tc_status run_handshake(tc_tls *t, SSL *ssl, int fd, const char *host, int port,
                               const char *name, int64_t deadline_ns)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int rc = SSL_connect(ssl);
        if (rc == 1)
            return TC_OK;
        int err = SSL_get_error(ssl, rc);
        if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
            return handshake_failed(t, ssl, err, host, port, name);
        if (!wait_for(fd, err, deadline_ns)) {
            TLOG(t, TC_LOG_WARN,
                 "TLS handshake with Redis at %s port %d timed out (a server "
                 "that does not answer TLS?)",
                 host, port);
            return TC_ERR_TIMEOUT;
        }
    }
}

tc_status tc__tls_handshake(tc_tls *t, int fd, const char *host, int port, int64_t deadline_ns,
                            SSL **out)
{
    *out = NULL;
    SSL_CTX *ctx = current_ctx(t);
    SSL *ssl = ctx ? SSL_new(ctx) : NULL;
    SSL_CTX_free(ctx); /* the session holds its own reference */
    BIO *bio = ssl ? BIO_new(bio_method) : NULL;
    if (!bio) {
        SSL_free(ssl);
        return TC_ERR_NOMEM;
    }
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(ssl, bio, bio);
    const char *name = t->cfg.server_name ? t->cfg.server_name : host;
    if (!set_name(t, ssl, name)) {
        TLOG(t, TC_LOG_ERROR, "TLS: cannot use %s as the server's name", name);
        SSL_free(ssl);
        return TC_ERR_ARG;
    }
    int flags = fcntl(fd, F_GETFL);
    tc_status st = flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 ? TC_OK : TC_ERR_IO;
    if (st == TC_OK)
        st = run_handshake(t, ssl, fd, host, port, name, deadline_ns);
    if (st == TC_OK && fcntl(fd, F_SETFL, flags) != 0)
        st = TC_ERR_IO;
    ERR_clear_error();
    if (st != TC_OK) {
        SSL_free(ssl);
        return st;
    }
    if (t->cfg.skip_verify)
        TLOG(t, TC_LOG_DEBUG,
             "TLS to Redis at %s port %d without certificate checks "
             "(tls_skip_verify)",
             host, port);
    *out = ssl;
    return TC_OK;
}

/* ------------------------------------------------------------------ sessions */

/* errno for a failed SSL_read or SSL_write; -1, or 0 for the end of the stream. */
static long io_failed(SSL *ssl, int rc)
{
    int err = SSL_get_error(ssl, rc);
    switch (err) {
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        /* The socket's timeout ran out (recv said EAGAIN), or a record without data was
         * handled: nothing to give yet, try again (EINTR). */
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            errno = EINTR;
        return -1;
    case SSL_ERROR_SYSCALL:
        if (errno == 0)
            return 0; /* closed without a close_notify */
        return -1;
    default:
        if (ERR_GET_REASON(ERR_peek_last_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
            return 0;
        errno = EPROTO;
        return -1;
    }
}

long tc__tls_read(SSL *ssl, void *buf, size_t cap)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read(ssl, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
    return rc > 0 ? rc : io_failed(ssl, rc);
}

long tc__tls_write(SSL *ssl, const void *buf, size_t len)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
    if (rc > 0)
        return rc;
    long r = io_failed(ssl, rc);
    if (r == 0)
        errno = EPIPE;
    return -1;
}

bool tc__tls_pending(SSL *ssl)
{
    return SSL_pending(ssl) > 0;
}

void tc__tls_close(SSL *ssl)
{
    SSL_free(ssl);
}
