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
#include <signal.h>
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
    fprintf(stderr, "fixture: could not start %s (is redis-server installed?)\n",
            server_path());
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
    static const char *files[] = {"redis.log", "dump.rdb", "appendonly.aof", NULL};
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
