/*
 * Deferred reclamation: the registry of thread records, retire lists and passes. See
 * reclaim.h for the protocol.
 *
 * A pass advances the global epoch, takes the oldest epoch any section is in (min), and
 * frees every retired object stamped before min that no hazard slot holds. Why that is
 * safe: an object is stamped, with a sequentially consistent load, after a sequentially
 * consistent unlink. A section that entered after the unlink cannot find the object; one
 * that entered before it read an epoch no newer than the stamp, so min is at most the
 * stamp until it ends; one that entered later reads a newer epoch than any stamp taken
 * before the advance. Sections still running when the pass looks hold min down.
 *
 * Locks: registry_mu (records are added and recycled under it) and shared_mu (the shared
 * array and parked list) are leaves; a pass over a thread's own array runs with neither
 * held, the pass over the shared ones under shared_mu. A retirement that waits out its
 * grace period (its array full) holds shared_mu while it waits: sections never take it.
 */
#include "config.h"

#include "reclaim.h"

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* A pass runs every this many retirements of a thread, or sooner once they hold this many
 * bytes. Each pass reads every record's epoch and slots, so it is amortised over many
 * objects; the bytes bound what waits on an idle thread's array. */
#define PASS_EVERY 64u
#define PASS_BYTES (1u << 20)
/* The first capacity of a retire array: a pass every PASS_EVERY leaves it rarely fuller. */
#define FIRST_CAP ((size_t)2 * PASS_EVERY)

alignas(64) atomic_uint_fast64_t tc__reclaim_epoch = 1;
__thread tc_rec *tc__rec_tls __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_rec *_Atomic registry; /* newest first; records are never removed */
static unsigned next_id;         /* under registry_mu */

/* What exited threads and threads without a record retired, and what could not wait in an
 * array (parked: past its grace period, held by slots); under shared_mu. */
static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_retired *shared;
static size_t shared_n, shared_cap;
static void *parked;                             /* linked through each object's first word */
static atomic_uint_fast64_t nshared;             /* shared_n + the parked, read without the lock */
static atomic_size_t test_limit;                 /* tc__reclaim_test_limit */
static void (*_Atomic test_pause_fn)(int where); /* tc__reclaim_test_pause */

static void test_pause(int where)
{
    void (*fn)(int) = atomic_load_explicit(&test_pause_fn, memory_order_relaxed);
    if (fn)
        fn(where);
}

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool registry_ok; /* set once: records can be handed out (their exit can be seen) */
/* This thread's record was released at its exit: a call from a later thread-exit
 * destructor gets none (it could not be released again), and works without one. */
static __thread bool thread_exited;

/* Appends (p, stamp) to the array *a (n used, cap allocated), growing it. False when it
 * cannot grow (or the test limit says so): the caller then waits for the grace period. */
static bool arr_push(tc_retired **a, size_t *n, size_t *cap, void *p, uint64_t stamp)
{
    size_t limit = atomic_load_explicit(&test_limit, memory_order_relaxed);
    if (limit && *n >= limit)
        return false;
    if (*n == *cap) {
        /* A fork in another thread may copy this thread's array at any instant, and the
         * child parks what it names (fork_child): the old array stays valid until the new
         * one is published, so a child sees one or the other, whole. */
        size_t ncap = *cap ? 2 * *cap : FIRST_CAP;
        tc_retired *na = ncap <= SIZE_MAX / sizeof *na ? tc__malloc(ncap * sizeof *na) : NULL;
        if (!na)
            return false;
        if (*n)
            memcpy(na, *a, *n * sizeof *na);
        test_pause(TC_RECLAIM_PAUSE_GROWN);
        tc_retired *old = *a;
        atomic_signal_fence(memory_order_seq_cst);
        *a = na;
        *cap = ncap;
        atomic_signal_fence(memory_order_seq_cst);
        tc__free(old);
    }
    (*a)[*n] = (tc_retired){p, stamp};
    atomic_thread_fence(memory_order_release); /* the element before the count (fork) */
    (*n)++;
    return true;
}

