/*
 * The local tier: reference-counted values in a power-of-two number of cache-line aligned
 * shards, each with its own lock (a spinlock: shard_lock), uthash table, CLOCK eviction
 * list, byte budget, counters and fill-guard slot sequences. The tier owns a share of each
 * value it stores, and its hits lend references counted under the shard lock ("Lending").
 *
 * Locks: a shard lock is a leaf lock and guards all of its shard, except that the slot
 * sequences are atomics, bumped only under it, so tickets are read without it. The flush
 * epoch is one atomic per tier, bumped without a lock. Entries removed under a lock are
 * freed after it is released.
 *
 * Invariants (shard lock held): bytes is the sum of the entries' charges and never above
 * the budget; entries counts the table and the list alike; an entry is live only while its
 * epoch (its ticket's) is the tier's and its expiry is in the future; dead ones are misses
 * and are reclaimed lazily. Hash bits: 48..63 pick the shard, 32..39 the slot, 0..31 the
 * uthash bucket, so the three are independent.
 */
#include "config.h"

#include "local.h"

#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

/* uthash allocates through our wrappers (so the torture build can fail its allocations)
 * and reports an allocation failure instead of exiting: an add that could not allocate
 * leaves the table unchanged and sets the element's hh.tbl to NULL, which we check. */
#define HASH_NONFATAL_OOM 1
#define uthash_malloc(sz) tc__malloc(sz)
#define uthash_free(ptr, sz) tc__free(ptr)
/* The table's key is already a good 64-bit hash: its low 32 bits are the bucket hash, not
 * Jenkins run over the hash a second time. We always pass the hash value explicitly (the
 * _BYHASHVALUE macros); this keeps any other use consistent with them. */
#define HASH_FUNCTION(keyptr, keylen, hashv)                                               \
    do {                                                                                 \
        uint64_t hf_k_;                                                                  \
        memcpy(&hf_k_, (keyptr), sizeof hf_k_);                                          \
        (hashv) = (unsigned)hf_k_;                                                       \
        (void)(keylen);                                                                  \
    } while (0)
#include <uthash.h>

#define CACHE_LINE 64
#define DEFAULT_SHARDS 64u
#define MAX_SHARDS 65536u
#define SHARD_SHIFT 48
/* Slots per shard. A fill is refused when any hash of its slot is invalidated during the
 * fetch, so more slots mean fewer needless refusals; 256 costs 2 KiB per shard, and with
 * 64 shards a busy invalidation stream (10k/s) refuses well under 0.1% of 1 ms fills. */
#define SLOTS 256u
#define SLOT_SHIFT 32

typedef struct entry {
    UT_hash_handle hh; /* keyed by h */
    uint64_t h;
    tc_ref *val;        /* the tier's own share of it (TIER_SHARE) */
    int64_t expires_ns; /* monotonic */
    uint64_t epoch;     /* the flush epoch of the ticket it was stored with */
    size_t charge;      /* bytes counted against the shard budget */
    struct entry *prev, *next; /* LRU list (head: newest); next also chains victims */
    size_t klen;
    uint32_t lent;   /* references handed out by hits and not yet settled: see "Lending" */
    bool referenced; /* hit since it last passed the eviction hand */
    bool in_window;  /* in the admission window, not yet admitted to the main region */
    char key[];      /* klen bytes and a NUL */
} entry;

typedef struct list {
    struct entry *head, *tail;
    size_t bytes;
} list;

typedef struct shard {
    /* Aligning the first member aligns the struct and rounds its size up to whole cache
     * lines, so two shards' locks and counters never share a line. */
    alignas(CACHE_LINE) atomic_uint mu; /* the shard lock: see shard_lock */
    /* A hit writes only this line of the shard (the lock and hits) and its entry's lent:
     * every line a read writes moves between the cores of concurrent readers. */
    uint64_t hits;
    entry *table; /* uthash head */
    list main;    /* admitted entries, CLOCK order (head: newest) */
    list window;  /* W-TinyLFU's admission window, FIFO (head: newest) */
    size_t bytes; /* main.bytes + window.bytes */
    uint64_t entries;
    uint64_t misses, evictions, expirations, stores, store_rejects;
    /* TinyLFU's frequency sketch: SKETCH_ROWS rows of width 8-bit counters (a count-min
     * sketch), halved every sample_size increments so old popularity fades. */
    uint8_t *sketch;
    uint32_t sketch_mask; /* width - 1 */
    uint32_t increments, sample_size;
    uint64_t admission_rejects;
    /* Per key type (tc_ref.type_id), for per-type metrics; under mu like the rest. Hits of
     * live entries are counted in their lent until it is settled or they go. */
    uint64_t type_hits[TC_LOCAL_TYPES], type_evictions[TC_LOCAL_TYPES];
    /* Fill-guard sequences: read anywhere, bumped only with mu held. */
    atomic_uint_fast64_t seq[SLOTS];
} shard;

