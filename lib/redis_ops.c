/*
 * The operations on one Redis server (see redis_ops.h), each one round trip in its node's
 * operation frame, and the Lua scripts that make add, touch and incr atomic with their
 * invalidation. Owns nothing; no locks of its own.
 */
#include "config.h"

#include "redis_ops.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "slot_tags.h"

/* A macro's value as a string literal, to build a script from format.h's layout. */
#define TC_FMT_STR(x) #x
#define TC_FMT_XSTR(x) TC_FMT_STR(x)

/* SCAN batch hint for clear. */
#define CLEAR_SCAN_COUNT "1000"

static tc_status node_script(tc_node *node, tc_route *rt, const char *source, int argc,
                             const char **argv, const size_t *lens, redisReply **reply)
{
    if (!node || !source || !reply || argc < 1 || !argv || !lens)
        return TC_ERR_ARG;
    *reply = NULL;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    if (st == TC_OK)
        st = tc__node_script(&e, source, argc, argv, lens, reply);
    return tc__node_op_finish(&e, st);
}

static tc_status node_command(tc_node *node, tc_route *rt, int argc, const char **argv,
                              const size_t *lens, redisReply **reply)
{
    if (!node || argc < 1 || !argv || !reply)
        return TC_ERR_ARG;
    *reply = NULL;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    if (st == TC_OK)
        st = tc__ex_send(&e, argc, argv, lens);
    if (st == TC_OK)
        st = tc__ex_recv(&e, 1, reply);
    return tc__node_op_finish(&e, st);
}

/* The scripts. A publication is passed as the last two arguments, when there is one, and
 * happens only if the write did, in the same atomic script. */

/* KEYS[1] key; ARGV[1] value, ARGV[2] TTL in ms ("" none), [ARGV[3] channel, ARGV[4]
 * payload]. 1 stored, 0 present. */
static const char script_add[] = TC_OPS_PUB_LUA
    "local ok\n"
    "if ARGV[2] == '' then ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')\n"
    "else ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) end\n"
    "if not ok then return 0 end\n"
    "if #ARGV >= 4 then tc_pub(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]) end\n"
    "return 1\n";

/* KEYS[1] key; ARGV[1] TTL in ms ("" none: PERSIST), [ARGV[2] channel, ARGV[3] payload].
 * 1 touched, 0 absent. EXISTS decides: PERSIST also answers 0 for a key without a TTL. */
static const char script_touch[] = TC_OPS_PUB_LUA
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "if ARGV[1] == '' then redis.call('PERSIST', KEYS[1])\n"
    "else redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
    "if #ARGV >= 3 then tc_pub(KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) end\n"
    "return 1\n";

/* KEYS[1] key; ARGV[1] delta, ARGV[2] header magic ("" none), [ARGV[3] channel, ARGV[4]
 * payload]. {0} absent, {-1} not an integer (or overflow), {1, new value as a string}: as
 * a string because a Lua number is a double and would round counters above 2^53. A value
 * with a header is rewritten as its plain body first (KEEPTTL); if INCRBY then refuses the
 * body, the original bytes are put back so that a failed incr changes nothing. */
static const char script_incr[] = TC_OPS_PUB_LUA
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return {0} end\n"
    "local orig = v\n"
    "local m = ARGV[2]\n"
    "if #m > 0 and string.sub(v, 1, #m) == m then\n"
    "  local at = " TC_FMT_XSTR(
        TC_FMT_LEN_AT) "\n"
                       "  if #v < at + 2 then return {-1} end\n"
                       "  local hl = string.byte(v, at + 1) + 256 * string.byte(v, at + 2)\n"
                       "  if hl < at + 2 or hl < #m or hl > #v then return {-1} end\n"
                       "  v = string.sub(v, hl + 1)\n"
                       "  redis.call('SET', KEYS[1], v, 'KEEPTTL')\n"
                       "end\n"
                       "local n = redis.pcall('INCRBY', KEYS[1], ARGV[1])\n"
                       "if type(n) == 'table' and n.err then\n"
                       "  if v ~= orig then redis.call('SET', KEYS[1], orig, 'KEEPTTL') end\n"
                       "  return {-1}\n"
                       "end\n"
                       "if #ARGV >= 4 then tc_pub(KEYS[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], "
                       "ARGV[7]) end\n"
                       "return {1, redis.call('GET', KEYS[1])}\n";

/* ------------------------------------------------------------------ operations */

