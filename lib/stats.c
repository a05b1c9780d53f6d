/*
 * Metrics: the key-type table, tc_stats_get, tc_stats_foreach and the Prometheus text
 * exposition.
 *
 * The type table is an open-addressing hash of at most TC_KEY_TYPES_MAX names. Insertion
 * takes the table mutex, fills a type completely, then publishes its slot with a release
 * store; lookups read slots with acquire loads and take no lock. A type is never removed
 * while the cache lives. Id 0 is "other", for keys once the table is full.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "key.h"

#define SLOTS 512 /* > 2 x TC_KEY_TYPES_MAX: probes stay short */

_Static_assert(TC_KEY_TYPES_MAX + 1 == TC_LOCAL_TYPES, "local tier counts every type id");

typedef struct key_type {
    char *name;
    size_t len;
    uint64_t hash;
    tc_counters n;
} key_type;

struct tc_types {
    pthread_mutex_t mu;
    atomic_uint count;             /* ids in use, "other" included */
    atomic_uint slots[SLOTS];      /* id + 1 of the type hashed there; 0: empty */
    key_type types[TC_KEY_TYPES_MAX + 1];
};

tc_status tc__types_new(tc_types **out)
{
    tc_types *t = tc__calloc(1, sizeof *t);
    if (!t)
        return TC_ERR_NOMEM;
    t->types[0].name = tc__strdup("other");
    if (!t->types[0].name) {
        tc__free(t);
        return TC_ERR_NOMEM;
    }
    t->types[0].len = 5;
    atomic_init(&t->count, 1);
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return TC_OK;
}

void tc__types_free(tc_types *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i < atomic_load(&t->count); i++)
        tc__free(t->types[i].name);
    pthread_mutex_destroy(&t->mu);
    tc__free(t);
}

size_t tc__key_type_len(const char *key, size_t klen)
{
    const char *first = memchr(key, ':', klen);
    if (!first)
        return klen;
    const char *second = memchr(first + 1, ':', klen - (size_t)(first + 1 - key));
    return second ? (size_t)(second - key) : klen;
}

/* The id in slot-probe order for name, or 0 if absent; *free_slot gets the first empty
 * slot seen. */
static uint32_t find(tc_types *t, const char *name, size_t len, uint64_t h, unsigned *free_slot)
{
    for (unsigned i = 0; i < SLOTS; i++) {
        unsigned s = (unsigned)(h + i) & (SLOTS - 1);
        unsigned v = atomic_load_explicit(&t->slots[s], memory_order_acquire);
        if (v == 0) {
            *free_slot = s;
            return 0;
        }
        const key_type *k = &t->types[v - 1];
        if (k->hash == h && k->len == len && memcmp(k->name, name, len) == 0)
            return v - 1;
    }
    *free_slot = SLOTS;
    return 0;
}

