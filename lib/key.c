/*
 * Key rules and key building. The rule is memcached's (and Django's validate_key): 1..max
 * bytes, none below 33 (space and control characters) and none equal to 127 (DEL). Keys are
 * hashed with XXH3-64, whose high and low bits are both good, so the local tier can take
 * shard and slot from different bits of one hash. tc_key and tc_keyf build keys for callers.
 */
#include "config.h"

#include "key.h"

#include <stdio.h>
#include <string.h>
#include <xxhash.h>

static inline bool key_byte_ok(unsigned char b)
{
    return b >= 33 && b != 127;
}

/* 1 for the bytes a key may hold, 0 for the others (the NUL among them): for the few bytes
 * that do not fill a word. */
static const unsigned char key_byte_table[256] = {
    [33 ... 126] = 1,  /* printable ASCII but space */
    [128 ... 255] = 1, /* any byte of a multi-byte UTF-8 sequence (or other 8-bit data) */
};

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero if one of the eight bytes of w is below 33 or equal to 127. Exact: the lowest
 * such byte always sets its high bit, and a byte that is fine sets it only through a borrow
 * from a bad byte below it (bytes >= 128 are masked out by ~w). */
static inline uint64_t word_bad(uint64_t w)
{
    uint64_t below = (w - ONES * 33) & ~w & HIGHS;
    uint64_t del = w ^ (ONES * 127);
    return below | ((del - ONES) & ~del & HIGHS);
}

/* True if none of the len bytes at p is forbidden: eight bytes per test, so checking a key
 * costs a few instructions instead of a loop over its bytes (this is on every read). */
static bool bytes_ok(const unsigned char *p, size_t len)
{
    uint64_t w;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        memcpy(&w, p + i, 8);
        if (word_bad(w))
            return false;
    }
    if (i == len)
        return true;
    if (len >= 8) { /* the tail: the last eight bytes, overlapping ones already checked */
        memcpy(&w, p + len - 8, 8);
        return !word_bad(w);
    }
    for (; i < len; i++)
        if (!key_byte_table[p[i]])
            return false;
    return true;
}

bool tc__key_valid(const char *key, size_t max_len, size_t *len)
{
    size_t n = tc__key_len(key, max_len);
    if (n == 0 || !bytes_ok((const unsigned char *)key, n))
        return false;
    if (len)
        *len = n;
    return true;
}

bool tc__key_bytes_valid(const char *key, size_t len)
{
    if (len == 0 || len > ((size_t)64 << 10))
        return false;
    return bytes_ok((const unsigned char *)key, len);
}

uint64_t tc__key_hash(const void *key, size_t len)
{
    return XXH3_64bits(key, len);
}

size_t tc__key_redis(char *buf, size_t cap, const char *prefix, size_t prefix_len, const char *key,
                     size_t klen)
{
    if (prefix_len + klen + 1 > cap)
        return 0;
    memcpy(buf, prefix, prefix_len);
    memcpy(buf + prefix_len, key, klen);
    buf[prefix_len + klen] = '\0';
    return prefix_len + klen;
}

TC_API int tc_key(char *buf, size_t cap, const char *part, ...)
{
    if (!buf || cap == 0 || !part)
        return -1;
    va_list ap;
    va_start(ap, part);
    size_t pos = 0;
    int result = 0;
    for (const char *p = part; p; p = va_arg(ap, const char *)) {
        if (pos > 0) {
            if (pos + 1 >= cap) {
                result = -1;
                break;
            }
            buf[pos++] = ':';
        }
        if (!*p) {
            result = -1;
            break;
        }
        for (; *p; p++) {
            if (!key_byte_ok((unsigned char)*p) || pos + 1 >= cap) {
                result = -1;
                break;
            }
            buf[pos++] = *p;
        }
        if (result < 0)
            break;
    }
    va_end(ap);
    if (result < 0 || pos > (size_t)INT32_MAX) {
        buf[0] = '\0';
        return -1;
    }
    buf[pos] = '\0';
    return (int)pos;
}

TC_API int tc_keyf(char *buf, size_t cap, const char *fmt, ...)
{
    if (!buf || cap == 0 || !fmt)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    /* n >= cap: truncated, which a key must never be silently. */
    if (n <= 0 || (size_t)n >= cap || !bytes_ok((const unsigned char *)buf, (size_t)n)) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

/* Up to 40 bytes of key as a C string literal would show them, so a log line never
 * carries the control bytes a bad key may hold. */
static void key_quote(const char *key, size_t len, char *buf, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < len && i < 40 && j + 5 < cap; i++) {
        unsigned char b = (unsigned char)key[i];
        if (b >= 32 && b < 127 && b != '"' && b != '\\')
            buf[j++] = (char)b;
        else
            j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", b);
    }
    if (len > 40 && j + 4 < cap)
        j += (size_t)snprintf(buf + j, cap - j, "...");
    buf[j] = '\0';
}

const char *tc__key_problem(const char *key, size_t max_len, char *buf, size_t cap)
{
    if (!key) {
        snprintf(buf, cap, "is NULL");
        return buf;
    }
    size_t n = strnlen(key, max_len < SIZE_MAX ? max_len + 1 : SIZE_MAX);
    char shown[200];
    key_quote(key, n, shown, sizeof shown);
    size_t bad = 0;
    while (bad < n && key_byte_ok((unsigned char)key[bad]))
        bad++;
    if (n == 0)
        snprintf(buf, cap, "is empty (a key has 1..%zu bytes)", max_len);
    else if (n > max_len)
        snprintf(buf, cap, "\"%s\" is longer than max_key_len (%zu bytes)", shown, max_len);
    else if (bad < n)
        snprintf(buf, cap,
                 "\"%s\" holds byte 0x%02x at offset %zu (a key holds no byte below 33, "
                 "no space, no 127)",
                 shown, (unsigned char)key[bad], bad);
    else
        buf[0] = '\0';
    return buf;
}
