/*
 * Miss-ratio curves: the local tier's policy against plain LRU and Belady's offline optimum
 * over count-based cache sizes (a percentage of the distinct keys), on a trace file or on a
 * generated Zipf sequence. The local tier's policy is shown twice: simulated (CLOCK with a
 * second chance, one list, as lib/local.c implements it) and measured by driving the real
 * tc__local_* API (a byte budget worth the same number of equal-sized entries).
 * Single-threaded; called from the main thread.
 */
#ifndef TCB_MRC_H
#define TCB_MRC_H

#include "bench.h"

/* On cfg->trace if set, else on Zipf(cfg->zipf_s) over cfg->keys. Draws cfg->plot if set. */
int wl_mrc(const bench_cfg *cfg);

/* Bytes per local entry for 16, 100 and 1,000-byte values (cfg->keys entries each, default
 * 20,000): the charge the budget counts, the overhead beyond key and value, and what malloc
 * really holds for them (mallinfo2). Needs no Redis. */
int wl_entries(const bench_cfg *cfg);

#endif /* TCB_MRC_H */
