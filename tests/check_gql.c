/* Response caching helpers: tc_gql_key (document normalisation, canonical variables, the key
 * format and its errors) and tc_cache_control. No Redis needed. */
#include "config.h"

#include <limits.h>
#include <string.h>

#include "gql.h"
#include "key.h"
#include "testutil.h"

#define KEYCAP 256

/* The key for (scope, doc, op, vars), asserting success. */
static void key_of(const char *scope, const char *doc, const char *op, const char *vars,
                   char out[KEYCAP])
{
    tc_status st = tc_gql_key(scope, doc, op, vars, out, KEYCAP);
    ck_assert_msg(st == TC_OK, "tc_gql_key(%s, <%s>, %s, %s) = %d", scope, doc, op ? op : "NULL",
                  vars ? vars : "NULL", st);
}

static void same_docs(const char *a, const char *b)
{
    char ka[KEYCAP], kb[KEYCAP];
    key_of("public", a, NULL, NULL, ka);
    key_of("public", b, NULL, NULL, kb);
    ck_assert_msg(strcmp(ka, kb) == 0, "<%s> and <%s> should share a key", a, b);
}

static void different_docs(const char *a, const char *b)
{
    char ka[KEYCAP], kb[KEYCAP];
    key_of("public", a, NULL, NULL, ka);
    key_of("public", b, NULL, NULL, kb);
    ck_assert_msg(strcmp(ka, kb) != 0, "<%s> and <%s> should not share a key", a, b);
}

static void same_vars(const char *a, const char *b)
{
    char ka[KEYCAP], kb[KEYCAP];
    key_of("public", "query Q($a:Int){f(a:$a)}", "Q", a, ka);
    key_of("public", "query Q($a:Int){f(a:$a)}", "Q", b, kb);
    ck_assert_msg(strcmp(ka, kb) == 0, "variables %s and %s should share a key", a, b);
}

static void different_vars(const char *a, const char *b)
{
    char ka[KEYCAP], kb[KEYCAP];
    key_of("public", "query Q($a:Int){f(a:$a)}", "Q", a, ka);
    key_of("public", "query Q($a:Int){f(a:$a)}", "Q", b, kb);
    ck_assert_msg(strcmp(ka, kb) != 0, "variables %s and %s should not share a key", a ? a : "NULL",
                  b ? b : "NULL");
}

/* The normalised form of doc, asserting success. */
static void expect_normalized(const char *doc, const char *want)
{
    size_t len = strlen(doc), n = 0;
    char out[1024];
    ck_assert_uint_le(tc__gql_normalize_bound(len), sizeof out);
    ck_assert_int_eq(tc__gql_normalize(doc, len, out, &n), TC_OK);
    ck_assert_msg(n == strlen(want) && memcmp(out, want, n) == 0,
                  "<%s> normalised to <%.*s>, want <%s>", doc, (int)n, out, want);
}

static void expect_arg_error(const char *scope, const char *doc, const char *op, const char *vars,
                             size_t cap)
{
    char buf[KEYCAP];
    memset(buf, 'x', sizeof buf);
    ck_assert_msg(tc_gql_key(scope, doc, op, vars, buf, cap) == TC_ERR_ARG,
                  "want TC_ERR_ARG for scope %s doc <%s> vars %s cap %zu", scope ? scope : "NULL",
                  doc ? doc : "NULL", vars ? vars : "NULL", cap);
    if (cap > 0)
        ck_assert_msg(buf[0] == '\0', "buf not cleared on error");
}

/* ------------------------------------------------------------------ key format */

START_TEST(test_gql_key_format)
{
    char k[KEYCAP];
    key_of("public", "{ me { id } }", NULL, NULL, k);
    ck_assert_uint_eq(strlen(k), strlen("gql:public:") + 32);
    ck_assert(strncmp(k, "gql:public:", 11) == 0);
    for (const char *h = k + 11; *h; h++)
        ck_assert_msg((*h >= '0' && *h <= '9') || (*h >= 'a' && *h <= 'f'), "not hex: %s", k);
    ck_assert(tc__key_valid(k, 250, NULL));
    char k2[KEYCAP];
    key_of("public", "{ me { id } }", NULL, NULL, k2);
    ck_assert_str_eq(k, k2); /* deterministic */
    key_of("user:42", "{ me { id } }", NULL, NULL, k);
    ck_assert(strncmp(k, "gql:user:42:", 12) == 0);
    ck_assert_uint_eq(strlen(k), strlen("user:42") + 37);
    ck_assert(tc__key_valid(k, 250, NULL));
}
END_TEST

