#!/usr/bin/env bash
# Packaging check: builds the Debian packages from a copy of the tree (dpkg-buildpackage
# -us -uc -b), runs lintian on them (an error fails, warnings are shown), installs them
# with apt-get, then, in an empty directory and with no path into the tree, compiles
# examples/per_object.c and a version check against the installed library with
# `pkg-config --cflags --libs tiercache`, runs them against a redis-server it starts on a
# free 127.0.0.1 port (stopped by its PID), and reads the installed manual pages.
# At the end it removes the packages it installed (apt-get purge), whatever happened.
#
#   scripts/check-deb.sh        as root (CI), or through sudo
#
# The package build skips the test suite (DEB_BUILD_OPTIONS=nocheck: the other CI
# variants run it); set DEB_BUILD_OPTIONS= to run it there too. It refuses to run when a
# tiercache package is already installed: it would replace it, and then remove it.
# Everything it writes is in a temporary directory, removed at the end (TC_DEB_KEEP=1 keeps
# it, and says where). About a minute and a half on two cores.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
pkgs=(libtiercache0 libtiercache-dev tiercache-tools)

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
for tool in dpkg-buildpackage dh lintian help2man git redis-server redis-cli pkg-config; do
  command -v "$tool" >/dev/null ||
    { echo "check-deb: $tool not found (scripts/deps.sh installs what is needed)" >&2; exit 2; }