int tc__ops_ttl_arg(int ttl_ms, char buf[16])
{
    if (ttl_ms == TC_TTL_FOREVER)
        return 0;
    if (ttl_ms <= 0)
        return -1;
    return snprintf(buf, 16, "%d", ttl_ms);
}

static bool pub_ok(const tc_pub *pub)
{
    return !pub || (pub->channel && (pub->payload || pub->payload_len == 0));
}

/* Appends a publication's channel and payload to argv at *argc. */
static void pub_args(const tc_pub *pub, const char **argv, size_t *lens, int *argc)
{
    argv[*argc] = pub->channel;
    lens[(*argc)++] = pub->channel_len;
    argv[*argc] = pub->payload ? pub->payload : "";
    lens[(*argc)++] = pub->payload_len;
}

void tc__ops_pub_args(const tc_pub *pub, const char **argv, size_t *lens, int *argc,
                      char splitbuf[24])
{
    pub_args(pub, argv, lens, argc);
    if (!pub->seq_key)
        return;
    argv[*argc] = splitbuf;
    lens[(*argc)++] = (size_t)snprintf(splitbuf, 24, "%zu", pub->seq_split);
    argv[*argc] = pub->seq_gen;
    lens[(*argc)++] = 16;
    argv[*argc] = pub->seq_groups;
    lens[(*argc)++] = pub->seq_groups_len;
}

size_t tc__ops_pub_slot_cap(const tc_pub *pub)
{
    return pub->seq_key_len + TC_SLOT_KEY_EXTRA + 8;
}

void tc__ops_pub_for_slot(const tc_pub *pub, unsigned slot, tc_pub *out, char *buf)
{
    *out = *pub;
    if (!pub->seq_key || !pub->seq_by_slot)
        return;
    out->seq_by_slot = false;
    out->seq_key = buf;
    out->seq_key_len = tc__slot_key(buf, pub->seq_key, pub->seq_key_len, slot);
    char *g = buf + out->seq_key_len;
    out->seq_groups = g;
    out->seq_groups_len = (size_t)snprintf(g, 8, "%u", slot % TC_SLOTS);
}

static const char script_pub[] = TC_OPS_PUB_LUA
    "return tc_pub(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n";

tc_status tc__ops_send_publish(tc_exch *e, const tc_pub *pub)
{
    const char *argv[9] = {"PUBLISH"};
    size_t lens[9] = {7};
    int argc = 1;
    char split[24];
    if (pub->seq_key) {
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = script_pub;
        lens[1] = sizeof script_pub - 1;
        argv[2] = "1";
        lens[2] = 1;
        argv[3] = pub->seq_key;
        lens[3] = pub->seq_key_len;
        argc = 4;
    }
    tc__ops_pub_args(pub, argv, lens, &argc, split);
    return tc__ex_send(e, argc, argv, lens);
}

/* Interprets a GET reply and, when the TTL was asked, a PTTL reply (t: NULL if not). */
static tc_status take_value(tc_node *node, const redisReply *g, const redisReply *t, tc_ref **val,
                            int64_t *pttl_ms)
{
    const redisReply *bad = NULL;
    tc_status st = tc__reply_value(g, t, val, pttl_ms, &bad);
    if (bad)
        return tc__bad_reply(tc__node_log(node), bad, bad == g ? "GET" : "PTTL");
    return st;
}

/* Targeted coherence, before a read for the local tier: *want gets the link id the read
 * will be tracked for (0: the node has no live subscriber link, and the read must not fill
 * the tier), and CLIENT TRACKING ON REDIRECT <want> is appended (*sent) unless e's
 * connection redirects there already. Repeating it is harmless: a connection that tracks
 * already only moves its redirect, and Redis sends the invalidations of the keys it read
 * before to the new target. The connection's redirect is unknown until the reply comes. */
static tc_status track_send(tc_exch *e, long long *want, bool *sent)
{
    *sent = false;
    *want = tc__node_link(e->node);
    if (*want == 0 || e->conn->redirect == *want)
        return TC_OK;
    char id[24];
    int il = snprintf(id, sizeof id, "%lld", *want);
    const char *argv[5] = {"CLIENT", "TRACKING", "ON", "REDIRECT", id};
    size_t lens[5] = {6, 8, 2, 8, (size_t)il};
    e->conn->redirect = 0;
    tc_status st = tc__ex_send(e, 5, argv, lens);
    *sent = st == TC_OK;
    return st;
}

/* Whether the read that followed track_send is tracked to its want; r: the reply to the
 * CLIENT TRACKING sent, NULL if none was. An error reply (the link died since the id was
 * read: "The client ID you want redirect to does not exist") leaves the redirect unknown,
 * so the next read for the tier sends it again. */
