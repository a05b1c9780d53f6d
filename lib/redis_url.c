/*
 * Redis URLs (see redis_url.h): parsing only, no I/O. Every component is validated and
 * percent-decoded here, so the connection code downstream never sees a malformed host,
 * port, database or credential. Secrets are wiped before their memory is freed.
 */
#include "config.h"

#include "redis_url.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

static bool has_prefix_ci(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char a = *s, b = *prefix;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool is_unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

static bool is_sub_delim(char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

/* Zeroes a secret's bytes before its memory goes back (volatile: not optimised away). */
void tc__url_wipe(char *s)
{
    if (!s)
        return;
    for (volatile char *p = s; *p; p++)
        *p = '\0';
}

/* Percent-decodes s[0..n) into a new string (NULL if n is 0: an empty component is an
 * absent one). Characters outside unreserved, sub-delims and (if colon_ok) ':' are
 * TC_ERR_ARG, as are a malformed escape and an escape that decodes to NUL, which a C
 * string could not carry. */
static tc_status pct_decode(const char *s, size_t n, bool colon_ok, char **out)
{
    *out = NULL;
    if (n == 0)
        return TC_OK;
    char *d = tc__malloc(n + 1);
    if (!d)
        return TC_ERR_NOMEM;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0)) {
                d[j] = '\0';
                tc__url_wipe(d); /* it may be half a password */
                tc__free(d);
                return TC_ERR_ARG;
            }
            d[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (is_unreserved(c) || is_sub_delim(c) || (colon_ok && c == ':')) {
            d[j++] = c;
        } else {
            d[j] = '\0';
            tc__url_wipe(d);
            tc__free(d);
            return TC_ERR_ARG;
        }
    }
    d[j] = '\0';
    *out = d;
    return TC_OK;
}

/* "user[:password]" (both optional, both percent-encoded). The first ':' separates them;
 * the password may contain further ones. */
static tc_status parse_userinfo(const char *s, size_t n, tc_url *u)
{
    const char *colon = memchr(s, ':', n);
    size_t ulen = colon ? (size_t)(colon - s) : n;
    tc_status st = pct_decode(s, ulen, false, &u->user);
    if (st == TC_OK && colon)
        st = pct_decode(colon + 1, n - ulen - 1, true, &u->password);
    return st;
}

bool tc__parse_uint(const char *s, size_t n, long max, long *out)
{
    if (n == 0)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
        if (v > max)
            return false;
    }
    *out = v;
    return true;
}

/* "host[:port]" or "[v6]:port" into u->host and u->port. */
static tc_status parse_hostport(const char *s, size_t n, tc_url *u)
{
    const char *host, *rest;
    size_t hlen;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return TC_ERR_ARG;
        host = s + 1;
        hlen = (size_t)(close - host);
        bool colon = false;
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (c == ':')
                colon = true;
            else if (c != '.' && hex_value(c) < 0)
                return TC_ERR_ARG; /* zone ids ("%25eth0") are not supported */
        }
        if (!colon)
            return TC_ERR_ARG;
        rest = close + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        host = s;
        hlen = colon ? (size_t)(colon - s) : n;
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_'))
                return TC_ERR_ARG;
        }
        rest = s + hlen;
    }
    if (hlen == 0)
        return TC_ERR_ARG;
    size_t rlen = n - (size_t)(rest - s);
    u->port = 6379;
    if (rlen > 0) {
        long port;
        if (rest[0] != ':' || !tc__parse_uint(rest + 1, rlen - 1, 65535, &port) || port == 0)
            return TC_ERR_ARG;
        u->port = (int)port;
    }
    u->host = tc__strndup(host, hlen);
    return u->host ? TC_OK : TC_ERR_NOMEM;
}

static tc_status parse_tcp(const char *p, tc_url *u)
{
    u->kind = TC_URL_TCP;
    size_t alen = strcspn(p, "/?#");
    const char *at = memchr(p, '@', alen);
    const char *hp = p;
    tc_status st;
    if (at) {
        st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
        hp = at + 1;
    }
    st = parse_hostport(hp, alen - (size_t)(hp - p), u);
    if (st != TC_OK)
        return st;
    const char *rest = p + alen;
    if (*rest == '\0')
        return TC_OK;
    if (*rest != '/')
        return TC_ERR_ARG; /* a query or fragment: redis:// takes its db in the path */
    rest++;
    if (*rest == '\0')
        return TC_OK;
    long db;
    if (!tc__parse_uint(rest, strlen(rest), INT_MAX, &db))
        return TC_ERR_ARG;
    u->db = (int)db;
    return TC_OK;
}

