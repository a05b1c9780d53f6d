/*
 * TLS (rediss:// URLs and the tc_options TLS fields) against real TLS servers: the fixture
 * makes a CA, server and client certificates, an expired one, one for another host name and
 * a second CA with the openssl command (tcf_tls_make, once, in main), and each test starts
 * the servers it needs (TLS only: --tls-port, --port 0).
 *
 * The fixture tests come first: the certificates are what they claim, and the fixture's TLS
 * server, cluster and sentinel answer its own TLS client. Then the library: a round trip and
 * an invalidation between two caches over TLS; every way verification must fail (another CA,
 * expired, another host name, plaintext on either side), each within tc_open's deadline, with
 * its status and a log line naming the cause; mutual TLS both ways; skip_verify; an ACL user;
 * the network faults (a handshake never answered, a server dying mid-handshake, a reset
 * mid-reply), after which the cache works again; and a certificate rotation picked up by new
 * connections without a reopen. The semantics, coherence, cluster and sentinel suites run
 * over TLS too (make check-tls, TC_TEST_TOPOLOGY=tls*). Run by make check-tls, not by make
 * check.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "testing.h"
#include "cache.h"
#include "testutil.h"

static tcf_tls tls; /* made by main, before the tests fork */

/* The deadline of a failing tc_open: connect_timeout_ms + 2 x command_timeout_ms, plus a
 * margin for a loaded machine (stretched by $TC_TEST_SLOWDOWN). */
#define CONN_MS 500
#define CMD_MS 250
#define OPEN_BOUND_MS (CONN_MS + 2 * CMD_MS + tct_slow_ms(500))
/* One operation that has to reconnect: command_timeout_ms + connect_timeout_ms +
 * command_timeout_ms, plus the margin. */
#define OP_BOUND_MS (CMD_MS + CONN_MS + CMD_MS + tct_slow_ms(500))

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ the log */

/* What a cache logged at TC_LOG_ERROR and TC_LOG_WARN, one line per message, and in all
 * every message whatever its level. log_fn is called from any thread: the mutex guards
 * the text. */
typedef struct logcap {
    pthread_mutex_t mu;
    char text[16384], all[16384];
    size_t len, all_len;
    int warnings;
} logcap;

#define LOGCAP_INIT                                                                                \
    {                                                                                              \
        .mu = PTHREAD_MUTEX_INITIALIZER                                                            \
    }

/* Appends "level: msg\n" to buf (of cap bytes, *len used), cutting what does not fit. */
static void append_line(char *buf, size_t cap, size_t *len, int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    int n = snprintf(buf + *len, cap - *len, "%s: %s\n",
                     level >= 0 && level <= 3 ? names[level] : "?", msg);
    if (n > 0)
        *len += (size_t)n < cap - *len ? (size_t)n : cap - *len - 1;
}

static void log_capture(void *arg, int level, const char *msg)
{
    logcap *lc = arg;
    pthread_mutex_lock(&lc->mu);
    append_line(lc->all, sizeof lc->all, &lc->all_len, level, msg);
    if (level <= TC_LOG_WARN)
        append_line(lc->text, sizeof lc->text, &lc->len, level, msg);
    if (level == TC_LOG_WARN)
        lc->warnings++;
    pthread_mutex_unlock(&lc->mu);
}

static bool text_has(logcap *lc, const char *text, const char *const *words)
{
    pthread_mutex_lock(&lc->mu);
    bool found = false;
    for (; *words && !found; words++)
        found = strcasestr(text, *words) != NULL;
    pthread_mutex_unlock(&lc->mu);
    return found;
}

/* Whether an error or warning line holds one of words (NULL-terminated), in any case. */
static bool logged(logcap *lc, const char *const *words)
{
    return text_has(lc, lc->text, words);
}

/* The same over the lines of every level. */
static bool logged_any_level(logcap *lc, const char *const *words)
{
    return text_has(lc, lc->all, words);
}

/* ------------------------------------------------------------------ helpers */

/* Options for url with the test CA, the deadlines above and lc as the log. The prefix lives
 * until the next call. */
static void tls_options(tc_options *o, const char *url, logcap *lc)
{
    static char prefix[64];
    tc_options_init(o);
    o->redis_url = url;
    o->key_prefix = tcf_unique_prefix(prefix, sizeof prefix);
    o->connect_timeout_ms = CONN_MS;
    o->command_timeout_ms = CMD_MS;
    o->check_redis_config = 0; /* its warnings are not what these tests look for */
    o->tls_ca_file = tls.ca_file;
    o->log_fn = log_capture;
    o->log_arg = lc;
}

