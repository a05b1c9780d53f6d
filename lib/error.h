/*
 * The status codes, listed once: TC_STATUS_LIST(X) expands X(name, value, text) for every
 * tc_status. tc_strerror is generated from it, and error.c checks at compile time that it
 * agrees with the enum of include/tiercache.h (the reference, which keeps its own spelled-out
 * enum so that users read the values where they are declared).
 */
#ifndef TC_ERROR_H
#define TC_ERROR_H

#include "tiercache.h"

#define TC_STATUS_LIST(X)                                                                          \
    X(TC_OK, 0, "ok")                                                                              \
    X(TC_MISS, 1, "miss: key absent")                                                              \
    X(TC_EXISTS, 2, "key already exists")                                                          \
    X(TC_ERR_ARG, -1, "invalid argument")                                                          \
    X(TC_ERR_NOMEM, -2, "out of memory")                                                           \
    X(TC_ERR_IO, -3, "Redis unreachable or connection lost")                                       \
    X(TC_ERR_TIMEOUT, -4, "deadline passed")                                                       \
    X(TC_ERR_PROTO, -5, "Redis error reply or protocol error")                                     \
    X(TC_ERR_TOO_BIG, -6, "value larger than max_value_bytes")                                     \
    X(TC_ERR_LOADER, -7, "loader failed")                                                          \
    X(TC_ERR_AUTH, -8, "authentication refused")                                                   \
    X(TC_ERR_NOT_INT, -9, "value is not an integer")                                               \
    X(TC_ERR_CLOSED, -10, "cache is closing")

/* tc_strerror for the library's own modules (which call no public function): a static
 * string, never NULL, "unknown status" for a value not in the list. Thread-safe. */
const char *tc__strerror(tc_status s);

#endif /* TC_ERROR_H */
