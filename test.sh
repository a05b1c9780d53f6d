#!/usr/bin/env bash
# Builds tiercache and runs its test suite against private redis-servers it starts itself.
#
#   ./test.sh            gcc build with -Werror, then make check
#   ./test.sh VARIANT..  any of: gcc clang asan tsan cluster tls distcheck torture fuzz
#                        stress lint deb valgrind all
#                        (cluster: gcc build, make check-cluster against a 3-master
#                        loopback Redis Cluster, and the Sentinel tests against their own
#                        master, replica and sentinel;
#                        tls: gcc build, make check-tls: tests/check_tls, then the suites
#                        again with every server on TLS only, the cluster and Sentinel
#                        tests included (certificates made by openssl at run time);
#                        torture: clang + ASan + --enable-alloc-fail,
#                        tests/check_torture only; fuzz: make fuzz FUZZ_SECONDS=10, one case
#                        per target; stress: make stress STRESS_SECONDS=5 in the gcc
#                        build, then in a TSan build (build/tsan), one case each;
#                        valgrind: make check-valgrind, one case per program, not in all;
#                        lint: scripts/check-{format,static,abi,architecture}.sh, one case
#                        each; deb: scripts/check-deb.sh, one case: builds the Debian
#                        packages, lintian, installs them, compiles and runs an example
#                        against them with pkg-config, then removes them; as root)
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
    # A skipped test (exit 77: not runnable in this variant, e.g. forks under TSan) ran no case.
    if grep -q ':test-result: SKIP' "$trs"; then continue; fi
    if grep -q ':test-result: PASS' "$trs"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  # The logs of make check-cluster and check-tls have no .trs: one without a summary is a
  # program that died, a failure.
  for log in "$dir"/tests/check_*.log; do
    [ -e "$log" ] && [ ! -e "${log%.log}.trs" ] || continue
    grep -q 'Checks: ' "$log" || failed=$((failed + 1))
  done
}

