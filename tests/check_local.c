/*
 * Tests of the local tier (lib/local.c) on its own: no Redis. Keys are hashed with XXH3 as
 * the library does, except where a test needs two keys with one hash.
 */
#include "config.h"

#include <check.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "format.h"
#include "key.h"
#include "local.h"
#include "reclaim.h"
#include "testutil.h"

#define NEVER INT64_MAX

/* ThreadSanitizer cannot run instrumented code from a thread's last TLS destructor rounds
 * (its own thread state is gone by then) nor start threads in the child of a forked
 * multithreaded process: the two tests that need those run in the other builds
 * (UNDER_TSAN: testutil.h). */

static uint64_t hash_of(const char *k)
{
    return XXH3_64bits(k, strlen(k));
}

static tc_local *new_local(size_t max_bytes, unsigned nshards)
{
    tc_local *l = NULL;
    ck_assert_int_eq(tc__local_new(max_bytes, nshards, &l), TC_OK);
    ck_assert_ptr_nonnull(l);
    return l;
}

static tc_ref *ref_of(const char *s)
{
    tc_ref *r = tc__ref_copy(s, strlen(s));
    ck_assert_ptr_nonnull(r);
    return r;
}

/* A reader's fill: ticket, then store; the caller keeps no reference. */
static bool put_until(tc_local *l, const char *k, const char *v, int64_t expires_ns)
{
    uint64_t h = hash_of(k);
    tc_ticket t = tc__local_ticket(l, h);
    tc_ref *r = ref_of(v);
    bool ok = tc__local_store_if_fresh(l, h, k, strlen(k), r, expires_ns, t);
    tc__ref_drop(r);
    return ok;
}

static bool put(tc_local *l, const char *k, const char *v)
{
    return put_until(l, k, v, NEVER);
}

/* Stores v under k with key type id type (asserting the store). */
static void put_typed(tc_local *l, const char *k, const char *v, uint32_t type)
{
    uint64_t h = hash_of(k);
    tc_ref *r = ref_of(v);
    r->type_id = type;
    ck_assert(tc__local_store_if_fresh(l, h, k, strlen(k), r, NEVER, tc__local_ticket(l, h)));
    tc__ref_drop(r);
}

static bool get_at(tc_local *l, const char *k, int64_t now_ns, tc_ref **out)
{
    return tc__local_get(l, hash_of(k), k, strlen(k), now_ns, out);
}

static bool get(tc_local *l, const char *k, tc_ref **out)
{
    return get_at(l, k, tc__now_ns(), out);
}

static bool has(tc_local *l, const char *k)
{
    tc_ref *r;
    bool hit = get(l, k, &r);
    tc__ref_drop(r);
    return hit;
}

/* Asserts a hit on k holding exactly want. */
static void expect(tc_local *l, const char *k, const char *want)
{
    tc_ref *r;
    ck_assert_msg(get(l, k, &r), "expected a hit on %s", k);
    ck_assert_uint_eq(r->len, strlen(want));
    ck_assert_int_eq(memcmp(tc__ref_data(r), want, r->len), 0);
    tc__ref_drop(r);
}

static tc_local_stats stats_of(tc_local *l)
{
    tc_local_stats st;
    tc__local_stats(l, &st);
    return st;
}

/* The budget charge of one entry with a klen-byte key and a vlen-byte value, measured
 * through the stats of a roomy tier (the formula is the tier's business). */
static size_t charge_of(size_t klen, size_t vlen)
{
    tc_local *l = new_local(1u << 20, 1);
    char k[256], v[4096];
    ck_assert_uint_lt(klen, sizeof k);
    ck_assert_uint_lt(vlen, sizeof v);
    memset(k, 'k', klen);
    k[klen] = '\0';
    memset(v, 'v', vlen);
    v[vlen] = '\0';
    ck_assert(put(l, k, v));
    size_t c = stats_of(l).bytes;
    ck_assert_uint_gt(c, klen + vlen);
    tc__local_free(l);
    return c;
}

/* ---------------------------------------------------------------------------------------
 * Round trip and references
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_roundtrip)
{
    tc_local *l = new_local(1u << 20, 0);
    tc_ref *r = (tc_ref *)1;

    ck_assert(!get(l, "absent", &r));
    ck_assert_ptr_null(r);

    ck_assert(put(l, "k1", "hello"));
    expect(l, "k1", "hello");

    /* Zero-length values are values, not misses. */
    uint64_t h = hash_of("empty");
    tc_ref *z = tc__ref_copy(NULL, 0);
    ck_assert_ptr_nonnull(z);
    ck_assert(tc__local_store_if_fresh(l, h, "empty", 5, z, NEVER, tc__local_ticket(l, h)));
    ck_assert(get(l, "empty", &r));
    /* A hit hands out the tier's copy (one allocation with its entry), NUL-terminated. */
    ck_assert_ptr_ne(r, z);
    ck_assert_uint_eq(r->len, 0);
    ck_assert_uint_eq(tc__ref_data(r)[0], 0);
    tc__ref_drop(r);
    tc__ref_drop(z);

    /* A second store replaces the value. */
    ck_assert(put(l, "k1", "world!"));
    expect(l, "k1", "world!");

    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(tc__local_count(l), 2);
    ck_assert_uint_eq(st.stores, 3);
    ck_assert_uint_eq(st.hits, 3);
    ck_assert_uint_eq(st.misses, 1);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_refcount)
{
    /* A held value survives invalidation. */
    tc_local *l = new_local(1u << 20, 1);
    uint64_t h = hash_of("k");
    tc_ref *v = ref_of("payload");
    ck_assert(tc__local_store_if_fresh(l, h, "k", 1, v, NEVER, tc__local_ticket(l, h)));
    ck_assert_uint_eq(atomic_load(&v->refs), 1); /* ours: the tier keeps a copy */
    tc__ref_drop(v);
    tc_ref *g;
    ck_assert(get(l, "k", &g));
    ck_assert_uint_eq(atomic_load(&g->refs), 2); /* the tier's and g's */
    tc__local_invalidate(l, h);
    ck_assert(!has(l, "k"));
    /* The entry is retired: its reference goes once no read can be on it. */
    tc__reclaim_now();
    ck_assert_uint_eq(atomic_load(&g->refs), 1); /* g: the tier let go */
    ck_assert_int_eq(memcmp(tc__ref_data(g), "payload", 7), 0);
    tc__ref_drop(g);

    /* A held value survives eviction and the tier's end. */
    size_t c = charge_of(2, 7);
    tc_local *small = new_local(4 * c, 1);
    ck_assert(put(small, "v0", "payload"));
    ck_assert(get(small, "v0", &g));
    ck_assert_uint_eq(atomic_load(&g->refs), 2); /* g, the tier */
    char k[16];
    for (int i = 1; i < 20; i++) {
        snprintf(k, sizeof k, "v%d", i % 10);
        ck_assert(put(small, k, "PAYLOAD"));
    }
    ck_assert_uint_gt(stats_of(small).evictions, 0);
    tc__reclaim_now();
    ck_assert_uint_eq(atomic_load(&g->refs), 1);
    ck_assert_int_eq(memcmp(tc__ref_data(g), "payload", 7), 0);
    tc__ref_drop(g);

    ck_assert(get(small, "v9", &g));
    tc__local_free(small);
    ck_assert_uint_eq(atomic_load(&g->refs), 1);
    ck_assert_int_eq(memcmp(tc__ref_data(g), "PAYLOAD", 7), 0);
    tc__ref_drop(g);
    tc__local_free(l);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
}
END_TEST

static bool borrow(tc_local *l, const char *k, tc_ref **out, tc_hazard **slot)
{
    return tc__local_borrow(l, hash_of(k), k, strlen(k), tc__now_ns(), out, slot);
}

/* Borrowed hits leave the value's count alone (a hazard slot holds the value instead),
 * and the value outlives its entry, the grace period and the tier for as long as the slot
 * holds it; with every slot of the thread taken, a hit falls back to a reference. Every hit
 * is counted, in total and for its key type. */
START_TEST(test_local_borrow)
{
    enum { TYPE = 3, MANY = TC_HAZARDS + 3 };
    tc_local *l = new_local(1u << 20, 1);
    put_typed(l, "k", "payload", TYPE);
    tc_ref *r;
    tc_hazard *s0;
    ck_assert(borrow(l, "k", &r, &s0));
    ck_assert_ptr_nonnull(s0);
    ck_assert_uint_eq(atomic_load(&r->refs), 1); /* the tier's: a borrow counts none */
    tc__local_unborrow(r, s0);

    tc_ref *b[MANY];
    tc_hazard *slot[MANY];
    for (int i = 0; i < 1000; i++) {
        ck_assert(borrow(l, "k", &b[0], &slot[0]));
        ck_assert_ptr_eq(b[0], r);
        ck_assert_ptr_nonnull(slot[0]);
        ck_assert_uint_eq(atomic_load(&r->refs), 1); /* no count taken */
        tc__local_unborrow(b[0], slot[0]);
    }
    int counted = 0;
    for (int i = 0; i < MANY; i++) {
        ck_assert(borrow(l, "k", &b[i], &slot[i]));
        counted += slot[i] == NULL;
    }
    ck_assert_int_eq(counted, MANY - TC_HAZARDS); /* the slots ran out: references */
    ck_assert_uint_eq(atomic_load(&r->refs), 1 + (uint64_t)counted);

    /* The tier lets go; passes run; the value stays (ASan: no use after free). */
    tc__local_invalidate(l, hash_of("k"));
    for (int i = 0; i < 3; i++)
        tc__reclaim_now();
    ck_assert_uint_eq(atomic_load(&r->refs), (uint64_t)counted);
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    for (int i = MANY - 1; i >= TC_HAZARDS; i--)
        tc__local_unborrow(b[i], slot[i]); /* the counted ones: the last retires r */
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 1); /* held by the slots */
    tc__local_free(l);                           /* and the tier goes too */
    for (int i = 0; i < TC_HAZARDS; i++)
        ck_assert_int_eq(memcmp(tc__ref_data(b[i]), "payload", 7), 0);
    for (int i = 0; i < TC_HAZARDS; i++) {
        tc__local_unborrow(b[i], slot[i]);
        tc__reclaim_now();
        ck_assert_uint_eq(tc__reclaim_pending(), i < TC_HAZARDS - 1); /* the last frees */
    }

    uint64_t hits = 1000 + MANY;
    l = new_local(1u << 20, 1);
    put_typed(l, "k", "x", TYPE);
    for (uint64_t i = 0; i < hits; i++) {
        ck_assert(borrow(l, "k", &b[0], &slot[0]));
        tc__local_unborrow(b[0], slot[0]);
    }
    ck_assert(!borrow(l, "nope", &b[0], &slot[0]));
    ck_assert_ptr_null(b[0]);
    uint64_t type_hits[TC_LOCAL_TYPES], type_ev[TC_LOCAL_TYPES], type_rej[TC_LOCAL_TYPES];
    tc__local_type_stats(l, type_hits, type_ev, type_rej);
    ck_assert_uint_eq(type_hits[TYPE], hits);
    ck_assert_uint_eq(stats_of(l).hits, hits);
    ck_assert_uint_eq(stats_of(l).misses, 1);
    tc__local_free(l);
}
END_TEST

