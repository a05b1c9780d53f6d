/*
 * libFuzzer target for the key rules: tc__key_valid and tc_key, both on caller-supplied
 * bytes. Each is compared with a plain reference implementation of the documented rule
 * (1..max bytes, none below 33, none equal to 127; parts joined with ':').
 *
 * Input layout: byte 0 is cap for tc_key, byte 1 is max_len for tc__key_valid; the rest is
 * split at NUL bytes into up to 8 parts. tc__key_valid sees the first part. Buffers are
 * allocated at their exact size so ASan catches any access past them. A mismatch aborts.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PARTS 8
#define END ((const char *)NULL) /* a typed sentinel for the variadic call */

static bool byte_ok(unsigned char b)
{
    return b >= 33 && b != 127;
}

static bool ref_valid(const char *k, size_t max_len)
{
    size_t n = strlen(k);
    if (n == 0 || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!byte_ok((unsigned char)k[i]))
            return false;
    return true;
}

static int call_tc_key(char *buf, size_t cap, char **p, size_t n)
{
    switch (n) {
    case 0:
        return tc_key(buf, cap, END);
    case 1:
        return tc_key(buf, cap, p[0], END);
    case 2:
        return tc_key(buf, cap, p[0], p[1], END);
    case 3:
        return tc_key(buf, cap, p[0], p[1], p[2], END);
    case 4:
        return tc_key(buf, cap, p[0], p[1], p[2], p[3], END);
    case 5:
        return tc_key(buf, cap, p[0], p[1], p[2], p[3], p[4], END);
    case 6:
        return tc_key(buf, cap, p[0], p[1], p[2], p[3], p[4], p[5], END);
    case 7:
        return tc_key(buf, cap, p[0], p[1], p[2], p[3], p[4], p[5], p[6], END);
    default:
        return tc_key(buf, cap, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], END);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t cap = data[0], max_len = data[1];
    data += 2;
    size -= 2;

    /* Parts: each a separate exact-size allocation. */
    char *parts[MAX_PARTS];
    size_t n = 0, start = 0;
    for (size_t i = 0; i <= size && n < MAX_PARTS; i++) {
        if (i == size || data[i] == 0) {
            parts[n] = malloc(i - start + 1);
            if (!parts[n])
                abort();
            memcpy(parts[n], data + start, i - start);
            parts[n][i - start] = '\0';
            n++;
            start = i + 1;
        }
    }

    size_t len = 0;
    bool valid = tc__key_valid(parts[0], max_len, &len);
    if (valid != ref_valid(parts[0], max_len) || (valid && len != strlen(parts[0])))
        abort();

    /* The reference join. */
    size_t want_len = 0;
    bool want_ok = n > 0;
    for (size_t i = 0; i < n; i++) {
        want_ok = want_ok && ref_valid(parts[i], SIZE_MAX);
        want_len += (i > 0) + strlen(parts[i]);
    }
    want_ok = want_ok && want_len + 1 <= cap;
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        abort();
    memset(buf, 'x', cap ? cap : 1);
    int got = call_tc_key(buf, cap, parts, n);
    if (want_ok) {
        if (got < 0 || (size_t)got != want_len)
            abort();
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 0 && buf[pos++] != ':')
                abort();
            size_t pl = strlen(parts[i]);
            if (memcmp(buf + pos, parts[i], pl) != 0)
                abort();
            pos += pl;
        }
        if (buf[pos] != '\0' || !tc__key_valid(buf, SIZE_MAX, NULL))
            abort();
    } else if (got != -1 || (cap > 0 && buf[0] != '\0')) {
        abort();
    }
    free(buf);
    for (size_t i = 0; i < n; i++)
        free(parts[i]);
    return 0;
}
