/*
 * Bulk invalidation without key scans: versioned namespaces and tags.
 *
 * Both rest on a version counter stored as an ordinary cache key under the cache's prefix:
 * "__tc:ns:<ns>" for a namespace, "__tc:tag:<tag>" for a tag, a plain Redis integer with no
 * expiry. Versions are read through the local tier like any value (so building a namespaced
 * key or checking a tagged value is a local hit), and bumped with tc_incr, whose
 * invalidation message reaches every process atomically with the bump. A version key that
 * does not exist reads as version 0 and is created at 0 on first use, so that it can be
 * cached locally from then on.
 *
 * A namespaced key embeds the version: "<ns>:v<version>:<suffix>"; a bump makes every key
 * built before unreachable at once, and the old keys age out by their TTL. A tagged value
 * records the versions its tags had when it was written (in its stored-format header); a
 * read whose tags have moved on is a miss.
 *
 * Caveat (docs/operations.md): under allkeys-lru Redis may evict a version key that is only
 * ever read from local tiers; it is re-read from Redis every local_ttl_ms, which keeps it
 * recently used. An evicted namespace version restarts at 0.
 *
 * No locks of its own; it reads and writes through the core's internal API (cache.h), never
 * through the public operations, whose open check, validation and counting the caller's
 * own call already ran.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "format.h"
#include "key.h"
#include "tags.h"

#define NS_KIND "__tc:ns:"
#define TAG_KIND "__tc:tag:"

/* Whether name is a valid namespace or tag name: the key rules, with room for kind in
 * front, since its version is the key "<kind><name>" (so a name has at most
 * max_key_len - strlen(kind) bytes). */
static bool name_ok(const tc_cache *c, const char *kind, const char *name)
{
    size_t kl = strlen(kind), max = tc__cache_options(c)->max_key_len;
    return max > kl && tc__key_valid(name, max - kl, NULL);
}

/* Builds the version key of name into buf (cap >= strlen(kind) + max name + 1); *len gets
 * its length. */
static tc_status version_key(const tc_cache *c, const char *kind, const char *name, char *buf,
                             size_t cap, size_t *len)
{
    if (!name_ok(c, kind, name))
        return TC_ERR_ARG;
    int n = snprintf(buf, cap, "%s%s", kind, name);
    *len = (size_t)n;
    return n > 0 && (size_t)n < cap ? TC_OK : TC_ERR_ARG;
}

static bool parse_version(const tc_value *v, int64_t *out)
{
    char num[24];
    if (v->len == 0 || v->len >= sizeof num)
        return false;
    memcpy(num, v->data, v->len);
    num[v->len] = '\0';
    char *end;
    errno = 0;
    long long x = strtoll(num, &end, 10);
    if (errno || *end)
        return false;
    *out = x;
    return true;
}

/* Reads the version behind vkey (vlen bytes, a valid key) through both tiers: 0 if it was
 * never bumped (creating it at 0, so later reads are local hits). */
static tc_status version_read(tc_cache *c, const char *vkey, size_t vlen, int64_t *version)
{
    uint64_t h = tc__key_hash(vkey, vlen);
    for (int attempt = 0; attempt < 2; attempt++) {
        tc_value v;
        tc_status st = tc__cache_read(c, h, vkey, vlen, &v);
        if (st == TC_OK) {
            bool ok = parse_version(&v, version);
            tc__value_release(&v);
            return ok ? TC_OK : TC_ERR_NOT_INT;
        }
        if (st != TC_MISS)
            return st;
        st = tc__cache_add(c, vkey, vlen, "0", 1, TC_TTL_FOREVER);
        if (st != TC_OK && st != TC_EXISTS)
            return st;
    }
    *version = 0; /* created and gone at once (evicted, cleared): still never bumped */
    return TC_OK;
}

/* Increments the version behind vkey (vlen bytes), creating it at 0 first if needed. */
static tc_status version_bump(tc_cache *c, const char *vkey, size_t vlen, int64_t *new_version)
{
    int64_t v = 0;
    tc_status st = tc__cache_incr(c, vkey, vlen, 1, &v);
    if (st == TC_MISS) {
        st = tc__cache_add(c, vkey, vlen, "0", 1, TC_TTL_FOREVER);
        if (st == TC_OK || st == TC_EXISTS)
            st = tc__cache_incr(c, vkey, vlen, 1, &v);
    }
    if (st == TC_OK && new_version)
        *new_version = v;
    return st;
}

/* Room for a version key (the kind, a name of up to max_key_len bytes, the NUL): the
 * caller's stack buffer when it is big enough, else the heap (free with vkey_done). */
#define VKEY_STACK 320
static char *vkey_buf(const tc_cache *c, char *stack, size_t *cap)
{
    *cap = tc__cache_options(c)->max_key_len + sizeof TAG_KIND + 1;
    return *cap <= VKEY_STACK ? stack : tc__malloc(*cap);
}

static void vkey_done(char *vkey, const char *stack)
{
    if (vkey != stack)
        tc__free(vkey);
}

