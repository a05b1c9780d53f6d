/*
 * The invalidation message's bytes (see inval.h): encoding for the write path, parsing for
 * the subscriber. Keys cannot hold spaces (the key rule), so a single space separates the
 * fields; the parser accepts exactly what the encoder writes (lowercase hex, no empty field,
 * no trailing space) and a decimal version of at most 11 characters. A TC2 message also
 * carries the generation (16 lowercase hex digits, as the origin) and the group sequences,
 * each "<group>:<seq>" in canonical decimal (no sign, no leading zero, seq at least 1), so
 * that every message the parser accepts is one the encoder writes. No state, no locks.
 */
#include "config.h"

#include "inval.h"

#include <stdio.h>
#include <string.h>

#include "key.h"

static void hex64(char *out, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    for (int i = TC_INVAL_ORIGIN_HEX - 1; i >= 0; i--, v >>= 4)
        out[i] = digits[v & 0xf];
}

static bool parse_hex64(const char *p, size_t len, uint64_t *out)
{
    if (len != TC_INVAL_ORIGIN_HEX)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                                              : 16u;
        if (d > 15)
            return false;
        v = (v << 4) | d;
    }
    *out = v;
    return true;
}

/* The message's head, "<magic><op> <origin>", into buf; returns its length. */
static size_t encode_head(char *buf, const char *magic, char op, uint64_t origin)
{
    /* The head is bytes, not a C string: the caller writes on after it. */
    memcpy(buf, magic, TC_INVAL_MAGIC_LEN); // NOLINT(bugprone-not-null-terminated-result)
    buf[TC_INVAL_MAGIC_LEN] = op;
    buf[TC_INVAL_MAGIC_LEN + 1] = ' ';
    hex64(buf + TC_INVAL_MAGIC_LEN + 2, origin);
    return TC_INVAL_FLUSH_LEN;
}

size_t tc__inval_keys_len(int version, size_t n, const size_t *klens)
{
    char num[16];
    size_t len = TC_INVAL_FLUSH_LEN + 1 + (size_t)snprintf(num, sizeof num, "%d", version);
    for (size_t i = 0; i < n; i++)
        len += 1 + klens[i];
    return len;
}

/* "<magic>K <origin> <version>" into buf; returns the end. */
static char *encode_keys_head(char *buf, const char *magic, uint64_t origin, int version)
{
    char *p = buf + encode_head(buf, magic, TC_INVAL_KEYS, origin);
    char num[16];
    int vlen = snprintf(num, sizeof num, "%d", version);
    *p++ = ' ';
    memcpy(p, num, (size_t)vlen);
    return p + vlen;
}

/* " <key> <key> ..." at p; returns the end. */
static char *encode_key_list(char *p, size_t n, const char *const *keys, const size_t *klens)
{
    for (size_t i = 0; i < n; i++) {
        *p++ = ' ';
        memcpy(p, keys[i], klens[i]);
        p += klens[i];
    }
    return p;
}

size_t tc__inval_encode_keys(char *buf, uint64_t origin, int version, size_t n,
                             const char *const *keys, const size_t *klens)
{
    char *p = encode_keys_head(buf, TC_INVAL_MAGIC, origin, version);
    return (size_t)(encode_key_list(p, n, keys, klens) - buf);
}

size_t tc__inval_encode_seq_template(char *buf, uint64_t origin, int version, size_t n,
                                     const char *const *keys, const size_t *klens, size_t *split)
{
    char *p = encode_keys_head(buf, TC_INVAL_MAGIC2, origin, version);
    *split = (size_t)(p - buf) + 1;
    return (size_t)(encode_key_list(p, n, keys, klens) - buf);
}

/* The "<g>:<s>,..." field; with buf NULL only its length. */
static size_t encode_seqs(char *buf, size_t nseq, const unsigned *groups, const uint64_t *seqs)
{
    char one[48];
    size_t len = 0;
    for (size_t i = 0; i < nseq; i++) {
        int l = snprintf(one, sizeof one, "%s%u:%llu", i ? "," : "", groups[i],
                         (unsigned long long)seqs[i]);
        if (buf)
            memcpy(buf + len, one, (size_t)l);
        len += (size_t)l;
    }
    return len;
}

size_t tc__inval_seq_keys_len(int version, uint64_t gen, size_t nseq, const unsigned *groups,
                              const uint64_t *seqs, size_t n, const size_t *klens)
{
    (void)gen;
    return tc__inval_keys_len(version, n, klens) + TC_INVAL_ORIGIN_HEX + 2 +
           encode_seqs(NULL, nseq, groups, seqs);
}

size_t tc__inval_encode_seq_keys(char *buf, uint64_t origin, int version, uint64_t gen, size_t nseq,
                                 const unsigned *groups, const uint64_t *seqs, size_t n,
                                 const char *const *keys, const size_t *klens)
{
    char *p = encode_keys_head(buf, TC_INVAL_MAGIC2, origin, version);
    *p++ = ' ';
    hex64(p, gen);
    p += TC_INVAL_ORIGIN_HEX;
    *p++ = ' ';
    p += encode_seqs(p, nseq, groups, seqs);
    return (size_t)(encode_key_list(p, n, keys, klens) - buf);
}

