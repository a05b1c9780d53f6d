/*
 * tc-server: a reference HTTP API on libmicrohttpd (a thread pool) whose source of truth is
 * SQLite (db.c), cached with tiercache the way a Django system caches: per object, per query,
 * per fragment, a counter, invalidation on write, namespaces, and tagged GraphQL responses.
 * Several instances sharing one Redis agree after every write: each write updates SQLite
 * first, then invalidates through the library, which tells every instance's local tier.
 *
 *   GET  /students/ID/gpa                        a student's GPA (tc_get_or_set)
 *   POST /students/ID/grades?course=C&grade=G    sets a grade (0.0 to 4.0); drops the GPA
 *   GET  /users/ID/notifications?page=P&filter=all|unread
 *                                                one page of a user's list (a namespace
 *                                                per user: tc_ns_key)
 *   GET  /users/ID/unread                        the unread count (a counter: tc_incr)
 *   POST /users/ID/notifications?body=TEXT       a new notification: +1, bumps the list
 *   POST /users/ID/notifications/NID/read        marks one read: -1, bumps the list
 *   GET  /users/ID/dashboard                     two fragments, 5 s and 60 s TTLs
 *   GET  /products/ID                            a product (a catalogue namespace)
 *   POST /catalogue/reprice?percent=N            reprices everything: tc_ns_bump
 *   GET|POST /graphql                            student(id) or user(id), keyed by
 *                                                tc_gql_key, tagged student:ID / user:ID
 *   GET  /metrics                                tc_stats_prometheus and the server's own
 *
 * Threads: libmicrohttpd's pool calls handle() on any of its threads at once. The cache is
 * one handle shared by all of them (tiercache is thread-safe); each thread has its own
 * SQLite connection (db_thread). The counters below are atomics. main blocks the signals
 * that stop the server before any thread starts and waits for them with sigwait.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <jansson.h>
#include <microhttpd.h>
#include <tiercache.h>

#include "db.h"
#include "fixture.h"

#define MAX_BODY (64 * 1024)
#define GPA_TTL_MS (10 * 60 * 1000)
#define LIST_TTL_MS (5 * 60 * 1000)
#define PRODUCT_TTL_MS (10 * 60 * 1000)
#define GQL_TTL_MS (60 * 1000)
#define INBOX_TTL_MS (5 * 1000)
#define CHEAPEST_TTL_MS (60 * 1000)
/* Short, because of the one race this pattern has (docs/performance.md, "A real server"):
 * a count read from SQLite just before a write commits may be added after the write's
 * decrement found nothing to decrement; it is then off by one until it expires. */
#define UNREAD_TTL_MS (60 * 1000)

/* The routes, for the request counters of /metrics. */
enum route {
    R_GPA,
    R_GRADE,
    R_LIST,
    R_UNREAD,
    R_NOTIFY,
    R_READ,
    R_DASHBOARD,
    R_PRODUCT,
    R_REPRICE,
    R_GRAPHQL,
    R_METRICS,
    R_OTHER,
    R_COUNT
};
static const char *const route_name[R_COUNT] = {"gpa",     "grade",   "notifications", "unread",
                                                "notify",  "read",    "dashboard",     "product",
                                                "reprice", "graphql", "metrics",       "other"};

static tc_cache *cache; /* NULL with --no-cache */
static db_shape shape;
static atomic_uint_fast64_t requests[R_COUNT];
static atomic_uint_fast64_t cache_errors; /* library calls that failed (served anyway) */

/* What a handler answers: body is malloc'd and handed to libmicrohttpd. */
typedef struct reply {
    int status;
    const char *type;
    const char *x_cache; /* "hit" or "miss", when the handler knows */
    char *body;
    size_t len;
} reply;

/* The parameters of one read, for its renderer. */
typedef struct req {
    long id;
    int page;
    int unread_only;
} req;

typedef int (*render_fn)(db *d, const req *q, sbuf *out);

static void reply_sbuf(reply *r, int status, sbuf *b)
{
    if (b->oom) {
        sbuf_free(b);
        status = 500;
        sbuf_printf(b, "{\"error\":\"out of memory\"}");
    }
    r->status = status;
    r->type = "application/json";
    r->body = b->p;
    r->len = b->len;
    b->p = NULL;
}

