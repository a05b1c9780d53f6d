/*
 * Key sets, trace loading and the floor table (see keys.h).
 */
#include "keys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

int keyset_numbered(keyset *ks, const char *prefix, size_t n)
{
    memset(ks, 0, sizeof *ks);
    int width = 1;
    for (size_t m = n > 1 ? n - 1 : 1; m >= 10; m /= 10)
        width++;
    if (width < 8)
        width = 8;
    size_t len = strlen(prefix) + (size_t)width;
    ks->k = malloc(n * sizeof *ks->k);
    ks->buf = malloc(n * (len + 1));
    if (!ks->k || !ks->buf) {
        keyset_free(ks);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        ks->k[i] = ks->buf + i * (len + 1);
        snprintf(ks->k[i], len + 1, "%s%0*zu", prefix, width, i);
    }
    ks->n = n;
    ks->maxlen = len;
    ks->stride = len + 1;
    return 0;
}

void keyset_free(keyset *ks)
{
    free(ks->k);
    free(ks->buf);
    memset(ks, 0, sizeof *ks);
}

/* ------------------------------------------------------------------ trace loading */

static bool id_ok(const char *s, size_t len)
{
    if (len == 0 || len > 200)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b < 33 || b == 127)
            return false;
    }
    return true;
}

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tc-bench: cannot open trace %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap)
            break;
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "tc-bench: cannot read trace %s\n", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int trace_load(const char *path, uint64_t limit, keyset *distinct, uint32_t **seq, size_t *nseq,
               size_t *skipped)
{
    memset(distinct, 0, sizeof *distinct);
    *seq = NULL;
    *nseq = 0;
    *skipped = 0;
    size_t len;
    char *text = read_all(path, &len);
    if (!text)
        return -1;

    /* Lines are cut in place: the distinct ids point into text until copied out. */
    size_t nlines = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            nlines++;
    nlines++;
    uint32_t *s = malloc(nlines * sizeof *s);
    size_t cap = 16;
    while (cap < nlines * 2)
        cap *= 2;
    uint32_t *slots = malloc(cap * sizeof *slots); /* index + 1 into uniq; 0: empty */
    char **uniq = malloc(nlines * sizeof *uniq);
    size_t *uniqlen = malloc(nlines * sizeof *uniqlen);
    if (!s || !slots || !uniq || !uniqlen) {
        fprintf(stderr, "tc-bench: out of memory loading %s\n", path);
        goto fail;
    }
    memset(slots, 0, cap * sizeof *slots);

    size_t n = 0, nu = 0;
    char *p = text;
    while (p < text + len && (limit == 0 || n < limit)) {
        char *eol = memchr(p, '\n', (size_t)(text + len - p));
        if (!eol)
            eol = text + len;
        char *a = p, *b = eol;
        while (a < b && (*a == ' ' || *a == '\t' || *a == '\r'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t' || b[-1] == '\r'))
            b--;
        p = eol + 1;
        if (a == b)
            continue;
        if (!id_ok(a, (size_t)(b - a))) {
            (*skipped)++;
            continue;
        }
        *b = '\0';
        size_t l = (size_t)(b - a);
        uint64_t h = XXH3_64bits(a, l);
        size_t i = (size_t)h & (cap - 1);
        while (slots[i] && !(uniqlen[slots[i] - 1] == l && memcmp(uniq[slots[i] - 1], a, l) == 0))
            i = (i + 1) & (cap - 1);
        if (!slots[i]) {
            uniq[nu] = a;
            uniqlen[nu] = l;
            slots[i] = (uint32_t)++nu;
        }
        s[n++] = slots[i] - 1;
    }
    if (n == 0) {
        fprintf(stderr, "tc-bench: trace %s holds no usable id\n", path);
        goto fail;
    }

    size_t total = 0, maxlen = 0;
    for (size_t i = 0; i < nu; i++) {
        total += uniqlen[i] + 3;
        if (uniqlen[i] + 2 > maxlen)
            maxlen = uniqlen[i] + 2;
    }
    distinct->k = malloc(nu * sizeof *distinct->k);
    distinct->buf = malloc(total);
    if (!distinct->k || !distinct->buf) {
        fprintf(stderr, "tc-bench: out of memory loading %s\n", path);
        keyset_free(distinct);
        goto fail;
    }
    char *w = distinct->buf;
    for (size_t i = 0; i < nu; i++) {
        distinct->k[i] = w;
        w[0] = 't';
        w[1] = ':';
        memcpy(w + 2, uniq[i], uniqlen[i] + 1);
        w += uniqlen[i] + 3;
    }
    distinct->n = nu;
    distinct->maxlen = maxlen;
    *seq = s;
    *nseq = n;
    free(slots);
    free(uniq);
    free(uniqlen);
    free(text);
    return 0;

fail:
    free(s);
    free(slots);
    free(uniq);
    free(uniqlen);
    free(text);
    return -1;
}

/* ------------------------------------------------------------------ the floor table */

typedef struct fslot {
    uint64_t h;
    uint32_t idx; /* index + 1; 0: empty */
    uint32_t klen;
} fslot;

struct ftab {
    size_t mask;
    fslot *slots;
    char *const *keys;
    unsigned char *vals;
    size_t vsize;
};

ftab *ftab_new(const keyset *ks, size_t vsize)
{
    ftab *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    size_t cap = 16;
    while (cap < ks->n * 2)
        cap *= 2;
    t->mask = cap - 1;
    t->slots = calloc(cap, sizeof *t->slots);
    t->vals = malloc(ks->n * (vsize ? vsize : 1));
    t->keys = ks->k;
    t->vsize = vsize;
    if (!t->slots || !t->vals) {
        ftab_free(t);
        return NULL;
    }
    for (size_t i = 0; i < ks->n; i++) {
        size_t l = strlen(ks->k[i]);
        uint64_t h = XXH3_64bits(ks->k[i], l);
        size_t j = (size_t)h & t->mask;
        while (t->slots[j].idx)
            j = (j + 1) & t->mask;
        t->slots[j].h = h;
        t->slots[j].idx = (uint32_t)(i + 1);
        t->slots[j].klen = (uint32_t)l;
        memset(t->vals + i * vsize, 'a' + (int)(i % 26), vsize);
    }
    return t;
}

bool ftab_get(const ftab *t, const char *key, void *out)
{
    size_t l = strlen(key);
    uint64_t h = XXH3_64bits(key, l);
    for (size_t j = (size_t)h & t->mask;; j = (j + 1) & t->mask) {
        const fslot *s = &t->slots[j];
        if (!s->idx)
            return false;
        if (s->h == h && s->klen == l && memcmp(t->keys[s->idx - 1], key, l) == 0) {
            memcpy(out, t->vals + (size_t)(s->idx - 1) * t->vsize, t->vsize);
            return true;
        }
    }
}

void ftab_free(ftab *t)
{
    if (!t)
        return;
    free(t->slots);
    free(t->vals);
    free(t);
}
