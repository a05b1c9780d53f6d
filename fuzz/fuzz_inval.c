/*
 * libFuzzer target for the invalidation message parser (tc__inval_apply): anyone who can
 * PUBLISH on the channel controls these bytes.
 *
 * The cache is built by hand, without Redis: tc__inval_apply reads only the counters, the
 * origin, opt.version and the local tier, so a zeroed struct tc_cache with those fields set
 * (coherence NONE, no remote, no subscriber) is a faithful stand-in. Before every input four
 * keys are stored in the local tier; after it the target checks what the parser promises:
 *   - a malformed message (false) changes nothing and counts one inval_malformed;
 *   - a well-formed one counts one inval_received; a flush from another origin empties the
 *     tier; a key message from another origin for our version evicts exactly the stored
 *     keys it names; our own messages and other versions evict nothing.
 * A broken promise aborts (a crash for libFuzzer).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "coherence.h"
#include "key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OWN_ORIGIN 0x0123456789abcdefULL
#define OWN_ORIGIN_HEX "0123456789abcdef"
#define NKEYS 4

static const char *const keys[NKEYS] = {"a", "b", "user:1", "grades:gpa:student:123"};
static tc_cache *cache;

static tc_cache *cache_new(void)
{
    tc_cache *c = calloc(1, sizeof *c);
    if (!c)
        abort();
    tc_options_init(&c->opt);
    c->opt.coherence = TC_COHERENCE_NONE;
    c->opt.version = 1;
    c->origin = OWN_ORIGIN;
    c->local_enabled = true;
    if (tc__local_new(1 << 20, 4, &c->local) != TC_OK || tc__types_new(&c->types) != TC_OK)
        abort();
    return c;
}

static bool present(tc_cache *c, int i)
{
    size_t klen = strlen(keys[i]);
    tc_ref *r = NULL;
    bool hit = tc__local_get(c->local, tc__key_hash(keys[i], klen), keys[i], klen,
                             tc__now_ns(), &r);
    tc__ref_drop(r);
    return hit;
}

static void store_all(tc_cache *c)
{
    for (int i = 0; i < NKEYS; i++) {
        size_t klen = strlen(keys[i]);
        uint64_t h = tc__key_hash(keys[i], klen);
        tc_ref *r = tc__ref_copy("v", 1);
        if (!r)
            abort();
        tc_ticket t = tc__local_ticket(c->local, h);
        tc__local_store_if_fresh(c->local, h, keys[i], klen, r,
                                 tc__now_ns() + 3600LL * 1000000000, t);
        tc__ref_drop(r);
        if (!present(c, i))
            abort();
    }
}

/* Whether the space-separated key list [p, end) names key. */
static bool names(const char *p, const char *end, const char *key)
{
    size_t klen = strlen(key);
    while (p < end) {
        const char *e = memchr(p, ' ', (size_t)(end - p));
        if (!e)
            e = end;
        if ((size_t)(e - p) == klen && memcmp(p, key, klen) == 0)
            return true;
        p = e + 1;
    }
    return false;
}

/* The number of space-separated keys in [p, end). */
static uint64_t key_count(const char *p, const char *end)
{
    uint64_t n = 0;
    while (p < end) {
        const char *e = memchr(p, ' ', (size_t)(end - p));
        n++;
        p = e ? e + 1 : end;
    }
    return n;
}

/* For a message the parser accepted: which stored keys must be gone, and how much
 * inval_received must have grown: 1 for a flush (ours too), one per key for a foreign
 * message of our version (counted per key type), 0 for one that is ours or of another
 * version. */
static void expected_gone(const char *m, size_t len, bool gone[NKEYS], uint64_t *received)
{
    memset(gone, 0, NKEYS * sizeof gone[0]);
    *received = 0;
    /* "TC1 X <16 hex>" then, for K, " <version> <keys>". */
    bool foreign = memcmp(m + 6, OWN_ORIGIN_HEX, 16) != 0;
    if (m[4] == 'F') {
        *received = 1;
        for (int i = 0; i < NKEYS; i++)
            gone[i] = foreign;
        return;
    }
    const char *v = m + 23, *end = m + len;
    const char *ve = memchr(v, ' ', (size_t)(end - v));
    char num[16] = {0};
    if (!ve || (size_t)(ve - v) >= sizeof num)
        abort(); /* accepted, so the version and at least one key are there */
    memcpy(num, v, (size_t)(ve - v));
    if (!foreign || strtoll(num, NULL, 10) != 1)
        return;
    *received = key_count(ve + 1, end);
    for (int i = 0; i < NKEYS; i++)
        gone[i] = names(ve + 1, end, keys[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cache)
        cache = cache_new(); /* kept for the process: reachable, not a leak */
    tc_cache *c = cache;
    store_all(c);
    tc_stats s0, s1; /* inval_received: the cache-wide counter plus every key type's */
    tc_stats_get(c, &s0);
    uint64_t malformed0 = TC_READ(&c->counters, inval_malformed);
    bool ok = tc__inval_apply(c, (const char *)data, size);
    uint64_t malformed = TC_READ(&c->counters, inval_malformed) - malformed0;
    tc_stats_get(c, &s1);
    uint64_t received = s1.inval_received - s0.inval_received;
    if (!ok) {
        if (malformed != 1 || received != 0)
            abort();
        for (int i = 0; i < NKEYS; i++)
            if (!present(c, i))
                abort(); /* a malformed message changed the local tier */
        return 0;
    }
    if (malformed != 0 || size < 22)
        abort();
    bool gone[NKEYS];
    uint64_t want_received;
    expected_gone((const char *)data, size, gone, &want_received);
    if (received != want_received)
        abort();
    for (int i = 0; i < NKEYS; i++)
        if (present(c, i) == gone[i])
            abort();
    return 0;
}