static bool track_done(tc_exch *e, long long want, const redisReply *r)
{
    if (want == 0 || (r && !tc__reply_is_status(r, "OK")))
        return false;
    e->conn->redirect = want;
    return true;
}

static tc_status node_get(tc_node *node, tc_route *rt, const char *rkey, size_t rklen, tc_ref **val,
                          int64_t *pttl_ms, bool *tracked)
{
    if (val)
        *val = NULL;
    if (tracked)
        *tracked = false;
    if (!node || !rkey || !val)
        return TC_ERR_ARG;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    const char *argv[2] = {"GET", rkey};
    size_t lens[2] = {3, rklen};
    redisReply *rep[3] = {NULL, NULL, NULL};
    long long want = 0;
    bool tsent = false;
    if (st == TC_OK && tracked)
        st = track_send(&e, &want, &tsent);
    size_t k = tsent ? 1 : 0;            /* the GET's reply */
    size_t nrep = k + (pttl_ms ? 2 : 1); /* the TTL only bounds a local copy: asked if wanted */
    if (st == TC_OK)
        st = tc__ex_send(&e, 2, argv, lens);
    argv[0] = "PTTL";
    lens[0] = 4;
    if (st == TC_OK && pttl_ms)
        st = tc__ex_send(&e, 2, argv, lens);
    if (st == TC_OK)
        st = tc__ex_recv(&e, nrep, rep);
    if (st == TC_OK)
        st = take_value(node, rep[k], pttl_ms ? rep[k + 1] : NULL, val, pttl_ms);
    if (st == TC_OK || st == TC_MISS) {
        if (tracked)
            *tracked = track_done(&e, want, tsent ? rep[0] : NULL);
    }
    tc__replies_free(rep, nrep);
    return tc__node_op_finish(&e, st);
}

void tc__get_batch_send(tc_get_batch *b, tc_node *node, size_t n, const char *const *rkeys,
                        const size_t *rklens, bool ttl, bool track, bool flush)
{
    memset(&b->rt, 0, sizeof b->rt);
    b->n = n;
    b->per = ttl ? 2 : 1;
    b->want = 0;
    b->tsent = false;
    b->rep = n < SIZE_MAX / 2 / sizeof(redisReply *) ? tc__calloc(b->per * n + 1, sizeof *b->rep)
                                                     : NULL;
    tc__ex_init(&b->e, NULL, 0, NULL);
    b->e.node = node; /* for tc__node_op_finish, whatever happens */
    if (!b->rep) {
        b->st = TC_ERR_NOMEM;
        return;
    }
    b->st = tc__node_op_start(node, &b->rt, &b->e);
    if (b->st == TC_OK && track)
        b->st = track_send(&b->e, &b->want, &b->tsent);
    for (size_t i = 0; i < n && b->st == TC_OK; i++) {
        const char *argv[2] = {"GET", rkeys[i]};
        size_t lens[2] = {3, rklens[i]};
        b->st = tc__ex_send(&b->e, 2, argv, lens);
        argv[0] = "PTTL";
        lens[0] = 4;
        if (b->st == TC_OK && ttl)
            b->st = tc__ex_send(&b->e, 2, argv, lens);
    }
    if (b->st == TC_OK && flush)
        b->st = tc__ex_flush(&b->e);
}

tc_status tc__get_batch_recv(tc_get_batch *b, tc_ref **vals, int64_t *pttls, tc_status *st_out,
                             bool *tracked)
{
    tc_node *node = b->e.node;
    size_t n = b->n;
    tc_status st = b->st;
    size_t k = b->tsent ? 1 : 0; /* the first GET's reply */
    size_t nrep = k + b->per * n;
    for (size_t i = 0; i < n; i++) {
        vals[i] = NULL;
        if (tracked)
            tracked[i] = false;
    }
    if (st == TC_OK) {
        tc__ex_rearm(&b->e);
        st = tc__ex_recv(&b->e, nrep, b->rep);
    }
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        redisReply *ttl = b->per == 2 ? b->rep[k + 2 * i + 1] : NULL;
        tc_status one = take_value(node, b->rep[k + b->per * i], ttl, &vals[i],
                                   pttls && ttl ? &pttls[i] : NULL);
        if (one == TC_OK || one == TC_MISS)
            st_out[i] = one;
        else
            st = one;
    }
    if (st == TC_OK && tracked) {
        bool t = track_done(&b->e, b->want, b->tsent ? b->rep[0] : NULL);
        for (size_t i = 0; i < n; i++)
            tracked[i] = t;
    }
    if (st != TC_OK) {
        for (size_t i = 0; i < n; i++) {
            tc__ref_drop(vals[i]);
            vals[i] = NULL;
        }
    }
    if (b->rep)
        tc__replies_free(b->rep, nrep);
    tc__free(b->rep);
    b->rep = NULL;
    return tc__node_op_finish(&b->e, st);
}