/* A TLS server on the test certificates with extra_args (may be NULL). */
static void start_tls(tcf_redis *r, const char *const *extra_args)
{
    ck_assert_int_eq(tcf_redis_start_tls(r, &tls, extra_args), 0);
}

static bool status_in(tc_status st, const tc_status *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (st == want[i])
            return true;
    return false;
}

/* tc_open(o) must fail with one of want, within OPEN_BOUND_MS, and log one of words. */
static void open_fails(const tc_options *o, logcap *lc, const tc_status *want, size_t nwant,
                       const char *const *words, const char *what)
{
    tc_cache *c = NULL;
    int64_t t0 = now_ms();
    tc_status st = tc_open(o, &c);
    int64_t ms = now_ms() - t0;
    if (c)
        tc_close(c);
    ck_assert_msg(status_in(st, want, nwant), "%s: tc_open gave %s", what, tc_strerror(st));
    ck_assert_msg(c == NULL, "%s: a cache came back with an error", what);
    ck_assert_msg(ms <= OPEN_BOUND_MS, "%s: tc_open took %lld ms (bound %d)", what, (long long)ms,
                  OPEN_BOUND_MS);
    ck_assert_msg(logged(lc, words), "%s: no error or warning names the cause; logged:\n%s", what,
                  lc->text);
}

/* set, get, incr and delete through c, each checked in Redis through the fixture too. */
static void round_trip(tc_cache *c, const tcf_redis *r)
{
    ck_assert_int_eq(tc_set(c, "k", "v1", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c, "k", TC_OK, "v1");
    int64_t n = 0;
    ck_assert_int_eq(tc_incr(c, "n", 5, &n), TC_MISS); /* absent: not created, as Django */
    ck_assert_int_eq(tc_set(c, "n", "0", 1, TC_TTL_DEFAULT), TC_OK);
    ck_assert_int_eq(tc_incr(c, "n", 5, &n), TC_OK);
    ck_assert_int_eq(tc_incr(c, "n", 2, &n), TC_OK);
    ck_assert_int_eq(n, 7);
    ck_assert_int_eq(tc_delete(c, "k"), TC_OK);
    tct_expect(c, "k", TC_MISS, NULL);
    char rkey[160];
    snprintf(rkey, sizeof rkey, "%sn", tc__test_rprefix(c));
    const char *get[] = {"GET", rkey, NULL};
    char *x = tcf_redis_cmd(r, get);
    ck_assert_msg(x && strcmp(x, "7") == 0, "GET %s in Redis: %s", rkey, x ? x : "error");
    free(x);
}

/* Retries a set then a get of key until both succeed or ms pass: the cache works again. */
static bool works_again(tc_cache *c, const char *key, int ms)
{
    int64_t end = now_ms() + ms;
    do {
        tc_value v;
        if (tc_set(c, key, "back", 4, TC_TTL_DEFAULT) == TC_OK && tc_get(c, key, &v) == TC_OK) {
            bool same = v.len == 4 && memcmp(v.data, "back", 4) == 0;
            tc_value_release(&v);
            if (same)
                return true;
        }
        tct_sleep_ms(50);
    } while (now_ms() < end);
    return false;
}

/* ------------------------------------------------------------------ the fixture */

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    ck_assert_msg(x != NULL, "%s is not a PEM certificate", path);
    return x;
}

/* 0 when cert verifies against ca_file now; otherwise OpenSSL's verify error. */
static int verify_error(const char *ca_file, const char *cert)
{
    X509_STORE *store = X509_STORE_new();
    ck_assert_int_eq(X509_STORE_load_locations(store, ca_file, NULL), 1);
    X509 *x = load_cert(cert);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    ck_assert_int_eq(X509_STORE_CTX_init(ctx, store, x, NULL), 1);
    int err = X509_verify_cert(ctx) == 1 ? 0 : X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    X509_free(x);
    X509_STORE_free(store);
    return err;
}

