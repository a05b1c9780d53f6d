/*
 * The public operations, orchestrated across the tiers.
 *
 * Reads go local tier -> Redis, and store what Redis returned in the local tier under the
 * fill guard (a ticket taken before the fetch; the store is dropped if an invalidation for
 * the slot, or a flush, came in meanwhile). Local expiry is min(local_ttl_ms, the remaining
 * Redis TTL measured from before the request was sent), so a local copy never outlives its
 * Redis TTL.
 *
 * Every write goes through the same steps (write_begin / write_end): invalidate the local
 * copies and take tickets; do the Redis write together with its invalidation message in one
 * atomic round trip; then either keep the new value locally (write-through, guarded by the
 * ticket) or invalidate again, so that a read in this process after the write returns never
 * sees the old value, even if a concurrent fill fetched it during the write.
 *
 * struct tc_cache is private to this file: the modules built on it use the narrow API of
 * cache.h, the subscriber a context of its own (tc_sub_ctx), the tests lib/testing.h.
 *
 * After fork: a child must not use what it inherited (the subscriber thread is gone, the
 * connections are the parent's, the local tier no longer hears invalidations). Every call
 * compares the cache's fork generation with the process's (common.h: one load; a local hit
 * makes no syscall); the first call in a child drops what was inherited and reconnects
 * (see "After fork" below).
 *
 * Locks: this module takes none itself; the local tier's shard locks and the remote pool's
 * lock are leaves taken inside those modules. No user callback runs under any lock.
 */
#include "config.h"

#include "cache.h"

#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "flight.h"
#include "format.h"
#include "inval.h"
#include "key.h"
#include "shadow.h"
#include "slot_tags.h"
#include "subscriber.h"
#include "tags.h"
#include "testing.h"

#define RKEY_STACK 512

struct tc_cache {
    tc_options opt;    /* the caller's options with defaults applied; strings below */
    char *url;         /* owned copies of the option strings */
    char *tls_strs[5]; /* the tls_* file and name options, in tc_options' order */
    char *key_prefix;
    size_t key_prefix_len;
    char *rprefix; /* "<key_prefix>:<version>:", the Redis key prefix */
    size_t rprefix_len;
    char *channel; /* "<key_prefix>:__tc:inval" */
    size_t channel_len;
    char *seq_key;         /* "<key_prefix>:__tc:seq": the group sequences (broadcast) */
    tc_seqs *seqs;         /* recovery by group sequences: those applied; NULL: none */
    bool seq_slots;        /* ... on a cluster: a message's groups are the keys' slots */
    uint64_t origin;       /* random id of this instance, carried by its invalidations */
    bool local_enabled;    /* local_max_bytes > 0 and local_ttl_ms > 0 */
    int64_t coarse_res_ns; /* local expiries are shortened by this: see local_expiry */
    tc_logger log;
    tc_local *local;
    tc_remote *remote;
    tc_sub_ctx sub_ctx;   /* what the subscriber works with (built by tc_open) */
    tc_subscriber *sub;   /* NULL in TC_COHERENCE_NONE */
    atomic_bool link_ok;  /* the local tier may answer: always in TC_COHERENCE_NONE,
                             otherwise while the subscriber's link is known healthy */
    tc_flights *flights;  /* single-flight table of tc_get_or_set (flight.h) */
    tc_counters counters; /* cache-wide: what belongs to no key type */
    tc_types *types;      /* counters per key type */
    atomic_bool closing;
    /* Shadow reads (shadow.h): NULL while shadow_rate is 0; tc__shadow_threshold of it. */
    tc_shadow *shadow;
    uint64_t shadow_threshold;
    /* After fork (see there). gen: the fork generation the threads, connections and local
     * tier belong to (release-stored once they are this process's own). reset_gen: the
     * generation a reset runs for (taken by CAS: one thread resets, the others wait).
     * The rest is the resetting thread's. */
    atomic_uint gen;
    atomic_uint reset_gen;
    atomic_uint dropped_gen; /* the generation whose inheritance was dropped */
    atomic_int reset_status; /* a failed reset's status, for the calls until a retry */
    _Atomic int64_t reset_retry_ns;
    tc_local *inherited_local;  /* the parent's tier: freed at close, shared until then */
    struct open_report *report; /* tc_open2 with an error buffer: see there */
    struct {                    /* set through lib/testing.h only; zero otherwise */
        tc_fill_hook_fn fill;
        void *fill_arg;
        int lock_poll_ms;
    } test;
};

/* What tc_open2 hands back: the first error logged while the cache opens, or else its
 * first warning (the connect failure a node logs before the open gives up, the credentials
 * Redis refused, the option that broke a rule). The cache's logger is report_log for its
 * whole life, since the Redis tier keeps copies of it; it records only while active.
 * mu: the opening thread and the subscriber it starts may log at once. */
typedef struct open_report {
    pthread_mutex_t mu;
    bool active;
    int level; /* msg's; above TC_LOG_WARN while empty */
    char msg[512];
    tc_logger user;
} open_report;

/* ------------------------------------------------------------------ small helpers */

/* A Redis key built on the stack when it fits, on the heap otherwise. */
typedef struct rkey {
    char *s;
    size_t len;
    char small[RKEY_STACK];
} rkey;

static tc_status rkey_build(const tc_cache *c, const char *key, size_t klen, rkey *rk)
{
    size_t need = tc__cache_rkey_len(c, klen) + 1;
    rk->s = need <= sizeof rk->small ? rk->small : tc__malloc(need);
    if (!rk->s)
        return TC_ERR_NOMEM;
    rk->len = tc__cache_rkey(c, key, klen, rk->s, need);
    return TC_OK;
}

static void rkey_done(rkey *rk)
{
    if (rk->s && rk->s != rk->small)
        tc__free(rk->s);
    rk->s = NULL;
}

TC_API void tc_value_release(tc_value *v)
{
    if (v)
        tc__value_release(v);
}

static tc_status after_fork(tc_cache *c);

static tc_status check_open(const tc_cache *c)
{
    if (!c)
        return TC_ERR_ARG;
    if (atomic_load_explicit(&c->closing, memory_order_relaxed))
        return TC_ERR_CLOSED;
    if (TC_UNLIKELY(atomic_load_explicit(&c->gen, memory_order_acquire) != tc__fork_gen()))
        return after_fork((tc_cache *)c);
    return TC_OK;
}

/* A caller's bad argument: says which and why through log_fn, at TC_LOG_DEBUG (a busy
 * server passing bad keys is not flooded unless it asks), and returns TC_ERR_ARG. fn: the
 * public function. */
static tc_status __attribute__((format(printf, 3, 4)))
bad_arg(const tc_cache *c, const char *fn, const char *fmt, ...)
{
    if (!c->log.fn)
        return TC_ERR_ARG;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tc__log(&c->log, TC_LOG_DEBUG, "%s: %s", fn, msg);
    return TC_ERR_ARG;
}

tc_status tc__cache_bad_key(const tc_cache *c, const char *fn, const char *what, const char *key,
                            size_t max_len)
{
    char why[256];
    return bad_arg(c, fn, "%s %s", what, tc__key_problem(key, max_len, why, sizeof why));
}

/* key_ok(c, key, klen, what): true for a valid key; otherwise says why, as the caller's
 * public function (its __func__), naming the argument `what`. */
#define key_ok(c, key, klen, what) key_ok_in(c, key, klen, what, __func__)
static bool key_ok_in(const tc_cache *c, const char *key, size_t *klen, const char *what,
                      const char *fn)
{
    if (tc__key_valid(key, c->opt.max_key_len, klen))
        return true;
    tc__cache_bad_key(c, fn, what, key, c->opt.max_key_len);
    return false;
}

/* The prologue of every single-key operation: an open cache and a valid key. */
#define begin_key(c, key, klen) begin_key_in(c, key, klen, __func__)
static tc_status begin_key_in(const tc_cache *c, const char *key, size_t *klen, const char *fn)
{
    tc_status st = check_open(c);
    if (st == TC_OK && !key_ok_in(c, key, klen, "key", fn))
        st = TC_ERR_ARG;
    return st;
}

/* A delete's answer: TC_OK if the key existed, TC_MISS if not, or the error. */
static tc_status deleted_status(tc_status st, size_t deleted)
{
    return st != TC_OK ? st : deleted ? TC_OK : TC_MISS;
}

/* Resolves a caller's TTL: > 0 or TC_TTL_FOREVER for Redis, 0 for "expire at once", and
 * TC_ERR_ARG for other negatives. */
static tc_status ttl_resolve(const tc_cache *c, int ttl_ms, int *out)
{
    if (ttl_ms == TC_TTL_DEFAULT)
        ttl_ms = c->opt.remote_ttl_ms;
    if (ttl_ms < 0 && ttl_ms != TC_TTL_FOREVER) {
        (void)bad_arg(c, "ttl_ms",
                      "%d is not a TTL: > 0 (ms), 0 (expire at once), "
                      "TC_TTL_DEFAULT (-1) or TC_TTL_FOREVER (-2)",
                      ttl_ms);
        return TC_ERR_ARG;
    }
    *out = ttl_ms;
    return TC_OK;
}

/* The monotonic deadline of a local copy of a value with `remote_ms` left in Redis (< 0:
 * no expiry), measured from t0_ns, taken before the Redis request was sent. Local hits
 * check it against the coarse clock, which may lag by up to its resolution: the deadline is
 * shortened by that much, so a local copy never outlives its Redis TTL. */
static int64_t local_expiry(const tc_cache *c, int64_t t0_ns, int64_t remote_ms)
{
    int64_t ms = c->opt.local_ttl_ms;
    if (remote_ms >= 0 && remote_ms < ms)
        ms = remote_ms;
    return t0_ns + ms * 1000000 - c->coarse_res_ns;
}

