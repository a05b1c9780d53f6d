#!/bin/sh
# make check for the reference server (examples/server): one Redis (the project's fixture,
# through tests/with-redis), one SQLite file, and three instances of tc-server on free
# loopback ports: A and B cache (two tiers), C has --no-cache and so reads SQLite itself,
# the truth. Reads go through A, writes through B (and back), and after every write A, B and
# C must answer the same. Then /metrics must carry the library's series. Every process the
# script starts is stopped by its PID, whatever happens.
set -u
: "${top_builddir:=.}"
if [ "${1:-}" != --with-redis ]; then
  exec "$top_builddir/tests/with-redis" /bin/sh "$0" --with-redis
fi
server=$top_builddir/examples/server/tc-server
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-server-check.XXXXXX") || exit 1
pids=""

cleanup() {
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null; done
  for pid in $pids; do
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() {
  echo "FAIL: $*" >&2
  for f in "$tmp"/*.err; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
  done
  exit 1
}

command -v curl >/dev/null 2>&1 || fail "curl is not installed (apt-get install curl)"
[ -n "${TC_REDIS_URL:-}" ] || fail "no Redis: tests/with-redis did not set TC_REDIS_URL"

# start NAME ARGS...: starts an instance on a free port and waits until it is listening.
start() {
  name=$1
  shift
  "$server" --port 0 --db "$tmp/db.sqlite" --rows 20000 --threads 2 \
    --redis-url "$TC_REDIS_URL" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pid=$!
  pids="$pids $pid"
  i=0
  until grep -q 'listening on' "$tmp/$name.out"; do
    kill -0 "$pid" 2>/dev/null || fail "instance $name exited before listening"
    [ $i -lt 300 ] || fail "instance $name not listening after 30 s"
    sleep 0.1
    i=$((i + 1))
  done
  port=$(sed -n 's|.*http://127\.0\.0\.1:\([0-9]*\)/.*|\1|p' "$tmp/$name.out")
  [ -n "$port" ] || fail "instance $name: no port in: $(cat "$tmp/$name.out")"
  eval "port_$name=$port"
  echo "instance $name: $(cat "$tmp/$name.out")"
}

# req METHOD INSTANCE PATH [JSON]: sets $code, $body and $xcache.
req() {
  eval "p=\$port_$2"
  if [ $# -ge 4 ]; then
    code=$(curl -sS --max-time 10 -X "$1" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' \
      -H 'Content-Type: application/json' --data "$4" "http://127.0.0.1:$p$3") ||
      fail "curl $1 $3 on $2"
  else
    code=$(curl -sS --max-time 10 -X "$1" -D "$tmp/h" -o "$tmp/b" -w '%{http_code}' \
      "http://127.0.0.1:$p$3") || fail "curl $1 $3 on $2"
  fi
  body=$(cat "$tmp/b")
  xcache=$(sed -n 's/^X-Cache: *\([a-z]*\).*/\1/p' "$tmp/h")
}

# get INSTANCE PATH: a GET that must answer 200.
get() {
  req GET "$@"
  [ "$code" = 200 ] || fail "GET $2 on $1: HTTP $code: $body"
}

# post INSTANCE PATH: a POST that must answer 200 with "ok":true.
post() {
  req POST "$@"
  [ "$code" = 200 ] || fail "POST $2 on $1: HTTP $code: $body"
  case $body in *'"ok":true'*) ;; *) fail "POST $2 on $1: $body" ;; esac
}

# field NAME: the first value of "NAME" in $body (quotes dropped).
field() {
  printf '%s' "$body" | grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2 | tr -d '"'
}

