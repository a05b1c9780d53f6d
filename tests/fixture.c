/*
 * The Redis test fixture (see fixture.h). It only ever talks to 127.0.0.1 and only signals
 * the PID it started. Its own client (tcf_redis_cmd) does its socket I/O itself, plain or
 * through OpenSSL, and uses hiredis only to format commands and parse replies.
 */
#include "config.h"

#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef REDIS_SERVER
#define REDIS_SERVER "redis-server"
#endif

int tcf_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char *server_path(void)
{
    const char *env = getenv("REDIS_SERVER");
    return env && *env ? env : REDIS_SERVER;
}

static redisReply *exchange(const tcf_redis *r, int timeout_ms, const char *password, int argc,
                            const char *const *argv, const size_t *lens);

static bool answers_ping(const tcf_redis *r)
{
    const char *argv[] = {"PING"};
    redisReply *rep = exchange(r, 200, NULL, 1, argv, NULL);
    /* LOADING or NOAUTH also prove the server is up. */
    if (rep)
        freeReplyObject(rep);
    return rep != NULL;
}

static pid_t spawn(tcf_redis *r, const char *const *extra)
{
    const char *argv[80];
    char port[16];
    int n = 0;
    snprintf(port, sizeof port, "%d", r->port);
    argv[n++] = server_path();
    if (r->tls) {
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--tls-port";
        argv[n++] = port;
        argv[n++] = "--tls-cert-file";
        argv[n++] = r->tls->server_cert;
        argv[n++] = "--tls-key-file";
        argv[n++] = r->tls->server_key;
        argv[n++] = "--tls-ca-cert-file";
        argv[n++] = r->tls->ca_file;
        argv[n++] = "--tls-auth-clients";
        argv[n++] = r->tls->auth_clients[0] ? r->tls->auth_clients : "no";
        argv[n++] = "--tls-replication";
        argv[n++] = "yes";
    } else {
        argv[n++] = "--port";
        argv[n++] = port;
    }
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n++] = "--logfile";
    argv[n++] = "redis.log";
    for (; extra && *extra && n < 78; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;

    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Child: die with the test process so no server outlives a crashed test. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(127);
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
    }
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "fixture: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static int wait_up(tcf_redis *r)
{
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        int status;
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return -1;
        }
        if (answers_ping(r))
            return 0;
        sleep_ms(10);
    }
    return -1;
}

static const tcf_tls *default_tls; /* tcf_tls_use; set before any server starts */

void tcf_tls_use(const tcf_tls *t)
{
    default_tls = t;
}

const tcf_tls *tcf_tls_current(void)
{
    return default_tls;
}

int tcf_redis_start(tcf_redis *r, const char *const *extra_args)
{
    return tcf_redis_start_tls(r, default_tls, extra_args);
}

int tcf_redis_start_tls(tcf_redis *r, const tcf_tls *t, const char *const *extra_args)
{
    memset(r, 0, sizeof *r);
    r->tls = t;
    snprintf(r->dir, sizeof r->dir, "%s/tcredis.XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(r->dir)) {
        fprintf(stderr, "fixture: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        r->port = tcf_free_port();
        if (r->port <= 0)
            continue;
        r->pid = spawn(r, extra_args);
        if (r->pid < 0) {
            r->pid = 0;
            break;
        }
        if (wait_up(r) == 0) {
            snprintf(r->url, sizeof r->url, "%s://127.0.0.1:%d/0", t ? "rediss" : "redis", r->port);
            return 0;
        }
        if (r->pid > 0)
            tcf_redis_kill(r);
    }
    fprintf(stderr, "fixture: could not start %s (is redis-server installed?)\n", server_path());
    tcf_redis_stop(r);
    return -1;
}

int tcf_redis_restart(tcf_redis *r, const char *const *extra_args)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        r->pid = spawn(r, extra_args);
        if (r->pid > 0 && wait_up(r) == 0)
            return 0;
        if (r->pid > 0)
            tcf_redis_kill(r);
        sleep_ms(100); /* the port may linger briefly after a kill */
    }
    return -1;
}

void tcf_redis_kill(tcf_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = 0;
    }
}

