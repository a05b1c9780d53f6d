/*
 * What every Check program shares: a main that starts the suite's private Redis (when the
 * suite needs one), runs the suite and prints Check's summary; and helpers to open a cache on
 * that Redis under a key prefix unique to the test.
 */
#ifndef TC_TESTUTIL_H
#define TC_TESTUTIL_H

#include <check.h>
#include <stdbool.h>

#include "fixture.h"
#include "tiercache.h"

/* The Redis started by tct_main for this program (valid in tests when need_redis). */
extern tcf_redis tct_redis;

/* Starts Redis if need_redis (a failure to start fails the program), runs s in Check's
 * normal (forking) mode, stops Redis, and returns the exit status for main. */
int tct_main(Suite *s, bool need_redis);

/* Options for the suite's Redis with a fresh unique key prefix (stored in a static buffer
 * of the test: fine because each test runs in its own process). */
void tct_options(tc_options *o);

/* tc_open with o, asserting success. */
tc_cache *tct_open(const tc_options *o);

/* Opens a cache on the suite's Redis with default options and a fresh prefix. */
tc_cache *tct_open_default(void);

/* Sleep for ms milliseconds (tests only; the library never sleeps). */
void tct_sleep_ms(int ms);

/* Reads key and asserts the status and, for TC_OK, the bytes. */
void tct_expect(tc_cache *c, const char *key, tc_status want, const char *want_value);

#endif /* TC_TESTUTIL_H */
