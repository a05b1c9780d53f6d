/*
 * Redis locks: `SET <key> <token> NX PX <ttl>` to take, a compare-and-delete script to give
 * back, so that a holder whose lock expired never deletes the lock someone else holds now.
 * The token is 16 bytes from getrandom in 32 lowercase hex digits. Used by the public
 * tc_lock_* functions and by tc_get_or_set's cross-process fill lock.
 *
 * Thread safety: every function may be called from any thread. No lock of ours is held
 * while talking to Redis.
 */
#ifndef TC_LOCK_H
#define TC_LOCK_H

#include "cache.h"

#define TC_LOCK_TOKEN_HEX 32 /* 16 random bytes in hex */

/* Fills token (TC_LOCK_TOKEN_HEX digits and a NUL) with a fresh random token. TC_ERR_IO if
 * getrandom fails. */
tc_status tc__lock_token(char token[TC_LOCK_TOKEN_HEX + 1]);

/* One attempt to take the lock at the Redis key rkey with token for ttl_ms (> 0).
 * TC_OK: taken. TC_EXISTS: someone holds it. Errors: as the remote operations
 * (TC_ERR_IO, TC_ERR_TIMEOUT, TC_ERR_PROTO, TC_ERR_NOMEM). */
tc_status tc__lock_try(tc_cache *c, const char *rkey, size_t rklen, const char *token, int ttl_ms);

/* Deletes the lock at rkey if and only if it still holds token (atomically, by script),
 * and then publishes pub (may be NULL) in the same script, so that waiters in other
 * processes wake. TC_OK: deleted. TC_MISS: it expired or another owner holds it now (left
 * alone, nothing published). Errors as tc__lock_try. */
tc_status tc__lock_unlock(tc_cache *c, const char *rkey, size_t rklen, const char *token,
                          const tc_pub *pub);

/* A user lock's token and Redis key (NUL-terminated; for tests). */
const char *tc__lock_token_of(const tc_lock *l);
const char *tc__lock_key_of(const tc_lock *l);

#endif /* TC_LOCK_H */
