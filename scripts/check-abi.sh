#!/usr/bin/env bash
# ABI check: compares libtiercache.so with the ABI of the last release recorded in abi/
# (abidiff, from Debian's abigail-tools) and fails on any difference that
# abi/tiercache.abignore does not allow: it allows new functions, and members appended at
# the end of tc_options and tc_stats. An incompatible change passes only when configure.ac's
# TC_LT_VERSION has bumped libtool's 'current' past the release's and reset 'age' to 0
# (docs/design/versioning.md).
#
#   scripts/check-abi.sh [LIBTIERCACHE.so [INCLUDE_DIR]]
#
# INCLUDE_DIR: the public headers that library was built with (default include/). Without
# an argument it builds the library in build/abi (configure CFLAGS='-g -O2', the
# flags the baseline was made with: abidiff reads the types from the debug information).
set -euo pipefail
args=()
for a in "$@"; do args+=("$(realpath "$a")"); done
set -- "${args[@]}"
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
base=abi/libtiercache.abi
supp=abi/tiercache.abignore

command -v abidiff >/dev/null || { echo "check-abi: abidiff not found (abigail-tools; scripts/deps.sh)" >&2; exit 2; }

if [ $# -gt 0 ]; then
  so=$1
else
  . "$top/scripts/deps.sh"
  autogen_if_needed
  dir=$top/build/abi
  mkdir -p "$dir"
  ( cd "$dir"
    [ -f Makefile ] || "$top/configure" CFLAGS='-g -O2' >configure.out 2>&1 || { cat configure.out; exit 1; }
    make -j2 lib/libtiercache.la >build.out 2>&1 || { tail -30 build.out; exit 1; } ) || exit 2
  so=$dir/lib/.libs/libtiercache.so
fi
[ -f "$so" ] || { echo "check-abi: $so not found" >&2; exit 2; }
headers=${2:-include}

# version-info current:revision:age of the release (abi/version-info) and of the tree.
read -r base_vi <abi/version-info
vi=$(sed -n 's/.*AC_SUBST(\[TC_LT_VERSION\], *\[\([0-9]*:[0-9]*:[0-9]*\)\]).*/\1/p' configure.ac)
[ -n "$vi" ] || { echo "check-abi: TC_LT_VERSION not found in configure.ac" >&2; exit 2; }
IFS=: read -r bcur _ _ <<<"$base_vi"
IFS=: read -r cur _ age <<<"$vi"
if [ "$age" -gt "$cur" ]; then
  echo "check-abi: TC_LT_VERSION $vi: age cannot exceed current" >&2
  exit 1
fi

echo "== abidiff: $base (version-info $base_vi) vs $so (version-info $vi)"
# --hd2: types the public header does not define (the opaque handles' insides, internals)
# are private, and their changes are not ABI changes.
rc=0
abidiff --hd2 "$headers" --suppressions "$supp" "$base" "$so" || rc=$?
if [ $((rc & 3)) -ne 0 ]; then
  echo "check-abi: abidiff failed to run (exit $rc)" >&2
  exit 2
fi
if [ "$rc" -eq 0 ]; then
  # Compatible; but an addition the suppressions allowed (a new function, an appended
  # member) is still a new interface: libtool's rules want current + 1 and age + 1 over the
  # release, with the soname (current - age) unchanged. abidiff without the suppressions
  # tells whether there was one.
  raw=0
  abidiff --hd2 "$headers" "$base" "$so" >/dev/null || raw=$?
  IFS=: read -r _ _ bage <<<"$base_vi"
  if [ "$raw" -ne 0 ] && { [ "$cur" -le "$bcur" ] || [ $((cur - age)) -ne $((bcur - bage)) ]; }; then
    echo "check-abi: interfaces were added since the release (abidiff without" \
         "$supp lists them), but TC_LT_VERSION $vi does not say so: set it to" \
         "$((bcur + 1)):0:$((bage + 1)) in configure.ac (docs/design/versioning.md)"
    exit 1
  fi
  echo "check-abi: ABI compatible with the release"
  exit 0
fi
if [ "$cur" -gt "$bcur" ] && [ "$age" -eq 0 ]; then
  echo "check-abi: the ABI changed incompatibly, and TC_LT_VERSION $vi declares it"
  echo "           (current $bcur -> $cur, age 0): regenerate abi/ when this is released"
  exit 0
fi
echo "check-abi: the ABI changed incompatibly (above). Keep the old functions and layouts" \
     "(docs/design/versioning.md); or, for a release that breaks the ABI on purpose, set" \
     "TC_LT_VERSION to $((bcur + 1)):0:0 in configure.ac"
exit 1
