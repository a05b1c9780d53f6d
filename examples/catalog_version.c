/* Bulk invalidation with a namespace version: every cached product of the catalog goes
 * stale at once when a price import finishes. No key is scanned or deleted: the import bumps
 * the namespace version, readers build their keys with the new version and miss, and the
 * old keys, now unreachable, age out by their TTL. Exits 1 if any of that does not happen. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <tiercache.h>

#define TTL_MS 1500 /* short, so the old keys age out during the run */

static int prices[] = {1000, 2500, 399}; /* the "database": products 1-3, in cents */
static int db_queries;

/* The loader: one product row, on a miss. key is "catalog:v<version>:product:<id>". */
static tc_status load_product(void *arg, const char *key, tc_buf *out)
{
    (void)key;
    int id = *(const int *)arg;
    db_queries++;
    char json[64];
    int len = snprintf(json, sizeof json, "{\"id\":%d,\"price\":%d}", id, prices[id - 1]);
    return tc_buf_append(out, json, (size_t)len);
}

/* A product page: reads product id through the catalog namespace; key gets the key used. */
static int product(tc_cache *c, int id, char *key, size_t cap, char *json, size_t jcap)
{
    char suffix[32], num[8];
    snprintf(num, sizeof num, "%d", id);
    tc_key(suffix, sizeof suffix, "product", num, NULL);
    tc_value v;
    if (tc_ns_key(c, "catalog", suffix, key, cap) != TC_OK ||
        tc_get_or_set(c, key, load_product, &id, TTL_MS, &v) != TC_OK)
        return -1;
    snprintf(json, jcap, "%.*s", (int)v.len, (const char *)v.data);
    tc_value_release(&v);
    return 0;
}

/* Reads key by its literal name: 1 if it is still cached. */
static int cached(tc_cache *c, const char *key)
{
    tc_value v;
    int hit = tc_get(c, key, &v) == TC_OK;
    tc_value_release(&v);
    return hit;
}

int main(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "recipe-catalog";
    tc_cache *c;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    char old_key[3][64], key[64], json[3][64];
    int err = 0;
    for (int round = 0; round < 2; round++) /* 3 queries, then 3 hits */
        for (int i = 0; i < 3; i++)         /* products 1, 2 and 3 */
            err |= product(c, i + 1, old_key[i], sizeof old_key[i], json[i], sizeof json[i]);
    printf("%s = %s (%d DB queries for 6 reads)\n", old_key[0], json[0], db_queries);
    err |= db_queries != 3;

    prices[0] = 900; /* the price import updates the database ... */
    int64_t version;
    err |= tc_ns_bump(c, "catalog", &version) != TC_OK; /* ... then bumps the catalog */
    err |= product(c, 1, key, sizeof key, json[0], sizeof json[0]);
    printf("import done, catalog v%lld: %s = %s\n", (long long)version, key, json[0]);
    err |= db_queries != 4 || strstr(json[0], "\"price\":900") == NULL;

    /* The old keys were not deleted: unreachable through tc_ns_key, still in Redis. */
    int left = 0;
    for (int i = 0; i < 3; i++)
        left += cached(c, old_key[i]);
    printf("old keys still cached: %d of 3 (nobody reads them)\n", left);
    err |= left != 3;

    struct timespec nap = {0, 50 * 1000 * 1000};
    for (int waited = 0; left > 0 && waited < TTL_MS + 3000; waited += 50) {
        nanosleep(&nap, NULL);
        left = 0;
        for (int i = 0; i < 3; i++)
            left += cached(c, old_key[i]);
    }
    printf("after their TTL: %d of 3 left\n", left);
    err |= left != 0;
    tc_close(c);
    return err ? 1 : 0;
}