/* tc__local_keep turns a borrowed value into a reference while the tier (or anybody) still
 * counts one, and never revives a value whose count reached zero. */
START_TEST(test_local_keep)
{
    tc_local *l = new_local(1u << 20, 1);
    ck_assert(put(l, "k", "payload"));
    tc_ref *r, *kept;
    tc_hazard *slot;
    ck_assert(borrow(l, "k", &r, &slot));
    ck_assert_ptr_nonnull(slot);
    kept = tc__local_keep(r, slot);
    ck_assert_ptr_eq(kept, r);
    ck_assert_uint_eq(atomic_load(&r->refs), 2); /* the tier's and kept */
    ck_assert_ptr_null(atomic_load(slot));       /* the slot is free again */
    tc__ref_drop(kept);

    ck_assert(borrow(l, "k", &r, &slot));
    tc__local_invalidate(l, hash_of("k"));
    tc__reclaim_now();
    ck_assert_uint_eq(atomic_load(&r->refs), 0); /* retired: only the slot holds it */
    ck_assert_uint_eq(tc__reclaim_pending(), 1);
    ck_assert_ptr_null(tc__local_keep(r, slot));
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    tc__local_free(l);
}
END_TEST

/* A value borrowed by a thread that then exits, released later by another thread: the
 * slot keeps it alive past the thread, and the release lets the next pass free it. */
static void *borrow_and_exit(void *arg)
{
    void **io = arg;
    tc_ref *r;
    tc_hazard *slot;
    if (borrow(io[0], "k", &r, &slot)) {
        io[1] = r;
        io[2] = slot;
    }
    return NULL;
}

START_TEST(test_local_borrow_thread_exit)
{
    tc_local *l = new_local(1u << 20, 1);
    ck_assert(put(l, "k", "payload"));
    void *io[3] = {l, NULL, NULL};
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, borrow_and_exit, io), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_ptr_nonnull(io[2]);
    tc_ref *r = io[1];
    tc__local_invalidate(l, hash_of("k"));
    tc__reclaim_now();
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 1);
    ck_assert_int_eq(memcmp(tc__ref_data(r), "payload", 7), 0);
    tc__local_unborrow(r, io[2]);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    tc__local_free(l);
}
END_TEST

/* Regression: a slot released by another thread and reused by its owner. The owner must
 * see the release (acquire) before it reuses the slot, or nothing orders the releasing
 * thread's reads of the old value before the pass that frees it (TSan reports the race). */
static tc_local *slot_tier;
static tc_ref *slot_v1;
static tc_hazard *slot_s1;
static atomic_bool slot_done;
static volatile int slot_sink;

static void *slot_reader(void *arg)
{
    (void)arg;
    int sum = 0;
    for (size_t i = 0; i < slot_v1->len; i++)
        sum += tc__ref_data(slot_v1)[i]; /* the reader's last use of the value */
    slot_sink = sum;
    tc__local_unborrow(slot_v1, slot_s1);
    while (!atomic_load(&slot_done)) /* stays alive: its exit would synchronise */
        usleep(1000);
    return NULL;
}

static void *slot_releaser(void *arg)
{
    void **vs = arg;
    tc__local_unborrow(vs[0], vs[1]);
    return NULL;
}

START_TEST(test_local_slot_reuse_after_foreign_release)
{
    slot_tier = new_local(1u << 20, 1);
    ck_assert(put(slot_tier, "k1", "value one"));
    ck_assert(put(slot_tier, "k2", "value two"));
    ck_assert(borrow(slot_tier, "k1", &slot_v1, &slot_s1));
    pthread_t b, c;
    ck_assert_int_eq(pthread_create(&b, NULL, slot_reader, NULL), 0);
    void *vs[2] = {NULL, NULL};
    for (;;) { /* borrow k2 until it lands in the slot the reader frees */
        tc_ref *v2;
        tc_hazard *s2;
        ck_assert(borrow(slot_tier, "k2", &v2, &s2));
        if (s2 == slot_s1) {
            vs[0] = v2, vs[1] = s2;
            break;
        }
        tc__local_unborrow(v2, s2);
        usleep(100);
    }
    ck_assert_int_eq(pthread_create(&c, NULL, slot_releaser, vs), 0);
    ck_assert_int_eq(pthread_join(c, NULL), 0);
    tc__local_invalidate(slot_tier, hash_of("k1"));
    tc__reclaim_now(); /* the entry goes, and with it k1's value: no slot holds it */
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    atomic_store(&slot_done, true);
    ck_assert_int_eq(pthread_join(b, NULL), 0);
    tc__local_free(slot_tier);
}
END_TEST

/* Regression: a thread that reads the tier from its last thread-exit destructor round,
 * after its record was released, must not take a record it can never release (threads
 * beyond the first few would then get ever new records and share the stats stripe). */
#ifndef UNDER_TSAN
static pthread_key_t late_key;
static tc_local *late_tier;
static __thread int late_rounds;

static void late_reader(void *arg)
{
    (void)arg;
    if (++late_rounds < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(late_key, (void *)1); /* ask for another round */
        return;
    }
    tc_ref *r;
    if (get(late_tier, "k", &r)) /* works without a record */
        tc__ref_drop(r);
}

static void *late_thread(void *arg)
{
    unsigned *id = arg;
    tc_rec *me = tc__rec_self();
    *id = me ? me->id : UINT_MAX;
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

START_TEST(test_local_read_from_thread_exit)
{
    late_tier = new_local(1u << 20, 1);
    ck_assert(put(late_tier, "k", "v"));
    ck_assert_ptr_nonnull(tc__rec_self());
    ck_assert_int_eq(pthread_key_create(&late_key, late_reader), 0);
    unsigned id = 0, max_id = 0;
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        ck_assert_int_eq(pthread_create(&t, NULL, late_thread, &id), 0);
        ck_assert_int_eq(pthread_join(t, NULL), 0);
        max_id = id > max_id ? id : max_id;
    }
    ck_assert_uint_le(max_id, 2); /* this thread's record and one recycled one */
    ck_assert_uint_eq(stats_of(late_tier).hits, 20);
    tc__local_free(late_tier);
}
END_TEST

/* Regression: a fork while another thread is in a pass. The child's thread that gets that
 * record must still run passes (the record's "in a pass" flag is the parent thread's). */
static atomic_int fork_stage;

static void *mid_pass_thread(void *arg)
{
    (void)arg;
    tc_rec *me = tc__rec_self();
    me->reclaiming = true; /* as if forked in the middle of a pass */
    atomic_store(&fork_stage, 1);
    while (atomic_load(&fork_stage) != 2)
        usleep(1000);
    me->reclaiming = false;
    return NULL;
}

static void *child_retirer(void *arg)
{
    tc_local *l = arg;
    char k[16];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "k%d", i);
        put(l, k, "v");
        tc__local_invalidate(l, hash_of(k));
    }
    tc__reclaim_now();
    return (void *)(uintptr_t)tc__reclaim_pending();
}

START_TEST(test_local_fork_during_pass)
{
    tc_local *l = new_local(1u << 20, 1);
    ck_assert_ptr_nonnull(tc__rec_self());
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, mid_pass_thread, NULL), 0);
    while (atomic_load(&fork_stage) != 1)
        usleep(1000);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        pthread_t c;
        void *pending = (void *)1;
        if (pthread_create(&c, NULL, child_retirer, l) != 0 || pthread_join(c, &pending) != 0)
            _exit(2);
        tc__local_free(l); /* the child's copy (valgrind counts it in the child's exit) */
        _exit(pending == NULL ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    atomic_store(&fork_stage, 2);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    tc__local_free(l);
}
END_TEST
#endif /* UNDER_TSAN */

/* Readers borrowing and getting a few hot keys while a writer replaces, invalidates and
 * evicts them as fast as it can: every value read is whole (each carries its own check
 * byte pattern), no read sees freed memory (ASan, TSan), and every hit is counted once. */
enum { RW_READERS = 3, RW_KEYS = 4, RW_READS = 40000 };

typedef struct rw_arg {
    tc_local *l;
    atomic_bool *stop;
    long hits;
    pthread_t tid;
} rw_arg;

/* True if r is whole: "<n>:" then the byte n % 26 + 'a' repeated to the end. (One
 * assertion per value: each of Check's assertions costs a write to its pipe.) */
static bool value_whole(const tc_ref *r)
{
    unsigned n = 0;
    size_t i = 0;
    while (i < r->len && tc__ref_data(r)[i] != ':')
        n = n * 10 + (unsigned)(tc__ref_data(r)[i++] - '0');
    if (i == r->len)
        return false;
    for (i++; i < r->len; i++)
        if (tc__ref_data(r)[i] != 'a' + (int)(n % 26))
            return false;
    return true;
}