static void reply_fmt(reply *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void reply_fmt(reply *r, int status, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    sbuf b = {0};
    sbuf_printf(&b, "%s", buf);
    reply_sbuf(r, status, &b);
}

static void reply_value(reply *r, tc_value *v, const char *x_cache)
{
    r->body = malloc(v->len ? v->len : 1);
    if (!r->body) {
        tc_value_release(v);
        reply_fmt(r, 500, "{\"error\":\"out of memory\"}");
        return;
    }
    memcpy(r->body, v->data, v->len);
    r->len = v->len;
    r->status = 200;
    r->type = "application/json";
    r->x_cache = x_cache;
    tc_value_release(v);
}

static void cache_failed(const char *what, const char *key, tc_status st)
{
    atomic_fetch_add(&cache_errors, 1);
    fprintf(stderr, "tc-server: %s %s: %s\n", what, key, tc_strerror(st));
}

/* The outcome of a cache write: 1 when it did its work (TC_MISS too: nothing was cached, so
 * nothing needed it), else 0, counted and logged. */
static int cache_done(tc_status st, const char *what, const char *key)
{
    if (st == TC_OK || st == TC_MISS)
        return 1;
    cache_failed(what, key, st);
    return 0;
}

/* ------------------------------------------------------------------ reads */

struct load_ctx {
    render_fn fn;
    const req *q;
};

/* The loader of every tc_get_or_set: renders from this thread's connection. A row that does
 * not exist is TC_MISS, which the library caches briefly as a negative entry. */
static tc_status loader(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    const struct load_ctx *l = arg;
    db *d = db_thread();
    if (!d)
        return TC_ERR_LOADER;
    sbuf b = {0};
    int rc = l->fn(d, l->q, &b);
    tc_status st = TC_ERR_LOADER;
    if (rc == 1)
        st = TC_MISS;
    else if (rc == 0 && !b.oom)
        st = tc_buf_append(out, b.p, b.len);
    sbuf_free(&b);
    return st;
}

/* Serves a read through tc_get_or_set (local tier, Redis, then one load across every thread
 * and instance), or straight from SQLite with --no-cache. */
static void cached_read(const char *key, int ttl_ms, render_fn fn, const req *q, reply *r)
{
    if (!cache) {
        db *d = db_thread();
        sbuf b = {0};
        int rc = d ? fn(d, q, &b) : -1;
        if (rc == 0)
            reply_sbuf(r, 200, &b);
        else {
            sbuf_free(&b);
            reply_fmt(r, rc == 1 ? 404 : 500, "{\"error\":\"%s\"}",
                      rc == 1 ? "not found" : "database error");
        }
        return;
    }
    struct load_ctx l = {fn, q};
    tc_value v;
    tc_status st = tc_get_or_set(cache, key, loader, &l, ttl_ms, &v);
    if (st == TC_OK)
        reply_value(r, &v, NULL);
    else if (st == TC_MISS)
        reply_fmt(r, 404, "{\"error\":\"not found\"}");
    else
        reply_fmt(r, 500, "{\"error\":\"%s\"}", tc_strerror(st));
}

/* cached_read of the key "<ns>:v<version>:<suffix>" (tc_ns_key): the namespace's version
 * is read through the local tier like any other key. */
static void ns_read(const char *ns, const char *suffix, int ttl_ms, render_fn fn, const req *q,
                    reply *r)
{
    char key[256] = "";
    if (cache) {
        tc_status st = tc_ns_key(cache, ns, suffix, key, sizeof key);
        if (st != TC_OK) {
            cache_failed("tc_ns_key", ns, st);
            reply_fmt(r, 503, "{\"error\":\"%s\"}", tc_strerror(st));
            return;
        }
    }
    cached_read(key, ttl_ms, fn, q, r);
}

static int render_gpa(db *d, const req *q, sbuf *out)
{
    return db_student_gpa(d, q->id, out);
}
static int render_list(db *d, const req *q, sbuf *out)
{
    return db_notifications(d, q->id, q->page, q->unread_only, out);
}
static int render_inbox(db *d, const req *q, sbuf *out)
{
    return db_inbox(d, q->id, out);
}
static int render_cheapest(db *d, const req *q, sbuf *out)
{
    (void)q;
    return db_cheapest(d, out);
}
static int render_product(db *d, const req *q, sbuf *out)
{
    return db_product(d, q->id, out);
}

/* "<app>:<what>:<entity>:<id>": keys name what they hold as the recipes do, e.g.
 * "grades:gpa:student:5", and the metrics count them by "<app>:<what>". */
static void id_key(char *buf, size_t cap, const char *app, const char *what, const char *entity,
                   long id)
{
    char num[24];
    snprintf(num, sizeof num, "%ld", id);
    tc_key(buf, cap, app, what, entity, num, NULL);
}

/* Per object: "grades:gpa:student:<id>", dropped when one of the student's grades changes. */
static void gpa_key(char *key, size_t cap, long student)
{
    id_key(key, cap, "grades", "gpa", "student", student);
}

static void get_gpa(long student, reply *r)
{
    char key[64];
    gpa_key(key, sizeof key, student);
    req q = {.id = student};
    cached_read(key, GPA_TTL_MS, render_gpa, &q, r);
}

/* The namespace of a user's notification lists: one bump makes every page and filter of
 * that user stale, and no other user's. */
static void list_ns(char *ns, size_t cap, long user)
{
    id_key(ns, cap, "notifications", "list", "user", user);
}

/* Per query: the key holds every parameter of the query, within the user's namespace. */
static void get_list(long user, int page, int unread_only, reply *r)
{
    char ns[64], params[64];
    char p[16];
    snprintf(p, sizeof p, "%d", page);
    list_ns(ns, sizeof ns, user);
    tc_key(params, sizeof params, "page", p, "filter", unread_only ? "unread" : "all", NULL);
    req q = {.id = user, .page = page, .unread_only = unread_only};
    ns_read(ns, params, LIST_TTL_MS, render_list, &q, r);
}

static void unread_key(char *key, size_t cap, long user)
{
    id_key(key, cap, "notifications", "unread_count", "user", user);
}

/* A counter: counted from SQLite on a miss and added (never overwriting a count that writes
 * have been keeping up to date meanwhile); writes move it with tc_incr. */
static void get_unread(long user, reply *r)
{
    char key[64];
    unread_key(key, sizeof key, user);
    if (cache) {
        tc_value v;
        tc_status st = tc_get(cache, key, &v);
        if (st == TC_OK) {
            reply_fmt(r, 200, "{\"user\":%ld,\"unread\":%.*s}", user, (int)v.len,
                      (const char *)v.data);
            r->x_cache = "hit";
            tc_value_release(&v);
            return;
        }
        if (st != TC_MISS)
            cache_failed("tc_get", key, st);
    }
    db *d = db_thread();
    int64_t n = 0;
    int rc = d ? db_unread_count(d, user, &n) : -1;
    if (rc != 0) {
        reply_fmt(r, rc == 1 ? 404 : 500, "{\"error\":\"%s\"}",
                  rc == 1 ? "not found" : "database error");
        return;
    }
    if (cache) {
        char num[24];
        int len = snprintf(num, sizeof num, "%" PRId64, n);
        tc_status st = tc_add(cache, key, num, (size_t)len, UNREAD_TTL_MS);
        if (st != TC_OK && st != TC_EXISTS)
            cache_failed("tc_add", key, st);
    }
    reply_fmt(r, 200, "{\"user\":%ld,\"unread\":%" PRId64 "}", user, n);
    r->x_cache = cache ? "miss" : NULL;
}

/* Fragments: each part of the page has its own key and TTL, and expiry is its only
 * invalidation: the inbox may lag five seconds, the cheapest products a minute. */
static void get_dashboard(long user, reply *r)
{
    char key[64];
    req q = {.id = user};
    reply inbox = {0}, cheap = {0};
    id_key(key, sizeof key, "dashboard", "inbox", "user", user);
    cached_read(key, INBOX_TTL_MS, render_inbox, &q, &inbox);
    if (inbox.status == 200)
        cached_read("dashboard:catalogue:cheapest", CHEAPEST_TTL_MS, render_cheapest, &q, &cheap);
    if (inbox.status != 200 || cheap.status != 200) {
        *r = inbox.status != 200 ? inbox : cheap;
        free(inbox.status != 200 ? cheap.body : inbox.body);
        return;
    }
    sbuf b = {0};
    sbuf_printf(&b, "{\"user\":%ld,\"inbox\":%.*s,\"cheapest\":%.*s}", user, (int)inbox.len,
                inbox.body, (int)cheap.len, cheap.body);
    free(inbox.body);
    free(cheap.body);
    reply_sbuf(r, 200, &b);
}

/* Bulk: every product key carries the catalogue's version; a reprice bumps it once. The
 * namespace has two parts so that the metrics' key type ("catalog:products", the first two
 * parts of a key) stays the same across versions. */
#define CATALOG_NS "catalog:products"
static void get_product(long product, reply *r)
{
    char suffix[48];
    snprintf(suffix, sizeof suffix, "product:%ld", product);
    req q = {.id = product};
    ns_read(CATALOG_NS, suffix, PRODUCT_TTL_MS, render_product, &q, r);
}

/* ------------------------------------------------------------------ GraphQL */

/* The root field of a query document: the first name after its first '{'. Only "student" and
 * "user" are served, with the variable "id"; the response always holds all of their fields
 * (this is a GraphQL-shaped endpoint for the caching pattern, not a GraphQL engine). */
static const char *gql_root(const char *doc)
{
    const char *p = doc + strspn(doc, " \t\r\n,");
    if (strncmp(p, "mutation", 8) == 0 || strncmp(p, "subscription", 12) == 0)
        return NULL;
    p = strchr(doc, '{');
    if (!p)
        return NULL;
    p += 1 + strspn(p + 1, " \t\r\n,");
    size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789");
    if (n == 7 && strncmp(p, "student", 7) == 0)
        return "student";
    if (n == 4 && strncmp(p, "user", 4) == 0)
        return "user";
    return NULL;
}

static void graphql(const char *doc, const char *op, const char *vars, reply *r)
{
    const char *root = doc ? gql_root(doc) : NULL;
    if (!root) {
        reply_fmt(r, 400,
                  "{\"errors\":[{\"message\":\"only queries of student(id) or "
                  "user(id) are served\"}]}");
        return;
    }
    json_error_t jerr;
    json_t *vj = vars ? json_loads(vars, 0, &jerr) : NULL;
    json_t *idj = vj ? json_object_get(vj, "id") : NULL;
    long id = idj && json_is_integer(idj) ? (long)json_integer_value(idj) : 0;
    json_decref(vj);
    if (id <= 0) {
        reply_fmt(r, 400, "{\"errors\":[{\"message\":\"variables must hold an integer id\"}]}");
        return;
    }
    char key[128], tag[48];
    snprintf(tag, sizeof tag, "%s:%ld", root, id);
    if (cache) {
        tc_status st = tc_gql_key("public", doc, op, vars, key, sizeof key);
        if (st != TC_OK) {
            reply_fmt(r, 400, "{\"errors\":[{\"message\":\"%s\"}]}", tc_strerror(st));
            return;
        }
        tc_value v;
        st = tc_get(cache, key, &v);
        if (st == TC_OK) {
            reply_value(r, &v, "hit");
            return;
        }
        if (st != TC_MISS)
            cache_failed("tc_get", key, st);
    }
    db *d = db_thread();
    sbuf b = {0};
    int rc = !d ? -1 : root[0] == 's' ? db_student_graph(d, id, &b) : db_user_graph(d, id, &b);
    if (rc == 1) {
        sbuf_free(&b);
        sbuf_printf(&b, "{\"data\":{\"%s\":null}}", root);
    } else if (rc != 0) {
        sbuf_free(&b);
        reply_fmt(r, 500, "{\"errors\":[{\"message\":\"database error\"}]}");
        return;
    }
    /* Only a successful response is cached, tagged with the entity it shows. */
    if (cache && rc == 0 && !b.oom) {
        const char *const tags[] = {tag};
        tc_status st = tc_set_tagged(cache, key, b.p, b.len, GQL_TTL_MS, tags, 1);
        if (st != TC_OK)
            cache_failed("tc_set_tagged", key, st);
    }
    reply_sbuf(r, 200, &b);
    r->x_cache = cache ? "miss" : NULL;
}

/* A POST body: {"query": ..., "operationName": ..., "variables": {...}}. */
static void graphql_post(const sbuf *body, reply *r)
{
    json_error_t jerr;
    json_t *j = body->p ? json_loadb(body->p, body->len, 0, &jerr) : NULL;
    const char *doc = json_string_value(json_object_get(j, "query"));
    const char *op = json_string_value(json_object_get(j, "operationName"));
    json_t *vj = json_object_get(j, "variables");
    char *vars = vj && !json_is_null(vj) ? json_dumps(vj, JSON_COMPACT) : NULL;
    if (!j)
        reply_fmt(r, 400, "{\"errors\":[{\"message\":\"the body is not JSON\"}]}");
    else
        graphql(doc, op, vars, r);
    free(vars);
    json_decref(j);
}

/* ------------------------------------------------------------------ writes */

/* Every write: SQLite first, then the cache. Invalidating before the write would let a read
 * in between cache the old value again. A failed invalidation is reported: the write is in
 * the database, but caches may serve the old value until it expires. */
static void invalidated(reply *r, int ok, const char *what)
{
    if (ok)
        reply_fmt(r, 200, "{\"ok\":true,\"%s\":true}", what);
    else
        reply_fmt(r, 500, "{\"ok\":false,\"error\":\"written, but not invalidated\"}");
}

static void post_grade(long student, int course, int tenths, reply *r)
{
    db *d = db_thread();
    int rc = d ? db_set_grade(d, student, course, tenths) : -1;
    if (rc != 0) {
        reply_fmt(r, rc == 1 ? 404 : 500, "{\"error\":\"%s\"}",
                  rc == 1 ? "not found" : "database error");
        return;
    }
    int ok = 1;
    if (cache) {
        char key[64], tag[48];
        gpa_key(key, sizeof key, student);
        snprintf(tag, sizeof tag, "student:%ld", student);
        ok &= cache_done(tc_delete(cache, key), "tc_delete", key);
        ok &= cache_done(tc_tag_invalidate(cache, tag), "tc_tag_invalidate", tag);
    }
    invalidated(r, ok, "updated");
}

/* A user's unread count moved by delta: the counter follows (TC_MISS: not cached, nothing
 * to do), every cached page of the user's list goes stale, and so do the GraphQL responses
 * showing the user. */
static int user_changed(long user, int delta)
{
    if (!cache)
        return 1;
    char key[64], ns[64], tag[48];
    unread_key(key, sizeof key, user);
    list_ns(ns, sizeof ns, user);
    snprintf(tag, sizeof tag, "user:%ld", user);
    int ok = 1;
    ok &= cache_done(tc_incr(cache, key, delta, NULL), "tc_incr", key);
    ok &= cache_done(tc_ns_bump(cache, ns, NULL), "tc_ns_bump", ns);
    ok &= cache_done(tc_tag_invalidate(cache, tag), "tc_tag_invalidate", tag);
    return ok;
}

static void post_read(long user, long notification, reply *r)
{
    db *d = db_thread();
    int rc = d ? db_mark_read(d, user, notification) : -1;
    if (rc == 1) { /* already read, or not this user's: nothing changed */
        reply_fmt(r, 200, "{\"ok\":true,\"changed\":false}");
        return;
    }
    if (rc != 0) {
        reply_fmt(r, 500, "{\"error\":\"database error\"}");
        return;
    }
    invalidated(r, user_changed(user, -1), "changed");
}

static void post_notification(long user, const char *body, reply *r)
{
    db *d = db_thread();
    long id = 0;
    int rc = d ? db_add_notification(d, user, body, &id) : -1;
    if (rc != 0) {
        reply_fmt(r, rc == 1 ? 404 : 500, "{\"error\":\"%s\"}",
                  rc == 1 ? "not found" : "database error");
        return;
    }
    invalidated(r, user_changed(user, +1), "created");
}

static void post_reprice(int percent, reply *r)
{
    db *d = db_thread();
    if (!d || db_reprice(d, percent) != 0) {
        reply_fmt(r, 500, "{\"error\":\"database error\"}");
        return;
    }
    int ok = 1;
    int64_t version = 0;
    if (cache) {
        ok = cache_done(tc_ns_bump(cache, CATALOG_NS, &version), "tc_ns_bump", CATALOG_NS);
    }
    if (ok)
        reply_fmt(r, 200, "{\"ok\":true,\"catalog_version\":%" PRId64 "}", version);
    else
        invalidated(r, 0, "");
}

/* ------------------------------------------------------------------ metrics */

static void get_metrics(reply *r)
{
    sbuf b = {0};
    if (cache) {
        char *text = NULL;
        tc_status st = tc_stats_prometheus(cache, &text);
        if (st != TC_OK) {
            reply_fmt(r, 500, "tc_stats_prometheus: %s\n", tc_strerror(st));
            return;
        }
        sbuf_printf(&b, "%s", text);
        free(text);
    }
    sbuf_printf(&b, "# HELP tcserver_requests_total HTTP requests answered, by route.\n"
                    "# TYPE tcserver_requests_total counter\n");
    for (int i = 0; i < R_COUNT; i++)
        sbuf_printf(&b, "tcserver_requests_total{route=\"%s\"} %" PRIuFAST64 "\n", route_name[i],
                    atomic_load(&requests[i]));
    sbuf_printf(&b,
                "# HELP tcserver_db_queries_total SQLite statements run.\n"
                "# TYPE tcserver_db_queries_total counter\n"
                "tcserver_db_queries_total %" PRIu64 "\n"
                "# HELP tcserver_cache_errors_total Cache calls that failed (answered from "
                "SQLite, or a write left to expire).\n"
                "# TYPE tcserver_cache_errors_total counter\n"
                "tcserver_cache_errors_total %" PRIuFAST64 "\n",
                db_queries(), atomic_load(&cache_errors));
    reply_sbuf(r, 200, &b);
    r->type = "text/plain; version=0.0.4";
}

/* ------------------------------------------------------------------ HTTP */

/* Per request: the body of a POST as it arrives. */
typedef struct conn_ctx {
    sbuf body;
    int too_big;
} conn_ctx;

/* An integer query argument: def when absent; false when present but not an integer in
 * [lo, hi]. */
static bool arg_long(struct MHD_Connection *conn, const char *name, long def, long lo, long hi,
                     long *out)
{
    const char *s = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (!s) {
        *out = def;
        return true;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Matches url against fmt, a path with one or two "%ld": true when the whole url matched. */
static bool path1(const char *url, const char *fmt, long *a)
{
    int n = 0;
    return sscanf(url, fmt, a, &n) == 1 && n > 0 && url[n] == '\0' && *a > 0;
}
static bool path2(const char *url, const char *fmt, long *a, long *b)
{
    int n = 0;
    return sscanf(url, fmt, a, b, &n) == 2 && n > 0 && url[n] == '\0' && *a > 0 && *b > 0;
}

static enum route route_get(struct MHD_Connection *conn, const char *url, reply *r)
{
    long id, page;
    if (path1(url, "/students/%ld/gpa%n", &id)) {
        get_gpa(id, r);
        return R_GPA;
    }
    if (path1(url, "/users/%ld/notifications%n", &id)) {
        const char *f = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "filter");
        if (!arg_long(conn, "page", 1, 1, 1000, &page) ||
            (f && strcmp(f, "all") != 0 && strcmp(f, "unread") != 0))
            reply_fmt(r, 400, "{\"error\":\"page is 1 to 1000, filter all or unread\"}");
        else
            get_list(id, (int)page, f && strcmp(f, "unread") == 0, r);
        return R_LIST;
    }
    if (path1(url, "/users/%ld/unread%n", &id)) {
        get_unread(id, r);
        return R_UNREAD;
    }
    if (path1(url, "/users/%ld/dashboard%n", &id)) {
        get_dashboard(id, r);
        return R_DASHBOARD;
    }
    if (path1(url, "/products/%ld%n", &id)) {
        get_product(id, r);
        return R_PRODUCT;
    }
    if (strcmp(url, "/graphql") == 0) {
        graphql(MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "query"),
                MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "operationName"),
                MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "variables"), r);
        return R_GRAPHQL;
    }
    if (strcmp(url, "/metrics") == 0) {
        get_metrics(r);
        return R_METRICS;
    }
    reply_fmt(r, 404, "{\"error\":\"no such resource\"}");
    return R_OTHER;
}

