#!/usr/bin/env bash
# Builds tiercache optimised (build/release) and runs its benchmark, tc-bench.
#
#   ./bench.sh            the default suite (< 1 min): starts its own redis-server on a free
#                         127.0.0.1 port, prints the tables and stops it; replays the shared
#                         trace ../shared/traces/cloudphysics-io.txt when it exists
#   ./bench.sh ARGS...    tc-bench ARGS, e.g. `mrc --trace FILE --plot mrc.png`, `zipf
#                         --threads 1,2 --json out.jsonl`, `--redis-url URL` (see --help)
#   ./bench.sh server [OPTIONS]  the reference server (examples/server) under wrk in three
#                         configurations: two tiers, Redis only, no cache; draws
#                         docs/img/server-latency-cdf.png (scripts/bench-server.sh --help)
#   ./bench.sh serve [ARGS...]   runs the reference server (it starts its own Redis; see
#                         examples/server/tc-server --help)
#   ./bench.sh recovery [ARGS...]  tc-bench recovery (issue 18): Redis GET/s around a pub/sub
#                         link kill and a Redis restart, full flush against recovery by group
#                         sequences (about 80 s); draws docs/img/recovery.svg unless --plot
#                         is given (tc-bench --help: recovery)
#
# On Debian it first installs what the build needs (as root, or through sudo).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

. "$top/scripts/deps.sh" # DEPS, install_deps, autogen_if_needed
command -v apt-get >/dev/null 2>&1 && install_deps
autogen_if_needed

dir=$top/build/release
mkdir -p "$dir"
(
  cd "$dir"
  [ -f Makefile ] || "$top/configure" CFLAGS="-g -O2" >configure.out 2>&1 ||
    { cat configure.out; exit 1; }
  target=bench/tc-bench
  case ${1:-} in server | serve) target=examples/server/tc-server ;; esac
  echo "== building $target in build/release" >&2
  make -j"$(nproc)" "$target" >build.out 2>&1 || { tail -50 build.out; exit 1; }
)
bench=$dir/bench/tc-bench
case ${1:-} in
  server) shift; exec "$top/scripts/bench-server.sh" "$dir/examples/server/tc-server" "$@" ;;
  serve) shift; exec "$dir/examples/server/tc-server" "$@" ;;
  recovery)
    shift
    plot=(--plot "$top/docs/img/recovery.svg")
    for a in "$@"; do case $a in --plot | --plot=*) plot=() ;; esac; done
    exec "$bench" recovery "${plot[@]}" "$@" ;;
esac

# The suite (no workload named) replays the shared trace too, when it exists and no --trace
# was given.
suite=1
for a in "$@"; do
  case $a in
    hotpath | zipf | trace | stampede | coherence | mrc | -h | --help | --trace | --trace=*) suite=0 ;;
  esac
done
if [ $suite -eq 1 ]; then
  trace=$(cd "$top/.." && pwd)/shared/traces/cloudphysics-io.txt
  if [ -r "$trace" ]; then
    exec "$bench" "$@" --trace "$trace"
  fi
  echo "== note: $trace not found: the suite runs without the trace replay" >&2
fi
exec "$bench" "$@"
