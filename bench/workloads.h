/*
 * The measured workloads. Each runs its operations against tiercache (local tier on) and,
 * in the same run, its baselines: the same operations with the local tier off (a Redis round
 * trip per read) and, for reads, the floor table (hash lookup + copy; keys.h). Each prints
 * its table section and records, and returns 0, or non-zero when it could not run.
 *
 * Only the main thread calls these; they start and join their own threads and processes.
 */
#ifndef TCB_WORKLOADS_H
#define TCB_WORKLOADS_H

#include "bench.h"
#include "keys.h"
#include "tiercache.h"

/* Local hit vs floor vs Redis GET on a few hot keys, single thread, then local-hit
 * throughput with cfg->threads (default 1 and 2; none under --hot-only unless given);
 * with_zipf adds zipf read throughput with 1 and 2 threads. */
int wl_hotpath(const bench_cfg *cfg, bool with_zipf);
/* Zipf(s) reads (and writes, with write_frac) over numbered keys. */
int wl_zipf(const bench_cfg *cfg);
/* Replays cfg->trace. */
int wl_trace(const bench_cfg *cfg);
/* Threads missing the same cold keys through tc_get_or_set. */
int wl_stampede(const bench_cfg *cfg);
/* Writer and reader processes: invalidation delay. */
int wl_coherence(const bench_cfg *cfg);
/* Per coherence mode, N reader processes and a writer: Redis CPU and messages per write. */
int wl_fanout(const bench_cfg *cfg);
/* Broadcast writes with recovery by groups vs by flush: client time and Redis CPU and
 * commands per write, the sequence fetch of a new link, and a link break's cost. */
int wl_writecost(const bench_cfg *cfg);

/* Helpers the other workload files share. */
/* Stores every key of ks with a vsize-byte value under prefix, in batches, local tier off. */
void wl_populate(const bench_cfg *cfg, const char *prefix, const keyset *ks, size_t vsize);
/* Removes the workload's keys from an external Redis (the embedded one dies with the run). */
void wl_unpopulate(const bench_cfg *cfg, const char *prefix);
/* What one local entry of this key length and value size costs the local tier's budget,
 * read from tc_stats after storing one (public API only). */
size_t wl_local_charge(const bench_cfg *cfg, const char *prefix, const char *key, size_t vsize);
/* A cache for a worker process (fanout, recovery): coherence mode coh, recovery, local_bytes of
 * local tier, nothing expiring during a run, generous timeouts (two loaded cores). NULL, with a
 * message naming who, if it cannot open. */
tc_cache *wl_open_proc(const bench_cfg *cfg, const char *prefix, tc_coherence coh,
                       tc_recovery recovery, size_t local_bytes, const char *who);
/* The local tier's budget: --local-bytes, else --local-pct of nkeys entries of charge bytes. */
size_t wl_local_budget(const bench_cfg *cfg, size_t charge, size_t nkeys);

#endif /* TCB_WORKLOADS_H */
