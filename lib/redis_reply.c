/*
 * Redis replies (see redis_reply.h): what the Redis tier's answers mean, decided without
 * any I/O. Owns nothing; every function reads a reply built by hiredis's reader, which
 * guarantees only the RESP types, so every element's type is checked before it is used.
 */
#include "config.h"

#include "redis_reply.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "redis_url.h"

/* ------------------------------------------------------------------ kinds of reply */

bool tc__reply_is_error(const redisReply *x)
{
    return x->type == REDIS_REPLY_ERROR;
}

bool tc__reply_error_starts(const redisReply *x, const char *prefix)
{
    size_t n = strlen(prefix);
    return tc__reply_is_error(x) && x->len >= n && memcmp(x->str, prefix, n) == 0;
}

static bool error_contains(const redisReply *x, const char *needle)
{
    return tc__reply_is_error(x) && x->str && strstr(x->str, needle) != NULL;
}

static bool reply_equals(const redisReply *x, int type, const char *s)
{
    size_t n = strlen(s);
    return x->type == type && x->len == n && memcmp(x->str, s, n) == 0;
}

bool tc__reply_is_status(const redisReply *x, const char *s)
{
    return reply_equals(x, REDIS_REPLY_STATUS, s);
}

bool tc__reply_is_str(const redisReply *x, const char *s)
{
    return reply_equals(x, REDIS_REPLY_STRING, s);
}

bool tc__reply_is_auth_error(const redisReply *x)
{
    return tc__reply_error_starts(x, "WRONGPASS") || tc__reply_error_starts(x, "NOAUTH") ||
           error_contains(x, "invalid username-password") ||
           error_contains(x, "invalid password") ||
           (tc__reply_error_starts(x, "ERR AUTH") &&
            error_contains(x, "without any password configured"));
}

tc_status tc__bad_reply(const tc_logger *log, const redisReply *x, const char *what)
{
    if (tc__reply_error_starts(x, "MOVED ") || tc__reply_error_starts(x, "ASK ") ||
        tc__reply_error_starts(x, "TRYAGAIN"))
        return TC_ERR_PROTO; /* a cluster redirect: the router follows it */
    if (tc__reply_is_error(x))
        tc__log(log, TC_LOG_WARN, "Redis error reply to %s: %.*s", what, (int)x->len, x->str);
    else
        tc__log(log, TC_LOG_WARN, "unexpected Redis reply type %d to %s", x->type, what);
    return TC_ERR_PROTO;
}

/* ------------------------------------------------------------------ addresses */

/* Whether s[0..n) can name a host: bytes a C string can carry (a NUL inside would cut the
 * name the connection uses short of the one compared). */
static bool host_bytes_ok(const char *s, size_t n)
{
    return n > 0 && memchr(s, '\0', n) == NULL;
}

/* ------------------------------------------------------------------ redirects */

/* "MOVED <slot> <host>:<port>" or "ASK ..." after its first word (p): the address's
 * last ':' separates the port, so an IPv6 host keeps its own colons. */
static bool parse_redirect_addr(const char *p, size_t n, tc_redirect *out)
{
    const char *end = p + n;
    long slot = 0;
    const char *sp = memchr(p, ' ', n);
    if (!sp || !tc__parse_uint(p, (size_t)(sp - p), 16383, &slot))
        return false;
    const char *addr = sp + 1;
    const char *colon = NULL;
    for (const char *q = addr; q < end; q++)
        if (*q == ':')
            colon = q;
    long port = 0;
    if (!colon || !tc__parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &port) || port == 0)
        return false;
    size_t hlen = (size_t)(colon - addr);
    char *host = NULL;
    if (hlen > 0 && (!host_bytes_ok(addr, hlen) || !(host = tc__strndup(addr, hlen))))
        return false;
    out->host = host;
    out->slot = (int)slot;
    out->port = (int)port;
    return true;
}