TC_API tc_status tc_ns_key(tc_cache *c, const char *ns, const char *suffix, char *buf, size_t cap)
{
    if (buf && cap)
        buf[0] = '\0';
    tc_status st = tc__cache_check_open(c);
    if (st != TC_OK)
        return st;
    if (!buf || cap == 0 || !suffix ||
        !tc__key_valid(suffix, tc__cache_options(c)->max_key_len, NULL))
        return TC_ERR_ARG;
    size_t vcap, vlen;
    char stack[VKEY_STACK];
    char *vkey = vkey_buf(c, stack, &vcap);
    if (!vkey)
        return TC_ERR_NOMEM;
    int64_t version = 0;
    st = version_key(c, NS_KIND, ns, vkey, vcap, &vlen);
    if (st == TC_OK)
        st = version_read(c, vkey, vlen, &version);
    vkey_done(vkey, stack);
    if (st != TC_OK)
        return st;
    int n = snprintf(buf, cap, "%s:v%lld:%s", ns, (long long)version, suffix);
    if (n < 0 || (size_t)n >= cap) {
        buf[0] = '\0';
        return TC_ERR_ARG;
    }
    return TC_OK;
}

/* Bumps the version of the namespace or tag name (kind says which). */
static tc_status bump(tc_cache *c, const char *kind, const char *name, int64_t *new_version)
{
    tc_status st = tc__cache_check_open(c);
    if (st != TC_OK)
        return st;
    size_t vcap, vlen;
    char stack[VKEY_STACK];
    char *vkey = vkey_buf(c, stack, &vcap);
    if (!vkey)
        return TC_ERR_NOMEM;
    st = version_key(c, kind, name, vkey, vcap, &vlen);
    if (st == TC_OK)
        st = version_bump(c, vkey, vlen, new_version);
    vkey_done(vkey, stack);
    return st;
}

TC_API tc_status tc_ns_bump(tc_cache *c, const char *ns, int64_t *new_version)
{
    return bump(c, NS_KIND, ns, new_version);
}

TC_API tc_status tc_tag_invalidate(tc_cache *c, const char *tag)
{
    return bump(c, TAG_KIND, tag, NULL);
}

TC_API tc_status tc_set_tagged(tc_cache *c, const char *key, const void *data, size_t len,
                               int ttl_ms, const char *const *tags, size_t ntags)
{
    tc_status st = tc__cache_check_open(c);
    if (st != TC_OK)
        return st;
    const tc_options *o = tc__cache_options(c);
    size_t klen;
    if (!tc__key_valid(key, o->max_key_len, &klen))
        return TC_ERR_ARG;
    if (ntags == 0) /* a plain set */
        return tc__cache_store(c, key, klen, data, len, NULL, ttl_ms);
    if (!tags || ntags > TC_FMT_MAX_TAGS)
        return TC_ERR_ARG;
    /* Everything is checked before the tag versions are read: a bad argument sends nothing
     * to Redis. */
    for (size_t i = 0; i < ntags; i++)
        if (!name_ok(c, TAG_KIND, tags[i]))
            return TC_ERR_ARG;
    if ((!data && len > 0) || (ttl_ms < 0 && ttl_ms != TC_TTL_DEFAULT && ttl_ms != TC_TTL_FOREVER))
        return TC_ERR_ARG;
    if (len > o->max_value_bytes)
        return TC_ERR_TOO_BIG;
    tc_fmt_tag *t = tc__calloc(ntags, sizeof *t);
    size_t vcap, vlen;
    char stack[VKEY_STACK];
    char *vkey = vkey_buf(c, stack, &vcap);
    st = t && vkey ? TC_OK : TC_ERR_NOMEM;
    for (size_t i = 0; st == TC_OK && i < ntags; i++) {
        st = version_key(c, TAG_KIND, tags[i], vkey, vcap, &vlen);
        if (st == TC_OK)
            st = version_read(c, vkey, vlen, &t[i].version);
        t[i].name = tags[i];
        t[i].len = tags[i] ? strlen(tags[i]) : 0;
    }
    if (st == TC_OK) {
        tc_fmt_meta meta = {.flags = TC_FMT_TAGS, .ntags = ntags, .tags = t};
        st = tc__cache_store(c, key, klen, data, len, &meta, ttl_ms);
    }
    vkey_done(vkey, stack);
    tc__free(t);
    return st;
}

tc_status tc__tags_current(tc_cache *c, const tc_ref *r)
{
    size_t pos = 0, vcap;
    tc_fmt_tag tag;
    char stack[VKEY_STACK];
    char *vkey = vkey_buf(c, stack, &vcap);
    if (!vkey)
        return TC_ERR_NOMEM;
    tc_status st = TC_OK;
    while (st == TC_OK && tc__fmt_next_tag(r, &pos, &tag)) {
        int64_t now = 0;
        int n = snprintf(vkey, vcap, "%s%.*s", TAG_KIND, (int)tag.len, tag.name);
        if (n < 0 || (size_t)n >= vcap) {
            st = TC_MISS; /* a tag we could never have written: not ours */
            break;
        }
        /* The header comes from Redis, where anyone may write: its names keep the key
         * rules to be read as keys. */
        if ((size_t)n > tc__cache_options(c)->max_key_len ||
            !tc__key_bytes_valid(vkey, (size_t)n)) {
            st = TC_ERR_ARG;
            break;
        }
        st = version_read(c, vkey, (size_t)n, &now);
        if (st == TC_OK && now != tag.version)
            st = TC_MISS;
    }
    vkey_done(vkey, stack);
    return st;
}