START_TEST(test_tls_fixture_certificates)
{
    ck_assert_int_eq(verify_error(tls.ca_file, tls.server_cert), 0);
    ck_assert_int_eq(verify_error(tls.ca_file, tls.client_cert), 0);
    ck_assert_int_eq(verify_error(tls.ca_file, tls.other_host_cert), 0);
    ck_assert_int_eq(verify_error(tls.other_ca_file, tls.other_server_cert), 0);
    ck_assert_int_eq(verify_error(tls.ca_file, tls.expired_cert), X509_V_ERR_CERT_HAS_EXPIRED);
    ck_assert_int_ne(verify_error(tls.ca_file, tls.other_server_cert), 0);
    ck_assert_int_ne(verify_error(tls.other_ca_file, tls.server_cert), 0);

    X509 *server = load_cert(tls.server_cert), *other = load_cert(tls.other_host_cert);
    ck_assert_int_eq(X509_check_ip_asc(server, "127.0.0.1", 0), 1);
    ck_assert_int_eq(X509_check_host(server, "localhost", 0, 0, NULL), 1);
    ck_assert_int_eq(X509_check_host(other, "other.example", 0, 0, NULL), 1);
    ck_assert_int_ne(X509_check_ip_asc(other, "127.0.0.1", 0), 1);
    ck_assert_int_ne(X509_check_host(other, "localhost", 0, 0, NULL), 1);
    X509_free(server);
    X509_free(other);
}
END_TEST

START_TEST(test_tls_fixture_server)
{
    tcf_redis r;
    start_tls(&r, NULL);
    char want[64];
    snprintf(want, sizeof want, "rediss://127.0.0.1:%d/0", r.port);
    ck_assert_str_eq(r.url, want);
    const char *set[] = {"SET", "fx", "1", NULL}, *get[] = {"GET", "fx", NULL};
    char *x = tcf_redis_cmd(&r, set);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "SET over TLS: %s", x ? x : "error");
    free(x);
    x = tcf_redis_cmd(&r, get);
    ck_assert_msg(x && strcmp(x, "1") == 0, "GET over TLS: %s", x ? x : "error");
    free(x);
    /* TLS only: a plaintext client gets nothing. */
    tcf_redis plain = r;
    plain.tls = NULL;
    x = tcf_redis_cmd(&plain, get);
    ck_assert_msg(x == NULL, "a plaintext client was answered: %s", x);
    tcf_redis_stop(&r);

    /* The fixture's client reaches servers that serve the test's bad certificates. */
    const char *const certs[] = {tls.expired_cert, tls.other_host_cert, tls.other_server_cert};
    for (size_t i = 0; i < sizeof certs / sizeof certs[0]; i++) {
        const char *args[] = {"--tls-cert-file", certs[i], NULL};
        start_tls(&r, args);
        tcf_redis_stop(&r);
    }

    /* A restart keeps the server's TLS. */
    start_tls(&r, NULL);
    tcf_redis_kill(&r);
    ck_assert_int_eq(tcf_redis_restart(&r, NULL), 0);
    const char *ping[] = {"PING", NULL};
    x = tcf_redis_cmd(&r, ping);
    ck_assert_msg(x && strcmp(x, "PONG") == 0, "PING after a restart: %s", x ? x : "error");
    free(x);
    tcf_redis_stop(&r);

    /* Mutual TLS: the fixture's client presents the test client certificate. */
    const char *mtls[] = {"--tls-auth-clients", "yes", NULL};
    start_tls(&r, mtls);
    const char *cfg[] = {"CONFIG", "GET", "tls-auth-clients", NULL};
    x = tcf_redis_cmd(&r, cfg);
    ck_assert_msg(x && strcmp(x, "2") == 0, "CONFIG GET over mutual TLS: %s", x ? x : "error");
    free(x);
    tcf_redis_stop(&r);

    /* With a password: AUTH goes first on the same connection. */
    const char *pw[] = {"--requirepass", "fxpw", NULL};
    start_tls(&r, pw);
    x = tcf_redis_cmd_ex(&r, "fxpw", -1, ping, NULL);
    ck_assert_msg(x && strcmp(x, "PONG") == 0, "PING after AUTH: %s", x ? x : "error");
    free(x);
    ck_assert_ptr_null(tcf_redis_cmd_ex(&r, "wrong", -1, ping, NULL));
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_fixture_cluster)
{
    tcf_tls_use(&tls);
    tcf_cluster cl;
    ck_assert_int_eq(tcf_cluster_start(&cl, 3), 0);
    ck_assert_msg(strncmp(cl.url, "rediss-cluster://", 17) == 0, "cluster URL %s", cl.url);
    const char *nodes[] = {"CLUSTER", "NODES", NULL};
    char *x = tcf_redis_cmd(&cl.nodes[0], nodes);
    ck_assert_msg(x != NULL, "CLUSTER NODES over TLS failed");
    /* Every node announces its TLS port (tls-cluster yes). */
    for (int i = 0; i < cl.n; i++) {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d@", cl.nodes[i].port);
        ck_assert_msg(strstr(x, addr) != NULL, "node %s not announced:\n%s", addr, x);
        ck_assert_ptr_nonnull(cl.nodes[i].tls);
    }
    free(x);
    const char *slots[] = {"CLUSTER", "SLOTS", NULL};
    x = tcf_redis_cmd(&cl.nodes[1], slots);
    ck_assert_msg(x && strcmp(x, "3") == 0, "CLUSTER SLOTS ranges: %s", x ? x : "error");
    free(x);
    tcf_cluster_stop(&cl);
    tcf_tls_use(NULL);
}
END_TEST