size_t tc__inval_encode_flush(char *buf, uint64_t origin)
{
    return encode_head(buf, TC_INVAL_MAGIC, TC_INVAL_FLUSH, origin);
}

/* The next space-separated token of [*p, end): sets *tok and *len and advances *p past
 * it and one separator. False at the end. Empty tokens (two spaces) are malformed. */
static bool next_token(const char **p, const char *end, const char **tok, size_t *len)
{
    if (*p >= end)
        return false;
    const char *s = *p;
    const char *e = memchr(s, ' ', (size_t)(end - s));
    if (!e)
        e = end;
    *tok = s;
    *len = (size_t)(e - s);
    *p = e < end ? e + 1 : end;
    return *len > 0;
}

static bool parse_int(const char *s, size_t len, long long *out)
{
    if (len == 0 || len > 11)
        return false;
    long long v = 0;
    size_t i = 0;
    bool neg = s[0] == '-';
    if (neg && len == 1)
        return false;
    for (i = neg ? 1 : 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = neg ? -v : v;
    return true;
}

/* A canonical decimal of at most maxlen digits (no sign, no leading zero). */
static bool parse_canon(const char *s, size_t len, size_t maxlen, uint64_t *out)
{
    if (len == 0 || len > maxlen || (len > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* One "<g>:<s>" pair of [s, s + len). */
static bool parse_seq(const char *s, size_t len, unsigned *group, uint64_t *seq)
{
    const char *colon = memchr(s, ':', len);
    uint64_t g;
    if (!colon || !parse_canon(s, (size_t)(colon - s), 5, &g) || g >= TC_INVAL_SLOTS ||
        !parse_canon(colon + 1, len - (size_t)(colon + 1 - s), 18, seq) || *seq == 0)
        return false;
    *group = (unsigned)g;
    return true;
}

/* The next comma-separated pair of [*p, end), advancing *p. */
static bool next_seq(const char **p, const char *end, unsigned *group, uint64_t *seq)
{
    if (*p >= end)
        return false;
    const char *s = *p;
    const char *e = memchr(s, ',', (size_t)(end - s));
    if (!e)
        e = end;
    *p = e < end ? e + 1 : end;
    return parse_seq(s, (size_t)(e - s), group, seq);
}

bool tc__inval_parse(const char *payload, size_t len, tc_inval *out)
{
    const char *p = payload, *end = payload + len;
    const char *tok;
    size_t tlen;
    if (len < TC_INVAL_MAGIC_LEN + 1 || payload[len - 1] == ' ')
        return false;
    out->sequenced = memcmp(p, TC_INVAL_MAGIC2, TC_INVAL_MAGIC_LEN) == 0;
    if (!out->sequenced && memcmp(p, TC_INVAL_MAGIC, TC_INVAL_MAGIC_LEN) != 0)
        return false;
    p += TC_INVAL_MAGIC_LEN;
    if (!next_token(&p, end, &tok, &tlen) || tlen != 1 ||
        (tok[0] != TC_INVAL_KEYS && tok[0] != TC_INVAL_FLUSH) ||
        (out->sequenced && tok[0] != TC_INVAL_KEYS))
        return false;
    out->op = (tc_inval_op)tok[0];
    if (!next_token(&p, end, &tok, &tlen) || !parse_hex64(tok, tlen, &out->origin))
        return false;
    out->version = 0;
    out->gen = 0;
    out->keys = out->end = out->seqs = out->seqs_end = end;
    if (out->op == TC_INVAL_FLUSH)
        return p == end;
    if (!next_token(&p, end, &tok, &tlen) || !parse_int(tok, tlen, &out->version) || p == end)
        return false;
    if (out->sequenced) {
        if (!next_token(&p, end, &tok, &tlen) || !parse_hex64(tok, tlen, &out->gen) ||
            !next_token(&p, end, &tok, &tlen) || p == end)
            return false;
        unsigned g;
        uint64_t sq;
        for (const char *q = tok; q < tok + tlen;) {
            if (!next_seq(&q, tok + tlen, &g, &sq))
                return false;
        }
        if (tok[tlen - 1] == ',')
            return false;
        out->seqs = tok;
        out->seqs_end = tok + tlen;
    }
    /* Every key is checked here, before the caller applies any: a key must keep the key
     * rules, since a forged one holding a NUL or control byte would otherwise reach the
     * per-type metrics as a name. */
    for (const char *q = p; q < end;) {
        if (!next_token(&q, end, &tok, &tlen) || !tc__key_bytes_valid(tok, tlen))
            return false;
    }
    out->keys = p;
    return true;
}

bool tc__inval_parse_gen(const char *p, size_t len, uint64_t *out)
{
    return parse_hex64(p, len, out);
}

bool tc__inval_next_seq(tc_inval *m, unsigned *group, uint64_t *seq)
{
    return next_seq(&m->seqs, m->seqs_end, group, seq);
}

bool tc__inval_next_key(tc_inval *m, const char **key, size_t *klen)
{
    return next_token(&m->keys, m->end, key, klen);
}
