/*
 * The single-flight table (see flight.h): a uthash table of the keys being filled in this
 * process, keyed by the full key (the 64-bit key hash picks the bucket; keys are compared
 * byte for byte, so two keys with one hash never share a fill).
 *
 * Locks: `mu` guards the table and every field of every flight marked "under mu". It is a
 * leaf lock: nothing else is taken while it is held, and no user callback runs under it.
 * Each flight has one condition variable (CLOCK_MONOTONIC, used with mu) on which both its
 * waiters (for `done`) and its leader (for `inval_seq`) sleep; every change is broadcast.
 *
 * Invariants: a flight is in the table exactly from its join to its leader's finish; it is
 * freed when the last of its users (the leader until finish, each waiter until it leaves)
 * is gone. `active` mirrors the table's count, so the subscriber's hook costs one atomic
 * load when nothing is in flight.
 */
#include "config.h"

#include "flight.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* uthash allocates through our wrappers and reports a failed allocation by leaving the
 * element's hh.tbl NULL (checked after each add) instead of exiting. We always pass the
 * key hash ourselves (the _BYHASHVALUE macros). */
#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) tc__malloc(sz)
#define uthash_free(ptr, sz) tc__free(ptr)
#include <uthash.h>

struct tc_flight {
    UT_hash_handle hh;
    pthread_cond_t cv;
    unsigned users;       /* under mu: the leader until it finishes, plus waiters inside */
    bool done;            /* under mu */
    bool refresh;         /* an early refresh: the current value is still live */
    tc_flight_result res; /* under mu, set once done; res.val is the flight's reference */
    uint64_t inval_seq;   /* under mu: invalidations of key seen while in flight */
    size_t klen;
    char key[];
};

struct tc_flights {
    pthread_mutex_t mu;
    pthread_condattr_t cv_attr; /* CLOCK_MONOTONIC, for each flight's cv */
    tc_flight *table;           /* under mu; uthash head */
    atomic_size_t active;       /* HASH_COUNT(table), written under mu, read anywhere */
    atomic_uint_fast64_t rng;   /* splitmix64 state */
    tc_lock_waiter *waiters;    /* under mu: registered lock waiters (a short list) */
    pthread_cond_t waiters_cv;  /* with mu: a release of some waiter's lock */
    atomic_size_t nwaiters;     /* the list's length, written under mu, read anywhere */
};

static unsigned bucket_hash(uint64_t h)
{
    return (unsigned)(h ^ (h >> 32));
}

tc_status tc__flights_new(tc_flights **out)
{
    *out = NULL;
    tc_flights *fs = tc__calloc(1, sizeof *fs);
    if (!fs)
        return TC_ERR_NOMEM;
    uint64_t seed;
    if (tc__random_bytes(&seed, sizeof seed) != TC_OK) {
        tc__free(fs);
        return TC_ERR_IO;
    }
    atomic_init(&fs->rng, seed);
    atomic_init(&fs->active, 0);
    pthread_mutex_init(&fs->mu, NULL);
    pthread_condattr_init(&fs->cv_attr);
    pthread_condattr_setclock(&fs->cv_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&fs->waiters_cv, &fs->cv_attr);
    atomic_init(&fs->nwaiters, 0);
    *out = fs;
    return TC_OK;
}

void tc__flights_free(tc_flights *fs)
{
    if (!fs)
        return;
    /* Nothing is in flight (tc_close is the last call on the cache), so the table is
     * empty; clear it anyway so a misuse leaks no uthash table. */
    HASH_CLEAR(hh, fs->table);
    pthread_cond_destroy(&fs->waiters_cv);
    pthread_condattr_destroy(&fs->cv_attr);
    pthread_mutex_destroy(&fs->mu);
    tc__free(fs);
}

void tc__flights_free_after_fork(tc_flights *fs)
{
    if (!fs)
        return;
    /* The flights still in the table were led or awaited by threads of the parent, which
     * do not exist here: they stay with the table header. A table whose lock a thread of
     * the parent held may be mid-update: left unfreed rather than walked. */
    if (pthread_mutex_trylock(&fs->mu) != 0)
        return;
    fs->table = NULL;
    fs->waiters = NULL;
    pthread_mutex_unlock(&fs->mu);
    tc__flights_free(fs);
}

