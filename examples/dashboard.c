/* Fragment caching: a dashboard made of two fragments with different lifetimes. */
#include <stdio.h>
#include <string.h>
#include <tiercache.h>

static void fragment(tc_cache *c, const char *key, int ttl_ms, const char *(*render)(void))
{
    tc_value v;
    if (tc_get(c, key, &v) == TC_OK) { /* local tier, else Redis */
        printf("%-32s hit   %.*s\n", key, (int)v.len, (const char *)v.data);
        tc_value_release(&v);
        return;
    }
    const char *html = render(); /* the expensive part */
    tc_set(c, key, html, strlen(html), ttl_ms);
    printf("%-32s miss  %s\n", key, html);
}

static const char *render_stats(void)
{
    return "<div>42 orders today</div>";
}
static const char *render_news(void)
{
    return "<ul><li>Release 0.1</li></ul>";
}

int main(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "shop";
    tc_cache *c;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    for (int request = 0; request < 2; request++) {
        fragment(c, "dashboard:stats:user:7", 5 * 1000, render_stats);  /* 5 s */
        fragment(c, "dashboard:news:all", 10 * 60 * 1000, render_news); /* 10 min */
    }
    tc_stats s;
    tc_stats_get(c, &s);
    printf("local hits %llu, Redis hits %llu, misses %llu\n", (unsigned long long)s.local_hits,
           (unsigned long long)s.remote_hits, (unsigned long long)s.misses);
    tc_close(c);
    return s.local_hits == 2 ? 0 : 1;
}
