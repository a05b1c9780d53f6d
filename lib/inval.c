/*
 * The invalidation message's bytes (see inval.h): encoding for the write path, parsing for
 * the subscriber. Keys cannot hold spaces (the key rule), so a single space separates the
 * fields; the parser accepts exactly what the encoder writes (lowercase hex, no empty field,
 * no trailing space) and a decimal version of at most 11 characters. No state, no locks.
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

/* The message's head, "TC1 <op> <origin>", into buf; returns its length. */
static size_t encode_head(char *buf, char op, uint64_t origin)
{
    /* The head is bytes, not a C string: the caller writes on after it. */
    memcpy(buf, TC_INVAL_MAGIC, TC_INVAL_MAGIC_LEN); // NOLINT(bugprone-not-null-terminated-result)
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

size_t tc__inval_encode_keys(char *buf, uint64_t origin, int version, size_t n,
                             const char *const *keys, const size_t *klens)
{
    char *p = buf + encode_head(buf, TC_INVAL_KEYS, origin);
    char num[16];
    int vlen = snprintf(num, sizeof num, "%d", version);
    *p++ = ' ';
    memcpy(p, num, (size_t)vlen);
    p += vlen;
    for (size_t i = 0; i < n; i++) {
        *p++ = ' ';
        memcpy(p, keys[i], klens[i]);
        p += klens[i];
    }
    return (size_t)(p - buf);
}

size_t tc__inval_encode_flush(char *buf, uint64_t origin)
{
    return encode_head(buf, TC_INVAL_FLUSH, origin);
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

bool tc__inval_parse(const char *payload, size_t len, tc_inval *out)
{
    const char *p = payload, *end = payload + len;
    const char *tok;
    size_t tlen;
    if (len < TC_INVAL_MAGIC_LEN + 1 || memcmp(p, TC_INVAL_MAGIC, TC_INVAL_MAGIC_LEN) != 0 ||
        payload[len - 1] == ' ')
        return false;
    p += TC_INVAL_MAGIC_LEN;
    if (!next_token(&p, end, &tok, &tlen) || tlen != 1 ||
        (tok[0] != TC_INVAL_KEYS && tok[0] != TC_INVAL_FLUSH))
        return false;
    out->op = (tc_inval_op)tok[0];
    if (!next_token(&p, end, &tok, &tlen) || !parse_hex64(tok, tlen, &out->origin))
        return false;
    out->version = 0;
    out->keys = out->end = end;
    if (out->op == TC_INVAL_FLUSH)
        return p == end;
    if (!next_token(&p, end, &tok, &tlen) || !parse_int(tok, tlen, &out->version) || p == end)
        return false;
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

bool tc__inval_next_key(tc_inval *m, const char **key, size_t *klen)
{
    return next_token(&m->keys, m->end, key, klen);
}
