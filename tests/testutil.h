/*
 * What every Check program shares: a main that starts the suite's private Redis (when the
 * suite needs one), runs the suite and prints Check's summary; and helpers to open a cache on
 * that Redis under a key prefix unique to the test.
 */
#ifndef TC_TESTUTIL_H
#define TC_TESTUTIL_H

#include <check.h>
#include <stdbool.h>

#include "fixture.h"
#include "tiercache.h"

/* UNDER_TSAN: built with ThreadSanitizer (GCC's or clang's spelling). */
#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

/* UNDER_ASAN: built with AddressSanitizer. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* The Redis started by tct_main for this program (valid in tests when need_redis). With
 * TC_TEST_TOPOLOGY=cluster in the environment (make check-cluster), the suite runs against
 * a 3-master Redis Cluster instead: tct_redis.url is then the cluster's redis-cluster:// URL
 * and tct_redis.port/pid those of its first node. Tests reach the servers through the
 * tct_redis_* helpers below, which work on either deployment.
 *
 * TC_TEST_TOPOLOGY=tls, tls-cluster or tls-sentinel (make check-tls) runs the same over TLS:
 * tct_main makes the test certificates (tcf_tls_make) and every server the fixture starts
 * from then on listens on TLS only (tcf_tls_use), with tls-auth-clients optional; URLs are
 * rediss://, rediss-cluster:// and rediss-sentinel://. tls is one server, tls-cluster the
 * 3-master cluster, tls-sentinel starts nothing (check_sentinel starts its own servers).
 * tct_options sets the TLS options; for suites that fill tc_options themselves,
 * SSL_CERT_FILE names the test CA, so the library's default trust store (tls_ca_file NULL)
 * trusts it too. */
extern tcf_redis tct_redis;

/* Starts Redis if need_redis (a failure to start fails the program), runs s in Check's
 * normal (forking) mode, stops Redis, and returns the exit status for main. */
int tct_main(Suite *s, bool need_redis);

/* Whether this run is against a cluster (TC_TEST_TOPOLOGY=cluster or tls-cluster). */
bool tct_on_cluster(void);

/* Whether this run is over TLS (TC_TEST_TOPOLOGY=tls*), and its certificates (NULL when
 * not). */
bool tct_on_tls(void);
const tcf_tls *tct_tls(void);

/* For programs with a main of their own (check_cluster): what tct_main does before and
 * after the suite for TLS. tct_tls_setup makes the certificates and turns TLS on in the
 * fixture when TC_TEST_TOPOLOGY asks for it (0, or -1 with a message); tct_tls_teardown
 * removes them. */
int tct_tls_setup(void);
void tct_tls_teardown(void);

/* On a TLS run, sets o's TLS fields for the run's servers: the test CA, and the client
 * certificate and key; otherwise does nothing. tct_options calls it. */
void tct_tls_options(tc_options *o);

/* Runs one command (NULL-terminated argv) the way a plain client would, and returns its reply
 * as tcf_redis_cmd does. On a cluster it goes to the node that accepts it: the one owning
 * the key for a key command, any for PUBLISH. */
char *tct_redis_cmd(const char *const *argv);

/* The servers of this run (1, or the cluster's nodes), and one command on server i. */
int tct_server_count(void);
char *tct_redis_cmd_on(int i, const char *const *argv);
/* tct_redis_cmd with binary arguments (lens[i] bytes each). */
char *tct_redis_cmd_bin(int argc, const char **argv, const size_t *lens);

/* Runs a server-wide command (CONFIG SET, CLIENT KILL, FLUSHDB) on every server: integer
 * replies are summed, otherwise the first reply is returned. NULL if any server failed. */
char *tct_redis_cmd_all(const char *const *argv);

/* Freezes every server (SIGSTOP) or thaws them (SIGCONT; on a cluster, then waits until it
 * reports cluster_state:ok again). */
void tct_redis_pause(void);
void tct_redis_resume(void);

/* Options for the suite's Redis with a fresh unique key prefix (stored in a static buffer
 * of the test: fine because each test runs in its own process). */
void tct_options(tc_options *o);

/* tc_open with o, asserting success. */
tc_cache *tct_open(const tc_options *o);

/* Opens a cache on the suite's Redis with default options and a fresh prefix. */
tc_cache *tct_open_default(void);

/* Sleep for ms milliseconds (tests only; the library never sleeps). */
void tct_sleep_ms(int ms);
/* After a test cut c's invalidation link: waits (5 s at most) until c has reconciled or
 * flushed since *before and may answer locally again. *rec and *fl: the reconciliations
 * and the full flushes since *before. */
void tct_wait_relinked(tc_cache *c, const tc_stats *before, uint64_t *rec, uint64_t *fl);

/* ms times $TC_TEST_SLOWDOWN (default 1): for a fixed wait a test relies on to let other
 * threads catch up, which a slow run (make check-valgrind sets 20) must stretch. */
int tct_slow_ms(int ms);

/* Reads key into buf (NUL-terminated, cut to cap - 1 bytes; "" unless TC_OK) and returns
 * the status, asserting nothing (usable in a child process). */
tc_status tct_read_str(tc_cache *c, const char *key, char *buf, size_t cap);

/* Reads key and asserts the status and, for TC_OK, the bytes. */
void tct_expect(tc_cache *c, const char *key, tc_status want, const char *want_value);

/* ---------------------------------------------------------------- child processes
 *
 * Multi-process tests fork children that open their own cache and talk to the parent over
 * line-based pipes. Fork while the test process has no thread of its own yet (before it
 * opens a cache): a child of a multi-threaded process may not start threads under
 * ThreadSanitizer. */

#include <stdio.h>
#include <sys/types.h>

typedef struct tct_proc {
    pid_t pid;
    FILE *to;   /* parent -> child */
    FILE *from; /* child -> parent */
} tct_proc;

/* The child's body: reads lines from in, writes lines to out; its return value is its exit
 * status (0: passed). */
typedef int (*tct_child_fn)(FILE *in, FILE *out, void *arg);

void tct_proc_start(tct_proc *p, tct_child_fn fn, void *arg);
/* Reads one line from the child and asserts it starts with want. */
void tct_proc_expect(tct_proc *p, const char *want);
void tct_proc_say(tct_proc *p, const char *msg);
/* Closes the child's input (EOF), shows what it still has to say, waits for it and
 * asserts it exited with 0. */
void tct_proc_finish(tct_proc *p);
/* In a child: reads lines until one starts with want (or the parent closes the pipe). */
void tct_wait_line(FILE *in, const char *want);

#endif /* TC_TESTUTIL_H */