/* Whether a fetch asks Redis for the key's remaining TTL: only when a local copy will be
 * kept, and the options want it bounded by that TTL. */
static bool asks_ttl(const tc_cache *c)
{
    return c->local_enabled && c->opt.fetch_remote_ttl;
}

/* One atomic load: the subscriber clears link_ok (release) as soon as its link is in
 * doubt. */
static bool local_readable(const tc_cache *c)
{
    return c->local_enabled &&
           atomic_load_explicit(&((tc_cache *)c)->link_ok, memory_order_acquire);
}

/* Whether a value this process writes may be kept in its local tier at once. Not in
 * the tracking modes: our own writes come back as invalidations and would evict the copy
 * at once, with no origin to tell them apart. */
static bool write_through(const tc_cache *c)
{
    return c->local_enabled &&
           (c->opt.coherence == TC_COHERENCE_BROADCAST || c->opt.coherence == TC_COHERENCE_NONE);
}

/* Targeted coherence: where a fill-bound read learns whether Redis tracks it for this
 * process (remote.h, tc__remote_get_tracked); NULL in the other modes, whose fills need
 * no such proof. An untracked value is returned but never kept. */
static bool *tracked_out(const tc_cache *c, bool *slot)
{
    return c->local_enabled && c->opt.coherence == TC_COHERENCE_TARGETED ? slot : NULL;
}

tc_counters *tc__key_counters(tc_cache *c, const char *key, size_t klen)
{
    return tc__type_counters(c->types, tc__type_of(c->types, key, klen));
}

/* ------------------------------------------------------------------ the internal API */

tc_status tc__cache_check_open(const tc_cache *c)
{
    return check_open(c);
}

const tc_options *tc__cache_options(const tc_cache *c)
{
    return &c->opt;
}

const tc_logger *tc__cache_log(const tc_cache *c)
{
    return &c->log;
}

tc_remote *tc__cache_remote(const tc_cache *c)
{
    return c->remote;
}

tc_local *tc__cache_local(const tc_cache *c)
{
    return c->local;
}

tc_flights *tc__cache_flights(const tc_cache *c)
{
    return c->flights;
}

tc_types *tc__cache_types(const tc_cache *c)
{
    return c->types;
}

tc_counters *tc__cache_counters(tc_cache *c)
{
    return &c->counters;
}

size_t tc__cache_rkey_len(const tc_cache *c, size_t klen)
{
    return c->rprefix_len + klen;
}

size_t tc__cache_rkey(const tc_cache *c, const char *key, size_t klen, char *buf, size_t cap)
{
    return tc__key_redis(buf, cap, c->rprefix, c->rprefix_len, key, klen);
}

static void note_remote_error(tc_cache *c, const char *key, size_t klen, tc_status st)
{
    if (st < 0 && st != TC_ERR_ARG && st != TC_ERR_NOT_INT && st != TC_ERR_TOO_BIG &&
        st != TC_ERR_NOMEM)
        TC_COUNT(key ? tc__key_counters(c, key, klen) : &c->counters, remote_errors);
}

/* ------------------------------------------------------------------ options and lifetime */

TC_API void tc_options_init(tc_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->struct_size = sizeof *o;
    o->redis_url = NULL;
    o->key_prefix = "";
    o->version = 1;
    o->remote_ttl_ms = 300000;
    o->local_ttl_ms = 60000;
    o->local_max_bytes = (size_t)64 << 20;
    o->max_value_bytes = (size_t)1 << 20;
    o->max_key_len = 250;
    o->pool_size = 8;
    o->connect_timeout_ms = 500;
    o->command_timeout_ms = 250;
    o->coherence = TC_COHERENCE_BROADCAST;
    o->log_fn = NULL;
    o->log_arg = NULL;
    o->heartbeat_ms = 250;
    o->lock_ttl_ms = 10000;
    o->flight_wait_ms = 5000;
    o->xfetch_beta = 1.0;
    o->stale_if_error_ms = 0;
    o->negative_ttl_ms = 30000;
    o->check_redis_config = 1;
    o->fetch_remote_ttl = 1;
}

/* The oldest options layout a caller may pass: everything up to log_arg. */
#define OPTIONS_V1_SIZE (offsetof(tc_options, log_arg) + sizeof(void *))
#define MAX_KEY_LEN_LIMIT ((size_t)64 << 10)
#define MAX_VALUE_LIMIT ((size_t)512 << 20) /* Redis's own limit for a string */

static bool prefix_valid(const char *p)
{
    size_t len;
    return *p == '\0' || tc__key_valid(p, 1024, &len);
}

/* The numeric options and their ranges (an int or a size_t field). */
typedef struct num_rule {
    const char *name;
    size_t off;
    bool is_size;
    int64_t min, max;
} num_rule;

#define INT_RULE(f, lo, hi)                                                                        \
    {                                                                                              \
#f, offsetof(tc_options, f), false, (lo), (hi)                                             \
    }
#define SIZE_RULE(f, lo, hi)                                                                       \
    {                                                                                              \
#f, offsetof(tc_options, f), true, (lo), (int64_t)(hi)                                     \
    }

static const num_rule num_rules[] = {
    INT_RULE(remote_ttl_ms, 1, INT_MAX),
    INT_RULE(local_ttl_ms, 0, INT_MAX),
    SIZE_RULE(max_value_bytes, 1, MAX_VALUE_LIMIT),
    SIZE_RULE(max_key_len, 1, MAX_KEY_LEN_LIMIT),
    INT_RULE(pool_size, 1, 1024),
    INT_RULE(connect_timeout_ms, 1, INT_MAX),
    INT_RULE(command_timeout_ms, 1, INT_MAX),
    INT_RULE(heartbeat_ms, 10, INT_MAX),
    INT_RULE(lock_ttl_ms, 1, INT_MAX),
    INT_RULE(flight_wait_ms, 1, INT_MAX),
    INT_RULE(stale_if_error_ms, 0, INT_MAX),
    INT_RULE(negative_ttl_ms, 0, INT_MAX),
};

/* Which option breaks which rule, in why (cap bytes); TC_OK if none. */
static tc_status options_check(const tc_options *o, char *why, size_t cap)
{
    for (size_t i = 0; i < sizeof num_rules / sizeof num_rules[0]; i++) {
        const num_rule *r = &num_rules[i];
        const char *p = (const char *)o + r->off;
        int64_t v;
        if (r->is_size) {
            size_t z;
            memcpy(&z, p, sizeof z);
            v = z > (size_t)INT64_MAX ? INT64_MAX : (int64_t)z;
        } else {
            int n;
            memcpy(&n, p, sizeof n);
            v = n;
        }
        if (v >= r->min && v <= r->max)
            continue;
        if (r->max == INT_MAX)
            snprintf(why, cap, "%s = %" PRId64 ": must be >= %" PRId64, r->name, v, r->min);
        else
            snprintf(why, cap, "%s = %" PRId64 ": must be %" PRId64 "..%" PRId64, r->name, v,
                     r->min, r->max);
        return TC_ERR_ARG;
    }
    if (!prefix_valid(o->key_prefix)) {
        char k[256];
        snprintf(why, cap, "key_prefix %s", tc__key_problem(o->key_prefix, 1024, k, sizeof k));
    } else if (o->coherence != TC_COHERENCE_BROADCAST && o->coherence != TC_COHERENCE_TRACKING &&
               o->coherence != TC_COHERENCE_NONE && o->coherence != TC_COHERENCE_TARGETED) {
        snprintf(why, cap,
                 "coherence = %d: must be TC_COHERENCE_BROADCAST (0), TC_COHERENCE_TRACKING "
                 "(1), TC_COHERENCE_NONE (2) or TC_COHERENCE_TARGETED (3)",
                 (int)o->coherence);
    } else if (o->redis_url && !*o->redis_url) {
        /* "" is a URL with bad syntax, not "no URL": connecting to the default instead
         * would hide a configuration error (an unset variable in the application's
         * config). */
        snprintf(why, cap, "redis_url is \"\": NULL means $TC_REDIS_URL or the default");
    } else if (!(o->xfetch_beta >= 0) || o->xfetch_beta > 1e6) { /* NaN too */
        snprintf(why, cap, "xfetch_beta = %g: must be 0..1e6", o->xfetch_beta);
    } else if (o->recovery != TC_RECOVERY_AUTO && o->recovery != TC_RECOVERY_FLUSH &&
               o->recovery != TC_RECOVERY_GROUPS) {
        snprintf(why, cap,
                 "recovery = %d: must be TC_RECOVERY_AUTO (0), TC_RECOVERY_FLUSH (1) or "
                 "TC_RECOVERY_GROUPS (2)",
                 (int)o->recovery);
    } else if (o->recovery == TC_RECOVERY_GROUPS && o->coherence != TC_COHERENCE_BROADCAST) {
        snprintf(why, cap,
                 "recovery = TC_RECOVERY_GROUPS needs coherence = TC_COHERENCE_BROADCAST (the "
                 "tracking modes hear Redis, which sends no sequences; NONE has no link)");
    } else if (o->tls_skip_verify != 0 && o->tls_skip_verify != 1) {
        snprintf(why, cap, "tls_skip_verify = %d: must be 0 or 1", o->tls_skip_verify);
    } else {
        return TC_OK;
    }
    return TC_ERR_ARG;
}