static void *rw_reader(void *arg)
{
    rw_arg *a = arg;
    char k[16];
    for (int i = 0; i < RW_READS; i++) {
        snprintf(k, sizeof k, "hot%d", i % RW_KEYS);
        tc_ref *r;
        tc_hazard *slot = NULL;
        bool hit = i % 4 ? borrow(a->l, k, &r, &slot) : get(a->l, k, &r);
        if (!hit)
            continue;
        a->hits++;
        ck_assert(value_whole(r));
        tc__local_unborrow(r, slot);
    }
    return NULL;
}

static void *rw_writer(void *arg)
{
    rw_arg *a = arg;
    char k[16], v[200];
    for (unsigned n = 0; !atomic_load(a->stop); n++) {
        snprintf(k, sizeof k, "hot%u", n % RW_KEYS);
        int len = snprintf(v, sizeof v, "%u:", n);
        memset(v + len, 'a' + (int)(n % 26), 20 + n % 150);
        v[len + 20 + n % 150] = '\0';
        if (n % 7 == 0)
            tc__local_invalidate(a->l, hash_of(k));
        else
            put(a->l, k, v);
    }
    return NULL;
}

/* Runs RW_READERS readers against one writer on l until the readers are done; their hits. */
static long read_while_writing(tc_local *l)
{
    atomic_bool stop = false;
    rw_arg w = {.l = l, .stop = &stop}, r[RW_READERS];
    ck_assert_int_eq(pthread_create(&w.tid, NULL, rw_writer, &w), 0);
    for (int i = 0; i < RW_READERS; i++) {
        r[i] = (rw_arg){.l = l, .stop = &stop};
        ck_assert_int_eq(pthread_create(&r[i].tid, NULL, rw_reader, &r[i]), 0);
    }
    long hits = 0;
    for (int i = 0; i < RW_READERS; i++) {
        ck_assert_int_eq(pthread_join(r[i].tid, NULL), 0);
        hits += r[i].hits;
    }
    atomic_store(&stop, true);
    ck_assert_int_eq(pthread_join(w.tid, NULL), 0);
    return hits;
}

START_TEST(test_local_read_while_writing)
{
    /* Small: the writer's stores also evict. */
    tc_local *l = new_local(3 * charge_of(4, 170), 1);
    long hits = read_while_writing(l);
    ck_assert_int_gt(hits, 0);
    ck_assert_uint_eq(stats_of(l).hits, (uint64_t)hits);
    ck_assert_uint_gt(stats_of(l).evictions, 0);
    tc__local_free(l);
}
END_TEST

/* A retire array that cannot grow (tc__reclaim_test_limit): the retiring thread waits out
 * the grace period, then frees what no slot holds and parks what a slot holds; a later pass
 * frees the parked ones once released. Then readers run against a writer whose every
 * retirement takes that path (ASan, TSan: no use after free, no race). */
START_TEST(test_local_retire_full)
{
    tc_local *l = new_local(1u << 20, 1);
    ck_assert(put(l, "k0", "payload0"));
    ck_assert(put(l, "k1", "payload1"));
    ck_assert(put(l, "k2", "payload2"));
    tc_ref *r0, *r1;
    tc_hazard *s0, *s1;
    ck_assert(borrow(l, "k0", &r0, &s0));
    ck_assert(borrow(l, "k1", &r1, &s1));
    ck_assert_ptr_nonnull(s0);
    ck_assert_ptr_nonnull(s1);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    tc__reclaim_test_limit(1);
    tc__local_invalidate(l, hash_of("k0")); /* into the array, held by s0 */
    ck_assert_uint_eq(tc__reclaim_pending(), 1);
    tc__local_invalidate(l, hash_of("k1")); /* the array is full: parked, held by s1 */
    ck_assert_uint_eq(tc__reclaim_pending(), 2);
    tc__local_invalidate(l, hash_of("k2")); /* full again, held by nobody: freed now */
    ck_assert_uint_eq(tc__reclaim_pending(), 2);
    ck_assert_mem_eq(tc__ref_data(r0), "payload0", 8);
    ck_assert_mem_eq(tc__ref_data(r1), "payload1", 8);
    tc__local_unborrow(r1, s1);
    tc__reclaim_now(); /* the parked one goes */
    ck_assert_uint_eq(tc__reclaim_pending(), 1);
    tc__local_unborrow(r0, s0);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
    tc__local_free(l);

    l = new_local(3 * charge_of(4, 170), 1);
    ck_assert_int_gt(read_while_writing(l), 0);
    tc__local_free(l);
    tc__reclaim_now();
    tc__reclaim_test_limit(0);
    tc__reclaim_now();
    ck_assert_uint_eq(tc__reclaim_pending(), 0);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Hash collisions
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_collision)
{
    tc_local *l = new_local(1u << 20, 0);
    uint64_t h = hash_of("a"); /* "b" is given the same hash: a collision */
    tc_ref *va = ref_of("value of a"), *vb = ref_of("value of b"), *r;

    ck_assert(tc__local_store_if_fresh(l, h, "a", 1, va, NEVER, tc__local_ticket(l, h)));
    ck_assert(!tc__local_get(l, h, "b", 1, tc__now_ns(), &r));
    ck_assert_ptr_null(r);
    /* Same length, same first byte, longer: all misses. */
    ck_assert(!tc__local_get(l, h, "ab", 2, tc__now_ns(), &r));
    ck_assert(!tc__local_get(l, h, "", 0, tc__now_ns(), &r));
    /* The miss did not disturb a's entry. */
    ck_assert(tc__local_get(l, h, "a", 1, tc__now_ns(), &r));
    ck_assert_mem_eq(tc__ref_data(r), "value of a", 10);
    tc__ref_drop(r);

    /* Storing b under the same hash replaces a. */
    ck_assert(tc__local_store_if_fresh(l, h, "b", 1, vb, NEVER, tc__local_ticket(l, h)));
    ck_assert(!tc__local_get(l, h, "a", 1, tc__now_ns(), &r));
    ck_assert(tc__local_get(l, h, "b", 1, tc__now_ns(), &r));
    ck_assert_mem_eq(tc__ref_data(r), "value of b", 10);
    tc__ref_drop(r);
    ck_assert_uint_eq(tc__local_count(l), 1);
    ck_assert_uint_eq(stats_of(l).entries, 1);
    tc__reclaim_now();
    ck_assert_uint_eq(atomic_load(&va->refs), 1); /* the tier let go of a */

    tc__ref_drop(va);
    tc__ref_drop(vb);
    tc__local_free(l);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Eviction
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_eviction_budget)
{
    /* One shard, room for exactly 10 equal entries; plain CLOCK, so that which ones stay
     * does not depend on the frequency filter (with it, keys never read have no claim to
     * displace the first ones). */
    size_t c = charge_of(4, 16);
    size_t max = 10 * c + c / 2;
    tc_local *l = new_local(max, 1);
    tc__local_set_admission(l, false);
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        ck_assert(put(l, k, "0123456789abcdef"));
        ck_assert_uint_le(stats_of(l).bytes, max);
    }
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.entries, 10);
    ck_assert_uint_eq(st.bytes, 10 * c);
    ck_assert_uint_eq(st.evictions, 90);
    ck_assert_uint_eq(st.stores, 100);
    /* The hand goes over the buckets, so entries never hit leave in about the order they
     * came, not exactly: the newest stays, and the ten kept are among the newest twenty
     * (FIFO would keep the newest ten, a hand that ignored age any ten). */
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%03d", i);
        ck_assert_msg(!has(l, k) || i >= 80, "%s", k);
    }
    ck_assert(has(l, "k099"));
    tc__local_free(l);

    /* Many shards, keys of many sizes: every shard keeps within its share. */
    max = 64 * 1024;
    l = new_local(max, 0);
    char key[64], val[600];
    memset(val, 'x', sizeof val - 1);
    val[sizeof val - 1] = '\0';
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "user:%d:profile", i);
        put(l, key, val + (size_t)(i * 37) % (sizeof val - 1));
    }
    st = stats_of(l);
    ck_assert_uint_le(st.bytes, max);
    ck_assert_uint_gt(st.evictions, 0);
    ck_assert_uint_eq(st.entries + st.evictions, st.stores);
    ck_assert_uint_eq(tc__local_count(l), st.entries);
    tc__local_free(l);
}
END_TEST

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64: deterministic, so the measured ratios do not vary between runs. */
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* The entry keeps its hash folded to 32 bits: two hashes with the same fold, in the same
 * shard and bucket, are told apart by the key. A read of the other key misses; a store
 * replaces the other's entry (as for a full collision). */
START_TEST(test_local_fold_collision)
{
    tc_local *l = new_local(1u << 20, 1);
    uint64_t ha = hash_of("a");
    uint64_t hb = ha ^ ((uint64_t)0x100 << 32) ^ 0x100; /* same fold, other hash */
    tc_ref *va = ref_of("value of a"), *vb = ref_of("value of b"), *r;
    ck_assert(tc__local_store_if_fresh(l, ha, "a", 1, va, NEVER, tc__local_ticket(l, ha)));
    ck_assert(!tc__local_get(l, hb, "b", 1, tc__now_ns(), &r));
    ck_assert(tc__local_get(l, ha, "a", 1, tc__now_ns(), &r));
    ck_assert_mem_eq(tc__ref_data(r), "value of a", 10);
    tc__ref_drop(r);
    ck_assert(tc__local_store_if_fresh(l, hb, "b", 1, vb, NEVER, tc__local_ticket(l, hb)));
    ck_assert(!tc__local_get(l, ha, "a", 1, tc__now_ns(), &r));
    ck_assert(tc__local_get(l, hb, "b", 1, tc__now_ns(), &r));
    ck_assert_mem_eq(tc__ref_data(r), "value of b", 10);
    tc__ref_drop(r);
    ck_assert_uint_eq(stats_of(l).entries, 1);
    tc__ref_drop(va);
    tc__ref_drop(vb);
    tc__local_free(l);
    tc__reclaim_now();
}
END_TEST

