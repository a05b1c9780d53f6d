#!/bin/sh
# Runs each example program against a private Redis; fails if any fails.
set -e
: "${top_builddir:=.}"
for ex in dashboard; do
  echo "== examples/$ex"
  "$top_builddir/tests/with-redis" "$top_builddir/examples/$ex"
done
