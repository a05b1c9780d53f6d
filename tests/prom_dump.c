/*
 * prom-dump: writes keys of hostile key types (a one-part key "other", bytes that are not
 * UTF-8, a literal U+FFFD, backslashes and quotes, enough types to fill the table so the
 * overflow bucket "other" is used too) to the Redis of $TC_REDIS_URL and prints
 * tc_stats_prometheus's text, for tests/check-prometheus.sh to parse with a real parser.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tiercache.h"

static const char *const hostile[] = {
    "other",     "a\xff:x:1",    "a\xfe:x:1",    "a\xef\xbf\xbd:x:1", "a\\xff:x:1", "a\\\\xff:x:1",
    "q\"\\:x:1", "\xc3\x28:x:1", "\xe2\x82:x:1", "{}=,:x:1",          "#\x7e:x:1",
};

int main(void)
{
    tc_options o;
    tc_options_init(&o);
    tc_cache *c = NULL;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "prom-dump: tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++)
        if ((st = tc_set(c, hostile[i], "v", 1, TC_TTL_DEFAULT)) != TC_OK)
            break;
    char key[32];
    for (int i = 0; st == TC_OK && i < 130; i++) {
        snprintf(key, sizeof key, "fill%d:t:1", i);
        st = tc_set(c, key, "v", 1, TC_TTL_DEFAULT);
    }
    char *text = NULL;
    if (st == TC_OK)
        st = tc_stats_prometheus(c, &text);
    if (st != TC_OK) {
        fprintf(stderr, "prom-dump: %s\n", tc_strerror(st));
        tc_close(c);
        return 1;
    }
    fputs(text, stdout);
    free(text);
    tc_close(c);
    return 0;
}