/* One allocation per entry: the tier keeps a copy of the value's used bytes (not the
 * capacity the reader allocated), with its key and header, and the charge is that one
 * allocation. The overhead beyond key and value stays at most 80 bytes for small values
 * (it was 183-191 with two allocations, 107-111 with a 95-byte header). The copy keeps the
 * value's flags, type, stored-format header (and so its early-refresh metadata) and NUL. */
START_TEST(test_local_one_allocation)
{
    /* Issue 14's target: at most 48 bytes beyond key and value for values up to 128 bytes
     * (a 34-byte header, the value's NUL, malloc's word and rounding). */
    size_t small = charge_of(17, 16), mid = charge_of(17, 100);
    ck_assert_uint_le(small - 17 - 16, 48);
    ck_assert_uint_le(mid - 17 - 100, 48);
    /* Spare capacity is not copied, so not charged. */
    tc_local *l = new_local(1u << 20, 1);
    tc_ref *v = tc__ref_new(4000);
    tc_fmt_meta m = {.flags = TC_FMT_NEGATIVE | TC_FMT_XFETCH, .expiry_ms = 77, .delta_ms = 42};
    size_t hl = tc__fmt_header_len("", 0, &m);
    tc__fmt_write_header(v->buf, hl, &m);
    memcpy(v->buf + hl, "payload", 8);
    v->len = (uint32_t)hl + 7;
    tc__fmt_decode(v);
    v->type_id = 5;
    uint64_t h = hash_of("key");
    ck_assert(tc__local_store_if_fresh(l, h, "key", 3, v, NEVER, tc__local_ticket(l, h)));
    tc__ref_drop(v);
    ck_assert_uint_lt(stats_of(l).bytes, 200);
    tc_ref *r;
    ck_assert(get(l, "key", &r));
    ck_assert_uint_eq(r->len, 7);
    ck_assert_mem_eq(tc__ref_data(r), "payload", 8); /* and its NUL */
    ck_assert_mem_eq(r->buf, TC_FMT_MAGIC, TC_FMT_MAGIC_LEN);
    ck_assert_uint_eq(r->flags & ~TC_REF_ENTRY, TC_REF_NEGATIVE | TC_REF_XFETCH | TC_REF_HEADER);
    ck_assert_uint_eq(tc__ref_off(r), hl); /* read from the header it keeps */
    ck_assert_uint_eq(r->type_id, 5);
    ck_assert_uint_eq(tc__fmt_delta_ms(r), 42);
    ck_assert_int_eq(tc__fmt_expiry_ms(r), 77);
    tc__ref_drop(r);
    tc__local_free(l);
    tc__reclaim_now();
}
END_TEST

/* The admission sketch's counters are four bits, two a byte: it costs an eighth of the
 * budget (a sixteenth of it per row of counters, one counter per 16 budget bytes). */
START_TEST(test_local_sketch_size)
{
    tc_local *l = new_local(1u << 20, 1);
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.sketch_bytes, (1u << 20) / 8);
    ck_assert_uint_gt(st.table_bytes, 0);
    tc__local_free(l);
}
END_TEST

/* An entry keeps its key's length in 16 bits: a longer key is not kept (a reject, as a
 * value too large), and a read of it misses rather than compare a cut length. */
START_TEST(test_local_key_too_long)
{
    tc_local *l = new_local(1u << 20, 1);
    size_t klen = 70000;
    char *k = malloc(klen + 1);
    ck_assert_ptr_nonnull(k);
    memset(k, 'k', klen);
    k[klen] = '\0';
    uint64_t h = hash_of(k);
    tc_ref *v = tc__ref_copy("v", 1);
    ck_assert(!tc__local_store_if_fresh(l, h, k, klen, v, NEVER, tc__local_ticket(l, h)));
    tc__ref_drop(v);
    tc_ref *r;
    ck_assert(!tc__local_get(l, h, k, klen, tc__now_ns(), &r));
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.rejects, 1);
    ck_assert_uint_eq(st.entries, 0);
    /* The longest key kept. */
    k[UINT16_MAX] = '\0';
    ck_assert(put(l, k, "v"));
    ck_assert(has(l, k));
    free(k);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_too_big)
{
    /* A value larger than the whole budget is refused, counted as not kept (a reject) and
     * evicts nothing for it. */
    size_t c = charge_of(2, 8);
    tc_local *l = new_local(4 * (4 * c), 4); /* four shards of four entries each */
    ck_assert(put(l, "k1", "01234567"));
    ck_assert(put(l, "k2", "01234567"));
    tc_local_stats before = stats_of(l);

    tc_ref *big = tc__ref_new(16 * c);
    ck_assert_ptr_nonnull(big);
    big->len = 16 * c;
    memset(big->buf, 'b', big->len);
    big->type_id = 7;
    uint64_t h = hash_of("big");
    ck_assert(!tc__local_store_if_fresh(l, h, "big", 3, big, NEVER, tc__local_ticket(l, h)));
    ck_assert_uint_eq(atomic_load(&big->refs), 1);
    tc__ref_drop(big);

    tc_local_stats after = stats_of(l);
    ck_assert_uint_eq(after.store_rejects, before.store_rejects + 1);
    ck_assert_uint_eq(after.rejects, before.rejects + 1); /* too large: a reject */
    ck_assert_uint_eq(after.entries, 2);
    ck_assert_uint_eq(after.bytes, before.bytes);
    ck_assert_uint_eq(after.evictions, 0);
    ck_assert(!has(l, "big"));
    expect(l, "k1", "01234567");
    expect(l, "k2", "01234567");
    uint64_t hits[TC_LOCAL_TYPES], evictions[TC_LOCAL_TYPES], rejects[TC_LOCAL_TYPES];
    tc__local_type_stats(l, hits, evictions, rejects);
    ck_assert_uint_eq(rejects[7], 1); /* and per key type */
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_larger_than_share)
{
    /* A value larger than its shard's share but within the whole budget is kept: the
     * other shards make room for it, and the tier stays within its budget. */
    size_t c = charge_of(6, 8);
    size_t max = 4 * (8 * c); /* four shards of eight entries each */
    tc_local *l = new_local(max, 4);
    char k[16];
    for (int i = 0; i < 64; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        put(l, k, "01234567");
    }
    tc_ref *big = tc__ref_new(12 * c); /* a shard's share and a half */
    ck_assert_ptr_nonnull(big);
    big->len = 12 * c;
    memset(big->buf, 'b', big->len);
    uint64_t h = hash_of("big");
    ck_assert(tc__local_store_if_fresh(l, h, "big", 3, big, NEVER, tc__local_ticket(l, h)));
    tc__ref_drop(big);
    ck_assert(has(l, "big"));
    tc_local_stats st = stats_of(l);
    ck_assert_uint_le(st.bytes, max);
    ck_assert_uint_eq(tc__local_count(l), st.entries);
    /* Smaller values stored later push it out in time, and the budget holds throughout. */
    for (int i = 64; i < 200; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        put(l, k, "01234567");
        ck_assert_uint_le(stats_of(l).bytes, max);
    }
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_small_budget)
{
    /* The new user: a 16 KiB tier, 200 keys of 511-byte values, each written and
     * then read twice. The tier must hold some and answer the reads locally (before, the
     * budget was split over 64 shards of 256 bytes, and nothing was ever kept). */
    size_t max = 16 * 1024;
    tc_local *l = new_local(max, 0);
    char k[32], v[512];
    memset(v, 'v', 511);
    v[511] = '\0';
    int hits = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "user:%d:profile", i);
        uint64_t h = hash_of(k);
        tc_ref *r = ref_of(v);
        ck_assert(tc__local_store_write(l, h, k, strlen(k), r, NEVER, tc__local_ticket(l, h)));
        tc__ref_drop(r);
        hits += has(l, k);
        hits += has(l, k);
        ck_assert_uint_le(stats_of(l).bytes, max);
    }
    tc_local_stats st = stats_of(l);
    ck_assert_int_eq(hits, 400);
    ck_assert_uint_eq(st.hits, 400);
    ck_assert_uint_ge(st.entries, 10);
    ck_assert_uint_eq(st.stores, 200);
    /* Every value the tier let go was evicted or refused, and says so. */
    ck_assert_uint_eq(st.entries + st.evictions, st.stores);
    tc__local_free(l);
}
END_TEST

/* The admission window's ring: entries removed from it leave cleared slots, which a full
 * ring drops (compaction), so a churn of stores and invalidations never pushes new entries
 * past the window; its bytes follow its entries. */
START_TEST(test_local_window_ring)
{
    tc_local *l = new_local(1u << 20, 1); /* a 10 KiB window: a ring of 256 slots */
    char k[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "c%d", i);
        ck_assert(put(l, k, "0123456789"));
        tc__local_invalidate(l, hash_of(k));
    }
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.window_entries, 0);
    ck_assert_uint_eq(st.window_bytes, 0);
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof k, "w%d", i);
        ck_assert(put(l, k, "0123456789"));
    }
    st = stats_of(l);
    ck_assert_uint_eq(st.window_entries, 5);
    ck_assert_uint_eq(st.window_bytes, 5 * charge_of(2, 10));
    ck_assert_uint_eq(st.window_bytes, st.bytes);
    tc__local_invalidate(l, hash_of("w2"));
    st = stats_of(l);
    ck_assert_uint_eq(st.window_entries, 4);
    ck_assert_uint_eq(st.window_bytes, st.bytes);
    tc__local_free(l);
}
END_TEST

/* A store that must evict more entries than one critical section collects (VICTIMS) lets
 * the lock go, retires them and goes on until the shard is within its share. */