static enum route route_post(struct MHD_Connection *conn, const char *url, conn_ctx *ctx, reply *r)
{
    long id, nid, course, percent;
    if (path1(url, "/students/%ld/grades%n", &id)) {
        const char *g = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "grade");
        char *end = NULL;
        double grade = g ? strtod(g, &end) : -1;
        if (!arg_long(conn, "course", 0, 1, 1000, &course) || course == 0 || !g || *end ||
            grade < 0 || grade > 4)
            reply_fmt(r, 400, "{\"error\":\"course is 1 to 1000, grade 0.0 to 4.0\"}");
        else
            post_grade(id, (int)course, (int)(grade * 10 + 0.5), r);
        return R_GRADE;
    }
    if (path2(url, "/users/%ld/notifications/%ld/read%n", &id, &nid)) {
        post_read(id, nid, r);
        return R_READ;
    }
    if (path1(url, "/users/%ld/notifications%n", &id)) {
        const char *body = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "body");
        post_notification(id, body && *body ? body : "Something happened", r);
        return R_NOTIFY;
    }
    if (strcmp(url, "/catalogue/reprice") == 0) {
        if (!arg_long(conn, "percent", 0, -90, 1000, &percent))
            reply_fmt(r, 400, "{\"error\":\"percent is -90 to 1000\"}");
        else
            post_reprice((int)percent, r);
        return R_REPRICE;
    }
    if (strcmp(url, "/graphql") == 0) {
        if (ctx->too_big)
            reply_fmt(r, 413, "{\"errors\":[{\"message\":\"body above 64 KiB\"}]}");
        else
            graphql_post(&ctx->body, r);
        return R_GRAPHQL;
    }
    reply_fmt(r, 404, "{\"error\":\"no such resource\"}");
    return R_OTHER;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)version;
    conn_ctx *ctx = *con_cls;
    if (!ctx) { /* the headers are in; the body, if any, comes in the next calls */
        ctx = calloc(1, sizeof *ctx);
        *con_cls = ctx;
        return ctx ? MHD_YES : MHD_NO;
    }
    if (*upload_size) {
        if (ctx->body.len + *upload_size > MAX_BODY)
            ctx->too_big = 1;
        else
            sbuf_printf(&ctx->body, "%.*s", (int)*upload_size, upload);
        *upload_size = 0;
        return MHD_YES;
    }
    reply r = {0};
    enum route rt;
    if (strcmp(method, "GET") == 0)
        rt = route_get(conn, url, &r);
    else if (strcmp(method, "POST") == 0)
        rt = route_post(conn, url, ctx, &r);
    else {
        reply_fmt(&r, 405, "{\"error\":\"GET or POST\"}");
        rt = R_OTHER;
    }
    atomic_fetch_add(&requests[rt], 1);
    struct MHD_Response *resp = MHD_create_response_from_buffer(r.len, r.body,
                                                                MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r.type ? r.type : "application/json");
    if (r.x_cache)
        MHD_add_response_header(resp, "X-Cache", r.x_cache);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)conn;
    (void)why;
    conn_ctx *ctx = *con_cls;
    if (ctx) {
        sbuf_free(&ctx->body);
        free(ctx);
        *con_cls = NULL;
    }
}