# agree PATH [JSON]: A, B and C answer PATH alike (a GET, or a POST of JSON); polls for up to
# two seconds, since an invalidation reaches the other instance's local tier asynchronously
# (typically well under a millisecond). Leaves A's answer in $body.
agree() {
  tries=0
  while :; do
    for i in C B A; do
      if [ $# -ge 2 ]; then req POST "$i" "$1" "$2"; else req GET "$i" "$1"; fi
      [ "$code" = 200 ] || fail "$1 on $i: HTTP $code: $body"
      eval "body_$i=\$body"
    done
    [ "$body_A" = "$body_C" ] && [ "$body_B" = "$body_C" ] && break
    tries=$((tries + 1))
    [ $tries -lt 20 ] || fail "$1: the instances disagree after a write:
  A: $body_A
  B: $body_B
  C (SQLite): $body_C"
    sleep 0.1
  done
  [ $tries -eq 0 ] || echo "  ($1 agreed after $tries retries)"
}

start A
start B
start C --no-cache

echo "== per object: a student's GPA"
agree /students/5/gpa
get A /students/5/gpa
gpa0=$(field gpa)
post B "/students/5/grades?course=1&grade=0.0"
agree /students/5/gpa
gpa1=$(field gpa)
[ "$gpa1" != "$gpa0" ] || fail "GPA still $gpa0 after a grade of 0.0 was written through B"
post A "/students/5/grades?course=1&grade=4.0"
agree /students/5/gpa
gpa2=$(field gpa)
[ "$gpa2" != "$gpa1" ] || fail "GPA still $gpa1 after a grade of 4.0 was written through A"
echo "  GPA $gpa0, then $gpa1 (written through B), then $gpa2 (through A)"

echo "== a counter and a query: unread notifications and the list"
agree /users/7/unread
unread0=$(field unread)
agree "/users/7/notifications?page=1&filter=unread"
post B "/users/7/notifications?body=check-$$"
agree /users/7/unread
unread1=$(field unread)
[ "$unread1" -eq $((unread0 + 1)) ] || fail "unread $unread0, then $unread1 after a new one"
agree "/users/7/notifications?page=1&filter=unread"
case $body in *"check-$$"*) ;; *) fail "the new notification is not in A's list: $body" ;; esac
nid=$(field id)
post A "/users/7/notifications/$nid/read"
agree /users/7/unread
unread2=$(field unread)
[ "$unread2" -eq "$unread0" ] || fail "unread $unread1, then $unread2 after marking one read"
agree "/users/7/notifications?page=1&filter=unread"
case $body in *"check-$$"*) fail "notification $nid still unread in A's list: $body" ;; esac
agree "/users/7/notifications?page=1&filter=all"
echo "  unread $unread0, $unread1 after a new one (through B), $unread2 after reading it (A)"

echo "== bulk: a catalogue version"
agree /products/3
price0=$(field price)
post B "/catalogue/reprice?percent=10"
agree /products/3
price1=$(field price)
[ "$price1" -gt "$price0" ] || fail "price $price0, then $price1 after +10%"
echo "  price $price0, then $price1 after the reprice (through B)"

echo "== GraphQL: one key for two spellings, tag invalidation"
q1='{"query":"query S($id: Int!) { student(id: $id) { name gpa grades { course grade } } }","variables":{"id":5}}'
q2='{"query":"query S($id: Int!) {\n  student(id: $id) {\n    name, gpa\n    grades { course grade }\n  }\n}","variables": {"id": 5}}'
req POST A /graphql "$q1"
[ "$code" = 200 ] && [ "$xcache" = miss ] || fail "first GraphQL query on A: $code $xcache $body"
first=$body
req POST B /graphql "$q2"
[ "$code" = 200 ] && [ "$xcache" = hit ] || fail "GraphQL respelled on B: $code $xcache $body"
[ "$body" = "$first" ] || fail "GraphQL on B differs from A: $body"
post B "/students/5/grades?course=2&grade=0.5"
agree /graphql "$q1"
case $body in *'"course":2,"grade":"0.50"'*) ;; *) fail "GraphQL on A is stale: $body" ;; esac
echo "  a hit on B for A's query spelled differently; fresh on A after a write through B"

echo "== fragments: the dashboard"
get A /users/7/dashboard
case $body in *'"inbox":{"unread":'*'"cheapest":[{'*) ;; *) fail "dashboard: $body" ;; esac
get A /users/7/dashboard
dash=$body
get B /users/7/dashboard
[ "$body" = "$dash" ] || fail "dashboards differ: A $dash, B $body"

echo "== /metrics"
get A /metrics
for series in 'tiercache_local_hits_total{key_type="grades:gpa"}' \
  'tiercache_loads_total{key_type="notifications:list"}' \
  'tiercache_inval_received_total' 'tiercache_sets_total{key_type="gql:public"}' \
  'tcserver_db_queries_total' 'tcserver_requests_total{route="gpa"}'; do
  printf '%s\n' "$body" | grep -qF "$series" || fail "/metrics on A has no $series"
done
hits=$(printf '%s\n' "$body" | sed -n 's/^tiercache_local_hits_total{key_type="grades:gpa"} //p')
[ "${hits:-0}" -gt 0 ] || fail "no local hit of grades:gpa on A: $hits"
echo "  the library's series are there; A answered grades:gpa from its local tier $hits times"

echo "PASS: three instances agreed after every write"