int tcf_redis_shutdown(tcf_redis *r, bool save)
{
    if (r->pid <= 0)
        return -1;
    const char *argv[] = {"SHUTDOWN", save ? "SAVE" : "NOSAVE", NULL};
    /* The server closes the connection instead of answering; an answer is its refusal
     * (a failed save). */
    char *refused = tcf_redis_cmd(r, argv);
    if (refused) {
        fprintf(stderr, "fixture: SHUTDOWN refused: %s\n", refused);
        free(refused);
    }
    int status = -1;
    for (int i = 0; i < 3000; i++) { /* up to 30 s: the save takes what the data takes */
        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            r->pid = 0;
            return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
        }
        sleep_ms(10);
    }
    tcf_redis_kill(r);
    return -1;
}

static void remove_dir(const char *dir)
{
    static const char *files[] = {"redis.log",  "dump.rdb",      "appendonly.aof",
                                  "nodes.conf", "sentinel.conf", "sentinel.log",
                                  NULL};
    char path[512];
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

void tcf_redis_stop(tcf_redis *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGCONT); /* a test may have left it stopped */
        kill(r->pid, SIGTERM);
        int status;
        bool gone = false;
        for (int i = 0; i < 500 && !gone; i++) {
            if (waitpid(r->pid, &status, WNOHANG) == r->pid)
                gone = true;
            else
                sleep_ms(10);
        }
        if (!gone) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, &status, 0);
        }
        r->pid = 0;
    }
    if (r->dir[0]) {
        remove_dir(r->dir);
        r->dir[0] = '\0';
    }
}

/* ---------------------------------------------------------------- a Redis Cluster */

int tcf_cluster_wait_ok(const tcf_cluster *cl, int timeout_ms)
{
    const char *argv[] = {"CLUSTER", "INFO", NULL};
    for (int waited = 0; waited <= timeout_ms; waited += 50) {
        bool ok = true;
        for (int i = 0; i < cl->n && ok; i++) {
            if (cl->nodes[i].pid <= 0)
                continue;
            char *info = tcf_redis_cmd(&cl->nodes[i], argv);
            ok = info && strstr(info, "cluster_state:ok") != NULL;
            free(info);
        }
        if (ok)
            return 0;
        sleep_ms(50);
    }
    return -1;
}

int tcf_cluster_node_start(tcf_redis *r)
{
    const char *args[] = {"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--cluster-node-timeout", "1000",
                          /* a dead master fails its own slots only */
                          "--cluster-require-full-coverage", "no",
                          /* the bus too, when the nodes speak TLS */
                          "--tls-cluster", "yes", NULL};
    if (!default_tls)
        args[8] = NULL;
    return tcf_redis_start(r, args);
}

int tcf_cluster_start(tcf_cluster *cl, int masters)
{
    memset(cl, 0, sizeof *cl);
    if (masters < 3 || masters > TCF_CLUSTER_MAX) {
        fprintf(stderr, "fixture: a cluster needs 3..%d masters\n", TCF_CLUSTER_MAX);
        return -1;
    }
    for (int i = 0; i < masters; i++) {
        if (tcf_cluster_node_start(&cl->nodes[i]) != 0) {
            tcf_cluster_stop(cl);
            return -1;
        }
        cl->n = i + 1;
    }
    char addr[TCF_CLUSTER_MAX][32];
    const char *argv[TCF_CLUSTER_MAX + 16];
    int argc = 0;
    argv[argc++] = "redis-cli";
    if (default_tls) {
        argv[argc++] = "--tls";
        argv[argc++] = "--cacert";
        argv[argc++] = default_tls->ca_file;
        argv[argc++] = "--cert";
        argv[argc++] = default_tls->client_cert;
        argv[argc++] = "--key";
        argv[argc++] = default_tls->client_key;
    }
    argv[argc++] = "--cluster";
    argv[argc++] = "create";
    size_t off = (size_t)snprintf(cl->url, sizeof cl->url, "%s://",
                                  default_tls ? "rediss-cluster" : "redis-cluster");
    for (int i = 0; i < masters; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", cl->nodes[i].port);
        argv[argc++] = addr[i];
        off += (size_t)snprintf(cl->url + off, sizeof cl->url - off, "%s%s", i ? "," : "", addr[i]);
    }
    argv[argc++] = "--cluster-yes";
    argv[argc] = NULL;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status = -1;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fixture: redis-cli --cluster create failed (status %d)\n", status);
        tcf_cluster_stop(cl);
        return -1;
    }
    if (tcf_cluster_wait_ok(cl, 20000) != 0) {
        fprintf(stderr, "fixture: the cluster did not reach cluster_state:ok\n");
        tcf_cluster_stop(cl);
        return -1;
    }
    return 0;
}

