#!/usr/bin/env bash
# Static analysis of the library (lib/): cppcheck and clang-tidy, each with a small rule set
# of checks that find bugs in C. Exits 1 and lists the findings when there is any.
#
#   scripts/check-static.sh [BUILD_DIR]
#
# The sources include config.h, so they are analysed as configured in BUILD_DIR (default
# build/lint, configured on first use). The rules: .clang-tidy (each check left out says
# why) and, for cppcheck, the severities below plus scripts/cppcheck-suppressions.txt
# (each entry says why). A finding that is not a bug is silenced on its line, with a
# comment: NOLINT(check) for clang-tidy, "cppcheck-suppress id" for cppcheck.
# Needs cppcheck, clang-tidy and pkg-config (scripts/deps.sh installs them).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
build=${1:-$top/build/lint}
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -gt 2 ] && jobs=2

for tool in cppcheck clang-tidy pkg-config; do
  command -v "$tool" >/dev/null || { echo "check-static: $tool not found (scripts/deps.sh)" >&2; exit 2; }
done
if [ ! -f "$build/config.h" ]; then
  . "$top/scripts/deps.sh"
  autogen_if_needed
  mkdir -p "$build"
  (cd "$build" && "$top/configure" >configure.out 2>&1) || { cat "$build/configure.out"; exit 2; }
fi

srcs=(lib/*.c)
# shellcheck disable=SC2207 # pkg-config prints flags separated by spaces
deps=($(pkg-config --cflags-only-I hiredis libxxhash jansson))
incs=(-Iinclude -Ilib "-I$build" "${deps[@]}")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
found=0

# cppcheck: warning (undefined behaviour, leaks, bad pointer use, format strings) and
# portability (what breaks on another ABI: pointer/integer casts, shifts, sizes). style and
# performance are taste, not bugs. -D_GNU_SOURCE fixes the configuration to the one built.
echo "== cppcheck $(cppcheck --version | sed 's/^Cppcheck //') over lib/"
if ! cppcheck -q -j"$jobs" --std=c11 --library=posix --enable=warning,portability \
    --inline-suppr --suppressions-list=scripts/cppcheck-suppressions.txt \
    --error-exitcode=1 -D_GNU_SOURCE "${incs[@]}" "${srcs[@]}" 2>"$out/cppcheck"; then
  found=1
fi
cat "$out/cppcheck"
[ -s "$out/cppcheck" ] && found=1

# clang-tidy: one process per file, $jobs at a time; the checks are in .clang-tidy.
echo "== clang-tidy $(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1) over lib/"
printf '%s\n' "${srcs[@]}" | xargs -P"$jobs" -I{} sh -c \
  'f=$1; shift; clang-tidy -quiet "$f" -- -std=c11 -D_GNU_SOURCE -pthread "$@" >"$0/${f##*/}.tidy" 2>&1 || true' \
  "$out" {} "${incs[@]}"
# Only the findings and their notes; clang-tidy's "N warnings generated" chatter is not one.
if cat "$out"/*.tidy | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' >/dev/null; then
  cat "$out"/*.tidy | grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$|^Suppressed [0-9]+ warnings|^Use -header-filter|^Error while processing'
  found=1
fi

if [ "$found" -ne 0 ]; then
  # The findings again, one line each, without the analyzer's paths to them.
  list=$(cat "$out/cppcheck" "$out"/*.tidy | grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' |
         sed "s|^$top/||")
  echo "check-static: $(printf '%s\n' "$list" | grep -c .) findings (fix them, or silence a" \
       "false positive on its line with a comment saying why):"
  printf '%s\n' "$list"
  exit 1
fi
echo "check-static: no findings"