static tc_status parse_unix(const char *p, tc_url *u)
{
    u->kind = TC_URL_UNIX;
    const char *slash = strchr(p, '/');
    if (!slash)
        return TC_ERR_ARG;
    if (slash != p) {
        /* Only credentials may stand before the path: a unix URL names no host. */
        const char *at = memchr(p, '@', (size_t)(slash - p));
        if (!at || at + 1 != slash)
            return TC_ERR_ARG;
        tc_status st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
    }
    size_t plen = strcspn(slash, "?#");
    char *path = tc__malloc(plen + 1);
    if (!path)
        return TC_ERR_NOMEM;
    size_t j = 0;
    for (size_t i = 0; i < plen; i++) {
        char c = slash[i];
        if (c == '%') {
            int hi = i + 2 < plen ? hex_value(slash[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(slash[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0)) {
                tc__free(path);
                return TC_ERR_ARG;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if ((unsigned char)c <= 32 || c == 127) {
            tc__free(path);
            return TC_ERR_ARG;
        }
        path[j++] = c;
    }
    path[j] = '\0';
    u->path = path;
    /* A socket is a file: "/" or "/dir/" names none; sun_path bounds the length. */
    if (j < 2 || path[j - 1] == '/' || j >= sizeof(((struct sockaddr_un *)0)->sun_path))
        return TC_ERR_ARG;
    const char *rest = slash + plen;
    if (*rest == '\0')
        return TC_OK;
    long db;
    if (strncmp(rest, "?db=", 4) != 0 || !tc__parse_uint(rest + 4, strlen(rest + 4), INT_MAX, &db))
        return TC_ERR_ARG;
    u->db = (int)db;
    return TC_OK;
}

/* "[user[:password]@]host:port[,host:port...]": the seed nodes of a cluster; for
 * Sentinel, the sentinels followed by "/master-name[/db][?query]". */
static tc_status parse_seeds(const char *p, tc_url *u);

/* A Sentinel URL's query: "sentinel_password=P" and "sentinel_user=U" (each at most once,
 * percent-encoded, joined by '&'): the credentials the sentinels themselves ask for. */
static tc_status parse_sentinel_query(const char *q, tc_url *u)
{
    while (*q) {
        size_t len = strcspn(q, "&");
        const char *eq = memchr(q, '=', len);
        if (!eq)
            return TC_ERR_ARG;
        size_t nlen = (size_t)(eq - q), vlen = len - nlen - 1;
        bool pw = nlen == 17 && memcmp(q, "sentinel_password", 17) == 0;
        bool user = nlen == 13 && memcmp(q, "sentinel_user", 13) == 0;
        char **dst = pw ? &u->sentinel_password : &u->sentinel_user;
        if ((!pw && !user) || *dst)
            return TC_ERR_ARG; /* unknown or repeated */
        tc_status st = pct_decode(eq + 1, vlen, pw, dst);
        if (st != TC_OK)
            return st;
        q += len;
        if (*q == '&' && *++q == '\0')
            return TC_ERR_ARG;
    }
    return TC_OK;
}

/* For Sentinel: "master-name[/db][?query]" after the sentinels' slash. */
static tc_status parse_sentinel_tail(const char *name, tc_url *u)
{
    const char *query = strchr(name, '?');
    size_t tail = query ? (size_t)(query - name) : strlen(name);
    size_t nlen = strcspn(name, "/?");
    if (nlen == 0)
        return TC_ERR_ARG;
    tc_status st = pct_decode(name, nlen, false, &u->master_name);
    if (st != TC_OK)
        return st;
    const char *rest = name + nlen;
    size_t rlen = tail - nlen;
    if (rlen > 1) {
        long db;
        if (rest[0] != '/' || !tc__parse_uint(rest + 1, rlen - 1, INT_MAX, &db))
            return TC_ERR_ARG;
        u->db = (int)db;
    } else if (rlen == 1 && rest[0] != '/') {
        return TC_ERR_ARG;
    }
    if (query && query[1] == '\0')
        return TC_ERR_ARG;
    return query ? parse_sentinel_query(query + 1, u) : TC_OK;
}

static tc_status parse_cluster(const char *p, tc_url *u, bool sentinel)
{
    u->kind = sentinel ? TC_URL_SENTINEL : TC_URL_CLUSTER;
    char *copy = NULL;
    if (sentinel) {
        const char *slash = strchr(p, '/');
        if (!slash)
            return TC_ERR_ARG;
        tc_status st = parse_sentinel_tail(slash + 1, u);
        if (st != TC_OK)
            return st;
        copy = tc__strndup(p, (size_t)(slash - p));
        if (!copy)
            return TC_ERR_NOMEM;
        p = copy;
    }
    tc_status st = parse_seeds(p, u);
    tc__url_wipe(copy); /* "user:password@hosts" */
    tc__free(copy);
    return st;
}

static tc_status parse_seeds(const char *p, tc_url *u)
{
    const char *at = strchr(p, '@');
    tc_status st;
    if (at) {
        st = parse_userinfo(p, (size_t)(at - p), u);
        if (st != TC_OK)
            return st;
        p = at + 1;
    }
    if (*p == '\0')
        return TC_ERR_ARG;
    int n = 1;
    for (const char *q = p; *q; q++)
        n += *q == ',';
    u->seed_hosts = tc__calloc((size_t)n, sizeof *u->seed_hosts);
    u->seed_ports = tc__calloc((size_t)n, sizeof *u->seed_ports);
    if (!u->seed_hosts || !u->seed_ports)
        return TC_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        size_t len = strcspn(p, ",");
        tc_url one;
        memset(&one, 0, sizeof one);
        if (len == 0 || memchr(p, '/', len) || memchr(p, '?', len))
            return TC_ERR_ARG;
        st = parse_hostport(p, len, &one);
        if (st != TC_OK) {
            tc__free(one.host);
            return st;
        }
        u->seed_hosts[i] = one.host;
        u->seed_ports[i] = one.port;
        u->nseeds = i + 1;
        p += len + (p[len] == ',');
    }
    u->host = tc__strdup(u->seed_hosts[0]);
    u->port = u->seed_ports[0];
    return u->host ? TC_OK : TC_ERR_NOMEM;
}

tc_status tc__url_parse(const char *s, tc_url *out)
{
    if (!out)
        return TC_ERR_ARG;
    memset(out, 0, sizeof *out);
    if (!s)
        return TC_ERR_ARG;
    tc_status st;
    /* "rediss" instead of "redis": the same form over TLS. */
    bool tls = has_prefix_ci(s, "rediss");
    const char *p = s + (tls ? 6 : 5);
    if (!has_prefix_ci(s, "redis"))
        st = has_prefix_ci(s, "unix://") ? parse_unix(s + 7, out) : TC_ERR_ARG;
    else if (has_prefix_ci(p, "://"))
        st = parse_tcp(p + 3, out);
    else if (has_prefix_ci(p, "-cluster://"))
        st = parse_cluster(p + 11, out, false);
    else if (has_prefix_ci(p, "-sentinel://"))
        st = parse_cluster(p + 12, out, true);
    else
        st = TC_ERR_ARG;
    out->tls = st == TC_OK && tls;
    if (st != TC_OK)
        tc__url_free(out);
    return st;
}

/* Overwrites a secret before its memory goes back to the allocator; volatile so the
 * compiler cannot drop the stores as dead. */
void tc__url_free(tc_url *u)
{
    if (!u)
        return;
    tc__url_wipe(u->password);
    tc__url_wipe(u->sentinel_password);
    tc__free(u->host);
    tc__free(u->path);
    tc__free(u->user);
    tc__free(u->password);
    for (int i = 0; i < u->nseeds; i++)
        tc__free(u->seed_hosts[i]);
    tc__free(u->seed_hosts);
    tc__free(u->seed_ports);
    tc__free(u->master_name);
    tc__free(u->sentinel_user);
    tc__free(u->sentinel_password);
    memset(u, 0, sizeof *u);
}
