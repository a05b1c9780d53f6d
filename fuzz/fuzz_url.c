/*
 * libFuzzer target for the Redis URL parser (tc__url_parse + tc__url_free): the URL comes
 * from options or $TC_REDIS_URL and may hold credentials, so the parser must never read or
 * write out of bounds, leak, or accept something it then describes inconsistently.
 *
 * The input, cut at its first NUL byte, is the URL. On TC_OK the target checks the parsed
 * fields against the documented contract (a TCP URL has a non-empty host without brackets
 * and a port in 1..65535, a unix URL a non-empty socket path that fits sun_path, db >= 0,
 * credentials absent rather than empty), and that parsing again gives the same fields. On an
 * error the output must be zeroed. A broken promise aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "redis_url.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_ok(const tc_url *u)
{
    if (u->db < 0)
        abort();
    if ((u->user && !*u->user) || (u->password && !*u->password))
        abort(); /* an empty one is absent */
    if (u->kind == TC_URL_TCP) {
        if (!u->host || !*u->host || u->path || u->port < 1 || u->port > 65535)
            abort();
        if (strchr(u->host, '[') || strchr(u->host, ']'))
            abort();
    } else if (u->kind == TC_URL_UNIX) {
        if (!u->path || !*u->path || u->host ||
            strlen(u->path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
            abort();
    } else if (u->kind == TC_URL_CLUSTER || u->kind == TC_URL_SENTINEL) {
        /* Seed nodes (cluster) or sentinels: at least one, each a TCP host and port; the
         * first is also host/port. A sentinel URL names its master; a cluster has db 0. */
        if (u->nseeds < 1 || !u->seed_hosts || !u->seed_ports || u->path || !u->host ||
            strcmp(u->host, u->seed_hosts[0]) != 0 || u->port != u->seed_ports[0])
            abort();
        for (int i = 0; i < u->nseeds; i++) {
            if (!u->seed_hosts[i] || !*u->seed_hosts[i] || u->seed_ports[i] < 1 ||
                u->seed_ports[i] > 65535 || strchr(u->seed_hosts[i], '['))
                abort();
        }
        if (u->kind == TC_URL_CLUSTER && (u->db != 0 || u->master_name))
            abort();
        if (u->kind == TC_URL_SENTINEL && (!u->master_name || !*u->master_name))
            abort();
    } else {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    tc_url u, again;
    tc_status st = tc__url_parse(s, &u);
    if (st == TC_OK) {
        check_ok(&u);
        if (tc__url_parse(s, &again) != TC_OK || again.kind != u.kind || again.port != u.port ||
            again.db != u.db || !same_str(again.host, u.host) || !same_str(again.path, u.path) ||
            !same_str(again.user, u.user) || !same_str(again.password, u.password))
            abort();
        tc__url_free(&again);
        tc__url_free(&u);
    } else {
        if (st != TC_ERR_ARG && st != TC_ERR_NOMEM)
            abort();
        if (u.host || u.path || u.user || u.password || u.port || u.db)
            abort(); /* an error leaves nothing to free */
    }
    tc__url_free(&u); /* zeroed: freeing again is harmless */
    free(s);
    return 0;
}
