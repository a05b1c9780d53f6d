/*
 * tc_get_or_set: local tier -> Redis -> the loader, with stampede protection (see
 * docs/stampede.md), and the loader's buffer.
 *
 * One load per key at a time in a process: the caller that finds no fresh value joins the
 * key's flight (flight.h); its leader reads Redis and, on a miss, takes the key's Redis lock
 * ("<rediskey>:lock", SET NX PX lock_ttl_ms, random token); the lock's winner checks Redis
 * once more (the previous winner may have written and released in between), loads, writes
 * through tc__cache_store (which publishes the invalidation) and releases the lock by
 * compare-and-delete. A leader that lost the lock waits for the winner's value: woken by the
 * invalidation that the winner's write publishes (the subscriber calls
 * tc__flights_notify), re-reading Redis at least every POLL_MS as a fallback, and trying the
 * lock again each time, so that it takes over when the lock expires without a value. Its
 * waiters share whatever it ends with.
 *
 * Stored values carry a stored-format header (TC_FMT_XFETCH, format.h): the wall-clock
 * expiry and how long the load took (delta). A hit on such a value is refreshed early, by
 * one caller, with the XFetch rule (Vattani, Chierichetti, Lowenstein, VLDB 2015):
 *     refresh if  now - delta * beta * ln(u) >= expiry,  u uniform in (0, 1].
 * The caller who draws it reloads synchronously (through the same lock) and returns the
 * new value; callers meanwhile find the flight busy and return the current value.
 *
 * With stale_if_error_ms, values are kept in Redis that much past their (header) expiry; a
 * caller who holds such an expired copy reloads it and returns the copy if the reload fails
 * within the window.
 *
 * Locks: none held by this module while it calls the loader, Redis or the log; the flight
 * table's mutex and the buffer's mutex are taken only inside short functions.
 */
#include "config.h"

#include "cache.h"

#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "error.h"
#include "flight.h"
#include "format.h"
#include "key.h"
#include "lock.h"

#define POLL_MS 50 /* fallback re-read of Redis while another process loads */
#define LOCK_SUFFIX ":lock"
#define LOCK_SUFFIX_LEN 5
#define LKEY_STACK 512
#define BUF_MIN_CAP 256
#define XFETCH_CUTOFF 40.0 /* exp(-40) < 1e-17: no draw needed further from expiry */

/* ------------------------------------------------------------------ the loader's buffer */

struct tc_buf {
    pthread_mutex_t mu; /* guards everything below */
    tc_ref *r;          /* the value so far (not shared until the load ends); NULL: empty */
    size_t max;         /* max_value_bytes */
    tc_status st;       /* sticky: the first append failure fails the load */
};

/* Makes room for len more bytes. Caller holds b->mu. */
static tc_status buf_reserve_locked(tc_buf *b, size_t len)
{
    size_t used = b->r ? b->r->len : 0;
    if (len > b->max - used)
        return b->st = TC_ERR_TOO_BIG;
    size_t need = used + len, cap = b->r ? b->r->u.cap : 0;
    if (need <= cap)
        return TC_OK;
    size_t ncap = cap ? cap : BUF_MIN_CAP;
    while (ncap < need)
        ncap *= 2; /* need <= max <= 512 MiB: no overflow */
    if (ncap > b->max)
        ncap = b->max;
    tc_ref *n = b->r ? tc__realloc(b->r, TC_REF_SIZE(ncap)) : tc__ref_new(ncap);
    if (!n)
        return b->st = TC_ERR_NOMEM;
    n->u.cap = (uint32_t)ncap; /* data (buf + off, off 0) moved with the block */
    b->r = n;
    return TC_OK;
}

TC_API tc_status tc_buf_append(tc_buf *b, const void *data, size_t len)
{
    if (!b || (!data && len > 0))
        return TC_ERR_ARG;
    pthread_mutex_lock(&b->mu);
    tc_status st = b->st;
    if (st == TC_OK && len > 0)
        st = buf_reserve_locked(b, len);
    if (st == TC_OK && len > 0) {
        memcpy(b->r->buf + b->r->len, data, len);
        b->r->len += len;
        b->r->buf[b->r->len] = '\0'; /* room: alloc + 1 bytes */
    }
    pthread_mutex_unlock(&b->mu);
    return st;
}

