/*
 * libFuzzer target for the Redis reply interpreters (lib/redis_reply.c): a server, a proxy
 * or an attacker on the path decides the bytes, so every interpreter must take any reply
 * hiredis's reader can build without reading out of bounds, leaking, or giving an answer
 * that breaks its documented contract.
 *
 * The input is RESP bytes; each whole reply the reader builds from them goes through every
 * interpreter, whose results are checked (a redirect's slot and port in range, CLUSTER
 * SLOTS ranges ordered and in range, a master address with a host and a port, a value
 * reference as long as the bulk string). A broken promise aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool check_range(void *arg, int lo, int hi, const char *host, size_t hlen, int port)
{
    (void)arg;
    if (lo < 0 || hi > 16383 || lo > hi || port < 1 || port > 65535 || (!host && hlen))
        abort();
    return true;
}

static void check_redirect(const redisReply *x)
{
    tc_redirect d = {TC_REDIR_NONE, 0, 0, NULL};
    bool is = tc__reply_redirect(x, &d);
    if (!is && d.kind != TC_REDIR_NONE)
        abort();
    if (d.kind == TC_REDIR_MOVED || d.kind == TC_REDIR_ASK) {
        if (d.slot < 0 || d.slot > 16383 || d.port < 1 || d.port > 65535 || (d.host && !*d.host))
            abort();
    }
    tc__redirect_clear(&d);
}

static void check_sentinel(const redisReply *x)
{
    char *host = NULL;
    int port = 0;
    tc_status st = tc__reply_master_addr(x, &host, &port);
    if ((st == TC_OK) != (host != NULL) || (st == TC_OK && (port < 1 || port > 65535)))
        abort();
    tc__free(host);
    host = NULL;
    st = tc__reply_switch_master(x, "+switch-master", "m", &host, &port);
    if ((st == TC_OK) != (host != NULL) || (st == TC_OK && (port < 1 || port > 65535)))
        abort();
    tc__free(host);
}

static void check_value(const redisReply *x)
{
    tc_ref *v = NULL;
    int64_t pttl = 0;
    const redisReply *bad = NULL;
    tc_status st = tc__reply_value(x, x, &v, &pttl, &bad);
    if ((st == TC_OK) != (v != NULL) || (st == TC_ERR_PROTO) != (bad != NULL))
        abort();
    if (st == TC_OK && v->len != x->len)
        abort();
    tc__ref_drop(v);
    v = NULL;
    st = tc__reply_value(x, NULL, &v, NULL, &bad);
    if (st == TC_OK && (!v || v->len != x->len || memcmp(v->buf, x->str, x->len) != 0))
        abort();
    tc__ref_drop(v);
}

static void check_all(const redisReply *x)
{
    check_redirect(x);
    (void)tc__reply_cluster_slots(x, check_range, NULL);
    check_sentinel(x);
    check_value(x);
    (void)tc__reply_scan_ok(x);
    (void)tc__reply_tracking_ok(x);
    (void)tc__reply_is_auth_error(x);
    int64_t i64;
    if (x->str && !tc__parse_i64(x->str, x->len, &i64) && x->len <= 20 && x->len > 0 &&
        x->str[0] >= '1' && x->str[0] <= '9' && strspn(x->str, "0123456789") == x->len &&
        x->len < 19)
        abort(); /* short digit strings always parse */
}

/* Whether the input announces an aggregate or bulk string of more than 2^20 elements or
 * bytes. hiredis 0.14's reader allocates an aggregate's element array as announced (a
 * reply declaring 10^9 elements asks for 8 GB before a byte of them came), which the
 * fuzzer reports as out of memory. That is hiredis's, and a hostile server could as well
 * send gigabytes of data: the library trusts its Redis (docs/security.md). Such inputs
 * are left out so the fuzzer explores the interpreters. */
static bool announces_huge(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if ((i > 0 && data[i - 1] != '\n') || (data[i] != '*' && data[i] != '$'))
            continue;
        size_t j = i + 1, digits = 0;
        while (j < size && data[j] >= '0' && data[j] <= '9')
            j++, digits++;
        if (digits > 7 || (digits == 7 && data[i + 1] > '1'))
            return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (announces_huge(data, size))
        return 0;
    redisReader *rd = redisReaderCreate();
    if (!rd)
        return 0;
    if (redisReaderFeed(rd, (const char *)data, size) == REDIS_OK) {
        void *x = NULL;
        while (redisReaderGetReply(rd, &x) == REDIS_OK && x) {
            check_all(x);
            freeReplyObject(x);
            x = NULL;
        }
    }
    redisReaderFree(rd);
    return 0;
}