/* Pins the digest: a change here changes every key in every deployed cache, so it must be
 * deliberate (and come with a new format tag in gql.c). */
START_TEST(test_gql_key_golden)
{
    char k[KEYCAP];
    key_of("public", "query Q { a }", "Q", "{\"b\":1,\"a\":[true,null]}", k);
    ck_assert_str_eq(k, "gql:public:eb00724f73251c652e6edf05b9b1a129");
    key_of("public", "{a}", NULL, NULL, k);
    ck_assert_str_eq(k, "gql:public:5b2185839158ccb27350416562561083");
}
END_TEST

/* ------------------------------------------------------------------ what is ignored */

START_TEST(test_gql_ignores_whitespace_commas_comments)
{
    same_docs("{ user(id: 1) { id, name } }", "{user(id:1){id name}}");
    same_docs("{ user(id: 1) { id, name } }",
              "# a comment\n{\r\n\tuser( id : 1 ,) {\n id\n,,, name # trailing\n}\r}");
    same_docs("{a}", "\xEF\xBB\xBF{a}"); /* byte order mark */
    same_docs("{a b}", "{a\xEF\xBB\xBF"
                       "b}"); /* a BOM separates tokens too */
    same_docs("{a}", "{a}# no newline at the end");
    same_docs("{a b}", "{a#x\rb}"); /* CR ends a comment */
    same_docs("query { a }", "query{a}");
    same_docs("{ ...F } fragment F on T { a }", "{...F}fragment F on T{a}");
    same_docs("", " \t\n,#only ignored\n");
}
END_TEST

START_TEST(test_gql_normalized_form)
{
    expect_normalized("{ a, b }", "{a b}");
    expect_normalized("query Q($id: ID!) { u(id: $id) { n } }", "query Q($id:ID!){u(id:$id){n}}");
    expect_normalized("{ a ...F ... on T { b } }", "{a ...F ...on T{b}}");
    expect_normalized("{ f(x: -1, y: 1.5e+3, z: \"s\", w: [1, 2]) }",
                      "{f(x:-1 y:1.5e+3 z:\"s\" w:[1 2])}");
    expect_normalized("\"\" \"x\"", "\"\" \"x\""); /* not the block string """x" */
    expect_normalized("... .", "....");
    expect_normalized(". ...", ". ...");
    expect_normalized("...   ...", "......");
    expect_normalized("1 .5", "1 . 5");
    expect_normalized("- 1", "- 1");
    expect_normalized("1e", "1 e"); /* not an exponent: a number, then a name */
    expect_normalized("", "");
}
END_TEST

/* ------------------------------------------------------------------ what is kept */

START_TEST(test_gql_token_boundaries)
{
    different_docs("{a b}", "{ab}");
    different_docs("{a 1}", "{a1}");
    different_docs("{f(x: 1 2)}", "{f(x: 12)}");
    different_docs("{f(x: 1 .5)}", "{f(x: 1.5)}");
    different_docs("{f(x: - 1)}", "{f(x: -1)}");
    different_docs("{f(x: 1 e5)}", "{f(x: 1e5)}");
    different_docs("{... .}", "{. ...}");
    different_docs("{. . .}", "{...}");
    different_docs("{.. .}", "{...}");
    different_docs("{\"\" \"x\" \"\"}", "{\"\"\"x\"\"\"}");
    different_docs("{\xEF \xBB \xBF a}", "{a}"); /* separated bytes are not a BOM */
    different_docs("{a b}", "{b a}");            /* order is significant */
    different_docs("{f(x: 1)}", "{f(x: 1.0)}");  /* values are not parsed */
    same_docs("{. .}", "{..}");                  /* lone bytes: one token each */
}
END_TEST

