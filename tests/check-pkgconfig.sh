#!/bin/sh
# tiercache.pc: --cflags names only tiercache's own include directory (the public header
# needs no other: hiredis's must not leak), --libs --static brings the dependencies.
: "${top_builddir:=.}"
PKG_CONFIG=${PKG_CONFIG:-pkg-config}
PKG_CONFIG_PATH=$top_builddir
export PKG_CONFIG_PATH
cflags=$($PKG_CONFIG --cflags tiercache) || exit 1
static=$($PKG_CONFIG --libs --static tiercache) || exit 1
echo "cflags: $cflags"
echo "static libs: $static"
fail=0
case " $cflags " in
  *hiredis*|*_FILE_OFFSET_BITS*) echo "FAIL: --cflags leaks hiredis's flags"; fail=1;;
esac
for l in -ltiercache -lhiredis -lxxhash -ljansson; do
  case " $static " in
    *" $l "*) ;;
    *) echo "FAIL: --libs --static lacks $l"; fail=1;;
  esac
done
exit $fail