static tc_status options_copy(const tc_options *in, tc_options *o, char *why, size_t cap)
{
    if (in->struct_size < OPTIONS_V1_SIZE) {
        snprintf(why, cap,
                 "struct_size = %zu: smaller than any layout of tc_options (fill it with "
                 "tc_options_init first)",
                 in->struct_size);
        return TC_ERR_ARG;
    }
    tc_options_init(o);
    memcpy(o, in, in->struct_size < sizeof *o ? in->struct_size : sizeof *o);
    o->struct_size = sizeof *o;
    if (!o->key_prefix)
        o->key_prefix = "";
    return options_check(o, why, cap);
}

/* "<a><mid><n><end>" in a new string; NULL on allocation failure. */
static char *join_str(const char *a, const char *mid, int n, const char *end)
{
    char num[16] = "";
    if (end)
        snprintf(num, sizeof num, "%d", n);
    size_t len = strlen(a) + strlen(mid) + strlen(num) + (end ? strlen(end) : 0);
    char *s = tc__malloc(len + 1);
    if (s)
        snprintf(s, len + 1, "%s%s%s%s", a, mid, num, end ? end : "");
    return s;
}

static tc_status cache_strings(tc_cache *c)
{
    const char *url = c->opt.redis_url;
    if (!url)
        url = getenv("TC_REDIS_URL");
    if (!url || !*url)
        url = "redis://127.0.0.1:6379/0";
    c->url = tc__strdup(url);
    /* The TLS files' names are kept: a child after fork opens its Redis tier again. */
    const char **tls[] = {&c->opt.tls_ca_file, &c->opt.tls_ca_dir, &c->opt.tls_cert_file,
                          &c->opt.tls_key_file, &c->opt.tls_server_name};
    for (size_t i = 0; i < sizeof tls / sizeof tls[0]; i++) {
        c->tls_strs[i] = *tls[i] ? tc__strdup(*tls[i]) : NULL;
        if (*tls[i] && !c->tls_strs[i])
            return TC_ERR_NOMEM;
        *tls[i] = c->tls_strs[i];
    }
    c->key_prefix = tc__strdup(c->opt.key_prefix);
    c->rprefix = join_str(c->opt.key_prefix, ":", c->opt.version, ":");
    c->channel = join_str(c->opt.key_prefix, ":__tc:inval", 0, NULL);
    c->seq_key = join_str(c->opt.key_prefix, ":__tc:seq", 0, NULL);
    if (!c->url || !c->key_prefix || !c->rprefix || !c->channel || !c->seq_key)
        return TC_ERR_NOMEM;
    c->opt.redis_url = c->url;
    c->opt.key_prefix = c->key_prefix;
    c->key_prefix_len = strlen(c->key_prefix);
    c->rprefix_len = strlen(c->rprefix);
    c->channel_len = strlen(c->channel);
    return TC_OK;
}

/* ------------------------------------------------------------------ coherence */

/* On a cluster a slot's sequences live in "<key_prefix>:__tc:seq{<tag>}", which must be in
 * that slot, or (a prefix with a hash tag: every key in the tag's slot) in the keys' one
 * slot. A prefix whose first '{' is not closed, or closed at once, in the prefix itself
 * would put them elsewhere. */
static bool prefix_keeps_slots(const char *prefix)
{
    const char *open = strchr(prefix, '{');
    return !open || (open[1] != '}' && strchr(open + 1, '}'));
}

/* Whether recovery by group sequences works here; if not, why. It needs the sequence bump
 * in the write's atomic unit on the write's node: one hash on one server or Sentinel's
 * master, one key per slot on a cluster (which the key_prefix must not pin elsewhere). The
 * one place this is decided. */
static bool recovery_groups_supported(const tc_cache *c, const char **why)
{
    if (c->opt.coherence != TC_COHERENCE_BROADCAST)
        *why = "it needs TC_COHERENCE_BROADCAST";
    else if (tc__remote_is_cluster(c->remote) && !prefix_keeps_slots(c->key_prefix))
        *why = "on a Redis Cluster it needs a key_prefix without an unclosed '{'";
    else
        return true;
    return false;
}

/* Whether c recovers by group sequences (tc_options.recovery), or TC_ERR_ARG (logged)
 * when TC_RECOVERY_GROUPS was asked for where it cannot work. */
static tc_status recovery_groups_wanted(const tc_cache *c, bool *groups)
{
    const char *why = "";
    bool ok = recovery_groups_supported(c, &why);
    *groups = ok && c->opt.recovery != TC_RECOVERY_FLUSH;
    if (ok || c->opt.recovery == TC_RECOVERY_FLUSH)
        return TC_OK;
    if (c->opt.recovery == TC_RECOVERY_GROUPS) {
        tc__log(&c->log, TC_LOG_ERROR, "tc_open: option recovery = TC_RECOVERY_GROUPS: %s", why);
        return TC_ERR_ARG;
    }
    if (c->opt.coherence == TC_COHERENCE_BROADCAST) /* AUTO where it was expected to work */
        tc__log(&c->log, TC_LOG_WARN,
                "recovery by group sequences is off (%s): a new link flushes the local tier", why);
    return TC_OK;
}

/* Builds the subscriber's context and starts the subscriber (broadcast and tracking
 * modes); in TC_COHERENCE_NONE the local tier is always readable. */
static tc_status coherence_start(tc_cache *c)
{
    c->sub_ctx = (tc_sub_ctx){
        .mode = c->opt.coherence,
        .version = c->opt.version,
        .origin = c->origin,
        .channel = c->channel,
        .key_prefix = c->key_prefix,
        .rprefix = c->rprefix,
        .rprefix_len = c->rprefix_len,
        .heartbeat_ms = c->opt.heartbeat_ms,
        .connect_timeout_ms = c->opt.connect_timeout_ms,
        .command_timeout_ms = c->opt.command_timeout_ms,
        .log = c->log,
        .remote = c->remote,
        .local = c->local,
        .flights = c->flights,
        .types = c->types,
        .counters = &c->counters,
        .healthy = &c->link_ok,
    };
    /* Group sequences (recovery that keeps the tier; docs/design/coherence.md,
     * "Recovery without a flush"): writers send TC2 messages and bump their groups (one
     * hash on one server, one key per slot on a cluster). */
    bool groups;
    tc_status st = recovery_groups_wanted(c, &groups);
    if (st != TC_OK)
        return st;
    if (groups) {
        c->seq_slots = tc__remote_is_cluster(c->remote);
        if (!c->seqs && tc__seqs_new(&c->seqs, c->seq_slots) != TC_OK)
            return TC_ERR_NOMEM;
        c->sub_ctx.seqs = c->seqs;
        c->sub_ctx.seq_key = c->seq_key;
        c->sub_ctx.pool_size = c->opt.pool_size;
    }
    if (c->opt.coherence == TC_COHERENCE_NONE) {
        atomic_store(&c->link_ok, true);
        return TC_OK;
    }
    return tc__subscriber_start(&c->sub_ctx, &c->sub);
}

/* A key type id (0..TC_KEY_TYPES_MAX) as a tc_ref keeps it, in one byte. */
_Static_assert(TC_KEY_TYPES_MAX <= UINT8_MAX, "a type id fits tc_ref.type_id");
static inline uint8_t type_byte(uint32_t id)
{
    return id <= TC_KEY_TYPES_MAX ? (uint8_t)id : 0;
}

/* The cluster slot of a caller key's Redis key. */
static unsigned key_slot(const tc_cache *c, const char *key, size_t klen)
{
    return tc__cluster_slot2(c->rprefix, c->rprefix_len, key, klen);
}

/* The sequence group of a caller key whose hash is h: what its writes bump, and what the
 * local entry holding it is dropped with. On a cluster the group follows the key's slot
 * (16 slots a group), whose sequence numbers its writes. Called on the miss and write
 * paths only, never on a local hit. */
static unsigned key_group(const tc_cache *c, uint64_t h, const char *key, size_t klen)
{
    if (c->seq_slots)
        return key_slot(c, key, klen) >> TC_INVAL_SLOT_SHIFT;
    return tc__local_group(h);
}

/* How many group numbers a message may carry: a cluster's slots, or the local groups. */
static unsigned seq_groups(const tc_cache *c)
{
    return c->seq_slots ? TC_INVAL_SLOTS : TC_INVAL_GROUPS;
}

/* A message of len bytes on c's channel, its buffer allocated. */
static tc_status inval_alloc(tc_cache *c, size_t len, tc_inval_msg *m)
{
    m->buf = tc__malloc(len);
    if (!m->buf)
        return TC_ERR_NOMEM;
    m->active = true;
    m->pub.channel = c->channel;
    m->pub.channel_len = c->channel_len;
    m->pub.payload = m->buf;
    m->pub.payload_len = len;
    return TC_OK;
}

