#include <stdio.h>
#include <string.h>
#include <tiercache.h>

int main(void)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "shop";
    tc_cache *c;
    char why[256];
    if (tc_open2(&o, &c, why, sizeof why) != TC_OK) { /* why: the reason, in words */
        fprintf(stderr, "cannot open the cache: %s\n", why);
        return 1;
    }
    const char *html = "<div>42 orders today</div>";
    tc_set(c, "dashboard:stats:user:7", html, strlen(html), 5000); /* 5 s */
    tc_value v;
    if (tc_get(c, "dashboard:stats:user:7", &v) == TC_OK) { /* local hit */
        printf("%.*s\n", (int)v.len, (const char *)v.data);
        tc_value_release(&v);
    }
    tc_close(c);
    return 0;
}
