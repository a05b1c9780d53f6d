/*
 * Redis locks (see lock.h) and the public tc_lock_acquire / tc_lock_release.
 *
 * Take: `SET <key> <token> NX PX <ttl>`, one round trip. Give back: a script that deletes
 * the key only if it still holds our token; never a plain DEL, because a lock whose TTL ran
 * out may belong to someone else by now. A user lock's key is "<key_prefix>:<version>:<name>"
 * (the name follows the key rules), so locks live in the cache's key space and go with
 * tc_clear.
 *
 * Waiting (wait_ms > 0) retries with exponential steps from 2 ms to 50 ms, each capped by
 * the deadline, sleeping in poll() with no descriptors: the library never calls sleep().
 * The retry after a step is one SET NX; a released or expired lock is taken at the next
 * step.
 *
 * Locks: none of ours; the remote pool's leaf lock is taken inside remote.c.
 */
#include "config.h"

#include "lock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "key.h"
#include "remote_conn.h"

#define STEP_MIN_MS 2
#define STEP_MAX_MS 50

struct tc_lock {
    tc_cache *c;
    size_t rklen;
    char token[TC_LOCK_TOKEN_HEX + 1];
    char rkey[]; /* "<key_prefix>:<version>:<name>" */
};

/* KEYS[1] the lock; ARGV[1] our token. 1 deleted, 0 not ours (or gone). */
static const char script_unlock[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n";

static void note_remote_error(tc_cache *c, tc_status st)
{
    if (st == TC_ERR_IO || st == TC_ERR_TIMEOUT || st == TC_ERR_PROTO)
        TC_COUNT(&c->counters, remote_errors);
}

tc_status tc__lock_token(char token[TC_LOCK_TOKEN_HEX + 1])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char raw[TC_LOCK_TOKEN_HEX / 2];
    tc_status st = tc__random_bytes(raw, sizeof raw);
    if (st != TC_OK)
        return st;
    for (size_t i = 0; i < sizeof raw; i++) {
        token[2 * i] = digits[raw[i] >> 4];
        token[2 * i + 1] = digits[raw[i] & 0xf];
    }
    token[TC_LOCK_TOKEN_HEX] = '\0';
    return TC_OK;
}

tc_status tc__lock_try(tc_cache *c, const char *rkey, size_t rklen, const char *token,
                       int ttl_ms)
{
    char ttl[16];
    int tlen = snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *argv[] = {"SET", rkey, token, "NX", "PX", ttl};
    const size_t lens[] = {3, rklen, TC_LOCK_TOKEN_HEX, 2, 2, (size_t)tlen};
    redisReply *r = NULL;
    tc_status st = tc__remote_command(c->remote, 6, argv, lens, &r);
    if (st == TC_OK) {
        if (r->type == REDIS_REPLY_STATUS)
            st = TC_OK;
        else if (r->type == REDIS_REPLY_NIL)
            st = TC_EXISTS;
        else
            st = TC_ERR_PROTO;
        freeReplyObject(r);
    }
    note_remote_error(c, st);
    return st;
}

tc_status tc__lock_unlock(tc_cache *c, const char *rkey, size_t rklen, const char *token)
{
    const char *argv[] = {"1", rkey, token};
    const size_t lens[] = {1, rklen, strlen(token)};
    redisReply *r = NULL;
    tc_status st = tc__remote_script(c->remote, script_unlock, 3, argv, lens, &r);
    if (st == TC_OK) {
        if (r->type != REDIS_REPLY_INTEGER)
            st = TC_ERR_PROTO;
        else
            st = r->integer == 1 ? TC_OK : TC_MISS;
        freeReplyObject(r);
    }
    note_remote_error(c, st);
    return st;
}

/* Sleeps ms milliseconds without sleep(): poll() on no descriptors. */
static void pause_ms(int ms)
{
    while (poll(NULL, 0, ms) < 0 && errno == EINTR)
        ;
}

TC_API tc_status tc_lock_acquire(tc_cache *c, const char *name, int ttl_ms, int wait_ms,
                                 tc_lock **out)
{
    if (out)
        *out = NULL;
    if (!c)
        return TC_ERR_ARG;
    if (atomic_load_explicit(&c->closing, memory_order_relaxed))
        return TC_ERR_CLOSED;
    size_t nlen;
    if (!out || ttl_ms <= 0 || wait_ms < 0 || !tc__key_valid(name, c->opt.max_key_len, &nlen))
        return TC_ERR_ARG;
    size_t cap = c->rprefix_len + nlen + 1;
    tc_lock *l = tc__malloc(sizeof *l + cap);
    if (!l)
        return TC_ERR_NOMEM;
    l->c = c;
    l->rklen = tc__key_redis(l->rkey, cap, c->rprefix, c->rprefix_len, name, nlen);
    tc_status st = tc__lock_token(l->token);
    const int64_t deadline = tc__deadline_after_ms(wait_ms);
    int step = STEP_MIN_MS;
    while (st == TC_OK) {
        st = tc__lock_try(c, l->rkey, l->rklen, l->token, ttl_ms);
        if (st != TC_EXISTS)
            break;
        int64_t left_ms = (deadline - tc__now_ns()) / 1000000;
        if (left_ms <= 0) {
            st = TC_ERR_TIMEOUT;
            break;
        }
        pause_ms(step < left_ms ? step : (int)left_ms);
        step = step * 2 > STEP_MAX_MS ? STEP_MAX_MS : step * 2;
        st = TC_OK;
    }
    if (st != TC_OK) {
        tc__free(l);
        return st;
    }
    *out = l;
    return TC_OK;
}

TC_API tc_status tc_lock_release(tc_lock *l)
{
    if (!l)
        return TC_ERR_ARG;
    tc_status st = tc__lock_unlock(l->c, l->rkey, l->rklen, l->token);
    tc__free(l);
    return st;
}

const char *tc__lock_token_of(const tc_lock *l)
{
    return l->token;
}

const char *tc__lock_key_of(const tc_lock *l)
{
    return l->rkey;
}