bool tc__reply_redirect(const redisReply *x, tc_redirect *out)
{
    if (x->type != REDIS_REPLY_ERROR || !x->str)
        return false;
    bool moved = tc__reply_error_starts(x, "MOVED ");
    bool ask = tc__reply_error_starts(x, "ASK ");
    if (moved || ask) {
        size_t skip = moved ? 6 : 4;
        if (out->kind != TC_REDIR_NONE) /* only the first is recorded */
            return true;
        if (!parse_redirect_addr(x->str + skip, x->len - skip, out))
            return false;
        out->kind = moved ? TC_REDIR_MOVED : TC_REDIR_ASK;
        return true;
    }
    if (tc__reply_error_starts(x, "TRYAGAIN") || tc__reply_error_starts(x, "CLUSTERDOWN")) {
        if (out->kind == TC_REDIR_NONE)
            out->kind = TC_REDIR_TRYAGAIN;
        return true;
    }
    return false;
}

void tc__redirect_clear(tc_redirect *out)
{
    tc__free(out->host);
    memset(out, 0, sizeof *out);
}

/* ------------------------------------------------------------------ CLUSTER SLOTS */

/* [lo, hi, [host, port, ...], replicas...] */
static bool slot_range_ok(const redisReply *e)
{
    return e->type == REDIS_REPLY_ARRAY && e->elements >= 3 &&
           e->element[0]->type == REDIS_REPLY_INTEGER &&
           e->element[1]->type == REDIS_REPLY_INTEGER && e->element[2]->type == REDIS_REPLY_ARRAY &&
           e->element[2]->elements >= 2 && e->element[2]->element[0]->type == REDIS_REPLY_STRING &&
           e->element[2]->element[1]->type == REDIS_REPLY_INTEGER;
}

tc_status tc__reply_cluster_slots(const redisReply *x, tc_slots_fn fn, void *arg)
{
    if (x->type != REDIS_REPLY_ARRAY || x->elements == 0)
        return TC_ERR_PROTO;
    for (size_t i = 0; i < x->elements; i++) {
        const redisReply *e = x->element[i];
        if (!slot_range_ok(e))
            return TC_ERR_PROTO;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        const redisReply *h = e->element[2]->element[0];
        long long port = e->element[2]->element[1]->integer;
        if (lo < 0 || hi > 16383 || lo > hi || port <= 0 || port > 65535)
            return TC_ERR_PROTO;
        /* An empty or "?" host: the node asked stands for it. */
        bool asked = h->len == 0 || (h->len == 1 && h->str[0] == '?');
        if (!asked && !host_bytes_ok(h->str, h->len))
            return TC_ERR_PROTO;
        if (!fn(arg, (int)lo, (int)hi, asked ? NULL : h->str, asked ? 0 : h->len, (int)port))
            return TC_ERR_NOMEM;
    }
    return TC_OK;
}

/* ------------------------------------------------------------------ Sentinel */

tc_status tc__reply_master_addr(const redisReply *x, char **host, int *port)
{
    *host = NULL;
    if (x->type == REDIS_REPLY_NIL)
        return TC_MISS;
    long p = 0;
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2 ||
        x->element[0]->type != REDIS_REPLY_STRING ||
        !host_bytes_ok(x->element[0]->str, x->element[0]->len) ||
        x->element[1]->type != REDIS_REPLY_STRING ||
        !tc__parse_uint(x->element[1]->str, x->element[1]->len, 65535, &p) || p == 0)
        return TC_ERR_PROTO;
    *host = tc__strndup(x->element[0]->str, x->element[0]->len);
    *port = (int)p;
    return *host ? TC_OK : TC_ERR_NOMEM;
}

/* The next space-separated word of s[*at..n): its start and length (0 at the end). */
static size_t next_word(const char *s, size_t n, size_t *at, const char **word)
{
    while (*at < n && s[*at] == ' ')
        (*at)++;
    *word = s + *at;
    size_t len = 0;
    while (*at < n && s[*at] != ' ')
        (*at)++, len++;
    return len;
}

