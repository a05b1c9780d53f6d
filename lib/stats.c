/*
 * What the library reports about itself: the key-type table, tc_stats_get(_sized),
 * tc_stats_foreach and the Prometheus text exposition of the metrics, and tc_version.
 *
 * The type table is an open-addressing hash of at most TC_KEY_TYPES_MAX names. Insertion
 * takes the table mutex, fills a type completely, then publishes its slot with a release
 * store; lookups read slots with acquire loads and take no lock. A type is never removed
 * while the cache lives. Id 0 is "other", for keys once the table is full.
 *
 * tc_stats grows at its end only. The exported tc_stats_get writes its first layout's 14
 * fields and nothing more, for programs built before it grew; newer ones reach
 * tc_stats_get_sized through the header's macro and say how large their struct is.
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
    atomic_uint count;        /* ids in use, "other" included */
    atomic_uint slots[SLOTS]; /* id + 1 of the type hashed there; 0: empty */
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
    unsigned slot = SLOTS; /* find sets it when it returns 0 */
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

/* The first layout of tc_stats (no size was passed then): what programs built against the
 * first header allocate, and all that the exported tc_stats_get may write. */
#define STATS_FIRST_SIZE offsetof(tc_stats, local_rejects)
_Static_assert(STATS_FIRST_SIZE == 14 * sizeof(uint64_t), "the first layout had 14 fields");
_Static_assert(sizeof(tc_stats) % sizeof(uint64_t) == 0, "tc_stats holds uint64_t only");

/* The local tier's counters per type id: hits, evictions and rejects. */
typedef struct local_types {
    uint64_t hits[TC_LOCAL_TYPES], evictions[TC_LOCAL_TYPES], rejects[TC_LOCAL_TYPES];
} local_types;

/* Adds the counters of n into out. A type's cache-wide counters are 0, and the cache's own
 * counters hold what no key type owns (a flush-all message) and the cache-wide ones. */
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
    out->local_bypasses += TC_READ(n, local_bypasses);
    out->full_flushes += TC_READ(n, full_flushes);
    out->inval_link_failures += TC_READ(n, link_failures);
    out->inval_malformed += TC_READ(n, inval_malformed);
    out->shadow_sampled += TC_READ(n, shadow_sampled);
    out->shadow_agreed += TC_READ(n, shadow_agreed);
    out->shadow_diverged += TC_READ(n, shadow_diverged);
    out->shadow_dropped += TC_READ(n, shadow_dropped);
    out->reconciles += TC_READ(n, reconciles);
}

/* Every counter of the cache, in this library's full layout. */
static void snapshot(tc_cache *c, tc_stats *out)
{
    memset(out, 0, sizeof *out);
    tc_local_stats ls;
    tc__local_stats(tc__cache_local(c), &ls);
    out->local_hits = ls.hits;
    out->local_evictions = ls.evictions;
    out->local_entries = ls.entries;
    out->local_bytes = ls.bytes;
    out->local_rejects = ls.rejects;
    add_counters(out, tc__cache_counters(c));
    uint32_t n = tc__types_count(tc__cache_types(c));
    for (uint32_t id = 0; id < n; id++)
        add_counters(out, tc__type_counters(tc__cache_types(c), id));
}

TC_API void tc_stats_get_sized(tc_cache *c, tc_stats *out, size_t size)
{
    if (!out)
        return;
    tc_stats s;
    tc__cache_after_fork(c);
    if (c)
        snapshot(c, &s);
    else
        memset(&s, 0, sizeof s);
    /* Whole fields only, and nothing past size: an older caller's struct ends there. */
    memcpy(out, &s, size < sizeof s ? size - size % sizeof(uint64_t) : sizeof s);
    if (size > sizeof s) /* a newer caller's fields this library does not know of */
        memset((char *)out + sizeof s, 0, size - sizeof s);
}

/* The exported symbol that callers built against the first header reach; the header's
 * macro of the same name sends newer callers to tc_stats_get_sized. */
