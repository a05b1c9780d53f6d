/*
 * The local tier: reference-counted values in a power-of-two number of cache-line aligned
 * shards, each with its own writers' lock (a spinlock: shard_lock), hash table, CLOCK
 * hand (over the table's buckets), admission window (a ring of entry pointers), byte
 * budget, counters and fill-guard slot sequences.
 *
 * Reads take no lock and write nothing shared ("Reads"): they walk the table inside a read
 * section (reclaim.h), keep the value they found through a hazard slot of their own
 * thread, and count hits in their thread's stripe of the tier's counters. Writers (stores,
 * invalidations, evictions) take the shard lock; an entry they unlink is retired, and
 * freed with its reference to the value once no section can still see it.
 *
 * Locks: a shard lock is a leaf lock and guards its shard's writers' state. The table's
 * chains are atomics, changed only under it and read without it. The slot sequences are
 * atomics, bumped only under it, so tickets are read without it. The flush epoch is one
 * atomic per tier, bumped without a lock. Entries removed under a lock are retired after
 * it is released.
 *
 * Invariants (shard lock held): bytes is the sum of the entries' charges and never above
 * the budget; entries counts the table, window_bytes the window's part of bytes; an entry is live
 * only while its epoch (its ticket's) is at least the tier's flush floor and its group's floor, and
 * its expiry is in the future; dead ones are misses and are reclaimed lazily. Hash bits: 48..63
 * pick the shard, 32..39 the slot, 0..31 the bucket, so the three are independent.
 */
#include "config.h"

#include "local.h"
#include "reclaim.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define CACHE_LINE 64
/* The default number of shards: up to 64, but no more than leave each at least
 * MIN_SHARD_BYTES of the budget, so a small tier is one or a few shards whose entries,
 * admission window and sketch are not cut into pieces too small to work. */
#define DEFAULT_SHARDS 64u
#define MIN_SHARD_BYTES ((size_t)64 << 10)
#define MAX_SHARDS 65536u
#define SHARD_SHIFT 48
/* Expiry is kept in ticks of 2^20 ns (about 1 ms), 32 bits, compared as a serial number
 * with the reader's tick: right while the two are less than 2^31 ticks (26 days) apart.
 * An entry's expiry is at most MAX_AHEAD ticks ahead (any local_ttl_ms fits), and an expired
 * entry is reclaimed before it is SWEEP_TICKS past its expiry: the tier sweeps expired
 * entries out when that much time passed since the last sweep, and until it has, readers
 * treat every entry as a miss (late). Ticks round down, so an entry expires up to one tick
 * early, never late. */
#define TICK_SHIFT 20
#define MAX_AHEAD ((1u << 31) - (1u << 26))
#define SWEEP_TICKS ((int64_t)1 << 30)
/* Flush epochs are kept in 32 bits too, read as the signed distance from the tier's flush
 * floor: right while every entry's epoch is within 2^31 of it. A drop that leaves the floor
 * EPOCH_SPAN behind the epoch raises it (entries older than EPOCH_SPAN / 2 drops become
 * misses), and once the floor has moved EPOCH_SWEEP since the last sweep, entries below it
 * are swept out (epoch_moved). Between sweeps no entry falls 2^31 behind the floor. */
#define EPOCH_SPAN ((uint64_t)1 << 30)
#define EPOCH_SWEEP ((uint64_t)1 << 29)
/* Slots per shard. A fill is refused when any hash of its slot is invalidated during the
 * fetch, so more slots mean fewer needless refusals; 256 costs 2 KiB per shard, and with
 * 64 shards a busy invalidation stream (10k/s) refuses well under 0.1% of 1 ms fills. */
#define SLOTS 256u
#define SLOT_SHIFT 32
/* Buckets per shard: one per BUCKET_BYTES of its budget, rounded up to a power of two.
 * Entries cost at least ~100 bytes beyond key and value, so chains stay short without ever resizing
 * the table (which readers without a lock could not follow). */
#define BUCKET_BYTES 256u
#define MIN_BUCKETS 16u
#define MAX_BUCKETS (1u << 24)

/* An entry is its value: one allocation (tc_ref, ref.h) holding the tier's fields, the
 * value's bytes and NUL, and the key after them. It needs no retirement node (reclaim keeps
 * retired objects in arrays) and no list links (the CLOCK hand walks the buckets; the
 * window is a ring of pointers). Everything
 * readers read without a lock (chain, hcheck, klen, key, epoch, expiry, the value) is
 * fixed once the entry is published, but chain and referenced. Unlinked, it loses the
 * tier's reference at once (retire_victims); at the last reference it is retired once
 * (tc__ref_free), and freed when no read section can still be on it and no hazard slot
 * holds it. So a reader inside a section may find an entry whose count is already 0: it
 * takes a reference only from a count above 0 (hold_live). */
typedef tc_ref entry;

/* Reclaim may link a retired entry through its first word once no section can see it:
 * chain, which only sections read. */
_Static_assert(offsetof(tc_ref, chain) == 0, "a retired entry's first word is its chain");
_Static_assert(offsetof(tc_ref, buf) == 34, "the entry header is 34 bytes");

/* An entry's referenced byte: its CLOCK mark (REF_MARK), which the hand lowers by one at
 * each pass and evicts at 0, and REF_WINDOW while it is in the admission window. A list's
 * newest entry sits farthest from its hand; a hand over the buckets may come to a new one
 * at once, so an entry enters the main region at REF_NEW (passed once), and a hit raises it
 * to REF_HIT (passed twice): hit entries outlast those never hit since. Writers change it
 * under the shard lock; readers raise the mark with a compare-and-swap (note_hit), so they
 * never undo a writer's change of REF_WINDOW (a hit lost to a writer only blurs the mark). */
#define REF_NEW 1
#define REF_HIT 2
#define REF_MARK 3
#define REF_WINDOW 4

static inline bool in_window(const entry *e)
{
    return atomic_load_explicit(&e->referenced, memory_order_relaxed) & REF_WINDOW;
}

/* Writers': sets e's referenced byte (the shard lock held). */
static inline void set_referenced(entry *e, unsigned v)
{
    atomic_store_explicit(&e->referenced, (unsigned char)v, memory_order_relaxed);
}

static inline const char *entry_key(const entry *e)
{
    return (const char *)e->buf + tc__ref_off(e) + e->len + 1;
}

/* The 32 bits of a hash an entry keeps: both halves folded, so that the bucket (the low
 * bits of the fold), the shard (bits 48..63 of h) and the slot (bits 32..39) stay
 * independent. Two keys with equal folds in one bucket are told apart by the key
 * compare: a read misses, a store replaces the other. */