static tc_status node_get_many(tc_node *node, tc_route *rt, size_t n, const char *const *rkeys,
                               const size_t *rklens, tc_ref **vals, int64_t *pttls,
                               tc_status *st_out, bool *tracked)
{
    if (!node || (n > 0 && (!rkeys || !rklens || !vals || !st_out)))
        return TC_ERR_ARG;
    for (size_t i = 0; i < n; i++)
        vals[i] = NULL;
    if (n == 0)
        return TC_OK;
    (void)rt; /* a batch sent alone follows no redirect: its replies report them */
    tc_get_batch b;
    tc__get_batch_send(&b, node, n, rkeys, rklens, pttls != NULL, tracked != NULL, false);
    tc_status st = tc__get_batch_recv(&b, vals, pttls, st_out, tracked);
    tc__redirect_clear(&b.rt.redir);
    return st;
}

tc_status tc__ops_tx_check(const tc_logger *log, redisReply **rep, size_t q, const char *what)
{
    if (!tc__reply_is_status(rep[0], "OK"))
        return tc__bad_reply(log, rep[0], "MULTI");
    for (size_t i = 1; i <= q; i++) {
        if (!tc__reply_is_status(rep[i], "QUEUED"))
            return tc__bad_reply(log, rep[i], what);
    }
    const redisReply *x = rep[q + 1];
    if (x->type != REDIS_REPLY_ARRAY || x->elements != q)
        return tc__bad_reply(log, x, "EXEC");
    for (size_t i = 0; i < q; i++) {
        if (tc__reply_is_error(x->element[i]))
            return tc__bad_reply(log, x->element[i], what);
    }
    return TC_OK;
}

static tc_status node_set(tc_node *node, tc_route *rt, size_t n, const char *const *rkeys,
                          const size_t *rklens, const void *const *vals, const size_t *lens,
                          int ttl_ms, const tc_pub *pub)
{
    char ttl[16];
    int tl = tc__ops_ttl_arg(ttl_ms, ttl);
    if (!node || tl < 0 || !pub_ok(pub) || (n > 0 && (!rkeys || !rklens || !vals || !lens)))
        return TC_ERR_ARG;
    if (n == 0)
        return TC_OK;
    size_t q = n + (pub ? 1 : 0);
    if (q > SIZE_MAX / sizeof(redisReply *) - 2)
        return TC_ERR_NOMEM;
    redisReply **rep = tc__calloc(q + 2, sizeof *rep);
    if (!rep)
        return TC_ERR_NOMEM;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    if (st == TC_OK)
        st = tc__ex_send(&e, 1, &multi, &multi_len);
    for (size_t i = 0; i < n && st == TC_OK; i++) {
        const char *argv[5] = {"SET", rkeys[i], vals[i] ? vals[i] : "", "PX", ttl};
        size_t alens[5] = {3, rklens[i], lens[i], 2, (size_t)tl};
        st = tc__ex_send(&e, tl > 0 ? 5 : 3, argv, alens);
    }
    if (st == TC_OK && pub)
        st = tc__ops_send_publish(&e, pub);
    if (st == TC_OK)
        st = tc__ex_send(&e, 1, &exec, &exec_len);
    if (st == TC_OK)
        st = tc__ex_recv(&e, q + 2, rep);
    if (st == TC_OK)
        st = tc__ops_tx_check(tc__node_log(node), rep, q, "SET");
    if (st == TC_OK) {
        const redisReply *x = rep[q + 1];
        for (size_t i = 0; i < n && st == TC_OK; i++) {
            if (!tc__reply_is_status(x->element[i], "OK"))
                st = tc__bad_reply(tc__node_log(node), x->element[i], "SET");
        }
        if (st == TC_OK && pub && x->element[n]->type != REDIS_REPLY_INTEGER)
            st = tc__bad_reply(tc__node_log(node), x->element[n], "PUBLISH");
    }
    tc__replies_free(rep, q + 2);
    tc__free(rep);
    return tc__node_op_finish(&e, st);
}