START_TEST(test_gql_string_contents)
{
    different_docs("{f(s: \"a b\")}", "{f(s: \"a  b\")}");
    different_docs("{f(s: \"a b\")}", "{f(s: \"ab\")}");
    different_docs("{f(s: \"a,b\")}", "{f(s: \"ab\")}");
    different_docs("{f(s: \"a#b\")}", "{f(s: \"a\")}");
    different_docs("{f(s: \"\\u0041\")}", "{f(s: \"A\")}"); /* escapes are not decoded */
    different_docs("{f(s: \"\\\"\")}", "{f(s: \"\\\\\")}");
    different_docs("{f(s: \"\"\"a\n  b\"\"\")}", "{f(s: \"\"\"a\nb\"\"\")}");
    different_docs("{f(s: \"\"\" a \"\"\")}", "{f(s: \"\"\"a\"\"\")}");
    different_docs("{f(s: \"\"\"x \\\"\"\" y\"\"\")}", "{f(s: \"\"\"x \\\"\"\"y\"\"\")}");
    /* A '#' in a string starts no comment: the rest of the line is still there. */
    expect_normalized("{ f(s: \"#not a comment\", t: 1) }", "{f(s:\"#not a comment\" t:1)}");
    expect_normalized("{ f(s: \"\"\"# x,\n  y \\\"\"\" z\"\"\") }",
                      "{f(s:\"\"\"# x,\n  y \\\"\"\" z\"\"\")}");
    /* Escaped quotes do not end strings. */
    expect_normalized("{ f(s: \"a\\\" , b\") }", "{f(s:\"a\\\" , b\")}");
    /* Bytes of any value inside strings are kept. */
    expect_normalized("{ f(s: \"caf\xc3\xa9\t\") }", "{f(s:\"caf\xc3\xa9\t\")}");
    same_docs("{f(s: \"a b\")}", "{ f ( s : \"a b\" ) }");
}
END_TEST

/* ------------------------------------------------------------------ the other inputs */

START_TEST(test_gql_json_member_order)
{
    same_vars("{\"a\":1,\"b\":2}", "{\"b\":2,\"a\":1}");
    same_vars("{\"a\":1,\"b\":2}", " {\n  \"b\" : 2 ,\n  \"a\" : 1\n}\n");
    same_vars("{\"o\":{\"x\":[{\"q\":1,\"p\":2}],\"y\":null},\"n\":\"s\"}",
              "{\"n\":\"s\",\"o\":{\"y\":null,\"x\":[{\"p\":2,\"q\":1}]}}");
    same_vars("{\"s\":\"\\u00e9\\/\"}", "{\"s\":\"\xc3\xa9/\"}"); /* escapes decoded */
    same_vars("{\"n\":1e2}", "{\"n\":100.0}");
    different_vars("{\"a\":[1,2]}", "{\"a\":[2,1]}"); /* arrays keep their order */
}
END_TEST

START_TEST(test_gql_variable_values)
{
    different_vars("{\"a\":1}", "{\"a\":2}");
    different_vars("{\"a\":1}", "{\"a\":\"1\"}");
    different_vars("{\"a\":1}", "{\"a\":1.0}");
    different_vars("{\"a\":\"x\"}", "{\"a\":\"x \"}");
    different_vars("{\"a\":1}", "{\"b\":1}");
    different_vars("{\"a\":{\"b\":1}}", "{\"a\":{\"b\":2}}");
    different_vars(NULL, "{}"); /* absent is not empty */
    different_vars(NULL, "null");
    different_vars("{}", "[]");
    different_vars("{\"a\":null}", "{}");
}
END_TEST

START_TEST(test_gql_scope_and_operation)
{
    const char *doc = "query A { a } query B { b }";
    char k1[KEYCAP], k2[KEYCAP];
    key_of("public", doc, "A", NULL, k1);
    key_of("user:42", doc, "A", NULL, k2);
    ck_assert_str_ne(k1 + 11, k2 + 12); /* the digest differs, not only the visible scope */
    key_of("public", doc, "B", NULL, k2);
    ck_assert_str_ne(k1, k2);
    key_of("public", doc, NULL, NULL, k1);
    key_of("public", doc, "", NULL, k2);
    ck_assert_str_ne(k1, k2); /* absent is not "" */
    /* The fields are length-prefixed: moving bytes between them changes the key. */
    key_of("public", "{a}", "b", NULL, k1);
    key_of("public", "{a}b", "", NULL, k2);
    ck_assert_str_ne(k1, k2);
    key_of("ab", "{a}", NULL, NULL, k1);
    key_of("a", "b{a}", NULL, NULL, k2);
    ck_assert_str_ne(k1 + 7, k2 + 6);
}
END_TEST

