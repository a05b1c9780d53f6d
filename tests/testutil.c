/* Shared test helpers (see testutil.h). */
#include "config.h"

#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "testing.h"

tcf_redis tct_redis;
static tcf_cluster cluster; /* when TC_TEST_TOPOLOGY=cluster or tls-cluster */
static bool clustered;
static tcf_tls tls; /* when TC_TEST_TOPOLOGY=tls* */
static bool on_tls;

bool tct_on_cluster(void)
{
    return clustered;
}

bool tct_on_tls(void)
{
    return on_tls;
}

const tcf_tls *tct_tls(void)
{
    return on_tls ? &tls : NULL;
}

int tct_tls_setup(void)
{
    const char *topo = getenv("TC_TEST_TOPOLOGY");
    if (!topo || strncmp(topo, "tls", 3) != 0)
        return 0;
    if (tcf_tls_make(&tls) != 0)
        return -1;
    /* Clients may present the test certificate (tct_options) or none (suites that fill
     * their own options). */
    snprintf(tls.auth_clients, sizeof tls.auth_clients, "optional");
    tcf_tls_use(&tls);
    setenv("SSL_CERT_FILE", tls.ca_file, 1);
    on_tls = true;
    return 0;
}

void tct_tls_teardown(void)
{
    if (!on_tls)
        return;
    tcf_tls_use(NULL);
    tcf_tls_remove(&tls);
    on_tls = false;
}

void tct_tls_options(tc_options *o)
{
    if (!on_tls)
        return;
    o->tls_ca_file = tls.ca_file;
    o->tls_cert_file = tls.client_cert;
    o->tls_key_file = tls.client_key;
}

static int start_servers(void)
{
    const char *topo = getenv("TC_TEST_TOPOLOGY");
    clustered = topo && (strcmp(topo, "cluster") == 0 || strcmp(topo, "tls-cluster") == 0);
    if (topo && strcmp(topo, "tls-sentinel") == 0) {
        /* Nothing shared: each sentinel test starts its own servers. */
        fprintf(stderr, "TC_TEST_TOPOLOGY=tls-sentinel is for check_sentinel only\n");
        return -1;
    }
    if (!clustered)
        return tcf_redis_start(&tct_redis, NULL);
    if (tcf_cluster_start(&cluster, 3) != 0)
        return -1;
    tct_redis = cluster.nodes[0];
    if (strlen(cluster.url) >= sizeof tct_redis.url) {
        fprintf(stderr, "cluster URL too long for the fixture\n");
        tcf_cluster_stop(&cluster);
        return -1;
    }
    strcpy(tct_redis.url, cluster.url);
    return 0;
}

static void stop_servers(void)
{
    if (clustered)
        tcf_cluster_stop(&cluster);
    else
        tcf_redis_stop(&tct_redis);
}