/* Runs one of our scripts for key with args (and pub appended) on a pooled connection.
 * The exchange stays open so the caller interprets the reply before op_finish counts the
 * outcome; the caller calls op_finish whatever this returns. */
static tc_status run_own_script(tc_node *node, tc_route *rt, tc_exch *e, const char *source,
                                const char *rkey, size_t rklen, int nargs, const char **args,
                                const size_t *arglens, const tc_pub *pub, redisReply **reply)
{
    const char *argv[12] = {"1", rkey};
    size_t lens[12] = {1, rklen};
    int argc = 2;
    char split[24];
    if (pub && pub->seq_key) {
        argv[0] = "2";
        argv[argc] = pub->seq_key;
        lens[argc++] = pub->seq_key_len;
    }
    for (int i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        lens[argc++] = arglens[i];
    }
    if (pub)
        tc__ops_pub_args(pub, argv, lens, &argc, split);
    tc_status st = tc__node_op_start(node, rt, e);
    if (st == TC_OK)
        st = tc__node_script(e, source, argc, argv, lens, reply);
    return st;
}

static tc_status node_add(tc_node *node, tc_route *rt, const char *rkey, size_t rklen,
                          const void *val, size_t len, int ttl_ms, const tc_pub *pub)
{
    char ttl[16];
    int tl = tc__ops_ttl_arg(ttl_ms, ttl);
    if (!node || !rkey || (!val && len > 0) || tl < 0 || !pub_ok(pub))
        return TC_ERR_ARG;
    const char *args[2] = {val ? val : "", ttl};
    size_t lens[2] = {len, (size_t)tl};
    redisReply *x = NULL;
    tc_exch e;
    tc_status st = run_own_script(node, rt, &e, script_add, rkey, rklen, 2, args, lens, pub, &x);
    if (st == TC_OK) {
        if (x->type == REDIS_REPLY_INTEGER && (x->integer == 0 || x->integer == 1))
            st = x->integer ? TC_OK : TC_EXISTS;
        else
            st = tc__bad_reply(tc__node_log(node), x, "add");
        freeReplyObject(x);
    }
    return tc__node_op_finish(&e, st);
}

static tc_status node_delete(tc_node *node, tc_route *rt, size_t n, const char *const *rkeys,
                             const size_t *rklens, const tc_pub *pub, size_t *deleted)
{
    if (deleted)
        *deleted = 0;
    if (!node || !pub_ok(pub) || (n > 0 && (!rkeys || !rklens)))
        return TC_ERR_ARG;
    if (n == 0)
        return TC_OK;
    if (n > SIZE_MAX / sizeof(size_t) - 1)
        return TC_ERR_NOMEM;
    const char **argv = tc__malloc(sizeof *argv * (n + 1));
    size_t *lens = tc__malloc(sizeof *lens * (n + 1));
    if (!argv || !lens) {
        tc__free(argv);
        tc__free(lens);
        return TC_ERR_NOMEM;
    }
    argv[0] = "UNLINK";
    lens[0] = 6;
    memcpy(argv + 1, rkeys, sizeof *argv * n);
    memcpy(lens + 1, rklens, sizeof *lens * n);
    size_t q = pub ? 2 : 1;
    redisReply *rep[4] = {NULL, NULL, NULL, NULL};
    const char *multi = "MULTI", *exec = "EXEC";
    size_t multi_len = 5, exec_len = 4;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    if (st == TC_OK)
        st = tc__ex_send(&e, 1, &multi, &multi_len);
    if (st == TC_OK)
        st = tc__ex_send(&e, (int)(n + 1), argv, lens);
    if (st == TC_OK && pub)
        st = tc__ops_send_publish(&e, pub);
    if (st == TC_OK)
        st = tc__ex_send(&e, 1, &exec, &exec_len);
    tc__free(argv);
    tc__free(lens);
    if (st == TC_OK)
        st = tc__ex_recv(&e, q + 2, rep);
    if (st == TC_OK)
        st = tc__ops_tx_check(tc__node_log(node), rep, q, "UNLINK");
    if (st == TC_OK) {
        const redisReply *x = rep[q + 1];
        if (x->element[0]->type != REDIS_REPLY_INTEGER || x->element[0]->integer < 0)
            st = tc__bad_reply(tc__node_log(node), x->element[0], "UNLINK");
        else if (pub && x->element[1]->type != REDIS_REPLY_INTEGER)
            st = tc__bad_reply(tc__node_log(node), x->element[1], "PUBLISH");
        else if (deleted)
            *deleted = (size_t)x->element[0]->integer;
    }
    tc__replies_free(rep, q + 2);
    return tc__node_op_finish(&e, st);
}

