/*
 * Redis locks (see lock.h) and the public tc_lock_acquire / tc_lock_release.
 *
 * Take: `SET <key> <token> NX PX <ttl>`, one round trip. Give back: a script that deletes
 * the key only if it still holds our token; never a plain DEL, because a lock whose TTL ran
 * out may belong to someone else by now. A user lock's key is "<key_prefix>:<version>:<name>"
 * (the name follows the key rules), so locks live in the cache's key space and go with
 * tc_clear.
 *
 * Waiting (wait_ms > 0): a release publishes an invalidation naming the lock (in the
 * unlock script, so only a real release does), and the waiter, registered in the flight
 * table, is woken by the subscriber and tries again at once; a release in this process wakes
 * it directly. Releases that publish nothing (an expired holder, NONE mode) are caught by
 * polling: exponential steps from 2 ms to 50 ms, each capped by the deadline. Each retry is
 * one SET NX.
 *
 * Locks: the flight table's leaf mutex (lock waiters); the remote pool's inside remote.c.
 */
#include "config.h"

#include "lock.h"

#include <stdio.h>
#include <string.h>

#include "flight.h"
#include "key.h"
#include "remote_conn.h"
#include "testing.h"

#define STEP_MIN_MS 2
#define STEP_MAX_MS 50

struct tc_lock {
    tc_cache *c;
    unsigned gen; /* the fork generation of the process that took it */
    size_t rklen;
    size_t nlen; /* the name's length: the name ends rkey */
    char token[TC_LOCK_TOKEN_HEX + 1];
    char rkey[]; /* "<key_prefix>:<version>:<name>" */
};

/* KEYS[1] the lock; ARGV[1] our token; ARGV[2], ARGV[3] (optional) a channel and a message
 * to publish once deleted. 1 deleted, 0 not ours (or gone). */
static const char script_unlock[] = TC_OPS_PUB_LUA
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  if ARGV[3] then tc_pub(KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]) end\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

static void note_remote_error(tc_cache *c, tc_status st)
{
    if (st == TC_ERR_IO || st == TC_ERR_TIMEOUT || st == TC_ERR_PROTO)
        TC_COUNT(tc__cache_counters(c), remote_errors);
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

tc_status tc__lock_try(tc_cache *c, const char *rkey, size_t rklen, const char *token, int ttl_ms)
{
    char ttl[16];
    int tlen = snprintf(ttl, sizeof ttl, "%d", ttl_ms);
    const char *argv[] = {"SET", rkey, token, "NX", "PX", ttl};
    const size_t lens[] = {3, rklen, TC_LOCK_TOKEN_HEX, 2, 2, (size_t)tlen};
    redisReply *r = NULL;
    tc_status st = tc__remote_command(tc__cache_remote(c), 6, argv, lens, &r);
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

tc_status tc__lock_unlock(tc_cache *c, const char *rkey, size_t rklen, const char *token,
                          const tc_pub *pub)
{
    const char *argv[9] = {"1", rkey};
    size_t lens[9] = {1, rklen};
    int argc = 2;
    char split[24];
    if (pub && pub->seq_key) { /* KEYS[2]: the sequences (tc_pub) */
        argv[0] = "2";
        argv[argc] = pub->seq_key;
        lens[argc++] = pub->seq_key_len;
    }
    argv[argc] = token;
    lens[argc++] = strlen(token);
    if (pub)
        tc__ops_pub_args(pub, argv, lens, &argc, split);
    redisReply *r = NULL;
    tc_status st = tc__remote_script(tc__cache_remote(c), script_unlock, argc, argv, lens, &r);
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

/* After a first try found the lock held: retries until taken, an error, or wait_ms. Each
 * try begins after reading the waiter's release count, so a release that lands after a
 * failed try always ends the sleep that follows it. */
static tc_status wait_for_lock(tc_lock *l, uint64_t h, int ttl_ms, int wait_ms)
{
    tc_cache *c = l->c;
    tc_flights *fs = tc__cache_flights(c);
    const int64_t deadline = tc__deadline_after_ms(wait_ms);
    const int poll = tc__test_lock_poll_ms(c);
    const int step_max = poll > 0 ? poll : STEP_MAX_MS;
    int step = poll > 0 ? poll : STEP_MIN_MS;
    tc_lock_waiter w;
    tc__lock_waiter_enter(fs, &w, h);
    uint64_t seen = 0; /* a release between the first try and enter is caught by the poll */
    tc_status st = TC_EXISTS;
    while (st == TC_EXISTS) {
        int64_t now = tc__now_ns();
        if (now >= deadline) {
            st = TC_ERR_TIMEOUT;
            break;
        }
        int64_t wake = now + (int64_t)step * 1000000;
        tc__lock_waiter_sleep(fs, &w, seen, wake < deadline ? wake : deadline);
        step = step * 2 > step_max ? step_max : step * 2;
        seen = tc__lock_waiter_seq(fs, &w);
        st = tc__lock_try(c, l->rkey, l->rklen, l->token, ttl_ms);
    }
    tc__lock_waiter_leave(fs, &w);
    return st;
}

TC_API tc_status tc_lock_acquire(tc_cache *c, const char *name, int ttl_ms, int wait_ms,
                                 tc_lock **out)
{
    if (out)
        *out = NULL;
    tc_status st = tc__cache_check_open(c);
    if (st != TC_OK)
        return st;
    size_t nlen;
    if (!out || ttl_ms <= 0 || wait_ms < 0 ||
        !tc__key_valid(name, tc__cache_options(c)->max_key_len, &nlen))
        return TC_ERR_ARG;
    size_t cap = tc__cache_rkey_len(c, nlen) + 1;
    tc_lock *l = tc__malloc(sizeof *l + cap);
    if (!l)
        return TC_ERR_NOMEM;
    l->c = c;
    l->gen = tc__cache_gen(c);
    l->nlen = nlen;
    l->rklen = tc__cache_rkey(c, name, nlen, l->rkey, cap);
    st = tc__lock_token(l->token);
    if (st == TC_OK)
        st = tc__lock_try(c, l->rkey, l->rklen, l->token, ttl_ms);
    if (st == TC_EXISTS && wait_ms > 0)
        st = wait_for_lock(l, tc__key_hash(name, nlen), ttl_ms, wait_ms);
    else if (st == TC_EXISTS)
        st = TC_ERR_TIMEOUT;
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
    if (l->gen != tc__fork_gen()) {
        /* Taken before a fork: it is the parent's, which may still rely on it. */
        tc__free(l);
        return TC_MISS;
    }
    tc_cache *c = l->c;
    const char *name = l->rkey + l->rklen - l->nlen;
    size_t nlen = l->nlen;
    tc_inval_msg m;
    tc_status st = tc__cache_inval_keys(c, 1, &name, &nlen, &m);
    if (st == TC_OK) {
        st = tc__lock_unlock(c, l->rkey, l->rklen, l->token, tc__cache_inval_pub(&m));
        tc__cache_inval_done(&m);
    } else { /* no memory for the message: release anyway; waiters poll */
        st = tc__lock_unlock(c, l->rkey, l->rklen, l->token, NULL);
    }
    if (st == TC_OK) /* our own message is ignored here: wake this process's waiters */
        tc__flights_notify(tc__cache_flights(c), tc__key_hash(name, nlen), name, nlen);
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