START_TEST(test_local_evict_many)
{
    size_t c = charge_of(4, 10);
    tc_local *l = new_local(64 * 1024, 1);
    tc__local_set_admission(l, false);
    char k[16];
    int n = 0;
    for (; (n + 1) * c <= 64 * 1024; n++) {
        snprintf(k, sizeof k, "k%03d", n);
        ck_assert(put(l, k, "0123456789"));
    }
    ck_assert_uint_eq(stats_of(l).evictions, 0);
    static char big[40 * 1024];
    memset(big, 'b', sizeof big - 1);
    ck_assert(put(l, "big", big));
    tc_local_stats st = stats_of(l);
    ck_assert_uint_gt(st.evictions, 100); /* several sections' worth */
    ck_assert_uint_le(st.bytes, 64 * 1024);
    ck_assert(has(l, "big"));
    ck_assert_uint_eq(st.entries + st.evictions, st.stores);
    ck_assert_uint_eq(tc__local_count(l), st.entries);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_one_entry)
{
    /* A tier with room for exactly one entry works: each store replaces the last. */
    size_t c = charge_of(2, 8);
    tc_local *l = new_local(c, 0);
    ck_assert(put(l, "k1", "01234567"));
    expect(l, "k1", "01234567");
    expect(l, "k1", "01234567");
    ck_assert(put(l, "k2", "76543210"));
    expect(l, "k2", "76543210");
    ck_assert(!has(l, "k1"));
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.entries, 1);
    ck_assert_uint_eq(st.bytes, c);
    ck_assert_uint_eq(st.evictions, 1);
    ck_assert_uint_eq(st.rejects, 0);
    /* One byte less, and nothing fits: every store is a reject. */
    tc_local *none = new_local(c - 1, 0);
    ck_assert(!put(none, "k1", "01234567"));
    ck_assert_uint_eq(stats_of(none).rejects, 1);
    ck_assert_uint_eq(stats_of(none).entries, 0);
    tc__local_free(none);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_budget_random)
{
    /* Mixed sizes, from a few bytes to more than a shard's share, stored, read and
     * invalidated at random over tiers of several sizes and shard counts: after every
     * store the tier is within its budget, and its counts agree with its contents. */
    static const struct {
        size_t max;
        unsigned shards;
    } tiers[] = {{2000, 0},       {16 * 1024, 0}, {16 * 1024, 4},
                 {200 * 1024, 0}, {1 << 20, 0},   {1 << 20, 64}};
    uint64_t seed = 7;
    char *val = malloc(300 * 1024);
    ck_assert_ptr_nonnull(val);
    memset(val, 'x', 300 * 1024);
    for (size_t t = 0; t < sizeof tiers / sizeof tiers[0]; t++) {
        size_t max = tiers[t].max;
        tc_local *l = new_local(max, tiers[t].shards);
        uint64_t stored = 0, refused = 0;
        for (int i = 0; i < 4000; i++) {
            char k[32];
            snprintf(k, sizeof k, "k:%d", (int)(rng_next(&seed) % 500));
            uint64_t r = rng_next(&seed);
            size_t len;
            switch (r % 8) {
            case 0:
                len = (size_t)(r >> 8) % (max + 64); /* up to the whole budget, and past it */
                break;
            case 1:
            case 2:
                len = (size_t)(r >> 8) % 4096;
                break;
            default:
                len = (size_t)(r >> 8) % 200;
            }
            if (len > 300 * 1024)
                len = 300 * 1024;
            uint64_t h = hash_of(k);
            if ((r >> 40) % 10 == 0) {
                tc__local_invalidate(l, h);
                continue;
            }
            if ((r >> 40) % 10 < 4) {
                has(l, k);
                continue;
            }
            tc_ref *v = tc__ref_copy(val, len);
            ck_assert_ptr_nonnull(v);
            if (tc__local_store_if_fresh(l, h, k, strlen(k), v, NEVER, tc__local_ticket(l, h)))
                stored++;
            else
                refused++;
            tc__ref_drop(v);
            tc_local_stats st = stats_of(l);
            ck_assert_msg(st.bytes <= max, "tier %zu: %llu bytes held, budget %zu", t,
                          (unsigned long long)st.bytes, max);
            ck_assert_uint_eq(tc__local_count(l), st.entries);
        }
        tc_local_stats st = stats_of(l);
        ck_assert_uint_gt(stored, 0);
        ck_assert_uint_eq(st.stores, stored);
        ck_assert_uint_eq(st.store_rejects, refused);
        ck_assert_uint_le(refused, st.rejects); /* every refusal counted as not kept */
        tc__local_free(l);
    }
    free(val);
}
END_TEST

/* The sanitizers replace malloc, and mallinfo2 came with glibc 2.33. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)) &&          \
    !defined(__SANITIZE_ADDRESS__) && !defined(UNDER_TSAN)
#if defined(__has_feature)
#if !__has_feature(address_sanitizer)
#define HAVE_HEAP_COUNT 1
#endif
#else
#define HAVE_HEAP_COUNT 1
#endif
#endif

#ifdef HAVE_HEAP_COUNT
START_TEST(test_local_charge_is_memory)
{
    /* The budget counts what entries really cost: fill a tier and compare its charge with
     * the bytes malloc handed out for the entries (keys, values, headers, the allocator's
     * own header and rounding). Tolerance: 10% either way. */
    static const size_t vlens[] = {0, 16, 100, 1000, 3000};
    char val[3000];
    memset(val, 'v', sizeof val);
    for (size_t i = 0; i < sizeof vlens / sizeof vlens[0]; i++) {
        tc_local *l = new_local(64u << 20, 0);
        tc__reclaim_now();
        size_t before = mallinfo2().uordblks;
        for (int k = 0; k < 5000; k++) {
            char key[40];
            snprintf(key, sizeof key, "tenant:%d:user:%d", k % 7, k);
            tc_ref *r = tc__ref_copy(val, vlens[i]);
            ck_assert_ptr_nonnull(r);
            uint64_t h = hash_of(key);
            ck_assert(
                tc__local_store_if_fresh(l, h, key, strlen(key), r, NEVER, tc__local_ticket(l, h)));
            tc__ref_drop(r);
        }
        tc__reclaim_now();
        double real = (double)(mallinfo2().uordblks - before);
        double charge = (double)stats_of(l).bytes;
        ck_assert_msg(charge >= 0.9 * real && charge <= 1.1 * real,
                      "%zu-byte values: charge %.0f, malloc %.0f", vlens[i], charge, real);
        tc__local_free(l);
    }
}
END_TEST
#endif

/* ---------------------------------------------------------------------------------------
 * LRU behaviour
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_tinylfu_scan_resistance)
{
    /* With admission (the default), a scan of keys seen once cannot flush out a working
     * set that is asked for repeatedly: the scan's keys pass through the window and are
     * refused by the main region. */
    size_t c = charge_of(6, 10);
    tc_local *l = new_local(100 * c, 1);
    char k[16];
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 90; i++) {
            snprintf(k, sizeof k, "k%05d", i);
            if (!has(l, k))
                ck_assert(put(l, k, "0123456789"));
        }
    for (int i = 0; i < 500; i++) {
        snprintf(k, sizeof k, "n%05d", i);
        put(l, k, "0123456789");
    }
    int kept = 0;
    for (int i = 0; i < 90; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        kept += has(l, k);
    }
    ck_assert_int_ge(kept, 85);
    ck_assert_uint_le(stats_of(l).bytes, 100 * c);
    ck_assert_uint_ge(stats_of(l).rejects, 400); /* the scan's keys, refused by admission */
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_admission_moves_on)
{
    /* Stale entries with high counts must not lock newcomers out. Ten keys asked for many
     * times and then never again sit at the eviction hand with the highest counts; a new
     * working set, asked for a few times each, must still get in: the victim that wins a
     * contest moves on (the hand passes it), so the next newcomer faces another entry.
     * Before, the same stale entry won every contest until the sketch aged (thousands of
     * accesses later), and none of the new keys was ever kept. */
    size_t c = charge_of(6, 10);
    tc_local *l = new_local(100 * c, 1);
    char k[16];
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "s%05d", i);
        for (int j = 0; j < 15; j++)
            ck_assert(!has(l, k)); /* each miss counts */
        ck_assert(put(l, k, "0123456789"));
    }
    for (int i = 0; i < 90; i++) {
        snprintf(k, sizeof k, "f%05d", i);
        ck_assert(put(l, k, "0123456789"));
    }
    int hits = 0;
    for (int round = 0; round < 4; round++) {
        hits = 0;
        for (int i = 0; i < 50; i++) {
            snprintf(k, sizeof k, "n%05d", i);
            if (has(l, k))
                hits++;
            else
                put(l, k, "0123456789");
        }
    }
    ck_assert_msg(hits >= 40, "%d of 50 new keys hit in the last round", hits);
    ck_assert_uint_le(stats_of(l).bytes, 100 * c);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_lru_scan)
{
    /* Fill a 100-entry shard, hit the older half, then store 50 new keys. LRU keeps the
     * hit half and drops the untouched one; FIFO (hits ignored) would do the opposite. */
    size_t c = charge_of(6, 10);
    tc_local *l = new_local(100 * c + c / 2, 1);
    tc__local_set_admission(l, false); /* plain CLOCK */
    char k[16];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        ck_assert(put(l, k, "0123456789"));
    }
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        ck_assert(has(l, k));
    }
    for (int i = 0; i < 50; i++) {
        snprintf(k, sizeof k, "n%05d", i);
        ck_assert(put(l, k, "0123456789"));
    }
    int hot = 0, cold = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "k%05d", i);
        if (has(l, k))
            *(i < 50 ? &hot : &cold) += 1;
    }
    ck_assert_int_eq(hot, 50);
    ck_assert_int_eq(cold, 0);
    ck_assert_uint_eq(stats_of(l).evictions, 50);
    ck_assert_uint_eq(stats_of(l).rejects, 0); /* evicting others to make room is no reject */
    tc__local_free(l);
}
END_TEST