TC_API void(tc_stats_get)(tc_cache *c, tc_stats *out)
{
    tc_stats_get_sized(c, out, STATS_FIRST_SIZE);
}

/* Fills one stats record per key type; its local tier counters from lt. */
static void type_stats(tc_cache *c, uint32_t id, const local_types *lt, tc_stats *s)
{
    memset(s, 0, sizeof *s);
    add_counters(s, tc__type_counters(tc__cache_types(c), id));
    s->local_hits = lt->hits[id];
    s->local_evictions = lt->evictions[id];
    s->local_rejects = lt->rejects[id];
}

TC_API void tc_stats_foreach(tc_cache *c, tc_stats_fn fn, void *arg)
{
    if (!c || !fn)
        return;
    tc__cache_after_fork(c);
    local_types lt;
    tc__local_type_stats(tc__cache_local(c), lt.hits, lt.evictions, lt.rejects);
    static const tc_stats zero;
    uint32_t n = tc__types_count(tc__cache_types(c));
    for (uint32_t id = 0; id < n; id++) {
        tc_stats s;
        type_stats(c, id, &lt, &s);
        if (id == 0 && memcmp(&s, &zero, sizeof s) == 0)
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
    size_t len = s[0] < 0x80             ? 1
                 : (s[0] & 0xe0) == 0xc0 ? 2
                 : (s[0] & 0xf0) == 0xe0 ? 3
                 : (s[0] & 0xf8) == 0xf0 ? 4
                                         : 0;
    if (len == 0 || len > n || (len == 2 && s[0] < 0xc2) || (len == 4 && s[0] > 0xf4))
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

/* The key_type label of a type, as the exposition format wants it. Two types must never
 * share a label (the format forbids duplicate series), so the value names the type's bytes
 * one-to-one: valid UTF-8 is kept, a byte that is not UTF-8 is written \xNN (label values
 * are UTF-8) and a backslash \\, so no other type can read the same; a type named "other"
 * (a one-part key) is written \x6fther, apart from the overflow bucket (id 0). Then the
 * format's own escapes: backslash and double quote (keys hold no newline). */
static void sb_label(sbuf *b, const char *v, bool overflow)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v);
    if (!overflow && strcmp(v, "other") == 0) {
        sb_str(b, "\\\\x6f");
        s++;
        n--;
    }
    while (n > 0) {
        size_t len = utf8_seq(s, n);
        if (len == 0) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\\\x%02x", *s);
            sb_str(b, esc);
            len = 1;
        } else if (*s == '\\') {
            sb_str(b, "\\\\\\\\");
        } else if (*s == '"') {
            sb_str(b, "\\\"");
        } else {
            sb_put(b, (const char *)s, len);
        }
        s += len;
        n -= len;
    }
}

typedef struct metric {
    const char *name, *help, *type; /* a "counter" is exposed as name + "_total" */
    size_t offset;                  /* of the field in tc_stats */
} metric;

#define M(field, type, help)                                                                       \
    {                                                                                              \
        "tiercache_" #field, help, type, offsetof(tc_stats, field)                                 \
    }
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
    M(local_rejects, "counter",
      "Values the local tier did not keep: refused by admission, or too large for it."),
    M(local_bypasses, "counter",
      "Reads that skipped the local tier because the invalidation link was not healthy."),
    M(shadow_sampled, "counter", "Sampled local hits checked against Redis (shadow reads)."),
    M(shadow_agreed, "counter", "Sampled local hits whose copy equalled Redis."),
    M(shadow_diverged, "counter",
      "Sampled local hits whose copy still differed from Redis after the staleness bound."),
};
#undef M