tc_status tc__cache_inval_keys(tc_cache *c, size_t n, const char *const *keys, const size_t *klens,
                               tc_inval_msg *m)
{
    memset(m, 0, sizeof *m);
    if (c->opt.coherence != TC_COHERENCE_BROADCAST)
        return TC_OK;
    size_t len = tc__inval_keys_len(c->opt.version, n, klens);
    if (!c->seqs) {
        if (inval_alloc(c, len, m) != TC_OK)
            return TC_ERR_NOMEM;
        tc__inval_encode_keys(m->buf, c->origin, c->opt.version, n, keys, klens);
        return TC_OK;
    }
    /* Sequenced (TC2): the template, then the groups ("<g>,<g>...", each once: up to 5
     * digits and a comma), a candidate generation, which Redis completes (tc_pub), and on a
     * cluster the key of a one-slot write's sequences. */
    size_t ng = n < seq_groups(c) ? n : seq_groups(c);
    size_t seq_key_len = strlen(c->seq_key);
    size_t gcap = ng * 6 + 1;
    if (inval_alloc(c, len + gcap + 17 + seq_key_len + TC_SLOT_KEY_EXTRA, m) != TC_OK)
        return TC_ERR_NOMEM;
    m->pub.payload_len = len;
    tc__inval_encode_seq_template(m->buf, c->origin, c->opt.version, n, keys, klens,
                                  &m->pub.seq_split);
    char *gs = m->buf + len, *gen = gs + gcap, *slot_key = gen + 17;
    size_t gl = 0, distinct = 0;
    unsigned last = 0;
    unsigned char seen[TC_INVAL_SLOTS / 8] = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned g = c->seq_slots ? key_slot(c, keys[i], klens[i])
                                  : tc__local_group(tc__key_hash(keys[i], klens[i]));
        if (seen[g / 8] & (1u << (g % 8)))
            continue;
        seen[g / 8] |= (unsigned char)(1u << (g % 8));
        gl += (size_t)snprintf(gs + gl, 7, "%s%u", gl ? "," : "", g);
        distinct++;
        last = g;
    }
    uint64_t x = c->origin ^ (uint64_t)tc__now_ns(); /* splitmix64: a fresh candidate */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    snprintf(gen, 17, "%016" PRIx64, x ^ (x >> 31));
    m->pub.seq_key = c->seq_key;
    m->pub.seq_key_len = seq_key_len;
    m->pub.seq_groups = gs;
    m->pub.seq_groups_len = gl;
    m->pub.seq_gen = gen;
    /* On a cluster each slot has its own key: a one-slot write (every single-key call, and
     * the lock's script, which names the key itself) gets it here; the topology gives each
     * slot of a wider write its own (seq_by_slot). */
    if (c->seq_slots && distinct == 1) {
        m->pub.seq_key = slot_key;
        m->pub.seq_key_len = tc__slot_key(slot_key, c->seq_key, seq_key_len, last);
    } else if (c->seq_slots) {
        m->pub.seq_by_slot = true;
    }
    return TC_OK;
}

/* The flush-all message of tc_clear. */
static tc_status inval_flush(tc_cache *c, tc_inval_msg *m)
{
    memset(m, 0, sizeof *m);
    if (c->opt.coherence != TC_COHERENCE_BROADCAST)
        return TC_OK;
    if (inval_alloc(c, TC_INVAL_FLUSH_LEN, m) != TC_OK)
        return TC_ERR_NOMEM;
    tc__inval_encode_flush(m->buf, c->origin);
    return TC_OK;
}

void tc__cache_inval_done(tc_inval_msg *m)
{
    tc__free(m->buf);
    memset(m, 0, sizeof *m);
}

/* Starts the shadow reads' worker when shadow_rate is set (shadow.h). */
static tc_status shadow_start(tc_cache *c)
{
    if (c->opt.shadow_rate == 0 || !c->local_enabled)
        return TC_OK;
    c->shadow_threshold = tc__shadow_threshold(c->opt.shadow_rate);
    return tc__shadow_start(c, &c->shadow);
}

static void drop_inherited(tc_cache *c, bool keep_local);

static tc_status remote_open(tc_cache *c)
{
    tc_remote_config rc = {
        .url = c->url,
        .pool_size = c->opt.pool_size,
        .connect_timeout_ms = c->opt.connect_timeout_ms,
        .command_timeout_ms = c->opt.command_timeout_ms,
        .log = c->log,
        .tls = {.ca_file = c->opt.tls_ca_file,
                .ca_dir = c->opt.tls_ca_dir,
                .cert_file = c->opt.tls_cert_file,
                .key_file = c->opt.tls_key_file,
                .server_name = c->opt.tls_server_name,
                .skip_verify = c->opt.tls_skip_verify != 0},
    };
    return tc__remote_open(&rc, &c->remote);
}

static void cache_free(tc_cache *c)
{
    if (atomic_load(&c->gen) != tc__fork_gen() && atomic_load(&c->dropped_gen) != tc__fork_gen())
        drop_inherited(c, false); /* closed in a child before any other call */
    tc__subscriber_stop(c->sub);  /* before the flights: the subscriber wakes them */
    tc__shadow_stop(c->shadow);   /* before the tiers it reads */
    tc__flights_free(c->flights);
    tc__types_free(c->types);
    tc__remote_close(c->remote);
    tc__local_free(c->local);
    tc__local_free_after_fork(c->inherited_local);
    tc__reclaim_now(); /* the values the tier held, unless callers still hold them */
    tc__free(c->url);
    for (size_t i = 0; i < sizeof c->tls_strs / sizeof c->tls_strs[0]; i++)
        tc__free(c->tls_strs[i]);
    tc__free(c->key_prefix);
    tc__free(c->rprefix);
    tc__free(c->channel);
    tc__free(c->seq_key);
    tc__seqs_free(c->seqs);
    if (c->report)
        pthread_mutex_destroy(&c->report->mu);
    tc__free(c->report);
    tc__free(c);
}

static void report_log(void *arg, int level, const char *msg)
{
    open_report *r = arg;
    pthread_mutex_lock(&r->mu);
    if (r->active && level < r->level) {
        snprintf(r->msg, sizeof r->msg, "%s", msg);
        r->level = level;
    }
    pthread_mutex_unlock(&r->mu);
    if (r->user.fn)
        r->user.fn(r->user.arg, level, msg);
}

/* Sets c's logger from its options, through a report when the caller wants the reason. */
static tc_status logger_init(tc_cache *c, bool report)
{
    c->log.fn = c->opt.log_fn;
    c->log.arg = c->opt.log_arg;
    if (!report)
        return TC_OK;
    c->report = tc__calloc(1, sizeof *c->report);
    if (!c->report)
        return TC_ERR_NOMEM;
    pthread_mutex_init(&c->report->mu, NULL);
    c->report->active = true;
    c->report->level = TC_LOG_WARN + 1;
    c->report->user = c->log;
    c->log = (tc_logger){report_log, c->report};
    return TC_OK;
}

/* Stops recording into c's report (if any) and writes "<status>: <what it recorded>" into
 * err (errlen > 0). */
static void report_end(tc_cache *c, tc_status st, char *err, size_t errlen)
{
    if (!c->report)
        return;
    pthread_mutex_lock(&c->report->mu);
    c->report->active = false;
    if (st != TC_OK)
        snprintf(err, errlen, "%s: %s", tc__strerror(st),
                 c->report->msg[0] ? c->report->msg : "no further detail");
    pthread_mutex_unlock(&c->report->mu);
}

/* A failed open: logs it, writes the reason into err, frees c. */
static tc_status open_failed(tc_cache *c, tc_status st, char *err, size_t errlen)
{
    if (c->report)
        report_end(c, st, err, errlen);
    else if (errlen > 0)
        snprintf(err, errlen, "%s", tc__strerror(st));
    tc__log(&c->log, TC_LOG_ERROR, "tc_open failed: %s", tc__strerror(st));
    cache_free(c);
    return st;
}

TC_API tc_status tc_open(const tc_options *o, tc_cache **out)
{
    return tc_open2(o, out, NULL, 0);
}

TC_API tc_status tc_open2(const tc_options *o, tc_cache **out, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    if (errlen > 0)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!o || !out) {
        if (errlen > 0)
            snprintf(err, errlen, "invalid argument: %s is NULL", !o ? "o" : "out");
        return TC_ERR_ARG;
    }
    /* Without the fork handler a child could not tell it is one. */
    tc_cache *c = tc__fork_watch() ? tc__calloc(1, sizeof *c) : NULL;
    if (!c) {
        if (errlen > 0)
            snprintf(err, errlen, "%s", tc__strerror(TC_ERR_NOMEM));
        return TC_ERR_NOMEM;
    }
    atomic_init(&c->dropped_gen, tc__fork_gen());
    atomic_init(&c->gen, tc__fork_gen());
    atomic_init(&c->reset_gen, tc__fork_gen());
    char why[512];
    tc_status st = options_copy(o, &c->opt, why, sizeof why);
    tc_status lst = logger_init(c, errlen > 0);
    if (st != TC_OK)
        tc__log(&c->log, TC_LOG_ERROR, "tc_open: option %s", why);
    if (st == TC_OK)
        st = lst;
    if (st == TC_OK)
        st = cache_strings(c);
    if (st == TC_OK)
        st = tc__random_bytes(&c->origin, sizeof c->origin);
    if (st != TC_OK)
        return open_failed(c, st, err, errlen);
    c->local_enabled = c->opt.local_max_bytes > 0 && c->opt.local_ttl_ms > 0;
    c->coarse_res_ns = tc__coarse_res_ns();
    st = tc__flights_new(&c->flights);
    if (st == TC_OK)
        st = tc__types_new(&c->types);
    if (st == TC_OK)
        st = tc__local_new(c->local_enabled ? c->opt.local_max_bytes : 0, 0, &c->local);
    if (st == TC_OK)
        st = remote_open(c);
    if (st == TC_OK && c->opt.check_redis_config)
        tc__remote_check_config(c->remote);
    if (st == TC_OK && c->opt.check_redis_config && c->opt.coherence == TC_COHERENCE_TARGETED)
        tc__remote_check_tracking(c->remote);
    if (st == TC_OK)
        st = coherence_start(c);
    if (st == TC_OK)
        st = shadow_start(c);
    if (st != TC_OK)
        return open_failed(c, st, err, errlen);
    report_end(c, TC_OK, err, errlen);
    *out = c;
    return TC_OK;
}

TC_API void tc_close(tc_cache *c)
{
    if (!c)
        return;
    atomic_store(&c->closing, true);
    cache_free(c);
}