START_TEST(test_tls_fixture_sentinel)
{
    tcf_tls_use(&tls);
    tcf_redis master, replica, sentinel;
    ck_assert_int_eq(tcf_redis_start(&master, NULL), 0);
    char mport[16];
    snprintf(mport, sizeof mport, "%d", master.port);
    const char *rargs[] = {"--replicaof", "127.0.0.1", mport, NULL};
    ck_assert_int_eq(tcf_redis_start(&replica, rargs), 0);
    ck_assert_int_eq(tcf_sentinel_start(&sentinel, master.port, "tcfx"), 0);
    char want[96];
    snprintf(want, sizeof want, "rediss-sentinel://127.0.0.1:%d/tcfx", sentinel.port);
    ck_assert_str_eq(sentinel.url, want);
    /* The replica links to the master over TLS, and the sentinel (reaching both over TLS)
     * knows the master and its replica. */
    const char *repl[] = {"INFO", "replication", NULL}, *sent[] = {"INFO", "sentinel", NULL};
    char addr[64];
    snprintf(addr, sizeof addr, "address=127.0.0.1:%d,slaves=1", master.port);
    bool linked = false, known = false;
    for (int i = 0; i < 300 && !(linked && known); i++) {
        char *x = tcf_redis_cmd(&replica, repl), *y = tcf_redis_cmd(&sentinel, sent);
        linked = x && strstr(x, "master_link_status:up");
        known = y && strstr(y, addr);
        free(x);
        free(y);
        if (!(linked && known))
            tct_sleep_ms(50);
    }
    ck_assert_msg(linked, "the replica did not link to the master over TLS");
    ck_assert_msg(known, "the sentinel does not report the master with its replica");
    tcf_redis_stop(&sentinel);
    tcf_redis_stop(&replica);
    tcf_redis_stop(&master);
    tcf_tls_use(NULL);
}
END_TEST

/* ------------------------------------------------------------------ working over TLS */

START_TEST(test_tls_round_trip)
{
    tcf_redis r;
    start_tls(&r, NULL);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    int64_t t0 = now_ms();
    tc_cache *c = tct_open(&o);
    ck_assert_int_le(now_ms() - t0, OPEN_BOUND_MS);
    round_trip(c, &r);
    tc_close(c);
    const char *const none[] = {"TLS", "certificate", "verif", NULL};
    ck_assert_msg(!logged(&lc, none), "a working TLS connection logged:\n%s", lc.text);
    tcf_redis_stop(&r);
}
END_TEST

