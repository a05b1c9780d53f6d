#!/bin/sh
# The API reference is complete and current (run by make check):
#  - every TC_API function of include/tiercache.h has its manual page docs/man/<name>.3,
#    listed in docs/man/man.am (what make install installs), as do the overview
#    tiercache(3) and tiercache-types(3);
#  - docs/man/ and docs/api.md are what scripts/gen-apidocs.py makes of the header now
#    (after a header change: make apidocs, and commit the result).
# python3 is required (scripts/deps.sh installs it): a missing one is a failure.
top=$(cd "$(dirname "$0")/.." && pwd)
fail=0
names=$(sed -n 's/^TC_API .*[^a-zA-Z0-9_(]\([a-z_][a-z0-9_]*\)(.*/\1/p' "$top/include/tiercache.h")
n=0
for f in $names tiercache tiercache-types; do
  n=$((n + 1))
  if [ ! -f "$top/docs/man/$f.3" ]; then
    echo "FAIL: no manual page docs/man/$f.3"; fail=1
  elif ! grep -q "docs/man/$f\.3" "$top/docs/man/man.am"; then
    echo "FAIL: docs/man/$f.3 is not in docs/man/man.am (make install would miss it)"; fail=1
  fi
done
[ "$n" -gt 30 ] || { echo "FAIL: only $n functions found in include/tiercache.h"; fail=1; }

py=$(command -v python3) || { echo "FAIL: python3 not found (scripts/deps.sh)"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tc-apidocs.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
"$py" "$top/scripts/gen-apidocs.py" --out "$tmp" 2>/dev/null || { echo "FAIL: gen-apidocs.py"; exit 1; }
if ! diff -r "$tmp/docs/man" "$top/docs/man" >"$tmp/diff" ||
   ! diff "$tmp/docs/api.md" "$top/docs/api.md" >>"$tmp/diff"; then
  echo "FAIL: docs/man or docs/api.md differ from what include/tiercache.h makes (run make apidocs):"
  head -n 40 "$tmp/diff"
  fail=1
fi
[ "$fail" -eq 0 ] && echo "ok: $n manual pages for the functions and the overview, all current"
exit $fail