/* ------------------------------------------------------------------ main */

static void log_cb(void *arg, int level, const char *msg)
{
    (void)arg;
    if (level <= TC_LOG_WARN)
        fprintf(stderr, "tc-server: tiercache: %s\n", msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tc-server [--port N] [--bind ADDR] [--redis-url URL] [--db PATH]\n"
               "                 [--rows N] [--threads N] [--no-local] [--no-cache]\n"
               "  --port N         HTTP port (default 8080; 0: any free port)\n"
               "  --bind ADDR      IPv4 address to listen on (default 127.0.0.1)\n"
               "  --redis-url URL  the shared Redis (default: start a private redis-server on a\n"
               "                   free 127.0.0.1 port, stopped at exit)\n"
               "  --db PATH        SQLite file, seeded if it has no tables (default: a temporary\n"
               "                   file, removed at exit)\n"
               "  --rows N         rows to seed (default 400000)\n"
               "  --threads N      HTTP worker threads (default 4)\n"
               "  --no-local       Redis only: the local tier off\n"
               "  --no-cache       every request to SQLite\n"
               "Stops on SIGINT or SIGTERM. Prints one line, \"tc-server: listening on ...\", "
               "when ready.\n");
}

static long num_arg(const char *name, const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "tc-server: %s wants a number from %ld to %ld\n", name, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long port = 8080, rows = 400000, threads = 4;
    const char *bind_addr = "127.0.0.1", *redis_url = NULL, *db_file = NULL;
    int no_local = 0, no_cache = 0;
    static const struct option opts[] = {{"port", required_argument, NULL, 'p'},
                                         {"bind", required_argument, NULL, 'b'},
                                         {"redis-url", required_argument, NULL, 'r'},
                                         {"db", required_argument, NULL, 'd'},
                                         {"rows", required_argument, NULL, 'n'},
                                         {"threads", required_argument, NULL, 't'},
                                         {"no-local", no_argument, NULL, 'L'},
                                         {"no-cache", no_argument, NULL, 'C'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            port = num_arg("--port", optarg, 0, 65535);
            break;
        case 'b':
            bind_addr = optarg;
            break;
        case 'r':
            redis_url = optarg;
            break;
        case 'd':
            db_file = optarg;
            break;
        case 'n':
            rows = num_arg("--rows", optarg, 100, 100000000);
            break;
        case 't':
            threads = num_arg("--threads", optarg, 1, 256);
            break;
        case 'L':
            no_local = 1;
            break;
        case 'C':
            no_cache = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, bind_addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "tc-server: --bind wants an IPv4 address\n");
        return 2;
    }

    /* Redis first: redis-server inherits the signal mask, and must not start with SIGTERM
     * blocked (it could not be stopped). */
    tcf_redis redis = {0};
    if (!redis_url) {
        if (tcf_redis_start(&redis, NULL) != 0) {
            fprintf(stderr, "tc-server: could not start redis-server (or give --redis-url)\n");
            return 1;
        }
        redis_url = redis.url;
    }
    int rc = 1;
    char tmpdir[] = "/tmp/tc-server-XXXXXX", tmpdb[64] = "";
    struct MHD_Daemon *daemon = NULL;
    if (!db_file) {
        if (!mkdtemp(tmpdir)) {
            perror("tc-server: mkdtemp");
            goto out;
        }
        snprintf(tmpdb, sizeof tmpdb, "%s/db.sqlite", tmpdir);
        db_file = tmpdb;
    }
    if (db_setup(db_file, rows, &shape) != 0)
        goto out;

    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL); /* before any thread starts: they inherit it */

    if (!no_cache) {
        tc_options o;
        tc_options_init(&o);
        o.redis_url = redis_url;
        o.key_prefix = "tcserver";
        o.log_fn = log_cb;
        o.check_redis_config = redis.pid == 0; /* our private Redis needs no advice */
        if (no_local)
            o.local_max_bytes = 0;
        tc_status st = tc_open(&o, &cache);
        if (st != TC_OK) {
            fprintf(stderr, "tc-server: tc_open: %s\n", tc_strerror(st));
            goto out;
        }
    }
    daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG,
                              (uint16_t)port, NULL, NULL, handle, NULL, MHD_OPTION_THREAD_POOL_SIZE,
                              (unsigned)threads, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                              MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
                              MHD_OPTION_CONNECTION_LIMIT, 1000u, MHD_OPTION_END);
    if (!daemon) {
        fprintf(stderr, "tc-server: cannot listen on %s:%ld\n", bind_addr, port);
        goto out;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    printf("tc-server: listening on http://%s:%u/ (%ld threads; redis %s%s; db %s: %ld "
           "students, %ld users, %ld products; cache: %s)\n",
           bind_addr, info ? (unsigned)info->port : (unsigned)port, threads, redis_url,
           redis.pid ? ", private" : "", db_file, shape.students, shape.users, shape.products,
           no_cache   ? "off"
           : no_local ? "Redis only"
                      : "two tiers");
    fflush(stdout);

    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "tc-server: signal %d: stopping\n", sig);
    rc = 0;
out:
    if (daemon)
        MHD_stop_daemon(daemon); /* joins the pool: no request runs after this */
    tc_close(cache);
    db_close_all();
    if (tmpdb[0]) {
        static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
        for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
            char f[96];
            snprintf(f, sizeof f, "%s%s", tmpdb, ext[i]);
            unlink(f);
        }
        rmdir(tmpdir);
    }
    if (redis.pid)
        tcf_redis_stop(&redis);
    return rc;
}
