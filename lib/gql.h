/*
 * Response caching helpers: the GraphQL lexer and document normaliser behind tc_gql_key, and
 * tc_cache_control. Internal prototypes, exposed for the tests and the fuzz target.
 *
 * The lexer follows the lexical grammar of the GraphQL specification (October 2021) but is
 * lenient: a byte that starts no GraphQL token is returned as a one-byte TC_GQL_OTHER token
 * instead of failing, so that every document has a key. The only lexical error is a string
 * or block string without its closing quotes.
 *
 * Thread safety: every function here is pure (no state, no allocation); any thread.
 */
#ifndef TC_GQL_H
#define TC_GQL_H

#include "common.h"

typedef enum tc_gql_kind {
    TC_GQL_EOF = 0, /* the end of the document */
    TC_GQL_PUNCT,   /* one of ! $ & ( ) : = @ [ ] { | } */
    TC_GQL_SPREAD,  /* ... */
    TC_GQL_NAME,    /* [_A-Za-z][_0-9A-Za-z]* */
    TC_GQL_NUMBER,  /* IntValue or FloatValue: -?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    TC_GQL_STRING,  /* "...", quotes and escapes included, bytes as written */
    TC_GQL_BLOCK,   /* """...""", quotes and \""" escapes included, bytes as written */
    TC_GQL_OTHER    /* one byte that starts no token above (a lone '.' or '-', a
                       non-ASCII byte outside strings, a control character, ...) */
} tc_gql_kind;

/* A token: start points into the document (borrowed), len bytes. */
typedef struct tc_gql_token {
    tc_gql_kind kind;
    const char *start;
    size_t len;
} tc_gql_token;

/* Skips ignored tokens (spaces, tabs, line terminators, commas, comments, the UTF-8 byte
 * order mark) from *p and lexes the next token of [*p, end) into *tok, advancing *p past it.
 * At the end: TC_OK with kind TC_GQL_EOF. TC_ERR_ARG for a string that is not closed before
 * a line terminator or the end, or a block string not closed before the end (*p is then
 * left unchanged). */
tc_status tc__gql_lex(const char **p, const char *end, tc_gql_token *tok);

/* The most bytes tc__gql_normalize can write for a document of len bytes (2 * len: each
 * token adds at most one separator). SIZE_MAX if that does not fit in a size_t. */
size_t tc__gql_normalize_bound(size_t len);

/* Writes the document's tokens into out, in order, each byte for byte, with one space
 * between two tokens when neither is a punctuator, and before "..." when it follows a
 * non-punctuator; nothing else. Lexing the result gives the same tokens again, so two
 * different token sequences never normalise to the same bytes. out has room for
 * tc__gql_normalize_bound(len) bytes (no NUL is written); *out_len gets the length.
 * TC_ERR_ARG as tc__gql_lex. */
tc_status tc__gql_normalize(const char *doc, size_t len, char *out, size_t *out_len);

#endif /* TC_GQL_H */
