# Sourced by test.sh and bench.sh (bash): what building, running and checking tiercache
# (./test.sh lint: clang-format 14, clang-tidy, cppcheck, abidiff; make check: python3 with
# python3-prometheus-client, the reference parser of the metrics text; ./test.sh deb:
# debhelper, lintian, help2man, ss, man) needs on Debian, and the function that installs whatever of it is missing (as root, or through sudo). Only
# Debian's own package archive is used, through apt-get.

DEPS="build-essential autoconf automake libtool pkg-config clang libhiredis-dev libssl-dev openssl uthash-dev
      check libxxhash-dev libjansson-dev redis-server redis-tools libclang-rt-dev gnuplot-nox
      libmicrohttpd-dev libsqlite3-dev curl wrk
      clang-format clang-tidy cppcheck abigail-tools python3 python3-prometheus-client
      debhelper lintian help2man iproute2 man-db"

install_deps() {
  local missing=()
  for p in $DEPS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "== installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Regenerates configure and Makefile.in from configure.ac and Makefile.am when they are
# missing or older than their sources. Run from the top of the source tree.
autogen_if_needed() {
  if ! { [ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ]; }; then
    ./autogen.sh >/dev/null 2>&1
  fi
}
