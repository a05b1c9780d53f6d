/* Active invalidation on write: a user's unread count, cached in every process's local tier
 * for a minute, yet correct in every process as soon as the user reads a notification. The
 * parent plays the web worker that handles "mark as read"; the child, a second process with
 * its own cache, keeps showing the count. Exits 1 if the child does not see each change
 * within a second (without invalidation it would keep its local copy for local_ttl_ms). */
#define _POSIX_C_SOURCE 200809L /* fork, pipe, nanosleep, clock_gettime */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <tiercache.h>

#define KEY "notifications:unread_count:user:7"

static tc_cache *open_cache(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "recipe-unread";
    o.local_ttl_ms = 60 * 1000; /* long: the invalidation does the work */
    tc_cache *c = NULL;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK)
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
    return c;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Reads the count into buf: "" for a miss (the page would recount from the DB). */
static void count(tc_cache *c, char *buf, size_t cap)
{
    tc_value v;
    buf[0] = '\0';
    if (tc_get(c, KEY, &v) == TC_OK) {
        snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.data);
        tc_value_release(&v);
    }
}

/* Polls the count every 0.1 ms until it reads want, for at most a second. */
static int wait_for(tc_cache *c, const char *want, const char *what)
{
    struct timespec nap = {0, 100 * 1000};
    double start = now_ms();
    do {
        char got[24];
        count(c, got, sizeof got);
        if (strcmp(got, want) == 0) {
            printf("  child: sees %s after %.2f ms\n", what, now_ms() - start);
            return 0;
        }
        nanosleep(&nap, NULL);
    } while (now_ms() - start < 1000);
    printf("  child: still no %s after 1 s\n", what);
    return -1;
}

/* The child: reads the count (caching it locally), then follows the parent's writes. */
static int child(int from_parent, int to_parent)
{
    char step, first[24], second[24];
    if (read(from_parent, &step, 1) != 1) /* wait: the count is in Redis */
        return 1;
    /* Opened after the parent's write: had it been subscribed already, the write's
     * invalidation could still be on its way and drop the copy the first read keeps. */
    tc_cache *c = open_cache();
    if (!c)
        return 1;
    count(c, first, sizeof first);   /* from Redis, kept locally */
    count(c, second, sizeof second); /* a local hit */
    printf("  child: %s unread, %s unread\n", first, second);
    int err = strcmp(first, "3") != 0 || strcmp(second, "3") != 0;
    if (write(to_parent, "r", 1) != 1 || read(from_parent, &step, 1) != 1)
        return 1;
    err |= wait_for(c, "2", "2 unread"); /* one marked as read */
    if (write(to_parent, "r", 1) != 1 || read(from_parent, &step, 1) != 1)
        return 1;
    err |= wait_for(c, "", "a miss"); /* all marked as read */
    tc_stats s;
    tc_stats_get(c, &s);
    printf("  child: local hits %llu, invalidations received %llu\n",
           (unsigned long long)s.local_hits, (unsigned long long)s.inval_received);
    tc_close(c);
    return err || s.local_hits == 0 ? 1 : 0;
}

int main(void)
{
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0)
        return 1;
    setvbuf(stdout, NULL, _IOLBF, 0); /* the two processes' lines in order */
    pid_t pid = fork();               /* before tc_open: a cache's threads do not fork */
    if (pid < 0)
        return 1;
    if (pid == 0) {
        close(down[1]); /* so that a dead peer reads as EOF, not a hang */
        close(up[0]);
        _exit(child(down[0], up[1]));
    }
    close(down[0]);
    close(up[1]);

    tc_cache *c = open_cache();
    char ack;
    int ok = c != NULL;
    ok &= c && tc_set(c, KEY, "3", 1, 10 * 60 * 1000) == TC_OK; /* counted from the DB */
    printf("parent: 3 unread\n");
    ok &= write(down[1], "s", 1) == 1 && read(up[0], &ack, 1) == 1;

    int64_t n = 0;
    ok &= c && tc_incr(c, KEY, -1, &n) == TC_OK && n == 2; /* mark one as read */
    printf("parent: marked one as read, %lld unread\n", (long long)n);
    ok &= write(down[1], "s", 1) == 1 && read(up[0], &ack, 1) == 1;

    ok &= c && tc_delete(c, KEY) == TC_OK; /* mark all as read: recount on next read */
    printf("parent: marked all as read, count deleted\n");
    ok &= write(down[1], "s", 1) == 1;

    int status = 1;
    ok &= waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    tc_close(c);
    return ok ? 0 : 1;
}