/* ------------------------------------------------------------------ one call */

typedef struct req {
    tc_cache *c;
    const char *key;
    size_t klen;
    uint64_t h;
    tc_loader_fn fn;
    void *arg;
    int ttl;       /* > 0, TC_TTL_FOREVER, or 0 (load, store nothing) */
    tc_ref *stale; /* an expired copy, kept in case the reload fails; owned */
} req;

typedef tc_flight_result result;

/* The counters of the request's key type: what tc_stats reports per type. */
static tc_counters *type_counters(const req *q)
{
    return tc__key_counters(q->c, q->key, q->klen);
}

static result res_of(tc_status st, tc_ref *val)
{
    result r = {.st = st, .val = val, .stale = false};
    return r;
}

static void keep_stale(req *q, tc_ref *r)
{
    tc__ref_drop(q->stale);
    q->stale = r;
}

/* A Redis key with a suffix, on the stack when it fits. */
typedef struct lkey {
    char *s;
    size_t len;
    char small[LKEY_STACK];
} lkey;

static tc_status lkey_build(const req *q, lkey *k)
{
    size_t need = tc__cache_rkey_len(q->c, q->klen) + LOCK_SUFFIX_LEN + 1;
    k->s = need <= sizeof k->small ? k->small : tc__malloc(need);
    if (!k->s)
        return TC_ERR_NOMEM;
    k->len = tc__cache_rkey(q->c, q->key, q->klen, k->s, need);
    memcpy(k->s + k->len, LOCK_SUFFIX, LOCK_SUFFIX_LEN + 1);
    k->len += LOCK_SUFFIX_LEN;
    return TC_OK;
}

static void lkey_done(lkey *k)
{
    if (k->s != k->small)
        tc__free(k->s);
}

/* ------------------------------------------------------------------ freshness */

typedef enum verdict { V_FRESH, V_REFRESH, V_EXPIRED } verdict;

/* ln(u) for u in (0, 1] without libm: u = m * 2^e with m in [1, 2), and
 * ln(m) = 2 atanh(t), t = (m - 1) / (m + 1) in [0, 1/3), whose series converges fast. */
static double ln01(double u)
{
    uint64_t bits;
    memcpy(&bits, &u, sizeof bits);
    int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double m;
    memcpy(&m, &bits, sizeof m);
    double t = (m - 1) / (m + 1), t2 = t * t, term = t, sum = 0;
    for (int k = 1; k < 32; k += 2) {
        sum += term / k;
        term *= t2;
    }
    return e * 0.69314718055994530942 + 2 * sum;
}

static bool expired(const tc_ref *r)
{
    int64_t exp = tc__fmt_expiry_ms(r);
    return exp > 0 && tc__wall_ms() >= exp;
}

/* Fresh, due for an early refresh (drawn at random, XFetch), or past its expiry. Values
 * without an expiry in their header (written by tc_set, or FOREVER) are always fresh. */
static verdict judge(tc_cache *c, const tc_ref *r)
{
    const tc_options *o = tc__cache_options(c);
    int64_t exp = tc__fmt_expiry_ms(r);
    if (exp <= 0)
        return V_FRESH;
    int64_t gap = exp - tc__wall_ms();
    if (gap <= 0)
        return V_EXPIRED;
    uint32_t delta = tc__fmt_delta_ms(r);
    double scale = (double)(delta ? delta : 1) * o->xfetch_beta;
    if (!(scale > 0))
        return V_FRESH;
    double x = (double)gap / scale; /* refresh iff -ln(u) >= x: probability exp(-x) */
    if (x > XFETCH_CUTOFF)
        return V_FRESH;
    return -ln01(tc__flights_rand01(tc__cache_flights(c))) >= x ? V_REFRESH : V_FRESH;
}