uint32_t tc__type_of(tc_types *t, const char *key, size_t klen)
{
    size_t len = tc__key_type_len(key, klen);
    uint64_t h = tc__key_hash(key, len);
    unsigned slot;
    uint32_t id = find(t, key, len, h, &slot);
    if (id || atomic_load_explicit(&t->count, memory_order_relaxed) > TC_KEY_TYPES_MAX)
        return id;
    pthread_mutex_lock(&t->mu);
    id = find(t, key, len, h, &slot); /* another thread may have added it */
    unsigned n = atomic_load_explicit(&t->count, memory_order_relaxed);
    if (id == 0 && slot < SLOTS && n <= TC_KEY_TYPES_MAX) {
        key_type *k = &t->types[n];
        k->name = tc__strndup(key, len);
        if (k->name) { /* no memory: counted as "other" */
            k->len = len;
            k->hash = h;
            atomic_store_explicit(&t->count, n + 1, memory_order_release);
            atomic_store_explicit(&t->slots[slot], n + 1, memory_order_release);
            id = n;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return id;
}

tc_counters *tc__type_counters(tc_types *t, uint32_t id)
{
    return &t->types[id <= TC_KEY_TYPES_MAX ? id : 0].n;
}

uint32_t tc__types_count(const tc_types *t)
{
    return atomic_load_explicit(&((tc_types *)t)->count, memory_order_acquire);
}

const char *tc__type_name(const tc_types *t, uint32_t id)
{
    return t->types[id].name;
}

/* ------------------------------------------------------------------ snapshots */

/* Adds the per-type counters of n into out. */
static void add_counters(tc_stats *out, const tc_counters *n)
{
    out->remote_hits += TC_READ(n, remote_hits);
    out->misses += TC_READ(n, misses);
    out->sets += TC_READ(n, sets);
    out->deletes += TC_READ(n, deletes);
    out->loads += TC_READ(n, loads);
    out->load_errors += TC_READ(n, load_errors);
    out->flight_waits += TC_READ(n, flight_waits);
    out->inval_sent += TC_READ(n, inval_sent);
    out->inval_received += TC_READ(n, inval_received);
    out->remote_errors += TC_READ(n, remote_errors);
}

TC_API void tc_stats_get(tc_cache *c, tc_stats *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!c)
        return;
    tc_local_stats ls;
    tc__local_stats(tc__cache_local(c), &ls);
    out->local_hits = ls.hits;
    out->local_evictions = ls.evictions;
    out->local_entries = ls.entries;
    out->local_bytes = ls.bytes;
    add_counters(out, tc__cache_counters(c)); /* what no key type owns (a flush-all message) */
    uint32_t n = tc__types_count(tc__cache_types(c));
    for (uint32_t id = 0; id < n; id++)
        add_counters(out, tc__type_counters(tc__cache_types(c), id));
}

/* Fills one stats record per key type; hits/evictions from the local tier's arrays. */
static void type_stats(tc_cache *c, uint32_t id, const uint64_t *hits, const uint64_t *ev,
                       tc_stats *s)
{
    memset(s, 0, sizeof *s);
    add_counters(s, tc__type_counters(tc__cache_types(c), id));
    s->local_hits = hits[id];
    s->local_evictions = ev[id];
}

TC_API void tc_stats_foreach(tc_cache *c, tc_stats_fn fn, void *arg)
{
    if (!c || !fn)
        return;
    uint64_t hits[TC_LOCAL_TYPES], ev[TC_LOCAL_TYPES];
    tc__local_type_stats(tc__cache_local(c), hits, ev);
    uint32_t n = tc__types_count(tc__cache_types(c));
    for (uint32_t id = 0; id < n; id++) {
        tc_stats s;
        type_stats(c, id, hits, ev, &s);
        if (id == 0 && s.local_hits + s.remote_hits + s.misses + s.sets + s.deletes +
                               s.loads + s.inval_received + s.local_evictions ==
                           0)
            continue; /* "other" only when something fell into it */
        fn(arg, tc__type_name(tc__cache_types(c), id), &s); /* no lock is held here */
    }
}

/* ------------------------------------------------------------------ Prometheus text */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = tc__realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

/* The length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
                                                        : (s[0] & 0xf8) == 0xf0   ? 4
                                                                                  : 0;
    if (len == 0 || len > n || (len == 2 && s[0] < 0xc2) || (len == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* A label value as the exposition format wants it: backslash, double quote and newline
 * escaped; bytes that are not UTF-8 replaced by U+FFFD (label values are UTF-8). */
static void sb_label(sbuf *b, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    while (n > 0) {
        size_t len = utf8_seq(s, n);
        if (len == 0) {
            sb_str(b, "\xef\xbf\xbd");
            len = 1;
        } else if (*s == '\\' || *s == '"') {
            sb_put(b, "\\", 1);
            sb_put(b, (const char *)s, 1);
        } else if (*s == '\n') {
            sb_str(b, "\\n");
        } else {
            sb_put(b, (const char *)s, len);
        }
        s += len;
        n -= len;
    }
}

typedef struct metric {
    const char *name, *help, *type;
    size_t offset; /* of the field in tc_stats */
} metric;

#define M(field, type, help) {"tiercache_" #field, help, type, offsetof(tc_stats, field)}
static const metric per_type[] = {
    M(local_hits, "counter", "Reads answered by the local tier."),
    M(remote_hits, "counter", "Reads answered by Redis."),
    M(misses, "counter", "Reads that found nothing."),
    M(sets, "counter", "Values written (set, add, incr, the set_many forms)."),
    M(deletes, "counter", "Delete operations."),
    M(loads, "counter", "Loader calls by tc_get_or_set."),
    M(load_errors, "counter", "Loader calls that failed."),
    M(flight_waits, "counter", "Callers that waited for another caller's load."),
    M(inval_sent, "counter", "Invalidation messages published."),
    M(inval_received, "counter", "Invalidation messages applied."),
    M(local_evictions, "counter", "Entries evicted from the local tier to stay in budget."),
    M(remote_errors, "counter", "Redis operations that failed."),
};
#undef M

static void sb_u64(sbuf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_put(b, num, (size_t)n);
}

static void sb_header(sbuf *b, const char *name, const char *help, const char *type,
                      const char *suffix)
{
    sb_str(b, "# HELP ");
    sb_str(b, name);
    sb_str(b, suffix);
    sb_str(b, " ");
    sb_str(b, help);
    sb_str(b, "\n# TYPE ");
    sb_str(b, name);
    sb_str(b, suffix);
    sb_str(b, " ");
    sb_str(b, type);
    sb_str(b, "\n");
}

TC_API tc_status tc_stats_prometheus(tc_cache *c, char **text)
{
    if (text)
        *text = NULL;
    if (!c || !text)
        return TC_ERR_ARG;
    uint64_t hits[TC_LOCAL_TYPES], ev[TC_LOCAL_TYPES];
    tc__local_type_stats(tc__cache_local(c), hits, ev);
    uint32_t n = tc__types_count(tc__cache_types(c));
    tc_stats *s = tc__calloc(n, sizeof *s);
    if (!s)
        return TC_ERR_NOMEM;
    for (uint32_t id = 0; id < n; id++)
        type_stats(c, id, hits, ev, &s[id]);
    sbuf b = {0};
    for (size_t m = 0; m < sizeof per_type / sizeof per_type[0]; m++) {
        sb_header(&b, per_type[m].name, per_type[m].help, per_type[m].type, "_total");
        for (uint32_t id = 0; id < n; id++) {
            sb_str(&b, per_type[m].name);
            sb_str(&b, "_total{key_type=\"");
            sb_label(&b, tc__type_name(tc__cache_types(c), id));
            sb_str(&b, "\"} ");
            sb_u64(&b, *(const uint64_t *)((const char *)&s[id] + per_type[m].offset));
            sb_str(&b, "\n");
        }
    }
    tc_stats all;
    tc_stats_get(c, &all);
    sb_header(&b, "tiercache_local_entries", "Entries held by the local tier.", "gauge", "");
    sb_str(&b, "tiercache_local_entries ");
    sb_u64(&b, all.local_entries);
    sb_str(&b, "\n");
    sb_header(&b, "tiercache_local_bytes", "Bytes held by the local tier.", "gauge", "");
    sb_str(&b, "tiercache_local_bytes ");
    sb_u64(&b, all.local_bytes);
    sb_str(&b, "\n");
    sb_header(&b, "tiercache_invalidation_link_failures",
              "Times the invalidation link went down (local tier bypassed until back).",
              "counter", "_total");
    sb_str(&b, "tiercache_invalidation_link_failures_total ");
    sb_u64(&b, TC_READ(tc__cache_counters(c), link_failures));
    sb_str(&b, "\n");
    sb_header(&b, "tiercache_invalidations_malformed",
              "Malformed invalidation messages ignored.", "counter", "_total");
    sb_str(&b, "tiercache_invalidations_malformed_total ");
    sb_u64(&b, TC_READ(tc__cache_counters(c), inval_malformed));
    sb_str(&b, "\n");
    tc__free(s);
    if (b.failed) {
        tc__free(b.p);
        return TC_ERR_NOMEM;
    }
    *text = b.p;
    return TC_OK;
}