static tc_status node_touch(tc_node *node, tc_route *rt, const char *rkey, size_t rklen, int ttl_ms,
                            const tc_pub *pub)
{
    char ttl[16];
    int tl = tc__ops_ttl_arg(ttl_ms, ttl);
    if (!node || !rkey || tl < 0 || !pub_ok(pub))
        return TC_ERR_ARG;
    const char *args[1] = {ttl};
    size_t lens[1] = {(size_t)tl};
    redisReply *x = NULL;
    tc_exch e;
    tc_status st = run_own_script(node, rt, &e, script_touch, rkey, rklen, 1, args, lens, pub, &x);
    if (st == TC_OK) {
        if (x->type == REDIS_REPLY_INTEGER && (x->integer == 0 || x->integer == 1))
            st = x->integer ? TC_OK : TC_MISS;
        else
            st = tc__bad_reply(tc__node_log(node), x, "touch");
        freeReplyObject(x);
    }
    return tc__node_op_finish(&e, st);
}

static tc_status node_incr(tc_node *node, tc_route *rt, const char *rkey, size_t rklen,
                           int64_t delta, const void *hdr_magic, size_t hdr_magic_len,
                           const tc_pub *pub, int64_t *result)
{
    if (!node || !rkey || !result || (!hdr_magic && hdr_magic_len > 0) || !pub_ok(pub))
        return TC_ERR_ARG;
    char d[24];
    int dl = snprintf(d, sizeof d, "%" PRId64, delta);
    const char *args[2] = {d, hdr_magic ? hdr_magic : ""};
    size_t lens[2] = {(size_t)dl, hdr_magic_len};
    redisReply *x = NULL;
    tc_exch e;
    tc_status st = run_own_script(node, rt, &e, script_incr, rkey, rklen, 2, args, lens, pub, &x);
    if (st != TC_OK)
        return tc__node_op_finish(&e, st);
    const redisReply *code = x->type == REDIS_REPLY_ARRAY && x->elements >= 1 ? x->element[0]
                                                                              : NULL;
    if (!code || code->type != REDIS_REPLY_INTEGER) {
        st = tc__bad_reply(tc__node_log(node), code ? code : x, "incr");
    } else if (code->integer == 0 && x->elements == 1) {
        st = TC_MISS;
    } else if (code->integer == -1 && x->elements == 1) {
        st = TC_ERR_NOT_INT;
    } else if (code->integer == 1 && x->elements == 2 &&
               x->element[1]->type == REDIS_REPLY_STRING &&
               tc__parse_i64(x->element[1]->str, x->element[1]->len, result)) {
        st = TC_OK;
    } else {
        st = tc__bad_reply(tc__node_log(node), x, "incr");
    }
    freeReplyObject(x);
    return tc__node_op_finish(&e, st);
}

/* Appends UNLINK for the keys of a SCAN reply's key array (none if it is empty): one
 * command, or in a cluster one per key (the keys a node holds may span slots, and a
 * multi-key command must stay in one). Sets *sent to the number of commands sent. */
static tc_status ex_unlink_batch(tc_exch *e, const redisReply *keys, size_t *sent)
{
    *sent = 0;
    if (!keys || keys->elements == 0)
        return TC_OK;
    size_t n = keys->elements;
    if (e->rt && e->rt->key_unlink) {
        tc_status st = TC_OK;
        for (size_t i = 0; i < n && st == TC_OK; i++) {
            const char *argv[2] = {"UNLINK", keys->element[i]->str};
            size_t lens[2] = {6, keys->element[i]->len};
            st = tc__ex_send(e, 2, argv, lens);
            if (st == TC_OK)
                (*sent)++;
        }
        return st;
    }
    const char **argv = tc__malloc(sizeof *argv * (n + 1));
    size_t *lens = tc__malloc(sizeof *lens * (n + 1));
    tc_status st = TC_ERR_NOMEM;
    if (argv && lens) {
        argv[0] = "UNLINK";
        lens[0] = 6;
        for (size_t i = 0; i < n; i++) {
            argv[i + 1] = keys->element[i]->str;
            lens[i + 1] = keys->element[i]->len;
        }
        st = tc__ex_send(e, (int)(n + 1), argv, lens);
        *sent = st == TC_OK;
    }
    tc__free(argv);
    tc__free(lens);
    return st;
}

