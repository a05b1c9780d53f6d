/* Per-query caching: a user's notification list, one cached result per set of query
 * parameters (page, filter). All of a user's results live in a namespace of their own, so a
 * new notification makes every cached page and filter of that user stale with one bump, and
 * leaves other users' results alone. Exits 1 if the query runs more or less often than that. */
#include <stdio.h>
#include <string.h>
#include <tiercache.h>

static int notifications[2] = {3, 5}; /* the "database": notifications of users 7 and 8 */
static int db_queries;

/* The loader: the query the cache saves. key ends in the parameters; arg is the user. */
static tc_status load_list(void *arg, const char *key, tc_buf *out)
{
    int user = *(const int *)arg;
    db_queries++; /* SELECT ... WHERE user = ? ORDER BY ... LIMIT ... */
    char json[128];
    int len = snprintf(json, sizeof json, "{\"query\":\"%s\",\"total\":%d}", key,
                       notifications[user - 7]);
    return tc_buf_append(out, json, (size_t)len);
}

/* One request: GET /notifications?page=<page>&filter=<filter> for user (7 or 8). */
static int fetch(tc_cache *c, int user, const char *page, const char *filter, int print)
{
    char uid[8], ns[64], params[64], key[128];
    snprintf(uid, sizeof uid, "%d", user);
    tc_key(ns, sizeof ns, "notifications", "list", "user", uid, NULL);
    tc_key(params, sizeof params, "page", page, "filter", filter, NULL);
    /* "notifications:list:user:7:v<version>:page:1:filter:unread" */
    tc_value v;
    if (tc_ns_key(c, ns, params, key, sizeof key) != TC_OK ||
        tc_get_or_set(c, key, load_list, &user, 5 * 60 * 1000, &v) != TC_OK)
        return -1;
    if (print)
        printf("  %.*s\n", (int)v.len, (const char *)v.data);
    tc_value_release(&v);
    return 0;
}

/* Every page and filter of user 7 and one of user 8; returns the DB queries it took. */
static int browse(tc_cache *c, int print)
{
    int before = db_queries, err = 0;
    err |= fetch(c, 7, "1", "all", print);
    err |= fetch(c, 7, "2", "all", print);
    err |= fetch(c, 7, "1", "unread", print);
    err |= fetch(c, 8, "1", "all", print);
    return err ? -1 : db_queries - before;
}

int main(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "recipe-query";
    tc_cache *c;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    int cold = browse(c, 1);
    int warm = browse(c, 0);
    printf("first visit: %d queries; second visit: %d queries\n", cold, warm);

    notifications[0]++; /* INSERT INTO notifications (user 7) ... */
    int64_t version;
    st = tc_ns_bump(c, "notifications:list:user:7", &version); /* ... then stale them */
    printf("new notification for user 7: namespace now v%lld\n", (long long)version);
    int after = browse(c, 1);
    printf("after the bump: %d queries (user 7's three results, not user 8's)\n", after);

    tc_close(c);
    return st == TC_OK && cold == 4 && warm == 0 && after == 3 && version == 1 ? 0 : 1;
}