struct tc_local {
    shard *shards;    /* nshards, cache-line aligned inside shards_mem */
    void *shards_mem; /* the allocation, over-sized for the alignment */
    unsigned mask;    /* nshards - 1 */
    size_t budget;    /* per shard: max_bytes / nshards */
    size_t window_budget; /* per shard: the admission window's share (0: no admission) */
    atomic_uint_fast64_t epoch;
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
    if (cap > SIZE_MAX - sizeof(tc_ref))
        return NULL;
    tc_ref *r = tc__malloc(sizeof(tc_ref) + cap);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->flags = 0;
    r->len = 0;
    r->alloc = cap;
    r->data = r->buf;
    r->meta_expiry_ms = 0;
    r->meta_delta_ms = 0;
    r->type_id = 0;
    return r;
}

tc_ref *tc__ref_copy(const void *src, size_t len)
{
    tc_ref *r = tc__ref_new(len);
    if (!r)
        return NULL;
    if (len)
        memcpy(r->buf, src, len);
    r->len = len;
    return r;
}

/* ---------------------------------------------------------------------------------------
 * Lending
 *
 * A hit hands out a reference without an atomic operation: the tier's share of a value's
 * count is TIER_SHARE rather than 1, and the references its hits hand out are counted in
 * the entry (lent), under the shard lock the hit holds anyway. Each is released as any
 * other reference, by an atomic decrement of refs. While the tier holds the value, refs is
 * therefore TIER_SHARE + other holders + settled - released, which stays above zero because
 * no more than lent + settled references were ever handed out and lent < LEND_SETTLE <
 * TIER_SHARE. When the tier lets go it subtracts TIER_SHARE - lent, leaving refs the exact
 * number of holders, and frees the value if that is none. Every LEND_SETTLE hits the count
 * moves from the entry to refs (settled), so lent never overflows. A value stored in several
 * entries gets a share, and a lent count, from each.
 * ------------------------------------------------------------------------------------- */

#define TIER_SHARE TC_REF_TIER_SHARE
#define LEND_SETTLE TC_REF_LEND_SETTLE

/* A reference to e's value for the caller of a hit. Caller holds the shard lock. */
static inline tc_ref *lend_locked(shard *s, entry *e)
{
    if (TC_UNLIKELY(++e->lent == LEND_SETTLE)) {
        atomic_fetch_add_explicit(&e->val->refs, e->lent, memory_order_relaxed);
        s->type_hits[type_slot(e->val)] += e->lent;
        e->lent = 0;
    }
    return e->val;
}

/* The tier takes its share of v, for a new entry. */
static inline void tier_take(tc_ref *v)
{
    atomic_fetch_add_explicit(&v->refs, TIER_SHARE, memory_order_relaxed);
}

/* The tier lets go of the value of e, an entry out of the table (no lock needed: nothing
 * can lend from it any more). Acquire and release as tc__ref_drop, whose role it plays. */
