/*
 * Shadow reads (shadow.h): the sample queue and the worker thread that checks samples
 * against Redis.
 *
 * What a sample carries: the key, the key's hash, a digest of the bytes served (XXH3-64 of
 * the caller-visible bytes, with the "does not exist" flag folded in) and when it was
 * served. The digest is computed on the sampled hit from the borrowed value rather than
 * kept with every entry: a fill would otherwise pay a hash over every value and each entry
 * 8 more bytes, for the one hit in shadow_rate that needs it; a sampled hit pays one XXH3
 * pass over its value (about 1 ns per 16 bytes), amortised over shadow_rate hits. The tier
 * keeps no store time per entry (only its expiry), so the age reported with a divergence
 * is a lower bound: the time from the sampled hit to the re-check that confirmed it.
 *
 * Why a thread of its own and not the subscriber's loop: the check is a Redis GET that may
 * take up to command_timeout_ms, and the subscriber must never be held up by one (its
 * heartbeat and the invalidations it applies are the very thing being checked); there is
 * no subscriber in TC_COHERENCE_NONE either.
 *
 * The check. First read: Redis equal to the digest is an agreement. Otherwise the sample
 * waits (in a fixed array the worker alone touches) until the staleness bound has passed
 * (2 x heartbeat_ms + command_timeout_ms: the silent-link window plus the time our own
 * GET may have taken; local_ttl_ms in TC_COHERENCE_NONE), then: Redis is read again and
 * the tier looked up. It is a divergence only if Redis still holds what the first read
 * saw (so the write that made the difference landed before the first read, at least the
 * bound ago, and no write is in flight), the tier still holds the served bytes, and the
 * tier may answer (a tier bypassed for a broken link is flushed before it is trusted
 * again). If Redis changed meanwhile, a write was in flight: the check is re-armed with
 * the new value, at most SHADOW_REARMS times. A key absent from Redis counts only in the
 * tracking modes: in broadcast and none, Redis's own expiries and evictions are not
 * reported to anybody, and local_ttl_ms bounds them by design.
 *
 * Counted per key type: sampled (every sample the worker took), agreed, diverged; the rest
 * of sampled is inconclusive (Redis unreachable, the key gone from Redis where that is not
 * reported, Redis kept changing, the re-check array full). Drops are cache-wide.
 *
 * Locks: mu (a leaf) guards the queue and the stop flag; the worker never holds it while it
 * reads Redis, looks up the tier or logs.
 */
#include "config.h"

#include "shadow.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cache.h"
#include "format.h"
#include "key.h"

#define SHADOW_REARMS 3
#define DIGEST_ABSENT 0 /* a key Redis does not hold; a real digest of 0 is made 1 */

_Thread_local uint64_t tc__shadow_rng __attribute__((tls_model("initial-exec")));

/* One sample; key is max_key_len + 1 bytes. In the queue, or waiting for its re-check. */
typedef struct sample {
    uint64_t h;
    uint64_t digest;   /* of the served copy */
    uint64_t redis;    /* pending: what Redis held at the last read */
    int64_t served_ns; /* when the hit was served */
    int64_t due_ns;    /* pending: when to re-check */
    int rearms;        /* pending: re-checks re-armed because Redis changed */
    bool used;         /* pending: the slot holds a sample */
    size_t klen;
    char *key;
} sample;

struct tc_shadow {
    tc_cache *c;
    pthread_mutex_t mu;
    pthread_cond_t cv;             /* the worker sleeps here (CLOCK_MONOTONIC) */
    bool stop;                     /* mu */
    bool sleeping;                 /* mu: the worker waits for a sample (signal only then) */
    size_t head, count, max_count; /* mu: the queue ring */
    sample queue[TC_SHADOW_QUEUE];
    sample pending[TC_SHADOW_PENDING]; /* the worker's */
    size_t npending;                   /* mu, for tc__shadow_idle */
    bool busy;                         /* mu: the worker holds a sample */
    int64_t bound_ns;
    const char *mode;
    pthread_t thread;
    char *keys; /* one block for every sample's key */
};

uint64_t tc__shadow_threshold(unsigned rate)
{
    return rate <= 1 ? UINT64_MAX : UINT64_MAX / rate;
}

static uint64_t digest(unsigned flags, const void *data, size_t len)
{
    uint64_t d = tc__key_hash(data, len) ^ ((flags & TC_REF_NEGATIVE) ? 0x9e3779b97f4a7c15ull : 0);
    return d == DIGEST_ABSENT ? 1 : d;
}

void tc__shadow_offer(tc_shadow *s, const char *key, size_t klen, unsigned flags, const void *data,
                      size_t len)
{
    uint64_t d = digest(flags, data, len);
    if (pthread_mutex_trylock(&s->mu) != 0) {
        TC_COUNT(tc__cache_counters(s->c), shadow_dropped);
        return;
    }
    if (s->count == TC_SHADOW_QUEUE || s->stop) {
        pthread_mutex_unlock(&s->mu);
        TC_COUNT(tc__cache_counters(s->c), shadow_dropped);
        return;
    }
    sample *q = &s->queue[(s->head + s->count) % TC_SHADOW_QUEUE];
    q->h = tc__key_hash(key, klen);
    q->digest = d;
    q->served_ns = tc__now_coarse_ns();
    q->klen = klen;
    memcpy(q->key, key, klen);
    q->key[klen] = '\0';
    s->count++;
    if (s->count > s->max_count)
        s->max_count = s->count;
    bool wake = s->sleeping;
    s->sleeping = false;
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(&s->cv);
}