/* The parked list's link, in an object's first word (unread by anybody once its grace
 * period is over: reclaim.h). */
static void *next_parked(const void *p)
{
    void *next;
    memcpy(&next, p, sizeof next);
    return next;
}

static void park_locked(void *p)
{
    memcpy(p, &parked, sizeof parked);
    parked = p;
    atomic_fetch_add_explicit(&nshared, 1, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------
 * Passes
 * ------------------------------------------------------------------------------------- */

/* The hazard slots of every record, as a snapshot to look objects up in. */
typedef struct held {
    void *small[64];
    void **p;
    size_t n, cap;
} held;

static void held_add(held *h, void *p)
{
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        void **np = h->p == h->small ? NULL : h->p;
        np = tc__realloc(np, cap * sizeof *np);
        if (!np) {
            h->cap = 0; /* unknown: hold everything (held_has) */
            return;
        }
        if (h->p == h->small)
            memcpy(np, h->small, sizeof h->small);
        h->p = np;
        h->cap = cap;
    }
    h->p[h->n++] = p;
}

static void held_scan(held *h)
{
    h->p = h->small;
    h->n = 0;
    h->cap = sizeof h->small / sizeof h->small[0];
    for (tc_rec *r = atomic_load_explicit(&registry, memory_order_acquire); r;
         r = atomic_load_explicit(&r->next_rec, memory_order_acquire)) {
        for (unsigned i = 0; i < TC_HAZARDS && h->cap; i++) {
            void *p = atomic_load_explicit(&r->slots[i], memory_order_acquire);
            if (p)
                held_add(h, p);
        }
    }
}

static bool held_has(const held *h, const void *p)
{
    if (!h->cap)
        return true;
    for (size_t i = 0; i < h->n; i++)
        if (h->p[i] == p)
            return true;
    return false;
}

static void held_done(held *h)
{
    if (h->p != h->small)
        tc__free(h->p);
}

/* The oldest epoch a running section is in, after advancing the epoch: objects stamped
 * before it are unreachable. */
static uint64_t oldest_section(void)
{
    uint64_t min = atomic_fetch_add_explicit(&tc__reclaim_epoch, 1, memory_order_seq_cst) + 1;
    for (tc_rec *r = atomic_load_explicit(&registry, memory_order_acquire); r;
         r = atomic_load_explicit(&r->next_rec, memory_order_acquire)) {
        uint64_t e = atomic_load_explicit(&r->epoch, memory_order_seq_cst);
        if (e && e < min)
            min = e;
    }
    return min;
}

/* Frees what it can of the array a (n used) and returns how many are left, moved to its
 * front. */
static size_t pass(tc_retired *a, size_t n)
{
    if (!n)
        return 0;
    uint64_t min = oldest_section();
    held h;
    held_scan(&h);
    size_t keep = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].stamp < min && !held_has(&h, a[i].p))
            tc__free(a[i].p);
        else
            a[keep++] = a[i];
    }
    held_done(&h);
    return keep;
}

/* Frees the parked objects no slot holds any more; returns how many are left. Caller holds
 * shared_mu. */
static uint64_t pass_parked_locked(void)
{
    held h;
    held_scan(&h);
    void *keep = NULL;
    uint64_t n = 0;
    for (void *p = parked, *next; p; p = next) {
        next = next_parked(p);
        if (held_has(&h, p)) {
            memcpy(p, &keep, sizeof keep);
            keep = p;
            n++;
        } else {
            tc__free(p);
        }
    }
    parked = keep;
    held_done(&h);
    return n;
}

/* The shared array and parked list, under the lock: only exited threads, threads without
 * a record and full arrays add to them, so holding it through the pass delays few. */
static void pass_shared(void)
{
    if (!atomic_load_explicit(&nshared, memory_order_relaxed) ||
        pthread_mutex_trylock(&shared_mu) != 0)
        return;
    shared_n = pass(shared, shared_n);
    uint64_t left = parked ? pass_parked_locked() : 0;
    atomic_store_explicit(&nshared, shared_n + left, memory_order_relaxed);
    pthread_mutex_unlock(&shared_mu);
}