/* May r be served after a failed reload? Within stale_if_error_ms of its expiry. */
static bool stale_usable(const tc_cache *c, const tc_ref *r)
{
    const tc_options *o = tc__cache_options(c);
    if (!r || (r->flags & TC_REF_NEGATIVE) || o->stale_if_error_ms <= 0)
        return false;
    int64_t exp = tc__fmt_expiry_ms(r);
    return exp <= 0 || tc__wall_ms() < exp + o->stale_if_error_ms;
}

/* ------------------------------------------------------------------ load and store */

/* Calls the loader (no lock of ours held). TC_OK with *out (the value, one reference) and
 * *delta_ms (how long it took, at least 1); TC_MISS; or the failure. */
static tc_status load_value(req *q, tc_ref **out, uint32_t *delta_ms)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    tc_buf b = {.r = NULL, .max = o->max_value_bytes, .st = TC_OK};
    pthread_mutex_init(&b.mu, NULL);
    TC_COUNT(type_counters(q), loads);
    int64_t t0 = tc__now_ns();
    tc_status ls = q->fn(q->arg, q->key, &b);
    int64_t ms = (tc__now_ns() - t0) / 1000000;
    pthread_mutex_destroy(&b.mu);
    *delta_ms = ms < 1 ? 1 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    if (ls == TC_OK && b.st == TC_OK && !b.r && !(b.r = tc__ref_new(0)))
        b.st = TC_ERR_NOMEM;
    if (ls == TC_OK && b.st == TC_OK) {
        *out = b.r;
        return TC_OK;
    }
    tc__ref_drop(b.r);
    if (b.st != TC_OK) { /* TC_ERR_TOO_BIG or TC_ERR_NOMEM: whatever the loader returned */
        TC_COUNT(type_counters(q), load_errors);
        return b.st;
    }
    if (ls == TC_MISS)
        return TC_MISS;
    TC_COUNT(type_counters(q), load_errors);
    tc__log(tc__cache_log(c), TC_LOG_WARN,
            "tc_get_or_set %s: the loader failed: it returned %d (%s), neither TC_OK nor "
            "TC_MISS; nothing is cached and the callers get TC_ERR_LOADER",
            q->key, (int)ls, tc__strerror(ls));
    return TC_ERR_LOADER;
}

/* Writes a loaded value with its early-refresh header. A failed write is logged and
 * otherwise ignored: the caller still gets the value. */
static void store_value(req *q, tc_ref *v, uint32_t delta_ms)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    tc_fmt_meta meta = {.flags = TC_FMT_XFETCH, .expiry_ms = 0, .delta_ms = delta_ms};
    const tc_fmt_meta *mp = NULL;
    int rttl = q->ttl;
    if (q->ttl > 0) {
        meta.expiry_ms = tc__wall_ms() + q->ttl;
        int64_t t = (int64_t)q->ttl + o->stale_if_error_ms;
        rttl = t > INT_MAX ? INT_MAX : (int)t;
        mp = &meta;
    }
    tc_status st = tc__cache_store(c, q->key, q->klen, tc__ref_data(v), v->len, mp, rttl);
    if (st != TC_OK)
        tc__log(tc__cache_log(c), TC_LOG_WARN, "get_or_set %s: loaded value not stored: %s", q->key,
                tc__strerror(st));
}

/* Caches the loader's "does not exist" for min(ttl, negative_ttl_ms). */
static void store_negative(req *q)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    int ttl = o->negative_ttl_ms;
    if (ttl == 0 || q->ttl == 0)
        return;
    if (q->ttl > 0 && q->ttl < ttl)
        ttl = q->ttl;
    tc_fmt_meta meta = {.flags = TC_FMT_NEGATIVE};
    tc_status st = tc__cache_store(c, q->key, q->klen, NULL, 0, &meta, ttl);
    if (st != TC_OK)
        tc__log(tc__cache_log(c), TC_LOG_WARN, "get_or_set %s: negative entry not stored: %s",
                q->key, tc__strerror(st));
}