tc_status tc__reply_switch_master(const redisReply *x, const char *channel, const char *master_name,
                                  char **host, int *port)
{
    *host = NULL;
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 3 ||
        !tc__reply_is_str(x->element[0], "message") || !tc__reply_is_str(x->element[1], channel) ||
        x->element[2]->type != REDIS_REPLY_STRING)
        return TC_MISS;
    const char *s = x->element[2]->str, *w[5];
    size_t n = x->element[2]->len, at = 0, len[5];
    for (int i = 0; i < 5; i++)
        len[i] = next_word(s, n, &at, &w[i]);
    const char *extra;
    long p = 0;
    if (len[4] == 0 || next_word(s, n, &at, &extra) != 0 || len[0] != strlen(master_name) ||
        memcmp(w[0], master_name, len[0]) != 0 || !tc__parse_uint(w[4], len[4], 65535, &p) ||
        p == 0 || !host_bytes_ok(w[3], len[3]))
        return TC_MISS;
    *host = tc__strndup(w[3], len[3]);
    *port = (int)p;
    return *host ? TC_OK : TC_ERR_NOMEM;
}

/* ------------------------------------------------------------------ values and lists */

tc_status tc__reply_value(const redisReply *g, const redisReply *t, tc_ref **val, int64_t *pttl_ms,
                          const redisReply **bad)
{
    *val = NULL;
    *bad = NULL;
    if (g->type != REDIS_REPLY_STRING && g->type != REDIS_REPLY_NIL)
        *bad = g;
    else if (t && t->type != REDIS_REPLY_INTEGER)
        *bad = t;
    if (*bad)
        return TC_ERR_PROTO;
    if (g->type == REDIS_REPLY_NIL)
        return TC_MISS;
    tc_ref *v = tc__ref_new(g->len);
    if (!v)
        return TC_ERR_NOMEM;
    if (g->len)
        memcpy(v->buf, g->str, g->len);
    v->buf[g->len] = '\0';
    v->len = g->len;
    *val = v;
    /* -1: no TTL. -2: the key expired between the GET and the PTTL; the value was live
     * when read, with no time left. */
    if (pttl_ms && t)
        *pttl_ms = t->integer >= -1 ? (int64_t)t->integer : 0;
    return TC_OK;
}

bool tc__reply_scan_ok(const redisReply *x)
{
    if (x->type != REDIS_REPLY_ARRAY || x->elements != 2)
        return false;
    const redisReply *cur = x->element[0], *keys = x->element[1];
    if (cur->type != REDIS_REPLY_STRING || cur->len == 0 || cur->len > 20 ||
        keys->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < cur->len; i++) {
        if (cur->str[i] < '0' || cur->str[i] > '9')
            return false;
    }
    for (size_t i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING)
            return false;
    }
    return keys->elements < INT_MAX;
}

bool tc__parse_i64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 20)
        return false;
    char buf[24];
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || end != buf + n || buf[0] == ' ' || buf[0] == '+')
        return false;
    *out = (int64_t)v;
    return true;
}

bool tc__reply_tracking_ok(const redisReply *x)
{
    bool ok = x->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; ok && i + 1 < x->elements; i += 2) {
        const redisReply *v = x->element[i + 1];
        if (!tc__reply_is_str(x->element[i], "flags") || v->type != REDIS_REPLY_ARRAY)
            continue;
        bool on = false;
        for (size_t j = 0; j < v->elements; j++) {
            on = on || tc__reply_is_str(v->element[j], "on");
            ok = ok && !tc__reply_is_str(v->element[j], "broken_redirect");
        }
        ok = ok && on;
    }
    return ok;
}

void tc__replies_free(redisReply **rep, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (rep[i])
            freeReplyObject(rep[i]);
        rep[i] = NULL;
    }
}