/* A pass over the shared array, then r's own. */
static void pass_own(tc_rec *r)
{
    r->reclaiming = true;
    pass_shared();
    r->n = pass(r->retired, r->n);
    r->since_pass = 0;
    r->bytes_since_pass = 0;
    r->reclaiming = false;
}

/* Waits until no section that could have seen an object stamped stamp is running. Sections
 * are short and never block, so this ends; the caller is in none (reclaim.h). */
static void wait_grace(uint64_t stamp)
{
    while (oldest_section() <= stamp)
        sched_yield();
}

/* An object no array can take: after its grace period it is freed, or parked while a slot
 * holds it. Caller holds shared_mu. */
static void retire_full_locked(void *p, uint64_t stamp)
{
    wait_grace(stamp);
    held h;
    held_scan(&h);
    if (held_has(&h, p))
        park_locked(p);
    else
        tc__free(p);
    held_done(&h);
}

/* Into the shared array, or past the grace period when it cannot take it. */
static void shared_add(void *p, uint64_t stamp)
{
    pthread_mutex_lock(&shared_mu);
    if (arr_push(&shared, &shared_n, &shared_cap, p, stamp))
        atomic_fetch_add_explicit(&nshared, 1, memory_order_relaxed);
    else
        retire_full_locked(p, stamp);
    pthread_mutex_unlock(&shared_mu);
}

void tc__retire(void *p, size_t bytes)
{
    uint64_t stamp = atomic_load_explicit(&tc__reclaim_epoch, memory_order_seq_cst);
    tc_rec *r = tc__rec_self();
    if (!r) {
        shared_add(p, stamp);
        return;
    }
    assert(!atomic_load_explicit(&r->epoch, memory_order_relaxed)); /* not in a section */
    if (!arr_push(&r->retired, &r->n, &r->cap, p, stamp)) {
        /* Full: a pass may make room; if not, the object waits out its grace period. */
        if (!r->reclaiming)
            pass_own(r);
        if (!arr_push(&r->retired, &r->n, &r->cap, p, stamp)) {
            pthread_mutex_lock(&shared_mu);
            retire_full_locked(p, stamp);
            pthread_mutex_unlock(&shared_mu);
            return;
        }
    }
    /* Survivors of passes (objects held in slots) stay in the array; a pass is due every
     * PASS_EVERY retirements or PASS_BYTES beyond them. */
    r->bytes_since_pass += bytes;
    if ((++r->since_pass >= PASS_EVERY || r->bytes_since_pass >= PASS_BYTES) && !r->reclaiming)
        pass_own(r);
}

void tc__reclaim_now(void)
{
    tc_rec *r = tc__rec_self();
    if (r && !r->reclaiming)
        pass_own(r);
    else
        pass_shared();
}

uint64_t tc__reclaim_pending(void)
{
    uint64_t n = atomic_load_explicit(&nshared, memory_order_relaxed);
    if (tc__rec_tls)
        n += tc__rec_tls->n;
    return n;
}

void tc__reclaim_test_limit(size_t n)
{
    atomic_store_explicit(&test_limit, n, memory_order_relaxed);
}

void tc__reclaim_test_pause(void (*fn)(int where))
{
    atomic_store_explicit(&test_pause_fn, fn, memory_order_relaxed);
}

/* ---------------------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------------------- */

/* At thread exit: the record's retired objects go to the shared list and the record to
 * the next new thread. Its slots keep what they hold until those values are released. */