static tc_flight *find_locked(tc_flights *fs, uint64_t h, const char *key, size_t klen)
{
    tc_flight *f = NULL;
    HASH_FIND_BYHASHVALUE(hh, fs->table, key, klen, bucket_hash(h), f);
    return f;
}

/* A new flight for key, in the table, led by the caller. NULL on allocation failure. */
static tc_flight *add_locked(tc_flights *fs, uint64_t h, const char *key, size_t klen)
{
    tc_flight *f = tc__malloc(sizeof *f + klen + 1);
    if (!f)
        return NULL;
    memset(f, 0, sizeof *f);
    memcpy(f->key, key, klen);
    f->key[klen] = '\0';
    f->klen = klen;
    f->users = 1;
    if (pthread_cond_init(&f->cv, &fs->cv_attr) != 0) {
        tc__free(f);
        return NULL;
    }
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, fs->table, f->key, klen, bucket_hash(h), f);
    if (!f->hh.tbl) {
        pthread_cond_destroy(&f->cv);
        tc__free(f);
        return NULL;
    }
    atomic_store(&fs->active, HASH_COUNT(fs->table));
    return f;
}

/* Drops one user of f; returns f if it was the last (the caller frees it after unlocking:
 * see flight_free), else NULL. */
static tc_flight *leave_locked(tc_flight *f)
{
    return --f->users == 0 ? f : NULL;
}

static void flight_free(tc_flight *f)
{
    if (!f)
        return;
    pthread_cond_destroy(&f->cv);
    tc__ref_drop(f->res.val);
    tc__free(f);
}

tc_flight *tc__flight_join(tc_flights *fs, uint64_t h, const char *key, size_t klen,
                           bool join_refresh, tc_flight_role *role)
{
    pthread_mutex_lock(&fs->mu);
    tc_flight *f = find_locked(fs, h, key, klen);
    if (f && f->refresh && !join_refresh) {
        f = NULL;
        *role = TC_FLIGHT_REFRESHING;
    } else if (f) {
        f->users++;
        *role = TC_FLIGHT_WAITER;
    } else {
        f = add_locked(fs, h, key, klen);
        *role = TC_FLIGHT_LEADER;
    }
    pthread_mutex_unlock(&fs->mu);
    return f;
}

tc_flight *tc__flight_try_lead(tc_flights *fs, uint64_t h, const char *key, size_t klen)
{
    pthread_mutex_lock(&fs->mu);
    tc_flight *f = find_locked(fs, h, key, klen) ? NULL : add_locked(fs, h, key, klen);
    if (f)
        f->refresh = true;
    pthread_mutex_unlock(&fs->mu);
    return f;
}

tc_status tc__flight_wait(tc_flights *fs, tc_flight *f, int64_t deadline_ns, tc_flight_result *out)
{
    struct timespec ts;
    tc__deadline_to_timespec(deadline_ns, &ts);
    pthread_mutex_lock(&fs->mu);
    while (!f->done) {
        int rc = pthread_cond_timedwait(&f->cv, &fs->mu, &ts);
        if (rc == ETIMEDOUT && !f->done)
            break;
    }
    if (f->done) {
        *out = f->res;
        if (out->val)
            tc__ref_hold(out->val);
    } else {
        out->st = TC_ERR_TIMEOUT;
        out->val = NULL;
        out->stale = false;
    }
    tc_flight *gone = leave_locked(f);
    pthread_mutex_unlock(&fs->mu);
    flight_free(gone);
    return out->st;
}

/* A sequence under mu (a flight's invalidations, a lock waiter's releases). */
static uint64_t read_seq(tc_flights *fs, const uint64_t *seq)
{
    pthread_mutex_lock(&fs->mu);
    uint64_t v = *seq;
    pthread_mutex_unlock(&fs->mu);
    return v;
}

/* Sleeps on cv until *seq (under mu) moves past seen, or until wake_ns. True if it moved. */
static bool sleep_until_moved(tc_flights *fs, pthread_cond_t *cv, const uint64_t *seq,
                              uint64_t seen, int64_t wake_ns)
{
    struct timespec ts;
    tc__deadline_to_timespec(wake_ns, &ts);
    pthread_mutex_lock(&fs->mu);
    while (*seq == seen)
        if (pthread_cond_timedwait(cv, &fs->mu, &ts) == ETIMEDOUT)
            break;
    bool moved = *seq != seen;
    pthread_mutex_unlock(&fs->mu);
    return moved;
}

