#!/usr/bin/env bash
# Builds tiercache and runs its test suite against private redis-servers it starts itself.
#
#   ./test.sh            gcc build with -Werror, then make check
#   ./test.sh VARIANT..  any of: gcc clang asan tsan distcheck all
#
# On Debian it first installs what the build needs (as root, or through sudo). Each variant
# builds in build/<variant>. It ends with one line: "N passed, M failed" (test cases).
set -euo pipefail
cd "$(dirname "$0")"
top=$(pwd)

. "$top/scripts/deps.sh" # DEPS, install_deps

command -v apt-get >/dev/null 2>&1 && install_deps
[ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] || ./autogen.sh >/dev/null 2>&1

# Test cases counted from Check's summaries ("Checks: N, Failures: F, Errors: E") and, for
# the other tests (scripts), from automake's .trs results.
passed=0
failed=0
count_results() {
  local dir=$1 n f e
  while read -r n f e; do
    passed=$((passed + n - f - e)); failed=$((failed + f + e))
  done < <(grep -ho 'Checks: [0-9]*, Failures: [0-9]*, Errors: [0-9]*' "$dir"/tests/check_*.log 2>/dev/null |
           sed 's/[^0-9 ]//g; s/  */ /g; s/^ //')
  # A Check program that died before its summary, and the non-Check tests, count by result.
  for trs in "$dir"/tests/*.trs; do
    [ -e "$trs" ] || continue
    local log=${trs%.trs}.log
    if grep -q 'Checks: ' "$log" 2>/dev/null; then continue; fi
    if grep -q ':test-result: PASS' "$trs"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
}

run_variant() {
  local v=$1 cc=gcc flags=(--enable-werror)
  case $v in
    gcc) ;;
    clang) cc=clang ;;
    asan) cc=clang; flags+=(--enable-asan) ;;
    tsan) cc=clang; flags+=(--enable-tsan) ;;
    *) echo "unknown variant $v" >&2; exit 2 ;;
  esac
  local dir=$top/build/$v
  mkdir -p "$dir"
  echo "== $v: configure and build"
  ( cd "$dir"
    [ -f Makefile ] || CC=$cc "$top/configure" "${flags[@]}" >configure.out 2>&1 || { cat configure.out; exit 1; }
    make -j"$(nproc)" >build.out 2>&1 || { tail -50 build.out; exit 1; }
    echo "== $v: make check"
    local env=()
    # TSan needs fixed memory mappings that high-entropy ASLR can break: run without ASLR.
    if [ "$v" = tsan ] && command -v setarch >/dev/null; then env=(setarch "$(uname -m)" -R); fi
    rm -f tests/*.log tests/*.trs
    if ! "${env[@]}" make -j2 check >check.out 2>&1; then
      grep -h -A3 -E '^[^:]+:[0-9]+:[EF]:|FAIL|ERROR' tests/*.log 2>/dev/null | head -60 || true
    fi
    grep -E '^(PASS|FAIL|ERROR|XFAIL|SKIP):' check.out || true
  ) || { failed=$((failed + 1)); return 0; }
  count_results "$dir"
}

run_distcheck() {
  local dir=$top/build/distcheck
  mkdir -p "$dir"
  echo "== distcheck"
  ( cd "$dir"; [ -f Makefile ] || "$top/configure" >configure.out 2>&1
    make -j"$(nproc)" distcheck >distcheck.out 2>&1 ) && passed=$((passed + 1)) ||
    { tail -40 "$dir/distcheck.out"; failed=$((failed + 1)); }
}

variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(gcc)
[ "${variants[0]}" = all ] && variants=(gcc clang asan tsan distcheck)
for v in "${variants[@]}"; do
  if [ "$v" = distcheck ]; then run_distcheck; else run_variant "$v"; fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
