/*
 * Response caching helpers: tc_gql_key and tc_cache_control.
 *
 * tc_gql_key digests four fields with XXH3-128: the scope, the normalised document, the
 * operation name and the canonical variables. The digest input is a length-prefixed
 * concatenation, so no two different field tuples give the same bytes:
 *     "tc-gql-1"                              a format tag: a change of the normalisation
 *                                             must change the tag, and so every key
 *     u64le(len) scope
 *     u64le(len) normalised document
 *     0x00 | 0x01 u64le(len) operation name   0x00: absent (NULL), distinct from ""
 *     0x00 | 0x01 u64le(len) variables        0x00: absent (NULL)
 * The document is normalised by the lexer below (see gql.h for what it keeps); the variables
 * are parsed by jansson and dumped compact with members sorted at every level.
 *
 * Nothing here has state or takes a lock. Our buffers come from tc__malloc; jansson
 * allocates its parse tree through its own allocator, which we leave alone (installing
 * json_set_alloc_funcs would be a process-wide hook).
 */
#include "config.h"

#include "gql.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "key.h"

#define DIGEST_TAG "tc-gql-1"
#define DIGEST_TAG_LEN 8
#define KEY_PREFIX "gql:"
#define KEY_PREFIX_LEN 4
#define DIGEST_HEX 32

/* ------------------------------------------------------------------ the lexer */

static bool is_digit(unsigned char b)
{
    return b >= '0' && b <= '9';
}

static bool is_name_start(unsigned char b)
{
    return b == '_' || (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z');
}

static bool is_name_continue(unsigned char b)
{
    return is_name_start(b) || is_digit(b);
}

static bool is_punct(unsigned char b)
{
    return b != '\0' && strchr("!$&():=@[]{|}", b) != NULL;
}

static bool has3(const char *p, const char *end, char a, char b, char c)
{
    return end - p >= 3 && p[0] == a && p[1] == b && p[2] == c;
}

/* Past the ignored tokens at p: WhiteSpace, LineTerminator, Comma, Comment, UnicodeBOM. */
static const char *skip_ignored(const char *p, const char *end)
{
    while (p < end) {
        unsigned char b = (unsigned char)*p;
        if (b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == ',') {
            p++;
        } else if (has3(p, end, '\xEF', '\xBB', '\xBF')) {
            p += 3;
        } else if (b == '#') {
            while (p < end && *p != '\n' && *p != '\r')
                p++;
        } else {
            break;
        }
    }
    return p;
}

/* -?[0-9]+ (\.[0-9]+)? ([eE][+-]?[0-9]+)?, each optional part taken only when complete, so
 * that "1." is the number 1 followed by a '.' and "1e" the number 1 followed by a name. The
 * caller has checked that p starts a number. */
static const char *lex_number(const char *p, const char *end)
{
    if (*p == '-')
        p++;
    while (p < end && is_digit((unsigned char)*p))
        p++;
    if (p < end && *p == '.' && p + 1 < end && is_digit((unsigned char)p[1])) {
        p += 2;
        while (p < end && is_digit((unsigned char)*p))
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        if (q < end && (*q == '+' || *q == '-'))
            q++;
        if (q < end && is_digit((unsigned char)*q)) {
            p = q + 1;
            while (p < end && is_digit((unsigned char)*p))
                p++;
        }
    }
    return p;
}

/* A block string from its opening quotes: ends at the first """ that is not part of an
 * escaped \""" (a backslash escapes nothing else in a block string). NULL if unclosed. */
static const char *lex_block(const char *p, const char *end)
{
    for (p += 3; p < end;) {
        if (*p == '\\' && end - p >= 4 && has3(p + 1, end, '"', '"', '"'))
            p += 4;
        else if (has3(p, end, '"', '"', '"'))
            return p + 3;
        else
            p++;
    }
    return NULL;
}

/* A string from its opening quote: a backslash takes the next byte with it, whatever it is
 * (escapes are kept, not checked); a line terminator before the closing quote is an
 * unterminated string, as in the spec. NULL if unclosed. */
static const char *lex_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\n' || *p == '\r')
            return NULL;
        if (*p == '"')
            return p + 1;
        if (*p == '\\') {
            if (end - p < 2 || p[1] == '\n' || p[1] == '\r')
                return NULL;
            p++;
        }
    }
    return NULL;
}

