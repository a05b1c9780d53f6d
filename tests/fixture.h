/*
 * The Redis test fixture: starts a private redis-server on a free 127.0.0.1 port in a
 * temporary directory and stops it by its PID. A missing redis-server is a failure, never
 * a skip. The server dies with the process that started it (PR_SET_PDEATHSIG), so a crashed
 * test leaves nothing behind. Also used by tc-bench for its embedded default.
 */
#ifndef TC_FIXTURE_H
#define TC_FIXTURE_H

#include <stdbool.h>
#include <sys/types.h>

typedef struct tcf_redis {
    pid_t pid;
    int port;
    char dir[256];
    char url[128];
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

/* Starts the server again on the same port and directory (after tcf_redis_kill). */
int tcf_redis_restart(tcf_redis *r, const char *const *extra_args);

/* Runs one command given as a NULL-terminated argv against the server, on a fresh connection,
 * and returns the integer or status reply as a malloc'd string ("" for nil), or NULL on
 * error. For tests that need to poke Redis directly. */
char *tcf_redis_cmd(const tcf_redis *r, const char *const *argv);

/* A free TCP port on 127.0.0.1 (bound and released; the usual small race applies). */
int tcf_free_port(void);

/* A key prefix unique to this process and call, e.g. "t4711_3", for test isolation. */
const char *tcf_unique_prefix(char *buf, size_t cap);

#endif /* TC_FIXTURE_H */