/* ------------------------------------------------------------------ after fork
 *
 * In a child, only the forking thread exists: the subscriber thread does not, the
 * connections and the subscriber's sockets are the parent's (shared file descriptions),
 * the local tier stops hearing invalidations, and any lock a thread of the parent held at
 * the fork stays taken. So the first call in a child (check_open sees a new fork
 * generation) drops all of that and starts afresh, as tc_open would: a new, empty local
 * tier, flight table and key types (the child's counters count the child's work), a new
 * origin (the parent's would make the two ignore each other's invalidations), new
 * connections and a new subscriber. Dropping sends nothing on the parent's sockets: they
 * are close()d (redisFree does no I/O), and what a thread of the parent was using or
 * held locked at the fork is left alone, unfreed. The parent's local tier is kept, unused
 * and shared copy-on-write, until tc_close: freeing it would copy every page it touches
 * into each worker of a prefork server.
 *
 * Other threads of the child wait for the reset. If Redis cannot be reached, the call
 * returns that status, and so does every call for the next RESET_RETRY_MS, until a call
 * retries (fail fast, as the circuit breaker does); the local tier is never read meanwhile.
 */

#define RESET_RETRY_MS 100

/* Lets go of what c inherited from the parent: the subscriber and connections (closed, not
 * used), the flight table and key types, and the local tier (kept in inherited_local if
 * keep_local, else freed). */
static void drop_inherited(tc_cache *c, bool keep_local)
{
    atomic_store(&c->link_ok, false);
    tc__subscriber_forget(c->sub);
    c->sub = NULL;
    tc__shadow_forget(c->shadow);
    c->shadow = NULL;
    c->seqs = NULL; /* left unfreed: a thread of the parent may have held its mutex */
    tc__remote_close(c->remote);
    c->remote = NULL;
    tc__flights_free_after_fork(c->flights);
    c->flights = NULL;
    tc__types_free(c->types); /* names only; registering takes its lock, reading none */
    c->types = NULL;
    tc__local_free_after_fork(c->inherited_local);
    c->inherited_local = keep_local ? c->local : NULL;
    if (!keep_local)
        tc__local_free_after_fork(c->local);
    c->local = NULL;
    atomic_store(&c->dropped_gen, tc__fork_gen());
}

/* The first step of a reset: c's own local tier, flights and types in place of the
 * inherited ones, its counters zeroed, a new origin. TC_ERR_NOMEM changes nothing. */
static tc_status renew_parts(tc_cache *c)
{
    tc_local *local = NULL;
    tc_flights *flights = NULL;
    tc_types *types = NULL;
    uint64_t origin;
    tc_status st = tc__local_new(c->local_enabled ? c->opt.local_max_bytes : 0, 0, &local);
    if (st == TC_OK)
        st = tc__flights_new(&flights);
    if (st == TC_OK)
        st = tc__types_new(&types);
    if (st == TC_OK)
        st = tc__random_bytes(&origin, sizeof origin);
    if (st != TC_OK) {
        tc__local_free(local);
        tc__flights_free(flights);
        tc__types_free(types);
        return st;
    }
    drop_inherited(c, true);
    c->local = local;
    c->flights = flights;
    c->types = types;
    c->origin = origin;
    memset(&c->counters, 0, sizeof c->counters);
    return TC_OK;
}

/* Makes c usable in this child (generation g); run by one thread at a time. */
static tc_status reset(tc_cache *c, unsigned g)
{
    tc_status st = TC_OK;
    bool first = atomic_load(&c->dropped_gen) != g;
    if (first)
        st = renew_parts(c);
    if (st == TC_OK && !c->remote)
        st = remote_open(c);
    if (st == TC_OK && !c->sub)
        st = coherence_start(c);
    if (st == TC_OK && !c->shadow)
        st = shadow_start(c);
    if (st == TC_OK) {
        tc__log(&c->log, TC_LOG_INFO,
                "fork detected: this child dropped the connections and the local tier it "
                "inherited and reconnected");
        atomic_store_explicit(&c->gen, g, memory_order_release);
        return TC_OK;
    }
    if (first || atomic_load(&c->reset_status) != (int)st)
        tc__log(&c->log, TC_LOG_ERROR,
                "fork detected: this child cannot reconnect to Redis (%s); every call fails "
                "with that status until it can",
                tc__strerror(st));
    atomic_store(&c->reset_status, (int)st);
    atomic_store(&c->reset_retry_ns, tc__deadline_after_ms(RESET_RETRY_MS));
    atomic_store(&c->reset_gen, g - 1); /* not g: the next call may retry */
    return st;
}