/* The subscriber runs over TLS too: c2's local copy is dropped when c1 writes. */
START_TEST(test_tls_invalidation_between_caches)
{
    tcf_redis r;
    start_tls(&r, NULL);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    tc_cache *c1 = tct_open(&o), *c2 = tct_open(&o);
    int64_t t_sub = now_ms(); /* both subscribers listening (slow under valgrind) */
    while ((!tc__test_local_usable(c1) || !tc__test_local_usable(c2)) && now_ms() - t_sub < 10000)
        tct_sleep_ms(10);
    ck_assert_int_eq(tc_set(c1, "k", "old", 3, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c2, "k", TC_OK, "old"); /* c2 now holds a local copy (local TTL: 60 s) */
    tc_stats s0, s1;
    tc_stats_get(c2, &s0);
    tct_expect(c2, "k", TC_OK, "old");
    tc_stats_get(c2, &s1);
    ck_assert_uint_eq(s1.local_hits, s0.local_hits + 1);
    ck_assert_int_eq(tc_set(c1, "k", "new", 3, TC_TTL_DEFAULT), TC_OK);
    bool fresh = false;
    int64_t t0 = now_ms();
    while (!fresh && now_ms() - t0 < 1000) {
        tc_value v;
        if (tc_get(c2, "k", &v) == TC_OK) {
            fresh = v.len == 3 && memcmp(v.data, "new", 3) == 0;
            tc_value_release(&v);
        }
        if (!fresh)
            tct_sleep_ms(10);
    }
    ck_assert_msg(fresh, "c2 still serves its old copy 1 s after c1's write");
    tc_close(c1);
    tc_close(c2);
    tcf_redis_stop(&r);
}
END_TEST

/* ------------------------------------------------------------------ verification fails */

static const tc_status want_auth[] = {TC_ERR_AUTH};

/* A TLS server serving cert (NULL: the good one) with tls-auth-clients auth_clients, which
 * the default TLS options (the test CA, no client certificate) must fail to open, as
 * open_fails says. */
static void refused_by(const char *cert, const char *auth_clients, const tc_status *want,
                       size_t nwant, const char *const *words, const char *what)
{
    tcf_redis r;
    const char *args[] = {"--tls-auth-clients", auth_clients, "--tls-cert-file", cert, NULL};
    if (!cert)
        args[2] = NULL;
    start_tls(&r, args);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    open_fails(&o, &lc, want, nwant, words, what);
    tcf_redis_stop(&r);
}

START_TEST(test_tls_other_ca)
{
    const char *const words[] = {"certificate", "verify", NULL};
    refused_by(tls.other_server_cert, "no", want_auth, 1, words,
               "a certificate signed by another CA");
}
END_TEST

START_TEST(test_tls_expired)
{
    const char *const words[] = {"expired", NULL};
    refused_by(tls.expired_cert, "no", want_auth, 1, words, "an expired certificate");
}
END_TEST

START_TEST(test_tls_other_host_name)
{
    tcf_redis r;
    const char *args[] = {"--tls-cert-file", tls.other_host_cert, NULL};
    start_tls(&r, args);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    const char *const words[] = {"hostname",  "host name",     "mismatch",
                                 "127.0.0.1", "other.example", NULL};
    open_fails(&o, &lc, want_auth, 1, words, "a certificate for another host name");
    /* The name to verify is an option: with it, the same certificate is accepted. */
    o.tls_server_name = "other.example";
    tc_cache *c = tct_open(&o);
    round_trip(c, &r);
    tc_close(c);
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_plaintext_server_on_rediss)
{
    tcf_redis r;
    ck_assert_int_eq(tcf_redis_start_tls(&r, NULL, NULL), 0);
    char url[128];
    snprintf(url, sizeof url, "rediss://127.0.0.1:%d/0", r.port);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    /* A plaintext Redis takes the ClientHello for the start of an inline command and
     * waits for its end: the handshake's deadline ends it. */
    const tc_status want[] = {TC_ERR_PROTO, TC_ERR_IO, TC_ERR_TIMEOUT};
    const char *const words[] = {"TLS", NULL};
    open_fails(&o, &lc, want, 3, words, "a plaintext server on rediss://");
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_tls_server_on_redis)
{
    tcf_redis r;
    start_tls(&r, NULL);
    char url[128];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", r.port);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    o.tls_ca_file = NULL; /* a plain URL with no TLS option at all */
    const tc_status want[] = {TC_ERR_PROTO, TC_ERR_IO, TC_ERR_TIMEOUT};
    const char *const words[] = {"TLS", NULL};
    open_fails(&o, &lc, want, 3, words, "a TLS server on redis://");
    tcf_redis_stop(&r);
}
END_TEST

/* ------------------------------------------------------------------ mutual TLS, skip_verify */

START_TEST(test_tls_mutual_without_client_cert)
{
    const tc_status want[] = {TC_ERR_AUTH, TC_ERR_IO};
    const char *const words[] = {"certificate", "TLS", "handshake", "alert", NULL};
    refused_by(NULL, "yes", want, 2, words, "mutual TLS without a client certificate");
}
END_TEST

START_TEST(test_tls_mutual_with_client_cert)
{
    tcf_redis r;
    const char *args[] = {"--tls-auth-clients", "yes", NULL};
    start_tls(&r, args);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    o.tls_cert_file = tls.client_cert;
    o.tls_key_file = tls.client_key;
    int64_t t0 = now_ms();
    tc_cache *c = tct_open(&o);
    ck_assert_int_le(now_ms() - t0, OPEN_BOUND_MS);
    round_trip(c, &r);
    /* Two caches: the subscriber's connection presents the certificate too. */
    tc_cache *c2 = tct_open(&o);
    tct_sleep_ms(200);
    ck_assert_int_eq(tc_set(c, "m", "1", 1, TC_TTL_DEFAULT), TC_OK);
    tct_expect(c2, "m", TC_OK, "1");
    ck_assert_int_eq(tc_set(c, "m", "2", 1, TC_TTL_DEFAULT), TC_OK);
    tct_sleep_ms(200);
    tct_expect(c2, "m", TC_OK, "2");
    tc_close(c2);
    tc_close(c);
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_skip_verify)
{
    tcf_redis r;
    start_tls(&r, NULL);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, r.url, &lc);
    o.tls_ca_file = tls.other_ca_file; /* would fail verification */
    o.tls_skip_verify = 1;
    int64_t t0 = now_ms();
    tc_cache *c = tct_open(&o);
    ck_assert_int_le(now_ms() - t0, OPEN_BOUND_MS);
    round_trip(c, &r);
    tc_close(c);
    const char *const words[] = {"verif", "skip", NULL};
    ck_assert_msg(lc.warnings > 0 && logged(&lc, words),
                  "tls_skip_verify logged no warning about verification:\n%s", lc.text);
    tcf_redis_stop(&r);
}
END_TEST