static void on_thread_exit(void *arg)
{
    tc_rec *r = arg;
    if (!r->reclaiming)
        pass_own(r);
    pthread_mutex_lock(&shared_mu);
    for (size_t i = 0; i < r->n; i++) {
        tc_retired it = r->retired[i];
        if (arr_push(&shared, &shared_n, &shared_cap, it.p, it.stamp))
            atomic_fetch_add_explicit(&nshared, 1, memory_order_relaxed);
        else
            retire_full_locked(it.p, it.stamp);
    }
    r->n = 0; /* before the unlock: a fork after it must not park them again */
    pthread_mutex_unlock(&shared_mu);
    test_pause(TC_RECLAIM_PAUSE_EXITED); /* the array stays with the record */
    r->since_pass = 0;
    r->bytes_since_pass = 0;
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
    tc__rec_tls = NULL;
    thread_exited = true;
    atomic_store_explicit(&r->in_use, false, memory_order_release);
}

/* In a child after fork only the forking thread runs: every other record is free, and
 * their retired objects go to the shared list. */
static void fork_prepare(void)
{
    pthread_mutex_lock(&registry_mu);
    pthread_mutex_lock(&shared_mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&shared_mu);
    pthread_mutex_unlock(&registry_mu);
}

static void fork_child(void)
{
    for (tc_rec *r = atomic_load_explicit(&registry, memory_order_relaxed); r;
         r = atomic_load_explicit(&r->next_rec, memory_order_relaxed)) {
        if (r == tc__rec_tls)
            continue;
        /* Its thread is gone and with it its sections (only the forking thread runs, in
         * none): what it retired is past its grace period, and parked with no allocation.
         * An array caught mid-pass may name freed objects: it is left (a leak, not a
         * double free). */
        for (size_t i = 0; i < r->n && !r->reclaiming; i++)
            park_locked(r->retired[i].p);
        r->n = 0;
        r->since_pass = 0;
        r->bytes_since_pass = 0;
        r->reclaiming = false; /* its thread may have been in a pass */
        atomic_store_explicit(&r->epoch, 0, memory_order_relaxed);
        atomic_store_explicit(&r->in_use, false, memory_order_relaxed);
    }
    pthread_mutex_unlock(&shared_mu);
    pthread_mutex_unlock(&registry_mu);
}

/* Without the exit key a record could not be released, and without the fork handlers a
 * child would wait for its parent's other threads forever: then no thread gets a record,
 * and reads fall back to the writers' lock. */
static void init_once(void)
{
    if (pthread_key_create(&exit_key, on_thread_exit) != 0)
        return;
    registry_ok = pthread_atfork(fork_prepare, fork_parent, fork_child) == 0;
}

tc_rec *tc__rec_register(void)
{
    pthread_once(&once, init_once);
    if (!registry_ok || thread_exited)
        return NULL;
    pthread_mutex_lock(&registry_mu);
    tc_rec *r = atomic_load_explicit(&registry, memory_order_relaxed);
    while (r && atomic_load_explicit(&r->in_use, memory_order_acquire))
        r = atomic_load_explicit(&r->next_rec, memory_order_relaxed);
    if (!r) {
        r = tc__malloc_aligned(64, sizeof *r); /* never freed: the registry keeps it */
        if (r) {
            memset(r, 0, sizeof *r);
            r->id = next_id++;
            atomic_init(&r->epoch, 0);
            for (unsigned i = 0; i < TC_HAZARDS; i++)
                atomic_init(&r->slots[i], NULL);
            atomic_init(&r->next_rec, atomic_load_explicit(&registry, memory_order_relaxed));
            atomic_init(&r->in_use, true);
            atomic_store_explicit(&registry, r, memory_order_release);
        }
    } else {
        /* A recycled record: its last thread left its list empty and its pass finished
         * (or fork_child reset both). */
        atomic_store_explicit(&r->in_use, true, memory_order_relaxed);
        r->n = 0;
        r->since_pass = 0;
        r->bytes_since_pass = 0;
        r->reclaiming = false;
    }
    pthread_mutex_unlock(&registry_mu);
    if (r) {
        if (pthread_setspecific(exit_key, r) != 0) {
            atomic_store_explicit(&r->in_use, false, memory_order_release);
            return NULL;
        }
        tc__rec_tls = r;
    }
    return r;
}
