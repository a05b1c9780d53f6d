#!/usr/bin/env bash
# Fails (exit 1), listing them, when a library source file (lib/*.c, lib/*.h) is not named in
# docs/design/architecture.md, so that the architecture document keeps up with the modules.
# A file counts as named when its path (lib/cache.c) or its file name (cache.c) appears there
# as a word. A module's header (lib/x.h beside lib/x.c) is also named by its module, as the
# document says once that modules talk through their lib/<module>.h headers; a header with
# no .c of its own (lib/remote_conn.h) must be named itself.
#
#   scripts/check-architecture.sh [DOC]      default: docs/design/architecture.md
set -euo pipefail
doc=${1:+$(realpath "$1")}
cd "$(dirname "$0")/.."
doc=${doc:-docs/design/architecture.md}
[ -f "$doc" ] || { echo "check-architecture: $doc not found" >&2; exit 2; }

named() {
  local re="(^|[^A-Za-z0-9_.-])(lib/)?${1//./\\.}([^A-Za-z0-9_]|$)"
  grep -qE "$re" "$doc"
}

missing=()
n=0
for f in lib/*.c lib/*.h; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  name=${f#lib/}
  named "$name" && continue
  [[ $name == *.h ]] && [ -e "lib/${name%.h}.c" ] && named "${name%.h}.c" && continue
  missing+=("$f")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "check-architecture: ${#missing[@]} of $n files in lib/ are not named in $doc:"
  printf '  %s\n' "${missing[@]}"
  exit 1
fi
echo "check-architecture: all $n files in lib/ are named in $doc"