/* Reads key from Redis: TC_OK with *d the digest of its value (DIGEST_ABSENT if absent),
 * or the error. */
static tc_status redis_digest(tc_shadow *s, const sample *p, uint64_t *d)
{
    tc_cache *c = s->c;
    char small[512];
    size_t cap = tc__cache_rkey_len(c, p->klen) + 1;
    char *buf = cap <= sizeof small ? small : tc__malloc(cap);
    if (!buf)
        return TC_ERR_NOMEM;
    size_t rlen = tc__cache_rkey(c, p->key, p->klen, buf, cap);
    tc_ref *r = NULL;
    tc_status st = tc__remote_get(tc__cache_remote(c), buf, rlen, &r, NULL);
    if (buf != small)
        tc__free(buf);
    if (st == TC_MISS) {
        *d = DIGEST_ABSENT;
        return TC_OK;
    }
    if (st != TC_OK)
        return st;
    tc__fmt_decode(r);
    *d = digest(r->flags, tc__ref_data(r), r->len);
    tc__ref_drop(r);
    return TC_OK;
}

/* Whether a key absent from Redis while the tier holds a copy is a difference worth
 * counting: only where Redis reports its expiries and evictions. */
static bool absent_counts(const tc_shadow *s)
{
    tc_coherence m = tc__cache_options(s->c)->coherence;
    return m == TC_COHERENCE_TRACKING || m == TC_COHERENCE_TARGETED;
}

static void count(tc_shadow *s, const sample *p, bool agreed, bool diverged)
{
    tc_counters *n = tc__key_counters(s->c, p->key, p->klen);
    if (agreed)
        TC_COUNT(n, shadow_agreed);
    if (diverged)
        TC_COUNT(n, shadow_diverged);
}

/* The first read of a sample taken off the queue. */
static void check_first(tc_shadow *s, const sample *q)
{
    TC_COUNT(tc__key_counters(s->c, q->key, q->klen), shadow_sampled);
    uint64_t d;
    if (redis_digest(s, q, &d) != TC_OK)
        return; /* inconclusive: Redis could not say */
    if (d == q->digest) {
        count(s, q, true, false);
        return;
    }
    if (d == DIGEST_ABSENT && !absent_counts(s))
        return;
    for (size_t i = 0; i < TC_SHADOW_PENDING; i++) {
        sample *p = &s->pending[i];
        if (p->used)
            continue;
        char *key = p->key;
        *p = *q;
        p->key = key;
        memcpy(p->key, q->key, q->klen + 1);
        p->redis = d;
        p->due_ns = tc__now_ns() + s->bound_ns;
        p->rearms = 0;
        p->used = true;
        pthread_mutex_lock(&s->mu);
        s->npending++;
        pthread_mutex_unlock(&s->mu);
        return;
    }
    /* The re-check array is full: inconclusive. */
}

static void pending_done(tc_shadow *s, sample *p)
{
    p->used = false;
    pthread_mutex_lock(&s->mu);
    s->npending--;
    pthread_mutex_unlock(&s->mu);
}

/* The re-check of a difference, once the bound has passed. */
static void recheck(tc_shadow *s, sample *p)
{
    tc_cache *c = s->c;
    uint64_t d;
    if (redis_digest(s, p, &d) != TC_OK) {
        pending_done(s, p); /* inconclusive */
        return;
    }
    if (d == p->digest) {
        count(s, p, true, false);
        pending_done(s, p);
        return;
    }
    if (d != p->redis) {
        /* Redis changed since the last read: a write was in flight. */
        if (++p->rearms > SHADOW_REARMS || (d == DIGEST_ABSENT && !absent_counts(s))) {
            pending_done(s, p);
            return;
        }
        p->redis = d;
        p->due_ns = tc__now_ns() + s->bound_ns;
        return;
    }
    /* Redis has held something else for at least the bound. Is the served copy still
     * what the tier answers with? */
    tc_ref *r = NULL;
    bool held = tc__cache_local_usable(c) &&
                tc__local_get(tc__cache_local(c), p->h, p->key, p->klen, tc__now_ns(), &r);
    bool same = held && digest(r->flags, tc__ref_data(r), r->len) == p->digest;
    tc__ref_drop(r);
    if (!same) {
        count(s, p, true, false); /* the tier let go in time */
        pending_done(s, p);
        return;
    }
    tc__local_invalidate(tc__cache_local(c), p->h);
    count(s, p, false, true);
    char type[256];
    size_t tlen = tc__key_type_len(p->key, p->klen);
    if (tlen >= sizeof type)
        tlen = sizeof type - 1;
    memcpy(type, p->key, tlen);
    type[tlen] = '\0';
    tc__log(tc__cache_log(c), TC_LOG_WARN,
            "shadow read: key \"%s\" (type %s) served from the local tier differs from Redis "
            "past the staleness bound (coherence %s, bound %" PRId64 " ms); the copy had been "
            "held at least %" PRId64 " ms; dropped from the local tier",
            p->key, type, s->mode, s->bound_ns / 1000000, (tc__now_ns() - p->served_ns) / 1000000);
    pending_done(s, p);
}

