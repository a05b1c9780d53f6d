/*
 * The stored value format (see format.h): plain bytes unless a header is needed. Decoding
 * is strict: a header whose length field does not fit the value, or whose flags announce
 * fields it does not hold, is not a header, and the bytes are returned as they are.
 */
#include "config.h"

#include "format.h"

_Static_assert(TC_FMT_LEN_AT == TC_REF_HEADER_LEN_AT, "tc__ref_off reads the length there");
_Static_assert(TC_FMT_MAGIC_LEN <= TC_FMT_LEN_AT && TC_FMT_LEN_AT + 2 <= TC_FMT_BASE_LEN,
               "the header length follows the magic, inside the base header");

#include <string.h>

#define XFETCH_FIELDS_LEN 12

static void put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static uint16_t get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool starts_with_magic(const void *data, size_t len)
{
    return len >= TC_FMT_MAGIC_LEN && memcmp(data, TC_FMT_MAGIC, TC_FMT_MAGIC_LEN) == 0;
}

static size_t tags_len(const tc_fmt_meta *meta)
{
    size_t n = 2;
    for (size_t i = 0; i < meta->ntags; i++)
        n += 2 + meta->tags[i].len + 8;
    return n;
}

size_t tc__fmt_header_len(const void *data, size_t len, const tc_fmt_meta *meta)
{
    unsigned flags = meta ? meta->flags : 0;
    if (flags == 0 && !starts_with_magic(data, len))
        return 0;
    return TC_FMT_BASE_LEN + ((flags & TC_FMT_XFETCH) ? XFETCH_FIELDS_LEN : 0) +
           ((flags & TC_FMT_TAGS) ? tags_len(meta) : 0);
}

void tc__fmt_write_header(unsigned char *out, size_t hlen, const tc_fmt_meta *meta)
{
    unsigned flags = meta ? meta->flags : 0;
    memcpy(out, TC_FMT_MAGIC, TC_FMT_MAGIC_LEN);
    put_u16(out + TC_FMT_LEN_AT, (uint16_t)hlen);
    out[6] = (unsigned char)flags;
    out[7] = 0;
    unsigned char *p = out + TC_FMT_BASE_LEN;
    if (flags & TC_FMT_XFETCH) {
        put_u64(p, (uint64_t)meta->expiry_ms);
        uint32_t d = meta->delta_ms;
        put_u16(p + 8, (uint16_t)d);
        put_u16(p + 10, (uint16_t)(d >> 16));
        p += XFETCH_FIELDS_LEN;
    }
    if (flags & TC_FMT_TAGS) {
        put_u16(p, (uint16_t)meta->ntags);
        p += 2;
        for (size_t i = 0; i < meta->ntags; i++) {
            put_u16(p, (uint16_t)meta->tags[i].len);
            memcpy(p + 2, meta->tags[i].name, meta->tags[i].len);
            p += 2 + meta->tags[i].len;
            put_u64(p, (uint64_t)meta->tags[i].version);
            p += 8;
        }
    }
}

/* Checks the tag section at p (end: the header's end); its offset after it, or 0. */
static size_t check_tags(const unsigned char *p, size_t off, size_t end)
{
    if (off + 2 > end)
        return 0;
    size_t n = get_u16(p + off);
    off += 2;
    if (n == 0 || n > TC_FMT_MAX_TAGS)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (off + 2 > end)
            return 0;
        size_t len = get_u16(p + off);
        if (len == 0 || off + 2 + len + 8 > end)
            return 0;
        off += 2 + len + 8;
    }
    return off;
}

bool tc__fmt_next_tag(const tc_ref *r, size_t *pos, tc_fmt_tag *tag)
{
    if (!(r->flags & TC_REF_TAGGED))
        return false;
    const unsigned char *p = r->buf;
    size_t off = TC_FMT_BASE_LEN + ((p[6] & TC_FMT_XFETCH) ? XFETCH_FIELDS_LEN : 0);
    size_t n = get_u16(p + off);
    if (*pos >= n)
        return false;
    off += 2;
    for (size_t i = 0; i < *pos; i++) /* tags are few: a walk is cheaper than an index */
        off += 2 + get_u16(p + off) + 8;
    tag->len = get_u16(p + off);
    tag->name = (const char *)p + off + 2;
    tag->version = (int64_t)get_u64(p + off + 2 + tag->len);
    (*pos)++;
    return true;
}

void tc__fmt_decode(tc_ref *r)
{
    const unsigned char *p = r->buf;
    size_t total = r->len;
    if (!starts_with_magic(p, total) || total < TC_FMT_BASE_LEN)
        return;
    size_t hlen = get_u16(p + TC_FMT_LEN_AT);
    unsigned flags = p[6];
    size_t need = TC_FMT_BASE_LEN + ((flags & TC_FMT_XFETCH) ? XFETCH_FIELDS_LEN : 0);
    if (hlen < need || hlen > total || (flags & ~(TC_FMT_NEGATIVE | TC_FMT_XFETCH | TC_FMT_TAGS)))
        return;
    if ((flags & TC_FMT_TAGS) && check_tags(p, need, hlen) == 0)
        return;
    if (flags & TC_FMT_XFETCH)
        r->flags |= TC_REF_XFETCH;
    if (flags & TC_FMT_NEGATIVE)
        r->flags |= TC_REF_NEGATIVE;
    if (flags & TC_FMT_TAGS)
        r->flags |= TC_REF_TAGGED;
    r->flags |= TC_REF_HEADER; /* off = hlen, read from the header (tc__ref_off) */
    r->len = total - hlen;
}

int64_t tc__fmt_expiry_ms(const tc_ref *r)
{
    return (r->flags & TC_REF_XFETCH) ? (int64_t)get_u64(r->buf + TC_FMT_BASE_LEN) : 0;
}

uint32_t tc__fmt_delta_ms(const tc_ref *r)
{
    const unsigned char *p = r->buf + TC_FMT_BASE_LEN + 8;
    return (r->flags & TC_REF_XFETCH) ? (uint32_t)get_u16(p) | ((uint32_t)get_u16(p + 2) << 16) : 0;
}
