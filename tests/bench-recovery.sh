#!/bin/sh
# tc-bench recovery, short: every scenario runs to its end and its records say what the
# readers' counters saw. A link kill flushes every reader's tier with TC_RECOVERY_FLUSH
# and reconciles every one with TC_RECOVERY_GROUPS; a restart (SHUTDOWN SAVE, same port and data file)
# flushes in both modes (a new run_id) and keeps every key. The SVG and the bucket CSV hold
# every scenario. No timing is asserted: the GET rates themselves are for tc-bench runs.
set -e
: "${top_builddir:=.}"
case ${TC_SAN:-} in
  # tc-bench forks its readers from a process with threads (its signal thread), and they
  # start threads: ThreadSanitizer refuses that (check_fork leaves out such cases too).
  *thread*) echo "skipped under ThreadSanitizer: children of a multi-threaded fork"; exit 77 ;;
esac
dir=$(mktemp -d "${TMPDIR:-/tmp}/tcrbench.XXXXXX")
trap 'rm -rf "$dir"' EXIT
readers=2
"$top_builddir/bench/tc-bench" recovery --readers $readers --keys 5000 --rate 500 --after 1 \
  --warmup 5000 --csv "$dir/r.csv" --plot "$dir/r.svg" --buckets-csv "$dir/b.csv" \
  >"$dir/out" 2>&1 || { cat "$dir/out"; echo "tc-bench recovery failed"; exit 1; }
fail() {
  cat "$dir/out" "$dir/r.csv"
  echo "FAIL: $*"
  exit 1
}
# want MODE PATTERN: the record of MODE (e.g. kill/groups) has every field of PATTERN.
want() {
  line=$(grep "^recovery,$1," "$dir/r.csv") || fail "no record for $1"
  for f in $2; do
    case " $line " in *" $f "* | *",$f "* | *" $f,"*) ;; *) fail "$1: want $f" ;; esac
  done
}
want kill/flush "reconciles=0 full_flushes=$readers"
want kill/groups "reconciles=$readers full_flushes=0"
want restart/flush "reconciles=0"
want restart/groups "reconciles=0"
for m in kill/flush kill/groups restart/flush restart/groups; do
  line=$(grep "^recovery,$m," "$dir/r.csv")
  before=$(echo "$line" | sed -n 's/.*keys_before=\([0-9]*\).*/\1/p')
  after=$(echo "$line" | sed -n 's/.*keys_after=\([0-9]*\).*/\1/p')
  if [ -z "$before" ] || [ "$before" -lt 5000 ] || [ "$before" != "$after" ]; then
    fail "$m: keys before $before, after $after"
  fi
  flushes=$(echo "$line" | sed -n 's/.*full_flushes=\([0-9]*\).*/\1/p')
  case $m in # a restart flushes every reader (a reconnect while it loads may add one)
    restart/*) [ "$flushes" -ge $readers ] || fail "$m: $flushes full flushes" ;;
  esac
done
[ "$(grep -c '<polyline' "$dir/r.svg")" = 4 ] || fail "the SVG has not 4 polylines"
tail -1 "$dir/r.svg" | grep -q '^</svg>$' || fail "the SVG is not closed"
# 2 s before and 1 s after, in 100 ms buckets, per scenario, and the header.
[ "$(wc -l <"$dir/b.csv")" = $((4 * 30 + 1)) ] || fail "bucket CSV: $(wc -l <"$dir/b.csv") lines"
grep -q "links killed" "$dir/out" || fail "no kill reported"
echo "tc-bench recovery: 4 scenarios, counters as expected"
