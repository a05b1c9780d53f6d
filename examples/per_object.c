/* Per-object caching: a student's GPA, computed from the grades table on a miss and dropped
 * when a grade changes. Ends with the metrics per key type; with --prometheus it also
 * prints them in the Prometheus text format. Exits 1 if the loader runs more often than
 * the misses call for, or the metrics of "grades:gpa" do not count what happened. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiercache.h>

/* The "database": one student's grades, and how often it was queried. */
static int grades[] = {4, 3, 4, 2};
static int db_queries;

/* The loader: runs only on a miss in both tiers. The key is "grades:gpa:student:<id>". */
static tc_status load_gpa(void *arg, const char *key, tc_buf *out)
{
    (void)arg;
    (void)key;
    db_queries++; /* SELECT grade FROM grades WHERE ... */
    int sum = 0, n = (int)(sizeof grades / sizeof grades[0]);
    for (int i = 0; i < n; i++)
        sum += grades[i];
    char gpa[16];
    int len = snprintf(gpa, sizeof gpa, "%.2f", (double)sum / n);
    return tc_buf_append(out, gpa, (size_t)len);
}

/* Reads the GPA through the cache into buf; returns 0 on success. */
static int gpa(tc_cache *c, const char *key, char *buf, size_t cap)
{
    tc_value v;
    tc_status st = tc_get_or_set(c, key, load_gpa, NULL, 10 * 60 * 1000, &v); /* 10 min */
    if (st != TC_OK) {
        fprintf(stderr, "tc_get_or_set: %s\n", tc_strerror(st));
        return -1;
    }
    snprintf(buf, cap, "%.*s", (int)v.len, (const char *)v.data);
    tc_value_release(&v);
    return 0;
}

/* Prints one key type's counters; keeps those of "grades:gpa" in *arg. */
static void print_type(void *arg, const char *key_type, const tc_stats *s)
{
    if (strcmp(key_type, "grades:gpa") == 0)
        *(tc_stats *)arg = *s;
    printf("  %-12s local hits %llu, Redis hits %llu, misses %llu, loads %llu, deletes %llu\n",
           key_type, (unsigned long long)s->local_hits, (unsigned long long)s->remote_hits,
           (unsigned long long)s->misses, (unsigned long long)s->loads,
           (unsigned long long)s->deletes);
}

int main(int argc, char **argv)
{
    tc_options o;
    tc_options_init(&o); /* redis_url NULL: $TC_REDIS_URL or localhost */
    o.key_prefix = "recipe-object";
    tc_cache *c;
    tc_status st = tc_open(&o, &c);
    if (st != TC_OK) {
        fprintf(stderr, "tc_open: %s\n", tc_strerror(st));
        return 1;
    }
    char key[64], before[16], after[16];
    tc_key(key, sizeof key, "grades", "gpa", "student", "123", NULL);

    int ok = 1;
    for (int request = 0; request < 3; request++) /* one query, then two hits */
        ok &= gpa(c, key, before, sizeof before) == 0;
    printf("%s = %s after 3 reads, %d DB query\n", key, before, db_queries);
    ok &= db_queries == 1;

    grades[3] = 4;     /* UPDATE grades SET grade = 4 ... */
    tc_delete(c, key); /* ... then drop the cached GPA */
    ok &= gpa(c, key, after, sizeof after) == 0 && gpa(c, key, after, sizeof after) == 0;
    printf("%s = %s after a grade change, %d DB queries\n", key, after, db_queries);
    ok &= db_queries == 2 && strcmp(before, after) != 0;

    tc_stats gpa_stats = {0};
    printf("metrics per key type:\n");
    tc_stats_foreach(c, print_type, &gpa_stats);
    ok &= gpa_stats.loads == 2 && gpa_stats.misses == 2 && gpa_stats.local_hits == 3;
    if (argc > 1 && strcmp(argv[1], "--prometheus") == 0) {
        char *text;
        if (tc_stats_prometheus(c, &text) == TC_OK) {
            fputs(text, stdout);
            free(text);
        }
    }
    tc_close(c);
    return ok ? 0 : 1;
}