static result load_and_store(req *q)
{
    tc_ref *v = NULL;
    uint32_t delta = 0;
    tc_status st = load_value(q, &v, &delta);
    if (st == TC_OK)
        store_value(q, v, delta);
    else if (st == TC_MISS)
        store_negative(q);
    return res_of(st, v);
}

/* What a Redis read found for a fill. */
typedef enum found {
    F_VALUE,    /* a live value (*out) */
    F_NEGATIVE, /* a cached "does not exist": the answer is TC_MISS */
    F_EXPIRED,  /* only a copy past its expiry (kept as q->stale) */
    F_ABSENT,   /* nothing */
    F_ERROR     /* Redis could not answer (*err) */
} found;

static found fetch_fresh(req *q, tc_ref **out, tc_status *err)
{
    tc_ref *r = NULL;
    *out = NULL;
    *err = tc__cache_fetch(q->c, q->h, q->key, q->klen, &r);
    if (*err == TC_MISS)
        return F_ABSENT;
    if (*err != TC_OK)
        return F_ERROR;
    if (r->flags & TC_REF_NEGATIVE) {
        tc__ref_drop(r);
        return F_NEGATIVE;
    }
    if (expired(r)) {
        keep_stale(q, r);
        return F_EXPIRED;
    }
    *out = r;
    return F_VALUE;
}

/* ------------------------------------------------------------------ the fill */

/* Holding the key's Redis lock: Redis once more (the previous holder may have written and
 * released between our read and our lock), then the loader. */
static result fill_holding_lock(req *q)
{
    tc_ref *r;
    tc_status err;
    switch (fetch_fresh(q, &r, &err)) {
    case F_VALUE:
        return res_of(TC_OK, r);
    case F_NEGATIVE:
        return res_of(TC_MISS, NULL);
    default:
        return load_and_store(q);
    }
}

/* The leader after a Redis miss: the cross-process lock, then load, or wait for the
 * process that holds it. f is the caller's flight, woken by invalidations of the key. */
static result fill_with_lock(req *q, tc_flight *f)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    lkey lk;
    char token[TC_LOCK_TOKEN_HEX + 1];
    if (lkey_build(q, &lk) != TC_OK)
        return res_of(TC_ERR_NOMEM, NULL);
    if (tc__lock_token(token) != TC_OK) { /* no randomness: load unprotected */
        lkey_done(&lk);
        return load_and_store(q);
    }
    const int64_t deadline = tc__deadline_after_ms(o->flight_wait_ms);
    uint64_t seen = 0; /* the flight's sequence when our last read began: 0 at creation */
    bool waited = false;
    result res;
    for (;;) {
        tc_status st = tc__lock_try(c, lk.s, lk.len, token, o->lock_ttl_ms);
        if (st == TC_OK) {
            res = fill_holding_lock(q);
            (void)tc__lock_unlock(c, lk.s, lk.len, token, NULL); /* else its TTL ends it */
            break;
        }
        if (st != TC_EXISTS) { /* Redis trouble: the loader still answers */
            res = load_and_store(q);
            break;
        }
        /* Another process loads: wait for its write's invalidation, or poll. */
        if (!waited) {
            TC_COUNT(type_counters(q), flight_waits);
            waited = true;
        }
        int64_t now = tc__now_ns();
        if (now >= deadline) {
            res = res_of(TC_ERR_TIMEOUT, NULL);
            break;
        }
        int64_t wake = now + (int64_t)POLL_MS * 1000000;
        tc__flight_wait_inval(tc__cache_flights(c), f, seen, wake < deadline ? wake : deadline);
        seen = tc__flight_inval_seq(tc__cache_flights(c), f);
        tc_ref *r;
        found fd = fetch_fresh(q, &r, &st);
        if (fd == F_VALUE || fd == F_NEGATIVE) {
            res = res_of(fd == F_VALUE ? TC_OK : TC_MISS, r);
            break;
        }
        if (fd == F_ERROR) {
            res = load_and_store(q);
            break;
        }
        /* Absent or expired: the holder is still at work, or died; try the lock again. */
    }
    lkey_done(&lk);
    return res;
}

