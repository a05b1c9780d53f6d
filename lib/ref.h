/*
 * The value reference: a reference-counted, immutable value, the currency in which every
 * tier hands values around (the Redis tier reads into one, the local tier keeps one, the
 * caller's tc_value borrows one). Its allocation and deferred free live in local.c, beside
 * the hazard slots that may still hold it (reclaim.h).
 *
 * Thread safety: a reference may be held, passed and dropped from any thread.
 */
#ifndef TC_REF_H
#define TC_REF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common.h"
#include "reclaim.h"

/* A reference-counted, immutable value. tc_value.priv points at one (or at the hazard
 * slot that holds it: cache.c). The bytes the caller sees are data[0..len), data being
 * buf + off (tc__ref_data, tc__ref_off); they live inside the same allocation (buf),
 * possibly after a stored-format header of off bytes (TC_REF_HEADER; the header holds
 * off). refs counts the holders of references, the tier's one per entry included; values
 * handed out by local hits through hazard slots are not counted (reclaim.h), so an entry
 * is freed, once refs is 0, only when no read section can still see it and no slot holds
 * it.
 *
 * buf holds cap bytes and one more, and whoever writes the bytes writes a NUL after them,
 * so the caller's data[len] is always 0 (tc_value.data is NUL-terminated, which lets callers
 * parse numbers from it): a stored-format header is skipped by moving off, never by
 * cutting the end. The early-refresh metadata (expiry and delta) is not kept in fields: it
 * is read from that header when TC_REF_XFETCH says it has them (format.h).
 *
 * The local tier's entry is a tc_ref too, so that an entry and its value are one
 * allocation: the tier keeps its own copy of a value it stores, with the key after the
 * value's NUL (buf + off + len + 1), and the fields marked "tier" below. In a value that is
 * not an entry they are unused, and the entry's epoch and expiry share their place with
 * the value's capacity. The header is 34 bytes (it was 95, then 54): every byte of it is
 * paid once per entry, so it has no list links (the CLOCK hand goes over the buckets, the
 * admission window is a ring of pointers: local.c), no retirement node (reclaim.h) and no
 * field for what it can read elsewhere (off, from the stored-format header). Lengths are
 * 32-bit (a value of 4 GiB or more cannot be made), keys in the tier 16-bit. */
typedef struct tc_ref {
    /* tier: next in the bucket (readers walk it). First: once a retired entry's grace
     * period is over nobody reads it, and reclaim may link the entry through it (reclaim.h). */
    struct tc_ref *_Atomic chain;
    union {
        struct {
            uint32_t epoch;  /* tier: the low 32 bits of its ticket's flush epoch */
            uint32_t expiry; /* tier: monotonic expiry, coarse and 32-bit (local.c) */
        } t;
        uint32_t cap; /* not an entry: bytes allocated for buf (and its NUL) */
    } u;
    atomic_uint_least32_t refs;
    uint32_t len;    /* length of the caller-visible value */
    uint32_t hcheck; /* tier: the hash folded to 32 bits (the key decides) */
    uint16_t klen;   /* tier: the key's length */
    /* The key's sequence group (tc__local_drop_group: TC_LOCAL_GROUP_BITS), set by the
     * caller on the value it stores, as type_id is. It shares its bytes with flags, so
     * both are written only before the value is shared (cache.c does, on values of its
     * own), never after. */
    uint16_t group : 10;
    uint16_t flags : 6;      /* TC_REF_* */
    uint8_t type_id;         /* the key's type, for per-type metrics (stats.h); 0: other */
    atomic_uchar referenced; /* tier: the CLOCK mark and whether it is in the admission
                                window (local.c, REF_WINDOW) */
    unsigned char buf[];
} tc_ref;

#define TC_REF_NEGATIVE 0x1u /* a cached "does not exist" */
#define TC_REF_TAGGED 0x2u   /* carries tags (in its stored-format header, at buf) */
#define TC_REF_XFETCH 0x4u   /* its stored-format header has an expiry and a delta */
#define TC_REF_ENTRY 0x8u    /* an entry of the local tier: set before it is published */
#define TC_REF_HEADER 0x10u  /* buf starts with a stored-format header: data is past it */

/* Where a stored-format header keeps its 2-byte length, little-endian: format.h's
 * TC_FMT_LEN_AT (format.c checks that they agree). */
#define TC_REF_HEADER_LEN_AT 4

/* How far into buf the caller's bytes start: the stored-format header's length, which
 * the header holds (no field of its own: every byte of an entry's header is paid per
 * entry). */
static inline size_t tc__ref_off(const tc_ref *r)
{
    if (!(r->flags & TC_REF_HEADER))
        return 0;
    const unsigned char *p = r->buf + TC_REF_HEADER_LEN_AT;
    return (size_t)p[0] | (size_t)p[1] << 8;
}

/* The bytes the caller sees. */
static inline const unsigned char *tc__ref_data(const tc_ref *r)
{
    return r->buf + tc__ref_off(r);
}

/* The bytes of buf that hold the value and its header (an entry holds no spare room). */
static inline size_t tc__ref_cap(const tc_ref *r)
{
    return (r->flags & TC_REF_ENTRY) ? tc__ref_off(r) + r->len : r->u.cap;
}

/* The allocation of a tc_ref with room for cap bytes and their NUL. */
#define TC_REF_SIZE(cap) (offsetof(tc_ref, buf) + (cap) + 1)
/* The largest cap a tc_ref can have (its lengths are 32-bit). */
#define TC_REF_MAX ((size_t)UINT32_MAX - 1)

/* A new reference (refs = 1) with room for cap bytes in buf, and NULs at buf[0] and
 * buf[cap]; data = buf, len = 0. NULL on allocation failure. */
tc_ref *tc__ref_new(size_t cap);
/* A new reference holding a copy of len bytes at src (src may be NULL when len is 0), and
 * the NUL after them. */
tc_ref *tc__ref_copy(const void *src, size_t len);
/* Adds a reference. Inline: a local hit and its release take one each. */
static inline void tc__ref_hold(tc_ref *r)
{
    /* Relaxed is enough: whoever passes r on to another thread does so through a lock or
     * another synchronising operation, which orders this increment before any drop. */
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

/* Frees a value whose last reference went (deferred while hazard slots may hold it). */
void tc__ref_free(tc_ref *r);

/* Drops a reference; frees at zero. NULL is a no-op. */
static inline void tc__ref_drop(tc_ref *r)
{
    if (!r)
        return;
    /* Release so this holder's reads of the value happen before the free; acquire so the
     * thread that frees sees every other holder's release. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        tc__ref_free(r);
}

#endif /* TC_REF_H */
