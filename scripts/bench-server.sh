#!/usr/bin/env bash
# The reference server under load (issue 20): wrk drives examples/server/tc-server with the
# Zipf mix of examples/server/load.lua (95 % reads, 5 % writes) in three configurations, one
# after the other in one run, each with its own fresh private Redis and the same SQLite file:
#   two tiers    the default: local tier in front of Redis
#   Redis only   --no-local
#   no cache     --no-cache: every request to SQLite
# For each: a warm-up (not measured), then a measured run; requests/s, p50/p99/p99.9, Redis
# commands per request (INFO commandstats, reset after the warm-up) and SQLite statements per
# request (the server's /metrics). Prints a Markdown table, writes it to --md, and draws the
# latency CDFs with gnuplot into --plot. Everything stays on 127.0.0.1; every process it
# starts is stopped by its PID.
#
#   ./bench.sh server [--duration S] [--warmup S] [--threads N] [--connections N]
#                     [--server-threads N] [--rows N] [--write-pct P] [--plot PNG] [--md FILE]
# (./bench.sh builds tc-server in build/release and passes it as the first argument.)
set -euo pipefail

server=${1:?usage: bench-server.sh TC-SERVER [options]}
shift
top=$(cd "$(dirname "$0")/.." && pwd)
duration=10 warmup=3 threads=2 connections=32 server_threads=4 rows=400000 write_pct=5
plot=$top/docs/img/server-latency-cdf.png
md=""
while [ $# -gt 0 ]; do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --server-threads) server_threads=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --write-pct) write_pct=$2; shift 2 ;;
    --plot) plot=$2; shift 2 ;;
    --md) md=$2; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench-server: unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in wrk redis-cli curl gnuplot; do
  command -v $tool >/dev/null 2>&1 || { echo "bench-server: $tool not installed" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-bench-server.XXXXXX")
pid=""
stop_server() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
trap 'stop_server; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP

# metric NAME FILE: the sum of a Prometheus series over its labels.
metric() {
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { printf "%d\n", s }' "$2"
}

names=("two tiers" "Redis only" "no cache")
flags=("" "--no-local" "--no-cache")
for i in 0 1 2; do
  name=${names[$i]}
  echo "== $name: starting tc-server ${flags[$i]}" >&2
  # shellcheck disable=SC2086
  "$server" --port 0 --db "$tmp/db.sqlite" --rows "$rows" --threads "$server_threads" \
    ${flags[$i]} >"$tmp/server$i.out" 2>"$tmp/server$i.err" &
  pid=$!
  for _ in $(seq 1 600); do
    grep -q 'listening on' "$tmp/server$i.out" && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/server$i.err" >&2; exit 1; }
    sleep 0.1
  done
  line=$(cat "$tmp/server$i.out")
  port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' <<<"$line")
  redis=$(sed -n 's|.*redis \(redis://127\.0\.0\.1:[0-9]*/[0-9]*\).*|\1|p' <<<"$line")
  [ -n "$port" ] && [ -n "$redis" ] || { echo "bench-server: cannot parse: $line" >&2; exit 1; }
  shape=$(sed -n 's|.*: \([0-9]*\) students, \([0-9]*\) users, \([0-9]*\) products.*|\1 \2 \3|p' \
    <<<"$line")
  read -r students users products <<<"$shape"
  url=http://127.0.0.1:$port
  export TC_STUDENTS=$students TC_USERS=$users TC_PRODUCTS=$products TC_WRITE_PCT=$write_pct

  TC_WRK_OUT="" wrk -t"$threads" -c"$connections" -d"${warmup}s" -s "$top/examples/server/load.lua" \
    "$url" >"$tmp/warmup$i.txt"
  redis-cli -u "$redis" CONFIG RESETSTAT >/dev/null
  curl -sS "$url/metrics" >"$tmp/before$i.prom"
  echo "== $name: $duration s, $threads wrk threads, $connections connections" >&2
  TC_WRK_OUT=$tmp/wrk$i.txt wrk -t"$threads" -c"$connections" -d"${duration}s" \
    -s "$top/examples/server/load.lua" "$url" >"$tmp/wrk$i.log"
  redis-cli -u "$redis" INFO commandstats >"$tmp/cmdstats$i.txt"
  curl -sS "$url/metrics" >"$tmp/after$i.prom"
  stop_server

  w=$tmp/wrk$i.txt
  val() { awk -v k="$1" '$1 == k { print $2 }' "$w"; }
  req=$(val requests)
  rps[$i]=$(awk -v r="$req" -v d="$(val duration_us)" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  p50[$i]=$(val p50) p99[$i]=$(val p99) p999[$i]=$(val p99.9) errs[$i]=$(val errors)
  # Every command Redis ran in the measured window but the INFO that reads them.
  cmds=$(tr -d '\r' <"$tmp/cmdstats$i.txt" |
    awk -F'[:=,]' '/^cmdstat_/ && $1 != "cmdstat_info" { s += $3 } END { print s + 0 }')
  served=$(($(metric tcserver_requests_total "$tmp/after$i.prom") -
    $(metric tcserver_requests_total "$tmp/before$i.prom") - 1))
  queries=$(($(metric tcserver_db_queries_total "$tmp/after$i.prom") -
    $(metric tcserver_db_queries_total "$tmp/before$i.prom")))
  lhits=$(($(metric tiercache_local_hits_total "$tmp/after$i.prom") -
    $(metric tiercache_local_hits_total "$tmp/before$i.prom")))
  cpr[$i]=$(awk -v c="$cmds" -v n="$served" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
  qpr[$i]=$(awk -v c="$queries" -v n="$served" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
  lhr[$i]=$(awk -v c="$lhits" -v n="$served" 'BEGIN { printf "%.2f", n ? c / n : 0 }')
  awk '$1 == "cdf" { print $2 / 1000, $3 }' "$w" >"$tmp/cdf$i.dat"
  # The five commands Redis ran most, per request.
  cmdtop[$i]=$(tr -d '\r' <"$tmp/cmdstats$i.txt" |
    awk -F'[:=,]' -v n="$served" '/^cmdstat_/ && $1 != "cmdstat_info" {
      sub("cmdstat_", "", $1); printf "%s %.2f\n", $1, n ? $3 / n : 0 }' |
    sort -k2,2 -g -r | head -n 5 | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
done

ms() { awk -v us="$1" 'BEGIN { printf (us < 10000 ? "%.2f" : "%.1f"), us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b ? a / b : 0 }'; }
commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
{
  echo "| configuration | requests/s | vs no cache | p50 ms | p99 ms | p99.9 ms | Redis commands / request | SQLite statements / request | local hits / request | errors |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for i in 0 1 2; do
    echo "| ${names[$i]} | ${rps[$i]} | $(ratio "${rps[$i]}" "${rps[2]}")x | $(ms "${p50[$i]}") | $(ms "${p99[$i]}") | $(ms "${p999[$i]}") | ${cpr[$i]} | ${qpr[$i]} | ${lhr[$i]} | ${errs[$i]} |"
  done
  echo
  echo "wrk -t$threads -c$connections -d${duration}s (after a ${warmup} s warm-up), examples/server/load.lua: Zipf s=0.99, $write_pct % writes;"
  echo "tc-server --threads $server_threads --rows $rows ($students students, $users users, $products products); commit $commit;"
  echo "$(nproc) CPUs ($cpu), shared by wrk, tc-server and Redis."
  echo
  echo "Redis commands per request, the five most frequent:"
  for i in 0 1; do echo "- ${names[$i]}: ${cmdtop[$i]}"; done
} >"$tmp/table.md"
cat "$tmp/table.md"
[ -z "$md" ] || cp "$tmp/table.md" "$md"

mkdir -p "$(dirname "$plot")"
gnuplot <<GP
if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 900,560 font 'sans,10' } else { set terminal png size 900,560 }
set termoption noenhanced
set output '$plot'
set title "tc-server under wrk ($threads threads, $connections connections, $write_pct % writes, Zipf): latency CDF"
set logscale x 10
set xlabel 'request latency (ms, log scale)'
set ylabel 'fraction of requests at or below'
set yrange [0:1.0]
set grid
set key bottom right
plot '$tmp/cdf0.dat' using 1:2 with lines lw 2 title "two tiers, ${rps[0]} req/s", \
     '$tmp/cdf1.dat' using 1:2 with lines lw 2 title "Redis only, ${rps[1]} req/s", \
     '$tmp/cdf2.dat' using 1:2 with lines lw 2 title "no cache, ${rps[2]} req/s"
GP
echo "plot: $plot" >&2
