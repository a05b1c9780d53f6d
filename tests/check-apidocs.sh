#!/bin/sh
# make check's entry to scripts/check-apidocs.sh: every TC_API function has its manual page,
# and the generated reference is current. (A test named scripts/... would leave its log in a
# build directory scripts/, which make dist would then take for the source's.)
: "${srcdir:=.}"
exec "$srcdir/scripts/check-apidocs.sh"
