#!/bin/sh
# tc-bench --version prints the version of the library it runs on, which is the header's.
set -e
: "${top_builddir:=.}" "${srcdir:=.}"
want=$(awk '/^#define TC_VERSION_(MAJOR|MINOR|PATCH) / { v = v s $3; s = "." }
            END { print v }' "$srcdir/include/tiercache.h")
got=$("$top_builddir/bench/tc-bench" --version)
if [ "$got" != "tc-bench $want" ]; then
  echo "tc-bench --version: got '$got', want 'tc-bench $want'"
  exit 1
fi
echo "$got"
