/*
 * with-redis: runs a command with a private redis-server on a free loopback port, exported
 * to it as TC_REDIS_URL, and stops the server by its PID afterwards. Used by make check to
 * run the examples. Exit status: the command's.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: with-redis COMMAND [ARG...]\n");
        return 2;
    }
    tcf_redis r;
    if (tcf_redis_start(&r, NULL) != 0)
        return 1;
    setenv("TC_REDIS_URL", r.url, 1);
    int status = 1;
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[1], argv + 1);
        perror(argv[1]);
        _exit(127);
    }
    if (pid > 0 && waitpid(pid, &status, 0) == pid)
        status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    tcf_redis_stop(&r);
    return status;
}
