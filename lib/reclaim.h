/*
 * Deferred reclamation, for readers that take no lock (the local tier's hits).
 *
 * Read sections (epoch-based reclamation). A reader enters a section before it follows
 * pointers into a shared structure and leaves it when done; a section is short and never
 * blocks. A writer that unlinks an object retires it instead of freeing it, and it is freed
 * only after every section that could have seen it has ended. Entering costs one atomic
 * exchange on a line of the thread's own record; leaving, a plain store.
 *
 * Hazard slots. A reader that keeps an object past its section (a value handed to the
 * caller of tc_get) publishes its address in a slot of its thread's record before leaving
 * the section. A retired object is not freed while any slot holds it. The
 * slot is cleared by whichever thread releases the value, with one plain store.
 *
 * So a read writes only its own thread's record: two threads reading the same keys share
 * no written cache line.
 *
 * Records: one per thread, made on the thread's first use, recycled after the thread exits
 * (its slots may still hold values another thread will release), never freed. Their ids are
 * dense (0, 1, ...) while they are recycled, so per-thread counters can be indexed by them.
 *
 * Retired objects are kept in an array of (object, stamp) pairs in the retiring thread's
 * record, so an object carries no retirement node. When that array cannot grow, the
 * retiring thread waits for the sections that could have seen the object to end (they never
 * block), then frees it, or parks it on a list linked through its first word while hazard
 * slots still hold it: past its grace period no section reads that word.
 *
 * Thread safety: everything here may be called from any thread; the retire array of a
 * record is its thread's own. Retired objects of an exited thread, and of a thread that
 * could not get a record, go to a shared array (and parked list) that later passes
 * reclaim.
 */
#ifndef TC_RECLAIM_H
#define TC_RECLAIM_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"

/* A retired object, kept by its thread's record (not in the object: an object needs no
 * field for its retirement). */
typedef struct tc_retired {
    void *p;        /* the allocation, freed with tc__free */
    uint64_t stamp; /* the epoch it was retired in */
} tc_retired;

typedef _Atomic(void *) tc_hazard;

#define TC_HAZARDS 8

typedef struct tc_rec {
    /* Written by the thread itself on every read, read by reclaim passes. */
    alignas(64) atomic_uint_fast64_t epoch; /* 0: outside any section */
    tc_hazard slots[TC_HAZARDS];
    unsigned id;
    /* The thread's own. */
    alignas(64) tc_retired *retired; /* a growable array: n used, cap allocated */
    size_t n, cap;
    unsigned since_pass; /* retirements since the last pass */
    size_t bytes_since_pass;
    bool reclaiming; /* in a pass: what is retired meanwhile waits for the next */
    atomic_bool in_use;
    struct tc_rec *_Atomic next_rec; /* the registry: append-only */
} tc_rec;

extern atomic_uint_fast64_t tc__reclaim_epoch;
extern __thread tc_rec *tc__rec_tls __attribute__((tls_model("initial-exec")));

/* Registers the calling thread. NULL if its record could not be allocated. */
tc_rec *tc__rec_register(void);

/* The calling thread's record; NULL only if it could not be allocated (then read without
 * sections: under the writers' lock). */
static inline tc_rec *tc__rec_self(void)
{
    tc_rec *r = tc__rec_tls;
    return TC_LIKELY(r != NULL) ? r : tc__rec_register();
}

static inline void tc__read_enter(tc_rec *r)
{
    /* The store must be ordered before every load of the section: a pass that does not
     * see it cannot have unlinked anything the section finds. That takes a full barrier.
     * On x86 a locked exchange is one (and its acquire half keeps the compiler from
     * hoisting the loads above it); elsewhere a sequentially consistent fence is. */
    uint64_t g = atomic_load_explicit(&tc__reclaim_epoch, memory_order_acquire);
#if defined(__x86_64__) || defined(__i386__)
    atomic_exchange_explicit(&r->epoch, g, memory_order_seq_cst);
#else
    atomic_store_explicit(&r->epoch, g, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline void tc__read_exit(tc_rec *r)
{
    /* Release: the section's reads, and the slots it filled, happen before a pass that
     * sees it ended. */
    atomic_store_explicit(&r->epoch, 0, memory_order_release);
}

/* Publishes p in a free slot of r and returns the slot, or NULL if all are taken (the
 * caller then takes a counted reference instead). Call inside a section, on an object
 * reached in it. */
static inline tc_hazard *tc__hazard_take(tc_rec *r, void *p)
{
    for (unsigned i = 0; i < TC_HAZARDS; i++) {
        /* Acquire: when another thread released the slot, its reads of the value it held
         * happen before this reuse, and so before the free a later pass may make. */
        if (!atomic_load_explicit(&r->slots[i], memory_order_acquire)) {
            atomic_store_explicit(&r->slots[i], p, memory_order_release);
            return &r->slots[i];
        }
    }
    return NULL;
}

/* Clears a slot: the holder is done with its object. Any thread may call it. */
static inline void tc__hazard_drop(tc_hazard *slot)
{
    atomic_store_explicit(slot, NULL, memory_order_release);
}

/* Retires an allocation unlinked from every shared structure (by a writer, after the
 * unlink): sections still running may have seen it, and hazard slots may hold it, so it is
 * freed (tc__free) once those sections have ended and no slot holds it. bytes: about what
 * it holds, so that a pass comes sooner when big objects wait. p's first pointer-sized
 * bytes are reclaim's once its grace period is over (it may be parked through them), so
 * only sections may read them. Never called inside a read section. */
void tc__retire(void *p, size_t bytes);

/* Runs a pass on the caller's list now, and on the shared list: frees what no section and
 * no slot can still reach. Passes run by themselves every so many retirements or bytes;
 * this is for a thread about to go idle (tc_close, the subscriber's heartbeat) and tests. */
void tc__reclaim_now(void);

/* For tests: objects retired and not yet freed, in the caller's array and the shared ones. */
uint64_t tc__reclaim_pending(void);

/* For tests: no retire array holds more than n objects (0: no limit, the default), as when
 * it cannot grow; then a retirement waits for its grace period (reclaim.c, retire_full). */
void tc__reclaim_test_limit(size_t n);

/* For tests: fn(where) is called at points where a fork in another thread must find a
 * consistent state: a retire array grown but not yet published, and an exiting thread's
 * objects handed to the shared array. NULL: none (the default). */
enum { TC_RECLAIM_PAUSE_GROWN = 1, TC_RECLAIM_PAUSE_EXITED = 2 };
void tc__reclaim_test_pause(void (*fn)(int where));

#endif /* TC_RECLAIM_H */