/* Without a key_type label. The names of the last two predate their tc_stats fields. */
static const metric cache_wide[] = {
    {"tiercache_local_entries", "Entries held by the local tier.", "gauge",
     offsetof(tc_stats, local_entries)},
    {"tiercache_local_bytes", "Bytes held by the local tier.", "gauge",
     offsetof(tc_stats, local_bytes)},
    {"tiercache_invalidation_link_failures",
     "Times the invalidation link went down (local tier bypassed until back).", "counter",
     offsetof(tc_stats, inval_link_failures)},
    {"tiercache_invalidations_malformed", "Malformed invalidation messages ignored.", "counter",
     offsetof(tc_stats, inval_malformed)},
    {"tiercache_full_flushes",
     "Times the whole local tier was flushed: the invalidation link was re-established, or "
     "another instance flushed everything.",
     "counter", offsetof(tc_stats, full_flushes)},
    {"tiercache_shadow_dropped",
     "Sampled local hits not checked because the shadow queue was full.", "counter",
     offsetof(tc_stats, shadow_dropped)},
    {"tiercache_reconciles",
     "Times the invalidation link came back and the local tier was kept (only the sequence "
     "groups written meanwhile were dropped).",
     "counter", offsetof(tc_stats, reconciles)},
};

static uint64_t field_of(const tc_stats *s, const metric *m)
{
    uint64_t v;
    memcpy(&v, (const char *)s + m->offset, sizeof v);
    return v;
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%llu", (unsigned long long)v);
    sb_put(b, num, (size_t)n);
}

/* The HELP and TYPE lines of m; returns the suffix of its samples' name. */
static const char *sb_header(sbuf *b, const metric *m)
{
    const char *suffix = strcmp(m->type, "counter") == 0 ? "_total" : "";
    sb_str(b, "# HELP ");
    sb_str(b, m->name);
    sb_str(b, suffix);
    sb_str(b, " ");
    sb_str(b, m->help);
    sb_str(b, "\n# TYPE ");
    sb_str(b, m->name);
    sb_str(b, suffix);
    sb_str(b, " ");
    sb_str(b, m->type);
    sb_str(b, "\n");
    return suffix;
}

TC_API tc_status tc_stats_prometheus(tc_cache *c, char **text)
{
    if (text)
        *text = NULL;
    if (!c || !text)
        return TC_ERR_ARG;
    tc__cache_after_fork(c);
    local_types lt;
    tc__local_type_stats(tc__cache_local(c), lt.hits, lt.evictions, lt.rejects);
    uint32_t n = tc__types_count(tc__cache_types(c));
    tc_stats *s = tc__calloc(n, sizeof *s);
    if (!s)
        return TC_ERR_NOMEM;
    for (uint32_t id = 0; id < n; id++)
        type_stats(c, id, &lt, &s[id]);
    sbuf b = {0};
    for (size_t m = 0; m < sizeof per_type / sizeof per_type[0]; m++) {
        const char *suffix = sb_header(&b, &per_type[m]);
        for (uint32_t id = 0; id < n; id++) {
            sb_str(&b, per_type[m].name);
            sb_str(&b, suffix);
            sb_str(&b, "{key_type=\"");
            sb_label(&b, tc__type_name(tc__cache_types(c), id), id == TC_KEY_TYPE_OTHER);
            sb_str(&b, "\"} ");
            sb_u64(&b, field_of(&s[id], &per_type[m]));
            sb_str(&b, "\n");
        }
    }
    tc_stats all;
    snapshot(c, &all);
    for (size_t m = 0; m < sizeof cache_wide / sizeof cache_wide[0]; m++) {
        const char *suffix = sb_header(&b, &cache_wide[m]);
        sb_str(&b, cache_wide[m].name);
        sb_str(&b, suffix);
        sb_str(&b, " ");
        sb_u64(&b, field_of(&all, &cache_wide[m]));
        sb_str(&b, "\n");
    }
    tc__free(s);
    if (b.failed) {
        tc__free(b.p);
        return TC_ERR_NOMEM;
    }
    *text = b.p;
    return TC_OK;
}

/* ------------------------------------------------------------------ version */

#define STR_(x) #x
#define STR(x) STR_(x)

TC_API const char *tc_version(void)
{
    return STR(TC_VERSION_MAJOR) "." STR(TC_VERSION_MINOR) "." STR(TC_VERSION_PATCH);
}
