#!/bin/sh
# The Prometheus text, hostile key types included, through the reference parser
# (python3-prometheus-client, which scripts/deps.sh installs). A missing parser is a
# failure, not a skip.
: "${top_builddir:=.}" "${srcdir:=.}"
py=
for p in ${PYTHON:-} python3 /usr/bin/python3; do
  if "$p" -c 'import prometheus_client.parser' >/dev/null 2>&1; then py=$p; break; fi
done
if [ -z "$py" ]; then
  echo "no python3 with prometheus_client: install python3-prometheus-client (scripts/deps.sh)"
  exit 1
fi
out=${TMPDIR:-/tmp}/tc-prom.$$
trap 'rm -f "$out"' EXIT
"$top_builddir/tests/with-redis" "$top_builddir/tests/prom-dump" >"$out" || exit 1
"$py" "$srcdir/tests/prom_check.py" <"$out"