tc_status tc__gql_lex(const char **pp, const char *end, tc_gql_token *tok)
{
    const char *p = skip_ignored(*pp, end);
    const char *e;
    tc_gql_kind kind;
    if (p == end) {
        kind = TC_GQL_EOF;
        e = p;
    } else if (is_punct((unsigned char)*p)) {
        kind = TC_GQL_PUNCT;
        e = p + 1;
    } else if (has3(p, end, '.', '.', '.')) {
        kind = TC_GQL_SPREAD;
        e = p + 3;
    } else if (has3(p, end, '"', '"', '"')) {
        kind = TC_GQL_BLOCK;
        e = lex_block(p, end);
    } else if (*p == '"') {
        kind = TC_GQL_STRING;
        e = lex_string(p, end);
    } else if (is_name_start((unsigned char)*p)) {
        kind = TC_GQL_NAME;
        for (e = p + 1; e < end && is_name_continue((unsigned char)*e);)
            e++;
    } else if (is_digit((unsigned char)*p) ||
               (*p == '-' && end - p >= 2 && is_digit((unsigned char)p[1]))) {
        kind = TC_GQL_NUMBER;
        e = lex_number(p, end);
    } else {
        kind = TC_GQL_OTHER;
        e = p + 1;
    }
    if (!e)
        return TC_ERR_ARG;
    tok->kind = kind;
    tok->start = p;
    tok->len = (size_t)(e - p);
    *pp = e;
    return TC_OK;
}

/* ------------------------------------------------------------------ normalisation */

size_t tc__gql_normalize_bound(size_t len)
{
    return len > SIZE_MAX / 2 ? SIZE_MAX : 2 * len;
}

/* Why this separation is enough (the fuzz target checks it): a punctuator is one byte that
 * no other token absorbs or starts, so it needs no space on either side. "..." needs one
 * after a non-punctuator, or a preceding lone '.' would join it (". ..." is not "... ."),
 * but none after: "...." lexes as "..." then ".". Between two non-punctuators the space
 * keeps names and numbers apart ("a b", "1 e5", "1 . 5", "- 1"), two strings apart
 * ("" "x" is not the block string """x"), and lone bytes apart (". ." is not part of a
 * spread, and the three bytes of a byte order mark are not one ignored token). */
tc_status tc__gql_normalize(const char *doc, size_t len, char *out, size_t *out_len)
{
    const char *p = doc, *end = doc + len;
    size_t n = 0;
    bool prev_word = false; /* the previous token was not a punctuator */
    for (;;) {
        tc_gql_token t;
        tc_status st = tc__gql_lex(&p, end, &t);
        if (st != TC_OK)
            return st;
        if (t.kind == TC_GQL_EOF)
            break;
        bool word = t.kind != TC_GQL_PUNCT && t.kind != TC_GQL_SPREAD;
        if (prev_word && (word || t.kind == TC_GQL_SPREAD))
            out[n++] = ' ';
        memcpy(out + n, t.start, t.len);
        n += t.len;
        prev_word = word;
    }
    *out_len = n;
    return TC_OK;
}

/* ------------------------------------------------------------------ tc_gql_key */

static unsigned char *put_len(unsigned char *p, size_t len)
{
    uint64_t v = (uint64_t)len;
    for (int i = 0; i < 8; i++, v >>= 8)
        *p++ = (unsigned char)(v & 0xff);
    return p;
}

static unsigned char *put_field(unsigned char *p, const void *data, size_t len)
{
    p = put_len(p, len);
    if (len)
        memcpy(p, data, len);
    return p + len;
}

/* Adds b to *total unless that overflows. */
static bool add_size(size_t *total, size_t b)
{
    if (b > SIZE_MAX - *total)
        return false;
    *total += b;
    return true;
}

/* Parses the variables into *out. Duplicate member names are rejected: which one a server
 * keeps differs between JSON parsers, so no key should stand for both readings. */