static inline uint32_t fold(uint64_t h)
{
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

/* The entries a critical section removed, retired once the lock is released
 * (retire_victims). Bounded, as entries carry no link for it: a section that fills it
 * stops, and its caller releases the lock, retires them and goes on. */
#define VICTIMS 32u
typedef struct victims {
    entry *e[VICTIMS];
    unsigned n;
} victims;

static inline bool victims_full(const victims *vs)
{
    return vs->n == VICTIMS;
}

/* W-TinyLFU's admission window: its entries' addresses, oldest first, in a ring (mask + 1 a
 * power of two). A removed entry's slot is cleared, and skipped when it comes first. */
typedef struct ring {
    entry **slot;
    uint32_t mask, head, n; /* head: the oldest slot; n: slots in use, cleared ones too */
} ring;

typedef struct shard {
    /* Aligning the first member aligns the struct and rounds its size up to whole cache
     * lines. The first line is what readers read: fixed after tc__local_new. */
    alignas(CACHE_LINE) entry *_Atomic *buckets;
    uint32_t bmask; /* buckets - 1 */
    /* TinyLFU's frequency sketch: a count-min sketch of SKETCH_ROWS rows of 4-bit
     * counters (two a byte), laid out in blocks (SKETCH_CELLS), halved every sample_size increments
     * so old popularity fades. Readers increment it without the lock: a lost increment only blurs a
     * popularity estimate. */
    atomic_uchar *sketch; /* cache-line aligned */
    uint32_t sketch_mask; /* blocks - 1 */
    uint32_t sample_size;
    atomic_uint increments;
    atomic_size_t *total; /* the tier's sum of every shard's bytes (writers') */
    /* The writers' line(s). */
    alignas(CACHE_LINE) atomic_uint mu; /* the shard lock: see shard_lock */
    uint32_t hand;                      /* CLOCK: the bucket the hand is at */
    uint32_t hand_pos;                  /* and the entries of its chain it passed */
    ring window;                        /* W-TinyLFU's admission window, FIFO */
    size_t window_bytes;                /* the window's entries' charges */
    size_t bytes;                       /* every entry's charge */
    uint64_t entries;
    /* rejects: values not kept because admission refused them or they exceed the budget
     * (a stale ticket's fill is a store_reject, not a reject). */
    uint64_t evictions, expirations, stores, store_rejects, rejects;
    uint64_t type_evictions[TC_LOCAL_TYPES]; /* per key type (tc_ref.type_id) */
    uint64_t type_rejects[TC_LOCAL_TYPES];
    /* Fill-guard sequences: read anywhere, bumped only with mu held. */
    atomic_uint_fast64_t seq[SLOTS];
} shard;

/* Read counters, one stripe per thread record id below STRIPES (only that thread writes
 * it: plain increments), and one shared by the rest (atomic increments). */
#define STRIPES 32u
typedef struct stripe {
    alignas(CACHE_LINE) atomic_uint_fast64_t hits;
    atomic_uint_fast64_t misses;
    atomic_uint_fast64_t type_hits[TC_LOCAL_TYPES];
} stripe;

/* The padding is on purpose: the writers' total has a line of its own, away from the
 * epoch and pointers every read loads. */
struct tc_local {     // NOLINT(clang-analyzer-optin.performance.Padding)
    shard *shards;    /* nshards, cache-line aligned inside shards_mem */
    void *shards_mem; /* the allocation, over-sized for the alignment */
    stripe *stripes;  /* STRIPES + 1, aligned inside stripes_mem */
    void *stripes_mem;
    unsigned mask;        /* nshards - 1 */
    size_t max_bytes;     /* the whole budget */
    size_t budget;        /* per shard: its share, max_bytes / nshards */
    size_t window_budget; /* per shard: the admission window's share (0: no admission) */
    /* epoch: stamped on the entries a ticket stores, bumped by every flush and group
     * drop (so tickets from before either are refused); an entry is live while its stamp
     * is at least floor (the epoch of the last flush) and its group's group_floor (the
     * epoch of its group's last drop). */
    atomic_uint_fast64_t epoch;
    atomic_uint_fast64_t floor;
    /* The highest group_floor ever set (0: no group was ever dropped), beside floor on the
     * line every lookup reads: an entry stamped at or after it needs no group_floor load,
     * so a tier whose groups are never dropped never touches that array. */
    atomic_uint_fast64_t group_max;
    /* The tick (TICK_SHIFT) of the last sweep of expired entries, and SWEEP_TICKS after it,
     * when the next is due: see late. */
    atomic_int_fast64_t swept_tick;
    atomic_int_fast64_t sweep_due;
    /* Writers': the sum of every shard's bytes (changed under the shard lock whose bytes
     * change), so that a shard may hold an entry larger than its share while the whole
     * tier stays within max_bytes (shed). sweep: where the next shed starts. */
    alignas(CACHE_LINE) atomic_size_t total;
    atomic_uint sweep;
    /* The flush floor at the last sweep, and whether one is running (one at a time). */
    atomic_uint_fast64_t swept_floor;
    atomic_bool sweeping;
    /* Per sequence group (tc__local_group): the epoch of its last drop; read by every
     * lookup that finds an entry, written by tc__local_drop_group alone. */
    alignas(CACHE_LINE) atomic_uint_fast64_t group_floor[TC_LOCAL_GROUPS];
};

static inline unsigned type_slot(const tc_ref *r)
{
    return r->type_id < TC_LOCAL_TYPES ? r->type_id : 0;
}

/* ---------------------------------------------------------------------------------------
 * References
 * ------------------------------------------------------------------------------------- */

tc_ref *tc__ref_new(size_t cap)
{
    if (cap > TC_REF_MAX)
        return NULL;
    tc_ref *r = tc__malloc(TC_REF_SIZE(cap));
    if (!r)
        return NULL;
    r->buf[0] = '\0';
    r->buf[cap] = '\0';
    memset(r, 0, offsetof(tc_ref, buf));
    atomic_init(&r->chain, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->referenced, 0);
    r->u.cap = (uint32_t)cap;
    return r;
}

tc_ref *tc__ref_copy(const void *src, size_t len)
{
    tc_ref *r = tc__ref_new(len);
    if (!r)
        return NULL;
    if (len)
        memcpy(r->buf, src, len);
    r->buf[len] = '\0';
    r->len = (uint32_t)len;
    return r;
}

static inline size_t entry_charge(const entry *e);

void tc__ref_free(tc_ref *r)
{
    /* An entry may still be seen by a read section that found it before it was unlinked,
     * or held through a hazard slot by a caller of tc_get, which counts no reference. */
    if (r->flags & TC_REF_ENTRY)
        tc__retire(r, entry_charge(r));
    else
        tc__free(r);
}

/* ---------------------------------------------------------------------------------------
 * Shards and entries
 * ------------------------------------------------------------------------------------- */

static inline shard *shard_of(tc_local *l, uint64_t h)
{
    return &l->shards[(unsigned)(h >> SHARD_SHIFT) & l->mask];
}

/* The shard lock: test-and-test-and-set on one word. Taking it free costs one atomic
 * exchange and releasing it a plain release store, where a mutex pays an atomic operation
 * for each (a local hit takes it once). Critical sections are short and never block, so a
 * waiter spins a little and then yields, which lets a preempted holder run; if yielding does
 * not help it sleeps between tries, since a waiter with a higher real-time priority than the
 * holder on the same CPU would otherwise keep the holder from ever running. */
#define SPINS_BEFORE_YIELD 64
#define YIELDS_BEFORE_SLEEP 64
#define CONTENDED_SLEEP_NS 50000

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One wait of a waiter that has waited *tries times already (counted up to the sleeps). */
static void contended_wait(unsigned *tries)
{
    if (*tries < SPINS_BEFORE_YIELD) {
        cpu_relax();
    } else if (*tries < SPINS_BEFORE_YIELD + YIELDS_BEFORE_SLEEP) {
        sched_yield();
    } else {
        struct timespec ts = {0, CONTENDED_SLEEP_NS};
        nanosleep(&ts, NULL);
        return;
    }
    (*tries)++;
}

static __attribute__((noinline)) void shard_lock_contended(shard *s)
{
    unsigned tries = 0;
    do {
        while (atomic_load_explicit(&s->mu, memory_order_relaxed))
            contended_wait(&tries);
    } while (atomic_exchange_explicit(&s->mu, 1, memory_order_acquire));
}

static inline void shard_lock(shard *s)
{
    if (TC_UNLIKELY(atomic_exchange_explicit(&s->mu, 1, memory_order_acquire)))
        shard_lock_contended(s);
}

static inline void shard_unlock(shard *s)
{
    atomic_store_explicit(&s->mu, 0, memory_order_release);
}

static inline atomic_uint_fast64_t *slot_of(shard *s, uint64_t h)
{
    return &s->seq[(unsigned)(h >> SLOT_SHIFT) & (SLOTS - 1)];
}

/* a + b, or SIZE_MAX if that overflows (then it exceeds any budget). */
static inline size_t add_sat(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

/* What an allocation of n bytes costs in memory: the allocator's header and its rounding
 * (a size word before each chunk, chunks in 16-byte steps of at least 32 bytes, as glibc's
 * malloc and most others on 64-bit systems). Charging this, not n, keeps the budget within
 * a few percent of the memory the tier really holds (tested in check_local). */
#define ALLOC_HEADER sizeof(size_t)
#define ALLOC_STEP 16u
#define ALLOC_MIN 32u
static inline size_t alloc_cost(size_t n)
{
    size_t c = add_sat(n, ALLOC_HEADER + ALLOC_STEP - 1) & ~(size_t)(ALLOC_STEP - 1);
    return c < ALLOC_MIN ? ALLOC_MIN : c;
}

/* What an entry costs the budget: its one allocation (header, value, NUL and key), as the
 * allocator rounds it. Fixed for the entry's life, so never stored. */
static inline size_t entry_charge(const entry *e)
{
    return alloc_cost(TC_REF_SIZE(tc__ref_cap(e)) + e->klen);
}

/* The window's oldest entry (NULL: empty), cleared slots before it dropped. */
static entry *window_oldest_locked(shard *s)
{
    ring *w = &s->window;
    while (w->n && !w->slot[w->head & w->mask]) {
        w->head++;
        w->n--;
    }
    return w->n ? w->slot[w->head & w->mask] : NULL;
}

/* Drops the cleared slots, keeping the order. */
static void window_compact_locked(shard *s)
{
    ring *w = &s->window;
    uint32_t n = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        entry *e = w->slot[(w->head + i) & w->mask];
        w->slot[(w->head + i) & w->mask] = NULL;
        if (e)
            w->slot[(w->head + n++) & w->mask] = e;
    }
    w->n = n;
}

/* Appends e to the window; false (e then goes to the main region) if the ring is full of
 * live entries, which its size (window_ring_size) rules out. */
static bool window_push_locked(shard *s, entry *e)
{
    ring *w = &s->window;
    if (!w->slot)
        return false;
    if (w->n > w->mask)
        window_compact_locked(s);
    if (w->n > w->mask)
        return false;
    w->slot[(w->head + w->n++) & w->mask] = e;
    s->window_bytes += entry_charge(e);
    return true;
}

/* Takes e out of the window: its slot is cleared (searched newest first: an entry replaced
 * or invalidated soon after its store is the common case; the oldest, promoted, is first). */
static void window_forget_locked(shard *s, entry *e)
{
    ring *w = &s->window;
    entry **at = w->n ? &w->slot[w->head & w->mask] : NULL;
    for (uint32_t i = w->n; at && *at != e && i-- > 0;)
        at = &w->slot[(w->head + i) & w->mask];
    if (at && *at == e)
        *at = NULL;
    s->window_bytes -= entry_charge(e);
    set_referenced(e, atomic_load_explicit(&e->referenced, memory_order_relaxed) & REF_MARK);
}

static inline entry *_Atomic *bucket_of(const shard *s, uint32_t hc)
{
    return &s->buckets[hc & s->bmask];
}

/* The link that points at the entry for the folded hash hc, or at the end of its chain.
 * Caller holds the shard lock. */
static entry *_Atomic *link_locked(shard *s, uint32_t hc)
{
    entry *_Atomic *link = bucket_of(s, hc);
    entry *e;
    while ((e = atomic_load_explicit(link, memory_order_relaxed)) && e->hcheck != hc)
        link = &e->chain;
    return link;
}

static inline entry *find_locked(shard *s, uint64_t h)
{
    return atomic_load_explicit(link_locked(s, fold(h)), memory_order_relaxed);
}

/* Takes e out of the table, the window and the accounting and adds it to vs (not full), to
 * be retired by retire_victims once the lock is released. Readers inside a section may
 * still be on e: its chain stays as it is, so they walk on. */
static void remove_locked(shard *s, entry *e, victims *vs)
{
    /* Sequentially consistent: the retirement's stamp is read after it (reclaim.c). */
    atomic_store_explicit(link_locked(s, e->hcheck),
                          atomic_load_explicit(&e->chain, memory_order_relaxed),
                          memory_order_seq_cst);
    if (in_window(e))
        window_forget_locked(s, e);
    size_t charge = entry_charge(e);
    s->bytes -= charge;
    atomic_fetch_sub_explicit(s->total, charge, memory_order_relaxed);
    s->entries--;
    vs->e[vs->n++] = e;
}

/* Drops the tier's references to the entries remove_locked collected: each is retired at
 * its last reference (tc__ref_free). Called with no lock held. */
static void retire_victims(victims *vs)
{
    for (unsigned i = 0; i < vs->n; i++)
        tc__ref_drop(vs->e[i]);
    vs->n = 0;
}

/* Publishes e at the end of its bucket's chain: the entries the CLOCK hand passed in it
 * stay the first ones (clock_victim_locked). Caller holds the shard lock and has removed
 * any entry for its hash. Release: a reader that finds e sees it, and its value, whole. */
static void insert_locked(shard *s, entry *e)
{
    entry *_Atomic *link = bucket_of(s, e->hcheck);
    entry *n;
    while ((n = atomic_load_explicit(link, memory_order_relaxed)))
        link = &n->chain;
    atomic_store_explicit(&e->chain, NULL, memory_order_relaxed);
    atomic_store_explicit(link, e, memory_order_release);
}

/* True if e holds key (klen bytes). Keys of 8 bytes and more are compared eight bytes at a
 * time, the last eight overlapping, inline: a call to memcmp costs more than that for the
 * usual key lengths. */
static inline bool key_eq(const entry *e, const char *key, size_t klen)
{
    if (e->klen != klen)
        return false;
    const char *k = entry_key(e);
    if (klen < 8)
        return memcmp(k, key, klen) == 0;
    uint64_t a, b;
    for (size_t i = 0; i + 8 < klen; i += 8) {
        memcpy(&a, k + i, 8);
        memcpy(&b, key + i, 8);
        if (a != b)
            return false;
    }
    memcpy(&a, k + klen - 8, 8);
    memcpy(&b, key + klen - 8, 8);
    return a == b;
}

/* e's flush epoch in full: its 32 bits are its signed distance from floor (EPOCH_SPAN). */
static inline uint64_t epoch_of(const entry *e, uint64_t floor)
{
    return floor + (uint64_t)(int64_t)(int32_t)(e->u.t.epoch - (uint32_t)floor);
}

/* Whether e was stored before the last flush (floor: the tier's flush floor) or the last
 * drop of its group. */
static inline bool dropped(const tc_local *l, const entry *e, uint64_t floor)
{
    if ((int32_t)(e->u.t.epoch - (uint32_t)floor) < 0)
        return true; /* epoch_of(e, floor) < floor */
    uint64_t max = atomic_load_explicit(&l->group_max, memory_order_acquire);
    uint64_t epoch;
    if (max <= floor || (epoch = epoch_of(e, floor)) >= max)
        return false;
    return epoch < atomic_load_explicit(&l->group_floor[e->group & (TC_LOCAL_GROUPS - 1)],
                                        memory_order_acquire);
}

static inline int64_t tick_of(int64_t ns)
{
    return ns >> TICK_SHIFT;
}

/* Whether e's expiry has come at tick now (serial: see TICK_SHIFT). */
static inline bool expired(const entry *e, int64_t now)
{
    return (int32_t)(e->u.t.expiry - (uint32_t)now) <= 0;
}

static inline bool dead(const tc_local *l, const entry *e, uint64_t floor, int64_t now_ns)
{
    return dropped(l, e, floor) || expired(e, tick_of(now_ns));
}

/* Whether the sweep of expired entries is overdue at now_ns: then an entry expired long
 * ago could read as live (TICK_SHIFT), and every read is a miss until it has run. */
static inline bool late(const tc_local *l, int64_t now_ns)
{
    return tick_of(now_ns) >= atomic_load_explicit(&l->sweep_due, memory_order_acquire);
}

/* ---------------------------------------------------------------------------------------
 * Eviction and admission (W-TinyLFU over CLOCK)
 *
 * A new entry enters a small FIFO window (1% of the shard's budget). Entries pushed out of
 * the window compete for the main region: when it is full, the window's candidate is
 * admitted only if the frequency sketch says it was asked for more often than the entry
 * the CLOCK hand would evict. One-hit wonders thus pass through the window without
 * flushing popular entries out, while the window still catches bursts of recency.
 * ------------------------------------------------------------------------------------- */

#define SKETCH_ROWS 4
/* Bytes of a shard's share per counter of each row (the sketch is sized by budget, not by
 * entries, which the tier does not know in advance): with four rows of 4-bit counters the
 * sketch costs 1/8 of the budget (up to 1/4, as its width is a power of two), outside it. */
#define SKETCH_BUDGET_PER_COUNTER 16u
#define SKETCH_MAX 15 /* counters saturate: popularity is relative */
/* The sketch is an array of cache-line blocks of SKETCH_ROWS rows of 32 counters, two a
 * byte (a counter never exceeds SKETCH_MAX, so four bits hold it and the sketch costs half
 * what bytes would): a key's four counters are in one block (its row-r counter in row r),
 * so counting or estimating a key costs one cache miss, not one per row. The block and the
 * four positions come from one remix of h, independent of the shard, slot and bucket bits. */
#define SKETCH_BLOCK 64u
#define SKETCH_ROW_BYTES ((size_t)SKETCH_BLOCK / SKETCH_ROWS)
#define SKETCH_ROW_CELLS (2 * SKETCH_ROW_BYTES)

/* One counter: the byte that holds it and its shift in it (0 or 4). */
typedef struct cell {
    atomic_uchar *p;
    unsigned shift;
} cell;

static inline cell cell_at(atomic_uchar *row, unsigned i)
{
    cell c = {row + (i >> 1), (i & 1) * 4};
    return c;
}

/* c names the array the macro declares, so it cannot be parenthesized. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define SKETCH_CELLS(s, hc, c)                                                                     \
    uint64_t g_ = ((uint64_t)(hc)*0x9e3779b97f4a7c15ULL) ^ ((uint64_t)(hc) << 7);                  \
    g_ = (g_ ^ (g_ >> 29)) * 0xbf58476d1ce4e5b9ULL;                                                \
    atomic_uchar *b_ = (s)->sketch +                                                               \
                       (size_t)((uint32_t)(g_ >> 32) & (s)->sketch_mask) * SKETCH_BLOCK;           \
    cell c[SKETCH_ROWS] = {cell_at(b_, (unsigned)g_ & 31),                                         \
                           cell_at(b_ + SKETCH_ROW_BYTES, (unsigned)(g_ >> 5) & 31),               \
                           cell_at(b_ + 2 * SKETCH_ROW_BYTES, (unsigned)(g_ >> 10) & 31),          \
                           cell_at(b_ + 3 * SKETCH_ROW_BYTES, (unsigned)(g_ >> 15) & 31)}
/* NOLINTEND(bugprone-macro-parentheses) */

static inline unsigned cell_get(cell c)
{
    return (atomic_load_explicit(c.p, memory_order_relaxed) >> c.shift) & SKETCH_MAX;
}

/* The byte is written whole: a racing bump of its other counter may be lost, which blurs
 * that estimate by one, as a racing bump of the same counter does. */
static inline void cell_bump(cell c)
{
    unsigned char v = atomic_load_explicit(c.p, memory_order_relaxed);
    if (((v >> c.shift) & SKETCH_MAX) < SKETCH_MAX)
        atomic_store_explicit(c.p, (unsigned char)(v + (1u << c.shift)), memory_order_relaxed);
}

/* Counts an access to h. Readers call it without the lock: a lost increment (two threads
 * bumping one counter) only blurs the estimate. */
static void sketch_increment(shard *s, uint32_t hc)
{
    if (!s->sketch)
        return;
    SKETCH_CELLS(s, hc, c);
    for (unsigned r = 0; r < SKETCH_ROWS; r++)
        cell_bump(c[r]);
    atomic_fetch_add_explicit(&s->increments, 1, memory_order_relaxed);
}

/* Ages the sketch (halves every counter) once sample_size increments have been counted
 * since the last time. Writers only, so two threads never halve it at once. */
static void sketch_age_locked(shard *s)
{
    if (!s->sketch || atomic_load_explicit(&s->increments, memory_order_relaxed) < s->sample_size)
        return;
    for (size_t i = 0; i < (size_t)SKETCH_BLOCK * (s->sketch_mask + 1); i++)
        atomic_store_explicit(
            &s->sketch[i],
            (unsigned char)((atomic_load_explicit(&s->sketch[i], memory_order_relaxed) >> 1) &
                            0x77),
            memory_order_relaxed);
    atomic_fetch_sub_explicit(&s->increments, s->sample_size / 2, memory_order_relaxed);
}

static unsigned sketch_frequency_locked(const shard *s, uint32_t hc)
{
    SKETCH_CELLS(s, hc, c);
    unsigned f = cell_get(c[0]);
    for (unsigned r = 1; r < SKETCH_ROWS; r++) {
        unsigned v = cell_get(c[r]);
        f = v < f ? v : f;
    }
    return f;
}

static void evict_locked(shard *s, entry *e, victims *vs)
{
    s->evictions++;
    s->type_evictions[type_slot(e)]++;
    remove_locked(s, e, vs);
}

/* The entry of the main region the CLOCK hand would evict, passing keep: the hand goes
 * over the buckets, a bucket's chain at a time, removing dead entries (expirations) and
 * giving referenced ones their second chance; it stays at the victim's bucket. NULL if the
 * main region holds nothing but keep, or vs filled up on the way. REF_HIT + 1 turns of
 * the table are enough: each lowers every mark by one. */
static entry *clock_victim_locked(tc_local *l, shard *s, const entry *keep, victims *vs)
{
    uint64_t floor = atomic_load_explicit(&l->floor, memory_order_acquire);
    int64_t now = tc__now_ns();
    for (uint64_t turn = 0; turn <= (REF_HIT + 1) * ((uint64_t)s->bmask + 1);
         turn++, s->hand++, s->hand_pos = 0) {
        entry *_Atomic *link = &s->buckets[s->hand & s->bmask];
        entry *e;
        unsigned char r;
        /* The entries of the chain the hand passed already stay passed: a hand that came
         * back to them at each call would lower their marks twice in one turn. */
        for (uint32_t pos = 0; (e = atomic_load_explicit(link, memory_order_relaxed));) {
            if (pos < s->hand_pos || in_window(e) || e == keep) {
                link = &e->chain;
                pos++;
                s->hand_pos = pos > s->hand_pos ? pos : s->hand_pos;
            } else if (dead(l, e, floor, now)) {
                if (victims_full(vs))
                    return NULL;
                if (!dropped(l, e, floor))
                    s->expirations++;
                remove_locked(s, e, vs); /* *link is now the next one */
            } else if ((r = atomic_load_explicit(&e->referenced, memory_order_relaxed))) {
                set_referenced(e, r - 1u); /* a main entry's is its mark alone */
                link = &e->chain;
                pos++;
                s->hand_pos = pos;
            } else {
                s->hand_pos = pos;
                return e;
            }
        }
    }
    return NULL;
}

/* Moves the window's oldest entry c into the main region, through the admission filter
 * when the shard is over its share: c replaces the CLOCK victim only if it is more
 * popular. The test is on the whole shard, not the main region's part of it: a window
 * smaller than one entry then still sends every candidate through the filter. False if vs
 * filled up first (c is still the oldest: the caller goes on after retiring them). */
static bool promote_locked(tc_local *l, shard *s, entry *c, victims *vs)
{
    while (s->bytes > l->budget) {
        entry *v = clock_victim_locked(l, s, NULL, vs);
        if (victims_full(vs))
            return false;
        if (!v || s->bytes <= l->budget)
            break; /* the hand reclaimed dead entries on its way: room enough */
        if (sketch_frequency_locked(s, c->hcheck) <= sketch_frequency_locked(s, v->hcheck)) {
            s->rejects++;
            s->type_rejects[type_slot(c)]++;
            evict_locked(s, c, vs);
            /* The hand moves past the victim that won: it is the next contest's
             * opponent no more. Otherwise a few stale entries with high counts at the
             * hand win every contest and lock every newcomer out (a second pass over
             * old keys never gets in). */
            s->hand_pos++;
            return true;
        }
        evict_locked(s, v, vs);
    }
    window_forget_locked(s, c);
    set_referenced(c, REF_NEW);
    return true;
}

/* After e (already counted in bytes) was stored: brings the shard back within its share.
 * With admission, the window's overflow is promoted through the filter (the newest entry
 * stays in the window even when it alone is larger than it); then (or without admission)
 * CLOCK evicts from the main region, and last from the window; e itself stays (it fits
 * the whole budget, and shed makes room for it in the other shards when it is larger than
 * this shard's share). False if vs filled up first: the caller retires them and calls
 * again. */
static bool make_room_locked(tc_local *l, shard *s, const entry *e, victims *vs)
{
    entry *c;
    while (s->window_bytes > l->window_budget && (c = window_oldest_locked(s)) && c != e)
        if (!promote_locked(l, s, c, vs))
            return false;
    while (s->bytes > l->budget) {
        entry *v = clock_victim_locked(l, s, e, vs);
        if (victims_full(vs))
            return false;
        if (s->bytes <= l->budget)
            break; /* dead entries reclaimed were enough */
        if (!v && (v = window_oldest_locked(s)) == e)
            v = NULL;
        if (!v)
            break; /* only e is left */
        evict_locked(s, v, vs);
    }
    return true;
}

static inline bool over_budget(tc_local *l)
{
    return atomic_load_explicit(&l->total, memory_order_relaxed) > l->max_bytes;
}

/* Brings the tier back within max_bytes after shard from stored an entry larger than its
 * share. First shards over their share give back what they hold beyond it (they hold
 * large entries too), then every shard in turn gives one CLOCK victim at a time, until the
 * total fits or a whole turn finds nothing to evict. Takes one shard lock at a time
 * (never two: a shard lock is a leaf); caller holds none. Concurrent stores may push the
 * total over again meanwhile: the tier is within its budget whenever no store is running. */
static void shed(tc_local *l, const shard *from)
{
    unsigned n = l->mask + 1;
    unsigned start = atomic_fetch_add_explicit(&l->sweep, 1, memory_order_relaxed);
    for (int pass = 0; pass < 2; pass++) {
        bool evicted = true;
        while (evicted && over_budget(l)) {
            evicted = false;
            for (unsigned i = 0; i < n && over_budget(l); i++) {
                shard *t = &l->shards[(start + i) & l->mask];
                if (t == from)
                    continue;
                victims vs = {.n = 0};
                shard_lock(t);
                while (over_budget(l) && (pass == 1 || t->bytes > l->budget)) {
                    entry *v = clock_victim_locked(l, t, NULL, &vs);
                    if (!v && !victims_full(&vs))
                        v = window_oldest_locked(t);
                    if (victims_full(&vs))
                        evicted = true; /* dead ones went: the next turn goes on */
                    if (!v || victims_full(&vs))
                        break;
                    evict_locked(t, v, &vs);
                    evicted = true;
                    if (pass == 1)
                        break; /* one at a time, so every shard gives alike */
                }
                shard_unlock(t);
                retire_victims(&vs);
            }
            if (pass == 0)
                break;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------- */

/* An allocation of n objects of size sz aligned to a cache line: *mem gets what to free. */
static void *calloc_lines(size_t n, size_t sz, void **mem)
{
    *mem = tc__calloc(1, n * sz + CACHE_LINE - 1);
    if (!*mem)
        return NULL;
    return (void *)(((uintptr_t)*mem + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
}

static void shards_free(tc_local *l, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        tc__free(l->shards[i].sketch);
        tc__free((void *)l->shards[i].buckets);
        tc__free(l->shards[i].window.slot);
    }
}

/* Slots of the window's ring for a window of window_budget bytes (0: none): one for each
 * smallest entry it can hold, and two more (the newest entry may overflow it), rounded up
 * to a power of two, so it never fills with live entries. */
static uint32_t window_ring_size(size_t window_budget)
{
    if (!window_budget)
        return 0;
    size_t need = window_budget / alloc_cost(TC_REF_SIZE(0)) + 2, n = 4;
    while (n < need && n < ((size_t)1 << 30))
        n <<= 1;
    return (uint32_t)n;
}

static bool shard_init(tc_local *l, shard *s, uint32_t width, uint32_t nbuckets)
{
    for (unsigned j = 0; j < SLOTS; j++)
        atomic_init(&s->seq[j], 0);
    atomic_init(&s->mu, 0);
    atomic_init(&s->increments, 0);
    s->total = &l->total;
    s->buckets = tc__calloc(nbuckets, sizeof *s->buckets);
    s->bmask = nbuckets - 1;
    uint32_t nslots = window_ring_size(l->budget / 100);
    if (nslots) {
        s->window.slot = tc__calloc(nslots, sizeof *s->window.slot);
        s->window.mask = nslots - 1;
    }
    if (l->budget > 0) {
        /* width counters per row: width / SKETCH_ROW_CELLS blocks */
        size_t bytes = (size_t)SKETCH_ROWS * width / 2;
        s->sketch = tc__malloc_aligned(SKETCH_BLOCK, bytes);
        if (s->sketch)
            memset(s->sketch, 0, bytes);
        s->sketch_mask = width / SKETCH_ROW_CELLS - 1;
        s->sample_size = 10 * width;
    }
    return s->buckets && (l->budget == 0 || s->sketch) && (!nslots || s->window.slot);
}

tc_status tc__local_new(size_t max_bytes, unsigned nshards, tc_local **out)
{
    if (!out)
        return TC_ERR_ARG;
    *out = NULL;
    if (nshards == 0)
        for (nshards = DEFAULT_SHARDS; nshards > 1 && max_bytes / nshards < MIN_SHARD_BYTES;)
            nshards /= 2;
    if (nshards > MAX_SHARDS || (nshards & (nshards - 1)) != 0)
        return TC_ERR_ARG;

    tc_local *l = tc__calloc(1, sizeof *l);
    if (!l)
        return TC_ERR_NOMEM;
    l->shards = calloc_lines(nshards, sizeof(shard), &l->shards_mem);
    l->stripes = calloc_lines(STRIPES + 1, sizeof(stripe), &l->stripes_mem);
    if (!l->shards || !l->stripes) {
        tc__free(l->shards_mem);
        tc__free(l->stripes_mem);
        tc__free(l);
        return TC_ERR_NOMEM;
    }
    l->mask = nshards - 1;
    l->max_bytes = max_bytes;
    l->budget = max_bytes / nshards;
    atomic_init(&l->epoch, 1);
    atomic_init(&l->floor, 1);
    for (unsigned g = 0; g < TC_LOCAL_GROUPS; g++)
        atomic_init(&l->group_floor[g], 0);
    atomic_init(&l->group_max, 0);
    atomic_init(&l->swept_tick, tick_of(tc__now_ns()));
    atomic_init(&l->sweep_due, atomic_load(&l->swept_tick) + SWEEP_TICKS);
    atomic_init(&l->swept_floor, 1);
    atomic_init(&l->sweeping, false);
    atomic_init(&l->total, 0);
    atomic_init(&l->sweep, 0);

    l->window_budget = l->budget / 100;
    /* Counters per row: one per SKETCH_BUDGET_PER_COUNTER bytes of the shard's share, so
     * six to twelve per entry of ~180 bytes. Fewer (one or two per entry, as once) let
     * colliding keys inflate the estimates of stale entries, which then win every
     * contest: tc-bench mrc at 10% of the keys, Zipf 77.6% hits against 75.8% with a
     * quarter of the counters, the CloudPhysics trace 25.5% against 23.6%; with half of
     * them (one per 32 bytes), Zipf 77.1%. */
    uint32_t width = SKETCH_ROW_CELLS;
    while (width < (1u << 22) && width < l->budget / SKETCH_BUDGET_PER_COUNTER)
        width <<= 1;
    uint32_t nbuckets = MIN_BUCKETS;
    while (nbuckets < MAX_BUCKETS && nbuckets < l->budget / BUCKET_BYTES)
        nbuckets <<= 1;
    for (unsigned i = 0; i < nshards; i++) {
        if (!shard_init(l, &l->shards[i], width, nbuckets)) {
            shards_free(l, i + 1);
            tc__free(l->shards_mem);
            tc__free(l->stripes_mem);
            tc__free(l);
            return TC_ERR_NOMEM;
        }
    }
    *out = l;
    return TC_OK;
}

void tc__local_free(tc_local *l)
{
    if (!l)
        return;
    /* Nothing reads the tier any more (tc_close's contract), so its entries go now;
     * values callers still hold stay valid (tc__ref_free). */
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        for (uint32_t b = 0; b <= s->bmask; b++) {
            for (entry *e = atomic_load_explicit(&s->buckets[b], memory_order_relaxed), *next; e;
                 e = next) {
                next = atomic_load_explicit(&e->chain, memory_order_relaxed);
                tc__ref_drop(e);
            }
        }
    }
    shards_free(l, l->mask + 1);
    tc__free(l->shards_mem);
    tc__free(l->stripes_mem);
    tc__free(l);
}

/* ---------------------------------------------------------------------------------------
 * Reads
 *
 * A read enters a section, walks its bucket's chain, and on a hit publishes the value in a
 * hazard slot of its thread before it leaves, so the value outlives the entry if a writer
 * removes it meanwhile; the caller's release clears the slot. With every slot of the
 * thread taken (a caller holding many values at once) it takes a counted reference
 * instead, which is safe inside the section: the entry it found holds one until the grace
 * period after its removal. Hits and misses are counted in the thread's stripe. So a hit
 * writes the thread's own record and stripe, and, once per pass of the eviction hand, the
 * entry's referenced flag and the sketch.
 * ------------------------------------------------------------------------------------- */

/* The stripe of the thread of record me (NULL: none); *own: only this thread writes it. */
static inline stripe *stripe_of(tc_local *l, const tc_rec *me, bool *own)
{
    bool mine = me && me->id < STRIPES;
    *own = mine;
    return &l->stripes[mine ? me->id : STRIPES];
}

static inline void count(atomic_uint_fast64_t *c, bool own)
{
    if (own) /* only this thread writes it */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline entry *find(const shard *s, uint64_t h)
{
    uint32_t hc = fold(h);
    entry *e = atomic_load_explicit(bucket_of(s, hc), memory_order_acquire);
    while (e && e->hcheck != hc)
        e = atomic_load_explicit(&e->chain, memory_order_acquire);
    return e;
}

static inline void note_hit(shard *s, entry *e)
{
    /* The sketch counts the first hit after each pass of the hand: only unreferenced
     * entries are ever compared with a candidate, so the hits in between would change no
     * decision, and skipping them keeps the common hit free of shared writes. */
    unsigned char r = atomic_load_explicit(&e->referenced, memory_order_relaxed);
    if ((r & REF_MARK) < REF_HIT &&
        atomic_compare_exchange_strong_explicit(&e->referenced, &r,
                                                (unsigned char)((r & REF_WINDOW) | REF_HIT),
                                                memory_order_relaxed, memory_order_relaxed)) {
        sketch_increment(s, e->hcheck);
    }
}

/* Removes the entry for h if it is still there and dead. */
static void reap(tc_local *l, shard *s, uint64_t h, int64_t now_ns)
{
    victims vs = {.n = 0};
    uint64_t epoch = atomic_load_explicit(&l->floor, memory_order_acquire);
    shard_lock(s);
    entry *e = find_locked(s, h);
    if (e && dead(l, e, epoch, now_ns)) {
        if (!dropped(l, e, epoch))
            s->expirations++;
        remove_locked(s, e, &vs);
    }
    shard_unlock(s);
    retire_victims(&vs);
}

/* The end of a read that found no live entry for its key (reaped: a dead one was there).
 * Out of line, so the hit path stays short. */
static __attribute__((noinline)) bool read_missed(tc_local *l, shard *s, tc_rec *me, uint64_t h,
                                                  int64_t now_ns, bool reaped)
{
    if (reaped)
        reap(l, s, h, now_ns);
    sketch_increment(s, fold(h));
    bool own;
    stripe *st = stripe_of(l, me, &own);
    count(&st->misses, own);
    return false;
}

/* A reference to e, found inside a read section, unless its count already reached 0: the
 * tier let go of it and so did every holder (it is retired, and no longer the key's). */
static inline bool hold_live(tc_ref *e)
{
    uint_least32_t n = atomic_load_explicit(&e->refs, memory_order_relaxed);
    while (n && !atomic_compare_exchange_weak_explicit(&e->refs, &n, n + 1, memory_order_relaxed,
                                                       memory_order_relaxed))
        ;
    return n != 0;
}

static void sweep(tc_local *l, int64_t now_ns);

/* A read while the sweep of expired entries is overdue (late): runs it, and misses. */
static __attribute__((noinline)) bool read_late(tc_local *l, tc_rec *me, int64_t now_ns)
{
    sweep(l, now_ns);
    bool own;
    stripe *st = stripe_of(l, me, &own);
    count(&st->misses, own);
    return false;
}

/* A read for a thread without a record (it could not be allocated): under the lock, which
 * keeps writers and their retirements out, with a counted reference. */
static __attribute__((noinline)) bool read_locked(tc_local *l, shard *s, uint64_t h,
                                                  const char *key, size_t klen, int64_t now_ns,
                                                  tc_ref **out)
{
    uint64_t epoch = atomic_load_explicit(&l->floor, memory_order_acquire);
    if (late(l, now_ns))
        return read_late(l, NULL, now_ns);
    shard_lock(s);
    entry *e = find_locked(s, h);
    bool hit = e && !dead(l, e, epoch, now_ns) && key_eq(e, key, klen);
    if (hit) {
        note_hit(s, e);
        tc__ref_hold(e);
        *out = e;
    }
    shard_unlock(s);
    if (!hit)
        return read_missed(l, s, NULL, h, now_ns, e && dead(l, e, epoch, now_ns));
    stripe *st = &l->stripes[STRIPES];
    count(&st->hits, false);
    count(&st->type_hits[type_slot(*out)], false);
    return true;
}

/* A read: *out the value, held through *slot (NULL: a counted reference) or, with slot
 * NULL, always counted. */
static inline bool read(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                        tc_ref **out, tc_hazard **slot)
{
    *out = NULL;
    if (slot)
        *slot = NULL;
    shard *s = shard_of(l, h);
    tc_rec *me = tc__rec_self();
    if (TC_UNLIKELY(!me))
        return read_locked(l, s, h, key, klen, now_ns, out);
    uint64_t epoch = atomic_load_explicit(&l->floor, memory_order_acquire);
    if (TC_UNLIKELY(late(l, now_ns)))
        return read_late(l, me, now_ns);

    tc__read_enter(me);
    entry *e = find(s, h);
    if (TC_LIKELY(e != NULL)) {
        /* Ask for the entry's value and key lines at once: with a tier larger than the
         * caches, each is a miss, and this overlaps them. */
        uintptr_t v = (uintptr_t)e; /* may run past a small entry: a hint only */
        __builtin_prefetch((const void *)(v + CACHE_LINE));
        __builtin_prefetch((const void *)(v + 2 * (uintptr_t)CACHE_LINE));
    }
    /* The table is keyed by hash: an entry for another key with the same hash is a miss,
     * and stays (it is valid for its own key). */
    if (TC_UNLIKELY(!e || dead(l, e, epoch, now_ns) || !key_eq(e, key, klen))) {
        bool reaped = e && dead(l, e, epoch, now_ns);
        tc__read_exit(me);
        return read_missed(l, s, me, h, now_ns, reaped);
    }
    note_hit(s, e);
    tc_ref *v = e;
    tc_hazard *hz = slot ? tc__hazard_take(me, v) : NULL;
    if (!hz && TC_UNLIKELY(!hold_live(v))) {
        tc__read_exit(me);
        return read_missed(l, s, me, h, now_ns, false); /* removed meanwhile */
    }
    tc__read_exit(me);

    bool own;
    stripe *st = stripe_of(l, me, &own);
    count(&st->hits, own);
    count(&st->type_hits[type_slot(v)], own);
    *out = v;
    if (slot)
        *slot = hz;
    return true;
}

bool tc__local_get(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                   tc_ref **out)
{
    return read(l, h, key, klen, now_ns, out, NULL);
}

bool tc__local_borrow(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                      tc_ref **out, tc_hazard **slot)
{
    return read(l, h, key, klen, now_ns, out, slot);
}

tc_ref *tc__local_keep(tc_ref *r, tc_hazard *slot)
{
    if (!slot)
        return r;
    /* Never from zero: a value at zero is retired, and only the slot keeps it. */
    bool kept = hold_live(r);
    tc__hazard_drop(slot);
    return kept ? r : NULL;
}

void tc__local_unborrow(tc_ref *r, tc_hazard *slot)
{
    if (slot)
        tc__hazard_drop(slot);
    else
        tc__ref_drop(r);
}

/* ---------------------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------------------- */

/* A ticket is taken before a round trip to Redis that usually ends in a store of h: two
 * lines that store will touch, likely misses in a tier larger than the caches, are asked
 * for now so that the round trip hides their latency: the shard's writers' line and the
 * sketch block of h. (The list ends are not: reading them here would race the writers.) */
static inline void prefetch_store(shard *s, uint64_t h)
{
    __builtin_prefetch(&s->mu, 1);
    if (s->sketch) {
        SKETCH_CELLS(s, fold(h), c);
        __builtin_prefetch(c[0].p, 1);
    }
}

tc_ticket tc__local_ticket(tc_local *l, uint64_t h)
{
    /* No lock: a sequence read here can only be older than the one a later store sees
     * under the lock, and an older ticket is refused, never wrongly accepted. */
    tc_ticket t;
    shard *s = shard_of(l, h);
    t.epoch = atomic_load_explicit(&l->epoch, memory_order_acquire);
    t.seq = atomic_load_explicit(slot_of(s, h), memory_order_acquire);
    prefetch_store(s, h);
    return t;
}

/* The bytes of v the tier copies: its stored-format header, if any, and its value. */
static inline size_t value_bytes(const tc_ref *v)
{
    return tc__ref_off(v) + v->len;
}

/* The 32-bit expiry of an entry stored at now_ns to expire at expires_ns: rounded down to
 * a tick, so that a reader whose clock reached expires_ns finds it expired whatever the
 * storing thread's clock said; no further ahead than MAX_AHEAD ticks, and no further
 * behind than MAX_AHEAD / 2 (expired either way), so that it reads right as a serial
 * number (TICK_SHIFT). */
static uint32_t expiry_of(int64_t expires_ns, int64_t now_ns)
{
    int64_t now = tick_of(now_ns), exp = tick_of(expires_ns);
    if (exp - now > (int64_t)MAX_AHEAD)
        exp = now + MAX_AHEAD;
    else if (now - exp > (int64_t)MAX_AHEAD / 2)
        exp = now - MAX_AHEAD / 2;
    return (uint32_t)exp;
}

/* A new entry for key holding a copy of v: the tier's own reference (refs 1). */
static entry *entry_new(uint64_t h, const char *key, size_t klen, const tc_ref *v,
                        int64_t expires_ns, int64_t now_ns, uint64_t epoch)
{
    size_t vb = value_bytes(v);
    entry *e = tc__malloc(TC_REF_SIZE(vb) + klen);
    if (!e)
        return NULL;
    memset(e, 0, offsetof(tc_ref, buf));
    atomic_init(&e->chain, NULL);
    atomic_init(&e->refs, 1);
    atomic_init(&e->referenced, 0);
    memcpy(e->buf, v->buf, vb);
    e->buf[vb] = '\0';
    e->len = v->len;
    e->flags = (uint8_t)(v->flags | TC_REF_ENTRY); /* set before it is published */
    e->type_id = v->type_id;
    e->group = v->group;
    e->hcheck = fold(h);
    e->klen = (uint16_t)klen;
    e->u.t.expiry = expiry_of(expires_ns, now_ns);
    e->u.t.epoch = (uint32_t)epoch;
    if (klen)
        memcpy(e->buf + vb + 1, key, klen);
    return e;
}

/* The common store. write: the value comes from this process's own write, so bump the
 * slot (refusing older fills in flight) and, if the ticket is stale, remove the entry,
 * since what is cached for the key predates a write. */
static bool local_store(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                        int64_t expires_ns, tc_ticket t, bool write)
{
    shard *s = shard_of(l, h);
    size_t need = alloc_cost(add_sat(TC_REF_SIZE(value_bytes(v)), klen));
    entry *e = NULL;

    /* Allocate before taking the lock: the critical section stays short, and a value too
     * large for the whole budget costs nothing. A value larger than its shard's share is
     * kept: the other shards make room for it (shed). */
    bool fits = need <= l->max_bytes && klen <= UINT16_MAX;
    int64_t now_ns = tc__now_ns();
    if (late(l, now_ns))
        sweep(l, now_ns);
    if (fits)
        e = entry_new(h, key, klen, v, expires_ns, now_ns, t.epoch);

    victims vs = {.n = 0};
    bool stored = false, done = true;
    shard_lock(s);
    atomic_uint_fast64_t *slot = slot_of(s, h);
    uint64_t seq = atomic_load_explicit(slot, memory_order_relaxed);
    bool fresh = seq == t.seq && atomic_load_explicit(&l->epoch, memory_order_acquire) == t.epoch;
    if (write)
        atomic_store_explicit(slot, seq + 1, memory_order_release);

    entry *old = find_locked(s, h);
    /* A stale fill leaves the entry alone: it may be newer than the fill. Otherwise the
     * old entry goes (replaced, or not worth keeping once its key was written or
     * refetched), whatever key it holds. */
    if (old && (fresh || write))
        remove_locked(s, old, &vs);

    if (write)
        sketch_increment(s, fold(h)); /* a write-through value counts as one access */
    sketch_age_locked(s);
    if (fresh && e) {
        /* Its place and mark first: readers may hit it once it is in the table. */
        bool window = l->window_budget > 0 && window_push_locked(s, e);
        set_referenced(e, window ? REF_WINDOW : REF_NEW);
        insert_locked(s, e);
        s->bytes += need;
        atomic_fetch_add_explicit(&l->total, need, memory_order_relaxed);
        s->entries++;
        s->stores++;
        stored = true;
        done = make_room_locked(l, s, e, &vs);
    }
    if (!stored)
        s->store_rejects++;
    if (!fits && (fresh || write)) {
        s->rejects++; /* a value the tier would have kept, but cannot hold */
        s->type_rejects[type_slot(v)]++;
    }
    if (!done)
        tc__ref_hold(e); /* e stays e while the lock is let go */
    shard_unlock(s);

    if (!stored)
        tc__free(e);
    retire_victims(&vs);
    if (!done) {
        while (!done) {
            shard_lock(s);
            done = make_room_locked(l, s, e, &vs);
            shard_unlock(s);
            retire_victims(&vs);
        }
        tc__ref_drop(e);
    }
    if (stored && over_budget(l))
        shed(l, s);
    return stored;
}

bool tc__local_store_if_fresh(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                              int64_t expires_ns, tc_ticket t)
{
    return local_store(l, h, key, klen, v, expires_ns, t, false);
}

bool tc__local_store_write(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                           int64_t expires_ns, tc_ticket t)
{
    return local_store(l, h, key, klen, v, expires_ns, t, true);
}

void tc__local_invalidate(tc_local *l, uint64_t h)
{
    shard *s = shard_of(l, h);
    victims vs = {.n = 0};
    shard_lock(s);
    atomic_uint_fast64_t *slot = slot_of(s, h);
    atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + 1,
                          memory_order_release);
    entry *e = find_locked(s, h);
    if (e)
        remove_locked(s, e, &vs);
    shard_unlock(s);
    retire_victims(&vs);
}

void tc__local_set_admission(tc_local *l, bool on)
{
    l->window_budget = on ? l->budget / 100 : 0;
}

/* Removes every entry dead at now_ns (expired, flushed, dropped) from shard s, or every
 * entry with all. Caller holds no lock. */
static void sweep_shard(tc_local *l, shard *s, int64_t now_ns, bool all)
{
    victims vs = {.n = 0};
    uint64_t floor = atomic_load_explicit(&l->floor, memory_order_acquire);
    for (uint32_t b = 0; b <= s->bmask;) {
        shard_lock(s);
        /* A bucket at a time, and the lock let go whenever vs fills up. */
        for (; b <= s->bmask && !victims_full(&vs); b++) {
            entry *_Atomic *link = &s->buckets[b];
            entry *e;
            while ((e = atomic_load_explicit(link, memory_order_relaxed)) && !victims_full(&vs)) {
                if (!all && !dead(l, e, floor, now_ns)) {
                    link = &e->chain;
                    continue;
                }
                if (!dropped(l, e, floor))
                    s->expirations++;
                remove_locked(s, e, &vs);
            }
            if (e)
                break; /* vs is full: this bucket again after retiring them */
        }
        shard_unlock(s);
        retire_victims(&vs);
    }
}

/* The sweep behind the 32-bit epochs and expiries (TICK_SHIFT, EPOCH_SPAN): takes out every
 * dead entry, so that none stays long enough for its 32 bits to read as live again. Rare
 * (every 2^29 flushes, or every SWEEP_TICKS): it walks every shard, one lock at a time. A
 * sweep that comes 2^31 ticks after the last, too late to tell expired from live, takes
 * every entry. One at a time; a caller that finds one running goes on without it. */
static void sweep(tc_local *l, int64_t now_ns)
{
    if (atomic_exchange_explicit(&l->sweeping, true, memory_order_acquire))
        return;
    uint64_t floor = atomic_load_explicit(&l->floor, memory_order_acquire);
    int64_t now = tick_of(now_ns);
    bool all = now - atomic_load_explicit(&l->swept_tick, memory_order_relaxed) >= (int64_t)1 << 31;
    for (unsigned i = 0; i <= l->mask; i++)
        sweep_shard(l, &l->shards[i], now_ns, all);
    atomic_store_explicit(&l->swept_floor, floor, memory_order_relaxed);
    atomic_store_explicit(&l->swept_tick, now, memory_order_relaxed);
    atomic_store_explicit(&l->sweep_due, now + SWEEP_TICKS, memory_order_release);
    atomic_store_explicit(&l->sweeping, false, memory_order_release);
}

/* The floor is raised, never lowered, even when flushes race. */
static void raise_floor(tc_local *l, uint64_t e)
{
    uint64_t f = atomic_load_explicit(&l->floor, memory_order_relaxed);
    while (f < e && !atomic_compare_exchange_weak_explicit(&l->floor, &f, e, memory_order_acq_rel,
                                                           memory_order_relaxed))
        ;
}

/* After the epoch moved to e by a flush or a drop: keeps every entry's epoch within 2^31 of
 * the floor (EPOCH_SPAN). */
static void epoch_moved(tc_local *l, uint64_t e)
{
    uint64_t f = atomic_load_explicit(&l->floor, memory_order_acquire);
    if (e > f && e - f >= EPOCH_SPAN)
        raise_floor(l, e - EPOCH_SPAN / 2);
    f = atomic_load_explicit(&l->floor, memory_order_acquire);
    if (f - atomic_load_explicit(&l->swept_floor, memory_order_relaxed) >= EPOCH_SWEEP)
        sweep(l, tc__now_ns());
}

void tc__local_flush(tc_local *l)
{
    uint64_t e = atomic_fetch_add_explicit(&l->epoch, 1, memory_order_acq_rel) + 1;
    raise_floor(l, e);
    epoch_moved(l, e);
}

void tc__local_test_flushes(tc_local *l, uint64_t n)
{
    /* In steps below EPOCH_SWEEP, as fast as flushes could come. */
    while (n) {
        uint64_t step = n < EPOCH_SWEEP / 2 ? n : EPOCH_SWEEP / 2;
        uint64_t e = atomic_fetch_add_explicit(&l->epoch, step, memory_order_acq_rel) + step;
        raise_floor(l, e);
        epoch_moved(l, e);
        n -= step;
    }
}

void tc__local_drop_group(tc_local *l, unsigned group)
{
    uint64_t e = atomic_fetch_add_explicit(&l->epoch, 1, memory_order_acq_rel) + 1;
    atomic_store_explicit(&l->group_floor[group & (TC_LOCAL_GROUPS - 1)], e, memory_order_release);
    /* Raised, never lowered, even when two drops race. */
    uint64_t m = atomic_load_explicit(&l->group_max, memory_order_relaxed);
    while (m < e &&
           !atomic_compare_exchange_weak_explicit(&l->group_max, &m, e, memory_order_acq_rel,
                                                  memory_order_relaxed))
        ;
    epoch_moved(l, e);
}

/* ---------------------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------------------- */

void tc__local_stats(tc_local *l, tc_local_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i <= STRIPES; i++) {
        out->hits += atomic_load_explicit(&l->stripes[i].hits, memory_order_relaxed);
        out->misses += atomic_load_explicit(&l->stripes[i].misses, memory_order_relaxed);
    }
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->entries += s->entries;
        out->bytes += s->bytes;
        out->stores += s->stores;
        out->store_rejects += s->store_rejects;
        out->rejects += s->rejects;
        out->window_bytes += s->window_bytes;
        for (uint32_t j = 0; j < s->window.n; j++)
            out->window_entries += s->window.slot[(s->window.head + j) & s->window.mask] != NULL;
        shard_unlock(s);
        /* Fixed after tc__local_new. */
        out->sketch_bytes += s->sketch ? (uint64_t)SKETCH_BLOCK * (s->sketch_mask + 1) : 0;
        out->table_bytes += (uint64_t)(s->bmask + 1) * sizeof *s->buckets;
        out->table_bytes += s->window.slot ? (uint64_t)(s->window.mask + 1) * sizeof(entry *) : 0;
    }
}

void tc__local_type_stats(tc_local *l, uint64_t *hits, uint64_t *evictions, uint64_t *rejects)
{
    memset(hits, 0, TC_LOCAL_TYPES * sizeof *hits);
    memset(evictions, 0, TC_LOCAL_TYPES * sizeof *evictions);
    memset(rejects, 0, TC_LOCAL_TYPES * sizeof *rejects);
    for (unsigned i = 0; i <= STRIPES; i++)
        for (unsigned t = 0; t < TC_LOCAL_TYPES; t++)
            hits[t] += atomic_load_explicit(&l->stripes[i].type_hits[t], memory_order_relaxed);
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        for (unsigned t = 0; t < TC_LOCAL_TYPES; t++) {
            evictions[t] += s->type_evictions[t];
            rejects[t] += s->type_rejects[t];
        }
        shard_unlock(s);
    }
}

size_t tc__local_count(tc_local *l)
{
    size_t n = 0;
    uint64_t epoch = atomic_load_explicit(&l->floor, memory_order_acquire);
    int64_t now = tc__now_ns();
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        for (uint32_t b = 0; b <= s->bmask; b++)
            for (entry *e = atomic_load_explicit(&s->buckets[b], memory_order_relaxed); e;
                 e = atomic_load_explicit(&e->chain, memory_order_relaxed))
                n += !dead(l, e, epoch, now);
        shard_unlock(s);
    }
    return n;
}

void tc__local_free_after_fork(tc_local *l)
{
    if (!l)
        return;
    /* A shard lock taken means a writer of the parent was mid-update at the fork: its table
     * may be half spliced, so the tier is left as it is (shared copy-on-write with the
     * parent) rather than walked. */
    for (unsigned i = 0; i <= l->mask; i++)
        if (atomic_load_explicit(&l->shards[i].mu, memory_order_relaxed))
            return;
    tc__local_free(l);
}