static tc_status ex_scan(tc_exch *e, const char *cursor, const char *pattern)
{
    const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", CLEAR_SCAN_COUNT};
    size_t lens[6] = {4, strlen(cursor), 5, strlen(pattern), 5, sizeof CLEAR_SCAN_COUNT - 1};
    return tc__ex_send(e, 6, argv, lens);
}

static tc_status node_clear(tc_node *node, tc_route *rt, const char *pattern, const tc_pub *pub)
{
    if (!node || !pattern || !pub_ok(pub))
        return TC_ERR_ARG;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    /* Each round trip carries the UNLINK of the previous batch with the next SCAN. */
    char cursor[24] = "0";
    redisReply *prev = NULL; /* the last SCAN reply, whose keys are still to unlink */
    redisReply **rep = NULL; /* the replies of one round trip */
    size_t cap = 0;
    bool done = false;
    while (st == TC_OK && !done) {
        size_t unlinking = 0;
        st = ex_unlink_batch(&e, prev ? prev->element[1] : NULL, &unlinking);
        if (st == TC_OK)
            st = ex_scan(&e, cursor, pattern);
        if (prev)
            freeReplyObject(prev);
        prev = NULL;
        if (st == TC_OK && (!rep || unlinking + 1 > cap)) {
            tc__free(rep);
            cap = unlinking + 1;
            rep = tc__calloc(cap, sizeof *rep);
            if (!rep) {
                cap = 0;
                st = TC_ERR_NOMEM;
                e.broken = true;
            }
        }
        if (st == TC_OK) {
            tc__ex_rearm(&e); /* each batch has command_timeout_ms */
            st = tc__ex_recv(&e, unlinking + 1, rep);
        }
        for (size_t i = 0; st == TC_OK && i < unlinking; i++) {
            if (rep[i]->type != REDIS_REPLY_INTEGER)
                st = tc__bad_reply(tc__node_log(node), rep[i], "UNLINK");
        }
        redisReply *scan = st == TC_OK ? rep[unlinking] : NULL;
        if (st == TC_OK && !tc__reply_scan_ok(scan))
            st = tc__bad_reply(tc__node_log(node), scan, "SCAN");
        if (st == TC_OK) {
            memcpy(cursor, scan->element[0]->str, scan->element[0]->len);
            cursor[scan->element[0]->len] = '\0';
            done = strcmp(cursor, "0") == 0;
            prev = scan;
            rep[unlinking] = NULL;
        }
        if (rep)
            tc__replies_free(rep, unlinking + 1 <= cap ? unlinking + 1 : cap);
    }
    if (st == TC_OK) {
        /* The last batch and the publication: the announcement follows the deletes. */
        size_t unlinking = 0;
        st = ex_unlink_batch(&e, prev->element[1], &unlinking);
        size_t n = unlinking + (pub ? 1 : 0);
        if (st == TC_OK && pub)
            st = tc__ops_send_publish(&e, pub);
        if (st == TC_OK && n > cap) {
            tc__free(rep);
            cap = n;
            rep = tc__calloc(cap, sizeof *rep);
            if (!rep) {
                cap = 0;
                st = TC_ERR_NOMEM;
                e.broken = true;
            }
        }
        if (st == TC_OK && n > 0) {
            tc__ex_rearm(&e);
            st = tc__ex_recv(&e, n, rep);
        }
        for (size_t i = 0; st == TC_OK && i < n; i++) {
            if (rep[i]->type != REDIS_REPLY_INTEGER)
                st = tc__bad_reply(tc__node_log(node), rep[i],
                                   i < unlinking ? "UNLINK" : "PUBLISH");
        }
        if (rep)
            tc__replies_free(rep, n <= cap ? n : cap);
    }
    tc__free(rep);
    if (prev)
        freeReplyObject(prev);
    return tc__node_op_finish(&e, st);
}

static tc_status node_publish(tc_node *node, tc_route *rt, const tc_pub *pub)
{
    if (!node || !pub || !pub_ok(pub))
        return TC_ERR_ARG;
    tc_exch e;
    tc_status st = tc__node_op_start(node, rt, &e);
    redisReply *x = NULL;
    if (st == TC_OK)
        st = tc__ops_send_publish(&e, pub);
    if (st == TC_OK)
        st = tc__ex_recv(&e, 1, &x);
    if (st == TC_OK && x->type != REDIS_REPLY_INTEGER)
        st = tc__bad_reply(tc__node_log(node), x, "PUBLISH");
    if (x)
        freeReplyObject(x);
    return tc__node_op_finish(&e, st);
}

