/*
 * The stored value format. A value is stored in Redis as its plain bytes, so that other
 * clients (redis-cli, a Python service) read and write the same keys, and tc_incr counters
 * are plain Redis integers. A header is added only when a value needs one: when it carries
 * metadata (a cached "does not exist", early-refresh timing, tags), or when its own bytes
 * begin with the header's magic and would otherwise be ambiguous.
 *
 * Header (all integers little-endian), documented in docs/design/stored-format.md:
 *   0  4  magic "\xF8TC\x01" (0xF8 never occurs in UTF-8 text, so no text value starts so)
 *   4  2  header length in bytes, including the magic (the value follows it)
 *   6  1  flags: TC_FMT_NEGATIVE, TC_FMT_XFETCH, TC_FMT_TAGS
 *   7  1  reserved, 0
 *   then, if TC_FMT_XFETCH: 8 bytes expiry (wall-clock ms, 0 none), 4 bytes delta (ms)
 *   then, if TC_FMT_TAGS: 2 bytes count, and per tag 2 bytes length, the name, 8 bytes
 *   version (signed)
 * A reader that finds no valid header treats the bytes as a plain value.
 */
#ifndef TC_FORMAT_H
#define TC_FORMAT_H

#include "common.h"
#include "ref.h"

#define TC_FMT_MAGIC "\xF8TC\x01"
#define TC_FMT_MAGIC_LEN 4
#define TC_FMT_BASE_LEN 8
/* Where the 2-byte header length sits. The incr script (redis_ops.c) reads the header
 * through this one number: the layout is spelled out here only. */
#define TC_FMT_LEN_AT 4

#define TC_FMT_NEGATIVE 0x01u
#define TC_FMT_XFETCH 0x02u
#define TC_FMT_TAGS 0x04u
#define TC_FMT_MAX_TAGS 64

/* One tag of a tagged value: its name and the version it had when the value was written. */
typedef struct tc_fmt_tag {
    const char *name;
    size_t len;
    int64_t version;
} tc_fmt_tag;

typedef struct tc_fmt_meta {
    unsigned flags;
    int64_t expiry_ms; /* TC_FMT_XFETCH */
    uint32_t delta_ms; /* TC_FMT_XFETCH */
    size_t ntags;      /* TC_FMT_TAGS: 1..TC_FMT_MAX_TAGS */
    const tc_fmt_tag *tags;
} tc_fmt_meta;

/* The header length encode will write for this value and metadata: 0 when the value is
 * stored plain. */
size_t tc__fmt_header_len(const void *data, size_t len, const tc_fmt_meta *meta);

/* Writes the header (hlen bytes, as tc__fmt_header_len returned) into out. */
void tc__fmt_write_header(unsigned char *out, size_t hlen, const tc_fmt_meta *meta);

/* Interprets the bytes of r (as fetched, off = 0) in place: on a valid header, sets r->off
 * past it, r->len, and r->flags (TC_REF_NEGATIVE, TC_REF_TAGGED, TC_REF_XFETCH). Plain
 * bytes are left as they are. */
void tc__fmt_decode(tc_ref *r);

/* The early-refresh metadata of a decoded value, read from its header (kept with the value,
 * in the local tier too): its expiry in Redis as the writer saw it (wall-clock ms) and how
 * long it took to compute (ms); 0 when the header has none (TC_REF_XFETCH unset). */
int64_t tc__fmt_expiry_ms(const tc_ref *r);
uint32_t tc__fmt_delta_ms(const tc_ref *r);

/* Iterates over the tags of a decoded value with a header (TC_REF_TAGGED): start with
 * *pos = 0; returns false after the last tag. */
bool tc__fmt_next_tag(const tc_ref *r, size_t *pos, tc_fmt_tag *tag);

#endif /* TC_FORMAT_H */
