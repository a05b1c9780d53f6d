/*
 * Key rules and key building: validation of callers' keys (the memcached-safe rule), the
 * Redis key "<prefix>:<version>:<key>", and the 64-bit key hash that indexes the local tier.
 */
#ifndef TC_KEY_H
#define TC_KEY_H

#include <string.h>

#include "common.h"

/* True if key is 1..max_len bytes with no byte below 33 and no byte 127; *len gets strlen.
 * NULL key is false. Reads at most max_len + 1 bytes of key. */
bool tc__key_valid(const char *key, size_t max_len, size_t *len);

/* The length of key if it is 1..max_len bytes long, else 0 (a NULL key too); its bytes are
 * not checked (tc__key_bytes_valid does). Reads at most max_len + 1 bytes of key. Inline:
 * every read starts with it. */
static inline size_t tc__key_len(const char *key, size_t max_len)
{
    if (!key)
        return 0;
    /* strnlen reads at most max_len + 1 bytes; one more than max_len means too long. */
    size_t n = strnlen(key, max_len < SIZE_MAX ? max_len + 1 : SIZE_MAX);
    return n <= max_len ? n : 0;
}

/* True if the len bytes at key (not NUL-terminated) could be a key: 1..64 KiB of bytes a
 * key may hold. For keys that arrive from outside (invalidation messages), whatever
 * max_len the writer had. */
bool tc__key_bytes_valid(const char *key, size_t len);

/* Why key breaks the rules of tc__key_valid, in words for a log line ("is empty", or the
 * key, quoted with its control bytes escaped, and the rule it breaks), written to buf (200
 * bytes suffice); "" if it breaks none. Returns buf. */
const char *tc__key_problem(const char *key, size_t max_len, char *buf, size_t cap);

/* XXH3-64 of the key bytes. */
uint64_t tc__key_hash(const void *key, size_t len);

/* Writes "<prefix><key>" into buf where prefix is the precomputed "<key_prefix>:<version>:"
 * string. Returns the length, or 0 if it does not fit (cap includes the NUL). */
size_t tc__key_redis(char *buf, size_t cap, const char *prefix, size_t prefix_len, const char *key,
                     size_t klen);

#endif /* TC_KEY_H */