/* The ACL user of docs/security.md, over TLS: credentials in a rediss:// URL. */
START_TEST(test_tls_acl_user)
{
    tcf_redis r;
    start_tls(&r, NULL);
    const char *acl[] = {"ACL", "SETUSER", "tcapp", "on", ">apppw", "~*", "&*", "+@all", NULL};
    char *x = tcf_redis_cmd(&r, acl);
    ck_assert_msg(x && strcmp(x, "OK") == 0, "ACL SETUSER: %s", x ? x : "error");
    free(x);
    char url[160];
    snprintf(url, sizeof url, "rediss://tcapp:wrong@127.0.0.1:%d/0", r.port);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    const char *const words[] = {"auth", "password", "WRONGPASS", NULL};
    open_fails(&o, &lc, want_auth, 1, words, "a wrong password over TLS");
    snprintf(url, sizeof url, "rediss://tcapp:apppw@127.0.0.1:%d/0", r.port);
    tc_cache *c = tct_open(&o);
    round_trip(c, &r);
    tc_close(c);
    tcf_redis_stop(&r);
}
END_TEST

/* ------------------------------------------------------------------ network faults */

/* A TLS server on the test certificates behind a proxy (in TCF_PROXY_PASS), and in url the
 * rediss:// URL of the proxy. */
static tcf_proxy *start_proxied(tcf_redis *r, char *url, size_t cap)
{
    start_tls(r, NULL);
    tcf_proxy *p = tcf_proxy_start(r->port);
    ck_assert_ptr_nonnull(p);
    snprintf(url, cap, "rediss://127.0.0.1:%d/0", tcf_proxy_port(p));
    return p;
}