/* An exact LRU of cap entries over keys 0..n-1 (doubly linked through arrays). */
typedef struct lru_sim {
    int *prev, *next;
    char *in;
    int head, tail, size, cap;
} lru_sim;

static void lru_unlink(lru_sim *s, int k)
{
    if (s->prev[k] >= 0)
        s->next[s->prev[k]] = s->next[k];
    else
        s->head = s->next[k];
    if (s->next[k] >= 0)
        s->prev[s->next[k]] = s->prev[k];
    else
        s->tail = s->prev[k];
}

static bool lru_access(lru_sim *s, int k)
{
    bool hit = s->in[k];
    if (hit) {
        lru_unlink(s, k);
    } else {
        if (s->size == s->cap) {
            int v = s->tail;
            lru_unlink(s, v);
            s->in[v] = 0;
            s->size--;
        }
        s->in[k] = 1;
        s->size++;
    }
    s->prev[k] = -1;
    s->next[k] = s->head;
    if (s->head >= 0)
        s->prev[s->head] = k;
    else
        s->tail = k;
    s->head = k;
    return hit;
}

START_TEST(test_local_lru_ratio)
{
    /* On a Zipf(1) trace: with admission off (plain CLOCK) the tier's hit ratio is that of
     * an exact LRU of the same capacity (within sampling noise from sharding), and clearly
     * above FIFO's; with W-TinyLFU admission (the default) it is clearly above LRU's. */
    enum { NKEYS = 20000, OPS = 300000, CAP = 2000, SHARDS = 4 };
    double *cdf = malloc(NKEYS * sizeof *cdf);
    lru_sim s = {
        malloc(NKEYS * sizeof(int)), malloc(NKEYS * sizeof(int)), calloc(NKEYS, 1), -1, -1, 0, CAP};
    int *fifo = malloc(CAP * sizeof *fifo);
    char *fifo_in = calloc(NKEYS, 1);
    ck_assert(cdf && s.prev && s.next && s.in && fifo && fifo_in);
    double sum = 0;
    for (int i = 0; i < NKEYS; i++) {
        sum += 1.0 / (i + 1); /* Zipf with s = 1 */
        cdf[i] = sum;
    }

    size_t c = charge_of(10, 16);
    tc_local *l = new_local(CAP * c, SHARDS);
    tc_local *lfu = new_local(CAP * c, SHARDS);
    tc__local_set_admission(l, false);
    long lfu_hits = 0;
    uint64_t seed = 42;
    long hits = 0, lru_hits = 0, fifo_hits = 0;
    int fifo_pos = 0, fifo_size = 0;
    char k[16];
    for (int op = 0; op < OPS; op++) {
        double u = (double)(rng_next(&seed) >> 11) / 9007199254740992.0 * sum;
        int lo = 0, hi = NKEYS - 1;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        snprintf(k, sizeof k, "key:%06d", lo);
        if (has(l, k))
            hits++;
        else
            put(l, k, "0123456789abcdef");
        if (has(lfu, k))
            lfu_hits++;
        else
            put(lfu, k, "0123456789abcdef");
        lru_hits += lru_access(&s, lo);
        if (fifo_in[lo]) {
            fifo_hits++;
        } else {
            if (fifo_size == CAP)
                fifo_in[fifo[fifo_pos]] = 0;
            else
                fifo_size++;
            fifo[fifo_pos] = lo;
            fifo_pos = (fifo_pos + 1) % CAP;
            fifo_in[lo] = 1;
        }
    }
    double ratio = (double)hits / OPS, lru = (double)lru_hits / OPS,
           fifo_r = (double)fifo_hits / OPS;
    ck_assert_msg(ratio > lru - 0.025 && ratio < lru + 0.025,
                  "hit ratio %.4f, exact LRU %.4f, FIFO %.4f", ratio, lru, fifo_r);
    ck_assert_msg(ratio > fifo_r + 0.025, "hit ratio %.4f, exact LRU %.4f, FIFO %.4f", ratio, lru,
                  fifo_r);
    double tinylfu = (double)lfu_hits / OPS;
    ck_assert_msg(tinylfu > lru + 0.02, "W-TinyLFU %.4f, exact LRU %.4f", tinylfu, lru);
    ck_assert_uint_gt(stats_of(lfu).bytes, 0);
    tc__local_free(l);
    tc__local_free(lfu);
    free(cdf);
    free(s.prev);
    free(s.next);
    free(s.in);
    free(fifo);
    free(fifo_in);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Expiry
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_expiry)
{
    tc_local *l = new_local(1u << 20, 0);
    int64_t now = tc__now_ns();
    tc_ref *r;

    /* Already expired: a miss, removed on lookup. */
    ck_assert(put_until(l, "past", "v", now - 1));
    ck_assert(!get_at(l, "past", now, &r));
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.expirations, 1);
    ck_assert_uint_eq(st.entries, 0);

    /* Live until its expiry (kept in ticks: up to one tick early), then a miss. */
    int64_t exp = now + 50 * 1000000;
    ck_assert(put_until(l, "soon", "v", exp));
    ck_assert(get_at(l, "soon", exp - TC_LOCAL_EXPIRY_TICK_NS, &r));
    tc__ref_drop(r);
    ck_assert(!get_at(l, "soon", exp, &r));
    st = stats_of(l);
    ck_assert_uint_eq(st.expirations, 2);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    tc__local_free(l);
}
END_TEST

/* The expiry is coarse (ticks, 32 bits) but never late: for expiries at every offset
 * within a tick, a read at the expiry or after it misses, and a read one tick before it
 * hits. */
START_TEST(test_local_expiry_never_late)
{
    tc_local *l = new_local(1u << 20, 0);
    int64_t now = tc__now_ns();
    char k[32];
    tc_ref *r;
    for (int i = 0; i < 64; i++) {
        int64_t exp = now + 1000000000 + i * (TC_LOCAL_EXPIRY_TICK_NS / 64) + i % 7;
        snprintf(k, sizeof k, "k%d", i);
        ck_assert(put_until(l, k, "v", exp));
        ck_assert(get_at(l, k, exp - TC_LOCAL_EXPIRY_TICK_NS, &r));
        tc__ref_drop(r);
        ck_assert(!get_at(l, k, exp + 1, &r));
        ck_assert(put_until(l, k, "v", exp));
        ck_assert(!get_at(l, k, exp, &r));
    }
    /* An expiry already past when stored: expired for a reader whose clock reached it, even
     * one behind the storing thread's (the coarse clock, another core). */
    for (int i = 0; i < 8; i++) {
        int64_t past = tc__now_ns() - 5 * TC_LOCAL_EXPIRY_TICK_NS - i * 1000;
        ck_assert(put_until(l, "past", "v", past));
        ck_assert(!get_at(l, "past", past, &r));
    }
    /* An expiry beyond what 32 bits of ticks hold is cut short, never wrapped. */
    ck_assert(put_until(l, "far", "v", NEVER));
    ck_assert(get_at(l, "far", now, &r));
    tc__ref_drop(r);
    ck_assert(get_at(l, "far", now + (int64_t)10 * 24 * 3600 * 1000000000, &r));
    tc__ref_drop(r);
    tc__local_free(l);
}
END_TEST

/* An expired entry nobody looked up stays in the tier; 2^31 ticks (26 days) past its
 * expiry its 32 bits would read as live again. A read that late misses and sweeps it out. */
START_TEST(test_local_expiry_wrap)
{
    tc_local *l = new_local(1u << 20, 0);
    int64_t now = tc__now_ns(), tick = TC_LOCAL_EXPIRY_TICK_NS;
    ck_assert(put_until(l, "old", "v", now + 2 * tick));
    ck_assert(put(l, "other", "v"));
    tc_ref *r;
    int64_t late = now + ((int64_t)1 << 31) * tick + 3 * tick;
    ck_assert(!get_at(l, "old", late, &r));
    ck_assert(!get_at(l, "old", late + 5 * tick, &r));
    ck_assert_uint_eq(tc__local_count(l), 0); /* the sweep took every entry */
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_expiry_reclaim)
{
    /* Eviction takes expired entries (counted as expirations) before any live one. */
    size_t c = charge_of(3, 4);
    tc_local *l = new_local(10 * c, 1);
    char k[16];
    int64_t now = tc__now_ns();
    for (int i = 0; i < 5; i++) {
        snprintf(k, sizeof k, "e%02d", i);
        ck_assert(put_until(l, k, "dead", now));
    }
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "l%02d", i);
        ck_assert(put(l, k, "live"));
    }
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.expirations, 5);
    ck_assert_uint_eq(st.evictions, 0);
    for (int i = 0; i < 10; i++) {
        snprintf(k, sizeof k, "l%02d", i);
        ck_assert(has(l, k));
    }
    tc__local_free(l);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Fill guard
 * ------------------------------------------------------------------------------------- */

static bool store_with(tc_local *l, const char *k, const char *v, tc_ticket t, bool write)
{
    tc_ref *r = ref_of(v);
    bool ok = write ? tc__local_store_write(l, hash_of(k), k, strlen(k), r, NEVER, t)
                    : tc__local_store_if_fresh(l, hash_of(k), k, strlen(k), r, NEVER, t);
    tc__ref_drop(r);
    return ok;
}

