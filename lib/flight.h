/*
 * The single-flight table: one per cache, so that concurrent callers of tc_get_or_set for
 * one key in this process share one fill. The first caller of a key leads the flight (it
 * fetches, takes the Redis lock, loads); the others wait on the flight's condition variable,
 * with a deadline, and share the leader's result: a value (a tc_ref reference each) or an
 * error. A flight is removed from the table when its leader finishes it, so the table is
 * empty whenever nothing is in flight.
 *
 * The table also carries the cross-process wake-up: when the subscriber thread applies an
 * invalidation naming a key that has a flight, it bumps the flight's invalidation sequence
 * and wakes it, so a leader waiting for another process's load re-reads Redis at once
 * instead of at its next poll.
 *
 * And it carries the cache's random source for early refresh (a per-cache splitmix64
 * counter, seeded from getrandom; no global state).
 *
 * Thread safety: every function may be called from any thread. Locks: one table mutex, a
 * leaf lock (nothing else is taken while it is held, no callback runs under it).
 */
#ifndef TC_FLIGHT_H
#define TC_FLIGHT_H

#include "common.h"
#include "local.h"

typedef struct tc_flights tc_flights;
typedef struct tc_flight tc_flight;

/* What a leader hands its waiters. val: a value when st is TC_OK (each waiter gets its
 * own reference), NULL otherwise. stale: the value is a stale copy served because the load
 * failed (for the stale_served counter). */
typedef struct tc_flight_result {
    tc_status st;
    tc_ref *val;
    bool stale;
} tc_flight_result;

/* A new, empty table. TC_ERR_NOMEM, TC_ERR_IO (no random seed). */
tc_status tc__flights_new(tc_flights **out);
/* Frees the table. Nothing may be in flight and no thread may use it any more. NULL is a
 * no-op. */
void tc__flights_free(tc_flights *fs);
/* In a child after fork(), where the threads that used fs do not exist: frees fs without
 * its flights (theirs), or leaves it (a leak) if one of them held its lock at the fork. */
void tc__flights_free_after_fork(tc_flights *fs);

typedef enum tc_flight_role {
    TC_FLIGHT_LEADER,    /* the caller leads: it must end the flight with tc__flight_finish */
    TC_FLIGHT_WAITER,    /* the caller must call tc__flight_wait, which also leaves it */
    TC_FLIGHT_REFRESHING /* not joined: an early refresh is in flight, so the current value
                            is still live in Redis; read it there rather than wait */
} tc_flight_role;

/* Joins the flight for key (h = tc__key_hash(key, klen)) or starts it, and says how in
 * *role. An early refresh in flight (tc__flight_try_lead) is joined only if join_refresh;
 * otherwise the answer is TC_FLIGHT_REFRESHING and NULL. NULL with TC_FLIGHT_LEADER on
 * allocation failure. */
tc_flight *tc__flight_join(tc_flights *fs, uint64_t h, const char *key, size_t klen,
                           bool join_refresh, tc_flight_role *role);

/* Starts an early-refresh flight for key only if no flight is in progress; NULL if one is
 * (or on allocation failure): a caller who finds a fill running keeps its current value
 * rather than wait. */
tc_flight *tc__flight_try_lead(tc_flights *fs, uint64_t h, const char *key, size_t klen);

/* Waiter: sleeps until the leader finishes or deadline_ns (monotonic) passes, then leaves
 * the flight (f must not be used afterwards). Returns the leader's status, with *out filled
 * (out->val a new reference the caller owns when out->st is TC_OK), or TC_ERR_TIMEOUT with
 * out->val NULL. */
tc_status tc__flight_wait(tc_flights *fs, tc_flight *f, int64_t deadline_ns, tc_flight_result *out);

/* Leader: the flight's invalidation sequence, to pass to tc__flight_wait_inval. Read it
 * before a Redis fetch: an invalidation that arrives after it makes the wait return. */
uint64_t tc__flight_inval_seq(tc_flights *fs, tc_flight *f);

/* Leader: sleeps until an invalidation naming the flight's key moves its sequence past seen,
 * or until wake_ns (monotonic). True if woken by an invalidation. */
bool tc__flight_wait_inval(tc_flights *fs, tc_flight *f, uint64_t seen, int64_t wake_ns);

/* Leader: publishes res to the waiters (the flight takes its own reference to res->val),
 * removes the flight from the table and wakes every waiter. The caller keeps its reference
 * to res->val. f must not be used afterwards. */
void tc__flight_finish(tc_flights *fs, tc_flight *f, const tc_flight_result *res);

/* ------------------------------------------------------------------ lock waiters
 *
 * A tc_lock_acquire that must wait registers the lock's name (its key hash) here; a release
 * of that lock, seen by the subscriber as an invalidation naming it or made by this very
 * process, wakes it to try again at once instead of at its next poll. The waiter lives on
 * the caller's stack. */
typedef struct tc_lock_waiter {
    uint64_t h;   /* tc__key_hash of the lock's name */
    uint64_t seq; /* under the table's mutex: releases of the name seen */
    struct tc_lock_waiter *prev, *next;
} tc_lock_waiter;

/* Registers w for the lock whose name hashes to h. */
void tc__lock_waiter_enter(tc_flights *fs, tc_lock_waiter *w, uint64_t h);
/* w's release count: read it before trying the lock. */
uint64_t tc__lock_waiter_seq(tc_flights *fs, const tc_lock_waiter *w);
/* Sleeps until a release moves w's count past seen, or until wake_ns (monotonic). True if
 * woken by a release. */
bool tc__lock_waiter_sleep(tc_flights *fs, tc_lock_waiter *w, uint64_t seen, int64_t wake_ns);
/* Unregisters w. */
void tc__lock_waiter_leave(tc_flights *fs, tc_lock_waiter *w);

/* The subscriber's hook: an invalidation named key. Wakes the flight for key and the lock
 * waiters of key, if any. One atomic load when nothing is in flight or waiting. */
void tc__flights_notify(tc_flights *fs, uint64_t h, const char *key, size_t klen);

/* The number of flights in progress (for tests and stats). */
size_t tc__flights_count(tc_flights *fs);

/* A uniform random double in (0, 1], from the table's lock-free generator. */
double tc__flights_rand01(tc_flights *fs);

#endif /* TC_FLIGHT_H */
