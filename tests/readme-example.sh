#!/bin/sh
# The README's example: examples/readme.c is its text (so it compiles as the README shows
# it), it prints the reason and exits 1 when Redis is not there, and it works when it is.
set -e
: "${top_builddir:=.}" "${srcdir:=.}"
awk '/^## Example/ { on = 1 } on && /^```c/ { code = 1; next } code && /^```/ { exit }
     code { print }' "$srcdir/README.md" > readme-example.extracted
if ! cmp -s readme-example.extracted "$srcdir/examples/readme.c"; then
  echo "examples/readme.c differs from the README's example:"
  diff -u "$srcdir/examples/readme.c" readme-example.extracted || true
  exit 1
fi
rm -f readme-example.extracted
# No Redis: port 1 on loopback refuses connections.
if TC_REDIS_URL=redis://127.0.0.1:1/0 "$top_builddir/examples/readme" 2> readme-example.err; then
  echo "the example succeeded without a Redis"
  exit 1
fi
cat readme-example.err
if ! grep -q "cannot open the cache: .*cannot connect to Redis at 127.0.0.1 port 1" \
    readme-example.err; then
  echo "the example did not say why it failed"
  exit 1
fi
rm -f readme-example.err
out=$("$top_builddir/tests/with-redis" "$top_builddir/examples/readme")
echo "$out"
[ "$out" = "<div>42 orders today</div>" ]