static tc_status after_fork(tc_cache *c)
{
    unsigned g = tc__fork_gen();
    for (;;) {
        if (atomic_load_explicit(&c->gen, memory_order_acquire) == g)
            return TC_OK;
        unsigned r = atomic_load(&c->reset_gen);
        if (r != g) {
            if (atomic_load(&c->dropped_gen) == g && tc__now_ns() < atomic_load(&c->reset_retry_ns))
                return (tc_status)atomic_load(&c->reset_status);
            if (atomic_compare_exchange_strong(&c->reset_gen, &r, g))
                return reset(c, g);
            continue;
        }
        /* Another thread of this child is resetting c. */
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

void tc__cache_after_fork(tc_cache *c)
{
    if (c && atomic_load_explicit(&c->gen, memory_order_acquire) != tc__fork_gen())
        (void)after_fork(c);
}

unsigned tc__cache_gen(const tc_cache *c)
{
    return atomic_load_explicit(&c->gen, memory_order_acquire);
}

/* ------------------------------------------------------------------ reads */

/* Keeps a value fetched from Redis in the local tier, unless the fill guard says an
 * invalidation or flush came in since the ticket was taken. */
static void fill_local(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref *r,
                       int64_t pttl_ms, int64_t t0_ns, tc_ticket t)
{
    if (!c->local_enabled || pttl_ms == 0)
        return;
    if (c->test.fill)
        c->test.fill(c->test.fill_arg, key);
    r->type_id = type_byte(tc__type_of(c->types, key, klen));
    r->group = (uint16_t)key_group(c, h, key, klen);
    tc__local_store_if_fresh(c->local, h, key, klen, r, local_expiry(c, t0_ns, pttl_ms), t);
}

/* tc__cache_fetch; ttl_out (NULL: not wanted) also gets the key's PTTL (-1: none). */
static tc_status fetch(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out,
                       int64_t *ttl_out)
{
    rkey rk;
    tc_status st = rkey_build(c, key, klen, &rk);
    if (st != TC_OK)
        return st;
    tc_ticket t = tc__local_ticket(c->local, h);
    int64_t t0 = tc__now_ns();
    int64_t pttl = -1;
    tc_ref *r = NULL;
    bool tracked = true;
    /* The TTL only bounds the local copy: without a local tier (and unless the caller wants
     * it), GET alone. */
    st = tc__remote_get_tracked(c->remote, rk.s, rk.len, &r, ttl_out || asks_ttl(c) ? &pttl : NULL,
                                tracked_out(c, &tracked));
    rkey_done(&rk);
    if (st != TC_OK) {
        note_remote_error(c, key, klen, st);
        return st;
    }
    tc__fmt_decode(r);
    if ((r->flags & TC_REF_TAGGED) && (st = tc__tags_current(c, r)) != TC_OK) {
        tc__ref_drop(r); /* a tag moved on: stale everywhere, not worth keeping */
        return st;
    }
    if (tracked)
        fill_local(c, h, key, klen, r, pttl, t0, t);
    if (ttl_out)
        *ttl_out = pttl;
    *out = r;
    return TC_OK;
}

tc_status tc__cache_fetch(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out)
{
    return fetch(c, h, key, klen, out, NULL);
}

/* Turns a fetched or local reference into the caller's answer: a negative entry is a miss
 * for plain reads. */
static tc_status answer(tc_ref *r, tc_value *out)
{
    if (r->flags & TC_REF_NEGATIVE) {
        tc__ref_drop(r);
        return TC_MISS;
    }
    tc__value_give(out, r, NULL);
    return TC_OK;
}

/* The local tier's live copy of key, for a caller that found the tier readable: held
 * through *slot if slot is not NULL (tc__local_borrow), else a reference. */
static inline bool local_lookup(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out,
                                tc_hazard **slot)
{
    int64_t now = tc__now_coarse_ns();
    if (!(slot ? tc__local_borrow(c->local, h, key, klen, now, out, slot)
               : tc__local_get(c->local, h, key, klen, now, out)))
        return false;
    if (!((*out)->flags & TC_REF_TAGGED) || tc__tags_current(c, *out) == TC_OK)
        return true;
    /* A tag moved on: drop the copy so later reads don't check it again. */
    tc__local_unborrow(*out, slot ? *slot : NULL);
    *out = NULL;
    tc__local_invalidate(c->local, h);
    return false;
}

/* tc__cache_local_get, inlined into the read paths of this file. */
static inline bool local_get(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out,
                             tc_hazard **slot)
{
    if (local_readable(c))
        return local_lookup(c, h, key, klen, out, slot);
    if (c->local_enabled)
        TC_COUNT(tc__key_counters(c, key, klen), local_bypasses);
    return false;
}

bool tc__cache_local_get(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out,
                         tc_hazard **slot)
{
    return local_get(c, h, key, klen, out, slot);
}

bool tc__cache_local_peek(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_ref **out)
{
    return c->local_enabled && tc__local_get(c->local, h, key, klen, tc__now_ns(), out);
}

/* A local hit, held through slot, as the caller's answer: a negative entry is a miss.
 * With shadow reads on, 1 in shadow_rate hits also offers a sample (never blocks). */
static inline tc_status local_answer(tc_cache *c, const char *key, size_t klen, tc_ref *r,
                                     tc_hazard *slot, tc_value *out)
{
    if (c->shadow && tc__shadow_pick(c->shadow_threshold))
        tc__shadow_offer(c->shadow, key, klen, r->flags, tc__ref_data(r), r->len);
    if (r->flags & TC_REF_NEGATIVE) {
        tc__local_unborrow(r, slot);
        return TC_MISS;
    }
    tc__value_give(out, r, slot);
    return TC_OK;
}

/* The Redis half of a read, counted: a remote hit or a miss. */
static tc_status read_remote(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_value *out)
{
    tc_ref *r = NULL;
    tc_status st = tc__cache_fetch(c, h, key, klen, &r);
    if (st == TC_MISS) {
        TC_COUNT(tc__key_counters(c, key, klen), misses);
        return TC_MISS;
    }
    if (st != TC_OK)
        return st;
    TC_COUNT(tc__key_counters(c, key, klen), remote_hits);
    return answer(r, out);
}

tc_status tc__cache_read(tc_cache *c, uint64_t h, const char *key, size_t klen, tc_value *out)
{
    memset(out, 0, sizeof *out);
    tc_ref *r;
    tc_hazard *slot;
    if (local_get(c, h, key, klen, &r, &slot))
        return local_answer(c, key, klen, r, slot, out);
    return read_remote(c, h, key, klen, out);
}

TC_API tc_status tc_get(tc_cache *c, const char *key, tc_value *out)
{
    if (out)
        memset(out, 0, sizeof *out);
    tc_status st = check_open(c);
    if (st != TC_OK)
        return st;
    size_t klen = tc__key_len(key, c->opt.max_key_len);
    if (!out)
        return bad_arg(c, __func__, "out is NULL");
    if (klen == 0)
        return tc__cache_bad_key(c, __func__, "key", key, c->opt.max_key_len);
    uint64_t h = tc__key_hash(key, klen);
    tc_ref *r = NULL;
    /* The bytes of the key are checked only when the local tier does not answer: it answers
     * only for a key equal to one it holds, and every key it holds passed the check. */
    bool readable = local_readable(c);
    tc_hazard *slot;
    if (readable && local_lookup(c, h, key, klen, &r, &slot))
        return local_answer(c, key, klen, r, slot, out);
    if (!tc__key_bytes_valid(key, klen))
        return tc__cache_bad_key(c, __func__, "key", key, c->opt.max_key_len);
    if (!readable && c->local_enabled)
        TC_COUNT(tc__key_counters(c, key, klen), local_bypasses);
    return read_remote(c, h, key, klen, out);
}

/* A read whose value nobody wants: the path of tc_get, so the answer is exactly as correct
 * as a tc_get's (a local copy answers only when it would answer tc_get). */
TC_API tc_status tc_has_key(tc_cache *c, const char *key)
{
    tc_value v;
    tc_status st = tc_get(c, key, &v);
    if (st == TC_OK)
        tc_value_release(&v);
    return st;
}

/* Redis's TTL, so always a fetch (GET + PTTL in one round trip): the local tier knows only
 * its own bound. The fetched value refreshes the local copy as a read's would. */
TC_API tc_status tc_ttl(tc_cache *c, const char *key, int64_t *ms_left)
{
    if (ms_left)
        *ms_left = 0;
    size_t klen = 0;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK || !ms_left)
        return st != TC_OK ? st : TC_ERR_ARG;
    tc_ref *r = NULL;
    int64_t pttl = -1;
    st = fetch(c, tc__key_hash(key, klen), key, klen, &r, &pttl);
    if (st != TC_OK)
        return st;
    /* A cached "does not exist" is absent, and so is a key that expired between the GET and
     * the PTTL (0). */
    bool present = !(r->flags & TC_REF_NEGATIVE) && pttl != 0;
    tc__ref_drop(r);
    if (!present)
        return TC_MISS;
    *ms_left = pttl;
    return TC_OK;
}

/* Per-batch scratch for tc_get_many: the keys that missed locally and their Redis keys. */
typedef struct batch {
    size_t n;
    size_t *idx;      /* index in the caller's arrays */
    size_t *klens;    /* caller key lengths, by caller index */
    uint64_t *hashes; /* by caller index */
    char **rkeys;     /* by miss index */
    size_t *rklens;
    tc_ref **vals;
    int64_t *pttls;
    tc_status *st;
    tc_ticket *tickets;
    bool *tracked; /* targeted coherence: whether each value may be kept */
} batch;

static void batch_free(batch *b)
{
    if (b->rkeys)
        for (size_t i = 0; i < b->n; i++)
            tc__free(b->rkeys[i]);
    tc__free(b->idx);
    tc__free(b->klens);
    tc__free(b->hashes);
    tc__free(b->rkeys);
    tc__free(b->rklens);
    tc__free(b->vals);
    tc__free(b->pttls);
    tc__free(b->st);
    tc__free(b->tickets);
    tc__free(b->tracked);
}

static tc_status batch_alloc(batch *b, size_t n)
{
    memset(b, 0, sizeof *b);
    b->idx = tc__calloc(n, sizeof *b->idx);
    b->klens = tc__calloc(n, sizeof *b->klens);
    b->hashes = tc__calloc(n, sizeof *b->hashes);
    b->rkeys = tc__calloc(n, sizeof *b->rkeys);
    b->rklens = tc__calloc(n, sizeof *b->rklens);
    b->vals = tc__calloc(n, sizeof *b->vals);
    b->pttls = tc__calloc(n, sizeof *b->pttls);
    b->st = tc__calloc(n, sizeof *b->st);
    b->tickets = tc__calloc(n, sizeof *b->tickets);
    b->tracked = tc__calloc(n, sizeof *b->tracked);
    if (!b->idx || !b->klens || !b->hashes || !b->rkeys || !b->rklens || !b->vals || !b->pttls ||
        !b->st || !b->tickets || !b->tracked)
        return TC_ERR_NOMEM;
    return TC_OK;
}

/* Validates every key of a batch (the whole batch fails on one bad key) and hashes them. */
#define batch_keys(c, keys, n, b) batch_keys_in(c, keys, n, b, __func__)
static tc_status batch_keys_in(const tc_cache *c, const char *const *keys, size_t n, batch *b,
                               const char *fn)
{
    if (!keys)
        return bad_arg(c, fn, "keys is NULL");
    for (size_t i = 0; i < n; i++) {
        if (!tc__key_valid(keys[i], c->opt.max_key_len, &b->klens[i])) {
            char what[32];
            snprintf(what, sizeof what, "keys[%zu]", i);
            return tc__cache_bad_key(c, fn, what, keys[i], c->opt.max_key_len);
        }
        b->hashes[i] = tc__key_hash(keys[i], b->klens[i]);
    }
    return TC_OK;
}

/* Adds caller key i to the batch's Redis keys. */
static tc_status batch_add_rkey(const tc_cache *c, batch *b, const char *key, size_t i)
{
    size_t klen = b->klens[i];
    size_t m = b->n;
    size_t need = tc__cache_rkey_len(c, klen) + 1;
    b->rkeys[m] = tc__malloc(need);
    if (!b->rkeys[m])
        return TC_ERR_NOMEM;
    b->rklens[m] = tc__cache_rkey(c, key, klen, b->rkeys[m], need);
    b->idx[m] = i;
    b->n++;
    return TC_OK;
}

static void release_all(tc_value *out, tc_status *st, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tc_value_release(&out[i]);
        if (st)
            st[i] = TC_MISS;
    }
}

TC_API tc_status tc_get_many(tc_cache *c, const char *const *keys, size_t n, tc_value *out,
                             tc_status *st)
{
    if (out && n)
        memset(out, 0, n * sizeof *out);
    tc_status rc = check_open(c);
    if (rc != TC_OK)
        return rc;
    if (n == 0)
        return TC_OK;
    if (!out || !st || !keys)
        return bad_arg(c, __func__, "%s is NULL", !keys ? "keys" : !out ? "out" : "st");
    batch b;
    rc = batch_alloc(&b, n);
    if (rc == TC_OK)
        rc = batch_keys(c, keys, n, &b);
    for (size_t i = 0; rc == TC_OK && i < n; i++) {
        tc_ref *r;
        if (local_get(c, b.hashes[i], keys[i], b.klens[i], &r, NULL)) {
            st[i] = answer(r, &out[i]) == TC_OK ? TC_OK : TC_MISS;
            continue;
        }
        b.tickets[b.n] = tc__local_ticket(c->local, b.hashes[i]);
        rc = batch_add_rkey(c, &b, keys[i], i);
    }
    if (rc == TC_OK && b.n > 0) {
        int64_t t0 = tc__now_ns();
        bool ttl = asks_ttl(c);
        for (size_t m = 0; m < b.n; m++) {
            b.tracked[m] = true; /* set by the read in targeted coherence */
            if (!ttl)
                b.pttls[m] = -1; /* not asked: local_ttl_ms alone bounds a copy */
        }
        rc = tc__remote_get_many_tracked(c->remote, b.n, (const char *const *)b.rkeys, b.rklens,
                                         b.vals, ttl ? b.pttls : NULL, b.st,
                                         tracked_out(c, b.tracked));
        note_remote_error(c, keys[b.idx[0]], b.klens[b.idx[0]], rc);
        for (size_t m = 0; rc == TC_OK && m < b.n; m++) {
            size_t i = b.idx[m];
            if (b.st[m] != TC_OK) {
                st[i] = TC_MISS;
                TC_COUNT(tc__key_counters(c, keys[i], b.klens[i]), misses);
                continue;
            }
            tc_ref *r = b.vals[m];
            b.vals[m] = NULL;
            tc__fmt_decode(r);
            if ((r->flags & TC_REF_TAGGED) && tc__tags_current(c, r) != TC_OK) {
                tc__ref_drop(r);
                st[i] = TC_MISS;
                TC_COUNT(tc__key_counters(c, keys[i], b.klens[i]), misses);
                continue;
            }
            if (b.tracked[m])
                fill_local(c, b.hashes[i], keys[i], b.klens[i], r, b.pttls[m], t0, b.tickets[m]);
            TC_COUNT(tc__key_counters(c, keys[i], b.klens[i]), remote_hits);
            st[i] = answer(r, &out[i]) == TC_OK ? TC_OK : TC_MISS;
        }
    }
    if (rc != TC_OK)
        release_all(out, st, n);
    batch_free(&b);
    return rc;
}