int tcf_sentinel_start(tcf_redis *s, int master_port, const char *name)
{
    return tcf_sentinel_start_conf(s, master_port, name, NULL);
}

int tcf_sentinel_start_conf(tcf_redis *s, int master_port, const char *name, const char *extra_conf)
{
    memset(s, 0, sizeof *s);
    s->tls = default_tls;
    snprintf(s->dir, sizeof s->dir, "%s/tcsentinel.XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "fixture: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        s->port = tcf_free_port();
        char conf[512];
        snprintf(conf, sizeof conf, "%s/sentinel.conf", s->dir);
        FILE *f = fopen(conf, "w");
        if (!f)
            break;
        if (s->tls)
            fprintf(f,
                    "port 0\ntls-port %d\ntls-cert-file %s\ntls-key-file %s\n"
                    "tls-ca-cert-file %s\ntls-auth-clients %s\ntls-replication yes\n",
                    s->port, s->tls->server_cert, s->tls->server_key, s->tls->ca_file,
                    s->tls->auth_clients[0] ? s->tls->auth_clients : "no");
        else
            fprintf(f, "port %d\n", s->port);
        fprintf(f,
                "bind 127.0.0.1\ndaemonize no\ndir %s\nlogfile sentinel.log\n"
                "sentinel monitor %s 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds %s 1000\n"
                "sentinel failover-timeout %s 5000\n",
                s->dir, name, master_port, name, name);
        if (extra_conf)
            fputs(extra_conf, f);
        fclose(f);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(127);
            int devnull = open("/dev/null", O_RDWR);
            if (devnull >= 0) {
                dup2(devnull, 0);
                dup2(devnull, 1);
            }
            execlp(server_path(), server_path(), conf, "--sentinel", (char *)NULL);
            _exit(127);
        }
        if (pid < 0)
            break;
        s->pid = pid;
        if (wait_up(s) == 0) {
            snprintf(s->url, sizeof s->url, "%s://127.0.0.1:%d/%s",
                     s->tls ? "rediss-sentinel" : "redis-sentinel", s->port, name);
            return 0;
        }
        if (s->pid > 0)
            tcf_redis_kill(s);
    }
    fprintf(stderr, "fixture: could not start a sentinel\n");
    tcf_redis_stop(s);
    return -1;
}

void tcf_cluster_stop(tcf_cluster *cl)
{
    for (int i = 0; i < cl->n; i++)
        tcf_redis_stop(&cl->nodes[i]);
    cl->n = 0;
}

/* ---------------------------------------------------------------- the fixture's client */

/* A blocking connection to 127.0.0.1:port whose reads and writes give up after timeout_ms;
 * -1 if it cannot connect within timeout_ms. */
