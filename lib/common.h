/*
 * Shared internal helpers: clocks, allocation (with an optional failure-injection hook for
 * the torture tests), logging through the user's log_fn, and small utilities. Every module
 * includes this; it has no state of its own except the test-only injection counter.
 */
#ifndef TC_COMMON_H
#define TC_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "tiercache.h"

#define TC_UNUSED(x) ((void)(x))
#define TC_LIKELY(x) __builtin_expect(!!(x), 1)
#define TC_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Monotonic nanoseconds, for deadlines and local expiry. vDSO: no syscall. */
static inline int64_t tc__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The same monotonic clock at tick resolution (CLOCK_MONOTONIC_COARSE): a few ns to read
 * instead of tens, never ahead of tc__now_ns and behind it by at most the clock's
 * resolution (tc__coarse_res_ns). For expiry checks on the local-hit path. */
static inline int64_t tc__now_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The resolution of tc__now_coarse_ns. */
static inline int64_t tc__coarse_res_ns(void)
{
    struct timespec ts;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return 10000000; /* 10 ms: coarser than any tick Linux uses */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Wall-clock milliseconds since the epoch, for values shared between hosts. */
static inline int64_t tc__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Allocation. Library code allocates only through these, so the torture build
 * (--enable-alloc-fail) can fail the Nth allocation of a test. */
void *tc__malloc(size_t n);
void *tc__calloc(size_t n, size_t size);
/* align: a power of two multiple of sizeof(void *). Freed with tc__free. */
void *tc__malloc_aligned(size_t align, size_t n);
void *tc__realloc(void *p, size_t n);
char *tc__strdup(const char *s);
char *tc__strndup(const char *s, size_t n);
void tc__free(void *p);

/* Test hook (torture build only): fail the nth allocation from now (1 = the next one);
 * 0 disables. Returns how many allocations were made since the last call. */
uint64_t tc__alloc_fail_at(uint64_t nth);

/* A logger as the options give it; log calls format only when fn is set. Never called with
 * a lock held (callers' duty). */
typedef struct tc_logger {
    void (*fn)(void *arg, int level, const char *msg);
    void *arg;
} tc_logger;

/* errnum's message, thread-safe (strerror_r; buf may hold it). */
const char *tc__errno_text(int errnum, char buf[128]);

void tc__log(const tc_logger *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fills buf with cryptographically random bytes (getrandom). TC_ERR_IO if unavailable. */
tc_status tc__random_bytes(void *buf, size_t n);

/* The process's fork generation: 0 until the first fork() after tc__fork_watch, then
 * bumped in every child (by a pthread_atfork handler), so a cache opened before a fork
 * can tell, with one load of a line nothing writes in steady state, that it runs in a
 * child and must not use what it inherited (see cache.c, "After fork"). Process state by
 * nature: fork is an event of the process, and a handler cannot be told which handles
 * exist. */
extern atomic_uint tc__fork_generation;
static inline unsigned tc__fork_gen(void)
{
    return atomic_load_explicit(&tc__fork_generation, memory_order_relaxed);
}
/* Installs the handler once per process (tc_open calls it). False if it could not be
 * installed: then a fork goes unnoticed. */
bool tc__fork_watch(void);

/* Deadline helpers: a deadline is an absolute tc__now_ns() value. */
static inline int64_t tc__deadline_after_ms(int ms)
{
    return tc__now_ns() + (int64_t)ms * 1000000;
}
/* Fills ts (CLOCK_MONOTONIC based) for pthread_cond_timedwait on a monotonic condvar. */
void tc__deadline_to_timespec(int64_t deadline_ns, struct timespec *ts);

#endif /* TC_COMMON_H */