START_TEST(test_local_fill_guard)
{
    tc_local *l = new_local(1u << 20, 1);
    uint64_t h = hash_of("k");

    /* An invalidation during the fetch refuses the fill. */
    tc_ticket t = tc__local_ticket(l, h);
    tc__local_invalidate(l, h);
    ck_assert(!store_with(l, "k", "old", t, false));
    ck_assert(!has(l, "k"));
    ck_assert_uint_eq(stats_of(l).store_rejects, 1);
    ck_assert_uint_eq(stats_of(l).rejects, 0); /* a stale fill is no reject */
    /* A ticket taken after it is fine. */
    ck_assert(store_with(l, "k", "new", tc__local_ticket(l, h), false));
    expect(l, "k", "new");

    /* So does a flush. */
    t = tc__local_ticket(l, h);
    tc__local_flush(l);
    ck_assert(!store_with(l, "k", "old", t, false));
    ck_assert(!has(l, "k"));

    /* An invalidation of another slot (same shard: there is one) leaves a fill alone. */
    bool found = false;
    char other[32];
    for (int i = 0; i < 100 && !found; i++) {
        snprintf(other, sizeof other, "other%d", i);
        tc_ticket to = tc__local_ticket(l, hash_of(other));
        tc__local_invalidate(l, h);
        found = store_with(l, other, "v", to, false);
    }
    ck_assert_msg(found, "every slot moved with one invalidation");
    expect(l, other, "v");

    /* ... but the invalidated slot itself refuses. */
    t = tc__local_ticket(l, h);
    tc__local_invalidate(l, h);
    ck_assert(!store_with(l, "k", "old", t, false));
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_store_write)
{
    tc_local *l = new_local(1u << 20, 1);
    uint64_t h = hash_of("k");

    /* A reader's fetch starts (it will bring "v1"), this process writes "v2" meanwhile:
     * the reader's late fill must not overwrite the write. */
    tc_ticket reader = tc__local_ticket(l, h);
    ck_assert(store_with(l, "k", "v2", tc__local_ticket(l, h), true));
    ck_assert(!store_with(l, "k", "v1", reader, false));
    expect(l, "k", "v2");

    /* A write whose ticket went stale (an invalidation crossed it) removes what is cached
     * instead of storing, whatever filled the entry meanwhile. */
    tc_ticket w = tc__local_ticket(l, h);
    tc__local_invalidate(l, h);
    ck_assert(store_with(l, "k", "v0", tc__local_ticket(l, h), false));
    expect(l, "k", "v0");
    ck_assert(!store_with(l, "k", "v3", w, true));
    ck_assert(!has(l, "k"));

    /* Two writes racing: the second to reach the tier with an older ticket removes. */
    tc_ticket w1 = tc__local_ticket(l, h), w2 = tc__local_ticket(l, h);
    ck_assert(store_with(l, "k", "w2", w2, true));
    ck_assert(!store_with(l, "k", "w1", w1, true));
    ck_assert(!has(l, "k"));
    tc__local_free(l);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Flush
 * ------------------------------------------------------------------------------------- */

/* Flush epochs are 32 bits in an entry. A flushed entry nobody looked up stays in the
 * tier; 2^32 flushes later its 32 bits would read as the floor's, live again, unless the
 * sweep that runs every 2^29 flushes took it out. A group drop's entry too. */
START_TEST(test_local_epoch_wrap)
{
    tc_local *l = new_local(1u << 20, 0);
    ck_assert(put(l, "old", "stale"));
    tc__local_flush(l);
    tc_ref *r;
    tc__local_test_flushes(l, ((uint64_t)1 << 32) - 1);
    ck_assert(!get(l, "old", &r));
    ck_assert(put(l, "new", "fresh"));
    ck_assert(get(l, "new", &r));
    tc__ref_drop(r);
    /* The same across a group drop. */
    uint64_t h = hash_of("g");
    tc_ref *v = tc__ref_copy("stale", 5);
    v->group = 7;
    ck_assert(tc__local_store_if_fresh(l, h, "g", 1, v, NEVER, tc__local_ticket(l, h)));
    tc__ref_drop(v);
    tc__local_drop_group(l, 7);
    tc__local_test_flushes(l, ((uint64_t)1 << 32) - 1);
    ck_assert(!get(l, "g", &r));
    ck_assert(get(l, "new", &r) == false); /* flushed too */
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_flush)
{
    tc_local *l = new_local(1u << 20, 0);
    char k[16];
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "f%d", i);
        ck_assert(put(l, k, "v"));
    }
    ck_assert_uint_eq(tc__local_count(l), 200);
    tc__local_flush(l);
    ck_assert_uint_eq(tc__local_count(l), 0);
    for (int i = 0; i < 200; i++) {
        snprintf(k, sizeof k, "f%d", i);
        ck_assert_msg(!has(l, k), "%s survived the flush", k);
    }
    /* Stale entries went on lookup and are not expirations. */
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.expirations, 0);
    /* The tier works after it. */
    ck_assert(put(l, "f1", "again"));
    expect(l, "f1", "again");
    tc__local_free(l);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Threads
 * ------------------------------------------------------------------------------------- */

enum { T_THREADS = 8, T_OPS = 20000, T_KEYS = 64 };

typedef struct worker {
    pthread_t tid;
    tc_local *l;
    size_t max_bytes;
    uint64_t seed;
    long gets, stores, hits, bad;
} worker;

static void *worker_run(void *arg)
{
    worker *w = arg;
    char k[16], v[400];
    tc_ref *held = NULL; /* dropped one operation later, to interleave with evictions */
    for (int op = 0; op < T_OPS; op++) {
        uint64_t x = rng_next(&w->seed);
        int n = snprintf(k, sizeof k, "t%02d", (int)(x % T_KEYS));
        uint64_t h = hash_of(k);
        unsigned what = (unsigned)(x >> 32) % 100;
        tc__ref_drop(held);
        held = NULL;
        if (what < 50) {
            w->gets++;
            if (tc__local_get(w->l, h, k, (size_t)n, tc__now_ns(), &held)) {
                w->hits++;
                /* Every value starts with its key: a hit on another key's value shows. */
                if (held->len < (size_t)n + 1 || memcmp(tc__ref_data(held), k, (size_t)n) != 0 ||
                    tc__ref_data(held)[n] != ':')
                    w->bad++;
            }
        } else if (what < 85) {
            tc_ticket t = tc__local_ticket(w->l, h);
            size_t len = (size_t)n + 1 + (size_t)(x >> 40) % 300;
            memset(v, 'x', len);
            memcpy(v, k, (size_t)n);
            v[n] = ':';
            tc_ref *r = tc__ref_copy(v, len);
            int64_t exp = (x & 0x100) ? tc__now_ns() + 1000000 : NEVER;
            w->stores++;
            if (what < 75)
                tc__local_store_if_fresh(w->l, h, k, (size_t)n, r, exp, t);
            else
                tc__local_store_write(w->l, h, k, (size_t)n, r, exp, t);
            tc__ref_drop(r);
        } else if (what < 98) {
            tc__local_invalidate(w->l, h);
        } else if (what < 99) {
            tc__local_flush(w->l);
        } else {
            tc_local_stats st;
            tc__local_stats(w->l, &st);
            if (st.bytes > w->max_bytes)
                w->bad++;
        }
    }
    tc__ref_drop(held);
    return NULL;
}

START_TEST(test_local_threads)
{
    size_t max = 8 * 1024;
    tc_local *l = new_local(max, 4);
    worker w[T_THREADS];
    for (int i = 0; i < T_THREADS; i++) {
        w[i] = (worker){.l = l, .max_bytes = max, .seed = (uint64_t)i * 7919 + 1};
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, worker_run, &w[i]), 0);
    }
    long gets = 0, stores = 0, hits = 0, bad = 0;
    for (int i = 0; i < T_THREADS; i++) {
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
        gets += w[i].gets;
        stores += w[i].stores;
        hits += w[i].hits;
        bad += w[i].bad;
    }
    tc_local_stats st = stats_of(l);
    ck_assert_int_eq(bad, 0);
    ck_assert_uint_eq(st.hits, (uint64_t)hits);
    ck_assert_uint_eq(st.hits + st.misses, (uint64_t)gets);
    ck_assert_uint_eq(st.stores + st.store_rejects, (uint64_t)stores);
    ck_assert_uint_le(st.bytes, max);
    ck_assert_uint_ge(st.stores, st.entries + st.evictions + st.expirations);
    ck_assert_uint_le(tc__local_count(l), st.entries);
    /* Not vacuous: the run hit, stored, refused and evicted. */
    ck_assert_uint_gt(st.hits, 0);
    ck_assert_uint_gt(st.stores, 0);
    ck_assert_uint_gt(st.store_rejects, 0);
    ck_assert_uint_gt(st.evictions, 0);
    tc__local_free(l);
}
END_TEST

/* More threads at once than there are own counter stripes (32): the rest share one with
 * atomic increments, and every hit is still counted once, in total and for its type. */
enum { MANY_THREADS = 40, MANY_HITS = 2000, MANY_TYPE = 5 };

typedef struct many_arg {
    tc_local *l;
    pthread_barrier_t *bar;
    unsigned id;
    long hits;
} many_arg;

static void *many_reader(void *arg)
{
    many_arg *a = arg;
    tc_rec *me = tc__rec_self();
    a->id = me ? me->id : UINT_MAX;
    pthread_barrier_wait(a->bar); /* every thread holds its record before any reads */
    for (int i = 0; i < MANY_HITS; i++) {
        tc_ref *r;
        tc_hazard *slot = NULL;
        if (i % 2 ? borrow(a->l, "hot", &r, &slot) : get(a->l, "hot", &r)) {
            a->hits++;
            tc__local_unborrow(r, slot);
        }
    }
    return NULL;
}

START_TEST(test_local_more_threads_than_stripes)
{
    tc_local *l = new_local(1u << 20, 1);
    put_typed(l, "hot", "value", MANY_TYPE);
    pthread_barrier_t bar;
    ck_assert_int_eq(pthread_barrier_init(&bar, NULL, MANY_THREADS), 0);
    many_arg a[MANY_THREADS];
    pthread_t t[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++) {
        a[i] = (many_arg){.l = l, .bar = &bar};
        ck_assert_int_eq(pthread_create(&t[i], NULL, many_reader, &a[i]), 0);
    }
    long hits = 0;
    unsigned max_id = 0;
    for (int i = 0; i < MANY_THREADS; i++) {
        ck_assert_int_eq(pthread_join(t[i], NULL), 0);
        hits += a[i].hits;
        max_id = a[i].id > max_id ? a[i].id : max_id;
    }
    pthread_barrier_destroy(&bar);
    ck_assert_uint_ge(max_id, 32); /* some threads shared the last stripe */
    ck_assert_int_eq(hits, (long)MANY_THREADS * MANY_HITS);
    uint64_t type_hits[TC_LOCAL_TYPES], type_ev[TC_LOCAL_TYPES], type_rej[TC_LOCAL_TYPES];
    tc__local_type_stats(l, type_hits, type_ev, type_rej);
    ck_assert_uint_eq(type_hits[MANY_TYPE], (uint64_t)hits);
    ck_assert_uint_eq(stats_of(l).hits, (uint64_t)hits);
    tc__local_free(l);
}
END_TEST