/* Early refresh of cur, which the caller holds and keeps: as the flight's leader, one try
 * at the Redis lock (no wait: whoever holds it is refreshing), Redis once more, the loader.
 * Never an error: when the refresh cannot run or fails, the current value (still valid) is
 * the result. */
static result refresh_value(req *q, tc_ref *cur)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    lkey lk;
    char token[TC_LOCK_TOKEN_HEX + 1];
    tc__ref_hold(cur);
    result keep = res_of(TC_OK, cur);
    if (lkey_build(q, &lk) != TC_OK)
        return keep;
    if (tc__lock_token(token) != TC_OK ||
        tc__lock_try(c, lk.s, lk.len, token, o->lock_ttl_ms) != TC_OK) {
        lkey_done(&lk);
        return keep;
    }
    result res;
    tc_ref *r;
    tc_status err;
    found fd = fetch_fresh(q, &r, &err);
    if (fd == F_NEGATIVE) {
        res = res_of(TC_MISS, NULL);
    } else if (fd == F_VALUE && tc__fmt_expiry_ms(r) != tc__fmt_expiry_ms(cur)) {
        res = res_of(TC_OK, r); /* written since we read cur: already refreshed */
    } else {
        tc__ref_drop(r);
        TC_COUNT(tc__cache_counters(c), early_refreshes);
        res = load_and_store(q);
    }
    (void)tc__lock_unlock(c, lk.s, lk.len, token, NULL);
    lkey_done(&lk);
    if (res.st < 0)
        return keep; /* a failed refresh: cur has not expired yet */
    tc__ref_drop(cur);
    return res;
}

/* The flight's leader: Redis, then the lock and the loader. *refresh: the value found in
 * Redis is due for an early refresh, which the caller runs after finishing this flight, so
 * that its waiters get the current value now. */
static result lead(req *q, tc_flight *f, bool *refresh)
{
    tc_cache *c = q->c;
    tc_ref *r;
    tc_status err;
    switch (fetch_fresh(q, &r, &err)) {
    case F_VALUE:
        TC_COUNT(type_counters(q), remote_hits);
        *refresh = judge(c, r) == V_REFRESH;
        return res_of(TC_OK, r);
    case F_NEGATIVE:
        TC_COUNT(type_counters(q), remote_hits);
        return res_of(TC_MISS, NULL);
    case F_EXPIRED:
    case F_ABSENT:
        TC_COUNT(type_counters(q), misses);
        return fill_with_lock(q, f);
    case F_ERROR:
        break;
    }
    if (err == TC_ERR_NOMEM)
        return res_of(err, NULL);
    return load_and_store(q); /* Redis unusable: the loader still answers */
}

/* After a failed fill: a copy within stale_if_error_ms of its expiry, if there is one.
 * The caller's own expired copy first; else the local tier's copy, read even while the
 * tier is bypassed because Redis or the invalidation link is down: such a copy may have
 * missed invalidations during the outage, which is what serving stale on error accepts,
 * and it never outlives its Redis TTL (stale_if_error_ms included). */
static result stale_fallback(req *q, result res)
{
    tc_cache *c = q->c;
    const tc_options *o = tc__cache_options(c);
    if (res.st >= 0 || res.st == TC_ERR_ARG || o->stale_if_error_ms <= 0)
        return res;
    tc_ref *r = NULL;
    if (stale_usable(c, q->stale)) {
        r = q->stale;
        q->stale = NULL;
    } else if (tc__cache_local_peek(c, q->h, q->key, q->klen, &r) && !stale_usable(c, r)) {
        tc__ref_drop(r);
        r = NULL;
    }
    if (!r)
        return res;
    result s = {.st = TC_OK, .val = r, .stale = true};
    return s;
}

/* Hands the caller r and its reference. */
static tc_status give(tc_value *out, tc_ref *r)
{
    tc__value_give(out, r, NULL);
    return TC_OK;
}

/* The caller's answer from a fill's result (whose reference it takes over). */
static tc_status answer(req *q, result res, tc_value *out)
{
    keep_stale(q, NULL);
    if (res.st != TC_OK)
        return res.st;
    if (res.stale)
        TC_COUNT(tc__cache_counters(q->c), stale_served);
    return give(out, res.val);
}

