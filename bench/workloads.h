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

#endif /* TCB_WORKLOADS_H */