START_TEST(test_tls_handshake_never_answered)
{
    tcf_redis r;
    char url[128];
    tcf_proxy *p = start_proxied(&r, url, sizeof url);
    tcf_proxy_set_mode(p, TCF_PROXY_MUTE, 0); /* accepts TCP, swallows the ClientHello */
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    const tc_status want[] = {TC_ERR_TIMEOUT};
    const char *const words[] = {"TLS", "handshake", "time", NULL};
    open_fails(&o, &lc, want, 1, words, "a handshake never answered");
    ck_assert_int_ge(tcf_proxy_accepted(p), 1);
    /* Once the server answers, the same options open. */
    tcf_proxy_set_mode(p, TCF_PROXY_PASS, 0);
    tc_cache *c = tct_open(&o);
    round_trip(c, &r);
    tc_close(c);
    tcf_proxy_stop(p);
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_killed_mid_handshake)
{
    tcf_redis r;
    char url[128];
    tcf_proxy *p = start_proxied(&r, url, sizeof url);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    o.local_max_bytes = 0; /* every read goes to Redis */

    /* tc_open: the server's first handshake bytes are cut off by a reset. */
    tcf_proxy_set_mode(p, TCF_PROXY_CUT, 0);
    const tc_status want[] = {TC_ERR_IO, TC_ERR_PROTO, TC_ERR_TIMEOUT, TC_ERR_AUTH};
    const char *const words[] = {"TLS", "handshake", "reset", "connection", "closed", NULL};
    open_fails(&o, &lc, want, 4, words, "a server killed mid-handshake");

    /* An open cache: its connections are dropped and every reconnect dies mid-handshake. */
    tcf_proxy_set_mode(p, TCF_PROXY_PASS, 0);
    tc_cache *c = tct_open(&o);
    ck_assert_int_eq(tc_set(c, "k", "v", 1, TC_TTL_DEFAULT), TC_OK);
    tcf_proxy_set_mode(p, TCF_PROXY_CUT, 0);
    tcf_proxy_drop_all(p);
    for (int i = 0; i < 3; i++) {
        tc_value v;
        int64_t t0 = now_ms();
        tc_status st = tc_get(c, "k", &v);
        int64_t ms = now_ms() - t0;
        if (st == TC_OK)
            tc_value_release(&v);
        ck_assert_msg(st != TC_OK, "a get succeeded through a server dying mid-handshake");
        ck_assert_msg(ms <= OP_BOUND_MS, "a get took %lld ms (bound %d)", (long long)ms,
                      OP_BOUND_MS);
    }
    /* The server is back: a later call succeeds, without a reopen. */
    tcf_proxy_set_mode(p, TCF_PROXY_PASS, 0);
    ck_assert_msg(works_again(c, "k", 5000), "the cache did not recover within 5 s");
    tc_close(c);
    tcf_proxy_stop(p);
    tcf_redis_stop(&r);
}
END_TEST

START_TEST(test_tls_reset_mid_reply)
{
    tcf_redis r;
    char url[128];
    tcf_proxy *p = start_proxied(&r, url, sizeof url);
    logcap lc = LOGCAP_INIT;
    tc_options o;
    tls_options(&o, url, &lc);
    o.local_max_bytes = 0; /* every read goes to Redis */
    tc_cache *c = tct_open(&o);
    /* A value of several TLS records, so that the cut falls inside the reply. */
    enum { BIG = 64 * 1024 };
    char *big = malloc(BIG);
    ck_assert_ptr_nonnull(big);
    memset(big, 'b', BIG);
    ck_assert_int_eq(tc_set(c, "big", big, BIG, TC_TTL_DEFAULT), TC_OK);
    tcf_proxy_set_mode(p, TCF_PROXY_CUT, 0);
    tc_value v;
    int64_t t0 = now_ms();
    tc_status st = tc_get(c, "big", &v);
    int64_t ms = now_ms() - t0;
    if (st == TC_OK)
        tc_value_release(&v);
    ck_assert_msg(st == TC_ERR_IO || st == TC_ERR_PROTO || st == TC_ERR_TIMEOUT,
                  "a get whose reply was reset gave %s", tc_strerror(st));
    ck_assert_msg(ms <= OP_BOUND_MS, "the get took %lld ms (bound %d)", (long long)ms, OP_BOUND_MS);
    const char *const words[] = {"TLS", "reset", "connection", "closed", "lost", NULL};
    ck_assert_msg(logged_any_level(&lc, words), "the reset was not logged:\n%s", lc.all);
    tcf_proxy_set_mode(p, TCF_PROXY_PASS, 0);
    ck_assert_msg(works_again(c, "k", 5000), "the cache did not recover within 5 s");
    /* And the big value reads whole again. */
    ck_assert_int_eq(tc_get(c, "big", &v), TC_OK);
    ck_assert_uint_eq(v.len, BIG);
    ck_assert_int_eq(memcmp(v.data, big, BIG), 0);
    tc_value_release(&v);
    free(big);
    tc_close(c);
    tcf_proxy_stop(p);
    tcf_redis_stop(&r);
}
END_TEST

/* ------------------------------------------------------------------ rotation */

static void copy_file(const char *from, const char *to)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.new", to);
    FILE *in = fopen(from, "rb"), *out = fopen(tmp, "wb");
    ck_assert_msg(in && out, "cannot copy %s to %s", from, tmp);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
    /* As rotation tools do: the new file replaces the old one at once. */
    ck_assert_int_eq(rename(tmp, to), 0);
}