int tct_main(Suite *s, bool need_redis)
{
    if (tct_tls_setup() != 0) {
        fprintf(stderr, "cannot make the test certificates: failing\n");
        return EXIT_FAILURE;
    }
    if (need_redis) {
        if (start_servers() != 0) {
            fprintf(stderr, "cannot start the test Redis: failing\n");
            tct_tls_teardown();
            return EXIT_FAILURE;
        }
        setenv("TC_REDIS_URL", tct_redis.url, 1);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (need_redis)
        stop_servers();
    tct_tls_teardown();
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* The servers of this run: the one server, or the cluster's nodes. */
int tct_server_count(void)
{
    return clustered ? cluster.n : 1;
}

static const tcf_redis *server(int i)
{
    return clustered ? &cluster.nodes[i] : &tct_redis;
}

char *tct_redis_cmd_on(int i, const char *const *argv)
{
    return tcf_redis_cmd(server(i), argv);
}

char *tct_redis_cmd(const char *const *argv)
{
    /* A node that does not own the key answers MOVED, an error: NULL. */
    for (int i = 0; i < tct_server_count(); i++) {
        char *out = tcf_redis_cmd(server(i), argv);
        if (out)
            return out;
    }
    return NULL;
}

char *tct_redis_cmd_bin(int argc, const char **argv, const size_t *lens)
{
    for (int i = 0; i < tct_server_count(); i++) {
        char *out = tcf_redis_cmd_ex(server(i), NULL, argc, argv, lens);
        if (out)
            return out;
    }
    return NULL;
}

static bool is_integer(const char *s)
{
    char *end;
    if (!*s)
        return false;
    (void)strtoll(s, &end, 10);
    return *end == '\0';
}

char *tct_redis_cmd_all(const char *const *argv)
{
    char *first = NULL;
    long long sum = 0;
    bool all_int = true;
    for (int i = 0; i < tct_server_count(); i++) {
        char *out = tcf_redis_cmd(server(i), argv);
        if (!out) {
            free(first);
            return NULL;
        }
        all_int = all_int && is_integer(out);
        if (all_int)
            sum += atoll(out);
        if (first)
            free(out);
        else
            first = out;
    }
    if (all_int && first) {
        char buf[32];
        snprintf(buf, sizeof buf, "%lld", sum);
        free(first);
        return strdup(buf);
    }
    return first;
}

static void signal_servers(int sig)
{
    for (int i = 0; i < tct_server_count(); i++)
        if (server(i)->pid > 0) /* never 0 or -1: those would signal a whole group */
            kill(server(i)->pid, sig);
}

void tct_redis_pause(void)
{
    signal_servers(SIGSTOP);
}

void tct_redis_resume(void)
{
    signal_servers(SIGCONT);
    if (clustered)
        ck_assert_int_eq(tcf_cluster_wait_ok(&cluster, 10000), 0);
}

void tct_options(tc_options *o)
{
    static char prefix[64];
    tc_options_init(o);
    o->redis_url = tct_redis.url;
    o->key_prefix = tcf_unique_prefix(prefix, sizeof prefix);
    tct_tls_options(o);
}

tc_cache *tct_open(const tc_options *o)
{
    tc_cache *c = NULL;
    tc_status st = tc_open(o, &c);
    ck_assert_msg(st == TC_OK, "tc_open: %s", tc_strerror(st));
    ck_assert_ptr_nonnull(c);
    return c;
}

tc_cache *tct_open_default(void)
{
    tc_options o;
    tct_options(&o);
    return tct_open(&o);
}

void tct_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void tct_wait_relinked(tc_cache *c, const tc_stats *before, uint64_t *rec, uint64_t *fl)
{
    tc_stats now;
    int64_t t0 = tc__now_ns();
    do {
        tct_sleep_ms(5);
        tc_stats_get(c, &now);
    } while (now.reconciles + now.full_flushes == before->reconciles + before->full_flushes &&
             tc__now_ns() - t0 < 10000000000LL);
    while (!tc__test_local_usable(c) && tc__now_ns() - t0 < 10000000000LL)
        tct_sleep_ms(5);
    *rec = now.reconciles - before->reconciles;
    *fl = now.full_flushes - before->full_flushes;
}

int tct_slow_ms(int ms)
{
    const char *f = getenv("TC_TEST_SLOWDOWN");
    int k = f ? atoi(f) : 1;
    return k > 1 ? ms * k : ms;
}

void tct_expect(tc_cache *c, const char *key, tc_status want, const char *want_value)
{
    tc_value v;
    tc_status st = tc_get(c, key, &v);
    ck_assert_msg(st == want, "get %s: got %s, want %s", key, tc_strerror(st), tc_strerror(want));
    if (st == TC_OK && want_value) {
        ck_assert_uint_eq(v.len, strlen(want_value));
        ck_assert_int_eq(memcmp(v.data, want_value, v.len), 0);
    }
    tc_value_release(&v);
}

tc_status tct_read_str(tc_cache *c, const char *key, char *buf, size_t cap)
{
    tc_value v;
    tc_status st = tc_get(c, key, &v);
    buf[0] = '\0';
    if (st == TC_OK) {
        size_t n = v.len < cap - 1 ? v.len : cap - 1;
        memcpy(buf, v.data, n);
        buf[n] = '\0';
        tc_value_release(&v);
    }
    return st;
}

void tct_proc_start(tct_proc *p, tct_child_fn fn, void *arg)
{
    int down[2], up[2];
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(pipe(up), 0);
    fflush(NULL);
    p->pid = fork();
    ck_assert_int_ge(p->pid, 0);
    if (p->pid == 0) {
        close(down[1]);
        close(up[0]);
        FILE *in = fdopen(down[0], "r"), *out = fdopen(up[1], "w");
        setvbuf(out, NULL, _IOLBF, 0);
        int rc = fn(in, out, arg);
        fflush(out);
        _exit(rc);
    }
    close(down[0]);
    close(up[1]);
    p->to = fdopen(down[1], "w");
    p->from = fdopen(up[0], "r");
    setvbuf(p->to, NULL, _IOLBF, 0);
}

void tct_proc_expect(tct_proc *p, const char *want)
{
    char line[256] = "";
    ck_assert_msg(fgets(line, sizeof line, p->from) != NULL, "child %d said nothing (want %s)",
                  (int)p->pid, want);
    ck_assert_msg(strncmp(line, want, strlen(want)) == 0, "child said '%s', want '%s'", line, want);
}

void tct_proc_say(tct_proc *p, const char *msg)
{
    fprintf(p->to, "%s\n", msg);
}

void tct_proc_finish(tct_proc *p)
{
    char line[256];
    fclose(p->to); /* end of input: a child reading until EOF ends */
    while (fgets(line, sizeof line, p->from))
        fprintf(stderr, "child %d: %s", (int)p->pid, line);
    int status = 0;
    ck_assert_int_eq(waitpid(p->pid, &status, 0), p->pid);
    fclose(p->from);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d failed (status %d)",
                  (int)p->pid, status);
}

void tct_wait_line(FILE *in, const char *want)
{
    char line[256];
    while (fgets(line, sizeof line, in))
        if (strncmp(line, want, strlen(want)) == 0)
            return;
}
