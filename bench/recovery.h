/*
 * tc-bench recovery (issue 18): the read load on Redis around a broken invalidation link,
 * with the old full flush on a new link against recovery by group sequences. Reader and
 * writer processes are forked; the bench samples Redis from its own connection. Called from
 * the main thread, with the embedded Redis only (its events kill every subscriber of the
 * server and restart it).
 */
#ifndef TCB_RECOVERY_H
#define TCB_RECOVERY_H

#include "bench.h"

/* Dies with a clear message when cfg cannot run the recovery workload. */
void recovery_check_cfg(const bench_cfg *cfg);
/* The scenarios cfg->events x cfg->modes; their table, sparklines, and cfg->plot (SVG). */
int wl_recovery(const bench_cfg *cfg);

#endif /* TCB_RECOVERY_H */
