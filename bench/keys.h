/*
 * Key sets for the workloads: numbered keys ("k:00000042") or the distinct ids of a trace
 * file ("t:<id>"), with the trace itself as a sequence of indices into its key set; and the
 * floor table, the physical limit a local hit is measured against: a plain open-addressing
 * hash table of the same keys (XXH3, as the local tier uses) whose lookup hashes the key,
 * probes, compares the key and copies the value out. Read-only after construction, so it may
 * be shared by threads without a lock.
 */
#ifndef TCB_KEYS_H
#define TCB_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keyset {
    size_t n;
    char **k; /* n NUL-terminated keys, pointing into buf */
    char *buf;
    size_t maxlen;
    size_t stride; /* numbered keys: key i is at buf + i * stride (0: look it up in k) */
} keyset;

/* Key i. Numbered keys are found by arithmetic, as a caller formatting its key from an id
 * would have it at hand: loading its pointer from k would add a cache miss per operation
 * (k is 800 KB at 100,000 keys) that the harness, not the library, costs. */
static inline const char *keyset_key(const keyset *ks, size_t i)
{
    return ks->stride ? ks->buf + i * ks->stride : ks->k[i];
}

/* n keys "<prefix>%0*zu" with a fixed width. Returns 0, or -1 on allocation failure. */
int keyset_numbered(keyset *ks, const char *prefix, size_t n);
void keyset_free(keyset *ks);

/* Reads a trace of ids, one per line (blank lines and lines with bytes a key may not hold
 * are skipped and counted in *skipped). At most limit lines are kept (0: all). Fills
 * distinct with one key "t:<id>" per distinct id (in order of first use) and *seq (malloc'd,
 * *nseq entries) with the index in distinct of each access. Returns 0, or -1 with a message
 * on stderr. */
int trace_load(const char *path, uint64_t limit, keyset *distinct, uint32_t **seq, size_t *nseq,
               size_t *skipped);

typedef struct ftab ftab;

/* A table holding every key of ks with a vsize-byte value each. NULL on allocation
 * failure. ks must outlive the table. */
ftab *ftab_new(const keyset *ks, size_t vsize);
/* Looks key up and copies its value (vsize bytes) to out. False if absent. */
bool ftab_get(const ftab *t, const char *key, void *out);
void ftab_free(ftab *t);

#endif /* TCB_KEYS_H */
