/*
 * The Redis test fixture (see fixture.h). It only ever talks to 127.0.0.1 and only signals
 * the PID it started.
 */
#include "config.h"

#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
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

static bool answers_ping(int port)
{
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *rep = redisCommand(c, "PING");
        /* LOADING or NOAUTH also prove the server is up. */
        ok = rep != NULL;
        if (rep)
            freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return ok;
}

static pid_t spawn(tcf_redis *r, const char *const *extra)
{
    const char *argv[64];
    char port[16];
    int n = 0;
    snprintf(port, sizeof port, "%d", r->port);
    argv[n++] = server_path();
    argv[n++] = "--port";
    argv[n++] = port;
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
    for (; extra && *extra && n < 62; extra++)
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
        if (answers_ping(r->port))
            return 0;
        sleep_ms(10);
    }
    return -1;
}

int tcf_redis_start(tcf_redis *r, const char *const *extra_args)
{
    memset(r, 0, sizeof *r);
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
            snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d/0", r->port);
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
    static const char *const args[] = {"--cluster-enabled", "yes", "--cluster-config-file",
                                       "nodes.conf", "--cluster-node-timeout", "1000",
                                       /* a dead master fails its own slots only */
                                       "--cluster-require-full-coverage", "no", NULL};
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
    const char *argv[TCF_CLUSTER_MAX + 8];
    int argc = 0;
    argv[argc++] = "redis-cli";
    argv[argc++] = "--cluster";
    argv[argc++] = "create";
    size_t off = (size_t)snprintf(cl->url, sizeof cl->url, "redis-cluster://");
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
        fprintf(f,
                "port %d\nbind 127.0.0.1\ndaemonize no\ndir %s\nlogfile sentinel.log\n"
                "sentinel monitor %s 127.0.0.1 %d 1\n"
                "sentinel down-after-milliseconds %s 1000\n"
                "sentinel failover-timeout %s 5000\n",
                s->port, s->dir, name, master_port, name, name);
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
            snprintf(s->url, sizeof s->url, "redis-sentinel://127.0.0.1:%d/%s", s->port, name);
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

char *tcf_redis_cmd(const tcf_redis *r, const char *const *argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    char *out = NULL;
    if (c && !c->err) {
        redisSetTimeout(c, tv);
        redisReply *rep = redisCommandArgv(c, argc, (const char **)argv, NULL);
        if (rep) {
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
        }
    }
    if (c)
        redisFree(c);
    return out;
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