/* ------------------------------------------------------------------ writes
 *
 * The one write path. write_begin invalidates the local copies of the keys and takes their
 * tickets; the caller then does its Redis write with the invalidation message of the batch;
 * write_end keeps the written values locally (write-through) or invalidates the keys again.
 */

typedef struct write_ctx {
    size_t n;
    const char *const *keys;
    const size_t *klens;
    const uint64_t *hashes;
    tc_ticket *tickets;
    tc_ticket one_ticket;
    tc_inval_msg msg;
} write_ctx;

static tc_status write_begin(tc_cache *c, write_ctx *w, size_t n, const char *const *keys,
                             const size_t *klens, const uint64_t *hashes, tc_ticket *tickets)
{
    w->n = n;
    w->keys = keys;
    w->klens = klens;
    w->hashes = hashes;
    w->tickets = tickets ? tickets : &w->one_ticket;
    for (size_t i = 0; i < n; i++) {
        tc__local_invalidate(c->local, hashes[i]);
        w->tickets[i] = tc__local_ticket(c->local, hashes[i]);
    }
    return tc__cache_inval_keys(c, n, keys, klens, &w->msg);
}

/* vals[i] (may be NULL): the value written for key i, kept locally until local_expiry when
 * the mode allows write-through; NULL or a failed write invalidates the key again. */
static void write_end(tc_cache *c, write_ctx *w, tc_status st, tc_ref *const *vals, int ttl_ms)
{
    bool through = st == TC_OK && vals && write_through(c);
    int64_t exp = local_expiry(c, tc__now_ns(), ttl_ms == TC_TTL_FOREVER ? -1 : ttl_ms);
    for (size_t i = 0; i < w->n; i++) {
        uint32_t type = tc__type_of(c->types, w->keys[i], w->klens[i]);
        if (through && vals && vals[i]) {
            vals[i]->type_id = type_byte(type);
            vals[i]->group = (uint16_t)key_group(c, w->hashes[i], w->keys[i], w->klens[i]);
            tc__local_store_write(c->local, w->hashes[i], w->keys[i], w->klens[i], vals[i], exp,
                                  w->tickets[i]);
        } else {
            tc__local_invalidate(c->local, w->hashes[i]);
        }
        tc_counters *k = tc__type_counters(c->types, type);
        if (st == TC_OK && w->msg.active)
            TC_COUNT(k, inval_sent);
        if (st == TC_OK && vals)
            TC_COUNT(k, sets);
    }
    tc__cache_inval_done(&w->msg);
    note_remote_error(c, w->n ? w->keys[0] : NULL, w->n ? w->klens[0] : 0, st);
}

/* The bytes to store for a value: the value itself, or a copy behind a header when it needs
 * one. *owned is set when the caller must free *bytes. */
static tc_status encode_value(const void *data, size_t len, const tc_fmt_meta *meta,
                              const void **bytes, size_t *blen, void **owned)
{
    *owned = NULL;
    size_t hlen = tc__fmt_header_len(data, len, meta);
    if (hlen == 0) {
        *bytes = data ? data : "";
        *blen = len;
        return TC_OK;
    }
    unsigned char *buf = tc__malloc(hlen + len);
    if (!buf)
        return TC_ERR_NOMEM;
    tc__fmt_write_header(buf, hlen, meta);
    if (len)
        memcpy(buf + hlen, data, len);
    *bytes = buf;
    *blen = hlen + len;
    *owned = buf;
    return TC_OK;
}

static tc_status value_args_ok(const tc_cache *c, const void *data, size_t len)
{
    if (!data && len > 0)
        return bad_arg(c, "data", "NULL with a length of %zu", len);
    if (len > c->opt.max_value_bytes) {
        tc__log(&c->log, TC_LOG_DEBUG, "value: %zu bytes, above max_value_bytes (%zu)", len,
                c->opt.max_value_bytes);
        return TC_ERR_TOO_BIG;
    }
    return TC_OK;
}

/* Deletes keys (already validated and hashed) through the write path. *deleted may be
 * NULL. */
static tc_status delete_keys(tc_cache *c, size_t n, const char *const *keys, const size_t *klens,
                             const uint64_t *hashes, tc_ticket *tickets, char **rkeys,
                             const size_t *rklens, size_t *deleted)
{
    write_ctx w;
    tc_status st = write_begin(c, &w, n, keys, klens, hashes, tickets);
    if (st == TC_OK)
        st = tc__remote_delete(c->remote, n, (const char *const *)rkeys, rklens,
                               tc__cache_inval_pub(&w.msg), deleted);
    write_end(c, &w, st, NULL, 0);
    for (size_t i = 0; st == TC_OK && i < n; i++)
        TC_COUNT(tc__key_counters(c, keys[i], klens[i]), deletes);
    return st;
}

static tc_status delete_one(tc_cache *c, const char *key, size_t klen, uint64_t h, size_t *deleted)
{
    rkey rk;
    tc_status st = rkey_build(c, key, klen, &rk);
    if (st != TC_OK)
        return st;
    st = delete_keys(c, 1, &key, &klen, &h, NULL, &rk.s, &rk.len, deleted);
    rkey_done(&rk);
    return st;
}

typedef enum set_mode { SET_ALWAYS, SET_IF_ABSENT } set_mode;

/* A write-through copy of a value: the bytes as stored, decoded as a reader would, so a
 * copy carries its header (tags, early-refresh timing) like a fetched one. NULL only costs
 * the write-through. */
static tc_ref *local_copy_of(const void *stored, size_t len)
{
    tc_ref *r = tc__ref_copy(stored, len);
    if (r)
        tc__fmt_decode(r);
    return r;
}

/* tc_set and tc_add for one key with a resolved TTL > 0 or FOREVER. */
static tc_status store_one(tc_cache *c, set_mode mode, const char *key, size_t klen,
                           const void *data, size_t len, const tc_fmt_meta *meta, int ttl)
{
    uint64_t h = tc__key_hash(key, klen);
    const void *bytes;
    size_t blen;
    void *owned = NULL;
    rkey rk = {.s = NULL};
    tc_ref *local_copy = NULL;
    tc_status st = encode_value(data, len, meta, &bytes, &blen, &owned);
    if (st == TC_OK)
        st = rkey_build(c, key, klen, &rk);
    if (st == TC_OK && write_through(c))
        local_copy = local_copy_of(bytes, blen);
    write_ctx w;
    if (st == TC_OK)
        st = write_begin(c, &w, 1, &key, &klen, &h, NULL);
    else
        w.n = 0;
    if (st == TC_OK) {
        if (mode == SET_ALWAYS)
            st = tc__remote_set(c->remote, 1, (const char *const *)&rk.s, &rk.len, &bytes, &blen,
                                ttl, tc__cache_inval_pub(&w.msg));
        else
            st = tc__remote_add(c->remote, rk.s, rk.len, bytes, blen, ttl,
                                tc__cache_inval_pub(&w.msg));
    }
    if (w.n)
        write_end(c, &w, st, &local_copy, ttl); /* counts the set */
    tc__ref_drop(local_copy);
    rkey_done(&rk);
    tc__free(owned);
    return st;
}

tc_status tc__cache_store(tc_cache *c, const char *key, size_t klen, const void *data, size_t len,
                          const tc_fmt_meta *meta, int ttl_ms)
{
    int ttl;
    if (ttl_resolve(c, ttl_ms, &ttl) != TC_OK)
        return TC_ERR_ARG;
    tc_status st = value_args_ok(c, data, len);
    if (st != TC_OK)
        return st;
    if (ttl == 0)
        return delete_one(c, key, klen, tc__key_hash(key, klen), NULL);
    return store_one(c, SET_ALWAYS, key, klen, data, len, meta, ttl);
}

TC_API tc_status tc_set(tc_cache *c, const char *key, const void *data, size_t len, int ttl_ms)
{
    size_t klen;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK)
        return st;
    /* ttl 0 (expire at once) deletes the key, as Django does. */
    return tc__cache_store(c, key, klen, data, len, NULL, ttl_ms);
}

TC_API tc_status tc_add(tc_cache *c, const char *key, const void *data, size_t len, int ttl_ms)
{
    size_t klen;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK)
        return st;
    return tc__cache_add(c, key, klen, data, len, ttl_ms);
}

tc_status tc__cache_add(tc_cache *c, const char *key, size_t klen, const void *data, size_t len,
                        int ttl_ms)
{
    int ttl;
    tc_status st;
    if (ttl_resolve(c, ttl_ms, &ttl) != TC_OK)
        return TC_ERR_ARG;
    if ((st = value_args_ok(c, data, len)) != TC_OK)
        return st;
    if (ttl > 0 || ttl == TC_TTL_FOREVER)
        return store_one(c, SET_IF_ABSENT, key, klen, data, len, NULL, ttl);
    /* ttl 0: as Django, report whether the add would have happened, and keep nothing. A
     * 1 ms TTL makes the probe vanish by itself even if the delete is lost. */
    st = store_one(c, SET_IF_ABSENT, key, klen, data, len, NULL, 1);
    if (st == TC_OK)
        (void)delete_one(c, key, klen, tc__key_hash(key, klen), NULL);
    return st;
}

