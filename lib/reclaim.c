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
 * list) are leaves; a pass runs with neither held except to splice the shared list.
 */
#include "config.h"

#include "reclaim.h"

#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* A pass runs every this many retirements of a thread, or sooner once they hold this many
 * bytes. Each pass reads every record's epoch and slots, so it is amortised over many
 * objects; the bytes bound what waits on an idle thread's list. */
#define PASS_EVERY 64u
#define PASS_BYTES (1u << 20)

alignas(64) atomic_uint_fast64_t tc__reclaim_epoch = 1;
__thread tc_rec *tc__rec_tls __attribute__((tls_model("initial-exec")));

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_rec *_Atomic registry; /* newest first; records are never removed */
static unsigned next_id;         /* under registry_mu */

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static tc_retired *shared;           /* under shared_mu */
static atomic_uint_fast64_t nshared; /* its length, read without the lock */

static pthread_key_t exit_key;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool registry_ok; /* set once: records can be handed out (their exit can be seen) */
/* This thread's record was released at its exit: a call from a later thread-exit
 * destructor gets none (it could not be released again), and works without one. */
static __thread bool thread_exited;

/* The last object of a non-empty list. */
static tc_retired *last_of(tc_retired *list)
{
    while (list->next)
        list = list->next;
    return list;
}

static void shared_push(tc_retired *list, uint64_t n)
{
    if (!list)
        return;
    tc_retired *tail = last_of(list);
    pthread_mutex_lock(&shared_mu);
    tail->next = shared;
    shared = list;
    atomic_fetch_add_explicit(&nshared, n, memory_order_relaxed);
    pthread_mutex_unlock(&shared_mu);
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

/* Frees what it can of list and returns the rest; *n: how many are left. */
static tc_retired *pass(tc_retired *list, uint64_t *n)
{
    uint64_t min = oldest_section();
    held h;
    held_scan(&h);
    tc_retired *keep = NULL;
    *n = 0;
    while (list) {
        tc_retired *it = list;
        list = it->next;
        if (it->stamp < min && !held_has(&h, it)) {
            tc__free(it);
        } else {
            it->next = keep;
            keep = it;
            (*n)++;
        }
    }
    held_done(&h);
    return keep;
}

static void pass_shared(void)
{
    if (!atomic_load_explicit(&nshared, memory_order_relaxed) ||
        pthread_mutex_trylock(&shared_mu) != 0)
        return;
    tc_retired *list = shared;
    shared = NULL;
    atomic_store_explicit(&nshared, 0, memory_order_relaxed);
    pthread_mutex_unlock(&shared_mu);
    uint64_t left;
    list = pass(list, &left);
    shared_push(list, left);
}

/* A pass over the shared list, then r's own. */
static void pass_own(tc_rec *r)
{
    r->reclaiming = true;
    pass_shared();
    if (r->retired) {
        uint64_t left;
        r->retired = pass(r->retired, &left);
    }
    r->since_pass = 0;
    r->bytes_since_pass = 0;
    r->reclaiming = false;
}

void tc__retire(tc_retired *it, size_t bytes)
{
    it->stamp = atomic_load_explicit(&tc__reclaim_epoch, memory_order_seq_cst);
    tc_rec *r = tc__rec_self();
    if (!r) {
        it->next = NULL;
        shared_push(it, 1);
        return;
    }
    it->next = r->retired;
    r->retired = it;
    /* Survivors of passes (objects held in slots) stay on the list; a pass is due every
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
        for (tc_retired *it = tc__rec_tls->retired; it; it = it->next)
            n++;
    return n;
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
    uint64_t n = 0;
    for (tc_retired *it = r->retired; it; it = it->next)
        n++;
    shared_push(r->retired, n);
    r->retired = NULL;
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
        for (tc_retired *it = r->retired, *next; it; it = next) {
            next = it->next;
            it->next = shared;
            shared = it;
            atomic_fetch_add_explicit(&nshared, 1, memory_order_relaxed);
        }
        r->retired = NULL;
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
        r->retired = NULL;
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