uint64_t tc__flight_inval_seq(tc_flights *fs, tc_flight *f)
{
    return read_seq(fs, &f->inval_seq);
}

bool tc__flight_wait_inval(tc_flights *fs, tc_flight *f, uint64_t seen, int64_t wake_ns)
{
    return sleep_until_moved(fs, &f->cv, &f->inval_seq, seen, wake_ns);
}

void tc__flight_finish(tc_flights *fs, tc_flight *f, const tc_flight_result *res)
{
    if (res->val)
        tc__ref_hold(res->val);
    pthread_mutex_lock(&fs->mu);
    f->res = *res;
    f->done = true;
    HASH_DELETE(hh, fs->table, f);
    atomic_store(&fs->active, HASH_COUNT(fs->table));
    pthread_cond_broadcast(&f->cv);
    tc_flight *gone = leave_locked(f);
    pthread_mutex_unlock(&fs->mu);
    flight_free(gone);
}

void tc__lock_waiter_enter(tc_flights *fs, tc_lock_waiter *w, uint64_t h)
{
    w->h = h;
    w->seq = 0;
    w->prev = NULL;
    pthread_mutex_lock(&fs->mu);
    w->next = fs->waiters;
    if (fs->waiters)
        fs->waiters->prev = w;
    fs->waiters = w;
    atomic_fetch_add(&fs->nwaiters, 1);
    pthread_mutex_unlock(&fs->mu);
}

uint64_t tc__lock_waiter_seq(tc_flights *fs, const tc_lock_waiter *w)
{
    return read_seq(fs, &w->seq);
}

bool tc__lock_waiter_sleep(tc_flights *fs, tc_lock_waiter *w, uint64_t seen, int64_t wake_ns)
{
    return sleep_until_moved(fs, &fs->waiters_cv, &w->seq, seen, wake_ns);
}

void tc__lock_waiter_leave(tc_flights *fs, tc_lock_waiter *w)
{
    pthread_mutex_lock(&fs->mu);
    if (w->prev)
        w->prev->next = w->next;
    else
        fs->waiters = w->next;
    if (w->next)
        w->next->prev = w->prev;
    atomic_fetch_sub(&fs->nwaiters, 1);
    pthread_mutex_unlock(&fs->mu);
}

/* Counts a release for every waiter of h; one broadcast wakes them all, and those of other
 * names go back to sleep. */
static void wake_lock_waiters_locked(tc_flights *fs, uint64_t h)
{
    bool any = false;
    for (tc_lock_waiter *w = fs->waiters; w; w = w->next) {
        if (w->h == h) {
            w->seq++;
            any = true;
        }
    }
    if (any)
        pthread_cond_broadcast(&fs->waiters_cv);
}

void tc__flights_notify(tc_flights *fs, uint64_t h, const char *key, size_t klen)
{
    if (!fs || (atomic_load(&fs->active) == 0 && atomic_load(&fs->nwaiters) == 0))
        return;
    pthread_mutex_lock(&fs->mu);
    tc_flight *f = find_locked(fs, h, key, klen);
    if (f) {
        f->inval_seq++;
        pthread_cond_broadcast(&f->cv);
    }
    wake_lock_waiters_locked(fs, h);
    pthread_mutex_unlock(&fs->mu);
}

size_t tc__flights_count(tc_flights *fs)
{
    pthread_mutex_lock(&fs->mu);
    size_t n = HASH_COUNT(fs->table);
    pthread_mutex_unlock(&fs->mu);
    return n;
}

double tc__flights_rand01(tc_flights *fs)
{
    /* splitmix64 (Steele, Lea, Flood 2014): a Weyl sequence through a strong mixer. The
     * fetch_add makes every draw distinct without a lock; relaxed suffices for
     * randomness. */
    const uint64_t gamma = 0x9E3779B97F4A7C15ull;
    uint64_t z = (uint64_t)atomic_fetch_add_explicit(&fs->rng, gamma, memory_order_relaxed) + gamma;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)((z >> 11) + 1) * 0x1.0p-53;
}