run_variant() {
  local v=$1 cc=gcc flags=(--enable-werror) target=check
  case $v in
    gcc) ;;
    cluster) target=check-cluster ;;
    tls) target=check-tls ;;
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
    echo "== $v: make $target"
    local env=()
    # TSan needs fixed memory mappings that high-entropy ASLR can break: run without ASLR.
    if [ "$v" = tsan ] && command -v setarch >/dev/null; then env=(setarch "$(uname -m)" -R); fi
    rm -f tests/*.log tests/*.trs
    if ! "${env[@]}" make -j2 "$target" >check.out 2>&1; then
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

# Configures (once) and enters build/<name> with the compiler and flags given; then runs
# the rest of the command line there. Build output goes to build.out.
in_build() {
  local name=$1 cc=$2; shift 2
  local flags=() dir=$top/build/$name
  while [ $# -gt 0 ] && [ "$1" != -- ]; do flags+=("$1"); shift; done
  shift
  mkdir -p "$dir"
  ( cd "$dir"
    [ -f Makefile ] || CC=$cc "$top/configure" "${flags[@]}" >configure.out 2>&1 || { cat configure.out; exit 1; }
    "$@" )
}

# torture: the allocation-failure suite in an ASan build with injection on
# (--enable-alloc-fail); only tests/check_torture is built and run.
run_torture() {
  echo "== torture: tests/check_torture (clang, ASan, --enable-alloc-fail)"
  in_build torture clang --enable-werror --enable-asan --enable-alloc-fail -- bash -c '
    make -j"$(nproc)" tests/check_torture >build.out 2>&1 || { tail -50 build.out; exit 1; }
    rm -f tests/*.log tests/*.trs
    make check TESTS=tests/check_torture check_PROGRAMS=tests/check_torture >check.out 2>&1 ||
      grep -h -A3 -E "^[^:]+:[0-9]+:[EF]:|FAIL|ERROR" tests/*.log | head -40
    grep -E "^(PASS|FAIL|ERROR):" check.out
    grep -h "^torture:" tests/check_torture.log || true' ||
    { failed=$((failed + 1)); return 0; }
  count_results "$top/build/torture"
}

# fuzz: every libFuzzer target of make fuzz (clang) for FUZZ_SECONDS (default 10) from its
# seed corpus; each target is one test case. Runs in the clang variant's build directory
# (the targets compile the library sources themselves).
run_fuzz() {
  local secs=${FUZZ_SECONDS:-10} out=$top/build/clang/fuzz.out
  echo "== fuzz: make fuzz FUZZ_SECONDS=$secs (clang, libFuzzer + ASan + UBSan)"
  in_build clang clang --enable-werror -- bash -c 'make fuzz FUZZ_SECONDS="$1" >fuzz.out 2>&1' _ "$secs" ||
    true
  if ! grep -qE '^fuzz_[a-z]+: (ok|CRASH)' "$out" 2>/dev/null; then
    tail -30 "$out" 2>/dev/null || true
    failed=$((failed + 1))
    return 0
  fi
  grep -E '^(fuzz_[a-z]+: |[^ ]+ERROR|SUMMARY)' "$out" || true
  local ok crash
  ok=$(grep -cE '^fuzz_[a-z]+: ok' "$out" || true)
  crash=$(grep -cE '^fuzz_[a-z]+: CRASH' "$out" || true)
  passed=$((passed + ok))
  failed=$((failed + crash))
}

# stress: the soak program (make stress) for STRESS_SECONDS (default 5) against a Redis
# killed and restarted every 3 s, its invalidation links cut at random; one test case in
# the gcc variant's build directory, one in the tsan variant's (its races and the
# recovery's under ThreadSanitizer, without ASLR as the tsan variant runs).
run_stress() {
  local secs=${STRESS_SECONDS:-5} v cc flags
  for v in gcc tsan; do
    cc=gcc flags=(--enable-werror)
    [ "$v" = tsan ] && cc=clang flags+=(--enable-tsan)
    echo "== stress ($v): make stress STRESS_SECONDS=$secs"
    if in_build "$v" "$cc" "${flags[@]}" -- bash -c '
        make -j"$(nproc)" stress/tc-stress >build.out 2>&1 || { tail -50 build.out; exit 1; }
        env=(); [ "$2" = tsan ] && command -v setarch >/dev/null && env=(setarch "$(uname -m)" -R)
        "${env[@]}" make -s stress STRESS_SECONDS="$1" >stress.out 2>&1; rc=$?
        cat stress.out; exit $rc' _ "$secs" "$v"; then
      passed=$((passed + 1))
    else
      failed=$((failed + 1))
    fi
  done
}

# valgrind (not in all: about 3 min on top of CI's budget): make check-valgrind in the gcc
# variant's directory, every tests/check_* under memcheck; one test case per program.
run_valgrind() {
  echo "== valgrind: make check-valgrind (memcheck, CK_FORK=no)"
  local out=$top/build/gcc/valgrind.out
  in_build gcc gcc --enable-werror -- bash -c '
    make -j"$(nproc)" >build.out 2>&1 || { tail -50 build.out; exit 1; }
    make check-valgrind >valgrind.out 2>&1' || true
  grep -E '^(PASS|FAIL) \(valgrind\)' "$out" 2>/dev/null || { failed=$((failed + 1)); return 0; }
  local ok bad
  ok=$(grep -c '^PASS (valgrind)' "$out" || true)
  bad=$(grep -c '^FAIL (valgrind)' "$out" || true)
  passed=$((passed + ok))
  failed=$((failed + bad))
}

# lint: the checks that catch drift (docs/design/versioning.md for the ABI): formatting
# (.clang-format), static analysis of lib/ (cppcheck, clang-tidy), the ABI against the last
# release (abi/), and every lib/ file named in docs/design/architecture.md. One test case
# each; each one's output is in build/lint/<check>.out.
run_lint() {
  local dir=$top/build/lint check out
  mkdir -p "$dir"
  for check in format static abi architecture; do
    echo "== lint: scripts/check-$check.sh"
    out=$dir/$check.out
    if "$top/scripts/check-$check.sh" >"$out" 2>&1; then
      passed=$((passed + 1))
      tail -1 "$out"
    else
      failed=$((failed + 1))
      if [ "$(wc -l <"$out")" -le 150 ]; then cat "$out"
      else head -80 "$out"; echo "... (all of it in $out)"; tail -40 "$out"; fi
    fi
  done
}

# deb: the Debian packages, built from a copy of the tree, installed on this machine, used
# from an empty directory with pkg-config, and removed (scripts/check-deb.sh); one test
# case. Its output is in build/deb/check-deb.out.
run_deb() {
  local dir=$top/build/deb
  mkdir -p "$dir"
  echo "== deb: scripts/check-deb.sh"
  if "$top/scripts/check-deb.sh" >"$dir/check-deb.out" 2>&1; then
    passed=$((passed + 1))
    grep '^check-deb: ' "$dir/check-deb.out" | tail -1
  else
    failed=$((failed + 1))
    tail -60 "$dir/check-deb.out"
  fi
}

variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(gcc)
[ "${variants[0]}" = all ] && variants=(gcc clang asan tsan cluster tls distcheck torture fuzz stress lint deb)
for v in "${variants[@]}"; do
  case $v in
    distcheck) run_distcheck ;;
    torture) run_torture ;;
    fuzz) run_fuzz ;;
    stress) run_stress ;;
    valgrind) run_valgrind ;;
    lint) run_lint ;;
    deb) run_deb ;;
    *) run_variant "$v" ;;
  esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
