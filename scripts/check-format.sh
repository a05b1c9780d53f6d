#!/usr/bin/env bash
# Fails (exit 1) and prints a diff when a tracked C file (*.c, *.h) is not formatted as
# .clang-format says; exit 0 when every one is.
#
#   scripts/check-format.sh [FILE...]     default: every C file git tracks
#
# To format a file: clang-format -i FILE. The style is tuned for clang-format 14 (Debian
# 12's clang-format package): another major version formats some constructs differently,
# so the check uses $CLANG_FORMAT, else clang-format-14, else clang-format, and says so when
# that is not version 14.
set -euo pipefail
cd "$(dirname "$0")/.."

cf=${CLANG_FORMAT:-}
if [ -z "$cf" ]; then
  for c in clang-format-14 clang-format; do
    command -v "$c" >/dev/null && { cf=$c; break; }
  done
fi
[ -n "$cf" ] || { echo "check-format: clang-format not found (scripts/deps.sh)" >&2; exit 2; }
ver=$("$cf" --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
[ "$ver" = 14 ] || echo "check-format: note: $cf is version $ver; .clang-format is tuned for 14" >&2

if [ $# -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(git ls-files '*.c' '*.h')
fi

bad=0
lines=0
for f in "${files[@]}"; do
  if ! d=$("$cf" --style=file "$f" | diff -u --label "a/$f" --label "b/$f" "$f" -); then
    printf '%s\n' "$d"
    bad=$((bad + 1))
    lines=$((lines + $(printf '%s\n' "$d" | grep -v '^--- a/' | grep -c '^-' || true)))
  fi
done
if [ "$bad" -ne 0 ]; then
  echo "check-format: $bad of ${#files[@]} files not formatted ($lines lines would change);" \
       "run clang-format -i on them"
  exit 1
fi
echo "check-format: ${#files[@]} files formatted"