/* ------------------------------------------------------------------ errors */

START_TEST(test_gql_rejects_bad_arguments)
{
    expect_arg_error(NULL, "{a}", NULL, NULL, KEYCAP);
    expect_arg_error("public", NULL, NULL, NULL, KEYCAP);
    ck_assert_int_eq(tc_gql_key("public", "{a}", NULL, NULL, NULL, KEYCAP), TC_ERR_ARG);
    expect_arg_error("", "{a}", NULL, NULL, KEYCAP);
    expect_arg_error("user 42", "{a}", NULL, NULL, KEYCAP);
    expect_arg_error("user\n", "{a}", NULL, NULL, KEYCAP);
    expect_arg_error("del\x7f", "{a}", NULL, NULL, KEYCAP);
}
END_TEST

START_TEST(test_gql_rejects_invalid_json)
{
    const char *bad[] = {"",
                         "{",
                         "{\"a\":}",
                         "{a:1}",
                         "[1,]",
                         "{\"a\":1,}",
                         "{\"a\":1} x",
                         "'a'",
                         "\"\xff\"",
                         "\"\\ud800\"",
                         "{\"a\":1,\"a\":2}",
                         "9223372036854775808",
                         "1e400",
                         "{\"a\\u0000\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_arg_error("public", "{a}", NULL, bad[i], KEYCAP);
    static char deep[2 * 2100 + 1]; /* nested deeper than jansson's 2048 */
    memset(deep, '[', 2100);
    memset(deep + 2100, ']', 2100);
    expect_arg_error("public", "{a}", NULL, deep, KEYCAP);
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    deep[4000] = '\0';
    char k[KEYCAP];
    key_of("public", "{a}", NULL, deep, k);                  /* 2000 levels: fine */
    key_of("public", "{a}", NULL, "{\"a\":\"\\u0000\"}", k); /* NUL in a value is fine */
}
END_TEST

START_TEST(test_gql_rejects_unterminated_strings)
{
    const char *bad[] = {"{f(s: \"abc)}",
                         "{f(s: \"abc\\\")}",
                         "{f(s: \"a\nb\")}",
                         "{f(s: \"a\rb\")}",
                         "{f(s: \"a\\",
                         "\"",
                         "{f(s: \"\"\"abc)}",
                         "{f(s: \"\"\"a\\\"\"\")}",
                         "\"\"\"",
                         "\"\"\"\"",
                         "{f(s: \"\"\"x\"\"\"\")}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_arg_error("public", bad[i], NULL, NULL, KEYCAP);
    /* Closed ones, for contrast: a block string may span lines; an empty string. */
    char k[KEYCAP];
    key_of("public", "{f(s: \"\"\"a\nb\"\"\")}", NULL, NULL, k);
    key_of("public", "{f(s: \"\", t: \"\"\"\"\"\")}", NULL, NULL, k);
}
END_TEST

START_TEST(test_gql_rejects_small_buffer)
{
    char buf[64];
    size_t need = strlen("gql:public:") + 32 + 1;
    ck_assert_int_eq(tc_gql_key("public", "{a}", NULL, NULL, buf, need), TC_OK);
    ck_assert_uint_eq(strlen(buf), need - 1);
    expect_arg_error("public", "{a}", NULL, NULL, need - 1);
    expect_arg_error("public", "{a}", NULL, NULL, 1);
    expect_arg_error("public", "{a}", NULL, NULL, 0);
}
END_TEST

#ifdef TC_ALLOC_FAIL
START_TEST(test_gql_alloc_fail)
{
    /* Failing each of our allocations in turn (jansson's are its own) is TC_ERR_NOMEM with
     * buf cleared, and leaks nothing (LeakSanitizer). */
    const char *doc = "query Q($a: Int) { f(a: $a) }", *vars = "{\"a\": 1}";
    char k[KEYCAP];
    tc__alloc_fail_at(0);
    key_of("public", doc, "Q", vars, k);
    uint64_t total = tc__alloc_fail_at(0);
    ck_assert_uint_ge(total, 1);
    for (uint64_t nth = 1; nth <= total; nth++) {
        tc__alloc_fail_at(nth);
        tc_status st = tc_gql_key("public", doc, "Q", vars, k, sizeof k);
        tc__alloc_fail_at(0);
        ck_assert_int_eq(st, TC_ERR_NOMEM);
        ck_assert_str_eq(k, "");
    }
}
END_TEST
#endif

/* ------------------------------------------------------------------ realistic queries */

/* Each written as a client would send it, and as it normalises. */
static const struct {
    const char *doc, *normalized;
} realistic[] = {
    {"query GetUser($id: ID!, $withFriends: Boolean = false) {\n"
     "  user(id: $id) {\n"
     "    id\n"
     "    name\n"
     "    friends(first: 10) @include(if: $withFriends) {\n"
     "      edges { node { id name } }\n"
     "    }\n"
     "  }\n"
     "}\n",
     "query GetUser($id:ID!$withFriends:Boolean=false){user(id:$id){id name friends(first:10)"
     "@include(if:$withFriends){edges{node{id name}}}}}"},
    {"# Fetch a hero with fragments\r\n"
     "query HeroForEpisode($ep: Episode!) {\r\n"
     "  hero(episode: $ep) {\r\n"
     "    name\r\n"
     "    ...HeroDetails\r\n"
     "    ... on Droid { primaryFunction }\r\n"
     "  }\r\n"
     "}\r\n"
     "fragment HeroDetails on Character { name, appearsIn }\r\n",
     "query HeroForEpisode($ep:Episode!){hero(episode:$ep){name ...HeroDetails ...on Droid"
     "{primaryFunction}}}fragment HeroDetails on Character{name appearsIn}"},
    {"mutation AddReview($review: ReviewInput!) {\n"
     "  createReview(episode: JEDI, review: $review, note: \"\"\"\n"
     "    Multi-line, with # and \"quotes\" \\\"\"\" end\n"
     "  \"\"\") {\n"
     "    stars\n"
     "    commentary\n"
     "  }\n"
     "}",
     "mutation AddReview($review:ReviewInput!){createReview(episode:JEDI review:$review note:"
     "\"\"\"\n    Multi-line, with # and \"quotes\" \\\"\"\" end\n  \"\"\"){stars commentary}}"},
    {"{\n\tsearch(text: \"an\", first: -5, ratio: 1.5e-3, tags: [\"a\", \"b\"]) {\n"
     "\t\t__typename\n\t\t... on Human { height(unit: FOOT) }\n\t}\n}",
     "{search(text:\"an\" first:-5 ratio:1.5e-3 tags:[\"a\" \"b\"]){__typename ...on Human"
     "{height(unit:FOOT)}}}"},
    {"subscription OnComment($repo: String! = \"x/y\", $opts: Opts = {limit: 10, sort: DESC}) "
     "{\n  commentAdded(repoFullName: $repo) { id content }\n}",
     "subscription OnComment($repo:String!=\"x/y\"$opts:Opts={limit:10 sort:DESC})"
     "{commentAdded(repoFullName:$repo){id content}}"},
    {"query Feed($after: String) @cached(ttl: 60) {\n"
     "  feed(after: $after) { items { ... on Post { id title } ... on Ad { id url } } }\n"
     "}",
     "query Feed($after:String)@cached(ttl:60){feed(after:$after){items{...on Post{id title}"
     "...on Ad{id url}}}}"},
};

START_TEST(test_gql_realistic_queries)
{
    for (size_t i = 0; i < sizeof realistic / sizeof realistic[0]; i++) {
        expect_normalized(realistic[i].doc, realistic[i].normalized);
        expect_normalized(realistic[i].normalized, realistic[i].normalized); /* a fixpoint */
        same_docs(realistic[i].doc, realistic[i].normalized);
        for (size_t j = 0; j < i; j++)
            different_docs(realistic[i].doc, realistic[j].doc);
    }
    /* A typical request, as two clients might send it. */
    char k1[KEYCAP], k2[KEYCAP];
    key_of("user:42", realistic[0].doc, "GetUser", "{\"id\": \"u1\", \"withFriends\": true}", k1);
    key_of("user:42", realistic[0].normalized, "GetUser", "{\"withFriends\":true,\"id\":\"u1\"}",
           k2);
    ck_assert_str_eq(k1, k2);
    key_of("user:42", realistic[0].normalized, "GetUser", "{\"withFriends\":false,\"id\":\"u1\"}",
           k2);
    ck_assert_str_ne(k1, k2);
}
END_TEST

/* ------------------------------------------------------------------ tc_cache_control */

START_TEST(test_gql_cache_control_outputs)
{
    char buf[64];
    ck_assert_int_eq(tc_cache_control(90500, "public", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "public, max-age=90");
    ck_assert_int_eq(tc_cache_control(90500, "user:42", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "private, max-age=90");
    ck_assert_int_eq(tc_cache_control(999, "public", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "public, max-age=0"); /* rounded down */
    ck_assert_int_eq(tc_cache_control(1000, "public", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "public, max-age=1");
    ck_assert_int_eq(tc_cache_control(-5, "public", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "public, max-age=0");
    ck_assert_int_eq(tc_cache_control(TC_TTL_FOREVER, "u", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "private, max-age=0");
    ck_assert_int_eq(tc_cache_control(60000, "Public", buf, sizeof buf), TC_OK);
    ck_assert_str_eq(buf, "private, max-age=60"); /* only "public" exactly is public */
    char exact[25];
    ck_assert_int_eq(tc_cache_control(INT_MAX, "user", exact, sizeof exact), TC_OK);
    ck_assert_str_eq(exact, "private, max-age=2147483");
}
END_TEST

START_TEST(test_gql_cache_control_rejects)
{
    char buf[64];
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(tc_cache_control(INT_MAX, "user", buf, 24), TC_ERR_ARG);
    ck_assert_str_eq(buf, "");
    memset(buf, 'x', sizeof buf);
    ck_assert_int_eq(tc_cache_control(1000, NULL, buf, sizeof buf), TC_ERR_ARG);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(tc_cache_control(1000, "public", NULL, 64), TC_ERR_ARG);
    buf[0] = 'x';
    ck_assert_int_eq(tc_cache_control(1000, "public", buf, 0), TC_ERR_ARG);
    ck_assert_int_eq(buf[0], 'x'); /* cap 0: nothing written */
}
END_TEST

static Suite *gql_suite(void)
{
    Suite *s = suite_create("gql");
    struct {
        const char *name;
        const TTest *tests[4];
    } groups[] = {
        {"key_format", {test_gql_key_format, test_gql_key_golden}},
        {"ignored", {test_gql_ignores_whitespace_commas_comments}},
        {"normalized_form", {test_gql_normalized_form}},
        {"token_boundaries", {test_gql_token_boundaries}},
        {"string_contents", {test_gql_string_contents}},
        {"json_member_order", {test_gql_json_member_order}},
        {"variable_values", {test_gql_variable_values}},
        {"scope_and_operation", {test_gql_scope_and_operation}},
        {"bad_arguments", {test_gql_rejects_bad_arguments}},
        {"invalid_json", {test_gql_rejects_invalid_json}},
        {"unterminated_strings", {test_gql_rejects_unterminated_strings}},
        {"small_buffer", {test_gql_rejects_small_buffer}},
#ifdef TC_ALLOC_FAIL
        {"alloc_fail", {test_gql_alloc_fail}},
#endif
        {"realistic_queries", {test_gql_realistic_queries}},
        {"cache_control", {test_gql_cache_control_outputs, test_gql_cache_control_rejects}},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        TCase *tc = tcase_create(groups[i].name);
        for (size_t j = 0; j < 4 && groups[i].tests[j]; j++)
            tcase_add_test(tc, groups[i].tests[j]);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tct_main(gql_suite(), false);
}