static tc_status vars_parse(const char *json, json_t **out)
{
    json_error_t err;
    *out = json_loads(json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (*out)
        return TC_OK;
#if JANSSON_VERSION_HEX >= 0x020b00 /* json_error_code: jansson 2.11 */
    if (json_error_code(&err) == json_error_out_of_memory)
        return TC_ERR_NOMEM;
#endif
    return TC_ERR_ARG;
}

#define VARS_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY)

static tc_status gql_digest(const char *scope, size_t scope_len, const char *document,
                            const char *operation_name, const char *variables_json,
                            XXH128_hash_t *out)
{
    json_t *vars = NULL;
    size_t vars_len = 0;
    if (variables_json) {
        tc_status st = vars_parse(variables_json, &vars);
        if (st != TC_OK)
            return st;
        vars_len = json_dumpb(vars, NULL, 0, VARS_FLAGS);
        if (vars_len == 0) { /* never 0 for a value; jansson failed to allocate */
            json_decref(vars);
            return TC_ERR_NOMEM;
        }
    }
    size_t doc_len = strlen(document);
    size_t op_len = operation_name ? strlen(operation_name) : 0;
    size_t total = DIGEST_TAG_LEN + 8 + scope_len + 8 + 1 + 1;
    bool fits = add_size(&total, tc__gql_normalize_bound(doc_len)) &&
                (!operation_name || add_size(&total, 8 + op_len)) &&
                (!vars || add_size(&total, 8 + vars_len));
    unsigned char *buf = fits ? tc__malloc(total) : NULL;
    if (!buf) {
        json_decref(vars);
        return TC_ERR_NOMEM;
    }
    unsigned char *p = buf;
    /* The digest's input is length-framed bytes, not a string: the tag goes in without its
     * NUL. */
    memcpy(p, DIGEST_TAG, DIGEST_TAG_LEN); /* NOLINT(bugprone-not-null-terminated-result) */
    p = put_field(p + DIGEST_TAG_LEN, scope, scope_len);
    size_t norm_len = 0;
    tc_status st = tc__gql_normalize(document, doc_len, (char *)p + 8, &norm_len);
    if (st == TC_OK) {
        p = put_len(p, norm_len) + norm_len;
        *p++ = operation_name ? 1 : 0;
        if (operation_name)
            p = put_field(p, operation_name, op_len);
        *p++ = vars ? 1 : 0;
        if (vars) {
            p = put_len(p, vars_len);
            if (json_dumpb(vars, (char *)p, vars_len, VARS_FLAGS) != vars_len)
                st = TC_ERR_NOMEM;
            p += vars_len;
        }
    }
    if (st == TC_OK)
        *out = XXH3_128bits(buf, (size_t)(p - buf));
    tc__free(buf);
    json_decref(vars);
    return st;
}

TC_API tc_status tc_gql_key(const char *scope, const char *document, const char *operation_name,
                            const char *variables_json, char *buf, size_t cap)
{
    if (buf && cap > 0)
        buf[0] = '\0';
    size_t scope_len = 0;
    if (!buf || !document || !tc__key_valid(scope, SIZE_MAX - 64, &scope_len))
        return TC_ERR_ARG;
    size_t key_len = KEY_PREFIX_LEN + scope_len + 1 + DIGEST_HEX;
    if (cap < key_len + 1)
        return TC_ERR_ARG;
    XXH128_hash_t h;
    tc_status st = gql_digest(scope, scope_len, document, operation_name, variables_json, &h);
    if (st != TC_OK)
        return st;
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, h);
    static const char digits[] = "0123456789abcdef";
    char *p = buf;
    memcpy(p, KEY_PREFIX, KEY_PREFIX_LEN);
    p += KEY_PREFIX_LEN;
    memcpy(p, scope, scope_len);
    p += scope_len;
    *p++ = ':';
    for (size_t i = 0; i < sizeof canon.digest; i++) {
        *p++ = digits[canon.digest[i] >> 4];
        *p++ = digits[canon.digest[i] & 0xf];
    }
    *p = '\0';
    return TC_OK;
}

/* ------------------------------------------------------------------ tc_cache_control */

TC_API tc_status tc_cache_control(int remaining_ttl_ms, const char *scope, char *buf, size_t cap)
{
    if (buf && cap > 0)
        buf[0] = '\0';
    if (!buf || !scope)
        return TC_ERR_ARG;
    int seconds = remaining_ttl_ms > 0 ? remaining_ttl_ms / 1000 : 0;
    const char *kind = strcmp(scope, "public") == 0 ? "public" : "private";
    int n = snprintf(buf, cap, "%s, max-age=%d", kind, seconds);
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return TC_ERR_ARG;
    }
    return TC_OK;
}