/* A hit due for an early refresh: this caller refreshes if no fill of the key is running
 * in this process; otherwise (someone is on it) it returns the current value at once. */
static tc_status refresh_from_hit(req *q, tc_ref *cur, tc_value *out)
{
    tc_cache *c = q->c;
    tc_flight *f = tc__flight_try_lead(tc__cache_flights(c), q->h, q->key, q->klen);
    if (!f)
        return give(out, cur);
    result res = refresh_value(q, cur);
    tc__flight_finish(tc__cache_flights(c), f, &res);
    tc__ref_drop(cur);
    keep_stale(q, NULL);
    return res.st == TC_OK ? give(out, res.val) : res.st;
}

TC_API tc_status tc_get_or_set(tc_cache *c, const char *key, tc_loader_fn fn, void *arg, int ttl_ms,
                               tc_value *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    tc_status st = tc__cache_check_open(c);
    if (st != TC_OK)
        return st;
    const tc_options *o = tc__cache_options(c);
    tc_flights *flights = tc__cache_flights(c);
    size_t klen;
    if (!out || !fn || !tc__key_valid(key, o->max_key_len, &klen))
        return TC_ERR_ARG;
    int ttl = ttl_ms == TC_TTL_DEFAULT ? o->remote_ttl_ms : ttl_ms;
    if (ttl < 0 && ttl != TC_TTL_FOREVER)
        return TC_ERR_ARG;
    req q = {.c = c,
             .key = key,
             .klen = klen,
             .h = tc__key_hash(key, klen),
             .fn = fn,
             .arg = arg,
             .ttl = ttl,
             .stale = NULL};

    tc_ref *r = NULL;
    tc_hazard *slot;
    /* The common answer, a fresh local hit, is borrowed like tc_get's (no count taken);
     * the others need a reference they can keep (NULL if the value went meanwhile: then
     * this is a miss). Judged once: the verdict is a random draw (XFetch). */
    if (tc__cache_local_get(c, q.h, key, klen, &r, &slot)) {
        if (r->flags & TC_REF_NEGATIVE) {
            tc__local_unborrow(r, slot);
            return TC_MISS;
        }
        verdict v = judge(c, r);
        if (v == V_FRESH) {
            tc__value_give(out, r, slot);
            return TC_OK;
        }
        r = tc__local_keep(r, slot);
        if (r && v == V_REFRESH)
            return refresh_from_hit(&q, r, out);
        q.stale = r; /* V_EXPIRED */
    }

    result res;
    tc_flight_role role;
    tc_flight *f = tc__flight_join(flights, q.h, key, klen, false, &role);
    if (role == TC_FLIGHT_REFRESHING) {
        /* Another caller refreshes early, so the value has not expired: read it from Redis
         * rather than wait for the refresh. (The refresher's write invalidates our local
         * copy a round trip before the new value arrives: this is that window.) */
        found fd = fetch_fresh(&q, &r, &res.st);
        if (fd == F_VALUE || fd == F_NEGATIVE) {
            TC_COUNT(type_counters(&q), remote_hits);
            keep_stale(&q, NULL);
            return fd == F_VALUE ? give(out, r) : TC_MISS;
        }
        f = tc__flight_join(flights, q.h, key, klen, true, &role);
    }
    if (!f) {
        res = res_of(TC_ERR_NOMEM, NULL);
    } else if (role == TC_FLIGHT_LEADER) {
        bool refresh = false;
        res = stale_fallback(&q, lead(&q, f, &refresh));
        tc__flight_finish(flights, f, &res);
        if (refresh) {
            keep_stale(&q, NULL);
            return refresh_from_hit(&q, res.val, out);
        }
    } else {
        TC_COUNT(type_counters(&q), flight_waits);
        tc__flight_wait(flights, f, tc__deadline_after_ms(o->flight_wait_ms), &res);
        res = stale_fallback(&q, res);
    }
    return answer(&q, res, out);
}