/* The files the options name are replaced (a new CA, and the server restarted with a
 * certificate from it): new connections of the open cache use the new files. A cache whose
 * options name the old CA, unchanged, can no longer connect: proof that the server's
 * certificate did change and the new CA was needed. */
START_TEST(test_tls_rotation_without_reopen)
{
    char dir[288]; /* inside the certificates' directory: main removes it, whatever happens */
    snprintf(dir, sizeof dir, "%s/rotation.XXXXXX", tls.dir);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char ca[320];
    snprintf(ca, sizeof ca, "%s/ca.pem", dir);
    copy_file(tls.ca_file, ca);

    tcf_redis r;
    start_tls(&r, NULL);
    logcap lc = LOGCAP_INIT, lc_old = LOGCAP_INIT;
    tc_options o, o_old;
    tls_options(&o, r.url, &lc);
    o.tls_ca_file = ca;
    o.local_max_bytes = 0;
    tc_cache *c = tct_open(&o);
    tls_options(&o_old, r.url, &lc_old);
    o_old.key_prefix = tc__cache_options(c)->key_prefix; /* the same keys */
    o_old.local_max_bytes = 0;
    tc_cache *old = tct_open(&o_old);
    ck_assert_int_eq(tc_set(c, "k", "v1", 2, TC_TTL_DEFAULT), TC_OK);
    tct_expect(old, "k", TC_OK, "v1");

    copy_file(tls.other_ca_file, ca);
    tcf_redis_kill(&r);
    const char *args[] = {"--tls-cert-file", tls.other_server_cert, NULL};
    ck_assert_int_eq(tcf_redis_restart(&r, args), 0);

    ck_assert_msg(works_again(c, "k", 5000),
                  "the open cache did not pick up the new CA within 5 s:\n%s", lc.text);
    for (int i = 0; i < 5; i++) {
        tc_value v;
        tc_status st = tc_get(old, "k", &v);
        if (st == TC_OK)
            tc_value_release(&v);
        ck_assert_msg(st != TC_OK, "a cache trusting only the old CA still reads");
        tct_sleep_ms(100);
    }
    const char *const words[] = {"certificate", "verify", NULL};
    ck_assert_msg(logged(&lc_old, words), "the old CA's failure was not logged:\n%s", lc_old.text);
    tc_close(old);
    tc_close(c);
    tcf_redis_stop(&r);
    unlink(ca);
    rmdir(dir);
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    struct {
        const char *name;
        const TTest *test;
    } cases[] = {
        /* The fixture: these run without the library's TLS. */
        {"fixture_certificates", test_tls_fixture_certificates},
        {"fixture_server", test_tls_fixture_server},
        {"fixture_cluster", test_tls_fixture_cluster},
        {"fixture_sentinel", test_tls_fixture_sentinel},
        /* The library. */
        {"round_trip", test_tls_round_trip},
        {"invalidation", test_tls_invalidation_between_caches},
        {"other_ca", test_tls_other_ca},
        {"expired", test_tls_expired},
        {"other_host_name", test_tls_other_host_name},
        {"plaintext_server_on_rediss", test_tls_plaintext_server_on_rediss},
        {"tls_server_on_redis", test_tls_tls_server_on_redis},
        {"mutual_without_client_cert", test_tls_mutual_without_client_cert},
        {"mutual_with_client_cert", test_tls_mutual_with_client_cert},
        {"skip_verify", test_tls_skip_verify},
        {"acl_user", test_tls_acl_user},
        {"handshake_never_answered", test_tls_handshake_never_answered},
        {"killed_mid_handshake", test_tls_killed_mid_handshake},
        {"reset_mid_reply", test_tls_reset_mid_reply},
        {"rotation", test_tls_rotation_without_reopen},
    };
    /* TC_TLS_ONLY=fixture runs the fixture's tests alone (before the library has TLS). */
    const char *only = getenv("TC_TLS_ONLY");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && strcmp(only, "fixture") == 0 && strncmp(cases[i].name, "fixture_", 8) != 0)
            continue;
        TCase *tc = tcase_create(cases[i].name);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    if (tcf_tls_make(&tls) != 0) {
        fprintf(stderr, "cannot make the test certificates: failing\n");
        return EXIT_FAILURE;
    }
    int rc = tct_main(tls_suite(), false);
    tcf_tls_remove(&tls);
    return rc;
}
