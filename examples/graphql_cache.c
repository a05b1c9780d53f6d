/* GraphQL response caching with tag invalidation: a response is cached under a key derived
 * from the request and tagged with the entities it contains; a mutation of one entity
 * invalidates its tag, and with it every cached response that showed it, in every process.
 * Exits 1 if two spellings of one query get different keys, a repeat is not a hit, or the
 * response is still served after the mutation. */
#include <stdio.h>
#include <string.h>
#include <tiercache.h>

#define TTL_MS 60000

static const char *doc_a = "query Cart($user: ID!) { user(id: $user) { name cart { id price } } }";
static const char *doc_b = "query Cart($user: ID!) {\n"
                           "  user(id: $user) {\n"
                           "    name, cart { id, price }   # what the cart page shows\n"
                           "  }\n"
                           "}\n";
static int executions; /* how often the GraphQL server really ran */

/* Serves one request: from the cache, or by running the query and caching the response
 * with the tags of the entities in it. Returns 1 for a hit, 0 for a miss, -1 on error. */
static int serve(tc_cache *c, const char *doc, const char *vars, char *key, size_t cap)
{
    char cc[32];
    if (tc_gql_key("public", doc, "Cart", vars, key, cap) != TC_OK)
        return -1;
    tc_value v;
    if (tc_get(c, key, &v) == TC_OK) {
        printf("  hit   %.*s\n", (int)v.len, (const char *)v.data);
        tc_value_release(&v);
        return 1;
    }
    executions++; /* the resolvers run: user 7, product 42 */
    const char *body = "{\"data\":{\"user\":{\"name\":\"Ada\",\"cart\":[{\"id\":42,"
                       "\"price\":1000}]}}}";
    const char *const tags[] = {"product:42", "user:7"};
    if (tc_set_tagged(c, key, body, strlen(body), TTL_MS, tags, 2) != TC_OK)
        return -1;
    tc_cache_control(TTL_MS, "public", cc, sizeof cc);
    printf("  miss  %s\n        Cache-Control: %s\n", body, cc);
    return strcmp(cc, "public, max-age=60") == 0 ? 0 : -1;
}

int main(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "recipe-gql";
    tc_cache *c;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    char key_a[64], key_b[64];
    int err = 0;
    printf("query, then the same query spelled differently:\n");
    err |= serve(c, doc_a, "{\"user\": \"7\"}", key_a, sizeof key_a) != 0;
    err |= serve(c, doc_b, "{ \"user\":\"7\" }", key_b, sizeof key_b) != 1;
    printf("  both keys: %s\n", key_b);
    err |= strcmp(key_a, key_b) != 0 || executions != 1;

    /* mutation { updateProduct(id: 42, price: 900) }: after writing the database, drop
       every response that contains product 42. */
    err |= tc_tag_invalidate(c, "product:42") != TC_OK;
    printf("after the mutation of product 42:\n");
    err |= serve(c, doc_a, "{\"user\": \"7\"}", key_a, sizeof key_a) != 0;
    err |= executions != 2;

    tc_close(c);
    printf("%d executions for 3 requests\n", executions);
    return err ? 1 : 0;
}