/* The earliest re-check due, or INT64_MAX. */
static int64_t next_due(const tc_shadow *s)
{
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < TC_SHADOW_PENDING; i++)
        if (s->pending[i].used && s->pending[i].due_ns < due)
            due = s->pending[i].due_ns;
    return due;
}

static void *worker(void *arg)
{
    tc_shadow *s = arg;
    char *key = tc__malloc(tc__cache_options(s->c)->max_key_len + 1);
    sample q = {.key = key};
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        if (s->count > 0 && key) {
            sample *h = &s->queue[s->head];
            q.h = h->h;
            q.digest = h->digest;
            q.served_ns = h->served_ns;
            q.klen = h->klen;
            memcpy(q.key, h->key, h->klen + 1);
            s->head = (s->head + 1) % TC_SHADOW_QUEUE;
            s->count--;
            s->busy = true;
            pthread_mutex_unlock(&s->mu);
            check_first(s, &q);
            pthread_mutex_lock(&s->mu);
            s->busy = false;
            continue;
        }
        int64_t due = next_due(s);
        int64_t now = tc__now_ns();
        if (due <= now) {
            pthread_mutex_unlock(&s->mu);
            for (size_t i = 0; i < TC_SHADOW_PENDING; i++)
                if (s->pending[i].used && s->pending[i].due_ns <= now)
                    recheck(s, &s->pending[i]);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        s->sleeping = true;
        if (due == INT64_MAX) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t wait = due - now;
            ts.tv_sec += wait / 1000000000;
            ts.tv_nsec += wait % 1000000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        }
        s->sleeping = false;
    }
    pthread_mutex_unlock(&s->mu);
    tc__free(key);
    return NULL;
}

static const char *mode_name(tc_coherence m)
{
    switch (m) {
    case TC_COHERENCE_BROADCAST:
        return "broadcast";
    case TC_COHERENCE_TRACKING:
        return "tracking";
    case TC_COHERENCE_TARGETED:
        return "targeted";
    case TC_COHERENCE_NONE:
        return "none";
    }
    return "unknown";
}

static void shadow_free(tc_shadow *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    tc__free(s->keys);
    tc__free(s);
}

tc_status tc__shadow_start(tc_cache *c, tc_shadow **out)
{
    *out = NULL;
    const tc_options *o = tc__cache_options(c);
    size_t stride = o->max_key_len + 1;
    tc_shadow *s = tc__calloc(1, sizeof *s);
    if (!s)
        return TC_ERR_NOMEM;
    s->keys = tc__calloc(TC_SHADOW_QUEUE + TC_SHADOW_PENDING, stride);
    if (!s->keys) {
        tc__free(s);
        return TC_ERR_NOMEM;
    }
    for (size_t i = 0; i < TC_SHADOW_QUEUE; i++)
        s->queue[i].key = s->keys + i * stride;
    for (size_t i = 0; i < TC_SHADOW_PENDING; i++)
        s->pending[i].key = s->keys + (TC_SHADOW_QUEUE + i) * stride;
    s->c = c;
    s->mode = mode_name(o->coherence);
    s->bound_ns = o->coherence == TC_COHERENCE_NONE
                      ? (int64_t)o->local_ttl_ms * 1000000
                      : ((int64_t)2 * o->heartbeat_ms + o->command_timeout_ms) * 1000000;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e != 0) {
        tc__free(s->keys);
        tc__free(s);
        return TC_ERR_NOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    if (pthread_create(&s->thread, NULL, worker, s) != 0) {
        shadow_free(s);
        return TC_ERR_IO;
    }
    *out = s;
    return TC_OK;
}

void tc__shadow_stop(tc_shadow *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv);
    pthread_join(s->thread, NULL);
    shadow_free(s);
}

void tc__shadow_forget(tc_shadow *s)
{
    if (!s)
        return;
    if (pthread_mutex_trylock(&s->mu) != 0)
        return; /* a thread of the parent held it at the fork: leave it */
    pthread_mutex_unlock(&s->mu);
    /* Not destroyed: the parent's worker may have been waiting on the condition variable at
     * the fork, and glibc's destroy would wait for it. The memory is only memory. */
    tc__free(s->keys);
    tc__free(s);
}

size_t tc__shadow_queue_max(tc_shadow *s)
{
    pthread_mutex_lock(&s->mu);
    size_t m = s->max_count;
    pthread_mutex_unlock(&s->mu);
    return m;
}

bool tc__shadow_idle(tc_shadow *s)
{
    pthread_mutex_lock(&s->mu);
    bool idle = s->count == 0 && s->npending == 0 && !s->busy;
    pthread_mutex_unlock(&s->mu);
    return idle;
}
