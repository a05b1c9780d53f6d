/*
 * tc_strerror, generated from the status list of error.h. No state, no locks.
 *
 * The list and the public enum are checked against each other at compile time: every entry
 * has the value its enum constant has (the _Static_asserts below), and every enum constant
 * has an entry (the generated switch has no default, so -Wswitch, made an error here
 * whatever the build flags, names any constant the list misses).
 */
#include "config.h"

#include "error.h"

#pragma GCC diagnostic error "-Wswitch"

#define TC_STATUS_AGREES(name, value, text)                                                        \
    _Static_assert((name) == (value), #name " has the value error.h lists");
TC_STATUS_LIST(TC_STATUS_AGREES)
#undef TC_STATUS_AGREES

const char *tc__strerror(tc_status s)
{
#define TC_STATUS_CASE(name, value, text)                                                          \
    case name:                                                                                     \
        return text;
    switch (s) {
        TC_STATUS_LIST(TC_STATUS_CASE)
    }
#undef TC_STATUS_CASE
    return "unknown status";
}

TC_API const char *tc_strerror(tc_status s)
{
    return tc__strerror(s);
}
