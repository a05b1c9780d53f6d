/*
 * The broadcast invalidation message (docs/design/coherence.md, "Message format"): its bytes,
 * built and parsed. Pure functions over caller buffers: no I/O, no cache, no locks, no
 * allocation, so the parser is unit-tested and fuzzed (fuzz/fuzz_inval.c) on its own.
 *
 *     "TC1 K <origin> <version> <key> <key> ..."   these caller keys changed
 *     "TC1 F <origin>"                              everything under the prefix changed
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TC_INVAL_H
#define TC_INVAL_H

#include "common.h"

#define TC_INVAL_MAGIC "TC1 "
#define TC_INVAL_MAGIC_LEN 4
#define TC_INVAL_ORIGIN_HEX 16 /* the origin: 16 lowercase hex digits */
/* The length of a flush message. */
#define TC_INVAL_FLUSH_LEN (TC_INVAL_MAGIC_LEN + 2 + TC_INVAL_ORIGIN_HEX)

typedef enum tc_inval_op { TC_INVAL_KEYS = 'K', TC_INVAL_FLUSH = 'F' } tc_inval_op;

/* A parsed message: views into the payload it was parsed from (borrowed). */
typedef struct tc_inval {
    tc_inval_op op;
    uint64_t origin;
    long long version; /* TC_INVAL_KEYS only */
    const char *keys;  /* TC_INVAL_KEYS: the keys not yet read by tc__inval_next_key, */
    const char *end;   /* [keys, end), space-separated; empty for a flush */
} tc_inval;

/* The length of the message naming n keys (klens[i] bytes each) written with version. */
size_t tc__inval_keys_len(int version, size_t n, const size_t *klens);

/* Writes that message into buf (at least tc__inval_keys_len bytes; no NUL is written) and
 * returns its length. The keys follow the key rules (no spaces). */
size_t tc__inval_encode_keys(char *buf, uint64_t origin, int version, size_t n,
                             const char *const *keys, const size_t *klens);

/* Writes the flush message into buf (TC_INVAL_FLUSH_LEN bytes) and returns its length. */
size_t tc__inval_encode_flush(char *buf, uint64_t origin);

/* Parses len bytes from anyone who can PUBLISH. True if they are a well-formed message,
 * every key of it checked against the key rules (tc__key_bytes_valid), with *out filled;
 * false (and *out unspecified) otherwise, so a caller applies nothing of a malformed one. */
bool tc__inval_parse(const char *payload, size_t len, tc_inval *out);

/* The next key of a parsed key message: true with *key (borrowed from the payload) and
 * *klen, false when every key has been read. */
bool tc__inval_next_key(tc_inval *m, const char **key, size_t *klen);

#endif /* TC_INVAL_H */