done
[ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1 ||
  { echo "check-deb: needs a git checkout (it copies the files git knows of)" >&2; exit 2; }
for p in "${pkgs[@]}"; do
  if dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q ' installed$'; then
    echo "check-deb: $p is already installed; remove it first ($sudo apt-get purge ${pkgs[*]})" >&2
    exit 2
  fi
done

tmp=$(mktemp -d /tmp/tc-deb.XXXXXX)
redis_pid=""
installed=()
cleanup() {
  local rc=$?
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  if [ ${#installed[@]} -gt 0 ]; then
    echo "== removing ${installed[*]}"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get purge -y -qq "${installed[@]}" >"$tmp/purge.log" 2>&1 ||
      { cat "$tmp/purge.log"; rc=1; }
  fi
  if [ "${TC_DEB_KEEP:-0}" = 1 ]; then echo "check-deb: kept $tmp"; else rm -rf "$tmp"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build
# A copy of what git tracks, plus new files it does not ignore (uncommitted work is
# checked too); nothing of a build directory comes along.
echo "== dpkg-buildpackage -us -uc -b (in $tmp/tiercache)"
mkdir "$tmp/tiercache"
git ls-files -z -co --exclude-standard |
  while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
  tar --null -T - -cf - | tar -x -C "$tmp/tiercache"
if ! (cd "$tmp/tiercache" &&
      DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS-nocheck} dpkg-buildpackage -us -uc -b \
        >"$tmp/build.log" 2>&1); then
  tail -40 "$tmp/build.log"
  echo "check-deb: the package build failed (above)"
  exit 1
fi
debs=()
for p in "${pkgs[@]}"; do
  f=("$tmp/${p}_"*.deb)
  [ -e "${f[0]}" ] || { echo "check-deb: ${p}_*.deb was not built" >&2; exit 1; }
  debs+=("${f[0]}")
done

# The shared library's package is named after its soname (libtiercache.so.N in
# libtiercacheN): a soname bump (docs/design/versioning.md) needs the package renamed too.
soname=$(dpkg-deb --fsys-tarfile "${debs[0]}" | tar -x -C "$tmp" --wildcards './usr/lib/*/libtiercache.so.*.*.*' &&
         objdump -p "$tmp"/usr/lib/*/libtiercache.so.*.*.* | awk '$1 == "SONAME" { print $2 }')
[ "$soname" = libtiercache.so.0 ] ||
  { echo "check-deb: the library's soname is $soname, its package libtiercache0" \
         "(debian/control and the .install and .symbols files name it)" >&2; exit 1; }

# ---------------------------------------------------------------- lintian
# Warnings are shown, errors fail. The one warning overridden (debian/*.lintian-overrides,
# initial-upload-closes-no-bugs) says why there.
echo "== lintian"
lintian "$tmp"/*.changes >"$tmp/lintian.log" 2>&1 || true
grep -E '^[EW]: ' "$tmp/lintian.log" || true
if grep -q '^E: ' "$tmp/lintian.log"; then
  echo "check-deb: lintian reports errors (above)"
  exit 1
fi

# ---------------------------------------------------------------- install
echo "== apt-get install ${pkgs[*]}"
before=$(dpkg-query -W -f '${Package}\n' | sort)
if ! DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
       "${debs[@]}" >"$tmp/install.log" 2>&1; then
  cat "$tmp/install.log"
  # Whatever got installed still goes at the end.
  mapfile -t installed < <(comm -13 <(echo "$before") <(dpkg-query -W -f '${Package}\n' | sort))
  exit 1
fi
# What the installation added (the packages, and any dependency apt pulled in) is what the
# clean-up removes.
mapfile -t installed < <(comm -13 <(echo "$before") <(dpkg-query -W -f '${Package}\n' | sort))

# ---------------------------------------------------------------- compile against it
# An empty directory, the installed pkg-config file only (no PKG_CONFIG_PATH, no CPATH or
# LIBRARY_PATH), and nothing but the example's source from the tree.
use=$tmp/use
mkdir "$use"
cp examples/per_object.c "$use/"
cat >"$use/version.c" <<'EOF'
/* The version the header says, the one the library loaded at run time says, printed for
 * the script to compare with pkg-config's. */
#include <stdio.h>
#include <string.h>
#include <tiercache.h>

int main(void)
{
    char header[32];
    snprintf(header, sizeof header, "%d.%d.%d", TC_VERSION_MAJOR, TC_VERSION_MINOR,
             TC_VERSION_PATCH);
    printf("%s\n", tc_version());
    return strcmp(header, tc_version()) != 0;
}
EOF
cd "$use"
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR CPATH C_INCLUDE_PATH LIBRARY_PATH LD_LIBRARY_PATH
flags=$(pkg-config --cflags --libs tiercache)
echo "== cc per_object.c version.c \$(pkg-config --cflags --libs tiercache) = $flags"
case "$flags" in *"$top"*) echo "check-deb: pkg-config points into the tree" >&2; exit 1 ;; esac
# shellcheck disable=SC2086 # $flags is a list of flags
cc -std=c11 -Wall -Wextra -Werror -o per_object per_object.c $flags
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -Werror -o version version.c $flags
lib=$(ldd ./per_object | awk '$1 ~ /^libtiercache\.so/ { print $3 }')
lib=$(realpath "$lib")
echo "   per_object loads $lib"
case "$lib" in /usr/lib/*) ;; *) echo "check-deb: libtiercache not loaded from /usr/lib" >&2; exit 1 ;; esac

v=$(./version) || { echo "check-deb: the header's version is not the library's ($v)" >&2; exit 1; }
pv=$(pkg-config --modversion tiercache)
tv=$(tc-bench --version)
dv=$(dpkg-query -W -f '${Version}' libtiercache0)
echo "   tc_version() $v, pkg-config $pv, $tv, package $dv"
if [ "$v" != "$pv" ] || [ "$tv" != "tc-bench $v" ]; then
  echo "check-deb: the versions disagree" >&2
  exit 1
fi
[ "${dv%-*}" = "$v" ] ||
  { echo "check-deb: debian/changelog's version $dv is not the library's $v: add an entry" >&2; exit 1; }

# ---------------------------------------------------------------- run it
# A free loopback port: one nothing listens on, and which our redis-server then holds (a
# port taken in between makes it exit, and the next port is tried).
mkdir "$tmp/redis"
port=""
for _ in $(seq 20); do
  p=$((20000 + RANDOM % 30000))
  [ -z "$(ss -Hltn "sport = :$p")" ] || continue
  redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp/redis" \
    --logfile "$tmp/redis/redis.log" --daemonize no &
  redis_pid=$!
  for _ in $(seq 50); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null)" = PONG ]; then port=$p; break 2; fi
    kill -0 "$redis_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill "$redis_pid" 2>/dev/null || true
  wait "$redis_pid" 2>/dev/null || true
  redis_pid=""
done
[ -n "$port" ] || { echo "check-deb: could not start redis-server on a free port" >&2; exit 1; }
echo "== per_object against redis-server (pid $redis_pid) on 127.0.0.1:$port"
TC_REDIS_URL=redis://127.0.0.1:$port/0 ./per_object | sed 's/^/   /'
kill "$redis_pid"
wait "$redis_pid" 2>/dev/null || true
redis_pid=""

# ---------------------------------------------------------------- manual pages
echo "== manual pages"
man -w 3 tc_get >/dev/null || { echo "check-deb: man 3 tc_get: no page installed" >&2; exit 1; }
MANPAGER=cat MANWIDTH=80 man 3 tc_get 2>/dev/null | grep -q 'tc_get' ||
  { echo "check-deb: man 3 tc_get shows nothing about tc_get" >&2; exit 1; }
missing=0
while read -r f; do
  man -w 3 "$f" >/dev/null 2>&1 || { echo "   no page for $f"; missing=1; }
done < <(sed -n 's/^TC_API .*[ *]\(tc_[a-z0-9_]*\)(.*/\1/p' "$top/include/tiercache.h")
[ "$missing" -eq 0 ] || { echo "check-deb: public functions without an installed page" >&2; exit 1; }
echo "   a page for every TC_API function; $(man -w 3 tc_get)"
man -w 1 tc-bench >/dev/null || { echo "check-deb: man 1 tc-bench: no page installed" >&2; exit 1; }

echo "check-deb: the packages build, have no lintian error, install, and work with pkg-config"
