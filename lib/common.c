/*
 * Shared helpers: allocation wrappers (with the torture build's failure injection), logging
 * through the user's log_fn, deadline conversion, random bytes, the fork generation. The
 * only mutable state is the injection counter of the torture build, which exists only when
 * TC_ALLOC_FAIL is defined, and the fork generation (common.h says why it is process-wide).
 */
#include "config.h"

#include "common.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#ifdef TC_ALLOC_FAIL
/* Torture build only: the countdown to the allocation that fails (0: none) and the count
 * of allocations made, process-wide on purpose (tests are single-threaded there). */
static atomic_uint_fast64_t alloc_countdown;
static atomic_uint_fast64_t alloc_count;

static bool alloc_should_fail(void)
{
    atomic_fetch_add(&alloc_count, 1);
    uint_fast64_t left = atomic_load(&alloc_countdown);
    while (left > 0) {
        if (atomic_compare_exchange_weak(&alloc_countdown, &left, left - 1))
            return left == 1;
    }
    return false;
}

uint64_t tc__alloc_fail_at(uint64_t nth)
{
    atomic_store(&alloc_countdown, nth);
    return atomic_exchange(&alloc_count, 0);
}
#else
static inline bool alloc_should_fail(void)
{
    return false;
}

uint64_t tc__alloc_fail_at(uint64_t nth)
{
    TC_UNUSED(nth);
    return 0;
}
#endif

void *tc__malloc(size_t n)
{
    return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *tc__malloc_aligned(size_t align, size_t n)
{
    void *p = NULL;
    if (alloc_should_fail() || posix_memalign(&p, align, n ? n : 1) != 0)
        return NULL;
    return p;
}

void *tc__calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : calloc(n ? n : 1, size ? size : 1);
}

void *tc__realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : realloc(p, n ? n : 1);
}

char *tc__strdup(const char *s)
{
    return tc__strndup(s, strlen(s));
}

char *tc__strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = tc__malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

void tc__free(void *p)
{
    free(p);
}

void tc__log(const tc_logger *lg, int level, const char *fmt, ...)
{
    if (!lg || !lg->fn)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->fn(lg->arg, level, msg);
}

void tc__deadline_to_timespec(int64_t deadline_ns, struct timespec *ts)
{
    if (deadline_ns < 0)
        deadline_ns = 0;
    ts->tv_sec = (time_t)(deadline_ns / 1000000000);
    ts->tv_nsec = (long)(deadline_ns % 1000000000);
}

tc_status tc__random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return TC_ERR_IO;
        }
        p += got;
        n -= (size_t)got;
    }
    return TC_OK;
}

const char *tc__errno_text(int errnum, char buf[128])
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(errnum, buf, 128);
#else
    return strerror_r(errnum, buf, 128) == 0 ? buf : "";
#endif
}

/* ------------------------------------------------------------------ fork generation */

atomic_uint tc__fork_generation;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static bool fork_watched;

/* Runs in the child only, with only the forking thread alive: one atomic add, nothing
 * that could wait for a lock of a thread that is gone. */
static void fork_child(void)
{
    atomic_fetch_add_explicit(&tc__fork_generation, 1, memory_order_relaxed);
}

static void fork_watch_once(void)
{
    fork_watched = pthread_atfork(NULL, NULL, fork_child) == 0;
}

bool tc__fork_watch(void)
{
    pthread_once(&fork_once, fork_watch_once);
    return fork_watched;
}
