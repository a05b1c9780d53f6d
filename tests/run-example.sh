#!/bin/sh
# Runs each example program against a private Redis; fails if any fails.
set -e
: "${top_builddir:=.}"
for ex in dashboard per_object per_query unread_count catalog_version graphql_cache; do
  echo "== examples/$ex"
  "$top_builddir/tests/with-redis" "$top_builddir/examples/$ex"
done