TC_API tc_status tc_delete(tc_cache *c, const char *key)
{
    size_t klen;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK)
        return st;
    size_t deleted = 0;
    st = delete_one(c, key, klen, tc__key_hash(key, klen), &deleted);
    return deleted_status(st, deleted);
}

TC_API tc_status tc_touch(tc_cache *c, const char *key, int ttl_ms)
{
    size_t klen;
    int ttl;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK)
        return st;
    if (ttl_resolve(c, ttl_ms, &ttl) != TC_OK)
        return TC_ERR_ARG;
    uint64_t h = tc__key_hash(key, klen);
    if (ttl == 0) {
        size_t deleted = 0;
        st = delete_one(c, key, klen, h, &deleted);
        return deleted_status(st, deleted);
    }
    rkey rk;
    if ((st = rkey_build(c, key, klen, &rk)) != TC_OK)
        return st;
    write_ctx w;
    st = write_begin(c, &w, 1, &key, &klen, &h, NULL);
    if (st == TC_OK)
        st = tc__remote_touch(c->remote, rk.s, rk.len, ttl, tc__cache_inval_pub(&w.msg));
    write_end(c, &w, st, NULL, 0);
    rkey_done(&rk);
    return st;
}

TC_API tc_status tc_incr(tc_cache *c, const char *key, int64_t delta, int64_t *result)
{
    size_t klen;
    tc_status st = begin_key(c, key, &klen);
    if (st != TC_OK)
        return st;
    return tc__cache_incr(c, key, klen, delta, result);
}

tc_status tc__cache_incr(tc_cache *c, const char *key, size_t klen, int64_t delta, int64_t *result)
{
    tc_status st;
    uint64_t h = tc__key_hash(key, klen);
    rkey rk;
    if ((st = rkey_build(c, key, klen, &rk)) != TC_OK)
        return st;
    write_ctx w;
    int64_t value = 0;
    st = write_begin(c, &w, 1, &key, &klen, &h, NULL);
    if (st == TC_OK)
        st = tc__remote_incr(c->remote, rk.s, rk.len, delta, TC_FMT_MAGIC, TC_FMT_MAGIC_LEN,
                             tc__cache_inval_pub(&w.msg), &value);
    write_end(c, &w, st, NULL, 0);
    rkey_done(&rk);
    if (st == TC_OK) {
        TC_COUNT(tc__key_counters(c, key, klen), sets);
        if (result)
            *result = value;
    }
    return st;
}

TC_API tc_status tc_set_many(tc_cache *c, const char *const *keys, const void *const *data,
                             const size_t *lens, size_t n, int ttl_ms)
{
    tc_status st = check_open(c);
    int ttl;
    if (st != TC_OK)
        return st;
    if (n == 0)
        return TC_OK;
    if (!keys || !data || !lens)
        return bad_arg(c, __func__, "%s is NULL", !keys ? "keys" : !data ? "data" : "lens");
    if (ttl_resolve(c, ttl_ms, &ttl) != TC_OK)
        return TC_ERR_ARG;
    batch b;
    st = batch_alloc(&b, n);
    if (st == TC_OK)
        st = batch_keys(c, keys, n, &b);
    for (size_t i = 0; st == TC_OK && i < n; i++)
        st = value_args_ok(c, data[i], lens[i]);
    for (size_t i = 0; st == TC_OK && i < n; i++)
        st = batch_add_rkey(c, &b, keys[i], i);
    if (st != TC_OK) {
        batch_free(&b);
        return st;
    }
    if (ttl == 0) {
        st = delete_keys(c, n, keys, b.klens, b.hashes, b.tickets, b.rkeys, b.rklens, NULL);
        batch_free(&b);
        return st;
    }
    /* Encoded bytes per key (b.vals holds the local copies for write-through). */
    const void **bytes = tc__calloc(n, sizeof *bytes);
    size_t *blens = tc__calloc(n, sizeof *blens);
    void **owned = tc__calloc(n, sizeof *owned);
    bool through = write_through(c);
    if (!bytes || !blens || !owned)
        st = TC_ERR_NOMEM;
    for (size_t i = 0; st == TC_OK && i < n; i++) {
        st = encode_value(data[i], lens[i], NULL, &bytes[i], &blens[i], &owned[i]);
        if (st == TC_OK && through)
            b.vals[i] = tc__ref_copy(data[i], lens[i]);
    }
    write_ctx w;
    w.n = 0;
    if (st == TC_OK)
        st = write_begin(c, &w, n, keys, b.klens, b.hashes, b.tickets);
    if (st == TC_OK)
        st = tc__remote_set(c->remote, n, (const char *const *)b.rkeys, b.rklens, bytes, blens, ttl,
                            tc__cache_inval_pub(&w.msg));
    if (w.n)
        write_end(c, &w, st, b.vals, ttl); /* counts the sets */
    for (size_t i = 0; i < n; i++) {
        tc__ref_drop(b.vals[i]);
        b.vals[i] = NULL;
        if (owned)
            tc__free(owned[i]);
    }
    tc__free(bytes);
    tc__free(blens);
    tc__free(owned);
    batch_free(&b);
    return st;
}

TC_API tc_status tc_delete_many(tc_cache *c, const char *const *keys, size_t n)
{
    tc_status st = check_open(c);
    if (st != TC_OK)
        return st;
    if (n == 0)
        return TC_OK;
    if (!keys)
        return bad_arg(c, __func__, "keys is NULL");
    batch b;
    st = batch_alloc(&b, n);
    if (st == TC_OK)
        st = batch_keys(c, keys, n, &b);
    for (size_t i = 0; st == TC_OK && i < n; i++)
        st = batch_add_rkey(c, &b, keys[i], i);
    if (st == TC_OK)
        st = delete_keys(c, n, keys, b.klens, b.hashes, b.tickets, b.rkeys, b.rklens, NULL);
    batch_free(&b);
    return st;
}

/* "<key_prefix>:*" with the prefix's glob characters escaped, so clear matches exactly
 * this prefix's keys, every version. */
static char *clear_pattern(const tc_cache *c)
{
    char *p = tc__malloc(c->key_prefix_len * 2 + 3);
    if (!p)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < c->key_prefix_len; i++) {
        char ch = c->key_prefix[i];
        if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
            p[j++] = '\\';
        p[j++] = ch;
    }
    memcpy(p + j, ":*", 3);
    return p;
}

TC_API tc_status tc_clear(tc_cache *c)
{
    tc_status st = check_open(c);
    if (st != TC_OK)
        return st;
    char *pattern = clear_pattern(c);
    if (!pattern)
        return TC_ERR_NOMEM;
    tc_inval_msg m;
    tc__local_flush(c->local);
    st = inval_flush(c, &m);
    if (st == TC_OK)
        st = tc__remote_clear(c->remote, pattern, tc__cache_inval_pub(&m));
    /* Again after: fills that raced with the scan may hold values it has since removed. */
    tc__local_flush(c->local);
    if (st == TC_OK && m.active)
        TC_COUNT(&c->counters, inval_sent);
    note_remote_error(c, NULL, 0, st);
    tc__cache_inval_done(&m);
    tc__free(pattern);
    return st;
}

/* ------------------------------------------------------------------ test-only interface */

bool tc__test_inval_apply(tc_cache *c, const char *payload, size_t len)
{
    return tc__subscriber_apply(&c->sub_ctx, payload, len);
}

bool tc__cache_local_usable(const tc_cache *c)
{
    return atomic_load_explicit(&((tc_cache *)c)->link_ok, memory_order_acquire);
}

size_t tc__test_shadow_queue_max(tc_cache *c)
{
    return c->shadow ? tc__shadow_queue_max(c->shadow) : 0;
}

bool tc__test_shadow_idle(tc_cache *c)
{
    return !c->shadow || tc__shadow_idle(c->shadow);
}

void tc__test_hold_relink(tc_cache *c, bool hold)
{
    tc__subscriber_test_hold(c->sub, hold);
}

void tc__test_set_full_flush_recovery(tc_cache *c, bool full)
{
    if (c->seqs)
        tc__seqs_set_full_flush(c->seqs, full);
}

bool tc__test_drop_next_inval(tc_cache *c)
{
    if (c->seqs)
        tc__seqs_drop_next(c->seqs);
    return c->seqs != NULL;
}

bool tc__test_local_usable(const tc_cache *c)
{
    return atomic_load_explicit(&((tc_cache *)c)->link_ok, memory_order_acquire);
}

void tc__test_set_fill_hook(tc_cache *c, tc_fill_hook_fn fn, void *arg)
{
    c->test.fill = fn;
    c->test.fill_arg = arg;
}

void tc__test_set_lock_poll_ms(tc_cache *c, int ms)
{
    c->test.lock_poll_ms = ms;
}

int tc__test_lock_poll_ms(const tc_cache *c)
{
    return c->test.lock_poll_ms;
}

void tc__test_set_sentinel_ask_hook(tc_cache *c, void (*fn)(void *arg), void *arg)
{
    tc__remote_sentinel_ask_hook(c->remote, fn, arg);
}

const char *tc__test_rprefix(const tc_cache *c)
{
    return c->rprefix;
}

const char *tc__test_channel(const tc_cache *c)
{
    return c->channel;
}

uint64_t tc__test_origin(const tc_cache *c)
{
    return c->origin;
}
