/*
 * The broadcast invalidation message (docs/design/coherence.md, "Message format"): its bytes,
 * built and parsed. Pure functions over caller buffers: no I/O, no cache, no locks, no
 * allocation, so the parser is unit-tested and fuzzed (fuzz/fuzz_inval.c) on its own.
 *
 *     "TC1 K <origin> <version> <key> <key> ..."   these caller keys changed
 *     "TC1 F <origin>"                              everything under the prefix changed
 *     "TC2 K <origin> <version> <gen> <g>:<s>[,<g>:<s>...] <key> <key> ..."
 *         these keys changed, and the write moved each named group g to sequence s in
 *         generation gen (docs/design/coherence.md, "Recovery"). Redis fills in the
 *         "<gen> <g>:<s>,..." field (the writer's Lua), so the writer encodes the rest
 *         (tc__inval_encode_seq_template) and says where the field goes.
 *
 * Thread safety: every function may be called from any thread.
 */
#ifndef TC_INVAL_H
#define TC_INVAL_H

#include "common.h"

#define TC_INVAL_MAGIC "TC1 "
#define TC_INVAL_MAGIC2 "TC2 " /* a key message with group sequences */
#define TC_INVAL_MAGIC_LEN 4
/* The number of sequence groups: a caller key's group is the top bits of its hash
 * (tc__local_group, local.h). Fixed: every instance of a fleet must agree. */
#define TC_INVAL_GROUP_BITS 10
#define TC_INVAL_GROUPS (1u << TC_INVAL_GROUP_BITS)
/* The group numbers a message may carry. On a cluster a message names the key's cluster
 * slot (below 16384), whose sequence lives in that slot; the local tier drops the group
 * slot >> 4 (TC_INVAL_SLOT_SHIFT). On one server they are below TC_INVAL_GROUPS. */
#define TC_INVAL_SLOTS 16384u
#define TC_INVAL_SLOT_SHIFT 4
#define TC_INVAL_ORIGIN_HEX 16 /* the origin: 16 lowercase hex digits */
/* The length of a flush message. */
#define TC_INVAL_FLUSH_LEN (TC_INVAL_MAGIC_LEN + 2 + TC_INVAL_ORIGIN_HEX)

typedef enum tc_inval_op { TC_INVAL_KEYS = 'K', TC_INVAL_FLUSH = 'F' } tc_inval_op;

/* A parsed message: views into the payload it was parsed from (borrowed). */
typedef struct tc_inval {
    tc_inval_op op;
    uint64_t origin;
    long long version;    /* TC_INVAL_KEYS only */
    bool sequenced;       /* a TC2 key message: gen and seqs below are set */
    uint64_t gen;         /* the sequences' generation (16 hex digits) */
    const char *seqs;     /* the "<g>:<s>" pairs not yet read by tc__inval_next_seq, */
    const char *seqs_end; /* [seqs, seqs_end), comma-separated */
    const char *keys;     /* TC_INVAL_KEYS: the keys not yet read by tc__inval_next_key, */
    const char *end;      /* [keys, end), space-separated; empty for a flush */
} tc_inval;

/* The length of the message naming n keys (klens[i] bytes each) written with version. */
size_t tc__inval_keys_len(int version, size_t n, const size_t *klens);

/* Writes that message into buf (at least tc__inval_keys_len bytes; no NUL is written) and
 * returns its length. The keys follow the key rules (no spaces). */
size_t tc__inval_encode_keys(char *buf, uint64_t origin, int version, size_t n,
                             const char *const *keys, const size_t *klens);

/* A TC2 key message without its "<gen> <g>:<s>,... " field: the length of
 * tc__inval_keys_len, and the bytes (buf of that length) with *split set to where the
 * field goes (just after "<version> "). Redis inserts the field (redis_ops.c). */
size_t tc__inval_encode_seq_template(char *buf, uint64_t origin, int version, size_t n,
                                     const char *const *keys, const size_t *klens, size_t *split);

/* The length of the complete TC2 message naming n keys and nseq groups with sequences
 * seqs[i] (for tests and the fuzzer; the write path lets Redis write it). */
size_t tc__inval_seq_keys_len(int version, uint64_t gen, size_t nseq, const unsigned *groups,
                              const uint64_t *seqs, size_t n, const size_t *klens);
/* Writes that message into buf and returns its length. */
size_t tc__inval_encode_seq_keys(char *buf, uint64_t origin, int version, uint64_t gen, size_t nseq,
                                 const unsigned *groups, const uint64_t *seqs, size_t n,
                                 const char *const *keys, const size_t *klens);

/* A generation as messages write it (16 lowercase hex digits) into *out. */
bool tc__inval_parse_gen(const char *p, size_t len, uint64_t *out);

/* The next (group, sequence) of a parsed TC2 message: true with *group (below
 * TC_INVAL_SLOTS) and *seq (at least 1), false when every pair has been read. */
bool tc__inval_next_seq(tc_inval *m, unsigned *group, uint64_t *seq);

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