const char *const tc__ops_scripts[] = {script_add, script_touch, script_incr};
const size_t tc__ops_nscripts = sizeof tc__ops_scripts / sizeof tc__ops_scripts[0];

tc_status tc__ops_command(tc_node *node, int argc, const char **argv, const size_t *lens,
                          redisReply **reply)
{
    return node_command(node, NULL, argc, argv, lens, reply);
}

tc_status tc__ops_run(tc_node *node, tc_route *rt, const tc_op *o)
{
    switch (o->kind) {
    case TC_OP_GET:
        return node_get(node, rt, o->keys[0], o->klens[0], o->vals_out, o->pttls, o->tracked);
    case TC_OP_GET_MANY:
        return node_get_many(node, rt, o->n, o->keys, o->klens, o->vals_out, o->pttls, o->st_out,
                             o->tracked);
    case TC_OP_SET:
        return node_set(node, rt, o->n, o->keys, o->klens, o->vals, o->lens, o->ttl_ms, o->pub);
    case TC_OP_ADD:
        return node_add(node, rt, o->keys[0], o->klens[0], o->vals[0], o->lens[0], o->ttl_ms,
                        o->pub);
    case TC_OP_DELETE:
        return node_delete(node, rt, o->n, o->keys, o->klens, o->pub, o->deleted);
    case TC_OP_TOUCH:
        return node_touch(node, rt, o->keys[0], o->klens[0], o->ttl_ms, o->pub);
    case TC_OP_INCR:
        return node_incr(node, rt, o->keys[0], o->klens[0], o->delta, o->magic, o->magic_len,
                         o->pub, o->result);
    case TC_OP_CLEAR:
        return node_clear(node, rt, o->pattern, o->pub);
    case TC_OP_PUBLISH:
        return node_publish(node, rt, o->pub);
    case TC_OP_SCRIPT:
        return node_script(node, rt, o->source, o->argc, o->argv, o->alens, o->reply);
    case TC_OP_COMMAND:
        return node_command(node, rt, o->argc, o->argv, o->alens, o->reply);
    }
    return TC_ERR_ARG;
}

/* Whether o's n keys are there (or n is 0). */
static bool keys_ok(const tc_op *o)
{
    return o->n == 0 || (o->keys && o->klens);
}

static bool one_key_ok(const tc_op *o)
{
    return o->keys && o->klens && o->keys[0];
}

tc_status tc__ops_check(const tc_op *o)
{
    char ttl[16];
    bool ttl_ok = tc__ops_ttl_arg(o->ttl_ms, ttl) >= 0;
    bool ok = pub_ok(o->pub);
    switch (o->kind) {
    case TC_OP_GET:
        if (o->vals_out)
            *o->vals_out = NULL;
        if (o->tracked)
            *o->tracked = false;
        ok = one_key_ok(o) && o->vals_out;
        break;
    case TC_OP_GET_MANY:
        ok = keys_ok(o) && (o->n == 0 || (o->vals_out && o->st_out));
        for (size_t i = 0; ok && i < o->n; i++) {
            o->vals_out[i] = NULL;
            if (o->tracked)
                o->tracked[i] = false;
        }
        break;
    case TC_OP_SET:
        ok = ok && ttl_ok && keys_ok(o) && (o->n == 0 || (o->vals && o->lens));
        break;
    case TC_OP_ADD:
        ok = ok && ttl_ok && one_key_ok(o) && o->vals && o->lens && (o->vals[0] || !o->lens[0]);
        break;
    case TC_OP_DELETE:
        if (o->deleted)
            *o->deleted = 0;
        ok = ok && keys_ok(o);
        break;
    case TC_OP_TOUCH:
        ok = ok && ttl_ok && one_key_ok(o);
        break;
    case TC_OP_INCR:
        ok = ok && one_key_ok(o) && o->result && (o->magic || o->magic_len == 0);
        break;
    case TC_OP_CLEAR:
        ok = ok && o->pattern;
        break;
    case TC_OP_PUBLISH:
        ok = ok && o->pub;
        break;
    case TC_OP_SCRIPT:
    case TC_OP_COMMAND:
        if (o->reply)
            *o->reply = NULL;
        ok = o->reply && o->argv && o->argc >= 1 &&
             (o->kind == TC_OP_COMMAND || (o->source && o->alens));
        break;
    }
    if (!ok)
        return TC_ERR_ARG;
    bool batch = o->kind == TC_OP_GET_MANY || o->kind == TC_OP_SET || o->kind == TC_OP_DELETE;
    return batch && o->n == 0 ? TC_MISS : TC_OK;
}