/* ---------------------------------------------------------------------------------------
 * Configuration
 * ------------------------------------------------------------------------------------- */

START_TEST(test_local_disabled)
{
    /* max_bytes 0: a valid tier that stores nothing. */
    tc_local *l = new_local(0, 0);
    ck_assert(!put(l, "k", "v"));
    ck_assert(!has(l, "k"));
    uint64_t h = hash_of("k");
    tc_ref *r = ref_of("v");
    ck_assert(!tc__local_store_write(l, h, "k", 1, r, NEVER, tc__local_ticket(l, h)));
    ck_assert_uint_eq(atomic_load(&r->refs), 1);
    tc__ref_drop(r);
    tc_local_stats st = stats_of(l);
    ck_assert_uint_eq(st.stores, 0);
    ck_assert_uint_eq(st.store_rejects, 2);
    ck_assert_uint_eq(st.entries, 0);
    ck_assert_uint_eq(st.bytes, 0);
    ck_assert_uint_eq(st.misses, 1);
    ck_assert_uint_eq(tc__local_count(l), 0);
    tc__local_free(l);
}
END_TEST

START_TEST(test_local_new_args)
{
    tc_local *l = (tc_local *)1;
    ck_assert_int_eq(tc__local_new(1024, 3, &l), TC_ERR_ARG);
    ck_assert_ptr_null(l);
    ck_assert_int_eq(tc__local_new(1024, 1u << 17, &l), TC_ERR_ARG);
    ck_assert_int_eq(tc__local_new(1024, 0, NULL), TC_ERR_ARG);
    ck_assert_int_eq(tc__local_new(1024, 1, &l), TC_OK);
    tc__local_free(l);
    tc__local_free(NULL);
    tc__ref_drop(NULL);
}
END_TEST

#ifdef TC_ALLOC_FAIL
START_TEST(test_local_alloc_fail)
{
    /* Fail each allocation of a run of stores in turn (the entries: the table never
     * grows): exactly that store is refused, the tier stays consistent, and nothing leaks
     * (LeakSanitizer). */
    enum { N = 400 };
    tc_ref *v = ref_of("value");
    char k[16];
    tc_local *l = new_local(1u << 24, 1);
    tc__alloc_fail_at(0);
    for (int i = 0; i < N; i++) {
        snprintf(k, sizeof k, "a%d", i);
        ck_assert(tc__local_store_if_fresh(l, hash_of(k), k, strlen(k), v, NEVER,
                                           tc__local_ticket(l, hash_of(k))));
    }
    uint64_t total = tc__alloc_fail_at(0);
    tc__local_free(l);
    ck_assert_uint_ge(total, N);

    for (uint64_t nth = 1; nth <= total; nth++) {
        l = new_local(1u << 24, 1);
        tc__alloc_fail_at(nth);
        int failed = -1, stored = 0;
        for (int i = 0; i < N; i++) {
            snprintf(k, sizeof k, "a%d", i);
            if (tc__local_store_if_fresh(l, hash_of(k), k, strlen(k), v, NEVER,
                                         tc__local_ticket(l, hash_of(k))))
                stored++;
            else
                failed = i;
        }
        tc__alloc_fail_at(0);
        ck_assert_int_eq(stored, N - 1);
        ck_assert_int_ge(failed, 0);
        ck_assert_uint_eq(tc__local_count(l), (size_t)stored);
        for (int i = 0; i < N; i++) {
            snprintf(k, sizeof k, "a%d", i);
            ck_assert(has(l, k) == (i != failed));
        }
        tc__local_free(l);
    }
    ck_assert_uint_eq(atomic_load(&v->refs), 1);
    tc__ref_drop(v);
}
END_TEST
#endif

/* ------------------------------------------------------------------ fork mid-retirement */

/* A fork in one thread while another is at a pause point of reclaim.c (the hook holds it
 * there 300 ms, having told the forking thread): the child must find every retired object
 * named once, in an array that is still allocated. */
static atomic_int pause_where;    /* the pause point to hold, 0: none */
static atomic_bool paused;        /* the armed thread is held at it */
static __thread bool pause_armed; /* only the thread under test is held */

static void hold_at_pause(int where)
{
    if (!pause_armed || where != atomic_load(&pause_where))
        return;
    pause_armed = false;
    atomic_store(&paused, true);
    usleep(300000);
}

/* Forks once the armed thread is paused; the child releases rel[0..n) (may be NULL),
 * reclaims twice and exits 0 when everything retired was freed once. Returns the child's
 * wait status. */
static int fork_while_paused(tc_ref **rel, tc_hazard **slots, int n)
{
    while (!atomic_load(&paused))
        usleep(1000);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < n; i++)
            tc__local_unborrow(rel[i], slots[i]);
        tc__reclaim_now();
        tc__reclaim_now();
        _exit(tc__reclaim_pending() == 0 ? 0 : 3);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void *invalidate_four_and_exit(void *arg)
{
    pause_armed = true;
    char k[8];
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, "k%d", i);
        tc__local_invalidate(arg, hash_of(k));
    }
    return NULL; /* its retired entries (borrowed by the main thread) go to the shared array */
}

/* Regression: an exiting thread's retired objects were handed to the shared array and
 * only then forgotten by its record, outside the lock: a fork in between parked them in
 * the child a second time (a double free). */
START_TEST(test_local_fork_during_thread_exit)
{
#ifdef UNDER_TSAN
    return; /* a child of a multi-threaded fork: TSan refuses it (as check_fork) */
#endif
    tc_local *l = new_local(1u << 20, 1);
    tc_ref *r[4];
    tc_hazard *s[4];
    char k[8];
    for (int i = 0; i < 4; i++) {
        snprintf(k, sizeof k, "k%d", i);
        ck_assert(put(l, k, "payload"));
        ck_assert(borrow(l, k, &r[i], &s[i]));
    }
    atomic_store(&paused, false);
    atomic_store(&pause_where, TC_RECLAIM_PAUSE_EXITED);
    tc__reclaim_test_pause(hold_at_pause);
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, invalidate_four_and_exit, l), 0);
    int status = fork_while_paused(r, s, 4);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    tc__reclaim_test_pause(NULL);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    for (int i = 0; i < 4; i++)
        tc__local_unborrow(r[i], s[i]);
    tc__local_free(l);
}
END_TEST

static Suite *local_suite(void)
{
    Suite *s = suite_create("local");
    struct {
        const char *name;
        const TTest *test;
        int timeout;
    } cases[] = {
        {"roundtrip", test_local_roundtrip, 0},
        {"fork_thread_exit", test_local_fork_during_thread_exit, 0},
        {"refcount", test_local_refcount, 0},
        {"borrow", test_local_borrow, 0},
        {"keep", test_local_keep, 0},
        {"slot_reuse_after_foreign_release", test_local_slot_reuse_after_foreign_release, 0},
#ifndef UNDER_TSAN
        {"read_from_thread_exit", test_local_read_from_thread_exit, 0},
        {"fork_during_pass", test_local_fork_during_pass, 0},
#endif
        {"borrow_thread_exit", test_local_borrow_thread_exit, 0},
        {"read_while_writing", test_local_read_while_writing, 120},
        {"retire_full", test_local_retire_full, 120},
        {"collision", test_local_collision, 0},
        {"fold_collision", test_local_fold_collision, 0},
        {"one_allocation", test_local_one_allocation, 0},
        {"sketch_size", test_local_sketch_size, 0},
        {"eviction_budget", test_local_eviction_budget, 0},
        {"too_big", test_local_too_big, 0},
        {"key_too_long", test_local_key_too_long, 0},
        {"larger_than_share", test_local_larger_than_share, 0},
        {"small_budget", test_local_small_budget, 0},
        {"one_entry", test_local_one_entry, 0},
        {"window_ring", test_local_window_ring, 0},
        {"evict_many", test_local_evict_many, 0},
        {"budget_random", test_local_budget_random, 60},
#ifdef HAVE_HEAP_COUNT
        {"charge_is_memory", test_local_charge_is_memory, 0},
#endif
        {"lru_scan", test_local_lru_scan, 0},
        {"admission_moves_on", test_local_admission_moves_on, 0},
        {"tinylfu_scan", test_local_tinylfu_scan_resistance, 0},
        {"lru_ratio", test_local_lru_ratio, 60},
        {"expiry", test_local_expiry, 0},
        {"expiry_reclaim", test_local_expiry_reclaim, 0},
        {"expiry_never_late", test_local_expiry_never_late, 0},
        {"expiry_wrap", test_local_expiry_wrap, 0},
        {"epoch_wrap", test_local_epoch_wrap, 0},
        {"fill_guard", test_local_fill_guard, 0},
        {"store_write", test_local_store_write, 0},
        {"flush", test_local_flush, 0},
        {"threads", test_local_threads, 120},
        {"more_threads_than_stripes", test_local_more_threads_than_stripes, 120},
        {"disabled", test_local_disabled, 0},
        {"new_args", test_local_new_args, 0},
#ifdef TC_ALLOC_FAIL
        {"alloc_fail", test_local_alloc_fail, 300},
#endif
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        if (cases[i].timeout)
            tcase_set_timeout(tc, cases[i].timeout);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(local_suite(), false);
}
