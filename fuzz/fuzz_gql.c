/*
 * libFuzzer target for tc_gql_key and the GraphQL lexer behind it (queries come from
 * clients: every byte is attacker-controlled).
 *
 * Input layout: byte 0 picks the operation name (bits 0-1: absent, "", "Q", "GetUser"), the
 * scope (bit 2: "public" or "user:42") and how many bytes to take off the exact buffer size
 * (bits 4-7: 0 is the exact size); the rest is the document up to the first NUL, then the
 * variables JSON up to the next NUL (absent if there is no NUL).
 *
 * Checks, each an abort when broken:
 *   - lexing the normalised document gives the same tokens (kind and bytes) as lexing the
 *     document, so normalisation is injective on token sequences; normalising is idempotent;
 *   - the key is TC_ERR_ARG exactly when the document does not lex or the JSON is invalid,
 *     and otherwise a valid key "gql:<scope>:<32 hex>";
 *   - the same key for the normalised document, for the tokens re-joined with ignored
 *     characters between every two, and for the variables re-dumped indented with every
 *     object's members in reverse order;
 *   - a buffer 1 to 15 bytes short of the key is TC_ERR_ARG with buf set to "".
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gql.h"
#include "key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const op_names[4] = {NULL, "", "Q", "GetUser"};
static const char *const scopes[2] = {"public", "user:42"};

/* Lexes the whole of [doc, doc + len) into a new array; NULL and *n = 0 if it does not lex
 * (an empty document lexes to an array of zero tokens, returned non-NULL). */
static tc_gql_token *lex_all(const char *doc, size_t len, size_t *n)
{
    size_t cap = 16, count = 0;
    tc_gql_token *toks = malloc(cap * sizeof *toks);
    const char *p = doc, *end = doc + len;
    for (;;) {
        if (!toks)
            abort();
        if (count == cap) {
            cap *= 2;
            tc_gql_token *grown = realloc(toks, cap * sizeof *toks);
            if (!grown)
                abort();
            toks = grown;
        }
        if (tc__gql_lex(&p, end, &toks[count]) != TC_OK) {
            free(toks);
            *n = 0;
            return NULL;
        }
        if (toks[count].kind == TC_GQL_EOF)
            break;
        if (toks[count].len == 0 || p > end)
            abort();
        count++;
    }
    *n = count;
    return toks;
}

static char *normalize(const char *doc, size_t len, size_t *out_len)
{
    char *out = malloc(tc__gql_normalize_bound(len) + 1);
    if (!out)
        abort();
    if (tc__gql_normalize(doc, len, out, out_len) != TC_OK) {
        free(out);
        return NULL;
    }
    if (*out_len > tc__gql_normalize_bound(len))
        abort();
    out[*out_len] = '\0';
    return out;
}

/* A deep copy of v with the members of every object inserted in reverse order. */
static json_t *reversed(json_t *v)
{
    if (json_is_array(v)) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < json_array_size(v); i++)
            json_array_append_new(a, reversed(json_array_get(v, i)));
        return a;
    }
    if (!json_is_object(v))
        return json_incref(v);
    size_t n = json_object_size(v), i = 0;
    const char **names = malloc((n + 1) * sizeof *names);
    json_t *o = json_object();
    if (!names || !o)
        abort();
    for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it))
        names[i++] = json_object_iter_key(it);
    while (i-- > 0)
        json_object_set_new(o, names[i], reversed(json_object_get(v, names[i])));
    free(names);
    return o;
}

static void key_or_abort(const char *scope, const char *doc, const char *op, const char *vars,
                         char *buf, size_t cap)
{
    if (tc_gql_key(scope, doc, op, vars, buf, cap) != TC_OK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *op = op_names[data[0] & 3];
    const char *scope = scopes[(data[0] >> 2) & 1];
    size_t shrink = data[0] >> 4;
    char *in = malloc(size);
    if (!in)
        abort();
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';
    const char *doc = in;
    size_t doc_len = strlen(doc);
    const char *vars = doc_len + 1 < size ? in + doc_len + 1 : NULL;

    size_t ntok = 0, nnorm = 0, norm_len = 0, renorm_len = 0;
    tc_gql_token *toks = lex_all(doc, doc_len, &ntok);
    char *norm = normalize(doc, doc_len, &norm_len);
    if (!toks != !norm)
        abort();
    if (norm) {
        tc_gql_token *again = lex_all(norm, norm_len, &nnorm);
        if (!again || nnorm != ntok)
            abort();
        for (size_t i = 0; i < ntok; i++)
            if (again[i].kind != toks[i].kind || again[i].len != toks[i].len ||
                memcmp(again[i].start, toks[i].start, toks[i].len) != 0)
                abort();
        free(again);
        char *renorm = normalize(norm, norm_len, &renorm_len);
        if (!renorm || renorm_len != norm_len || memcmp(renorm, norm, norm_len) != 0)
            abort();
        free(renorm);
    }

    json_t *json = vars
                       ? json_loads(vars, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
                                    NULL)
                       : NULL;
    bool want_ok = norm && (!vars || json);
    size_t need = 4 + strlen(scope) + 1 + 32 + 1;
    char *buf = malloc(need);
    if (!buf)
        abort();
    tc_status st = tc_gql_key(scope, doc, op, vars, buf, need);
    if (!want_ok) {
        if (st != TC_ERR_ARG || buf[0] != '\0')
            abort();
        goto done;
    }
    if (st != TC_OK || strlen(buf) != need - 1 || !tc__key_valid(buf, SIZE_MAX, NULL) ||
        memcmp(buf, "gql:", 4) != 0 || memcmp(buf + 4, scope, strlen(scope)) != 0 ||
        buf[4 + strlen(scope)] != ':')
        abort();
    for (const char *h = buf + need - 33; *h; h++)
        if (!((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f')))
            abort();

    char *other = malloc(need);
    if (!other)
        abort();
    key_or_abort(scope, norm, op, vars, other, need);
    if (strcmp(other, buf) != 0)
        abort();

    /* The tokens again, with ignored characters between every two. */
    size_t spaced_cap = doc_len + 8 * (ntok + 1) + 1, sp = 0;
    char *spaced = malloc(spaced_cap);
    if (!spaced)
        abort();
    static const char *const seps[] = {" ", ",", "\t", "\r\n", "#c\n", "\xEF\xBB\xBF", "\n"};
    for (size_t i = 0; i < ntok; i++) {
        const char *sep = seps[i % (sizeof seps / sizeof seps[0])];
        memcpy(spaced + sp, sep, strlen(sep));
        sp += strlen(sep);
        memcpy(spaced + sp, toks[i].start, toks[i].len);
        sp += toks[i].len;
    }
    spaced[sp] = '\0';
    key_or_abort(scope, spaced, op, vars, other, need);
    if (strcmp(other, buf) != 0)
        abort();
    free(spaced);

    if (json) {
        json_t *rev = reversed(json);
        char *redump = rev ? json_dumps(rev, JSON_INDENT(1) | JSON_ENCODE_ANY) : NULL;
        json_decref(rev);
        if (redump) {
            key_or_abort(scope, doc, op, redump, other, need);
            if (strcmp(other, buf) != 0)
                abort();
            free(redump);
        }
    }

    if (shrink > 0) {
        char *small = malloc(need - shrink);
        if (!small)
            abort();
        if (tc_gql_key(scope, doc, op, vars, small, need - shrink) != TC_ERR_ARG || small[0])
            abort();
        free(small);
    }
    free(other);
done:
    free(buf);
    json_decref(json);
    free(norm);
    free(toks);
    free(in);
    return 0;
}