static void tier_release(entry *e)
{
    uint64_t owed = TIER_SHARE - e->lent;
    if (atomic_fetch_sub_explicit(&e->val->refs, owed, memory_order_acq_rel) == owed)
        tc__free(e->val);
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

/* What an entry costs the budget: the entry with its key and NUL, and the whole value
 * allocation (header and buf), also when the value is shared with callers. */
static size_t entry_charge(size_t klen, const tc_ref *v)
{
    return add_sat(add_sat(sizeof(entry) + 1 + sizeof(tc_ref), klen), v->alloc);
}

static inline list *list_of(shard *s, const entry *e)
{
    return e->in_window ? &s->window : &s->main;
}

static void lru_unlink_locked(shard *s, entry *e)
{
    list *li = list_of(s, e);
    if (e->prev)
        e->prev->next = e->next;
    else
        li->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        li->tail = e->prev;
    e->prev = e->next = NULL;
    li->bytes -= e->charge;
}

static void lru_push_head_locked(shard *s, entry *e)
{
    list *li = list_of(s, e);
    e->prev = NULL;
    e->next = li->head;
    if (li->head)
        li->head->prev = e;
    else
        li->tail = e;
    li->head = e;
    li->bytes += e->charge;
}

/* Takes e out of the table, the list and the accounting and chains it on *victims, to be
 * freed by free_victims once the lock is released. */
static void remove_locked(shard *s, entry *e, entry **victims)
{
    s->type_hits[type_slot(e->val)] += e->lent; /* lent stays: tier_release needs it */
    HASH_DELETE(hh, s->table, e);
    lru_unlink_locked(s, e);
    s->bytes -= e->charge;
    s->entries--;
    e->next = *victims;
    *victims = e;
}

/* Drops the tier's references and frees the entries chained by remove_locked. Called with
 * no lock held. */
static void free_victims(entry *v)
{
    while (v) {
        entry *next = v->next;
        tier_release(v);
        tc__free(v);
        v = next;
    }
}

static inline entry *find_locked(shard *s, uint64_t h)
{
    entry *e;
    HASH_FIND_BYHASHVALUE(hh, s->table, &h, sizeof h, (unsigned)h, e);
    return e;
}

/* True if e holds key (klen bytes). Keys of 8 bytes and more are compared eight bytes at a
 * time, the last eight overlapping, inline: a call to memcmp costs more than that for the
 * usual key lengths. */
static inline bool key_eq(const entry *e, const char *key, size_t klen)
{
    if (e->klen != klen)
        return false;
    if (klen < 8)
        return memcmp(e->key, key, klen) == 0;
    uint64_t a, b;
    for (size_t i = 0; i + 8 < klen; i += 8) {
        memcpy(&a, e->key + i, 8);
        memcpy(&b, key + i, 8);
        if (a != b)
            return false;
    }
    memcpy(&a, e->key + klen - 8, 8);
    memcpy(&b, key + klen - 8, 8);
    return a == b;
}

static inline bool dead(const entry *e, uint64_t epoch, int64_t now_ns)
{
    return e->epoch != epoch || e->expires_ns <= now_ns;
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
#define SKETCH_MAX 15 /* counters saturate: popularity is relative */

/* The four counters of h, one per row: four 16-bit slices of one remix of h, so the rows
 * use bits independent of the shard, slot and bucket bits, and one multiply serves all. */
#define SKETCH_CELLS(s, h, c)                                                              \
    uint64_t g_ = ((h) ^ ((h) >> 29)) * 0xbf58476d1ce4e5b9ULL;                             \
    uint32_t m_ = (s)->sketch_mask;                                                        \
    uint8_t *c[SKETCH_ROWS] = {(s)->sketch + ((uint32_t)g_ & m_),                          \
                               (s)->sketch + (m_ + 1) + ((uint32_t)(g_ >> 16) & m_),       \
                               (s)->sketch + 2 * (m_ + 1) + ((uint32_t)(g_ >> 32) & m_),   \
                               (s)->sketch + 3 * (m_ + 1) + ((uint32_t)(g_ >> 48) & m_)}

static void sketch_increment_locked(shard *s, uint64_t h)
{
    if (!s->sketch)
        return;
    SKETCH_CELLS(s, h, c);
    *c[0] += *c[0] < SKETCH_MAX;
    *c[1] += *c[1] < SKETCH_MAX;
    *c[2] += *c[2] < SKETCH_MAX;
    *c[3] += *c[3] < SKETCH_MAX;
    if (TC_UNLIKELY(++s->increments >= s->sample_size)) { /* age: halve every counter */
        for (uint32_t i = 0; i < SKETCH_ROWS * (m_ + 1); i++)
            s->sketch[i] >>= 1;
        s->increments /= 2;
    }
}

static unsigned sketch_frequency_locked(const shard *s, uint64_t h)
{
    SKETCH_CELLS(s, h, c);
    unsigned f = *c[0];
    for (unsigned r = 1; r < SKETCH_ROWS; r++)
        f = *c[r] < f ? *c[r] : f;
    return f;
}

static void evict_locked(shard *s, entry *e, entry **victims)
{
    s->evictions++;
    s->type_evictions[type_slot(e->val)]++;
    remove_locked(s, e, victims);
}

/* The entry the CLOCK hand of list li would evict: dead entries on the way are removed
 * (expirations), referenced ones get their second chance. NULL if li empties. */
static entry *clock_victim_locked(tc_local *l, shard *s, list *li, entry **victims)
{
    uint64_t epoch = atomic_load_explicit(&l->epoch, memory_order_acquire);
    int64_t now = tc__now_ns();
    for (entry *e = li->tail; e; e = li->tail) {
        if (dead(e, epoch, now)) {
            if (e->epoch == epoch)
                s->expirations++;
            remove_locked(s, e, victims);
        } else if (e->referenced) {
            e->referenced = false;
            lru_unlink_locked(s, e);
            lru_push_head_locked(s, e);
        } else {
            return e;
        }
    }
    return NULL;
}

/* Moves the window's oldest entry c into the main region, through the admission filter
 * when the main region is full: c replaces the CLOCK victim only if it is more popular. */
static void promote_locked(tc_local *l, shard *s, entry *c, entry **victims)
{
    size_t main_budget = l->budget - l->window_budget;
    while (s->main.bytes + c->charge > main_budget) {
        entry *v = clock_victim_locked(l, s, &s->main, victims);
        if (!v || s->main.bytes + c->charge <= main_budget)
            break; /* the hand reclaimed dead entries on its way: room enough */
        if (sketch_frequency_locked(s, c->h) <= sketch_frequency_locked(s, v->h)) {
            s->admission_rejects++;
            evict_locked(s, c, victims);
            return;
        }
        evict_locked(s, v, victims);
    }
    lru_unlink_locked(s, c);
    c->in_window = false;
    lru_push_head_locked(s, c);
}

/* After e (already counted in bytes and on its list) was stored: brings the shard back
 * within budget. With admission, the window's overflow is promoted through the filter;
 * then (or without admission) CLOCK evicts from the main region, and last from the
 * window; e itself goes last (it fits the budget alone). */
static void make_room_locked(tc_local *l, shard *s, entry *e, entry **victims)
{
    while (s->window.bytes > l->window_budget && s->window.tail != e)
        promote_locked(l, s, s->window.tail, victims);
    while (s->bytes > l->budget) {
        entry *v = clock_victim_locked(l, s, &s->main, victims);
        if (s->bytes <= l->budget)
            break; /* dead entries reclaimed were enough */
        if (!v && s->window.tail != e)
            v = s->window.tail;
        if (!v)
            break; /* only e is left, and it fits */
        evict_locked(s, v, victims);
    }
}

/* ---------------------------------------------------------------------------------------
 * Lifetime
 * ------------------------------------------------------------------------------------- */

tc_status tc__local_new(size_t max_bytes, unsigned nshards, tc_local **out)
{
    if (!out)
        return TC_ERR_ARG;
    *out = NULL;
    if (nshards == 0)
        nshards = DEFAULT_SHARDS;
    if (nshards > MAX_SHARDS || (nshards & (nshards - 1)) != 0)
        return TC_ERR_ARG;

    tc_local *l = tc__calloc(1, sizeof *l);
    if (!l)
        return TC_ERR_NOMEM;
    l->shards_mem = tc__calloc(1, (size_t)nshards * sizeof(shard) + CACHE_LINE - 1);
    if (!l->shards_mem) {
        tc__free(l);
        return TC_ERR_NOMEM;
    }
    uintptr_t p = ((uintptr_t)l->shards_mem + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1);
    l->shards = (shard *)p;
    l->mask = nshards - 1;
    l->budget = max_bytes / nshards;
    atomic_init(&l->epoch, 1);

    l->window_budget = l->budget / 100;
    uint32_t width = 16; /* about one counter per entry a shard can hold (~256 B each) */
    while (width < (1u << 16) && width < l->budget / 128)
        width <<= 1;
    for (unsigned i = 0; i < nshards; i++) {
        shard *s = &l->shards[i];
        for (unsigned j = 0; j < SLOTS; j++)
            atomic_init(&s->seq[j], 0);
        if (l->budget > 0) {
            s->sketch = tc__calloc(SKETCH_ROWS, width);
            s->sketch_mask = width - 1;
            s->sample_size = 10 * width;
        }
        if (l->budget > 0 && !s->sketch) {
            while (i-- > 0)
                tc__free(l->shards[i].sketch);
            tc__free(l->shards_mem);
            tc__free(l);
            return TC_ERR_NOMEM;
        }
        atomic_init(&s->mu, 0);
    }
    *out = l;
    return TC_OK;
}

void tc__local_free(tc_local *l)
{
    if (!l)
        return;
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        entry *victims = NULL;
        while (s->main.head)
            remove_locked(s, s->main.head, &victims);
        while (s->window.head)
            remove_locked(s, s->window.head, &victims);
        tc__free(s->sketch);
        free_victims(victims);
    }
    tc__free(l->shards_mem);
    tc__free(l);
}

/* ---------------------------------------------------------------------------------------
 * Operations
 * ------------------------------------------------------------------------------------- */

/* The end of a lookup that found no live entry for its key: e (NULL, dead, or another key's
 * entry with the same hash) goes if it is dead, the miss is counted, and the lock released.
 * Kept out of line so that the hit path stays short. Caller holds the shard lock. */
static __attribute__((noinline)) bool get_miss_unlock(shard *s, entry *e, uint64_t h,
                                                      uint64_t epoch, int64_t now_ns)
{
    entry *victims = NULL;
    if (e && dead(e, epoch, now_ns)) {
        if (e->epoch == epoch)
            s->expirations++;
        remove_locked(s, e, &victims);
    }
    sketch_increment_locked(s, h);
    s->misses++;
    shard_unlock(s);
    free_victims(victims);
    return false;
}

bool tc__local_get(tc_local *l, uint64_t h, const char *key, size_t klen, int64_t now_ns,
                   tc_ref **out)
{
    *out = NULL;
    shard *s = shard_of(l, h);
    uint64_t epoch = atomic_load_explicit(&l->epoch, memory_order_acquire);

    shard_lock(s);
    entry *e = find_locked(s, h);
    /* The table is keyed by hash: an entry for another key with the same hash is a miss,
     * and stays (it is valid for its own key). */
    if (TC_UNLIKELY(!e || dead(e, epoch, now_ns) || !key_eq(e, key, klen)))
        return get_miss_unlock(s, e, h, epoch, now_ns);
    /* The sketch counts the first hit after each pass of the hand: only unreferenced
     * entries are ever compared with a candidate, so the hits in between would change no
     * decision, and skipping them keeps the common hit short. */
    if (!e->referenced) {
        e->referenced = true;
        sketch_increment_locked(s, h);
    }
    s->hits++;
    *out = lend_locked(s, e);
    shard_unlock(s);
    return true;
}

tc_ticket tc__local_ticket(tc_local *l, uint64_t h)
{
    /* No lock: a sequence read here can only be older than the one a later store sees
     * under the lock, and an older ticket is refused, never wrongly accepted. */
    tc_ticket t;
    t.epoch = atomic_load_explicit(&l->epoch, memory_order_acquire);
    t.seq = atomic_load_explicit(slot_of(shard_of(l, h), h), memory_order_acquire);
    return t;
}

/* The common store. write: the value comes from this process's own write, so bump the
 * slot (refusing older fills in flight) and, if the ticket is stale, remove the entry,
 * since what is cached for the key predates a write. */
static bool local_store(tc_local *l, uint64_t h, const char *key, size_t klen, tc_ref *v,
                  int64_t expires_ns, tc_ticket t, bool write)
{
    shard *s = shard_of(l, h);
    size_t need = entry_charge(klen, v);
    entry *e = NULL;

    /* Allocate before taking the lock: the critical section stays short, and a value too
     * large for the budget costs nothing. */
    if (need <= l->budget) {
        e = tc__malloc(sizeof(entry) + klen + 1);
        if (e) {
            memset(e, 0, sizeof *e);
            e->h = h;
            e->val = v;
            e->expires_ns = expires_ns;
            e->epoch = t.epoch;
            e->charge = need;
            e->klen = klen;
            if (klen)
                memcpy(e->key, key, klen);
            e->key[klen] = '\0';
        }
    }

    entry *victims = NULL;
    bool stored = false;
    shard_lock(s);
    atomic_uint_fast64_t *slot = slot_of(s, h);
    uint64_t seq = atomic_load_explicit(slot, memory_order_relaxed);
    bool fresh = seq == t.seq &&
                 atomic_load_explicit(&l->epoch, memory_order_acquire) == t.epoch;
    if (write)
        atomic_store_explicit(slot, seq + 1, memory_order_release);

    entry *old = find_locked(s, h);
    /* A stale fill leaves the entry alone: it may be newer than the fill. Otherwise the
     * old entry goes (replaced, or not worth keeping once its key was written or
     * refetched), whatever key it holds. */
    if (old && (fresh || write))
        remove_locked(s, old, &victims);

    if (write)
        sketch_increment_locked(s, h); /* a write-through value counts as one access */
    if (fresh && e) {
        HASH_ADD_BYHASHVALUE(hh, s->table, h, sizeof e->h, (unsigned)h, e);
        if (e->hh.tbl) {
            tier_take(v);
            e->in_window = l->window_budget > 0;
            lru_push_head_locked(s, e);
            s->bytes += need;
            s->entries++;
            s->stores++;
            stored = true;
            make_room_locked(l, s, e, &victims);
        }
    }
    if (!stored)
        s->store_rejects++;
    shard_unlock(s);

    if (!stored)
        tc__free(e);
    free_victims(victims);
    return stored;
}

bool tc__local_store_if_fresh(tc_local *l, uint64_t h, const char *key, size_t klen,
                              tc_ref *v, int64_t expires_ns, tc_ticket t)
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
    entry *victims = NULL;
    shard_lock(s);
    atomic_uint_fast64_t *slot = slot_of(s, h);
    atomic_store_explicit(slot, atomic_load_explicit(slot, memory_order_relaxed) + 1,
                          memory_order_release);
    entry *e = find_locked(s, h);
    if (e)
        remove_locked(s, e, &victims);
    shard_unlock(s);
    free_victims(victims);
}