static int connect_port(int port, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int err = 0;
    socklen_t len = sizeof err;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (errno != EINPROGRESS || poll(&pfd, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return fd;
}

/* A client context for t's servers: TLS 1.2 or later, the server verified against both test
 * CAs (a test may restart a server with the second CA's certificate) but not its dates (a
 * test may serve the expired one), the test client certificate presented (servers with
 * tls-auth-clients yes). NULL on failure. */
static SSL_CTX *client_ctx(const tcf_tls *t)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_NO_CHECK_TIME);
    if (SSL_CTX_load_verify_locations(ctx, t->ca_file, NULL) != 1 ||
        SSL_CTX_load_verify_locations(ctx, t->other_ca_file, NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, t->client_cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, t->client_key, SSL_FILETYPE_PEM) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl; /* NULL: plaintext */
} conn;

static bool send_all(int fd, const char *p, size_t n);

static bool conn_write(conn *c, const char *p, size_t n)
{
    if (!c->ssl)
        return send_all(c->fd, p, n);
    while (n > 0) {
        int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* The next reply from the reader, reading from c as needed; NULL on error or timeout. */
static redisReply *conn_read(conn *c, redisReader *rd)
{
    char buf[16384];
    for (;;) {
        void *rep = NULL;
        if (redisReaderGetReply(rd, &rep) != REDIS_OK)
            return NULL;
        if (rep)
            return rep;
        ssize_t n;
        if (c->ssl) {
            int k = SSL_read(c->ssl, buf, sizeof buf);
            n = k > 0 ? k : -1;
        } else {
            n = recv(c->fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR)
                continue;
        }
        if (n <= 0 || redisReaderFeed(rd, buf, (size_t)n) != REDIS_OK)
            return NULL;
    }
}

/* Sends AUTH password (when not NULL) and the command on a fresh connection to r, over TLS
 * when r->tls is set, and returns the command's reply (an error reply included); NULL when
 * it cannot connect, AUTH is refused, or timeout_ms passes on a read or write. SIGPIPE is
 * blocked in this thread meanwhile (a TLS write to a closed socket raises it), and one it
 * raised is consumed before it is unblocked. */
static redisReply *exchange(const tcf_redis *r, int timeout_ms, const char *password, int argc,
                            const char *const *argv, const size_t *lens)
{
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    redisReply *out = NULL;
    redisReader *rd = redisReaderCreate();
    conn c = {.fd = connect_port(r->port, timeout_ms)};
    if (!rd || c.fd < 0)
        goto done;
    if (r->tls) {
        c.ctx = client_ctx(r->tls);
        c.ssl = c.ctx ? SSL_new(c.ctx) : NULL;
        if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1 || SSL_connect(c.ssl) != 1)
            goto done;
    }
    if (password) {
        const char *auth[] = {"AUTH", password};
        char *cmd = NULL;
        int n = redisFormatCommandArgv(&cmd, 2, auth, NULL);
        bool sent = n > 0 && conn_write(&c, cmd, (size_t)n);
        redisFreeCommand(cmd);
        redisReply *ok = sent ? conn_read(&c, rd) : NULL;
        bool accepted = ok && ok->type == REDIS_REPLY_STATUS;
        if (ok)
            freeReplyObject(ok);
        if (!accepted)
            goto done;
    }
    char *cmd = NULL;
    int n = redisFormatCommandArgv(&cmd, argc, (const char **)argv, lens);
    if (n > 0 && conn_write(&c, cmd, (size_t)n))
        out = conn_read(&c, rd);
    redisFreeCommand(cmd);
done:
    if (c.ssl) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    SSL_CTX_free(c.ctx);
    ERR_clear_error(); /* this thread's OpenSSL error queue: left clean for the library */
    if (c.fd >= 0)
        close(c.fd);
    if (rd)
        redisReaderFree(rd);
    sigset_t pending;
    if (!sigismember(&old, SIGPIPE) && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return out;
}

char *tcf_redis_cmd_ex(const tcf_redis *r, const char *password, int argc, const char *const *argv,
                       const size_t *lens)
{
    if (argc < 0)
        for (argc = 0; argv[argc];)
            argc++;
    redisReply *rep = exchange(r, 2000, password, argc, argv, lens);
    if (!rep)
        return NULL;
    char *out = NULL;
    char buf[64];
    switch (rep->type) {
    case REDIS_REPLY_INTEGER:
        snprintf(buf, sizeof buf, "%lld", rep->integer);
        out = strdup(buf);
        break;
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        out = strndup(rep->str, rep->len);
        break;
    case REDIS_REPLY_NIL:
        out = strdup("");
        break;
    case REDIS_REPLY_ARRAY:
        snprintf(buf, sizeof buf, "%zu", rep->elements);
        out = strdup(buf);
        break;
    default:
        break;
    }
    freeReplyObject(rep);
    return out;
}

char *tcf_redis_cmd(const tcf_redis *r, const char *const *argv)
{
    return tcf_redis_cmd_ex(r, NULL, -1, argv, NULL);
}

/* ---------------------------------------------------------------- TLS certificates */

/* Run by sh in the new directory ($1): a CA configuration of its own (so the system's
 * openssl.cnf plays no part), two CAs, and the leaf certificates of tcf_tls. `openssl ca`
 * signs them because it alone sets a start and end date in the past (the expired one) in
 * OpenSSL 3.0; copy_extensions carries each request's subjectAltName over. */
static const char tls_script[] =
    "set -e\n"
    "cd \"$1\"\n"
    "umask 077\n"
    "mkdir -p newcerts\n"
    ": > index.txt\n"
    "echo 1000 > serial\n"
    "cat > ca.cnf <<'EOF'\n"
    "[ req ]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "x509_extensions = v3_ca\n"
    "[ dn ]\n"
    "CN = unused\n"
    "[ v3_ca ]\n"
    "basicConstraints = critical, CA:TRUE\n"
    "keyUsage = critical, keyCertSign, cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[ ca ]\n"
    "default_ca = tc\n"
    "[ tc ]\n"
    "database = index.txt\n"
    "new_certs_dir = newcerts\n"
    "serial = serial\n"
    "default_md = sha256\n"
    "policy = any\n"
    "copy_extensions = copy\n"
    "unique_subject = no\n"
    "x509_extensions = leaf\n"
    "[ any ]\n"
    "commonName = supplied\n"
    "[ leaf ]\n"
    "basicConstraints = CA:FALSE\n"
    "extendedKeyUsage = serverAuth, clientAuth\n"
    "subjectKeyIdentifier = hash\n"
    "authorityKeyIdentifier = keyid\n"
    "EOF\n"
    "key() { openssl ecparam -name prime256v1 -genkey -noout -out \"$1\"; }\n"
    "ca() {\n"
    "  key \"$1.key\"\n"
    "  openssl req -config ca.cnf -x509 -new -key \"$1.key\" -days 3650 -subj \"/CN=$2\" "
    "-out \"$1.pem\"\n"
    "}\n"
    "# leaf NAME CA KEY CN [SAN [START END]]\n"
    "leaf() {\n"
    "  openssl req -config ca.cnf -new -key \"$3\" -subj \"/CN=$4\" "
    "${5:+-addext \"subjectAltName=$5\"} -out \"$1.csr\"\n"
    "  if [ -n \"$6\" ]; then dates=\"-startdate $6 -enddate $7\"; else dates=\"-days 3650\"; fi\n"
    "  openssl ca -config ca.cnf -batch -notext -cert \"$2.pem\" -keyfile \"$2.key\" $dates "
    "-in \"$1.csr\" -out \"$1.pem\"\n"
    "  rm -f \"$1.csr\"\n"
    "}\n"
    "ca ca 'tiercache test CA'\n"
    "ca other-ca 'tiercache other test CA'\n"
    "key server.key\n"
    "key client.key\n"
    "san='IP:127.0.0.1,DNS:localhost'\n"
    "leaf server ca server.key 127.0.0.1 \"$san\"\n"
    "leaf client ca client.key 'tiercache test client'\n"
    "leaf expired ca server.key 127.0.0.1 \"$san\" 20200101000000Z 20200102000000Z\n"
    "leaf other-host ca server.key other.example DNS:other.example\n"
    "leaf other-server other-ca server.key 127.0.0.1 \"$san\"\n";

int tcf_tls_make(tcf_tls *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "%s/tctls.XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(t->dir)) {
        fprintf(stderr, "fixture: mkdtemp: %s\n", strerror(errno));
        t->dir[0] = '\0';
        return -1;
    }
    char log[320];
    snprintf(log, sizeof log, "%s/openssl.log", t->dir);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/bin/sh", "sh", "-c", tls_script, "sh", t->dir, (char *)NULL);
        _exit(127);
    }
    int status = -1;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fixture: making the test certificates failed (status %d):\n", status);
        FILE *f = fopen(log, "r");
        char line[512];
        while (f && fgets(line, sizeof line, f))
            fputs(line, stderr);
        if (f)
            fclose(f);
        tcf_tls_remove(t);
        return -1;
    }
    snprintf(t->ca_file, sizeof t->ca_file, "%s/ca.pem", t->dir);
    snprintf(t->server_cert, sizeof t->server_cert, "%s/server.pem", t->dir);
    snprintf(t->server_key, sizeof t->server_key, "%s/server.key", t->dir);
    snprintf(t->client_cert, sizeof t->client_cert, "%s/client.pem", t->dir);
    snprintf(t->client_key, sizeof t->client_key, "%s/client.key", t->dir);
    snprintf(t->expired_cert, sizeof t->expired_cert, "%s/expired.pem", t->dir);
    snprintf(t->other_host_cert, sizeof t->other_host_cert, "%s/other-host.pem", t->dir);
    snprintf(t->other_ca_file, sizeof t->other_ca_file, "%s/other-ca.pem", t->dir);
    snprintf(t->other_server_cert, sizeof t->other_server_cert, "%s/other-server.pem", t->dir);
    snprintf(t->auth_clients, sizeof t->auth_clients, "no");
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

void tcf_tls_remove(tcf_tls *t)
{
    /* Only ever the directory tcf_tls_make created (its name came from mkdtemp). */
    if (t->dir[0] && strstr(t->dir, "/tctls."))
        nftw(t->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    t->dir[0] = '\0';
}

const char *tcf_unique_prefix(char *buf, size_t cap)
{
    static int counter; /* tests are single-threaded when they build prefixes */
    snprintf(buf, cap, "t%ld_%d", (long)getpid(), ++counter);
    return buf;
}

/* ---------------------------------------------------------------- the proxy */

#define PROXY_MAX 64
#define PROXY_BUF (256 * 1024)

typedef struct proxy_pair {
    int cfd, sfd; /* client and server sides; cfd -1: unused */
    char *out;    /* server -> client bytes not yet delivered */
    size_t out_len;
    int64_t next_drip_ns;
} proxy_pair;

struct tcf_proxy {
    int lfd, port, target;
    int wake[2];
    pthread_t thread;
    atomic_int mode, trickle_ms, accepted;
    atomic_bool stop, drop;
    proxy_pair pairs[PROXY_MAX];
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void pair_close(proxy_pair *pp)
{
    if (pp->cfd >= 0)
        close(pp->cfd);
    if (pp->sfd >= 0)
        close(pp->sfd);
    free(pp->out);
    memset(pp, 0, sizeof *pp);
    pp->cfd = pp->sfd = -1;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static void proxy_accept(tcf_proxy *p)
{
    int cfd = accept(p->lfd, NULL, NULL);
    if (cfd < 0)
        return;
    atomic_fetch_add(&p->accepted, 1);
    int sfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->target)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (sfd < 0 || connect(sfd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (sfd >= 0)
            close(sfd);
        close(cfd); /* the server is down: so is the proxy */
        return;
    }
    for (int i = 0; i < PROXY_MAX; i++) {
        proxy_pair *pp = &p->pairs[i];
        if (pp->cfd >= 0)
            continue;
        pp->out = malloc(PROXY_BUF);
        if (!pp->out)
            break;
        fcntl(cfd, F_SETFL, fcntl(cfd, F_GETFL) | O_NONBLOCK);
        pp->cfd = cfd;
        pp->sfd = sfd;
        pp->out_len = 0;
        pp->next_drip_ns = 0;
        return;
    }
    close(sfd);
    close(cfd);
}

/* Moves what the pair has for its client, as the mode says. False if the client is gone. */
static bool proxy_deliver(tcf_proxy *p, proxy_pair *pp, int mode, int64_t now)
{
    size_t n = pp->out_len;
    if (mode == TCF_PROXY_MUTE) {
        pp->out_len = 0;
        return true;
    }
    if (n == 0)
        return true;
    if (mode == TCF_PROXY_CUT) {
        /* Half of what the server said, then a reset: SO_LINGER 0 makes pair_close send RST. */
        ssize_t w = send(pp->cfd, pp->out, (n + 1) / 2, MSG_NOSIGNAL);
        (void)w;
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(pp->cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        return false;
    }
    if (mode == TCF_PROXY_TRICKLE) {
        if (now < pp->next_drip_ns)
            return true;
        n = 1;
        pp->next_drip_ns = now + (int64_t)atomic_load(&p->trickle_ms) * 1000000;
    }
    ssize_t w = send(pp->cfd, pp->out, n, MSG_NOSIGNAL);
    if (w < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    memmove(pp->out, pp->out + w, pp->out_len - (size_t)w);
    pp->out_len -= (size_t)w;
    return true;
}

static void *proxy_main(void *arg)
{
    tcf_proxy *p = arg;
    struct pollfd fds[2 + 2 * PROXY_MAX];
    int owner[2 + 2 * PROXY_MAX];
    char buf[16384];
    while (!atomic_load(&p->stop)) {
        if (atomic_load(&p->drop)) {
            for (int i = 0; i < PROXY_MAX; i++)
                if (p->pairs[i].cfd >= 0)
                    pair_close(&p->pairs[i]);
            atomic_store(&p->drop, false);
        }
        int mode = atomic_load(&p->mode);
        int n = 0;
        fds[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        owner[n++] = -1;
        fds[n] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        owner[n++] = -1;
        for (int i = 0; i < PROXY_MAX; i++) {
            proxy_pair *pp = &p->pairs[i];
            if (pp->cfd < 0)
                continue;
            short cev = POLLIN;
            if (pp->out_len > 0 && mode == TCF_PROXY_PASS)
                cev |= POLLOUT;
            fds[n] = (struct pollfd){.fd = pp->cfd, .events = cev};
            owner[n++] = i;
            fds[n] = (struct pollfd){.fd = pp->sfd, .events = pp->out_len < PROXY_BUF ? POLLIN : 0};
            owner[n++] = i;
        }
        int ready = poll(fds, (nfds_t)n, 5);
        if (ready < 0 && errno != EINTR)
            break;
        if (ready > 0 && (fds[1].revents & POLLIN)) {
            char drain[64];
            while (read(p->wake[0], drain, sizeof drain) > 0)
                ;
        }
        if (ready > 0 && (fds[0].revents & POLLIN))
            proxy_accept(p);
        for (int k = 2; ready > 0 && k < n; k++) {
            proxy_pair *pp = &p->pairs[owner[k]];
            if (pp->cfd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            bool client_side = fds[k].fd == pp->cfd;
            if (client_side) {
                ssize_t r = read(pp->cfd, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    pair_close(pp);
                    continue;
                }
                if (r > 0 && mode != TCF_PROXY_MUTE && !send_all(pp->sfd, buf, (size_t)r))
                    pair_close(pp);
            } else {
                ssize_t r = read(pp->sfd, pp->out + pp->out_len, PROXY_BUF - pp->out_len);
                if (r <= 0 && !(r < 0 && errno == EINTR)) {
                    pair_close(pp);
                    continue;
                }
                if (r > 0)
                    pp->out_len += (size_t)r;
            }
        }
        int64_t now = mono_ns();
        for (int i = 0; i < PROXY_MAX; i++) {
            proxy_pair *pp = &p->pairs[i];
            if (pp->cfd >= 0 && !proxy_deliver(p, pp, mode, now))
                pair_close(pp);
        }
    }
    return NULL;
}

tcf_proxy *tcf_proxy_start(int target_port)
{
    tcf_proxy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    for (int i = 0; i < PROXY_MAX; i++)
        p->pairs[i].cfd = p->pairs[i].sfd = -1;
    p->target = target_port;
    p->wake[0] = p->wake[1] = -1;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&a, &len) != 0 ||
        pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        fprintf(stderr, "fixture: proxy: %s\n", strerror(errno));
        goto fail;
    }
    p->port = ntohs(a.sin_port);
    atomic_init(&p->mode, TCF_PROXY_PASS);
    atomic_init(&p->trickle_ms, 50);
    if (pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        fprintf(stderr, "fixture: proxy: cannot start its thread\n");
        goto fail;
    }
    return p;
fail:
    if (p->lfd >= 0)
        close(p->lfd);
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p);
    return NULL;
}

int tcf_proxy_port(const tcf_proxy *p)
{
    return p->port;
}

void tcf_proxy_set_mode(tcf_proxy *p, tcf_proxy_mode mode, int trickle_ms)
{
    atomic_store(&p->trickle_ms, trickle_ms > 0 ? trickle_ms : 50);
    atomic_store(&p->mode, (int)mode);
    ssize_t w = write(p->wake[1], "m", 1);
    (void)w;
}

int tcf_proxy_accepted(const tcf_proxy *p)
{
    return atomic_load(&((tcf_proxy *)p)->accepted);
}

void tcf_proxy_drop_all(tcf_proxy *p)
{
    atomic_store(&p->drop, true);
    ssize_t w = write(p->wake[1], "d", 1);
    (void)w;
    while (atomic_load(&p->drop))
        sleep_ms(1);
}

void tcf_proxy_stop(tcf_proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    ssize_t w = write(p->wake[1], "s", 1);
    (void)w;
    pthread_join(p->thread, NULL);
    for (int i = 0; i < PROXY_MAX; i++)
        if (p->pairs[i].cfd >= 0)
            pair_close(&p->pairs[i]);
    close(p->lfd);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p);
}
