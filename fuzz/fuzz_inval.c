/*
 * libFuzzer target for the invalidation message parser (tc__inval_parse, lib/inval.c):
 * anyone who can PUBLISH on the channel controls these bytes. It links inval.c and key.c
 * only: the parser is pure, and applying a message to a cache is tested in
 * tests/check_coherence.c.
 *
 * For every input the parser accepts, the target checks what it promises, decoding the
 * bytes independently:
 *   - the op, the origin (lowercase hex) and, for a key message, the version are the
 *     message's own fields;
 *   - a flush message is exactly what tc__inval_encode_flush writes for its origin;
 *   - a key message's keys, read with tc__inval_next_key, are non-empty, keep the key rules
 *     and, joined by single spaces after the version, are the rest of the message; when the
 *     version is written canonically, tc__inval_encode_keys (and tc__inval_keys_len)
 *     reproduce the message byte for byte.
 * A broken promise aborts (a crash for libFuzzer).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inval.h"
#include "key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_KEYS 4096

static const char *key_at[MAX_KEYS];
static size_t klen_at[MAX_KEYS];

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void check_flush(const char *m, size_t size, const tc_inval *p)
{
    char buf[TC_INVAL_FLUSH_LEN];
    check(size == TC_INVAL_FLUSH_LEN && p->keys == p->end);
    check(tc__inval_encode_flush(buf, p->origin) == size && memcmp(buf, m, size) == 0);
}

static void check_keys(const char *m, size_t size, tc_inval *p)
{
    /* "TC1 K <16 hex> <version> <keys>" */
    const char *v = m + TC_INVAL_FLUSH_LEN + 1, *end = m + size;
    check(m[TC_INVAL_FLUSH_LEN] == ' ' && v < end);
    const char *ve = memchr(v, ' ', (size_t)(end - v));
    check(ve && ve > v && (size_t)(ve - v) <= 11);
    char num[16] = {0};
    memcpy(num, v, (size_t)(ve - v));
    check(strtoll(num, NULL, 10) == p->version);
    /* The keys, in order, are the rest of the message. */
    const char *expect = ve + 1, *key;
    size_t klen, n = 0;
    while (tc__inval_next_key(p, &key, &klen)) {
        check(klen > 0 && tc__key_bytes_valid(key, klen) && key == expect);
        check(!memchr(key, ' ', klen));
        expect = key + klen;
        check(expect == end || *expect == ' ');
        expect += expect < end;
        if (n < MAX_KEYS) {
            key_at[n] = key;
            klen_at[n] = klen;
        }
        n++;
    }
    check(n > 0 && expect == end && end[-1] != ' ');
    /* Canonical version: the encoder writes the very same bytes. */
    char canon[16];
    snprintf(canon, sizeof canon, "%d", (int)p->version);
    if (n > MAX_KEYS || p->version != (int)p->version || strcmp(canon, num) != 0)
        return;
    check(tc__inval_keys_len((int)p->version, n, klen_at) == size);
    char *buf = malloc(size);
    check(buf != NULL);
    check(tc__inval_encode_keys(buf, p->origin, (int)p->version, n, key_at, klen_at) == size);
    check(memcmp(buf, m, size) == 0);
    free(buf);
}

/* A TC2 message: a key message whose every (group, sequence) is in range, and which the
 * encoder writes again byte for byte from what was parsed (canonical version). */
static unsigned seq_group[TC_INVAL_GROUPS * 8];
static uint64_t seq_val[TC_INVAL_GROUPS * 8];

static void check_sequenced(const char *m, size_t size, tc_inval *p)
{
    check(p->op == TC_INVAL_KEYS);
    size_t nseq = 0;
    unsigned g;
    uint64_t s;
    bool fits = true;
    while (tc__inval_next_seq(p, &g, &s)) {
        check(g < TC_INVAL_SLOTS && s >= 1);
        if (nseq < sizeof seq_group / sizeof seq_group[0]) {
            seq_group[nseq] = g;
            seq_val[nseq] = s;
        } else {
            fits = false;
        }
        nseq++;
    }
    check(nseq > 0);
    const char *key;
    size_t klen, n = 0;
    while (tc__inval_next_key(p, &key, &klen)) {
        check(klen > 0 && tc__key_bytes_valid(key, klen));
        if (n < MAX_KEYS) {
            key_at[n] = key;
            klen_at[n] = klen;
        } else {
            fits = false;
        }
        n++;
    }
    check(n > 0);
    if (!fits || p->version != (int)p->version)
        return;
    char *buf = malloc(size + 64);
    check(buf != NULL);
    size_t len = tc__inval_encode_seq_keys(buf, p->origin, (int)p->version, p->gen, nseq, seq_group,
                                           seq_val, n, key_at, klen_at);
    /* Equal unless the version was written other than canonically ("007", "-0"). */
    char canon[16];
    int cl = snprintf(canon, sizeof canon, "%d", (int)p->version);
    if (memcmp(m + TC_INVAL_FLUSH_LEN + 1, canon, (size_t)cl) == 0 &&
        m[TC_INVAL_FLUSH_LEN + 1 + cl] == ' ') {
        check(len == size && memcmp(buf, m, size) == 0);
        check(tc__inval_seq_keys_len((int)p->version, p->gen, nseq, seq_group, seq_val, n,
                                     klen_at) == size);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *m = (const char *)data;
    tc_inval p;
    if (!tc__inval_parse(m, size, &p))
        return 0;
    check(size >= TC_INVAL_FLUSH_LEN &&
          memcmp(m, p.sequenced ? TC_INVAL_MAGIC2 : TC_INVAL_MAGIC, TC_INVAL_MAGIC_LEN) == 0);
    if (p.sequenced) {
        check_sequenced(m, size, &p);
        return 0;
    }
    check(m[TC_INVAL_MAGIC_LEN] == (char)p.op && m[TC_INVAL_MAGIC_LEN + 1] == ' ');
    char hex[TC_INVAL_ORIGIN_HEX + 1] = {0};
    memcpy(hex, m + TC_INVAL_MAGIC_LEN + 2, TC_INVAL_ORIGIN_HEX);
    for (int i = 0; i < TC_INVAL_ORIGIN_HEX; i++)
        check((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f'));
    check(strtoull(hex, NULL, 16) == p.origin);
    if (p.op == TC_INVAL_FLUSH)
        check_flush(m, size, &p);
    else
        check_keys(m, size, &p);
    return 0;
}