void tc__local_set_admission(tc_local *l, bool on)
{
    l->window_budget = on ? l->budget / 100 : 0;
}

void tc__local_flush(tc_local *l)
{
    atomic_fetch_add_explicit(&l->epoch, 1, memory_order_acq_rel);
}

void tc__local_stats(tc_local *l, tc_local_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        out->hits += s->hits;
        out->misses += s->misses;
        out->evictions += s->evictions;
        out->expirations += s->expirations;
        out->entries += s->entries;
        out->bytes += s->bytes;
        out->stores += s->stores;
        out->store_rejects += s->store_rejects;
        shard_unlock(s);
    }
}

void tc__local_type_stats(tc_local *l, uint64_t *hits, uint64_t *evictions)
{
    memset(hits, 0, TC_LOCAL_TYPES * sizeof *hits);
    memset(evictions, 0, TC_LOCAL_TYPES * sizeof *evictions);
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        for (unsigned t = 0; t < TC_LOCAL_TYPES; t++) {
            hits[t] += s->type_hits[t];
            evictions[t] += s->type_evictions[t];
        }
        for (const entry *e = s->main.head; e; e = e->next)
            hits[type_slot(e->val)] += e->lent;
        for (const entry *e = s->window.head; e; e = e->next)
            hits[type_slot(e->val)] += e->lent;
        shard_unlock(s);
    }
}

size_t tc__local_count(tc_local *l)
{
    size_t n = 0;
    uint64_t epoch = atomic_load_explicit(&l->epoch, memory_order_acquire);
    int64_t now = tc__now_ns();
    for (unsigned i = 0; i <= l->mask; i++) {
        shard *s = &l->shards[i];
        shard_lock(s);
        for (entry *e = s->main.head; e; e = e->next)
            n += !dead(e, epoch, now);
        for (entry *e = s->window.head; e; e = e->next)
            n += !dead(e, epoch, now);
        shard_unlock(s);
    }
    return n;
}
